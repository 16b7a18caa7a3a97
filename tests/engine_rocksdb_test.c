/* engine_rocksdb_test.c - tests of the RocksDB backend's own promises (engine/rocksdb.c).
 *
 * The shared key/value behaviour of both backends lives in engine_kv_test.c. This suite covers
 * what only a disk backend has: data, counters and applied index surviving close and reopen,
 * restore through a snapshot stream surviving reopen, a failed restore leaving the old content,
 * the directory layout recovering from a crash in the middle of the restore swap, the internal
 * meta record staying invisible, and every errno engine_open() can return for a rocksdb dir.
 * Each test works in its own mkdtemp() directory.
 *
 * Fault injection: the binary links with -Wl,--wrap=renameat,--wrap=fsync,--wrap=realloc, so
 * those calls made by engine/rocksdb.c (a static library linked in here) come through the
 * __wrap_ functions below and can be made to fail; librocksdb's own calls are not affected.
 * The knobs are the file's only mutable globals, armed around a single engine call.
 */
#include "engine.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>

#define PATH_BYTES 512
/* snprintf into a PATH_BYTES buffer, failing the test on truncation */
#define PATHF(buf, ...) ck_assert_int_lt(snprintf(buf, PATH_BYTES, __VA_ARGS__), PATH_BYTES)

typedef struct fixture {
	char root[PATH_BYTES]; /* mkdtemp dir, removed at the end */
	char dir[PATH_BYTES];  /* root/data: the engine's data dir */
} fixture_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void fx_init(fixture_t *fx)
{
	snprintf(fx->root, sizeof fx->root, "/tmp/ms-rocks-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(fx->root));
	PATHF(fx->dir, "%s/data", fx->root);
}

static void fx_done(fixture_t *fx) { nftw(fx->root, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static engine_options_t rocks_opts(const char *dir)
{
	engine_options_t o = {.kind = "rocksdb", .dir = dir};
	return o;
}

static engine_t *open_ok(const char *dir)
{
	engine_options_t o = rocks_opts(dir);
	engine_t *e = NULL;
	char err[256] = "";
	int rc = engine_open(&o, &e, err, sizeof err);
	ck_assert_msg(rc == 0, "engine_open(%s): %d %s", dir, rc, err);
	ck_assert_str_eq(engine_kind(e), "rocksdb");
	return e;
}

static bool path_exists(const char *dir, const char *name)
{
	char p[PATH_BYTES];
	struct stat st;
	PATHF(p, "%s/%s", dir, name);
	return stat(p, &st) == 0;
}

static unsigned count_sst_files(const char *dir)
{
	char p[PATH_BYTES];
	PATHF(p, "%s/db", dir);
	DIR *d = opendir(p);
	ck_assert_ptr_nonnull(d);
	unsigned n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		size_t l = strlen(de->d_name);
		n += l > 4 && strcmp(de->d_name + l - 4, ".sst") == 0;
	}
	closedir(d);
	return n;
}

static void put_str(engine_t *e, const char *k, const char *v)
{
	ck_assert_int_eq(engine_put(e, k, strlen(k), v, strlen(v)), 0);
}

static void expect_val(engine_t *e, const char *k, const char *v)
{
	const void *got;
	size_t len;
	int rc = engine_get(e, k, strlen(k), &got, &len);
	ck_assert_msg(rc == 0, "get %s: %d", k, rc);
	ck_assert_uint_eq(len, strlen(v));
	ck_assert(memcmp(got, v, len) == 0);
}

static void expect_absent(engine_t *e, const void *k, size_t klen)
{
	const void *got;
	size_t len;
	ck_assert_int_eq(engine_get(e, k, klen, &got, &len), -ENOENT);
}

/* ------------------------------------------------------------------ fault injection */

typedef struct fault {
	long countdown; /* -1: disarmed; else calls to let through before failing */
	int fails_left; /* consecutive calls to fail once the countdown hits 0 */
} fault_t;

static fault_t fault_renameat = {-1, 0}, fault_fsync = {-1, 0}, fault_realloc = {-1, 0};

static void fault_arm(fault_t *f, long nth, int fails)
{
	f->countdown = nth;
	f->fails_left = fails;
}

static bool fault_hit(fault_t *f)
{
	if (f->countdown < 0) return false;
	if (f->countdown > 0) {
		f->countdown--;
		return false;
	}
	if (--f->fails_left <= 0) f->countdown = -1;
	return true;
}

int __real_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __real_fsync(int fd);
void *__real_realloc(void *p, size_t n);
int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath);
int __wrap_fsync(int fd);
void *__wrap_realloc(void *p, size_t n);

int __wrap_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath)
{
	if (fault_hit(&fault_renameat)) {
		errno = EIO;
		return -1;
	}
	return __real_renameat(olddirfd, oldpath, newdirfd, newpath);
}

int __wrap_fsync(int fd)
{
	if (fault_hit(&fault_fsync)) {
		errno = EIO;
		return -1;
	}
	return __real_fsync(fd);
}

void *__wrap_realloc(void *p, size_t n) { return fault_hit(&fault_realloc) ? NULL : __real_realloc(p, n); }

/* ------------------------------------------------------------------ a model to compare with */

#define MODEL_KEYS 400

typedef struct model {
	bool present[MODEL_KEYS];
	uint32_t seed[MODEL_KEYS]; /* value content derives from it */
	uint32_t len[MODEL_KEYS];
} model_t;

static size_t model_key(unsigned i, char *buf) { return (size_t)sprintf(buf, "key/%05u", i); }

static void model_val(uint32_t seed, uint32_t len, uint8_t *out)
{
	for (uint32_t j = 0; j < len; j++)
		out[j] = (uint8_t)(seed * 31u + j * 7u);
}

static uint64_t model_count(const model_t *m)
{
	uint64_t n = 0;
	for (unsigned i = 0; i < MODEL_KEYS; i++)
		n += m->present[i];
	return n;
}

static uint64_t model_bytes(const model_t *m)
{
	uint64_t n = 0;
	char k[32];
	for (unsigned i = 0; i < MODEL_KEYS; i++)
		if (m->present[i]) n += model_key(i, k) + m->len[i];
	return n;
}

/* Iterates the whole engine and checks it holds exactly the model. */
static void model_check(engine_t *e, const model_t *m)
{
	engine_iter_t *it = engine_iter_new(e);
	ck_assert_ptr_nonnull(it);
	engine_iter_seek_first(it);
	uint8_t want[1024];
	char k[32];
	for (unsigned i = 0; i < MODEL_KEYS; i++) {
		if (!m->present[i]) continue;
		ck_assert_msg(engine_iter_valid(it), "iteration ended before key %u", i);
		size_t kl, vl;
		const void *ik = engine_iter_key(it, &kl);
		const void *iv = engine_iter_value(it, &vl);
		size_t mkl = model_key(i, k);
		ck_assert_uint_eq(kl, mkl);
		ck_assert(memcmp(ik, k, kl) == 0);
		ck_assert_uint_eq(vl, m->len[i]);
		model_val(m->seed[i], m->len[i], want);
		ck_assert(memcmp(iv, want, vl) == 0);
		engine_iter_next(it);
	}
	ck_assert(!engine_iter_valid(it));
	engine_iter_free(it);
	ck_assert_uint_eq(engine_key_count(e), model_count(m));
	ck_assert_uint_eq(engine_data_bytes(e), model_bytes(m));
}

/* One random batch of n ops on both the engine and the model; keys repeat within a batch. */
static void model_batch(engine_t *e, model_t *m, engine_batch_t *b, unsigned *rnd, unsigned n, uint64_t index)
{
	uint8_t val[1024];
	char k[32];
	engine_batch_clear(b);
	for (unsigned j = 0; j < n; j++) {
		unsigned i = (unsigned)rand_r(rnd) % MODEL_KEYS;
		size_t kl = model_key(i, k);
		if (rand_r(rnd) % 4 == 0) {
			ck_assert_int_eq(engine_batch_delete(b, k, kl), 0);
			m->present[i] = false;
		} else {
			uint32_t seed = (uint32_t)rand_r(rnd), len = (uint32_t)rand_r(rnd) % 300;
			model_val(seed, len, val);
			ck_assert_int_eq(engine_batch_put(b, k, kl, val, len), 0);
			m->present[i] = true;
			m->seed[i] = seed;
			m->len[i] = len;
		}
	}
	ck_assert_int_eq(engine_batch_commit(e, b, index), 0);
}

/* ------------------------------------------------------------------ snapshot buffers */

typedef struct membuf {
	uint8_t *data;
	size_t len, cap, pos;
} membuf_t;

static int mb_write(void *ctx, const void *buf, size_t len)
{
	membuf_t *mb = ctx;
	if (mb->len + len > mb->cap) {
		size_t cap = mb->cap ? mb->cap : 4096;
		while (cap < mb->len + len)
			cap *= 2;
		mb->data = realloc(mb->data, cap);
		ck_assert_ptr_nonnull(mb->data);
		mb->cap = cap;
	}
	memcpy(mb->data + mb->len, buf, len);
	mb->len += len;
	return 0;
}

static int mb_read(void *ctx, void *buf, size_t len)
{
	membuf_t *mb = ctx;
	if (mb->len - mb->pos < len) return -EINVAL;
	memcpy(buf, mb->data + mb->pos, len);
	mb->pos += len;
	return 0;
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_reopen_keeps_data)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir); /* creates fx.dir */
	ck_assert_uint_eq(engine_applied_index(e), 0);
	ck_assert_uint_eq(engine_key_count(e), 0);
	engine_batch_t *b = engine_batch_new();
	ck_assert_int_eq(engine_batch_put(b, "a", 1, "one", 3), 0);
	ck_assert_int_eq(engine_batch_put(b, "b/c", 3, "three", 5), 0);
	ck_assert_int_eq(engine_batch_put(b, "", 0, "root", 4), 0); /* the empty key is a key */
	ck_assert_int_eq(engine_batch_put(b, "empty", 5, "", 0), 0);
	ck_assert_int_eq(engine_batch_commit(e, b, 7), 0);
	engine_batch_free(b);
	ck_assert_int_eq(engine_delete(e, "nope", 4), 0); /* absent: 0, nothing changes */
	ck_assert_uint_eq(engine_applied_index(e), 7);
	ck_assert_uint_eq(engine_key_count(e), 4);
	ck_assert_uint_eq(engine_data_bytes(e), 1 + 3 + 3 + 5 + 0 + 4 + 5 + 0);
	engine_close(e);

	e = open_ok(fx.dir);
	ck_assert_uint_eq(engine_applied_index(e), 7);
	ck_assert_uint_eq(engine_key_count(e), 4);
	ck_assert_uint_eq(engine_data_bytes(e), 21);
	expect_val(e, "a", "one");
	expect_val(e, "b/c", "three");
	expect_val(e, "", "root");
	expect_val(e, "empty", "");
	expect_absent(e, "nope", 4);
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_batch_counters_exact)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	put_str(e, "k", "12345");
	engine_batch_t *b = engine_batch_new();
	/* k exists (5 B); within one batch: overwrite, delete, delete again, put; x: put, delete. */
	ck_assert_int_eq(engine_batch_put(b, "k", 1, "1234567", 7), 0);
	ck_assert_int_eq(engine_batch_delete(b, "k", 1), 0);
	ck_assert_int_eq(engine_batch_delete(b, "k", 1), 0);
	ck_assert_int_eq(engine_batch_put(b, "x", 1, "xx", 2), 0);
	ck_assert_int_eq(engine_batch_put(b, "k", 1, "12", 2), 0);
	ck_assert_int_eq(engine_batch_delete(b, "x", 1), 0);
	ck_assert_int_eq(engine_batch_commit(e, b, 3), 0);
	ck_assert_uint_eq(engine_key_count(e), 1);
	ck_assert_uint_eq(engine_data_bytes(e), 1 + 2);
	expect_val(e, "k", "12");
	expect_absent(e, "x", 1);
	/* A batch only of deletes of absent keys still moves the applied index. */
	engine_batch_clear(b);
	ck_assert_int_eq(engine_batch_delete(b, "zz", 2), 0);
	ck_assert_int_eq(engine_batch_commit(e, b, 4), 0);
	ck_assert_uint_eq(engine_applied_index(e), 4);
	ck_assert_uint_eq(engine_key_count(e), 1);
	engine_batch_clear(b); /* an empty batch too */
	ck_assert_int_eq(engine_batch_commit(e, b, 5), 0);
	ck_assert_uint_eq(engine_applied_index(e), 5);
	/* Single-key writes keep the applied index. */
	put_str(e, "y", "yy");
	ck_assert_uint_eq(engine_applied_index(e), 5);
	engine_batch_free(b);
	engine_close(e);
	e = open_ok(fx.dir);
	ck_assert_uint_eq(engine_applied_index(e), 5);
	ck_assert_uint_eq(engine_key_count(e), 2);
	ck_assert_uint_eq(engine_data_bytes(e), 3 + 3);
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_many_batches_reopen)
{
	fixture_t fx = {0};
	fx_init(&fx);
	/* A 256 KiB memtable: the data flushes to several SST files, so the existence lookups
	 * behind the counters are exercised against SSTs, not only the memtable. */
	engine_options_t o = rocks_opts(fx.dir);
	o.write_buffer_bytes = 256 * 1024;
	o.block_cache_bytes = 1024 * 1024;
	engine_t *e = NULL;
	char err[256];
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), 0);
	static model_t m;
	memset(&m, 0, sizeof m);
	engine_batch_t *b = engine_batch_new();
	unsigned rnd = 12345;
	for (uint64_t idx = 1; idx <= 300; idx++) {
		model_batch(e, &m, b, &rnd, 1 + (unsigned)(idx % 60), idx);
		ck_assert_uint_eq(engine_key_count(e), model_count(&m));
		ck_assert_uint_eq(engine_data_bytes(e), model_bytes(&m));
	}
	model_check(e, &m);
	ck_assert_uint_gt(count_sst_files(fx.dir), 0); /* the premise above */
	engine_close(e);

	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), 0);
	ck_assert_uint_eq(engine_applied_index(e), 300);
	model_check(e, &m);
	for (uint64_t idx = 301; idx <= 400; idx++)
		model_batch(e, &m, b, &rnd, 50, idx);
	engine_close(e);
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), 0);
	ck_assert_uint_eq(engine_applied_index(e), 400);
	model_check(e, &m);
	engine_batch_free(b);
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_options_sync_writes)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_options_t o = rocks_opts(fx.dir);
	o.sync_writes = true;
	engine_t *e = NULL;
	char err[256];
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), 0);
	put_str(e, "durable", "yes");
	engine_close(e);
	e = open_ok(fx.dir);
	expect_val(e, "durable", "yes");
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_meta_key_invisible)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	engine_batch_t *b = engine_batch_new();
	/* User keys that look like the internal record or its prefixes. */
	static const char k_meta0[] = {0x00, 'm', 'e', 't', 'a'};
	static const char k_one[] = {0x01};
	static const char k_ff[] = {(char)0xff, (char)0xff};
	ck_assert_int_eq(engine_batch_put(b, "meta", 4, "u1", 2), 0);
	ck_assert_int_eq(engine_batch_put(b, k_meta0, sizeof k_meta0, "u2", 2), 0);
	ck_assert_int_eq(engine_batch_put(b, k_one, sizeof k_one, "u3", 2), 0);
	ck_assert_int_eq(engine_batch_put(b, k_ff, sizeof k_ff, "u4", 2), 0);
	ck_assert_int_eq(engine_batch_commit(e, b, 42), 0);
	engine_batch_free(b);

	for (int round = 0; round < 2; round++) {
		ck_assert_uint_eq(engine_applied_index(e), 42); /* not clobbered by the k_meta0 key */
		ck_assert_uint_eq(engine_key_count(e), 4);
		const void *v;
		size_t vl;
		ck_assert_int_eq(engine_get(e, k_meta0, sizeof k_meta0, &v, &vl), 0);
		ck_assert_uint_eq(vl, 2);
		ck_assert(memcmp(v, "u2", 2) == 0);
		static const char k_00[] = {0x00};
		expect_absent(e, k_00, 1);
		expect_absent(e, "", 0);
		/* Iteration shows exactly the four user keys, in memcmp order. */
		const char *want[] = {k_meta0, k_one, "meta", k_ff};
		size_t want_len[] = {sizeof k_meta0, 1, 4, 2};
		engine_iter_t *it = engine_iter_new(e);
		ck_assert_ptr_nonnull(it);
		size_t n = 0;
		for (engine_iter_seek_first(it); engine_iter_valid(it); engine_iter_next(it), n++) {
			ck_assert_uint_lt(n, 4);
			size_t kl;
			const void *k = engine_iter_key(it, &kl);
			ck_assert_uint_eq(kl, want_len[n]);
			ck_assert(memcmp(k, want[n], kl) == 0);
		}
		ck_assert_uint_eq(n, 4);
		engine_iter_seek(it, "", 0); /* the smallest seek still starts at user keys */
		ck_assert(engine_iter_valid(it));
		size_t kl;
		const void *k = engine_iter_key(it, &kl);
		ck_assert_uint_eq(kl, sizeof k_meta0);
		ck_assert(memcmp(k, k_meta0, kl) == 0);
		engine_iter_seek(it, k_ff, sizeof k_ff);
		ck_assert(engine_iter_valid(it));
		engine_iter_next(it);
		ck_assert(!engine_iter_valid(it));
		engine_iter_free(it);
		engine_close(e);
		e = open_ok(fx.dir);
	}
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_get_values_stay_valid)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	char k[16], v[16];
	for (int i = 0; i < 8; i++) {
		snprintf(k, sizeof k, "k%d", i);
		snprintf(v, sizeof v, "value-%d", i);
		put_str(e, k, v);
	}
	const void *vals[8];
	size_t lens[8];
	for (int i = 0; i < 8; i++) {
		snprintf(k, sizeof k, "k%d", i);
		ck_assert_int_eq(engine_get(e, k, strlen(k), &vals[i], &lens[i]), 0);
	}
	for (int i = 0; i < 8; i++) { /* every earlier result is still readable */
		snprintf(v, sizeof v, "value-%d", i);
		ck_assert_uint_eq(lens[i], strlen(v));
		ck_assert(memcmp(vals[i], v, lens[i]) == 0);
	}
	/* A write may take a value straight from get(). */
	ck_assert_int_eq(engine_put(e, "copy", 4, vals[3], lens[3]), 0);
	expect_val(e, "copy", "value-3");
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_iter_after_write_needs_seek)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	put_str(e, "b", "2");
	engine_iter_t *it = engine_iter_new(e);
	engine_iter_seek_first(it);
	ck_assert(engine_iter_valid(it));
	put_str(e, "a", "1");
	ck_assert(!engine_iter_valid(it)); /* invalidated by the write */
	engine_iter_seek_first(it);
	ck_assert(engine_iter_valid(it));
	size_t kl;
	const char *k = engine_iter_key(it, &kl);
	ck_assert_uint_eq(kl, 1);
	ck_assert_int_eq(k[0], 'a'); /* the new key is seen after the seek */
	engine_iter_free(it);
	engine_close(e);
	fx_done(&fx);
}
END_TEST

/* Engine with keys src/0..n-1 and applied index 99, snapshotted into mb. */
static void make_snapshot(const char *dir, membuf_t *mb, unsigned n)
{
	engine_t *src = open_ok(dir);
	engine_batch_t *b = engine_batch_new();
	char k[32], v[64];
	for (unsigned i = 0; i < n; i++) {
		snprintf(k, sizeof k, "src/%04u", i);
		snprintf(v, sizeof v, "value of %u", i);
		ck_assert_int_eq(engine_batch_put(b, k, strlen(k), v, strlen(v)), 0);
	}
	ck_assert_int_eq(engine_batch_commit(src, b, 99), 0);
	engine_batch_free(b);
	memset(mb, 0, sizeof *mb);
	ck_assert_int_eq(engine_snapshot_write(src, mb_write, mb), 0);
	engine_close(src);
}

static void expect_snapshot_content(engine_t *e, unsigned n)
{
	ck_assert_uint_eq(engine_applied_index(e), 99);
	ck_assert_uint_eq(engine_key_count(e), n);
	uint64_t bytes = 0;
	char k[32], v[64];
	for (unsigned i = 0; i < n; i++) {
		snprintf(k, sizeof k, "src/%04u", i);
		snprintf(v, sizeof v, "value of %u", i);
		expect_val(e, k, v);
		bytes += strlen(k) + strlen(v);
	}
	ck_assert_uint_eq(engine_data_bytes(e), bytes);
	expect_absent(e, "old/1", 5);
}

/* Target engine with keys old/1, old/2 and applied index 5. */
static engine_t *make_target(const char *dir)
{
	engine_t *e = open_ok(dir);
	engine_batch_t *b = engine_batch_new();
	ck_assert_int_eq(engine_batch_put(b, "old/1", 5, "a", 1), 0);
	ck_assert_int_eq(engine_batch_put(b, "old/2", 5, "bb", 2), 0);
	ck_assert_int_eq(engine_batch_commit(e, b, 5), 0);
	engine_batch_free(b);
	return e;
}

static void expect_target_content(engine_t *e)
{
	ck_assert_uint_eq(engine_applied_index(e), 5);
	ck_assert_uint_eq(engine_key_count(e), 2);
	ck_assert_uint_eq(engine_data_bytes(e), 5 + 1 + 5 + 2);
	expect_val(e, "old/1", "a");
	expect_val(e, "old/2", "bb");
	expect_absent(e, "src/0000", 8);
}

START_TEST(test_restore_survives_reopen)
{
	fixture_t fx = {0};
	fx_init(&fx);
	char src_dir[PATH_BYTES];
	PATHF(src_dir, "%s/src", fx.root);
	membuf_t mb;
	make_snapshot(src_dir, &mb, 3000);
	engine_t *e = make_target(fx.dir);
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), 0);
	expect_snapshot_content(e, 3000);
	put_str(e, "after", "restore"); /* the restored engine takes writes */
	engine_close(e);
	ck_assert(!path_exists(fx.dir, "restore.tmp"));
	ck_assert(!path_exists(fx.dir, "db.old"));

	e = open_ok(fx.dir);
	expect_val(e, "after", "restore");
	ck_assert_int_eq(engine_delete(e, "after", 5), 0);
	expect_snapshot_content(e, 3000);
	/* A snapshot of the restored engine is the same stream as the original. */
	membuf_t again = {0};
	ck_assert_int_eq(engine_snapshot_write(e, mb_write, &again), 0);
	ck_assert_uint_eq(again.len, mb.len);
	ck_assert(memcmp(again.data, mb.data, mb.len) == 0);
	engine_close(e);
	free(again.data);
	free(mb.data);
	fx_done(&fx);
}
END_TEST

START_TEST(test_restore_empty_snapshot)
{
	fixture_t fx = {0};
	fx_init(&fx);
	char src_dir[PATH_BYTES];
	PATHF(src_dir, "%s/src", fx.root);
	membuf_t mb;
	make_snapshot(src_dir, &mb, 0);
	engine_t *e = make_target(fx.dir);
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), 0);
	ck_assert_uint_eq(engine_key_count(e), 0);
	ck_assert_uint_eq(engine_data_bytes(e), 0);
	ck_assert_uint_eq(engine_applied_index(e), 99);
	engine_close(e);
	e = open_ok(fx.dir);
	ck_assert_uint_eq(engine_key_count(e), 0);
	ck_assert_uint_eq(engine_applied_index(e), 99);
	expect_absent(e, "old/1", 5);
	engine_close(e);
	free(mb.data);
	fx_done(&fx);
}
END_TEST

START_TEST(test_restore_corrupt_keeps_old)
{
	fixture_t fx = {0};
	fx_init(&fx);
	char src_dir[PATH_BYTES];
	PATHF(src_dir, "%s/src", fx.root);
	membuf_t mb;
	make_snapshot(src_dir, &mb, 500);
	engine_t *e = make_target(fx.dir);

	mb.data[mb.len / 2] ^= 0x40; /* a flipped bit in some record: checksum fails at the end */
	mb.pos = 0;
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), -EINVAL);
	expect_target_content(e);
	ck_assert(!path_exists(fx.dir, "restore.tmp"));
	mb.data[mb.len / 2] ^= 0x40;

	membuf_t cut = mb; /* truncated stream */
	cut.len = mb.len - 10;
	cut.pos = 0;
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &cut), -EINVAL);
	expect_target_content(e);
	put_str(e, "still", "writable");
	ck_assert_int_eq(engine_delete(e, "still", 5), 0);
	engine_close(e);

	e = open_ok(fx.dir);
	expect_target_content(e);
	mb.pos = 0; /* the intact stream still restores */
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), 0);
	expect_snapshot_content(e, 500);
	engine_close(e);
	free(mb.data);
	fx_done(&fx);
}
END_TEST

START_TEST(test_restore_with_live_iterator_busy)
{
	fixture_t fx = {0};
	fx_init(&fx);
	char src_dir[PATH_BYTES];
	PATHF(src_dir, "%s/src", fx.root);
	membuf_t mb;
	make_snapshot(src_dir, &mb, 10);
	engine_t *e = make_target(fx.dir);
	engine_iter_t *it = engine_iter_new(e);
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), -EBUSY);
	ck_assert_ptr_nonnull(strstr(engine_errmsg(e), "iterator"));
	engine_iter_free(it);
	expect_target_content(e);
	ck_assert(!path_exists(fx.dir, "restore.tmp"));
	mb.pos = 0;
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), 0);
	expect_snapshot_content(e, 10);
	engine_close(e);
	free(mb.data);
	fx_done(&fx);
}
END_TEST

/* Each rename or fsync of the swap fails in turn: the old content survives, in the open
 * engine and after a reopen, and the same stream restores afterwards. */
START_TEST(test_restore_swap_failures_keep_old)
{
	fixture_t fx = {0};
	fx_init(&fx);
	char src_dir[PATH_BYTES];
	PATHF(src_dir, "%s/src", fx.root);
	membuf_t mb;
	make_snapshot(src_dir, &mb, 200);
	engine_t *e = make_target(fx.dir);
	struct {
		fault_t *f;
		long nth;
	} cases[] = {
	    {&fault_renameat, 0}, /* db -> db.old */
	    {&fault_renameat, 1}, /* restore.tmp -> db (then db.old is renamed back) */
	    {&fault_fsync, 0},    /* fsync of DIR after the renames (then both are undone) */
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		mb.pos = 0;
		fault_arm(cases[i].f, cases[i].nth, 1);
		ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), -EIO);
		ck_assert_int_eq(cases[i].f->countdown, -1); /* the fault did fire */
		ck_assert_msg(strstr(engine_errmsg(e), fx.dir) != NULL, "errmsg: %s", engine_errmsg(e));
		expect_target_content(e);
		ck_assert(!path_exists(fx.dir, "restore.tmp"));
		ck_assert(!path_exists(fx.dir, "db.old"));
		engine_close(e);
		e = open_ok(fx.dir);
		expect_target_content(e);
	}
	mb.pos = 0;
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), 0);
	expect_snapshot_content(e, 200);
	engine_close(e);
	free(mb.data);
	fx_done(&fx);
}
END_TEST

/* The second rename and the rename back both fail: the engine has no database left to use
 * (every call is -EIO), and the next open recovers the old content from DIR/db.old. */
START_TEST(test_restore_swap_double_failure_recovers_at_open)
{
	fixture_t fx = {0};
	fx_init(&fx);
	char src_dir[PATH_BYTES];
	PATHF(src_dir, "%s/src", fx.root);
	membuf_t mb;
	make_snapshot(src_dir, &mb, 50);
	engine_t *e = make_target(fx.dir);
	fault_arm(&fault_renameat, 1, 2);
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), -EIO);
	ck_assert(!path_exists(fx.dir, "db"));
	ck_assert(path_exists(fx.dir, "db.old"));
	const void *v;
	size_t vl;
	ck_assert_int_eq(engine_get(e, "old/1", 5, &v, &vl), -EIO);
	ck_assert_ptr_nonnull(strstr(engine_errmsg(e), "closed"));
	ck_assert_int_eq(engine_put(e, "k", 1, "v", 1), -EIO);
	engine_batch_t *b = engine_batch_new();
	ck_assert_int_eq(engine_batch_commit(e, b, 9), -EIO);
	engine_batch_free(b);
	ck_assert_ptr_null(engine_iter_new(e));
	mb.pos = 0;
	ck_assert_int_eq(engine_snapshot_read(e, mb_read, &mb), -EIO);
	engine_close(e);

	e = open_ok(fx.dir);
	expect_target_content(e);
	ck_assert(!path_exists(fx.dir, "db.old"));
	engine_close(e);
	free(mb.data);
	fx_done(&fx);
}
END_TEST

/* Every allocation of a commit fails in turn: -ENOMEM and nothing changes; then it works. */
START_TEST(test_commit_enomem_changes_nothing)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = make_target(fx.dir);
	engine_batch_t *b = engine_batch_new();
	char k[32];
	for (int i = 0; i < 1000; i++) { /* bigger than any scratch the engine has grown yet */
		snprintf(k, sizeof k, "new/%04d", i);
		ck_assert_int_eq(engine_batch_put(b, k, strlen(k), "v", 1), 0);
	}
	ck_assert_int_eq(engine_batch_delete(b, "old/1", 5), 0);
	long nth = 0;
	for (;; nth++) {
		ck_assert_int_lt(nth, 64);
		fault_arm(&fault_realloc, nth, 1);
		int rc = engine_batch_commit(e, b, 6);
		bool fired = fault_realloc.countdown == -1;
		fault_arm(&fault_realloc, -1, 0);
		if (!fired) {
			ck_assert_int_eq(rc, 0);
			break;
		}
		ck_assert_int_eq(rc, -ENOMEM);
		expect_target_content(e);
	}
	ck_assert_int_gt(nth, 0); /* some allocation was actually made and failed */
	ck_assert_uint_eq(engine_applied_index(e), 6);
	ck_assert_uint_eq(engine_key_count(e), 1000 + 1);
	expect_absent(e, "old/1", 5);
	engine_batch_free(b);
	engine_close(e);
	fx_done(&fx);
}
END_TEST

/* The states a crash can leave in the middle of restore_commit's swap. */
START_TEST(test_crash_between_renames_recovers)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = make_target(fx.dir);
	engine_close(e);
	char a[PATH_BYTES], b[PATH_BYTES];
	/* 1. crashed after "db -> db.old", with a complete or partial restore.tmp */
	PATHF(a, "%s/db", fx.dir);
	PATHF(b, "%s/db.old", fx.dir);
	ck_assert_int_eq(rename(a, b), 0);
	PATHF(a, "%s/restore.tmp", fx.dir);
	ck_assert_int_eq(mkdir(a, 0755), 0);
	PATHF(a, "%s/restore.tmp/000001.sst", fx.dir);
	FILE *f = fopen(a, "w");
	ck_assert_ptr_nonnull(f);
	fputs("partial", f);
	fclose(f);
	e = open_ok(fx.dir);
	expect_target_content(e);
	engine_close(e);
	ck_assert(!path_exists(fx.dir, "restore.tmp"));
	ck_assert(!path_exists(fx.dir, "db.old"));

	/* 2. crashed after both renames, before db.old was removed */
	PATHF(a, "%s/db.old", fx.dir);
	ck_assert_int_eq(mkdir(a, 0755), 0);
	PATHF(a, "%s/db.old/CURRENT", fx.dir);
	f = fopen(a, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	e = open_ok(fx.dir);
	expect_target_content(e);
	engine_close(e);
	ck_assert(!path_exists(fx.dir, "db.old"));
	fx_done(&fx);
}
END_TEST

START_TEST(test_second_open_busy)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	put_str(e, "k", "v");
	engine_options_t o = rocks_opts(fx.dir);
	engine_t *e2 = NULL;
	char err[256] = "";
	ck_assert_int_eq(engine_open(&o, &e2, err, sizeof err), -EBUSY);
	ck_assert_ptr_null(e2);
	ck_assert_msg(strstr(err, "in use") && strstr(err, fx.dir), "message: %s", err);
	expect_val(e, "k", "v"); /* the first engine is unharmed */
	engine_close(e);
	e = open_ok(fx.dir); /* and the lock goes with the engine */
	expect_val(e, "k", "v");
	engine_close(e);
	fx_done(&fx);
}
END_TEST

START_TEST(test_open_errors)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = NULL;
	char err[256] = "";
	engine_options_t o = rocks_opts(NULL);
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "dir"));
	o.dir = "";
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -EINVAL);

	/* The data dir is a regular file. */
	char p[PATH_BYTES];
	PATHF(p, "%s/file", fx.root);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fclose(f);
	o.dir = p;
	err[0] = '\0';
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -ENOTDIR);
	ck_assert_msg(strstr(err, p) != NULL, "message: %s", err);
	ck_assert_ptr_null(e);

	/* Its parent does not exist (only the last component is created). */
	PATHF(p, "%s/no/such/dir", fx.root);
	err[0] = '\0';
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "mkdir"));
	ck_assert_int_eq(engine_open(&o, &e, NULL, 0), -ENOENT); /* errbuf is optional */
	fx_done(&fx);
}
END_TEST

START_TEST(test_open_corrupt_db)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	put_str(e, "k", "v");
	engine_close(e);
	char p[PATH_BYTES];
	PATHF(p, "%s/db/CURRENT", fx.dir);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	fputs("MANIFEST-999999\n", f); /* points at a manifest that does not exist */
	fclose(f);
	engine_options_t o = rocks_opts(fx.dir);
	char err[256] = "";
	e = NULL;
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -EIO);
	ck_assert_msg(strstr(err, "rocksdb open") != NULL, "message: %s", err);
	ck_assert_ptr_null(e);
	fx_done(&fx);
}
END_TEST

/* Writes raw records into DIR/db behind the engine's back. */
static void raw_put(const char *dir, const char *k, size_t kl, const char *v, size_t vl, bool del_meta)
{
	char p[PATH_BYTES];
	PATHF(p, "%s/db", dir);
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(o, 1);
	char *err = NULL;
	rocksdb_t *db = rocksdb_open(o, p, &err);
	ck_assert_msg(err == NULL, "raw open: %s", err);
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	if (del_meta) {
		static const char meta[] = {0x00, 'm', 'e', 't', 'a'};
		rocksdb_delete(db, wo, meta, sizeof meta, &err);
		ck_assert_ptr_null(err);
	}
	rocksdb_put(db, wo, k, kl, v, vl, &err);
	ck_assert_ptr_null(err);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
}

START_TEST(test_open_bad_meta)
{
	fixture_t fx = {0};
	fx_init(&fx);
	engine_t *e = open_ok(fx.dir);
	put_str(e, "k", "v");
	engine_close(e);
	static const char meta[] = {0x00, 'm', 'e', 't', 'a'};
	raw_put(fx.dir, meta, sizeof meta, "short", 5, false);
	engine_options_t o = rocks_opts(fx.dir);
	char err[256] = "";
	e = NULL;
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -EIO);
	ck_assert_msg(strstr(err, "bad meta") != NULL, "message: %s", err);

	/* User keys with no meta record at all: not a MetaStore database. */
	static const char ukey[] = {0x01, 'k'};
	raw_put(fx.dir, ukey, sizeof ukey, "v", 1, true);
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -EIO);
	ck_assert_msg(strstr(err, "no meta") != NULL, "message: %s", err);
	fx_done(&fx);
}
END_TEST

static Suite *rocksdb_suite(void)
{
	Suite *s = suite_create("engine_rocksdb");
	TCase *tc = tcase_create("rocksdb");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, test_reopen_keeps_data);
	tcase_add_test(tc, test_batch_counters_exact);
	tcase_add_test(tc, test_many_batches_reopen);
	tcase_add_test(tc, test_options_sync_writes);
	tcase_add_test(tc, test_meta_key_invisible);
	tcase_add_test(tc, test_get_values_stay_valid);
	tcase_add_test(tc, test_iter_after_write_needs_seek);
	tcase_add_test(tc, test_restore_survives_reopen);
	tcase_add_test(tc, test_restore_empty_snapshot);
	tcase_add_test(tc, test_restore_corrupt_keeps_old);
	tcase_add_test(tc, test_restore_with_live_iterator_busy);
	tcase_add_test(tc, test_restore_swap_failures_keep_old);
	tcase_add_test(tc, test_restore_swap_double_failure_recovers_at_open);
	tcase_add_test(tc, test_commit_enomem_changes_nothing);
	tcase_add_test(tc, test_crash_between_renames_recovers);
	tcase_add_test(tc, test_second_open_busy);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_open_corrupt_db);
	tcase_add_test(tc, test_open_bad_meta);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(rocksdb_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
