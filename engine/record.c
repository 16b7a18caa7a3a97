/* record.c - the stored form of a MetaStore record, and key validation.
 *
 * A record (sm_record_t) is stored as one engine value: a fixed, versioned, little-endian
 * header followed by the value bytes (file content or symlink target). Fixed-width fields and
 * explicit byte order make the stored bytes identical on every node and every architecture,
 * which is what lets two replicas compare their engines byte for byte. decode() trusts nothing:
 * it checks the length, the format version, the kind, that the mode's S_IFMT matches the kind,
 * size against the value length and the revision invariants, and answers -EINVAL on anything
 * else, so a corrupt or foreign value never becomes a record.
 *
 *   off  size  field
 *     0     1  format version (1)
 *     1     1  kind (sm_kind_t)
 *     2     2  reserved, 0
 *     4     4  mode
 *     8     4  uid
 *    12     4  gid
 *    16     8  ino
 *    24     8  size
 *    32     8  mtime_ns        (signed)
 *    40     8  ctime_ns        (signed)
 *    48     8  create_revision (signed)
 *    56     8  mod_revision    (signed)
 *    64     8  version         (signed)
 *    72     4  value_len
 *    76     -  value bytes     (exactly value_len)
 */
#include "sm.h"
#include "le.h"

#include <assert.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define RECORD_FORMAT_VERSION 1u
#define RECORD_HEADER_BYTES 76u

static uint32_t kind_ifmt(sm_kind_t kind)
{
	switch (kind) {
	case SM_KIND_FILE:
		return S_IFREG;
	case SM_KIND_DIR:
		return S_IFDIR;
	case SM_KIND_SYMLINK:
		return S_IFLNK;
	}
	return 0;
}

size_t sm_record_encode(const sm_record_t *rec, uint8_t *buf, size_t cap)
{
	assert(rec);
	assert(rec->value || rec->value_len == 0);
	assert(rec->value_len <= UINT32_MAX);
	size_t need = RECORD_HEADER_BYTES + rec->value_len;
	if (!buf || cap < need) return need;
	buf[0] = RECORD_FORMAT_VERSION;
	buf[1] = (uint8_t)rec->kind;
	put_le16(buf + 2, 0);
	put_le32(buf + 4, rec->mode);
	put_le32(buf + 8, rec->uid);
	put_le32(buf + 12, rec->gid);
	put_le64(buf + 16, rec->ino);
	put_le64(buf + 24, rec->size);
	put_le64(buf + 32, (uint64_t)rec->mtime_ns);
	put_le64(buf + 40, (uint64_t)rec->ctime_ns);
	put_le64(buf + 48, (uint64_t)rec->create_revision);
	put_le64(buf + 56, (uint64_t)rec->mod_revision);
	put_le64(buf + 64, (uint64_t)rec->version);
	put_le32(buf + 72, (uint32_t)rec->value_len);
	if (rec->value_len) memcpy(buf + RECORD_HEADER_BYTES, rec->value, rec->value_len);
	return need;
}

int sm_record_decode(const void *vbuf, size_t len, sm_record_t *rec)
{
	const uint8_t *buf = vbuf;
	assert(rec);
	if (!buf || len < RECORD_HEADER_BYTES) return -EINVAL;
	if (buf[0] != RECORD_FORMAT_VERSION || get_le16(buf + 2) != 0) return -EINVAL;
	sm_record_t r;
	memset(&r, 0, sizeof r);
	r.kind = (sm_kind_t)buf[1];
	uint32_t ifmt = kind_ifmt(r.kind);
	if (ifmt == 0) return -EINVAL;
	r.mode = get_le32(buf + 4);
	r.uid = get_le32(buf + 8);
	r.gid = get_le32(buf + 12);
	r.ino = get_le64(buf + 16);
	r.size = get_le64(buf + 24);
	r.mtime_ns = (int64_t)get_le64(buf + 32);
	r.ctime_ns = (int64_t)get_le64(buf + 40);
	r.create_revision = (int64_t)get_le64(buf + 48);
	r.mod_revision = (int64_t)get_le64(buf + 56);
	r.version = (int64_t)get_le64(buf + 64);
	r.value_len = get_le32(buf + 72);
	if (r.value_len != len - RECORD_HEADER_BYTES) return -EINVAL;
	if ((r.mode & S_IFMT) != ifmt || (r.mode & ~(uint32_t)(S_IFMT | 07777)) != 0) return -EINVAL;
	if (r.kind == SM_KIND_DIR ? (r.size != 0 || r.value_len != 0) : r.size != r.value_len) return -EINVAL;
	if (r.ino == 0 || r.create_revision < 0 || r.mod_revision < r.create_revision || r.version < 1)
		return -EINVAL;
	r.value = r.value_len ? buf + RECORD_HEADER_BYTES : NULL;
	*rec = r;
	return 0;
}

int sm_key_check(const char *key, size_t key_len)
{
	if (key_len == 0) return 0;
	assert(key);
	if (key_len > SM_KEY_BYTES_MAX) return -ENAMETOOLONG;
	if (key[0] == '/' || key[key_len - 1] == '/') return -EINVAL;
	size_t start = 0;
	for (size_t i = 0; i <= key_len; i++) {
		if (i < key_len && key[i] == '\0') return -EINVAL;
		if (i < key_len && key[i] != '/') continue;
		size_t n = i - start;
		const char *c = key + start;
		if (n == 0) return -EINVAL;
		if (n > SM_NAME_BYTES_MAX) return -ENAMETOOLONG;
		if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return -EINVAL;
		start = i + 1;
	}
	return 0;
}
