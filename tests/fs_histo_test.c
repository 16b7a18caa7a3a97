/* fs_histo_test.c - unit tests of fs/histo: the log-linear latency histogram.
 *
 * Bucket layout (exact below 32, contiguous non-overlapping buckets, every value inside its
 * bucket, the documented 1/16 relative width), quantiles against exact answers computed from
 * sorted samples (uniform, skewed and a two-mode distribution), edge cases (empty, one value,
 * zero, values past HISTO_VALUE_MAX, sum saturation) and merging.
 */
#include "histo.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

START_TEST(exact_below_sub_buckets)
{
	for (uint64_t v = 0; v < HISTO_SUB_BUCKETS; v++) {
		uint32_t b = histo_bucket_of(v);
		ck_assert_uint_eq(b, v);
		ck_assert_uint_eq(histo_bucket_low(b), v);
		ck_assert_uint_eq(histo_bucket_high(b), v);
	}
}
END_TEST

START_TEST(buckets_tile_the_range)
{
	/* consecutive buckets are adjacent: high(b) + 1 == low(b + 1) */
	for (uint32_t b = 0; b + 1 < HISTO_BUCKETS; b++) {
		ck_assert_uint_eq(histo_bucket_high(b) + 1, histo_bucket_low(b + 1));
		ck_assert_uint_eq(histo_bucket_of(histo_bucket_low(b)), b);
		ck_assert_uint_eq(histo_bucket_of(histo_bucket_high(b)), b);
	}
	ck_assert_uint_eq(histo_bucket_high(HISTO_BUCKETS - 1), UINT64_MAX);
	ck_assert_uint_eq(histo_bucket_of(HISTO_VALUE_MAX - 1), HISTO_BUCKETS - 1);
	ck_assert_uint_eq(histo_bucket_of(HISTO_VALUE_MAX), HISTO_BUCKETS - 1);
	ck_assert_uint_eq(histo_bucket_of(UINT64_MAX), HISTO_BUCKETS - 1);
}
END_TEST

START_TEST(relative_width_bound)
{
	/* every bucket below the overflow one is at most 1/16 of its low end wide */
	for (uint32_t b = HISTO_SUB_BUCKETS; b + 1 < HISTO_BUCKETS; b++) {
		uint64_t lo = histo_bucket_low(b), hi = histo_bucket_high(b);
		ck_assert_uint_ge(hi, lo);
		ck_assert_msg((hi - lo + 1) * 16 <= lo, "bucket %u [%llu, %llu] too wide", b,
		              (unsigned long long)lo, (unsigned long long)hi);
	}
	/* spot values land inside their bucket */
	uint64_t x = 12345;
	for (int i = 0; i < 2000; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		uint64_t v = x >> (24 + (x & 15));
		uint32_t b = histo_bucket_of(v);
		ck_assert_uint_le(histo_bucket_low(b), v);
		ck_assert_uint_ge(histo_bucket_high(b), v);
	}
}
END_TEST

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* the histogram's quantile is >= the exact one and within 1/16 above it */
static void check_quantiles(uint64_t *v, size_t n)
{
	histo_t h;
	histo_init(&h);
	for (size_t i = 0; i < n; i++)
		histo_record(&h, v[i]);
	qsort(v, n, sizeof *v, cmp_u64);
	const double qs[] = {0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0};
	for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
		size_t rank = (size_t)(qs[i] * (double)n);
		if ((double)rank < qs[i] * (double)n) rank++;
		if (rank == 0) rank = 1;
		uint64_t exact = v[rank - 1];
		uint64_t got = histo_quantile(&h, qs[i]);
		ck_assert_msg(got >= exact && (got - exact) * 16 <= exact + 16, "q=%.3f exact %llu got %llu",
		              qs[i], (unsigned long long)exact, (unsigned long long)got);
	}
	ck_assert_uint_eq(histo_quantile(&h, 1.0), v[n - 1]);
	ck_assert_uint_eq(h.count, n);
	ck_assert_uint_eq(h.min, v[0]);
	ck_assert_uint_eq(h.max, v[n - 1]);
}

START_TEST(quantiles_match_exact)
{
	enum { N = 20000 };
	uint64_t *v = malloc(N * sizeof *v);
	uint64_t x = 99;
	for (size_t i = 0; i < N; i++)
		v[i] = i + 1; /* uniform */
	check_quantiles(v, N);
	for (size_t i = 0; i < N; i++) { /* skewed: exponent spread */
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		v[i] = (x >> 40) >> (x & 15);
	}
	check_quantiles(v, N);
	for (size_t i = 0; i < N; i++)
		v[i] = (i % 100 == 0) ? 5000000 : 20000 + (i % 7); /* two modes */
	check_quantiles(v, N);
	free(v);
}
END_TEST

START_TEST(edges)
{
	histo_t h;
	histo_init(&h);
	ck_assert_uint_eq(histo_quantile(&h, 0.5), 0);
	ck_assert_uint_eq(h.min, UINT64_MAX);
	histo_record(&h, 0);
	ck_assert_uint_eq(histo_quantile(&h, 0.5), 0);
	histo_init(&h);
	histo_record(&h, 1000);
	ck_assert_uint_eq(histo_quantile(&h, 0.0), 1000); /* clamped to min/max */
	ck_assert_uint_eq(histo_quantile(&h, 0.999), 1000);
	histo_record(&h, UINT64_MAX);
	ck_assert_uint_eq(h.sum, UINT64_MAX); /* saturates */
	ck_assert_uint_eq(histo_quantile(&h, 1.0), UINT64_MAX);
	ck_assert_uint_eq(histo_quantile(&h, 0.5), histo_bucket_high(histo_bucket_of(1000))); /* 1023 */
}
END_TEST

START_TEST(merge_adds)
{
	histo_t a, b, all;
	histo_init(&a);
	histo_init(&b);
	histo_init(&all);
	for (uint64_t i = 1; i <= 1000; i++) {
		histo_record(i % 2 ? &a : &b, i * 37);
		histo_record(&all, i * 37);
	}
	histo_merge(&a, &b);
	ck_assert_uint_eq(a.count, all.count);
	ck_assert_uint_eq(a.sum, all.sum);
	ck_assert_uint_eq(a.min, all.min);
	ck_assert_uint_eq(a.max, all.max);
	for (uint32_t i = 0; i < HISTO_BUCKETS; i++)
		ck_assert_uint_eq(a.buckets[i], all.buckets[i]);
	histo_t empty;
	histo_init(&empty);
	histo_merge(&a, &empty);
	ck_assert_uint_eq(a.min, all.min);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("fs_histo");
	TCase *tc = tcase_create("histo");
	tcase_add_test(tc, exact_below_sub_buckets);
	tcase_add_test(tc, buckets_tile_the_range);
	tcase_add_test(tc, relative_width_bound);
	tcase_add_test(tc, quantiles_match_exact);
	tcase_add_test(tc, edges);
	tcase_add_test(tc, merge_adds);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
