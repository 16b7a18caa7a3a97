/* transport.c - peer transport on libuv TCP: authenticated one-way links carrying CRC'd frames.
 *
 * The protocol and the guarantees are described in transport.h; this file is their mechanics.
 * Every connection is a `struct conn` that embeds its uv_tcp_t, its handshake timer and its
 * requests, and is freed when both handles have closed (libuv runs cancelled request callbacks
 * before close callbacks, so a conn outlives every callback that can name it). The transport
 * counts every open handle, its own and its conns', and frees itself when that count drops to
 * zero after transport_close.
 *
 * Receive buffers: during a handshake a conn reads into at most HS_RBUF_BYTES, so an
 * unauthenticated stranger costs little memory (and at most TRANSPORT_PENDING_CONNS_MAX of them
 * are kept). After it, the buffer grows to hold one whole frame (capped by frame_bytes_max) so a
 * large frame is read in place without copying, and shrinks back once it has been delivered.
 *
 * Send buffers: each outbound conn has two byte buffers, `pend` (being filled by transport_send)
 * and `infl` (handed to uv_write). A flush swaps them, so one write carries everything queued
 * since the last one. Known limit: a queue larger than the socket buffer is copied once into
 * `pend`; a scatter list of caller buffers would avoid that copy but ties callers' memory to
 * the network.
 */
#include "transport.h"
#include "le.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crc32c.h"
#include "sha256.h"

#define container_of(ptr, type, member) ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

#define HS_RBUF_BYTES 128u              /* > HELLO + MAC: a handshake never needs more */
#define RBUF_CHUNK_BYTES (64u * 1024u)  /* read-ahead once authenticated */
#define BUF_SHRINK_BYTES (1024u * 1024u) /* idle buffers above this are released */
#define QUEUE_SLACK_BYTES (16u * 1024u * 1024u)
#define LISTEN_BACKLOG 128
#define KEEPALIVE_IDLE_S 5
#define KEEPALIVE_INTERVAL_S 2
#define KEEPALIVE_PROBES 3
#define USER_TIMEOUT_MS 15000
#define ADDR_TEXT_BYTES 96u
#define ACCEPT_RETRY_MS 100u
#define LOG_LINE_BYTES 320u
#define MAC_LABEL "metastore v1"

enum conn_dir { CONN_OUT, CONN_IN };

enum conn_state {
	CONN_CONNECTING,  /* out: uv_tcp_connect in flight */
	CONN_HELLO_WAIT,  /* out: waiting for HELLO_S + MAC_S; in: waiting for HELLO_C */
	CONN_PROOF_WAIT,  /* in: waiting for MAC_C */
	CONN_READY,       /* authenticated */
	CONN_CLOSING,     /* uv_close called; waiting for the close callbacks */
};

/* Why a connection is dropped: decides the counter and the log level. */
enum drop_kind {
	DROP_CONNECT,  /* dial did not reach the handshake */
	DROP_AUTH,     /* handshake failed */
	DROP_PROTOCOL, /* bad bytes after the handshake */
	DROP_LOST,     /* an authenticated link ended (EOF, reset, write error) */
};

struct sendbuf {
	uint8_t *buf;
	size_t len;
	size_t cap;
	uint64_t frames;
	uint64_t payload_bytes;
};

struct peer;

struct conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* connect + handshake deadline */
	uv_connect_t connect_req;
	uv_write_t hello_req;
	uv_write_t proof_req;
	uv_write_t data_req;
	transport_t *t;
	struct peer *peer; /* out: the peer dialed; in: the claimed peer once its HELLO checked out */
	struct conn *prev, *next; /* in: the transport's list of inbound conns */
	enum conn_dir dir;
	enum conn_state state;
	unsigned handles_open;
	bool counted_pending; /* in: counts in t->inbound_pending */
	bool data_write_active;
	uint8_t nonce_c[TRANSPORT_NONCE_BYTES];
	uint8_t nonce_s[TRANSPORT_NONCE_BYTES];
	uint8_t hello_out[TRANSPORT_HELLO_BYTES + TRANSPORT_MAC_BYTES];
	uint8_t proof_out[TRANSPORT_MAC_BYTES];
	uint8_t *rbuf;
	size_t rbuf_len;
	size_t rbuf_cap;
	struct sendbuf pend; /* out: frames queued since the last flush */
	struct sendbuf infl; /* out: frames in the uv_write in flight */
	char remote[ADDR_TEXT_BYTES];
};

struct peer {
	transport_t *t;
	bool used; /* slot holds a peer; unused slots keep their (idle) timer */
	uint64_t id;
	bool has_addr;
	struct sockaddr_storage addr;
	char addr_text[ADDR_TEXT_BYTES];
	uv_timer_t backoff_timer;
	struct conn *out; /* the current dial, in any state; NULL while backing off */
	struct conn *in;  /* the authenticated inbound conn */
	uint32_t backoff_ms;
	uint64_t dials;
	bool connected;          /* as last reported to on_peer_state */
	bool unreachable_logged; /* one line per outage, not one per retry */
};

struct transport {
	uv_loop_t *loop;
	uint64_t id;
	uint8_t token[TRANSPORT_TOKEN_BYTES_MAX];
	size_t token_len;
	uint32_t frame_bytes_max;
	size_t queue_bytes_max;
	uint32_t handshake_timeout_ms;
	uint32_t backoff_min_ms;
	uint32_t backoff_max_ms;
	uint64_t rng;
	transport_message_cb on_message;
	transport_peer_state_cb on_peer_state;
	transport_log_cb log;
	void *ctx;
	uv_tcp_t listener;
	uv_check_t flush_check; /* flushes at the end of a loop iteration */
	uv_idle_t flush_idle;   /* keeps that iteration's poll from blocking */
	uv_timer_t accept_retry; /* after an accept we could not allocate for */
	bool flush_scheduled;
	uint16_t port;
	struct peer peers[TRANSPORT_PEERS_MAX]; /* slots; every backoff timer is initialized */
	struct conn *inbound; /* every inbound conn not yet closing */
	size_t inbound_pending;
	unsigned handles_open;
	bool closing;
	transport_close_cb close_cb;
	transport_stats_t stats;
};

/* ---- small helpers ---- */

static uint64_t splitmix64(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int random_fill(void *buf, size_t len)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = getrandom(p, len, 0);
		if (n < 0) {
			if (errno == EINTR) continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void errmsg(char *errbuf, size_t errbuf_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void errmsg(char *errbuf, size_t errbuf_len, const char *fmt, ...)
{
	if (errbuf == NULL || errbuf_len == 0) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errbuf_len, fmt, ap);
	va_end(ap);
}

static void tlog(transport_t *t, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void tlog(transport_t *t, int level, const char *fmt, ...)
{
	char line[LOG_LINE_BYTES];
	int n = snprintf(line, sizeof line, "transport[node %llu]: ", (unsigned long long)t->id);
	assert(n > 0 && (size_t)n < sizeof line);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	va_end(ap);
	if (t->log != NULL) {
		t->log(t->ctx, level, line);
	} else {
		fprintf(stderr, "%s\n", line);
	}
}

static struct peer *peer_find(transport_t *t, uint64_t id)
{
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		if (t->peers[i].used && t->peers[i].id == id) return &t->peers[i];
	}
	return NULL;
}

/* "a.b.c.d:port", "[v6]:port" or "name:port" (resolved once, now, with getaddrinfo). */
static int addr_parse(const char *text, bool port0_ok, struct sockaddr_storage *out, char *errbuf,
	size_t errbuf_len)
{
	assert(text != NULL);
	char host[256];
	const char *colon;
	const char *host_start = text;
	size_t host_len;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':') goto bad;
		host_start = text + 1;
		host_len = (size_t)(close - host_start);
		colon = close + 1;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL) goto bad;
		host_len = (size_t)(colon - text);
		if (memchr(text, ':', host_len) != NULL) goto bad; /* bare IPv6 needs brackets */
	}
	if (host_len == 0 || host_len >= sizeof host) goto bad;
	memcpy(host, host_start, host_len);
	host[host_len] = '\0';

	const char *ps = colon + 1;
	size_t digits = strspn(ps, "0123456789");
	if (digits == 0 || digits > 5 || ps[digits] != '\0') goto bad;
	unsigned long port = strtoul(ps, NULL, 10);
	if (port > 65535 || (port == 0 && !port0_ok)) goto bad;

	memset(out, 0, sizeof *out);
	struct sockaddr_in *v4 = (struct sockaddr_in *)out;
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
	if (uv_ip4_addr(host, (int)port, v4) == 0) return 0;
	if (uv_ip6_addr(host, (int)port, v6) == 0) return 0;

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int r = getaddrinfo(host, NULL, &hints, &res);
	if (r != 0 || res == NULL) {
		errmsg(errbuf, errbuf_len, "cannot resolve '%s': %s", host, gai_strerror(r));
		if (res != NULL) freeaddrinfo(res);
		return -EINVAL;
	}
	if (res->ai_addrlen > sizeof *out) {
		freeaddrinfo(res);
		goto bad;
	}
	memcpy(out, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (out->ss_family == AF_INET) {
		v4->sin_port = htons((uint16_t)port);
	} else if (out->ss_family == AF_INET6) {
		v6->sin6_port = htons((uint16_t)port);
	} else {
		goto bad;
	}
	return 0;
bad:
	errmsg(errbuf, errbuf_len, "bad address '%s' (want host:port, [v6]:port, port 1..65535%s)", text,
		port0_ok ? " or 0" : "");
	return -EINVAL;
}

static socklen_t sockaddr_len(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

static void addr_text(const struct sockaddr_storage *ss, char *out, size_t out_len)
{
	char ip[64] = "?";
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *v4 = (const struct sockaddr_in *)ss;
		uv_ip4_name(v4, ip, sizeof ip);
		snprintf(out, out_len, "%s:%u", ip, (unsigned)ntohs(v4->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)ss;
		uv_ip6_name(v6, ip, sizeof ip);
		snprintf(out, out_len, "[%s]:%u", ip, (unsigned)ntohs(v6->sin6_port));
	} else {
		snprintf(out, out_len, "?");
	}
}

/* ---- pure codec ---- */

void transport_frame_header(uint8_t header[TRANSPORT_FRAME_HEADER_BYTES], const uint8_t *payload,
	uint32_t len)
{
	assert(header != NULL);
	assert(payload != NULL || len == 0);
	put_le32(header, len);
	put_le32(header + 4, crc32c(0, payload, len));
}

int transport_frame_parse(const uint8_t *buf, size_t len, uint32_t frame_bytes_max,
	transport_frame_t *out)
{
	assert(buf != NULL || len == 0);
	assert(out != NULL);
	out->payload = NULL;
	out->payload_len = 0;
	out->frame_bytes = 0;
	if (len < TRANSPORT_FRAME_HEADER_BYTES) return 0;
	uint32_t payload_len = get_le32(buf);
	uint32_t crc = get_le32(buf + 4);
	if (payload_len > frame_bytes_max) return -EMSGSIZE;
	size_t total = TRANSPORT_FRAME_HEADER_BYTES + (size_t)payload_len;
	out->frame_bytes = total;
	if (len < total) return 0;
	if (crc32c(0, buf + TRANSPORT_FRAME_HEADER_BYTES, payload_len) != crc) return -EBADMSG;
	out->payload = buf + TRANSPORT_FRAME_HEADER_BYTES;
	out->payload_len = payload_len;
	return 1;
}

void transport_hello_encode(uint8_t out[TRANSPORT_HELLO_BYTES], const transport_hello_t *h)
{
	assert(out != NULL && h != NULL);
	assert(h->role == TRANSPORT_ROLE_DIALER || h->role == TRANSPORT_ROLE_ACCEPTOR);
	assert(h->from_id != 0 && h->to_id != 0);
	put_le32(out, TRANSPORT_HELLO_MAGIC);
	out[4] = TRANSPORT_VERSION;
	out[5] = h->role;
	put_le16(out + 6, 0);
	put_le64(out + 8, h->from_id);
	put_le64(out + 16, h->to_id);
	memcpy(out + 24, h->nonce, TRANSPORT_NONCE_BYTES);
}

int transport_hello_parse(const uint8_t *buf, size_t len, transport_hello_t *out)
{
	assert(buf != NULL || len == 0);
	assert(out != NULL);
	if (len < TRANSPORT_HELLO_BYTES) return 0;
	if (get_le32(buf) != TRANSPORT_HELLO_MAGIC) return -EBADMSG;
	if (buf[4] != TRANSPORT_VERSION) return -EBADMSG;
	if (buf[5] != TRANSPORT_ROLE_DIALER && buf[5] != TRANSPORT_ROLE_ACCEPTOR) return -EBADMSG;
	if (get_le16(buf + 6) != 0) return -EBADMSG;
	uint64_t from_id = get_le64(buf + 8);
	uint64_t to_id = get_le64(buf + 16);
	if (from_id == 0 || to_id == 0) return -EBADMSG;
	out->role = buf[5];
	out->from_id = from_id;
	out->to_id = to_id;
	memcpy(out->nonce, buf + 24, TRANSPORT_NONCE_BYTES);
	return (int)TRANSPORT_HELLO_BYTES;
}

void transport_handshake_mac(const uint8_t *token, size_t token_len, uint8_t role, uint64_t own_id,
	uint64_t peer_id, const uint8_t nonce_c[TRANSPORT_NONCE_BYTES],
	const uint8_t nonce_s[TRANSPORT_NONCE_BYTES], uint8_t out[TRANSPORT_MAC_BYTES])
{
	assert(token != NULL || token_len == 0);
	assert(nonce_c != NULL && nonce_s != NULL && out != NULL);
	uint8_t ids[16];
	put_le64(ids, own_id);
	put_le64(ids + 8, peer_id);
	hmac_sha256_ctx_t h;
	hmac_sha256_init(&h, token, token_len);
	hmac_sha256_update(&h, MAC_LABEL, strlen(MAC_LABEL));
	hmac_sha256_update(&h, &role, 1);
	hmac_sha256_update(&h, ids, sizeof ids);
	hmac_sha256_update(&h, nonce_c, TRANSPORT_NONCE_BYTES);
	hmac_sha256_update(&h, nonce_s, TRANSPORT_NONCE_BYTES);
	hmac_sha256_final(&h, out);
}

/* ---- token file ---- */

int transport_token_load(const char *path, uint8_t *out, size_t out_max, size_t *len, char *errbuf,
	size_t errbuf_len)
{
	assert(path != NULL && out != NULL && len != NULL);
	*len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		int r = -errno;
		errmsg(errbuf, errbuf_len, "cannot open token file %s: %s", path, strerror(-r));
		return r;
	}
	int r = 0;
	uint8_t buf[TRANSPORT_TOKEN_BYTES_MAX + 3]; /* room for "\r\n" and one byte too many */
	size_t n = 0;
	struct stat st;
	if (fstat(fd, &st) != 0) {
		r = -errno;
		errmsg(errbuf, errbuf_len, "cannot stat token file %s: %s", path, strerror(-r));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		errmsg(errbuf, errbuf_len, "token file %s is not a regular file", path);
		goto out;
	}
	if ((st.st_mode & 077) != 0) {
		r = -EACCES;
		errmsg(errbuf, errbuf_len,
			"token file %s has mode %04o: group and others must have no access (chmod 600 %s)", path,
			(unsigned)(st.st_mode & 07777), path);
		goto out;
	}
	while (n < sizeof buf) {
		ssize_t k = read(fd, buf + n, sizeof buf - n);
		if (k < 0) {
			if (errno == EINTR) continue;
			r = -errno;
			errmsg(errbuf, errbuf_len, "cannot read token file %s: %s", path, strerror(-r));
			goto out;
		}
		if (k == 0) break;
		n += (size_t)k;
	}
	if (n > 0 && buf[n - 1] == '\n') {
		n--;
		if (n > 0 && buf[n - 1] == '\r') n--;
	}
	if (n > TRANSPORT_TOKEN_BYTES_MAX || n > out_max) {
		r = -EFBIG;
		errmsg(errbuf, errbuf_len, "token file %s is too large (at most %zu bytes)", path,
			out_max < TRANSPORT_TOKEN_BYTES_MAX ? out_max : (size_t)TRANSPORT_TOKEN_BYTES_MAX);
		goto out;
	}
	if (n == 0) {
		r = -EINVAL;
		errmsg(errbuf, errbuf_len, "token file %s is empty", path);
		goto out;
	}
	if (n < TRANSPORT_TOKEN_BYTES_MIN) {
		r = -EINVAL;
		errmsg(errbuf, errbuf_len,
			"token in %s is %zu bytes; at least %u needed (e.g. head -c 32 /dev/urandom | base64 > FILE)",
			path, n, TRANSPORT_TOKEN_BYTES_MIN);
		goto out;
	}
	memcpy(out, buf, n);
	*len = n;
out:
	explicit_bzero(buf, sizeof buf);
	close(fd);
	return r;
}

/* ---- handle bookkeeping ---- */

static void transport_handle_released(transport_t *t)
{
	assert(t->handles_open > 0);
	t->handles_open--;
	if (!t->closing || t->handles_open > 0) return;
	if (t->close_cb != NULL) t->close_cb(t, t->ctx);
	explicit_bzero(t->token, sizeof t->token);
	free(t);
}

static void on_transport_handle_closed(uv_handle_t *h)
{
	transport_handle_released(h->data);
}

static void conn_handle_released(struct conn *c)
{
	transport_t *t = c->t;
	assert(c->state == CONN_CLOSING);
	assert(c->handles_open > 0);
	c->handles_open--;
	if (c->handles_open == 0) {
		free(c->rbuf);
		free(c->pend.buf);
		free(c->infl.buf);
		free(c);
	}
	transport_handle_released(t);
}

static void on_conn_tcp_closed(uv_handle_t *h)
{
	conn_handle_released(container_of((uv_tcp_t *)h, struct conn, tcp));
}

static void on_conn_timer_closed(uv_handle_t *h)
{
	conn_handle_released(container_of((uv_timer_t *)h, struct conn, timer));
}

static struct conn *conn_new(transport_t *t, enum conn_dir dir)
{
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL) return NULL;
	if (uv_tcp_init(t->loop, &c->tcp) != 0) {
		free(c);
		return NULL;
	}
	int r = uv_timer_init(t->loop, &c->timer);
	assert(r == 0);
	(void)r;
	c->t = t;
	c->dir = dir;
	c->state = CONN_CONNECTING;
	c->handles_open = 2;
	t->handles_open += 2;
	snprintf(c->remote, sizeof c->remote, "?");
	return c;
}

/* Close c without callbacks to the user; safe to call twice. */
static void conn_close(struct conn *c)
{
	if (c->state == CONN_CLOSING) return;
	transport_t *t = c->t;
	c->state = CONN_CLOSING;
	if (c->dir == CONN_IN) {
		if (c->prev != NULL) c->prev->next = c->next;
		else t->inbound = c->next;
		if (c->next != NULL) c->next->prev = c->prev;
		c->prev = c->next = NULL;
		if (c->counted_pending) {
			assert(t->inbound_pending > 0);
			t->inbound_pending--;
			c->counted_pending = false;
		}
		if (c->peer != NULL && c->peer->in == c) c->peer->in = NULL;
	} else {
		assert(c->peer != NULL);
		if (c->peer->out == c) c->peer->out = NULL;
		/* Queued frames die with the link; a completed write whose callback has not run yet
		 * is counted here too (its callback sees CONN_CLOSING and counts nothing). */
		t->stats.drops_link_lost += c->pend.frames + c->infl.frames;
	}
	uv_close((uv_handle_t *)&c->tcp, on_conn_tcp_closed);
	uv_close((uv_handle_t *)&c->timer, on_conn_timer_closed);
}

/* ---- dialing ---- */

static void peer_dial(struct peer *p);

static void on_backoff_timer(uv_timer_t *timer)
{
	struct peer *p = container_of(timer, struct peer, backoff_timer);
	if (p->t->closing || p->out != NULL || !p->has_addr) return;
	peer_dial(p);
}

uint32_t transport_backoff_next(uint64_t *rng, uint32_t *backoff_ms, uint32_t backoff_max_ms)
{
	assert(rng != NULL && backoff_ms != NULL);
	uint32_t d = *backoff_ms;
	assert(d > 0 && d <= backoff_max_ms);
	uint32_t delay_ms = d / 2 + (uint32_t)(splitmix64(rng) % (d - d / 2 + 1)); /* equal jitter */
	*backoff_ms = d > backoff_max_ms / 2 ? backoff_max_ms : d * 2;
	return delay_ms;
}

static void peer_schedule_dial(struct peer *p, bool immediate)
{
	transport_t *t = p->t;
	if (t->closing || !p->has_addr || p->out != NULL) return;
	uint64_t delay_ms = 0;
	if (!immediate) delay_ms = transport_backoff_next(&t->rng, &p->backoff_ms, t->backoff_max_ms);
	uv_timer_start(&p->backoff_timer, on_backoff_timer, delay_ms, 0);
}

static void peer_link_down(struct peer *p)
{
	if (!p->connected) return;
	p->connected = false;
	transport_t *t = p->t;
	if (!t->closing && t->on_peer_state != NULL) t->on_peer_state(t->ctx, p->id, false);
}

static const char *conn_who(const struct conn *c, char *buf, size_t len)
{
	if (c->peer != NULL) {
		snprintf(buf, len, "node %llu (%s %s)", (unsigned long long)c->peer->id,
			c->dir == CONN_OUT ? "dialed at" : "from", c->dir == CONN_OUT ? c->peer->addr_text : c->remote);
	} else {
		snprintf(buf, len, "inbound connection from %s", c->remote);
	}
	return buf;
}

/* Drop c: count, log, close; an outbound link is redialed with backoff. */
static void conn_drop(struct conn *c, enum drop_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_drop(struct conn *c, enum drop_kind kind, const char *fmt, ...)
{
	assert(c->state != CONN_CLOSING);
	transport_t *t = c->t;
	char why[160];
	char who[ADDR_TEXT_BYTES + 48];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof why, fmt, ap);
	va_end(ap);
	conn_who(c, who, sizeof who);

	struct peer *p = c->dir == CONN_OUT ? c->peer : NULL;
	switch (kind) {
	case DROP_CONNECT:
		t->stats.connect_failures++;
		assert(p != NULL);
		if (!p->unreachable_logged) {
			tlog(t, TRANSPORT_LOG_WARN, "cannot reach %s: %s; retrying with backoff", who, why);
			p->unreachable_logged = true;
		}
		break;
	case DROP_AUTH:
		t->stats.auth_failures++;
		tlog(t, TRANSPORT_LOG_WARN, "handshake with %s failed: %s; connection dropped", who, why);
		break;
	case DROP_PROTOCOL:
		t->stats.protocol_errors++;
		tlog(t, TRANSPORT_LOG_WARN, "protocol error from %s: %s; connection dropped", who, why);
		break;
	case DROP_LOST:
		tlog(t, TRANSPORT_LOG_INFO, "%s link with %s closed: %s", c->dir == CONN_OUT ? "outbound" : "inbound",
			who, why);
		break;
	}
	conn_close(c);
	if (p != NULL) {
		peer_schedule_dial(p, false);
		peer_link_down(p); /* last: the callback may call back into the transport */
	}
}

static void conn_set_socket_options(struct conn *c)
{
	/* Best effort: a socket that refuses an option still works, just less well. */
	uv_tcp_nodelay(&c->tcp, 1);
	uv_tcp_keepalive(&c->tcp, 1, KEEPALIVE_IDLE_S);
	uv_os_fd_t fd;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return;
	int v = KEEPALIVE_INTERVAL_S;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof v);
	v = KEEPALIVE_PROBES;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof v);
	unsigned int ut = USER_TIMEOUT_MS;
	setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ut, sizeof ut);
}

static void on_handshake_timeout(uv_timer_t *timer)
{
	struct conn *c = container_of(timer, struct conn, timer);
	if (c->state == CONN_CLOSING || c->state == CONN_READY) return;
	if (c->state == CONN_CONNECTING) {
		conn_drop(c, DROP_CONNECT, "connect timed out after %u ms", c->t->handshake_timeout_ms);
	} else {
		conn_drop(c, DROP_AUTH, "no handshake within %u ms", c->t->handshake_timeout_ms);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_handshake_write(uv_write_t *req, int status)
{
	struct conn *c = req->data; /* hello_req or proof_req */
	assert(c != NULL);
	if (status == 0 || c->state == CONN_CLOSING) return;
	conn_drop(c, c->state == CONN_READY ? DROP_LOST : DROP_AUTH, "handshake write failed: %s",
		uv_strerror(status));
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, connect_req);
	if (c->state == CONN_CLOSING) return; /* cancelled by close */
	assert(c->state == CONN_CONNECTING && c->dir == CONN_OUT);
	if (status < 0) {
		conn_drop(c, DROP_CONNECT, "%s", uv_strerror(status));
		return;
	}
	transport_t *t = c->t;
	conn_set_socket_options(c);
	int r = random_fill(c->nonce_c, sizeof c->nonce_c);
	if (r < 0) {
		conn_drop(c, DROP_CONNECT, "getrandom: %s", strerror(-r));
		return;
	}
	transport_hello_t h = {.role = TRANSPORT_ROLE_DIALER, .from_id = t->id, .to_id = c->peer->id};
	memcpy(h.nonce, c->nonce_c, sizeof h.nonce);
	transport_hello_encode(c->hello_out, &h);
	uv_buf_t b = uv_buf_init((char *)c->hello_out, TRANSPORT_HELLO_BYTES);
	c->hello_req.data = c;
	r = uv_write(&c->hello_req, (uv_stream_t *)&c->tcp, &b, 1, on_handshake_write);
	if (r == 0) r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r < 0) {
		conn_drop(c, DROP_CONNECT, "%s", uv_strerror(r));
		return;
	}
	c->state = CONN_HELLO_WAIT;
}

static void peer_dial(struct peer *p)
{
	transport_t *t = p->t;
	assert(p->out == NULL && p->has_addr && !t->closing);
	p->dials++;
	if (p->dials > 1) t->stats.reconnects++;
	struct conn *c = conn_new(t, CONN_OUT);
	if (c == NULL) {
		t->stats.connect_failures++;
		tlog(t, TRANSPORT_LOG_WARN, "out of memory dialing node %llu", (unsigned long long)p->id);
		peer_schedule_dial(p, false);
		return;
	}
	c->peer = p;
	p->out = c;
	snprintf(c->remote, sizeof c->remote, "%s", p->addr_text);
	uv_timer_start(&c->timer, on_handshake_timeout, t->handshake_timeout_ms, 0);
	int r = uv_tcp_connect(&c->connect_req, &c->tcp, (const struct sockaddr *)&p->addr, on_connect);
	if (r < 0) conn_drop(c, DROP_CONNECT, "%s", uv_strerror(r));
}

/* ---- handshake steps; each returns bytes consumed, 0 for "need more", -1 if c was dropped ---- */

static int conn_in_hello(struct conn *c, const uint8_t *p, size_t n)
{
	transport_t *t = c->t;
	transport_hello_t h;
	int r = transport_hello_parse(p, n, &h);
	if (r == 0) return 0;
	if (r < 0 || h.role != TRANSPORT_ROLE_DIALER) {
		conn_drop(c, DROP_AUTH, "malformed HELLO");
		return -1;
	}
	if (h.to_id != t->id) {
		conn_drop(c, DROP_AUTH, "it dialed node %llu, but this is node %llu", (unsigned long long)h.to_id,
			(unsigned long long)t->id);
		return -1;
	}
	struct peer *peer = peer_find(t, h.from_id);
	if (peer == NULL) {
		conn_drop(c, DROP_AUTH, "it claims node id %llu, which is not a configured peer",
			(unsigned long long)h.from_id);
		return -1;
	}
	c->peer = peer;
	memcpy(c->nonce_c, h.nonce, sizeof c->nonce_c);
	int e = random_fill(c->nonce_s, sizeof c->nonce_s);
	if (e < 0) {
		conn_drop(c, DROP_AUTH, "getrandom: %s", strerror(-e));
		return -1;
	}
	transport_hello_t reply = {.role = TRANSPORT_ROLE_ACCEPTOR, .from_id = t->id, .to_id = peer->id};
	memcpy(reply.nonce, c->nonce_s, sizeof reply.nonce);
	transport_hello_encode(c->hello_out, &reply);
	transport_handshake_mac(t->token, t->token_len, TRANSPORT_ROLE_ACCEPTOR, t->id, peer->id, c->nonce_c,
		c->nonce_s, c->hello_out + TRANSPORT_HELLO_BYTES);
	uv_buf_t b = uv_buf_init((char *)c->hello_out, TRANSPORT_HELLO_BYTES + TRANSPORT_MAC_BYTES);
	c->hello_req.data = c;
	e = uv_write(&c->hello_req, (uv_stream_t *)&c->tcp, &b, 1, on_handshake_write);
	if (e < 0) {
		conn_drop(c, DROP_AUTH, "write: %s", uv_strerror(e));
		return -1;
	}
	c->state = CONN_PROOF_WAIT;
	return r;
}

static int conn_in_proof(struct conn *c, const uint8_t *p, size_t n)
{
	transport_t *t = c->t;
	if (n < TRANSPORT_MAC_BYTES) return 0;
	uint8_t expect[TRANSPORT_MAC_BYTES];
	transport_handshake_mac(t->token, t->token_len, TRANSPORT_ROLE_DIALER, c->peer->id, t->id, c->nonce_c,
		c->nonce_s, expect);
	if (!sha256_ct_equal(expect, p, sizeof expect)) {
		conn_drop(c, DROP_AUTH, "bad MAC (wrong cluster token?)");
		return -1;
	}
	uv_timer_stop(&c->timer);
	assert(c->counted_pending && t->inbound_pending > 0);
	c->counted_pending = false;
	t->inbound_pending--;
	c->state = CONN_READY;
	struct conn *old = c->peer->in;
	if (old != NULL) {
		/* The peer redialed (restart, or it saw the old link fail): the newer stream wins, and
		 * closing the older first keeps what we deliver from this node in one stream's order. */
		tlog(t, TRANSPORT_LOG_INFO, "node %llu reconnected; dropping its older inbound connection",
			(unsigned long long)c->peer->id);
		conn_close(old);
	}
	c->peer->in = c;
	tlog(t, TRANSPORT_LOG_INFO, "inbound link from node %llu (%s) up", (unsigned long long)c->peer->id,
		c->remote);
	if (c->peer->out == NULL) {
		/* It is back (a restart): our dial to it may sit in a backoff of up to backoff_max_ms,
		 * and until it connects nothing of ours reaches it (a restarted follower would wait
		 * that long for the leader). Dial now, from the shortest backoff. */
		c->peer->backoff_ms = t->backoff_min_ms;
		peer_schedule_dial(c->peer, true);
	}
	return (int)TRANSPORT_MAC_BYTES;
}

static int conn_out_hello(struct conn *c, const uint8_t *p, size_t n)
{
	transport_t *t = c->t;
	struct peer *peer = c->peer;
	if (n < TRANSPORT_HELLO_BYTES + TRANSPORT_MAC_BYTES) return 0;
	transport_hello_t h;
	int r = transport_hello_parse(p, n, &h);
	if (r < 0 || h.role != TRANSPORT_ROLE_ACCEPTOR) {
		conn_drop(c, DROP_AUTH, "malformed HELLO");
		return -1;
	}
	if (h.from_id != peer->id) {
		conn_drop(c, DROP_AUTH, "the node at that address says it is node %llu", (unsigned long long)h.from_id);
		return -1;
	}
	if (h.to_id != t->id) {
		conn_drop(c, DROP_AUTH, "it answered node %llu, but this is node %llu", (unsigned long long)h.to_id,
			(unsigned long long)t->id);
		return -1;
	}
	memcpy(c->nonce_s, h.nonce, sizeof c->nonce_s);
	uint8_t expect[TRANSPORT_MAC_BYTES];
	transport_handshake_mac(t->token, t->token_len, TRANSPORT_ROLE_ACCEPTOR, peer->id, t->id, c->nonce_c,
		c->nonce_s, expect);
	if (!sha256_ct_equal(expect, p + TRANSPORT_HELLO_BYTES, sizeof expect)) {
		conn_drop(c, DROP_AUTH, "bad MAC (wrong cluster token?)");
		return -1;
	}
	transport_handshake_mac(t->token, t->token_len, TRANSPORT_ROLE_DIALER, t->id, peer->id, c->nonce_c,
		c->nonce_s, c->proof_out);
	uv_buf_t b = uv_buf_init((char *)c->proof_out, TRANSPORT_MAC_BYTES);
	c->proof_req.data = c;
	int e = uv_write(&c->proof_req, (uv_stream_t *)&c->tcp, &b, 1, on_handshake_write);
	if (e < 0) {
		conn_drop(c, DROP_AUTH, "write: %s", uv_strerror(e));
		return -1;
	}
	uv_timer_stop(&c->timer);
	c->state = CONN_READY;
	peer->backoff_ms = t->backoff_min_ms;
	peer->unreachable_logged = false;
	tlog(t, TRANSPORT_LOG_INFO, "outbound link to node %llu (%s) up", (unsigned long long)peer->id,
		peer->addr_text);
	if (!peer->connected) {
		peer->connected = true;
		if (t->on_peer_state != NULL) t->on_peer_state(t->ctx, peer->id, true);
	}
	return (int)(TRANSPORT_HELLO_BYTES + TRANSPORT_MAC_BYTES);
}

/* ---- receiving ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct conn *c = container_of((uv_tcp_t *)h, struct conn, tcp);
	transport_t *t = c->t;
	size_t want_cap;
	if (c->state != CONN_READY || c->dir == CONN_OUT) {
		want_cap = HS_RBUF_BYTES; /* handshakes are tiny; a dialer never receives frames */
	} else {
		size_t need = RBUF_CHUNK_BYTES;
		if (c->rbuf_len >= TRANSPORT_FRAME_HEADER_BYTES) {
			uint32_t payload_len = get_le32(c->rbuf);
			size_t total = TRANSPORT_FRAME_HEADER_BYTES + (size_t)payload_len;
			if (payload_len <= t->frame_bytes_max && total > c->rbuf_len && total - c->rbuf_len > need) {
				need = total - c->rbuf_len; /* read the rest of a large frame in place */
			}
		}
		want_cap = c->rbuf_len + need;
	}
	if (c->rbuf_cap < want_cap) {
		uint8_t *nb = realloc(c->rbuf, want_cap);
		if (nb != NULL) {
			c->rbuf = nb;
			c->rbuf_cap = want_cap;
		}
	}
	if (c->rbuf_cap <= c->rbuf_len) {
		*buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS to on_read */
		return;
	}
	buf->base = (char *)c->rbuf + c->rbuf_len;
	buf->len = c->rbuf_cap - c->rbuf_len;
}

/* Run the state machine over the buffered bytes. */
static void conn_process(struct conn *c)
{
	transport_t *t = c->t;
	size_t off = 0;
	transport_frame_t f;
	for (;;) {
		if (c->state == CONN_CLOSING) return; /* dropped, or closed from a user callback */
		assert(off <= c->rbuf_len);
		const uint8_t *p = c->rbuf + off;
		size_t n = c->rbuf_len - off;
		int r;
		switch (c->state) {
		case CONN_HELLO_WAIT:
			r = c->dir == CONN_IN ? conn_in_hello(c, p, n) : conn_out_hello(c, p, n);
			break;
		case CONN_PROOF_WAIT:
			assert(c->dir == CONN_IN);
			r = conn_in_proof(c, p, n);
			break;
		case CONN_READY:
			if (c->dir == CONN_OUT) {
				if (n == 0) goto done;
				conn_drop(c, DROP_PROTOCOL, "%zu unexpected bytes on an outbound link", n);
				return;
			}
			r = transport_frame_parse(p, n, t->frame_bytes_max, &f);
			if (r == -EMSGSIZE) {
				conn_drop(c, DROP_PROTOCOL, "frame of %u bytes exceeds the limit of %u", get_le32(p),
					t->frame_bytes_max);
				return;
			}
			if (r == -EBADMSG) {
				conn_drop(c, DROP_PROTOCOL, "frame CRC mismatch");
				return;
			}
			if (r == 1) {
				assert(f.frame_bytes <= n);
				t->stats.frames_received++;
				t->stats.bytes_received += f.payload_len;
				off += f.frame_bytes; /* not through r: a frame may exceed INT_MAX */
				t->on_message(t->ctx, c->peer->id, f.payload, f.payload_len);
				if (t->closing) return;
				continue;
			}
			break;
		default:
			assert(0 && "conn_process in an impossible state");
			return;
		}
		if (r < 0) return;
		if (r == 0) goto done;
		off += (size_t)r;
	}
done:
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rbuf_len - off);
		c->rbuf_len -= off;
	}
	if (c->rbuf_len == 0 && c->rbuf_cap > BUF_SHRINK_BYTES) {
		free(c->rbuf);
		c->rbuf = NULL;
		c->rbuf_cap = 0;
	}
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	struct conn *c = container_of((uv_tcp_t *)s, struct conn, tcp);
	if (c->state == CONN_CLOSING) return;
	if (nread == 0) return; /* EAGAIN */
	if (nread < 0) {
		const char *why = nread == UV_EOF ? "closed by the other side" : uv_strerror((int)nread);
		if (c->state == CONN_READY) {
			conn_drop(c, DROP_LOST, "%s", why);
		} else {
			conn_drop(c, DROP_AUTH, "%s during the handshake", why);
		}
		return;
	}
	assert((size_t)nread <= c->rbuf_cap - c->rbuf_len);
	c->rbuf_len += (size_t)nread;
	conn_process(c);
}

/* ---- accepting ---- */

static void accept_one(transport_t *t);

static void on_accept_retry(uv_timer_t *timer)
{
	transport_t *t = container_of(timer, transport_t, accept_retry);
	if (!t->closing) accept_one(t);
}

static void on_connection(uv_stream_t *server, int status)
{
	transport_t *t = container_of((uv_tcp_t *)server, transport_t, listener);
	if (t->closing) return;
	if (status < 0) {
		tlog(t, TRANSPORT_LOG_WARN, "accept: %s", uv_strerror(status));
		return;
	}
	accept_one(t);
}

static void accept_one(transport_t *t)
{
	uv_stream_t *server = (uv_stream_t *)&t->listener;
	struct conn *c = conn_new(t, CONN_IN);
	if (c == NULL) {
		/* libuv stops watching the listener until uv_accept is called: try again shortly. */
		tlog(t, TRANSPORT_LOG_WARN, "out of memory accepting a connection; retrying in %u ms",
			ACCEPT_RETRY_MS);
		uv_timer_start(&t->accept_retry, on_accept_retry, ACCEPT_RETRY_MS, 0);
		return;
	}
	c->state = CONN_HELLO_WAIT;
	c->next = t->inbound;
	if (t->inbound != NULL) t->inbound->prev = c;
	t->inbound = c;
	c->counted_pending = true;
	t->inbound_pending++;
	int r = uv_accept(server, (uv_stream_t *)&c->tcp);
	if (r < 0) {
		tlog(t, TRANSPORT_LOG_WARN, "accept: %s", uv_strerror(r));
		conn_close(c);
		return;
	}
	t->stats.accepted++;
	struct sockaddr_storage ss;
	int ss_len = sizeof ss;
	if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &ss_len) == 0) {
		addr_text(&ss, c->remote, sizeof c->remote);
	}
	if (t->inbound_pending > TRANSPORT_PENDING_CONNS_MAX) {
		t->stats.auth_failures++;
		tlog(t, TRANSPORT_LOG_WARN, "refusing %s: %u connections already waiting for a handshake",
			c->remote, TRANSPORT_PENDING_CONNS_MAX);
		conn_close(c);
		return;
	}
	conn_set_socket_options(c);
	uv_timer_start(&c->timer, on_handshake_timeout, t->handshake_timeout_ms, 0);
	r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
	if (r < 0) conn_drop(c, DROP_AUTH, "read: %s", uv_strerror(r));
}

/* ---- sending ---- */

static void conn_flush(struct conn *c);

static void on_data_write(uv_write_t *req, int status)
{
	struct conn *c = container_of(req, struct conn, data_req);
	transport_t *t = c->t;
	assert(c->data_write_active);
	c->data_write_active = false;
	if (c->state == CONN_CLOSING) return;
	if (status < 0) {
		conn_drop(c, DROP_LOST, "write failed: %s", uv_strerror(status));
		return;
	}
	t->stats.frames_sent += c->infl.frames;
	t->stats.bytes_sent += c->infl.payload_bytes;
	c->infl.len = 0;
	c->infl.frames = 0;
	c->infl.payload_bytes = 0;
	if (c->infl.cap > BUF_SHRINK_BYTES) {
		free(c->infl.buf);
		c->infl.buf = NULL;
		c->infl.cap = 0;
	}
	conn_flush(c); /* whatever accumulated while this write was in flight */
}

static void conn_flush(struct conn *c)
{
	transport_t *t = c->t;
	if (c->state != CONN_READY || c->data_write_active || c->pend.len == 0) return;
	assert(c->dir == CONN_OUT);
	assert(c->infl.len == 0);
	struct sendbuf tmp = c->infl;
	c->infl = c->pend;
	c->pend = tmp;
	uv_buf_t b = {.base = (char *)c->infl.buf, .len = c->infl.len}; /* may exceed 4 GiB: no uv_buf_init */
	int r = uv_write(&c->data_req, (uv_stream_t *)&c->tcp, &b, 1, on_data_write);
	if (r < 0) {
		conn_drop(c, DROP_LOST, "write: %s", uv_strerror(r));
		return;
	}
	c->data_write_active = true;
	t->stats.writes++;
}

static void on_flush_idle(uv_idle_t *idle)
{
	(void)idle; /* exists only so that poll does not block before the check runs */
}

void transport_flush(transport_t *t)
{
	assert(t != NULL);
	if (t->closing || !t->flush_scheduled) return;
	t->flush_scheduled = false;
	uv_idle_stop(&t->flush_idle);
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX && !t->closing; i++) {
		struct conn *c = t->peers[i].out;
		if (c != NULL) conn_flush(c);
	}
}

/* Runs every iteration (a no-op unless something was queued). Started once, in transport_new,
 * so check handles the caller starts later run before it in the same iteration. */
static void on_flush_check(uv_check_t *check)
{
	transport_flush(container_of(check, transport_t, flush_check));
}

static void flush_schedule(transport_t *t)
{
	if (t->flush_scheduled) return;
	t->flush_scheduled = true;
	uv_idle_start(&t->flush_idle, on_flush_idle);
}

static int sendbuf_reserve(struct sendbuf *sb, size_t extra, size_t cap_max)
{
	assert(sb->len + extra <= cap_max);
	if (sb->len + extra <= sb->cap) return 0;
	size_t cap = sb->cap > 0 ? sb->cap : RBUF_CHUNK_BYTES;
	while (cap < sb->len + extra) cap *= 2;
	if (cap > cap_max) cap = cap_max;
	uint8_t *nb = realloc(sb->buf, cap);
	if (nb == NULL) return -ENOMEM;
	sb->buf = nb;
	sb->cap = cap;
	return 0;
}

int transport_send(transport_t *t, uint64_t to_id, const uint8_t *buf, size_t len)
{
	assert(t != NULL);
	assert(buf != NULL || len == 0);
	if (t->closing) return -ESHUTDOWN;
	struct peer *p = peer_find(t, to_id);
	if (p == NULL) return -ENOENT;
	if (len > t->frame_bytes_max) return -EMSGSIZE;
	struct conn *c = p->out;
	if (c == NULL || c->state != CONN_READY) {
		t->stats.drops_not_connected++;
		return -ENOTCONN;
	}
	size_t frame = TRANSPORT_FRAME_HEADER_BYTES + len;
	if (c->pend.len + c->infl.len + frame > t->queue_bytes_max ||
		sendbuf_reserve(&c->pend, frame, t->queue_bytes_max) != 0) {
		t->stats.drops_queue_full++;
		return -ENOBUFS;
	}
	uint8_t *dst = c->pend.buf + c->pend.len;
	transport_frame_header(dst, buf, (uint32_t)len);
	if (len > 0) memcpy(dst + TRANSPORT_FRAME_HEADER_BYTES, buf, len);
	c->pend.len += frame;
	c->pend.frames++;
	c->pend.payload_bytes += len;
	flush_schedule(t);
	return 0;
}

/* ---- life cycle ---- */

static int config_check(const transport_config_t *cfg, char *errbuf, size_t errbuf_len)
{
	if (cfg->id == 0) {
		errmsg(errbuf, errbuf_len, "node id must be > 0");
		return -EINVAL;
	}
	if (cfg->on_message == NULL) {
		errmsg(errbuf, errbuf_len, "on_message callback is required");
		return -EINVAL;
	}
	if (cfg->peer_count > 0 && cfg->peers == NULL) {
		errmsg(errbuf, errbuf_len, "peer_count > 0 but no peers");
		return -EINVAL;
	}
	if (cfg->peer_count > TRANSPORT_PEERS_MAX + 1) {
		errmsg(errbuf, errbuf_len, "too many peers (at most %u)", TRANSPORT_PEERS_MAX);
		return -EINVAL;
	}
	size_t others = 0;
	for (size_t i = 0; i < cfg->peer_count; i++) {
		if (cfg->peers[i].id == 0) {
			errmsg(errbuf, errbuf_len, "peer id must be > 0");
			return -EINVAL;
		}
		for (size_t j = 0; j < i; j++) {
			if (cfg->peers[j].id == cfg->peers[i].id) {
				errmsg(errbuf, errbuf_len, "peer id %llu listed twice", (unsigned long long)cfg->peers[i].id);
				return -EINVAL;
			}
		}
		if (cfg->peers[i].id != cfg->id) others++;
	}
	if (others > TRANSPORT_PEERS_MAX) {
		errmsg(errbuf, errbuf_len, "too many peers (at most %u)", TRANSPORT_PEERS_MAX);
		return -EINVAL;
	}
	bool no_token = cfg->token == NULL && cfg->token_len == 0;
	if (!(no_token && others == 0) && (cfg->token == NULL || cfg->token_len < TRANSPORT_TOKEN_BYTES_MIN ||
						  cfg->token_len > TRANSPORT_TOKEN_BYTES_MAX)) {
		errmsg(errbuf, errbuf_len, "cluster token must be %u..%u bytes", TRANSPORT_TOKEN_BYTES_MIN,
			TRANSPORT_TOKEN_BYTES_MAX);
		return -EINVAL;
	}
	if (cfg->frame_bytes_max > TRANSPORT_FRAME_BYTES_MAX_LIMIT) {
		errmsg(errbuf, errbuf_len, "frame_bytes_max above %u", TRANSPORT_FRAME_BYTES_MAX_LIMIT);
		return -EINVAL;
	}
	uint32_t frame_max = cfg->frame_bytes_max ? cfg->frame_bytes_max : TRANSPORT_FRAME_BYTES_MAX_DEFAULT;
	if (cfg->queue_bytes_max != 0 && cfg->queue_bytes_max < (size_t)frame_max + TRANSPORT_FRAME_HEADER_BYTES) {
		errmsg(errbuf, errbuf_len, "queue_bytes_max must hold one frame of frame_bytes_max");
		return -EINVAL;
	}
	uint32_t bmin = cfg->backoff_min_ms ? cfg->backoff_min_ms : TRANSPORT_BACKOFF_MIN_MS_DEFAULT;
	uint32_t bmax = cfg->backoff_max_ms ? cfg->backoff_max_ms : TRANSPORT_BACKOFF_MAX_MS_DEFAULT;
	if (bmax < bmin) {
		errmsg(errbuf, errbuf_len, "backoff_max_ms < backoff_min_ms");
		return -EINVAL;
	}
	return 0;
}

/* A listening socket made directly, so that bind errors come back before any uv handle exists. */
static int listen_socket(const struct sockaddr_storage *ss, const char *text, int *fd_out, char *errbuf,
	size_t errbuf_len)
{
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int r = -errno;
		errmsg(errbuf, errbuf_len, "socket: %s", strerror(-r));
		return r;
	}
	int on = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on); /* rebind over TIME_WAIT after a restart */
	if (bind(fd, (const struct sockaddr *)ss, sockaddr_len(ss)) != 0 || listen(fd, LISTEN_BACKLOG) != 0) {
		int r = -errno;
		errmsg(errbuf, errbuf_len, "cannot listen on %s: %s", text, strerror(-r));
		close(fd);
		return r;
	}
	*fd_out = fd;
	return 0;
}

static void ignore_sigpipe(void)
{
	struct sigaction old;
	if (sigaction(SIGPIPE, NULL, &old) != 0) return;
	if (!(old.sa_flags & SA_SIGINFO) && old.sa_handler == SIG_DFL) {
		struct sigaction ign;
		memset(&ign, 0, sizeof ign);
		ign.sa_handler = SIG_IGN;
		sigemptyset(&ign.sa_mask);
		sigaction(SIGPIPE, &ign, NULL);
	}
}

int transport_new(uv_loop_t *loop, const transport_config_t *cfg, transport_t **out, char *errbuf,
	size_t errbuf_len)
{
	assert(loop != NULL && cfg != NULL && out != NULL);
	*out = NULL;
	int r = config_check(cfg, errbuf, errbuf_len);
	if (r < 0) return r;

	const char *listen_text = cfg->listen_addr;
	for (size_t i = 0; i < cfg->peer_count && listen_text == NULL; i++) {
		if (cfg->peers[i].id == cfg->id) listen_text = cfg->peers[i].addr;
	}
	if (listen_text == NULL) {
		errmsg(errbuf, errbuf_len, "no listen address (set listen_addr or list this node among the peers)");
		return -EINVAL;
	}
	struct sockaddr_storage listen_ss;
	r = addr_parse(listen_text, true, &listen_ss, errbuf, errbuf_len);
	if (r < 0) return r;

	transport_t *t = calloc(1, sizeof *t);
	if (t == NULL) {
		errmsg(errbuf, errbuf_len, "out of memory");
		return -ENOMEM;
	}
	t->loop = loop;
	t->id = cfg->id;
	if (cfg->token_len > 0) memcpy(t->token, cfg->token, cfg->token_len);
	t->token_len = cfg->token_len;
	t->frame_bytes_max = cfg->frame_bytes_max ? cfg->frame_bytes_max : TRANSPORT_FRAME_BYTES_MAX_DEFAULT;
	t->queue_bytes_max = cfg->queue_bytes_max
		? cfg->queue_bytes_max
		: (size_t)t->frame_bytes_max + TRANSPORT_FRAME_HEADER_BYTES + QUEUE_SLACK_BYTES;
	t->handshake_timeout_ms =
		cfg->handshake_timeout_ms ? cfg->handshake_timeout_ms : TRANSPORT_HANDSHAKE_TIMEOUT_MS_DEFAULT;
	t->backoff_min_ms = cfg->backoff_min_ms ? cfg->backoff_min_ms : TRANSPORT_BACKOFF_MIN_MS_DEFAULT;
	t->backoff_max_ms = cfg->backoff_max_ms ? cfg->backoff_max_ms : TRANSPORT_BACKOFF_MAX_MS_DEFAULT;
	t->rng = cfg->seed;
	if (t->rng == 0 && random_fill(&t->rng, sizeof t->rng) < 0) t->rng = (uint64_t)uv_hrtime();
	t->on_message = cfg->on_message;
	t->on_peer_state = cfg->on_peer_state;
	t->log = cfg->log;
	t->ctx = cfg->ctx;

	size_t slot = 0;
	for (size_t i = 0; i < cfg->peer_count; i++) {
		if (cfg->peers[i].id == cfg->id) continue;
		struct peer *p = &t->peers[slot++];
		p->used = true;
		p->id = cfg->peers[i].id;
		if (cfg->peers[i].addr != NULL) {
			r = addr_parse(cfg->peers[i].addr, false, &p->addr, errbuf, errbuf_len);
			if (r < 0) {
				free(t);
				return r;
			}
			p->has_addr = true;
			snprintf(p->addr_text, sizeof p->addr_text, "%s", cfg->peers[i].addr);
		} else {
			snprintf(p->addr_text, sizeof p->addr_text, "(no address)");
		}
	}
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		t->peers[i].t = t;
		t->peers[i].backoff_ms = t->backoff_min_ms;
	}

	int fd = -1;
	r = listen_socket(&listen_ss, listen_text, &fd, errbuf, errbuf_len);
	if (r < 0) {
		free(t);
		return r;
	}
	struct sockaddr_storage bound;
	socklen_t bound_len = sizeof bound;
	if (getsockname(fd, (struct sockaddr *)&bound, &bound_len) == 0) {
		t->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
			: ((struct sockaddr_in *)&bound)->sin_port);
	}

	/* From here on handles exist, and failures must close them through the loop. */
	r = uv_tcp_init(loop, &t->listener);
	if (r < 0) {
		close(fd);
		free(t);
		errmsg(errbuf, errbuf_len, "uv_tcp_init: %s", uv_strerror(r));
		return r;
	}
	t->listener.data = t;
	t->handles_open++;
	uv_check_init(loop, &t->flush_check);
	t->flush_check.data = t;
	t->handles_open++;
	uv_idle_init(loop, &t->flush_idle);
	t->flush_idle.data = t;
	t->handles_open++;
	uv_timer_init(loop, &t->accept_retry);
	t->accept_retry.data = t;
	t->handles_open++;
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		uv_timer_init(loop, &t->peers[i].backoff_timer);
		t->peers[i].backoff_timer.data = t;
		t->handles_open++;
	}
	r = uv_tcp_open(&t->listener, fd);
	if (r < 0) close(fd);
	if (r == 0) r = uv_listen((uv_stream_t *)&t->listener, LISTEN_BACKLOG, on_connection);
	if (r < 0) {
		errmsg(errbuf, errbuf_len, "cannot listen on %s: %s", listen_text, uv_strerror(r));
		transport_close(t, NULL);
		return r;
	}
	uv_check_start(&t->flush_check, on_flush_check);
	ignore_sigpipe();
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		if (t->peers[i].used) peer_schedule_dial(&t->peers[i], true);
	}
	*out = t;
	return 0;
}

void transport_close(transport_t *t, transport_close_cb cb)
{
	assert(t != NULL);
	assert(!t->closing);
	t->closing = true;
	t->close_cb = cb;
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		struct peer *p = &t->peers[i];
		if (p->out != NULL) conn_close(p->out);
		p->connected = false;
		uv_close((uv_handle_t *)&p->backoff_timer, on_transport_handle_closed);
	}
	while (t->inbound != NULL) conn_close(t->inbound);
	uv_close((uv_handle_t *)&t->listener, on_transport_handle_closed);
	uv_close((uv_handle_t *)&t->flush_check, on_transport_handle_closed);
	uv_close((uv_handle_t *)&t->flush_idle, on_transport_handle_closed);
	uv_close((uv_handle_t *)&t->accept_retry, on_transport_handle_closed);
}

/* Point p at addr (NULL: no address) and dial now; the old outbound link, if any, is closed. */
static void peer_readdress(struct peer *p, const struct sockaddr_storage *ss, const char *addr)
{
	transport_t *t = p->t;
	uv_timer_stop(&p->backoff_timer);
	if (p->out != NULL) conn_close(p->out);
	p->has_addr = addr != NULL;
	if (addr != NULL) {
		p->addr = *ss;
		snprintf(p->addr_text, sizeof p->addr_text, "%s", addr);
	} else {
		snprintf(p->addr_text, sizeof p->addr_text, "(no address)");
	}
	p->backoff_ms = t->backoff_min_ms;
	p->unreachable_logged = false;
	peer_schedule_dial(p, true);
}

static int peer_addr_check(transport_t *t, uint64_t id, const char *addr, struct sockaddr_storage *ss)
{
	if (addr == NULL) return 0;
	char err[160];
	int r = addr_parse(addr, false, ss, err, sizeof err);
	if (r < 0) tlog(t, TRANSPORT_LOG_WARN, "node %llu: %s", (unsigned long long)id, err);
	return r;
}

int transport_peer_set_addr(transport_t *t, uint64_t id, const char *addr)
{
	assert(t != NULL);
	if (t->closing) return -ESHUTDOWN;
	struct peer *p = peer_find(t, id);
	if (p == NULL) return -ENOENT;
	struct sockaddr_storage ss;
	int r = peer_addr_check(t, id, addr, &ss);
	if (r < 0) return r;
	peer_readdress(p, &ss, addr);
	peer_link_down(p); /* last: the callback may call back into the transport */
	return 0;
}

int transport_peer_add(transport_t *t, uint64_t id, const char *addr)
{
	assert(t != NULL);
	if (t->closing) return -ESHUTDOWN;
	if (id == 0 || id == t->id || t->token_len == 0) return -EINVAL;
	if (peer_find(t, id) != NULL) return -EEXIST;
	struct sockaddr_storage ss;
	int r = peer_addr_check(t, id, addr, &ss);
	if (r < 0) return r;
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		struct peer *p = &t->peers[i];
		if (p->used) continue;
		assert(p->out == NULL && p->in == NULL && !p->connected);
		p->used = true;
		p->id = id;
		p->dials = 0;
		peer_readdress(p, &ss, addr);
		return 0;
	}
	return -ENOSPC;
}

int transport_peer_remove(transport_t *t, uint64_t id)
{
	assert(t != NULL);
	if (t->closing) return -ESHUTDOWN;
	struct peer *p = peer_find(t, id);
	if (p == NULL) return -ENOENT;
	uv_timer_stop(&p->backoff_timer);
	if (p->out != NULL) conn_close(p->out);
	/* Inbound conns that claimed this id, authenticated or still in their handshake. */
	struct conn *c = t->inbound;
	while (c != NULL) {
		struct conn *next = c->next;
		if (c->peer == p) conn_close(c);
		c = next;
	}
	assert(p->out == NULL && p->in == NULL);
	p->used = false;
	p->has_addr = false;
	p->connected = false;
	p->id = 0;
	return 0;
}

bool transport_peer_connected(const transport_t *t, uint64_t id)
{
	assert(t != NULL);
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		const struct peer *p = &t->peers[i];
		if (p->used && p->id == id) return p->out != NULL && p->out->state == CONN_READY;
	}
	return false;
}

size_t transport_peer_queued_bytes(const transport_t *t, uint64_t id)
{
	assert(t != NULL);
	for (size_t i = 0; i < TRANSPORT_PEERS_MAX; i++) {
		const struct peer *p = &t->peers[i];
		if (p->used && p->id == id) return p->out != NULL ? p->out->pend.len + p->out->infl.len : 0;
	}
	return 0;
}

uint16_t transport_port(const transport_t *t)
{
	assert(t != NULL);
	return t->port;
}

void transport_stats_get(const transport_t *t, transport_stats_t *out)
{
	assert(t != NULL && out != NULL);
	*out = t->stats;
}
