/* msbench_hist.c - the log-linear latency histogram of msbench (see msbench_hist.h).
 *
 * Bucket b < 128 holds the value b. Above, group g = b / 128 (>= 1) covers [2^(g+6), 2^(g+7))
 * in 128 buckets of width 2^(g-1): the bucket index is the value's top 8 significant bits
 * shifted into place, found with one count-leading-zeros. Recording is a few instructions and
 * touches one counter; quantiles walk the 4352 buckets once.
 */
#include "msbench_hist.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>

void msb_hist_init(msb_hist_t *h)
{
	assert(h);
	memset(h, 0, sizeof *h);
	h->min_ns = UINT64_MAX;
}

uint32_t msb_hist_bucket(uint64_t value_ns)
{
	if (value_ns < MSB_HIST_SUB_COUNT) return (uint32_t)value_ns;
	uint32_t exp = 63u - (uint32_t)__builtin_clzll(value_ns); /* >= MSB_HIST_SUB_BITS */
	if (exp >= MSB_HIST_EXP_MAX) return MSB_HIST_BUCKETS - 1u;
	uint32_t shift = exp - MSB_HIST_SUB_BITS;
	uint32_t sub = (uint32_t)(value_ns >> shift) & (MSB_HIST_SUB_COUNT - 1u);
	uint32_t bucket = (shift + 1u) * MSB_HIST_SUB_COUNT + sub;
	assert(bucket < MSB_HIST_BUCKETS);
	return bucket;
}

uint64_t msb_hist_bucket_low_ns(uint32_t bucket)
{
	assert(bucket < MSB_HIST_BUCKETS);
	if (bucket < MSB_HIST_SUB_COUNT) return bucket;
	uint32_t group = bucket / MSB_HIST_SUB_COUNT;
	uint64_t sub = bucket % MSB_HIST_SUB_COUNT;
	return (MSB_HIST_SUB_COUNT + sub) << (group - 1u);
}

uint64_t msb_hist_bucket_width_ns(uint32_t bucket)
{
	assert(bucket < MSB_HIST_BUCKETS);
	if (bucket < MSB_HIST_SUB_COUNT) return 1;
	return (uint64_t)1 << (bucket / MSB_HIST_SUB_COUNT - 1u);
}

void msb_hist_record(msb_hist_t *h, uint64_t value_ns)
{
	assert(h);
	h->buckets[msb_hist_bucket(value_ns)]++;
	h->count++;
	h->sum_ns += value_ns;
	if (value_ns < h->min_ns) h->min_ns = value_ns;
	if (value_ns > h->max_ns) h->max_ns = value_ns;
}

void msb_hist_merge(msb_hist_t *dst, const msb_hist_t *src)
{
	assert(dst && src && dst != src);
	for (uint32_t b = 0; b < MSB_HIST_BUCKETS; b++)
		dst->buckets[b] += src->buckets[b];
	dst->count += src->count;
	dst->sum_ns += src->sum_ns;
	if (src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
	if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
}

uint64_t msb_hist_quantile_ns(const msb_hist_t *h, double q)
{
	assert(h);
	assert(q > 0.0 && q <= 1.0);
	if (h->count == 0) return 0;
	double want = q * (double)h->count;
	uint64_t rank = (uint64_t)want;
	if ((double)rank < want) rank++;
	if (rank < 1) rank = 1;
	if (rank >= h->count) return h->max_ns; /* exact, unlike a bucket's midpoint */
	uint64_t seen = 0;
	for (uint32_t b = 0; b < MSB_HIST_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen < rank) continue;
		uint64_t mid = msb_hist_bucket_low_ns(b) + msb_hist_bucket_width_ns(b) / 2u;
		if (mid < h->min_ns) mid = h->min_ns;
		if (mid > h->max_ns) mid = h->max_ns;
		return mid;
	}
	assert(0 && "bucket counts disagree with count");
	return h->max_ns;
}

double msb_hist_mean_ns(const msb_hist_t *h)
{
	assert(h);
	return h->count ? (double)h->sum_ns / (double)h->count : 0.0;
}
