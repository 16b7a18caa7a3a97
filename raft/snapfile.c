/* snapfile.c - atomic, CRC-checked snapshot files written and read in chunks (see snapfile.h).
 *
 * Atomicity comes from the file system: a snapshot exists under its final name only after its
 * bytes are fsync'ed, and the rename is made durable by an fsync of the directory. Integrity
 * comes from two CRC32Cs: one over the header (so the log can learn the snapshot index cheaply at
 * start) and one over the whole file (checked before anyone reads the data). Formats are
 * little-endian with explicit encoding.
 */
#include "snapfile.h"
#include "le.h"
#include "fullio.h"

#include "crc32c.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC 0x4e53534du     /* "MSSN" */
#define SNAP_END_MAGIC 0x45535346u /* "FSSE" */
#define SNAP_VERSION 1u
#define SNAP_HEADER_BYTES 48u
#define SNAP_TRAILER_BYTES 32u
#define SNAP_NAME_BYTES 51u /* snap-<20>-<20>.snap */
#define SNAP_PATH_MAX 4096u
#define SNAP_DIR_ENTRIES_MAX 100000u /* bound on a directory scan */
#define SNAP_IO_CHUNK_BYTES (1u << 20)

struct raft_snap_writer {
	int dir_fd; /* DIR/snap */
	int fd;
	bool receiving;
	char tmp_name[64];
	uint64_t bytes;    /* accepted so far: data bytes (create) or file bytes (receive) */
	uint64_t file_off; /* bytes written to the file */
	uint32_t crc;      /* running CRC of the file (create only) */
	raft_snap_meta_t meta;
	void *config;
};

struct raft_snap_reader {
	int fd;
	raft_snap_meta_t meta;
	void *config;
};

static uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

static void set_err(char *errbuf, size_t errbuf_len, const char *fmt, ...)
{
	if (errbuf == NULL || errbuf_len == 0) return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, errbuf_len, fmt, ap);
	va_end(ap);
}

static int write_full(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR) continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Opens DIR/snap, creating DIR and DIR/snap as needed (and making the new entry durable). */
static int open_snap_dir(const char *dir, bool create)
{
	char path[SNAP_PATH_MAX];
	if (dir == NULL || snprintf(path, sizeof path, "%s/snap", dir) >= (int)sizeof path) return -EINVAL;
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT || !create) return fd >= 0 ? fd : -errno;
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) return -errno;
	if (mkdir(path, 0755) < 0 && errno != EEXIST) return -errno;
	int parent = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (parent < 0) return -errno;
	int rc = fsync(parent) < 0 ? -errno : 0;
	close(parent);
	if (rc < 0) return rc;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd >= 0 ? fd : -errno;
}

static bool parse_snap_name(const char *name, uint64_t *index, uint64_t *term)
{
	if (strlen(name) != SNAP_NAME_BYTES || strncmp(name, "snap-", 5) != 0 || name[25] != '-' ||
	    strcmp(name + 46, ".snap") != 0)
		return false;
	uint64_t v[2] = {0, 0};
	for (int k = 0; k < 2; k++) {
		const char *p = name + 5 + 21 * k;
		for (int i = 0; i < 20; i++) {
			if (p[i] < '0' || p[i] > '9') return false;
			uint64_t d = (uint64_t)(p[i] - '0');
			if (v[k] > (UINT64_MAX - d) / 10) return false;
			v[k] = v[k] * 10 + d;
		}
	}
	*index = v[0];
	*term = v[1];
	return true;
}

static void snap_name(char *buf, size_t len, uint64_t index, uint64_t term)
{
	int n = snprintf(buf, len, "snap-%020" PRIu64 "-%020" PRIu64 ".snap", index, term);
	assert(n == (int)SNAP_NAME_BYTES);
	(void)n;
}

static bool newer(uint64_t i1, uint64_t t1, uint64_t i2, uint64_t t2)
{
	return i1 > i2 || (i1 == i2 && t1 > t2);
}

/* Finds the newest snapshot name; deletes tmp files left by other (dead) processes when
 * clean_tmp. Returns 1 if found, 0 if none, or a negative errno. */
static int find_latest(int dir_fd, bool clean_tmp, uint64_t *index, uint64_t *term)
{
	int fd = dup(dir_fd);
	if (fd < 0) return -errno;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	char own_prefix[32];
	snprintf(own_prefix, sizeof own_prefix, "tmp-%ld-", (long)getpid());
	int found = 0;
	struct dirent *de;
	for (uint32_t n = 0; (de = readdir(d)) != NULL; n++) {
		if (n >= SNAP_DIR_ENTRIES_MAX) {
			found = -EUCLEAN;
			break;
		}
		uint64_t i, t;
		if (parse_snap_name(de->d_name, &i, &t)) {
			if (!found || newer(i, t, *index, *term)) {
				*index = i;
				*term = t;
			}
			found = 1;
		} else if (clean_tmp && strncmp(de->d_name, "tmp-", 4) == 0 &&
		           strncmp(de->d_name, own_prefix, strlen(own_prefix)) != 0) {
			(void)unlinkat(dir_fd, de->d_name, 0);
		}
	}
	closedir(d);
	return found;
}

/* Header bytes for meta; returns the header length (48 + config padded). */
static size_t encode_header(uint8_t *h, uint64_t index, uint64_t term, const void *config,
                            uint32_t config_bytes)
{
	memset(h, 0, SNAP_HEADER_BYTES + pad8(config_bytes));
	put_le32(h, SNAP_MAGIC);
	put_le32(h + 4, SNAP_VERSION);
	put_le32(h + 12, config_bytes);
	put_le64(h + 16, index);
	put_le64(h + 24, term);
	if (config_bytes > 0) memcpy(h + SNAP_HEADER_BYTES, config, config_bytes);
	uint32_t crc = crc32c(0, h + 12, SNAP_HEADER_BYTES - 12 + config_bytes);
	put_le32(h + 8, crc);
	return SNAP_HEADER_BYTES + pad8(config_bytes);
}

/* Reads and checks the header (and config) of an open snapshot file. On success meta->index,
 * term, config_bytes, data_offset are set and *config_out is a malloc'ed copy (or NULL). */
static int read_header(int fd, const char *name, raft_snap_meta_t *meta, void **config_out, char *errbuf,
                       size_t errbuf_len)
{
	uint8_t h[SNAP_HEADER_BYTES];
	int rc = pread_full(fd, h, sizeof h, 0);
	if (rc < 0) {
		set_err(errbuf, errbuf_len, "snapshot %s: cannot read header: %s", name, strerror(-rc));
		return rc;
	}
	uint32_t config_bytes = get_le32(h + 12);
	if (get_le32(h) != SNAP_MAGIC || get_le32(h + 4) != SNAP_VERSION ||
	    config_bytes > RAFT_SNAP_CONFIG_BYTES_MAX) {
		set_err(errbuf, errbuf_len, "snapshot %s: bad header (magic, version or config length)",
		        name);
		return -EUCLEAN;
	}
	void *config = NULL;
	if (config_bytes > 0) {
		config = malloc(config_bytes);
		if (config == NULL) return -ENOMEM;
		rc = pread_full(fd, config, config_bytes, SNAP_HEADER_BYTES);
		if (rc < 0) {
			free(config);
			set_err(errbuf, errbuf_len, "snapshot %s: cannot read config: %s", name,
			        strerror(-rc));
			return rc;
		}
	}
	uint32_t crc = crc32c(0, h + 12, SNAP_HEADER_BYTES - 12);
	crc = crc32c(crc, config, config_bytes);
	if (crc != get_le32(h + 8)) {
		free(config);
		set_err(errbuf, errbuf_len, "snapshot %s: header CRC mismatch", name);
		return -EBADMSG;
	}
	meta->index = get_le64(h + 16);
	meta->term = get_le64(h + 24);
	meta->config_bytes = config_bytes;
	meta->data_offset = SNAP_HEADER_BYTES + pad8(config_bytes);
	*config_out = config;
	return 0;
}

/* Checks header, trailer and whole-file CRC of an open snapshot file; fills meta. */
static int verify_file(int fd, const char *name, raft_snap_meta_t *meta, void **config_out, char *errbuf,
                       size_t errbuf_len)
{
	struct stat st;
	if (fstat(fd, &st) < 0) return -errno;
	uint64_t size = (uint64_t)st.st_size;
	if (size > RAFT_SNAP_BYTES_MAX) {
		set_err(errbuf, errbuf_len, "snapshot %s: %" PRIu64 " bytes, over the limit", name, size);
		return -EFBIG;
	}
	if (size < SNAP_HEADER_BYTES + SNAP_TRAILER_BYTES) {
		set_err(errbuf, errbuf_len, "snapshot %s: truncated (%" PRIu64 " bytes)", name, size);
		return -EUCLEAN;
	}
	void *config = NULL;
	int rc = read_header(fd, name, meta, &config, errbuf, errbuf_len);
	if (rc < 0) return rc;
	uint8_t t[SNAP_TRAILER_BYTES];
	uint64_t trailer_off = size - SNAP_TRAILER_BYTES;
	rc = pread_full(fd, t, sizeof t, trailer_off);
	if (rc == 0 &&
	    (get_le32(t) != SNAP_END_MAGIC || get_le64(t + 16) != size || trailer_off < meta->data_offset ||
	     get_le64(t + 8) != trailer_off - meta->data_offset)) {
		set_err(errbuf, errbuf_len, "snapshot %s: bad trailer at offset %" PRIu64, name, trailer_off);
		rc = -EUCLEAN;
	}
	uint8_t *buf = rc == 0 ? malloc(SNAP_IO_CHUNK_BYTES) : NULL;
	if (rc == 0 && buf == NULL) rc = -ENOMEM;
	uint32_t crc = 0;
	for (uint64_t off = 0; rc == 0 && off < trailer_off;) {
		size_t len = trailer_off - off < SNAP_IO_CHUNK_BYTES ? (size_t)(trailer_off - off)
		                                                     : SNAP_IO_CHUNK_BYTES;
		rc = pread_full(fd, buf, len, off);
		crc = crc32c(crc, buf, len);
		off += len;
	}
	free(buf);
	if (rc == 0 && crc != get_le32(t + 4)) {
		set_err(errbuf, errbuf_len, "snapshot %s: file CRC mismatch", name);
		rc = -EBADMSG;
	}
	if (rc < 0) {
		free(config);
		return rc;
	}
	meta->data_bytes = trailer_off - meta->data_offset;
	meta->file_bytes = size;
	meta->config = config;
	*config_out = config;
	return 0;
}

static int writer_new(const char *dir, bool receiving, raft_snap_writer_t **out)
{
	raft_snap_writer_t *w = calloc(1, sizeof *w);
	if (w == NULL) return -ENOMEM;
	w->fd = -1;
	w->receiving = receiving;
	w->dir_fd = open_snap_dir(dir, true);
	if (w->dir_fd < 0) {
		int rc = w->dir_fd;
		free(w);
		return rc;
	}
	/* Unique within the process (the writer's address) and across processes (the pid). */
	snprintf(w->tmp_name, sizeof w->tmp_name, "tmp-%ld-%" PRIxPTR ".snap", (long)getpid(), (uintptr_t)w);
	w->fd = openat(w->dir_fd, w->tmp_name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (w->fd < 0) {
		int rc = -errno;
		close(w->dir_fd);
		free(w);
		return rc;
	}
	*out = w;
	return 0;
}

int raft_snap_create(const char *dir, uint64_t index, uint64_t term, const void *config,
                     uint32_t config_bytes, raft_snap_writer_t **out)
{
	assert(out != NULL);
	if (config_bytes > RAFT_SNAP_CONFIG_BYTES_MAX || (config == NULL && config_bytes > 0)) return -EINVAL;
	raft_snap_writer_t *w = NULL;
	int rc = writer_new(dir, false, &w);
	if (rc != 0) return rc;
	assert(w != NULL);
	size_t hlen = SNAP_HEADER_BYTES + pad8(config_bytes);
	uint8_t *h = malloc(hlen);
	w->config = config_bytes > 0 ? malloc(config_bytes) : NULL;
	if (h == NULL || (config_bytes > 0 && w->config == NULL)) {
		free(h);
		raft_snap_abort(w);
		return -ENOMEM;
	}
	if (config_bytes > 0) memcpy(w->config, config, config_bytes);
	size_t n = encode_header(h, index, term, config, config_bytes);
	assert(n == hlen);
	rc = write_full(w->fd, h, n);
	w->crc = crc32c(0, h, n);
	free(h);
	if (rc < 0) {
		raft_snap_abort(w);
		return rc;
	}
	w->file_off = n;
	w->meta = (raft_snap_meta_t){.index = index,
	                             .term = term,
	                             .config = w->config,
	                             .config_bytes = config_bytes,
	                             .data_offset = n};
	*out = w;
	return 0;
}

int raft_snap_receive(const char *dir, raft_snap_writer_t **out)
{
	assert(out != NULL);
	return writer_new(dir, true, out);
}

int raft_snap_write(raft_snap_writer_t *w, uint64_t offset, const void *buf, size_t len)
{
	assert(w != NULL && w->fd >= 0);
	if (offset != w->bytes || (buf == NULL && len > 0)) return -EINVAL;
	if (len > RAFT_SNAP_BYTES_MAX || w->file_off + len > RAFT_SNAP_BYTES_MAX - SNAP_TRAILER_BYTES)
		return -EFBIG;
	int rc = write_full(w->fd, buf, len);
	if (rc < 0) return rc;
	if (!w->receiving) w->crc = crc32c(w->crc, buf, len);
	w->bytes += len;
	w->file_off += len;
	return 0;
}

uint64_t raft_snap_writer_bytes(const raft_snap_writer_t *w)
{
	assert(w != NULL);
	return w->bytes;
}

/* Deletes snapshots older than (index, term); the directory is fsync'ed by the caller. */
static void delete_older(int dir_fd, uint64_t index, uint64_t term)
{
	int fd = dup(dir_fd);
	if (fd < 0) return;
	DIR *d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return;
	}
	struct dirent *de;
	for (uint32_t n = 0; n < SNAP_DIR_ENTRIES_MAX && (de = readdir(d)) != NULL; n++) {
		uint64_t i, t;
		if (parse_snap_name(de->d_name, &i, &t) && newer(index, term, i, t))
			(void)unlinkat(dir_fd, de->d_name, 0);
	}
	closedir(d);
}

int raft_snap_commit(raft_snap_writer_t *w, raft_snap_meta_t *meta_out, char *errbuf, size_t errbuf_len)
{
	assert(w != NULL && w->fd >= 0);
	int rc = 0;
	if (!w->receiving) {
		uint8_t t[SNAP_TRAILER_BYTES] = {0};
		put_le32(t, SNAP_END_MAGIC);
		put_le32(t + 4, w->crc);
		put_le64(t + 8, w->bytes);
		put_le64(t + 16, w->file_off + SNAP_TRAILER_BYTES);
		rc = write_full(w->fd, t, sizeof t);
		w->file_off += SNAP_TRAILER_BYTES;
		w->meta.data_bytes = w->bytes;
		w->meta.file_bytes = w->file_off;
	}
	if (rc == 0 && fsync(w->fd) < 0) rc = -errno;
	if (rc < 0) set_err(errbuf, errbuf_len, "snapshot %s: write failed: %s", w->tmp_name, strerror(-rc));
	if (rc == 0 && w->receiving) {
		/* Check what is on disk, after the fsync, with the same code a reader uses. */
		int rfd = openat(w->dir_fd, w->tmp_name, O_RDONLY | O_CLOEXEC);
		if (rfd < 0) rc = -errno;
		void *config = NULL;
		if (rc == 0) rc = verify_file(rfd, w->tmp_name, &w->meta, &config, errbuf, errbuf_len);
		if (rfd >= 0) close(rfd);
		free(config);
		w->meta.config = NULL;
	}
	char final[SNAP_NAME_BYTES + 1];
	snap_name(final, sizeof final, w->meta.index, w->meta.term);
	if (rc == 0 && renameat(w->dir_fd, w->tmp_name, w->dir_fd, final) < 0) {
		rc = -errno;
		set_err(errbuf, errbuf_len, "snapshot %s: rename failed: %s", final, strerror(-rc));
	}
	if (rc == 0) {
		delete_older(w->dir_fd, w->meta.index, w->meta.term);
		if (fsync(w->dir_fd) < 0) {
			rc = -errno;
			set_err(errbuf, errbuf_len, "snapshot dir: fsync failed: %s", strerror(-rc));
		}
	}
	if (rc == 0 && meta_out != NULL) {
		*meta_out = w->meta;
		meta_out->config = NULL;
	}
	if (rc < 0) {
		(void)unlinkat(w->dir_fd, w->tmp_name, 0);
	}
	close(w->fd);
	close(w->dir_fd);
	free(w->config);
	free(w);
	return rc;
}

void raft_snap_abort(raft_snap_writer_t *w)
{
	if (w == NULL) return;
	if (w->fd >= 0) close(w->fd);
	(void)unlinkat(w->dir_fd, w->tmp_name, 0);
	close(w->dir_fd);
	free(w->config);
	free(w);
}

int raft_snap_open_latest(const char *dir, raft_snap_reader_t **out, char *errbuf, size_t errbuf_len)
{
	assert(out != NULL);
	int dir_fd = open_snap_dir(dir, false);
	if (dir_fd < 0) {
		set_err(errbuf, errbuf_len, "no snapshot directory in %s", dir ? dir : "(null)");
		return dir_fd;
	}
	uint64_t index = 0, term = 0;
	int found = find_latest(dir_fd, true, &index, &term);
	if (found <= 0) {
		if (found == 0) set_err(errbuf, errbuf_len, "no snapshot in %s/snap", dir);
		close(dir_fd);
		return found == 0 ? -ENOENT : found;
	}
	char name[SNAP_NAME_BYTES + 1];
	snap_name(name, sizeof name, index, term);
	raft_snap_reader_t *r = calloc(1, sizeof *r);
	if (r == NULL) {
		close(dir_fd);
		return -ENOMEM;
	}
	r->fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	int rc = r->fd >= 0 ? 0 : -errno;
	close(dir_fd);
	if (rc == 0) rc = verify_file(r->fd, name, &r->meta, &r->config, errbuf, errbuf_len);
	if (rc == 0 && (r->meta.index != index || r->meta.term != term)) {
		set_err(errbuf, errbuf_len, "snapshot %s: header says index %" PRIu64 " term %" PRIu64, name,
		        r->meta.index, r->meta.term);
		rc = -EUCLEAN;
	}
	if (rc < 0) {
		raft_snap_reader_close(r);
		return rc;
	}
	*out = r;
	return 0;
}

const raft_snap_meta_t *raft_snap_reader_meta(const raft_snap_reader_t *r)
{
	assert(r != NULL);
	return &r->meta;
}

ssize_t raft_snap_read(raft_snap_reader_t *r, uint64_t offset, void *buf, size_t len)
{
	assert(r != NULL && r->fd >= 0);
	if (buf == NULL && len > 0) return -EINVAL;
	if (offset >= r->meta.file_bytes) return 0;
	if (len > r->meta.file_bytes - offset) len = (size_t)(r->meta.file_bytes - offset);
	int rc = pread_full(r->fd, buf, len, offset);
	return rc < 0 ? rc : (ssize_t)len;
}

ssize_t raft_snap_read_data(raft_snap_reader_t *r, uint64_t offset, void *buf, size_t len)
{
	assert(r != NULL);
	if (offset >= r->meta.data_bytes) return 0;
	if (len > r->meta.data_bytes - offset) len = (size_t)(r->meta.data_bytes - offset);
	return raft_snap_read(r, r->meta.data_offset + offset, buf, len);
}

int raft_snap_reader_fd(const raft_snap_reader_t *r)
{
	assert(r != NULL);
	return r->fd;
}

void raft_snap_reader_close(raft_snap_reader_t *r)
{
	if (r == NULL) return;
	if (r->fd >= 0) close(r->fd);
	free(r->config);
	free(r);
}

int raft_snap_peek_latest(const char *dir, uint64_t *index, uint64_t *term, char *errbuf, size_t errbuf_len)
{
	assert(index != NULL && term != NULL);
	*index = 0;
	*term = 0;
	int dir_fd = open_snap_dir(dir, false);
	if (dir_fd == -ENOENT) return 0;
	if (dir_fd < 0) {
		set_err(errbuf, errbuf_len, "%s/snap: %s", dir ? dir : "(null)", strerror(-dir_fd));
		return dir_fd;
	}
	uint64_t i = 0, t = 0;
	int rc = find_latest(dir_fd, true, &i, &t);
	if (rc > 0) {
		char name[SNAP_NAME_BYTES + 1];
		snap_name(name, sizeof name, i, t);
		int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
		raft_snap_meta_t meta = {0};
		void *config = NULL;
		rc = fd >= 0 ? read_header(fd, name, &meta, &config, errbuf, errbuf_len) : -errno;
		free(config);
		if (fd >= 0) close(fd);
		if (rc == 0 && (meta.index != i || meta.term != t)) {
			set_err(errbuf, errbuf_len,
			        "snapshot %s: header says index %" PRIu64 " term %" PRIu64, name, meta.index,
			        meta.term);
			rc = -EUCLEAN;
		}
		if (rc == 0) {
			*index = i;
			*term = t;
		}
	}
	close(dir_fd);
	return rc < 0 ? rc : 0;
}
