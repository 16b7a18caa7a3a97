/* fsm_node.c - a Raft node process with a tiny test state machine, for process tests and bench.
 *
 * The state machine is an ordered list of applied ids with a running hash, deduplicated by
 * (origin node, sequence) exactly as engine/sm does for real transactions. A client talks to the
 * process over a unix socket, one command per line:
 *   PUT <id> <bytes>        propose a blob of <bytes> (>= 20) carrying <id>;
 *                           -> "OK <id> <index>" once applied here, or "ERR <id> <errno>"
 *   STATE                   -> "STATE <count> <hash> <applied_index>"
 *   HAS <id>                -> "HAS <id> 0|1"
 *   READ <rid>              linearizable barrier -> "READ <rid> 0" (or a negative errno)
 *   STATUS                  -> "STATUS role=.. term=.. leader=.. commit=.. applied=.. first=.. snap=.."
 *   TRANSFER <id> | ADD <id> <host> <port> | REMOVE <id>   -> "OK" or "ERR <errno>"
 *   BENCH <n> <outstanding> <bytes>   run n proposals from inside the process, keeping
 *                           <outstanding> in flight -> "BENCH ops=.. secs=.. ops_per_s=.. p50_us=.."
 *                           "p99_us=.. max_us=.."
 * Usage: fsm_node --id N --peers 1=127.0.0.1:P,... --data DIR --client SOCK [--token-file F]
 *                 [--snapshot-entries N] [--trailing-entries N] [--snapshot-fork 0|1]
 */
#include "node.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#define BLOB_HEADER_BYTES 20u /* origin u32 | seq u64 | id u64 */
#define LINE_BYTES_MAX 512u
#define ORIGINS_MAX 16u
#define PENDING_MAX (1u << 20)
#define LAT_BUCKET_US 25u
#define LAT_BUCKETS 8192u /* 25 us each: 0..204 ms, slower ones land in the last */

typedef struct client client_t;

typedef struct pending {
	uint64_t seq;
	uint64_t id;
	client_t *client; /* NULL for bench proposals */
	uint64_t start_ns;
	bool used;
} pending_t;

typedef struct fsm {
	uv_loop_t *loop;
	raft_node_t *node;
	uint32_t id;
	/* replicated state */
	uint64_t applied_index, count, hash;
	uint64_t origin_seq[ORIGINS_MAX];
	uint64_t *ids; /* applied ids in order */
	size_t ids_cap;
	/* id set for HAS: open addressing */
	uint64_t *set;
	size_t set_cap, set_n;
	/* local */
	uint64_t next_seq;
	pending_t *pending; /* ring indexed by seq % PENDING_MAX */
	uv_pipe_t server;
	client_t *clients;
	/* bench */
	client_t *bench_client;
	uint64_t bench_total, bench_sent, bench_done, bench_bytes, bench_start_ns;
	uint32_t bench_outstanding;
	uint64_t lat_us[LAT_BUCKETS];
	uint64_t lat_max_us;
} fsm_t;

struct client {
	uv_pipe_t pipe;
	fsm_t *fsm;
	char line[LINE_BYTES_MAX];
	size_t line_len;
	client_t *next;
	bool closing;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void put_u32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* ------------------------------------------------------------------ replicated state */

static int set_add(fsm_t *f, uint64_t id)
{
	if ((f->set_n + 1) * 2 > f->set_cap) {
		size_t cap = f->set_cap ? f->set_cap * 2 : 1024;
		uint64_t *s = calloc(cap, sizeof *s);
		if (!s) return -ENOMEM;
		for (size_t i = 0; i < f->set_cap; i++) {
			if (!f->set[i]) continue;
			size_t h = (f->set[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
			while (s[h]) h = (h + 1) & (cap - 1);
			s[h] = f->set[i];
		}
		free(f->set);
		f->set = s;
		f->set_cap = cap;
	}
	size_t h = ((id + 1) * 0x9E3779B97F4A7C15ull) & (f->set_cap - 1);
	while (f->set[h]) h = (h + 1) & (f->set_cap - 1);
	f->set[h] = id + 1; /* 0 marks an empty slot */
	f->set_n++;
	return 0;
}

static bool set_has(const fsm_t *f, uint64_t id)
{
	if (!f->set_cap) return false;
	size_t h = ((id + 1) * 0x9E3779B97F4A7C15ull) & (f->set_cap - 1);
	while (f->set[h]) {
		if (f->set[h] == id + 1) return true;
		h = (h + 1) & (f->set_cap - 1);
	}
	return false;
}

static int state_add(fsm_t *f, uint64_t id)
{
	if (f->count == f->ids_cap) {
		size_t cap = f->ids_cap ? f->ids_cap * 2 : 1024;
		uint64_t *ids = realloc(f->ids, cap * sizeof *ids);
		if (!ids) return -ENOMEM;
		f->ids = ids;
		f->ids_cap = cap;
	}
	f->ids[f->count++] = id;
	f->hash = (f->hash ^ id) * 0x100000001B3ull + 0x9E37;
	return set_add(f, id);
}

static void state_reset(fsm_t *f)
{
	f->count = f->hash = f->applied_index = 0;
	memset(f->origin_seq, 0, sizeof f->origin_seq);
	free(f->set);
	f->set = NULL;
	f->set_cap = f->set_n = 0;
}

/* ------------------------------------------------------------------ clients */

static void client_write(client_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void write_done(uv_write_t *w, int status)
{
	(void)status;
	free(w);
}

static void client_write(client_t *c, const char *fmt, ...)
{
	if (!c || c->closing) return;
	uv_write_t *w = malloc(sizeof *w + LINE_BYTES_MAX);
	if (!w) return;
	char *buf = (char *)(w + 1);
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, LINE_BYTES_MAX, fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)LINE_BYTES_MAX) n = (int)LINE_BYTES_MAX - 1;
	uv_buf_t b = uv_buf_init(buf, (unsigned)n);
	if (uv_write(w, (uv_stream_t *)&c->pipe, &b, 1, write_done) != 0) free(w);
}

static void bench_pump(fsm_t *f);

static void complete(fsm_t *f, uint64_t seq, uint64_t index, int status)
{
	pending_t *p = &f->pending[seq % PENDING_MAX];
	if (!p->used || p->seq != seq) return;
	p->used = false;
	if (p->client) {
		if (status == 0)
			client_write(p->client, "OK %" PRIu64 " %" PRIu64 "\n", p->id, index);
		else
			client_write(p->client, "ERR %" PRIu64 " %d\n", p->id, status);
		return;
	}
	/* bench proposal */
	uint64_t us = (now_ns() - p->start_ns) / 1000;
	uint64_t b = us / LAT_BUCKET_US;
	f->lat_us[b < LAT_BUCKETS ? b : LAT_BUCKETS - 1]++;
	if (us > f->lat_max_us) f->lat_max_us = us;
	f->bench_done++;
	bench_pump(f);
}

static int propose(fsm_t *f, client_t *c, uint64_t id, size_t bytes)
{
	if (bytes < BLOB_HEADER_BYTES) bytes = BLOB_HEADER_BYTES;
	if (bytes > 1u << 20) return -E2BIG;
	uint64_t seq = ++f->next_seq;
	pending_t *p = &f->pending[seq % PENDING_MAX];
	if (p->used) return -EAGAIN;
	uint8_t stackbuf[4096];
	uint8_t *blob = bytes <= sizeof stackbuf ? stackbuf : malloc(bytes);
	if (!blob) return -ENOMEM;
	memset(blob, 0xA5, bytes);
	put_u32(blob, f->id);
	put_u64(blob + 4, seq);
	put_u64(blob + 12, id);
	*p = (pending_t){.seq = seq, .id = id, .client = c, .start_ns = now_ns(), .used = true};
	int rc = raft_node_propose(f->node, blob, bytes, seq);
	if (blob != stackbuf) free(blob);
	if (rc < 0) p->used = false;
	return rc;
}

static void bench_report(fsm_t *f)
{
	double secs = (double)(now_ns() - f->bench_start_ns) / 1e9;
	uint64_t total = 0, p50 = 0, p99 = 0, max = f->lat_max_us, seen = 0;
	for (unsigned b = 0; b < LAT_BUCKETS; b++) total += f->lat_us[b];
	for (unsigned b = 0; b < LAT_BUCKETS; b++) {
		if (!f->lat_us[b]) continue;
		seen += f->lat_us[b];
		uint64_t upper = ((uint64_t)b + 1) * LAT_BUCKET_US; /* bucket upper bound */
		if (!p50 && seen * 2 >= total) p50 = upper;
		if (!p99 && seen * 100 >= total * 99) p99 = upper;
	}
	client_write(f->bench_client,
		     "BENCH ops=%" PRIu64 " secs=%.3f ops_per_s=%.0f p50_us=%" PRIu64 " p99_us=%" PRIu64
		     " max_us=%" PRIu64 "\n",
		     f->bench_done, secs, (double)f->bench_done / secs, p50, p99, max);
	f->bench_client = NULL;
}

static void bench_pump(fsm_t *f)
{
	if (!f->bench_client) return;
	while (f->bench_sent < f->bench_total && f->bench_sent - f->bench_done < f->bench_outstanding) {
		if (propose(f, NULL, 1000000000ull + f->bench_sent, f->bench_bytes) < 0) break;
		f->bench_sent++;
	}
	if (f->bench_done >= f->bench_total) bench_report(f);
}

static void on_client_close(uv_handle_t *h)
{
	client_t *c = h->data;
	fsm_t *f = c->fsm;
	for (client_t **pp = &f->clients; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	for (size_t i = 0; i < PENDING_MAX; i++)
		if (f->pending[i].used && f->pending[i].client == c) f->pending[i].client = NULL, f->pending[i].used = false;
	if (f->bench_client == c) f->bench_client = NULL;
	free(c);
}

static void client_command(client_t *c, char *line)
{
	fsm_t *f = c->fsm;
	uint64_t a = 0, b = 0, d = 0;
	char host[64];
	if (sscanf(line, "PUT %" SCNu64 " %" SCNu64, &a, &b) == 2) {
		int rc = propose(f, c, a, (size_t)b);
		if (rc < 0) client_write(c, "ERR %" PRIu64 " %d\n", a, rc);
	} else if (strcmp(line, "STATE") == 0) {
		client_write(c, "STATE %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", f->count, f->hash, f->applied_index);
	} else if (sscanf(line, "HAS %" SCNu64, &a) == 1) {
		client_write(c, "HAS %" PRIu64 " %d\n", a, set_has(f, a));
	} else if (sscanf(line, "READ %" SCNu64, &a) == 1) {
		int rc = raft_node_read(f->node, a);
		if (rc < 0) client_write(c, "READ %" PRIu64 " %d\n", a, rc); /* else on_read replies */
	} else if (strcmp(line, "STATUS") == 0) {
		raft_node_status_t st;
		raft_node_status(f->node, &st);
		client_write(c,
			     "STATUS role=%d term=%" PRIu64 " leader=%u commit=%" PRIu64 " applied=%" PRIu64
			     " first=%" PRIu64 " snap=%" PRIu64 " last=%" PRIu64 "\n",
			     (int)st.role, st.term, st.leader_id, st.commit_index, st.applied_index, st.first_index,
			     st.snapshot_index, st.last_index);
	} else if (sscanf(line, "TRANSFER %" SCNu64, &a) == 1) {
		int rc = raft_node_transfer_leadership(f->node, (uint32_t)a);
		client_write(c, rc ? "ERR %d\n" : "OK\n", rc);
	} else if (sscanf(line, "ADD %" SCNu64 " %63s %" SCNu64, &a, host, &b) == 3) {
		raft_peer_addr_t p = {.id = (uint32_t)a, .port = (uint16_t)b};
		snprintf(p.host, sizeof p.host, "%s", host);
		int rc = raft_node_add_member(f->node, &p);
		client_write(c, rc ? "ERR %d\n" : "OK\n", rc);
	} else if (sscanf(line, "REMOVE %" SCNu64, &a) == 1) {
		int rc = raft_node_remove_member(f->node, (uint32_t)a);
		client_write(c, rc ? "ERR %d\n" : "OK\n", rc);
	} else if (sscanf(line, "BENCH %" SCNu64 " %" SCNu64 " %" SCNu64, &a, &b, &d) == 3 && a && b) {
		if (f->bench_client) {
			client_write(c, "ERR busy\n");
			return;
		}
		f->bench_client = c;
		f->bench_total = a;
		f->bench_outstanding = (uint32_t)b;
		f->bench_bytes = d;
		f->bench_sent = f->bench_done = 0;
		memset(f->lat_us, 0, sizeof f->lat_us);
		f->lat_max_us = 0;
		f->bench_start_ns = now_ns();
		bench_pump(f);
	} else {
		client_write(c, "ERR bad command\n");
	}
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)h;
	buf->base = malloc(suggested);
	buf->len = buf->base ? suggested : 0;
}

static void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	client_t *c = s->data;
	if (nread < 0) {
		free(buf->base);
		if (!c->closing) {
			c->closing = true;
			uv_close((uv_handle_t *)s, on_client_close);
		}
		return;
	}
	for (ssize_t i = 0; i < nread; i++) {
		char ch = buf->base[i];
		if (ch == '\n') {
			c->line[c->line_len] = 0;
			client_command(c, c->line);
			c->line_len = 0;
		} else if (c->line_len + 1 < LINE_BYTES_MAX) {
			c->line[c->line_len++] = ch;
		}
	}
	free(buf->base);
}

static void on_connection(uv_stream_t *server, int status)
{
	fsm_t *f = server->data;
	if (status < 0) return;
	client_t *c = calloc(1, sizeof *c);
	if (!c) return;
	c->fsm = f;
	uv_pipe_init(f->loop, &c->pipe, 0);
	c->pipe.data = c;
	if (uv_accept(server, (uv_stream_t *)&c->pipe) != 0) {
		uv_close((uv_handle_t *)&c->pipe, on_client_close);
		return;
	}
	c->next = f->clients;
	f->clients = c;
	uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, on_client_read);
}

/* ------------------------------------------------------------------ raft callbacks */

static int cb_apply(void *ctx, uint64_t index, const uint8_t *data, size_t len)
{
	fsm_t *f = ctx;
	assert(index > f->applied_index);
	raft_entry_iter_t it;
	const uint8_t *blob;
	size_t blen;
	int rc;
	raft_entry_iter_init(&it, data, len);
	while ((rc = raft_entry_iter_next(&it, &blob, &blen)) == 1) {
		if (blen < BLOB_HEADER_BYTES) return -EINVAL;
		uint32_t origin = get_u32(blob);
		uint64_t seq = get_u64(blob + 4), id = get_u64(blob + 12);
		if (origin >= ORIGINS_MAX) return -EINVAL;
		if (seq <= f->origin_seq[origin]) continue; /* a retried forward: applied before */
		f->origin_seq[origin] = seq;
		if ((rc = state_add(f, id)) < 0) return rc;
		if (origin == f->id) complete(f, seq, index, 0);
	}
	if (rc < 0) return rc;
	f->applied_index = index;
	return 0;
}

static uint64_t cb_applied_index(void *ctx) { return ((fsm_t *)ctx)->applied_index; }

static int cb_snapshot_write(void *ctx, raft_snap_write_fn fn, void *fn_ctx)
{
	fsm_t *f = ctx;
	uint64_t hdr[3] = {f->applied_index, f->count, f->hash};
	int rc = fn(fn_ctx, hdr, sizeof hdr);
	if (rc == 0) rc = fn(fn_ctx, f->origin_seq, sizeof f->origin_seq);
	if (rc == 0 && f->count) rc = fn(fn_ctx, f->ids, f->count * sizeof *f->ids);
	return rc;
}

static int cb_snapshot_read(void *ctx, raft_snap_read_fn fn, void *fn_ctx)
{
	fsm_t *f = ctx;
	uint64_t hdr[3];
	int rc = fn(fn_ctx, hdr, sizeof hdr);
	if (rc < 0) return rc;
	uint64_t seqs[ORIGINS_MAX];
	if ((rc = fn(fn_ctx, seqs, sizeof seqs)) < 0) return rc;
	if (hdr[1] > (1ull << 32)) return -EINVAL;
	uint64_t *ids = malloc((hdr[1] ? hdr[1] : 1) * sizeof *ids);
	if (!ids) return -ENOMEM;
	if (hdr[1] && (rc = fn(fn_ctx, ids, hdr[1] * sizeof *ids)) < 0) {
		free(ids);
		return rc;
	}
	state_reset(f);
	for (uint64_t i = 0; i < hdr[1]; i++)
		if ((rc = state_add(f, ids[i])) < 0) break;
	free(ids);
	if (rc < 0) return rc;
	if (f->hash != hdr[2]) return -EINVAL;
	memcpy(f->origin_seq, seqs, sizeof seqs);
	f->applied_index = hdr[0];
	return 0;
}

static void cb_on_read(void *ctx, uint64_t read_id, int status)
{
	fsm_t *f = ctx;
	for (client_t *c = f->clients; c; c = c->next) client_write(c, "READ %" PRIu64 " %d\n", read_id, status);
}

static void cb_on_propose_failed(void *ctx, uint64_t seq, int status)
{
	complete(ctx, seq, 0, status);
}

/* ------------------------------------------------------------------ main */

static int parse_peers(const char *s, raft_node_config_t *cfg)
{
	while (*s) {
		unsigned id, port;
		char host[64];
		int used = 0;
		if (sscanf(s, "%u=%63[^:]:%u%n", &id, host, &port, &used) != 3 || !id || port > 65535) return -EINVAL;
		if (cfg->n_peers == RAFT_NODE_PEERS_MAX) return -E2BIG;
		raft_peer_addr_t *p = &cfg->peers[cfg->n_peers++];
		p->id = id;
		p->port = (uint16_t)port;
		snprintf(p->host, sizeof p->host, "%s", host);
		s += used;
		if (*s == ',') s++;
		else if (*s) return -EINVAL;
	}
	return 0;
}

static uv_signal_t sigterm, sigint;
static void on_stopped(void *arg) { uv_stop(arg); }
static void on_signal(uv_signal_t *h, int sig)
{
	(void)sig;
	fsm_t *f = h->data;
	uv_close((uv_handle_t *)&sigterm, NULL);
	uv_close((uv_handle_t *)&sigint, NULL);
	uv_close((uv_handle_t *)&f->server, NULL);
	for (client_t *c = f->clients; c; c = c->next)
		if (!c->closing) c->closing = true, uv_close((uv_handle_t *)&c->pipe, on_client_close);
	raft_node_stop(f->node, on_stopped, f->loop);
}

int main(int argc, char **argv)
{
	raft_node_config_t cfg = {0};
	const char *client_path = NULL, *token_file = NULL;
	static fsm_t f;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--id")) cfg.id = (uint32_t)atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--peers")) {
			if (parse_peers(argv[i + 1], &cfg) < 0) {
				fprintf(stderr, "fsm_node: bad --peers '%s'\n", argv[i + 1]);
				return 2;
			}
		} else if (!strcmp(argv[i], "--data")) cfg.data_dir = argv[i + 1];
		else if (!strcmp(argv[i], "--client")) client_path = argv[i + 1];
		else if (!strcmp(argv[i], "--token-file")) token_file = argv[i + 1];
		else if (!strcmp(argv[i], "--snapshot-entries")) cfg.snapshot_entries = strtoull(argv[i + 1], NULL, 10);
		else if (!strcmp(argv[i], "--snapshot-fork")) cfg.snapshot_fork = strtoull(argv[i + 1], NULL, 10) != 0;
		else if (!strcmp(argv[i], "--trailing-entries")) cfg.trailing_entries = strtoull(argv[i + 1], NULL, 10);
		else {
			fprintf(stderr, "fsm_node: unknown option '%s'\n", argv[i]);
			return 2;
		}
	}
	if (!cfg.id || !cfg.data_dir || !client_path) {
		fprintf(stderr, "usage: fsm_node --id N [--peers ...] --data DIR --client SOCK [--token-file F]\n");
		return 2;
	}
	static uint8_t token[4096];
	if (token_file) {
		FILE *tf = fopen(token_file, "r");
		if (!tf) {
			perror(token_file);
			return 2;
		}
		cfg.token_len = fread(token, 1, sizeof token, tf);
		fclose(tf);
		cfg.token = token;
	}
	signal(SIGPIPE, SIG_IGN);
	f.loop = uv_default_loop();
	f.id = cfg.id;
	f.pending = calloc(PENDING_MAX, sizeof *f.pending);
	if (!f.pending) return 1;
	f.next_seq = (uint64_t)time(NULL) << 20; /* increasing across restarts of this process */
	cfg.cb = (raft_node_callbacks_t){
		.ctx = &f,
		.apply = cb_apply,
		.applied_index = cb_applied_index,
		.snapshot_write = cb_snapshot_write,
		.snapshot_read = cb_snapshot_read,
		.on_read = cb_on_read,
		.on_propose_failed = cb_on_propose_failed,
	};
	char err[256] = "";
	int rc = raft_node_start(f.loop, &cfg, &f.node, err, sizeof err);
	if (rc < 0) {
		fprintf(stderr, "fsm_node: start failed: %s (%s)\n", err, strerror(-rc));
		return 1;
	}
	unlink(client_path);
	uv_pipe_init(f.loop, &f.server, 0);
	f.server.data = &f;
	if ((rc = uv_pipe_bind(&f.server, client_path)) < 0 ||
	    (rc = uv_listen((uv_stream_t *)&f.server, 64, on_connection)) < 0) {
		fprintf(stderr, "fsm_node: client socket %s: %s\n", client_path, uv_strerror(rc));
		return 1;
	}
	uv_signal_init(f.loop, &sigterm);
	uv_signal_init(f.loop, &sigint);
	sigterm.data = sigint.data = &f;
	uv_signal_start(&sigterm, on_signal, SIGTERM);
	uv_signal_start(&sigint, on_signal, SIGINT);
	uv_run(f.loop, UV_RUN_DEFAULT);
	uv_run(f.loop, UV_RUN_NOWAIT);
	free(f.pending);
	free(f.ids);
	free(f.set);
	return 0;
}
