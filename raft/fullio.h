/* fullio.h - whole-buffer file reads for the log and snapshot files of this module.
 *
 * pread may return short counts and EINTR; these loops hide both, and treat an end of file
 * before the buffer is full as damage (-EUCLEAN): callers read records they know the size of.
 */
#ifndef METASTORE_RAFT_FULLIO_H
#define METASTORE_RAFT_FULLIO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

/* Reads exactly len bytes at off: 0, -EUCLEAN if the file ends first, or -errno. */
static inline int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = pread(fd, p, len, (off_t)off);
		if (n < 0) {
			if (errno == EINTR) continue;
			return -errno;
		}
		if (n == 0) return -EUCLEAN;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

#endif
