/* sm.h - MetaStore's replicated state machine on top of an engine.
 *
 * The state machine turns batches of transactions (one batch = the payload of one Raft entry)
 * into records, revisions and change events. Keys are paths below the mount root without a
 * leading '/' ("app/db/url"); the root directory is the empty key. Every record's parent exists
 * and is a directory. Applying is deterministic: the same batch applied to the same state gives
 * byte-identical engine content on every node; everything time-like comes from the batch.
 *
 * Revisions follow etcd: a 64-bit store revision, +1 for every transaction that writes at
 * least one key; all writes of one transaction share that revision. A record carries its
 * create_revision, mod_revision and version (1 at creation, +1 per change of that key).
 * Adding or removing an entry sets the parent directory's mtime/ctime to the txn time; that
 * bookkeeping keeps the parent's version and mod_revision and emits no event.
 *
 * A transaction is etcd's: compares, then the success ops if every compare holds, else the
 * failure ops. Ops are etcd's key-value ops (get/put/del, with prefix or range) and
 * filesystem ops whose POSIX checks are evaluated at apply time. A transaction is atomic: when
 * an op fails (-EEXIST, -ENOENT, ...) the whole transaction changes nothing and its result
 * carries that errno; the revision does not move.
 *
 * Reads (sm_get, sm_list) serve local state; sm_get's record points into engine memory and
 * stays valid as engine_get()'s values do (until the next sm_apply()/sm_snapshot_read() or
 * ENGINE_GETS_VALID_MIN more sm_get() calls: copy what you keep longer); the
 * name and record sm_list passes to its callback are valid during that call only.
 */
#ifndef METASTORE_SM_H
#define METASTORE_SM_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SM_KEY_BYTES_MAX 4096u            /* whole key */
#define SM_NAME_BYTES_MAX 255u            /* one path component */
#define SM_VALUE_BYTES_MAX_DEFAULT (8u << 20)
#define SM_ROOT_INO 1u
#define SM_CONTROL_DIR ".metastore"       /* reserved name at the root */

typedef enum sm_kind { SM_KIND_FILE = 1, SM_KIND_DIR = 2, SM_KIND_SYMLINK = 3 } sm_kind_t;

typedef struct sm_record {
	sm_kind_t kind;
	uint32_t mode; /* full st_mode: S_IFREG/S_IFDIR/S_IFLNK | permission bits */
	uint32_t uid, gid;
	uint64_t ino;  /* assigned once at creation, kept across rename */
	uint64_t size; /* == value_len for files and symlinks, 0 for directories */
	int64_t mtime_ns, ctime_ns;
	int64_t create_revision, mod_revision, version;
	const uint8_t *value; /* file content or symlink target; NULL/0 for directories */
	size_t value_len;
} sm_record_t;

/* Record <-> bytes (the stored form). encode returns the bytes needed; it writes only when
 * cap is large enough. decode returns 0 or -EINVAL and points rec->value into buf. */
size_t sm_record_encode(const sm_record_t *rec, uint8_t *buf, size_t cap);
int sm_record_decode(const void *buf, size_t len, sm_record_t *rec);

/* Key validation: 0, -ENAMETOOLONG (component > 255 or key > 4096 bytes) or -EINVAL (empty
 * component, leading/trailing '/', NUL, "." or ".."). The empty key (root) is valid. */
int sm_key_check(const char *key, size_t key_len);

/* ------------------------------------------------------------------ transactions */

typedef enum sm_cmp_target { SM_CMP_VALUE = 1, SM_CMP_VERSION, SM_CMP_CREATE, SM_CMP_MOD } sm_cmp_target_t;
typedef enum sm_cmp_op { SM_CMP_EQ = 1, SM_CMP_NE, SM_CMP_LT, SM_CMP_GT } sm_cmp_op_t;

/* etcd semantics: against a missing key VERSION/CREATE/MOD compare with 0 and a VALUE compare
 * is false. VALUE compares bytes (memcmp order, shorter first on a common prefix). */
typedef struct sm_compare {
	sm_cmp_target_t target;
	sm_cmp_op_t op;
	const char *key;
	size_t key_len;
	int64_t number;       /* VERSION, CREATE, MOD */
	const uint8_t *value; /* VALUE */
	size_t value_len;
} sm_compare_t;

typedef enum sm_op_type {
	/* etcd key-value ops */
	SM_OP_GET = 1, /* key; SM_F_PREFIX or range_end; limit (0 = none). Read-only. */
	SM_OP_PUT,     /* key := value as a file (mode 0644 when created). Missing parents are
			  created as directories (0755, uid/gid of the op) in the same revision.
			  -EISDIR if key is a directory, -ENOTDIR if a parent is not one. */
	SM_OP_DEL,     /* key, or every key under SM_F_PREFIX / in [key, range_end): deleted
			  count in the result. A single key that is a non-empty directory:
			  -ENOTEMPTY; the root: -EBUSY. A prefix/range delete removes directories
			  with their content (never the root). */
	/* filesystem ops (POSIX checks at apply time) */
	SM_OP_CREATE,  /* file key with mode/uid/gid and initial value. Exists: -EEXIST with
			  SM_F_EXCL; else a file is kept (value replaced if SM_F_TRUNC), a dir is
			  -EISDIR. Parent missing: -ENOENT; parent not a dir: -ENOTDIR. */
	SM_OP_WRITE,   /* replace the value of an existing file (-ENOENT, -EISDIR); with
			  SM_F_CREATE a missing file is created as by SM_OP_CREATE. */
	SM_OP_SETATTR, /* attr_mask of SM_ATTR_*: mode (permission bits only), uid, gid, size
			  (files only: -EISDIR; truncates or zero-extends; over the value limit
			  -EFBIG), mtime. ctime is set to the txn time. */
	SM_OP_UNLINK,  /* file or symlink; -EISDIR for a directory; -ENOENT */
	SM_OP_MKDIR,   /* -EEXIST; parent checks as CREATE */
	SM_OP_RMDIR,   /* -ENOTDIR, -ENOTEMPTY, -EBUSY for the root */
	SM_OP_RENAME,  /* key -> key2, flags SM_F_NOREPLACE / SM_F_EXCHANGE (see sm.c for the
			  full rule set: -EINVAL into own subtree, -ENOTEMPTY over a non-empty
			  dir, -EISDIR file over dir, -ENOTDIR dir over file, -EEXIST with
			  NOREPLACE, -ENOENT with EXCHANGE when key2 is missing). A directory
			  moves with its whole subtree in one revision. */
	SM_OP_SYMLINK, /* key -> target (value); -EEXIST; parent checks as CREATE; target empty:
			  -ENOENT, over 4095 bytes: -ENAMETOOLONG, with a NUL: -EINVAL */
} sm_op_type_t;

enum {
	SM_F_PREFIX = 1u << 0,
	SM_F_EXCL = 1u << 1,
	SM_F_TRUNC = 1u << 2,
	SM_F_CREATE = 1u << 3,
	SM_F_NOREPLACE = 1u << 4,
	SM_F_EXCHANGE = 1u << 5,
	SM_F_KEYS_ONLY = 1u << 6, /* GET: leave values out of the result */
};

enum {
	SM_ATTR_MODE = 1u << 0,
	SM_ATTR_UID = 1u << 1,
	SM_ATTR_GID = 1u << 2,
	SM_ATTR_SIZE = 1u << 3,
	SM_ATTR_MTIME = 1u << 4,
};

typedef struct sm_op {
	sm_op_type_t type;
	uint32_t flags;
	const char *key;
	size_t key_len;
	const char *key2; /* RENAME target; GET/DEL range_end (exclusive) when not NULL */
	size_t key2_len;
	const uint8_t *value; /* PUT/CREATE/WRITE value, SYMLINK target */
	size_t value_len;
	uint32_t mode, uid, gid; /* CREATE/MKDIR/SYMLINK/PUT-created parents; SETATTR */
	uint32_t attr_mask;      /* SETATTR */
	uint64_t size;           /* SETATTR */
	int64_t mtime_ns;        /* SETATTR */
	uint64_t limit;          /* GET: at most this many kvs (0 = all) */
	uint64_t ino;            /* CREATE/WRITE+CREATE/MKDIR/SYMLINK: inode number chosen by the
				    proposer (unique by construction: node id and the node's boot
				    epoch in the high bits, see fs/), so a
				    mount can hand the kernel a file's final st_ino before the commit;
				    0 = the state machine assigns one from its replicated counter,
				    whose values stay below SM_INO_PROPOSER_MIN. */
} sm_op_t;

/* Proposer-chosen inos are (node_id << 56) | (boot_epoch << 40) | counter, node_id >= 1. */
#define SM_INO_PROPOSER_MIN (1ull << 56)

typedef struct sm_txn {
	uint32_t origin_node; /* proposing node (0 = none); with origin_seq, at-most-once */
	uint64_t origin_seq;  /* strictly increasing per origin_node; 0 = no dedupe */
	int64_t time_ns;      /* wall clock chosen by the proposer: mtime/ctime of what it writes */
	uint32_t flags;       /* SM_TXN_* (carried to events; the state machine ignores them) */
	uint32_t n_compare, n_success, n_failure;
	const sm_compare_t *compares;
	const sm_op_t *success;
	const sm_op_t *failure;
} sm_txn_t;

enum {
	SM_TXN_FROM_FS = 1u << 0, /* made through a mount: that node's kernel saw the change */
	/* How a mount made it, so that other mounts replay the same syscalls (watch/): */
	SM_TXN_OPEN_WRITE = 1u << 1,  /* through a file open for writing (the close shows) */
	SM_TXN_ATTRIB_OPEN = 1u << 2, /* a create whose attributes were set while it was open */
	SM_TXN_FLAGS_ALL = SM_TXN_FROM_FS | SM_TXN_OPEN_WRITE | SM_TXN_ATTRIB_OPEN,
};

typedef struct sm_batch {
	uint32_t n_txn;
	const sm_txn_t *txns;
} sm_batch_t;

/* ------------------------------------------------------------------ results and events */

typedef struct sm_kv {
	const char *key;
	size_t key_len;
	sm_record_t rec;
} sm_kv_t;

typedef struct sm_op_result {
	int err;         /* the op's own errno (0 on success); see sm_txn_result.err */
	bool has_rec;    /* rec is the record written (CREATE/WRITE/SETATTR/MKDIR/SYMLINK/PUT,
			    RENAME: the moved record at its new key) */
	sm_record_t rec;
	uint64_t deleted; /* DEL: keys deleted; UNLINK/RMDIR: 1 */
	sm_kv_t *kvs;     /* GET */
	size_t n_kvs;
	bool more;        /* GET stopped at limit */
} sm_op_result_t;

typedef struct sm_txn_result {
	int err;          /* 0, or -errno of the first failing op: nothing of the txn applied */
	bool succeeded;   /* compares held (the success branch ran) */
	bool duplicate;   /* (origin_node, origin_seq) was applied before: skipped */
	int64_t revision; /* store revision after this txn */
	size_t n_ops;
	sm_op_result_t *ops;
} sm_txn_result_t;

typedef enum sm_event_type {
	SM_EV_CREATE = 1, /* new key (file, dir or symlink) */
	SM_EV_MODIFY,     /* value of a file changed (WRITE, PUT, CREATE with TRUNC, SETATTR size) */
	SM_EV_ATTRIB,     /* mode/uid/gid/mtime changed, value unchanged */
	SM_EV_DELETE,     /* key removed (a prefix delete: children before parents) */
	SM_EV_RENAME,     /* key -> key2; `replaced` is the record key2 held, if any */
	SM_EV_EXCHANGE,   /* key <-> key2 */
} sm_event_type_t;

typedef struct sm_event {
	sm_event_type_t type;
	uint32_t txn_index; /* index of the txn in the batch (origin, flags) */
	int64_t revision;
	const char *key;
	size_t key_len;
	const char *key2; /* RENAME/EXCHANGE */
	size_t key2_len;
	bool has_old, has_new, has_replaced;
	sm_record_t old_rec; /* before (at key); absent for CREATE */
	sm_record_t new_rec; /* after (at key, or at key2 for RENAME); absent for DELETE */
	sm_record_t replaced_rec;
} sm_event_t;

typedef struct sm_apply_result {
	uint32_t n_txn;
	sm_txn_result_t *txns;
	size_t n_events;
	sm_event_t *events;
	void *arena; /* owns every pointer above; freed by sm_apply_result_free */
} sm_apply_result_t;

void sm_apply_result_free(sm_apply_result_t *r);

/* ------------------------------------------------------------------ the machine */

typedef struct sm sm_t;

typedef struct sm_options {
	uint64_t value_bytes_max; /* 0 = SM_VALUE_BYTES_MAX_DEFAULT; must match on all nodes */
} sm_options_t;

/* Takes (does not own) an open engine. An empty engine gets the root directory record. */
int sm_open(engine_t *e, const sm_options_t *opts, sm_t **out);
void sm_close(sm_t *sm);

int64_t sm_revision(const sm_t *sm);
uint64_t sm_applied_index(const sm_t *sm);
uint64_t sm_key_count(const sm_t *sm);  /* records (root included) */
uint64_t sm_data_bytes(const sm_t *sm); /* engine bytes */

/* Apply one batch as Raft entry `index`, which must be > sm_applied_index() (else -EALREADY
 * and nothing changes). Every txn gets a result in out; per-txn POSIX failures are results,
 * not errors. Returns 0, or a negative errno only when the engine failed (the node must stop). */
int sm_apply(sm_t *sm, const sm_batch_t *batch, uint64_t index, sm_apply_result_t *out);

/* Advance the applied index without changing state (Raft no-op and config entries). */
int sm_apply_noop(sm_t *sm, uint64_t index);

/* Local reads. */
int sm_get(sm_t *sm, const char *key, size_t key_len, sm_record_t *rec); /* 0, -ENOENT, bad key */
/* Children of directory `dir` in name order, starting after `after` (NULL = from the first).
 * fn returns nonzero to stop. Returns 0, -ENOENT, -ENOTDIR (or a bad key's errno; -EINVAL for
 * an `after` over 255 bytes). Costs O(children): grandchildren are skipped by seeking past them. */
typedef int (*sm_list_fn)(void *ctx, const char *name, size_t name_len, const sm_record_t *rec);
int sm_list(sm_t *sm, const char *dir, size_t dir_len, const char *after, size_t after_len,
	    sm_list_fn fn, void *ctx);

/* Snapshot of the whole state (engine stream incl. applied index and revision). */
int sm_snapshot_write(sm_t *sm, engine_write_fn fn, void *ctx);
int sm_snapshot_read(sm_t *sm, engine_read_fn fn, void *ctx);

#endif
