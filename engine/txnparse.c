/* txnparse.c - parser of etcdctl's txn text and formatter of its result (syntax in txnparse.h).
 *
 * Two passes over the text. The first splits lines, assigns each to its section (compares,
 * success, failure) and counts them, so limits are reported before anything is allocated and
 * the one allocation (ops, compares, then string bytes) is sized exactly. Decoded strings are
 * never longer than their source (an escape shrinks or keeps its length), so `len` bytes hold
 * every key and value of the text. The second pass tokenizes and builds the ops. Nothing
 * recurses; every loop is bounded by the text length or TXNPARSE_LINES_MAX.
 */
#include "txnparse.h"

#include "codec.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOKENS_PER_LINE_MAX 8u
#define SHOWN_BYTES_MAX 40u /* of a token quoted in an error message */

enum { SEC_COMPARES, SEC_SUCCESS, SEC_FAILURE, SEC_AFTER, SEC_COUNT };

typedef struct line {
	const char *s; /* trimmed */
	size_t len;
	size_t no; /* 1-based */
} line_t;

typedef struct parser {
	char *err;
	size_t err_len;
	size_t line_no;
	char *strings; /* arena bytes for keys and values */
	size_t strings_used, strings_cap;
	uint32_t uid, gid;
} parser_t;

typedef struct token {
	const char *s; /* in the arena */
	size_t len;
	bool quoted;
} token_t;

__attribute__((format(printf, 3, 4))) static int fail(parser_t *p, int rc, const char *fmt, ...)
{
	assert(rc < 0);
	if (p->err_len == 0)
		return rc;
	int n = snprintf(p->err, p->err_len, "line %zu: ", p->line_no);
	if (n >= 0 && (size_t)n < p->err_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(p->err + n, p->err_len - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return rc;
}

/* A token for an error message: printable ASCII as is, the rest as \xHH, cut at
 * SHOWN_BYTES_MAX source bytes. out must hold 4 * SHOWN_BYTES_MAX + 4 bytes. */
static const char *shown(const char *s, size_t len, char *out)
{
	size_t o = 0;
	for (size_t i = 0; i < len && i < SHOWN_BYTES_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '"')
			out[o++] = (char)c;
		else
			o += (size_t)sprintf(out + o, "\\x%02x", c);
	}
	if (len > SHOWN_BYTES_MAX) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

#define SHOWN_BUF_BYTES (4 * SHOWN_BYTES_MAX + 4)

static bool is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

/* The next line of text at *at (advanced past it), trimmed; false at the end. */
static bool next_line(const char *text, size_t len, size_t *at, line_t *line)
{
	if (*at >= len)
		return false;
	const char *s = text + *at;
	const char *nl = memchr(s, '\n', len - *at);
	size_t n = nl != NULL ? (size_t)(nl - s) : len - *at;
	*at += n + (nl != NULL);
	while (n > 0 && is_blank(s[0])) {
		s++;
		n--;
	}
	while (n > 0 && is_blank(s[n - 1]))
		n--;
	line->s = s;
	line->len = n;
	line->no++;
	return true;
}

static bool is_comment(const line_t *l)
{
	return l->len > 0 && l->s[0] == '#';
}

/* ------------------------------------------------------------------ pass one */

typedef struct shape {
	size_t n[SEC_COUNT];
} shape_t;

static int scan(parser_t *p, const char *text, size_t len, shape_t *shape)
{
	memset(shape, 0, sizeof(*shape));
	size_t at = 0;
	int sec = SEC_COMPARES;
	line_t l = {0};
	while (next_line(text, len, &at, &l)) {
		p->line_no = l.no;
		if (l.no > TXNPARSE_LINES_MAX)
			return fail(p, -E2BIG, "more than %u lines", TXNPARSE_LINES_MAX);
		if (l.len == 0) {
			if (sec < SEC_AFTER)
				sec++;
			continue;
		}
		if (is_comment(&l))
			continue;
		if (sec == SEC_AFTER)
			return fail(p, -EINVAL, "unexpected text after the failure ops "
						"(a txn is compares, blank line, success ops, blank line, failure ops)");
		size_t max = sec == SEC_COMPARES ? CODEC_TXN_COMPARES_MAX : CODEC_TXN_OPS_MAX;
		if (++shape->n[sec] > max)
			return fail(p, -E2BIG, "more than %zu %s", max,
				    sec == SEC_COMPARES ? "compares" : sec == SEC_SUCCESS ? "success ops" : "failure ops");
	}
	return 0;
}

/* ------------------------------------------------------------------ strings */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* n hex digits at s (n <= 8), or -1. */
static int64_t hex_value(const char *s, size_t avail, size_t n)
{
	if (avail < n)
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		int d = hex_digit(s[i]);
		if (d < 0)
			return -1;
		v = v * 16 + d;
	}
	return v;
}

static size_t utf8_put(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | (cp >> 12 & 0x3f));
	out[2] = (char)(0x80 | (cp >> 6 & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* One escape at s[0] == '\\' (avail bytes to the end of the line): appends its bytes to out
 * and returns the source bytes it used, or 0 for a bad escape. Never writes more bytes than
 * it consumes. */
static size_t unescape(const char *s, size_t avail, char *out, size_t *out_len)
{
	static const char simple_from[] = "abfnrtv\\\"";
	static const char simple_to[] = "\a\b\f\n\r\t\v\\\"";
	if (avail < 2)
		return 0;
	const char *hit = memchr(simple_from, s[1], sizeof(simple_from) - 1);
	if (hit != NULL && s[1] != '\0') {
		out[(*out_len)++] = simple_to[hit - simple_from];
		return 2;
	}
	int64_t v;
	switch (s[1]) {
	case 'x':
		if ((v = hex_value(s + 2, avail - 2, 2)) < 0)
			return 0;
		out[(*out_len)++] = (char)v;
		return 4;
	case 'u':
	case 'U': {
		size_t n = s[1] == 'u' ? 4 : 8;
		if ((v = hex_value(s + 2, avail - 2, n)) < 0 || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
			return 0;
		*out_len += utf8_put(out + *out_len, (uint32_t)v);
		return 2 + n;
	}
	default:
		if (s[1] < '0' || s[1] > '7' || avail < 4)
			return 0;
		v = 0;
		for (int i = 1; i <= 3; i++) {
			if (s[i] < '0' || s[i] > '7')
				return 0;
			v = v * 8 + (s[i] - '0');
		}
		if (v > 255)
			return 0;
		out[(*out_len)++] = (char)v;
		return 4;
	}
}

/* Reads one token at s (no leading blanks; n bytes to the end of the line) into the arena.
 * Returns the source bytes it used (> 0) or a negative errno (message set). */
static long read_token(parser_t *p, const char *s, size_t n, token_t *tok)
{
	assert(n > 0 && !is_blank(s[0]));
	char *out = p->strings + p->strings_used;
	size_t out_len = 0, i;
	char shown_buf[SHOWN_BUF_BYTES];
	tok->quoted = s[0] == '"' || s[0] == '\'';
	if (s[0] == '\'') {
		const char *end = memchr(s + 1, '\'', n - 1);
		if (end == NULL)
			return fail(p, -EINVAL, "missing closing ' in %s", shown(s, n, shown_buf));
		out_len = (size_t)(end - s - 1);
		memcpy(out, s + 1, out_len);
		i = (size_t)(end - s) + 1;
	} else if (s[0] == '"') {
		for (i = 1;; ) {
			if (i >= n)
				return fail(p, -EINVAL, "missing closing \" in %s", shown(s, n, shown_buf));
			if (s[i] == '"') {
				i++;
				break;
			}
			if (s[i] != '\\') {
				out[out_len++] = s[i++];
				continue;
			}
			size_t used = unescape(s + i, n - i, out, &out_len);
			if (used == 0)
				return fail(p, -EINVAL, "bad escape %s in a quoted string",
					    shown(s + i, n - i < 10 ? n - i : 10, shown_buf));
			i += used;
		}
	} else {
		for (i = 0; i < n && !is_blank(s[i]); i++)
			;
		out_len = i;
		memcpy(out, s, out_len);
	}
	assert(out_len <= i);
	assert(p->strings_used + out_len <= p->strings_cap);
	p->strings_used += out_len;
	tok->s = out;
	tok->len = out_len;
	return (long)i;
}

/* Splits a line into at most TOKENS_PER_LINE_MAX tokens. */
static int tokenize(parser_t *p, const line_t *l, token_t *toks, size_t *n_toks)
{
	size_t i = 0;
	*n_toks = 0;
	while (i < l->len) {
		if (is_blank(l->s[i])) {
			i++;
			continue;
		}
		if (*n_toks == TOKENS_PER_LINE_MAX)
			return fail(p, -EINVAL, "too many arguments (at most %u words on a line)",
				    TOKENS_PER_LINE_MAX);
		long used = read_token(p, l->s + i, l->len - i, &toks[*n_toks]);
		if (used < 0)
			return (int)used;
		i += (size_t)used;
		if (i < l->len && !is_blank(l->s[i]))
			return fail(p, -EINVAL, "missing blank after a quoted string");
		(*n_toks)++;
	}
	return 0;
}

static bool tok_is(const token_t *t, const char *word)
{
	return !t->quoted && t->len == strlen(word) && memcmp(t->s, word, t->len) == 0;
}

/* Decimal int64 with an optional sign, the whole token. */
static bool parse_i64(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	if (i < len && (s[i] == '+' || s[i] == '-'))
		neg = s[i++] == '-';
	if (i == len)
		return false;
	uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return true;
}

/* ------------------------------------------------------------------ keys */

static int check_path_key(parser_t *p, const char *key, size_t len)
{
	char buf[SHOWN_BUF_BYTES];
	int rc = sm_key_check(key, len);
	if (rc == -ENAMETOOLONG)
		return fail(p, rc, "key %s is too long (at most %u bytes, %u per component)",
			    shown(key, len, buf), SM_KEY_BYTES_MAX, SM_NAME_BYTES_MAX);
	if (rc != 0)
		return fail(p, -EINVAL, "invalid key \"%s\" (a path: no leading, trailing or double '/', "
					"no \".\" or \"..\" component, no NUL)", shown(key, len, buf));
	return 0;
}

static int check_range_key(parser_t *p, size_t len)
{
	if (len > SM_KEY_BYTES_MAX)
		return fail(p, -ENAMETOOLONG, "key is too long (%zu bytes, at most %u)", len, SM_KEY_BYTES_MAX);
	return 0;
}

static int check_value(parser_t *p, size_t len)
{
	if (len > CODEC_VALUE_BYTES_MAX)
		return fail(p, -EFBIG, "value is too large (%zu bytes, at most %u)", len, CODEC_VALUE_BYTES_MAX);
	return 0;
}

/* ------------------------------------------------------------------ compares */

static const char *skip_blanks(const char *s, const char *end)
{
	while (s < end && is_blank(*s))
		s++;
	return s;
}

static int parse_target(parser_t *p, const char *s, size_t len, sm_cmp_target_t *target)
{
	static const struct {
		const char *name;
		sm_cmp_target_t target;
	} names[] = {
		{"ver", SM_CMP_VERSION}, {"version", SM_CMP_VERSION}, {"c", SM_CMP_CREATE},
		{"create", SM_CMP_CREATE}, {"m", SM_CMP_MOD}, {"mod", SM_CMP_MOD},
		{"val", SM_CMP_VALUE}, {"value", SM_CMP_VALUE},
	};
	char buf[SHOWN_BUF_BYTES];
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i].name) == len && memcmp(names[i].name, s, len) == 0) {
			*target = names[i].target;
			return 0;
		}
	if (len == 5 && memcmp(s, "lease", 5) == 0)
		return fail(p, -EINVAL, "lease compares are not supported");
	return fail(p, -EINVAL, "unknown compare target \"%s\" (want ver, create, mod or val)",
		    shown(s, len, buf));
}

static int parse_compare(parser_t *p, const line_t *l, sm_compare_t *c)
{
	const char *end = l->s + l->len;
	const char *paren = memchr(l->s, '(', l->len);
	char buf[SHOWN_BUF_BYTES];
	memset(c, 0, sizeof(*c));
	if (paren == NULL)
		return fail(p, -EINVAL, "malformed compare (want TARGET(\"key\") OP \"value\", "
					"e.g. mod(\"app/x\") = \"42\")");
	size_t target_len = (size_t)(paren - l->s);
	while (target_len > 0 && is_blank(l->s[target_len - 1]))
		target_len--;
	int rc = parse_target(p, l->s, target_len, &c->target);
	if (rc != 0)
		return rc;

	const char *s = skip_blanks(paren + 1, end);
	if (s == end || (*s != '"' && *s != '\''))
		return fail(p, -EINVAL, "the key of a compare must be quoted: TARGET(\"key\")");
	token_t key;
	long used = read_token(p, s, (size_t)(end - s), &key);
	if (used < 0)
		return (int)used;
	s = skip_blanks(s + used, end);
	if (s == end || *s != ')')
		return fail(p, -EINVAL, "missing ) after the key of a compare");
	s = skip_blanks(s + 1, end);

	if (end - s >= 2 && s[0] == '!' && s[1] == '=') {
		c->op = SM_CMP_NE;
		s += 2;
	} else if (s < end && (*s == '=' || *s == '<' || *s == '>')) {
		c->op = *s == '=' ? SM_CMP_EQ : *s == '<' ? SM_CMP_LT : SM_CMP_GT;
		s++;
	} else {
		return fail(p, -EINVAL, "unknown compare operator (want =, !=, < or >)");
	}
	if (s < end && (*s == '=' || *s == '<' || *s == '>' || *s == '!'))
		return fail(p, -EINVAL, "unknown compare operator (want =, !=, < or >)");
	s = skip_blanks(s, end);
	if (s == end)
		return fail(p, -EINVAL, "missing value after the compare operator");
	token_t val;
	used = read_token(p, s, (size_t)(end - s), &val);
	if (used < 0)
		return (int)used;
	if (skip_blanks(s + used, end) != end)
		return fail(p, -EINVAL, "unexpected text after the value of a compare");

	if ((rc = check_path_key(p, key.s, key.len)) != 0)
		return rc;
	c->key = key.s;
	c->key_len = key.len;
	if (c->target == SM_CMP_VALUE) {
		if ((rc = check_value(p, val.len)) != 0)
			return rc;
		c->value = (const uint8_t *)val.s;
		c->value_len = val.len;
	} else if (!parse_i64(val.s, val.len, &c->number)) {
		return fail(p, -EINVAL, "\"%s\" is not a number (a %s compare takes a decimal integer)",
			    shown(val.s, val.len, buf),
			    c->target == SM_CMP_VERSION ? "version" : c->target == SM_CMP_CREATE ? "create" : "mod");
	}
	return 0;
}

/* ------------------------------------------------------------------ ops */

typedef struct op_args {
	bool prefix, from_key, keys_only, has_limit;
	uint64_t limit;
	const token_t *pos[3];
	size_t n_pos;
} op_args_t;

static int bool_flag(parser_t *p, const char *value, size_t value_len, bool has_value, bool *out)
{
	if (!has_value || (value_len == 4 && memcmp(value, "true", 4) == 0)) {
		*out = true;
		return 0;
	}
	if (value_len == 5 && memcmp(value, "false", 5) == 0) {
		*out = false;
		return 0;
	}
	return fail(p, -EINVAL, "a flag like --prefix takes =true or =false");
}

/* Splits flags from positional arguments (pflag's interspersed style). */
static int parse_flags(parser_t *p, const char *op, const token_t *toks, size_t n, op_args_t *a)
{
	bool is_get = strcmp(op, "get") == 0, is_del = strcmp(op, "del") == 0;
	bool flags_done = false;
	char buf[SHOWN_BUF_BYTES];
	memset(a, 0, sizeof(*a));
	for (size_t i = 1; i < n; i++) {
		const token_t *t = &toks[i];
		bool is_flag = !flags_done && !t->quoted && t->len >= 2 && t->s[0] == '-';
		if (!is_flag) {
			if (a->n_pos == 3)
				return fail(p, -EINVAL, "too many arguments for %s", op);
			a->pos[a->n_pos++] = t;
			continue;
		}
		if (tok_is(t, "--")) {
			flags_done = true;
			continue;
		}
		const char *name = t->s + (t->s[1] == '-' ? 2 : 1);
		size_t name_len = t->len - (size_t)(name - t->s);
		const char *eq = memchr(name, '=', name_len);
		const char *value = eq != NULL ? eq + 1 : NULL;
		size_t value_len = eq != NULL ? (size_t)(t->s + t->len - value) : 0;
		if (eq != NULL)
			name_len = (size_t)(eq - name);
#define NAME_IS(lit) (name_len == sizeof(lit) - 1 && memcmp(name, lit, name_len) == 0 && t->s[1] == '-')
		int rc;
		if ((is_get || is_del) && NAME_IS("prefix"))
			rc = bool_flag(p, value, value_len, eq != NULL, &a->prefix);
		else if ((is_get || is_del) && NAME_IS("from-key"))
			rc = bool_flag(p, value, value_len, eq != NULL, &a->from_key);
		else if (is_get && NAME_IS("keys-only"))
			rc = bool_flag(p, value, value_len, eq != NULL, &a->keys_only);
		else if (is_get && NAME_IS("limit")) {
			if (eq == NULL) {
				if (i + 1 == n)
					return fail(p, -EINVAL, "--limit needs a number");
				i++;
				value = toks[i].s;
				value_len = toks[i].len;
			}
			int64_t v;
			if (!parse_i64(value, value_len, &v) || v < 0)
				return fail(p, -EINVAL, "--limit takes a number >= 0, not \"%s\"",
					    shown(value, value_len, buf));
			a->limit = (uint64_t)v;
			a->has_limit = true;
			rc = 0;
		} else {
			return fail(p, -EINVAL, "unknown flag %s for %s (known: %s)", shown(t->s, t->len, buf), op,
				    is_get ? "--prefix, --from-key, --limit, --keys-only"
				    : is_del ? "--prefix, --from-key" : "none");
		}
#undef NAME_IS
		if (rc != 0)
			return rc;
	}
	return 0;
}

/* The key (and range end) of a get or del. */
static int key_range(parser_t *p, const char *op, const op_args_t *a, sm_op_t *o)
{
	int rc;
	if (a->n_pos == 0)
		return fail(p, -EINVAL, "%s needs a key", op);
	if (a->n_pos > 2)
		return fail(p, -EINVAL, "too many arguments for %s (want KEY [RANGE_END])", op);
	if (a->prefix && a->from_key)
		return fail(p, -EINVAL, "--prefix and --from-key cannot be used together");
	if ((a->prefix || a->from_key) && a->n_pos == 2)
		return fail(p, -EINVAL, "%s takes one key with --%s", op, a->prefix ? "prefix" : "from-key");
	o->key = a->pos[0]->s;
	o->key_len = a->pos[0]->len;
	if (a->prefix) {
		o->flags |= SM_F_PREFIX;
		return check_range_key(p, o->key_len);
	}
	if (a->from_key || a->n_pos == 2) {
		if ((rc = check_range_key(p, o->key_len)) != 0)
			return rc;
		o->key2 = a->from_key ? "" : a->pos[1]->s; /* "" has the NUL that --from-key means */
		o->key2_len = a->from_key ? 1 : a->pos[1]->len;
		return check_range_key(p, o->key2_len);
	}
	return check_path_key(p, o->key, o->key_len);
}

static int parse_op(parser_t *p, const line_t *l, sm_op_t *o)
{
	token_t toks[TOKENS_PER_LINE_MAX];
	size_t n;
	op_args_t a;
	char buf[SHOWN_BUF_BYTES];
	memset(o, 0, sizeof(*o));
	int rc = tokenize(p, l, toks, &n);
	if (rc != 0)
		return rc;
	assert(n > 0); /* the line is not blank */
	const char *op = tok_is(&toks[0], "put") ? "put" : tok_is(&toks[0], "get") ? "get"
		       : tok_is(&toks[0], "del") ? "del" : NULL;
	if (op == NULL)
		return fail(p, -EINVAL, "unknown op \"%s\" (want put, get or del)",
			    shown(toks[0].s, toks[0].len, buf));
	if ((rc = parse_flags(p, op, toks, n, &a)) != 0)
		return rc;
	if (op[0] == 'p') {
		if (a.n_pos != 2)
			return fail(p, -EINVAL, "put takes a key and a value (put KEY VALUE)");
		o->type = SM_OP_PUT;
		o->key = a.pos[0]->s;
		o->key_len = a.pos[0]->len;
		o->value = (const uint8_t *)a.pos[1]->s;
		o->value_len = a.pos[1]->len;
		o->uid = p->uid;
		o->gid = p->gid;
		if ((rc = check_path_key(p, o->key, o->key_len)) != 0)
			return rc;
		return check_value(p, o->value_len);
	}
	o->type = op[0] == 'g' ? SM_OP_GET : SM_OP_DEL;
	if (a.keys_only)
		o->flags |= SM_F_KEYS_ONLY;
	o->limit = a.limit;
	return key_range(p, op, &a, o);
}

/* ------------------------------------------------------------------ parse */

int txnparse_parse(const char *text, size_t len, uint32_t uid, uint32_t gid, txnparse_txn_t *out,
		   char *err, size_t err_len)
{
	assert(text != NULL || len == 0);
	assert(out != NULL);
	assert(err != NULL || err_len == 0);
	memset(out, 0, sizeof(*out));
	if (err_len > 0)
		err[0] = '\0';
	parser_t p = {.err = err, .err_len = err_len, .line_no = 1, .uid = uid, .gid = gid};
	if (len > TXNPARSE_TEXT_BYTES_MAX)
		return fail(&p, -E2BIG, "txn text is longer than %u bytes", TXNPARSE_TEXT_BYTES_MAX);
	shape_t shape;
	int rc = scan(&p, text, len, &shape);
	if (rc != 0)
		return rc;

	size_t n_ops = shape.n[SEC_SUCCESS] + shape.n[SEC_FAILURE];
	size_t compares_at = n_ops * sizeof(sm_op_t);
	size_t strings_at = compares_at + shape.n[SEC_COMPARES] * sizeof(sm_compare_t);
	_Static_assert(sizeof(sm_op_t) % _Alignof(sm_compare_t) == 0, "compares follow ops aligned");
	uint8_t *arena = malloc(strings_at + len + 1);
	p.line_no = 1;
	if (arena == NULL)
		return fail(&p, -ENOMEM, "out of memory");
	sm_op_t *ops = (sm_op_t *)(void *)arena;
	sm_compare_t *compares = (sm_compare_t *)(void *)(arena + compares_at);
	p.strings = (char *)arena + strings_at;
	p.strings_cap = len + 1;

	size_t at = 0, n[SEC_COUNT] = {0};
	int sec = SEC_COMPARES;
	line_t l = {0};
	while (rc == 0 && next_line(text, len, &at, &l)) {
		p.line_no = l.no;
		if (l.len == 0) {
			sec += sec < SEC_AFTER;
			continue;
		}
		if (is_comment(&l))
			continue;
		assert(sec < SEC_AFTER && n[sec] < shape.n[sec]); /* scan() saw the same lines */
		if (sec == SEC_COMPARES)
			rc = parse_compare(&p, &l, &compares[n[sec]++]);
		else
			rc = parse_op(&p, &l, &ops[(sec == SEC_FAILURE ? shape.n[SEC_SUCCESS] : 0) + n[sec]++]);
	}
	if (rc != 0) {
		free(arena);
		return rc;
	}
	sm_txn_t *t = &out->txn;
	t->n_compare = (uint32_t)shape.n[SEC_COMPARES];
	t->n_success = (uint32_t)shape.n[SEC_SUCCESS];
	t->n_failure = (uint32_t)shape.n[SEC_FAILURE];
	t->compares = t->n_compare ? compares : NULL;
	t->success = t->n_success ? ops : NULL;
	t->failure = t->n_failure ? ops + t->n_success : NULL;
	out->arena = arena;
	assert(codec_txn_check(t) == 0);
	return 0;
}

void txnparse_free(txnparse_txn_t *t)
{
	if (t == NULL)
		return;
	free(t->arena);
	memset(t, 0, sizeof(*t));
}

/* ------------------------------------------------------------------ format */

typedef struct out {
	char *buf;
	size_t cap, len;
} out_t;

static void emit(out_t *o, const void *s, size_t n)
{
	if (o->len <= o->cap && n <= o->cap - o->len && n > 0)
		memcpy(o->buf + o->len, s, n);
	o->len += n;
}

static void emit_str(out_t *o, const char *s)
{
	emit(o, s, strlen(s));
}

__attribute__((format(printf, 2, 3))) static void emitf(out_t *o, const char *fmt, ...)
{
	char line[128];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	assert(n >= 0 && (size_t)n < sizeof(line));
	emit(o, line, (size_t)n);
}

static void emit_errno(out_t *o, int err)
{
	const char *name = strerrorname_np(-err);
	const char *desc = strerrordesc_np(-err);
	if (name != NULL)
		emitf(o, "%s (%s)\n", name, desc != NULL ? desc : "?");
	else
		emitf(o, "errno %d\n", -err);
}

size_t txnparse_format(const sm_txn_t *txn, const sm_txn_result_t *res, char *buf, size_t cap)
{
	assert(txn != NULL && res != NULL);
	assert(buf != NULL || cap == 0);
	assert(res->err <= 0);
	const sm_op_t *ops = res->succeeded ? txn->success : txn->failure;
	size_t n_ops = res->succeeded ? txn->n_success : txn->n_failure;
	out_t o = {buf, cap, 0};
	emit_str(&o, res->succeeded ? "SUCCESS\n" : "FAILURE\n");
	emitf(&o, "revision: %" PRId64 "\n", res->revision);
	if (res->err != 0) {
		emit_str(&o, "error: ");
		for (size_t i = 0; i < res->n_ops; i++)
			if (res->ops[i].err == res->err) {
				emitf(&o, "op %zu: ", i + 1);
				break;
			}
		emit_errno(&o, res->err);
		return o.len;
	}
	assert(res->n_ops == n_ops || res->duplicate);
	for (size_t i = 0; i < res->n_ops && i < n_ops; i++) {
		const sm_op_result_t *r = &res->ops[i];
		emit_str(&o, "\n");
		switch (ops[i].type) {
		case SM_OP_GET:
			for (size_t k = 0; k < r->n_kvs; k++) {
				const sm_kv_t *kv = &r->kvs[k];
				emit(&o, kv->key, kv->key_len);
				emit_str(&o, "\n");
				if (!(ops[i].flags & SM_F_KEYS_ONLY))
					emit(&o, kv->rec.value, kv->rec.value_len);
				emit_str(&o, "\n");
			}
			break;
		case SM_OP_DEL:
			emitf(&o, "%" PRIu64 "\n", r->deleted);
			break;
		default: /* put, and the filesystem ops the txn file never makes */
			emit_str(&o, "OK\n");
			break;
		}
	}
	return o.len;
}
