/*
 * Token buckets (src/guard/ep_ratelimit.c) on a clock the test drives: burst,
 * refill, batches costing their size, the answer's figures (RateLimit-*,
 * Retry-After), independent buckets, and the bounded per-address table.
 */
#include "base/ep_error.h"
#include "guard/ep_ratelimit.h"
#include "ep_test.h"

#include <pthread.h>
#include <string.h>

#define S  INT64_C(1000000000)
#define MS INT64_C(1000000)
#define T0 (INT64_C(100000) * S) /* any monotonic start (above 0, as CLOCK_MONOTONIC is) */

static void test_burst_then_refill(void)
{
    ep_rate_t r;
    _Atomic int64_t b = 0;
    ep_rate_result_t res;

    ep_rate_init(&r, 10, 5); /* 10 events/s, 5 at once */
    for (int i = 0; i < 5; i++) {
        EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0, &res), 0);
        EP_ASSERT_EQ(res.limit, 5);
        EP_ASSERT_EQ(res.remaining, 4 - i);
    }
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0, &res), EP_EAGAIN);
    EP_ASSERT_EQ(res.remaining, 0);
    EP_ASSERT_EQ(res.retry_s, 1); /* 100 ms, rounded up to whole seconds */
    EP_ASSERT_EQ(res.reset_s, 1); /* full again 500 ms later */
    /* 99 ms later: still nothing; 100 ms: one token. */
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0 + 99 * MS, NULL), EP_EAGAIN);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0 + 100 * MS, &res), 0);
    EP_ASSERT_EQ(res.remaining, 0);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0 + 100 * MS, NULL), EP_EAGAIN);
    /* An idle second refills the bucket, never above the burst. */
    for (int i = 0; i < 5; i++) {
        EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0 + 10 * S, NULL), 0);
    }
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 1, T0 + 10 * S, NULL), EP_EAGAIN);
}

static void test_batch_costs_its_events(void)
{
    ep_rate_t r;
    _Atomic int64_t b = 0;
    ep_rate_result_t res;

    ep_rate_init(&r, 100, 150);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 100, T0, &res), 0); /* a batch of 100 costs 100 */
    EP_ASSERT_EQ(res.remaining, 50);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 100, T0, &res), EP_EAGAIN); /* 50 left: refused whole */
    EP_ASSERT_EQ(res.remaining, 50);
    EP_ASSERT_EQ(res.retry_s, 1);                        /* 50 more take 0.5 s */
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 50, T0, &res), 0); /* nothing was taken above */
    EP_ASSERT_EQ(res.remaining, 0);
    EP_ASSERT_EQ(res.reset_s, 2); /* 150 tokens: 1.5 s */
    /* More than the burst can never pass: a distinct answer, no Retry-After. */
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 151, T0 + 100 * S, &res), EP_E2BIG);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 150, T0 + 100 * S, &res), 0);
}

static void test_retry_after_is_when_it_fits(void)
{
    ep_rate_t r;
    _Atomic int64_t b = 0;
    ep_rate_result_t res;

    ep_rate_init(&r, 1, 10); /* 1 event/s */
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 10, T0, NULL), 0);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 4, T0, &res), EP_EAGAIN);
    EP_ASSERT_EQ(res.retry_s, 4);
    EP_ASSERT_EQ(res.reset_s, 10);
    /* Waiting what Retry-After said is enough; a moment less is not. */
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 4, T0 + 4 * S - 1, NULL), EP_EAGAIN);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 4, T0 + 4 * S, NULL), 0);
}

static void test_default_burst_is_one_second(void)
{
    ep_rate_t r;

    ep_rate_init(&r, 250, 0);
    EP_ASSERT_EQ(r.burst, 250);
    EP_ASSERT_EQ(r.interval_ns, 4 * MS);
    ep_rate_init(&r, 2000000000, 1); /* faster than 1/ns: one ns per event */
    EP_ASSERT_EQ(r.interval_ns, 1);
}

static void test_buckets_are_independent(void)
{
    ep_rate_t r;
    _Atomic int64_t a = 0, b = 0;

    ep_rate_init(&r, 1, 3);
    EP_ASSERT_EQ(ep_rate_take(&r, &a, 3, T0, NULL), 0);
    EP_ASSERT_EQ(ep_rate_take(&r, &a, 1, T0, NULL), EP_EAGAIN);
    EP_ASSERT_EQ(ep_rate_take(&r, &b, 3, T0, NULL), 0); /* another key: its own bucket */
}

typedef struct {
    ep_rate_t *r;
    _Atomic int64_t *b;
    int taken;
} thr_t;

static void *taker(void *arg)
{
    thr_t *t = arg;

    for (int i = 0; i < 100000; i++) {
        t->taken += ep_rate_take(t->r, t->b, 1, T0, NULL) == 0;
    }
    return NULL;
}

/* Four threads on one bucket at one instant: exactly the burst is taken, never more. */
static void test_concurrent_takers_never_exceed(void)
{
    ep_rate_t r;
    _Atomic int64_t b = 0;
    thr_t t[4];
    pthread_t th[4];
    int sum = 0;

    ep_rate_init(&r, 1000, 5000);
    for (int i = 0; i < 4; i++) {
        t[i] = (thr_t){.r = &r, .b = &b};
        pthread_create(&th[i], NULL, taker, &t[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        sum += t[i].taken;
    }
    EP_ASSERT_EQ(sum, 5000);
}

static void addr_of(uint32_t i, uint8_t a[16])
{
    memset(a, 0, 16);
    a[10] = a[11] = 0xff;
    memcpy(a + 12, &i, 4);
}

static void test_table_per_address(void)
{
    ep_rate_table_t t;
    ep_rate_t r;
    uint8_t a[16], b[16];

    ep_rate_table_init(&t);
    ep_rate_init(&r, 1, 2);
    addr_of(1, a);
    addr_of(2, b);
    EP_ASSERT_EQ(ep_rate_table_take(&t, &r, a, 2, T0, NULL), 0);
    EP_ASSERT_EQ(ep_rate_table_take(&t, &r, a, 1, T0, NULL), EP_EAGAIN);
    EP_ASSERT_EQ(ep_rate_table_take(&t, &r, b, 2, T0, NULL), 0); /* another address */
    EP_ASSERT_EQ(ep_rate_table_take(&t, &r, a, 1, T0 + S, NULL), 0);
    ep_rate_table_close(&t);
}

/*
 * A client with a million addresses: the table keeps its fixed size. Addresses
 * whose buckets are full again are forgotten first (nothing lost), so a client
 * that is being limited stays limited; only a table full of busy buckets makes
 * one go, and the counter shows that.
 */
static void test_table_is_bounded(void)
{
    ep_rate_table_t t;
    ep_rate_t r;
    uint8_t a[16], victim[16];
    int refused = 0;

    ep_rate_table_init(&t);
    ep_rate_init(&r, 1, 1);
    addr_of(0xdeadbeef, victim);
    EP_ASSERT_EQ(ep_rate_table_take(&t, &r, victim, 1, T0, NULL), 0);
    /* Idle addresses (full buckets) are forgotten first: they are the same as none. */
    for (uint32_t i = 0; i < 1000000; i++) {
        addr_of(i, a); /* one new address every 2 ms, over the 2000 s before T0 */
        EP_ASSERT_EQ(ep_rate_table_take(&t, &r, a, 1, T0 - 2000 * S + (int64_t)i * 2 * MS, NULL),
                     0);
    }
    /* The victim's empty bucket survived them: it is still limited. */
    EP_ASSERT_EQ(ep_rate_table_take(&t, &r, victim, 1, T0, NULL), EP_EAGAIN);
    EP_ASSERT_EQ(atomic_load(&t.replaced_busy), 0);
    /* A million busy addresses at once: the table is full, busy entries are replaced. */
    for (uint32_t i = 0; i < 1000000; i++) {
        addr_of(i + 2000000, a);
        refused += ep_rate_table_take(&t, &r, a, 1, T0, NULL) != 0;
    }
    EP_ASSERT_EQ(refused, 0);
    EP_ASSERT(atomic_load(&t.replaced_busy) > 900000);
    ep_rate_table_close(&t);
}

EP_TEST_LIST = {EP_TEST(test_burst_then_refill),
                EP_TEST(test_batch_costs_its_events),
                EP_TEST(test_retry_after_is_when_it_fits),
                EP_TEST(test_default_burst_is_one_second),
                EP_TEST(test_buckets_are_independent),
                EP_TEST(test_concurrent_takers_never_exceed),
                EP_TEST(test_table_per_address),
                EP_TEST(test_table_is_bounded),
                EP_TEST_END};

EP_TEST_MAIN()
