/* inval.h - kernel cache invalidation for changes this mount did not make.
 *
 * A change sink (changes.h) that turns remote changes into fuse_lowlevel_notify_inval_entry /
 * notify_inval_inode calls, made by one dedicated thread fed by a bounded queue: never on the
 * loop thread that serves /dev/fuse and never inside a handler (fusefloor's README lists the
 * deadlocks both cause). The queue holds INVAL_QUEUE_MAX notifications; when it is full new
 * ones are dropped and counted (the kernel then relies on the 1 s entry/attr timeouts).
 *
 * What a remote change invalidates: CREATE -> the name in its parent (a negative dentry) and
 * the parent's attributes; MODIFY -> the inode's data and attributes; ATTRIB -> its
 * attributes; DELETE -> the name and the parent's attributes; RENAME/EXCHANGE -> both names,
 * both parents' attributes and the moved inodes' attributes. Only nodeids the kernel holds.
 */
#ifndef METASTORE_FS_INVAL_H
#define METASTORE_FS_INVAL_H

#include "changes.h"

#include <stdint.h>

#define INVAL_QUEUE_MAX 16384u

struct fuse_session;
typedef struct inval inval_t;

typedef struct inval_stats {
	uint64_t queued, done, dropped, failed; /* failed: notify returned an error other than ENOENT */
} inval_stats_t;

/* Starts the thread. se must stay valid until inval_stop() returns. on_exit (may be NULL) is
 * called on the thread, just before it returns, so the owner can learn without blocking that
 * inval_stop() will not wait. 0 or -errno. */
int inval_start(struct fuse_session *se, void (*on_exit)(void *arg), void *arg, inval_t **out);
/* Asks the thread to stop after the notification in progress (queued ones are discarded). */
void inval_request_stop(inval_t *iv);
/* Requests a stop, joins the thread (it may be blocked in a notify call until the kernel
 * lets go), frees everything. */
void inval_stop(inval_t *iv);

/* The sink to register with the daemon; ctx is iv. */
fs_change_sink_t inval_sink(inval_t *iv);

void inval_get_stats(inval_t *iv, inval_stats_t *st);

#endif
