#!/usr/bin/env python3
"""proc_test.py - Raft process tests: real fsm_node processes on 127.0.0.1.

Each scenario starts its own nodes in a fresh temp dir, talks to them over their unix sockets
(protocol in tests/raft/fsm_node.c), and stops only the PIDs it started. Usage:
    proc_test.py FSM_NODE_BINARY [scenario ...]      (no scenario: all of them)
Prints one line per scenario and ends with `N passed, N failed`.
"""
import os, random, shutil, signal, socket, subprocess, sys, tempfile, time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree from the import below
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import agreed_leader, free_ports, run_scenarios  # noqa: E402

BIN = sys.argv[1]
DEADLINE_S = 30.0  # generous upper bound for anything to converge on a loaded 2-core machine


class Client:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(DEADLINE_S)
        self.s.connect(path)
        self.buf = b""

    def send(self, line):
        self.s.sendall(line.encode() + b"\n")

    def recv(self):
        while b"\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("node closed the connection")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def call(self, line):
        self.send(line)
        return self.recv()

    def close(self):
        self.s.close()


class Cluster:
    def __init__(self, n, token=None, extra=()):
        self.dir = tempfile.mkdtemp(prefix="ms-raftproc-")
        self.n = n
        self.ports = free_ports(n + 2)
        self.procs = {}
        self.extra = list(extra)
        self.token = os.path.join(self.dir, "token")
        with open(self.token, "w") as f:
            f.write(token or "cluster-token-0123456789abcdef")
        os.chmod(self.token, 0o600)
        self.members = list(range(1, n + 1))

    def peers(self, ids):
        return ",".join(f"{i}=127.0.0.1:{self.ports[i - 1]}" for i in ids)

    def sock(self, i):
        return os.path.join(self.dir, f"n{i}.sock")

    def start(self, i, members=None, token_file=None, extra=()):
        data = os.path.join(self.dir, f"n{i}")
        os.makedirs(data, exist_ok=True)
        if os.path.exists(self.sock(i)):
            os.unlink(self.sock(i))
        args = [BIN, "--id", str(i), "--peers", self.peers(members or self.members), "--data", data,
                "--client", self.sock(i), "--token-file", token_file or self.token] + self.extra + list(extra)
        log = open(os.path.join(self.dir, f"n{i}.log"), "a")
        self.procs[i] = subprocess.Popen(args, stdout=log, stderr=log)
        t0 = time.time()
        while not os.path.exists(self.sock(i)):
            if self.procs[i].poll() is not None:
                raise RuntimeError(f"node {i} exited: " + self.log(i))
            if time.time() - t0 > DEADLINE_S:
                raise RuntimeError(f"node {i} did not open its socket")
            time.sleep(0.02)

    def start_all(self):
        for i in self.members:
            self.start(i)

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs.pop(i)
        p.send_signal(sig)
        p.wait(timeout=DEADLINE_S)

    def log(self, i):
        try:
            with open(os.path.join(self.dir, f"n{i}.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def status(self, i):
        c = Client(self.sock(i))
        try:
            line = c.call("STATUS")
        finally:
            c.close()
        return dict(kv.split("=") for kv in line.split()[1:])

    def state(self, i):
        c = Client(self.sock(i))
        try:
            _, count, h, applied = c.call("STATE").split()
        finally:
            c.close()
        return int(count), int(h), int(applied)

    def leader(self, among=None, timeout=DEADLINE_S):
        """The id every live node agrees is leader (and that says it is), or raise."""
        return agreed_leader(lambda ids: {i: self.status(i) for i in ids}, among or list(self.procs),
                             "3", timeout, poll_s=0.02)  # fsm_node reports the role as a number

    def stop(self):
        for i in list(self.procs):
            p = self.procs.pop(i)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def put_many(cl, node, ids, size=100, window=50):
    """Propose ids through `node` with up to `window` outstanding; return the ids acknowledged."""
    c = Client(cl.sock(node))
    acked, errs = [], 0
    it = iter(ids)
    out = 0
    try:
        for i in it:
            c.send(f"PUT {i} {size}")
            out += 1
            if out >= window:
                r = c.recv().split()
                out -= 1
                if r[0] == "OK":
                    acked.append(int(r[1]))
                else:
                    errs += 1
        while out:
            r = c.recv().split()
            out -= 1
            if r[0] == "OK":
                acked.append(int(r[1]))
            else:
                errs += 1
    except (OSError, ConnectionError):
        pass  # the node died under us: what was acknowledged stays acknowledged
    finally:
        c.close()
    return acked, errs


def has_all(cl, node, ids):
    c = Client(cl.sock(node))
    missing = []
    try:
        for i in ids:
            if c.call(f"HAS {i}").split()[2] != "1":
                missing.append(i)
    finally:
        c.close()
    return missing


def wait_same_state(cl, nodes, timeout=DEADLINE_S):
    t0 = time.time()
    while time.time() - t0 < timeout:
        states = {i: cl.state(i)[:2] for i in nodes}
        if len(set(states.values())) == 1:
            return states[nodes[0]]
        time.sleep(0.05)
    raise AssertionError("states differ: %s" % {i: cl.state(i) for i in nodes})


# ------------------------------------------------------------------ scenarios

def t_election(cl):
    cl.start_all()
    l = cl.leader()
    terms = {cl.status(i)["term"] for i in cl.members}
    assert len(terms) == 1, terms
    acked, errs = put_many(cl, l, range(1, 201))
    assert len(acked) == 200 and errs == 0, (len(acked), errs)
    for i in cl.members:  # a follower's proposals are forwarded and acknowledged too
        acked, errs = put_many(cl, i, range(1000 * i, 1000 * i + 100))
        assert len(acked) == 100, (i, len(acked), errs)
    wait_same_state(cl, cl.members)


def t_kill_leader_under_load(cl):
    cl.start_all()
    l = cl.leader()
    follower = next(i for i in cl.members if i != l)
    import threading
    result = {}

    def load():
        result["acked"], result["errs"] = put_many(cl, follower, range(1, 4001), window=20)

    th = threading.Thread(target=load)
    th.start()
    time.sleep(0.3)
    t_kill = time.time()
    cl.kill(l)
    survivors = [i for i in cl.members if i != l]
    nl = cl.leader(survivors, timeout=DEADLINE_S)
    failover_s = time.time() - t_kill
    th.join(timeout=120)
    acked = result["acked"]
    assert nl != l
    assert failover_s <= 2.0, "failover took %.2f s" % failover_s
    assert len(acked) > 0
    for i in survivors:
        missing = has_all(cl, i, acked)
        assert not missing, (i, missing[:10])
    cl.start(l)  # restarted from its data dir, it catches up
    wait_same_state(cl, cl.members)
    assert not has_all(cl, l, acked)
    print("    failover %.3f s, %d acked, %d errors" % (failover_s, len(acked), result["errs"]))


def t_restart_all(cl):
    cl.start_all()
    l = cl.leader()
    acked, _ = put_many(cl, l, range(1, 2001))
    assert len(acked) == 2000
    before = wait_same_state(cl, cl.members)
    for i in cl.members:
        cl.kill(i)
    cl.start_all()
    cl.leader()
    after = wait_same_state(cl, cl.members)
    assert after == before, (before, after)
    for i in cl.members:
        assert not has_all(cl, i, acked)


def t_snapshot_catch_up(cl, fork=False):
    cl.extra = ["--snapshot-entries", "200", "--trailing-entries", "50", "--snapshot-fork", "1" if fork else "0"]
    cl.start_all()
    l = cl.leader()
    lag = next(i for i in cl.members if i != l)
    cl.kill(lag)
    for k in range(10):  # many small entries so the leader snapshots and compacts
        acked, _ = put_many(cl, l, range(k * 300 + 1, k * 300 + 301), window=1)
        assert len(acked) == 300
    st = cl.status(l)
    assert int(st["first"]) > 1 and int(st["snap"]) > 0, st
    cl.start(lag)
    wait_same_state(cl, cl.members)
    assert int(cl.status(lag)["snap"]) > 0  # it got there through a snapshot
    assert not has_all(cl, lag, range(1, 3001))
    logs = ""
    for i in cl.members:
        with open(os.path.join(cl.dir, f"n{i}.log")) as f:
            logs += f.read()
    assert ("written by the child" in logs) == fork, "snapshot path (forked child or loop) not the one asked"


def t_snapshot_catch_up_forked(cl):
    """The same with snapshots written by a forked child (raft_node_config_t.snapshot_fork)."""
    t_snapshot_catch_up(cl, fork=True)


def t_membership(cl):
    cl.start_all()
    l = cl.leader()
    put_many(cl, l, range(1, 301))
    new = cl.n + 1
    cl.start(new, members=cl.members + [new])
    c = Client(cl.sock(l))
    r = c.call(f"ADD {new} 127.0.0.1 {cl.ports[new - 1]}")
    c.close()
    assert r == "OK", r
    cl.members.append(new)
    put_many(cl, l, range(1001, 1101))
    wait_same_state(cl, cl.members)
    # The leader promotes the caught-up learner on a tick; until that change commits a REMOVE
    # is refused with EBUSY (one membership change at a time): retry, as a client must.
    deadline = time.time() + 10
    while True:
        l = cl.leader()
        c = Client(cl.sock(l))
        r = c.call(f"REMOVE {new}")
        c.close()
        if r != "ERR -16" or time.time() > deadline:
            break
        time.sleep(0.05)
    assert r == "OK", r
    cl.members.remove(new)
    acked, _ = put_many(cl, cl.leader(cl.members), range(2001, 2101))
    assert len(acked) == 100
    wait_same_state(cl, cl.members)
    assert cl.state(new)[0] < cl.state(cl.members[0])[0]  # removed: gets no more entries


def t_wrong_token(cl):
    """A member restarted with the wrong token is refused by its peers: it gets nothing."""
    cl.start_all()
    l = cl.leader()
    victim = next(i for i in cl.members if i != l)
    acked, _ = put_many(cl, l, range(1, 101))
    assert len(acked) == 100
    wait_same_state(cl, cl.members)
    cl.kill(victim)
    bad = os.path.join(cl.dir, "bad-token")
    with open(bad, "w") as f:
        f.write("not-the-cluster-token-0000000000")
    os.chmod(bad, 0o600)
    cl.start(victim, token_file=bad)
    others = [i for i in cl.members if i != victim]
    acked, _ = put_many(cl, cl.leader(others), range(1001, 1201))
    assert len(acked) == 200
    time.sleep(1.0)
    count = cl.state(victim)[0]
    assert count <= 100, "a node with the wrong token received entries (%d)" % count
    logs = "".join(cl.log(i) for i in others).lower()
    assert "handshake" in logs and "failed" in logs, "auth failure not logged"
    assert cl.leader(others) in others  # the intruder did not disrupt the cluster


SCENARIOS = [("election", t_election), ("kill-leader-under-load", t_kill_leader_under_load),
             ("restart-all", t_restart_all), ("snapshot-catch-up", t_snapshot_catch_up),
             ("snapshot-catch-up-forked", t_snapshot_catch_up_forked),
             ("membership", t_membership), ("wrong-token", t_wrong_token)]


def print_logs(cl):
    for i in range(1, cl.n + 2):
        print(f"--- node {i} log tail ---\n" + cl.log(i))


def main():
    run_scenarios(SCENARIOS, sys.argv[2:], setup=lambda: Cluster(3), on_fail=print_logs,
                  teardown=lambda cl: cl.cleanup())


if __name__ == "__main__":
    main()
