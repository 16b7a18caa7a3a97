/* crc32c.h - CRC-32C (Castagnoli), the checksum on every log entry, frame and snapshot chunk.
 *
 * crc32c(0, buf, len) is the CRC of buf; pass a previous result as `crc` to continue it over
 * more bytes. Uses the SSE4.2 crc32 instruction when the CPU has it, a table otherwise.
 */
#ifndef METASTORE_CRC32C_H
#define METASTORE_CRC32C_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

#endif
