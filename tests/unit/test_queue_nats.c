/*
 * Tests for the "nats" queue provider (src/queue/nats/) against a real
 * nats-server started by each test (ep_nats_server.h).
 */
#include "ep_nats_server.h"
#include "base/ep_str.h"
#include "ep_test.h"

#ifdef EP_WITH_NATS

#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "base/ep_time.h"

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>

#define WAIT_MS 30000 /* for what should happen: generous, for a loaded machine */

/* ------------------------------------------------------------ helpers */

static void make_cfg(ep_config_t *cfg, const char *url)
{
    ep_config_defaults(cfg);
    EP_ASSERT_EQ(ep_config_put(cfg, "NATS_URL", url), 0);
    cfg->max_attempts = 5;
    cfg->upstream_timeout_ms = 10000; /* a PubAck late on a loaded machine is no failure */
}

static ep_queue_t *make_queue(const char *url)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";
    int rc;

    make_cfg(&cfg, url);
    rc = ep_queue_create("nats", &cfg, &q, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "create: %s\n", err);
    }
    EP_ASSERT_EQ(rc, 0);
    return q;
}

static void wait_ready(ep_queue_t *q)
{
    char reason[256] = "";
    int64_t deadline = ep_time_mono_ms() + WAIT_MS;

    while (!ep_queue_ready(q, reason, sizeof(reason))) {
        if (ep_time_mono_ms() > deadline) {
            EP__FAIL("not ready: %s", reason);
        }
        ep_time_sleep_ms(20);
    }
}

static ep_event_t *make_event(const char *id)
{
    return ep_event_create(id, "test", "unit", "u1", "payload", 7, NULL, 0, 0);
}

/* Publish callbacks: counts per status, across many calls. */
typedef struct pub_rec_s {
    pthread_mutex_t lock;
    int calls;
    int ok;
    int full;
    int other;
} pub_rec_t;

static void pub_rec_init(pub_rec_t *r)
{
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
}

static void on_publish(void *arg, size_t n, const int *status)
{
    pub_rec_t *r = arg;

    pthread_mutex_lock(&r->lock);
    r->calls++;
    for (size_t i = 0; i < n; i++) {
        if (status[i] == 0) {
            r->ok++;
        } else if (status[i] == EP_EFULL) {
            r->full++;
        } else {
            r->other++;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static int pub_rec_calls(pub_rec_t *r)
{
    int c;

    pthread_mutex_lock(&r->lock);
    c = r->calls;
    pthread_mutex_unlock(&r->lock);
    return c;
}

static void wait_calls(pub_rec_t *r, int calls)
{
    int64_t deadline = ep_time_mono_ms() + WAIT_MS;

    while (pub_rec_calls(r) < calls) {
        if (ep_time_mono_ms() > deadline) {
            EP__FAIL("only %d of %d publish callbacks arrived", pub_rec_calls(r), calls);
        }
        ep_time_sleep_ms(5);
    }
}

/* Publishes ids prefix-0 .. prefix-(n-1) in batches of batch; waits for every callback. */
static void publish_ids(ep_queue_t *q, const char *prefix, int n, int batch, pub_rec_t *r)
{
    ep_event_t *evs[64];
    int calls = pub_rec_calls(r);

    EP_ASSERT(batch <= 64);
    for (int i = 0; i < n; i += batch) {
        int k = n - i < batch ? n - i : batch;

        for (int j = 0; j < k; j++) {
            char id[64];
            snprintf(id, sizeof(id), "%s-%d", prefix, i + j);
            evs[j] = make_event(id);
        }
        EP_ASSERT_EQ(ep_queue_publish(q, evs, (size_t)k, on_publish, r), 0);
        for (int j = 0; j < k; j++) {
            EP_ASSERT(evs[j] == NULL);
        }
        calls++;
    }
    wait_calls(r, calls);
}

/* Consumes until want events arrived (or the deadline); records ids by number. */
static int consume_ids(ep_queue_t *q, const char *prefix, int want, int *seen, int ack)
{
    ep_event_t *out[32];
    int64_t deadline = ep_time_mono_ms() + WAIT_MS;
    int total = 0;
    size_t plen = strlen(prefix);

    while (total < want && ep_time_mono_ms() < deadline) {
        int n = ep_queue_consume(q, out, 32, 200);

        EP_ASSERT(n >= 0);
        for (int i = 0; i < n; i++) {
            EP_ASSERT(strncmp(out[i]->id.p, prefix, plen) == 0 && out[i]->id.p[plen] == '-');
            seen[atoi(out[i]->id.p + plen + 1)]++;
        }
        total += n;
        if (n > 0) {
            if (ack) {
                EP_ASSERT_EQ(ep_queue_ack(q, out, (size_t)n), 0);
            } else {
                ep_queue_nack(q, out, (size_t)n, 0);
            }
        }
    }
    return total;
}

/* A plain nats.c connection of the test's own (raw publishes, DLQ subscription). */
static natsConnection *test_conn(const char *url)
{
    natsConnection *nc = NULL;

    EP_ASSERT_EQ(natsConnection_ConnectTo(&nc, url), NATS_OK);
    return nc;
}

/* A connection of the test's own (*nc) subscribed to the dead-letter subject. */
static natsSubscription *dlq_watch(const char *url, natsConnection **nc)
{
    natsSubscription *sub = NULL;

    *nc = test_conn(url);
    EP_ASSERT_EQ(natsConnection_SubscribeSync(&sub, *nc, "diplom.dlq"), NATS_OK);
    EP_ASSERT_EQ(natsConnection_Flush(*nc), NATS_OK);
    return sub;
}

/* ------------------------------------------------------------ tests */

static void test_round_trip_exact_ids(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    pub_rec_t r;
    int seen[300] = {0};
    ep_queue_stats_t st;
    ep_event_t *out[8];

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    pub_rec_init(&r);
    publish_ids(q, "rt", 300, 25, &r);
    EP_ASSERT_EQ(r.ok, 300);
    EP_ASSERT_EQ(r.other + r.full, 0);
    EP_ASSERT_EQ(consume_ids(q, "rt", 300, seen, 1), 300);
    for (int i = 0; i < 300; i++) {
        EP_ASSERT_EQ(seen[i], 1);
    }
    /* Nothing more, and nothing comes back after the acks. */
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 300), 0);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 300);
    EP_ASSERT_EQ(st.dequeued, 300);
    EP_ASSERT_EQ(st.acked, 300);
    EP_ASSERT_EQ(st.in_flight, 0);
    EP_ASSERT_EQ(st.capacity, -1);
    ep_queue_close(q);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 100), EP_ECLOSED);
    EP_ASSERT_EQ(ep_queue_publish(q, out, 0, NULL, NULL), EP_ECLOSED);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

static void test_nack_redelivers_and_counts_attempts(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    pub_rec_t r;
    ep_event_t *out[4];
    int64_t t0;
    int n;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    pub_rec_init(&r);
    publish_ids(q, "nk", 1, 1, &r);
    EP_ASSERT_EQ(r.ok, 1);
    for (uint32_t attempt = 1; attempt <= 3; attempt++) {
        n = ep_queue_consume(q, out, 4, WAIT_MS);
        EP_ASSERT_EQ(n, 1);
        EP_ASSERT_STR_EQ(out[0]->id.p, "nk-0");
        EP_ASSERT_EQ(out[0]->attempts, attempt);
        EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 0), 0);
    }
    /* A delayed nack is not handed out before its delay. */
    n = ep_queue_consume(q, out, 4, WAIT_MS);
    EP_ASSERT_EQ(n, 1);
    EP_ASSERT_EQ(out[0]->attempts, 4);
    t0 = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 400), 0);
    n = ep_queue_consume(q, out, 4, WAIT_MS);
    EP_ASSERT_EQ(n, 1);
    EP_ASSERT(ep_time_mono_ms() - t0 >= 300);
    EP_ASSERT_EQ(out[0]->attempts, 5);
    EP_ASSERT_EQ(ep_queue_ack(q, out, 1), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 4, 300), 0);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

/* Waits for one message on a core subscription; returns it (caller destroys) or fails. */
static natsMsg *next_dlq(natsSubscription *sub)
{
    natsMsg *m = NULL;

    EP_ASSERT_EQ(natsSubscription_NextMsg(&m, sub, WAIT_MS), NATS_OK);
    return m;
}

static void test_poison_goes_to_dlq_never_to_consumers(void)
{
    static const char garbage[] = "\xff\xfe this is not a DataMessage \x01\x02";
    ep_nats_server_t ns;
    ep_queue_t *q;
    natsConnection *nc;
    natsSubscription *dlq;
    natsMsg *m;
    pub_rec_t r;
    ep_event_t *out[8];
    const char *reason = NULL;
    ep_buf_t b = EP_BUF_INIT;
    int n, total = 0;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    dlq = dlq_watch(ns.url, &nc);
    /* Raw bytes straight onto the subject (the stream stores them), then a good event. */
    EP_ASSERT_EQ(natsConnection_Publish(nc, "diplom.messages", garbage, sizeof(garbage) - 1),
                 NATS_OK);
    EP_ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);
    pub_rec_init(&r);
    publish_ids(q, "ok", 1, 1, &r);
    for (int64_t end = ep_time_mono_ms() + WAIT_MS; ep_time_mono_ms() < end;) {
        n = ep_queue_consume(q, out, 8, 200);
        EP_ASSERT(n >= 0);
        for (int i = 0; i < n; i++) {
            EP_ASSERT_STR_EQ(out[i]->id.p, "ok-0");
        }
        if (n > 0) {
            ep_queue_ack(q, out, (size_t)n);
        }
        total += n;
        if (total == 1) {
            break;
        }
    }
    EP_ASSERT_EQ(total, 1);
    m = next_dlq(dlq);
    EP_ASSERT_EQ(natsMsg_GetDataLength(m), (int)sizeof(garbage) - 1);
    EP_ASSERT_STRN_EQ(natsMsg_GetData(m), garbage, sizeof(garbage) - 1);
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Dlq-Reason", &reason), NATS_OK);
    EP_ASSERT(strstr(reason, "undecodable") != NULL);
    natsMsg_Destroy(m);
    /* Terminated: it never comes back. */
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 500), 0);
    ep_queue_stats_json(q, &b);
    EP_ASSERT(strstr(b.data, "\"poison\":1") != NULL);
    ep_buf_close(&b);
    natsSubscription_Destroy(dlq);
    natsConnection_Destroy(nc);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

static void test_dead_letter_moves_event(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    natsConnection *nc;
    natsSubscription *dlq;
    natsMsg *m;
    pub_rec_t r;
    ep_event_t *out[4], *ev = NULL;
    const char *h = NULL;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    dlq = dlq_watch(ns.url, &nc);
    pub_rec_init(&r);
    publish_ids(q, "dl", 1, 1, &r);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 4, WAIT_MS), 1);
    EP_ASSERT_EQ(ep_queue_dead_letter(q, out, 1, "output failed\r\non every attempt"), 0);
    m = next_dlq(dlq);
    EP_ASSERT_EQ(ep_event_decode_pb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev), 0);
    EP_ASSERT_STR_EQ(ev->id.p, "dl-0");
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Dlq-Reason", &h), NATS_OK);
    EP_ASSERT_STR_EQ(h, "output failed  on every attempt");
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Attempts", &h), NATS_OK);
    EP_ASSERT_STR_EQ(h, "1");
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Event-Id", &h), NATS_OK);
    EP_ASSERT_STR_EQ(h, "dl-0");
    ep_event_destroy(ev);
    natsMsg_Destroy(m);
    /* The original was acknowledged: gone for the consumer. */
    EP_ASSERT_EQ(ep_queue_consume(q, out, 4, 500), 0);
    natsSubscription_Destroy(dlq);
    natsConnection_Destroy(nc);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

static void test_server_down_at_init_then_up(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    pub_rec_t r;
    char reason[256] = "";
    char url[64];
    ep_event_t *ev, *out[4];
    ep_queue_stats_t st;
    int port = ep_nats_free_port();

    snprintf(url, sizeof(url), "nats://127.0.0.1:%d", port);
    q = make_queue(url); /* nothing listens there: init still succeeds */
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT(strstr(reason, "NATS") != NULL);
    EP_ASSERT(strstr(reason, url) != NULL);
    pub_rec_init(&r);
    ev = make_event("down-0");
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, on_publish, &r), EP_EUNAVAIL);
    EP_ASSERT(ev != NULL); /* still ours */
    ep_event_destroy(ev);
    ep_queue_stats(q, &st); /* a broker that is down is not a full queue */
    EP_ASSERT_EQ(st.rejected_unavailable, 1);
    EP_ASSERT_EQ(st.rejected_full, 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 4, 100), 0);
    EP_ASSERT_EQ(pub_rec_calls(&r), 0);

    EP_ASSERT_EQ(ep_nats_server_start(&ns, port), 0);
    wait_ready(q);
    publish_ids(q, "up", 3, 3, &r);
    EP_ASSERT_EQ(r.ok, 3);
    {
        int seen[3] = {0};
        EP_ASSERT_EQ(consume_ids(q, "up", 3, seen, 1), 3);
    }
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

static void test_server_restart_keeps_events(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    pub_rec_t r;
    char reason[256];
    ep_event_t *ev;
    int seen[20] = {0};

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    pub_rec_init(&r);
    publish_ids(q, "rs", 10, 5, &r);
    EP_ASSERT_EQ(r.ok, 10);
    ep_nats_server_stop(&ns);
    for (int64_t end = ep_time_mono_ms() + WAIT_MS; ep_time_mono_ms() < end;) {
        if (!ep_queue_ready(q, reason, sizeof(reason))) {
            break;
        }
        ep_time_sleep_ms(10);
    }
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT(strstr(reason, "reconnecting") != NULL);
    ev = make_event("rs-x");
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, on_publish, &r), EP_EUNAVAIL);
    ep_event_destroy(ev);
    EP_ASSERT_EQ(ep_nats_server_restart(&ns), 0);
    wait_ready(q);
    publish_ids(q, "rs", 20, 20, &r); /* ids 0..9 again: de-duplicated by Nats-Msg-Id */
    EP_ASSERT_EQ(r.ok, 30);
    EP_ASSERT_EQ(consume_ids(q, "rs", 20, seen, 1), 20);
    for (int i = 0; i < 20; i++) {
        EP_ASSERT_EQ(seen[i], 1);
    }
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

/* Publishes n events with ids prefix-i and consumes exactly them back. */
static void round_trip(ep_queue_t *q, const char *prefix, int n)
{
    pub_rec_t r;
    int seen[16] = {0};

    EP_ASSERT(n <= 16);
    pub_rec_init(&r);
    publish_ids(q, prefix, n, n, &r);
    EP_ASSERT_EQ(r.ok, n);
    EP_ASSERT_EQ(consume_ids(q, prefix, n, seen, 1), n);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(seen[i], 1);
    }
}

/*
 * NATS_URL as a list (issue 20 item 4): any reachable server of the list is
 * used, whether the dead one comes first or last, with or without blanks
 * after the commas.
 */
static void test_url_list_uses_a_reachable_server(void)
{
    ep_nats_server_t ns;
    int dead = ep_nats_free_port();
    char url[256];
    ep_queue_t *q;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    for (int order = 0; order < 3; order++) {
        if (order == 0) {
            snprintf(url, sizeof(url), "nats://127.0.0.1:%d,%s", dead, ns.url);
        } else if (order == 1) {
            snprintf(url, sizeof(url), "%s,nats://127.0.0.1:%d", ns.url, dead);
        } else {
            snprintf(url, sizeof(url), "nats://127.0.0.1:%d, 127.0.0.1:%d", dead, ns.port);
        }
        q = make_queue(url);
        wait_ready(q);
        round_trip(q, order == 0 ? "l0" : order == 1 ? "l1" : "l2", 5);
        ep_queue_destroy(q);
    }
    ep_nats_server_cleanup(&ns);
}

/* The server that is down at start-up comes up later: the list still reaches it. */
static void test_url_list_all_down_then_one_up(void)
{
    ep_nats_server_t ns;
    int a = ep_nats_free_port(), b = ep_nats_free_port();
    char url[256], reason[256] = "";
    ep_queue_t *q;

    snprintf(url, sizeof(url), "nats://127.0.0.1:%d,nats://127.0.0.1:%d", a, b);
    q = make_queue(url);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
    EP_ASSERT_EQ(ep_nats_server_start(&ns, b), 0);
    wait_ready(q);
    round_trip(q, "ad", 5);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

/*
 * Failover: two independent servers (each with its own JetStream store). When
 * the one in use stops, the queue moves to the other, re-creates the stream
 * and the durable there, and publishes and consumes again.
 */
static void test_url_list_fails_over(void)
{
    ep_nats_server_t ns[2];
    char url[256], reason[256] = "";
    ep_queue_t *q;
    ep_buf_t b = EP_BUF_INIT;
    int first;

    EP_ASSERT_EQ(ep_nats_server_start(&ns[0], 0), 0);
    EP_ASSERT_EQ(ep_nats_server_start(&ns[1], 0), 0);
    snprintf(url, sizeof(url), "%s,%s", ns[0].url, ns[1].url);
    q = make_queue(url);
    wait_ready(q);
    round_trip(q, "fa", 5);
    ep_queue_stats_json(q, &b);
    EP_ASSERT(strstr(b.data, "\"server\":\"nats://127.0.0.1:") != NULL);
    first = strstr(b.data, ns[0].url) != NULL ? 0 : 1;
    EP_ASSERT(strstr(b.data, ns[first].url) != NULL);
    ep_nats_server_stop(&ns[first]);
    for (int64_t end = ep_time_mono_ms() + WAIT_MS; ep_time_mono_ms() < end;) {
        ep_buf_reset(&b);
        ep_queue_stats_json(q, &b);
        if (strstr(b.data, ns[1 - first].url) != NULL) {
            break;
        }
        ep_time_sleep_ms(20);
    }
    EP_ASSERT(strstr(b.data, ns[1 - first].url) != NULL);
    wait_ready(q);
    round_trip(q, "fb", 5);
    EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    ep_buf_close(&b);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns[0]);
    ep_nats_server_cleanup(&ns[1]);
}

static void test_bad_url_is_config_error(void)
{
    static const char *bad[] = {
        "nats://127.0.0.1:notaport", "http://127.0.0.1:4222", "nats://:4222",
        "nats://host:99999",         "nats://a b:1",          NULL};

    for (int i = 0; bad[i]; i++) {
        ep_config_t cfg;
        ep_queue_t *q = NULL;
        char err[256] = "";

        make_cfg(&cfg, bad[i]);
        EP_ASSERT_EQ(ep_queue_create("nats", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
        EP_ASSERT(q == NULL);
        EP_ASSERT(strstr(err, "NATS_URL") != NULL);
    }
    {
        /* A list longer than the pool we hand to nats.c. */
        ep_config_t cfg;
        ep_queue_t *q = NULL;
        char err[256] = "", url[256] = "nats://h:1";

        for (int i = 1; i < 40; i++) {
            strcat(url, ",h:1");
        }
        make_cfg(&cfg, url);
        EP_ASSERT_EQ(ep_queue_create("nats", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
        EP_ASSERT(strstr(err, "more than 32 servers") != NULL);
    }
}

/*
 * NATS_STREAM_REPLICAS (issue 18): the stream and consumers are made with that many
 * replicas. A single server cannot keep R3: the queue stays not ready and says why,
 * and makes no stream; with the default (1) the stream it makes has one replica.
 */
static void test_stream_replicas(void)
{
    ep_nats_server_t ns;
    natsConnection *nc;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "", reason[256] = "";
    int64_t deadline;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    make_cfg(&cfg, ns.url);
    EP_ASSERT_EQ(ep_config_put(&cfg, "NATS_STREAM_REPLICAS", "3"), 0);
    EP_ASSERT_EQ(ep_queue_create("nats", &cfg, &q, err, sizeof(err)), 0);
    deadline = ep_time_mono_ms() + WAIT_MS;
    while (!strstr(reason, "replicas") && ep_time_mono_ms() < deadline) {
        EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 0);
        ep_time_sleep_ms(50);
    }
    if (strstr(reason, "NATS cannot create stream DIPLOM_STREAM") == NULL ||
        strstr(reason, "replicas") == NULL) {
        EP__FAIL("reason: %s", reason);
    }
    nc = test_conn(ns.url);
    EP_ASSERT_EQ(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    EP_ASSERT(js_GetStreamInfo(&si, js, "DIPLOM_STREAM", NULL, NULL) != NATS_OK);
    ep_queue_destroy(q);

    make_cfg(&cfg, ns.url); /* NATS_STREAM_REPLICAS: 1 */
    q = make_queue(ns.url);
    wait_ready(q);
    EP_ASSERT_EQ(js_GetStreamInfo(&si, js, "DIPLOM_STREAM", NULL, NULL), NATS_OK);
    EP_ASSERT_EQ(si->Config->Replicas, 1);
    jsStreamInfo_Destroy(si);
    ep_queue_destroy(q);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    ep_nats_server_cleanup(&ns);
}

static void test_stream_full_is_efull(void)
{
    ep_nats_server_t ns;
    natsConnection *nc;
    jsCtx *js = NULL;
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    const char *subjects[] = {"diplom.*"};
    ep_queue_t *q;
    pub_rec_t r;
    ep_queue_stats_t st;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    /* An operator-made stream with a tiny limit: kept as is by the provider. */
    nc = test_conn(ns.url);
    EP_ASSERT_EQ(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    jsStreamConfig_Init(&sc);
    sc.Name = "DIPLOM_STREAM";
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.MaxMsgs = 3;
    sc.Discard = js_DiscardNew;
    sc.Storage = js_MemoryStorage;
    EP_ASSERT_EQ(js_AddStream(&si, js, &sc, NULL, NULL), NATS_OK);
    jsStreamInfo_Destroy(si);
    q = make_queue(ns.url);
    wait_ready(q);
    pub_rec_init(&r);
    publish_ids(q, "fl", 5, 5, &r);
    EP_ASSERT_EQ(r.ok, 3);
    EP_ASSERT_EQ(r.full, 2);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 3);
    EP_ASSERT_EQ(st.rejected_full, 2);
    ep_queue_destroy(q);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    ep_nats_server_cleanup(&ns);
}

static void test_stats_and_lag_json(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    pub_rec_t r;
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *out[4];
    ep_queue_stats_t st;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    pub_rec_init(&r);
    publish_ids(q, "st", 5, 5, &r);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 1, WAIT_MS), 1); /* creates the durable */
    /* The figures are refreshed once a second. */
    for (int64_t end = ep_time_mono_ms() + WAIT_MS; ep_time_mono_ms() < end;) {
        ep_queue_stats(q, &st);
        if (st.size == 4) {
            break;
        }
        ep_time_sleep_ms(50);
    }
    EP_ASSERT_EQ(st.size, 4);
    ep_queue_stats_json(q, &b);
    EP_ASSERT(strncmp(b.data, EP_STRLIT(",\"nats\":{\"connected\":true,")) == 0);
    EP_ASSERT(strstr(b.data, "\"stream_messages\":5") != NULL);
    EP_ASSERT(strstr(b.data, "\"pending\":4") != NULL);
    EP_ASSERT(strstr(b.data, "\"ack_pending\":1") != NULL);
    ep_buf_reset(&b);
    ep_queue_lag_json(q, &b);
    EP_ASSERT(strncmp(b.data, EP_STRLIT("{\"total\":4,\"pending\":4,\"ack_pending\":1")) == 0);
    EP_ASSERT(b.data[b.len - 1] == '}');
    ep_buf_close(&b);
    ep_queue_ack(q, out, 1);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

/* Publishers and consumers at once, on one queue instance (as `eventpipe run` does). */
#define CC_PUB 4
#ifdef EP_TEST_TSAN
#define CC_EACH 100 /* TSan: fewer events, the same interleavings */
#else
#define CC_EACH 250
#endif
#define CC_CONS 3

typedef struct cc_s {
    ep_queue_t *q;
    pub_rec_t rec;
    atomic_int seen[CC_PUB * CC_EACH];
    atomic_int consumed;
    atomic_int stop;
    int who;
} cc_t;

typedef struct cc_arg_s {
    cc_t *cc;
    int who;
} cc_arg_t;

static void *cc_publisher(void *arg)
{
    cc_arg_t *a = arg;

    for (int i = 0; i < CC_EACH; i += 10) {
        ep_event_t *evs[10];

        for (int j = 0; j < 10; j++) {
            char id[32];
            snprintf(id, sizeof(id), "cc-%d", a->who * CC_EACH + i + j);
            evs[j] = make_event(id);
        }
        if (ep_queue_publish(a->cc->q, evs, 10, on_publish, &a->cc->rec) != 0) {
            for (int j = 0; j < 10; j++) {
                ep_event_destroy(evs[j]);
            }
        }
    }
    return NULL;
}

static void *cc_consumer(void *arg)
{
    cc_t *cc = arg;
    ep_event_t *out[16];

    while (!atomic_load(&cc->stop)) {
        int n = ep_queue_consume(cc->q, out, 16, 100);

        for (int i = 0; i < n; i++) {
            atomic_fetch_add(&cc->seen[atoi(out[i]->id.p + 3)], 1);
        }
        if (n > 0) {
            ep_queue_ack(cc->q, out, (size_t)n);
            atomic_fetch_add(&cc->consumed, n);
        }
    }
    return NULL;
}

static void test_concurrent_publish_consume(void)
{
    ep_nats_server_t ns;
    static cc_t cc;
    cc_arg_t args[CC_PUB];
    pthread_t pubs[CC_PUB], cons[CC_CONS];
    int64_t deadline;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    cc.q = make_queue(ns.url);
    wait_ready(cc.q);
    pub_rec_init(&cc.rec);
    for (int i = 0; i < CC_CONS; i++) {
        pthread_create(&cons[i], NULL, cc_consumer, &cc);
    }
    for (int i = 0; i < CC_PUB; i++) {
        args[i].cc = &cc;
        args[i].who = i;
        pthread_create(&pubs[i], NULL, cc_publisher, &args[i]);
    }
    for (int i = 0; i < CC_PUB; i++) {
        pthread_join(pubs[i], NULL);
    }
    wait_calls(&cc.rec, CC_PUB * CC_EACH / 10);
    EP_ASSERT_EQ(cc.rec.ok, CC_PUB * CC_EACH);
    deadline = ep_time_mono_ms() + WAIT_MS * 2;
    while (atomic_load(&cc.consumed) < CC_PUB * CC_EACH && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(20);
    }
    atomic_store(&cc.stop, 1);
    for (int i = 0; i < CC_CONS; i++) {
        pthread_join(cons[i], NULL);
    }
    for (int i = 0; i < CC_PUB * CC_EACH; i++) {
        EP_ASSERT_EQ(atomic_load(&cc.seen[i]), 1);
    }
    ep_queue_destroy(cc.q);
    ep_nats_server_cleanup(&ns);
}

static void test_destroy_with_publishes_in_flight(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    pub_rec_t r;
    ep_event_t *evs[50];

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    pub_rec_init(&r);
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "fly-%d", i);
        evs[i] = make_event(id);
    }
    EP_ASSERT_EQ(ep_queue_publish(q, evs, 50, on_publish, &r), 0);
    /* Destroy right away: the callback still runs exactly once. */
    ep_queue_destroy(q);
    EP_ASSERT_EQ(pub_rec_calls(&r), 1);
    EP_ASSERT_EQ(r.ok + r.full + r.other, 50);
    ep_nats_server_cleanup(&ns);
}

/* ------------------------------------------------------------ packed messages */

/* A queue whose publishes put up to batch_events events in one message. */
static ep_queue_t *make_packing_queue(const char *url, const char *batch_events)
{
    ep_config_t cfg;
    ep_queue_t *q = NULL;
    char err[256] = "";

    make_cfg(&cfg, url);
    EP_ASSERT_EQ(ep_config_put(&cfg, "NATS_BATCH_EVENTS", batch_events), 0);
    EP_ASSERT_EQ(ep_queue_create("nats", &cfg, &q, err, sizeof(err)), 0);
    wait_ready(q);
    return q;
}

/* Publishes prefix-0 .. prefix-(n-1) in one call and waits for its callback. */
static void publish_one_call(ep_queue_t *q, const char *prefix, int n, pub_rec_t *r)
{
    ep_event_t **evs = ep_malloc((size_t)n * sizeof(*evs));
    int calls = pub_rec_calls(r);

    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "%s-%d", prefix, i);
        evs[i] = make_event(id);
    }
    EP_ASSERT_EQ(ep_queue_publish(q, evs, (size_t)n, on_publish, r), 0);
    wait_calls(r, calls + 1);
    ep_free(evs);
}

static uint64_t stream_msgs(const char *url)
{
    natsConnection *nc = test_conn(url);
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    uint64_t n;

    EP_ASSERT_EQ(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    EP_ASSERT_EQ(js_GetStreamInfo(&si, js, "DIPLOM_STREAM", NULL, NULL), NATS_OK);
    n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return n;
}

/* Consumes exactly n events (fails otherwise) into out, at most max per call. */
static void consume_n(ep_queue_t *q, ep_event_t **out, int n, size_t max)
{
    int got = 0;
    int64_t deadline = ep_time_mono_ms() + WAIT_MS;

    while (got < n && ep_time_mono_ms() < deadline) {
        size_t room = (size_t)(n - got) < max ? (size_t)(n - got) : max;
        int k = ep_queue_consume(q, out + got, room, 200);

        EP_ASSERT(k >= 0);
        got += k;
    }
    EP_ASSERT_EQ(got, n);
}

static void test_packed_messages_round_trip(void)
{
    ep_nats_server_t ns;
    ep_queue_t *pub, *con;
    pub_rec_t r;
    int seen[250] = {0};
    ep_queue_stats_t st;
    ep_event_t *out[8];

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    pub = make_packing_queue(ns.url, "100");
    con = make_queue(ns.url); /* reads packed messages whatever its own setting */
    wait_ready(con);
    pub_rec_init(&r);
    publish_one_call(pub, "pk", 250, &r);
    EP_ASSERT_EQ(r.ok, 250);
    EP_ASSERT_EQ(stream_msgs(ns.url), 3); /* 100 + 100 + 50 */
    /* The same batch again is the same three messages: the duplicate window drops them. */
    publish_one_call(pub, "pk", 250, &r);
    EP_ASSERT_EQ(r.ok, 500);
    EP_ASSERT_EQ(stream_msgs(ns.url), 3);
    /* 32 at a time: what a call has no room for waits for the next. */
    EP_ASSERT_EQ(consume_ids(con, "pk", 250, seen, 1), 250);
    for (int i = 0; i < 250; i++) {
        EP_ASSERT_EQ(seen[i], 1);
    }
    EP_ASSERT_EQ(ep_queue_consume(con, out, 8, 500), 0); /* every message acknowledged */
    ep_queue_stats(con, &st);
    EP_ASSERT_EQ(st.dequeued, 250);
    EP_ASSERT_EQ(st.acked, 250);
    EP_ASSERT_EQ(st.in_flight, 0);
    ep_queue_destroy(con);
    ep_queue_destroy(pub);
    ep_nats_server_cleanup(&ns);
}

static void test_packed_nack_redelivers_the_message_and_dead_letter_acks(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q;
    natsConnection *nc;
    natsSubscription *dlq;
    natsMsg *m;
    pub_rec_t r;
    ep_event_t *out[16], *ev = NULL;
    const char *h = NULL;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_packing_queue(ns.url, "10");
    dlq = dlq_watch(ns.url, &nc);
    pub_rec_init(&r);
    publish_one_call(q, "pn", 10, &r);
    consume_n(q, out, 10, 16);
    for (int i = 0; i < 10; i++) {
        EP_ASSERT_EQ(out[i]->attempts, 1);
    }
    /* Event 3 dead-lettered, event 5 nacked, the rest acked: the message comes back whole. */
    EP_ASSERT_EQ(ep_queue_dead_letter(q, &out[3], 1, "refused"), 0);
    m = next_dlq(dlq);
    EP_ASSERT_EQ(ep_event_decode_pb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &ev), 0);
    EP_ASSERT_STR_EQ(ev->id.p, "pn-3");
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Event-Id", &h), NATS_OK);
    EP_ASSERT_STR_EQ(h, "pn-3");
    ep_event_destroy(ev);
    natsMsg_Destroy(m);
    EP_ASSERT_EQ(ep_queue_nack(q, &out[5], 1, 0), 0);
    EP_ASSERT_EQ(ep_queue_ack(q, out, 3), 0);
    EP_ASSERT_EQ(ep_queue_ack(q, &out[4], 1), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 16, 300), 0); /* held until its last event */
    EP_ASSERT_EQ(ep_queue_ack(q, &out[6], 4), 0);
    consume_n(q, out, 10, 16);
    for (int i = 0; i < 10; i++) {
        EP_ASSERT_EQ(out[i]->attempts, 2);
    }
    /* This time one is dead-lettered and nine acked: done, nothing comes back. */
    EP_ASSERT_EQ(ep_queue_dead_letter(q, &out[0], 1, "refused"), 0);
    m = next_dlq(dlq);
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Event-Id", &h), NATS_OK);
    EP_ASSERT_STR_EQ(h, "pn-0");
    natsMsg_Destroy(m);
    EP_ASSERT_EQ(ep_queue_ack(q, &out[1], 9), 0);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 16, 500), 0);
    EP_ASSERT_EQ(natsSubscription_NextMsg(&m, dlq, 200), NATS_TIMEOUT);
    natsSubscription_Destroy(dlq);
    natsConnection_Destroy(nc);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

static void test_packed_events_not_taken_are_drained_or_given_back(void)
{
    ep_nats_server_t ns;
    ep_queue_t *q, *q2;
    pub_rec_t r;
    ep_event_t *out[100];
    int seen[100] = {0};

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_packing_queue(ns.url, "100");
    pub_rec_init(&r);
    /* Closed with 90 fetched and not handed out: consume drains them, then says closed. */
    publish_one_call(q, "pd", 100, &r);
    consume_n(q, out, 10, 10);
    ep_queue_close(q);
    consume_n(q, out + 10, 90, 100);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 100, 100), EP_ECLOSED);
    EP_ASSERT_EQ(ep_queue_ack(q, out, 100), 0);
    ep_queue_destroy(q);
    q = make_packing_queue(ns.url, "100");
    EP_ASSERT_EQ(ep_queue_consume(q, out, 100, 500), 0);
    /* Destroyed with 90 not handed out: the message comes back whole to the next one. */
    publish_one_call(q, "pe", 100, &r);
    consume_n(q, out, 10, 10);
    EP_ASSERT_EQ(ep_queue_ack(q, out, 10), 0);
    ep_queue_destroy(q);
    q2 = make_queue(ns.url);
    wait_ready(q2);
    EP_ASSERT_EQ(consume_ids(q2, "pe", 100, seen, 1), 100);
    for (int i = 0; i < 100; i++) {
        EP_ASSERT_EQ(seen[i], 1);
    }
    ep_queue_destroy(q2);
    ep_nats_server_cleanup(&ns);
}

static void test_packed_poison_goes_to_dlq(void)
{
    static const char garbage[] = "\x0a\xff\xff\xff not a DataBatch";
    ep_nats_server_t ns;
    ep_queue_t *q;
    natsConnection *nc;
    natsSubscription *dlq;
    natsMsg *m = NULL, *raw = NULL;
    ep_event_t *out[8];
    const char *reason = NULL;

    EP_ASSERT_EQ(ep_nats_server_start(&ns, 0), 0);
    q = make_queue(ns.url);
    wait_ready(q);
    dlq = dlq_watch(ns.url, &nc);
    EP_ASSERT_EQ(natsMsg_Create(&raw, "diplom.messages", NULL, garbage, sizeof(garbage) - 1),
                 NATS_OK);
    EP_ASSERT_EQ(natsMsgHeader_Set(raw, "Ep-Events", "5"), NATS_OK);
    EP_ASSERT_EQ(natsConnection_PublishMsg(nc, raw), NATS_OK);
    EP_ASSERT_EQ(natsConnection_Flush(nc), NATS_OK);
    natsMsg_Destroy(raw);
    EP_ASSERT_EQ(ep_queue_consume(q, out, 8, 1000), 0);
    m = next_dlq(dlq);
    EP_ASSERT_EQ(natsMsgHeader_Get(m, "Ep-Dlq-Reason", &reason), NATS_OK);
    EP_ASSERT(strstr(reason, "DataBatch") != NULL);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(dlq);
    natsConnection_Destroy(nc);
    ep_queue_destroy(q);
    ep_nats_server_cleanup(&ns);
}

EP_TEST_LIST = {
    EP_TEST(test_round_trip_exact_ids),
    EP_TEST(test_nack_redelivers_and_counts_attempts),
    EP_TEST(test_poison_goes_to_dlq_never_to_consumers),
    EP_TEST(test_dead_letter_moves_event),
    EP_TEST(test_server_down_at_init_then_up),
    EP_TEST(test_server_restart_keeps_events),
    EP_TEST(test_url_list_uses_a_reachable_server),
    EP_TEST(test_url_list_all_down_then_one_up),
    EP_TEST(test_url_list_fails_over),
    EP_TEST(test_bad_url_is_config_error),
    EP_TEST(test_stream_full_is_efull),
    EP_TEST(test_stats_and_lag_json),
    EP_TEST(test_concurrent_publish_consume),
    EP_TEST(test_destroy_with_publishes_in_flight),
    EP_TEST(test_stream_replicas),
    EP_TEST(test_packed_messages_round_trip),
    EP_TEST(test_packed_nack_redelivers_the_message_and_dead_letter_acks),
    EP_TEST(test_packed_events_not_taken_are_drained_or_given_back),
    EP_TEST(test_packed_poison_goes_to_dlq),
    EP_TEST_END,
};

EP_TEST_MAIN()

#else /* !EP_WITH_NATS */

int main(void)
{
    printf("the nats provider is not built (EP_WITH_NATS=OFF)\n0 passed, 0 failed\n");
    return 0;
}

#endif /* EP_WITH_NATS */
