/* engine_kv_test.c - the key-value contract of engine.h, run against one backend.
 *
 * One suite for every backend: the kind comes from argv[1] or the ENGINE_KIND environment
 * variable ("memory" or "rocksdb"; default memory), so meson registers this program once per
 * backend. A rocksdb engine lives in a fresh mkdtemp() directory under /tmp that the test
 * removes afterwards. Cross-backend snapshot tests also open the other kind and skip (with a
 * note) when it cannot be opened yet.
 *
 * Besides the example-based tests there is a seeded randomized test: 100k random puts,
 * deletes and batches against a sorted-array reference model, comparing gets, seeks and full
 * iterations along the way. ENGINE_KV_SEED=<n> replays a run; the seed is printed at the start
 * and in every failure message.
 *
 * Memory-backend tests also inject allocation failures (the binary links with --wrap=malloc,
 * calloc and realloc; see "fault injection" below): every allocation of a put, a batch, a
 * restore and an open fails in turn and must leave the engine unchanged with -ENOMEM.
 *
 * The kind reaches the forked test cases through the environment (set once in main); the
 * fault-injection countdown is the file's only mutable global.
 */
#include "engine.h"

#include <check.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KV_DIR_TEMPLATE "/tmp/engine-kv-XXXXXX"
#define RANDOM_OPS 100000u
#define RANDOM_KEYSPACE 12000u
#define RANDOM_BATCH_OPS_MAX 24u
#define RANDOM_VALUE_BYTES_MAX 80u

static const char *kind_self(void)
{
	const char *k = getenv("ENGINE_KIND");
	return k && *k ? k : "memory";
}

static const char *kind_other(void) { return strcmp(kind_self(), "memory") == 0 ? "rocksdb" : "memory"; }

/* ------------------------------------------------------------------ engine fixture */

typedef struct kv {
	engine_t *e;
	char dir[sizeof KV_DIR_TEMPLATE];
	bool has_dir;
} kv_t;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* Opens an engine of the given kind; returns the engine_open() result. */
static int kv_try_open(kv_t *kv, const char *kind, char *err, size_t err_len)
{
	memset(kv, 0, sizeof *kv);
	engine_options_t o = {.kind = kind};
	if (strcmp(kind, "rocksdb") == 0) {
		strcpy(kv->dir, KV_DIR_TEMPLATE);
		ck_assert_msg(mkdtemp(kv->dir) != NULL, "mkdtemp: %s", strerror(errno));
		kv->has_dir = true;
		o.dir = kv->dir;
	}
	int rc = engine_open(&o, &kv->e, err, err_len);
	if (rc < 0 && kv->has_dir) {
		nftw(kv->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		kv->has_dir = false;
	}
	return rc;
}

static void kv_open(kv_t *kv, const char *kind)
{
	char err[256] = "";
	int rc = kv_try_open(kv, kind, err, sizeof err);
	ck_assert_msg(rc == 0, "engine_open(%s) = %d: %s", kind, rc, err);
}

static void kv_close(kv_t *kv)
{
	engine_close(kv->e);
	kv->e = NULL;
	if (kv->has_dir) nftw(kv->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	kv->has_dir = false;
}

/* ------------------------------------------------------------------ helpers */

static void put_s(engine_t *e, const char *k, const char *v)
{
	ck_assert_int_eq(engine_put(e, k, strlen(k), v, strlen(v)), 0);
}

static void expect_val(engine_t *e, const void *k, size_t kl, const void *v, size_t vl)
{
	const void *got;
	size_t got_len;
	int rc = engine_get(e, k, kl, &got, &got_len);
	ck_assert_msg(rc == 0, "get of a %zu-byte key: %d", kl, rc);
	ck_assert_uint_eq(got_len, vl);
	if (vl) ck_assert_mem_eq(got, v, vl);
}

static void expect_s(engine_t *e, const char *k, const char *v) { expect_val(e, k, strlen(k), v, strlen(v)); }

static void expect_absent(engine_t *e, const void *k, size_t kl)
{
	const void *got;
	size_t got_len;
	ck_assert_int_eq(engine_get(e, k, kl, &got, &got_len), -ENOENT);
}

static int kcmp(const void *a, size_t al, const void *b, size_t bl)
{
	size_t n = al < bl ? al : bl;
	int c = n ? memcmp(a, b, n) : 0;
	if (c) return c;
	return al < bl ? -1 : al > bl;
}

static void expect_iter_at(engine_iter_t *it, const void *k, size_t kl)
{
	ck_assert(engine_iter_valid(it));
	size_t got_len;
	const void *got = engine_iter_key(it, &got_len);
	ck_assert_msg(kcmp(got, got_len, k, kl) == 0, "iterator at a %zu-byte key, expected a %zu-byte key", got_len, kl);
}

/* A growable byte buffer used as a snapshot stream; reads stop at `limit`. */
typedef struct stream {
	uint8_t *data;
	size_t len, cap, pos, limit;
	int fail_rc; /* when non-zero, the next callback returns it */
} stream_t;

static int stream_write(void *ctx, const void *buf, size_t len)
{
	stream_t *s = ctx;
	if (s->fail_rc) return s->fail_rc;
	ck_assert(len > 0);
	if (s->len + len > s->cap) {
		size_t cap = s->cap ? s->cap : 4096;
		while (cap < s->len + len) cap *= 2;
		s->data = realloc(s->data, cap);
		ck_assert(s->data != NULL);
		s->cap = cap;
	}
	memcpy(s->data + s->len, buf, len);
	s->len += len;
	s->limit = s->len;
	return 0;
}

static int stream_read(void *ctx, void *buf, size_t len)
{
	stream_t *s = ctx;
	if (s->fail_rc) return s->fail_rc;
	if (len > s->limit - s->pos) return -EINVAL;
	if (len) memcpy(buf, s->data + s->pos, len);
	s->pos += len;
	return 0;
}

static void stream_rewind(stream_t *s, size_t limit)
{
	s->pos = 0;
	s->limit = limit;
}

/* Two engines hold the same keys, values and applied index. */
static void expect_same_content(engine_t *a, engine_t *b)
{
	ck_assert_uint_eq(engine_key_count(a), engine_key_count(b));
	ck_assert_uint_eq(engine_data_bytes(a), engine_data_bytes(b));
	ck_assert_uint_eq(engine_applied_index(a), engine_applied_index(b));
	engine_iter_t *ia = engine_iter_new(a), *ib = engine_iter_new(b);
	ck_assert(ia && ib);
	uint64_t n = 0;
	engine_iter_seek_first(ia);
	engine_iter_seek_first(ib);
	while (engine_iter_valid(ia)) {
		ck_assert(engine_iter_valid(ib));
		size_t kl1, kl2, vl1, vl2;
		const void *k1 = engine_iter_key(ia, &kl1), *k2 = engine_iter_key(ib, &kl2);
		const void *v1 = engine_iter_value(ia, &vl1), *v2 = engine_iter_value(ib, &vl2);
		ck_assert_msg(kcmp(k1, kl1, k2, kl2) == 0, "key %" PRIu64 " differs", n);
		ck_assert_msg(kcmp(v1, vl1, v2, vl2) == 0, "value %" PRIu64 " differs", n);
		engine_iter_next(ia);
		engine_iter_next(ib);
		n++;
	}
	ck_assert(!engine_iter_valid(ib));
	ck_assert_uint_eq(n, engine_key_count(a));
	engine_iter_free(ia);
	engine_iter_free(ib);
}

/* ------------------------------------------------------------------ basic operations */

START_TEST(test_get_put_delete)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	ck_assert_str_eq(engine_kind(kv.e), kind_self());
	ck_assert_uint_eq(engine_key_count(kv.e), 0);
	ck_assert_uint_eq(engine_applied_index(kv.e), 0);
	expect_absent(kv.e, "a", 1);
	put_s(kv.e, "a", "one");
	put_s(kv.e, "b", "two");
	expect_s(kv.e, "a", "one");
	expect_s(kv.e, "b", "two");
	expect_absent(kv.e, "c", 1);
	expect_absent(kv.e, "", 0);
	ck_assert_int_eq(engine_delete(kv.e, "a", 1), 0);
	expect_absent(kv.e, "a", 1);
	expect_s(kv.e, "b", "two");
	ck_assert_int_eq(engine_delete(kv.e, "a", 1), 0);	/* absent: still 0 */
	ck_assert_int_eq(engine_delete(kv.e, "zzz", 3), 0);
	ck_assert_uint_eq(engine_key_count(kv.e), 1);
	ck_assert_uint_eq(engine_applied_index(kv.e), 0); /* single writes keep the index */
	kv_close(&kv);
}
END_TEST

START_TEST(test_overwrite)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	put_s(kv.e, "k", "first value");
	put_s(kv.e, "k", "2nd");
	expect_s(kv.e, "k", "2nd");
	put_s(kv.e, "k", "a much longer third value than before");
	expect_s(kv.e, "k", "a much longer third value than before");
	ck_assert_uint_eq(engine_key_count(kv.e), 1);
	ck_assert_uint_eq(engine_data_bytes(kv.e), 1 + strlen("a much longer third value than before"));
	kv_close(&kv);
}
END_TEST

START_TEST(test_empty_value_and_empty_key)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	ck_assert_int_eq(engine_put(kv.e, "e", 1, NULL, 0), 0);
	ck_assert_int_eq(engine_put(kv.e, "f", 1, "", 0), 0);
	expect_val(kv.e, "e", 1, NULL, 0);
	expect_val(kv.e, "f", 1, NULL, 0);
	/* The empty key is a key like any other (the state machine stores the root there). */
	ck_assert_int_eq(engine_put(kv.e, "", 0, "root", 4), 0);
	expect_val(kv.e, "", 0, "root", 4);
	ck_assert_int_eq(engine_put(kv.e, NULL, 0, "ROOT", 4), 0);
	expect_val(kv.e, NULL, 0, "ROOT", 4);
	ck_assert_uint_eq(engine_key_count(kv.e), 3);
	ck_assert_uint_eq(engine_data_bytes(kv.e), 2 + 4);
	engine_iter_t *it = engine_iter_new(kv.e);
	engine_iter_seek_first(it);
	expect_iter_at(it, "", 0); /* the empty key sorts first */
	size_t vl;
	engine_iter_value(it, &vl);
	ck_assert_uint_eq(vl, 4);
	engine_iter_next(it);
	expect_iter_at(it, "e", 1);
	engine_iter_value(it, &vl);
	ck_assert_uint_eq(vl, 0);
	engine_iter_free(it);
	ck_assert_int_eq(engine_delete(kv.e, "", 0), 0);
	expect_absent(kv.e, "", 0);
	kv_close(&kv);
}
END_TEST

/* Keys in memcmp order, shorter first on a common prefix; inserted shuffled. */
static const struct {
	const char *k;
	size_t len;
} ordered_keys[] = {
	{"", 0},          {"\x00", 1},         {"\x00\x00", 2},    {"\x00\x01", 2}, {"\x01", 1},
	{"a", 1},         {"a\x00", 2},        {"a\x00\x00", 3},   {"a\x00\xff", 3}, {"a\x01", 2},
	{"ab", 2},        {"abc", 3},          {"abcdefghij", 10}, {"abcdefghij\x00", 11},
	{"abcdefghijk", 11}, {"abd", 3},        {"b", 1},           {"\x7f", 1},     {"\x80", 1},
	{"\xfe\xff", 2},  {"\xff", 1},         {"\xff\x00", 2},    {"\xff\xff", 2}, {"\xff\xff\xff", 3},
};
#define ORDERED_N (sizeof ordered_keys / sizeof ordered_keys[0])

START_TEST(test_binary_keys_and_order)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	for (size_t i = 1; i < ORDERED_N; i++) /* the table itself is in order */
		ck_assert(kcmp(ordered_keys[i - 1].k, ordered_keys[i - 1].len, ordered_keys[i].k, ordered_keys[i].len) < 0);
	ck_assert(ORDERED_N % 7 != 0);
	for (size_t s = 0; s < ORDERED_N; s++) { /* a fixed permutation: 7 is prime and no divisor of N */
		size_t i = (s * 7 + 3) % ORDERED_N;
		uint8_t v[8];
		memcpy(v, &i, sizeof v);
		ck_assert_int_eq(engine_put(kv.e, ordered_keys[i].k, ordered_keys[i].len, v, sizeof v), 0);
	}
	ck_assert_uint_eq(engine_key_count(kv.e), ORDERED_N);
	for (size_t i = 0; i < ORDERED_N; i++) {
		uint8_t v[8];
		memcpy(v, &i, sizeof v);
		expect_val(kv.e, ordered_keys[i].k, ordered_keys[i].len, v, sizeof v);
	}
	engine_iter_t *it = engine_iter_new(kv.e);
	size_t i = 0;
	for (engine_iter_seek_first(it); engine_iter_valid(it); engine_iter_next(it), i++) {
		ck_assert(i < ORDERED_N);
		expect_iter_at(it, ordered_keys[i].k, ordered_keys[i].len);
	}
	ck_assert_uint_eq(i, ORDERED_N);
	/* "a" < "a\0" < "ab" and "\xff" < "\xff\0": seeks land on the next key in that order. */
	engine_iter_seek(it, "a", 1);
	expect_iter_at(it, "a", 1);
	engine_iter_next(it);
	expect_iter_at(it, "a\x00", 2);
	engine_iter_seek(it, "a\x00\x00\x00", 4);
	expect_iter_at(it, "a\x00\xff", 3);
	engine_iter_seek(it, "\xff\x00\x00", 3);
	expect_iter_at(it, "\xff\xff", 2);
	engine_iter_free(it);
	expect_absent(kv.e, "a\x00\x00\x00", 4);
	expect_absent(kv.e, "\xff\xff\xff\xff", 4);
	kv_close(&kv);
}
END_TEST

START_TEST(test_seek)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	engine_iter_t *it = engine_iter_new(kv.e);
	engine_iter_seek_first(it); /* empty engine */
	ck_assert(!engine_iter_valid(it));
	engine_iter_seek(it, "a", 1);
	ck_assert(!engine_iter_valid(it));
	engine_iter_free(it);

	for (int i = 10; i < 100; i += 10) {
		char k[8];
		snprintf(k, sizeof k, "k%03d", i);
		put_s(kv.e, k, k);
	}
	it = engine_iter_new(kv.e);
	engine_iter_seek(it, "k050", 4); /* exact */
	expect_iter_at(it, "k050", 4);
	size_t vl;
	const void *v = engine_iter_value(it, &vl);
	ck_assert_uint_eq(vl, 4);
	ck_assert_mem_eq(v, "k050", 4);
	engine_iter_seek(it, "k051", 4); /* between */
	expect_iter_at(it, "k060", 4);
	engine_iter_seek(it, "k05", 3); /* a prefix of an existing key sorts before it */
	expect_iter_at(it, "k050", 4);
	engine_iter_seek(it, "", 0); /* before the first */
	expect_iter_at(it, "k010", 4);
	engine_iter_seek(it, "a", 1);
	expect_iter_at(it, "k010", 4);
	engine_iter_seek(it, "k090", 4); /* the last, then past the end */
	expect_iter_at(it, "k090", 4);
	engine_iter_next(it);
	ck_assert(!engine_iter_valid(it));
	engine_iter_seek(it, "k0900", 5);
	ck_assert(!engine_iter_valid(it));
	engine_iter_seek(it, "\xff", 1);
	ck_assert(!engine_iter_valid(it));
	engine_iter_seek(it, "k020", 4); /* an exhausted iterator can seek again */
	expect_iter_at(it, "k020", 4);
	engine_iter_free(it);
	kv_close(&kv);
}
END_TEST

START_TEST(test_iterate_10k)
{
	enum { N = 10000 };
	kv_t kv;
	kv_open(&kv, kind_self());
	engine_batch_t *b = engine_batch_new();
	for (unsigned s = 0; s < N; s++) {
		unsigned i = (s * 7919u) % N; /* 7919 is prime: a permutation */
		char k[16], v[32];
		int kl = snprintf(k, sizeof k, "it/%05u", i), vl = snprintf(v, sizeof v, "value-%u", i * 3u);
		if (s % 2) {
			ck_assert_int_eq(engine_put(kv.e, k, (size_t)kl, v, (size_t)vl), 0);
		} else {
			ck_assert_int_eq(engine_batch_put(b, k, (size_t)kl, v, (size_t)vl), 0);
			if (engine_batch_count(b) == 100) {
				ck_assert_int_eq(engine_batch_commit(kv.e, b, s), 0);
				engine_batch_clear(b);
			}
		}
	}
	ck_assert_int_eq(engine_batch_commit(kv.e, b, N), 0);
	engine_batch_free(b);
	ck_assert_uint_eq(engine_key_count(kv.e), N);
	engine_iter_t *it = engine_iter_new(kv.e);
	unsigned i = 0;
	for (engine_iter_seek_first(it); engine_iter_valid(it); engine_iter_next(it), i++) {
		char k[16], v[32];
		int kl = snprintf(k, sizeof k, "it/%05u", i), vl = snprintf(v, sizeof v, "value-%u", i * 3u);
		expect_iter_at(it, k, (size_t)kl);
		size_t gl;
		const void *g = engine_iter_value(it, &gl);
		ck_assert_uint_eq(gl, (size_t)vl);
		ck_assert_mem_eq(g, v, gl);
	}
	ck_assert_uint_eq(i, N);
	/* Seek into the middle and walk to the end. */
	engine_iter_seek(it, "it/04999x", 9);
	for (i = 5000; engine_iter_valid(it); engine_iter_next(it), i++) {
		char k[16];
		int kl = snprintf(k, sizeof k, "it/%05u", i);
		expect_iter_at(it, k, (size_t)kl);
	}
	ck_assert_uint_eq(i, N);
	engine_iter_free(it);
	kv_close(&kv);
}
END_TEST

/* ------------------------------------------------------------------ batches */

START_TEST(test_batch_semantics)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	put_s(kv.e, "old", "x");
	engine_batch_t *b = engine_batch_new();
	ck_assert(b != NULL);
	ck_assert_uint_eq(engine_batch_count(b), 0);
	ck_assert_int_eq(engine_batch_put(b, "k", 1, "1", 1), 0);
	ck_assert_int_eq(engine_batch_put(b, "k", 1, "2", 1), 0); /* later op wins */
	ck_assert_int_eq(engine_batch_delete(b, "d", 1), 0);
	ck_assert_int_eq(engine_batch_put(b, "d", 1, "back", 4), 0); /* delete then put */
	ck_assert_int_eq(engine_batch_put(b, "p", 1, "gone", 4), 0);
	ck_assert_int_eq(engine_batch_delete(b, "p", 1), 0); /* put then delete */
	ck_assert_int_eq(engine_batch_delete(b, "old", 3), 0);
	ck_assert_int_eq(engine_batch_put(b, "old", 3, "y", 1), 0);
	ck_assert_int_eq(engine_batch_delete(b, "old", 3), 0); /* put between deletes */
	ck_assert_int_eq(engine_batch_delete(b, "never", 5), 0);
	ck_assert_uint_eq(engine_batch_count(b), 10);
	/* Nothing is visible before commit. */
	expect_absent(kv.e, "k", 1);
	expect_s(kv.e, "old", "x");
	ck_assert_int_eq(engine_batch_commit(kv.e, b, 7), 0);
	expect_s(kv.e, "k", "2");
	expect_s(kv.e, "d", "back");
	expect_absent(kv.e, "p", 1);
	expect_absent(kv.e, "old", 3);
	expect_absent(kv.e, "never", 5);
	ck_assert_uint_eq(engine_key_count(kv.e), 2);
	ck_assert_uint_eq(engine_data_bytes(kv.e), 2 + 5);
	ck_assert_uint_eq(engine_applied_index(kv.e), 7);
	ck_assert_uint_eq(engine_batch_count(b), 10); /* commit leaves the batch as it was */

	/* Single writes keep the applied index; an empty batch moves it. */
	put_s(kv.e, "z", "z");
	ck_assert_uint_eq(engine_applied_index(kv.e), 7);
	engine_batch_clear(b);
	ck_assert_uint_eq(engine_batch_count(b), 0);
	ck_assert_int_eq(engine_batch_commit(kv.e, b, 9), 0);
	ck_assert_uint_eq(engine_applied_index(kv.e), 9);
	ck_assert_uint_eq(engine_key_count(kv.e), 3);

	/* A committed batch can grow and be committed again, even when its arena moves. */
	engine_batch_clear(b);
	ck_assert_int_eq(engine_batch_put(b, "r1", 2, "v1", 2), 0);
	ck_assert_int_eq(engine_batch_commit(kv.e, b, 10), 0);
	enum { BIG_BYTES = 20000 };
	uint8_t *big = malloc(BIG_BYTES);
	ck_assert(big != NULL);
	for (size_t i = 0; i < BIG_BYTES; i++) big[i] = (uint8_t)(i * 31u);
	for (int i = 0; i < 40; i++) {
		char k[8];
		snprintf(k, sizeof k, "r%02d", i + 2);
		ck_assert_int_eq(engine_batch_put(b, k, strlen(k), big, BIG_BYTES - (size_t)i), 0);
	}
	ck_assert_int_eq(engine_batch_commit(kv.e, b, 11), 0);
	expect_s(kv.e, "r1", "v1");
	for (int i = 0; i < 40; i++) {
		char k[8];
		snprintf(k, sizeof k, "r%02d", i + 2);
		expect_val(kv.e, k, strlen(k), big, BIG_BYTES - (size_t)i);
	}
	ck_assert_uint_eq(engine_applied_index(kv.e), 11);
	free(big);
	engine_batch_free(b);
	engine_batch_free(NULL);
	kv_close(&kv);
}
END_TEST

/* ------------------------------------------------------------------ size caps */

START_TEST(test_size_caps)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	uint8_t *key = calloc(1, ENGINE_KEY_BYTES_MAX + 1);
	uint8_t *val = calloc(1, ENGINE_VALUE_BYTES_MAX + 1); /* never touched: zero pages */
	ck_assert(key && val);
	const void *g;
	size_t gl;
	ck_assert_int_eq(engine_put(kv.e, key, ENGINE_KEY_BYTES_MAX + 1, "v", 1), -EINVAL);
	ck_assert_int_eq(engine_put(kv.e, "k", 1, val, ENGINE_VALUE_BYTES_MAX + 1), -EINVAL);
	ck_assert_int_eq(engine_get(kv.e, key, ENGINE_KEY_BYTES_MAX + 1, &g, &gl), -EINVAL);
	ck_assert_int_eq(engine_delete(kv.e, key, ENGINE_KEY_BYTES_MAX + 1), -EINVAL);
	engine_batch_t *b = engine_batch_new();
	ck_assert_int_eq(engine_batch_put(b, key, ENGINE_KEY_BYTES_MAX + 1, "v", 1), -EINVAL);
	ck_assert_int_eq(engine_batch_put(b, "k", 1, val, ENGINE_VALUE_BYTES_MAX + 1), -EINVAL);
	ck_assert_int_eq(engine_batch_delete(b, key, ENGINE_KEY_BYTES_MAX + 1), -EINVAL);
	ck_assert_uint_eq(engine_batch_count(b), 0);
	ck_assert_uint_eq(engine_key_count(kv.e), 0);

	/* Exactly at the caps works. */
	memset(key, 0xab, ENGINE_KEY_BYTES_MAX);
	ck_assert_int_eq(engine_put(kv.e, key, ENGINE_KEY_BYTES_MAX, "max-key", 7), 0);
	expect_val(kv.e, key, ENGINE_KEY_BYTES_MAX, "max-key", 7);
	val[0] = 1;
	val[ENGINE_VALUE_BYTES_MAX - 1] = 2;
	ck_assert_int_eq(engine_batch_put(b, "big", 3, val, ENGINE_VALUE_BYTES_MAX), 0);
	ck_assert_int_eq(engine_batch_commit(kv.e, b, 1), 0);
	ck_assert_int_eq(engine_get(kv.e, "big", 3, &g, &gl), 0);
	ck_assert_uint_eq(gl, ENGINE_VALUE_BYTES_MAX);
	ck_assert_uint_eq(((const uint8_t *)g)[0], 1);
	ck_assert_uint_eq(((const uint8_t *)g)[ENGINE_VALUE_BYTES_MAX - 1], 2);
	ck_assert_uint_eq(engine_data_bytes(kv.e), ENGINE_KEY_BYTES_MAX + 7 + 3 + ENGINE_VALUE_BYTES_MAX);
	engine_batch_free(b);
	free(key);
	free(val);
	kv_close(&kv);
}
END_TEST

START_TEST(test_counts_exact)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	engine_t *e = kv.e;
	put_s(e, "a", "12345");	      /* 1 key, 6 bytes */
	put_s(e, "bb", "");	      /* 2 keys, 8 bytes */
	put_s(e, "a", "1");	      /* overwrite: 4 bytes less */
	ck_assert_uint_eq(engine_key_count(e), 2);
	ck_assert_uint_eq(engine_data_bytes(e), 4);
	ck_assert_int_eq(engine_delete(e, "zz", 2), 0);
	ck_assert_uint_eq(engine_key_count(e), 2);
	ck_assert_uint_eq(engine_data_bytes(e), 4);
	engine_batch_t *b = engine_batch_new();
	engine_batch_put(b, "c", 1, "xyz", 3);	   /* +4 */
	engine_batch_put(b, "c", 1, "xy", 2);	   /* net +3 */
	engine_batch_delete(b, "bb", 2);	   /* -2 */
	engine_batch_put(b, "a", 1, "1234567", 7); /* +6 */
	engine_batch_delete(b, "q", 1);
	engine_batch_put(b, "q", 1, "", 0);	   /* +1 */
	ck_assert_int_eq(engine_batch_commit(e, b, 3), 0);
	ck_assert_uint_eq(engine_key_count(e), 3); /* a, c, q */
	ck_assert_uint_eq(engine_data_bytes(e), 4 + 3 - 2 + 6 + 1);
	engine_batch_clear(b);
	engine_batch_delete(b, "a", 1);
	engine_batch_delete(b, "c", 1);
	engine_batch_delete(b, "q", 1);
	ck_assert_int_eq(engine_batch_commit(e, b, 4), 0);
	ck_assert_uint_eq(engine_key_count(e), 0);
	ck_assert_uint_eq(engine_data_bytes(e), 0);
	engine_batch_free(b);
	kv_close(&kv);
}
END_TEST

/* ------------------------------------------------------------------ iterators and writes */

START_TEST(test_iter_invalidated_then_reseek)
{
	kv_t kv;
	kv_open(&kv, kind_self());
	put_s(kv.e, "a", "1");
	put_s(kv.e, "c", "3");
	put_s(kv.e, "e", "5");
	engine_iter_t *it = engine_iter_new(kv.e);
	engine_iter_seek(it, "c", 1);
	expect_iter_at(it, "c", 1);
	/* Writes invalidate the iterator; after a seek it sees the new content. */
	put_s(kv.e, "b", "2");
	ck_assert_int_eq(engine_delete(kv.e, "c", 1), 0);
	put_s(kv.e, "d", "4");
	engine_iter_seek(it, "b", 1);
	expect_iter_at(it, "b", 1);
	engine_iter_next(it);
	expect_iter_at(it, "d", 1);
	size_t vl;
	const void *v = engine_iter_value(it, &vl);
	ck_assert_uint_eq(vl, 1);
	ck_assert_mem_eq(v, "4", 1);
	/* Many writes (node splits in the memory backend) between seeks. */
	for (int i = 0; i < 2000; i++) {
		char k[16];
		snprintf(k, sizeof k, "c%04d", i);
		put_s(kv.e, k, k);
	}
	engine_iter_seek(it, "c1000", 5);
	expect_iter_at(it, "c1000", 5);
	for (int i = 0; i < 2000; i++) {
		char k[16];
		snprintf(k, sizeof k, "c%04d", i);
		ck_assert_int_eq(engine_delete(kv.e, k, strlen(k)), 0);
	}
	engine_iter_seek_first(it);
	const char *want[] = {"a", "b", "d", "e"};
	for (int i = 0; i < 4; i++, engine_iter_next(it)) expect_iter_at(it, want[i], 1);
	ck_assert(!engine_iter_valid(it));
	engine_iter_free(it);
	kv_close(&kv);
}
END_TEST

/* Memory backend detail: a stale iterator re-seeks to its saved key on its own. */
START_TEST(test_memory_stale_iter_resumes)
{
	if (strcmp(kind_self(), "memory") != 0) return;
	kv_t kv;
	kv_open(&kv, "memory");
	for (int i = 0; i < 300; i++) {
		char k[16];
		snprintf(k, sizeof k, "s%03d", i);
		put_s(kv.e, k, k);
	}
	engine_iter_t *it = engine_iter_new(kv.e);
	engine_iter_seek(it, "s100", 4);
	for (int i = 0; i < 300; i += 2) { /* delete every even key: leaves merge, memory is freed */
		char k[16];
		snprintf(k, sizeof k, "s%03d", i);
		ck_assert_int_eq(engine_delete(kv.e, k, strlen(k)), 0);
	}
	engine_iter_next(it); /* s100 is gone: resumes on s101 */
	expect_iter_at(it, "s101", 4);
	engine_iter_next(it);
	expect_iter_at(it, "s103", 4);
	put_s(kv.e, "s1030", "x"); /* s103 still there: next() moves past it */
	engine_iter_next(it);
	expect_iter_at(it, "s1030", 5);
	/* On the very first key (position 0 of the first leaf), then the whole front is freed. */
	engine_iter_seek_first(it);
	expect_iter_at(it, "s001", 4);
	ck_assert_int_eq(engine_delete(kv.e, "s1030", 5), 0);
	for (int i = 1; i < 250; i += 2) {
		char k[16];
		snprintf(k, sizeof k, "s%03d", i);
		ck_assert_int_eq(engine_delete(kv.e, k, strlen(k)), 0);
	}
	expect_iter_at(it, "s251", 4);
	engine_iter_next(it);
	expect_iter_at(it, "s253", 4);
	engine_iter_free(it);
	kv_close(&kv);
}
END_TEST

/* ------------------------------------------------------------------ snapshots */

static void fill_sample(engine_t *e, int n, uint64_t applied)
{
	engine_batch_t *b = engine_batch_new();
	ck_assert_int_eq(engine_batch_put(b, "", 0, "root", 4), 0);
	ck_assert_int_eq(engine_batch_put(b, "\x00\xff", 2, "", 0), 0);
	ck_assert_int_eq(engine_batch_put(b, "\xff\xff\x00", 3, "\x00\x01\x02", 3), 0);
	for (int i = 0; i < n; i++) {
		char k[32], v[64];
		int kl = snprintf(k, sizeof k, "snap/%06d", i * 13);
		int vl = snprintf(v, sizeof v, "value %d %.*s", i, i % 40, "0123456789012345678901234567890123456789");
		ck_assert_int_eq(engine_batch_put(b, k, (size_t)kl, v, (size_t)vl), 0);
	}
	ck_assert_int_eq(engine_batch_commit(e, b, applied), 0);
	engine_batch_free(b);
}

static void snapshot_roundtrip(const char *from, const char *to)
{
	kv_t a, c;
	kv_open(&a, from);
	fill_sample(a.e, 2000, 42);
	stream_t s = {0};
	ck_assert_int_eq(engine_snapshot_write(a.e, stream_write, &s), 0);
	ck_assert_uint_eq(engine_key_count(a.e), 2003);

	kv_open(&c, to); /* into an empty engine */
	stream_rewind(&s, s.len);
	ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), 0);
	ck_assert_uint_eq(s.pos, s.len);
	ck_assert_uint_eq(engine_applied_index(c.e), 42);
	expect_same_content(a.e, c.e);
	/* The restored engine keeps working: writes, deletes, and a second restore over it. */
	put_s(c.e, "snap/000001", "new");
	ck_assert_int_eq(engine_delete(c.e, "snap/000013", 11), 0);
	expect_s(c.e, "snap/000001", "new");
	expect_absent(c.e, "snap/000013", 11);
	stream_rewind(&s, s.len);
	ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), 0);
	expect_same_content(a.e, c.e);
	kv_close(&c);

	kv_open(&c, to); /* into an engine with other content: replaced whole */
	put_s(c.e, "zzz-not-in-snapshot", "x");
	put_s(c.e, "snap/000013", "overwritten");
	stream_rewind(&s, s.len);
	ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), 0);
	expect_absent(c.e, "zzz-not-in-snapshot", 19);
	expect_same_content(a.e, c.e);
	kv_close(&c);
	kv_close(&a);
	free(s.data);
}

START_TEST(test_snapshot_roundtrip)
{
	snapshot_roundtrip(kind_self(), kind_self());
}
END_TEST

START_TEST(test_snapshot_empty_engine)
{
	kv_t a, c;
	kv_open(&a, kind_self());
	kv_open(&c, kind_self());
	put_s(c.e, "k", "v");
	stream_t s = {0};
	ck_assert_int_eq(engine_snapshot_write(a.e, stream_write, &s), 0);
	stream_rewind(&s, s.len);
	ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), 0);
	ck_assert_uint_eq(engine_key_count(c.e), 0);
	expect_absent(c.e, "k", 1);
	put_s(c.e, "k2", "v2"); /* still writable */
	expect_s(c.e, "k2", "v2");
	kv_close(&a);
	kv_close(&c);
	free(s.data);
}
END_TEST

START_TEST(test_snapshot_cross_kind)
{
	kv_t probe;
	char err[256] = "";
	int rc = kv_try_open(&probe, kind_other(), err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "note: %s engine does not open (%d: %s); cross-kind snapshot test skipped\n",
			kind_other(), rc, err);
		return;
	}
	kv_close(&probe);
	snapshot_roundtrip(kind_self(), kind_other());
	snapshot_roundtrip(kind_other(), kind_self());
}
END_TEST

/* The sampled stream positions: the magic and version (rejected before a restore starts), one
 * byte in each other header and trailer field, the last byte, and every 13th byte between. */
static bool corrupt_probe(size_t pos, size_t len)
{
	return pos < 12 || pos == 12 || pos == 20 || pos + 24 == len || pos + 16 == len || pos + 8 == len ||
	       pos + 1 == len || pos % 13 == 0;
}

/* A damaged stream is rejected with -EINVAL and the target keeps its content. */
START_TEST(test_snapshot_corrupt_rejected)
{
	kv_t a, c, ref;
	kv_open(&a, kind_self());
	fill_sample(a.e, 12, 5);
	stream_t s = {0};
	ck_assert_int_eq(engine_snapshot_write(a.e, stream_write, &s), 0);
	kv_open(&c, kind_self());
	kv_open(&ref, kind_self());
	engine_t *targets[2] = {c.e, ref.e};
	for (int t = 0; t < 2; t++) {
		engine_batch_t *b = engine_batch_new();
		engine_batch_put(b, "keep", 4, "me", 2);
		engine_batch_put(b, "snap/000000", 11, "mine", 4);
		ck_assert_int_eq(engine_batch_commit(targets[t], b, 3), 0);
		engine_batch_free(b);
	}
	/* Every truncation and every byte for memory; rocksdb opens and fsyncs a side database for
	 * each restore (~75 ms), so it gets a sample: see corrupt_probe(). */
	bool every = strcmp(kind_self(), "memory") == 0;
	for (size_t cut = 0; cut < s.len; cut++) {
		if (!every && !corrupt_probe(cut, s.len)) continue;
		stream_rewind(&s, cut);
		ck_assert_msg(engine_snapshot_read(c.e, stream_read, &s) == -EINVAL, "truncated at %zu accepted", cut);
	}
	expect_same_content(c.e, ref.e);
	/* A flipped bit in every byte (which bit rotates with the position). */
	for (size_t pos = 0; pos < s.len; pos++) {
		if (!every && !corrupt_probe(pos, s.len)) continue;
		uint8_t mask = (uint8_t)(1u << (pos % 8));
		s.data[pos] ^= mask;
		stream_rewind(&s, s.len);
		int rc = engine_snapshot_read(c.e, stream_read, &s);
		s.data[pos] ^= mask;
		ck_assert_msg(rc == -EINVAL, "bit flip at byte %zu: %d", pos, rc);
	}
	expect_same_content(c.e, ref.e);
	/* Errors of the stream callbacks pass through unchanged. */
	stream_rewind(&s, s.len);
	s.fail_rc = -EIO;
	ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), -EIO);
	stream_t w = {.fail_rc = -EPIPE};
	ck_assert_int_eq(engine_snapshot_write(a.e, stream_write, &w), -EPIPE);
	expect_same_content(c.e, ref.e);
	/* And the intact stream still restores. */
	s.fail_rc = 0;
	stream_rewind(&s, s.len);
	ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), 0);
	expect_same_content(a.e, c.e);
	kv_close(&a);
	kv_close(&c);
	kv_close(&ref);
	free(s.data);
}
END_TEST

/* ------------------------------------------------------------------ open */

START_TEST(test_open_errors)
{
	engine_t *e = NULL;
	char err[256] = "";
	engine_options_t o = {.kind = "nosuchkind"};
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), -EINVAL);
	ck_assert(e == NULL);
	ck_assert_msg(strstr(err, "nosuchkind") != NULL, "error text: '%s'", err);
	err[0] = 0;
	engine_options_t none = {0};
	ck_assert_int_eq(engine_open(&none, &e, err, sizeof err), -EINVAL);
	ck_assert(err[0] != 0);
	ck_assert_int_eq(engine_open(NULL, &e, NULL, 0), -EINVAL);
	ck_assert_int_eq(engine_open(&o, &e, NULL, 0), -EINVAL); /* no error buffer: fine */
	kv_t kv;
	kv_open(&kv, kind_self());
	ck_assert(engine_errmsg(kv.e) != NULL);
	kv_close(&kv);
}
END_TEST

/* ------------------------------------------------------------------ -ENOMEM (fault injection) */

/* This binary links with -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, so every allocation
 * made by the engine library comes through here. While alloc_countdown >= 0, each allocation
 * decrements it and the one that finds it at 0 fails and disarms it. It is the file's only
 * mutable global: a test-only fault-injection knob, armed around a single engine call. */
static long alloc_countdown = -1;

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static bool alloc_fails(void) { return alloc_countdown >= 0 && alloc_countdown-- == 0; }
void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return alloc_fails() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return alloc_fails() ? NULL : __real_realloc(p, n); }

#define FAULT_TRIES_MAX 64 /* allocations one engine call may make before it must succeed */

static void fault_arm(long nth) { alloc_countdown = nth; }
static bool fault_fired(void) { bool fired = alloc_countdown < 0; alloc_countdown = -1; return fired; }

/* Every single put, with each of its allocations failing in turn: -ENOMEM leaves the engine as
 * it was, and the put then succeeds. Sequential keys grow the tree to three levels, so failing
 * leaf, separator, inner and new-root allocations are all met. */
START_TEST(test_memory_enomem_put)
{
	if (strcmp(kind_self(), "memory") != 0) return;
	kv_t kv;
	kv_open(&kv, "memory");
	uint64_t failures = 0;
	for (int i = 0; i < 4000; i++) {
		char k[16];
		snprintf(k, sizeof k, "p%06d", i);
		int rc = -ENOMEM;
		for (long nth = 0; nth < FAULT_TRIES_MAX && rc == -ENOMEM; nth++) {
			fault_arm(nth);
			rc = engine_put(kv.e, k, strlen(k), k, strlen(k));
			bool fired = fault_fired();
			if (rc == -ENOMEM) {
				ck_assert(fired);
				failures++;
				ck_assert_uint_eq(engine_key_count(kv.e), (uint64_t)i);
				expect_absent(kv.e, k, strlen(k));
				ck_assert(strstr(engine_errmsg(kv.e), "out of memory") != NULL);
			}
		}
		ck_assert_int_eq(rc, 0);
	}
	ck_assert_uint_gt(failures, 4000); /* at least the blob of every put, plus the splits */
	engine_iter_t *it = engine_iter_new(kv.e);
	int i = 0;
	for (engine_iter_seek_first(it); engine_iter_valid(it); engine_iter_next(it), i++) {
		char k[16];
		snprintf(k, sizeof k, "p%06d", i);
		expect_iter_at(it, k, strlen(k));
	}
	ck_assert_int_eq(i, 4000);
	engine_iter_free(it);
	fault_arm(0);
	engine_iter_t *no_it = engine_iter_new(kv.e);
	bool fired = fault_fired();
	ck_assert(no_it == NULL && fired);
	fault_arm(0);
	engine_batch_t *no_b = engine_batch_new();
	fired = fault_fired();
	ck_assert(no_b == NULL && fired);
	kv_close(&kv);
}
END_TEST

/* Batches of puts and deletes (random keys, repeats) with each allocation failing in turn;
 * after every -ENOMEM the engine equals a reference engine that never failed. */
START_TEST(test_memory_enomem_batch)
{
	if (strcmp(kind_self(), "memory") != 0) return;
	kv_t kv, ref;
	kv_open(&kv, "memory");
	kv_open(&ref, "memory");
	engine_batch_t *b = engine_batch_new();
	uint64_t x = 12345, failures = 0;
	for (int round = 0; round < 120; round++) {
		engine_batch_clear(b);
		for (int j = 0; j < 60; j++) {
			x = x * 6364136223846793005ULL + 1442695040888963407ULL;
			char k[16];
			snprintf(k, sizeof k, "b%05u", (unsigned)(x >> 33) % 6000u);
			if ((x >> 20) % 4 == 0)
				engine_batch_delete(b, k, strlen(k));
			else
				engine_batch_put(b, k, strlen(k), &x, (x >> 40) % 8);
		}
		int rc = -ENOMEM;
		for (long nth = 0; nth < FAULT_TRIES_MAX * 4 && rc == -ENOMEM; nth++) {
			fault_arm(nth);
			rc = engine_batch_commit(kv.e, b, (uint64_t)round + 1);
			bool fired = fault_fired();
			if (rc == -ENOMEM) {
				ck_assert(fired);
				failures++;
				ck_assert_uint_eq(engine_key_count(kv.e), engine_key_count(ref.e));
				ck_assert_uint_eq(engine_data_bytes(kv.e), engine_data_bytes(ref.e));
				ck_assert_uint_eq(engine_applied_index(kv.e), (uint64_t)round);
			}
		}
		ck_assert_int_eq(rc, 0);
		ck_assert_int_eq(engine_batch_commit(ref.e, b, (uint64_t)round + 1), 0);
		if (round % 20 == 0) expect_same_content(kv.e, ref.e);
	}
	ck_assert_uint_gt(failures, 120 * 45);
	expect_same_content(kv.e, ref.e);
	engine_batch_free(b);
	kv_close(&kv);
	kv_close(&ref);
}
END_TEST

/* A snapshot restore with each allocation failing in turn: -ENOMEM, previous content kept. */
START_TEST(test_memory_enomem_snapshot_read)
{
	if (strcmp(kind_self(), "memory") != 0) return;
	kv_t a, c, ref;
	kv_open(&a, "memory");
	kv_open(&c, "memory");
	kv_open(&ref, "memory");
	fill_sample(a.e, 4000, 77); /* 4003 keys: 72 leaves, two inner levels */
	put_s(c.e, "mine", "1");
	put_s(ref.e, "mine", "1");
	stream_t s = {0};
	ck_assert_int_eq(engine_snapshot_write(a.e, stream_write, &s), 0);
	/* Count the allocations of one restore, then fail the first ones, a sample of the middle
	 * (blobs and leaves) and every one of the last (the inner levels built at commit). */
	const long armed = 1L << 40;
	kv_t scratch;
	kv_open(&scratch, "memory");
	stream_rewind(&s, s.len);
	fault_arm(armed);
	int rc = engine_snapshot_read(scratch.e, stream_read, &s);
	long total = armed - alloc_countdown; /* before any ck_assert: libcheck allocates too */
	fault_fired();
	ck_assert_int_eq(rc, 0);
	kv_close(&scratch);
	ck_assert_int_gt(total, 4003); /* a blob per key, leaves, separators, inner nodes */
	long nth;
	for (nth = 0; nth < total; nth += (nth < 100 || nth >= total - 300) ? 1 : 61) {
		stream_rewind(&s, s.len);
		fault_arm(nth);
		rc = engine_snapshot_read(c.e, stream_read, &s);
		bool fired = fault_fired();
		ck_assert_msg(fired && rc == -ENOMEM, "allocation %ld of %ld failed: %d", nth, total, rc);
		if (nth % 50 == 0) expect_same_content(c.e, ref.e);
		else ck_assert_uint_eq(engine_key_count(c.e), 1);
	}
	expect_same_content(c.e, ref.e);
	stream_rewind(&s, s.len);
	fault_arm(total);
	rc = engine_snapshot_read(c.e, stream_read, &s);
	bool fired = fault_fired();
	ck_assert_int_eq(rc, 0);
	ck_assert(!fired);
	expect_same_content(a.e, c.e);
	stream_t w = {0};
	fault_arm(0);
	rc = engine_snapshot_write(a.e, stream_write, &w);
	fired = fault_fired();
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert(fired);
	free(w.data);
	engine_t *e = NULL;
	engine_options_t o = {.kind = "memory"};
	char err[128] = "";
	for (nth = 0; nth < 3; nth++) { /* the engine struct, the backend state, the root leaf */
		fault_arm(nth);
		rc = engine_open(&o, &e, err, sizeof err);
		fired = fault_fired();
		ck_assert_int_eq(rc, -ENOMEM);
		ck_assert(fired);
	}
	ck_assert_int_eq(engine_open(&o, &e, err, sizeof err), 0);
	engine_close(e);
	kv_close(&a);
	kv_close(&c);
	kv_close(&ref);
	free(s.data);
}
END_TEST

/* Restores of many sizes: leaf and inner-level boundaries of the memory backend's bulk load
 * (56 keys per leaf, 57 children per inner node) and an underfull last leaf. rocksdb, for which
 * the boundaries mean nothing, runs a few of them with less churn. */
START_TEST(test_snapshot_sizes)
{
	static const unsigned sizes[] = {0, 1, 61, 3200, 2, 55, 56, 57, 112, 125, 3192, 3193, 3249, 190000};
	bool memory = strcmp(kind_self(), "memory") == 0;
	size_t sizes_n = memory ? sizeof sizes / sizeof sizes[0] : 4;
	unsigned churn = memory ? 4000 : 300;
	kv_t a, c;
	for (size_t i = 0; i < sizes_n; i++) {
		kv_open(&a, kind_self());
		kv_open(&c, kind_self());
		engine_batch_t *b = engine_batch_new();
		for (unsigned j = 0; j < sizes[i]; j++) {
			char k[16];
			snprintf(k, sizeof k, "z%07u", j * 2);
			engine_batch_put(b, k, strlen(k), k, (size_t)(j % 9));
		}
		ck_assert_int_eq(engine_batch_commit(a.e, b, sizes[i] + 1u), 0);
		engine_batch_free(b);
		stream_t s = {0};
		ck_assert_int_eq(engine_snapshot_write(a.e, stream_write, &s), 0);
		stream_rewind(&s, s.len);
		ck_assert_int_eq(engine_snapshot_read(c.e, stream_read, &s), 0);
		expect_same_content(a.e, c.e);
		/* The restored tree takes inserts between every pair of keys and deletes of all. */
		for (unsigned j = 0; j < sizes[i] && j < churn; j++) {
			char k[16];
			snprintf(k, sizeof k, "z%07u", j * 2 + 1);
			put_s(a.e, k, "odd");
			put_s(c.e, k, "odd");
		}
		expect_same_content(a.e, c.e);
		for (unsigned j = 0; j < sizes[i] && j < churn; j++) {
			char k[16];
			snprintf(k, sizeof k, "z%07u", j * 2);
			ck_assert_int_eq(engine_delete(a.e, k, strlen(k)), 0);
			ck_assert_int_eq(engine_delete(c.e, k, strlen(k)), 0);
		}
		expect_same_content(a.e, c.e);
		kv_close(&a);
		kv_close(&c);
		free(s.data);
	}
}
END_TEST

/* ------------------------------------------------------------------ randomized vs a model */

typedef struct rng {
	uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r) /* xorshift64* */
{
	r->s ^= r->s >> 12;
	r->s ^= r->s << 25;
	r->s ^= r->s >> 27;
	return r->s * 2685821657736338717ULL;
}

static uint32_t rng_below(rng_t *r, uint32_t n) { return (uint32_t)(rng_next(r) % n); }

/* Key number id -> key bytes. Four families that stress prefixes, binary bytes and lengths. */
static size_t model_key(uint32_t id, uint8_t *out)
{
	static const uint8_t alphabet[5] = {0x00, 0x01, 'a', 0xfe, 0xff};
	switch (id % 4) {
	case 0: { /* short binary keys, length 0..6, from a 5-letter alphabet */
		uint32_t x = id / 4;
		size_t len = x % 7;
		x /= 7;
		for (size_t i = 0; i < len; i++, x /= 5) out[i] = alphabet[x % 5];
		return len;
	}
	case 1: /* long shared prefix (beyond the memory backend's 32-byte inline prefix) */
		return (size_t)sprintf((char *)out, "dir/a-rather-long-common-directory-name/sub/%u", id / 4);
	case 2: { /* 8-byte big-endian numbers: many zero bytes */
		uint64_t x = id / 4;
		for (int i = 0; i < 8; i++) out[i] = (uint8_t)(x >> (56 - 8 * i));
		return 8;
	}
	default: /* decimal, prefixes of each other ("1" < "10" < "100") */
		return (size_t)sprintf((char *)out, "%u", id / 4);
	}
}

typedef struct model_entry {
	uint8_t key[64];
	size_t key_len;
	uint8_t val[RANDOM_VALUE_BYTES_MAX];
	size_t val_len;
} model_entry_t;

typedef struct model {
	model_entry_t *e; /* sorted by key */
	size_t n, cap;
	uint64_t data_bytes;
} model_t;

static size_t model_lower_bound(const model_t *m, const uint8_t *k, size_t kl)
{
	size_t lo = 0, hi = m->n;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (kcmp(m->e[mid].key, m->e[mid].key_len, k, kl) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool model_has(const model_t *m, size_t i, const uint8_t *k, size_t kl)
{
	return i < m->n && kcmp(m->e[i].key, m->e[i].key_len, k, kl) == 0;
}

static void model_put(model_t *m, const uint8_t *k, size_t kl, const uint8_t *v, size_t vl)
{
	size_t i = model_lower_bound(m, k, kl);
	if (!model_has(m, i, k, kl)) {
		if (m->n == m->cap) {
			m->cap = m->cap ? m->cap * 2 : 1024;
			m->e = realloc(m->e, m->cap * sizeof *m->e);
			ck_assert(m->e != NULL);
		}
		memmove(&m->e[i + 1], &m->e[i], (m->n - i) * sizeof *m->e);
		m->n++;
		memcpy(m->e[i].key, k, kl);
		m->e[i].key_len = kl;
		m->data_bytes += kl;
	} else {
		m->data_bytes -= m->e[i].val_len;
	}
	if (vl) memcpy(m->e[i].val, v, vl);
	m->e[i].val_len = vl;
	m->data_bytes += vl;
}

static void model_delete(model_t *m, const uint8_t *k, size_t kl)
{
	size_t i = model_lower_bound(m, k, kl);
	if (!model_has(m, i, k, kl)) return;
	m->data_bytes -= m->e[i].key_len + m->e[i].val_len;
	memmove(&m->e[i], &m->e[i + 1], (m->n - i - 1) * sizeof *m->e);
	m->n--;
}

static size_t random_value(rng_t *r, uint8_t *v)
{
	size_t len = rng_below(r, 8) == 0 ? 0 : rng_below(r, RANDOM_VALUE_BYTES_MAX + 1);
	for (size_t i = 0; i < len; i++) v[i] = (uint8_t)rng_next(r);
	return len;
}

static void model_check_full(engine_t *e, const model_t *m, uint64_t seed, uint32_t op)
{
	ck_assert_msg(engine_key_count(e) == m->n, "seed %" PRIu64 " op %u: key_count %" PRIu64 " != %zu", seed, op,
		      engine_key_count(e), m->n);
	ck_assert_msg(engine_data_bytes(e) == m->data_bytes, "seed %" PRIu64 " op %u: data_bytes", seed, op);
	engine_iter_t *it = engine_iter_new(e);
	size_t i = 0;
	for (engine_iter_seek_first(it); engine_iter_valid(it); engine_iter_next(it), i++) {
		size_t kl, vl;
		const void *k = engine_iter_key(it, &kl), *v = engine_iter_value(it, &vl);
		ck_assert_msg(i < m->n, "seed %" PRIu64 " op %u: iteration has extra keys", seed, op);
		ck_assert_msg(kcmp(k, kl, m->e[i].key, m->e[i].key_len) == 0, "seed %" PRIu64 " op %u: key %zu differs",
			      seed, op, i);
		ck_assert_msg(kcmp(v, vl, m->e[i].val, m->e[i].val_len) == 0,
			      "seed %" PRIu64 " op %u: value %zu differs", seed, op, i);
	}
	ck_assert_msg(i == m->n, "seed %" PRIu64 " op %u: iteration saw %zu of %zu keys", seed, op, i, m->n);
	engine_iter_free(it);
}

static void model_check_probe(engine_t *e, engine_iter_t *it, const model_t *m, rng_t *r, uint64_t seed, uint32_t op)
{
	uint8_t k[64];
	size_t kl = model_key(rng_below(r, RANDOM_KEYSPACE), k);
	if (rng_below(r, 4) == 0) k[kl++] = (uint8_t)rng_next(r); /* mostly absent: between keys */
	size_t i = model_lower_bound(m, k, kl);
	const void *v;
	size_t vl;
	int rc = engine_get(e, k, kl, &v, &vl);
	if (model_has(m, i, k, kl)) {
		ck_assert_msg(rc == 0, "seed %" PRIu64 " op %u: get of a present key: %d", seed, op, rc);
		ck_assert_msg(kcmp(v, vl, m->e[i].val, m->e[i].val_len) == 0, "seed %" PRIu64 " op %u: get value", seed, op);
	} else {
		ck_assert_msg(rc == -ENOENT, "seed %" PRIu64 " op %u: get of an absent key: %d", seed, op, rc);
	}
	engine_iter_seek(it, k, kl);
	for (size_t j = i; j < i + 3; j++) { /* the seek and two steps */
		if (j >= m->n) {
			ck_assert_msg(!engine_iter_valid(it), "seed %" PRIu64 " op %u: seek past the end is valid", seed, op);
			break;
		}
		ck_assert_msg(engine_iter_valid(it), "seed %" PRIu64 " op %u: seek ended early", seed, op);
		size_t gl;
		const void *g = engine_iter_key(it, &gl);
		ck_assert_msg(kcmp(g, gl, m->e[j].key, m->e[j].key_len) == 0, "seed %" PRIu64 " op %u: seek landed wrong",
			      seed, op);
		engine_iter_next(it);
	}
}

static void snapshot_swap(kv_t *kv)
{
	stream_t s = {0};
	kv_t fresh;
	ck_assert_int_eq(engine_snapshot_write(kv->e, stream_write, &s), 0);
	kv_open(&fresh, kind_self());
	stream_rewind(&s, s.len);
	ck_assert_int_eq(engine_snapshot_read(fresh.e, stream_read, &s), 0);
	kv_close(kv);
	*kv = fresh;
	free(s.data);
}

/* Memory backend shapes the random test rarely reaches: inner nodes redistributing on delete.
 * Sequential inserts leave leaves with 48 keys and inner nodes with 48 separators; 17 extra
 * keys into each of the first leaves split them, so the first inner node holds more than 48
 * separators; deleting most of the second inner node's range then makes it borrow from the
 * first instead of merging. Checked against the model, with live iterators of all kinds. */
START_TEST(test_memory_rebalance_paths)
{
	if (strcmp(kind_self(), "memory") != 0) return;
	enum { N = 3 * 49 * 48 };
	kv_t kv;
	kv_open(&kv, "memory");
	model_t m = {0};
	engine_iter_t *its[3];
	for (int i = 0; i < 3; i++) its[i] = engine_iter_new(kv.e);
	uint8_t k[32];
	for (int i = 0; i < N; i++) {
		size_t kl = (size_t)sprintf((char *)k, "r%08d", i);
		ck_assert_int_eq(engine_put(kv.e, k, kl, k, kl), 0);
		model_put(&m, k, kl, k, kl);
	}
	for (int leaf = 0; leaf < 14; leaf++)
		for (int j = 0; j < 17; j++) {
			size_t kl = (size_t)sprintf((char *)k, "r%08d%c", leaf * 48 + 1, 'a' + j);
			ck_assert_int_eq(engine_put(kv.e, k, kl, "x", 1), 0);
			model_put(&m, k, kl, (const uint8_t *)"x", 1);
		}
	engine_iter_seek(its[1], "r00002400", 9);
	for (int i = 49 * 48 + 20; i < 2 * 49 * 48 - 20; i++) {
		size_t kl = (size_t)sprintf((char *)k, "r%08d", i);
		ck_assert_int_eq(engine_delete(kv.e, k, kl), 0);
		model_delete(&m, k, kl);
	}
	model_check_full(kv.e, &m, 0, 0);
	engine_iter_free(its[1]); /* from the middle of the engine's iterator list */
	engine_iter_seek(its[0], "r00002352", 9);
	size_t i0 = model_lower_bound(&m, (const uint8_t *)"r00002352", 9);
	expect_iter_at(its[0], m.e[i0].key, m.e[i0].key_len);
	/* Now delete everything from the front: merges all the way up, the root collapses. */
	while (m.n > 1) {
		ck_assert_int_eq(engine_delete(kv.e, m.e[0].key, m.e[0].key_len), 0);
		model_delete(&m, m.e[0].key, m.e[0].key_len);
		if (m.n % 1000 == 0) model_check_full(kv.e, &m, 0, (uint32_t)m.n);
	}
	model_check_full(kv.e, &m, 0, 1);
	engine_iter_free(its[2]);
	engine_iter_free(its[0]);
	kv_close(&kv);
	free(m.e);
}
END_TEST

START_TEST(test_random_against_model)
{
	const char *seed_env = getenv("ENGINE_KV_SEED");
	uint64_t seed = seed_env ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	if (!seed) seed = 1;
	fprintf(stderr, "engine_kv_test[%s]: random test seed %" PRIu64 " (ENGINE_KV_SEED=%" PRIu64 " replays it)\n",
		kind_self(), seed, seed);
	rng_t r = {seed};
	model_t m = {0};
	kv_t kv;
	kv_open(&kv, kind_self());
	engine_batch_t *b = engine_batch_new();
	engine_iter_t *it = engine_iter_new(kv.e);
	uint64_t applied = 0;
	uint8_t k[64], v[RANDOM_VALUE_BYTES_MAX];
	for (uint32_t op = 0; op < RANDOM_OPS; op++) {
		/* Phases: grow, shrink hard (merges, root collapse), grow again. */
		uint32_t del_pct = op < 40000 ? 25 : op < 60000 ? 90 : 35;
		uint32_t dice = rng_below(&r, 100);
		if (dice < 12) { /* a batch */
			uint32_t n = 1 + rng_below(&r, RANDOM_BATCH_OPS_MAX);
			uint32_t base = rng_below(&r, RANDOM_KEYSPACE);
			engine_batch_clear(b);
			for (uint32_t j = 0; j < n; j++) {
				/* nearby ids so the same key often appears twice in one batch */
				size_t kl = model_key((base + rng_below(&r, 8) * 4) % RANDOM_KEYSPACE, k);
				if (rng_below(&r, 100) < del_pct) {
					ck_assert_int_eq(engine_batch_delete(b, k, kl), 0);
					model_delete(&m, k, kl);
				} else {
					size_t vl = random_value(&r, v);
					ck_assert_int_eq(engine_batch_put(b, k, kl, v, vl), 0);
					model_put(&m, k, kl, v, vl);
				}
			}
			applied += 1 + rng_below(&r, 3);
			ck_assert_msg(engine_batch_commit(kv.e, b, applied) == 0, "seed %" PRIu64 " op %u: commit", seed, op);
		} else {
			size_t kl = model_key(rng_below(&r, RANDOM_KEYSPACE), k);
			if (rng_below(&r, 100) < del_pct) {
				ck_assert_int_eq(engine_delete(kv.e, k, kl), 0);
				model_delete(&m, k, kl);
			} else {
				size_t vl = random_value(&r, v);
				ck_assert_int_eq(engine_put(kv.e, k, kl, v, vl), 0);
				model_put(&m, k, kl, v, vl);
			}
		}
		if (op % 64 == 0) model_check_probe(kv.e, it, &m, &r, seed, op);
		if (op % 10000 == 9999) {
			model_check_full(kv.e, &m, seed, op);
			ck_assert_uint_eq(engine_applied_index(kv.e), applied);
		}
		if (op == RANDOM_OPS / 2) { /* continue on a restored (bulk-loaded) engine */
			engine_iter_free(it);
			snapshot_swap(&kv);
			model_check_full(kv.e, &m, seed, op);
			it = engine_iter_new(kv.e);
		}
	}
	model_check_full(kv.e, &m, seed, RANDOM_OPS);
	ck_assert_uint_eq(engine_applied_index(kv.e), applied);
	for (uint32_t i = 0; i < 2000; i++) model_check_probe(kv.e, it, &m, &r, seed, RANDOM_OPS);
	/* Delete everything that is left, in key order, then check the empty engine. */
	while (m.n) {
		model_entry_t *e0 = &m.e[m.n - 1];
		ck_assert_int_eq(engine_delete(kv.e, e0->key, e0->key_len), 0);
		model_delete(&m, e0->key, e0->key_len);
	}
	model_check_full(kv.e, &m, seed, RANDOM_OPS + 1);
	engine_iter_seek_first(it);
	ck_assert(!engine_iter_valid(it));
	engine_iter_free(it);
	engine_batch_free(b);
	kv_close(&kv);
	free(m.e);
}
END_TEST

/* ------------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	if (argc > 1) setenv("ENGINE_KIND", argv[1], 1);
	const char *kind = kind_self();
	if (strcmp(kind, "memory") != 0 && strcmp(kind, "rocksdb") != 0) {
		fprintf(stderr, "usage: %s [memory|rocksdb]  (or ENGINE_KIND=...)\n", argv[0]);
		return 2;
	}
	Suite *s = suite_create(kind);
	TCase *basic = tcase_create("basic");
	tcase_set_timeout(basic, 120);
	tcase_add_test(basic, test_get_put_delete);
	tcase_add_test(basic, test_overwrite);
	tcase_add_test(basic, test_empty_value_and_empty_key);
	tcase_add_test(basic, test_binary_keys_and_order);
	tcase_add_test(basic, test_seek);
	tcase_add_test(basic, test_iterate_10k);
	tcase_add_test(basic, test_batch_semantics);
	tcase_add_test(basic, test_size_caps);
	tcase_add_test(basic, test_counts_exact);
	tcase_add_test(basic, test_iter_invalidated_then_reseek);
	tcase_add_test(basic, test_memory_stale_iter_resumes);
	tcase_add_test(basic, test_open_errors);
	tcase_add_test(basic, test_memory_enomem_put);
	tcase_add_test(basic, test_memory_enomem_batch);
	suite_add_tcase(s, basic);
	TCase *snap = tcase_create("snapshot");
	tcase_set_timeout(snap, 120);
	tcase_add_test(snap, test_snapshot_roundtrip);
	tcase_add_test(snap, test_snapshot_empty_engine);
	tcase_add_test(snap, test_snapshot_cross_kind);
	tcase_add_test(snap, test_snapshot_corrupt_rejected);
	tcase_add_test(snap, test_snapshot_sizes);
	tcase_add_test(snap, test_memory_enomem_snapshot_read);
	suite_add_tcase(s, snap);
	TCase *rnd = tcase_create("random");
	tcase_set_timeout(rnd, 280);
	tcase_add_test(rnd, test_random_against_model);
	tcase_add_test(rnd, test_memory_rebalance_paths);
	suite_add_tcase(s, rnd);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
