/* ep_metrics: exact striped counters under threads, histograms, exposition, escaping. */
#include "obs/ep_metrics.h"
#include "ep_test.h"

#include <math.h>
#include <pthread.h>

#define THREADS    4
#define PER_THREAD 250000

typedef struct {
    ep_metric_child_t *c;
    ep_metric_child_t *h;
} work_t;

static void *hammer(void *arg)
{
    work_t *w = arg;

    for (int i = 0; i < PER_THREAD; i++) {
        ep_metrics_counter_add(w->c, 1);
        ep_metrics_hist_observe(w->h, (uint64_t)(i % 4) * 1000000); /* 0, 1, 2, 3 ms in ns */
    }
    return NULL;
}

static int contains(const ep_buf_t *b, const char *s)
{
    char *copy = strndup(b->data, b->len);
    int found = strstr(copy, s) != NULL;

    free(copy);
    return found;
}

static void test_counter_exact_under_threads(void)
{
    static const double secs[] = EP_METRICS_SECONDS_BUCKETS;
    const char *ln[] = {"role"};
    const char *lv[] = {"ingest"};
    ep_metrics_t *m;
    pthread_t t[THREADS];
    work_t w;
    uint64_t count, cum[EP_METRICS_MAX_BUCKETS];
    double sum;

    ep_metrics_create(0, &m);
    w.c = ep_metrics_child(ep_metrics_counter(m, "c_total", "c", 1, ln), lv);
    w.h =
        ep_metrics_child(ep_metrics_histogram(m, "h_seconds", "h", 0, NULL, secs, 14, 1e-9), NULL);
    EP_ASSERT(w.c != NULL && w.h != NULL);
    for (int i = 0; i < THREADS; i++) {
        EP_ASSERT_EQ(pthread_create(&t[i], NULL, hammer, &w), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    EP_ASSERT_EQ(ep_metrics_counter_value(w.c), THREADS * PER_THREAD);
    EP_ASSERT_EQ(ep_metrics_hist_read(w.h, &count, &sum, cum), 14);
    EP_ASSERT_EQ(count, THREADS * PER_THREAD);
    /* 0 ms -> le 0.0005; 1 ms -> le 0.001; 2 ms -> le 0.0025; 3 ms -> le 0.005. */
    EP_ASSERT_EQ(cum[0], THREADS * PER_THREAD / 4);
    EP_ASSERT_EQ(cum[1], THREADS * PER_THREAD / 2);
    EP_ASSERT_EQ(cum[2], THREADS * PER_THREAD / 4 * 3);
    EP_ASSERT_EQ(cum[3], THREADS * PER_THREAD);
    EP_ASSERT(fabs(sum - (double)THREADS * PER_THREAD / 4 * 0.006) < 1e-6);
    ep_metrics_destroy(m);
}

static void test_histogram_exposition(void)
{
    const double b[] = {0.5, 1, 2.5};
    const char *ln[] = {"route"};
    const char *lv[] = {"/x"};
    ep_metrics_t *m;
    ep_metric_t *f;
    ep_metric_child_t *c;
    ep_buf_t out = EP_BUF_INIT;

    ep_metrics_create(64, &m);
    f = ep_metrics_histogram(m, "lat_seconds", "Latency.", 1, ln, b, 3, 1e-3); /* observed in ms */
    c = ep_metrics_child(f, lv);
    EP_ASSERT(ep_metrics_child(f, lv) == c);
    ep_metrics_hist_observe(c, 0);    /* le 0.5 */
    ep_metrics_hist_observe(c, 1000); /* exactly 1: le 1 */
    ep_metrics_hist_observe(c, 2000); /* le 2.5 */
    ep_metrics_hist_observe(c, 9000); /* +Inf */
    ep_metrics_render(m, &out);
    EP_ASSERT(contains(&out, "# HELP lat_seconds Latency.\n# TYPE lat_seconds histogram\n"));
    EP_ASSERT(contains(&out, "lat_seconds_bucket{route=\"/x\",le=\"0.5\"} 1\n"));
    EP_ASSERT(contains(&out, "lat_seconds_bucket{route=\"/x\",le=\"1\"} 2\n"));
    EP_ASSERT(contains(&out, "lat_seconds_bucket{route=\"/x\",le=\"2.5\"} 3\n"));
    EP_ASSERT(contains(&out, "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4\n"));
    EP_ASSERT(contains(&out, "lat_seconds_sum{route=\"/x\"} 12\n"));
    EP_ASSERT(contains(&out, "lat_seconds_count{route=\"/x\"} 4\n"));
    /* Quantiles interpolate inside the bucket, as histogram_quantile does. */
    EP_ASSERT(fabs(ep_metrics_hist_quantile(c, 0.25) - 0.5) < 1e-9);
    EP_ASSERT(fabs(ep_metrics_hist_quantile(c, 0.5) - 1.0) < 1e-9);
    EP_ASSERT(fabs(ep_metrics_hist_quantile(c, 0.99) - 2.5) < 1e-9);
    ep_buf_close(&out);
    ep_metrics_destroy(m);
}

static void collect(void *arg, ep_buf_t *out)
{
    const char *ln[] = {"kind"};
    const char *lv[] = {"x"};

    ep_metrics_put_family(out, "coll_total", EP_METRIC_COUNTER, "From a collector.");
    ep_metrics_put_sample(out, "coll_total", 1, ln, lv, *(double *)arg);
}

static void test_exposition_lines(void)
{
    const char *ln[] = {"a", "b"};
    const char *lv[] = {"1", "2"};
    ep_metrics_t *m;
    ep_metric_t *g;
    ep_buf_t out = EP_BUF_INIT;
    double v = 7;

    ep_metrics_create(0, &m);
    EP_ASSERT(ep_metrics_counter(m, "plain_total", "Help with \\ and\nnewline.", 0, NULL));
    EP_ASSERT(ep_metrics_counter(m, "plain_total", "dup", 0, NULL) == NULL); /* duplicate */
    EP_ASSERT(ep_metrics_counter(m, "bad-name", "x", 0, NULL) == NULL);
    EP_ASSERT(ep_metrics_counter(m, "x_total", "x", 1, (const char *[]){"__r"}) == NULL);
    g = ep_metrics_gauge(m, "temp", "T.", 2, ln);
    ep_metrics_gauge_set(ep_metrics_child(g, lv), 0.25);
    ep_metrics_gauge_set(ep_metrics_child(g, (const char *[]){"3", "4"}), NAN);
    ep_metrics_collector_add(m, collect, &v);
    ep_metrics_render(m, &out);
    EP_ASSERT(contains(&out, "# HELP plain_total Help with \\\\ and\\nnewline.\n"));
    EP_ASSERT(contains(&out, "# TYPE plain_total counter\nplain_total 0\n"));
    EP_ASSERT(contains(&out, "# TYPE temp gauge\ntemp{a=\"1\",b=\"2\"} 0.25\n"));
    EP_ASSERT(contains(&out, "temp{a=\"3\",b=\"4\"} NaN\n"));
    EP_ASSERT(contains(&out, "# TYPE coll_total counter\ncoll_total{kind=\"x\"} 7\n"));
    ep_metrics_collector_remove(m, collect, &v);
    ep_buf_reset(&out);
    ep_metrics_render(m, &out);
    EP_ASSERT(!contains(&out, "coll_total"));
    ep_buf_close(&out);
    ep_metrics_destroy(m);
}

static void test_label_escaping(void)
{
    const char *ln[] = {"path"};
    const char *lv[] = {"a\"b\\c\nd"};
    ep_metrics_t *m;
    ep_buf_t out = EP_BUF_INIT;

    ep_metrics_create(0, &m);
    ep_metrics_counter_add(ep_metrics_child(ep_metrics_counter(m, "e_total", "E.", 1, ln), lv), 3);
    ep_metrics_render(m, &out);
    EP_ASSERT(contains(&out, "e_total{path=\"a\\\"b\\\\c\\nd\"} 3\n"));
    ep_buf_reset(&out);
    ep_metrics_put_value(&out, 1e-5);
    ep_buf_putc(&out, ' ');
    ep_metrics_put_value(&out, INFINITY);
    ep_buf_putc(&out, ' ');
    ep_metrics_put_value(&out, 12345678901.0);
    ep_buf_putc(&out, '\0');
    EP_ASSERT_STR_EQ(out.data, "1e-05 +Inf 12345678901");
    ep_buf_close(&out);
    ep_metrics_destroy(m);
}

static void test_bounded_children_and_process(void)
{
    const char *ln[] = {"k"};
    ep_metrics_t *m;
    ep_metric_t *f;
    char v[16];
    int made = 0;
    ep_buf_t out = EP_BUF_INIT;

    ep_metrics_create(16, &m); /* 16 cells: 16 counter children at most */
    f = ep_metrics_counter(m, "n_total", "N.", 1, ln);
    for (int i = 0; i < 40; i++) {
        const char *lv[] = {v};
        snprintf(v, sizeof(v), "%d", i);
        made += ep_metrics_child(f, lv) != NULL;
    }
    EP_ASSERT_EQ(made, 16);
    ep_metrics_counter_add(NULL, 1); /* refused children are no-ops */
    ep_metrics_hist_observe(NULL, 1);
    ep_metrics_process_collect(NULL, &out);
    EP_ASSERT(contains(&out, "# TYPE process_cpu_seconds_total counter\n"));
    EP_ASSERT(contains(&out, "process_resident_memory_bytes "));
    EP_ASSERT(contains(&out, "process_open_fds "));
    EP_ASSERT(contains(&out, "process_start_time_seconds "));
    ep_buf_close(&out);
    ep_metrics_destroy(m);
}

EP_TEST_LIST = {EP_TEST(test_counter_exact_under_threads),
                EP_TEST(test_histogram_exposition),
                EP_TEST(test_exposition_lines),
                EP_TEST(test_label_escaping),
                EP_TEST(test_bounded_children_and_process),
                EP_TEST_END};

EP_TEST_MAIN()
