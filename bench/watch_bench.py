#!/usr/bin/env python3
"""watch_bench.py - inotify on MetaStore: delivery latency, replay throughput, cost of replay.

    bench/watch_bench.py BUILD_DIR [--runs N] [--json]

BUILD_DIR holds fs/metastored and bench/msbench. Each measurement starts its own 3-node cluster
(memory engine) under a temp dir (tests/integration/harness.py) and stops it. Three measurements:

  latency     msbench's watch scenario: 4 writer threads on node 1 create 1,000 files at 1,000/s
              (open, write, close); watchers on node 2 (1, then 100) stamp each CLOSE_WRITE.
              Delivery = watcher stamp - the moment the writer's close() returned (same host,
              same CLOCK_MONOTONIC). Target: p99 <= 10 ms at 1,000 events/s. For reference the
              same run with the watcher on node 1 itself (the kernel's own events, no replay).
  throughput  bursts of changes made by transactions on node 1 (10 txns x 1,000 puts), replayed
              on node 2 only (nodes 1 and 3 run -o inotify=off so that three replays do not share
              the two cores of this box); an inotifywait on node 2 counts the events. Reported:
              changes/s from the first txn to the last event, for new files in 1 directory, new
              files over 16 directories, and then new contents of those same files (MODIFY).
              Target: >= 10,000 changes/s.
  cost        the replay on a node nobody watches: node 1 runs msbench large-load (8 clients,
              puts and gets); node 2, which no one watches, runs once with inotify=on and once
              with -o inotify=off. Reported: node 2's CPU time (user+sys, /proc) per remote
              change, and node 1's throughput, both ways.

Numbers are medians over --runs (default 1: keep it short on a shared machine). Ends with one
JSON line when --json is given.
"""
import json, os, statistics, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from harness import Cluster  # noqa: E402

BUILD = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else "build"
RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 1
BIN = os.path.join(BUILD, "fs", "metastored")
MSBENCH = os.path.join(BUILD, "bench", "msbench")
OFF = ["-o", "inotify=off"]


def cluster(off_nodes=(), extra_all=()):
    cl = Cluster(BIN, n=3, extra=list(extra_all))
    for i in (1, 2, 3):
        cl.start(i, extra=OFF if i in off_nodes else [])
    cl.leader()
    return cl


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def txn(root, text):
    fd = os.open(os.path.join(root, ".metastore/txn"), os.O_RDWR)
    try:
        os.write(fd, text.encode())
        out = os.read(fd, 1 << 20).decode()
    finally:
        os.close(fd)
    if not out.startswith("SUCCESS"):
        raise RuntimeError("txn failed: %s" % out[:200])


def msbench_json(args):
    r = subprocess.run([MSBENCH] + args + ["--json-only"], capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if not lines:
        raise RuntimeError("msbench %s: %s %s" % (args, r.stdout[-500:], r.stderr[-500:]))
    return json.loads(lines[-1])


# ------------------------------------------------------------------ latency

def latency(watchers, watch_node):
    cl = cluster()
    try:
        j = msbench_json(["watch", "--watchers", str(watchers), "--events", "1000", "--rate", "1000",
                          "--watch-event", "close_write", "--watch-root", cl.mnt(watch_node), "--dir",
                          "lat", cl.mnt(1)])
        return {"p50_ms": j["p50_us"] / 1e3, "p99_ms": j["p99_us"] / 1e3, "max_ms": j["max_us"] / 1e3,
                "delivered": j.get("ops"), "errors": j.get("errors")}
    finally:
        cl.cleanup()


# ------------------------------------------------------------------ throughput

class EventCounter:
    """inotifywait -m -r on a root; counts lines of one event kind, stamps each arrival."""

    def __init__(self, root, event):
        self.p = subprocess.Popen(["inotifywait", "-m", "-r", "-e", event, "--format", "%e %w%f", root],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.count, self.first, self.last = 0, None, None
        for line in self.p.stderr:
            if "Watches established" in line:
                break
        self.t = threading.Thread(target=self.read, daemon=True)
        self.t.start()

    def read(self):
        for _ in self.p.stdout:
            now = time.monotonic()
            self.count += 1
            self.first = self.first or now
            self.last = now

    def wait(self, n, timeout=120):
        t0 = time.time()
        while self.count < n and time.time() - t0 < timeout:
            time.sleep(0.005)
        return self.count >= n

    def stop(self):
        self.p.terminate()
        self.p.wait()


def burst(cl, keys, value):
    bodies = []
    for j in range(0, len(keys), 1000):
        bodies.append("".join('put "%s" "%s-%d"\n' % (k, value, i) for i, k in enumerate(keys[j:j + 1000])))
    t0 = time.monotonic()
    for b in bodies:
        txn(cl.mnt(1), "\n" + b + "\n")
    return t0


def throughput():
    cl = cluster(off_nodes=(1, 3))
    out = {}
    try:
        n = 10000
        for name, dirs in (("create_1_dir", 1), ("create_16_dirs", 16)):
            top = "t" + name
            for d in range(dirs):
                os.makedirs(cl.path(1, "%s/d%d" % (top, d)))
            cl.wait_applied()
            time.sleep(0.2)
            ec = EventCounter(cl.path(2, top), "create")
            keys = ["%s/d%d/k%05d" % (top, i % dirs, i) for i in range(n)]
            t0 = burst(cl, keys, "v")
            ok = ec.wait(n)
            ec.stop()
            out[name] = {"changes": n, "seen": ec.count, "per_s": n / (ec.last - t0) if ok else None}
            if name == "create_16_dirs":  # the same files again: new contents
                time.sleep(0.5)
                ec = EventCounter(cl.path(2, top), "close_write")
                t0 = burst(cl, keys, "second")
                ok = ec.wait(n)
                ec.stop()
                out["modify_16_dirs"] = {"changes": n, "seen": ec.count,
                                         "per_s": n / (ec.last - t0) if ok else None}
        st = cl.status(2)
        out["node2"] = {k: st[k] for k in st if k.startswith("replay")}
        return out
    finally:
        cl.cleanup()


# ------------------------------------------------------------------ cost

def cost(inotify):
    cl = cluster(off_nodes=(1, 3) if inotify else (1, 2, 3))
    try:
        pid2 = cl.procs[2].pid
        ev0 = int(cl.status(2)["applied_events"])
        c0 = cpu_s(pid2)
        j = msbench_json(["large-load", "--clients", "8", "--ops", "1500", "--keys", "4000", "--value-bytes", "100",
                          "--dir", "cost", cl.mnt(1)])
        cl.wait_applied()
        c1 = cpu_s(pid2)
        ev1 = int(cl.status(2)["applied_events"])
        changes = ev1 - ev0
        return {"node2_cpu_s": c1 - c0, "changes": changes, "node2_cpu_us_per_change": (c1 - c0) / changes * 1e6,
                "node1_ops_per_s": j["ops_per_s"], "node1_p99_us": j["p99_us"]}
    finally:
        cl.cleanup()


def median_of(fn, *args):
    runs = [fn(*args) for _ in range(RUNS)]
    if RUNS == 1:
        return runs[0]
    out = {}
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and v is not None:
            out[k] = statistics.median(r[k] for r in runs)
        else:
            out[k] = v
    return out


def main():
    for path in (BIN, MSBENCH):
        if not os.path.exists(path):
            sys.exit("%s is missing: build first (ninja -C %s)" % (path, BUILD))
    res = {}
    res["latency_1_watcher_node2"] = median_of(latency, 1, 2)
    res["latency_100_watchers_node2"] = median_of(latency, 100, 2)
    res["latency_1_watcher_node1_local"] = median_of(latency, 1, 1)
    for k in ("latency_1_watcher_node2", "latency_100_watchers_node2", "latency_1_watcher_node1_local"):
        v = res[k]
        print("%-32s p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms  (events %s, errors %s)" % (
            k, v["p50_ms"], v["p99_ms"], v["max_ms"], v["delivered"], v["errors"]), flush=True)
    t = throughput()
    res["throughput"] = t
    for k in ("create_1_dir", "create_16_dirs", "modify_16_dirs"):
        v = t[k]
        print("%-32s %s changes/s (%d of %d events seen)" % (
            "replay " + k, "%.0f" % v["per_s"] if v["per_s"] else "n/a", v["seen"], v["changes"]), flush=True)
    res["cost_inotify_on"] = median_of(cost, True)
    res["cost_inotify_off"] = median_of(cost, False)
    for k in ("cost_inotify_on", "cost_inotify_off"):
        v = res[k]
        print("%-32s node 2: %.2f s CPU for %d changes (%.1f us/change); node 1: %.0f ops/s, p99 %.0f us" % (
            k, v["node2_cpu_s"], v["changes"], v["node2_cpu_us_per_change"], v["node1_ops_per_s"],
            v["node1_p99_us"]), flush=True)
    if "--json" in sys.argv:
        print(json.dumps(res))


if __name__ == "__main__":
    main()
