/* raft_sim_scenarios.c - named, scripted Raft scenarios on the simulated cluster (check suite).
 *
 * Each test drives tests/raft_sim_harness.c by hand (partitions, crashes, message filters, forced
 * elections) into one situation the random runs reach only rarely, then asserts the outcome; the
 * harness's safety checks run underneath throughout. Where a feature is what makes the outcome
 * right (pre-vote, check-quorum), the test also runs without it and shows the difference, so the
 * scenario proves it tests something.
 *
 *   figure8            Raft paper Fig. 8: an old-term entry stored on a majority is not committed
 *                      by counting replicas, and is later overwritten safely; variant (e) too
 *   prevote            a partitioned node does not disrupt the cluster when it rejoins
 *   check_quorum       a partitioned leader steps down
 *   read_index         reads are linearizable: on the leader, via a follower, on a fresh leader,
 *                      never on a partitioned stale leader
 *   transfer           leadership transfer, also to a lagging follower; proposals refused meanwhile
 *   snapshot           a far-behind follower is brought up by a chunked InstallSnapshot under loss
 *   membership         add a learner, promote it, remove the leader, error cases
 */
#include "raft_sim_harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#define TICK_MS 10

static void assert_ok(sim_t *s) { ck_assert_msg(!sim_failed(s), "%s", sim_failure(s)); }

static raft_status_t status_of(sim_t *s, uint64_t id)
{
	raft_status_t st;
	sim_status(s, id, &st);
	return st;
}

/* The configuration in force on id (a copy that lives until the next call). */
static const raft_conf_t *conf_of(sim_t *s, uint64_t id)
{
	static raft_conf_t conf; /* test-only scratch */
	conf = status_of(s, id).conf;
	return &conf;
}

static bool has_leader(sim_t *s, void *ctx)
{
	(void)ctx;
	return sim_leader(s) != 0;
}

static bool leader_is(sim_t *s, void *ctx) { return sim_leader(s) == *(uint64_t *)ctx; }

static bool leader_other_than(sim_t *s, void *ctx)
{
	uint64_t l = sim_leader(s);
	return l != 0 && l != *(uint64_t *)ctx;
}

typedef struct applied_ctx {
	uint64_t index;
	uint64_t nodes[SIM_NODES_MAX];
	uint32_t n;
} applied_ctx_t;

static bool all_applied(sim_t *s, void *ctx)
{
	applied_ctx_t *a = ctx;
	for (uint32_t i = 0; i < a->n; i++)
		if (!sim_up(s, a->nodes[i]) || sim_applied(s, a->nodes[i]) < a->index) return false;
	return true;
}

static void wait_applied(sim_t *s, uint64_t index, uint32_t n_nodes, uint64_t max_ms)
{
	applied_ctx_t a = {.index = index, .n = n_nodes};
	for (uint32_t i = 0; i < n_nodes; i++)
		a.nodes[i] = i + 1;
	ck_assert_msg(sim_run_until(s, max_ms, all_applied, &a), "index %llu not applied on all %u nodes: %s",
	              (unsigned long long)index, n_nodes, sim_failure(s));
}

static uint64_t elect(sim_t *s)
{
	ck_assert_msg(sim_run_until(s, 3000, has_leader, NULL), "no leader: %s", sim_failure(s));
	return sim_leader(s);
}

/* Proposes k entries on the leader and waits until they are acknowledged. */
static uint64_t propose_acked(sim_t *s, uint64_t lead, int k)
{
	int64_t last = 0;
	for (int i = 0; i < k; i++) {
		last = sim_propose(s, lead);
		ck_assert_msg(last > 0, "propose on %llu: %lld", (unsigned long long)lead, (long long)last);
		if (i % 8 == 7) sim_run_for(s, 2);
	}
	for (int t = 0; t < 3000 && !sim_acked_index(s, (uint64_t)last); t++)
		sim_run_for(s, 1);
	assert_ok(s);
	ck_assert_msg(sim_acked_index(s, (uint64_t)last), "proposal %lld not acknowledged", (long long)last);
	return (uint64_t)last;
}

static sim_t *cluster(uint64_t seed, uint32_t voters, uint32_t spare, void (*tune)(sim_opts_t *o))
{
	sim_opts_t o;
	sim_opts_default(&o, seed, voters);
	o.n_spare = spare;
	o.tick_ms = TICK_MS;
	o.verbose = getenv("RAFT_SIM_VERBOSE") != NULL;
	if (tune != NULL) tune(&o);
	return sim_new(&o);
}

/* ------------------------------------------------------------------ Figure 8 */

static void tune_figure8(sim_opts_t *o)
{
	o->cfg.pre_vote = false; /* plain Raft, as in the paper */
	o->cfg.check_quorum = false;
	o->cfg.election_ticks = 100000; /* only the elections the script starts */
	o->cfg.msg_entries_max = 1;     /* one entry per AppendEntries: replicate index 2 without 3 */
	o->delay_min_ms = 1;
	o->delay_max_ms = 1;
	o->fsync_min_ms = 1;
	o->fsync_max_ms = 1;
}

typedef struct fig8_filter {
	sim_t *s;
	bool drop_apps_from_5;
	bool hold_index3; /* node 1 may not deliver index 3 to anyone who could accept it */
} fig8_filter_t;

static bool fig8_drop(void *ctx, const raft_msg_t *m)
{
	fig8_filter_t *f = ctx;
	if (m->type != RAFT_MSG_APP || m->n_entries == 0) return false;
	if (f->drop_apps_from_5 && m->from == 5) return true;
	if (f->hold_index3 && m->from == 1 && m->index + m->n_entries >= 3) {
		/* let the probe through to a node lacking index 2 (it rejects, which backs the leader up
		 * to index 2); drop it wherever it would append index 3 */
		raft_core_t *to = sim_core(f->s, m->to);
		raft_status_t st;
		if (to == NULL) return true;
		raft_core_status(to, &st);
		return st.last_index >= m->index;
	}
	return false;
}

static void campaign(sim_t *s, uint64_t id)
{
	ck_assert_int_eq(raft_core_campaign(sim_core(s, id)), 0);
	sim_drain(s, id);
}

/* Campaigns until id leads: a first try may lose to a voter already in that term (Fig. 8's terms
 * then come out as the paper numbers them). */
static void campaign_until_leader(sim_t *s, uint64_t id)
{
	for (int tries = 0; tries < 5; tries++) {
		campaign(s, id);
		if (sim_run_until(s, 100, leader_is, &id)) return;
	}
	ck_abort_msg("node %llu could not win an election: %s", (unsigned long long)id, sim_failure(s));
}

static uint64_t term_at(sim_t *s, uint64_t id, uint64_t index)
{
	uint64_t t = 0;
	if (!raft_core_term_at(sim_core(s, id), index, &t)) return 0;
	return t;
}

/* Steps (a)-(c) of Fig. 8; leaves node 1 leader of a later term with (2, t1) on nodes 1, 2, 3. */
static void figure8_prefix(sim_t *s, fig8_filter_t *f, uint64_t *t1, uint64_t *t2)
{
	sim_set_drop_filter(s, fig8_drop, f);
	campaign(s, 1);
	uint64_t one = 1;
	ck_assert(sim_run_until(s, 500, leader_is, &one));
	wait_applied(s, 1, 5, 500); /* everyone has the term's no-op at index 1 */
	*t1 = status_of(s, 1).term;

	/* (a) S1 leads; index 2 reaches S2 only. */
	uint64_t side[] = {1, 2};
	sim_partition(s, side, 2);
	ck_assert_int_eq(sim_propose(s, 1), 2);
	sim_run_for(s, 100);
	ck_assert_uint_eq(term_at(s, 2, 2), *t1);
	ck_assert_uint_eq(status_of(s, 3).last_index, 1);
	ck_assert_uint_eq(status_of(s, 1).commit, 1);

	/* (b) S1 crashes; S5 is elected by S3, S4, S5 and writes its own entry at index 2. */
	sim_crash(s, 1);
	uint64_t majority[] = {3, 4, 5};
	sim_partition(s, majority, 3);
	f->drop_apps_from_5 = true;
	campaign(s, 5);
	uint64_t five = 5;
	ck_assert(sim_run_until(s, 500, leader_is, &five));
	*t2 = status_of(s, 5).term;
	ck_assert_uint_gt(*t2, *t1);
	sim_run_for(s, 20);
	ck_assert_uint_eq(term_at(s, 5, 2), *t2);
	ck_assert_uint_eq(status_of(s, 3).last_index, 1);

	/* (c) S5 crashes; S1 restarts and is elected by S1, S3, S4; it replicates index 2 (term t1) to S3
	 * and S4, which acknowledge it: the old-term entry is now on a majority and the leader knows it,
	 * while its own term's entry (index 3) is held back. (The paper has S2, S3 in S3, S4's place;
	 * here S2 holds the entry too but stays cut off, so the leader's count is exactly S1, S3, S4.) */
	sim_crash(s, 5);
	f->drop_apps_from_5 = false;
	f->hold_index3 = true;
	sim_heal(s);
	sim_isolate(s, 2);
	sim_restart(s, 1);
	campaign_until_leader(s, 1);
	sim_run_for(s, 200);
	assert_ok(s);
}

START_TEST(figure8_old_term_entry_not_committed)
{
	sim_t *s = cluster(8, 5, 0, tune_figure8);
	fig8_filter_t f = {.s = s};
	uint64_t t1, t2;
	figure8_prefix(s, &f, &t1, &t2);
	uint64_t t3 = status_of(s, 1).term;
	ck_assert_uint_gt(t3, t2);
	/* the situation of Fig. 8 (c): (2, t1) on S1, S3, S4, acknowledged to the leader, a majority... */
	ck_assert_uint_eq(term_at(s, 1, 2), t1);
	ck_assert_uint_eq(term_at(s, 3, 2), t1);
	ck_assert_uint_eq(term_at(s, 4, 2), t1);
	ck_assert_uint_eq(term_at(s, 1, 3), t3);
	ck_assert_uint_eq(status_of(s, 3).last_index, 2);
	ck_assert_uint_eq(status_of(s, 4).last_index, 2);
	raft_status_t ls = status_of(s, 1);
	ck_assert_uint_eq(ls.n_peers, 4);
	uint32_t acked2 = 0;
	for (uint32_t i = 0; i < ls.n_peers; i++)
		acked2 += ls.peers[i].match == 2;
	ck_assert_uint_eq(acked2, 2);
	/* ...and still not committed: the leader counts replicas only for entries of its own term. */
	for (uint64_t id = 1; id <= 4; id++)
		ck_assert_uint_eq(status_of(s, id).commit, 1);

	/* (d) S1 crashes; S5 (last term t2 > t1) is elected by S2, S3, S4 and overwrites index 2. */
	sim_crash(s, 1);
	f.hold_index3 = false;
	sim_heal(s);
	sim_restart(s, 5);
	campaign_until_leader(s, 5);
	applied_ctx_t a = {.index = 3, .nodes = {2, 3, 4, 5}, .n = 4};
	ck_assert(sim_run_until(s, 1000, all_applied, &a));
	for (uint64_t id = 2; id <= 5; id++)
		ck_assert_uint_eq(term_at(s, id, 2), t2);
	ck_assert(!sim_acked_index(s, 2)); /* the client of (2, t1) was never told it committed */
	sim_restart(s, 1);
	a = (applied_ctx_t){.index = 3, .nodes = {1, 2, 3, 4, 5}, .n = 5};
	ck_assert(sim_run_until(s, 1000, all_applied, &a));
	ck_assert_uint_eq(term_at(s, 1, 2), t2);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

START_TEST(figure8_variant_e_current_term_commits)
{
	sim_t *s = cluster(88, 5, 0, tune_figure8);
	fig8_filter_t f = {.s = s};
	uint64_t t1, t2;
	figure8_prefix(s, &f, &t1, &t2);
	/* (e) S1 gets its own term's entry (index 3) onto a majority: index 3, and with it (2, t1), commit.
	 */
	f.hold_index3 = false;
	applied_ctx_t a = {.index = 3, .nodes = {1, 3, 4}, .n = 3};
	ck_assert(sim_run_until(s, 1000, all_applied, &a));
	sim_crash(s, 1);
	sim_heal(s);
	sim_restart(s, 5);
	/* S5 can no longer win: S3 and S4 hold a later last term. */
	campaign(s, 5);
	sim_run_for(s, 300);
	assert_ok(s);
	ck_assert_int_ne(status_of(s, 5).role, RAFT_LEADER);
	campaign_until_leader(s, 3);
	sim_restart(s, 1);
	uint64_t last = propose_acked(s, 3, 3);
	wait_applied(s, last, 5, 2000);
	for (uint64_t id = 1; id <= 5; id++)
		ck_assert_uint_eq(term_at(s, id, 2), t1);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

/* ------------------------------------------------------------------ pre-vote */

static void tune_no_prevote(sim_opts_t *o) { o->cfg.pre_vote = false; }

/* Isolates a follower for many election timeouts, heals, and returns how far the term moved. */
static uint64_t isolated_follower_term_bump(uint64_t seed, void (*tune)(sim_opts_t *o), bool *same_leader)
{
	sim_t *s = cluster(seed, 3, 0, tune);
	uint64_t lead = elect(s);
	propose_acked(s, lead, 5);
	uint64_t term0 = status_of(s, lead).term;
	uint64_t f = lead % 3 + 1;
	sim_isolate(s, f);
	sim_run_for(s, 3000); /* ~15 election timeouts */
	uint64_t f_term = status_of(s, f).term;
	if (tune == NULL) {
		ck_assert_uint_eq(f_term, term0); /* pre-vote never succeeded, the term never moved */
		ck_assert_int_ne(status_of(s, f).role, RAFT_CANDIDATE);
	}
	ck_assert_uint_eq(sim_leader(s), lead);
	sim_heal(s);
	sim_run_for(s, 1000);
	assert_ok(s);
	uint64_t lead2 = elect(s);
	*same_leader = lead2 == lead;
	uint64_t bump = status_of(s, lead2).term - term0;
	uint64_t last = propose_acked(s, lead2, 3);
	wait_applied(s, last, 3, 2000);
	ck_assert(sim_check_final(s));
	sim_free(s);
	return bump;
}

START_TEST(prevote_partitioned_node_does_not_disrupt)
{
	bool same = false;
	uint64_t bump = isolated_follower_term_bump(21, NULL, &same);
	ck_assert_uint_eq(bump, 0);
	ck_assert(same);
	/* Without pre-vote the isolated node's term runs away and its return deposes the leader. */
	uint64_t bump_without = isolated_follower_term_bump(21, tune_no_prevote, &same);
	ck_assert_uint_gt(bump_without, 5);
}
END_TEST

/* ------------------------------------------------------------------ check-quorum */

static void tune_no_check_quorum(sim_opts_t *o) { o->cfg.check_quorum = false; }

START_TEST(check_quorum_partitioned_leader_steps_down)
{
	sim_t *s = cluster(31, 3, 0, NULL);
	uint64_t lead = elect(s);
	propose_acked(s, lead, 3);
	sim_isolate(s, lead);
	/* within two election timeouts (plus one to notice) the old leader gives up */
	sim_run_for(s, 3 * 10 * TICK_MS);
	ck_assert_int_ne(status_of(s, lead).role, RAFT_LEADER);
	ck_assert(sim_run_until(s, 2000, has_leader, NULL));
	uint64_t lead2 = sim_leader(s);
	ck_assert_uint_ne(lead2, lead);
	ck_assert_uint_gt(status_of(s, lead2).term, status_of(s, lead).term);
	assert_ok(s);
	sim_free(s);

	/* Without check-quorum the isolated leader keeps believing it leads. */
	s = cluster(31, 3, 0, tune_no_check_quorum);
	lead = elect(s);
	propose_acked(s, lead, 3);
	sim_isolate(s, lead);
	sim_run_for(s, 2000);
	ck_assert_int_eq(status_of(s, lead).role, RAFT_LEADER);
	assert_ok(s);
	sim_free(s);
}
END_TEST

/* ------------------------------------------------------------------ ReadIndex */

static bool read_done(sim_t *s, void *ctx) { return sim_stats(s)->reads_served >= *(uint64_t *)ctx; }

START_TEST(read_index_is_linearizable)
{
	sim_t *s = cluster(41, 3, 0, NULL);
	uint64_t lead = elect(s);
	uint64_t last = propose_acked(s, lead, 10);
	/* on the leader: index >= every acknowledged commit (the harness checks each answer too) */
	ck_assert_int_gt(sim_read(s, lead), 0);
	uint64_t want = 1;
	ck_assert(sim_run_until(s, 500, read_done, &want));
	ck_assert_uint_ge(sim_last_read_index(s), last);
	/* through a follower: forwarded to the leader and answered back */
	uint64_t f = lead % 3 + 1;
	last = propose_acked(s, lead, 4);
	ck_assert_int_gt(sim_read(s, f), 0);
	want = 2;
	ck_assert(sim_run_until(s, 500, read_done, &want));
	ck_assert_uint_ge(sim_last_read_index(s), last);
	/* several reads issued together are confirmed by one heartbeat round */
	for (int i = 0; i < 5; i++)
		ck_assert_int_gt(sim_read(s, lead), 0);
	want = 7;
	ck_assert(sim_run_until(s, 500, read_done, &want));

	/* a partitioned leader never answers, while the majority commits more */
	sim_isolate(s, lead);
	ck_assert_int_gt(sim_read(s, lead), 0);
	uint64_t served = sim_stats(s)->reads_served;
	ck_assert(sim_run_until(s, 2000, leader_other_than, &lead));
	uint64_t lead2 = sim_leader(s);
	ck_assert_uint_ne(lead2, lead);
	propose_acked(s, lead2, 5);
	sim_run_for(s, 500);
	ck_assert_uint_eq(sim_stats(s)->reads_served, served);
	assert_ok(s);
	sim_heal(s);

	/* a fresh leader answers only once its term's no-op committed: index >= that no-op */
	last = propose_acked(s, lead2, 3);
	uint64_t target = lead2 % 3 + 1;
	ck_assert_int_eq(raft_core_transfer_leader(sim_core(s, lead2), target), 0);
	sim_drain(s, lead2);
	ck_assert(sim_run_until(s, 1000, leader_is, &target));
	raft_status_t st = status_of(s, target);
	ck_assert_uint_lt(st.commit, st.last_index); /* the no-op is not committed yet */
	uint64_t noop = st.last_index;
	ck_assert_int_gt(sim_read(s, target), 0);
	want = sim_stats(s)->reads_served + 1;
	ck_assert(sim_run_until(s, 1000, read_done, &want));
	ck_assert_uint_ge(sim_last_read_index(s), noop);
	ck_assert_uint_ge(sim_last_read_index(s), last);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

START_TEST(read_index_stale_leader_never_answers)
{
	/* Without check-quorum a partitioned leader keeps believing it leads; a read it takes after the
	 * new leader acknowledged writes must not be answered with its old commit index. */
	sim_t *s = cluster(43, 3, 0, tune_no_check_quorum);
	uint64_t lead = elect(s);
	propose_acked(s, lead, 5);
	sim_isolate(s, lead);
	ck_assert(sim_run_until(s, 2000, leader_other_than, &lead));
	uint64_t lead2 = sim_leader(s);
	uint64_t acked = propose_acked(s, lead2, 5);
	ck_assert_int_eq(status_of(s, lead).role, RAFT_LEADER);
	ck_assert_uint_lt(status_of(s, lead).commit, acked);
	uint64_t served = sim_stats(s)->reads_served;
	ck_assert_int_gt(sim_read(s, lead), 0);
	sim_run_for(s, 1000);
	assert_ok(s); /* an answer below `acked` would have failed the harness's check */
	ck_assert_uint_eq(sim_stats(s)->reads_served, served);
	sim_heal(s);
	sim_run_for(s, 500);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

/* ------------------------------------------------------------------ leadership transfer */

START_TEST(transfer_leadership)
{
	sim_t *s = cluster(51, 3, 0, NULL);
	uint64_t lead = elect(s);
	propose_acked(s, lead, 5);
	uint64_t term0 = status_of(s, lead).term;
	uint64_t target = lead % 3 + 1;
	raft_core_t *c = sim_core(s, lead);
	ck_assert_int_eq(raft_core_transfer_leader(c, lead), -EINVAL);
	ck_assert_int_eq(raft_core_transfer_leader(c, 9), -EINVAL);
	ck_assert_int_eq(raft_core_transfer_leader(sim_core(s, target), lead), RAFT_ERR_NOT_LEADER);
	ck_assert_int_eq(raft_core_transfer_leader(c, target), 0);
	ck_assert_int_eq(raft_core_transfer_leader(c, target), 0); /* already under way */
	ck_assert_int_eq(raft_core_propose(c, "x", 1), RAFT_ERR_AGAIN);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_REMOVE, target), RAFT_ERR_AGAIN);
	sim_drain(s, lead);
	ck_assert(sim_run_until(s, 500, leader_is, &target));
	ck_assert_uint_eq(status_of(s, target).term, term0 + 1); /* no pre-vote round, no lost term */
	ck_assert_int_eq(status_of(s, lead).role, RAFT_FOLLOWER);
	propose_acked(s, target, 3);

	/* to a follower that is behind: it is caught up first */
	uint64_t lagger = target % 3 + 1;
	sim_isolate(s, lagger);
	uint64_t last = propose_acked(s, target, 30);
	ck_assert_uint_lt(status_of(s, lagger).last_index, last);
	sim_heal(s);
	ck_assert_int_eq(raft_core_transfer_leader(sim_core(s, target), lagger), 0);
	sim_drain(s, target);
	ck_assert(sim_run_until(s, 1000, leader_is, &lagger));
	last = propose_acked(s, lagger, 3);
	wait_applied(s, last, 3, 1000);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

/* ------------------------------------------------------------------ snapshot install */

static void tune_snapshots(sim_opts_t *o)
{
	o->snap_every = 10;
	o->snap_window_max = 2;
	o->snap_filler_max = 900; /* up to ~15 chunks of 64 bytes */
	o->cfg.snap_chunk_bytes = 64;
}

START_TEST(snapshot_install_far_behind_follower)
{
	sim_t *s = cluster(61, 3, 0, tune_snapshots);
	uint64_t lead = elect(s);
	propose_acked(s, lead, 5);
	uint64_t f = lead % 3 + 1;
	sim_isolate(s, f);
	uint64_t last = propose_acked(s, lead, 150);
	raft_status_t ls = status_of(s, lead), fs = status_of(s, f);
	ck_assert_uint_gt(ls.first_index, fs.last_index + 1); /* what f needs is compacted away */
	uint64_t installs = sim_stats(s)->installs;
	sim_heal(s);
	sim_set_faults(s, 100, 20, 0); /* chunks get lost and duplicated: resent until acknowledged */
	wait_applied(s, last, 3, 5000);
	sim_set_faults(s, 0, 0, 0);
	ck_assert_uint_gt(sim_stats(s)->installs, installs);
	ck_assert_uint_gt(status_of(s, f).snap_index, fs.last_index);
	/* it keeps up from the log afterwards, and survives a restart from its installed snapshot */
	last = propose_acked(s, lead, 20);
	wait_applied(s, last, 3, 2000);
	sim_crash(s, f);
	sim_restart(s, f);
	last = propose_acked(s, sim_leader(s), 5);
	wait_applied(s, last, 3, 2000);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

/* ------------------------------------------------------------------ membership */

static bool conf_committed(sim_t *s, void *ctx)
{
	uint64_t idx = (uint64_t) * (int64_t *)ctx;
	for (uint64_t id = 1; id <= sim_n_nodes(s); id++)
		if (sim_up(s, id) && status_of(s, id).role == RAFT_LEADER && status_of(s, id).commit >= idx)
			return true;
	return false;
}

START_TEST(membership_add_learner_promote_remove)
{
	sim_t *s = cluster(71, 3, 1, NULL);
	uint64_t lead = elect(s);
	propose_acked(s, lead, 5);
	raft_core_t *c = sim_core(s, lead);
	ck_assert_int_eq(raft_core_campaign(sim_core(s, 4)), -EPERM);                 /* not a member yet */
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, 4), -ENOENT); /* learner first */
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 0), -EINVAL);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, lead), -EEXIST);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_REMOVE, 7), -ENOENT);
	ck_assert_int_eq(raft_core_propose_conf(sim_core(s, lead % 3 + 1), RAFT_CONF_ADD_LEARNER, 4),
	                 RAFT_ERR_NOT_LEADER);

	/* 4 joins as a learner while behind; promotion waits until it has caught up */
	sim_isolate(s, 4);
	int64_t idx = raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 4);
	ck_assert_int_gt(idx, 0);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_REMOVE, 4), RAFT_ERR_BUSY); /* one at a time */
	sim_drain(s, lead);
	ck_assert(sim_run_until(s, 1000, conf_committed, &idx));
	ck_assert(raft_conf_is_learner(conf_of(s, lead), 4));
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, 4), -EEXIST);
	uint64_t last = propose_acked(s, lead, 20);
	ck_assert_int_eq(raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, 4), RAFT_ERR_AGAIN);
	sim_heal(s);
	applied_ctx_t a = {.index = last, .nodes = {4}, .n = 1};
	ck_assert(sim_run_until(s, 2000, all_applied, &a));
	ck_assert(!raft_conf_is_voter(conf_of(s, 4), 4)); /* a learner never campaigns */
	ck_assert_int_eq(raft_core_campaign(sim_core(s, 4)), -EPERM);
	sim_run_for(s, 50);
	idx = raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, 4);
	ck_assert_int_gt(idx, 0);
	sim_drain(s, lead);
	ck_assert(sim_run_until(s, 1000, conf_committed, &idx));
	wait_applied(s, (uint64_t)idx, 4, 1000);
	for (uint64_t id = 1; id <= 4; id++)
		ck_assert_uint_eq(status_of(s, id).conf.n_voters, 4);

	/* now a quorum is 3 of 4: with two voters isolated nothing commits */
	uint64_t others[2], k = 0;
	for (uint64_t id = 1; id <= 4; id++)
		if (id != lead && k < 2) others[k++] = id;
	sim_isolate(s, others[0]);
	sim_isolate(s, others[1]);
	int64_t blocked = sim_propose(s, lead);
	ck_assert_int_gt(blocked, 0);
	sim_run_for(s, 100);
	ck_assert_uint_lt(status_of(s, lead).commit, (uint64_t)blocked);
	sim_heal(s);
	ck_assert(sim_run_until(s, 3000, has_leader, NULL));
	lead = sim_leader(s);
	propose_acked(s, lead, 3);

	/* remove the leader itself: it steps down once the change commits, the rest go on */
	c = sim_core(s, lead);
	idx = raft_core_propose_conf(c, RAFT_CONF_REMOVE, lead);
	ck_assert_int_gt(idx, 0);
	sim_drain(s, lead);
	uint64_t old = lead;
	for (int t = 0; t < 1000 && status_of(s, old).role == RAFT_LEADER; t++)
		sim_run_for(s, 1);
	ck_assert_int_ne(status_of(s, old).role, RAFT_LEADER);
	ck_assert(!raft_conf_is_voter(conf_of(s, old), old));
	ck_assert_int_eq(raft_core_campaign(sim_core(s, old)), -EPERM);
	ck_assert(sim_run_until(s, 3000, has_leader, NULL));
	lead = sim_leader(s);
	ck_assert_uint_ne(lead, old);
	ck_assert_uint_eq(status_of(s, lead).conf.n_voters, 3);
	last = propose_acked(s, lead, 5);
	ck_assert_int_eq(raft_core_propose_conf(sim_core(s, lead), RAFT_CONF_REMOVE, old), -ENOENT);
	sim_run_for(s, 500); /* the removed node stays quiet (pre-vote / lease) */
	ck_assert_uint_eq(sim_leader(s), lead);
	ck_assert(sim_check_final(s));
	sim_free(s);
}
END_TEST

static Suite *scenarios_suite(void)
{
	Suite *su = suite_create("raft_scenarios");
	TCase *tc = tcase_create("scenarios");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, figure8_old_term_entry_not_committed);
	tcase_add_test(tc, figure8_variant_e_current_term_commits);
	tcase_add_test(tc, prevote_partitioned_node_does_not_disrupt);
	tcase_add_test(tc, check_quorum_partitioned_leader_steps_down);
	tcase_add_test(tc, read_index_is_linearizable);
	tcase_add_test(tc, read_index_stale_leader_never_answers);
	tcase_add_test(tc, transfer_leadership);
	tcase_add_test(tc, snapshot_install_far_behind_follower);
	tcase_add_test(tc, membership_add_learner_promote_remove);
	suite_add_tcase(su, tc);
	return su;
}

int main(void)
{
	SRunner *sr = srunner_create(scenarios_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
