/* backlog.c - the pending replays and their marks (see backlog.h for the rules).
 *
 * Three fixed-size hash tables, sized at creation from entries_max: the merge index (key ->
 * the newest pending file entry), marks by key and ghost marks by ino. The merge index is
 * invalidated wholesale by bumping a generation (a rename or exchange makes every pending key
 * a path in an older namespace); stale index links are unlinked lazily when a chain is walked.
 * Every chain is bounded by the number of pending entries, and every walk by its chain.
 */
#include "backlog.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct bl_mark {
	bl_entry_t *owner;
	uint64_t seq;
	const char *key; /* owner's key or key2 */
	size_t key_len;
	uint64_t key_hash;
	bool present; /* ghost: the replay's lookups get rec */
	bool hidden;  /* other lookups get ENOENT (for hide_ns_max) */
	bool created; /* a pending create: the replay's create reports rec */
	bool in_ino;  /* on the by-ino chain (present marks) */
	bool known;   /* hidden, but a lookup handed the name to the kernel (under known_parent) */
	uint64_t known_parent;
	uint64_t since_ns;
	sm_record_t rec;   /* value NULL */
	size_t parent_len; /* key[0, parent_len) is the parent directory's key */
	uint64_t parent_hash;
	bl_mark_t *next_key, *next_ino;
	bl_mark_t *prev_parent, *next_parent; /* hidden marks by parent: one directory's are all on
	                                         one chain, so it is doubly linked (O(1) removal) */
};

struct backlog {
	backlog_config_t cfg;
	bl_entry_t *head, *tail;
	size_t len;
	bl_entry_t **idx;
	size_t idx_buckets;
	uint64_t gen; /* >= 1 */
	bl_mark_t **by_key, **by_ino, **by_parent;
	size_t mark_buckets;
	size_t n_marks;
	uint64_t seq;
	size_t key_bytes;
	bl_entry_t *fly_head, *fly_tail; /* taken, not done yet (replays in progress), by seq */
	size_t n_fly;
	bl_stats_t st;
};

static uint64_t hash_bytes(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

static uint64_t hash_ino(uint64_t ino)
{
	ino ^= ino >> 33;
	ino *= 0xff51afd7ed558ccdull;
	ino ^= ino >> 33;
	return ino;
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 16;
	while (p < n)
		p <<= 1;
	return p;
}

static bool key_eq(const char *a, size_t al, const char *b, size_t bl)
{
	return al == bl && (al == 0 || memcmp(a, b, al) == 0);
}

int backlog_new(const backlog_config_t *cfg, backlog_t **out)
{
	assert(cfg && out);
	if (cfg->entries_max == 0 || cfg->entries_max > BACKLOG_ENTRIES_MAX) return -EINVAL;
	if (cfg->key_bytes_max < 2u * (SM_KEY_BYTES_MAX + 1u)) return -EINVAL;
	backlog_t *b = calloc(1, sizeof *b);
	if (!b) return -ENOMEM;
	b->cfg = *cfg;
	b->gen = 1;
	b->idx_buckets = pow2_at_least(cfg->entries_max);
	b->mark_buckets = pow2_at_least(2 * cfg->entries_max);
	b->idx = calloc(b->idx_buckets, sizeof *b->idx);
	b->by_key = calloc(b->mark_buckets, sizeof *b->by_key);
	b->by_ino = calloc(b->mark_buckets, sizeof *b->by_ino);
	b->by_parent = calloc(b->mark_buckets, sizeof *b->by_parent);
	if (!b->idx || !b->by_key || !b->by_ino || !b->by_parent) {
		backlog_free(b);
		return -ENOMEM;
	}
	*out = b;
	return 0;
}

/* ------------------------------------------------------------------ marks */

static void mark_remove(backlog_t *b, bl_mark_t *m)
{
	bl_mark_t **pp = &b->by_key[m->key_hash & (b->mark_buckets - 1)];
	while (*pp != m) {
		assert(*pp);
		pp = &(*pp)->next_key;
	}
	*pp = m->next_key;
	if (m->in_ino) {
		pp = &b->by_ino[hash_ino(m->rec.ino) & (b->mark_buckets - 1)];
		while (*pp != m) {
			assert(*pp);
			pp = &(*pp)->next_ino;
		}
		*pp = m->next_ino;
	}
	if (m->hidden) {
		if (m->prev_parent)
			m->prev_parent->next_parent = m->next_parent;
		else
			b->by_parent[m->parent_hash & (b->mark_buckets - 1)] = m->next_parent;
		if (m->next_parent) m->next_parent->prev_parent = m->prev_parent;
	}
	assert(b->n_marks > 0);
	b->n_marks--;
	free(m);
}

/* Adds a mark on e's key (slot 0) or key2 (slot 1). */
static int mark_add(backlog_t *b, bl_entry_t *e, int slot, bool present, bool hidden, bool created,
                    const sm_record_t *rec, uint64_t now_ns)
{
	assert(slot == 0 || slot == 1);
	assert(!e->marks[slot]);
	bl_mark_t *m = calloc(1, sizeof *m);
	if (!m) return -ENOMEM;
	m->owner = e;
	m->seq = e->seq;
	m->key = slot ? e->key2 : e->key;
	m->key_len = slot ? e->key2_len : e->key_len;
	m->key_hash = hash_bytes(m->key, m->key_len);
	m->parent_len = m->key_len;
	while (m->parent_len > 0 && m->key[m->parent_len - 1] != '/')
		m->parent_len--;
	if (m->parent_len) m->parent_len--;
	m->parent_hash = hash_bytes(m->key, m->parent_len);
	m->present = present;
	m->hidden = hidden;
	m->created = created;
	m->since_ns = now_ns;
	if (rec) {
		m->rec = *rec;
		m->rec.value = NULL;
		m->rec.value_len = 0;
	}
	size_t kb = m->key_hash & (b->mark_buckets - 1);
	m->next_key = b->by_key[kb];
	b->by_key[kb] = m;
	if (present) {
		size_t ib = hash_ino(m->rec.ino) & (b->mark_buckets - 1);
		m->next_ino = b->by_ino[ib];
		b->by_ino[ib] = m;
		m->in_ino = true;
	}
	if (hidden) {
		size_t pb = m->parent_hash & (b->mark_buckets - 1);
		m->next_parent = b->by_parent[pb];
		if (m->next_parent) m->next_parent->prev_parent = m;
		b->by_parent[pb] = m;
	}
	e->marks[slot] = m;
	b->n_marks++;
	return 0;
}

void backlog_unmark(backlog_t *b, bl_entry_t *e)
{
	assert(b && e);
	for (int i = 0; i < 2; i++) {
		if (e->marks[i]) mark_remove(b, e->marks[i]);
		e->marks[i] = NULL;
	}
}

/* The earliest mark on key accepted by want (NULL: any). */
static const bl_mark_t *mark_first(const backlog_t *b, const char *key, size_t key_len,
                                   bool (*want)(const bl_mark_t *m, uint64_t now_ns), uint64_t now_ns)
{
	uint64_t h = hash_bytes(key, key_len);
	const bl_mark_t *best = NULL;
	for (const bl_mark_t *m = b->by_key[h & (b->mark_buckets - 1)]; m; m = m->next_key) {
		if (m->key_hash != h || !key_eq(m->key, m->key_len, key, key_len)) continue;
		if (want && !want(m, now_ns)) continue;
		if (!best || m->seq < best->seq) best = m;
	}
	return best;
}

/* ------------------------------------------------------------------ merge index */

static size_t idx_bucket(const backlog_t *b, const char *key, size_t key_len)
{
	return hash_bytes(key, key_len) & (b->idx_buckets - 1);
}

static void idx_remove(backlog_t *b, bl_entry_t *e)
{
	if (e->idx_gen == 0) return;
	bl_entry_t **pp = &b->idx[idx_bucket(b, e->key, e->key_len)];
	while (*pp != e) {
		assert(*pp);
		pp = &(*pp)->idx_next;
	}
	*pp = e->idx_next;
	e->idx_next = NULL;
	e->idx_gen = 0;
}

/* The pending indexed entry for key under the current generation; unlinks stale ones met. */
static bl_entry_t *idx_find(backlog_t *b, const char *key, size_t key_len)
{
	bl_entry_t **pp = &b->idx[idx_bucket(b, key, key_len)];
	while (*pp) {
		bl_entry_t *e = *pp;
		if (e->idx_gen != b->gen) {
			*pp = e->idx_next;
			e->idx_next = NULL;
			e->idx_gen = 0;
			continue;
		}
		if (key_eq(e->key, e->key_len, key, key_len)) return e;
		pp = &e->idx_next;
	}
	return NULL;
}

static void idx_insert(backlog_t *b, bl_entry_t *e)
{
	assert(e->idx_gen == 0);
	bl_entry_t *old = idx_find(b, e->key, e->key_len);
	if (old) idx_remove(b, old);
	size_t i = idx_bucket(b, e->key, e->key_len);
	e->idx_next = b->idx[i];
	b->idx[i] = e;
	e->idx_gen = b->gen;
}

/* ------------------------------------------------------------------ entries */

static void entry_free(bl_entry_t *e)
{
	free(e->key);
	free(e->key2);
	free(e);
}

static void fifo_unlink(backlog_t *b, bl_entry_t *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		b->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		b->tail = e->prev;
	e->prev = e->next = NULL;
	assert(b->len > 0 && b->key_bytes >= e->bytes);
	b->len--;
	b->key_bytes -= e->bytes;
}

/* Removes a pending entry entirely (cancel). */
static void entry_cancel(backlog_t *b, bl_entry_t *e)
{
	idx_remove(b, e);
	fifo_unlink(b, e);
	backlog_unmark(b, e);
	entry_free(e);
	b->st.cancelled++;
}

static char *dup_bytes(const void *s, size_t len)
{
	char *p = malloc(len + 1);
	if (!p) return NULL;
	if (len) memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* A new entry (not linked yet), or NULL with *err set (-ENOSPC: a bound, -ENOMEM). */
static bl_entry_t *entry_new(backlog_t *b, bl_op_t op, const sm_event_t *ev, const char *key2,
                             size_t key2_len, int *err)
{
	size_t bytes = ev->key_len + 1 + (key2 ? key2_len + 1 : 0);
	if (b->len >= b->cfg.entries_max || b->key_bytes + bytes > b->cfg.key_bytes_max) {
		*err = -ENOSPC;
		return NULL;
	}
	bl_entry_t *e = calloc(1, sizeof *e);
	if (!e || !(e->key = dup_bytes(ev->key, ev->key_len)) ||
	    (key2 && !(e->key2 = dup_bytes(key2, key2_len)))) {
		if (e) entry_free(e);
		*err = -ENOMEM;
		return NULL;
	}
	e->old_size = UINT64_MAX;
	e->op = op;
	e->key_len = ev->key_len;
	e->key2_len = key2 ? key2_len : 0;
	e->revision = ev->revision;
	e->seq = ++b->seq;
	e->bytes = bytes;
	const sm_record_t *r = ev->has_new ? &ev->new_rec : ev->has_old ? &ev->old_rec : NULL;
	if (r) e->rec = *r;
	e->rec.value = NULL;
	e->rec.value_len = 0;
	return e;
}

static void fifo_append(backlog_t *b, bl_entry_t *e)
{
	e->prev = b->tail;
	e->next = NULL;
	if (b->tail)
		b->tail->next = e;
	else
		b->head = e;
	b->tail = e;
	b->len++;
	b->key_bytes += e->bytes;
	b->st.queued++;
	if (b->len > b->st.len_max) b->st.len_max = b->len;
}

/* Appends e with its marks; on failure frees e and counts a drop. */
typedef struct mark_spec {
	bool present, hidden, created;
	const sm_record_t *rec;
} mark_spec_t;

static int append(backlog_t *b, bl_entry_t *e, const mark_spec_t *m0, const mark_spec_t *m1, bool indexed,
                  uint64_t now_ns)
{
	int rc = 0;
	if (m0) rc = mark_add(b, e, 0, m0->present, m0->hidden, m0->created, m0->rec, now_ns);
	if (!rc && m1) rc = mark_add(b, e, 1, m1->present, m1->hidden, m1->created, m1->rec, now_ns);
	if (rc) {
		backlog_unmark(b, e);
		entry_free(e);
		b->st.dropped++;
		return rc;
	}
	fifo_append(b, e);
	if (indexed) idx_insert(b, e);
	return 1;
}

static int drop(backlog_t *b, int err)
{
	b->st.dropped++;
	return err;
}

static uint32_t attr_diff(const sm_event_t *ev)
{
	if (!ev->has_old || !ev->has_new) return BL_ATTR_TIMES;
	const sm_record_t *o = &ev->old_rec, *n = &ev->new_rec;
	uint32_t mask = 0;
	if ((o->mode & 07777) != (n->mode & 07777)) mask |= BL_ATTR_MODE;
	if (o->uid != n->uid || o->gid != n->gid) mask |= BL_ATTR_OWNER;
	if (o->mtime_ns != n->mtime_ns) mask |= BL_ATTR_TIMES;
	return mask ? mask : BL_ATTR_TIMES; /* something changed the kernel cannot see: still ATTRIB */
}

/* The pending entry a change of ev's file record may merge into. */
static bl_entry_t *merge_target(backlog_t *b, const sm_event_t *ev, const sm_record_t *r)
{
	if (r->kind != SM_KIND_FILE) return NULL;
	bl_entry_t *p = idx_find(b, ev->key, ev->key_len);
	if (!p || p->rec.ino != r->ino) return NULL;
	assert(p->op == BL_PUT || p->op == BL_ATTR);
	return p;
}

static void merge_rec(bl_entry_t *p, const sm_event_t *ev, const sm_record_t *r)
{
	p->rec = *r;
	p->rec.value = NULL;
	p->rec.value_len = 0;
	p->revision = ev->revision;
	if (p->marks[0] && p->marks[0]->created) {
		p->marks[0]->rec = p->rec;
	}
}

static int push_create(backlog_t *b, const sm_event_t *ev, uint64_t now_ns, bl_how_t how)
{
	if (!ev->has_new) return 0;
	const sm_record_t *r = &ev->new_rec;
	bl_op_t op = r->kind == SM_KIND_DIR ? BL_MKDIR : r->kind == SM_KIND_SYMLINK ? BL_SYMLINK : BL_PUT;
	int err = 0;
	bl_entry_t *e = op == BL_SYMLINK ? entry_new(b, op, ev, (const char *)r->value, r->value_len, &err)
	                                 : entry_new(b, op, ev, NULL, 0, &err);
	if (!e) return drop(b, err);
	e->create = true;
	if (op == BL_PUT) e->how = how;
	mark_spec_t m = {.hidden = true, .created = true, .rec = r};
	return append(b, e, &m, NULL, op == BL_PUT, now_ns);
}

static int push_modify(backlog_t *b, const sm_event_t *ev, uint64_t now_ns, bool attrib, bl_how_t how)
{
	if (!ev->has_new) return 0;
	const sm_record_t *r = &ev->new_rec;
	uint32_t mask = attrib ? attr_diff(ev) : 0;
	/* Only attributes merge, into a pending change of content or attributes: their calls come
	 * after its content, as they did (a repeated kind of attribute makes one ATTRIB instead of
	 * several, which inotify folds anyway when unread). Content never merges: each change of
	 * it showed MODIFY and CLOSE_WRITE where it was made, and would come out before the
	 * attributes of the entry it joined. */
	bl_entry_t *p = attrib && how != BL_HOW_OPEN ? merge_target(b, ev, r) : NULL;
	if (p && how == BL_HOW_ATTRIB_OPEN && p->create && p->how == BL_HOW_ATTRIB_OPEN) {
		merge_rec(p, ev, r); /* the create's futimens replays it */
		b->st.merged++;
		return 1;
	}
	if (how == BL_HOW_ATTRIB_OPEN) return 0; /* its create is in flight (or dropped): it shows it */
	if (p && p->how != BL_HOW_OPEN) {
		p->attr_mask |= mask;
		merge_rec(p, ev, r);
		b->st.merged++;
		return 1;
	}
	int err = 0;
	bl_entry_t *e = entry_new(b, attrib ? BL_ATTR : BL_PUT, ev, NULL, 0, &err);
	if (!e) return drop(b, err);
	e->attr_mask = mask;
	e->how = how;
	e->old_size = ev->has_old ? ev->old_rec.size : UINT64_MAX;
	return append(b, e, NULL, NULL, r->kind == SM_KIND_FILE, now_ns);
}

static int push_delete(backlog_t *b, const sm_event_t *ev, uint64_t now_ns)
{
	if (!ev->has_old) return 0; /* not a state-machine delete (fs reports dropped provisional files so) */
	const sm_record_t *r = &ev->old_rec;
	bl_entry_t *p = merge_target(b, ev, r);
	if (p && p->create) { /* the kernel never saw it: nothing to replay at all */
		entry_cancel(b, p);
		return 0;
	}
	/* pending content or attributes of a file the kernel knows: they replay, then the delete
	 * (their events showed where the changes were made) */
	int err = 0;
	bl_entry_t *e = entry_new(b, r->kind == SM_KIND_DIR ? BL_RMDIR : BL_UNLINK, ev, NULL, 0, &err);
	if (!e) return drop(b, err);
	mark_spec_t m = {.present = true, .rec = r};
	return append(b, e, &m, NULL, false, now_ns);
}

static int push_rename(backlog_t *b, const sm_event_t *ev, uint64_t now_ns)
{
	if (!ev->key2 || !ev->has_old || !ev->has_new) return 0;
	b->gen++; /* every pending key is a path of the namespace before this move */
	int err = 0;
	bl_entry_t *e = entry_new(b, ev->type == SM_EV_EXCHANGE ? BL_EXCHANGE : BL_RENAME, ev, ev->key2,
	                          ev->key2_len, &err);
	if (!e) return drop(b, err);
	mark_spec_t m0 = {.present = true, .rec = &ev->old_rec}, m1;
	if (ev->type == SM_EV_EXCHANGE) {
		/* both names change what they stand for; key2 held what key holds now */
		m0.hidden = true;
		m1 = (mark_spec_t){.present = true, .hidden = true, .rec = &ev->new_rec};
	} else if (ev->has_replaced) {
		e->replaces = true;
		m1 = (mark_spec_t){.present = true, .hidden = true, .rec = &ev->replaced_rec};
	} else {
		m1 = (mark_spec_t){.hidden = true};
	}
	return append(b, e, &m0, &m1, false, now_ns);
}

/* A change made through this mount: the kernel has its events already. A pending replay of
 * the same key is older and would now come out after them: it goes. */
static int push_local(backlog_t *b, const sm_event_t *ev)
{
	bl_entry_t *p = idx_find(b, ev->key, ev->key_len);
	if (p) entry_cancel(b, p);
	if (ev->key2 && (p = idx_find(b, ev->key2, ev->key2_len))) entry_cancel(b, p);
	if (ev->type == SM_EV_RENAME || ev->type == SM_EV_EXCHANGE) b->gen++;
	b->st.ignored++;
	return 0;
}

int backlog_push(backlog_t *b, const sm_event_t *ev, bool local, uint32_t txn_flags, uint64_t now_ns)
{
	assert(b && ev && (ev->key || ev->key_len == 0));
	if (local) return push_local(b, ev);
	int rc = 0;
	switch (ev->type) {
	case SM_EV_CREATE:
		rc = push_create(b, ev, now_ns, (txn_flags & SM_TXN_ATTRIB_OPEN) ? BL_HOW_ATTRIB_OPEN : BL_HOW_DEFAULT);
		break;
	case SM_EV_MODIFY: /* a mount's change of content not made through an open file: truncate(2) */
		rc = push_modify(b, ev, now_ns, false,
		                 (txn_flags & (SM_TXN_FROM_FS | SM_TXN_OPEN_WRITE)) == SM_TXN_FROM_FS ? BL_HOW_PATH
		                                                                                    : BL_HOW_DEFAULT);
		break;
	case SM_EV_ATTRIB: /* with SM_TXN_ATTRIB_OPEN: the times of the create just pushed */
		rc = push_modify(b, ev, now_ns, true,
		                 (txn_flags & SM_TXN_ATTRIB_OPEN)  ? BL_HOW_ATTRIB_OPEN
		                 : (txn_flags & SM_TXN_OPEN_WRITE) ? BL_HOW_OPEN
		                                                   : BL_HOW_DEFAULT);
		break;
	case SM_EV_DELETE:
		rc = push_delete(b, ev, now_ns);
		break;
	case SM_EV_RENAME:
	case SM_EV_EXCHANGE:
		rc = push_rename(b, ev, now_ns);
		break;
	}
	if (rc == 0) b->st.ignored++;
	return rc;
}

bl_entry_t *backlog_take(backlog_t *b)
{
	assert(b);
	bl_entry_t *e = b->head;
	if (!e) return NULL;
	idx_remove(b, e);
	fifo_unlink(b, e);
	e->prev = b->fly_tail; /* the FIFO links now chain the in-flight list */
	e->next = NULL;
	if (b->fly_tail)
		b->fly_tail->next = e;
	else
		b->fly_head = e;
	b->fly_tail = e;
	b->n_fly++;
	e->in_flight = true;
	return e;
}

static bool is_barrier(const bl_entry_t *e)
{
	return e->op == BL_MKDIR || e->op == BL_RMDIR || e->op == BL_RENAME || e->op == BL_EXCHANGE;
}

bl_entry_t *backlog_take_ready(backlog_t *b)
{
	assert(b);
	const bl_entry_t *h = b->head;
	if (!h) return NULL;
	if (b->n_fly > 0 && is_barrier(h)) return NULL; /* a barrier runs alone */
	for (const bl_entry_t *f = b->fly_head; f; f = f->next) {
		if (is_barrier(f)) return NULL;
		if (key_eq(f->key, f->key_len, h->key, h->key_len)) return NULL; /* one key, one at a time */
	}
	return backlog_take(b);
}

size_t backlog_in_flight(const backlog_t *b) { return b->n_fly; }

bool backlog_replaces(const bl_entry_t *e)
{
	assert(e && e->op == BL_RENAME);
	return e->replaces;
}

void backlog_done(backlog_t *b, bl_entry_t *e)
{
	assert(b && e && e->in_flight && e->idx_gen == 0);
	if (e->prev)
		e->prev->next = e->next;
	else
		b->fly_head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		b->fly_tail = e->prev;
	assert(b->n_fly > 0);
	b->n_fly--;
	backlog_unmark(b, e);
	entry_free(e);
}

void backlog_clear(backlog_t *b)
{
	assert(b);
	while (b->head) {
		bl_entry_t *e = b->head;
		idx_remove(b, e);
		fifo_unlink(b, e);
		backlog_unmark(b, e);
		entry_free(e);
	}
}

void backlog_free(backlog_t *b)
{
	if (!b) return;
	if (b->idx && b->by_key && b->by_ino && b->by_parent) {
		backlog_clear(b);
		while (b->fly_head)
			backlog_done(b, b->fly_head); /* owners that never came back */
	}
	free(b->idx);
	free(b->by_key);
	free(b->by_ino);
	free(b->by_parent);
	free(b);
}

size_t backlog_len(const backlog_t *b) { return b->len; }
size_t backlog_marks(const backlog_t *b) { return b->n_marks; }

void backlog_get_stats(const backlog_t *b, bl_stats_t *st)
{
	assert(b && st);
	*st = b->st;
	st->len = b->len;
	st->key_bytes = b->key_bytes;
}

/* ------------------------------------------------------------------ questions */

static bool want_any(const bl_mark_t *m, uint64_t now_ns)
{
	(void)m, (void)now_ns;
	return true;
}

bl_answer_t backlog_lookup(const backlog_t *b, const char *key, size_t key_len, sm_record_t *rec)
{
	assert(b && (key || key_len == 0));
	if (b->n_marks == 0) return BL_PASS;
	const bl_mark_t *m = mark_first(b, key, key_len, want_any, 0);
	if (!m) return BL_PASS;
	if (!m->present) return BL_ABSENT;
	if (rec) *rec = m->rec;
	return BL_PRESENT;
}

void backlog_known(backlog_t *b, const char *key, size_t key_len, uint64_t parent)
{
	assert(b && (key || key_len == 0));
	if (b->n_marks == 0) return;
	uint64_t h = hash_bytes(key, key_len);
	for (bl_mark_t *m = b->by_key[h & (b->mark_buckets - 1)]; m; m = m->next_key) {
		if (m->key_hash != h || !m->hidden || !key_eq(m->key, m->key_len, key, key_len)) continue;
		m->known = true;
		m->known_parent = parent;
	}
}

bool backlog_take_known(backlog_t *b, bl_entry_t *e, int slot, uint64_t *parent, const char **name,
                        size_t *name_len)
{
	assert(b && e && (slot == 0 || slot == 1) && parent && name && name_len);
	bl_mark_t *m = e->marks[slot];
	if (!m || !m->known) return false;
	m->known = false;
	*parent = m->known_parent;
	size_t at = m->parent_len + (m->parent_len ? 1 : 0);
	*name = m->key + at;
	*name_len = m->key_len - at;
	return true;
}

size_t backlog_hidden_children(const backlog_t *b, const char *dir, size_t dir_len, uint64_t now_ns,
                               void (*fn)(void *ctx, const char *name, size_t name_len), void *ctx)
{
	assert(b && fn && (dir || dir_len == 0));
	if (b->n_marks == 0) return 0;
	uint64_t h = hash_bytes(dir, dir_len);
	size_t n = 0;
	for (const bl_mark_t *m = b->by_parent[h & (b->mark_buckets - 1)]; m; m = m->next_parent) {
		if (m->parent_hash != h || !key_eq(m->key, m->parent_len, dir, dir_len)) continue;
		if (now_ns - m->since_ns >= b->cfg.hide_ns_max && now_ns >= m->since_ns) continue;
		size_t at = m->parent_len + (m->parent_len ? 1 : 0);
		fn(ctx, m->key + at, m->key_len - at);
		n++;
	}
	return n;
}

static bool want_in_flight(const bl_mark_t *m, uint64_t now_ns)
{
	(void)now_ns;
	return m->owner->in_flight;
}

bool backlog_reveal(backlog_t *b, const char *key, size_t key_len, sm_record_t *rec)
{
	assert(b && (key || key_len == 0));
	bool found = false;
	/* bounded: each pass removes one of the marks on key */
	for (bl_mark_t *m; b->n_marks && (m = (bl_mark_t *)mark_first(b, key, key_len, want_in_flight, 0));) {
		if (m->created && !found) {
			if (rec) *rec = m->rec;
			found = true;
		}
		bl_entry_t *e = m->owner;
		e->marks[e->marks[0] == m ? 0 : 1] = NULL;
		mark_remove(b, m);
	}
	return found;
}

static bool at_or_under(const char *key, size_t key_len, const char *dir, size_t dir_len)
{
	if (key_len < dir_len || (dir_len && memcmp(key, dir, dir_len) != 0)) return false;
	return key_len == dir_len || dir_len == 0 || key[dir_len] == '/';
}

/* Moves cur (in buf, length *len) from below `from` to below `to`. false if it does not fit. */
static bool reparent(char *buf, size_t cap, size_t *len, size_t from_len, const char *to, size_t to_len)
{
	size_t rest = *len - from_len;
	if (to_len + rest + 1 > cap) return false;
	memmove(buf + to_len, buf + from_len, rest);
	memcpy(buf, to, to_len);
	*len = to_len + rest;
	buf[*len] = '\0';
	return true;
}

int backlog_forward(const backlog_t *b, const char *key, size_t key_len, char *out, size_t cap)
{
	assert(b && out && (key || key_len == 0));
	if (key_len + 1 > cap) return -ENAMETOOLONG;
	memcpy(out, key, key_len);
	out[key_len] = '\0';
	size_t len = key_len;
	const bl_entry_t *e = b->fly_head ? b->fly_head : b->head;
	while (e) {
		bool moved = true;
		switch (e->op) {
		case BL_UNLINK:
		case BL_RMDIR:
			if (key_eq(out, len, e->key, e->key_len)) return -ENOENT;
			break;
		case BL_RENAME:
			if (at_or_under(out, len, e->key, e->key_len))
				moved = reparent(out, cap, &len, e->key_len, e->key2, e->key2_len);
			else if (at_or_under(out, len, e->key2, e->key2_len))
				return -ENOENT; /* replaced by what moved there */
			break;
		case BL_EXCHANGE:
			if (at_or_under(out, len, e->key, e->key_len))
				moved = reparent(out, cap, &len, e->key_len, e->key2, e->key2_len);
			else if (at_or_under(out, len, e->key2, e->key2_len))
				moved = reparent(out, cap, &len, e->key2_len, e->key, e->key_len);
			break;
		default:
			break;
		}
		if (!moved) return -ENAMETOOLONG;
		e = e->in_flight && !e->next ? b->head : e->next;
	}
	return (int)len;
}

bool backlog_ghost_ino(const backlog_t *b, uint64_t ino, const char **key, size_t *key_len, sm_record_t *rec)
{
	assert(b && key && key_len && rec);
	if (b->n_marks == 0) return false;
	const bl_mark_t *best = NULL;
	for (const bl_mark_t *m = b->by_ino[hash_ino(ino) & (b->mark_buckets - 1)]; m; m = m->next_ino)
		if (m->rec.ino == ino && (!best || m->seq < best->seq)) best = m;
	if (!best) return false;
	*key = best->key;
	*key_len = best->key_len;
	*rec = best->rec;
	return true;
}
