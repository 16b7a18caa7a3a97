/* watch_test.c - unit tests of watch/: the backlog's coalescing, bounds and marks (pure, no
 * threads), and the replay thread against a plain temporary directory watched with inotify:
 * the replay's syscalls make the same events on any filesystem, so what a watcher of a
 * MetaStore mount sees is checked here without FUSE (tests/integration/watch_test.py does the
 * rest on real mounts). malloc/calloc are wrapped to provoke -ENOMEM.
 */
#include "backlog.h"
#include "watch.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ allocation failures */

static long fail_after = -1; /* allocations to let through before failing; -1 = never fail */
void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t m);
static bool alloc_fails(void)
{
	if (fail_after < 0) return false;
	if (fail_after == 0) return true;
	fail_after--;
	return false;
}
void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t m) { return alloc_fails() ? NULL : __real_calloc(n, m); }

/* ------------------------------------------------------------------ events */

static sm_record_t R(sm_kind_t kind, uint64_t ino, uint64_t size)
{
	uint32_t fmt = kind == SM_KIND_DIR ? S_IFDIR : kind == SM_KIND_SYMLINK ? S_IFLNK : S_IFREG;
	return (sm_record_t){.kind = kind,
	                     .ino = ino,
	                     .size = size,
	                     .mode = fmt | 0644,
	                     .uid = 0,
	                     .gid = 0,
	                     .mtime_ns = 1000000000ll,
	                     .ctime_ns = 1000000000ll};
}

static int64_t rev_counter;

static sm_event_t E(sm_event_type_t type, const char *key, const sm_record_t *old_rec,
                    const sm_record_t *new_rec)
{
	sm_event_t ev = {.type = type, .revision = ++rev_counter, .key = key, .key_len = strlen(key)};
	if (old_rec) ev.has_old = true, ev.old_rec = *old_rec;
	if (new_rec) ev.has_new = true, ev.new_rec = *new_rec;
	return ev;
}

static sm_event_t E2(sm_event_type_t type, const char *key, const char *key2, const sm_record_t *old_rec,
                     const sm_record_t *new_rec, const sm_record_t *replaced)
{
	sm_event_t ev = E(type, key, old_rec, new_rec);
	ev.key2 = key2;
	ev.key2_len = strlen(key2);
	if (replaced) ev.has_replaced = true, ev.replaced_rec = *replaced;
	return ev;
}

#define NOW 1000000000000ull
#define HIDE_NS 1000000000ull

static backlog_t *new_backlog(size_t entries_max)
{
	backlog_config_t c = {.entries_max = entries_max, .key_bytes_max = 1u << 20, .hide_ns_max = HIDE_NS};
	backlog_t *b = NULL;
	ck_assert_int_eq(backlog_new(&c, &b), 0);
	return b;
}

static int push(backlog_t *b, sm_event_t ev) { return backlog_push(b, &ev, false, 0, NOW); }
static int push_local(backlog_t *b, sm_event_t ev) { return backlog_push(b, &ev, true, 0, NOW); }

static bool hidden(backlog_t *b, const char *dir, const char *name, uint64_t now);

/* replay: a replay thread's lookup; else whether a listing of key's directory leaves it out. */
static bl_answer_t look(backlog_t *b, bool replay, const char *key, sm_record_t *rec)
{
	if (replay) return backlog_lookup(b, key, strlen(key), rec);
	char dir[256];
	const char *slash = strrchr(key, '/');
	size_t dl = slash ? (size_t)(slash - key) : 0;
	memcpy(dir, key, dl);
	dir[dl] = '\0';
	return hidden(b, dir, slash ? slash + 1 : key, NOW) ? BL_ABSENT : BL_PASS;
}

typedef struct seen_name {
	const char *want;
	int hits;
} seen_name_t;

static void see_name(void *ctx, const char *name, size_t len)
{
	seen_name_t *s = ctx;
	if (strlen(s->want) == len && memcmp(s->want, name, len) == 0) s->hits++;
}

/* Whether a listing of dir leaves name out. */
static bool hidden(backlog_t *b, const char *dir, const char *name, uint64_t now)
{
	seen_name_t s = {.want = name};
	backlog_hidden_children(b, dir, strlen(dir), now, see_name, &s);
	return s.hits > 0;
}

static bool whidden(watch_t *w, const char *dir, const char *name)
{
	seen_name_t s = {.want = name};
	watch_hidden_children(w, dir, strlen(dir), see_name, &s);
	return s.hits > 0;
}

/* As look(), through the module. */
static watch_answer_t wlook(watch_t *w, bool replay, const char *key, sm_record_t *rec)
{
	if (replay) return watch_replay_lookup(w, key, strlen(key), rec);
	char dir[256];
	const char *slash = strrchr(key, '/');
	size_t dl = slash ? (size_t)(slash - key) : 0;
	memcpy(dir, key, dl);
	dir[dl] = '\0';
	return whidden(w, dir, slash ? slash + 1 : key) ? WATCH_ABSENT : WATCH_PASS;
}

static bl_stats_t stats(backlog_t *b)
{
	bl_stats_t st;
	backlog_get_stats(b, &st);
	return st;
}

/* ------------------------------------------------------------------ backlog */

START_TEST(t_config)
{
	backlog_t *b = NULL;
	backlog_config_t c = {.entries_max = 0, .key_bytes_max = 1u << 20};
	ck_assert_int_eq(backlog_new(&c, &b), -EINVAL);
	c.entries_max = BACKLOG_ENTRIES_MAX + 1;
	ck_assert_int_eq(backlog_new(&c, &b), -EINVAL);
	c.entries_max = 4;
	c.key_bytes_max = 100;
	ck_assert_int_eq(backlog_new(&c, &b), -EINVAL);
	c.key_bytes_max = 1u << 20;
	fail_after = 0;
	int rc = backlog_new(&c, &b);
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	fail_after = 2; /* the struct and one table */
	rc = backlog_new(&c, &b);
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_int_eq(backlog_new(&c, &b), 0);
	ck_assert_uint_eq(backlog_len(b), 0);
	ck_assert_ptr_null(backlog_take(b));
	backlog_free(b);
	backlog_free(NULL);
}
END_TEST

START_TEST(t_create_hides_until_unmarked)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5), got;
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d/f", NULL, &f)), 1);
	ck_assert_uint_eq(backlog_len(b), 1);
	ck_assert_int_eq(look(b, false, "d/f", NULL), BL_ABSENT);
	ck_assert_int_eq(look(b, true, "d/f", NULL), BL_ABSENT);
	ck_assert_int_eq(look(b, false, "d/g", NULL), BL_PASS);
	ck_assert(hidden(b, "d", "f", NOW));
	ck_assert(!hidden(b, "d", "g", NOW));
	ck_assert(!hidden(b, "", "f", NOW));
	ck_assert(!hidden(b, "", "d/f", NOW));
	ck_assert(!backlog_reveal(b, "d/f", 3, &got)); /* not in flight: nothing to reveal yet */
	bl_entry_t *e = backlog_take(b);
	ck_assert_ptr_nonnull(e);
	ck_assert_int_eq(e->op, BL_PUT);
	ck_assert(e->create);
	ck_assert_str_eq(e->key, "d/f");
	ck_assert_uint_eq(backlog_len(b), 0);
	/* taken, not replayed yet: still hidden */
	ck_assert_int_eq(look(b, false, "d/f", NULL), BL_ABSENT);
	ck_assert(!backlog_reveal(b, "d/g", 3, &got));
	ck_assert(backlog_reveal(b, "d/f", 3, &got)); /* its create is answered: shown from now */
	ck_assert_uint_eq(got.ino, 7);
	ck_assert_uint_eq(got.size, 5);
	ck_assert_int_eq(look(b, false, "d/f", NULL), BL_PASS);
	ck_assert_int_eq(look(b, true, "d/f", NULL), BL_PASS);
	ck_assert(!hidden(b, "d", "f", NOW));
	ck_assert(!backlog_reveal(b, "d/f", 3, NULL));
	backlog_unmark(b, e); /* after the syscall: nothing left to drop */
	backlog_done(b, e);
	ck_assert_uint_eq(backlog_marks(b), 0);
	/* an unmark without a reveal (the syscall failed before the handler) */
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d/h", NULL, &f)), 1);
	e = backlog_take(b);
	backlog_unmark(b, e);
	ck_assert_int_eq(look(b, false, "d/h", NULL), BL_PASS);
	backlog_done(b, e);
	backlog_free(b);
}
END_TEST

START_TEST(t_hidden_expires_for_listings_only)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5);
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "f", NULL, &f)), 1);
	ck_assert(hidden(b, "", "f", NOW + HIDE_NS - 1));
	ck_assert(!hidden(b, "", "f", NOW + HIDE_NS));
	ck_assert_int_eq(backlog_lookup(b, "f", 1, NULL), BL_ABSENT); /* the replay's own: never expires */
	backlog_free(b);
}
END_TEST

START_TEST(t_known_names_are_forgotten_first)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5), x = R(SM_KIND_FILE, 8, 1);
	uint64_t parent = 0;
	const char *name = NULL;
	size_t len = 0;
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d/f", NULL, &f)), 1);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "d/g", "d/h", &x, &x, NULL)), 1);
	backlog_known(b, "d/f", 3, 42); /* a lookup answered it: the kernel knows d/f */
	backlog_known(b, "d/g", 3, 42); /* not hidden (a ghost): nothing to remember */
	backlog_known(b, "zz", 2, 42);  /* no mark at all */
	bl_entry_t *e = backlog_take(b);
	ck_assert(backlog_take_known(b, e, 0, &parent, &name, &len));
	ck_assert_uint_eq(parent, 42);
	ck_assert_uint_eq(len, 1);
	ck_assert_int_eq(memcmp(name, "f", 1), 0);
	ck_assert(!backlog_take_known(b, e, 0, &parent, &name, &len)); /* once */
	ck_assert(!backlog_take_known(b, e, 1, &parent, &name, &len)); /* no mark in slot 1 */
	backlog_done(b, e);
	e = backlog_take(b);
	ck_assert(!backlog_take_known(b, e, 0, &parent, &name, &len));
	ck_assert(!backlog_take_known(b, e, 1, &parent, &name, &len));
	backlog_known(b, "d/h", 3, 43); /* a rename's target, looked up before the rename's replay */
	ck_assert(backlog_take_known(b, e, 1, &parent, &name, &len));
	ck_assert_uint_eq(parent, 43);
	ck_assert_int_eq(memcmp(name, "h", 1), 0);
	backlog_done(b, e);
	backlog_known(b, "", 0, 1); /* the root: no mark, no harm */
	backlog_free(b);
}
END_TEST

START_TEST(t_merges_content_and_attributes)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f1 = R(SM_KIND_FILE, 7, 5), f2 = R(SM_KIND_FILE, 7, 9), f3 = f2, got;
	f3.mode = S_IFREG | 0600;
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "f", NULL, &f1)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "f", &f1, &f2)), 1); /* content: its own replay */
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "f", &f2, &f3)), 1); /* attributes: after it */
	ck_assert_uint_eq(backlog_len(b), 2);
	ck_assert_uint_eq(stats(b).merged, 1);
	bl_entry_t *e = backlog_take(b);
	ck_assert(backlog_reveal(b, "f", 1, &got)); /* the create reports the record it made */
	ck_assert_uint_eq(got.size, 5);
	ck_assert_int_eq(e->op, BL_PUT);
	ck_assert(e->create);
	ck_assert_uint_eq(e->rec.size, 5);
	ck_assert_uint_eq(e->attr_mask, 0);
	backlog_done(b, e);
	e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_PUT);
	ck_assert(!e->create);
	ck_assert_uint_eq(e->rec.size, 9);
	ck_assert_uint_eq(e->rec.mode, S_IFREG | 0600);
	ck_assert_uint_eq(e->attr_mask, BL_ATTR_MODE);
	ck_assert_int_eq(e->revision, rev_counter);
	backlog_done(b, e);

	/* attributes, then content: two replays in that order (merged, the content would come
	 * first and MODIFY would precede ATTRIB) */
	sm_record_t g1 = R(SM_KIND_FILE, 8, 1), g2 = g1, g3 = R(SM_KIND_FILE, 8, 4), g4 = g3;
	g2.uid = 1000;
	g4.mode = S_IFREG | 0600;
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "g", &g1, &g2)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "g", &g2, &g3)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "g", &g3, &g3)), 1); /* content + content: two */
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "g", &g3, &g4)), 1); /* joins the last content */
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "g", &g4, &g4)), 1); /* and so do more */
	ck_assert_uint_eq(backlog_len(b), 3);
	e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_ATTR);
	ck_assert_uint_eq(e->attr_mask, BL_ATTR_OWNER);
	backlog_done(b, e);
	e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_PUT);
	ck_assert(!e->create);
	ck_assert_uint_eq(e->attr_mask, 0);
	backlog_done(b, e);
	e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_PUT);
	ck_assert_uint_eq(e->attr_mask, BL_ATTR_MODE | BL_ATTR_TIMES);
	ck_assert_ptr_null(backlog_take(b));
	backlog_done(b, e);

	/* an attribute change nothing visible differs in still replays as times */
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "g", &g3, &g3)), 1);
	e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_ATTR);
	ck_assert_uint_eq(e->attr_mask, BL_ATTR_TIMES);
	backlog_done(b, e);
	backlog_free(b);
}
END_TEST

static int push_how(backlog_t *b, sm_event_t ev, uint32_t txn_flags)
{
	return backlog_push(b, &ev, false, txn_flags, NOW);
}

/* How a change was made (the txn's flags) picks the replay's calls and what may merge. */
START_TEST(t_how_the_change_was_made)
{
	backlog_t *b = new_backlog(16);
	const uint32_t fs = SM_TXN_FROM_FS, open_w = SM_TXN_FROM_FS | SM_TXN_OPEN_WRITE;
	sm_record_t f1 = R(SM_KIND_FILE, 7, 0), f2 = f1;
	f2.mtime_ns = 981173106000000000ll;
	/* touch -d new: the create and its times, one replay whose futimens shows the ATTRIB */
	ck_assert_int_eq(push_how(b, E(SM_EV_CREATE, "t", NULL, &f1), open_w | SM_TXN_ATTRIB_OPEN), 1);
	ck_assert_int_eq(push_how(b, E(SM_EV_ATTRIB, "t", &f1, &f2), open_w | SM_TXN_ATTRIB_OPEN), 1);
	ck_assert_uint_eq(backlog_len(b), 1);
	bl_entry_t *e = backlog_take(b);
	ck_assert(e->create && e->how == BL_HOW_ATTRIB_OPEN);
	ck_assert_uint_eq(e->attr_mask, 0);
	ck_assert_int_eq(e->rec.mtime_ns, f2.mtime_ns);
	/* its ATTRIB once the create is in flight: the create shows it, nothing more */
	ck_assert_int_eq(push_how(b, E(SM_EV_ATTRIB, "t", &f1, &f2), open_w | SM_TXN_ATTRIB_OPEN), 0);
	backlog_done(b, e);

	/* sizes: by path from a mount (truncate(2)), through an open file, from a txn */
	sm_record_t g1 = R(SM_KIND_FILE, 8, 4), g2 = R(SM_KIND_FILE, 8, 2);
	ck_assert_int_eq(push_how(b, E(SM_EV_MODIFY, "g", &g1, &g2), fs), 1);
	ck_assert_int_eq(push_how(b, E(SM_EV_MODIFY, "g", &g2, &g1), open_w), 1);
	ck_assert_int_eq(push_how(b, E(SM_EV_MODIFY, "g", &g1, &g2), 0), 1);
	bl_how_t want[] = {BL_HOW_PATH, BL_HOW_DEFAULT, BL_HOW_DEFAULT};
	uint64_t old_sizes[] = {4, 2, 4};
	for (int i = 0; i < 3; i++) {
		e = backlog_take(b);
		ck_assert_int_eq(e->op, BL_PUT);
		ck_assert_int_eq(e->how, want[i]);
		ck_assert_uint_eq(e->old_size, old_sizes[i]);
		backlog_done(b, e);
	}

	/* attributes set while open (touch existing) neither merge into the content before them
	 * nor take the plain chmod after them */
	sm_record_t h1 = R(SM_KIND_FILE, 9, 3), h2 = h1;
	h2.mtime_ns += 1000;
	sm_record_t h3 = h2;
	h3.mode = S_IFREG | 0600;
	ck_assert_int_eq(push_how(b, E(SM_EV_MODIFY, "h", &h1, &h1), open_w), 1);
	ck_assert_int_eq(push_how(b, E(SM_EV_ATTRIB, "h", &h1, &h2), open_w), 1);
	ck_assert_int_eq(push_how(b, E(SM_EV_ATTRIB, "h", &h2, &h3), fs), 1);
	ck_assert_uint_eq(backlog_len(b), 3);
	ck_assert_uint_eq(stats(b).merged, 1);
	e = backlog_take(b);
	ck_assert(e->op == BL_PUT && e->attr_mask == 0);
	backlog_done(b, e);
	e = backlog_take(b);
	ck_assert(e->op == BL_ATTR && e->how == BL_HOW_OPEN && e->attr_mask == BL_ATTR_TIMES);
	backlog_done(b, e);
	e = backlog_take(b);
	ck_assert(e->op == BL_ATTR && e->how == BL_HOW_DEFAULT && e->attr_mask == BL_ATTR_MODE);
	backlog_done(b, e);
	backlog_free(b);
}
END_TEST

START_TEST(t_no_merge_across_inos_taken_or_renames)
{
	backlog_t *b = new_backlog(16);
	sm_record_t a1 = R(SM_KIND_FILE, 7, 1), a2 = R(SM_KIND_FILE, 9, 2), d = R(SM_KIND_DIR, 3, 0);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "a", &a1, &a1)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "a", &a2, &a2)), 1); /* another incarnation */
	ck_assert_uint_eq(backlog_len(b), 2);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "x", "y", &d, &d, NULL)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "a", &a2, &a2)), 1); /* after a rename: no merge */
	ck_assert_uint_eq(backlog_len(b), 4);
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "a", &a2, &a2)), 1); /* merges into the newest */
	ck_assert_uint_eq(backlog_len(b), 4);
	bl_entry_t *e[4];
	for (int i = 0; i < 4; i++)
		e[i] = backlog_take(b);
	ck_assert_int_eq(e[2]->op, BL_RENAME);
	ck_assert_uint_eq(e[0]->seq + 1, e[1]->seq);
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "a", &a2, &a2)), 1); /* the taken one is closed */
	ck_assert_uint_eq(backlog_len(b), 1);
	for (int i = 0; i < 4; i++)
		backlog_done(b, e[i]);
	backlog_free(b);
}
END_TEST

START_TEST(t_directories_and_symlinks_do_not_merge)
{
	backlog_t *b = new_backlog(16);
	sm_record_t d = R(SM_KIND_DIR, 3, 0), l = R(SM_KIND_SYMLINK, 4, 6);
	l.value = (const uint8_t *)"target";
	l.value_len = 6;
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d", NULL, &d)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "d", &d, &d)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "d", &d, &d)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d/l", NULL, &l)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "d/l", &l, NULL)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "d", &d, NULL)), 1);
	bl_op_t want[] = {BL_MKDIR, BL_ATTR, BL_ATTR, BL_SYMLINK, BL_UNLINK, BL_RMDIR};
	for (int i = 0; i < 6; i++) {
		bl_entry_t *e = backlog_take(b);
		ck_assert_int_eq(e->op, want[i]);
		if (e->op == BL_SYMLINK) ck_assert_str_eq(e->key2, "target");
		backlog_done(b, e);
	}
	backlog_free(b);
}
END_TEST

START_TEST(t_create_then_delete_cancels)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5);
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "f", NULL, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "f", &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "f", &f, NULL)), 0);
	ck_assert_uint_eq(backlog_len(b), 0);
	ck_assert_uint_eq(backlog_marks(b), 0);
	ck_assert_uint_eq(stats(b).cancelled, 1);
	ck_assert_int_eq(look(b, false, "f", NULL), BL_PASS);
	/* with content changed since the create, all of it replays: the kernel learns the name */
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "f", NULL, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "f", &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "f", &f, NULL)), 1);
	ck_assert_uint_eq(backlog_len(b), 3);
	backlog_free(b);
}
END_TEST

START_TEST(t_change_then_delete_becomes_ghost)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5), got;
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "d/f", &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "d/f", &f, NULL)), 1);
	ck_assert_uint_eq(backlog_len(b), 2); /* the content, then the delete */
	bl_entry_t *m = backlog_take(b);
	ck_assert_int_eq(m->op, BL_PUT);
	ck_assert_int_eq(look(b, false, "d/f", NULL), BL_PASS);
	ck_assert_int_eq(look(b, true, "d/f", &got), BL_PRESENT);
	ck_assert_uint_eq(got.ino, 7);
	const char *k;
	size_t kl;
	ck_assert(backlog_ghost_ino(b, 7, &k, &kl, &got));
	ck_assert_uint_eq(kl, 3);
	ck_assert_int_eq(memcmp(k, "d/f", 3), 0);
	ck_assert(!backlog_ghost_ino(b, 8, &k, &kl, &got));
	bl_entry_t *e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_UNLINK);
	ck_assert_uint_eq(e->attr_mask, 0);
	backlog_done(b, m);
	backlog_done(b, e);
	ck_assert(!backlog_ghost_ino(b, 7, &k, &kl, &got));
	/* a plain delete of something the kernel knows */
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "g", &f, NULL)), 1);
	ck_assert_int_eq(look(b, true, "g", NULL), BL_PRESENT);
	backlog_free(b);
}
END_TEST

START_TEST(t_rename_and_exchange_marks)
{
	backlog_t *b = new_backlog(16);
	sm_record_t x = R(SM_KIND_FILE, 7, 1), y = R(SM_KIND_FILE, 8, 2), got;
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "a", "b", &x, &x, NULL)), 1);
	ck_assert_int_eq(look(b, true, "a", &got), BL_PRESENT);
	ck_assert_uint_eq(got.ino, 7);
	ck_assert_int_eq(look(b, false, "a", NULL), BL_PASS);
	ck_assert_int_eq(look(b, true, "b", NULL), BL_ABSENT);
	ck_assert_int_eq(look(b, false, "b", NULL), BL_ABSENT);
	bl_entry_t *r = backlog_take(b);
	ck_assert(!backlog_replaces(r)); /* onto a free name: replayed with RENAME_NOREPLACE */
	backlog_done(b, r);
	ck_assert_uint_eq(backlog_marks(b), 0);
	/* over an existing target: the replay sees the replaced record there */
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "a", "b", &x, &x, &y)), 1);
	ck_assert_int_eq(look(b, true, "b", &got), BL_PRESENT);
	ck_assert_uint_eq(got.ino, 8);
	ck_assert_int_eq(look(b, false, "b", NULL), BL_ABSENT);
	r = backlog_take(b);
	ck_assert(backlog_replaces(r));
	backlog_done(b, r);
	ck_assert_int_eq(push(b, E2(SM_EV_EXCHANGE, "a", "b", &x, &y, NULL)), 1);
	ck_assert_int_eq(look(b, true, "a", &got), BL_PRESENT);
	ck_assert_uint_eq(got.ino, 7);
	ck_assert_int_eq(look(b, true, "b", &got), BL_PRESENT);
	ck_assert_uint_eq(got.ino, 8);
	ck_assert_int_eq(look(b, false, "a", NULL), BL_ABSENT);
	ck_assert_int_eq(look(b, false, "b", NULL), BL_ABSENT);
	bl_entry_t *e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_EXCHANGE);
	ck_assert_str_eq(e->key2, "b");
	backlog_done(b, e);
	/* events without what a rename needs are ignored */
	sm_event_t bad = E(SM_EV_RENAME, "a", &x, &x);
	ck_assert_int_eq(backlog_push(b, &bad, false, 0, NOW), 0);
	backlog_free(b);
}
END_TEST

START_TEST(t_earliest_mark_answers)
{
	backlog_t *b = new_backlog(16);
	sm_record_t x = R(SM_KIND_DIR, 7, 0), y = R(SM_KIND_DIR, 9, 0), got;
	const char *k;
	size_t kl;
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "a", "b", &x, &x, NULL)), 1);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "b", "c", &x, &x, NULL)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "a", NULL, &y)), 1);
	ck_assert(backlog_ghost_ino(b, 7, &k, &kl, &got));
	ck_assert_int_eq(memcmp(k, "a", kl), 0);
	ck_assert_int_eq(look(b, true, "a", &got), BL_PRESENT); /* the ghost comes before the create */
	ck_assert_uint_eq(got.ino, 7);
	ck_assert_int_eq(look(b, false, "a", NULL), BL_ABSENT);
	bl_entry_t *e = backlog_take(b);
	backlog_done(b, e);
	ck_assert(backlog_ghost_ino(b, 7, &k, &kl, &got));
	ck_assert_int_eq(memcmp(k, "b", kl), 0);
	ck_assert_int_eq(look(b, true, "a", NULL), BL_ABSENT);
	backlog_done(b, backlog_take(b));
	e = backlog_take(b);
	ck_assert_int_eq(e->op, BL_MKDIR);
	ck_assert(backlog_reveal(b, "a", 1, &got));
	ck_assert_uint_eq(got.ino, 9);
	backlog_done(b, e);
	/* a rename's names are revealed when it is answered */
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "a", "z", &y, &y, NULL)), 1);
	e = backlog_take(b);
	ck_assert_int_eq(look(b, false, "z", NULL), BL_ABSENT);
	ck_assert(!backlog_reveal(b, "z", 1, NULL));
	ck_assert_int_eq(look(b, false, "z", NULL), BL_PASS);
	ck_assert_int_eq(look(b, true, "a", NULL), BL_PRESENT);
	ck_assert(!backlog_reveal(b, "a", 1, NULL));
	ck_assert_int_eq(look(b, true, "a", NULL), BL_PASS);
	ck_assert_uint_eq(backlog_marks(b), 0);
	backlog_done(b, e);
	backlog_free(b);
}
END_TEST

START_TEST(t_local_change_cancels_pending)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5);
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "f", NULL, &f)), 1);
	ck_assert_int_eq(push_local(b, E(SM_EV_MODIFY, "f", &f, &f)), 0);
	ck_assert_uint_eq(backlog_len(b), 0);
	ck_assert_int_eq(look(b, false, "f", NULL), BL_PASS);
	ck_assert_uint_eq(stats(b).cancelled, 1);
	ck_assert_int_eq(push_local(b, E(SM_EV_CREATE, "g", NULL, &f)), 0);
	ck_assert_uint_eq(stats(b).ignored, 2);
	/* a local rename closes the merge index too */
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "h", &f, &f)), 1);
	ck_assert_int_eq(push_local(b, E2(SM_EV_RENAME, "x", "y", &f, &f, NULL)), 0);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "h", &f, &f)), 1);
	ck_assert_uint_eq(backlog_len(b), 2);
	/* a local rename onto a pending key cancels that replay */
	ck_assert_int_eq(push_local(b, E2(SM_EV_RENAME, "z", "h", &f, &f, NULL)), 0);
	ck_assert_uint_eq(backlog_len(b), 1);
	/* a delete without its record (fs's dropped provisional file) is no change */
	sm_event_t ev = {.type = SM_EV_DELETE, .key = "q", .key_len = 1};
	ck_assert_int_eq(backlog_push(b, &ev, false, 0, NOW), 0);
	backlog_free(b);
}
END_TEST

START_TEST(t_bounds_drop)
{
	backlog_t *b = new_backlog(2);
	sm_record_t f = R(SM_KIND_FILE, 7, 5), g = R(SM_KIND_FILE, 8, 5);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "a", &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "b", &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "c", NULL, &g)), -ENOSPC);
	ck_assert_int_eq(look(b, false, "c", NULL), BL_PASS);       /* dropped: nothing hidden */
	ck_assert_int_eq(push(b, E(SM_EV_ATTRIB, "a", &f, &f)), 1); /* merges still fit */
	bl_stats_t st = stats(b);
	ck_assert_uint_eq(st.dropped, 1);
	ck_assert_uint_eq(st.len_max, 2);
	backlog_free(b);

	/* the key-bytes bound */
	backlog_config_t c = {
	    .entries_max = 16, .key_bytes_max = 2u * (SM_KEY_BYTES_MAX + 1), .hide_ns_max = HIDE_NS};
	ck_assert_int_eq(backlog_new(&c, &b), 0);
	char *big = malloc(SM_KEY_BYTES_MAX + 1);
	memset(big, 'k', SM_KEY_BYTES_MAX);
	big[SM_KEY_BYTES_MAX] = '\0';
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, big, &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "a", &f, &f)), 1);
	big[0] = 'j';
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, big, &f, &f)), -ENOSPC);
	ck_assert_uint_eq(stats(b).key_bytes, SM_KEY_BYTES_MAX + 1 + 2);
	free(big);
	backlog_free(b);
}
END_TEST

START_TEST(t_out_of_memory_drops)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 5), g = R(SM_KIND_FILE, 8, 5);
	fail_after = 0; /* the entry */
	int rc = push(b, E(SM_EV_CREATE, "f", NULL, &f));
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	fail_after = 2; /* entry and key pass, the mark fails */
	rc = push(b, E(SM_EV_CREATE, "f", NULL, &f));
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_uint_eq(backlog_len(b), 0);
	ck_assert_uint_eq(backlog_marks(b), 0);
	ck_assert_uint_eq(stats(b).dropped, 2);
	/* a delete after a pending change cannot be allocated: the change still replays */
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "g", &g, &g)), 1);
	fail_after = 0;
	rc = push(b, E(SM_EV_DELETE, "g", &g, NULL));
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_uint_eq(backlog_len(b), 1);
	backlog_free(b);
}
END_TEST

START_TEST(t_take_ready_overlaps_only_what_may)
{
	backlog_t *b = new_backlog(16);
	sm_record_t f = R(SM_KIND_FILE, 7, 1), g = R(SM_KIND_FILE, 8, 1), d = R(SM_KIND_DIR, 3, 0);
	ck_assert_ptr_null(backlog_take_ready(b));
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "a", &f, &f)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "b", &g, &g)), 1);
	bl_entry_t *e1 = backlog_take_ready(b), *e2 = backlog_take_ready(b);
	ck_assert_ptr_nonnull(e1);
	ck_assert_ptr_nonnull(e2); /* two files at once */
	ck_assert_uint_eq(backlog_in_flight(b), 2);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "a", &f, &f)), 1); /* e1 is taken: a new entry */
	ck_assert_ptr_null(backlog_take_ready(b));                  /* waits for e1: one key at a time */
	backlog_done(b, e1);
	bl_entry_t *e3 = backlog_take_ready(b);
	ck_assert_ptr_nonnull(e3);
	ck_assert_str_eq(e3->key, "a");
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d", NULL, &d)), 1);
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "c", &g, &g)), 1);
	ck_assert_ptr_null(backlog_take_ready(b)); /* a mkdir runs alone */
	backlog_done(b, e2);
	ck_assert_ptr_null(backlog_take_ready(b));
	backlog_done(b, e3);
	bl_entry_t *e4 = backlog_take_ready(b);
	ck_assert_int_eq(e4->op, BL_MKDIR);
	ck_assert_ptr_null(backlog_take_ready(b)); /* nothing beside it either */
	backlog_done(b, e4);
	bl_entry_t *e5 = backlog_take_ready(b);
	ck_assert_str_eq(e5->key, "c");
	backlog_done(b, e5);
	ck_assert_uint_eq(backlog_in_flight(b), 0);
	/* an owner that never comes back: freed with the backlog */
	ck_assert_int_eq(push(b, E(SM_EV_MODIFY, "z", &g, &g)), 1);
	ck_assert_ptr_nonnull(backlog_take(b));
	backlog_free(b);
}
END_TEST

static int fwd(backlog_t *b, const char *key, char *out, size_t cap)
{
	return backlog_forward(b, key, strlen(key), out, cap);
}

START_TEST(t_forward_follows_pending_moves)
{
	backlog_t *b = new_backlog(16);
	sm_record_t d = R(SM_KIND_DIR, 3, 0), f = R(SM_KIND_FILE, 7, 1), g = R(SM_KIND_FILE, 8, 1);
	char out[64];
	ck_assert_int_eq(fwd(b, "d/x", out, sizeof out), 3); /* nothing pending: itself */
	ck_assert_str_eq(out, "d/x");
	ck_assert_int_eq(push(b, E(SM_EV_CREATE, "d/x", NULL, &f)), 1);
	bl_entry_t *cur = backlog_take(b); /* the create in flight */
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "d", "e", &d, &d, NULL)), 1);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "e/x", "e/y", &f, &f, NULL)), 1);
	ck_assert_int_eq(fwd(b, "d/x", out, sizeof out), 3);
	ck_assert_str_eq(out, "e/y");
	ck_assert_int_eq(fwd(b, "d", out, sizeof out), 1);
	ck_assert_str_eq(out, "e");
	ck_assert_int_eq(fwd(b, "dd/x", out, sizeof out), 4); /* not below d */
	ck_assert_str_eq(out, "dd/x");
	ck_assert_int_eq(fwd(b, "d/x", out, 3), -ENAMETOOLONG);
	ck_assert_int_eq(fwd(b, "d/x", out, 2), -ENAMETOOLONG);
	ck_assert_int_eq(push(b, E2(SM_EV_EXCHANGE, "e/y", "q", &f, &g, NULL)), 1);
	ck_assert_int_eq(fwd(b, "d/x", out, sizeof out), 1);
	ck_assert_str_eq(out, "q");
	ck_assert_int_eq(fwd(b, "q", out, sizeof out), 3);
	ck_assert_str_eq(out, "e/y");
	ck_assert_int_eq(push(b, E(SM_EV_DELETE, "q", &f, NULL)), 1);
	ck_assert_int_eq(fwd(b, "d/x", out, sizeof out), -ENOENT);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "m", "e/y", &g, &g, &g)), 1);
	ck_assert_int_eq(fwd(b, "q", out, sizeof out), -ENOENT); /* replaced by what moved there */
	/* the in-flight entry counts too */
	backlog_clear(b);
	backlog_done(b, cur);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "a", "b", &f, &f, NULL)), 1);
	cur = backlog_take(b);
	ck_assert_int_eq(fwd(b, "a", out, sizeof out), 1);
	ck_assert_str_eq(out, "b");
	backlog_done(b, cur);
	ck_assert_int_eq(push(b, E2(SM_EV_RENAME, "s", "much/longer", &d, &d, NULL)), 1);
	ck_assert_int_eq(fwd(b, "s/x", out, 5), -ENAMETOOLONG); /* fits before the move, not after */
	ck_assert_int_eq(fwd(b, "s/x", out, sizeof out), 13);
	backlog_free(b);
}
END_TEST

/* ------------------------------------------------------------------ the replay thread */

typedef struct ino_ev {
	uint32_t mask, cookie;
	char name[256];
} ino_ev_t;

typedef struct fixture {
	char dir[PATH_MAX];
	int ifd;
	ino_ev_t evs[256];
	int n;
} fixture_t;

static void fx_init(fixture_t *fx)
{
	memset(fx, 0, sizeof *fx);
	snprintf(fx->dir, sizeof fx->dir, "/tmp/watch-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(fx->dir));
	fx->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	ck_assert_int_ge(fx->ifd, 0);
	ck_assert_int_ge(inotify_add_watch(fx->ifd, fx->dir, IN_ALL_EVENTS), 0);
}

/* Reads events until want_n are collected or timeout_ms pass without one. */
static void fx_read(fixture_t *fx, int want_n, int timeout_ms)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	while (fx->n < want_n) {
		struct pollfd p = {.fd = fx->ifd, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) <= 0) return;
		ssize_t len = read(fx->ifd, buf, sizeof buf);
		for (char *ptr = buf; len > 0 && ptr < buf + len;) {
			struct inotify_event *ev = (struct inotify_event *)ptr;
			if (fx->n < 256) {
				ino_ev_t *o = &fx->evs[fx->n++];
				o->mask = ev->mask;
				o->cookie = ev->cookie;
				snprintf(o->name, sizeof o->name, "%s", ev->len ? ev->name : "");
			}
			ptr += sizeof *ev + ev->len;
		}
	}
}

static void fx_expect(fixture_t *fx, int from, const uint32_t *masks, const char *const *names, int n)
{
	fx_read(fx, from + n, 2000);
	ck_assert_int_eq(fx->n, from + n);
	for (int i = 0; i < n; i++) {
		ck_assert_msg(fx->evs[from + i].mask == masks[i], "event %d: mask 0x%x, want 0x%x (%s)",
		              from + i, fx->evs[from + i].mask, masks[i], fx->evs[from + i].name);
		ck_assert_str_eq(fx->evs[from + i].name, names[i]);
	}
}

/* Folds runs of identical events from index from on (inotify may or may not have). */
static void fx_fold(fixture_t *fx, int from)
{
	int out = from;
	for (int i = from; i < fx->n; i++) {
		if (out > from && fx->evs[out - 1].mask == fx->evs[i].mask &&
		    fx->evs[out - 1].cookie == fx->evs[i].cookie &&
		    strcmp(fx->evs[out - 1].name, fx->evs[i].name) == 0)
			continue;
		fx->evs[out++] = fx->evs[i];
	}
	fx->n = out;
}

static void fx_cleanup(fixture_t *fx)
{
	close(fx->ifd);
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
	ck_assert_int_eq(system(cmd), 0);
}

static atomic_int exited;
static void on_exit_cb(void *arg) { atomic_store((atomic_int *)arg, 1); }

static atomic_int forgot;
static atomic_ullong forgot_parent;
static void forget_cb(void *arg, uint64_t parent, const char *name, size_t len)
{
	(void)arg;
	if (len == 1 && name[0] == 'x') atomic_fetch_add(&forgot, 1);
	atomic_store(&forgot_parent, parent);
}

/* One replay thread unless said otherwise: the order of syscalls is then the push order. */
static watch_t *start_watch_n(const char *dir, uint32_t settle_us, uint32_t threads)
{
	watch_config_t c = {.mount_path = dir,
	                    .settle_us = settle_us,
	                    .threads = threads,
	                    .on_exit = on_exit_cb,
	                    .forget = forget_cb,
	                    .arg = &exited};
	watch_t *w = NULL;
	ck_assert_int_eq(watch_start(&c, &w), 0);
	return w;
}

static watch_t *start_watch(const char *dir, uint32_t settle_us) { return start_watch_n(dir, settle_us, 1); }

static watch_stats_t wstats(watch_t *w)
{
	watch_stats_t st;
	watch_get_stats(w, &st);
	return st;
}

static void wait_replayed(watch_t *w, uint64_t n)
{
	for (int i = 0; i < 5000 && wstats(w).replayed < n; i++)
		usleep(1000);
	ck_assert_uint_eq(wstats(w).replayed, n);
}

static void wpush(watch_t *w, sm_event_t ev)
{
	watch_push(w, &ev, false, 0);
	watch_end_batch(w);
}

START_TEST(t_start_errors)
{
	watch_t *w = NULL;
	watch_config_t c = {.mount_path = "relative/path"};
	ck_assert_int_eq(watch_start(&c, &w), -EINVAL);
	c.mount_path = NULL;
	ck_assert_int_eq(watch_start(&c, &w), -EINVAL);
	char *longp = malloc(PATH_MAX + 1);
	memset(longp, 'a', PATH_MAX);
	longp[0] = '/';
	longp[PATH_MAX] = '\0';
	c.mount_path = longp;
	ck_assert_int_eq(watch_start(&c, &w), -EINVAL);
	free(longp);
	c.mount_path = "/tmp";
	c.threads = WATCH_THREADS_MAX + 1;
	ck_assert_int_eq(watch_start(&c, &w), -EINVAL);
	c.threads = 0;
	fail_after = 0;
	int rc = watch_start(&c, &w);
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	fail_after = 1; /* the watch, then the backlog fails */
	rc = watch_start(&c, &w);
	fail_after = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	watch_stop(NULL);
}
END_TEST

START_TEST(t_replay_tid)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch_n(fx.dir, 0, 0);
	ck_assert(!watch_is_replay(w, getpid()));
	ck_assert(!watch_is_replay(w, 0));
	int found = 0;
	for (int tries = 0; tries < 2000 && found < (int)WATCH_THREADS; tries++) {
		found = 0;
		DIR *d = opendir("/proc/self/task");
		struct dirent *de;
		while ((de = readdir(d)))
			if (de->d_name[0] != '.' && watch_is_replay(w, (pid_t)atoi(de->d_name))) found++;
		closedir(d);
		if (found < (int)WATCH_THREADS) usleep(1000);
	}
	ck_assert_int_eq(found, WATCH_THREADS); /* every replay thread, and nothing else */
	atomic_store(&exited, 0);
	watch_stop(w);
	ck_assert_int_eq(atomic_load(&exited), 1);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_replay_file_events)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 0);
	char p[PATH_MAX + 64];
	struct stat st;
	sm_record_t f1 = R(SM_KIND_FILE, 7, 5), f2 = R(SM_KIND_FILE, 7, 3), f3 = f2, f4 = f2;
	f1.mode = S_IFREG | 0640;

	wpush(w, E(SM_EV_CREATE, "f", NULL, &f1));
	uint32_t m1[] = {IN_CREATE, IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE};
	const char *n1[] = {"f", "f", "f", "f"};
	fx_expect(&fx, 0, m1, n1, 4);
	snprintf(p, sizeof p, "%s/f", fx.dir);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 5); /* the kernel's size comes from the byte at size-1 */

	wpush(w, E(SM_EV_MODIFY, "f", &f1, &f2));
	uint32_t m2[] = {IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE};
	fx_read(&fx, 4 + 4, 300); /* the truncating open may add a MODIFY of its own */
	int k = 4;
	ck_assert_uint_eq(fx.evs[k++].mask, m2[0]);
	while (k < fx.n && fx.evs[k].mask == IN_MODIFY)
		k++;
	ck_assert_int_ge(k, 6);
	ck_assert_int_eq(k, fx.n - 1);
	ck_assert_uint_eq(fx.evs[k].mask, IN_CLOSE_WRITE);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 3);

	f3.mode = S_IFREG | 0600;
	int base = fx.n;
	wpush(w, E(SM_EV_ATTRIB, "f", &f2, &f3));
	wait_replayed(w, 3);
	f4 = f3;
	f4.mtime_ns = 1500000000123456789ll;
	wpush(w, E(SM_EV_ATTRIB, "f", &f3, &f4));
	wait_replayed(w, 4);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0600);
	ck_assert_int_eq(st.st_mtim.tv_sec, 1500000000);
	ck_assert_int_eq(st.st_mtim.tv_nsec, 123456789);

	wpush(w, E(SM_EV_DELETE, "f", &f4, NULL));
	wait_replayed(w, 5);
	/* inotify folds an event identical to the unread one before it: compare folded */
	uint32_t m3[] = {IN_ATTRIB, IN_DELETE}; /* chmod, touch, the link count; then the name */
	const char *n3[] = {"f", "f"};
	fx_read(&fx, 1000, 200);
	fx_fold(&fx, base);
	fx_expect(&fx, base, m3, n3, 2);
	ck_assert_int_ne(stat(p, &st), 0);
	ck_assert_uint_eq(wstats(w).failed, 0);
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

static void wpush_how(watch_t *w, sm_event_t ev, uint32_t txn_flags)
{
	watch_push(w, &ev, false, txn_flags);
	watch_end_batch(w);
}

/* The calls follow how the change was made: touch new, touch existing, truncate(2). */
START_TEST(t_replay_how_it_was_made)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 0);
	const uint32_t open_w = SM_TXN_FROM_FS | SM_TXN_OPEN_WRITE;
	char p[PATH_MAX + 64];
	struct stat st;
	sm_record_t f1 = R(SM_KIND_FILE, 7, 0), f2 = f1, f3 = R(SM_KIND_FILE, 7, 6), f4 = R(SM_KIND_FILE, 7, 2);
	f2.mtime_ns = 981173106000000000ll;
	f3.mtime_ns = f2.mtime_ns;

	sm_event_t c = E(SM_EV_CREATE, "t", NULL, &f1), a = E(SM_EV_ATTRIB, "t", &f1, &f2);
	watch_push(w, &c, false, open_w | SM_TXN_ATTRIB_OPEN); /* one entry: both in one batch */
	watch_push(w, &a, false, open_w | SM_TXN_ATTRIB_OPEN);
	watch_end_batch(w);
	uint32_t m1[] = {IN_CREATE, IN_OPEN, IN_ATTRIB, IN_CLOSE_WRITE};
	const char *n1[] = {"t", "t", "t", "t"};
	fx_expect(&fx, 0, m1, n1, 4);
	snprintf(p, sizeof p, "%s/t", fx.dir);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_mtim.tv_sec, 981173106);

	wpush_how(w, E(SM_EV_ATTRIB, "t", &f2, &f2), open_w); /* touch existing */
	uint32_t m2[] = {IN_OPEN, IN_ATTRIB, IN_CLOSE_WRITE};
	fx_expect(&fx, 4, m2, n1, 3);

	wpush_how(w, E(SM_EV_MODIFY, "t", &f2, &f3), SM_TXN_FROM_FS); /* truncate(2) */
	uint32_t m3[] = {IN_MODIFY};
	fx_expect(&fx, 7, m3, n1, 1);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 6);

	wpush_how(w, E(SM_EV_MODIFY, "t", &f3, &f4), open_w); /* truncate(1), shrinking: ftruncate */
	uint32_t m4[] = {IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE};
	fx_expect(&fx, 8, m4, n1, 3);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 2);

	sm_record_t f5 = R(SM_KIND_FILE, 7, 9);
	wpush_how(w, E(SM_EV_MODIFY, "t", &f4, &f5), open_w); /* growing: the last byte written */
	fx_expect(&fx, 11, m4, n1, 3);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 9);
	ck_assert_uint_eq(wstats(w).failed, 0);
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_replay_namespace_events)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 1000);
	sm_record_t d = R(SM_KIND_DIR, 3, 0), a = R(SM_KIND_FILE, 7, 0), b = R(SM_KIND_FILE, 8, 2);
	sm_record_t l = R(SM_KIND_SYMLINK, 9, 3);
	l.value = (const uint8_t *)"a/b";
	l.value_len = 3;
	wpush(w, E(SM_EV_CREATE, "d", NULL, &d));
	wpush(w, E(SM_EV_CREATE, "d/x", NULL, &a)); /* inside a directory just made: waits */
	wpush(w, E(SM_EV_CREATE, "a", NULL, &a));
	wpush(w, E(SM_EV_CREATE, "b", NULL, &b));
	wpush(w, E(SM_EV_CREATE, "l", NULL, &l));
	wait_replayed(w, 5);
	ck_assert_uint_eq(wstats(w).settle_waits, 1);
	char p[PATH_MAX + 64], t[16] = "";
	snprintf(p, sizeof p, "%s/l", fx.dir);
	ck_assert_int_eq(readlink(p, t, sizeof t - 1), 3);
	ck_assert_str_eq(t, "a/b");
	fx_read(&fx, 1000, 200);
	int base = fx.n;
	ck_assert_uint_eq(fx.evs[0].mask, IN_CREATE | IN_ISDIR);
	ck_assert_str_eq(fx.evs[0].name, "d");

	wpush(w, E2(SM_EV_RENAME, "a", "c", &a, &a, NULL));
	wpush(w, E2(SM_EV_EXCHANGE, "b", "c", &b, &a, NULL));
	wpush(w, E(SM_EV_DELETE, "d/x", &a, NULL));
	wpush(w, E(SM_EV_DELETE, "d", &d, NULL));
	wait_replayed(w, 9);
	fx_read(&fx, base + 7, 500);
	ck_assert_int_eq(fx.n, base + 7);
	ino_ev_t *e = &fx.evs[base];
	ck_assert_uint_eq(e[0].mask, IN_MOVED_FROM);
	ck_assert_str_eq(e[0].name, "a");
	ck_assert_uint_eq(e[1].mask, IN_MOVED_TO);
	ck_assert_str_eq(e[1].name, "c");
	ck_assert_uint_ne(e[0].cookie, 0);
	ck_assert_uint_eq(e[0].cookie, e[1].cookie);
	/* the exchange: two moves, each with its cookie */
	ck_assert_uint_eq(e[2].mask, IN_MOVED_FROM);
	ck_assert_uint_eq(e[3].mask, IN_MOVED_TO);
	ck_assert_uint_eq(e[2].cookie, e[3].cookie);
	ck_assert_uint_eq(e[4].mask, IN_MOVED_FROM);
	ck_assert_uint_eq(e[5].mask, IN_MOVED_TO);
	ck_assert_uint_eq(e[4].cookie, e[5].cookie);
	ck_assert_uint_ne(e[2].cookie, e[4].cookie);
	ck_assert_uint_eq(e[6].mask, IN_DELETE | IN_ISDIR); /* d/x is below the watched directory */
	ck_assert_str_eq(e[6].name, "d");
	struct stat st;
	snprintf(p, sizeof p, "%s/b", fx.dir);
	ck_assert_int_eq(stat(p, &st), 0);
	ck_assert_int_eq(st.st_size, 0); /* b now holds what was a (empty) */
	snprintf(p, sizeof p, "%s/d", fx.dir);
	ck_assert_int_ne(stat(p, &st), 0);
	ck_assert_uint_eq(wstats(w).failed, 0);
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_replay_failure_counted)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 0);
	sm_record_t f = R(SM_KIND_FILE, 7, 5);
	wpush(w, E(SM_EV_MODIFY, "missing", &f, &f));
	wait_replayed(w, 1);
	watch_stats_t st = wstats(w);
	ck_assert_uint_eq(st.failed, 1);
	ck_assert_int_eq(st.last_errno, ENOENT);
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_questions_while_pending)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 400000); /* the thread sits in the settle meanwhile */
	sm_record_t d = R(SM_KIND_DIR, 3, 0), f = R(SM_KIND_FILE, 7, 5), g = R(SM_KIND_FILE, 77, 1), got;
	char key[64];
	ck_assert_int_eq(watch_ghost(w, 77, key, sizeof key, &got), -ENOENT);
	ck_assert_int_eq(wlook(w, false, "d/x", NULL), WATCH_PASS);
	wpush(w, E(SM_EV_CREATE, "d", NULL, &d));
	wait_replayed(w, 1);
	wpush(w, E(SM_EV_CREATE, "d/x", NULL, &f));
	wpush(w, E(SM_EV_MODIFY, "d/y", &g, &g));
	wpush(w, E(SM_EV_DELETE, "d/y", &g, NULL));
	ck_assert_int_eq(wlook(w, false, "d/x", NULL), WATCH_ABSENT);
	ck_assert_int_eq(wlook(w, true, "d/x", NULL), WATCH_ABSENT);
	ck_assert(whidden(w, "d", "x"));
	ck_assert(!whidden(w, "d", "y"));
	ck_assert_int_eq(wlook(w, true, "d/y", &got), WATCH_PRESENT);
	ck_assert_uint_eq(got.ino, 77);
	ck_assert_int_eq(wlook(w, false, "d/y", NULL), WATCH_PASS);
	ck_assert_int_eq(watch_ghost(w, 77, key, sizeof key, &got), 3);
	ck_assert_str_eq(key, "d/y");
	ck_assert_int_eq(watch_ghost(w, 77, key, 3, &got), -ENAMETOOLONG);
	ck_assert_int_eq(watch_ghost(w, 78, key, sizeof key, NULL), -ENOENT);
	watch_stats_t st = wstats(w);
	ck_assert_uint_eq(st.merged, 0); /* content, then the delete: two replays */
	for (int i = 0; i < 5000 && wstats(w).backlog > 2; i++)
		usleep(1000); /* d/x taken, settling */
	ck_assert_uint_eq(wstats(w).backlog, 2);
	atomic_store(&forgot, 0);
	watch_looked_up(w, "d/x", 3, 42);            /* a lookup answered it while its replay waits */
	ck_assert(!watch_reveal(w, "d/y", 3, &got)); /* pending, not in flight */
	ck_assert_int_eq(wlook(w, true, "d/y", NULL), WATCH_PRESENT);
	ck_assert(!watch_reveal(w, "d/q", 3, &got)); /* nothing at all on that name */
	wait_replayed(w, 4);
	ck_assert_int_eq(atomic_load(&forgot), 1); /* the replay made the kernel forget d/x first */
	ck_assert_uint_eq(atomic_load(&forgot_parent), 42);
	ck_assert_int_eq(wlook(w, false, "d/x", NULL), WATCH_PASS);
	ck_assert_int_eq(watch_ghost(w, 77, key, sizeof key, NULL), -ENOENT);
	ck_assert_uint_eq(wstats(w).failed, 2); /* d/y never existed in this directory */
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_threads_replay_everything)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch_n(fx.dir, 1000, 4);
	enum { DIRS = 4, FILES = 200 };
	sm_record_t d = R(SM_KIND_DIR, 3, 0);
	char key[64];
	for (int i = 0; i < DIRS; i++) {
		snprintf(key, sizeof key, "d%d", i);
		wpush(w, E(SM_EV_CREATE, key, NULL, &d));
	}
	for (int i = 0; i < FILES; i++) {
		snprintf(key, sizeof key, "d%d/f%03d", i % DIRS, i);
		sm_record_t f = R(SM_KIND_FILE, 100 + (uint64_t)i, (uint64_t)i + 1);
		wpush(w, E(SM_EV_CREATE, key, NULL, &f));
	}
	for (int i = 0; i < FILES; i += 2) { /* one more change of every other file */
		snprintf(key, sizeof key, "d%d/f%03d", i % DIRS, i);
		sm_record_t f = R(SM_KIND_FILE, 100 + (uint64_t)i, (uint64_t)i + 1), f2 = f;
		f2.size = 7;
		wpush(w, E(SM_EV_MODIFY, key, &f, &f2));
	}
	watch_stats_t st;
	for (int i = 0; i < 5000; i++) {
		st = wstats(w);
		if (st.backlog == 0 && st.replayed + st.cancelled == st.queued) break;
		usleep(1000);
	}
	ck_assert_uint_eq(st.replayed, st.queued);
	ck_assert_uint_eq(st.failed, 0);
	ck_assert_uint_eq(st.queued + st.merged, DIRS + FILES + FILES / 2);
	char p[PATH_MAX + 64];
	struct stat sb;
	for (int i = 0; i < FILES; i++) { /* the latest size of every file, whatever ran beside what */
		snprintf(p, sizeof p, "%s/d%d/f%03d", fx.dir, i % DIRS, i);
		ck_assert_int_eq(stat(p, &sb), 0);
		ck_assert_int_eq(sb.st_size, i % 2 ? i + 1 : 7);
	}
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_forward_through_watch)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 0);
	char out[16];
	ck_assert_int_eq(watch_forward(w, "a/b", 3, out, sizeof out), 3);
	ck_assert_str_eq(out, "a/b");
	ck_assert_int_eq(watch_forward(w, "a/b", 3, out, 2), -ENAMETOOLONG);
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

/* The kernel already knows a name a replay must create (here: it exists in the directory):
 * the exclusive create fails EEXIST, is tried WATCH_CREATE_TRIES times, then a file is opened
 * plainly (its events without CREATE), and the lost create is counted. */
START_TEST(t_create_of_a_known_name)
{
	fixture_t fx;
	fx_init(&fx);
	char p[PATH_MAX + 64];
	snprintf(p, sizeof p, "%s/e", fx.dir);
	int fd = open(p, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	snprintf(p, sizeof p, "%s/dir", fx.dir);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	snprintf(p, sizeof p, "%s/src", fx.dir);
	ck_assert_int_eq(mkdir(p, 0755), 0);
	fx_read(&fx, 1000, 100);
	int base = fx.n;
	watch_t *w = start_watch(fx.dir, 0);
	sm_record_t f = R(SM_KIND_FILE, 7, 3), d = R(SM_KIND_DIR, 8, 0);
	atomic_store(&forgot, 0);
	wpush(w, E(SM_EV_CREATE, "e", NULL, &f));
	wait_replayed(w, 1);
	uint32_t m[] = {IN_OPEN, IN_MODIFY, IN_CLOSE_WRITE};
	const char *n[] = {"e", "e", "e"};
	fx_read(&fx, base + 4, 300);
	fx_fold(&fx, base);
	fx_expect(&fx, base, m, n, 3);
	watch_stats_t st = wstats(w);
	ck_assert_uint_eq(st.lost_creates, 1);
	ck_assert_uint_eq(st.failed, 0);
	/* a rename that replaces: a plain rename over the name (no EEXIST, no lost create) */
	sm_record_t g = R(SM_KIND_FILE, 11, 1), h = R(SM_KIND_FILE, 12, 1);
	snprintf(p, sizeof p, "%s/g", fx.dir);
	fd = open(p, O_WRONLY | O_CREAT, 0644);
	ck_assert_int_ge(fd, 0);
	close(fd);
	wpush(w, E2(SM_EV_RENAME, "g", "e", &g, &g, &h));
	wait_replayed(w, 2);
	st = wstats(w);
	ck_assert_uint_eq(st.lost_creates, 1);
	ck_assert_uint_eq(st.failed, 0);
	ck_assert_int_ne(access(p, F_OK), 0);
	wpush(w, E(SM_EV_CREATE, "dir", NULL, &d));             /* mkdir of a name that exists: EEXIST */
	wpush(w, E2(SM_EV_RENAME, "src", "dir", &d, &d, NULL)); /* onto a name that exists */
	wait_replayed(w, 4);
	st = wstats(w);
	ck_assert_uint_eq(st.lost_creates, 3);
	ck_assert_uint_eq(st.failed, 2);
	ck_assert_int_eq(st.last_errno, EEXIST);
	ck_assert_int_eq(atomic_load(&forgot), 0); /* no lookup reported them: nothing to forget */
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_reveal_in_flight_create)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 400000); /* the thread holds d/r while it settles */
	sm_record_t d = R(SM_KIND_DIR, 3, 0), f = R(SM_KIND_FILE, 9, 2), got;
	wpush(w, E(SM_EV_CREATE, "d", NULL, &d));
	wait_replayed(w, 1);
	wpush(w, E(SM_EV_CREATE, "d/r", NULL, &f));
	for (int i = 0; i < 5000 && wstats(w).backlog > 0; i++)
		usleep(1000);
	ck_assert(whidden(w, "d", "r"));
	ck_assert(watch_reveal(w, "d/r", 3, &got)); /* what the handler of its create does */
	ck_assert_uint_eq(got.ino, 9);
	ck_assert(!whidden(w, "d", "r"));
	ck_assert_int_eq(wlook(w, true, "d/r", NULL), WATCH_PASS);
	wait_replayed(w, 2);
	watch_stop(w);
	fx_cleanup(&fx);
}
END_TEST

START_TEST(t_stop_discards_pending)
{
	fixture_t fx;
	fx_init(&fx);
	watch_t *w = start_watch(fx.dir, 400000);
	sm_record_t d = R(SM_KIND_DIR, 3, 0), f = R(SM_KIND_FILE, 7, 0);
	wpush(w, E(SM_EV_CREATE, "d", NULL, &d));
	wait_replayed(w, 1);
	wpush(w, E(SM_EV_CREATE, "d/a", NULL, &f)); /* taken; settling */
	for (int i = 0; i < 5000 && wstats(w).backlog > 0; i++)
		usleep(1000);
	ck_assert_uint_eq(wstats(w).backlog, 0);
	wpush(w, E(SM_EV_CREATE, "d/b", NULL, &f));
	wpush(w, E(SM_EV_CREATE, "d/c", NULL, &f));
	atomic_store(&exited, 0);
	watch_request_stop(w);
	sm_event_t late = E(SM_EV_CREATE, "d/z", NULL, &f);
	watch_push(w, &late, false, 0); /* ignored once stopping */
	watch_stop(w);
	ck_assert_int_eq(atomic_load(&exited), 1);
	char p[PATH_MAX + 64];
	struct stat st;
	snprintf(p, sizeof p, "%s/d/a", fx.dir);
	ck_assert_int_eq(stat(p, &st), 0); /* the one in progress completes */
	snprintf(p, sizeof p, "%s/d/b", fx.dir);
	ck_assert_int_ne(stat(p, &st), 0);
	fx_cleanup(&fx);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("watch");
	TCase *tb = tcase_create("backlog");
	tcase_add_test(tb, t_config);
	tcase_add_test(tb, t_create_hides_until_unmarked);
	tcase_add_test(tb, t_hidden_expires_for_listings_only);
	tcase_add_test(tb, t_known_names_are_forgotten_first);
	tcase_add_test(tb, t_merges_content_and_attributes);
	tcase_add_test(tb, t_how_the_change_was_made);
	tcase_add_test(tb, t_no_merge_across_inos_taken_or_renames);
	tcase_add_test(tb, t_directories_and_symlinks_do_not_merge);
	tcase_add_test(tb, t_create_then_delete_cancels);
	tcase_add_test(tb, t_change_then_delete_becomes_ghost);
	tcase_add_test(tb, t_rename_and_exchange_marks);
	tcase_add_test(tb, t_earliest_mark_answers);
	tcase_add_test(tb, t_local_change_cancels_pending);
	tcase_add_test(tb, t_bounds_drop);
	tcase_add_test(tb, t_out_of_memory_drops);
	tcase_add_test(tb, t_take_ready_overlaps_only_what_may);
	tcase_add_test(tb, t_forward_follows_pending_moves);
	suite_add_tcase(s, tb);
	TCase *tr = tcase_create("replay");
	tcase_set_timeout(tr, 30);
	tcase_add_test(tr, t_start_errors);
	tcase_add_test(tr, t_replay_tid);
	tcase_add_test(tr, t_replay_file_events);
	tcase_add_test(tr, t_replay_how_it_was_made);
	tcase_add_test(tr, t_replay_namespace_events);
	tcase_add_test(tr, t_replay_failure_counted);
	tcase_add_test(tr, t_questions_while_pending);
	tcase_add_test(tr, t_threads_replay_everything);
	tcase_add_test(tr, t_forward_through_watch);
	tcase_add_test(tr, t_create_of_a_known_name);
	tcase_add_test(tr, t_reveal_in_flight_create);
	tcase_add_test(tr, t_stop_discards_pending);
	suite_add_tcase(s, tr);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
