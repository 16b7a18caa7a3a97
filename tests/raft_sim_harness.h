/* raft_sim_harness.h - a deterministic cluster simulator around raft/core.h, with safety checks.
 *
 * N simulated nodes each own a core, a "durable" store (hard state, snapshot, log) and "volatile"
 * state (writes queued for a simulated fsync, the incoming snapshot, the state machine). Time is
 * simulated (ms); a seeded scheduler orders ticks, message deliveries and fsync completions, and
 * the network drops, duplicates, delays and reorders messages and honours partitions. Messages go
 * through the real wire codec (raft/msg.c). A crash throws away volatile state (a random prefix of
 * the queued writes may have reached the disk anyway); a restart rebuilds the core from durable
 * state with raft_core_new(), as raft/node.c will.
 *
 * After every input a node processes, the harness checks: election safety (one leader per term),
 * log matching (every (index, term) ever written names one entry and one previous term), committed
 * entries agree across nodes and commit/apply are monotonic, leader completeness (a new leader holds
 * every entry committed so far), state machine safety (everyone applies the same entry and the same
 * state at each index; only committed entries are applied), ReadIndex answers at least every commit
 * acknowledged before the request. sim_check_final() adds the end-of-run checks. The first
 * violation is recorded (sim_failure) and stops the run.
 */
#ifndef METASTORE_TESTS_RAFT_SIM_HARNESS_H
#define METASTORE_TESTS_RAFT_SIM_HARNESS_H

#include "core.h"

#include <stdbool.h>
#include <stdint.h>

#define SIM_NODES_MAX 8u

typedef struct sim sim_t;

typedef struct sim_opts {
	uint64_t seed;
	uint32_t n_voters; /* nodes 1..n_voters form the initial configuration */
	uint32_t n_spare;  /* nodes after them start with no configuration (to be added) */
	bool verbose;      /* trace every event to stderr */
	uint32_t tick_ms;
	uint32_t delay_min_ms, delay_max_ms;
	uint32_t drop_permille, dup_permille, long_delay_permille, long_delay_ms;
	bool fifo_links; /* TCP-like: a link delivers in send order (a long delay holds up what follows) */
	uint32_t fsync_min_ms, fsync_max_ms;
	uint32_t crash_leak_permille; /* chance each queued write (in order) reached the disk anyway */
	uint32_t snap_every;          /* applied entries between local snapshots; 0: never */
	uint32_t snap_window_max;     /* entries kept below the snapshot at compaction */
	uint32_t snap_filler_max;     /* snapshot file size is 40 + [0, this] bytes */
	raft_config_t cfg;            /* per-node template; id and seed are set by the harness */
} sim_opts_t;

typedef struct sim_stats {
	uint64_t delivered, dropped, duplicated;
	uint64_t proposals, acked, reads, reads_served;
	uint64_t elections, installs, snapshots, crashes, truncations;
	uint64_t max_term, max_commit;
	uint64_t conf_changes;  /* membership entries applied by some node (counted once per index) */
	uint64_t max_settle_ms; /* raft_sim's own bookkeeping */
} sim_stats_t;

/* A message filter for scripted scenarios: return true to drop m (called at send time). */
typedef bool (*sim_drop_fn)(void *ctx, const raft_msg_t *m);

void sim_opts_default(sim_opts_t *o, uint64_t seed, uint32_t n_voters);
sim_t *sim_new(const sim_opts_t *o);
void sim_free(sim_t *s);

uint64_t sim_now(const sim_t *s);
bool sim_failed(const sim_t *s);
const char *sim_failure(const sim_t *s);
void sim_fail(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const sim_stats_t *sim_stats(const sim_t *s);

/* Runs the scheduler for ms of simulated time (stops early on a failure). */
void sim_run_for(sim_t *s, uint64_t ms);
/* Runs until pred holds (checked every ms) or max_ms passed; returns pred's last value. */
bool sim_run_until(sim_t *s, uint64_t max_ms, bool (*pred)(sim_t *s, void *ctx), void *ctx);

uint32_t sim_n_nodes(const sim_t *s);
bool sim_up(const sim_t *s, uint64_t id);
raft_core_t *sim_core(sim_t *s, uint64_t id); /* NULL while crashed */
void sim_status(sim_t *s, uint64_t id, raft_status_t *st);
uint64_t sim_leader(sim_t *s); /* the live leader with the highest term, 0 if none */
uint64_t sim_applied(const sim_t *s, uint64_t id);

/* Network. */
void sim_link_set(sim_t *s, uint64_t from, uint64_t to, bool up);
void sim_isolate(sim_t *s, uint64_t id);
void sim_partition(sim_t *s, const uint64_t *side, uint32_t n); /* side vs everyone else */
void sim_heal(sim_t *s);                                        /* all links up */
void sim_set_faults(sim_t *s, uint32_t drop_permille, uint32_t dup_permille, uint32_t long_delay_permille);
void sim_set_drop_filter(sim_t *s, sim_drop_fn fn, void *ctx);

/* Nodes. */
void sim_crash(sim_t *s, uint64_t id);
uint32_t sim_pending_writes(const sim_t *s, uint64_t id); /* queued writes not yet durable */
void sim_restart(sim_t *s, uint64_t id);

/* Inputs on node id, tracked by the checks: a proposal with a unique payload (returns the core's
 * result); a ReadIndex request (returns its ctx, or the negative errno). Both drain the node. */
int64_t sim_propose(sim_t *s, uint64_t id);
int64_t sim_read(sim_t *s, uint64_t id);
/* Any other direct call on sim_core() must be followed by this. */
void sim_drain(sim_t *s, uint64_t id);

uint64_t sim_max_acked(const sim_t *s);
/* Index of the first acknowledged proposal proposed after `index`... helpers for scenarios: */
bool sim_acked_index(const sim_t *s, uint64_t index); /* a proposal at index was acknowledged */
uint64_t sim_last_read_index(const sim_t *s);         /* index of the last read served */

/* End of run (after healing): every live member of the leader's configuration has applied every
 * acknowledged proposal, and logs of live nodes match pairwise. Returns false (and records why). */
bool sim_check_final(sim_t *s);

#endif
