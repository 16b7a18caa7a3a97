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

/* Queues an attributes-only invalidation of nodeid ino behind everything queued before it,
 * then calls done(arg, rc) on the invalidation thread (rc: the notify's result; -ECANCELED when
 * the thread stops first). Never dropped: 0, or -EAGAIN when the queue is full or stopping
 * (done is not called). For a reply that must wait until the kernel forgot stale attributes:
 * no notify call is ever made on the loop thread or inside a handler. */
int inval_attr_then(inval_t *iv, uint64_t ino, void (*done)(void *arg, int rc), void *arg);

/* The sink to register with the daemon; ctx is iv. */
fs_change_sink_t inval_sink(inval_t *iv);

void inval_get_stats(inval_t *iv, inval_stats_t *st);

#endif
