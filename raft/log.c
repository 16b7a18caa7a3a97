/* log.c - the durable Raft log: segment files, hard state, recovery and the group-commit I/O thread.
 *
 * The loop thread calls the public functions; they validate, encode records into `pending`
 * (under `mu`) and return. The I/O thread (the writer) swaps `pending` with its own `work` batch,
 * performs it (reset, truncate, write + fdatasync, hard state, compaction, in that order) and
 * publishes the operation sequence it reached, or, for a round of plain appends, writes it and
 * hands its fdatasync to a syncer thread, which publishes once every earlier round is durable.
 * Everything the writer owns (the segment table, the open segment, the durable index) is also
 * used by open() before the threads start and by close() after they are joined.
 *
 * Why this order inside one round is equivalent to the order of the calls: a truncation or reset
 * drops the pending entries it covers before it is queued, so the entries left in a batch all
 * come after it; the hard state is written after the batch's entries are durable (a commit index
 * never points past the disk); compaction only deletes whole old segments. A crash inside a round
 * can leave entries of a newer term than the durable hard state; open() raises the term then
 * (dropping the vote, which was never sent: nothing of the round was reported durable).
 *
 * Back of the envelope (this machine, ext4 on a virtio disk): a 4 KiB write + fdatasync into a
 * preallocated file costs ~85 us idle, ~130 us when it grows the file; CRC32C runs at ~8 GB/s.
 * So the disk allows ~10k rounds/s and everything else is noise; throughput comes from batching.
 * Under CPU contention one fdatasync took 1-5 ms (wake-up latency, not the disk), and two in
 * flight on the same file gave 2-10x the syncs/s; bench/log_bench.c measured 10 proposers at
 * 13-20k appends/s with two syncs in flight against 6-13k with one, 50 proposers 64-77k against
 * 23-40k. Hence the default of two: the writer writes round n+1 while a syncer flushes round n.
 *
 * Threads: the writer (io_main) owns the segment table; syncers (syncer_main) only fdatasync an
 * fd the writer handed them, and the writer drains them before anything that changes files
 * (roll, truncate, reset, compaction) or writes the hard state.
 */
#include "log.h"
#include "le.h"
#include "fullio.h"

#include "crc32c.h"
#include "snapfile.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define REC_MAGIC 0x524c534du /* "MSLR" */
#define REC_HEADER_BYTES 40u
#define HS_MAGIC 0x5348534du /* "MSHS" */
#define HS_SLOT_BYTES 4096u  /* one slot per page: a torn page cannot touch both */
#define HS_RECORD_BYTES 48u
#define HS_FILE_BYTES (2u * HS_SLOT_BYTES)
#define SEG_NAME_BYTES 24u /* 20 digits + ".seg" */
#define LOG_SEGMENTS_MAX (1u << 20)
#define LOG_DIR_ENTRIES_MAX (4u << 20) /* bound on the directory scan at open */
#define PATH_BYTES_MAX 4096u

/* Record header: 0 magic u32 | 4 crc u32 over [8, 40) + data | 8 index u64 | 16 term u64 |
 * 24 durable_index u64 | 32 data_bytes u32 | 36 type u8 | 37..39 zero. Then data, zero padding. */
typedef struct rec {
	uint64_t index;
	uint64_t term;
	uint64_t durable_index;
	uint32_t data_bytes;
	uint8_t type;
	const uint8_t *data;
} rec_t;

typedef struct seg {
	uint64_t first; /* from the file name */
	uint64_t last;  /* first - 1 while empty */
	uint64_t last_term;
	uint64_t used_bytes;
} seg_t;

/* One round's worth of operations. */
typedef struct batch {
	uint8_t *buf; /* encoded records, entries first..last */
	size_t len;
	size_t cap;
	size_t entries;
	uint64_t first;
	uint64_t last;
	uint64_t truncate_from; /* 0: none */
	bool reset;
	uint64_t reset_index;
	uint64_t reset_term;
	bool has_hs;
	raft_log_hard_state_t hs;
	uint64_t compact; /* 0: none */
	uint64_t seq;     /* highest operation in the batch, 0: empty */
} batch_t;

/* A round already written to the active segment, waiting for (or in) its fdatasync. */
typedef struct sync_job {
	uint64_t seq;
	uint64_t last_index;
	uint64_t last_term;
	int fd;
	bool running;
	bool done;
	int rc;
} sync_job_t;

struct raft_log {
	/* Fixed at open. */
	uint64_t segment_bytes;
	uint64_t pending_bytes_max;
	void (*notify)(void *arg);
	void *notify_arg;
	int dir_fd;
	int lock_fd; /* DIR/lock, flock'ed while open */
	int log_dir_fd;
	int hs_fd;
	pthread_t thread;
	bool thread_started;

	unsigned syncs_max; /* fdatasyncs in flight at once (1: the writer syncs each round itself) */
	pthread_t syncers[RAFT_LOG_SYNCS_MAX];
	unsigned n_syncers;

	pthread_mutex_t mu;
	pthread_cond_t cond;     /* pending work for the writer */
	pthread_cond_t job_cond; /* sync jobs: queued, done, slot free */
	/* Under mu. */
	batch_t pending;
	sync_job_t jobs[RAFT_LOG_SYNCS_MAX]; /* ring of written rounds whose fdatasync is pending */
	unsigned job_head;
	unsigned job_count;
	bool syncers_stop;
	uint64_t syncer_fdatasyncs;
	uint64_t seq_last; /* last sequence handed out */
	bool stopping;
	int error;
	raft_log_progress_t done;
	raft_log_stats_t stats;

	/* Loop thread only. */
	uint64_t view_last; /* last index once every call so far is performed */
	uint64_t floor;     /* snapshot or reset index: nothing at or below it can be truncated */
	uint64_t polled_seq;
	int polled_error;

	/* I/O thread only (and open/close). */
	batch_t work;
	seg_t *segs;
	size_t n_segs;
	size_t cap_segs;
	int active_fd;       /* segs[n_segs - 1] opened for writing, or -1 */
	uint64_t base_index; /* snapshot or reset point */
	uint64_t base_term;
	uint64_t durable_index;
	uint64_t durable_term;
	uint64_t hs_seq;
	raft_log_stats_t io_stats;
};

/* ---- encoding ---------------------------------------------------------------------------- */

uint64_t raft_log_record_bytes(uint32_t data_bytes)
{
	return REC_HEADER_BYTES + (((uint64_t)data_bytes + 7) & ~(uint64_t)7);
}

/* Encodes e at p without its CRC and durable index (the I/O thread seals them). */
static size_t rec_encode(uint8_t *p, const raft_log_entry_t *e)
{
	size_t len = (size_t)raft_log_record_bytes(e->data_bytes);
	memset(p, 0, REC_HEADER_BYTES);
	put_le32(p, REC_MAGIC);
	put_le64(p + 8, e->index);
	put_le64(p + 16, e->term);
	put_le32(p + 32, e->data_bytes);
	p[36] = e->type;
	if (e->data_bytes > 0) memcpy(p + REC_HEADER_BYTES, e->data, e->data_bytes);
	memset(p + REC_HEADER_BYTES + e->data_bytes, 0, len - REC_HEADER_BYTES - e->data_bytes);
	return len;
}

static size_t rec_len_at(const uint8_t *p) { return (size_t)raft_log_record_bytes(get_le32(p + 32)); }

static void rec_seal(uint8_t *p, uint64_t durable_index)
{
	put_le64(p + 24, durable_index);
	uint32_t data_bytes = get_le32(p + 32);
	put_le32(p + 4, crc32c(0, p + 8, REC_HEADER_BYTES - 8 + data_bytes));
}

/* Returns the length of the valid record at p (avail bytes readable), or 0 if there is none. */
static uint64_t rec_parse(const uint8_t *p, uint64_t avail, rec_t *r)
{
	if (avail < REC_HEADER_BYTES || get_le32(p) != REC_MAGIC) return 0;
	uint32_t data_bytes = get_le32(p + 32);
	if (data_bytes > RAFT_LOG_ENTRY_BYTES_MAX || p[37] != 0 || p[38] != 0 || p[39] != 0) return 0;
	uint64_t len = raft_log_record_bytes(data_bytes);
	if (len > avail) return 0;
	if (crc32c(0, p + 8, REC_HEADER_BYTES - 8 + data_bytes) != get_le32(p + 4)) return 0;
	for (uint64_t i = REC_HEADER_BYTES + data_bytes; i < len; i++)
		if (p[i] != 0) return 0;
	r->index = get_le64(p + 8);
	r->term = get_le64(p + 16);
	r->durable_index = get_le64(p + 24);
	r->data_bytes = data_bytes;
	r->type = p[36];
	r->data = p + REC_HEADER_BYTES;
	return len;
}

/* ---- small file helpers ------------------------------------------------------------------ */

static void set_err(char *errbuf, size_t errbuf_len, const char *fmt, ...)
{
	if (errbuf == NULL || errbuf_len == 0) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errbuf_len, fmt, ap);
	va_end(ap);
}

static void add_note(raft_log_state_t *st, const char *fmt, ...)
{
	size_t used = strlen(st->note);
	if (used + 2 >= sizeof st->note) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(st->note + used, sizeof st->note - used - 1, fmt, ap);
	va_end(ap);
	strcat(st->note, "\n");
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR) continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Zero-filled space up to segment_bytes; fdatasync on a file that does not grow is cheaper. */
static int preallocate(int fd, uint64_t from, uint64_t to)
{
	if (from >= to) return 0;
	if (fallocate(fd, 0, (off_t)from, (off_t)(to - from)) == 0) return 0;
	return errno == EOPNOTSUPP || errno == ENOSYS ? 0 : -errno;
}

static void seg_name(char *buf, size_t len, uint64_t first)
{
	int n = snprintf(buf, len, "%020" PRIu64 ".seg", first);
	assert(n == (int)SEG_NAME_BYTES);
	(void)n;
}

static bool parse_seg_name(const char *name, uint64_t *first)
{
	if (strlen(name) != SEG_NAME_BYTES || strcmp(name + 20, ".seg") != 0) return false;
	uint64_t v = 0;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9') return false;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10) return false;
		v = v * 10 + d;
	}
	*first = v;
	return v > 0;
}

static int dir_sync(raft_log_t *log, int fd)
{
	log->io_stats.dir_syncs++;
	return fsync(fd) < 0 ? -errno : 0;
}

static int data_sync(raft_log_t *log, int fd)
{
	log->io_stats.fdatasyncs++;
	return fdatasync(fd) < 0 ? -errno : 0;
}

/* ---- hard state -------------------------------------------------------------------------- */

static void hs_encode(uint8_t *p, uint64_t seq, const raft_log_hard_state_t *hs)
{
	memset(p, 0, HS_RECORD_BYTES);
	put_le32(p, HS_MAGIC);
	put_le64(p + 8, seq);
	put_le64(p + 16, hs->term);
	put_le64(p + 24, hs->vote);
	put_le64(p + 32, hs->commit);
	put_le32(p + 4, crc32c(0, p + 8, HS_RECORD_BYTES - 8));
}

static bool hs_decode(const uint8_t *p, uint64_t *seq, raft_log_hard_state_t *hs)
{
	if (get_le32(p) != HS_MAGIC || crc32c(0, p + 8, HS_RECORD_BYTES - 8) != get_le32(p + 4)) return false;
	*seq = get_le64(p + 8);
	hs->term = get_le64(p + 16);
	hs->vote = get_le64(p + 24);
	hs->commit = get_le64(p + 32);
	return *seq > 0;
}

static bool all_zero(const uint8_t *p, uint64_t len)
{
	for (uint64_t i = 0; i < len; i++)
		if (p[i] != 0) return false;
	return true;
}

/* Creates DIR/hardstate (two empty slots) atomically: tmp, fdatasync, rename, fsync dir. */
static int hs_create(raft_log_t *log)
{
	uint8_t zeros[HS_FILE_BYTES] = {0};
	int fd = openat(log->dir_fd, "hardstate.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return -errno;
	int rc = pwrite_full(fd, zeros, sizeof zeros, 0);
	if (rc == 0) rc = data_sync(log, fd);
	close(fd);
	if (rc == 0 && renameat(log->dir_fd, "hardstate.tmp", log->dir_fd, "hardstate") < 0) rc = -errno;
	if (rc == 0) rc = dir_sync(log, log->dir_fd);
	return rc;
}

static int hs_open(raft_log_t *log, raft_log_state_t *st, char *errbuf, size_t errbuf_len)
{
	(void)unlinkat(log->dir_fd, "hardstate.tmp", 0); /* a creation that did not finish */
	log->hs_fd = openat(log->dir_fd, "hardstate", O_RDWR | O_CLOEXEC);
	if (log->hs_fd < 0 && errno == ENOENT) {
		int rc = hs_create(log);
		if (rc < 0) {
			set_err(errbuf, errbuf_len, "hardstate: cannot create: %s", strerror(-rc));
			return rc;
		}
		log->hs_fd = openat(log->dir_fd, "hardstate", O_RDWR | O_CLOEXEC);
	}
	if (log->hs_fd < 0) {
		int rc = -errno;
		set_err(errbuf, errbuf_len, "hardstate: %s", strerror(-rc));
		return rc;
	}
	struct stat sb;
	if (fstat(log->hs_fd, &sb) < 0) return -errno;
	uint8_t buf[HS_FILE_BYTES];
	if (sb.st_size != HS_FILE_BYTES || pread_full(log->hs_fd, buf, sizeof buf, 0) < 0) {
		set_err(errbuf, errbuf_len, "hardstate: size %lld, expected %u", (long long)sb.st_size,
		        HS_FILE_BYTES);
		return -EUCLEAN;
	}
	uint64_t seq[2] = {0, 0};
	raft_log_hard_state_t hs[2] = {{0}};
	bool ok[2], zero[2];
	for (int i = 0; i < 2; i++) {
		ok[i] = hs_decode(buf + i * HS_SLOT_BYTES, &seq[i], &hs[i]);
		zero[i] = all_zero(buf + i * HS_SLOT_BYTES, HS_SLOT_BYTES);
	}
	if (!ok[0] && !ok[1] && !(zero[0] && zero[1])) {
		set_err(errbuf, errbuf_len, "hardstate: both slots are damaged");
		return -EBADMSG;
	}
	int best = ok[0] && (!ok[1] || seq[0] > seq[1]) ? 0 : 1;
	if (ok[best]) {
		st->hard_state = hs[best];
		log->hs_seq = seq[best];
		int other = 1 - best;
		if (!ok[other] && !zero[other])
			add_note(st, "hardstate: slot %d torn, using slot %d (sequence %" PRIu64 ")", other,
			         best, seq[best]);
	}
	return data_sync(log, log->hs_fd); /* what a crashed process left in the page cache */
}

static int io_write_hs(raft_log_t *log, const raft_log_hard_state_t *hs)
{
	uint8_t rec[HS_RECORD_BYTES];
	uint64_t seq = log->hs_seq + 1;
	hs_encode(rec, seq, hs);
	int rc = pwrite_full(log->hs_fd, rec, sizeof rec, (seq % 2) * HS_SLOT_BYTES);
	if (rc == 0) rc = data_sync(log, log->hs_fd);
	if (rc == 0) {
		log->hs_seq = seq;
		log->io_stats.hard_state_writes++;
	}
	return rc;
}

/* ---- segments (I/O thread) --------------------------------------------------------------- */

static void io_refresh_durable(raft_log_t *log)
{
	if (log->n_segs > 0 && log->segs[log->n_segs - 1].last > log->base_index) {
		log->durable_index = log->segs[log->n_segs - 1].last;
		log->durable_term = log->segs[log->n_segs - 1].last_term;
	} else {
		log->durable_index = log->base_index;
		log->durable_term = log->base_term;
	}
}

static int io_open_active(raft_log_t *log)
{
	assert(log->n_segs > 0);
	if (log->active_fd >= 0) return 0;
	char name[SEG_NAME_BYTES + 1];
	seg_name(name, sizeof name, log->segs[log->n_segs - 1].first);
	log->active_fd = openat(log->log_dir_fd, name, O_RDWR | O_CLOEXEC);
	return log->active_fd >= 0 ? 0 : -errno;
}

/* Closes the last segment for good: trims its preallocated tail so only the last segment ever
 * ends in zeros, and makes the trim durable before a newer segment exists. */
static int io_seal_active(raft_log_t *log)
{
	int rc = io_open_active(log);
	seg_t *s = &log->segs[log->n_segs - 1];
	if (rc == 0 && ftruncate(log->active_fd, (off_t)s->used_bytes) < 0) rc = -errno;
	if (rc == 0) rc = data_sync(log, log->active_fd);
	if (log->active_fd >= 0) close(log->active_fd);
	log->active_fd = -1;
	return rc;
}

static int segs_reserve(raft_log_t *log)
{
	if (log->n_segs < log->cap_segs) return 0;
	if (log->cap_segs >= LOG_SEGMENTS_MAX) return -ENOSPC;
	size_t cap = log->cap_segs ? log->cap_segs * 2 : 16;
	seg_t *s = realloc(log->segs, cap * sizeof *s);
	if (s == NULL) return -ENOMEM;
	log->segs = s;
	log->cap_segs = cap;
	return 0;
}

static int io_create_segment(raft_log_t *log, uint64_t first)
{
	assert(log->active_fd < 0);
	int rc = segs_reserve(log);
	if (rc < 0) return rc;
	char name[SEG_NAME_BYTES + 1];
	seg_name(name, sizeof name, first);
	int fd = openat(log->log_dir_fd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) return -errno;
	rc = preallocate(fd, 0, log->segment_bytes);
	if (rc < 0) {
		close(fd);
		(void)unlinkat(log->log_dir_fd, name, 0);
		return rc;
	}
	log->segs[log->n_segs++] =
	    (seg_t){.first = first, .last = first - 1, .last_term = 0, .used_bytes = 0};
	log->active_fd = fd;
	log->io_stats.segments_created++;
	return 0;
}

static int io_unlink_last(raft_log_t *log)
{
	assert(log->n_segs > 0);
	if (log->active_fd >= 0) close(log->active_fd);
	log->active_fd = -1;
	char name[SEG_NAME_BYTES + 1];
	seg_name(name, sizeof name, log->segs[log->n_segs - 1].first);
	if (unlinkat(log->log_dir_fd, name, 0) < 0) return -errno;
	log->n_segs--;
	log->io_stats.segments_deleted++;
	/* One sync per deletion: newest first, so a crash always leaves a prefix of the log. */
	return dir_sync(log, log->log_dir_fd);
}

static int io_write(raft_log_t *log, batch_t *b)
{
	assert(b->entries > 0 && b->len > 0);
	seg_t *a = log->n_segs > 0 ? &log->segs[log->n_segs - 1] : NULL;
	assert(a == NULL || a->last < b->first);
	bool new_seg = a == NULL || a->last + 1 != b->first || a->used_bytes + b->len > log->segment_bytes;
	int rc = 0;
	if (new_seg) {
		if (a != NULL) rc = io_seal_active(log);
		if (rc == 0) rc = io_create_segment(log, b->first);
	} else {
		rc = io_open_active(log);
	}
	if (rc < 0) return rc;
	a = &log->segs[log->n_segs - 1];

	uint64_t expect = b->first, last_term = 0;
	for (size_t off = 0; off < b->len;) {
		uint8_t *p = b->buf + off;
		assert(get_le64(p + 8) == expect);
		rec_seal(p, log->durable_index);
		last_term = get_le64(p + 16);
		off += rec_len_at(p);
		expect++;
	}
	assert(expect == b->last + 1);
	rc = pwrite_full(log->active_fd, b->buf, b->len, a->used_bytes);
	log->io_stats.writes++;
	if (rc == 0) rc = data_sync(log, log->active_fd);
	if (rc == 0 && new_seg) rc = dir_sync(log, log->log_dir_fd);
	if (rc < 0) return rc;
	a->used_bytes += b->len;
	a->last = b->last;
	a->last_term = last_term;
	log->durable_index = b->last;
	log->durable_term = last_term;
	log->io_stats.entries_written += b->entries;
	log->io_stats.bytes_written += b->len;
	if (b->entries > log->io_stats.round_entries_max) log->io_stats.round_entries_max = b->entries;
	return 0;
}

/* Finds the offset of record `index` in the last segment (and the term of the one before). */
static int io_find_record(raft_log_t *log, uint64_t index, uint64_t *off_out, uint64_t *prev_term)
{
	seg_t *s = &log->segs[log->n_segs - 1];
	assert(s->first < index && index <= s->last);
	uint8_t *map = mmap(NULL, s->used_bytes, PROT_READ, MAP_SHARED, log->active_fd, 0);
	if (map == MAP_FAILED) return -errno;
	int rc = -EUCLEAN;
	uint64_t off = 0, expect = s->first;
	rec_t r;
	while (off < s->used_bytes) {
		uint64_t len = rec_parse(map + off, s->used_bytes - off, &r);
		if (len == 0 || r.index != expect) {
			rc = -EBADMSG;
			break;
		}
		if (r.index == index) {
			*off_out = off;
			rc = 0;
			break;
		}
		*prev_term = r.term;
		off += len;
		expect++;
	}
	munmap(map, s->used_bytes);
	return rc;
}

static int io_truncate(raft_log_t *log, uint64_t from)
{
	assert(from > log->base_index);
	int rc = 0;
	while (rc == 0 && log->n_segs > 0 && log->segs[log->n_segs - 1].first >= from)
		rc = io_unlink_last(log);
	if (rc == 0 && log->n_segs > 0 && log->segs[log->n_segs - 1].last >= from) {
		seg_t *s = &log->segs[log->n_segs - 1];
		uint64_t off = 0, prev_term = 0;
		rc = io_open_active(log);
		if (rc == 0) rc = io_find_record(log, from, &off, &prev_term);
		if (rc == 0 && ftruncate(log->active_fd, (off_t)off) < 0) rc = -errno;
		if (rc == 0) rc = preallocate(log->active_fd, off, log->segment_bytes);
		/* Durable before anything is written after it: a crash must not mix old and new. */
		if (rc == 0) rc = data_sync(log, log->active_fd);
		if (rc == 0) {
			s->last = from - 1;
			s->last_term = prev_term;
			s->used_bytes = off;
		}
	}
	io_refresh_durable(log);
	return rc;
}

static int io_reset(raft_log_t *log, uint64_t index, uint64_t term)
{
	int rc = 0;
	while (rc == 0 && log->n_segs > 0)
		rc = io_unlink_last(log);
	log->base_index = index;
	log->base_term = term;
	io_refresh_durable(log);
	return rc;
}

static int io_compact(raft_log_t *log, uint64_t index)
{
	size_t n = 0;
	while (n + 1 < log->n_segs && log->segs[n].last < index)
		n++;
	if (n == 0) return 0;
	int rc = 0;
	size_t done = 0;
	for (; done < n; done++) {
		char name[SEG_NAME_BYTES + 1];
		seg_name(name, sizeof name, log->segs[done].first);
		if (unlinkat(log->log_dir_fd, name, 0) < 0) {
			rc = -errno;
			break;
		}
		log->io_stats.segments_deleted++;
	}
	memmove(log->segs, log->segs + done, (log->n_segs - done) * sizeof *log->segs);
	log->n_segs -= done;
	/* Oldest first: an interrupted compaction leaves a suffix, which open() accepts. */
	if (rc == 0) rc = dir_sync(log, log->log_dir_fd);
	return rc;
}

static int io_round(raft_log_t *log, batch_t *b)
{
	int rc = 0;
	if (b->reset) rc = io_reset(log, b->reset_index, b->reset_term);
	if (rc == 0 && b->truncate_from != 0) rc = io_truncate(log, b->truncate_from);
	if (rc == 0 && b->entries > 0) rc = io_write(log, b);
	if (rc == 0 && b->has_hs) rc = io_write_hs(log, &b->hs);
	if (rc == 0 && b->compact != 0) rc = io_compact(log, b->compact);
	return rc;
}

static void batch_clear(batch_t *b)
{
	uint8_t *buf = b->buf;
	size_t cap = b->cap;
	*b = (batch_t){.buf = buf, .cap = cap};
}

/* Can this round go down the pipeline: only entries, continuing the active segment? Anything
 * else (a roll, truncation, reset, hard state, compaction) waits for the pipeline to drain and
 * runs on the writer with its own fdatasyncs, so its ordering rules stay those of one thread. */
static bool io_can_pipeline(const raft_log_t *log, const batch_t *b)
{
	if (log->syncs_max < 2 || b->entries == 0 || b->reset || b->truncate_from || b->has_hs ||
	    b->compact || log->n_segs == 0)
		return false;
	const seg_t *a = &log->segs[log->n_segs - 1];
	return a->last + 1 == b->first && a->used_bytes + b->len <= log->segment_bytes;
}

/* Writes the round and queues its fdatasync for a syncer; returns once it is queued. */
static int io_write_pipelined(raft_log_t *log, batch_t *b)
{
	int rc = io_open_active(log);
	if (rc < 0) return rc;
	pthread_mutex_lock(&log->mu);
	uint64_t durable = log->done.last_index; /* what is known synced now */
	pthread_mutex_unlock(&log->mu);
	seg_t *a = &log->segs[log->n_segs - 1];
	uint64_t last_term = 0;
	for (size_t off = 0; off < b->len;) {
		uint8_t *p = b->buf + off;
		rec_seal(p, durable);
		last_term = get_le64(p + 16);
		off += rec_len_at(p);
	}
	rc = pwrite_full(log->active_fd, b->buf, b->len, a->used_bytes);
	log->io_stats.writes++;
	if (rc < 0) return rc;
	a->used_bytes += b->len;
	a->last = b->last;
	a->last_term = last_term;
	log->io_stats.entries_written += b->entries;
	log->io_stats.bytes_written += b->len;
	if (b->entries > log->io_stats.round_entries_max) log->io_stats.round_entries_max = b->entries;

	pthread_mutex_lock(&log->mu);
	while (log->job_count == log->syncs_max && log->error == 0)
		pthread_cond_wait(&log->job_cond, &log->mu);
	rc = log->error;
	if (rc == 0) {
		log->jobs[(log->job_head + log->job_count) % RAFT_LOG_SYNCS_MAX] = (sync_job_t){
		    .seq = b->seq, .last_index = b->last, .last_term = last_term, .fd = log->active_fd};
		log->job_count++;
		log->stats = log->io_stats; /* before the round can be reported durable */
		pthread_cond_broadcast(&log->job_cond);
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

/* Waits until every queued fdatasync is done; then the writer's view is the durable one. */
static int io_drain(raft_log_t *log)
{
	pthread_mutex_lock(&log->mu);
	while (log->job_count > 0 && log->error == 0)
		pthread_cond_wait(&log->job_cond, &log->mu);
	int rc = log->error;
	pthread_mutex_unlock(&log->mu);
	if (rc == 0) io_refresh_durable(log);
	return rc;
}

static void *syncer_main(void *arg)
{
	raft_log_t *log = arg;
	pthread_mutex_lock(&log->mu);
	for (;;) {
		sync_job_t *job = NULL;
		for (unsigned i = 0; i < log->job_count && job == NULL; i++) {
			sync_job_t *j = &log->jobs[(log->job_head + i) % RAFT_LOG_SYNCS_MAX];
			if (!j->running) job = j;
		}
		if (job == NULL) {
			if (log->syncers_stop) break;
			pthread_cond_wait(&log->job_cond, &log->mu);
			continue;
		}
		job->running = true;
		int fd = job->fd;
		pthread_mutex_unlock(&log->mu);
		int rc = fdatasync(fd) < 0 ? -errno : 0;
		pthread_mutex_lock(&log->mu);
		log->syncer_fdatasyncs++;
		job->done = true;
		job->rc = rc;
		/* Publish in order: a round is durable when it and every round before it are. */
		bool publish = false;
		while (log->job_count > 0 && log->jobs[log->job_head].done) {
			sync_job_t *j = &log->jobs[log->job_head];
			if (j->rc < 0 && log->error == 0) {
				log->error = j->rc;
				log->done.error = j->rc;
				publish = true;
			} else if (log->error == 0) {
				log->done.seq = j->seq;
				log->done.last_index = j->last_index;
				log->done.last_term = j->last_term;
				publish = true;
			}
			log->job_head = (log->job_head + 1) % RAFT_LOG_SYNCS_MAX;
			log->job_count--;
		}
		pthread_cond_broadcast(&log->job_cond);
		if (log->error != 0) pthread_cond_broadcast(&log->cond);
		if (publish && log->notify != NULL) {
			pthread_mutex_unlock(&log->mu);
			log->notify(log->notify_arg);
			pthread_mutex_lock(&log->mu);
		}
	}
	pthread_mutex_unlock(&log->mu);
	return NULL;
}

/* The writer: takes everything pending, performs it, publishes (or hands the sync on). */
static void *io_main(void *arg)
{
	raft_log_t *log = arg;
	pthread_mutex_lock(&log->mu);
	for (;;) {
		while (log->pending.seq == 0 && !log->stopping && log->error == 0)
			pthread_cond_wait(&log->cond, &log->mu);
		if (log->pending.seq == 0 || log->error != 0)
			break; /* stopping with nothing left, or failed */
		batch_t taken = log->pending;
		log->pending = log->work;
		batch_clear(&log->pending);
		log->work = taken;
		log->stats = log->io_stats;
		pthread_mutex_unlock(&log->mu);

		log->io_stats.rounds++;
		if (io_can_pipeline(log, &log->work)) {
			int rc = io_write_pipelined(log, &log->work);
			pthread_mutex_lock(&log->mu);
			if (rc < 0 && log->error == 0) {
				log->error = rc;
				log->done.error = rc;
			}
			batch_clear(&log->work);
			if (rc < 0) {
				pthread_mutex_unlock(&log->mu);
				if (log->notify != NULL) log->notify(log->notify_arg);
				pthread_mutex_lock(&log->mu);
			}
			continue;
		}
		int rc = io_drain(log);
		if (rc == 0) rc = io_round(log, &log->work);

		pthread_mutex_lock(&log->mu);
		if (rc < 0) {
			if (log->error == 0) log->error = rc;
			log->done.error = log->error;
		} else {
			log->done.seq = log->work.seq;
			log->done.last_index = log->durable_index;
			log->done.last_term = log->durable_term;
		}
		log->stats = log->io_stats;
		batch_clear(&log->work);
		pthread_mutex_unlock(&log->mu);
		if (log->notify != NULL) log->notify(log->notify_arg);
		pthread_mutex_lock(&log->mu);
	}
	log->stats = log->io_stats;
	pthread_mutex_unlock(&log->mu);
	(void)io_drain(log); /* the syncers finish what was handed to them */
	return NULL;
}

/* ---- recovery ---------------------------------------------------------------------------- */

typedef struct recovery {
	raft_log_t *log;
	const raft_log_options_t *opts;
	raft_log_state_t *st;
	char *errbuf;
	size_t errbuf_len;
	uint64_t snap_index;
	uint64_t snap_term;
	bool diverged; /* the log's entry at snap_index has another term: drop what follows */
} recovery_t;

static int cmp_seg(const void *a, const void *b)
{
	const seg_t *x = a, *y = b;
	return x->first < y->first ? -1 : x->first > y->first;
}

static int list_segments(recovery_t *rc_ctx)
{
	raft_log_t *log = rc_ctx->log;
	int fd = dup(log->log_dir_fd);
	if (fd < 0) return -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	int rc = 0;
	struct dirent *de;
	for (uint32_t n = 0; rc == 0 && (de = readdir(d)) != NULL; n++) {
		uint64_t first;
		if (n >= LOG_DIR_ENTRIES_MAX) {
			set_err(rc_ctx->errbuf, rc_ctx->errbuf_len, "log: more than %u directory entries",
			        LOG_DIR_ENTRIES_MAX);
			rc = -EUCLEAN;
		} else if (parse_seg_name(de->d_name, &first)) {
			rc = segs_reserve(log);
			if (rc == 0) log->segs[log->n_segs++] = (seg_t){.first = first, .last = first - 1};
		} else if (de->d_name[0] != '.') {
			add_note(rc_ctx->st, "log/%s: not a segment, ignored", de->d_name);
		}
	}
	closedir(d);
	if (rc == 0 && log->n_segs > 1) qsort(log->segs, log->n_segs, sizeof *log->segs, cmp_seg);
	return rc;
}

static int deliver(recovery_t *r, const rec_t *rec)
{
	if (rec->index == r->snap_index && rec->term != r->snap_term && !r->diverged) {
		r->diverged = true;
		add_note(r->st,
		         "log: entry %" PRIu64 " has term %" PRIu64 ", the snapshot has %" PRIu64
		         ": dropping the log (reset to the snapshot)",
		         rec->index, rec->term, r->snap_term);
	}
	if (rec->index <= r->snap_index || r->diverged) return 0;
	r->st->entries++;
	if (r->opts->entry_cb == NULL) return 0;
	raft_log_entry_t e = {.index = rec->index,
	                      .term = rec->term,
	                      .type = rec->type,
	                      .data_bytes = rec->data_bytes,
	                      .data = rec->data};
	int rc = r->opts->entry_cb(r->opts->entry_arg, &e);
	if (rc != 0)
		set_err(r->errbuf, r->errbuf_len, "log: the entry callback refused index %" PRIu64 ": %s",
		        rec->index, strerror(rc < 0 ? -rc : rc));
	return rc > 0 ? -rc : rc;
}

/* What follows a bad record at bad_off in the last segment: a torn write (return 0) or damage to
 * data that was durable, proven by a later valid record written after `expect` was synced. */
static int classify_tail(recovery_t *r, const char *name, const uint8_t *map, uint64_t size, uint64_t bad_off,
                         uint64_t expect)
{
	rec_t rec;
	for (uint64_t off = bad_off + 8; off + REC_HEADER_BYTES <= size; off += 8) {
		if (rec_parse(map + off, size - off, &rec) == 0 || rec.durable_index < expect) continue;
		set_err(r->errbuf, r->errbuf_len,
		        "log/%s: bad record at offset %" PRIu64 " (index %" PRIu64
		        "), but the record at offset %" PRIu64 " (index %" PRIu64
		        ") was written after it was durable: damaged log, refusing to start",
		        name, bad_off, expect, off, rec.index);
		return -EBADMSG;
	}
	return 0;
}

/* Scans segment i: checks every record, delivers entries, finds where the valid data ends. */
static int scan_segment(recovery_t *r, size_t i, bool is_last)
{
	raft_log_t *log = r->log;
	seg_t *s = &log->segs[i];
	char name[SEG_NAME_BYTES + 1];
	seg_name(name, sizeof name, s->first);
	int fd = openat(log->log_dir_fd, name, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		int rc = -errno;
		set_err(r->errbuf, r->errbuf_len, "log/%s: %s", name, strerror(-rc));
		return rc;
	}
	struct stat sb;
	int rc = fstat(fd, &sb) < 0 ? -errno : 0;
	uint64_t size = rc == 0 ? (uint64_t)sb.st_size : 0;
	uint8_t *map = NULL;
	if (size > 0) {
		map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED) {
			map = NULL;
			rc = -errno;
		}
	}
	uint64_t off = 0, expect = s->first;
	rec_t rec;
	while (rc == 0 && off < size) {
		uint64_t len = rec_parse(map + off, size - off, &rec);
		if (len == 0) break;
		if (rec.index != expect) {
			set_err(r->errbuf, r->errbuf_len,
			        "log/%s: record at offset %" PRIu64 " has index %" PRIu64
			        ", expected %" PRIu64,
			        name, off, rec.index, expect);
			rc = -EUCLEAN;
			break;
		}
		rc = deliver(r, &rec);
		s->last_term = rec.term;
		off += len;
		expect++;
	}
	s->last = expect - 1;
	s->used_bytes = off;
	uint64_t garbage_end = off;
	if (rc == 0 && off < size) {
		assert(map != NULL); /* size > 0 and the mapping succeeded */
		garbage_end = size;
		while (garbage_end > off && map[garbage_end - 1] == 0)
			garbage_end--;
		/* Zeros after the records are preallocated space (in an earlier segment only if a crash
		 * came between writing it and sealing it; the next segment's first index still has to
		 * follow). Anything else in an earlier segment is damage. */
		if (!is_last && garbage_end > off) {
			set_err(r->errbuf, r->errbuf_len,
			        "log/%s: bad record at offset %" PRIu64 " (index %" PRIu64
			        ") in a segment that is not the last",
			        name, off, expect);
			rc = -EBADMSG;
		} else if (garbage_end > off) {
			rc = classify_tail(r, name, map, size, off, expect);
		}
	}
	if (map != NULL) munmap(map, size);
	if (rc == 0 && garbage_end > off) {
		/* A torn write: cut it, and give the space back as zeros. */
		r->st->torn_bytes += garbage_end - off;
		add_note(r->st,
		         "log/%s: torn tail at offset %" PRIu64 " (index %" PRIu64 "): %" PRIu64 " bytes cut",
		         name, off, expect, garbage_end - off);
		if (ftruncate(fd, (off_t)off) < 0) rc = -errno;
		if (rc == 0) rc = preallocate(fd, off, log->segment_bytes);
	}
	if (rc == 0 && is_last) rc = data_sync(log, fd); /* durable now, whatever the last process did */
	close(fd);
	return rc;
}

static int check_continuity(recovery_t *r, size_t i)
{
	seg_t *s = &r->log->segs[i];
	char name[SEG_NAME_BYTES + 1];
	seg_name(name, sizeof name, s->first);
	if (i == 0) {
		if (s->first <= r->snap_index + 1) return 0;
		set_err(r->errbuf, r->errbuf_len,
		        "log/%s: the log starts at index %" PRIu64 " but the snapshot ends at %" PRIu64
		        ": entries are missing",
		        name, s->first, r->snap_index);
		return -EUCLEAN;
	}
	seg_t *p = &r->log->segs[i - 1];
	if (s->first <= p->last) {
		set_err(r->errbuf, r->errbuf_len,
		        "log/%s: overlaps the previous segment (which ends at %" PRIu64 ")", name, p->last);
		return -EUCLEAN;
	}
	/* A gap is harmless below the snapshot (an interrupted reset or compaction), fatal above. */
	if (s->first != p->last + 1 && s->first > r->snap_index + 1) {
		set_err(r->errbuf, r->errbuf_len, "log/%s: gap: the previous segment ends at index %" PRIu64,
		        name, p->last);
		return -EUCLEAN;
	}
	return 0;
}

static int recover_segments(recovery_t *r)
{
	raft_log_t *log = r->log;
	int rc = list_segments(r);
	for (size_t i = 0; rc == 0 && i < log->n_segs; i++) {
		rc = check_continuity(r, i);
		if (rc == 0) rc = scan_segment(r, i, i + 1 == log->n_segs);
		if (rc == 0 && log->segs[i].last < log->segs[i].first) {
			char name[SEG_NAME_BYTES + 1];
			seg_name(name, sizeof name, log->segs[i].first);
			if (i + 1 != log->n_segs) {
				set_err(r->errbuf, r->errbuf_len, "log/%s: empty segment before the last",
				        name);
				rc = -EUCLEAN;
			} else {
				add_note(r->st, "log/%s: no records, removed", name);
				rc = io_unlink_last(log);
			}
		}
	}
	if (rc == 0) rc = dir_sync(log, log->log_dir_fd);
	log->base_index = r->snap_index;
	log->base_term = r->snap_term;
	/* Everything up to the snapshot is covered by it and the rest is a dead history: as if the
	 * reset that should have followed the snapshot had run. */
	if (rc == 0 && r->diverged) rc = io_reset(log, r->snap_index, r->snap_term);
	io_refresh_durable(log);
	return rc;
}

/* ---- open / close ------------------------------------------------------------------------ */

static int open_dirs(raft_log_t *log, const char *dir, char *errbuf, size_t errbuf_len)
{
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		int rc = -errno;
		set_err(errbuf, errbuf_len, "%s: %s", dir, strerror(-rc));
		return rc;
	}
	log->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->dir_fd < 0) {
		int rc = -errno;
		set_err(errbuf, errbuf_len, "%s: %s", dir, strerror(-rc));
		return rc;
	}
	/* One process per data directory: a second daemon on it would interleave writes. */
	log->lock_fd = openat(log->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (log->lock_fd < 0 || flock(log->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		set_err(errbuf, errbuf_len, "%s: %s", dir,
		        rc == -EBUSY ? "in use by another log (DIR/lock is held)" : strerror(-rc));
		return rc;
	}
	bool created = mkdirat(log->dir_fd, "log", 0755) == 0;
	if (!created && errno != EEXIST) {
		int rc = -errno;
		set_err(errbuf, errbuf_len, "%s/log: %s", dir, strerror(-rc));
		return rc;
	}
	if (created) {
		int rc = dir_sync(log, log->dir_fd);
		if (rc < 0) return rc;
	}
	log->log_dir_fd = openat(log->dir_fd, "log", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (log->log_dir_fd < 0) {
		int rc = -errno;
		set_err(errbuf, errbuf_len, "%s/log: %s", dir, strerror(-rc));
		return rc;
	}
	return 0;
}

static void stop_syncers(raft_log_t *log);

static void log_free(raft_log_t *log)
{
	if (log->active_fd >= 0) close(log->active_fd);
	if (log->hs_fd >= 0) close(log->hs_fd);
	if (log->log_dir_fd >= 0) close(log->log_dir_fd);
	if (log->dir_fd >= 0) close(log->dir_fd);
	if (log->lock_fd >= 0) close(log->lock_fd); /* releases the flock */
	pthread_mutex_destroy(&log->mu);
	pthread_cond_destroy(&log->cond);
	pthread_cond_destroy(&log->job_cond);
	free(log->pending.buf);
	free(log->work.buf);
	free(log->segs);
	free(log);
}

int raft_log_open(const raft_log_options_t *opts, raft_log_t **out, raft_log_state_t *state, char *errbuf,
                  size_t errbuf_len)
{
	assert(out != NULL && state != NULL);
	memset(state, 0, sizeof *state);
	set_err(errbuf, errbuf_len, "%s", "");
	if (opts == NULL || opts->dir == NULL || strlen(opts->dir) >= PATH_BYTES_MAX ||
	    (opts->segment_bytes != 0 && opts->segment_bytes < RAFT_LOG_SEGMENT_BYTES_MIN) ||
	    opts->syncs_in_flight_max > RAFT_LOG_SYNCS_MAX) {
		set_err(errbuf, errbuf_len,
		        "log: bad options (dir, segment_bytes below %u or syncs_in_flight_max over %u)",
		        RAFT_LOG_SEGMENT_BYTES_MIN, RAFT_LOG_SYNCS_MAX);
		return -EINVAL;
	}
	raft_log_t *log = calloc(1, sizeof *log);
	if (log == NULL) return -ENOMEM;
	log->dir_fd = log->log_dir_fd = log->hs_fd = log->active_fd = log->lock_fd = -1;
	log->segment_bytes = opts->segment_bytes ? opts->segment_bytes : RAFT_LOG_SEGMENT_BYTES_DEFAULT;
	log->pending_bytes_max =
	    opts->pending_bytes_max ? opts->pending_bytes_max : RAFT_LOG_PENDING_BYTES_DEFAULT;
	log->notify = opts->notify;
	log->notify_arg = opts->notify_arg;
	log->syncs_max = opts->syncs_in_flight_max ? opts->syncs_in_flight_max : RAFT_LOG_SYNCS_DEFAULT;
	pthread_mutex_init(&log->mu, NULL);
	pthread_cond_init(&log->cond, NULL);
	pthread_cond_init(&log->job_cond, NULL);

	recovery_t r = {.log = log, .opts = opts, .st = state, .errbuf = errbuf, .errbuf_len = errbuf_len};
	int rc = open_dirs(log, opts->dir, errbuf, errbuf_len);
	if (rc == 0) rc = raft_snap_peek_latest(opts->dir, &r.snap_index, &r.snap_term, errbuf, errbuf_len);
	if (rc == 0) rc = hs_open(log, state, errbuf, errbuf_len);
	if (rc == 0) rc = recover_segments(&r);
	if (rc < 0) {
		if (errbuf != NULL && errbuf_len > 0 && errbuf[0] == '\0')
			set_err(errbuf, errbuf_len, "log %s: %s", opts->dir, strerror(-rc));
		log_free(log);
		return rc;
	}
	state->snapshot_index = r.snap_index;
	state->snapshot_term = r.snap_term;
	state->first_index = r.snap_index + 1;
	state->last_index = log->durable_index;
	state->last_term = log->durable_term;
	if (state->hard_state.term < state->last_term) {
		add_note(state,
		         "hardstate: term %" PRIu64 " is older than the log's last term %" PRIu64
		         ": raised, vote dropped",
		         state->hard_state.term, state->last_term);
		state->hard_state.term = state->last_term;
		state->hard_state.vote = 0;
	}
	log->view_last = log->durable_index;
	log->floor = r.snap_index;
	log->done = (raft_log_progress_t){.last_index = log->durable_index, .last_term = log->durable_term};
	log->stats = log->io_stats;
	for (unsigned i = 0; rc == 0 && log->syncs_max > 1 && i < log->syncs_max; i++) {
		rc = pthread_create(&log->syncers[i], NULL, syncer_main, log);
		if (rc == 0) log->n_syncers++;
	}
	if (rc == 0) rc = pthread_create(&log->thread, NULL, io_main, log);
	if (rc != 0) {
		set_err(errbuf, errbuf_len, "log: cannot start the I/O threads: %s", strerror(rc));
		stop_syncers(log);
		log_free(log);
		return -rc;
	}
	log->thread_started = true;
	*out = log;
	return 0;
}

static void stop_syncers(raft_log_t *log)
{
	pthread_mutex_lock(&log->mu);
	log->syncers_stop = true;
	pthread_cond_broadcast(&log->job_cond);
	pthread_mutex_unlock(&log->mu);
	for (unsigned i = 0; i < log->n_syncers; i++)
		pthread_join(log->syncers[i], NULL);
	log->n_syncers = 0;
}

int raft_log_close(raft_log_t *log)
{
	if (log == NULL) return 0;
	pthread_mutex_lock(&log->mu);
	log->stopping = true;
	pthread_cond_signal(&log->cond);
	pthread_mutex_unlock(&log->mu);
	if (log->thread_started) pthread_join(log->thread, NULL);
	stop_syncers(log);
	int rc = log->error;
	log_free(log); /* the last segment keeps its preallocated tail: the next open writes into it */
	return rc;
}

/* ---- loop-thread calls ------------------------------------------------------------------- */

/* Called with mu held: hands out the next sequence for an operation put into pending. */
static uint64_t next_seq_locked(raft_log_t *log)
{
	log->pending.seq = ++log->seq_last;
	pthread_cond_signal(&log->cond);
	return log->seq_last;
}

static int reserve_locked(raft_log_t *log, uint64_t add)
{
	batch_t *p = &log->pending;
	if (p->len + add <= p->cap) return 0;
	uint64_t cap = p->cap ? p->cap : 4096;
	while (cap < p->len + add)
		cap *= 2;
	if (cap > log->pending_bytes_max) cap = log->pending_bytes_max;
	uint8_t *buf = realloc(p->buf, (size_t)cap);
	if (buf == NULL) return -ENOMEM;
	p->buf = buf;
	p->cap = (size_t)cap;
	return 0;
}

int raft_log_append(raft_log_t *log, const raft_log_entry_t *entries, size_t n, uint64_t *seq)
{
	assert(log != NULL);
	if (entries == NULL || n == 0) return -EINVAL;
	uint64_t total = 0;
	for (size_t i = 0; i < n; i++) {
		const raft_log_entry_t *e = &entries[i];
		if (e->data_bytes > RAFT_LOG_ENTRY_BYTES_MAX || (e->data == NULL && e->data_bytes > 0) ||
		    e->index != log->view_last + 1 + i)
			return -EINVAL;
		total += raft_log_record_bytes(e->data_bytes);
		if (total > log->pending_bytes_max) return -E2BIG;
	}
	pthread_mutex_lock(&log->mu);
	batch_t *p = &log->pending;
	int rc = log->error;
	if (rc == 0 && p->len + total > log->pending_bytes_max) rc = -EAGAIN;
	if (rc == 0) rc = reserve_locked(log, total);
	if (rc == 0) {
		for (size_t i = 0; i < n; i++)
			p->len += rec_encode(p->buf + p->len, &entries[i]);
		if (p->entries == 0) p->first = entries[0].index;
		p->entries += n;
		p->last = entries[n - 1].index;
		uint64_t s = next_seq_locked(log);
		if (seq != NULL) *seq = s;
		log->view_last = p->last;
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

int raft_log_truncate(raft_log_t *log, uint64_t from, uint64_t *seq)
{
	assert(log != NULL);
	if (from <= log->floor) return -EINVAL;
	pthread_mutex_lock(&log->mu);
	int rc = log->error;
	batch_t *p = &log->pending;
	if (rc == 0 && from <= log->view_last) {
		if (p->entries > 0 && from >= p->first) {
			/* Only pending entries are cut: find where entry `from` starts. */
			size_t off = 0;
			for (uint64_t i = p->first; i < from; i++)
				off += rec_len_at(p->buf + off);
			assert(off < p->len && get_le64(p->buf + off + 8) == from);
			p->entries -= (size_t)(p->last - from + 1);
			p->len = off;
			p->last = from - 1;
		} else {
			/* Everything pending goes, and written entries from `from` on are cut on disk. */
			p->len = 0;
			p->entries = 0;
			p->first = p->last = 0;
			if (p->truncate_from == 0 || from < p->truncate_from) p->truncate_from = from;
		}
		log->view_last = from - 1;
	}
	if (rc == 0) {
		uint64_t s = next_seq_locked(log);
		if (seq != NULL) *seq = s;
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

int raft_log_reset(raft_log_t *log, uint64_t index, uint64_t term, uint64_t *seq)
{
	assert(log != NULL);
	if (index < log->floor) return -EINVAL;
	pthread_mutex_lock(&log->mu);
	int rc = log->error;
	if (rc == 0) {
		batch_t *p = &log->pending;
		p->len = 0;
		p->entries = 0;
		p->first = p->last = 0;
		p->truncate_from = 0;
		p->reset = true;
		p->reset_index = index;
		p->reset_term = term;
		uint64_t s = next_seq_locked(log);
		if (seq != NULL) *seq = s;
		log->view_last = index;
		log->floor = index;
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

int raft_log_set_hard_state(raft_log_t *log, const raft_log_hard_state_t *hs, uint64_t *seq)
{
	assert(log != NULL && hs != NULL);
	pthread_mutex_lock(&log->mu);
	int rc = log->error;
	if (rc == 0) {
		log->pending.has_hs = true;
		log->pending.hs = *hs;
		uint64_t s = next_seq_locked(log);
		if (seq != NULL) *seq = s;
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

int raft_log_compact(raft_log_t *log, uint64_t index, uint64_t *seq)
{
	assert(log != NULL);
	if (index == 0) return -EINVAL;
	pthread_mutex_lock(&log->mu);
	int rc = log->error;
	if (rc == 0) {
		if (index > log->pending.compact) log->pending.compact = index;
		uint64_t s = next_seq_locked(log);
		if (seq != NULL) *seq = s;
	}
	pthread_mutex_unlock(&log->mu);
	return rc;
}

int raft_log_poll(raft_log_t *log, raft_log_progress_t *out)
{
	assert(log != NULL && out != NULL);
	pthread_mutex_lock(&log->mu);
	*out = log->done;
	pthread_mutex_unlock(&log->mu);
	int changed = out->seq != log->polled_seq || out->error != log->polled_error;
	log->polled_seq = out->seq;
	log->polled_error = out->error;
	return changed;
}

uint64_t raft_log_last_index(const raft_log_t *log)
{
	assert(log != NULL);
	return log->view_last;
}

void raft_log_stats(raft_log_t *log, raft_log_stats_t *out)
{
	assert(log != NULL && out != NULL);
	pthread_mutex_lock(&log->mu);
	*out = log->stats;
	out->fdatasyncs += log->syncer_fdatasyncs;
	pthread_mutex_unlock(&log->mu);
}
