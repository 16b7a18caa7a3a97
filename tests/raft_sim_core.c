/* raft_sim_core.c - unit tests of raft/core.c through its API, one core at a time, with hand-made
 * messages: every errno each function returns, the restore rules, which Ready list each message
 * lands in (send now, or only after the write is durable), and rules that the randomized simulation
 * reaches too rarely to pin down (a follower's commit never passes the last entry the leader sent;
 * a stale storage completion is ignored; the leader counts its own log only once it is durable).
 */
#include "core.h"

#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MSGS_MAX 256

/* What one or more Readys handed out. */
typedef struct out {
	raft_msg_t now[MSGS_MAX], after[MSGS_MAX];
	size_t n_now, n_after;
	size_t committed, n_entries, read_states;
	raft_read_state_t last_read;
	bool install;
	raft_snapshot_meta_t snapshot;
} out_t;

static raft_config_t config(uint64_t id)
{
	raft_config_t cfg;
	raft_config_default(&cfg, id, 42);
	return cfg;
}

static raft_core_t *fresh(uint64_t id, uint32_t voters, const raft_config_t *cfg_in)
{
	raft_config_t cfg = cfg_in ? *cfg_in : config(id);
	cfg.id = id;
	raft_restore_t r = {0};
	r.snapshot.conf.n_voters = voters;
	for (uint32_t i = 0; i < voters; i++)
		r.snapshot.conf.voters[i] = i + 1;
	raft_core_t *c = NULL;
	ck_assert_int_eq(raft_core_new(&cfg, &r, &c), 0);
	return c;
}

/* Drains every Ready; with `durable`, each write completes at once (persisted is reported). */
static void pump(raft_core_t *c, out_t *o, bool durable)
{
	memset(o, 0, sizeof(*o));
	for (int round = 0; round < 100 && raft_core_has_ready(c); round++) {
		raft_ready_t rd;
		raft_core_ready(c, &rd);
		for (size_t i = 0; i < rd.n_msgs && o->n_now < MSGS_MAX; i++)
			o->now[o->n_now++] = rd.msgs[i];
		for (size_t i = 0; i < rd.n_msgs_after_persist && o->n_after < MSGS_MAX; i++)
			o->after[o->n_after++] = rd.msgs_after_persist[i];
		for (size_t i = 0; i < o->n_now; i++)
			o->now[i].entries = NULL; /* pointers die at advance */
		o->committed += rd.n_committed;
		o->n_entries += rd.n_entries;
		o->read_states += rd.n_read_states;
		if (rd.n_read_states) o->last_read = rd.read_states[rd.n_read_states - 1];
		if (rd.snapshot_install) {
			o->install = true;
			o->snapshot = rd.snapshot;
		}
		uint64_t li = rd.n_entries ? rd.entries[rd.n_entries - 1].index : 0;
		uint64_t lt = rd.n_entries ? rd.entries[rd.n_entries - 1].term : 0;
		raft_core_advance(c, &rd);
		if (durable && li) raft_core_persisted(c, li, lt);
	}
	ck_assert(!raft_core_has_ready(c));
}

static size_t count(const raft_msg_t *v, size_t n, uint8_t type)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		k += v[i].type == type;
	return k;
}

static const raft_msg_t *find(const raft_msg_t *v, size_t n, uint8_t type)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].type == type) return &v[i];
	ck_abort_msg("no %s", raft_msg_type_name(type));
	return NULL;
}

static raft_status_t status(const raft_core_t *c)
{
	raft_status_t st;
	raft_core_status(c, &st);
	return st;
}

static raft_msg_t msg(uint8_t type, uint64_t from, uint64_t to, uint64_t term)
{
	return (raft_msg_t){.type = type, .from = from, .to = to, .term = term};
}

/* A leader of a one-node cluster with its no-op committed. */
static raft_core_t *single_leader(const raft_config_t *cfg)
{
	raft_core_t *c = fresh(1, 1, cfg);
	out_t o;
	ck_assert_int_eq(raft_core_campaign(c), 0);
	pump(c, &o, true);
	ck_assert_int_eq(status(c).role, RAFT_LEADER);
	ck_assert_uint_eq(status(c).commit, 1);
	return c;
}

/* Node 1 of {1,2,3} elected by node 2's vote, no-op committed through node 2's ack. */
static raft_core_t *leader_of_three(const raft_config_t *cfg)
{
	raft_core_t *c = fresh(1, 3, cfg);
	out_t o;
	ck_assert_int_eq(raft_core_campaign(c), 0); /* pre-vote first */
	pump(c, &o, true);
	ck_assert_int_eq(status(c).role, RAFT_PRECANDIDATE);
	raft_msg_t r = msg(RAFT_MSG_PREVOTE_RESP, 2, 1, 1);
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_int_eq(status(c).role, RAFT_CANDIDATE);
	r = msg(RAFT_MSG_VOTE_RESP, 2, 1, 1);
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_int_eq(status(c).role, RAFT_LEADER);
	r = msg(RAFT_MSG_APP_RESP, 2, 1, 1);
	r.index = 1;
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(status(c).commit, 1);
	return c;
}

START_TEST(config_is_checked)
{
	raft_restore_t r = {0};
	raft_core_t *c = (raft_core_t *)1;
	struct {
		size_t off, size;
		uint64_t value;
	} bad[] = {
	    {offsetof(raft_config_t, id), 8, 0},
	    {offsetof(raft_config_t, heartbeat_ticks), 4, 0},
	    {offsetof(raft_config_t, election_ticks), 4, 1},
	    {offsetof(raft_config_t, inflight_max), 4, 0},
	    {offsetof(raft_config_t, inflight_max), 4, RAFT_INFLIGHT_MAX + 1},
	    {offsetof(raft_config_t, msg_entries_max), 4, 0},
	    {offsetof(raft_config_t, msg_entries_max), 4, RAFT_MSG_ENTRIES_MAX + 1},
	    {offsetof(raft_config_t, msg_bytes_max), 4, 0},
	    {offsetof(raft_config_t, msg_bytes_max), 4, RAFT_ENTRY_BYTES_MAX + 1},
	    {offsetof(raft_config_t, entry_bytes_max), 4, 0},
	    {offsetof(raft_config_t, entry_bytes_max), 4, RAFT_ENTRY_BYTES_MAX + 1},
	    {offsetof(raft_config_t, uncommitted_bytes_max), 8, 0},
	    {offsetof(raft_config_t, snap_chunk_bytes), 4, 0},
	    {offsetof(raft_config_t, snap_chunk_bytes), 4, RAFT_SNAP_CHUNK_BYTES_MAX + 1},
	    {offsetof(raft_config_t, snap_resend_ticks), 4, 0},
	    {offsetof(raft_config_t, reads_max), 4, 0},
	    {offsetof(raft_config_t, reads_max), 4, RAFT_READS_MAX + 1},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		raft_config_t cfg = config(1);
		if (bad[i].size == 8) {
			memcpy((char *)&cfg + bad[i].off, &bad[i].value, 8);
		} else {
			uint32_t v = (uint32_t)bad[i].value;
			memcpy((char *)&cfg + bad[i].off, &v, 4);
		}
		ck_assert_int_eq(raft_core_new(&cfg, &r, &c), -EINVAL);
		ck_assert_ptr_null(c);
		c = (raft_core_t *)1;
	}
	raft_config_t cfg = config(1);
	ck_assert_int_eq(raft_core_new(&cfg, &r, &c), 0);
	raft_core_free(c);
	raft_core_free(NULL);
}
END_TEST

static raft_entry_t E(uint64_t index, uint64_t term)
{
	return (raft_entry_t){.index = index, .term = term, .type = RAFT_ENTRY_NORMAL};
}

static int restore(raft_restore_t *r, raft_core_t **c)
{
	raft_config_t cfg = config(1);
	if (r->snapshot.conf.n_voters == 0) {
		r->snapshot.conf.n_voters = 1;
		r->snapshot.conf.voters[0] = 1;
	}
	return raft_core_new(&cfg, r, c);
}

START_TEST(restore_is_checked)
{
	raft_core_t *c = NULL;
	raft_entry_t ents[4] = {E(1, 1), E(2, 1), E(3, 2), E(4, 2)};
	raft_restore_t r = {.hard_state = {.term = 2}, .entries = ents, .n_entries = 4};
	ck_assert_int_eq(restore(&r, &c), 0);
	raft_core_free(c);

	r.snapshot.index = 1; /* a snapshot index without a term */
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	r.snapshot = (raft_snapshot_meta_t){.index = 0, .term = 0, .conf = {.n_voters = 2, .voters = {1, 1}}};
	ck_assert_int_eq(restore(&r, &c), -EINVAL); /* duplicate voter */
	r.snapshot = (raft_snapshot_meta_t){0};
	r.hard_state.term = 1; /* an entry of term 2 but the hard state says term 1 */
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	r.hard_state.term = 2;
	ents[2].index = 5; /* gap */
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	ents[2] = E(3, 1);
	ents[3] = E(4, 0); /* term going back (and 0) */
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	ents[3] = (raft_entry_t){.index = 4, .term = 2, .type = 9};
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	ents[3] = E(4, 2);
	ents[0].index = 0;
	r.n_entries = 1;
	ck_assert_int_eq(restore(&r, &c), -EINVAL); /* index 0 */
	ents[0] = E(1, 1);
	r.n_entries = 4;
	r.snapshot = (raft_snapshot_meta_t){.index = 0, .term = 0};
	r.entries = ents + 2; /* starts at 3: a gap after snapshot 0 */
	r.n_entries = 2;
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	r.entries = ents;
	r.n_entries = 4;
	r.applied = 5; /* beyond the log */
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	r.snapshot = (raft_snapshot_meta_t){.index = 2, .term = 1};
	r.applied = 1; /* below the snapshot */
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
	r.snapshot.term = 3;
	r.hard_state.term = 2; /* hard state term below the snapshot's */
	r.applied = 2;
	ck_assert_int_eq(restore(&r, &c), -EINVAL);
}
END_TEST

START_TEST(restore_rules)
{
	raft_core_t *c = NULL;
	raft_entry_t ents[6] = {E(3, 1), E(4, 1), E(5, 2), E(6, 2), E(7, 2), E(8, 3)};
	/* entries reach back before the snapshot and hold (snapshot.index, term): all kept, the first as base
	 */
	raft_restore_t r = {
	    .hard_state = {.term = 3, .commit = 4}, .entries = ents, .n_entries = 6, .applied = 6};
	r.snapshot = (raft_snapshot_meta_t){.index = 5, .term = 2};
	ck_assert_int_eq(restore(&r, &c), 0);
	raft_status_t st = status(c);
	ck_assert_uint_eq(st.first_index, 4);
	ck_assert_uint_eq(st.last_index, 8);
	ck_assert_uint_eq(st.commit, 6); /* raised to applied */
	uint64_t t;
	ck_assert(raft_core_term_at(c, 3, &t) && t == 1);
	raft_entry_t e;
	ck_assert_int_eq(raft_core_entry(c, 3, &e), -ENOENT); /* the base itself is not in memory */
	ck_assert_int_eq(raft_core_entry(c, 9, &e), -ENOENT);
	ck_assert_int_eq(raft_core_entry(c, 8, &e), 0);
	ck_assert_uint_eq(e.term, 3);
	raft_core_free(c);
	/* a different term at the snapshot's index: a log left from before an install, all dropped */
	r.snapshot.term = 3;
	r.applied = 5;
	ck_assert_int_eq(restore(&r, &c), 0);
	st = status(c);
	ck_assert_uint_eq(st.first_index, 6);
	ck_assert_uint_eq(st.last_index, 5);
	ck_assert_uint_eq(st.commit, 5);
	raft_core_free(c);
	/* entries that end before the snapshot: dropped */
	r.snapshot = (raft_snapshot_meta_t){.index = 10, .term = 3};
	r.applied = 10;
	ck_assert_int_eq(restore(&r, &c), 0);
	ck_assert_uint_eq(status(c).last_index, 10);
	raft_core_free(c);
	/* commit is capped at the last index */
	r.snapshot = (raft_snapshot_meta_t){.index = 0, .term = 0};
	raft_entry_t from1[2] = {E(1, 1), E(2, 1)};
	r.entries = from1;
	r.n_entries = 2;
	r.applied = 0;
	r.hard_state = (raft_hard_state_t){.term = 1, .commit = 7};
	ck_assert_int_eq(restore(&r, &c), 0);
	ck_assert_uint_eq(status(c).commit, 2);
	raft_core_free(c);
}
END_TEST

START_TEST(single_node_lifecycle)
{
	raft_core_t *c = fresh(1, 1, NULL);
	out_t o;
	ck_assert_int_eq(raft_core_read_index(c, 1), RAFT_ERR_NO_LEADER);
	ck_assert_int_eq(raft_core_propose(c, "x", 1), RAFT_ERR_NOT_LEADER);
	ck_assert_int_eq(raft_core_campaign(c), 0);
	ck_assert_int_eq(status(c).role, RAFT_LEADER);
	/* the no-op is not committed until it is durable here */
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 2), RAFT_ERR_AGAIN);
	ck_assert_int_eq(raft_core_read_index(c, 7), 0); /* answered once the no-op commits */
	pump(c, &o, false);
	ck_assert_uint_eq(o.n_entries, 1);
	ck_assert_uint_eq(status(c).commit, 0);
	ck_assert_uint_eq(o.read_states, 0);
	raft_core_persisted(c, 1, 1);
	ck_assert_uint_eq(status(c).commit, 1);
	pump(c, &o, true);
	ck_assert_uint_eq(o.committed, 1);
	ck_assert_uint_eq(o.read_states, 1);
	ck_assert_uint_eq(o.last_read.ctx, 7);
	ck_assert_uint_eq(o.last_read.index, 1);
	ck_assert_int_eq(raft_core_campaign(c), -EALREADY);
	int64_t idx = raft_core_propose(c, "hello", 5);
	ck_assert_int_eq(idx, 2);
	pump(c, &o, true);
	ck_assert_uint_eq(o.committed, 1);
	ck_assert_uint_eq(status(c).applied, 2);
	ck_assert_int_eq(raft_core_read_index(c, 8), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.last_read.index, 2);
	raft_entry_t e;
	ck_assert_int_eq(raft_core_entry(c, 2, &e), 0);
	ck_assert_mem_eq(e.data, "hello", 5);
	ck_assert_str_eq(raft_role_name(RAFT_LEADER), "leader");
	raft_core_free(c);
}
END_TEST

START_TEST(propose_errors)
{
	raft_config_t cfg = config(1);
	cfg.entry_bytes_max = 100;
	cfg.uncommitted_bytes_max = 150;
	raft_core_t *c = single_leader(&cfg);
	char big[200] = {0};
	ck_assert_int_eq(raft_core_propose(c, big, 101), RAFT_ERR_TOO_BIG);
	ck_assert_int_gt(raft_core_propose(c, big, 100), 0);
	ck_assert_int_eq(raft_core_propose(c, big, 60), RAFT_ERR_FULL); /* 160 uncommitted > 150 */
	out_t o;
	pump(c, &o, true); /* committed: room again */
	ck_assert_int_gt(raft_core_propose(c, big, 60), 0);
	ck_assert_int_gt(raft_core_propose(c, NULL, 0), 0); /* empty proposals are fine */
	ck_assert_int_eq(raft_core_transfer_leader(c, 1), -EINVAL);
	ck_assert_int_eq(raft_core_transfer_leader(c, 5), -EINVAL);
	raft_core_free(c);
}
END_TEST

START_TEST(propose_conf_errors)
{
	raft_core_t *c = single_leader(NULL);
	out_t o;
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 0), -EINVAL);
	ck_assert_int_eq(raft_core_propose_conf(c, (raft_conf_op_t)9, 2), -EINVAL);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_REMOVE, 1), -EINVAL); /* the last voter */
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 1), -EEXIST);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, 1), -EEXIST);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, 2), -ENOENT); /* not a learner */
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_REMOVE, 2), -ENOENT);
	ck_assert_int_gt(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 2), 0);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 3), RAFT_ERR_BUSY);
	pump(c, &o, true);
	raft_status_t st = status(c);
	ck_assert(raft_conf_is_learner(&st.conf, 2));
	/* learner 2 never answered: it is behind, so it cannot be promoted */
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, 2), RAFT_ERR_AGAIN);
	for (uint64_t id = 3; id <= RAFT_NODES_MAX; id++) {
		ck_assert_int_gt(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, id), 0);
		pump(c, &o, true);
	}
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 99), -ENOSPC);
	ck_assert_int_gt(raft_core_propose_conf(c, RAFT_CONF_REMOVE, 2), 0);
	pump(c, &o, true);
	st = status(c);
	ck_assert(!raft_conf_is_learner(&st.conf, 2));
	ck_assert_uint_eq(status(c).n_peers, RAFT_NODES_MAX - 2);
	raft_core_free(c);
}
END_TEST

/* Lease reads: a lease needs check-quorum; a node refuses votes for an election timeout after
 * it starts (it may have promised a leader its vote-free lease before a restart). The lease's
 * safety under partitions, delays and crashes is checked by the simulations (odd seeds). */
START_TEST(lease_config_and_startup_vote_refusal)
{
	raft_config_t cfg = config(1);
	cfg.lease_ms = 80;
	cfg.check_quorum = false;
	raft_restore_t r = {0};
	r.snapshot.conf.n_voters = 3;
	for (uint32_t i = 0; i < 3; i++)
		r.snapshot.conf.voters[i] = i + 1;
	raft_core_t *bad = NULL;
	ck_assert_int_eq(raft_core_new(&cfg, &r, &bad), -EINVAL);
	ck_assert_ptr_null(bad);

	for (int lease = 0; lease <= 1; lease++) {
		cfg = config(1);
		cfg.lease_ms = lease ? 80 : 0;
		raft_core_t *c = fresh(1, 3, &cfg);
		out_t o;
		raft_msg_t v = msg(RAFT_MSG_VOTE, 2, 1, 1);
		ck_assert_int_eq(raft_core_step(c, &v), 0);
		pump(c, &o, true);
		size_t n_resp = count(o.after, o.n_after, RAFT_MSG_VOTE_RESP) + count(o.now, o.n_now, RAFT_MSG_VOTE_RESP);
		if (lease) { /* just started: ignored, term unchanged */
			ck_assert_uint_eq(n_resp, 0);
			ck_assert_uint_eq(status(c).term, 0);
			for (uint32_t i = 0; i < cfg.election_ticks; i++)
				raft_core_tick(c);
			pump(c, &o, true);
			v = msg(RAFT_MSG_VOTE, 2, 1, 5); /* above any campaign of its own */
			ck_assert_int_eq(raft_core_step(c, &v), 0);
			pump(c, &o, true);
		}
		bool after = count(o.after, o.n_after, RAFT_MSG_VOTE_RESP) == 1;
		const raft_msg_t *resp =
		    after ? find(o.after, o.n_after, RAFT_MSG_VOTE_RESP) : find(o.now, o.n_now, RAFT_MSG_VOTE_RESP);
		ck_assert(!(resp->flags & RAFT_MSG_F_REJECT)); /* granted */
		raft_core_free(c);
	}
}
END_TEST

START_TEST(follower_errors_and_read_forwarding)
{
	raft_core_t *c = fresh(1, 3, NULL);
	out_t o;
	ck_assert_int_eq(raft_core_propose(c, "x", 1), RAFT_ERR_NOT_LEADER);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 4), RAFT_ERR_NOT_LEADER);
	ck_assert_int_eq(raft_core_transfer_leader(c, 2), RAFT_ERR_NOT_LEADER);
	ck_assert_int_eq(raft_core_read_index(c, 1), RAFT_ERR_NO_LEADER);
	raft_msg_t hb = msg(RAFT_MSG_HEARTBEAT, 2, 1, 1);
	ck_assert_int_eq(raft_core_step(c, &hb), 0);
	ck_assert_uint_eq(status(c).lead, 2);
	ck_assert_int_eq(raft_core_read_index(c, 5), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_READ_INDEX), 1);
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_HEARTBEAT_RESP), 1);
	raft_msg_t resp = msg(RAFT_MSG_READ_INDEX_RESP, 2, 1, 1);
	resp.ctx = 5;
	resp.index = 0;
	ck_assert_int_eq(raft_core_step(c, &resp), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.read_states, 1);
	ck_assert_uint_eq(o.last_read.ctx, 5);
	/* malformed or misaddressed input */
	raft_msg_t bad = msg(RAFT_MSG_HEARTBEAT, 2, 3, 1);
	ck_assert_int_eq(raft_core_step(c, &bad), -EINVAL);
	bad = msg(RAFT_MSG_HEARTBEAT, 0, 1, 1);
	ck_assert_int_eq(raft_core_step(c, &bad), -EINVAL);
	bad = msg(RAFT_MSG_HEARTBEAT, 2, 1, 1);
	bad.n_entries = 1;
	ck_assert_int_eq(raft_core_step(c, &bad), -EINVAL);
	raft_core_free(c);
}
END_TEST

START_TEST(read_index_queue_full)
{
	raft_config_t cfg = config(1);
	cfg.reads_max = 4;
	raft_core_t *c = leader_of_three(&cfg);
	out_t o;
	for (uint64_t i = 1; i <= 4; i++)
		ck_assert_int_eq(raft_core_read_index(c, i), 0);
	ck_assert_int_eq(raft_core_read_index(c, 5), RAFT_ERR_FULL);
	pump(c, &o, true);
	/* the first request starts a round at once; the three that came while it was in flight wait
	 * and share the next one. One ack makes a quorum with ourselves. */
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_HEARTBEAT), 2);
	raft_msg_t r = msg(RAFT_MSG_HEARTBEAT_RESP, 3, 1, 1);
	r.ctx = find(o.now, o.n_now, RAFT_MSG_HEARTBEAT)->ctx;
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.read_states, 1);
	ck_assert_uint_eq(o.last_read.ctx, 1);
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_HEARTBEAT), 2);
	ck_assert_uint_eq(find(o.now, o.n_now, RAFT_MSG_HEARTBEAT)->ctx, r.ctx + 1);
	/* an answer to the old round confirms nothing new */
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.read_states, 0);
	r.ctx++;
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.read_states, 3);
	ck_assert_uint_eq(o.last_read.ctx, 4);
	ck_assert_uint_eq(o.last_read.index, 1);
	ck_assert_int_eq(raft_core_read_index(c, 6), 0);
	raft_core_free(c);
}
END_TEST

START_TEST(ready_routing)
{
	/* a candidate's vote requests wait for its own vote to be durable; pre-votes do not */
	raft_core_t *c = fresh(1, 3, NULL);
	out_t o;
	ck_assert_int_eq(raft_core_campaign(c), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_PREVOTE), 2);
	raft_msg_t r = msg(RAFT_MSG_PREVOTE_RESP, 3, 1, 1);
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(count(o.after, o.n_after, RAFT_MSG_VOTE), 2);
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_VOTE), 0);
	raft_core_free(c);

	/* a vote granted and an AppendEntries acknowledged go out only after the write */
	c = fresh(2, 3, NULL);
	raft_msg_t v = msg(RAFT_MSG_VOTE, 1, 2, 1);
	ck_assert_int_eq(raft_core_step(c, &v), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(count(o.after, o.n_after, RAFT_MSG_VOTE_RESP), 1);
	ck_assert_uint_eq(o.after[0].flags & RAFT_MSG_F_REJECT, 0);
	ck_assert_uint_eq(status(c).vote, 1);
	raft_entry_t e = {.index = 1, .term = 1, .type = RAFT_ENTRY_NOOP};
	raft_msg_t app = msg(RAFT_MSG_APP, 1, 2, 1);
	app.n_entries = 1;
	app.entries = &e;
	ck_assert_int_eq(raft_core_step(c, &app), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(count(o.after, o.n_after, RAFT_MSG_APP_RESP), 1);
	ck_assert_uint_eq(o.after[0].index, 1);
	ck_assert_uint_eq(o.n_entries, 1);
	/* a second candidate in the same term is refused */
	v = msg(RAFT_MSG_VOTE, 3, 2, 1);
	ck_assert_int_eq(raft_core_step(c, &v), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.after[0].flags & RAFT_MSG_F_REJECT, RAFT_MSG_F_REJECT);
	raft_core_free(c);

	/* the leader replicates in parallel with its own write (node 3 never answered its probe, so
	 * it is paused; node 2 is in replicate state) */
	c = leader_of_three(NULL);
	ck_assert_int_eq(raft_core_propose(c, "x", 1), 2);
	pump(c, &o, false);
	ck_assert_uint_eq(count(o.now, o.n_now, RAFT_MSG_APP), 1);
	ck_assert_uint_eq(o.now[0].to, 2);
	ck_assert_uint_eq(o.now[0].n_entries, 1);
	raft_core_free(c);
}
END_TEST

START_TEST(leader_counts_own_log_when_durable)
{
	raft_core_t *c = leader_of_three(NULL);
	out_t o;
	ck_assert_int_eq(raft_core_propose(c, "x", 1), 2);
	pump(c, &o, false); /* our own write of entry 2 has not completed */
	raft_msg_t r = msg(RAFT_MSG_APP_RESP, 2, 1, 1);
	r.index = 2;
	ck_assert_int_eq(raft_core_step(c, &r), 0);
	ck_assert_uint_eq(status(c).commit, 1); /* node 2 + an undurable self is not a quorum */
	raft_core_persisted(c, 2, 1);
	ck_assert_uint_eq(status(c).commit, 2);
	raft_core_free(c);
}
END_TEST

START_TEST(follower_commit_stops_at_last_new_entry)
{
	/* the follower holds a stale tail from term 1; the leader of term 2 sends entries 2..2 only */
	raft_entry_t ents[3] = {E(1, 1), E(2, 1), E(3, 1)};
	raft_restore_t rs = {.hard_state = {.term = 1}, .entries = ents, .n_entries = 3};
	rs.snapshot.conf = (raft_conf_t){.n_voters = 3, .voters = {1, 2, 3}};
	raft_config_t cfg = config(3);
	raft_core_t *c = NULL;
	ck_assert_int_eq(raft_core_new(&cfg, &rs, &c), 0);
	raft_entry_t e2 = E(2, 1);
	e2.data = NULL;
	raft_msg_t app = msg(RAFT_MSG_APP, 1, 3, 2);
	app.index = 1;
	app.log_term = 1;
	app.commit = 3; /* the leader's index 3 is committed, but it is not our (3, term 1) */
	app.n_entries = 1;
	app.entries = &e2;
	ck_assert_int_eq(raft_core_step(c, &app), 0);
	ck_assert_uint_eq(status(c).commit, 2);
	out_t o;
	pump(c, &o, true);
	ck_assert_uint_eq(o.after[0].index, 2); /* acknowledges what was sent, not its whole log */

	/* a mismatch answers with a hint: the last index whose term is <= the leader's prev term */
	app = msg(RAFT_MSG_APP, 1, 3, 2);
	app.index = 3;
	app.log_term = 2;
	ck_assert_int_eq(raft_core_step(c, &app), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.after[0].flags & RAFT_MSG_F_REJECT, RAFT_MSG_F_REJECT);
	ck_assert_uint_eq(o.after[0].index, 3);
	ck_assert_uint_eq(o.after[0].hint, 3);
	ck_assert_uint_eq(o.after[0].log_term, 1);
	raft_core_free(c);
}
END_TEST

START_TEST(stale_completion_is_ignored)
{
	raft_core_t *c = fresh(3, 3, NULL);
	raft_entry_t ents[2] = {E(1, 1), E(2, 1)};
	raft_msg_t app = msg(RAFT_MSG_APP, 1, 3, 1);
	app.n_entries = 2;
	app.entries = ents;
	ck_assert_int_eq(raft_core_step(c, &app), 0);
	out_t o;
	pump(c, &o, false); /* write of (1..2, term 1) queued, not durable */
	raft_entry_t e2 = E(2, 2);
	app = msg(RAFT_MSG_APP, 2, 3, 2);
	app.index = 1;
	app.log_term = 1;
	app.n_entries = 1;
	app.entries = &e2;
	ck_assert_int_eq(raft_core_step(c, &app), 0); /* truncates (2, term 1) */
	pump(c, &o, false);
	raft_core_persisted(c, 2, 1); /* completion of the first write: (2, 1) is gone */
	ck_assert_uint_eq(status(c).persisted, 0);
	raft_core_persisted(c, 2, 2);
	ck_assert_uint_eq(status(c).persisted, 2);
	raft_core_free(c);
}
END_TEST

START_TEST(snapshot_api)
{
	raft_core_t *c = single_leader(NULL);
	out_t o;
	for (int i = 0; i < 5; i++)
		ck_assert_int_gt(raft_core_propose(c, "abc", 3), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(status(c).applied, 6);
	raft_snapshot_meta_t meta;
	ck_assert_int_eq(raft_core_snapshot_meta(c, 7, &meta), -EINVAL); /* beyond applied */
	ck_assert_int_eq(raft_core_snapshot_meta(c, 4, &meta), 0);
	ck_assert_uint_eq(meta.term, 1);
	ck_assert_uint_eq(meta.conf.n_voters, 1);
	meta.size_bytes = 123;
	ck_assert_int_eq(raft_core_compact(c, 5, &meta), -EINVAL); /* beyond the snapshot */
	raft_snapshot_meta_t wrong = meta;
	wrong.term = 2;
	ck_assert_int_eq(raft_core_compact(c, 2, &wrong), -EINVAL);
	wrong = meta;
	wrong.conf.n_voters = 0;
	ck_assert_int_eq(raft_core_compact(c, 2, &wrong), -EINVAL);
	ck_assert_int_eq(raft_core_compact(c, 2, &meta), 0);
	raft_status_t st = status(c);
	ck_assert_uint_eq(st.first_index, 3);
	ck_assert_uint_eq(st.snap_index, 4);
	ck_assert_int_eq(raft_core_snapshot_meta(c, 3, &meta), -EINVAL);   /* older than the snapshot */
	ck_assert_int_eq(raft_core_snapshot_installed(c, &meta), -EINVAL); /* nothing to install */
	raft_core_free(c);
}
END_TEST

START_TEST(snapshot_receive_and_install)
{
	raft_core_t *c = fresh(3, 3, NULL);
	out_t o;
	raft_msg_t m = msg(RAFT_MSG_SNAP, 1, 3, 2);
	m.snap = (raft_snapshot_meta_t){
	    .index = 50, .term = 2, .size_bytes = 6, .conf = {.n_voters = 3, .voters = {1, 2, 3}}};
	m.offset = 3; /* not the start: ask for offset 0 */
	m.chunk_len = 3;
	m.chunk = "def";
	m.flags = RAFT_MSG_F_DONE;
	ck_assert_int_eq(raft_core_step(c, &m), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.now[0].type, RAFT_MSG_SNAP_RESP);
	ck_assert_uint_eq(o.now[0].flags, RAFT_MSG_F_REJECT);
	ck_assert_uint_eq(o.now[0].offset, 0);
	m.offset = 0;
	m.chunk = "abc";
	m.flags = 0;
	ck_assert_int_eq(raft_core_step(c, &m), 0);
	pump(c, &o, true);
	ck_assert_uint_eq(o.now[0].offset, 3);
	m.offset = 3;
	m.chunk = "def";
	m.flags = RAFT_MSG_F_DONE;
	ck_assert_int_eq(raft_core_step(c, &m), 0);
	pump(c, &o, true);
	ck_assert(o.install);
	ck_assert_uint_eq(o.snapshot.index, 50);
	ck_assert_uint_eq(o.n_now + o.n_after, 0);               /* acknowledged only once installed */
	ck_assert_int_eq(raft_core_campaign(c), RAFT_ERR_AGAIN); /* frozen until the install completes */
	raft_snapshot_meta_t other = o.snapshot;
	other.size_bytes = 7;
	ck_assert_int_eq(raft_core_snapshot_installed(c, &other), -EINVAL);
	ck_assert_int_eq(raft_core_snapshot_installed(c, &o.snapshot), 0);
	raft_status_t st = status(c);
	ck_assert_uint_eq(st.commit, 50);
	ck_assert_uint_eq(st.applied, 50);
	ck_assert_uint_eq(st.first_index, 51);
	pump(c, &o, true);
	ck_assert_uint_eq(count(o.after, o.n_after, RAFT_MSG_SNAP_RESP), 1);
	ck_assert_uint_eq(o.after[0].flags, RAFT_MSG_F_DONE);
	ck_assert_uint_eq(o.after[0].index, 50);
	ck_assert_uint_eq(o.committed, 0); /* the state machine came from the snapshot */
	raft_core_free(c);

	/* a non-voter (joining node) cannot campaign */
	raft_config_t cfg = config(9);
	raft_restore_t r = {0};
	ck_assert_int_eq(raft_core_new(&cfg, &r, &c), 0);
	ck_assert_int_eq(raft_core_campaign(c), -EPERM);
	raft_core_free(c);
}
END_TEST

static Suite *core_suite(void)
{
	Suite *s = suite_create("raft_core");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, config_is_checked);
	tcase_add_test(tc, restore_is_checked);
	tcase_add_test(tc, restore_rules);
	tcase_add_test(tc, single_node_lifecycle);
	tcase_add_test(tc, propose_errors);
	tcase_add_test(tc, propose_conf_errors);
	tcase_add_test(tc, follower_errors_and_read_forwarding);
	tcase_add_test(tc, read_index_queue_full);
	tcase_add_test(tc, ready_routing);
	tcase_add_test(tc, leader_counts_own_log_when_durable);
	tcase_add_test(tc, follower_commit_stops_at_last_new_entry);
	tcase_add_test(tc, stale_completion_is_ignored);
	tcase_add_test(tc, snapshot_api);
	tcase_add_test(tc, lease_config_and_startup_vote_refusal);
	tcase_add_test(tc, snapshot_receive_and_install);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(core_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
