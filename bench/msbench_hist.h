/* msbench_hist.h - msbench's latency histogram: log-linear buckets in the style of HdrHistogram.
 *
 * msbench never keeps latency samples: every thread records into its own histogram and the
 * report merges them. Values are nanoseconds. Below 2^MSB_HIST_SUB_BITS a value has its own
 * bucket (exact); above, each power of two is cut into 2^MSB_HIST_SUB_BITS equal buckets, so a
 * bucket is at most 1/128 (0.78%) of its values wide and the midpoint reported for a quantile is
 * within 0.4% of any value in it. Values at or above 2^MSB_HIST_EXP_MAX ns (about 18 minutes)
 * are clamped into the last bucket (max stays exact). Fixed size, no allocation: 34 KiB.
 */
#ifndef METASTORE_MSBENCH_HIST_H
#define METASTORE_MSBENCH_HIST_H

#include <stdint.h>

#define MSB_HIST_SUB_BITS 7u
#define MSB_HIST_SUB_COUNT (1u << MSB_HIST_SUB_BITS)
#define MSB_HIST_EXP_MAX 40u
#define MSB_HIST_BUCKETS ((MSB_HIST_EXP_MAX - MSB_HIST_SUB_BITS + 1u) * MSB_HIST_SUB_COUNT)

typedef struct msb_hist {
	uint64_t count;
	uint64_t sum_ns; /* for the mean; 2^64 ns is 584 years */
	uint64_t min_ns; /* UINT64_MAX while empty */
	uint64_t max_ns;
	uint64_t buckets[MSB_HIST_BUCKETS];
} msb_hist_t;

void msb_hist_init(msb_hist_t *h);
void msb_hist_record(msb_hist_t *h, uint64_t value_ns);
/* Adds every value of src to dst. */
void msb_hist_merge(msb_hist_t *dst, const msb_hist_t *src);
/* The value at quantile q (0 < q <= 1): the midpoint of the bucket holding the ceil(q * count)-th
 * smallest value, clamped to [min, max]; the exact max for the last rank. 0 for an empty
 * histogram. */
uint64_t msb_hist_quantile_ns(const msb_hist_t *h, double q);
/* 0 for an empty histogram. */
double msb_hist_mean_ns(const msb_hist_t *h);

/* Exposed for the self-test: the bucket of a value and a bucket's [low, low + width) range. */
uint32_t msb_hist_bucket(uint64_t value_ns);
uint64_t msb_hist_bucket_low_ns(uint32_t bucket);
uint64_t msb_hist_bucket_width_ns(uint32_t bucket);

#endif
