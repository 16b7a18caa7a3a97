#!/usr/bin/env python3
"""report.py - renders bench/run-bench's results as the markdown report.

    python3 bench/report.py RESULTS.json      print the report of a saved run (REPORT-*.json)

run-bench imports it: render(results) gives the whole report; the *_line helpers give the one-line
progress summaries it prints while it runs; fio_groups() extracts fio's JSON. The targets and the
reference figures are those of the issue "Benchmarks: the reference report's scenarios"; each
target is judged only on a clean measurement (no errors, nothing aborted), otherwise "missed".
"""
import json, sys

# Reference figures quoted by the issue (measured there, not here).
ETCD_REF = {"version": "3.4.23", "large_ops": 6371, "large_mean_ms": 7.1, "large_p99_ms": 19.6,
            "mixed_ops": 4827, "txn_ops": 2334, "watch_p99_ms": 7.8, "rss_mib": 134}
OLD_REF = {"large_ops": 921, "large_mean_ms": 54, "mixed_ops": 1300}

TARGETS = {"large_ops": 30000, "large_p99_ms": 5.0, "mixed_ops": 30000, "txn_ops": 10000,
           "watch_p99_ms": 10.0, "rocksdb_ratio": 0.80, "rss_mib": 40, "restart_s": 0.5,
           "rss_keys": 100000, "behind": 10000}

SCENARIO_ORDER = ["large-load", "sustained", "mixed", "watch", "txn"]


# ------------------------------------------------------------------ small formatting helpers

def ms(us):
    if us is None:
        return "-"
    v = us / 1000.0
    return "%.2f" % v if v >= 1 else "%.3f" % v


def num(x, digits=0):
    if x is None:
        return "-"
    return "{:,.{d}f}".format(x, d=digits)


def ratio(a, b):
    if a is None or b is None or not b:
        return None
    return a / b


def rx(a, b):
    r = ratio(a, b)
    return "-" if r is None else ("%.2f×" % r if r < 10 else "%.0f×" % r)


def mib(kib):
    return None if kib is None else kib / 1024.0


# Scenarios whose clients share keys: a get on the node where a put of the same key holds it
# open with O_TRUNC may read it empty, as on any POSIX filesystem (memfs shows it too; msbench's
# header says why). There a size_mismatch is reported, not judged; in mixed every key has one
# client, so a partial value there would be a real atomicity failure.
SHARED_KEYS = ("large-load", "sustained")


def judged_mismatch(r):
    return r.get("size_mismatch") if r.get("scenario") not in SHARED_KEYS else 0


def clean(r):
    """A scenario result fit to be judged: there, not aborted, no errors."""
    return bool(r) and not r.get("missing_json") and not r.get("aborted") and r.get("exit") is not None \
        and not any(r.get(k) for k in ("errors", "preload_errors", "range_mismatch")) and not judged_mismatch(r)


def problems(r):
    """Why a scenario result is not clean, in words (empty if it is)."""
    if not r:
        return "not run"
    out = []
    if r.get("missing_json"):
        out.append("msbench printed no result (exit %s)" % r.get("exit"))
    if r.get("exit") is None:
        out.append("killed at the timeout")
    elif r.get("exit") == 3:
        out.append("aborted by msbench --timeout")
    elif r.get("aborted"):
        out.append("aborted")
    if r.get("errors"):
        en = ", ".join("%s %d" % kv for kv in sorted((r.get("errno") or {}).items()))
        out.append("%d errors%s" % (r["errors"], " (%s)" % en if en else ""))
    if r.get("preload_errors"):
        out.append("%d preload errors" % r["preload_errors"])
    if judged_mismatch(r):
        out.append("%d gets saw a partial value (size_mismatch)" % r["size_mismatch"])
    if r.get("range_mismatch"):
        out.append("%d listings had the wrong entries (range_mismatch)" % r["range_mismatch"])
    return "; ".join(out)


# ------------------------------------------------------------------ one-line progress summaries

def one_line(r):
    if r.get("missing_json"):
        return "%s: no result (exit %s) %s" % (r.get("scenario"), r.get("exit"),
                                                (r.get("stderr_tail") or "").replace("\n", " | ")[-300:])
    s = "%s: %s ops/s, mean %s ms, p99 %s ms, errors %s" % (
        r.get("scenario"), num(r.get("ops_per_s")), ms(r.get("mean_us")), ms(r.get("p99_us")),
        r.get("errors"))
    if r.get("scenario") == "watch":
        s += ", delivered %s/%s, missing %s" % (r.get("delivered"), r.get("expected"), r.get("missing"))
    if r.get("scenario") == "txn":
        s += ", CAS %s/s, conflicts %s" % (num(r.get("cas_per_s")), r.get("conflicts"))
    if r.get("exit"):
        s += " (msbench exit %s)" % r.get("exit")
    if r.get("exit") is None:
        s += " (killed at the timeout)"
    return s


def fio_groups(data):
    """fio --output-format=json -> {group name: {files_per_s, clat mean/p99 us, ios, runtime}}."""
    out = {}
    for j in data["jobs"]:
        ios = iops = 0
        clat_mean = clat_p99 = None
        for ddir in ("read", "write", "trim"):
            d = j.get(ddir) or {}
            if not d.get("total_ios"):
                continue
            ios += d["total_ios"]
            iops += d.get("iops", 0.0)
            c = d.get("clat_ns") or {}
            clat_mean = c.get("mean", 0) / 1e3
            p = (c.get("percentile") or {}).get("99.000000")
            clat_p99 = p / 1e3 if p is not None else None
        out[j["jobname"]] = {"files_per_s": round(iops, 1), "ios": ios, "runtime_ms": j.get("job_runtime"),
                             "clat_mean_us": clat_mean, "clat_p99_us": clat_p99,
                             "error": j.get("error", 0)}
    return out


def fio_line(job, r):
    if r.get("error") and not r.get("groups"):
        return "fio %s: %s" % (job, r["error"][:300])
    return "fio %s: %s" % (job, ", ".join("%s %s files/s" % (g, num(v["files_per_s"]))
                                           for g, v in (r.get("groups") or {}).items()))


def rss_line(m):
    after = m.get("after") or {}
    return "RSS after %s keys: %s MiB (load %s keys/s)" % (
        num(m.get("keys_loaded")),
        " / ".join("%s %.1f" % (n, mib(v["rss_kib"])) for n, v in after.items() if v.get("rss_kib")),
        num((m.get("load") or {}).get("keys_per_s")))


def restart_line(r):
    if r.get("serve_s") is None:
        return "restart: %s (%s)" % (r.get("error", "no result"), r.get("last_error", ""))
    return "restart: n%s %s entries behind: mounted %.3f s, applied %.3f s, serves %.3f s" % (
        r.get("follower"), num(r.get("entries_behind")), r["mounted_s"], r["applied_s"], r["serve_s"])


# ------------------------------------------------------------------ targets

def judge(res):
    """[(target, measured, verdict)] for the issue's targets."""
    quick = res.get("quick")
    systems = res.get("systems") or {}
    mem = systems.get("memory") or {}
    rdb = systems.get("rocksdb") or {}
    sc = mem.get("scenarios") or {}
    rows = []

    def verdict(ok, r=None, extra_ok=True):
        if r is not None and not clean(r):
            return "MISSED (%s)" % problems(r)
        return "met" if ok and extra_ok else "MISSED"

    r = sc.get("large-load")
    if r and not r.get("missing_json"):
        ok = r["ops_per_s"] >= TARGETS["large_ops"] and r["p99_us"] / 1e3 <= TARGETS["large_p99_ms"]
        rows.append(("memory large-load ≥ 30,000 ops/s with p99 ≤ 5 ms",
                     "%s ops/s, p99 %s ms" % (num(r["ops_per_s"]), ms(r["p99_us"])), verdict(ok, r)))
    else:
        rows.append(("memory large-load ≥ 30,000 ops/s with p99 ≤ 5 ms", "-", "not measured"))
    r = sc.get("mixed")
    if r and not r.get("missing_json"):
        ok = r["ops_per_s"] >= TARGETS["mixed_ops"]
        mix = "" if r.get("mix_ok", True) else " (mix OFF target)"
        rows.append(("memory mixed ≥ 30,000 ops/s", "%s ops/s%s" % (num(r["ops_per_s"]), mix),
                     verdict(ok and r.get("mix_ok", True), r)))
    else:
        rows.append(("memory mixed ≥ 30,000 ops/s", "-", "not measured"))
    r = sc.get("txn")
    if r and not r.get("missing_json"):
        ok = r["ops_per_s"] >= TARGETS["txn_ops"]
        rows.append(("memory txn ≥ 10,000 txn/s",
                     "%s txn/s (%s successful CAS/s, %s conflicts)" % (
                         num(r["ops_per_s"]), num(r.get("cas_per_s")), num(r.get("conflicts"))),
                     verdict(ok, r)))
    else:
        rows.append(("memory txn ≥ 10,000 txn/s", "-", "not measured"))
    r = sc.get("watch")
    if r and not r.get("missing_json"):
        got = r.get("delivered") or 0
        ok = got > 0 and not r.get("missing") and r["p99_us"] / 1e3 <= TARGETS["watch_p99_ms"]
        meas = "p99 %s ms over %s/%s events delivered (missing %s)" % (
            ms(r["p99_us"]) if got else "-", num(got), num(r.get("expected")), num(r.get("missing")))
        v = verdict(ok, r)
        if r.get("missing") and clean(r):
            v = "MISSED (events missing)"
        rows.append(("watch p99 ≤ 10 ms (writers on n1, watchers on n3)", meas, v))
    else:
        rows.append(("watch p99 ≤ 10 ms (writers on n1, watchers on n3)", "-", "not measured"))
    rm = sc.get("large-load")
    rr = (rdb.get("scenarios") or {}).get("large-load")
    if rm and rr and not rm.get("missing_json") and not rr.get("missing_json"):
        q = ratio(rr["ops_per_s"], rm["ops_per_s"])
        rows.append(("RocksDB large-load ≥ 80% of memory's",
                     "%s vs %s ops/s = %.0f%%" % (num(rr["ops_per_s"]), num(rm["ops_per_s"]),
                                                  100 * (q or 0)),
                     verdict(q is not None and q >= TARGETS["rocksdb_ratio"], rr,
                             extra_ok=clean(rm))))
    else:
        rows.append(("RocksDB large-load ≥ 80% of memory's", "-",
                     "not measured" + (" (--skip-rocksdb)" if "--skip-rocksdb" in (res.get("argv") or [])
                                       else "")))
    for name, sysres in (("memory", mem), ("rocksdb", rdb)):
        m = sysres.get("rss")
        label = "≤ 40 MiB RSS per node after 100k keys of 100 B (%s)" % name
        if not m or not m.get("after"):
            if name == "memory" or "rocksdb" in systems:
                rows.append((label, "-", "not measured"))
            continue
        worst = max((v.get("rss_kib") or 0) for v in m["after"].values())
        meas = "max %.1f MiB after %s keys" % (mib(worst), num(m.get("keys_loaded")))
        load = m.get("load") or {}
        if m.get("keys_loaded", 0) < TARGETS["rss_keys"]:
            v = "n/a (only %s keys loaded)" % num(m.get("keys_loaded"))
        elif load.get("preload_errors") or load.get("exit") is None:
            v = "MISSED (the load had errors)"
        else:
            v = "met" if mib(worst) <= TARGETS["rss_mib"] else "MISSED"
        rows.append((label, meas, v))
    r = mem.get("restart")
    label = "a follower restarted 10k entries behind serves within 0.5 s"
    if r:
        if r.get("serve_s") is None:
            rows.append((label, r.get("error", "no result"), "MISSED"))
        else:
            meas = "%.3f s (%s entries behind; mounted %.3f s, applied %.3f s)" % (
                r["serve_s"], num(r.get("entries_behind")), r["mounted_s"], r["applied_s"])
            if r.get("entries_behind", 0) < TARGETS["behind"]:
                v = ("met" if r["serve_s"] <= TARGETS["restart_s"] else "MISSED") + \
                    " (but only %s entries behind)" % num(r.get("entries_behind"))
            else:
                v = "met" if r["serve_s"] <= TARGETS["restart_s"] else "MISSED"
            if r.get("write_errors"):
                v += "; %d write errors while it was down" % r["write_errors"]
            rows.append((label, meas, v))
    else:
        rows.append((label, "-", "not measured"))
    if quick:
        rows = [(a, b, c + " [quick]") for a, b, c in rows]
    return rows


# ------------------------------------------------------------------ sections

def scenario_table(sysres, floor, etcd_here):
    sc = sysres.get("scenarios") or {}
    fsc = (floor or {}).get("scenarios") or {}
    esc = (etcd_here or {}).get("scenarios") or {}
    lines = ["| scenario | clients | ops | ops/s | mean ms | p50 ms | p99 ms | p99.9 ms | max ms | errors "
             "| mix % | vs memfs (ops/s, p99) | vs etcd reference | load1 |",
             "|" + "---|" * 14]
    notes = []
    for name in SCENARIO_ORDER + sorted(set(sc) - set(SCENARIO_ORDER)):
        r = sc.get(name)
        if not r:
            continue
        if r.get("missing_json"):
            lines.append("| %s | - | - | - | - | - | - | - | - | - | - | - | - | %s |" % (
                name, num(r.get("load1_before"), 2)))
            notes.append("- **%s**: msbench printed no result (exit %s): `%s`" % (
                name, r.get("exit"), (r.get("stderr_tail") or "").replace("\n", " | ")[-400:]))
            continue
        clients = r.get("watchers") if name == "watch" else r.get("clients")
        lat = [r.get(k) for k in ("mean_us", "p50_us", "p99_us", "p999_us", "max_us")]
        if name == "watch" and not r.get("delivered"):
            lat = [None] * 5  # nothing delivered: no latency to show
        mix = ", ".join("%s %.0f" % kv for kv in (r.get("mix") or {}).items())
        f = fsc.get(name)
        vs_floor = "-"
        if f and not f.get("missing_json"):
            vs_floor = "%s, %s" % (rx(r["ops_per_s"], f["ops_per_s"]), rx(r["p99_us"], f["p99_us"]))
        vs_etcd = etcd_ratio(name, r)
        e = esc.get(name)
        if e and not e.get("error") and e.get("ops_per_s"):
            vs_etcd += "; here: %s" % rx(r["ops_per_s"], e["ops_per_s"])
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            name, clients, num(r.get("ops")), num(r.get("ops_per_s")), ms(lat[0]), ms(lat[1]),
            ms(lat[2]), ms(lat[3]), ms(lat[4]), num(r.get("errors")), mix, vs_floor, vs_etcd, num(r.get("load1_before"), 2)))
        notes.extend(scenario_notes(name, r))
    return lines, notes


def etcd_ratio(name, r):
    if name == "large-load":
        return "ops/s %s, mean %s, p99 %s" % (rx(r["ops_per_s"], ETCD_REF["large_ops"]),
                                             rx(r["mean_us"] / 1e3, ETCD_REF["large_mean_ms"]),
                                             rx(r["p99_us"] / 1e3, ETCD_REF["large_p99_ms"]))
    if name == "mixed":
        return "ops/s %s" % rx(r["ops_per_s"], ETCD_REF["mixed_ops"])
    if name == "txn":
        return "txn/s %s" % rx(r["ops_per_s"], ETCD_REF["txn_ops"])
    if name == "watch":
        return "p99 %s" % rx(r["p99_us"] / 1e3, ETCD_REF["watch_p99_ms"]) if r.get("delivered") else "-"
    return "-"


def scenario_notes(name, r):
    out = []
    bits = ["`msbench %s %s`" % (name, r.get("args", ""))]
    if r.get("roots"):
        bits.append("%s root(s)" % r["roots"])
    if name == "sustained":
        bits.append("target %s ops/s, achieved %s, %s ops behind schedule, p99 from schedule %s ms" % (
            num(r.get("target_ops_per_s")), num(r.get("achieved_ops_per_s")), num(r.get("behind_ops")),
            ms(r.get("sched_p99_us"))))
    if name == "mixed":
        bits.append("mix %s target" % ("on" if r.get("mix_ok") else "OFF"))
    if name == "watch":
        w = r.get("writer") or {}
        bits.append("delivery latency (event read − close() returned); %s/%s events delivered, "
                    "missing %s, early %s, duplicates %s, overflows %s; from the call p99 %s ms; "
                    "writer %s files/s (p99 %s ms)%s" % (
                        num(r.get("delivered")), num(r.get("expected")), num(r.get("missing")),
                        num(r.get("early")), num(r.get("duplicates")), num(r.get("overflows")),
                        ms((r.get("from_call") or {}).get("p99_us")), num(w.get("ops_per_s")),
                        ms(w.get("p99_us")),
                        "" if r.get("all_delivered_ms") is None
                        else "; all delivered %s ms after the last write" % num(r["all_delivered_ms"], 1)))
    if name == "txn":
        bo = (r.get("by_op") or {}).get("getxattr")
        bits.append("ops = txn attempts; %s successful CAS/s, %s conflicts, %s gave up%s" % (
            num(r.get("cas_per_s")), num(r.get("conflicts")), num(r.get("gave_up")),
            "; getxattr after a conflict p99 %s ms" % ms(bo["p99_us"]) if bo else ""))
    if r.get("preload_s") is not None:
        bits.append("preload %s s" % num(r["preload_s"], 1))
    cpu = r.get("daemon_cpu_s") or {}
    if cpu:
        bits.append("CPU s: client %s, %s" % (num(r.get("client_cpu_s"), 1),
                                              ", ".join("%s %s" % (k, num(v, 1)) for k, v in cpu.items())))
    if r.get("size_mismatch") and not judged_mismatch(r):
        bits.append("%d gets read a key while a put held it open with O_TRUNC on the same node (POSIX "
                    "allows the empty read; not judged)" % r["size_mismatch"])
    p = problems(r)
    if p or r.get("exit"):
        bits.append("**%s** (msbench exit %s)" % (p or "msbench reported a failure", r.get("exit")))
    if r.get("stderr_tail"):
        bits.append("stderr: `%s`" % r["stderr_tail"].replace("\n", " | ")[-400:])
    out.append("- **%s**: %s" % (name, "; ".join(bits)))
    return out


def fio_section(sysres, floor):
    fio = sysres.get("fio")
    if not fio:
        return []
    ffio = (floor or {}).get("fio") or {}
    where = "the memfs mount" if sysres.get("kind") == "memfs" else "node 1's mount"
    lines = ["", "fio (bench/fio, %s jobs × %s files, on %s; files/s = fio IOPS, one I/O per file):" % (
        (fio.get("meta") or {}).get("jobs", 4), (fio.get("meta") or {}).get("files_per_job"), where),
             "", "| job | phase | files/s | clat mean ms | clat p99 ms | vs memfs (files/s) | load1 |",
             "|---|---|---|---|---|---|---|"]
    for job in ("meta", "smallfile"):
        r = fio.get(job) or {}
        if r.get("error"):
            lines.append("| %s | - | - | - | - | - | %s |" % (job, num(r.get("load1_before"), 2)))
            lines.append("")
            lines.append("fio %s: %s" % (job, r["error"].replace("\n", " ")[:400]))
            lines.append("")
            continue
        for g, v in (r.get("groups") or {}).items():
            fv = (((ffio.get(job) or {}).get("groups") or {}).get(g) or {}).get("files_per_s")
            lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
                job, g, num(v["files_per_s"]), ms(v.get("clat_mean_us")), ms(v.get("clat_p99_us")),
                rx(v["files_per_s"], fv), num(r.get("load1_before"), 2)))
    return lines


def rss_section(sysres):
    m = sysres.get("rss")
    if not m:
        return []
    load = m.get("load") or {}
    lines = ["", "Memory: VmRSS of each daemon idle and after loading %s keys of 100 B through the three "
             "mounts (msbench large-load preload, 50 clients: %s keys/s%s):" % (
                 num(m.get("keys_loaded")), num(load.get("keys_per_s")),
                 ", %s errors" % load["preload_errors"] if load.get("preload_errors") else ""),
             "", "| node | RSS idle MiB | RSS after MiB | peak (VmHWM) MiB | keys | bytes | vs etcd 134 MB |",
             "|---|---|---|---|---|---|---|"]
    for n, a in (m.get("after") or {}).items():
        i = (m.get("idle") or {}).get(n) or {}
        lines.append("| %s | %s | %s | %s | %s | %s | %s |" % (
            n, num(mib(i.get("rss_kib")), 1), num(mib(a.get("rss_kib")), 1), num(mib(a.get("hwm_kib")), 1),
            num(a.get("keys")), num(a.get("bytes")), rx(mib(a.get("rss_kib")), ETCD_REF["rss_mib"])))
    if m.get("converge_error"):
        lines.append("")
        lines.append("The nodes had not converged when RSS was read: %s" % m["converge_error"])
    if load.get("exit") not in (0, None) or load.get("stderr_tail"):
        lines.append("")
        lines.append("The load's msbench exit %s: `%s`" % (load.get("exit"),
                                                          (load.get("stderr_tail") or "").replace("\n", " | ")))
    return lines


def restart_section(sysres):
    r = sysres.get("restart")
    if not r:
        return []
    if r.get("leader_commit") is None:
        return ["", "Follower restart: stopped before the restart (%s)." % (
            r.get("error") or sysres.get("error") or "no result")]
    lines = ["", "Follower restart: n%s stopped cleanly (unmounted) at applied index %s; %s keys "
             "written through the other nodes in %s s (%s write errors), leaving it %s entries behind "
             "the leader's commit index %s; then started again:" % (
                 r.get("follower"), num(r.get("applied_before")), num(r.get("keys_written")),
                 num(r.get("write_s"), 1), num(r.get("write_errors")), num(r.get("entries_behind")),
                 num(r.get("leader_commit"))), ""]
    if r.get("serve_s") is not None:
        lines.append("- mounted and answering /.metastore/status after %.3f s (polled every 20 ms)" %
                     r["mounted_s"])
        lines.append("- applied index ≥ the leader's commit index after %.3f s" % r["applied_s"])
        lines.append("- a read of the last key through it returned the written value after **%.3f s**" %
                     r["serve_s"])
    else:
        lines.append("- **%s** (last error: %s; applied after %s s)" % (
            r.get("error"), r.get("last_error"), r.get("applied_s")))
    lines.append("- afterwards: role %s, applied index %s, snapshots installed %s" % (
        r.get("role_after"), r.get("applied_after"), r.get("snapshots_installed")))
    return lines


def system_section(title, sysres, floor, etcd_here):
    lines = ["", "## %s" % title, ""]
    if sysres.get("error") and not sysres.get("scenarios"):
        lines.append("**Failed:** %s" % sysres["error"])
    meta = []
    if sysres.get("start_s") is not None:
        meta.append("3 nodes started and agreed on a leader in %s s" % num(sysres["start_s"], 1))
    if sysres.get("data_fs"):
        meta.append("Raft log and data on %s" % sysres["data_fs"])
    if sysres.get("rss_kib"):
        meta.append("memfs RSS at the end %.1f MiB" % mib(sysres["rss_kib"]))
    if meta:
        lines.append("; ".join(meta) + ".")
        lines.append("")
    if sysres.get("scenarios"):
        t, notes = scenario_table(sysres, floor, etcd_here)
        lines += t + [""] + notes
    lines += rss_section(sysres)
    lines += fio_section(sysres, floor if sysres.get("kind") != "memfs" else None)
    lines += restart_section(sysres)
    if sysres.get("error") and sysres.get("scenarios"):
        lines += ["", "**Stopped early:** %s" % sysres["error"]]
    for n, text in (sysres.get("logs") or {}).items():
        lines += ["", "<details><summary>%s log tail</summary>" % n, "", "```", text.strip(), "```",
                  "", "</details>"]
    return lines


def etcd_section(e):
    if not e:
        return []
    lines = ["", "## etcd on this machine (--etcd)", ""]
    if e.get("error"):
        lines.append("**Failed:** %s" % e["error"])
    if e.get("version"):
        lines.append("%s, 3 members on 127.0.0.1, data on %s; client: bench/etcd_load.py (Python asyncio, "
                     "HTTP/1.1 JSON to the gRPC gateway, one connection per client). Client CPU close to "
                     "the wall time means the client, not etcd, was the limit." % (e["version"], e.get("data_fs")))
        lines.append("")
    sc = e.get("scenarios") or {}
    if sc:
        lines += ["| scenario | clients | ops | ops/s | mean ms | p50 ms | p99 ms | p99.9 ms | max ms | errors "
                  "| client CPU s / wall s | notes |", "|" + "---|" * 12]
        for name, r in sc.items():
            if r.get("error"):
                lines.append("| %s | %s |" % (name, r["error"]))
                continue
            note = ""
            if r.get("mix"):
                note = "mix " + ", ".join("%s %.0f" % kv for kv in r["mix"].items())
            if name == "txn":
                note = "ops = txn attempts; %s successful CAS/s, %s conflicts" % (
                    num(r.get("cas_per_s")), num(r.get("conflicts")))
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s | %s |" % (
                name, r.get("clients"), num(r.get("ops")), num(r.get("ops_per_s")), ms(r.get("mean_us")),
                ms(r.get("p50_us")), ms(r.get("p99_us")), ms(r.get("p999_us")), ms(r.get("max_us")),
                num(r.get("errors")), num(r.get("client_cpu_s"), 1), num(r.get("wall_s"), 1), note))
    if e.get("rss"):
        m = e["rss"]
        lines += ["", "RSS per member idle: %s MiB; after %s keys of 100 B (%s keys/s, %s errors): %s MiB" % (
            ", ".join("%s %.1f" % (n, mib(v)) for n, v in (m.get("idle_kib") or {}).items() if v),
            num(m.get("keys_loaded")), num(m.get("keys_per_s")), num(m.get("load_errors")),
            ", ".join("%s %.1f" % (n, mib(v)) for n, v in (m.get("after_kib") or {}).items() if v))]
    lines += ["", "No watch loop for etcd (its watch is a gRPC stream); the issue's figure is quoted below."]
    return lines


def machine_lines(res):
    m = res.get("machine") or {}
    src = res.get("source") or {}
    la, lb = res.get("loadavg_before"), res.get("loadavg_after")
    fmt = lambda v: " ".join("%.2f" % x for x in v) if v else "-"  # noqa: E731
    lines = [
        "- command: `bench/run-bench %s` (took %s s); commit %s%s" % (
            " ".join(res.get("argv") or []), num(res.get("duration_s"), 0), src.get("commit") or "?",
            " plus uncommitted changes" if src.get("dirty") else ""),
        "- machine: %s CPUs usable (%s online), %s; kernel %s; %s MiB RAM; %s; host %s" % (
            m.get("nproc"), m.get("cpus_online"), m.get("model"), m.get("kernel"),
            num(m.get("mem_total_mib")), m.get("os"), m.get("hostname")),
        "- software: libfuse %s, %s, Python %s; temp dir (mounts, Raft logs, RocksDB) on %s" % (
            m.get("libfuse"), m.get("fio"), m.get("python"), m.get("tmp_fs")),
        "- load average (1/5/15 min): before %s, after %s" % (fmt(la), fmt(lb)),
    ]
    b = res.get("build") or {}
    if b:
        lines.append("- build: %s%s" % (b.get("how"), "" if b.get("ok") else " — FAILED"))
    if la and m.get("nproc") and la[0] > 0.5 * m["nproc"]:
        lines.append("- **the machine was busy** (load %.1f on %d CPUs before the run): every client, "
                     "daemon and the other users share the same cores, so the numbers are a floor of "
                     "what this code does, and ratios measured in the same run (vs memfs) are the fairer "
                     "comparison." % (la[0], m["nproc"]))
    return lines


def render(res):
    systems = res.get("systems") or {}
    floor = systems.get("memfs")
    etcd_here = systems.get("etcd")
    title = "# MetaStore benchmark — %s" % (res.get("started") or "?")
    out = [title, ""]
    if res.get("quick"):
        out += ["**QUICK run** (`--quick`: reduced loads to test the script; the verdicts below are not "
                "a measurement of the targets).", ""]
    if res.get("aborted"):
        why = " | ".join(l.strip() for l in res["aborted"].splitlines() if l.strip())
        out += ["**The run did not finish: %s.** What follows is what was measured before." %
                (why[:1500] + (" …" if len(why) > 1500 else "")), ""]
    out += machine_lines(res)
    out += ["", "## Targets", "",
            "From the issue \"Benchmarks: the reference report's scenarios\"; a target is met only by a "
            "clean run (no errors, nothing aborted or missing).", "",
            "| target | measured | verdict |", "|---|---|---|"]
    out += ["| %s | %s | %s |" % row for row in judge(res)]
    if "memory" in systems:
        out += system_section("MetaStore, memory engine, 3 nodes", systems["memory"], floor, etcd_here)
    if "rocksdb" in systems:
        out += system_section("MetaStore, RocksDB engine, 3 nodes", systems["rocksdb"], floor, etcd_here)
    if floor:
        out += system_section("The FUSE floor: memfs (../shared/fusefloor, one mount, no replication)",
                              floor, None, None)
    out += etcd_section(etcd_here)
    out += ["", "## Reference figures (quoted by the issue, not measured here)", "",
            "| system | large-load ops/s | mean ms | p99 ms | mixed ops/s | txn/s | watch p99 ms | "
            "RSS per member |", "|---|---|---|---|---|---|---|---|",
            "| etcd %s | %s | %s | %s | %s | %s | %s | %s MB after 100k keys |" % (
                ETCD_REF["version"], num(ETCD_REF["large_ops"]), ETCD_REF["large_mean_ms"],
                ETCD_REF["large_p99_ms"], num(ETCD_REF["mixed_ops"]), num(ETCD_REF["txn_ops"]),
                ETCD_REF["watch_p99_ms"], ETCD_REF["rss_mib"]),
            "| the replaced system | %s | %s | - | %s | - | - | - |" % (
                num(OLD_REF["large_ops"]), OLD_REF["large_mean_ms"], num(OLD_REF["mixed_ops"]))]
    mem_ll = ((systems.get("memory") or {}).get("scenarios") or {}).get("large-load")
    mem_mx = ((systems.get("memory") or {}).get("scenarios") or {}).get("mixed")
    if mem_ll and not mem_ll.get("missing_json"):
        out += ["", "Memory engine vs the replaced system: large-load %s ops/s, mean latency %s%s." % (
            rx(mem_ll["ops_per_s"], OLD_REF["large_ops"]), rx(mem_ll["mean_us"] / 1e3, OLD_REF["large_mean_ms"]),
            "; mixed %s ops/s" % rx(mem_mx["ops_per_s"], OLD_REF["mixed_ops"])
            if mem_mx and not mem_mx.get("missing_json") else "")]
    if res.get("notes"):
        out += ["", "## Notes from the run", ""] + ["- %s" % n for n in res["notes"]]
    out += ["", "Ratios: \"vs memfs\" is MetaStore ÷ memfs measured in this run with the same msbench "
            "arguments (ops/s below 1× and p99 above 1× are MetaStore's cost); \"vs etcd reference\" "
            "divides by the issue's etcd figures, measured on another machine, and \"here\" by etcd measured "
            "in this run (--etcd). Raw results: the .json file beside this report.", ""]
    return "\n".join(out)


def main(argv):
    if len(argv) != 2:
        print("usage: report.py RESULTS.json", file=sys.stderr)
        return 2
    with open(argv[1]) as f:
        print(render(json.load(f)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
