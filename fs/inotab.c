/* inotab.c - the inode table: two chained hash tables (by ino, by key) over one set of entries.
 *
 * Both tables double when their load passes one entry per bucket. Keys are copied into the
 * entry. Rename and exchange compute every new key before they change anything, so an
 * allocation failure leaves the mapping as it was (apart from entries already unhooked, which
 * is always safe: an unhooked nodeid answers ENOENT and the kernel looks the name up again).
 */
#include "inotab.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUCKETS_MIN 1024u

struct inotab {
	inotab_entry_t **by_ino;
	size_t ino_buckets;
	inotab_entry_t **by_key;
	size_t key_buckets;
	size_t count;  /* entries */
	size_t hooked; /* entries in by_key */
	inotab_entry_t *prov_head;
	size_t prov_count;
	size_t entries_max;
	inotab_entry_t *root;
};

static uint64_t hash_ino(uint64_t ino)
{
	ino ^= ino >> 33;
	ino *= 0xff51afd7ed558ccdull;
	ino ^= ino >> 33;
	return ino;
}

static uint64_t hash_key(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ull;
	}
	return h ^ (h >> 29);
}

static bool is_root(const inotab_t *t, const inotab_entry_t *e) { return e == t->root; }

/* ------------------------------------------------------------------ hash maintenance */

static int grow(inotab_entry_t ***tab, size_t *nb, bool by_key)
{
	size_t n = *nb * 2;
	inotab_entry_t **nt = calloc(n, sizeof *nt);
	if (!nt) return -ENOMEM;
	for (size_t i = 0; i < *nb; i++) {
		inotab_entry_t *e = (*tab)[i];
		while (e) {
			inotab_entry_t *next = by_key ? e->next_by_key : e->next_by_ino;
			size_t b = (by_key ? e->key_hash : hash_ino(e->ino)) & (n - 1);
			if (by_key) {
				e->next_by_key = nt[b];
			} else {
				e->next_by_ino = nt[b];
			}
			nt[b] = e;
			e = next;
		}
	}
	free(*tab);
	*tab = nt;
	*nb = n;
	return 0;
}

static void key_insert(inotab_t *t, inotab_entry_t *e)
{
	assert(e->key);
	if (t->hooked >= t->key_buckets)
		(void)grow(&t->by_key, &t->key_buckets, true); /* a failed grow only lengthens chains */
	e->key_hash = hash_key(e->key, e->key_len);
	size_t b = e->key_hash & (t->key_buckets - 1);
	e->next_by_key = t->by_key[b];
	t->by_key[b] = e;
	t->hooked++;
}

static void key_remove(inotab_t *t, inotab_entry_t *e)
{
	assert(e->key);
	size_t b = e->key_hash & (t->key_buckets - 1);
	for (inotab_entry_t **pp = &t->by_key[b]; *pp; pp = &(*pp)->next_by_key) {
		if (*pp == e) {
			*pp = e->next_by_key;
			e->next_by_key = NULL;
			assert(t->hooked > 0);
			t->hooked--;
			return;
		}
	}
	assert(0 && "hooked entry missing from the key table");
}

static void prov_remove(inotab_t *t, inotab_entry_t *e)
{
	if (!e->provisional) return;
	if (e->prov_prev) {
		e->prov_prev->prov_next = e->prov_next;
	} else {
		assert(t->prov_head == e);
		t->prov_head = e->prov_next;
	}
	if (e->prov_next) e->prov_next->prov_prev = e->prov_prev;
	e->prov_prev = e->prov_next = NULL;
	e->provisional = false;
	e->attrib_set = false;
	assert(t->prov_count > 0);
	t->prov_count--;
}

static void entry_destroy(inotab_t *t, inotab_entry_t *e)
{
	assert(!is_root(t, e));
	assert(e->nlookup == 0 && e->open_count == 0);
	size_t b = hash_ino(e->ino) & (t->ino_buckets - 1);
	for (inotab_entry_t **pp = &t->by_ino[b]; *pp; pp = &(*pp)->next_by_ino) {
		if (*pp == e) {
			*pp = e->next_by_ino;
			break;
		}
	}
	inotab_unhook(t, e);
	t->count--;
	free(e);
}

static bool maybe_destroy(inotab_t *t, inotab_entry_t *e)
{
	if (is_root(t, e) || e->nlookup > 0 || e->open_count > 0) return false;
	entry_destroy(t, e);
	return true;
}

/* ------------------------------------------------------------------ public */

int inotab_new(size_t entries_max, inotab_t **out)
{
	assert(out);
	inotab_t *t = calloc(1, sizeof *t);
	if (!t) return -ENOMEM;
	t->entries_max = entries_max ? entries_max : INOTAB_ENTRIES_MAX;
	t->ino_buckets = t->key_buckets = BUCKETS_MIN;
	t->by_ino = calloc(t->ino_buckets, sizeof *t->by_ino);
	t->by_key = calloc(t->key_buckets, sizeof *t->by_key);
	inotab_entry_t *root = NULL;
	if (!t->by_ino || !t->by_key || inotab_hook(t, INOTAB_ROOT_INO, "", 0, &root) != 0) {
		inotab_free(t);
		return -ENOMEM;
	}
	t->root = root;
	root->nlookup = 1;
	*out = t;
	return 0;
}

void inotab_free(inotab_t *t)
{
	if (!t) return;
	for (size_t i = 0; t->by_ino && i < t->ino_buckets; i++) {
		inotab_entry_t *e = t->by_ino[i];
		while (e) {
			inotab_entry_t *next = e->next_by_ino;
			free(e->key);
			free(e);
			e = next;
		}
	}
	free(t->by_ino);
	free(t->by_key);
	free(t);
}

size_t inotab_count(const inotab_t *t) { return t->count; }
size_t inotab_provisional_count(const inotab_t *t) { return t->prov_count; }

inotab_entry_t *inotab_get(const inotab_t *t, uint64_t ino)
{
	assert(t);
	size_t b = hash_ino(ino) & (t->ino_buckets - 1);
	for (inotab_entry_t *e = t->by_ino[b]; e; e = e->next_by_ino)
		if (e->ino == ino) return e;
	return NULL;
}

inotab_entry_t *inotab_find_key(const inotab_t *t, const char *key, size_t key_len)
{
	assert(t && (key || key_len == 0));
	uint64_t h = hash_key(key, key_len);
	for (inotab_entry_t *e = t->by_key[h & (t->key_buckets - 1)]; e; e = e->next_by_key)
		if (e->key_hash == h && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) return e;
	return NULL;
}

static char *dup_key(const char *key, size_t len)
{
	char *k = malloc(len + 1);
	if (!k) return NULL;
	if (len) memcpy(k, key, len);
	k[len] = '\0';
	return k;
}

/* A new unhooked entry for ino (not in the table yet). 0, -ENFILE, -ENOMEM. */
static int entry_add(inotab_t *t, uint64_t ino, inotab_entry_t **out)
{
	if (t->count >= t->entries_max) return -ENFILE;
	inotab_entry_t *e = calloc(1, sizeof *e);
	if (!e) return -ENOMEM;
	e->ino = ino;
	if (t->count >= t->ino_buckets) (void)grow(&t->by_ino, &t->ino_buckets, false);
	size_t b = hash_ino(ino) & (t->ino_buckets - 1);
	e->next_by_ino = t->by_ino[b];
	t->by_ino[b] = e;
	t->count++;
	*out = e;
	return 0;
}

int inotab_get_or_add(inotab_t *t, uint64_t ino, inotab_entry_t **out)
{
	assert(t && ino != 0 && out);
	*out = inotab_get(t, ino);
	return *out ? 0 : entry_add(t, ino, out);
}

int inotab_hook(inotab_t *t, uint64_t ino, const char *key, size_t key_len, inotab_entry_t **out)
{
	assert(t && ino != 0 && out);
	assert(key || key_len == 0);
	inotab_entry_t *e = inotab_get(t, ino);
	if (e && e->key && e->key_len == key_len && memcmp(e->key, key, key_len) == 0) {
		*out = e;
		return 0;
	}
	char *k = dup_key(key, key_len);
	if (!k) return -ENOMEM;
	if (!e) {
		int rc = entry_add(t, ino, &e);
		if (rc) {
			free(k);
			return rc;
		}
	} else if (e->key) {
		assert(!is_root(t, e));
		key_remove(t, e);
		free(e->key);
		e->key = NULL;
	}
	inotab_entry_t *other = inotab_find_key(t, key, key_len);
	if (other) {
		assert(other != e);
		inotab_unhook(t, other);
	}
	e->key = k;
	e->key_len = key_len;
	key_insert(t, e);
	*out = e;
	return 0;
}

void inotab_unhook(inotab_t *t, inotab_entry_t *e)
{
	assert(t && e);
	if (!e->key || is_root(t, e)) return; /* the root stays hooked for the table's life */
	prov_remove(t, e);
	key_remove(t, e);
	free(e->key);
	e->key = NULL;
	e->key_len = 0;
	e->dirty_size_valid = false;
}

void inotab_set_provisional(inotab_t *t, inotab_entry_t *e, bool provisional)
{
	assert(t && e);
	if (provisional == e->provisional) return;
	if (!provisional) {
		prov_remove(t, e);
		return;
	}
	assert(e->key && !is_root(t, e));
	e->provisional = true;
	e->attrib_set = false;
	e->prov_prev = NULL;
	e->prov_next = t->prov_head;
	if (t->prov_head) t->prov_head->prov_prev = e;
	t->prov_head = e;
	t->prov_count++;
}

inotab_entry_t *inotab_next_provisional(const inotab_t *t, const inotab_entry_t *prev)
{
	return prev ? prev->prov_next : t->prov_head;
}

void inotab_ref(inotab_entry_t *e, uint64_t n)
{
	assert(e);
	assert(e->nlookup <= UINT64_MAX - n);
	e->nlookup += n;
}

bool inotab_forget(inotab_t *t, uint64_t ino, uint64_t n)
{
	inotab_entry_t *e = inotab_get(t, ino);
	if (!e || is_root(t, e)) return false;
	assert(n <= e->nlookup);
	e->nlookup = n > e->nlookup ? 0 : e->nlookup - n;
	return maybe_destroy(t, e);
}

void inotab_open(inotab_entry_t *e)
{
	assert(e && e->open_count < UINT32_MAX);
	e->open_count++;
}

bool inotab_close(inotab_t *t, inotab_entry_t *e)
{
	assert(t && e && e->open_count > 0);
	e->open_count--;
	return maybe_destroy(t, e);
}

/* ------------------------------------------------------------------ rename, exchange, delete */

static bool under(const inotab_entry_t *e, const char *dir, size_t dir_len)
{
	if (!e->key) return false;
	if (e->key_len == dir_len) return memcmp(e->key, dir, dir_len) == 0;
	return e->key_len > dir_len && e->key[dir_len] == '/' && memcmp(e->key, dir, dir_len) == 0;
}

typedef struct move {
	inotab_entry_t *e;
	char *new_key;
	size_t new_len;
} move_t;

typedef struct moves {
	move_t *v;
	size_t n, cap;
} moves_t;

static int moves_push(moves_t *m, inotab_entry_t *e)
{
	if (m->n == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		move_t *v = realloc(m->v, cap * sizeof *v);
		if (!v) return -ENOMEM;
		m->v = v;
		m->cap = cap;
	}
	m->v[m->n++] = (move_t){.e = e};
	return 0;
}

static void moves_free(moves_t *m)
{
	for (size_t i = 0; i < m->n; i++)
		free(m->v[i].new_key);
	free(m->v);
}

/* Entries at and below dir. The dir's own entry goes first (not needed, but predictable). */
static int collect(const inotab_t *t, const char *dir, size_t dir_len, moves_t *m)
{
	for (size_t b = 0; b < t->ino_buckets; b++)
		for (inotab_entry_t *e = t->by_ino[b]; e; e = e->next_by_ino)
			if (under(e, dir, dir_len) && moves_push(m, e) != 0) return -ENOMEM;
	return 0;
}

static int compute_keys(moves_t *m, size_t from_len, const char *to, size_t to_len)
{
	for (size_t i = 0; i < m->n; i++) {
		inotab_entry_t *e = m->v[i].e;
		size_t rest = e->key_len - from_len;
		char *k = malloc(to_len + rest + 1);
		if (!k) return -ENOMEM;
		memcpy(k, to, to_len);
		memcpy(k + to_len, e->key + from_len, rest);
		k[to_len + rest] = '\0';
		m->v[i].new_key = k;
		m->v[i].new_len = to_len + rest;
	}
	return 0;
}

/* Takes every entry of m out of the key table, then puts it back under its new key. */
static void rekey(inotab_t *t, moves_t *m)
{
	for (size_t i = 0; i < m->n; i++)
		key_remove(t, m->v[i].e);
	for (size_t i = 0; i < m->n; i++) {
		inotab_entry_t *e = m->v[i].e;
		free(e->key);
		e->key = m->v[i].new_key;
		e->key_len = m->v[i].new_len;
		m->v[i].new_key = NULL;
		key_insert(t, e);
	}
}

int inotab_rename(inotab_t *t, const char *from, size_t from_len, const char *to, size_t to_len)
{
	assert(t && from && to && from_len > 0 && to_len > 0);
	if (from_len == to_len && memcmp(from, to, to_len) == 0) return 0;
	moves_t m = {0};
	int rc = collect(t, from, from_len, &m);
	if (rc == 0) rc = compute_keys(&m, from_len, to, to_len);
	if (rc != 0) {
		moves_free(&m);
		/* Nothing moved: unhook the source side so stale keys cannot resolve. */
		for (;;) {
			inotab_entry_t *e = NULL;
			for (size_t b = 0; b < t->ino_buckets && !e; b++)
				for (inotab_entry_t *x = t->by_ino[b]; x && !e; x = x->next_by_ino)
					if (under(x, from, from_len) || under(x, to, to_len)) e = x;
			if (!e) break;
			inotab_unhook(t, e);
		}
		return rc;
	}
	/* Unhook what sits at or below the target and is not moving. */
	for (size_t b = 0; b < t->ino_buckets; b++) {
		inotab_entry_t *e = t->by_ino[b];
		while (e) {
			inotab_entry_t *next = e->next_by_ino;
			if (under(e, to, to_len) && !under(e, from, from_len)) inotab_unhook(t, e);
			e = next;
		}
	}
	rekey(t, &m);
	moves_free(&m);
	return 0;
}

int inotab_exchange(inotab_t *t, const char *a, size_t a_len, const char *b, size_t b_len)
{
	assert(t && a && b && a_len > 0 && b_len > 0);
	moves_t ma = {0}, mb = {0};
	int rc = collect(t, a, a_len, &ma);
	if (rc == 0) rc = collect(t, b, b_len, &mb);
	if (rc == 0) rc = compute_keys(&ma, a_len, b, b_len);
	if (rc == 0) rc = compute_keys(&mb, b_len, a, a_len);
	if (rc == 0) {
		moves_t all = {0};
		for (size_t i = 0; i < ma.n && rc == 0; i++)
			rc = moves_push(&all, ma.v[i].e);
		for (size_t i = 0; i < mb.n && rc == 0; i++)
			rc = moves_push(&all, mb.v[i].e);
		if (rc == 0) {
			for (size_t i = 0; i < ma.n; i++)
				all.v[i] = ma.v[i], ma.v[i].new_key = NULL;
			for (size_t i = 0; i < mb.n; i++)
				all.v[ma.n + i] = mb.v[i], mb.v[i].new_key = NULL;
			rekey(t, &all);
		}
		moves_free(&all);
	}
	moves_free(&ma);
	moves_free(&mb);
	if (rc != 0) {
		for (;;) {
			inotab_entry_t *e = NULL;
			for (size_t i = 0; i < t->ino_buckets && !e; i++)
				for (inotab_entry_t *x = t->by_ino[i]; x && !e; x = x->next_by_ino)
					if (under(x, a, a_len) || under(x, b, b_len)) e = x;
			if (!e) break;
			inotab_unhook(t, e);
		}
	}
	return rc;
}

void inotab_delete(inotab_t *t, const char *key, size_t key_len)
{
	assert(t);
	inotab_entry_t *e = inotab_find_key(t, key, key_len);
	if (e) inotab_unhook(t, e);
}
