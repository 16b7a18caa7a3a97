/* codec_eq.h - field-by-field equality of decoded txns and batches, for the codec tests.
 *
 * Shared by tests/codec_test.c and the libFuzzer target tests/fuzz_codec.c so that a field added
 * to sm_op_t or sm_compare_t is compared by both. A compare's number is compared for
 * VERSION/CREATE/MOD and its value for VALUE: the other one is not encoded.
 */
#ifndef METASTORE_TESTS_CODEC_EQ_H
#define METASTORE_TESTS_CODEC_EQ_H

#include "sm.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

static bool bytes_eq(const void *a, size_t a_len, const void *b, size_t b_len)
{
	return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static bool compare_eq(const sm_compare_t *a, const sm_compare_t *b)
{
	if (a->target != b->target || a->op != b->op || !bytes_eq(a->key, a->key_len, b->key, b->key_len))
		return false;
	if (a->target == SM_CMP_VALUE)
		return bytes_eq(a->value, a->value_len, b->value, b->value_len);
	return a->number == b->number;
}

static bool op_eq(const sm_op_t *a, const sm_op_t *b)
{
	return a->type == b->type && a->flags == b->flags &&
	       bytes_eq(a->key, a->key_len, b->key, b->key_len) &&
	       (a->key2 == NULL) == (b->key2 == NULL) &&
	       bytes_eq(a->key2, a->key2_len, b->key2, b->key2_len) &&
	       (a->value == NULL) == (b->value == NULL) &&
	       bytes_eq(a->value, a->value_len, b->value, b->value_len) && a->mode == b->mode &&
	       a->uid == b->uid && a->gid == b->gid && a->attr_mask == b->attr_mask &&
	       a->size == b->size && a->mtime_ns == b->mtime_ns && a->limit == b->limit &&
	       a->ino == b->ino;
}

static bool txn_eq(const sm_txn_t *a, const sm_txn_t *b)
{
	if (a->origin_node != b->origin_node || a->origin_seq != b->origin_seq ||
	    a->time_ns != b->time_ns || a->flags != b->flags || a->n_compare != b->n_compare ||
	    a->n_success != b->n_success || a->n_failure != b->n_failure)
		return false;
	for (uint32_t i = 0; i < a->n_compare; i++)
		if (!compare_eq(&a->compares[i], &b->compares[i]))
			return false;
	for (uint32_t i = 0; i < a->n_success; i++)
		if (!op_eq(&a->success[i], &b->success[i]))
			return false;
	for (uint32_t i = 0; i < a->n_failure; i++)
		if (!op_eq(&a->failure[i], &b->failure[i]))
			return false;
	return true;
}

static bool batch_eq(const sm_batch_t *a, const sm_batch_t *b)
{
	if (a->n_txn != b->n_txn)
		return false;
	for (uint32_t i = 0; i < a->n_txn; i++)
		if (!txn_eq(&a->txns[i], &b->txns[i]))
			return false;
	return true;
}

#endif
