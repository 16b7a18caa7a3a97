#!/usr/bin/env python3
"""fuse_requests.py - FUSE requests and commits per everyday operation, from /.metastore/status.

    bench/fuse_requests.py METASTORED

Mounts a one-node store in a temp dir, runs each shell operation 100 times, and prints the
per-operation delta of the op_* request counters and of commits (revision) read from
/.metastore/status (the status reads themselves are subtracted)."""
import os, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
from harness import Cluster  # noqa: E402

N = 100


def counters(cl):
    st = cl.status(1)
    c = {k[3:]: int(v.split()[0].split("=")[1]) for k, v in st.items() if k.startswith("op_")}
    c["commits(revision)"] = int(st["revision"])
    c["read_barriers"] = int(st["read_barrier"].split()[0].split("=")[1])
    return c


def main():
    cl = Cluster(sys.argv[1], n=1)
    try:
        cl.start_all()
        root = cl.path(1)
        ops = [("echo v > existing", "echo v > f{i}", "echo old > f{i}"),
               ("echo v > new", "echo v > n{i}", None),
               ("cat f", "cat f{i} > /dev/null", None),
               ("stat f (cached)", "stat f{i} > /dev/null", None),
               ("rm f", "rm f{i}", None)]
        base = counters(cl)
        empty = {k: v for k, v in counters(cl).items()}  # cost of one status read
        status_cost = {k: empty[k] - base[k] for k in base}
        print("%-20s %s" % ("operation", "requests per operation (nonzero)"))
        for name, cmd, prep in ops:
            if prep:
                for i in range(N):
                    subprocess.run(["bash", "-c", prep.format(i=i)], cwd=root, check=True)
            before = counters(cl)
            for i in range(N):
                subprocess.run(["bash", "-c", cmd.format(i=i)], cwd=root, check=True)
            time.sleep(0.2)
            after = counters(cl)
            per = {k: (after[k] - before[k] - status_cost[k]) / N for k in after}
            print("%-20s %s" % (name, ", ".join("%s=%.2f" % (k, v) for k, v in sorted(per.items()) if v > 0.005)))
    finally:
        cl.cleanup()


main()
