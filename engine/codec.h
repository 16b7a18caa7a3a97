/* codec.h - the bytes of a batch: the payload of one Raft entry, and of one forwarded txn.
 *
 * A transaction (sm_txn_t with its compares and ops) encodes to a self-delimiting blob that
 * starts with its own length, so a follower can forward single encoded txns to the leader and
 * the leader can concatenate them into a batch without decoding them. A batch is a 16-byte
 * header followed by the txn blobs back to back. Everything is little-endian and versioned.
 *
 *   batch   := magic "MSTB" | version u8 (1) | 3 zero bytes | n_txn u32 | total_bytes u32 | blob*
 *   blob    := blob_bytes u32 (whole blob, this field included) | version u8 (1)
 *              | origin_node u32 | origin_seq u64 | time_ns i64 | flags u32
 *              | n_compare u16 | n_success u16 | n_failure u16 | compare* | op* (success, failure)
 *   compare := target u8 | op u8 | key_len u16 | key | (VALUE: value_len u32 | value ; else number i64)
 *   op      := type u8 | present u8 | flags u32 | key_len u16 | key
 *              | [key2_len u16 | key2]              present & 0x01 (key2 != NULL)
 *              | [value_len u32 | value]            present & 0x02 (value != NULL)
 *              | [mode u32 | uid u32 | gid u32]     present & 0x04 (any of them != 0)
 *              | [attr_mask u32 | size u64 | mtime_ns i64]   present & 0x08 (any != 0)
 *              | [limit u64]                        present & 0x10 (limit != 0)
 *              | [ino u64]                          present & 0x20 (ino != 0)
 *
 * A group left out decodes as zero/NULL, so decode(encode(txn)) equals txn field by field.
 * Decoding is zero-copy: keys and values of the decoded batch point into the input buffer, which
 * must outlive it; the arrays live in one allocation owned by codec_decoded_t. The decoder
 * checks every length against the remaining input, every count against the limits below, every
 * enum and flag word, the version, and that the blobs exactly fill the batch; it validates the
 * whole input before it allocates, and allocates at most 16 bytes of arrays per input byte.
 * Keys are only bounded here (<= SM_KEY_BYTES_MAX): path rules are the state machine's.
 * The encoder asserts what the decoder checks; codec_txn_check() says beforehand whether a txn
 * can be encoded.
 */
#ifndef METASTORE_CODEC_H
#define METASTORE_CODEC_H

#include "sm.h"

#include <stddef.h>
#include <stdint.h>

#define CODEC_VERSION 1u
#define CODEC_BATCH_MAGIC 0x4254534du /* "MSTB" as little-endian bytes */
#define CODEC_BATCH_HEADER_BYTES 16u
#define CODEC_TXN_HEADER_BYTES 35u   /* a blob without compares and ops */
#define CODEC_BATCH_TXNS_MAX 65536u
#define CODEC_TXN_COMPARES_MAX 1024u
#define CODEC_TXN_OPS_MAX 1024u      /* in each branch: n_success and n_failure */
#define CODEC_VALUE_BYTES_MAX ((8u << 20) + (64u << 10)) /* 8 MiB + slack: sm says EFBIG */
#define CODEC_TXN_BYTES_MAX (64u << 20)
#define CODEC_BATCH_BYTES_MAX (256u << 20)

/* ------------------------------------------------------------------ one transaction */

/* Whether txn can be encoded: 0; -EINVAL (unknown op type, compare target/op, flag or attr
 * bit, NULL pointer with a length, RENAME without key2, key2 on an op that takes none);
 * -ENAMETOOLONG (a key over SM_KEY_BYTES_MAX); -EFBIG (a value over CODEC_VALUE_BYTES_MAX);
 * -E2BIG (more than CODEC_TXN_COMPARES_MAX compares or CODEC_TXN_OPS_MAX ops in a branch, or a
 * blob over CODEC_TXN_BYTES_MAX). The encoders assert it. */
int codec_txn_check(const sm_txn_t *txn);

/* Bytes of txn's blob. */
size_t codec_txn_size(const sm_txn_t *txn);

/* Writes txn's blob into buf; returns the bytes written, or 0 (nothing written) when cap is
 * smaller than codec_txn_size(txn). */
size_t codec_txn_encode(const sm_txn_t *txn, uint8_t *buf, size_t cap);

/* Validates the blob at the start of buf (len bytes available; bytes after the blob are not
 * looked at) without allocating: 0 and *blob_len = its length, -EPROTO for a blob of another
 * version, -EINVAL for anything else. Only a blob that passes may be appended to a batch. */
int codec_txn_blob_check(const uint8_t *buf, size_t len, size_t *blob_len);

/* ------------------------------------------------------------------ decoding */

typedef struct codec_decoded {
	sm_batch_t batch; /* keys and values point into the decoded buffer */
	void *mem;        /* owns batch.txns and every compares/success/failure array */
} codec_decoded_t;

/* Decodes a whole batch (len must be exactly its total_bytes): 0, -EINVAL (malformed, trailing
 * bytes, limits), -EPROTO (unknown version of the batch or of a blob), -ENOMEM. On error *out
 * is zeroed and owns nothing. */
int codec_batch_decode(const uint8_t *buf, size_t len, codec_decoded_t *out);

/* Decodes one blob (len must be exactly its length) as a batch of one txn; errors as above. */
int codec_txn_decode(const uint8_t *buf, size_t len, codec_decoded_t *out);

void codec_decoded_free(codec_decoded_t *d);

/* ------------------------------------------------------------------ encoding a batch */

/* Bytes of the batch's encoding, and the encoder (returns bytes written, 0 if cap is too
 * small). The batch must have <= CODEC_BATCH_TXNS_MAX txns and encode to
 * <= CODEC_BATCH_BYTES_MAX bytes (asserted; the builder below reports it as -E2BIG). */
size_t codec_batch_size(const sm_batch_t *batch);
size_t codec_batch_encode(const sm_batch_t *batch, uint8_t *buf, size_t cap);

/* A batch built blob by blob in a growable buffer: begin, append (blobs received from
 * followers, or txns encoded in place), finish. Fields are read-only to the caller. */
typedef struct codec_batch {
	uint8_t *buf;
	size_t len_bytes; /* header included */
	size_t cap_bytes;
	uint32_t n_txn;
} codec_batch_t;

int codec_batch_begin(codec_batch_t *b); /* 0 or -ENOMEM */

/* Appends a blob that passed codec_txn_blob_check (asserted). 0; -E2BIG when the batch
 * already holds CODEC_BATCH_TXNS_MAX txns or would grow past CODEC_BATCH_BYTES_MAX (the batch
 * is unchanged: finish it and start another); -ENOMEM. */
int codec_batch_append_txn_blob(codec_batch_t *b, const uint8_t *blob, size_t blob_len);

/* Encodes txn (codec_txn_check(txn) == 0, asserted) at the end of the batch; errors as above. */
int codec_batch_append_txn(codec_batch_t *b, const sm_txn_t *txn);

/* Writes the header and hands over the buffer (free() it); *len_bytes is its length. The
 * builder is left empty: begin it again for the next batch. */
uint8_t *codec_batch_finish(codec_batch_t *b, size_t *len_bytes);

/* Frees an unfinished batch. Safe on a finished or zeroed builder. */
void codec_batch_discard(codec_batch_t *b);

#endif
