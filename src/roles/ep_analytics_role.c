/*
 * The analytics role (seed 004's Analytics Service, port 8083):
 *   GET  /analytics/summary     the aggregate (see docs/analytics.md for the fields)
 *   GET  /analytics/timeseries  ?window=5m&bucket=10s&dimension=total|event_type|source
 *   GET  /analytics/health      GetAnalyticsHealth: uptime, totals, last event, delta feed
 *   POST /analytics/merge       a delta from a processor in another process
 *   GET  /stats                 the summary again, for /api/v1/status probes
 *
 * Feeding: a processor in the same process hands every batch to the aggregate
 * through the worker pool hook. A processor in its own process (`eventpipe
 * processor`, memory queue) gathers its batches into a delta aggregate and a
 * pusher thread POSTs it to ANALYTICS_URL every ANALYTICS_PUSH_INTERVAL_MS
 * when it is not empty. A failed push keeps its delta (same sender and seq) and
 * is retried next tick; newer events meanwhile gather in the (bounded) delta
 * aggregate, and the receiver ignores a seq it already merged, so a retry after
 * an unclear failure is not counted twice.
 *
 * With a broker queue (kafka, nats, composite) `eventpipe analytics` reads the
 * topic/stream itself with a consumer of this process alone
 * ("<KAFKA_CONSUMER_GROUP>-analytics-<tag>", "<NATS_DURABLE>-analytics-<tag>",
 * ep_queue_open_consumer) from the start of what the broker retains, through a
 * one-worker pool whose hook feeds the aggregate; processors then push nothing
 * (ANALYTICS_PUSH=auto), so nothing is counted twice. Every analytics process is
 * thus a full replica of the aggregate, rebuilt from the stream at start: any of
 * them answers the whole summary, and one that dies takes nothing from the others
 * (docs/architecture.md, "Analytics and brokers"). /ready says not ready until the
 * replay came within one PROCESSOR_BATCH of the stream's end.
 */
#include "analytics/ep_analytics.h"
#include "roles/ep_access.h"
#include "roles/ep_app.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* The largest delta a processor can write is bounded (measured in test_analytics). */
#define MERGE_MAX_BODY EP_ANALYTICS_DELTA_MAX_BYTES

struct ep_analytics_push_s {
    ep_app_t *app;
    ep_analytics_t *delta; /* what the local workers gathered since the last push */
    pthread_t tid;
    int started, stop;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint64_t sender, seq;
    ep_buf_t pending; /* the serialised delta being delivered (seq), or empty */
    int failing;      /* the last attempt failed (for logging transitions only) */
    _Atomic uint64_t pushed, failed, dropped;
};

/* -------------------------------------------------------------- routes */

static void on_summary(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep_analytics_summary_json(app->analytics, &b);
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

/* "90", "90s", "5m", "1h" -> seconds; -1 when malformed. */
static int parse_duration(const char *s)
{
    char *end;
    long v;

    if (s == NULL || !isdigit((unsigned char)*s)) {
        return -1;
    }
    v = strtol(s, &end, 10);
    if (v <= 0 || v > 86400) {
        return -1;
    }
    if (*end == 'm') {
        v *= 60;
        end++;
    } else if (*end == 'h') {
        v *= 3600;
        end++;
    } else if (*end == 's') {
        end++;
    }
    return *end == '\0' && v <= 86400 ? (int)v : -1;
}

static void on_timeseries(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    const char *w = ep_http_req_query(req, "window");
    const char *bk = ep_http_req_query(req, "bucket");
    const char *dim = ep_http_req_query(req, "dimension");
    int window_s = w ? parse_duration(w) : 300, bucket_s;
    ep_buf_t b = EP_BUF_INIT;

    if (window_s < 0) {
        ep_http_respond_error(req, 400, "window: expected a duration such as 60s, 5m, 15m or 1h",
                              "window");
        return;
    }
    bucket_s = bk ? parse_duration(bk) : window_s <= 60 ? 1 : window_s <= 900 ? 10 : 60;
    if (bucket_s < 0) {
        ep_http_respond_error(req, 400, "bucket: expected a duration such as 1s, 10s or 60s",
                              "bucket");
        return;
    }
    if (dim && strcmp(dim, "total") != 0 && strcmp(dim, "event_type") != 0 &&
        strcmp(dim, "source") != 0) {
        ep_http_respond_error(req, 400, "dimension: expected total, event_type or source",
                              "dimension");
        return;
    }
    if (ep_analytics_timeseries_json(app->analytics, window_s, bucket_s, dim, &b) != 0) {
        ep_http_respond_error(req, 400,
                              "window must be a multiple of bucket, at most 15m with buckets "
                              "under a minute and 1h with whole-minute buckets",
                              "window");
        return;
    }
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

static void on_health(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_analytics_stats_t st;
    ep_buf_t b = EP_BUF_INIT;
    char when[40];

    ep_analytics_stats(app->analytics, &st);
    ep_buf_printf(&b,
                  "{\"healthy\":true,\"service\":\"analytics\",\"status\":\"SERVING\","
                  "\"uptime_s\":%lld,\"total_events\":%llu,\"deltas_merged\":%llu,"
                  "\"deltas_rejected\":%llu,\"deltas_duplicate\":%llu,\"senders\":%llu,"
                  "\"fed_by\":\"%s\",\"last_event_at\":",
                  (long long)((ep_time_now_ms() - app->started_ms) / 1000),
                  (unsigned long long)st.total_events, (unsigned long long)st.deltas_merged,
                  (unsigned long long)st.deltas_rejected, (unsigned long long)st.deltas_duplicate,
                  (unsigned long long)st.senders,
                  app->roles & EP_ROLE_PROCESSOR ? "in-process" : "delta-push");
    if (st.last_event_us > 0) {
        ep_time_format_rfc3339(st.last_event_us / 1000, when, sizeof(when));
        ep_buf_put_json_str(&b, when, strlen(when));
    } else {
        ep_buf_puts(&b, "null");
    }
    ep_buf_puts(&b, "}\n");
    ep_http_respond_buf(req, 200, &b);
}

static void on_merge(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_parse_err_t err;
    int rc = ep_analytics_merge_delta_ex(app->analytics, ep_http_req_body(req),
                                         ep_http_req_body_len(req), &err);

    if (rc == 0) {
        ep_http_respond(req, 200, NULL, "{\"merged\":true}\n", 16);
    } else if (rc == EP_EEXIST) {
        ep_http_respond(req, 200, NULL, "{\"merged\":false,\"duplicate\":true}\n", 35);
    } else {
        /* Malformed, another version, or implausible counts: nothing was merged. */
        ep_http_respond_error(req, 400, err.msg, err.field[0] ? err.field : NULL);
    }
}

void ep__analytics_stats_json(ep_app_t *app, ep_buf_t *out)
{
    ep_analytics_summary_json(app->analytics, out);
}

static void on_stats(void *arg, ep_http_req_t *req)
{
    on_summary(arg, req);
}

int ep__analytics_ready(ep_app_t *app, char *reason, size_t len)
{
    ep_queue_stats_t st;

    if (app->analytics == NULL) {
        return 0;
    }
    if (app->analytics_queue == NULL || atomic_load(&app->analytics_caught_up)) {
        return 1;
    }
    /* Replaying the retained stream: ready once within a batch of its end (then for good:
     * a backlog under load later is lag, not a partial summary). */
    ep_queue_stats(app->analytics_queue, &st);
    /* Still at the broker, plus read and not yet counted (the hook runs before the ack). */
    if (st.size >= 0 && st.size + st.in_flight <= app->cfg.batch_size) {
        if (atomic_exchange(&app->analytics_caught_up, 1) == 0) {
            ep_log_info("analytics", "caught up with the stream (%llu events read)",
                        (unsigned long long)st.dequeued);
        }
        return 1;
    }
    if (st.size < 0) {
        snprintf(reason, len, "analytics: replaying the stream; its end is not known yet");
    } else {
        snprintf(reason, len, "analytics: replaying the stream, %lld events behind",
                 (long long)st.size + (long long)st.in_flight);
    }
    return 0;
}

void ep__analytics_routes(ep_app_t *app, ep_http_server_t *srv)
{
    ep_access_t *ac = app->access;

    ep_access_route(ac, srv, EP_HTTP_GET, "/analytics/summary", EP_ACCESS_READ, on_summary, app, 0);
    ep_access_route(ac, srv, EP_HTTP_GET, "/analytics/timeseries", EP_ACCESS_READ, on_timeseries,
                    app, 0);
    ep_http_server_route(srv, EP_HTTP_GET, "/analytics/health", on_health, app);
    ep_access_route(ac, srv, EP_HTTP_POST, "/analytics/merge", EP_ACCESS_INTERNAL, on_merge, app,
                    MERGE_MAX_BODY);
    ep_access_route(ac, srv, EP_HTTP_GET, "/stats", EP_ACCESS_READ, on_stats, app, 0);
}

/* -------------------------------------------------------------- pusher */

static void on_batch(void *arg, ep_event_t *const *evs, size_t n)
{
    ep_analytics_add_batch(arg, evs, n);
}

/* One delivery attempt: the pending delta, or a new one when none is pending. */
static void push_once(ep_analytics_push_t *p)
{
    ep_app_t *app = p->app;
    char url[300], *body = NULL, hop[300];
    ep_http_request_opts_t o = {.content_type = "application/octet-stream"};
    int status = 0, rc;

    if (p->pending.len == 0) {
        if (!ep_analytics_take_delta(p->delta, p->sender, p->seq + 1, &p->pending)) {
            return;
        }
        p->seq++;
    }
    snprintf(url, sizeof(url), "%s/analytics/merge", app->cfg.analytics_url);
    /* /analytics/merge is a role-to-role route: the internal token when one is set. */
    ep_access_hop_header(&app->cfg, hop, sizeof(hop));
    o.headers = hop[0] ? hop : NULL;
    rc = ep_http_client_request_sync_ex(app->client, "POST", url, &o, p->pending.data,
                                        p->pending.len, app->cfg.upstream_timeout_ms, &status,
                                        &body);
    if (rc == 0 && status == 200) {
        atomic_fetch_add(&p->pushed, 1);
        ep_buf_reset(&p->pending);
        if (p->failing) {
            ep_log_info("analytics", "delta push to %s works again", url);
        }
        p->failing = 0;
    } else if (rc == 0 && status == 400) {
        /* The receiver cannot read it (another version): retrying will not help. */
        atomic_fetch_add(&p->dropped, 1);
        ep_buf_reset(&p->pending);
        ep_log_error("analytics", "%s refused a delta (seq %llu): %s", url,
                     (unsigned long long)p->seq, body ? body : "");
    } else {
        atomic_fetch_add(&p->failed, 1);
        if (!p->failing) {
            char why[96];
            snprintf(why, sizeof(why), "%s",
                     rc != 0                          ? ep_strerror(rc)
                     : status == 401 || status == 403 ? "refused: INTERNAL_TOKEN must be the same "
                                                        "on both roles"
                     : status                         ? "bad status"
                                                      : "no answer");
            ep_log_warn("analytics", "delta push to %s failed (HTTP %d, %s); retrying every tick",
                        url, status, why);
        }
        p->failing = 1;
    }
    ep_free(body);
}

static void *push_main(void *arg)
{
    ep_analytics_push_t *p = arg;

    pthread_mutex_lock(&p->lock);
    while (!p->stop) {
        struct timespec ts;

        ep_time_deadline_ts(&ts, CLOCK_REALTIME, p->app->cfg.analytics_push_interval_ms);
        pthread_cond_timedwait(&p->cond, &p->lock, &ts);
        if (p->stop) {
            break;
        }
        pthread_mutex_unlock(&p->lock);
        push_once(p);
        pthread_mutex_lock(&p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

void ep__analytics_attach(ep_app_t *app)
{
    ep_analytics_push_t *p;

    if (app->analytics) {
        /* Same process: the workers feed the aggregate directly. */
        ep_worker_pool_set_hook(app->pool, on_batch, app->analytics);
        return;
    }
    if (app->cfg.analytics_push == EP_ANALYTICS_PUSH_OFF) {
        return;
    }
    if (!ep_queue_is_local(app->queue) && app->cfg.analytics_push == EP_ANALYTICS_PUSH_AUTO) {
        /* A broker queue: the analytics role reads it with its own consumer. */
        return;
    }
    p = ep_calloc(1, sizeof(*p));
    p->app = app;
    p->delta = ep_analytics_create();
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    /* A new sender id per process run: the receiver's seq memory starts afresh with it. */
    p->sender = (uint64_t)ep_time_now_us() ^ ((uint64_t)getpid() << 40) ^
                (uint64_t)ep_time_mono_ns() * 0x9e3779b97f4a7c15ull;
    app->push = p;
    ep_worker_pool_set_hook(app->pool, on_batch, p->delta);
}

int ep__analytics_push_start(ep_app_t *app)
{
    ep_analytics_push_t *p = app->push;

    if (p == NULL || p->started) {
        return 0;
    }
    if (pthread_create(&p->tid, NULL, push_main, p) != 0) {
        return EP_ENOMEM;
    }
    p->started = 1;
    ep_log_info("analytics", "pushing deltas to %s/analytics/merge every %d ms",
                app->cfg.analytics_url, app->cfg.analytics_push_interval_ms);
    return 0;
}

void ep__analytics_push_stop(ep_app_t *app)
{
    ep_analytics_push_t *p = app->push;

    if (p == NULL || !p->started) {
        return;
    }
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->tid, NULL);
    p->started = 0;
    /* The workers have drained: deliver what is left (a pending delta, then the rest). */
    for (int i = 0; i < 2; i++) {
        push_once(p);
        if (p->failing) {
            ep_log_warn("analytics", "final delta push failed; the last events are not in %s",
                        app->cfg.analytics_url);
            break;
        }
    }
}

void ep__analytics_push_stats_json(ep_app_t *app, ep_buf_t *out)
{
    ep_analytics_push_t *p = app->push;

    if (p == NULL) {
        ep_buf_puts(out, "null");
        return;
    }
    ep_buf_printf(out,
                  "{\"url\":\"%s/analytics/merge\",\"pushed\":%llu,\"failed\":%llu,"
                  "\"dropped\":%llu}",
                  app->cfg.analytics_url, (unsigned long long)atomic_load(&p->pushed),
                  (unsigned long long)atomic_load(&p->failed),
                  (unsigned long long)atomic_load(&p->dropped));
}

void ep__analytics_close(ep_app_t *app)
{
    ep_analytics_push_t *p = app->push;

    if (p) {
        if (p->started) {
            ep__analytics_push_stop(app);
        }
        ep_analytics_destroy(p->delta);
        ep_buf_close(&p->pending);
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        ep_free(p);
        app->push = NULL;
    }
    ep_analytics_destroy(app->analytics);
    app->analytics = NULL;
}

int ep__analytics_consumer_create(ep_app_t *app, const ep_queue_provider_t *qp, char *err,
                                  size_t errlen)
{
    const ep_config_t *cfg = &app->cfg;
    int rc;

    if (app->analytics == NULL || (app->roles & EP_ROLE_PROCESSOR) ||
        (qp->flags & EP_QUEUE_F_LOCAL)) {
        return 0;
    }
    /* A consumer of this process alone (Kafka: group "<group>-analytics-<tag>", NATS: durable
     * "<durable>-analytics-<tag>"): it reads every retained event from the start, without
     * taking it from the processors or from other analytics processes. */
    rc = ep_queue_open_consumer(qp, cfg, "analytics", &app->analytics_queue, err, errlen);
    if (rc != 0) {
        return rc;
    }
    rc =
        ep_worker_pool_create(app->analytics_queue, NULL, 1, cfg->batch_size, &app->analytics_pool);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the analytics consumer: %s", ep_strerror(rc));
        return rc;
    }
    ep_worker_pool_set_max_attempts(app->analytics_pool, cfg->max_attempts);
    ep_worker_pool_set_hook(app->analytics_pool, on_batch, app->analytics);
    ep_worker_pool_set_obs(app->analytics_pool, app->obs);
    ep_log_info("analytics",
                "reading the whole retained %s queue with a consumer of this process "
                "(\"analytics-%s\"); the summary is rebuilt from it",
                qp->name, ep_queue_instance_tag());
    return 0;
}
