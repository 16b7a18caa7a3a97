/* changes.h - how applied changes leave the loop thread: the interface between fs/ and the
 * consumers of change events (kernel cache invalidation in fs/inval.c; inotify replay in
 * watch/, registered in main.c).
 *
 * After every applied Raft entry the loop thread calls push() on each registered sink once per
 * state-machine event, in apply order, with the event resolved against the inode table: the
 * kernel nodeids of the key's parent (and of key2's parent), and of the record itself, when
 * this mount's kernel holds them (0 when the kernel has never been told about that node, so
 * there is nothing of it to invalidate). `local` says the change was made through this mount
 * (the kernel already knows it). push() runs on the loop thread: it must not block, must not
 * call into FUSE and must copy what it keeps (every pointer is valid only during the call).
 * A sink that cannot keep up drops and counts; apply never waits for a sink.
 */
#ifndef METASTORE_FS_CHANGES_H
#define METASTORE_FS_CHANGES_H

#include "sm.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct fs_change {
	const sm_event_t *ev;  /* type, revision, keys, records (old/new/replaced) */
	bool local;            /* made through this mount: origin is this node and SM_TXN_FROM_FS */
	uint32_t txn_flags;    /* SM_TXN_* of the change's txn: how it was made (watch/ replays so) */
	uint64_t ino;          /* the record's ino (new record, else old); 0 if none */
	bool ino_known;        /* the kernel holds a nodeid for ino */
	uint64_t replaced_ino; /* RENAME over an existing key2, EXCHANGE: the other record */
	bool replaced_ino_known;
	uint64_t parent_ino;  /* nodeid of key's parent directory, 0 if the kernel holds none */
	uint64_t parent2_ino; /* same for key2 (RENAME, EXCHANGE) */
	const char *name;     /* last component of key */
	size_t name_len;
	const char *name2; /* last component of key2 */
	size_t name2_len;
} fs_change_t;

typedef struct fs_change_sink {
	void *ctx;
	void (*push)(void *ctx, const fs_change_t *c);
	/* Optional: called once after the last push of an applied entry (a batch boundary). */
	void (*end_batch)(void *ctx);
} fs_change_sink_t;

#endif
