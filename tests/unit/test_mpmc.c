/* Tests for the bounded MPMC queue (src/queue/ep_mpmc.c). */
#include "ep_test.h"

#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "queue/ep_mpmc.h"
#include "ep_test_thread.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>

#ifdef EP_TEST_TSAN
#define STRESS_ITEMS 500000
#else
#define STRESS_ITEMS 2000000
#endif
#define STRESS_PRODUCERS 3
#define STRESS_CONSUMERS 3
#define STRESS_CAPACITY  1024

/* Items are small integers disguised as pointers; 0 is never used. */
#define ITEM(v)  ((void *)(uintptr_t)(v))
#define VALUE(p) ((uint64_t)(uintptr_t)(p))

static ep_mpmc_t *make(size_t cap)
{
    ep_mpmc_t *q = NULL;

    EP_ASSERT_EQ(ep_mpmc_create(cap, &q), 0);
    EP_ASSERT(q != NULL);
    return q;
}

static void test_create_invalid(void)
{
    ep_mpmc_t *q = ITEM(1);

    EP_ASSERT_EQ(ep_mpmc_create(0, &q), EP_EINVAL);
    EP_ASSERT(q == NULL);
    EP_ASSERT_EQ(ep_mpmc_create(EP_MPMC_MAX_CAPACITY + 1, &q), EP_EINVAL);
    ep_mpmc_destroy(NULL);
}

static void test_capacity_exact_1000(void)
{
    ep_mpmc_t *q = make(1000);
    void *out[16];

    EP_ASSERT_EQ(ep_mpmc_capacity(q), 1000);
    for (uint64_t i = 1; i <= 1000; i++) {
        void *it = ITEM(i);
        EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), 0);
    }
    EP_ASSERT_EQ(ep_mpmc_size(q), 1000);
    {
        void *it = ITEM(1001);
        EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), EP_EFULL);
    }
    EP_ASSERT_EQ(ep_mpmc_size(q), 1000);
    /* One out, one in, and full again. */
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 1, 0), 1);
    EP_ASSERT_EQ(VALUE(out[0]), 1);
    {
        void *it = ITEM(1001);
        EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), 0);
        EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), EP_EFULL);
    }
    ep_mpmc_destroy(q);
}

static void test_capacity_one(void)
{
    ep_mpmc_t *q = make(1);
    void *a = ITEM(7), *b = ITEM(8), *out[2];

    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &a, 1), 0);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &b, 1), EP_EFULL);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 0), 1);
    EP_ASSERT_EQ(VALUE(out[0]), 7);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &b, 1), 0);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 0), 1);
    EP_ASSERT_EQ(VALUE(out[0]), 8);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 0), 0);
    ep_mpmc_destroy(q);
}

static void test_batch_all_or_nothing(void)
{
    ep_mpmc_t *q = make(10);
    void *items[11], *out[16];

    for (int i = 0; i < 11; i++) {
        items[i] = ITEM(i + 1);
    }
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 11), EP_EFULL); /* more than capacity */
    EP_ASSERT_EQ(ep_mpmc_size(q), 0);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 6), 0);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items + 6, 5), EP_EFULL); /* 6 + 5 > 10 */
    EP_ASSERT_EQ(ep_mpmc_size(q), 6);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items + 6, 4), 0); /* exactly full */
    EP_ASSERT_EQ(ep_mpmc_size(q), 10);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 0), 0);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 16, 0), 10);
    for (int i = 0; i < 10; i++) {
        EP_ASSERT_EQ(VALUE(out[i]), i + 1);
    }
    ep_mpmc_destroy(q);
}

static void test_fifo_wraparound(void)
{
    ep_mpmc_t *q = make(5); /* ring of 8, bound of 5 */
    uint64_t next_in = 1, next_out = 1;
    void *items[3], *out[4];

    /* Many laps around the ring with uneven batch sizes. */
    for (int round = 0; round < 1000; round++) {
        int n = 1 + round % 3, k;
        for (int i = 0; i < n; i++) {
            items[i] = ITEM(next_in + (uint64_t)i);
        }
        if (ep_mpmc_push_batch(q, items, (size_t)n) == 0) {
            next_in += (uint64_t)n;
        }
        k = ep_mpmc_pop_batch(q, out, (size_t)(1 + round % 4), 0);
        EP_ASSERT(k >= 0);
        for (int i = 0; i < k; i++) {
            EP_ASSERT_EQ(VALUE(out[i]), next_out);
            next_out++;
        }
        EP_ASSERT(ep_mpmc_size(q) <= 5);
    }
    EP_ASSERT_EQ(next_in - next_out, ep_mpmc_size(q));
    ep_mpmc_destroy(q);
}

static void test_pop_timeout(void)
{
    ep_mpmc_t *q = make(4);
    void *out[1];
    int64_t t0, dt;

    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 1, 0), 0);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 0, 100), 0);
    t0 = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 1, 100), 0);
    dt = ep_time_mono_ms() - t0;
    EP_ASSERT(dt >= 95);
    EP_ASSERT(dt < 10000); /* returns after its timeout; a loaded machine may be late */
    ep_mpmc_destroy(q);
}

typedef struct {
    ep_mpmc_t *q;
    int timeout_ms;
    int rc;
    void *item;
    int64_t woke_ms;
    _Atomic long tid;
} blocker_t;

static void *blocker_main(void *arg)
{
    blocker_t *b = arg;

    atomic_store(&b->tid, ep_test_tid());
    b->rc = ep_mpmc_pop_batch(b->q, &b->item, 1, b->timeout_ms);
    b->woke_ms = ep_time_mono_ms();
    return NULL;
}

/*
 * Waits until n consumers are idle in a pop of q and the thread of each tid
 * sleeps in futex(2) as want says (EP_TEST_FUTEX_*): asleep, not about to be.
 */
static void wait_asleep_in_pop(ep_mpmc_t *q, size_t n, _Atomic long *const *tids, int want)
{
    int64_t deadline = ep_time_mono_ms() + 30000;

    while (ep_mpmc_idle(q) < n && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT_EQ(ep_mpmc_idle(q), n);
    for (size_t i = 0; i < n; i++) {
        while (atomic_load(tids[i]) == 0 && ep_time_mono_ms() < deadline) {
            ep_time_sleep_ms(1);
        }
        EP_ASSERT(ep_test_wait_futex(atomic_load(tids[i]), want, 30000));
    }
}

static void test_close_wakes_blocked_consumer(void)
{
    ep_mpmc_t *q = make(4);
    blocker_t b[3];
    pthread_t t[3];
    int64_t closed_at;
    void *it = ITEM(5);

    _Atomic long *tids[3];

    for (int i = 0; i < 3; i++) {
        b[i] = (blocker_t){q, i == 0 ? -1 : 60000, 0, NULL, 0, 0};
        tids[i] = &b[i].tid;
        EP_ASSERT_EQ(pthread_create(&t[i], NULL, blocker_main, &b[i]), 0);
    }
    wait_asleep_in_pop(q, 3, tids, EP_TEST_FUTEX_ANY);
    closed_at = ep_time_mono_ms();
    ep_mpmc_close(q);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        EP_ASSERT_EQ(b[i].rc, EP_ECLOSED);
        EP_ASSERT(b[i].woke_ms - closed_at < 10000); /* woken by the close, not the 60 s */
    }
    EP_ASSERT(ep_mpmc_is_closed(q));
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), EP_ECLOSED);
    ep_mpmc_destroy(q);
}

static void test_push_wakes_blocked_consumer(void)
{
    ep_mpmc_t *q = make(4);
    blocker_t b = {q, 60000, 0, NULL, 0, 0};
    _Atomic long *tid = &b.tid;
    pthread_t t;
    int64_t pushed_at;
    void *it = ITEM(42);

    EP_ASSERT_EQ(pthread_create(&t, NULL, blocker_main, &b), 0);
    wait_asleep_in_pop(q, 1, &tid, EP_TEST_FUTEX_ANY);
    pushed_at = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), 0);
    pthread_join(t, NULL);
    EP_ASSERT_EQ(b.rc, 1);
    EP_ASSERT_EQ(VALUE(b.item), 42);
    EP_ASSERT(b.woke_ms - pushed_at < 10000); /* woken by the push, not the 60 s */
    ep_mpmc_destroy(q);
}

/* ------------------------------------------------------------------ linger */

typedef struct {
    ep_mpmc_t *q;
    void *items[8];
    _Atomic int rc;
    _Atomic int64_t woke_ms; /* 0 until the pop returned */
    _Atomic long tid;
} linger_t;

static void *linger_main(void *arg)
{
    linger_t *l = arg;
    int rc;

    atomic_store(&l->tid, ep_test_tid());
    rc = ep_mpmc_pop_batch(l->q, l->items, 8, -1);

    atomic_store(&l->rc, rc);
    atomic_store(&l->woke_ms, ep_time_mono_ms());
    return NULL;
}

/* A lingering consumer is not woken below wake_batch items, and is at wake_batch. */
static void test_linger_wakes_at_batch(void)
{
    ep_mpmc_t *q = make(16);
    linger_t l = {.q = q};
    _Atomic long *tid = &l.tid;
    pthread_t t;
    void *first = ITEM(1), *more[2] = {ITEM(2), ITEM(3)};
    int64_t pushed_at;

    ep_mpmc_set_linger(q, 20 * 1000 * 1000, 3); /* 20 s: far past the test's bounds */
    EP_ASSERT_EQ(pthread_create(&t, NULL, linger_main, &l), 0);
    wait_asleep_in_pop(q, 1, &tid, EP_TEST_FUTEX_TIMED); /* lingering */
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &first, 1), 0);
    ep_time_sleep_ms(200);
    EP_ASSERT_EQ(atomic_load(&l.woke_ms), 0); /* one item: still lingering */
    pushed_at = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, more, 2), 0);
    pthread_join(t, NULL);
    EP_ASSERT_EQ(atomic_load(&l.rc), 3);
    EP_ASSERT_EQ(VALUE(l.items[0]), 1);
    EP_ASSERT_EQ(VALUE(l.items[2]), 3);
    EP_ASSERT(atomic_load(&l.woke_ms) - pushed_at < 10000); /* woken, not at the linger's end */
    ep_mpmc_destroy(q);
}

/*
 * One item pushed once a consumer sleeps in its pop as `asleep` says
 * (EP_TEST_FUTEX_*), on a queue with the given linger (and a wake_batch it
 * never reaches), gets to that consumer.
 */
static void one_item_reaches_consumer(uint32_t linger_us, int asleep, uint64_t v)
{
    ep_mpmc_t *q = make(16);
    linger_t l = {.q = q};
    _Atomic long *tid = &l.tid;
    pthread_t t;
    void *it = ITEM(v);
    int64_t pushed_at;

    ep_mpmc_set_linger(q, linger_us, 1000);
    EP_ASSERT_EQ(pthread_create(&t, NULL, linger_main, &l), 0);
    wait_asleep_in_pop(q, 1, &tid, asleep);
    EP_ASSERT_EQ(atomic_load(&l.woke_ms), 0);
    pushed_at = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, &it, 1), 0);
    pthread_join(t, NULL); /* a lost wake-up would make this wait for ever */
    EP_ASSERT_EQ(atomic_load(&l.rc), 1);
    EP_ASSERT_EQ(VALUE(l.items[0]), v);
    EP_ASSERT(atomic_load(&l.woke_ms) - pushed_at < 10000);
    ep_mpmc_destroy(q);
}

/*
 * Below wake_batch, the lingerer takes the item itself when its linger ends.
 * Its first sleep in the pop is the 1 s linger (on a machine so loaded that
 * the linger ended unseen, the item wakes it as a waiter instead).
 */
static void test_linger_trickle_delivered(void)
{
    one_item_reaches_consumer(1000 * 1000, EP_TEST_FUTEX_ANY, 7);
}

/*
 * After its linger, an idle consumer sleeps as a waiter that one item wakes
 * at once: its sleep without a timeout (the linger has one).
 */
static void test_linger_idle_consumer_woken(void)
{
    one_item_reaches_consumer(20 * 1000, EP_TEST_FUTEX_UNTIMED, 9);
}

/*
 * wake_batch is capped at a quarter of the capacity: a lingering consumer of
 * an 8-item queue asked for batches of 256 is woken by 2 items, long before
 * its 20 s linger ends, instead of letting the queue fill.
 */
static void test_linger_wake_batch_capped_by_capacity(void)
{
    ep_mpmc_t *q = make(8);
    linger_t l = {.q = q};
    pthread_t t;
    void *items[2] = {ITEM(1), ITEM(2)};
    int64_t deadline;

    ep_mpmc_set_linger(q, 20 * 1000 * 1000, 256);
    EP_ASSERT_EQ(pthread_create(&t, NULL, linger_main, &l), 0);
    deadline = ep_time_mono_ms() + 30000;
    while (ep_mpmc_idle(q) == 0 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT_EQ(ep_mpmc_idle(q), 1);
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 2), 0);
    deadline = ep_time_mono_ms() + 10000; /* far below the 20 s linger */
    while (atomic_load(&l.woke_ms) == 0 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT(atomic_load(&l.woke_ms) != 0); /* woken, not lingering out its 20 s */
    pthread_join(t, NULL);
    EP_ASSERT_EQ(atomic_load(&l.rc), 2);
    EP_ASSERT_EQ(ep_mpmc_idle(q), 0);
    ep_mpmc_destroy(q);
}

/*
 * A full queue whose consumer is idle in a pop (here: lingering with a wake
 * batch it never reaches by itself): push_batch_wait waits for it to make
 * room; plain push_batch and a queue with no idle consumer fail at once.
 */
static void test_push_wait_for_idle_consumer(void)
{
    ep_mpmc_t *q = make(4);
    linger_t l = {.q = q};
    pthread_t t;
    void *items[5] = {ITEM(1), ITEM(2), ITEM(3), ITEM(4), ITEM(5)}, *out[4];
    int64_t deadline;

    /* Nobody popping: full means full, with or without a wait. */
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 4), 0);
    EP_ASSERT_EQ(ep_mpmc_push_batch_wait(q, items + 4, 1, 10000), EP_EFULL);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 4, 0), 4);

    ep_mpmc_set_linger(q, 20 * 1000 * 1000, 256); /* capped to 1: the first push wakes it */
    EP_ASSERT_EQ(pthread_create(&t, NULL, linger_main, &l), 0);
    deadline = ep_time_mono_ms() + 30000;
    while (ep_mpmc_idle(q) == 0 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT_EQ(ep_mpmc_idle(q), 1);
    /* 4 items fill it; whether or not the consumer took them yet, the 5th gets in. */
    EP_ASSERT_EQ(ep_mpmc_push_batch_wait(q, items, 4, 30000), 0);
    EP_ASSERT_EQ(ep_mpmc_push_batch_wait(q, items + 4, 1, 30000), 0);
    pthread_join(t, NULL);
    EP_ASSERT(atomic_load(&l.rc) >= 1);
    EP_ASSERT_EQ(VALUE(l.items[0]), 1);
    ep_mpmc_destroy(q);
}

static void test_closed_drains_then_eclosed(void)
{
    ep_mpmc_t *q = make(4);
    void *items[3] = {ITEM(1), ITEM(2), ITEM(3)}, *out[4];

    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 3), 0);
    ep_mpmc_close(q);
    ep_mpmc_close(q); /* idempotent */
    EP_ASSERT_EQ(ep_mpmc_push_batch(q, items, 1), EP_ECLOSED);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 100), 2);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 100), 1);
    EP_ASSERT_EQ(VALUE(out[0]), 3);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 100), EP_ECLOSED);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, 0), EP_ECLOSED);
    EP_ASSERT_EQ(ep_mpmc_pop_batch(q, out, 2, -1), EP_ECLOSED);
    ep_mpmc_destroy(q);
}

/* ------------------------------------------------------------------ stress */

typedef struct {
    ep_mpmc_t *q;
    uint64_t first, last; /* this producer's values, inclusive */
    uint64_t full_retries;
} producer_t;

typedef struct {
    ep_mpmc_t *q;
    _Atomic uint64_t *seen; /* bitmap over 1..STRESS_ITEMS */
    uint64_t count, sum, dups;
} consumer_t;

static void *producer_main(void *arg)
{
    producer_t *p = arg;
    void *items[32];
    uint64_t v = p->first, round = 0;

    while (v <= p->last) {
        /* Mix single pushes with batches of up to 32. */
        size_t n = (round++ % 3 == 0) ? 1 : (size_t)(1 + (v * 7) % 32);
        if (n > p->last - v + 1) {
            n = (size_t)(p->last - v + 1);
        }
        for (size_t i = 0; i < n; i++) {
            items[i] = ITEM(v + i);
        }
        for (;;) {
            int rc = ep_mpmc_push_batch(p->q, items, n);
            if (rc == 0) {
                break;
            }
            EP_ASSERT_EQ(rc, EP_EFULL);
            p->full_retries++;
            sched_yield();
        }
        v += n;
    }
    return NULL;
}

static void *consumer_main(void *arg)
{
    consumer_t *c = arg;
    void *out[48];
    uint64_t round = 0;

    for (;;) {
        size_t max = (round++ % 2 == 0) ? 1 : 48;
        int n = ep_mpmc_pop_batch(c->q, out, max, 1000);
        if (n == EP_ECLOSED) {
            return NULL;
        }
        EP_ASSERT(n >= 0);
        for (int i = 0; i < n; i++) {
            uint64_t v = VALUE(out[i]), bit = 1ull << (v % 64);
            EP_ASSERT(v >= 1 && v <= STRESS_ITEMS);
            if (atomic_fetch_or(&c->seen[v / 64], bit) & bit) {
                c->dups++;
            }
            c->count++;
            c->sum += v;
        }
    }
}

static void stress(uint32_t linger_us, size_t wake_batch)
{
    ep_mpmc_t *q = make(STRESS_CAPACITY);
    producer_t prod[STRESS_PRODUCERS];
    consumer_t cons[STRESS_CONSUMERS];
    pthread_t pt[STRESS_PRODUCERS], ct[STRESS_CONSUMERS];
    size_t words = STRESS_ITEMS / 64 + 1;
    _Atomic uint64_t *seen = ep_calloc(words, sizeof(*seen));
    uint64_t per = STRESS_ITEMS / STRESS_PRODUCERS, count = 0, sum = 0, dups = 0, retries = 0;
    int64_t t0, dt;

    ep_mpmc_set_linger(q, linger_us, wake_batch);
    t0 = ep_time_mono_ns();
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        cons[i] = (consumer_t){q, seen, 0, 0, 0};
        EP_ASSERT_EQ(pthread_create(&ct[i], NULL, consumer_main, &cons[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        prod[i].q = q;
        prod[i].first = (uint64_t)i * per + 1;
        prod[i].last = i == STRESS_PRODUCERS - 1 ? STRESS_ITEMS : (uint64_t)(i + 1) * per;
        prod[i].full_retries = 0;
        EP_ASSERT_EQ(pthread_create(&pt[i], NULL, producer_main, &prod[i]), 0);
    }
    for (int i = 0; i < STRESS_PRODUCERS; i++) {
        pthread_join(pt[i], NULL);
        retries += prod[i].full_retries;
    }
    ep_mpmc_close(q);
    for (int i = 0; i < STRESS_CONSUMERS; i++) {
        pthread_join(ct[i], NULL);
        count += cons[i].count;
        sum += cons[i].sum;
        dups += cons[i].dups;
    }
    dt = ep_time_mono_ns() - t0;

    EP_ASSERT_EQ(dups, 0);
    EP_ASSERT_EQ(count, STRESS_ITEMS);
    EP_ASSERT_EQ(sum, (uint64_t)STRESS_ITEMS * (STRESS_ITEMS + 1) / 2);
    for (uint64_t v = 1; v <= STRESS_ITEMS; v++) {
        EP_ASSERT(atomic_load(&seen[v / 64]) & (1ull << (v % 64)));
    }
    EP_ASSERT_EQ(ep_mpmc_size(q), 0);
    printf("  stress: %d items, %dP/%dC, capacity %d, linger %u us: %.0f ms, %.2f M items/s, "
           "%llu full retries\n",
           STRESS_ITEMS, STRESS_PRODUCERS, STRESS_CONSUMERS, STRESS_CAPACITY, linger_us, dt / 1e6,
           STRESS_ITEMS / (dt / 1e9) / 1e6, (unsigned long long)retries);
    ep_free((void *)seen);
    ep_mpmc_destroy(q);
}

static void test_stress_mpmc(void)
{
    stress(0, 1);
}

/* The same with lingering consumers: nothing lost or doubled when producers skip wake-ups. */
static void test_stress_mpmc_linger(void)
{
    stress(200, 16);
}

EP_TEST_LIST = {
    EP_TEST(test_create_invalid),
    EP_TEST(test_capacity_exact_1000),
    EP_TEST(test_capacity_one),
    EP_TEST(test_batch_all_or_nothing),
    EP_TEST(test_fifo_wraparound),
    EP_TEST(test_pop_timeout),
    EP_TEST(test_close_wakes_blocked_consumer),
    EP_TEST(test_push_wakes_blocked_consumer),
    EP_TEST(test_linger_wakes_at_batch),
    EP_TEST(test_linger_trickle_delivered),
    EP_TEST(test_linger_idle_consumer_woken),
    EP_TEST(test_linger_wake_batch_capped_by_capacity),
    EP_TEST(test_push_wait_for_idle_consumer),
    EP_TEST(test_closed_drains_then_eclosed),
    EP_TEST(test_stress_mpmc),
    EP_TEST(test_stress_mpmc_linger),
    EP_TEST_END,
};

EP_TEST_MAIN()
