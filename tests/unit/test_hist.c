/*
 * Log-linear histogram: bucket geometry, percentiles within the stated error
 * on known distributions, merge and serialisation.
 */
#include "analytics/ep_hist.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "ep_test.h"

#include <math.h>
#include <stdio.h>

static void assert_close(uint64_t got, double truth)
{
    double err = fabs((double)got - truth) / truth;
    if (err > EP_HIST_REL_ERR + 1e-9) {
        EP__FAIL("got %llu, expected %.1f (error %.4f > %.4f)", (unsigned long long)got, truth, err,
                 EP_HIST_REL_ERR);
    }
}

static void test_hist_buckets(void)
{
    uint64_t lo, hi, prev_hi = 0;

    for (uint64_t v = 0; v < 64; v++) {
        EP_ASSERT_EQ(ep_hist_index(v), v);
    }
    /* Buckets tile [0, 2^32) without gaps, each at most 1/64 of its lower bound wide. */
    for (uint32_t i = 0; i < EP_HIST_BUCKETS; i++) {
        ep_hist_bucket_range(i, &lo, &hi);
        if (i > 0) {
            EP_ASSERT_EQ(lo, prev_hi + 1);
        }
        if (lo >= 64) {
            EP_ASSERT((hi - lo + 1) * 64 <= lo);
        }
        EP_ASSERT_EQ(ep_hist_index(lo), i);
        EP_ASSERT_EQ(ep_hist_index(hi), i);
        prev_hi = hi;
    }
    EP_ASSERT_EQ(prev_hi, EP_HIST_MAX);
    EP_ASSERT_EQ(ep_hist_index(UINT64_MAX), EP_HIST_BUCKETS - 1);
}

static void test_hist_uniform(void)
{
    ep_hist_t *h = ep_malloc(sizeof(*h));

    ep_hist_init(h);
    EP_ASSERT_EQ(ep_hist_percentile(h, 0.5), 0);
    for (uint64_t v = 1; v <= 100000; v++) {
        ep_hist_record(h, v);
    }
    assert_close(ep_hist_percentile(h, 0.50), 50000);
    assert_close(ep_hist_percentile(h, 0.95), 95000);
    assert_close(ep_hist_percentile(h, 0.99), 99000);
    EP_ASSERT_EQ(ep_hist_percentile(h, 1.0), 100000);
    EP_ASSERT_EQ(ep_hist_percentile(h, 0.0), 1);
    EP_ASSERT(fabs(ep_hist_mean(h) - 50000.5) < 1e-6);
    ep_free(h);
}

static void test_hist_exponential_and_small(void)
{
    ep_hist_t *h = ep_malloc(sizeof(*h));
    uint64_t *vals = ep_malloc(sizeof(uint64_t) * 20000);
    uint64_t x = 88172645463325252ull;

    /* Exponential with mean 5 ms, from a fixed xorshift sequence; truth = sorted order statistic.
     */
    ep_hist_init(h);
    for (int i = 0; i < 20000; i++) {
        double u;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        u = ((double)(x >> 11) + 0.5) / 9007199254740992.0;
        vals[i] = (uint64_t)(-log(u) * 5000.0);
        ep_hist_record(h, vals[i]);
    }
    for (int i = 1; i < 20000; i++) {
        uint64_t v = vals[i];
        int j = i;
        while (j > 0 && vals[j - 1] > v) {
            vals[j] = vals[j - 1];
            j--;
        }
        vals[j] = v;
    }
    assert_close(ep_hist_percentile(h, 0.50), (double)vals[9999]);
    assert_close(ep_hist_percentile(h, 0.95), (double)vals[18999]);
    assert_close(ep_hist_percentile(h, 0.99), (double)vals[19799]);
    printf("p50 %llu (true %llu) p99 %llu (true %llu)\n",
           (unsigned long long)ep_hist_percentile(h, 0.5), (unsigned long long)vals[9999],
           (unsigned long long)ep_hist_percentile(h, 0.99), (unsigned long long)vals[19799]);

    /* Small values are exact; huge ones are clamped and counted. */
    ep_hist_init(h);
    for (int i = 0; i < 10; i++) {
        ep_hist_record(h, 7);
    }
    ep_hist_record(h, 1ull << 40);
    EP_ASSERT_EQ(ep_hist_percentile(h, 0.5), 7);
    EP_ASSERT_EQ(h->clamped, 1);
    EP_ASSERT_EQ(ep_hist_percentile(h, 1.0), EP_HIST_MAX);
    ep_free(vals);
    ep_free(h);
}

static void test_hist_merge_and_serialize(void)
{
    ep_hist_t *a = ep_malloc(sizeof(*a)), *b = ep_malloc(sizeof(*b)), *w = ep_malloc(sizeof(*w));
    ep_hist_t *r = ep_malloc(sizeof(*r));
    ep_buf_t buf = EP_BUF_INIT;

    ep_hist_init(a);
    ep_hist_init(b);
    ep_hist_init(w);
    ep_hist_init(r);
    for (uint64_t v = 1; v <= 3000000; v += 7) {
        ep_hist_record(v % 2 ? a : b, v);
        ep_hist_record(w, v);
    }
    ep_hist_merge(a, b);
    EP_ASSERT_EQ(memcmp(a, w, sizeof(*a)), 0);

    ep_hist_serialize(w, &buf);
    EP_ASSERT(buf.len < 8000);
    EP_ASSERT_EQ(ep_hist_merge_serialized(r, buf.data, buf.len), 0);
    EP_ASSERT_EQ(memcmp(r, w, sizeof(*r)), 0);
    /* Malformed input leaves the histogram unchanged. */
    EP_ASSERT_EQ(ep_hist_merge_serialized(r, buf.data, buf.len - 1), EP_EPARSE);
    buf.data[1] ^= 0x01; /* count no longer matches the buckets */
    EP_ASSERT_EQ(ep_hist_merge_serialized(r, buf.data, buf.len), EP_EPARSE);
    EP_ASSERT_EQ(memcmp(r, w, sizeof(*r)), 0);
    ep_buf_close(&buf);
    ep_free(a);
    ep_free(b);
    ep_free(w);
    ep_free(r);
}

EP_TEST_LIST = {
    EP_TEST(test_hist_buckets),
    EP_TEST(test_hist_uniform),
    EP_TEST(test_hist_exponential_and_small),
    EP_TEST(test_hist_merge_and_serialize),
    EP_TEST_END,
};
EP_TEST_MAIN()
