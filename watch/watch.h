/* watch.h - inotify events on this mount for changes it did not make: replay through the mount.
 *
 * The kernel emits inotify events only for changes made through a mount, and no FUSE notify
 * call produces CREATE, MODIFY, CLOSE_WRITE, DELETE or MOVED_* (shared/fusefloor/README.md).
 * So every applied change this mount did not make (another node's, or a transaction's) is
 * replayed through the mount by dedicated replay threads, making the same syscalls a local
 * user would have made:
 *   new file       open(O_WRONLY|O_CREAT|O_EXCL), one byte written at size-1 (if not empty),
 *                  futimens if its attributes were set while it was open (SM_TXN_ATTRIB_OPEN:
 *                  touch), close
 *   changed file   open(O_WRONLY), its last byte written if it did not shrink (a direct_io write
 *                  costs no security.capability GETXATTR), else ftruncate to the new size, close
 *                  (MODIFY, CLOSE_WRITE: what echo >, echo >>, truncate(1) show; not O_TRUNC,
 *                  whose passing size 0 a reader on this mount could see); a size set by path on a mount
 *                  (SM_TXN_FROM_FS without SM_TXN_OPEN_WRITE): truncate(2) (MODIFY only)
 *   attributes     chmod, lchown, utimensat (atime = mtime): what changed, one ATTRIB each;
 *                  changed while the file was open for writing there (SM_TXN_OPEN_WRITE:
 *                  touch of an existing file): open(O_WRONLY), fchmod/fchown/futimens, close
 *   delete         unlink / rmdir;  mkdir;  symlink
 *   rename         rename (the kernel pairs MOVED_FROM / MOVED_TO with one cookie);
 *                  exchange: renameat2(RENAME_EXCHANGE)
 * The daemon's handlers recognize the replay threads by the pid of a request
 * (watch_is_replay(): their TIDs) and apply nothing: they answer from local state (a replayed
 * ftruncate gets the record's attributes), and give the replay's opens a direct_io, noflush
 * handle whose writes are ignored (so the byte written only sets the kernel's idea of the size
 * and makes the MODIFY event).
 *
 * WATCH_THREADS threads replay at once (one FUSE round trip costs two context switches; with
 * several in flight the loop answers them in one wakeup): changes to different files overlap,
 * changes to one key never do (so they keep revision order), and directory creations and
 * removals, renames and exchanges run alone (they change the paths of what follows). Events of
 * different keys may therefore come out in another order than their revisions.
 *
 * The kernel emits IN_CREATE only for a name it believes missing, so a name created elsewhere
 * should reach it through its replay's create, and it must still find a name deleted or renamed
 * elsewhere when the replay removes it. The handlers ask watch_replay_lookup() /
 * watch_hidden_children() / watch_reveal() / watch_ghost() for that (backlog.h explains the
 * marks): listings leave such a name out until its replay (at most WATCH_HIDE_MS_MAX: a replay
 * that far behind has lost its CREATE; an invisible file would be worse). Lookups are never
 * refused (open() is linearizable, DESIGN.md): one that hands the kernel such a name reports it
 * (watch_looked_up), and the replay makes the kernel forget it (the forget callback, on the
 * replay thread) before creating it. Creates are exclusive (O_CREAT|O_EXCL, mkdir, symlink,
 * rename with RENAME_NOREPLACE onto a free name), so a lookup that slips in between makes the
 * create fail with EEXIST and no event, and the replay forgets and tries again, up to
 * WATCH_CREATE_TRIES times; then it opens the file plainly (OPEN, MODIFY, CLOSE_WRITE without
 * CREATE) and counts a lost create.
 *
 * A recursive watcher (inotifywait -r) adds its watch on a new directory only after reading
 * its CREATE event; a change inside a directory replayed less than WATCH_MKDIR_SETTLE_US ago
 * waits for the rest of that time, so the watch is there when the change's events come.
 *
 * Threads: watch_push / watch_end_batch and the lookup questions are called on the loop thread
 * (the one serving /dev/fuse); they take the module's mutex briefly and never wait for the
 * replay threads, which hold that mutex only between syscalls, never during one. Apply never
 * waits for a replay: the backlog coalesces per key and drops (counted) beyond its bounds.
 */
#ifndef METASTORE_WATCH_WATCH_H
#define METASTORE_WATCH_WATCH_H

#include "sm.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define WATCH_BACKLOG_MAX 65536u        /* pending replays */
#define WATCH_KEY_BYTES_MAX (64u << 20) /* bytes of keys (and symlink targets) pending */
#define WATCH_HIDE_MS_MAX 1000u         /* listings show a hidden name after this anyway */
#define WATCH_MKDIR_SETTLE_US 3000u
#define WATCH_MKDIRS_RECENT 16u /* replayed mkdirs remembered for the settle */
#define WATCH_THREADS 4u        /* replay threads */
#define WATCH_CREATE_TRIES 8u   /* exclusive creates tried before giving up the event */
#define WATCH_THREADS_MAX 16u

typedef struct watch watch_t;

typedef struct watch_stats {
	uint64_t queued;       /* changes queued for replay */
	uint64_t merged;       /* changes folded into a pending replay of the same key */
	uint64_t cancelled;    /* pending replays made moot (create+delete, or a local change) */
	uint64_t dropped;      /* changes not replayed: backlog full or out of memory */
	uint64_t replayed;     /* replays performed */
	uint64_t failed;       /* replays whose syscall failed (last_errno says how) */
	uint64_t settle_waits; /* replays that waited for a recursive watcher */
	uint64_t lost_creates; /* creates whose name a lookup kept showing the kernel: no CREATE event */
	uint64_t backlog, backlog_max;
	int last_errno;
} watch_stats_t;

typedef struct watch_config {
	const char *mount_path;     /* absolute; copied */
	uint32_t backlog_max;       /* 0 = WATCH_BACKLOG_MAX */
	uint32_t hide_ms_max;       /* 0 = WATCH_HIDE_MS_MAX */
	uint32_t settle_us;         /* 0 = WATCH_MKDIR_SETTLE_US */
	uint32_t threads;           /* replay threads, 0 = WATCH_THREADS, at most WATCH_THREADS_MAX */
	void (*on_exit)(void *arg); /* may be NULL: called by the last replay thread as it ends */
	/* May be NULL. Called on a replay thread (never the loop thread, never inside a handler)
	 * before the syscall that creates or renames onto a name a lookup already handed to the
	 * kernel: make the kernel drop that dentry (fuse_lowlevel_notify_inval_entry). */
	void (*forget)(void *arg, uint64_t parent, const char *name, size_t name_len);
	void *arg;
} watch_config_t;

/* Starts the replay threads (all signals blocked in them). 0, -EINVAL (mount path not absolute
 * or too long, too many threads), -ENOMEM, or pthread_create's -errno. on_exit is called
 * once, by the last thread to end. */
int watch_start(const watch_config_t *cfg, watch_t **out);
/* Asks the threads to stop after the replays in progress; pending replays are discarded. */
void watch_request_stop(watch_t *w);
/* Requests a stop, joins (the replays in progress need the loop to keep serving FUSE until
 * then: call this once on_exit has run, or after the mount is gone), frees. NULL is a no-op. */
void watch_stop(watch_t *w);

/* ------------------------------------------------------------------ loop thread: changes */

/* One applied state-machine event; local = made through this mount; txn_flags = its txn's
 * SM_TXN_* (how the change was made, see the replay table above). Never blocks on the replay
 * threads; copies what it keeps. */
void watch_push(watch_t *w, const sm_event_t *ev, bool local, uint32_t txn_flags);
/* After the pushes of one applied entry: wakes a replay thread if they queued work. */
void watch_end_batch(watch_t *w);

/* ------------------------------------------------------------------ loop thread: handlers */

/* Whether a request with this pid (fuse_req_ctx(req)->pid) comes from a replay thread. */
bool watch_is_replay(const watch_t *w, pid_t pid);

typedef enum watch_answer {
	WATCH_PASS = 0, /* answer from the state machine as usual */
	WATCH_ABSENT,   /* answer ENOENT */
	WATCH_PRESENT,  /* answer with *rec (its value is NULL) */
} watch_answer_t;

/* A replay thread's lookup of key: a name whose pending replay removes or moves it is PRESENT
 * with its old record, one whose replay creates it is ABSENT. rec may be NULL. */
watch_answer_t watch_replay_lookup(watch_t *w, const char *key, size_t key_len, sm_record_t *rec);
/* Any other lookup is about to hand key to the kernel, in directory nodeid parent: if a pending
 * replay creates key (or renames onto it), it makes the kernel forget it first. */
void watch_looked_up(watch_t *w, const char *key, size_t key_len, uint64_t parent);
/* The names a listing of directory dir must leave out (created elsewhere, not replayed yet):
 * fn is called for each, under the module's mutex (it must not call watch_*); returns how many.
 * One call per listing: O(hidden names), not O(entries). */
size_t watch_hidden_children(watch_t *w, const char *dir, size_t dir_len,
                             void (*fn)(void *ctx, const char *name, size_t name_len), void *ctx);
/* For a handler answering a replay thread's create (open O_CREAT, mkdir, symlink) of key, or
 * its rename or exchange (once per name), just before the reply: the name stops being hidden
 * (the kernel emits the event when the reply reaches it, and a watcher may look the name up at
 * once: inotifywait -r stats a new directory to watch it). True with the record the create
 * made in *rec (may be NULL); false when no pending create holds key (answer from the state
 * machine then). */
bool watch_reveal(watch_t *w, const char *key, size_t key_len, sm_record_t *rec);
/* For the replay threads' requests on nodeid ino (lookups below it, getattr, setattr): the key
 * the kernel still knows it under and its record, while a replay that removes or moves it is
 * pending. Copies the key into buf (NUL-terminated) and returns its length; -ENOENT if ino
 * has no such replay pending, -ENAMETOOLONG if cap is too small. rec may be NULL. */
int watch_ghost(watch_t *w, uint64_t ino, char *buf, size_t cap, sm_record_t *rec);

/* For the handlers of the replay threads' requests: the key that key (the kernel's, before the
 * replay in progress) names in the state machine now, after the changes applied since: renames
 * move it, deletes end it. Writes it to buf (NUL-terminated) and returns its length; -ENOENT if
 * it is gone, -ENAMETOOLONG if it does not fit cap. O(backlog): for the rare case where the
 * state machine has moved on before the replay revealed a record. */
int watch_forward(watch_t *w, const char *key, size_t key_len, char *buf, size_t cap);

void watch_get_stats(watch_t *w, watch_stats_t *st);

#endif
