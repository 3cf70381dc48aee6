/*
 * The processor role: POST /enqueue puts events on the local queue (one JSON
 * event, or a protobuf DataBatch from a remote ingest); the worker pool
 * consumes it. GET /stats shows the queue and the pool. /enqueue applies the
 * same validation and limits as ingest (ep_event_validate, EVENT_MAX_KEYS,
 * EVENT_MAX_DATA) and at most BATCH_MAX_EVENTS events per body; a body with
 * one bad event is refused whole (400 naming events[i].field, 413 past the
 * event cap) and nothing of it is queued.
 */
#include "roles/ep_access.h"
#include "roles/ep_app.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct enq_s {
    ep_http_req_t *req;
    size_t n;
    int retry_after_s; /* RETRY_AFTER, for a 503 */
} enq_t;

static void on_enqueued(void *arg, size_t n, const int *status)
{
    enq_t *e = arg;
    size_t ok = 0;
    ep_buf_t b = EP_BUF_INIT;

    for (size_t i = 0; i < n; i++) {
        ok += status[i] == 0;
    }
    if (ok == n) {
        ep_buf_printf(&b, "{\"accepted\":%zu}\n", n);
        ep_http_respond_buf(e->req, 202, &b);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (status[i] != 0) {
                ep__respond_publish_error(e->req, status[i], NULL, 0, e->retry_after_s);
                break;
            }
        }
    }
    ep_free(e);
}

static void on_enqueue(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    const char *ct = ep_http_req_header(req, "Content-Type");
    ep_event_t **evs = NULL, *one = NULL;
    size_t n = 0;
    enq_t *e;
    int rc;

    if (ct && strncasecmp(ct, EP_STRLIT("application/x-protobuf")) == 0) {
        ep_parse_err_t perr;
        /* Decoded and validated whole (ep_event_validate, as ingest) before anything is queued. */
        rc = ep_event_batch_decode_pb_ex(ep_http_req_body(req), ep_http_req_body_len(req), NULL,
                                         (size_t)app->cfg.batch_max_events, &evs, &n, &perr);
        if (rc != 0) {
            ep_http_respond_error(req, rc == EP_E2BIG ? 413 : 400, perr.msg,
                                  perr.field[0] ? perr.field : NULL);
            return;
        }
        if (n == 0) {
            ep_free(evs);
            ep_http_respond(req, 202, NULL, "{\"accepted\":0}\n", 15);
            return;
        }
    } else {
        ep_parse_err_t perr;
        rc = ep_event_parse_json(ep_http_req_body(req), ep_http_req_body_len(req), NULL, &one,
                                 &perr);
        if (rc != 0) {
            ep_http_respond_error(req, 400, perr.msg, perr.field[0] ? perr.field : NULL);
            return;
        }
        evs = &one;
        n = 1;
    }
    e = ep_malloc(sizeof(*e));
    e->req = req;
    e->n = n;
    e->retry_after_s = app->cfg.retry_after_s;
    rc = ep_queue_publish(app->queue, evs, n, on_enqueued, e);
    if (rc != 0) {
        for (size_t i = 0; i < n; i++) {
            ep_event_destroy(evs[i]);
        }
        ep_free(e);
        ep__respond_publish_error(req, rc, NULL, 0, app->cfg.retry_after_s);
    }
    if (evs != &one) {
        ep_free(evs);
    }
}

void ep__processor_stats_json(ep_app_t *app, ep_buf_t *out)
{
    ep_queue_stats_t qs;
    ep_worker_pool_stats_t ps;
    char reason[256] = "";
    int ready;

    ep_queue_stats(app->queue, &qs);
    ready = ep_queue_ready(app->queue, reason, sizeof(reason));
    ep_worker_pool_stats(app->pool, &ps);
    ep_buf_printf(out,
                  "{\"queue\":{\"type\":\"%s\",\"size\":%lld,\"capacity\":%lld,"
                  "\"enqueued\":%llu,\"dequeued\":%llu,\"acked\":%llu,\"nacked\":%llu,"
                  "\"rejected_full\":%llu,\"rejected_unavailable\":%llu,\"in_flight\":%lld,"
                  "\"lost\":%llu,"
                  "\"TotalEnqueued\":%llu,\"TotalDequeued\":%llu,\"CurrentSize\":%lld",
                  app->queue->provider->name, (long long)qs.size, (long long)qs.capacity,
                  (unsigned long long)qs.enqueued, (unsigned long long)qs.dequeued,
                  (unsigned long long)qs.acked, (unsigned long long)qs.nacked,
                  (unsigned long long)qs.rejected_full, (unsigned long long)qs.rejected_unavailable,
                  (long long)qs.in_flight, (unsigned long long)qs.lost,
                  (unsigned long long)qs.enqueued, (unsigned long long)qs.dequeued,
                  (long long)qs.size);
    /* Why a size is -1 (unknown) or a broker queue refuses events, for `eventpipe status`. */
    ep_buf_printf(out, ",\"ready\":%s", ready ? "true" : "false");
    if (reason[0] != '\0') {
        ep_buf_puts(out, ",\"reason\":");
        ep_buf_put_json_str(out, reason, strlen(reason));
    }
    ep_queue_stats_json(app->queue, out);
    ep_buf_printf(out,
                  "},\"pool\":{\"processed\":%llu,\"errors\":%llu,\"workers\":%d,\"active\":%d,"
                  "\"batches\":%llu,\"dead_lettered\":%llu,\"avg_latency_us\":%llu,"
                  "\"ProcessedCount\":%llu,\"ErrorCount\":%llu},\"analytics_push\":",
                  (unsigned long long)ps.processed, (unsigned long long)ps.errors, ps.workers,
                  ps.active, (unsigned long long)ps.batches, (unsigned long long)ps.dead_lettered,
                  (unsigned long long)(ps.processed ? ps.latency_us_sum / ps.processed : 0),
                  (unsigned long long)ps.processed, (unsigned long long)ps.errors);
    ep__analytics_push_stats_json(app, out);
    ep_buf_puts(out, ",\"sink\":");
    ep_sink_stats_json(app->sink, out);
    ep_buf_putc(out, '}');
}

static void on_stats(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep__processor_stats_json(app, &b);
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

/* GET /lag: the consumer lag as the queue reports it (null for queues without one). */
static void on_lag(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep_queue_lag_json(app->queue, &b);
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

int ep__processor_ready(ep_app_t *app, char *reason, size_t len)
{
    /* The output is a downstream too: a webhook failing for seconds makes it not ready. */
    return ep_queue_ready(app->queue, reason, len) && ep_sink_ready(app->sink, reason, len);
}

void ep__processor_routes(ep_app_t *app, ep_http_server_t *srv)
{
    ep_access_route(app->access, srv, EP_HTTP_POST, "/enqueue", EP_ACCESS_INTERNAL, on_enqueue, app,
                    0);
    ep_access_route(app->access, srv, EP_HTTP_GET, "/stats", EP_ACCESS_READ, on_stats, app, 0);
    ep_access_route(app->access, srv, EP_HTTP_GET, "/lag", EP_ACCESS_READ, on_lag, app, 0);
}
