/* sm_test.c - unit tests of the replicated state machine (engine/sm.c, engine/record.c).
 *
 * Every op and every errno it can return, the etcd compare matrix, revisions and versions,
 * rename of whole subtrees, listings that skip grandchildren, at-most-once dedupe, the change
 * events, snapshots, and determinism across backends (the same batches give byte-identical
 * engines on memory and rocksdb). The suite runs against the backend named by argv[1]
 * ("memory" or "rocksdb"; rocksdb works in a fresh mkdtemp() dir per test); meson registers it
 * once per backend. The backend name travels to the forked tests in the SM_TEST_KIND env var.
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
#include <unistd.h>

#define PATH_BYTES 512
#define T0_NS 1000000000LL
#define UID 1000u
#define GID 100u

/* ------------------------------------------------------------------ fixture */

typedef struct fx {
	char root[PATH_BYTES]; /* rocksdb: mkdtemp dir, removed at the end */
	const char *kind;
	engine_t *e;
	sm_t *sm;
	uint64_t index;        /* last Raft index applied */
	int64_t time_ns;       /* time of the last txn */
	sm_apply_result_t res; /* result of the last apply */
} fx_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static const char *test_kind(void)
{
	const char *k = getenv("SM_TEST_KIND");
	return k ? k : "memory";
}

static engine_t *engine_new(const char *kind, char *root)
{
	char dir[PATH_BYTES + 16];
	engine_options_t o = {.kind = kind};
	if (strcmp(kind, "rocksdb") == 0) {
		snprintf(root, PATH_BYTES, "/tmp/ms-sm-test-XXXXXX");
		ck_assert_ptr_nonnull(mkdtemp(root));
		snprintf(dir, sizeof dir, "%s/data", root);
		o.dir = dir;
	} else {
		root[0] = '\0';
	}
	engine_t *e = NULL;
	char err[256] = "";
	int rc = engine_open(&o, &e, err, sizeof err);
	ck_assert_msg(rc == 0, "engine_open(%s): %d %s", kind, rc, err);
	return e;
}

static void engine_done(engine_t *e, const char *root)
{
	engine_close(e);
	if (root[0]) nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void fx_open_kind(fx_t *f, const char *kind)
{
	memset(f, 0, sizeof *f);
	f->kind = kind;
	f->e = engine_new(kind, f->root);
	ck_assert_int_eq(sm_open(f->e, NULL, &f->sm), 0);
	f->time_ns = T0_NS;
}

static void fx_open(fx_t *f) { fx_open_kind(f, test_kind()); }

static void fx_close(fx_t *f)
{
	sm_apply_result_free(&f->res);
	sm_close(f->sm);
	engine_done(f->e, f->root);
}

static const sm_apply_result_t *fx_batch(fx_t *f, const sm_txn_t *txns, uint32_t n)
{
	sm_apply_result_free(&f->res);
	sm_batch_t b = {.n_txn = n, .txns = txns};
	int rc = sm_apply(f->sm, &b, ++f->index, &f->res);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(f->res.n_txn, n);
	ck_assert_uint_eq(sm_applied_index(f->sm), f->index);
	return &f->res;
}

static const sm_txn_result_t *fx_txn(fx_t *f, const sm_compare_t *cmps, uint32_t nc, const sm_op_t *succ,
                                     uint32_t ns, const sm_op_t *fail, uint32_t nf)
{
	f->time_ns += 1000;
	sm_txn_t t = {.time_ns = f->time_ns,
	              .n_compare = nc,
	              .compares = cmps,
	              .n_success = ns,
	              .success = succ,
	              .n_failure = nf,
	              .failure = fail};
	return &fx_batch(f, &t, 1)->txns[0];
}

static const sm_txn_result_t *fx_ops(fx_t *f, const sm_op_t *ops, uint32_t n)
{
	return fx_txn(f, NULL, 0, ops, n, NULL, 0);
}

/* The op fails with err and changes nothing: no revision, no key, no event. */
#define FAIL_OP(f, op, err) fail_op_at(f, op, err, __LINE__)
static void fail_op_at(fx_t *f, sm_op_t op, int err, int line)
{
	int64_t rev = sm_revision(f->sm);
	uint64_t keys = sm_key_count(f->sm);
	const sm_txn_result_t *r = fx_ops(f, &op, 1);
	ck_assert_msg(r->err == err, "line %d: err %d, want %d", line, r->err, err);
	ck_assert_msg(r->ops[0].err == err, "line %d: op err %d", line, r->ops[0].err);
	ck_assert_msg(r->revision == rev && sm_revision(f->sm) == rev, "line %d: revision moved", line);
	ck_assert_msg(sm_key_count(f->sm) == keys, "line %d: key count changed", line);
	ck_assert_msg(f->res.n_events == 0, "line %d: events from a failed txn", line);
}

#define OK_OP(f, op) ok_op_at(f, op, __LINE__)
static const sm_txn_result_t *ok_op_at(fx_t *f, sm_op_t op, int line)
{
	const sm_txn_result_t *r = fx_ops(f, &op, 1);
	ck_assert_msg(r->err == 0, "line %d: err %d", line, r->err);
	return r;
}

static sm_record_t get_ok(fx_t *f, const char *k)
{
	sm_record_t r;
	int rc = sm_get(f->sm, k, strlen(k), &r);
	ck_assert_msg(rc == 0, "sm_get(%s) = %d", k, rc);
	return r;
}

static bool exists(fx_t *f, const char *k)
{
	sm_record_t r;
	int rc = sm_get(f->sm, k, strlen(k), &r);
	ck_assert(rc == 0 || rc == -ENOENT);
	return rc == 0;
}

static bool value_is(const sm_record_t *r, const char *v)
{
	size_t n = strlen(v);
	return r->value_len == n && r->size == n && (n == 0 || memcmp(r->value, v, n) == 0);
}

/* ------------------------------------------------------------------ op builders */

static sm_op_t o_key(sm_op_type_t type, const char *k)
{
	return (sm_op_t){.type = type, .key = k, .key_len = strlen(k), .uid = UID, .gid = GID};
}

static sm_op_t o_put(const char *k, const char *v)
{
	sm_op_t o = o_key(SM_OP_PUT, k);
	o.value = (const uint8_t *)v;
	o.value_len = strlen(v);
	return o;
}

static sm_op_t o_mkdir(const char *k)
{
	sm_op_t o = o_key(SM_OP_MKDIR, k);
	o.mode = 0750;
	return o;
}

static sm_op_t o_create(const char *k, uint32_t flags, const char *v)
{
	sm_op_t o = o_put(k, v);
	o.type = SM_OP_CREATE;
	o.flags = flags;
	o.mode = 0640;
	return o;
}

static sm_op_t o_write(const char *k, uint32_t flags, const char *v)
{
	sm_op_t o = o_create(k, flags, v);
	o.type = SM_OP_WRITE;
	return o;
}

static sm_op_t o_symlink(const char *k, const char *target)
{
	sm_op_t o = o_put(k, target);
	o.type = SM_OP_SYMLINK;
	return o;
}

static sm_op_t o_rename(const char *a, const char *b, uint32_t flags)
{
	sm_op_t o = o_key(SM_OP_RENAME, a);
	o.key2 = b;
	o.key2_len = strlen(b);
	o.flags = flags;
	return o;
}

static sm_op_t o_range(sm_op_type_t type, const char *k, const char *end, uint32_t flags)
{
	sm_op_t o = o_key(type, k);
	o.flags = flags;
	if (end) {
		o.key2 = end;
		o.key2_len = strlen(end);
	}
	return o;
}

/* ------------------------------------------------------------------ record.c */

START_TEST(test_record_codec)
{
	uint8_t buf[256];
	sm_record_t r = {.kind = SM_KIND_FILE,
	                 .mode = S_IFREG | 0644,
	                 .uid = 7,
	                 .gid = 8,
	                 .ino = 42,
	                 .size = 5,
	                 .mtime_ns = -3,
	                 .ctime_ns = 1234567890123LL,
	                 .create_revision = 3,
	                 .mod_revision = 9,
	                 .version = 4,
	                 .value = (const uint8_t *)"hello",
	                 .value_len = 5};
	size_t need = sm_record_encode(&r, NULL, 0);
	ck_assert_uint_eq(need, 76 + 5);
	memset(buf, 0xAA, sizeof buf);
	ck_assert_uint_eq(sm_record_encode(&r, buf, need - 1), need); /* too small: nothing written */
	ck_assert_uint_eq(buf[0], 0xAA);
	ck_assert_uint_eq(sm_record_encode(&r, buf, sizeof buf), need);
	ck_assert_uint_eq(buf[0], 1);   /* format version */
	ck_assert_uint_eq(buf[16], 42); /* ino, little-endian */
	sm_record_t d;
	ck_assert_int_eq(sm_record_decode(buf, need, &d), 0);
	ck_assert_int_eq(d.kind, r.kind);
	ck_assert_uint_eq(d.mode, r.mode);
	ck_assert_uint_eq(d.uid, 7);
	ck_assert_uint_eq(d.gid, 8);
	ck_assert_uint_eq(d.ino, 42);
	ck_assert_int_eq(d.mtime_ns, -3);
	ck_assert_int_eq(d.ctime_ns, 1234567890123LL);
	ck_assert_int_eq(d.create_revision, 3);
	ck_assert_int_eq(d.mod_revision, 9);
	ck_assert_int_eq(d.version, 4);
	ck_assert(value_is(&d, "hello"));
	ck_assert_ptr_eq(d.value, buf + 76);

	/* garbage of every kind is -EINVAL */
	uint8_t bad[256];
	ck_assert_int_eq(sm_record_decode(buf, 75, &d), -EINVAL);       /* short header */
	ck_assert_int_eq(sm_record_decode(buf, need - 1, &d), -EINVAL); /* short value */
	ck_assert_int_eq(sm_record_decode(buf, need + 1, &d), -EINVAL); /* trailing byte */
	ck_assert_int_eq(sm_record_decode(NULL, 0, &d), -EINVAL);
	struct {
		size_t off;
		uint8_t byte;
	} flips[] = {
	    {0, 2},           /* format version */
	    {1, 0},           /* kind 0 */
	    {1, 4},           /* kind 4 */
	    {1, SM_KIND_DIR}, /* kind disagrees with S_IFMT */
	    {2, 1},           /* reserved */
	    {5, 0x10},        /* mode bits outside S_IFMT|07777 */
	    {16, 0},          /* ino 0 */
	    {24, 6},          /* size != value_len */
	    {48, 10},         /* create_revision > mod_revision */
	    {55, 0x80},       /* create_revision < 0 */
	    {64, 0},          /* version 0 */
	    {72, 4},          /* value_len disagrees with the length */
	};
	for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
		memcpy(bad, buf, need);
		bad[flips[i].off] = flips[i].byte;
		ck_assert_msg(sm_record_decode(bad, need, &d) == -EINVAL, "flip %zu decoded", i);
	}
	/* a directory carries no value */
	sm_record_t dir = {.kind = SM_KIND_DIR, .mode = S_IFDIR | 0755, .ino = 1, .version = 1};
	need = sm_record_encode(&dir, buf, sizeof buf);
	ck_assert_uint_eq(need, 76);
	ck_assert_int_eq(sm_record_decode(buf, need, &d), 0);
	ck_assert_ptr_null(d.value);
	dir.value = (const uint8_t *)"x";
	dir.value_len = 1;
	need = sm_record_encode(&dir, buf, sizeof buf);
	ck_assert_int_eq(sm_record_decode(buf, need, &d), -EINVAL);
	/* symlink round trip */
	sm_record_t l = {.kind = SM_KIND_SYMLINK,
	                 .mode = S_IFLNK | 0777,
	                 .ino = 5,
	                 .size = 3,
	                 .version = 1,
	                 .value = (const uint8_t *)"a/b",
	                 .value_len = 3};
	need = sm_record_encode(&l, buf, sizeof buf);
	ck_assert_int_eq(sm_record_decode(buf, need, &d), 0);
	ck_assert_int_eq(d.kind, SM_KIND_SYMLINK);
}
END_TEST

START_TEST(test_key_check)
{
	char long_name[300], long_key[SM_KEY_BYTES_MAX + 2];
	memset(long_name, 'n', sizeof long_name);
	ck_assert_int_eq(sm_key_check("", 0), 0);
	ck_assert_int_eq(sm_key_check(NULL, 0), 0);
	ck_assert_int_eq(sm_key_check("a", 1), 0);
	ck_assert_int_eq(sm_key_check("a/b/c", 5), 0);
	ck_assert_int_eq(sm_key_check("...", 3), 0);
	ck_assert_int_eq(sm_key_check(".a/..b", 6), 0);
	ck_assert_int_eq(sm_key_check("/a", 2), -EINVAL);
	ck_assert_int_eq(sm_key_check("a/", 2), -EINVAL);
	ck_assert_int_eq(sm_key_check("a//b", 4), -EINVAL);
	ck_assert_int_eq(sm_key_check("/", 1), -EINVAL);
	ck_assert_int_eq(sm_key_check(".", 1), -EINVAL);
	ck_assert_int_eq(sm_key_check("a/./b", 5), -EINVAL);
	ck_assert_int_eq(sm_key_check("a/..", 4), -EINVAL);
	ck_assert_int_eq(sm_key_check("a\0b", 3), -EINVAL);
	ck_assert_int_eq(sm_key_check(long_name, 255), 0);
	ck_assert_int_eq(sm_key_check(long_name, 256), -ENAMETOOLONG);
	/* a 4096-byte key of 255-byte components is fine; one byte more is too long */
	for (size_t i = 0; i < sizeof long_key; i++)
		long_key[i] = (i % 200 == 199) ? '/' : 'k';
	ck_assert_int_eq(sm_key_check(long_key, SM_KEY_BYTES_MAX), 0);
	ck_assert_int_eq(sm_key_check(long_key, SM_KEY_BYTES_MAX + 1), -ENAMETOOLONG);
}
END_TEST

/* ------------------------------------------------------------------ open */

START_TEST(test_open_root)
{
	fx_t f;
	fx_open(&f);
	ck_assert_int_eq(sm_revision(f.sm), 0);
	ck_assert_uint_eq(sm_key_count(f.sm), 1);
	ck_assert_uint_eq(sm_applied_index(f.sm), 0);
	ck_assert_uint_gt(sm_data_bytes(f.sm), 0);
	sm_record_t r = get_ok(&f, "");
	ck_assert_int_eq(r.kind, SM_KIND_DIR);
	ck_assert_uint_eq(r.mode, S_IFDIR | 0755);
	ck_assert_uint_eq(r.ino, SM_ROOT_INO);
	ck_assert_int_eq(r.mtime_ns, 0);
	ck_assert_int_eq(r.ctime_ns, 0);
	ck_assert_int_eq(r.create_revision, 0);
	ck_assert_int_eq(r.mod_revision, 0);
	ck_assert_int_eq(r.version, 1);
	ck_assert_uint_eq(r.uid, 0);
	/* the first inode handed out is 2 */
	OK_OP(&f, o_put("a", "1"));
	ck_assert_uint_eq(get_ok(&f, "a").ino, 2);
	/* a second sm on the same engine sees the same state */
	sm_t *sm2;
	ck_assert_int_eq(sm_open(f.e, NULL, &sm2), 0);
	ck_assert_int_eq(sm_revision(sm2), 1);
	ck_assert_uint_eq(sm_key_count(sm2), 2);
	sm_close(sm2);
	/* a value limit the engine cannot hold */
	sm_options_t big = {.value_bytes_max = ENGINE_VALUE_BYTES_MAX};
	ck_assert_int_eq(sm_open(f.e, &big, &sm2), -EINVAL);
	fx_close(&f);

	/* an engine with foreign content is not a state machine */
	char root[PATH_BYTES];
	engine_t *e = engine_new(test_kind(), root);
	ck_assert_int_eq(engine_put(e, "zzz", 3, "v", 1), 0);
	ck_assert_int_eq(sm_open(e, NULL, &sm2), -EINVAL);
	engine_done(e, root);
}
END_TEST

START_TEST(test_root_deterministic)
{
	/* two fresh engines hold the same bytes */
	fx_t a, b;
	fx_open_kind(&a, "memory");
	fx_open_kind(&b, test_kind());
	engine_iter_t *ia = engine_iter_new(a.e), *ib = engine_iter_new(b.e);
	engine_iter_seek_first(ia);
	engine_iter_seek_first(ib);
	size_t n = 0;
	for (; engine_iter_valid(ia); engine_iter_next(ia), engine_iter_next(ib), n++) {
		ck_assert(engine_iter_valid(ib));
		size_t kla, klb, vla, vlb;
		const void *ka = engine_iter_key(ia, &kla), *kb = engine_iter_key(ib, &klb);
		const void *va = engine_iter_value(ia, &vla), *vb = engine_iter_value(ib, &vlb);
		ck_assert(kla == klb && memcmp(ka, kb, kla) == 0);
		ck_assert(vla == vlb && memcmp(va, vb, vla) == 0);
	}
	ck_assert(!engine_iter_valid(ib));
	ck_assert_uint_eq(n, 4); /* root, format, next_ino, revision */
	engine_iter_free(ia);
	engine_iter_free(ib);
	fx_close(&a);
	fx_close(&b);
}
END_TEST

/* ------------------------------------------------------------------ PUT, GET, DEL */

START_TEST(test_put_creates_parents)
{
	fx_t f;
	fx_open(&f);
	const sm_txn_result_t *r = OK_OP(&f, o_put("app/db/url", "pg://x"));
	ck_assert(r->succeeded);
	ck_assert_int_eq(r->revision, 1);
	ck_assert(r->ops[0].has_rec);
	ck_assert(value_is(&r->ops[0].rec, "pg://x"));
	sm_record_t app = get_ok(&f, "app"), db = get_ok(&f, "app/db"), url = get_ok(&f, "app/db/url");
	ck_assert_int_eq(app.kind, SM_KIND_DIR);
	ck_assert_uint_eq(app.mode, S_IFDIR | 0755);
	ck_assert_uint_eq(app.uid, UID);
	ck_assert_uint_eq(app.gid, GID);
	ck_assert_int_eq(db.kind, SM_KIND_DIR);
	ck_assert_int_eq(url.kind, SM_KIND_FILE);
	ck_assert_uint_eq(url.mode, S_IFREG | 0644);
	ck_assert(value_is(&url, "pg://x"));
	/* one revision for all three keys, inodes in creation order */
	ck_assert_int_eq(app.create_revision, 1);
	ck_assert_int_eq(db.create_revision, 1);
	ck_assert_int_eq(url.mod_revision, 1);
	ck_assert_uint_eq(app.ino, 2);
	ck_assert_uint_eq(db.ino, 3);
	ck_assert_uint_eq(url.ino, 4);
	ck_assert_int_eq(url.mtime_ns, f.time_ns);
	ck_assert_int_eq(url.ctime_ns, f.time_ns);
	ck_assert_int_eq(sm_revision(f.sm), 1);
	ck_assert_uint_eq(sm_key_count(f.sm), 4);
	/* CREATE events for app, app/db, app/db/url in that order */
	ck_assert_uint_eq(f.res.n_events, 3);
	const char *want[] = {"app", "app/db", "app/db/url"};
	for (int i = 0; i < 3; i++) {
		sm_event_t *e = &f.res.events[i];
		ck_assert_int_eq(e->type, SM_EV_CREATE);
		ck_assert_str_eq(e->key, want[i]);
		ck_assert(e->has_new && !e->has_old && !e->has_replaced);
		ck_assert_int_eq(e->revision, 1);
		ck_assert_uint_eq(e->txn_index, 0);
	}
	ck_assert(value_is(&f.res.events[2].new_rec, "pg://x"));
	/* the root got its mtime, not a new version */
	sm_record_t root = get_ok(&f, "");
	ck_assert_int_eq(root.mtime_ns, f.time_ns);
	ck_assert_int_eq(root.ctime_ns, f.time_ns);
	ck_assert_int_eq(root.version, 1);
	ck_assert_int_eq(root.mod_revision, 0);

	/* overwrite: version +1, mod_revision moves, ino and create_revision stay, MODIFY event */
	r = OK_OP(&f, o_put("app/db/url", "pg://y"));
	url = get_ok(&f, "app/db/url");
	ck_assert(value_is(&url, "pg://y"));
	ck_assert_int_eq(url.version, 2);
	ck_assert_int_eq(url.create_revision, 1);
	ck_assert_int_eq(url.mod_revision, 2);
	ck_assert_uint_eq(url.ino, 4);
	ck_assert_uint_eq(f.res.n_events, 1);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_MODIFY);
	ck_assert(f.res.events[0].has_old && f.res.events[0].has_new);
	ck_assert(value_is(&f.res.events[0].old_rec, "pg://x"));
	ck_assert(value_is(&f.res.events[0].new_rec, "pg://y"));
	/* the parent's mtime did not move: no entry was added */
	ck_assert_int_eq(get_ok(&f, "app/db").mtime_ns, db.mtime_ns);
	fx_close(&f);
}
END_TEST

START_TEST(test_put_errors)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("f", "x"));
	OK_OP(&f, o_mkdir("d"));
	FAIL_OP(&f, o_put("d", "x"), -EISDIR);
	FAIL_OP(&f, o_put("", "x"), -EISDIR);
	FAIL_OP(&f, o_put("f/x", "x"), -ENOTDIR);
	FAIL_OP(&f, o_put("f/x/y", "x"), -ENOTDIR);
	FAIL_OP(&f, o_put(".metastore", "x"), -EPERM);
	FAIL_OP(&f, o_put(".metastore/status", "x"), -EPERM);
	FAIL_OP(&f, o_put("a//b", "x"), -EINVAL);
	FAIL_OP(&f, o_put("a/../b", "x"), -EINVAL);
	char name[300];
	memset(name, 'n', sizeof name - 1);
	name[sizeof name - 1] = '\0';
	FAIL_OP(&f, o_put(name, "x"), -ENAMETOOLONG);
	/* ".metastore" below the root is an ordinary name */
	OK_OP(&f, o_put("d/.metastore", "x"));
	fx_close(&f);

	/* value limit */
	memset(&f, 0, sizeof f);
	f.kind = test_kind();
	f.e = engine_new(f.kind, f.root);
	sm_options_t o = {.value_bytes_max = 4};
	ck_assert_int_eq(sm_open(f.e, &o, &f.sm), 0);
	OK_OP(&f, o_put("k", "1234"));
	FAIL_OP(&f, o_put("k", "12345"), -EFBIG);
	FAIL_OP(&f, o_put("new/k", "12345"), -EFBIG);
	ck_assert(!exists(&f, "new"));
	FAIL_OP(&f, o_create("c", 0, "12345"), -EFBIG);
	FAIL_OP(&f, o_write("k", 0, "12345"), -EFBIG);
	FAIL_OP(&f, o_write("w", SM_F_CREATE, "12345"), -EFBIG);
	sm_op_t t = o_key(SM_OP_SETATTR, "k");
	t.attr_mask = SM_ATTR_SIZE;
	t.size = 5;
	FAIL_OP(&f, t, -EFBIG);
	t.size = 4;
	OK_OP(&f, t);
	fx_close(&f);
}
END_TEST

START_TEST(test_value_limit_default)
{
	fx_t f;
	fx_open(&f);
	size_t max = SM_VALUE_BYTES_MAX_DEFAULT;
	uint8_t *big = malloc(max + 1);
	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i <= max; i++)
		big[i] = (uint8_t)(i * 7);
	sm_op_t p = o_put("big", "");
	p.value = big;
	p.value_len = max + 1;
	FAIL_OP(&f, p, -EFBIG);
	p.value_len = max;
	OK_OP(&f, p);
	sm_record_t r = get_ok(&f, "big");
	ck_assert_uint_eq(r.size, max);
	ck_assert(memcmp(r.value, big, max) == 0);
	/* truncate to 1 byte, then zero-extend back to the limit; one more byte is too big */
	sm_op_t t = o_key(SM_OP_SETATTR, "big");
	t.attr_mask = SM_ATTR_SIZE;
	t.size = 1;
	OK_OP(&f, t);
	t.size = max + 1;
	FAIL_OP(&f, t, -EFBIG);
	t.size = max;
	OK_OP(&f, t);
	r = get_ok(&f, "big");
	ck_assert_uint_eq(r.value_len, max);
	ck_assert_uint_eq(r.value[0], big[0]);
	for (size_t i = 1; i < max; i += 4093)
		ck_assert_uint_eq(r.value[i], 0);
	ck_assert_uint_eq(r.value[max - 1], 0);
	free(big);
	fx_close(&f);
}
END_TEST

START_TEST(test_get)
{
	fx_t f;
	fx_open(&f);
	sm_op_t puts[] = {o_put("a/x", "1"), o_put("a/y", "22"), o_put("ab", "3"), o_put("b", "4")};
	fx_ops(&f, puts, 4);
	/* single key */
	const sm_txn_result_t *r = OK_OP(&f, o_key(SM_OP_GET, "a/y"));
	ck_assert_uint_eq(r->n_ops, 1);
	ck_assert_uint_eq(r->ops[0].n_kvs, 1);
	ck_assert_str_eq(r->ops[0].kvs[0].key, "a/y");
	ck_assert(value_is(&r->ops[0].kvs[0].rec, "22"));
	ck_assert_int_eq(r->revision, 1); /* reads do not move the revision */
	ck_assert_uint_eq(f.res.n_events, 0);
	/* missing key: no kvs, no error */
	r = OK_OP(&f, o_key(SM_OP_GET, "zz"));
	ck_assert_uint_eq(r->ops[0].n_kvs, 0);
	FAIL_OP(&f, o_key(SM_OP_GET, "a/"), -EINVAL);
	/* prefix "a": a, a/x, a/y, ab in key order */
	r = OK_OP(&f, o_range(SM_OP_GET, "a", NULL, SM_F_PREFIX));
	const char *want[] = {"a", "a/x", "a/y", "ab"};
	ck_assert_uint_eq(r->ops[0].n_kvs, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_str_eq(r->ops[0].kvs[i].key, want[i]);
	ck_assert(!r->ops[0].more);
	/* prefix "a/" (a byte prefix, not a path) */
	r = OK_OP(&f, o_range(SM_OP_GET, "a/", NULL, SM_F_PREFIX));
	ck_assert_uint_eq(r->ops[0].n_kvs, 2);
	/* limit */
	sm_op_t g = o_range(SM_OP_GET, "a", NULL, SM_F_PREFIX);
	g.limit = 2;
	r = OK_OP(&f, g);
	ck_assert_uint_eq(r->ops[0].n_kvs, 2);
	ck_assert(r->ops[0].more);
	ck_assert_str_eq(r->ops[0].kvs[1].key, "a/x");
	g.limit = 4;
	r = OK_OP(&f, g);
	ck_assert(!r->ops[0].more);
	/* prefix "" is everything, the root included */
	r = OK_OP(&f, o_range(SM_OP_GET, "", NULL, SM_F_PREFIX));
	ck_assert_uint_eq(r->ops[0].n_kvs, 6);
	ck_assert_str_eq(r->ops[0].kvs[0].key, "");
	/* range [a/x, b) */
	r = OK_OP(&f, o_range(SM_OP_GET, "a/x", "b", 0));
	ck_assert_uint_eq(r->ops[0].n_kvs, 3);
	ck_assert_str_eq(r->ops[0].kvs[2].key, "ab");
	/* range_end "\0": to the end */
	sm_op_t from = o_range(SM_OP_GET, "ab", NULL, 0);
	from.key2 = "";
	from.key2_len = 1;
	r = OK_OP(&f, from);
	ck_assert_uint_eq(r->ops[0].n_kvs, 2);
	/* an empty range */
	r = OK_OP(&f, o_range(SM_OP_GET, "b", "a", 0));
	ck_assert_uint_eq(r->ops[0].n_kvs, 0);
	/* keys only */
	g = o_range(SM_OP_GET, "a/", NULL, SM_F_PREFIX | SM_F_KEYS_ONLY);
	r = OK_OP(&f, g);
	ck_assert_ptr_null(r->ops[0].kvs[1].rec.value);
	ck_assert_uint_eq(r->ops[0].kvs[1].rec.size, 2);
	/* a prefix over 4096 bytes */
	static char huge[SM_KEY_BYTES_MAX + 2];
	memset(huge, 'h', sizeof huge - 1);
	FAIL_OP(&f, o_range(SM_OP_GET, huge, NULL, SM_F_PREFIX), -ENAMETOOLONG);
	FAIL_OP(&f, o_range(SM_OP_GET, "a", huge, 0), -ENAMETOOLONG);
	FAIL_OP(&f, o_range(SM_OP_DEL, huge, NULL, SM_F_PREFIX), -ENAMETOOLONG);
	/* a GET in a txn sees the txn's earlier writes */
	sm_op_t ops[] = {o_put("a/x", "new"), o_range(SM_OP_GET, "a/", NULL, SM_F_PREFIX), o_put("a/z", "z"),
	                 o_key(SM_OP_GET, "a/z")};
	r = fx_ops(&f, ops, 4);
	ck_assert_int_eq(r->err, 0);
	ck_assert_uint_eq(r->ops[1].n_kvs, 2);
	ck_assert(value_is(&r->ops[1].kvs[0].rec, "new"));
	ck_assert_int_eq(r->ops[1].kvs[0].rec.mod_revision, 2);
	ck_assert_uint_eq(r->ops[3].n_kvs, 1);
	fx_close(&f);
}
END_TEST

START_TEST(test_del)
{
	fx_t f;
	fx_open(&f);
	sm_op_t puts[] = {o_put("a/x", "1"), o_put("a/y/z", "2"), o_put("ab", "3"), o_put("b/c", "4"),
	                  o_put("c", "5")};
	fx_ops(&f, puts, 5);
	/* single file */
	const sm_txn_result_t *r = OK_OP(&f, o_key(SM_OP_DEL, "c"));
	ck_assert_uint_eq(r->ops[0].deleted, 1);
	ck_assert(!exists(&f, "c"));
	ck_assert_int_eq(f.res.events[0].type, SM_EV_DELETE);
	ck_assert(f.res.events[0].has_old && !f.res.events[0].has_new);
	ck_assert(value_is(&f.res.events[0].old_rec, "5"));
	ck_assert_int_eq(get_ok(&f, "").mtime_ns, f.time_ns);
	/* missing: nothing, no revision */
	int64_t rev = sm_revision(f.sm);
	r = OK_OP(&f, o_key(SM_OP_DEL, "nope"));
	ck_assert_uint_eq(r->ops[0].deleted, 0);
	ck_assert_int_eq(sm_revision(f.sm), rev);
	FAIL_OP(&f, o_key(SM_OP_DEL, "a"), -ENOTEMPTY);
	FAIL_OP(&f, o_key(SM_OP_DEL, ""), -EBUSY);
	FAIL_OP(&f, o_key(SM_OP_DEL, "a/"), -EINVAL);
	/* prefix "a": a, a/x, a/y, a/y/z, ab -- children before parents in the events */
	r = OK_OP(&f, o_range(SM_OP_DEL, "a", NULL, SM_F_PREFIX));
	ck_assert_uint_eq(r->ops[0].deleted, 5);
	ck_assert_uint_eq(f.res.n_events, 5);
	const char *want[] = {"ab", "a/y/z", "a/y", "a/x", "a"};
	for (int i = 0; i < 5; i++) {
		ck_assert_int_eq(f.res.events[i].type, SM_EV_DELETE);
		ck_assert_str_eq(f.res.events[i].key, want[i]);
	}
	ck_assert_int_eq(sm_revision(f.sm), rev + 1);
	ck_assert_uint_eq(sm_key_count(f.sm), 3); /* root, b, b/c */
	/* range [b/c, c): b/c only; b stays */
	fx_ops(&f, puts, 5);
	r = OK_OP(&f, o_range(SM_OP_DEL, "b/c", "c", 0));
	ck_assert_uint_eq(r->ops[0].deleted, 1);
	ck_assert(exists(&f, "b") && !exists(&f, "b/c") && exists(&f, "c"));
	/* range [a/y, a/y/m): the dir a/y goes with its whole subtree, also a/y/z beyond the end */
	r = OK_OP(&f, o_range(SM_OP_DEL, "a/y", "a/y/m", 0));
	ck_assert_uint_eq(r->ops[0].deleted, 2);
	ck_assert(!exists(&f, "a/y") && !exists(&f, "a/y/z") && exists(&f, "a/x"));
	ck_assert_int_eq(get_ok(&f, "a").mtime_ns, f.time_ns);
	/* an empty dir as a single key */
	OK_OP(&f, o_mkdir("e"));
	r = OK_OP(&f, o_key(SM_OP_DEL, "e"));
	ck_assert_uint_eq(r->ops[0].deleted, 1);
	/* prefix "" removes everything but the root */
	r = OK_OP(&f, o_range(SM_OP_DEL, "", NULL, SM_F_PREFIX));
	ck_assert_uint_eq(sm_key_count(f.sm), 1);
	ck_assert(exists(&f, ""));
	/* range from "" to the end, on an empty store: nothing */
	sm_op_t all = o_range(SM_OP_DEL, "", NULL, 0);
	all.key2 = "";
	all.key2_len = 1;
	rev = sm_revision(f.sm);
	r = OK_OP(&f, all);
	ck_assert_uint_eq(r->ops[0].deleted, 0);
	ck_assert_int_eq(sm_revision(f.sm), rev);
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ filesystem ops */

START_TEST(test_create)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_mkdir("d"));
	OK_OP(&f, o_put("file", "x"));
	const sm_txn_result_t *r = OK_OP(&f, o_create("d/f", SM_F_EXCL, "init"));
	sm_record_t rec = get_ok(&f, "d/f");
	ck_assert_uint_eq(rec.mode, S_IFREG | 0640);
	ck_assert_uint_eq(rec.uid, UID);
	ck_assert(value_is(&rec, "init"));
	ck_assert(r->ops[0].has_rec);
	ck_assert_uint_eq(r->ops[0].rec.ino, rec.ino);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_CREATE);
	ck_assert_int_eq(get_ok(&f, "d").mtime_ns, f.time_ns);
	FAIL_OP(&f, o_create("d/f", SM_F_EXCL, ""), -EEXIST);
	FAIL_OP(&f, o_create("d", SM_F_EXCL, ""), -EEXIST);
	FAIL_OP(&f, o_create("d", 0, ""), -EISDIR);
	FAIL_OP(&f, o_create("", 0, ""), -EISDIR);
	FAIL_OP(&f, o_create("", SM_F_EXCL, ""), -EEXIST);
	FAIL_OP(&f, o_create("nodir/f", 0, ""), -ENOENT);
	FAIL_OP(&f, o_create("nodir/sub/f", 0, ""), -ENOENT);
	FAIL_OP(&f, o_create("file/f", 0, ""), -ENOTDIR);
	FAIL_OP(&f, o_create(".metastore", 0, ""), -EPERM);
	sm_op_t nul = o_create("a", 0, "");
	nul.key = "a\0b";
	nul.key_len = 3;
	FAIL_OP(&f, nul, -EINVAL);
	/* exists without EXCL or TRUNC: nothing written, the record comes back */
	int64_t rev = sm_revision(f.sm);
	r = OK_OP(&f, o_create("d/f", 0, "other"));
	ck_assert_int_eq(sm_revision(f.sm), rev);
	ck_assert(r->ops[0].has_rec);
	ck_assert(value_is(&r->ops[0].rec, "init"));
	ck_assert_uint_eq(f.res.n_events, 0);
	/* TRUNC: value replaced, a MODIFY */
	r = OK_OP(&f, o_create("d/f", SM_F_TRUNC, ""));
	rec = get_ok(&f, "d/f");
	ck_assert(value_is(&rec, ""));
	ck_assert_int_eq(rec.version, 2);
	ck_assert_uint_eq(rec.mode, S_IFREG | 0640); /* mode of the existing file */
	ck_assert_int_eq(f.res.events[0].type, SM_EV_MODIFY);
	fx_close(&f);
}
END_TEST

/* A proposer-chosen inode number is kept (CREATE, WRITE+CREATE, MKDIR, SYMLINK); one below
 * SM_INO_PROPOSER_MIN is refused; PUT's parents and the counter stay below the proposer range. */
START_TEST(test_proposer_ino)
{
	fx_t f;
	fx_open(&f);
	const uint64_t base = SM_INO_PROPOSER_MIN | (3ull << 40);
	sm_op_t op = o_create("c", SM_F_EXCL, "v");
	op.ino = base + 1;
	OK_OP(&f, op);
	ck_assert_uint_eq(get_ok(&f, "c").ino, base + 1);
	op = o_write("w", SM_F_CREATE, "v");
	op.mode = 0644;
	op.ino = base + 2;
	OK_OP(&f, op);
	ck_assert_uint_eq(get_ok(&f, "w").ino, base + 2);
	op = o_mkdir("d");
	op.ino = base + 3;
	OK_OP(&f, op);
	ck_assert_uint_eq(get_ok(&f, "d").ino, base + 3);
	op = o_symlink("l", "c");
	op.ino = base + 4;
	OK_OP(&f, op);
	ck_assert_uint_eq(get_ok(&f, "l").ino, base + 4);
	/* kept across rename */
	OK_OP(&f, o_rename("c", "d/c2", 0));
	ck_assert_uint_eq(get_ok(&f, "d/c2").ino, base + 1);
	/* a number in the counter's range is refused: it could collide */
	op = o_create("bad", SM_F_EXCL, "");
	op.ino = 12345;
	FAIL_OP(&f, op, -EINVAL);
	/* counter-assigned numbers stay below the proposer range */
	OK_OP(&f, o_put("p/q/r", "v"));
	ck_assert_uint_lt(get_ok(&f, "p").ino, SM_INO_PROPOSER_MIN);
	ck_assert_uint_lt(get_ok(&f, "p/q/r").ino, SM_INO_PROPOSER_MIN);
	fx_close(&f);
}
END_TEST

START_TEST(test_write)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("f", "old"));
	OK_OP(&f, o_mkdir("d"));
	const sm_txn_result_t *r = OK_OP(&f, o_write("f", 0, "new"));
	ck_assert(value_is(&r->ops[0].rec, "new"));
	ck_assert_int_eq(f.res.events[0].type, SM_EV_MODIFY);
	ck_assert(value_is(&f.res.events[0].old_rec, "old"));
	FAIL_OP(&f, o_write("g", 0, "x"), -ENOENT);
	FAIL_OP(&f, o_write("d", 0, "x"), -EISDIR);
	FAIL_OP(&f, o_write("d", SM_F_CREATE, "x"), -EISDIR);
	FAIL_OP(&f, o_write("", 0, "x"), -EISDIR);
	FAIL_OP(&f, o_write("f/x", 0, "x"), -ENOTDIR);
	FAIL_OP(&f, o_write("f/x", SM_F_CREATE, "x"), -ENOTDIR);
	FAIL_OP(&f, o_write("no/x", SM_F_CREATE, "x"), -ENOENT);
	FAIL_OP(&f, o_write(".metastore", SM_F_CREATE, "x"), -EPERM);
	FAIL_OP(&f, o_write(".metastore", 0, "x"), -ENOENT);
	FAIL_OP(&f, o_write("d//x", 0, "x"), -EINVAL);
	r = OK_OP(&f, o_write("d/g", SM_F_CREATE, "made"));
	sm_record_t g = get_ok(&f, "d/g");
	ck_assert(value_is(&g, "made"));
	ck_assert_uint_eq(g.mode, S_IFREG | 0640);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_CREATE);
	fx_close(&f);
}
END_TEST

START_TEST(test_setattr)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("f", "abcdef"));
	OK_OP(&f, o_mkdir("d"));
	sm_record_t before = get_ok(&f, "f");
	sm_op_t t = o_key(SM_OP_SETATTR, "f");
	t.attr_mask = SM_ATTR_MODE | SM_ATTR_UID | SM_ATTR_GID;
	t.mode = S_IFDIR | 04711; /* type bits in the op are ignored */
	t.uid = 5;
	t.gid = 6;
	const sm_txn_result_t *r = OK_OP(&f, t);
	sm_record_t rec = get_ok(&f, "f");
	ck_assert_uint_eq(rec.mode, S_IFREG | 04711);
	ck_assert_uint_eq(rec.uid, 5);
	ck_assert_uint_eq(rec.gid, 6);
	ck_assert(value_is(&rec, "abcdef"));
	ck_assert_int_eq(rec.ctime_ns, f.time_ns);
	ck_assert_int_eq(rec.mtime_ns, before.mtime_ns);
	ck_assert_int_eq(rec.version, 2);
	ck_assert_int_eq(rec.mod_revision, r->revision);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_ATTRIB);
	ck_assert_uint_eq(f.res.events[0].old_rec.mode, S_IFREG | 0644);
	/* truncate: shorter, then zero-extended; mtime moves, a MODIFY */
	t.attr_mask = SM_ATTR_SIZE;
	t.size = 3;
	OK_OP(&f, t);
	rec = get_ok(&f, "f");
	ck_assert(value_is(&rec, "abc"));
	ck_assert_int_eq(rec.mtime_ns, f.time_ns);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_MODIFY);
	t.size = 5;
	OK_OP(&f, t);
	rec = get_ok(&f, "f");
	ck_assert_uint_eq(rec.size, 5);
	ck_assert(rec.value_len == 5 && memcmp(rec.value, "abc\0\0", 5) == 0);
	t.size = 0;
	OK_OP(&f, t);
	ck_assert_uint_eq(get_ok(&f, "f").size, 0);
	/* explicit mtime wins over the truncate's */
	t.attr_mask = SM_ATTR_SIZE | SM_ATTR_MTIME;
	t.size = 1;
	t.mtime_ns = 77;
	OK_OP(&f, t);
	rec = get_ok(&f, "f");
	ck_assert_int_eq(rec.mtime_ns, 77);
	ck_assert_int_eq(rec.ctime_ns, f.time_ns);
	/* directories: mode and times yes, size no */
	sm_op_t td = o_key(SM_OP_SETATTR, "d");
	td.attr_mask = SM_ATTR_MODE | SM_ATTR_MTIME;
	td.mode = 0700;
	td.mtime_ns = 5;
	OK_OP(&f, td);
	rec = get_ok(&f, "d");
	ck_assert_uint_eq(rec.mode, S_IFDIR | 0700);
	ck_assert_int_eq(rec.mtime_ns, 5);
	td.attr_mask = SM_ATTR_SIZE;
	FAIL_OP(&f, td, -EISDIR);
	td = o_key(SM_OP_SETATTR, "");
	td.attr_mask = SM_ATTR_MODE;
	td.mode = 0711;
	OK_OP(&f, td);
	ck_assert_uint_eq(get_ok(&f, "").mode, S_IFDIR | 0711);
	t.key = "nope";
	t.key_len = 4;
	FAIL_OP(&f, t, -ENOENT);
	t.key = "f/x";
	t.key_len = 3;
	FAIL_OP(&f, t, -ENOTDIR);
	t.key = "f/";
	FAIL_OP(&f, t, -EINVAL);
	fx_close(&f);
}
END_TEST

START_TEST(test_unlink)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("d/f", "x"));
	OK_OP(&f, o_symlink("d/l", "f"));
	const sm_txn_result_t *r = OK_OP(&f, o_key(SM_OP_UNLINK, "d/f"));
	ck_assert_uint_eq(r->ops[0].deleted, 1);
	ck_assert(!exists(&f, "d/f"));
	ck_assert_int_eq(f.res.events[0].type, SM_EV_DELETE);
	ck_assert_str_eq(f.res.events[0].key, "d/f");
	ck_assert_int_eq(get_ok(&f, "d").mtime_ns, f.time_ns);
	OK_OP(&f, o_key(SM_OP_UNLINK, "d/l"));
	OK_OP(&f, o_put("file", "x"));
	FAIL_OP(&f, o_key(SM_OP_UNLINK, "d"), -EISDIR);
	FAIL_OP(&f, o_key(SM_OP_UNLINK, ""), -EISDIR);
	FAIL_OP(&f, o_key(SM_OP_UNLINK, "d/f"), -ENOENT);
	FAIL_OP(&f, o_key(SM_OP_UNLINK, "x/y"), -ENOENT);
	FAIL_OP(&f, o_key(SM_OP_UNLINK, "file/y"), -ENOTDIR);
	FAIL_OP(&f, o_key(SM_OP_UNLINK, "./x"), -EINVAL);
	fx_close(&f);
}
END_TEST

START_TEST(test_mkdir_rmdir)
{
	fx_t f;
	fx_open(&f);
	const sm_txn_result_t *r = OK_OP(&f, o_mkdir("d"));
	sm_record_t d = get_ok(&f, "d");
	ck_assert_int_eq(d.kind, SM_KIND_DIR);
	ck_assert_uint_eq(d.mode, S_IFDIR | 0750);
	ck_assert_uint_eq(d.size, 0);
	ck_assert(r->ops[0].has_rec);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_CREATE);
	OK_OP(&f, o_put("f", "x"));
	FAIL_OP(&f, o_mkdir("d"), -EEXIST);
	FAIL_OP(&f, o_mkdir("f"), -EEXIST);
	FAIL_OP(&f, o_mkdir(""), -EEXIST);
	FAIL_OP(&f, o_mkdir("x/y"), -ENOENT);
	FAIL_OP(&f, o_mkdir("f/y"), -ENOTDIR);
	FAIL_OP(&f, o_mkdir(".metastore"), -EPERM);
	FAIL_OP(&f, o_mkdir("d/"), -EINVAL);
	OK_OP(&f, o_mkdir("d/e"));
	/* the parent's times move, not its version */
	d = get_ok(&f, "d");
	ck_assert_int_eq(d.mtime_ns, f.time_ns);
	ck_assert_int_eq(d.ctime_ns, f.time_ns);
	ck_assert_int_eq(d.version, 1);
	FAIL_OP(&f, o_key(SM_OP_RMDIR, "d"), -ENOTEMPTY);
	FAIL_OP(&f, o_key(SM_OP_RMDIR, "f"), -ENOTDIR);
	FAIL_OP(&f, o_key(SM_OP_RMDIR, "f/x"), -ENOTDIR);
	FAIL_OP(&f, o_key(SM_OP_RMDIR, "x"), -ENOENT);
	FAIL_OP(&f, o_key(SM_OP_RMDIR, ""), -EBUSY);
	FAIL_OP(&f, o_key(SM_OP_RMDIR, ".."), -EINVAL);
	r = OK_OP(&f, o_key(SM_OP_RMDIR, "d/e"));
	ck_assert_uint_eq(r->ops[0].deleted, 1);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_DELETE);
	OK_OP(&f, o_key(SM_OP_RMDIR, "d"));
	ck_assert_uint_eq(sm_key_count(f.sm), 2);
	fx_close(&f);
}
END_TEST

START_TEST(test_symlink)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("f", "x"));
	const sm_txn_result_t *r = OK_OP(&f, o_symlink("l", "../target"));
	sm_record_t l = get_ok(&f, "l");
	ck_assert_int_eq(l.kind, SM_KIND_SYMLINK);
	ck_assert_uint_eq(l.mode, S_IFLNK | 0777);
	ck_assert(value_is(&l, "../target"));
	ck_assert(r->ops[0].has_rec);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_CREATE);
	FAIL_OP(&f, o_symlink("l", "y"), -EEXIST);
	FAIL_OP(&f, o_symlink("f", "y"), -EEXIST);
	FAIL_OP(&f, o_symlink("", "y"), -EEXIST);
	FAIL_OP(&f, o_symlink("n/l", "y"), -ENOENT);
	FAIL_OP(&f, o_symlink("f/l", "y"), -ENOTDIR);
	FAIL_OP(&f, o_symlink(".metastore", "y"), -EPERM);
	FAIL_OP(&f, o_symlink("m", ""), -ENOENT);
	sm_op_t nul = o_symlink("m", "ab");
	nul.value = (const uint8_t *)"a\0b";
	nul.value_len = 3;
	FAIL_OP(&f, nul, -EINVAL);
	static char target[4097];
	memset(target, 't', 4096);
	FAIL_OP(&f, o_symlink("m", target), -ENAMETOOLONG);
	target[4095] = '\0';
	OK_OP(&f, o_symlink("m", target));
	FAIL_OP(&f, o_symlink("m/", "y"), -EINVAL);
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ rename */

START_TEST(test_rename_file)
{
	fx_t f;
	fx_open(&f);
	sm_op_t setup[] = {o_put("a/f", "F"), o_put("a/g", "G"), o_put("b/h", "H"), o_mkdir("e"),
	                   o_mkdir("e2")};
	fx_ops(&f, setup, 5);
	sm_record_t src = get_ok(&f, "a/f");
	/* to a new name in another dir */
	const sm_txn_result_t *r = OK_OP(&f, o_rename("a/f", "b/f", 0));
	ck_assert(!exists(&f, "a/f"));
	sm_record_t moved = get_ok(&f, "b/f");
	ck_assert_uint_eq(moved.ino, src.ino);
	ck_assert_int_eq(moved.create_revision, src.create_revision);
	ck_assert_int_eq(moved.version, src.version);
	ck_assert_int_eq(moved.mod_revision, r->revision);
	ck_assert_int_eq(moved.ctime_ns, f.time_ns);
	ck_assert_int_eq(moved.mtime_ns, src.mtime_ns);
	ck_assert(value_is(&moved, "F"));
	ck_assert(r->ops[0].has_rec);
	ck_assert_uint_eq(r->ops[0].rec.ino, src.ino);
	ck_assert_int_eq(get_ok(&f, "a").mtime_ns, f.time_ns);
	ck_assert_int_eq(get_ok(&f, "b").mtime_ns, f.time_ns);
	ck_assert_uint_eq(f.res.n_events, 1);
	sm_event_t *e = &f.res.events[0];
	ck_assert_int_eq(e->type, SM_EV_RENAME);
	ck_assert_str_eq(e->key, "a/f");
	ck_assert_str_eq(e->key2, "b/f");
	ck_assert(e->has_old && e->has_new && !e->has_replaced);
	ck_assert_uint_eq(e->new_rec.ino, src.ino);
	/* file over file replaces it; the replaced record is in the event */
	sm_record_t h = get_ok(&f, "b/h");
	r = OK_OP(&f, o_rename("b/f", "b/h", 0));
	sm_record_t now = get_ok(&f, "b/h");
	ck_assert(value_is(&now, "F"));
	ck_assert_uint_eq(now.ino, src.ino);
	ck_assert(f.res.events[0].has_replaced);
	ck_assert_uint_eq(f.res.events[0].replaced_rec.ino, h.ino);
	ck_assert_uint_eq(sm_key_count(f.sm), 7); /* root a a/g b b/h e e2 */
	/* onto itself: success, nothing written */
	int64_t rev = sm_revision(f.sm);
	r = OK_OP(&f, o_rename("b/h", "b/h", 0));
	ck_assert_int_eq(sm_revision(f.sm), rev);
	ck_assert(r->ops[0].has_rec);
	ck_assert_uint_eq(f.res.n_events, 0);
	/* dir over empty dir replaces it */
	OK_OP(&f, o_rename("e", "e2", 0));
	ck_assert(!exists(&f, "e"));
	/* the errors */
	FAIL_OP(&f, o_rename("b/h", "e2", 0), -EISDIR);
	FAIL_OP(&f, o_rename("e2", "b/h", 0), -ENOTDIR);
	FAIL_OP(&f, o_rename("e2", "a", 0), -ENOTEMPTY);
	FAIL_OP(&f, o_rename("b/h", "a/g", SM_F_NOREPLACE), -EEXIST);
	FAIL_OP(&f, o_rename("b/h", "b/h", SM_F_NOREPLACE), -EEXIST);
	FAIL_OP(&f, o_rename("b/h", "a/none", SM_F_EXCHANGE), -ENOENT);
	FAIL_OP(&f, o_rename("b/h", "a/g", SM_F_EXCHANGE | SM_F_NOREPLACE), -EINVAL);
	FAIL_OP(&f, o_rename("none", "x", 0), -ENOENT);
	FAIL_OP(&f, o_rename("none/x", "x", 0), -ENOENT);
	FAIL_OP(&f, o_rename("b/h/x", "x", 0), -ENOTDIR);
	FAIL_OP(&f, o_rename("b/h", "none/x", 0), -ENOENT);
	FAIL_OP(&f, o_rename("b/h", "a/g/x", 0), -ENOTDIR);
	FAIL_OP(&f, o_rename("a", "a/sub", 0), -EINVAL);
	FAIL_OP(&f, o_rename("a", "a/g/deeper", 0), -ENOTDIR); /* path errors come first */
	FAIL_OP(&f, o_rename("a/g", "a", 0), -ENOTEMPTY);
	FAIL_OP(&f, o_rename("a/g", "a", SM_F_EXCHANGE), -EINVAL);
	FAIL_OP(&f, o_rename("", "x", 0), -EBUSY);
	FAIL_OP(&f, o_rename("a", "", 0), -EBUSY);
	FAIL_OP(&f, o_rename("a/g", ".metastore", 0), -EPERM);
	FAIL_OP(&f, o_rename("a/g", ".metastore", SM_F_EXCHANGE), -EPERM);
	FAIL_OP(&f, o_rename("a/g", "x/", 0), -EINVAL);
	FAIL_OP(&f, o_rename("a//g", "x", 0), -EINVAL);
	/* NOREPLACE to a free name works */
	OK_OP(&f, o_rename("a/g", "a/g2", SM_F_NOREPLACE));
	/* .metastore below the root is fine */
	OK_OP(&f, o_rename("a/g2", "a/.metastore", 0));
	fx_close(&f);
}
END_TEST

START_TEST(test_rename_subtree)
{
	fx_t f;
	fx_open(&f);
	sm_op_t setup[] = {o_put("src/a/x", "1"), o_put("src/a/y/z", "2"), o_put("src/b", "3"),
	                   o_put("src-x", "4"),   o_put("src0", "5"),      o_put("dst/keep", "6")};
	fx_ops(&f, setup, 6);
	OK_OP(&f, o_put("src/b", "3b")); /* version 2 */
	const char *paths[] = {"src", "src/a", "src/a/x", "src/a/y", "src/a/y/z", "src/b"};
	sm_record_t before[6];
	for (int i = 0; i < 6; i++)
		before[i] = get_ok(&f, paths[i]);
	uint64_t keys = sm_key_count(f.sm);
	const sm_txn_result_t *r = OK_OP(&f, o_rename("src", "dst/moved", 0));
	int64_t rev = r->revision;
	ck_assert_int_eq(rev, 3);
	ck_assert_int_eq(sm_revision(f.sm), 3);
	ck_assert_uint_eq(sm_key_count(f.sm), keys);
	char np[64];
	for (int i = 0; i < 6; i++) {
		ck_assert_msg(!exists(&f, paths[i]), "%s still there", paths[i]);
		snprintf(np, sizeof np, "dst/moved%s", paths[i] + 3);
		sm_record_t m = get_ok(&f, np);
		ck_assert_uint_eq(m.ino, before[i].ino);
		ck_assert_int_eq(m.create_revision, before[i].create_revision);
		ck_assert_int_eq(m.version, before[i].version);
		ck_assert_int_eq(m.mod_revision, rev);
		ck_assert_int_eq(m.kind, before[i].kind);
		ck_assert_uint_eq(m.value_len, before[i].value_len);
		ck_assert_int_eq(m.ctime_ns, i == 0 ? f.time_ns : before[i].ctime_ns);
	}
	ck_assert_int_eq(get_ok(&f, "dst/moved/b").version, 2);
	/* neighbours that share the name's prefix did not move */
	ck_assert(exists(&f, "src-x") && exists(&f, "src0") && exists(&f, "dst/keep"));
	ck_assert_uint_eq(f.res.n_events, 1);
	ck_assert_int_eq(f.res.events[0].type, SM_EV_RENAME);
	/* and back, over an empty dir */
	OK_OP(&f, o_mkdir("back"));
	OK_OP(&f, o_rename("dst/moved", "back", 0));
	ck_assert(exists(&f, "back/a/y/z"));
	ck_assert(!exists(&f, "dst/moved"));
	fx_close(&f);
}
END_TEST

START_TEST(test_rename_exchange)
{
	fx_t f;
	fx_open(&f);
	sm_op_t setup[] = {o_put("p/one/x", "1"), o_put("p/one/y/z", "2"), o_put("q/two/w", "3"),
	                   o_put("q/f", "F")};
	fx_ops(&f, setup, 4);
	sm_record_t one = get_ok(&f, "p/one"), two = get_ok(&f, "q/two"), z = get_ok(&f, "p/one/y/z");
	uint64_t keys = sm_key_count(f.sm);
	const sm_txn_result_t *r = OK_OP(&f, o_rename("p/one", "q/two", SM_F_EXCHANGE));
	ck_assert_uint_eq(sm_key_count(f.sm), keys);
	ck_assert_uint_eq(get_ok(&f, "p/one").ino, two.ino);
	ck_assert_uint_eq(get_ok(&f, "q/two").ino, one.ino);
	ck_assert(exists(&f, "p/one/w") && !exists(&f, "p/one/x"));
	ck_assert(exists(&f, "q/two/x") && exists(&f, "q/two/y/z") && !exists(&f, "q/two/w"));
	sm_record_t z2 = get_ok(&f, "q/two/y/z");
	ck_assert_uint_eq(z2.ino, z.ino);
	ck_assert_int_eq(z2.mod_revision, r->revision);
	ck_assert_int_eq(get_ok(&f, "p/one").ctime_ns, f.time_ns);
	ck_assert_int_eq(get_ok(&f, "q/two").ctime_ns, f.time_ns);
	ck_assert(r->ops[0].has_rec);
	ck_assert_uint_eq(r->ops[0].rec.ino, one.ino);
	ck_assert_uint_eq(f.res.n_events, 1);
	sm_event_t *e = &f.res.events[0];
	ck_assert_int_eq(e->type, SM_EV_EXCHANGE);
	ck_assert_str_eq(e->key, "p/one");
	ck_assert_str_eq(e->key2, "q/two");
	ck_assert_uint_eq(e->old_rec.ino, one.ino);
	ck_assert_uint_eq(e->new_rec.ino, two.ino);
	/* a file and a directory trade places too */
	OK_OP(&f, o_rename("q/f", "p/one", SM_F_EXCHANGE));
	ck_assert_int_eq(get_ok(&f, "p/one").kind, SM_KIND_FILE);
	ck_assert(exists(&f, "q/f/w"));
	fx_close(&f);
}
END_TEST

START_TEST(test_rename_too_long)
{
	/* moving a deep subtree under a longer name must keep every key within 4096 bytes */
	fx_t f;
	fx_open(&f);
	static char deep[SM_KEY_BYTES_MAX + 1];
	size_t n = 0;
	deep[n++] = 's';
	while (n + 201 <= SM_KEY_BYTES_MAX) {
		deep[n++] = '/';
		memset(deep + n, 'c', 200);
		n += 200;
	}
	deep[n] = '\0';
	OK_OP(&f, o_put(deep, "v"));
	static char longer[300];
	memset(longer, 'L', 250);
	longer[250] = '\0';
	FAIL_OP(&f, o_rename("s", longer, 0), -ENAMETOOLONG);
	OK_OP(&f, o_mkdir("t"));
	OK_OP(&f, o_rename("s", "t", SM_F_EXCHANGE)); /* same length: fine */
	ck_assert(exists(&f, deep + 0) == false);
	deep[0] = 't';
	ck_assert(exists(&f, deep));
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ listing */

typedef struct list_acc {
	char names[16][32];
	uint64_t ino[16];
	int n, stop_after;
} list_acc_t;

static int list_cb(void *ctx, const char *name, size_t name_len, const sm_record_t *rec)
{
	list_acc_t *a = ctx;
	ck_assert_int_lt(a->n, 16);
	ck_assert_uint_lt(name_len, 32);
	memcpy(a->names[a->n], name, name_len);
	a->names[a->n][name_len] = '\0';
	a->ino[a->n] = rec->ino;
	a->n++;
	return a->stop_after && a->n == a->stop_after;
}

START_TEST(test_list)
{
	fx_t f;
	fx_open(&f);
	sm_op_t setup[] = {o_put("a/b/x", "1"), o_put("a/b-c", "2"),   o_put("a/b.d", "3"),
	                   o_put("a/b0", "4"),  o_put("a/b/y/z", "5"), o_put("a-z", "6"),
	                   o_put("a0", "7")};
	fx_ops(&f, setup, 7);
	list_acc_t acc = {0};
	ck_assert_int_eq(sm_list(f.sm, "a", 1, NULL, 0, list_cb, &acc), 0);
	const char *want[] = {"b", "b-c", "b.d", "b0"};
	ck_assert_int_eq(acc.n, 4);
	for (int i = 0; i < 4; i++)
		ck_assert_str_eq(acc.names[i], want[i]);
	ck_assert_uint_eq(acc.ino[0], get_ok(&f, "a/b").ino);
	/* after "b": b-c, b.d, b0 (b's subtree skipped) */
	memset(&acc, 0, sizeof acc);
	ck_assert_int_eq(sm_list(f.sm, "a", 1, "b", 1, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 3);
	ck_assert_str_eq(acc.names[0], "b-c");
	/* after "b.d": b0 */
	memset(&acc, 0, sizeof acc);
	ck_assert_int_eq(sm_list(f.sm, "a", 1, "b.d", 3, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 1);
	ck_assert_str_eq(acc.names[0], "b0");
	/* after a name that does not exist */
	memset(&acc, 0, sizeof acc);
	ck_assert_int_eq(sm_list(f.sm, "a", 1, "b-", 2, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 3);
	/* stop early */
	memset(&acc, 0, sizeof acc);
	acc.stop_after = 2;
	ck_assert_int_eq(sm_list(f.sm, "a", 1, NULL, 0, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 2);
	/* the root: a, a-z, a0 */
	memset(&acc, 0, sizeof acc);
	ck_assert_int_eq(sm_list(f.sm, "", 0, NULL, 0, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 3);
	ck_assert_str_eq(acc.names[0], "a");
	ck_assert_str_eq(acc.names[1], "a-z");
	ck_assert_str_eq(acc.names[2], "a0");
	/* nested and empty */
	memset(&acc, 0, sizeof acc);
	ck_assert_int_eq(sm_list(f.sm, "a/b", 3, NULL, 0, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 2);
	ck_assert_str_eq(acc.names[1], "y");
	OK_OP(&f, o_mkdir("empty"));
	memset(&acc, 0, sizeof acc);
	ck_assert_int_eq(sm_list(f.sm, "empty", 5, NULL, 0, list_cb, &acc), 0);
	ck_assert_int_eq(acc.n, 0);
	/* errors */
	ck_assert_int_eq(sm_list(f.sm, "nope", 4, NULL, 0, list_cb, &acc), -ENOENT);
	ck_assert_int_eq(sm_list(f.sm, "a0", 2, NULL, 0, list_cb, &acc), -ENOTDIR);
	ck_assert_int_eq(sm_list(f.sm, "a0/x", 4, NULL, 0, list_cb, &acc), -ENOTDIR);
	ck_assert_int_eq(sm_list(f.sm, "a/", 2, NULL, 0, list_cb, &acc), -EINVAL);
	char name[300];
	memset(name, 'n', sizeof name);
	ck_assert_int_eq(sm_list(f.sm, name, 256, NULL, 0, list_cb, &acc), -ENAMETOOLONG);
	ck_assert_int_eq(sm_list(f.sm, "a", 1, name, 256, list_cb, &acc), -EINVAL);
	fx_close(&f);
}
END_TEST

START_TEST(test_get_errors)
{
	fx_t f;
	fx_open(&f);
	sm_record_t r;
	ck_assert_int_eq(sm_get(f.sm, "x", 1, &r), -ENOENT);
	ck_assert_int_eq(sm_get(f.sm, "x/", 2, &r), -EINVAL);
	char name[300];
	memset(name, 'n', sizeof name);
	ck_assert_int_eq(sm_get(f.sm, name, 256, &r), -ENAMETOOLONG);
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ transactions */

/* The etcd compare matrix: 4 targets x 4 ops x {holds, does not} x {key present, absent}. */
START_TEST(test_compare_matrix)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("other", "o"));
	OK_OP(&f, o_put("k", "mmm"));
	OK_OP(&f, o_put("k", "mmm")); /* k: version 2, create 2, mod 3 */
	sm_record_t k = get_ok(&f, "k");
	ck_assert_int_eq(k.version, 2);
	ck_assert_int_eq(k.create_revision, 2);
	ck_assert_int_eq(k.mod_revision, 3);
	sm_op_t yes = o_key(SM_OP_GET, "k"), no = o_key(SM_OP_GET, "other");
	sm_cmp_target_t targets[] = {SM_CMP_VALUE, SM_CMP_VERSION, SM_CMP_CREATE, SM_CMP_MOD};
	sm_cmp_op_t ops[] = {SM_CMP_EQ, SM_CMP_NE, SM_CMP_LT, SM_CMP_GT};
	int64_t actual[] = {0, 2, 2, 3};
	int checked = 0;
	for (int ti = 0; ti < 4; ti++) {
		for (int oi = 0; oi < 4; oi++) {
			for (int want = 0; want < 2; want++) {
				for (int present = 0; present < 2; present++) {
					sm_compare_t c = {.target = targets[ti], .op = ops[oi]};
					c.key = present ? "k" : "absent";
					c.key_len = strlen(c.key);
					bool expect = want;
					if (targets[ti] == SM_CMP_VALUE) {
						/* values compare in memcmp order with "mmm" */
						const char *v = NULL;
						switch (ops[oi]) {
						case SM_CMP_EQ:
							v = want ? "mmm" : "mm";
							break;
						case SM_CMP_NE:
							v = want ? "mmz" : "mmm";
							break;
						case SM_CMP_LT:
							v = want ? "mmmm" : "mm";
							break;
						case SM_CMP_GT:
							v = want ? "ma" : "mz";
							break;
						}
						c.value = (const uint8_t *)v;
						c.value_len = strlen(v);
						if (!present)
							expect =
							    false; /* a missing key's value compares false */
					} else {
						int64_t n = present ? actual[ti] : 0;
						switch (ops[oi]) {
						case SM_CMP_EQ:
							c.number = want ? n : n + 1;
							break;
						case SM_CMP_NE:
							c.number = want ? n + 1 : n;
							break;
						case SM_CMP_LT:
							c.number = want ? n + 1 : n;
							break;
						case SM_CMP_GT:
							c.number = want ? n - 1 : n;
							break;
						}
					}
					const sm_txn_result_t *r = fx_txn(&f, &c, 1, &yes, 1, &no, 1);
					ck_assert_int_eq(r->err, 0);
					ck_assert_msg(r->succeeded == expect,
					              "target %d op %d want %d present %d", targets[ti],
					              ops[oi], want, present);
					ck_assert_uint_eq(r->n_ops, 1);
					ck_assert_str_eq(r->ops[0].kvs[0].key, expect ? "k" : "other");
					checked++;
				}
			}
		}
	}
	ck_assert_int_eq(checked, 64);
	ck_assert_int_eq(sm_revision(f.sm), 3);
	fx_close(&f);
}
END_TEST

START_TEST(test_txn_branches)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("k", "v"));
	/* every compare must hold */
	sm_compare_t cs[] = {
	    {.target = SM_CMP_VERSION, .op = SM_CMP_EQ, .key = "k", .key_len = 1, .number = 1},
	    {.target = SM_CMP_VALUE,
	     .op = SM_CMP_EQ,
	     .key = "k",
	     .key_len = 1,
	     .value = (const uint8_t *)"nope",
	     .value_len = 4}};
	sm_op_t s[] = {o_put("s", "1")}, e[] = {o_put("e1", "1"), o_put("e2", "2")};
	const sm_txn_result_t *r = fx_txn(&f, cs, 2, s, 1, e, 2);
	ck_assert(!r->succeeded);
	ck_assert_int_eq(r->err, 0);
	ck_assert_uint_eq(r->n_ops, 2);
	ck_assert(exists(&f, "e1") && exists(&f, "e2") && !exists(&f, "s"));
	ck_assert_int_eq(r->revision, 2); /* the else branch wrote: one revision */
	r = fx_txn(&f, cs, 1, s, 1, e, 2);
	ck_assert(r->succeeded);
	ck_assert(exists(&f, "s"));
	/* no compares: success branch; empty branches write nothing */
	r = fx_txn(&f, NULL, 0, NULL, 0, NULL, 0);
	ck_assert(r->succeeded);
	ck_assert_uint_eq(r->n_ops, 0);
	ck_assert_int_eq(r->revision, 3);
	/* a failing else branch fails the txn */
	sm_op_t bad = o_key(SM_OP_RMDIR, "k");
	r = fx_txn(&f, &cs[1], 1, s, 1, &bad, 1);
	ck_assert(!r->succeeded);
	ck_assert_int_eq(r->err, -ENOTDIR);
	/* invalid compares fail the whole txn; no branch runs */
	sm_compare_t inv = {.target = SM_CMP_VERSION, .op = SM_CMP_EQ, .key = "k/", .key_len = 2};
	r = fx_txn(&f, &inv, 1, s, 1, e, 2);
	ck_assert_int_eq(r->err, -EINVAL);
	ck_assert_uint_eq(r->n_ops, 0);
	inv.key_len = 1;
	inv.target = 9;
	ck_assert_int_eq(fx_txn(&f, &inv, 1, s, 1, e, 2)->err, -EINVAL);
	inv.target = SM_CMP_MOD;
	inv.op = 0;
	ck_assert_int_eq(fx_txn(&f, &inv, 1, s, 1, e, 2)->err, -EINVAL);
	char name[300];
	memset(name, 'n', sizeof name);
	inv.op = SM_CMP_EQ;
	inv.key = name;
	inv.key_len = 256;
	ck_assert_int_eq(fx_txn(&f, &inv, 1, s, 1, e, 2)->err, -ENAMETOOLONG);
	/* an unknown op type */
	sm_op_t unknown = o_put("u", "u");
	unknown.type = 99;
	FAIL_OP(&f, unknown, -EINVAL);
	ck_assert_int_eq(sm_revision(f.sm), 3);
	fx_close(&f);
}
END_TEST

START_TEST(test_revisions)
{
	fx_t f;
	fx_open(&f);
	/* a multi-op txn bumps once */
	sm_op_t three[] = {o_put("a", "1"), o_put("b", "2"), o_mkdir("c")};
	const sm_txn_result_t *r = fx_ops(&f, three, 3);
	ck_assert_int_eq(r->revision, 1);
	ck_assert_int_eq(get_ok(&f, "c").create_revision, 1);
	/* read-only: no bump */
	r = OK_OP(&f, o_key(SM_OP_GET, "a"));
	ck_assert_int_eq(r->revision, 1);
	/* a failed txn: no bump, its earlier ops undone, no inode used */
	sm_op_t failing[] = {o_put("x", "1"), o_key(SM_OP_UNLINK, "a"), o_mkdir("c")};
	r = fx_ops(&f, failing, 3);
	ck_assert_int_eq(r->err, -EEXIST);
	ck_assert_int_eq(r->ops[2].err, -EEXIST);
	ck_assert_int_eq(r->ops[0].err, 0);
	ck_assert(!r->ops[0].has_rec);
	ck_assert_int_eq(r->revision, 1);
	ck_assert(!exists(&f, "x") && exists(&f, "a"));
	ck_assert_uint_eq(f.res.n_events, 0);
	OK_OP(&f, o_put("y", "1"));
	ck_assert_uint_eq(get_ok(&f, "y").ino, 5); /* a=2 b=3 c=4: x's inode was given back */
	/* versions count changes of a key; delete and recreate starts over */
	OK_OP(&f, o_put("a", "2"));
	OK_OP(&f, o_put("a", "3"));
	ck_assert_int_eq(get_ok(&f, "a").version, 3);
	OK_OP(&f, o_key(SM_OP_DEL, "a"));
	r = OK_OP(&f, o_put("a", "4"));
	sm_record_t a = get_ok(&f, "a");
	ck_assert_int_eq(a.version, 1);
	ck_assert_int_eq(a.create_revision, r->revision);
	/* a batch of txns: each writing txn one revision, later ones see earlier ones */
	sm_op_t t1[] = {o_put("n/1", "a")}, t2[] = {o_key(SM_OP_GET, "n/1")}, t3[] = {o_put("n/1", "b")},
	        t4[] = {o_mkdir("n")};
	sm_compare_t c3 = {
	    .target = SM_CMP_VERSION, .op = SM_CMP_EQ, .key = "n/1", .key_len = 3, .number = 1};
	sm_txn_t txns[] = {{.time_ns = 1, .n_success = 1, .success = t1},
	                   {.time_ns = 2, .n_success = 1, .success = t2},
	                   {.time_ns = 3, .n_compare = 1, .compares = &c3, .n_success = 1, .success = t3},
	                   {.time_ns = 4, .n_success = 1, .success = t4}};
	int64_t rev = sm_revision(f.sm);
	const sm_apply_result_t *res = fx_batch(&f, txns, 4);
	ck_assert_int_eq(res->txns[0].revision, rev + 1);
	ck_assert_uint_eq(res->txns[1].ops[0].n_kvs, 1);
	ck_assert_int_eq(res->txns[1].revision, rev + 1);
	ck_assert(res->txns[2].succeeded);
	ck_assert_int_eq(res->txns[2].revision, rev + 2);
	ck_assert_int_eq(res->txns[3].err, -EEXIST);
	ck_assert_int_eq(res->txns[3].revision, rev + 2);
	ck_assert_int_eq(sm_revision(f.sm), rev + 2);
	sm_record_t n1 = get_ok(&f, "n/1");
	ck_assert_int_eq(n1.version, 2);
	ck_assert_int_eq(n1.create_revision, rev + 1);
	ck_assert_int_eq(n1.mod_revision, rev + 2);
	ck_assert_int_eq(n1.mtime_ns, 3);
	/* events: txn 0 creates n and n/1, txn 2 modifies n/1 */
	ck_assert_uint_eq(res->n_events, 3);
	ck_assert_uint_eq(res->events[0].txn_index, 0);
	ck_assert_int_eq(res->events[0].revision, rev + 1);
	ck_assert_uint_eq(res->events[2].txn_index, 2);
	ck_assert_int_eq(res->events[2].type, SM_EV_MODIFY);
	ck_assert_int_eq(res->events[2].revision, rev + 2);
	fx_close(&f);
}
END_TEST

START_TEST(test_duplicates)
{
	fx_t f;
	fx_open(&f);
	sm_op_t p1[] = {o_put("k", "1")}, p2[] = {o_put("k", "2")}, p3[] = {o_put("k", "3")};
	sm_txn_t t = {.origin_node = 2, .origin_seq = 5, .time_ns = 1, .n_success = 1, .success = p1};
	const sm_apply_result_t *r = fx_batch(&f, &t, 1);
	ck_assert(!r->txns[0].duplicate);
	ck_assert_int_eq(r->txns[0].revision, 1);
	uint64_t keys = sm_key_count(f.sm);
	/* the same (origin, seq) again, and an older one: skipped */
	t.success = p2;
	r = fx_batch(&f, &t, 1);
	ck_assert(r->txns[0].duplicate);
	ck_assert_int_eq(r->txns[0].err, 0);
	ck_assert_uint_eq(r->txns[0].n_ops, 0);
	ck_assert_int_eq(r->txns[0].revision, 1);
	ck_assert_uint_eq(r->n_events, 0);
	t.origin_seq = 4;
	ck_assert(fx_batch(&f, &t, 1)->txns[0].duplicate);
	sm_record_t k = get_ok(&f, "k");
	ck_assert(value_is(&k, "1"));
	/* the dedupe table is not a record */
	ck_assert_uint_eq(sm_key_count(f.sm), keys);
	/* another node with the same seq is not a duplicate; seq 0 never dedupes */
	t.origin_node = 3;
	t.origin_seq = 5;
	ck_assert(!fx_batch(&f, &t, 1)->txns[0].duplicate);
	t.origin_node = 2;
	t.origin_seq = 0;
	ck_assert(!fx_batch(&f, &t, 1)->txns[0].duplicate);
	ck_assert(!fx_batch(&f, &t, 1)->txns[0].duplicate);
	t.origin_node = 0;
	t.origin_seq = 9;
	ck_assert(!fx_batch(&f, &t, 1)->txns[0].duplicate);
	ck_assert(!fx_batch(&f, &t, 1)->txns[0].duplicate);
	/* inside one batch: the retry right after the original is skipped */
	sm_txn_t two[] = {{.origin_node = 7, .origin_seq = 1, .n_success = 1, .success = p2},
	                  {.origin_node = 7, .origin_seq = 1, .n_success = 1, .success = p3},
	                  {.origin_node = 7, .origin_seq = 2, .n_success = 1, .success = p3}};
	r = fx_batch(&f, two, 3);
	ck_assert(!r->txns[0].duplicate && r->txns[1].duplicate && !r->txns[2].duplicate);
	/* a failed txn is decided too: its retry is a duplicate */
	sm_op_t bad[] = {o_key(SM_OP_RMDIR, "k")};
	sm_txn_t tb = {.origin_node = 7, .origin_seq = 3, .n_success = 1, .success = bad};
	ck_assert_int_eq(fx_batch(&f, &tb, 1)->txns[0].err, -ENOTDIR);
	ck_assert(fx_batch(&f, &tb, 1)->txns[0].duplicate);
	fx_close(&f);
}
END_TEST

START_TEST(test_apply_index)
{
	fx_t f;
	fx_open(&f);
	sm_op_t p[] = {o_put("k", "1")};
	sm_txn_t t = {.n_success = 1, .success = p};
	sm_batch_t b = {.n_txn = 1, .txns = &t};
	sm_apply_result_t res;
	ck_assert_int_eq(sm_apply(f.sm, &b, 0, &res), -EALREADY);
	ck_assert_int_eq(sm_apply(f.sm, &b, 5, &res), 0);
	sm_apply_result_free(&res);
	ck_assert_uint_eq(sm_applied_index(f.sm), 5);
	ck_assert_int_eq(sm_apply(f.sm, &b, 5, &res), -EALREADY);
	ck_assert_int_eq(sm_apply(f.sm, &b, 4, &res), -EALREADY);
	ck_assert_ptr_null(res.txns);
	ck_assert_int_eq(sm_revision(f.sm), 1);
	ck_assert_int_eq(sm_apply_noop(f.sm, 5), -EALREADY);
	ck_assert_int_eq(sm_apply_noop(f.sm, 6), 0);
	ck_assert_uint_eq(sm_applied_index(f.sm), 6);
	ck_assert_int_eq(sm_revision(f.sm), 1);
	/* an empty batch advances the index only */
	sm_batch_t empty = {0};
	ck_assert_int_eq(sm_apply(f.sm, &empty, 7, &res), 0);
	ck_assert_uint_eq(res.n_txn, 0);
	sm_apply_result_free(&res);
	sm_apply_result_free(&res); /* twice is harmless */
	ck_assert_uint_eq(sm_applied_index(f.sm), 7);
	fx_close(&f);
}
END_TEST

START_TEST(test_events)
{
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("d/f", "1"));
	sm_op_t t = o_key(SM_OP_SETATTR, "d/f");
	t.attr_mask = SM_ATTR_MODE;
	t.mode = 0600;
	/* one txn with every kind of event, in op order */
	sm_op_t ops[] = {o_mkdir("e"),                      /* CREATE e */
	                 o_write("d/f", 0, "22"),           /* MODIFY d/f */
	                 t,                                 /* ATTRIB d/f */
	                 o_symlink("l", "d/f"),             /* CREATE l */
	                 o_rename("d/f", "e/f", 0),         /* RENAME d/f -> e/f */
	                 o_put("g", "g"),                   /* CREATE g */
	                 o_rename("g", "l", SM_F_EXCHANGE), /* EXCHANGE g <-> l */
	                 o_key(SM_OP_UNLINK, "l"),          /* DELETE l */
	                 o_key(SM_OP_RMDIR, "d")};          /* DELETE d */
	const sm_txn_result_t *r = fx_ops(&f, ops, 9);
	ck_assert_int_eq(r->err, 0);
	struct {
		sm_event_type_t type;
		const char *key, *key2;
		bool old, new_;
	} want[] = {{SM_EV_CREATE, "e", NULL, false, true},   {SM_EV_MODIFY, "d/f", NULL, true, true},
	            {SM_EV_ATTRIB, "d/f", NULL, true, true},  {SM_EV_CREATE, "l", NULL, false, true},
	            {SM_EV_RENAME, "d/f", "e/f", true, true}, {SM_EV_CREATE, "g", NULL, false, true},
	            {SM_EV_EXCHANGE, "g", "l", true, true},   {SM_EV_DELETE, "l", NULL, true, false},
	            {SM_EV_DELETE, "d", NULL, true, false}};
	ck_assert_uint_eq(f.res.n_events, 9);
	for (int i = 0; i < 9; i++) {
		sm_event_t *e = &f.res.events[i];
		ck_assert_msg(e->type == want[i].type, "event %d type %d", i, e->type);
		ck_assert_str_eq(e->key, want[i].key);
		ck_assert_uint_eq(e->key_len, strlen(want[i].key));
		if (want[i].key2)
			ck_assert_str_eq(e->key2, want[i].key2);
		else
			ck_assert_ptr_null(e->key2);
		ck_assert(e->has_old == want[i].old && e->has_new == want[i].new_);
		ck_assert_int_eq(e->revision, r->revision);
	}
	ck_assert(value_is(&f.res.events[1].old_rec, "1"));
	ck_assert(value_is(&f.res.events[1].new_rec, "22"));
	ck_assert_uint_eq(f.res.events[2].new_rec.mode, S_IFREG | 0600);
	ck_assert_int_eq(f.res.events[6].old_rec.kind, SM_KIND_FILE);    /* g before, at g */
	ck_assert_int_eq(f.res.events[6].new_rec.kind, SM_KIND_SYMLINK); /* l's record, now at g */
	ck_assert_int_eq(f.res.events[7].old_rec.kind, SM_KIND_FILE);    /* l now holds g's file */
	ck_assert_int_eq(get_ok(&f, "g").kind, SM_KIND_SYMLINK);
	fx_close(&f);
}
END_TEST

/* ------------------------------------------------------------------ snapshots, determinism */

typedef struct membuf {
	uint8_t *p;
	size_t len, cap, off;
} membuf_t;

static int mb_write(void *ctx, const void *buf, size_t len)
{
	membuf_t *m = ctx;
	if (m->len + len > m->cap) {
		size_t cap = m->cap ? m->cap : 4096;
		while (cap < m->len + len)
			cap *= 2;
		m->p = realloc(m->p, cap);
		ck_assert_ptr_nonnull(m->p);
		m->cap = cap;
	}
	memcpy(m->p + m->len, buf, len);
	m->len += len;
	return 0;
}

static int mb_read(void *ctx, void *buf, size_t len)
{
	membuf_t *m = ctx;
	if (m->len - m->off < len) return -EINVAL;
	memcpy(buf, m->p + m->off, len);
	m->off += len;
	return 0;
}

/* The two engines hold byte-identical content (keys, values, applied index). */
static void assert_engines_equal(engine_t *a, engine_t *b)
{
	ck_assert_uint_eq(engine_applied_index(a), engine_applied_index(b));
	ck_assert_uint_eq(engine_key_count(a), engine_key_count(b));
	ck_assert_uint_eq(engine_data_bytes(a), engine_data_bytes(b));
	engine_iter_t *ia = engine_iter_new(a), *ib = engine_iter_new(b);
	engine_iter_seek_first(ia);
	engine_iter_seek_first(ib);
	uint64_t n = 0;
	for (; engine_iter_valid(ia); engine_iter_next(ia), engine_iter_next(ib), n++) {
		ck_assert(engine_iter_valid(ib));
		size_t kla, klb, vla, vlb;
		const void *ka = engine_iter_key(ia, &kla), *kb = engine_iter_key(ib, &klb);
		ck_assert_msg(kla == klb && memcmp(ka, kb, kla) == 0, "key %" PRIu64 " differs", n);
		const void *va = engine_iter_value(ia, &vla), *vb = engine_iter_value(ib, &vlb);
		ck_assert_msg(vla == vlb && memcmp(va, vb, vla) == 0, "value of key %" PRIu64 " differs", n);
	}
	ck_assert(!engine_iter_valid(ib));
	ck_assert_uint_eq(n, engine_key_count(a));
	engine_iter_free(ia);
	engine_iter_free(ib);
}

/* A deterministic pseudo-random workload over a small namespace. */
static uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void random_batches(fx_t *const *fs, int n_fx, int n_batches, uint64_t seed)
{
	static const char *paths[] = {"a",     "b",    "a/b", "a/b-c", "a/b/x",
	                              "a/b.d", "a/b0", "b/a", "b/a/c", "c"};
	static const char *vals[] = {"", "v", "value", "0123456789"};
	const int np = sizeof paths / sizeof paths[0];
	uint64_t seq = 0;
	for (int bi = 0; bi < n_batches; bi++) {
		sm_op_t ops[8][3];
		sm_compare_t cmps[8];
		sm_txn_t txns[8];
		uint32_t nt = 1 + xs(&seed) % 8;
		for (uint32_t ti = 0; ti < nt; ti++) {
			uint32_t nops = 1 + xs(&seed) % 3;
			for (uint32_t oi = 0; oi < nops; oi++) {
				const char *k = paths[xs(&seed) % np], *k2 = paths[xs(&seed) % np];
				const char *v = vals[xs(&seed) % 4];
				sm_op_t *o = &ops[ti][oi];
				switch (xs(&seed) % 10) {
				case 0:
					*o = o_put(k, v);
					break;
				case 1:
					*o = o_range(SM_OP_DEL, k, NULL, xs(&seed) % 2 ? SM_F_PREFIX : 0);
					break;
				case 2:
					*o = o_create(k, (uint32_t)(xs(&seed) % 8) << 1, v);
					break;
				case 3:
					*o = o_write(k, xs(&seed) % 2 ? SM_F_CREATE : 0, v);
					break;
				case 4:
					*o = o_key(SM_OP_SETATTR, k);
					o->attr_mask = (uint32_t)(xs(&seed) % 32);
					o->size = xs(&seed) % 12;
					o->mode = 0600;
					o->mtime_ns = 99;
					break;
				case 5:
					*o = o_key(SM_OP_UNLINK, k);
					break;
				case 6:
					*o = o_mkdir(k);
					break;
				case 7:
					*o = o_key(SM_OP_RMDIR, k);
					break;
				case 8:
					*o = o_rename(k, k2, xs(&seed) % 3 == 0 ? SM_F_EXCHANGE : 0);
					break;
				default:
					*o = o_symlink(k, "t");
					break;
				}
			}
			cmps[ti] = (sm_compare_t){.target = SM_CMP_VERSION,
			                          .op = SM_CMP_LT,
			                          .key = paths[xs(&seed) % np],
			                          .number = (int64_t)(xs(&seed) % 4)};
			cmps[ti].key_len = strlen(cmps[ti].key);
			txns[ti] = (sm_txn_t){.origin_node = 1,
			                      .origin_seq = xs(&seed) % 8 ? ++seq : seq, /* some retries */
			                      .time_ns = bi * 100 + ti,
			                      .n_compare = xs(&seed) % 2,
			                      .compares = &cmps[ti],
			                      .n_success = nops,
			                      .success = ops[ti],
			                      .n_failure = 1,
			                      .failure = ops[ti]};
		}
		for (int i = 0; i < n_fx; i++)
			fx_batch(fs[i], txns, nt);
		if (n_fx == 2) {
			ck_assert_int_eq(sm_revision(fs[0]->sm), sm_revision(fs[1]->sm));
			ck_assert_uint_eq(fs[0]->res.n_events, fs[1]->res.n_events);
			for (uint32_t ti = 0; ti < nt; ti++) {
				ck_assert_int_eq(fs[0]->res.txns[ti].err, fs[1]->res.txns[ti].err);
				ck_assert_int_eq(fs[0]->res.txns[ti].revision, fs[1]->res.txns[ti].revision);
			}
		}
	}
}

START_TEST(test_determinism_across_backends)
{
	fx_t mem, rocks;
	fx_open_kind(&mem, "memory");
	fx_open_kind(&rocks, "rocksdb");
	assert_engines_equal(mem.e, rocks.e);
	fx_t *both[] = {&mem, &rocks};
	random_batches(both, 2, 400, 0x5eed);
	ck_assert_int_gt(sm_revision(mem.sm), 100);
	assert_engines_equal(mem.e, rocks.e);
	fx_close(&mem);
	fx_close(&rocks);
}
END_TEST

START_TEST(test_snapshot_restore)
{
	fx_t f, g;
	fx_open(&f);
	fx_t *one[] = {&f};
	random_batches(one, 1, 200, 42);
	OK_OP(&f, o_put("snap/key", "value"));
	membuf_t mb = {0};
	ck_assert_int_eq(sm_snapshot_write(f.sm, mb_write, &mb), 0);
	/* restore into an empty engine (of the same kind) */
	fx_open(&g);
	ck_assert_int_eq(sm_snapshot_read(g.sm, mb_read, &mb), 0);
	assert_engines_equal(f.e, g.e);
	ck_assert_int_eq(sm_revision(g.sm), sm_revision(f.sm));
	ck_assert_uint_eq(sm_key_count(g.sm), sm_key_count(f.sm));
	ck_assert_uint_eq(sm_applied_index(g.sm), sm_applied_index(f.sm));
	sm_record_t sk = get_ok(&g, "snap/key");
	ck_assert(value_is(&sk, "value"));
	/* a snapshot restores into the other backend too */
	fx_t h;
	fx_open_kind(&h, strcmp(test_kind(), "memory") == 0 ? "rocksdb" : "memory");
	mb.off = 0;
	ck_assert_int_eq(sm_snapshot_read(h.sm, mb_read, &mb), 0);
	assert_engines_equal(f.e, h.e);
	ck_assert_int_eq(sm_revision(h.sm), sm_revision(f.sm));
	fx_close(&h);
	/* both continue identically: same inode, same revision */
	g.index = f.index;
	g.time_ns = f.time_ns;
	OK_OP(&f, o_put("after", "x"));
	OK_OP(&g, o_put("after", "x"));
	ck_assert_uint_eq(get_ok(&f, "after").ino, get_ok(&g, "after").ino);
	assert_engines_equal(f.e, g.e);
	/* a damaged stream is refused and changes nothing */
	mb.off = 0;
	mb.p[mb.len / 2] ^= 0x40;
	int64_t rev = sm_revision(g.sm);
	ck_assert_int_eq(sm_snapshot_read(g.sm, mb_read, &mb), -EINVAL);
	ck_assert_int_eq(sm_revision(g.sm), rev);
	assert_engines_equal(f.e, g.e);
	/* a snapshot of a foreign engine is not a state machine */
	char root[PATH_BYTES];
	engine_t *e = engine_new("memory", root);
	ck_assert_int_eq(engine_put(e, "x", 1, "y", 1), 0);
	membuf_t foreign = {0};
	ck_assert_int_eq(engine_snapshot_write(e, mb_write, &foreign), 0);
	ck_assert_int_eq(sm_snapshot_read(g.sm, mb_read, &foreign), -EINVAL);
	engine_done(e, root);
	free(foreign.p);
	free(mb.p);
	fx_close(&f);
	fx_close(&g);
}
END_TEST

static int failing_write(void *ctx, const void *buf, size_t len)
{
	(void)ctx;
	(void)buf;
	(void)len;
	return -ENOSPC;
}

START_TEST(test_snapshot_write_error)
{
	fx_t f;
	fx_open(&f);
	ck_assert_int_eq(sm_snapshot_write(f.sm, failing_write, NULL), -ENOSPC);
	fx_close(&f);
}
END_TEST

START_TEST(test_reopen)
{
	/* rocksdb keeps the state machine across close/open; memory starts empty again */
	if (strcmp(test_kind(), "rocksdb") != 0) return;
	fx_t f;
	fx_open(&f);
	OK_OP(&f, o_put("a/b", "1"));
	OK_OP(&f, o_put("a/c", "2"));
	int64_t rev = sm_revision(f.sm);
	sm_close(f.sm);
	engine_close(f.e);
	char dir[PATH_BYTES + 16];
	snprintf(dir, sizeof dir, "%s/data", f.root);
	engine_options_t o = {.kind = "rocksdb", .dir = dir};
	char err[256];
	ck_assert_int_eq(engine_open(&o, &f.e, err, sizeof err), 0);
	ck_assert_int_eq(sm_open(f.e, NULL, &f.sm), 0);
	ck_assert_int_eq(sm_revision(f.sm), rev);
	ck_assert_uint_eq(sm_key_count(f.sm), 4);
	ck_assert_uint_eq(sm_applied_index(f.sm), f.index);
	OK_OP(&f, o_put("a/d", "3"));
	ck_assert_uint_eq(get_ok(&f, "a/d").ino, 5);
	fx_close(&f);
}
END_TEST

static Suite *sm_suite(void)
{
	Suite *s = suite_create("sm");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_record_codec);
	tcase_add_test(tc, test_key_check);
	tcase_add_test(tc, test_open_root);
	tcase_add_test(tc, test_root_deterministic);
	tcase_add_test(tc, test_put_creates_parents);
	tcase_add_test(tc, test_put_errors);
	tcase_add_test(tc, test_value_limit_default);
	tcase_add_test(tc, test_get);
	tcase_add_test(tc, test_del);
	tcase_add_test(tc, test_create);
	tcase_add_test(tc, test_proposer_ino);
	tcase_add_test(tc, test_write);
	tcase_add_test(tc, test_setattr);
	tcase_add_test(tc, test_unlink);
	tcase_add_test(tc, test_mkdir_rmdir);
	tcase_add_test(tc, test_symlink);
	tcase_add_test(tc, test_rename_file);
	tcase_add_test(tc, test_rename_subtree);
	tcase_add_test(tc, test_rename_exchange);
	tcase_add_test(tc, test_rename_too_long);
	tcase_add_test(tc, test_list);
	tcase_add_test(tc, test_get_errors);
	tcase_add_test(tc, test_compare_matrix);
	tcase_add_test(tc, test_txn_branches);
	tcase_add_test(tc, test_revisions);
	tcase_add_test(tc, test_duplicates);
	tcase_add_test(tc, test_apply_index);
	tcase_add_test(tc, test_events);
	tcase_add_test(tc, test_determinism_across_backends);
	tcase_add_test(tc, test_snapshot_restore);
	tcase_add_test(tc, test_snapshot_write_error);
	tcase_add_test(tc, test_reopen);
	suite_add_tcase(s, tc);
	return s;
}

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "memory";
	if (strcmp(kind, "memory") != 0 && strcmp(kind, "rocksdb") != 0) {
		fprintf(stderr, "usage: %s memory|rocksdb\n", argv[0]);
		return 2;
	}
	setenv("SM_TEST_KIND", kind, 1);
	SRunner *sr = srunner_create(sm_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
