#!/usr/bin/env python3
"""raft_bench.py - Raft throughput, commit latency and failover on 3 local processes.

    bench/raft_bench.py build/tests/fsm_node [--runs 3]

Starts 3 fsm_node processes (tests/raft/fsm_node.c) on 127.0.0.1 in a temp dir; the load runs
inside the leader (its BENCH command), so what is measured is the Raft path: batching, the log's
group commit with fdatasync, replication and apply, with no client round trips. Scenarios:
  sequential  1 proposal in flight        (latency of one commit)
  pipelined   50 proposals in flight      (target: p99 <= 5 ms)
  batched     5000 proposals in flight    (target: >= 200k ops/s of 100 B)
  failover    kill -9 of the leader until the survivors agree on a new one (target: <= 2 s)
Each scenario runs --runs times; the median run is reported, then one JSON line per scenario.
"""
import json, os, signal, statistics, sys, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "raft"))
sys.argv, bin_args = [sys.argv[0], sys.argv[1]], sys.argv[2:]
import proc_test as pt  # noqa: E402  (reuses its Cluster and Client)

runs = 3
if "--runs" in bin_args:
    runs = int(bin_args[bin_args.index("--runs") + 1])

SCENARIOS = [("sequential", 2000, 1, 100), ("pipelined", 50000, 50, 100), ("batched", 400000, 5000, 100)]


def bench(cl, node, n, out, size):
    c = pt.Client(cl.sock(node))
    c.s.settimeout(300)
    line = c.call(f"BENCH {n} {out} {size}")
    c.close()
    return {k: float(v) for k, v in (kv.split("=") for kv in line.split()[1:])}


def main():
    results = {}
    cl = pt.Cluster(3)
    try:
        cl.start_all()
        l = cl.leader()
        for name, n, out, size in SCENARIOS:
            rs = [bench(cl, l, n, out, size) for _ in range(runs)]
            rs.sort(key=lambda r: r["ops_per_s"])
            med = rs[len(rs) // 2]
            results[name] = med
            print("%-10s %8.0f ops/s  p50 %6.0f us  p99 %6.0f us  max %7.0f us  (%d ops, %d in flight, %d B; runs: %s)" %
                  (name, med["ops_per_s"], med["p50_us"], med["p99_us"], med["max_us"], n, out, size,
                   ", ".join("%.0f" % r["ops_per_s"] for r in rs)), flush=True)
        times = []
        for _ in range(runs):
            l = cl.leader()
            t0 = time.time()
            cl.kill(l)
            survivors = [i for i in cl.members if i != l]
            cl.leader(survivors)
            times.append(time.time() - t0)
            cl.start(l)
            pt.wait_same_state(cl, cl.members)
        med = statistics.median(times)
        results["failover"] = {"median_s": med, "runs_s": times}
        print("failover   median %.3f s (runs: %s)" % (med, ", ".join("%.3f" % t for t in times)))
    finally:
        cl.cleanup()
    for k, v in results.items():
        print(json.dumps({"scenario": k, **v}))


main()
