#!/usr/bin/env python3
"""fs_semantics_test.py - metastored's own POSIX decisions, checked on real mounts.

    fs_semantics_test.py METASTORED [scenario ...]     (no scenario: all)

What fs/fsops.c and fs/ctl.c promise beyond the everyday tools of fs_test.py: one commit per
`echo v > f` (new and existing file, through bash's open/dup2/close/write/close), EFBIG
poisoning, unlink and fstat of open files, ftruncate of an open handle, O_APPEND, renameat2
flags, refused special files, xattrs, statfs, the control directory's errnos and the txn file's
protocol, cache invalidation of remote changes (sizes that grow between opens), and clean exits
on SIGTERM and umount. Each scenario gets its own cluster (tests/integration/harness.py) in a
fresh temp dir, unmounted and stopped afterwards. Prints PASS/FAIL per scenario.
"""
import ctypes, errno, os, signal, stat, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, expect_errno, read_file, run_scenarios, write_file  # noqa: E402

BIN = sys.argv[1]
libc = ctypes.CDLL(None, use_errno=True)
RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT = 1, 2, 4
AT_FDCWD = -100


def renameat2(a, b, flags):
    if libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), a)


def bash(cmd, cwd):
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "`%s` failed: %s %s" % (cmd, r.stdout, r.stderr)
    return r.stdout


def revision(cl, i=1):
    return int(cl.status(i)["revision"])


def eventually(fn, what, timeout=5.0):
    t0 = time.time()
    while True:
        try:
            if fn():
                return
        except OSError:
            pass
        if time.time() - t0 > timeout:
            raise AssertionError("not within %.1f s: %s" % (timeout, what))
        time.sleep(0.02)


# ------------------------------------------------------------------ scenarios

def s_one_commit_per_write(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        r = cl.path(1)
        for name in ("new", "new"):  # first creates, second overwrites
            before = revision(cl)
            bash("echo v-%s > %s" % (name, name), r)
            assert revision(cl) == before + 1, (name, before, revision(cl))
            assert read_file(os.path.join(r, name)) == b"v-new\n"
        # append: one commit, both lines
        before = revision(cl)
        bash("echo w >> new", r)
        assert revision(cl) == before + 1
        assert read_file(os.path.join(r, "new")) == b"v-new\nw\n"
        # opening without writing commits nothing
        before = revision(cl)
        bash("cat new >/dev/null; exec 3<>new; exec 3>&-", r)
        assert revision(cl) == before
        # `touch new2` and `: > new` commit at release; this node sees them at once
        bash("touch new2 && test -e new2 && : > new && test ! -s new", r)
        assert read_file(os.path.join(r, "new")) == b""
        eventually(lambda: revision(cl) == before + 2, "touch and truncation committed")
    finally:
        cl.cleanup()


def s_efbig_poisons(_):
    cl = Cluster(BIN, n=1, value_max=4096)
    try:
        cl.start_all()
        r = cl.path(1)
        p = os.path.join(r, "f")
        assert write_file(p, "old") == 0
        before = revision(cl)
        fd = os.open(p, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, b"a" * 4000)
        assert os.write(fd, b"b" * 200) == 96  # the kernel returns what fit before the error
        expect_errno(errno.EFBIG, os.write, fd, b"c")
        os.lseek(fd, 0, os.SEEK_SET)
        expect_errno(errno.EFBIG, os.write, fd, b"d")  # poisoned, even below the limit
        expect_errno(errno.EFBIG, os.close, fd)
        assert read_file(p) == b"old"
        assert revision(cl) == before
        # a new file over the limit is not created at all
        assert write_file(os.path.join(r, "g"), b"z" * 5000) == errno.EFBIG
        assert "g" not in os.listdir(r) and not os.path.exists(os.path.join(r, "g"))
        # truncate beyond the limit
        expect_errno(errno.EFBIG, os.truncate, p, 4097)
        os.truncate(p, 4096)
        assert os.stat(p).st_size == 4096
    finally:
        cl.cleanup()


def s_open_handles(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        r = cl.path(1)
        p = os.path.join(r, "f")
        assert write_file(p, "0123456789") == 0
        # unlink while open: writes go nowhere, close succeeds, fstat still works
        fd = os.open(p, os.O_RDWR)
        os.unlink(p)
        os.write(fd, b"xx")
        assert os.fstat(fd).st_size == 10
        os.close(fd)
        assert not os.path.exists(p)
        # ftruncate of an open handle resizes what it holds
        assert write_file(p, "0123456789") == 0
        fd = os.open(p, os.O_RDWR)
        os.ftruncate(fd, 3)
        assert os.pread(fd, 100, 0) == b"012"
        os.pwrite(fd, b"Z", 5)
        os.close(fd)
        assert read_file(p) == b"012\0\0Z"
        # O_APPEND appends at the end of what the handle holds
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"A")
        os.write(fd, b"B")
        os.close(fd)
        assert read_file(p) == b"012\0\0ZAB"
        # read-your-writes inside one handle, size seen by stat while dirty
        fd = os.open(os.path.join(r, "h"), os.O_RDWR | os.O_CREAT, 0o640)
        os.write(fd, b"hello")
        assert os.stat(os.path.join(r, "h")).st_size == 5
        assert os.pread(fd, 5, 0) == b"hello"
        os.close(fd)
        st = os.stat(os.path.join(r, "h"))
        assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_size == 5
        # O_EXCL create: EEXIST on an existing name, works on a new one
        expect_errno(errno.EEXIST, os.open, p, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        fd = os.open(os.path.join(r, "x"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.write(fd, b"x")
        os.close(fd)
        assert read_file(os.path.join(r, "x")) == b"x"
        # the inode number survives a rename and matches what the record says after reopen
        ino = os.stat(os.path.join(r, "x")).st_ino
        os.rename(os.path.join(r, "x"), os.path.join(r, "y"))
        assert os.stat(os.path.join(r, "y")).st_ino == ino
    finally:
        cl.cleanup()


def s_namespace_rules(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        r = cl.path(1)
        a, b, d = (os.path.join(r, n) for n in ("a", "b", "d"))
        assert write_file(a, "A") == 0 and write_file(b, "B") == 0
        expect_errno(errno.EEXIST, renameat2, a, b, RENAME_NOREPLACE)
        renameat2(a, b, RENAME_EXCHANGE)
        assert read_file(a) == b"B" and read_file(b) == b"A"
        expect_errno(errno.EINVAL, renameat2, a, b, RENAME_WHITEOUT)
        expect_errno(errno.ENOENT, renameat2, a, os.path.join(r, "none"), RENAME_EXCHANGE)
        expect_errno(errno.EPERM, os.link, a, os.path.join(r, "hard"))
        expect_errno(errno.EPERM, os.mkfifo, os.path.join(r, "fifo"))
        expect_errno(errno.EPERM, os.mknod, os.path.join(r, "chr"), 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        os.mknod(os.path.join(r, "reg"), 0o600 | stat.S_IFREG)
        assert os.stat(os.path.join(r, "reg")).st_size == 0
        os.mkdir(d)
        expect_errno(errno.EEXIST, os.mkdir, d)
        expect_errno(errno.ENOTDIR, os.mkdir, os.path.join(a, "sub"))
        expect_errno(errno.ENOENT, os.mkdir, os.path.join(r, "no/sub"))
        expect_errno(errno.ENAMETOOLONG, os.mkdir, os.path.join(r, "n" * 256))
        expect_errno(errno.EISDIR, os.unlink, d)
        expect_errno(errno.ENOTDIR, os.rmdir, a)
        os.symlink("a", os.path.join(r, "l"))
        assert os.readlink(os.path.join(r, "l")) == "a"
        assert read_file(os.path.join(r, "l")) == b"B"
        # a directory with many entries lists each exactly once
        for k in range(300):
            assert write_file(os.path.join(d, "f%03d" % k), str(k)) == 0
        names = os.listdir(d)
        assert sorted(names) == ["f%03d" % k for k in range(300)], len(names)
        assert len(bash("ls -l d | tail -n +2", r).splitlines()) == 300
    finally:
        cl.cleanup()


def s_xattr_statfs(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        r = cl.path(1)
        p = os.path.join(r, "f")
        assert write_file(p, "1") == 0
        names = sorted(os.listxattr(p))
        assert names == ["user.metastore.create_revision", "user.metastore.mod_revision",
                         "user.metastore.version"], names
        v1 = int(os.getxattr(p, "user.metastore.version"))
        c1 = int(os.getxattr(p, "user.metastore.create_revision"))
        assert write_file(p, "2") == 0
        assert int(os.getxattr(p, "user.metastore.version")) == v1 + 1
        assert int(os.getxattr(p, "user.metastore.create_revision")) == c1
        assert int(os.getxattr(p, "user.metastore.mod_revision")) == revision(cl)
        expect_errno(errno.ENODATA, os.getxattr, p, "user.other")
        for k in range(10):  # version >= 10: two digits, so a 1-byte buffer is too small
            assert write_file(p, str(k)) == 0
        assert libc.getxattr(p.encode(), b"user.metastore.version", None, ctypes.c_size_t(0)) == 2
        buf = ctypes.create_string_buffer(1)
        rc = libc.getxattr(p.encode(), b"user.metastore.version", buf, ctypes.c_size_t(1))
        assert rc == -1 and ctypes.get_errno() == errno.ERANGE, (rc, ctypes.get_errno())
        lbuf = ctypes.create_string_buffer(8)
        rc = libc.listxattr(p.encode(), lbuf, ctypes.c_size_t(8))
        assert rc == -1 and ctypes.get_errno() == errno.ERANGE, (rc, ctypes.get_errno())
        expect_errno(errno.ENOTSUP, os.setxattr, p, "user.x", b"1")
        expect_errno(errno.ENOTSUP, os.removexattr, p, "user.metastore.version")
        os.mkdir(os.path.join(r, "d"))
        assert int(os.getxattr(os.path.join(r, "d"), "user.metastore.version")) == 1
        sv = os.statvfs(r)
        assert sv.f_namemax == 255 and sv.f_bsize == 4096
        assert sv.f_files >= int(cl.status(1)["keys"])
    finally:
        cl.cleanup()


def s_control_files(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        r = cl.path(1)
        ctl = os.path.join(r, ".metastore")
        assert sorted(os.listdir(ctl)) == ["status", "txn"]
        st = cl.status(1)
        for k in ("id", "role", "term", "leader", "commit_index", "applied_index", "revision", "engine", "keys",
                  "bytes", "peers", "op_lookup", "commit", "read_barrier"):
            assert k in st, k
        assert "p99_us=" in st["op_lookup"]
        expect_errno(errno.EACCES, os.open, os.path.join(ctl, "status"), os.O_WRONLY)
        expect_errno(errno.EPERM, os.unlink, os.path.join(ctl, "status"))
        expect_errno(errno.EBUSY, os.rmdir, ctl)
        expect_errno(errno.EEXIST, os.mkdir, ctl)
        expect_errno(errno.EPERM, os.rename, ctl, os.path.join(r, "x"))
        expect_errno(errno.EACCES, os.open, os.path.join(ctl, "new"), os.O_CREAT | os.O_WRONLY)
        # the shell's way: write, then read from the same fd at its current offset
        out = bash("exec 3<>.metastore/txn; printf '\\nput app/url http://x\\nget app/url\\n' >&3; cat <&3", r)
        assert out.startswith("SUCCESS\nrevision: "), out
        assert "\nOK\n" in out and "app/url\nhttp://x" in out, out
        assert read_file(os.path.join(r, "app/url")) == b"http://x"  # the kernel learns of it
        with open(os.path.join(ctl, "txn"), "r+") as f:
            f.write('mod("app/url") = "0"\n\nput app/url never\n\nget app/url\n')
            f.flush()
            f.seek(0)
            out = f.read()
            assert out.startswith("FAILURE"), out
            f.seek(0)
            assert f.read() == out  # later reads return the same result
            expect_errno(errno.EBUSY, os.write, f.fileno(), b"more")
        with open(os.path.join(ctl, "txn"), "r+") as f:
            f.write("nonsense\n")
            f.flush()
            f.seek(0)
            assert f.read().startswith("error: line 1:")
        assert read_file(os.path.join(r, "app/url")) == b"http://x"
    finally:
        cl.cleanup()


def s_remote_changes_seen(_):
    cl = Cluster(BIN, n=3)
    try:
        cl.start_all()
        a, b = cl.path(1), cl.path(2)
        assert write_file(os.path.join(a, "f"), "short") == 0
        assert read_file(os.path.join(b, "f")) == b"short"  # node 2 caches size 5
        os.stat(os.path.join(b, "f"))
        for k in range(20):  # grow it on node 1; node 2 reads it whole at once
            data = "longer-%d-" % k + "x" * (k * 37)
            assert write_file(os.path.join(a, "f"), data) == 0
            assert read_file(os.path.join(b, "f")) == data.encode(), k
        # names appear and disappear on the other node: a lookup right after the close
        # is linearizable (barrier on a miss), a listing is local state, so eventually
        os.listdir(b)
        assert write_file(os.path.join(a, "g"), "g") == 0
        assert os.path.exists(os.path.join(b, "g"))
        assert write_file(os.path.join(a, "g2"), "g") == 0
        eventually(lambda: "g2" in os.listdir(b), "a new name listed on node 2", 2.0)
        os.unlink(os.path.join(a, "g"))
        eventually(lambda: not os.path.exists(os.path.join(b, "g")), "delete seen on node 2", 2.0)
        os.mkdir(os.path.join(a, "d"))
        os.rename(os.path.join(a, "f"), os.path.join(a, "d/f2"))
        assert read_file(os.path.join(b, "d/f2")).startswith(b"longer-19-")
        eventually(lambda: not os.path.exists(os.path.join(b, "f")), "rename seen on node 2", 2.0)
        os.chmod(os.path.join(a, "d/f2"), 0o600)
        eventually(lambda: stat.S_IMODE(os.stat(os.path.join(b, "d/f2")).st_mode) == 0o600, "chmod seen", 2.0)
    finally:
        cl.cleanup()


def s_clean_exits(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        assert write_file(cl.path(1, "keep"), "k") == 0
        p = cl.procs[1]
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0
        cl.procs.pop(1)
        for _ in range(100):
            if not os.path.ismount(cl.mnt(1)):
                break
            time.sleep(0.05)
        assert not os.path.ismount(cl.mnt(1))
        cl.start(1)  # the memory engine is rebuilt from the Raft log before the mount appears
        assert read_file(cl.path(1, "keep")) == b"k"
        p = cl.procs[1]
        subprocess.run(["fusermount3", "-u", cl.mnt(1)], check=True)
        assert p.wait(timeout=10) == 0
        cl.procs.pop(1)
        cl.start(1, extra=["-o", "local_reads"])
        assert read_file(cl.path(1, "keep")) == b"k"
        assert cl.status(1)["local_reads"] == "on"
    finally:
        cl.cleanup()


SCENARIOS = [("one-commit-per-write", s_one_commit_per_write), ("efbig-poisons", s_efbig_poisons),
             ("open-handles", s_open_handles), ("namespace-rules", s_namespace_rules),
             ("xattr-statfs", s_xattr_statfs), ("control-files", s_control_files),
             ("remote-changes-seen", s_remote_changes_seen), ("clean-exits", s_clean_exits)]


def main():
    run_scenarios(SCENARIOS, sys.argv[2:])


if __name__ == "__main__":
    main()
