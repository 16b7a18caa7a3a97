/* codec.c - encoder and decoder of txn blobs and batches (the layout is in codec.h).
 *
 * One set of parse functions serves both decoding passes: the first walks the whole input into
 * throw-away structs to validate it and count compares and ops, the second fills the arrays
 * of the single allocation sized from those counts. So nothing is allocated for input that
 * does not decode, and the allocation is bounded by the input length (every compare and op
 * costs at least 8 input bytes). One validation function (txn_valid) is used by
 * codec_txn_check, by the encoder's assertions and by the decoder, so the two sides agree.
 */
#include "codec.h"

#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum {
	OP_HAS_KEY2 = 1u << 0,
	OP_HAS_VALUE = 1u << 1,
	OP_HAS_ATTRS = 1u << 2,   /* mode, uid, gid */
	OP_HAS_SETATTR = 1u << 3, /* attr_mask, size, mtime_ns */
	OP_HAS_LIMIT = 1u << 4,
	OP_HAS_INO = 1u << 5,     /* proposer-chosen inode number */
	OP_HAS_ALL = (1u << 6) - 1,
};

#define OP_MIN_BYTES 8u      /* type, present, flags, key_len */
#define COMPARE_MIN_BYTES 8u /* target, op, key_len, value_len (or number: 12) */
#define OP_FLAGS_ALL ((uint32_t)(SM_F_PREFIX | SM_F_EXCL | SM_F_TRUNC | SM_F_CREATE | \
				  SM_F_NOREPLACE | SM_F_EXCHANGE | SM_F_KEYS_ONLY))
#define ATTR_ALL ((uint32_t)(SM_ATTR_MODE | SM_ATTR_UID | SM_ATTR_GID | SM_ATTR_SIZE | SM_ATTR_MTIME))
#define TXN_FLAGS_ALL ((uint32_t)SM_TXN_FLAGS_ALL)

/* The promise in codec.h: at most 16 bytes of arrays per input byte. */
_Static_assert(sizeof(sm_op_t) <= 16 * OP_MIN_BYTES, "op array bound");
_Static_assert(sizeof(sm_compare_t) <= 16 * COMPARE_MIN_BYTES, "compare array bound");
_Static_assert(sizeof(sm_txn_t) <= 16 * CODEC_TXN_HEADER_BYTES, "txn array bound");
_Static_assert(SM_KEY_BYTES_MAX <= 0xffffu, "key lengths fit u16");
_Static_assert(CODEC_TXN_OPS_MAX <= 0xffffu && CODEC_TXN_COMPARES_MAX <= 0xffffu, "counts fit u16");
_Static_assert(CODEC_BATCH_BYTES_MAX <= UINT32_MAX && CODEC_TXN_BYTES_MAX <= CODEC_BATCH_BYTES_MAX,
	       "lengths fit u32");

/* ------------------------------------------------------------------ validation (both sides) */

static bool key2_allowed(sm_op_type_t type)
{
	return type == SM_OP_GET || type == SM_OP_DEL || type == SM_OP_RENAME;
}

static int op_valid(const sm_op_t *op)
{
	if (op->type < SM_OP_GET || op->type > SM_OP_SYMLINK)
		return -EINVAL;
	if ((op->flags & ~OP_FLAGS_ALL) != 0 || (op->attr_mask & ~ATTR_ALL) != 0)
		return -EINVAL;
	if ((op->key == NULL && op->key_len != 0) || (op->value == NULL && op->value_len != 0))
		return -EINVAL;
	if (op->key2 == NULL && op->key2_len != 0)
		return -EINVAL;
	if (op->key2 != NULL && !key2_allowed(op->type))
		return -EINVAL;
	if (op->type == SM_OP_RENAME && op->key2 == NULL)
		return -EINVAL;
	if (op->key_len > SM_KEY_BYTES_MAX || op->key2_len > SM_KEY_BYTES_MAX)
		return -ENAMETOOLONG;
	if (op->value_len > CODEC_VALUE_BYTES_MAX)
		return -EFBIG;
	return 0;
}

static int compare_valid(const sm_compare_t *c)
{
	if (c->target < SM_CMP_VALUE || c->target > SM_CMP_MOD)
		return -EINVAL;
	if (c->op < SM_CMP_EQ || c->op > SM_CMP_GT)
		return -EINVAL;
	if ((c->key == NULL && c->key_len != 0) || (c->value == NULL && c->value_len != 0))
		return -EINVAL;
	if (c->key_len > SM_KEY_BYTES_MAX)
		return -ENAMETOOLONG;
	if (c->target == SM_CMP_VALUE && c->value_len > CODEC_VALUE_BYTES_MAX)
		return -EFBIG;
	return 0;
}

/* Everything but the blob size (which codec_txn_check adds). */
static int txn_valid(const sm_txn_t *txn)
{
	if ((txn->flags & ~TXN_FLAGS_ALL) != 0)
		return -EINVAL;
	if (txn->n_compare > CODEC_TXN_COMPARES_MAX || txn->n_success > CODEC_TXN_OPS_MAX ||
	    txn->n_failure > CODEC_TXN_OPS_MAX)
		return -E2BIG;
	if ((txn->compares == NULL && txn->n_compare != 0) ||
	    (txn->success == NULL && txn->n_success != 0) ||
	    (txn->failure == NULL && txn->n_failure != 0))
		return -EINVAL;
	for (uint32_t i = 0; i < txn->n_compare; i++) {
		int rc = compare_valid(&txn->compares[i]);
		if (rc != 0)
			return rc;
	}
	for (uint32_t i = 0; i < txn->n_success + txn->n_failure; i++) {
		const sm_op_t *op = i < txn->n_success ? &txn->success[i] : &txn->failure[i - txn->n_success];
		int rc = op_valid(op);
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* ------------------------------------------------------------------ sizes */

static uint8_t op_present(const sm_op_t *op)
{
	uint8_t present = 0;
	if (op->key2 != NULL)
		present |= OP_HAS_KEY2;
	if (op->value != NULL)
		present |= OP_HAS_VALUE;
	if (op->mode != 0 || op->uid != 0 || op->gid != 0)
		present |= OP_HAS_ATTRS;
	if (op->attr_mask != 0 || op->size != 0 || op->mtime_ns != 0)
		present |= OP_HAS_SETATTR;
	if (op->limit != 0)
		present |= OP_HAS_LIMIT;
	if (op->ino != 0)
		present |= OP_HAS_INO;
	return present;
}

static size_t op_size(const sm_op_t *op)
{
	uint8_t present = op_present(op);
	size_t n = OP_MIN_BYTES + op->key_len;
	if (present & OP_HAS_KEY2)
		n += 2 + op->key2_len;
	if (present & OP_HAS_VALUE)
		n += 4 + op->value_len;
	if (present & OP_HAS_ATTRS)
		n += 12;
	if (present & OP_HAS_SETATTR)
		n += 20;
	if (present & OP_HAS_LIMIT)
		n += 8;
	if (present & OP_HAS_INO)
		n += 8;
	return n;
}

static size_t compare_size(const sm_compare_t *c)
{
	size_t n = 4 + c->key_len;
	return n + (c->target == SM_CMP_VALUE ? 4 + c->value_len : 8);
}

/* Size without asserting validity; bounded because every length is (txn_valid passed). */
static size_t txn_size_unchecked(const sm_txn_t *txn)
{
	size_t n = CODEC_TXN_HEADER_BYTES;
	for (uint32_t i = 0; i < txn->n_compare; i++)
		n += compare_size(&txn->compares[i]);
	for (uint32_t i = 0; i < txn->n_success; i++)
		n += op_size(&txn->success[i]);
	for (uint32_t i = 0; i < txn->n_failure; i++)
		n += op_size(&txn->failure[i]);
	return n;
}

int codec_txn_check(const sm_txn_t *txn)
{
	assert(txn != NULL);
	int rc = txn_valid(txn);
	if (rc != 0)
		return rc;
	if (txn_size_unchecked(txn) > CODEC_TXN_BYTES_MAX)
		return -E2BIG;
	return 0;
}

size_t codec_txn_size(const sm_txn_t *txn)
{
	assert(codec_txn_check(txn) == 0);
	return txn_size_unchecked(txn);
}

/* ------------------------------------------------------------------ writer */

typedef struct writer {
	uint8_t *p;
	uint8_t *end;
} writer_t;

static void put_u8(writer_t *w, uint8_t v)
{
	assert(w->end - w->p >= 1);
	*w->p++ = v;
}

static void put_u16(writer_t *w, uint16_t v)
{
	assert(w->end - w->p >= 2);
	w->p[0] = (uint8_t)v;
	w->p[1] = (uint8_t)(v >> 8);
	w->p += 2;
}

static void put_u32(writer_t *w, uint32_t v)
{
	assert(w->end - w->p >= 4);
	for (int i = 0; i < 4; i++)
		w->p[i] = (uint8_t)(v >> (8 * i));
	w->p += 4;
}

static void put_u64(writer_t *w, uint64_t v)
{
	assert(w->end - w->p >= 8);
	for (int i = 0; i < 8; i++)
		w->p[i] = (uint8_t)(v >> (8 * i));
	w->p += 8;
}

static void put_bytes(writer_t *w, const void *src, size_t len)
{
	assert((size_t)(w->end - w->p) >= len);
	if (len != 0)
		memcpy(w->p, src, len);
	w->p += len;
}

static void put_compare(writer_t *w, const sm_compare_t *c)
{
	put_u8(w, (uint8_t)c->target);
	put_u8(w, (uint8_t)c->op);
	put_u16(w, (uint16_t)c->key_len);
	put_bytes(w, c->key, c->key_len);
	if (c->target == SM_CMP_VALUE) {
		put_u32(w, (uint32_t)c->value_len);
		put_bytes(w, c->value, c->value_len);
	} else {
		put_u64(w, (uint64_t)c->number);
	}
}

static void put_op(writer_t *w, const sm_op_t *op)
{
	uint8_t present = op_present(op);
	put_u8(w, (uint8_t)op->type);
	put_u8(w, present);
	put_u32(w, op->flags);
	put_u16(w, (uint16_t)op->key_len);
	put_bytes(w, op->key, op->key_len);
	if (present & OP_HAS_KEY2) {
		put_u16(w, (uint16_t)op->key2_len);
		put_bytes(w, op->key2, op->key2_len);
	}
	if (present & OP_HAS_VALUE) {
		put_u32(w, (uint32_t)op->value_len);
		put_bytes(w, op->value, op->value_len);
	}
	if (present & OP_HAS_ATTRS) {
		put_u32(w, op->mode);
		put_u32(w, op->uid);
		put_u32(w, op->gid);
	}
	if (present & OP_HAS_SETATTR) {
		put_u32(w, op->attr_mask);
		put_u64(w, op->size);
		put_u64(w, (uint64_t)op->mtime_ns);
	}
	if (present & OP_HAS_LIMIT)
		put_u64(w, op->limit);
	if (present & OP_HAS_INO)
		put_u64(w, op->ino);
}

size_t codec_txn_encode(const sm_txn_t *txn, uint8_t *buf, size_t cap)
{
	assert(buf != NULL || cap == 0);
	size_t size = codec_txn_size(txn);
	if (cap < size)
		return 0;
	writer_t w = {buf, buf + size};
	put_u32(&w, (uint32_t)size);
	put_u8(&w, CODEC_VERSION);
	put_u32(&w, txn->origin_node);
	put_u64(&w, txn->origin_seq);
	put_u64(&w, (uint64_t)txn->time_ns);
	put_u32(&w, txn->flags);
	put_u16(&w, (uint16_t)txn->n_compare);
	put_u16(&w, (uint16_t)txn->n_success);
	put_u16(&w, (uint16_t)txn->n_failure);
	assert((size_t)(w.p - buf) == CODEC_TXN_HEADER_BYTES);
	for (uint32_t i = 0; i < txn->n_compare; i++)
		put_compare(&w, &txn->compares[i]);
	for (uint32_t i = 0; i < txn->n_success; i++)
		put_op(&w, &txn->success[i]);
	for (uint32_t i = 0; i < txn->n_failure; i++)
		put_op(&w, &txn->failure[i]);
	assert(w.p == w.end);
	return size;
}

/* ------------------------------------------------------------------ reader */

/* A bounds-checked cursor. Every get_* fails (returns false, consumes nothing) when fewer bytes
 * remain than it needs. */
typedef struct reader {
	const uint8_t *p;
	size_t left;
} reader_t;

static bool get_u8(reader_t *r, uint8_t *v)
{
	if (r->left < 1)
		return false;
	*v = r->p[0];
	r->p += 1;
	r->left -= 1;
	return true;
}

static bool get_u16(reader_t *r, uint16_t *v)
{
	if (r->left < 2)
		return false;
	*v = (uint16_t)(r->p[0] | (r->p[1] << 8));
	r->p += 2;
	r->left -= 2;
	return true;
}

static bool get_u32(reader_t *r, uint32_t *v)
{
	if (r->left < 4)
		return false;
	uint32_t x = 0;
	for (int i = 0; i < 4; i++)
		x |= (uint32_t)r->p[i] << (8 * i);
	*v = x;
	r->p += 4;
	r->left -= 4;
	return true;
}

static bool get_u64(reader_t *r, uint64_t *v)
{
	if (r->left < 8)
		return false;
	uint64_t x = 0;
	for (int i = 0; i < 8; i++)
		x |= (uint64_t)r->p[i] << (8 * i);
	*v = x;
	r->p += 8;
	r->left -= 8;
	return true;
}

static bool get_i64(reader_t *r, int64_t *v)
{
	uint64_t x;
	if (!get_u64(r, &x))
		return false;
	/* Two's complement without implementation-defined conversion. */
	*v = x <= (uint64_t)INT64_MAX ? (int64_t)x : -(int64_t)(~x) - 1;
	return true;
}

static bool get_bytes(reader_t *r, size_t len, const uint8_t **out)
{
	if (r->left < len)
		return false;
	*out = r->p;
	r->p += len;
	r->left -= len;
	return true;
}

static bool get_key(reader_t *r, const char **key, size_t *key_len)
{
	uint16_t n;
	const uint8_t *bytes;
	if (!get_u16(r, &n) || n > SM_KEY_BYTES_MAX || !get_bytes(r, n, &bytes))
		return false;
	*key = (const char *)bytes;
	*key_len = n;
	return true;
}

static bool get_value(reader_t *r, const uint8_t **value, size_t *value_len)
{
	uint32_t n;
	if (!get_u32(r, &n) || n > CODEC_VALUE_BYTES_MAX || !get_bytes(r, n, value))
		return false;
	*value_len = n;
	return true;
}

/* ------------------------------------------------------------------ parse (both passes) */

static int parse_compare(reader_t *r, sm_compare_t *c)
{
	uint8_t target, op;
	memset(c, 0, sizeof(*c));
	if (!get_u8(r, &target) || !get_u8(r, &op) || !get_key(r, &c->key, &c->key_len))
		return -EINVAL;
	c->target = (sm_cmp_target_t)target;
	c->op = (sm_cmp_op_t)op;
	if (target == SM_CMP_VALUE) {
		if (!get_value(r, &c->value, &c->value_len))
			return -EINVAL;
	} else if (!get_i64(r, &c->number)) {
		return -EINVAL;
	}
	return compare_valid(c) == 0 ? 0 : -EINVAL;
}

static int parse_op(reader_t *r, sm_op_t *op)
{
	uint8_t type, present;
	memset(op, 0, sizeof(*op));
	if (!get_u8(r, &type) || !get_u8(r, &present) || !get_u32(r, &op->flags) ||
	    !get_key(r, &op->key, &op->key_len))
		return -EINVAL;
	if ((present & ~OP_HAS_ALL) != 0)
		return -EINVAL;
	op->type = (sm_op_type_t)type;
	if ((present & OP_HAS_KEY2) && !get_key(r, &op->key2, &op->key2_len))
		return -EINVAL;
	if ((present & OP_HAS_VALUE) && !get_value(r, &op->value, &op->value_len))
		return -EINVAL;
	if ((present & OP_HAS_ATTRS) &&
	    (!get_u32(r, &op->mode) || !get_u32(r, &op->uid) || !get_u32(r, &op->gid)))
		return -EINVAL;
	if ((present & OP_HAS_SETATTR) &&
	    (!get_u32(r, &op->attr_mask) || !get_u64(r, &op->size) || !get_i64(r, &op->mtime_ns)))
		return -EINVAL;
	if ((present & OP_HAS_LIMIT) && !get_u64(r, &op->limit))
		return -EINVAL;
	if ((present & OP_HAS_INO) && !get_u64(r, &op->ino))
		return -EINVAL;
	return op_valid(op) == 0 ? 0 : -EINVAL;
}

/* Where the second pass puts a txn's arrays; NULL in the first pass. */
typedef struct sink {
	sm_compare_t *compares;
	sm_op_t *ops;
} sink_t;

/* Parses one blob from r. Fills *txn (its array pointers only when sink != NULL, which then
 * advances past what was written). Consumes exactly the blob on success. */
static int parse_txn(reader_t *r, sm_txn_t *txn, sink_t *sink)
{
	uint32_t blob_bytes;
	uint8_t version;
	uint16_t n_compare, n_success, n_failure;
	const uint8_t *body;
	memset(txn, 0, sizeof(*txn));
	if (!get_u32(r, &blob_bytes) || blob_bytes < CODEC_TXN_HEADER_BYTES ||
	    blob_bytes > CODEC_TXN_BYTES_MAX || !get_bytes(r, blob_bytes - 4, &body))
		return -EINVAL;
	reader_t b = {body, blob_bytes - 4};
	if (!get_u8(&b, &version))
		return -EINVAL;
	if (version != CODEC_VERSION)
		return -EPROTO;
	if (!get_u32(&b, &txn->origin_node) || !get_u64(&b, &txn->origin_seq) ||
	    !get_i64(&b, &txn->time_ns) || !get_u32(&b, &txn->flags) || !get_u16(&b, &n_compare) ||
	    !get_u16(&b, &n_success) || !get_u16(&b, &n_failure))
		return -EINVAL;
	if ((txn->flags & ~TXN_FLAGS_ALL) != 0 || n_compare > CODEC_TXN_COMPARES_MAX ||
	    n_success > CODEC_TXN_OPS_MAX || n_failure > CODEC_TXN_OPS_MAX)
		return -EINVAL;
	txn->n_compare = n_compare;
	txn->n_success = n_success;
	txn->n_failure = n_failure;
	for (uint32_t i = 0; i < n_compare; i++) {
		sm_compare_t scratch;
		sm_compare_t *c = sink != NULL ? &sink->compares[i] : &scratch;
		if (parse_compare(&b, c) != 0)
			return -EINVAL;
	}
	for (uint32_t i = 0; i < (uint32_t)n_success + n_failure; i++) {
		sm_op_t scratch;
		sm_op_t *op = sink != NULL ? &sink->ops[i] : &scratch;
		if (parse_op(&b, op) != 0)
			return -EINVAL;
	}
	if (b.left != 0)
		return -EINVAL; /* bytes inside the blob that no field claims */
	if (sink != NULL) {
		txn->compares = n_compare != 0 ? sink->compares : NULL;
		txn->success = n_success != 0 ? sink->ops : NULL;
		txn->failure = n_failure != 0 ? sink->ops + n_success : NULL;
		sink->compares += n_compare;
		sink->ops += (size_t)n_success + n_failure;
	}
	return 0;
}

int codec_txn_blob_check(const uint8_t *buf, size_t len, size_t *blob_len)
{
	assert(buf != NULL || len == 0);
	assert(blob_len != NULL);
	reader_t r = {buf, len};
	sm_txn_t txn;
	int rc = parse_txn(&r, &txn, NULL);
	if (rc != 0)
		return rc;
	*blob_len = len - r.left;
	return 0;
}

/* ------------------------------------------------------------------ decode */

typedef struct counts {
	size_t n_txn, n_compare, n_op;
} counts_t;

/* Pass one over n_txn blobs: validate and count; r must be left empty. */
static int count_txns(reader_t r, uint32_t n_txn, counts_t *counts)
{
	memset(counts, 0, sizeof(*counts));
	for (uint32_t i = 0; i < n_txn; i++) {
		sm_txn_t txn;
		int rc = parse_txn(&r, &txn, NULL);
		if (rc != 0)
			return rc;
		counts->n_compare += txn.n_compare;
		counts->n_op += (size_t)txn.n_success + txn.n_failure;
	}
	counts->n_txn = n_txn;
	return r.left == 0 ? 0 : -EINVAL;
}

static size_t align_up(size_t n)
{
	size_t a = _Alignof(max_align_t);
	return (n + a - 1) / a * a;
}

/* Pass two: one allocation for every array, then parse again into it. */
static int fill_txns(reader_t r, const counts_t *counts, codec_decoded_t *out)
{
	if (counts->n_txn == 0)
		return 0;
	size_t txns_bytes = align_up(counts->n_txn * sizeof(sm_txn_t));
	size_t compares_bytes = align_up(counts->n_compare * sizeof(sm_compare_t));
	size_t ops_bytes = counts->n_op * sizeof(sm_op_t);
	uint8_t *mem = malloc(txns_bytes + compares_bytes + ops_bytes);
	if (mem == NULL)
		return -ENOMEM;
	sm_txn_t *txns = (sm_txn_t *)(void *)mem;
	sink_t sink = {(sm_compare_t *)(void *)(mem + txns_bytes),
		       (sm_op_t *)(void *)(mem + txns_bytes + compares_bytes)};
	for (size_t i = 0; i < counts->n_txn; i++) {
		int rc = parse_txn(&r, &txns[i], &sink);
		assert(rc == 0); /* pass one accepted these very bytes */
		(void)rc;
	}
	assert(r.left == 0);
	assert(sink.compares == (sm_compare_t *)(void *)(mem + txns_bytes) + counts->n_compare);
	assert(sink.ops == (sm_op_t *)(void *)(mem + txns_bytes + compares_bytes) + counts->n_op);
	out->mem = mem;
	out->batch.n_txn = (uint32_t)counts->n_txn;
	out->batch.txns = txns;
	return 0;
}

static int decode_body(reader_t body, uint32_t n_txn, codec_decoded_t *out)
{
	counts_t counts;
	int rc = count_txns(body, n_txn, &counts);
	if (rc == 0)
		rc = fill_txns(body, &counts, out);
	return rc;
}

int codec_batch_decode(const uint8_t *buf, size_t len, codec_decoded_t *out)
{
	assert(buf != NULL || len == 0);
	assert(out != NULL);
	memset(out, 0, sizeof(*out));
	reader_t r = {buf, len};
	uint32_t magic, n_txn, total_bytes;
	uint8_t version, reserved[3];
	if (!get_u32(&r, &magic) || magic != CODEC_BATCH_MAGIC || !get_u8(&r, &version))
		return -EINVAL;
	if (version != CODEC_VERSION)
		return -EPROTO;
	if (!get_u8(&r, &reserved[0]) || !get_u8(&r, &reserved[1]) || !get_u8(&r, &reserved[2]) ||
	    !get_u32(&r, &n_txn) || !get_u32(&r, &total_bytes))
		return -EINVAL;
	if ((reserved[0] | reserved[1] | reserved[2]) != 0 || n_txn > CODEC_BATCH_TXNS_MAX ||
	    total_bytes != len || total_bytes > CODEC_BATCH_BYTES_MAX)
		return -EINVAL;
	if ((size_t)n_txn * CODEC_TXN_HEADER_BYTES > r.left)
		return -EINVAL; /* cheap early reject of a count the bytes cannot hold */
	return decode_body(r, n_txn, out);
}

int codec_txn_decode(const uint8_t *buf, size_t len, codec_decoded_t *out)
{
	assert(buf != NULL || len == 0);
	assert(out != NULL);
	memset(out, 0, sizeof(*out));
	return decode_body((reader_t){buf, len}, 1, out);
}

void codec_decoded_free(codec_decoded_t *d)
{
	if (d == NULL)
		return;
	free(d->mem);
	memset(d, 0, sizeof(*d));
}

/* ------------------------------------------------------------------ batch encode */

static void put_batch_header(uint8_t *buf, uint32_t n_txn, size_t total_bytes)
{
	assert(n_txn <= CODEC_BATCH_TXNS_MAX);
	assert(total_bytes >= CODEC_BATCH_HEADER_BYTES && total_bytes <= CODEC_BATCH_BYTES_MAX);
	writer_t w = {buf, buf + CODEC_BATCH_HEADER_BYTES};
	put_u32(&w, CODEC_BATCH_MAGIC);
	put_u8(&w, CODEC_VERSION);
	put_u8(&w, 0);
	put_u8(&w, 0);
	put_u8(&w, 0);
	put_u32(&w, n_txn);
	put_u32(&w, (uint32_t)total_bytes);
	assert(w.p == w.end);
}

size_t codec_batch_size(const sm_batch_t *batch)
{
	assert(batch != NULL);
	assert(batch->n_txn <= CODEC_BATCH_TXNS_MAX);
	assert(batch->txns != NULL || batch->n_txn == 0);
	size_t n = CODEC_BATCH_HEADER_BYTES;
	for (uint32_t i = 0; i < batch->n_txn; i++)
		n += codec_txn_size(&batch->txns[i]);
	assert(n <= CODEC_BATCH_BYTES_MAX);
	return n;
}

size_t codec_batch_encode(const sm_batch_t *batch, uint8_t *buf, size_t cap)
{
	assert(buf != NULL || cap == 0);
	size_t size = codec_batch_size(batch);
	if (cap < size)
		return 0;
	size_t at = CODEC_BATCH_HEADER_BYTES;
	for (uint32_t i = 0; i < batch->n_txn; i++) {
		size_t n = codec_txn_encode(&batch->txns[i], buf + at, size - at);
		assert(n != 0);
		at += n;
	}
	assert(at == size);
	put_batch_header(buf, batch->n_txn, size);
	return size;
}

/* ------------------------------------------------------------------ batch builder */

#define BUILDER_CAP_BYTES_MIN 4096u

int codec_batch_begin(codec_batch_t *b)
{
	assert(b != NULL);
	memset(b, 0, sizeof(*b));
	b->buf = malloc(BUILDER_CAP_BYTES_MIN);
	if (b->buf == NULL)
		return -ENOMEM;
	b->cap_bytes = BUILDER_CAP_BYTES_MIN;
	b->len_bytes = CODEC_BATCH_HEADER_BYTES;
	return 0;
}

/* Makes room for `more` bytes: 0, -E2BIG (limits), -ENOMEM. */
static int builder_reserve(codec_batch_t *b, size_t more)
{
	assert(b->buf != NULL);
	assert(b->len_bytes >= CODEC_BATCH_HEADER_BYTES && b->len_bytes <= b->cap_bytes);
	if (b->n_txn >= CODEC_BATCH_TXNS_MAX || more > CODEC_BATCH_BYTES_MAX - b->len_bytes)
		return -E2BIG;
	size_t need = b->len_bytes + more;
	if (need <= b->cap_bytes)
		return 0;
	size_t cap = b->cap_bytes;
	while (cap < need)
		cap = cap > CODEC_BATCH_BYTES_MAX / 2 ? CODEC_BATCH_BYTES_MAX : cap * 2;
	uint8_t *buf = realloc(b->buf, cap);
	if (buf == NULL)
		return -ENOMEM;
	b->buf = buf;
	b->cap_bytes = cap;
	return 0;
}

int codec_batch_append_txn_blob(codec_batch_t *b, const uint8_t *blob, size_t blob_len)
{
	assert(b != NULL && blob != NULL);
#ifndef NDEBUG
	size_t checked_len = 0;
	assert(codec_txn_blob_check(blob, blob_len, &checked_len) == 0 && checked_len == blob_len);
#endif
	int rc = builder_reserve(b, blob_len);
	if (rc != 0)
		return rc;
	memcpy(b->buf + b->len_bytes, blob, blob_len);
	b->len_bytes += blob_len;
	b->n_txn++;
	return 0;
}

int codec_batch_append_txn(codec_batch_t *b, const sm_txn_t *txn)
{
	assert(b != NULL);
	size_t size = codec_txn_size(txn);
	int rc = builder_reserve(b, size);
	if (rc != 0)
		return rc;
	size_t n = codec_txn_encode(txn, b->buf + b->len_bytes, b->cap_bytes - b->len_bytes);
	assert(n == size);
	b->len_bytes += n;
	b->n_txn++;
	return 0;
}

uint8_t *codec_batch_finish(codec_batch_t *b, size_t *len_bytes)
{
	assert(b != NULL && b->buf != NULL && len_bytes != NULL);
	put_batch_header(b->buf, b->n_txn, b->len_bytes);
	uint8_t *buf = b->buf;
	*len_bytes = b->len_bytes;
	memset(b, 0, sizeof(*b));
	return buf;
}

void codec_batch_discard(codec_batch_t *b)
{
	if (b == NULL)
		return;
	free(b->buf);
	memset(b, 0, sizeof(*b));
}
