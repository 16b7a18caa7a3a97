/* log_bench.c - throughput and latency of the durable Raft log's group commit (raft/log.c).
 *
 * `log_bench [DIR] [SECONDS]` (default: a fresh directory under /tmp, 1 s per case). For 1, 10
 * and 50 closed-loop proposers (each keeps one 100-byte entry in flight and proposes again as
 * soon as it is durable, one raft_log_append() call per entry, as the loop thread would) it
 * prints appends/s, fdatasyncs/s, entries per fdatasync and the append-to-durable latency, with
 * 1, 2 and 4 fdatasyncs in flight (syncs_in_flight_max). A last case keeps up to 4096 entries in
 * flight: the ceiling of the log.
 *
 * It then probes whether more than one write in flight could help: 1 and 2 threads doing
 * pwrite(4 KiB) + fdatasync on the same file. If two threads do not get more syncs/s than one,
 * the device serializes flushes and a second write in flight buys nothing over group commit.
 */
#include "log.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ENTRY_BYTES 100u
#define INFLIGHT_MAX 4096u

typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
} waiter_t;

static void on_notify(void *arg)
{
	waiter_t *w = arg;
	pthread_mutex_lock(&w->mu);
	pthread_cond_broadcast(&w->cond);
	pthread_mutex_unlock(&w->mu);
}

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* One closed-loop run: `inflight` entries outstanding at all times. */
static int run_case(const char base[512], unsigned inflight, unsigned syncs, double seconds)
{
	char dir[600];
	snprintf(dir, sizeof dir, "%s/case-%u-%u", base, inflight, syncs);
	waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER};
	raft_log_options_t o = {
	    .dir = dir, .syncs_in_flight_max = syncs, .notify = on_notify, .notify_arg = &w};
	raft_log_t *log;
	raft_log_state_t st;
	char err[256];
	int rc = raft_log_open(&o, &log, &st, err, sizeof err);
	if (rc != 0) {
		fprintf(stderr, "open %s: %s\n", dir, err);
		return rc;
	}
	uint8_t data[ENTRY_BYTES];
	memset(data, 'x', sizeof data);
	/* Submit time per in-flight index, a ring of INFLIGHT_MAX. */
	static double submitted[INFLIGHT_MAX];
	size_t lat_cap = 1u << 22, n_lat = 0;
	double *lat = malloc(lat_cap * sizeof *lat);
	if (lat == NULL) return -ENOMEM;
	uint64_t next = 1, durable = 0;
	raft_log_stats_t s0, s1;
	raft_log_stats(log, &s0);
	double t0 = now_s(), t = t0;
	while (t - t0 < seconds) {
		while (next - durable <= inflight) {
			raft_log_entry_t e = {
			    .index = next, .term = 1, .data_bytes = ENTRY_BYTES, .data = data};
			rc = raft_log_append(log, &e, 1, NULL);
			if (rc == -EAGAIN) break;
			if (rc != 0) return rc;
			submitted[next % INFLIGHT_MAX] = now_s();
			next++;
		}
		raft_log_progress_t p;
		pthread_mutex_lock(&w.mu);
		while (raft_log_poll(log, &p) == 0)
			pthread_cond_wait(&w.cond, &w.mu);
		pthread_mutex_unlock(&w.mu);
		if (p.error != 0) return p.error;
		t = now_s();
		for (; durable < p.last_index; durable++)
			if (n_lat < lat_cap) lat[n_lat++] = t - submitted[(durable + 1) % INFLIGHT_MAX];
	}
	raft_log_stats(log, &s1);
	double el = t - t0;
	uint64_t n_syncs = s1.fdatasyncs - s0.fdatasyncs;
	qsort(lat, n_lat, sizeof *lat, cmp_double);
	printf("%-10u %6u %12.0f %14.0f %14.1f %10.0f %10.0f\n", inflight, syncs, (double)durable / el,
	       (double)n_syncs / el, n_syncs ? (double)durable / (double)n_syncs : 0.0,
	       n_lat ? lat[n_lat / 2] * 1e6 : 0.0, n_lat ? lat[n_lat * 99 / 100] * 1e6 : 0.0);
	free(lat);
	return raft_log_close(log);
}

typedef struct probe {
	int fd;
	unsigned id;
	double seconds;
	uint64_t syncs;
} probe_t;

static void *probe_main(void *arg)
{
	probe_t *p = arg;
	uint8_t buf[4096];
	memset(buf, (int)p->id, sizeof buf);
	double t0 = now_s();
	for (uint64_t i = 0; now_s() - t0 < p->seconds; i++) {
		off_t off = (off_t)((i % 8192) * 2 + p->id) * (off_t)sizeof buf;
		if (pwrite(p->fd, buf, sizeof buf, off) != (ssize_t)sizeof buf || fdatasync(p->fd) != 0)
			break;
		p->syncs++;
	}
	return NULL;
}

/* Each run gets a fresh file preallocated like a segment, so neither run rewrites blocks the
 * other already converted from unwritten extents. */
static void probe_concurrent_syncs(const char base[512], double seconds)
{
	for (unsigned threads = 1; threads <= 2; threads++) {
		char path[600];
		snprintf(path, sizeof path, "%s/probe-%u", base, threads);
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || fallocate(fd, 0, 0, 64 << 20) != 0 || fsync(fd) != 0) {
			perror("probe");
			return;
		}
		probe_t p[2] = {{fd, 0, seconds, 0}, {fd, 1, seconds, 0}};
		pthread_t th[2];
		for (unsigned i = 0; i < threads; i++)
			pthread_create(&th[i], NULL, probe_main, &p[i]);
		for (unsigned i = 0; i < threads; i++)
			pthread_join(th[i], NULL);
		uint64_t total = p[0].syncs + p[1].syncs;
		printf("write+fdatasync, %u thread%s: %8.0f syncs/s (%.0f us each)\n", threads,
		       threads > 1 ? "s" : " ", (double)total / seconds,
		       seconds * 1e6 / (double)(total ? total : 1) * threads);
		close(fd);
		unlink(path);
	}
}

int main(int argc, char **argv)
{
	char base[512];
	bool own = argc < 2 || argv[1][0] == '\0';
	if (own) {
		snprintf(base, sizeof base, "/tmp/log-bench-XXXXXX");
		if (mkdtemp(base) == NULL) {
			perror("mkdtemp");
			return 1;
		}
	} else {
		snprintf(base, sizeof base, "%s", argv[1]);
		mkdir(base, 0755);
	}
	double seconds = argc > 2 ? atof(argv[2]) : 1.0;
	printf("raft log group commit, %u-byte entries, %.1f s per case, dir %s\n", ENTRY_BYTES, seconds,
	       base);
	printf("%-10s %6s %12s %14s %14s %10s %10s\n", "in flight", "syncs", "appends/s", "fdatasyncs/s",
	       "entries/sync", "p50 us", "p99 us");
	unsigned cases[] = {1, 10, 50, INFLIGHT_MAX - 1};
	unsigned syncs[] = {1, 2, 4};
	int rc = 0;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0] && rc == 0; i++)
		for (size_t k = 0; k < sizeof syncs / sizeof syncs[0] && rc == 0; k++)
			rc = run_case(base, cases[i], syncs[k], seconds);
	if (rc != 0) fprintf(stderr, "failed: %s\n", strerror(-rc));
	probe_concurrent_syncs(base, seconds);
	if (own) nftw(base, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return rc == 0 ? 0 : 1;
}
