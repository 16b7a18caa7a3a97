/* backend.h - what a storage backend provides to engine.c (not part of the public interface).
 *
 * engine.c owns the public API, the write batch and the snapshot stream format; a backend
 * provides point reads, ordered iterators, atomic batch commit and a bulk "restore" that
 * builds a complete new content on the side and swaps it in only at restore_commit(), so a
 * bad snapshot stream never leaves a half-loaded engine.
 */
#ifndef METASTORE_ENGINE_BACKEND_H
#define METASTORE_ENGINE_BACKEND_H

#include "engine.h"

enum engine_op_type { ENGINE_OP_PUT = 1, ENGINE_OP_DELETE = 2 };

typedef struct engine_op {
	enum engine_op_type type;
	const uint8_t *key;
	size_t key_len;
	const uint8_t *val; /* NULL for ENGINE_OP_DELETE */
	size_t val_len;
} engine_op_t;

/* The batch as a backend sees it: ops in order, pointers valid until the batch is cleared. */
size_t engine_batch_ops(const engine_batch_t *b, const engine_op_t **ops);

typedef struct engine_backend_ops {
	const char *name;
	int (*open)(const engine_options_t *opts, void **state, char *errbuf, size_t errbuf_len);
	void (*close)(void *state);
	const char *(*errmsg)(void *state);
	int (*get)(void *state, const void *key, size_t key_len, const void **val, size_t *val_len);
	/* All ops of the batch and the applied index, atomically. */
	int (*commit)(void *state, const engine_op_t *ops, size_t n, uint64_t applied_index);
	uint64_t (*applied_index)(void *state);
	uint64_t (*key_count)(void *state);
	uint64_t (*data_bytes)(void *state);

	void *(*iter_new)(void *state);
	void (*iter_free)(void *iter);
	void (*iter_seek)(void *iter, const void *key, size_t key_len);
	void (*iter_seek_first)(void *iter);
	bool (*iter_valid)(void *iter);
	void (*iter_next)(void *iter);
	const void *(*iter_key)(void *iter, size_t *key_len);
	const void *(*iter_value)(void *iter, size_t *val_len);

	/* Bulk restore: keys arrive in strictly increasing order. Nothing is visible until
	 * restore_commit(), which replaces the whole content and the applied index at once;
	 * restore_abort() drops what was loaded. restore_commit() consumes the handle whether it
	 * succeeds or not; on failure the engine is left as it was. */
	void *(*restore_begin)(void *state);
	int (*restore_put)(void *restore, const void *key, size_t key_len, const void *val, size_t val_len);
	int (*restore_commit)(void *state, void *restore, uint64_t applied_index);
	void (*restore_abort)(void *state, void *restore);
} engine_backend_ops_t;

extern const engine_backend_ops_t engine_memory_backend;
extern const engine_backend_ops_t engine_rocksdb_backend;

#endif
