/* raft_sim.c - randomized deterministic simulation of the Raft core over many seeds.
 *
 * Each seed picks a cluster (3 or 5 voters, sometimes a spare node to add), network and disk fault
 * rates, core settings (window sizes, message sizes, snapshot cadence, pre-vote/check-quorum), then
 * runs a chaos phase in which clients propose and read continually while the schedule crashes and
 * restarts nodes (losing unsynced writes), partitions and heals the network, transfers leadership,
 * forces elections and changes membership (add learner, promote, remove). The harness checks the
 * safety properties after every event (raft_sim_harness.h). Then everything is healed and the run
 * must elect a leader and commit and apply a new entry on every member within a bounded simulated
 * time, with every acknowledged proposal applied everywhere.
 *
 *   raft_sim --seeds 1:2500          run seeds 1..2500, print failing seeds, exit 1 on any failure
 *   raft_sim --seed 1234 --verbose   replay one seed with a full event trace on stderr
 */
#include "raft_sim_harness.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAL_LIVENESS_MS 10000u /* after healing: leader elected, entry committed and applied */

typedef struct plan {
	uint64_t rng;
	uint64_t down_until[SIM_NODES_MAX + 1];
	bool membership;
	uint64_t spare;
	bool removed_once;
	uint32_t chaos_permille; /* chance of a fault per scheduler step; high in "storm" seeds */
	uint64_t down_max_ms;
} plan_t;

static uint64_t prng(plan_t *p)
{
	uint64_t z = (p->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t prange(plan_t *p, uint64_t lo, uint64_t hi) { return lo + prng(p) % (hi - lo + 1); }

static bool pchance(plan_t *p, uint32_t permille) { return prng(p) % 1000 < permille; }

static void configure(plan_t *p, sim_opts_t *o, uint64_t seed)
{
	uint32_t voters = seed % 2 ? 5 : 3;
	sim_opts_default(o, seed, voters);
	p->membership = prange(p, 0, 2) == 0;
	if (p->membership) {
		o->n_spare = 1;
		p->spare = voters + 1;
	}
	bool storm = pchance(p, 250); /* leader churn over divergent logs: Figure-8-like histories */
	p->chaos_permille = storm ? (uint32_t)prange(p, 200, 500) : 70;
	p->down_max_ms = storm ? 150 : 600;
	o->fifo_links = pchance(p, 500);
	o->delay_min_ms = (uint32_t)prange(p, 0, 2);
	o->delay_max_ms = o->delay_min_ms + (uint32_t)prange(p, 1, 10);
	o->drop_permille = (uint32_t)prange(p, 0, 100);
	o->dup_permille = (uint32_t)prange(p, 0, 60);
	o->long_delay_permille = (uint32_t)prange(p, 0, 30);
	o->long_delay_ms = (uint32_t)prange(p, 20, 300);
	o->fsync_min_ms = (uint32_t)prange(p, 0, 2);
	o->fsync_max_ms = o->fsync_min_ms + (uint32_t)(pchance(p, 200) ? prange(p, 5, 30) : prange(p, 0, 6));
	o->crash_leak_permille = (uint32_t)prange(p, 0, 800);
	o->snap_every = pchance(p, 250) ? 0 : (uint32_t)prange(p, 4, 40);
	o->snap_window_max = (uint32_t)prange(p, 0, 10);
	o->snap_filler_max = (uint32_t)prange(p, 0, 600);
	raft_config_t *c = &o->cfg;
	c->heartbeat_ticks = (uint32_t)prange(p, 1, 3);
	c->election_ticks = (uint32_t)prange(p, 8, 15);
	c->inflight_max = (uint32_t)prange(p, 1, 8);
	c->msg_entries_max = (uint32_t)prange(p, 1, 8);
	c->msg_bytes_max = (uint32_t)prange(p, 32, 1024);
	c->uncommitted_bytes_max = prange(p, 256, 1u << 20);
	c->snap_chunk_bytes = (uint32_t)prange(p, 8, 256);
	c->snap_resend_ticks = (uint32_t)prange(p, 2, 6);
	c->reads_max = (uint32_t)prange(p, 4, 64);
	c->pre_vote = !pchance(p, 100);
	c->check_quorum = !pchance(p, 100);
}

static uint64_t random_node(sim_t *s, plan_t *p) { return prange(p, 1, sim_n_nodes(s)); }

static uint64_t random_up(sim_t *s, plan_t *p)
{
	for (int tries = 0; tries < 16; tries++) {
		uint64_t id = random_node(s, p);
		if (sim_up(s, id)) return id;
	}
	return 0;
}

static void membership_step(sim_t *s, plan_t *p, uint64_t lead)
{
	raft_core_t *c = sim_core(s, lead);
	raft_status_t st;
	raft_core_status(c, &st);
	if (!raft_conf_is_voter(&st.conf, p->spare) && !raft_conf_is_learner(&st.conf, p->spare)) {
		if (!p->removed_once) raft_core_propose_conf(c, RAFT_CONF_ADD_LEARNER, p->spare);
	} else if (raft_conf_is_learner(&st.conf, p->spare)) {
		raft_core_propose_conf(c, RAFT_CONF_ADD_VOTER, p->spare);
	} else if (!p->removed_once && st.conf.n_voters > 1) {
		uint64_t victim = st.conf.voters[prange(p, 0, st.conf.n_voters - 1)];
		if (victim != p->spare && raft_core_propose_conf(c, RAFT_CONF_REMOVE, victim) > 0)
			p->removed_once = true;
	}
	sim_drain(s, lead);
}

static void chaos_step(sim_t *s, plan_t *p)
{
	uint64_t lead = sim_leader(s);
	uint64_t n = sim_n_nodes(s);
	switch (prange(p, 0, 9)) {
	case 0:
	case 1: { /* crash: often one with writes in flight, the moment that loses promises */
		uint64_t id = random_up(s, p);
		if (pchance(p, 600))
			for (uint64_t k = 1; k <= n; k++)
				if (sim_up(s, k) && sim_pending_writes(s, k) > 0) id = k;
		if (id == 0) break;
		sim_crash(s, id);
		p->down_until[id] = sim_now(s) + prange(p, 10, p->down_max_ms);
		break;
	}
	case 2: { /* partition into two random sides */
		uint64_t side[SIM_NODES_MAX];
		uint32_t k = 0;
		for (uint64_t id = 1; id <= n; id++)
			if (pchance(p, 500)) side[k++] = id;
		sim_partition(s, side, k);
		break;
	}
	case 3:
		if (lead != 0) sim_isolate(s, lead);
		break;
	case 4:
		sim_heal(s);
		break;
	case 5: { /* one-way link failures */
		uint64_t a = random_node(s, p), b = random_node(s, p);
		if (a != b) sim_link_set(s, a, b, false);
		break;
	}
	case 6:
		if (lead != 0) {
			raft_status_t st;
			raft_core_status(sim_core(s, lead), &st);
			if (st.conf.n_voters > 0) {
				raft_core_transfer_leader(sim_core(s, lead),
				                          st.conf.voters[prange(p, 0, st.conf.n_voters - 1)]);
				sim_drain(s, lead);
			}
		}
		break;
	case 7: {
		uint64_t id = random_up(s, p);
		if (id != 0) {
			raft_core_campaign(sim_core(s, id));
			sim_drain(s, id);
		}
		break;
	}
	case 8:
		if (p->membership && lead != 0) membership_step(s, p, lead);
		break;
	default:
		break;
	}
}

static void clients_step(sim_t *s, plan_t *p)
{
	/* clients talk to every node that believes it leads, so stale leaders grow divergent tails */
	for (uint64_t id = 1; id <= sim_n_nodes(s); id++) {
		if (!sim_up(s, id)) continue;
		raft_status_t st;
		sim_status(s, id, &st);
		int proposals = st.role == RAFT_LEADER ? (int)prange(p, 0, 3) : 0;
		for (int i = 0; i < proposals && sim_up(s, id); i++)
			sim_propose(s, id);
	}
	if (pchance(p, 80)) {
		uint64_t id = random_up(s, p);
		if (id != 0) sim_propose(s, id); /* a client that picked a follower: refused */
	}
	if (pchance(p, 150)) {
		uint64_t id = random_up(s, p);
		if (id != 0) sim_read(s, id);
	}
}

static void restarts_due(sim_t *s, plan_t *p, bool all)
{
	for (uint64_t id = 1; id <= sim_n_nodes(s); id++)
		if (!sim_up(s, id) && (all || sim_now(s) >= p->down_until[id])) sim_restart(s, id);
}

typedef struct settle {
	int64_t marker;
	uint64_t marker_term;
} settle_t;

static bool settled(sim_t *s, void *ctx)
{
	settle_t *st = ctx;
	uint64_t lead = sim_leader(s);
	if (lead == 0) return false;
	raft_status_t ls;
	sim_status(s, lead, &ls);
	if (st->marker <= 0 || ls.term != st->marker_term) {
		/* (re)propose the marker on the current leader */
		st->marker = sim_propose(s, lead);
		st->marker_term = ls.term;
		return false;
	}
	if (!sim_acked_index(s, (uint64_t)st->marker)) return false;
	for (uint64_t id = 1; id <= sim_n_nodes(s); id++) {
		bool member = raft_conf_is_voter(&ls.conf, id) || raft_conf_is_learner(&ls.conf, id);
		if (member && (!sim_up(s, id) || sim_applied(s, id) < sim_max_acked(s))) return false;
	}
	return true;
}

static int run_seed(uint64_t seed, bool verbose, sim_stats_t *total)
{
	plan_t p = {.rng = seed * 0x2545F4914F6CDD1Dull + 7};
	sim_opts_t o;
	configure(&p, &o, seed);
	o.verbose = verbose;
	sim_t *s = sim_new(&o);
	uint64_t chaos_ms = prange(&p, 1000, 2500);
	while (!sim_failed(s) && sim_now(s) < chaos_ms) {
		sim_run_for(s, prange(&p, 1, 12));
		restarts_due(s, &p, false);
		clients_step(s, &p);
		if (pchance(&p, p.chaos_permille)) chaos_step(s, &p);
		if (pchance(&p, 20))
			sim_set_faults(s, (uint32_t)prange(&p, 0, 150), (uint32_t)prange(&p, 0, 60),
			               (uint32_t)prange(&p, 0, 30));
	}
	/* heal: every node up, every link up, no more faults; then liveness within a bound */
	sim_heal(s);
	sim_set_faults(s, 0, 0, 0);
	restarts_due(s, &p, true);
	settle_t st = {0};
	uint64_t heal_at = sim_now(s);
	bool ok = !sim_failed(s) && sim_run_until(s, HEAL_LIVENESS_MS, settled, &st);
	if (!ok && !sim_failed(s))
		sim_fail(s, "liveness: no leader committing and applying everywhere within %u ms of healing",
		         HEAL_LIVENESS_MS);
	if (ok) ok = sim_check_final(s);
	const sim_stats_t *ss = sim_stats(s);
	if (verbose)
		fprintf(stderr,
		        "seed %" PRIu64 ": voters %u spare %u, proposals %" PRIu64 " acked %" PRIu64
		        " reads %" PRIu64 "/%" PRIu64 " elections %" PRIu64 " max term %" PRIu64
		        " commit %" PRIu64 " snapshots %" PRIu64 " installs %" PRIu64 " crashes %" PRIu64
		        ", settled %" PRIu64 " ms\n",
		        seed, o.n_voters, o.n_spare, ss->proposals, ss->acked, ss->reads_served, ss->reads,
		        ss->elections, ss->max_term, ss->max_commit, ss->snapshots, ss->installs, ss->crashes,
		        sim_now(s) - heal_at);
	total->proposals += ss->proposals;
	total->acked += ss->acked;
	total->reads += ss->reads;
	total->reads_served += ss->reads_served;
	total->elections += ss->elections;
	total->installs += ss->installs;
	total->snapshots += ss->snapshots;
	total->crashes += ss->crashes;
	total->delivered += ss->delivered;
	total->conf_changes += ss->conf_changes;
	total->truncations += ss->truncations;
	if (sim_now(s) - heal_at > total->max_settle_ms) total->max_settle_ms = sim_now(s) - heal_at;
	if (!ok) printf("FAIL %s\n  replay: raft_sim --seed %" PRIu64 " --verbose\n", sim_failure(s), seed);
	sim_free(s);
	return ok ? 0 : 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: raft_sim [--seed N | --seeds FIRST:LAST] [--verbose]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	uint64_t first = 1, last = 100;
	bool verbose = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
			first = last = strtoull(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--seeds") == 0 && i + 1 < argc) {
			if (sscanf(argv[++i], "%" SCNu64 ":%" SCNu64, &first, &last) != 2 || last < first)
				usage();
		} else if (strcmp(argv[i], "--verbose") == 0 || strcmp(argv[i], "-v") == 0) {
			verbose = true;
		} else {
			usage();
		}
	}
	sim_stats_t total = {0};
	uint64_t failures = 0;
	for (uint64_t seed = first; seed <= last; seed++)
		failures += (uint64_t)run_seed(seed, verbose, &total);
	printf("raft_sim seeds %" PRIu64 "..%" PRIu64 ": %" PRIu64 " failed; proposals %" PRIu64
	       " acked %" PRIu64 " reads %" PRIu64 "/%" PRIu64 " elections %" PRIu64 " snapshots %" PRIu64
	       " installs %" PRIu64 " crashes %" PRIu64 " truncations %" PRIu64 " messages %" PRIu64
	       " conf changes %" PRIu64 "; slowest settle after heal %" PRIu64 " ms\n",
	       first, last, failures, total.proposals, total.acked, total.reads_served, total.reads,
	       total.elections, total.snapshots, total.installs, total.crashes, total.truncations,
	       total.delivered, total.conf_changes, total.max_settle_ms);
	return failures == 0 ? 0 : 1;
}
