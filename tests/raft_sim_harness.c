/* raft_sim_harness.c - the simulated cluster, network, disks and safety checks of
 * raft_sim_harness.h.
 *
 * One priority queue of events ordered by (time, sequence) drives everything, so a run is a pure
 * function of the seed and the calls the test makes. Each node follows core.h's Ready contract the
 * way raft/node.c does: entries and hard state go into a FIFO of writes that complete after a random
 * fsync delay; messages that must wait for durability ride with the write and leave when it
 * completes; committed entries are applied to a state machine whose whole state is a hash chain
 * (index, term, data), so any divergence shows up as a different chain at the same index.
 *
 * Global tables (indexed by log index) record what every node wrote, committed and applied; each
 * new observation is checked against them, which makes the per-step checks incremental (linear in
 * the new entries) instead of comparing whole logs after every event.
 */
#include "raft_sim_harness.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SNAP_MAGIC 0x534e4150534d4953ull /* "SIMSNAPS" */
#define SNAP_HEADER_BYTES 40u
#define DRAIN_ROUNDS_MAX 10000u
#define PAYLOAD_EXTRA_MAX 48u

enum { EV_TICK, EV_DELIVER, EV_DISK };

typedef struct event {
	uint64_t at, seq;
	uint8_t kind;
	uint64_t node, gen;
	uint64_t from;
	uint8_t *buf;
	size_t len;
} event_t;

typedef struct dlog {
	uint64_t base_index, base_term;
	raft_entry_t *v;
	size_t n, cap;
} dlog_t;

typedef struct write_rec {
	struct write_rec *next;
	bool install;
	raft_snapshot_meta_t meta; /* install */
	uint8_t *snap_bytes;       /* install */
	bool has_hs;
	raft_hard_state_t hs;
	uint64_t first_index;
	raft_entry_t *ents;
	size_t n_ents;
	raft_msg_t *msgs; /* after-persist messages, no entries or chunks */
	size_t n_msgs;
} write_rec_t;

typedef struct pending_prop {
	uint64_t gen, index, term, hash;
} pending_prop_t;

typedef struct node {
	uint64_t id;
	bool up;
	uint64_t gen;
	raft_core_t *core;
	/* durable */
	raft_hard_state_t d_hs;
	raft_snapshot_meta_t d_snap;
	uint8_t *d_snap_bytes;
	dlog_t d_log;
	/* volatile */
	write_rec_t *wq_head, *wq_tail;
	uint64_t disk_busy_until;
	uint8_t *in_snap;
	size_t in_snap_len, in_snap_cap;
	uint64_t sm_applied, sm_chain;
	pending_prop_t *props;
	size_t n_props, cap_props;
	/* what the checks saw last in this lifetime */
	uint64_t seen_commit, seen_term, seen_leader_term, seen_last;
	uint8_t seen_role;
} node_t;

typedef struct lm_rec {
	uint64_t term, hash, prev_term;
	uint8_t type;
} lm_rec_t;

typedef struct lm_slot {
	lm_rec_t *v;
	uint32_t n, cap;
} lm_slot_t;

typedef struct apply_rec {
	uint64_t term, hash, chain;
} apply_rec_t;

typedef struct pending_read {
	uint64_t ctx, min_index;
} pending_read_t;

struct sim {
	sim_opts_t o;
	uint64_t rng;
	uint64_t now, seq;
	node_t nodes[SIM_NODES_MAX + 1];
	uint32_t n_nodes;
	bool link[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1];
	uint64_t link_busy_until[SIM_NODES_MAX + 1][SIM_NODES_MAX + 1]; /* fifo_links */
	event_t *heap;
	size_t heap_n, heap_cap;
	raft_entry_t dec_entries[RAFT_MSG_ENTRIES_MAX];
	sim_drop_fn filter;
	void *filter_ctx;

	/* global check tables, indexed by log index / term */
	lm_slot_t *lm;
	uint64_t *committed_term; /* term of the entry committed at an index */
	uint64_t *commit_in_term; /* lowest term of a node that saw it committed (its leader's term) */
	apply_rec_t *applied;
	uint64_t idx_cap;
	uint64_t *leader_of_term;
	uint64_t term_cap;
	uint64_t max_committed;
	uint64_t *acked; /* indexes of acknowledged proposals */
	uint64_t *acked_hash;
	size_t n_acked, cap_acked;
	uint64_t max_acked;
	pending_read_t *reads;
	size_t n_reads, cap_reads;
	uint64_t last_read_index;
	uint64_t payload_seq;

	sim_stats_t st;
	char failure[512];
	bool failed;
};

/* ------------------------------------------------------------------ basics */

static uint64_t rnd(sim_t *s)
{
	uint64_t z = (s->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t rnd_range(sim_t *s, uint64_t lo, uint64_t hi)
{
	assert(lo <= hi);
	return lo + rnd(s) % (hi - lo + 1);
}

static bool chance(sim_t *s, uint32_t permille) { return permille > 0 && rnd(s) % 1000 < permille; }

static uint64_t fnv(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 1099511628211ull;
	return h;
}

static uint64_t mix(uint64_t a, uint64_t b)
{
	uint64_t z = a ^ (b + 0x9E3779B97F4A7C15ull + (a << 6) + (a >> 2));
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t chain_step(uint64_t chain, const raft_entry_t *e)
{
	return mix(mix(mix(chain, e->index), e->term), mix(e->type, fnv(e->data, e->len)));
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);
	if (q == NULL && n > 0) {
		fprintf(stderr, "raft_sim: out of memory\n");
		abort();
	}
	return q;
}

static void *xmalloc(size_t n) { return xrealloc(NULL, n == 0 ? 1 : n); }

static void trace(sim_t *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void trace(sim_t *s, const char *fmt, ...)
{
	if (!s->o.verbose) return;
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "[%6llu] ", (unsigned long long)s->now);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

void sim_fail(sim_t *s, const char *fmt, ...)
{
	if (s->failed) return;
	s->failed = true;
	va_list ap;
	va_start(ap, fmt);
	int k = snprintf(s->failure, sizeof(s->failure),
	                 "seed %llu t=%llums: ", (unsigned long long)s->o.seed, (unsigned long long)s->now);
	if (k > 0 && (size_t)k < sizeof(s->failure))
		vsnprintf(s->failure + k, sizeof(s->failure) - (size_t)k, fmt, ap);
	va_end(ap);
	if (s->o.verbose) fprintf(stderr, "FAILURE: %s\n", s->failure);
}

bool sim_failed(const sim_t *s) { return s->failed; }
const char *sim_failure(const sim_t *s) { return s->failed ? s->failure : ""; }
const sim_stats_t *sim_stats(const sim_t *s) { return &s->st; }
uint64_t sim_now(const sim_t *s) { return s->now; }
uint32_t sim_n_nodes(const sim_t *s) { return s->n_nodes; }
uint64_t sim_max_acked(const sim_t *s) { return s->max_acked; }
uint64_t sim_last_read_index(const sim_t *s) { return s->last_read_index; }

static node_t *node_of(sim_t *s, uint64_t id)
{
	assert(id >= 1 && id <= s->n_nodes);
	return &s->nodes[id];
}

bool sim_up(const sim_t *s, uint64_t id) { return id >= 1 && id <= s->n_nodes && s->nodes[id].up; }

raft_core_t *sim_core(sim_t *s, uint64_t id) { return node_of(s, id)->up ? node_of(s, id)->core : NULL; }

uint64_t sim_applied(const sim_t *s, uint64_t id) { return s->nodes[id].sm_applied; }

void sim_status(sim_t *s, uint64_t id, raft_status_t *st)
{
	node_t *n = node_of(s, id);
	assert(n->up);
	raft_core_status(n->core, st);
}

/* ------------------------------------------------------------------ global tables */

static void tables_reserve(sim_t *s, uint64_t index)
{
	if (index < s->idx_cap) return;
	uint64_t cap = s->idx_cap ? s->idx_cap : 256;
	while (cap <= index)
		cap *= 2;
	s->lm = xrealloc(s->lm, cap * sizeof(*s->lm));
	s->committed_term = xrealloc(s->committed_term, cap * sizeof(uint64_t));
	s->commit_in_term = xrealloc(s->commit_in_term, cap * sizeof(uint64_t));
	s->applied = xrealloc(s->applied, cap * sizeof(*s->applied));
	for (uint64_t i = s->idx_cap; i < cap; i++) {
		s->lm[i] = (lm_slot_t){0};
		s->committed_term[i] = 0;
		s->commit_in_term[i] = 0;
		s->applied[i] = (apply_rec_t){0};
	}
	s->idx_cap = cap;
}

static void record_leader(sim_t *s, node_t *n, uint64_t term)
{
	if (term >= s->term_cap) {
		uint64_t cap = s->term_cap ? s->term_cap : 64;
		while (cap <= term)
			cap *= 2;
		s->leader_of_term = xrealloc(s->leader_of_term, cap * sizeof(uint64_t));
		memset(s->leader_of_term + s->term_cap, 0, (cap - s->term_cap) * sizeof(uint64_t));
		s->term_cap = cap;
	}
	if (s->leader_of_term[term] != 0 && s->leader_of_term[term] != n->id)
		sim_fail(s, "election safety: nodes %llu and %llu both lead term %llu",
		         (unsigned long long)s->leader_of_term[term], (unsigned long long)n->id,
		         (unsigned long long)term);
	s->leader_of_term[term] = n->id;
}

/* Log matching, incrementally: an (index, term) names exactly one entry and one previous term. */
static void record_entry(sim_t *s, node_t *n, const raft_entry_t *e)
{
	uint64_t prev_term = 0;
	if (!raft_core_term_at(n->core, e->index - 1, &prev_term)) {
		sim_fail(s, "node %llu: no term for %llu before appended entry", (unsigned long long)n->id,
		         (unsigned long long)(e->index - 1));
		return;
	}
	tables_reserve(s, e->index);
	lm_slot_t *slot = &s->lm[e->index];
	uint64_t h = fnv(e->data, e->len);
	for (uint32_t i = 0; i < slot->n; i++) {
		lm_rec_t *r = &slot->v[i];
		if (r->term != e->term) continue;
		if (r->hash != h || r->type != e->type || r->prev_term != prev_term)
			sim_fail(
			    s,
			    "log matching: node %llu entry (%llu, term %llu) differs from an earlier one "
			    "(prev term %llu vs %llu)",
			    (unsigned long long)n->id, (unsigned long long)e->index,
			    (unsigned long long)e->term, (unsigned long long)prev_term,
			    (unsigned long long)r->prev_term);
		return;
	}
	if (slot->n == slot->cap) {
		slot->cap = slot->cap ? slot->cap * 2 : 2;
		slot->v = xrealloc(slot->v, slot->cap * sizeof(*slot->v));
	}
	slot->v[slot->n++] = (lm_rec_t){.term = e->term, .hash = h, .prev_term = prev_term, .type = e->type};
}

static bool durable_has(const node_t *n, uint64_t index, uint64_t term)
{
	if (n->d_snap.index >= index) return true; /* applied, so committed, so the same entry */
	const dlog_t *l = &n->d_log;
	if (index <= l->base_index || index > l->base_index + l->n) return false;
	return l->v[index - l->base_index - 1].term == term;
}

/* What "committed" means: the entry is durable on a majority of the voters. */
static void check_durable_majority(sim_t *s, node_t *n, const raft_status_t *st)
{
	uint64_t t;
	if (!raft_core_term_at(n->core, st->commit, &t)) return;
	uint32_t have = 0;
	for (uint32_t i = 0; i < st->conf.n_voters; i++) {
		uint64_t v = st->conf.voters[i];
		if (v >= 1 && v <= s->n_nodes && durable_has(&s->nodes[v], st->commit, t)) have++;
	}
	if (have < st->conf.n_voters / 2 + 1)
		sim_fail(s, "leader %llu commits %llu (term %llu) durable on only %u of %u voters",
		         (unsigned long long)n->id, (unsigned long long)st->commit, (unsigned long long)t,
		         have, st->conf.n_voters);
}

/* Commit index moved on n: the newly committed entries must agree with everyone's. */
static void observe_commit(sim_t *s, node_t *n, const raft_status_t *st)
{
	if (st->commit < n->seen_commit) {
		sim_fail(s, "node %llu: commit went back from %llu to %llu", (unsigned long long)n->id,
		         (unsigned long long)n->seen_commit, (unsigned long long)st->commit);
		return;
	}
	if (st->commit > st->last_index) {
		sim_fail(s, "node %llu: commit %llu beyond last index %llu", (unsigned long long)n->id,
		         (unsigned long long)st->commit, (unsigned long long)st->last_index);
		return;
	}
	tables_reserve(s, st->commit);
	for (uint64_t i = n->seen_commit + 1; i <= st->commit; i++) {
		uint64_t t;
		if (s->commit_in_term[i] == 0 || st->term < s->commit_in_term[i])
			s->commit_in_term[i] = st->term;
		if (!raft_core_term_at(n->core, i, &t)) continue; /* covered by an installed snapshot */
		if (s->committed_term[i] == 0) {
			s->committed_term[i] = t;
		} else if (s->committed_term[i] != t) {
			sim_fail(s,
			         "committed entries differ: node %llu committed (%llu, term %llu), "
			         "another node (%llu, term %llu)",
			         (unsigned long long)n->id, (unsigned long long)i, (unsigned long long)t,
			         (unsigned long long)i, (unsigned long long)s->committed_term[i]);
			return;
		}
	}
	if (st->role == RAFT_LEADER && st->commit > n->seen_commit) check_durable_majority(s, n, st);
	n->seen_commit = st->commit;
	if (st->commit > s->max_committed) s->max_committed = st->commit;
	if (st->commit > s->st.max_commit) s->st.max_commit = st->commit;
}

/* Leader completeness: a leader of term T holds every entry committed in a term below T. (A leader
 * of an older term can still appear, on a vote answer delayed past newer elections.) It is enough
 * to look at the highest such index: log matching covers the rest. */
static void check_leader_completeness(sim_t *s, node_t *n, const raft_status_t *st)
{
	uint64_t c = s->max_committed;
	while (c > 0 && s->commit_in_term[c] >= st->term)
		c--;
	if (c == 0) return;
	if (c > st->last_index) {
		sim_fail(
		    s,
		    "leader completeness: node %llu leads term %llu with last index %llu < %llu committed in "
		    "term %llu",
		    (unsigned long long)n->id, (unsigned long long)st->term,
		    (unsigned long long)st->last_index, (unsigned long long)c,
		    (unsigned long long)s->commit_in_term[c]);
		return;
	}
	uint64_t probe = c >= st->first_index ? c : st->first_index - 1;
	uint64_t t;
	if (probe == 0 || !raft_core_term_at(n->core, probe, &t) || s->committed_term[probe] == 0) return;
	if (t != s->committed_term[probe])
		sim_fail(s,
		         "leader completeness: node %llu (term %llu) has term %llu at committed index %llu, "
		         "committed term %llu",
		         (unsigned long long)n->id, (unsigned long long)st->term, (unsigned long long)t,
		         (unsigned long long)probe, (unsigned long long)s->committed_term[probe]);
}

static void observe(sim_t *s, node_t *n)
{
	raft_status_t st;
	raft_core_status(n->core, &st);
	if (st.term < n->seen_term) sim_fail(s, "node %llu: term went back", (unsigned long long)n->id);
	n->seen_term = st.term;
	if (st.term > s->st.max_term) s->st.max_term = st.term;
	observe_commit(s, n, &st);
	if (st.applied > st.commit || n->sm_applied > st.commit)
		sim_fail(s, "node %llu: applied %llu beyond commit %llu", (unsigned long long)n->id,
		         (unsigned long long)n->sm_applied, (unsigned long long)st.commit);
	uint64_t pt;
	if (st.persisted > 0 && raft_core_term_at(n->core, st.persisted, &pt) &&
	    !durable_has(n, st.persisted, pt))
		sim_fail(s, "node %llu: core counts %llu (term %llu) as persisted, the disk does not hold it",
		         (unsigned long long)n->id, (unsigned long long)st.persisted, (unsigned long long)pt);
	if (st.role == RAFT_LEADER && n->seen_leader_term != st.term) {
		n->seen_leader_term = st.term;
		s->st.elections++;
		trace(s, "node %llu becomes LEADER of term %llu (last %llu commit %llu)",
		      (unsigned long long)n->id, (unsigned long long)st.term,
		      (unsigned long long)st.last_index, (unsigned long long)st.commit);
		record_leader(s, n, st.term);
		check_leader_completeness(s, n, &st);
	}
	if (st.role != n->seen_role)
		trace(s, "node %llu: %s -> %s term %llu", (unsigned long long)n->id,
		      raft_role_name(n->seen_role), raft_role_name(st.role), (unsigned long long)st.term);
	n->seen_role = st.role;
}

/* ------------------------------------------------------------------ event queue */

static bool ev_before(const event_t *a, const event_t *b)
{
	return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static void ev_push(sim_t *s, event_t ev)
{
	ev.seq = s->seq++;
	if (s->heap_n == s->heap_cap) {
		s->heap_cap = s->heap_cap ? s->heap_cap * 2 : 256;
		s->heap = xrealloc(s->heap, s->heap_cap * sizeof(*s->heap));
	}
	size_t i = s->heap_n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!ev_before(&ev, &s->heap[p])) break;
		s->heap[i] = s->heap[p];
		i = p;
	}
	s->heap[i] = ev;
}

static event_t ev_pop(sim_t *s)
{
	assert(s->heap_n > 0);
	event_t top = s->heap[0];
	event_t last = s->heap[--s->heap_n];
	size_t i = 0;
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		const event_t *best = &last;
		if (l < s->heap_n && ev_before(&s->heap[l], best)) {
			m = l;
			best = &s->heap[l];
		}
		if (r < s->heap_n && ev_before(&s->heap[r], best)) m = r;
		if (m == i) break;
		s->heap[i] = s->heap[m];
		i = m;
	}
	if (s->heap_n > 0) s->heap[i] = last;
	return top;
}

/* ------------------------------------------------------------------ network */

static void trace_msg(sim_t *s, const char *what, const raft_msg_t *m)
{
	if (!s->o.verbose) return;
	trace(s,
	      "%s %llu->%llu %s term %llu idx %llu lterm %llu commit %llu n %u hint %llu ctx %llu off %llu "
	      "flags %x",
	      what, (unsigned long long)m->from, (unsigned long long)m->to, raft_msg_type_name(m->type),
	      (unsigned long long)m->term, (unsigned long long)m->index, (unsigned long long)m->log_term,
	      (unsigned long long)m->commit, m->n_entries, (unsigned long long)m->hint,
	      (unsigned long long)m->ctx, (unsigned long long)m->offset, m->flags);
}

static bool durable_covers(const node_t *n, uint64_t index)
{
	return n->d_snap.index >= index || n->d_log.base_index + n->d_log.n >= index;
}

/* A message that promises durable state may leave only once the disk has it (core.h contract). */
static void check_promise(sim_t *s, const node_t *n, const raft_msg_t *m)
{
	bool reject = (m->flags & RAFT_MSG_F_REJECT) != 0;
	const raft_hard_state_t *hs = &n->d_hs;
	bool ok = true;
	switch (m->type) {
	case RAFT_MSG_VOTE_RESP:
		ok = reject || hs->term > m->term || (hs->term == m->term && hs->vote == m->to);
		break;
	case RAFT_MSG_VOTE:
		ok = hs->term > m->term || (hs->term == m->term && hs->vote == n->id);
		break;
	case RAFT_MSG_APP_RESP:
		ok = reject || durable_covers(n, m->index);
		break;
	case RAFT_MSG_SNAP_RESP:
		ok = !(m->flags & RAFT_MSG_F_DONE) || durable_covers(n, m->index);
		break;
	default:
		break;
	}
	if (!ok)
		sim_fail(s,
		         "node %llu sends %s (term %llu index %llu) before its disk has it (durable term "
		         "%llu vote "
		         "%llu, log to %llu)",
		         (unsigned long long)n->id, raft_msg_type_name(m->type), (unsigned long long)m->term,
		         (unsigned long long)m->index, (unsigned long long)hs->term,
		         (unsigned long long)hs->vote,
		         (unsigned long long)(n->d_log.base_index + n->d_log.n));
}

static void net_send(sim_t *s, node_t *from, const raft_msg_t *m0)
{
	raft_msg_t m = *m0;
	if (m.to < 1 || m.to > s->n_nodes) return; /* a member id with no simulated node */
	if (m.type == RAFT_MSG_SNAP && m.chunk == NULL && m.chunk_len > 0) {
		/* the application reads the chunk from its snapshot file */
		if (from->d_snap.index != m.snap.index || from->d_snap.size_bytes != m.snap.size_bytes ||
		    from->d_snap_bytes == NULL) {
			s->st.dropped++;
			return;
		}
		m.chunk = from->d_snap_bytes + m.offset;
	}
	check_promise(s, from, &m);
	if (s->filter != NULL && s->filter(s->filter_ctx, &m)) {
		trace_msg(s, "filter-drop", &m);
		s->st.dropped++;
		return;
	}
	if (!s->link[m.from][m.to] || chance(s, s->o.drop_permille)) {
		trace_msg(s, "drop", &m);
		s->st.dropped++;
		return;
	}
	size_t size = raft_msg_size(&m);
	uint8_t *buf = xmalloc(size);
	int rc = raft_msg_encode(&m, buf, size);
	if (rc < 0 || (size_t)rc != size) {
		sim_fail(s, "encode of %s from %llu failed: %d", raft_msg_type_name(m.type),
		         (unsigned long long)m.from, rc);
		free(buf);
		return;
	}
	int copies = chance(s, s->o.dup_permille) ? 2 : 1;
	if (copies == 2) s->st.duplicated++;
	for (int k = 0; k < copies; k++) {
		uint64_t delay = rnd_range(s, s->o.delay_min_ms, s->o.delay_max_ms);
		if (chance(s, s->o.long_delay_permille)) delay += rnd_range(s, 1, s->o.long_delay_ms);
		if (s->o.fifo_links) {
			uint64_t *busy = &s->link_busy_until[m.from][m.to];
			if (s->now + delay < *busy) delay = *busy - s->now;
			*busy = s->now + delay;
		}
		uint8_t *b = buf;
		if (k == 1) {
			b = xmalloc(size);
			memcpy(b, buf, size);
		}
		ev_push(s, (event_t){.at = s->now + delay,
		                     .kind = EV_DELIVER,
		                     .node = m.to,
		                     .from = m.from,
		                     .buf = b,
		                     .len = size});
	}
}

void sim_link_set(sim_t *s, uint64_t from, uint64_t to, bool up)
{
	assert(from >= 1 && from <= s->n_nodes && to >= 1 && to <= s->n_nodes);
	s->link[from][to] = up;
}

void sim_isolate(sim_t *s, uint64_t id)
{
	for (uint64_t j = 1; j <= s->n_nodes; j++) {
		if (j == id) continue;
		s->link[id][j] = false;
		s->link[j][id] = false;
	}
	trace(s, "isolate %llu", (unsigned long long)id);
}

void sim_partition(sim_t *s, const uint64_t *side, uint32_t n)
{
	bool in[SIM_NODES_MAX + 1] = {false};
	for (uint32_t i = 0; i < n; i++)
		in[side[i]] = true;
	for (uint64_t a = 1; a <= s->n_nodes; a++)
		for (uint64_t b = 1; b <= s->n_nodes; b++)
			s->link[a][b] = in[a] == in[b];
	if (s->o.verbose) {
		char buf[128] = "";
		size_t k = 0;
		for (uint32_t i = 0; i < n && k + 24 < sizeof(buf); i++)
			k += (size_t)snprintf(buf + k, sizeof(buf) - k, "%llu ", (unsigned long long)side[i]);
		trace(s, "partition { %s} vs rest", buf);
	}
}

void sim_heal(sim_t *s)
{
	for (uint64_t a = 1; a <= s->n_nodes; a++)
		for (uint64_t b = 1; b <= s->n_nodes; b++)
			s->link[a][b] = true;
	trace(s, "heal");
}

void sim_set_faults(sim_t *s, uint32_t drop, uint32_t dup, uint32_t long_delay)
{
	s->o.drop_permille = drop;
	s->o.dup_permille = dup;
	s->o.long_delay_permille = long_delay;
}

void sim_set_drop_filter(sim_t *s, sim_drop_fn fn, void *ctx)
{
	s->filter = fn;
	s->filter_ctx = ctx;
}

/* ------------------------------------------------------------------ durable log */

static void dlog_free_from(dlog_t *l, size_t k)
{
	for (size_t i = k; i < l->n; i++)
		free((void *)l->v[i].data);
	l->n = k < l->n ? k : l->n;
}

static uint64_t dlog_last(const dlog_t *l) { return l->base_index + l->n; }

static void dlog_reset(dlog_t *l, uint64_t base_index, uint64_t base_term)
{
	dlog_free_from(l, 0);
	l->base_index = base_index;
	l->base_term = base_term;
}

/* Takes ownership of the entries' data. */
static bool dlog_write(dlog_t *l, uint64_t first, raft_entry_t *ents, size_t n)
{
	if (first <= l->base_index || first > dlog_last(l) + 1) return false;
	dlog_free_from(l, (size_t)(first - l->base_index - 1));
	if (l->n + n > l->cap) {
		while (l->n + n > l->cap)
			l->cap = l->cap ? l->cap * 2 : 64;
		l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
	}
	memcpy(l->v + l->n, ents, n * sizeof(*ents));
	l->n += n;
	return true;
}

static void dlog_compact(dlog_t *l, uint64_t through)
{
	if (through <= l->base_index) return;
	if (through > dlog_last(l)) {
		dlog_reset(l, through, 0);
		return;
	}
	size_t k = (size_t)(through - l->base_index);
	uint64_t t = l->v[k - 1].term;
	for (size_t i = 0; i < k; i++)
		free((void *)l->v[i].data);
	memmove(l->v, l->v + k, (l->n - k) * sizeof(*l->v));
	l->n -= k;
	l->base_index = through;
	l->base_term = t;
}

static raft_entry_t *copy_entries(const raft_entry_t *src, size_t n)
{
	raft_entry_t *v = xmalloc(n * sizeof(*v));
	for (size_t i = 0; i < n; i++) {
		v[i] = src[i];
		v[i].data = NULL;
		if (src[i].len > 0) {
			void *d = xmalloc(src[i].len);
			memcpy(d, src[i].data, src[i].len);
			v[i].data = d;
		}
	}
	return v;
}

/* ------------------------------------------------------------------ writes */

static void write_free(write_rec_t *w)
{
	if (w->ents != NULL)
		for (size_t i = 0; i < w->n_ents; i++)
			free((void *)w->ents[i].data);
	free(w->ents);
	free(w->msgs);
	free(w->snap_bytes);
	free(w);
}

static void snap_store(node_t *n, const raft_snapshot_meta_t *meta, uint8_t *bytes)
{
	free(n->d_snap_bytes);
	n->d_snap = *meta;
	n->d_snap_bytes = bytes;
}

/* What reaching the disk means for a write (also for the writes a crash lets through). */
static bool write_make_durable(sim_t *s, node_t *n, write_rec_t *w)
{
	if (w->install) {
		snap_store(n, &w->meta, w->snap_bytes);
		w->snap_bytes = NULL;
		dlog_reset(&n->d_log, w->meta.index, w->meta.term);
		return true;
	}
	if (w->has_hs) n->d_hs = w->hs;
	if (w->n_ents > 0) {
		if (!dlog_write(&n->d_log, w->first_index, w->ents, w->n_ents)) {
			sim_fail(s, "node %llu: write at %llu does not fit the durable log [%llu, %llu]",
			         (unsigned long long)n->id, (unsigned long long)w->first_index,
			         (unsigned long long)n->d_log.base_index,
			         (unsigned long long)dlog_last(&n->d_log));
			return false;
		}
		free(w->ents); /* entries (and their data) now belong to the log */
		w->ents = NULL;
	}
	return true;
}

static void node_drain(sim_t *s, node_t *n);

static bool snap_parse(const uint8_t *b, size_t len, uint64_t *index, uint64_t *chain)
{
	if (len < SNAP_HEADER_BYTES) return false;
	uint64_t h[5];
	memcpy(h, b, sizeof(h));
	if (h[0] != SNAP_MAGIC || h[3] != h[1]) return false;
	*index = h[1];
	*chain = h[4];
	return true;
}

static void install_complete(sim_t *s, node_t *n, write_rec_t *w)
{
	uint64_t index = 0, chain = 0;
	if (!snap_parse(n->d_snap_bytes, n->d_snap.size_bytes, &index, &chain) || index != w->meta.index) {
		sim_fail(s, "node %llu: installed snapshot does not parse", (unsigned long long)n->id);
		return;
	}
	tables_reserve(s, index);
	if (s->applied[index].chain != chain) {
		sim_fail(s, "state machine safety: node %llu installs a snapshot at %llu whose state differs",
		         (unsigned long long)n->id, (unsigned long long)index);
		return;
	}
	if (index <= n->sm_applied) {
		sim_fail(s, "node %llu: snapshot %llu installed over applied %llu", (unsigned long long)n->id,
		         (unsigned long long)index, (unsigned long long)n->sm_applied);
		return;
	}
	n->sm_applied = index;
	n->sm_chain = chain;
	s->st.installs++;
	trace(s, "node %llu installed snapshot %llu", (unsigned long long)n->id, (unsigned long long)index);
	int rc = raft_core_snapshot_installed(n->core, &w->meta);
	if (rc != 0) sim_fail(s, "node %llu: snapshot_installed: %d", (unsigned long long)n->id, rc);
}

static void disk_complete(sim_t *s, node_t *n)
{
	write_rec_t *w = n->wq_head;
	assert(w != NULL);
	n->wq_head = w->next;
	if (n->wq_head == NULL) n->wq_tail = NULL;
	uint64_t last_index = w->n_ents ? w->ents[w->n_ents - 1].index : 0;
	uint64_t last_term = w->n_ents ? w->ents[w->n_ents - 1].term : 0;
	if (!write_make_durable(s, n, w)) {
		write_free(w);
		return;
	}
	if (w->install) {
		install_complete(s, n, w);
	} else {
		if (last_index > 0) raft_core_persisted(n->core, last_index, last_term);
		for (size_t i = 0; i < w->n_msgs; i++)
			net_send(s, n, &w->msgs[i]);
	}
	write_free(w);
	node_drain(s, n);
}

static void write_queue(sim_t *s, node_t *n, write_rec_t *w)
{
	if (n->wq_tail != NULL)
		n->wq_tail->next = w;
	else
		n->wq_head = w;
	n->wq_tail = w;
	uint64_t at = s->now + rnd_range(s, s->o.fsync_min_ms, s->o.fsync_max_ms);
	if (at < n->disk_busy_until) at = n->disk_busy_until;
	n->disk_busy_until = at;
	ev_push(s, (event_t){.at = at, .kind = EV_DISK, .node = n->id, .gen = n->gen});
}

/* ------------------------------------------------------------------ apply, reads, clients */

static void props_forget_upto(node_t *n, uint64_t index)
{
	size_t k = 0;
	for (size_t i = 0; i < n->n_props; i++)
		if (n->props[i].index > index && n->props[i].gen == n->gen) n->props[k++] = n->props[i];
	n->n_props = k;
}

static void ack(sim_t *s, uint64_t index, uint64_t hash)
{
	if (s->n_acked == s->cap_acked) {
		s->cap_acked = s->cap_acked ? s->cap_acked * 2 : 256;
		s->acked = xrealloc(s->acked, s->cap_acked * sizeof(uint64_t));
		s->acked_hash = xrealloc(s->acked_hash, s->cap_acked * sizeof(uint64_t));
	}
	s->acked[s->n_acked] = index;
	s->acked_hash[s->n_acked++] = hash;
	if (index > s->max_acked) s->max_acked = index;
	s->st.acked++;
}

bool sim_acked_index(const sim_t *s, uint64_t index)
{
	for (size_t i = 0; i < s->n_acked; i++)
		if (s->acked[i] == index) return true;
	return false;
}

static void apply_entry(sim_t *s, node_t *n, const raft_entry_t *e)
{
	if (e->index != n->sm_applied + 1) {
		sim_fail(s, "node %llu: applies %llu after %llu", (unsigned long long)n->id,
		         (unsigned long long)e->index, (unsigned long long)n->sm_applied);
		return;
	}
	tables_reserve(s, e->index);
	if (s->committed_term[e->index] != e->term) {
		sim_fail(s, "node %llu applies (%llu, term %llu) but the committed term there is %llu",
		         (unsigned long long)n->id, (unsigned long long)e->index, (unsigned long long)e->term,
		         (unsigned long long)s->committed_term[e->index]);
		return;
	}
	uint64_t h = fnv(e->data, e->len);
	uint64_t chain = chain_step(n->sm_chain, e);
	apply_rec_t *a = &s->applied[e->index];
	if (a->chain == 0) {
		*a = (apply_rec_t){.term = e->term, .hash = h, .chain = chain};
		if (e->type == RAFT_ENTRY_CONF) s->st.conf_changes++;
	} else if (a->term != e->term || a->hash != h || a->chain != chain) {
		sim_fail(s,
		         "state machine safety: node %llu applies (%llu, term %llu) unlike an earlier apply "
		         "(term %llu)",
		         (unsigned long long)n->id, (unsigned long long)e->index, (unsigned long long)e->term,
		         (unsigned long long)a->term);
		return;
	}
	n->sm_applied = e->index;
	n->sm_chain = chain;
	for (size_t i = 0; i < n->n_props; i++) {
		pending_prop_t *p = &n->props[i];
		if (p->gen == n->gen && p->index == e->index && p->term == e->term && p->hash == h) {
			ack(s, e->index, h);
			trace(s, "node %llu acks proposal at %llu", (unsigned long long)n->id,
			      (unsigned long long)e->index);
		}
	}
	props_forget_upto(n, e->index);
}

/* A read state may come more than once (duplicated request or answer): each must be valid. */
static void read_served(sim_t *s, node_t *n, const raft_read_state_t *r)
{
	if (r->ctx == 0 || r->ctx > s->n_reads) {
		sim_fail(s, "node %llu: read state for unknown ctx %llu", (unsigned long long)n->id,
		         (unsigned long long)r->ctx);
		return;
	}
	pending_read_t *p = &s->reads[r->ctx - 1];
	if (r->index < p->min_index)
		sim_fail(s, "ReadIndex: node %llu read %llu answered index %llu < acknowledged commit %llu",
		         (unsigned long long)n->id, (unsigned long long)r->ctx, (unsigned long long)r->index,
		         (unsigned long long)p->min_index);
	if (r->index > s->max_committed)
		sim_fail(s, "ReadIndex: index %llu beyond any commit %llu", (unsigned long long)r->index,
		         (unsigned long long)s->max_committed);
	if (p->ctx == 0) return; /* served before */
	p->ctx = 0;
	s->st.reads_served++;
	s->last_read_index = r->index;
	trace(s, "node %llu read %llu served at index %llu", (unsigned long long)n->id,
	      (unsigned long long)r->ctx, (unsigned long long)r->index);
}

int64_t sim_propose(sim_t *s, uint64_t id)
{
	node_t *n = node_of(s, id);
	if (!n->up) return -ENOTCONN;
	uint8_t buf[16 + PAYLOAD_EXTRA_MAX];
	uint64_t seq = ++s->payload_seq;
	memcpy(buf, &s->o.seed, 8);
	memcpy(buf + 8, &seq, 8);
	size_t len = 16 + (size_t)rnd_range(s, 0, PAYLOAD_EXTRA_MAX);
	for (size_t i = 16; i < len; i++)
		buf[i] = (uint8_t)rnd(s);
	raft_status_t st;
	raft_core_status(n->core, &st);
	int64_t idx = raft_core_propose(n->core, buf, len);
	if (idx > 0) {
		s->st.proposals++;
		if (n->n_props == n->cap_props) {
			n->cap_props = n->cap_props ? n->cap_props * 2 : 64;
			n->props = xrealloc(n->props, n->cap_props * sizeof(*n->props));
		}
		n->props[n->n_props++] = (pending_prop_t){
		    .gen = n->gen, .index = (uint64_t)idx, .term = st.term, .hash = fnv(buf, len)};
		trace(s, "node %llu proposes at %lld term %llu", (unsigned long long)id, (long long)idx,
		      (unsigned long long)st.term);
	}
	node_drain(s, n);
	return idx;
}

int64_t sim_read(sim_t *s, uint64_t id)
{
	node_t *n = node_of(s, id);
	if (!n->up) return -ENOTCONN;
	/* ctx k lives at reads[k - 1]; a refused request keeps its slot (never answered) */
	if (s->n_reads == s->cap_reads) {
		s->cap_reads = s->cap_reads ? s->cap_reads * 2 : 64;
		s->reads = xrealloc(s->reads, s->cap_reads * sizeof(*s->reads));
	}
	uint64_t ctx = ++s->n_reads;
	s->reads[ctx - 1] = (pending_read_t){.ctx = ctx, .min_index = s->max_acked};
	raft_core_set_clock(n->core, s->now);
	int rc = raft_core_read_index(n->core, ctx);
	if (rc != 0) {
		node_drain(s, n);
		return rc;
	}
	s->st.reads++;
	trace(s, "node %llu read %llu requested (acked up to %llu)", (unsigned long long)id,
	      (unsigned long long)ctx, (unsigned long long)s->max_acked);
	node_drain(s, n);
	return (int64_t)ctx;
}

/* ------------------------------------------------------------------ snapshots */

static uint8_t *snap_bytes_make(sim_t *s, node_t *n, uint64_t *size)
{
	uint64_t filler = rnd_range(s, 0, s->o.snap_filler_max);
	*size = SNAP_HEADER_BYTES + filler;
	uint8_t *b = xmalloc((size_t)*size);
	uint64_t h[5] = {SNAP_MAGIC, n->sm_applied, 0, n->sm_applied, n->sm_chain};
	memcpy(b, h, sizeof(h));
	for (uint64_t i = 0; i < filler; i++)
		b[SNAP_HEADER_BYTES + i] = (uint8_t)(n->sm_applied * 31 + i);
	return b;
}

static void maybe_snapshot(sim_t *s, node_t *n)
{
	if (s->o.snap_every == 0 || n->sm_applied < n->d_snap.index + s->o.snap_every) return;
	raft_snapshot_meta_t meta;
	int rc = raft_core_snapshot_meta(n->core, n->sm_applied, &meta);
	if (rc != 0) {
		sim_fail(s, "node %llu: snapshot_meta(%llu): %d", (unsigned long long)n->id,
		         (unsigned long long)n->sm_applied, rc);
		return;
	}
	uint8_t *bytes = snap_bytes_make(s, n, &meta.size_bytes);
	snap_store(n, &meta, bytes);
	uint64_t window = rnd_range(s, 0, s->o.snap_window_max);
	uint64_t compact = meta.index > window ? meta.index - window : 0;
	rc = raft_core_compact(n->core, compact, &meta);
	if (rc != 0) {
		sim_fail(s, "node %llu: compact(%llu): %d", (unsigned long long)n->id,
		         (unsigned long long)compact, rc);
		return;
	}
	dlog_compact(&n->d_log, compact);
	s->st.snapshots++;
	trace(s, "node %llu snapshot at %llu, compacted to %llu", (unsigned long long)n->id,
	      (unsigned long long)meta.index, (unsigned long long)compact);
}

/* ------------------------------------------------------------------ the Ready loop */

/* The configuration in force is the one in the last conf entry of the log (applied when appended,
 * reverted when truncated away). Checked when a Ready rewrites the log tail. */
static void check_conf_after_truncation(sim_t *s, node_t *n)
{
	raft_status_t st;
	raft_core_status(n->core, &st);
	for (uint64_t i = st.last_index; i >= st.first_index && i > st.snap_index; i--) {
		raft_entry_t e;
		if (raft_core_entry(n->core, i, &e) != 0) return;
		if (e.type != RAFT_ENTRY_CONF) continue;
		raft_conf_t c;
		if (raft_conf_decode(e.data, e.len, NULL, NULL, &c) != 0 || !raft_conf_equal(&c, &st.conf))
			sim_fail(
			    s, "node %llu: configuration in force is not the one of its last conf entry %llu",
			    (unsigned long long)n->id, (unsigned long long)i);
		return;
	}
}

static void handle_ready(sim_t *s, node_t *n, const raft_ready_t *rd)
{
	if (rd->soft_state_changed && s->o.verbose)
		trace(s, "node %llu soft: %s lead %llu term %llu", (unsigned long long)n->id,
		      raft_role_name(rd->soft_state.role), (unsigned long long)rd->soft_state.lead,
		      (unsigned long long)rd->soft_state.term);
	if (rd->n_entries > 0 && rd->entries_first_index <= n->seen_last) {
		s->st.truncations++;
		check_conf_after_truncation(s, n);
	}
	if (rd->n_entries > 0) n->seen_last = rd->entries_first_index + rd->n_entries - 1;
	for (size_t i = 0; i < rd->n_entries; i++) {
		if (rd->entries[i].index != rd->entries_first_index + i) {
			sim_fail(s, "node %llu: ready entries not contiguous", (unsigned long long)n->id);
			return;
		}
		record_entry(s, n, &rd->entries[i]);
	}
	for (size_t i = 0; i < rd->n_snap_chunks; i++) {
		const raft_snap_chunk_t *c = &rd->snap_chunks[i];
		if (c->offset == 0) n->in_snap_len = 0;
		if (c->offset != n->in_snap_len) {
			sim_fail(s, "node %llu: snapshot chunk at %llu, file has %zu",
			         (unsigned long long)n->id, (unsigned long long)c->offset, n->in_snap_len);
			return;
		}
		if (n->in_snap_len + c->len > n->in_snap_cap) {
			n->in_snap_cap = (n->in_snap_len + c->len) * 2;
			n->in_snap = xrealloc(n->in_snap, n->in_snap_cap);
		}
		if (c->len > 0) memcpy(n->in_snap + n->in_snap_len, c->data, c->len);
		n->in_snap_len += c->len;
	}
	bool write = rd->hard_state_changed || rd->n_entries > 0 || rd->n_msgs_after_persist > 0;
	if (write) {
		write_rec_t *w = calloc(1, sizeof(*w));
		assert(w != NULL);
		w->has_hs = rd->hard_state_changed;
		w->hs = rd->hard_state;
		w->first_index = rd->entries_first_index;
		if (rd->n_entries > 0) w->ents = copy_entries(rd->entries, rd->n_entries);
		w->n_ents = rd->n_entries;
		if (rd->n_msgs_after_persist > 0) {
			w->msgs = xmalloc(rd->n_msgs_after_persist * sizeof(raft_msg_t));
			memcpy(w->msgs, rd->msgs_after_persist,
			       rd->n_msgs_after_persist * sizeof(raft_msg_t));
			for (size_t i = 0; i < rd->n_msgs_after_persist; i++)
				assert(w->msgs[i].n_entries == 0 && w->msgs[i].chunk_len == 0);
		}
		w->n_msgs = rd->n_msgs_after_persist;
		write_queue(s, n, w);
	}
	for (size_t i = 0; i < rd->n_msgs; i++)
		net_send(s, n, &rd->msgs[i]);
	for (size_t i = 0; i < rd->n_committed && !s->failed; i++)
		apply_entry(s, n, &rd->committed[i]);
	for (size_t i = 0; i < rd->n_read_states; i++)
		read_served(s, n, &rd->read_states[i]);
	if (rd->snapshot_install) {
		if (n->in_snap_len != rd->snapshot.size_bytes) {
			sim_fail(s, "node %llu: snapshot to install has %zu bytes, meta says %llu",
			         (unsigned long long)n->id, n->in_snap_len,
			         (unsigned long long)rd->snapshot.size_bytes);
			return;
		}
		write_rec_t *w = calloc(1, sizeof(*w));
		assert(w != NULL);
		w->install = true;
		w->meta = rd->snapshot;
		w->snap_bytes = xmalloc(n->in_snap_len);
		memcpy(w->snap_bytes, n->in_snap, n->in_snap_len);
		write_queue(s, n, w);
	}
}

static void node_drain(sim_t *s, node_t *n)
{
	if (!n->up) return;
	observe(s, n);
	for (uint32_t round = 0; raft_core_has_ready(n->core) && !s->failed; round++) {
		if (round == DRAIN_ROUNDS_MAX) {
			sim_fail(s, "node %llu: Ready loop does not settle", (unsigned long long)n->id);
			return;
		}
		raft_ready_t rd;
		raft_core_ready(n->core, &rd);
		handle_ready(s, n, &rd);
		raft_core_advance(n->core, &rd);
		if (s->failed) return;
		maybe_snapshot(s, n);
		observe(s, n);
	}
}

void sim_drain(sim_t *s, uint64_t id) { node_drain(s, node_of(s, id)); }

/* ------------------------------------------------------------------ crash and restart */

uint32_t sim_pending_writes(const sim_t *s, uint64_t id)
{
	uint32_t k = 0;
	for (const write_rec_t *w = s->nodes[id].wq_head; w != NULL; w = w->next)
		k++;
	return k;
}

void sim_crash(sim_t *s, uint64_t id)
{
	node_t *n = node_of(s, id);
	if (!n->up) return;
	/* A prefix of the queued writes may have reached the disk without their fsync completing. */
	while (n->wq_head != NULL) {
		write_rec_t *w = n->wq_head;
		n->wq_head = w->next;
		if (chance(s, s->o.crash_leak_permille)) {
			write_make_durable(s, n, w);
		} else {
			write_free(w);
			while (n->wq_head != NULL) {
				w = n->wq_head;
				n->wq_head = w->next;
				write_free(w);
			}
			break;
		}
		write_free(w);
	}
	n->wq_tail = NULL;
	raft_core_free(n->core);
	n->core = NULL;
	n->up = false;
	n->gen++;
	n->in_snap_len = 0;
	n->n_props = 0;
	s->st.crashes++;
	trace(s, "crash %llu", (unsigned long long)id);
}

static void node_boot(sim_t *s, node_t *n)
{
	raft_config_t cfg = s->o.cfg;
	cfg.id = n->id;
	if (!cfg.check_quorum) cfg.lease_ms = 0; /* a lease needs it (core.h) */
	cfg.seed = s->o.seed * 1000003ull + n->gen;
	raft_restore_t r = {.hard_state = n->d_hs,
	                    .snapshot = n->d_snap,
	                    .entries = n->d_log.v,
	                    .n_entries = n->d_log.n,
	                    .applied = n->d_snap.index};
	int rc = raft_core_new(&cfg, &r, &n->core);
	if (rc != 0) {
		sim_fail(s, "node %llu: raft_core_new from durable state: %d", (unsigned long long)n->id, rc);
		return;
	}
	raft_core_set_clock(n->core, s->now);
	n->sm_applied = 0;
	n->sm_chain = 0;
	if (n->d_snap.index > 0) {
		uint64_t index = 0, chain = 0;
		if (!snap_parse(n->d_snap_bytes, n->d_snap.size_bytes, &index, &chain) ||
		    index != n->d_snap.index) {
			sim_fail(s, "node %llu: durable snapshot does not parse", (unsigned long long)n->id);
			return;
		}
		tables_reserve(s, index);
		if (s->applied[index].chain != chain) {
			sim_fail(s, "node %llu: durable snapshot state differs at %llu",
			         (unsigned long long)n->id, (unsigned long long)index);
			return;
		}
		n->sm_applied = index;
		n->sm_chain = chain;
	}
	raft_status_t st;
	raft_core_status(n->core, &st);
	n->up = true;
	n->gen++;
	n->seen_commit = st.commit; /* restored commits were observed before the crash */
	n->seen_term = st.term;
	n->seen_role = st.role;
	n->seen_leader_term = 0;
	n->seen_last = st.last_index;
	n->disk_busy_until = s->now;
	ev_push(s, (event_t){.at = s->now + rnd_range(s, 1, s->o.tick_ms),
	                     .kind = EV_TICK,
	                     .node = n->id,
	                     .gen = n->gen});
}

void sim_restart(sim_t *s, uint64_t id)
{
	node_t *n = node_of(s, id);
	if (n->up) return;
	trace(s, "restart %llu", (unsigned long long)id);
	node_boot(s, n);
	node_drain(s, n);
}

/* ------------------------------------------------------------------ scheduler */

static void dispatch(sim_t *s, event_t *ev)
{
	node_t *n = node_of(s, ev->node);
	if (n->up && n->core) raft_core_set_clock(n->core, s->now); /* lease reads: the simulated time */
	switch (ev->kind) {
	case EV_TICK:
		if (!n->up || ev->gen != n->gen) return;
		raft_core_tick(n->core);
		node_drain(s, n);
		ev_push(
		    s, (event_t){.at = s->now + s->o.tick_ms, .kind = EV_TICK, .node = n->id, .gen = n->gen});
		return;
	case EV_DISK:
		if (!n->up || ev->gen != n->gen) return;
		disk_complete(s, n);
		return;
	case EV_DELIVER: {
		if (!n->up || !s->link[ev->from][ev->node]) {
			s->st.dropped++;
			return;
		}
		raft_msg_t m;
		int rc = raft_msg_decode(ev->buf, ev->len, &m, s->dec_entries, RAFT_MSG_ENTRIES_MAX);
		if (rc != 0) {
			sim_fail(s, "decode failed: %d", rc);
			return;
		}
		trace_msg(s, "recv", &m);
		s->st.delivered++;
		rc = raft_core_step(n->core, &m);
		if (rc != 0 && rc != -ENOMEM)
			sim_fail(s, "node %llu: step %s: %d", (unsigned long long)n->id,
			         raft_msg_type_name(m.type), rc);
		node_drain(s, n);
		return;
	}
	}
}

void sim_run_for(sim_t *s, uint64_t ms)
{
	uint64_t end = s->now + ms;
	while (!s->failed && s->heap_n > 0 && s->heap[0].at <= end) {
		event_t ev = ev_pop(s);
		s->now = ev.at;
		dispatch(s, &ev);
		free(ev.buf);
	}
	if (!s->failed) s->now = end;
}

bool sim_run_until(sim_t *s, uint64_t max_ms, bool (*pred)(sim_t *s, void *ctx), void *ctx)
{
	for (uint64_t t = 0; t < max_ms && !s->failed; t++) {
		if (pred(s, ctx)) return true;
		sim_run_for(s, 1);
	}
	return !s->failed && pred(s, ctx);
}

uint64_t sim_leader(sim_t *s)
{
	uint64_t best = 0, best_term = 0;
	for (uint64_t id = 1; id <= s->n_nodes; id++) {
		node_t *n = &s->nodes[id];
		if (!n->up) continue;
		raft_status_t st;
		raft_core_status(n->core, &st);
		if (st.role == RAFT_LEADER && st.term >= best_term) {
			best = id;
			best_term = st.term;
		}
	}
	return best;
}

/* ------------------------------------------------------------------ lifecycle */

void sim_opts_default(sim_opts_t *o, uint64_t seed, uint32_t n_voters)
{
	memset(o, 0, sizeof(*o));
	o->seed = seed;
	o->n_voters = n_voters;
	o->tick_ms = 10;
	o->delay_min_ms = 1;
	o->delay_max_ms = 5;
	o->long_delay_ms = 100;
	o->fsync_min_ms = 1;
	o->fsync_max_ms = 4;
	o->snap_filler_max = 300;
	raft_config_default(&o->cfg, 1, seed);
	o->cfg.snap_chunk_bytes = 64;
	o->cfg.snap_resend_ticks = 4;
	o->cfg.reads_max = 256;
	/* lease reads on odd seeds (ReadIndex rounds only on even ones): the read checks hold both */
	if (seed & 1) o->cfg.lease_ms = (o->cfg.election_ticks - 2) * o->tick_ms;
}

sim_t *sim_new(const sim_opts_t *o)
{
	assert(o->n_voters >= 1 && o->n_voters + o->n_spare <= SIM_NODES_MAX);
	sim_t *s = calloc(1, sizeof(*s));
	assert(s != NULL);
	s->o = *o;
	s->rng = o->seed ^ 0x5eed5eed5eedull;
	s->n_nodes = o->n_voters + o->n_spare;
	sim_heal(s);
	tables_reserve(s, 1);
	for (uint64_t id = 1; id <= s->n_nodes; id++) {
		node_t *n = &s->nodes[id];
		n->id = id;
		if (id <= o->n_voters) {
			n->d_snap.conf.n_voters = o->n_voters;
			for (uint32_t v = 0; v < o->n_voters; v++)
				n->d_snap.conf.voters[v] = v + 1;
		}
		node_boot(s, n);
	}
	return s;
}

void sim_free(sim_t *s)
{
	if (s == NULL) return;
	for (uint64_t id = 1; id <= s->n_nodes; id++) {
		node_t *n = &s->nodes[id];
		while (n->wq_head != NULL) {
			write_rec_t *w = n->wq_head;
			n->wq_head = w->next;
			write_free(w);
		}
		raft_core_free(n->core);
		dlog_free_from(&n->d_log, 0);
		free(n->d_log.v);
		free(n->d_snap_bytes);
		free(n->in_snap);
		free(n->props);
	}
	for (size_t i = 0; i < s->heap_n; i++)
		free(s->heap[i].buf);
	free(s->heap);
	for (uint64_t i = 0; i < s->idx_cap; i++)
		free(s->lm[i].v);
	free(s->lm);
	free(s->committed_term);
	free(s->commit_in_term);
	free(s->applied);
	free(s->leader_of_term);
	free(s->acked);
	free(s->acked_hash);
	free(s->reads);
	free(s);
}

/* ------------------------------------------------------------------ end of run */

static bool logs_match(sim_t *s, node_t *a, node_t *b)
{
	raft_status_t sa, sb;
	raft_core_status(a->core, &sa);
	raft_core_status(b->core, &sb);
	uint64_t lo = sa.first_index > sb.first_index ? sa.first_index : sb.first_index;
	uint64_t hi = sa.last_index < sb.last_index ? sa.last_index : sb.last_index;
	/* from the highest index where both hold the same term, everything below must be equal */
	bool matched = false;
	for (uint64_t i = hi; i >= lo && i > 0; i--) {
		raft_entry_t ea, eb;
		if (raft_core_entry(a->core, i, &ea) != 0 || raft_core_entry(b->core, i, &eb) != 0) break;
		if (!matched && ea.term != eb.term) continue;
		matched = true;
		if (ea.term != eb.term || ea.type != eb.type ||
		    fnv(ea.data, ea.len) != fnv(eb.data, eb.len)) {
			sim_fail(s, "log matching: nodes %llu and %llu differ at %llu below a common entry",
			         (unsigned long long)a->id, (unsigned long long)b->id, (unsigned long long)i);
			return false;
		}
	}
	return true;
}

bool sim_check_final(sim_t *s)
{
	if (s->failed) return false;
	uint64_t lead = sim_leader(s);
	if (lead == 0) {
		sim_fail(s, "final: no leader");
		return false;
	}
	raft_status_t ls;
	raft_core_status(s->nodes[lead].core, &ls);
	const raft_conf_t *conf = &ls.conf;
	for (uint64_t id = 1; id <= s->n_nodes; id++) {
		bool member = raft_conf_is_voter(conf, id) || raft_conf_is_learner(conf, id);
		if (!member) continue;
		node_t *n = &s->nodes[id];
		if (!n->up) {
			sim_fail(s, "final: member %llu is down", (unsigned long long)id);
			return false;
		}
		if (n->sm_applied < s->max_acked) {
			sim_fail(s, "final: member %llu applied %llu < acknowledged %llu",
			         (unsigned long long)id, (unsigned long long)n->sm_applied,
			         (unsigned long long)s->max_acked);
			return false;
		}
		for (size_t i = 0; i < s->n_acked; i++) {
			if (s->applied[s->acked[i]].hash != s->acked_hash[i]) {
				sim_fail(s, "final: acknowledged proposal at %llu was replaced",
				         (unsigned long long)s->acked[i]);
				return false;
			}
		}
		if (n->sm_chain != s->applied[n->sm_applied].chain) {
			sim_fail(s, "final: member %llu state differs at %llu", (unsigned long long)id,
			         (unsigned long long)n->sm_applied);
			return false;
		}
	}
	for (uint64_t a = 1; a <= s->n_nodes; a++)
		for (uint64_t b = a + 1; b <= s->n_nodes; b++)
			if (s->nodes[a].up && s->nodes[b].up && !logs_match(s, &s->nodes[a], &s->nodes[b]))
				return false;
	return true;
}
