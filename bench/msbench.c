/* msbench.c - MetaStore's load generator: clients doing file operations on mount paths.
 *
 *   msbench SCENARIO[,SCENARIO...] [options] ROOT[,ROOT2,...]
 *   msbench selftest
 *
 * msbench knows nothing of MetaStore's internals: it opens, reads, writes, closes, lists and
 * unlinks files under the given mount roots (one per node; clients are spread round-robin over
 * them) and watches them with inotify, so the same run works against any filesystem (tmpfs, the
 * fusefloor memfs, a MetaStore mount) and the ratio between them is the cost of MetaStore.
 * Everything lives in a fresh working directory ROOT/DIR (--dir, default msbench-<pid>), one
 * subdirectory per scenario. The ROOTs must be mounts of one store: a key written through one
 * is read through another.
 *
 * Scenarios (defaults in brackets; every run ends at its op count or duration, whichever first):
 *   large-load  [50 clients x 1000 ops] 50% put / 50% get, uniform over --keys [10000] keys
 *               preloaded in parallel (untimed). put = open(O_WRONLY|O_CREAT|O_TRUNC), write
 *               --value-bytes [100], close; get = open, read to EOF, close.
 *   sustained   [20 clients at --rate 100 ops/s each for 30 s] the same mix, each client paced by
 *               absolute deadlines (start + i / rate; a late op is not made up by sleeping less
 *               later, it runs at once); reports the achieved rate, the ops that started more than
 *               one period late, and the latency measured from each op's scheduled start too.
 *   mixed       [30 clients for 20 s] 40% put / 40% get / 10% range / 10% delete. Keys are split
 *               between clients (key i belongs to client i % clients), so each client knows which
 *               of its keys exist: get and delete pick a live key, put any key (re-creating deleted
 *               ones, so the key space does not drain); an ENOENT is therefore a real error. range =
 *               opendir + readdir to the end + closedir of one of --range-dirs [8] directories of
 *               --range-entries [50] files (before the clock starts each client waits, at most
 *               10 s, until its root lists them all: a node shows a file made elsewhere once its
 *               watch replay created it). The realized mix is reported and must be within 2
 *               points of the target.
 *   watch       --watchers [100] threads, each with its own inotify fd watching the scenario
 *               directory itself (not recursively) on --watch-root [the first ROOT];
 *               --writers [4] threads create --events [1000] files through the ROOTs (event i
 *               through ROOT i % ROOTs) at --rate [1000/s] together: writer w writes events w,
 *               w + N, w + 2N, ... at rate / N each, starting w / rate after the first, so event
 *               i is due at i / rate (one writer cannot keep up: a create through a replicated
 *               mount takes about 2 ms; more writers than events are cut to one per event).
 *               "behind_ops" counts writes that started more than one writer's period (N / rate)
 *               late. The watched event is --watch-event [close_write]: the writer's syscall
 *               making it is close (close_write), the creating open (create) or a rename from a
 *               temporary name (moved_to). The writer stamps the time just before that syscall
 *               and the time it returned; each watcher stamps an event when its read() returns.
 *               "delivery" is watcher stamp - return stamp (what a user sees after close()
 *               returned; an event read before the syscall returned counts as 0 and as "early":
 *               common when the watchers watch the writer's own mount), "from_call" is watcher
 *               stamp - call stamp (never negative). Reports both histograms over all watchers,
 *               missing events (waiting at most --watch-timeout [10 s] after the last writer's
 *               end), duplicates, IN_Q_OVERFLOWs, and the time from the last write until
 *               everything was delivered. The "write" row and the "writer" object cover all
 *               writers: ops per second over the time from the first one's start to the last
 *               one's end, one latency histogram. The kernel emits events only for changes made
 *               through the watched mount: with --watch-root on another node, the daemon's
 *               replay makes them.
 *   txn         [10 clients x 1000 CAS over --keys 100 keys] each CAS writes
 *               `mod("K") = "REV"` / `put "K" "V"` / `get "K"` to a fresh open fd of
 *               ROOT/.metastore/txn and reads the answer from it (msbench_txn.h). A client keeps
 *               the mod revision it last saw per key (the answer's revision after its own
 *               success); on FAILURE it re-reads user.metastore.mod_revision and retries (up to
 *               --txn-retries [100]). So "conflicts" counts stale knowledge (another client
 *               changed the key since this one last saw it), not only truly concurrent CAS.
 *               Latency is per txn attempt; the getxattr after a conflict is reported apart.
 *               Without ROOT/.metastore/txn the run fails at once (exit 2).
 *   all         large-load, sustained, mixed, watch (txn only when named).
 *   selftest    checks the histogram and the txn text and answer parsing; needs no ROOT.
 *
 * Options: --clients N, --ops N (per client; not watch: --events), --duration S, --rate R
 * (per-client ops/s, any scenario; all writers' together in watch), --keys N, --value-bytes B,
 * --name-bytes B [16] (names are "k" and a zero-padded number), --dir NAME, --watch-root ROOT,
 * --watchers W, --writers N [4, 1..64], --events E, --watch-event close_write|create|moved_to,
 * --watch-timeout S, --range-dirs N, --range-entries N, --txn-retries N, --seed N [1],
 * --timeout S [300] (global: on expiry the clients are told to stop; if some are stuck inside a
 * syscall on a hung mount, msbench says where, prints the partial report and exits 3 anyway),
 * --cleanup (remove ROOT/DIR afterwards), --json-only, --dry-run (print the plan and, for txn,
 * the text of sample txns; touches no mount).
 *
 * Besides errors, a get that read another size than --value-bytes counts as "size_mismatch": a
 * put that is not atomic (truncate, then write) shows readers an empty file meanwhile.
 *
 * Output: per scenario a table for people (unless --json-only) and one JSON line:
 * {"scenario", "ops", "ops_per_s", "mean_us", "p50_us", "p99_us", "p999_us", "max_us", "errors",
 * "errno": {NAME: n}, "mix": {op: percent}, "by_op": {op: {...}}, ...}. Latencies come from
 * per-thread log-linear histograms (msbench_hist.h), merged; never from samples. Errors are
 * counted per errno, never fatal. Exit: 0 clean, 1 some scenario had errors, a mix off target
 * or missing events, 2 bad usage or setup, 3 aborted by --timeout.
 */
#include "msbench_hist.h"
#include "msbench_txn.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define ROOTS_MAX 64u
#define CLIENTS_MAX 4096u
#define KEYS_MAX 10000000u
#define VALUE_BYTES_MAX (1u << 20)
#define TXN_VALUE_BYTES_MAX 4096u
#define NAME_BYTES_MAX 255u
#define DIR_NAME_BYTES_MAX 200u
#define WATCHERS_MAX 1000u
#define WRITERS_MAX 64u
#define EVENTS_MAX 10000000u
#define WATCH_SLOTS_MAX (8u << 20) /* watchers * events stamps of 8 bytes: 64 MiB */
#define RANGE_DIRS_MAX 10000u
#define RANGE_ENTRIES_MAX 100000u
#define READDIR_ENTRIES_MAX 1000000u
#define TXN_ANSWER_BYTES_MAX 65536u
#define TXN_RETRIES_MAX 1000000u
#define SCENARIOS_MAX 8u
#define ERRNO_SLOTS 134u /* errno values 1..133 (EHWPOISON); slot 0 counts anything else */
#define IO_RETRIES_MAX 64u
#define PATH_BYTES 4096u
#define REL_BYTES 256u /* DIR/scenario: DIR_NAME_BYTES_MAX plus a scenario name */
#define EXTRA_BYTES 4096u
#define SLEEP_SLICE_NS 100000000ull  /* sleeps wake this often to notice an abort */
#define SETUP_WAIT_NS 10000000000ull /* a directory made through one root must show on the others */
#define ABORT_GRACE_NS 5000000000ull
#define WATCH_POLL_MS 50
#define NS_PER_S 1000000000ull

#define XATTR_MOD_REVISION "user.metastore.mod_revision"

/* ------------------------------------------------------------------ time and randomness */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

static struct timespec ts_of(uint64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / NS_PER_S), .tv_nsec = (long)(ns % NS_PER_S)};
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256**: each client has its own stream, seeded from --seed and its id. */
static uint64_t rng_next(uint64_t s[4])
{
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

static void rng_seed(uint64_t s[4], uint64_t seed, uint64_t stream)
{
	uint64_t x = seed ^ (stream * 0xd1342543de82ef95ull);
	for (int i = 0; i < 4; i++)
		s[i] = splitmix64(&x);
}

/* Uniform in [0, n); the modulo bias is below n / 2^64. */
static uint64_t rng_below(uint64_t s[4], uint64_t n)
{
	assert(n > 0);
	return rng_next(s) % n;
}

/* ------------------------------------------------------------------ options and plans */

typedef enum scenario {
	SC_LARGE_LOAD,
	SC_SUSTAINED,
	SC_MIXED,
	SC_WATCH,
	SC_TXN,
	SC_COUNT,
} scenario_t;

static const char *const scenario_names[SC_COUNT] = {"large-load", "sustained", "mixed", "watch", "txn"};

typedef enum op_kind {
	OP_PUT,
	OP_GET,
	OP_RANGE,
	OP_DELETE,
	OP_TXN,
	OP_XATTR,
	OP_KINDS,
} op_kind_t;

static const char *const op_names[OP_KINDS] = {"put", "get", "range", "delete", "txn", "getxattr"};

/* Counters besides ops and errors; each scenario reports the ones it can produce. */
typedef enum stat_kind {
	ST_SIZE_MISMATCH,  /* a get read another size than --value-bytes */
	ST_BEHIND,         /* paced ops that started more than one (of their client's) period late */
	ST_PRELOAD_ERRORS, /* failed puts of the untimed preload */
	ST_RANGE_MISMATCH, /* a listing without exactly --range-entries names */
	ST_CAS_DONE,       /* CAS that succeeded (possibly after retries) */
	ST_CONFLICTS,      /* txn answers FAILURE */
	ST_GAVE_UP,        /* CAS that still failed after --txn-retries */
	ST_DUPLICATES,     /* an event a watcher had already seen */
	ST_OVERFLOWS,      /* IN_Q_OVERFLOW */
	ST_FOREIGN,        /* events for names the writers did not write */
	ST_COUNT,
} stat_kind_t;

static const char *const stat_names[ST_COUNT] = {
    "size_mismatch", "behind_ops", "preload_errors", "range_mismatch", "cas_done",
    "conflicts",     "gave_up",    "duplicates",     "overflows",      "foreign_events",
};

#define UNSET_U64 UINT64_MAX
#define UNSET_D (-1.0)

typedef struct opts {
	uint64_t clients, ops, keys, value_bytes, name_bytes, watchers, writers, events, range_dirs;
	uint64_t range_entries, txn_retries, seed;
	double duration_s, rate, timeout_s, watch_timeout_s;
	uint32_t watch_mask;
	const char *watch_event;
	const char *watch_root;
	char dir[DIR_NAME_BYTES_MAX + 1];
	bool json_only, cleanup, dry_run;
	scenario_t scenarios[SCENARIOS_MAX];
	uint32_t n_scenarios;
	const char *roots[ROOTS_MAX];
	uint32_t n_roots;
	char *roots_arg; /* owns the strings in roots */
} opts_t;

/* One scenario's resolved parameters: the options over the scenario's defaults. */
typedef struct plan {
	scenario_t sc;
	uint32_t clients;     /* worker threads (watch: watchers; the writers come on top) */
	uint64_t ops_max;     /* per client; 0 = no limit (watch: all writers' together) */
	uint64_t duration_ns; /* 0 = no limit */
	double rate;          /* per client ops/s (watch: all writers' together); 0 = unpaced */
	uint32_t keys;
	uint32_t weights[OP_KINDS]; /* percent */
	bool partitioned;
	uint32_t range_dirs, range_entries;
	uint32_t events;  /* watch */
	uint32_t writers; /* watch: writer threads, 1..min(WRITERS_MAX, events); 0 elsewhere */
	uint32_t txn_retries;
} plan_t;

static uint64_t opt_u64(uint64_t v, uint64_t dflt) { return v == UNSET_U64 ? dflt : v; }
static double opt_d(double v, double dflt) { return v < 0 ? dflt : v; }

static void plan_make(const opts_t *o, scenario_t sc, plan_t *p)
{
	memset(p, 0, sizeof *p);
	p->sc = sc;
	uint64_t clients = 1, ops = 0, keys = 10000;
	double duration_s = 0, rate = 0;
	switch (sc) {
	case SC_LARGE_LOAD:
		clients = 50, ops = 1000;
		break;
	case SC_SUSTAINED:
		clients = 20, duration_s = 30, rate = 100;
		break;
	case SC_MIXED:
		clients = 30, duration_s = 20;
		break;
	case SC_WATCH:
		rate = 1000, keys = 0;
		break;
	case SC_TXN:
		clients = 10, ops = 1000, keys = 100;
		break;
	default:
		assert(0);
	}
	p->clients = (uint32_t)(sc == SC_WATCH ? opt_u64(o->watchers, 100) : opt_u64(o->clients, clients));
	p->ops_max = opt_u64(o->ops, ops);
	p->duration_ns = (uint64_t)(opt_d(o->duration_s, duration_s) * 1e9);
	p->rate = opt_d(o->rate, rate);
	p->keys = (uint32_t)(sc == SC_WATCH ? 0 : opt_u64(o->keys, keys));
	if (sc == SC_MIXED) {
		p->weights[OP_PUT] = 40, p->weights[OP_GET] = 40, p->weights[OP_RANGE] = 10,
		p->weights[OP_DELETE] = 10;
		p->partitioned = true;
		p->range_dirs = (uint32_t)opt_u64(o->range_dirs, 8);
		p->range_entries = (uint32_t)opt_u64(o->range_entries, 50);
	} else if (sc == SC_LARGE_LOAD || sc == SC_SUSTAINED) {
		p->weights[OP_PUT] = 50, p->weights[OP_GET] = 50;
	}
	p->events = (uint32_t)opt_u64(o->events, 1000);
	if (sc == SC_WATCH) {
		p->ops_max = p->events; /* all writers' together */
		uint64_t writers = opt_u64(o->writers, 4);
		p->writers = (uint32_t)(writers < p->events ? writers : p->events);
		assert(p->writers >= 1 && p->writers <= WRITERS_MAX);
	}
	p->txn_retries = (uint32_t)opt_u64(o->txn_retries, 100);
}

/* ------------------------------------------------------------------ state */

typedef struct bench bench_t;
typedef struct run run_t;

/* A rendezvous of the worker threads with main: workers arrive and wait; main waits for the
 * arrivals, then opens. Unlike pthread_barrier it tolerates a thread that failed to start. */
typedef struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t arrived;
	bool open;
} gate_t;

typedef struct client {
	run_t *r;
	uint32_t id;
	const char *root;
	pthread_t thread;
	bool started;
	/* Guards the results below: main merges them at the end, the watchdog on an abort. */
	pthread_mutex_t mu;
	msb_hist_t *hist[OP_KINDS];
	msb_hist_t *sched; /* paced runs: latency from the scheduled start */
	uint64_t ops[OP_KINDS], errs[OP_KINDS];
	uint64_t errnos[ERRNO_SLOTS];
	uint64_t stat[ST_COUNT];
	/* What the client is inside of, for the report of a hung mount: kind + 1 (0 = nothing). */
	_Atomic uint32_t busy_kind;
	_Atomic uint64_t busy_since_ns;
	uint64_t start_ns, end_ns; /* start_ns: watch writers only */
	uint64_t rng[4];
	char path[PATH_BYTES];
	char *buf; /* get and txn answers */
	size_t buf_bytes;
	/* mixed: the client's own keys are id + j * clients; live[0, n_live) lists the live j and
	 * pos[j] is j's index in live, or -1. */
	uint32_t *live;
	int32_t *pos;
	uint32_t n_own, n_live;
	/* txn */
	int64_t *known_rev;
	char *txn_text;
	size_t txn_text_bytes;
	/* watch: a watcher's first-read stamp per event (0 = not seen), n_seen of them set */
	uint64_t *seen_ns;
	uint32_t n_seen;
	bool watch_ok;
} client_t;

struct run {
	bench_t *b;
	plan_t p;
	char rel[REL_BYTES]; /* DIR/scenario, below each root */
	client_t *clients;
	uint32_t n_clients; /* including the watch writers */
	gate_t loaded, go;
	uint64_t start_ns, end_ns; /* end_ns: the duration's deadline, UINT64_MAX if none */
	uint64_t preload_ns, prepare_ns;
	char *value; /* --value-bytes of 'v', read-only */
	atomic_bool error_printed, mismatch_printed;
	/* watch */
	const char *watch_root;
	uint64_t *writer_ns;                /* per event: when its syscall returned, 0 = failed or not made */
	uint64_t *writer_call_ns;           /* per event: just before that syscall was made */
	_Atomic uint64_t watch_deadline_ns; /* set by the last writer to finish */
	_Atomic int64_t writes_ok;          /* -1 until every writer is done */
	_Atomic int64_t writes_ok_sum;      /* of the writers done so far */
	_Atomic uint32_t writers_left;      /* writers still writing */
	uint64_t writer_start_ns, writer_end_ns; /* first writer's start, last one's end */
};

struct bench {
	opts_t o;
	atomic_bool abort;
	uint64_t start_ns;
	pthread_mutex_t mu; /* guards the fields below and serializes reports */
	pthread_cond_t cv;
	bool finished;
	const char *phase;
	run_t *run;
};

static bool aborted(const run_t *r) { return atomic_load_explicit(&r->b->abort, memory_order_relaxed); }

static void gate_init(gate_t *g)
{
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
	g->arrived = 0;
	g->open = false;
}

static void gate_destroy(gate_t *g)
{
	pthread_cond_destroy(&g->cv);
	pthread_mutex_destroy(&g->mu);
}

static void gate_pass(gate_t *g)
{
	pthread_mutex_lock(&g->mu);
	g->arrived++;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_wait_arrivals(gate_t *g, uint32_t n)
{
	pthread_mutex_lock(&g->mu);
	while (g->arrived < n)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_t *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* Sleeps until the monotonic time t_ns in slices, so an abort is noticed. -ECANCELED on abort. */
static int sleep_until(const run_t *r, uint64_t t_ns)
{
	for (;;) {
		if (aborted(r)) return -ECANCELED;
		uint64_t now = now_ns();
		if (now >= t_ns) return 0;
		uint64_t until = t_ns - now > SLEEP_SLICE_NS ? now + SLEEP_SLICE_NS : t_ns;
		struct timespec ts = ts_of(until);
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	}
}

static void client_busy(client_t *c, op_kind_t kind)
{
	atomic_store_explicit(&c->busy_since_ns, now_ns(), memory_order_relaxed);
	atomic_store_explicit(&c->busy_kind, (uint32_t)kind + 1u, memory_order_relaxed);
}

static void client_record(client_t *c, op_kind_t kind, uint64_t t0_ns, uint64_t sched_ns, int rc)
{
	assert(kind < OP_KINDS && rc <= 0);
	uint64_t t1 = now_ns();
	atomic_store_explicit(&c->busy_kind, 0, memory_order_relaxed);
	pthread_mutex_lock(&c->mu);
	c->ops[kind]++;
	msb_hist_record(c->hist[kind], t1 - t0_ns);
	if (sched_ns) msb_hist_record(c->sched, t1 - sched_ns);
	if (rc < 0) {
		c->errs[kind]++;
		c->errnos[-rc < (int)ERRNO_SLOTS ? -rc : 0]++;
	}
	pthread_mutex_unlock(&c->mu);
}

static void client_stat(client_t *c, stat_kind_t st, uint64_t n)
{
	pthread_mutex_lock(&c->mu);
	c->stat[st] += n;
	pthread_mutex_unlock(&c->mu);
}

/* Prints the first failure of a run to stderr: enough to tell a misconfiguration from noise. */
static void report_first_error(client_t *c, const char *what, const char *path, int rc)
{
	if (atomic_exchange(&c->r->error_printed, true)) return;
	const char *name = strerrorname_np(-rc);
	fprintf(stderr, "msbench: %s: first error: %s %s: %s (%s)\n", scenario_names[c->r->p.sc], what, path,
	        name ? name : "E?", strerror(-rc));
}

/* ------------------------------------------------------------------ file operations */

static int write_all(int fd, const char *p, size_t len)
{
	size_t done = 0;
	for (uint32_t tries = 0; done < len && tries < IO_RETRIES_MAX; tries++) {
		ssize_t n = write(fd, p + done, len - done);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) return -errno;
		if (n == 0) return -EIO;
		done += (size_t)n;
	}
	return done == len ? 0 : -EIO;
}

/* Reads to EOF or until cap bytes; *got is what was read. */
static int read_all(int fd, char *buf, size_t cap, size_t *got)
{
	size_t done = 0;
	for (uint32_t tries = 0; done < cap && tries < IO_RETRIES_MAX; tries++) {
		ssize_t n = read(fd, buf + done, cap - done);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) return -errno;
		if (n == 0) break;
		done += (size_t)n;
	}
	*got = done;
	return 0;
}

static int file_put(const char *path, const char *value, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return -errno;
	int rc = write_all(fd, value, len);
	if (close(fd) != 0 && rc == 0) rc = -errno; /* close carries the commit's error */
	return rc;
}

static int file_get(const char *path, char *buf, size_t cap, size_t *got)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) return -errno;
	int rc = read_all(fd, buf, cap, got);
	if (close(fd) != 0 && rc == 0) rc = -errno;
	return rc;
}

/* Lists a directory to its end; *entries counts names other than "." and "..". */
static int dir_list(const char *path, uint32_t *entries)
{
	DIR *d = opendir(path);
	if (!d) return -errno;
	uint32_t n = 0;
	int rc = 0;
	for (uint32_t i = 0; i < READDIR_ENTRIES_MAX; i++) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e) {
			rc = -errno;
			break;
		}
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) n++;
	}
	if (closedir(d) != 0 && rc == 0) rc = -errno;
	*entries = n;
	return rc;
}

static int read_mod_revision(const char *path, int64_t *rev)
{
	char v[32];
	ssize_t n = getxattr(path, XATTR_MOD_REVISION, v, sizeof v - 1);
	if (n < 0) return -errno;
	v[n] = '\0';
	char *end;
	errno = 0;
	long long x = strtoll(v, &end, 10);
	if (errno || end == v || x < 0) return -EBADMSG;
	*rev = x;
	return 0;
}

/* Writes the name of key (or entry, or event) idx: prefix and a zero-padded number. */
static void key_name(char *out, size_t cap, char prefix, uint32_t name_bytes, uint64_t idx)
{
	int n = snprintf(out, cap, "%c%0*" PRIu64, prefix, (int)name_bytes - 1, idx);
	assert(n > 0 && (size_t)n < cap && (uint32_t)n == name_bytes);
	(void)n;
}

static uint32_t digits(uint64_t v)
{
	uint32_t d = 1;
	while (v >= 10)
		v /= 10, d++;
	return d;
}

/* c->path = ROOT/DIR/scenario[/sub]/kNNN */
static const char *client_key_path(client_t *c, const char *sub, uint64_t idx)
{
	char name[NAME_BYTES_MAX + 1];
	key_name(name, sizeof name, 'k', (uint32_t)c->r->b->o.name_bytes, idx);
	int n = snprintf(c->path, sizeof c->path, "%s/%s%s%s/%s", c->root, c->r->rel, sub ? "/" : "",
	                 sub ? sub : "", name);
	assert(n > 0 && (size_t)n < sizeof c->path);
	(void)n;
	return c->path;
}

static void range_dir_name(char *out, size_t cap, uint32_t d) { snprintf(out, cap, "r%04" PRIu32, d); }

/* ------------------------------------------------------------------ kv scenarios */

static void mixed_set_live(client_t *c, uint32_t j, bool live)
{
	assert(j < c->n_own);
	int32_t p = c->pos[j];
	if (live && p < 0) {
		c->pos[j] = (int32_t)c->n_live;
		c->live[c->n_live++] = j;
	} else if (!live && p >= 0) {
		uint32_t last = c->live[--c->n_live];
		c->live[p] = last;
		c->pos[last] = p;
		c->pos[j] = -1;
	}
	assert(c->n_live <= c->n_own);
}

static int kv_preload(client_t *c)
{
	run_t *r = c->r;
	const plan_t *p = &r->p;
	size_t vlen = r->b->o.value_bytes;
	for (uint64_t k = c->id; k < p->keys && !aborted(r); k += p->clients) {
		int rc = file_put(client_key_path(c, NULL, k), r->value, vlen);
		if (p->partitioned) mixed_set_live(c, (uint32_t)(k / p->clients), rc == 0);
		if (rc < 0) {
			report_first_error(c, "preload put", c->path, rc);
			client_stat(c, ST_PRELOAD_ERRORS, 1);
		}
	}
	uint64_t entries = (uint64_t)p->range_dirs * p->range_entries;
	for (uint64_t e = c->id; e < entries && !aborted(r); e += p->clients) {
		char sub[32];
		range_dir_name(sub, sizeof sub, (uint32_t)(e / p->range_entries));
		int rc = file_put(client_key_path(c, sub, e % p->range_entries), r->value, vlen);
		if (rc < 0) {
			report_first_error(c, "preload put", c->path, rc);
			client_stat(c, ST_PRELOAD_ERRORS, 1);
		}
	}
	return 0;
}

static op_kind_t kv_pick(client_t *c)
{
	const plan_t *p = &c->r->p;
	uint64_t x = rng_below(c->rng, 100);
	op_kind_t kind = OP_PUT;
	for (uint32_t k = 0, acc = 0; k < OP_KINDS; k++) {
		acc += p->weights[k];
		if (x < acc) {
			kind = (op_kind_t)k;
			break;
		}
	}
	/* Only if a client's keys are all deleted: never at the default sizes (about 1 in 5 is). */
	if (p->partitioned && c->n_live == 0 && (kind == OP_GET || kind == OP_DELETE)) kind = OP_PUT;
	return kind;
}

/* The key an op works on: uniform over all keys, or over the client's own (put) or own live keys. */
static uint64_t kv_key(client_t *c, op_kind_t kind, uint32_t *own)
{
	const plan_t *p = &c->r->p;
	if (!p->partitioned) return rng_below(c->rng, p->keys);
	uint32_t j =
	    kind == OP_PUT ? (uint32_t)rng_below(c->rng, c->n_own) : c->live[rng_below(c->rng, c->n_live)];
	*own = j;
	return c->id + (uint64_t)j * p->clients;
}

static void kv_op(client_t *c, op_kind_t kind, uint64_t sched_ns)
{
	run_t *r = c->r;
	const plan_t *p = &r->p;
	size_t vlen = r->b->o.value_bytes;
	uint32_t own = 0;
	int rc = 0;
	if (kind == OP_RANGE) {
		char sub[32];
		range_dir_name(sub, sizeof sub, (uint32_t)rng_below(c->rng, p->range_dirs));
		int n = snprintf(c->path, sizeof c->path, "%s/%s/%s", c->root, r->rel, sub);
		assert(n > 0 && (size_t)n < sizeof c->path);
		(void)n;
		uint32_t entries = 0;
		uint64_t t0 = now_ns();
		client_busy(c, kind);
		rc = dir_list(c->path, &entries);
		client_record(c, kind, t0, sched_ns, rc);
		if (rc == 0 && entries != p->range_entries) client_stat(c, ST_RANGE_MISMATCH, 1);
	} else {
		const char *path = client_key_path(c, NULL, kv_key(c, kind, &own));
		size_t got = 0;
		uint64_t t0 = now_ns();
		client_busy(c, kind);
		if (kind == OP_PUT)
			rc = file_put(path, r->value, vlen);
		else if (kind == OP_GET)
			rc = file_get(path, c->buf, c->buf_bytes, &got);
		else
			rc = unlink(path) ? -errno : 0;
		client_record(c, kind, t0, sched_ns, rc);
		if (kind == OP_GET && rc == 0 && got != vlen) {
			client_stat(c, ST_SIZE_MISMATCH, 1);
			if (!atomic_exchange(&r->mismatch_printed, true))
				fprintf(stderr,
				        "msbench: %s: first size mismatch: %s: read %zu bytes, not %zu%s\n",
				        scenario_names[p->sc], path, got, vlen,
				        p->partitioned
				            ? ""
				            : " (a concurrent put of the key may show a truncated file)");
		}
		if (p->partitioned && kind == OP_PUT && rc == 0) mixed_set_live(c, own, true);
		/* A failed unlink of a live key leaves it in doubt: stop using it until a put. */
		if (p->partitioned && kind == OP_DELETE) mixed_set_live(c, own, false);
	}
	if (rc < 0) report_first_error(c, op_names[kind], c->path, rc);
}

/* Which of the watch writers c is: 0..writers-1. */
static uint32_t writer_index(const client_t *c)
{
	const plan_t *p = &c->r->p;
	assert(p->sc == SC_WATCH && c->id >= p->clients && c->id - p->clients < p->writers);
	return c->id - p->clients;
}

/* A client's share of the load: its op count (0 = no limit), its period between ops (0 =
 * unpaced) and its first op's offset from the start. Clients are spread over one period so
 * they do not fire in lockstep; watch writers w of N take events w, w + N, ... at rate / N, so
 * together they make the scenario's rate, event i due at i / rate. */
static void client_share(const client_t *c, uint64_t *ops_max, double *period_ns, uint64_t *offset_ns)
{
	const plan_t *p = &c->r->p;
	uint32_t slot = c->id, slots = p->clients;
	double rate = p->rate;
	*ops_max = p->ops_max;
	if (p->sc == SC_WATCH) {
		slot = writer_index(c), slots = p->writers;
		rate /= p->writers;
		*ops_max = (p->events - slot + p->writers - 1) / p->writers;
		assert(*ops_max >= 1); /* plan_make keeps writers <= events */
	}
	*period_ns = rate > 0 ? 1e9 / rate : 0;
	*offset_ns = slot < slots ? (uint64_t)(*period_ns * slot / slots) : 0;
}

/* Runs until the op count, the duration or an abort; paced by absolute deadlines with --rate. */
static void client_loop(client_t *c, bool (*one)(client_t *c, uint64_t sched_ns))
{
	run_t *r = c->r;
	uint64_t ops_max = 0, offset_ns = 0;
	double period_ns = 0;
	client_share(c, &ops_max, &period_ns, &offset_ns);
	for (uint64_t i = 0; ops_max == 0 || i < ops_max; i++) {
		uint64_t sched = 0;
		if (period_ns > 0) {
			sched = r->start_ns + offset_ns + (uint64_t)((double)i * period_ns);
			if (sched >= r->end_ns) break;
			if (sleep_until(r, sched) != 0) break;
			if ((double)(now_ns() - sched) > period_ns) client_stat(c, ST_BEHIND, 1);
		}
		if (aborted(r) || now_ns() >= r->end_ns) break;
		if (!one(c, sched)) break;
	}
}

static bool kv_one(client_t *c, uint64_t sched_ns)
{
	kv_op(c, kv_pick(c), sched_ns);
	return true;
}

/* After every client's preload, before the clock starts: wait (at most RANGE_SETTLE_S) until
 * this client's root lists every range directory whole. A node that did not make a preloaded
 * file shows it once its watch replay created it (watch/: listings hide names not replayed
 * yet), so a run started at once would count the preload's replay lag as range mismatches. */
#define RANGE_SETTLE_S 10
static void range_settle(client_t *c)
{
	const plan_t *p = &c->r->p;
	uint64_t deadline = now_ns() + (uint64_t)RANGE_SETTLE_S * 1000000000ull;
	for (uint32_t d = 0; d < p->range_dirs && !aborted(c->r); d++) {
		char sub[32], path[PATH_BYTES];
		range_dir_name(sub, sizeof sub, d);
		snprintf(path, sizeof path, "%s/%s/%s", c->root, c->r->rel, sub);
		uint32_t entries = 0;
		while (dir_list(path, &entries) == 0 && entries != p->range_entries && now_ns() < deadline)
			usleep(2000);
	}
}

static void *kv_worker(void *arg)
{
	client_t *c = arg;
	kv_preload(c);
	gate_pass(&c->r->loaded);
	if (c->r->p.range_dirs) range_settle(c);
	gate_pass(&c->r->go);
	if (!aborted(c->r)) client_loop(c, kv_one);
	c->end_ns = now_ns();
	return NULL;
}

/* ------------------------------------------------------------------ txn scenario */

static const char *client_txn_key(client_t *c, uint64_t k, char *key, size_t cap)
{
	char name[NAME_BYTES_MAX + 1];
	key_name(name, sizeof name, 'k', (uint32_t)c->r->b->o.name_bytes, k);
	int n = snprintf(key, cap, "%s/%s", c->r->rel, name);
	assert(n > 0 && (size_t)n < cap);
	(void)n;
	return key;
}

/* One txn through a fresh fd of ROOT/.metastore/txn: write the text, read the answer. */
static int txn_once(client_t *c, const char *text, size_t len, bool *succeeded, int64_t *revision)
{
	char path[PATH_BYTES];
	snprintf(path, sizeof path, "%s/.metastore/txn", c->root);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) return -errno;
	int rc = write_all(fd, text, len);
	size_t got = 0;
	if (rc == 0) rc = read_all(fd, c->buf, c->buf_bytes, &got);
	if (close(fd) != 0 && rc == 0) rc = -errno;
	if (rc) return rc;
	char err[256];
	rc = msb_txn_parse_result(c->buf, got, succeeded, revision, err, sizeof err);
	if (rc == -EPROTO && !atomic_exchange(&c->r->error_printed, true))
		fprintf(stderr, "msbench: txn: first error answer: %s\n", err);
	return rc;
}

static void txn_value(client_t *c, uint64_t seq, char *out, size_t bytes)
{
	int n = snprintf(out, bytes + 1, "c%" PRIu32 "-%" PRIu64 "-", c->id, seq);
	assert(n > 0);
	for (size_t i = (size_t)n < bytes ? (size_t)n : bytes; i < bytes; i++)
		out[i] = 'v';
	out[bytes] = '\0';
}

/* One CAS: retried on FAILURE with the re-read revision. false on abort. */
static bool txn_one(client_t *c, uint64_t sched_ns)
{
	run_t *r = c->r;
	const plan_t *p = &r->p;
	uint64_t k = rng_below(c->rng, p->keys);
	char key[PATH_BYTES], value[TXN_VALUE_BYTES_MAX + 1];
	client_txn_key(c, k, key, sizeof key);
	txn_value(c, c->ops[OP_TXN], value, r->b->o.value_bytes);
	for (uint32_t attempt = 0; attempt < p->txn_retries; attempt++) {
		if (aborted(r)) return false;
		int len = msb_txn_format(c->txn_text, c->txn_text_bytes, key, c->known_rev[k], value);
		assert(len > 0);
		bool ok = false;
		int64_t rev = 0;
		uint64_t t0 = now_ns();
		client_busy(c, OP_TXN);
		int rc = txn_once(c, c->txn_text, (size_t)len, &ok, &rev);
		client_record(c, OP_TXN, t0, attempt == 0 ? sched_ns : 0, rc);
		if (rc < 0) {
			report_first_error(c, "txn on", key, rc);
			return true;
		}
		if (ok) {
			c->known_rev[k] = rev;
			client_stat(c, ST_CAS_DONE, 1);
			return true;
		}
		client_stat(c, ST_CONFLICTS, 1);
		client_key_path(c, NULL, k);
		t0 = now_ns();
		client_busy(c, OP_XATTR);
		rc = read_mod_revision(c->path, &rev);
		client_record(c, OP_XATTR, t0, 0, rc);
		if (rc < 0) {
			report_first_error(c, "getxattr", c->path, rc);
			return true;
		}
		c->known_rev[k] = rev;
	}
	client_stat(c, ST_GAVE_UP, 1);
	return true;
}

static void *txn_worker(void *arg)
{
	client_t *c = arg;
	run_t *r = c->r;
	kv_preload(c);
	gate_pass(&r->loaded);
	for (uint64_t k = 0; k < r->p.keys && !aborted(r); k++) {
		int rc = read_mod_revision(client_key_path(c, NULL, k), &c->known_rev[k]);
		if (rc < 0) {
			report_first_error(c, "getxattr", c->path, rc);
			client_stat(c, ST_PRELOAD_ERRORS, 1);
		}
	}
	gate_pass(&r->go);
	if (!aborted(r)) client_loop(c, txn_one);
	c->end_ns = now_ns();
	return NULL;
}

/* ------------------------------------------------------------------ watch scenario */

static void event_name(const run_t *r, char prefix, uint64_t i, char *out, size_t cap)
{
	key_name(out, cap, prefix, (uint32_t)r->b->o.name_bytes, i);
}

/* The event number in a name the writer wrote ("e" + digits), or -1. */
static int64_t event_index(const run_t *r, const char *name)
{
	size_t n = strlen(name);
	if (n != r->b->o.name_bytes || name[0] != 'e') return -1;
	uint64_t v = 0;
	for (size_t i = 1; i < n; i++) {
		if (name[i] < '0' || name[i] > '9') return -1;
		v = v * 10 + (uint64_t)(name[i] - '0');
		if (v >= r->p.events) return -1;
	}
	return (int64_t)v;
}

static void watch_events(client_t *c, const char *buf, size_t len, uint64_t t_ns)
{
	run_t *r = c->r;
	uint64_t dups = 0, overflows = 0, foreign = 0;
	const struct inotify_event *ev;
	for (size_t off = 0; off + sizeof *ev <= len; off += sizeof *ev + ev->len) {
		ev = (const struct inotify_event *)(const void *)(buf + off);
		if (ev->mask & IN_Q_OVERFLOW) {
			overflows++;
			continue;
		}
		if (!(ev->mask & r->b->o.watch_mask) || ev->len == 0) continue;
		int64_t i = event_index(r, ev->name);
		if (i < 0) {
			foreign++;
		} else if (c->seen_ns[i]) {
			dups++;
		} else {
			c->seen_ns[i] = t_ns;
			c->n_seen++;
		}
	}
	if (dups) client_stat(c, ST_DUPLICATES, dups);
	if (overflows) client_stat(c, ST_OVERFLOWS, overflows);
	if (foreign) client_stat(c, ST_FOREIGN, foreign);
}

static bool watch_done(client_t *c)
{
	run_t *r = c->r;
	if (aborted(r)) return true;
	int64_t ok = atomic_load(&r->writes_ok);
	if (ok >= 0 && c->n_seen >= (uint64_t)ok) return true;
	return now_ns() >= atomic_load(&r->watch_deadline_ns);
}

static void *watcher_worker(void *arg)
{
	client_t *c = arg;
	run_t *r = c->r;
	char dir[PATH_BYTES];
	snprintf(dir, sizeof dir, "%s/%s", c->root, r->rel);
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	int rc = fd < 0 ? -errno : 0;
	if (rc == 0 && inotify_add_watch(fd, dir, r->b->o.watch_mask) < 0) rc = -errno;
	if (rc < 0) {
		if (!atomic_exchange(&r->error_printed, true))
			fprintf(stderr, "msbench: watch: watcher %" PRIu32 ": %s %s: %s%s\n", c->id,
			        fd < 0 ? "inotify_init1" : "inotify_add_watch", dir, strerror(-rc),
			        rc == -EMFILE
			            ? " (raise fs.inotify.max_user_instances or use fewer --watchers)"
			            : "");
		pthread_mutex_lock(&c->mu);
		c->errnos[-rc < (int)ERRNO_SLOTS ? -rc : 0]++;
		pthread_mutex_unlock(&c->mu);
	}
	c->watch_ok = rc == 0;
	gate_pass(&r->loaded);
	gate_pass(&r->go);
	_Alignas(struct inotify_event) char buf[65536];
	while (c->watch_ok && !watch_done(c)) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int n = poll(&pfd, 1, WATCH_POLL_MS);
		if (n <= 0) continue;
		ssize_t got = read(fd, buf, sizeof buf);
		uint64_t t = now_ns();
		if (got > 0) watch_events(c, buf, (size_t)got, t);
	}
	if (fd >= 0) close(fd);
	c->end_ns = now_ns();
	return NULL;
}

/* Writes event file i through ROOT i % ROOTs. The syscall that makes the watched event
 * (close, open or rename) was called at *call_ns and returned at *done_ns. */
static int watch_write(client_t *c, uint64_t i, uint64_t *call_ns, uint64_t *done_ns)
{
	run_t *r = c->r;
	const opts_t *o = &r->b->o;
	const char *root = o->roots[i % o->n_roots];
	char name[NAME_BYTES_MAX + 1], path[PATH_BYTES], tmp[PATH_BYTES];
	event_name(r, 'e', i, name, sizeof name);
	snprintf(path, sizeof path, "%s/%s/%s", root, r->rel, name);
	snprintf(c->path, sizeof c->path, "%s", path);
	if (o->watch_mask == IN_MOVED_TO) {
		event_name(r, 't', i, name, sizeof name);
		snprintf(tmp, sizeof tmp, "%s/%s/%s", root, r->rel, name);
		int rc = file_put(tmp, r->value, o->value_bytes);
		*call_ns = now_ns();
		if (rc == 0 && rename(tmp, path) != 0) rc = -errno;
		*done_ns = now_ns();
		return rc;
	}
	uint64_t open_call = now_ns();
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return -errno;
	uint64_t opened = now_ns();
	int rc = write_all(fd, r->value, o->value_bytes);
	uint64_t close_call = now_ns();
	if (close(fd) != 0 && rc == 0) rc = -errno;
	*call_ns = o->watch_mask == IN_CREATE ? open_call : close_call;
	*done_ns = o->watch_mask == IN_CREATE ? opened : now_ns();
	return rc;
}

/* Writes the writer's next event: w + k * writers after k attempts (failed ones count). */
static bool writer_one(client_t *c, uint64_t sched_ns)
{
	run_t *r = c->r;
	uint64_t i = writer_index(c) + c->ops[OP_PUT] * r->p.writers; /* only this thread writes ops */
	assert(i < r->p.events);
	uint64_t call = 0, done = 0;
	uint64_t t0 = now_ns();
	client_busy(c, OP_PUT);
	int rc = watch_write(c, i, &call, &done);
	client_record(c, OP_PUT, t0, sched_ns, rc);
	if (rc < 0) report_first_error(c, "watch write", c->path, rc);
	r->writer_ns[i] = rc == 0 ? done : 0;
	r->writer_call_ns[i] = rc == 0 ? call : 0;
	return true;
}

/* One of the watch writers. The last one to finish publishes what the watchers wait for: the
 * writes that succeeded (so they can stop once they saw them all) and the deadline after which
 * the rest count as missing. */
static void *writer_worker(void *arg)
{
	client_t *c = arg;
	run_t *r = c->r;
	const plan_t *p = &r->p;
	uint32_t w = writer_index(c);
	gate_pass(&r->loaded);
	gate_pass(&r->go);
	c->start_ns = now_ns();
	if (!aborted(r)) client_loop(c, writer_one);
	int64_t ok = 0;
	for (uint64_t k = 0; k < c->ops[OP_PUT]; k++)
		ok += r->writer_ns[w + k * p->writers] != 0;
	c->end_ns = now_ns();
	atomic_fetch_add(&r->writes_ok_sum, ok);
	/* seq_cst: the last writer sees every other writer's stamps and writer_ns entries */
	uint32_t left = atomic_fetch_sub(&r->writers_left, 1u);
	assert(left >= 1 && left <= p->writers);
	if (left != 1) return NULL;
	uint64_t start = UINT64_MAX, end = 0;
	for (uint32_t i = 0; i < p->writers; i++) {
		const client_t *x = &r->clients[p->clients + i];
		if (x->start_ns < start) start = x->start_ns;
		if (x->end_ns > end) end = x->end_ns;
	}
	r->writer_start_ns = start;
	r->writer_end_ns = end;
	atomic_store(&r->watch_deadline_ns, end + (uint64_t)(r->b->o.watch_timeout_s * 1e9));
	atomic_store(&r->writes_ok, atomic_load(&r->writes_ok_sum));
	return NULL;
}

/* ------------------------------------------------------------------ reports */

typedef struct totals {
	msb_hist_t hist[OP_KINDS];
	msb_hist_t all, sched;
	uint64_t ops[OP_KINDS], errs[OP_KINDS];
	uint64_t errnos[ERRNO_SLOTS];
	uint64_t stat[ST_COUNT];
	uint64_t n_ops, n_errs;
} totals_t;

static void totals_init(totals_t *t)
{
	memset(t, 0, sizeof *t);
	for (uint32_t k = 0; k < OP_KINDS; k++)
		msb_hist_init(&t->hist[k]);
	msb_hist_init(&t->all);
	msb_hist_init(&t->sched);
}

static void totals_add_client(totals_t *t, client_t *c)
{
	pthread_mutex_lock(&c->mu);
	for (uint32_t k = 0; k < OP_KINDS; k++) {
		msb_hist_merge(&t->hist[k], c->hist[k]);
		t->ops[k] += c->ops[k];
		t->errs[k] += c->errs[k];
		t->n_ops += c->ops[k];
		t->n_errs += c->errs[k];
	}
	msb_hist_merge(&t->sched, c->sched);
	for (uint32_t e = 0; e < ERRNO_SLOTS; e++)
		t->errnos[e] += c->errnos[e];
	for (uint32_t s = 0; s < ST_COUNT; s++)
		t->stat[s] += c->stat[s];
	pthread_mutex_unlock(&c->mu);
}

static void totals_finish(totals_t *t)
{
	for (uint32_t k = 0; k < OP_KINDS; k++)
		msb_hist_merge(&t->all, &t->hist[k]);
}

static double us(uint64_t ns) { return (double)ns / 1e3; }

/* A bounded text buffer: appends stop at the end (and are then truncated, never overflowed). */
typedef struct sbuf {
	char *p;
	size_t cap, len;
} sbuf_t;

static void sb_printf(sbuf_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf_t *s, const char *fmt, ...)
{
	if (s->len + 1 >= s->cap) return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s->p + s->len, s->cap - s->len, fmt, ap);
	va_end(ap);
	if (n > 0) s->len = s->len + (size_t)n < s->cap ? s->len + (size_t)n : s->cap - 1;
}

static void sb_json_str(sbuf_t *s, const char *str)
{
	sb_printf(s, "\"");
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		if (*p == '"' || *p == '\\')
			sb_printf(s, "\\%c", *p);
		else if (*p < 0x20)
			sb_printf(s, "\\u%04x", *p);
		else
			sb_printf(s, "%c", *p);
	}
	sb_printf(s, "\"");
}

static void sb_lat(sbuf_t *s, const msb_hist_t *h)
{
	sb_printf(s, "\"mean_us\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
	          msb_hist_mean_ns(h) / 1e3, us(msb_hist_quantile_ns(h, 0.5)),
	          us(msb_hist_quantile_ns(h, 0.99)), us(msb_hist_quantile_ns(h, 0.999)), us(h->max_ns));
}

static void print_row(const char *label, const msb_hist_t *h, double secs, uint64_t errors)
{
	printf("  %-9s %9" PRIu64 " %10.1f %9.1f %9.1f %9.1f %9.1f %10.1f %7" PRIu64 "\n", label, h->count,
	       secs > 0 ? (double)h->count / secs : 0.0, msb_hist_mean_ns(h) / 1e3,
	       us(msb_hist_quantile_ns(h, 0.5)), us(msb_hist_quantile_ns(h, 0.99)),
	       us(msb_hist_quantile_ns(h, 0.999)), us(h->max_ns), errors);
}

static void print_header(void)
{
	printf("  %-9s %9s %10s %9s %9s %9s %9s %10s %7s\n", "op", "ops", "ops/s", "mean_us", "p50_us",
	       "p99_us", "p99.9_us", "max_us", "errors");
}

/* Which counters a scenario reports (always, zero or not, so the JSON keys are stable). */
static bool stat_relevant(scenario_t sc, stat_kind_t s)
{
	switch (s) {
	case ST_SIZE_MISMATCH:
		return sc == SC_LARGE_LOAD || sc == SC_SUSTAINED || sc == SC_MIXED;
	case ST_BEHIND:
		return sc == SC_SUSTAINED || sc == SC_WATCH;
	case ST_PRELOAD_ERRORS:
		return sc != SC_WATCH;
	case ST_RANGE_MISMATCH:
		return sc == SC_MIXED;
	case ST_CAS_DONE:
	case ST_CONFLICTS:
	case ST_GAVE_UP:
		return sc == SC_TXN;
	case ST_DUPLICATES:
	case ST_OVERFLOWS:
	case ST_FOREIGN:
		return sc == SC_WATCH;
	default:
		return false;
	}
}

/* The common part of a scenario's JSON line, up to (not including) the closing brace. */
static void json_common(sbuf_t *s, const run_t *r, const totals_t *t, const msb_hist_t *main_hist,
                        uint64_t ops, double secs, double by_op_secs, uint64_t errors)
{
	const bench_t *b = r->b;
	sb_printf(s, "{\"scenario\":\"%s\",\"clients\":%" PRIu32 ",\"roots\":%" PRIu32 ",\"dir\":",
	          scenario_names[r->p.sc], r->p.clients, b->o.n_roots);
	sb_json_str(s, b->o.dir);
	sb_printf(s, ",\"ops\":%" PRIu64 ",\"elapsed_s\":%.3f,\"ops_per_s\":%.1f,", ops, secs,
	          secs > 0 ? (double)ops / secs : 0.0);
	sb_lat(s, main_hist);
	sb_printf(s, ",\"errors\":%" PRIu64 ",\"errno\":{", errors);
	bool first = true;
	for (uint32_t e = 0; e < ERRNO_SLOTS; e++) {
		if (!t->errnos[e]) continue;
		const char *name = e ? strerrorname_np((int)e) : NULL;
		sb_printf(s, "%s\"%s\":%" PRIu64, first ? "" : ",", name ? name : "other", t->errnos[e]);
		first = false;
	}
	sb_printf(s, "},\"mix\":{");
	first = true;
	for (uint32_t k = 0; k < OP_KINDS; k++) {
		if (!t->ops[k]) continue;
		sb_printf(s, "%s\"%s\":%.2f", first ? "" : ",", op_names[k],
		          t->n_ops ? 100.0 * (double)t->ops[k] / (double)t->n_ops : 0.0);
		first = false;
	}
	sb_printf(s, "},\"by_op\":{");
	first = true;
	for (uint32_t k = 0; k < OP_KINDS; k++) {
		if (!t->ops[k]) continue;
		sb_printf(s, "%s\"%s\":{\"ops\":%" PRIu64 ",\"ops_per_s\":%.1f,", first ? "" : ",",
		          op_names[k], t->ops[k], by_op_secs > 0 ? (double)t->ops[k] / by_op_secs : 0.0);
		sb_lat(s, &t->hist[k]);
		sb_printf(s, ",\"errors\":%" PRIu64 "}", t->errs[k]);
		first = false;
	}
	sb_printf(s, "}");
	for (uint32_t st = 0; st < ST_COUNT; st++)
		if (stat_relevant(r->p.sc, (stat_kind_t)st))
			sb_printf(s, ",\"%s\":%" PRIu64, stat_names[st], t->stat[st]);
}

static void print_scenario_title(const run_t *r)
{
	const opts_t *o = &r->b->o;
	const plan_t *p = &r->p;
	printf("== %s: ", scenario_names[p->sc]);
	if (p->sc == SC_WATCH) {
		printf("%" PRIu32 " watchers on %s, %" PRIu32 " events (%s) at %.0f/s by %" PRIu32
		       " writer(s) through %" PRIu32 " root(s)",
		       p->clients, r->watch_root, p->events, o->watch_event, p->rate, p->writers, o->n_roots);
	} else {
		printf("%" PRIu32 " clients over %" PRIu32 " root(s)", p->clients, o->n_roots);
		if (p->ops_max) printf(", %" PRIu64 " ops each", p->ops_max);
		if (p->duration_ns) printf(", %.1f s", (double)p->duration_ns / 1e9);
		if (p->rate > 0) printf(", %.1f ops/s each", p->rate);
		printf(", %" PRIu32 " keys", p->keys);
	}
	printf(", %" PRIu64 " B values, %" PRIu64 " B names, in %s/%s\n", o->value_bytes, o->name_bytes,
	       o->roots[0], r->rel);
}

/* Prints the table and JSON line of a finished kv or txn run. Returns 0, or 1 if it failed. */
static int report_kv(run_t *r, const totals_t *t, bool partial)
{
	const opts_t *o = &r->b->o;
	const plan_t *p = &r->p;
	uint64_t end = 0;
	for (uint32_t i = 0; i < r->n_clients && !partial; i++)
		if (r->clients[i].end_ns > end) end = r->clients[i].end_ns;
	if (partial || end < r->start_ns) end = now_ns();
	double secs = r->start_ns ? (double)(end - r->start_ns) / 1e9 : 0.0;
	bool mix_ok = true; /* held to its target only in mixed (others report theirs) */
	for (uint32_t k = 0; k < OP_KINDS && t->n_ops && p->sc == SC_MIXED; k++) {
		double pct = 100.0 * (double)t->ops[k] / (double)t->n_ops;
		if (pct < p->weights[k] - 2.0 || pct > p->weights[k] + 2.0) mix_ok = false;
	}
	if (!o->json_only) {
		print_scenario_title(r);
		print_header();
		if (p->sc != SC_TXN) print_row("all", &t->all, secs, t->n_errs);
		for (uint32_t k = 0; k < OP_KINDS; k++)
			if (t->ops[k]) print_row(op_names[k], &t->hist[k], secs, t->errs[k]);
		printf("  elapsed %.3f s, preload %.3f s", secs, (double)r->preload_ns / 1e9);
		if (p->sc == SC_SUSTAINED) {
			printf(", target %.1f ops/s, achieved %.1f ops/s, %" PRIu64
			       " ops behind schedule, p99 from schedule %.1f us",
			       p->rate * p->clients, secs > 0 ? (double)t->n_ops / secs : 0.0,
			       t->stat[ST_BEHIND], us(msb_hist_quantile_ns(&t->sched, 0.99)));
		}
		if (p->sc == SC_MIXED) {
			printf(", mix");
			for (uint32_t k = 0; k < OP_KINDS; k++)
				if (p->weights[k])
					printf(" %s %.2f%% (target %" PRIu32 ")", op_names[k],
					       t->n_ops ? 100.0 * (double)t->ops[k] / (double)t->n_ops : 0.0,
					       p->weights[k]);
			printf(mix_ok ? ": ok" : ": OFF TARGET");
		}
		if (p->sc == SC_TXN)
			printf(", %" PRIu64 " CAS done, %" PRIu64 " conflicts, %" PRIu64 " gave up",
			       t->stat[ST_CAS_DONE], t->stat[ST_CONFLICTS], t->stat[ST_GAVE_UP]);
		for (uint32_t s = 0; s < ST_COUNT; s++)
			if (t->stat[s] && s != ST_BEHIND && s != ST_CAS_DONE && s != ST_CONFLICTS &&
			    s != ST_GAVE_UP)
				printf(", %s %" PRIu64, stat_names[s], t->stat[s]);
		printf("%s\n", partial ? " (ABORTED: partial)" : "");
	}
	char buf[EXTRA_BYTES * 4];
	sbuf_t s = {.p = buf, .cap = sizeof buf};
	/* txn: the headline numbers are the txns'; the getxattr after a conflict is in by_op */
	const msb_hist_t *main_hist = p->sc == SC_TXN ? &t->hist[OP_TXN] : &t->all;
	json_common(&s, r, t, main_hist, main_hist->count, secs, secs, t->n_errs);
	sb_printf(&s,
	          ",\"preload_s\":%.3f,\"keys\":%" PRIu32 ",\"value_bytes\":%" PRIu64
	          ",\"name_bytes\":%" PRIu64,
	          (double)r->preload_ns / 1e9, p->keys, o->value_bytes, o->name_bytes);
	if (p->sc == SC_SUSTAINED) {
		sb_printf(&s,
		          ",\"rate_per_client\":%.1f,\"target_ops_per_s\":%.1f,\"achieved_ops_per_s\":%.1f,",
		          p->rate, p->rate * p->clients, secs > 0 ? (double)t->n_ops / secs : 0.0);
		sb_printf(&s, "\"sched_p50_us\":%.1f,\"sched_p99_us\":%.1f,\"sched_max_us\":%.1f",
		          us(msb_hist_quantile_ns(&t->sched, 0.5)), us(msb_hist_quantile_ns(&t->sched, 0.99)),
		          us(t->sched.max_ns));
	}
	if (p->sc == SC_MIXED) {
		sb_printf(&s,
		          ",\"mix_target\":{\"put\":%" PRIu32 ",\"get\":%" PRIu32 ",\"range\":%" PRIu32
		          ",\"delete\":%" PRIu32 "},\"mix_ok\":%s,\"range_dirs\":%" PRIu32
		          ",\"range_entries\":%" PRIu32,
		          p->weights[OP_PUT], p->weights[OP_GET], p->weights[OP_RANGE], p->weights[OP_DELETE],
		          mix_ok ? "true" : "false", p->range_dirs, p->range_entries);
	}
	if (p->sc == SC_TXN)
		sb_printf(&s, ",\"cas_per_s\":%.1f,\"txn_retries\":%" PRIu32,
		          secs > 0 ? (double)t->stat[ST_CAS_DONE] / secs : 0.0, p->txn_retries);
	sb_printf(&s, ",\"aborted\":%s}", partial || atomic_load(&r->b->abort) ? "true" : "false");
	printf("%s\n", buf);
	fflush(stdout);
	bool failed = t->n_errs > 0 || t->stat[ST_PRELOAD_ERRORS] > 0 || !mix_ok || t->stat[ST_GAVE_UP] > 0;
	return failed ? 1 : 0;
}

static int report_watch(run_t *r, const totals_t *t, bool partial)
{
	const opts_t *o = &r->b->o;
	const plan_t *p = &r->p;
	uint64_t written = 0; /* attempts, failed ones too */
	for (uint32_t w = 0; w < p->writers; w++) {
		client_t *writer = &r->clients[p->clients + w];
		pthread_mutex_lock(&writer->mu);
		written += writer->ops[OP_PUT];
		pthread_mutex_unlock(&writer->mu);
	}
	/* lat: from the return of the writer's syscall (negative ones, "early", count as 0);
	 * from_call: from just before the call, which causality keeps positive. */
	msb_hist_t *lat = calloc(2, sizeof *lat), *from_call = lat + 1;
	if (!lat) return 1;
	msb_hist_init(lat);
	msb_hist_init(from_call);
	uint64_t expected = 0, delivered = 0, early = 0, unexpected = 0, last = 0;
	uint32_t watchers_ok = 0;
	for (uint32_t w = 0; w < p->clients && !partial; w++) {
		client_t *c = &r->clients[w];
		if (!c->watch_ok) continue;
		watchers_ok++;
		/* every event: with several writers the attempted ones need not be a prefix */
		for (uint64_t i = 0; i < p->events; i++) {
			uint64_t wrote = r->writer_ns[i], seen = c->seen_ns[i];
			expected += wrote != 0;
			if (!seen) continue;
			if (!wrote) {
				unexpected++;
				continue;
			}
			delivered++;
			if (seen > last) last = seen;
			if (seen < wrote) early++;
			msb_hist_record(lat, seen > wrote ? seen - wrote : 0);
			uint64_t call = r->writer_call_ns[i];
			msb_hist_record(from_call, seen > call ? seen - call : 0);
		}
	}
	uint64_t missing = expected - delivered;
	double write_secs = partial ? 0.0 : (double)(r->writer_end_ns - r->writer_start_ns) / 1e9;
	double span_secs =
	    !partial && last > r->writer_start_ns ? (double)(last - r->writer_start_ns) / 1e9 : 0.0;
	double drain_ms = !partial && last > r->writer_end_ns ? (double)(last - r->writer_end_ns) / 1e6 : 0.0;
	if (!o->json_only) {
		print_scenario_title(r);
		print_header();
		print_row("delivery", lat, span_secs, missing);
		print_row("from-call", from_call, span_secs, missing);
		print_row("write", &t->hist[OP_PUT], write_secs, t->errs[OP_PUT]);
		printf("  %" PRIu32 "/%" PRIu32 " watchers set up; %" PRIu32 " writer(s): %" PRIu64
		       " files in %.3f s (%.1f/s, target %.1f/s, %" PRIu64
		       " behind schedule); delivered %" PRIu64 "/%" PRIu64 ", missing %" PRIu64,
		       watchers_ok, p->clients, p->writers, written, write_secs,
		       write_secs > 0 ? (double)written / write_secs : 0.0, p->rate, t->stat[ST_BEHIND],
		       delivered, expected, missing);
		if (missing == 0 && delivered)
			printf(", all delivered %.1f ms after the last write", drain_ms);
		printf(", duplicates %" PRIu64 ", overflows %" PRIu64 ", foreign %" PRIu64 ", early %" PRIu64
		       "%s\n",
		       t->stat[ST_DUPLICATES], t->stat[ST_OVERFLOWS], t->stat[ST_FOREIGN], early,
		       partial ? " (ABORTED: partial)" : "");
	}
	char buf[EXTRA_BYTES * 4];
	sbuf_t s = {.p = buf, .cap = sizeof buf};
	uint64_t errors = t->n_errs + (p->clients - watchers_ok);
	json_common(&s, r, t, lat, delivered, span_secs, write_secs, errors);
	sb_printf(&s,
	          ",\"watchers\":%" PRIu32 ",\"watchers_ok\":%" PRIu32 ",\"writers\":%" PRIu32
	          ",\"events\":%" PRIu64 ",\"watch_event\":\"%s\"",
	          p->clients, watchers_ok, p->writers, written, o->watch_event);
	sb_printf(&s,
	          ",\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"missing\":%" PRIu64
	          ",\"early\":%" PRIu64 ",\"unexpected\":%" PRIu64,
	          expected, delivered, missing, early, unexpected);
	sb_printf(&s, ",\"from_call\":{");
	sb_lat(&s, from_call);
	sb_printf(&s, "}");
	if (missing == 0 && delivered)
		sb_printf(&s, ",\"all_delivered_ms\":%.1f", drain_ms);
	else
		sb_printf(&s, ",\"all_delivered_ms\":null");
	sb_printf(&s, ",\"writer\":{\"ops\":%" PRIu64 ",\"ops_per_s\":%.1f,\"target_ops_per_s\":%.1f,",
	          written, write_secs > 0 ? (double)written / write_secs : 0.0, p->rate);
	sb_lat(&s, &t->hist[OP_PUT]);
	sb_printf(&s, ",\"sched_p50_us\":%.1f,\"sched_p99_us\":%.1f,\"sched_max_us\":%.1f",
	          us(msb_hist_quantile_ns(&t->sched, 0.5)), us(msb_hist_quantile_ns(&t->sched, 0.99)),
	          us(t->sched.max_ns));
	sb_printf(&s, ",\"errors\":%" PRIu64 "},\"aborted\":%s}", t->errs[OP_PUT],
	          partial || atomic_load(&r->b->abort) ? "true" : "false");
	printf("%s\n", buf);
	fflush(stdout);
	free(lat);
	return errors || missing || partial ? 1 : 0;
}

static int report_run(run_t *r, bool partial)
{
	totals_t *t = malloc(sizeof *t);
	if (!t) {
		fprintf(stderr, "msbench: out of memory for the report\n");
		return 1;
	}
	totals_init(t);
	for (uint32_t i = 0; i < r->n_clients; i++)
		if (r->clients[i].hist[0]) totals_add_client(t, &r->clients[i]);
	totals_finish(t);
	int rc = r->p.sc == SC_WATCH ? report_watch(r, t, partial) : report_kv(r, t, partial);
	free(t);
	return rc;
}

/* ------------------------------------------------------------------ watchdog */

/* Called with b->mu held once --timeout passed and the clients did not stop within the grace
 * period: some are stuck inside a syscall. Says where, prints what was measured, and the caller
 * exits. */
static void watchdog_report(bench_t *b)
{
	fprintf(stderr, "msbench: still stuck %.0f s after --timeout during %s:\n",
	        (double)ABORT_GRACE_NS / 1e9, b->phase ? b->phase : "?");
	run_t *r = b->run;
	if (!r) return;
	uint64_t now = now_ns();
	uint32_t stuck = 0;
	for (uint32_t i = 0; i < r->n_clients; i++) {
		client_t *c = &r->clients[i];
		uint32_t kind = atomic_load(&c->busy_kind);
		if (!c->started || !kind) continue;
		if (stuck++ < 20)
			fprintf(stderr, "  client %" PRIu32 " (%s) inside %s for %.1f s\n", c->id, c->root,
			        op_names[kind - 1], (double)(now - atomic_load(&c->busy_since_ns)) / 1e9);
	}
	fprintf(stderr, "  %" PRIu32 " client(s) inside an operation\n", stuck);
	if (r->start_ns) report_run(r, true);
}

static void *watchdog_main(void *arg)
{
	bench_t *b = arg;
	uint64_t deadline = b->start_ns + (uint64_t)(b->o.timeout_s * 1e9);
	pthread_mutex_lock(&b->mu);
	while (!b->finished) {
		struct timespec ts = ts_of(deadline);
		if (pthread_cond_timedwait(&b->cv, &b->mu, &ts) == ETIMEDOUT) break;
	}
	if (!b->finished) {
		atomic_store(&b->abort, true);
		fprintf(stderr, "msbench: --timeout %.0f s reached during %s: stopping\n", b->o.timeout_s,
		        b->phase ? b->phase : "?");
		deadline = now_ns() + ABORT_GRACE_NS;
		while (!b->finished) {
			struct timespec ts = ts_of(deadline);
			if (pthread_cond_timedwait(&b->cv, &b->mu, &ts) == ETIMEDOUT) break;
		}
		if (!b->finished) {
			watchdog_report(b);
			fflush(stdout);
			fflush(stderr);
			_exit(3); /* threads stuck in a hung mount cannot be joined */
		}
	}
	pthread_mutex_unlock(&b->mu);
	return NULL;
}

static void set_phase(bench_t *b, const char *phase, run_t *r)
{
	pthread_mutex_lock(&b->mu);
	b->phase = phase;
	b->run = r;
	pthread_mutex_unlock(&b->mu);
}

/* ------------------------------------------------------------------ setup and cleanup */

static int make_dir(const char *root, const char *rel, bool must_be_new)
{
	char path[PATH_BYTES];
	snprintf(path, sizeof path, "%s/%s", root, rel);
	if (mkdir(path, 0755) == 0) return 0;
	int rc = -errno;
	if (rc == -EEXIST && !must_be_new) return 0;
	fprintf(stderr, "msbench: mkdir %s: %s%s\n", path, strerror(-rc),
	        rc == -EEXIST ? " (the working directory must be new: pick another --dir)" : "");
	return rc;
}

/* Makes ROOT/rel through the first root and waits until every root shows it (mkdir through the
 * others too, so roots that do not share a store still work for what they can). */
static int make_dir_all(const bench_t *b, const char *rel, bool must_be_new)
{
	int rc = make_dir(b->o.roots[0], rel, must_be_new);
	for (uint32_t i = 1; i < b->o.n_roots && rc == 0; i++)
		rc = make_dir(b->o.roots[i], rel, false);
	if (rc) return rc;
	uint64_t deadline = now_ns() + SETUP_WAIT_NS;
	for (uint32_t i = 0; i <= b->o.n_roots; i++) {
		const char *root = i < b->o.n_roots ? b->o.roots[i] : b->o.watch_root;
		if (!root) continue;
		char path[PATH_BYTES];
		snprintf(path, sizeof path, "%s/%s", root, rel);
		struct stat st;
		while (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
			if (now_ns() >= deadline || atomic_load(&b->abort)) {
				fprintf(stderr, "msbench: %s did not appear within %.0f s\n", path,
				        (double)SETUP_WAIT_NS / 1e9);
				return -ETIMEDOUT;
			}
			usleep(10000);
		}
	}
	return 0;
}

/* Removes everything below path, then path; depth is bounded (msbench's tree has 3 levels). */
static int remove_tree(const char *path, uint32_t depth)
{
	if (depth > 8) return -ELOOP;
	int rc = 0;
	/* Unlinking while listing may skip names on some filesystems: list again until empty. */
	for (uint32_t pass = 0; pass < 4; pass++) {
		DIR *d = opendir(path);
		if (!d) return errno == ENOENT ? 0 : -errno;
		uint32_t removed = 0;
		for (uint32_t i = 0; i < READDIR_ENTRIES_MAX; i++) {
			errno = 0;
			struct dirent *e = readdir(d);
			if (!e) break;
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
			char sub[PATH_BYTES];
			snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
			int r =
			    e->d_type == DT_DIR ? remove_tree(sub, depth + 1) : (unlink(sub) ? -errno : 0);
			if (r == -EISDIR) r = remove_tree(sub, depth + 1);
			if (r == 0)
				removed++;
			else if (rc == 0)
				rc = r;
		}
		closedir(d);
		if (rmdir(path) == 0 || errno == ENOENT) return 0;
		if (errno != ENOTEMPTY || removed == 0) return rc ? rc : -errno;
	}
	return -ENOTEMPTY;
}

/* ------------------------------------------------------------------ running a scenario */

static int run_alloc_clients(run_t *r, uint32_t n)
{
	const opts_t *o = &r->b->o;
	r->clients = calloc(n, sizeof *r->clients);
	if (!r->clients) return -ENOMEM;
	r->n_clients = n;
	for (uint32_t i = 0; i < n; i++) {
		client_t *c = &r->clients[i];
		c->r = r;
		c->id = i;
		c->root = r->p.sc == SC_WATCH && i < r->p.clients ? r->watch_root : o->roots[i % o->n_roots];
		pthread_mutex_init(&c->mu, NULL);
		rng_seed(c->rng, o->seed, ((uint64_t)r->p.sc << 32) | i);
		for (uint32_t k = 0; k < OP_KINDS; k++)
			if (!(c->hist[k] = malloc(sizeof(msb_hist_t)))) return -ENOMEM;
		if (!(c->sched = malloc(sizeof(msb_hist_t)))) return -ENOMEM;
		for (uint32_t k = 0; k < OP_KINDS; k++)
			msb_hist_init(c->hist[k]);
		msb_hist_init(c->sched);
		c->buf_bytes = r->p.sc == SC_TXN ? TXN_ANSWER_BYTES_MAX : o->value_bytes + 4096;
		if (r->p.sc != SC_WATCH && !(c->buf = malloc(c->buf_bytes))) return -ENOMEM;
		if (r->p.partitioned) {
			c->n_own = r->p.keys > i ? (r->p.keys - i + r->p.clients - 1) / r->p.clients : 0;
			c->live = calloc(c->n_own + 1, sizeof *c->live);
			c->pos = malloc((c->n_own + 1) * sizeof *c->pos);
			if (!c->live || !c->pos) return -ENOMEM;
			for (uint32_t j = 0; j < c->n_own; j++)
				c->pos[j] = -1;
		}
		if (r->p.sc == SC_TXN) {
			c->known_rev = calloc(r->p.keys, sizeof *c->known_rev);
			c->txn_text_bytes = 3 * PATH_BYTES + TXN_VALUE_BYTES_MAX + 256;
			c->txn_text = malloc(c->txn_text_bytes);
			if (!c->known_rev || !c->txn_text) return -ENOMEM;
		}
		if (r->p.sc == SC_WATCH && i < r->p.clients &&
		    !(c->seen_ns = calloc(r->p.events, sizeof *c->seen_ns)))
			return -ENOMEM;
	}
	return 0;
}

static void run_free(run_t *r)
{
	for (uint32_t i = 0; r->clients && i < r->n_clients; i++) {
		client_t *c = &r->clients[i];
		for (uint32_t k = 0; k < OP_KINDS; k++)
			free(c->hist[k]);
		free(c->sched);
		free(c->buf);
		free(c->live);
		free(c->pos);
		free(c->known_rev);
		free(c->txn_text);
		free(c->seen_ns);
		pthread_mutex_destroy(&c->mu);
	}
	free(r->clients);
	free(r->value);
	free(r->writer_ns);
	free(r->writer_call_ns);
	gate_destroy(&r->loaded);
	gate_destroy(&r->go);
}

static void *(*worker_of(const run_t *r, uint32_t i))(void *)
{
	switch (r->p.sc) {
	case SC_WATCH:
		return i < r->p.clients ? watcher_worker : writer_worker;
	case SC_TXN:
		return txn_worker;
	default:
		return kv_worker;
	}
}

static int run_scenario(bench_t *b, scenario_t sc)
{
	const opts_t *o = &b->o;
	run_t *r = calloc(1, sizeof *r);
	if (!r) return 2;
	r->b = b;
	plan_make(o, sc, &r->p);
	gate_init(&r->loaded);
	gate_init(&r->go);
	atomic_init(&r->writes_ok, -1);
	atomic_init(&r->writes_ok_sum, 0);
	atomic_init(&r->writers_left, r->p.writers);
	atomic_init(&r->watch_deadline_ns, UINT64_MAX);
	r->end_ns = UINT64_MAX;
	r->watch_root = o->watch_root ? o->watch_root : o->roots[0];
	snprintf(r->rel, sizeof r->rel, "%s/%s", o->dir, scenario_names[sc]);
	int status = 2;
	set_phase(b, "setup", NULL);
	uint32_t n = r->p.clients + r->p.writers;
	r->value = malloc(o->value_bytes + 1);
	if (r->value) memset(r->value, 'v', o->value_bytes), r->value[o->value_bytes] = '\0';
	if (sc == SC_WATCH) {
		r->writer_ns = calloc(r->p.events + 1u, sizeof *r->writer_ns);
		r->writer_call_ns = calloc(r->p.events + 1u, sizeof *r->writer_call_ns);
	}
	if (!r->value || (sc == SC_WATCH && (!r->writer_ns || !r->writer_call_ns)) ||
	    run_alloc_clients(r, n) != 0) {
		fprintf(stderr, "msbench: %s: out of memory\n", scenario_names[sc]);
		goto out;
	}
	if (make_dir_all(b, r->rel, true) != 0) goto out;
	for (uint32_t d = 0; d < r->p.range_dirs; d++) {
		char rel[PATH_BYTES], sub[32];
		range_dir_name(sub, sizeof sub, d);
		snprintf(rel, sizeof rel, "%s/%s", r->rel, sub);
		if (make_dir_all(b, rel, true) != 0) goto out;
	}
	set_phase(b, "preload", NULL);
	uint32_t started = 0;
	uint64_t t0 = now_ns();
	for (uint32_t i = 0; i < n; i++) {
		client_t *c = &r->clients[i];
		int rc = pthread_create(&c->thread, NULL, worker_of(r, i), c);
		if (rc) {
			fprintf(stderr, "msbench: %s: starting client %" PRIu32 ": %s\n", scenario_names[sc],
			        i, strerror(rc));
			atomic_store(&b->abort, true);
			break;
		}
		c->started = true;
		started++;
	}
	/* What the watchdog may read of r is written under b->mu from here on. */
	set_phase(b, "preload", r);
	gate_wait_arrivals(&r->loaded, started);
	pthread_mutex_lock(&b->mu);
	r->preload_ns = now_ns() - t0;
	pthread_mutex_unlock(&b->mu);
	gate_open(&r->loaded);
	gate_wait_arrivals(&r->go, started);
	pthread_mutex_lock(&b->mu);
	b->phase = scenario_names[sc];
	r->start_ns = now_ns();
	r->end_ns = r->p.duration_ns ? r->start_ns + r->p.duration_ns : UINT64_MAX;
	pthread_mutex_unlock(&b->mu);
	gate_open(&r->go);
	for (uint32_t i = 0; i < n; i++)
		if (r->clients[i].started) pthread_join(r->clients[i].thread, NULL);
	pthread_mutex_lock(&b->mu);
	b->phase = "report";
	status = started == n ? report_run(r, false) : 2;
	b->run = NULL;
	pthread_mutex_unlock(&b->mu);
out:
	set_phase(b, "between scenarios", NULL);
	run_free(r);
	free(r);
	return status;
}

/* ------------------------------------------------------------------ self-test */

static int selftest_fail(const char *what)
{
	fprintf(stderr, "msbench selftest: FAILED: %s\n", what);
	return 1;
}

static int selftest_hist(void)
{
	/* Every value lies in its bucket, and a bucket is at most 1/128 of its values wide. */
	uint64_t s[4];
	rng_seed(s, 1, 2);
	for (uint32_t i = 0; i < 2000000; i++) {
		uint64_t v = i < 1000000 ? i : rng_next(s) >> (rng_next(s) % 64);
		if (v >= (1ull << MSB_HIST_EXP_MAX)) continue;
		uint32_t bk = msb_hist_bucket(v);
		uint64_t low = msb_hist_bucket_low_ns(bk), width = msb_hist_bucket_width_ns(bk);
		if (v < low || v >= low + width) return selftest_fail("a value outside its bucket");
		if (v >= MSB_HIST_SUB_COUNT && width * 128 > low)
			return selftest_fail("a bucket wider than 1/128");
		if (v < MSB_HIST_SUB_COUNT && low != v) return selftest_fail("a small value not exact");
	}
	if (msb_hist_bucket(UINT64_MAX) != MSB_HIST_BUCKETS - 1)
		return selftest_fail("huge values not clamped");
	/* Quantiles of 1..100000 against the exact ones, and merge equals recording all in one. */
	msb_hist_t *a = malloc(sizeof *a), *h1 = malloc(sizeof *h1), *h2 = malloc(sizeof *h2);
	if (!a || !h1 || !h2) return selftest_fail("malloc");
	msb_hist_init(a);
	msb_hist_init(h1);
	msb_hist_init(h2);
	if (msb_hist_quantile_ns(a, 0.5) != 0 || msb_hist_mean_ns(a) != 0.0)
		return selftest_fail("empty histogram");
	for (uint64_t v = 1; v <= 100000; v++) {
		msb_hist_record(a, v * 1000);
		msb_hist_record(v % 2 ? h1 : h2, v * 1000);
	}
	static const double qs[] = {0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1.0};
	for (uint32_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
		double exact = qs[i] * 100000 * 1000;
		double got = (double)msb_hist_quantile_ns(a, qs[i]);
		if (got < exact * 0.99 || got > exact * 1.01)
			return selftest_fail("a quantile off by more than 1%");
	}
	if (msb_hist_quantile_ns(a, 1.0) != 100000000 || a->min_ns != 1000 || a->max_ns != 100000000)
		return selftest_fail("min/max not exact");
	if (msb_hist_mean_ns(a) != 50000500.0) return selftest_fail("mean not exact");
	msb_hist_merge(h1, h2);
	if (memcmp(h1, a, sizeof *a) != 0) return selftest_fail("merge differs from one histogram");
	free(a);
	free(h1);
	free(h2);
	return 0;
}

static int selftest_txn(void)
{
	char out[512];
	static const char want[] = "mod(\"msbench-7/txn/k000000000000003\") = \"42\"\n\n"
	                           "put \"msbench-7/txn/k000000000000003\" \"c1-0-vvv\"\n\n"
	                           "get \"msbench-7/txn/k000000000000003\"\n";
	int n = msb_txn_format(out, sizeof out, "msbench-7/txn/k000000000000003", 42, "c1-0-vvv");
	if (n != (int)strlen(want) || strcmp(out, want) != 0) return selftest_fail("txn text");
	if (msb_txn_format(out, sizeof out, "a b", 1, "v") != -EINVAL)
		return selftest_fail("key with a blank");
	if (msb_txn_format(out, sizeof out, "a\"b", 1, "v") != -EINVAL)
		return selftest_fail("key with a quote");
	if (msb_txn_format(out, sizeof out, "", 1, "v") != -EINVAL) return selftest_fail("empty key");
	if (msb_txn_format(out, sizeof out, "k", 1, "") != -EINVAL) return selftest_fail("empty value");
	if (msb_txn_format(out, sizeof out, "k", -1, "v") != -EINVAL)
		return selftest_fail("negative revision");
	if (msb_txn_format(out, 10, "k", 1, "v") != -ENOSPC) return selftest_fail("small buffer");
	struct {
		const char *text;
		int rc;
		bool ok;
		int64_t rev;
	} cases[] = {
	    {"SUCCESS\nrevision: 43\n\nOK\n", 0, true, 43},
	    {"FAILURE\nrevision: 7\n\nmsbench/k\nvalue\n", 0, false, 7},
	    {"FAILURE\nrevision: 9", 0, false, 9},
	    {"error: line 1: bad compare\n", -EPROTO, false, 0},
	    {"SUCCESS\nrevision: 5\n\nerror: op 1: ENOENT (No such file)\n", -EPROTO, false, 0},
	    {"HELLO\nrevision: 5\n", -EBADMSG, false, 0},
	    {"SUCCESS\n", -EBADMSG, false, 0},
	    {"SUCCESS\nrevision: x\n", -EBADMSG, false, 0},
	    {"SUCCESS\nrevision: 99999999999999999999\n", -EBADMSG, false, 0},
	    {"", -EBADMSG, false, 0},
	};
	for (uint32_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		bool ok = !cases[i].ok;
		int64_t rev = -1;
		char err[64];
		int rc =
		    msb_txn_parse_result(cases[i].text, strlen(cases[i].text), &ok, &rev, err, sizeof err);
		if (rc != cases[i].rc) return selftest_fail("txn answer parse result");
		if (rc == 0 && (ok != cases[i].ok || rev != cases[i].rev))
			return selftest_fail("txn answer values");
		if (rc == -EPROTO && strncmp(err, "error:", 6) != 0) return selftest_fail("txn error line");
	}
	char name[NAME_BYTES_MAX + 1];
	key_name(name, sizeof name, 'k', 16, 123);
	if (strcmp(name, "k000000000000123") != 0) return selftest_fail("key name");
	return 0;
}

/* ------------------------------------------------------------------ options */

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: msbench SCENARIO[,SCENARIO...] [options] ROOT[,ROOT2,...]\n"
	        "       msbench selftest\n"
	        "scenarios: large-load sustained mixed watch txn all\n"
	        "options: --clients N --ops N --duration S --rate R --keys N --value-bytes B --name-bytes B\n"
	        "         --dir NAME --watch-root ROOT --watchers W --writers N [4, 1..64] --events E\n"
	        "         --watch-event close_write|create|moved_to --watch-timeout S\n"
	        "         --range-dirs N --range-entries N --txn-retries N --seed N --timeout S\n"
	        "         --cleanup --json-only --dry-run\n"
	        "(watch: --rate is all writers' together; each writes every N-th event at rate / N)\n"
	        "(the header of bench/msbench.c describes every scenario and number)\n");
}

static int parse_u64(const char *name, const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi) {
		fprintf(stderr, "msbench: --%s wants an integer in [%" PRIu64 ", %" PRIu64 "], not '%s'\n",
		        name, lo, hi, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_d(const char *name, const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi)) {
		fprintf(stderr, "msbench: --%s wants a number in [%g, %g], not '%s'\n", name, lo, hi, s);
		return -EINVAL;
	}
	*out = v;
	return 0;
}

static int parse_scenarios(opts_t *o, const char *arg, bool *selftest)
{
	char tmp[256];
	if (strlen(arg) >= sizeof tmp) return -EINVAL;
	strcpy(tmp, arg);
	char *save = NULL;
	for (char *w = strtok_r(tmp, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (!strcmp(w, "selftest")) {
			*selftest = true;
			continue;
		}
		if (!strcmp(w, "all")) {
			for (uint32_t s = SC_LARGE_LOAD; s <= SC_WATCH && o->n_scenarios < SCENARIOS_MAX; s++)
				o->scenarios[o->n_scenarios++] = (scenario_t)s;
			continue;
		}
		uint32_t s = 0;
		while (s < SC_COUNT && strcmp(w, scenario_names[s]) != 0)
			s++;
		if (s == SC_COUNT || o->n_scenarios >= SCENARIOS_MAX) {
			fprintf(stderr, "msbench: unknown scenario '%s' (or too many)\n", w);
			return -EINVAL;
		}
		o->scenarios[o->n_scenarios++] = (scenario_t)s;
	}
	return 0;
}

static int parse_roots(opts_t *o, const char *arg)
{
	o->roots_arg = strdup(arg);
	if (!o->roots_arg) return -ENOMEM;
	char *save = NULL;
	for (char *w = strtok_r(o->roots_arg, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
		if (o->n_roots >= ROOTS_MAX) {
			fprintf(stderr, "msbench: at most %u roots\n", ROOTS_MAX);
			return -E2BIG;
		}
		size_t len = strlen(w);
		while (len > 1 && w[len - 1] == '/')
			w[--len] = '\0';
		o->roots[o->n_roots++] = w;
	}
	return o->n_roots ? 0 : -EINVAL;
}

enum {
	O_CLIENTS = 256,
	O_OPS,
	O_DURATION,
	O_RATE,
	O_KEYS,
	O_VALUE_BYTES,
	O_NAME_BYTES,
	O_DIR,
	O_WATCH_ROOT,
	O_WATCHERS,
	O_WRITERS,
	O_EVENTS,
	O_WATCH_EVENT,
	O_WATCH_TIMEOUT,
	O_RANGE_DIRS,
	O_RANGE_ENTRIES,
	O_TXN_RETRIES,
	O_SEED,
	O_TIMEOUT,
	O_CLEANUP,
	O_JSON_ONLY,
	O_DRY_RUN,
	O_HELP,
};

static const struct option long_options[] = {
    {"clients", required_argument, NULL, O_CLIENTS},
    {"ops", required_argument, NULL, O_OPS},
    {"duration", required_argument, NULL, O_DURATION},
    {"rate", required_argument, NULL, O_RATE},
    {"keys", required_argument, NULL, O_KEYS},
    {"value-bytes", required_argument, NULL, O_VALUE_BYTES},
    {"name-bytes", required_argument, NULL, O_NAME_BYTES},
    {"dir", required_argument, NULL, O_DIR},
    {"watch-root", required_argument, NULL, O_WATCH_ROOT},
    {"watchers", required_argument, NULL, O_WATCHERS},
    {"writers", required_argument, NULL, O_WRITERS},
    {"events", required_argument, NULL, O_EVENTS},
    {"watch-event", required_argument, NULL, O_WATCH_EVENT},
    {"watch-timeout", required_argument, NULL, O_WATCH_TIMEOUT},
    {"range-dirs", required_argument, NULL, O_RANGE_DIRS},
    {"range-entries", required_argument, NULL, O_RANGE_ENTRIES},
    {"txn-retries", required_argument, NULL, O_TXN_RETRIES},
    {"seed", required_argument, NULL, O_SEED},
    {"timeout", required_argument, NULL, O_TIMEOUT},
    {"cleanup", no_argument, NULL, O_CLEANUP},
    {"json-only", no_argument, NULL, O_JSON_ONLY},
    {"dry-run", no_argument, NULL, O_DRY_RUN},
    {"help", no_argument, NULL, O_HELP},
    {NULL, 0, NULL, 0},
};

static int parse_option(opts_t *o, int opt, const char *arg)
{
	switch (opt) {
	case O_CLIENTS:
		return parse_u64("clients", arg, 1, CLIENTS_MAX, &o->clients);
	case O_OPS:
		return parse_u64("ops", arg, 1, UINT32_MAX, &o->ops);
	case O_DURATION:
		return parse_d("duration", arg, 0.001, 86400, &o->duration_s);
	case O_RATE:
		return parse_d("rate", arg, 0.01, 1e7, &o->rate);
	case O_KEYS:
		return parse_u64("keys", arg, 1, KEYS_MAX, &o->keys);
	case O_VALUE_BYTES:
		return parse_u64("value-bytes", arg, 1, VALUE_BYTES_MAX, &o->value_bytes);
	case O_NAME_BYTES:
		return parse_u64("name-bytes", arg, 2, NAME_BYTES_MAX, &o->name_bytes);
	case O_WATCHERS:
		return parse_u64("watchers", arg, 1, WATCHERS_MAX, &o->watchers);
	case O_WRITERS:
		return parse_u64("writers", arg, 1, WRITERS_MAX, &o->writers);
	case O_EVENTS:
		return parse_u64("events", arg, 1, EVENTS_MAX, &o->events);
	case O_WATCH_TIMEOUT:
		return parse_d("watch-timeout", arg, 0, 3600, &o->watch_timeout_s);
	case O_RANGE_DIRS:
		return parse_u64("range-dirs", arg, 1, RANGE_DIRS_MAX, &o->range_dirs);
	case O_RANGE_ENTRIES:
		return parse_u64("range-entries", arg, 1, RANGE_ENTRIES_MAX, &o->range_entries);
	case O_TXN_RETRIES:
		return parse_u64("txn-retries", arg, 1, TXN_RETRIES_MAX, &o->txn_retries);
	case O_SEED:
		return parse_u64("seed", arg, 0, UINT64_MAX - 1, &o->seed);
	case O_TIMEOUT:
		return parse_d("timeout", arg, 0.1, 7 * 86400, &o->timeout_s);
	case O_WATCH_ROOT:
		o->watch_root = arg;
		return 0;
	case O_CLEANUP:
		o->cleanup = true;
		return 0;
	case O_JSON_ONLY:
		o->json_only = true;
		return 0;
	case O_DRY_RUN:
		o->dry_run = true;
		return 0;
	case O_DIR:
		if (!*arg || strlen(arg) > DIR_NAME_BYTES_MAX || strchr(arg, '/') || !strcmp(arg, ".") ||
		    !strcmp(arg, "..")) {
			fprintf(stderr, "msbench: --dir wants one directory name (no '/'), not '%s'\n", arg);
			return -EINVAL;
		}
		snprintf(o->dir, sizeof o->dir, "%s", arg);
		return 0;
	case O_WATCH_EVENT:
		if (!strcmp(arg, "close_write"))
			o->watch_mask = IN_CLOSE_WRITE;
		else if (!strcmp(arg, "create"))
			o->watch_mask = IN_CREATE;
		else if (!strcmp(arg, "moved_to"))
			o->watch_mask = IN_MOVED_TO;
		else {
			fprintf(stderr, "msbench: --watch-event close_write|create|moved_to, not '%s'\n",
			        arg);
			return -EINVAL;
		}
		o->watch_event = arg;
		return 0;
	default:
		return -EINVAL;
	}
}

/* Checks what the options imply together, per scenario. */
static int validate(const opts_t *o)
{
	for (uint32_t i = 0; i < o->n_scenarios; i++) {
		plan_t p;
		plan_make(o, o->scenarios[i], &p);
		const char *name = scenario_names[p.sc];
		uint64_t biggest = p.sc == SC_WATCH ? p.events : p.keys;
		if (p.range_entries > biggest) biggest = p.range_entries;
		if (biggest && 1 + digits(biggest - 1) > o->name_bytes) {
			fprintf(stderr,
			        "msbench: %s: --name-bytes %" PRIu64 " is too short for %" PRIu64 " names\n",
			        name, o->name_bytes, biggest);
			return -EINVAL;
		}
		if (p.partitioned && p.keys < p.clients) {
			fprintf(stderr, "msbench: %s: needs --keys >= --clients (each client owns keys)\n",
			        name);
			return -EINVAL;
		}
		if (p.sc == SC_WATCH && (uint64_t)p.clients * p.events > WATCH_SLOTS_MAX) {
			fprintf(stderr, "msbench: watch: --watchers x --events must be <= %u\n",
			        WATCH_SLOTS_MAX);
			return -EINVAL;
		}
		if (p.sc == SC_TXN && o->value_bytes > TXN_VALUE_BYTES_MAX) {
			fprintf(stderr, "msbench: txn: --value-bytes must be <= %u\n", TXN_VALUE_BYTES_MAX);
			return -EINVAL;
		}
		if (p.ops_max == 0 && p.duration_ns == 0 && p.sc != SC_WATCH) {
			fprintf(stderr, "msbench: %s: give --ops or --duration\n", name);
			return -EINVAL;
		}
	}
	return 0;
}

static int parse_args(opts_t *o, int argc, char **argv, bool *selftest)
{
	memset(o, 0, sizeof *o);
	o->clients = o->ops = o->keys = o->watchers = o->writers = o->events = o->range_dirs =
	    o->range_entries = UNSET_U64;
	o->txn_retries = UNSET_U64;
	o->duration_s = o->rate = UNSET_D;
	o->value_bytes = 100;
	o->name_bytes = 16;
	o->seed = 1;
	o->timeout_s = 300;
	o->watch_timeout_s = 10;
	o->watch_mask = IN_CLOSE_WRITE;
	o->watch_event = "close_write";
	snprintf(o->dir, sizeof o->dir, "msbench-%ld", (long)getpid());
	int opt;
	while ((opt = getopt_long(argc, argv, "h", long_options, NULL)) != -1) {
		if (opt == 'h' || opt == O_HELP) {
			usage(stdout);
			return 1;
		}
		if (opt == '?' || parse_option(o, opt, optarg) != 0) return -EINVAL;
	}
	int rest = argc - optind;
	if (rest < 1 || parse_scenarios(o, argv[optind], selftest) != 0) {
		usage(stderr);
		return -EINVAL;
	}
	if (*selftest && o->n_scenarios == 0) return 0;
	if (rest != 2 || o->n_scenarios == 0 || parse_roots(o, argv[optind + 1]) != 0) {
		usage(stderr);
		return -EINVAL;
	}
	if (o->watch_root) {
		size_t len = strlen(o->watch_root);
		while (len > 1 && o->watch_root[len - 1] == '/')
			len--;
		if (len != strlen(o->watch_root)) {
			fprintf(stderr, "msbench: --watch-root without a trailing '/'\n");
			return -EINVAL;
		}
	}
	return validate(o);
}

/* ------------------------------------------------------------------ main */

static int check_roots(const opts_t *o)
{
	bool need_txn = false;
	for (uint32_t i = 0; i < o->n_scenarios; i++)
		need_txn |= o->scenarios[i] == SC_TXN;
	for (uint32_t i = 0; i <= o->n_roots; i++) {
		const char *root = i < o->n_roots ? o->roots[i] : o->watch_root;
		if (!root) continue;
		struct stat st;
		if (stat(root, &st) != 0 || !S_ISDIR(st.st_mode)) {
			fprintf(stderr, "msbench: %s: not a directory\n", root);
			return -ENOTDIR;
		}
		if (!need_txn || i == o->n_roots) continue;
		char path[PATH_BYTES];
		snprintf(path, sizeof path, "%s/.metastore/txn", root);
		if (stat(path, &st) != 0) {
			fprintf(stderr, "msbench: txn: %s: %s: the txn scenario needs a MetaStore mount\n",
			        path, strerror(errno));
			return -ENOENT;
		}
	}
	return 0;
}

static void dry_run(const opts_t *o)
{
	for (uint32_t i = 0; i < o->n_scenarios; i++) {
		plan_t p;
		plan_make(o, o->scenarios[i], &p);
		printf("%s: clients %" PRIu32 ", ops/client %" PRIu64
		       ", duration %.1f s, rate %.1f, keys %" PRIu32 ", in %s/%s/%s\n",
		       scenario_names[p.sc], p.clients, p.ops_max, (double)p.duration_ns / 1e9, p.rate,
		       p.keys, o->roots[0], o->dir, scenario_names[p.sc]);
		if (p.sc == SC_WATCH)
			printf("watch: %" PRIu32 " watchers on %s, %" PRIu32 " events by %" PRIu32
			       " writer(s) at %.1f/s each, every event i through %s\n",
			       p.clients, o->watch_root ? o->watch_root : o->roots[0], p.events, p.writers,
			       p.rate / p.writers, o->n_roots > 1 ? "ROOT i % ROOTs" : o->roots[0]);
		if (p.sc != SC_TXN) continue;
		for (uint64_t k = 0; k < p.keys && k < 3; k++) {
			char name[NAME_BYTES_MAX + 1], key[PATH_BYTES], text[PATH_BYTES * 4];
			key_name(name, sizeof name, 'k', (uint32_t)o->name_bytes, k);
			snprintf(key, sizeof key, "%s/txn/%s", o->dir, name);
			char value[TXN_VALUE_BYTES_MAX + 1];
			memset(value, 'v', o->value_bytes);
			value[o->value_bytes] = '\0';
			int n = msb_txn_format(text, sizeof text, key, (int64_t)k + 1, value);
			printf("--- txn %" PRIu64 " (%d bytes) to %s/.metastore/txn\n%s", k, n, o->roots[0],
			       n > 0 ? text : "");
		}
	}
}

int main(int argc, char **argv)
{
	bench_t *b = calloc(1, sizeof *b);
	if (!b) return 2;
	bool selftest = false;
	int rc = parse_args(&b->o, argc, argv, &selftest);
	if (rc != 0) {
		free(b->o.roots_arg);
		free(b);
		return rc > 0 ? 0 : 2;
	}
	if (selftest) {
		int bad = selftest_hist() || selftest_txn();
		if (!bad) printf("msbench selftest: ok\n");
		free(b->o.roots_arg);
		free(b);
		return bad;
	}
	const opts_t *o = &b->o;
	if (o->dry_run) {
		dry_run(o);
		free(b->o.roots_arg);
		free(b);
		return 0;
	}
	b->start_ns = now_ns();
	b->phase = "start";
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->cv, &ca);
	pthread_condattr_destroy(&ca);
	pthread_mutex_init(&b->mu, NULL);
	pthread_t watchdog;
	if (pthread_create(&watchdog, NULL, watchdog_main, b) != 0) {
		fprintf(stderr, "msbench: cannot start the watchdog thread\n");
		return 2;
	}
	int status = 0;
	set_phase(b, "checking the roots", NULL);
	if (check_roots(o) != 0) status = 2;
	if (status == 0) {
		set_phase(b, "making the working directory", NULL);
		if (make_dir_all(b, o->dir, true) != 0) status = 2;
	}
	for (uint32_t i = 0; i < o->n_scenarios && status != 2 && !atomic_load(&b->abort); i++) {
		int s = run_scenario(b, o->scenarios[i]);
		if (s > status) status = s;
	}
	if (o->cleanup && status != 2) {
		set_phase(b, "cleanup", NULL);
		for (uint32_t i = 0; i < o->n_roots; i++) {
			char path[PATH_BYTES];
			snprintf(path, sizeof path, "%s/%s", o->roots[i], o->dir);
			int r = remove_tree(path, 0);
			if (r) fprintf(stderr, "msbench: cleanup of %s: %s\n", path, strerror(-r));
		}
	}
	if (atomic_load(&b->abort)) status = 3;
	pthread_mutex_lock(&b->mu);
	b->finished = true;
	pthread_cond_signal(&b->cv);
	pthread_mutex_unlock(&b->mu);
	pthread_join(watchdog, NULL);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	free(b->o.roots_arg);
	free(b);
	return status;
}
