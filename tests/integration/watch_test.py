#!/usr/bin/env python3
"""watch_test.py - inotify on MetaStore mounts: every change, wherever in the cluster it was made.

    watch_test.py METASTORED [scenario ...]     (no scenario: all)

`inotifywait -m` (inotify-tools) runs on the mounts of a 3-node cluster while changes are made on
node 1 (through its mount, or through /.metastore/txn). The kernel emits events only for changes
made through a mount, so on nodes 2 and 3 they come from the daemon's replay (watch/): these
tests check that what inotifywait prints there is what it prints on node 1 for the same local
change, once, in order, for every kind of change and for each shell tool's (touch, truncate, >,
>>, chmod, chown, mv, rm, mkdir, rmdir, ln -s);
that a recursive watch follows a new remote directory; that 100 watchers each get every one of 1,000 events; that nothing deadlocks while
the watching node's own clients list, read, remove and rename in the directories being written;
and that `-o inotify=off` turns it all off. Prints PASS/FAIL per scenario, then `N passed, N failed`.
"""
import os, random, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, fuse_conn_abort, run_scenarios, write_file  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else "metastored"
EVENTS = "create,modify,close_write,delete,moved_from,moved_to,attrib"
DEADLINE_S = 30.0


class Watcher:
    """One `inotifywait -m` process; its output goes to a file, read back with events()."""

    def __init__(self, root, recursive=True, events=EVENTS, workdir=None):
        self.root = root.rstrip("/")
        fd, self.out = tempfile_in(workdir, "w")
        self.outf = os.fdopen(fd, "w")
        efd, self.err = tempfile_in(workdir, "e")
        self.errf = os.fdopen(efd, "w")
        args = ["inotifywait", "-m", "--format", "%e|%w%f|%c", "-e", events]
        if recursive:
            args.append("-r")
        # stderr says "Watches established." once the watches are in place (wait_ready)
        self.p = subprocess.Popen(args + [self.root], stdout=self.outf, stderr=self.errf,
                                  stdin=subprocess.DEVNULL)

    def wait_ready(self, timeout=DEADLINE_S):
        t0 = time.time()
        while time.time() - t0 < timeout:
            with open(self.err) as f:
                text = f.read()
            if "Watches established" in text:
                return
            if self.p.poll() is not None or "upper limit" in text or "Failed" in text:
                raise AssertionError("inotifywait failed: %s" % text.strip())
            time.sleep(0.01)
        raise AssertionError("inotifywait did not start")

    def events(self):
        """[(EVENTS, path relative to the root, cookie)]"""
        self.outf.flush()
        out = []
        with open(self.out) as f:
            for line in f:
                parts = line.rstrip("\n").split("|")
                if len(parts) != 3:
                    continue
                path = parts[1]
                rel = path[len(self.root) + 1:] if path.startswith(self.root + "/") else path
                out.append((parts[0], rel, parts[2]))
        return out

    def stderr(self):
        with open(self.err) as f:
            return f.read().strip()

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.outf.close()
        self.errf.close()


def tempfile_in(d, tag):
    return tempfile.mkstemp(prefix="watch-%s-" % tag, dir=d)


def wait_for(pred, what, timeout=DEADLINE_S):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


def has(evs, name, path):
    return any(e == name and p == path for e, p, _ in evs)


def fold(evs):
    """Runs of one identical event collapse (inotify itself folds an unread duplicate)."""
    out = []
    for e in evs:
        if out and out[-1] == e:
            continue
        out.append(e)
    return out


def per_path(evs):
    out = {}
    for e, p in evs:
        out.setdefault(p, []).append(e)
    return out


def strip_cookies(evs):
    return [(e, p) for e, p, _ in evs]


def txn(root, text):
    fd = os.open(os.path.join(root, ".metastore/txn"), os.O_RDWR)
    try:
        os.write(fd, text.encode())
        return os.read(fd, 1 << 16).decode()
    finally:
        os.close(fd)


def check_moves_paired(evs, who):
    """Every MOVED_FROM is followed by its MOVED_TO with the same nonzero cookie."""
    for i, (e, p, c) in enumerate(evs):
        if e.startswith("MOVED_FROM"):
            assert i + 1 < len(evs) and evs[i + 1][0].startswith("MOVED_TO"), (who, evs[i:i + 2])
            assert c not in ("", "0") and evs[i + 1][2] == c, (who, evs[i], evs[i + 1])


def status_int(cl, i, key):
    return int(cl.status(i).get(key, "0"))


def cluster(extra=()):
    cl = Cluster(BIN, n=3, extra=list(extra))
    cl.start_all()
    return cl


# ------------------------------------------------------------------ scenarios

def s_change_types(_):
    """Each kind of change made on node 1 prints on nodes 2 and 3 what it prints on node 1."""
    cl = cluster()
    ws = []
    try:
        os.mkdir(cl.path(1, "w"))
        cl.wait_applied()
        ws = [Watcher(cl.mnt(i), workdir=cl.dir) for i in (1, 2, 3)]
        for w in ws:
            w.wait_ready()
        w1 = cl.path(1, "w")
        assert write_file(os.path.join(w1, "a"), "hello") == 0             # new file
        assert write_file(os.path.join(w1, "a"), "hello, again") == 0      # changed file
        os.chmod(os.path.join(w1, "a"), 0o600)                              # mode
        if os.geteuid() == 0:
            os.chown(os.path.join(w1, "a"), 1000, 1000)                     # owner
        os.utime(os.path.join(w1, "a"), (1500000000, 1500000000))          # times
        os.symlink("a", os.path.join(w1, "l"))                              # symlink
        os.rename(os.path.join(w1, "a"), os.path.join(w1, "b"))             # rename
        os.mkdir(os.path.join(w1, "d"))                                     # mkdir
        os.rmdir(os.path.join(w1, "d"))                                     # rmdir
        os.unlink(os.path.join(w1, "b"))                                    # delete
        os.unlink(os.path.join(w1, "l"))
        r = txn(cl.mnt(1), '\nput "w/t" "from a txn"\n\n')                  # a transaction
        assert r.startswith("SUCCESS"), r
        # node 1 replays the txn too, after the txn returned: let it, so "end" comes last there
        wait_for(lambda: has(ws[0].events(), "CLOSE_WRITE,CLOSE", "w/t"), "node 1's replay of the txn")
        assert write_file(os.path.join(w1, "end"), "x") == 0
        for w in ws:
            wait_for(lambda w=w: has(w.events(), "CLOSE_WRITE,CLOSE", "w/end"), "the last event on %s" % w.root)
        time.sleep(0.3)  # nothing more may come
        got = {i: [e for e in ws[i - 1].events() if e[1].startswith("w/")] for i in (1, 2, 3)}
        local = fold(strip_cookies(got[1]))
        # the txn was made by no mount: node 1 replays it too, once
        assert local.count(("CREATE", "w/t")) == 1, local
        for i in (2, 3):
            remote = fold(strip_cookies(got[i]))
            # per name the same events in the same order (names may interleave differently: the
            # replay runs changes of different files at once)
            assert per_path(remote) == per_path(local), "node %d printed\n  %s\nnode 1 printed\n  %s" % (
                i, remote, local)
        for i in (1, 2, 3):
            check_moves_paired(got[i], i)
            assert sum(1 for e in got[i] if e[0] == "CREATE" and e[1] == "w/a") == 1, got[i]
        for kind in ("CREATE", "MODIFY", "CLOSE_WRITE,CLOSE", "ATTRIB", "MOVED_FROM", "MOVED_TO",
                     "CREATE,ISDIR", "DELETE,ISDIR", "DELETE"):
            assert any(e == kind for e, _ in local), (kind, local)
        print("    %d events per node, identical on the three" % len(local))
        for i in (2, 3):
            assert status_int(cl, i, "replays_failed") == 0, cl.status(i)
            assert status_int(cl, i, "replays_dropped") == 0, cl.status(i)
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


def s_recursive_new_directory(_):
    """A remote mkdir followed at once by files inside it: a recursive watch sees them all, the
    directory first."""
    cl = cluster()
    ws = []
    try:
        ws = [Watcher(cl.mnt(i), workdir=cl.dir) for i in (2, 3)]
        for w in ws:
            w.wait_ready()
        m = cl.mnt(1)
        os.mkdir(os.path.join(m, "new"))
        for k in range(10):
            assert write_file(os.path.join(m, "new", "f%d" % k), "v%d" % k) == 0
        os.makedirs(os.path.join(m, "new", "sub", "deeper"))
        assert write_file(os.path.join(m, "new", "sub", "deeper", "g"), "g") == 0
        r = txn(m, '\nput "tree/x/y/z" "made with its parents"\n\n')
        assert r.startswith("SUCCESS"), r
        want = [("CREATE,ISDIR", "new")] + [("CREATE", "new/f%d" % k) for k in range(10)] + [
            ("CREATE,ISDIR", "new/sub"), ("CREATE,ISDIR", "new/sub/deeper"), ("CREATE", "new/sub/deeper/g"),
            ("CREATE,ISDIR", "tree"), ("CREATE,ISDIR", "tree/x"), ("CREATE,ISDIR", "tree/x/y"),
            ("CREATE", "tree/x/y/z"), ("CLOSE_WRITE,CLOSE", "tree/x/y/z")]
        for w in ws:
            wait_for(lambda w=w: has(w.events(), "CLOSE_WRITE,CLOSE", "tree/x/y/z"), "the txn's file on %s" % w.root)
            evs = strip_cookies(w.events())
            missing = [e for e in want if e not in evs]
            assert not missing, "%s missed %s (inotifywait said: %s)" % (w.root, missing, w.stderr())
            # a directory's CREATE comes before anything inside it (files of one directory may
            # come in any order: several replay threads create them at once)
            for e, p in want:
                parent = p.rsplit("/", 1)[0] if "/" in p else None
                if parent:
                    assert evs.index(("CREATE,ISDIR", parent)) < evs.index((e, p)), "out of order: %s" % evs
            for k in range(10):
                i = [evs.index((e, "new/f%d" % k)) for e in ("CREATE", "MODIFY", "CLOSE_WRITE,CLOSE")]
                assert i == sorted(i), "one file's events out of order: %s" % evs
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


def s_remote_deletes_and_moves(_):
    """Deletes and renames of names this kernel has long forgotten (entry timeouts passed, the
    invalidation thread dropped the dentries), a prefix delete of a whole tree, a directory
    renamed away and back: each still prints its events on the other nodes."""
    cl = cluster()
    ws = []
    try:
        m = cl.mnt(1)
        os.makedirs(os.path.join(m, "t/x"))
        for k in range(3):
            assert write_file(os.path.join(m, "t/x/k%d" % k), "v") == 0
        assert write_file(os.path.join(m, "t/top"), "v") == 0
        os.makedirs(os.path.join(m, "r"))
        assert write_file(os.path.join(m, "r/f"), "1") == 0
        cl.wait_applied()
        ws = [Watcher(cl.mnt(i), workdir=cl.dir) for i in (2, 3)]
        for w in ws:
            w.wait_ready()
        time.sleep(1.3)  # every entry and attribute timeout (1 s) has passed on nodes 2 and 3
        r = txn(m, '\ndel --prefix "t/"\n\n')
        assert r.startswith("SUCCESS"), r
        os.rename(os.path.join(m, "r"), os.path.join(m, "s"))
        assert write_file(os.path.join(m, "s/f"), "22") == 0
        os.rename(os.path.join(m, "s/f"), os.path.join(m, "s/g"))
        os.rename(os.path.join(m, "s"), os.path.join(m, "r"))
        os.unlink(os.path.join(m, "r/g"))
        os.rmdir(os.path.join(m, "r"))
        want = [("DELETE", "t/x/k%d" % k) for k in range(3)] + [("DELETE", "t/top"), ("DELETE,ISDIR", "t/x"),
                ("MOVED_FROM,ISDIR", "r"), ("MOVED_TO,ISDIR", "s"), ("CLOSE_WRITE,CLOSE", "s/f"),
                ("MOVED_FROM", "s/f"), ("MOVED_TO", "s/g"), ("MOVED_FROM,ISDIR", "s"), ("MOVED_TO,ISDIR", "r"),
                ("DELETE", "r/g"), ("DELETE,ISDIR", "r")]
        for w in ws:
            wait_for(lambda w=w: has(w.events(), "DELETE,ISDIR", "r"), "the last delete on %s" % w.root)
            evs = w.events()
            check_moves_paired(evs, w.root)
            evs = strip_cookies(evs)
            missing = [e for e in want if e not in evs]
            assert not missing, "%s missed %s in %s" % (w.root, missing, evs)
            tail = [e for e in evs if e in want[5:]]
            assert tail == want[5:], "out of order on %s: %s" % (w.root, tail)
        for i in (2, 3):
            assert status_int(cl, i, "replays_failed") == 0, cl.status(i)
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


def s_one_key_in_revision_order(_):
    """Changes to one key arrive in revision order, with no event twice."""
    cl = cluster()
    ws = []
    try:
        ws = [Watcher(cl.mnt(i), recursive=False, workdir=cl.dir) for i in (2, 3)]
        for w in ws:
            w.wait_ready()
        m = cl.mnt(1)
        k = os.path.join(m, "k")
        for rnd in range(5):
            assert write_file(k, "v%d" % rnd) == 0
            for n in range(5):
                assert write_file(k, "v%d.%d" % (rnd, n)) == 0
            os.rename(k, k + "2")
            os.chmod(k + "2", 0o600 if rnd % 2 else 0o640)
            os.rename(k + "2", k)
            os.unlink(k)
        assert write_file(os.path.join(m, "end"), "x") == 0
        milestones = []
        for rnd in range(5):
            milestones += [("CREATE", "k"), ("MOVED_FROM", "k"), ("MOVED_TO", "k2"), ("ATTRIB", "k2"),
                           ("MOVED_FROM", "k2"), ("MOVED_TO", "k"), ("DELETE", "k")]
        for w in ws:
            wait_for(lambda w=w: has(w.events(), "CLOSE_WRITE,CLOSE", "end"), "the last event on %s" % w.root)
            evs = w.events()
            check_moves_paired(evs, w.root)
            seq = [e for e in strip_cookies(evs) if e in milestones]
            assert seq == milestones, "%s printed %s" % (w.root, seq)
            creates = sum(1 for e, p, _ in evs if e == "CREATE" and p == "k")
            closes = sum(1 for e, p, _ in evs if e == "CLOSE_WRITE,CLOSE" and p == "k")
            assert creates == 5 and 5 <= closes <= 30, (creates, closes)
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


def s_open_right_after_close(_):
    """open() stays linearizable (a file whose close() returned on node 1 opens on node 2 at
    once, before its replay), and node 2's watcher still gets each file's CREATE, once: the
    replay makes the kernel forget the name the open looked up, then creates it."""
    cl = cluster()
    w = None
    try:
        os.mkdir(cl.path(1, "rw"))
        cl.wait_applied()
        w = Watcher(cl.path(2, "rw"), recursive=False, events="create,close_write", workdir=cl.dir)
        w.wait_ready()
        n = 200
        for k in range(n):
            data = "value-%d" % k
            assert write_file(cl.path(1, "rw/k%d" % k), data) == 0
            with open(cl.path(2, "rw/k%d" % k)) as f:
                assert f.read() == data, k
        wait_for(lambda: sum(1 for e, _, _ in w.events() if e == "CLOSE_WRITE,CLOSE") >= n, "the events")
        time.sleep(0.3)
        evs = w.events()
        creates = [p for e, p, _ in evs if e == "CREATE"]
        missed = sorted(set("k%d" % k for k in range(n)) - set(creates))
        dup = len(creates) - len(set(creates))
        print("    %d files: %d CREATE missed, %d duplicated" % (n, len(missed), dup))
        assert not missed and not dup, (missed[:10], dup)
    finally:
        if w:
            w.stop()
        cl.cleanup()


def inotify_instances_in_use():
    n = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % pid):
                try:
                    if os.readlink("/proc/%s/fd/%s" % (pid, fd)) == "anon_inode:inotify":
                        n += 1
                except OSError:
                    pass
        except OSError:
            pass
    return n


def s_hundred_watchers(_):
    """100 watchers on node 2, 1,000 files written on node 1: every watcher gets every CREATE and
    CLOSE_WRITE once, and no queue overflow."""
    watchers, files = 100, 1000
    with open("/proc/sys/fs/inotify/max_user_instances") as f:
        limit = int(f.read())
    free = limit - inotify_instances_in_use()
    assert free >= watchers + 4, ("only %d inotify instances free (fs.inotify.max_user_instances = %d): "
                                  "raise it to run this test" % (free, limit))
    cl = cluster()
    ws = []
    try:
        os.mkdir(cl.path(1, "many"))
        cl.wait_applied()
        ws = [Watcher(cl.path(2, "many"), recursive=False, events="create,close_write", workdir=cl.dir)
              for _ in range(watchers)]
        for w in ws:
            w.wait_ready()
        errs = []

        def writer(t, nthreads):
            for k in range(t, files, nthreads):
                rc = write_file(cl.path(1, "many/f%04d" % k), "value %d" % k)
                if rc:
                    errs.append(rc)
        ths = [threading.Thread(target=writer, args=(t, 4)) for t in range(4)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()
        assert not errs, errs
        last = "f%04d" % (files - 1)
        names = set("f%04d" % k for k in range(files))
        for w in ws:
            wait_for(lambda w=w: len(w.events()) >= 2 * files, "all events on watcher %s" % w.out, timeout=60)
        time.sleep(0.3)
        for n, w in enumerate(ws):
            evs = w.events()
            assert not any("Q_OVERFLOW" in e for e, _, _ in evs), "watcher %d: queue overflow" % n
            creates = [p for e, p, _ in evs if e == "CREATE"]
            closes = [p for e, p, _ in evs if e == "CLOSE_WRITE,CLOSE"]
            assert len(creates) == files and set(creates) == names, "watcher %d: %d creates" % (n, len(creates))
            assert len(closes) == files and set(closes) == names, "watcher %d: %d close_writes" % (n, len(closes))
            assert last in creates
        st = cl.status(2)
        print("    %d watchers x %d files: all seen once; node 2 replays %s, merged %s, dropped %s" % (
            watchers, files, st.get("replays_done"), st.get("replays_merged"), st.get("replays_dropped")))
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


def s_no_deadlock(_):
    """Heavy writes on node 1 while node 2, which is watched, lists, reads, removes and renames in
    the same directories through its own mount. Under a watchdog: everything must finish, and
    every file node 1 created must have printed CREATE on node 2 (a name is never shown to node
    2's kernel before its replay created it)."""
    cl = cluster()
    w = None
    stop = threading.Event()
    stats = {"writes": 0, "ls": 0, "cat": 0, "rm": 0, "mv": 0, "errors": 0}
    lock = threading.Lock()
    created = set()
    try:
        for d in ("d0", "d1"):
            os.mkdir(cl.path(1, d))
        cl.wait_applied()
        w = Watcher(cl.mnt(2), workdir=cl.dir)
        w.wait_ready()

        def bump(k, n=1):
            with lock:
                stats[k] += n

        def writer(t):
            i = 0
            while not stop.is_set():
                name = "d%d/w%d-%d" % (i % 2, t, i)
                if write_file(cl.path(1, name), "x" * (i % 300)) == 0:
                    with lock:
                        created.add(name)
                    bump("writes")
                if i % 5 == 0:  # rewrite an older one
                    write_file(cl.path(1, "d%d/w%d-%d" % (i % 2, t, max(0, i - 3))), "again")
                i += 1

        def local_client(t):
            rnd = random.Random(t)
            while not stop.is_set():
                d = "d%d" % rnd.randrange(2)
                try:
                    names = os.listdir(cl.path(2, d))
                    bump("ls")
                    if not names:
                        continue
                    name = rnd.choice(names)
                    op = rnd.randrange(4)
                    if op < 2:
                        with open(cl.path(2, d + "/" + name), "rb") as f:
                            f.read()
                        bump("cat")
                    elif op == 2:
                        os.unlink(cl.path(2, d + "/" + name))
                        bump("rm")
                    else:
                        os.rename(cl.path(2, d + "/" + name), cl.path(2, "d%d/mv%d-%s" % (1 - int(d[1]), t, name)))
                        bump("mv")
                except OSError:
                    bump("errors")

        ths = [threading.Thread(target=writer, args=(t,), daemon=True) for t in range(3)]
        ths += [threading.Thread(target=local_client, args=(t,), daemon=True) for t in range(3)]
        for t in ths:
            t.start()
        time.sleep(6.0)
        stop.set()
        deadline = time.time() + 60
        for t in ths:
            t.join(timeout=max(0.1, deadline - time.time()))
        stuck = [t for t in ths if t.is_alive()]
        if stuck:
            for i in (1, 2, 3):
                fuse_conn_abort(cl.mnt(i))
            raise AssertionError("deadlock: %d client threads stuck for 60 s (%s)" % (len(stuck), stats))
        cl.wait_applied()
        st = cl.status(2)  # node 2 still answers
        a = sorted(os.listdir(cl.path(1, "d0")) + os.listdir(cl.path(1, "d1")))
        wait_for(lambda: sorted(os.listdir(cl.path(2, "d0")) + os.listdir(cl.path(2, "d1"))) == a,
                 "node 2 to list what node 1 lists")
        wait_for(lambda: status_int(cl, 2, "replay_backlog") == 0, "node 2's replays to drain")
        time.sleep(0.3)
        seen = set(p for e, p, _ in w.events() if e == "CREATE")
        missed = sorted(created - seen)
        print("    %s; node 2: replays %s, merged %s, cancelled %s, failed %s, dropped %s, backlog max %s" % (
            stats, st.get("replays_done"), st.get("replays_merged"), st.get("replays_cancelled"),
            st.get("replays_failed"), st.get("replays_dropped"), st.get("replay_backlog_max")))
        assert not missed, "%d of %d files node 1 created printed no CREATE on node 2: %s" % (
            len(missed), len(created), missed[:10])
        assert stats["writes"] > 100 and stats["ls"] > 50, stats
    finally:
        stop.set()
        if w:
            w.stop()
        cl.cleanup()


def s_inotify_off(_):
    """-o inotify=off: no replay (a watcher on node 2 sees nothing of node 1's changes), nothing
    hidden, local changes still print locally."""
    cl = cluster(extra=["-o", "inotify=off"])
    ws = []
    try:
        assert cl.status(2)["inotify"] == "off"
        assert "replays_done" not in cl.status(2)
        ws = [Watcher(cl.mnt(i), workdir=cl.dir) for i in (1, 2)]
        for w in ws:
            w.wait_ready()
        for k in range(20):
            assert write_file(cl.path(1, "f%d" % k), "v") == 0
        os.mkdir(cl.path(1, "d"))
        cl.wait_applied()
        for k in range(20):  # visible on node 2 at once
            assert os.path.exists(cl.path(2, "f%d" % k))
        wait_for(lambda: has(ws[0].events(), "CREATE,ISDIR", "d"), "node 1's local events")
        time.sleep(0.5)
        assert ws[1].events() == [], ws[1].events()
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


# (name, shell command run in node 1's directory w/, files it needs beforehand)
SHELL_CASES = [
    ("touch-new", "touch tn", ()),
    ("touch-existing", "touch te", ("te",)),
    ("truncate-0", "truncate -s 0 t0", ("t0",)),
    ("truncate-10", "truncate -s 10 t10", ("t10",)),
    ("redirect-empty", ": > re", ("re",)),
    ("redirect-new", "echo v > rn", ()),
    ("append", "echo v >> ap", ("ap",)),
    ("chmod", "chmod 600 cm", ("cm",)),
    ("chown", "chown 1000:1000 co", ("co",)),
    ("mv", "mv mv1 mv2", ("mv1",)),
    ("rm", "rm rm1", ("rm1",)),
    ("mkdir", "mkdir md", ()),
    ("rmdir", "rmdir rd", ()),
    ("ln-s", "ln -s tn sl", ()),
    ("redirect-new-empty", ": > ne", ()),
    ("truncate-path", "python3 -c 'import os; os.truncate(\"tp\", 3)'", ("tp",)),
    ("utime-path", "python3 -c 'import os; os.utime(\"up\")'", ("up",)),
    ("touch-date-new", "touch -d 2001-02-03T04:05:06 td", ()),
    ("chmod-open-file", "python3 -c 'import os\nfd = os.open(\"cf\", os.O_WRONLY)\nos.fchmod(fd, 0o600)\n"
                        "os.close(fd)'", ("cf",)),
    ("chmod-then-append", "chmod 600 ca && echo v >> ca", ("ca",)),
    ("append-twice", "echo a >> a2 && echo b >> a2", ("a2",)),
    ("write-then-rm", "echo a > wr && rm wr", ()),
    # back to back: the replay may find several of them pending at once (no coalescing may
    # drop or reorder a MODIFY or an ATTRIB)
    ("burst", "python3 -c 'import os\nfor i in range(30):\n os.chmod(\"bu\", 0o600 if i % 2 else 0o640)\n"
              " open(\"bu\", \"a\").write(\"x\")'", ("bu",)),
]

# Changes whose replay cannot print what node 1 printed: name -> (what node 1 printed that nodes
# 2 and 3 do not, what they print that node 1 did not, why). The test checks that exactly this is
# missing (and fails once it no longer is: then drop it). Empty since the proposer marks how a
# change was made (SM_TXN_OPEN_WRITE, SM_TXN_ATTRIB_OPEN: touch, truncate(2) by path).
KNOWN_GAPS = {}


def without(evs, missing):
    out = list(evs)
    for e in missing:
        out.remove(e)
    return out


def s_shell_tools(_):
    """What inotifywait prints for each shell tool's change made on node 1 prints on 2 and 3 too."""
    cl = cluster()
    ws = []
    try:
        w1 = cl.path(1, "w")
        os.mkdir(w1)
        os.mkdir(os.path.join(w1, "rd"))
        for _, _, pre in SHELL_CASES:
            for f in pre:
                assert write_file(os.path.join(w1, f), "old content") == 0
        cl.wait_applied()
        ws = [Watcher(cl.mnt(i), workdir=cl.dir) for i in (1, 2, 3)]
        for w in ws:
            w.wait_ready()
        for name, cmd, _ in SHELL_CASES:
            if name == "chown" and os.geteuid() != 0:
                continue
            subprocess.run(cmd, shell=True, cwd=w1, check=True)
            cl.wait_applied()
            time.sleep(0.1)
        assert write_file(os.path.join(w1, "end"), "x") == 0
        for w in ws:
            wait_for(lambda w=w: has(w.events(), "CLOSE_WRITE,CLOSE", "w/end"), "the last event on %s" % w.root)
        time.sleep(0.3)  # nothing more may come
        got = {i: per_path(fold(strip_cookies([e for e in ws[i - 1].events() if e[1].startswith("w/")])))
               for i in (1, 2, 3)}
        bad = []
        for p in sorted(got[1]):
            line = "    %-8s node 1: %s" % (p, " ".join(got[1][p]))
            missing, extra, why = KNOWN_GAPS.get(p, ([], [], ""))
            want = without(got[1][p], missing) + extra
            for i in (2, 3):
                if got[i].get(p) != got[1][p]:
                    line += "\n             node %d: %s" % (i, " ".join(got[i].get(p, [])))
                if got[i].get(p) != want:
                    bad.append(p)
            if why:
                line += "   (known gap: %s)" % why
            print(line)
        for i in (2, 3):
            extra = set(got[i]) - set(got[1])
            assert not extra, (i, extra)
        # touch -d on a new file: the time it set is the record's, on every node
        want_mtime = int(time.mktime((2001, 2, 3, 4, 5, 6, 0, 0, -1)))
        for i in (1, 2, 3):
            assert int(os.stat(cl.path(i, "w/td")).st_mtime) == want_mtime, (i, os.stat(cl.path(i, "w/td")))
        assert not bad, "nodes 2 and 3 differ from node 1 (beyond KNOWN_GAPS) on %s" % sorted(set(bad))
    finally:
        for w in ws:
            w.stop()
        cl.cleanup()


SCENARIOS = [("change-types", s_change_types), ("shell-tools", s_shell_tools),
             ("recursive-new-directory", s_recursive_new_directory),
             ("remote-deletes-and-moves", s_remote_deletes_and_moves),
             ("one-key-in-revision-order", s_one_key_in_revision_order),
             ("open-right-after-close", s_open_right_after_close),
             ("hundred-watchers", s_hundred_watchers), ("no-deadlock", s_no_deadlock),
             ("inotify-off", s_inotify_off)]


def main():
    if not shutil.which("inotifywait"):
        print("inotifywait (inotify-tools) is missing")
        sys.exit(1)
    run_scenarios(SCENARIOS, sys.argv[2:])


if __name__ == "__main__":
    main()
