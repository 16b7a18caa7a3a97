/* msbench_txn.c - formats msbench's compare-and-swap txn text and parses the daemon's answer
 * (see msbench_txn.h). Pure functions, no I/O, so `msbench selftest` checks them exactly.
 */
#include "msbench_txn.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define TXN_ANSWER_LINES_MAX 4096u

static bool plain_token(const char *s)
{
	if (!s || !*s) return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p <= ' ' || *p == '"' || *p == '\\' || *p == '\'' || *p >= 0x7f) return false;
	}
	return true;
}

int msb_txn_format(char *out, size_t cap, const char *key, int64_t mod_revision, const char *value)
{
	assert(out && cap > 0);
	if (!plain_token(key) || !plain_token(value) || mod_revision < 0) return -EINVAL;
	int n = snprintf(out, cap, "mod(\"%s\") = \"%" PRId64 "\"\n\nput \"%s\" \"%s\"\n\nget \"%s\"\n", key,
	                 mod_revision, key, value, key);
	if (n < 0) return -EINVAL;
	if ((size_t)n >= cap) return -ENOSPC;
	return n;
}

/* The line starting at text[*pos]: its length without the newline; *pos moves past it. */
static size_t next_line(const char *text, size_t len, size_t *pos, const char **line)
{
	size_t start = *pos;
	const char *nl = memchr(text + start, '\n', len - start);
	size_t end = nl ? (size_t)(nl - text) : len;
	*line = text + start;
	*pos = nl ? end + 1 : len;
	return end - start;
}

static bool line_is(const char *line, size_t n, const char *word)
{
	size_t w = strlen(word);
	return n == w && memcmp(line, word, w) == 0;
}

static int parse_revision(const char *line, size_t n, int64_t *revision)
{
	static const char prefix[] = "revision: ";
	size_t p = sizeof prefix - 1;
	if (n <= p || memcmp(line, prefix, p) != 0) return -EBADMSG;
	int64_t v = 0;
	for (size_t i = p; i < n; i++) {
		if (line[i] < '0' || line[i] > '9') return -EBADMSG;
		if (v > (INT64_MAX - 9) / 10) return -EBADMSG;
		v = v * 10 + (line[i] - '0');
	}
	*revision = v;
	return 0;
}

static void copy_line(char *err, size_t err_len, const char *line, size_t n)
{
	if (err_len == 0) return;
	if (n >= err_len) n = err_len - 1;
	memcpy(err, line, n);
	err[n] = '\0';
}

int msb_txn_parse_result(const char *text, size_t len, bool *succeeded, int64_t *revision, char *err,
                         size_t err_len)
{
	assert(text || len == 0);
	assert(succeeded && revision);
	if (err_len) err[0] = '\0';
	size_t pos = 0;
	const char *line;
	int rc = 0;
	bool ok = false, have_first = false, have_rev = false;
	for (uint32_t i = 0; i < TXN_ANSWER_LINES_MAX && pos < len; i++) {
		size_t n = next_line(text, len, &pos, &line);
		if (n >= 6 && memcmp(line, "error:", 6) == 0) {
			copy_line(err, err_len, line, n);
			return -EPROTO;
		}
		if (i == 0) {
			if (line_is(line, n, "SUCCESS"))
				ok = true;
			else if (!line_is(line, n, "FAILURE"))
				return -EBADMSG;
			have_first = true;
		} else if (i == 1) {
			rc = parse_revision(line, n, revision);
			if (rc) return rc;
			have_rev = true;
		}
	}
	if (!have_first || !have_rev) return -EBADMSG;
	*succeeded = ok;
	return 0;
}
