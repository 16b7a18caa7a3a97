/* engine.h - MetaStore's storage backend interface.
 *
 * An engine is an ordered map from byte-string keys to byte-string values plus one durable
 * number, the Raft index of the last applied entry. Keys compare with memcmp order (shorter
 * first on a common prefix). Writes happen only through an atomic batch that also carries the
 * applied index, so after a crash a backend holds exactly the state of some applied index and
 * a restart replays the Raft entries after it. Two backends implement this interface:
 * "memory" (engine/memory.c, an in-memory B+tree; durable only through Raft log + snapshots)
 * and "rocksdb" (engine/rocksdb.c). The backend is chosen once, at engine_open().
 *
 * Threading: an engine is used by one thread at a time (the loop thread). Iterators stay
 * valid until the next write to the engine; a value returned by engine_get() stays valid until
 * the next write or until ENGINE_GETS_VALID_MIN later engine_get() calls, whichever comes first
 * (rocksdb pins a bounded ring of values): callers that keep a value longer copy it.
 *
 * Errors are negative errno values: -ENOENT (no such key), -ENOMEM, -EIO (backend failure;
 * the engine's last error text is in engine_errmsg()), -EINVAL (bad argument or corrupt
 * snapshot stream).
 */
#ifndef METASTORE_ENGINE_H
#define METASTORE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENGINE_KEY_BYTES_MAX (64u * 1024u)          /* hard cap: sm keys are far shorter */
#define ENGINE_GETS_VALID_MIN 16u                  /* see engine_get() */
#define ENGINE_VALUE_BYTES_MAX (64u * 1024u * 1024u) /* hard cap: sm values are <= 8 MiB + header */

typedef struct engine engine_t;
typedef struct engine_batch engine_batch_t;
typedef struct engine_iter engine_iter_t;

typedef struct engine_options {
	const char *kind; /* "memory" or "rocksdb" */
	const char *dir;  /* data directory (rocksdb); ignored by memory, may be NULL */
	/* rocksdb tuning; 0 picks the documented default in rocksdb.c */
	size_t block_cache_bytes;
	size_t write_buffer_bytes;
	bool sync_writes; /* fsync each batch (default off: the Raft log is durable) */
} engine_options_t;

/* Open (creating if needed) an engine. On error returns a negative errno and, when errbuf is
 * not NULL, a human-readable reason. */
int engine_open(const engine_options_t *opts, engine_t **out, char *errbuf, size_t errbuf_len);
void engine_close(engine_t *e);
const char *engine_kind(const engine_t *e);
const char *engine_errmsg(const engine_t *e);

/* Point read. On success *val and *val_len point into engine-owned memory valid until the
 * next write or ENGINE_GETS_VALID_MIN more gets (see above). Returns 0 or -ENOENT (or -EIO). */
int engine_get(engine_t *e, const void *key, size_t key_len, const void **val, size_t *val_len);

/* Single-key writes: shorthands for a one-op batch that keeps the current applied index. */
int engine_put(engine_t *e, const void *key, size_t key_len, const void *val, size_t val_len);
int engine_delete(engine_t *e, const void *key, size_t key_len); /* 0 even if absent */

/* Number of keys and bytes (keys + values) stored; maintained incrementally, O(1). */
uint64_t engine_key_count(const engine_t *e);
uint64_t engine_data_bytes(const engine_t *e);

/* The applied index stored by the last committed batch (0 for a new engine). */
uint64_t engine_applied_index(const engine_t *e);

/* Atomic write batch. Ops apply in order; a later op on the same key wins. Reads through
 * engine_get/iterators do not see a batch until it is committed. */
engine_batch_t *engine_batch_new(void);
void engine_batch_free(engine_batch_t *b);
void engine_batch_clear(engine_batch_t *b);
int engine_batch_put(engine_batch_t *b, const void *key, size_t key_len, const void *val, size_t val_len);
int engine_batch_delete(engine_batch_t *b, const void *key, size_t key_len);
size_t engine_batch_count(const engine_batch_t *b);
/* Apply every op and set the applied index, all or nothing. The batch is left unchanged (the
 * caller clears or frees it). */
int engine_batch_commit(engine_t *e, engine_batch_t *b, uint64_t applied_index);

/* Ordered iteration. An iterator sees the engine as of its creation or its last seek; any
 * write to the engine invalidates it until the next seek. */
engine_iter_t *engine_iter_new(engine_t *e);
void engine_iter_free(engine_iter_t *it);
void engine_iter_seek(engine_iter_t *it, const void *key, size_t key_len); /* first key >= key */
void engine_iter_seek_first(engine_iter_t *it);
bool engine_iter_valid(const engine_iter_t *it);
void engine_iter_next(engine_iter_t *it);
const void *engine_iter_key(const engine_iter_t *it, size_t *key_len);
const void *engine_iter_value(const engine_iter_t *it, size_t *val_len);

/* Snapshot as a stream: every key/value and the applied index, in a versioned format with a
 * checksum. write_fn is called with consecutive chunks; it returns 0 or a negative errno that
 * aborts the snapshot. */
typedef int (*engine_write_fn)(void *ctx, const void *buf, size_t len);
/* read_fn fills exactly len bytes and returns 0, or returns a negative errno (-EINVAL at a
 * premature end of stream). */
typedef int (*engine_read_fn)(void *ctx, void *buf, size_t len);
int engine_snapshot_write(engine_t *e, engine_write_fn write_fn, void *ctx);
/* Replace the whole content of the engine with a snapshot stream. A stream that fails its
 * checksum or format checks returns -EINVAL and leaves the engine as it was. */
int engine_snapshot_read(engine_t *e, engine_read_fn read_fn, void *ctx);

#endif
