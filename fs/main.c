/* main.c - metastored: parse options, start engine + state machine + Raft node + FUSE session
 * on one libuv loop, run until unmounted or signalled, stop cleanly.
 *
 * Start order: options (bad ones exit 2) -> absolute paths, token, DATA/ -> fork unless
 * --foreground (before any thread exists: rocksdb and the Raft node start threads; the parent
 * waits on a pipe and exits 0 only once the mount is up, or with the child's error) -> boot
 * epoch (DATA/boot, incremented and fsynced) -> engine (rocksdb in DATA/engine; the memory
 * engine starts empty and is rebuilt by the Raft node from its snapshot and log in DATA/raft)
 * -> state machine -> Raft node -> catch up (run the loop until a read barrier passes, at most
 * CATCH_UP_MS, so the first ls sees the rebuilt tree) -> FUSE session mounted with
 * default_permissions -> the invalidation thread -> the replay thread (watch/; not with
 * -o inotify=off) -> uv_poll on the session fd -> loop.
 *
 * Stop (umount, SIGTERM, SIGINT, SIGHUP): every waiting request gets EIO, the Raft node, the
 * invalidation thread and the replay thread are told to stop while the loop keeps answering
 * FUSE (new changes get EIO), so a notify call blocked on a directory lock held by a process
 * waiting for us, or a replay's syscall on the mount, always completes; when all three have
 * stopped the session is unmounted, the loop ends, the state machine
 * and the engine are closed. Exit status 0 after a clean stop, 1 on a start-up failure or when
 * applying an entry failed (the engine broke: the node cannot go on).
 */
#include "daemon.h"

#include <assert.h>
#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ERRBUF_BYTES 512

uint64_t ms_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int64_t ms_realtime_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void ms_log(const ms_t *d, opts_log_level_t level, const char *fmt, ...)
{
	static const char *const names[] = {"error", "warn", "info", "debug"};
	if (level > d->opt.log_level) return;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	fprintf(stderr, "%02d:%02d:%02d.%03ld metastored[%u] %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
	        ts.tv_nsec / 1000000, d->opt.id, names[level], line);
}

static void errf(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------------ files in DATA */

static int mkdir_p(const char *path, mode_t mode)
{
	char tmp[PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof tmp) return -ENAMETOOLONG;
	memcpy(tmp, path, len + 1);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/') continue;
		*p = '\0';
		if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -errno;
		*p = '/';
	}
	if (mkdir(tmp, mode) != 0 && errno != EEXIST) return -errno;
	return 0;
}

static int fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	if (fd < 0) return -errno;
	int rc = fsync(fd) == 0 ? 0 : -errno;
	close(fd);
	return rc;
}

/* DATA/boot holds the number of starts; returns the new one, durable before we use it. */
static int boot_epoch_next(const char *data_dir, uint32_t *out, char *err, size_t err_len)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if ((size_t)snprintf(path, sizeof path, "%s/boot", data_dir) >= sizeof path ||
	    (size_t)snprintf(tmp, sizeof tmp, "%s/boot.tmp", data_dir) >= sizeof tmp) {
		errf(err, err_len, "%s: path too long", data_dir);
		return -ENAMETOOLONG;
	}
	unsigned long long cur = 0;
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%llu", &cur) != 1) cur = 0;
		fclose(f);
	} else if (errno != ENOENT) {
		errf(err, err_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	if (cur + 1 >= (1ull << 31)) {
		errf(err, err_len, "%s: boot epoch exhausted", path);
		return -EOVERFLOW;
	}
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		errf(err, err_len, "%s: %s", tmp, strerror(errno));
		return -errno;
	}
	char text[32];
	int n = snprintf(text, sizeof text, "%llu\n", cur + 1);
	int rc = 0;
	if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) rc = errno ? -errno : -EIO;
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0) rc = -errno;
	if (rc == 0) rc = fsync_path(data_dir, O_RDONLY | O_DIRECTORY);
	if (rc) {
		errf(err, err_len, "%s: %s", path, strerror(-rc));
		return rc;
	}
	*out = (uint32_t)(cur + 1);
	return 0;
}

/* ------------------------------------------------------------------ loop callbacks */

static void on_fuse_readable(uv_poll_t *h, int status, int events)
{
	ms_t *d = h->data;
	(void)events;
	if (status < 0) {
		ms_begin_shutdown(d, "FUSE device error");
		return;
	}
	for (unsigned i = 0; i < MS_FUSE_DRAIN_MAX; i++) {
		int res = fuse_session_receive_buf(d->se, &d->fbuf);
		if (res == -EINTR || res == -EAGAIN) return;
		if (res <= 0 || fuse_session_exited(d->se)) {
			if (d->fuse_poll_active) uv_poll_stop(&d->fuse_poll);
			d->fuse_poll_active = false;
			ms_begin_shutdown(d, "unmounted");
			return;
		}
		fuse_session_process_buf(d->se, &d->fbuf);
	}
}

static void on_signal(uv_signal_t *s, int signum)
{
	ms_t *d = s->data;
	char why[32];
	snprintf(why, sizeof why, "signal %d", signum);
	ms_begin_shutdown(d, why);
}

static void close_cb(uv_handle_t *h) { (void)h; }

static void on_sweep(uv_timer_t *t)
{
	ms_t *d = t->data;
	ms_sweep_lookups(d);
	if (d->fatal && !d->stopping) {
		d->exit_code = 1;
		ms_begin_shutdown(d, "the state machine failed");
	}
}

/* Opens whose reply waited for the invalidation thread (fsops.c): answered here, on the loop. */
static pending_t *take_ready(ms_t *d)
{
	pthread_mutex_lock(&d->ready_mu);
	pending_t *p = d->ready;
	d->ready = NULL;
	pthread_mutex_unlock(&d->ready_mu);
	return p;
}

static void on_opens_ready(uv_async_t *a)
{
	ms_t *d = a->data;
	for (pending_t *p = take_ready(d); p;) {
		pending_t *next = p->next;
		p->next = NULL;
		ms_complete_open_reply(d, p);
		p = next;
	}
}

static void finish(ms_t *d)
{
	if (d->finished || !d->raft_stopped || !d->inval_stopped || !d->watch_stopped) return;
	d->finished = true;
	on_opens_ready(&d->opens_ready); /* the invalidation thread has stopped: none come later */
	if (d->fuse_poll_active) uv_poll_stop(&d->fuse_poll);
	d->fuse_poll_active = false;
	ms_fail_all_pending(d, -EIO);
	if (d->mounted) {
		fuse_session_unmount(d->se);
		d->mounted = false;
	}
	uv_close((uv_handle_t *)&d->fuse_poll, close_cb);
	uv_close((uv_handle_t *)&d->sig_term, close_cb);
	uv_close((uv_handle_t *)&d->sig_int, close_cb);
	uv_close((uv_handle_t *)&d->sig_hup, close_cb);
	uv_close((uv_handle_t *)&d->inval_exited, close_cb);
	uv_close((uv_handle_t *)&d->watch_exited, close_cb);
	uv_close((uv_handle_t *)&d->opens_ready, close_cb);
	uv_close((uv_handle_t *)&d->sweep, close_cb);
	ms_log(d, LOG_INFO, "stopped");
}

static void on_raft_stopped(void *arg)
{
	ms_t *d = arg;
	d->raft_stopped = true;
	finish(d);
}

static void on_inval_exited_async(uv_async_t *a)
{
	ms_t *d = a->data;
	if (d->inval) {
		inval_stop(d->inval); /* the thread has returned: this join is immediate */
		d->inval = NULL;
	}
	d->inval_stopped = true;
	finish(d);
}

static void on_inval_exit(void *arg)
{
	ms_t *d = arg;
	uv_async_send(&d->inval_exited); /* the one libuv call that is safe from another thread */
}

static void on_watch_exited_async(uv_async_t *a)
{
	ms_t *d = a->data;
	if (d->watch) {
		watch_stop(d->watch); /* the replay thread has returned: this join is immediate */
		d->watch = NULL;
	}
	d->watch_stopped = true;
	finish(d);
}

static void on_watch_exit(void *arg)
{
	ms_t *d = arg;
	uv_async_send(&d->watch_exited);
}

/* watch/'s forget callback, on a replay thread (not the loop thread, not inside a handler: a
 * notify there could wait for a directory lock held by a request only the loop can answer). */
static void watch_forget(void *arg, uint64_t parent, const char *name, size_t name_len)
{
	ms_t *d = arg;
	fuse_lowlevel_notify_inval_entry(d->se, parent, name, name_len);
}

/* The change sink that feeds watch/ (it knows nothing of fs/'s types). */
static void watch_sink_push(void *ctx, const fs_change_t *c) { watch_push(ctx, c->ev, c->local, c->txn_flags); }
static void watch_sink_end_batch(void *ctx) { watch_end_batch(ctx); }

/* inval_attr_then's completion, on the invalidation thread: hand the open back to the loop. */
void ms_open_reply_ready(void *arg, int rc)
{
	pending_t *p = arg;
	ms_t *d = p->owner;
	(void)rc; /* the reply goes out either way; at worst the kernel keeps stale attributes */
	pthread_mutex_lock(&d->ready_mu);
	p->next = d->ready;
	d->ready = p;
	pthread_mutex_unlock(&d->ready_mu);
	uv_async_send(&d->opens_ready);
}

void ms_begin_shutdown(ms_t *d, const char *why)
{
	if (d->stopping) return;
	d->stopping = true;
	ms_log(d, LOG_INFO, "stopping (%s)", why);
	ms_fail_all_pending(d, -EIO);
	if (d->raft) {
		raft_node_t *r = d->raft;
		d->raft = NULL;
		raft_node_stop(r, on_raft_stopped, d);
	} else {
		d->raft_stopped = true;
	}
	if (d->inval)
		inval_request_stop(d->inval);
	else
		d->inval_stopped = true;
	if (d->watch)
		watch_request_stop(d->watch);
	else
		d->watch_stopped = true;
	finish(d);
}

/* ------------------------------------------------------------------ start */

/* Before mounting: run the loop until a read barrier passes, i.e. this node has applied
 * everything the cluster committed before now, so the first ls after a restart does not see an
 * empty or old tree (the memory engine starts empty and is rebuilt from the log here). After
 * CATCH_UP_MS without a barrier (no quorum) it mounts anyway, serving its local state once the
 * log's own committed entries are replayed (opens then fail until a leader appears). */
#define CATCH_UP_MS 3000u
static void catch_up(ms_t *d)
{
	uint64_t deadline = ms_now_ns() + (uint64_t)CATCH_UP_MS * 1000000u;
	uint64_t asked_id = 0;
	while (!d->caught_up) {
		if (asked_id != d->catch_up_read_id && raft_node_read(d->raft, d->catch_up_read_id) == 0)
			asked_id = d->catch_up_read_id;
		raft_node_status_t st;
		raft_node_status(d->raft, &st);
		if (ms_now_ns() > deadline && sm_applied_index(d->sm) >= st.commit_index) {
			ms_log(d, LOG_WARN, "no quorum after %u ms: serving local state (applied index %llu)",
			       CATCH_UP_MS, (unsigned long long)sm_applied_index(d->sm));
			return;
		}
		uv_run(d->loop, UV_RUN_ONCE);
	}
}

typedef struct paths {
	char data[PATH_MAX], mount[PATH_MAX], raft[PATH_MAX], engine[PATH_MAX], log[PATH_MAX];
} paths_t;

static int start(ms_t *d, paths_t *pa, char *err, size_t err_len)
{
	int rc = boot_epoch_next(pa->data, &d->boot_epoch, err, err_len);
	if (rc) return rc;
	if ((rc = mkdir_p(pa->raft, 0700))) {
		errf(err, err_len, "%s: %s", pa->raft, strerror(-rc));
		return rc;
	}
	d->loop = calloc(1, sizeof *d->loop);
	if (!d->loop || uv_loop_init(d->loop) != 0) {
		free(d->loop);
		d->loop = NULL;
		errf(err, err_len, "cannot create the event loop");
		return -ENOMEM;
	}
	engine_options_t eo = {.kind = d->opt.engine, .dir = pa->engine};
	if (!strcmp(d->opt.engine, "rocksdb") && (rc = mkdir_p(pa->engine, 0700))) {
		errf(err, err_len, "%s: %s", pa->engine, strerror(-rc));
		return rc;
	}
	char eerr[ERRBUF_BYTES] = "";
	if ((rc = engine_open(&eo, &d->engine, eerr, sizeof eerr))) {
		errf(err, err_len, "engine %s: %s", d->opt.engine, eerr[0] ? eerr : strerror(-rc));
		return rc;
	}
	sm_options_t so = {.value_bytes_max = d->opt.value_bytes_max};
	if ((rc = sm_open(d->engine, &so, &d->sm))) {
		errf(err, err_len, "state machine: %s", strerror(-rc));
		return rc;
	}
	if ((rc = inotab_new(0, &d->tab))) {
		errf(err, err_len, "inode table: %s", strerror(-rc));
		return rc;
	}
	raft_node_config_t rc_cfg;
	memset(&rc_cfg, 0, sizeof rc_cfg);
	rc_cfg.id = d->opt.id;
	memcpy(rc_cfg.peers, d->opt.peers, sizeof rc_cfg.peers);
	rc_cfg.n_peers = d->opt.n_peers;
	rc_cfg.data_dir = pa->raft;
	rc_cfg.token = d->token_len ? d->token : NULL;
	rc_cfg.token_len = d->token_len;
	/* batch_bytes_max stays the node's default: a blob larger than a batch (a file value up to
	 * 8 MiB) travels in an entry of its own (node.h) */
	rc_cfg.cb = ms_raft_callbacks(d);
	/* the memory engine's state is plain memory the loop owns: a forked child can stream it
	 * (RocksDB's threads and locks would not survive a fork) */
	rc_cfg.snapshot_fork = !strcmp(d->opt.engine, "memory");
	char rerr[ERRBUF_BYTES] = "";
	if ((rc = raft_node_start(d->loop, &rc_cfg, &d->raft, rerr, sizeof rerr))) {
		d->raft = NULL;
		errf(err, err_len, "raft: %s", rerr[0] ? rerr : strerror(-rc));
		return rc;
	}
	catch_up(d);
	ms_log(d, LOG_INFO, "node %u up: engine %s, applied index %llu, revision %lld, boot epoch %u",
	       d->opt.id, d->opt.engine, (unsigned long long)sm_applied_index(d->sm),
	       (long long)sm_revision(d->sm), d->boot_epoch);

	char fopts[OPTS_FUSE_ARGS_BYTES + 128];
	snprintf(fopts, sizeof fopts, "default_permissions%s%s%s%s",
	         strstr(d->opt.fuse_opts, "fsname=") ? "" : ",fsname=metastore",
	         strstr(d->opt.fuse_opts, "subtype=") ? "" : ",subtype=metastore",
	         d->opt.fuse_opts[0] ? "," : "", d->opt.fuse_opts);
	char *fargv[] = {"metastored", "-o", fopts, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, fargv);
	d->se = fuse_session_new(&args, &ms_fuse_ops, sizeof ms_fuse_ops, d);
	fuse_opt_free_args(&args);
	if (!d->se) {
		errf(err, err_len, "fuse: cannot create a session with options '%s'", fopts);
		return -EINVAL;
	}
	if (fuse_session_mount(d->se, pa->mount) != 0) {
		errf(err, err_len, "fuse: cannot mount on %s", pa->mount);
		return -EIO;
	}
	d->mounted = true;
	snprintf(d->mount_path, sizeof d->mount_path, "%s", pa->mount);
	uv_async_init(d->loop, &d->inval_exited, on_inval_exited_async);
	d->inval_exited.data = d;
	uv_async_init(d->loop, &d->opens_ready, on_opens_ready);
	d->opens_ready.data = d;
	if ((rc = inval_start(d->se, on_inval_exit, d, &d->inval))) {
		errf(err, err_len, "invalidation thread: %s", strerror(-rc));
		return rc;
	}
	ms_add_sink(d, inval_sink(d->inval));
	uv_async_init(d->loop, &d->watch_exited, on_watch_exited_async);
	d->watch_exited.data = d;
	d->watch_stopped = !d->opt.inotify;
	if (d->opt.inotify) {
		watch_config_t wc = {
		    .mount_path = d->mount_path, .on_exit = on_watch_exit, .forget = watch_forget, .arg = d};
		if ((rc = watch_start(&wc, &d->watch))) {
			errf(err, err_len, "replay thread: %s", strerror(-rc));
			return rc;
		}
		ms_add_sink(d, (fs_change_sink_t){.ctx = d->watch,
		                                  .push = watch_sink_push,
		                                  .end_batch = watch_sink_end_batch});
	}
	int fd = fuse_session_fd(d->se);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	uv_poll_init(d->loop, &d->fuse_poll, fd);
	d->fuse_poll.data = d;
	uv_poll_start(&d->fuse_poll, UV_READABLE, on_fuse_readable);
	d->fuse_poll_active = true;
	uv_timer_init(d->loop, &d->sweep);
	d->sweep.data = d;
	uv_timer_start(&d->sweep, on_sweep, MS_SWEEP_MS, MS_SWEEP_MS);
	uv_signal_init(d->loop, &d->sig_term);
	uv_signal_init(d->loop, &d->sig_int);
	uv_signal_init(d->loop, &d->sig_hup);
	d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
	uv_signal_start(&d->sig_term, on_signal, SIGTERM);
	uv_signal_start(&d->sig_int, on_signal, SIGINT);
	uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
	ms_log(d, LOG_INFO, "mounted on %s%s", pa->mount, d->opt.local_reads ? " (local reads)" : "");
	return 0;
}

static void stopped_flag(void *arg) { *(bool *)arg = true; }

/* After a failed start: undo what exists, in reverse. */
static void teardown(ms_t *d)
{
	if (d->watch) watch_request_stop(d->watch); /* joined in cleanup, once the mount is gone */
	if (d->inval) {
		inval_request_stop(d->inval);
		inval_stop(d->inval);
		d->inval = NULL;
	}
	if (d->raft) {
		bool done = false;
		raft_node_stop(d->raft, stopped_flag, &done);
		d->raft = NULL;
		for (int i = 0; i < 100000 && !done; i++)
			uv_run(d->loop, UV_RUN_ONCE);
	}
	if (d->se) {
		if (d->mounted) fuse_session_unmount(d->se);
		d->mounted = false;
	}
}

static void walk_close(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h)) uv_close(h, close_cb);
}

static void cleanup(ms_t *d)
{
	if (d->loop) {
		uv_walk(d->loop, walk_close, NULL);
		uv_run(d->loop, UV_RUN_DEFAULT);
		uv_loop_close(d->loop);
		free(d->loop);
	}
	ms_fail_all_pending(d, -EIO);
	for (pending_t *p = take_ready(d); p;) { /* a failed start: no reply can go out any more */
		pending_t *next = p->next;
		ms_pending_free(d, p);
		p = next;
	}
	ms_free_all_handles(d);
	if (d->se) fuse_session_destroy(d->se); /* a replay blocked on the mount fails now */
	watch_stop(d->watch);
	d->watch = NULL;
	free(d->fbuf.mem);
	sm_close(d->sm);
	engine_close(d->engine);
	inotab_free(d->tab);
	pthread_mutex_destroy(&d->ready_mu);
}

/* ------------------------------------------------------------------ main */

static int resolve_paths(ms_t *d, paths_t *pa, char *err, size_t err_len)
{
	int rc = mkdir_p(d->opt.data_dir, 0700);
	if (rc) {
		errf(err, err_len, "metastored: --data %s: %s", d->opt.data_dir, strerror(-rc));
		return rc;
	}
	if (!realpath(d->opt.data_dir, pa->data)) {
		errf(err, err_len, "metastored: --data %s: %s", d->opt.data_dir, strerror(errno));
		return -errno;
	}
	struct stat st;
	if (!realpath(d->opt.mountpoint, pa->mount) || stat(pa->mount, &st) != 0) {
		errf(err, err_len, "metastored: mount point %s: %s", d->opt.mountpoint, strerror(errno));
		return -errno;
	}
	if (!S_ISDIR(st.st_mode)) {
		errf(err, err_len, "metastored: mount point %s is not a directory", d->opt.mountpoint);
		return -ENOTDIR;
	}
	if ((size_t)snprintf(pa->raft, sizeof pa->raft, "%s/raft", pa->data) >= sizeof pa->raft ||
	    (size_t)snprintf(pa->engine, sizeof pa->engine, "%s/engine", pa->data) >= sizeof pa->engine ||
	    (size_t)snprintf(pa->log, sizeof pa->log, "%s/metastored.log", pa->data) >= sizeof pa->log) {
		errf(err, err_len, "metastored: --data path too long");
		return -ENAMETOOLONG;
	}
	d->opt.data_dir = pa->data;
	d->opt.mountpoint = pa->mount;
	return 0;
}

/* Forks: the parent waits until the child says it is mounted (exit 0) or dies (its status). */
static int daemonize(int *ready_fd)
{
	int p[2];
	if (pipe(p) != 0) return -errno;
	fflush(stdout);
	fflush(stderr);
	pid_t pid = fork();
	if (pid < 0) return -errno;
	if (pid > 0) {
		close(p[1]);
		char c = 0;
		ssize_t n;
		do
			n = read(p[0], &c, 1);
		while (n < 0 && errno == EINTR);
		if (n == 1 && c == 'R') _exit(0);
		int status = 0;
		waitpid(pid, &status, 0);
		_exit(WIFEXITED(status) && WEXITSTATUS(status) ? WEXITSTATUS(status) : 1);
	}
	close(p[0]);
	setsid();
	*ready_fd = p[1];
	return 0;
}

static void detach_stdio(const char *log_path)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDIN_FILENO);
		dup2(null, STDOUT_FILENO);
		close(null);
	}
	int log = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (log >= 0) {
		dup2(log, STDERR_FILENO);
		close(log);
	}
}

int main(int argc, char **argv)
{
	/* A fixed mmap threshold: buffers of 256 KiB and more (snapshot streams of the whole state,
	 * log rounds) get their own mappings and go back to the system when freed. glibc's default
	 * raises the threshold to the largest block freed, after which those buffers came from the
	 * heap and the holes they left kept RSS up (measured: +20-30 MiB after a few snapshots). */
	mallopt(M_MMAP_THRESHOLD, 256 * 1024);
	ms_t *d = calloc(1, sizeof *d); /* main's; everything else gets it by pointer */
	paths_t *pa = calloc(1, sizeof *pa);
	if (!d || !pa) return 1;
	char err[ERRBUF_BYTES] = "";
	int rc = opts_parse(argc, argv, &d->opt, err, sizeof err);
	if (rc == 1 || rc < 0) {
		if (rc < 0) fprintf(stderr, "%s\n", err);
		free(d);
		free(pa);
		return rc == 1 ? 0 : 2;
	}
	if (resolve_paths(d, pa, err, sizeof err)) {
		fprintf(stderr, "%s\n", err);
		free(d);
		free(pa);
		return 2;
	}
	if (d->opt.token_file) {
		int n = opts_read_token(d->opt.token_file, d->token, sizeof d->token, err, sizeof err);
		if (n < 0) {
			fprintf(stderr, "%s\n", err);
			free(d);
			free(pa);
			return 2;
		}
		d->token_len = (size_t)n;
	}
	d->uid = getuid();
	d->gid = getgid();
	d->start_realtime_ns = ms_realtime_ns();
	d->role = RAFT_FOLLOWER;
	for (int i = 0; i < MS_OP_COUNT; i++)
		histo_init(&d->stats.latency_ns[i]);
	histo_init(&d->stats.commit_ns);
	histo_init(&d->stats.read_barrier_ns);
	pthread_mutex_init(&d->ready_mu, NULL);
	signal(SIGPIPE, SIG_IGN);

	int ready_fd = -1;
	if (!d->opt.foreground && (rc = daemonize(&ready_fd))) {
		fprintf(stderr, "metastored: cannot fork: %s\n", strerror(-rc));
		free(d);
		free(pa);
		return 1;
	}
	rc = start(d, pa, err, sizeof err);
	if (rc) {
		ms_log(d, LOG_ERROR, "%s", err);
		teardown(d);
		cleanup(d);
		free(d);
		free(pa);
		return 1;
	}
	if (ready_fd >= 0) {
		detach_stdio(pa->log);
		if (write(ready_fd, "R", 1) != 1) ms_log(d, LOG_WARN, "cannot tell the parent we are up");
		close(ready_fd);
	}
	uv_run(d->loop, UV_RUN_DEFAULT);
	if (!d->finished) { /* the loop ran dry without a stop: stop now */
		ms_begin_shutdown(d, "loop ended");
		uv_run(d->loop, UV_RUN_DEFAULT);
	}
	teardown(d);
	cleanup(d);
	int code = d->exit_code;
	free(d);
	free(pa);
	return code;
}
