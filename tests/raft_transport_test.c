/* raft_transport_test.c - tests for raft/sha256.c and raft/transport.c.
 *
 * SHA-256 and HMAC-SHA256 against the FIPS 180-2 example vectors and RFC 4231; the token file
 * rules; the frame and handshake codec (including a seeded fuzz loop over random and mutated
 * bytes, and a stream split at random points); then real transports on 127.0.0.1 with
 * ephemeral ports: two and three nodes exchanging 10k messages each way, varied in size,
 * checked byte for byte and in order; a wrong token; raw sockets (a client thread written
 * against the public codec) sending garbage, oversized or corrupt frames, a wrong token, an
 * unknown id, or nothing; a fake acceptor answering with the wrong id or MAC; a restarted peer;
 * membership changes; the flush order against a caller's check handle; and every errno of the
 * public functions except -ENOMEM and read(2) failures of a token file.
 *
 * Each loop test runs its own uv_loop_t, closes every transport and asserts uv_loop_close()
 * succeeds (no handle left behind); ASan/valgrind runs check the memory. TRANSPORT_TEST_VERBOSE=1
 * prints the transports' log lines.
 */
#include "sha256.h"
#include "transport.h"

#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NODES_MAX 4
#define LOG_KEEP_BYTES 8192
#define RUN_TIMEOUT_MS 30000
#define MSG_HEADER_BYTES 8

static const uint8_t token_a[] = "cluster-token-A-0123456789abcdef";
static const uint8_t token_b[] = "cluster-token-B-0123456789abcdef";
#define TOKEN_LEN (sizeof token_a - 1)

/* ------------------------------------------------------------------ hex helpers */

static void hex_to_bytes(const char *hex, uint8_t *out, size_t out_len)
{
	ck_assert_uint_eq(strlen(hex), 2 * out_len);
	for (size_t i = 0; i < out_len; i++) {
		unsigned v;
		ck_assert_int_eq(sscanf(hex + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void check_digest(const uint8_t *got, const char *hex, size_t len)
{
	uint8_t want[SHA256_DIGEST_BYTES];
	hex_to_bytes(hex, want, len);
	ck_assert_mem_eq(got, want, len);
}

/* ------------------------------------------------------------------ SHA-256 / HMAC */

/* FIPS 180-2 appendix B and the NIST example vectors for SHA-256. */
START_TEST(sha256_vectors)
{
	static const struct {
		const char *msg;
		const char *digest;
	} v[] = {
		{"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
			"248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmn"
		 "opqrstnopqrstu",
			"cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		uint8_t d[SHA256_DIGEST_BYTES];
		sha256(v[i].msg, strlen(v[i].msg), d);
		check_digest(d, v[i].digest, sizeof d);
	}
}
END_TEST

/* One million 'a' (FIPS 180-2 B.3), fed in uneven pieces to exercise the block buffering. */
START_TEST(sha256_million_a)
{
	static uint8_t chunk[1000];
	memset(chunk, 'a', sizeof chunk);
	sha256_ctx_t c;
	sha256_init(&c);
	size_t left = 1000000, step = 1;
	while (left > 0) {
		size_t n = step < left ? step : left;
		sha256_update(&c, chunk, n);
		left -= n;
		step = step % 987 + 13; /* 1, 14, 27, ... up to 999: rarely a multiple of 64 */
	}
	uint8_t d[SHA256_DIGEST_BYTES];
	sha256_final(&c, d);
	check_digest(d, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0", sizeof d);
}
END_TEST

/* Streaming equals one-shot for every split point and every length around the padding edges. */
START_TEST(sha256_split_points)
{
	uint8_t msg[200];
	for (size_t i = 0; i < sizeof msg; i++) msg[i] = (uint8_t)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof msg; len++) {
		uint8_t whole[SHA256_DIGEST_BYTES];
		sha256(msg, len, whole);
		for (size_t cut = 0; cut <= len; cut += 7) {
			sha256_ctx_t c;
			uint8_t parts[SHA256_DIGEST_BYTES];
			sha256_init(&c);
			sha256_update(&c, msg, cut);
			sha256_update(&c, msg + cut, len - cut);
			sha256_final(&c, parts);
			ck_assert_mem_eq(whole, parts, sizeof whole);
		}
	}
}
END_TEST

/* RFC 4231 section 4, test cases 1-7. */
START_TEST(hmac_rfc4231)
{
	uint8_t key131[131], data_dd[50], data_cd[50], key25[25], key_0b[20], key_aa[20], key_0c[20];
	memset(key131, 0xaa, sizeof key131);
	memset(data_dd, 0xdd, sizeof data_dd);
	memset(data_cd, 0xcd, sizeof data_cd);
	for (unsigned i = 0; i < sizeof key25; i++) key25[i] = (uint8_t)(i + 1);
	memset(key_0b, 0x0b, sizeof key_0b);
	memset(key_aa, 0xaa, sizeof key_aa);
	memset(key_0c, 0x0c, sizeof key_0c);
	static const char tc6[] = "Test Using Larger Than Block-Size Key - Hash Key First";
	static const char tc7[] = "This is a test using a larger than block-size key and a larger than block-size "
				  "data. The key needs to be hashed before being used by the HMAC algorithm.";
	const struct {
		const void *key;
		size_t key_len;
		const void *data;
		size_t data_len;
		const char *mac;
		size_t mac_len; /* case 5 is truncated to 128 bits */
	} v[] = {
		{key_0b, 20, "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7", 32},
		{"Jefe", 4, "what do ya want for nothing?", 28,
			"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", 32},
		{key_aa, 20, data_dd, 50, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe", 32},
		{key25, 25, data_cd, 50, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b", 32},
		{key_0c, 20, "Test With Truncation", 20, "a3b6167473100ee06e0c796c2955552b", 16},
		{key131, 131, tc6, sizeof tc6 - 1, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54", 32},
		{key131, 131, tc7, sizeof tc7 - 1, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2", 32},
	};
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		uint8_t mac[SHA256_DIGEST_BYTES];
		hmac_sha256(v[i].key, v[i].key_len, v[i].data, v[i].data_len, mac);
		check_digest(mac, v[i].mac, v[i].mac_len);
		/* the same through the streaming interface, one byte at a time */
		hmac_sha256_ctx_t c;
		hmac_sha256_init(&c, v[i].key, v[i].key_len);
		for (size_t k = 0; k < v[i].data_len; k++) hmac_sha256_update(&c, (const uint8_t *)v[i].data + k, 1);
		uint8_t mac2[SHA256_DIGEST_BYTES];
		hmac_sha256_final(&c, mac2);
		ck_assert_mem_eq(mac, mac2, sizeof mac);
	}
}
END_TEST

/* Delays stay within [d/2, d], d doubles from the minimum up to the cap, and a seed replays. */
START_TEST(backoff_policy)
{
	uint64_t rng1 = 12345, rng2 = 12345, rng3 = 999;
	uint32_t d1 = 50, d2 = 50, d3 = 50, expect = 50;
	bool differs = false;
	for (unsigned i = 0; i < 40; i++) {
		uint32_t a = transport_backoff_next(&rng1, &d1, 2000);
		ck_assert_uint_ge(a, expect / 2);
		ck_assert_uint_le(a, expect);
		ck_assert_uint_eq(transport_backoff_next(&rng2, &d2, 2000), a);
		if (transport_backoff_next(&rng3, &d3, 2000) != a) differs = true;
		expect = expect * 2 > 2000 ? 2000 : expect * 2;
		ck_assert_uint_eq(d1, expect);
	}
	ck_assert(differs);
	uint32_t d = 1;
	ck_assert_uint_le(transport_backoff_next(&rng1, &d, 1), 1);
	ck_assert_uint_eq(d, 1);
}
END_TEST

START_TEST(ct_equal)
{
	uint8_t a[32], b[32];
	for (unsigned i = 0; i < 32; i++) a[i] = b[i] = (uint8_t)(i * 3);
	ck_assert(sha256_ct_equal(a, b, 32));
	ck_assert(sha256_ct_equal(a, b, 0));
	b[0] ^= 1;
	ck_assert(!sha256_ct_equal(a, b, 32));
	b[0] ^= 1;
	b[31] ^= 0x80;
	ck_assert(!sha256_ct_equal(a, b, 32));
	ck_assert(sha256_ct_equal(a, b, 31));
}
END_TEST

/* ------------------------------------------------------------------ token file */

static void write_file(const char *path, const void *data, size_t len, mode_t mode)
{
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(fchmod(fd, mode), 0);
	close(fd);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
	snprintf(buf, len, "/tmp/raft-transport-test-%d-%s", (int)getpid(), name);
}

START_TEST(token_load_modes)
{
	char path[128], err[256];
	uint8_t tok[TRANSPORT_TOKEN_BYTES_MAX];
	size_t len = 99;
	tmp_path(path, sizeof path, "token");
	static const char text[] = "s3cret-s3cret-s3cret\n";

	write_file(path, text, strlen(text), 0600);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), 0);
	ck_assert_uint_eq(len, strlen(text) - 1); /* trailing newline stripped */
	ck_assert_mem_eq(tok, text, len);

	write_file(path, "s3cret-s3cret-s3cret\r\n", 22, 0400);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), 0);
	ck_assert_uint_eq(len, 20);

	write_file(path, text, strlen(text), 0644);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EACCES);
	ck_assert_ptr_nonnull(strstr(err, "0644"));
	ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
	ck_assert_uint_eq(len, 0);
	write_file(path, text, strlen(text), 0640);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EACCES);
	write_file(path, text, strlen(text), 0604);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, NULL, 0), -EACCES);
	unlink(path);
}
END_TEST

START_TEST(token_load_sizes)
{
	char path[128], err[256];
	uint8_t tok[TRANSPORT_TOKEN_BYTES_MAX];
	size_t len;
	tmp_path(path, sizeof path, "token");

	write_file(path, "", 0, 0600);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "empty"));
	write_file(path, "\n", 1, 0600);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EINVAL);
	write_file(path, "short\n", 6, 0600);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "at least"));

	static uint8_t big[TRANSPORT_TOKEN_BYTES_MAX * 4];
	memset(big, 'x', sizeof big);
	write_file(path, big, sizeof big, 0600);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EFBIG);
	write_file(path, big, TRANSPORT_TOKEN_BYTES_MAX + 1, 0600);
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -EFBIG);
	write_file(path, big, TRANSPORT_TOKEN_BYTES_MAX, 0600); /* exactly the maximum is fine */
	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), 0);
	ck_assert_uint_eq(len, TRANSPORT_TOKEN_BYTES_MAX);
	write_file(path, big, 64, 0600); /* larger than the caller's buffer */
	ck_assert_int_eq(transport_token_load(path, tok, 32, &len, err, sizeof err), -EFBIG);
	unlink(path);

	ck_assert_int_eq(transport_token_load(path, tok, sizeof tok, &len, err, sizeof err), -ENOENT);
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_int_eq(transport_token_load("/tmp", tok, sizeof tok, &len, err, sizeof err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err, "regular"));
}
END_TEST

/* ------------------------------------------------------------------ codec */

static uint64_t rng_next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static size_t frame_build(uint8_t *out, const uint8_t *payload, uint32_t len)
{
	transport_frame_header(out, payload, len);
	if (len > 0) memcpy(out + TRANSPORT_FRAME_HEADER_BYTES, payload, len);
	return TRANSPORT_FRAME_HEADER_BYTES + len;
}

START_TEST(frame_codec)
{
	uint8_t buf[64];
	const uint8_t payload[] = "hello frame";
	size_t n = frame_build(buf, payload, sizeof payload);
	transport_frame_t f;
	ck_assert_int_eq(transport_frame_parse(buf, n, 1024, &f), 1);
	ck_assert_uint_eq(f.payload_len, sizeof payload);
	ck_assert_ptr_eq(f.payload, buf + TRANSPORT_FRAME_HEADER_BYTES);
	ck_assert_uint_eq(f.frame_bytes, n);
	ck_assert_mem_eq(f.payload, payload, sizeof payload);
	/* every proper prefix needs more; once the header is in, the total is known */
	for (size_t k = 0; k < n; k++) {
		ck_assert_int_eq(transport_frame_parse(buf, k, 1024, &f), 0);
		ck_assert_uint_eq(f.frame_bytes, k < TRANSPORT_FRAME_HEADER_BYTES ? 0 : n);
	}
	ck_assert_int_eq(transport_frame_parse(buf, n, sizeof payload, &f), 1); /* exactly the cap */
	ck_assert_int_eq(transport_frame_parse(buf, n, sizeof payload - 1, &f), -EMSGSIZE);
	ck_assert_int_eq(transport_frame_parse(buf, TRANSPORT_FRAME_HEADER_BYTES, sizeof payload - 1, &f), -EMSGSIZE);
	buf[TRANSPORT_FRAME_HEADER_BYTES + 3] ^= 0x10;
	ck_assert_int_eq(transport_frame_parse(buf, n, 1024, &f), -EBADMSG);
	buf[TRANSPORT_FRAME_HEADER_BYTES + 3] ^= 0x10;
	buf[5] ^= 1; /* the CRC field itself */
	ck_assert_int_eq(transport_frame_parse(buf, n, 1024, &f), -EBADMSG);
	/* an empty payload is a valid frame */
	n = frame_build(buf, NULL, 0);
	ck_assert_int_eq(transport_frame_parse(buf, n, 0, &f), 1);
	ck_assert_uint_eq(f.payload_len, 0);
	ck_assert_uint_eq(f.frame_bytes, TRANSPORT_FRAME_HEADER_BYTES);
	ck_assert_int_eq(transport_frame_parse(NULL, 0, 10, &f), 0);
}
END_TEST

START_TEST(hello_codec)
{
	transport_hello_t h = {.role = TRANSPORT_ROLE_DIALER, .from_id = 7, .to_id = 0x1122334455667788ull};
	for (unsigned i = 0; i < TRANSPORT_NONCE_BYTES; i++) h.nonce[i] = (uint8_t)(200 - i);
	uint8_t b[TRANSPORT_HELLO_BYTES];
	transport_hello_encode(b, &h);
	ck_assert_mem_eq(b, "MSTP", 4);
	transport_hello_t g;
	ck_assert_int_eq(transport_hello_parse(b, sizeof b, &g), (int)TRANSPORT_HELLO_BYTES);
	ck_assert_uint_eq(g.role, TRANSPORT_ROLE_DIALER);
	ck_assert_uint_eq(g.from_id, 7);
	ck_assert_uint_eq(g.to_id, 0x1122334455667788ull);
	ck_assert_mem_eq(g.nonce, h.nonce, TRANSPORT_NONCE_BYTES);
	for (size_t k = 0; k < sizeof b; k++) ck_assert_int_eq(transport_hello_parse(b, k, &g), 0);
	static const size_t bad_at[] = {0, 3, 4, 5, 6, 7};
	for (size_t i = 0; i < sizeof bad_at / sizeof bad_at[0]; i++) {
		uint8_t c[TRANSPORT_HELLO_BYTES];
		memcpy(c, b, sizeof c);
		c[bad_at[i]] ^= 0x40;
		ck_assert_int_eq(transport_hello_parse(c, sizeof c, &g), -EBADMSG);
	}
	uint8_t z[TRANSPORT_HELLO_BYTES];
	memcpy(z, b, sizeof z);
	memset(z + 8, 0, 8); /* from id 0 */
	ck_assert_int_eq(transport_hello_parse(z, sizeof z, &g), -EBADMSG);
	memcpy(z, b, sizeof z);
	memset(z + 16, 0, 8); /* to id 0 */
	ck_assert_int_eq(transport_hello_parse(z, sizeof z, &g), -EBADMSG);
}
END_TEST

/* The MAC is HMAC(token, label | role | own | peer | nonce_c | nonce_s): rebuild it by hand. */
START_TEST(handshake_mac)
{
	uint8_t nc[TRANSPORT_NONCE_BYTES], ns[TRANSPORT_NONCE_BYTES];
	memset(nc, 0x11, sizeof nc);
	memset(ns, 0x22, sizeof ns);
	uint8_t msg[12 + 1 + 16 + 64];
	memcpy(msg, "metastore v1", 12);
	msg[12] = 'S';
	const uint8_t ids[16] = {3, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0};
	memcpy(msg + 13, ids, 16);
	memcpy(msg + 29, nc, 32);
	memcpy(msg + 61, ns, 32);
	uint8_t want[32], got[32], other[32];
	hmac_sha256(token_a, TOKEN_LEN, msg, sizeof msg, want);
	transport_handshake_mac(token_a, TOKEN_LEN, 'S', 3, 5, nc, ns, got);
	ck_assert_mem_eq(got, want, 32);
	/* every input matters */
	transport_handshake_mac(token_a, TOKEN_LEN, 'C', 3, 5, nc, ns, other);
	ck_assert(memcmp(got, other, 32) != 0);
	transport_handshake_mac(token_a, TOKEN_LEN, 'S', 5, 3, nc, ns, other);
	ck_assert(memcmp(got, other, 32) != 0);
	transport_handshake_mac(token_a, TOKEN_LEN, 'S', 3, 5, ns, nc, other);
	ck_assert(memcmp(got, other, 32) != 0);
	transport_handshake_mac(token_b, TOKEN_LEN, 'S', 3, 5, nc, ns, other);
	ck_assert(memcmp(got, other, 32) != 0);
}
END_TEST

/* Random bytes and mutated valid frames: the decoders never read outside the buffer (each input
 * sits in its own exact-size heap block, so ASan/valgrind would see an over-read), return only
 * documented values, and accept a frame only when its CRC matches. */
START_TEST(fuzz_decoders)
{
	uint64_t seed = 0x5eed0001;
	for (unsigned iter = 0; iter < 100000; iter++) {
		size_t len = (size_t)(rng_next(&seed) % 80);
		uint8_t *buf = malloc(len ? len : 1);
		ck_assert_ptr_nonnull(buf);
		for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)rng_next(&seed);
		if (iter % 3 == 0 && len >= TRANSPORT_FRAME_HEADER_BYTES) {
			/* a plausible small length so the CRC path is reached too */
			uint32_t pl = (uint32_t)(rng_next(&seed) % (len - TRANSPORT_FRAME_HEADER_BYTES + 1));
			buf[0] = (uint8_t)pl;
			buf[1] = buf[2] = buf[3] = 0;
			if (iter % 2 == 0) transport_frame_header(buf, buf + 8, pl);
		}
		uint32_t cap = (uint32_t)(rng_next(&seed) % 100);
		transport_frame_t f;
		int r = transport_frame_parse(buf, len, cap, &f);
		ck_assert(r == 0 || r == 1 || r == -EMSGSIZE || r == -EBADMSG);
		if (r == 1) {
			ck_assert_uint_le(f.frame_bytes, len);
			ck_assert_uint_le(f.payload_len, cap);
			ck_assert_ptr_eq(f.payload, buf + TRANSPORT_FRAME_HEADER_BYTES);
			uint8_t hdr[TRANSPORT_FRAME_HEADER_BYTES];
			transport_frame_header(hdr, f.payload, f.payload_len);
			ck_assert_mem_eq(hdr, buf, sizeof hdr);
		} else if (r == 0 && len >= TRANSPORT_FRAME_HEADER_BYTES) {
			ck_assert_uint_gt(f.frame_bytes, len);
		}
		transport_hello_t h;
		int hr = transport_hello_parse(buf, len, &h);
		ck_assert(hr == 0 || hr == (int)TRANSPORT_HELLO_BYTES || hr == -EBADMSG);
		if (iter % 4 == 0 && len >= TRANSPORT_HELLO_BYTES) {
			/* a valid hello with one random byte flipped: either still valid or refused */
			transport_hello_t v = {.role = TRANSPORT_ROLE_ACCEPTOR, .from_id = 1 + rng_next(&seed) % 9,
				.to_id = 1 + rng_next(&seed) % 9};
			transport_hello_encode(buf, &v);
			buf[rng_next(&seed) % TRANSPORT_HELLO_BYTES] ^= (uint8_t)(1u << (rng_next(&seed) % 8));
			hr = transport_hello_parse(buf, len, &h);
			ck_assert(hr == (int)TRANSPORT_HELLO_BYTES || hr == -EBADMSG);
		}
		free(buf);
	}
}
END_TEST

/* A stream of valid frames cut at random points and reassembled the way transport.c does it
 * (append, parse as many as there are, keep the rest) yields every frame, in order. */
START_TEST(stream_reassembly)
{
	uint64_t seed = 42;
	enum { FRAMES = 3000 };
	size_t total = 0;
	uint32_t lens[FRAMES];
	for (unsigned i = 0; i < FRAMES; i++) {
		lens[i] = (uint32_t)(rng_next(&seed) % 700);
		total += TRANSPORT_FRAME_HEADER_BYTES + lens[i];
	}
	uint8_t *stream = malloc(total), *payload = malloc(700), *acc = malloc(total);
	ck_assert(stream && payload && acc);
	size_t off = 0;
	for (unsigned i = 0; i < FRAMES; i++) {
		for (uint32_t k = 0; k < lens[i]; k++) payload[k] = (uint8_t)(i + k);
		off += frame_build(stream + off, payload, lens[i]);
	}
	size_t fed = 0, acc_len = 0;
	unsigned next = 0;
	while (fed < total) {
		size_t cut = 1 + (size_t)(rng_next(&seed) % 1500);
		if (cut > total - fed) cut = total - fed;
		memcpy(acc + acc_len, stream + fed, cut);
		acc_len += cut;
		fed += cut;
		size_t used = 0;
		transport_frame_t f;
		int r;
		while ((r = transport_frame_parse(acc + used, acc_len - used, 1000, &f)) == 1) {
			ck_assert_uint_lt(next, FRAMES);
			ck_assert_uint_eq(f.payload_len, lens[next]);
			for (uint32_t k = 0; k < f.payload_len; k++) ck_assert_uint_eq(f.payload[k], (uint8_t)(next + k));
			next++;
			used += f.frame_bytes;
		}
		ck_assert_int_eq(r, 0);
		memmove(acc, acc + used, acc_len - used);
		acc_len -= used;
	}
	ck_assert_uint_eq(next, FRAMES);
	ck_assert_uint_eq(acc_len, 0);
	free(stream);
	free(payload);
	free(acc);
}
END_TEST

/* ------------------------------------------------------------------ loop harness */

struct node {
	transport_t *t;
	uint64_t id;
	uint16_t port;
	bool up[NODES_MAX + 1];            /* outbound link to id is up */
	uint64_t next_seq[NODES_MAX + 1];  /* next message expected from id */
	uint64_t received[NODES_MAX + 1];
	uint64_t sent[NODES_MAX + 1];
	uint64_t bad; /* wrong order, size or content */
	bool closing; /* transport_close called */
	bool closed;  /* and its callback ran */
	char log[LOG_KEEP_BYTES];
	size_t log_len;
	bool big_messages; /* the message shape both ends agree on */
};

static size_t msg_size(uint64_t seq, bool big)
{
	if (seq % 1000 == 999) return 256 * 1024 + seq % 17;
	return MSG_HEADER_BYTES + (size_t)((seq * 2654435761u) % (big ? 4000 : 1000));
}

static void msg_fill(uint8_t *buf, size_t len, uint64_t seq, uint64_t from)
{
	for (unsigned i = 0; i < MSG_HEADER_BYTES; i++) buf[i] = (uint8_t)(seq >> (8 * i));
	for (size_t i = MSG_HEADER_BYTES; i < len; i++) buf[i] = (uint8_t)(seq ^ (i * 31) ^ (from << 4));
}

static bool msg_check(const uint8_t *buf, size_t len, uint64_t seq, uint64_t from, bool big)
{
	if (len != msg_size(seq, big)) return false;
	for (size_t i = MSG_HEADER_BYTES; i < len; i++) {
		if (buf[i] != (uint8_t)(seq ^ (i * 31) ^ (from << 4))) return false;
	}
	return true;
}

static void on_message(void *ctx, uint64_t from, const uint8_t *buf, size_t len)
{
	struct node *n = ctx;
	ck_assert_uint_le(from, NODES_MAX);
	uint64_t seq = 0;
	if (len >= MSG_HEADER_BYTES) {
		for (unsigned i = 0; i < MSG_HEADER_BYTES; i++) seq |= (uint64_t)buf[i] << (8 * i);
	}
	if (len < MSG_HEADER_BYTES || seq != n->next_seq[from] || !msg_check(buf, len, seq, from, n->big_messages)) {
		n->bad++;
	}
	n->next_seq[from] = seq + 1;
	n->received[from]++;
}

static void on_peer_state(void *ctx, uint64_t id, bool connected)
{
	struct node *n = ctx;
	ck_assert_uint_le(id, NODES_MAX);
	ck_assert(n->up[id] != connected); /* reported on changes only */
	n->up[id] = connected;
}

static void on_log(void *ctx, int level, const char *line)
{
	struct node *n = ctx;
	ck_assert(level == TRANSPORT_LOG_INFO || level == TRANSPORT_LOG_WARN);
	if (getenv("TRANSPORT_TEST_VERBOSE") != NULL) fprintf(stderr, "%s\n", line);
	size_t len = strlen(line);
	if (n->log_len + len + 2 > sizeof n->log) n->log_len = 0; /* keep the recent lines */
	if (len + 2 > sizeof n->log) return;
	memcpy(n->log + n->log_len, line, len);
	n->log_len += len;
	n->log[n->log_len++] = '\n';
	n->log[n->log_len] = '\0';
}

static void on_closed(transport_t *t, void *ctx)
{
	struct node *n = ctx;
	ck_assert_ptr_eq(t, n->t);
	n->closed = true;
	n->t = NULL;
}

static void node_close(struct node *n)
{
	ck_assert(!n->closing);
	n->closing = true;
	transport_close(n->t, on_closed);
}

static void node_config(struct node *n, uint64_t id, transport_config_t *cfg)
{
	memset(n, 0, sizeof *n);
	n->id = id;
	for (unsigned i = 0; i <= NODES_MAX; i++) n->next_seq[i] = 0;
	memset(cfg, 0, sizeof *cfg);
	cfg->id = id;
	cfg->listen_addr = "127.0.0.1:0";
	cfg->token = token_a;
	cfg->token_len = TOKEN_LEN;
	cfg->backoff_min_ms = 10;
	cfg->backoff_max_ms = 200;
	cfg->handshake_timeout_ms = 2000;
	cfg->seed = id * 1000 + 7;
	cfg->on_message = on_message;
	cfg->on_peer_state = on_peer_state;
	cfg->log = on_log;
	cfg->ctx = n;
}

static void node_start(struct node *n, uv_loop_t *loop, const transport_config_t *cfg)
{
	char err[256] = "";
	int r = transport_new(loop, cfg, &n->t, err, sizeof err);
	ck_assert_msg(r == 0, "transport_new: %d %s", r, err);
	n->port = transport_port(n->t);
	ck_assert_uint_ne(n->port, 0);
	n->closing = false;
	n->closed = false;
}

typedef bool (*until_fn)(void *arg);

struct waiter {
	until_fn fn;
	void *arg;
	bool done;
};

static void on_wait_tick(uv_timer_t *timer)
{
	struct waiter *w = timer->data;
	if (!w->done && w->fn(w->arg)) w->done = true;
}

/* Run the loop until fn(arg) holds (checked every millisecond); fail after timeout_ms. */
static void run_until(uv_loop_t *loop, until_fn fn, void *arg, uint64_t timeout_ms)
{
	struct waiter w = {fn, arg, false};
	uv_timer_t timer;
	uv_timer_init(loop, &timer);
	timer.data = &w;
	uv_timer_start(&timer, on_wait_tick, 1, 1);
	uint64_t start = uv_now(loop);
	while (!w.done) {
		uv_run(loop, UV_RUN_ONCE);
		ck_assert_msg(uv_now(loop) - start < timeout_ms, "timed out waiting");
	}
	uv_close((uv_handle_t *)&timer, NULL);
	uv_run(loop, UV_RUN_NOWAIT);
}

struct group {
	struct node *nodes;
	size_t count;
};

static bool all_closed(void *arg)
{
	struct group *g = arg;
	for (size_t i = 0; i < g->count; i++) {
		if (!g->nodes[i].closed) return false;
	}
	return true;
}

static bool all_up(void *arg)
{
	struct group *g = arg;
	for (size_t i = 0; i < g->count; i++) {
		for (size_t j = 0; j < g->count; j++) {
			if (i != j && !g->nodes[i].up[g->nodes[j].id]) return false;
		}
	}
	return true;
}

static void close_all(uv_loop_t *loop, struct node *nodes, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		if (nodes[i].t != NULL && !nodes[i].closing) node_close(&nodes[i]);
	}
	struct group g = {nodes, count};
	run_until(loop, all_closed, &g, RUN_TIMEOUT_MS);
	uv_run(loop, UV_RUN_NOWAIT);
	ck_assert_int_eq(uv_loop_close(loop), 0); /* every handle was closed */
}

static void addr_of(char *buf, size_t len, uint16_t port)
{
	snprintf(buf, len, "127.0.0.1:%u", port);
}

/* Start `count` fully meshed transports (ids 1..count) on ephemeral ports and wait until every
 * link is up. */
static void mesh_start(uv_loop_t *loop, struct node *nodes, size_t count, bool big)
{
	transport_peer_t peers[NODES_MAX];
	for (size_t i = 0; i < count; i++) peers[i] = (transport_peer_t){.id = i + 1, .addr = NULL};
	for (size_t i = 0; i < count; i++) {
		transport_config_t cfg;
		node_config(&nodes[i], i + 1, &cfg);
		nodes[i].big_messages = big;
		cfg.peers = peers;
		cfg.peer_count = count;
		node_start(&nodes[i], loop, &cfg);
	}
	for (size_t i = 0; i < count; i++) {
		for (size_t j = 0; j < count; j++) {
			if (i == j) continue;
			char addr[64];
			addr_of(addr, sizeof addr, nodes[j].port);
			ck_assert_int_eq(transport_peer_set_addr(nodes[i].t, nodes[j].id, addr), 0);
		}
	}
	struct group g = {nodes, count};
	run_until(loop, all_up, &g, RUN_TIMEOUT_MS);
}

/* ------------------------------------------------------------------ exchange */

struct exchange {
	struct node *nodes;
	size_t count;
	uint64_t per_pair; /* messages each node sends to each other node */
	unsigned batch;    /* messages per pair per tick */
	uint8_t *buf;
};

/* Send the next batch on every link; done when everything sent has arrived. */
static bool exchange_step(void *arg)
{
	struct exchange *x = arg;
	bool done = true;
	for (size_t i = 0; i < x->count; i++) {
		struct node *s = &x->nodes[i];
		for (size_t j = 0; j < x->count; j++) {
			if (i == j) continue;
			struct node *d = &x->nodes[j];
			for (unsigned k = 0; k < x->batch && s->sent[d->id] < x->per_pair; k++) {
				uint64_t seq = s->sent[d->id];
				size_t len = msg_size(seq, s->big_messages);
				msg_fill(x->buf, len, seq, s->id);
				int r = transport_send(s->t, d->id, x->buf, len);
				ck_assert_msg(r == 0, "send %llu->%llu seq %llu: %d", (unsigned long long)s->id,
					(unsigned long long)d->id, (unsigned long long)seq, r);
				s->sent[d->id]++;
			}
			if (d->received[s->id] < x->per_pair) done = false;
		}
	}
	return done;
}

static void exchange_run(size_t count, uint64_t per_pair, bool big)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[NODES_MAX];
	mesh_start(&loop, nodes, count, big);
	struct exchange x = {nodes, count, per_pair, 250, malloc(300 * 1024)};
	ck_assert_ptr_nonnull(x.buf);
	run_until(&loop, exchange_step, &x, RUN_TIMEOUT_MS);
	free(x.buf);
	for (size_t i = 0; i < count; i++) {
		struct node *n = &nodes[i];
		transport_stats_t st;
		transport_stats_get(n->t, &st);
		ck_assert_uint_eq(n->bad, 0);
		for (size_t j = 0; j < count; j++) {
			if (i == j) continue;
			ck_assert_uint_eq(n->received[nodes[j].id], per_pair);
			ck_assert_uint_eq(n->next_seq[nodes[j].id], per_pair);
		}
		ck_assert_uint_eq(st.frames_received, per_pair * (count - 1));
		ck_assert_uint_eq(st.frames_sent, per_pair * (count - 1));
		ck_assert_uint_eq(st.drops_queue_full + st.drops_not_connected, 0);
		ck_assert_uint_eq(st.auth_failures + st.protocol_errors, 0);
		ck_assert_uint_lt(st.writes, st.frames_sent); /* batches were coalesced */
	}
	close_all(&loop, nodes, count);
}

START_TEST(two_nodes_10k)
{
	exchange_run(2, 10000, true);
}
END_TEST

START_TEST(three_nodes_10k)
{
	exchange_run(3, 10000, false);
}
END_TEST

struct burst {
	struct node *nodes;
	bool sent;
	unsigned count;
};

static bool burst_step(void *arg)
{
	struct burst *b = arg;
	if (!b->sent) {
		uint8_t msg[1100];
		for (unsigned i = 0; i < b->count; i++) {
			size_t len = msg_size(i, false);
			ck_assert_uint_le(len, sizeof msg);
			msg_fill(msg, len, i, 1);
			ck_assert_int_eq(transport_send(b->nodes[0].t, 2, msg, len), 0);
		}
		b->sent = true;
	}
	return b->nodes[1].received[1] == b->count;
}

/* Messages sent in one loop iteration leave in one uv_write. */
START_TEST(coalesce_one_write)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	mesh_start(&loop, nodes, 2, false);
	nodes[1].big_messages = false;
	struct burst b = {nodes, false, 900}; /* seq 999 would be a large message */
	run_until(&loop, burst_step, &b, RUN_TIMEOUT_MS);
	transport_stats_t st;
	transport_stats_get(nodes[0].t, &st);
	ck_assert_uint_eq(st.frames_sent, 900);
	ck_assert_uint_eq(st.writes, 1);
	ck_assert_uint_eq(nodes[1].bad, 0);

	/* transport_flush writes at once, and only when something is queued */
	transport_flush(nodes[0].t);
	transport_stats_get(nodes[0].t, &st);
	ck_assert_uint_eq(st.writes, 1);
	uint8_t m[1100];
	for (uint64_t seq = 900; seq < 910; seq++) {
		msg_fill(m, msg_size(seq, false), seq, 1);
		ck_assert_int_eq(transport_send(nodes[0].t, 2, m, msg_size(seq, false)), 0);
	}
	ck_assert_uint_eq(transport_peer_queued_bytes(nodes[0].t, 2) > 0, 1);
	transport_flush(nodes[0].t);
	transport_stats_get(nodes[0].t, &st);
	ck_assert_uint_eq(st.writes, 2);
	transport_flush(nodes[0].t);
	transport_stats_get(nodes[0].t, &st);
	ck_assert_uint_eq(st.writes, 2);
	b.count = 910;
	run_until(&loop, burst_step, &b, RUN_TIMEOUT_MS);
	transport_stats_get(nodes[0].t, &st);
	ck_assert_uint_eq(st.frames_sent, 910);
	ck_assert_uint_eq(st.writes, 2);
	ck_assert_uint_eq(nodes[1].bad, 0);
	close_all(&loop, nodes, 2);
}
END_TEST

/* A caller's check handle started after transport_new runs before the transport's, so what it
 * queues is written in the same iteration: by the next iteration's prepare phase (which runs
 * before any I/O) the write has been issued. */
struct check_order {
	uv_check_t check;
	uv_prepare_t prepare;
	transport_t *t;
	int phase; /* 0 waiting to send, 1 sent: look in prepare, 2 done */
	uint64_t writes_before, writes_at_prepare;
};

static void on_user_check(uv_check_t *h)
{
	struct check_order *co = h->data;
	if (co->phase != 0) return;
	transport_stats_t st;
	transport_stats_get(co->t, &st);
	co->writes_before = st.writes;
	uint8_t m[MSG_HEADER_BYTES];
	msg_fill(m, sizeof m, 0, 1);
	ck_assert_int_eq(transport_send(co->t, 2, m, sizeof m), 0);
	co->phase = 1;
}

static void on_user_prepare(uv_prepare_t *h)
{
	struct check_order *co = h->data;
	if (co->phase != 1) return;
	transport_stats_t st;
	transport_stats_get(co->t, &st);
	co->writes_at_prepare = st.writes;
	co->phase = 2;
}

static bool check_order_done(void *arg)
{
	struct check_order *co = arg;
	return co->phase == 2;
}

START_TEST(flush_same_iteration)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	mesh_start(&loop, nodes, 2, false);
	struct check_order co = {.t = nodes[0].t};
	uv_check_init(&loop, &co.check);
	uv_prepare_init(&loop, &co.prepare);
	co.check.data = co.prepare.data = &co;
	uv_check_start(&co.check, on_user_check);
	uv_prepare_start(&co.prepare, on_user_prepare);
	run_until(&loop, check_order_done, &co, RUN_TIMEOUT_MS);
	ck_assert_uint_eq(co.writes_at_prepare, co.writes_before + 1);
	uv_close((uv_handle_t *)&co.check, NULL);
	uv_close((uv_handle_t *)&co.prepare, NULL);
	close_all(&loop, nodes, 2);
}
END_TEST

/* ------------------------------------------------------------------ send errors */

struct send_errs {
	struct node *nodes;
	const char *addr_b;
};

static bool a_up_again(void *arg)
{
	struct node *nodes = arg;
	return nodes[0].up[2];
}

static bool b_got_one(void *arg)
{
	struct node *nodes = arg;
	return nodes[1].received[1] == 1;
}

static bool send_errs_step(void *arg)
{
	struct send_errs *s = arg;
	transport_t *t = s->nodes[0].t;
	static uint8_t big[1025];
	ck_assert_int_eq(transport_send(t, 9, big, 1), -ENOENT);  /* not a peer */
	ck_assert_int_eq(transport_send(t, 1, big, 1), -ENOENT);  /* ourselves */
	ck_assert_int_eq(transport_send(t, 2, big, 1025), -EMSGSIZE);
	ck_assert_int_eq(transport_send(t, 2, big, 1024), 0);
	ck_assert_uint_eq(transport_peer_queued_bytes(t, 2), 1024 + TRANSPORT_FRAME_HEADER_BYTES);
	ck_assert_uint_eq(transport_peer_queued_bytes(t, 3), 0);
	ck_assert_uint_eq(transport_peer_queued_bytes(t, 42), 0);
	ck_assert_int_eq(transport_send(t, 2, big, 1024), -ENOBUFS); /* the queue holds one frame */
	ck_assert_int_eq(transport_send(t, 3, big, 10), -ENOTCONN);  /* node 3 has no address */
	transport_stats_t st;
	transport_stats_get(t, &st);
	ck_assert_uint_eq(st.drops_queue_full, 1);
	ck_assert_uint_eq(st.drops_not_connected, 2); /* with the one before the link was up */
	ck_assert_uint_eq(st.drops_link_lost, 0);
	/* re-pointing the peer closes the link before the queued frame was flushed: it is lost */
	ck_assert(s->nodes[0].up[2]);
	ck_assert_int_eq(transport_peer_set_addr(t, 2, s->addr_b), 0);
	ck_assert(!s->nodes[0].up[2]); /* reported from inside the call */
	ck_assert(!transport_peer_connected(t, 2));
	ck_assert_uint_eq(transport_peer_queued_bytes(t, 2), 0);
	transport_stats_get(t, &st);
	ck_assert_uint_eq(st.drops_link_lost, 1);
	ck_assert_uint_eq(st.frames_sent, 0);
	return true;
}

START_TEST(send_errors)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	transport_peer_t peers[] = {{1, NULL}, {2, NULL}, {3, NULL}};
	for (unsigned i = 0; i < 2; i++) {
		transport_config_t cfg;
		node_config(&nodes[i], i + 1, &cfg);
		cfg.peers = peers;
		cfg.peer_count = 3;
		cfg.frame_bytes_max = 1024;
		cfg.queue_bytes_max = 1024 + TRANSPORT_FRAME_HEADER_BYTES;
		node_start(&nodes[i], &loop, &cfg);
	}
	uint8_t one = 1;
	ck_assert_int_eq(transport_send(nodes[0].t, 2, &one, 1), -ENOTCONN); /* not dialed yet */
	ck_assert(!transport_peer_connected(nodes[0].t, 2));
	char addr[64];
	addr_of(addr, sizeof addr, nodes[1].port);
	ck_assert_int_eq(transport_peer_set_addr(nodes[0].t, 2, addr), 0);
	struct node *a = &nodes[0];
	while (!a->up[2]) uv_run(&loop, UV_RUN_ONCE);
	ck_assert(transport_peer_connected(a->t, 2));
	ck_assert(!transport_peer_connected(a->t, 3));
	ck_assert(!transport_peer_connected(a->t, 42));
	struct send_errs s = {nodes, addr};
	run_until(&loop, send_errs_step, &s, RUN_TIMEOUT_MS);
	run_until(&loop, a_up_again, nodes, RUN_TIMEOUT_MS);
	uint8_t m[MSG_HEADER_BYTES];
	msg_fill(m, sizeof m, 0, 1);
	ck_assert_int_eq(transport_send(a->t, 2, m, sizeof m), 0);
	run_until(&loop, b_got_one, nodes, RUN_TIMEOUT_MS);
	ck_assert_uint_eq(nodes[1].bad, 0); /* the dropped 1024-byte frame never arrived */

	/* after transport_close, before the loop has run its callbacks */
	node_close(a);
	ck_assert_int_eq(transport_send(a->t, 2, &one, 1), -ESHUTDOWN);
	ck_assert_int_eq(transport_peer_set_addr(a->t, 2, addr), -ESHUTDOWN);
	ck_assert_int_eq(transport_peer_add(a->t, 5, NULL), -ESHUTDOWN);
	ck_assert_int_eq(transport_peer_remove(a->t, 2), -ESHUTDOWN);
	close_all(&loop, nodes, 2);
}
END_TEST

/* ------------------------------------------------------------------ config errors */

START_TEST(config_errors)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node n;
	transport_config_t cfg, base;
	transport_t *t = (transport_t *)&n;
	char err[256];
	transport_peer_t peers[TRANSPORT_PEERS_MAX + 2];
	for (unsigned i = 0; i < TRANSPORT_PEERS_MAX + 2; i++) peers[i] = (transport_peer_t){i + 1, NULL};
	node_config(&n, 1, &base);

#define EXPECT_EINVAL(what)                                                               \
	do {                                                                              \
		err[0] = '\0';                                                            \
		ck_assert_int_eq(transport_new(&loop, &cfg, &t, err, sizeof err), -EINVAL); \
		ck_assert_ptr_null(t);                                                    \
		ck_assert_msg(strstr(err, what) != NULL, "error text '%s' lacks '%s'", err, what); \
	} while (0)

	cfg = base;
	cfg.id = 0;
	EXPECT_EINVAL("node id");
	cfg = base;
	cfg.on_message = NULL;
	EXPECT_EINVAL("on_message");
	cfg = base;
	cfg.peers = peers;
	cfg.peer_count = 2;
	cfg.token_len = 5;
	EXPECT_EINVAL("token");
	cfg.token = NULL;
	cfg.token_len = 0;
	EXPECT_EINVAL("token"); /* no token is allowed only without peers */
	cfg = base;
	cfg.peers = NULL;
	cfg.peer_count = 1;
	EXPECT_EINVAL("no peers");
	cfg = base;
	cfg.peers = peers;
	cfg.peer_count = TRANSPORT_PEERS_MAX + 2;
	EXPECT_EINVAL("too many");
	transport_peer_t dup[] = {{2, NULL}, {2, NULL}};
	cfg = base;
	cfg.peers = dup;
	cfg.peer_count = 2;
	EXPECT_EINVAL("twice");
	transport_peer_t zero[] = {{0, NULL}};
	cfg.peers = zero;
	cfg.peer_count = 1;
	EXPECT_EINVAL("peer id");
	cfg = base;
	cfg.frame_bytes_max = TRANSPORT_FRAME_BYTES_MAX_LIMIT + 1;
	EXPECT_EINVAL("frame_bytes_max");
	cfg = base;
	cfg.frame_bytes_max = 4096;
	cfg.queue_bytes_max = 4096;
	EXPECT_EINVAL("queue_bytes_max");
	cfg = base;
	cfg.backoff_min_ms = 500;
	cfg.backoff_max_ms = 100;
	EXPECT_EINVAL("backoff");
	static const char *bad_addrs[] = {"nonsense", "127.0.0.1", "127.0.0.1:", "127.0.0.1:99999",
		"127.0.0.1:12x", "::1:80", "[::1]80", ":80", "127.0.0.1:123456"};
	for (size_t i = 0; i < sizeof bad_addrs / sizeof bad_addrs[0]; i++) {
		cfg = base;
		cfg.listen_addr = bad_addrs[i];
		EXPECT_EINVAL("address");
	}
	transport_peer_t port0[] = {{2, "127.0.0.1:0"}}; /* port 0 only makes sense for listening */
	cfg = base;
	cfg.peers = port0;
	cfg.peer_count = 1;
	EXPECT_EINVAL("address");
	cfg = base;
	cfg.listen_addr = NULL; /* and we are not among the peers */
	EXPECT_EINVAL("listen address");

	/* listen address in use */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(fd, 1), 0);
	socklen_t sl = sizeof sa;
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
	char addr[64];
	addr_of(addr, sizeof addr, ntohs(sa.sin_port));
	cfg = base;
	cfg.listen_addr = addr;
	ck_assert_int_eq(transport_new(&loop, &cfg, &t, err, sizeof err), -EADDRINUSE);
	ck_assert_ptr_nonnull(strstr(err, addr));
	close(fd);
	/* an address that is not ours (TEST-NET-1; bind only, nothing is sent) */
	cfg.listen_addr = "192.0.2.1:0";
	ck_assert_int_eq(transport_new(&loop, &cfg, &t, err, sizeof err), -EADDRNOTAVAIL);

	/* valid variants: listen address from our own peers entry, a resolvable name, no token */
	transport_peer_t self[] = {{1, "127.0.0.1:0"}, {2, "localhost:9"}};
	cfg = base;
	cfg.listen_addr = NULL;
	cfg.peers = self;
	cfg.peer_count = 2;
	cfg.backoff_min_ms = cfg.backoff_max_ms = 60000; /* one dial at most */
	node_start(&n, &loop, &cfg);
	struct node solo;
	transport_config_t solo_cfg;
	node_config(&solo, 7, &solo_cfg);
	solo_cfg.token = NULL;
	solo_cfg.token_len = 0;
	node_start(&solo, &loop, &solo_cfg);
	ck_assert_int_eq(transport_peer_add(solo.t, 8, NULL), -EINVAL); /* no token, no peers ever */
	struct sigaction sa_pipe;
	ck_assert_int_eq(sigaction(SIGPIPE, NULL, &sa_pipe), 0);
	ck_assert(sa_pipe.sa_handler == SIG_IGN); /* it was SIG_DFL in this test process */
	node_close(&n);
	node_close(&solo);
	while (!n.closed || !solo.closed) uv_run(&loop, UV_RUN_ONCE);
	ck_assert_int_eq(uv_loop_close(&loop), 0);
#undef EXPECT_EINVAL
}
END_TEST

/* Listening on a privileged port without privilege: -EACCES. Runs in a forked child that drops
 * root (so CK_FORK=no runs are unaffected); skipped where unprivileged users may bind port 1. */
START_TEST(listen_eacces)
{
	FILE *f = fopen("/proc/sys/net/ipv4/ip_unprivileged_port_start", "r");
	int start = 1024;
	if (f != NULL) {
		if (fscanf(f, "%d", &start) != 1) start = 1024;
		fclose(f);
	}
	if (start <= 1) {
		fprintf(stderr, "listen_eacces: unprivileged users may bind port 1 here; nothing to test\n");
		return;
	}
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		if (getuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
		uv_loop_t loop;
		if (uv_loop_init(&loop) != 0) _exit(4);
		struct node n;
		transport_config_t cfg;
		node_config(&n, 1, &cfg);
		cfg.listen_addr = "127.0.0.1:1";
		transport_t *t = NULL;
		char err[256];
		int r = transport_new(&loop, &cfg, &t, err, sizeof err);
		_exit(r == -EACCES && t == NULL && strstr(err, "127.0.0.1:1") != NULL ? 0 : 1);
	}
	int status = 0;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
}
END_TEST

/* ------------------------------------------------------------------ wrong token between transports */

static bool both_failed_twice(void *arg)
{
	struct node *nodes = arg;
	transport_stats_t a, b;
	transport_stats_get(nodes[0].t, &a);
	transport_stats_get(nodes[1].t, &b);
	return a.auth_failures >= 4 && b.auth_failures >= 4;
}

/* Nodes 1 and 2, each told the other's address; tweak (may be NULL) adjusts node i's config. */
static void pair_start(uv_loop_t *loop, struct node nodes[2], void (*tweak)(unsigned i, transport_config_t *cfg))
{
	static transport_peer_t peers[] = {{1, NULL}, {2, NULL}};
	for (unsigned i = 0; i < 2; i++) {
		transport_config_t cfg;
		node_config(&nodes[i], i + 1, &cfg);
		cfg.peers = peers;
		cfg.peer_count = 2;
		if (tweak) tweak(i, &cfg);
		node_start(&nodes[i], loop, &cfg);
	}
	char addr[64];
	addr_of(addr, sizeof addr, nodes[1].port);
	ck_assert_int_eq(transport_peer_set_addr(nodes[0].t, 2, addr), 0);
	addr_of(addr, sizeof addr, nodes[0].port);
	ck_assert_int_eq(transport_peer_set_addr(nodes[1].t, 1, addr), 0);
}

static void other_tokens(unsigned i, transport_config_t *cfg) { cfg->token = i == 0 ? token_a : token_b; }

START_TEST(wrong_token_refused)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	pair_start(&loop, nodes, other_tokens);
	run_until(&loop, both_failed_twice, nodes, RUN_TIMEOUT_MS);
	for (unsigned i = 0; i < 2; i++) {
		uint8_t m[MSG_HEADER_BYTES] = {0};
		ck_assert_int_eq(transport_send(nodes[i].t, 2 - i, m, sizeof m), -ENOTCONN);
		ck_assert(!nodes[i].up[2 - i]);
		ck_assert_uint_eq(nodes[i].received[2 - i], 0);
		ck_assert_ptr_nonnull(strstr(nodes[i].log, "bad MAC"));
		transport_stats_t st;
		transport_stats_get(nodes[i].t, &st);
		ck_assert_uint_eq(st.frames_received, 0);
		ck_assert_uint_ge(st.reconnects, 1); /* it kept trying, with backoff */
	}
	close_all(&loop, nodes, 2);
}
END_TEST

/* ------------------------------------------------------------------ raw client */

enum raw_mode { RAW_GARBAGE, RAW_SILENT, RAW_HANDSHAKE };

struct raw_client {
	uint16_t port;
	enum raw_mode mode;
	uint64_t from_id, to_id;
	const uint8_t *token;
	const uint8_t *after; /* sent after the proof (RAW_HANDSHAKE) or alone (RAW_GARBAGE) */
	size_t after_len;
	bool hang_up; /* close right after sending instead of waiting to be dropped */
	/* results */
	bool got_reply;     /* HELLO + MAC from the acceptor */
	bool server_mac_ok; /* and it verified under our token */
	bool dropped;       /* the transport closed the connection */
	atomic_bool done;
	pthread_t thread;
};

static bool send_all(int fd, const uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
		if (k <= 0) return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

static bool recv_all(int fd, uint8_t *p, size_t n)
{
	while (n > 0) {
		ssize_t k = recv(fd, p, n, 0);
		if (k <= 0) return false;
		p += k;
		n -= (size_t)k;
	}
	return true;
}

/* Wait for the other side to close: true on EOF or reset, false after the 5 s receive timeout. */
static bool wait_dropped(int fd)
{
	uint8_t sink[256];
	for (;;) {
		ssize_t k = recv(fd, sink, sizeof sink, 0);
		if (k == 0) return true;
		if (k < 0) return errno == ECONNRESET;
	}
}

static void *raw_client_main(void *arg)
{
	struct raw_client *rc = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(rc->port),
		.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) goto out;
	if (rc->mode == RAW_GARBAGE) {
		send_all(fd, rc->after, rc->after_len);
	} else if (rc->mode == RAW_HANDSHAKE) {
		transport_hello_t h = {.role = TRANSPORT_ROLE_DIALER, .from_id = rc->from_id, .to_id = rc->to_id};
		memset(h.nonce, 0x5a, sizeof h.nonce);
		uint8_t hello[TRANSPORT_HELLO_BYTES], reply[TRANSPORT_HELLO_BYTES + TRANSPORT_MAC_BYTES];
		transport_hello_encode(hello, &h);
		if (!send_all(fd, hello, sizeof hello)) goto wait;
		if (!recv_all(fd, reply, sizeof reply)) goto wait;
		rc->got_reply = true;
		transport_hello_t s;
		if (transport_hello_parse(reply, sizeof reply, &s) != (int)TRANSPORT_HELLO_BYTES) goto wait;
		uint8_t mac[TRANSPORT_MAC_BYTES];
		transport_handshake_mac(rc->token, TOKEN_LEN, TRANSPORT_ROLE_ACCEPTOR, s.from_id, rc->from_id, h.nonce,
			s.nonce, mac);
		rc->server_mac_ok = memcmp(mac, reply + TRANSPORT_HELLO_BYTES, sizeof mac) == 0;
		transport_handshake_mac(rc->token, TOKEN_LEN, TRANSPORT_ROLE_DIALER, rc->from_id, s.from_id, h.nonce,
			s.nonce, mac);
		if (!send_all(fd, mac, sizeof mac)) goto wait;
		if (rc->after_len > 0) send_all(fd, rc->after, rc->after_len);
	}
wait:
	if (!rc->hang_up) rc->dropped = wait_dropped(fd);
out:
	close(fd);
	atomic_store(&rc->done, true);
	return NULL;
}

static bool raw_done(void *arg)
{
	struct raw_client *rc = arg;
	return atomic_load(&rc->done);
}

/* One transport (node 1; peers 2 and 3 without addresses, so never dialed) and a raw client
 * against it; the stats are captured just before the transport closes. */
struct raw_result {
	transport_stats_t st;
	struct node n;
	uint64_t expect_received; /* wait for this many messages from node 2 before closing */
};

static bool got_from_2(void *arg)
{
	struct raw_result *res = arg;
	return res->n.received[2] >= res->expect_received;
}

static void raw_run_stats(struct raw_client *rc, struct raw_result *res, uint32_t handshake_timeout_ms)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node *n = &res->n;
	transport_peer_t peers[] = {{1, NULL}, {2, NULL}, {3, NULL}};
	transport_config_t cfg;
	node_config(n, 1, &cfg);
	cfg.peers = peers;
	cfg.peer_count = 3;
	cfg.frame_bytes_max = 4096;
	cfg.handshake_timeout_ms = handshake_timeout_ms;
	node_start(n, &loop, &cfg);
	rc->port = n->port;
	atomic_store(&rc->done, false);
	ck_assert_int_eq(pthread_create(&rc->thread, NULL, raw_client_main, rc), 0);
	run_until(&loop, raw_done, rc, RUN_TIMEOUT_MS);
	ck_assert_int_eq(pthread_join(rc->thread, NULL), 0);
	run_until(&loop, got_from_2, res, RUN_TIMEOUT_MS);
	for (int i = 0; i < 20; i++) { /* a hang-up still in flight is seen, not required */
		uv_run(&loop, UV_RUN_NOWAIT);
		usleep(1000);
	}
	transport_stats_get(n->t, &res->st);
	close_all(&loop, n, 1);
}

START_TEST(raw_garbage)
{
	uint8_t junk[300];
	uint64_t seed = 99;
	for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rng_next(&seed);
	struct raw_client rc = {.mode = RAW_GARBAGE, .after = junk, .after_len = sizeof junk};
	struct raw_result res = {0};
	raw_run_stats(&rc, &res, 2000);
	ck_assert(rc.dropped);
	ck_assert_uint_eq(res.st.accepted, 1);
	ck_assert_uint_eq(res.st.auth_failures, 1);
	ck_assert_uint_eq(res.st.frames_received, 0);
	ck_assert_ptr_nonnull(strstr(res.n.log, "malformed HELLO"));
}
END_TEST

START_TEST(raw_silent_times_out)
{
	struct raw_client rc = {.mode = RAW_SILENT};
	struct raw_result res = {0};
	raw_run_stats(&rc, &res, 200);
	ck_assert(rc.dropped);
	ck_assert_uint_eq(res.st.auth_failures, 1);
	ck_assert_ptr_nonnull(strstr(res.n.log, "no handshake within 200 ms"));
}
END_TEST

START_TEST(raw_good_frames_delivered)
{
	/* the positive control for the tests below: an independent client built from the codec */
	uint8_t frames[3 * (TRANSPORT_FRAME_HEADER_BYTES + 1100)];
	size_t off = 0;
	for (uint64_t seq = 0; seq < 3; seq++) {
		uint8_t m[1100];
		size_t len = msg_size(seq, false);
		ck_assert_uint_le(len, sizeof m);
		msg_fill(m, len, seq, 2);
		off += frame_build(frames + off, m, (uint32_t)len);
	}
	struct raw_client rc = {.mode = RAW_HANDSHAKE, .from_id = 2, .to_id = 1, .token = token_a,
		.after = frames, .after_len = off, .hang_up = true};
	struct raw_result res = {.expect_received = 3};
	raw_run_stats(&rc, &res, 2000);
	ck_assert(rc.got_reply && rc.server_mac_ok);
	ck_assert_uint_eq(res.n.received[2], 3);
	ck_assert_uint_eq(res.n.bad, 0);
	ck_assert_uint_eq(res.st.frames_received, 3);
	ck_assert_uint_eq(res.st.auth_failures + res.st.protocol_errors, 0);
}
END_TEST

START_TEST(raw_wrong_token)
{
	uint8_t frames[2 * (TRANSPORT_FRAME_HEADER_BYTES + 8)];
	uint8_t m[MSG_HEADER_BYTES] = {0};
	size_t off = frame_build(frames, m, sizeof m);
	m[0] = 1;
	off += frame_build(frames + off, m, sizeof m);
	struct raw_client rc = {.mode = RAW_HANDSHAKE, .from_id = 2, .to_id = 1, .token = token_b,
		.after = frames, .after_len = off};
	struct raw_result res = {0};
	raw_run_stats(&rc, &res, 2000);
	ck_assert(rc.got_reply);
	ck_assert(!rc.server_mac_ok); /* the acceptor's proof does not verify under the wrong token */
	ck_assert(rc.dropped);
	ck_assert_uint_eq(res.n.received[2], 0);
	ck_assert_uint_eq(res.st.frames_received, 0);
	ck_assert_uint_eq(res.st.auth_failures, 1);
	ck_assert_ptr_nonnull(strstr(res.n.log, "bad MAC"));
}
END_TEST

START_TEST(raw_unknown_or_wrong_id)
{
	struct raw_client rc = {.mode = RAW_HANDSHAKE, .from_id = 9, .to_id = 1, .token = token_a};
	struct raw_result res = {0};
	raw_run_stats(&rc, &res, 2000);
	ck_assert(!rc.got_reply); /* refused before the acceptor proves anything */
	ck_assert(rc.dropped);
	ck_assert_uint_eq(res.st.auth_failures, 1);
	ck_assert_ptr_nonnull(strstr(res.n.log, "not a configured peer"));

	struct raw_client rc2 = {.mode = RAW_HANDSHAKE, .from_id = 2, .to_id = 5, .token = token_a};
	raw_run_stats(&rc2, &res, 2000);
	ck_assert(!rc2.got_reply);
	ck_assert(rc2.dropped);
	ck_assert_uint_eq(res.st.auth_failures, 1);
	ck_assert_ptr_nonnull(strstr(res.n.log, "dialed node 5"));

	struct raw_client rc3 = {.mode = RAW_HANDSHAKE, .from_id = 1, .to_id = 1, .token = token_a};
	raw_run_stats(&rc3, &res, 2000); /* our own id is not a peer */
	ck_assert(!rc3.got_reply);
	ck_assert_uint_eq(res.st.auth_failures, 1);
}
END_TEST

START_TEST(raw_oversized_frame)
{
	uint8_t hdr[TRANSPORT_FRAME_HEADER_BYTES] = {0x01, 0x10, 0x00, 0x00}; /* 4097 > 4096 */
	struct raw_client rc = {.mode = RAW_HANDSHAKE, .from_id = 3, .to_id = 1, .token = token_a,
		.after = hdr, .after_len = sizeof hdr};
	struct raw_result res = {0};
	raw_run_stats(&rc, &res, 2000);
	ck_assert(rc.server_mac_ok);
	ck_assert(rc.dropped);
	ck_assert_uint_eq(res.st.protocol_errors, 1);
	ck_assert_uint_eq(res.st.frames_received, 0);
	ck_assert_ptr_nonnull(strstr(res.n.log, "exceeds the limit"));

	uint8_t huge[TRANSPORT_FRAME_HEADER_BYTES] = {0xff, 0xff, 0xff, 0xff};
	struct raw_client rc2 = {.mode = RAW_HANDSHAKE, .from_id = 3, .to_id = 1, .token = token_a,
		.after = huge, .after_len = sizeof huge};
	raw_run_stats(&rc2, &res, 2000);
	ck_assert(rc2.dropped);
	ck_assert_uint_eq(res.st.protocol_errors, 1);
}
END_TEST

START_TEST(raw_bad_crc_after_good_frame)
{
	uint8_t frames[2 * (TRANSPORT_FRAME_HEADER_BYTES + 100)];
	uint8_t m[100];
	msg_fill(m, MSG_HEADER_BYTES, 0, 2);
	size_t off = frame_build(frames, m, MSG_HEADER_BYTES); /* seq 0, 8 bytes: valid */
	size_t second = off;
	memset(m, 0x33, sizeof m);
	off += frame_build(frames + off, m, sizeof m);
	frames[second + TRANSPORT_FRAME_HEADER_BYTES + 50] ^= 0x01; /* corrupt the payload */
	struct raw_client rc = {.mode = RAW_HANDSHAKE, .from_id = 2, .to_id = 1, .token = token_a,
		.after = frames, .after_len = off};
	struct raw_result res = {0};
	raw_run_stats(&rc, &res, 2000);
	ck_assert(rc.dropped);
	ck_assert_uint_eq(res.n.received[2], 1); /* the good frame, and only it */
	ck_assert_uint_eq(res.st.frames_received, 1);
	ck_assert_uint_eq(res.st.protocol_errors, 1);
	ck_assert_ptr_nonnull(strstr(res.n.log, "CRC"));
}
END_TEST

/* Garbage after a correct handshake, many seeds: never a crash, always a drop. */
START_TEST(raw_random_after_handshake)
{
	uint64_t seed = 7;
	for (unsigned round = 0; round < 8; round++) {
		uint8_t junk[200];
		for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)rng_next(&seed);
		struct raw_client rc = {.mode = RAW_HANDSHAKE, .from_id = 2, .to_id = 1, .token = token_a,
			.after = junk, .after_len = sizeof junk};
		struct raw_result res = {0};
		raw_run_stats(&rc, &res, 2000);
		ck_assert(rc.dropped);
		ck_assert_uint_eq(res.st.protocol_errors, 1);
	}
}
END_TEST

/* ------------------------------------------------------------------ fake acceptor */

enum fake_mode { FAKE_WRONG_ID, FAKE_BAD_MAC, FAKE_GARBAGE };

struct fake_acceptor {
	int lfd;
	uint16_t port;
	enum fake_mode mode;
	bool got_hello;
	bool dropped;
	atomic_bool done;
	pthread_t thread;
};

static void *fake_acceptor_main(void *arg)
{
	struct fake_acceptor *fa = arg;
	struct pollfd pfd = {.fd = fa->lfd, .events = POLLIN};
	if (poll(&pfd, 1, 5000) != 1) goto out;
	int fd = accept(fa->lfd, NULL, NULL);
	if (fd < 0) goto out;
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	uint8_t hello[TRANSPORT_HELLO_BYTES], reply[TRANSPORT_HELLO_BYTES + TRANSPORT_MAC_BYTES];
	transport_hello_t h;
	if (recv_all(fd, hello, sizeof hello) && transport_hello_parse(hello, sizeof hello, &h) > 0) {
		fa->got_hello = true;
		transport_hello_t s = {.role = TRANSPORT_ROLE_ACCEPTOR, .from_id = 2, .to_id = h.from_id};
		if (fa->mode == FAKE_WRONG_ID) s.from_id = 3;
		memset(s.nonce, 0x77, sizeof s.nonce);
		transport_hello_encode(reply, &s);
		transport_handshake_mac(fa->mode == FAKE_BAD_MAC ? token_b : token_a, TOKEN_LEN, TRANSPORT_ROLE_ACCEPTOR,
			s.from_id, h.from_id, h.nonce, s.nonce, reply + TRANSPORT_HELLO_BYTES);
		if (fa->mode == FAKE_GARBAGE) memset(reply, 0xee, sizeof reply);
		send_all(fd, reply, sizeof reply);
		fa->dropped = wait_dropped(fd);
	}
	close(fd);
out:
	atomic_store(&fa->done, true);
	return NULL;
}

static bool fake_done(void *arg)
{
	struct fake_acceptor *fa = arg;
	return atomic_load(&fa->done);
}

static void fake_run(enum fake_mode mode, const char *expect_log)
{
	struct fake_acceptor fa = {.mode = mode};
	fa.lfd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	ck_assert_int_eq(bind(fa.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
	ck_assert_int_eq(listen(fa.lfd, 4), 0);
	socklen_t sl = sizeof sa;
	ck_assert_int_eq(getsockname(fa.lfd, (struct sockaddr *)&sa, &sl), 0);
	fa.port = ntohs(sa.sin_port);
	atomic_store(&fa.done, false);
	ck_assert_int_eq(pthread_create(&fa.thread, NULL, fake_acceptor_main, &fa), 0);

	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node n;
	transport_config_t cfg;
	node_config(&n, 1, &cfg);
	char addr[64];
	addr_of(addr, sizeof addr, fa.port);
	transport_peer_t peers[] = {{2, addr}};
	cfg.peers = peers;
	cfg.peer_count = 1;
	cfg.backoff_min_ms = cfg.backoff_max_ms = 60000; /* one dial */
	node_start(&n, &loop, &cfg);
	run_until(&loop, fake_done, &fa, RUN_TIMEOUT_MS);
	ck_assert_int_eq(pthread_join(fa.thread, NULL), 0);
	close(fa.lfd);
	ck_assert(fa.got_hello);
	ck_assert(fa.dropped); /* the dialer hung up on the impostor */
	ck_assert(!n.up[2]);
	transport_stats_t st;
	transport_stats_get(n.t, &st);
	ck_assert_uint_eq(st.auth_failures, 1);
	ck_assert_msg(strstr(n.log, expect_log) != NULL, "log lacks '%s':\n%s", expect_log, n.log);
	uint8_t m = 0;
	ck_assert_int_eq(transport_send(n.t, 2, &m, 1), -ENOTCONN);
	close_all(&loop, &n, 1);
}

START_TEST(dialer_checks_acceptor)
{
	fake_run(FAKE_WRONG_ID, "says it is node 3");
	fake_run(FAKE_BAD_MAC, "bad MAC");
	fake_run(FAKE_GARBAGE, "malformed HELLO");
}
END_TEST

/* ------------------------------------------------------------------ restart */

struct restart {
	struct node *nodes;
	uint64_t per_pair;
	uint64_t base; /* first sequence number of this round */
	uint8_t *buf;
};

static bool restart_send_step(void *arg)
{
	struct restart *r = arg;
	bool done = true;
	for (unsigned i = 0; i < 2; i++) {
		struct node *s = &r->nodes[i], *d = &r->nodes[1 - i];
		while (s->sent[d->id] < r->base + r->per_pair) {
			uint64_t seq = s->sent[d->id];
			size_t len = msg_size(seq, false);
			msg_fill(r->buf, len, seq, s->id);
			ck_assert_int_eq(transport_send(s->t, d->id, r->buf, len), 0);
			s->sent[d->id]++;
		}
		if (d->received[s->id] < r->per_pair) done = false;
	}
	return done;
}

static bool a_redial_failed(void *arg)
{
	struct node *nodes = arg;
	transport_stats_t st;
	transport_stats_get(nodes[0].t, &st);
	return st.connect_failures >= 1;
}

static bool a_sees_b_down(void *arg)
{
	struct node *nodes = arg;
	return nodes[1].closed && !nodes[0].up[2];
}

/* Starts node 2 again on port_b (a restarted process), told node 1's address. */
static void b_reopen(uv_loop_t *loop, struct node nodes[2], uint16_t port_b)
{
	char addr_a[64], listen_b[64];
	addr_of(addr_a, sizeof addr_a, nodes[0].port);
	addr_of(listen_b, sizeof listen_b, port_b);
	transport_peer_t peers[] = {{1, addr_a}, {2, NULL}};
	transport_config_t cfg;
	node_config(&nodes[1], 2, &cfg);
	cfg.listen_addr = listen_b;
	cfg.peers = peers;
	cfg.peer_count = 2;
	node_start(&nodes[1], loop, &cfg);
	ck_assert_uint_eq(nodes[1].port, port_b);
}

START_TEST(peer_restart_reconnects)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	mesh_start(&loop, nodes, 2, false);
	struct restart r = {nodes, 500, 0, malloc(300 * 1024)};
	run_until(&loop, restart_send_step, &r, RUN_TIMEOUT_MS);

	/* close B; A notices, and sends to B are refused while it is gone */
	uint16_t port_b = nodes[1].port;
	node_close(&nodes[1]);
	run_until(&loop, a_sees_b_down, nodes, RUN_TIMEOUT_MS);
	uint8_t m[MSG_HEADER_BYTES] = {0};
	ck_assert_int_eq(transport_send(nodes[0].t, 2, m, sizeof m), -ENOTCONN);
	run_until(&loop, a_redial_failed, nodes, RUN_TIMEOUT_MS); /* against the closed port */

	/* reopen B on the same port: a fresh process as far as A can tell */
	b_reopen(&loop, nodes, port_b);
	struct group g = {nodes, 2};
	run_until(&loop, all_up, &g, RUN_TIMEOUT_MS);

	/* traffic resumes both ways; both ends number their messages from 0 again */
	nodes[0].received[2] = 0;
	nodes[0].next_seq[2] = 0;
	nodes[0].sent[2] = 0;
	nodes[1].next_seq[1] = 0;
	r.per_pair = 500;
	run_until(&loop, restart_send_step, &r, RUN_TIMEOUT_MS);
	ck_assert_uint_eq(nodes[0].bad + nodes[1].bad, 0);
	transport_stats_t st;
	transport_stats_get(nodes[0].t, &st);
	ck_assert_uint_ge(st.reconnects, 1);
	ck_assert_uint_ge(st.connect_failures, 1);
	ck_assert_uint_eq(st.auth_failures + st.protocol_errors, 0);
	free(r.buf);
	close_all(&loop, nodes, 2);
}
END_TEST

/* A peer that comes back dials us: our own dial to it must not wait out its backoff (a
 * restarted follower would hear nothing from the leader until then). A's backoff here is
 * longer than run_until's timeout. */
static void slow_backoff_on_1(unsigned i, transport_config_t *cfg)
{
	if (i == 0) cfg->backoff_min_ms = cfg->backoff_max_ms = 4 * RUN_TIMEOUT_MS;
}

START_TEST(restarted_peer_is_dialed_at_once)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	pair_start(&loop, nodes, slow_backoff_on_1);
	struct group g = {nodes, 2};
	run_until(&loop, all_up, &g, RUN_TIMEOUT_MS);

	uint16_t port_b = nodes[1].port;
	node_close(&nodes[1]);
	run_until(&loop, a_sees_b_down, nodes, RUN_TIMEOUT_MS); /* its redial is minutes away */

	b_reopen(&loop, nodes, port_b);
	run_until(&loop, all_up, &g, RUN_TIMEOUT_MS); /* A's link to B too, long before its backoff */
	close_all(&loop, nodes, 2);
}
END_TEST

/* ------------------------------------------------------------------ membership */

static bool a_up_to_b(void *arg)
{
	struct node *nodes = arg;
	return nodes[0].up[2] && nodes[1].up[1];
}

static bool one_message_each(void *arg)
{
	struct node *nodes = arg;
	return nodes[1].received[1] >= 1 && nodes[0].received[2] >= 1;
}

static bool b_refused_after_removal(void *arg)
{
	struct node *nodes = arg;
	transport_stats_t a;
	transport_stats_get(nodes[0].t, &a);
	return !nodes[1].up[1] && a.auth_failures >= 1;
}

START_TEST(membership_add_remove)
{
	uv_loop_t loop;
	ck_assert_int_eq(uv_loop_init(&loop), 0);
	struct node nodes[2];
	transport_config_t cfg;
	node_config(&nodes[0], 1, &cfg); /* A starts alone */
	node_start(&nodes[0], &loop, &cfg);
	char addr_a[64], addr_b[64];
	addr_of(addr_a, sizeof addr_a, nodes[0].port);
	transport_peer_t peers_b[] = {{1, addr_a}};
	node_config(&nodes[1], 2, &cfg);
	cfg.peers = peers_b;
	cfg.peer_count = 1;
	node_start(&nodes[1], &loop, &cfg);
	addr_of(addr_b, sizeof addr_b, nodes[1].port);
	transport_t *a = nodes[0].t;

	ck_assert_int_eq(transport_peer_add(a, 2, addr_b), 0);
	ck_assert_int_eq(transport_peer_add(a, 2, addr_b), -EEXIST);
	ck_assert_int_eq(transport_peer_add(a, 0, NULL), -EINVAL);
	ck_assert_int_eq(transport_peer_add(a, 1, NULL), -EINVAL);
	ck_assert_int_eq(transport_peer_add(a, 3, "bogus"), -EINVAL);
	ck_assert_int_eq(transport_peer_set_addr(a, 3, addr_b), -ENOENT);
	ck_assert_int_eq(transport_peer_set_addr(a, 2, "bogus"), -EINVAL);
	ck_assert_int_eq(transport_peer_remove(a, 3), -ENOENT);
	run_until(&loop, a_up_to_b, nodes, RUN_TIMEOUT_MS);
	uint8_t m[MSG_HEADER_BYTES];
	msg_fill(m, sizeof m, 0, 1);
	ck_assert_int_eq(transport_send(a, 2, m, sizeof m), 0);
	msg_fill(m, sizeof m, 0, 2);
	ck_assert_int_eq(transport_send(nodes[1].t, 1, m, sizeof m), 0);
	run_until(&loop, one_message_each, nodes, RUN_TIMEOUT_MS);

	/* fill every slot: ids 10.. without addresses */
	unsigned added = 1;
	while (transport_peer_add(a, 10 + added, NULL) == 0) added++;
	ck_assert_uint_eq(added, TRANSPORT_PEERS_MAX);
	ck_assert_int_eq(transport_peer_add(a, 999, NULL), -ENOSPC);
	ck_assert_int_eq(transport_peer_remove(a, 11), 0);
	ck_assert_int_eq(transport_peer_add(a, 999, NULL), 0); /* the slot is reusable */

	/* remove B: both links close, B's redials are refused, nothing more is delivered */
	ck_assert_int_eq(transport_peer_remove(a, 2), 0);
	ck_assert(!transport_peer_connected(a, 2));
	ck_assert_int_eq(transport_send(a, 2, m, sizeof m), -ENOENT);
	uint64_t before = nodes[0].received[2];
	run_until(&loop, b_refused_after_removal, nodes, RUN_TIMEOUT_MS);
	ck_assert_uint_eq(nodes[0].received[2], before);
	ck_assert_ptr_nonnull(strstr(nodes[0].log, "not a configured peer"));
	close_all(&loop, nodes, 2);
}
END_TEST

/* ------------------------------------------------------------------ suite */

static Suite *transport_suite(void)
{
	Suite *s = suite_create("raft_transport");
	TCase *tc = tcase_create("crypto");
	tcase_add_test(tc, sha256_vectors);
	tcase_add_test(tc, sha256_million_a);
	tcase_add_test(tc, sha256_split_points);
	tcase_add_test(tc, hmac_rfc4231);
	tcase_add_test(tc, ct_equal);
	tcase_add_test(tc, backoff_policy);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("token");
	tcase_add_test(tc, token_load_modes);
	tcase_add_test(tc, token_load_sizes);
	suite_add_tcase(s, tc);

	tc = tcase_create("codec");
	tcase_add_test(tc, frame_codec);
	tcase_add_test(tc, hello_codec);
	tcase_add_test(tc, handshake_mac);
	tcase_add_test(tc, fuzz_decoders);
	tcase_add_test(tc, stream_reassembly);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("net");
	tcase_add_test(tc, config_errors);
	tcase_add_test(tc, listen_eacces);
	tcase_add_test(tc, send_errors);
	tcase_add_test(tc, coalesce_one_write);
	tcase_add_test(tc, flush_same_iteration);
	tcase_add_test(tc, two_nodes_10k);
	tcase_add_test(tc, three_nodes_10k);
	tcase_add_test(tc, wrong_token_refused);
	tcase_add_test(tc, raw_garbage);
	tcase_add_test(tc, raw_silent_times_out);
	tcase_add_test(tc, raw_good_frames_delivered);
	tcase_add_test(tc, raw_wrong_token);
	tcase_add_test(tc, raw_unknown_or_wrong_id);
	tcase_add_test(tc, raw_oversized_frame);
	tcase_add_test(tc, raw_bad_crc_after_good_frame);
	tcase_add_test(tc, raw_random_after_handshake);
	tcase_add_test(tc, dialer_checks_acceptor);
	tcase_add_test(tc, peer_restart_reconnects);
	tcase_add_test(tc, restarted_peer_is_dialed_at_once);
	tcase_add_test(tc, membership_add_remove);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(transport_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
