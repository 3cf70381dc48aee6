/* clang-format off: the route table below is laid out by hand. */
/*
 * The ingest role: validates events and hands them to the queue.
 *
 *   POST /ingest, /events                     one event; 202 once the queue acknowledged it
 *   POST /events/async                        one event; 202 once it is handed to the queue
 *   POST /events/batch                        a JSON array or NDJSON (gzip allowed); per-event
 *                                             results (ep_ingest_batch.c)
 *   POST /api/v1/events/{user,order,payment}  seed 003 typed events
 *   GET  /stats, /api/v1/events/stats         counters
 *
 * Client-given ids are idempotent within DEDUP_WINDOW: a repeat is acknowledged
 * again (with "duplicate":true) and not enqueued twice.
 *
 * A failed publish is answered from one table (publish_errors), for single
 * events, batches and the processor's /enqueue alike.
 */
/* clang-format on */
#include "roles/ep_ingest_int.h"
#include "roles/ep_access.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "obs/ep_obs.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------ shared bits */

static const char *const typed_names[3] = {"user", "order", "payment"};
static const char *const typed_types[3] = {"user_created", "order_created", "payment_created"};

static pthread_key_t parser_key;
static pthread_once_t parser_once = PTHREAD_ONCE_INIT;

static void parser_free(void *p)
{
    ep_event_parser_destroy(p);
}

static void parser_key_init(void)
{
    pthread_key_create(&parser_key, parser_free);
}

/* One parser per server thread, reused for every request. */
ep_event_parser_t *ep__ingest_parser(const ep_config_t *cfg)
{
    ep_event_parser_t *p;

    pthread_once(&parser_once, parser_key_init);
    p = pthread_getspecific(parser_key);
    if (p == NULL) {
        ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
        lim.max_meta_keys = (uint32_t)cfg->max_meta_keys;
        lim.max_data_len = (uint32_t)cfg->max_data_len;
        p = ep_event_parser_create(&lim);
        pthread_setspecific(parser_key, p);
    }
    return p;
}

/*
 * A queue refuses an event with EP_EFULL, EP_ECLOSED, EP_EINVAL/EP_EVALIDATE,
 * EP_E2BIG or EP_ECONFIG (the processor refused ingest's INTERNAL_TOKEN) before
 * keeping any of it. Any other failure (a timeout, a downstream
 * that stopped answering after it got the event, a fail-fast composite where
 * one provider had already stored it) leaves open whether it was kept.
 */
int ep__publish_maybe_kept(int err)
{
    return err != 0 && err != EP_EFULL && err != EP_ECLOSED && err != EP_EINVAL &&
           err != EP_EVALIDATE && err != EP_E2BIG && err != EP_ECIRCUIT && err != EP_ECONFIG;
}

int ep__ingest_publish(ep_ingest_t *ig, ep_breaker_pass_t *pass, ep_event_t **evs, size_t n,
                       ep_publish_cb cb, void *arg)
{
    int rc;

    if (ig->breaker == NULL) {
        return ep_queue_publish(ig->queue, evs, n, cb, arg);
    }
    /* The pass is written before the publish: the callback may run before it returns. */
    if ((rc = ep_breaker_allow(ig->breaker, pass)) != 0) {
        return rc;
    }
    rc = ep_queue_publish(ig->queue, evs, n, cb, arg);
    if (rc != 0) {
        ep_breaker_record_status(ig->breaker, pass, 1, &rc);
    }
    return rc;
}

void ep__ingest_report(ep_ingest_t *ig, const ep_breaker_pass_t *pass, size_t n, const int *status)
{
    if (ig->breaker) {
        ep_breaker_record_status(ig->breaker, pass, n, status);
    }
}

int ep__ingest_retry_after(ep_ingest_t *ig, int err)
{
    return err == EP_ECIRCUIT && ig->breaker ? ep_breaker_retry_after_s(ig->breaker)
                                             : ig->app->cfg.retry_after_s;
}

/*
 * What a failed publish answers, one row per error (design.md section 2): 400
 * or 413 when the queue refused the event (nothing kept; the same request
 * fails again), 409 for an id still being stored, and 503 with Retry-After
 * for the rest, also for an error without a row ("queue unavailable: ...").
 */
static const struct publish_error_s {
    int err;
    int status;
    const char *msg;
} publish_errors[] = {
    {EP_EINVAL, 400, "the queue rejected the event as invalid"},
    {EP_EVALIDATE, 400, "the queue rejected the event as invalid"},
    {EP_E2BIG, 413, "the event is larger than the queue accepts"},
    {EP_EAGAIN, 409, "an event with this id is still being stored; retry"},
    {EP_EFULL, 503, "queue is full, retry later"},
    {EP_ECLOSED, 503, "shutting down, retry on another instance"},
    {EP_ECIRCUIT, 503, "circuit breaker open for the next hop; retry later"},
};

static const struct publish_error_s *publish_error_row(int err)
{
    for (size_t i = 0; i < sizeof(publish_errors) / sizeof(publish_errors[0]); i++) {
        if (publish_errors[i].err == err) {
            return &publish_errors[i];
        }
    }
    return NULL;
}

int ep__ingest_error_status(int err)
{
    const struct publish_error_s *row = publish_error_row(err);

    return row ? row->status : 503;
}

const char *ep__ingest_error_msg(ep_ingest_t *ig, int err, char *buf, size_t len)
{
    const struct publish_error_s *row = publish_error_row(err);

    if (err == EP_ECIRCUIT && ig && ig->breaker) {
        return ep_breaker_message(ig->breaker);
    }
    if (row) {
        return row->msg;
    }
    snprintf(buf, len, "queue unavailable: %s", ep_strerror(err));
    return buf;
}

/*
 * Answers a failed publish of the event id (len bytes; NULL: none). ig: the
 * ingest whose breaker speaks for EP_ECIRCUIT, or NULL. A 503 says whether
 * the event may be kept anyway, and under which id to retry it.
 */
static void respond_publish_error(ep_ingest_t *ig, ep_http_req_t *req, int err, const char *id,
                                  size_t len, int retry_after_s)
{
    char buf[160], v[16];
    const char *msg = ep__ingest_error_msg(ig, err, buf, sizeof(buf));
    int status = ep__ingest_error_status(err);
    ep_buf_t b = EP_BUF_INIT;

    if (status != 503) {
        ep_http_respond_error(req, status, msg, NULL);
        return;
    }
    ep_buf_puts(&b, "{\"error\":");
    ep_buf_put_json_str(&b, msg, strlen(msg));
    if (id) {
        ep_buf_puts(&b, ",\"messageId\":");
        ep_buf_put_json_str(&b, id, len);
    }
    ep_buf_puts(&b, ep__publish_maybe_kept(err) ? ",\"maybe_kept\":true}\n"
                                                : ",\"maybe_kept\":false}\n");
    snprintf(v, sizeof(v), "%d", retry_after_s);
    ep_http_req_add_header(req, "Retry-After", v);
    ep_http_respond_buf(req, 503, &b);
}

void ep__respond_publish_error(ep_http_req_t *req, int err, const char *id, size_t len,
                               int retry_after_s)
{
    respond_publish_error(NULL, req, err, id, len, retry_after_s);
}

/* Answers a failed publish; while the hop's breaker is open, with its message and cool-down. */
static void respond_failed(ep_ingest_t *ig, ep_http_req_t *req, int err, const char *id, size_t len)
{
    respond_publish_error(ig, req, err, id, len, ep__ingest_retry_after(ig, err));
}

int ep__ingest_id_header(ep_http_req_t *req, const char **id)
{
    const char *h = ep_http_req_header(req, ID_HEADER);

    *id = NULL;
    if (h == NULL || *h == '\0') {
        return 1;
    }
    if (!ep_id_is_assigned_base(h, strlen(h))) {
        ep_http_respond_error(req, 400, "must be a UUID of version 8 ending in 000000", ID_HEADER);
        return 0;
    }
    *id = h;
    return 1;
}

int ep__ingest_content_type_ok(ep_http_req_t *req)
{
    const char *ct = ep_http_req_header(req, "Content-Type");

    if (ct == NULL || *ct == '\0') {
        return 1;
    }
    return strncasecmp(ct, EP_STRLIT("application/json")) == 0 || strcasestr(ct, "+json") != NULL ||
           strncasecmp(ct, EP_STRLIT("application/x-ndjson")) == 0 ||
           strncasecmp(ct, EP_STRLIT("application/ndjson")) == 0 ||
           strncasecmp(ct, EP_STRLIT("text/plain")) == 0 ||
           strncasecmp(ct, EP_STRLIT("application/x-www-form-urlencoded")) == 0;
}

void ep__ingest_range_key(const char *id, char *key)
{
    ep_id_base_of(id, key);
    key[EP_UUID_STR_LEN] = '*';
    key[RANGE_KEY_LEN] = '\0';
}

ep_dedup_result_t ep__ingest_reserve_id(ep_dedup_t *d, const char *id, size_t len, int numbered,
                                        int64_t now)
{
    if (!numbered && ep_id_is_assigned(id, len)) {
        char key[RANGE_KEY_LEN + 1];
        ep_dedup_result_t r;

        ep__ingest_range_key(id, key);
        r = ep_dedup_reserve(d, key, RANGE_KEY_LEN, now);
        if (r != EP_DEDUP_NEW) {
            return r;
        }
        ep_dedup_release(d, key, RANGE_KEY_LEN);
    }
    return ep_dedup_reserve(d, id, len, now);
}

/* 202 {"messageId":id,"status":status[,"duplicate":true]}. */
static void respond_accepted(ep_http_req_t *req, const char *id, size_t len, const char *status,
                             int dup)
{
    ep_buf_t b = EP_BUF_INIT;

    ep_buf_puts(&b, "{\"messageId\":");
    ep_buf_put_json_str(&b, id, len);
    ep_buf_puts(&b, ",\"status\":\"");
    ep_buf_puts(&b, status);
    ep_buf_puts(&b, dup ? "\",\"duplicate\":true}\n" : "\"}\n");
    ep_http_respond_buf(req, 202, &b);
}

/* ------------------------------------------------------------ one event */

typedef struct single_s {
    ep_ingest_t *ig;
    ep_http_req_t *req; /* NULL once answered (async mode) */
    int dedup;          /* the id was reserved in the window */
    int typed_index;
    int64_t start_ns;
    ep_breaker_pass_t pass; /* from the hop's circuit breaker */
    size_t id_len;
    char id[132];
} single_t;

static void on_single_published(void *arg, size_t n, const int *status)
{
    single_t *p = arg;
    ep_ingest_t *ig = p->ig;

    ep_obs_publish_done(ig->app->obs, n, status, p->start_ns);
    ep__ingest_report(ig, &p->pass, n, status);
    if (status[0] == 0) {
        ingest_inc(&ig->sent, 1);
        ingest_inc(&ig->publish_us_sum, (uint64_t)((ep_time_mono_ns() - p->start_ns) / 1000));
        ingest_inc(&ig->publish_count, 1);
        if (p->typed_index >= 0) {
            ingest_inc(&ig->typed[p->typed_index], 1);
        }
        if (p->dedup) {
            ep_dedup_commit(ig->dedup, p->id, p->id_len, ingest_now_s());
        }
        if (p->req) {
            respond_accepted(p->req, p->id, p->id_len, "accepted", 0);
        }
    } else {
        ingest_inc(&ig->failed, 1);
        if (p->dedup) {
            ep_dedup_release(ig->dedup, p->id, p->id_len);
        }
        if (p->req) {
            respond_failed(ig, p->req, status[0], p->id, p->id_len);
        }
    }
    ep_free(p);
}

/*
 * Reads the one event of req: its content type, the gateway's X-Message-Id
 * (then lid is the id it gives the event, else lid is ""), and the body.
 * Returns the event, or NULL after answering 415 or 400.
 */
static ep_event_t *single_parse(const route_t *rt, ep_http_req_t *req, char *lid)
{
    ep_ingest_t *ig = rt->ig;
    ep_event_parse_opts_t opts = rt->opts;
    const ep_event_parse_opts_t *o =
        rt->opts.event_type || rt->opts.default_source ? &rt->opts : NULL;
    ep_event_t *ev = NULL;
    ep_parse_err_t perr;
    const char *hid;

    lid[0] = '\0';
    if (!ep__ingest_content_type_ok(req)) {
        ingest_inc(&ig->rejected, 1);
        ep_http_respond_error(req, 415, "unsupported Content-Type; send application/json",
                              "Content-Type");
        return NULL;
    }
    if (!ep__ingest_id_header(req, &hid)) {
        ingest_inc(&ig->rejected, 1);
        return NULL;
    }
    if (hid) {
        /* The id the gateway assigned (and would name in a 503) when the body has none. */
        ep_id_uuid_add(hid, 0, lid);
        opts.id = lid;
        o = &opts;
    }
    if (ep_event_parser_parse_opts(ep__ingest_parser(&ig->app->cfg), ep_http_req_body(req),
                                   ep_http_req_body_len(req), o, &ev, &perr) != 0) {
        ingest_inc(&ig->rejected, 1);
        ep_http_respond_error(req, 400, perr.msg, perr.field);
        return NULL;
    }
    return ev;
}

/* The publish context of a parsed event; its id copied (the event goes to the queue). */
static single_t *single_create(const route_t *rt, ep_http_req_t *req, const ep_event_t *ev)
{
    single_t *p = ep_malloc(sizeof(*p));

    p->ig = rt->ig;
    p->req = req;
    p->dedup = 0;
    p->typed_index = rt->typed_index;
    p->start_ns = ep_http_req_start_ns(req);
    p->id_len = ev->id.len < sizeof(p->id) - 1 ? ev->id.len : sizeof(p->id) - 1;
    memcpy(p->id, ev->id.p, p->id_len);
    p->id[p->id_len] = '\0';
    return p;
}

/*
 * Reserves a client's id in the window (lid: the id X-Message-Id numbered, or
 * ""). 1: publish it; 0: answered (a repeat: 202 with "duplicate"; an id
 * still being stored: 409), and p and ev are freed.
 */
static int single_dedup(single_t *p, ep_http_req_t *req, ep_event_t *ev, const char *lid)
{
    ep_ingest_t *ig = p->ig;
    int numbered = lid[0] && p->id_len == EP_UUID_STR_LEN && memcmp(p->id, lid, p->id_len) == 0;

    if (ig->dedup == NULL || !ingest_has_client_id(ev)) {
        return 1;
    }
    switch (ep__ingest_reserve_id(ig->dedup, p->id, p->id_len, numbered, ingest_now_s())) {
    case EP_DEDUP_NEW:
        p->dedup = 1;
        return 1;
    case EP_DEDUP_DONE:
        ingest_inc(&ig->duplicates, 1);
        respond_accepted(req, p->id, p->id_len, "accepted", 1);
        break;
    case EP_DEDUP_PENDING:
        ep_http_respond_error(req, ep__ingest_error_status(EP_EAGAIN),
                              ep__ingest_error_msg(ig, EP_EAGAIN, NULL, 0), "id");
        break;
    }
    ep_event_destroy(ev);
    ep_free(p);
    return 0;
}

/* A publish that took nothing: the id leaves the window, and 4xx/503 answers. Frees p and ev. */
static void single_failed(single_t *p, ep_http_req_t *req, ep_event_t *ev, int err)
{
    ep_ingest_t *ig = p->ig;

    if (p->dedup) {
        ep_dedup_release(ig->dedup, p->id, p->id_len);
    }
    ingest_inc(&ig->failed, 1);
    respond_failed(ig, req, err, p->id, p->id_len);
    ep_event_destroy(ev);
    ep_free(p);
}

/*
 * Publishes the event. Sync: on_single_published answers. Async: answered
 * here once buffered; the callback only counts (and may free p before the
 * publish returns, hence the id's copy).
 */
static void single_publish(single_t *p, mode_t_ mode, ep_http_req_t *req, ep_event_t *ev)
{
    ep_ingest_t *ig = p->ig;
    char id[sizeof(p->id)];
    size_t id_len = p->id_len;
    int rc;

    if (mode == MODE_ASYNC) {
        memcpy(id, p->id, id_len + 1);
        p->req = NULL;
    }
    rc = ep__ingest_publish(ig, &p->pass, &ev, 1, on_single_published, p);
    if (rc != 0) {
        single_failed(p, req, ev, rc);
    } else if (mode == MODE_ASYNC) {
        ingest_inc(&ig->async_accepted, 1);
        respond_accepted(req, id, id_len, "buffered", 0);
    }
}

static void on_single(void *arg, ep_http_req_t *req)
{
    route_t *rt = arg;
    ep_ingest_t *ig = rt->ig;
    char lid[EP_UUID_STR_LEN + 1];
    ep_access_who_t who;
    ep_event_t *ev;
    single_t *p;

    if (!ep_access_check(ig->app->access, req, EP_ACCESS_INGEST, &who)) {
        return;
    }
    if ((ev = single_parse(rt, req, lid)) == NULL) {
        return;
    }
    /* Charged once parsed, before anything is kept: a refusal (429) keeps nothing. */
    if (!ep_access_charge(ig->app->access, req, &who, 1)) {
        ep_event_destroy(ev);
        return;
    }
    ingest_inc(&ig->received, 1);
    p = single_create(rt, req, ev);
    if (single_dedup(p, req, ev, lid)) {
        single_publish(p, rt->mode, req, ev);
    }
}

/* ------------------------------------------------------------ stats */

void ep__ingest_stats_json(ep_app_t *app, ep_buf_t *out)
{
    ep_ingest_t *ig = &app->ingest;
    ep_queue_stats_t qs;
    uint64_t pc = atomic_load(&ig->publish_count);
    double uptime = (double)(ep_time_now_ms() - app->started_ms) / 1000.0;

    ep_queue_stats(ig->queue, &qs);
    ep_buf_printf(out,
                  "{\"TotalReceived\":%llu,\"TotalSent\":%llu,\"TotalFailed\":%llu,"
                  "\"TotalRejected\":%llu,\"duplicates\":%llu,\"batches\":%llu,"
                  "\"async_accepted\":%llu,\"avg_publish_latency_ms\":%.3f,"
                  "\"events_per_second\":%.1f,\"queue\":\"%s\",\"pending\":%lld",
                  (unsigned long long)atomic_load(&ig->received),
                  (unsigned long long)atomic_load(&ig->sent),
                  (unsigned long long)atomic_load(&ig->failed),
                  (unsigned long long)atomic_load(&ig->rejected),
                  (unsigned long long)atomic_load(&ig->duplicates),
                  (unsigned long long)atomic_load(&ig->batches),
                  (unsigned long long)atomic_load(&ig->async_accepted),
                  pc ? (double)atomic_load(&ig->publish_us_sum) / (double)pc / 1000.0 : 0.0,
                  uptime > 0 ? (double)atomic_load(&ig->sent) / uptime : 0.0,
                  ig->queue->provider->name, (long long)(qs.size < 0 ? 0 : qs.size));
    if (ig->dedup != NULL) {
        ep_dedup_stats_t ds;
        ep_dedup_stats(ig->dedup, ingest_now_s(), &ds);
        ep_buf_printf(out,
                      ",\"dedup\":{\"capacity\":%zu,\"size\":%zu,\"evicted\":%llu,"
                      "\"window_s\":%lld,\"effective_window_s\":%lld}",
                      ds.capacity, ds.size, (unsigned long long)ds.evicted, (long long)ds.window_s,
                      (long long)ds.effective_window_s);
    }
    if (ig->breaker != NULL) {
        ep_buf_puts(out, ",\"circuit_breakers\":{");
        ep_breaker_stats_json(ig->breaker, out);
        ep_buf_putc(out, '}');
    }
    ep_buf_putc(out, '}');
}

static void on_stats(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep__ingest_stats_json(app, &b);
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

static void on_events_stats(void *arg, ep_http_req_t *req)
{
    ep_ingest_t *ig = arg;
    ep_buf_t b = EP_BUF_INIT;
    uint64_t total = 0;

    ep_buf_puts(&b, "{\"events_by_type\":{");
    for (int i = 0; i < 3; i++) {
        uint64_t v = atomic_load(&ig->typed[i]);
        total += v;
        ep_buf_printf(&b, "%s\"%s\":%llu", i ? "," : "", typed_types[i], (unsigned long long)v);
    }
    ep_buf_printf(&b,
                  "},\"total_typed\":%llu,\"total_published\":%llu,\"total_failed\":%llu,"
                  "\"total_rejected\":%llu}\n",
                  (unsigned long long)total, (unsigned long long)atomic_load(&ig->sent),
                  (unsigned long long)atomic_load(&ig->failed),
                  (unsigned long long)atomic_load(&ig->rejected));
    ep_http_respond_buf(req, 200, &b);
}

int ep__ingest_ready(ep_app_t *app, char *reason, size_t len)
{
    return ep_queue_ready(app->ingest.queue, reason, len);
}

/* ------------------------------------------------------------ wiring */

/* The route contexts of one ingest (ep_ingest_t.routes), shared by the ports that serve it. */
struct ep_ingest_routes_s {
    route_t sync, async, batch, typed[3];
};

static struct ep_ingest_routes_s *routes_create(ep_ingest_t *ig)
{
    struct ep_ingest_routes_s *r = ep_calloc(1, sizeof(*r));

    r->sync = (route_t){.ig = ig, .mode = MODE_SYNC, .typed_index = -1};
    r->async = (route_t){.ig = ig, .mode = MODE_ASYNC, .typed_index = -1};
    r->batch = (route_t){.ig = ig, .mode = MODE_SYNC, .typed_index = -1};
    for (int i = 0; i < 3; i++) {
        r->typed[i] = (route_t){
            .ig = ig,
            .mode = MODE_SYNC,
            .opts = {.default_source = "api", .event_type = typed_types[i], .require_data = 1},
            .typed_index = i};
    }
    return r;
}

void ep__ingest_routes(ep_app_t *app, ep_http_server_t *srv, int as_gateway)
{
    ep_ingest_t *ig = &app->ingest;
    size_t batch_body = (size_t)app->cfg.max_batch_body;
    struct ep_ingest_routes_s *r;
    char path[64];

    ig->app = app;
    if (ig->dedup == NULL && app->cfg.dedup_window_s > 0) {
        ig->dedup = ep_dedup_create(app->cfg.dedup_window_s, (size_t)app->cfg.dedup_capacity);
        ep_dedup_set_name(ig->dedup, "DEDUP_CAPACITY");
    }
    if (ig->routes == NULL) {
        ig->routes = routes_create(ig);
    }
    r = ig->routes;

    /* The gateway's public paths on ingest too: a client works against either base URL. */
    /* clang-format off */
    ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/ingest",       on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/api/ingest",          on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/events",       on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/events/async", on_single, &r->async);
    ep_http_server_route_ex(srv, EP_HTTP_POST, "/api/v1/events/batch", ep__ingest_on_batch,
                            &r->batch, batch_body);
    if (!as_gateway) {
        ep_access_route(app->access, srv, EP_HTTP_GET, "/stats", EP_ACCESS_READ, on_stats, app, 0);
    }
    ep_http_server_route(srv, EP_HTTP_POST, "/ingest",              on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/events",              on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/events/async",        on_single, &r->async);
    ep_http_server_route_ex(srv, EP_HTTP_POST, "/events/batch",     ep__ingest_on_batch,
                            &r->batch, batch_body);
    /* clang-format on */
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/api/v1/events/%s", typed_names[i]);
        ep_http_server_route(srv, EP_HTTP_POST, path, on_single, &r->typed[i]);
    }
    ep_access_route(app->access, srv, EP_HTTP_GET, "/api/v1/events/stats", EP_ACCESS_READ,
                    on_events_stats, ig, 0);
}

void ep__ingest_close(ep_app_t *app)
{
    ep_dedup_destroy(app->ingest.dedup);
    app->ingest.dedup = NULL;
    ep_free(app->ingest.routes);
    app->ingest.routes = NULL;
}

/* ------------------------------------------------------------ without HTTP (gRPC, issue 16) */

typedef struct sub_chunk_s {
    struct submit_s *job;
    ep_breaker_pass_t pass;
    uint32_t first, n; /* into job->pub */
} sub_chunk_t;

typedef struct submit_s {
    ep_ingest_t *ig;
    const ep_str_t *ids;
    int *status;
    size_t n, npub;
    int64_t start_ns;
    ep_ingest_done_cb cb;
    void *arg;
    atomic_int pending;
    uint8_t *dedup;   /* the id was reserved in the window */
    uint32_t *idx;    /* pub slot -> event index */
    ep_event_t **pub; /* the events to publish, in chunks */
    sub_chunk_t chunks[];
} submit_t;

static void submit_finish(submit_t *j)
{
    ep_ingest_t *ig = j->ig;
    size_t kept = 0, failed = 0, dups = 0;

    for (size_t i = 0; i < j->n; i++) {
        int st = j->status[i];
        if (st == 0) {
            kept++;
            if (j->dedup[i]) {
                ep_dedup_commit(ig->dedup, j->ids[i].p, j->ids[i].len, ingest_now_s());
            }
        } else if (st == EP_EEXIST) {
            dups++;
        } else {
            failed += st != EP_EAGAIN;
            if (j->dedup[i]) {
                ep_dedup_release(ig->dedup, j->ids[i].p, j->ids[i].len);
            }
        }
    }
    ingest_inc(&ig->sent, kept);
    ingest_inc(&ig->failed, failed);
    ingest_inc(&ig->duplicates, dups);
    if (kept) {
        ingest_inc(&ig->publish_us_sum,
                   (uint64_t)((ep_time_mono_ns() - j->start_ns) / 1000) * (uint64_t)kept);
        ingest_inc(&ig->publish_count, kept);
    }
    j->cb(j->arg);
    ep_free(j);
}

static void submit_release(submit_t *j)
{
    if (atomic_fetch_sub_explicit(&j->pending, 1, memory_order_acq_rel) == 1) {
        submit_finish(j);
    }
}

static void on_submit_published(void *arg, size_t n, const int *status)
{
    sub_chunk_t *c = arg;
    submit_t *j = c->job;

    ep_obs_publish_done(j->ig->app->obs, n, status, j->start_ns);
    ep__ingest_report(j->ig, &c->pass, n, status);
    for (size_t i = 0; i < n; i++) {
        j->status[j->idx[c->first + i]] = status[i];
    }
    submit_release(j);
}

void ep__ingest_submit(ep_ingest_t *ig, ep_event_t **evs, const ep_str_t *ids, int *status,
                       size_t n, int64_t start_ns, ep_ingest_done_cb cb, void *arg)
{
    size_t nch = (n + PUBLISH_CHUNK - 1) / PUBLISH_CHUNK;
    size_t sz = sizeof(submit_t) + nch * sizeof(sub_chunk_t);
    submit_t *j;
    size_t npub = 0, k;
    int rc = 0;
    int64_t now = ingest_now_s();

    sz = (sz + 7) & ~(size_t)7;
    j = ep_malloc(sz + n * (sizeof(ep_event_t *) + sizeof(uint32_t) + 1));
    j->pub = (ep_event_t **)((char *)j + sz);
    j->idx = (uint32_t *)(j->pub + n);
    j->dedup = (uint8_t *)(j->idx + n);
    j->ig = ig;
    j->ids = ids;
    j->status = status;
    j->n = n;
    j->start_ns = start_ns;
    j->cb = cb;
    j->arg = arg;
    atomic_init(&j->pending, 1);
    ingest_inc(&ig->received, n);
    for (size_t i = 0; i < n; i++) {
        j->dedup[i] = 0;
        status[i] = 1; /* not answered yet */
        if (ig->dedup && ingest_has_client_id(evs[i])) {
            switch (ep__ingest_reserve_id(ig->dedup, ids[i].p, ids[i].len, 0, now)) {
            case EP_DEDUP_DONE:
                status[i] = EP_EEXIST;
                ep_event_destroy(evs[i]);
                evs[i] = NULL;
                continue;
            case EP_DEDUP_PENDING:
                status[i] = EP_EAGAIN;
                ep_event_destroy(evs[i]);
                evs[i] = NULL;
                continue;
            case EP_DEDUP_NEW:
                j->dedup[i] = 1;
                break;
            }
        }
        j->idx[npub] = (uint32_t)i;
        j->pub[npub++] = evs[i];
        evs[i] = NULL;
    }
    j->npub = npub;
    for (k = 0; k * PUBLISH_CHUNK < npub; k++) {
        sub_chunk_t *c = &j->chunks[k];
        c->job = j;
        c->first = (uint32_t)(k * PUBLISH_CHUNK);
        c->n = (uint32_t)(npub - c->first < PUBLISH_CHUNK ? npub - c->first : PUBLISH_CHUNK);
        if (rc == 0) {
            atomic_fetch_add_explicit(&j->pending, 1, memory_order_relaxed);
            rc = ep__ingest_publish(ig, &c->pass, j->pub + c->first, c->n, on_submit_published, c);
            if (rc == 0) {
                continue;
            }
            atomic_fetch_sub_explicit(&j->pending, 1, memory_order_relaxed);
        }
        /* This chunk and the rest fail without trying: the queue refused. */
        for (uint32_t i = 0; i < c->n; i++) {
            status[j->idx[c->first + i]] = rc;
            ep_event_destroy(j->pub[c->first + i]);
        }
    }
    submit_release(j);
}

const char *ep__ingest_error_text(ep_ingest_t *ig, int err)
{
    static _Thread_local char buf[160]; /* the text of an error without a row */

    return ep__ingest_error_msg(ig, err, buf, sizeof(buf));
}
