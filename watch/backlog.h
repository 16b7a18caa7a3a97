/* backlog.h - watch/'s pending replays (internal to watch/; watch.h is the module's interface).
 *
 * A FIFO of changes this mount's kernel has not seen yet, in apply order, coalesced per key and
 * bounded, plus the "marks" that the FUSE handlers consult while a change waits:
 *  - a name created elsewhere (or the target of a rename) is hidden: the kernel emits IN_CREATE
 *    only for a name it believes missing, so the replay's own lookup answers ENOENT (its
 *    open(O_CREAT) / mkdir then really creates) and listings leave the name out (readdirplus
 *    would plant a dentry). Lookups by anyone else are answered (open() is linearizable: a
 *    file whose close() returned anywhere must open): such a lookup marks the name "known"
 *    with its parent's nodeid, and the replay first makes the kernel forget that dentry;
 *  - a name deleted or renamed away elsewhere is a ghost for the replay thread: its lookups get
 *    the record as it was, so the replayed unlink / rename finds what to remove even after the
 *    invalidation thread made the kernel drop its dentry (or when it never had one).
 * A mark lives from the push of its change until the replay of that change (or its cancel).
 * When one key carries several marks the earliest (lowest seq) answers: it describes the state
 * the kernel is in until that change is replayed.
 *
 * Coalescing keeps the events a watcher would have seen where the changes were made (only
 * between changes to one file record with the same ino, with no rename or exchange queued in
 * between, and never with a change the replay thread has taken): attributes merge into the
 * pending change before them (content or attributes: its content first, then one call per kind
 * of attribute, as they came; a kind repeated makes one ATTRIB where inotify would have folded
 * the unread duplicates); content never merges (each change showed MODIFY and CLOSE_WRITE); a
 * delete follows pending changes (their events first). The one exception: a create + delete of
 * a file the kernel never saw -> nothing (the name never reaches this kernel). A change made
 * through this mount (local) cancels the pending replay of its key: the kernel already
 * emitted its events, and a late replay would emit older ones after them.
 *
 * Bounds: entries_max changes and key_bytes_max bytes of keys and symlink targets. A change
 * that does not fit is dropped and counted (no marks: the name is visible at once and the
 * kernel learns of it through invalidation; its events are lost). Values are never copied: a
 * replayed change of content is an ftruncate to the new size (a create: one byte written at
 * size-1 through a direct_io handle whose data the handler ignores), which gives the kernel
 * the file's size and the MODIFY event.
 *
 * Pure data structure: no locks, no threads, no syscalls, no clock (callers pass now_ns).
 * watch.c serializes every call under its mutex.
 */
#ifndef METASTORE_WATCH_BACKLOG_H
#define METASTORE_WATCH_BACKLOG_H

#include "sm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BACKLOG_ENTRIES_MAX (1u << 20)

typedef enum bl_op {
	BL_PUT = 1, /* file content: open, ftruncate (a create: O_CREAT, one byte at size-1), close */
	BL_ATTR,    /* one attribute call (see attr_mask) */
	BL_UNLINK,
	BL_MKDIR,
	BL_RMDIR,
	BL_SYMLINK,
	BL_RENAME,
	BL_EXCHANGE,
} bl_op_t;

enum { BL_ATTR_MODE = 1u << 0, BL_ATTR_OWNER = 1u << 1, BL_ATTR_TIMES = 1u << 2 };

typedef enum bl_how {
	BL_HOW_DEFAULT = 0, /* as in the table of watch.h */
	BL_HOW_OPEN,        /* BL_ATTR: made while the file was open for writing: open, f-calls, close */
	BL_HOW_PATH,        /* BL_PUT of a known file: a size set by path (truncate(2), no open) */
	BL_HOW_ATTRIB_OPEN, /* BL_PUT create: attributes set while open (futimens before the close) */
} bl_how_t;

typedef struct bl_mark bl_mark_t;

typedef struct bl_entry {
	uint64_t seq; /* push order */
	bl_op_t op;
	bool create;        /* BL_PUT: the kernel never saw this file: open with O_CREAT */
	bool replaces;      /* BL_RENAME: key2 held a record (replaced by the move) */
	uint32_t attr_mask; /* BL_PUT, BL_ATTR: attributes changed (one call replays them) */
	bl_how_t how;       /* how the change was made where it was (the txn's SM_TXN_* flags) */
	uint64_t old_size;  /* BL_PUT of a known file: its size before the change (UINT64_MAX: unknown) */
	int64_t revision;   /* of the latest change merged in */
	char *key;          /* NUL-terminated */
	size_t key_len;
	char *key2; /* BL_RENAME, BL_EXCHANGE target; BL_SYMLINK: the link's target */
	size_t key2_len;
	sm_record_t rec; /* after the change (value NULL): kind, ino, mode, uid, gid, size, mtime */
	/* private to backlog.c */
	bl_mark_t *marks[2];
	struct bl_entry *prev, *next; /* FIFO while pending, the in-flight list once taken */
	bool in_flight;
	struct bl_entry *idx_next; /* merge index chain */
	uint64_t idx_gen;          /* merge index generation it was indexed under; 0 = not indexed */
	size_t bytes;              /* key bytes counted against key_bytes_max */
} bl_entry_t;

typedef struct bl_stats {
	uint64_t queued;    /* changes appended as new entries */
	uint64_t merged;    /* changes folded into a pending entry */
	uint64_t cancelled; /* pending entries removed: create+delete, or superseded by a local change */
	uint64_t dropped;   /* changes that did not fit (or could not be allocated) */
	uint64_t ignored;   /* local changes and events that need no replay */
	uint64_t len, len_max, key_bytes;
} bl_stats_t;

typedef struct backlog backlog_t;

typedef struct backlog_config {
	size_t entries_max;   /* 1 .. BACKLOG_ENTRIES_MAX */
	size_t key_bytes_max; /* >= 2 * (SM_KEY_BYTES_MAX + 1) */
	uint64_t hide_ns_max; /* listings show a hidden name after this long anyway */
} backlog_config_t;

/* 0, -EINVAL (bad config), -ENOMEM. */
int backlog_new(const backlog_config_t *cfg, backlog_t **out);
void backlog_free(backlog_t *b);

/* One applied state-machine event. local: made through this mount; txn_flags: its txn's
 * SM_TXN_* flags (they set the entry's `how`; an entry made BL_HOW_OPEN takes no merges and
 * merges into nothing, its calls belong inside its open). Returns 1 when the
 * change was queued or merged (the replay thread has work), 0 when nothing needs replaying
 * (a local change, a cancel, an event with nothing to replay), -ENOSPC (dropped: a bound) or
 * -ENOMEM (dropped). */
int backlog_push(backlog_t *b, const sm_event_t *ev, bool local, uint32_t txn_flags, uint64_t now_ns);

/* The oldest entry, removed from the FIFO and the merge index (nothing merges into it any
 * more) and counted in flight; NULL when empty. Its marks stay until backlog_done /
 * backlog_unmark. */
bl_entry_t *backlog_take(backlog_t *b);
/* backlog_take, for several replay threads: the oldest entry if it may run beside the ones in
 * flight, else NULL (also when empty). Changes to one key never overlap (so they come out in
 * revision order); directory creations and removals, renames and exchanges run alone, in
 * order (they change the paths of what comes after them). O(in flight). */
bl_entry_t *backlog_take_ready(backlog_t *b);
size_t backlog_in_flight(const backlog_t *b);
/* Drops the entry's marks (after the syscall that made the kernel see the change). */
void backlog_unmark(backlog_t *b, bl_entry_t *e);
/* Whether a BL_RENAME entry moves onto a name that held a record (then the kernel may know the
 * target, and the rename must replace it). */
bool backlog_replaces(const bl_entry_t *e);
/* Ends a taken entry: drops its marks and frees it. */
void backlog_done(backlog_t *b, bl_entry_t *e);
/* Frees every pending entry and its marks (not the taken ones: their owners call backlog_done). */
void backlog_clear(backlog_t *b);

size_t backlog_len(const backlog_t *b);
size_t backlog_marks(const backlog_t *b);
void backlog_get_stats(const backlog_t *b, bl_stats_t *st);

/* ------------------------------------------------------------------ questions the handlers ask */

typedef enum bl_answer {
	BL_PASS = 0, /* no mark: answer from the state machine */
	BL_ABSENT,   /* answer ENOENT */
	BL_PRESENT,  /* answer with *rec */
} bl_answer_t;

/* A lookup of key by a replay thread: the earliest mark answers (a ghost: its record; a hidden
 * name: absent); no mark: BL_PASS. rec may be NULL. */
bl_answer_t backlog_lookup(const backlog_t *b, const char *key, size_t key_len, sm_record_t *rec);
/* Anyone else's lookup handed key to the kernel, under directory nodeid parent: hidden marks on
 * key remember it, so their replays make the kernel forget the name before creating it. */
void backlog_known(backlog_t *b, const char *key, size_t key_len, uint64_t parent);
/* For the replay of e: whether the kernel learnt the name of e's mark slot (0: key, 1: key2)
 * from a lookup; if so gives its parent nodeid and last component (pointing into e) and
 * forgets that it did. */
bool backlog_take_known(backlog_t *b, bl_entry_t *e, int slot, uint64_t *parent, const char **name,
                        size_t *name_len);
/* Calls fn for each name a listing of directory dir must leave out (hidden children younger
 * than hide_ns_max; a name may come more than once); returns how many calls. O(hidden names
 * whose parent hashes alike). */
size_t backlog_hidden_children(const backlog_t *b, const char *dir, size_t dir_len, uint64_t now_ns,
                               void (*fn)(void *ctx, const char *name, size_t name_len), void *ctx);
/* A replay in flight is being answered on key (its create, mkdir, symlink, or either name of its
 * rename or exchange): the marks that entries in flight hold on key go, so the name stops
 * being hidden before the kernel sees the reply and emits the event (a watcher may look it up
 * at once). True, with the record the create made in *rec (may be NULL), when one of them was
 * a create (merges keep that record current); false otherwise. */
bool backlog_reveal(backlog_t *b, const char *key, size_t key_len, sm_record_t *rec);
/* The key that key (as the kernel knows it, before the replays in flight) names in the state
 * machine now: the replays in flight and every pending rename or exchange move it (or an
 * ancestor), a pending delete of it or a rename over it ends it. Writes it NUL-terminated to out
 * and returns its length; -ENOENT if it is gone, -ENAMETOOLONG if it does not fit cap. O(pending). */
int backlog_forward(const backlog_t *b, const char *key, size_t key_len, char *out, size_t cap);
/* The ghost with this ino (the earliest): the key the kernel still knows it under and its
 * record. *key points into the backlog: copy it before the next call. False if none. */
bool backlog_ghost_ino(const backlog_t *b, uint64_t ino, const char **key, size_t *key_len, sm_record_t *rec);

#endif
