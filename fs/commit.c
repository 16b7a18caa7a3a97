/* commit.c - metastored's side of Raft: proposals, read barriers, the apply callback.
 *
 * Every change a request makes is one sm_txn_t with origin (this node id, origin_seq), encoded
 * with the codec and proposed as one blob; the request waits in the pending table under
 * origin_seq. origin_seq = boot_epoch << 32 | counter: strictly increasing across restarts
 * because the boot epoch (DATA/boot) is incremented and fsynced at every start; the state
 * machine uses (origin_node, origin_seq) to apply a retried blob once. Read barriers wait in the
 * same table under ids with the top bit set (never a valid origin_seq).
 *
 * The apply callback decodes every blob of the entry into one sm_batch_t and applies it. A
 * blob that does not decode is skipped the same way on every node (all replicas see the same
 * bytes) and counted. Then, txn by txn in log order: the txn's events update the inode table
 * and go to the change sinks, and a txn this node proposed completes its pending request with
 * the txn's result. A duplicate (already applied) txn completes nothing: its first application
 * did, or the request already timed out.
 */
#include "daemon.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define READ_ID_BIT (1ull << 63)

/* ------------------------------------------------------------------ pending table */

static size_t bucket_of(uint64_t id)
{
	id ^= id >> 29;
	id *= 0xbf58476d1ce4e5b9ull;
	id ^= id >> 32;
	return (size_t)(id & (MS_PENDING_BUCKETS - 1));
}

pending_t *ms_pending_new(ms_t *d, pend_kind_t kind, ms_op_t op, fuse_req_t req, uint64_t t0_ns)
{
	(void)d;
	pending_t *p = calloc(1, sizeof *p);
	if (!p) return NULL;
	p->kind = kind;
	p->op = op;
	p->req = req;
	p->t0_ns = t0_ns;
	return p;
}

void ms_pending_free(ms_t *d, pending_t *p)
{
	if (!p) return;
	if (p->fh) ms_fh_unref(d, p->fh);
	free(p->key);
	free(p);
}

static int park(ms_t *d, pending_t *p)
{
	if (d->n_pending >= MS_PENDING_MAX) return -EAGAIN;
	size_t b = bucket_of(p->id);
	p->next = d->pending[b];
	d->pending[b] = p;
	d->n_pending++;
	if (p->kind == P_LOOKUP) {
		p->fifo_prev = d->lookups_tail;
		p->fifo_next = NULL;
		if (d->lookups_tail)
			d->lookups_tail->fifo_next = p;
		else
			d->lookups_head = p;
		d->lookups_tail = p;
	}
	return 0;
}

static void fifo_remove(ms_t *d, pending_t *p)
{
	if (p->fifo_prev)
		p->fifo_prev->fifo_next = p->fifo_next;
	else
		d->lookups_head = p->fifo_next;
	if (p->fifo_next)
		p->fifo_next->fifo_prev = p->fifo_prev;
	else
		d->lookups_tail = p->fifo_prev;
	p->fifo_prev = p->fifo_next = NULL;
}

static pending_t *take(ms_t *d, uint64_t id)
{
	for (pending_t **pp = &d->pending[bucket_of(id)]; *pp; pp = &(*pp)->next) {
		if ((*pp)->id == id) {
			pending_t *p = *pp;
			*pp = p->next;
			p->next = NULL;
			assert(d->n_pending > 0);
			d->n_pending--;
			if (p->kind == P_LOOKUP) fifo_remove(d, p);
			return p;
		}
	}
	return NULL;
}

void ms_fail_all_pending(ms_t *d, int err)
{
	assert(err < 0);
	ms_fail_all_waiters(d, err);
	for (size_t b = 0; b < MS_PENDING_BUCKETS; b++) {
		while (d->pending[b]) {
			pending_t *p = take(d, d->pending[b]->id);
			if (p->id & READ_ID_BIT)
				ms_complete_read(d, p, err);
			else
				ms_complete(d, p, err, NULL);
		}
	}
	assert(d->n_pending == 0);
}

void ms_sweep_lookups(ms_t *d)
{
	uint64_t now = ms_now_ns();
	while (d->lookups_head &&
	       now - d->lookups_head->started_ns > (uint64_t)MS_LOOKUP_BARRIER_MS * 1000000u) {
		pending_t *p = take(d, d->lookups_head->id);
		assert(p);
		d->stats.read_barrier_errors++;
		ms_complete_read(d, p, -ETIMEDOUT); /* answers from local state */
	}
}

/* ------------------------------------------------------------------ propose, read */

int ms_propose(ms_t *d, sm_txn_t *txn, pending_t *p)
{
	assert(d && txn && p);
	if (d->stopping || !d->raft) return -EIO;
	if (d->seq_counter == UINT32_MAX) return -EOVERFLOW; /* 4 billion txns in one boot */
	txn->origin_node = d->opt.id;
	txn->origin_seq = (uint64_t)d->boot_epoch << 32 | ++d->seq_counter;
	if (txn->time_ns == 0) txn->time_ns = ms_realtime_ns();
	int rc = codec_txn_check(txn);
	if (rc) return rc;
	size_t len = codec_txn_size(txn);
	uint8_t *blob = malloc(len);
	if (!blob) return -ENOMEM;
	size_t n = codec_txn_encode(txn, blob, len);
	assert(n == len);
	p->id = txn->origin_seq;
	p->started_ns = ms_now_ns();
	rc = park(d, p);
	if (rc == 0) {
		rc = raft_node_propose(d->raft, blob, len, p->id);
		if (rc) (void)take(d, p->id);
	}
	free(blob);
	if (rc == -EFBIG || rc == -E2BIG) rc = -EFBIG;
	return rc;
}

int ms_read_barrier(ms_t *d, pending_t *p)
{
	assert(d && p);
	if (d->stopping || !d->raft) return -EIO;
	p->id = READ_ID_BIT | ++d->read_counter;
	p->started_ns = ms_now_ns();
	int rc = park(d, p);
	if (rc) return rc;
	rc = raft_node_read(d->raft, p->id);
	if (rc)
		(void)take(d, p->id);
	else
		d->stats.read_barriers++;
	return rc;
}

/* ------------------------------------------------------------------ events -> table, sinks */

int ms_add_sink(ms_t *d, fs_change_sink_t sink)
{
	if (d->n_sinks == MS_SINKS_MAX) return -ENOSPC;
	assert(sink.push);
	d->sinks[d->n_sinks++] = sink;
	return 0;
}

static const char *last_component(const char *key, size_t key_len, size_t *parent_len, size_t *name_len)
{
	size_t i = key_len;
	while (i > 0 && key[i - 1] != '/')
		i--;
	*parent_len = i ? i - 1 : 0;
	*name_len = key_len - i;
	return key + i;
}

uint64_t ms_parent_ino(ms_t *d, const char *key, size_t key_len, const char **name, size_t *name_len)
{
	size_t plen = 0;
	*name = last_component(key, key_len, &plen, name_len);
	inotab_entry_t *pe = inotab_find_key(d->tab, key, plen);
	return pe ? pe->ino : 0;
}

uint64_t ms_nodeid_of(ms_t *d, const char *key, size_t key_len, uint64_t rec_ino)
{
	inotab_entry_t *e = inotab_find_key(d->tab, key, key_len);
	return e && e->rec_ino != 0 && e->rec_ino == rec_ino ? e->ino : rec_ino;
}

/* Keeps the inode table true to the state after ev. Returns true when a nodeid the kernel
 * holds for ev's key went stale (another incarnation took the key), so even a local change
 * must invalidate the kernel's entry.
 *
 * Fallback: when this node's own commit of a provisional file comes back under another ino
 * (a state machine that does not keep sm_op_t.ino), the entry keeps the kernel's nodeid and
 * records the record's ino as an alias, so the file stays reachable through the nodeid the
 * kernel already holds. With a state machine that keeps the proposer's ino this never runs. */
static bool table_apply(ms_t *d, const sm_event_t *ev, bool local)
{
	bool stale = false;
	inotab_t *t = d->tab;
	inotab_entry_t *e = inotab_find_key(t, ev->key, ev->key_len);
	switch (ev->type) {
	case SM_EV_CREATE:
	case SM_EV_MODIFY:
	case SM_EV_ATTRIB:
		if (!ev->has_new || !e) break;
		if (ev->type == SM_EV_CREATE && e->provisional && local && e->ino != ev->new_rec.ino) {
			d->stats.ino_mismatches++;
			e->rec_ino = ev->new_rec.ino;
		}
		if (!ms_entry_is_rec(e, ev->new_rec.ino)) {
			/* another incarnation owns the key now: the kernel's old nodeid is stale */
			inotab_unhook(t, e);
			stale = true;
		} else {
			if (e->provisional) inotab_set_provisional(t, e, false);
			e->create_revision = ev->new_rec.create_revision;
		}
		break;
	case SM_EV_DELETE:
		if (e && (!e->provisional || (ev->has_old && ms_entry_is_rec(e, ev->old_rec.ino))))
			inotab_unhook(t, e);
		break;
	case SM_EV_RENAME:
		if (e && ev->has_new && !ms_entry_is_rec(e, ev->new_rec.ino)) inotab_unhook(t, e);
		if (inotab_rename(t, ev->key, ev->key_len, ev->key2, ev->key2_len) != 0)
			ms_log(d, LOG_WARN, "inode table: out of memory in rename; entries unhooked");
		break;
	case SM_EV_EXCHANGE:
		if (inotab_exchange(t, ev->key, ev->key_len, ev->key2, ev->key2_len) != 0)
			ms_log(d, LOG_WARN, "inode table: out of memory in exchange; entries unhooked");
		break;
	}
	return stale;
}

static void to_sinks(ms_t *d, const sm_event_t *ev, bool local, uint32_t txn_flags)
{
	if (d->n_sinks == 0) return;
	fs_change_t c = {.ev = ev, .local = local, .txn_flags = txn_flags};
	const sm_record_t *r = ev->has_new ? &ev->new_rec : ev->has_old ? &ev->old_rec : NULL;
	if (r) {
		const char *k = ev->has_new && ev->key2 && ev->type == SM_EV_RENAME ? ev->key2 : ev->key;
		size_t kl = k == ev->key2 ? ev->key2_len : ev->key_len;
		c.ino = ev->type == SM_EV_DELETE ? r->ino : ms_nodeid_of(d, k, kl, r->ino);
		c.ino_known = inotab_get(d->tab, c.ino) != NULL;
	}
	if (ev->has_replaced) {
		c.replaced_ino = ev->replaced_rec.ino;
		c.replaced_ino_known = inotab_get(d->tab, c.replaced_ino) != NULL;
	}
	c.parent_ino = ms_parent_ino(d, ev->key, ev->key_len, &c.name, &c.name_len);
	if (ev->key2) c.parent2_ino = ms_parent_ino(d, ev->key2, ev->key2_len, &c.name2, &c.name2_len);
	for (uint32_t i = 0; i < d->n_sinks; i++)
		d->sinks[i].push(d->sinks[i].ctx, &c);
}

/* ------------------------------------------------------------------ apply */

static int apply_noop(ms_t *d, uint64_t index)
{
	int rc = sm_apply_noop(d->sm, index);
	return rc == -EALREADY ? 0 : rc;
}

static void complete_txn(ms_t *d, const sm_txn_t *txn, const sm_txn_result_t *res)
{
	if (txn->origin_node != d->opt.id || txn->origin_seq == 0) return;
	if (txn->origin_seq & READ_ID_BIT) return;
	pending_t *p = take(d, txn->origin_seq);
	if (!p) return;
	histo_record(&d->stats.commit_ns, ms_now_ns() - p->started_ns);
	d->stats.commits++;
	if (res->duplicate) {
		/* The first application answered already; only reachable if the id was reused. */
		ms_complete(d, p, -EIO, NULL);
		return;
	}
	if (res->err) d->stats.commit_errors++;
	ms_complete(d, p, 0, res);
}

static int on_apply(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
	ms_t *d = ctx;
	d->stats.applied_entries++;
	if (len == 0) return apply_noop(d, index);
	raft_entry_iter_t it;
	const uint8_t *blob;
	size_t blob_len, n = 0;
	int rc;
	raft_entry_iter_init(&it, data, len);
	while ((rc = raft_entry_iter_next(&it, &blob, &blob_len)) == 1)
		n++;
	if (rc < 0 || n > MS_APPLY_BLOBS_MAX) {
		ms_log(d, LOG_ERROR, "entry %llu is malformed (%zu blobs); applied as a no-op",
		       (unsigned long long)index, n);
		d->stats.bad_blobs++;
		return apply_noop(d, index);
	}
	if (n == 0) return apply_noop(d, index);
	codec_decoded_t *dec = calloc(n, sizeof *dec);
	sm_txn_t *txns = calloc(n, sizeof *txns);
	if (!dec || !txns) {
		free(dec);
		free(txns);
		return -ENOMEM;
	}
	size_t k = 0;
	raft_entry_iter_init(&it, data, len);
	while (raft_entry_iter_next(&it, &blob, &blob_len) == 1) {
		rc = codec_txn_decode(blob, blob_len, &dec[k]);
		if (rc == -ENOMEM) goto out;
		if (rc != 0 || dec[k].batch.n_txn != 1) {
			if (rc == 0) codec_decoded_free(&dec[k]);
			memset(&dec[k], 0, sizeof dec[k]);
			d->stats.bad_blobs++;
			ms_log(d, LOG_WARN, "entry %llu: skipping a blob that does not decode (%d)",
			       (unsigned long long)index, rc);
			continue;
		}
		txns[k] = dec[k].batch.txns[0];
		k++;
	}
	rc = 0;
	if (k == 0) {
		rc = apply_noop(d, index);
		goto out;
	}
	sm_batch_t batch = {.n_txn = (uint32_t)k, .txns = txns};
	sm_apply_result_t res;
	memset(&res, 0, sizeof res);
	rc = sm_apply(d->sm, &batch, index, &res);
	if (rc == -EALREADY) {
		rc = 0;
		goto out;
	}
	if (rc < 0) {
		ms_log(d, LOG_ERROR, "apply of entry %llu failed: %s", (unsigned long long)index,
		       strerror(-rc));
		goto out;
	}
	assert(res.n_txn == k);
	d->stats.applied_txns += k;
	d->stats.applied_events += res.n_events;
	size_t ev = 0;
	for (uint32_t i = 0; i < res.n_txn; i++) {
		bool local = txns[i].origin_node == d->opt.id && (txns[i].flags & SM_TXN_FROM_FS);
		for (; ev < res.n_events && res.events[ev].txn_index == i; ev++) {
			bool stale = table_apply(d, &res.events[ev], local);
			to_sinks(d, &res.events[ev], local && !stale, txns[i].flags);
		}
		complete_txn(d, &txns[i], &res.txns[i]);
	}
	for (; ev < res.n_events; ev++) { /* events out of txn order: still apply them to the table */
		table_apply(d, &res.events[ev], false);
		to_sinks(d, &res.events[ev], false, 0);
	}
	for (uint32_t i = 0; i < d->n_sinks; i++)
		if (d->sinks[i].end_batch) d->sinks[i].end_batch(d->sinks[i].ctx);
	sm_apply_result_free(&res);
out:
	if (rc < 0) d->fatal = rc; /* the node stops on our error; main.c's sweep stops the daemon */
	for (size_t i = 0; i < k; i++)
		codec_decoded_free(&dec[i]);
	free(dec);
	free(txns);
	return rc;
}

static uint64_t on_applied_index(void *ctx)
{
	ms_t *d = ctx;
	return sm_applied_index(d->sm);
}

static int on_snapshot_write(void *ctx, raft_snap_write_fn fn, void *fn_ctx)
{
	ms_t *d = ctx;
	return sm_snapshot_write(d->sm, fn, fn_ctx);
}

static int on_snapshot_read(void *ctx, raft_snap_read_fn fn, void *fn_ctx)
{
	ms_t *d = ctx;
	int rc = sm_snapshot_read(d->sm, fn, fn_ctx);
	if (rc == 0)
		ms_log(d, LOG_INFO, "state replaced from a snapshot (applied index %llu)",
		       (unsigned long long)sm_applied_index(d->sm));
	/* Cached nodeids stay: getattr checks every one against its record's ino. */
	return rc;
}

static void on_state(void *ctx, raft_role_t role, uint64_t term, uint32_t leader_id)
{
	ms_t *d = ctx;
	static const char *const names[] = {"follower", "precandidate", "candidate", "leader"};
	if (role != d->role || leader_id != d->leader_id)
		ms_log(d, LOG_INFO, "raft: %s, term %llu, leader %u", names[role & 3],
		       (unsigned long long)term, leader_id);
	d->role = role;
	d->term = term;
	d->leader_id = leader_id;
}

static void on_read(void *ctx, uint64_t read_id, int status)
{
	ms_t *d = ctx;
	if (read_id == d->catch_up_read_id) { /* main.c's start-up barrier */
		if (status == 0)
			d->caught_up = true;
		else
			d->catch_up_read_id = READ_ID_BIT | ++d->read_counter; /* asks again with a new id */
		return;
	}
	pending_t *p = take(d, read_id);
	if (!p) return;
	histo_record(&d->stats.read_barrier_ns, ms_now_ns() - p->started_ns);
	if (status) d->stats.read_barrier_errors++;
	ms_complete_read(d, p, status);
}

static void on_propose_failed(void *ctx, uint64_t seq, int status)
{
	ms_t *d = ctx;
	pending_t *p = take(d, seq);
	if (!p) return;
	if (status == -ETIMEDOUT)
		d->stats.commit_timeouts++;
	else
		d->stats.commit_errors++;
	if (status >= 0) status = -EIO;
	if (status == -E2BIG) status = -EFBIG;
	if (status == -ESHUTDOWN) status = -EIO;
	ms_complete(d, p, status, NULL);
}

raft_node_callbacks_t ms_raft_callbacks(ms_t *d)
{
	d->catch_up_read_id = READ_ID_BIT | ++d->read_counter;
	return (raft_node_callbacks_t){
	    .ctx = d,
	    .apply = on_apply,
	    .applied_index = on_applied_index,
	    .snapshot_write = on_snapshot_write,
	    .snapshot_read = on_snapshot_read,
	    .on_state = on_state,
	    .on_read = on_read,
	    .on_propose_failed = on_propose_failed,
	};
}
