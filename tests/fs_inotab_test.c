/* fs_inotab_test.c - unit tests of fs/inotab: metastored's nodeid <-> key table.
 *
 * Hooking and rehooking, lookup counting and freeing (forget, open/close, the immortal root),
 * provisional entries and their list, the apply-event operations (rename of a file and of a
 * directory with entries below it, over an existing target, exchange, delete), growth past the
 * initial bucket count, and every errno: -ENFILE (the entries bound) and -ENOMEM (allocation
 * failures injected through --wrap=malloc/calloc/realloc, for inotab_new, hook, rename and
 * exchange, checking that a failure leaves no half-moved keys behind).
 */
#include "inotab.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ allocation faults */

static long alloc_countdown = -1; /* the n-th allocation from now fails; -1: none */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);

static int alloc_fails(void) { return alloc_countdown >= 0 && alloc_countdown-- == 0; }
void *__wrap_malloc(size_t n) { return alloc_fails() ? NULL : __real_malloc(n); }
void *__wrap_calloc(size_t n, size_t size) { return alloc_fails() ? NULL : __real_calloc(n, size); }
void *__wrap_realloc(void *p, size_t n) { return alloc_fails() ? NULL : __real_realloc(p, n); }

/* ------------------------------------------------------------------ helpers */

static inotab_t *new_table(void)
{
	inotab_t *t = NULL;
	ck_assert_int_eq(inotab_new(0, &t), 0);
	ck_assert_ptr_nonnull(t);
	return t;
}

static inotab_entry_t *hook(inotab_t *t, uint64_t ino, const char *key)
{
	inotab_entry_t *e = NULL;
	ck_assert_int_eq(inotab_hook(t, ino, key, strlen(key), &e), 0);
	ck_assert_ptr_nonnull(e);
	ck_assert_uint_eq(e->ino, ino);
	ck_assert_str_eq(e->key, key);
	return e;
}

static void expect_at(inotab_t *t, const char *key, uint64_t ino)
{
	inotab_entry_t *e = inotab_find_key(t, key, strlen(key));
	if (ino == 0) {
		ck_assert_msg(e == NULL, "%s should be free but holds %llu", key,
		              e ? (unsigned long long)e->ino : 0ull);
		return;
	}
	ck_assert_msg(e != NULL, "%s should hold %llu", key, (unsigned long long)ino);
	ck_assert_uint_eq(e->ino, ino);
	ck_assert_ptr_eq(inotab_get(t, ino), e);
}

/* ------------------------------------------------------------------ cases */

START_TEST(root_exists_and_is_immortal)
{
	inotab_t *t = new_table();
	ck_assert_uint_eq(inotab_count(t), 1);
	inotab_entry_t *r = inotab_get(t, INOTAB_ROOT_INO);
	ck_assert_ptr_nonnull(r);
	ck_assert_str_eq(r->key, "");
	expect_at(t, "", INOTAB_ROOT_INO);
	ck_assert(!inotab_forget(t, INOTAB_ROOT_INO, 1));
	inotab_unhook(t, r);
	ck_assert_ptr_nonnull(r->key);
	inotab_delete(t, "", 0);
	expect_at(t, "", INOTAB_ROOT_INO);
	ck_assert_uint_eq(inotab_count(t), 1);
	inotab_free(t);
}
END_TEST

START_TEST(hook_lookup_forget)
{
	inotab_t *t = new_table();
	inotab_entry_t *e = hook(t, 10, "a/b");
	ck_assert_uint_eq(e->nlookup, 0);
	inotab_ref(e, 2);
	expect_at(t, "a/b", 10);
	ck_assert_ptr_null(inotab_get(t, 11));
	ck_assert_ptr_null(inotab_find_key(t, "a", 1));
	/* hooking the same ino at the same key is a no-op that returns the entry */
	inotab_entry_t *again = NULL;
	ck_assert_int_eq(inotab_hook(t, 10, "a/b", 3, &again), 0);
	ck_assert_ptr_eq(again, e);
	ck_assert_uint_eq(e->nlookup, 2);
	ck_assert(!inotab_forget(t, 10, 1));
	ck_assert(inotab_forget(t, 10, 1));
	ck_assert_ptr_null(inotab_get(t, 10));
	expect_at(t, "a/b", 0);
	ck_assert(!inotab_forget(t, 999, 1)); /* unknown ino: nothing */
	ck_assert_uint_eq(inotab_count(t), 1);
	inotab_free(t);
}
END_TEST

START_TEST(open_keeps_entry_alive)
{
	inotab_t *t = new_table();
	inotab_entry_t *e = hook(t, 5, "f");
	inotab_ref(e, 1);
	inotab_open(e);
	ck_assert(!inotab_forget(t, 5, 1));
	ck_assert_ptr_eq(inotab_get(t, 5), e);
	ck_assert(inotab_close(t, e));
	ck_assert_ptr_null(inotab_get(t, 5));
	/* forget(0) frees an entry nobody references */
	hook(t, 6, "g");
	ck_assert(inotab_forget(t, 6, 0));
	ck_assert_ptr_null(inotab_get(t, 6));
	inotab_free(t);
}
END_TEST

START_TEST(rehook_moves_and_displaces)
{
	inotab_t *t = new_table();
	inotab_entry_t *a = hook(t, 2, "x");
	inotab_entry_t *b = hook(t, 3, "y");
	inotab_ref(a, 1);
	inotab_ref(b, 1);
	/* ino 2 moves to y: 3 loses its key, x is free */
	inotab_entry_t *e = hook(t, 2, "y");
	ck_assert_ptr_eq(e, a);
	expect_at(t, "y", 2);
	expect_at(t, "x", 0);
	ck_assert_ptr_null(b->key);
	ck_assert_ptr_eq(inotab_get(t, 3), b); /* still alive for the kernel */
	/* an unhooked entry is hooked again */
	hook(t, 3, "x");
	expect_at(t, "x", 3);
	inotab_free(t);
}
END_TEST

START_TEST(provisional_list)
{
	inotab_t *t = new_table();
	inotab_entry_t *a = hook(t, 100, "d/a");
	inotab_entry_t *b = hook(t, 101, "d/b");
	hook(t, 102, "d/c");
	inotab_set_provisional(t, a, true);
	inotab_set_provisional(t, b, true);
	inotab_set_provisional(t, b, true); /* idempotent */
	ck_assert_uint_eq(inotab_provisional_count(t), 2);
	int seen = 0;
	for (inotab_entry_t *e = inotab_next_provisional(t, NULL); e; e = inotab_next_provisional(t, e)) {
		ck_assert(e == a || e == b);
		ck_assert(e->provisional);
		seen++;
	}
	ck_assert_int_eq(seen, 2);
	inotab_set_provisional(t, a, false);
	ck_assert(!a->provisional);
	ck_assert_uint_eq(inotab_provisional_count(t), 1);
	ck_assert_ptr_eq(inotab_next_provisional(t, NULL), b);
	/* unhooking drops provisional; freeing a provisional entry unlinks it */
	inotab_unhook(t, b);
	ck_assert(!b->provisional);
	ck_assert_uint_eq(inotab_provisional_count(t), 0);
	inotab_set_provisional(t, a, true);
	ck_assert(inotab_forget(t, 100, 0));
	ck_assert_uint_eq(inotab_provisional_count(t), 0);
	ck_assert_ptr_null(inotab_next_provisional(t, NULL));
	inotab_free(t);
}
END_TEST

START_TEST(rename_file_and_over_target)
{
	inotab_t *t = new_table();
	hook(t, 2, "a");
	hook(t, 3, "b");
	hook(t, 4, "ab"); /* shares a prefix with a, must not move */
	ck_assert_int_eq(inotab_rename(t, "a", 1, "b", 1), 0);
	expect_at(t, "b", 2);
	expect_at(t, "a", 0);
	expect_at(t, "ab", 4);
	ck_assert_ptr_null(inotab_get(t, 3)->key);             /* the replaced file's nodeid is stale */
	ck_assert_int_eq(inotab_rename(t, "b", 1, "b", 1), 0); /* onto itself */
	expect_at(t, "b", 2);
	ck_assert_int_eq(inotab_rename(t, "nothing", 7, "z", 1), 0); /* nothing known: nothing moves */
	expect_at(t, "z", 0);
	inotab_free(t);
}
END_TEST

START_TEST(rename_directory_moves_subtree)
{
	inotab_t *t = new_table();
	hook(t, 2, "d");
	hook(t, 3, "d/x");
	hook(t, 4, "d/x/y");
	hook(t, 5, "dd");    /* sibling with a common prefix */
	hook(t, 6, "e");     /* target, an empty dir in the kernel's view */
	hook(t, 7, "e/old"); /* stale entry below the target */
	ck_assert_int_eq(inotab_rename(t, "d", 1, "e", 1), 0);
	expect_at(t, "e", 2);
	expect_at(t, "e/x", 3);
	expect_at(t, "e/x/y", 4);
	expect_at(t, "dd", 5);
	expect_at(t, "d", 0);
	expect_at(t, "d/x", 0);
	ck_assert_ptr_null(inotab_get(t, 6)->key);
	ck_assert_ptr_null(inotab_get(t, 7)->key);
	/* deeper: move into another directory */
	hook(t, 8, "f");
	ck_assert_int_eq(inotab_rename(t, "e/x", 3, "f/x2", 4), 0);
	expect_at(t, "f/x2", 3);
	expect_at(t, "f/x2/y", 4);
	expect_at(t, "e", 2);
	inotab_free(t);
}
END_TEST

START_TEST(exchange_swaps_subtrees)
{
	inotab_t *t = new_table();
	hook(t, 2, "a");
	hook(t, 3, "a/in");
	hook(t, 4, "b");
	hook(t, 5, "c");
	ck_assert_int_eq(inotab_exchange(t, "a", 1, "b", 1), 0);
	expect_at(t, "b", 2);
	expect_at(t, "b/in", 3);
	expect_at(t, "a", 4);
	expect_at(t, "a/in", 0);
	expect_at(t, "c", 5);
	inotab_free(t);
}
END_TEST

START_TEST(delete_unhooks_only_that_key)
{
	inotab_t *t = new_table();
	inotab_entry_t *d = hook(t, 2, "d");
	hook(t, 3, "d/f");
	inotab_ref(d, 1);
	inotab_delete(t, "d/f", 3);
	expect_at(t, "d/f", 0);
	expect_at(t, "d", 2);
	inotab_delete(t, "missing", 7);
	inotab_delete(t, "d", 1);
	ck_assert_ptr_null(d->key);
	ck_assert_ptr_eq(inotab_get(t, 2), d);
	inotab_free(t);
}
END_TEST

START_TEST(grows_past_initial_buckets)
{
	inotab_t *t = new_table();
	enum { N = 5000 };
	char key[32];
	for (uint64_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "dir/k%llu", (unsigned long long)i);
		hook(t, 1000 + i, key);
	}
	ck_assert_uint_eq(inotab_count(t), N + 1);
	for (uint64_t i = 0; i < N; i++) {
		snprintf(key, sizeof key, "dir/k%llu", (unsigned long long)i);
		expect_at(t, key, 1000 + i);
	}
	hook(t, 999, "dir");
	ck_assert_int_eq(inotab_rename(t, "dir", 3, "moved", 5), 0);
	for (uint64_t i = 0; i < N; i += 97) {
		snprintf(key, sizeof key, "moved/k%llu", (unsigned long long)i);
		expect_at(t, key, 1000 + i);
	}
	for (uint64_t i = 0; i < N; i++)
		ck_assert(inotab_forget(t, 1000 + i, 0));
	ck_assert_uint_eq(inotab_count(t), 2);
	inotab_free(t);
}
END_TEST

START_TEST(enfile_at_the_bound)
{
	inotab_t *t = NULL;
	ck_assert_int_eq(inotab_new(3, &t), 0);
	hook(t, 2, "a");
	hook(t, 3, "b");
	inotab_entry_t *e = NULL;
	ck_assert_int_eq(inotab_hook(t, 4, "c", 1, &e), -ENFILE);
	expect_at(t, "c", 0);
	/* rehooking an existing ino is not a new entry */
	ck_assert_int_eq(inotab_hook(t, 3, "c", 1, &e), 0);
	ck_assert(inotab_forget(t, 2, 0));
	ck_assert_int_eq(inotab_hook(t, 4, "d", 1, &e), 0);
	inotab_free(t);
}
END_TEST

START_TEST(enomem_new_and_hook)
{
	for (long n = 0; n < 4; n++) {
		inotab_t *t = NULL;
		alloc_countdown = n;
		int rc = inotab_new(0, &t);
		alloc_countdown = -1;
		if (rc == 0) {
			inotab_free(t);
			ck_assert_int_ge(n, 3);
			continue;
		}
		ck_assert_int_eq(rc, -ENOMEM);
	}
	inotab_t *t = new_table();
	hook(t, 2, "a");
	for (long n = 0; n < 2; n++) {
		inotab_entry_t *e = NULL;
		alloc_countdown = n;
		int rc = inotab_hook(t, 3, "b", 1, &e);
		alloc_countdown = -1;
		ck_assert_int_eq(rc, -ENOMEM);
		expect_at(t, "b", 0);
		ck_assert_ptr_null(inotab_get(t, 3));
	}
	/* moving an existing ino fails on the key copy: the entry keeps its old key */
	inotab_entry_t *e = NULL;
	alloc_countdown = 0;
	ck_assert_int_eq(inotab_hook(t, 2, "z", 1, &e), -ENOMEM);
	alloc_countdown = -1;
	expect_at(t, "a", 2);
	inotab_free(t);
}
END_TEST

/* inotab_get_or_add: a nodeid without a key (watch/'s replays hand the kernel such ones). */
START_TEST(get_or_add_unhooked)
{
	inotab_t *t = NULL;
	ck_assert_int_eq(inotab_new(3, &t), 0);
	inotab_entry_t *a = hook(t, 2, "a"), *e = NULL;
	ck_assert_int_eq(inotab_get_or_add(t, 2, &e), 0); /* existing: the same entry, still hooked */
	ck_assert_ptr_eq(e, a);
	ck_assert_str_eq(e->key, "a");
	ck_assert_int_eq(inotab_get_or_add(t, 9, &e), 0); /* new: no key, no counts */
	ck_assert_ptr_null(e->key);
	ck_assert_uint_eq(e->nlookup, 0);
	ck_assert_ptr_eq(inotab_get(t, 9), e);
	inotab_ref(e, 1);
	inotab_entry_t *f = NULL;
	ck_assert_int_eq(inotab_get_or_add(t, 10, &f), -ENFILE); /* the bound counts it */
	alloc_countdown = 0;
	int rc = inotab_get_or_add(t, 11, &f);
	alloc_countdown = -1;
	ck_assert_int_eq(rc, -ENFILE);
	ck_assert(inotab_forget(t, 9, 1)); /* the kernel's forget frees it */
	alloc_countdown = 0;
	rc = inotab_get_or_add(t, 11, &f);
	alloc_countdown = -1;
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_ptr_null(inotab_get(t, 11));
	inotab_free(t);
}
END_TEST

START_TEST(enomem_rename_leaves_no_stale_keys)
{
	for (long n = 0; n < 8; n++) {
		inotab_t *t = new_table();
		hook(t, 2, "d");
		hook(t, 3, "d/x");
		hook(t, 4, "e");
		hook(t, 5, "other");
		alloc_countdown = n;
		int rc = inotab_rename(t, "d", 1, "e", 1);
		alloc_countdown = -1;
		if (rc == 0) {
			expect_at(t, "e", 2);
			expect_at(t, "e/x", 3);
		} else {
			ck_assert_int_eq(rc, -ENOMEM);
			/* nothing may resolve to a wrong record: both sides are unhooked */
			expect_at(t, "d", 0);
			expect_at(t, "d/x", 0);
			expect_at(t, "e", 0);
		}
		expect_at(t, "other", 5);
		inotab_free(t);
	}
}
END_TEST

START_TEST(enomem_exchange_leaves_no_stale_keys)
{
	for (long n = 0; n < 10; n++) {
		inotab_t *t = new_table();
		hook(t, 2, "a");
		hook(t, 3, "a/in");
		hook(t, 4, "b");
		alloc_countdown = n;
		int rc = inotab_exchange(t, "a", 1, "b", 1);
		alloc_countdown = -1;
		if (rc == 0) {
			expect_at(t, "b", 2);
			expect_at(t, "a", 4);
		} else {
			ck_assert_int_eq(rc, -ENOMEM);
			expect_at(t, "a", 0);
			expect_at(t, "a/in", 0);
			expect_at(t, "b", 0);
		}
		inotab_free(t);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fs_inotab");
	TCase *tc = tcase_create("inotab");
	tcase_add_test(tc, root_exists_and_is_immortal);
	tcase_add_test(tc, hook_lookup_forget);
	tcase_add_test(tc, open_keeps_entry_alive);
	tcase_add_test(tc, rehook_moves_and_displaces);
	tcase_add_test(tc, provisional_list);
	tcase_add_test(tc, rename_file_and_over_target);
	tcase_add_test(tc, rename_directory_moves_subtree);
	tcase_add_test(tc, exchange_swaps_subtrees);
	tcase_add_test(tc, delete_unhooks_only_that_key);
	tcase_add_test(tc, grows_past_initial_buckets);
	tcase_add_test(tc, enfile_at_the_bound);
	tcase_add_test(tc, enomem_new_and_hook);
	tcase_add_test(tc, get_or_add_unhooked);
	tcase_add_test(tc, enomem_rename_leaves_no_stale_keys);
	tcase_add_test(tc, enomem_exchange_leaves_no_stale_keys);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
