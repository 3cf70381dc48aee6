/* Tests for the worker pool (src/pipeline/ep_worker_pool.c) over a memory queue. */
#include "base/ep_str.h"
#include "ep_test.h"

#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "pipeline/ep_sink.h"
#include "base/ep_time.h"
#include "pipeline/ep_worker_pool.h"

#include <fcntl.h>
#include <stdatomic.h>

#define N_EVENTS 10000

static char tmpdir[64];
static char sink_path[128];

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
    return q;
}

static ep_sink_t *make_file_sink(void)
{
    ep_sink_t *s = NULL;
    char spec[256], err[256] = "";

    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ep_pool_XXXXXX");
    EP_ASSERT(mkdtemp(tmpdir) != NULL);
    snprintf(sink_path, sizeof(sink_path), "%s/sink.ndjson", tmpdir);
    snprintf(spec, sizeof(spec), "file:%s", sink_path);
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    return s;
}

static void remove_sink_file(void)
{
    unlink(sink_path);
    rmdir(tmpdir);
}

/* Publishes one event at a time, retrying while the queue is full. */
static void publish_retry(ep_queue_t *q, ep_event_t *ev)
{
    for (;;) {
        int rc = ep_queue_publish(q, &ev, 1, NULL, NULL);
        if (rc == 0) {
            return;
        }
        EP_ASSERT_EQ(rc, EP_EFULL);
        ep_time_sleep_ms(1);
    }
}

static void publish_range(ep_queue_t *q, int first, int n)
{
    char id[32];

    for (int i = first; i < first + n; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        publish_retry(q, ep_event_create(id, "test", "unit", "u", "x", 1, NULL, 0, 0));
    }
}

/*
 * Reads the sink file and checks every line is one of e0..e<n-1>, each exactly
 * once. Returns the number of lines.
 */
static int check_sink_file(int n)
{
    unsigned char *seen = ep_calloc((size_t)n, 1);
    ep_buf_t b = EP_BUF_INIT;
    char chunk[65536], *p, *nl;
    ssize_t r;
    int fd = open(sink_path, O_RDONLY), lines = 0;

    EP_ASSERT(fd >= 0);
    ep_buf_puts(&b, "");
    while ((r = read(fd, chunk, sizeof(chunk))) > 0) {
        ep_buf_append(&b, chunk, (size_t)r);
    }
    close(fd);
    EP_ASSERT(b.len == 0 || b.data[b.len - 1] == '\n');
    for (p = b.data; (nl = strchr(p, '\n')) != NULL; p = nl + 1) {
        int v;
        EP_ASSERT(strncmp(p, EP_STRLIT("{\"id\":\"e")) == 0);
        v = atoi(p + 8);
        EP_ASSERT(v >= 0 && v < n);
        EP_ASSERT_EQ(seen[v], 0);
        seen[v] = 1;
        EP_ASSERT(nl[-1] == '}');
        lines++;
    }
    ep_buf_close(&b);
    ep_free(seen);
    return lines;
}

typedef struct {
    _Atomic uint64_t events;
    _Atomic uint64_t unstamped;
    _Atomic uint64_t empty_ids;
} hook_rec_t;

static void count_hook(void *arg, ep_event_t *const *evs, size_t n)
{
    hook_rec_t *h = arg;

    atomic_fetch_add(&h->events, n);
    for (size_t i = 0; i < n; i++) {
        if (evs[i]->processed_us == 0) {
            atomic_fetch_add(&h->unstamped, 1);
        }
        if (evs[i]->id.len == 0) {
            atomic_fetch_add(&h->empty_ids, 1);
        }
    }
}

static void test_create_invalid(void)
{
    ep_queue_t *q = make_queue(10);
    ep_worker_pool_t *p = (ep_worker_pool_t *)&p;

    EP_ASSERT_EQ(ep_worker_pool_create(q, NULL, 0, 10, &p), EP_EINVAL);
    EP_ASSERT(p == NULL);
    EP_ASSERT_EQ(ep_worker_pool_create(q, NULL, 2, 0, &p), EP_EINVAL);
    EP_ASSERT_EQ(ep_worker_pool_create(NULL, NULL, 2, 10, &p), EP_EINVAL);
    ep_worker_pool_destroy(NULL);
    ep_queue_destroy(q);
}

static void test_process_to_file(void)
{
    ep_queue_t *q = make_queue(1000);
    ep_sink_t *s = make_file_sink();
    ep_worker_pool_t *p = NULL;
    hook_rec_t hook = {0, 0, 0};
    ep_worker_pool_stats_t ps;
    ep_queue_stats_t qs;

    EP_ASSERT_EQ(ep_worker_pool_create(q, s, 4, 64, &p), 0);
    ep_worker_pool_set_hook(p, count_hook, &hook);
    EP_ASSERT_EQ(ep_worker_pool_start(p), 0);
    EP_ASSERT_EQ(ep_worker_pool_start(p), EP_EINVAL); /* already running */
    publish_range(q, 0, N_EVENTS);
    ep_queue_close(q);
    EP_ASSERT_EQ(ep_worker_pool_stop(p, 10000), 0);

    ep_worker_pool_stats(p, &ps);
    EP_ASSERT_EQ(ps.processed, N_EVENTS);
    EP_ASSERT_EQ(ps.errors, 0);
    EP_ASSERT(ps.batches >= N_EVENTS / 64);
    EP_ASSERT(ps.batches <= N_EVENTS);
    EP_ASSERT_EQ(ps.workers, 4);
    EP_ASSERT_EQ(ps.active, 0);
    EP_ASSERT(ps.latency_us_sum > 0);
    EP_ASSERT_EQ(atomic_load(&hook.events), N_EVENTS);
    EP_ASSERT_EQ(atomic_load(&hook.unstamped), 0);

    ep_queue_stats(q, &qs);
    EP_ASSERT_EQ(qs.enqueued, N_EVENTS);
    EP_ASSERT_EQ(qs.acked, N_EVENTS);
    EP_ASSERT_EQ(qs.size, 0);
    EP_ASSERT_EQ(qs.in_flight, 0);

    ep_worker_pool_destroy(p);
    ep_sink_destroy(s);
    EP_ASSERT_EQ(check_sink_file(N_EVENTS), N_EVENTS);
    remove_sink_file();
    ep_queue_destroy(q);
}

static void test_poison_event_acked(void)
{
    ep_queue_t *q = make_queue(100);
    ep_sink_t *s = make_file_sink();
    ep_worker_pool_t *p = NULL;
    hook_rec_t hook = {0, 0, 0};
    ep_worker_pool_stats_t ps;
    ep_queue_stats_t qs;
    ep_event_t *bad;

    EP_ASSERT_EQ(ep_worker_pool_create(q, s, 2, 8, &p), 0);
    ep_worker_pool_set_hook(p, count_hook, &hook);
    publish_range(q, 0, 10);
    /* ep_event_create always makes an id, so blank it to fake a poison event. */
    bad = ep_event_create("poison", "test", "unit", NULL, "x", 1, NULL, 0, 0);
    bad->id.p = "";
    bad->id.len = 0;
    publish_retry(q, bad);
    publish_range(q, 10, 10);
    EP_ASSERT_EQ(ep_worker_pool_start(p), 0);
    ep_queue_close(q);
    EP_ASSERT_EQ(ep_worker_pool_stop(p, 10000), 0);

    ep_worker_pool_stats(p, &ps);
    EP_ASSERT_EQ(ps.processed, 20);
    EP_ASSERT_EQ(ps.errors, 1);
    EP_ASSERT_EQ(atomic_load(&hook.events), 20);
    EP_ASSERT_EQ(atomic_load(&hook.empty_ids), 0);
    ep_queue_stats(q, &qs);
    EP_ASSERT_EQ(qs.acked, 21); /* the poison event is acked, not redelivered */
    EP_ASSERT_EQ(qs.nacked, 0);
    EP_ASSERT_EQ(qs.dequeued, 21);

    ep_worker_pool_destroy(p);
    ep_sink_destroy(s);
    EP_ASSERT_EQ(check_sink_file(20), 20);
    remove_sink_file();
    ep_queue_destroy(q);
}

static void test_sink_failure_nacks(void)
{
    ep_queue_t *q = make_queue(100);
    ep_sink_t *s = NULL;
    ep_worker_pool_t *p = NULL;
    ep_worker_pool_stats_t ps;
    ep_queue_stats_t qs;
    char err[256];
    int64_t t0, dt, deadline;

    /* Every write to /dev/full fails with ENOSPC. */
    EP_ASSERT_EQ(ep_sink_create("file:/dev/full", &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_worker_pool_create(q, s, 2, 16, &p), 0);
    /* Never dead-lettered within the test, however slowly a loaded machine runs it. */
    ep_worker_pool_set_max_attempts(p, 1000000);
    publish_range(q, 0, 50);
    EP_ASSERT_EQ(ep_worker_pool_start(p), 0);
    deadline = ep_time_mono_ms() + 30000;
    do {
        ep_time_sleep_ms(5);
        ep_worker_pool_stats(p, &ps);
    } while (ps.errors < 50 && ep_time_mono_ms() < deadline);
    EP_ASSERT(ps.errors >= 50); /* every event failed at least once */
    ep_queue_close(q);
    t0 = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_worker_pool_stop(p, 200), EP_ETIMEDOUT);
    dt = ep_time_mono_ms() - t0;
    EP_ASSERT(dt < 2000);

    ep_worker_pool_stats(p, &ps);
    EP_ASSERT_EQ(ps.processed, 0);
    ep_worker_pool_destroy(p); /* joins the workers: the queue's figures are final now */
    ep_queue_stats(q, &qs);
    EP_ASSERT_EQ(qs.acked, 0);
    EP_ASSERT(qs.nacked >= ps.errors);
    EP_ASSERT_EQ(qs.size, 50); /* nothing lost: all waiting for redelivery */
    EP_ASSERT_EQ(qs.in_flight, 0);
    ep_sink_destroy(s);
    ep_queue_destroy(q); /* frees the 50 events (ASan checks) */
}

static void test_stop_idle_and_destroy_running(void)
{
    ep_queue_t *q = make_queue(10);
    ep_worker_pool_t *p = NULL;
    int64_t t0;

    EP_ASSERT_EQ(ep_worker_pool_create(q, NULL, 3, 4, &p), 0);
    EP_ASSERT_EQ(ep_worker_pool_stop(p, 100), 0); /* never started */
    EP_ASSERT_EQ(ep_worker_pool_start(p), 0);
    /* Queue left open and empty: stop times out waiting, but nothing was left behind. */
    t0 = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_worker_pool_stop(p, 100), 0);
    EP_ASSERT(ep_time_mono_ms() - t0 < 2000);
    /* Restart, then destroy while running. */
    EP_ASSERT_EQ(ep_worker_pool_start(p), 0);
    publish_range(q, 0, 5);
    ep_worker_pool_destroy(p);
    ep_queue_destroy(q);
}

EP_TEST_LIST = {
    EP_TEST(test_create_invalid),
    EP_TEST(test_process_to_file),
    EP_TEST(test_poison_event_acked),
    EP_TEST(test_sink_failure_nacks),
    EP_TEST(test_stop_idle_and_destroy_running),
    EP_TEST_END,
};

EP_TEST_MAIN()
