/*
 * HyperLogLog: accuracy at 100,000 distinct values, small-range exactness,
 * merge, serialisation round trips and rejection of malformed input.
 */
#include "analytics/ep_hll.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "ep_test.h"

#include <math.h>
#include <stdio.h>

static void add_users(ep_hll_t *h, int from, int to)
{
    char id[32];

    for (int i = from; i < to; i++) {
        int n = snprintf(id, sizeof(id), "user_%d", i);
        ep_hll_add(h, id, (size_t)n);
    }
}

static double rel_err(double est, double truth)
{
    return fabs(est - truth) / truth;
}

static void test_hll_100k_within_2pct(void)
{
    ep_hll_t *h = ep_malloc(sizeof(*h));

    ep_hll_init(h);
    add_users(h, 0, 100000);
    /* Adding everything again changes nothing. */
    add_users(h, 0, 100000);
    printf("estimate %.0f for 100000\n", ep_hll_estimate(h));
    EP_ASSERT(rel_err(ep_hll_estimate(h), 100000) < 0.02);
    ep_free(h);
}

static void test_hll_ranges(void)
{
    ep_hll_t *h = ep_malloc(sizeof(*h));
    static const int sizes[] = {1, 10, 50, 1000, 10000, 30000, 60000, 250000, 1000000};
    int done = 0;

    ep_hll_init(h);
    EP_ASSERT(ep_hll_is_empty(h));
    EP_ASSERT_EQ(ep_hll_estimate(h), 0);
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        double est;
        add_users(h, done, sizes[k]);
        done = sizes[k];
        est = ep_hll_estimate(h);
        printf("n=%d estimate %.1f (%.2f%%)\n", done, est, 100 * rel_err(est, done));
        if (done <= 1000) {
            EP_ASSERT(fabs(est - done) <= 0.01 * done + 0.5); /* linear counting: near exact */
        } else {
            EP_ASSERT(rel_err(est, done) < 0.03); /* about 3.7 standard errors */
        }
    }
    ep_free(h);
}

static void test_hll_merge_halves(void)
{
    ep_hll_t *a = ep_malloc(sizeof(*a)), *b = ep_malloc(sizeof(*b)), *w = ep_malloc(sizeof(*w));

    ep_hll_init(a);
    ep_hll_init(b);
    ep_hll_init(w);
    add_users(a, 0, 50000);
    add_users(b, 50000, 100000);
    add_users(w, 0, 100000);
    ep_hll_merge(a, b);
    /* Register-wise max of the halves is exactly the sketch of the whole. */
    EP_ASSERT_STRN_EQ(a->reg, w->reg, EP_HLL_M);
    EP_ASSERT(rel_err(ep_hll_estimate(a), 100000) < 0.02);
    ep_free(a);
    ep_free(b);
    ep_free(w);
}

static void test_hll_serialize_round_trip(void)
{
    ep_hll_t *h = ep_malloc(sizeof(*h)), *g = ep_malloc(sizeof(*g));
    ep_buf_t b = EP_BUF_INIT;
    int counts[] = {0, 40, 100000};

    for (int k = 0; k < 3; k++) {
        ep_hll_init(h);
        ep_hll_init(g);
        add_users(h, 0, counts[k]);
        ep_buf_reset(&b);
        ep_hll_serialize(h, &b);
        EP_ASSERT(b.len <= EP_HLL_SER_MAX);
        if (counts[k] < 1000) {
            EP_ASSERT(b.len < 1000); /* sparse */
        }
        EP_ASSERT_EQ(ep_hll_merge_serialized(g, b.data, b.len), 0);
        EP_ASSERT_STRN_EQ(h->reg, g->reg, EP_HLL_M);
    }
    /* Malformed: truncated, wrong version, wrong precision, bad rank; g unchanged. */
    EP_ASSERT_EQ(ep_hll_merge_serialized(g, b.data, b.len - 1), EP_EPARSE);
    b.data[0] = 9;
    EP_ASSERT_EQ(ep_hll_merge_serialized(g, b.data, b.len), EP_EPARSE);
    b.data[0] = EP_HLL_VERSION;
    b.data[1] = 12;
    EP_ASSERT_EQ(ep_hll_merge_serialized(g, b.data, b.len), EP_EPARSE);
    b.data[1] = EP_HLL_P;
    b.data[10] = 100;
    EP_ASSERT_EQ(ep_hll_merge_serialized(g, b.data, b.len), EP_EPARSE);
    EP_ASSERT_STRN_EQ(h->reg, g->reg, EP_HLL_M);
    ep_buf_close(&b);
    ep_free(h);
    ep_free(g);
}

static void test_hash_spread(void)
{
    /* Bits of the hash of consecutive keys are balanced (a gross check of the mix). */
    int ones[64] = {0};
    char id[16];

    for (int i = 0; i < 20000; i++) {
        int n = snprintf(id, sizeof(id), "%d", i);
        uint64_t h = ep_hash64(id, (size_t)n, 0);
        for (int k = 0; k < 64; k++) {
            ones[k] += (int)((h >> k) & 1);
        }
    }
    for (int k = 0; k < 64; k++) {
        EP_ASSERT(ones[k] > 9500 && ones[k] < 10500);
    }
    EP_ASSERT_NE(ep_hash64("a", 1, 0), ep_hash64("a", 1, 1));
    EP_ASSERT_NE(ep_hash64("abcdefgh", 8, 0), ep_hash64("abcdefgh\0", 9, 0));
}

EP_TEST_LIST = {
    EP_TEST(test_hll_100k_within_2pct), EP_TEST(test_hll_ranges),
    EP_TEST(test_hll_merge_halves),     EP_TEST(test_hll_serialize_round_trip),
    EP_TEST(test_hash_spread),          EP_TEST_END,
};
EP_TEST_MAIN()
