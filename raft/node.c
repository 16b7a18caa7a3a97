/* node.c - a Raft node at run time: the core on a libuv loop, with the log, transport, batching.
 *
 * One loop thread owns everything here. Inputs arrive as callbacks (peer frames, log
 * completions, the tick timer, application proposals) and are only recorded or stepped into the
 * core; a uv_check handle then does the work of the iteration once: it packs the proposals of
 * the iteration into entries, drains the core's Ready batches (queue log writes, send messages,
 * apply committed entries, serve reads, install snapshots) and lets the transport's own check
 * handle, which runs after ours, write everything queued in one syscall per peer. An idle
 * handle keeps the poll from blocking while work is left over.
 *
 * Costs (one 100-byte proposal on a 3-node loopback cluster): the leader does one log write
 * and one fdatasync per group of proposals that arrive while the previous sync runs (group
 * commit, on the log's I/O thread), one AppendEntries frame per follower per iteration, and
 * applies each entry once; a follower does the same write + fdatasync and one response.
 *
 * Peer frames: u8 kind, then
 *   KIND_RAFT     a raft message (msg.h);
 *   KIND_FORWARD  u64 batch_id, then blobs (u32 len | bytes)*: a follower's proposals;
 *   KIND_ACK      u64 batch_id, u64 index, u64 term: the batch is in the leader's entry index;
 *   KIND_NACK     u64 batch_id, i32 errno: refused (not leader, full, transfer): resend later;
 *   KIND_PEER     u64 id, addr: the address of a member being added (best effort broadcast).
 * Entry payload: blobs (u32 len | bytes)*, walked by raft_entry_iter_next().
 *
 * Proposal order and at-most-once: the application deduplicates by (origin node, sequence)
 * with a high-water mark, which is only right if a node's blobs are applied in the order it
 * proposed them. So every node keeps its unresolved batches in order, and
 *   - on any change of term or leader it resends ALL unresolved batches, oldest first, before
 *     anything new (an entry acknowledged in an old term may or may not survive: if it does,
 *     the resent copy is applied after it and deduplicated);
 *   - a leader that refuses a batch (NACK) refuses every later batch from that origin until the
 *     origin resends from the refused one (batch ids are consecutive per origin);
 *   - a batch is resolved when the entry it was acknowledged in is applied with the same term.
 *
 * Snapshot I/O never runs on the loop thread (except at start, before anything is served). It
 * runs in jobs on the libuv thread pool, one job at a time in the order queued:
 *   - taking: the loop streams the application's state (cb.snapshot_write) into a memory buffer
 *     and takes the core's meta at that applied index; a job creates the file, writes it,
 *     commits it (fsync, rename, fsync dir) and loads it back; on the loop again the new file is
 *     swapped in and the core and the log are compacted. At most one such job at a time. With
 *     cfg.snapshot_fork a forked child streams and writes the file instead (the loop stalls for
 *     the fork only); no job runs until the tick has reaped it, then a job loads the file;
 *   - receiving: each chunk of rd.snap_chunks is copied into a job that writes it to the incoming
 *     file; rd.snapshot_install queues a job that commits (verifies, fsyncs, renames) and loads
 *     the file, and on the loop the application is restored from memory (cb.snapshot_read), the
 *     log reset and raft_core_snapshot_installed() called. That may be several Readys after the
 *     one that asked: the core freezes its log while an install is pending (core.h);
 *   - sending: chunks come from the newest file, mmapped (read-only, shared: page-cache pages,
 *     in this process's RSS only while touched; a restore drops them again).
 * Memory cost: the newest snapshot file stays mapped for the node's life, replaced when a newer
 * one is loaded. While a snapshot
 * is taken, the application's stream (up to twice its size: the buffer grows by doubling) lives
 * beside it until the job has written it; then the new file is loaded and the old one freed, so
 * the peak is about three times the state. Incoming chunks queue at most one file's bytes (a
 * new stream drops the chunks of the old one still queued). raft_node_stop() waits for the
 * running job (it holds an open_handles count) and drops the queued ones.
 *
 * Known limit: addresses of members added at run time reach other nodes only by a best-effort
 * broadcast, so restart nodes with a --peers list that includes them.
 */
#include "node.h"
#include "le.h"

#include "core.h"
#include "crc32c.h"
#include "log.h"
#include "msg.h"
#include "snapfile.h"
#include "transport.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { KIND_RAFT = 1, KIND_FORWARD = 2, KIND_ACK = 3, KIND_NACK = 4, KIND_PEER = 5 };

#define BLOB_LEN_BYTES 4u
#define HELD_MSGS_MAX 65536u
#define READS_PENDING_MAX 65536u
#define WRITES_PENDING_MAX 65536u
#define FORWARD_ACKS_MAX 4096u
#define READ_RETRY_MS 300u

/* ------------------------------------------------------------------ small containers */

typedef struct buf {
	uint8_t *p;
	size_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t more)
{
	if (b->len + more <= b->cap) return 0;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < b->len + more) cap *= 2;
	uint8_t *p = realloc(b->p, cap);
	if (!p) return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int buf_append(buf_t *b, const void *data, size_t len)
{
	int rc = buf_reserve(b, len);
	if (rc < 0) return rc;
	if (len) memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static int blob_append(buf_t *b, const void *blob, size_t len)
{
	uint8_t hdr[BLOB_LEN_BYTES];
	put_le32(hdr, (uint32_t)len);
	int rc = buf_reserve(b, BLOB_LEN_BYTES + len);
	if (rc < 0) return rc;
	buf_append(b, hdr, sizeof hdr);
	buf_append(b, blob, len);
	return 0;
}

void raft_entry_iter_init(raft_entry_iter_t *it, const uint8_t *data, size_t len)
{
	it->p = data;
	it->end = data ? data + len : data;
}

int raft_entry_iter_next(raft_entry_iter_t *it, const uint8_t **blob, size_t *len)
{
	if (it->p == it->end) return 0;
	if ((size_t)(it->end - it->p) < BLOB_LEN_BYTES) return -EINVAL;
	uint32_t n = get_le32(it->p);
	if (n > (size_t)(it->end - it->p) - BLOB_LEN_BYTES) return -EINVAL;
	*blob = it->p + BLOB_LEN_BYTES;
	*len = n;
	it->p += BLOB_LEN_BYTES + n;
	return 1;
}

/* Validate a blob sequence (a forwarded batch); returns the blob count or -EINVAL. */
static int64_t blobs_check(const uint8_t *data, size_t len)
{
	raft_entry_iter_t it;
	const uint8_t *b;
	size_t n;
	int64_t count = 0;
	int rc;
	raft_entry_iter_init(&it, data, len);
	while ((rc = raft_entry_iter_next(&it, &b, &n)) == 1) {
		if (n > RAFT_NODE_BLOB_BYTES_MAX) return -EINVAL;
		count++;
	}
	return rc < 0 ? rc : count;
}

/* ------------------------------------------------------------------ the node */

/* A batch of this node's own proposals, kept until the entry holding it is applied. */
typedef struct batch {
	struct batch *next;
	uint64_t id;      /* consecutive per node */
	buf_t blobs;      /* (u32 len | blob)* */
	uint64_t *seqs;   /* the application's sequence of each blob */
	uint32_t n;
	uint64_t created_ms;
	enum { B_QUEUED, B_SENT, B_ACKED } state;
	uint64_t index, term; /* B_ACKED */
} batch_t;

/* Leader side: which forwarded batches went into the entry being built. */
typedef struct fwd_ref {
	uint64_t from, batch_id;
} fwd_ref_t;

typedef struct held_msg { /* a message that may leave only after log write `seq` is durable */
	uint64_t seq, to;
	uint8_t *frame;
	size_t len;
} held_msg_t;

typedef struct write_rec { /* a log write whose durability the core must hear about */
	uint64_t seq, index, term;
} write_rec_t;

typedef struct read_req {
	uint64_t read_id, ctx;
	uint64_t index;
	bool have_index;
	uint64_t started_ms, asked_ms;
} read_req_t;

/* The newest local snapshot file, all of it mapped (see the header: Snapshot I/O). A read-only
 * shared mapping of an immutable file: its pages are the page cache's, counted in this process's
 * RSS only while touched (sending chunks, a restore) and dropped again after a restore. */
typedef struct snap_image {
	uint64_t index, term;
	raft_conf_t conf;
	const uint8_t *bytes; /* the whole file, mmapped; NULL when there is no snapshot */
	uint64_t file_bytes, data_offset, data_bytes;
} snap_image_t;

/* One piece of snapshot file I/O for the thread pool (see the snapshots section). */
typedef struct snap_job {
	uv_work_t work;
	struct snap_job *next;
	raft_node_t *n;
	enum { SNAP_JOB_TAKE, SNAP_JOB_CHUNK, SNAP_JOB_INSTALL } kind;
	bool file_written; /* SNAP_JOB_TAKE: a forked child wrote the file already; the job loads it */
	raft_snapshot_meta_t meta; /* TAKE: taken at this index; CHUNK: .index; INSTALL: to install */
	uint64_t chunk_offset;     /* CHUNK */
	size_t queued_bytes;       /* CHUNK: counted in snap_chunk_queued_bytes */
	buf_t data;                /* TAKE: the application's stream; CHUNK: the chunk's bytes */
	snap_image_t image;        /* TAKE, INSTALL: the committed file, loaded (worker result) */
	int rc;                    /* worker result */
	char err[256];
} snap_job_t;

struct raft_node {
	uv_loop_t *loop;
	raft_node_config_t cfg;
	char data_dir[4096];
	raft_core_t *core;
	raft_log_t *log;
	transport_t *tp;

	uv_timer_t tick;
	uv_check_t check;
	uv_idle_t idle;
	uv_async_t log_async;
	bool stopping, idle_on;
	int fatal; /* sticky error: the node stops doing anything */
	void (*stop_cb)(void *);
	void *stop_arg;
	int open_handles; /* handles not yet closed + the running snapshot job; node freed at 0 */

	uint64_t now_ms;
	size_t snap_stream_bytes; /* the newest snapshot's data size: the next stream's buffer starts there */
	pid_t snap_child;          /* cfg.snapshot_fork: the child writing a snapshot file (0: none) */
	snap_job_t *snap_child_job; /* its SNAP_JOB_TAKE, pushed (to load the file) when it exits 0 */
	uint64_t snap_child_started_ms;
	uint64_t term, leader; /* as last seen in soft state */
	raft_role_t role;
	uint64_t applied;

	/* own proposals */
	buf_t cur;          /* blobs proposed this iteration, not yet in a batch */
	uint64_t *cur_seqs;
	uint32_t cur_n, cur_seqs_cap;
	batch_t *batches, *batches_tail; /* unresolved, oldest first */
	uint64_t next_batch_id;
	size_t inflight_bytes;
	bool resend_all; /* a term/leader change: resend every unresolved batch, oldest first */

	/* leader: the entry being built from own and forwarded batches */
	buf_t entry;
	fwd_ref_t fwd[FORWARD_ACKS_MAX];
	uint32_t n_fwd;
	batch_t *own_in_entry[FORWARD_ACKS_MAX];
	uint32_t n_own_in_entry;
	struct origin_expect {
		uint64_t id, next_batch;
		bool blocked;
	} expect[RAFT_NODES_MAX + 1];

	/* log writes and held messages */
	write_rec_t *writes;
	size_t n_writes;
	uint64_t last_write_seq, durable_seq;
	uint64_t hs_term, hs_vote; /* last term/vote queued to the hard-state file */
	held_msg_t *held;
	size_t n_held;

	/* reads */
	read_req_t *reads;
	size_t n_reads;
	uint64_t next_read_ctx;

	/* snapshots: file I/O in jobs on the thread pool, one at a time, in order */
	snap_image_t snap;             /* newest local snapshot file, for sending chunks */
	snap_job_t *jobs, *jobs_tail;  /* queued, not started */
	snap_job_t *job_running;       /* on the pool; counted in open_handles */
	size_t snap_chunk_queued_bytes; /* chunk bytes in jobs not yet freed */
	bool snapshotting;             /* a SNAP_JOB_TAKE is queued or running: at most one */
	raft_snap_writer_t *snap_in;   /* incoming file (follower): touched by jobs only */
	uint64_t snap_in_index;

	/* restored entries (start-up only) */
	raft_entry_t *boot_entries;
	size_t n_boot, boot_cap;

	uint8_t *frame_buf;
	size_t frame_cap;
	raft_entry_t *decode_entries;

	raft_node_status_t counters; /* only the counters part is used */
};

static uint64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void node_log(raft_node_t *n, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void node_log(raft_node_t *n, const char *fmt, ...)
{
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "raft[%u]: %s\n", n->cfg.id, line);
}

static void node_fail(raft_node_t *n, int err, const char *what)
{
	if (n->fatal) return;
	n->fatal = err ? err : -EIO;
	node_log(n, "fatal: %s: %s; this node stops serving", what, strerror(-n->fatal));
}

static void node_release(raft_node_t *n);

static const raft_peer_addr_t *peer_addr(const raft_node_t *n, uint64_t id)
{
	for (uint32_t i = 0; i < n->cfg.n_peers; i++)
		if (n->cfg.peers[i].id == id) return &n->cfg.peers[i];
	return NULL;
}

/* ------------------------------------------------------------------ sending */

static uint8_t *frame_alloc(raft_node_t *n, size_t len)
{
	if (len > n->frame_cap) {
		size_t cap = n->frame_cap ? n->frame_cap : 65536;
		while (cap < len) cap *= 2;
		uint8_t *p = realloc(n->frame_buf, cap);
		if (!p) return NULL;
		n->frame_buf = p;
		n->frame_cap = cap;
	}
	return n->frame_buf;
}

static void send_frame(raft_node_t *n, uint64_t to, const uint8_t *frame, size_t len)
{
	if (to == n->cfg.id) return;
	(void)transport_send(n->tp, to, frame, len); /* drops are Raft's to retransmit */
}

/* Encode a raft message into n->frame_buf (kind byte first); fills a snapshot chunk. */
static int encode_msg(raft_node_t *n, const raft_msg_t *cm, size_t *len_out)
{
	raft_msg_t m = *cm;
	if (m.type == RAFT_MSG_SNAP && !m.chunk) {
		/* from the file's image in memory: no disk read on the loop thread */
		if (!n->snap.bytes || n->snap.index != m.snap.index || n->snap.term != m.snap.term)
			return -ENOENT;
		if (m.offset > n->snap.file_bytes || m.chunk_len > n->snap.file_bytes - m.offset)
			return -EINVAL;
		m.chunk = n->snap.bytes + m.offset;
		n->counters.snapshots_sent += m.offset == 0;
	}
	size_t need = 1 + raft_msg_size(&m);
	uint8_t *f = frame_alloc(n, need);
	int rc = -ENOMEM;
	if (f) {
		f[0] = KIND_RAFT;
		rc = raft_msg_encode(&m, f + 1, need - 1);
		if (rc >= 0) {
			*len_out = 1 + (size_t)rc;
			rc = 0;
		}
	}
	return rc;
}

static void send_msg(raft_node_t *n, const raft_msg_t *m)
{
	size_t len;
	if (encode_msg(n, m, &len) == 0) send_frame(n, m->to, n->frame_buf, len);
}

static void hold_msg(raft_node_t *n, const raft_msg_t *m, uint64_t seq)
{
	size_t len;
	if (n->n_held == HELD_MSGS_MAX || encode_msg(n, m, &len) < 0) return; /* = message loss */
	uint8_t *copy = malloc(len);
	if (!copy) return;
	memcpy(copy, n->frame_buf, len);
	n->held[n->n_held++] = (held_msg_t){.seq = seq, .to = m->to, .frame = copy, .len = len};
}

static void release_held(raft_node_t *n)
{
	size_t keep = 0;
	for (size_t i = 0; i < n->n_held; i++) {
		held_msg_t *h = &n->held[i];
		if (h->seq <= n->durable_seq) {
			send_frame(n, h->to, h->frame, h->len);
			free(h->frame);
		} else {
			n->held[keep++] = *h;
		}
	}
	n->n_held = keep;
}

/* ------------------------------------------------------------------ proposals */

static void batch_free(batch_t *b)
{
	free(b->blobs.p);
	free(b->seqs);
	free(b);
}

static void batch_fail(raft_node_t *n, batch_t *b, int status)
{
	for (uint32_t i = 0; i < b->n; i++)
		if (n->cfg.cb.on_propose_failed) n->cfg.cb.on_propose_failed(n->cfg.cb.ctx, b->seqs[i], status);
}

static void batch_unlink(raft_node_t *n, batch_t *b)
{
	batch_t **pp = &n->batches, *prev = NULL;
	while (*pp && *pp != b) prev = *pp, pp = &(*pp)->next;
	assert(*pp == b);
	*pp = b->next;
	if (n->batches_tail == b) n->batches_tail = prev;
	n->inflight_bytes -= b->blobs.len;
}

int raft_node_propose(raft_node_t *n, const void *blob, size_t len, uint64_t seq)
{
	if (n->stopping) return -ESHUTDOWN;
	if (n->fatal) return n->fatal;
	if (len > RAFT_NODE_BLOB_BYTES_MAX) return -E2BIG;
	if (n->inflight_bytes + n->cur.len + len > RAFT_NODE_INFLIGHT_BYTES_MAX) return -EAGAIN;
	if (n->cur_n == n->cur_seqs_cap) {
		uint32_t cap = n->cur_seqs_cap ? n->cur_seqs_cap * 2 : 256;
		uint64_t *s = realloc(n->cur_seqs, cap * sizeof *s);
		if (!s) return -ENOMEM;
		n->cur_seqs = s;
		n->cur_seqs_cap = cap;
	}
	int rc = blob_append(&n->cur, blob, len);
	if (rc < 0) return rc;
	n->cur_seqs[n->cur_n++] = seq;
	n->counters.proposals++;
	return 0;
}

/* Cut the blobs of this iteration into batches bounded by batch_bytes_max / count. */
static void cut_batches(raft_node_t *n)
{
	raft_entry_iter_t it;
	const uint8_t *b;
	size_t len;
	uint32_t k = 0;
	batch_t *cur = NULL;
	raft_entry_iter_init(&it, n->cur.p, n->cur.len);
	while (raft_entry_iter_next(&it, &b, &len) == 1) {
		if (!cur || (cur->n && (cur->blobs.len + len + BLOB_LEN_BYTES > n->cfg.batch_bytes_max ||
					cur->n >= n->cfg.batch_count_max))) {
			cur = calloc(1, sizeof *cur);
			if (!cur) goto oom;
			cur->id = ++n->next_batch_id;
			cur->created_ms = n->now_ms;
			cur->state = B_QUEUED;
			cur->seqs = malloc(sizeof(uint64_t) * (n->cur_n - k));
			if (!cur->seqs) {
				free(cur);
				goto oom;
			}
			if (n->batches_tail) n->batches_tail->next = cur;
			else n->batches = cur;
			n->batches_tail = cur;
		}
		if (blob_append(&cur->blobs, b, len) < 0) goto oom;
		n->inflight_bytes += BLOB_LEN_BYTES + len;
		cur->seqs[cur->n++] = n->cur_seqs[k++];
	}
	n->cur.len = 0;
	n->cur_n = 0;
	return;
oom:
	for (; k < n->cur_n; k++)
		if (n->cfg.cb.on_propose_failed) n->cfg.cb.on_propose_failed(n->cfg.cb.ctx, n->cur_seqs[k], -ENOMEM);
	n->cur.len = 0;
	n->cur_n = 0;
}

static struct origin_expect *expect_for(raft_node_t *n, uint64_t from)
{
	for (size_t i = 0; i < RAFT_NODES_MAX + 1; i++)
		if (n->expect[i].id == from) return &n->expect[i];
	for (size_t i = 0; i < RAFT_NODES_MAX + 1; i++)
		if (n->expect[i].id == 0) {
			n->expect[i] = (struct origin_expect){.id = from};
			return &n->expect[i];
		}
	return NULL;
}

static void send_nack(raft_node_t *n, uint64_t to, uint64_t batch_id, int err)
{
	uint8_t f[13];
	f[0] = KIND_NACK;
	put_le64(f + 1, batch_id);
	put_le32(f + 9, (uint32_t)err);
	send_frame(n, to, f, sizeof f);
}

/* Propose the entry being built; ack or refuse every batch in it. */
static void flush_entry(raft_node_t *n)
{
	if (!n->entry.len) return;
	int64_t idx = raft_core_propose(n->core, n->entry.p, n->entry.len);
	raft_status_t st;
	raft_core_status(n->core, &st);
	for (uint32_t i = 0; i < n->n_fwd; i++) {
		if (idx > 0) {
			uint8_t f[25];
			f[0] = KIND_ACK;
			put_le64(f + 1, n->fwd[i].batch_id);
			put_le64(f + 9, (uint64_t)idx);
			put_le64(f + 17, st.term);
			send_frame(n, n->fwd[i].from, f, sizeof f);
		} else {
			struct origin_expect *e = expect_for(n, n->fwd[i].from);
			if (e && !e->blocked) {
				e->blocked = true;
				e->next_batch = n->fwd[i].batch_id;
			}
			send_nack(n, n->fwd[i].from, n->fwd[i].batch_id, (int)idx);
		}
	}
	for (uint32_t i = 0; i < n->n_own_in_entry; i++) {
		batch_t *b = n->own_in_entry[i];
		if (idx > 0) {
			b->state = B_ACKED;
			b->index = (uint64_t)idx;
			b->term = st.term;
		} else {
			b->state = B_QUEUED;
			n->resend_all = true; /* keep order: everything after it goes again too */
		}
	}
	if (idx > 0) n->counters.entries_appended++;
	n->entry.len = 0;
	n->n_fwd = 0;
	n->n_own_in_entry = 0;
}

static bool entry_full(const raft_node_t *n, size_t more)
{
	return n->entry.len && (n->entry.len + more > n->cfg.batch_bytes_max || n->n_fwd == FORWARD_ACKS_MAX ||
				n->n_own_in_entry == FORWARD_ACKS_MAX);
}

static void leader_take_own(raft_node_t *n, batch_t *b)
{
	if (entry_full(n, b->blobs.len)) flush_entry(n);
	if (buf_append(&n->entry, b->blobs.p, b->blobs.len) < 0) return; /* stays queued */
	n->own_in_entry[n->n_own_in_entry++] = b;
	b->state = B_SENT;
}

static void on_forward(raft_node_t *n, uint64_t from, const uint8_t *p, size_t len)
{
	if (len < 8) return;
	uint64_t batch_id = get_le64(p);
	const uint8_t *blobs = p + 8;
	size_t blen = len - 8;
	if (blobs_check(blobs, blen) <= 0) {
		node_log(n, "malformed forward from node %" PRIu64 " dropped", from);
		return;
	}
	n->counters.forwards_received++;
	if (n->role != RAFT_LEADER) {
		send_nack(n, from, batch_id, RAFT_ERR_NOT_LEADER);
		return;
	}
	struct origin_expect *e = expect_for(n, from);
	if (!e) return;
	if (e->blocked && batch_id != e->next_batch) {
		send_nack(n, from, batch_id, -EAGAIN); /* keep the origin's order */
		return;
	}
	e->blocked = false;
	e->next_batch = batch_id + 1;
	if (entry_full(n, blen)) flush_entry(n);
	if (buf_append(&n->entry, blobs, blen) < 0) {
		send_nack(n, from, batch_id, -ENOMEM);
		e->blocked = true;
		e->next_batch = batch_id;
		return;
	}
	n->fwd[n->n_fwd++] = (fwd_ref_t){.from = from, .batch_id = batch_id};
}

static void forward_batch(raft_node_t *n, batch_t *b)
{
	size_t len = 1 + 8 + b->blobs.len;
	uint8_t *f = frame_alloc(n, len);
	if (!f) return;
	f[0] = KIND_FORWARD;
	put_le64(f + 1, b->id);
	memcpy(f + 9, b->blobs.p, b->blobs.len);
	send_frame(n, n->leader, f, len);
	b->state = B_SENT;
	n->counters.forwards_sent++;
}

/* Move queued batches toward the leader: into our own entry, or forwarded. */
static void dispatch_batches(raft_node_t *n)
{
	if (n->resend_all) {
		for (batch_t *b = n->batches; b; b = b->next) b->state = B_QUEUED;
		n->resend_all = false;
	}
	if (!n->leader) return;
	for (batch_t *b = n->batches; b; b = b->next) {
		if (b->state != B_QUEUED) continue;
		if (n->role == RAFT_LEADER) leader_take_own(n, b);
		else if (transport_peer_connected(n->tp, n->leader)) forward_batch(n, b);
		else break; /* keep the order: wait for the link */
		if (b->state == B_QUEUED) break;
	}
}

static batch_t *batch_by_id(raft_node_t *n, uint64_t id)
{
	for (batch_t *b = n->batches; b; b = b->next)
		if (b->id == id) return b;
	return NULL;
}

static void on_ack(raft_node_t *n, const uint8_t *p, size_t len, bool ok)
{
	if (len < (ok ? 24u : 12u)) return;
	batch_t *b = batch_by_id(n, get_le64(p));
	if (!b || b->state != B_SENT) return;
	if (ok) {
		b->state = B_ACKED;
		b->index = get_le64(p + 8);
		b->term = get_le64(p + 16);
	} else {
		n->resend_all = true; /* resend from the oldest unresolved, in order */
	}
}

/* An entry was applied: resolve the batches acknowledged in it. */
static void resolve_batches(raft_node_t *n, uint64_t index, uint64_t term)
{
	batch_t *b = n->batches;
	while (b) {
		batch_t *next = b->next;
		if (b->state == B_ACKED && b->index == index) {
			if (b->term == term) {
				batch_unlink(n, b);
				batch_free(b);
			} else {
				n->resend_all = true; /* overwritten by a newer leader */
			}
		}
		b = next;
	}
}

static void expire_batches(raft_node_t *n)
{
	batch_t *b = n->batches;
	while (b) {
		batch_t *next = b->next;
		if (n->now_ms - b->created_ms >= n->cfg.propose_timeout_ms) {
			batch_unlink(n, b);
			batch_fail(n, b, -ETIMEDOUT);
			batch_free(b);
		}
		b = next;
	}
}

/* ------------------------------------------------------------------ reads */

int raft_node_read(raft_node_t *n, uint64_t read_id)
{
	if (n->stopping) return -ESHUTDOWN;
	if (n->fatal) return n->fatal;
	if (n->n_reads == READS_PENDING_MAX) return -EAGAIN;
	n->reads[n->n_reads++] = (read_req_t){.read_id = read_id, .ctx = ++n->next_read_ctx,
					      .started_ms = n->now_ms};
	n->counters.reads++;
	return 0;
}

static void reads_pump(raft_node_t *n)
{
	size_t keep = 0;
	for (size_t i = 0; i < n->n_reads; i++) {
		read_req_t *r = &n->reads[i];
		if (r->have_index && n->applied >= r->index) {
			n->cfg.cb.on_read(n->cfg.cb.ctx, r->read_id, 0);
			continue;
		}
		if (n->now_ms - r->started_ms >= n->cfg.propose_timeout_ms) {
			n->cfg.cb.on_read(n->cfg.cb.ctx, r->read_id, -ETIMEDOUT);
			continue;
		}
		if (!r->have_index && (!r->asked_ms || n->now_ms - r->asked_ms >= READ_RETRY_MS)) {
			raft_core_set_clock(n->core, mono_ms()); /* a lease is judged on real time, now */
			if (raft_core_read_index(n->core, r->ctx) == 0) r->asked_ms = n->now_ms ? n->now_ms : 1;
		}
		n->reads[keep++] = *r;
	}
	n->n_reads = keep;
}

static void reads_ready(raft_node_t *n, const raft_read_state_t *rs, size_t count)
{
	for (size_t k = 0; k < count; k++)
		for (size_t i = 0; i < n->n_reads; i++)
			if (n->reads[i].ctx == rs[k].ctx && !n->reads[i].have_index) {
				n->reads[i].have_index = true;
				n->reads[i].index = rs[k].index;
			}
}

/* ------------------------------------------------------------------ snapshots */

/* Snapshot file I/O runs in jobs on the libuv thread pool, ONE job at a time, in the order the
 * loop queued them (the next is submitted from the previous one's after-work callback), so a
 * snapshot being taken, the chunks of an incoming one and its install never race on the files.
 * A job's work callback touches only the job, n->data_dir (read-only after start) and the
 * incoming writer n->snap_in (only jobs touch it, one at a time; node_free after the last).
 * Everything else (core, log, application, n->snap) is touched by the after-work callbacks on
 * the loop thread. A running job counts in n->open_handles, so raft_node_stop() frees the node
 * only after the job's after-work callback ran. */

static void snap_image_free(snap_image_t *img)
{
	if (img->bytes) munmap((void *)img->bytes, (size_t)img->file_bytes);
	memset(img, 0, sizeof *img);
}

/* Worker thread (or start-up): open the newest snapshot file, which checks its CRC, and load all
 * of it into memory. -ENOENT when there is none. */
static int snap_image_load(const char *dir, snap_image_t *img, char *err, size_t err_len)
{
	raft_snap_reader_t *r = NULL;
	memset(img, 0, sizeof *img);
	int rc = raft_snap_open_latest(dir, &r, err, err_len);
	if (rc < 0) return rc;
	const raft_snap_meta_t *sm = raft_snap_reader_meta(r);
	if (sm->config_bytes != sizeof img->conf) {
		snprintf(err, err_len, "snapshot at %" PRIu64 ": config of %u bytes", sm->index,
		         sm->config_bytes);
		rc = -EUCLEAN;
	} else if (sm->file_bytes > SIZE_MAX || sm->data_offset + sm->data_bytes > sm->file_bytes) {
		snprintf(err, err_len, "snapshot at %" PRIu64 ": %" PRIu64 " bytes do not fit in memory",
		         sm->index, sm->file_bytes);
		rc = -EFBIG;
	} else {
		/* the open checked the CRC of every byte; the file never changes once committed */
		void *p = mmap(NULL, (size_t)sm->file_bytes, PROT_READ, MAP_SHARED, raft_snap_reader_fd(r), 0);
		if (p == MAP_FAILED) {
			rc = -errno;
			snprintf(err, err_len, "snapshot at %" PRIu64 ": mmap: %s", sm->index, strerror(-rc));
		} else {
			img->bytes = p;
			img->index = sm->index;
			img->term = sm->term;
			memcpy(&img->conf, sm->config, sizeof img->conf);
			img->file_bytes = sm->file_bytes;
			img->data_offset = sm->data_offset;
			img->data_bytes = sm->data_bytes;
		}
	}
	raft_snap_reader_close(r);
	if (rc < 0) snap_image_free(img);
	return rc;
}

/* Worker: take a snapshot: write the application's stream, commit, load the new file. */
/* Writes j->data as the snapshot file of j->meta (durable when it returns 0). */
static int snap_take_write(raft_node_t *n, snap_job_t *j)
{
	raft_snap_writer_t *w;
	int rc = raft_snap_create(n->data_dir, j->meta.index, j->meta.term, &j->meta.conf,
	                          sizeof j->meta.conf, &w);
	if (rc < 0) {
		snprintf(j->err, sizeof j->err, "create: %s", strerror(-rc));
	} else {
		if (j->data.len) rc = raft_snap_write(w, 0, j->data.p, j->data.len);
		if (rc < 0) {
			snprintf(j->err, sizeof j->err, "write: %s", strerror(-rc));
			raft_snap_abort(w);
		} else {
			rc = raft_snap_commit(w, NULL, j->err, sizeof j->err);
		}
	}
	return rc;
}

/* Worker: load the newest snapshot file into j->image; it must be the one j->meta describes. */
static int snap_load_newest(raft_node_t *n, snap_job_t *j)
{
	int rc = snap_image_load(n->data_dir, &j->image, j->err, sizeof j->err);
	if (rc == 0 && (j->image.index != j->meta.index || j->image.term != j->meta.term)) {
		snprintf(j->err, sizeof j->err, "the newest file is at %" PRIu64 "/%" PRIu64, j->image.index,
		         j->image.term);
		rc = -EIO;
	}
	return rc;
}

static void snap_take_work(raft_node_t *n, snap_job_t *j)
{
	int rc = j->file_written ? 0 : snap_take_write(n, j);
	free(j->data.p); /* before loading the file: one copy of the state at a time */
	j->data = (buf_t){0};
	j->rc = rc == 0 ? snap_load_newest(n, j) : rc;
}

/* Worker: one chunk of the incoming snapshot file; offset 0 starts a new file. */
static void snap_chunk_work(raft_node_t *n, snap_job_t *j)
{
	int rc = 0;
	if (j->chunk_offset == 0) {
		raft_snap_abort(n->snap_in);
		n->snap_in = NULL;
		rc = raft_snap_receive(n->data_dir, &n->snap_in);
		if (rc < 0) n->snap_in = NULL;
		n->snap_in_index = j->meta.index;
	}
	if (!n->snap_in || n->snap_in_index != j->meta.index) {
		j->rc = rc; /* a stream whose start failed or was superseded: its chunks are skipped */
		return;
	}
	rc = raft_snap_write(n->snap_in, j->chunk_offset, j->data.p, j->data.len);
	if (rc < 0) {
		raft_snap_abort(n->snap_in);
		n->snap_in = NULL;
	}
	j->rc = rc;
}

/* Worker: the incoming file is complete: commit it (verify, fsync, rename, fsync dir) and load it. */
static void snap_install_work(raft_node_t *n, snap_job_t *j)
{
	int rc;
	if (!n->snap_in || n->snap_in_index != j->meta.index) {
		snprintf(j->err, sizeof j->err, "no complete incoming file (a chunk was lost to an error)");
		raft_snap_abort(n->snap_in);
		rc = -EIO;
	} else {
		rc = raft_snap_commit(n->snap_in, NULL, j->err, sizeof j->err); /* frees it */
	}
	n->snap_in = NULL;
	j->rc = rc == 0 ? snap_load_newest(n, j) : rc;
}

static void snap_job_work(uv_work_t *w)
{
	snap_job_t *j = w->data;
	switch (j->kind) {
	case SNAP_JOB_TAKE:
		snap_take_work(j->n, j);
		break;
	case SNAP_JOB_CHUNK:
		snap_chunk_work(j->n, j);
		break;
	case SNAP_JOB_INSTALL:
		snap_install_work(j->n, j);
		break;
	}
}

static void snap_job_free(raft_node_t *n, snap_job_t *j)
{
	if (j->kind == SNAP_JOB_CHUNK) n->snap_chunk_queued_bytes -= j->queued_bytes;
	free(j->data.p);
	snap_image_free(&j->image);
	free(j);
}

/* Drop queued (not started) jobs; chunks_only: only chunks (of a superseded incoming stream). */
static void snap_jobs_drop(raft_node_t *n, bool chunks_only)
{
	snap_job_t **pp = &n->jobs;
	n->jobs_tail = NULL;
	while (*pp) {
		snap_job_t *j = *pp;
		if (!chunks_only || j->kind == SNAP_JOB_CHUNK) {
			*pp = j->next;
			if (j->kind == SNAP_JOB_TAKE) n->snapshotting = false;
			snap_job_free(n, j);
		} else {
			n->jobs_tail = j;
			pp = &j->next;
		}
	}
}

static void snap_job_after(uv_work_t *w, int status);

static void snap_jobs_kick(raft_node_t *n)
{
	if (n->job_running || !n->jobs || n->snap_child) return; /* the child owns snap/ meanwhile */
	snap_job_t *j = n->jobs;
	n->jobs = j->next;
	if (!n->jobs) n->jobs_tail = NULL;
	j->next = NULL;
	n->job_running = j;
	n->open_handles++; /* released by snap_job_after: stop waits for it */
	j->work.data = j;
	int rc = uv_queue_work(n->loop, &j->work, snap_job_work, snap_job_after);
	assert(rc == 0);
	(void)rc;
}

static void snap_job_push(raft_node_t *n, snap_job_t *j)
{
	j->n = n;
	j->next = NULL;
	if (n->jobs_tail)
		n->jobs_tail->next = j;
	else
		n->jobs = j;
	n->jobs_tail = j;
	snap_jobs_kick(n);
}

static void snap_image_swap(raft_node_t *n, snap_image_t *img)
{
	snap_image_free(&n->snap);
	n->snap = *img;
	memset(img, 0, sizeof *img);
}

/* Loop: a snapshot file of ours is durable and loaded: serve it and compact, as before. */
static void snap_take_done(raft_node_t *n, snap_job_t *j)
{
	if (j->rc < 0) {
		node_log(n, "snapshot at %" PRIu64 " failed: %s (%s)", j->meta.index, strerror(-j->rc),
		         j->err);
		return;
	}
	snap_image_swap(n, &j->image);
	n->snap_stream_bytes = (size_t)n->snap.data_bytes; /* known here whoever streamed it */
	raft_snapshot_meta_t meta = j->meta;
	meta.size_bytes = n->snap.file_bytes;
	raft_status_t st;
	raft_core_status(n->core, &st);
	uint64_t compact = meta.index > n->cfg.trailing_entries ? meta.index - n->cfg.trailing_entries : 0;
	if (compact < st.first_index) compact = st.first_index > 0 ? st.first_index - 1 : 0;
	int rc = raft_core_compact(n->core, compact, &meta);
	if (rc == 0 && compact > 0) (void)raft_log_compact(n->log, compact, NULL);
	if (rc < 0)
		node_log(n, "compaction to the snapshot at %" PRIu64 " refused: %s", meta.index,
		         strerror(-rc));
}

typedef struct snap_source {
	const uint8_t *p;
	uint64_t len, off;
} snap_source_t;

static int snap_source_read(void *ctx, void *buf, size_t len)
{
	snap_source_t *s = ctx;
	if (len > s->len - s->off) return -EINVAL; /* premature end */
	memcpy(buf, s->p + s->off, len);
	s->off += len;
	return 0;
}

/* Loop: restore the application from the data of the loaded snapshot file. */
static int snap_restore_app(raft_node_t *n)
{
	assert(n->snap.bytes && n->snap.data_offset + n->snap.data_bytes <= n->snap.file_bytes);
	if (!n->cfg.cb.snapshot_read) return -EINVAL;
	snap_source_t src = {.p = n->snap.bytes + n->snap.data_offset, .len = n->snap.data_bytes};
	int rc = n->cfg.cb.snapshot_read(n->cfg.cb.ctx, snap_source_read, &src);
	/* the restore touched every page: out of this process's RSS again (they stay cached) */
	(void)madvise((void *)n->snap.bytes, (size_t)n->snap.file_bytes, MADV_DONTNEED);
	return rc;
}

/* Loop: the received file is durable and loaded: restore, reset the log, tell the core. */
static void snap_install_done(raft_node_t *n, snap_job_t *j)
{
	int rc = j->rc;
	if (rc < 0) {
		node_log(n, "received snapshot at %" PRIu64 " rejected: %s", j->meta.index, j->err);
	} else {
		snap_image_swap(n, &j->image);
		rc = snap_restore_app(n);
	}
	if (rc == 0) rc = raft_log_reset(n->log, j->meta.index, j->meta.term, NULL);
	if (rc == 0) {
		n->applied = j->meta.index;
		n->counters.snapshots_installed++;
		rc = raft_core_snapshot_installed(n->core, &j->meta);
	}
	if (rc < 0) node_fail(n, rc, "snapshot install");
}

static void snap_job_after(uv_work_t *w, int status)
{
	snap_job_t *j = w->data;
	raft_node_t *n = j->n;
	assert(n->job_running == j && status == 0); /* jobs are never cancelled */
	(void)status;
	n->job_running = NULL;
	if (j->kind == SNAP_JOB_TAKE) n->snapshotting = false;
	if (!n->stopping && !n->fatal) {
		switch (j->kind) {
		case SNAP_JOB_TAKE:
			snap_take_done(n, j);
			break;
		case SNAP_JOB_CHUNK:
			if (j->rc < 0)
				node_log(n, "receiving the snapshot at %" PRIu64 ": %s", j->meta.index,
				         strerror(-j->rc));
			break;
		case SNAP_JOB_INSTALL:
			snap_install_done(n, j);
			break;
		}
	}
	snap_job_free(n, j);
	if (n->stopping || n->fatal)
		snap_jobs_drop(n, false);
	else
		snap_jobs_kick(n);
	node_release(n); /* last: may free n when stopping */
}

static int snap_sink_write(void *ctx, const void *buf, size_t len)
{
	buf_t *b = ctx;
	if (len > RAFT_SNAP_BYTES_MAX - b->len) return -EFBIG;
	return buf_append(b, buf, len);
}

/* Streams the application's state into j->data (loop or forked child), in one buffer of about
 * the right size: growing it by doubling cost copies and page faults. */
static int snap_stream(raft_node_t *n, snap_job_t *j)
{
	int rc = 0;
	if (n->snap_stream_bytes) rc = buf_reserve(&j->data, n->snap_stream_bytes + n->snap_stream_bytes / 4);
	if (rc == 0) rc = n->cfg.cb.snapshot_write(n->cfg.cb.ctx, snap_sink_write, &j->data);
	return rc;
}

/* The child of snap_fork: a copy-on-write image of this process as of the fork, one thread.
 * Streams the state, writes the file, exits; touches nothing shared but the snap/ directory
 * (the parent runs no snapshot job until it has reaped this child). */
static void snap_child_run(raft_node_t *n, snap_job_t *j) __attribute__((noreturn));
static void snap_child_run(raft_node_t *n, snap_job_t *j)
{
	sigset_t all;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL); /* only the parent's SIGKILL ends it early */
	int rc = snap_stream(n, j);
	if (rc == 0) rc = snap_take_write(n, j);
	_exit(rc == 0 ? 0 : 1); /* no atexit handlers, no stdio flush: those are the parent's */
}

/* cfg.snapshot_fork: the state streams in a forked child (as Redis's BGSAVE), so the loop
 * stalls only for the fork itself, not for the whole state. False if fork failed. */
static bool snap_fork(raft_node_t *n, snap_job_t *j)
{
	uint64_t t0 = mono_ms();
	pid_t pid = fork();
	if (pid == 0) snap_child_run(n, j);
	if (pid < 0) {
		node_log(n, "snapshot at %" PRIu64 ": fork failed (%s): streaming on the loop", n->applied,
		         strerror(errno));
		return false;
	}
	n->snap_child = pid;
	n->snap_child_job = j;
	n->snap_child_started_ms = t0;
	n->snapshotting = true;
	node_log(n, "snapshot at %" PRIu64 ": forked child %ld in %" PRIu64 " ms", n->applied, (long)pid,
	         mono_ms() - t0);
	return true;
}

/* Tick: has the snapshot child ended? Then load its file (a job) or give up on this one. */
static void snap_child_poll(raft_node_t *n, bool wait)
{
	if (!n->snap_child) return;
	int status = 0;
	pid_t r = waitpid(n->snap_child, &status, wait ? 0 : WNOHANG);
	if (r == 0 || (r < 0 && errno == EINTR)) return;
	snap_job_t *j = n->snap_child_job;
	n->snap_child = 0;
	n->snap_child_job = NULL;
	bool ok = r > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	if (!ok || n->stopping || n->fatal) {
		if (!ok)
			node_log(n, "snapshot at %" PRIu64 ": the child failed (status 0x%x)", j->meta.index,
			         (unsigned)status);
		n->snapshotting = false;
		snap_job_free(n, j);
		if (!n->stopping && !n->fatal) snap_jobs_kick(n);
		return;
	}
	node_log(n, "snapshot at %" PRIu64 ": written by the child in %" PRIu64 " ms", j->meta.index,
	         mono_ms() - n->snap_child_started_ms);
	j->file_written = true;
	snap_job_push(n, j); /* loads the file, then snap_take_done compacts */
}

/* Take a snapshot of the application at the applied index: the state is streamed into memory here
 * (it is the loop's; a memcpy-speed stream), the file is written by a job, and the core and the
 * log are compacted when it is durable (snap_take_done). Not while other snapshot I/O is queued:
 * a snapshot taken behind a pending install would be older than the installed one. */
static void maybe_snapshot(raft_node_t *n)
{
	if (n->snapshotting || n->job_running || n->jobs || !n->cfg.cb.snapshot_write) return;
	raft_status_t st;
	raft_core_status(n->core, &st);
	if (n->applied < st.snap_index + n->cfg.snapshot_entries) return;
	snap_job_t *j = calloc(1, sizeof *j);
	if (!j) return;
	j->kind = SNAP_JOB_TAKE;
	int rc = raft_core_snapshot_meta(n->core, n->applied, &j->meta);
	if (rc == 0 && n->cfg.snapshot_fork && !n->snap_in && snap_fork(n, j)) return;
	uint64_t t0 = mono_ms();
	if (rc == 0) rc = snap_stream(n, j);
	if (rc == 0)
		node_log(n, "snapshot at %" PRIu64 ": %zu bytes streamed on the loop in %" PRIu64 " ms", n->applied,
			 j->data.len, mono_ms() - t0);
	if (rc < 0) {
		node_log(n, "snapshot at %" PRIu64 " failed: %s", n->applied, strerror(-rc));
		snap_job_free(n, j);
		return;
	}
	n->snapshotting = true;
	snap_job_push(n, j);
}

/* Chunks of an incoming snapshot, copied (they live only until raft_core_advance) and queued in
 * order. An offset-0 chunk starts a new stream, so chunks of an older one still queued are
 * dropped: the queue holds at most one stream, i.e. one snapshot file's bytes. */
static void snap_chunks(raft_node_t *n, const raft_snap_chunk_t *c, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (c[i].offset == 0) snap_jobs_drop(n, true);
		snap_job_t *j = calloc(1, sizeof *j);
		if (j && c[i].len && buf_append(&j->data, c[i].data, c[i].len) < 0) {
			free(j);
			j = NULL;
		}
		if (!j) { /* the stream breaks here; its install will fail: as a failed write did */
			node_fail(n, -ENOMEM, "snapshot receive");
			return;
		}
		j->kind = SNAP_JOB_CHUNK;
		j->meta.index = c[i].snap_index;
		j->chunk_offset = c[i].offset;
		j->queued_bytes = c[i].len;
		n->snap_chunk_queued_bytes += c[i].len;
		assert(n->snap_chunk_queued_bytes <= c[i].offset + c[i].len + RAFT_SNAP_CHUNK_BYTES_MAX);
		snap_job_push(n, j);
	}
}

/* rd.snapshot_install: the last chunk is queued; commit, load and restore after it. The core
 * freezes its log until raft_core_snapshot_installed() (snap_install_done), so the install may
 * complete Readys later. */
static void snap_install_queue(raft_node_t *n, const raft_snapshot_meta_t *meta)
{
	snap_job_t *j = calloc(1, sizeof *j);
	if (!j) {
		node_fail(n, -ENOMEM, "snapshot install");
		return;
	}
	j->kind = SNAP_JOB_INSTALL;
	j->meta = *meta;
	snap_job_push(n, j);
}

/* ------------------------------------------------------------------ membership */

static void conf_applied(raft_node_t *n, const raft_entry_t *e)
{
	raft_conf_op_t op;
	uint64_t id;
	raft_conf_t conf;
	if (raft_conf_decode(e->data, e->len, &op, &id, &conf) < 0) return;
	if (op == RAFT_CONF_REMOVE && id != n->cfg.id) (void)transport_peer_remove(n->tp, id);
}

int raft_node_add_member(raft_node_t *n, const raft_peer_addr_t *peer)
{
	if (n->stopping) return -ESHUTDOWN;
	if (!peer || !peer->id || peer->id == n->cfg.id) return -EINVAL;
	char addr[96];
	snprintf(addr, sizeof addr, "%s:%u", peer->host, peer->port);
	int rc = transport_peer_add(n->tp, peer->id, addr);
	if (rc < 0 && rc != -EEXIST) return rc;
	if (rc == -EEXIST) (void)transport_peer_set_addr(n->tp, peer->id, addr);
	/* tell the other members where the new node is (best effort) */
	size_t alen = strlen(addr);
	uint8_t f[1 + 8 + 96];
	f[0] = KIND_PEER;
	put_le64(f + 1, peer->id);
	memcpy(f + 9, addr, alen);
	for (uint32_t i = 0; i < n->cfg.n_peers; i++) send_frame(n, n->cfg.peers[i].id, f, 9 + alen);
	if (!peer_addr(n, peer->id) && n->cfg.n_peers < RAFT_NODE_PEERS_MAX) n->cfg.peers[n->cfg.n_peers++] = *peer;
	int64_t idx = raft_core_propose_conf(n->core, RAFT_CONF_ADD_LEARNER, peer->id);
	return idx < 0 ? (int)idx : 0;
}

/* A learner that has caught up is promoted on the leader's tick. */
static void promote_learners(raft_node_t *n)
{
	if (n->role != RAFT_LEADER) return;
	raft_status_t st;
	raft_core_status(n->core, &st);
	for (uint32_t i = 0; i < st.conf.n_learners; i++) {
		uint64_t id = st.conf.learners[i];
		for (uint32_t k = 0; k < st.n_peers; k++)
			if (st.peers[k].id == id && st.peers[k].match >= st.commit)
				(void)raft_core_propose_conf(n->core, RAFT_CONF_ADD_VOTER, id);
	}
}

int raft_node_remove_member(raft_node_t *n, uint32_t id)
{
	if (n->stopping) return -ESHUTDOWN;
	int64_t idx = raft_core_propose_conf(n->core, RAFT_CONF_REMOVE, id);
	return idx < 0 ? (int)idx : 0;
}

int raft_node_transfer_leadership(raft_node_t *n, uint32_t to_id)
{
	if (n->stopping) return -ESHUTDOWN;
	return raft_core_transfer_leader(n->core, to_id);
}

static void on_peer_frame(raft_node_t *n, uint64_t from, const uint8_t *p, size_t len)
{
	if (len < 8 + 1) return;
	uint64_t id = get_le64(p);
	char addr[96];
	size_t alen = len - 8 < sizeof addr - 1 ? len - 8 : sizeof addr - 1;
	memcpy(addr, p + 8, alen);
	addr[alen] = 0;
	if (id == n->cfg.id) return;
	int rc = transport_peer_add(n->tp, id, addr);
	if (rc == 0) node_log(n, "member %" PRIu64 " at %s (told by %" PRIu64 ")", id, addr, from);
}

/* ------------------------------------------------------------------ the Ready loop */

static void apply_committed(raft_node_t *n, const raft_entry_t *e, size_t count)
{
	for (size_t i = 0; i < count && !n->fatal; i++) {
		if (e[i].index <= n->applied) continue; /* already in the application (restart) */
		int rc = 0;
		if (e[i].type == RAFT_ENTRY_NORMAL) {
			rc = n->cfg.cb.apply(n->cfg.cb.ctx, e[i].index, e[i].data, e[i].len);
		} else {
			rc = n->cfg.cb.apply(n->cfg.cb.ctx, e[i].index, NULL, 0);
			if (e[i].type == RAFT_ENTRY_CONF) conf_applied(n, &e[i]);
		}
		if (rc < 0) {
			node_fail(n, rc, "apply");
			return;
		}
		n->applied = e[i].index;
		resolve_batches(n, e[i].index, e[i].term);
	}
}

static void handle_ready(raft_node_t *n)
{
	raft_ready_t rd;
	raft_core_ready(n->core, &rd);
	int rc = 0;
	uint64_t seq = 0;
	bool wrote = false;

	if (rd.soft_state_changed) {
		if (rd.soft_state.term != n->term || rd.soft_state.lead != n->leader) n->resend_all = true;
		if (rd.soft_state.role == RAFT_CANDIDATE && n->role != RAFT_CANDIDATE) n->counters.elections++;
		n->term = rd.soft_state.term;
		n->leader = rd.soft_state.lead;
		n->role = (raft_role_t)rd.soft_state.role;
		if (n->role == RAFT_LEADER) memset(n->expect, 0, sizeof n->expect);
		if (n->cfg.cb.on_state) n->cfg.cb.on_state(n->cfg.cb.ctx, n->role, n->term, (uint32_t)n->leader);
	}
	/* 1. durable writes: truncate a conflicting suffix, append, hard state */
	if (rd.n_entries) {
		if (rd.entries_first_index <= raft_log_last_index(n->log))
			rc = raft_log_truncate(n->log, rd.entries_first_index, &seq);
		if (rc == 0) {
			raft_log_entry_t stackents[64];
			raft_log_entry_t *le = rd.n_entries <= 64 ? stackents : malloc(rd.n_entries * sizeof *le);
			if (!le) rc = -ENOMEM;
			for (size_t i = 0; rc == 0 && i < rd.n_entries; i++)
				le[i] = (raft_log_entry_t){.index = rd.entries[i].index, .term = rd.entries[i].term,
							   .type = rd.entries[i].type, .data_bytes = rd.entries[i].len,
							   .data = rd.entries[i].data};
			if (rc == 0) rc = raft_log_append(n->log, le, rd.n_entries, &seq);
			if (le != stackents) free(le);
		}
		wrote = true;
	}
	if (rc == 0 && rd.hard_state_changed &&
	    (rd.hard_state.term != n->hs_term || rd.hard_state.vote != n->hs_vote)) {
		/* Term and vote must be durable before we act on them; the commit index alone is
		 * recoverable (a restarted node relearns it from the leader), so it rides along with
		 * term/vote changes but never costs a sync of its own. */
		n->hs_term = rd.hard_state.term;
		n->hs_vote = rd.hard_state.vote;
		raft_log_hard_state_t hs = {rd.hard_state.term, rd.hard_state.vote, rd.hard_state.commit};
		rc = raft_log_set_hard_state(n->log, &hs, &seq);
		wrote = true;
	}
	if (rc < 0) {
		node_fail(n, rc, "log write");
		raft_core_advance(n->core, &rd);
		return;
	}
	if (wrote) {
		n->last_write_seq = seq;
		if (rd.n_entries && n->n_writes < WRITES_PENDING_MAX)
			n->writes[n->n_writes++] = (write_rec_t){.seq = seq, .index = rd.entries[rd.n_entries - 1].index,
								 .term = rd.entries[rd.n_entries - 1].term};
	}
	/* 2. messages */
	for (size_t i = 0; i < rd.n_msgs; i++) send_msg(n, &rd.msgs[i]);
	/* 3. messages that promise durable state */
	for (size_t i = 0; i < rd.n_msgs_after_persist; i++) {
		if (n->last_write_seq <= n->durable_seq) send_msg(n, &rd.msgs_after_persist[i]);
		else hold_msg(n, &rd.msgs_after_persist[i], n->last_write_seq);
	}
	/* 4. apply, reads */
	apply_committed(n, rd.committed, rd.n_committed);
	if (rd.n_read_states) reads_ready(n, rd.read_states, rd.n_read_states);
	/* 5. snapshots from the leader */
	if (rd.n_snap_chunks) snap_chunks(n, rd.snap_chunks, rd.n_snap_chunks);
	if (rd.snapshot_install && !n->fatal) snap_install_queue(n, &rd.snapshot);
	raft_core_advance(n->core, &rd);
}

static void log_progress(raft_node_t *n)
{
	raft_log_progress_t pr;
	if (raft_log_poll(n->log, &pr) <= 0) return;
	if (pr.error) {
		node_fail(n, pr.error, "log I/O");
		return;
	}
	n->durable_seq = pr.seq;
	size_t keep = 0;
	uint64_t pidx = 0, pterm = 0;
	for (size_t i = 0; i < n->n_writes; i++) {
		if (n->writes[i].seq <= pr.seq) {
			pidx = n->writes[i].index;
			pterm = n->writes[i].term;
		} else {
			n->writes[keep++] = n->writes[i];
		}
	}
	n->n_writes = keep;
	if (pidx) raft_core_persisted(n->core, pidx, pterm);
	release_held(n);
}

static void on_idle(uv_idle_t *h);

static void run_iteration(raft_node_t *n)
{
	if (n->stopping || n->fatal) return;
	n->now_ms = mono_ms();
	log_progress(n);
	if (n->cur_n) cut_batches(n);
	dispatch_batches(n);
	flush_entry(n);
	reads_pump(n);
	for (int rounds = 0; rounds < 64 && raft_core_has_ready(n->core) && !n->fatal; rounds++) {
		handle_ready(n);
		if (n->resend_all || n->cur_n) {
			dispatch_batches(n);
			flush_entry(n);
		}
	}
	reads_pump(n);
	if (!n->snapshotting && n->applied) maybe_snapshot(n);
	bool more = raft_core_has_ready(n->core) || n->cur_n || n->entry.len;
	if (more && !n->idle_on) {
		uv_idle_start(&n->idle, on_idle);
		n->idle_on = true;
	}
}

static void on_check(uv_check_t *h) { run_iteration(h->data); }

static void on_idle(uv_idle_t *h)
{
	raft_node_t *n = h->data;
	run_iteration(n);
	if (!raft_core_has_ready(n->core) && !n->cur_n && !n->entry.len) {
		uv_idle_stop(h);
		n->idle_on = false;
	}
}

static void on_tick(uv_timer_t *h)
{
	raft_node_t *n = h->data;
	if (n->stopping || n->fatal) return;
	n->now_ms = mono_ms();
	if (n->snap_child) snap_child_poll(n, false);
	raft_core_set_clock(n->core, n->now_ms);
	raft_core_tick(n->core);
	expire_batches(n);
	promote_learners(n);
	if (n->resend_all) dispatch_batches(n);
}

static void on_log_async(uv_async_t *h) { log_progress(h->data); }

static void log_notify(void *arg) { uv_async_send(arg); }

static void on_message(void *ctx, uint64_t from, const uint8_t *buf, size_t len)
{
	raft_node_t *n = ctx;
	if (n->stopping || n->fatal || len < 1) return;
	switch (buf[0]) {
	case KIND_RAFT: {
		raft_msg_t m;
		if (raft_msg_decode(buf + 1, len - 1, &m, n->decode_entries, RAFT_MSG_ENTRIES_MAX) < 0 || m.from != from ||
		    m.to != n->cfg.id) {
			node_log(n, "malformed raft message from node %" PRIu64 " dropped", from);
			return;
		}
		raft_core_set_clock(n->core, mono_ms());
		(void)raft_core_step(n->core, &m);
		break;
	}
	case KIND_FORWARD: on_forward(n, from, buf + 1, len - 1); break;
	case KIND_ACK: on_ack(n, buf + 1, len - 1, true); break;
	case KIND_NACK: on_ack(n, buf + 1, len - 1, false); break;
	case KIND_PEER: on_peer_frame(n, from, buf + 1, len - 1); break;
	default: node_log(n, "unknown frame kind %u from node %" PRIu64, buf[0], from);
	}
}

static void on_transport_log(void *ctx, int level, const char *line)
{
	raft_node_t *n = ctx;
	(void)level;
	node_log(n, "transport: %s", line);
}

/* ------------------------------------------------------------------ start / stop */

static int boot_entry(void *arg, const raft_log_entry_t *e)
{
	raft_node_t *n = arg;
	if (n->n_boot == n->boot_cap) {
		size_t cap = n->boot_cap ? n->boot_cap * 2 : 1024;
		raft_entry_t *p = realloc(n->boot_entries, cap * sizeof *p);
		if (!p) return -ENOMEM;
		n->boot_entries = p;
		n->boot_cap = cap;
	}
	void *data = NULL;
	if (e->data_bytes) {
		data = malloc(e->data_bytes);
		if (!data) return -ENOMEM;
		memcpy(data, e->data, e->data_bytes);
	}
	n->boot_entries[n->n_boot++] = (raft_entry_t){.index = e->index, .term = e->term, .type = e->type,
						      .len = e->data_bytes, .data = data};
	return 0;
}

static void boot_entries_free(raft_node_t *n)
{
	for (size_t i = 0; i < n->n_boot; i++) free((void *)n->boot_entries[i].data);
	free(n->boot_entries);
	n->boot_entries = NULL;
	n->n_boot = n->boot_cap = 0;
}

static void node_free(raft_node_t *n)
{
	if (!n) return;
	assert(!n->job_running);
	snap_jobs_drop(n, false);
	if (n->core) raft_core_free(n->core);
	snap_image_free(&n->snap);
	raft_snap_abort(n->snap_in); /* no job runs: the loop thread may touch it now */
	while (n->batches) {
		batch_t *b = n->batches;
		n->batches = b->next;
		batch_free(b);
	}
	for (size_t i = 0; i < n->n_held; i++) free(n->held[i].frame);
	boot_entries_free(n);
	free(n->held);
	free(n->writes);
	free(n->reads);
	free(n->cur.p);
	free(n->cur_seqs);
	free(n->entry.p);
	free(n->frame_buf);
	free(n->decode_entries);
	free(n);
}

int raft_node_start(uv_loop_t *loop, const raft_node_config_t *cfg, raft_node_t **out, char *errbuf,
		    size_t errbuf_len)
{
	char err[512] = "";
	int rc;
	if (!cfg || !cfg->id || !cfg->data_dir || !cfg->cb.apply || !cfg->cb.applied_index || !cfg->cb.on_read ||
	    cfg->n_peers > RAFT_NODE_PEERS_MAX) {
		snprintf(errbuf, errbuf_len, "raft: incomplete configuration");
		return -EINVAL;
	}
	raft_node_t *n = calloc(1, sizeof *n);
	if (!n) return -ENOMEM;
	n->loop = loop;
	n->cfg = *cfg;
	if (!n->cfg.tick_ms) n->cfg.tick_ms = 10;
	if (!n->cfg.election_ticks) n->cfg.election_ticks = 30;
	if (!n->cfg.heartbeat_ticks) n->cfg.heartbeat_ticks = 3;
	if (!n->cfg.batch_bytes_max) n->cfg.batch_bytes_max = 1u << 20;
	if (!n->cfg.batch_count_max) n->cfg.batch_count_max = 4096;
	if (!n->cfg.propose_timeout_ms) n->cfg.propose_timeout_ms = 5000;
	if (!n->cfg.snapshot_entries) n->cfg.snapshot_entries = RAFT_NODE_SNAPSHOT_ENTRIES_DEFAULT;
	if (!n->cfg.trailing_entries) n->cfg.trailing_entries = RAFT_NODE_TRAILING_ENTRIES_DEFAULT;
	snprintf(n->data_dir, sizeof n->data_dir, "%s", cfg->data_dir);
	n->cfg.data_dir = n->data_dir;
	n->held = calloc(HELD_MSGS_MAX, sizeof *n->held);
	n->writes = calloc(WRITES_PENDING_MAX, sizeof *n->writes);
	n->reads = calloc(READS_PENDING_MAX, sizeof *n->reads);
	n->decode_entries = calloc(RAFT_MSG_ENTRIES_MAX, sizeof *n->decode_entries);
	if (!n->held || !n->writes || !n->reads || !n->decode_entries) {
		node_free(n);
		return -ENOMEM;
	}
	if (mkdir(n->data_dir, 0700) < 0 && errno != EEXIST) {
		rc = -errno;
		snprintf(errbuf, errbuf_len, "raft: data dir %s: %s", n->data_dir, strerror(errno));
		node_free(n);
		return rc;
	}
	uv_async_init(loop, &n->log_async, on_log_async);
	n->log_async.data = n;
	n->open_handles++;

	/* 1. the durable log */
	raft_log_options_t lo = {.dir = n->data_dir, .pending_bytes_max = 1ull << 30, .notify = log_notify,
				 .notify_arg = &n->log_async, .entry_cb = boot_entry, .entry_arg = n};
	raft_log_state_t ls;
	rc = raft_log_open(&lo, &n->log, &ls, err, sizeof err);
	if (rc < 0) {
		snprintf(errbuf, errbuf_len, "raft: log: %s", err);
		goto fail;
	}
	if (ls.note[0]) node_log(n, "log recovery: %s", ls.note);

	/* 2. the snapshot, and the application state */
	raft_restore_t rs = {0};
	rs.hard_state = (raft_hard_state_t){ls.hard_state.term, ls.hard_state.vote, ls.hard_state.commit};
	n->hs_term = ls.hard_state.term;
	n->hs_vote = ls.hard_state.vote;
	/* Start-up reads (CRC of the whole file) and loads the snapshot with blocking calls on the
	 * loop thread: nothing is served yet. A damaged newest snapshot stops the start (the log
	 * already begins after it) rather than being ignored. */
	rc = snap_image_load(n->data_dir, &n->snap, err, sizeof err);
	if (rc < 0 && rc != -ENOENT) {
		snprintf(errbuf, errbuf_len, "raft: snapshot: %s", err);
		goto fail;
	}
	uint64_t app_applied = cfg->cb.applied_index(cfg->cb.ctx);
	if (n->snap.bytes) {
		rs.snapshot.index = n->snap.index;
		rs.snapshot.term = n->snap.term;
		rs.snapshot.size_bytes = n->snap.file_bytes;
		rs.snapshot.conf = n->snap.conf;
		if (app_applied < n->snap.index) {
			if ((rc = snap_restore_app(n)) < 0) {
				snprintf(errbuf, errbuf_len,
				         "raft: restoring the snapshot at %" PRIu64 " failed: %s",
				         n->snap.index, strerror(-rc));
				goto fail;
			}
			app_applied = n->snap.index;
		}
	} else if (!cfg->join) {
		/* The bootstrap configuration is implied at index 0 by --peers (it is never logged);
		 * conf entries in the log, if any, override it in the core. */
		for (uint32_t i = 0; i < cfg->n_peers && i < RAFT_NODES_MAX; i++)
			rs.snapshot.conf.voters[rs.snapshot.conf.n_voters++] = cfg->peers[i].id;
		if (!cfg->n_peers) rs.snapshot.conf.voters[rs.snapshot.conf.n_voters++] = cfg->id;
	}
	rs.entries = n->boot_entries;
	rs.n_entries = n->n_boot;
	uint64_t last = n->n_boot ? n->boot_entries[n->n_boot - 1].index : rs.snapshot.index;
	if (app_applied > last) {
		snprintf(errbuf, errbuf_len,
			 "raft: the state machine is at %" PRIu64 " but the log ends at %" PRIu64 " (lost log?)",
			 app_applied, last);
		rc = -EUCLEAN;
		goto fail;
	}
	if (app_applied < rs.snapshot.index) app_applied = rs.snapshot.index;
	rs.applied = app_applied;
	n->applied = app_applied;

	raft_config_t rc_cfg;
	uint64_t seed = cfg->seed;
	if (!seed && getrandom(&seed, sizeof seed, 0) != sizeof seed) seed = (uint64_t)mono_ms() * 2654435761u + cfg->id;
	raft_config_default(&rc_cfg, cfg->id, seed);
	rc_cfg.election_ticks = n->cfg.election_ticks;
	rc_cfg.heartbeat_ticks = n->cfg.heartbeat_ticks;
	/* Lease reads (core.h): a follower refuses votes for election_ticks ticks after hearing from
	 * its leader, at least (election_ticks - 1) * tick_ms of real time (libuv timers never fire
	 * early); one tick less leaves a margin for the clocks' drift. */
	if (!n->cfg.no_lease_reads && n->cfg.election_ticks > 2)
		rc_cfg.lease_ms = (n->cfg.election_ticks - 2) * n->cfg.tick_ms;
	rc_cfg.entry_bytes_max = RAFT_NODE_BLOB_BYTES_MAX + 64 > n->cfg.batch_bytes_max + 64
					 ? RAFT_NODE_BLOB_BYTES_MAX + 64
					 : (uint32_t)n->cfg.batch_bytes_max + 64;
	rc = raft_core_new(&rc_cfg, &rs, &n->core);
	boot_entries_free(n); /* the core copied what it keeps */
	if (rc < 0) {
		snprintf(errbuf, errbuf_len, "raft: core rejected the restored state");
		goto fail;
	}

	/* 3. the transport */
	transport_peer_t tpeers[RAFT_NODE_PEERS_MAX];
	char addrs[RAFT_NODE_PEERS_MAX][96];
	for (uint32_t i = 0; i < cfg->n_peers; i++) {
		snprintf(addrs[i], sizeof addrs[i], "%s:%u", cfg->peers[i].host, cfg->peers[i].port);
		tpeers[i] = (transport_peer_t){.id = cfg->peers[i].id, .addr = addrs[i]};
	}
	char listen[96] = "127.0.0.1:0";
	const raft_peer_addr_t *self = peer_addr(n, cfg->id);
	if (self) snprintf(listen, sizeof listen, "%s:%u", self->host, self->port);
	transport_config_t tc = {.id = cfg->id, .listen_addr = listen, .peers = tpeers, .peer_count = cfg->n_peers,
				 .token = cfg->token, .token_len = cfg->token_len, .seed = seed ^ 0x5bd1e995,
				 .on_message = on_message, .log = on_transport_log, .ctx = n};
	rc = transport_new(loop, &tc, &n->tp, err, sizeof err);
	if (rc < 0) {
		snprintf(errbuf, errbuf_len, "raft: transport: %s", err);
		goto fail;
	}

	/* 4. the loop handles: our check runs before the transport's (libuv runs the most
	 * recently started check handle first), so frames queued here leave this iteration. */
	uv_timer_init(loop, &n->tick);
	uv_check_init(loop, &n->check);
	uv_idle_init(loop, &n->idle);
	n->tick.data = n->check.data = n->idle.data = n;
	n->open_handles += 3;
	uv_timer_start(&n->tick, on_tick, n->cfg.tick_ms, n->cfg.tick_ms);
	uv_check_start(&n->check, on_check);
	uv_idle_start(&n->idle, on_idle); /* replay committed entries at once */
	n->idle_on = true;
	n->now_ms = mono_ms();
	*out = n;
	return 0;
fail:
	if (n->log) raft_log_close(n->log);
	n->log = NULL;
	uv_close((uv_handle_t *)&n->log_async, NULL);
	/* the async handle's memory is inside n: let the loop close it before freeing */
	uv_run(loop, UV_RUN_NOWAIT);
	node_free(n);
	return rc < 0 ? rc : -EINVAL;
}

/* A handle closed or the running snapshot job finished; the last one frees the node. */
static void node_release(raft_node_t *n)
{
	assert(n->open_handles > 0);
	if (--n->open_handles > 0) return;
	assert(n->stopping && !n->job_running);
	if (n->log) raft_log_close(n->log);
	void (*cb)(void *) = n->stop_cb;
	void *arg = n->stop_arg;
	node_free(n);
	if (cb) cb(arg);
}

static void on_handle_closed(uv_handle_t *h) { node_release(h->data); }

static void on_transport_closed(transport_t *t, void *ctx)
{
	(void)t;
	raft_node_t *n = ctx;
	n->tp = NULL;
	uv_close((uv_handle_t *)&n->tick, on_handle_closed);
	uv_close((uv_handle_t *)&n->check, on_handle_closed);
	uv_close((uv_handle_t *)&n->idle, on_handle_closed);
	uv_close((uv_handle_t *)&n->log_async, on_handle_closed);
}

void raft_node_stop(raft_node_t *n, void (*cb)(void *arg), void *arg)
{
	if (n->stopping) return;
	n->stopping = true;
	n->stop_cb = cb;
	n->stop_arg = arg;
	for (size_t i = 0; i < n->n_reads; i++) n->cfg.cb.on_read(n->cfg.cb.ctx, n->reads[i].read_id, -ESHUTDOWN);
	n->n_reads = 0;
	for (batch_t *b = n->batches; b; b = b->next) batch_fail(n, b, -ESHUTDOWN);
	for (uint32_t k = 0; k < n->cur_n; k++)
		if (n->cfg.cb.on_propose_failed) n->cfg.cb.on_propose_failed(n->cfg.cb.ctx, n->cur_seqs[k], -ESHUTDOWN);
	n->cur_n = 0;
	snap_jobs_drop(n, false); /* a running job is waited for: it holds an open_handles count */
	if (n->snap_child) { /* its file would be a snapshot nobody loads: end it now */
		kill(n->snap_child, SIGKILL);
		snap_child_poll(n, true);
	}
	transport_close(n->tp, on_transport_closed);
}

/* ------------------------------------------------------------------ inspection */

void raft_node_status(const raft_node_t *n, raft_node_status_t *st)
{
	raft_status_t cs;
	raft_core_status(n->core, &cs);
	*st = n->counters;
	st->id = n->cfg.id;
	st->leader_id = (uint32_t)cs.lead;
	st->role = (raft_role_t)cs.role;
	st->term = cs.term;
	st->commit_index = cs.commit;
	st->applied_index = n->applied;
	st->last_index = cs.last_index;
	st->first_index = cs.first_index;
	st->snapshot_index = cs.snap_index;
	st->n_peers = 0;
	for (uint32_t i = 0; i < cs.conf.n_voters + cs.conf.n_learners && st->n_peers < RAFT_NODE_PEERS_MAX; i++) {
		bool voter = i < cs.conf.n_voters;
		uint64_t id = voter ? cs.conf.voters[i] : cs.conf.learners[i - cs.conf.n_voters];
		uint64_t match = id == n->cfg.id ? cs.persisted : 0;
		for (uint32_t k = 0; k < cs.n_peers; k++)
			if (cs.peers[k].id == id) match = cs.peers[k].match;
		st->peers[st->n_peers].id = (uint32_t)id;
		st->peers[st->n_peers].match_index = match;
		st->peers[st->n_peers].voter = voter;
		st->peers[st->n_peers].connected = id == n->cfg.id || (n->tp && transport_peer_connected(n->tp, id));
		st->n_peers++;
	}
	if (n->log) {
		raft_log_stats_t ls;
		raft_log_stats(n->log, &ls);
		st->fsyncs = ls.fdatasyncs;
	}
}

bool raft_node_is_leader(const raft_node_t *n) { return n->role == RAFT_LEADER; }
