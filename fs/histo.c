/* histo.c - log-linear histogram buckets (see histo.h for the layout and its error bound).
 *
 * Bucket index of v: v itself below SUB (32). Above, with m = floor(log2 v) >= SUB_BITS, the
 * value is shifted right by s = m - SUB_BITS + 1 so that it falls in [SUB/2, SUB); the bucket
 * is SUB + (s - 1) * SUB/2 + (v >> s) - SUB/2. Every bucket of magnitude s is 2^s wide and
 * starts at a value >= 2^(s + SUB_BITS - 1), hence the 1/16 relative error.
 */
#include "histo.h"

#include <assert.h>
#include <string.h>

#define HALF (HISTO_SUB_BUCKETS / 2u)

void histo_init(histo_t *h)
{
	assert(h);
	memset(h, 0, sizeof *h);
	h->min = UINT64_MAX;
}

static uint32_t magnitude(uint64_t v)
{
	assert(v > 0);
	return 63u - (uint32_t)__builtin_clzll(v);
}

uint32_t histo_bucket_of(uint64_t value)
{
	if (value >= HISTO_VALUE_MAX) return HISTO_BUCKETS - 1u;
	if (value < HISTO_SUB_BUCKETS) return (uint32_t)value;
	uint32_t m = magnitude(value);
	assert(m >= HISTO_SUB_BITS && m < HISTO_MAGNITUDE_MAX);
	uint32_t s = m - HISTO_SUB_BITS + 1u;
	uint32_t sub = (uint32_t)(value >> s);
	assert(sub >= HALF && sub < HISTO_SUB_BUCKETS);
	uint32_t b = HISTO_SUB_BUCKETS + (s - 1u) * HALF + (sub - HALF);
	assert(b < HISTO_BUCKETS);
	return b;
}

uint64_t histo_bucket_low(uint32_t bucket)
{
	assert(bucket < HISTO_BUCKETS);
	if (bucket < HISTO_SUB_BUCKETS) return bucket;
	uint32_t s = (bucket - HISTO_SUB_BUCKETS) / HALF + 1u;
	uint64_t sub = HALF + (bucket - HISTO_SUB_BUCKETS) % HALF;
	return sub << s;
}

uint64_t histo_bucket_high(uint32_t bucket)
{
	assert(bucket < HISTO_BUCKETS);
	if (bucket < HISTO_SUB_BUCKETS) return bucket;
	if (bucket == HISTO_BUCKETS - 1u) return UINT64_MAX;
	uint32_t s = (bucket - HISTO_SUB_BUCKETS) / HALF + 1u;
	return histo_bucket_low(bucket) + (1ull << s) - 1u;
}

void histo_record(histo_t *h, uint64_t value)
{
	assert(h);
	h->buckets[histo_bucket_of(value)]++;
	h->count++;
	h->sum = (h->sum > UINT64_MAX - value) ? UINT64_MAX : h->sum + value;
	if (value < h->min) h->min = value;
	if (value > h->max) h->max = value;
}

uint64_t histo_quantile(const histo_t *h, double q)
{
	assert(h);
	assert(q >= 0.0 && q <= 1.0);
	if (h->count == 0) return 0;
	double r = q * (double)h->count;
	uint64_t rank = (uint64_t)r;
	if ((double)rank < r) rank++;
	if (rank == 0) rank = 1;
	uint64_t seen = 0;
	for (uint32_t b = 0; b < HISTO_BUCKETS; b++) {
		seen += h->buckets[b];
		if (seen >= rank) {
			uint64_t v = histo_bucket_high(b);
			if (v > h->max) v = h->max;
			if (v < h->min) v = h->min;
			return v;
		}
	}
	assert(0 && "bucket counts disagree with count");
	return h->max;
}

void histo_merge(histo_t *dst, const histo_t *src)
{
	assert(dst && src);
	for (uint32_t b = 0; b < HISTO_BUCKETS; b++)
		dst->buckets[b] += src->buckets[b];
	dst->count += src->count;
	dst->sum = (dst->sum > UINT64_MAX - src->sum) ? UINT64_MAX : dst->sum + src->sum;
	if (src->min < dst->min) dst->min = src->min;
	if (src->max > dst->max) dst->max = src->max;
}
