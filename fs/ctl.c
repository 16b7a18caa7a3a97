/* ctl.c - the control directory /.metastore: `status` and `txn`.
 *
 * Fixed nodeids (daemon.h), never in the inode table, never forgotten; served with direct_io
 * so a size of 0 in getattr does not cut reads short. `status` is generated when it is opened
 * (one `name: value` line each; per-operation lines carry count, errors and latency
 * percentiles in microseconds). `txn` (mode 0600, owned by the daemon's user: it bypasses
 * file permissions) takes etcdctl txn text through write(); the first read() on the same open
 * file parses it (engine/txnparse.h), proposes it (without SM_TXN_FROM_FS: the kernel has not
 * seen it, so its changes are invalidated like remote ones), waits for the local apply and
 * returns the formatted result; later reads return the rest of it. The result starts at the
 * file offset of that first read, so both `exec 3<>txn; printf ... >&3; cat <&3` (offset at
 * the end of the text) and write + seek(0) + read work. A parse error returns
 * "error: line N: ..." and proposes nothing. A handle runs one txn: writes after the first read
 * get EBUSY, and so do reads while the txn is in flight.
 */
#include "daemon.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CTL_STATUS "status"
#define CTL_TXN "txn"

bool ms_ctl_is(uint64_t ino)
{
	return ino == MS_CTL_DIR_INO || ino == MS_CTL_STATUS_INO || ino == MS_CTL_TXN_INO;
}

void ms_ctl_attr(ms_t *d, uint64_t ino, struct stat *st)
{
	assert(ms_ctl_is(ino));
	memset(st, 0, sizeof *st);
	st->st_ino = ino;
	st->st_nlink = 1;
	st->st_uid = d->uid;
	st->st_gid = d->gid;
	st->st_blksize = 4096;
	if (ino == MS_CTL_DIR_INO)
		st->st_mode = S_IFDIR | 0555;
	else if (ino == MS_CTL_STATUS_INO)
		st->st_mode = S_IFREG | 0444;
	else
		st->st_mode = S_IFREG | 0600;
	st->st_mtim.tv_sec = st->st_ctim.tv_sec = st->st_atim.tv_sec =
	    (time_t)(d->start_realtime_ns / 1000000000);
}

int ms_ctl_lookup(ms_t *d, uint64_t parent, const char *name, struct fuse_entry_param *e)
{
	uint64_t ino = 0;
	if (parent == FUSE_ROOT_ID && !strcmp(name, SM_CONTROL_DIR))
		ino = MS_CTL_DIR_INO;
	else if (parent == MS_CTL_DIR_INO && !strcmp(name, CTL_STATUS))
		ino = MS_CTL_STATUS_INO;
	else if (parent == MS_CTL_DIR_INO && !strcmp(name, CTL_TXN))
		ino = MS_CTL_TXN_INO;
	if (!ino) return -ENOENT;
	memset(e, 0, sizeof *e);
	e->ino = ino;
	e->generation = 1;
	ms_ctl_attr(d, ino, &e->attr);
	e->attr_timeout = MS_TIMEOUT_S;
	e->entry_timeout = MS_TIMEOUT_S;
	return 0;
}

int ms_ctl_readdir_snapshot(ms_t *d, fh_t *h)
{
	(void)d;
	int rc = ms_dir_push(h, ".", 1, MS_CTL_DIR_INO, S_IFDIR | 0555);
	if (rc == 0) rc = ms_dir_push(h, "..", 2, FUSE_ROOT_ID, S_IFDIR | 0755);
	if (rc == 0) rc = ms_dir_push(h, CTL_STATUS, strlen(CTL_STATUS), MS_CTL_STATUS_INO, S_IFREG | 0444);
	if (rc == 0) rc = ms_dir_push(h, CTL_TXN, strlen(CTL_TXN), MS_CTL_TXN_INO, S_IFREG | 0600);
	return rc;
}

int ms_ctl_open(ms_t *d, uint64_t ino, int flags, fh_t **out)
{
	if (ino == MS_CTL_DIR_INO) return -EISDIR;
	if (ino == MS_CTL_STATUS_INO && (flags & O_ACCMODE) != O_RDONLY) return -EACCES;
	fh_t *h = ms_fh_new(d, ino == MS_CTL_STATUS_INO ? FH_STATUS : FH_TXN, ino);
	if (!h) return -ENOMEM;
	h->open_flags = flags;
	if (h->kind == FH_STATUS) {
		char *text = NULL;
		size_t len = 0;
		int rc = ms_status_text(d, &text, &len);
		if (rc) {
			ms_fh_unref(d, h);
			return rc;
		}
		h->buf = (uint8_t *)text;
		h->len = h->cap = len;
	}
	*out = h;
	return 0;
}

/* ------------------------------------------------------------------ status */

static const char *role_name(raft_role_t r)
{
	switch (r) {
	case RAFT_FOLLOWER:
		return "follower";
	case RAFT_PRECANDIDATE:
		return "precandidate";
	case RAFT_CANDIDATE:
		return "candidate";
	case RAFT_LEADER:
		return "leader";
	}
	return "unknown";
}

static void histo_line(FILE *f, const char *name, uint64_t count, uint64_t errors, const histo_t *h)
{
	fprintf(f, "%s: count=%llu errors=%llu p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f\n", name,
	        (unsigned long long)count, (unsigned long long)errors, histo_quantile(h, 0.5) / 1e3,
	        histo_quantile(h, 0.99) / 1e3, histo_quantile(h, 0.999) / 1e3, (h->count ? h->max : 0) / 1e3);
}

int ms_status_text(ms_t *d, char **out, size_t *len)
{
	char *buf = NULL;
	size_t n = 0;
	FILE *f = open_memstream(&buf, &n);
	if (!f) return -ENOMEM;
	raft_node_status_t rs;
	memset(&rs, 0, sizeof rs);
	if (d->raft) raft_node_status(d->raft, &rs);
	const ms_stats_t *s = &d->stats;
	fprintf(f, "id: %u\n", d->opt.id);
	fprintf(f, "role: %s\n", role_name(rs.role));
	fprintf(f, "term: %llu\n", (unsigned long long)rs.term);
	fprintf(f, "leader: %u\n", rs.leader_id);
	fprintf(f, "commit_index: %llu\n", (unsigned long long)rs.commit_index);
	fprintf(f, "applied_index: %llu\n", (unsigned long long)sm_applied_index(d->sm));
	fprintf(f, "last_index: %llu\n", (unsigned long long)rs.last_index);
	fprintf(f, "first_index: %llu\n", (unsigned long long)rs.first_index);
	fprintf(f, "snapshot_index: %llu\n", (unsigned long long)rs.snapshot_index);
	fprintf(f, "revision: %lld\n", (long long)sm_revision(d->sm));
	fprintf(f, "engine: %s\n", engine_kind(d->engine));
	fprintf(f, "keys: %llu\n", (unsigned long long)sm_key_count(d->sm));
	fprintf(f, "bytes: %llu\n", (unsigned long long)sm_data_bytes(d->sm));
	fprintf(f, "value_max: %llu\n", (unsigned long long)d->opt.value_bytes_max);
	fprintf(f, "boot_epoch: %u\n", d->boot_epoch);
	fprintf(f, "local_reads: %s\n", d->opt.local_reads ? "on" : "off");
	fprintf(f, "inotify: %s\n", d->opt.inotify ? "on" : "off");
	fprintf(f, "peers: %u\n", rs.n_peers);
	for (uint32_t i = 0; i < rs.n_peers && i < RAFT_NODE_PEERS_MAX; i++)
		fprintf(f, "peer_%u: match_index=%llu connected=%s voter=%s\n", rs.peers[i].id,
		        (unsigned long long)rs.peers[i].match_index, rs.peers[i].connected ? "yes" : "no",
		        rs.peers[i].voter ? "yes" : "no");
	fprintf(f, "proposals: %llu\n", (unsigned long long)rs.proposals);
	fprintf(f, "entries_appended: %llu\n", (unsigned long long)rs.entries_appended);
	fprintf(f, "forwards_sent: %llu\n", (unsigned long long)rs.forwards_sent);
	fprintf(f, "forwards_received: %llu\n", (unsigned long long)rs.forwards_received);
	fprintf(f, "reads: %llu\n", (unsigned long long)rs.reads);
	fprintf(f, "elections: %llu\n", (unsigned long long)rs.elections);
	fprintf(f, "snapshots_sent: %llu\n", (unsigned long long)rs.snapshots_sent);
	fprintf(f, "snapshots_installed: %llu\n", (unsigned long long)rs.snapshots_installed);
	fprintf(f, "fsyncs: %llu\n", (unsigned long long)rs.fsyncs);
	fprintf(f, "applied_entries: %llu\n", (unsigned long long)s->applied_entries);
	fprintf(f, "applied_txns: %llu\n", (unsigned long long)s->applied_txns);
	fprintf(f, "applied_events: %llu\n", (unsigned long long)s->applied_events);
	fprintf(f, "bad_blobs: %llu\n", (unsigned long long)s->bad_blobs);
	fprintf(f, "commit_errors: %llu\n", (unsigned long long)s->commit_errors);
	fprintf(f, "commit_timeouts: %llu\n", (unsigned long long)s->commit_timeouts);
	fprintf(f, "read_barrier_errors: %llu\n", (unsigned long long)s->read_barrier_errors);
	fprintf(f, "provisional_creates: %llu\n", (unsigned long long)s->provisional_creates);
	fprintf(f, "ctl_txns: %llu\n", (unsigned long long)s->ctl_txns);
	fprintf(f, "ino_mismatches: %llu\n", (unsigned long long)s->ino_mismatches);
	fprintf(f, "inodes: %zu\n", inotab_count(d->tab));
	fprintf(f, "provisional_inodes: %zu\n", inotab_provisional_count(d->tab));
	fprintf(f, "open_handles: %zu\n", d->n_handles);
	fprintf(f, "pending_requests: %zu\n", d->n_pending);
	if (d->inval) {
		inval_stats_t is;
		inval_get_stats(d->inval, &is);
		fprintf(f, "invalidations_queued: %llu\n", (unsigned long long)is.queued);
		fprintf(f, "invalidations_done: %llu\n", (unsigned long long)is.done);
		fprintf(f, "invalidations_dropped: %llu\n", (unsigned long long)is.dropped);
		fprintf(f, "invalidations_failed: %llu\n", (unsigned long long)is.failed);
	}
	if (d->watch) {
		watch_stats_t ws;
		watch_get_stats(d->watch, &ws);
		fprintf(f, "replays_queued: %llu\n", (unsigned long long)ws.queued);
		fprintf(f, "replays_merged: %llu\n", (unsigned long long)ws.merged);
		fprintf(f, "replays_cancelled: %llu\n", (unsigned long long)ws.cancelled);
		fprintf(f, "replays_dropped: %llu\n", (unsigned long long)ws.dropped);
		fprintf(f, "replays_done: %llu\n", (unsigned long long)ws.replayed);
		fprintf(f, "replays_failed: %llu\n", (unsigned long long)ws.failed);
		fprintf(f, "replays_last_errno: %d\n", ws.last_errno);
		fprintf(f, "replays_settle_waits: %llu\n", (unsigned long long)ws.settle_waits);
		fprintf(f, "replays_lost_creates: %llu\n", (unsigned long long)ws.lost_creates);
		fprintf(f, "replay_backlog: %llu\n", (unsigned long long)ws.backlog);
		fprintf(f, "replay_backlog_max: %llu\n", (unsigned long long)ws.backlog_max);
	}
	histo_line(f, "commit", s->commits, s->commit_errors, &s->commit_ns);
	histo_line(f, "read_barrier", s->read_barriers, s->read_barrier_errors, &s->read_barrier_ns);
	for (int op = 0; op < MS_OP_COUNT; op++) {
		char name[32];
		snprintf(name, sizeof name, "op_%s", ms_op_name((ms_op_t)op));
		histo_line(f, name, s->count[op], s->errors[op], &s->latency_ns[op]);
	}
	if (fclose(f) != 0) {
		free(buf);
		return -ENOMEM;
	}
	*out = buf;
	*len = n;
	return 0;
}

/* ------------------------------------------------------------------ txn */

int ms_ctl_txn_write(ms_t *d, fh_t *h, const char *buf, size_t size, uint64_t off)
{
	(void)d;
	assert(h->kind == FH_TXN);
	if (h->txn_state != TXN_IDLE) return -EBUSY;
	if (off > TXNPARSE_TEXT_BYTES_MAX || size > TXNPARSE_TEXT_BYTES_MAX - off) return -EFBIG;
	size_t end = (size_t)off + size;
	if (end > h->cap) {
		size_t cap = h->cap ? h->cap : 4096;
		while (cap < end)
			cap *= 2;
		uint8_t *b = realloc(h->buf, cap);
		if (!b) return -ENOMEM;
		h->buf = b;
		h->cap = cap;
	}
	if (off > h->len) memset(h->buf + h->len, ' ', (size_t)off - h->len);
	if (size) memcpy(h->buf + off, buf, size);
	if (end > h->len) h->len = end;
	return 0;
}

static void reply_out(ms_t *d, fuse_req_t req, fh_t *h, size_t size, uint64_t off, uint64_t t0)
{
	uint64_t rel = off >= h->out_base ? off - h->out_base : 0;
	ms_record_op(d, MS_OP_READ, t0, 0);
	if (rel >= h->out_len) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	size_t n = h->out_len - (size_t)rel;
	if (n > size) n = size;
	fuse_reply_buf(req, h->out + rel, n);
}

static int set_out(fh_t *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int set_out(fh_t *h, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&h->out, fmt, ap);
	va_end(ap);
	if (n < 0) {
		h->out = NULL;
		return -ENOMEM;
	}
	h->out_len = (size_t)n;
	return 0;
}

void ms_ctl_txn_read(ms_t *d, fuse_req_t req, fh_t *h, size_t size, uint64_t off, uint64_t t0)
{
	assert(h->kind == FH_TXN);
	if (h->txn_state == TXN_DONE) return reply_out(d, req, h, size, off, t0);
	if (h->txn_state == TXN_RUNNING) {
		ms_record_op(d, MS_OP_READ, t0, -EBUSY);
		fuse_reply_err(req, EBUSY);
		return;
	}
	h->out_base = off;
	char err[TXNPARSE_ERR_BYTES];
	const struct fuse_ctx *ctx = fuse_req_ctx(req);
	int rc = txnparse_parse((const char *)h->buf, h->len, ctx->uid, ctx->gid, &h->txn, err, sizeof err);
	if (rc) {
		h->txn_state = TXN_DONE;
		if (set_out(h, "error: %s\n", err) != 0) {
			ms_record_op(d, MS_OP_READ, t0, -ENOMEM);
			fuse_reply_err(req, ENOMEM);
			return;
		}
		return reply_out(d, req, h, size, off, t0);
	}
	h->txn_parsed = true;
	pending_t *p = ms_pending_new(d, P_CTL_TXN, MS_OP_READ, req, t0);
	if (!p) {
		ms_record_op(d, MS_OP_READ, t0, -ENOMEM);
		fuse_reply_err(req, ENOMEM);
		return;
	}
	p->fh = h;
	h->refs++;
	p->size = size;
	p->off = off;
	h->txn.txn.flags = 0; /* not SM_TXN_FROM_FS: this kernel has not seen these changes */
	h->txn.txn.time_ns = 0;
	h->txn_state = TXN_RUNNING;
	rc = ms_propose(d, &h->txn.txn, p);
	if (rc) {
		p->req = NULL;
		ms_ctl_txn_complete(d, p, rc, NULL);
		ms_pending_free(d, p);
		return reply_out(d, req, h, size, off, t0);
	}
	d->stats.ctl_txns++;
}

void ms_ctl_txn_complete(ms_t *d, pending_t *p, int err, const sm_txn_result_t *res)
{
	fh_t *h = p->fh;
	assert(h && h->kind == FH_TXN);
	h->txn_state = TXN_DONE;
	int rc = 0;
	if (err) {
		rc = set_out(h, "error: %s (%s)\n", strerrorname_np(-err) ? strerrorname_np(-err) : "E?",
		             err == -ETIMEDOUT ? "no commit in time; the txn may still be applied"
		                               : strerror(-err));
	} else if (res->duplicate) {
		rc = set_out(h, "error: EIO (applied twice)\n");
	} else {
		size_t need = txnparse_format(&h->txn.txn, res, NULL, 0);
		h->out = malloc(need + 1);
		if (!h->out) {
			rc = -ENOMEM;
		} else {
			size_t got = txnparse_format(&h->txn.txn, res, h->out, need + 1);
			assert(got == need);
			h->out_len = got;
		}
	}
	if (!p->req) return; /* the caller replies */
	if (rc) {
		ms_record_op(d, MS_OP_READ, p->t0_ns, rc);
		fuse_reply_err(p->req, -rc);
		return;
	}
	reply_out(d, p->req, h, p->size, p->off, p->t0_ns);
}
