/* core.c - the Raft state machine behind core.h: elections, replication, commit, reads, transfer,
 * snapshots and membership, with no I/O and no clock.
 *
 * Shape follows etcd-io/raft (raft.go, tracker/progress.go, read_only.go): one step function that
 * first settles terms and then dispatches on the role; per-follower Progress in probe, replicate or
 * snapshot state with a ring of in-flight AppendEntries; outputs collected in outboxes and handed
 * out by raft_core_ready(). Entries live in one contiguous array (base_index is the entry before the
 * first one in memory), so a Ready can point at runs of entries without copying them. Messages that
 * carry entries remember only the index range and the last term while in the outbox and are
 * resolved to pointers when the Ready is built; if the range has been truncated or compacted in the
 * meantime the message is dropped, which Raft treats as loss.
 *
 * Limits: RAFT_NODES_MAX members (progress slots are fixed), inflight_max per follower, reads_max
 * pending reads, RAFT_OUTBOX_MAX buffered messages, RAFT_SNAP_CHUNKS_PENDING buffered chunks.
 * The in-memory log grows until the application compacts it; the leader bounds the uncommitted
 * part with uncommitted_bytes_max. Loops over the log (conflict search, config rebuild after a
 * truncation) are bounded by the in-memory log length.
 */
#include "core.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum { PR_PROBE = 0, PR_REPLICATE = 1, PR_SNAPSHOT = 2 };
enum { VOTE_PENDING, VOTE_WON, VOTE_LOST };

typedef struct progress {
	uint64_t id; /* 0: free slot */
	bool voter;
	uint8_t state;
	bool probe_sent;    /* probe: an AppendEntries is out, wait for its answer or a heartbeat answer */
	bool recent_active; /* heard from since the last check-quorum */
	uint64_t match, next;
	uint64_t *inflight; /* ring of the last index of each AppendEntries in flight */
	uint32_t inflight_head, inflight_count;
	uint64_t read_acked;       /* highest ReadIndex round this follower echoed this term */
	raft_snapshot_meta_t snap; /* snapshot being sent */
	uint64_t snap_acked;       /* follower holds bytes [0, snap_acked) */
	uint64_t snap_sent_offset; /* offset of the last chunk sent */
	uint32_t snap_idle_ticks;
} progress_t;

typedef struct out_msg {
	raft_msg_t m;
	uint64_t last_term; /* APP with entries: term of its last entry when built */
} out_msg_t;

typedef struct outbox {
	out_msg_t *v;
	raft_msg_t *rd; /* the resolved copy handed out in a Ready, same capacity */
	uint32_t n, cap;
} outbox_t;

typedef struct read_req {
	uint64_t ctx, from, index;
	uint64_t round; /* confirmation round; 0 while waiting for this term's first commit */
} read_req_t;

#define LEASE_RING 64u /* heartbeat rounds remembered for their send time */

typedef struct chunk_buf {
	raft_snap_chunk_t c;
	void *data;
} chunk_buf_t;

struct raft_core {
	raft_config_t cfg;
	uint64_t id;
	uint64_t rng;

	/* hard state */
	uint64_t term, vote, commit;

	uint8_t role;
	uint64_t lead;
	uint32_t election_elapsed, heartbeat_elapsed, election_timeout;

	/* the log: ents[ents_start .. ents_start + ents_n) hold indexes base_index + 1 .. */
	raft_entry_t *ents;
	size_t ents_start, ents_n, ents_cap;
	uint64_t base_index, base_term;
	uint64_t applied;       /* handed out for apply (and acknowledged by advance) */
	uint64_t persisted;     /* log prefix known durable */
	uint64_t unstable_from; /* first index not yet handed out for writing */
	raft_snapshot_meta_t snap;
	raft_conf_t conf;    /* in force: last conf entry above snap.index, else snap.conf */
	uint64_t conf_index; /* index of that conf entry, 0 when it is snap.conf */

	/* election */
	uint64_t vote_ids[RAFT_NODES_MAX];
	bool vote_granted[RAFT_NODES_MAX];
	uint32_t n_votes;

	/* leader */
	progress_t prs[RAFT_NODES_MAX];
	uint64_t *inflight_buf;
	uint64_t term_start_index; /* index of this term's no-op */
	uint64_t lead_transferee;
	uint64_t uncommitted_bytes;
	uint64_t read_round, read_confirmed; /* monotonic over the core's life */
	read_req_t *reads;
	uint32_t n_reads;
	/* lease reads: when each recent round was sent; the lease runs until lease_until_ms */
	uint64_t round_sent_ms[LEASE_RING], round_of_slot[LEASE_RING];
	uint64_t lease_until_ms;
	bool lease_revoked; /* this term's leadership was offered away (TIMEOUT_NOW): no lease */
	uint64_t now_ms;
	uint64_t ticks; /* since raft_core_new: no votes granted for election_ticks (lease) */

	/* outputs */
	outbox_t out_now, out_after;
	raft_read_state_t *read_states;
	uint32_t n_read_states;
	uint64_t msgs_dropped;

	/* snapshot receive (follower) */
	bool recv_active;
	uint64_t recv_from, recv_term, recv_next;
	raft_snapshot_meta_t recv_meta;
	chunk_buf_t chunks[RAFT_SNAP_CHUNKS_PENDING];
	raft_snap_chunk_t rd_chunks[RAFT_SNAP_CHUNKS_PENDING];
	uint32_t n_chunks;
	bool install_pending; /* last chunk in; until raft_core_snapshot_installed the log is frozen */
	bool install_emit;

	/* Ready bookkeeping */
	raft_hard_state_t prev_hs;
	raft_soft_state_t prev_ss;
	bool in_ready;
};

const char *raft_role_name(uint8_t role)
{
	static const char *const names[] = {"follower", "precandidate", "candidate", "leader"};
	return role <= RAFT_LEADER ? names[role] : "?";
}

void raft_config_default(raft_config_t *cfg, uint64_t id, uint64_t seed)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->id = id;
	cfg->seed = seed;
	cfg->election_ticks = 10;
	cfg->heartbeat_ticks = 1;
	cfg->inflight_max = 64;
	cfg->msg_entries_max = 256;
	cfg->msg_bytes_max = 1u << 20;
	cfg->entry_bytes_max = (8u << 20) + (64u << 10);
	cfg->uncommitted_bytes_max = 64u << 20;
	cfg->snap_chunk_bytes = 1u << 20;
	cfg->snap_resend_ticks = 5;
	cfg->reads_max = 1024;
	cfg->pre_vote = true;
	cfg->check_quorum = true;
}

/* ------------------------------------------------------------------ small helpers */

static uint64_t rng_next(raft_core_t *c)
{
	/* splitmix64: deterministic from the configured seed */
	uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static void randomize_timeout(raft_core_t *c)
{
	c->election_timeout = c->cfg.election_ticks + (uint32_t)(rng_next(c) % c->cfg.election_ticks);
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }
static uint64_t max_u64(uint64_t a, uint64_t b) { return a > b ? a : b; }

static bool meta_equal(const raft_snapshot_meta_t *a, const raft_snapshot_meta_t *b)
{
	return a->index == b->index && a->term == b->term && a->size_bytes == b->size_bytes &&
	       raft_conf_equal(&a->conf, &b->conf);
}

/* ------------------------------------------------------------------ log */

static uint64_t last_index(const raft_core_t *c) { return c->base_index + c->ents_n; }

static raft_entry_t *ent(const raft_core_t *c, uint64_t index)
{
	assert(index > c->base_index && index <= last_index(c));
	return &c->ents[c->ents_start + (size_t)(index - c->base_index - 1)];
}

static uint64_t last_term(const raft_core_t *c)
{
	return c->ents_n > 0 ? ent(c, last_index(c))->term : c->base_term;
}

static bool term_at(const raft_core_t *c, uint64_t index, uint64_t *term)
{
	if (index == c->base_index) {
		*term = c->base_term;
		return true;
	}
	if (index < c->base_index || index > last_index(c)) return false;
	*term = ent(c, index)->term;
	return true;
}

static bool match_term(const raft_core_t *c, uint64_t index, uint64_t term)
{
	uint64_t t;
	return term_at(c, index, &t) && t == term;
}

static void free_entry_data(raft_entry_t *e)
{
	free((void *)e->data);
	e->data = NULL;
}

static int log_reserve(raft_core_t *c)
{
	if (c->ents_start + c->ents_n < c->ents_cap) return 0;
	if (c->ents_start > 0 && c->ents_start >= c->ents_n) {
		memmove(c->ents, c->ents + c->ents_start, c->ents_n * sizeof(*c->ents));
		c->ents_start = 0;
		return 0;
	}
	size_t cap = c->ents_cap < 64 ? 64 : c->ents_cap * 2;
	raft_entry_t *v = realloc(c->ents, cap * sizeof(*v));
	if (v == NULL) return -ENOMEM;
	c->ents = v;
	c->ents_cap = cap;
	return 0;
}

/* Appends a copy of e (index must be last + 1). */
static int log_append(raft_core_t *c, const raft_entry_t *e)
{
	assert(e->index == last_index(c) + 1);
	assert(e->term >= last_term(c));
	if (log_reserve(c) != 0) return -ENOMEM;
	raft_entry_t copy = *e;
	copy.data = NULL;
	if (e->len > 0) {
		void *d = malloc(e->len);
		if (d == NULL) return -ENOMEM;
		memcpy(d, e->data, e->len);
		copy.data = d;
	}
	c->ents[c->ents_start + c->ents_n] = copy;
	c->ents_n++;
	return 0;
}

static void log_truncate_from(raft_core_t *c, uint64_t from)
{
	assert(from > c->base_index && from > c->commit);
	for (uint64_t i = from; i <= last_index(c); i++)
		free_entry_data(ent(c, i));
	c->ents_n = (size_t)(from - c->base_index - 1);
	c->unstable_from = min_u64(c->unstable_from, from);
	c->persisted = min_u64(c->persisted, from - 1);
}

static void log_compact_to(raft_core_t *c, uint64_t through)
{
	assert(through > c->base_index && through <= last_index(c));
	uint64_t t = ent(c, through)->term;
	for (uint64_t i = c->base_index + 1; i <= through; i++)
		free_entry_data(ent(c, i));
	size_t k = (size_t)(through - c->base_index);
	c->ents_start += k;
	c->ents_n -= k;
	if (c->ents_n == 0) c->ents_start = 0;
	c->base_index = through;
	c->base_term = t;
}

static void log_clear(raft_core_t *c, uint64_t base_index, uint64_t base_term)
{
	for (size_t i = 0; i < c->ents_n; i++)
		free_entry_data(&c->ents[c->ents_start + i]);
	c->ents_start = 0;
	c->ents_n = 0;
	c->base_index = base_index;
	c->base_term = base_term;
}

/* Largest index <= index whose term is <= term (etcd's findConflictByTerm). */
static uint64_t find_conflict_by_term(const raft_core_t *c, uint64_t index, uint64_t term)
{
	if (index > last_index(c)) return index;
	while (index > c->base_index) {
		if (ent(c, index)->term <= term) return index;
		index--;
	}
	return index;
}

/* ------------------------------------------------------------------ configuration */

static uint32_t quorum(const raft_core_t *c) { return c->conf.n_voters / 2 + 1; }

static bool promotable(const raft_core_t *c) { return raft_conf_is_voter(&c->conf, c->id); }

static bool is_member(const raft_conf_t *conf, uint64_t id)
{
	return raft_conf_is_voter(conf, id) || raft_conf_is_learner(conf, id);
}

static void conf_from_entry(raft_core_t *c, const raft_entry_t *e)
{
	assert(e->type == RAFT_ENTRY_CONF);
	int rc = raft_conf_decode(e->data, e->len, NULL, NULL, &c->conf);
	assert(rc == 0); /* validated when the entry entered the log */
	(void)rc;
	c->conf_index = e->index;
}

/* After a truncation or an install: the last conf entry above the snapshot, else the snapshot's. */
static void conf_rebuild(raft_core_t *c)
{
	c->conf = c->snap.conf;
	c->conf_index = 0;
	uint64_t low = max_u64(c->base_index, c->snap.index);
	for (uint64_t i = last_index(c); i > low; i--) {
		if (ent(c, i)->type == RAFT_ENTRY_CONF) {
			conf_from_entry(c, ent(c, i));
			return;
		}
	}
}

static void conf_at(const raft_core_t *c, uint64_t index, raft_conf_t *out)
{
	*out = c->snap.conf;
	uint64_t low = max_u64(c->base_index, c->snap.index);
	for (uint64_t i = min_u64(index, last_index(c)); i > low; i--) {
		if (ent(c, i)->type == RAFT_ENTRY_CONF) {
			int rc = raft_conf_decode(ent(c, i)->data, ent(c, i)->len, NULL, NULL, out);
			assert(rc == 0);
			(void)rc;
			return;
		}
	}
}

/* ------------------------------------------------------------------ progress */

static progress_t *pr_find(raft_core_t *c, uint64_t id)
{
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
		if (c->prs[i].id == id && id != 0) return &c->prs[i];
	return NULL;
}

static void inflight_reset(progress_t *pr)
{
	pr->inflight_head = 0;
	pr->inflight_count = 0;
}

static bool inflight_full(const raft_core_t *c, const progress_t *pr)
{
	return pr->inflight_count == c->cfg.inflight_max;
}

static void inflight_add(raft_core_t *c, progress_t *pr, uint64_t last)
{
	assert(!inflight_full(c, pr));
	pr->inflight[(pr->inflight_head + pr->inflight_count) % c->cfg.inflight_max] = last;
	pr->inflight_count++;
}

static void inflight_free_le(raft_core_t *c, progress_t *pr, uint64_t index)
{
	while (pr->inflight_count > 0 && pr->inflight[pr->inflight_head] <= index) {
		pr->inflight_head = (pr->inflight_head + 1) % c->cfg.inflight_max;
		pr->inflight_count--;
	}
}

static void inflight_free_first(raft_core_t *c, progress_t *pr)
{
	if (pr->inflight_count == 0) return;
	pr->inflight_head = (pr->inflight_head + 1) % c->cfg.inflight_max;
	pr->inflight_count--;
}

static bool pr_paused(const raft_core_t *c, const progress_t *pr)
{
	switch (pr->state) {
	case PR_PROBE:
		return pr->probe_sent;
	case PR_REPLICATE:
		return inflight_full(c, pr);
	default:
		return true;
	}
}

static void pr_become_probe(progress_t *pr)
{
	pr->state = PR_PROBE;
	pr->next = pr->match + 1;
	pr->probe_sent = false;
	inflight_reset(pr);
}

static void pr_become_replicate(progress_t *pr)
{
	pr->state = PR_REPLICATE;
	pr->next = pr->match + 1;
	inflight_reset(pr);
}

/* A rejection of the AppendEntries whose prev index was `rejected`; false when stale. */
static bool pr_maybe_decr(progress_t *pr, uint64_t rejected, uint64_t match_hint)
{
	if (pr->state == PR_REPLICATE) {
		if (rejected <= pr->match) return false;
		pr->next = pr->match + 1;
		return true;
	}
	if (pr->next == 0 || pr->next - 1 != rejected) return false;
	pr->next = max_u64(min_u64(rejected, match_hint + 1), pr->match + 1);
	pr->probe_sent = false;
	return true;
}

static bool pr_maybe_update(progress_t *pr, uint64_t index)
{
	if (index <= pr->match) return false;
	pr->match = index;
	pr->next = max_u64(pr->next, index + 1);
	pr->probe_sent = false;
	return true;
}

static void prs_clear(raft_core_t *c)
{
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
		uint64_t *buf = c->prs[i].inflight;
		memset(&c->prs[i], 0, sizeof(c->prs[i]));
		c->prs[i].inflight = buf;
	}
}

static void pr_add(raft_core_t *c, uint64_t id)
{
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
		progress_t *pr = &c->prs[i];
		if (pr->id != 0) continue;
		uint64_t *buf = pr->inflight;
		memset(pr, 0, sizeof(*pr));
		pr->inflight = buf;
		pr->id = id;
		pr->next = last_index(c) + 1;
		pr->state = PR_PROBE;
		pr->recent_active = true; /* a new member gets one check-quorum period to answer */
		return;
	}
	assert(0 && "more members than RAFT_NODES_MAX");
}

/* Leader: one progress per member other than self, voter flags from the configuration. */
static void prs_sync(raft_core_t *c)
{
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
		progress_t *pr = &c->prs[i];
		if (pr->id != 0 && (pr->id == c->id || !is_member(&c->conf, pr->id))) pr->id = 0;
	}
	const uint64_t *lists[2] = {c->conf.voters, c->conf.learners};
	uint32_t counts[2] = {c->conf.n_voters, c->conf.n_learners};
	for (int l = 0; l < 2; l++) {
		for (uint32_t i = 0; i < counts[l]; i++) {
			uint64_t id = lists[l][i];
			if (id == c->id) continue;
			if (pr_find(c, id) == NULL) pr_add(c, id);
			pr_find(c, id)->voter = l == 0;
		}
	}
}

/* The value a quorum of voters has reached: sort the voters' values descending, take q-th. */
static uint64_t quorum_value(const raft_core_t *c, const uint64_t *vals, uint32_t n)
{
	assert(n == c->conf.n_voters && n > 0);
	uint64_t v[RAFT_NODES_MAX];
	memcpy(v, vals, n * sizeof(v[0]));
	for (uint32_t i = 1; i < n; i++) {
		uint64_t x = v[i];
		uint32_t j = i;
		while (j > 0 && v[j - 1] < x) {
			v[j] = v[j - 1];
			j--;
		}
		v[j] = x;
	}
	return v[quorum(c) - 1];
}

/* ------------------------------------------------------------------ outbox */

static bool outbox_grow(outbox_t *o)
{
	if (o->cap >= RAFT_OUTBOX_MAX) return false;
	uint32_t cap = o->cap == 0 ? 16 : o->cap * 2;
	if (cap > RAFT_OUTBOX_MAX) cap = RAFT_OUTBOX_MAX;
	out_msg_t *v = realloc(o->v, cap * sizeof(*v));
	if (v == NULL) return false;
	o->v = v;
	raft_msg_t *rd = realloc(o->rd, cap * sizeof(*rd));
	if (rd == NULL) return false; /* o->v grown already; cap stays, retried next time */
	o->rd = rd;
	o->cap = cap;
	return true;
}

static raft_msg_t msg_new(const raft_core_t *c, uint8_t type, uint64_t to)
{
	raft_msg_t m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	m.from = c->id;
	m.to = to;
	m.term = c->term;
	return m;
}

/* Messages that promise durable state (a vote, an acknowledged log, the candidate's own vote)
 * go out only after the Ready's write is durable. */
static bool needs_persist(const raft_msg_t *m)
{
	switch (m->type) {
	case RAFT_MSG_APP_RESP:
	case RAFT_MSG_VOTE:
	case RAFT_MSG_VOTE_RESP:
		return true;
	case RAFT_MSG_SNAP_RESP:
		return (m->flags & RAFT_MSG_F_DONE) != 0;
	default:
		return false;
	}
}

static void send_msg(raft_core_t *c, const raft_msg_t *m, uint64_t last_term)
{
	assert(raft_msg_check(m, true) == 0 || (m->type == RAFT_MSG_APP && m->entries == NULL));
	outbox_t *o = needs_persist(m) ? &c->out_after : &c->out_now;
	if (o->n == o->cap && !outbox_grow(o)) {
		c->msgs_dropped++;
		return;
	}
	o->v[o->n].m = *m;
	o->v[o->n].last_term = last_term;
	o->n++;
}

/* ------------------------------------------------------------------ role changes */

static void reset(raft_core_t *c, uint64_t term)
{
	if (c->term != term) {
		c->term = term;
		c->vote = 0;
	}
	c->lead = 0;
	c->election_elapsed = 0;
	c->heartbeat_elapsed = 0;
	randomize_timeout(c);
	c->lead_transferee = 0;
	c->n_votes = 0;
	prs_clear(c);
	c->n_reads = 0; /* pending reads die with the leadership; callers time out and retry */
	c->lease_until_ms = 0;
	c->lease_revoked = false;
	c->uncommitted_bytes = 0;
	c->term_start_index = 0;
}

static void become_follower(raft_core_t *c, uint64_t term, uint64_t lead)
{
	reset(c, term);
	c->role = RAFT_FOLLOWER;
	c->lead = lead;
}

static void bcast_append(raft_core_t *c, bool send_if_empty);
static bool send_append(raft_core_t *c, progress_t *pr, bool send_if_empty);

static void become_leader(raft_core_t *c)
{
	assert(c->role == RAFT_CANDIDATE);
	reset(c, c->term);
	c->role = RAFT_LEADER;
	c->lead = c->id;
	prs_sync(c);
	raft_entry_t noop = {.index = last_index(c) + 1, .term = c->term, .type = RAFT_ENTRY_NOOP};
	if (log_append(c, &noop) != 0) {
		/* Without its no-op a leader can never commit: give the term up. */
		become_follower(c, c->term, 0);
		return;
	}
	c->term_start_index = noop.index;
	bcast_append(c, true);
}

/* Records id's answer; counts only voters of the configuration in force. */
static int poll(raft_core_t *c, uint64_t id, bool granted)
{
	if (raft_conf_is_voter(&c->conf, id)) {
		uint32_t i = 0;
		while (i < c->n_votes && c->vote_ids[i] != id)
			i++;
		if (i == c->n_votes && c->n_votes < RAFT_NODES_MAX) {
			c->vote_ids[i] = id;
			c->vote_granted[i] = granted;
			c->n_votes++;
		}
	}
	uint32_t yes = 0, no = 0;
	for (uint32_t i = 0; i < c->n_votes; i++) {
		if (!raft_conf_is_voter(&c->conf, c->vote_ids[i])) continue;
		if (c->vote_granted[i])
			yes++;
		else
			no++;
	}
	if (yes >= quorum(c)) return VOTE_WON;
	if (no > c->conf.n_voters - quorum(c)) return VOTE_LOST;
	return VOTE_PENDING;
}

static void request_votes(raft_core_t *c, uint8_t type, uint64_t term, bool transfer)
{
	for (uint32_t i = 0; i < c->conf.n_voters; i++) {
		uint64_t id = c->conf.voters[i];
		if (id == c->id) continue;
		raft_msg_t m = msg_new(c, type, id);
		m.term = term;
		m.index = last_index(c);
		m.log_term = last_term(c);
		m.flags = transfer ? RAFT_MSG_F_TRANSFER : 0;
		send_msg(c, &m, 0);
	}
}

static void campaign_real(raft_core_t *c, bool transfer)
{
	assert(promotable(c));
	reset(c, c->term + 1);
	c->role = RAFT_CANDIDATE;
	c->vote = c->id;
	if (poll(c, c->id, true) == VOTE_WON) {
		become_leader(c);
		return;
	}
	/* RAFT_MSG_VOTE waits for the Ready's write: our own vote must be durable before anyone
	 * can count on it (a restart with the old term could otherwise vote twice in this term). */
	request_votes(c, RAFT_MSG_VOTE, c->term, transfer);
}

static void campaign(raft_core_t *c)
{
	assert(promotable(c) && c->role != RAFT_LEADER);
	if (!c->cfg.pre_vote) {
		campaign_real(c, false);
		return;
	}
	c->role = RAFT_PRECANDIDATE;
	c->lead = 0;
	c->n_votes = 0;
	if (poll(c, c->id, true) == VOTE_WON) {
		campaign_real(c, false);
		return;
	}
	request_votes(c, RAFT_MSG_PREVOTE, c->term + 1, false);
}

/* ------------------------------------------------------------------ leader: replication */

static void send_snap_chunk(raft_core_t *c, progress_t *pr, uint64_t offset)
{
	if (!meta_equal(&pr->snap, &c->snap)) { /* a newer snapshot replaced it: start over */
		pr->snap = c->snap;
		pr->snap_acked = 0;
		offset = 0;
	}
	assert(offset <= pr->snap.size_bytes);
	uint64_t len = min_u64(c->cfg.snap_chunk_bytes, pr->snap.size_bytes - offset);
	raft_msg_t m = msg_new(c, RAFT_MSG_SNAP, pr->id);
	m.snap = pr->snap;
	m.offset = offset;
	m.chunk_len = (uint32_t)len;
	m.chunk = NULL; /* the application fills it in (core.h) */
	if (offset + len == pr->snap.size_bytes) m.flags = RAFT_MSG_F_DONE;
	send_msg(c, &m, 0);
	pr->snap_sent_offset = offset;
	pr->snap_idle_ticks = 0;
}

static void send_snapshot(raft_core_t *c, progress_t *pr)
{
	assert(c->snap.index >= c->base_index && c->snap.index > 0);
	pr->state = PR_SNAPSHOT;
	inflight_reset(pr);
	pr->snap = c->snap;
	pr->snap_acked = 0;
	send_snap_chunk(c, pr, 0);
}

/* Sends entries from pr->next (or an empty AppendEntries carrying commit when send_if_empty);
 * a snapshot when the entries it needs are compacted. Returns whether anything was sent. */
static bool send_append(raft_core_t *c, progress_t *pr, bool send_if_empty)
{
	if (pr_paused(c, pr)) return false;
	assert(pr->next >= 1 && pr->next <= last_index(c) + 1);
	uint64_t prev = pr->next - 1, prev_term;
	if (!term_at(c, prev, &prev_term)) {
		send_snapshot(c, pr);
		return true;
	}
	uint32_t n = 0;
	uint64_t bytes = 0;
	while (prev + n < last_index(c) && n < c->cfg.msg_entries_max) {
		uint32_t len = ent(c, prev + n + 1)->len;
		if (n > 0 && bytes + len > c->cfg.msg_bytes_max) break;
		bytes += len;
		n++;
	}
	if (n == 0 && !send_if_empty) return false;
	raft_msg_t m = msg_new(c, RAFT_MSG_APP, pr->id);
	m.index = prev;
	m.log_term = prev_term;
	m.commit = c->commit;
	m.n_entries = n;
	send_msg(c, &m, n > 0 ? ent(c, prev + n)->term : 0);
	if (pr->state == PR_REPLICATE && n > 0) {
		pr->next = prev + n + 1;
		inflight_add(c, pr, prev + n);
	} else if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
	}
	return true;
}

static void bcast_append(raft_core_t *c, bool send_if_empty)
{
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
		if (c->prs[i].id != 0) send_append(c, &c->prs[i], send_if_empty);
}

static void send_timeout_now(raft_core_t *c, uint64_t to)
{
	c->lease_revoked = true; /* its campaign ignores the voters' leases */
	c->lease_until_ms = 0;
	raft_msg_t m = msg_new(c, RAFT_MSG_TIMEOUT_NOW, to);
	send_msg(c, &m, 0);
}

/* ------------------------------------------------------------------ leader: reads */

static void push_read_state(raft_core_t *c, uint64_t ctx, uint64_t index)
{
	if (c->n_read_states == c->cfg.reads_max) {
		c->msgs_dropped++; /* the caller times out and retries */
		return;
	}
	c->read_states[c->n_read_states++] = (raft_read_state_t){.ctx = ctx, .index = index};
}

static void serve_read(raft_core_t *c, const read_req_t *r)
{
	if (r->from == c->id) {
		push_read_state(c, r->ctx, r->index);
		return;
	}
	raft_msg_t m = msg_new(c, RAFT_MSG_READ_INDEX_RESP, r->from);
	m.ctx = r->ctx;
	m.index = r->index;
	send_msg(c, &m, 0);
}

static bool reads_waiting(const raft_core_t *c)
{
	for (uint32_t i = 0; i < c->n_reads; i++)
		if (c->reads[i].round == c->read_round + 1) return true;
	return false;
}

/* Every heartbeat carries the newest round; requests waiting for a round start one. With lease
 * reads every heartbeat starts one: its answers renew the lease from its send time. */
static void bcast_heartbeat(raft_core_t *c)
{
	if (reads_waiting(c) || c->cfg.lease_ms) c->read_round++;
	c->round_sent_ms[c->read_round % LEASE_RING] = c->now_ms;
	c->round_of_slot[c->read_round % LEASE_RING] = c->read_round;
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
		progress_t *pr = &c->prs[i];
		if (pr->id == 0) continue;
		raft_msg_t m = msg_new(c, RAFT_MSG_HEARTBEAT, pr->id);
		m.commit = min_u64(pr->match, c->commit);
		m.ctx = c->read_round;
		send_msg(c, &m, 0);
	}
}

static bool committed_in_term(const raft_core_t *c)
{
	return c->term_start_index != 0 && c->commit >= c->term_start_index;
}

static bool sole_voter_is_self(const raft_core_t *c)
{
	return c->conf.n_voters == 1 && c->conf.voters[0] == c->id;
}

static void reads_release(raft_core_t *c)
{
	uint32_t keep = 0;
	for (uint32_t i = 0; i < c->n_reads; i++) {
		read_req_t r = c->reads[i];
		if (r.round != 0 && r.round <= c->read_confirmed)
			serve_read(c, &r);
		else
			c->reads[keep++] = r;
	}
	c->n_reads = keep;
}

/* Serves confirmed requests; starts the waiting round unless one is still in flight (then it
 * starts when that one is confirmed, or with the next heartbeat). */
static void reads_kick(raft_core_t *c)
{
	reads_release(c);
	if (reads_waiting(c) && c->read_round == c->read_confirmed) bcast_heartbeat(c);
}

/* A request that arrived after this term's first commit: its index is the commit now, and it is
 * confirmed by a round that starts after now. A sole voter confirms itself. */
static void read_schedule(raft_core_t *c, read_req_t *r)
{
	r->index = c->commit;
	r->round = c->read_round + 1;
}

static bool lease_valid(const raft_core_t *c)
{
	return c->cfg.lease_ms && !c->lease_revoked && c->lead_transferee == 0 && c->now_ms < c->lease_until_ms;
}

static int handle_read(raft_core_t *c, uint64_t from, uint64_t ctx)
{
	assert(c->role == RAFT_LEADER);
	if (committed_in_term(c) && (sole_voter_is_self(c) || lease_valid(c))) {
		read_req_t r = {.ctx = ctx, .from = from, .index = c->commit};
		serve_read(c, &r);
		return 0;
	}
	if (c->n_reads == c->cfg.reads_max) return RAFT_ERR_FULL;
	read_req_t *r = &c->reads[c->n_reads++];
	*r = (read_req_t){.ctx = ctx, .from = from};
	if (!committed_in_term(c)) return 0; /* round 0: scheduled when the no-op commits */
	read_schedule(c, r);
	reads_kick(c);
	return 0;
}

static void reads_confirm(raft_core_t *c)
{
	uint64_t vals[RAFT_NODES_MAX];
	for (uint32_t i = 0; i < c->conf.n_voters; i++) {
		uint64_t id = c->conf.voters[i];
		const progress_t *pr = id == c->id ? NULL : pr_find(c, id);
		vals[i] = id == c->id ? c->read_round : (pr != NULL ? pr->read_acked : 0);
	}
	uint64_t confirmed = quorum_value(c, vals, c->conf.n_voters);
	if (confirmed > c->read_confirmed) c->read_confirmed = confirmed;
	if (c->cfg.lease_ms && !c->lease_revoked && c->round_of_slot[confirmed % LEASE_RING] == confirmed &&
	    confirmed != 0) {
		uint64_t until = c->round_sent_ms[confirmed % LEASE_RING] + c->cfg.lease_ms;
		if (until > c->lease_until_ms) c->lease_until_ms = until;
	}
	reads_kick(c);
}

/* ------------------------------------------------------------------ leader: commit */

static void leader_on_commit(raft_core_t *c, uint64_t old_commit)
{
	for (uint64_t i = max_u64(old_commit + 1, c->term_start_index); i <= c->commit; i++) {
		uint64_t len = ent(c, i)->len;
		c->uncommitted_bytes = c->uncommitted_bytes > len ? c->uncommitted_bytes - len : 0;
	}
	if (old_commit < c->term_start_index && committed_in_term(c)) {
		bool self_only = sole_voter_is_self(c);
		if (self_only) c->read_confirmed = ++c->read_round; /* our own ack is the quorum */
		for (uint32_t i = 0; i < c->n_reads; i++) {
			if (c->reads[i].round != 0) continue;
			read_schedule(c, &c->reads[i]);
			if (self_only) c->reads[i].round = c->read_round;
		}
		reads_kick(c);
	}
}

static bool maybe_commit(raft_core_t *c)
{
	if (c->conf.n_voters == 0) return false;
	uint64_t vals[RAFT_NODES_MAX];
	for (uint32_t i = 0; i < c->conf.n_voters; i++) {
		uint64_t id = c->conf.voters[i];
		const progress_t *pr = id == c->id ? NULL : pr_find(c, id);
		vals[i] = id == c->id ? c->persisted : (pr != NULL ? pr->match : 0);
	}
	uint64_t mci = quorum_value(c, vals, c->conf.n_voters);
	/* The current-term rule (Raft §5.4.2): never commit an older term's entry by counting. */
	if (mci <= c->commit || !match_term(c, mci, c->term)) return false;
	uint64_t old = c->commit;
	c->commit = mci;
	leader_on_commit(c, old);
	return true;
}

/* After commit moved: tell followers; a leader the configuration removed steps down now. */
static void leader_commit_advanced(raft_core_t *c)
{
	bcast_append(c, true);
	if (!promotable(c) && c->conf_index <= c->commit) become_follower(c, c->term, 0);
}

static void maybe_send_timeout_now(raft_core_t *c, const progress_t *pr)
{
	if (c->lead_transferee == pr->id && pr->match == last_index(c)) send_timeout_now(c, pr->id);
}

/* The configuration in force changed (an append, a truncation, an install). */
static void conf_changed(raft_core_t *c)
{
	if (c->role != RAFT_LEADER) return;
	prs_sync(c);
	if (c->lead_transferee != 0 && !raft_conf_is_voter(&c->conf, c->lead_transferee))
		c->lead_transferee = 0;
	if (maybe_commit(c)) leader_commit_advanced(c);
}

/* ------------------------------------------------------------------ leader: responses */

static void handle_app_resp(raft_core_t *c, progress_t *pr, const raft_msg_t *m)
{
	if (m->flags & RAFT_MSG_F_REJECT) {
		uint64_t probe = m->hint;
		if (m->log_term > 0) probe = find_conflict_by_term(c, m->hint, m->log_term);
		if (pr_maybe_decr(pr, m->index, probe)) {
			if (pr->state == PR_REPLICATE) pr_become_probe(pr);
			send_append(c, pr, true);
		}
		return;
	}
	if (m->index > last_index(c)) return; /* cannot acknowledge what we never had: ignore */
	bool was_paused = pr_paused(c, pr);
	bool updated = pr_maybe_update(pr, m->index);
	if (!updated && !(pr->match == m->index && pr->state == PR_PROBE)) return;
	if (pr->state == PR_PROBE) {
		pr_become_replicate(pr);
	} else if (pr->state == PR_SNAPSHOT) {
		if (pr->match >= c->base_index) {
			pr_become_probe(pr);
			pr_become_replicate(pr);
		}
	} else {
		inflight_free_le(c, pr, m->index);
	}
	if (maybe_commit(c)) {
		leader_commit_advanced(c);
		if (c->role != RAFT_LEADER) return;
	} else if (was_paused) {
		send_append(c, pr, false);
	}
	for (uint32_t i = 0; i <= c->cfg.inflight_max && send_append(c, pr, false); i++) {
	}
	maybe_send_timeout_now(c, pr);
}

static void handle_heartbeat_resp(raft_core_t *c, progress_t *pr, const raft_msg_t *m)
{
	pr->probe_sent = false;
	if (pr->state == PR_REPLICATE && inflight_full(c, pr)) inflight_free_first(c, pr);
	if (pr->match < last_index(c)) send_append(c, pr, true);
	if (m->ctx <= c->read_round && m->ctx > pr->read_acked) {
		pr->read_acked = m->ctx;
		if (pr->voter) reads_confirm(c);
	}
}

static void handle_snap_resp(raft_core_t *c, progress_t *pr, const raft_msg_t *m)
{
	if (m->flags & RAFT_MSG_F_DONE) {
		if (m->index > last_index(c)) return;
		pr_maybe_update(pr, m->index);
		if (pr->state == PR_SNAPSHOT || pr->state == PR_PROBE) pr_become_probe(pr);
		if (maybe_commit(c)) {
			leader_commit_advanced(c);
			if (c->role != RAFT_LEADER) return;
		}
		send_append(c, pr, true);
		maybe_send_timeout_now(c, pr);
		return;
	}
	if (pr->state != PR_SNAPSHOT || m->index != pr->snap.index || m->offset > pr->snap.size_bytes) return;
	if (m->flags & RAFT_MSG_F_REJECT) {
		/* the follower lost (or never had) the start: rewind, once per distinct rewind */
		if (m->offset < pr->snap_acked) {
			pr->snap_acked = m->offset;
			send_snap_chunk(c, pr, m->offset);
		}
		return;
	}
	/* only an advancing acknowledgement sends: duplicated acks must not multiply chunks */
	if (m->offset > pr->snap_acked) {
		pr->snap_acked = m->offset;
		if (m->offset < pr->snap.size_bytes) send_snap_chunk(c, pr, m->offset);
	}
}

/* ------------------------------------------------------------------ follower */

static void commit_to(raft_core_t *c, uint64_t index)
{
	if (index > c->commit) c->commit = index;
}

static void send_app_resp(raft_core_t *c, uint64_t to, uint64_t index)
{
	raft_msg_t m = msg_new(c, RAFT_MSG_APP_RESP, to);
	m.index = index;
	send_msg(c, &m, 0);
}

static int handle_append(raft_core_t *c, const raft_msg_t *m)
{
	if (c->install_pending) return 0; /* the log is frozen until the install completes */
	if (m->index < c->commit) {
		send_app_resp(c, m->from, c->commit);
		return 0;
	}
	if (!match_term(c, m->index, m->log_term)) {
		uint64_t hint = find_conflict_by_term(c, min_u64(m->index, last_index(c)), m->log_term);
		uint64_t hint_term = 0;
		term_at(c, hint, &hint_term);
		raft_msg_t r = msg_new(c, RAFT_MSG_APP_RESP, m->from);
		r.flags = RAFT_MSG_F_REJECT;
		r.index = m->index;
		r.hint = hint;
		r.log_term = hint_term;
		send_msg(c, &r, 0);
		return 0;
	}
	uint32_t k = 0;
	while (k < m->n_entries && match_term(c, m->entries[k].index, m->entries[k].term))
		k++;
	if (k < m->n_entries) {
		uint64_t ci = m->entries[k].index;
		assert(ci > c->commit); /* entries start above m->index >= commit */
		if (ci <= last_index(c)) {
			bool conf_lost = c->conf_index >= ci;
			log_truncate_from(c, ci);
			if (conf_lost) conf_rebuild(c);
		}
		for (; k < m->n_entries; k++) {
			const raft_entry_t *e = &m->entries[k];
			if (log_append(c, e) != 0) return -ENOMEM; /* a consistent prefix stays; no answer */
			if (e->type == RAFT_ENTRY_CONF) conf_from_entry(c, e);
		}
	}
	uint64_t lastnew = m->index + m->n_entries;
	commit_to(c, min_u64(m->commit, lastnew));
	send_app_resp(c, m->from, lastnew);
	return 0;
}

static void handle_heartbeat(raft_core_t *c, const raft_msg_t *m)
{
	commit_to(c, min_u64(m->commit, last_index(c)));
	raft_msg_t r = msg_new(c, RAFT_MSG_HEARTBEAT_RESP, m->from);
	r.ctx = m->ctx;
	send_msg(c, &r, 0);
}

static void send_snap_resp(raft_core_t *c, uint64_t to, uint64_t index, uint64_t offset, uint8_t flags)
{
	raft_msg_t r = msg_new(c, RAFT_MSG_SNAP_RESP, to);
	r.index = index;
	r.offset = offset;
	r.flags = flags;
	send_msg(c, &r, 0);
}

static void chunks_drop(raft_core_t *c)
{
	for (uint32_t i = 0; i < c->n_chunks; i++)
		free(c->chunks[i].data);
	c->n_chunks = 0;
}

static void handle_snap(raft_core_t *c, const raft_msg_t *m)
{
	if (c->install_pending) return;
	const raft_snapshot_meta_t *s = &m->snap;
	/* Already covered: everything up to commit matches every leader's log. */
	if (s->index <= c->commit) {
		c->recv_active = false;
		send_snap_resp(c, m->from, c->commit, 0, RAFT_MSG_F_DONE);
		return;
	}
	if (match_term(c, s->index, s->term)) {
		c->recv_active = false;
		commit_to(c, s->index);
		send_snap_resp(c, m->from, s->index, 0, RAFT_MSG_F_DONE);
		return;
	}
	bool same = c->recv_active && c->recv_from == m->from && c->recv_term == m->term &&
	            meta_equal(&c->recv_meta, s);
	if (!same && m->offset == 0) {
		c->recv_active = true;
		c->recv_from = m->from;
		c->recv_term = m->term;
		c->recv_meta = *s;
		c->recv_next = 0;
		chunks_drop(c);
		same = true;
	}
	if (!same) {
		send_snap_resp(c, m->from, s->index, 0, RAFT_MSG_F_REJECT);
		return;
	}
	if (m->offset < c->recv_next) {
		send_snap_resp(c, m->from, s->index, c->recv_next, 0);
		return;
	}
	if (m->offset > c->recv_next) {
		send_snap_resp(c, m->from, s->index, c->recv_next, RAFT_MSG_F_REJECT);
		return;
	}
	if (c->n_chunks == RAFT_SNAP_CHUNKS_PENDING) return; /* no room until the next Ready: resent */
	void *data = NULL;
	if (m->chunk_len > 0) {
		data = malloc(m->chunk_len);
		if (data == NULL) return; /* treated as lost */
		memcpy(data, m->chunk, m->chunk_len);
	}
	chunk_buf_t *cb = &c->chunks[c->n_chunks++];
	cb->data = data;
	cb->c = (raft_snap_chunk_t){
	    .snap_index = s->index, .offset = m->offset, .data = data, .len = m->chunk_len};
	c->recv_next += m->chunk_len;
	if (m->flags & RAFT_MSG_F_DONE) {
		assert(c->recv_next == s->size_bytes);
		c->install_pending = true;
		c->install_emit = true;
		return; /* acknowledged by raft_core_snapshot_installed() */
	}
	send_snap_resp(c, m->from, s->index, c->recv_next, 0);
}

/* ------------------------------------------------------------------ votes */

static void handle_vote_request(raft_core_t *c, const raft_msg_t *m)
{
	bool pre = m->type == RAFT_MSG_PREVOTE;
	bool can_vote = c->vote == m->from || (c->vote == 0 && c->lead == 0) || (pre && m->term > c->term);
	bool up_to_date =
	    m->log_term > last_term(c) || (m->log_term == last_term(c) && m->index >= last_index(c));
	raft_msg_t r = msg_new(c, pre ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
	if (can_vote && up_to_date) {
		r.term = m->term;
		if (!pre) {
			c->election_elapsed = 0;
			c->vote = m->from;
		}
	} else {
		r.flags = RAFT_MSG_F_REJECT;
	}
	send_msg(c, &r, 0);
}

/* ------------------------------------------------------------------ step */

static void step_leader(raft_core_t *c, const raft_msg_t *m)
{
	progress_t *pr = pr_find(c, m->from);
	if (pr == NULL) return;
	pr->recent_active = true;
	switch (m->type) {
	case RAFT_MSG_APP_RESP:
		handle_app_resp(c, pr, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		handle_heartbeat_resp(c, pr, m);
		break;
	case RAFT_MSG_SNAP_RESP:
		handle_snap_resp(c, pr, m);
		break;
	case RAFT_MSG_READ_INDEX:
		handle_read(c, m->from, m->ctx);
		break; /* full: dropped */
	default:
		break;
	}
}

static int step_follower(raft_core_t *c, const raft_msg_t *m)
{
	switch (m->type) {
	case RAFT_MSG_APP:
		c->election_elapsed = 0;
		c->lead = m->from;
		return handle_append(c, m);
	case RAFT_MSG_HEARTBEAT:
		c->election_elapsed = 0;
		c->lead = m->from;
		handle_heartbeat(c, m);
		return 0;
	case RAFT_MSG_SNAP:
		c->election_elapsed = 0;
		c->lead = m->from;
		handle_snap(c, m);
		return 0;
	case RAFT_MSG_TIMEOUT_NOW:
		if (promotable(c) && !c->install_pending) campaign_real(c, true);
		return 0;
	default:
		return 0;
	}
}

static int step_candidate(raft_core_t *c, const raft_msg_t *m)
{
	switch (m->type) {
	case RAFT_MSG_APP:
	case RAFT_MSG_HEARTBEAT:
	case RAFT_MSG_SNAP:
		become_follower(c, c->term, m->from);
		return step_follower(c, m);
	case RAFT_MSG_VOTE_RESP:
	case RAFT_MSG_PREVOTE_RESP: {
		bool pre = c->role == RAFT_PRECANDIDATE;
		if (pre != (m->type == RAFT_MSG_PREVOTE_RESP)) return 0;
		bool granted = !(m->flags & RAFT_MSG_F_REJECT);
		if (pre && granted && m->term != c->term + 1) return 0; /* from an older pre-campaign */
		int r = poll(c, m->from, granted);
		if (r == VOTE_WON) {
			if (pre)
				campaign_real(c, false);
			else
				become_leader(c);
		} else if (r == VOTE_LOST) {
			become_follower(c, c->term, 0);
		}
		return 0;
	}
	default:
		return 0;
	}
}

int raft_core_step(raft_core_t *c, const raft_msg_t *m)
{
	assert(c != NULL && m != NULL && !c->in_ready);
	if (raft_msg_check(m, false) != 0 || m->to != c->id) return -EINVAL;
	bool vote_req = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
	if (m->term > c->term) {
		if (vote_req) {
			bool force = (m->flags & RAFT_MSG_F_TRANSFER) != 0;
			bool in_lease = (c->cfg.check_quorum && c->lead != 0 &&
			                 c->election_elapsed < c->cfg.election_ticks) ||
			                (c->cfg.lease_ms && c->ticks < c->cfg.election_ticks);
			if (!force && in_lease) return 0; /* a leader is alive: do not let it be disrupted */
		}
		if (m->type == RAFT_MSG_PREVOTE) {
			/* a pre-vote never changes our term */
		} else if (m->type == RAFT_MSG_PREVOTE_RESP && !(m->flags & RAFT_MSG_F_REJECT)) {
			/* a granted pre-vote carries the term we would campaign for */
		} else if (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT ||
		           m->type == RAFT_MSG_SNAP) {
			become_follower(c, m->term, m->from);
		} else {
			become_follower(c, m->term, 0);
		}
	} else if (m->term < c->term) {
		if ((c->cfg.check_quorum || c->cfg.pre_vote) &&
		    (m->type == RAFT_MSG_APP || m->type == RAFT_MSG_HEARTBEAT)) {
			/* a stale leader (partitioned, its term behind): our term makes it step down. A
			 * heartbeat answer carries no claim about our log, so it is harmless if the old
			 * leader has meanwhile reached our term. */
			raft_msg_t r = msg_new(c, RAFT_MSG_HEARTBEAT_RESP, m->from);
			send_msg(c, &r, 0);
		} else if (m->type == RAFT_MSG_PREVOTE) {
			raft_msg_t r = msg_new(c, RAFT_MSG_PREVOTE_RESP, m->from);
			r.flags = RAFT_MSG_F_REJECT;
			send_msg(c, &r, 0);
		}
		return 0;
	}
	if (vote_req) {
		handle_vote_request(c, m);
		return 0;
	}
	if (m->type == RAFT_MSG_READ_INDEX_RESP) {
		push_read_state(c, m->ctx, m->index);
		return 0;
	}
	switch (c->role) {
	case RAFT_LEADER:
		step_leader(c, m);
		return 0;
	case RAFT_FOLLOWER:
		return step_follower(c, m);
	default:
		return step_candidate(c, m);
	}
}

/* ------------------------------------------------------------------ tick */

static bool quorum_active(raft_core_t *c)
{
	uint32_t active = 0;
	for (uint32_t i = 0; i < c->conf.n_voters; i++) {
		uint64_t id = c->conf.voters[i];
		const progress_t *pr = id == c->id ? NULL : pr_find(c, id);
		if (id == c->id || (pr != NULL && pr->recent_active)) active++;
	}
	return active >= quorum(c);
}

static void tick_leader(raft_core_t *c)
{
	c->heartbeat_elapsed++;
	c->election_elapsed++;
	if (c->election_elapsed >= c->cfg.election_ticks) {
		c->election_elapsed = 0;
		if (c->cfg.check_quorum) {
			if (!quorum_active(c)) {
				become_follower(c, c->term, 0);
				return;
			}
			for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
				c->prs[i].recent_active = false;
		}
		c->lead_transferee = 0; /* a transfer gets one election timeout */
	}
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
		progress_t *pr = &c->prs[i];
		if (pr->id == 0 || pr->state != PR_SNAPSHOT) continue;
		if (++pr->snap_idle_ticks < c->cfg.snap_resend_ticks) continue;
		send_snap_chunk(c, pr,
		                pr->snap_acked < pr->snap.size_bytes ? pr->snap_acked : pr->snap_sent_offset);
	}
	if (c->heartbeat_elapsed >= c->cfg.heartbeat_ticks) {
		c->heartbeat_elapsed = 0;
		bcast_heartbeat(c);
	}
}

void raft_core_set_clock(raft_core_t *c, uint64_t now_ms)
{
	assert(c != NULL);
	if (now_ms > c->now_ms) c->now_ms = now_ms;
}

void raft_core_tick(raft_core_t *c)
{
	assert(c != NULL && !c->in_ready);
	if (c->ticks < UINT64_MAX) c->ticks++;
	if (c->role == RAFT_LEADER) {
		tick_leader(c);
		return;
	}
	if (c->election_elapsed < UINT32_MAX) c->election_elapsed++; /* a non-voter only ever counts */
	if (promotable(c) && !c->install_pending && c->election_elapsed >= c->election_timeout) {
		c->election_elapsed = 0;
		campaign(c);
	}
}

/* ------------------------------------------------------------------ application inputs */

int64_t raft_core_propose(raft_core_t *c, const void *data, size_t len)
{
	assert(c != NULL && !c->in_ready && (data != NULL || len == 0));
	if (c->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
	if (c->lead_transferee != 0) return RAFT_ERR_AGAIN;
	if (len > c->cfg.entry_bytes_max) return RAFT_ERR_TOO_BIG;
	if (c->uncommitted_bytes > 0 && c->uncommitted_bytes + len > c->cfg.uncommitted_bytes_max)
		return RAFT_ERR_FULL;
	raft_entry_t e = {.index = last_index(c) + 1,
	                  .term = c->term,
	                  .type = RAFT_ENTRY_NORMAL,
	                  .len = (uint32_t)len,
	                  .data = len > 0 ? data : NULL};
	if (log_append(c, &e) != 0) return -ENOMEM;
	c->uncommitted_bytes += len;
	bcast_append(c, false);
	return (int64_t)e.index;
}

int64_t raft_core_propose_conf(raft_core_t *c, raft_conf_op_t op, uint64_t id)
{
	assert(c != NULL && !c->in_ready);
	if (c->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
	if (c->lead_transferee != 0) return RAFT_ERR_AGAIN;
	if (id == 0 || op < RAFT_CONF_ADD_LEARNER || op > RAFT_CONF_REMOVE) return -EINVAL;
	if (c->conf_index > c->commit) return RAFT_ERR_BUSY;
	/* Ongaro's fix for single-server changes: first commit an entry of this term. */
	if (!committed_in_term(c)) return RAFT_ERR_AGAIN;
	raft_conf_t n = c->conf;
	bool voter = raft_conf_is_voter(&n, id), learner = raft_conf_is_learner(&n, id);
	switch (op) {
	case RAFT_CONF_ADD_LEARNER:
		if (voter || learner) return -EEXIST;
		if (n.n_voters + n.n_learners == RAFT_NODES_MAX) return -ENOSPC;
		n.learners[n.n_learners++] = id;
		break;
	case RAFT_CONF_ADD_VOTER: {
		if (voter) return -EEXIST;
		if (!learner) return -ENOENT;
		const progress_t *pr = pr_find(c, id);
		if (pr == NULL || pr->match < c->commit) return RAFT_ERR_AGAIN;
		uint32_t j = 0;
		for (uint32_t i = 0; i < n.n_learners; i++)
			if (n.learners[i] != id) n.learners[j++] = n.learners[i];
		n.n_learners = j;
		n.voters[n.n_voters++] = id;
		break;
	}
	case RAFT_CONF_REMOVE: {
		if (!voter && !learner) return -ENOENT;
		if (voter && n.n_voters == 1) return -EINVAL;
		uint64_t *list = voter ? n.voters : n.learners;
		uint32_t *count = voter ? &n.n_voters : &n.n_learners;
		uint32_t j = 0;
		for (uint32_t i = 0; i < *count; i++)
			if (list[i] != id) list[j++] = list[i];
		*count = j;
		break;
	}
	}
	uint8_t buf[RAFT_CONF_HEADER_BYTES + 8 * RAFT_NODES_MAX];
	int len = raft_conf_encode(op, id, &n, buf, sizeof(buf));
	assert(len > 0);
	raft_entry_t e = {.index = last_index(c) + 1,
	                  .term = c->term,
	                  .type = RAFT_ENTRY_CONF,
	                  .len = (uint32_t)len,
	                  .data = buf};
	if (log_append(c, &e) != 0) return -ENOMEM;
	conf_from_entry(c, &e);
	conf_changed(c);
	if (c->role == RAFT_LEADER) bcast_append(c, false);
	return (int64_t)e.index;
}

int raft_core_read_index(raft_core_t *c, uint64_t ctx)
{
	assert(c != NULL && !c->in_ready);
	if (c->role == RAFT_LEADER) return handle_read(c, c->id, ctx);
	if (c->role != RAFT_FOLLOWER || c->lead == 0) return RAFT_ERR_NO_LEADER;
	raft_msg_t m = msg_new(c, RAFT_MSG_READ_INDEX, c->lead);
	m.ctx = ctx;
	send_msg(c, &m, 0);
	return 0;
}

int raft_core_transfer_leader(raft_core_t *c, uint64_t id)
{
	assert(c != NULL && !c->in_ready);
	if (c->role != RAFT_LEADER) return RAFT_ERR_NOT_LEADER;
	if (id == c->id || !raft_conf_is_voter(&c->conf, id)) return -EINVAL;
	if (c->lead_transferee == id) return 0;
	c->lead_transferee = id;
	c->election_elapsed = 0;
	progress_t *pr = pr_find(c, id);
	assert(pr != NULL);
	if (pr->match == last_index(c))
		send_timeout_now(c, id);
	else
		send_append(c, pr, true);
	return 0;
}

int raft_core_campaign(raft_core_t *c)
{
	assert(c != NULL && !c->in_ready);
	if (c->role == RAFT_LEADER) return -EALREADY;
	if (!promotable(c)) return -EPERM;
	if (c->install_pending) return RAFT_ERR_AGAIN;
	campaign(c);
	return 0;
}

void raft_core_persisted(raft_core_t *c, uint64_t index, uint64_t term)
{
	assert(c != NULL && !c->in_ready);
	if (index <= c->persisted || index >= c->unstable_from || !match_term(c, index, term)) return;
	c->persisted = index;
	if (c->role == RAFT_LEADER && maybe_commit(c)) leader_commit_advanced(c);
}

int raft_core_snapshot_meta(const raft_core_t *c, uint64_t index, raft_snapshot_meta_t *out)
{
	assert(c != NULL && out != NULL);
	uint64_t t;
	if (index > c->applied || index < c->snap.index || !term_at(c, index, &t)) return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->index = index;
	out->term = t;
	conf_at(c, index, &out->conf);
	return 0;
}

int raft_core_compact(raft_core_t *c, uint64_t compact_index, const raft_snapshot_meta_t *meta)
{
	assert(c != NULL && meta != NULL && !c->in_ready);
	raft_snapshot_meta_t expect;
	if (raft_core_snapshot_meta(c, meta->index, &expect) != 0) return -EINVAL;
	expect.size_bytes = meta->size_bytes;
	if (!meta_equal(&expect, meta) || compact_index > meta->index) return -EINVAL;
	if (meta->index == 0) return 0; /* nothing to describe yet */
	c->snap = *meta;
	if (compact_index > c->base_index) log_compact_to(c, compact_index);
	return 0;
}

int raft_core_snapshot_installed(raft_core_t *c, const raft_snapshot_meta_t *meta)
{
	assert(c != NULL && meta != NULL && !c->in_ready);
	if (!c->install_pending || !meta_equal(meta, &c->recv_meta)) return -EINVAL;
	c->install_pending = false;
	c->recv_active = false;
	/* The install was decided because the log does not hold (index, term): drop all of it. */
	log_clear(c, meta->index, meta->term);
	c->snap = *meta;
	conf_rebuild(c);
	c->commit = max_u64(c->commit, meta->index);
	c->applied = meta->index;
	c->persisted = meta->index;
	c->unstable_from = meta->index + 1;
	conf_changed(c);
	uint64_t to = c->lead != 0 ? c->lead : c->recv_from;
	send_snap_resp(c, to, meta->index, meta->size_bytes, RAFT_MSG_F_DONE);
	return 0;
}

/* ------------------------------------------------------------------ Ready */

static raft_hard_state_t hard_state(const raft_core_t *c)
{
	return (raft_hard_state_t){.term = c->term, .vote = c->vote, .commit = c->commit};
}

static raft_soft_state_t soft_state(const raft_core_t *c)
{
	return (raft_soft_state_t){.role = c->role, .lead = c->lead, .term = c->term};
}

static bool hs_equal(raft_hard_state_t a, raft_hard_state_t b)
{
	return a.term == b.term && a.vote == b.vote && a.commit == b.commit;
}

static bool ss_equal(raft_soft_state_t a, raft_soft_state_t b)
{
	return a.role == b.role && a.lead == b.lead && a.term == b.term;
}

static uint64_t applicable(const raft_core_t *c)
{
	if (c->install_pending) return c->applied;
	return max_u64(c->applied, min_u64(c->commit, c->persisted));
}

bool raft_core_has_ready(const raft_core_t *c)
{
	assert(c != NULL);
	return !hs_equal(hard_state(c), c->prev_hs) || !ss_equal(soft_state(c), c->prev_ss) ||
	       c->unstable_from <= last_index(c) || c->out_now.n > 0 || c->out_after.n > 0 ||
	       c->n_read_states > 0 || c->n_chunks > 0 || c->install_emit || applicable(c) > c->applied;
}

static size_t resolve(raft_core_t *c, outbox_t *o)
{
	size_t n = 0;
	for (uint32_t i = 0; i < o->n; i++) {
		raft_msg_t m = o->v[i].m;
		if (m.type == RAFT_MSG_APP && m.n_entries > 0) {
			uint64_t first = m.index + 1, last = m.index + m.n_entries;
			if (first <= c->base_index || !match_term(c, last, o->v[i].last_term)) {
				c->msgs_dropped++; /* truncated or compacted since: as if lost */
				continue;
			}
			m.entries = ent(c, first);
		}
		o->rd[n++] = m;
	}
	return n;
}

void raft_core_ready(raft_core_t *c, raft_ready_t *rd)
{
	assert(c != NULL && rd != NULL && !c->in_ready);
	c->in_ready = true;
	memset(rd, 0, sizeof(*rd));
	rd->hard_state = hard_state(c);
	rd->hard_state_changed = !hs_equal(rd->hard_state, c->prev_hs);
	rd->soft_state = soft_state(c);
	rd->soft_state_changed = !ss_equal(rd->soft_state, c->prev_ss);
	rd->entries_first_index = c->unstable_from;
	if (c->unstable_from <= last_index(c)) {
		assert(c->unstable_from > c->base_index);
		rd->entries = ent(c, c->unstable_from);
		rd->n_entries = (size_t)(last_index(c) - c->unstable_from + 1);
	}
	rd->must_sync = rd->n_entries > 0 || rd->hard_state.term != c->prev_hs.term ||
	                rd->hard_state.vote != c->prev_hs.vote;
	uint64_t hi = applicable(c);
	if (hi > c->applied) {
		rd->committed = ent(c, c->applied + 1);
		rd->n_committed = (size_t)min_u64(hi - c->applied, RAFT_APPLY_BATCH_MAX);
	}
	rd->msgs = c->out_now.rd;
	rd->n_msgs = resolve(c, &c->out_now);
	rd->msgs_after_persist = c->out_after.rd;
	rd->n_msgs_after_persist = resolve(c, &c->out_after);
	rd->read_states = c->read_states;
	rd->n_read_states = c->n_read_states;
	for (uint32_t i = 0; i < c->n_chunks; i++)
		c->rd_chunks[i] = c->chunks[i].c;
	rd->snap_chunks = c->rd_chunks;
	rd->n_snap_chunks = c->n_chunks;
	if (c->install_emit) {
		rd->snapshot_install = true;
		rd->snapshot = c->recv_meta;
	}
}

void raft_core_advance(raft_core_t *c, const raft_ready_t *rd)
{
	assert(c != NULL && rd != NULL && c->in_ready);
	c->in_ready = false;
	if (rd->hard_state_changed) c->prev_hs = rd->hard_state;
	if (rd->soft_state_changed) c->prev_ss = rd->soft_state;
	if (rd->n_entries > 0) {
		assert(rd->entries_first_index == c->unstable_from);
		c->unstable_from = rd->entries_first_index + rd->n_entries;
	}
	if (rd->n_committed > 0) {
		assert(rd->committed[0].index == c->applied + 1);
		c->applied += rd->n_committed;
	}
	c->out_now.n = 0;
	c->out_after.n = 0;
	c->n_read_states = 0;
	chunks_drop(c);
	c->install_emit = false;
}

/* ------------------------------------------------------------------ construction */

static int config_check(const raft_config_t *k)
{
	if (k->id == 0 || k->heartbeat_ticks == 0 || k->election_ticks <= k->heartbeat_ticks) return -EINVAL;
	if (k->inflight_max == 0 || k->inflight_max > RAFT_INFLIGHT_MAX) return -EINVAL;
	if (k->msg_entries_max == 0 || k->msg_entries_max > RAFT_MSG_ENTRIES_MAX) return -EINVAL;
	if (k->msg_bytes_max == 0 || k->msg_bytes_max > RAFT_ENTRY_BYTES_MAX) return -EINVAL;
	if (k->entry_bytes_max == 0 || k->entry_bytes_max > RAFT_ENTRY_BYTES_MAX) return -EINVAL;
	if (k->uncommitted_bytes_max == 0) return -EINVAL;
	if (k->snap_chunk_bytes == 0 || k->snap_chunk_bytes > RAFT_SNAP_CHUNK_BYTES_MAX) return -EINVAL;
	if (k->snap_resend_ticks == 0) return -EINVAL;
	if (k->reads_max == 0 || k->reads_max > RAFT_READS_MAX) return -EINVAL;
	if (k->lease_ms && !k->check_quorum) return -EINVAL;
	return 0;
}

/* Which restored entries to keep (core.h, raft_restore_t): *skip of them are dropped in front. */
static int restore_plan(const raft_restore_t *r, size_t *skip, size_t *keep)
{
	const raft_snapshot_meta_t *s = &r->snapshot;
	if ((s->index == 0) != (s->term == 0) || raft_conf_check(&s->conf) != 0) return -EINVAL;
	if (r->hard_state.term < s->term || (r->n_entries > 0 && r->entries == NULL)) return -EINVAL;
	for (size_t i = 0; i < r->n_entries; i++) {
		const raft_entry_t *e = &r->entries[i];
		if (i > 0 && (e->index != r->entries[i - 1].index + 1 || e->term < r->entries[i - 1].term))
			return -EINVAL;
		if (e->term > r->hard_state.term || raft_entry_check(e) != 0) return -EINVAL;
	}
	*skip = 0;
	*keep = 0;
	if (r->n_entries == 0) return 0;
	uint64_t first = r->entries[0].index, last = first + r->n_entries - 1;
	if (first == 0 || first > s->index + 1) return -EINVAL;
	if (first == s->index + 1) {
		if (r->entries[0].term < s->term) return -EINVAL;
		*keep = r->n_entries;
		return 0;
	}
	if (last < s->index || r->entries[s->index - first].term != s->term) return 0; /* stale: drop */
	*skip = 1; /* the first serves as base */
	*keep = r->n_entries - 1;
	return 0;
}

int raft_core_new(const raft_config_t *cfg, const raft_restore_t *r, raft_core_t **out)
{
	assert(cfg != NULL && r != NULL && out != NULL);
	*out = NULL;
	if (config_check(cfg) != 0) return -EINVAL;
	size_t skip, keep;
	if (restore_plan(r, &skip, &keep) != 0) return -EINVAL;
	raft_core_t *c = calloc(1, sizeof(*c));
	if (c == NULL) return -ENOMEM;
	c->cfg = *cfg;
	c->id = cfg->id;
	c->rng = cfg->seed ^ (cfg->id * 0xD1B54A32D192ED03ull);
	c->inflight_buf = calloc((size_t)RAFT_NODES_MAX * cfg->inflight_max, sizeof(uint64_t));
	c->reads = calloc(cfg->reads_max, sizeof(*c->reads));
	c->read_states = calloc(cfg->reads_max, sizeof(*c->read_states));
	if (c->inflight_buf == NULL || c->reads == NULL || c->read_states == NULL) goto err;
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
		c->prs[i].inflight = c->inflight_buf + (size_t)i * cfg->inflight_max;

	c->snap = r->snapshot;
	if (skip == 1) {
		c->base_index = r->entries[0].index;
		c->base_term = r->entries[0].term;
	} else {
		c->base_index = r->snapshot.index;
		c->base_term = r->snapshot.term;
	}
	for (size_t i = 0; i < keep; i++)
		if (log_append(c, &r->entries[skip + i]) != 0) goto err;
	if (r->applied < r->snapshot.index || r->applied > last_index(c)) {
		raft_core_free(c);
		return -EINVAL;
	}
	c->term = r->hard_state.term;
	c->vote = r->hard_state.vote;
	c->commit = min_u64(max_u64(r->hard_state.commit, r->applied), last_index(c));
	c->applied = r->applied;
	c->persisted = last_index(c);
	c->unstable_from = last_index(c) + 1;
	conf_rebuild(c);
	c->role = RAFT_FOLLOWER;
	randomize_timeout(c);
	c->prev_hs = r->hard_state;
	c->prev_ss = soft_state(c);
	*out = c;
	return 0;
err:
	raft_core_free(c);
	return -ENOMEM;
}

void raft_core_free(raft_core_t *c)
{
	if (c == NULL) return;
	log_clear(c, 0, 0);
	chunks_drop(c);
	free(c->ents);
	free(c->inflight_buf);
	free(c->reads);
	free(c->read_states);
	free(c->out_now.v);
	free(c->out_now.rd);
	free(c->out_after.v);
	free(c->out_after.rd);
	free(c);
}

/* ------------------------------------------------------------------ inspection */

void raft_core_status(const raft_core_t *c, raft_status_t *st)
{
	assert(c != NULL && st != NULL);
	memset(st, 0, sizeof(*st));
	st->id = c->id;
	st->role = c->role;
	st->term = c->term;
	st->vote = c->vote;
	st->lead = c->lead;
	st->commit = c->commit;
	st->applied = c->applied;
	st->persisted = c->persisted;
	st->first_index = c->base_index + 1;
	st->last_index = last_index(c);
	st->snap_index = c->snap.index;
	st->snap_term = c->snap.term;
	st->conf = c->conf;
	st->lead_transferee = c->lead_transferee;
	st->msgs_dropped = c->msgs_dropped;
	if (c->role != RAFT_LEADER) return;
	for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
		const progress_t *pr = &c->prs[i];
		if (pr->id == 0) continue;
		st->peers[st->n_peers++] = (raft_peer_status_t){.id = pr->id,
		                                                .voter = pr->voter,
		                                                .state = pr->state,
		                                                .match = pr->match,
		                                                .next = pr->next};
	}
}

int raft_core_entry(const raft_core_t *c, uint64_t index, raft_entry_t *out)
{
	assert(c != NULL && out != NULL);
	if (index <= c->base_index || index > last_index(c)) return -ENOENT;
	*out = *ent(c, index);
	return 0;
}

bool raft_core_term_at(const raft_core_t *c, uint64_t index, uint64_t *term)
{
	assert(c != NULL && term != NULL);
	return term_at(c, index, term);
}
