#!/usr/bin/env python3
"""fs_test.py - metastored integration tests on real FUSE mounts (1 and 3 nodes).

    fs_test.py METASTORED [scenario ...]     (no scenario: all)

Each scenario gets its own cluster in a fresh temp dir and unmounts and stops it afterwards.
Prints PASS/FAIL per scenario and ends with `N passed, N failed`.
"""
import errno, os, shutil, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Cluster, expect_errno, read_file, run_scenarios, write_file  # noqa: E402

BIN = sys.argv[1]


def sh(cmd, cwd=None, check=True):
    r = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and r.returncode != 0:
        raise AssertionError("`%s` failed (%d): %s %s" % (cmd, r.returncode, r.stdout, r.stderr))
    return r


def tools_on(root):
    """The everyday tools, each checked against what it should have done."""
    sh("echo hello > a.txt && cat a.txt | grep -qx hello", cwd=root)
    sh("mkdir -p d1/d2/d3 && test -d d1/d2/d3", cwd=root)
    sh("echo x > d1/d2/d3/f && ls d1/d2/d3 | grep -qx f", cwd=root)
    sh("rmdir d1/d2/d3 2>/dev/null; test -d d1/d2/d3", cwd=root)  # not empty: still there
    sh("mv a.txt b.txt && test ! -e a.txt && grep -qx hello b.txt", cwd=root)
    sh("mv d1 e1 && test -f e1/d2/d3/f && test ! -e d1", cwd=root)
    sh("cp -r e1 c1 && diff -r e1 c1", cwd=root)
    n = sh("find e1 | wc -l", cwd=root).stdout.strip()
    assert n == "4", n
    sh("touch t && test -f t && test ! -s t", cwd=root)
    sh("touch -d '2020-01-02 03:04:05' t && stat -c %Y t | grep -qx 1577934245", cwd=root)
    sh("chmod 600 t && stat -c %a t | grep -qx 600", cwd=root)
    sh("ln -s b.txt l && readlink l | grep -qx b.txt && grep -qx hello l", cwd=root)
    sh("stat -c '%s %F' b.txt | grep -qx '6 regular file'", cwd=root)
    sh("truncate -s 2 b.txt && test \"$(cat b.txt)\" = he", cwd=root)
    sh("truncate -s 10 b.txt && stat -c %s b.txt | grep -qx 10", cwd=root)
    sh("rm -r c1 && test ! -e c1", cwd=root)
    sh("rm -r e1 && rmdir --ignore-fail-on-non-empty . ; ls | sort | tr '\\n' ' ' | grep -qx 'b.txt l t '",
       cwd=root)
    # xattrs with revisions
    r = sh("getfattr --only-values -n user.metastore.version b.txt 2>/dev/null || "
           "python3 -c \"import os;print(os.getxattr('b.txt','user.metastore.version').decode())\"", cwd=root)
    assert int(r.stdout.strip()) >= 1, r.stdout


def git_on(root):
    env = "GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t"
    sh("mkdir repo && cd repo && git init -q && echo one > f && mkdir sub && echo two > sub/g && "
       "git add . && %s git commit -qm first && echo three >> f && %s git commit -qam second && "
       "git log --oneline | wc -l | grep -qx 2 && git status --porcelain | wc -l | grep -qx 0 && "
       "git fsck --no-progress --strict" % (env, env), cwd=root)


def tar_on(root):
    src = tempfile.mkdtemp(prefix="ms-src-")
    try:
        tree = os.path.join(src, "tree")
        os.makedirs(os.path.join(tree, "a", "b"))
        for k in range(60):
            with open(os.path.join(tree, "a" if k % 2 else "a/b", "file%03d.c" % k), "w") as f:
                f.write(("int x%d = %d;\n" % (k, k)) * (k * 7 + 1))
        with open(os.path.join(tree, "empty"), "w"):
            pass
        os.symlink("a/file001.c", os.path.join(tree, "link"))
        sh("tar -C %s -cf %s/t.tar tree" % (src, src))
        sh("tar -xf %s/t.tar && diff -r %s tree" % (src, tree), cwd=root)
    finally:
        shutil.rmtree(src)


# ------------------------------------------------------------------ scenarios

def s_one_node_tools(_):
    cl = Cluster(BIN, n=1)
    try:
        cl.start_all()
        tools_on(cl.path(1))
        git_on(cl.path(1))
        tar_on(cl.path(1))
    finally:
        cl.cleanup()


def s_three_node_tools(_):
    cl = Cluster(BIN, n=3)
    try:
        cl.start_all()
        l = cl.leader()
        f = next(i for i in (1, 2, 3) if i != l)
        for node in (l, f):  # through the leader's and a follower's mount
            os.mkdir(cl.path(node, "w%d" % node))
            root = cl.path(node, "w%d" % node)
            tools_on(root)
            git_on(root)
            tar_on(root)
        cl.wait_applied()
        for other in (1, 2, 3):  # every node holds the same tree
            sh("diff -r %s %s" % (cl.path(f, "w%d" % f), cl.path(other, "w%d" % f)))
    finally:
        cl.cleanup()


def s_read_your_writes_everywhere(_):
    cl = Cluster(BIN, n=3)
    try:
        cl.start_all()
        for k in range(200):
            data = "value-%d-%s" % (k, "x" * (k % 50))
            assert write_file(cl.path(1, "k%d" % k), data) == 0
            for node in (2, 3):  # open right after close: linearizable
                got = read_file(cl.path(node, "k%d" % k)).decode()
                assert got == data, (k, node, got)
    finally:
        cl.cleanup()


def leader_kill_loop(engine):
    cl = Cluster(BIN, n=3, engine=engine)
    try:
        cl.start_all()
        l = cl.leader()
        writer = next(i for i in (1, 2, 3) if i != l)
        os.mkdir(cl.path(writer, "loop"))
        acked, stop = {}, threading.Event()

        def loop():
            k = 0
            while not stop.is_set() and k < 100000:
                data = "v%d" % k
                if write_file(cl.path(writer, "loop/k%d" % k), data) == 0:
                    acked[k] = data
                k += 1

        th = threading.Thread(target=loop)
        th.start()
        time.sleep(1.0)
        cl.kill(l)
        survivors = [i for i in (1, 2, 3) if i != l]
        cl.leader(survivors)
        time.sleep(1.0)
        stop.set()
        th.join(60)
        assert len(acked) > 10, len(acked)
        cl.wait_applied(survivors)
        for node in survivors:
            for k, data in acked.items():
                got = read_file(cl.path(node, "loop/k%d" % k)).decode()
                assert got == data, (node, k, got)
        cl.start(l)  # from its data dir
        cl.wait_applied()
        for k, data in acked.items():
            assert read_file(cl.path(l, "loop/k%d" % k)).decode() == data, k
        print("    %s: %d writes acknowledged across the failover" % (engine, len(acked)))
    finally:
        cl.cleanup()


def s_kill_leader_memory(_):
    leader_kill_loop("memory")


def s_kill_leader_rocksdb(_):
    leader_kill_loop("rocksdb")


def s_bad_input(_):
    cl = Cluster(BIN, n=3, value_max=65536)
    try:
        cl.start_all()
        r = cl.path(1)
        expect_errno(errno.ENAMETOOLONG, os.open, os.path.join(r, "n" * 256), os.O_CREAT | os.O_WRONLY, 0o644)
        assert write_file(os.path.join(r, "n" * 255), "ok") == 0
        # value over the limit: EFBIG, old value intact
        assert write_file(os.path.join(r, "big"), "old") == 0
        rc = write_file(os.path.join(r, "big"), b"z" * 70000)
        assert rc == errno.EFBIG, errno.errorcode.get(rc, rc)
        assert read_file(os.path.join(r, "big")) == b"old"
        # txn with a syntax error: an error line, nothing changed
        before = cl.status(1)["revision"]
        with open(os.path.join(r, ".metastore/txn"), "r+") as f:
            f.write('val("big") = "old"\n\nput big new\nfrobnicate x\n\n')
            f.flush()
            f.seek(0)
            out = f.read()
        assert out.startswith("error: line 4"), out
        assert cl.status(1)["revision"] == before
        assert read_file(os.path.join(r, "big")) == b"old"
        # a correct txn works
        with open(os.path.join(r, ".metastore/txn"), "r+") as f:
            f.write('val("big") = "old"\n\nput big new\n\nput big lost\n')
            f.flush()
            f.seek(0)
            out = f.read()
        assert out.startswith("SUCCESS"), out
        assert read_file(os.path.join(r, "big")) == b"new"
        os.makedirs(os.path.join(r, "full/sub"))
        expect_errno(errno.ENOTEMPTY, os.rmdir, os.path.join(r, "full"))
        expect_errno(errno.EINVAL, os.rename, os.path.join(r, "full"), os.path.join(r, "full/sub/x"))
        expect_errno(errno.EPERM, os.link, os.path.join(r, "big"), os.path.join(r, "hard"))
        expect_errno(errno.EPERM, os.mkfifo, os.path.join(r, "fifo"))
    finally:
        cl.cleanup()


def s_no_quorum(_):
    cl = Cluster(BIN, n=3)
    try:
        cl.start_all()
        assert write_file(cl.path(1, "before"), "x") == 0
        cl.wait_applied()
        cl.kill(2)
        cl.kill(3)
        t0 = time.time()
        rc = write_file(cl.path(1, "after"), "y")
        took = time.time() - t0
        assert rc in (errno.ETIMEDOUT, errno.EIO, errno.ENOTCONN, errno.EAGAIN), errno.errorcode.get(rc, rc)
        assert took < 10.0, took
        t0 = time.time()
        expect_errno(errno.ETIMEDOUT, os.mkdir, cl.path(1, "dir"))
        assert time.time() - t0 < 10.0
        # reads are still answered from local state
        assert "before" in os.listdir(cl.path(1))
        st = os.stat(cl.path(1, "before"))
        assert st.st_size == 1
        print("    write failed with %s after %.2f s" % (errno.errorcode[rc], took))
    finally:
        cl.cleanup()


SCENARIOS = [("one-node-tools", s_one_node_tools), ("three-node-tools", s_three_node_tools),
             ("read-your-writes-everywhere", s_read_your_writes_everywhere),
             ("kill-leader-memory", s_kill_leader_memory), ("kill-leader-rocksdb", s_kill_leader_rocksdb),
             ("bad-input", s_bad_input), ("no-quorum", s_no_quorum)]


def main():
    run_scenarios(SCENARIOS, sys.argv[2:])


if __name__ == "__main__":
    main()
