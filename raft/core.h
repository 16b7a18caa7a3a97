/* core.h - the Raft consensus core: a deterministic state machine with no I/O and no clock.
 *
 * Modelled on etcd-io/raft's RawNode: the application feeds inputs (messages from peers, ticks,
 * proposals, storage completions) and collects outputs in a Ready batch (state and entries to make
 * durable, messages to send, committed entries to apply). Everything else, the durable log, the
 * network, timers and the state machine, belongs to the application (raft/node.c, or the
 * simulator in tests/). Given the same config (seed included) and the same input sequence the core
 * produces the same outputs, which is what lets tests/raft_sim.c explore thousands of schedules.
 *
 * Features: pre-vote, check-quorum with a leader lease on votes, a no-op entry at the start of every
 * term and the current-term commit rule, AppendEntries with conflict-term back-off, pipelined
 * replication with a bounded in-flight window per follower (probe / replicate / snapshot states),
 * heartbeats carrying commit, ReadIndex with batched confirmation rounds, leadership transfer,
 * log compaction and chunked InstallSnapshot, single-server membership changes (learner first).
 *
 * THE READY CONTRACT (one loop, one thread):
 *   while (raft_core_has_ready(c)) {
 *       raft_core_ready(c, &rd);
 *       1. queue a write of rd.hard_state (if hard_state_changed) and of rd.entries: first drop every
 *          durable entry with index >= rd.entries_first_index, then append rd.entries. Writes become
 *          durable in the order they were queued (fsync only when rd.must_sync).
 *       2. send rd.msgs now (a RAFT_MSG_SNAP has chunk == NULL: fill in chunk_len bytes of the snapshot
 *          file of index snap.index from `offset`, or drop the message if that file is gone).
 *       3. keep rd.msgs_after_persist and send them only once this write (and every earlier one) is
 *          durable: they promise durable state (a vote granted, a log acknowledged, a candidate's
 *          own vote). A crash before that drops them, which is just message loss.
 *       4. apply rd.committed in order; serve rd.read_states once applied >= their index.
 *       5. snapshot receive: write rd.snap_chunks in order to the incoming snapshot file (offset 0
 *          starts a new file); when rd.snapshot_install is set, that file is complete (rd.snapshot
 *          is its meta): after every earlier write, make it durable (tmp, fsync, rename), restore the
 *          state machine from it, reset the durable log to empty with base (index, term), then call
 *          raft_core_snapshot_installed().
 *       6. raft_core_advance(c, &rd).
 *   }
 *   Pointers in rd stay valid until raft_core_advance(); no other raft_core_* call may come
 *   between raft_core_ready() and raft_core_advance() (asserted).
 *   When a queued write is durable, call raft_core_persisted(c, index, term) with its last entry.
 *   The leader counts its own log toward commit only through raft_core_persisted(), so it replicates
 *   to followers in parallel with its own fsync. Committed entries are handed out for apply only
 *   once they are durable locally.
 *
 * Restart: rebuild the core with raft_core_new() from the durable hard state, the latest snapshot's
 * meta, the durable entries and the state machine's applied index. The durable log may still hold
 * entries the snapshot covers (a trailing window kept for slow followers, or a stale log left by a
 * crash during snapshot install); the rules are at raft_restore_t.
 *
 * Errors are negative errno values; the RAFT_ERR_* names below say what each means here.
 */
#ifndef METASTORE_RAFT_CORE_H
#define METASTORE_RAFT_CORE_H

#include "msg.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_ERR_NOT_LEADER (-EREMOTE) /* this node is not the leader: ask raft_core_status().lead */
#define RAFT_ERR_NO_LEADER (-ENOTCONN) /* no leader known right now (election in progress) */
#define RAFT_ERR_AGAIN (-EAGAIN)       /* transfer in progress, new leader not settled, learner behind */
#define RAFT_ERR_FULL (-ENOBUFS)       /* uncommitted-bytes or pending-reads limit reached */
#define RAFT_ERR_BUSY (-EBUSY)         /* a membership change is still uncommitted */
#define RAFT_ERR_TOO_BIG (-EMSGSIZE)   /* proposal larger than entry_bytes_max */

#define RAFT_INFLIGHT_MAX 256u      /* cap on config.inflight_max */
#define RAFT_READS_MAX 4096u        /* cap on config.reads_max */
#define RAFT_OUTBOX_MAX 4096u       /* messages buffered between two Readys; beyond: dropped */
#define RAFT_APPLY_BATCH_MAX 1024u  /* committed entries handed out per Ready */
#define RAFT_SNAP_CHUNKS_PENDING 4u /* received snapshot chunks buffered between two Readys */

typedef enum raft_role {
	RAFT_FOLLOWER = 0,
	RAFT_PRECANDIDATE = 1,
	RAFT_CANDIDATE = 2,
	RAFT_LEADER = 3,
} raft_role_t;

typedef struct raft_config {
	uint64_t id;                    /* this node, != 0 */
	uint64_t seed;                  /* PRNG seed for randomized election timeouts */
	uint32_t election_ticks;        /* election timeout, randomized in [election, 2 * election) */
	uint32_t heartbeat_ticks;       /* < election_ticks */
	uint32_t inflight_max;          /* AppendEntries in flight per follower, 1..RAFT_INFLIGHT_MAX */
	uint32_t msg_entries_max;       /* entries per AppendEntries, 1..RAFT_MSG_ENTRIES_MAX */
	uint32_t msg_bytes_max;         /* entry bytes per AppendEntries (one entry always fits) */
	uint32_t entry_bytes_max;       /* largest proposal, <= RAFT_ENTRY_BYTES_MAX */
	uint64_t uncommitted_bytes_max; /* leader refuses proposals beyond this much uncommitted data */
	uint32_t snap_chunk_bytes;      /* InstallSnapshot chunk size, 1..RAFT_SNAP_CHUNK_BYTES_MAX */
	uint32_t snap_resend_ticks;     /* resend an unacknowledged chunk after this many ticks */
	uint32_t reads_max;             /* pending ReadIndex requests, 1..RAFT_READS_MAX */
	bool pre_vote;
	bool check_quorum;
	/* Lease reads (needs check_quorum; 0 = off): a leader whose leadership a quorum confirmed
	 * by answering a heartbeat sent at time T (raft_core_set_clock) serves reads at once, with
	 * its commit index, until T + lease_ms. Safe only if lease_ms is below the time a follower
	 * refuses votes after hearing from its leader, (election_ticks - 1) ticks of real time, by
	 * the clocks' possible drift: a node refuses votes for election_ticks ticks after it starts
	 * too (a restarted follower forgot whom it heard from), the lease ends with a leadership
	 * transfer (its target campaigns without waiting), and the clock must be monotonic real
	 * time (a stalled loop must not stretch the lease). */
	uint32_t lease_ms;
} raft_config_t;

/* Defaults: election 10 ticks, heartbeat 1, inflight 64, 256 entries / 1 MiB per message,
 * 8 MiB + 64 KiB per entry, 64 MiB uncommitted, 1 MiB chunks resent after 5 ticks, 1024 reads,
 * pre-vote and check-quorum on. */
void raft_config_default(raft_config_t *cfg, uint64_t id, uint64_t seed);

typedef struct raft_hard_state {
	uint64_t term;
	uint64_t vote;
	uint64_t commit;
} raft_hard_state_t;

typedef struct raft_soft_state {
	uint8_t role; /* raft_role_t */
	uint64_t lead;
	uint64_t term;
} raft_soft_state_t;

/* Durable state to start from. A brand-new cluster member: zero hard state, snapshot index 0 and
 * term 0 whose conf holds the initial voters (or no members at all for a node that will be added
 * later), no entries, applied 0.
 * Entries must be contiguous; where they meet the snapshot:
 *   - they start at snapshot.index + 1: all kept;
 *   - they start at or before snapshot.index and hold (snapshot.index, snapshot.term): kept (the
 *     first one only serves as the base, its term is what AppendEntries needs as prev term);
 *   - otherwise (end before it, or a different term there: a log left over from before a snapshot
 *     install) they are all discarded;
 *   - they start after snapshot.index + 1: -EINVAL.
 * applied must lie in [snapshot.index, last kept index]; commit is raised to applied and capped at
 * the last index. */
typedef struct raft_restore {
	raft_hard_state_t hard_state;
	raft_snapshot_meta_t snapshot;
	const raft_entry_t *entries;
	size_t n_entries;
	uint64_t applied;
} raft_restore_t;

typedef struct raft_read_state {
	uint64_t ctx;   /* the caller's context from raft_core_read_index() */
	uint64_t index; /* serve the read once applied >= index */
} raft_read_state_t;

typedef struct raft_snap_chunk {
	uint64_t snap_index;
	uint64_t offset; /* 0 starts a new incoming snapshot file */
	const void *data;
	uint32_t len;
} raft_snap_chunk_t;

typedef struct raft_ready {
	bool hard_state_changed;
	raft_hard_state_t hard_state;
	bool soft_state_changed;
	raft_soft_state_t soft_state;
	bool must_sync; /* entries, term or vote changed: the write needs fsync before persisted() */
	uint64_t entries_first_index;
	const raft_entry_t *entries;
	size_t n_entries;
	const raft_msg_t *msgs;
	size_t n_msgs;
	const raft_msg_t *msgs_after_persist;
	size_t n_msgs_after_persist;
	const raft_entry_t *committed;
	size_t n_committed;
	const raft_read_state_t *read_states;
	size_t n_read_states;
	const raft_snap_chunk_t *snap_chunks;
	size_t n_snap_chunks;
	bool snapshot_install;
	raft_snapshot_meta_t snapshot;
} raft_ready_t;

typedef struct raft_peer_status {
	uint64_t id;
	bool voter;
	uint8_t state; /* 0 probe, 1 replicate, 2 snapshot */
	uint64_t match;
	uint64_t next;
} raft_peer_status_t;

typedef struct raft_status {
	uint64_t id;
	uint8_t role;
	uint64_t term, vote, lead;
	uint64_t commit, applied, persisted;
	uint64_t first_index, last_index; /* entries in memory: [first_index, last_index] */
	uint64_t snap_index, snap_term;
	raft_conf_t conf; /* the configuration in force (the last one appended) */
	uint64_t lead_transferee;
	uint64_t msgs_dropped; /* outbox overflow */
	uint32_t n_peers;      /* leader only */
	raft_peer_status_t peers[RAFT_NODES_MAX];
} raft_status_t;

typedef struct raft_core raft_core_t;

/* -EINVAL for a bad config or restore, -ENOMEM. */
int raft_core_new(const raft_config_t *cfg, const raft_restore_t *restore, raft_core_t **out);
void raft_core_free(raft_core_t *c);

/* A message from a peer (decoded by raft_msg_decode). -EINVAL when it is malformed or not for
 * this node, -ENOMEM when entries could not be stored (treated as lost). */
int raft_core_step(raft_core_t *c, const raft_msg_t *m);

/* One unit of logical time. */
void raft_core_tick(raft_core_t *c);

/* Appends a normal entry; returns its index (> 0). The proposal is committed iff the entry later
 * applied at that index has the term the leader had (raft_core_status().term) when proposing.
 * RAFT_ERR_NOT_LEADER, RAFT_ERR_AGAIN (leadership transfer in progress), RAFT_ERR_TOO_BIG,
 * RAFT_ERR_FULL, -ENOMEM. */
int64_t raft_core_propose(raft_core_t *c, const void *data, size_t len);

/* Single-server membership change; returns the conf entry's index. The configuration takes effect
 * as soon as the entry is appended (on every node), one change at a time. A node joins as a learner
 * and is promoted with RAFT_CONF_ADD_VOTER once its log has caught up with the leader's commit
 * index. A leader that removes itself steps down once the change commits.
 * RAFT_ERR_NOT_LEADER; RAFT_ERR_AGAIN (transfer in progress, this leader has not committed an
 * entry of its term yet, or the learner to promote is behind); RAFT_ERR_BUSY (previous change not
 * committed); -EEXIST (already a member / already a voter); -ENOENT (not a member; promoting a
 * node that is not a learner); -EINVAL (id 0, bad op, removing the last voter); -ENOSPC
 * (RAFT_NODES_MAX members); -ENOMEM. */
int64_t raft_core_propose_conf(raft_core_t *c, raft_conf_op_t op, uint64_t id);

/* Linearizable read: a raft_read_state_t with this ctx comes out in a later Ready (on this node)
 * once leadership has been confirmed by a quorum after this call; its index is >= every commit
 * acknowledged before the call. Confirmation is batched: one heartbeat round is in flight at a time
 * and every request that arrives meanwhile shares the next round (like group commit); a lost round
 * is carried again by the next periodic heartbeat. A follower forwards the request to its leader.
 * Requests are not retried: one lost on the network, or pending when the leader steps down, never
 * comes back, so callers time out and retry. A new leader answers only after its term's no-op has
 * committed.
 * 0, RAFT_ERR_NO_LEADER, RAFT_ERR_FULL. */
int raft_core_read_index(raft_core_t *c, uint64_t ctx);
/* A leader with lease_ms and a valid lease answers in the next Ready without a round. */

/* The current monotonic time in ms (lease reads only; never decreasing). Call before the calls
 * that may serve or confirm reads (step, tick, read_index); without lease_ms it is unused. */
void raft_core_set_clock(raft_core_t *c, uint64_t now_ms);

/* Leader: hand leadership to voter id (catch it up, then RAFT_MSG_TIMEOUT_NOW). Proposals are
 * refused until the transfer ends (the target wins, or one election timeout passes).
 * 0, RAFT_ERR_NOT_LEADER, -EINVAL (id is self or not a voter). */
int raft_core_transfer_leader(raft_core_t *c, uint64_t id);

/* Start an election now, as if the election timer had fired (pre-vote first when enabled).
 * 0, -EALREADY (leader), -EPERM (not a voter in the configuration in force). */
int raft_core_campaign(raft_core_t *c);

/* Storage completion: the write whose last entry is (index, term) and every earlier write are
 * durable. A completion whose entry has since been truncated away is ignored. */
void raft_core_persisted(raft_core_t *c, uint64_t index, uint64_t term);

/* Local snapshots. raft_core_snapshot_meta() fills term and conf of a snapshot taken at the applied
 * index `index` (size_bytes left 0 for the caller); -EINVAL when index is above applied or below
 * the current snapshot. raft_core_compact() records meta as the latest snapshot (what lagging
 * followers get) and drops the in-memory entries up to compact_index <= meta->index (the window
 * between them is kept for followers that are only a little behind); -EINVAL on a meta the core
 * did not describe or a compact_index beyond it. The application trims its durable log the same. */
int raft_core_snapshot_meta(const raft_core_t *c, uint64_t index, raft_snapshot_meta_t *out);
int raft_core_compact(raft_core_t *c, uint64_t compact_index, const raft_snapshot_meta_t *meta);

/* The snapshot of the last rd.snapshot_install is durable, the state machine restored from it and
 * the durable log reset (see the contract above). -EINVAL when no install is pending or meta differs. */
int raft_core_snapshot_installed(raft_core_t *c, const raft_snapshot_meta_t *meta);

bool raft_core_has_ready(const raft_core_t *c);
void raft_core_ready(raft_core_t *c, raft_ready_t *rd);
void raft_core_advance(raft_core_t *c, const raft_ready_t *rd);

/* Inspection (status file, tests). raft_core_entry: 0 or -ENOENT when index is not in memory. */
void raft_core_status(const raft_core_t *c, raft_status_t *st);
int raft_core_entry(const raft_core_t *c, uint64_t index, raft_entry_t *out);
bool raft_core_term_at(const raft_core_t *c, uint64_t index, uint64_t *term);

const char *raft_role_name(uint8_t role);

#endif
