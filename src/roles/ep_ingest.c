/*
 * The ingest role: POST /ingest validates one event and hands it to the
 * queue; the answer (202 with the messageId) is given only once the queue
 * accepted it.
 */
#include "ep_app.h"
#include "ep_error.h"
#include "ep_event.h"
#include "ep_id.h"
#include "ep_mem.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct pending_s {
    ep_ingest_t *ig;
    ep_http_req_t *req;
    char id[132];
} pending_t;

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
static ep_event_parser_t *thread_parser(const ep_config_t *cfg)
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

void ep__respond_publish_error(ep_http_req_t *req, int err)
{
    char msg[160];

    switch (err) {
    case EP_EFULL:
        ep_http_respond_error(req, 503, "queue is full, retry later", NULL);
        break;
    case EP_ECLOSED:
        ep_http_respond_error(req, 503, "shutting down, retry on another instance", NULL);
        break;
    case EP_EINVAL:
    case EP_EVALIDATE:
        ep_http_respond_error(req, 400, "the queue rejected the event as invalid", NULL);
        break;
    default:
        snprintf(msg, sizeof(msg), "queue unavailable: %s", ep_strerror(err));
        ep_http_respond_error(req, 503, msg, NULL);
        break;
    }
}

static void on_published(void *arg, size_t n, const int *status)
{
    pending_t *p = arg;
    ep_buf_t b = EP_BUF_INIT;

    if (status[0] == 0) {
        atomic_fetch_add_explicit(&p->ig->sent, 1, memory_order_relaxed);
        ep_buf_puts(&b, "{\"messageId\":");
        ep_buf_put_json_str(&b, p->id, strlen(p->id));
        ep_buf_puts(&b, ",\"status\":\"accepted\"}\n");
        ep_http_respond_buf(p->req, 202, &b);
    } else {
        atomic_fetch_add_explicit(&p->ig->failed, 1, memory_order_relaxed);
        ep__respond_publish_error(p->req, status[0]);
    }
    ep_free(p);
}

/* JSON, NDJSON, text and curl's default form type are read as JSON; others are refused. */
static int content_type_ok(ep_http_req_t *req)
{
    const char *ct = ep_http_req_header(req, "Content-Type");

    if (ct == NULL || *ct == '\0') {
        return 1;
    }
    return strncasecmp(ct, "application/json", 16) == 0 || strcasestr(ct, "+json") != NULL ||
           strncasecmp(ct, "text/plain", 10) == 0 ||
           strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0;
}

static void on_ingest(void *arg, ep_http_req_t *req)
{
    ep_ingest_t *ig = arg;
    ep_event_t *ev = NULL;
    ep_parse_err_t perr;
    pending_t *p;
    int rc;

    if (!content_type_ok(req)) {
        atomic_fetch_add_explicit(&ig->rejected, 1, memory_order_relaxed);
        ep_http_respond_error(req, 415, "unsupported Content-Type; send application/json",
                              "Content-Type");
        return;
    }
    rc = ep_event_parser_parse(thread_parser(&ig->app->cfg), ep_http_req_body(req),
                               ep_http_req_body_len(req), &ev, &perr);
    if (rc != 0) {
        atomic_fetch_add_explicit(&ig->rejected, 1, memory_order_relaxed);
        ep_http_respond_error(req, 400, perr.msg, perr.field);
        return;
    }
    atomic_fetch_add_explicit(&ig->received, 1, memory_order_relaxed);
    p = ep_malloc(sizeof(*p));
    p->ig = ig;
    p->req = req;
    snprintf(p->id, sizeof(p->id), "%s", ev->id.p);
    rc = ep_queue_publish(ig->queue, &ev, 1, on_published, p);
    if (rc != 0) {
        ep_event_destroy(ev);
        ep_free(p);
        atomic_fetch_add_explicit(&ig->failed, 1, memory_order_relaxed);
        ep__respond_publish_error(req, rc);
    }
}

static void on_stats(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep__ingest_stats_json(app, &b);
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

void ep__ingest_stats_json(ep_app_t *app, ep_buf_t *out)
{
    ep_ingest_t *ig = &app->ingest;
    ep_queue_stats_t qs;

    ep_queue_stats(ig->queue, &qs);
    ep_buf_printf(out,
                  "{\"TotalReceived\":%llu,\"TotalSent\":%llu,\"TotalFailed\":%llu,"
                  "\"TotalRejected\":%llu,\"queue\":\"%s\",\"pending\":%lld}",
                  (unsigned long long)atomic_load(&ig->received),
                  (unsigned long long)atomic_load(&ig->sent),
                  (unsigned long long)atomic_load(&ig->failed),
                  (unsigned long long)atomic_load(&ig->rejected), ig->queue->provider->name,
                  (long long)(qs.size < 0 ? 0 : qs.size));
}

int ep__ingest_ready(ep_app_t *app, char *reason, size_t len)
{
    return ep_queue_ready(app->ingest.queue, reason, len);
}

void ep__ingest_routes(ep_app_t *app, ep_http_server_t *srv, int as_gateway)
{
    app->ingest.app = app;
    if (as_gateway) {
        ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/ingest", on_ingest, &app->ingest);
        ep_http_server_route(srv, EP_HTTP_POST, "/api/ingest", on_ingest, &app->ingest);
    }
    ep_http_server_route(srv, EP_HTTP_POST, "/ingest", on_ingest, &app->ingest);
    if (!as_gateway) {
        ep_http_server_route(srv, EP_HTTP_GET, "/stats", on_stats, app);
    }
}
