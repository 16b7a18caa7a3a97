/* daemon.h - metastored's internals, shared by the files of the daemon (main.c, commit.c,
 * fsops.c, ctl.c) and by nothing else: the daemon is one module split across files, and this
 * is its inside, not an interface.
 *
 * One libuv loop thread owns everything here: the FUSE session (uv_poll on its fd), the Raft
 * node, the state machine, the inode table, open handles and the table of requests waiting for
 * a commit or a read barrier. Nothing blocks: a request that needs the cluster is parked in the
 * pending table and answered from the apply callback (or on_read / on_propose_failed).
 */
#ifndef METASTORE_FS_DAEMON_H
#define METASTORE_FS_DAEMON_H

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include "changes.h"
#include "codec.h"
#include "engine.h"
#include "histo.h"
#include "inotab.h"
#include "inval.h"
#include "node.h"
#include "opts.h"
#include "sm.h"
#include "txnparse.h"
#include "watch.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Control files: fixed nodeids far above any record's (see fsops.c for the ino layout). */
#define MS_CTL_DIR_INO (UINT64_MAX - 16u)
#define MS_CTL_STATUS_INO (UINT64_MAX - 15u)
#define MS_CTL_TXN_INO (UINT64_MAX - 14u)
/* Entry and attribute timeouts handed to the kernel. Remote changes reach its caches through
 * inval.c at once and opens wait for a pending invalidation (fsops.c), so this only bounds how
 * long a dropped invalidation can leave a stat() stale; every expiry costs a GETATTR (with
 * default_permissions, on the next open's permission check). */
#define MS_TIMEOUT_S 10.0
#define MS_SINKS_MAX 4u
#define MS_PENDING_MAX 65536u /* requests waiting for a commit or a barrier */
#define MS_PENDING_BUCKETS 4096u
#define MS_FUSE_DRAIN_MAX 256u     /* requests handled per wakeup before yielding to the loop */
#define MS_APPLY_BLOBS_MAX 65536u  /* txns per Raft entry we accept (codec's batch bound) */
#define MS_LOOKUP_BARRIER_MS 1000u /* a negative lookup waits this long for its barrier at most */
#define MS_SWEEP_MS 100u

typedef enum ms_op {
	MS_OP_LOOKUP,
	MS_OP_FORGET,
	MS_OP_GETATTR,
	MS_OP_SETATTR,
	MS_OP_READLINK,
	MS_OP_MKNOD,
	MS_OP_MKDIR,
	MS_OP_UNLINK,
	MS_OP_RMDIR,
	MS_OP_SYMLINK,
	MS_OP_RENAME,
	MS_OP_LINK,
	MS_OP_OPEN,
	MS_OP_READ,
	MS_OP_WRITE,
	MS_OP_FLUSH,
	MS_OP_RELEASE,
	MS_OP_FSYNC,
	MS_OP_OPENDIR,
	MS_OP_READDIR,
	MS_OP_READDIRPLUS,
	MS_OP_RELEASEDIR,
	MS_OP_FSYNCDIR,
	MS_OP_STATFS,
	MS_OP_SETXATTR,
	MS_OP_GETXATTR,
	MS_OP_LISTXATTR,
	MS_OP_REMOVEXATTR,
	MS_OP_ACCESS,
	MS_OP_CREATE,
	MS_OP_COUNT
} ms_op_t;

const char *ms_op_name(ms_op_t op);

typedef struct ms_stats {
	uint64_t count[MS_OP_COUNT], errors[MS_OP_COUNT];
	histo_t latency_ns[MS_OP_COUNT];
	histo_t commit_ns;       /* propose -> local apply of this node's txns */
	histo_t read_barrier_ns; /* raft_node_read -> on_read */
	uint64_t commits, commit_errors, commit_timeouts, read_barriers, read_barrier_errors;
	uint64_t applied_entries, applied_txns, applied_events, bad_blobs, provisional_creates;
	uint64_t ctl_txns;
	uint64_t ino_mismatches; /* a provisional file committed under another ino (see commit.c) */
} ms_stats_t;

/* ------------------------------------------------------------------ open handles */

typedef enum fh_kind { FH_FILE = 1, FH_DIR, FH_STATUS, FH_TXN } fh_kind_t;

typedef struct dir_ent {
	uint64_t ino;
	uint32_t mode;
	uint32_t name_off; /* into dir names */
	uint16_t name_len;
} dir_ent_t;

typedef enum txn_state { TXN_IDLE = 0, TXN_RUNNING, TXN_DONE } txn_state_t;

typedef struct fh {
	fh_kind_t kind;
	uint64_t ino;
	uint32_t refs; /* the kernel's open + one per pending request that uses it */
	bool released; /* the kernel sent release */
	int open_flags;
	/* FH_FILE: the whole value; FH_STATUS: the text; FH_TXN: the txn text written so far */
	uint8_t *buf;
	size_t len, cap;
	bool dirty;   /* differs from what is committed (written, or an O_TRUNC / create not committed) */
	bool written; /* write() or ftruncate() since the last commit: a FLUSH commits only then */
	bool failed;  /* the last commit failed: a release does not retry it */
	bool poisoned, append;
	bool replay; /* opened by watch/'s replay thread: direct_io, writes and flushes ignored */
	/* FH_FILE: the record as of open, for fstat() after an unlink */
	int64_t mod_revision;
	uint32_t mode, uid, gid;
	int64_t mtime_ns, ctime_ns;
	/* FH_DIR: the listing snapshot taken at opendir */
	dir_ent_t *ents;
	size_t n_ents, cap_ents;
	char *names;
	size_t names_len, names_cap;
	char *dir_key; /* the listed directory's key */
	size_t dir_key_len;
	/* FH_TXN */
	txn_state_t txn_state;
	txnparse_txn_t txn;
	bool txn_parsed;
	char *out; /* the result text */
	size_t out_len;
	uint64_t out_base;      /* file offset of the result's first byte (the first read's offset) */
	struct fh *prev, *next; /* every live handle, for shutdown */
} fh_t;

/* ------------------------------------------------------------------ pending requests */

typedef enum pend_kind {
	P_ERR = 1,     /* reply errno only (unlink, rmdir, rename) */
	P_ENTRY,       /* reply an entry for key (mkdir, symlink, mknod) */
	P_CREATE_EXCL, /* reply create for key with fh (O_EXCL create) */
	P_ATTR,        /* reply attributes of ino (setattr) */
	P_FLUSH,       /* flush / fsync of fh */
	P_OPEN,        /* read barrier, then open ino with fh */
	P_CREATE_OPEN, /* read barrier, then open-or-create key (O_CREAT without O_EXCL) */
	P_CTL_TXN,     /* /.metastore/txn: reply the read with the formatted result */
	P_LOOKUP,      /* a lookup that found nothing locally: read barrier, then look again */
	P_OPEN_REPLY,  /* an open's reply waiting for the invalidation thread (stale attributes) */
} pend_kind_t;

struct ms;

typedef struct pending {
	uint64_t id; /* origin_seq of the txn, or the read barrier's id */
	pend_kind_t kind;
	ms_op_t op;
	uint64_t t0_ns;      /* request received (monotonic) */
	uint64_t started_ns; /* proposal or barrier issued */
	fuse_req_t req;
	fh_t *fh; /* holds a reference */
	uint64_t ino;
	char *key; /* P_ENTRY, P_CREATE_*: the key created / opened */
	size_t key_len;
	uint64_t parent_ino;
	struct fuse_file_info fi;
	uint32_t mode, uid, gid; /* P_CREATE_OPEN */
	size_t size;             /* P_CTL_TXN: read size */
	uint64_t off;            /* P_CTL_TXN: read offset */
	bool release;            /* P_FLUSH started by a release: no reply, closes the entry when done */
	bool create;             /* P_OPEN_REPLY: reply create (with an entry), not open */
	struct ms *owner;        /* P_OPEN_REPLY: the daemon (the completion runs on another thread) */
	struct pending *next;
	struct pending *fifo_prev, *fifo_next; /* P_LOOKUP: oldest first, for the sweep */
} pending_t;

/* ------------------------------------------------------------------ the daemon */

typedef struct ms {
	opts_t opt;
	uv_loop_t *loop;
	struct fuse_session *se;
	uv_poll_t fuse_poll;
	bool fuse_poll_active;
	struct fuse_buf fbuf;
	uv_signal_t sig_term, sig_int, sig_hup;
	uv_async_t inval_exited;
	uv_async_t watch_exited;
	uv_async_t opens_ready; /* P_OPEN_REPLYs the invalidation thread finished */
	pthread_mutex_t ready_mu;
	pending_t *ready; /* under ready_mu */
	watch_t *watch;   /* inotify replay (NULL with -o inotify=off) */
	engine_t *engine;
	sm_t *sm;
	raft_node_t *raft;
	inotab_t *tab;
	inval_t *inval;
	fs_change_sink_t sinks[MS_SINKS_MAX];
	uint32_t n_sinks;
	uint8_t token[OPTS_TOKEN_BYTES_MAX];
	size_t token_len;
	uint32_t boot_epoch;
	uint32_t seq_counter; /* low half of origin_seq */
	uint64_t read_counter;
	uint64_t ino_counter; /* provisional inos of this boot */
	pending_t *pending[MS_PENDING_BUCKETS];
	size_t n_pending;
	pending_t *lookups_head, *lookups_tail; /* parked P_LOOKUPs, oldest first */
	uv_timer_t sweep;
	pending_t *waiters; /* opens waiting for an inode's release commits (P_OPEN, P_CREATE_OPEN) */
	size_t n_waiters;
	fh_t *handles;
	size_t n_handles;
	raft_role_t role;
	uint64_t term;
	uint32_t leader_id;
	bool mounted, stopping, raft_stopped, inval_stopped, watch_stopped, finished;
	bool caught_up; /* the start-up read barrier passed (main.c) */
	int fatal;      /* apply failed (-errno): the node stopped; main.c stops too */
	uint64_t catch_up_read_id;
	int exit_code;
	uid_t uid;
	gid_t gid;
	int64_t start_realtime_ns;
	ms_stats_t stats;
	char mount_path[4096];
} ms_t;

/* main.c */
void ms_log(const ms_t *d, opts_log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
uint64_t ms_now_ns(void);     /* CLOCK_MONOTONIC */
int64_t ms_realtime_ns(void); /* CLOCK_REALTIME */
void ms_begin_shutdown(ms_t *d, const char *why);
void ms_open_reply_ready(void *arg, int rc); /* inval_attr_then's completion (any thread) */

/* commit.c */
raft_node_callbacks_t ms_raft_callbacks(ms_t *d);
pending_t *ms_pending_new(ms_t *d, pend_kind_t kind, ms_op_t op, fuse_req_t req, uint64_t t0_ns);
void ms_pending_free(ms_t *d, pending_t *p); /* a pending never handed to propose/read */
/* Encodes txn (origin, seq, time filled in here unless time_ns is set), proposes it and parks
 * p under its seq. On error nothing is parked and p is still the caller's. */
int ms_propose(ms_t *d, sm_txn_t *txn, pending_t *p);
/* Issues a read barrier and parks p. On error p is still the caller's. */
int ms_read_barrier(ms_t *d, pending_t *p);
void ms_fail_all_pending(ms_t *d, int err);
/* Answers lookups whose barrier has taken longer than MS_LOOKUP_BARRIER_MS (from local state). */
void ms_sweep_lookups(ms_t *d);
int ms_add_sink(ms_t *d, fs_change_sink_t sink);
/* Whether nodeid entry e stands for record r (same ino, or e's alias of it). */
static inline bool ms_entry_is_rec(const inotab_entry_t *e, uint64_t rec_ino)
{
	return e && (e->ino == rec_ino || (e->rec_ino != 0 && e->rec_ino == rec_ino));
}
/* The nodeid this mount uses for record ino at key: an aliasing entry's, else the ino. */
uint64_t ms_nodeid_of(ms_t *d, const char *key, size_t key_len, uint64_t rec_ino);
/* Resolves the parent nodeid of key (0 if the kernel holds none) and the last component. */
uint64_t ms_parent_ino(ms_t *d, const char *key, size_t key_len, const char **name, size_t *name_len);

/* fsops.c */
extern const struct fuse_lowlevel_ops ms_fuse_ops;
void ms_complete(ms_t *d, pending_t *p, int err, const sm_txn_result_t *res); /* replies, frees p */
void ms_complete_read(ms_t *d, pending_t *p, int status);                     /* after a barrier */
void ms_complete_open_reply(ms_t *d, pending_t *p); /* a P_OPEN_REPLY, on the loop thread */
void ms_fh_unref(ms_t *d, fh_t *h);
void ms_fail_all_waiters(ms_t *d, int err);
void ms_free_all_handles(ms_t *d);
void ms_record_op(ms_t *d, ms_op_t op, uint64_t t0_ns, int err);
int ms_dir_push(fh_t *h, const char *name, size_t name_len, uint64_t ino, uint32_t mode); /* 0, -ENOMEM */
fh_t *ms_fh_new(ms_t *d, fh_kind_t kind, uint64_t ino);
uint64_t ms_next_provisional_ino(ms_t *d);

/* ctl.c */
int ms_ctl_lookup(ms_t *d, uint64_t parent, const char *name, struct fuse_entry_param *e); /* 0, -ENOENT */
bool ms_ctl_is(uint64_t ino);
void ms_ctl_attr(ms_t *d, uint64_t ino, struct stat *st);
int ms_ctl_open(ms_t *d, uint64_t ino, int flags, fh_t **out);
int ms_ctl_readdir_snapshot(ms_t *d, fh_t *h);
/* status text into a malloc'd buffer */
int ms_status_text(ms_t *d, char **out, size_t *len);
/* txn file read / write; replies itself (possibly later) */
void ms_ctl_txn_read(ms_t *d, fuse_req_t req, fh_t *h, size_t size, uint64_t off, uint64_t t0_ns);
int ms_ctl_txn_write(ms_t *d, fh_t *h, const char *buf, size_t size, uint64_t off);
void ms_ctl_txn_complete(ms_t *d, pending_t *p, int err, const sm_txn_result_t *res);

#endif
