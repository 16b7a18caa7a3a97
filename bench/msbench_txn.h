/* msbench_txn.h - the text msbench writes to /.metastore/txn and the answer it reads back.
 *
 * One compare-and-swap per txn, in etcdctl's txn syntax (compares, blank line, success ops,
 * blank line, failure ops):
 *
 *     mod("KEY") = "REV"
 *
 *     put "KEY" "VALUE"
 *
 *     get "KEY"
 *
 * KEY is the path below the mount root; KEY and VALUE must not need escaping (no '"', '\\',
 * control bytes or blanks), which msbench's generated names and values never do. The answer
 * starts with "SUCCESS" or "FAILURE", then "revision: N" (the store revision after the txn);
 * any "error:" line, or a first line that is neither, makes the txn an error.
 */
#ifndef METASTORE_MSBENCH_TXN_H
#define METASTORE_MSBENCH_TXN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Writes the CAS txn text (NUL-terminated) into out[0, cap). Returns its length, -EINVAL if key
 * or value is empty or holds a byte that would need escaping, or -ENOSPC if cap is too small. */
int msb_txn_format(char *out, size_t cap, const char *key, int64_t mod_revision, const char *value);

/* Parses an answer text[0, len) (need not be NUL-terminated). On 0, *succeeded tells whether the
 * compare held and *revision is the store revision after the txn. -EPROTO for an answer holding
 * an "error:" line (the daemon refused or failed the txn; err gets that line, NUL-terminated,
 * when err_len > 0), -EBADMSG for text that is not an answer. */
int msb_txn_parse_result(const char *text, size_t len, bool *succeeded, int64_t *revision, char *err,
                         size_t err_len);

#endif
