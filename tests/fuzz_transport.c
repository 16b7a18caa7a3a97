/* fuzz_transport.c - libFuzzer target for raft/transport's decoders: arbitrary peer bytes.
 *
 * The first input byte picks a frame size cap (0..255 bytes, so both the size check and the
 * CRC path are reached); the rest is treated as a byte stream and cut into frames exactly as an
 * authenticated inbound connection does (parse, advance, stop at "need more" or an error).
 * Every accepted frame must lie inside the input and carry a matching CRC (re-encoding its
 * header gives the same bytes). The same bytes also go through the HELLO decoder; a HELLO it
 * accepts must re-encode to the identical 56 bytes. Built only with -Dfuzz=true and clang:
 *   ninja -C DIR tests/fuzz_transport && DIR/tests/fuzz_transport -max_total_time=60
 */
#include "transport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)            \
	do {                     \
		if (!(cond))     \
			abort(); \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0) return 0;
	uint32_t cap = data[0];
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	size_t off = 0;
	for (;;) { /* bounded: every accepted frame advances off by >= 8 bytes */
		transport_frame_t f;
		int r = transport_frame_parse(p + off, n - off, cap, &f);
		REQUIRE(r == 0 || r == 1 || r == -EMSGSIZE || r == -EBADMSG);
		if (r != 1) {
			if (r == 0 && n - off >= TRANSPORT_FRAME_HEADER_BYTES) REQUIRE(f.frame_bytes > n - off);
			break;
		}
		REQUIRE(f.frame_bytes == TRANSPORT_FRAME_HEADER_BYTES + (size_t)f.payload_len);
		REQUIRE(f.frame_bytes <= n - off && f.payload_len <= cap);
		REQUIRE(f.payload == p + off + TRANSPORT_FRAME_HEADER_BYTES);
		uint8_t hdr[TRANSPORT_FRAME_HEADER_BYTES];
		transport_frame_header(hdr, f.payload, f.payload_len);
		REQUIRE(memcmp(hdr, p + off, sizeof hdr) == 0);
		off += f.frame_bytes;
	}

	transport_hello_t h;
	int r = transport_hello_parse(p, n, &h);
	REQUIRE(r == 0 || r == (int)TRANSPORT_HELLO_BYTES || r == -EBADMSG);
	if (r == (int)TRANSPORT_HELLO_BYTES) {
		uint8_t again[TRANSPORT_HELLO_BYTES];
		transport_hello_encode(again, &h);
		REQUIRE(memcmp(again, p, sizeof again) == 0);
	}
	return 0;
}
