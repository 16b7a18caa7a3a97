/* txnparse.h - etcdctl's txn text in and out: what /.metastore/txn reads and answers.
 *
 * Input is `etcdctl txn`'s syntax: compares, a blank line, success ops, a blank line, failure
 * ops. Every section may be empty and the end of the text ends the current one, so a txn
 * without compares starts with a blank line ("\nput k v\n"); after the blank line that ends the
 * failure ops only blank lines may follow.
 *
 *   compare := TARGET "(" KEY ")" OP VALUE
 *              TARGET: ver|version, c|create, m|mod (VALUE is a decimal int64), val|value
 *              OP: = != < >     KEY: a quoted string (double or single quotes)
 *              VALUE: double-quoted, single-quoted or a bare word
 *   op      := put KEY VALUE
 *            | get [--prefix|--from-key] [--limit N|--limit=N] [--keys-only] KEY [RANGE_END]
 *            | del [--prefix|--from-key] KEY [RANGE_END]
 *   string  := "double-quoted" with Go escapes (\a \b \f \n \r \t \v \\ \" \xHH \ooo \uHHHH
 *              \UHHHHHHHH) | 'single-quoted', raw | bare word (up to the next blank)
 *
 * Like etcdctl, every line is trimmed of blanks first; flags may stand before, between or after
 * the arguments, and "--" ends them. Beyond etcdctl: a line whose first character is '#' is a
 * comment (not a section break); a quoted token is never a flag (so `put "--x" v` stores key
 * "--x"); blanks are allowed around the parentheses and the operator of a compare, and its
 * VALUE may be unquoted. etcd's lease compares and other get/put/del flags (--rev, --lease,
 * --prev-kv, ...) are errors. Keys: a single key must be a valid path (sm_key_check);
 * a prefix, a range start and a range end are byte strings of <= SM_KEY_BYTES_MAX; --from-key
 * is the one-NUL range end the state machine reads as "to the end"; `get --prefix ""` is all.
 *
 * Output (txnparse_format) is etcdctl's simple format with one line added: "SUCCESS" or
 * "FAILURE" (whether the compares held), then "revision: N" (the store revision after the
 * txn), then for each op of the branch that ran a blank line and its result: put -> "OK",
 * del -> the number of keys deleted, get -> a key line and a value line per key (the value
 * line is empty with --keys-only, as in etcdctl). A txn that failed as a whole (an op's errno:
 * nothing applied) prints, instead of op results, "error: op N: ENAME (description)" with N
 * counting from 1 in its branch, or "error: ENAME (description)" when no op carries it.
 */
#ifndef METASTORE_TXNPARSE_H
#define METASTORE_TXNPARSE_H

#include "sm.h"

#include <stddef.h>
#include <stdint.h>

#define TXNPARSE_TEXT_BYTES_MAX (40u << 20) /* an 8 MiB value fully \xHH-escaped fits */
#define TXNPARSE_LINES_MAX 4096u
#define TXNPARSE_ERR_BYTES 256u             /* enough for any error message */

typedef struct txnparse_txn {
	sm_txn_t txn; /* origin, time and flags zero: the caller sets them */
	void *arena;  /* owns the arrays and every key and value of txn */
} txnparse_txn_t;

/* Parses text[0, len) (need not be NUL-terminated; not referenced afterwards). PUT ops get
 * uid/gid (the owner of any parent directory they create). Returns 0, or on error fills err
 * (if err_len > 0) with "line N: message" and returns -EINVAL (syntax, a bad key, a
 * non-numeric number), -ENAMETOOLONG (a key too long), -EFBIG (a value over
 * CODEC_VALUE_BYTES_MAX), -E2BIG (text over TXNPARSE_TEXT_BYTES_MAX, more than
 * TXNPARSE_LINES_MAX lines, or more compares or ops in a section than a txn can hold) or
 * -ENOMEM. On error *out owns nothing. A parsed txn always passes codec_txn_check(). */
int txnparse_parse(const char *text, size_t len, uint32_t uid, uint32_t gid, txnparse_txn_t *out,
		   char *err, size_t err_len);

void txnparse_free(txnparse_txn_t *t);

/* Formats the result of txn (res->ops are the ops of the branch that ran) as described above.
 * Returns the bytes of the whole text (no NUL); buf holds it only when that is <= cap. */
size_t txnparse_format(const sm_txn_t *txn, const sm_txn_result_t *res, char *buf, size_t cap);

#endif
