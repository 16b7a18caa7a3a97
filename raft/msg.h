/* msg.h - the Raft message, entry, membership and snapshot-meta types, and their wire codec.
 *
 * These are the values the consensus core (core.h) consumes and produces; the transport carries a
 * message as the bytes raft_msg_encode() writes. The format is versioned (first byte), all integers
 * little-endian, every count and length is capped (the RAFT_*_MAX below), every entry's data and
 * every snapshot chunk carries its CRC32C, and raft_msg_decode() checks all of it: it never reads
 * past `len` and rejects anything malformed with -EINVAL, so a peer cannot crash or confuse the
 * core with garbage. Decoded entries and chunks point into the input buffer (no copy).
 *
 * Wire layout, version 1 (offsets in bytes):
 *   header   80 B: u8 version, u8 type, u8 flags, u8 zero, u32 n_entries, then u64 from, to, term,
 *                  log_term, index, commit, hint, ctx, offset
 *   entry    32 B + data: u64 index, u64 term, u8 type, 3 x u8 zero, u32 len, u32 crc32c(data),
 *                  u32 zero, data           (n_entries times; only RAFT_MSG_APP carries entries)
 *   snapshot (RAFT_MSG_SNAP only): u64 index, u64 term, u64 size_bytes, u32 n_voters, u32 n_learners,
 *                  u64 ids (voters, then learners), u32 chunk_len, u32 crc32c(chunk), chunk
 * The message must end exactly there.
 *
 * A membership-change entry (RAFT_ENTRY_CONF) carries, as its data, the change and the whole
 * resulting configuration (raft_conf_encode), so the configuration in force is simply the one in
 * the last such entry of the log: u8 version, u8 op, u16 zero, u32 n_voters, u64 id,
 * u32 n_learners, u32 zero, then the ids.
 *
 * Errors: -EINVAL (malformed or invalid), -EMSGSIZE (output buffer too small, or over a cap),
 * -ENOBUFS (decode: more entries than the caller's array holds).
 */
#ifndef METASTORE_RAFT_MSG_H
#define METASTORE_RAFT_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_WIRE_VERSION 1u
#define RAFT_NODES_MAX 16u                   /* voters + learners in one configuration */
#define RAFT_MSG_ENTRIES_MAX 1024u           /* entries in one AppendEntries */
#define RAFT_ENTRY_BYTES_MAX (16u << 20)     /* data of one entry */
#define RAFT_SNAP_CHUNK_BYTES_MAX (4u << 20) /* one InstallSnapshot chunk */
#define RAFT_MSG_BYTES_MAX (64u << 20)       /* one encoded message */
#define RAFT_MSG_HEADER_BYTES 80u
#define RAFT_MSG_ENTRY_HEADER_BYTES 32u
#define RAFT_CONF_HEADER_BYTES 24u

typedef enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 1, /* application data */
	RAFT_ENTRY_NOOP = 2,   /* appended by every new leader; no data */
	RAFT_ENTRY_CONF = 3,   /* membership change; data is raft_conf_encode() output */
} raft_entry_type_t;

typedef struct raft_entry {
	uint64_t index;
	uint64_t term;
	uint8_t type; /* raft_entry_type_t */
	uint32_t len;
	const void *data; /* len bytes, NULL when len == 0 */
} raft_entry_t;

/* A configuration: voters decide elections and commits, learners only receive the log. */
typedef struct raft_conf {
	uint32_t n_voters;
	uint32_t n_learners;
	uint64_t voters[RAFT_NODES_MAX];
	uint64_t learners[RAFT_NODES_MAX];
} raft_conf_t;

typedef enum raft_conf_op {
	RAFT_CONF_ADD_LEARNER = 1, /* add a new node as learner */
	RAFT_CONF_ADD_VOTER = 2,   /* promote a (caught-up) learner to voter */
	RAFT_CONF_REMOVE = 3,      /* remove a voter or learner */
} raft_conf_op_t;

typedef struct raft_snapshot_meta {
	uint64_t index; /* last index the snapshot covers */
	uint64_t term;  /* term of that entry */
	uint64_t size_bytes;
	raft_conf_t conf; /* configuration in force at index */
} raft_snapshot_meta_t;

typedef enum raft_msg_type {
	RAFT_MSG_APP = 1,         /* AppendEntries: index/log_term = prev entry, entries, commit */
	RAFT_MSG_APP_RESP,        /* index = match (or rejected prev index); reject: hint, log_term */
	RAFT_MSG_HEARTBEAT,       /* commit, ctx = ReadIndex round */
	RAFT_MSG_HEARTBEAT_RESP,  /* ctx echoed */
	RAFT_MSG_VOTE,            /* index/log_term = candidate's last entry; flag TRANSFER */
	RAFT_MSG_VOTE_RESP,       /* flag REJECT */
	RAFT_MSG_PREVOTE,         /* term = the term the sender would campaign for */
	RAFT_MSG_PREVOTE_RESP,    /* flag REJECT */
	RAFT_MSG_SNAP,            /* one chunk: snap meta, offset, chunk; flag DONE on the last */
	RAFT_MSG_SNAP_RESP,       /* index = snapshot index, offset = next offset wanted; DONE, REJECT */
	RAFT_MSG_TIMEOUT_NOW,     /* leadership transfer: campaign now */
	RAFT_MSG_READ_INDEX,      /* follower -> leader: ctx */
	RAFT_MSG_READ_INDEX_RESP, /* leader -> follower: ctx, index */
	RAFT_MSG_TYPE_MAX = RAFT_MSG_READ_INDEX_RESP,
} raft_msg_type_t;

enum {
	RAFT_MSG_F_REJECT = 1u << 0,
	RAFT_MSG_F_TRANSFER = 1u << 1, /* a vote caused by leadership transfer: ignore the leader lease */
	RAFT_MSG_F_DONE = 1u << 2,     /* SNAP: last chunk; SNAP_RESP: follower now has the snapshot */
	RAFT_MSG_F_ALL = (1u << 3) - 1,
};

typedef struct raft_msg {
	uint8_t type;  /* raft_msg_type_t */
	uint8_t flags; /* RAFT_MSG_F_* */
	uint64_t from, to, term;
	uint64_t log_term, index, commit, hint, ctx, offset;
	uint32_t n_entries;
	const raft_entry_t *entries;
	raft_snapshot_meta_t snap; /* RAFT_MSG_SNAP only */
	uint32_t chunk_len;        /* RAFT_MSG_SNAP only */
	const void *chunk;         /* NULL in a Ready: the application fills in the bytes (core.h) */
} raft_msg_t;

const char *raft_msg_type_name(uint8_t type);

/* 0 when m is a well-formed message (types, flags, ids, entry indexes and caps), else -EINVAL.
 * A RAFT_MSG_SNAP with chunk == NULL and chunk_len > 0 passes only when allow_null_chunk. */
int raft_msg_check(const raft_msg_t *m, bool allow_null_chunk);

/* 0 when e is a valid entry (term >= 1, known type, caps, a NOOP empty, a CONF decodable). */
int raft_entry_check(const raft_entry_t *e);

/* Exact encoded size of m (valid only for a message that passes raft_msg_check). */
size_t raft_msg_size(const raft_msg_t *m);

/* Writes m into buf; returns the byte count, -EINVAL for an invalid message, -EMSGSIZE when
 * cap is too small or the message exceeds RAFT_MSG_BYTES_MAX. */
int raft_msg_encode(const raft_msg_t *m, void *buf, size_t cap);

/* Parses buf[0..len) into *m; m->entries points to `entries` (entries_cap slots) and entry data and
 * the chunk point into buf. Returns 0, -EINVAL, or -ENOBUFS when entries_cap is too small. */
int raft_msg_decode(const void *buf, size_t len, raft_msg_t *m, raft_entry_t *entries, size_t entries_cap);

/* Membership. */
bool raft_conf_is_voter(const raft_conf_t *c, uint64_t id);
bool raft_conf_is_learner(const raft_conf_t *c, uint64_t id);
bool raft_conf_equal(const raft_conf_t *a, const raft_conf_t *b);
int raft_conf_check(const raft_conf_t *c); /* 0, or -EINVAL: ids 0, duplicates, over the cap */
size_t raft_conf_entry_size(const raft_conf_t *c);
int raft_conf_encode(raft_conf_op_t op, uint64_t id, const raft_conf_t *c, void *buf, size_t cap);
int raft_conf_decode(const void *buf, size_t len, raft_conf_op_t *op, uint64_t *id, raft_conf_t *c);

#endif
