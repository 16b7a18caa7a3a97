"""etcd_load.py - msbench's loops against etcd on this machine, for `bench/run-bench --etcd`.

The issue quotes etcd 3.4.23's figures from another machine; Debian 12 ships the same etcd
(etcd-server, etcd-client), so this runs a 3-member etcd cluster on 127.0.0.1 (data in the run's
temp dir, on the same disk as MetaStore's Raft logs) and drives it with the same shapes of load as
msbench: large-load (50% put / 50% get of 100 B values over 10k keys), mixed (40 put / 40 get /
10 range / 10 delete, keys owned per client so gets and deletes hit live keys), txn (CAS on the
mod revision over 100 keys) and the RSS of each member after 100k keys. No watch loop (etcd's
watch is a gRPC stream; the issue's figure is quoted instead).

The client is Python asyncio speaking HTTP/1.1 JSON to etcd's gRPC gateway, one keep-alive
connection per client; there is no Go toolchain here for etcd's own `benchmark`. A Python client
costs far more CPU per request than msbench, so each result carries the client's CPU seconds: when
they approach the wall time, the client was the limit and etcd's number is a floor. Latencies are
exact percentiles over every sample.
"""
import asyncio, base64, json, os, random, shutil, socket, subprocess, time

START_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
HEADER_BYTES_MAX = 65536
BODY_BYTES_MAX = 16 << 20
TXN_RETRIES_MAX = 100


def ensure_installed():
    """Installs etcd-server and etcd-client with apt-get if etcd or etcdctl is missing."""
    if shutil.which("etcd") and shutil.which("etcdctl"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    pkgs = ["etcd-server", "etcd-client"]
    r = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + pkgs, env=env, capture_output=True)
    if r.returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, capture_output=True)
        r = subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + pkgs, env=env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("apt-get install etcd-server etcd-client failed: %s" % r.stderr[-500:])


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class EtcdCluster:
    """n etcd members on 127.0.0.1 under dir; only the processes started here are signalled."""

    def __init__(self, dir, n=3):
        self.dir = dir
        self.n = n
        ports = free_ports(2 * n)
        self.client_ports, self.peer_ports = ports[:n], ports[n:]
        self.procs = {}

    def endpoint(self, i):
        return ("127.0.0.1", self.client_ports[i - 1])

    def start(self):
        os.makedirs(self.dir, exist_ok=True)
        initial = ",".join("m%d=http://127.0.0.1:%d" % (i, self.peer_ports[i - 1])
                           for i in range(1, self.n + 1))
        for i in range(1, self.n + 1):
            cu = "http://127.0.0.1:%d" % self.client_ports[i - 1]
            pu = "http://127.0.0.1:%d" % self.peer_ports[i - 1]
            args = ["etcd", "--name", "m%d" % i, "--data-dir", os.path.join(self.dir, "m%d" % i),
                    "--listen-client-urls", cu, "--advertise-client-urls", cu,
                    "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
                    "--initial-cluster", initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "run-bench-%d" % os.getpid(), "--log-level", "warn"]
            logf = open(os.path.join(self.dir, "m%d.log" % i), "w")
            self.procs[i] = subprocess.Popen(args, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
            logf.close()
        t0 = time.monotonic()
        while time.monotonic() - t0 < START_DEADLINE_S:
            for i, p in self.procs.items():
                if p.poll() is not None:
                    raise RuntimeError("etcd m%d exited: %s" % (i, self.log(i)))
            if all(self.healthy(i) for i in self.procs):
                return
            time.sleep(0.1)
        raise RuntimeError("etcd did not become healthy in %.0f s" % START_DEADLINE_S)

    def log(self, i):
        try:
            with open(os.path.join(self.dir, "m%d.log" % i), errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def healthy(self, i):
        try:
            with socket.create_connection(self.endpoint(i), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = b""
                while len(data) < HEADER_BYTES_MAX:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            return b'"health":"true"' in data
        except OSError:
            return False

    def version(self):
        try:
            out = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout
            return out.splitlines()[0].strip()
        except (OSError, IndexError):
            return "etcd"

    def stop(self):
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()


# ------------------------------------------------------------------ HTTP/1.1 keep-alive client

def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


class Conn:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.r = self.w = None

    async def open(self):
        self.r, self.w = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.w:
            self.w.close()

    async def post(self, path, obj):
        body = json.dumps(obj).encode()
        self.w.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (path.encode(), self.host.encode(), len(body)) + body)
        head = await self.r.readuntil(b"\r\n\r\n")
        if len(head) > HEADER_BYTES_MAX:
            raise IOError("header too long")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdr = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            hdr[k.strip().lower()] = v.strip()
        if "content-length" in hdr:
            n = int(hdr["content-length"])
            if n > BODY_BYTES_MAX:
                raise IOError("body too long")
            data = await self.r.readexactly(n)
        elif hdr.get("transfer-encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.r.readuntil(b"\r\n")
                    break
                if len(data) + size > BODY_BYTES_MAX:
                    raise IOError("body too long")
                data += await self.r.readexactly(size)
                await self.r.readexactly(2)
        else:
            raise IOError("response without length")
        if status != 200:
            raise IOError("HTTP %d: %s" % (status, data[:200]))
        return json.loads(data) if data else {}


def stats(name, clients, lats, errors, wall_s, cpu_s, extra=None):
    lats.sort()
    n = len(lats)

    def q(p):
        return lats[min(n - 1, int(p * n))] * 1e6 if n else None

    r = {"scenario": name, "clients": clients, "ops": n, "ops_per_s": round(n / wall_s, 1) if wall_s else 0,
         "mean_us": sum(lats) / n * 1e6 if n else None, "p50_us": q(0.5), "p99_us": q(0.99),
         "p999_us": q(0.999), "max_us": lats[-1] * 1e6 if n else None, "errors": errors,
         "wall_s": round(wall_s, 3), "client_cpu_s": round(cpu_s, 3)}
    r.update(extra or {})
    return r


async def with_conns(cluster, clients, fn):
    """Runs fn(client_index, conn) for each client, conns spread over the members."""
    conns = [Conn(*cluster.endpoint(1 + c % cluster.n)) for c in range(clients)]
    try:
        await asyncio.gather(*(c.open() for c in conns))
        return await asyncio.gather(*(fn(i, conns[i]) for i in range(clients)))
    finally:
        for c in conns:
            c.close()


async def preload(cluster, prefix, keys, value, clients=50):
    errors = [0]

    async def one(i, conn):
        for k in range(i, keys, clients):
            try:
                await conn.post("/v3/kv/put", {"key": b64("%s/k%07d" % (prefix, k)), "value": value})
            except (IOError, OSError, ValueError, asyncio.IncompleteReadError):
                errors[0] += 1

    await with_conns(cluster, clients, one)
    return errors[0]


async def large_load(cluster, clients, ops, keys, value):
    await preload(cluster, "ll", keys, value)
    lats, errors = [], [0]
    clock = Clock()

    async def one(i, conn):
        rnd = random.Random(i + 1)
        for _ in range(ops):
            k = b64("ll/k%07d" % rnd.randrange(keys))
            t = time.perf_counter()
            try:
                if rnd.random() < 0.5:
                    await conn.post("/v3/kv/put", {"key": k, "value": value})
                else:
                    await conn.post("/v3/kv/range", {"key": k})
                lats.append(time.perf_counter() - t)
            except (IOError, OSError, ValueError, asyncio.IncompleteReadError):
                errors[0] += 1

    await with_conns(cluster, clients, one)
    return lats, errors[0], clock.stop()


async def mixed(cluster, clients, duration_s, keys, value, range_dirs=8, range_entries=50):
    for d in range(range_dirs):
        await preload(cluster, "mx-range/d%d" % d, range_entries, value, clients=10)
    await preload(cluster, "mx", keys, value)
    lats, errors = [], [0]
    mix = {"put": 0, "get": 0, "range": 0, "delete": 0}
    clock = Clock()
    end = time.monotonic() + duration_s

    async def one(i, conn):
        rnd = random.Random(i + 1)
        mine = list(range(i, keys, clients))
        live = set(mine)
        while time.monotonic() < end:
            x = rnd.random()
            op = "put" if x < 0.4 or not live else "get" if x < 0.8 else "range" if x < 0.9 else "delete"
            t = time.perf_counter()
            try:
                if op == "put":
                    k = rnd.choice(mine)
                    await conn.post("/v3/kv/put", {"key": b64("mx/k%07d" % k), "value": value})
                    live.add(k)
                elif op == "get":
                    k = rnd.choice(tuple(live))
                    await conn.post("/v3/kv/range", {"key": b64("mx/k%07d" % k)})
                elif op == "range":
                    p = "mx-range/d%d/" % rnd.randrange(range_dirs)
                    end_key = p[:-1] + chr(ord(p[-1]) + 1)
                    await conn.post("/v3/kv/range", {"key": b64(p), "range_end": b64(end_key)})
                else:
                    k = rnd.choice(tuple(live))
                    await conn.post("/v3/kv/deleterange", {"key": b64("mx/k%07d" % k)})
                    live.discard(k)
                mix[op] += 1
                lats.append(time.perf_counter() - t)
            except (IOError, OSError, ValueError, asyncio.IncompleteReadError):
                errors[0] += 1

    await with_conns(cluster, clients, one)
    return lats, errors[0], clock.stop(), mix


async def txn(cluster, clients, ops, keys, value):
    await preload(cluster, "tx", keys, value, clients=10)
    lats, errors = [], [0]
    done = [0]
    conflicts = [0]
    clock = Clock()

    async def one(i, conn):
        rnd = random.Random(i + 1)
        known = {}
        for _ in range(ops):  # each CAS is retried until it succeeds, like msbench's
            k = rnd.randrange(keys)
            key = b64("tx/k%07d" % k)
            for _ in range(TXN_RETRIES_MAX):
                t = time.perf_counter()
                try:
                    ans = await conn.post("/v3/kv/txn", {
                        "compare": [{"key": key, "target": "MOD", "result": "EQUAL",
                                     "mod_revision": str(known.get(k, 0))}],
                        "success": [{"request_put": {"key": key, "value": value}}],
                        "failure": [{"request_range": {"key": key}}]})
                    lats.append(time.perf_counter() - t)
                    if ans.get("succeeded"):
                        done[0] += 1
                        known[k] = int(ans["header"]["revision"])
                        break
                    conflicts[0] += 1  # the failure branch's read tells the current revision
                    kvs = ans["responses"][0]["response_range"].get("kvs") or []
                    known[k] = int(kvs[0]["mod_revision"]) if kvs else 0
                except (IOError, OSError, ValueError, KeyError, IndexError,
                        asyncio.IncompleteReadError):
                    errors[0] += 1
                    break

    await with_conns(cluster, clients, one)
    return lats, errors[0], clock.stop(), done[0], conflicts[0]


class Clock:
    """Wall and this process's CPU time of the measured part of a loop (not its preload)."""

    def __init__(self):
        self.t0, self.c0 = time.monotonic(), time.process_time()

    def stop(self):
        return time.monotonic() - self.t0, time.process_time() - self.c0


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def run_all(cluster, sysres, quick, rss_keys, value_bytes, log):
    """Fills sysres["scenarios"] and sysres["rss"] like run-bench does for MetaStore."""
    value = b64(b"v" * value_bytes)
    sc = sysres["scenarios"]
    p = {"clients": 10, "ops": 200, "keys": 1000, "duration": 3, "tclients": 4, "tops": 100} if quick else \
        {"clients": 50, "ops": 1000, "keys": 10000, "duration": 20, "tclients": 10, "tops": 1000}
    mclients = 10 if quick else 30

    log("  etcd RSS load (%d keys) ..." % rss_keys)
    idle = {"m%d" % i: rss_kib(pr.pid) for i, pr in cluster.procs.items()}
    t0 = time.monotonic()
    errs = asyncio.run(preload(cluster, "rss", rss_keys, value))
    sysres["rss"] = {"keys_loaded": rss_keys, "idle_kib": idle, "load_errors": errs,
                     "keys_per_s": round(rss_keys / (time.monotonic() - t0), 1),
                     "after_kib": {"m%d" % i: rss_kib(pr.pid) for i, pr in cluster.procs.items()}}

    log("  etcd large-load ...")
    lats, errors, (wall, cpu) = asyncio.run(large_load(cluster, p["clients"], p["ops"], p["keys"], value))
    sc["large-load"] = stats("large-load", p["clients"], lats, errors, wall, cpu)
    log("    etcd large-load: %.0f ops/s (client CPU %.1f s of %.1f s)" % (
        sc["large-load"]["ops_per_s"], cpu, wall))

    log("  etcd mixed ...")
    lats, errors, (wall, cpu), mix = asyncio.run(mixed(cluster, mclients, p["duration"], p["keys"], value))
    total = sum(mix.values()) or 1
    sc["mixed"] = stats("mixed", mclients, lats, errors, wall, cpu,
                        {"mix": {k: round(100.0 * v / total, 2) for k, v in mix.items()}})
    log("    etcd mixed: %.0f ops/s (client CPU %.1f s of %.1f s)" % (sc["mixed"]["ops_per_s"], cpu, wall))

    log("  etcd txn ...")
    lats, errors, (wall, cpu), done, conflicts = asyncio.run(txn(cluster, p["tclients"], p["tops"], 100, value))
    sc["txn"] = stats("txn", p["tclients"], lats, errors, wall, cpu,
                      {"cas_per_s": round(done / wall, 1) if wall else 0, "conflicts": conflicts})
    log("    etcd txn: %.0f txn/s (client CPU %.1f s of %.1f s)" % (sc["txn"]["ops_per_s"], cpu, wall))
