/* watch.c - the replay threads and the module's locking (see watch.h for what is replayed and
 * why, backlog.h for the queue and the marks).
 *
 * One mutex guards the backlog and the stats. The loop thread pushes and asks under it; a
 * replay thread takes an entry under it (backlog_take_ready: only one that may overlap the
 * ones in flight), releases it, makes the entry's syscalls on the mount (each becomes FUSE
 * requests that the loop thread answers), and takes it again to retire the entry. An atomic copy of the
 * number of marks lets the handlers skip the mutex entirely in the common case (nothing pending). Paths are
 * absolute (mount path + "/" + key); no fd on the mount is held between replays, so an unmount is never busy
 * because of us.
 */
#include "watch.h"

#include "backlog.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef struct recent_mkdir {
	char key[SM_KEY_BYTES_MAX + 1];
	size_t key_len;
	uint64_t at_ns;
} recent_mkdir_t;

typedef struct replayer {
	struct watch *w;
	pthread_t thread;
	bool started;
	char path[PATH_MAX], path2[PATH_MAX]; /* its own thread's */
} replayer_t;

struct watch {
	char mount[PATH_MAX];
	size_t mount_len;
	uint64_t settle_ns;
	void (*on_exit)(void *arg);
	void (*forget)(void *arg, uint64_t parent, const char *name, size_t name_len);
	void *arg;
	uint32_t n_threads;
	replayer_t threads[WATCH_THREADS_MAX];
	atomic_int tids[WATCH_THREADS_MAX]; /* the replay threads' TIDs once they run, else 0 */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, wake;       /* under mu */
	uint32_t running;      /* under mu: threads that have not ended */
	backlog_t *bl;         /* under mu */
	watch_stats_t st;      /* under mu (the backlog's own counters are merged in on read) */
	atomic_size_t n_marks; /* copy of backlog_marks(bl), written under mu */
	recent_mkdir_t recent[WATCH_MKDIRS_RECENT]; /* under mu */
	uint32_t recent_next;
};

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Called with mu held after any change to the backlog. */
static void sync_marks(watch_t *w)
{
	atomic_store_explicit(&w->n_marks, backlog_marks(w->bl), memory_order_relaxed);
}

/* ------------------------------------------------------------------ replay (replay thread) */

/* mount + "/" + key into out; -ENAMETOOLONG if it does not fit PATH_MAX. The root is the
 * mount path itself. */
static int make_path(const watch_t *w, const char *key, size_t key_len, char *out)
{
	size_t len = w->mount_len + (key_len ? 1 + key_len : 0);
	if (len >= PATH_MAX) return -ENAMETOOLONG;
	if (len == 0) { /* the root of a mount on "/" */
		memcpy(out, "/", 2);
		return 0;
	}
	memcpy(out, w->mount, w->mount_len);
	if (key_len) {
		out[w->mount_len] = '/';
		memcpy(out + w->mount_len + 1, key, key_len);
	}
	out[len] = '\0';
	return 0;
}

static bool is_under(const char *key, size_t key_len, const char *dir, size_t dir_len)
{
	return key_len > dir_len && key[dir_len] == '/' && memcmp(key, dir, dir_len) == 0;
}

/* Waits out the settle time of a directory this change is inside of. True if it waited. */
static bool settle(watch_t *w, const bl_entry_t *e)
{
	uint64_t until = 0, now = now_ns();
	pthread_mutex_lock(&w->mu);
	for (uint32_t i = 0; i < WATCH_MKDIRS_RECENT; i++) {
		const recent_mkdir_t *r = &w->recent[i];
		if (r->at_ns == 0 || now >= r->at_ns + w->settle_ns) continue;
		bool in = is_under(e->key, e->key_len, r->key, r->key_len) ||
		          ((e->op == BL_RENAME || e->op == BL_EXCHANGE) &&
		           is_under(e->key2, e->key2_len, r->key, r->key_len));
		if (in && r->at_ns + w->settle_ns > until) until = r->at_ns + w->settle_ns;
	}
	pthread_mutex_unlock(&w->mu);
	if (until <= now) return false;
	uint64_t d = until - now;
	struct timespec ts = {.tv_sec = (time_t)(d / 1000000000u), .tv_nsec = (long)(d % 1000000000u)};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
	}
	return true;
}

static void remember_mkdir(watch_t *w, const bl_entry_t *e)
{
	pthread_mutex_lock(&w->mu);
	recent_mkdir_t *r = &w->recent[w->recent_next];
	w->recent_next = (w->recent_next + 1) % WATCH_MKDIRS_RECENT;
	memcpy(r->key, e->key, e->key_len);
	r->key[e->key_len] = '\0';
	r->key_len = e->key_len;
	r->at_ns = now_ns();
	pthread_mutex_unlock(&w->mu);
}

/* After the syscall that showed the kernel a created name: other lookups may see it now (the
 * handler that answered it revealed it already, unless the syscall failed before). */
static void unmark(watch_t *w, bl_entry_t *e)
{
	pthread_mutex_lock(&w->mu);
	backlog_unmark(w->bl, e);
	sync_marks(w);
	pthread_mutex_unlock(&w->mu);
}

/* Before creating (or renaming onto) the name of e's mark slot: if a lookup handed it to the
 * kernel meanwhile, the kernel forgets it now, so the syscall creates and the event comes. */
static void forget_known(watch_t *w, bl_entry_t *e, int slot)
{
	uint64_t parent = 0;
	const char *name = NULL;
	size_t len = 0;
	pthread_mutex_lock(&w->mu);
	bool known = backlog_take_known(w->bl, e, slot, &parent, &name, &len);
	pthread_mutex_unlock(&w->mu);
	if (known && w->forget) w->forget(w->arg, parent, name, len); /* name lives in e: ours */
}

/* atime and mtime both the record's mtime: IN_ATTRIB (mtime alone would be IN_MODIFY) */
static void rec_times(const sm_record_t *r, struct timespec ts[2])
{
	ts[0].tv_sec = (time_t)(r->mtime_ns / 1000000000);
	ts[0].tv_nsec = (long)(r->mtime_ns % 1000000000);
	if (ts[0].tv_nsec < 0) ts[0].tv_nsec += 1000000000, ts[0].tv_sec--;
	ts[1] = ts[0];
}

/* One call per kind of attribute that changed, as the local chmod / chown / touch would: on
 * path, or on fd when it is not -1. */
static int replay_attr(const bl_entry_t *e, const char *path, int fd)
{
	const sm_record_t *r = &e->rec;
	struct timespec ts[2];
	rec_times(r, ts);
	if ((e->attr_mask & BL_ATTR_MODE) && r->kind != SM_KIND_SYMLINK &&
	    (fd >= 0 ? fchmod(fd, r->mode & 07777) : chmod(path, r->mode & 07777)) != 0)
		return -errno;
	if ((e->attr_mask & BL_ATTR_OWNER) &&
	    (fd >= 0 ? fchown(fd, r->uid, r->gid) : lchown(path, r->uid, r->gid)) != 0)
		return -errno;
	if ((e->attr_mask & BL_ATTR_TIMES) &&
	    (fd >= 0 ? futimens(fd, ts) : utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW)) != 0)
		return -errno;
	return 0;
}

/* A change of attributes made while the file was open for writing (touch of an existing
 * file: ATTRIB, CLOSE_WRITE): the same calls on an open file. */
static int replay_attr_open(const bl_entry_t *e, const char *path)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0) return errno == EACCES || errno == EPERM ? replay_attr(e, path, -1) : -errno;
	int rc = replay_attr(e, path, fd);
	if (close(fd) != 0 && rc == 0) rc = -errno;
	return rc;
}

static void count_lost(watch_t *w)
{
	pthread_mutex_lock(&w->mu);
	w->st.lost_creates++;
	pthread_mutex_unlock(&w->mu);
}

/* Runs a creating syscall (op returns 0 or -errno; -EEXIST when the kernel already knows the
 * name) so that it really creates: a lookup may hand the name to the kernel at any moment
 * before (open() is linearizable), and then the kernel would not emit IN_CREATE. An exclusive
 * create fails with EEXIST without any event; the kernel is then made to forget the name and
 * the create is tried again, WATCH_CREATE_TRIES times at most. */
static int create_exclusive(watch_t *w, bl_entry_t *e, int slot, int (*op)(void *ctx), void *ctx)
{
	int rc = -EEXIST;
	for (uint32_t i = 0; i < WATCH_CREATE_TRIES && rc == -EEXIST; i++) {
		forget_known(w, e, slot);
		rc = op(ctx);
	}
	if (rc == -EEXIST) count_lost(w);
	return rc;
}

typedef struct open_ctx {
	const char *path;
	mode_t mode;
	int fd;
} open_ctx_t;

static int open_excl(void *ctx)
{
	open_ctx_t *c = ctx;
	c->fd = open(c->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, c->mode);
	return c->fd < 0 ? -errno : 0;
}

static int replay_put(watch_t *w, bl_entry_t *e, const char *path)
{
	/* no FLUSH at close: the handle is noflush */
	if (!e->create && e->how == BL_HOW_PATH) { /* truncate(2): MODIFY, no open, no close */
		if (truncate(path, (off_t)e->rec.size) != 0) return -errno;
		return e->attr_mask ? replay_attr(e, path, -1) : 0;
	}
	open_ctx_t oc = {.path = path, .mode = (mode_t)(e->rec.mode & 07777), .fd = -1};
	int rc = e->create ? create_exclusive(w, e, 0, open_excl, &oc) : -EEXIST;
	if (e->create) unmark(w, e);
	bool created = rc == 0;
	if (rc == -EEXIST) { /* a changed file, or a create that lost its event: a plain open */
		oc.fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
		rc = oc.fd < 0 ? -errno : 0;
	}
	if (rc) return rc;
	int fd = oc.fd;
	if (!created && e->rec.size > 0 && e->old_size <= e->rec.size) {
		/* MODIFY by a write of the last byte (ignored by the handler): the kernel's size grows
		 * to the new one (it had the old one, or a newer one the invalidation brings back), and
		 * unlike ftruncate a direct_io write costs no security.capability GETXATTR. */
		ssize_t n = pwrite(fd, "", 1, (off_t)(e->rec.size - 1));
		if (n != 1) rc = n < 0 ? -errno : -EIO;
	} else if (!created) {
		/* MODIFY, and the kernel's size goes straight to the new one: no O_TRUNC, whose
		 * size 0 a reader on this mount would see until a write grew it back */
		if (ftruncate(fd, (off_t)e->rec.size) != 0) rc = -errno;
	} else if (e->rec.size > 0) { /* a new file: nobody reads it yet; empty, no MODIFY */
		ssize_t n = pwrite(fd, "", 1, (off_t)(e->rec.size - 1));
		if (n != 1) rc = n < 0 ? -errno : -EIO;
	}
	if (rc == 0 && e->how == BL_HOW_ATTRIB_OPEN) { /* touch: its futimens before the close */
		struct timespec ts[2];
		rec_times(&e->rec, ts);
		if (futimens(fd, ts) != 0) rc = -errno;
	}
	if (close(fd) != 0 && rc == 0) rc = -errno;
	if (rc == 0 && e->attr_mask) rc = replay_attr(e, path, -1);
	return rc;
}

typedef struct path_ctx {
	const char *path, *path2; /* mkdir, symlink (path2: the target), rename (path -> path2) */
	mode_t mode;
} path_ctx_t;

static int mkdir_op(void *ctx)
{
	const path_ctx_t *c = ctx;
	return mkdir(c->path, c->mode) == 0 ? 0 : -errno;
}

static int symlink_op(void *ctx)
{
	const path_ctx_t *c = ctx;
	return symlink(c->path2, c->path) == 0 ? 0 : -errno;
}

static int rename_noreplace_op(void *ctx)
{
	const path_ctx_t *c = ctx;
	return renameat2(AT_FDCWD, c->path, AT_FDCWD, c->path2, RENAME_NOREPLACE) == 0 ? 0 : -errno;
}

static int replay(replayer_t *t, bl_entry_t *e)
{
	watch_t *w = t->w;
	int rc = make_path(w, e->key, e->key_len, t->path);
	if (rc == 0 && (e->op == BL_RENAME || e->op == BL_EXCHANGE))
		rc = make_path(w, e->key2, e->key2_len, t->path2);
	if (rc) return rc;
	const char *p = t->path;
	switch (e->op) {
	case BL_PUT:
		return replay_put(w, e, p);
	case BL_ATTR:
		return e->how == BL_HOW_OPEN ? replay_attr_open(e, p) : replay_attr(e, p, -1);
	case BL_UNLINK:
		rc = unlink(p);
		break;
	case BL_RMDIR:
		rc = rmdir(p);
		break;
	case BL_MKDIR: {
		path_ctx_t c = {.path = p, .mode = (mode_t)(e->rec.mode & 07777)};
		rc = create_exclusive(w, e, 0, mkdir_op, &c);
		unmark(w, e);
		if (rc == 0) remember_mkdir(w, e);
		return rc;
	}
	case BL_SYMLINK: {
		path_ctx_t c = {.path = p, .path2 = e->key2};
		rc = create_exclusive(w, e, 0, symlink_op, &c);
		unmark(w, e);
		return rc;
	}
	case BL_RENAME:
		if (!backlog_replaces(e)) { /* onto a free name: exclusively, as a create */
			path_ctx_t c = {.path = p, .path2 = t->path2};
			return create_exclusive(w, e, 1, rename_noreplace_op, &c);
		}
		forget_known(w, e, 1);
		rc = rename(p, t->path2);
		break;
	case BL_EXCHANGE:
		forget_known(w, e, 0);
		forget_known(w, e, 1);
		rc = renameat2(AT_FDCWD, p, AT_FDCWD, t->path2, RENAME_EXCHANGE);
		break;
	}
	return rc == 0 ? 0 : -errno;
}

static void *run(void *arg)
{
	replayer_t *t = arg;
	watch_t *w = t->w;
	atomic_store(&w->tids[t - w->threads], (int)syscall(SYS_gettid));
	pthread_mutex_lock(&w->mu);
	for (;;) {
		bl_entry_t *e = NULL;
		while (!w->stop && !(e = backlog_take_ready(w->bl)))
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->stop) break;
		if (backlog_len(w->bl) > 0) pthread_cond_signal(&w->cv); /* more for another thread */
		pthread_mutex_unlock(&w->mu);
		bool waited = settle(w, e);
		int rc = replay(t, e);
		pthread_mutex_lock(&w->mu);
		backlog_done(w->bl, e);
		sync_marks(w);
		w->st.replayed++;
		if (waited) w->st.settle_waits++;
		if (rc) {
			w->st.failed++;
			w->st.last_errno = -rc;
		}
		if (backlog_len(w->bl) > 0) pthread_cond_broadcast(&w->cv); /* what waited for e may go */
	}
	bool last = --w->running == 0;
	if (last) {
		backlog_clear(w->bl);
		sync_marks(w);
	}
	pthread_mutex_unlock(&w->mu);
	if (last && w->on_exit) w->on_exit(w->arg);
	return NULL;
}

/* ------------------------------------------------------------------ start, stop */

int watch_start(const watch_config_t *cfg, watch_t **out)
{
	assert(cfg && out);
	if (!cfg->mount_path || cfg->mount_path[0] != '/') return -EINVAL;
	size_t ml = strlen(cfg->mount_path);
	while (ml > 1 && cfg->mount_path[ml - 1] == '/')
		ml--;
	if (ml >= PATH_MAX - 2) return -EINVAL;
	watch_t *w = calloc(1, sizeof *w);
	if (!w) return -ENOMEM;
	memcpy(w->mount, cfg->mount_path, ml);
	w->mount_len = ml == 1 ? 0 : ml; /* "/" mounts: keys become "/key" */
	w->mount[w->mount_len] = '\0';
	w->settle_ns = (uint64_t)(cfg->settle_us ? cfg->settle_us : WATCH_MKDIR_SETTLE_US) * 1000u;
	w->on_exit = cfg->on_exit;
	w->forget = cfg->forget;
	w->arg = cfg->arg;
	w->n_threads = cfg->threads ? cfg->threads : WATCH_THREADS;
	if (w->n_threads > WATCH_THREADS_MAX) {
		free(w);
		return -EINVAL;
	}
	backlog_config_t bc = {
	    .entries_max = cfg->backlog_max ? cfg->backlog_max : WATCH_BACKLOG_MAX,
	    .key_bytes_max = WATCH_KEY_BYTES_MAX,
	    .hide_ns_max = (uint64_t)(cfg->hide_ms_max ? cfg->hide_ms_max : WATCH_HIDE_MS_MAX) * 1000000u,
	};
	int rc = backlog_new(&bc, &w->bl);
	if (rc) {
		free(w);
		return rc;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	/* The thread inherits a full signal mask: a signal must never interrupt its syscalls on the
	 * mount (FUSE would send INTERRUPT) nor run the daemon's handlers on it. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	w->running = w->n_threads;
	for (uint32_t i = 0; i < w->n_threads && rc == 0; i++) {
		w->threads[i].w = w;
		rc = pthread_create(&w->threads[i].thread, NULL, run, &w->threads[i]);
		w->threads[i].started = rc == 0;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		pthread_mutex_lock(&w->mu);
		w->on_exit = NULL;
		for (uint32_t i = 0; i < w->n_threads; i++)
			if (!w->threads[i].started) w->running--;
		pthread_mutex_unlock(&w->mu);
		watch_stop(w);
		return -rc;
	}
	*out = w;
	return 0;
}

void watch_request_stop(watch_t *w)
{
	assert(w);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void watch_stop(watch_t *w)
{
	if (!w) return;
	watch_request_stop(w);
	for (uint32_t i = 0; i < w->n_threads; i++)
		if (w->threads[i].started) pthread_join(w->threads[i].thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	backlog_free(w->bl);
	free(w);
}

/* ------------------------------------------------------------------ loop thread */

void watch_push(watch_t *w, const sm_event_t *ev, bool local, uint32_t txn_flags)
{
	assert(w && ev);
	uint64_t t = now_ns();
	pthread_mutex_lock(&w->mu);
	if (!w->stop) {
		int rc = backlog_push(w->bl, ev, local, txn_flags, t);
		if (rc > 0) w->wake = true;
		sync_marks(w);
	}
	pthread_mutex_unlock(&w->mu);
}

void watch_end_batch(watch_t *w)
{
	assert(w);
	pthread_mutex_lock(&w->mu);
	if (w->wake) pthread_cond_signal(&w->cv); /* a thread that takes work wakes the next */
	w->wake = false;
	pthread_mutex_unlock(&w->mu);
}

bool watch_is_replay(const watch_t *w, pid_t pid)
{
	assert(w);
	for (uint32_t i = 0; i < w->n_threads; i++) {
		int tid = atomic_load_explicit(&w->tids[i], memory_order_relaxed);
		if (tid > 0 && pid == tid) return true;
	}
	return false;
}

static bool has_marks(const watch_t *w)
{
	return atomic_load_explicit(&w->n_marks, memory_order_relaxed) != 0;
}

watch_answer_t watch_replay_lookup(watch_t *w, const char *key, size_t key_len, sm_record_t *rec)
{
	assert(w && (key || key_len == 0));
	if (!has_marks(w)) return WATCH_PASS;
	pthread_mutex_lock(&w->mu);
	bl_answer_t a = backlog_lookup(w->bl, key, key_len, rec);
	pthread_mutex_unlock(&w->mu);
	return a == BL_PRESENT ? WATCH_PRESENT : a == BL_ABSENT ? WATCH_ABSENT : WATCH_PASS;
}

void watch_looked_up(watch_t *w, const char *key, size_t key_len, uint64_t parent)
{
	assert(w && (key || key_len == 0));
	if (!has_marks(w)) return;
	pthread_mutex_lock(&w->mu);
	backlog_known(w->bl, key, key_len, parent);
	pthread_mutex_unlock(&w->mu);
}

size_t watch_hidden_children(watch_t *w, const char *dir, size_t dir_len,
                             void (*fn)(void *ctx, const char *name, size_t name_len), void *ctx)
{
	assert(w && fn);
	if (!has_marks(w)) return 0;
	uint64_t t = now_ns();
	pthread_mutex_lock(&w->mu);
	size_t n = backlog_hidden_children(w->bl, dir, dir_len, t, fn, ctx);
	pthread_mutex_unlock(&w->mu);
	return n;
}

bool watch_reveal(watch_t *w, const char *key, size_t key_len, sm_record_t *rec)
{
	assert(w && (key || key_len == 0));
	if (!has_marks(w)) return false;
	pthread_mutex_lock(&w->mu);
	bool found = backlog_reveal(w->bl, key, key_len, rec);
	sync_marks(w);
	pthread_mutex_unlock(&w->mu);
	return found;
}

int watch_ghost(watch_t *w, uint64_t ino, char *buf, size_t cap, sm_record_t *rec)
{
	assert(w && buf);
	if (!has_marks(w)) return -ENOENT;
	const char *key;
	size_t len;
	sm_record_t r;
	int rc = -ENOENT;
	pthread_mutex_lock(&w->mu);
	if (backlog_ghost_ino(w->bl, ino, &key, &len, &r)) {
		rc = -ENAMETOOLONG;
		if (len < cap) {
			memcpy(buf, key, len);
			buf[len] = '\0';
			if (rec) *rec = r;
			rc = (int)len;
		}
	}
	pthread_mutex_unlock(&w->mu);
	return rc;
}

int watch_forward(watch_t *w, const char *key, size_t key_len, char *buf, size_t cap)
{
	assert(w && buf && (key || key_len == 0));
	pthread_mutex_lock(&w->mu);
	int rc = backlog_forward(w->bl, key, key_len, buf, cap);
	pthread_mutex_unlock(&w->mu);
	return rc;
}

void watch_get_stats(watch_t *w, watch_stats_t *st)
{
	assert(w && st);
	bl_stats_t b;
	pthread_mutex_lock(&w->mu);
	*st = w->st;
	backlog_get_stats(w->bl, &b);
	pthread_mutex_unlock(&w->mu);
	st->queued = b.queued;
	st->merged = b.merged;
	st->cancelled = b.cancelled;
	st->dropped = b.dropped;
	st->backlog = b.len;
	st->backlog_max = b.len_max;
}
