/* engine.c - the public engine API: backend dispatch, the write batch, the snapshot stream.
 *
 * The backend (memory or rocksdb) is picked once in engine_open() and reached through a table
 * of function pointers, in the style of Redis's ae.c. The batch is an append-only arena of ops
 * so building one costs one memcpy per key and value. The snapshot stream is backend-neutral,
 * so a snapshot written by one backend restores into the other:
 *
 *   header  : "MSSNAP01" | u32 version=1 | u64 applied_index | u64 record_count
 *   record  : u32 key_len | u32 val_len | key | val            (keys strictly increasing)
 *   trailer : "MSSNEND1" | u64 record_count | u64 hash
 *
 * All integers little-endian. `hash` covers header and records (see snap_hash_*): it catches
 * truncation and corruption of a stream; authenticity is the transport's business.
 */
#include "engine.h"
#include "le.h"
#include "backend.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct engine {
	const engine_backend_ops_t *ops;
	void *state;
};

struct engine_batch {
	engine_op_t *ops;
	size_t n, cap;
	uint8_t *arena; /* keys and values; ops point into it after fixup */
	size_t arena_len, arena_cap;
	bool fixed; /* op pointers are valid (arena has not moved since last fixup) */
};

/* ------------------------------------------------------------------ open/close */

int engine_open(const engine_options_t *opts, engine_t **out, char *errbuf, size_t errbuf_len)
{
	const engine_backend_ops_t *ops = NULL;
	if (!opts || !opts->kind || !out) {
		if (errbuf && errbuf_len) snprintf(errbuf, errbuf_len, "engine: missing options");
		return -EINVAL;
	}
	if (strcmp(opts->kind, "memory") == 0)
		ops = &engine_memory_backend;
	else if (strcmp(opts->kind, "rocksdb") == 0)
		ops = &engine_rocksdb_backend;
	else {
		if (errbuf && errbuf_len)
			snprintf(errbuf, errbuf_len, "engine: unknown kind '%s' (memory or rocksdb)", opts->kind);
		return -EINVAL;
	}
	engine_t *e = calloc(1, sizeof *e);
	if (!e) return -ENOMEM;
	e->ops = ops;
	int rc = ops->open(opts, &e->state, errbuf, errbuf_len);
	if (rc < 0) {
		free(e);
		return rc;
	}
	*out = e;
	return 0;
}

void engine_close(engine_t *e)
{
	if (!e) return;
	e->ops->close(e->state);
	free(e);
}

const char *engine_kind(const engine_t *e) { return e->ops->name; }
const char *engine_errmsg(const engine_t *e) { return e->ops->errmsg(e->state); }

int engine_get(engine_t *e, const void *key, size_t key_len, const void **val, size_t *val_len)
{
	if (key_len > ENGINE_KEY_BYTES_MAX) return -EINVAL;
	return e->ops->get(e->state, key, key_len, val, val_len);
}

uint64_t engine_key_count(const engine_t *e) { return e->ops->key_count(e->state); }
uint64_t engine_data_bytes(const engine_t *e) { return e->ops->data_bytes(e->state); }
uint64_t engine_applied_index(const engine_t *e) { return e->ops->applied_index(e->state); }

int engine_put(engine_t *e, const void *key, size_t key_len, const void *val, size_t val_len)
{
	if (key_len > ENGINE_KEY_BYTES_MAX || val_len > ENGINE_VALUE_BYTES_MAX) return -EINVAL;
	engine_op_t op = {ENGINE_OP_PUT, key, key_len, val, val_len};
	return e->ops->commit(e->state, &op, 1, e->ops->applied_index(e->state));
}

int engine_delete(engine_t *e, const void *key, size_t key_len)
{
	if (key_len > ENGINE_KEY_BYTES_MAX) return -EINVAL;
	engine_op_t op = {ENGINE_OP_DELETE, key, key_len, NULL, 0};
	return e->ops->commit(e->state, &op, 1, e->ops->applied_index(e->state));
}

/* ------------------------------------------------------------------ batch */

engine_batch_t *engine_batch_new(void) { return calloc(1, sizeof(engine_batch_t)); }

void engine_batch_free(engine_batch_t *b)
{
	if (!b) return;
	free(b->ops);
	free(b->arena);
	free(b);
}

void engine_batch_clear(engine_batch_t *b)
{
	b->n = 0;
	b->arena_len = 0;
	b->fixed = true;
}

size_t engine_batch_count(const engine_batch_t *b) { return b->n; }

/* Ops store arena offsets (in the pointer fields, as integers) until the arena stops moving;
 * engine_batch_ops() turns them into pointers once. */
static int batch_add(engine_batch_t *b, enum engine_op_type type, const void *key, size_t key_len,
		     const void *val, size_t val_len)
{
	if (key_len > ENGINE_KEY_BYTES_MAX || val_len > ENGINE_VALUE_BYTES_MAX) return -EINVAL;
	/* Pointers resolved by engine_batch_ops() point into the current arena: turn them back
	 * into offsets before a realloc below can move it. */
	if (b->fixed && b->n) {
		for (size_t i = 0; i < b->n; i++) {
			b->ops[i].key = (const uint8_t *)(uintptr_t)(b->ops[i].key - b->arena);
			if (b->ops[i].type == ENGINE_OP_PUT)
				b->ops[i].val = (const uint8_t *)(uintptr_t)(b->ops[i].val - b->arena);
		}
		b->fixed = false;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 16;
		engine_op_t *ops = realloc(b->ops, cap * sizeof *ops);
		if (!ops) return -ENOMEM;
		b->ops = ops;
		b->cap = cap;
	}
	size_t need = b->arena_len + key_len + val_len;
	if (need > b->arena_cap || !b->arena) { /* always allocated: ops never point at NULL + 0 */
		size_t cap = b->arena_cap ? b->arena_cap : 4096;
		while (cap < need) cap *= 2;
		uint8_t *a = realloc(b->arena, cap);
		if (!a) return -ENOMEM;
		b->arena = a;
		b->arena_cap = cap;
	}
	b->fixed = false;
	engine_op_t *op = &b->ops[b->n++];
	op->type = type;
	op->key_len = key_len;
	op->val_len = val_len;
	op->key = (const uint8_t *)(uintptr_t)b->arena_len;
	if (key_len) memcpy(b->arena + b->arena_len, key, key_len);
	b->arena_len += key_len;
	if (type == ENGINE_OP_PUT) {
		op->val = (const uint8_t *)(uintptr_t)b->arena_len;
		if (val_len) memcpy(b->arena + b->arena_len, val, val_len);
		b->arena_len += val_len;
	} else {
		op->val = NULL;
	}
	return 0;
}

int engine_batch_put(engine_batch_t *b, const void *key, size_t key_len, const void *val, size_t val_len)
{
	return batch_add(b, ENGINE_OP_PUT, key, key_len, val, val_len);
}

int engine_batch_delete(engine_batch_t *b, const void *key, size_t key_len)
{
	return batch_add(b, ENGINE_OP_DELETE, key, key_len, NULL, 0);
}

size_t engine_batch_ops(const engine_batch_t *cb, const engine_op_t **ops)
{
	engine_batch_t *b = (engine_batch_t *)cb; /* resolving offsets is not a logical change */
	if (!b->fixed) {
		for (size_t i = 0; i < b->n; i++) {
			b->ops[i].key = b->arena + (uintptr_t)b->ops[i].key;
			if (b->ops[i].type == ENGINE_OP_PUT) b->ops[i].val = b->arena + (uintptr_t)b->ops[i].val;
		}
		b->fixed = true;
	}
	*ops = b->ops;
	return b->n;
}

int engine_batch_commit(engine_t *e, engine_batch_t *b, uint64_t applied_index)
{
	const engine_op_t *ops;
	size_t n = engine_batch_ops(b, &ops);
	return e->ops->commit(e->state, ops, n, applied_index);
}

/* ------------------------------------------------------------------ iterators */

struct engine_iter {
	const engine_backend_ops_t *ops;
	void *it;
};

engine_iter_t *engine_iter_new(engine_t *e)
{
	engine_iter_t *it = malloc(sizeof *it);
	if (!it) return NULL;
	it->ops = e->ops;
	it->it = e->ops->iter_new(e->state);
	if (!it->it) {
		free(it);
		return NULL;
	}
	return it;
}

void engine_iter_free(engine_iter_t *it)
{
	if (!it) return;
	it->ops->iter_free(it->it);
	free(it);
}

void engine_iter_seek(engine_iter_t *it, const void *key, size_t key_len) { it->ops->iter_seek(it->it, key, key_len); }
void engine_iter_seek_first(engine_iter_t *it) { it->ops->iter_seek_first(it->it); }
bool engine_iter_valid(const engine_iter_t *it) { return it->ops->iter_valid(it->it); }
void engine_iter_next(engine_iter_t *it) { it->ops->iter_next(it->it); }
const void *engine_iter_key(const engine_iter_t *it, size_t *key_len) { return it->ops->iter_key(it->it, key_len); }
const void *engine_iter_value(const engine_iter_t *it, size_t *val_len) { return it->ops->iter_value(it->it, val_len); }

/* ------------------------------------------------------------------ snapshot stream */

#define SNAP_MAGIC "MSSNAP01"
#define SNAP_END_MAGIC "MSSNEND1"
#define SNAP_VERSION 1u
#define SNAP_HEADER_BYTES 28u
#define SNAP_TRAILER_BYTES 24u
#define SNAP_CHUNK_BYTES (256u * 1024u)

/* A streaming 64-bit hash: 8-byte words mixed with a multiply-xorshift step. Not
 * cryptographic; its job is to catch truncated or damaged snapshot streams. */
typedef struct snap_hash {
	uint64_t h;
	uint8_t tail[8];
	size_t tail_len;
	uint64_t total;
} snap_hash_t;

static uint64_t mix64(uint64_t h, uint64_t w)
{
	h ^= w * 0x9E3779B97F4A7C15ULL;
	h = (h ^ (h >> 31)) * 0xBF58476D1CE4E5B9ULL;
	return h ^ (h >> 29);
}

static void snap_hash_add(snap_hash_t *s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	s->total += len;
	while (len) {
		if (s->tail_len == 0 && len >= 8) {
			uint64_t w;
			memcpy(&w, p, 8);
			s->h = mix64(s->h, w);
			p += 8;
			len -= 8;
			continue;
		}
		s->tail[s->tail_len++] = *p++;
		len--;
		if (s->tail_len == 8) {
			uint64_t w;
			memcpy(&w, s->tail, 8);
			s->h = mix64(s->h, w);
			s->tail_len = 0;
		}
	}
}

static uint64_t snap_hash_final(const snap_hash_t *s)
{
	uint8_t t[8] = {0};
	memcpy(t, s->tail, s->tail_len);
	uint64_t w;
	memcpy(&w, t, 8);
	return mix64(mix64(s->h, w), s->total);
}

typedef struct snap_writer {
	engine_write_fn fn;
	void *ctx;
	uint8_t *buf;
	size_t len;
	snap_hash_t hash;
} snap_writer_t;

static int sw_flush(snap_writer_t *w)
{
	if (!w->len) return 0;
	int rc = w->fn(w->ctx, w->buf, w->len);
	w->len = 0;
	return rc;
}

static int sw_write(snap_writer_t *w, const void *data, size_t len, bool hashed)
{
	const uint8_t *p = data;
	if (hashed) snap_hash_add(&w->hash, data, len);
	while (len) {
		size_t room = SNAP_CHUNK_BYTES - w->len;
		size_t n = len < room ? len : room;
		memcpy(w->buf + w->len, p, n);
		w->len += n;
		p += n;
		len -= n;
		if (w->len == SNAP_CHUNK_BYTES) {
			int rc = sw_flush(w);
			if (rc < 0) return rc;
		}
	}
	return 0;
}

int engine_snapshot_write(engine_t *e, engine_write_fn write_fn, void *ctx)
{
	snap_writer_t w = {.fn = write_fn, .ctx = ctx};
	int rc = 0;
	void *it = NULL;
	w.buf = malloc(SNAP_CHUNK_BYTES);
	if (!w.buf) return -ENOMEM;
	uint8_t hdr[SNAP_HEADER_BYTES];
	uint64_t count = e->ops->key_count(e->state);
	memcpy(hdr, SNAP_MAGIC, 8);
	put_le32(hdr + 8, SNAP_VERSION);
	put_le64(hdr + 12, e->ops->applied_index(e->state));
	put_le64(hdr + 20, count);
	if ((rc = sw_write(&w, hdr, sizeof hdr, true)) < 0) goto err;

	it = e->ops->iter_new(e->state);
	if (!it) {
		rc = -ENOMEM;
		goto err;
	}
	uint64_t seen = 0;
	for (e->ops->iter_seek_first(it); e->ops->iter_valid(it); e->ops->iter_next(it)) {
		size_t kl, vl;
		const void *k = e->ops->iter_key(it, &kl);
		const void *v = e->ops->iter_value(it, &vl);
		uint8_t rh[8];
		put_le32(rh, (uint32_t)kl);
		put_le32(rh + 4, (uint32_t)vl);
		if ((rc = sw_write(&w, rh, 8, true)) < 0) goto err;
		if ((rc = sw_write(&w, k, kl, true)) < 0) goto err;
		if ((rc = sw_write(&w, v, vl, true)) < 0) goto err;
		seen++;
	}
	if (seen != count) { /* key_count must agree with iteration: a backend bug */
		rc = -EIO;
		goto err;
	}
	uint8_t tr[SNAP_TRAILER_BYTES];
	memcpy(tr, SNAP_END_MAGIC, 8);
	put_le64(tr + 8, count);
	put_le64(tr + 16, snap_hash_final(&w.hash));
	if ((rc = sw_write(&w, tr, sizeof tr, false)) < 0) goto err;
	rc = sw_flush(&w);
err:
	if (it) e->ops->iter_free(it);
	free(w.buf);
	return rc;
}

int engine_snapshot_read(engine_t *e, engine_read_fn read_fn, void *ctx)
{
	uint8_t hdr[SNAP_HEADER_BYTES], tr[SNAP_TRAILER_BYTES], rh[8];
	uint8_t *kbuf = NULL, *vbuf = NULL;
	size_t vcap = 0;
	snap_hash_t hash = {0};
	void *restore = NULL;
	int rc = read_fn(ctx, hdr, sizeof hdr);
	if (rc < 0) return rc;
	if (memcmp(hdr, SNAP_MAGIC, 8) != 0 || get_le32(hdr + 8) != SNAP_VERSION) return -EINVAL;
	snap_hash_add(&hash, hdr, sizeof hdr);
	uint64_t applied = get_le64(hdr + 12), count = get_le64(hdr + 20);

	kbuf = malloc(ENGINE_KEY_BYTES_MAX);
	restore = e->ops->restore_begin(e->state);
	if (!kbuf || !restore) {
		rc = -ENOMEM;
		goto err;
	}
	size_t prev_len = 0;
	uint8_t *prev = malloc(ENGINE_KEY_BYTES_MAX);
	if (!prev) {
		rc = -ENOMEM;
		goto err;
	}
	for (uint64_t i = 0; i < count; i++) {
		if ((rc = read_fn(ctx, rh, 8)) < 0) break;
		uint32_t kl = get_le32(rh), vl = get_le32(rh + 4);
		if (kl > ENGINE_KEY_BYTES_MAX || vl > ENGINE_VALUE_BYTES_MAX) {
			rc = -EINVAL;
			break;
		}
		if (vl > vcap) {
			uint8_t *nb = realloc(vbuf, vl);
			if (!nb) {
				rc = -ENOMEM;
				break;
			}
			vbuf = nb;
			vcap = vl;
		}
		if ((rc = read_fn(ctx, kbuf, kl)) < 0 || (rc = read_fn(ctx, vbuf, vl)) < 0) break;
		if (i > 0) { /* strictly increasing keys */
			size_t m = prev_len < kl ? prev_len : kl;
			int c = memcmp(prev, kbuf, m);
			if (c > 0 || (c == 0 && prev_len >= kl)) {
				rc = -EINVAL;
				break;
			}
		}
		memcpy(prev, kbuf, kl);
		prev_len = kl;
		snap_hash_add(&hash, rh, 8);
		snap_hash_add(&hash, kbuf, kl);
		snap_hash_add(&hash, vbuf, vl);
		if ((rc = e->ops->restore_put(restore, kbuf, kl, vbuf, vl)) < 0) break;
	}
	free(prev);
	if (rc < 0) goto err;
	if ((rc = read_fn(ctx, tr, sizeof tr)) < 0) goto err;
	if (memcmp(tr, SNAP_END_MAGIC, 8) != 0 || get_le64(tr + 8) != count ||
	    get_le64(tr + 16) != snap_hash_final(&hash)) {
		rc = -EINVAL;
		goto err;
	}
	rc = e->ops->restore_commit(e->state, restore, applied);
	restore = NULL;
err:
	if (restore) e->ops->restore_abort(e->state, restore);
	free(kbuf);
	free(vbuf);
	return rc;
}
