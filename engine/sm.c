/* sm.c - MetaStore's replicated state machine: records, revisions, transactions, POSIX rules.
 *
 * sm_apply() turns one batch of transactions (one Raft entry) into one atomic engine batch. The
 * transactions of a batch run against an in-memory overlay (a skip list of pending puts and
 * deletes) layered over the engine, so later ops and later transactions see earlier writes, and a
 * failing op rolls its transaction back through an undo log without touching the engine. At the
 * end the overlay, in key order, becomes ONE engine_batch_commit() together with the Raft index.
 * Nothing here reads a clock or a random source: the same batches give the same bytes everywhere.
 *
 * KV layout inside the engine (all integers little-endian unless said otherwise):
 *   "d" + path          a record (record.c's format); the root directory is "d".
 *                       "d" sorts before "m", so the data keys are exactly the range ["d", "e").
 *   "mformat"           u64 layout version (1)
 *   "mrevision"         i64 store revision
 *   "mnext_ino"         u64 next inode number to hand out (the root is 1, so it starts at 2)
 *   "morigin" + u32 BE  u64 last origin_seq applied for that origin node (at-most-once dedupe)
 * A directory's children are the keys "d" + dir + "/" + name (root: "d" + name); its whole
 * subtree is the contiguous range ["d" + dir + "/", "d" + dir + "0"), because '0' == '/' + 1.
 * A listing walks that range and, on a key with another '/' after the prefix (a grandchild),
 * seeks to the child's key + '0', so it costs O(children), not O(subtree).
 *
 * Decisions where sm.h leaves room (the POSIX and etcd behaviour users expect):
 * - Adding or removing an entry sets the parent directory's mtime and ctime to the txn time. That
 *   rewrite keeps the parent's version and mod_revision and emits no event: it is bookkeeping, not
 *   a change of that key in etcd's sense.
 * - Creating anything named ".metastore" at the root (PUT, CREATE, WRITE|CREATE, MKDIR, SYMLINK,
 *   RENAME's target, a PUT's implied parent) is -EPERM: the name is reserved for control files.
 * - Check order for ops that create: key (-EINVAL, -ENAMETOOLONG), reserved name (-EPERM), value
 *   size (-EFBIG), parent path (-ENOENT, -ENOTDIR), the key itself (-EEXIST, -EISDIR). A missing
 *   key whose nearest existing ancestor is not a directory is -ENOTDIR, else -ENOENT.
 * - Symlinks hold a value like files: PUT, WRITE, CREATE|TRUNC and SETATTR size act on the
 *   target bytes (the kernel resolves symlinks before any of these reach us). SYMLINK rejects an
 *   empty target (-ENOENT), one over 4095 bytes (-ENAMETOOLONG) and one with a NUL (-EINVAL).
 * - SETATTR with SM_ATTR_SIZE also sets mtime to the txn time (unless SM_ATTR_MTIME is given) and
 *   is a MODIFY event even when the size does not change, like truncate(2) and inotify.
 * - CREATE of an existing file without EXCL or TRUNC writes nothing; the result carries the
 *   existing record.
 * - GET and DEL: a single key must be a valid path; a missing key is 0 kvs / 0 deleted, not an
 *   error. With SM_F_PREFIX or a range the key is a plain byte prefix (etcd's "app/" works) of at
 *   most 4096 bytes; a range_end of exactly one NUL byte means "to the end" (etcd --from-key).
 *   Deleting the root (single key "") is -EBUSY; prefix and range deletes never remove the root,
 *   and a directory they remove takes its whole subtree with it, even beyond range_end.
 * - RENAME follows Linux renameat2(2)'s order: -EINVAL for bad flags (both NOREPLACE and
 *   EXCHANGE); key checks; -EBUSY when either side is the root; -EPERM for a reserved target;
 *   parent paths of both; -ENOENT for a missing source; -EEXIST (NOREPLACE, target exists);
 *   -ENOENT (EXCHANGE, target missing); -EINVAL when the target is inside the source; when the
 *   source is inside the target -ENOTEMPTY (-EINVAL with EXCHANGE); a rename onto itself is a
 *   no-op success; then -ENOTDIR (dir over non-dir), -EISDIR (non-dir over dir), -ENOTEMPTY (dir
 *   over non-empty dir); -ENAMETOOLONG if a moved descendant's key would pass 4096 bytes.
 *   A moved record keeps ino, create_revision and version, gets mod_revision = the txn's
 *   revision; the top record also gets ctime = txn time. One RENAME/EXCHANGE event for the top.
 * - A transaction with an invalid compare (bad key, target or op) fails as a whole with that
 *   errno (-EINVAL / -ENAMETOOLONG) and runs no branch. An unknown op type is -EINVAL.
 * - Dedupe: a txn with origin_node != 0 and origin_seq != 0 records origin_seq for its node
 *   whatever its outcome (it was decided); one whose seq is <= the recorded one is a duplicate:
 *   nothing runs, err 0, no ops, revision = current.
 *
 * Known limits and costs: an apply keeps every value it reads or writes during the batch in the
 * overlay's arena until the commit, so a batch touching many large files costs their size in
 * RAM (bounded by the batch, freed at its end). A directory rename or a prefix delete copies and
 * rewrites the whole subtree in one engine batch: O(subtree), as in any key-value layout where
 * the path is the key. Results and events copy the records they report (values included).
 * sm_snapshot_read() of a stream that passes the engine's checks but holds no state machine (no
 * meta keys or root) returns -EINVAL after the engine has already taken it: the node must stop.
 */
#include "sm.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SM_FORMAT 1u
#define SYMLINK_TARGET_BYTES_MAX 4095u
#define KEYBUF_BYTES (SM_KEY_BYTES_MAX + SM_NAME_BYTES_MAX + 4u) /* "d" + path + "/" + name or seek byte */
#define ARENA_CHUNK_BYTES (64u * 1024u)
#define OV_LEVELS_MAX 24
#define PATH_DEPTH_MAX (SM_KEY_BYTES_MAX / 2u + 1u) /* components of a valid key */

static const char META_FORMAT[] = "mformat";
static const char META_REVISION[] = "mrevision";
static const char META_NEXT_INO[] = "mnext_ino";
static const char META_ORIGIN[] = "morigin";
#define META_ORIGIN_KEY_BYTES (sizeof META_ORIGIN - 1 + 4)

struct sm {
	engine_t *e;
	uint64_t value_bytes_max;
	int64_t revision;
	uint64_t next_ino;
	uint64_t meta_keys; /* engine keys that are not records */
	engine_batch_t *batch;
};

/* ------------------------------------------------------------------ little helpers */

static void put_u32be(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static int key_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
	size_t n = alen < blen ? alen : blen;
	int c = n ? memcmp(a, b, n) : 0;
	if (c) return c;
	return alen < blen ? -1 : alen > blen;
}

static bool has_prefix(const void *k, size_t klen, const void *p, size_t plen)
{
	return klen >= plen && (plen == 0 || memcmp(k, p, plen) == 0);
}

/* Length of the parent's path: "a/b/c" -> 3 ("a/b"), "a" -> 0 (the root). */
static size_t parent_len(const char *path, size_t len)
{
	while (len > 0 && path[len - 1] != '/')
		len--;
	return len ? len - 1 : 0;
}

/* Is `inner` strictly below `outer` ("a/b" below "a"; everything non-empty below the root)? */
static bool path_below(const char *inner, size_t ilen, const char *outer, size_t olen)
{
	if (olen == 0) return ilen > 0;
	return ilen > olen && inner[olen] == '/' && memcmp(inner, outer, olen) == 0;
}

static bool path_reserved(const char *path, size_t len)
{
	size_t n = sizeof SM_CONTROL_DIR - 1;
	return len >= n && memcmp(path, SM_CONTROL_DIR, n) == 0 && (len == n || path[n] == '/');
}

/* Growable array of elem-sized items: make room for one more. */
static int vec_grow(void **items, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap) return 0;
	size_t ncap = *cap ? *cap * 2 : 32;
	void *p = realloc(*items, ncap * elem);
	if (!p) return -ENOMEM;
	*items = p;
	*cap = ncap;
	return 0;
}

/* An engine key for a path: "d" + path, with room for a suffix. */
typedef struct keybuf {
	size_t len;
	uint8_t b[KEYBUF_BYTES];
} keybuf_t;

static void keybuf_data(keybuf_t *k, const char *path, size_t len)
{
	assert(len <= SM_KEY_BYTES_MAX);
	k->b[0] = 'd';
	if (len) memcpy(k->b + 1, path, len);
	k->len = 1 + len;
}

/* The prefix of a directory's children: "d" + dir + "/", or "d" for the root. */
static void keybuf_children(keybuf_t *k, const char *dir, size_t len)
{
	keybuf_data(k, dir, len);
	if (len) k->b[k->len++] = '/';
}

/* ------------------------------------------------------------------ arena */

/* A bump allocator in chunks; a mark rolls it back (a failed txn returns its memory). */
typedef struct arena_chunk {
	struct arena_chunk *prev;
	size_t cap, used;
	max_align_t data[];
} arena_chunk_t;

typedef struct arena {
	arena_chunk_t *head;
} arena_t;

typedef struct arena_mark {
	arena_chunk_t *chunk;
	size_t used;
} arena_mark_t;

static void *arena_alloc(arena_t *a, size_t n)
{
	n = n ? (n + 15u) & ~(size_t)15u : 16u;
	if (!a->head || a->head->cap - a->head->used < n) {
		size_t cap = n > ARENA_CHUNK_BYTES ? n : ARENA_CHUNK_BYTES;
		arena_chunk_t *c = malloc(sizeof *c + cap);
		if (!c) return NULL;
		c->prev = a->head;
		c->cap = cap;
		c->used = 0;
		a->head = c;
	}
	void *p = (uint8_t *)a->head->data + a->head->used;
	a->head->used += n;
	return p;
}

static void *arena_dup(arena_t *a, const void *src, size_t n)
{
	void *p = arena_alloc(a, n);
	if (p && n) memcpy(p, src, n);
	return p;
}

static arena_mark_t arena_mark(const arena_t *a)
{
	return (arena_mark_t){a->head, a->head ? a->head->used : 0};
}

static void arena_rollback(arena_t *a, arena_mark_t m)
{
	while (a->head != m.chunk) {
		arena_chunk_t *prev = a->head->prev;
		free(a->head);
		a->head = prev;
	}
	if (a->head) a->head->used = m.used;
}

static void arena_free(arena_t *a) { arena_rollback(a, (arena_mark_t){NULL, 0}); }

/* ------------------------------------------------------------------ overlay */

/* Pending writes of a batch: an ordered skip list of engine key -> put/delete. A node whose
 * state is OV_NONE is not in the overlay (a rolled-back write); OV_CLEAN is a copy of an engine
 * value read during this batch (engine.h keeps get() values alive only until the next write, and
 * a backend may keep fewer, so apply never holds engine memory across reads). Nodes are never
 * unlinked while a batch is applied, so iterators and pointers stay valid. */
enum { OV_NONE = 0, OV_PUT = 1, OV_DEL = 2, OV_CLEAN = 3 };

typedef struct ov_node {
	const uint8_t *key;
	const uint8_t *val;
	uint32_t key_len, val_len;
	uint8_t state, levels;
	struct ov_node *next[];
} ov_node_t;

typedef struct ov_undo {
	ov_node_t *node;
	const uint8_t *val;
	uint32_t val_len;
	uint8_t state;
} ov_undo_t;

typedef struct overlay {
	arena_t arena;   /* nodes, keys and values */
	ov_node_t *head; /* sentinel with OV_LEVELS_MAX levels; NULL: no overlay (plain reads) */
	int levels;
	uint64_t rng; /* level choice only; fixed seed, so even the shape is deterministic */
	ov_undo_t *undo;
	size_t n_undo, cap_undo;
} overlay_t;

static int ov_init(overlay_t *ov)
{
	memset(ov, 0, sizeof *ov);
	ov->head = arena_alloc(&ov->arena, sizeof(ov_node_t) + OV_LEVELS_MAX * sizeof(ov_node_t *));
	if (!ov->head) return -ENOMEM;
	memset(ov->head, 0, sizeof(ov_node_t) + OV_LEVELS_MAX * sizeof(ov_node_t *));
	ov->head->levels = OV_LEVELS_MAX;
	ov->levels = 1;
	ov->rng = 0x9E3779B97F4A7C15ULL;
	return 0;
}

static void ov_free(overlay_t *ov)
{
	arena_free(&ov->arena);
	free(ov->undo);
	memset(ov, 0, sizeof *ov);
}

/* First node with key >= key (OV_NONE nodes included); fills update[] when not NULL. */
static ov_node_t *ov_seek(const overlay_t *ov, const void *key, size_t len, ov_node_t **update)
{
	if (!ov->head) return NULL;
	ov_node_t *x = ov->head;
	for (int l = ov->levels - 1; l >= 0; l--) {
		while (x->next[l] && key_cmp(x->next[l]->key, x->next[l]->key_len, key, len) < 0)
			x = x->next[l];
		if (update) update[l] = x;
	}
	return x->next[0];
}

static ov_node_t *ov_find(const overlay_t *ov, const void *key, size_t len)
{
	ov_node_t *x = ov_seek(ov, key, len, NULL);
	return x && key_cmp(x->key, x->key_len, key, len) == 0 ? x : NULL;
}

static int ov_random_level(overlay_t *ov)
{
	int l = 1;
	for (;;) {
		ov->rng ^= ov->rng << 13;
		ov->rng ^= ov->rng >> 7;
		ov->rng ^= ov->rng << 17;
		if ((ov->rng & 3) != 0 || l == OV_LEVELS_MAX) return l;
		l++;
	}
}

/* The node for key, linked in as OV_NONE when missing. */
static ov_node_t *ov_node(overlay_t *ov, const uint8_t *key, size_t len)
{
	assert(ov->head && len <= ENGINE_KEY_BYTES_MAX);
	ov_node_t *update[OV_LEVELS_MAX];
	ov_node_t *x = ov_seek(ov, key, len, update);
	if (x && key_cmp(x->key, x->key_len, key, len) == 0) return x;
	int levels = ov_random_level(ov);
	x = arena_alloc(&ov->arena, sizeof *x + (size_t)levels * sizeof x->next[0]);
	uint8_t *k = arena_dup(&ov->arena, key, len);
	if (!x || !k) return NULL;
	x->key = k;
	x->key_len = (uint32_t)len;
	x->val = NULL;
	x->val_len = 0;
	x->state = OV_NONE;
	x->levels = (uint8_t)levels;
	for (int l = ov->levels; l < levels; l++)
		update[l] = ov->head;
	if (levels > ov->levels) ov->levels = levels;
	for (int l = 0; l < levels; l++) {
		x->next[l] = update[l]->next[l];
		update[l]->next[l] = x;
	}
	return x;
}

/* Set key's pending state; val must already live in ov->arena. The old state goes to the undo
 * log so a failed transaction can be rolled back. */
static int ov_set(overlay_t *ov, const uint8_t *key, size_t len, uint8_t state, const uint8_t *val,
                  size_t val_len)
{
	assert(state == OV_PUT || state == OV_DEL);
	assert(val_len <= ENGINE_VALUE_BYTES_MAX);
	if (vec_grow((void **)&ov->undo, &ov->cap_undo, ov->n_undo, sizeof *ov->undo) < 0) return -ENOMEM;
	ov_node_t *x = ov_node(ov, key, len);
	if (!x) return -ENOMEM;
	ov->undo[ov->n_undo++] = (ov_undo_t){x, x->val, x->val_len, x->state};
	x->state = state;
	x->val = val;
	x->val_len = (uint32_t)val_len;
	return 0;
}

/* Remember an engine value read during this batch (not a write: no undo, not flushed). */
static const uint8_t *ov_cache(overlay_t *ov, const uint8_t *key, size_t len, const void *val, size_t val_len)
{
	uint8_t *v = arena_dup(&ov->arena, val, val_len);
	ov_node_t *x = v ? ov_node(ov, key, len) : NULL;
	if (!x) return NULL;
	assert(x->state == OV_NONE);
	x->state = OV_CLEAN;
	x->val = v;
	x->val_len = (uint32_t)val_len;
	return v;
}

static void ov_rollback(overlay_t *ov, size_t mark)
{
	assert(mark <= ov->n_undo);
	while (ov->n_undo > mark) {
		ov_undo_t *u = &ov->undo[--ov->n_undo];
		u->node->state = u->state;
		u->node->val = u->val;
		u->node->val_len = u->val_len;
	}
}

/* ------------------------------------------------------------------ merged iterator */

/* Ordered iteration over engine + overlay: the overlay wins on equal keys, its deletes hide
 * engine keys. Key and value pointers are valid until the next seek/next. The engine iterator is
 * created at the first seek (most batches never range over keys; a RocksDB iterator is not free). */
typedef struct miter {
	engine_t *e;
	engine_iter_t *eit;
	const overlay_t *ov;
	ov_node_t *on;
	bool valid, from_e, from_o;
	const uint8_t *key, *val;
	size_t key_len, val_len;
} miter_t;

static void mi_settle(miter_t *m)
{
	for (;;) {
		while (m->on && (m->on->state == OV_NONE || m->on->state == OV_CLEAN))
			m->on = m->on->next[0];
		bool ev = engine_iter_valid(m->eit);
		if (!ev && !m->on) {
			m->valid = false;
			return;
		}
		size_t ekl = 0;
		const uint8_t *ek = ev ? engine_iter_key(m->eit, &ekl) : NULL;
		int c = !ev ? 1 : !m->on ? -1 : key_cmp(ek, ekl, m->on->key, m->on->key_len);
		if (c < 0) {
			m->key = ek;
			m->key_len = ekl;
			m->val = engine_iter_value(m->eit, &m->val_len);
			m->from_e = true;
			m->from_o = false;
			m->valid = true;
			return;
		}
		if (m->on->state == OV_DEL) {
			if (c == 0) engine_iter_next(m->eit);
			m->on = m->on->next[0];
			continue;
		}
		m->key = m->on->key;
		m->key_len = m->on->key_len;
		m->val = m->on->val;
		m->val_len = m->on->val_len;
		m->from_o = true;
		m->from_e = c == 0;
		m->valid = true;
		return;
	}
}

static int mi_seek(miter_t *m, const void *key, size_t len)
{
	if (!m->eit && !(m->eit = engine_iter_new(m->e))) {
		m->valid = false;
		return -ENOMEM;
	}
	engine_iter_seek(m->eit, key, len);
	m->on = ov_seek(m->ov, key, len, NULL);
	mi_settle(m);
	return 0;
}

static void mi_next(miter_t *m)
{
	assert(m->valid);
	if (m->from_e) engine_iter_next(m->eit);
	if (m->from_o) m->on = m->on->next[0];
	mi_settle(m);
}

/* ------------------------------------------------------------------ open, close, meta */

static int meta_get_u64(engine_t *e, const char *name, uint64_t *v)
{
	const void *val;
	size_t len;
	int rc = engine_get(e, name, strlen(name), &val, &len);
	if (rc == -ENOENT) return -EINVAL; /* not an sm engine, or a damaged one */
	if (rc < 0) return rc;
	if (len != 8) return -EINVAL;
	*v = get_u64(val);
	return 0;
}

/* Load the cached meta state from the engine and check its shape. */
static int sm_load(sm_t *sm)
{
	uint64_t format, rev, ino;
	int rc;
	if ((rc = meta_get_u64(sm->e, META_FORMAT, &format)) < 0) return rc;
	if ((rc = meta_get_u64(sm->e, META_REVISION, &rev)) < 0) return rc;
	if ((rc = meta_get_u64(sm->e, META_NEXT_INO, &ino)) < 0) return rc;
	if (format != SM_FORMAT || (int64_t)rev < 0 || ino <= SM_ROOT_INO) return -EINVAL;
	const void *val;
	size_t len;
	sm_record_t root;
	rc = engine_get(sm->e, "d", 1, &val, &len);
	if (rc == -ENOENT) return -EINVAL;
	if (rc < 0) return rc;
	if (sm_record_decode(val, len, &root) < 0 || root.kind != SM_KIND_DIR || root.ino != SM_ROOT_INO)
		return -EINVAL;
	engine_iter_t *it = engine_iter_new(sm->e);
	if (!it) return -ENOMEM;
	uint64_t meta = 0;
	for (engine_iter_seek(it, "m", 1); engine_iter_valid(it); engine_iter_next(it)) {
		size_t kl;
		const uint8_t *k = engine_iter_key(it, &kl);
		if (kl == 0 || k[0] != 'm') break;
		meta++;
	}
	engine_iter_free(it);
	sm->revision = (int64_t)rev;
	sm->next_ino = ino;
	sm->meta_keys = meta;
	return 0;
}

/* A new engine: the layout version, revision 0, the root directory, inode numbers from 2. */
static int sm_init_engine(sm_t *sm)
{
	uint8_t u64[8], root_buf[128];
	sm_record_t root = {.kind = SM_KIND_DIR, .mode = S_IFDIR | 0755, .ino = SM_ROOT_INO, .version = 1};
	size_t n = sm_record_encode(&root, root_buf, sizeof root_buf);
	assert(n < sizeof root_buf);
	engine_batch_t *b = sm->batch;
	engine_batch_clear(b);
	int rc = engine_batch_put(b, "d", 1, root_buf, n);
	put_u64(u64, SM_FORMAT);
	if (!rc) rc = engine_batch_put(b, META_FORMAT, strlen(META_FORMAT), u64, 8);
	put_u64(u64, SM_ROOT_INO + 1);
	if (!rc) rc = engine_batch_put(b, META_NEXT_INO, strlen(META_NEXT_INO), u64, 8);
	put_u64(u64, 0);
	if (!rc) rc = engine_batch_put(b, META_REVISION, strlen(META_REVISION), u64, 8);
	if (!rc) rc = engine_batch_commit(sm->e, b, engine_applied_index(sm->e));
	engine_batch_clear(b);
	return rc;
}

int sm_open(engine_t *e, const sm_options_t *opts, sm_t **out)
{
	assert(e && out);
	uint64_t max = opts && opts->value_bytes_max ? opts->value_bytes_max : SM_VALUE_BYTES_MAX_DEFAULT;
	size_t header_bytes = sm_record_encode(&(sm_record_t){0}, NULL, 0); /* a record without value */
	if (max > ENGINE_VALUE_BYTES_MAX - header_bytes) return -EINVAL;
	sm_t *sm = calloc(1, sizeof *sm);
	if (!sm) return -ENOMEM;
	sm->e = e;
	sm->value_bytes_max = max;
	sm->batch = engine_batch_new();
	int rc = sm->batch ? 0 : -ENOMEM;
	if (!rc && engine_key_count(e) == 0) rc = sm_init_engine(sm);
	if (!rc) rc = sm_load(sm);
	if (rc < 0) {
		sm_close(sm);
		return rc;
	}
	*out = sm;
	return 0;
}

void sm_close(sm_t *sm)
{
	if (!sm) return;
	engine_batch_free(sm->batch);
	free(sm);
}

int64_t sm_revision(const sm_t *sm) { return sm->revision; }
uint64_t sm_applied_index(const sm_t *sm) { return engine_applied_index(sm->e); }
uint64_t sm_data_bytes(const sm_t *sm) { return engine_data_bytes(sm->e); }

uint64_t sm_key_count(const sm_t *sm)
{
	uint64_t n = engine_key_count(sm->e);
	assert(n > sm->meta_keys);
	return n - sm->meta_keys;
}

/* ------------------------------------------------------------------ apply context */

typedef struct apply_ctx {
	sm_t *sm;
	overlay_t ov;
	miter_t it;
	arena_t *res;   /* results and events: handed to the caller */
	sm_event_t *ev; /* events so far (copied into res at the end) */
	size_t n_ev, cap_ev;
	uint32_t txn_index;
	int64_t revision;  /* store revision after the txns applied so far */
	uint64_t next_ino; /* pending inode counter */
	uint64_t meta_keys_new;
	int64_t rev; /* the revision the current txn writes with */
	int64_t time_ns;
	bool wrote;
	int fatal; /* engine/memory failure: the whole apply fails */
} apply_ctx_t;

typedef struct item {
	const uint8_t *key, *val; /* engine key ("d" + path) and encoded record */
	size_t key_len, val_len;
} item_t;

typedef struct items {
	item_t *v;
	size_t n, cap;
} items_t;

static int fail(apply_ctx_t *c, int err)
{
	assert(err < 0);
	if (!c->fatal) c->fatal = err;
	return err;
}

static int ov_get(apply_ctx_t *c, const uint8_t *k, size_t kl, const uint8_t **v, size_t *vl)
{
	ov_node_t *n = ov_find(&c->ov, k, kl);
	if (n && (n->state == OV_PUT || n->state == OV_CLEAN)) {
		*v = n->val;
		*vl = n->val_len;
		return 0;
	}
	if (n && n->state == OV_DEL) return -ENOENT;
	const void *ev;
	int rc = engine_get(c->sm->e, k, kl, &ev, vl);
	if (rc == -ENOENT) return rc;
	if (rc < 0) return fail(c, rc);
	*v = ev;
	if (c->ov.head && !(*v = ov_cache(&c->ov, k, kl, ev, *vl))) return fail(c, -ENOMEM);
	return 0;
}

static int rec_get(apply_ctx_t *c, const char *path, size_t len, sm_record_t *rec)
{
	keybuf_t k;
	keybuf_data(&k, path, len);
	const uint8_t *v;
	size_t vl;
	int rc = ov_get(c, k.b, k.len, &v, &vl);
	if (rc < 0) return rc;
	if (sm_record_decode(v, vl, rec) < 0) return fail(c, -EIO);
	return 0;
}

static int rec_put(apply_ctx_t *c, const char *path, size_t len, const sm_record_t *rec)
{
	keybuf_t k;
	keybuf_data(&k, path, len);
	assert(rec->mod_revision == c->rev || rec->mod_revision <= c->revision);
	size_t n = sm_record_encode(rec, NULL, 0);
	uint8_t *buf = arena_alloc(&c->ov.arena, n);
	if (!buf) return fail(c, -ENOMEM);
	sm_record_encode(rec, buf, n);
	if (ov_set(&c->ov, k.b, k.len, OV_PUT, buf, n) < 0) return fail(c, -ENOMEM);
	c->wrote = true;
	return 0;
}

static int rec_del_key(apply_ctx_t *c, const uint8_t *key, size_t key_len)
{
	assert(key_len > 1 && key[0] == 'd'); /* never the root */
	if (ov_set(&c->ov, key, key_len, OV_DEL, NULL, 0) < 0) return fail(c, -ENOMEM);
	c->wrote = true;
	return 0;
}

static int rec_del(apply_ctx_t *c, const char *path, size_t len)
{
	keybuf_t k;
	keybuf_data(&k, path, len);
	return rec_del_key(c, k.b, k.len);
}

/* Copy a record into the result arena (its value too, unless keys_only). */
static int rec_copy(apply_ctx_t *c, sm_record_t *dst, const sm_record_t *src, bool keys_only)
{
	*dst = *src;
	if (keys_only || !src->value_len) {
		dst->value = NULL;
		dst->value_len = 0;
		return 0;
	}
	dst->value = arena_dup(c->res, src->value, src->value_len);
	return dst->value ? 0 : fail(c, -ENOMEM);
}

static const char *str_copy(apply_ctx_t *c, const void *s, size_t len)
{
	char *p = arena_alloc(c->res, len + 1);
	if (!p) return NULL;
	if (len) memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

static int ev_push(apply_ctx_t *c, sm_event_type_t type, const char *key, size_t key_len, const char *key2,
                   size_t key2_len, const sm_record_t *old_rec, const sm_record_t *new_rec,
                   const sm_record_t *replaced)
{
	if (vec_grow((void **)&c->ev, &c->cap_ev, c->n_ev, sizeof *c->ev) < 0) return fail(c, -ENOMEM);
	sm_event_t *e = &c->ev[c->n_ev];
	memset(e, 0, sizeof *e);
	e->type = type;
	e->txn_index = c->txn_index;
	e->revision = c->rev;
	e->key = str_copy(c, key, key_len);
	e->key_len = key_len;
	if (!e->key) return fail(c, -ENOMEM);
	if (key2) {
		e->key2 = str_copy(c, key2, key2_len);
		e->key2_len = key2_len;
		if (!e->key2) return fail(c, -ENOMEM);
	}
	int rc = 0;
	if (old_rec && !rc) {
		e->has_old = true;
		rc = rec_copy(c, &e->old_rec, old_rec, false);
	}
	if (new_rec && !rc) {
		e->has_new = true;
		rc = rec_copy(c, &e->new_rec, new_rec, false);
	}
	if (replaced && !rc) {
		e->has_replaced = true;
		rc = rec_copy(c, &e->replaced_rec, replaced, false);
	}
	if (rc < 0) return rc;
	c->n_ev++;
	return 0;
}

/* 0 when path's parent is an existing directory; else -ENOTDIR when the nearest existing
 * ancestor is not a directory, -ENOENT when it is. */
static int parent_check(apply_ctx_t *c, const char *path, size_t len)
{
	assert(len > 0);
	size_t plen = parent_len(path, len);
	for (size_t depth = 0; depth < PATH_DEPTH_MAX; depth++) {
		sm_record_t r;
		int rc = rec_get(c, path, plen, &r);
		if (rc == 0) return r.kind != SM_KIND_DIR ? -ENOTDIR : depth == 0 ? 0 : -ENOENT;
		if (rc != -ENOENT) return rc;
		if (plen == 0) return fail(c, -EIO); /* the root record is missing */
		plen = parent_len(path, plen);
	}
	assert(!"path deeper than a valid key");
	return fail(c, -EIO);
}

/* rec_get, with -ENOTDIR instead of -ENOENT when the path runs through a non-directory. */
static int lookup_path(apply_ctx_t *c, const char *path, size_t len, sm_record_t *rec)
{
	int rc = rec_get(c, path, len, rec);
	if (rc != -ENOENT) return rc;
	rc = parent_check(c, path, len);
	return rc ? rc : -ENOENT;
}

static int dir_has_children(apply_ctx_t *c, const char *path, size_t len, bool *out)
{
	assert(len > 0);
	keybuf_t k;
	keybuf_children(&k, path, len);
	if (mi_seek(&c->it, k.b, k.len) < 0) return fail(c, -ENOMEM);
	*out = c->it.valid && has_prefix(c->it.key, c->it.key_len, k.b, k.len);
	return 0;
}

/* Parent directory of path gets mtime = ctime = txn time (an entry was added or removed). */
static int touch_parent(apply_ctx_t *c, const char *path, size_t len)
{
	assert(len > 0);
	size_t plen = parent_len(path, len);
	sm_record_t r;
	int rc = rec_get(c, path, plen, &r);
	if (rc == -ENOENT) return 0; /* removed in the same op (prefix/range delete) */
	if (rc < 0) return rc;
	assert(r.kind == SM_KIND_DIR);
	if (r.mtime_ns == c->time_ns && r.ctime_ns == c->time_ns) return 0;
	r.mtime_ns = r.ctime_ns = c->time_ns;
	return rec_put(c, path, plen, &r);
}

static int add_item(apply_ctx_t *c, items_t *items, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	if (vec_grow((void **)&items->v, &items->cap, items->n, sizeof *items->v) < 0)
		return fail(c, -ENOMEM);
	item_t *it = &items->v[items->n];
	it->key = arena_dup(&c->ov.arena, k, kl);
	it->val = arena_dup(&c->ov.arena, v, vl);
	if (!it->key || !it->val) return fail(c, -ENOMEM);
	it->key_len = kl;
	it->val_len = vl;
	items->n++;
	return 0;
}

/* Every key in [lo, hi) that starts with prefix (copied: the overlay changes afterwards). */
static int collect(apply_ctx_t *c, const uint8_t *lo, size_t lo_len, const uint8_t *hi, size_t hi_len,
                   const uint8_t *prefix, size_t prefix_len, items_t *items)
{
	if (mi_seek(&c->it, lo, lo_len) < 0) return fail(c, -ENOMEM);
	for (; c->it.valid; mi_next(&c->it)) {
		if (hi && key_cmp(c->it.key, c->it.key_len, hi, hi_len) >= 0) break;
		if (!has_prefix(c->it.key, c->it.key_len, prefix, prefix_len)) break;
		int rc = add_item(c, items, c->it.key, c->it.key_len, c->it.val, c->it.val_len);
		if (rc < 0) return rc;
	}
	return 0;
}

static int collect_subtree(apply_ctx_t *c, const char *path, size_t len, items_t *items)
{
	keybuf_t k;
	keybuf_children(&k, path, len);
	return collect(c, k.b, k.len, NULL, 0, k.b, k.len, items);
}

/* A new record at path (parent checked by the caller), in this txn's revision. Its inode is
 * the proposer's choice when it made one (ino != 0: unique by construction, see sm.h; not
 * checked against existing records, which would need an ino index), else the next one of the
 * replicated counter, which stays below SM_INO_PROPOSER_MIN. */
static int create_rec(apply_ctx_t *c, const char *path, size_t len, sm_kind_t kind, uint32_t mode,
                      uint32_t uid, uint32_t gid, const uint8_t *value, size_t value_len, uint64_t ino,
                      sm_op_result_t *res)
{
	if (ino != 0 && ino < SM_INO_PROPOSER_MIN) return -EINVAL;
	sm_record_t r = {.kind = kind,
	                 .mode = mode,
	                 .uid = uid,
	                 .gid = gid,
	                 .ino = ino ? ino : c->next_ino++,
	                 .size = kind == SM_KIND_DIR ? 0 : value_len,
	                 .mtime_ns = c->time_ns,
	                 .ctime_ns = c->time_ns,
	                 .create_revision = c->rev,
	                 .mod_revision = c->rev,
	                 .version = 1,
	                 .value = kind == SM_KIND_DIR ? NULL : value,
	                 .value_len = kind == SM_KIND_DIR ? 0 : value_len};
	int rc = rec_put(c, path, len, &r);
	if (!rc) rc = ev_push(c, SM_EV_CREATE, path, len, NULL, 0, NULL, &r, NULL);
	if (!rc) rc = touch_parent(c, path, len);
	if (!rc && res) {
		res->has_rec = true;
		rc = rec_copy(c, &res->rec, &r, false);
	}
	return rc;
}

/* Replace the value of an existing file or symlink. */
static int set_value(apply_ctx_t *c, const char *path, size_t len, const sm_record_t *old,
                     const uint8_t *value, size_t value_len, sm_op_result_t *res)
{
	assert(old->kind != SM_KIND_DIR);
	sm_record_t r = *old;
	r.value = value;
	r.value_len = value_len;
	r.size = value_len;
	r.mtime_ns = r.ctime_ns = c->time_ns;
	r.version++;
	r.mod_revision = c->rev;
	int rc = rec_put(c, path, len, &r);
	if (!rc) rc = ev_push(c, SM_EV_MODIFY, path, len, NULL, 0, old, &r, NULL);
	if (!rc) {
		res->has_rec = true;
		rc = rec_copy(c, &res->rec, &r, false);
	}
	return rc;
}

/* ------------------------------------------------------------------ ops */

/* Translate a GET/DEL key range to engine keys [lo, hi). */
static int op_range(const sm_op_t *op, keybuf_t *lo, keybuf_t *hi)
{
	if (op->key_len > SM_KEY_BYTES_MAX) return -ENAMETOOLONG;
	keybuf_data(lo, op->key, op->key_len);
	if (op->flags & SM_F_PREFIX) {
		*hi = *lo;
		while (hi->len > 0 && hi->b[hi->len - 1] == 0xff)
			hi->len--;
		assert(hi->len > 0); /* starts with 'd' */
		hi->b[hi->len - 1]++;
	} else if (op->key2_len == 1 && op->key2[0] == '\0') {
		hi->b[0] = 'e';
		hi->len = 1;
	} else {
		if (op->key2_len > SM_KEY_BYTES_MAX) return -ENAMETOOLONG;
		keybuf_data(hi, op->key2, op->key2_len);
	}
	return 0;
}

static int op_get(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	bool keys_only = op->flags & SM_F_KEYS_ONLY;
	sm_record_t r;
	int rc;
	if (!(op->flags & SM_F_PREFIX) && !op->key2) {
		if ((rc = sm_key_check(op->key, op->key_len)) < 0) return rc;
		rc = rec_get(c, op->key, op->key_len, &r);
		if (rc == -ENOENT) return 0;
		if (rc < 0) return rc;
		res->kvs = arena_alloc(c->res, sizeof *res->kvs);
		if (!res->kvs) return fail(c, -ENOMEM);
		res->kvs[0].key = str_copy(c, op->key, op->key_len);
		res->kvs[0].key_len = op->key_len;
		if (!res->kvs[0].key) return fail(c, -ENOMEM);
		res->n_kvs = 1;
		return rec_copy(c, &res->kvs[0].rec, &r, keys_only);
	}
	keybuf_t lo, hi;
	if ((rc = op_range(op, &lo, &hi)) < 0) return rc;
	sm_kv_t *kvs = NULL;
	size_t n = 0, cap = 0;
	if (mi_seek(&c->it, lo.b, lo.len) < 0) return fail(c, -ENOMEM);
	for (; c->it.valid; mi_next(&c->it)) {
		if (key_cmp(c->it.key, c->it.key_len, hi.b, hi.len) >= 0) break;
		if (op->limit && n == op->limit) {
			res->more = true;
			break;
		}
		if (vec_grow((void **)&kvs, &cap, n, sizeof *kvs) < 0) {
			rc = fail(c, -ENOMEM);
			break;
		}
		if (sm_record_decode(c->it.val, c->it.val_len, &r) < 0) {
			rc = fail(c, -EIO);
			break;
		}
		kvs[n].key = str_copy(c, c->it.key + 1, c->it.key_len - 1);
		kvs[n].key_len = c->it.key_len - 1;
		if (!kvs[n].key) {
			rc = fail(c, -ENOMEM);
			break;
		}
		if ((rc = rec_copy(c, &kvs[n].rec, &r, keys_only)) < 0) break;
		n++;
	}
	if (!rc && n) {
		res->kvs = arena_dup(c->res, kvs, n * sizeof *kvs);
		if (!res->kvs) rc = fail(c, -ENOMEM);
		res->n_kvs = n;
	}
	free(kvs);
	return rc;
}

static int op_put(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if (len == 0) return -EISDIR;
	if (path_reserved(p, len)) return -EPERM;
	if (op->value_len > c->sm->value_bytes_max) return -EFBIG;
	sm_record_t r;
	for (size_t i = 0; i < len; i++) { /* parents, top down: create missing, refuse non-dirs */
		if (p[i] != '/') continue;
		rc = rec_get(c, p, i, &r);
		if (rc == -ENOENT)
			rc =
			    create_rec(c, p, i, SM_KIND_DIR, S_IFDIR | 0755, op->uid, op->gid, NULL, 0, 0, NULL);
		else if (rc == 0 && r.kind != SM_KIND_DIR)
			rc = -ENOTDIR;
		if (rc < 0) return rc;
	}
	rc = rec_get(c, p, len, &r);
	if (rc == -ENOENT)
		return create_rec(c, p, len, SM_KIND_FILE, S_IFREG | 0644, op->uid, op->gid, op->value,
		                  op->value_len, 0, res);
	if (rc < 0) return rc;
	if (r.kind == SM_KIND_DIR) return -EISDIR;
	return set_value(c, p, len, &r, op->value, op->value_len, res);
}

static int item_cmp(const void *a, const void *b)
{
	const item_t *x = a, *y = b;
	return key_cmp(x->key, x->key_len, y->key, y->key_len);
}

static int op_del_range(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	keybuf_t lo, hi, sub;
	int rc = op_range(op, &lo, &hi);
	if (rc < 0) return rc;
	items_t items = {0};
	if ((rc = collect(c, lo.b, lo.len, hi.b, hi.len, (const uint8_t *)"d", 1, &items)) < 0) goto out;
	/* A directory goes with its whole subtree, also the part at or beyond hi. */
	size_t n_range = items.n;
	for (size_t i = 0; i < n_range; i++) {
		sm_record_t r;
		if (items.v[i].key_len == 1) continue; /* the root stays */
		if (sm_record_decode(items.v[i].val, items.v[i].val_len, &r) < 0) {
			rc = fail(c, -EIO);
			goto out;
		}
		if (r.kind != SM_KIND_DIR) continue;
		keybuf_children(&sub, (const char *)items.v[i].key + 1, items.v[i].key_len - 1);
		const uint8_t *from = key_cmp(sub.b, sub.len, hi.b, hi.len) < 0 ? hi.b : sub.b;
		size_t from_len = from == hi.b ? hi.len : sub.len;
		if ((rc = collect(c, from, from_len, NULL, 0, sub.b, sub.len, &items)) < 0) goto out;
	}
	if (items.n > n_range) qsort(items.v, items.n, sizeof *items.v, item_cmp);
	/* Children sort after their parents: delete in reverse order so events list children first. */
	uint64_t deleted = 0;
	for (size_t i = items.n; i-- > 0;) {
		item_t *it = &items.v[i];
		if (it->key_len == 1) continue;
		if (i > 0 && item_cmp(it, &items.v[i - 1]) == 0) continue; /* collected twice */
		sm_record_t r;
		if (sm_record_decode(it->val, it->val_len, &r) < 0) {
			rc = fail(c, -EIO);
			goto out;
		}
		if ((rc = rec_del_key(c, it->key, it->key_len)) < 0) goto out;
		rc = ev_push(c, SM_EV_DELETE, (const char *)it->key + 1, it->key_len - 1, NULL, 0, &r, NULL,
		             NULL);
		if (rc < 0) goto out;
		deleted++;
	}
	for (size_t i = 0; i < items.n; i++) {
		if (items.v[i].key_len == 1) continue;
		if ((rc = touch_parent(c, (const char *)items.v[i].key + 1, items.v[i].key_len - 1)) < 0)
			goto out;
	}
	res->deleted = deleted;
out:
	free(items.v);
	return rc;
}

static int op_del(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	if ((op->flags & SM_F_PREFIX) || op->key2) return op_del_range(c, op, res);
	int rc = sm_key_check(op->key, op->key_len);
	if (rc < 0) return rc;
	if (op->key_len == 0) return -EBUSY;
	sm_record_t r;
	rc = rec_get(c, op->key, op->key_len, &r);
	if (rc == -ENOENT) return 0;
	if (rc < 0) return rc;
	if (r.kind == SM_KIND_DIR) {
		bool full;
		if ((rc = dir_has_children(c, op->key, op->key_len, &full)) < 0) return rc;
		if (full) return -ENOTEMPTY;
	}
	if ((rc = rec_del(c, op->key, op->key_len)) < 0) return rc;
	if ((rc = ev_push(c, SM_EV_DELETE, op->key, op->key_len, NULL, 0, &r, NULL, NULL)) < 0) return rc;
	res->deleted = 1;
	return touch_parent(c, op->key, op->key_len);
}

static int op_create(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if (path_reserved(p, len)) return -EPERM;
	if (op->value_len > c->sm->value_bytes_max) return -EFBIG;
	if (len && (rc = parent_check(c, p, len)) < 0) return rc;
	sm_record_t r;
	rc = rec_get(c, p, len, &r);
	if (rc == -ENOENT)
		return create_rec(c, p, len, SM_KIND_FILE, S_IFREG | (op->mode & 07777), op->uid, op->gid,
		                  op->value, op->value_len, op->ino, res);
	if (rc < 0) return rc;
	if (op->flags & SM_F_EXCL) return -EEXIST;
	if (r.kind == SM_KIND_DIR) return -EISDIR;
	if (op->flags & SM_F_TRUNC) return set_value(c, p, len, &r, op->value, op->value_len, res);
	res->has_rec = true;
	return rec_copy(c, &res->rec, &r, false);
}

static int op_write(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if ((op->flags & SM_F_CREATE) && path_reserved(p, len)) return -EPERM;
	if (op->value_len > c->sm->value_bytes_max) return -EFBIG;
	if (len == 0) return -EISDIR;
	sm_record_t r;
	rc = rec_get(c, p, len, &r);
	if (rc == -ENOENT) {
		if ((rc = parent_check(c, p, len)) < 0) return rc;
		if (!(op->flags & SM_F_CREATE)) return -ENOENT;
		return create_rec(c, p, len, SM_KIND_FILE, S_IFREG | (op->mode & 07777), op->uid, op->gid,
		                  op->value, op->value_len, op->ino, res);
	}
	if (rc < 0) return rc;
	if (r.kind == SM_KIND_DIR) return -EISDIR;
	return set_value(c, p, len, &r, op->value, op->value_len, res);
}

static int op_setattr(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	sm_record_t old, r;
	if ((rc = lookup_path(c, p, len, &old)) < 0) return rc;
	uint32_t mask = op->attr_mask;
	if (mask & SM_ATTR_SIZE) {
		if (old.kind == SM_KIND_DIR) return -EISDIR;
		if (op->size > c->sm->value_bytes_max) return -EFBIG;
	}
	r = old;
	if (mask & SM_ATTR_MODE) r.mode = (old.mode & S_IFMT) | (op->mode & 07777);
	if (mask & SM_ATTR_UID) r.uid = op->uid;
	if (mask & SM_ATTR_GID) r.gid = op->gid;
	if (mask & SM_ATTR_SIZE) {
		size_t size = (size_t)op->size;
		uint8_t *v = NULL;
		if (size) {
			v = arena_alloc(&c->ov.arena, size);
			if (!v) return fail(c, -ENOMEM);
			size_t keep = old.value_len < size ? old.value_len : size;
			if (keep) memcpy(v, old.value, keep);
			memset(v + keep, 0, size - keep);
		}
		r.value = v;
		r.value_len = size;
		r.size = size;
		r.mtime_ns = c->time_ns;
	}
	if (mask & SM_ATTR_MTIME) r.mtime_ns = op->mtime_ns;
	r.ctime_ns = c->time_ns;
	r.version++;
	r.mod_revision = c->rev;
	if ((rc = rec_put(c, p, len, &r)) < 0) return rc;
	sm_event_type_t type = (mask & SM_ATTR_SIZE) ? SM_EV_MODIFY : SM_EV_ATTRIB;
	if ((rc = ev_push(c, type, p, len, NULL, 0, &old, &r, NULL)) < 0) return rc;
	res->has_rec = true;
	return rec_copy(c, &res->rec, &r, false);
}

static int op_unlink(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if (len == 0) return -EISDIR;
	sm_record_t r;
	if ((rc = lookup_path(c, p, len, &r)) < 0) return rc;
	if (r.kind == SM_KIND_DIR) return -EISDIR;
	if ((rc = rec_del(c, p, len)) < 0) return rc;
	if ((rc = ev_push(c, SM_EV_DELETE, p, len, NULL, 0, &r, NULL, NULL)) < 0) return rc;
	res->deleted = 1;
	return touch_parent(c, p, len);
}

static int op_mkdir(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if (path_reserved(p, len)) return -EPERM;
	if (len && (rc = parent_check(c, p, len)) < 0) return rc;
	sm_record_t r;
	rc = rec_get(c, p, len, &r);
	if (rc == 0) return -EEXIST;
	if (rc != -ENOENT) return rc;
	return create_rec(c, p, len, SM_KIND_DIR, S_IFDIR | (op->mode & 07777), op->uid, op->gid, NULL, 0,
	                  op->ino, res);
}

static int op_rmdir(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if (len == 0) return -EBUSY;
	sm_record_t r;
	if ((rc = lookup_path(c, p, len, &r)) < 0) return rc;
	if (r.kind != SM_KIND_DIR) return -ENOTDIR;
	bool full;
	if ((rc = dir_has_children(c, p, len, &full)) < 0) return rc;
	if (full) return -ENOTEMPTY;
	if ((rc = rec_del(c, p, len)) < 0) return rc;
	if ((rc = ev_push(c, SM_EV_DELETE, p, len, NULL, 0, &r, NULL, NULL)) < 0) return rc;
	res->deleted = 1;
	return touch_parent(c, p, len);
}

static int op_symlink(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *p = op->key;
	size_t len = op->key_len;
	int rc = sm_key_check(p, len);
	if (rc < 0) return rc;
	if (path_reserved(p, len)) return -EPERM;
	if (op->value_len == 0) return -ENOENT;
	if (op->value_len > SYMLINK_TARGET_BYTES_MAX) return -ENAMETOOLONG;
	if (memchr(op->value, '\0', op->value_len)) return -EINVAL;
	if (len && (rc = parent_check(c, p, len)) < 0) return rc;
	sm_record_t r;
	rc = rec_get(c, p, len, &r);
	if (rc == 0) return -EEXIST;
	if (rc != -ENOENT) return rc;
	return create_rec(c, p, len, SM_KIND_SYMLINK, S_IFLNK | 0777, op->uid, op->gid, op->value,
	                  op->value_len, op->ino, res);
}

/* Moved descendants must still fit in a key. */
static int check_moved_lengths(const items_t *items, size_t from_len, size_t to_len)
{
	for (size_t i = 0; i < items->n; i++) {
		size_t path_len = items->v[i].key_len - 1;
		if (path_len - from_len + to_len > SM_KEY_BYTES_MAX) return -ENAMETOOLONG;
	}
	return 0;
}

/* Re-put each descendant of `from` under `to`: same record, mod_revision = this txn's. */
static int put_moved(apply_ctx_t *c, const items_t *items, size_t from_len, const char *to, size_t to_len)
{
	char path[SM_KEY_BYTES_MAX];
	for (size_t i = 0; i < items->n; i++) {
		const item_t *it = &items->v[i];
		size_t rest = it->key_len - 1 - from_len; /* "/x/y" after the old top's path */
		assert(to_len + rest <= SM_KEY_BYTES_MAX);
		memcpy(path, to, to_len);
		memcpy(path + to_len, it->key + 1 + from_len, rest);
		sm_record_t r;
		if (sm_record_decode(it->val, it->val_len, &r) < 0) return fail(c, -EIO);
		r.mod_revision = c->rev;
		int rc = rec_put(c, path, to_len + rest, &r);
		if (rc < 0) return rc;
	}
	return 0;
}

static int del_items(apply_ctx_t *c, const items_t *items)
{
	for (size_t i = 0; i < items->n; i++) {
		int rc = rec_del_key(c, items->v[i].key, items->v[i].key_len);
		if (rc < 0) return rc;
	}
	return 0;
}

static int do_exchange(apply_ctx_t *c, const sm_op_t *op, const sm_record_t *a, const sm_record_t *b,
                       sm_op_result_t *res)
{
	const char *k1 = op->key, *k2 = op->key2;
	size_t l1 = op->key_len, l2 = op->key2_len;
	items_t ta = {0}, tb = {0};
	int rc = 0;
	if (a->kind == SM_KIND_DIR) rc = collect_subtree(c, k1, l1, &ta);
	if (!rc && b->kind == SM_KIND_DIR) rc = collect_subtree(c, k2, l2, &tb);
	if (!rc) rc = check_moved_lengths(&ta, l1, l2);
	if (!rc) rc = check_moved_lengths(&tb, l2, l1);
	if (!rc) rc = del_items(c, &ta);
	if (!rc) rc = del_items(c, &tb);
	sm_record_t na = *a, nb = *b; /* na: a's record at k2; nb: b's record at k1 */
	na.mod_revision = nb.mod_revision = c->rev;
	na.ctime_ns = nb.ctime_ns = c->time_ns;
	if (!rc) rc = rec_put(c, k1, l1, &nb);
	if (!rc) rc = rec_put(c, k2, l2, &na);
	if (!rc) rc = put_moved(c, &ta, l1, k2, l2);
	if (!rc) rc = put_moved(c, &tb, l2, k1, l1);
	if (!rc) rc = touch_parent(c, k1, l1);
	if (!rc) rc = touch_parent(c, k2, l2);
	if (!rc) rc = ev_push(c, SM_EV_EXCHANGE, k1, l1, k2, l2, a, &nb, NULL);
	if (!rc) {
		res->has_rec = true;
		rc = rec_copy(c, &res->rec, &na, false);
	}
	free(ta.v);
	free(tb.v);
	return rc;
}

static int do_rename(apply_ctx_t *c, const sm_op_t *op, const sm_record_t *src, const sm_record_t *dst,
                     sm_op_result_t *res)
{
	const char *k1 = op->key, *k2 = op->key2;
	size_t l1 = op->key_len, l2 = op->key2_len;
	items_t t = {0};
	int rc = 0;
	if (src->kind == SM_KIND_DIR) rc = collect_subtree(c, k1, l1, &t);
	if (!rc) rc = check_moved_lengths(&t, l1, l2);
	if (!rc && dst) rc = rec_del(c, k2, l2); /* a file or an empty directory */
	if (!rc) rc = del_items(c, &t);
	if (!rc) rc = rec_del(c, k1, l1);
	sm_record_t moved = *src;
	moved.mod_revision = c->rev;
	moved.ctime_ns = c->time_ns;
	if (!rc) rc = rec_put(c, k2, l2, &moved);
	if (!rc) rc = put_moved(c, &t, l1, k2, l2);
	if (!rc) rc = touch_parent(c, k1, l1);
	if (!rc) rc = touch_parent(c, k2, l2);
	if (!rc) rc = ev_push(c, SM_EV_RENAME, k1, l1, k2, l2, src, &moved, dst);
	if (!rc) {
		res->has_rec = true;
		rc = rec_copy(c, &res->rec, &moved, false);
	}
	free(t.v);
	return rc;
}

static int op_rename(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	const char *k1 = op->key, *k2 = op->key2;
	size_t l1 = op->key_len, l2 = op->key2_len;
	bool exchange = op->flags & SM_F_EXCHANGE, noreplace = op->flags & SM_F_NOREPLACE;
	if (exchange && noreplace) return -EINVAL;
	if (!k2 && l2) return -EINVAL;
	int rc = sm_key_check(k1, l1);
	if (!rc) rc = sm_key_check(k2, l2);
	if (rc < 0) return rc;
	if (l1 == 0 || l2 == 0) return -EBUSY;
	if (path_reserved(k2, l2)) return -EPERM;
	if ((rc = parent_check(c, k1, l1)) < 0) return rc;
	if ((rc = parent_check(c, k2, l2)) < 0) return rc;
	sm_record_t src, dst;
	if ((rc = rec_get(c, k1, l1, &src)) < 0) return rc;
	rc = rec_get(c, k2, l2, &dst);
	if (rc < 0 && rc != -ENOENT) return rc;
	bool dst_exists = rc == 0;
	if (noreplace && dst_exists) return -EEXIST;
	if (exchange && !dst_exists) return -ENOENT;
	if (path_below(k2, l2, k1, l1)) return -EINVAL;
	if (path_below(k1, l1, k2, l2)) return exchange ? -EINVAL : -ENOTEMPTY;
	if (l1 == l2 && memcmp(k1, k2, l1) == 0) {
		res->has_rec = true;
		return rec_copy(c, &res->rec, &src, false);
	}
	if (exchange) return do_exchange(c, op, &src, &dst, res);
	if (dst_exists) {
		bool src_dir = src.kind == SM_KIND_DIR, dst_dir = dst.kind == SM_KIND_DIR;
		if (src_dir && !dst_dir) return -ENOTDIR;
		if (!src_dir && dst_dir) return -EISDIR;
		if (dst_dir) {
			bool full;
			if ((rc = dir_has_children(c, k2, l2, &full)) < 0) return rc;
			if (full) return -ENOTEMPTY;
		}
	}
	return do_rename(c, op, &src, dst_exists ? &dst : NULL, res);
}

static int op_run(apply_ctx_t *c, const sm_op_t *op, sm_op_result_t *res)
{
	if ((!op->key && op->key_len) || (!op->value && op->value_len)) return -EINVAL;
	switch (op->type) {
	case SM_OP_GET:
		return op_get(c, op, res);
	case SM_OP_PUT:
		return op_put(c, op, res);
	case SM_OP_DEL:
		return op_del(c, op, res);
	case SM_OP_CREATE:
		return op_create(c, op, res);
	case SM_OP_WRITE:
		return op_write(c, op, res);
	case SM_OP_SETATTR:
		return op_setattr(c, op, res);
	case SM_OP_UNLINK:
		return op_unlink(c, op, res);
	case SM_OP_MKDIR:
		return op_mkdir(c, op, res);
	case SM_OP_RMDIR:
		return op_rmdir(c, op, res);
	case SM_OP_RENAME:
		return op_rename(c, op, res);
	case SM_OP_SYMLINK:
		return op_symlink(c, op, res);
	}
	return -EINVAL;
}

/* ------------------------------------------------------------------ transactions */

static int compare_eval(apply_ctx_t *c, const sm_compare_t *cmp, bool *held)
{
	if (!cmp->key && cmp->key_len) return -EINVAL;
	int rc = sm_key_check(cmp->key, cmp->key_len);
	if (rc < 0) return rc;
	if (cmp->target < SM_CMP_VALUE || cmp->target > SM_CMP_MOD || cmp->op < SM_CMP_EQ ||
	    cmp->op > SM_CMP_GT)
		return -EINVAL;
	if (cmp->target == SM_CMP_VALUE && !cmp->value && cmp->value_len) return -EINVAL;
	sm_record_t r;
	rc = rec_get(c, cmp->key, cmp->key_len, &r);
	if (rc < 0 && rc != -ENOENT) return rc;
	bool found = rc == 0;
	int order;
	if (cmp->target == SM_CMP_VALUE) {
		if (!found) {
			*held = false;
			return 0;
		}
		order = key_cmp(r.value, r.value_len, cmp->value, cmp->value_len);
	} else {
		int64_t n = !found                          ? 0
		            : cmp->target == SM_CMP_VERSION ? r.version
		            : cmp->target == SM_CMP_CREATE  ? r.create_revision
		                                            : r.mod_revision;
		order = n < cmp->number ? -1 : n > cmp->number;
	}
	switch (cmp->op) {
	case SM_CMP_EQ:
		*held = order == 0;
		break;
	case SM_CMP_NE:
		*held = order != 0;
		break;
	case SM_CMP_LT:
		*held = order < 0;
		break;
	case SM_CMP_GT:
		*held = order > 0;
		break;
	}
	return 0;
}

static void origin_key(uint8_t *k, uint32_t node)
{
	memcpy(k, META_ORIGIN, sizeof META_ORIGIN - 1);
	put_u32be(k + sizeof META_ORIGIN - 1, node);
}

/* Last applied seq of node (0 if none); *exists tells whether the key is there. */
static int origin_get(apply_ctx_t *c, uint32_t node, uint64_t *seq, bool *exists)
{
	uint8_t k[META_ORIGIN_KEY_BYTES];
	origin_key(k, node);
	const uint8_t *v;
	size_t vl;
	int rc = ov_get(c, k, sizeof k, &v, &vl);
	*seq = 0;
	*exists = rc == 0;
	if (rc == -ENOENT) return 0;
	if (rc < 0) return rc;
	if (vl != 8) return fail(c, -EIO);
	*seq = get_u64(v);
	return 0;
}

static int origin_set(apply_ctx_t *c, uint32_t node, uint64_t seq)
{
	uint8_t k[META_ORIGIN_KEY_BYTES];
	origin_key(k, node);
	uint64_t old;
	bool exists;
	int rc = origin_get(c, node, &old, &exists);
	if (rc < 0) return rc;
	assert(seq > old);
	uint8_t *v = arena_alloc(&c->ov.arena, 8);
	if (!v) return fail(c, -ENOMEM);
	put_u64(v, seq);
	if (ov_set(&c->ov, k, sizeof k, OV_PUT, v, 8) < 0) return fail(c, -ENOMEM);
	if (!exists) c->meta_keys_new++;
	return 0;
}

static int txn_run(apply_ctx_t *c, const sm_txn_t *t, sm_txn_result_t *tr)
{
	memset(tr, 0, sizeof *tr);
	tr->revision = c->revision;
	bool dedupe = t->origin_node != 0 && t->origin_seq != 0;
	int rc;
	if (dedupe) {
		uint64_t last;
		bool exists;
		if ((rc = origin_get(c, t->origin_node, &last, &exists)) < 0) return rc;
		if (t->origin_seq <= last) {
			tr->duplicate = true;
			return 0;
		}
	}
	c->rev = c->revision + 1;
	c->time_ns = t->time_ns;
	c->wrote = false;
	c->ov.n_undo = 0; /* earlier txns of the batch are final */
	bool held = true;
	for (uint32_t i = 0; i < t->n_compare && !tr->err; i++) {
		bool h = false;
		rc = compare_eval(c, &t->compares[i], &h);
		if (c->fatal) return c->fatal;
		if (rc < 0) tr->err = rc;
		held = held && h;
	}
	if (!tr->err) {
		tr->succeeded = held;
		const sm_op_t *ops = held ? t->success : t->failure;
		uint32_t n = held ? t->n_success : t->n_failure;
		assert(ops || n == 0);
		if (n) {
			tr->ops = arena_alloc(c->res, n * sizeof *tr->ops);
			if (!tr->ops) return fail(c, -ENOMEM);
			memset(tr->ops, 0, n * sizeof *tr->ops);
		}
		tr->n_ops = n;
		arena_mark_t res_mark = arena_mark(c->res);
		size_t ev_mark = c->n_ev;
		uint64_t ino_mark = c->next_ino;
		for (uint32_t i = 0; i < n; i++) {
			rc = op_run(c, &ops[i], &tr->ops[i]);
			if (c->fatal) return c->fatal;
			if (rc == 0) continue;
			assert(rc < 0);
			ov_rollback(&c->ov, 0);
			arena_rollback(c->res, res_mark);
			c->n_ev = ev_mark;
			c->next_ino = ino_mark;
			c->wrote = false;
			memset(tr->ops, 0, n * sizeof *tr->ops);
			tr->ops[i].err = rc;
			tr->err = rc;
			break;
		}
		if (!tr->err && c->wrote) c->revision = c->rev;
		tr->revision = c->revision;
	}
	if (dedupe && (rc = origin_set(c, t->origin_node, t->origin_seq)) < 0) return rc;
	return 0;
}

static int put_meta_u64(apply_ctx_t *c, const char *name, uint64_t v)
{
	uint8_t *buf = arena_alloc(&c->ov.arena, 8);
	if (!buf) return -ENOMEM;
	put_u64(buf, v);
	return ov_set(&c->ov, (const uint8_t *)name, strlen(name), OV_PUT, buf, 8);
}

/* The overlay, in key order, as one engine batch. */
static int flush_overlay(apply_ctx_t *c, engine_batch_t *b)
{
	for (ov_node_t *n = c->ov.head->next[0]; n; n = n->next[0]) {
		int rc = 0;
		if (n->state == OV_PUT)
			rc = engine_batch_put(b, n->key, n->key_len, n->val, n->val_len);
		else if (n->state == OV_DEL)
			rc = engine_batch_delete(b, n->key, n->key_len);
		if (rc < 0) return rc;
	}
	return 0;
}

static void res_arena_free(arena_t *a)
{
	if (!a) return;
	arena_free(a);
	free(a);
}

void sm_apply_result_free(sm_apply_result_t *r)
{
	if (!r) return;
	res_arena_free(r->arena);
	memset(r, 0, sizeof *r);
}

int sm_apply(sm_t *sm, const sm_batch_t *batch, uint64_t index, sm_apply_result_t *out)
{
	assert(sm && batch && out);
	assert(batch->txns || batch->n_txn == 0);
	memset(out, 0, sizeof *out);
	if (index <= engine_applied_index(sm->e)) return -EALREADY;
	apply_ctx_t c;
	memset(&c, 0, sizeof c);
	c.sm = sm;
	c.revision = sm->revision;
	c.next_ino = sm->next_ino;
	int rc = ov_init(&c.ov);
	c.res = calloc(1, sizeof *c.res);
	c.it.e = sm->e;
	c.it.ov = &c.ov;
	if (rc < 0 || !c.res) {
		rc = -ENOMEM;
		goto err;
	}
	if (batch->n_txn) {
		out->txns = arena_alloc(c.res, batch->n_txn * sizeof *out->txns);
		if (!out->txns) {
			rc = -ENOMEM;
			goto err;
		}
	}
	for (uint32_t i = 0; i < batch->n_txn; i++) {
		c.txn_index = i;
		if ((rc = txn_run(&c, &batch->txns[i], &out->txns[i])) < 0) goto err;
	}
	c.ov.n_undo = 0;
	if (c.it.eit) engine_iter_free(c.it.eit); /* before the write that invalidates it */
	c.it.eit = NULL;
	if (c.revision != sm->revision && (rc = put_meta_u64(&c, META_REVISION, (uint64_t)c.revision)) < 0)
		goto err;
	if (c.next_ino != sm->next_ino && (rc = put_meta_u64(&c, META_NEXT_INO, c.next_ino)) < 0) goto err;
	if (c.n_ev) {
		out->events = arena_dup(c.res, c.ev, c.n_ev * sizeof *c.ev);
		if (!out->events) {
			rc = -ENOMEM;
			goto err;
		}
	}
	engine_batch_clear(sm->batch);
	if ((rc = flush_overlay(&c, sm->batch)) < 0) goto err;
	if ((rc = engine_batch_commit(sm->e, sm->batch, index)) < 0) goto err;
	engine_batch_clear(sm->batch);
	sm->revision = c.revision;
	sm->next_ino = c.next_ino;
	sm->meta_keys += c.meta_keys_new;
	out->n_txn = batch->n_txn;
	out->n_events = c.n_ev;
	out->arena = c.res;
	ov_free(&c.ov);
	free(c.ev);
	return 0;
err:
	assert(rc < 0);
	engine_batch_clear(sm->batch);
	if (c.it.eit) engine_iter_free(c.it.eit);
	ov_free(&c.ov);
	free(c.ev);
	res_arena_free(c.res);
	memset(out, 0, sizeof *out);
	return rc;
}

int sm_apply_noop(sm_t *sm, uint64_t index)
{
	assert(sm);
	if (index <= engine_applied_index(sm->e)) return -EALREADY;
	engine_batch_clear(sm->batch);
	return engine_batch_commit(sm->e, sm->batch, index);
}

/* ------------------------------------------------------------------ local reads */

int sm_get(sm_t *sm, const char *key, size_t key_len, sm_record_t *rec)
{
	assert(sm && rec);
	int rc = sm_key_check(key, key_len);
	if (rc < 0) return rc;
	keybuf_t k;
	keybuf_data(&k, key, key_len);
	const void *v;
	size_t vl;
	if ((rc = engine_get(sm->e, k.b, k.len, &v, &vl)) < 0) return rc;
	return sm_record_decode(v, vl, rec) < 0 ? -EIO : 0;
}

int sm_list(sm_t *sm, const char *dir, size_t dir_len, const char *after, size_t after_len, sm_list_fn fn,
            void *ctx)
{
	assert(sm && fn);
	int rc = sm_key_check(dir, dir_len);
	if (rc < 0) return rc;
	if (after_len > SM_NAME_BYTES_MAX || (!after && after_len)) return -EINVAL;
	/* The lookup helpers of apply, over an empty overlay. */
	apply_ctx_t c;
	memset(&c, 0, sizeof c);
	c.sm = sm;
	sm_record_t r;
	rc = dir_len ? lookup_path(&c, dir, dir_len, &r) : rec_get(&c, dir, dir_len, &r);
	if (rc < 0) return rc;
	if (r.kind != SM_KIND_DIR) return -ENOTDIR;
	miter_t m = {.e = sm->e, .ov = &c.ov};
	keybuf_t prefix, seek;
	keybuf_children(&prefix, dir, dir_len);
	seek = prefix;
	if (after_len) {
		memcpy(seek.b + seek.len, after, after_len);
		seek.len += after_len;
	}
	rc = mi_seek(&m, seek.b, seek.len);
	while (!rc && m.valid && has_prefix(m.key, m.key_len, prefix.b, prefix.len)) {
		const char *name = (const char *)m.key + prefix.len;
		size_t name_len = m.key_len - prefix.len;
		const char *slash = memchr(name, '/', name_len);
		if (slash) { /* a grandchild: seek past that child's subtree */
			seek.len = (size_t)(slash - (const char *)m.key);
			memcpy(seek.b, m.key, seek.len);
			seek.b[seek.len++] = '/' + 1;
			if ((rc = mi_seek(&m, seek.b, seek.len)) < 0) break;
			continue;
		}
		bool skip = name_len == 0 || (after_len && key_cmp(name, name_len, after, after_len) <= 0);
		if (!skip) {
			if (sm_record_decode(m.val, m.val_len, &r) < 0) {
				rc = -EIO;
				break;
			}
			if (fn(ctx, name, name_len, &r)) break;
		}
		mi_next(&m);
	}
	if (m.eit) engine_iter_free(m.eit);
	return rc;
}

/* ------------------------------------------------------------------ snapshots */

int sm_snapshot_write(sm_t *sm, engine_write_fn fn, void *ctx)
{
	assert(sm && fn);
	return engine_snapshot_write(sm->e, fn, ctx);
}

int sm_snapshot_read(sm_t *sm, engine_read_fn fn, void *ctx)
{
	assert(sm && fn);
	int rc = engine_snapshot_read(sm->e, fn, ctx);
	if (rc < 0) return rc;
	return sm_load(sm);
}
