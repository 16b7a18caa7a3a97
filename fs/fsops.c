/* fsops.c - metastored's FUSE low-level handlers: POSIX requests in, transactions out.
 *
 * Nodeids are record inos (root = 1 = FUSE_ROOT_ID); the inode table (inotab.h) maps them to
 * keys. Three kinds of inos exist: the state machine's own (below SM_INO_PROPOSER_MIN),
 * proposer-chosen ones for files created here, (node_id << 56) | ((boot_epoch & 0xFFFF) << 40)
 * | counter (node ids 1..254, counter < 2^40 per boot; unique unless the 16-bit epoch wraps
 * while an old file from 65536 boots ago still exists), and the control files' fixed ones just
 * below UINT64_MAX.
 *
 * Decisions (DESIGN.md leaves them to fs/):
 * - Data lives in the open handle: open loads the whole value (after a read barrier unless
 *   -o local_reads, or O_TRUNC without read access), read serves from it, write edits it, and
 *   a commit sends it whole with one SM_OP_WRITE, replying after the local apply with the
 *   txn's errno. Opens with O_TRUNC start from an empty dirty buffer (FUSE_CAP_ATOMIC_O_TRUNC).
 *   A write past --value-max poisons the handle: -EFBIG now and at every flush, nothing stored.
 * - When to commit (deviation from "every dirty FLUSH"): a FLUSH commits only if data was
 *   written since the last commit, because the shell's `echo v > f` is open; dup2; close
 *   (a FLUSH with nothing written yet); write; close. Committing at the first FLUSH would cost
 *   two commits and show an empty file in between. An FSYNC commits whatever differs. A
 *   truncation or creation that no write followed (`touch new`, `: > f`) is committed by the
 *   RELEASE (which the kernel sends after close() returned); opens of that inode on this node
 *   wait for that commit, so close-then-open here still reads what the close left; another
 *   node sees it a moment later. A commit that failed is not retried by the release.
 * - Lookups answer from local state, except that a name not found locally takes a read
 *   barrier first (at most MS_LOOKUP_BARRIER_MS; skipped while no leader is known and with
 *   -o local_reads): otherwise a file created elsewhere by a close() that returned before this
 *   open began would be ENOENT at the lookup, before the linearizable open could see it.
 *   Listings (readdir) and getattr stay local, as DESIGN says.
 * - An open of a record that changed since this mount last reported its attributes replies
 *   only after the invalidation thread made an attributes-only notify_inval_inode for it
 *   (inval_attr_then): that thread may not have told the kernel yet, and a stale i_size would
 *   cut the read short. No notify call is ever made on the loop thread or inside a handler.
 * - Requests of watch/'s replay threads (inotify events for changes this mount did not make)
 *   propose nothing: see "replayed changes" below. Names created elsewhere and not replayed
 *   yet are left out of listings (at most WATCH_HIDE_MS_MAX); lookups answer them (open()
 *   stays linearizable) and tell watch/, whose replay then makes the kernel forget the name
 *   before creating it, so IN_CREATE still comes.
 * - The commit of an existing file compares its create_revision, so a flush never overwrites a
 *   different file that replaced it in the meantime; when the compare fails (or the file was
 *   deleted), the data goes nowhere and close() returns 0, as POSIX does for an unlinked file.
 * - open(O_CREAT) of a missing name (no O_EXCL) does not commit: it hands the kernel a
 *   provisional inode, and the flush that commits the data creates the record with that ino
 *   (SM_OP_WRITE + SM_F_CREATE), so `echo v > new` is one commit. Before choosing "missing",
 *   such an open takes a read barrier unless it has O_TRUNC without read access. Lookups,
 *   getattr, chmod/chown/utimens/truncate of a provisional inode stay in the table; a rename of
 *   one creates it (empty) in the same txn as the rename; an unlink drops it; if its last handle
 *   is released without a commit it disappears (reported to the sinks as a remote delete so the
 *   kernel's dentry is invalidated).
 * - getattr of a file that has uncommitted data in an open handle reports that data's size, the
 *   size the kernel already believes after the writes.
 * - Directories report st_nlink 1 (like btrfs: "unknown"), so find's leaf optimisation never
 *   skips subdirectories we do not count.
 * - Hard links -EPERM; mknod of anything but S_IFREG -EPERM; setxattr/removexattr -ENOTSUP;
 *   RENAME_WHITEOUT -EINVAL. The reserved root name .metastore: mkdir/create/symlink -EEXIST,
 *   rename/unlink -EPERM, rmdir -EBUSY.
 * - No direct_io and no keep_cache for data files (mmap works, every open re-reads);
 *   direct_io for control files; entry and attr timeouts MS_TIMEOUT_S; no negative entries
 *   cached. Read-only opens are noflush (nothing to commit: close() costs no round trip).
 */
#include "daemon.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

static const char *const op_names[MS_OP_COUNT] = {
    "lookup",   "forget",   "getattr",   "setattr",     "readlink",    "mknod",      "mkdir",    "unlink",
    "rmdir",    "symlink",  "rename",    "link",        "open",        "read",       "write",    "flush",
    "release",  "fsync",    "opendir",   "readdir",     "readdirplus", "releasedir", "fsyncdir", "statfs",
    "setxattr", "getxattr", "listxattr", "removexattr", "access",      "create",
};

const char *ms_op_name(ms_op_t op)
{
	assert(op < MS_OP_COUNT);
	return op_names[op];
}

static ms_t *D(fuse_req_t req) { return fuse_req_userdata(req); }

void ms_record_op(ms_t *d, ms_op_t op, uint64_t t0_ns, int err)
{
	assert(op < MS_OP_COUNT);
	d->stats.count[op]++;
	if (err) d->stats.errors[op]++;
	histo_record(&d->stats.latency_ns[op], ms_now_ns() - t0_ns);
}

static void reply_err(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, int err)
{
	assert(err <= 0);
	ms_record_op(d, op, t0, err);
	fuse_reply_err(req, -err);
}

uint64_t ms_next_provisional_ino(ms_t *d)
{
	d->ino_counter++;
	assert(d->ino_counter < (1ull << 40));
	return (uint64_t)d->opt.id << 56 | (uint64_t)(d->boot_epoch & 0xFFFFu) << 40 | d->ino_counter;
}

/* ------------------------------------------------------------------ keys and attributes */

typedef struct keybuf {
	char s[SM_KEY_BYTES_MAX + 1];
	size_t len;
} keybuf_t;

static bool is_reserved(uint64_t parent, const char *name)
{
	return parent == FUSE_ROOT_ID && strcmp(name, SM_CONTROL_DIR) == 0;
}

/* The key of name in directory parent: 0, -ENOENT (parent unknown), -ENAMETOOLONG, -EINVAL. */
static int child_key(ms_t *d, uint64_t parent, const char *name, keybuf_t *k)
{
	inotab_entry_t *pe = inotab_get(d->tab, parent);
	if (!pe || !pe->key) return -ENOENT;
	if (pe->provisional) return -ENOTDIR;
	size_t nl = strlen(name);
	if (nl > SM_NAME_BYTES_MAX) return -ENAMETOOLONG;
	size_t len = pe->key_len + (pe->key_len ? 1 : 0) + nl;
	if (len > SM_KEY_BYTES_MAX) return -ENAMETOOLONG;
	size_t at = 0;
	if (pe->key_len) {
		memcpy(k->s, pe->key, pe->key_len);
		k->s[pe->key_len] = '/';
		at = pe->key_len + 1;
	}
	memcpy(k->s + at, name, nl);
	k->len = len;
	k->s[len] = '\0';
	return sm_key_check(k->s, k->len);
}

static struct timespec ts_of(int64_t ns)
{
	struct timespec ts;
	ts.tv_sec = (time_t)(ns / 1000000000);
	ts.tv_nsec = (long)(ns % 1000000000);
	if (ts.tv_nsec < 0) ts.tv_nsec += 1000000000, ts.tv_sec--;
	return ts;
}

static int64_t ns_of(const struct timespec *ts) { return (int64_t)ts->tv_sec * 1000000000 + ts->tv_nsec; }

static void rec_stat(const sm_record_t *r, inotab_entry_t *e, struct stat *st)
{
	if (e) e->reported_mod_revision = r->mod_revision;
	memset(st, 0, sizeof *st);
	st->st_ino = e && ms_entry_is_rec(e, r->ino) ? e->ino : r->ino;
	st->st_mode = r->mode;
	st->st_nlink = 1;
	st->st_uid = r->uid;
	st->st_gid = r->gid;
	st->st_size = (off_t)r->size;
	if (e && e->dirty_size_valid && r->kind == SM_KIND_FILE) st->st_size = (off_t)e->dirty_size;
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim = ts_of(r->mtime_ns);
	st->st_ctim = ts_of(r->ctime_ns);
	st->st_atim = st->st_mtim;
}

static void prov_stat(const inotab_entry_t *e, struct stat *st)
{
	memset(st, 0, sizeof *st);
	st->st_ino = e->ino;
	st->st_mode = e->mode;
	st->st_nlink = 1;
	st->st_uid = e->uid;
	st->st_gid = e->gid;
	st->st_size = (off_t)(e->dirty_size_valid ? e->dirty_size : e->size);
	st->st_blksize = 4096;
	st->st_blocks = (st->st_size + 511) / 512;
	st->st_mtim = ts_of(e->mtime_ns);
	st->st_ctim = ts_of(e->ctime_ns);
	st->st_atim = st->st_mtim;
}

/* The record behind nodeid ino: 0, or -ENOENT (unknown, deleted, or its key now holds another
 * incarnation: then the nodeid is stale and unhooked). Provisional entries: -EAGAIN. */
static int get_rec(ms_t *d, uint64_t ino, inotab_entry_t **ep, sm_record_t *rec)
{
	inotab_entry_t *e = inotab_get(d->tab, ino);
	if (ep) *ep = e;
	if (!e || !e->key) return -ENOENT;
	if (e->provisional) return -EAGAIN;
	int rc = sm_get(d->sm, e->key, e->key_len, rec);
	if (rc) return rc == -ENOENT ? -ENOENT : rc;
	if (!ms_entry_is_rec(e, rec->ino)) {
		inotab_unhook(d->tab, e);
		return -ENOENT;
	}
	return 0;
}

static int stat_ino(ms_t *d, uint64_t ino, struct stat *st)
{
	inotab_entry_t *e = NULL;
	sm_record_t rec;
	int rc = get_rec(d, ino, &e, &rec);
	if (rc == -EAGAIN) {
		prov_stat(e, st);
		return 0;
	}
	if (rc) return rc;
	rec_stat(&rec, e, st);
	return 0;
}

static void fill_entry(struct fuse_entry_param *ep, const struct stat *st)
{
	memset(ep, 0, sizeof *ep);
	ep->ino = st->st_ino;
	ep->generation = 1;
	ep->attr = *st;
	ep->attr_timeout = MS_TIMEOUT_S;
	ep->entry_timeout = MS_TIMEOUT_S;
}

/* Hooks ino at key and replies the entry; the lookup count follows the kernel's reply. */
static int reply_entry_hooked(ms_t *d, fuse_req_t req, const char *key, size_t key_len, const struct stat *st)
{
	inotab_entry_t *e = NULL;
	int rc = inotab_hook(d->tab, st->st_ino, key, key_len, &e);
	if (rc) return rc;
	struct fuse_entry_param ep;
	fill_entry(&ep, st);
	inotab_ref(e, 1);
	if (fuse_reply_entry(req, &ep) != 0) inotab_forget(d->tab, st->st_ino, 1);
	return 0;
}

/* ------------------------------------------------------------------ handles */

fh_t *ms_fh_new(ms_t *d, fh_kind_t kind, uint64_t ino)
{
	fh_t *h = calloc(1, sizeof *h);
	if (!h) return NULL;
	h->kind = kind;
	h->ino = ino;
	h->refs = 1;
	h->next = d->handles;
	if (d->handles) d->handles->prev = h;
	d->handles = h;
	d->n_handles++;
	return h;
}

static void fh_destroy(ms_t *d, fh_t *h)
{
	if (h->prev)
		h->prev->next = h->next;
	else
		d->handles = h->next;
	if (h->next) h->next->prev = h->prev;
	d->n_handles--;
	if (h->txn_parsed) txnparse_free(&h->txn);
	free(h->buf);
	free(h->ents);
	free(h->names);
	free(h->dir_key);
	free(h->out);
	free(h);
}

void ms_fh_unref(ms_t *d, fh_t *h)
{
	assert(h && h->refs > 0);
	if (--h->refs == 0) fh_destroy(d, h);
}

void ms_free_all_handles(ms_t *d)
{
	while (d->handles)
		fh_destroy(d, d->handles);
}

static fh_t *fh_of(const struct fuse_file_info *fi) { return fi ? (fh_t *)(uintptr_t)fi->fh : NULL; }

static int buf_reserve(fh_t *h, size_t want, size_t max)
{
	if (want <= h->cap) return 0;
	if (want > max) return -EFBIG;
	size_t cap = h->cap ? h->cap : 4096;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 ? want : cap * 2;
	if (cap > max) cap = max;
	uint8_t *b = realloc(h->buf, cap);
	if (!b) return -ENOMEM;
	h->buf = b;
	h->cap = cap;
	return 0;
}

/* Sets the buffer's length, zero-filling a grown tail. */
static int buf_resize(fh_t *h, size_t len, size_t max)
{
	int rc = buf_reserve(h, len, max);
	if (rc) return rc;
	if (len > h->len) memset(h->buf + h->len, 0, len - h->len);
	h->len = len;
	return 0;
}

static void fh_snap_rec(fh_t *h, const sm_record_t *r)
{
	h->mod_revision = r->mod_revision;
	h->mode = r->mode;
	h->uid = r->uid;
	h->gid = r->gid;
	h->mtime_ns = r->mtime_ns;
	h->ctime_ns = r->ctime_ns;
}

/* ------------------------------------------------------------------ replayed changes (watch/)
 *
 * watch/'s replay thread remakes on this kernel, through this mount, a change the state machine
 * has already applied (made on another node or by a transaction), so that inotify watchers get
 * its events. Its requests carry its TID as pid; they propose nothing and answer from local
 * state, or from watch/'s marks where the kernel must still find a name as it was before the
 * change (a ghost: deleted or moved away since) or must not find it yet (a hidden name, created
 * elsewhere and not replayed yet: the kernel emits IN_CREATE only for a name it believes
 * missing). Its opens get a direct_io, noflush handle whose writes are ignored. */

static bool from_replay(ms_t *d, fuse_req_t req)
{
	return d->watch && watch_is_replay(d->watch, fuse_req_ctx(req)->pid);
}

/* The key the replay thread means by name in directory parent: below a directory that a
 * pending replay has still to remove or move, the kernel's path is the old one. */
static int replay_child_key(ms_t *d, uint64_t parent, const char *name, keybuf_t *k)
{
	char pk[SM_KEY_BYTES_MAX + 1];
	int n = watch_ghost(d->watch, parent, pk, sizeof pk, NULL);
	if (n < 0) return child_key(d, parent, name, k);
	size_t nl = strlen(name), plen = (size_t)n;
	if (nl > SM_NAME_BYTES_MAX) return -ENAMETOOLONG;
	size_t len = plen + (plen ? 1 : 0) + nl;
	if (len > SM_KEY_BYTES_MAX) return -ENAMETOOLONG;
	size_t at = 0;
	if (plen) {
		memcpy(k->s, pk, plen);
		k->s[plen] = '/';
		at = plen + 1;
	}
	memcpy(k->s + at, name, nl);
	k->len = len;
	k->s[len] = '\0';
	return sm_key_check(k->s, k->len);
}

/* The entry counting the kernel's references to rec, handed out under key k. The inode table
 * follows the state machine: the entry is hooked where the state machine has that record now,
 * which is k unless changes applied since moved it (then their pending replays say where) or
 * removed it (then it is not hooked at all: a ghost). */
static int replay_entry(ms_t *d, const keybuf_t *k, const sm_record_t *rec, inotab_entry_t **e)
{
	sm_record_t cur;
	if (sm_get(d->sm, k->s, k->len, &cur) == 0 && cur.ino == rec->ino)
		return inotab_hook(d->tab, ms_nodeid_of(d, k->s, k->len, rec->ino), k->s, k->len, e);
	keybuf_t *now = malloc(sizeof *now);
	if (!now) return -ENOMEM;
	int n = watch_forward(d->watch, k->s, k->len, now->s, sizeof now->s);
	int rc;
	if (n >= 0 && sm_get(d->sm, now->s, (size_t)n, &cur) == 0 && cur.ino == rec->ino)
		rc = inotab_hook(d->tab, ms_nodeid_of(d, now->s, (size_t)n, rec->ino), now->s, (size_t)n, e);
	else
		rc = inotab_get_or_add(d->tab, rec->ino, e);
	free(now);
	return rc;
}

/* Replies an entry for rec at k (the replay thread's lookup, mkdir, symlink). */
static void replay_reply_entry(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, const keybuf_t *k,
                               const sm_record_t *rec)
{
	inotab_entry_t *e = NULL;
	int rc = replay_entry(d, k, rec, &e);
	if (rc) return reply_err(d, req, op, t0, rc);
	struct stat st;
	struct fuse_entry_param ep;
	rec_stat(rec, e, &st);
	st.st_ino = e->ino;
	fill_entry(&ep, &st);
	inotab_ref(e, 1);
	ms_record_op(d, op, t0, 0);
	if (fuse_reply_entry(req, &ep) != 0) inotab_forget(d->tab, e->ino, 1);
}

static void replay_lookup(ms_t *d, fuse_req_t req, uint64_t parent, const char *name, uint64_t t0)
{
	keybuf_t k;
	sm_record_t rec;
	int rc = replay_child_key(d, parent, name, &k);
	if (rc == 0) {
		watch_answer_t a = watch_replay_lookup(d->watch, k.s, k.len, &rec);
		rc = a == WATCH_PRESENT ? 0 : a == WATCH_ABSENT ? -ENOENT : sm_get(d->sm, k.s, k.len, &rec);
	}
	if (rc) return reply_err(d, req, MS_OP_LOOKUP, t0, rc); /* never a read barrier */
	replay_reply_entry(d, req, MS_OP_LOOKUP, t0, &k, &rec);
}

/* The record a replayed creation of name in parent reports: the one its create made. From here
 * on the name is no longer hidden: the reply that follows makes the kernel emit IN_CREATE. */
static int replay_created(ms_t *d, uint64_t parent, const char *name, keybuf_t *k, sm_record_t *rec)
{
	int rc = replay_child_key(d, parent, name, k);
	if (rc) return rc;
	if (watch_reveal(d->watch, k->s, k->len, rec)) return 0;
	return sm_get(d->sm, k->s, k->len, rec);
}

/* A replayed rename or exchange is answered: both names stop being hidden (MOVED_TO follows). */
static void replay_renamed(ms_t *d, uint64_t parent, const char *name, uint64_t newparent,
                           const char *newname)
{
	keybuf_t *k = malloc(sizeof *k);
	if (!k) return; /* the replay thread unhides them when its rename returns */
	if (replay_child_key(d, parent, name, k) == 0) watch_reveal(d->watch, k->s, k->len, NULL);
	if (replay_child_key(d, newparent, newname, k) == 0) watch_reveal(d->watch, k->s, k->len, NULL);
	free(k);
}

static void replay_mkentry(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, uint64_t parent,
                           const char *name, sm_kind_t kind)
{
	keybuf_t k;
	sm_record_t rec;
	int rc = replay_created(d, parent, name, &k, &rec);
	if (rc == 0 && rec.kind != kind) rc = -EEXIST;
	if (rc) return reply_err(d, req, op, t0, rc);
	replay_reply_entry(d, req, op, t0, &k, &rec);
}

/* Replies open, or create with an entry for rec, with a replay handle on e. */
static void replay_open_reply(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, inotab_entry_t *e,
                              const sm_record_t *rec, struct fuse_file_info *fi)
{
	fh_t *h = ms_fh_new(d, FH_FILE, e->ino);
	if (!h) {
		inotab_forget(d->tab, e->ino, 0); /* frees an entry made for this reply */
		return reply_err(d, req, op, t0, -ENOMEM);
	}
	h->replay = true;
	h->open_flags = fi->flags;
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 1; /* the replay's write reaches no page cache: it only sets the size */
	fi->keep_cache = 0;
	fi->nonseekable = 0;
	fi->noflush = 1; /* nothing to flush: spares close() a round trip */
	inotab_open(e);
	int rc;
	if (rec) {
		struct stat st;
		struct fuse_entry_param ep;
		rec_stat(rec, e, &st);
		st.st_ino = e->ino;
		fill_entry(&ep, &st);
		inotab_ref(e, 1);
		rc = fuse_reply_create(req, &ep, fi);
		if (rc) e->nlookup--; /* the kernel never got it */
	} else {
		rc = fuse_reply_open(req, fi);
	}
	ms_record_op(d, op, t0, 0);
	if (rc) {
		ms_fh_unref(d, h);
		inotab_close(d->tab, e);
	}
}

static void replay_create(ms_t *d, fuse_req_t req, uint64_t parent, const char *name,
                          struct fuse_file_info *fi, uint64_t t0)
{
	keybuf_t k;
	sm_record_t rec;
	inotab_entry_t *e = NULL;
	int rc = replay_created(d, parent, name, &k, &rec);
	if (rc == 0 && rec.kind != SM_KIND_FILE) rc = rec.kind == SM_KIND_DIR ? -EISDIR : -EEXIST;
	if (rc == 0) rc = replay_entry(d, &k, &rec, &e);
	if (rc) return reply_err(d, req, MS_OP_CREATE, t0, rc);
	replay_open_reply(d, req, MS_OP_CREATE, t0, e, &rec, fi);
}

/* getattr / setattr of the replay thread on a nodeid that a pending replay removes or moves. */
static bool replay_ghost_attr(ms_t *d, uint64_t ino, struct stat *st)
{
	char key[SM_KEY_BYTES_MAX + 1];
	sm_record_t rec;
	if (watch_ghost(d->watch, ino, key, sizeof key, &rec) < 0) return false;
	rec_stat(&rec, inotab_get(d->tab, ino), st);
	st->st_ino = ino;
	return true;
}

/* ------------------------------------------------------------------ init, lookup, forget */

static void op_init(void *ud, struct fuse_conn_info *conn)
{
	ms_t *d = ud;
	if (conn->capable & FUSE_CAP_ATOMIC_O_TRUNC) conn->want |= FUSE_CAP_ATOMIC_O_TRUNC;
	conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
	conn->want &= ~(unsigned)FUSE_CAP_EXPORT_SUPPORT;
	ms_log(d, LOG_DEBUG, "fuse: protocol %u.%u, want 0x%x, max_write %u", conn->proto_major,
	       conn->proto_minor, conn->want, conn->max_write);
}

/* Answers a lookup of a provisional file from the table. True if it did. */
static bool lookup_provisional(ms_t *d, fuse_req_t req, const keybuf_t *k, uint64_t t0)
{
	inotab_entry_t *e = inotab_find_key(d->tab, k->s, k->len);
	if (!e || !e->provisional) return false;
	struct stat st;
	struct fuse_entry_param ep;
	prov_stat(e, &st);
	fill_entry(&ep, &st);
	inotab_ref(e, 1);
	if (fuse_reply_entry(req, &ep) != 0) inotab_forget(d->tab, e->ino, 1);
	ms_record_op(d, MS_OP_LOOKUP, t0, 0);
	return true;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	struct fuse_entry_param ep;
	if (ms_ctl_is(parent) || is_reserved(parent, name)) {
		int rc = ms_ctl_lookup(d, parent, name, &ep);
		if (rc) return reply_err(d, req, MS_OP_LOOKUP, t0, rc);
		ms_record_op(d, MS_OP_LOOKUP, t0, 0);
		fuse_reply_entry(req, &ep);
		return;
	}
	if (from_replay(d, req)) return replay_lookup(d, req, parent, name, t0);
	keybuf_t k;
	int rc = child_key(d, parent, name, &k);
	if (rc) return reply_err(d, req, MS_OP_LOOKUP, t0, rc);
	sm_record_t rec;
	struct stat st;
	rc = sm_get(d->sm, k.s, k.len, &rec);
	if (rc == 0) {
		if (d->watch) watch_looked_up(d->watch, k.s, k.len, parent); /* its replay may be pending */
		inotab_entry_t *e = inotab_get(d->tab, ms_nodeid_of(d, k.s, k.len, rec.ino));
		rec_stat(&rec, e, &st);
		rc = reply_entry_hooked(d, req, k.s, k.len, &st);
		if (rc) return reply_err(d, req, MS_OP_LOOKUP, t0, rc);
		ms_record_op(d, MS_OP_LOOKUP, t0, 0);
		return;
	}
	if (rc == -ENOENT && lookup_provisional(d, req, &k, t0)) return;
	if (rc == -ENOENT && !d->opt.local_reads && d->leader_id != 0) {
		/* A name this node has not seen may have been created elsewhere by a close() that
		 * returned before this lookup began: look again after a read barrier, so an open of
		 * it is linearizable too. Names found locally need no barrier (open takes one). */
		pending_t *p = ms_pending_new(d, P_LOOKUP, MS_OP_LOOKUP, req, t0);
		if (p && (p->key = strndup(k.s, k.len))) {
			p->key_len = k.len;
			p->parent_ino = parent;
			if (ms_read_barrier(d, p) == 0) return;
		}
		ms_pending_free(d, p);
	}
	reply_err(d, req, MS_OP_LOOKUP, t0, rc);
}

/* The second look after the barrier. */
static void lookup_again(ms_t *d, pending_t *p)
{
	keybuf_t k;
	memcpy(k.s, p->key, p->key_len);
	k.s[p->key_len] = '\0';
	k.len = p->key_len;
	sm_record_t rec;
	int rc = sm_get(d->sm, k.s, k.len, &rec);
	if (rc == 0) {
		if (d->watch) watch_looked_up(d->watch, k.s, k.len, p->parent_ino);
		struct stat st;
		rec_stat(&rec, inotab_get(d->tab, ms_nodeid_of(d, k.s, k.len, rec.ino)), &st);
		rc = reply_entry_hooked(d, p->req, k.s, k.len, &st);
		if (rc == 0) return ms_record_op(d, MS_OP_LOOKUP, p->t0_ns, 0);
	}
	if (rc == -ENOENT && lookup_provisional(d, p->req, &k, p->t0_ns)) return;
	reply_err(d, p->req, MS_OP_LOOKUP, p->t0_ns, rc);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (!ms_ctl_is(ino)) inotab_forget(d->tab, ino, nlookup);
	ms_record_op(d, MS_OP_FORGET, t0, 0);
	fuse_reply_none(req);
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	for (size_t i = 0; i < count; i++)
		if (!ms_ctl_is(forgets[i].ino)) inotab_forget(d->tab, forgets[i].ino, forgets[i].nlookup);
	ms_record_op(d, MS_OP_FORGET, t0, 0);
	fuse_reply_none(req);
}

/* ------------------------------------------------------------------ getattr, setattr */

/* Whether this mount has ino open for writing (O(open handles): only for open files). */
static bool open_for_writing(ms_t *d, const inotab_entry_t *e)
{
	if (e->open_count == 0) return false;
	for (fh_t *h = d->handles; h; h = h->next)
		if (h->kind == FH_FILE && h->ino == e->ino && !h->released && !h->replay &&
		    (h->open_flags & O_ACCMODE) != O_RDONLY)
			return true;
	return false;
}

/* An open file handle of ino, if any (O(open handles): only for unlinked files). */
static fh_t *open_handle_of(ms_t *d, uint64_t ino)
{
	inotab_entry_t *e = inotab_get(d->tab, ino);
	if (!e || e->open_count == 0) return NULL;
	for (fh_t *h = d->handles; h; h = h->next)
		if (h->kind == FH_FILE && h->ino == ino && !h->released) return h;
	return NULL;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	struct stat st;
	if (ms_ctl_is(ino)) {
		ms_ctl_attr(d, ino, &st);
		ms_record_op(d, MS_OP_GETATTR, t0, 0);
		fuse_reply_attr(req, &st, MS_TIMEOUT_S);
		return;
	}
	int rc = from_replay(d, req) && replay_ghost_attr(d, ino, &st) ? 0 : stat_ino(d, ino, &st);
	fh_t *h = fh_of(fi);
	if (rc == -ENOENT && !(h && h->kind == FH_FILE)) h = open_handle_of(d, ino);
	if (rc == -ENOENT && h && h->kind == FH_FILE) {
		/* fstat() of an open file whose name is gone (the kernel sends no fh with a
		 * stat): what an open handle of it knows */
		memset(&st, 0, sizeof st);
		st.st_ino = ino;
		st.st_mode = h->mode ? h->mode : (S_IFREG | 0644);
		st.st_nlink = 0; /* no name left */
		st.st_uid = h->uid;
		st.st_gid = h->gid;
		st.st_size = (off_t)h->len;
		st.st_blksize = 4096;
		st.st_blocks = (st.st_size + 511) / 512;
		st.st_mtim = st.st_atim = ts_of(h->mtime_ns);
		st.st_ctim = ts_of(h->ctime_ns);
		rc = 0;
	}
	if (rc) return reply_err(d, req, MS_OP_GETATTR, t0, rc);
	ms_record_op(d, MS_OP_GETATTR, t0, 0);
	fuse_reply_attr(req, &st, MS_TIMEOUT_S);
}

static void setattr_provisional(ms_t *d, fuse_req_t req, inotab_entry_t *e, struct stat *attr, int to_set,
                                fh_t *h, uint64_t t0)
{
	int64_t now = ms_realtime_ns();
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if ((uint64_t)attr->st_size > d->opt.value_bytes_max)
			return reply_err(d, req, MS_OP_SETATTR, t0, -EFBIG);
		if (h && h->kind == FH_FILE) {
			int rc = buf_resize(h, (size_t)attr->st_size, d->opt.value_bytes_max);
			if (rc) return reply_err(d, req, MS_OP_SETATTR, t0, rc);
			h->dirty = h->written = true;
		}
		e->size = (uint64_t)attr->st_size;
		e->dirty_size = e->size;
		e->dirty_size_valid = true;
		e->mtime_ns = now;
	}
	if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID | FUSE_SET_ATTR_MTIME |
	              FUSE_SET_ATTR_MTIME_NOW | FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_ATIME_NOW))
		e->attrib_set = true; /* its commit says so: the replays show the ATTRIB */
	if (to_set & FUSE_SET_ATTR_MODE) e->mode = (e->mode & S_IFMT) | (attr->st_mode & 07777);
	if (to_set & FUSE_SET_ATTR_UID) e->uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID) e->gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_MTIME) e->mtime_ns = ns_of(&attr->st_mtim);
	if (to_set & FUSE_SET_ATTR_MTIME_NOW) e->mtime_ns = now;
	e->ctime_ns = now;
	struct stat st;
	prov_stat(e, &st);
	ms_record_op(d, MS_OP_SETATTR, t0, 0);
	fuse_reply_attr(req, &st, MS_TIMEOUT_S);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	struct stat st;
	if (ms_ctl_is(ino)) { /* `> txn` and touch are harmless: nothing to change */
		ms_ctl_attr(d, ino, &st);
		ms_record_op(d, MS_OP_SETATTR, t0, 0);
		fuse_reply_attr(req, &st, MS_TIMEOUT_S);
		return;
	}
	if (from_replay(d, req)) { /* a replayed chmod/chown/utimens/ftruncate: the record has it already */
		int rc = replay_ghost_attr(d, ino, &st) ? 0 : stat_ino(d, ino, &st);
		if (rc) return reply_err(d, req, MS_OP_SETATTR, t0, rc);
		ms_record_op(d, MS_OP_SETATTR, t0, 0);
		fuse_reply_attr(req, &st, MS_TIMEOUT_S);
		return;
	}
	inotab_entry_t *e = inotab_get(d->tab, ino);
	if (!e || !e->key) return reply_err(d, req, MS_OP_SETATTR, t0, -ENOENT);
	fh_t *h = fh_of(fi);
	if (e->provisional) return setattr_provisional(d, req, e, attr, to_set, h, t0);
	sm_op_t o = {.type = SM_OP_SETATTR, .key = e->key, .key_len = e->key_len};
	sm_txn_t txn = {.flags = SM_TXN_FROM_FS, .n_success = 1, .success = &o, .time_ns = ms_realtime_ns()};
	if (to_set & FUSE_SET_ATTR_MODE) o.attr_mask |= SM_ATTR_MODE, o.mode = attr->st_mode & 07777;
	if (to_set & FUSE_SET_ATTR_UID) o.attr_mask |= SM_ATTR_UID, o.uid = attr->st_uid;
	if (to_set & FUSE_SET_ATTR_GID) o.attr_mask |= SM_ATTR_GID, o.gid = attr->st_gid;
	if (to_set & FUSE_SET_ATTR_SIZE) {
		if (attr->st_size < 0 || (uint64_t)attr->st_size > d->opt.value_bytes_max)
			return reply_err(d, req, MS_OP_SETATTR, t0, -EFBIG);
		o.attr_mask |= SM_ATTR_SIZE;
		o.size = (uint64_t)attr->st_size;
	}
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		o.attr_mask |= SM_ATTR_MTIME, o.mtime_ns = txn.time_ns;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		o.attr_mask |= SM_ATTR_MTIME, o.mtime_ns = ns_of(&attr->st_mtim);
	if (o.attr_mask == 0) { /* atime or ctime only: nothing we store */
		int rc = stat_ino(d, ino, &st);
		if (rc) return reply_err(d, req, MS_OP_SETATTR, t0, rc);
		ms_record_op(d, MS_OP_SETATTR, t0, 0);
		fuse_reply_attr(req, &st, MS_TIMEOUT_S);
		return;
	}
	/* How the change was made, for the replays on other mounts (watch.h): ftruncate comes with
	 * its handle; futimens, fchmod and fchown do not, so a change of those while the file is
	 * open for writing here is taken as made through it (touch: open, futimens, close). */
	if (o.attr_mask & SM_ATTR_SIZE ? h != NULL : open_for_writing(d, e)) txn.flags |= SM_TXN_OPEN_WRITE;
	if ((o.attr_mask & SM_ATTR_SIZE) && h && h->kind == FH_FILE) {
		/* ftruncate: the handle's data follows, so a later flush keeps the new size */
		int rc = buf_resize(h, (size_t)o.size, d->opt.value_bytes_max);
		if (rc) return reply_err(d, req, MS_OP_SETATTR, t0, rc);
		if (e->dirty_size_valid) e->dirty_size = o.size;
	}
	pending_t *p = ms_pending_new(d, P_ATTR, MS_OP_SETATTR, req, t0);
	if (!p) return reply_err(d, req, MS_OP_SETATTR, t0, -ENOMEM);
	p->ino = ino;
	int rc = ms_propose(d, &txn, p);
	if (rc) {
		ms_pending_free(d, p);
		reply_err(d, req, MS_OP_SETATTR, t0, rc);
	}
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	sm_record_t rec;
	int rc = ms_ctl_is(ino) ? -EINVAL : get_rec(d, ino, NULL, &rec);
	if (rc == -EAGAIN) rc = -EINVAL;
	if (rc == 0 && rec.kind != SM_KIND_SYMLINK) rc = -EINVAL;
	if (rc) return reply_err(d, req, MS_OP_READLINK, t0, rc);
	char *s = malloc(rec.value_len + 1);
	if (!s) return reply_err(d, req, MS_OP_READLINK, t0, -ENOMEM);
	if (rec.value_len) memcpy(s, rec.value, rec.value_len);
	s[rec.value_len] = '\0';
	ms_record_op(d, MS_OP_READLINK, t0, 0);
	fuse_reply_readlink(req, s);
	free(s);
}

/* ------------------------------------------------------------------ namespace changes */

/* Proposes a one-op txn that creates key (mkdir, symlink, mknod, O_EXCL create); the reply
 * (an entry, or entry + handle) comes from ms_complete. */
static void propose_create(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, uint64_t parent,
                           const char *name, sm_op_t *o, pend_kind_t kind, const struct fuse_file_info *fi)
{
	if (ms_ctl_is(parent)) return reply_err(d, req, op, t0, -EPERM);
	if (is_reserved(parent, name)) return reply_err(d, req, op, t0, -EEXIST);
	keybuf_t k;
	int rc = child_key(d, parent, name, &k);
	if (rc) return reply_err(d, req, op, t0, rc);
	inotab_entry_t *prov = inotab_find_key(d->tab, k.s, k.len);
	if (prov && prov->provisional) return reply_err(d, req, op, t0, -EEXIST);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	o->key = k.s;
	o->key_len = k.len;
	o->uid = ctx->uid;
	o->gid = ctx->gid;
	sm_txn_t txn = {.flags = SM_TXN_FROM_FS, .n_success = 1, .success = o};
	pending_t *p = ms_pending_new(d, kind, op, req, t0);
	if (!p || !(p->key = strndup(k.s, k.len))) {
		ms_pending_free(d, p);
		return reply_err(d, req, op, t0, -ENOMEM);
	}
	p->key_len = k.len;
	p->parent_ino = parent;
	if (fi) p->fi = *fi;
	if (kind == P_CREATE_EXCL) {
		p->fh = ms_fh_new(d, FH_FILE, 0);
		if (!p->fh) {
			ms_pending_free(d, p);
			return reply_err(d, req, op, t0, -ENOMEM);
		}
		p->fh->refs = 2; /* the pending's and the kernel's, once replied */
		p->fh->open_flags = fi->flags;
		p->fh->append = (fi->flags & O_APPEND) != 0;
	}
	rc = ms_propose(d, &txn, p);
	if (rc) {
		if (p->fh) p->fh->refs = 1;
		ms_pending_free(d, p);
		reply_err(d, req, op, t0, rc);
	}
}

static void op_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)rdev;
	if (!S_ISREG(mode)) return reply_err(d, req, MS_OP_MKNOD, t0, -EPERM);
	sm_op_t o = {.type = SM_OP_CREATE, .flags = SM_F_EXCL, .mode = mode & 07777};
	propose_create(d, req, MS_OP_MKNOD, t0, parent, name, &o, P_ENTRY, NULL);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (from_replay(d, req) && !ms_ctl_is(parent) && !is_reserved(parent, name))
		return replay_mkentry(d, req, MS_OP_MKDIR, t0, parent, name, SM_KIND_DIR);
	sm_op_t o = {.type = SM_OP_MKDIR, .mode = mode & 07777};
	propose_create(d, req, MS_OP_MKDIR, t0, parent, name, &o, P_ENTRY, NULL);
}

static void op_symlink(fuse_req_t req, const char *link, fuse_ino_t parent, const char *name)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	size_t len = strlen(link);
	if (from_replay(d, req) && !ms_ctl_is(parent) && !is_reserved(parent, name))
		return replay_mkentry(d, req, MS_OP_SYMLINK, t0, parent, name, SM_KIND_SYMLINK);
	if (len == 0) return reply_err(d, req, MS_OP_SYMLINK, t0, -ENOENT);
	if (len >= 4096) return reply_err(d, req, MS_OP_SYMLINK, t0, -ENAMETOOLONG);
	sm_op_t o = {.type = SM_OP_SYMLINK, .mode = 0777, .value = (const uint8_t *)link, .value_len = len};
	propose_create(d, req, MS_OP_SYMLINK, t0, parent, name, &o, P_ENTRY, NULL);
}

static void op_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	ms_t *d = D(req);
	(void)ino, (void)newparent, (void)newname;
	reply_err(d, req, MS_OP_LINK, ms_now_ns(), -EPERM);
}

static void propose_simple(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, sm_op_t *ops, uint32_t n_ops)
{
	sm_txn_t txn = {.flags = SM_TXN_FROM_FS, .n_success = n_ops, .success = ops};
	pending_t *p = ms_pending_new(d, P_ERR, op, req, t0);
	if (!p) return reply_err(d, req, op, t0, -ENOMEM);
	int rc = ms_propose(d, &txn, p);
	if (rc) {
		ms_pending_free(d, p);
		reply_err(d, req, op, t0, rc);
	}
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (ms_ctl_is(parent) || is_reserved(parent, name))
		return reply_err(d, req, MS_OP_UNLINK, t0, -EPERM);
	if (from_replay(d, req)) return reply_err(d, req, MS_OP_UNLINK, t0, 0); /* applied already */
	keybuf_t k;
	int rc = child_key(d, parent, name, &k);
	if (rc) return reply_err(d, req, MS_OP_UNLINK, t0, rc);
	sm_record_t rec;
	if (sm_get(d->sm, k.s, k.len, &rec) == -ENOENT) {
		inotab_entry_t *e = inotab_find_key(d->tab, k.s, k.len);
		if (e && e->provisional) { /* never committed: forgetting it is the whole unlink */
			inotab_unhook(d->tab, e);
			return reply_err(d, req, MS_OP_UNLINK, t0, 0);
		}
		return reply_err(d, req, MS_OP_UNLINK, t0, -ENOENT);
	}
	sm_op_t o = {.type = SM_OP_UNLINK, .key = k.s, .key_len = k.len};
	propose_simple(d, req, MS_OP_UNLINK, t0, &o, 1);
}

static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (is_reserved(parent, name)) return reply_err(d, req, MS_OP_RMDIR, t0, -EBUSY);
	if (ms_ctl_is(parent)) return reply_err(d, req, MS_OP_RMDIR, t0, -ENOTDIR);
	if (from_replay(d, req)) return reply_err(d, req, MS_OP_RMDIR, t0, 0); /* applied already */
	keybuf_t k;
	int rc = child_key(d, parent, name, &k);
	if (rc) return reply_err(d, req, MS_OP_RMDIR, t0, rc);
	sm_op_t o = {.type = SM_OP_RMDIR, .key = k.s, .key_len = k.len};
	propose_simple(d, req, MS_OP_RMDIR, t0, &o, 1);
}

/* If key is a provisional file, adds the op that creates it (empty, with its ino). */
static void materialize(ms_t *d, const keybuf_t *k, sm_op_t *ops, uint32_t *n)
{
	sm_record_t rec;
	if (sm_get(d->sm, k->s, k->len, &rec) != -ENOENT) return;
	inotab_entry_t *e = inotab_find_key(d->tab, k->s, k->len);
	if (!e || !e->provisional) return;
	ops[(*n)++] = (sm_op_t){.type = SM_OP_WRITE,
	                        .flags = SM_F_CREATE,
	                        .key = k->s,
	                        .key_len = k->len,
	                        .ino = e->ino,
	                        .mode = e->mode & 07777,
	                        .uid = e->uid,
	                        .gid = e->gid};
}

static void op_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (flags & RENAME_WHITEOUT) return reply_err(d, req, MS_OP_RENAME, t0, -EINVAL);
	if (flags & ~(unsigned)(RENAME_NOREPLACE | RENAME_EXCHANGE))
		return reply_err(d, req, MS_OP_RENAME, t0, -EINVAL);
	if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE))
		return reply_err(d, req, MS_OP_RENAME, t0, -EINVAL);
	if (ms_ctl_is(parent) || ms_ctl_is(newparent) || is_reserved(parent, name) ||
	    is_reserved(newparent, newname))
		return reply_err(d, req, MS_OP_RENAME, t0, -EPERM);
	if (from_replay(d, req)) { /* applied already */
		replay_renamed(d, parent, name, newparent, newname);
		return reply_err(d, req, MS_OP_RENAME, t0, 0);
	}
	keybuf_t *k = malloc(2 * sizeof *k);
	if (!k) return reply_err(d, req, MS_OP_RENAME, t0, -ENOMEM);
	int rc = child_key(d, parent, name, &k[0]);
	if (rc == 0) rc = child_key(d, newparent, newname, &k[1]);
	if (rc) {
		free(k);
		return reply_err(d, req, MS_OP_RENAME, t0, rc);
	}
	sm_op_t ops[3];
	uint32_t n = 0;
	materialize(d, &k[0], ops, &n);
	if (flags & RENAME_EXCHANGE) materialize(d, &k[1], ops, &n);
	ops[n++] = (sm_op_t){.type = SM_OP_RENAME,
	                     .key = k[0].s,
	                     .key_len = k[0].len,
	                     .key2 = k[1].s,
	                     .key2_len = k[1].len,
	                     .flags = ((flags & RENAME_NOREPLACE) ? SM_F_NOREPLACE : 0u) |
	                              ((flags & RENAME_EXCHANGE) ? SM_F_EXCHANGE : 0u)};
	propose_simple(d, req, MS_OP_RENAME, t0, ops, n);
	free(k);
}

/* ------------------------------------------------------------------ open, create */

static bool wants_read(int flags) { return (flags & O_ACCMODE) != O_WRONLY; }
static bool truncates(int flags) { return (flags & O_TRUNC) && (flags & O_ACCMODE) != O_RDONLY; }

/* Whether an open of an existing file may skip the read barrier. */
static bool skip_barrier(const ms_t *d, int flags)
{
	return d->opt.local_reads || (truncates(flags) && !wants_read(flags));
}

/* Loads the record behind h->ino into h. 0, -ENOENT, -EISDIR. */
static int load_handle(ms_t *d, fh_t *h, inotab_entry_t **ep)
{
	sm_record_t rec;
	inotab_entry_t *e = NULL;
	int rc = get_rec(d, h->ino, &e, &rec);
	*ep = e;
	if (rc == -EAGAIN) { /* provisional: nothing committed to load */
		h->mode = e->mode, h->uid = e->uid, h->gid = e->gid, h->mtime_ns = e->mtime_ns,
		h->ctime_ns = e->ctime_ns;
		h->len = 0;
		if (truncates(h->open_flags)) {
			h->dirty = true;
			e->dirty_size = 0;
			e->dirty_size_valid = true;
		}
		return 0;
	}
	if (rc) return rc;
	if (rec.kind == SM_KIND_DIR) return -EISDIR;
	if (rec.kind != SM_KIND_FILE) return -ELOOP; /* symlinks are followed by the kernel */
	fh_snap_rec(h, &rec);
	e->create_revision = rec.create_revision;
	if (truncates(h->open_flags)) {
		h->len = 0;
		h->dirty = true;
		e->dirty_size = 0;
		e->dirty_size_valid = true;
		return 0;
	}
	rc = buf_reserve(h, rec.value_len, SIZE_MAX);
	if (rc) return rc;
	if (rec.value_len) memcpy(h->buf, rec.value, rec.value_len);
	h->len = rec.value_len;
	return 0;
}

/* Sends the open (or create, with an entry) reply of a loaded handle whose open is counted on
 * e. Takes h's reference. */
static void send_opened(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, fh_t *h, inotab_entry_t *e,
                        struct fuse_file_info *fi, bool create)
{
	int rc;
	if (create) {
		struct stat st;
		if (e->provisional || stat_ino(d, e->ino, &st) != 0) prov_stat(e, &st);
		struct fuse_entry_param ep;
		fill_entry(&ep, &st);
		inotab_ref(e, 1);
		rc = fuse_reply_create(req, &ep, fi);
		if (rc) e->nlookup--; /* the kernel never got it */
	} else {
		rc = fuse_reply_open(req, fi);
	}
	ms_record_op(d, op, t0, 0);
	if (rc) { /* the request was interrupted: no release will come */
		ms_fh_unref(d, h);
		inotab_close(d->tab, e);
	}
}

/* Replies open (or create, with an entry for key) for a loaded handle. Takes h's reference. */
static void reply_opened(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, fh_t *h, inotab_entry_t *e,
                         struct fuse_file_info *fi, bool create)
{
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->direct_io = 0;
	fi->keep_cache = 0;
	fi->nonseekable = 0;
	fi->noflush = (fi->flags & O_ACCMODE) == O_RDONLY;
	bool stale = !e->provisional && h->mod_revision != e->reported_mod_revision;
	inotab_open(e); /* also keeps e alive while the reply waits */
	if (stale) {
		/* The record changed since the kernel last saw its attributes, and the invalidation
		 * thread may not have told it yet: a stale i_size would cut reads short. The reply
		 * waits until that thread has invalidated them; no notify call is made here (a
		 * notify inside a handler, on the loop thread, is how fusefloor's deadlocks begin). */
		e->reported_mod_revision = h->mod_revision;
		pending_t *p = d->inval && !d->stopping ? ms_pending_new(d, P_OPEN_REPLY, op, req, t0) : NULL;
		if (p) {
			p->owner = d;
			p->fh = h;
			p->ino = e->ino;
			p->fi = *fi;
			p->create = create;
			if (inval_attr_then(d->inval, e->ino, ms_open_reply_ready, p) == 0) return;
			p->fh = NULL;
			ms_pending_free(d, p);
		}
	}
	send_opened(d, req, op, t0, h, e, fi, create);
}

void ms_complete_open_reply(ms_t *d, pending_t *p)
{
	assert(p->kind == P_OPEN_REPLY && p->fh);
	fh_t *h = p->fh;
	p->fh = NULL;                                   /* its reference goes to the kernel */
	inotab_entry_t *e = inotab_get(d->tab, p->ino); /* alive: the open counted on it */
	assert(e);
	send_opened(d, p->req, p->op, p->t0_ns, h, e, &p->fi, p->create);
	ms_pending_free(d, p);
}

/* Parks an open of ino until the commits its release started are applied, so a close()
 * followed by an open on this node reads what the close left. True if parked. */
static bool wait_for_release_commits(ms_t *d, pend_kind_t kind, fuse_req_t req, ms_op_t op, uint64_t t0,
                                     fh_t *h, const struct fuse_file_info *fi, uint64_t ino, const char *key,
                                     size_t key_len, uint32_t mode, uint32_t uid, uint32_t gid)
{
	inotab_entry_t *e = inotab_get(d->tab, ino);
	if (!e || e->commits_inflight == 0 || d->n_waiters >= MS_PENDING_MAX) return false;
	pending_t *p = ms_pending_new(d, kind, op, req, t0);
	if (!p) return false;
	if (key && !(p->key = strndup(key, key_len))) {
		ms_pending_free(d, p);
		return false;
	}
	p->key_len = key_len;
	p->fh = h; /* takes the caller's reference */
	p->ino = ino;
	p->fi = *fi;
	p->mode = mode, p->uid = uid, p->gid = gid;
	p->next = d->waiters;
	d->waiters = p;
	d->n_waiters++;
	return true;
}

static void open_existing(ms_t *d, fuse_req_t req, ms_op_t op, uint64_t t0, fh_t *h,
                          struct fuse_file_info *fi, bool create)
{
	if (wait_for_release_commits(d, P_OPEN, req, op, t0, h, fi, h->ino, NULL, 0, 0, 0, 0)) return;
	inotab_entry_t *e = NULL;
	int rc = load_handle(d, h, &e);
	if (rc) {
		ms_fh_unref(d, h);
		return reply_err(d, req, op, t0, rc);
	}
	reply_opened(d, req, op, t0, h, e, fi, create);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (ms_ctl_is(ino)) {
		fh_t *h = NULL;
		int rc = ms_ctl_open(d, ino, fi->flags, &h);
		if (rc) return reply_err(d, req, MS_OP_OPEN, t0, rc);
		fi->fh = (uint64_t)(uintptr_t)h;
		fi->direct_io = 1;
		fi->keep_cache = 0;
		ms_record_op(d, MS_OP_OPEN, t0, 0);
		if (fuse_reply_open(req, fi) != 0) ms_fh_unref(d, h);
		return;
	}
	inotab_entry_t *e = NULL;
	if (from_replay(d, req)) { /* the record may be gone already: the kernel's nodeid is what counts */
		int rc = inotab_get_or_add(d->tab, ino, &e);
		if (rc) return reply_err(d, req, MS_OP_OPEN, t0, rc);
		return replay_open_reply(d, req, MS_OP_OPEN, t0, e, NULL, fi);
	}
	e = inotab_get(d->tab, ino);
	if (!e || !e->key) return reply_err(d, req, MS_OP_OPEN, t0, -ENOENT);
	fh_t *h = ms_fh_new(d, FH_FILE, ino);
	if (!h) return reply_err(d, req, MS_OP_OPEN, t0, -ENOMEM);
	h->open_flags = fi->flags;
	h->append = (fi->flags & O_APPEND) != 0;
	if (e->provisional || skip_barrier(d, fi->flags))
		return open_existing(d, req, MS_OP_OPEN, t0, h, fi, false);
	pending_t *p = ms_pending_new(d, P_OPEN, MS_OP_OPEN, req, t0);
	if (!p) {
		ms_fh_unref(d, h);
		return reply_err(d, req, MS_OP_OPEN, t0, -ENOMEM);
	}
	p->fh = h;
	p->ino = ino;
	p->fi = *fi;
	int rc = ms_read_barrier(d, p);
	if (rc) {
		ms_pending_free(d, p);
		reply_err(d, req, MS_OP_OPEN, t0, rc);
	}
}

/* Creates the provisional inode for key and replies create. */
static void create_provisional(ms_t *d, fuse_req_t req, uint64_t t0, const keybuf_t *k, uint32_t mode,
                               uint32_t uid, uint32_t gid, fh_t *h, struct fuse_file_info *fi)
{
	/* the parent must exist as a directory now; the commit checks again */
	size_t plen = k->len;
	while (plen > 0 && k->s[plen - 1] != '/')
		plen--;
	plen = plen ? plen - 1 : 0;
	sm_record_t prec;
	int rc = sm_get(d->sm, k->s, plen, &prec);
	if (rc == 0 && prec.kind != SM_KIND_DIR) rc = -ENOTDIR;
	inotab_entry_t *e = NULL;
	if (rc == 0) rc = inotab_hook(d->tab, ms_next_provisional_ino(d), k->s, k->len, &e);
	if (rc) {
		ms_fh_unref(d, h);
		return reply_err(d, req, MS_OP_CREATE, t0, rc);
	}
	int64_t now = ms_realtime_ns();
	inotab_set_provisional(d->tab, e, true);
	e->mode = S_IFREG | (mode & 07777);
	e->uid = uid;
	e->gid = gid;
	e->mtime_ns = e->ctime_ns = now;
	e->size = 0;
	e->create_revision = 0;
	e->dirty_size = 0;
	e->dirty_size_valid = true;
	h->ino = e->ino;
	h->mode = e->mode, h->uid = uid, h->gid = gid, h->mtime_ns = h->ctime_ns = now;
	h->len = 0;
	h->dirty = true; /* a flush after a write, an fsync or the release creates the file */
	d->stats.provisional_creates++;
	reply_opened(d, req, MS_OP_CREATE, t0, h, e, fi, true);
}

/* O_CREAT without O_EXCL, after the barrier if one was needed: open what exists, else create. */
static void create_resolve(ms_t *d, fuse_req_t req, uint64_t t0, const keybuf_t *k, uint32_t mode,
                           uint32_t uid, uint32_t gid, fh_t *h, struct fuse_file_info *fi)
{
	sm_record_t rec;
	int rc = sm_get(d->sm, k->s, k->len, &rec);
	uint64_t nodeid = rc == 0 ? ms_nodeid_of(d, k->s, k->len, rec.ino) : 0;
	if (rc == 0 && wait_for_release_commits(d, P_CREATE_OPEN, req, MS_OP_CREATE, t0, h, fi, nodeid, k->s,
	                                        k->len, mode, uid, gid))
		return;
	if (rc == 0) {
		inotab_entry_t *e = NULL;
		rc = inotab_hook(d->tab, nodeid, k->s, k->len, &e);
		if (rc) {
			ms_fh_unref(d, h);
			return reply_err(d, req, MS_OP_CREATE, t0, rc);
		}
		h->ino = nodeid;
		rc = load_handle(d, h, &e);
		if (rc) {
			inotab_forget(d->tab, nodeid, 0);
			ms_fh_unref(d, h);
			return reply_err(d, req, MS_OP_CREATE, t0, rc);
		}
		return reply_opened(d, req, MS_OP_CREATE, t0, h, e, fi, true);
	}
	if (rc != -ENOENT) {
		ms_fh_unref(d, h);
		return reply_err(d, req, MS_OP_CREATE, t0, rc);
	}
	inotab_entry_t *pe = inotab_find_key(d->tab, k->s, k->len);
	if (pe && pe->provisional) { /* another open created it here: share it */
		h->ino = pe->ino;
		return open_existing(d, req, MS_OP_CREATE, t0, h, fi, true);
	}
	create_provisional(d, req, t0, k, mode, uid, gid, h, fi);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	if (is_reserved(parent, name))
		return reply_err(d, req, MS_OP_CREATE, t0, (fi->flags & O_EXCL) ? -EEXIST : -EISDIR);
	if (ms_ctl_is(parent)) {
		struct fuse_entry_param ep;
		if (ms_ctl_lookup(d, parent, name, &ep) != 0)
			return reply_err(d, req, MS_OP_CREATE, t0, -EACCES);
		if (fi->flags & O_EXCL) return reply_err(d, req, MS_OP_CREATE, t0, -EEXIST);
		fh_t *h = NULL;
		int rc = ms_ctl_open(d, ep.ino, fi->flags, &h);
		if (rc) return reply_err(d, req, MS_OP_CREATE, t0, rc);
		fi->fh = (uint64_t)(uintptr_t)h;
		fi->direct_io = 1;
		ms_record_op(d, MS_OP_CREATE, t0, 0);
		if (fuse_reply_create(req, &ep, fi) != 0) ms_fh_unref(d, h);
		return;
	}
	if (from_replay(d, req)) return replay_create(d, req, parent, name, fi, t0);
	if (!S_ISREG(mode)) return reply_err(d, req, MS_OP_CREATE, t0, -EPERM);
	if (fi->flags & O_EXCL) {
		sm_op_t o = {.type = SM_OP_CREATE, .flags = SM_F_EXCL, .mode = mode & 07777};
		return propose_create(d, req, MS_OP_CREATE, t0, parent, name, &o, P_CREATE_EXCL, fi);
	}
	keybuf_t k;
	int rc = child_key(d, parent, name, &k);
	if (rc) return reply_err(d, req, MS_OP_CREATE, t0, rc);
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	fh_t *h = ms_fh_new(d, FH_FILE, 0);
	if (!h) return reply_err(d, req, MS_OP_CREATE, t0, -ENOMEM);
	h->open_flags = fi->flags;
	h->append = (fi->flags & O_APPEND) != 0;
	if (skip_barrier(d, fi->flags))
		return create_resolve(d, req, t0, &k, mode, ctx->uid, ctx->gid, h, fi);
	pending_t *p = ms_pending_new(d, P_CREATE_OPEN, MS_OP_CREATE, req, t0);
	if (!p || !(p->key = strndup(k.s, k.len))) {
		ms_pending_free(d, p);
		ms_fh_unref(d, h);
		return reply_err(d, req, MS_OP_CREATE, t0, -ENOMEM);
	}
	p->key_len = k.len;
	p->fh = h;
	p->fi = *fi;
	p->mode = mode;
	p->uid = ctx->uid;
	p->gid = ctx->gid;
	rc = ms_read_barrier(d, p);
	if (rc) {
		ms_pending_free(d, p);
		reply_err(d, req, MS_OP_CREATE, t0, rc);
	}
}

/* ------------------------------------------------------------------ read, write, flush */

static void reply_slice(fuse_req_t req, const uint8_t *buf, size_t len, size_t size, uint64_t off)
{
	if (off >= len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size_t n = len - (size_t)off;
	if (n > size) n = size;
	fuse_reply_buf(req, (const char *)buf + off, n);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)ino;
	fh_t *h = fh_of(fi);
	if (!h || h->kind == FH_DIR) return reply_err(d, req, MS_OP_READ, t0, -EBADF);
	if (off < 0) return reply_err(d, req, MS_OP_READ, t0, -EINVAL);
	if (h->kind == FH_TXN) return ms_ctl_txn_read(d, req, h, size, (uint64_t)off, t0);
	ms_record_op(d, MS_OP_READ, t0, 0);
	reply_slice(req, h->buf, h->len, size, (uint64_t)off);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	fh_t *h = fh_of(fi);
	if (!h || h->kind == FH_DIR || h->kind == FH_STATUS)
		return reply_err(d, req, MS_OP_WRITE, t0, -EBADF);
	if (off < 0) return reply_err(d, req, MS_OP_WRITE, t0, -EINVAL);
	if (h->kind == FH_TXN) {
		int rc = ms_ctl_txn_write(d, h, buf, size, (uint64_t)off);
		if (rc) return reply_err(d, req, MS_OP_WRITE, t0, rc);
		ms_record_op(d, MS_OP_WRITE, t0, 0);
		fuse_reply_write(req, size);
		return;
	}
	if (h->replay) { /* the state machine has the data; the write only made the kernel's events */
		ms_record_op(d, MS_OP_WRITE, t0, 0);
		fuse_reply_write(req, size);
		return;
	}
	if (h->poisoned) return reply_err(d, req, MS_OP_WRITE, t0, -EFBIG);
	uint64_t at = h->append ? h->len : (uint64_t)off;
	if (at > d->opt.value_bytes_max || size > d->opt.value_bytes_max - at) {
		h->poisoned = true;
		return reply_err(d, req, MS_OP_WRITE, t0, -EFBIG);
	}
	size_t end = (size_t)at + size;
	if (end > h->len) {
		int rc = buf_resize(h, end, d->opt.value_bytes_max);
		if (rc) return reply_err(d, req, MS_OP_WRITE, t0, rc);
	}
	if (size) memcpy(h->buf + at, buf, size);
	h->dirty = h->written = true;
	inotab_entry_t *e = inotab_get(d->tab, ino);
	if (e && e->key) {
		e->dirty_size = h->len;
		e->dirty_size_valid = true;
		if (e->provisional) e->size = h->len, e->mtime_ns = ms_realtime_ns();
	}
	ms_record_op(d, MS_OP_WRITE, t0, 0);
	fuse_reply_write(req, size);
}

typedef enum commit_why { WHY_FLUSH, WHY_FSYNC, WHY_RELEASE } commit_why_t;

static void drop_provisional(ms_t *d, inotab_entry_t *e);

/* Commits a file handle's data if this occasion calls for it: a FLUSH only after a write (the
 * shell's open; dup2; close; write; close sends one FLUSH before writing: committing there
 * would cost two commits for `echo v > f` and show an empty file in between), an FSYNC
 * whenever the handle differs from the store, a release when a truncation or a creation was
 * never committed (`touch new`, `: > f`) and no commit failed before. Returns 1 if the reply
 * (for a release: the entry's close) comes from ms_complete, else 0 or -errno to reply now. */
static int commit_handle(ms_t *d, fuse_req_t req, fh_t *h, ms_op_t op, uint64_t t0, commit_why_t why)
{
	if (h->kind != FH_FILE || h->replay) return 0;
	if (h->poisoned) return why == WHY_RELEASE ? 0 : -EFBIG;
	if (!h->dirty) return 0;
	if (why == WHY_FLUSH && !h->written) return 0;
	if (why == WHY_RELEASE && h->failed) return 0;
	inotab_entry_t *e = inotab_get(d->tab, h->ino);
	if (!e || !e->key) { /* unlinked or replaced while open: the data has no name to go to */
		h->dirty = h->written = false;
		return 0;
	}
	sm_op_t o = {.type = SM_OP_WRITE,
	             .key = e->key,
	             .key_len = e->key_len,
	             .value = h->buf ? h->buf : (const uint8_t *)"",
	             .value_len = h->len};
	sm_compare_t c = {.target = SM_CMP_CREATE,
	                  .op = SM_CMP_EQ,
	                  .key = e->key,
	                  .key_len = e->key_len,
	                  .number = e->create_revision};
	sm_op_t ops[2] = {o};
	sm_txn_t txn = {.flags = SM_TXN_FROM_FS | SM_TXN_OPEN_WRITE, .n_success = 1, .success = ops};
	if (e->provisional) {
		ops[0].flags = SM_F_CREATE;
		ops[0].ino = e->ino;
		ops[0].mode = e->mode & 07777;
		ops[0].uid = e->uid;
		ops[0].gid = e->gid;
		if (e->attrib_set) { /* touch [-d]: the times it set, and the replays show its ATTRIB */
			txn.flags |= SM_TXN_ATTRIB_OPEN;
			ops[1] = (sm_op_t){.type = SM_OP_SETATTR,
			                   .key = e->key,
			                   .key_len = e->key_len,
			                   .attr_mask = SM_ATTR_MTIME,
			                   .mtime_ns = e->mtime_ns};
			txn.n_success = 2;
		}
	} else if (e->create_revision > 0) {
		txn.n_compare = 1;
		txn.compares = &c;
	}
	pending_t *p = ms_pending_new(d, P_FLUSH, op, req, t0);
	if (!p) return -ENOMEM;
	p->fh = h;
	p->ino = h->ino;
	p->release = why == WHY_RELEASE;
	h->refs++;
	h->dirty = h->written = false;
	int rc = ms_propose(d, &txn, p);
	if (rc) {
		h->dirty = h->written = h->failed = true;
		ms_pending_free(d, p);
		return rc;
	}
	if (p->release) e->commits_inflight++;
	return 1;
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)ino;
	fh_t *h = fh_of(fi);
	if (!h) return reply_err(d, req, MS_OP_FLUSH, t0, -EBADF);
	if (h->poisoned && h->kind == FH_FILE) { /* a new file that failed EFBIG never existed */
		inotab_entry_t *e = inotab_get(d->tab, h->ino);
		if (e && e->provisional) drop_provisional(d, e);
	}
	int rc = commit_handle(d, req, h, MS_OP_FLUSH, t0, WHY_FLUSH);
	if (rc <= 0) reply_err(d, req, MS_OP_FLUSH, t0, rc);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)ino, (void)datasync;
	fh_t *h = fh_of(fi);
	if (!h) return reply_err(d, req, MS_OP_FSYNC, t0, -EBADF);
	int rc = commit_handle(d, req, h, MS_OP_FSYNC, t0, WHY_FSYNC);
	if (rc <= 0) reply_err(d, req, MS_OP_FSYNC, t0, rc);
}

/* A provisional file whose last handle goes without a commit: it never existed. */
static void drop_provisional(ms_t *d, inotab_entry_t *e)
{
	sm_event_t ev = {.type = SM_EV_DELETE, .key = e->key, .key_len = e->key_len};
	fs_change_t c = {.ev = &ev, .local = false};
	c.parent_ino = ms_parent_ino(d, e->key, e->key_len, &c.name, &c.name_len);
	for (uint32_t i = 0; i < d->n_sinks; i++)
		d->sinks[i].push(d->sinks[i].ctx, &c);
	inotab_unhook(d->tab, e);
}

/* The last step of a file handle's life on an entry: after the release, or after the commit
 * the release started. */
static void close_entry(ms_t *d, inotab_entry_t *e)
{
	if (e->open_count == 1) {
		if (e->provisional)
			drop_provisional(d, e);
		else
			e->dirty_size_valid = false;
	}
	inotab_close(d->tab, e);
}

/* Resumes the opens that waited for ino's release commits. */
static void resume_waiters(ms_t *d, uint64_t ino)
{
	pending_t *ready = NULL;
	for (pending_t **pp = &d->waiters; *pp;) {
		pending_t *p = *pp;
		if (p->ino == ino) {
			*pp = p->next;
			d->n_waiters--;
			p->next = ready;
			ready = p;
		} else {
			pp = &p->next;
		}
	}
	while (ready) {
		pending_t *p = ready;
		ready = p->next;
		p->next = NULL;
		ms_complete_read(d, p, 0);
	}
}

void ms_fail_all_waiters(ms_t *d, int err)
{
	while (d->waiters) {
		pending_t *p = d->waiters;
		d->waiters = p->next;
		d->n_waiters--;
		p->next = NULL;
		ms_complete_read(d, p, err);
	}
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	fh_t *h = fh_of(fi);
	if (h) {
		h->released = true;
		if (h->kind == FH_FILE) {
			inotab_entry_t *e = inotab_get(d->tab, ino);
			int rc = commit_handle(d, NULL, h, MS_OP_RELEASE, t0, WHY_RELEASE);
			if (rc < 0)
				ms_log(d, LOG_WARN, "release of ino %llu: commit failed: %s",
				       (unsigned long long)ino, strerror(-rc));
			if (rc != 1 && e) close_entry(d, e);
		}
		ms_fh_unref(d, h);
	}
	reply_err(d, req, MS_OP_RELEASE, t0, 0);
}

/* ------------------------------------------------------------------ directories */

int ms_dir_push(fh_t *h, const char *name, size_t name_len, uint64_t ino, uint32_t mode)
{
	if (h->n_ents == h->cap_ents) {
		size_t cap = h->cap_ents ? h->cap_ents * 2 : 32;
		dir_ent_t *v = realloc(h->ents, cap * sizeof *v);
		if (!v) return -ENOMEM;
		h->ents = v;
		h->cap_ents = cap;
	}
	if (h->names_len + name_len + 1 > h->names_cap) {
		size_t cap = h->names_cap ? h->names_cap * 2 : 1024;
		while (cap < h->names_len + name_len + 1)
			cap *= 2;
		if (cap > UINT32_MAX) return -EFBIG;
		char *v = realloc(h->names, cap);
		if (!v) return -ENOMEM;
		h->names = v;
		h->names_cap = cap;
	}
	dir_ent_t *de = &h->ents[h->n_ents++];
	de->ino = ino;
	de->mode = mode;
	de->name_off = (uint32_t)h->names_len;
	de->name_len = (uint16_t)name_len;
	memcpy(h->names + h->names_len, name, name_len);
	h->names[h->names_len + name_len] = '\0';
	h->names_len += name_len + 1;
	return 0;
}

/* Names a listing leaves out (watch/: created elsewhere, not replayed yet), sorted. */
typedef struct hidden_names {
	char *buf; /* the names, NUL-terminated one after the other */
	size_t len, cap, count;
	const char **v; /* count pointers into buf, sorted */
	int rc;
} hidden_names_t;

static void hidden_add(void *ctx, const char *name, size_t name_len)
{
	hidden_names_t *hn = ctx; /* called under watch/'s mutex: no watch_* calls here */
	if (hn->rc) return;
	if (hn->len + name_len + 1 > hn->cap) {
		size_t cap = hn->cap ? hn->cap * 2 : 1024;
		while (cap < hn->len + name_len + 1)
			cap *= 2;
		char *b = realloc(hn->buf, cap);
		if (!b) {
			hn->rc = -ENOMEM;
			return;
		}
		hn->buf = b;
		hn->cap = cap;
	}
	memcpy(hn->buf + hn->len, name, name_len);
	hn->buf[hn->len + name_len] = '\0';
	hn->len += name_len + 1;
	hn->count++;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

typedef struct name_key {
	const char *s;
	size_t len;
} name_key_t;

static int cmp_name_key(const void *key, const void *elem)
{
	const name_key_t *k = key;
	const char *e = *(const char *const *)elem;
	int c = strncmp(k->s, e, k->len);
	return c ? c : (e[k->len] == '\0' ? 0 : -1);
}

/* Collects and sorts the hidden names of directory key. 0 or -ENOMEM. */
static int hidden_collect(ms_t *d, const char *key, size_t key_len, hidden_names_t *hn)
{
	memset(hn, 0, sizeof *hn);
	if (!d->watch || watch_hidden_children(d->watch, key, key_len, hidden_add, hn) == 0) return hn->rc;
	if (hn->rc) return hn->rc;
	hn->v = malloc(hn->count * sizeof *hn->v);
	if (!hn->v) return -ENOMEM;
	size_t at = 0;
	for (size_t i = 0; i < hn->count; i++) {
		hn->v[i] = hn->buf + at;
		at += strlen(hn->buf + at) + 1;
	}
	qsort(hn->v, hn->count, sizeof *hn->v, cmp_names);
	return 0;
}

static bool hidden_has(const hidden_names_t *hn, const char *name, size_t name_len)
{
	if (!hn->v) return false;
	name_key_t k = {.s = name, .len = name_len};
	return bsearch(&k, hn->v, hn->count, sizeof *hn->v, cmp_name_key) != NULL;
}

typedef struct list_ctx {
	ms_t *d;
	fh_t *h;
	const hidden_names_t *hidden;
	int rc;
} list_ctx_t;

static int list_cb(void *ctx, const char *name, size_t name_len, const sm_record_t *rec)
{
	list_ctx_t *lc = ctx;
	uint64_t ino = rec->ino;
	if (hidden_has(lc->hidden, name, name_len))
		return 0; /* created elsewhere, not replayed yet: this kernel must not know it */
	if (lc->d->stats.ino_mismatches > 0 && lc->h->dir_key_len + 1 + name_len <= SM_KEY_BYTES_MAX) {
		keybuf_t k; /* only while aliases may exist (see commit.c) */
		size_t at = 0;
		if (lc->h->dir_key_len) {
			memcpy(k.s, lc->h->dir_key, lc->h->dir_key_len);
			k.s[lc->h->dir_key_len] = '/';
			at = lc->h->dir_key_len + 1;
		}
		memcpy(k.s + at, name, name_len);
		ino = ms_nodeid_of(lc->d, k.s, at + name_len, rec->ino);
	}
	lc->rc = ms_dir_push(lc->h, name, name_len, ino, rec->mode);
	return lc->rc ? 1 : 0;
}

static int snapshot_dir(ms_t *d, fh_t *h, inotab_entry_t *e, const sm_record_t *rec)
{
	h->dir_key = strndup(e->key, e->key_len);
	if (!h->dir_key) return -ENOMEM;
	h->dir_key_len = e->key_len;
	uint64_t parent_ino = FUSE_ROOT_ID;
	if (e->key_len) {
		const char *nm;
		size_t nl;
		uint64_t pi = ms_parent_ino(d, e->key, e->key_len, &nm, &nl);
		if (pi) parent_ino = pi;
	}
	int rc = ms_dir_push(h, ".", 1, rec->ino, rec->mode);
	if (rc == 0) rc = ms_dir_push(h, "..", 2, parent_ino, S_IFDIR | 0755);
	if (rc == 0 && e->key_len == 0)
		rc = ms_dir_push(h, SM_CONTROL_DIR, strlen(SM_CONTROL_DIR), MS_CTL_DIR_INO, S_IFDIR | 0555);
	if (rc) return rc;
	hidden_names_t hn;
	rc = hidden_collect(d, e->key, e->key_len, &hn);
	list_ctx_t lc = {.d = d, .h = h, .hidden = &hn};
	if (rc == 0) rc = sm_list(d->sm, e->key, e->key_len, NULL, 0, list_cb, &lc);
	if (rc == 0) rc = lc.rc;
	free(hn.buf);
	free(hn.v);
	if (rc) return rc;
	/* provisional files in this directory (few: files being written right now) */
	for (inotab_entry_t *pe = inotab_next_provisional(d->tab, NULL); pe;
	     pe = inotab_next_provisional(d->tab, pe)) {
		const char *nm;
		size_t nl, plen = pe->key_len;
		while (plen > 0 && pe->key[plen - 1] != '/')
			plen--;
		nm = pe->key + plen;
		nl = pe->key_len - plen;
		plen = plen ? plen - 1 : 0;
		if (plen != e->key_len || memcmp(pe->key, e->key, plen) != 0) continue;
		if ((rc = ms_dir_push(h, nm, nl, pe->ino, pe->mode))) return rc;
	}
	return 0;
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	fh_t *h = ms_fh_new(d, FH_DIR, ino);
	if (!h) return reply_err(d, req, MS_OP_OPENDIR, t0, -ENOMEM);
	int rc;
	if (ms_ctl_is(ino)) {
		rc = ino == MS_CTL_DIR_INO ? ms_ctl_readdir_snapshot(d, h) : -ENOTDIR;
	} else {
		inotab_entry_t *e = NULL;
		sm_record_t rec;
		rc = get_rec(d, ino, &e, &rec);
		if (rc == -EAGAIN) rc = -ENOTDIR;
		if (rc == 0 && rec.kind != SM_KIND_DIR) rc = -ENOTDIR;
		if (rc == 0) rc = snapshot_dir(d, h, e, &rec);
	}
	if (rc) {
		ms_fh_unref(d, h);
		return reply_err(d, req, MS_OP_OPENDIR, t0, rc);
	}
	fi->fh = (uint64_t)(uintptr_t)h;
	fi->cache_readdir = 0;
	fi->keep_cache = 0;
	ms_record_op(d, MS_OP_OPENDIR, t0, 0);
	if (fuse_reply_open(req, fi) != 0) ms_fh_unref(d, h);
}

/* readdirplus attributes of one snapshot entry; *hook_ino set when the entry hands the kernel
 * a nodeid that needs a lookup reference. */
static void plus_entry(ms_t *d, fh_t *h, const dir_ent_t *de, const char *name, struct fuse_entry_param *ep,
                       inotab_entry_t **hooked)
{
	memset(ep, 0, sizeof *ep);
	ep->attr.st_ino = de->ino;
	ep->attr.st_mode = de->mode;
	*hooked = NULL;
	if ((de->name_len == 1 && name[0] == '.') || (de->name_len == 2 && name[0] == '.' && name[1] == '.'))
		return;
	if (ms_ctl_is(de->ino)) {
		if (ms_ctl_lookup(d, h->ino == MS_CTL_DIR_INO ? MS_CTL_DIR_INO : FUSE_ROOT_ID, name, ep) !=
		    0) {
			memset(ep, 0, sizeof *ep);
			ep->attr.st_ino = de->ino;
			ep->attr.st_mode = de->mode;
		}
		return;
	}
	inotab_entry_t *dirent = inotab_get(d->tab, h->ino);
	const char *dk = dirent && dirent->key ? dirent->key : h->dir_key;
	size_t dkl = dirent && dirent->key ? dirent->key_len : h->dir_key_len;
	keybuf_t k;
	if (dkl + 1 + de->name_len > SM_KEY_BYTES_MAX) return;
	size_t at = 0;
	if (dkl) {
		memcpy(k.s, dk, dkl);
		k.s[dkl] = '/';
		at = dkl + 1;
	}
	memcpy(k.s + at, name, de->name_len);
	k.len = at + de->name_len;
	k.s[k.len] = '\0';
	struct stat st;
	sm_record_t rec;
	if (sm_get(d->sm, k.s, k.len, &rec) == 0) {
		inotab_entry_t *re = inotab_get(d->tab, de->ino);
		if (!ms_entry_is_rec(re, rec.ino) && rec.ino != de->ino) return;
		rec_stat(&rec, re, &st);
	} else {
		inotab_entry_t *pe = inotab_find_key(d->tab, k.s, k.len);
		if (!pe || !pe->provisional || pe->ino != de->ino) return;
		prov_stat(pe, &st);
	}
	inotab_entry_t *e = NULL;
	if (inotab_hook(d->tab, st.st_ino, k.s, k.len, &e) != 0) return;
	fill_entry(ep, &st);
	*hooked = e;
}

static void do_readdir(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi, bool plus)
{
	ms_t *d = D(req);
	ms_op_t op = plus ? MS_OP_READDIRPLUS : MS_OP_READDIR;
	uint64_t t0 = ms_now_ns();
	fh_t *h = fh_of(fi);
	if (!h || h->kind != FH_DIR) return reply_err(d, req, op, t0, -EBADF);
	if (off < 0) return reply_err(d, req, op, t0, -EINVAL);
	if (size > (1u << 20)) size = 1u << 20;
	char *buf = malloc(size ? size : 1);
	if (!buf) return reply_err(d, req, op, t0, -ENOMEM);
	size_t pos = 0;
	for (size_t i = (size_t)off; i < h->n_ents; i++) {
		const dir_ent_t *de = &h->ents[i];
		const char *name = h->names + de->name_off;
		size_t n;
		if (!plus) {
			struct stat st = {.st_ino = de->ino, .st_mode = de->mode};
			n = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(i + 1));
			if (n > size - pos) break;
		} else {
			struct fuse_entry_param ep;
			inotab_entry_t *e = NULL;
			plus_entry(d, h, de, name, &ep, &e);
			n = fuse_add_direntry_plus(req, buf + pos, size - pos, name, &ep, (off_t)(i + 1));
			if (n > size - pos) {
				if (e) inotab_forget(d->tab, e->ino, 0);
				break;
			}
			if (e) inotab_ref(e, 1);
		}
		pos += n;
	}
	ms_record_op(d, op, t0, 0);
	fuse_reply_buf(req, buf, pos);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
	(void)ino;
	do_readdir(req, size, off, fi, true);
}

static void op_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)ino;
	fh_t *h = fh_of(fi);
	if (h) {
		h->released = true;
		ms_fh_unref(d, h);
	}
	reply_err(d, req, MS_OP_RELEASEDIR, t0, 0);
}

static void op_fsyncdir(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)ino, (void)datasync, (void)fi;
	reply_err(D(req), req, MS_OP_FSYNCDIR, ms_now_ns(), 0); /* directory changes commit before replying */
}

/* ------------------------------------------------------------------ statfs, xattr, access */

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)ino;
	struct statvfs sv, disk;
	memset(&sv, 0, sizeof sv);
	uint64_t avail_blocks = 0;
	if (statvfs(d->opt.data_dir, &disk) == 0)
		avail_blocks = (uint64_t)disk.f_bavail * disk.f_frsize / 4096u;
	uint64_t used_blocks = (sm_data_bytes(d->sm) + 4095u) / 4096u;
	uint64_t keys = sm_key_count(d->sm);
	sv.f_bsize = 4096;
	sv.f_frsize = 4096;
	sv.f_blocks = used_blocks + avail_blocks;
	sv.f_bfree = avail_blocks;
	sv.f_bavail = avail_blocks;
	sv.f_files = keys + avail_blocks;
	sv.f_ffree = avail_blocks;
	sv.f_favail = avail_blocks;
	sv.f_namemax = SM_NAME_BYTES_MAX;
	ms_record_op(d, MS_OP_STATFS, t0, 0);
	fuse_reply_statfs(req, &sv);
}

#define XATTR_CREATE_REV "user.metastore.create_revision"
#define XATTR_MOD_REV "user.metastore.mod_revision"
#define XATTR_VERSION "user.metastore.version"

static int xattr_text(ms_t *d, uint64_t ino, const char *name, char *out, size_t cap)
{
	/* The kernel asks security.capability before every write and O_TRUNC: answer names that
	 * are not ours without a record read. */
	if (strcmp(name, XATTR_CREATE_REV) && strcmp(name, XATTR_MOD_REV) && strcmp(name, XATTR_VERSION))
		return -ENODATA;
	if (ms_ctl_is(ino)) return -ENODATA;
	sm_record_t rec;
	int rc = get_rec(d, ino, NULL, &rec);
	if (rc == -EAGAIN) return -ENODATA;
	if (rc) return rc;
	int64_t v;
	if (!strcmp(name, XATTR_CREATE_REV))
		v = rec.create_revision;
	else if (!strcmp(name, XATTR_MOD_REV))
		v = rec.mod_revision;
	else if (!strcmp(name, XATTR_VERSION))
		v = rec.version;
	else
		return -ENODATA;
	return snprintf(out, cap, "%" PRId64, v);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	char v[32];
	int n = xattr_text(d, ino, name, v, sizeof v);
	if (n < 0) return reply_err(d, req, MS_OP_GETXATTR, t0, n);
	if (size == 0) {
		ms_record_op(d, MS_OP_GETXATTR, t0, 0);
		fuse_reply_xattr(req, (size_t)n);
		return;
	}
	if (size < (size_t)n) return reply_err(d, req, MS_OP_GETXATTR, t0, -ERANGE);
	ms_record_op(d, MS_OP_GETXATTR, t0, 0);
	fuse_reply_buf(req, v, (size_t)n);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	static const char names[] = XATTR_CREATE_REV "\0" XATTR_MOD_REV "\0" XATTR_VERSION "\0";
	size_t len = sizeof names - 1; /* the literal's own final NUL is not part of the list */
	sm_record_t rec;
	int rc = ms_ctl_is(ino) ? -EAGAIN : get_rec(d, ino, NULL, &rec);
	if (rc == -EAGAIN)
		len = 0;
	else if (rc)
		return reply_err(d, req, MS_OP_LISTXATTR, t0, rc);
	if (size == 0) {
		ms_record_op(d, MS_OP_LISTXATTR, t0, 0);
		fuse_reply_xattr(req, len);
		return;
	}
	if (size < len) return reply_err(d, req, MS_OP_LISTXATTR, t0, -ERANGE);
	ms_record_op(d, MS_OP_LISTXATTR, t0, 0);
	fuse_reply_buf(req, names, len);
}

static void op_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value, size_t size,
                        int flags)
{
	(void)ino, (void)name, (void)value, (void)size, (void)flags;
	reply_err(D(req), req, MS_OP_SETXATTR, ms_now_ns(), -ENOTSUP);
}

static void op_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
	(void)ino, (void)name;
	reply_err(D(req), req, MS_OP_REMOVEXATTR, ms_now_ns(), -ENOTSUP);
}

static void op_access(fuse_req_t req, fuse_ino_t ino, int mask)
{
	ms_t *d = D(req);
	uint64_t t0 = ms_now_ns();
	(void)mask;
	struct stat st;
	int rc = ms_ctl_is(ino) ? 0 : stat_ino(d, ino, &st);
	reply_err(d, req, MS_OP_ACCESS, t0, rc);
}

/* ------------------------------------------------------------------ deferred completions */

static void complete_entry(ms_t *d, pending_t *p, const sm_txn_result_t *res)
{
	const sm_record_t *r = res->n_ops > 0 && res->ops[0].has_rec ? &res->ops[0].rec : NULL;
	sm_record_t rec;
	if (!r && sm_get(d->sm, p->key, p->key_len, &rec) == 0) r = &rec;
	inotab_entry_t *e = NULL;
	int rc = r ? inotab_hook(d->tab, r->ino, p->key, p->key_len, &e) : -EIO;
	if (rc) {
		if (p->kind == P_CREATE_EXCL) p->fh->refs--; /* the kernel's reference never came */
		return reply_err(d, p->req, p->op, p->t0_ns, rc);
	}
	struct stat st;
	rec_stat(r, e, &st);
	if (p->kind == P_ENTRY) {
		struct fuse_entry_param ep;
		fill_entry(&ep, &st);
		inotab_ref(e, 1);
		ms_record_op(d, p->op, p->t0_ns, 0);
		if (fuse_reply_entry(p->req, &ep) != 0) inotab_forget(d->tab, e->ino, 1);
		return;
	}
	/* P_CREATE_EXCL: an empty file, opened; reply_opened takes the kernel's reference of h,
	 * ms_pending_free drops the pending's */
	fh_t *h = p->fh;
	h->ino = r->ino;
	fh_snap_rec(h, r);
	e->create_revision = r->create_revision;
	reply_opened(d, p->req, p->op, p->t0_ns, h, e, &p->fi, true);
}

void ms_complete(ms_t *d, pending_t *p, int err, const sm_txn_result_t *res)
{
	assert(d && p);
	int e = err ? err : (res ? res->err : -EIO);
	if (p->kind == P_CTL_TXN) {
		ms_ctl_txn_complete(d, p, err, res);
		ms_pending_free(d, p);
		return;
	}
	if (p->kind == P_FLUSH) {
		fh_t *h = p->fh;
		inotab_entry_t *ent = inotab_get(d->tab, p->ino);
		if (e) {
			h->dirty = h->written = h->failed = true;
		} else {
			h->failed = false;
			if (!res->succeeded)
				ms_log(d, LOG_DEBUG,
				       "commit of ino %llu: file replaced meanwhile, data dropped",
				       (unsigned long long)p->ino);
			if (ent && !h->dirty && ent->open_count <= 1) ent->dirty_size_valid = false;
		}
		if (p->release) {
			if (e)
				ms_log(d, LOG_WARN, "commit at release of ino %llu failed: %s",
				       (unsigned long long)p->ino, strerror(-e));
			if (ent) {
				assert(ent->commits_inflight > 0);
				ent->commits_inflight--;
				bool resume = ent->commits_inflight == 0;
				close_entry(d, ent);
				if (resume) resume_waiters(d, p->ino);
			}
		} else {
			reply_err(d, p->req, p->op, p->t0_ns, e);
		}
		ms_pending_free(d, p);
		return;
	}
	if (e) {
		if (p->kind == P_CREATE_EXCL && p->fh) p->fh->refs--; /* the kernel's reference never came */
		reply_err(d, p->req, p->op, p->t0_ns, e);
		ms_pending_free(d, p);
		return;
	}
	switch (p->kind) {
	case P_ERR:
		reply_err(d, p->req, p->op, p->t0_ns, 0);
		break;
	case P_ENTRY:
	case P_CREATE_EXCL:
		complete_entry(d, p, res);
		break;
	case P_ATTR: {
		const sm_record_t *r = res->n_ops > 0 && res->ops[0].has_rec ? &res->ops[0].rec : NULL;
		struct stat st;
		if (r) rec_stat(r, inotab_get(d->tab, p->ino), &st);
		int rc = r ? 0 : stat_ino(d, p->ino, &st);
		if (rc) {
			reply_err(d, p->req, p->op, p->t0_ns, rc);
			break;
		}
		ms_record_op(d, p->op, p->t0_ns, 0);
		fuse_reply_attr(p->req, &st, MS_TIMEOUT_S);
		break;
	}
	default:
		assert(0 && "not a commit");
		reply_err(d, p->req, p->op, p->t0_ns, -EIO);
	}
	ms_pending_free(d, p);
}

void ms_complete_read(ms_t *d, pending_t *p, int status)
{
	assert(p->kind == P_OPEN || p->kind == P_CREATE_OPEN || p->kind == P_LOOKUP);
	if (p->kind == P_LOOKUP) {
		/* a failed barrier (no quorum) still answers from local state */
		if (status == 0 || status == -ETIMEDOUT)
			lookup_again(d, p);
		else
			reply_err(d, p->req, p->op, p->t0_ns, -ENOENT);
		ms_pending_free(d, p);
		return;
	}
	fh_t *h = p->fh;
	p->fh = NULL; /* its reference moves on to the open */
	if (status) {
		ms_fh_unref(d, h);
		reply_err(d, p->req, p->op, p->t0_ns, status == -ESHUTDOWN ? -EIO : status);
	} else if (p->kind == P_OPEN) {
		open_existing(d, p->req, p->op, p->t0_ns, h, &p->fi, false);
	} else {
		keybuf_t k;
		if (p->key_len > SM_KEY_BYTES_MAX) {
			ms_fh_unref(d, h);
			reply_err(d, p->req, p->op, p->t0_ns, -ENAMETOOLONG);
		} else {
			memcpy(k.s, p->key, p->key_len);
			k.s[p->key_len] = '\0';
			k.len = p->key_len;
			create_resolve(d, p->req, p->t0_ns, &k, p->mode, p->uid, p->gid, h, &p->fi);
		}
	}
	ms_pending_free(d, p);
}

const struct fuse_lowlevel_ops ms_fuse_ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .setattr = op_setattr,
    .readlink = op_readlink,
    .mknod = op_mknod,
    .mkdir = op_mkdir,
    .unlink = op_unlink,
    .rmdir = op_rmdir,
    .symlink = op_symlink,
    .rename = op_rename,
    .link = op_link,
    .open = op_open,
    .read = op_read,
    .write = op_write,
    .flush = op_flush,
    .release = op_release,
    .fsync = op_fsync,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .releasedir = op_releasedir,
    .fsyncdir = op_fsyncdir,
    .statfs = op_statfs,
    .setxattr = op_setxattr,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
    .removexattr = op_removexattr,
    .access = op_access,
    .create = op_create,
};
