/* sha256.h - SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104), written here from the standards.
 *
 * The transport authenticates peers with an HMAC-SHA256 challenge over the cluster token; this
 * is the whole of the cryptography MetaStore needs, so it does not pull in OpenSSL. Streaming
 * (init/update/final) and one-shot forms. Contexts live on the caller's stack; final() wipes
 * the context with explicit_bzero so key material does not linger. sha256_ct_equal compares
 * digests in time independent of where they differ (use it for every MAC check).
 *
 * Speed is a few hundred MB/s on one core (plain C, no SHA extensions): enough for handshakes,
 * not meant for bulk data.
 */
#ifndef METASTORE_SHA256_H
#define METASTORE_SHA256_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_BYTES 32u
#define SHA256_BLOCK_BYTES 64u

typedef struct sha256_ctx {
	uint32_t state[8];
	uint64_t total_bytes; /* message length so far; the standard caps it at 2^64 - 1 bits */
	uint8_t block[SHA256_BLOCK_BYTES];
	size_t block_len; /* bytes buffered in block, always < SHA256_BLOCK_BYTES */
} sha256_ctx_t;

typedef struct hmac_sha256_ctx {
	sha256_ctx_t inner; /* H(K ^ ipad || text ...) */
	sha256_ctx_t outer; /* H(K ^ opad || ...), fed the inner digest at final */
} hmac_sha256_ctx_t;

void sha256_init(sha256_ctx_t *c);
void sha256_update(sha256_ctx_t *c, const void *data, size_t len);
void sha256_final(sha256_ctx_t *c, uint8_t out[SHA256_DIGEST_BYTES]);
void sha256(const void *data, size_t len, uint8_t out[SHA256_DIGEST_BYTES]);

/* A key longer than one block is hashed first (RFC 2104 section 2); any length, 0 included. */
void hmac_sha256_init(hmac_sha256_ctx_t *c, const void *key, size_t key_len);
void hmac_sha256_update(hmac_sha256_ctx_t *c, const void *data, size_t len);
void hmac_sha256_final(hmac_sha256_ctx_t *c, uint8_t out[SHA256_DIGEST_BYTES]);
void hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
	uint8_t out[SHA256_DIGEST_BYTES]);

/* true when a and b hold the same len bytes; runs in time that depends on len only. */
bool sha256_ct_equal(const void *a, const void *b, size_t len);

#endif
