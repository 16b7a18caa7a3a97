/* opts.h - metastored's command line: parsed and checked before anything starts.
 *
 *   metastored --id N [--peers 1=HOST:PORT,2=...] --data DIR [--engine memory|rocksdb]
 *              [--token-file F] [--value-max BYTES] [--foreground|-f]
 *              [--log-level error|warn|info|debug] [-o OPT[,OPT...]] MOUNTPOINT
 *
 * No --peers means a one-node cluster (the node is its own only peer, address 127.0.0.1:0,
 * never listened on); with --peers the list must contain --id and a token file is required.
 * --engine defaults to memory. --value-max takes a number with an optional K/M suffix
 * (powers of 1024), 1 .. SM_VALUE_BYTES_MAX_DEFAULT (the codec's frame bounds it). Node ids are
 * 1..254: the id is the top byte of the inode numbers this node chooses (see fsops.c), and
 * 255 could collide with the control files' reserved inode numbers near UINT64_MAX.
 *
 * -o takes our options (local_reads, inotify=on|off) and a fixed set of FUSE mount options,
 * passed on to libfuse: allow_other, allow_root, ro, rw, dev, nodev, suid, nosuid, exec, noexec,
 * atime, noatime, relatime, fsname=, subtype=, max_read=. default_permissions is always on.
 * Options mount(8) hands to helpers and that mean nothing to the daemon (auto, noauto, user,
 * users, nofail, _netdev, defaults, x-*) are accepted and ignored. Anything else is an error.
 *
 * Errors: opts_parse returns -EINVAL with a one-line reason in err ("metastored: ..."); main
 * prints it and exits 2. --help / -h and --version / -V return 1 (print usage / version).
 */
#ifndef METASTORE_FS_OPTS_H
#define METASTORE_FS_OPTS_H

#include "node.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OPTS_NODE_ID_MAX 254u
#define OPTS_FUSE_ARGS_BYTES 1024u
#define OPTS_TOKEN_BYTES_MAX 4096u
#define OPTS_TOKEN_BYTES_MIN 16u

typedef enum opts_log_level { LOG_ERROR = 0, LOG_WARN, LOG_INFO, LOG_DEBUG } opts_log_level_t;

typedef struct opts {
	uint32_t id;
	raft_peer_addr_t peers[RAFT_NODE_PEERS_MAX];
	uint32_t n_peers;       /* 1 for a one-node cluster */
	bool single;            /* no --peers given */
	const char *data_dir;   /* points into argv */
	const char *engine;     /* "memory" or "rocksdb" */
	const char *token_file; /* NULL if not given */
	uint64_t value_bytes_max;
	bool foreground;
	opts_log_level_t log_level;
	bool local_reads;
	bool inotify; /* default on (the replay module reads it) */
	bool allow_other;
	bool read_only;
	const char *mountpoint;               /* points into argv */
	char fuse_opts[OPTS_FUSE_ARGS_BYTES]; /* "-o" argument for libfuse, comma-separated */
} opts_t;

/* 0, 1 (help or version asked: usage/version already written to stdout), or -EINVAL with a
 * message in err. argv must outlive o. */
int opts_parse(int argc, char *const argv[], opts_t *o, char *err, size_t err_len);

/* "1=127.0.0.1:7101,2=host:7102" -> peers. 0 or -EINVAL (+ err). */
int opts_parse_peers(const char *s, raft_peer_addr_t *peers, uint32_t *n_peers, char *err, size_t err_len);

/* "8388608", "64K", "8M" -> bytes. 0 or -EINVAL (syntax) / -ERANGE (0 or over max). */
int opts_parse_bytes(const char *s, uint64_t max, uint64_t *out);

/* Reads a cluster token file: must be a regular file not readable or writable by group or
 * others (mode & 077 == 0), OPTS_TOKEN_BYTES_MIN..OPTS_TOKEN_BYTES_MAX bytes after trailing
 * whitespace is dropped. Returns the length, or -errno: -ENOENT/-EACCES (open), -EPERM (mode),
 * -EINVAL (not a regular file, or too short), -EFBIG (too long), -ELOOP (a symlink: not
 * followed); err says which. */
int opts_read_token(const char *path, uint8_t *buf, size_t cap, char *err, size_t err_len);

void opts_usage(FILE *f);

#endif
