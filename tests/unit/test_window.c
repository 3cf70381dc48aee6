/*
 * Windows with an explicit clock: rollover out of 1m / 5m / 15m, time series
 * buckets by dimension, merge and serialisation.
 */
#include "analytics/ep_window.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "ep_test.h"

#define T0 1700000000 /* an arbitrary epoch second */

static ep_window_t *new_window(void)
{
    ep_window_t *w = ep_malloc(sizeof(*w));
    ep_window_init(w);
    return w;
}

static void test_window_rollover(void)
{
    ep_window_t *w = new_window();
    int64_t t = T0;

    ep_window_add(w, t, 1, 2, 10);
    EP_ASSERT_EQ(ep_window_sum(w, t, 60), 10);
    /* Still inside the last minute 59 s later, out of it at 60 s. */
    EP_ASSERT_EQ(ep_window_sum(w, t + 59, 60), 10);
    EP_ASSERT_EQ(ep_window_sum(w, t + 60, 60), 0);
    EP_ASSERT_EQ(ep_window_sum(w, t + 299, 300), 10);
    EP_ASSERT_EQ(ep_window_sum(w, t + 300, 300), 0);
    EP_ASSERT_EQ(ep_window_sum(w, t + 899, 900), 10);
    EP_ASSERT_EQ(ep_window_sum(w, t + 900, 900), 0);

    /* Time moves on: the ring comes round and the old slot is reused for a new second. */
    ep_window_add(w, t + 1, 1, 2, 5);
    ep_window_add(w, t + EP_WINDOW_SECONDS, 1, 2, 3);
    EP_ASSERT_EQ(ep_window_sum(w, t + EP_WINDOW_SECONDS, 60), 3);
    EP_ASSERT_EQ(ep_window_sum(w, t + EP_WINDOW_SECONDS, 900), 3);
    /* A late add for a second whose slot was reused is dropped from the window. */
    ep_window_add(w, t, 1, 2, 100);
    EP_ASSERT_EQ(ep_window_sum(w, t + EP_WINDOW_SECONDS, EP_WINDOW_SECONDS), 3 + 5);
    ep_free(w);
}

static void test_window_rates_over_time(void)
{
    ep_window_t *w = new_window();

    /* One event per second for 20 minutes: the 1m/5m/15m sums are full windows. */
    for (int64_t t = T0; t < T0 + 1200; t++) {
        ep_window_add(w, t, 7, 9, 1);
    }
    EP_ASSERT_EQ(ep_window_sum(w, T0 + 1199, 60), 60);
    EP_ASSERT_EQ(ep_window_sum(w, T0 + 1199, 300), 300);
    EP_ASSERT_EQ(ep_window_sum(w, T0 + 1199, 900), 900);
    /* Two minutes of silence. */
    EP_ASSERT_EQ(ep_window_sum(w, T0 + 1319, 60), 0);
    EP_ASSERT_EQ(ep_window_sum(w, T0 + 1319, 300), 180);
    ep_free(w);
}

static void test_window_series(void)
{
    ep_window_t *w = new_window();
    int64_t base = (T0 / 60) * 60, first;
    uint64_t out[360], keys[8];
    int n, other;
    uint64_t type_a = 0x1000, type_b = 0x2000, src = 0x3000;

    EP_ASSERT_EQ(ep_window_series_check(300, 10), 30);
    EP_ASSERT_EQ(ep_window_series_check(3600, 60), 60);
    EP_ASSERT_EQ(ep_window_series_check(60, 1), 60);
    EP_ASSERT_EQ(ep_window_series_check(3600, 10), EP_EINVAL); /* seconds ring is 17 min */
    EP_ASSERT_EQ(ep_window_series_check(300, 7), EP_EINVAL);
    EP_ASSERT_EQ(ep_window_series_check(0, 1), EP_EINVAL);

    /* Second s of [base, base+300) gets s % 10 + 1 events of type a, one of type b every 60 s. */
    for (int s = 0; s < 300; s++) {
        ep_window_add(w, base + s, type_a, src, (uint64_t)(s % 10 + 1));
        if (s % 60 == 0) {
            ep_window_add(w, base + s, type_b, src, 1);
        }
    }
    n = ep_window_series(w, base + 299, 300, 10, EP_WINDOW_DIM_TOTAL, 0, out, &first);
    EP_ASSERT_EQ(n, 30);
    EP_ASSERT_EQ(first, base);
    for (int i = 0; i < 30; i++) {
        EP_ASSERT_EQ(out[i], 55 + (i % 6 == 0 ? 1 : 0));
    }
    n = ep_window_series(w, base + 299, 300, 10, EP_WINDOW_DIM_TYPE,
                         ep_window_key(type_b, EP_WINDOW_DIM_TYPE), out, &first);
    EP_ASSERT_EQ(n, 30);
    EP_ASSERT_EQ(out[0], 1);
    EP_ASSERT_EQ(out[1], 0);
    EP_ASSERT_EQ(out[6], 1);
    /* Per-minute buckets over the last hour: the 5 minutes written, then nothing. */
    n = ep_window_series(w, base + 299, 3600, 60, EP_WINDOW_DIM_SOURCE,
                         ep_window_key(src, EP_WINDOW_DIM_SOURCE), out, &first);
    EP_ASSERT_EQ(n, 60);
    EP_ASSERT_EQ(first, base + 240 - 3540);
    EP_ASSERT_EQ(out[55], 6 * 55 + 1);
    EP_ASSERT_EQ(out[59], 6 * 55 + 1);
    EP_ASSERT_EQ(out[54], 0);
    /* Keys of a dimension in range. */
    n = ep_window_keys(w, base + 299, 300, 10, EP_WINDOW_DIM_TYPE, keys, 8, &other);
    EP_ASSERT_EQ(n, 2);
    EP_ASSERT_EQ(other, 0);
    /* One minute later the first 10 s bucket of a 5m series has rolled out. */
    n = ep_window_series(w, base + 359, 300, 10, EP_WINDOW_DIM_TOTAL, 0, out, &first);
    EP_ASSERT_EQ(first, base + 60);
    EP_ASSERT_EQ(out[23], 55);
    EP_ASSERT_EQ(out[24], 0);
    ep_free(w);
}

static void test_window_key_overflow(void)
{
    ep_window_t *w = new_window();
    uint64_t out[1];
    int64_t first;

    /* More distinct types in one second than a slot holds: the rest is "other". */
    for (uint64_t k = 1; k <= 40; k++) {
        ep_window_add(w, T0, k << 8, 0x5000, 1);
    }
    EP_ASSERT_EQ(ep_window_sum(w, T0, 1), 40);
    ep_window_series(w, T0, 1, 1, EP_WINDOW_DIM_TYPE, EP_WINDOW_KEY_OTHER, out, &first);
    EP_ASSERT_EQ(out[0], 40 - (EP_WINDOW_SLOT_KEYS - 1));
    ep_free(w);
}

static void test_window_merge_and_serialize(void)
{
    ep_window_t *a = new_window(), *b = new_window(), *whole = new_window(), *r = new_window();
    ep_buf_t buf = EP_BUF_INIT;
    uint64_t x[90], y[90];
    int64_t f1, f2;

    for (int s = 0; s < 900; s++) {
        ep_window_add(s % 3 ? a : b, T0 + s, 0x100 * (uint64_t)(s % 4 + 1), 0x9000, 2);
        ep_window_add(whole, T0 + s, 0x100 * (uint64_t)(s % 4 + 1), 0x9000, 2);
    }
    ep_window_merge(a, b);
    EP_ASSERT_EQ(ep_window_sum(a, T0 + 899, 900), 1800);
    ep_window_series(a, T0 + 899, 900, 10, EP_WINDOW_DIM_TYPE, ep_window_key(0x300, 1), x, &f1);
    ep_window_series(whole, T0 + 899, 900, 10, EP_WINDOW_DIM_TYPE, ep_window_key(0x300, 1), y, &f2);
    EP_ASSERT_EQ(memcmp(x, y, sizeof(x)), 0);

    ep_window_serialize(whole, &buf);
    EP_ASSERT_EQ(ep_window_merge_serialized(r, buf.data, buf.len), 0);
    ep_window_series(r, T0 + 899, 900, 10, EP_WINDOW_DIM_TYPE, ep_window_key(0x300, 1), x, &f1);
    EP_ASSERT_EQ(memcmp(x, y, sizeof(x)), 0);
    EP_ASSERT_EQ(ep_window_sum(r, T0 + 899, 900), 1800);
    EP_ASSERT_EQ(ep_window_merge_serialized(r, buf.data, buf.len - 3), EP_EPARSE);
    EP_ASSERT_EQ(ep_window_sum(r, T0 + 899, 900), 1800);
    EP_ASSERT(!ep_window_is_empty(r));
    ep_buf_close(&buf);
    ep_free(a);
    ep_free(b);
    ep_free(whole);
    ep_free(r);
}

EP_TEST_LIST = {
    EP_TEST(test_window_rollover),
    EP_TEST(test_window_rates_over_time),
    EP_TEST(test_window_series),
    EP_TEST(test_window_key_overflow),
    EP_TEST(test_window_merge_and_serialize),
    EP_TEST_END,
};
EP_TEST_MAIN()
