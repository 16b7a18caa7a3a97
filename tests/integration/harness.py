"""harness.py - start and stop metastored clusters for integration tests.

Everything a test mounts lives under a fresh temp dir; only PIDs started here are signalled; every
mount is unmounted at the end (fusermount3 -u, lazily if busy, and a hung connection is aborted
through /sys/fs/fuse/connections/N/abort).
"""
import errno, os, shutil, signal, socket, subprocess, sys, tempfile, time

DEADLINE_S = 30.0


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def agreed_leader(statuses, among, leader_role, timeout=DEADLINE_S, poll_s=0.05):
    """The id every node in `among` names as leader, once that node's own status says it is
    (role == leader_role); statuses(among) -> {id: status dict}. Raises after timeout."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            sts = statuses(among)
            leads = {s["leader"] for s in sts.values()}
            if len(leads) == 1:
                l = int(leads.pop())
                if l in sts and sts[l]["role"] == leader_role:
                    return l
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(poll_s)
    raise AssertionError("no agreed leader among %s" % among)


def fuse_conn_abort(mnt):
    """Abort the FUSE connection of a hung mount (its device number names the connection)."""
    try:
        dev = os.stat(mnt).st_dev
    except OSError:
        dev = None
        try:  # a dead mount fails stat with ENOTCONN: find it in mountinfo instead
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    parts = line.split()
                    if parts[4] == mnt:
                        major, minor = parts[2].split(":")
                        dev = os.makedev(int(major), int(minor))
        except OSError:
            pass
    if dev is None:
        return
    path = "/sys/fs/fuse/connections/%d/abort" % os.minor(dev)
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError:
        pass


def is_mounted(mnt):
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == mnt for line in f)
    except OSError:
        return False


def unmount(mnt):
    if not is_mounted(mnt):
        return
    r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
    if r.returncode != 0:
        fuse_conn_abort(mnt)
        subprocess.run(["fusermount3", "-uz", mnt], capture_output=True)


class Cluster:
    def __init__(self, binary, n=3, engine="memory", extra=(), value_max=None):
        self.bin = binary
        self.n = n
        self.engine = engine
        self.extra = list(extra)
        self.value_max = value_max
        self.dir = tempfile.mkdtemp(prefix="ms-it-")
        self.ports = free_ports(n)
        self.procs = {}
        self.token = os.path.join(self.dir, "token")
        with open(self.token, "w") as f:
            f.write("integration-token-%d-0123456789" % os.getpid())
        os.chmod(self.token, 0o600)

    def mnt(self, i):
        return os.path.join(self.dir, "mnt", "n%d" % i)

    def path(self, i, rel=""):
        return os.path.join(self.mnt(i), rel)

    def data(self, i):
        return os.path.join(self.dir, "data", "n%d" % i)

    def log(self, i):
        try:
            with open(os.path.join(self.dir, "n%d.log" % i), errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def start(self, i, extra=()):
        os.makedirs(self.mnt(i), exist_ok=True)
        os.makedirs(self.data(i), exist_ok=True)
        args = [self.bin, "--id", str(i), "--data", self.data(i), "--engine", self.engine, "-f"]
        if self.n > 1:
            peers = ",".join("%d=127.0.0.1:%d" % (k, self.ports[k - 1]) for k in range(1, self.n + 1))
            args += ["--peers", peers, "--token-file", self.token]
        if self.value_max:
            args += ["--value-max", str(self.value_max)]
        args += self.extra + list(extra) + [self.mnt(i)]
        logf = open(os.path.join(self.dir, "n%d.log" % i), "a")
        self.procs[i] = subprocess.Popen(args, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        t0 = time.time()
        while True:
            if self.procs[i].poll() is not None:
                self.procs.pop(i)
                raise RuntimeError("node %d exited (%s): %s" % (i, args, self.log(i)))
            if is_mounted(self.mnt(i)):
                try:
                    self.status(i)
                    return
                except OSError:
                    pass
            if time.time() - t0 > DEADLINE_S:
                raise RuntimeError("node %d did not mount: %s" % (i, self.log(i)))
            time.sleep(0.02)

    def start_all(self):
        for i in range(1, self.n + 1):
            self.start(i)
        if self.n > 1:
            self.leader()

    def status(self, i):
        with open(self.path(i, ".metastore/status")) as f:
            return dict(line.split(": ", 1) for line in f.read().splitlines() if ": " in line)

    def leader(self, among=None, timeout=DEADLINE_S):
        return agreed_leader(lambda ids: {i: self.status(i) for i in ids}, among or sorted(self.procs),
                             "leader", timeout)

    def wait_applied(self, nodes=None, timeout=DEADLINE_S):
        """Wait until the given nodes have applied the same index (and so hold the same state)."""
        nodes = nodes or sorted(self.procs)
        t0 = time.time()
        while time.time() - t0 < timeout:
            try:
                a = {self.status(i)["applied_index"] for i in nodes}
                c = {self.status(i)["commit_index"] for i in nodes}
                if len(a) == 1 and a == c:
                    return
            except (OSError, KeyError):
                pass
            time.sleep(0.05)
        raise AssertionError("nodes %s did not converge" % nodes)

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs.pop(i)
        p.send_signal(sig)
        try:
            p.wait(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        unmount(self.mnt(i))

    def stop(self, i):
        """A clean stop: unmount, which makes the daemon exit."""
        p = self.procs.get(i)
        unmount(self.mnt(i))
        if p:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            self.procs.pop(i, None)

    def cleanup(self):
        if sys.exc_info()[0] is not None:  # a test failed: show what the nodes said
            for i in range(1, self.n + 1):
                print("--- node %d log tail ---\n%s" % (i, self.log(i)))
        for i in list(self.procs):
            self.stop(i)
        for i in range(1, self.n + 1):
            unmount(self.mnt(i))
        shutil.rmtree(self.dir, ignore_errors=True)


def write_file(path, data, mode="w"):
    """open/write/close; returns the errno of close() (0 on success) as a user sees it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
    except OSError as e:
        try:
            os.close(fd)
        except OSError:
            pass
        return e.errno
    try:
        os.close(fd)
    except OSError as e:
        return e.errno
    return 0


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def expect_errno(code, fn, *args):
    try:
        fn(*args)
    except OSError as e:
        assert e.errno == code, "expected %s, got %s" % (errno.errorcode[code], errno.errorcode.get(e.errno))
        return
    raise AssertionError("expected %s, call succeeded" % errno.errorcode[code])


def run_scenarios(scenarios, want, setup=None, on_fail=None, teardown=None):
    """Run (name, fn) scenarios (only those named in `want`, if any), print PASS/FAIL per
    scenario and `N passed, N failed`, and exit 1 if any failed. Each fn gets setup() (None
    without one); on_fail(it) runs after a failure's traceback, teardown(it) after every one."""
    import time, traceback
    passed = failed = 0
    for name, fn in scenarios:
        if want and name not in want:
            continue
        it = setup() if setup else None
        t0 = time.time()
        try:
            fn(it)
            passed += 1
            print("PASS %s (%.1f s)" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %s" % name, flush=True)
            traceback.print_exc()
            if on_fail:
                on_fail(it)
        finally:
            if teardown:
                teardown(it)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)

