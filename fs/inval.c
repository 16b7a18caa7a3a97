/* inval.c - the invalidation thread (see inval.h for what is invalidated and why here).
 *
 * A fixed ring of notifications under one mutex: the loop thread pushes (never waits: a full
 * ring drops), the thread pops one at a time and calls libfuse with the mutex released, so a
 * notify call that blocks in the kernel (it takes the parent directory's lock) delays only
 * later notifications, never the loop.
 */
#define FUSE_USE_VERSION 314
#include "inval.h"

#include <assert.h>
#include <errno.h>
#include <fuse_lowlevel.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

typedef enum { N_ENTRY = 1, N_INODE_ATTR, N_INODE_DATA } ntype_t;

typedef struct notif {
	ntype_t type;
	void (*done)(void *arg, int rc); /* inval_attr_then: called after the notify */
	void *arg;
	uint64_t ino; /* N_ENTRY: the parent */
	uint16_t name_len;
	char name[SM_NAME_BYTES_MAX + 1];
} notif_t;

struct inval {
	struct fuse_session *se;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	void (*on_exit)(void *arg);
	void *arg;
	notif_t *ring;
	size_t head, len; /* under mu */
	inval_stats_t st; /* under mu */
};

static void *run(void *arg)
{
	inval_t *iv = arg;
	notif_t n;
	pthread_mutex_lock(&iv->mu);
	for (;;) {
		while (!iv->stop && iv->len == 0)
			pthread_cond_wait(&iv->cv, &iv->mu);
		if (iv->stop) break;
		n = iv->ring[iv->head];
		iv->head = (iv->head + 1) % INVAL_QUEUE_MAX;
		iv->len--;
		pthread_mutex_unlock(&iv->mu);
		int rc = 0;
		if (n.type == N_ENTRY)
			rc = fuse_lowlevel_notify_inval_entry(iv->se, n.ino, n.name, n.name_len);
		else if (n.type == N_INODE_ATTR)
			rc = fuse_lowlevel_notify_inval_inode(iv->se, n.ino, -1, 0);
		else
			rc = fuse_lowlevel_notify_inval_inode(iv->se, n.ino, 0, 0);
		if (n.done) n.done(n.arg, rc);
		pthread_mutex_lock(&iv->mu);
		iv->st.done++;
		if (rc != 0 && rc != -ENOENT) iv->st.failed++;
	}
	/* discarded: whoever waits for a completion still gets one */
	while (iv->len > 0) {
		n = iv->ring[iv->head];
		iv->head = (iv->head + 1) % INVAL_QUEUE_MAX;
		iv->len--;
		if (!n.done) continue;
		pthread_mutex_unlock(&iv->mu);
		n.done(n.arg, -ECANCELED);
		pthread_mutex_lock(&iv->mu);
	}
	pthread_mutex_unlock(&iv->mu);
	if (iv->on_exit) iv->on_exit(iv->arg);
	return NULL;
}

int inval_start(struct fuse_session *se, void (*on_exit)(void *arg), void *arg, inval_t **out)
{
	assert(se && out);
	inval_t *iv = calloc(1, sizeof *iv);
	if (!iv) return -ENOMEM;
	iv->se = se;
	iv->on_exit = on_exit;
	iv->arg = arg;
	iv->ring = calloc(INVAL_QUEUE_MAX, sizeof *iv->ring);
	if (!iv->ring) {
		free(iv);
		return -ENOMEM;
	}
	pthread_mutex_init(&iv->mu, NULL);
	pthread_cond_init(&iv->cv, NULL);
	int rc = pthread_create(&iv->thread, NULL, run, iv);
	if (rc != 0) {
		pthread_cond_destroy(&iv->cv);
		pthread_mutex_destroy(&iv->mu);
		free(iv->ring);
		free(iv);
		return -rc;
	}
	*out = iv;
	return 0;
}

void inval_request_stop(inval_t *iv)
{
	assert(iv);
	pthread_mutex_lock(&iv->mu);
	iv->stop = true;
	pthread_cond_signal(&iv->cv);
	pthread_mutex_unlock(&iv->mu);
}

void inval_stop(inval_t *iv)
{
	if (!iv) return;
	inval_request_stop(iv);
	pthread_join(iv->thread, NULL);
	pthread_cond_destroy(&iv->cv);
	pthread_mutex_destroy(&iv->mu);
	free(iv->ring);
	free(iv);
}

/* Called with mu held. */
static void enqueue(inval_t *iv, ntype_t type, uint64_t ino, const char *name, size_t name_len)
{
	if (ino == 0) return;
	if (iv->len == INVAL_QUEUE_MAX) {
		iv->st.dropped++;
		return;
	}
	assert(name_len <= SM_NAME_BYTES_MAX);
	notif_t *n = &iv->ring[(iv->head + iv->len) % INVAL_QUEUE_MAX];
	n->type = type;
	n->done = NULL;
	n->arg = NULL;
	n->ino = ino;
	n->name_len = (uint16_t)name_len;
	if (name_len) memcpy(n->name, name, name_len);
	n->name[name_len] = '\0';
	iv->len++;
	iv->st.queued++;
}

static void push(void *ctx, const fs_change_t *c)
{
	inval_t *iv = ctx;
	assert(iv && c && c->ev);
	if (c->local) return;
	uint64_t ino = c->ino_known ? c->ino : 0;
	uint64_t rep = c->replaced_ino_known ? c->replaced_ino : 0;
	pthread_mutex_lock(&iv->mu);
	size_t before = iv->len;
	switch (c->ev->type) {
	case SM_EV_CREATE:
		enqueue(iv, N_ENTRY, c->parent_ino, c->name, c->name_len);
		enqueue(iv, N_INODE_ATTR, c->parent_ino, NULL, 0);
		break;
	case SM_EV_MODIFY:
		enqueue(iv, N_INODE_DATA, ino, NULL, 0);
		break;
	case SM_EV_ATTRIB:
		enqueue(iv, N_INODE_ATTR, ino, NULL, 0);
		break;
	case SM_EV_DELETE:
		enqueue(iv, N_ENTRY, c->parent_ino, c->name, c->name_len);
		enqueue(iv, N_INODE_ATTR, c->parent_ino, NULL, 0);
		break;
	case SM_EV_RENAME:
	case SM_EV_EXCHANGE:
		enqueue(iv, N_ENTRY, c->parent_ino, c->name, c->name_len);
		enqueue(iv, N_ENTRY, c->parent2_ino, c->name2, c->name2_len);
		enqueue(iv, N_INODE_ATTR, c->parent_ino, NULL, 0);
		if (c->parent2_ino != c->parent_ino) enqueue(iv, N_INODE_ATTR, c->parent2_ino, NULL, 0);
		enqueue(iv, N_INODE_ATTR, ino, NULL, 0);
		enqueue(iv, N_INODE_ATTR, rep, NULL, 0);
		break;
	}
	if (iv->len != before) pthread_cond_signal(&iv->cv);
	pthread_mutex_unlock(&iv->mu);
}

int inval_attr_then(inval_t *iv, uint64_t ino, void (*done)(void *arg, int rc), void *arg)
{
	assert(iv && ino != 0 && done);
	int rc = 0;
	pthread_mutex_lock(&iv->mu);
	if (iv->stop || iv->len == INVAL_QUEUE_MAX) {
		rc = -EAGAIN;
	} else {
		enqueue(iv, N_INODE_ATTR, ino, NULL, 0);
		notif_t *n = &iv->ring[(iv->head + iv->len - 1) % INVAL_QUEUE_MAX];
		n->done = done;
		n->arg = arg;
		pthread_cond_signal(&iv->cv);
	}
	pthread_mutex_unlock(&iv->mu);
	return rc;
}

fs_change_sink_t inval_sink(inval_t *iv)
{
	return (fs_change_sink_t){.ctx = iv, .push = push, .end_batch = NULL};
}

void inval_get_stats(inval_t *iv, inval_stats_t *st)
{
	assert(iv && st);
	pthread_mutex_lock(&iv->mu);
	*st = iv->st;
	pthread_mutex_unlock(&iv->mu);
}
