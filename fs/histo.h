/* histo.h - a log-linear latency histogram (HdrHistogram's bucket layout, our own code).
 *
 * metastored keeps one per FUSE operation type and one for commits, and prints p50/p99/p999 in
 * /.metastore/status. Values are unsigned 64-bit (nanoseconds in practice). Values below
 * HISTO_SUB_BUCKETS are counted exactly; above, every power of two is split into
 * HISTO_SUB_BUCKETS/2 equal buckets, so a reported percentile is within 1/16 (6.25%) of the true
 * value. Values at or above HISTO_VALUE_MAX (2^40 ns, about 18 minutes) land in the last bucket.
 * A histogram is a fixed-size struct (no allocation): recording is O(1), a percentile O(buckets).
 * Not thread-safe: the loop thread owns every histogram.
 */
#ifndef METASTORE_FS_HISTO_H
#define METASTORE_FS_HISTO_H

#include <stdint.h>

#define HISTO_SUB_BITS 5u
#define HISTO_SUB_BUCKETS (1u << HISTO_SUB_BITS) /* 32: exact below this */
#define HISTO_MAGNITUDE_MAX 40u                  /* values < 2^40 are bucketed exactly */
#define HISTO_VALUE_MAX (1ull << HISTO_MAGNITUDE_MAX)
#define HISTO_BUCKETS (HISTO_SUB_BUCKETS + (HISTO_MAGNITUDE_MAX - HISTO_SUB_BITS) * (HISTO_SUB_BUCKETS / 2u))

typedef struct histo {
	uint64_t count;
	uint64_t sum; /* saturates at UINT64_MAX */
	uint64_t min; /* UINT64_MAX while empty */
	uint64_t max;
	uint64_t buckets[HISTO_BUCKETS];
} histo_t;

void histo_init(histo_t *h);
void histo_record(histo_t *h, uint64_t value);

/* Bucket of a value, and the smallest / largest value a bucket holds. */
uint32_t histo_bucket_of(uint64_t value);
uint64_t histo_bucket_low(uint32_t bucket);
uint64_t histo_bucket_high(uint32_t bucket);

/* The value at quantile q (0 <= q <= 1): the highest value of the bucket that holds the
 * ceil(q * count)-th smallest recorded value, clamped to [min, max]. 0 for an empty histogram. */
uint64_t histo_quantile(const histo_t *h, double q);

/* Adds every count of src into dst. */
void histo_merge(histo_t *dst, const histo_t *src);

#endif
