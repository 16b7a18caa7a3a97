/* node.h - a Raft node at run time: the pure core (core.h) driven on a libuv loop, with the
 * durable log (log.h) on its own I/O thread, the TCP transport (transport.h), proposal batching
 * and forwarding. This is the whole interface the daemon (fs/) uses; it knows nothing of keys.
 *
 * Proposals are opaque blobs. The node packs every blob proposed during one loop iteration (up to
 * batch_bytes_max / batch_count_max) into ONE log entry; a follower forwards its blobs to the
 * leader, which packs them into its next entry. The application sees each committed entry once,
 * in log order, through the apply callback, and walks the blobs in it with raft_entry_iter_*.
 * Matching an applied blob to the request that proposed it is the application's business (the
 * blob carries the proposer's node id and sequence); a blob may be applied twice when a forward
 * is retried after a leader change, so the application must deduplicate (engine/sm does).
 *
 * All calls and callbacks happen on the loop thread.
 */
#ifndef METASTORE_RAFT_NODE_H
#define METASTORE_RAFT_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core.h" /* raft_role_t */

#define RAFT_NODE_PEERS_MAX 9
#define RAFT_NODE_BLOB_BYTES_MAX ((8u << 20) + (256u << 10)) /* an 8 MiB value and its txn */
#define RAFT_NODE_INFLIGHT_BYTES_MAX (256u << 20) /* proposals not yet known applied */
/* The core keeps every entry since the last compaction in memory (~250 B per small write), and
 * a restart of the memory engine re-applies every entry since the last snapshot; each snapshot
 * costs a fork (14 ms at 100k keys, snapshot_fork) or a loop stall while the state streams
 * (~4 ms per MB: 84 ms at 100k keys), and a child's CPU. Measured (3 nodes, 100k keys of 100 B,
 * a follower restarted 11k entries behind): every 100k entries, 0.56 s to catch up; 50k,
 * 0.29-0.33 s; 20k, 0.25-0.29 s; RSS the same (97-108 MiB) once big buffers are mmapped
 * (fs/main.c: before that, snapshot streams fragmented the heap: up to 130 MiB). */
#define RAFT_NODE_SNAPSHOT_ENTRIES_DEFAULT 50000u
#define RAFT_NODE_TRAILING_ENTRIES_DEFAULT 10000u

typedef struct raft_node raft_node_t;

typedef struct raft_peer_addr {
	uint32_t id;
	char host[64];
	uint16_t port;
} raft_peer_addr_t;

typedef int (*raft_snap_write_fn)(void *ctx, const void *buf, size_t len);
typedef int (*raft_snap_read_fn)(void *ctx, void *buf, size_t len);

typedef struct raft_node_callbacks {
	void *ctx;
	/* A committed entry. data/len is the packed blobs (len 0 for no-op and config entries).
	 * Return 0, or a negative errno: fatal, the node stops. */
	int (*apply)(void *ctx, uint64_t index, const uint8_t *data, size_t len);
	/* The application's applied index at start (entries after it are replayed). */
	uint64_t (*applied_index)(void *ctx);
	/* Stream the application state (for a snapshot) / replace it from a stream. Both run on the
	 * loop thread against memory: snapshot_write's fn appends to a buffer that a thread-pool job
	 * writes to the file later, and snapshot_read's fn reads a file loaded by such a job (at
	 * start-up, the snapshot is read on the loop thread before anything is served). */
	int (*snapshot_write)(void *ctx, raft_snap_write_fn fn, void *fn_ctx);
	int (*snapshot_read)(void *ctx, raft_snap_read_fn fn, void *fn_ctx);
	/* Role, term or leader changed (optional). */
	void (*on_state)(void *ctx, raft_role_t role, uint64_t term, uint32_t leader_id);
	/* A read barrier asked with raft_node_read() is satisfied: every entry committed before the
	 * request is applied locally (status 0), or it failed (-ETIMEDOUT, -ESHUTDOWN). */
	void (*on_read)(void *ctx, uint64_t read_id, int status);
	/* A proposal could not be committed in time (-ETIMEDOUT: outcome unknown; it may still be
	 * applied later) or was refused (-E2BIG, -ESHUTDOWN). */
	void (*on_propose_failed)(void *ctx, uint64_t seq, int status);
} raft_node_callbacks_t;

typedef struct raft_node_config {
	uint32_t id;
	raft_peer_addr_t peers[RAFT_NODE_PEERS_MAX]; /* every member, self included; a new cluster
							  starts with these as its voters */
	bool join;                 /* a node being added to a running cluster: it starts with no
				      configuration, never campaigns, and waits for the leader's
				      raft_node_add_member() (its data dir must be empty) */
	uint32_t n_peers;
	const char *data_dir;      /* log, hard state, snapshots */
	const uint8_t *token;      /* cluster token (NULL only for a one-node cluster) */
	size_t token_len;
	uint32_t tick_ms;          /* default 10 */
	uint32_t election_ticks;   /* default 30 (300 ms) */
	uint32_t heartbeat_ticks;  /* default 3 */
	size_t batch_bytes_max;    /* default 1 MiB */
	uint32_t batch_count_max;  /* default 4096 blobs */
	uint32_t propose_timeout_ms; /* default 5000 */
	uint64_t snapshot_entries; /* snapshot + compact after this many applied entries (default
				      RAFT_NODE_SNAPSHOT_ENTRIES_DEFAULT) */
	uint64_t trailing_entries; /* entries kept after a compaction for slow followers (default
				      RAFT_NODE_TRAILING_ENTRIES_DEFAULT) */
	uint64_t seed;             /* PRNG seed for election jitter (0: from getrandom) */
	bool no_lease_reads;       /* read barriers always run a heartbeat round (core.h lease_ms) */
	/* Take snapshots in a forked child (Redis's BGSAVE): the loop stalls for the fork, not for
	 * streaming the whole state. Only for an application whose snapshot_write reads plain
	 * memory the loop owns (a child has one thread: no locks, no library threads, e.g. not
	 * RocksDB). Off: snapshot_write runs on the loop. */
	bool snapshot_fork;
	raft_node_callbacks_t cb;
} raft_node_config_t;

typedef struct raft_node_status {
	uint32_t id, leader_id;
	raft_role_t role;
	uint64_t term, commit_index, applied_index, last_index, first_index, snapshot_index;
	uint32_t n_peers;
	struct {
		uint32_t id;
		uint64_t match_index;
		bool connected, voter;
	} peers[RAFT_NODE_PEERS_MAX];
	uint64_t proposals, entries_appended, forwards_sent, forwards_received, reads, elections,
		snapshots_sent, snapshots_installed, fsyncs;
} raft_node_status_t;

/* Start: open the log (replaying entries after applied_index() through apply), the transport,
 * the tick timer. Returns 0 or a negative errno with a reason in errbuf. */
int raft_node_start(uv_loop_t *loop, const raft_node_config_t *cfg, raft_node_t **out, char *errbuf,
		    size_t errbuf_len);
/* Stop: close every handle, join the I/O thread; cb (may be NULL) runs when all is closed and a
 * snapshot job running on the libuv thread pool has finished (queued ones are dropped). */
void raft_node_stop(raft_node_t *n, void (*cb)(void *arg), void *arg);

/* Queue a blob; copies it. `seq` identifies it in on_propose_failed. A blob larger than
 * batch_bytes_max travels in an entry of its own. Returns 0 or -E2BIG (larger than
 * RAFT_NODE_BLOB_BYTES_MAX), -ESHUTDOWN, -EAGAIN (unresolved proposals over their bound). */
int raft_node_propose(raft_node_t *n, const void *blob, size_t len, uint64_t seq);

/* Linearizable read barrier (ReadIndex, batched per loop iteration); on_read() fires later. */
int raft_node_read(raft_node_t *n, uint64_t read_id);

int raft_node_transfer_leadership(raft_node_t *n, uint32_t to_id);
int raft_node_add_member(raft_node_t *n, const raft_peer_addr_t *peer);
int raft_node_remove_member(raft_node_t *n, uint32_t id);

void raft_node_status(const raft_node_t *n, raft_node_status_t *st);
bool raft_node_is_leader(const raft_node_t *n);

/* Walking the blobs of an applied entry. */
typedef struct raft_entry_iter {
	const uint8_t *p, *end;
} raft_entry_iter_t;
void raft_entry_iter_init(raft_entry_iter_t *it, const uint8_t *data, size_t len);
/* 1 and the next blob, 0 at the end, -EINVAL on a malformed entry. */
int raft_entry_iter_next(raft_entry_iter_t *it, const uint8_t **blob, size_t *len);

#endif
