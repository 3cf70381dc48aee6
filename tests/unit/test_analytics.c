/*
 * The analytics aggregate: exact counts for a known event set, concurrent
 * add_batch from 4 threads, deltas (take, merge, duplicates, malformed), time
 * series and rates with an injected clock. Also prints add_batch throughput.
 */
#include "analytics/ep_analytics.h"
#include "analytics/ep_varint.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "ep_test.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <stdio.h>
#include <yajl/yajl_tree.h>

#define NOW_S 1700000000LL

static int64_t fake_now_us = NOW_S * 1000000LL;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return fake_now_us;
}

static const char *types[] = {"page_view", "click", "purchase"};
static const char *sources[] = {"web-app", "mobile"};

/* Event i of the known set: type i % 3, source i % 2, user i % 50, page i % 4, latency 1 ms + i us.
 */
static ep_event_t *make_event(int i)
{
    char user[32], page[32];
    ep_kv_t kv;

    snprintf(user, sizeof(user), "user_%d", i % 50);
    snprintf(page, sizeof(page), "/page/%d", i % 4);
    kv.key.p = "page";
    kv.key.len = 4;
    kv.val.p = page;
    kv.val.len = (uint32_t)strlen(page);
    kv.type = 0;
    ep_event_t *ev = ep_event_create(NULL, sources[i % 2], types[i % 3], user, NULL, 0, &kv, 1,
                                     NOW_S * 1000 - 2000);
    ev->received_us = NOW_S * 1000000LL - 10000;
    ev->processed_us = ev->received_us + 1000 + i % 100;
    return ev;
}

static ep_event_t **make_events(int n)
{
    ep_event_t **evs = ep_malloc(sizeof(*evs) * (size_t)n);
    for (int i = 0; i < n; i++) {
        evs[i] = make_event(i);
    }
    return evs;
}

static void free_events(ep_event_t **evs, int n)
{
    for (int i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_free(evs);
}

static yajl_val summary(ep_analytics_t *a, ep_buf_t *b)
{
    char err[256];
    yajl_val v;

    ep_buf_reset(b);
    ep_analytics_summary_json(a, b);
    v = yajl_tree_parse(b->data, err, sizeof(err));
    if (v == NULL) {
        EP__FAIL("summary is not JSON (%s): %s", err, b->data);
    }
    return v;
}

static long long num(yajl_val root, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_number);
    if (v == NULL) {
        EP__FAIL("missing number %s.%s", a, b ? b : "");
    }
    return YAJL_GET_INTEGER(v);
}

static double dbl(yajl_val root, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    yajl_val v = yajl_tree_get(root, path, yajl_t_number);
    if (v == NULL) {
        EP__FAIL("missing number %s.%s", a, b ? b : "");
    }
    return YAJL_GET_DOUBLE(v);
}

static void check_known_set(yajl_val s, long long mult)
{
    EP_ASSERT_EQ(num(s, "total_events", NULL), 300 * mult);
    EP_ASSERT_EQ(num(s, "events_by_type", "page_view"), 100 * mult);
    EP_ASSERT_EQ(num(s, "events_by_type", "click"), 100 * mult);
    EP_ASSERT_EQ(num(s, "events_by_type", "purchase"), 100 * mult);
    EP_ASSERT_EQ(num(s, "events_by_source", "web-app"), 150 * mult);
    EP_ASSERT_EQ(num(s, "events_by_source", "mobile"), 150 * mult);
    EP_ASSERT_EQ(num(s, "unique_users", NULL), 50);
    EP_ASSERT_EQ(num(s, "events_with_user", NULL), 300 * mult);
}

static void test_known_set_exact(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_event_t **evs = make_events(300);
    ep_buf_t b = EP_BUF_INIT;
    yajl_val s, top;
    const char *top_path[] = {"top_pages", NULL};

    ep_analytics_set_clock(a, fake_clock, NULL);
    for (int i = 0; i < 300; i += 64) {
        ep_analytics_add_batch(a, evs + i, (size_t)(300 - i < 64 ? 300 - i : 64));
    }
    s = summary(a, &b);
    check_known_set(s, 1);
    /* 300 events in the current second. */
    EP_ASSERT(dbl(s, "events_per_second", "1m") > 4.99 && dbl(s, "events_per_second", "1m") < 5.01);
    EP_ASSERT_EQ(num(s, "events_last", "15m"), 300);
    /* Latency 1000..1099 us: p50 about 1.05 ms. */
    EP_ASSERT(dbl(s, "latency_ms", "p50") > 1.0 && dbl(s, "latency_ms", "p50") < 1.1);
    EP_ASSERT(dbl(s, "latency_ms", "p99") <= 1.1);
    EP_ASSERT_EQ(num(s, "latency_ms", "count"), 300);
    EP_ASSERT(dbl(s, "event_lag_ms", "p50") > 1.9);
    top = yajl_tree_get(s, top_path, yajl_t_array);
    EP_ASSERT(top && YAJL_GET_ARRAY(top)->len == 4);
    yajl_tree_free(s);

    /* 61 s later the events have left the 1m window but not the 5m one. */
    fake_now_us += 61 * 1000000LL;
    s = summary(a, &b);
    EP_ASSERT_EQ(num(s, "events_last", "1m"), 0);
    EP_ASSERT_EQ(num(s, "events_last", "5m"), 300);
    EP_ASSERT_EQ(num(s, "total_events", NULL), 300);
    yajl_tree_free(s);
    fake_now_us -= 61 * 1000000LL;

    ep_buf_close(&b);
    free_events(evs, 300);
    ep_analytics_destroy(a);
}

typedef struct thr_s {
    ep_analytics_t *a;
    ep_event_t **evs;
    int rounds;
} thr_t;

static void *adder(void *arg)
{
    thr_t *t = arg;

    for (int r = 0; r < t->rounds; r++) {
        for (int i = 0; i < 300; i += 60) {
            ep_analytics_add_batch(t->a, t->evs + i, 60);
        }
    }
    return NULL;
}

static void test_concurrent_add_batch(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_event_t **evs = make_events(300);
    ep_buf_t b = EP_BUF_INIT;
    pthread_t th[4];
    thr_t t = {a, evs, 50};
    yajl_val s;

    ep_analytics_set_clock(a, fake_clock, NULL);
    for (int i = 0; i < 4; i++) {
        pthread_create(&th[i], NULL, adder, &t);
    }
    /* A reader racing the writers. */
    for (int i = 0; i < 5; i++) {
        yajl_tree_free(summary(a, &b));
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    s = summary(a, &b);
    check_known_set(s, 4 * 50);
    yajl_tree_free(s);
    ep_buf_close(&b);
    free_events(evs, 300);
    ep_analytics_destroy(a);
}

static void test_throughput(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_event_t **evs = make_events(3000);
    int64_t t0 = 0, dt;
    int rounds = 200;

    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < 3000; i += 64) {
            ep_analytics_add_batch(a, evs + i, (size_t)(3000 - i < 64 ? 3000 - i : 64));
        }
        if (r == 0) {
            t0 = ep_time_mono_ns();
        }
    }
    t0 = t0 ? t0 : ep_time_mono_ns();
    dt = ep_time_mono_ns() - t0;
    printf("add_batch: %.0f events/s on one thread (%d events, batches of 64)\n",
           (double)(rounds - 1) * 3000 / ((double)dt / 1e9), (rounds - 1) * 3000);
    free_events(evs, 3000);
    ep_analytics_destroy(a);
}

static void strip_processing(ep_buf_t *b)
{
    char *p = strstr(b->data, ",\"processing\"");
    EP_ASSERT(p != NULL);
    *p = '\0';
    b->len = (size_t)(p - b->data);
}

static void test_delta_merge_equals_direct(void)
{
    ep_analytics_t *direct = ep_analytics_create();
    ep_analytics_t *p1 = ep_analytics_create(), *p2 = ep_analytics_create();
    ep_analytics_t *central = ep_analytics_create();
    ep_event_t **evs = make_events(300);
    ep_buf_t d1 = EP_BUF_INIT, d2 = EP_BUF_INIT, d3 = EP_BUF_INIT, x = EP_BUF_INIT, y = EP_BUF_INIT;
    ep_analytics_stats_t st;

    ep_analytics_set_clock(direct, fake_clock, NULL);
    ep_analytics_set_clock(p1, fake_clock, NULL);
    ep_analytics_set_clock(p2, fake_clock, NULL);
    ep_analytics_set_clock(central, fake_clock, NULL);
    ep_analytics_add_batch(direct, evs, 300);
    /* Two processors each see part of the stream, one of them over two deltas. */
    ep_analytics_add_batch(p1, evs, 100);
    EP_ASSERT_EQ(ep_analytics_take_delta(p1, 0xaaa, 1, &d1), 1);
    EP_ASSERT_EQ(ep_analytics_take_delta(p1, 0xaaa, 2, &x), 0); /* nothing new */
    ep_analytics_add_batch(p1, evs + 100, 50);
    EP_ASSERT_EQ(ep_analytics_take_delta(p1, 0xaaa, 2, &d2), 1);
    ep_analytics_add_batch(p2, evs + 150, 150);
    EP_ASSERT_EQ(ep_analytics_take_delta(p2, 0xbbb, 1, &d3), 1);

    EP_ASSERT_EQ(ep_analytics_merge_delta(central, d1.data, d1.len), 0);
    EP_ASSERT_EQ(ep_analytics_merge_delta(central, d3.data, d3.len), 0);
    EP_ASSERT_EQ(ep_analytics_merge_delta(central, d2.data, d2.len), 0);
    /* A retried delta is recognised and not counted twice. */
    EP_ASSERT_EQ(ep_analytics_merge_delta(central, d1.data, d1.len), EP_EEXIST);
    EP_ASSERT_EQ(ep_analytics_merge_delta(central, d2.data, d2.len), EP_EEXIST);
    /* Malformed deltas change nothing: every truncation, and a flipped version. */
    for (size_t cut = 1; cut < d3.len; cut += (cut < 64 ? 1 : 97)) {
        ep_buf_t t = EP_BUF_INIT;
        ep_buf_append(&t, d3.data, cut);
        if (cut > 13) {
            t.data[13] = 9; /* a new seq (byte 13), so the body is what gets checked */
        }
        EP_ASSERT_EQ(ep_analytics_merge_delta(central, t.data, t.len), EP_EPARSE);
        ep_buf_close(&t);
    }
    d3.data[4] = 2;
    EP_ASSERT_EQ(ep_analytics_merge_delta(central, d3.data, d3.len), EP_EPARSE);

    ep_analytics_summary_json(direct, &x);
    ep_analytics_summary_json(central, &y);
    strip_processing(&x);
    strip_processing(&y);
    EP_ASSERT_STR_EQ(x.data, y.data);
    ep_analytics_stats(central, &st);
    EP_ASSERT_EQ(st.deltas_merged, 3);
    EP_ASSERT_EQ(st.deltas_duplicate >= 2, 1);
    EP_ASSERT_EQ(st.senders, 2);
    EP_ASSERT_EQ(st.total_events, 300);

    ep_buf_close(&d1);
    ep_buf_close(&d2);
    ep_buf_close(&d3);
    ep_buf_close(&x);
    ep_buf_close(&y);
    free_events(evs, 300);
    ep_analytics_destroy(direct);
    ep_analytics_destroy(p1);
    ep_analytics_destroy(p2);
    ep_analytics_destroy(central);
}

static void test_timeseries_json(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_event_t **evs = make_events(300);
    ep_buf_t b = EP_BUF_INIT;
    char err[200];
    yajl_val v, series;
    const char *sp[] = {"series", NULL};

    ep_analytics_set_clock(a, fake_clock, NULL);
    ep_analytics_add_batch(a, evs, 300);
    fake_now_us += 25 * 1000000LL;
    for (int i = 0; i < 30; i++) {
        evs[i]->received_us = fake_now_us; /* accepted now */
    }
    ep_analytics_add_batch(a, evs, 30);
    EP_ASSERT_EQ(ep_analytics_timeseries_json(a, 300, 10, "event_type", &b), 0);
    v = yajl_tree_parse(b.data, err, sizeof(err));
    EP_ASSERT(v != NULL);
    series = yajl_tree_get(v, sp, yajl_t_array);
    EP_ASSERT(series && YAJL_GET_ARRAY(series)->len == 3);
    EP_ASSERT(strstr(b.data, "\"key\":\"click\"") != NULL);
    yajl_tree_free(v);
    ep_buf_reset(&b);
    EP_ASSERT_EQ(ep_analytics_timeseries_json(a, 60, 1, "total", &b), 0);
    v = yajl_tree_parse(b.data, err, sizeof(err));
    EP_ASSERT(v != NULL);
    series = yajl_tree_get(v, sp, yajl_t_array);
    EP_ASSERT(series && YAJL_GET_ARRAY(series)->len == 1);
    {
        yajl_val counts = YAJL_GET_OBJECT(YAJL_GET_ARRAY(series)->values[0])->values[1];
        EP_ASSERT_EQ(YAJL_GET_ARRAY(counts)->len, 60);
        EP_ASSERT_EQ(YAJL_GET_INTEGER(YAJL_GET_ARRAY(counts)->values[59]), 30);
        /* The first 300 were accepted 10 ms before NOW_S: windows go by received_us (an
         * analytics replica replaying the stream later puts them in the same second). */
        EP_ASSERT_EQ(YAJL_GET_INTEGER(YAJL_GET_ARRAY(counts)->values[33]), 300);
        EP_ASSERT_EQ(YAJL_GET_INTEGER(YAJL_GET_ARRAY(counts)->values[34]), 0);
    }
    yajl_tree_free(v);
    ep_buf_reset(&b);
    EP_ASSERT_EQ(ep_analytics_timeseries_json(a, 3600, 1, "total", &b), EP_EINVAL);
    EP_ASSERT_EQ(ep_analytics_timeseries_json(a, 300, 10, "colour", &b), EP_EINVAL);
    EP_ASSERT_EQ(b.len, 0);
    ep_buf_close(&b);
    free_events(evs, 300);
    ep_analytics_destroy(a);
}

/* ------------------------------------------------- issue 14: forged deltas (finding 6) */

static void vput(ep_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        ep_buf_putc(b, (char)(v | 0x80));
        v >>= 7;
    }
    ep_buf_putc(b, (char)v);
}

static void u64put(ep_buf_t *b, uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        ep_buf_putc(b, (char)(v >> (8 * i)));
    }
}

static void section(ep_buf_t *b, int tag, const ep_buf_t *body)
{
    ep_buf_putc(b, (char)tag);
    vput(b, body->len);
    ep_buf_append(b, body->data, body->len);
}

/*
 * A hand-made delta as a hostile client would send it: counts (total,
 * with_user, batches, last_us), optionally a sources table with one name and
 * a second counts section.
 */
static void forge(ep_buf_t *out, uint64_t seq, uint64_t total, const char *source,
                  uint64_t source_count, int counts_twice)
{
    ep_buf_t b = EP_BUF_INIT;

    ep_buf_append(out, "EPAD\x01", 5);
    u64put(out, 0xf0f0);
    vput(out, seq);
    vput(&b, total);
    vput(&b, 0);
    vput(&b, total ? 1 : 0);
    vput(&b, 0);
    section(out, 1, &b);
    if (counts_twice) {
        section(out, 1, &b);
    }
    if (source) {
        ep_buf_reset(&b);
        vput(&b, 1);
        u64put(&b, 0x1234);
        vput(&b, source_count);
        vput(&b, strlen(source));
        ep_buf_append(&b, source, strlen(source));
        vput(&b, 0);
        section(out, 3, &b);
    }
    ep_buf_putc(out, 0);
    ep_buf_putc(out, 0);
    ep_buf_close(&b);
}

static uint64_t total_of(ep_analytics_t *a)
{
    ep_analytics_stats_t st;

    ep_analytics_stats(a, &st);
    return st.total_events;
}

/* Each forgery of finding 6 is refused with a reason, and nothing changes. */
static void test_forged_deltas_refused(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_buf_t d = EP_BUF_INIT, sum = EP_BUF_INIT;
    ep_parse_err_t err;
    uint64_t seq = 1;

    ep_analytics_set_clock(a, fake_clock, NULL);
    /* A plausible hand-made delta is merged: the format is right. */
    forge(&d, seq++, 5, "web", 5, 0);
    EP_ASSERT_EQ(ep_analytics_merge_delta_ex(a, d.data, d.len, &err), 0);
    EP_ASSERT_EQ(total_of(a), 5);
    ep_analytics_summary_json(a, &sum);
    strip_processing(&sum);

    struct {
        uint64_t total;
        const char *source;
        uint64_t count;
        int twice;
        const char *field;
    } bad[] = {
        {UINT64_C(1000000000000000), NULL, 0, 0, "counts.total"}, /* +10^15 events */
        {1, "fake", UINT64_C(1000000000000), 0, "sources"},       /* a source claiming 10^12 */
        {UINT64_C(1000000000000), "fake", UINT64_C(1000000000000), 0, "counts.total"},
        {UINT64_MAX, NULL, 0, 0, "counts.total"},  /* 2^64-1: wrapped the total before */
        {UINT64_C(1) << 63, NULL, 0, 1, "counts"}, /* twice 2^63 would wrap to 0 */
        {3, "web", 4, 0, "sources"},               /* more by source than in total */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ep_buf_t y = EP_BUF_INIT;
        ep_buf_reset(&d);
        forge(&d, seq++, bad[i].total, bad[i].source, bad[i].count, bad[i].twice);
        EP_ASSERT(ep_analytics_merge_delta_ex(a, d.data, d.len, &err) != 0);
        EP_ASSERT(err.msg[0] != '\0');
        EP_ASSERT_STR_EQ(err.field, bad[i].field);
        EP_ASSERT_EQ(total_of(a), 5);
        ep_analytics_summary_json(a, &y);
        strip_processing(&y);               /* which counts the refusals */
        EP_ASSERT_STR_EQ(y.data, sum.data); /* nothing merged, not even the source */
        ep_buf_close(&y);
    }
    /* Too large a body: refused before it is read. */
    {
        ep_buf_t big = EP_BUF_INIT;
        ep_buf_append(&big, d.data, d.len);
        while (big.len <= EP_ANALYTICS_DELTA_MAX_BYTES) {
            ep_buf_putc(&big, 0);
        }
        EP_ASSERT_EQ(ep_analytics_merge_delta_ex(a, big.data, big.len, &err), EP_EVALIDATE);
        EP_ASSERT_EQ(total_of(a), 5);
        ep_buf_close(&big);
    }
    ep_buf_close(&d);
    ep_buf_close(&sum);
    ep_analytics_destroy(a);
}

/* Merged totals saturate: many deltas at the cap can not wrap the aggregate around. */
static void test_merge_saturates(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_buf_t d = EP_BUF_INIT;
    uint64_t prev = 0;

    ep_analytics_set_clock(a, fake_clock, NULL);
    for (uint64_t seq = 1; seq <= 40; seq++) {
        ep_buf_reset(&d);
        forge(&d, seq, EP_ANALYTICS_DELTA_MAX_EVENTS, "web", EP_ANALYTICS_DELTA_MAX_EVENTS, 0);
        EP_ASSERT_EQ(ep_analytics_merge_delta(a, d.data, d.len), 0);
        EP_ASSERT(total_of(a) >= prev);
        prev = total_of(a);
    }
    EP_ASSERT_EQ(prev, 40 * EP_ANALYTICS_DELTA_MAX_EVENTS);
    EP_ASSERT_EQ(ep_sat_add(UINT64_MAX - 1, 5), UINT64_MAX);
    ep_buf_close(&d);
    ep_analytics_destroy(a);
}

/*
 * The largest delta a processor can write: every type and source name slot
 * full with 128-byte names, both top-k sketches full of long names, users in
 * every HLL register, every per-second and per-minute slot holding 20 keys,
 * latency and lag values in every histogram bucket. Measured, and it must fit
 * under EP_ANALYTICS_DELTA_MAX_BYTES (the /analytics/merge body limit).
 */
static void test_largest_delta_fits(void)
{
    ep_analytics_t *a = ep_analytics_create();
    ep_buf_t d = EP_BUF_INIT;
    int64_t t0 = fake_now_us;
    ep_parse_err_t err;
    ep_analytics_t *b = ep_analytics_create();
    int i = 0;

    ep_analytics_set_clock(a, fake_clock, NULL);
    ep_analytics_set_clock(b, fake_clock, NULL);
    /* 64 minutes of seconds, 24 events a second of distinct types and sources. */
    for (int sec = 0; sec < 64 * 60; sec++, fake_now_us += 1000000) {
        ep_event_t *evs[24];
        for (int k = 0; k < 24; k++, i++) {
            char type[140], src[140], user[80], page[80];
            ep_kv_t kv = {{"page", 4}, {page, 0}, 0};
            snprintf(type, sizeof(type), "type-%05d-%0120d", i % 1200, 0);
            snprintf(src, sizeof(src), "source-%05d-%0118d", (i * 7) % 1200, 0);
            snprintf(user, sizeof(user), "user-%07d-%060d", i, 0);
            snprintf(page, sizeof(page), "/page/%07d/%060d", i, 0);
            kv.val.len = (uint32_t)strlen(page);
            /* Latency and lag spread over every bucket of the histograms. */
            int64_t spread = ((int64_t)1 << (i % 32)) + (i * 7919) % ((int64_t)1 << (i % 32));
            evs[k] = ep_event_create(NULL, src, type, user, NULL, 0, &kv, 1,
                                     (fake_now_us - spread) / 1000 - 1);
            evs[k]->received_us = fake_now_us - spread;
            evs[k]->processed_us = fake_now_us;
        }
        ep_analytics_add_batch(a, evs, 24);
        for (int k = 0; k < 24; k++) {
            ep_event_destroy(evs[k]);
        }
    }
    EP_ASSERT_EQ(ep_analytics_take_delta(a, 0xbeef, 1, &d), 1);
    printf("largest delta: %zu bytes (%d events; limit %u)\n", d.len, i,
           EP_ANALYTICS_DELTA_MAX_BYTES);
    EP_ASSERT(d.len <= EP_ANALYTICS_DELTA_MAX_BYTES);
    EP_ASSERT_EQ(ep_analytics_merge_delta_ex(b, d.data, d.len, &err), 0);
    EP_ASSERT_EQ(total_of(b), (uint64_t)i);
    fake_now_us = t0;
    ep_buf_close(&d);
    ep_analytics_destroy(a);
    ep_analytics_destroy(b);
}

EP_TEST_LIST = {
    EP_TEST(test_known_set_exact),
    EP_TEST(test_concurrent_add_batch),
    EP_TEST(test_throughput),
    EP_TEST(test_delta_merge_equals_direct),
    EP_TEST(test_timeseries_json),
    EP_TEST(test_forged_deltas_refused),
    EP_TEST(test_merge_saturates),
    EP_TEST(test_largest_delta_fits),
    EP_TEST_END,
};
EP_TEST_MAIN()
