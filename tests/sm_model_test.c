/* sm_model_test.c - randomized model test of the state machine (engine/sm.c).
 *
 * A seeded generator produces >= 100,000 operations of every type (etcd GET/PUT/DEL with
 * prefixes and ranges, CREATE/WRITE/SETATTR/UNLINK/MKDIR/RMDIR/RENAME/SYMLINK with their flags)
 * in transactions with compares, else-branches and origin (node, seq) pairs, over ~160 paths of
 * depth <= 3 whose names ("b", "b-c", "b.d", "b0", ...) sort around '/', so collisions, errors,
 * subtree renames and listing corner cases are frequent. The batches go to the real state
 * machine on the backend named by argv[1] AND to a small reference model written here from the
 * rules (a sorted array of path -> record, a transaction = a copy of the whole model). Every
 * txn result must match (err, succeeded, duplicate, revision, per-op errno, deleted counts, GET
 * keys, returned records), and every few hundred batches and at the end the full state must be
 * equal: every key, kind, mode, uid, gid, ino, size, value, times, version, create and mod
 * revision -- read back through sm_list() and sm_get(). The seed is printed; SEED=n replays it.
 */
#include "sm.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OPS_MIN 100000u
#define CHECK_EVERY_BATCHES 250u
#define VALUE_LIMIT 8u    /* sm value_bytes_max: EFBIG is frequent */
#define VALUE_GEN_MAX 10u /* generated values and sizes go a little past the limit */
#define MKEY 128u         /* model key buffer: renames nest subtrees, so keys can grow */
#define KEYBUF_MAX 512u   /* composed keys per batch */
#define MREC_MAX 256u     /* more than every generated path */
#define ORIGINS 4u
#define TXN_MAX 24u
#define OPS_PER_TXN_MAX 4u
#define PATH_BYTES 512

/* ------------------------------------------------------------------ the reference model */

typedef struct mrec {
	char key[MKEY];
	size_t key_len;
	int kind;
	uint32_t mode, uid, gid;
	uint64_t ino;
	int64_t mtime, ctime, crev, mrev, ver;
	uint8_t val[VALUE_GEN_MAX];
	size_t vlen;
} mrec_t;

typedef struct model {
	mrec_t recs[MREC_MAX]; /* sorted by key, memcmp order */
	size_t n;
	int64_t rev;
	uint64_t next_ino;
	uint64_t origin_seq[ORIGINS];
} model_t;

/* What one op returns, in the model's terms. */
typedef struct mres {
	int err;
	uint64_t deleted;
	size_t n_kvs;
	bool more;
	uint64_t kv_hash; /* of the returned keys, in order (see kv_hash_add) */
	bool has_rec;
	mrec_t rec;
} mres_t;

/* FNV-1a over a list of keys, each ended by a NUL: compares GET results without copying them. */
static uint64_t kv_hash_add(uint64_t h, const char *k, size_t kl)
{
	if (h == 0) h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i <= kl; i++) {
		h ^= i < kl ? (uint8_t)k[i] : 0;
		h *= 0x100000001b3ULL;
	}
	return h;
}

typedef struct mtx {
	model_t *m;
	int64_t rev; /* revision the txn writes with */
	int64_t t;   /* txn time */
	bool wrote;
} mtx_t;

static int kcmp(const char *a, size_t al, const char *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	return c ? c : (al < bl ? -1 : al > bl);
}

static bool starts_with(const char *k, size_t kl, const char *p, size_t pl)
{
	return kl >= pl && (pl == 0 || memcmp(k, p, pl) == 0);
}

/* Independent key rules: components 1..255 bytes, no NUL, not "." or "..", no leading,
 * trailing or double '/', whole key <= 4096. */
static int m_key_check(const char *k, size_t len)
{
	if (len == 0) return 0;
	if (len > 4096) return -ENAMETOOLONG;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && k[i] == '\0') return -EINVAL;
		if (i < len && k[i] != '/') continue;
		size_t n = i - start;
		if (n == 0) return -EINVAL;
		if (n > 255) return -ENAMETOOLONG;
		if ((n == 1 && k[start] == '.') || (n == 2 && k[start] == '.' && k[start + 1] == '.'))
			return -EINVAL;
		start = i + 1;
	}
	return 0;
}

static long m_find(const model_t *m, const char *k, size_t kl)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int c = kcmp(m->recs[mid].key, m->recs[mid].key_len, k, kl);
		if (c == 0) return (long)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

static mrec_t *m_get(model_t *m, const char *k, size_t kl)
{
	long i = m_find(m, k, kl);
	return i < 0 ? NULL : &m->recs[i];
}

static void m_insert(mtx_t *x, const mrec_t *r)
{
	model_t *m = x->m;
	ck_assert(m_find(m, r->key, r->key_len) < 0);
	ck_assert_uint_lt(m->n, MREC_MAX);
	size_t i = 0;
	while (i < m->n && kcmp(m->recs[i].key, m->recs[i].key_len, r->key, r->key_len) < 0)
		i++;
	memmove(&m->recs[i + 1], &m->recs[i], (m->n - i) * sizeof *r);
	m->recs[i] = *r;
	m->n++;
	x->wrote = true;
}

static void m_remove(mtx_t *x, const char *k, size_t kl)
{
	model_t *m = x->m;
	long i = m_find(m, k, kl);
	ck_assert(i > 0); /* never the root */
	memmove(&m->recs[i], &m->recs[i + 1], (m->n - (size_t)i - 1) * sizeof(mrec_t));
	m->n--;
	x->wrote = true;
}

static size_t parent_of(const char *k, size_t kl)
{
	while (kl > 0 && k[kl - 1] != '/')
		kl--;
	return kl ? kl - 1 : 0;
}

static bool reserved(const char *k, size_t kl)
{
	return starts_with(k, kl, ".metastore", 10) && (kl == 10 || k[10] == '/');
}

/* Parent of k (non-root) is a dir: 0; else ENOTDIR/ENOENT by the nearest existing ancestor. */
static int m_parent_check(model_t *m, const char *k, size_t kl)
{
	size_t pl = parent_of(k, kl);
	bool first = true;
	for (;;) {
		mrec_t *p = m_get(m, k, pl);
		if (p) return p->kind != SM_KIND_DIR ? -ENOTDIR : first ? 0 : -ENOENT;
		ck_assert_uint_gt(pl, 0);
		pl = parent_of(k, pl);
		first = false;
	}
}

static int m_lookup(model_t *m, const char *k, size_t kl, mrec_t **out)
{
	*out = m_get(m, k, kl);
	if (*out) return 0;
	int rc = m_parent_check(m, k, kl);
	return rc ? rc : -ENOENT;
}

static bool m_has_children(const model_t *m, const char *k, size_t kl)
{
	for (size_t i = 0; i < m->n; i++) {
		const mrec_t *r = &m->recs[i];
		if (r->key_len > kl && r->key[kl] == '/' && memcmp(r->key, k, kl) == 0) return true;
	}
	return false;
}

static void m_touch(mtx_t *x, const char *k, size_t kl)
{
	mrec_t *p = m_get(x->m, k, parent_of(k, kl));
	if (!p) return;
	ck_assert_int_eq(p->kind, SM_KIND_DIR);
	p->mtime = p->ctime = x->t;
	x->wrote = true;
}

static void m_create(mtx_t *x, const char *k, size_t kl, int kind, uint32_t mode, uint32_t uid, uint32_t gid,
                     const uint8_t *v, size_t vl, mres_t *res)
{
	mrec_t r;
	memset(&r, 0, sizeof r);
	memcpy(r.key, k, kl);
	r.key_len = kl;
	r.kind = kind;
	r.mode = mode;
	r.uid = uid;
	r.gid = gid;
	r.ino = x->m->next_ino++;
	r.mtime = r.ctime = x->t;
	r.crev = r.mrev = x->rev;
	r.ver = 1;
	if (kind != SM_KIND_DIR) {
		memcpy(r.val, v, vl);
		r.vlen = vl;
	}
	m_insert(x, &r);
	m_touch(x, k, kl);
	if (res) {
		res->has_rec = true;
		res->rec = r;
	}
}

static void m_set_value(mtx_t *x, mrec_t *r, const uint8_t *v, size_t vl, mres_t *res)
{
	memcpy(r->val, v, vl);
	r->vlen = vl;
	r->mtime = r->ctime = x->t;
	r->ver++;
	r->mrev = x->rev;
	x->wrote = true;
	res->has_rec = true;
	res->rec = *r;
}

/* --- ops */

static bool in_range(const sm_op_t *op, const char *k, size_t kl)
{
	if (op->flags & SM_F_PREFIX) return starts_with(k, kl, op->key, op->key_len);
	if (kcmp(k, kl, op->key, op->key_len) < 0) return false;
	if (op->key2_len == 1 && op->key2[0] == '\0') return true;
	return kcmp(k, kl, op->key2, op->key2_len) < 0;
}

static int m_get_op(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	model_t *m = x->m;
	if (!(op->flags & SM_F_PREFIX) && !op->key2) {
		int rc = m_key_check(op->key, op->key_len);
		if (rc) return rc;
		mrec_t *r = m_get(m, op->key, op->key_len);
		if (r) {
			res->n_kvs = 1;
			res->kv_hash = kv_hash_add(res->kv_hash, op->key, op->key_len);
		}
		return 0;
	}
	for (size_t i = 0; i < m->n; i++) {
		mrec_t *r = &m->recs[i];
		if (!in_range(op, r->key, r->key_len)) continue;
		if (op->limit && res->n_kvs == op->limit) {
			res->more = true;
			break;
		}
		res->kv_hash = kv_hash_add(res->kv_hash, r->key, r->key_len);
		res->n_kvs++;
	}
	return 0;
}

static int m_put(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	const char *k = op->key;
	size_t kl = op->key_len;
	int rc = m_key_check(k, kl);
	if (rc) return rc;
	if (kl == 0) return -EISDIR;
	if (reserved(k, kl)) return -EPERM;
	if (op->value_len > VALUE_LIMIT) return -EFBIG;
	for (size_t i = 0; i < kl; i++) {
		if (k[i] != '/') continue;
		mrec_t *p = m_get(x->m, k, i);
		if (!p)
			m_create(x, k, i, SM_KIND_DIR, S_IFDIR | 0755, op->uid, op->gid, NULL, 0, NULL);
		else if (p->kind != SM_KIND_DIR)
			return -ENOTDIR;
	}
	mrec_t *r = m_get(x->m, k, kl);
	if (!r) {
		m_create(x, k, kl, SM_KIND_FILE, S_IFREG | 0644, op->uid, op->gid, op->value, op->value_len,
		         res);
		return 0;
	}
	if (r->kind == SM_KIND_DIR) return -EISDIR;
	m_set_value(x, r, op->value, op->value_len, res);
	return 0;
}

static int m_del(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	model_t *m = x->m;
	if (!(op->flags & SM_F_PREFIX) && !op->key2) {
		int rc = m_key_check(op->key, op->key_len);
		if (rc) return rc;
		if (op->key_len == 0) return -EBUSY;
		mrec_t *r = m_get(m, op->key, op->key_len);
		if (!r) return 0;
		if (r->kind == SM_KIND_DIR && m_has_children(m, op->key, op->key_len)) return -ENOTEMPTY;
		m_remove(x, op->key, op->key_len);
		m_touch(x, op->key, op->key_len);
		res->deleted = 1;
		return 0;
	}
	/* the set: keys in range, plus the whole subtree of every directory in range; never the root */
	bool doomed[MREC_MAX] = {0};
	for (size_t i = 1; i < m->n; i++) {
		mrec_t *r = &m->recs[i];
		if (!in_range(op, r->key, r->key_len)) continue;
		doomed[i] = true;
		if (r->kind != SM_KIND_DIR) continue;
		for (size_t j = 1; j < m->n; j++) {
			mrec_t *d = &m->recs[j];
			if (d->key_len > r->key_len && d->key[r->key_len] == '/' &&
			    memcmp(d->key, r->key, r->key_len) == 0)
				doomed[j] = true;
		}
	}
	char keys[MREC_MAX][MKEY];
	size_t lens[MREC_MAX], n = 0;
	for (size_t i = 0; i < m->n; i++) {
		if (!doomed[i]) continue;
		memcpy(keys[n], m->recs[i].key, m->recs[i].key_len);
		lens[n++] = m->recs[i].key_len;
	}
	for (size_t i = 0; i < n; i++)
		m_remove(x, keys[i], lens[i]);
	for (size_t i = 0; i < n; i++)
		m_touch(x, keys[i], lens[i]);
	res->deleted = n;
	return 0;
}

static int m_create_op(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	const char *k = op->key;
	size_t kl = op->key_len;
	int rc = m_key_check(k, kl);
	if (rc) return rc;
	if (reserved(k, kl)) return -EPERM;
	if (op->value_len > VALUE_LIMIT) return -EFBIG;
	if (kl && (rc = m_parent_check(x->m, k, kl))) return rc;
	mrec_t *r = m_get(x->m, k, kl);
	if (!r) {
		m_create(x, k, kl, SM_KIND_FILE, S_IFREG | (op->mode & 07777), op->uid, op->gid, op->value,
		         op->value_len, res);
		return 0;
	}
	if (op->flags & SM_F_EXCL) return -EEXIST;
	if (r->kind == SM_KIND_DIR) return -EISDIR;
	if (op->flags & SM_F_TRUNC) {
		m_set_value(x, r, op->value, op->value_len, res);
		return 0;
	}
	res->has_rec = true;
	res->rec = *r;
	return 0;
}

static int m_write(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	const char *k = op->key;
	size_t kl = op->key_len;
	int rc = m_key_check(k, kl);
	if (rc) return rc;
	bool create = op->flags & SM_F_CREATE;
	if (create && reserved(k, kl)) return -EPERM;
	if (op->value_len > VALUE_LIMIT) return -EFBIG;
	if (kl == 0) return -EISDIR;
	mrec_t *r = m_get(x->m, k, kl);
	if (!r) {
		if ((rc = m_parent_check(x->m, k, kl))) return rc;
		if (!create) return -ENOENT;
		m_create(x, k, kl, SM_KIND_FILE, S_IFREG | (op->mode & 07777), op->uid, op->gid, op->value,
		         op->value_len, res);
		return 0;
	}
	if (r->kind == SM_KIND_DIR) return -EISDIR;
	m_set_value(x, r, op->value, op->value_len, res);
	return 0;
}

static int m_setattr(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	int rc = m_key_check(op->key, op->key_len);
	if (rc) return rc;
	mrec_t *r;
	if ((rc = m_lookup(x->m, op->key, op->key_len, &r))) return rc;
	uint32_t mask = op->attr_mask;
	if (mask & SM_ATTR_SIZE) {
		if (r->kind == SM_KIND_DIR) return -EISDIR;
		if (op->size > VALUE_LIMIT) return -EFBIG;
	}
	if (mask & SM_ATTR_MODE) r->mode = (r->mode & S_IFMT) | (op->mode & 07777);
	if (mask & SM_ATTR_UID) r->uid = op->uid;
	if (mask & SM_ATTR_GID) r->gid = op->gid;
	if (mask & SM_ATTR_SIZE) {
		size_t size = (size_t)op->size;
		if (size > r->vlen) memset(r->val + r->vlen, 0, size - r->vlen);
		r->vlen = size;
		r->mtime = x->t;
	}
	if (mask & SM_ATTR_MTIME) r->mtime = op->mtime_ns;
	r->ctime = x->t;
	r->ver++;
	r->mrev = x->rev;
	x->wrote = true;
	res->has_rec = true;
	res->rec = *r;
	return 0;
}

static int m_unlink(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	int rc = m_key_check(op->key, op->key_len);
	if (rc) return rc;
	if (op->key_len == 0) return -EISDIR;
	mrec_t *r;
	if ((rc = m_lookup(x->m, op->key, op->key_len, &r))) return rc;
	if (r->kind == SM_KIND_DIR) return -EISDIR;
	m_remove(x, op->key, op->key_len);
	m_touch(x, op->key, op->key_len);
	res->deleted = 1;
	return 0;
}

static int m_mkdir(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	const char *k = op->key;
	size_t kl = op->key_len;
	int rc = m_key_check(k, kl);
	if (rc) return rc;
	if (reserved(k, kl)) return -EPERM;
	if (kl && (rc = m_parent_check(x->m, k, kl))) return rc;
	if (m_get(x->m, k, kl)) return -EEXIST;
	m_create(x, k, kl, SM_KIND_DIR, S_IFDIR | (op->mode & 07777), op->uid, op->gid, NULL, 0, res);
	return 0;
}

static int m_rmdir(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	int rc = m_key_check(op->key, op->key_len);
	if (rc) return rc;
	if (op->key_len == 0) return -EBUSY;
	mrec_t *r;
	if ((rc = m_lookup(x->m, op->key, op->key_len, &r))) return rc;
	if (r->kind != SM_KIND_DIR) return -ENOTDIR;
	if (m_has_children(x->m, op->key, op->key_len)) return -ENOTEMPTY;
	m_remove(x, op->key, op->key_len);
	m_touch(x, op->key, op->key_len);
	res->deleted = 1;
	return 0;
}

static int m_symlink(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	const char *k = op->key;
	size_t kl = op->key_len;
	int rc = m_key_check(k, kl);
	if (rc) return rc;
	if (reserved(k, kl)) return -EPERM;
	if (op->value_len == 0) return -ENOENT;
	if (op->value_len > 4095) return -ENAMETOOLONG;
	if (memchr(op->value, 0, op->value_len)) return -EINVAL;
	if (kl && (rc = m_parent_check(x->m, k, kl))) return rc;
	if (m_get(x->m, k, kl)) return -EEXIST;
	m_create(x, k, kl, SM_KIND_SYMLINK, S_IFLNK | 0777, op->uid, op->gid, op->value, op->value_len, res);
	return 0;
}

static bool below(const char *in, size_t il, const char *out, size_t ol)
{
	return il > ol && in[ol] == '/' && memcmp(in, out, ol) == 0;
}

/* Remove the subtree of k (not k) into out[], keys rewritten relative: "" + "/rest". */
static size_t m_take_subtree(mtx_t *x, const char *k, size_t kl, mrec_t *out)
{
	model_t *m = x->m;
	size_t n = 0;
	for (size_t i = 0; i < m->n;) {
		mrec_t *r = &m->recs[i];
		if (below(r->key, r->key_len, k, kl)) {
			out[n] = *r;
			memset(out[n].key, 0, MKEY);
			memcpy(out[n].key, r->key + kl, r->key_len - kl);
			out[n].key_len = r->key_len - kl;
			n++;
			m_remove(x, r->key, r->key_len);
			continue;
		}
		i++;
	}
	return n;
}

static void m_put_subtree(mtx_t *x, const char *to, size_t tl, mrec_t *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		mrec_t r = items[i];
		ck_assert_uint_lt(tl + r.key_len, MKEY);
		memset(r.key, 0, MKEY);
		memcpy(r.key, to, tl);
		memcpy(r.key + tl, items[i].key, items[i].key_len);
		r.key_len = tl + items[i].key_len;
		r.mrev = x->rev;
		m_insert(x, &r);
	}
}

static mrec_t rekey(const mrec_t *r, const char *k, size_t kl, const mtx_t *x)
{
	mrec_t n = *r;
	memset(n.key, 0, MKEY);
	memcpy(n.key, k, kl);
	n.key_len = kl;
	n.mrev = x->rev;
	n.ctime = x->t;
	return n;
}

static int m_rename(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	model_t *m = x->m;
	const char *a = op->key, *b = op->key2;
	size_t al = op->key_len, bl = op->key2_len;
	bool exch = op->flags & SM_F_EXCHANGE, norep = op->flags & SM_F_NOREPLACE;
	if (exch && norep) return -EINVAL;
	int rc = m_key_check(a, al);
	if (!rc) rc = m_key_check(b, bl);
	if (rc) return rc;
	if (al == 0 || bl == 0) return -EBUSY;
	if (reserved(b, bl)) return -EPERM;
	if ((rc = m_parent_check(m, a, al))) return rc;
	if ((rc = m_parent_check(m, b, bl))) return rc;
	mrec_t *src = m_get(m, a, al), *dst = m_get(m, b, bl);
	if (!src) return -ENOENT;
	if (norep && dst) return -EEXIST;
	if (exch && !dst) return -ENOENT;
	if (below(b, bl, a, al)) return -EINVAL;
	if (below(a, al, b, bl)) return exch ? -EINVAL : -ENOTEMPTY;
	if (al == bl && memcmp(a, b, al) == 0) {
		res->has_rec = true;
		res->rec = *src;
		return 0;
	}
	static mrec_t ta[MREC_MAX], tb[MREC_MAX];
	mrec_t s = *src;
	if (exch) {
		mrec_t d = *dst;
		size_t na = m_take_subtree(x, a, al, ta);
		size_t nb = m_take_subtree(x, b, bl, tb);
		m_remove(x, a, al);
		m_remove(x, b, bl);
		mrec_t nd = rekey(&d, a, al, x), ns = rekey(&s, b, bl, x);
		m_insert(x, &nd);
		m_insert(x, &ns);
		m_put_subtree(x, b, bl, ta, na);
		m_put_subtree(x, a, al, tb, nb);
		m_touch(x, a, al);
		m_touch(x, b, bl);
		res->has_rec = true;
		res->rec = ns;
		return 0;
	}
	if (dst) {
		bool sd = s.kind == SM_KIND_DIR, dd = dst->kind == SM_KIND_DIR;
		if (sd && !dd) return -ENOTDIR;
		if (!sd && dd) return -EISDIR;
		if (dd && m_has_children(m, b, bl)) return -ENOTEMPTY;
		m_remove(x, b, bl);
	}
	size_t na = m_take_subtree(x, a, al, ta);
	m_remove(x, a, al);
	mrec_t ns = rekey(&s, b, bl, x);
	m_insert(x, &ns);
	m_put_subtree(x, b, bl, ta, na);
	m_touch(x, a, al);
	m_touch(x, b, bl);
	res->has_rec = true;
	res->rec = ns;
	return 0;
}

static int m_op(mtx_t *x, const sm_op_t *op, mres_t *res)
{
	switch (op->type) {
	case SM_OP_GET:
		return m_get_op(x, op, res);
	case SM_OP_PUT:
		return m_put(x, op, res);
	case SM_OP_DEL:
		return m_del(x, op, res);
	case SM_OP_CREATE:
		return m_create_op(x, op, res);
	case SM_OP_WRITE:
		return m_write(x, op, res);
	case SM_OP_SETATTR:
		return m_setattr(x, op, res);
	case SM_OP_UNLINK:
		return m_unlink(x, op, res);
	case SM_OP_MKDIR:
		return m_mkdir(x, op, res);
	case SM_OP_RMDIR:
		return m_rmdir(x, op, res);
	case SM_OP_RENAME:
		return m_rename(x, op, res);
	case SM_OP_SYMLINK:
		return m_symlink(x, op, res);
	}
	return -EINVAL;
}

static int m_compare(model_t *m, const sm_compare_t *c, bool *held)
{
	int rc = m_key_check(c->key, c->key_len);
	if (rc) return rc;
	mrec_t *r = m_get(m, c->key, c->key_len);
	int order;
	if (c->target == SM_CMP_VALUE) {
		if (!r) {
			*held = false;
			return 0;
		}
		order = kcmp((const char *)r->val, r->vlen, (const char *)c->value, c->value_len);
	} else {
		int64_t n = !r                            ? 0
		            : c->target == SM_CMP_VERSION ? r->ver
		            : c->target == SM_CMP_CREATE  ? r->crev
		                                          : r->mrev;
		order = n < c->number ? -1 : n > c->number;
	}
	*held = c->op == SM_CMP_EQ   ? order == 0
	        : c->op == SM_CMP_NE ? order != 0
	        : c->op == SM_CMP_LT ? order < 0
	                             : order > 0;
	return 0;
}

typedef struct mtxres {
	int err;
	bool succeeded, duplicate;
	int64_t revision;
	uint32_t n_ops;
	mres_t ops[OPS_PER_TXN_MAX];
} mtxres_t;

/* Per op type: runs and failures (printed at the end: shows what the run exercised). */
typedef struct mstats {
	uint64_t runs[SM_OP_SYMLINK + 1], fails[SM_OP_SYMLINK + 1];
	uint64_t total;
	uint64_t errnos[SM_OP_SYMLINK + 1][64];
} mstats_t;

static void m_txn(model_t *m, const sm_txn_t *t, mtxres_t *out, mstats_t *st)
{
	static model_t saved;
	memset(out, 0, sizeof *out);
	out->revision = m->rev;
	bool dedupe = t->origin_node && t->origin_seq;
	if (dedupe && t->origin_seq <= m->origin_seq[t->origin_node]) {
		out->duplicate = true;
		return;
	}
	saved.n = m->n; /* the live part of the model is enough */
	memcpy(saved.recs, m->recs, m->n * sizeof m->recs[0]);
	saved.rev = m->rev;
	saved.next_ino = m->next_ino;
	mtx_t x = {.m = m, .rev = m->rev + 1, .t = t->time_ns};
	bool held = true;
	for (uint32_t i = 0; i < t->n_compare && !out->err; i++) {
		bool h = false;
		out->err = m_compare(m, &t->compares[i], &h);
		held = held && h;
	}
	if (!out->err) {
		out->succeeded = held;
		const sm_op_t *ops = held ? t->success : t->failure;
		out->n_ops = held ? t->n_success : t->n_failure;
		for (uint32_t i = 0; i < out->n_ops; i++) {
			int rc = m_op(&x, &ops[i], &out->ops[i]);
			st->runs[ops[i].type]++;
			st->total++;
			st->fails[ops[i].type] += rc != 0;
			if (rc < 0 && -rc < 64) st->errnos[ops[i].type][-rc]++;
			if (!rc) continue;
			memcpy(m->recs, saved.recs, saved.n * sizeof m->recs[0]);
			m->n = saved.n;
			m->rev = saved.rev;
			m->next_ino = saved.next_ino;
			memset(out->ops, 0, sizeof out->ops);
			out->ops[i].err = rc;
			out->err = rc;
			x.wrote = false;
			break;
		}
		if (!out->err && x.wrote) m->rev = x.rev;
		out->revision = m->rev;
	}
	if (dedupe) m->origin_seq[t->origin_node] = t->origin_seq;
}

static void m_init(model_t *m)
{
	memset(m, 0, sizeof *m);
	mrec_t *root = &m->recs[0];
	root->kind = SM_KIND_DIR;
	root->mode = S_IFDIR | 0755;
	root->ino = 1;
	root->ver = 1;
	m->n = 1;
	m->next_ino = 2;
}

/* ------------------------------------------------------------------ the generator */

typedef struct gen {
	uint64_t s;
	uint64_t seq[ORIGINS];
	char paths[200][MKEY];
	int n_paths;
	const model_t *m; /* state at the start of the batch: biases keys toward existing ones */
	char keys[KEYBUF_MAX][MKEY];
	uint32_t n_keys;
	/* storage for one batch: ops point into these */
	sm_txn_t txns[TXN_MAX];
	sm_op_t ops[TXN_MAX][2][OPS_PER_TXN_MAX];
	sm_compare_t cmps[TXN_MAX][2];
	uint8_t vals[TXN_MAX][2][OPS_PER_TXN_MAX + 2][VALUE_GEN_MAX];
} gen_t;

static uint64_t rnd(gen_t *g)
{
	/* splitmix64 */
	uint64_t z = (g->s += 0x9E3779B97F4A7C15ULL);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

static uint32_t below_n(gen_t *g, uint32_t n) { return (uint32_t)(rnd(g) % n); }

static const char *const NAMES[] = {"a", "b", "b-c", "b.d", "b0"};
static const char *const ODD_KEYS[] = {"",     ".metastore", ".metastore/x", "a//b", "a/",
                                       "b/..", "./a",        "zz",           "b/zz"};

static void gen_init(gen_t *g, uint64_t seed)
{
	memset(g, 0, sizeof *g);
	g->s = seed;
	int n = 0;
	for (int i = 0; i < 5; i++) {
		snprintf(g->paths[n++], MKEY, "%s", NAMES[i]);
		for (int j = 0; j < 5; j++) {
			snprintf(g->paths[n++], MKEY, "%s/%s", NAMES[i], NAMES[j]);
			for (int k = 0; k < 5; k++)
				snprintf(g->paths[n++], MKEY, "%s/%s/%s", NAMES[i], NAMES[j], NAMES[k]);
		}
	}
	g->n_paths = n;
}

static int depth_of(const char *k)
{
	int d = k[0] != '\0';
	for (; *k; k++)
		d += *k == '/';
	return d;
}

enum { KEY_ANY, KEY_EXISTING, KEY_NEW };

static char *key_slot(gen_t *g)
{
	ck_assert_uint_lt(g->n_keys, KEYBUF_MAX);
	return g->keys[g->n_keys++];
}

/* Sometimes an odd key; for ops on existing entries often an existing key, for creating ops
 * often a new child of an existing directory (only up to depth 3, so renames do not nest
 * without bound); else any of the ~160 paths, shallow ones more often. Keys are copied: the
 * model changes while the batch runs. */
static const char *gen_key(gen_t *g, int intent)
{
	uint32_t r = below_n(g, 100);
	if (r < 3) return ODD_KEYS[below_n(g, sizeof ODD_KEYS / sizeof ODD_KEYS[0])];
	bool want = intent == KEY_ANY ? r < 40 : r < 65;
	if (want && g->m->n > 1) {
		for (int tries = 0; tries < 4; tries++) {
			const mrec_t *e =
			    &g->m->recs[intent == KEY_NEW && tries == 3 ? 0 : below_n(g, (uint32_t)g->m->n)];
			int d = depth_of(e->key);
			if (intent == KEY_NEW) {
				if (e->kind != SM_KIND_DIR || d >= 3) continue;
				bool free_name = below_n(g, 10) < 7; /* else a collision is welcome */
				char *k = key_slot(g);
				for (int n = 0; n < 5; n++) {
					const char *name = NAMES[below_n(g, 5)];
					size_t nl = strlen(name), at = e->key_len + (d ? 1 : 0);
					ck_assert_uint_lt(at + nl, MKEY);
					memcpy(k, e->key, e->key_len);
					if (d) k[e->key_len] = '/';
					memcpy(k + at, name, nl);
					k[at + nl] = '\0';
					if (!free_name || m_find(g->m, k, at + nl) < 0) break;
				}
				return k;
			}
			if (d == 0 || d > 3) continue;
			char *k = key_slot(g);
			memcpy(k, e->key, MKEY);
			return k;
		}
	}
	if (r < 75) return g->paths[below_n(g, 5) * 31]; /* depth 1 */
	return g->paths[below_n(g, (uint32_t)g->n_paths)];
}

static size_t gen_value(gen_t *g, uint8_t *buf)
{
	size_t n = below_n(g, 20) ? below_n(g, VALUE_LIMIT + 1)
	                          : VALUE_LIMIT + 1 + below_n(g, VALUE_GEN_MAX - VALUE_LIMIT);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)("xyz"[below_n(g, 3)]);
	return n;
}

static void gen_op(gen_t *g, sm_op_t *o, uint8_t *vbuf)
{
	memset(o, 0, sizeof *o);
	o->uid = below_n(g, 3);
	o->gid = below_n(g, 3);
	o->mode = below_n(g, 010000);
	o->value = vbuf;
	o->value_len = gen_value(g, vbuf);
	uint32_t r = below_n(g, 100);
	if (r < 7) {
		o->type = SM_OP_GET;
		uint32_t v = below_n(g, 3);
		if (v == 1) o->flags = SM_F_PREFIX;
		if (v == 2) {
			o->key2 = below_n(g, 4) ? gen_key(g, KEY_ANY) : "";
			o->key2_len = o->key2[0] ? strlen(o->key2) : 1; /* "\0": to the end */
		}
		o->limit = below_n(g, 4);
		if (below_n(g, 4) == 0) o->flags |= SM_F_KEYS_ONLY;
	} else if (r < 24) {
		o->type = SM_OP_PUT;
	} else if (r < 30) {
		o->type = SM_OP_DEL;
		uint32_t v = below_n(g, 8); /* prefix and range deletes take whole subtrees: rarer */
		if (v == 1) o->flags = SM_F_PREFIX;
		if (v == 2) {
			o->key2 = gen_key(g, KEY_ANY);
			o->key2_len = strlen(o->key2);
		}
	} else if (r < 42) {
		o->type = SM_OP_CREATE;
		o->flags = (below_n(g, 2) ? SM_F_EXCL : 0) | (below_n(g, 2) ? SM_F_TRUNC : 0);
	} else if (r < 50) {
		o->type = SM_OP_WRITE;
		o->flags = below_n(g, 2) ? SM_F_CREATE : 0;
	} else if (r < 57) {
		o->type = SM_OP_SETATTR;
		o->attr_mask = below_n(g, 32);
		o->size = below_n(g, VALUE_GEN_MAX + 1);
		o->mtime_ns = (int64_t)below_n(g, 1000) - 500;
	} else if (r < 63) {
		o->type = SM_OP_UNLINK;
	} else if (r < 78) {
		o->type = SM_OP_MKDIR;
	} else if (r < 84) {
		o->type = SM_OP_RMDIR;
	} else if (r < 94) {
		o->type = SM_OP_RENAME;
		o->key2 = gen_key(g, below_n(g, 3) ? KEY_NEW : KEY_EXISTING);
		o->key2_len = strlen(o->key2);
		uint32_t v = below_n(g, 30);
		o->flags = v < 4    ? SM_F_NOREPLACE
		           : v < 9  ? SM_F_EXCHANGE
		           : v == 9 ? SM_F_NOREPLACE | SM_F_EXCHANGE
		                    : 0;
	} else {
		o->type = SM_OP_SYMLINK;
		if (below_n(g, 10) == 0) o->value_len = 0;
	}
	bool creates = o->type == SM_OP_PUT || o->type == SM_OP_CREATE || o->type == SM_OP_MKDIR ||
	               o->type == SM_OP_SYMLINK || (o->type == SM_OP_WRITE && (o->flags & SM_F_CREATE));
	o->key = gen_key(g, o->type == SM_OP_GET ? KEY_ANY : creates ? KEY_NEW : KEY_EXISTING);
	o->key_len = strlen(o->key);
}

static void gen_compare(gen_t *g, sm_compare_t *c, uint8_t *vbuf, int64_t rev)
{
	memset(c, 0, sizeof *c);
	c->key = gen_key(g, KEY_EXISTING);
	c->key_len = strlen(c->key);
	c->target = (sm_cmp_target_t)(1 + below_n(g, 4));
	c->op = (sm_cmp_op_t)(1 + below_n(g, 4));
	if (c->target == SM_CMP_VALUE) {
		c->value = vbuf;
		c->value_len = gen_value(g, vbuf);
	} else if (c->target == SM_CMP_VERSION) {
		c->number = below_n(g, 4);
	} else {
		c->number = rev - below_n(g, 20);
	}
}

/* Fill g->txns with one batch; returns its txn count and adds its op count to *ops. */
static uint32_t gen_batch(gen_t *g, const model_t *m, int64_t *time_ns, uint64_t *ops)
{
	int64_t rev = m->rev;
	g->m = m;
	g->n_keys = 0;
	uint32_t nt = 1 + below_n(g, TXN_MAX);
	for (uint32_t t = 0; t < nt; t++) {
		sm_txn_t *x = &g->txns[t];
		memset(x, 0, sizeof *x);
		x->time_ns = ++*time_ns;
		uint32_t r = below_n(g, 8); /* 1 op half the time: a multi-op txn fails more often */
		x->n_success = r < 4 ? 1 : r < 6 ? 2 : r < 7 ? 3 : OPS_PER_TXN_MAX;
		x->n_failure = below_n(g, 3);
		x->n_compare = below_n(g, 3);
		for (uint32_t i = 0; i < x->n_success; i++)
			gen_op(g, &g->ops[t][0][i], g->vals[t][0][i]);
		for (uint32_t i = 0; i < x->n_failure; i++)
			gen_op(g, &g->ops[t][1][i], g->vals[t][1][i]);
		for (uint32_t i = 0; i < x->n_compare; i++)
			gen_compare(g, &g->cmps[t][i], g->vals[t][i][OPS_PER_TXN_MAX], rev);
		x->success = g->ops[t][0];
		x->failure = g->ops[t][1];
		x->compares = g->cmps[t];
		uint32_t origin = below_n(g, ORIGINS);
		if (origin) {
			x->origin_node = origin;
			uint32_t v = below_n(g, 10);
			x->origin_seq = v == 0                         ? g->seq[origin]
			                : v == 1 && g->seq[origin] > 2 ? g->seq[origin] - 2
			                                               : ++g->seq[origin];
		}
		*ops += x->n_success + x->n_failure;
	}
	return nt;
}

/* ------------------------------------------------------------------ comparing */

typedef struct walk {
	char keys[MREC_MAX][MKEY];
	size_t n;
	char dirs[MREC_MAX][MKEY];
	size_t n_dirs;
	const char *cur;
} walk_t;

static int walk_cb(void *ctx, const char *name, size_t name_len, const sm_record_t *rec)
{
	walk_t *w = ctx;
	ck_assert_uint_lt(w->n, MREC_MAX);
	int len = w->cur[0] ? snprintf(w->keys[w->n], MKEY, "%s/%.*s", w->cur, (int)name_len, name)
	                    : snprintf(w->keys[w->n], MKEY, "%.*s", (int)name_len, name);
	ck_assert_int_lt(len, (int)MKEY);
	if (rec->kind == SM_KIND_DIR) memcpy(w->dirs[w->n_dirs++], w->keys[w->n], MKEY);
	w->n++;
	return 0;
}

static int cmp_str(const void *a, const void *b) { return kcmp(a, strlen(a), b, strlen(b)); }

static void assert_rec_eq(const sm_record_t *r, const mrec_t *m, const char *what, uint64_t seed)
{
	ck_assert_msg((int)r->kind == m->kind && r->mode == m->mode && r->uid == m->uid && r->gid == m->gid,
	              "seed %" PRIu64 ": %s '%s': kind/mode/uid/gid %d/%o/%u/%u, model %d/%o/%u/%u", seed,
	              what, m->key, r->kind, r->mode, r->uid, r->gid, m->kind, m->mode, m->uid, m->gid);
	ck_assert_msg(r->ino == m->ino, "seed %" PRIu64 ": %s '%s': ino %" PRIu64 ", model %" PRIu64, seed,
	              what, m->key, r->ino, m->ino);
	ck_assert_msg(r->version == m->ver && r->create_revision == m->crev && r->mod_revision == m->mrev,
	              "seed %" PRIu64 ": %s '%s': ver/crev/mrev %" PRId64 "/%" PRId64 "/%" PRId64
	              ", model %" PRId64 "/%" PRId64 "/%" PRId64,
	              seed, what, m->key, r->version, r->create_revision, r->mod_revision, m->ver, m->crev,
	              m->mrev);
	ck_assert_msg(r->mtime_ns == m->mtime && r->ctime_ns == m->ctime,
	              "seed %" PRIu64 ": %s '%s': mtime/ctime %" PRId64 "/%" PRId64 ", model %" PRId64
	              "/%" PRId64,
	              seed, what, m->key, r->mtime_ns, r->ctime_ns, m->mtime, m->ctime);
	ck_assert_msg(r->size == m->vlen && r->value_len == m->vlen &&
	                  (m->vlen == 0 || memcmp(r->value, m->val, m->vlen) == 0),
	              "seed %" PRIu64 ": %s '%s': value differs (len %zu, model %zu)", seed, what, m->key,
	              r->value_len, m->vlen);
}

/* The whole state, read back through sm_list (breadth first) and sm_get. */
static void assert_state_eq(sm_t *sm, model_t *m, uint64_t seed)
{
	static walk_t w;
	memset(&w, 0, sizeof w);
	w.keys[w.n++][0] = '\0'; /* the root */
	w.dirs[w.n_dirs++][0] = '\0';
	for (size_t d = 0; d < w.n_dirs; d++) {
		w.cur = w.dirs[d];
		ck_assert_int_eq(sm_list(sm, w.cur, strlen(w.cur), NULL, 0, walk_cb, &w), 0);
	}
	qsort(w.keys, w.n, MKEY, cmp_str);
	if (getenv("SM_MODEL_DUMP")) {
		for (size_t i = 0; i < w.n || i < m->n; i++)
			fprintf(stderr, "%3zu sm '%s'  model '%s'\n", i, i < w.n ? w.keys[i] : "-",
			        i < m->n ? m->recs[i].key : "-");
	}
	ck_assert_msg(w.n == m->n, "seed %" PRIu64 ": %zu keys listed, model has %zu", seed, w.n, m->n);
	ck_assert_uint_eq(sm_key_count(sm), m->n);
	ck_assert_int_eq(sm_revision(sm), m->rev);
	for (size_t i = 0; i < m->n; i++) {
		ck_assert_msg(strcmp(w.keys[i], m->recs[i].key) == 0,
		              "seed %" PRIu64 ": key %zu is '%s', model '%s'", seed, i, w.keys[i],
		              m->recs[i].key);
		sm_record_t r;
		ck_assert_int_eq(sm_get(sm, m->recs[i].key, m->recs[i].key_len, &r), 0);
		assert_rec_eq(&r, &m->recs[i], "state", seed);
	}
}

static void assert_results_eq(const sm_apply_result_t *res, const mtxres_t *mr, uint32_t nt, uint64_t seed,
                              uint64_t batch)
{
	for (uint32_t t = 0; t < nt; t++) {
		const sm_txn_result_t *r = &res->txns[t];
		const mtxres_t *m = &mr[t];
		ck_assert_msg(r->err == m->err && r->succeeded == m->succeeded &&
		                  r->duplicate == m->duplicate && r->revision == m->revision &&
		                  r->n_ops == m->n_ops,
		              "seed %" PRIu64 " batch %" PRIu64 " txn %u: err %d succ %d dup %d rev %" PRId64
		              " n_ops %zu; model err %d succ %d dup %d rev %" PRId64 " n_ops %u",
		              seed, batch, t, r->err, r->succeeded, r->duplicate, r->revision, r->n_ops,
		              m->err, m->succeeded, m->duplicate, m->revision, m->n_ops);
		for (uint32_t i = 0; i < m->n_ops; i++) {
			const sm_op_result_t *o = &r->ops[i];
			const mres_t *mo = &m->ops[i];
			ck_assert_msg(
			    o->err == mo->err && o->deleted == mo->deleted && o->n_kvs == mo->n_kvs &&
			        o->more == mo->more && o->has_rec == mo->has_rec,
			    "seed %" PRIu64 " batch %" PRIu64 " txn %u op %u: err %d del %" PRIu64
			    " kvs %zu more %d rec %d; model err %d del %" PRIu64 " kvs %zu more %d rec %d",
			    seed, batch, t, i, o->err, o->deleted, o->n_kvs, o->more, o->has_rec, mo->err,
			    mo->deleted, mo->n_kvs, mo->more, mo->has_rec);
			uint64_t h = 0;
			for (size_t k = 0; k < o->n_kvs; k++)
				h = kv_hash_add(h, o->kvs[k].key, o->kvs[k].key_len);
			ck_assert_msg(h == mo->kv_hash,
			              "seed %" PRIu64 " batch %" PRIu64 " txn %u op %u: GET keys differ",
			              seed, batch, t, i);
			if (mo->has_rec) assert_rec_eq(&o->rec, &mo->rec, "op result", seed);
		}
	}
	/* events come in txn order, belong to txns that succeeded, and carry their revision */
	for (size_t e = 0; e < res->n_events; e++) {
		const sm_event_t *ev = &res->events[e];
		ck_assert_uint_lt(ev->txn_index, nt);
		ck_assert(e == 0 || ev->txn_index >= res->events[e - 1].txn_index);
		const mtxres_t *m = &mr[ev->txn_index];
		ck_assert(!m->err && !m->duplicate);
		ck_assert_int_eq(ev->revision, m->revision);
	}
}

/* ------------------------------------------------------------------ the test */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

START_TEST(test_model)
{
	const char *kind = getenv("SM_TEST_KIND");
	uint64_t seed = strtoull(getenv("SM_TEST_SEED"), NULL, 0);
	char root[PATH_BYTES] = "", dir[PATH_BYTES + 16];
	engine_options_t eo = {.kind = kind, .sync_writes = false};
	if (strcmp(kind, "rocksdb") == 0) {
		snprintf(root, sizeof root, "/tmp/ms-sm-model-XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(root));
		snprintf(dir, sizeof dir, "%s/data", root);
		eo.dir = dir;
	}
	engine_t *e;
	char err[256] = "";
	ck_assert_msg(engine_open(&eo, &e, err, sizeof err) == 0, "engine_open: %s", err);
	sm_t *sm;
	sm_options_t so = {.value_bytes_max = VALUE_LIMIT};
	ck_assert_int_eq(sm_open(e, &so, &sm), 0);

	static model_t model;
	static gen_t gen;
	static mtxres_t mres[TXN_MAX];
	mstats_t stats = {0};
	m_init(&model);
	gen_init(&gen, seed);
	uint64_t ops = 0, batch = 0, index = 0, txns = 0, failed = 0, dups = 0, keys_sum = 0;
	int64_t time_ns = 0;
	sm_apply_result_t res;
	while (stats.total < OPS_MIN) {
		uint32_t nt = gen_batch(&gen, &model, &time_ns, &ops);
		for (uint32_t t = 0; t < nt; t++) {
			m_txn(&model, &gen.txns[t], &mres[t], &stats);
			failed += mres[t].err != 0;
			dups += mres[t].duplicate;
		}
		sm_batch_t b = {.n_txn = nt, .txns = gen.txns};
		ck_assert_int_eq(sm_apply(sm, &b, ++index, &res), 0);
		assert_results_eq(&res, mres, nt, seed, batch);
		sm_apply_result_free(&res);
		txns += nt;
		keys_sum += model.n;
		if (++batch % CHECK_EVERY_BATCHES == 0) assert_state_eq(sm, &model, seed);
	}
	assert_state_eq(sm, &model, seed);
	fprintf(stderr,
	        "sm_model %s: seed %" PRIu64 ": %" PRIu64 " ops run (%" PRIu64 " generated) in %" PRIu64
	        " txns, %" PRIu64 " batches; %" PRIu64 " failed txns, %" PRIu64
	        " duplicates; revision %" PRId64 ", %zu keys (%" PRIu64 " on average)\n",
	        kind, seed, stats.total, ops, txns, batch, failed, dups, model.rev, model.n,
	        keys_sum / batch);
	static const char *const names[] = {"",        "get",    "put",   "del",   "create", "write",
	                                    "setattr", "unlink", "mkdir", "rmdir", "rename", "symlink"};
	for (int i = SM_OP_GET; i <= SM_OP_SYMLINK; i++) {
		fprintf(stderr, "  %-8s %6" PRIu64 " run, %6" PRIu64 " failed:", names[i], stats.runs[i],
		        stats.fails[i]);
		for (int e = 1; e < 64; e++)
			if (stats.errnos[i][e])
				fprintf(stderr, " %s %" PRIu64, strerrorname_np(e), stats.errnos[i][e]);
		fprintf(stderr, "\n");
	}
	if (getenv("SM_MODEL_DUMP"))
		for (size_t i = 0; i < model.n; i++)
			fprintf(stderr, "  %d %s\n", model.recs[i].kind, model.recs[i].key);
	/* the run must have exercised the interesting paths */
	ck_assert_uint_gt(failed, txns / 20);
	ck_assert_uint_gt(dups, 0);
	ck_assert_int_gt(model.rev, 1000);
	sm_close(sm);
	engine_close(e);
	if (root[0]) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "memory";
	if (strcmp(kind, "memory") != 0 && strcmp(kind, "rocksdb") != 0) {
		fprintf(stderr, "usage: %s memory|rocksdb   (SEED=n replays a run)\n", argv[0]);
		return 2;
	}
	const char *s = getenv("SEED");
	uint64_t seed = s ? strtoull(s, NULL, 0) : ((uint64_t)time(NULL) << 20) ^ (uint64_t)getpid();
	fprintf(stderr, "sm_model %s: seed %" PRIu64 " (SEED=%" PRIu64 " replays)\n", kind, seed, seed);
	char buf[32];
	snprintf(buf, sizeof buf, "%" PRIu64, seed);
	setenv("SM_TEST_SEED", buf, 1);
	setenv("SM_TEST_KIND", kind, 1);
	Suite *suite = suite_create("sm_model");
	TCase *tc = tcase_create("model");
	tcase_set_timeout(tc, 280);
	tcase_add_test(tc, test_model);
	suite_add_tcase(suite, tc);
	SRunner *sr = srunner_create(suite);
	srunner_run_all(sr, CK_NORMAL);
	int nfailed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return nfailed ? 1 : 0;
}
