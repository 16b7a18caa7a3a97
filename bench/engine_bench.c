/* engine_bench.c - throughput and memory per key of one engine backend.
 *
 * Usage: engine_bench [memory|rocksdb] [N]   (defaults: memory, N = 1000000)
 *
 * Keys are 16 bytes ("key/%012llu"), values 100 bytes. Phases, each on a fresh engine where it
 * writes:
 *   put-random-b1   N puts in random order, one put per batch; then, on that engine:
 *                   memory per key, get-random (N random point reads), seek-iter100 (N/100
 *                   seeks from random keys, 100 keys read after each), scan-full
 *   put-seq-b1      N puts in key order, one per batch
 *   put-seq-b100    N puts in key order, 100 per batch
 *   put-random-b100 N puts in random order, 100 per batch
 * The first phase runs first so its memory is measured on a clean heap. Memory overhead per key
 * is reported two ways, both minus the 116 key+value bytes: the RSS delta, and the delta of the
 * allocator's in-use bytes (mallinfo2 uordblks + hblkhd: every live chunk at its full size,
 * i.e. malloc_usable_size plus the chunk header, summed by glibc itself).
 *
 * Output: one human-readable line per phase, then one JSON line with every number. Each phase
 * reports ops per wall-clock second and per CPU second of the whole process (all threads, so
 * rocksdb's background work counts); on a shared machine the CPU rate is the stable one. A rocksdb
 * engine lives in a mkdtemp() directory under /tmp, removed at exit.
 */
#include "engine.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KEY_BYTES 16u
#define VALUE_BYTES 100u
#define BATCH_OPS 100u
#define ITER_STEPS 100u
#define PHASES_MAX 8u
#define DIR_TEMPLATE "/tmp/engine-bench-XXXXXX"

typedef struct phase {
	const char *name;
	uint64_t ops;
	double secs;     /* wall clock */
	double cpu_secs; /* CPU time of all the process's threads (rocksdb compaction included) */
} phase_t;

typedef struct bench {
	const char *kind;
	uint64_t n;
	uint32_t *order; /* a random permutation of 0..n-1 */
	char dir[sizeof DIR_TEMPLATE];
	bool has_dir;
	phase_t phases[PHASES_MAX];
	uint32_t phase_count;
	double rss_overhead_per_key, malloc_overhead_per_key;
	uint64_t rng;
} bench_t;

static double clock_s(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A phase's start: wall and CPU time. The CPU rate is the one to trust on a shared machine. */
typedef struct stopwatch {
	double wall0, cpu0;
} stopwatch_t;

static stopwatch_t stopwatch_start(void)
{
	return (stopwatch_t){clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_PROCESS_CPUTIME_ID)};
}

static uint64_t rng_next(bench_t *b) /* xorshift64* */
{
	b->rng ^= b->rng >> 12;
	b->rng ^= b->rng << 25;
	b->rng ^= b->rng >> 27;
	return b->rng * 2685821657736338717ULL;
}

/* "key/%012llu" without snprintf, whose cost would otherwise dominate a memory-engine get. */
static void make_key(uint64_t i, char *k)
{
	memcpy(k, "key/", 4);
	for (int d = KEY_BYTES - 1; d >= 4; d--, i /= 10) k[d] = (char)('0' + i % 10);
}

static void make_value(uint64_t i, uint8_t *v)
{
	for (uint32_t j = 0; j < VALUE_BYTES; j++) v[j] = (uint8_t)(i * 131u + j);
}

static size_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, resident = 0;
	if (!f) return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
	fclose(f);
	return resident * (size_t)sysconf(_SC_PAGESIZE);
}

static size_t heap_bytes(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static engine_t *bench_open(bench_t *b)
{
	engine_options_t o = {.kind = b->kind};
	char err[256] = "";
	if (strcmp(b->kind, "rocksdb") == 0) {
		strcpy(b->dir, DIR_TEMPLATE);
		if (!mkdtemp(b->dir)) {
			fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
			exit(1);
		}
		b->has_dir = true;
		o.dir = b->dir;
	}
	engine_t *e = NULL;
	int rc = engine_open(&o, &e, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "engine_open(%s): %s (%s)\n", b->kind, strerror(-rc), err);
		exit(1);
	}
	return e;
}

static void bench_close(bench_t *b, engine_t *e)
{
	engine_close(e);
	if (b->has_dir) nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	b->has_dir = false;
}

static void phase_report(bench_t *b, const char *name, uint64_t ops, stopwatch_t sw)
{
	double secs = clock_s(CLOCK_MONOTONIC) - sw.wall0, cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - sw.cpu0;
	if (b->phase_count < PHASES_MAX) b->phases[b->phase_count++] = (phase_t){name, ops, secs, cpu};
	printf("%-16s %-8s %10" PRIu64 " ops %8.3f s %12.0f ops/s   (cpu %8.3f s %12.0f ops/cpu-s)\n", name, b->kind,
	       ops, secs, (double)ops / secs, cpu, (double)ops / cpu);
	fflush(stdout);
}

static void check_rc(int rc, const char *what)
{
	if (rc < 0) {
		fprintf(stderr, "%s failed: %s\n", what, strerror(-rc));
		exit(1);
	}
}

/* N puts, `per_batch` per batch; keys in order or in the random permutation. */
static void phase_put(bench_t *b, engine_t *e, const char *name, bool random_order, uint32_t per_batch)
{
	char k[KEY_BYTES];
	uint8_t v[VALUE_BYTES];
	engine_batch_t *batch = engine_batch_new();
	if (!batch) check_rc(-ENOMEM, "engine_batch_new");
	uint64_t applied = 0;
	stopwatch_t sw = stopwatch_start();
	for (uint64_t i = 0; i < b->n; i++) {
		uint64_t id = random_order ? b->order[i] : i;
		make_key(id, k);
		make_value(id, v);
		if (per_batch == 1) {
			check_rc(engine_put(e, k, KEY_BYTES, v, VALUE_BYTES), "engine_put");
			continue;
		}
		check_rc(engine_batch_put(batch, k, KEY_BYTES, v, VALUE_BYTES), "engine_batch_put");
		if (engine_batch_count(batch) == per_batch || i + 1 == b->n) {
			check_rc(engine_batch_commit(e, batch, ++applied), "engine_batch_commit");
			engine_batch_clear(batch);
		}
	}
	phase_report(b, name, b->n, sw);
	engine_batch_free(batch);
	if (engine_key_count(e) != b->n) {
		fprintf(stderr, "%s: key_count %" PRIu64 " != %" PRIu64 "\n", name, engine_key_count(e), b->n);
		exit(1);
	}
}

static void phase_get(bench_t *b, engine_t *e)
{
	char k[KEY_BYTES];
	uint64_t bytes = 0;
	stopwatch_t sw = stopwatch_start();
	for (uint64_t i = 0; i < b->n; i++) {
		const void *v;
		size_t vl;
		make_key(rng_next(b) % b->n, k);
		check_rc(engine_get(e, k, KEY_BYTES, &v, &vl), "engine_get");
		bytes += vl;
	}
	phase_report(b, "get-random", b->n, sw);
	if (bytes != b->n * VALUE_BYTES) {
		fprintf(stderr, "get: wrong value sizes\n");
		exit(1);
	}
}

static void phase_seek_iter(bench_t *b, engine_t *e)
{
	char k[KEY_BYTES];
	uint64_t seeks = b->n / ITER_STEPS ? b->n / ITER_STEPS : 1, keys = 0;
	engine_iter_t *it = engine_iter_new(e);
	if (!it) check_rc(-ENOMEM, "engine_iter_new");
	stopwatch_t sw = stopwatch_start();
	for (uint64_t s = 0; s < seeks; s++) {
		make_key(rng_next(b) % b->n, k);
		engine_iter_seek(it, k, KEY_BYTES);
		for (uint32_t j = 0; j < ITER_STEPS && engine_iter_valid(it); j++, engine_iter_next(it)) {
			size_t kl, vl;
			engine_iter_key(it, &kl);
			engine_iter_value(it, &vl);
			keys += kl == KEY_BYTES && vl == VALUE_BYTES;
		}
	}
	phase_report(b, "seek-iter100", seeks, sw);
	engine_iter_free(it);
	const phase_t *p = &b->phases[b->phase_count - 1];
	printf("%-16s %-8s %10" PRIu64 " keys read after the seeks (%.0f keys/s, %.0f keys/cpu-s)\n", "", b->kind, keys,
	       (double)keys / p->secs, (double)keys / p->cpu_secs);
}

static void phase_scan(bench_t *b, engine_t *e)
{
	uint64_t keys = 0;
	engine_iter_t *it = engine_iter_new(e);
	if (!it) check_rc(-ENOMEM, "engine_iter_new");
	stopwatch_t sw = stopwatch_start();
	for (engine_iter_seek_first(it); engine_iter_valid(it); engine_iter_next(it)) {
		size_t kl, vl;
		engine_iter_key(it, &kl);
		engine_iter_value(it, &vl);
		keys += kl + vl == KEY_BYTES + VALUE_BYTES;
	}
	phase_report(b, "scan-full", keys, sw);
	engine_iter_free(it);
	if (keys != b->n) {
		fprintf(stderr, "scan saw %" PRIu64 " of %" PRIu64 " keys\n", keys, b->n);
		exit(1);
	}
}

int main(int argc, char **argv)
{
	bench_t b = {.kind = argc > 1 ? argv[1] : "memory", .n = 1000000, .rng = 0x9E3779B97F4A7C15ULL};
	if (argc > 2) b.n = strtoull(argv[2], NULL, 10);
	if (b.n == 0 || b.n > UINT32_MAX || argc > 3) {
		fprintf(stderr, "usage: %s [memory|rocksdb] [N]\n", argv[0]);
		return 2;
	}
	b.order = malloc(b.n * sizeof *b.order);
	if (!b.order) check_rc(-ENOMEM, "malloc");
	for (uint64_t i = 0; i < b.n; i++) b.order[i] = (uint32_t)i;
	for (uint64_t i = b.n - 1; i > 0; i--) { /* Fisher-Yates */
		uint64_t j = rng_next(&b) % (i + 1);
		uint32_t t = b.order[i];
		b.order[i] = b.order[j];
		b.order[j] = t;
	}

	engine_t *e = bench_open(&b);
	size_t rss0 = rss_bytes(), heap0 = heap_bytes();
	/* Deltas are signed: a disk backend may end with less heap than it started with. */
	phase_put(&b, e, "put-random-b1", true, 1);
	size_t rss1 = rss_bytes(), heap1 = heap_bytes();
	double payload = KEY_BYTES + VALUE_BYTES;
	b.rss_overhead_per_key = ((double)rss1 - (double)rss0) / (double)b.n - payload;
	b.malloc_overhead_per_key = ((double)heap1 - (double)heap0) / (double)b.n - payload;
	printf("%-16s %-8s overhead per key beyond %.0f key+value bytes: RSS %.1f B, malloc %.1f B "
	       "(RSS +%.1f MiB, heap +%.1f MiB)\n",
	       "memory", b.kind, payload, b.rss_overhead_per_key, b.malloc_overhead_per_key,
	       ((double)rss1 - (double)rss0) / 1048576.0, ((double)heap1 - (double)heap0) / 1048576.0);
	if (strcmp(b.kind, "memory") != 0)
		printf("%-16s %-8s (data lives on disk: these deltas are memtables and caches, not a per-key cost)\n",
		       "", b.kind);
	phase_get(&b, e);
	phase_seek_iter(&b, e);
	phase_scan(&b, e);
	bench_close(&b, e);

	e = bench_open(&b);
	phase_put(&b, e, "put-seq-b1", false, 1);
	bench_close(&b, e);
	e = bench_open(&b);
	phase_put(&b, e, "put-seq-b100", false, BATCH_OPS);
	bench_close(&b, e);
	e = bench_open(&b);
	phase_put(&b, e, "put-random-b100", true, BATCH_OPS);
	bench_close(&b, e);

	printf("{\"bench\":\"engine\",\"kind\":\"%s\",\"n\":%" PRIu64 ",\"key_bytes\":%u,\"value_bytes\":%u", b.kind, b.n,
	       KEY_BYTES, VALUE_BYTES);
	for (uint32_t i = 0; i < b.phase_count; i++)
		printf(",\"%s_ops_per_s\":%.0f,\"%s_ops_per_cpu_s\":%.0f", b.phases[i].name,
		       (double)b.phases[i].ops / b.phases[i].secs, b.phases[i].name,
		       (double)b.phases[i].ops / b.phases[i].cpu_secs);
	printf(",\"rss_overhead_bytes_per_key\":%.1f,\"malloc_overhead_bytes_per_key\":%.1f}\n", b.rss_overhead_per_key,
	       b.malloc_overhead_per_key);
	free(b.order);
	return 0;
}
