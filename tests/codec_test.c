/* codec_test.c - unit tests of engine/codec: the bytes of txn blobs and batches.
 *
 * Round trips of every op type, flag, field and compare; batches built blob by blob against
 * batches encoded whole; every rejection path (truncation at every offset, bad magic and
 * version, counts and lengths past the limits or the input, unknown enums and flag bits,
 * trailing bytes); every errno of codec_txn_check and the builder; and a seeded random-mutation
 * loop that must never crash or over-read (run it under ASan). Inputs handed to the decoder
 * live in heap buffers of exactly their length so ASan sees any over-read.
 *
 * With CODEC_SEED_DIR set, the case "seeds" writes valid encodings there as the fuzzer's seed
 * corpus (tests/fuzz/run-fuzz.sh runs it with CK_RUN_CASE=seeds).
 */
#include "codec.h"
#include "codec_eq.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ------------------------------------------------------------------ random txns */

#define GEN_BYTES_MAX (1u << 20)
#define GEN_OPS_MAX 4096u
#define GEN_COMPARES_MAX 1024u
#define GEN_TXNS_MAX 64u

/* A generator owns everything the txns it makes point at. */
typedef struct gen {
	uint64_t state;
	uint8_t bytes[GEN_BYTES_MAX];
	size_t bytes_used;
	sm_op_t ops[GEN_OPS_MAX];
	size_t ops_used;
	sm_compare_t compares[GEN_COMPARES_MAX];
	size_t compares_used;
	sm_txn_t txns[GEN_TXNS_MAX];
	size_t txns_used;
} gen_t;

static gen_t *gen_new(uint64_t seed)
{
	gen_t *g = calloc(1, sizeof(*g));
	ck_assert_ptr_nonnull(g);
	g->state = seed * 2654435761u + 0x9e3779b97f4a7c15ull;
	return g;
}

static void gen_reset(gen_t *g)
{
	g->bytes_used = g->ops_used = g->compares_used = g->txns_used = 0;
}

static uint64_t rnd(gen_t *g)
{
	/* splitmix64 */
	uint64_t z = (g->state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static uint64_t rnd_below(gen_t *g, uint64_t n)
{
	return n == 0 ? 0 : rnd(g) % n;
}

/* n random bytes (any value, NUL included) from the pool. */
static const uint8_t *gen_bytes(gen_t *g, size_t n)
{
	ck_assert_uint_le(g->bytes_used + n, GEN_BYTES_MAX);
	uint8_t *p = g->bytes + g->bytes_used;
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd(g);
	g->bytes_used += n;
	return p;
}

static size_t gen_len(gen_t *g, size_t max)
{
	/* mostly short, sometimes empty, sometimes long */
	switch (rnd_below(g, 8)) {
	case 0:
		return 0;
	case 1:
		return rnd_below(g, max + 1);
	default:
		return rnd_below(g, max < 24 ? max + 1 : 24);
	}
}

static uint64_t gen_u64(gen_t *g)
{
	switch (rnd_below(g, 4)) {
	case 0:
		return 0;
	case 1:
		return UINT64_MAX - rnd_below(g, 2);
	default:
		return rnd(g) >> rnd_below(g, 64);
	}
}

static void gen_op(gen_t *g, sm_op_t *op)
{
	memset(op, 0, sizeof(*op));
	op->type = (sm_op_type_t)(SM_OP_GET + rnd_below(g, SM_OP_SYMLINK - SM_OP_GET + 1));
	op->flags = (uint32_t)rnd_below(g, 128);
	op->key_len = gen_len(g, 300);
	op->key = (const char *)gen_bytes(g, op->key_len);
	bool key2 = op->type == SM_OP_RENAME ||
		    ((op->type == SM_OP_GET || op->type == SM_OP_DEL) && rnd_below(g, 2));
	if (key2) {
		op->key2_len = gen_len(g, 300);
		op->key2 = (const char *)gen_bytes(g, op->key2_len);
	}
	if (rnd_below(g, 2)) {
		op->value_len = gen_len(g, 2000);
		op->value = gen_bytes(g, op->value_len);
	}
	if (rnd_below(g, 2)) {
		op->mode = (uint32_t)gen_u64(g);
		op->uid = (uint32_t)gen_u64(g);
		op->gid = (uint32_t)gen_u64(g);
	}
	if (rnd_below(g, 3) == 0) {
		op->attr_mask = (uint32_t)rnd_below(g, 32);
		op->size = gen_u64(g);
		op->mtime_ns = (int64_t)gen_u64(g);
	}
	if (rnd_below(g, 3) == 0)
		op->limit = gen_u64(g);
	if (rnd_below(g, 3) == 0)
		op->ino = gen_u64(g);
}

static void gen_compare(gen_t *g, sm_compare_t *c)
{
	memset(c, 0, sizeof(*c));
	c->target = (sm_cmp_target_t)(SM_CMP_VALUE + rnd_below(g, 4));
	c->op = (sm_cmp_op_t)(SM_CMP_EQ + rnd_below(g, 4));
	c->key_len = gen_len(g, 300);
	c->key = (const char *)gen_bytes(g, c->key_len);
	if (c->target == SM_CMP_VALUE) {
		c->value_len = gen_len(g, 500);
		c->value = gen_bytes(g, c->value_len);
	} else {
		c->number = (int64_t)gen_u64(g);
	}
}

static const sm_txn_t *gen_txn(gen_t *g)
{
	ck_assert_uint_lt(g->txns_used, GEN_TXNS_MAX);
	sm_txn_t *t = &g->txns[g->txns_used++];
	memset(t, 0, sizeof(*t));
	t->origin_node = (uint32_t)gen_u64(g);
	t->origin_seq = gen_u64(g);
	t->time_ns = (int64_t)gen_u64(g);
	t->flags = (uint32_t)rnd_below(g, 2);
	t->n_compare = (uint32_t)rnd_below(g, 4);
	t->n_success = (uint32_t)rnd_below(g, 5);
	t->n_failure = (uint32_t)rnd_below(g, 3);
	ck_assert_uint_le(g->compares_used + t->n_compare, GEN_COMPARES_MAX);
	ck_assert_uint_le(g->ops_used + t->n_success + t->n_failure, GEN_OPS_MAX);
	sm_compare_t *cs = &g->compares[g->compares_used];
	for (uint32_t i = 0; i < t->n_compare; i++)
		gen_compare(g, &cs[i]);
	sm_op_t *ops = &g->ops[g->ops_used];
	for (uint32_t i = 0; i < t->n_success + t->n_failure; i++)
		gen_op(g, &ops[i]);
	g->compares_used += t->n_compare;
	g->ops_used += t->n_success + t->n_failure;
	t->compares = t->n_compare ? cs : NULL;
	t->success = t->n_success ? ops : NULL;
	t->failure = t->n_failure ? ops + t->n_success : NULL;
	ck_assert_int_eq(codec_txn_check(t), 0);
	return t;
}

static sm_batch_t gen_batch(gen_t *g, uint32_t n_txn)
{
	ck_assert_uint_le(n_txn, GEN_TXNS_MAX);
	size_t first = g->txns_used;
	for (uint32_t i = 0; i < n_txn; i++)
		gen_txn(g);
	return (sm_batch_t){n_txn, n_txn ? &g->txns[first] : NULL};
}

/* ------------------------------------------------------------------ equality */

/* bytes_eq, compare_eq, op_eq, txn_eq, batch_eq: codec_eq.h */

/* ------------------------------------------------------------------ helpers */

typedef struct enc {
	uint8_t *buf;
	size_t len;
} enc_t;

static enc_t encode_batch(const sm_batch_t *b)
{
	size_t n = codec_batch_size(b);
	enc_t e = {malloc(n), n};
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_eq(codec_batch_encode(b, e.buf, n), n);
	return e;
}

static enc_t encode_txn(const sm_txn_t *t)
{
	size_t n = codec_txn_size(t);
	enc_t e = {malloc(n), n};
	ck_assert_ptr_nonnull(e.buf);
	ck_assert_uint_eq(codec_txn_encode(t, e.buf, n), n);
	return e;
}

/* Decode a copy of buf[0, len) in a heap buffer of exactly len bytes. */
static int decode_exact(const uint8_t *buf, size_t len, bool whole_batch)
{
	uint8_t *copy = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(copy);
	if (len)
		memcpy(copy, buf, len);
	codec_decoded_t d;
	int rc = whole_batch ? codec_batch_decode(copy, len, &d) : codec_txn_decode(copy, len, &d);
	if (rc == 0)
		codec_decoded_free(&d);
	else
		ck_assert(d.mem == NULL && d.batch.n_txn == 0 && d.batch.txns == NULL);
	free(copy);
	return rc;
}

static void le32_put(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void le16_put(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

/* A small hand-made txn whose byte offsets the rejection tests rely on: no compares,
 * one PUT of key "ab" with value "xyz" (no other groups). */
static const sm_op_t put_ab = {.type = SM_OP_PUT, .key = "ab", .key_len = 2,
			       .value = (const uint8_t *)"xyz", .value_len = 3};
static const sm_txn_t txn_put_ab = {.origin_node = 7, .origin_seq = 9, .time_ns = 11,
				    .n_success = 1, .success = &put_ab};
/* Offsets inside its blob. */
#define AB_OP 35u          /* the op starts right after the header */
#define AB_OP_TYPE (AB_OP + 0)
#define AB_OP_PRESENT (AB_OP + 1)
#define AB_OP_FLAGS (AB_OP + 2)
#define AB_OP_KEY_LEN (AB_OP + 6)
#define AB_OP_VALUE_LEN (AB_OP + 10)
#define AB_BLOB_BYTES (AB_OP + 8 + 2 + 4 + 3)

/* ------------------------------------------------------------------ round trips */

static void check_roundtrip_batch(const sm_batch_t *b)
{
	enc_t e = encode_batch(b);
	codec_decoded_t d;
	ck_assert_int_eq(codec_batch_decode(e.buf, e.len, &d), 0);
	ck_assert(batch_eq(b, &d.batch));
	/* zero copy: every key points into the input */
	for (uint32_t i = 0; i < d.batch.n_txn; i++)
		for (uint32_t j = 0; j < d.batch.txns[i].n_success; j++) {
			const sm_op_t *op = &d.batch.txns[i].success[j];
			ck_assert(op->key >= (const char *)e.buf && op->key <= (const char *)e.buf + e.len);
		}
	codec_decoded_free(&d);
	ck_assert_ptr_null(d.mem);
	free(e.buf);
}

static void check_roundtrip_txn(const sm_txn_t *t)
{
	enc_t e = encode_txn(t);
	size_t blob_len = 0;
	ck_assert_int_eq(codec_txn_blob_check(e.buf, e.len, &blob_len), 0);
	ck_assert_uint_eq(blob_len, e.len);
	codec_decoded_t d;
	ck_assert_int_eq(codec_txn_decode(e.buf, e.len, &d), 0);
	ck_assert_uint_eq(d.batch.n_txn, 1);
	ck_assert(txn_eq(t, &d.batch.txns[0]));
	codec_decoded_free(&d);
	free(e.buf);
	sm_batch_t b = {1, t};
	check_roundtrip_batch(&b);
}

START_TEST(roundtrip_every_op_type)
{
	static const char big_key[SM_KEY_BYTES_MAX] = {'k'};
	for (int type = SM_OP_GET; type <= SM_OP_SYMLINK; type++) {
		sm_op_t op = {
			.type = (sm_op_type_t)type,
			.flags = SM_F_PREFIX | SM_F_EXCL | SM_F_TRUNC | SM_F_CREATE | SM_F_NOREPLACE |
				 SM_F_EXCHANGE | SM_F_KEYS_ONLY,
			.key = big_key, .key_len = sizeof(big_key),
			.value = (const uint8_t *)"v\0\xff", .value_len = 3,
			.mode = 0100644, .uid = 1000, .gid = UINT32_MAX,
			.attr_mask = SM_ATTR_MODE | SM_ATTR_UID | SM_ATTR_GID | SM_ATTR_SIZE | SM_ATTR_MTIME,
			.size = UINT64_MAX, .mtime_ns = INT64_MIN, .limit = 42, .ino = (1ull << 56) | 7,
		};
		if (type == SM_OP_GET || type == SM_OP_DEL || type == SM_OP_RENAME) {
			op.key2 = "z/\0y";
			op.key2_len = 4;
		}
		sm_txn_t t = {.origin_node = UINT32_MAX, .origin_seq = UINT64_MAX,
			      .time_ns = INT64_MAX, .flags = SM_TXN_FROM_FS,
			      .n_success = 1, .success = &op, .n_failure = 1, .failure = &op};
		check_roundtrip_txn(&t);
		/* each flag alone, each optional group alone */
		for (int bit = 0; bit < 7; bit++) {
			sm_op_t o = {.type = (sm_op_type_t)type, .flags = 1u << bit, .key = "a", .key_len = 1};
			if (type == SM_OP_RENAME) {
				o.key2 = "";
				o.key2_len = 0;
			}
			sm_txn_t t1 = {.n_success = 1, .success = &o};
			check_roundtrip_txn(&t1);
			o.flags = 0;
			o.value = (const uint8_t *)"";
			check_roundtrip_txn(&t1); /* empty but present value stays non-NULL */
			o.value = NULL;
			o.gid = 1;
			check_roundtrip_txn(&t1);
			o.gid = 0;
			o.mtime_ns = -1;
			check_roundtrip_txn(&t1);
			o.mtime_ns = 0;
			o.limit = 1;
			check_roundtrip_txn(&t1);
			o.limit = 0;
			o.ino = 0;
			check_roundtrip_txn(&t1);
			o.ino = UINT64_MAX;
			check_roundtrip_txn(&t1);
		}
	}
}
END_TEST

START_TEST(roundtrip_every_compare)
{
	static const int64_t numbers[] = {0, 1, -1, INT64_MAX, INT64_MIN, 1234567890123};
	sm_compare_t cs[4 * 4 * 6];
	size_t n = 0;
	for (int target = SM_CMP_VALUE; target <= SM_CMP_MOD; target++)
		for (int op = SM_CMP_EQ; op <= SM_CMP_GT; op++)
			for (size_t i = 0; i < sizeof(numbers) / sizeof(numbers[0]); i++) {
				sm_compare_t *c = &cs[n++];
				memset(c, 0, sizeof(*c));
				c->target = (sm_cmp_target_t)target;
				c->op = (sm_cmp_op_t)op;
				c->key = i == 0 ? "" : "app/x";
				c->key_len = i == 0 ? 0 : 5;
				if (target == SM_CMP_VALUE) {
					c->value = (const uint8_t *)"4\0002";
					c->value_len = i % 4;
				} else {
					c->number = numbers[i];
				}
			}
	sm_txn_t t = {.n_compare = (uint32_t)n, .compares = cs};
	check_roundtrip_txn(&t);
}
END_TEST

START_TEST(roundtrip_random)
{
	gen_t *g = gen_new(1);
	for (int i = 0; i < 500; i++) {
		gen_reset(g);
		sm_batch_t b = gen_batch(g, (uint32_t)rnd_below(g, 8));
		check_roundtrip_batch(&b);
		if (b.n_txn)
			check_roundtrip_txn(&b.txns[0]);
	}
	free(g);
}
END_TEST

START_TEST(empty_batch)
{
	sm_batch_t b = {0, NULL};
	ck_assert_uint_eq(codec_batch_size(&b), CODEC_BATCH_HEADER_BYTES);
	enc_t e = encode_batch(&b);
	codec_decoded_t d;
	ck_assert_int_eq(codec_batch_decode(e.buf, e.len, &d), 0);
	ck_assert_uint_eq(d.batch.n_txn, 0);
	codec_decoded_free(&d);
	/* and a txn with nothing in it */
	sm_txn_t t = {0};
	check_roundtrip_txn(&t);
	ck_assert_uint_eq(codec_txn_size(&t), CODEC_TXN_HEADER_BYTES);
	/* the builder makes the same empty batch */
	codec_batch_t builder;
	ck_assert_int_eq(codec_batch_begin(&builder), 0);
	size_t len;
	uint8_t *built = codec_batch_finish(&builder, &len);
	ck_assert_uint_eq(len, e.len);
	ck_assert_mem_eq(built, e.buf, len);
	free(built);
	free(e.buf);
}
END_TEST

START_TEST(encode_cap_too_small)
{
	enc_t e = encode_txn(&txn_put_ab);
	uint8_t small[AB_BLOB_BYTES];
	memset(small, 0xaa, sizeof(small));
	ck_assert_uint_eq(e.len, AB_BLOB_BYTES);
	ck_assert_uint_eq(codec_txn_encode(&txn_put_ab, small, sizeof(small) - 1), 0);
	ck_assert_uint_eq(small[0], 0xaa); /* nothing written */
	sm_batch_t b = {1, &txn_put_ab};
	size_t need = codec_batch_size(&b);
	uint8_t *bb = malloc(need);
	ck_assert_ptr_nonnull(bb);
	ck_assert_uint_eq(codec_batch_encode(&b, bb, need - 1), 0);
	ck_assert_uint_eq(codec_batch_encode(&b, bb, need), need);
	free(bb);
	free(e.buf);
}
END_TEST

START_TEST(batch_from_blobs_equals_whole)
{
	gen_t *g = gen_new(2);
	for (int round = 0; round < 50; round++) {
		gen_reset(g);
		sm_batch_t b = gen_batch(g, (uint32_t)rnd_below(g, 10));
		enc_t whole = encode_batch(&b);
		codec_batch_t by_blob, by_txn;
		ck_assert_int_eq(codec_batch_begin(&by_blob), 0);
		ck_assert_int_eq(codec_batch_begin(&by_txn), 0);
		/* the follower's path: blobs sent back to back in one message, checked, appended */
		size_t msg_len = 0;
		for (uint32_t i = 0; i < b.n_txn; i++)
			msg_len += codec_txn_size(&b.txns[i]);
		uint8_t *msg = malloc(msg_len + 1);
		ck_assert_ptr_nonnull(msg);
		size_t at = 0;
		for (uint32_t i = 0; i < b.n_txn; i++)
			at += codec_txn_encode(&b.txns[i], msg + at, msg_len - at);
		ck_assert_uint_eq(at, msg_len);
		for (size_t off = 0; off < msg_len;) {
			size_t blob_len;
			ck_assert_int_eq(codec_txn_blob_check(msg + off, msg_len - off, &blob_len), 0);
			ck_assert_int_eq(codec_batch_append_txn_blob(&by_blob, msg + off, blob_len), 0);
			off += blob_len;
		}
		for (uint32_t i = 0; i < b.n_txn; i++)
			ck_assert_int_eq(codec_batch_append_txn(&by_txn, &b.txns[i]), 0);
		ck_assert_uint_eq(by_blob.n_txn, b.n_txn);
		size_t len1, len2;
		uint8_t *b1 = codec_batch_finish(&by_blob, &len1);
		uint8_t *b2 = codec_batch_finish(&by_txn, &len2);
		ck_assert_ptr_null(by_blob.buf);
		ck_assert_uint_eq(len1, whole.len);
		ck_assert_uint_eq(len2, whole.len);
		ck_assert_mem_eq(b1, whole.buf, whole.len);
		ck_assert_mem_eq(b2, whole.buf, whole.len);
		free(b1);
		free(b2);
		free(msg);
		free(whole.buf);
	}
	free(g);
}
END_TEST

START_TEST(builder_grows_and_discards)
{
	/* past the initial 4 KiB several times */
	static uint8_t value[100000];
	sm_op_t op = {.type = SM_OP_PUT, .key = "k", .key_len = 1, .value = value, .value_len = sizeof(value)};
	sm_txn_t t = {.n_success = 1, .success = &op};
	codec_batch_t b;
	ck_assert_int_eq(codec_batch_begin(&b), 0);
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(codec_batch_append_txn(&b, &t), 0);
	ck_assert_uint_ge(b.cap_bytes, b.len_bytes);
	codec_batch_discard(&b);
	ck_assert_ptr_null(b.buf);
	codec_batch_discard(&b); /* twice is harmless */
}
END_TEST

/* ------------------------------------------------------------------ rejections */

START_TEST(truncated_at_every_offset)
{
	gen_t *g = gen_new(3);
	for (int round = 0; round < 6; round++) {
		gen_reset(g);
		sm_batch_t b = gen_batch(g, 1 + (uint32_t)rnd_below(g, 4));
		enc_t e = encode_batch(&b);
		for (size_t len = 0; len < e.len; len++)
			ck_assert_int_eq(decode_exact(e.buf, len, true), -EINVAL);
		ck_assert_int_eq(decode_exact(e.buf, e.len, true), 0);
		free(e.buf);
		/* and one blob on its own */
		enc_t t = encode_txn(&b.txns[0]);
		for (size_t len = 0; len < t.len; len++) {
			ck_assert_int_eq(decode_exact(t.buf, len, false), -EINVAL);
			uint8_t *copy = malloc(len ? len : 1);
			ck_assert_ptr_nonnull(copy);
			memcpy(copy, t.buf, len);
			size_t blob_len = 12345;
			ck_assert_int_eq(codec_txn_blob_check(copy, len, &blob_len), -EINVAL);
			ck_assert_uint_eq(blob_len, 12345); /* untouched on error */
			free(copy);
		}
		free(t.buf);
	}
	free(g);
}
END_TEST

START_TEST(bad_magic_version_reserved)
{
	sm_batch_t b = {1, &txn_put_ab};
	enc_t e = encode_batch(&b);
	for (int i = 0; i < 4; i++) {
		e.buf[i] ^= 0x20;
		ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EINVAL);
		e.buf[i] ^= 0x20;
	}
	e.buf[4] = 2; /* batch version */
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EPROTO);
	e.buf[4] = 0;
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EPROTO);
	e.buf[4] = CODEC_VERSION;
	for (int i = 5; i < 8; i++) {
		e.buf[i] = 1; /* reserved */
		ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EINVAL);
		e.buf[i] = 0;
	}
	/* a blob of another version: in a batch, alone, and at the leader's check */
	e.buf[CODEC_BATCH_HEADER_BYTES + 4] = 2;
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EPROTO);
	size_t blob_len;
	ck_assert_int_eq(codec_txn_blob_check(e.buf + CODEC_BATCH_HEADER_BYTES,
					      e.len - CODEC_BATCH_HEADER_BYTES, &blob_len), -EPROTO);
	ck_assert_int_eq(decode_exact(e.buf + CODEC_BATCH_HEADER_BYTES,
				      e.len - CODEC_BATCH_HEADER_BYTES, false), -EPROTO);
	e.buf[CODEC_BATCH_HEADER_BYTES + 4] = CODEC_VERSION;
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), 0);
	free(e.buf);
}
END_TEST

START_TEST(counts_too_large)
{
	/* batch: n_txn over the limit, and a count the bytes cannot hold */
	uint8_t hdr[CODEC_BATCH_HEADER_BYTES + 100] = {0};
	sm_batch_t empty = {0, NULL};
	ck_assert_uint_eq(codec_batch_encode(&empty, hdr, sizeof(hdr)), CODEC_BATCH_HEADER_BYTES);
	le32_put(hdr + 12, sizeof(hdr));
	le32_put(hdr + 8, CODEC_BATCH_TXNS_MAX + 1);
	ck_assert_int_eq(decode_exact(hdr, sizeof(hdr), true), -EINVAL);
	le32_put(hdr + 8, CODEC_BATCH_TXNS_MAX);
	ck_assert_int_eq(decode_exact(hdr, sizeof(hdr), true), -EINVAL);
	le32_put(hdr + 8, UINT32_MAX);
	ck_assert_int_eq(decode_exact(hdr, sizeof(hdr), true), -EINVAL);
	/* txn: compares, success, failure over 1024 each */
	enc_t t = encode_txn(&txn_put_ab);
	for (int which = 0; which < 3; which++) {
		uint8_t *p = t.buf + 29 + 2 * which;
		uint16_t saved = (uint16_t)(p[0] | p[1] << 8);
		le16_put(p, CODEC_TXN_OPS_MAX + 1);
		ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
		le16_put(p, UINT16_MAX);
		ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
		le16_put(p, saved);
	}
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), 0);
	free(t.buf);
}
END_TEST

START_TEST(lengths_past_the_end)
{
	enc_t t = encode_txn(&txn_put_ab);
	ck_assert_uint_eq(t.len, AB_BLOB_BYTES);
	/* blob length */
	le32_put(t.buf, AB_BLOB_BYTES + 1);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le32_put(t.buf, UINT32_MAX);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le32_put(t.buf, CODEC_TXN_HEADER_BYTES - 1); /* shorter than a header */
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le32_put(t.buf, AB_BLOB_BYTES - 1); /* shorter than its content */
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le32_put(t.buf, AB_BLOB_BYTES);
	/* key length */
	le16_put(t.buf + AB_OP_KEY_LEN, 200);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le16_put(t.buf + AB_OP_KEY_LEN, SM_KEY_BYTES_MAX + 1);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le16_put(t.buf + AB_OP_KEY_LEN, 2);
	/* value length */
	le32_put(t.buf + AB_OP_VALUE_LEN, 4);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le32_put(t.buf + AB_OP_VALUE_LEN, UINT32_MAX);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	le32_put(t.buf + AB_OP_VALUE_LEN, 3);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), 0);
	/* batch total_bytes pointing past the input, or short of it */
	sm_batch_t b = {1, &txn_put_ab};
	enc_t e = encode_batch(&b);
	le32_put(e.buf + 12, (uint32_t)e.len + 1);
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EINVAL);
	le32_put(e.buf + 12, (uint32_t)e.len - 1);
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EINVAL);
	/* n_txn larger than the blobs present, or smaller */
	le32_put(e.buf + 12, (uint32_t)e.len);
	le32_put(e.buf + 8, 2);
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EINVAL);
	le32_put(e.buf + 8, 0);
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), -EINVAL);
	le32_put(e.buf + 8, 1);
	ck_assert_int_eq(decode_exact(e.buf, e.len, true), 0);
	free(e.buf);
	free(t.buf);
}
END_TEST

START_TEST(unknown_enums_and_bits)
{
	enc_t t = encode_txn(&txn_put_ab);
	static const uint8_t bad_types[] = {0, SM_OP_SYMLINK + 1, 0x80, 0xff};
	for (size_t i = 0; i < sizeof(bad_types); i++) {
		t.buf[AB_OP_TYPE] = bad_types[i];
		ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	}
	t.buf[AB_OP_TYPE] = SM_OP_PUT;
	for (int bit = 7; bit < 32; bit++) { /* op flags */
		le32_put(t.buf + AB_OP_FLAGS, 1u << bit);
		ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	}
	le32_put(t.buf + AB_OP_FLAGS, 0);
	for (int bit = 5; bit < 8; bit++) { /* op presence bits */
		t.buf[AB_OP_PRESENT] = (uint8_t)(0x02 | 1u << bit);
		ck_assert_int_eq(decode_exact(t.buf, t.len, false), -EINVAL);
	}
	t.buf[AB_OP_PRESENT] = 0x02;
	for (int bit = 0; bit < 32; bit++) { /* txn flags (offset 25) */
		le32_put(t.buf + 25, 1u << bit);
		ck_assert_int_eq(decode_exact(t.buf, t.len, false), (SM_TXN_FLAGS_ALL & 1u << bit) ? 0 : -EINVAL);
	}
	le32_put(t.buf + 25, SM_TXN_FLAGS_ALL);
	ck_assert_int_eq(decode_exact(t.buf, t.len, false), 0);
	free(t.buf);

	/* attr_mask bits, compare target and op */
	sm_op_t op = {.type = SM_OP_SETATTR, .key = "k", .key_len = 1, .attr_mask = SM_ATTR_MTIME};
	sm_compare_t c = {.target = SM_CMP_MOD, .op = SM_CMP_GT, .key = "k", .key_len = 1, .number = 5};
	sm_txn_t tx = {.n_compare = 1, .compares = &c, .n_success = 1, .success = &op};
	enc_t u = encode_txn(&tx);
	size_t cmp_at = CODEC_TXN_HEADER_BYTES, op_at = cmp_at + 4 + 1 + 8;
	size_t mask_at = op_at + 8 + 1; /* after type, present, flags, key_len, key */
	ck_assert_uint_eq(u.buf[op_at + 1], 0x08);
	for (int bit = 5; bit < 32; bit++) {
		le32_put(u.buf + mask_at, 1u << bit);
		ck_assert_int_eq(decode_exact(u.buf, u.len, false), -EINVAL);
	}
	le32_put(u.buf + mask_at, SM_ATTR_MTIME);
	static const uint8_t bad_cmp[] = {0, 5, 0xff};
	for (size_t i = 0; i < sizeof(bad_cmp); i++) {
		u.buf[cmp_at] = bad_cmp[i];
		ck_assert_int_eq(decode_exact(u.buf, u.len, false), -EINVAL);
		u.buf[cmp_at] = SM_CMP_MOD;
		u.buf[cmp_at + 1] = bad_cmp[i];
		ck_assert_int_eq(decode_exact(u.buf, u.len, false), -EINVAL);
		u.buf[cmp_at + 1] = SM_CMP_GT;
	}
	ck_assert_int_eq(decode_exact(u.buf, u.len, false), 0);
	free(u.buf);
}
END_TEST

START_TEST(key2_rules)
{
	/* RENAME without key2: present bit cleared and its 2 length bytes dropped */
	sm_op_t op = {.type = SM_OP_RENAME, .key = "a", .key_len = 1, .key2 = "", .key2_len = 0};
	sm_txn_t t = {.n_success = 1, .success = &op};
	enc_t e = encode_txn(&t);
	size_t op_at = CODEC_TXN_HEADER_BYTES;
	ck_assert_uint_eq(e.buf[op_at + 1], 0x01);
	e.buf[op_at + 1] = 0;
	le32_put(e.buf, (uint32_t)e.len - 2);
	ck_assert_int_eq(decode_exact(e.buf, e.len - 2, false), -EINVAL);
	/* the same bytes as an UNLINK are fine; key2 on an UNLINK is not */
	e.buf[op_at] = SM_OP_UNLINK;
	ck_assert_int_eq(decode_exact(e.buf, e.len - 2, false), 0);
	e.buf[op_at + 1] = 0x01;
	le32_put(e.buf, (uint32_t)e.len);
	ck_assert_int_eq(decode_exact(e.buf, e.len, false), -EINVAL);
	e.buf[op_at] = SM_OP_GET;
	ck_assert_int_eq(decode_exact(e.buf, e.len, false), 0);
	free(e.buf);
}
END_TEST

START_TEST(trailing_bytes)
{
	sm_batch_t b = {1, &txn_put_ab};
	enc_t e = encode_batch(&b);
	uint8_t *longer = calloc(1, e.len + 1);
	ck_assert_ptr_nonnull(longer);
	memcpy(longer, e.buf, e.len);
	ck_assert_int_eq(decode_exact(longer, e.len + 1, true), -EINVAL); /* total_bytes != len */
	le32_put(longer + 12, (uint32_t)e.len + 1);
	ck_assert_int_eq(decode_exact(longer, e.len + 1, true), -EINVAL); /* a byte after the blobs */
	/* a byte inside a blob that no field claims */
	le32_put(longer + CODEC_BATCH_HEADER_BYTES, AB_BLOB_BYTES + 1);
	ck_assert_int_eq(decode_exact(longer, e.len + 1, true), -EINVAL);
	ck_assert_int_eq(decode_exact(longer + CODEC_BATCH_HEADER_BYTES, AB_BLOB_BYTES + 1, false), -EINVAL);
	/* one txn with a byte after it */
	enc_t t = encode_txn(&txn_put_ab);
	uint8_t *t2 = calloc(1, t.len + 1);
	ck_assert_ptr_nonnull(t2);
	memcpy(t2, t.buf, t.len);
	ck_assert_int_eq(decode_exact(t2, t.len + 1, false), -EINVAL);
	size_t blob_len;
	ck_assert_int_eq(codec_txn_blob_check(t2, t.len + 1, &blob_len), 0); /* sizes only the first */
	ck_assert_uint_eq(blob_len, t.len);
	free(t2);
	free(t.buf);
	free(longer);
	free(e.buf);
}
END_TEST

/* ------------------------------------------------------------------ codec_txn_check errnos */

START_TEST(txn_check_errnos)
{
	sm_op_t op = {.type = SM_OP_PUT, .key = "k", .key_len = 1};
	sm_compare_t c = {.target = SM_CMP_VALUE, .op = SM_CMP_EQ, .key = "k", .key_len = 1};
	sm_txn_t t = {.n_compare = 1, .compares = &c, .n_success = 1, .success = &op};
	ck_assert_int_eq(codec_txn_check(&t), 0);

	op.type = 0;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	op.type = SM_OP_SYMLINK + 1;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	op.type = SM_OP_PUT;
	op.flags = 1u << 7;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	op.flags = 0;
	op.attr_mask = 1u << 5;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	op.attr_mask = 0;
	op.key2 = "x";
	op.key2_len = 1;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL); /* key2 on a PUT */
	op.key2 = NULL;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL); /* NULL with a length */
	op.key2_len = 0;
	op.type = SM_OP_RENAME;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL); /* RENAME without key2 */
	op.type = SM_OP_PUT;
	op.value_len = 1;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	op.value_len = 0;
	c.target = 0;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	c.target = SM_CMP_MOD + 1;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	c.target = SM_CMP_VALUE;
	c.op = SM_CMP_GT + 1;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	c.op = SM_CMP_EQ;
	t.flags = SM_TXN_FLAGS_ALL + 1;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	t.flags = 0;
	t.success = NULL;
	ck_assert_int_eq(codec_txn_check(&t), -EINVAL);
	t.success = &op;

	static char long_key[SM_KEY_BYTES_MAX + 1];
	op.key = long_key;
	op.key_len = sizeof(long_key);
	ck_assert_int_eq(codec_txn_check(&t), -ENAMETOOLONG);
	op.key_len = SM_KEY_BYTES_MAX;
	ck_assert_int_eq(codec_txn_check(&t), 0);
	c.key = long_key;
	c.key_len = sizeof(long_key);
	ck_assert_int_eq(codec_txn_check(&t), -ENAMETOOLONG);
	c.key_len = 1;

	uint8_t *big = calloc(1, CODEC_VALUE_BYTES_MAX + 1);
	ck_assert_ptr_nonnull(big);
	op.value = big;
	op.value_len = CODEC_VALUE_BYTES_MAX + 1;
	ck_assert_int_eq(codec_txn_check(&t), -EFBIG);
	op.value_len = CODEC_VALUE_BYTES_MAX;
	ck_assert_int_eq(codec_txn_check(&t), 0);
	c.value = big;
	c.value_len = CODEC_VALUE_BYTES_MAX + 1;
	ck_assert_int_eq(codec_txn_check(&t), -EFBIG);
	c.value_len = 0;

	/* a blob over CODEC_TXN_BYTES_MAX: enough maximal values */
	sm_op_t many[CODEC_TXN_BYTES_MAX / CODEC_VALUE_BYTES_MAX + 1];
	for (size_t i = 0; i < sizeof(many) / sizeof(many[0]); i++)
		many[i] = op;
	sm_txn_t fat = {.n_success = sizeof(many) / sizeof(many[0]), .success = many};
	ck_assert_int_eq(codec_txn_check(&fat), -E2BIG);
	fat.n_success--;
	ck_assert_int_eq(codec_txn_check(&fat), 0);
	free(big);

	/* too many compares or ops */
	sm_op_t *ops = calloc(CODEC_TXN_OPS_MAX + 1, sizeof(*ops));
	ck_assert_ptr_nonnull(ops);
	sm_compare_t *cs = calloc(CODEC_TXN_COMPARES_MAX + 1, sizeof(*cs));
	ck_assert_ptr_nonnull(cs);
	for (size_t i = 0; i <= CODEC_TXN_OPS_MAX; i++)
		ops[i] = (sm_op_t){.type = SM_OP_GET};
	for (size_t i = 0; i <= CODEC_TXN_COMPARES_MAX; i++)
		cs[i] = (sm_compare_t){.target = SM_CMP_VERSION, .op = SM_CMP_EQ};
	sm_txn_t wide = {.n_compare = CODEC_TXN_COMPARES_MAX, .compares = cs,
			 .n_success = CODEC_TXN_OPS_MAX, .success = ops,
			 .n_failure = CODEC_TXN_OPS_MAX, .failure = ops};
	ck_assert_int_eq(codec_txn_check(&wide), 0);
	check_roundtrip_txn(&wide);
	wide.n_compare++;
	ck_assert_int_eq(codec_txn_check(&wide), -E2BIG);
	wide.n_compare--;
	wide.n_success++;
	ck_assert_int_eq(codec_txn_check(&wide), -E2BIG);
	wide.n_success--;
	wide.n_failure++;
	ck_assert_int_eq(codec_txn_check(&wide), -E2BIG);
	free(ops);
	free(cs);
}
END_TEST

/* ------------------------------------------------------------------ builder limits */

START_TEST(builder_full_is_e2big)
{
	enc_t t = encode_txn(&txn_put_ab);
	codec_batch_t b;
	ck_assert_int_eq(codec_batch_begin(&b), 0);
	for (uint32_t i = 0; i < CODEC_BATCH_TXNS_MAX; i++)
		ck_assert_int_eq(codec_batch_append_txn_blob(&b, t.buf, t.len), 0);
	size_t len_before = b.len_bytes;
	ck_assert_int_eq(codec_batch_append_txn_blob(&b, t.buf, t.len), -E2BIG);
	ck_assert_int_eq(codec_batch_append_txn(&b, &txn_put_ab), -E2BIG);
	ck_assert_uint_eq(b.len_bytes, len_before);
	ck_assert_uint_eq(b.n_txn, CODEC_BATCH_TXNS_MAX);
	size_t len;
	uint8_t *buf = codec_batch_finish(&b, &len);
	codec_decoded_t d;
	ck_assert_int_eq(codec_batch_decode(buf, len, &d), 0);
	ck_assert_uint_eq(d.batch.n_txn, CODEC_BATCH_TXNS_MAX);
	ck_assert(txn_eq(&d.batch.txns[CODEC_BATCH_TXNS_MAX - 1], &txn_put_ab));
	codec_decoded_free(&d);
	free(buf);
	free(t.buf);
}
END_TEST

/* -ENOMEM needs an allocation to fail: cap the address space in this forked test process.
 * Sanitizer runtimes reserve huge shadow mappings and abort on failed allocations, so the
 * test only runs in a plain build. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

START_TEST(out_of_memory)
{
#ifdef UNDER_ASAN
	return;
#else
	/* a batch of many small txns: the arrays are ~10x its bytes */
	static sm_op_t ops[CODEC_TXN_OPS_MAX];
	for (size_t i = 0; i < CODEC_TXN_OPS_MAX; i++)
		ops[i] = (sm_op_t){.type = SM_OP_UNLINK};
	sm_txn_t t = {.n_success = CODEC_TXN_OPS_MAX, .success = ops};
	codec_batch_t b;
	ck_assert_int_eq(codec_batch_begin(&b), 0);
	for (int i = 0; i < 4096; i++) /* 4096 * ~8 KiB = 32 MiB of input, ~400 MiB of arrays */
		ck_assert_int_eq(codec_batch_append_txn(&b, &t), 0);
	size_t len;
	uint8_t *buf = codec_batch_finish(&b, &len);
	codec_batch_t grow;
	ck_assert_int_eq(codec_batch_begin(&grow), 0);

	struct rlimit lim;
	ck_assert_int_eq(getrlimit(RLIMIT_AS, &lim), 0);
	FILE *f = fopen("/proc/self/statm", "r");
	ck_assert_ptr_nonnull(f);
	unsigned long pages = 0;
	ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	struct rlimit saved = lim;
	lim.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + (64ul << 20);
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);

	codec_decoded_t d;
	ck_assert_int_eq(codec_batch_decode(buf, len, &d), -ENOMEM);
	ck_assert_ptr_null(d.mem);
	int rc = 0;
	for (int i = 0; i < 100 && rc == 0; i++) /* grow the builder until realloc fails */
		rc = codec_batch_append_txn_blob(&grow, buf + CODEC_BATCH_HEADER_BYTES, codec_txn_size(&t));
	ck_assert_int_eq(rc, 0);
	for (int i = 0; i < 40000 && rc == 0; i++)
		rc = codec_batch_append_txn(&grow, &t);
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &saved), 0);
	ck_assert_int_eq(rc, -ENOMEM);
	codec_batch_discard(&grow);
	free(buf);
#endif
}
END_TEST

/* ------------------------------------------------------------------ mutation */

/* Flip bytes of valid encodings: decode must fail cleanly or succeed, and what succeeds must
 * re-encode to bytes that decode to the same structure. */
START_TEST(random_mutation)
{
	gen_t *g = gen_new(4);
	enum { ROUNDS = 100000, CORPUS = 16 };
	enc_t corpus[CORPUS];
	for (int i = 0; i < CORPUS; i++) {
		gen_reset(g);
		sm_batch_t b = gen_batch(g, (uint32_t)rnd_below(g, 4));
		corpus[i] = encode_batch(&b);
	}
	size_t ok = 0;
	for (int round = 0; round < ROUNDS; round++) {
		const enc_t *src = &corpus[rnd_below(g, CORPUS)];
		size_t len = src->len;
		switch (rnd_below(g, 8)) { /* sometimes change the length too */
		case 0:
			len = rnd_below(g, len + 1);
			break;
		case 1:
			len += 1 + rnd_below(g, 8);
			break;
		default:
			break;
		}
		uint8_t *buf = malloc(len);
		ck_assert_ptr_nonnull(buf);
		for (size_t i = 0; i < len; i++)
			buf[i] = i < src->len ? src->buf[i] : (uint8_t)rnd(g);
		int flips = 1 + (int)rnd_below(g, 4);
		for (int f = 0; f < flips && len > 0; f++) {
			size_t at = rnd_below(g, len);
			buf[at] = rnd_below(g, 2) ? (uint8_t)rnd(g) : buf[at] ^ (uint8_t)(1u << rnd_below(g, 8));
		}
		bool whole = rnd_below(g, 4) != 0;
		const uint8_t *in = whole ? buf : buf + (len > 16 ? 16 : len);
		size_t in_len = whole ? len : len - (size_t)(in - buf);
		codec_decoded_t d;
		int rc = whole ? codec_batch_decode(in, in_len, &d) : codec_txn_decode(in, in_len, &d);
		if (!whole) {
			size_t blob_len;
			int rc2 = codec_txn_blob_check(in, in_len, &blob_len);
			ck_assert(rc2 == 0 || rc2 == -EINVAL || rc2 == -EPROTO);
			if (rc == 0)
				ck_assert(rc2 == 0 && blob_len == in_len);
		}
		if (rc == 0) {
			ok++;
			enc_t again = encode_batch(&d.batch);
			codec_decoded_t d2;
			ck_assert_int_eq(codec_batch_decode(again.buf, again.len, &d2), 0);
			ck_assert(batch_eq(&d.batch, &d2.batch));
			codec_decoded_free(&d2);
			codec_decoded_free(&d);
			free(again.buf);
		} else {
			ck_assert(rc == -EINVAL || rc == -EPROTO);
		}
		free(buf);
	}
	ck_assert_uint_gt(ok, 0); /* some mutations (in values, numbers) keep it valid */
	for (int i = 0; i < CORPUS; i++)
		free(corpus[i].buf);
	free(g);
}
END_TEST

/* ------------------------------------------------------------------ seed corpus */

static void write_seed(const char *dir, int n, const enc_t *e)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/seed-%03d", dir, n);
	FILE *f = fopen(path, "wb");
	ck_assert_msg(f != NULL, "cannot write %s", path);
	ck_assert_uint_eq(fwrite(e->buf, 1, e->len, f), e->len);
	ck_assert_int_eq(fclose(f), 0);
}

START_TEST(seeds)
{
	const char *dir = getenv("CODEC_SEED_DIR");
	if (dir == NULL)
		return;
	gen_t *g = gen_new(5);
	int n = 0;
	sm_batch_t empty = {0, NULL};
	enc_t e = encode_batch(&empty);
	write_seed(dir, n++, &e);
	free(e.buf);
	for (int i = 0; i < 40; i++) {
		gen_reset(g);
		sm_batch_t b = gen_batch(g, (uint32_t)rnd_below(g, 4));
		e = encode_batch(&b);
		if (e.len <= 4096)
			write_seed(dir, n++, &e);
		free(e.buf);
	}
	free(g);
}
END_TEST

static Suite *codec_suite(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("roundtrip");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, roundtrip_every_op_type);
	tcase_add_test(tc, roundtrip_every_compare);
	tcase_add_test(tc, roundtrip_random);
	tcase_add_test(tc, empty_batch);
	tcase_add_test(tc, encode_cap_too_small);
	tcase_add_test(tc, batch_from_blobs_equals_whole);
	tcase_add_test(tc, builder_grows_and_discards);
	suite_add_tcase(s, tc);
	tc = tcase_create("reject");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, truncated_at_every_offset);
	tcase_add_test(tc, bad_magic_version_reserved);
	tcase_add_test(tc, counts_too_large);
	tcase_add_test(tc, lengths_past_the_end);
	tcase_add_test(tc, unknown_enums_and_bits);
	tcase_add_test(tc, key2_rules);
	tcase_add_test(tc, trailing_bytes);
	tcase_add_test(tc, txn_check_errnos);
	suite_add_tcase(s, tc);
	tc = tcase_create("limits");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, builder_full_is_e2big);
	tcase_add_test(tc, out_of_memory);
	suite_add_tcase(s, tc);
	tc = tcase_create("mutation");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, random_mutation);
	suite_add_tcase(s, tc);
	tc = tcase_create("seeds");
	tcase_add_test(tc, seeds);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(codec_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
