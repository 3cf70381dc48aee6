/*
 * GET /metrics, the per-answer observer (request metrics and the sampled
 * access log) and the app's scrape-time collector.
 *
 * Labels stay bounded: route is the registered path of the matched route or
 * "unmatched", method one of eight, status one of the codes the server
 * answers with or "other". Children are resolved on first use
 * (registry lock) and cached in per-route rows published with a CAS, so the
 * steady state is three relaxed atomic adds per request and no lock.
 */
#include "roles/ep_monitor.h"
#include "guard/ep_breaker.h"
#include "event/ep_dedup.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "obs/ep_obs.h"
#include "base/ep_time.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTE_ROWS 128 /* routes per server (the server allows 64) + "unmatched" */
#define N_METHODS      8

static const char *const methods[N_METHODS] = {"GET",    "HEAD",    "POST",  "PUT",
                                               "DELETE", "OPTIONS", "PATCH", "other"};
static const int statuses[] = {200, 201, 202, 204, 206, 301, 302, 304, 400, 401,
                               403, 404, 405, 408, 409, 411, 413, 414, 415, 422,
                               429, 431, 500, 501, 502, 503, 504, 505};
#define N_STATUSES ((int)(sizeof(statuses) / sizeof(statuses[0])) + 1) /* + "other" */

typedef struct route_row_s {
    _Atomic(ep_metric_child_t *) duration;
    _Atomic(ep_metric_child_t *) requests[N_METHODS][N_STATUSES];
} route_row_t;

typedef struct ep_srv_obs_s {
    ep_app_t *app;
    ep_http_server_t *srv;
    const char *role;
    int metrics;     /* METRICS_ENABLED */
    uint32_t sample; /* access log: log when a random 32-bit draw is below this */
    int sample_all;  /* ACCESS_LOG_SAMPLE=1 */
    ep_metric_t *f_requests, *f_duration;
    _Atomic(route_row_t *) rows[MAX_ROUTE_ROWS]; /* [0] = unmatched, [i + 1] = route i */
    struct ep_srv_obs_s *next;                   /* the app's list (ep_app_t.observers) */
} srv_obs_t;

static int method_index(const char *m)
{
    for (int i = 0; i < N_METHODS - 1; i++) {
        if (strcmp(m, methods[i]) == 0) {
            return i;
        }
    }
    return N_METHODS - 1;
}

static int status_index(int status)
{
    for (int i = 0; i < N_STATUSES - 1; i++) {
        if (statuses[i] == status) {
            return i;
        }
    }
    return N_STATUSES - 1;
}

static route_row_t *row_get(srv_obs_t *o, int idx)
{
    _Atomic(route_row_t *) *slot = &o->rows[idx + 1];
    route_row_t *row = atomic_load_explicit(slot, memory_order_acquire);
    route_row_t *fresh, *expect = NULL;

    if (row) {
        return row;
    }
    fresh = ep_calloc(1, sizeof(*fresh));
    if (atomic_compare_exchange_strong_explicit(slot, &expect, fresh, memory_order_acq_rel,
                                                memory_order_acquire)) {
        return fresh;
    }
    ep_free(fresh); /* another thread won; use its row */
    return expect;
}

static ep_metric_child_t *child_get(_Atomic(ep_metric_child_t *) *slot, ep_metric_t *f,
                                    const char *const *values)
{
    ep_metric_child_t *c = atomic_load_explicit(slot, memory_order_acquire);

    if (c == NULL) {
        /* ep_metrics_child finds or creates under its lock: racing threads get the same child. */
        c = ep_metrics_child(f, values);
        atomic_store_explicit(slot, c, memory_order_release);
    }
    return c;
}

/* A per-thread xorshift draw: cheap, and good enough to pick a sample. */
static uint32_t draw(void)
{
    static _Thread_local uint32_t x;

    if (x == 0) {
        x = (uint32_t)ep_time_mono_ns() ^ (uint32_t)(uintptr_t)&x;
        x |= 1;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

static void on_answer(void *arg, const ep_http_req_t *req, int status)
{
    srv_obs_t *o = arg;
    int idx = ep_http_req_route_index(req);
    int64_t dur = ep_time_mono_ns() - ep_http_req_start_ns(req);
    const char *method = ep_http_req_method(req);

    if (dur < 0) {
        dur = 0;
    }
    if (idx >= MAX_ROUTE_ROWS - 1) {
        idx = -1;
    }
    if (o->metrics) {
        route_row_t *row = row_get(o, idx);
        const char *route = idx >= 0 ? ep_http_server_route_path(o->srv, idx) : "unmatched";
        int mi = method_index(method), si = status_index(status);
        char code[16];
        const char *rv[4];

        if (si == N_STATUSES - 1) {
            snprintf(code, sizeof(code), "other");
        } else {
            snprintf(code, sizeof(code), "%d", status);
        }
        rv[0] = o->role;
        rv[1] = route;
        rv[2] = methods[mi];
        rv[3] = code;
        ep_metrics_counter_add(child_get(&row->requests[mi][si], o->f_requests, rv), 1);
        ep_metrics_hist_observe(child_get(&row->duration, o->f_duration, rv), (uint64_t)dur);
    }
    if (o->sample_all || (o->sample && draw() < o->sample)) {
        ep_log_info("access", "%s %s %s %d %.3fms", o->role, method, ep_http_req_path(req), status,
                    (double)dur / 1e6);
    }
}

static void on_metrics(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;
    size_t len;
    char *body;

    ep_metrics_render(ep_obs_registry(app->obs), &b);
    ep__monitor_collect(app, &b);
    body = ep_buf_steal(&b, &len);
    ep_http_respond(req, 200, "text/plain; version=0.0.4; charset=utf-8", body, len);
    ep_free(body);
}

void ep__monitor_routes(ep_app_t *app, ep_http_server_t *srv)
{
    srv_obs_t *o;
    double sample = app->cfg.access_log_sample;
    int metrics = app->cfg.metrics_enabled;

    if (!metrics && !(sample > 0)) {
        return;
    }
    o = ep_calloc(1, sizeof(*o));
    o->app = app;
    o->srv = srv;
    o->role = ep_http_server_name(srv);
    o->metrics = metrics;
    o->sample_all = sample >= 1.0;
    o->sample =
        (uint32_t)(sample * 4294967296.0 > 4294967295.0 ? 4294967295.0 : sample * 4294967296.0);
    if (metrics) {
        ep_obs_http_families(app->obs, &o->f_requests, &o->f_duration);
        ep_http_server_route(srv, EP_HTTP_GET, "/metrics", on_metrics, app);
    }
    o->next = app->observers;
    app->observers = o;
    ep_http_server_set_observer(srv, on_answer, o);
}

void ep__monitor_close(ep_app_t *app)
{
    srv_obs_t *o;

    while ((o = app->observers) != NULL) {
        app->observers = o->next;
        for (int i = 0; i < MAX_ROUTE_ROWS; i++) {
            ep_free(atomic_load_explicit(&o->rows[i], memory_order_relaxed));
        }
        ep_free(o);
    }
}

/* ------------------------------------------------------------ collector */

static const char *const l_queue[] = {"queue"};
static const char *const l_status[] = {"status"};
static const char *const l_kind[] = {"kind"};
static const char *const l_role[] = {"role"};

static void put1(ep_buf_t *out, const char *name, ep_metric_type_t type, const char *help, double v)
{
    ep_metrics_put_family(out, name, type, help);
    ep_metrics_put_sample(out, name, 0, NULL, NULL, v);
}

/* A family with one label: n samples, label value lv[i] with v[i]. */
static void put_by(ep_buf_t *out, const char *name, ep_metric_type_t type, const char *help,
                   const char *const *label, size_t n, const char *const *lv, const double *v)
{
    ep_metrics_put_family(out, name, type, help);
    for (size_t i = 0; i < n; i++) {
        ep_metrics_put_sample(out, name, 1, label, &lv[i], v[i]);
    }
}

/* The queue families, a sample per queue of the process (labelled by its provider). */
static const struct queue_family_s {
    const char *name;
    ep_metric_type_t type;
    const char *help;
} queue_families[] = {
    {"queue_size", EP_METRIC_GAUGE,
     "Events waiting in the queue (by queue provider); no sample while unknown (a broker "
     "unreachable)."},
    {"queue_capacity", EP_METRIC_GAUGE,
     "Bound of the queue in events; 0 when unbounded or unknown."},
    {"ep_queue_enqueued_total", EP_METRIC_COUNTER, "Events accepted by the queue's publish."},
    {"ep_queue_rejected_full_total", EP_METRIC_COUNTER,
     "Publishes refused because the queue was full."},
    {"ep_queue_rejected_unavailable_total", EP_METRIC_COUNTER,
     "Publishes that failed for another reason than a full queue: a provider or broker "
     "unreachable, timed out or closed."},
    {"ep_queue_lost_events_total", EP_METRIC_COUNTER,
     "Acknowledged events the queue skipped without processing them (Kafka: an offset reset "
     "past unread records); should stay 0."},
};

/* The value of queue family k in *v; 0 when there is none (a size unknown). */
static int queue_value(size_t k, const ep_queue_stats_t *st, double *v)
{
    switch (k) {
    case 0:
        *v = (double)st->size;
        return st->size >= 0; /* unknown: no sample rather than a made-up 0 */
    case 1:
        *v = st->capacity < 0 ? 0 : (double)st->capacity;
        return 1;
    case 2:
        *v = (double)st->enqueued;
        return 1;
    case 3:
        *v = (double)st->rejected_full;
        return 1;
    case 4:
        *v = (double)st->rejected_unavailable;
        return 1;
    default:
        *v = (double)st->lost;
        return 1;
    }
}

/* The processor's queue (or broker) and ingest's forwarder, when there are. */
static void put_queues(ep_app_t *app, ep_buf_t *out)
{
    ep_queue_t *qs[2] = {app->queue, app->forward};
    ep_queue_stats_t st[2];

    for (int i = 0; i < 2; i++) {
        if (qs[i]) {
            ep_queue_stats(qs[i], &st[i]);
        }
    }
    for (size_t k = 0; k < sizeof(queue_families) / sizeof(queue_families[0]); k++) {
        const struct queue_family_s *f = &queue_families[k];
        ep_metrics_put_family(out, f->name, f->type, f->help);
        for (int i = 0; i < 2; i++) {
            const char *lv[1];
            double v;
            if (qs[i] && queue_value(k, &st[i], &v)) {
                lv[0] = qs[i]->provider->name;
                ep_metrics_put_sample(out, f->name, 1, l_queue, lv, v);
            }
        }
    }
}

/* The "total" of the queue's lag object, 0 when it reports none. */
static double queue_lag(ep_queue_t *q)
{
    ep_buf_t b = EP_BUF_INIT;
    const char *p;
    double v = 0;

    if (q == NULL) {
        return 0;
    }
    ep_queue_lag_json(q, &b);
    ep_buf_putc(&b, '\0');
    if ((p = strstr(b.data, "\"total\":")) != NULL) {
        v = strtod(p + 8, NULL);
    }
    ep_buf_close(&b);
    return v > 0 ? v : 0;
}

/*
 * The circuit breakers of this process's hops: the gateway's to ingest, ingest's
 * to the processor or broker. State 0 closed, 1 open, 2 half-open.
 */
static void put_breakers(ep_app_t *app, ep_buf_t *out)
{
    static const char *const l_target[] = {"target"};
    ep_breaker_t *bs[2] = {app->ingest_breaker, app->ingest.breaker};
    ep_breaker_stats_t st[2];
    static const char *const names[3] = {"circuit_breaker_state", "circuit_breaker_rejected_total",
                                         "circuit_breaker_opened_total"};
    static const char *const helps[3] = {
        ("State of the circuit breaker of a hop: 0 closed, 1 open (calls refused with 503), "
         "2 half-open (one probe out)."),
        "Calls refused with 503 because the hop's circuit breaker was open or half-open.",
        "Times the hop's circuit breaker opened."};
    static const ep_metric_type_t types[3] = {EP_METRIC_GAUGE, EP_METRIC_COUNTER,
                                              EP_METRIC_COUNTER};

    if (bs[0] == NULL && bs[1] == NULL) {
        return;
    }
    for (int i = 0; i < 2; i++) {
        if (bs[i]) {
            ep_breaker_stats(bs[i], &st[i]);
        }
    }
    for (int k = 0; k < 3; k++) {
        ep_metrics_put_family(out, names[k], types[k], helps[k]);
        for (int i = 0; i < 2; i++) {
            const char *lv[1];
            double v;
            if (bs[i] == NULL) {
                continue;
            }
            lv[0] = ep_breaker_target(bs[i]);
            v = k == 0 ? (double)st[i].state
                       : (double)(k == 1 ? st[i].rejected : st[i].times_opened);
            ep_metrics_put_sample(out, names[k], 1, l_target, lv, v);
        }
    }
}

static void put_health(ep_buf_t *out, const char *role, int ok)
{
    const char *lv[1] = {role};

    ep_metrics_put_sample(out, "system_health_status", 1, l_role, lv, ok ? 1 : 0);
}

void ep__monitor_collect(ep_app_t *app, ep_buf_t *out)
{
    ep_worker_pool_stats_t ps = {0};
    ep_ingest_t *ig = &app->ingest;
    char reason[200];

    if (app->pool) {
        ep_worker_pool_stats(app->pool, &ps);
    }
    {
        /* Seed 003's APP_NAME, APP_VERSION, APP_ENV, as an info metric (always 1). */
        static const char *const l_app[] = {"name", "version", "env"};
        const char *av[3] = {app->cfg.app_name, app->cfg.app_version, app->cfg.app_env};
        ep_metrics_put_family(out, "app_info", EP_METRIC_GAUGE,
                              "The application: APP_NAME, APP_VERSION, APP_ENV (always 1).");
        ep_metrics_put_sample(out, "app_info", 3, l_app, av, 1);
    }
    put_queues(app, out);

    put1(out, "worker_pool_active", EP_METRIC_GAUGE, "Workers busy with a batch right now.",
         ps.active);
    put1(out, "worker_pool_size", EP_METRIC_GAUGE, "Configured worker threads.", ps.workers);
    {
        const char *lv[2] = {"success", "error"};
        double v[2] = {(double)ps.processed, (double)ps.errors};
        put_by(out, "messages_processed_total", EP_METRIC_COUNTER,
               "Events the worker pool finished: success (in the output and acked) or error "
               "(each failed attempt).",
               l_status, 2, lv, v);
    }
    put1(out, "events_processed_total", EP_METRIC_COUNTER,
         "Events processed, written to the output and acknowledged (exact).", (double)ps.processed);
    put1(out, "ep_worker_pool_batches_total", EP_METRIC_COUNTER,
         "Batches the workers took from the queue.", (double)ps.batches);
    put1(out, "ep_dead_lettered_total", EP_METRIC_COUNTER,
         "Events handed to the dead-letter store (or dropped without one).",
         (double)ps.dead_lettered);

    put1(out, "ep_ingest_events_received_total", EP_METRIC_COUNTER,
         "Events received by ingest (valid or not).", (double)atomic_load(&ig->received));
    put1(out, "producer_events_published_total", EP_METRIC_COUNTER,
         "Events ingest published and the queue acknowledged.", (double)atomic_load(&ig->sent));
    put1(out, "producer_events_failed_total", EP_METRIC_COUNTER,
         "Events ingest could not publish (queue full, broker down, ...).",
         (double)atomic_load(&ig->failed));
    put1(out, "ep_ingest_duplicates_total", EP_METRIC_COUNTER,
         "Events answered as duplicates of a client id already accepted.",
         (double)atomic_load(&ig->duplicates));
    if (ig->dedup != NULL) {
        ep_dedup_stats_t ds;
        ep_dedup_stats(ig->dedup, ep_time_mono_ms() / 1000, &ds);
        put1(out, "ep_dedup_capacity", EP_METRIC_GAUGE,
             "Client ids the dedup table holds at most (DEDUP_CAPACITY).", (double)ds.capacity);
        put1(out, "ep_dedup_ids", EP_METRIC_GAUGE, "Client ids the dedup table holds now.",
             (double)ds.size);
        put1(out, "ep_dedup_evicted_total", EP_METRIC_COUNTER,
             "Client ids evicted from the full dedup table before DEDUP_WINDOW ended.",
             (double)ds.evicted);
        put1(out, "ep_dedup_effective_window_seconds", EP_METRIC_GAUGE,
             "A repeat of a client id accepted less than this many seconds ago is caught: "
             "DEDUP_WINDOW, or less while the full table evicts ids early.",
             (double)ds.effective_window_s);
    }

    {
        const char *lv[4] = {"publish", "invalid_event", "processing", "dead_letter"};
        double v[4] = {(double)atomic_load(&ig->failed), (double)atomic_load(&ig->rejected),
                       (double)ps.errors, (double)ps.dead_lettered};
        put_by(out, "errors_total", EP_METRIC_COUNTER,
               "Errors by kind: publish (ingest publish failed), invalid_event (rejected by "
               "validation), processing (failed processing attempt), dead_letter (given up "
               "after every attempt).",
               l_kind, 4, lv, v);
    }

    put1(out, "kafka_consumer_lag_total", EP_METRIC_COUNTER,
         "Consumer lag in events as the queue reports it (Kafka: summed over partitions; "
         "NATS: pending); 0 when the queue reports none. A level, despite the seed's name.",
         queue_lag(app->queue));
    put1(out, "service_uptime_seconds", EP_METRIC_GAUGE, "Seconds since the process started.",
         (double)(ep_time_now_ms() - app->started_ms) / 1000.0);
    put_breakers(app, out);

    ep_metrics_put_family(out, "system_health_status", EP_METRIC_GAUGE,
                          "1 when the role is ready to serve, 0 when not (see /ready).");
    if (app->roles & EP_ROLE_GATEWAY) {
        /* In-process ingest: its readiness; a remote one is probed by /ready, not here. */
        put_health(out, "gateway",
                   (app->roles & EP_ROLE_INGEST) ? ep__ingest_ready(app, reason, sizeof(reason))
                                                 : 1);
    }
    if (app->roles & EP_ROLE_INGEST) {
        put_health(out, "ingest", ep__ingest_ready(app, reason, sizeof(reason)));
    }
    if (app->roles & EP_ROLE_PROCESSOR) {
        put_health(out, "processor", ep__processor_ready(app, reason, sizeof(reason)));
    }
    if (app->roles & EP_ROLE_ANALYTICS) {
        put_health(out, "analytics", ep__analytics_ready(app, reason, sizeof(reason)));
    }
}
