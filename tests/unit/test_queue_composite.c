/*
 * Unit tests of the composite queue over a memory queue and a "flaky" test
 * double (a memory queue whose writes can be switched off): strategies, per-
 * provider figures, reading from every provider with de-duplication by id.
 */
#include "base/ep_error.h"
#include "base/ep_time.h"
#include "queue/ep_queue.h"
#include "ep_test.h"

#include <stdatomic.h>

extern const ep_queue_provider_t ep_queue_memory_provider;

static atomic_int flaky_down; /* 1: unreachable (EP_EUNAVAIL) */
static atomic_int flaky_full; /* 1: refuses writes as full (EP_EFULL), stays ready */
static ep_queue_provider_t flaky;

static int flaky_publish(void *ctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    if (atomic_load(&flaky_down)) {
        return EP_EUNAVAIL;
    }
    if (atomic_load(&flaky_full)) {
        return EP_EFULL;
    }
    return ep_queue_memory_provider.publish(ctx, evs, n, cb, arg);
}

static int flaky_ready(void *ctx, char *reason, size_t len)
{
    if (atomic_load(&flaky_down)) {
        snprintf(reason, len, "flaky is down");
        return 0;
    }
    return ep_queue_memory_provider.ready(ctx, reason, len);
}

static ep_queue_t *make(const char *providers, const char *strategy, int64_t size)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    if (flaky.name == NULL) {
        flaky = ep_queue_memory_provider;
        flaky.name = "flaky";
        flaky.publish = flaky_publish;
        flaky.ready = flaky_ready;
        EP_ASSERT_EQ(ep_queue_provider_register(&flaky), 0);
    }
    ep_config_defaults(&cfg);
    {
        char v[32];
        snprintf(v, sizeof(v), "%lld", (long long)size);
        EP_ASSERT_EQ(ep_config_put(&cfg, "QUEUE_SIZE", v), 0);
    }
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_PROVIDERS", providers), 0);
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_STRATEGY", strategy), 0);
    if (ep_queue_create("composite", &cfg, &q, err, sizeof(err)) != 0) {
        EP__FAIL("create: %s", err);
    }
    return q;
}

static int last_status[64];
static size_t last_n;
static int calls;

static void on_published(void *arg, size_t n, const int *status)
{
    calls++;
    last_n = n;
    for (size_t i = 0; i < n && i < 64; i++) {
        last_status[i] = status[i];
    }
}

static int publish_n(ep_queue_t *q, int first, int n)
{
    ep_event_t *evs[64];
    char id[32];

    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "e%d", first + i);
        evs[i] = ep_event_create(id, "s", "t", NULL, "x", 1, NULL, 0, 0);
    }
    calls = 0;
    if (ep_queue_publish(q, evs, (size_t)n, on_published, NULL) != 0) {
        for (int i = 0; i < n; i++) {
            ep_event_destroy(evs[i]);
        }
        return -1;
    }
    EP_ASSERT_EQ(calls, 1);
    EP_ASSERT_EQ(last_n, n);
    return 0;
}

/* Consumes until empty; returns how many events reached the "workers" (acked). */
static int drain(ep_queue_t *q, char *seen, int max_id)
{
    ep_event_t *out[64];
    int total = 0, idle = 0;

    while (idle < 3) {
        int n = ep_queue_consume(q, out, 64, 100);
        if (n <= 0) {
            idle++;
            continue;
        }
        idle = 0;
        for (int i = 0; i < n; i++) {
            int id = atoi(out[i]->id.p + 1);
            EP_ASSERT(id >= 0 && id < max_id);
            EP_ASSERT_EQ(seen[id], 0); /* never handed out twice */
            seen[id] = 1;
        }
        total += n;
        ep_queue_ack(q, out, (size_t)n);
    }
    return total;
}

static void test_fail_fast_dual_write_and_dedup(void)
{
    ep_queue_t *q = make("memory, flaky", "fail-fast", 1000);
    char seen[100] = {0};
    ep_queue_stats_t st;
    ep_buf_t js = EP_BUF_INIT;
    char reason[200];

    atomic_store(&flaky_down, 0);
    EP_ASSERT_EQ(publish_n(q, 0, 50), 0);
    for (int i = 0; i < 50; i++) {
        EP_ASSERT_EQ(last_status[i], 0);
    }
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    EP_ASSERT_EQ(drain(q, seen, 100), 50); /* 100 copies, 50 processed */
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 50);
    EP_ASSERT_EQ(st.acked, 50);
    ep_queue_stats_json(q, &js);
    EP_ASSERT(strstr(js.data, "\"deduplicated\":50") != NULL);
    EP_ASSERT(strstr(js.data, "\"memory\":{\"ready\":true,\"published\":50") != NULL);
    EP_ASSERT(strstr(js.data, "\"flaky\":{\"ready\":true,\"published\":50") != NULL);
    ep_buf_close(&js);
    ep_queue_close(q);
    ep_queue_destroy(q);
}

static void test_fail_fast_reports_a_failed_provider(void)
{
    ep_queue_t *q = make("memory,flaky", "fail-fast", 1000);
    char seen[100] = {0};
    char reason[200];

    atomic_store(&flaky_down, 1);
    EP_ASSERT_EQ(publish_n(q, 0, 10), 0);
    for (int i = 0; i < 10; i++) {
        EP_ASSERT_EQ(last_status[i], EP_EUNAVAIL);
    }
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT(strstr(reason, "flaky degraded") != NULL);
    /* No rollback: the copy that reached memory is still processed (once). */
    EP_ASSERT_EQ(drain(q, seen, 100), 10);
    atomic_store(&flaky_down, 0);
    ep_queue_destroy(q);
}

/* Issue 20 item 7: a provider that is down is counted as unavailable, never as full. */
static void test_unavailable_and_full_are_counted_apart(void)
{
    ep_queue_t *q = make("memory,flaky", "fail-fast", 1000);
    char seen[100] = {0};
    ep_queue_stats_t st;
    ep_buf_t js = EP_BUF_INIT;

    atomic_store(&flaky_down, 1);
    EP_ASSERT_EQ(publish_n(q, 0, 10), 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.rejected_unavailable, 10);
    EP_ASSERT_EQ(st.rejected_full, 0);
    atomic_store(&flaky_down, 0);
    atomic_store(&flaky_full, 1);
    EP_ASSERT_EQ(publish_n(q, 10, 5), 0);
    for (int i = 0; i < 5; i++) {
        EP_ASSERT_EQ(last_status[i], EP_EFULL);
    }
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.rejected_full, 5);
    EP_ASSERT_EQ(st.rejected_unavailable, 10);
    EP_ASSERT_EQ(st.enqueued, 0);
    ep_queue_stats_json(q, &js);
    EP_ASSERT(strstr(js.data, "\"flaky\":{\"ready\":true,\"published\":0,\"failed\":15,"
                              "\"failed_full\":5,\"failed_unavailable\":10,") != NULL);
    EP_ASSERT(strstr(js.data, "\"memory\":{\"ready\":true,\"published\":15,\"failed\":0,"
                              "\"failed_full\":0,\"failed_unavailable\":0,") != NULL);
    ep_buf_close(&js);
    atomic_store(&flaky_full, 0);
    EP_ASSERT_EQ(drain(q, seen, 100), 15);
    ep_queue_destroy(q);
}

static void test_best_effort(void)
{
    ep_queue_t *q = make("memory,flaky", "best-effort", 5);
    char seen[100] = {0};
    char reason[200];
    ep_buf_t js = EP_BUF_INIT;

    atomic_store(&flaky_down, 1);
    EP_ASSERT_EQ(publish_n(q, 0, 4), 0);
    for (int i = 0; i < 4; i++) {
        EP_ASSERT_EQ(last_status[i], 0); /* memory took them */
    }
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1); /* degraded but usable */
    /* memory is now too full for 4 more and flaky is down: all failed, never success. */
    EP_ASSERT_EQ(publish_n(q, 10, 4), 0);
    for (int i = 0; i < 4; i++) {
        EP_ASSERT(last_status[i] != 0);
    }
    ep_queue_stats_json(q, &js);
    EP_ASSERT(strstr(js.data, "\"flaky\":{\"ready\":false,\"published\":0,\"failed\":8") != NULL);
    ep_buf_close(&js);
    EP_ASSERT_EQ(drain(q, seen, 100), 4);
    atomic_store(&flaky_down, 0);
    ep_queue_destroy(q);
}

static void test_nack_lets_a_copy_through_again(void)
{
    ep_queue_t *q = make("memory,flaky", "fail-fast", 100);
    ep_event_t *out[4];
    char seen[100] = {0};
    int n;

    EP_ASSERT_EQ(publish_n(q, 0, 1), 0);
    n = ep_queue_consume(q, out, 4, 1000);
    EP_ASSERT_EQ(n, 1);
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 0), 0);
    /* The redelivered copy (or the other provider's) is processed exactly once more. */
    EP_ASSERT_EQ(drain(q, seen, 100), 1);
    ep_queue_destroy(q);
}

static void test_config_errors(void)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256];

    ep_queue_destroy(make("memory", "fail-fast", 10)); /* registers the double */
    ep_config_defaults(&cfg);
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_PROVIDERS", "memory, bogus"), 0);
    EP_ASSERT_EQ(ep_queue_create("composite", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "COMPOSITE_PROVIDERS") && strstr(err, "bogus"));
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_PROVIDERS", "memory,memory"), 0);
    EP_ASSERT_EQ(ep_queue_create("composite", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_PROVIDERS", "composite"), 0);
    EP_ASSERT_EQ(ep_queue_create("composite", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_PROVIDERS", " , "), 0);
    EP_ASSERT_EQ(ep_queue_create("composite", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(q == NULL);
}

static void test_close_drains_every_provider(void)
{
    ep_queue_t *q = make("memory,flaky", "best-effort", 1000);
    ep_event_t *out[64];
    int total = 0, n;

    /* A reading instance (its workers have called consume) drains every provider on close. */
    EP_ASSERT_EQ(ep_queue_consume(q, out, 64, 0), 0);
    EP_ASSERT_EQ(publish_n(q, 0, 30), 0);
    ep_queue_close(q);
    EP_ASSERT(ep_queue_publish(q, out, 0, NULL, NULL) == EP_ECLOSED);
    while ((n = ep_queue_consume(q, out, 64, 1000)) != EP_ECLOSED) {
        EP_ASSERT(n >= 0);
        total += n;
        ep_queue_ack(q, out, (size_t)n);
    }
    EP_ASSERT_EQ(total, 30);
    ep_queue_destroy(q);
}

/*
 * A consumer of its own through the composite: each child that has consumers of
 * its own gets the name (here a memory double that records it), the others are
 * made as usual; a plain queue asks nobody.
 */
static char own_name[32];
static int own_calls;

static int own_consumer_hook(void *opts, const char *name, char *err, size_t errlen)
{
    own_calls++;
    snprintf(own_name, sizeof(own_name), "%s", name);
    return 0;
}

/*
 * Pacing (the claim table holds only the newest ids): a "slow" memory double
 * reads one batch per few milliseconds, the plain memory queue as fast as the
 * workers take them. Without pacing the fast pump claims far more ids than the
 * table holds before the slow one reads their copies, which are then processed
 * again. The table and the lead are made small here (ep__composite_test_limits).
 * A provider whose reads fail or find nothing must hold nobody back at once.
 */
void ep__composite_test_limits(size_t claim_capacity, uint64_t pace_lead, int64_t recent_ms);

static atomic_int slow_down; /* 1: the slow double's reads fail (EP_EUNAVAIL) */
static atomic_int slow_reads;
static int slow_down_after; /* >0: goes down by itself after this many reads with events */

static int slow_consume(void *ctx, ep_event_t **out, size_t max, int timeout_ms)
{
    int n;

    if (atomic_load(&slow_down)) {
        ep_time_sleep_ms(5);
        return EP_EUNAVAIL;
    }
    ep_time_sleep_ms(4);
    n = ep_queue_memory_provider.consume(ctx, out, max, timeout_ms);
    if (n > 0 && atomic_fetch_add(&slow_reads, 1) + 1 == slow_down_after) {
        atomic_store(&slow_down, 1);
    }
    return n;
}

static ep_queue_t *make_paced(int64_t size, int64_t recent_ms)
{
    static ep_queue_provider_t slow;

    if (slow.name == NULL) {
        slow = ep_queue_memory_provider;
        slow.name = "slow";
        slow.consume = slow_consume;
        EP_ASSERT_EQ(ep_queue_provider_register(&slow), 0);
    }
    atomic_store(&slow_down, 0);
    atomic_store(&slow_reads, 0);
    /* A big read counts as catching up for recent_ms, so a busy machine does not end pacing. */
    ep__composite_test_limits(6400, 500, recent_ms);
    return make("memory,slow", "fail-fast", size);
}

/* Reads until want ids were seen (each at most once) or limit_ms passed; returns ids seen. */
static int read_ids(ep_queue_t *q, char *seen, int max_id, int want, int64_t limit_ms)
{
    ep_event_t *out[256];
    int total = 0;
    int64_t end = ep_time_mono_ms() + limit_ms;

    while (total < want && ep_time_mono_ms() < end) {
        int n = ep_queue_consume(q, out, 256, 100);
        for (int i = 0; i < n; i++) {
            int id = atoi(out[i]->id.p + 1);
            EP_ASSERT(id >= 0 && id < max_id);
            if (seen[id]) {
                EP__FAIL("id e%d processed twice", id);
            }
            seen[id] = 1;
        }
        if (n > 0) {
            total += n;
            ep_queue_ack(q, out, (size_t)n);
        }
    }
    return total;
}

/* Closes q and reads until it is drained; returns the events read (each id at most once). */
static int close_and_drain(ep_queue_t *q, char *seen, int max_id)
{
    ep_event_t *out[256];
    int total = 0, n;
    int64_t end = ep_time_mono_ms() + 60000;

    ep_queue_close(q);
    while ((n = ep_queue_consume(q, out, 256, 100)) != EP_ECLOSED) {
        EP_ASSERT(ep_time_mono_ms() < end); /* closing must not hang */
        for (int i = 0; i < n; i++) {
            int id = atoi(out[i]->id.p + 1);
            EP_ASSERT(id >= 0 && id < max_id);
            if (seen[id]) {
                EP__FAIL("id e%d processed twice", id);
            }
            seen[id] = 1;
        }
        if (n > 0) {
            total += n;
            ep_queue_ack(q, out, (size_t)n);
        }
    }
    return total;
}

static void test_fast_provider_is_paced_so_copies_are_recognized(void)
{
    enum { N = 40000 };
    ep_queue_t *q = make_paced(N, 10000);
    static char seen[N];
    ep_buf_t js = EP_BUF_INIT;

    memset(seen, 0, sizeof(seen));
    slow_down_after = 0;
    for (int i = 0; i < N; i += 64) {
        EP_ASSERT_EQ(publish_n(q, i, 64 < N - i ? 64 : N - i), 0);
    }
    EP_ASSERT_EQ(read_ids(q, seen, N, N, 120000), N);
    EP_ASSERT_EQ(close_and_drain(q, seen, N), 0); /* the late copies are all duplicates */
    ep_queue_stats_json(q, &js);
    EP_ASSERT(strstr(js.data, "\"deduplicated\":40000") != NULL);
    EP_ASSERT(strstr(js.data, "\"paced_ms\":") != NULL);
    ep_buf_close(&js);
    ep_queue_destroy(q);
    ep__composite_test_limits(0, 0, 0);
}

/* A provider that stops delivering (here: its reads fail) does not hold the other back. */
static void test_a_provider_going_down_does_not_stall_the_other(void)
{
    enum { N = 3000 };
    ep_queue_t *q = make_paced(N, 60000);
    static char seen[N];

    memset(seen, 0, sizeof(seen));
    slow_down_after = 2; /* two big batches (catching up), then down */
    for (int i = 0; i < N; i += 64) {
        EP_ASSERT_EQ(publish_n(q, i, 64 < N - i ? 64 : N - i), 0);
    }
    /* Everything arrives through the fast provider, long before the 60 s window ends. */
    EP_ASSERT_EQ(read_ids(q, seen, N, N, 30000), N);
    EP_ASSERT_EQ(atomic_load(&slow_down), 1);
    atomic_store(&slow_down, 0);
    slow_down_after = 0;
    /* Back up: closing drains the slow provider, whose copies are all duplicates. */
    EP_ASSERT_EQ(close_and_drain(q, seen, N), 0);
    ep_queue_destroy(q);
    ep__composite_test_limits(0, 0, 0);
}

/* Closing while one provider is far ahead and the other catching up drains both. */
static void test_close_while_paced_drains(void)
{
    enum { N = 20000 };
    ep_queue_t *q = make_paced(N, 10000);
    static char seen[N];
    int total;

    memset(seen, 0, sizeof(seen));
    slow_down_after = 0;
    for (int i = 0; i < N; i += 64) {
        EP_ASSERT_EQ(publish_n(q, i, 64 < N - i ? 64 : N - i), 0);
    }
    total = read_ids(q, seen, N, 2000, 60000);
    EP_ASSERT(total >= 2000);
    total += close_and_drain(q, seen, N);
    EP_ASSERT_EQ(total, N);
    ep_queue_destroy(q);
    ep__composite_test_limits(0, 0, 0);
}

static void test_own_consumer_reaches_the_children(void)
{
    static ep_queue_provider_t named;
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    named = ep_queue_memory_provider;
    named.name = "named";
    named.own_consumer = own_consumer_hook;
    EP_ASSERT_EQ(ep_queue_provider_register(&named), 0);
    ep_config_defaults(&cfg);
    EP_ASSERT_EQ(ep_config_put(&cfg, "COMPOSITE_PROVIDERS", "memory,named"), 0);
    EP_ASSERT_EQ(ep_queue_create("composite", &cfg, &q, err, sizeof(err)), 0);
    EP_ASSERT_EQ(own_calls, 0);
    ep_queue_destroy(q);
    EP_ASSERT_EQ(ep_queue_open_consumer(ep_queue_provider_find("composite"), &cfg, "analytics", &q,
                                        err, sizeof(err)),
                 0);
    EP_ASSERT_EQ(own_calls, 1);
    EP_ASSERT_STR_EQ(own_name, "analytics");
    ep_queue_destroy(q);
}

EP_TEST_LIST = {
    EP_TEST(test_fail_fast_dual_write_and_dedup),
    EP_TEST(test_fail_fast_reports_a_failed_provider),
    EP_TEST(test_unavailable_and_full_are_counted_apart),
    EP_TEST(test_best_effort),
    EP_TEST(test_nack_lets_a_copy_through_again),
    EP_TEST(test_config_errors),
    EP_TEST(test_close_drains_every_provider),
    EP_TEST(test_own_consumer_reaches_the_children),
    EP_TEST(test_fast_provider_is_paced_so_copies_are_recognized),
    EP_TEST(test_a_provider_going_down_does_not_stall_the_other),
    EP_TEST(test_close_while_paced_drains),
    EP_TEST_END,
};
EP_TEST_MAIN()
