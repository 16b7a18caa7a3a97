/* rocksdb.c - the RocksDB storage backend (C API of librocksdb, Debian 7.8).
 *
 * Layout of the data directory DIR (engine_options_t.dir):
 *   DIR/metastore.lock  flock()ed while an engine has DIR open: a second open fails with -EBUSY
 *                       before it touches anything (RocksDB's own DIR/db/LOCK is a second line)
 *   DIR/db/             the live RocksDB database
 *   DIR/restore.tmp/    a snapshot being restored (side DB); garbage whenever no restore runs
 *   DIR/db.old/         the previous live DB during the swap at restore commit
 * Restore commit swaps with two renames: db -> db.old, restore.tmp -> db, fsync(DIR). A crash
 * between them leaves no DIR/db but a complete DIR/db.old, so open() rolls back by renaming
 * db.old to db (the restore had not returned success yet, so nobody relied on it; Raft sends
 * the snapshot again). After that open() removes restore.tmp and db.old. DIR/db is therefore
 * always a complete database when open() starts RocksDB on it.
 *
 * Keys: one column family; every user key is stored as 0x01 || key and the only internal
 * record, META_KEY = 0x00 "meta", sorts before all of them, so no user key can collide with it.
 * Iterators carry the bounds [0x01, 0x02) and strip the prefix; get() adds it. The prefix
 * keeps memcmp order (the RocksDB default bytewise comparator is memcmp, shorter first).
 * META holds u32 version | u64 applied_index | u64 key_count | u64 data_bytes (little-endian)
 * and is rewritten in the same WriteBatch as every commit, so data, applied index and the
 * counters always change together. To keep key_count/data_bytes exact, commit looks up the
 * current size of every distinct key of the batch with one MultiGet (SST and memtable bloom
 * filters make the lookup of a new key cheap), simulates the ops in order, and writes one op
 * per distinct key (its final state), in key order.
 *
 * WAL: ON, with WriteOptions.sync = opts->sync_writes (default off). A process crash loses
 * nothing (each write() of the WAL reached the kernel); an OS crash may lose a suffix of
 * batches, and because META is in the same WriteBatch it loses their applied index with
 * them, so the restart replays exactly the Raft entries after the stored index. With the WAL
 * off the same argument holds only with consistent memtable flushes, and a process crash would
 * lose up to a whole memtable of applied entries that Raft must still hold: more replay and a
 * tighter coupling with log compaction for a small gain, since one WAL write per batch (not
 * per key) is cheap. A single column family also means no atomic_flush is needed.
 *
 * Values returned by get() are PinnableSlices kept in a ring of GETS_PINNED_MAX; they stay
 * valid until the next write or until GETS_PINNED_MAX later get() calls, whichever comes
 * first (a bound, so a long read-only stretch does not pin memory without limit).
 * Iterators use RocksDB's implicit snapshot taken when the RocksDB iterator is created; a
 * seek after a write recreates it (tracked by write_gen), so an iterator sees the engine as
 * of its creation or its last seek, as engine.h promises. No explicit rocksdb snapshot.
 */
#include "backend.h"
#include "le.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <rocksdb/c.h>

#define BLOCK_CACHE_BYTES_DEFAULT (64u * 1024u * 1024u)
/* 4 MiB: a get searches the memtable's skiplist first, and with small records a 64 MiB memtable
 * holds hundreds of thousands of versions (the search was 7% of the daemon's CPU). Measured
 * (3 nodes, msbench large-load, side by side): 1 MiB 5,574, 4 MiB 6,150-6,170, 16 MiB 5,863,
 * 64 MiB 5,435-5,644 ops/s. */
#define WRITE_BUFFER_BYTES_DEFAULT (4u * 1024u * 1024u)
#define BLOOM_BITS_PER_KEY 10.0 /* ~1% false positives on lookups of absent keys */
#define MEMTABLE_BLOOM_RATIO 0.05
#define INFO_LOG_FILES_MAX 4 /* RocksDB's LOG files in DIR/db: bound their disk use */
#define GETS_PINNED_MAX 16u
#define RESTORE_BATCH_BYTES (4u * 1024u * 1024u)
#define ERRMSG_BYTES 512u
#define DIR_ENTRIES_MAX (1u << 20)               /* a RocksDB dir holds far fewer files */
#define SCRATCH_KEEP_BYTES (16u * 1024u * 1024u) /* commit scratch above this is freed after use */

#define PREFIX_META 0x00
#define PREFIX_USER 0x01
#define META_VERSION 1u
#define META_BYTES 28u

static const char META_KEY[] = {PREFIX_META, 'm', 'e', 't', 'a'};
static const char USER_LOWER[] = {PREFIX_USER};
static const char USER_UPPER[] = {PREFIX_USER + 1};
static const char PREFIX_USER_BYTE[] = {PREFIX_USER};

/* Per-commit scratch, kept between commits to avoid reallocating for every batch. "Distinct"
 * arrays are indexed by the key's rank in sorted order (after batch_sort). */
typedef struct uniq_ref {
	const char *key; /* prefixed, in the arena */
	size_t key_len;
	uint32_t first_seen; /* index in first-seen order, before sorting */
} uniq_ref_t;

typedef struct commit_scratch {
	size_t ops_cap, uniq_cap, table_cap, arena_cap;
	void *uniq_block;                   /* one allocation holding every uniq_* array */
	uint32_t *op_uniq;                  /* ops_cap: the distinct key of each op */
	uniq_ref_t *uniq_ref;               /* uniq_cap: distinct keys, sorted by batch_sort */
	uint32_t *uniq_rank;                /* uniq_cap: first-seen index -> sorted rank */
	const char **uniq_key;              /* uniq_cap: prefixed key (MultiGet input) */
	size_t *uniq_key_len;               /* uniq_cap */
	size_t *uniq_val_len;               /* uniq_cap: current value length while simulating */
	uint8_t *uniq_existed;              /* uniq_cap: present before the batch */
	uint8_t *uniq_exists;               /* uniq_cap: present while simulating, then after the batch */
	uint32_t *uniq_last_put;            /* uniq_cap: op of the last put (valid when uniq_exists) */
	rocksdb_pinnableslice_t **uniq_val; /* uniq_cap: MultiGet results */
	char **uniq_err;                    /* uniq_cap: MultiGet errors */
	uint32_t *table;                    /* table_cap (power of two): open addressing, first-seen index */
	char *arena;                        /* arena_cap: prefixed keys */
} commit_scratch_t;

typedef struct rdb {
	char *dir, *db_path, *tmp_path, *old_path;
	int dir_fd, lock_fd;
	rocksdb_options_t *options;
	rocksdb_block_based_table_options_t *table_options;
	rocksdb_cache_t *cache;
	rocksdb_writeoptions_t *write_options;
	rocksdb_writeoptions_t *restore_write_options;
	rocksdb_readoptions_t *read_options;
	rocksdb_flushoptions_t *flush_options;
	rocksdb_t *db; /* NULL only if a reopen after a failed restore failed: every op is -EIO */
	rocksdb_column_family_handle_t *cf;
	rocksdb_writebatch_t *wb;
	uint64_t applied_index, key_count, data_bytes;
	uint64_t write_gen; /* +1 per write: stale iterators re-create at seek */
	uint32_t iters_live;
	rocksdb_pinnableslice_t *pinned[GETS_PINNED_MAX];
	uint32_t pinned_next;
	char *key_buf; /* 1 + ENGINE_KEY_BYTES_MAX: prefixed key for get/seek */
	commit_scratch_t scratch;
	char errmsg[ERRMSG_BYTES];
} rdb_t;

typedef struct rdb_iter {
	rdb_t *r;
	rocksdb_readoptions_t *read_options;
	rocksdb_iterator_t *it;
	uint64_t write_gen;
} rdb_iter_t;

typedef struct rdb_restore {
	rdb_t *r;
	rocksdb_t *db;
	rocksdb_writebatch_t *wb;
	size_t wb_bytes;
	uint64_t key_count, data_bytes;
	int rc; /* first error; sticky */
} rdb_restore_t;

/* ------------------------------------------------------------------ helpers */

static void set_err(rdb_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(rdb_t *r, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(r->errmsg, sizeof r->errmsg, fmt, ap);
	va_end(ap);
}

/* Takes ownership of a RocksDB error string (frees it) and returns -EIO. */
static int rocks_err(rdb_t *r, const char *what, char *err)
{
	assert(err);
	set_err(r, "rocksdb %s: %s", what, err);
	rocksdb_free(err);
	return -EIO;
}

static void meta_encode(uint8_t out[META_BYTES], uint64_t applied, uint64_t count, uint64_t bytes)
{
	put_le32(out, META_VERSION);
	put_le64(out + 4, applied);
	put_le64(out + 12, count);
	put_le64(out + 20, bytes);
}

static char *path_join(const char *dir, const char *name)
{
	size_t n = strlen(dir) + 1 + strlen(name) + 1;
	char *p = malloc(n);
	if (p) snprintf(p, n, "%s/%s", dir, name);
	return p;
}

static void pinned_release(rdb_t *r)
{
	for (uint32_t i = 0; i < GETS_PINNED_MAX; i++) {
		if (r->pinned[i]) rocksdb_pinnableslice_destroy(r->pinned[i]);
		r->pinned[i] = NULL;
	}
	r->pinned_next = 0;
}

/* Removes DIR/name, a flat directory (RocksDB keeps no subdirectories with our options).
 * 0 if it does not exist. No recursion: a subdirectory makes it fail with -ENOTEMPTY. */
static int remove_flat_dir(rdb_t *r, const char *name)
{
	int fd = openat(r->dir_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT) return 0;
		int rc = -errno;
		set_err(r, "engine rocksdb: open %s/%s: %s", r->dir, name, strerror(errno));
		return rc;
	}
	DIR *d = fdopendir(fd);
	if (!d) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	int rc = 0;
	struct dirent *de;
	for (uint32_t n = 0; (de = readdir(d)) != NULL; n++) {
		if (n >= DIR_ENTRIES_MAX) {
			rc = -EFBIG;
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
		if (unlinkat(fd, de->d_name, 0) < 0) {
			rc = -errno;
			set_err(r, "engine rocksdb: unlink %s/%s/%s: %s", r->dir, name, de->d_name,
			        strerror(errno));
			break;
		}
	}
	closedir(d);
	if (rc == 0 && unlinkat(r->dir_fd, name, AT_REMOVEDIR) < 0) {
		rc = -errno;
		set_err(r, "engine rocksdb: rmdir %s/%s: %s", r->dir, name, strerror(errno));
	}
	return rc;
}

static int dir_fsync(rdb_t *r)
{
	if (fsync(r->dir_fd) < 0) {
		int rc = -errno;
		set_err(r, "engine rocksdb: fsync %s: %s", r->dir, strerror(errno));
		return rc;
	}
	return 0;
}

static bool dir_entry_exists(rdb_t *r, const char *name)
{
	struct stat st;
	return fstatat(r->dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* Finishes or undoes an interrupted restore swap (see the file header). */
static int dir_recover(rdb_t *r)
{
	int rc;
	if (!dir_entry_exists(r, "db") && dir_entry_exists(r, "db.old")) {
		if (renameat(r->dir_fd, "db.old", r->dir_fd, "db") < 0) {
			rc = -errno;
			set_err(r, "engine rocksdb: rename %s/db.old -> db: %s", r->dir, strerror(errno));
			return rc;
		}
		if ((rc = dir_fsync(r)) < 0) return rc;
	}
	if ((rc = remove_flat_dir(r, "restore.tmp")) < 0) return rc;
	return remove_flat_dir(r, "db.old");
}

/* ------------------------------------------------------------------ options */

static int options_create(rdb_t *r, const engine_options_t *opts)
{
	size_t cache_bytes = opts->block_cache_bytes ? opts->block_cache_bytes : BLOCK_CACHE_BYTES_DEFAULT;
	size_t wbuf_bytes = opts->write_buffer_bytes ? opts->write_buffer_bytes : WRITE_BUFFER_BYTES_DEFAULT;

	r->options = rocksdb_options_create();
	r->table_options = rocksdb_block_based_options_create();
	/* Block cache: bounds the memory used for uncompressed data blocks; reads of hot keys
	 * (stat, lookup) are served from it. 64 MiB default; metastored can raise it. */
	r->cache = rocksdb_cache_create_lru(cache_bytes);
	r->write_options = rocksdb_writeoptions_create();
	r->restore_write_options = rocksdb_writeoptions_create();
	r->read_options = rocksdb_readoptions_create();
	r->flush_options = rocksdb_flushoptions_create();
	r->wb = rocksdb_writebatch_create();
	if (!r->options || !r->table_options || !r->cache || !r->write_options || !r->restore_write_options ||
	    !r->read_options || !r->flush_options || !r->wb)
		return -ENOMEM;
	rocksdb_block_based_options_set_block_cache(r->table_options, r->cache);
	/* Full bloom filter: every commit looks up each key it writes (exact counters), and
	 * most of them are new keys; the filter answers "absent" without reading data blocks. */
	rocksdb_block_based_options_set_filter_policy(
	    r->table_options, rocksdb_filterpolicy_create_bloom_full(BLOOM_BITS_PER_KEY));
	rocksdb_options_set_block_based_table_factory(r->options, r->table_options);
	/* A new DIR starts empty. */
	rocksdb_options_set_create_if_missing(r->options, 1);
	/* LZ4: cheap on CPU, and paths and record headers compress well. Debian's librocksdb7.8
	 * links liblz4 (checked with ldd), so open() would fail loudly if it ever did not. */
	rocksdb_options_set_compression(r->options, rocksdb_lz4_compression);
	/* Memtable size (WRITE_BUFFER_BYTES_DEFAULT): bigger means fewer L0 files and less write
	 * amplification but slower gets; memory cost is up to max_write_buffer_number (default 2). */
	rocksdb_options_set_write_buffer_size(r->options, wbuf_bytes);
	/* Memtable bloom over whole keys: the per-commit lookup of a key that is new (the common
	 * case) skips the skiplist search of the memtable, which dominated commit time in
	 * bench/engine_bench with random keys. Costs ~MEMTABLE_BLOOM_RATIO of the memtable. */
	rocksdb_options_set_memtable_prefix_bloom_size_ratio(r->options, MEMTABLE_BLOOM_RATIO);
	rocksdb_options_set_memtable_whole_key_filtering(r->options, 1);
	/* Dynamic level sizes keep space amplification near 1.1x as the data set grows. */
	rocksdb_options_set_level_compaction_dynamic_level_bytes(r->options, 1);
	rocksdb_options_set_keep_log_file_num(r->options, INFO_LOG_FILES_MAX);
	/* WAL on (see the header for why), fsync per batch only on request. */
	rocksdb_writeoptions_disable_WAL(r->write_options, 0);
	rocksdb_writeoptions_set_sync(r->write_options, opts->sync_writes ? 1 : 0);
	/* The side DB of a restore is flushed and fsynced as a whole before it is swapped in, and
	 * thrown away after a crash: a WAL would only double its writes. */
	rocksdb_writeoptions_disable_WAL(r->restore_write_options, 1);
	rocksdb_writeoptions_set_sync(r->restore_write_options, 0);
	rocksdb_flushoptions_set_wait(r->flush_options, 1);
	/* Memtable insert hints (kept per 1-byte prefix, i.e. one for all user keys): commit
	 * writes each batch in key order, so each insert starts from the skiplist position of
	 * the previous key instead of from the top; ~15% more random-key puts per CPU second
	 * in bench/engine_bench. Not in 7.8's C API, hence the options string; a build that
	 * does not know the option just goes on without hints. */
	rocksdb_options_t *hinted = rocksdb_options_create();
	char *err = NULL;
	if (!hinted) return -ENOMEM;
	rocksdb_get_options_from_string(
	    r->options, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.1", hinted, &err);
	if (err) {
		rocksdb_free(err);
		rocksdb_options_destroy(hinted);
	} else {
		rocksdb_options_destroy(r->options);
		r->options = hinted;
	}
	return 0;
}

/* ------------------------------------------------------------------ open/close */

static void db_close(rdb_t *r)
{
	assert(r->iters_live == 0);
	pinned_release(r);
	if (r->cf) rocksdb_column_family_handle_destroy(r->cf);
	if (r->db) rocksdb_close(r->db);
	r->cf = NULL;
	r->db = NULL;
}

/* Reads META into r. A database with user keys but no META is corrupt. */
static int meta_load(rdb_t *r)
{
	char *err = NULL;
	rocksdb_pinnableslice_t *p =
	    rocksdb_get_pinned(r->db, r->read_options, META_KEY, sizeof META_KEY, &err);
	if (err) return rocks_err(r, "get meta", err);
	if (!p) {
		rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
		rocksdb_readoptions_set_iterate_lower_bound(ro, USER_LOWER, sizeof USER_LOWER);
		rocksdb_readoptions_set_iterate_upper_bound(ro, USER_UPPER, sizeof USER_UPPER);
		rocksdb_iterator_t *it = rocksdb_create_iterator(r->db, ro);
		rocksdb_iter_seek_to_first(it);
		bool any = rocksdb_iter_valid(it);
		rocksdb_iter_get_error(it, &err);
		rocksdb_iter_destroy(it);
		rocksdb_readoptions_destroy(ro);
		if (err) return rocks_err(r, "scan", err);
		if (any) {
			set_err(r, "engine rocksdb: %s holds keys but no meta record (not a MetaStore db?)",
			        r->db_path);
			return -EIO;
		}
		r->applied_index = r->key_count = r->data_bytes = 0;
		return 0;
	}
	size_t len;
	const uint8_t *v = (const uint8_t *)rocksdb_pinnableslice_value(p, &len);
	int rc = 0;
	if (len != META_BYTES || get_le32(v) != META_VERSION) {
		set_err(r, "engine rocksdb: %s: bad meta record (%zu bytes, version %u)", r->db_path, len,
		        len >= 4 ? get_le32(v) : 0);
		rc = -EIO;
	} else {
		r->applied_index = get_le64(v + 4);
		r->key_count = get_le64(v + 12);
		r->data_bytes = get_le64(v + 20);
	}
	rocksdb_pinnableslice_destroy(p);
	return rc;
}

static int db_open(rdb_t *r)
{
	assert(!r->db);
	char *err = NULL;
	const char *cf_names[1] = {"default"};
	const rocksdb_options_t *cf_opts[1] = {r->options};
	rocksdb_column_family_handle_t *cf[1] = {NULL};
	/* Opened through the column-family call only to get the default CF handle that
	 * rocksdb_batched_multi_get_cf() needs (7.8's C API has no other way to get it). */
	r->db = rocksdb_open_column_families(r->options, r->db_path, 1, cf_names, cf_opts, cf, &err);
	if (err) {
		r->db = NULL;
		return rocks_err(r, "open", err);
	}
	r->cf = cf[0];
	int rc = meta_load(r);
	if (rc < 0) db_close(r);
	r->write_gen++;
	return rc;
}

static void scratch_free(commit_scratch_t *s)
{
	free(s->op_uniq);
	free(s->uniq_block);
	free(s->table);
	free(s->arena);
	memset(s, 0, sizeof *s);
}

static void rdb_free(rdb_t *r)
{
	if (!r) return;
	db_close(r);
	if (r->wb) rocksdb_writebatch_destroy(r->wb);
	if (r->flush_options) rocksdb_flushoptions_destroy(r->flush_options);
	if (r->read_options) rocksdb_readoptions_destroy(r->read_options);
	if (r->restore_write_options) rocksdb_writeoptions_destroy(r->restore_write_options);
	if (r->write_options) rocksdb_writeoptions_destroy(r->write_options);
	if (r->options) rocksdb_options_destroy(r->options);
	if (r->table_options) rocksdb_block_based_options_destroy(r->table_options);
	if (r->cache) rocksdb_cache_destroy(r->cache);
	scratch_free(&r->scratch);
	if (r->lock_fd >= 0) close(r->lock_fd); /* releases the flock */
	if (r->dir_fd >= 0) close(r->dir_fd);
	free(r->key_buf);
	free(r->dir);
	free(r->db_path);
	free(r->tmp_path);
	free(r->old_path);
	free(r);
}

/* mkdir DIR if missing, open it, take DIR/metastore.lock. */
static int dir_prepare(rdb_t *r)
{
	if (mkdir(r->dir, 0755) < 0 && errno != EEXIST) {
		int rc = -errno;
		set_err(r, "engine rocksdb: mkdir %s: %s", r->dir, strerror(errno));
		return rc;
	}
	r->dir_fd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (r->dir_fd < 0) {
		int rc = -errno;
		set_err(r, "engine rocksdb: data dir %s: %s", r->dir, strerror(errno));
		return rc;
	}
	r->lock_fd = openat(r->dir_fd, "metastore.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (r->lock_fd < 0) {
		int rc = -errno;
		set_err(r, "engine rocksdb: %s/metastore.lock: %s", r->dir, strerror(errno));
		return rc;
	}
	if (flock(r->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = errno == EWOULDBLOCK ? -EBUSY : -errno;
		set_err(
		    r,
		    "engine rocksdb: data dir %s is in use by another engine (%s/metastore.lock is locked)",
		    r->dir, r->dir);
		return rc;
	}
	return 0;
}

static int rdb_open(const engine_options_t *opts, void **state, char *errbuf, size_t errbuf_len)
{
	assert(opts && state);
	if (!opts->dir || !opts->dir[0]) {
		if (errbuf && errbuf_len) snprintf(errbuf, errbuf_len, "engine rocksdb: no data dir given");
		return -EINVAL;
	}
	rdb_t *r = calloc(1, sizeof *r);
	if (!r) return -ENOMEM;
	r->dir_fd = r->lock_fd = -1;
	r->dir = strdup(opts->dir);
	r->db_path = path_join(opts->dir, "db");
	r->tmp_path = path_join(opts->dir, "restore.tmp");
	r->old_path = path_join(opts->dir, "db.old");
	r->key_buf = malloc(1 + ENGINE_KEY_BYTES_MAX);
	int rc = -ENOMEM;
	if (!r->dir || !r->db_path || !r->tmp_path || !r->old_path || !r->key_buf) goto err;
	set_err(r, "engine rocksdb: out of memory");
	if ((rc = options_create(r, opts)) < 0) goto err;
	if ((rc = dir_prepare(r)) < 0) goto err;
	if ((rc = dir_recover(r)) < 0) goto err;
	if ((rc = db_open(r)) < 0) goto err;
	r->errmsg[0] = '\0';
	*state = r;
	return 0;
err:
	if (errbuf && errbuf_len)
		snprintf(errbuf, errbuf_len, "%s", r->errmsg[0] ? r->errmsg : strerror(-rc));
	rdb_free(r);
	return rc;
}

static void rdb_close(void *state)
{
	rdb_t *r = state;
	assert(r->iters_live == 0); /* every iterator must be freed before engine_close() */
	rdb_free(r);
}

static const char *rdb_errmsg(void *state) { return ((rdb_t *)state)->errmsg; }
static uint64_t rdb_applied_index(void *state) { return ((rdb_t *)state)->applied_index; }
static uint64_t rdb_key_count(void *state) { return ((rdb_t *)state)->key_count; }
static uint64_t rdb_data_bytes(void *state) { return ((rdb_t *)state)->data_bytes; }

static int db_missing(rdb_t *r)
{
	set_err(r, "engine rocksdb: database closed after a failed restore; reopen the engine");
	return -EIO;
}

/* ------------------------------------------------------------------ get */

static size_t key_prefix(rdb_t *r, const void *key, size_t key_len)
{
	assert(key_len <= ENGINE_KEY_BYTES_MAX);
	r->key_buf[0] = PREFIX_USER;
	if (key_len) memcpy(r->key_buf + 1, key, key_len);
	return key_len + 1;
}

static int rdb_get(void *state, const void *key, size_t key_len, const void **val, size_t *val_len)
{
	rdb_t *r = state;
	assert(val && val_len && (key || key_len == 0));
	if (!r->db) return db_missing(r);
	size_t n = key_prefix(r, key, key_len);
	char *err = NULL;
	rocksdb_pinnableslice_t *p = rocksdb_get_pinned(r->db, r->read_options, r->key_buf, n, &err);
	if (err) return rocks_err(r, "get", err);
	if (!p) return -ENOENT;
	uint32_t slot = r->pinned_next;
	if (r->pinned[slot]) rocksdb_pinnableslice_destroy(r->pinned[slot]);
	r->pinned[slot] = p;
	r->pinned_next = (slot + 1) % GETS_PINNED_MAX;
	const char *v = rocksdb_pinnableslice_value(p, val_len);
	*val = v ? v : "";
	return 0;
}

/* ------------------------------------------------------------------ commit */

/* A buffer of at least `need` elements: the old one, or a larger one (realloc, so on failure
 * the old one is still owned by the caller). Capacities are powers of two. */
static void *grow(void *p, size_t *cap, size_t need, size_t elem_bytes)
{
	if (p && need <= *cap) return p; /* (a first call allocates even for need == 0) */
	size_t c = *cap ? *cap : 64;
	while (c < need)
		c *= 2;
	void *np = realloc(p, c * elem_bytes);
	if (np) *cap = c;
	return np;
}

/* Carves every uniq_* array for `cap` distinct keys out of one block: 8-byte-aligned arrays
 * first, then 4-byte, then bytes. */
static void uniq_carve(commit_scratch_t *s, char *block, size_t cap)
{
	s->uniq_ref = (uniq_ref_t *)block;
	block += cap * sizeof *s->uniq_ref;
	s->uniq_key = (const char **)block;
	block += cap * sizeof *s->uniq_key;
	s->uniq_key_len = (size_t *)block;
	block += cap * sizeof *s->uniq_key_len;
	s->uniq_val_len = (size_t *)block;
	block += cap * sizeof *s->uniq_val_len;
	s->uniq_val = (rocksdb_pinnableslice_t **)block;
	block += cap * sizeof *s->uniq_val;
	s->uniq_err = (char **)block;
	block += cap * sizeof *s->uniq_err;
	s->uniq_rank = (uint32_t *)block;
	block += cap * sizeof *s->uniq_rank;
	s->uniq_last_put = (uint32_t *)block;
	block += cap * sizeof *s->uniq_last_put;
	s->uniq_existed = (uint8_t *)block;
	block += cap;
	s->uniq_exists = (uint8_t *)block;
}

#define UNIQ_BYTES_PER_KEY                                                                                   \
	(sizeof(uniq_ref_t) + sizeof(const char *) + 2 * sizeof(size_t) +                                    \
	 sizeof(rocksdb_pinnableslice_t *) + sizeof(char *) + 2 * sizeof(uint32_t) + 2)

static int scratch_reserve(commit_scratch_t *s, size_t n, size_t table_n, size_t arena_bytes)
{
	void *p = grow(s->op_uniq, &s->ops_cap, n, sizeof *s->op_uniq);
	if (!p) return -ENOMEM;
	s->op_uniq = p;
	if (n > s->uniq_cap) { /* contents need not survive: a fresh block */
		size_t cap = 0;
		p = grow(NULL, &cap, n, UNIQ_BYTES_PER_KEY);
		if (!p) return -ENOMEM;
		free(s->uniq_block);
		s->uniq_block = p;
		s->uniq_cap = cap;
		uniq_carve(s, p, cap);
	}
	if (!(p = grow(s->table, &s->table_cap, table_n, sizeof *s->table))) return -ENOMEM;
	s->table = p;
	if (!(p = grow(s->arena, &s->arena_cap, arena_bytes, 1))) return -ENOMEM;
	s->arena = p;
	return 0;
}

static uint64_t key_hash(const char *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ (uint8_t)p[i]) * 0x100000001b3ULL;
	return h ^ (h >> 32);
}

/* Copies the prefixed keys into the arena, one per distinct key, and fills op_uniq with
 * first-seen indexes. Returns the number of distinct keys. */
static size_t batch_dedupe(commit_scratch_t *s, const engine_op_t *ops, size_t n, size_t table_n)
{
	size_t mask = table_n - 1, nu = 0, off = 0;
	assert((table_n & mask) == 0 && table_n >= 2 * n && table_n <= s->table_cap);
	memset(s->table, 0xff, table_n * sizeof *s->table);
	for (size_t i = 0; i < n; i++) {
		char *k = s->arena + off;
		size_t kl = ops[i].key_len + 1;
		k[0] = PREFIX_USER;
		if (ops[i].key_len) memcpy(k + 1, ops[i].key, ops[i].key_len);
		size_t slot = key_hash(k, kl) & mask;
		for (size_t probes = 0;; probes++) {
			assert(probes <= mask);
			uint32_t u = s->table[slot];
			if (u == UINT32_MAX) {
				u = (uint32_t)nu++;
				s->table[slot] = u;
				s->uniq_ref[u] = (uniq_ref_t){k, kl, u};
				off += kl; /* keep this copy: it is the distinct key */
				s->op_uniq[i] = u;
				break;
			}
			if (s->uniq_ref[u].key_len == kl && memcmp(s->uniq_ref[u].key, k, kl) == 0) {
				s->op_uniq[i] = u; /* duplicate: its arena space is reused */
				break;
			}
			slot = (slot + 1) & mask;
		}
	}
	return nu;
}

static int uniq_ref_cmp(const void *a, const void *b)
{
	const uniq_ref_t *x = a, *y = b;
	size_t m = x->key_len < y->key_len ? x->key_len : y->key_len;
	int c = memcmp(x->key, y->key, m);
	if (c) return c;
	return x->key_len < y->key_len ? -1 : x->key_len > y->key_len; /* distinct: never 0 */
}

/* Sorts the distinct keys (RocksDB's order) and renumbers op_uniq by sorted rank. Sorted
 * keys let MultiGet skip its own sort, and with the memtable insert hint (options_create)
 * each insert of a batch starts from the skiplist position of the previous key. */
static void batch_sort(commit_scratch_t *s, size_t n, size_t nu)
{
	if (nu > 1) qsort(s->uniq_ref, nu, sizeof *s->uniq_ref, uniq_ref_cmp);
	for (size_t pos = 0; pos < nu; pos++) {
		s->uniq_rank[s->uniq_ref[pos].first_seen] = (uint32_t)pos;
		s->uniq_key[pos] = s->uniq_ref[pos].key;
		s->uniq_key_len[pos] = s->uniq_ref[pos].key_len;
	}
	for (size_t i = 0; i < n; i++)
		s->op_uniq[i] = s->uniq_rank[s->op_uniq[i]];
}

/* Looks up the current value length of every distinct key. */
static int batch_lookup(rdb_t *r, size_t nu)
{
	commit_scratch_t *s = &r->scratch;
	if (nu == 0) return 0;
	rocksdb_batched_multi_get_cf(r->db, r->read_options, r->cf, nu, s->uniq_key, s->uniq_key_len,
	                             s->uniq_val, s->uniq_err, true);
	int rc = 0;
	for (size_t u = 0; u < nu; u++) {
		s->uniq_existed[u] = 0;
		s->uniq_val_len[u] = 0;
		if (s->uniq_err[u]) {
			if (rc == 0)
				rc = rocks_err(r, "multiget", s->uniq_err[u]);
			else
				rocksdb_free(s->uniq_err[u]);
		}
		if (s->uniq_val[u]) {
			s->uniq_existed[u] = 1;
			rocksdb_pinnableslice_value(s->uniq_val[u], &s->uniq_val_len[u]);
			rocksdb_pinnableslice_destroy(s->uniq_val[u]);
		}
		s->uniq_exists[u] = s->uniq_existed[u];
	}
	return rc;
}

/* Applies the ops in order to the counters and to each key's state; afterwards uniq_exists
 * and uniq_last_put say what the batch leaves behind for every distinct key. */
static void batch_simulate(commit_scratch_t *s, const engine_op_t *ops, size_t n, uint64_t *count,
                           uint64_t *bytes)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t u = s->op_uniq[i];
		size_t kl = ops[i].key_len;
		if (s->uniq_exists[u]) {
			assert(*count > 0 && *bytes >= kl + s->uniq_val_len[u]);
			(*count)--;
			*bytes -= kl + s->uniq_val_len[u];
			s->uniq_exists[u] = 0;
		}
		if (ops[i].type == ENGINE_OP_PUT) {
			assert(ops[i].val || ops[i].val_len == 0);
			(*count)++;
			*bytes += kl + ops[i].val_len;
			s->uniq_exists[u] = 1;
			s->uniq_val_len[u] = ops[i].val_len;
			s->uniq_last_put[u] = (uint32_t)i;
		}
	}
}

/* The batch's net effect, one op per distinct key in key order. The batch is atomic, so
 * only each key's final state matters; deleting a key that was absent writes nothing. */
static void batch_fill(rdb_t *r, const engine_op_t *ops, size_t nu)
{
	commit_scratch_t *s = &r->scratch;
	rocksdb_writebatch_clear(r->wb);
	for (size_t u = 0; u < nu; u++) {
		if (s->uniq_exists[u]) {
			const engine_op_t *op = &ops[s->uniq_last_put[u]];
			assert(op->type == ENGINE_OP_PUT && op->key_len + 1 == s->uniq_key_len[u]);
			rocksdb_writebatch_put(r->wb, s->uniq_key[u], s->uniq_key_len[u],
			                       op->val ? (const char *)op->val : "", op->val_len);
		} else if (s->uniq_existed[u]) {
			rocksdb_writebatch_delete(r->wb, s->uniq_key[u], s->uniq_key_len[u]);
		}
	}
}

static int rdb_commit(void *state, const engine_op_t *ops, size_t n, uint64_t applied_index)
{
	rdb_t *r = state;
	commit_scratch_t *s = &r->scratch;
	assert(ops || n == 0);
	assert(n < UINT32_MAX / 4);
	if (!r->db) return db_missing(r);
	size_t arena_bytes = 0;
	for (size_t i = 0; i < n; i++) {
		assert(ops[i].type == ENGINE_OP_PUT || ops[i].type == ENGINE_OP_DELETE);
		assert(ops[i].key_len <= ENGINE_KEY_BYTES_MAX);
		arena_bytes += ops[i].key_len + 1;
	}
	size_t table_n = 64; /* a power of two >= 2n: probes stay short */
	while (table_n < 2 * n)
		table_n *= 2;
	if (scratch_reserve(s, n, table_n, arena_bytes) < 0) {
		set_err(r, "engine rocksdb: out of memory for a batch of %zu ops", n);
		return -ENOMEM;
	}
	size_t nu = batch_dedupe(s, ops, n, table_n);
	batch_sort(s, n, nu);
	int rc = batch_lookup(r, nu);
	if (rc < 0) return rc;
	uint64_t count = r->key_count, bytes = r->data_bytes;
	batch_simulate(s, ops, n, &count, &bytes);
	batch_fill(r, ops, nu);

	uint8_t meta[META_BYTES];
	meta_encode(meta, applied_index, count, bytes);
	rocksdb_writebatch_put(r->wb, META_KEY, sizeof META_KEY, (const char *)meta, sizeof meta);
	char *err = NULL;
	rocksdb_write(r->db, r->write_options, r->wb, &err);
	rocksdb_writebatch_clear(r->wb);
	if (s->arena_cap > SCRATCH_KEEP_BYTES) { /* a huge batch: do not keep its memory */
		free(s->arena);
		s->arena = NULL;
		s->arena_cap = 0;
	}
	if (err) return rocks_err(r, "write", err);
	/* After the write: an op's value may point into a pinned get() result. */
	pinned_release(r);
	r->applied_index = applied_index;
	r->key_count = count;
	r->data_bytes = bytes;
	r->write_gen++;
	return 0;
}

/* ------------------------------------------------------------------ iterators */

static void *rdb_iter_new(void *state)
{
	rdb_t *r = state;
	if (!r->db) {
		db_missing(r);
		return NULL;
	}
	rdb_iter_t *it = calloc(1, sizeof *it);
	if (!it) return NULL;
	it->r = r;
	it->read_options = rocksdb_readoptions_create();
	if (!it->read_options) {
		free(it);
		return NULL;
	}
	/* The bounds keep META (and any future internal key) out of sight. */
	rocksdb_readoptions_set_iterate_lower_bound(it->read_options, USER_LOWER, sizeof USER_LOWER);
	rocksdb_readoptions_set_iterate_upper_bound(it->read_options, USER_UPPER, sizeof USER_UPPER);
	it->it = rocksdb_create_iterator(r->db, it->read_options);
	it->write_gen = r->write_gen;
	r->iters_live++;
	return it;
}

static void rdb_iter_free(void *iter)
{
	rdb_iter_t *it = iter;
	if (!it) return;
	assert(it->r->iters_live > 0);
	it->r->iters_live--;
	if (it->it) rocksdb_iter_destroy(it->it);
	rocksdb_readoptions_destroy(it->read_options);
	free(it);
}

/* A write since the RocksDB iterator was made: make a new one that sees it. */
static void iter_refresh(rdb_iter_t *it)
{
	if (it->write_gen == it->r->write_gen) return;
	assert(it->r->db); /* restore_commit refuses to run with live iterators */
	rocksdb_iter_destroy(it->it);
	it->it = rocksdb_create_iterator(it->r->db, it->read_options);
	it->write_gen = it->r->write_gen;
}

static void rdb_iter_seek(void *iter, const void *key, size_t key_len)
{
	rdb_iter_t *it = iter;
	assert(key || key_len == 0);
	iter_refresh(it);
	size_t n = key_prefix(it->r, key, key_len);
	rocksdb_iter_seek(it->it, it->r->key_buf, n);
}

static void rdb_iter_seek_first(void *iter)
{
	rdb_iter_t *it = iter;
	iter_refresh(it);
	rocksdb_iter_seek_to_first(it->it); /* lands on the lower bound */
}

static bool rdb_iter_valid(void *iter)
{
	rdb_iter_t *it = iter;
	if (it->write_gen != it->r->write_gen) return false; /* invalidated by a write */
	if (rocksdb_iter_valid(it->it)) return true;
	char *err = NULL;
	rocksdb_iter_get_error(it->it, &err);
	if (err) rocks_err(it->r, "iterator", err); /* iteration ends; errmsg says why */
	return false;
}

static void rdb_iter_next(void *iter)
{
	rdb_iter_t *it = iter;
	assert(it->write_gen == it->r->write_gen && rocksdb_iter_valid(it->it));
	rocksdb_iter_next(it->it);
}

static const void *rdb_iter_key(void *iter, size_t *key_len)
{
	rdb_iter_t *it = iter;
	assert(it->write_gen == it->r->write_gen && rocksdb_iter_valid(it->it));
	size_t n;
	const char *k = rocksdb_iter_key(it->it, &n);
	assert(n >= 1 && k[0] == PREFIX_USER);
	*key_len = n - 1;
	return k + 1;
}

static const void *rdb_iter_value(void *iter, size_t *val_len)
{
	rdb_iter_t *it = iter;
	assert(it->write_gen == it->r->write_gen && rocksdb_iter_valid(it->it));
	const char *v = rocksdb_iter_value(it->it, val_len);
	return v ? v : "";
}

/* ------------------------------------------------------------------ restore */

static void *rdb_restore_begin(void *state)
{
	rdb_t *r = state;
	rdb_restore_t *rs = calloc(1, sizeof *rs);
	if (!rs) return NULL;
	rs->r = r;
	rs->wb = rocksdb_writebatch_create();
	if (!rs->wb) {
		free(rs);
		return NULL;
	}
	/* Errors are kept in rs->rc and reported by restore_put/commit with their real errno. */
	if ((rs->rc = remove_flat_dir(r, "restore.tmp")) < 0) return rs;
	char *err = NULL;
	rs->db = rocksdb_open(r->options, r->tmp_path, &err);
	if (err) {
		rs->db = NULL;
		rs->rc = rocks_err(r, "open restore.tmp", err);
	}
	return rs;
}

static int restore_flush_batch(rdb_restore_t *rs)
{
	if (rocksdb_writebatch_count(rs->wb) == 0) return 0;
	char *err = NULL;
	rocksdb_write(rs->db, rs->r->restore_write_options, rs->wb, &err);
	rocksdb_writebatch_clear(rs->wb);
	rs->wb_bytes = 0;
	if (err) return rocks_err(rs->r, "write restore.tmp", err);
	return 0;
}

static int rdb_restore_put(void *restore, const void *key, size_t key_len, const void *val, size_t val_len)
{
	rdb_restore_t *rs = restore;
	assert(key || key_len == 0);
	assert(val || val_len == 0);
	if (rs->rc < 0) return rs->rc;
	const char *kparts[2] = {PREFIX_USER_BYTE, key_len ? key : ""};
	size_t kpart_lens[2] = {1, key_len};
	const char *vparts[1] = {val_len ? val : ""};
	size_t vpart_lens[1] = {val_len};
	rocksdb_writebatch_putv(rs->wb, 2, kparts, kpart_lens, 1, vparts, vpart_lens);
	rs->key_count++;
	rs->data_bytes += key_len + val_len;
	rs->wb_bytes += key_len + val_len + 1;
	if (rs->wb_bytes >= RESTORE_BATCH_BYTES) rs->rc = restore_flush_batch(rs);
	return rs->rc;
}

static void restore_free(rdb_restore_t *rs)
{
	if (rs->db) rocksdb_close(rs->db);
	rocksdb_writebatch_destroy(rs->wb);
	free(rs);
}

static void rdb_restore_abort(void *state, void *restore)
{
	rdb_t *r = state;
	rdb_restore_t *rs = restore;
	assert(rs->r == r);
	char saved[ERRMSG_BYTES]; /* keep the error that caused the abort */
	memcpy(saved, r->errmsg, sizeof saved);
	restore_free(rs);
	remove_flat_dir(r, "restore.tmp");
	memcpy(r->errmsg, saved, sizeof saved);
}

/* Writes META, flushes and closes the side DB so DIR/restore.tmp is complete on disk. */
static int restore_finish(rdb_restore_t *rs, uint64_t applied_index)
{
	int rc = restore_flush_batch(rs);
	if (rc < 0) return rc;
	uint8_t meta[META_BYTES];
	meta_encode(meta, applied_index, rs->key_count, rs->data_bytes);
	char *err = NULL;
	rocksdb_put(rs->db, rs->r->restore_write_options, META_KEY, sizeof META_KEY, (const char *)meta,
	            sizeof meta, &err);
	if (err) return rocks_err(rs->r, "write restore.tmp meta", err);
	rocksdb_flush(rs->db, rs->r->flush_options, &err); /* SSTs + MANIFEST, fsynced */
	if (err) return rocks_err(rs->r, "flush restore.tmp", err);
	rocksdb_close(rs->db);
	rs->db = NULL;
	return 0;
}

/* Undoes restore_swap's renames after they both succeeded. */
static void swap_back(rdb_t *r)
{
	char saved[ERRMSG_BYTES];
	memcpy(saved, r->errmsg, sizeof saved);
	if (renameat(r->dir_fd, "db", r->dir_fd, "restore.tmp") == 0 &&
	    renameat(r->dir_fd, "db.old", r->dir_fd, "db") == 0)
		dir_fsync(r);
	memcpy(r->errmsg, saved, sizeof saved);
}

/* The live DB is closed and DIR/restore.tmp complete: swap them and open the new one. On
 * failure DIR/db is the old DB again if the renames back succeed (else open() recovers it). */
static int restore_swap(rdb_t *r)
{
	int rc;
	if (renameat(r->dir_fd, "db", r->dir_fd, "db.old") < 0) {
		rc = -errno;
		set_err(r, "engine rocksdb: rename %s -> db.old: %s", r->db_path, strerror(errno));
		return rc;
	}
	if (renameat(r->dir_fd, "restore.tmp", r->dir_fd, "db") < 0) {
		rc = -errno;
		set_err(r, "engine rocksdb: rename %s -> db: %s", r->tmp_path, strerror(errno));
		renameat(r->dir_fd, "db.old", r->dir_fd, "db"); /* if this fails, open() recovers */
		return rc;
	}
	if ((rc = dir_fsync(r)) < 0 || (rc = db_open(r)) < 0) {
		swap_back(r);
		return rc;
	}
	remove_flat_dir(r, "db.old"); /* failure only leaks disk until the next open */
	return 0;
}

static int rdb_restore_commit(void *state, void *restore, uint64_t applied_index)
{
	rdb_t *r = state;
	rdb_restore_t *rs = restore;
	assert(rs->r == r);
	int rc = rs->rc;
	if (rc == 0 && !r->db) rc = db_missing(r);
	if (rc == 0 && r->iters_live) {
		set_err(r, "engine rocksdb: restore with %u live iterators", r->iters_live);
		rc = -EBUSY;
	}
	if (rc == 0) rc = restore_finish(rs, applied_index);
	if (rc < 0) {
		rdb_restore_abort(r, rs);
		return rc;
	}
	restore_free(rs);
	db_close(r);
	rc = restore_swap(r);
	if (rc < 0) {
		char saved[ERRMSG_BYTES];
		memcpy(saved, r->errmsg, sizeof saved);
		if (!r->db && dir_entry_exists(r, "db")) db_open(r); /* the old content, untouched */
		remove_flat_dir(r, "restore.tmp");
		memcpy(r->errmsg, saved, sizeof saved);
		return rc;
	}
	assert(r->applied_index == applied_index);
	return 0;
}

const engine_backend_ops_t engine_rocksdb_backend = {
    .name = "rocksdb",
    .open = rdb_open,
    .close = rdb_close,
    .errmsg = rdb_errmsg,
    .get = rdb_get,
    .commit = rdb_commit,
    .applied_index = rdb_applied_index,
    .key_count = rdb_key_count,
    .data_bytes = rdb_data_bytes,
    .iter_new = rdb_iter_new,
    .iter_free = rdb_iter_free,
    .iter_seek = rdb_iter_seek,
    .iter_seek_first = rdb_iter_seek_first,
    .iter_valid = rdb_iter_valid,
    .iter_next = rdb_iter_next,
    .iter_key = rdb_iter_key,
    .iter_value = rdb_iter_value,
    .restore_begin = rdb_restore_begin,
    .restore_put = rdb_restore_put,
    .restore_commit = rdb_restore_commit,
    .restore_abort = rdb_restore_abort,
};
