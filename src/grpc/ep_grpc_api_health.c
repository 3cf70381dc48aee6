/*
 * The gRPC health and statistics calls (split from ep_grpc_api.c): each
 * role's HealthResponse, the consumer's stats, the analytics summary and
 * metrics, and the standard grpc.health.v1 Check and Watch. Handlers take
 * their port_t as arg.
 */
#include "grpc/ep_grpc_api.h"
#include "grpc/ep_grpc_api_int.h"

#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "base/ep_time.h"
#include "event/ep_json_tree.h"
#include "grpc/ep_grpc_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ health and stats */

/* HealthResponse of a role: healthy = its readiness. */
static void role_health(port_t *p, ep_grpc_call_t *call, int which, uint64_t processed)
{
    ep_grpc_api_t *api = p->api;
    ep_buf_t b = EP_BUF_INIT;
    char reason[256];
    int ready = ep__grpc_is_ready(api, which, reason, sizeof(reason));

    ep_pb_put_uint(&b, 1, (uint64_t)ready);
    ep_pb_put_bytes(&b, 2, ep__grpc_srv_names[which], strlen(ep__grpc_srv_names[which]));
    if (ready) {
        ep_pb_put_bytes(&b, 3, "ok", 2);
    } else {
        ep_pb_put_bytes(&b, 3, reason[0] ? reason : "not ready",
                        strlen(reason[0] ? reason : "not ready"));
    }
    ep_pb_put_uint(&b, 4, (uint64_t)((ep_time_now_ms() - api->app->started_ms) / 1000));
    ep_pb_put_uint(&b, 5, processed);
    ep_grpc_answer(call, b.data ? b.data : "", b.len, EP_GRPC_OK, NULL);
    ep_buf_close(&b);
}

static uint64_t pool_processed(ep_app_t *app)
{
    ep_worker_pool_stats_t ps;

    if (app->pool == NULL) {
        return 0;
    }
    ep_worker_pool_stats(app->pool, &ps);
    return ps.processed;
}

void ep__grpc_on_producer_health(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;

    (void)msg;
    (void)len;
    role_health(p, call, SRV_PRODUCER,
                atomic_load_explicit(&p->api->app->ingest.sent, memory_order_relaxed));
}

void ep__grpc_on_consumer_health(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;

    (void)msg;
    (void)len;
    role_health(p, call, SRV_CONSUMER, pool_processed(p->api->app));
}

void ep__grpc_on_analytics_health(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    uint64_t total = 0;
    ep_buf_t b = EP_BUF_INIT;
    ep_json_tree_t *t = NULL;

    (void)msg;
    (void)len;
    ep__analytics_stats_json(p->api->app, &b);
    if (ep_json_tree_parse(b.data, b.len, 0, &t, NULL, 0) == 0) {
        static const char *const path[] = {"total_events", NULL};
        const char *v = ep_json_text(ep_json_get(ep_json_tree_root(t), path), NULL);
        total = v ? strtoull(v, NULL, 10) : 0;
        ep_json_tree_free(t);
    }
    ep_buf_close(&b);
    role_health(p, call, SRV_ANALYTICS, total);
}

static uint64_t json_u64(const ep_json_node_t *root, const char *a, const char *b)
{
    const char *path[3] = {a, b, NULL};
    const char *v = ep_json_text(ep_json_get(root, path), NULL);

    return v && *v != '-' ? strtoull(v, NULL, 10) : 0;
}

/*
 * Answers a stats call: the role's JSON (stats), its typed fields (typed, from
 * the parsed JSON) and the JSON whole as field json_num.
 */
static void answer_stats(port_t *p, ep_grpc_call_t *call,
                         void (*stats)(ep_app_t *app, ep_buf_t *out),
                         void (*typed)(ep_buf_t *b, const ep_json_node_t *root), uint32_t json_num)
{
    ep_access_who_t who;
    ep_buf_t js = EP_BUF_INIT, b = EP_BUF_INIT;
    ep_json_tree_t *t = NULL;

    if (!ep__grpc_access_ok(p->api, call, EP_ACCESS_READ, &who)) {
        return;
    }
    stats(p->api->app, &js);
    if (ep_json_tree_parse(js.data, js.len, 0, &t, NULL, 0) == 0) {
        typed(&b, ep_json_tree_root(t));
        ep_json_tree_free(t);
    }
    ep_pb_put_bytes(&b, json_num, js.data, js.len);
    ep_grpc_answer(call, b.data ? b.data : "", b.len, EP_GRPC_OK, NULL);
    ep_buf_close(&js);
    ep_buf_close(&b);
}

static void put_consumer_stats(ep_buf_t *b, const ep_json_node_t *root)
{
    ep_pb_put_uint(b, 1, json_u64(root, "pool", "processed"));
    ep_pb_put_uint(b, 2, json_u64(root, "pool", "errors"));
    ep_pb_put_uint(b, 3, json_u64(root, "queue", "size"));
    ep_pb_put_uint(b, 4, json_u64(root, "queue", "capacity"));
    ep_pb_put_uint(b, 5, json_u64(root, "pool", "workers"));
}

/* ConsumerService.GetConsumerStats: the processor's GET /stats, typed and whole. */
void ep__grpc_on_consumer_stats(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    (void)msg;
    (void)len;
    answer_stats(arg, call, ep__processor_stats_json, put_consumer_stats, 6);
}

static void put_counts(ep_buf_t *b, uint32_t num, const ep_json_node_t *obj)
{
    for (const ep_json_node_t *c = ep_json_first(obj); c; c = ep_json_next(c)) {
        const char *k = ep_json_key(c);
        const char *v = ep_json_text(c, NULL);
        size_t at;
        if (k == NULL || v == NULL) {
            continue;
        }
        at = ep_pb_open(b, num);
        ep_pb_put_bytes(b, 1, k, ep_json_key_len(c));
        ep_pb_put_uint(b, 2, strtoull(v, NULL, 10));
        ep_pb_close(b, at);
    }
}

static void put_summary(ep_buf_t *b, const ep_json_node_t *root)
{
    static const char *const by_type[] = {"events_by_type", NULL};
    static const char *const by_source[] = {"events_by_source", NULL};

    ep_pb_put_uint(b, 1, json_u64(root, "total_events", NULL));
    ep_pb_put_uint(b, 2, json_u64(root, "unique_users", NULL));
    put_counts(b, 3, ep_json_get(root, by_type));
    put_counts(b, 4, ep_json_get(root, by_source));
}

/* AnalyticsService.GetAnalyticsSummary: GET /analytics/summary, typed and whole. */
void ep__grpc_on_summary(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    (void)msg;
    (void)len;
    answer_stats(arg, call, ep__analytics_stats_json, put_summary, 5);
}

/* AnalyticsService.GetMetrics: the Prometheus text of GET /metrics. */
void ep__grpc_on_metrics(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    ep_access_who_t who;
    ep_buf_t text = EP_BUF_INIT, b = EP_BUF_INIT;

    (void)msg;
    (void)len;
    if (!ep__grpc_access_ok(p->api, call, EP_ACCESS_READ, &who)) {
        return;
    }
    if (p->api->app->obs) {
        ep_metrics_render(ep_obs_registry(p->api->app->obs), &text);
    }
    ep_pb_put_bytes(&b, 1, text.data, text.len);
    ep_grpc_answer(call, b.data ? b.data : "", b.len, EP_GRPC_OK, NULL);
    ep_buf_close(&text);
    ep_buf_close(&b);
}

/* ------------------------------------------------------------ grpc.health.v1 */

enum { H_UNKNOWN = 0, H_SERVING = 1, H_NOT_SERVING = 2, H_SERVICE_UNKNOWN = 3 };

/* The status of service on port p, or -1 when p does not serve it. */
static int health_status(port_t *p, const uint8_t *name, size_t len)
{
    char reason[256];
    int known = len == 0 || (len == 21 && memcmp(name, "grpc.health.v1.Health", 21) == 0);

    for (int i = 0; i < p->nservices && !known; i++) {
        known = strlen(p->services[i]) == len && memcmp(p->services[i], name, len) == 0;
    }
    if (!known) {
        return -1;
    }
    return ep__grpc_is_ready(p->api, p->idx, reason, sizeof(reason)) ? H_SERVING : H_NOT_SERVING;
}

static void health_request(const uint8_t *msg, size_t len, const uint8_t **name, size_t *nlen)
{
    ep_pb_reader_t r;
    ep_pb_field_t f;

    *name = (const uint8_t *)"";
    *nlen = 0;
    ep_pb_reader_init(&r, msg, len);
    while (ep_pb_next(&r, &f) == 1) {
        if (f.num == 1 && f.wt == EP_PB_LEN) {
            *name = f.p;
            *nlen = f.len;
        }
    }
}

void ep__grpc_on_health_check(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    const uint8_t *name;
    size_t nlen;
    int st;
    ep_buf_t b = EP_BUF_INIT;

    health_request(msg, len, &name, &nlen);
    st = health_status(p, name, nlen);
    if (st < 0) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_NOT_FOUND, "unknown service");
        return;
    }
    ep_pb_put_uint(&b, 1, (uint64_t)st);
    ep_grpc_answer(call, b.data ? b.data : "", b.len, EP_GRPC_OK, NULL);
    ep_buf_close(&b);
}

/* Watch: the status now, then each change (checked about once a second). */
void ep__grpc_on_health_watch(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    const uint8_t *name;
    size_t nlen;
    int st, *last = ep_grpc_call_state(call);
    ep_buf_t b = EP_BUF_INIT;

    health_request(msg, len, &name, &nlen);
    st = health_status(p, name, nlen);
    st = st < 0 ? H_SERVICE_UNKNOWN : st;
    if (*last == st + 1) {
        ep_grpc_answer(call, NULL, 0, -1, NULL); /* no change */
        return;
    }
    *last = st + 1;
    ep_pb_put_uint(&b, 1, (uint64_t)st);
    /* Shutting down: the last word, then the stream ends, so GOAWAY can close the connection. */
    ep_grpc_answer(call, b.data ? b.data : "", b.len,
                   atomic_load(&p->api->quiesced) ? EP_GRPC_UNAVAILABLE : -1,
                   atomic_load(&p->api->quiesced) ? "shutting down" : NULL);
    ep_buf_close(&b);
}
