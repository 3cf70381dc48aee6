#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "base/ep_str.h"
#include "ep_test.h"
#include "ep_test_mhd.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/*
 * A fake processor (libmicrohttpd, in-process): POST /enqueue decodes the
 * DataBatch and counts every event id "ev-<n>"; it can answer 503 or be slow.
 * GET /health answers 200; GET /ready 200, or 503 while not_ready is set.
 */

#define MAX_IDS 4096

enum { MODE_OK = 0, MODE_FULL = 1 };

typedef struct srv_s {
    struct MHD_Daemon *d;
    int port;
    atomic_int mode;
    atomic_int delay_ms; /* per /enqueue request */
    atomic_int stopping;
    atomic_int not_ready; /* GET /ready answers 503 */
    atomic_int probes;    /* GET /ready requests answered */
    atomic_int requests;  /* /enqueue requests answered */
    atomic_int max_batch; /* largest batch seen */
    atomic_int bad;       /* undecodable bodies or wrong content type */
    atomic_int seen[MAX_IDS];
} srv_t;

static srv_t srv;

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *text)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (code == 503) {
        MHD_add_response_header(resp, "Retry-After", "1");
    }
    ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void record_batch(const ep_test_body_t *b)
{
    ep_event_t **evs = NULL;
    size_t n = 0;
    int max;

    if (ep_event_batch_decode_pb(b->p ? b->p : "", b->len, &evs, &n) != 0) {
        atomic_fetch_add(&srv.bad, 1);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int id = -1;
        if (sscanf(evs[i]->id.p, "ev-%d", &id) == 1 && id >= 0 && id < MAX_IDS) {
            atomic_fetch_add(&srv.seen[id], 1);
        } else {
            atomic_fetch_add(&srv.bad, 1);
        }
        ep_event_destroy(evs[i]);
    }
    ep_free(evs);
    max = atomic_load(&srv.max_batch);
    while ((int)n > max && !atomic_compare_exchange_weak(&srv.max_batch, &max, (int)n)) {
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    ep_test_body_t *b = NULL;
    const char *ct;
    int delay;

    if (ep_test_mhd_body(con_cls, upload_data, upload_size, &b)) {
        return MHD_YES;
    }
    if (strcmp(url, "/health") == 0) {
        return reply(conn, 200, "{\"status\":\"healthy\"}");
    }
    if (strcmp(url, "/ready") == 0) {
        atomic_fetch_add(&srv.probes, 1);
        if (atomic_load(&srv.not_ready)) {
            return reply(conn, 503, "{\"error\":\"queue closed\"}");
        }
        return reply(conn, 200, "{\"ready\":true}");
    }
    if (strcmp(url, "/enqueue") != 0 || strcmp(method, "POST") != 0) {
        return reply(conn, 404, "{}");
    }
    ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (ct == NULL || strcmp(ct, "application/x-protobuf") != 0) {
        atomic_fetch_add(&srv.bad, 1);
    }
    delay = atomic_load(&srv.delay_ms);
    for (int i = 0; i < delay && !atomic_load(&srv.stopping); i++) {
        ep_time_sleep_ms(1);
    }
    atomic_fetch_add(&srv.requests, 1);
    if (atomic_load(&srv.mode) == MODE_FULL) {
        return reply(conn, 503, "{\"error\":\"queue full\"}");
    }
    record_batch(b);
    return reply(conn, 202, "{\"status\":\"accepted\"}");
}

static void srv_start(int mode, int delay_ms)
{
    memset(&srv, 0, sizeof(srv));
    atomic_store(&srv.mode, mode);
    atomic_store(&srv.delay_ms, delay_ms);
    srv.d = ep_test_mhd_start(on_request, &srv.port);
}

static void srv_stop(void)
{
    atomic_store(&srv.stopping, 1);
    MHD_stop_daemon(srv.d);
    srv.d = NULL;
}

/* ------------------------------------------------------------ helpers */

/* Upstream timeout of the tests whose requests should succeed: generous, for a loaded machine. */
#define OK_MS 30000

static ep_queue_t *open_forward(int port, int timeout_ms)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.processor_url, sizeof(cfg.processor_url), "http://127.0.0.1:%d/", port);
    cfg.upstream_timeout_ms = timeout_ms;
    if (ep_queue_create("forward", &cfg, &q, err, sizeof(err)) != 0) {
        EP__FAIL("ep_queue_create: %s", err);
    }
    return q;
}

static ep_event_t *make_event(int i)
{
    char id[32];

    snprintf(id, sizeof(id), "ev-%d", i);
    return ep_event_create(id, "unit-test", "page_view", "user-1", "payload", 7, NULL, 0, 0);
}

/* Per publish call: how often its callback ran and what it got. */
typedef struct call_s {
    atomic_int calls;
    atomic_int n;
    atomic_int first_status;
    atomic_int all_same; /* every status equal to the first */
} call_t;

static atomic_int total_calls;

static void on_published(void *arg, size_t n, const int *status)
{
    call_t *c = arg;
    int same = 1;

    for (size_t i = 1; i < n; i++) {
        if (status[i] != status[0]) {
            same = 0;
        }
    }
    atomic_store(&c->n, (int)n);
    atomic_store(&c->first_status, n > 0 ? status[0] : 0);
    atomic_store(&c->all_same, same);
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_add(&total_calls, 1);
}

static void wait_calls(int n, int timeout_ms)
{
    int64_t deadline = ep_time_mono_ms() + timeout_ms;

    while (atomic_load(&total_calls) < n && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(2);
    }
}

typedef struct publisher_s {
    ep_queue_t *q;
    call_t *calls;
    int from, to;
} publisher_t;

static void *publish_range(void *arg)
{
    publisher_t *p = arg;

    for (int i = p->from; i < p->to; i++) {
        ep_event_t *ev = make_event(i);
        EP_ASSERT_EQ(ep_queue_publish(p->q, &ev, 1, on_published, &p->calls[i]), 0);
        EP_ASSERT(ev == NULL);
    }
    return NULL;
}

/* Publishes events 0..n from 4 threads, one event per call, and waits for every callback. */
static void publish_from_threads(ep_queue_t *q, call_t *calls, int n)
{
    publisher_t pubs[4];
    pthread_t th[4];

    for (int t = 0; t < 4; t++) {
        pubs[t] = (publisher_t){q, calls, t * n / 4, (t + 1) * n / 4};
        EP_ASSERT_EQ(pthread_create(&th[t], NULL, publish_range, &pubs[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        pthread_join(th[t], NULL);
    }
    wait_calls(n, 2 * OK_MS);
}

/* ------------------------------------------------------------ tests */

static void check_delivered_once(call_t *calls, int n)
{
    /* Give a duplicate callback or delivery a moment to show up. */
    ep_time_sleep_ms(50);
    EP_ASSERT_EQ(atomic_load(&total_calls), n);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(atomic_load(&calls[i].calls), 1);
        EP_ASSERT_EQ(atomic_load(&calls[i].n), 1);
        EP_ASSERT_EQ(atomic_load(&calls[i].first_status), 0);
        EP_ASSERT_EQ(atomic_load(&srv.seen[i]), 1);
    }
    EP_ASSERT_EQ(atomic_load(&srv.bad), 0);
}

static void test_threads_exactly_once(void)
{
    static call_t calls[1000];
    ep_queue_t *q;
    ep_queue_stats_t st;
    char reason[128];

    srv_start(MODE_OK, 0);
    q = open_forward(srv.port, OK_MS);
    publish_from_threads(q, calls, 1000);
    check_delivered_once(calls, 1000);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 1000);
    EP_ASSERT_EQ(st.size, 0);
    EP_ASSERT_EQ(st.in_flight, 0);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    ep_queue_destroy(q);
    srv_stop();
}

static void test_batching_under_load(void)
{
    static call_t calls[1000];
    ep_queue_t *q;
    int requests;

    /* A processor taking 5 ms per request keeps every slot busy, so batches form. */
    srv_start(MODE_OK, 5);
    q = open_forward(srv.port, OK_MS);
    publish_from_threads(q, calls, 1000);
    check_delivered_once(calls, 1000);
    requests = atomic_load(&srv.requests);
    printf("  1000 events in %d requests, largest batch %d\n", requests,
           atomic_load(&srv.max_batch));
    EP_ASSERT(requests < 500);
    EP_ASSERT(atomic_load(&srv.max_batch) > 1);
    EP_ASSERT(atomic_load(&srv.max_batch) <= 256);
    ep_queue_destroy(q);
    srv_stop();
}

static void test_one_call_split_over_requests(void)
{
    static ep_event_t *evs[600];
    call_t call;
    ep_queue_t *q;

    memset(&call, 0, sizeof(call));
    srv_start(MODE_OK, 0);
    q = open_forward(srv.port, OK_MS);
    for (int i = 0; i < 600; i++) {
        evs[i] = make_event(i);
    }
    EP_ASSERT_EQ(ep_queue_publish(q, evs, 600, on_published, &call), 0);
    for (int i = 0; i < 600; i++) {
        EP_ASSERT(evs[i] == NULL);
    }
    wait_calls(1, OK_MS);
    ep_time_sleep_ms(50); /* time for a duplicate callback to show up */
    EP_ASSERT_EQ(atomic_load(&call.calls), 1);
    EP_ASSERT_EQ(atomic_load(&call.n), 600);
    EP_ASSERT_EQ(atomic_load(&call.first_status), 0);
    EP_ASSERT_EQ(atomic_load(&call.all_same), 1);
    for (int i = 0; i < 600; i++) {
        EP_ASSERT_EQ(atomic_load(&srv.seen[i]), 1);
    }
    /* At most 256 events per request. */
    EP_ASSERT(atomic_load(&srv.requests) >= 3);
    EP_ASSERT(atomic_load(&srv.max_batch) <= 256);
    ep_queue_destroy(q);
    srv_stop();
}

static void test_processor_full(void)
{
    static call_t calls[100];
    ep_queue_t *q;
    ep_queue_stats_t st;
    char reason[128];

    srv_start(MODE_FULL, 0);
    q = open_forward(srv.port, OK_MS);
    publish_from_threads(q, calls, 100);
    ep_time_sleep_ms(50);
    EP_ASSERT_EQ(atomic_load(&total_calls), 100);
    for (int i = 0; i < 100; i++) {
        EP_ASSERT_EQ(atomic_load(&calls[i].calls), 1);
        EP_ASSERT_EQ(atomic_load(&calls[i].first_status), EP_EFULL);
    }
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 0);
    EP_ASSERT_EQ(st.rejected_full, 100);
    /* A full processor is reachable: backpressure, not an outage. */
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    ep_queue_destroy(q);
    srv_stop();
}

static void test_processor_down(void)
{
    static call_t calls[40];
    ep_queue_t *q;
    char reason[256] = "";
    int port, fd = ep_test_refusing_socket(&port);

    q = open_forward(port, OK_MS);
    /* Never claimed before the processor answered. */
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT(strncmp(reason, EP_STRLIT("processor ")) == 0);
    publish_from_threads(q, calls, 40);
    ep_time_sleep_ms(20);
    EP_ASSERT_EQ(atomic_load(&total_calls), 40);
    for (int i = 0; i < 40; i++) {
        EP_ASSERT_EQ(atomic_load(&calls[i].calls), 1);
        EP_ASSERT_EQ(atomic_load(&calls[i].first_status), EP_EUNAVAIL);
    }
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT(strncmp(reason, EP_STRLIT("processor unreachable: ")) == 0);
    EP_ASSERT(strlen(reason) > 23);
    ep_queue_destroy(q);
    close(fd);
}

static void test_recovers_when_processor_returns(void)
{
    static call_t calls[1];
    ep_queue_t *q;
    char reason[256];
    int port;
    int64_t deadline;

    /* Learn a free port, stop the server, fail once, restart on the same port. */
    srv_start(MODE_OK, 0);
    port = srv.port;
    srv_stop();
    q = open_forward(port, 1000);
    publish_from_threads(q, calls, 1);
    EP_ASSERT_EQ(atomic_load(&calls[0].first_status), EP_EUNAVAIL);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);

    memset(&srv, 0, sizeof(srv));
    srv.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, (uint16_t)port, NULL,
                             NULL, on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED,
                             ep_test_mhd_completed, NULL, MHD_OPTION_END);
    if (srv.d == NULL) {
        /* Someone else took the port; nothing to test then. */
        ep_queue_destroy(q);
        return;
    }
    /* ready() probes /health in the background, at most once a second. */
    deadline = ep_time_mono_ms() + OK_MS;
    while (ep_queue_ready(q, reason, sizeof(reason)) == 0 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(50);
    }
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    ep_queue_destroy(q);
    srv_stop();
}

/* Waits up to timeout_ms for ready() to give want; returns what it gave last. */
static int wait_ready(ep_queue_t *q, int want, char *reason, size_t len, int timeout_ms)
{
    int64_t deadline = ep_time_mono_ms() + timeout_ms;
    int got;

    while ((got = ep_queue_ready(q, reason, len)) != want && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(20);
    }
    return got;
}

/* Asserts ready() gives 0 until its reason contains what (up to timeout_ms). */
static void wait_not_ready_reason(ep_queue_t *q, const char *what, char *reason, size_t len,
                                  int timeout_ms)
{
    int64_t deadline = ep_time_mono_ms() + timeout_ms;

    reason[0] = '\0';
    while (strstr(reason, what) == NULL) {
        if (ep_time_mono_ms() > deadline) {
            EP__FAIL("no '%s' in the reason within %d ms (last: %s)", what, timeout_ms, reason);
        }
        EP_ASSERT_EQ(ep_queue_ready(q, reason, len), 0);
        ep_time_sleep_ms(20);
    }
}

static void test_ready_is_probed_before_claimed(void)
{
    ep_queue_t *q;
    char reason[512] = "";
    int port, fd = ep_test_refusing_socket(&port);

    /* Nothing listens: not ready from the first call, and the reason says why. */
    q = open_forward(port, 1000);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT(strncmp(reason, EP_STRLIT("processor not probed yet")) == 0 ||
              strncmp(reason, EP_STRLIT("processor unreachable: ")) == 0);
    /* The probe sent at init fails: unreachable. */
    wait_not_ready_reason(q, "processor unreachable: ", reason, sizeof(reason), 10000);
    ep_queue_destroy(q);
    close(fd);

    /* A processor that is up but not ready: not ready, with its answer. */
    srv_start(MODE_OK, 0);
    atomic_store(&srv.not_ready, 1);
    q = open_forward(srv.port, 1000);
    wait_not_ready_reason(q, "HTTP 503", reason, sizeof(reason), 10000);
    EP_ASSERT(atomic_load(&srv.probes) > 0);
    EP_ASSERT(strncmp(reason, EP_STRLIT("processor not ready: HTTP 503 from http://127.0.0.1:")) ==
              0);
    EP_ASSERT(strstr(reason, "/ready") != NULL && strstr(reason, "queue closed") != NULL);

    /* ready() follows the processor while nothing is published, both ways. */
    atomic_store(&srv.not_ready, 0);
    EP_ASSERT_EQ(wait_ready(q, 1, reason, sizeof(reason), 10000), 1);
    atomic_store(&srv.not_ready, 1);
    EP_ASSERT_EQ(wait_ready(q, 0, reason, sizeof(reason), 10000), 0);
    EP_ASSERT(strstr(reason, "HTTP 503") != NULL);
    EP_ASSERT_EQ(atomic_load(&srv.requests), 0);
    ep_queue_destroy(q);
    srv_stop();
}

static void test_publish_only(void)
{
    ep_queue_t *q;
    ep_event_t *out[4];
    ep_event_t *ev;
    ep_buf_t js = EP_BUF_INIT;
    char reason[128];
    call_t call;

    srv_start(MODE_OK, 0);
    q = open_forward(srv.port, OK_MS);
    EP_ASSERT(!ep_queue_is_local(q));
    EP_ASSERT_EQ(ep_queue_consume(q, out, 4, 10), EP_ENOTSUP);
    EP_ASSERT_EQ(ep_queue_ack(q, out, 0), EP_ENOTSUP);
    EP_ASSERT_EQ(ep_queue_nack(q, out, 0, 0), EP_ENOTSUP);
    ep_queue_stats_json(q, &js);
    EP_ASSERT(js.data != NULL && strstr(js.data, "\"processor_url\"") != NULL);
    EP_ASSERT(js.data[0] == ',');
    ep_buf_close(&js);

    /* An empty publish completes at once; a NULL callback is allowed. */
    memset(&call, 0, sizeof(call));
    EP_ASSERT_EQ(ep_queue_publish(q, out, 0, on_published, &call), 0);
    EP_ASSERT_EQ(atomic_load(&call.calls), 1);
    EP_ASSERT_EQ(atomic_load(&call.n), 0);
    ev = make_event(7);
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, NULL, NULL), 0);
    EP_ASSERT(ev == NULL);
    EP_ASSERT_EQ(ep_queue_flush(q, OK_MS), 0);
    EP_ASSERT_EQ(atomic_load(&srv.seen[7]), 1);

    ep_queue_close(q);
    ev = make_event(1);
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, on_published, NULL), EP_ECLOSED);
    EP_ASSERT(ev != NULL);
    ep_event_destroy(ev);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    ep_queue_destroy(q);
    srv_stop();
}

static void test_bad_config(void)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    memset(&cfg, 0, sizeof(cfg));
    EP_ASSERT_EQ(ep_queue_create("forward", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(q == NULL);
    EP_ASSERT(strstr(err, "PROCESSOR_URL") != NULL);
    snprintf(cfg.processor_url, sizeof(cfg.processor_url), "localhost:8082");
    EP_ASSERT_EQ(ep_queue_create("forward", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
}

static void test_destroy_completes_every_callback(void)
{
    static call_t calls[3000];
    ep_queue_t *q;

    /*
     * 800 ms per request and a 1 s timeout: the first wave of requests lands,
     * the second is still in flight when destroy stops waiting.
     */
    srv_start(MODE_OK, 800);
    q = open_forward(srv.port, 1000);
    for (int i = 0; i < 3000; i++) {
        ep_event_t *ev = make_event(i);
        EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, on_published, &calls[i]), 0);
    }
    ep_queue_destroy(q);
    /* Every callback ran before destroy returned. */
    EP_ASSERT_EQ(atomic_load(&total_calls), 3000);
    for (int i = 0; i < 3000; i++) {
        int st = atomic_load(&calls[i].first_status);
        EP_ASSERT_EQ(atomic_load(&calls[i].calls), 1);
        EP_ASSERT(st == 0 || st == EP_ECLOSED || st == EP_EUNAVAIL);
    }
    srv_stop();
}

EP_TEST_LIST = {
    EP_TEST(test_threads_exactly_once),
    EP_TEST(test_batching_under_load),
    EP_TEST(test_one_call_split_over_requests),
    EP_TEST(test_processor_full),
    EP_TEST(test_processor_down),
    EP_TEST(test_recovers_when_processor_returns),
    EP_TEST(test_ready_is_probed_before_claimed),
    EP_TEST(test_publish_only),
    EP_TEST(test_bad_config),
    EP_TEST(test_destroy_completes_every_callback),
    EP_TEST_END,
};

EP_TEST_MAIN()
