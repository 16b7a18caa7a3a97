/* fuzz_codec.c - libFuzzer target for engine/codec: arbitrary bytes into the decoders.
 *
 * Every input is decoded as a whole batch and, from its first byte on, as one txn blob (also
 * sized by codec_txn_blob_check, which must agree with the decoder). What decodes is encoded
 * again, and the new bytes must decode to the same structure; a second re-encode must give the
 * same bytes (the encoding of a decoded structure is canonical). The decoder must never crash,
 * over-read or leak (ASan/UBSan/LSan catch that). codec.c is compiled into this executable
 * so libFuzzer's coverage instrumentation sees it. Built only with -Dfuzz=true and clang;
 * tests/fuzz/run-fuzz.sh runs it.
 */
#include "codec.h"
#include "codec_eq.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)            \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

/* Re-encode a decoded batch and check it decodes to the same thing, canonically. */
static void check_reencode(const sm_batch_t *batch)
{
	size_t len = codec_batch_size(batch);
	uint8_t *buf = malloc(len);
	REQUIRE(buf != NULL);
	REQUIRE(codec_batch_encode(batch, buf, len) == len);
	codec_decoded_t again;
	REQUIRE(codec_batch_decode(buf, len, &again) == 0);
	REQUIRE(batch_eq(batch, &again.batch));
	uint8_t *buf2 = malloc(len);
	REQUIRE(buf2 != NULL);
	REQUIRE(codec_batch_encode(&again.batch, buf2, len) == len);
	REQUIRE(memcmp(buf, buf2, len) == 0);
	codec_decoded_free(&again);
	free(buf2);
	free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly `size` bytes: ASan flags any read past it. */
	uint8_t *in = malloc(size ? size : 1);
	REQUIRE(in != NULL);
	if (size)
		memcpy(in, data, size);

	codec_decoded_t d;
	int rc = codec_batch_decode(in, size, &d);
	REQUIRE(rc == 0 || rc == -EINVAL || rc == -EPROTO);
	if (rc == 0) {
		check_reencode(&d.batch);
		codec_decoded_free(&d);
	}

	size_t blob_len = 0;
	int rc_check = codec_txn_blob_check(in, size, &blob_len);
	REQUIRE(rc_check == 0 || rc_check == -EINVAL || rc_check == -EPROTO);
	if (rc_check == 0) {
		REQUIRE(blob_len <= size);
		/* the sized blob decodes on its own, and appends into a valid batch */
		REQUIRE(codec_txn_decode(in, blob_len, &d) == 0);
		check_reencode(&d.batch);
		codec_decoded_free(&d);
		codec_batch_t b;
		REQUIRE(codec_batch_begin(&b) == 0);
		REQUIRE(codec_batch_append_txn_blob(&b, in, blob_len) == 0);
		size_t len;
		uint8_t *batch = codec_batch_finish(&b, &len);
		REQUIRE(codec_batch_decode(batch, len, &d) == 0 && d.batch.n_txn == 1);
		codec_decoded_free(&d);
		free(batch);
	}
	rc = codec_txn_decode(in, size, &d);
	REQUIRE(rc == 0 || rc == -EINVAL || rc == -EPROTO);
	if (rc == 0) {
		REQUIRE(rc_check == 0 && blob_len == size);
		codec_decoded_free(&d);
	}
	free(in);
	return 0;
}
