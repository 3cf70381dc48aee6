/*
 * ep_microbench: microbenchmarks of the hot-path pieces (`make bench`).
 *
 * Each benchmark runs RUNS times; the median run is reported as ops/s and
 * ns/op, with the spread (min..max ops/s). One op is one item or event
 * through the piece measured. Wall-clock time on a monotonic clock; the
 * machine's other load shows up as spread, so read the median.
 *
 *   queue 1P/1C single   one producer and one consumer thread, one item per call
 *   queue 1P/1C batch64  the same, 64 items per push and per pop
 *   queue 2P/2C ...      two of each
 *   pool no-op           events through memory queue + 4 workers + "none" sink, acked;
 *                        the producer clones each event inside the timed loop
 *   pool ..., premade    the same with events made before the clock runs (the
 *                        pool's own cost: publish, consume, no-op, ack = free)
 *   parse event          ep_event_parser_parse of a ~250-byte seed 004 event
 *   pb encode/decode     DataMessage of that event
 *   analytics add        ep_analytics_add_batch, batches of 64
 *   dedup CAP fill F%    ep_dedup_reserve + ep_dedup_commit of a new id (an op) in a
 *                        table of CAP ids already given F% of CAP ids (all within
 *                        the window); the ops raise the fill by n / CAP. Above 100%
 *                        the table stays full: one table serves every run, pre-filled
 *                        once, untimed
 */
#include "analytics/ep_analytics.h"
#include "base/ep_buf.h"
#include "event/ep_dedup.h"
#include "event/ep_event.h"
#include "support/ep_event_json_ref.h" /* tests/support */
#include "base/ep_mem.h"
#include "queue/ep_mpmc.h"
#include "queue/ep_queue.h"
#include "base/ep_time.h"
#include "pipeline/ep_worker_pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RUNS 5

static const char *const EVENT_JSON =
    "{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
    "\"properties\":{\"page\":\"/dashboard\",\"duration\":\"45\",\"device\":\"desktop\","
    "\"session_id\":\"sess_00042_1\"},\"timestamp\":1640995200,\"source\":\"web-app\"}";

typedef double (*bench_fn)(long long n); /* returns seconds for n ops */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const char *only; /* run only the benchmarks whose name contains this */

static void report(const char *name, bench_fn fn, long long n)
{
    double rate[RUNS];

    if (only != NULL && strstr(name, only) == NULL) {
        return;
    }

    fn(n / 10 > 0 ? n / 10 : 1); /* warm-up */
    for (int i = 0; i < RUNS; i++) {
        double s = fn(n);
        rate[i] = (double)n / s;
    }
    qsort(rate, RUNS, sizeof(double), cmp_double);
    printf("%-40s %12.0f ops/s %9.1f ns/op   (min %.0f, max %.0f; %lld ops x %d runs)\n", name,
           rate[RUNS / 2], 1e9 / rate[RUNS / 2], rate[0], rate[RUNS - 1], n, RUNS);
    fflush(stdout);
}

/* ------------------------------------------------------------ queue */

typedef struct qarg_s {
    ep_mpmc_t *q;
    long long n;     /* items each producer pushes */
    long long total; /* items all consumers pop together */
    atomic_llong popped;
    int batch;
} qarg_t;

static void *producer(void *arg)
{
    qarg_t *a = arg;
    void *items[64];

    for (int i = 0; i < 64; i++) {
        items[i] = (void *)(uintptr_t)(i + 1);
    }
    for (long long done = 0; done < a->n;) {
        int k = (int)(a->n - done < a->batch ? a->n - done : a->batch);
        if (ep_mpmc_push_batch(a->q, items, (size_t)k) == 0) {
            done += k;
        } else {
            sched_yield();
        }
    }
    return NULL;
}

static void *consumer(void *arg)
{
    qarg_t *a = arg;
    void *items[64];

    /* Consumers share the total: one may take more than another. */
    while (atomic_load(&a->popped) < a->total) {
        int k = ep_mpmc_pop_batch(a->q, items, (size_t)a->batch, 10);
        if (k > 0) {
            atomic_fetch_add(&a->popped, k);
        }
    }
    return NULL;
}

static double queue_run(long long n, int pairs, int batch)
{
    ep_mpmc_t *q;
    pthread_t p[2], c[2];
    qarg_t a;
    int64_t t0;

    ep_mpmc_create(4096, &q);
    a.q = q;
    a.n = n / pairs;
    a.total = a.n * pairs;
    atomic_store(&a.popped, 0);
    a.batch = batch;
    t0 = ep_time_mono_ns();
    for (int i = 0; i < pairs; i++) {
        pthread_create(&c[i], NULL, consumer, &a);
        pthread_create(&p[i], NULL, producer, &a);
    }
    for (int i = 0; i < pairs; i++) {
        pthread_join(p[i], NULL);
        pthread_join(c[i], NULL);
    }
    ep_mpmc_destroy(q);
    return (double)(ep_time_mono_ns() - t0) / 1e9;
}

static double q11_single(long long n)
{
    return queue_run(n, 1, 1);
}
static double q11_batch(long long n)
{
    return queue_run(n, 1, 64);
}
static double q22_single(long long n)
{
    return queue_run(n, 2, 1);
}
static double q22_batch(long long n)
{
    return queue_run(n, 2, 64);
}

/* ------------------------------------------------------------ pool */

static double pool_noop(long long n)
{
    ep_config_t cfg;
    ep_queue_t *q;
    ep_worker_pool_t *p;
    ep_event_t *proto = ep_event_create("x", "s", "t", NULL, "d", 1, NULL, 0, 1);
    ep_event_t *evs[64];
    char err[128];
    int64_t t0;

    ep_config_defaults(&cfg);
    ep_config_put(&cfg, "QUEUE_SIZE", "65536");
    ep_queue_create("memory", &cfg, &q, err, sizeof(err));
    ep_worker_pool_create(q, NULL, 4, 64, &p);
    ep_worker_pool_start(p);
    t0 = ep_time_mono_ns();
    for (long long done = 0; done < n;) {
        int k = (int)(n - done < 64 ? n - done : 64);
        for (int i = 0; i < k; i++) {
            evs[i] = ep_event_clone(proto);
        }
        while (ep_queue_publish(q, evs, (size_t)k, NULL, NULL) != 0) {
            sched_yield();
        }
        done += k;
    }
    ep_queue_close(q);
    ep_worker_pool_stop(p, 60000);
    {
        double s = (double)(ep_time_mono_ns() - t0) / 1e9;
        ep_worker_pool_destroy(p);
        ep_queue_destroy(q);
        ep_event_destroy(proto);
        return s;
    }
}

/*
 * The pool alone: events are made before the clock runs, in chunks of
 * POOL_CHUNK (the queue's size), so the timed part is publish in batches of 64
 * -> workers consume -> no-op sink -> ack (which frees each event).
 */
#define POOL_CHUNK 65536

static double pool_only(long long n, int workers)
{
    ep_config_t cfg;
    ep_queue_t *q;
    ep_worker_pool_t *p;
    ep_worker_pool_stats_t st;
    ep_event_t *proto = ep_event_create("x", "s", "t", NULL, "d", 1, NULL, 0, 1);
    ep_event_t **evs = ep_malloc(POOL_CHUNK * sizeof(*evs));
    char err[128];
    int64_t timed = 0;

    ep_config_defaults(&cfg);
    {
        char v[32];
        snprintf(v, sizeof(v), "%d", (int)POOL_CHUNK);
        ep_config_put(&cfg, "QUEUE_SIZE", v);
    }
    ep_queue_create("memory", &cfg, &q, err, sizeof(err));
    ep_worker_pool_create(q, NULL, workers, 64, &p);
    ep_worker_pool_start(p);
    for (long long done = 0; done < n;) {
        int k = (int)(n - done < POOL_CHUNK ? n - done : POOL_CHUNK);
        int64_t t0;

        for (int i = 0; i < k; i++) {
            evs[i] = ep_event_clone(proto);
        }
        t0 = ep_time_mono_ns();
        for (int i = 0; i < k; i += 64) {
            size_t m = (size_t)(k - i < 64 ? k - i : 64);
            while (ep_queue_publish(q, evs + i, m, NULL, NULL) != 0) {
                sched_yield();
            }
        }
        done += k;
        do {
            ep_worker_pool_stats(p, &st);
        } while (st.processed < (uint64_t)done);
        timed += ep_time_mono_ns() - t0;
    }
    ep_queue_close(q);
    ep_worker_pool_stop(p, 60000);
    ep_worker_pool_destroy(p);
    ep_queue_destroy(q);
    ep_event_destroy(proto);
    ep_free(evs);
    return (double)timed / 1e9;
}

static double pool_only_1(long long n)
{
    return pool_only(n, 1);
}

static double pool_only_2(long long n)
{
    return pool_only(n, 2);
}

/* ------------------------------------------------------------ codecs */

typedef int (*parse_fn)(ep_event_parser_t *p, const char *json, size_t len, ep_event_t **out,
                        ep_parse_err_t *err);

static double parse_with(long long n, parse_fn parse)
{
    ep_event_parser_t *p = ep_event_parser_create(NULL);
    size_t len = strlen(EVENT_JSON);
    int64_t t0 = ep_time_mono_ns();

    for (long long i = 0; i < n; i++) {
        ep_event_t *ev;
        if (parse(p, EVENT_JSON, len, &ev, NULL) != 0) {
            abort();
        }
        ep_event_destroy(ev);
    }
    ep_event_parser_destroy(p);
    return (double)(ep_time_mono_ns() - t0) / 1e9;
}

static double parse_event(long long n)
{
    return parse_with(n, ep_event_parser_parse);
}

/* The same parse driven by yajl (the reference the tokenizer replaced), for comparison. */
static double parse_event_yajl(long long n)
{
    return parse_with(n, ep__event_parser_parse_ref);
}

static ep_event_t *sample_event(void)
{
    ep_event_t *ev;

    if (ep_event_parse_json(EVENT_JSON, strlen(EVENT_JSON), NULL, &ev, NULL) != 0) {
        abort();
    }
    return ev;
}

static double pb_encode(long long n)
{
    ep_event_t *ev = sample_event();
    ep_buf_t b = EP_BUF_INIT;
    int64_t t0 = ep_time_mono_ns();

    for (long long i = 0; i < n; i++) {
        ep_buf_reset(&b);
        ep_event_encode_pb(ev, &b);
    }
    ep_buf_close(&b);
    ep_event_destroy(ev);
    return (double)(ep_time_mono_ns() - t0) / 1e9;
}

static double pb_decode(long long n)
{
    ep_event_t *ev = sample_event(), *out;
    ep_buf_t b = EP_BUF_INIT;
    int64_t t0;

    ep_event_encode_pb(ev, &b);
    t0 = ep_time_mono_ns();
    for (long long i = 0; i < n; i++) {
        if (ep_event_decode_pb(b.data, b.len, &out) != 0) {
            abort();
        }
        ep_event_destroy(out);
    }
    ep_buf_close(&b);
    ep_event_destroy(ev);
    return (double)(ep_time_mono_ns() - t0) / 1e9;
}

/* ------------------------------------------------------------ analytics */

static double analytics_add(long long n)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_event_t *evs[64];
    char user[32], type[32];
    int64_t t0;

    for (int i = 0; i < 64; i++) {
        snprintf(user, sizeof(user), "user_%d", i * 37);
        snprintf(type, sizeof(type), "type_%d", i % 5);
        evs[i] = ep_event_create(NULL, "web-app", type, user, "x", 1, NULL, 0, 0);
        evs[i]->processed_us = evs[i]->received_us + 500 + i;
    }
    t0 = ep_time_mono_ns();
    for (long long done = 0; done < n; done += 64) {
        ep_analytics_add_batch(a, evs, 64);
    }
    {
        double s = (double)(ep_time_mono_ns() - t0) / 1e9;
        for (int i = 0; i < 64; i++) {
            ep_event_destroy(evs[i]);
        }
        ep_analytics_destroy(a);
        return s;
    }
}

/* ------------------------------------------------------------ dedup */

typedef struct dedup_case_s {
    size_t cap;
    int fill_pct;
    ep_dedup_t *d;
    long long next; /* the next id number */
} dedup_case_t;

static dedup_case_t dedup_cases[] = {
    {100000, 10, NULL, 0},   {100000, 100, NULL, 0},  {100000, 1000, NULL, 0},
    {1000000, 10, NULL, 0},  {1000000, 100, NULL, 0}, {1000000, 1000, NULL, 0},
    {1000000, 200, NULL, 0},
};

/* Ids "d" + 16 hex digits, written without printf (its cost would dominate). */
static void dedup_id(char *buf, long long v)
{
    static const char hex[] = "0123456789abcdef";

    buf[0] = 'd';
    for (int i = 16; i >= 1; i--, v >>= 4) {
        buf[i] = hex[v & 15];
    }
}

static void dedup_add(dedup_case_t *c)
{
    char id[17];
    int64_t now = 1 + c->next / 100000; /* 100k ids a second: all within the 300 s window */

    dedup_id(id, c->next++);
    if (ep_dedup_reserve(c->d, id, sizeof(id), now) == EP_DEDUP_NEW) {
        ep_dedup_commit(c->d, id, sizeof(id), now);
    }
}

static double dedup_run(dedup_case_t *c, long long n)
{
    int64_t t0;

    if (c->d == NULL || c->fill_pct <= 100) {
        ep_dedup_destroy(c->d);
        c->d = ep_dedup_create(300, c->cap);
        c->next = 0;
        for (long long i = 0; i < (long long)c->cap * c->fill_pct / 100; i++) {
            dedup_add(c);
        }
    }
    t0 = ep_time_mono_ns();
    for (long long i = 0; i < n; i++) {
        dedup_add(c);
    }
    return (double)(ep_time_mono_ns() - t0) / 1e9;
}

#define DEDUP_CASE(k)                                                                              \
    static double dedup_case_##k(long long n)                                                      \
    {                                                                                              \
        return dedup_run(&dedup_cases[k], n);                                                      \
    }
DEDUP_CASE(0)
DEDUP_CASE(1)
DEDUP_CASE(2)
DEDUP_CASE(3)
DEDUP_CASE(4)
DEDUP_CASE(5)
DEDUP_CASE(6)

int main(int argc, char **argv)
{
    double scale = argc > 1 ? atof(argv[1]) : 1.0;

    if (argc > 3 || (argc > 1 && scale <= 0)) {
        fprintf(stderr,
                "usage: %s [SCALE [NAME]]\n"
                "  SCALE  multiplies every operation count (default 1)\n"
                "  NAME   runs only the benchmarks whose name contains NAME\n",
                argv[0]);
        return 2;
    }
    only = argc > 2 ? argv[2] : NULL;

#define N(x) ((long long)((x)*scale))
    printf("eventpipe microbenchmarks: median of %d runs (after a warm-up), ops/s and ns/op\n",
           RUNS);
    report("queue 1P/1C single", q11_single, N(2000000));
    report("queue 1P/1C batch64", q11_batch, N(20000000));
    report("queue 2P/2C single", q22_single, N(2000000));
    report("queue 2P/2C batch64", q22_batch, N(20000000));
    report("pool no-op (4 workers)", pool_noop, N(2000000));
    report("pool no-op, events premade (1 worker)", pool_only_1, N(2000000));
    report("pool no-op, events premade (2 workers)", pool_only_2, N(2000000));
    report("parse event (JSON)", parse_event, N(500000));
    report("parse event (JSON, yajl reference)", parse_event_yajl, N(500000));
    report("pb encode", pb_encode, N(2000000));
    report("pb decode", pb_decode, N(1000000));
    report("analytics add (batch 64)", analytics_add, N(2000000));
    report("dedup 100k fill 10%", dedup_case_0, N(10000));
    report("dedup 100k fill 100%", dedup_case_1, N(10000));
    report("dedup 100k fill 1000%", dedup_case_2, N(10000));
    report("dedup 1M fill 10%", dedup_case_3, N(10000));
    report("dedup 1M fill 100%", dedup_case_4, N(10000));
    report("dedup 1M fill 200%", dedup_case_6, N(10000));
    report("dedup 1M fill 1000%", dedup_case_5, N(10000));
    for (size_t i = 0; i < sizeof(dedup_cases) / sizeof(dedup_cases[0]); i++) {
        ep_dedup_destroy(dedup_cases[i].d);
    }
    return 0;
}
