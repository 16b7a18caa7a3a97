/* raft_log_test.c - tests of the durable Raft log (raft/log.c) and snapshot files (raft/snapfile.c).
 *
 * Every test works in its own directory under /tmp and checks behaviour through the public API
 * and the files on disk: entries read back across reopen and segment rolls, group commit (made
 * deterministic by holding the I/O thread inside the notify callback while appends pile up),
 * torn tails at every byte of the last record, corruption that must stop the node, truncation,
 * compaction, reset, hard state slots, snapshot files, and a SIGKILLed writer whose reported
 * durable entries must all survive. Error paths are provoked for real: rlimits make the kernel
 * refuse file growth and memory. The tests that exercise writing run twice (check loop tests):
 * with one fdatasync in flight and with two (the pipelined path).
 */
#include "log.h"
#include "snapfile.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 10000
#define ENTRIES_MAX 100000
#define CRASH_ENTRIES_MAX 90000

/* ---- fixtures ---------------------------------------------------------------------------- */

static char dir[256];
static unsigned syncs_k; /* syncs_in_flight_max of the logs a test opens */

/* In a loop test (_i = 0, 1): run with 1, then 2 fdatasyncs in flight. */
#define SYNCS_FROM_LOOP() (syncs_k = 1 + (unsigned)_i)

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void setup(void)
{
	snprintf(dir, sizeof dir, "/tmp/raft-log-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	syncs_k = 1;
}

static void teardown(void) { nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

static void path_of(char *buf, size_t len, const char *rel) { snprintf(buf, len, "%s/%s", dir, rel); }

static void seg_path(char *buf, size_t len, uint64_t first)
{
	snprintf(buf, len, "%s/log/%020" PRIu64 ".seg", dir, first);
}

static void fill(uint8_t *buf, uint64_t index, uint32_t len, uint8_t salt)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(index * 31 + i * 7 + salt);
}

static uint32_t size_for(uint64_t index) { return (uint32_t)((index * 37) % 300); }

/* Entries collected by the open callback. */
typedef struct got {
	uint64_t n;
	uint64_t index[ENTRIES_MAX];
	uint64_t term[ENTRIES_MAX];
	uint8_t type[ENTRIES_MAX];
	uint32_t len[ENTRIES_MAX];
	uint8_t salt[ENTRIES_MAX]; /* which fill() the data matched; 255 if none */
	uint8_t salt_try;
} got_t;

static got_t got;

static int collect(void *arg, const raft_log_entry_t *e)
{
	got_t *g = arg;
	ck_assert_uint_lt(g->n, ENTRIES_MAX);
	uint8_t expect[512];
	g->index[g->n] = e->index;
	g->term[g->n] = e->term;
	g->type[g->n] = e->type;
	g->len[g->n] = e->data_bytes;
	g->salt[g->n] = 255;
	if (e->data_bytes <= sizeof expect) {
		for (int s = 0; s < 4; s++) {
			fill(expect, e->index, e->data_bytes, (uint8_t)s);
			if (memcmp(expect, e->data, e->data_bytes) == 0) {
				g->salt[g->n] = (uint8_t)s;
				break;
			}
		}
	}
	g->n++;
	return 0;
}

/* Notify: counts rounds; a test can hold the I/O thread inside it (the gate). */
typedef struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	uint64_t rounds;
	bool gate_closed;
	bool in_gate;
} waiter_t;

static waiter_t w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, false, false};

static void on_notify(void *arg)
{
	waiter_t *wt = arg;
	pthread_mutex_lock(&wt->mu);
	wt->rounds++;
	pthread_cond_broadcast(&wt->cond);
	while (wt->gate_closed) {
		wt->in_gate = true;
		pthread_cond_broadcast(&wt->cond);
		pthread_cond_wait(&wt->cond, &wt->mu);
	}
	wt->in_gate = false;
	pthread_mutex_unlock(&wt->mu);
}

static void gate_close(void)
{
	pthread_mutex_lock(&w.mu);
	w.gate_closed = true;
	pthread_mutex_unlock(&w.mu);
}

static void gate_open(void)
{
	pthread_mutex_lock(&w.mu);
	w.gate_closed = false;
	pthread_cond_broadcast(&w.cond);
	pthread_mutex_unlock(&w.mu);
}

static void wait_in_gate(void)
{
	pthread_mutex_lock(&w.mu);
	while (!w.in_gate)
		pthread_cond_wait(&w.cond, &w.mu);
	pthread_mutex_unlock(&w.mu);
}

/* Waits until every operation up to seq is durable; returns the progress. */
static raft_log_progress_t wait_seq(raft_log_t *log, uint64_t seq)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += WAIT_MS / 1000;
	raft_log_progress_t p;
	pthread_mutex_lock(&w.mu);
	for (;;) {
		raft_log_poll(log, &p);
		if (p.seq >= seq || p.error != 0) break;
		int rc = pthread_cond_timedwait(&w.cond, &w.mu, &deadline);
		ck_assert_int_ne(rc, ETIMEDOUT);
	}
	pthread_mutex_unlock(&w.mu);
	return p;
}

static raft_log_options_t opts_default(void)
{
	return (raft_log_options_t){.dir = dir,
	                            .segment_bytes = 1 << 20,
	                            .syncs_in_flight_max = syncs_k,
	                            .notify = on_notify,
	                            .notify_arg = &w,
	                            .entry_cb = collect,
	                            .entry_arg = &got};
}

static char errbuf[1024];

static raft_log_t *open_with(const raft_log_options_t *o, raft_log_state_t *st)
{
	memset(&got, 0, sizeof got);
	raft_log_t *log = NULL;
	int rc = raft_log_open(o, &log, st, errbuf, sizeof errbuf);
	ck_assert_msg(rc == 0, "open: %d %s", rc, errbuf);
	return log;
}

static int open_fails(const raft_log_options_t *o)
{
	memset(&got, 0, sizeof got);
	raft_log_t *log = NULL;
	raft_log_state_t st;
	errbuf[0] = '\0';
	int rc = raft_log_open(o, &log, &st, errbuf, sizeof errbuf);
	ck_assert_int_lt(rc, 0);
	ck_assert_ptr_null(log);
	ck_assert_str_ne(errbuf, "");
	return rc;
}

/* Appends [from, to] with term and salt, one call per `per_call` entries; returns the last seq. */
static uint64_t append_range(raft_log_t *log, uint64_t from, uint64_t to, uint64_t term, uint8_t salt,
                             uint64_t per_call)
{
	static uint8_t data[64][512];
	raft_log_entry_t e[64];
	uint64_t seq = 0;
	ck_assert_uint_le(per_call, 64);
	for (uint64_t i = from; i <= to;) {
		size_t n = 0;
		for (; n < per_call && i <= to; n++, i++) {
			uint32_t len = size_for(i);
			fill(data[n], i, len, salt);
			e[n] = (raft_log_entry_t){.index = i,
			                          .term = term,
			                          .type = (uint8_t)(i % 3),
			                          .data_bytes = len,
			                          .data = data[n]};
		}
		int rc = raft_log_append(log, e, n, &seq);
		ck_assert_msg(rc == 0, "append at %" PRIu64 ": %d", i, rc);
	}
	return seq;
}

static void sync_range(raft_log_t *log, uint64_t from, uint64_t to, uint64_t term, uint8_t salt)
{
	raft_log_progress_t p = wait_seq(log, append_range(log, from, to, term, salt, 16));
	ck_assert_int_eq(p.error, 0);
	ck_assert_uint_eq(p.last_index, to);
}

/* got holds exactly [from, to] with the given term and salt. */
static void expect_got(uint64_t from, uint64_t to, uint64_t term, uint8_t salt, uint64_t at)
{
	ck_assert_uint_ge(got.n, at + (to - from + 1));
	for (uint64_t i = from; i <= to; i++, at++) {
		ck_assert_uint_eq(got.index[at], i);
		ck_assert_uint_eq(got.term[at], term);
		ck_assert_uint_eq(got.type[at], i % 3);
		ck_assert_uint_eq(got.len[at], size_for(i));
		if (size_for(i) > 0) /* empty data matches any salt */
			ck_assert_msg(got.salt[at] == salt, "entry %" PRIu64 ": data salt %d, expected %d", i,
			              got.salt[at], salt);
	}
}

static uint64_t file_size(const char *path)
{
	struct stat sb;
	ck_assert_int_eq(stat(path, &sb), 0);
	return (uint64_t)sb.st_size;
}

static bool exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0;
}

static void flip_byte(const char *path, uint64_t off)
{
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t b;
	ck_assert_int_eq(pread(fd, &b, 1, (off_t)off), 1);
	b ^= 0x5a;
	ck_assert_int_eq(pwrite(fd, &b, 1, (off_t)off), 1);
	close(fd);
}

static uint64_t offset_of(uint64_t first, uint64_t index)
{
	uint64_t off = 0;
	for (uint64_t i = first; i < index; i++)
		off += raft_log_record_bytes(size_for(i));
	return off;
}

/* ---- append, reopen, rolls --------------------------------------------------------------- */

START_TEST(test_append_reopen)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	ck_assert_uint_eq(st.last_index, 0);
	ck_assert_uint_eq(st.first_index, 1);
	ck_assert_uint_eq(got.n, 0);
	ck_assert_uint_eq(raft_log_last_index(log), 0);
	raft_log_hard_state_t hs = {.term = 2, .vote = 1, .commit = 0};
	ck_assert_int_eq(raft_log_set_hard_state(log, &hs, NULL), 0);
	sync_range(log, 1, 100, 1, 0);
	ck_assert_uint_eq(raft_log_last_index(log), 100);
	ck_assert_int_eq(raft_log_close(log), 0);

	log = open_with(&o, &st);
	ck_assert_uint_eq(got.n, 100);
	ck_assert_uint_eq(st.entries, 100);
	ck_assert_uint_eq(st.last_index, 100);
	ck_assert_uint_eq(st.last_term, 1);
	ck_assert_uint_eq(st.torn_bytes, 0);
	ck_assert_str_eq(st.note, "");
	expect_got(1, 100, 1, 0, 0);
	sync_range(log, 101, 150, 2, 0);
	ck_assert_int_eq(raft_log_close(log), 0);

	log = open_with(&o, &st);
	expect_got(1, 100, 1, 0, 0);
	expect_got(101, 150, 2, 0, 100);
	ck_assert_uint_eq(st.last_term, 2);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

START_TEST(test_close_writes_pending)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	append_range(log, 1, 500, 1, 0, 1); /* no wait: close must drain */
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.last_index, 500);
	expect_got(1, 500, 1, 0, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

START_TEST(test_segment_roll)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	o.segment_bytes = RAFT_LOG_SEGMENT_BYTES_MIN;
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	for (uint64_t i = 1; i <= 300; i += 10)
		sync_range(log, i, i + 9, 1 + i / 100, 1);
	raft_log_stats_t s;
	raft_log_stats(log, &s);
	ck_assert_uint_gt(s.segments_created, 5);
	ck_assert_int_eq(raft_log_close(log), 0);

	log = open_with(&o, &st);
	ck_assert_uint_eq(got.n, 300);
	for (uint64_t i = 1; i <= 300; i++) {
		ck_assert_uint_eq(got.index[i - 1], i);
		ck_assert_uint_eq(got.term[i - 1], 1 + ((i - 1) / 10 * 10 + 1) / 100);
		if (size_for(i) > 0) ck_assert_uint_eq(got.salt[i - 1], 1);
	}
	/* Sealed segments are trimmed to their records; each starts where the previous ended. */
	char p[512];
	uint64_t first = 1, segs = 0;
	while (first <= 300) {
		seg_path(p, sizeof p, first);
		ck_assert_msg(exists(p), "no segment at %" PRIu64, first);
		uint64_t next = first, bytes = 0;
		while (next <= 300 && bytes < file_size(p))
			bytes += raft_log_record_bytes(size_for(next++));
		if (next <= 300) ck_assert_uint_eq(bytes, file_size(p));
		first = next;
		segs++;
	}
	ck_assert_uint_eq(segs, s.segments_created);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* ---- group commit ------------------------------------------------------------------------ */

START_TEST(test_group_commit)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	raft_log_stats_t s0, s1, s2;
	raft_log_stats(log, &s0);

	gate_close();
	uint64_t seq = append_range(log, 1, 1, 1, 0, 1);
	wait_in_gate(); /* round 1 is done and the I/O thread is held: appends now pile up */
	raft_log_stats(log, &s1);
	ck_assert_uint_eq(s1.fdatasyncs - s0.fdatasyncs, 1);
	uint64_t last = append_range(log, 2, 1000, 1, 0, 1); /* 999 separate calls */
	ck_assert_uint_gt(last, seq);
	gate_open();
	raft_log_progress_t p = wait_seq(log, last);
	ck_assert_uint_eq(p.last_index, 1000);
	raft_log_stats(log, &s2);
	ck_assert_uint_eq(s2.fdatasyncs - s1.fdatasyncs, 1);
	ck_assert_uint_eq(s2.writes - s1.writes, 1);
	ck_assert_uint_eq(s2.round_entries_max, 999);
	ck_assert_uint_eq(s2.entries_written, 1000);
	ck_assert_int_eq(raft_log_close(log), 0);

	log = open_with(&o, &st);
	expect_got(1, 1000, 1, 0, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* Unblocked, many small appends still share fdatasyncs (the loop outpaces the disk). */
START_TEST(test_group_commit_free_running)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	raft_log_stats_t s0, s1;
	raft_log_stats(log, &s0);
	uint64_t last = append_range(log, 1, 5000, 1, 0, 1);
	wait_seq(log, last);
	raft_log_stats(log, &s1);
	ck_assert_uint_lt(s1.fdatasyncs - s0.fdatasyncs, 5000);
	ck_assert_uint_eq(s1.entries_written, 5000);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* ---- torn tails and corruption ----------------------------------------------------------- */

static void write_file(const char *path, const uint8_t *buf, uint64_t len, uint64_t size)
{
	int fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, buf, len, 0), (ssize_t)len);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
}

static uint8_t *read_file(const char *path, uint64_t len)
{
	uint8_t *buf = malloc(len);
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, 0), (ssize_t)len);
	close(fd);
	return buf;
}

/* Writes entries 1..5 (one round each), then for every byte k of record 5 replays a crash that
 * left only its first k bytes (cut == true: file ends at k; false: zeros from k on). */
static void torn_tail(bool cut)
{
	raft_log_options_t o = opts_default();
	o.segment_bytes = 64 * 1024;
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	for (uint64_t i = 1; i <= 5; i++)
		sync_range(log, i, i, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
	char p[512];
	seg_path(p, sizeof p, 1);
	uint64_t rec5 = offset_of(1, 5), end = offset_of(1, 6);
	ck_assert_uint_gt(end - rec5, 100);
	uint8_t *orig = read_file(p, end);
	/* With zeros written over its end, a record whose last bytes were zero padding is intact. */
	uint64_t limit = end;
	while (!cut && orig[limit - 1] == 0)
		limit--;
	for (uint64_t k = rec5; k < limit; k++) {
		write_file(p, orig, k, cut ? k : o.segment_bytes);
		log = open_with(&o, &st);
		ck_assert_uint_eq(st.last_index, 4);
		ck_assert_uint_eq(got.n, 4);
		expect_got(1, 4, 1, 0, 0);
		uint64_t nonzero_end = rec5; /* torn_bytes counts up to the last non-zero byte */
		for (uint64_t i = rec5; i < k; i++)
			if (orig[i] != 0) nonzero_end = i + 1;
		ck_assert_uint_eq(st.torn_bytes, nonzero_end - rec5);
		if (nonzero_end > rec5) ck_assert_ptr_nonnull(strstr(st.note, "torn tail"));
		/* Appending again works and replaces the torn entry. */
		sync_range(log, 5, 6, 2, 3);
		ck_assert_int_eq(raft_log_close(log), 0);
		log = open_with(&o, &st);
		ck_assert_uint_eq(st.torn_bytes, 0);
		expect_got(1, 4, 1, 0, 0);
		expect_got(5, 6, 2, 3, 4);
		ck_assert_int_eq(raft_log_close(log), 0);
	}
	free(orig);
}

START_TEST(test_torn_tail_cut)
{
	SYNCS_FROM_LOOP();
	torn_tail(true);
}
END_TEST

START_TEST(test_torn_tail_zeros) { torn_tail(false); }
END_TEST

START_TEST(test_bad_crc_at_end_is_torn)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	for (uint64_t i = 1; i <= 5; i++)
		sync_range(log, i, i, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
	char p[512];
	seg_path(p, sizeof p, 1);
	flip_byte(p, offset_of(1, 5) + 50);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.last_index, 4);
	ck_assert_uint_gt(st.torn_bytes, 50);
	ck_assert_uint_le(st.torn_bytes, raft_log_record_bytes(size_for(5)));
	expect_got(1, 4, 1, 0, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

START_TEST(test_flip_middle_record)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	for (uint64_t i = 1; i <= 10; i++)
		sync_range(log, i, i, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
	char p[512];
	seg_path(p, sizeof p, 1);
	uint64_t off = offset_of(1, 5);
	uint64_t offs[] = {off + 1,  off + 4,  off + 9,
	                   off + 20, off + 33, off + 45}; /* magic, crc, fields, data */
	for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
		flip_byte(p, offs[i]);
		ck_assert_int_eq(open_fails(&o), -EBADMSG);
		ck_assert_msg(strstr(errbuf, "00000000000000000001.seg") != NULL, "%s", errbuf);
		char want[64];
		snprintf(want, sizeof want, "offset %" PRIu64, off);
		ck_assert_msg(strstr(errbuf, want) != NULL, "%s", errbuf);
		flip_byte(p, offs[i]); /* repair: opens again */
		log = open_with(&o, &st);
		ck_assert_uint_eq(st.last_index, 10);
		ck_assert_int_eq(raft_log_close(log), 0);
	}
}
END_TEST

/* Damage inside the last round, with nothing written after it, looks like a torn write and is
 * truncated (the documented limit): the records after it were not yet known durable. */
START_TEST(test_flip_in_last_round_is_torn)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 3, 1, 0);
	sync_range(log, 4, 10, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
	char p[512];
	seg_path(p, sizeof p, 1);
	flip_byte(p, offset_of(1, 6) + 45);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.last_index, 5);
	ck_assert_uint_gt(st.torn_bytes, offset_of(1, 10) - offset_of(1, 6));
	ck_assert_uint_le(st.torn_bytes, offset_of(1, 11) - offset_of(1, 6));
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

static void three_segments(raft_log_options_t *o, uint64_t *second, uint64_t *third)
{
	o->segment_bytes = RAFT_LOG_SEGMENT_BYTES_MIN;
	raft_log_state_t st;
	raft_log_t *log = open_with(o, &st);
	uint64_t i = 1;
	char p[512];
	*second = *third = 0;
	for (; *third == 0 || i < *third + 5; i++) {
		sync_range(log, i, i, 1, 0);
		seg_path(p, sizeof p, i);
		if (i > 1 && exists(p)) {
			if (*second == 0)
				*second = i;
			else if (*third == 0)
				*third = i;
		}
	}
	ck_assert_int_eq(raft_log_close(log), 0);
}

START_TEST(test_flip_earlier_segment)
{
	raft_log_options_t o = opts_default();
	uint64_t second, third;
	three_segments(&o, &second, &third);
	char p[512];
	/* Even the LAST record of an earlier segment is damage, not a torn tail. */
	seg_path(p, sizeof p, second);
	flip_byte(p, offset_of(second, third - 1) + 12);
	ck_assert_int_eq(open_fails(&o), -EBADMSG);
	ck_assert_msg(strstr(errbuf, "not the last") != NULL, "%s", errbuf);
	flip_byte(p, offset_of(second, third - 1) + 12);
	seg_path(p, sizeof p, 1);
	flip_byte(p, 3);
	ck_assert_int_eq(open_fails(&o), -EBADMSG);
	ck_assert_msg(strstr(errbuf, "00000000000000000001.seg") != NULL, "%s", errbuf);
}
END_TEST

START_TEST(test_segment_gap_and_misnamed)
{
	raft_log_options_t o = opts_default();
	uint64_t second, third;
	three_segments(&o, &second, &third);
	char p[512], q[512];
	/* The third segment's records under the second's name: continuous names, wrong records. */
	seg_path(p, sizeof p, third);
	seg_path(q, sizeof q, second);
	ck_assert_int_eq(rename(p, q), 0);
	ck_assert_int_eq(open_fails(&o), -EUCLEAN);
	ck_assert_msg(strstr(errbuf, "has index") != NULL, "%s", errbuf);
	/* Overlapping names. */
	seg_path(p, sizeof p, second - 1);
	ck_assert_int_eq(rename(q, p), 0);
	ck_assert_int_eq(open_fails(&o), -EUCLEAN);
	ck_assert_msg(strstr(errbuf, "overlaps") != NULL, "%s", errbuf);
}
END_TEST

START_TEST(test_missing_middle_segment)
{
	raft_log_options_t o = opts_default();
	uint64_t second, third;
	three_segments(&o, &second, &third);
	char p[512];
	seg_path(p, sizeof p, second);
	ck_assert_int_eq(unlink(p), 0);
	ck_assert_int_eq(open_fails(&o), -EUCLEAN);
	ck_assert_msg(strstr(errbuf, "gap") != NULL, "%s", errbuf);
}
END_TEST

START_TEST(test_log_starts_late)
{
	raft_log_options_t o = opts_default();
	uint64_t second, third;
	three_segments(&o, &second, &third);
	char p[512];
	seg_path(p, sizeof p, 1);
	ck_assert_int_eq(unlink(p), 0); /* no snapshot covers 1..second-1 */
	ck_assert_int_eq(open_fails(&o), -EUCLEAN);
	ck_assert_msg(strstr(errbuf, "missing") != NULL, "%s", errbuf);
}
END_TEST

START_TEST(test_empty_last_segment_removed)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 5, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
	char p[512];
	seg_path(p, sizeof p, 6); /* a crash right after creating the next segment */
	int fd = open(p, O_CREAT | O_WRONLY, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, 4096), 0);
	close(fd);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.last_index, 5);
	ck_assert(!exists(p));
	ck_assert_ptr_nonnull(strstr(st.note, "no records"));
	sync_range(log, 6, 8, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* ---- truncate, reset, compaction --------------------------------------------------------- */

START_TEST(test_truncate_then_append)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 20, 1, 0);
	uint64_t seq;
	ck_assert_int_eq(raft_log_truncate(log, 15, &seq), 0);
	ck_assert_uint_eq(raft_log_last_index(log), 14);
	raft_log_progress_t p = wait_seq(log, seq);
	ck_assert_uint_eq(p.last_index, 14);
	ck_assert_uint_eq(p.last_term, 1);
	sync_range(log, 15, 25, 2, 1);
	ck_assert_int_eq(raft_log_truncate(log, 30, &seq), 0); /* beyond the end: no-op */
	ck_assert_uint_eq(wait_seq(log, seq).last_index, 25);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(got.n, 25);
	expect_got(1, 14, 1, 0, 0);
	expect_got(15, 25, 2, 1, 14);
	ck_assert_uint_eq(st.last_term, 2);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* Truncation of entries still pending (the I/O thread is held) and of written ones, in order. */
START_TEST(test_truncate_pending_and_written)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 10, 1, 0);
	gate_close();
	append_range(log, 11, 11, 1, 0, 1);
	wait_in_gate();
	append_range(log, 12, 20, 1, 0, 3);                    /* pending */
	ck_assert_int_eq(raft_log_truncate(log, 16, NULL), 0); /* cuts pending only */
	ck_assert_uint_eq(raft_log_last_index(log), 15);
	append_range(log, 16, 18, 2, 1, 1);
	ck_assert_int_eq(raft_log_truncate(log, 8, NULL), 0); /* drops all pending, cuts written 8.. */
	ck_assert_uint_eq(raft_log_last_index(log), 7);
	uint64_t seq = append_range(log, 8, 12, 3, 2, 2);
	gate_open();
	raft_log_progress_t p = wait_seq(log, seq);
	ck_assert_uint_eq(p.last_index, 12);
	ck_assert_uint_eq(p.last_term, 3);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(got.n, 12);
	expect_got(1, 7, 1, 0, 0);
	expect_got(8, 12, 3, 2, 7);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

START_TEST(test_truncate_across_segments)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	uint64_t second, third;
	three_segments(&o, &second, &third);
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	uint64_t last = st.last_index, seq;
	ck_assert_int_eq(raft_log_truncate(log, second + 2, &seq), 0);
	raft_log_progress_t p = wait_seq(log, seq);
	ck_assert_uint_eq(p.last_index, second + 1);
	char path[512];
	seg_path(path, sizeof path, third);
	ck_assert(!exists(path));
	ck_assert_int_eq(raft_log_truncate(log, second, &seq), 0); /* exactly a segment's first */
	wait_seq(log, seq);
	seg_path(path, sizeof path, second);
	ck_assert(!exists(path));
	sync_range(log, second, last + 3, 4, 2);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	expect_got(1, second - 1, 1, 0, 0);
	expect_got(second, last + 3, 4, 2, second - 1);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

static void make_snapshot(uint64_t index, uint64_t term, const char *config, const void *data, size_t len)
{
	raft_snap_writer_t *wr;
	ck_assert_int_eq(raft_snap_create(dir, index, term, config, (uint32_t)strlen(config), &wr), 0);
	ck_assert_int_eq(raft_snap_write(wr, 0, data, len), 0);
	ck_assert_int_eq(raft_snap_commit(wr, NULL, errbuf, sizeof errbuf), 0);
}

START_TEST(test_compaction)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	o.segment_bytes = RAFT_LOG_SEGMENT_BYTES_MIN;
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	for (uint64_t i = 1; i <= 200; i += 20)
		sync_range(log, i, i + 19, 1, 0);
	make_snapshot(120, 1, "cfg", "state", 5);
	raft_log_stats_t s0, s1;
	raft_log_stats(log, &s0);
	uint64_t seq;
	ck_assert_int_eq(raft_log_compact(log, 120, &seq), 0);
	wait_seq(log, seq);
	raft_log_stats(log, &s1);
	ck_assert_uint_gt(s1.segments_deleted, s0.segments_deleted);
	char p[512];
	seg_path(p, sizeof p, 1);
	ck_assert(!exists(p));
	ck_assert_int_eq(raft_log_close(log), 0);

	log = open_with(&o, &st);
	ck_assert_uint_eq(st.snapshot_index, 120);
	ck_assert_uint_eq(st.snapshot_term, 1);
	ck_assert_uint_eq(st.first_index, 121);
	ck_assert_uint_eq(st.last_index, 200);
	ck_assert_uint_eq(got.n, 80);
	expect_got(121, 200, 1, 0, 0);
	/* The segment holding 120 is kept: find the one with the highest first <= 120. */
	bool kept = false;
	for (uint64_t f = 120; f >= 1 && !kept; f--) {
		seg_path(p, sizeof p, f);
		kept = exists(p);
	}
	ck_assert(kept);
	sync_range(log, 201, 210, 2, 0);
	make_snapshot(210, 2, "cfg", "state", 5);
	ck_assert_int_eq(raft_log_compact(log, 100000, &seq), 0); /* never the last segment */
	ck_assert_uint_eq(wait_seq(log, seq).last_index, 210);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.last_index, 210);
	ck_assert_uint_eq(st.last_term, 2);
	ck_assert_uint_eq(got.n, 0);
	sync_range(log, 211, 212, 2, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

START_TEST(test_reset_after_snapshot)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 20, 1, 0);
	make_snapshot(50, 3, "", "x", 1);
	uint64_t seq;
	ck_assert_int_eq(raft_log_reset(log, 50, 3, &seq), 0);
	ck_assert_uint_eq(raft_log_last_index(log), 50);
	raft_log_progress_t p = wait_seq(log, seq);
	ck_assert_uint_eq(p.last_index, 50);
	ck_assert_uint_eq(p.last_term, 3);
	ck_assert_int_eq(raft_log_truncate(log, 50, NULL), -EINVAL);
	ck_assert_int_eq(raft_log_reset(log, 49, 3, NULL), -EINVAL);
	sync_range(log, 51, 55, 3, 1);
	ck_assert_int_eq(raft_log_close(log), 0);
	char path[512];
	seg_path(path, sizeof path, 1);
	ck_assert(!exists(path));
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.snapshot_index, 50);
	ck_assert_uint_eq(got.n, 5);
	expect_got(51, 55, 3, 1, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* A crash between committing a snapshot and resetting the log: the log's entry at the snapshot
 * index has another term, so what follows it belongs to a dead history and is dropped. */
START_TEST(test_diverged_log_after_snapshot)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 20, 1, 0);
	raft_log_hard_state_t hs = {.term = 5, .vote = 0, .commit = 10};
	uint64_t seq;
	ck_assert_int_eq(raft_log_set_hard_state(log, &hs, &seq), 0);
	wait_seq(log, seq);
	ck_assert_int_eq(raft_log_close(log), 0);
	make_snapshot(10, 5, "", "x", 1);
	log = open_with(&o, &st);
	ck_assert_uint_eq(got.n, 0);
	ck_assert_uint_eq(st.last_index, 10);
	ck_assert_uint_eq(st.last_term, 5);
	ck_assert_ptr_nonnull(strstr(st.note, "dropping"));
	sync_range(log, 11, 12, 5, 2);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	expect_got(11, 12, 5, 2, 0);
	ck_assert_str_eq(st.note, "");
	ck_assert_int_eq(raft_log_close(log), 0);

	/* Same term at the snapshot index: the entries after it are kept. */
	make_snapshot(11, 5, "", "y", 1);
	log = open_with(&o, &st);
	expect_got(12, 12, 5, 2, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* ---- hard state -------------------------------------------------------------------------- */

START_TEST(test_hard_state)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.term, 0);
	raft_log_stats_t s0, s1;
	raft_log_stats(log, &s0);
	uint64_t seq;
	for (uint64_t t = 1; t <= 5; t++) {
		raft_log_hard_state_t hs = {.term = t, .vote = t % 3, .commit = t * 10};
		ck_assert_int_eq(raft_log_set_hard_state(log, &hs, &seq), 0);
		ck_assert_uint_ge(wait_seq(log, seq).seq, seq);
	}
	raft_log_stats(log, &s1);
	ck_assert_uint_eq(s1.hard_state_writes - s0.hard_state_writes, 5);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.term, 5);
	ck_assert_uint_eq(st.hard_state.vote, 2);
	ck_assert_uint_eq(st.hard_state.commit, 50);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* A hard state and entries queued together: one round, entries durable first. */
START_TEST(test_hard_state_with_entries)
{
	SYNCS_FROM_LOOP();
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	gate_close();
	append_range(log, 1, 1, 1, 0, 1);
	wait_in_gate();
	raft_log_hard_state_t hs = {.term = 2, .vote = 1, .commit = 0};
	uint64_t seq;
	ck_assert_int_eq(raft_log_set_hard_state(log, &hs, &seq), 0);
	append_range(log, 2, 5, 2, 0, 1);
	hs.commit = 5;
	uint64_t seq2;
	ck_assert_int_eq(raft_log_set_hard_state(log, &hs, &seq2), 0); /* the latest one wins */
	ck_assert_uint_gt(seq2, seq);
	raft_log_stats_t s0, s1;
	raft_log_stats(log, &s0);
	gate_open();
	raft_log_progress_t p = wait_seq(log, seq2);
	ck_assert_uint_eq(p.last_index, 5);
	raft_log_stats(log, &s1);
	ck_assert_uint_eq(s1.hard_state_writes - s0.hard_state_writes, 1);
	ck_assert_uint_eq(s1.rounds - s0.rounds, 1);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.commit, 5);
	ck_assert_uint_eq(st.hard_state.vote, 1);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

static void set_hs(raft_log_t *log, uint64_t term, uint64_t vote, uint64_t commit)
{
	raft_log_hard_state_t hs = {.term = term, .vote = vote, .commit = commit};
	uint64_t seq;
	ck_assert_int_eq(raft_log_set_hard_state(log, &hs, &seq), 0);
	wait_seq(log, seq);
}

START_TEST(test_hard_state_torn_slot)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	set_hs(log, 3, 1, 7); /* sequence 1: slot 1 */
	set_hs(log, 4, 2, 9); /* sequence 2: slot 0 */
	ck_assert_int_eq(raft_log_close(log), 0);
	char p[512];
	path_of(p, sizeof p, "hardstate");
	ck_assert_uint_eq(file_size(p), 8192);
	/* A write of sequence 2 torn half-way: its second half is stale. */
	flip_byte(p, 30);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.term, 3);
	ck_assert_uint_eq(st.hard_state.vote, 1);
	ck_assert_uint_eq(st.hard_state.commit, 7);
	ck_assert_ptr_nonnull(strstr(st.note, "torn"));
	set_hs(log, 5, 3, 11); /* goes to slot 0 again (sequence 2), repairing it */
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.term, 5);
	ck_assert_str_eq(st.note, "");
	ck_assert_int_eq(raft_log_close(log), 0);
	/* Both slots damaged: refuse. */
	flip_byte(p, 20);
	flip_byte(p, 4096 + 20);
	ck_assert_int_eq(open_fails(&o), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(errbuf, "hardstate"));
}
END_TEST

START_TEST(test_hard_state_tmp_and_size)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	set_hs(log, 2, 1, 1);
	ck_assert_int_eq(raft_log_close(log), 0);
	/* A creation killed before its rename leaves hardstate.tmp: ignored and removed. */
	char p[512], q[512];
	path_of(p, sizeof p, "hardstate.tmp");
	FILE *f = fopen(p, "w");
	fputs("garbage from a killed writer", f);
	fclose(f);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.term, 2);
	ck_assert(!exists(p));
	ck_assert_int_eq(raft_log_close(log), 0);
	path_of(q, sizeof q, "hardstate");
	ck_assert_int_eq(truncate(q, 100), 0);
	ck_assert_int_eq(open_fails(&o), -EUCLEAN);
}
END_TEST

/* Entries of a newer term durable but not the hard state of that round: term raised at open. */
START_TEST(test_hard_state_term_raised)
{
	raft_log_options_t o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	set_hs(log, 3, 2, 0);
	sync_range(log, 1, 4, 7, 0);
	ck_assert_int_eq(raft_log_close(log), 0);
	log = open_with(&o, &st);
	ck_assert_uint_eq(st.hard_state.term, 7);
	ck_assert_uint_eq(st.hard_state.vote, 0);
	ck_assert_ptr_nonnull(strstr(st.note, "raised"));
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

/* ---- errors ------------------------------------------------------------------------------ */

START_TEST(test_append_errors)
{
	raft_log_options_t o = opts_default();
	o.pending_bytes_max = 4096;
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	static uint8_t data[8192];
	raft_log_entry_t e = {.index = 1, .term = 1, .data_bytes = 10, .data = data};
	ck_assert_int_eq(raft_log_append(log, NULL, 1, NULL), -EINVAL);
	ck_assert_int_eq(raft_log_append(log, &e, 0, NULL), -EINVAL);
	e.index = 2;
	ck_assert_int_eq(raft_log_append(log, &e, 1, NULL), -EINVAL); /* does not follow 0 */
	e.index = 1;
	e.data = NULL;
	ck_assert_int_eq(raft_log_append(log, &e, 1, NULL), -EINVAL);
	e.data = data;
	e.data_bytes = RAFT_LOG_ENTRY_BYTES_MAX + 1; /* refused before the data is read */
	ck_assert_int_eq(raft_log_append(log, &e, 1, NULL), -EINVAL);
	e.data_bytes = 5000;
	ck_assert_int_eq(raft_log_append(log, &e, 1, NULL), -E2BIG);
	ck_assert_uint_eq(raft_log_last_index(log), 0);
	/* -EAGAIN: the I/O thread is held, the pending buffer fills. */
	gate_close();
	e.data_bytes = 1000;
	ck_assert_int_eq(raft_log_append(log, &e, 1, NULL), 0);
	wait_in_gate();
	int rc = 0;
	uint64_t i = 2;
	for (; i < 10 && rc == 0; i++) {
		e.index = i;
		rc = raft_log_append(log, &e, 1, NULL);
	}
	ck_assert_int_eq(rc, -EAGAIN);
	ck_assert_uint_eq(i, 6); /* 2, 3, 4 fit (3 x 1040 bytes), 5 does not */
	ck_assert_uint_eq(raft_log_last_index(log), 4);
	gate_open();
	uint64_t seq;
	e.index = 5;
	do {
		raft_log_progress_t p;
		raft_log_poll(log, &p);
		rc = raft_log_append(log, &e, 1, &seq);
	} while (rc == -EAGAIN);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(wait_seq(log, seq).last_index, 5);
	ck_assert_int_eq(raft_log_compact(log, 0, NULL), -EINVAL);
	ck_assert_int_eq(raft_log_close(log), 0);
}
END_TEST

static int refuse_cb(void *arg, const raft_log_entry_t *e)
{
	(void)arg;
	return e->index == 3 ? -ENOTSUP : 0;
}

START_TEST(test_open_errors)
{
	raft_log_options_t o = opts_default();
	o.segment_bytes = 100;
	ck_assert_int_eq(open_fails(&o), -EINVAL);
	o = opts_default();
	o.dir = NULL;
	ck_assert_int_eq(open_fails(&o), -EINVAL);
	char p[512];
	path_of(p, sizeof p, "file");
	FILE *f = fopen(p, "w");
	fclose(f);
	o = opts_default();
	o.dir = p;
	ck_assert_int_eq(open_fails(&o), -ENOTDIR);
	path_of(p, sizeof p, "no/such/parent");
	o.dir = p;
	ck_assert_int_eq(open_fails(&o), -ENOENT);
	/* The entry callback refusing an entry fails open with its errno. */
	o = opts_default();
	raft_log_state_t st;
	raft_log_t *log = open_with(&o, &st);
	sync_range(log, 1, 5, 1, 0);
	ck_assert_int_eq(open_fails(&o), -EBUSY); /* a second opener of the same directory */
	ck_assert_ptr_nonnull(strstr(errbuf, "in use"));
	ck_assert_int_eq(raft_log_close(log), 0);
	o.entry_cb = refuse_cb;
	ck_assert_int_eq(open_fails(&o), -ENOTSUP);
	/* A corrupt newest snapshot header stops open too. */
	o = opts_default();
	make_snapshot(3, 1, "c", "d", 1);
	snprintf(p, sizeof p, "%s/snap/snap-%020d-%020d.snap", dir, 3, 1);
	flip_byte(p, 17);
	ck_assert_int_eq(open_fails(&o), -EBADMSG);
}
END_TEST

/* The kernel refuses to grow a file past RLIMIT_FSIZE: the segment cannot be preallocated, the
 * error is sticky and reported everywhere. Runs in a child so the limit dies with it. */
START_TEST(test_io_error_sticky)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		signal(SIGXFSZ, SIG_IGN);
		struct rlimit rl = {.rlim_cur = 64 * 1024, .rlim_max = 64 * 1024};
		if (setrlimit(RLIMIT_FSIZE, &rl) != 0) _exit(10);
		raft_log_options_t o = opts_default();
		raft_log_state_t st;
		raft_log_t *log = NULL;
		if (raft_log_open(&o, &log, &st, errbuf, sizeof errbuf) != 0) _exit(11);
		uint8_t d[16] = {0};
		raft_log_entry_t e = {.index = 1, .term = 1, .data_bytes = 16, .data = d};
		uint64_t seq;
		if (raft_log_append(log, &e, 1, &seq) != 0) _exit(12);
		raft_log_progress_t p = wait_seq(log, seq);
		if (p.error != -EFBIG || p.seq >= seq) _exit(13);
		e.index = 2;
		if (raft_log_append(log, &e, 1, NULL) != -EFBIG) _exit(14);
		if (raft_log_set_hard_state(log, &(raft_log_hard_state_t){1, 1, 1}, NULL) != -EFBIG)
			_exit(15);
		if (raft_log_truncate(log, 1, NULL) != -EFBIG) _exit(16);
		if (raft_log_compact(log, 1, NULL) != -EFBIG) _exit(17);
		if (raft_log_reset(log, 1, 1, NULL) != -EFBIG) _exit(18);
		if (raft_log_close(log) != -EFBIG) _exit(19);
		_exit(0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SHADOW_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define UNDER_SHADOW_SANITIZER 1
#endif
#endif

/* -ENOMEM from append: the pending buffer cannot grow under RLIMIT_AS. */
START_TEST(test_append_enomem)
{
#ifdef UNDER_SHADOW_SANITIZER
	return; /* ASan/TSan reserve terabytes of shadow: an address-space limit cannot apply */
#endif
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		raft_log_options_t o = opts_default();
		raft_log_state_t st;
		raft_log_t *log = NULL;
		if (raft_log_open(&o, &log, &st, errbuf, sizeof errbuf) != 0) _exit(11);
		uint32_t len = 24u << 20;
		uint8_t *d = malloc(len);
		if (d == NULL) _exit(12);
		memset(d, 1, len);
		/* Room for what is mapped now and a little more, not for another 24 MiB. */
		FILE *f = fopen("/proc/self/statm", "r");
		unsigned long pages = 0;
		if (f == NULL || fscanf(f, "%lu", &pages) != 1) _exit(13);
		fclose(f);
		rlim_t lim = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (8u << 20);
		struct rlimit rl = {.rlim_cur = lim, .rlim_max = RLIM_INFINITY};
		if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(14);
		raft_log_entry_t e = {.index = 1, .term = 1, .data_bytes = len, .data = d};
		int rc = raft_log_append(log, &e, 1, NULL);
		if (rc != -ENOMEM) _exit(15);
		rl.rlim_cur = RLIM_INFINITY;
		setrlimit(RLIMIT_AS, &rl);
		e.data_bytes = 10;
		uint64_t seq;
		if (raft_log_append(log, &e, 1, &seq) != 0) _exit(16);
		if (wait_seq(log, seq).last_index != 1) _exit(17);
		if (raft_log_close(log) != 0) _exit(18);
		_exit(0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* ---- crash: SIGKILL a writer ------------------------------------------------------------- */

/* A child appends (term = round, ~64 entries in flight) and reports every durable index through
 * a pipe; it is SIGKILLed at a different point each round. Every reported index must be back,
 * with its data, and the log must take appends where it ended. */
static void crash_child(int fd, uint64_t term)
{
	raft_log_options_t o = opts_default();
	o.segment_bytes = 16 * 1024;
	o.entry_cb = NULL;
	raft_log_state_t st;
	raft_log_t *log = NULL;
	if (raft_log_open(&o, &log, &st, errbuf, sizeof errbuf) != 0) _exit(11);
	uint64_t next = st.last_index + 1, reported = st.last_index;
	if (write(fd, &next, sizeof next) != sizeof next) _exit(13); /* where this round starts */
	for (;;) {
		while (next - reported <= 64 && next < CRASH_ENTRIES_MAX) {
			append_range(log, next, next + 7, term, 0, 8);
			next += 8;
		}
		raft_log_progress_t p;
		pthread_mutex_lock(&w.mu);
		while (raft_log_poll(log, &p) == 0)
			pthread_cond_wait(&w.cond, &w.mu);
		pthread_mutex_unlock(&w.mu);
		if (p.error != 0) _exit(12);
		if (p.last_index > reported) {
			reported = p.last_index;
			if (write(fd, &reported, sizeof reported) != sizeof reported) _exit(13);
		}
	}
}

START_TEST(test_crash_sigkill)
{
	SYNCS_FROM_LOOP();
	uint64_t start[4] = {0}, reported[4] = {0};
	for (uint64_t round = 1; round <= 3; round++) {
		int fds[2];
		ck_assert_int_eq(pipe(fds), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(fds[0]);
			crash_child(fds[1], round);
		}
		close(fds[1]);
		ck_assert_int_eq(read(fds[0], &start[round], sizeof start[round]), sizeof start[round]);
		/* Kill after a different number of reports each round (and by 2 s at the latest). */
		uint64_t kill_after = 20 + ((uint64_t)getpid() * round * 7919) % 400;
		uint64_t v, reports = 0;
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		reported[round] = start[round] - 1;
		do {
			ck_assert_int_eq(read(fds[0], &v, sizeof v), sizeof v);
			ck_assert_uint_gt(v, reported[round]);
			reported[round] = v;
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while (++reports < kill_after && v < CRASH_ENTRIES_MAX - 100 && t.tv_sec - t0.tv_sec < 1);
		kill(pid, SIGKILL);
		int status;
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFSIGNALED(status));
		close(fds[0]);

		raft_log_options_t o = opts_default();
		o.segment_bytes = 16 * 1024;
		raft_log_state_t st;
		raft_log_t *log = open_with(&o, &st);
		ck_assert_uint_ge(st.last_index, reported[round]);
		ck_assert_uint_eq(got.n, st.last_index);
		for (uint64_t r = 1; r <= round; r++) {
			uint64_t end = r < round ? start[r + 1] - 1 : st.last_index;
			ck_assert_uint_ge(end, reported[r]);
			expect_got(start[r], end, r, 0, start[r] - 1);
		}
		ck_assert_int_eq(raft_log_close(log), 0);
	}
	ck_assert_uint_gt(reported[3], 100);
}
END_TEST

/* ---- snapshot files ---------------------------------------------------------------------- */

static void snap_path(char *buf, size_t len, uint64_t index, uint64_t term)
{
	snprintf(buf, len, "%s/snap/snap-%020" PRIu64 "-%020" PRIu64 ".snap", dir, index, term);
}

static int count_snap_files(void)
{
	char p[512];
	path_of(p, sizeof p, "snap");
	DIR *d = opendir(p);
	ck_assert_ptr_nonnull(d);
	int n = 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

START_TEST(test_snapshot_roundtrip)
{
	size_t len = 3 * 1024 * 1024 + 17;
	uint8_t *data = malloc(len);
	fill(data, 9, (uint32_t)len, 0);
	const char *config = "1=a:1,2=b:2,3=c:3";
	raft_snap_writer_t *wr;
	ck_assert_int_eq(raft_snap_create(dir, 1000, 7, config, (uint32_t)strlen(config), &wr), 0);
	for (size_t off = 0; off < len;) {
		size_t n = len - off < 100000 ? len - off : 100000;
		ck_assert_int_eq(raft_snap_write(wr, off, data + off, n), 0);
		off += n;
		ck_assert_uint_eq(raft_snap_writer_bytes(wr), off);
	}
	ck_assert_int_eq(raft_snap_write(wr, 5, data, 1), -EINVAL); /* out of order */
	raft_snap_meta_t m;
	ck_assert_int_eq(raft_snap_commit(wr, &m, errbuf, sizeof errbuf), 0);
	ck_assert_uint_eq(m.index, 1000);
	ck_assert_uint_eq(m.data_bytes, len);

	uint64_t pi, pt;
	ck_assert_int_eq(raft_snap_peek_latest(dir, &pi, &pt, errbuf, sizeof errbuf), 0);
	ck_assert_uint_eq(pi, 1000);
	ck_assert_uint_eq(pt, 7);

	raft_snap_reader_t *r;
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), 0);
	const raft_snap_meta_t *rm = raft_snap_reader_meta(r);
	ck_assert_uint_eq(rm->index, 1000);
	ck_assert_uint_eq(rm->term, 7);
	ck_assert_uint_eq(rm->config_bytes, strlen(config));
	ck_assert_mem_eq(rm->config, config, strlen(config));
	ck_assert_uint_eq(rm->data_bytes, len);
	uint8_t *back = malloc(len);
	for (size_t off = 0; off < len;) {
		ssize_t n = raft_snap_read_data(r, off, back + off, 65536);
		ck_assert_int_gt(n, 0);
		off += (size_t)n;
	}
	ck_assert_int_eq(raft_snap_read_data(r, len, back, 10), 0);
	ck_assert_mem_eq(back, data, len);

	/* Stream the file, chunk by chunk, into a receiver in another directory. */
	char other[300];
	snprintf(other, sizeof other, "%s/follower", dir);
	raft_snap_writer_t *rx;
	ck_assert_int_eq(raft_snap_receive(other, &rx), 0);
	uint8_t chunk[70000];
	for (uint64_t off = 0;;) {
		ssize_t n = raft_snap_read(r, off, chunk, sizeof chunk);
		ck_assert_int_ge(n, 0);
		if (n == 0) break;
		ck_assert_int_eq(raft_snap_write(rx, off, chunk, (size_t)n), 0);
		off += (uint64_t)n;
	}
	ck_assert_uint_eq(raft_snap_writer_bytes(rx), rm->file_bytes);
	ck_assert_int_eq(raft_snap_commit(rx, &m, errbuf, sizeof errbuf), 0);
	ck_assert_uint_eq(m.index, 1000);
	ck_assert_uint_eq(m.term, 7);
	raft_snap_reader_close(r);
	ck_assert_int_eq(raft_snap_open_latest(other, &r, errbuf, sizeof errbuf), 0);
	memset(back, 0, len);
	ck_assert_int_eq(raft_snap_read_data(r, 0, back, len), (ssize_t)len);
	ck_assert_mem_eq(back, data, len);
	ck_assert_mem_eq(raft_snap_reader_meta(r)->config, config, strlen(config));
	raft_snap_reader_close(r);
	free(back);
	free(data);
}
END_TEST

START_TEST(test_snapshot_keeps_newest)
{
	make_snapshot(10, 1, "a", "one", 3);
	make_snapshot(20, 2, "b", "two", 3);
	ck_assert_int_eq(count_snap_files(), 1);
	char p[512];
	snap_path(p, sizeof p, 10, 1);
	ck_assert(!exists(p));
	make_snapshot(5, 1, "c", "old", 3); /* an older one arriving late does not replace 20 */
	raft_snap_reader_t *r;
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), 0);
	ck_assert_uint_eq(raft_snap_reader_meta(r)->index, 20);
	raft_snap_reader_close(r);
}
END_TEST

/* A crash before the rename leaves the previous snapshot; the dead writer's tmp file goes. */
START_TEST(test_snapshot_crash_before_rename)
{
	make_snapshot(10, 1, "a", "first", 5);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		raft_snap_writer_t *wr;
		if (raft_snap_create(dir, 20, 2, "b", 1, &wr) != 0) _exit(1);
		if (raft_snap_write(wr, 0, "second", 6) != 0) _exit(2);
		_exit(0); /* dies without commit */
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	ck_assert_int_eq(count_snap_files(), 2);
	raft_snap_reader_t *r;
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), 0);
	ck_assert_uint_eq(raft_snap_reader_meta(r)->index, 10);
	char buf[16];
	ck_assert_int_eq(raft_snap_read_data(r, 0, buf, sizeof buf), 5);
	ck_assert_mem_eq(buf, "first", 5);
	raft_snap_reader_close(r);
	ck_assert_int_eq(count_snap_files(), 1);
	/* abort also leaves nothing behind */
	raft_snap_writer_t *wr;
	ck_assert_int_eq(raft_snap_create(dir, 30, 2, "", 0, &wr), 0);
	ck_assert_int_eq(count_snap_files(), 2);
	raft_snap_abort(wr);
	ck_assert_int_eq(count_snap_files(), 1);
}
END_TEST

START_TEST(test_snapshot_errors)
{
	raft_snap_reader_t *r = NULL;
	uint64_t pi = 1, pt = 1;
	ck_assert_int_eq(raft_snap_peek_latest(dir, &pi, &pt, errbuf, sizeof errbuf), 0);
	ck_assert_uint_eq(pi, 0);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -ENOENT);
	char p[512];
	path_of(p, sizeof p, "snap");
	ck_assert_int_eq(mkdir(p, 0755), 0);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -ENOENT);

	raft_snap_writer_t *wr;
	static const char cfg[RAFT_SNAP_CONFIG_BYTES_MAX + 1];
	ck_assert_int_eq(raft_snap_create(dir, 1, 1, cfg, sizeof cfg, &wr), -EINVAL);
	ck_assert_int_eq(raft_snap_create(dir, 1, 1, NULL, 3, &wr), -EINVAL);
	path_of(p, sizeof p, "plainfile");
	fclose(fopen(p, "w"));
	ck_assert_int_eq(raft_snap_create(p, 1, 1, "", 0, &wr), -ENOTDIR);
	ck_assert_int_eq(raft_snap_create(dir, 1, 1, "", 0, &wr), 0);
	ck_assert_int_eq(raft_snap_write(wr, 0, "x", (size_t)RAFT_SNAP_BYTES_MAX), -EFBIG);
	ck_assert_int_eq(raft_snap_write(wr, 0, NULL, 1), -EINVAL);
	raft_snap_abort(wr);

	/* Damage: data byte -> file CRC, header byte -> header CRC, truncation -> malformed. */
	const char *data = "0123456789abcdefghijklmnopqrstuvwxyz";
	make_snapshot(7, 2, "cfg", data, strlen(data));
	snap_path(p, sizeof p, 7, 2);
	uint64_t size = file_size(p);
	flip_byte(p, size - 32 - 5);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -EBADMSG);
	ck_assert_ptr_nonnull(strstr(errbuf, "CRC"));
	ck_assert_int_eq(raft_snap_peek_latest(dir, &pi, &pt, errbuf, sizeof errbuf),
	                 0); /* header still fine */
	flip_byte(p, size - 32 - 5);
	flip_byte(p, 20);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -EBADMSG);
	ck_assert_int_eq(raft_snap_peek_latest(dir, &pi, &pt, errbuf, sizeof errbuf), -EBADMSG);
	flip_byte(p, 20);
	flip_byte(p, 0); /* magic */
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -EUCLEAN);
	flip_byte(p, 0);
	ck_assert_int_eq(truncate(p, (off_t)size - 3), 0);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -EUCLEAN);
	ck_assert_int_eq(truncate(p, 10), 0);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -EUCLEAN);
	ck_assert_int_eq(unlink(p), 0);

	/* A file renamed to claim another index is refused. */
	make_snapshot(8, 2, "", "d", 1);
	char q[512];
	snap_path(p, sizeof p, 8, 2);
	snap_path(q, sizeof q, 9, 2);
	ck_assert_int_eq(rename(p, q), 0);
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), -EUCLEAN);
	ck_assert_int_eq(raft_snap_peek_latest(dir, &pi, &pt, errbuf, sizeof errbuf), -EUCLEAN);
	ck_assert_int_eq(unlink(q), 0);

	/* Received garbage, or a truncated stream, fails at commit and leaves no file. */
	ck_assert_int_eq(raft_snap_receive(dir, &wr), 0);
	ck_assert_int_eq(raft_snap_write(wr, 0, data, strlen(data)), 0);
	ck_assert_int_eq(raft_snap_commit(wr, NULL, errbuf, sizeof errbuf), -EUCLEAN);
	ck_assert_int_eq(count_snap_files(), 0);
	make_snapshot(9, 3, "", data, strlen(data));
	ck_assert_int_eq(raft_snap_open_latest(dir, &r, errbuf, sizeof errbuf), 0);
	uint8_t file[512];
	ssize_t n = raft_snap_read(r, 0, file, sizeof file);
	ck_assert_int_gt(n, 64);
	raft_snap_reader_close(r);
	char other[300];
	snprintf(other, sizeof other, "%s/rx", dir);
	ck_assert_int_eq(raft_snap_receive(other, &wr), 0);
	file[50] ^= 1;
	ck_assert_int_eq(raft_snap_write(wr, 0, file, (size_t)n), 0);
	ck_assert_int_eq(raft_snap_commit(wr, NULL, errbuf, sizeof errbuf), -EBADMSG);
	ck_assert_int_eq(raft_snap_open_latest(other, &r, errbuf, sizeof errbuf), -ENOENT);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------------- */

static Suite *raft_log_suite(void)
{
	Suite *s = suite_create("raft_log");
	TCase *tc = tcase_create("log");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_append_reopen, 0, 2);
	tcase_add_loop_test(tc, test_close_writes_pending, 0, 2);
	tcase_add_loop_test(tc, test_segment_roll, 0, 2);
	tcase_add_loop_test(tc, test_group_commit, 0, 2);
	tcase_add_loop_test(tc, test_group_commit_free_running, 0, 2);
	tcase_add_loop_test(tc, test_torn_tail_cut, 0, 2);
	tcase_add_test(tc, test_torn_tail_zeros);
	tcase_add_test(tc, test_bad_crc_at_end_is_torn);
	tcase_add_loop_test(tc, test_flip_middle_record, 0, 2);
	tcase_add_test(tc, test_flip_in_last_round_is_torn);
	tcase_add_test(tc, test_flip_earlier_segment);
	tcase_add_test(tc, test_segment_gap_and_misnamed);
	tcase_add_test(tc, test_missing_middle_segment);
	tcase_add_test(tc, test_log_starts_late);
	tcase_add_test(tc, test_empty_last_segment_removed);
	tcase_add_test(tc, test_truncate_then_append);
	tcase_add_loop_test(tc, test_truncate_pending_and_written, 0, 2);
	tcase_add_loop_test(tc, test_truncate_across_segments, 0, 2);
	tcase_add_loop_test(tc, test_compaction, 0, 2);
	tcase_add_test(tc, test_reset_after_snapshot);
	tcase_add_test(tc, test_diverged_log_after_snapshot);
	tcase_add_test(tc, test_hard_state);
	tcase_add_loop_test(tc, test_hard_state_with_entries, 0, 2);
	tcase_add_test(tc, test_hard_state_torn_slot);
	tcase_add_test(tc, test_hard_state_tmp_and_size);
	tcase_add_test(tc, test_hard_state_term_raised);
	tcase_add_test(tc, test_append_errors);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_io_error_sticky);
	tcase_add_test(tc, test_append_enomem);
	tcase_add_loop_test(tc, test_crash_sigkill, 0, 2);
	suite_add_tcase(s, tc);
	TCase *ts = tcase_create("snapfile");
	tcase_add_checked_fixture(ts, setup, teardown);
	tcase_set_timeout(ts, 60);
	tcase_add_test(ts, test_snapshot_roundtrip);
	tcase_add_test(ts, test_snapshot_keeps_newest);
	tcase_add_test(ts, test_snapshot_crash_before_rename);
	tcase_add_test(ts, test_snapshot_errors);
	suite_add_tcase(s, ts);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(raft_log_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
