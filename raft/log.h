/* log.h - the durable Raft log: CRC32C-checked segment files, a double-buffered hard-state file,
 * and an I/O thread (plus fdatasync helpers) that group-commits appends so the loop thread never
 * touches the disk.
 *
 * The log stores entries (index, term, type, data) and knows nothing of their meaning. It is used
 * by ONE thread (the loop thread); every call returns at once. raft_log_append() copies entries
 * into a pending buffer; the I/O thread takes everything pending since its last round, writes it
 * with one pwrite() and makes it durable with one fdatasync(), so entries appended while a sync
 * is in flight join the next round (group commit). By default two rounds may be in flight: while
 * one round's fdatasync runs on a syncer thread the next round is written and synced too, and
 * rounds are reported durable strictly in order. Truncation, hard state and compaction go
 * through the same thread, ordered with the appends. Every call returns an operation sequence
 * number; after each round an I/O thread calls opts.notify (bind it to uv_async_send) and the
 * loop thread calls raft_log_poll() to learn the highest sequence whose
 * operations are all durable. A sequence number is unambiguous where an index is not (after a
 * truncation the same index can name two different entries).
 *
 * Layout under opts.dir:
 *   log/00000000000000000001.seg  segments named by their first index, preallocated to
 *                                 segment_bytes with fallocate (write + fdatasync measured ~85 us
 *                                 against ~130 us when it grows the file, on an idle machine)
 *                                 and trimmed to their records when they roll.
 *   lock                          flock'ed while the log is open: -EBUSY for a second opener.
 *   hardstate                     two 4 KiB slots (term, vote, commit, sequence, CRC); a write
 *                                 goes to the older slot, so a torn write leaves the newer one.
 *                                 One fdatasync per write, no rename or directory sync (a tmp +
 *                                 rename would cost three journal commits per vote/commit).
 *   snap/                         snapshot files (snapfile.h); the newest one's header gives the
 *                                 snapshot index below which entries are not returned by open.
 *
 * A record is a 40-byte header (magic, CRC32C of the rest of the header and the data, index,
 * term, durable_index, data length, type) plus data, padded to 8 bytes. durable_index is the
 * highest index that was already reported durable when the record was written; it lets open() tell a
 * torn tail from corruption: in the LAST segment a bad record (bad CRC, partial, zeros) ends the
 * log and is truncated away unless some valid record after it says the bad index was durable,
 * in which case acknowledged data is damaged and open() fails with -EBADMSG naming the file and
 * offset. Any bad record in an earlier segment fails open() the same way. Known limit: damage to
 * the very last durable record(s), with nothing written after them, is indistinguishable from a
 * torn write and is truncated (as etcd's WAL does).
 *
 * Errors are negative errno values: -EBADMSG (a checksum or record is bad), -EUCLEAN (files are
 * inconsistent: index gap, misnamed segment, bad hard-state file), -EINVAL (bad argument),
 * -E2BIG / -EAGAIN (over the pending buffer's bound), -EBUSY (the directory is open elsewhere),
 * -ENOMEM, and the errno of a failed system call. An I/O error on the I/O thread is sticky: the log stops,
 * the error is reported by raft_log_poll() and returned by every later call, and the node must stop (after a
 * failed fdatasync the page cache can no longer be trusted).
 */
#ifndef METASTORE_RAFT_LOG_H
#define METASTORE_RAFT_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_LOG_ENTRY_BYTES_MAX (32u * 1024u * 1024u) /* data of one entry; checked on read too */
#define RAFT_LOG_SEGMENT_BYTES_DEFAULT (64u * 1024u * 1024u)
#define RAFT_LOG_SEGMENT_BYTES_MIN 4096u
#define RAFT_LOG_PENDING_BYTES_DEFAULT (64u * 1024u * 1024u)
#define RAFT_LOG_NOTE_BYTES 1024u
#define RAFT_LOG_SYNCS_MAX 4u     /* fdatasyncs in flight at once, at most */
#define RAFT_LOG_SYNCS_DEFAULT 2u /* measured with bench/log_bench.c: see log.c */

typedef struct raft_log raft_log_t;

typedef struct raft_log_entry {
	uint64_t index;
	uint64_t term;
	uint8_t type;
	uint32_t data_bytes;
	const void *data; /* may be NULL when data_bytes == 0 */
} raft_log_entry_t;

typedef struct raft_log_hard_state {
	uint64_t term;
	uint64_t vote; /* node id voted for in term, 0 for none */
	uint64_t commit;
} raft_log_hard_state_t;

typedef struct raft_log_options {
	const char *dir;            /* data directory; log/, snap/ and hardstate are created in it */
	uint64_t segment_bytes;     /* 0: RAFT_LOG_SEGMENT_BYTES_DEFAULT; >= RAFT_LOG_SEGMENT_BYTES_MIN */
	uint64_t pending_bytes_max; /* 0: RAFT_LOG_PENDING_BYTES_DEFAULT; bound of unwritten records */
	/* Rounds whose fdatasync may run at once (0: RAFT_LOG_SYNCS_DEFAULT; max RAFT_LOG_SYNCS_MAX).
	 * With 1 the I/O thread writes and syncs each round itself. With k > 1 it writes a round of
	 * plain appends and hands its fdatasync to one of k syncer threads, and writes the next
	 * round meanwhile; rounds are still reported durable strictly in order. */
	unsigned syncs_in_flight_max;
	/* Called on an I/O thread after every round that completes (possibly from two threads at
	 * once when syncs_in_flight_max > 1), outside any lock; must not block. */
	void (*notify)(void *arg);
	void *notify_arg;
	/* Called during open for every entry after the snapshot index, in order. e->data is valid
	 * only during the call. A negative errno return aborts open with it. If open fails, the
	 * entries already delivered must be discarded. May be NULL. */
	int (*entry_cb)(void *arg, const raft_log_entry_t *e);
	void *entry_arg;
} raft_log_options_t;

/* What open found. */
typedef struct raft_log_state {
	raft_log_hard_state_t hard_state; /* term raised to the last entry's term if a crash left
	                                   * entries of a newer term than the durable hard state */
	uint64_t snapshot_index;          /* newest snapshot file's, 0 if none */
	uint64_t snapshot_term;
	uint64_t first_index; /* first index delivered (snapshot_index + 1 when the log is empty) */
	uint64_t last_index;  /* last index in the log, or snapshot_index if that is larger */
	uint64_t last_term;
	uint64_t entries;               /* delivered through entry_cb */
	uint64_t torn_bytes;            /* bytes cut from the tail of the last segment */
	char note[RAFT_LOG_NOTE_BYTES]; /* what recovery did, one line per action; "" if nothing */
} raft_log_state_t;

/* Progress reported after I/O rounds. */
typedef struct raft_log_progress {
	uint64_t seq;        /* every operation with a sequence <= seq is durable */
	uint64_t last_index; /* last index on disk after those operations */
	uint64_t last_term;
	int error; /* 0, or the sticky error that stopped the log */
} raft_log_progress_t;

typedef struct raft_log_stats {
	uint64_t rounds;     /* I/O thread rounds (one per batch of queued operations) */
	uint64_t writes;     /* pwrite() calls of records */
	uint64_t fdatasyncs; /* of segments and the hard-state file */
	uint64_t dir_syncs;  /* fsync of a directory */
	uint64_t entries_written;
	uint64_t bytes_written;
	uint64_t hard_state_writes;
	uint64_t segments_created;
	uint64_t segments_deleted;
	uint64_t round_entries_max; /* most entries written in one round */
} raft_log_stats_t;

/* On-disk size of a record with data_bytes of data (header + data + padding). */
uint64_t raft_log_record_bytes(uint32_t data_bytes);

/* Open (creating if needed) the log in opts->dir, recover it and start the I/O thread. Returns 0,
 * or a negative errno with a reason (file and offset for damage) in errbuf. */
int raft_log_open(const raft_log_options_t *opts, raft_log_t **out, raft_log_state_t *state, char *errbuf,
                  size_t errbuf_len);

/* Write what is pending, stop the I/O thread, free. Returns 0 or the sticky error. */
int raft_log_close(raft_log_t *log);

/* Queue n entries (copied). entries[0].index must be last_index + 1 of the log as the previous
 * calls left it, and indexes consecutive. Returns 0, -EINVAL (data_bytes over the cap or an
 * index that does not follow, n == 0), -E2BIG (the records are larger than pending_bytes_max:
 * split the call), -EAGAIN (they do not fit beside what is pending), -ENOMEM, or the sticky error. *seq (may
 * be NULL) receives the operation sequence. */
int raft_log_append(raft_log_t *log, const raft_log_entry_t *entries, size_t n, uint64_t *seq);

/* Remove entries with index >= from (a follower's conflicting suffix). Entries still pending are
 * dropped in memory; written ones are cut on disk in order with the other operations. from must
 * be above the snapshot/reset index (-EINVAL otherwise); from > last index is a no-op. */
int raft_log_truncate(raft_log_t *log, uint64_t from, uint64_t *seq);

/* Discard the whole log; the next append is index + 1 (after installing a snapshot at index/term
 * that the log does not match). index must be >= the current snapshot/reset index (-EINVAL). */
int raft_log_reset(raft_log_t *log, uint64_t index, uint64_t term, uint64_t *seq);

/* Persist the hard state; written after the entries of the same round are durable, so a commit
 * index never gets ahead of the entries on disk. */
int raft_log_set_hard_state(raft_log_t *log, const raft_log_hard_state_t *hs, uint64_t *seq);

/* Delete whole segments that hold only entries below index: the segment containing index and the
 * last segment are always kept. Only compact up to a committed snapshot's index. */
int raft_log_compact(raft_log_t *log, uint64_t index, uint64_t *seq);

/* Fetch progress. Returns 1 if it changed since the last call, 0 if not. Loop thread. */
int raft_log_poll(raft_log_t *log, raft_log_progress_t *out);

/* Last index of the log as the calls so far leave it (pending included). */
uint64_t raft_log_last_index(const raft_log_t *log);

void raft_log_stats(raft_log_t *log, raft_log_stats_t *out);

#endif
