/* transport.h - MetaStore's peer transport: opaque messages between node ids over libuv TCP.
 *
 * One transport per node, on a uv_loop_t the caller owns; every call and every callback happens
 * on that loop's thread. It carries byte strings between node ids and knows nothing of Raft.
 *
 * Connections. Links are one-way: every node dials every peer whose address it knows and uses
 * that connection only for its own outgoing messages; it accepts inbound connections only to
 * receive. Two nodes therefore share two TCP connections, one per direction, which removes any
 * tie-break between simultaneous dials and lets each side reconnect on its own schedule. A
 * failed or lost dial is retried with exponential backoff (backoff_min_ms doubling up to
 * backoff_max_ms, "equal jitter": a delay drawn from [d/2, d] by a PRNG seeded from the config).
 * A newer authenticated inbound connection from a node replaces an older one (the peer
 * restarted or redialed), so each sender has at most one live stream and order is preserved.
 * Every socket gets TCP_NODELAY, keepalive (5 s idle, 2 s interval, 3 probes) and a 15 s
 * TCP_USER_TIMEOUT so a silently vanished peer is noticed. Addresses are numeric IPv4, [IPv6],
 * or host names resolved once, synchronously (getaddrinfo), when they are configured:
 * transport_new, transport_peer_set_addr and transport_peer_add may block on DNS for names.
 *
 * Handshake (mutual challenge-response over the shared cluster token). All integers little-endian.
 *   dialer   -> acceptor  HELLO(role 'C', from=dialer, to=acceptor, nonce_c)             56 bytes
 *   acceptor -> dialer    HELLO(role 'S', from=acceptor, to=dialer, nonce_s) + MAC_S      88 bytes
 *   dialer   -> acceptor  MAC_C, then frames                                              32 bytes
 * HELLO = magic "MSTP" | version u8 (1) | role u8 | reserved u16 (0) | from u64 | to u64 |
 * nonce[32]; nonces come from getrandom(2). MAC_x = HMAC-SHA256(token, "metastore v1" | role x |
 * own id | peer id | nonce_c | nonce_s), each side proving itself with its own role and its own
 * id first. The acceptor checks that `to` is itself and `from` a configured peer before it
 * answers; the dialer checks that the node it dialed answers with the expected id and a valid
 * MAC_S, sends MAC_C and counts the link as connected (a peer with the same token will accept
 * the dialer's MAC). The acceptor delivers nothing until MAC_C verifies. MACs are compared in
 * constant time. Any failure (bad MAC, unknown or wrong id, malformed HELLO, no handshake within
 * handshake_timeout_ms, hangup mid-handshake) drops the connection, logs one line, and counts in
 * stats.auth_failures. The token authenticates peers at connect time only: frames after the
 * handshake are neither encrypted nor MAC'd (CRC32C only), so run the cluster on a network you
 * trust or through a tunnel. The acceptor shows MAC_S over a nonce the dialer chose to anyone who
 * names a configured peer id, so a guessable token could be brute-forced offline: tokens must be
 * at least TRANSPORT_TOKEN_BYTES_MIN bytes, and should be random (head -c 32 /dev/urandom | base64).
 * A link is up (on_peer_state(id, true), transport_peer_connected) once the dialer has verified
 * MAC_S and sent MAC_C; before that, sends to the peer are dropped with -ENOTCONN.
 *
 * Frames. payload length u32 | CRC32C(payload) u32 | payload. A length above frame_bytes_max or
 * a CRC mismatch drops the connection (logged, stats.protocol_errors). Reassembly handles partial
 * reads and many frames per read. The dialer's side never receives anything after the handshake;
 * bytes from an acceptor after the handshake are a protocol error too.
 *
 * Sending. transport_send copies the message (the caller keeps its buffer) into the peer's
 * queue, bounded by queue_bytes_max (bytes not yet handed to the kernel plus the write in
 * flight). Messages to a peer whose outbound link is not up, or whose queue is full, are dropped
 * and counted; Raft retransmits. All messages queued for a peer during one loop iteration go out
 * in a single uv_write (one buffer), issued by transport_flush: the caller may call it (e.g. at the
 * end of its own batch), and the transport's check handle calls it after every iteration's I/O
 * (an idle handle keeps that iteration's poll from blocking while frames wait). The check handle
 * is started in transport_new; libuv runs check handles started later first, so frames a caller
 * queues from its own check callback, started after transport_new, still leave in the same
 * iteration. While a write is in flight, new messages accumulate and go out together when it
 * completes.
 *
 * SIGPIPE: libuv writes with write(2)/writev(2), not send(MSG_NOSIGNAL), so a write to a reset
 * connection raises SIGPIPE. transport_new sets SIGPIPE to SIG_IGN if (and only if) it is still
 * SIG_DFL; a process that installed its own handler keeps it.
 *
 * Errors are negative errno values.
 */
#ifndef METASTORE_TRANSPORT_H
#define METASTORE_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define TRANSPORT_PEERS_MAX 64u
#define TRANSPORT_TOKEN_BYTES_MIN 16u
#define TRANSPORT_TOKEN_BYTES_MAX 4096u
#define TRANSPORT_FRAME_HEADER_BYTES 8u
#define TRANSPORT_FRAME_BYTES_MAX_DEFAULT (64u * 1024u * 1024u)
#define TRANSPORT_FRAME_BYTES_MAX_LIMIT (1024u * 1024u * 1024u) /* largest frame_bytes_max accepted */
#define TRANSPORT_NONCE_BYTES 32u
#define TRANSPORT_MAC_BYTES 32u
#define TRANSPORT_HELLO_BYTES 56u
#define TRANSPORT_HELLO_MAGIC 0x5054534du /* "MSTP" read as little-endian u32 */
#define TRANSPORT_VERSION 1u
#define TRANSPORT_ROLE_DIALER 'C'
#define TRANSPORT_ROLE_ACCEPTOR 'S'
#define TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT 2000u
#define TRANSPORT_BACKOFF_MIN_MS_DEFAULT 50u
#define TRANSPORT_BACKOFF_MAX_MS_DEFAULT 2000u
#define TRANSPORT_PENDING_CONNS_MAX 32u /* inbound connections not yet authenticated */

typedef struct transport transport_t;

enum transport_log_level { TRANSPORT_LOG_INFO = 0, TRANSPORT_LOG_WARN = 1 };

/* Message from node `from_id`; buf is valid only during the call. */
typedef void (*transport_message_cb)(void *ctx, uint64_t from_id, const uint8_t *buf, size_t len);
/* The outbound link to `id` came up (connected=true: sends are accepted) or went down. */
typedef void (*transport_peer_state_cb)(void *ctx, uint64_t id, bool connected);
/* One line of text without a trailing newline. Must not call back into the transport
 * (on_message and on_peer_state may call any transport function, transport_close included). */
typedef void (*transport_log_cb)(void *ctx, int level, const char *line);
/* All handles are closed; t is freed right after this returns. */
typedef void (*transport_close_cb)(transport_t *t, void *ctx);

typedef struct transport_peer {
	uint64_t id;      /* > 0 */
	const char *addr; /* "host:port", "[v6]:port" or NULL (not dialed until transport_peer_set_addr) */
} transport_peer_t;

typedef struct transport_config {
	uint64_t id;             /* this node, > 0 */
	const char *listen_addr; /* "host:port", port 0 = ephemeral; NULL: the peers entry with our id */
	/* May include this node itself (its address is then the default listen address; it is never
	 * dialed). Ids must be distinct. At most TRANSPORT_PEERS_MAX others. */
	const transport_peer_t *peers;
	size_t peer_count;
	/* Shared cluster secret, TRANSPORT_TOKEN_BYTES_MIN..MAX bytes; copied. NULL/0 is allowed only
	 * with no other peers (a one-node cluster), and then no peer can ever be added. */
	const uint8_t *token;
	size_t token_len;
	uint32_t frame_bytes_max;      /* payload cap; 0 = TRANSPORT_FRAME_BYTES_MAX_DEFAULT */
	size_t queue_bytes_max;        /* per-peer send queue; 0 = frame_bytes_max + header + 16 MiB;
	                                  must hold at least one largest frame */
	uint32_t handshake_timeout_ms; /* connect + handshake; 0 = default */
	uint32_t backoff_min_ms;       /* 0 = default */
	uint32_t backoff_max_ms;       /* 0 = default; >= backoff_min_ms */
	uint64_t seed;                 /* backoff jitter PRNG; 0 = seeded from getrandom */
	transport_message_cb on_message;       /* required */
	transport_peer_state_cb on_peer_state; /* optional */
	transport_log_cb log;                  /* optional; NULL logs to stderr */
	void *ctx;                             /* passed to every callback */
} transport_config_t;

typedef struct transport_stats {
	uint64_t frames_sent;   /* frames whose write completed */
	uint64_t bytes_sent;    /* payload bytes of those frames */
	uint64_t writes;        /* uv_write calls for frames (coalescing: writes <= frames_sent) */
	uint64_t frames_received;
	uint64_t bytes_received;
	uint64_t drops_not_connected; /* transport_send to a peer whose link was down */
	uint64_t drops_queue_full;    /* transport_send to a full queue (or out of memory) */
	uint64_t drops_link_lost;     /* queued frames discarded when their link closed */
	uint64_t auth_failures;       /* handshakes that failed, inbound or outbound */
	uint64_t protocol_errors;     /* bad frames after a handshake: oversized, bad CRC, stray bytes */
	uint64_t connect_failures;    /* dials that did not reach the handshake */
	uint64_t reconnects;          /* dials after the first to the same peer */
	uint64_t accepted;            /* inbound connections accepted (before authentication) */
} transport_stats_t;

/* Validate cfg, bind and listen, and start dialing every peer with a known address (the first
 * dials happen when the loop runs). Returns 0, -EINVAL (bad config, with the reason in errbuf),
 * -EADDRINUSE / -EADDRNOTAVAIL / -EACCES (cannot listen), -ENOMEM. On error *out is NULL and
 * any partly set-up handles are closed: their memory is released the next time the loop runs. */
int transport_new(uv_loop_t *loop, const transport_config_t *cfg, transport_t **out, char *errbuf,
	size_t errbuf_len);

/* Close every handle; cb runs (on the loop) when all are closed, then t is freed. No message or
 * peer-state callback runs after this call. Call once. */
void transport_close(transport_t *t, transport_close_cb cb);

/* Queue a copy of buf for node to_id. Returns 0, -ENOENT (not a peer, or our own id), -EMSGSIZE
 * (len > frame_bytes_max), -ENOTCONN (link down: dropped), -ENOBUFS (queue full or no memory:
 * dropped), -ESHUTDOWN (transport_close was called). */
int transport_send(transport_t *t, uint64_t to_id, const uint8_t *buf, size_t len);

/* Hand every peer's queued frames to the kernel now (one uv_write per peer; peers with a write
 * in flight are flushed when it completes). Cheap when nothing is queued. */
void transport_flush(transport_t *t);

/* Set (or change) the address a peer is dialed at; closes the current outbound link if any and
 * dials again now. addr NULL stops dialing. Returns 0, -ENOENT (unknown id), -EINVAL (bad
 * address), -ESHUTDOWN. */
int transport_peer_set_addr(transport_t *t, uint64_t id, const char *addr);

/* Membership changes. add: a new peer, dialed now when addr is not NULL; returns 0, -EEXIST,
 * -EINVAL (id 0, our own id, bad address, or the transport has no token), -ENOSPC (already
 * TRANSPORT_PEERS_MAX peers), -ESHUTDOWN. remove: closes both links and drops the queue; nothing
 * more is delivered from it and no peer-state callback runs for it; returns 0, -ENOENT,
 * -ESHUTDOWN. Both are safe to call from on_message. */
int transport_peer_add(transport_t *t, uint64_t id, const char *addr);
int transport_peer_remove(transport_t *t, uint64_t id);

bool transport_peer_connected(const transport_t *t, uint64_t id); /* outbound link is up */
/* Bytes queued for id and not yet confirmed written (frames with headers): lets a sender pace
 * bulk traffic such as snapshot chunks below queue_bytes_max. 0 for an unknown id. */
size_t transport_peer_queued_bytes(const transport_t *t, uint64_t id);
uint16_t transport_port(const transport_t *t);                     /* the bound listen port */
void transport_stats_get(const transport_t *t, transport_stats_t *out);

/* Read a cluster token file. The file must be a regular file that neither group nor others may
 * access (mode 0600 or stricter); one trailing "\n" or "\r\n" is stripped. Returns 0 with the
 * token in out[0..*len), or -EACCES (mode too open), -EINVAL (not a regular file, empty or
 * shorter than TRANSPORT_TOKEN_BYTES_MIN), -EFBIG (longer than out_max or
 * TRANSPORT_TOKEN_BYTES_MAX), or open/read's -errno; errbuf (may be NULL) gets a clear reason. */
int transport_token_load(const char *path, uint8_t *out, size_t out_max, size_t *len, char *errbuf,
	size_t errbuf_len);

/* The reconnect policy, exposed so it can be tested without clocks: returns the next delay,
 * drawn from [d/2, d] where d = *backoff_ms, and doubles *backoff_ms up to backoff_max_ms. */
uint32_t transport_backoff_next(uint64_t *rng, uint32_t *backoff_ms, uint32_t backoff_max_ms);

/* Pure codec, exposed for tests and fuzzing; the transport uses exactly these. */
typedef struct transport_frame {
	const uint8_t *payload; /* points into the parsed buffer */
	uint32_t payload_len;
	size_t frame_bytes; /* header + payload: bytes the frame occupies */
} transport_frame_t;

/* Parse one frame at the start of buf[0..len). Returns 1 with *out filled when a whole valid
 * frame is there; 0 when more bytes are needed (out->frame_bytes is then the total needed if
 * the header is complete, else 0); -EMSGSIZE when the length exceeds frame_bytes_max; -EBADMSG
 * on a CRC mismatch. Never reads outside buf[0..len). */
int transport_frame_parse(const uint8_t *buf, size_t len, uint32_t frame_bytes_max,
	transport_frame_t *out);
/* Write the 8-byte header for payload[0..len). */
void transport_frame_header(uint8_t header[TRANSPORT_FRAME_HEADER_BYTES], const uint8_t *payload,
	uint32_t len);

typedef struct transport_hello {
	uint8_t role; /* TRANSPORT_ROLE_DIALER or TRANSPORT_ROLE_ACCEPTOR */
	uint64_t from_id;
	uint64_t to_id;
	uint8_t nonce[TRANSPORT_NONCE_BYTES];
} transport_hello_t;

void transport_hello_encode(uint8_t out[TRANSPORT_HELLO_BYTES], const transport_hello_t *h);
/* Returns TRANSPORT_HELLO_BYTES with *out filled, 0 when len is short, or -EBADMSG (bad magic,
 * version, role, reserved bits, or a zero id). */
int transport_hello_parse(const uint8_t *buf, size_t len, transport_hello_t *out);
/* MAC for `role` sent by node own_id to node peer_id (see the handshake above). */
void transport_handshake_mac(const uint8_t *token, size_t token_len, uint8_t role, uint64_t own_id,
	uint64_t peer_id, const uint8_t nonce_c[TRANSPORT_NONCE_BYTES],
	const uint8_t nonce_s[TRANSPORT_NONCE_BYTES], uint8_t out[TRANSPORT_MAC_BYTES]);

#endif
