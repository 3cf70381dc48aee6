/* Tests for the "memory" queue provider (src/queue/memory/ep_queue_memory.c). */
#include "ep_test.h"

#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "ep_test_thread.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ep_queue_t *make_queue(int64_t size)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    memset(&cfg, 0, sizeof(cfg));
    {
        char v[32];
        snprintf(v, sizeof(v), "%lld", (long long)size);
        EP_ASSERT_EQ(ep_config_put(&cfg, "QUEUE_SIZE", v), 0);
    }
    EP_ASSERT_EQ(ep_queue_create("memory", &cfg, &q, err, sizeof(err)), 0);
    EP_ASSERT(q != NULL);
    return q;
}

static ep_event_t *make_event(const char *id)
{
    return ep_event_create(id, "test", "unit", NULL, "x", 1, NULL, 0, 0);
}

typedef struct {
    int calls;
    size_t n;
    int all_zero;
} cb_rec_t;

static void on_publish(void *arg, size_t n, const int *status)
{
    cb_rec_t *r = arg;

    r->calls++;
    r->n = n;
    r->all_zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (status[i] != 0) {
            r->all_zero = 0;
        }
    }
}

static void test_provider_shape(void)
{
    const ep_queue_provider_t *p = ep_queue_provider_find("memory");

    EP_ASSERT(p != NULL);
    EP_ASSERT_STR_EQ(p->name, "memory");
    EP_ASSERT_EQ(p->api_version, EP_QUEUE_API_VERSION);
    EP_ASSERT(p->flags & EP_QUEUE_F_LOCAL);
}

static void test_rejects_bad_size(void)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    memset(&cfg, 0, sizeof(cfg));
    EP_ASSERT_EQ(ep_config_put(&cfg, "QUEUE_SIZE", "0"), 0);
    EP_ASSERT(ep_queue_create("memory", &cfg, &q, err, sizeof(err)) < 0);
    EP_ASSERT(q == NULL);
    EP_ASSERT(strstr(err, "QUEUE_SIZE") != NULL);
    EP_ASSERT_EQ(ep_config_put(&cfg, "QUEUE_SIZE", "-5"), 0);
    EP_ASSERT(ep_queue_create("memory", &cfg, &q, err, sizeof(err)) < 0);
}

static void test_publish_consume_ack(void)
{
    ep_queue_t *q = make_queue(1000);
    ep_event_t *evs[3] = {make_event("a"), make_event("b"), make_event("c")}, *out[8];
    ep_queue_stats_t st;
    cb_rec_t rec = {0, 0, 0};
    char reason[64];

    EP_ASSERT_EQ(ep_queue_publish(q, evs, 1, on_publish, &rec), 0);
    EP_ASSERT(evs[0] == NULL);
    EP_ASSERT_EQ(rec.calls, 1);
    EP_ASSERT_EQ(rec.n, 1);
    EP_ASSERT(rec.all_zero);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 1);
    EP_ASSERT_EQ(st.size, 1);
    EP_ASSERT_EQ(st.capacity, 1000);
    EP_ASSERT_EQ(st.in_flight, 0);

    EP_ASSERT_EQ(ep_queue_publish(q, evs + 1, 2, on_publish, &rec), 0);
    EP_ASSERT(evs[1] == NULL && evs[2] == NULL);
    EP_ASSERT_EQ(rec.calls, 2);
    EP_ASSERT_EQ(rec.n, 2);

    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 100), 3);
    EP_ASSERT_STR_EQ(out[0]->id.p, "a");
    EP_ASSERT_STR_EQ(out[1]->id.p, "b");
    EP_ASSERT_STR_EQ(out[2]->id.p, "c");
    EP_ASSERT_EQ(out[0]->attempts, 1);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.dequeued, 3);
    EP_ASSERT_EQ(st.size, 0);
    EP_ASSERT_EQ(st.in_flight, 3);

    EP_ASSERT_EQ(ep_queue_ack(q, out, 3), 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.acked, 3);
    EP_ASSERT_EQ(st.in_flight, 0);
    EP_ASSERT_EQ(st.enqueued, 3);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 0), 0);
    ep_queue_destroy(q);
}

static void test_full_keeps_ownership(void)
{
    ep_queue_t *q = make_queue(2);
    ep_event_t *evs[3] = {make_event("a"), make_event("b"), make_event("c")};
    ep_queue_stats_t st;
    cb_rec_t rec = {0, 0, 0};
    char reason[64];

    /* 3 > 2: nothing taken, callback not called, slots untouched. */
    EP_ASSERT_EQ(ep_queue_publish(q, evs, 3, on_publish, &rec), EP_EFULL);
    EP_ASSERT(evs[0] && evs[1] && evs[2]);
    EP_ASSERT_EQ(rec.calls, 0);
    EP_ASSERT_EQ(ep_queue_publish(q, evs, 2, on_publish, &rec), 0);
    EP_ASSERT_EQ(ep_queue_publish(q, evs + 2, 1, on_publish, &rec), EP_EFULL);
    EP_ASSERT(evs[2] != NULL);
    EP_ASSERT_EQ(rec.calls, 1);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 2);
    EP_ASSERT_EQ(st.rejected_full, 4); /* counted in events: 3 + 1 */
    EP_ASSERT_EQ(st.size, 2);
    /* Full is backpressure, not unreadiness. */
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    ep_event_destroy(evs[2]); /* still ours */
    ep_queue_destroy(q);      /* frees the two queued events (ASan checks) */
}

static void test_large_batch_callback(void)
{
    ep_queue_t *q = make_queue(10000);
    size_t n = 6000;
    ep_event_t **evs = ep_malloc(n * sizeof(*evs));
    cb_rec_t rec = {0, 0, 0};

    for (size_t i = 0; i < n; i++) {
        evs[i] = make_event(NULL);
    }
    EP_ASSERT_EQ(ep_queue_publish(q, evs, n, on_publish, &rec), 0);
    EP_ASSERT_EQ(rec.calls, 1);
    EP_ASSERT_EQ(rec.n, n);
    EP_ASSERT(rec.all_zero);
    EP_ASSERT_EQ(ep_queue_publish(q, evs, 0, NULL, NULL), 0);
    ep_free(evs);
    ep_queue_destroy(q);
}

static void test_nack_redelivers_when_full(void)
{
    ep_queue_t *q = make_queue(2);
    ep_event_t *evs[2] = {make_event("a"), make_event("b")}, *out[4], *extra[2];
    ep_queue_stats_t st;

    EP_ASSERT_EQ(ep_queue_publish(q, evs, 2, NULL, NULL), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 1, 100), 1);
    EP_ASSERT_STR_EQ(out[0]->id.p, "a");
    /* Refill to the bound so the ring has no room for the nacked event. */
    extra[0] = make_event("c");
    EP_ASSERT_EQ(ep_queue_publish(q, extra, 1, NULL, NULL), 0);
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 0), 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.nacked, 1);
    EP_ASSERT_EQ(st.size, 3); /* two in the ring, one waiting for redelivery */
    EP_ASSERT_EQ(st.in_flight, 0);

    EP_ASSERT_EQ(ep_queue_consume(q, out, 4, 100), 3);
    /* The redelivery comes first, with its attempt count bumped. */
    EP_ASSERT_STR_EQ(out[0]->id.p, "a");
    EP_ASSERT_EQ(out[0]->attempts, 2);
    EP_ASSERT_STR_EQ(out[1]->id.p, "b");
    EP_ASSERT_EQ(out[1]->attempts, 1);
    EP_ASSERT_STR_EQ(out[2]->id.p, "c");
    EP_ASSERT_EQ(ep_queue_ack(q, out, 3), 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.dequeued, 4);
    EP_ASSERT_EQ(st.acked, 3);
    EP_ASSERT_EQ(st.in_flight, 0);
    EP_ASSERT_EQ(st.size, 0);
    ep_queue_destroy(q);
}

static void test_nack_delay(void)
{
    ep_queue_t *q = make_queue(4);
    ep_event_t *evs[1] = {make_event("a")}, *out[2];
    int64_t t0, dt;
    int rc;

    EP_ASSERT_EQ(ep_queue_publish(q, evs, 1, NULL, NULL), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 2, 100), 1);
    t0 = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 150), 0);
    /* Not due yet (unless this thread was held up past the delay: dt below tells). */
    rc = ep_queue_consume(q, out, 2, 0);
    if (rc == 0) {
        rc = ep_queue_consume(q, out, 2, 30000);
    }
    EP_ASSERT_EQ(rc, 1);
    dt = ep_time_mono_ms() - t0;
    EP_ASSERT(dt >= 140);
    EP_ASSERT(dt < 10000); /* when due, not at the consume's timeout */
    EP_ASSERT_EQ(out[0]->attempts, 2);
    /* Nack with a delay, then destroy: the waiting event is freed (ASan checks). */
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 10000), 0);
    ep_queue_destroy(q);
}

static void test_close_drains(void)
{
    ep_queue_t *q = make_queue(8);
    ep_event_t *evs[3] = {make_event("a"), make_event("b"), make_event("c")}, *out[8];
    ep_event_t *late = make_event("late");
    char reason[64] = "";

    EP_ASSERT_EQ(ep_queue_publish(q, evs, 3, NULL, NULL), 0);
    ep_queue_close(q);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT_STR_EQ(reason, "queue closed");
    EP_ASSERT_EQ(ep_queue_publish(q, &late, 1, NULL, NULL), EP_ECLOSED);
    EP_ASSERT(late != NULL);
    ep_event_destroy(late);

    EP_ASSERT_EQ(ep_queue_consume(q, out, 2, 100), 2);
    EP_ASSERT_EQ(ep_queue_ack(q, out, 2), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 100), 1);
    /* A nack after close is still redelivered before EP_ECLOSED. */
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 0), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 100), 1);
    EP_ASSERT_STR_EQ(out[0]->id.p, "c");
    EP_ASSERT_EQ(ep_queue_ack(q, out, 1), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 100), EP_ECLOSED);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 0), EP_ECLOSED);
    ep_queue_destroy(q);
}

/* The provider's "idle_consumers" figure from its /stats JSON, -1 when absent. */
static long idle_consumers(ep_queue_t *q)
{
    ep_buf_t b = EP_BUF_INIT;
    const char *p;
    long n = -1;

    ep_queue_stats_json(q, &b);
    p = b.data ? strstr(b.data, "\"idle_consumers\":") : NULL;
    if (p) {
        n = strtol(p + strlen("\"idle_consumers\":"), NULL, 10);
    }
    ep_buf_close(&b);
    return n;
}

typedef struct {
    ep_queue_t *q;
    int64_t t_ms;
    int rc;
    _Atomic long tid;
} waiter_t;

static void *waiter_main(void *arg)
{
    waiter_t *w = arg;
    ep_event_t *out[4];

    atomic_store(&w->tid, ep_test_tid());
    w->rc = ep_queue_consume(w->q, out, 4, 60000);
    w->t_ms = ep_time_mono_ms();
    return NULL;
}

static void test_close_wakes_consumer(void)
{
    ep_queue_t *q = make_queue(8);
    waiter_t w = {q, 0, 0, 0};
    pthread_t t;
    int64_t t0, deadline = ep_time_mono_ms() + 30000;

    EP_ASSERT_EQ(pthread_create(&t, NULL, waiter_main, &w), 0);
    /* The consumer is idle in its pop and asleep there (lingering or waiting). */
    while ((idle_consumers(q) != 1 || atomic_load(&w.tid) == 0) && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT_EQ(idle_consumers(q), 1);
    EP_ASSERT(ep_test_wait_futex(atomic_load(&w.tid), EP_TEST_FUTEX_ANY, 30000));
    t0 = ep_time_mono_ms();
    ep_queue_close(q);
    pthread_join(t, NULL);
    EP_ASSERT_EQ(w.rc, EP_ECLOSED);
    EP_ASSERT(w.t_ms - t0 < 10000); /* woken by the close, not the 60 s */
    ep_queue_destroy(q);
}

/* ------------------------------------------------ small queue, idle worker */

typedef struct {
    ep_queue_t *q;
    ep_event_t *out[1024];
    _Atomic int rc;
} once_t;

static void *consume_once_main(void *arg)
{
    once_t *o = arg;

    atomic_store(&o->rc, ep_queue_consume(o->q, o->out, 1024, 30000));
    return NULL;
}

/*
 * A queue far smaller than the linger's wake batch (256) with its one worker
 * idle: single-event publishes never find it full, and the 101st publish into
 * a 100-event queue waits for the worker instead of failing (it got 503s).
 */
static void test_small_queue_never_full_while_worker_idle(void)
{
    ep_queue_t *q = make_queue(100);
    once_t o = {.q = q};
    ep_queue_stats_t st;
    pthread_t t;
    int64_t deadline = ep_time_mono_ms() + 30000;
    char id[16];
    int rc;

    atomic_init(&o.rc, 0);
    EP_ASSERT_EQ(pthread_create(&t, NULL, consume_once_main, &o), 0);
    while (idle_consumers(q) != 1 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT_EQ(idle_consumers(q), 1);
    for (int i = 0; i < 101; i++) {
        ep_event_t *ev;

        snprintf(id, sizeof(id), "e%d", i);
        ev = make_event(id);
        EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, NULL, NULL), 0);
    }
    pthread_join(t, NULL);
    rc = atomic_load(&o.rc);
    EP_ASSERT(rc >= 1);
    EP_ASSERT_EQ(ep_queue_ack(q, o.out, (size_t)rc), 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.rejected_full, 0);
    EP_ASSERT_EQ(st.enqueued, 101);
    EP_ASSERT_EQ(idle_consumers(q), 0);
    ep_queue_destroy(q); /* frees what the worker did not take (ASan checks) */
}

/* With no worker idle, a full queue still answers at once: backpressure, not a wait. */
static void test_full_without_idle_worker_fails_at_once(void)
{
    ep_queue_t *q = make_queue(4);
    ep_event_t *evs[5];
    char id[16];

    for (int i = 0; i < 5; i++) {
        snprintf(id, sizeof(id), "f%d", i);
        evs[i] = make_event(id);
    }
    EP_ASSERT_EQ(ep_queue_publish(q, evs, 4, NULL, NULL), 0);
    EP_ASSERT_EQ(ep_queue_publish(q, evs + 4, 1, NULL, NULL), EP_EFULL);
    ep_event_destroy(evs[4]);
    ep_queue_destroy(q);
}

/* ------------------------------------------------- concurrent exactly-once */

#ifdef EP_TEST_TSAN
#define CC_PER_PUBLISHER 5000
#else
#define CC_PER_PUBLISHER 50000
#endif
#define CC_PUBLISHERS 3
#define CC_CONSUMERS  3
#define CC_TOTAL      (CC_PUBLISHERS * CC_PER_PUBLISHER)

typedef struct {
    ep_queue_t *q;
    int index;
    _Atomic uint64_t *cb_events;
} publisher_t;

typedef struct {
    ep_queue_t *q;
    _Atomic unsigned char *seen;
    uint64_t count, dups, nacks;
} worker_t;

static void count_cb(void *arg, size_t n, const int *status)
{
    atomic_fetch_add((_Atomic uint64_t *)arg, n);
}

static void *publisher_main(void *arg)
{
    publisher_t *p = arg;
    ep_event_t *batch[16];
    char id[32];
    int i = 0;

    while (i < CC_PER_PUBLISHER) {
        size_t n = (size_t)(1 + i % 16), k;
        if (n > (size_t)(CC_PER_PUBLISHER - i)) {
            n = (size_t)(CC_PER_PUBLISHER - i);
        }
        for (k = 0; k < n; k++) {
            snprintf(id, sizeof(id), "%d", p->index * CC_PER_PUBLISHER + i + (int)k);
            batch[k] = make_event(id);
        }
        for (;;) {
            int rc = ep_queue_publish(p->q, batch, n, count_cb, p->cb_events);
            if (rc == 0) {
                break;
            }
            EP_ASSERT_EQ(rc, EP_EFULL);
            for (k = 0; k < n; k++) {
                EP_ASSERT(batch[k] != NULL);
            }
            sched_yield();
        }
        i += (int)n;
    }
    return NULL;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    ep_event_t *out[32];

    for (;;) {
        int n = ep_queue_consume(w->q, out, 32, 200);
        if (n == EP_ECLOSED) {
            return NULL;
        }
        EP_ASSERT(n >= 0);
        /* Every 97th first delivery is nacked once, as a worker would on a sink error. */
        if (n > 0 && out[0]->attempts == 1 && atoi(out[0]->id.p) % 97 == 0) {
            w->nacks += (uint64_t)n;
            EP_ASSERT_EQ(ep_queue_nack(w->q, out, (size_t)n, 0), 0);
            continue;
        }
        for (int i = 0; i < n; i++) {
            int v = atoi(out[i]->id.p);
            EP_ASSERT(v >= 0 && v < CC_TOTAL);
            if (atomic_exchange(&w->seen[v], 1)) {
                w->dups++;
            }
            w->count++;
        }
        EP_ASSERT_EQ(ep_queue_ack(w->q, out, (size_t)n), 0);
    }
}

static void test_concurrent_exactly_once(void)
{
    ep_queue_t *q = make_queue(1000);
    _Atomic unsigned char *seen = ep_calloc(CC_TOTAL, 1);
    _Atomic uint64_t cb_events = 0;
    publisher_t pubs[CC_PUBLISHERS];
    worker_t workers[CC_CONSUMERS];
    pthread_t pt[CC_PUBLISHERS], wt[CC_CONSUMERS];
    uint64_t count = 0, dups = 0, nacks = 0, distinct = 0;
    ep_queue_stats_t st;

    for (int i = 0; i < CC_CONSUMERS; i++) {
        workers[i] = (worker_t){q, seen, 0, 0, 0};
        EP_ASSERT_EQ(pthread_create(&wt[i], NULL, worker_main, &workers[i]), 0);
    }
    for (int i = 0; i < CC_PUBLISHERS; i++) {
        pubs[i] = (publisher_t){q, i, &cb_events};
        EP_ASSERT_EQ(pthread_create(&pt[i], NULL, publisher_main, &pubs[i]), 0);
    }
    for (int i = 0; i < CC_PUBLISHERS; i++) {
        pthread_join(pt[i], NULL);
    }
    ep_queue_close(q);
    for (int i = 0; i < CC_CONSUMERS; i++) {
        pthread_join(wt[i], NULL);
        count += workers[i].count;
        dups += workers[i].dups;
        nacks += workers[i].nacks;
    }
    for (int i = 0; i < CC_TOTAL; i++) {
        distinct += atomic_load(&seen[i]);
    }
    EP_ASSERT_EQ(dups, 0);
    EP_ASSERT_EQ(count, CC_TOTAL);
    EP_ASSERT_EQ(distinct, CC_TOTAL);
    EP_ASSERT_EQ(atomic_load(&cb_events), CC_TOTAL);
    EP_ASSERT(nacks > 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, CC_TOTAL);
    EP_ASSERT_EQ(st.acked, CC_TOTAL);
    EP_ASSERT_EQ(st.nacked, nacks);
    EP_ASSERT_EQ(st.dequeued, CC_TOTAL + nacks);
    EP_ASSERT_EQ(st.size, 0);
    EP_ASSERT_EQ(st.in_flight, 0);
    ep_free((void *)seen);
    ep_queue_destroy(q);
}

EP_TEST_LIST = {
    EP_TEST(test_provider_shape),
    EP_TEST(test_rejects_bad_size),
    EP_TEST(test_publish_consume_ack),
    EP_TEST(test_full_keeps_ownership),
    EP_TEST(test_large_batch_callback),
    EP_TEST(test_nack_redelivers_when_full),
    EP_TEST(test_nack_delay),
    EP_TEST(test_close_drains),
    EP_TEST(test_close_wakes_consumer),
    EP_TEST(test_small_queue_never_full_while_worker_idle),
    EP_TEST(test_full_without_idle_worker_fails_at_once),
    EP_TEST(test_concurrent_exactly_once),
    EP_TEST_END,
};

EP_TEST_MAIN()
