/* txnparse_test.c - unit tests of engine/txnparse: etcdctl's txn text in, its result text out.
 *
 * Parsing of every compare target, operator and op form with etcdctl's quoting rules; every
 * error with its line number and errno; the result formatter byte for byte; one end-to-end
 * run through a memory engine and the state machine (what /.metastore/txn does); and a seeded
 * random-input loop (random token soup and mutated valid texts) that must never crash and
 * whose every outcome is a parsed txn the codec accepts or a "line N: ..." error.
 */
#include "codec.h"
#include "engine.h"
#include "sm.h"
#include "txnparse.h"

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static char err[TXNPARSE_ERR_BYTES];

static int parse(const char *text, txnparse_txn_t *t)
{
	return txnparse_parse(text, strlen(text), 1000, 100, t, err, sizeof(err));
}

/* Parses text that must fail with rc and an error on line `line`. */
static void parse_fails(const char *text, int rc, int line, const char *needle)
{
	txnparse_txn_t t;
	int got = parse(text, &t);
	ck_assert_msg(got == rc, "parse(%s) = %d, want %d (%s)", text, got, rc, err);
	char prefix[32];
	snprintf(prefix, sizeof(prefix), "line %d: ", line);
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "error \"%s\" for %s, want %s", err, text, prefix);
	ck_assert_msg(strstr(err, needle) != NULL, "error \"%s\" lacks \"%s\"", err, needle);
	ck_assert_ptr_null(t.arena);
	ck_assert_uint_eq(t.txn.n_success, 0);
}

static bool str_is(const void *s, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(s, want, len) == 0;
}

/* ------------------------------------------------------------------ parsing */

START_TEST(etcdctl_help_example)
{
	txnparse_txn_t t;
	ck_assert_int_eq(parse("mod(\"key1\") > \"0\"\n"
			       "\n"
			       "put key1 \"overwrote-key1\"\n"
			       "\n"
			       "put key1 \"created-key1\"\n"
			       "put key2 \"some extra key\"\n", &t), 0);
	ck_assert_str_eq(err, "");
	const sm_txn_t *x = &t.txn;
	ck_assert_uint_eq(x->n_compare, 1);
	ck_assert_uint_eq(x->n_success, 1);
	ck_assert_uint_eq(x->n_failure, 2);
	ck_assert_int_eq(x->compares[0].target, SM_CMP_MOD);
	ck_assert_int_eq(x->compares[0].op, SM_CMP_GT);
	ck_assert(str_is(x->compares[0].key, x->compares[0].key_len, "key1"));
	ck_assert_int_eq(x->compares[0].number, 0);
	ck_assert_int_eq(x->success[0].type, SM_OP_PUT);
	ck_assert(str_is(x->success[0].key, x->success[0].key_len, "key1"));
	ck_assert(str_is(x->success[0].value, x->success[0].value_len, "overwrote-key1"));
	ck_assert_uint_eq(x->success[0].uid, 1000);
	ck_assert_uint_eq(x->success[0].gid, 100);
	ck_assert(str_is(x->failure[1].key, x->failure[1].key_len, "key2"));
	ck_assert(str_is(x->failure[1].value, x->failure[1].value_len, "some extra key"));
	ck_assert_uint_eq(x->origin_node, 0);
	ck_assert_int_eq(x->time_ns, 0);
	ck_assert_int_eq(codec_txn_check(x), 0);
	txnparse_free(&t);
	ck_assert_ptr_null(t.arena);
	txnparse_free(&t); /* twice is harmless */
}
END_TEST

START_TEST(every_compare)
{
	static const struct {
		const char *line;
		sm_cmp_target_t target;
		sm_cmp_op_t op;
		int64_t number;
		const char *value;
	} cases[] = {
		{"ver(\"k\") = \"3\"", SM_CMP_VERSION, SM_CMP_EQ, 3, NULL},
		{"version(\"k\") != \"-3\"", SM_CMP_VERSION, SM_CMP_NE, -3, NULL},
		{"c(\"k\") < \"+5\"", SM_CMP_CREATE, SM_CMP_LT, 5, NULL},
		{"create(\"k\") > \"9223372036854775807\"", SM_CMP_CREATE, SM_CMP_GT, INT64_MAX, NULL},
		{"m(\"k\") = \"-9223372036854775808\"", SM_CMP_MOD, SM_CMP_EQ, INT64_MIN, NULL},
		{"mod(\"k\")>\"42\"", SM_CMP_MOD, SM_CMP_GT, 42, NULL},
		{"mod ( \"k\" ) = 42", SM_CMP_MOD, SM_CMP_EQ, 42, NULL},
		{"val(\"k\") = \"v 1\"", SM_CMP_VALUE, SM_CMP_EQ, 0, "v 1"},
		{"value('k') != 'raw\\n'", SM_CMP_VALUE, SM_CMP_NE, 0, "raw\\n"},
		{"val(\"k\") < bare\"word", SM_CMP_VALUE, SM_CMP_LT, 0, "bare\"word"},
		{"val(\"k\") > \"\"", SM_CMP_VALUE, SM_CMP_GT, 0, ""},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		txnparse_txn_t t;
		ck_assert_msg(parse(cases[i].line, &t) == 0, "%s: %s", cases[i].line, err);
		ck_assert_uint_eq(t.txn.n_compare, 1);
		const sm_compare_t *c = &t.txn.compares[0];
		ck_assert_int_eq(c->target, cases[i].target);
		ck_assert_int_eq(c->op, cases[i].op);
		ck_assert(str_is(c->key, c->key_len, "k"));
		if (cases[i].value != NULL)
			ck_assert_msg(str_is(c->value, c->value_len, cases[i].value), "%s", cases[i].line);
		else
			ck_assert_int_eq(c->number, cases[i].number);
		txnparse_free(&t);
	}
}
END_TEST

START_TEST(every_op_form)
{
	txnparse_txn_t t;
	ck_assert_int_eq(parse("\n"
			       "put app/x 42\n"
			       "get app/x\n"
			       "get --prefix app/\n"
			       "get app/a app/z\n"
			       "get --limit 5 --keys-only app/ --prefix\n"
			       "get --limit=7 --from-key app/m\n"
			       "del app/x\n"
			       "del --prefix=true app/\n"
			       "del a b\n"
			       "del --from-key m\n"
			       "get -- --weird\n"
			       "put \"--k\" ''\n"
			       "get --prefix \"\"\n"
			       "get --prefix=false x\n", &t), 0);
	const sm_op_t *o = t.txn.success;
	ck_assert_uint_eq(t.txn.n_compare, 0);
	ck_assert_uint_eq(t.txn.n_success, 14);
	ck_assert_uint_eq(t.txn.n_failure, 0);
	ck_assert_int_eq(o[0].type, SM_OP_PUT);
	ck_assert(str_is(o[0].value, o[0].value_len, "42"));
	ck_assert_int_eq(o[1].type, SM_OP_GET);
	ck_assert_uint_eq(o[1].flags, 0);
	ck_assert_ptr_null(o[1].key2);
	ck_assert_uint_eq(o[1].limit, 0);
	ck_assert_uint_eq(o[2].flags, SM_F_PREFIX);
	ck_assert(str_is(o[2].key, o[2].key_len, "app/"));
	ck_assert(str_is(o[3].key2, o[3].key2_len, "app/z"));
	ck_assert_uint_eq(o[4].flags, SM_F_PREFIX | SM_F_KEYS_ONLY);
	ck_assert_uint_eq(o[4].limit, 5);
	ck_assert_uint_eq(o[5].limit, 7);
	ck_assert_uint_eq(o[5].key2_len, 1); /* --from-key: one NUL */
	ck_assert_int_eq(o[5].key2[0], '\0');
	ck_assert_int_eq(o[6].type, SM_OP_DEL);
	ck_assert_uint_eq(o[6].flags, 0);
	ck_assert_uint_eq(o[7].flags, SM_F_PREFIX);
	ck_assert(str_is(o[8].key2, o[8].key2_len, "b"));
	ck_assert_uint_eq(o[9].key2_len, 1);
	ck_assert(str_is(o[10].key, o[10].key_len, "--weird"));
	ck_assert(str_is(o[11].key, o[11].key_len, "--k"));
	ck_assert_ptr_nonnull(o[11].value);
	ck_assert_uint_eq(o[11].value_len, 0);
	ck_assert_uint_eq(o[12].key_len, 0);
	ck_assert_uint_eq(o[12].flags, SM_F_PREFIX);
	ck_assert_uint_eq(o[13].flags, 0);
	txnparse_free(&t);
}
END_TEST

START_TEST(quoting_and_escapes)
{
	txnparse_txn_t t;
	ck_assert_int_eq(parse("\n"
			       "put \"a b/c\" \"\\a\\b\\f\\n\\r\\t\\v\\\\\\\"\"\n"
			       "put k \"\\x41\\x7a\\101\\000\\377\"\n"
			       "put k \"\\u00e9\\U0001F600\\u20AC\"\n"
			       "put k 'no \\n escapes \" here'\n"
			       "put k\tsep\n"
			       "put k va\"l'ue\n", &t), 0);
	const sm_op_t *o = t.txn.success;
	ck_assert(str_is(o[0].key, o[0].key_len, "a b/c"));
	ck_assert_uint_eq(o[0].value_len, 9);
	ck_assert_mem_eq(o[0].value, "\a\b\f\n\r\t\v\\\"", 9);
	ck_assert_uint_eq(o[1].value_len, 5);
	ck_assert_mem_eq(o[1].value, "Az\x41\0\xff", 5);
	ck_assert(str_is(o[2].value, o[2].value_len, "\xc3\xa9\xf0\x9f\x98\x80\xe2\x82\xac"));
	ck_assert(str_is(o[3].value, o[3].value_len, "no \\n escapes \" here"));
	ck_assert(str_is(o[4].value, o[4].value_len, "sep"));
	ck_assert(str_is(o[5].value, o[5].value_len, "va\"l'ue"));
	txnparse_free(&t);
}
END_TEST

START_TEST(sections_comments_line_ends)
{
	txnparse_txn_t t;
	ck_assert_int_eq(parse("", &t), 0); /* the empty txn */
	ck_assert_uint_eq(t.txn.n_compare + t.txn.n_success + t.txn.n_failure, 0);
	ck_assert_ptr_null(t.txn.success);
	txnparse_free(&t);

	ck_assert_int_eq(parse("\n\nput k v", &t), 0); /* only failure ops, no final newline */
	ck_assert_uint_eq(t.txn.n_failure, 1);
	ck_assert_uint_eq(t.txn.n_success, 0);
	txnparse_free(&t);

	ck_assert_int_eq(parse("# compares:\r\n"
			       "  val(\"k\") = \"v\"  \r\n"
			       " \t \r\n"
			       "# success requests (get, put, del):\r\n"
			       "get k\r\n"
			       "\r\n"
			       "# failure requests (get, put, del):\r\n"
			       "put k v\r\n"
			       "\r\n"
			       "\n"
			       "   \n", &t), 0);
	ck_assert_uint_eq(t.txn.n_compare, 1);
	ck_assert_uint_eq(t.txn.n_success, 1);
	ck_assert_uint_eq(t.txn.n_failure, 1);
	ck_assert(str_is(t.txn.failure[0].value, t.txn.failure[0].value_len, "v"));
	txnparse_free(&t);
}
END_TEST

START_TEST(text_is_not_kept)
{
	char *text = strdup("val(\"k\") = \"v\"\n\nput k \"w\"\n");
	txnparse_txn_t t;
	ck_assert_int_eq(txnparse_parse(text, strlen(text), 0, 0, &t, err, sizeof(err)), 0);
	memset(text, 'X', strlen(text));
	free(text);
	ck_assert(str_is(t.txn.compares[0].key, t.txn.compares[0].key_len, "k"));
	ck_assert(str_is(t.txn.success[0].value, t.txn.success[0].value_len, "w"));
	txnparse_free(&t);
}
END_TEST

/* ------------------------------------------------------------------ errors */

START_TEST(syntax_errors)
{
	parse_fails("\nfrob k\n", -EINVAL, 2, "unknown op \"frob\"");
	parse_fails("\n\"put\" k v\n", -EINVAL, 2, "unknown op");
	parse_fails("\nput k\n", -EINVAL, 2, "put takes a key and a value");
	parse_fails("\nput k v w\n", -EINVAL, 2, "put takes a key and a value");
	parse_fails("\nget\n", -EINVAL, 2, "get needs a key");
	parse_fails("\nget a b c\n", -EINVAL, 2, "too many arguments");
	parse_fails("\n\ndel a b c d\n", -EINVAL, 3, "too many arguments");
	parse_fails("\nget a b c d e f g h i\n", -EINVAL, 2, "too many arguments");
	parse_fails("\nget --prefix a b\n", -EINVAL, 2, "one key with --prefix");
	parse_fails("\nget --from-key a b\n", -EINVAL, 2, "one key with --from-key");
	parse_fails("\nget --prefix --from-key a\n", -EINVAL, 2, "cannot be used together");
	parse_fails("\nget --rev 3 a\n", -EINVAL, 2, "unknown flag --rev for get");
	parse_fails("\nput --prev-kv a b\n", -EINVAL, 2, "unknown flag");
	parse_fails("\ndel --limit 1 a\n", -EINVAL, 2, "unknown flag");
	parse_fails("\nget -w a\n", -EINVAL, 2, "unknown flag -w");
	parse_fails("\nget --limit\n", -EINVAL, 2, "--limit needs a number");
	parse_fails("\nget --limit x a\n", -EINVAL, 2, "--limit takes a number");
	parse_fails("\nget --limit=-1 a\n", -EINVAL, 2, "--limit takes a number");
	parse_fails("\nget --prefix=maybe a\n", -EINVAL, 2, "=true or =false");
	parse_fails("\nput k \"v\n", -EINVAL, 2, "missing closing \"");
	parse_fails("\nput k 'v\n", -EINVAL, 2, "missing closing '");
	parse_fails("\nput \"k\"v w\n", -EINVAL, 2, "missing blank after a quoted string");
	parse_fails("\nput k \"\\q\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\x4\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\400\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\12\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\ud800\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\U00110000\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\'\"\n", -EINVAL, 2, "bad escape");
	parse_fails("\nput k \"\\\n", -EINVAL, 2, "bad escape");
	parse_fails("\n\n\nput k v\n", -EINVAL, 4, "unexpected text after the failure ops");
}
END_TEST

START_TEST(compare_errors_each)
{
	parse_fails("mod k = 1\n", -EINVAL, 1, "malformed compare");
	parse_fails("val(\"a\") = \"b\"\nfoo(\"k\") = \"1\"\n", -EINVAL, 2, "unknown compare target \"foo\"");
	parse_fails("lease(\"k\") = \"1\"\n", -EINVAL, 1, "lease compares are not supported");
	parse_fails("mod(k) = \"1\"\n", -EINVAL, 1, "must be quoted");
	parse_fails("mod(\n", -EINVAL, 1, "must be quoted");
	parse_fails("mod(\"k\" = \"1\"\n", -EINVAL, 1, "missing )");
	parse_fails("mod(\"k\") == \"1\"\n", -EINVAL, 1, "unknown compare operator");
	parse_fails("mod(\"k\") <= \"1\"\n", -EINVAL, 1, "unknown compare operator");
	parse_fails("mod(\"k\") ~ \"1\"\n", -EINVAL, 1, "unknown compare operator");
	parse_fails("mod(\"k\") =\n", -EINVAL, 1, "missing value");
	parse_fails("mod(\"k\") = \"1\" x\n", -EINVAL, 1, "unexpected text after the value");
	parse_fails("mod(\"k\") = \"abc\"\n", -EINVAL, 1, "\"abc\" is not a number (a mod compare");
	parse_fails("ver(\"k\") = \"\"\n", -EINVAL, 1, "is not a number (a version compare");
	parse_fails("create(\"k\") = \"1.5\"\n", -EINVAL, 1, "is not a number (a create compare");
	parse_fails("mod(\"k\") = \"9223372036854775808\"\n", -EINVAL, 1, "is not a number");
	parse_fails("mod(\"k\") = \"-9223372036854775809\"\n", -EINVAL, 1, "is not a number");
	parse_fails("mod(\"k\") = \"-\"\n", -EINVAL, 1, "is not a number");
	parse_fails("mod(\"k\") = \"1\n", -EINVAL, 1, "missing closing \"");
	parse_fails("mod(\"k) = \"1\"\n", -EINVAL, 1, "missing )");
	parse_fails("mod(\"/k\") = \"1\"\n", -EINVAL, 1, "invalid key \"/k\"");
}
END_TEST

START_TEST(key_and_value_errors)
{
	parse_fails("\nput /abs v\n", -EINVAL, 2, "invalid key \"/abs\"");
	parse_fails("\nput a//b v\n", -EINVAL, 2, "invalid key");
	parse_fails("\nput a/../b v\n", -EINVAL, 2, "invalid key");
	parse_fails("\nput \"a\\x00b\" v\n", -EINVAL, 2, "invalid key \"a\\x00b\"");
	parse_fails("\nget dir/\n", -EINVAL, 2, "invalid key");
	parse_fails("\ndel .\n", -EINVAL, 2, "invalid key");

	/* too long: a 256-byte component, a 4097-byte key, a 4097-byte prefix and range end */
	char *text = malloc(20000);
	ck_assert_ptr_nonnull(text);
	char name[300];
	memset(name, 'n', 256);
	name[256] = '\0';
	snprintf(text, 20000, "\nput %s v\n", name);
	parse_fails(text, -ENAMETOOLONG, 2, "too long");
	char *key = malloc(SM_KEY_BYTES_MAX + 2);
	ck_assert_ptr_nonnull(key);
	for (size_t i = 0; i <= SM_KEY_BYTES_MAX; i++)
		key[i] = i % 100 == 99 ? '/' : 'k';
	key[SM_KEY_BYTES_MAX] = 'k';
	key[SM_KEY_BYTES_MAX + 1] = '\0';
	snprintf(text, 20000, "\nput %s v\n", key);
	parse_fails(text, -ENAMETOOLONG, 2, "too long");
	snprintf(text, 20000, "\nget --prefix %s\n", key);
	parse_fails(text, -ENAMETOOLONG, 2, "too long");
	snprintf(text, 20000, "\nget a %s\n", key);
	parse_fails(text, -ENAMETOOLONG, 2, "too long");
	snprintf(text, 20000, "\ndel --from-key %s\n", key);
	parse_fails(text, -ENAMETOOLONG, 2, "too long");
	snprintf(text, 20000, "ver(\"%s\") = 1\n", key);
	parse_fails(text, -ENAMETOOLONG, 1, "too long");
	key[SM_KEY_BYTES_MAX] = '\0'; /* exactly 4096 bytes is fine */
	snprintf(text, 20000, "\nput %s v\nget --prefix %s\n", key, key);
	txnparse_txn_t t;
	ck_assert_int_eq(parse(text, &t), 0);
	txnparse_free(&t);
	free(key);
	free(text);

	/* a value over the codec's limit, as a put and as a compare */
	size_t n = CODEC_VALUE_BYTES_MAX + 1;
	text = malloc(n + 64);
	ck_assert_ptr_nonnull(text);
	memcpy(text, "\n\nput k ", 8);
	memset(text + 8, 'v', n);
	strcpy(text + 8 + n, "\n");
	parse_fails(text, -EFBIG, 3, "value is too large");
	memcpy(text, "val(\"k\") = ", 11);
	memset(text + 11, 'v', n);
	text[11 + n] = '\0';
	parse_fails(text, -EFBIG, 1, "value is too large");
	free(text);
}
END_TEST

START_TEST(limits)
{
	/* 1025 success ops: -E2BIG at the op that passes the limit */
	size_t cap = 2 + (CODEC_TXN_OPS_MAX + 1) * 8 + 1;
	char *text = malloc(cap);
	ck_assert_ptr_nonnull(text);
	size_t len = 0;
	text[len++] = '\n';
	for (size_t i = 0; i <= CODEC_TXN_OPS_MAX; i++)
		len += (size_t)sprintf(text + len, "get k\n");
	parse_fails(text, -E2BIG, 2 + CODEC_TXN_OPS_MAX, "more than 1024 success ops");
	/* exactly 1024 in each branch and 1024 compares is fine */
	free(text);
	text = malloc(4 * 1024 * 20);
	ck_assert_ptr_nonnull(text);
	len = 0;
	for (int sec = 0; sec < 3; sec++) {
		for (size_t i = 0; i < 1024; i++)
			len += (size_t)sprintf(text + len, sec == 0 ? "ver(\"k\") = 1\n" : "get k\n");
		text[len++] = '\n';
	}
	text[len] = '\0';
	txnparse_txn_t t;
	ck_assert_int_eq(parse(text, &t), 0);
	ck_assert_uint_eq(t.txn.n_compare, 1024);
	ck_assert_uint_eq(t.txn.n_failure, 1024);
	txnparse_free(&t);
	/* one more compare */
	len = 0;
	for (size_t i = 0; i <= 1024; i++)
		len += (size_t)sprintf(text + len, "ver(\"k\") = 1\n");
	parse_fails(text, -E2BIG, 1025, "more than 1024 compares");
	free(text);

	/* too many lines (blank and comment lines count) */
	text = malloc(TXNPARSE_LINES_MAX * 2 + 8);
	ck_assert_ptr_nonnull(text);
	memset(text, '\n', TXNPARSE_LINES_MAX + 1);
	text[TXNPARSE_LINES_MAX + 1] = '\0';
	parse_fails(text, -E2BIG, TXNPARSE_LINES_MAX + 1, "more than 4096 lines");
	text[TXNPARSE_LINES_MAX] = '\0';
	ck_assert_int_eq(parse(text, &t), 0);
	txnparse_free(&t);
	free(text);

	/* text too long */
	len = TXNPARSE_TEXT_BYTES_MAX + 1;
	text = malloc(len);
	ck_assert_ptr_nonnull(text);
	memset(text, '#', len);
	ck_assert_int_eq(txnparse_parse(text, len, 0, 0, &t, err, sizeof(err)), -E2BIG);
	ck_assert_str_eq(err, "line 1: txn text is longer than 41943040 bytes");
	free(text);
}
END_TEST

START_TEST(error_buffer)
{
	txnparse_txn_t t;
	/* no buffer at all */
	ck_assert_int_eq(txnparse_parse("\nfrob\n", 6, 0, 0, &t, NULL, 0), -EINVAL);
	/* a short buffer is cut and terminated */
	char small[12];
	memset(small, 'X', sizeof(small));
	ck_assert_int_eq(txnparse_parse("\nfrob\n", 6, 0, 0, &t, small, sizeof(small)), -EINVAL);
	ck_assert_str_eq(small, "line 2: unk");
	char tiny[4];
	ck_assert_int_eq(txnparse_parse("\nfrob\n", 6, 0, 0, &t, tiny, sizeof(tiny)), -EINVAL);
	ck_assert_str_eq(tiny, "lin");
	/* binary junk is shown escaped */
	parse_fails("\n\x01\xff\"\n", -EINVAL, 2, "unknown op \"\\x01\\xff\\x22\"");
	parse_fails("\nget \"a\\x01\\xff/\"\n", -EINVAL, 2, "invalid key \"a\\x01\\xff/\"");
	/* success clears a stale message */
	ck_assert_int_eq(parse("", &t), 0);
	ck_assert_str_eq(err, "");
	txnparse_free(&t);
}
END_TEST

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

START_TEST(out_of_memory)
{
#ifdef UNDER_ASAN
	return; /* sanitizer runtimes abort on a failed allocation instead of returning NULL */
#else
	size_t len = 32u << 20;
	char *text = malloc(len);
	ck_assert_ptr_nonnull(text);
	memset(text, '#', len);
	struct rlimit lim, saved;
	ck_assert_int_eq(getrlimit(RLIMIT_AS, &lim), 0);
	saved = lim;
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;
	ck_assert_int_eq(fscanf(f, "%lu", &pages), 1);
	fclose(f);
	lim.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + (8ul << 20);
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &lim), 0);
	txnparse_txn_t t;
	int rc = txnparse_parse(text, len, 0, 0, &t, err, sizeof(err));
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &saved), 0);
	ck_assert_int_eq(rc, -ENOMEM);
	ck_assert_str_eq(err, "line 1: out of memory");
	free(text);
#endif
}
END_TEST

/* ------------------------------------------------------------------ formatting */

static char *format(const sm_txn_t *txn, const sm_txn_result_t *res)
{
	size_t n = txnparse_format(txn, res, NULL, 0);
	char *buf = malloc(n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(txnparse_format(txn, res, buf, n), n);
	buf[n] = '\0';
	/* a buffer one byte short: same length reported, nothing past cap touched */
	if (n > 0) {
		char *shorter = malloc(n);
		ck_assert_ptr_nonnull(shorter);
		ck_assert_uint_eq(txnparse_format(txn, res, shorter, n - 1), n);
		free(shorter);
	}
	return buf;
}

START_TEST(format_success_and_failure)
{
	txnparse_txn_t t;
	ck_assert_int_eq(parse("mod(\"app/x\") = \"3\"\n\n"
			       "put app/x 42\ndel --prefix app/old\nget --prefix app/\nget --keys-only --prefix app/\n\n"
			       "get app/x\n", &t), 0);
	sm_kv_t kvs[2] = {
		{.key = "app/a", .key_len = 5, .rec = {.kind = SM_KIND_FILE, .value = (const uint8_t *)"1", .value_len = 1}},
		{.key = "app/d", .key_len = 5, .rec = {.kind = SM_KIND_DIR}},
	};
	sm_op_result_t ops[4] = {
		{.has_rec = true},
		{.deleted = 3},
		{.kvs = kvs, .n_kvs = 2},
		{.kvs = kvs, .n_kvs = 2},
	};
	sm_txn_result_t res = {.succeeded = true, .revision = 17, .n_ops = 4, .ops = ops};
	char *s = format(&t.txn, &res);
	ck_assert_str_eq(s, "SUCCESS\nrevision: 17\n\nOK\n\n3\n\napp/a\n1\napp/d\n\n\napp/a\n\napp/d\n\n");
	free(s);

	sm_op_result_t miss = {0};
	sm_txn_result_t fres = {.succeeded = false, .revision = 16, .n_ops = 1, .ops = &miss};
	s = format(&t.txn, &fres);
	ck_assert_str_eq(s, "FAILURE\nrevision: 16\n\n");
	free(s);

	/* the branch that ran has no ops */
	sm_txn_result_t none = {.succeeded = false, .revision = 5};
	txnparse_txn_t t2;
	ck_assert_int_eq(parse("val(\"k\") = v\n\nput k w\n", &t2), 0);
	s = format(&t2.txn, &none);
	ck_assert_str_eq(s, "FAILURE\nrevision: 5\n");
	free(s);
	txnparse_free(&t2);
	txnparse_free(&t);
}
END_TEST

START_TEST(format_errors)
{
	txnparse_txn_t t;
	ck_assert_int_eq(parse("\nput a/b 1\nput c/d 2\n", &t), 0);
	sm_op_result_t ops[2] = {{0}, {.err = -ENOTDIR}};
	sm_txn_result_t res = {.succeeded = true, .err = -ENOTDIR, .revision = 9, .n_ops = 2, .ops = ops};
	char *s = format(&t.txn, &res);
	ck_assert_str_eq(s, "SUCCESS\nrevision: 9\nerror: op 2: ENOTDIR (Not a directory)\n");
	free(s);
	sm_txn_result_t cmp_err = {.err = -EINVAL, .revision = 9};
	s = format(&t.txn, &cmp_err);
	ck_assert_str_eq(s, "FAILURE\nrevision: 9\nerror: EINVAL (Invalid argument)\n");
	free(s);
	sm_txn_result_t odd = {.err = -4095, .revision = 1};
	s = format(&t.txn, &odd);
	ck_assert_str_eq(s, "FAILURE\nrevision: 1\nerror: errno 4095\n");
	free(s);
	txnparse_free(&t);
}
END_TEST

/* The /.metastore/txn path end to end: text -> txn -> codec -> state machine -> text. */
START_TEST(end_to_end_through_sm)
{
	engine_options_t eo = {.kind = "memory"};
	engine_t *e;
	char ebuf[256];
	ck_assert_int_eq(engine_open(&eo, &e, ebuf, sizeof(ebuf)), 0);
	sm_t *sm;
	ck_assert_int_eq(sm_open(e, NULL, &sm), 0);

	static const char *const texts[] = {
		"\nput app/x 1\nput app/y \"two words\"\n",
		"mod(\"app/x\") = \"2\"\n\nput app/x 3\n\nget --prefix app/\n",
		"val(\"app/y\") = \"two words\"\nver(\"app/x\") = \"1\"\n\ndel app/y\nget app/x\n\nput app/z z\n",
		"\nput app/x/child 1\n",
	};
	static const char *const want[] = {
		"SUCCESS\nrevision: 1\n\nOK\n\nOK\n",
		"FAILURE\nrevision: 1\n\napp/x\n1\napp/y\ntwo words\n",
		"SUCCESS\nrevision: 2\n\n1\n\napp/x\n1\n",
		"SUCCESS\nrevision: 2\nerror: op 1: ENOTDIR (Not a directory)\n",
	};
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		txnparse_txn_t t;
		ck_assert_msg(parse(texts[i], &t) == 0, "%s", err);
		t.txn.time_ns = 1000 + (int64_t)i;
		/* through the codec, as a follower would send it */
		size_t n = codec_txn_size(&t.txn);
		uint8_t *blob = malloc(n);
		ck_assert_ptr_nonnull(blob);
		ck_assert_uint_eq(codec_txn_encode(&t.txn, blob, n), n);
		codec_batch_t b;
		ck_assert_int_eq(codec_batch_begin(&b), 0);
		ck_assert_int_eq(codec_batch_append_txn_blob(&b, blob, n), 0);
		size_t len;
		uint8_t *entry = codec_batch_finish(&b, &len);
		codec_decoded_t d;
		ck_assert_int_eq(codec_batch_decode(entry, len, &d), 0);
		sm_apply_result_t ar;
		ck_assert_int_eq(sm_apply(sm, &d.batch, i + 1, &ar), 0);
		ck_assert_uint_eq(ar.n_txn, 1);
		char *s = format(&d.batch.txns[0], &ar.txns[0]);
		ck_assert_msg(strcmp(s, want[i]) == 0, "txn %zu gave:\n%s", i, s);
		free(s);
		sm_apply_result_free(&ar);
		codec_decoded_free(&d);
		free(entry);
		free(blob);
		txnparse_free(&t);
	}
	sm_close(sm);
	engine_close(e);
}
END_TEST

/* ------------------------------------------------------------------ random input */

static uint64_t rnd(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Parses buf[0, len) from an exact-size heap copy; checks the outcome is well formed. */
static int parse_checked(const char *buf, size_t len)
{
	char *copy = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, buf, len);
	txnparse_txn_t t;
	char e[TXNPARSE_ERR_BYTES];
	memset(e, 'X', sizeof(e));
	int rc = txnparse_parse(copy, len, 0, 0, &t, e, sizeof(e));
	ck_assert_ptr_nonnull(memchr(e, '\0', sizeof(e)));
	if (rc == 0) {
		ck_assert_str_eq(e, "");
		ck_assert_int_eq(codec_txn_check(&t.txn), 0);
		size_t lines = 1;
		for (size_t i = 0; i < len; i++)
			lines += copy[i] == '\n';
		ck_assert_uint_le(t.txn.n_compare + t.txn.n_success + t.txn.n_failure, lines);
		txnparse_free(&t);
	} else {
		ck_assert_msg(rc == -EINVAL || rc == -E2BIG || rc == -ENAMETOOLONG || rc == -EFBIG,
			      "rc %d", rc);
		ck_assert_msg(strncmp(e, "line ", 5) == 0, "error \"%s\"", e);
		ck_assert_ptr_null(t.arena);
	}
	free(copy);
	return rc;
}

START_TEST(random_input)
{
	static const char *const pieces[] = {
		"put", "get", "del", " ", " ", " ", "\n", "\n", "\t", "\r\n", "k", "app/x", "a/b/c", "/",
		"\"", "'", "\\", "\\x4", "\\u00e9", "\\U0001F600", "\\0", "\\377", "\"v\"", "'v'", "(", ")",
		"=", "!=", "<", ">", "mod", "ver", "val", "create", "lease", "(\"k\")", "--prefix",
		"--from-key", "--limit", "--limit=", "5", "-1", "--keys-only", "--", "-", "#", ".", "..",
		"9223372036854775808", "\x01", "\xff", "\0",
	};
	static const char *const valid[] = {
		"mod(\"app/x\") = \"42\"\nval(\"k\") != 'v'\n\nput app/x 43\nget --prefix app/\n\ndel --prefix app/\n",
		"ver(\"a\") > \"3\"\ncreate(\"b\") < \"5\"\n\nget a z\ndel --from-key m\n\nput \"sp ace\" \"\\x00\\n\"\n",
	};
	uint64_t state = 7;
	char buf[512];
	int ok = 0;
	for (int round = 0; round < 40000; round++) {
		size_t len = 0;
		if (round % 2 == 0) { /* token soup */
			int n = (int)(rnd(&state) % 40);
			for (int i = 0; i < n; i++) {
				const char *p = pieces[rnd(&state) % (sizeof(pieces) / sizeof(pieces[0]))];
				size_t pl = p[0] == '\0' ? 1 : strlen(p);
				if (len + pl > sizeof(buf))
					break;
				memcpy(buf + len, p, pl);
				len += pl;
			}
		} else { /* a valid text with bytes flipped, cut or inserted */
			const char *v = valid[rnd(&state) % 2];
			len = strlen(v);
			memcpy(buf, v, len);
			int flips = 1 + (int)(rnd(&state) % 3);
			for (int f = 0; f < flips; f++) {
				size_t at = rnd(&state) % len;
				switch (rnd(&state) % 3) {
				case 0:
					buf[at] = (char)rnd(&state);
					break;
				case 1:
					buf[at] = "\"'\\ \n()=<>-#"[rnd(&state) % 12];
					break;
				default:
					len = at;
					break;
				}
				if (len == 0)
					break;
			}
		}
		ok += parse_checked(buf, len) == 0;
	}
	ck_assert_int_gt(ok, 100);
}
END_TEST

static Suite *txnparse_suite(void)
{
	Suite *s = suite_create("txnparse");
	TCase *tc = tcase_create("parse");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, etcdctl_help_example);
	tcase_add_test(tc, every_compare);
	tcase_add_test(tc, every_op_form);
	tcase_add_test(tc, quoting_and_escapes);
	tcase_add_test(tc, sections_comments_line_ends);
	tcase_add_test(tc, text_is_not_kept);
	suite_add_tcase(s, tc);
	tc = tcase_create("errors");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, syntax_errors);
	tcase_add_test(tc, compare_errors_each);
	tcase_add_test(tc, key_and_value_errors);
	tcase_add_test(tc, limits);
	tcase_add_test(tc, error_buffer);
	tcase_add_test(tc, out_of_memory);
	suite_add_tcase(s, tc);
	tc = tcase_create("format");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, format_success_and_failure);
	tcase_add_test(tc, format_errors);
	tcase_add_test(tc, end_to_end_through_sm);
	suite_add_tcase(s, tc);
	tc = tcase_create("random");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, random_input);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	SRunner *sr = srunner_create(txnparse_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
