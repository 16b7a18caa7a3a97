/* snapfile.h - atomic snapshot files, written and read in chunks so InstallSnapshot can stream them.
 *
 * A snapshot file is DIR/snap/snap-<index>-<term>.snap (20-digit decimal numbers), holding:
 *   header  (48 bytes: magic, version, header CRC, index, term, config length) + config bytes,
 *           padded to 8;
 *   data    (the state machine's opaque stream);
 *   trailer (24 bytes: magic, CRC32C of every byte before the trailer, data length, file length).
 * It is written as DIR/snap/tmp-<pid>-<n>.snap, fsync'ed, renamed to its final name and the
 * directory fsync'ed, so a crash leaves either the previous snapshot or the new one, never half
 * of one; leftover tmp files are deleted by raft_snap_open_latest() and by commits. After a
 * commit, older snapshots are deleted (the newest by index, then term, is the one kept).
 *
 * Two ways to write: raft_snap_create() builds a file from meta + data chunks (the node taking a
 * snapshot of its state machine); raft_snap_receive() takes the raw bytes of a file as a leader
 * reads them with raft_snap_read() (InstallSnapshot), checked in full at commit. Chunks must come
 * in order: a chunk's offset must equal raft_snap_writer_bytes() (-EINVAL otherwise).
 *
 * These calls block on the disk: run them on a worker thread, not the loop thread. A writer or
 * reader is used by one thread at a time; different ones are independent.
 *
 * Errors: -ENOENT (no snapshot), -EBADMSG (a CRC does not match), -EUCLEAN (malformed file),
 * -EINVAL (bad argument, chunk out of order), -EFBIG (over RAFT_SNAP_BYTES_MAX), -ENOMEM, and
 * the errno of a failed system call.
 */
#ifndef METASTORE_RAFT_SNAPFILE_H
#define METASTORE_RAFT_SNAPFILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define RAFT_SNAP_CONFIG_BYTES_MAX (64u * 1024u)
#define RAFT_SNAP_BYTES_MAX (1ull << 40) /* 1 TiB: a file larger than this is refused */

typedef struct raft_snap_writer raft_snap_writer_t;
typedef struct raft_snap_reader raft_snap_reader_t;

typedef struct raft_snap_meta {
	uint64_t index;
	uint64_t term;
	const void *config; /* opaque cluster configuration bytes, owned by the reader/writer */
	uint32_t config_bytes;
	uint64_t data_offset; /* where the data starts in the file */
	uint64_t data_bytes;  /* 0 while a created file is still being written */
	uint64_t file_bytes;  /* whole file, trailer included (0 while being written) */
} raft_snap_meta_t;

/* Start a snapshot of index/term with the given config; then raft_snap_write() the data from
 * offset 0. */
int raft_snap_create(const char *dir, uint64_t index, uint64_t term, const void *config,
                     uint32_t config_bytes, raft_snap_writer_t **out);
/* Start receiving the raw bytes of a snapshot file (from offset 0). */
int raft_snap_receive(const char *dir, raft_snap_writer_t **out);
/* Append a chunk at offset (data offset for a created file, file offset for a received one). */
int raft_snap_write(raft_snap_writer_t *w, uint64_t offset, const void *buf, size_t len);
/* Bytes accepted so far (the next chunk's offset). */
uint64_t raft_snap_writer_bytes(const raft_snap_writer_t *w);
/* Finish: (received: verify the whole file,) fsync, rename, fsync dir, delete older snapshots.
 * Always frees w; on failure the tmp file is gone. meta_out (may be NULL) gets index/term/sizes
 * (config is not returned: it points into the freed writer). errbuf may be NULL. */
int raft_snap_commit(raft_snap_writer_t *w, raft_snap_meta_t *meta_out, char *errbuf, size_t errbuf_len);
/* Give up: delete the tmp file, free. */
void raft_snap_abort(raft_snap_writer_t *w);

/* Open the newest snapshot, verifying the CRC over the whole file (reads it all). -ENOENT if
 * there is none. A bad newest snapshot fails (-EBADMSG/-EUCLEAN) rather than falling back. */
int raft_snap_open_latest(const char *dir, raft_snap_reader_t **out, char *errbuf, size_t errbuf_len);
const raft_snap_meta_t *raft_snap_reader_meta(const raft_snap_reader_t *r);
/* Read up to len bytes of the FILE at offset (what a leader streams). Returns bytes read (0 at
 * the end) or a negative errno. */
ssize_t raft_snap_read(raft_snap_reader_t *r, uint64_t offset, void *buf, size_t len);
/* Read up to len bytes of the DATA at offset (what the state machine restores from). */
ssize_t raft_snap_read_data(raft_snap_reader_t *r, uint64_t offset, void *buf, size_t len);
void raft_snap_reader_close(raft_snap_reader_t *r);
/* The reader's file descriptor (read-only; closed by raft_snap_reader_close), e.g. to mmap it. */
int raft_snap_reader_fd(const raft_snap_reader_t *r);

/* Index and term of the newest snapshot from its header alone (header CRC checked, data not read),
 * 0/0 if there is none. What raft_log_open() uses to find where the log must start. */
int raft_snap_peek_latest(const char *dir, uint64_t *index, uint64_t *term, char *errbuf, size_t errbuf_len);

#endif
