/* sha256.c - SHA-256 after FIPS 180-4 sections 4.1.2, 4.2.2, 5.1.1, 5.3.3 and 6.2, and
 * HMAC after RFC 2104 section 2.
 *
 * A straightforward one-block-at-a-time compression with a 16-word rolling message schedule.
 * Used for the transport handshake only (a handful of blocks per connection), so clarity wins
 * over speed. Verified by the FIPS 180-2 example vectors and the RFC 4231 HMAC vectors in
 * tests/raft_transport_test.c.
 */
#include "sha256.h"

#include <assert.h>
#include <string.h>

/* FIPS 180-4 4.2.2: first 32 bits of the fractional parts of the cube roots of the first 64
 * primes. */
static const uint32_t sha256_k[64] = {
	0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
	0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
	0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
	0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
	0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
	0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
	0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
	0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

/* FIPS 180-4 5.3.3: first 32 bits of the fractional parts of the square roots of the first 8
 * primes. */
static const uint32_t sha256_h0[8] = {
	0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static inline uint32_t rotr(uint32_t x, unsigned n)
{
	return (x >> n) | (x << (32u - n));
}

static inline uint32_t load_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* FIPS 180-4 6.2.2: one 512-bit block. */
static void sha256_compress(uint32_t state[8], const uint8_t block[SHA256_BLOCK_BYTES])
{
	uint32_t w[16];
	for (unsigned t = 0; t < 16; t++) w[t] = load_be32(block + 4 * t);

	uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
	uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
	for (unsigned t = 0; t < 64; t++) {
		uint32_t wt;
		if (t < 16) {
			wt = w[t];
		} else {
			/* W_t = s1(W_t-2) + W_t-7 + s0(W_t-15) + W_t-16, kept in a ring of 16. */
			uint32_t w15 = w[(t - 15) & 15], w2 = w[(t - 2) & 15];
			uint32_t s0 = rotr(w15, 7) ^ rotr(w15, 18) ^ (w15 >> 3);
			uint32_t s1 = rotr(w2, 17) ^ rotr(w2, 19) ^ (w2 >> 10);
			wt = s1 + w[(t - 7) & 15] + s0 + w[t & 15];
			w[t & 15] = wt;
		}
		uint32_t big_s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
		uint32_t ch = (e & f) ^ (~e & g);
		uint32_t t1 = h + big_s1 + ch + sha256_k[t] + wt;
		uint32_t big_s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
		uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
		uint32_t t2 = big_s0 + maj;
		h = g;
		g = f;
		f = e;
		e = d + t1;
		d = c;
		c = b;
		b = a;
		a = t1 + t2;
	}
	state[0] += a;
	state[1] += b;
	state[2] += c;
	state[3] += d;
	state[4] += e;
	state[5] += f;
	state[6] += g;
	state[7] += h;
	explicit_bzero(w, sizeof w);
}

void sha256_init(sha256_ctx_t *c)
{
	assert(c != NULL);
	memcpy(c->state, sha256_h0, sizeof c->state);
	c->total_bytes = 0;
	c->block_len = 0;
}

void sha256_update(sha256_ctx_t *c, const void *data, size_t len)
{
	assert(c != NULL);
	assert(data != NULL || len == 0);
	assert(c->block_len < SHA256_BLOCK_BYTES);
	const uint8_t *p = data;
	c->total_bytes += len;
	if (c->block_len > 0) {
		size_t take = SHA256_BLOCK_BYTES - c->block_len;
		if (take > len) take = len;
		memcpy(c->block + c->block_len, p, take);
		c->block_len += take;
		p += take;
		len -= take;
		if (c->block_len < SHA256_BLOCK_BYTES) return;
		sha256_compress(c->state, c->block);
		c->block_len = 0;
	}
	while (len >= SHA256_BLOCK_BYTES) {
		sha256_compress(c->state, p);
		p += SHA256_BLOCK_BYTES;
		len -= SHA256_BLOCK_BYTES;
	}
	if (len > 0) memcpy(c->block, p, len);
	c->block_len = len;
}

void sha256_final(sha256_ctx_t *c, uint8_t out[SHA256_DIGEST_BYTES])
{
	assert(c != NULL && out != NULL);
	assert(c->block_len < SHA256_BLOCK_BYTES);
	/* FIPS 180-4 5.1.1: a 1 bit, zeros up to 56 mod 64 bytes, then the bit length (big-endian). */
	uint64_t bits = c->total_bytes * 8u;
	c->block[c->block_len++] = 0x80;
	if (c->block_len > SHA256_BLOCK_BYTES - 8) {
		memset(c->block + c->block_len, 0, SHA256_BLOCK_BYTES - c->block_len);
		sha256_compress(c->state, c->block);
		c->block_len = 0;
	}
	memset(c->block + c->block_len, 0, SHA256_BLOCK_BYTES - 8 - c->block_len);
	store_be32(c->block + 56, (uint32_t)(bits >> 32));
	store_be32(c->block + 60, (uint32_t)bits);
	sha256_compress(c->state, c->block);
	for (unsigned i = 0; i < 8; i++) store_be32(out + 4 * i, c->state[i]);
	explicit_bzero(c, sizeof *c);
}

void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_BYTES])
{
	sha256_ctx_t c;
	sha256_init(&c);
	sha256_update(&c, data, len);
	sha256_final(&c, out);
}

void hmac_sha256_init(hmac_sha256_ctx_t *c, const void *key, size_t key_len)
{
	assert(c != NULL);
	assert(key != NULL || key_len == 0);
	uint8_t k0[SHA256_BLOCK_BYTES] = {0};
	if (key_len > SHA256_BLOCK_BYTES) {
		sha256(key, key_len, k0); /* RFC 2104: K = H(K), then zero-padded to B bytes */
	} else if (key_len > 0) {
		memcpy(k0, key, key_len);
	}
	uint8_t pad[SHA256_BLOCK_BYTES];
	for (unsigned i = 0; i < SHA256_BLOCK_BYTES; i++) pad[i] = k0[i] ^ 0x36;
	sha256_init(&c->inner);
	sha256_update(&c->inner, pad, sizeof pad);
	for (unsigned i = 0; i < SHA256_BLOCK_BYTES; i++) pad[i] = k0[i] ^ 0x5c;
	sha256_init(&c->outer);
	sha256_update(&c->outer, pad, sizeof pad);
	explicit_bzero(k0, sizeof k0);
	explicit_bzero(pad, sizeof pad);
}

void hmac_sha256_update(hmac_sha256_ctx_t *c, const void *data, size_t len)
{
	assert(c != NULL);
	sha256_update(&c->inner, data, len);
}

void hmac_sha256_final(hmac_sha256_ctx_t *c, uint8_t out[SHA256_DIGEST_BYTES])
{
	assert(c != NULL && out != NULL);
	uint8_t inner[SHA256_DIGEST_BYTES];
	sha256_final(&c->inner, inner);
	sha256_update(&c->outer, inner, sizeof inner);
	sha256_final(&c->outer, out);
	explicit_bzero(inner, sizeof inner);
}

void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
	uint8_t out[SHA256_DIGEST_BYTES])
{
	hmac_sha256_ctx_t c;
	hmac_sha256_init(&c, key, key_len);
	hmac_sha256_update(&c, data, len);
	hmac_sha256_final(&c, out);
}

bool sha256_ct_equal(const void *a, const void *b, size_t len)
{
	assert(a != NULL || len == 0);
	assert(b != NULL || len == 0);
	const volatile uint8_t *pa = a, *pb = b;
	uint8_t diff = 0;
	for (size_t i = 0; i < len; i++) diff |= (uint8_t)(pa[i] ^ pb[i]);
	return diff == 0;
}
