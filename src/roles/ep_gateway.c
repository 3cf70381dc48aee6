/*
 * The gateway role: the public API. POST /api/v1/ingest (also /ingest and
 * /api/ingest) goes to ingest (a function call inside `eventpipe run`, an HTTP
 * hop otherwise); GET /api/v1/status (also /status) gathers every role's
 * health and stats, each within STATUS_TIMEOUT_MS, so a role that is down
 * shows up as unhealthy instead of hanging the call.
 */
#include "roles/ep_access.h"
#include "roles/ep_app.h"
#include "guard/ep_breaker.h"
#include "guard/ep_auth.h"
#include "base/ep_error.h"
#include "event/ep_id.h"
#include "base/ep_mem.h"
#include "roles/ep_monitor.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/*
 * The header lines of a hop for the client's request: its API key (sent on as
 * X-API-Key: ingest checks it and charges its events, once), the internal
 * token, and the client's address (X-Forwarded-For: ingest limits that address,
 * not the gateway's, and believes it only on a hop). Returns the length
 * written, or -1 when the key cannot be any key (longer than a key may be).
 */
static int hop_headers(ep_app_t *app, ep_http_req_t *req, char *out, size_t len)
{
    const char *key;
    size_t klen, at = 0;
    uint8_t peer[16];
    char ip[INET6_ADDRSTRLEN];

    out[0] = '\0';
    if (ep_auth_credential(ep_http_req_header(req, "X-API-Key"),
                           ep_http_req_header(req, "Authorization"), &key, &klen)) {
        if (klen > EP_AUTH_KEY_MAX) {
            return -1;
        }
        at += (size_t)snprintf(out + at, len - at, "X-API-Key: %.*s\n", (int)klen, key);
    }
    if (app->cfg.internal_token[0]) {
        ep_access_hop_header(&app->cfg, out + at, len - at);
        at += strlen(out + at);
        at += (size_t)snprintf(out + at, len - at, "\n");
    }
    if (ep_http_req_peer(req, peer)) {
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(peer, mapped, 12) == 0) {
            inet_ntop(AF_INET, peer + 12, ip, sizeof(ip));
        } else {
            inet_ntop(AF_INET6, peer, ip, sizeof(ip));
        }
        at += (size_t)snprintf(out + at, len - at, "X-Forwarded-For: %s\n", ip);
    }
    return (int)at;
}

/* Passes the access-control headers of ingest's answer on (WWW-Authenticate, RateLimit-*). */
static void pass_headers(ep_http_req_t *req, const char *h)
{
    while (h && *h) {
        const char *nl = strchr(h, '\n'), *colon = strchr(h, ':');
        size_t n = nl ? (size_t)(nl - h) : strlen(h);
        char name[64], value[320];

        if (colon && colon < h + n && (size_t)(colon - h) < sizeof(name)) {
            const char *v = colon + 1;
            memcpy(name, h, (size_t)(colon - h));
            name[colon - h] = '\0';
            while (v < h + n && *v == ' ') {
                v++;
            }
            snprintf(value, sizeof(value), "%.*s", (int)(h + n - v), v);
            ep_http_req_add_header(req, name, value);
        }
        h += n + (nl ? 1 : 0);
    }
}

/* ------------------------------------------------------------------ proxy */

/*
 * A POST to ingest carries an id the gateway assigned before the hop
 * (X-Message-Id: the id of an event without one; in a batch, event i gets it
 * plus i), so that an answer that never came can still name the ids under which
 * the events may have been kept. It travels as the request's context (copied
 * with the request: no allocation of its own).
 */
typedef struct proxy_ctx_s {
    ep_http_req_t *req;
    const ep_proxy_route_t *pr;
    ep_breaker_pass_t pass; /* from the hop's circuit breaker (app->ingest_breaker) */
    char id[EP_UUID_STR_LEN + 1];
} proxy_ctx_t;

/*
 * Reports a POST's outcome to the hop's breaker: no answer or a 5xx other than
 * 503 is a failure; a 503 (ingest's queue full or its own next hop down) is
 * ingest working, so the breakers of two hops never open each other.
 */
static void proxy_report(const proxy_ctx_t *ctx, const ep_http_response_t *res)
{
    ep_breaker_t *b = ctx->pr->app->ingest_breaker;
    char why[200];

    if (b == NULL) {
        return;
    }
    if (res->status == 0 && res->err == EP_ECLOSED) {
        ep_breaker_record(b, &ctx->pass, EP_BREAKER_NEUTRAL, "shutting down");
        return;
    }
    if (res->status == 0) {
        snprintf(why, sizeof(why), "%s", res->error);
    } else {
        snprintf(why, sizeof(why), "HTTP %d", res->status);
    }
    ep_breaker_record(b, &ctx->pass, ep_breaker_outcome_of_http(res->status), why);
}

static void on_proxy_done(void *arg, const ep_http_response_t *res)
{
    ep_http_req_t *req = arg;
    const proxy_ctx_t *ctx = res->ctx;
    char msg[256];

    if (ctx) {
        req = ctx->req;
        proxy_report(ctx, res);
    }
    if (res->status == 0) {
        snprintf(msg, sizeof(msg), "ingest unavailable: %s", res->error);
        if (ctx == NULL) {
            ep_http_respond_error(req, 503, msg, NULL);
        } else {
            /* Sent (even in part) and then no answer: ingest may have kept the event(s). */
            ep_buf_t b = EP_BUF_INIT;
            char v[16];
            const char *enc = ep_http_req_header(req, "Content-Encoding");

            ep__ingest_unknown_answer(ctx->pr->app, ctx->pr->batch, ep_http_req_body(req),
                                      ep_http_req_body_len(req), enc, ctx->id, msg, res->sent, &b);
            snprintf(v, sizeof(v), "%d", ctx->pr->app->cfg.retry_after_s);
            ep_http_req_add_header(req, "Retry-After", v);
            ep_http_respond_buf(req, 503, &b);
        }
        return;
    }
    if (res->retry_after && *res->retry_after) {
        ep_http_req_add_header(req, "Retry-After", res->retry_after);
    }
    pass_headers(req, res->pass_headers);
    /* A failing downstream is the client's 503, never a 500 of ours. */
    ep_http_respond(req, res->status >= 500 ? 503 : res->status,
                    res->content_type && *res->content_type ? res->content_type
                                                            : "application/json",
                    res->body, res->body_len);
}

static void on_proxy_ingest(void *arg, ep_http_req_t *req)
{
    ep_proxy_route_t *pr = arg;
    ep_app_t *app = pr->app;
    const char *enc = ep_http_req_header(req, "Content-Encoding");
    ep_http_request_opts_t o = {.content_type = ep_http_req_header(req, "Content-Type")};
    proxy_ctx_t ctx;
    char url[300], hdr[1024];
    int rc, at;

    ctx.pass.gen = 0;
    if (app->ingest_breaker && ep_breaker_allow(app->ingest_breaker, &ctx.pass) != 0) {
        /* Open: refused at once, nothing sent, so nothing kept. */
        ep_buf_t b = EP_BUF_INIT;
        char v[16];

        ep__ingest_unknown_answer(app, pr->batch, NULL, 0, NULL, NULL,
                                  ep_breaker_message(app->ingest_breaker), 0, &b);
        snprintf(v, sizeof(v), "%d", ep_breaker_retry_after_s(app->ingest_breaker));
        ep_http_req_add_header(req, "Retry-After", v);
        ep_http_respond_buf(req, 503, &b);
        return;
    }
    snprintf(url, sizeof(url), "%s%s", app->cfg.ingest_url, pr->target);
    ctx.req = req;
    ctx.pr = pr;
    if ((at = hop_headers(app, req, hdr, sizeof(hdr))) < 0) {
        ep_http_req_add_header(req, "WWW-Authenticate", "Bearer realm=\"eventpipe\"");
        ep_http_respond_error(req, 401, "invalid API key", NULL);
        return;
    }
    ep_id_assigned_base(ctx.id);
    snprintf(hdr + at, sizeof(hdr) - (size_t)at, "X-Message-Id: %s", ctx.id);
    o.content_encoding = enc && *enc ? enc : NULL;
    o.headers = hdr;
    o.ctx = &ctx;
    o.ctx_len = sizeof(ctx);
    /* A batch answer lists every event: let it grow as large as ingest can make it. */
    o.max_response = pr->batch ? ep__ingest_batch_answer_max(&app->cfg) : 0;
    rc = ep_http_client_request_ex(app->client, "POST", url, &o, ep_http_req_body(req),
                                   ep_http_req_body_len(req), app->cfg.upstream_timeout_ms,
                                   on_proxy_done, req);
    if (rc != 0 && app->ingest_breaker) {
        /* Never sent: says nothing about ingest. */
        ep_breaker_record(app->ingest_breaker, &ctx.pass, EP_BREAKER_NEUTRAL, ep_strerror(rc));
    }
    if (rc == EP_EINVAL) {
        ep_http_respond_error(req, 400, "a header value holds a line break", NULL);
    } else if (rc != 0) {
        /* Never sent: nothing can have been kept. */
        ep_buf_t b = EP_BUF_INIT;
        char v[16];

        ep__ingest_unknown_answer(app, pr->batch, NULL, 0, NULL, NULL, "shutting down", 0, &b);
        snprintf(v, sizeof(v), "%d", app->cfg.retry_after_s);
        ep_http_req_add_header(req, "Retry-After", v);
        ep_http_respond_buf(req, 503, &b);
    }
}

static void on_proxy_get(void *arg, ep_http_req_t *req)
{
    ep_proxy_route_t *pr = arg;
    char url[300], hdr[1024];
    ep_http_request_opts_t o = {.headers = hdr};

    if (hop_headers(pr->app, req, hdr, sizeof(hdr)) < 0) {
        hdr[0] = '\0';
    }
    snprintf(url, sizeof(url), "%s%s", pr->app->cfg.ingest_url, pr->target);
    if (ep_http_client_request_ex(pr->app->client, "GET", url, &o, NULL, 0,
                                  pr->app->cfg.upstream_timeout_ms, on_proxy_done, req) != 0) {
        ep_http_respond_error(req, 503, "shutting down", NULL);
    }
}

static void proxy(ep_app_t *app, ep_http_server_t *srv, unsigned method, const char *path,
                  const char *target, size_t max_body)
{
    ep_proxy_route_t *pr;

    /* A public path and where it goes on ingest: its context lives in the app. */
    ep_assert(app->n_proxy_routes <
              (int)(sizeof(app->proxy_routes) / sizeof(app->proxy_routes[0])));
    pr = &app->proxy_routes[app->n_proxy_routes++];
    pr->app = app;
    pr->target = target;
    pr->batch = strcmp(target, "/events/batch") == 0;
    /*
     * With keys, the gateway refuses a bad key at the edge; ingest checks it as
     * well and charges the events (it is where they are counted), so a split
     * gateway never charges a second time.
     */
    ep_access_route(app->access, srv, method, path,
                    method == EP_HTTP_GET ? EP_ACCESS_READ : EP_ACCESS_INGEST,
                    method == EP_HTTP_GET ? on_proxy_get : on_proxy_ingest, pr, max_body);
}

/* ----------------------------------------------------------------- status */

#define MAX_PROBES 4

typedef struct agg_s agg_t;

typedef struct probe_s {
    agg_t *agg;
    int idx;
    int is_stats; /* 0: the /health call, 1: the /stats call */
} probe_t;

typedef struct role_result_s {
    const char *name;
    int healthy;
    char *stats; /* JSON text or NULL */
    char error[200];
} role_result_t;

struct agg_s {
    ep_http_req_t *req;
    char hdr[1024]; /* the hop's headers (the client's key, the internal token) */
    atomic_int pending;
    int n;
    role_result_t r[MAX_PROBES];
    probe_t probes[MAX_PROBES * 2];
};

static void agg_finish(agg_t *a)
{
    ep_buf_t b = EP_BUF_INIT;

    ep_buf_putc(&b, '{');
    for (int i = 0; i < a->n; i++) {
        role_result_t *r = &a->r[i];
        ep_buf_printf(&b, "%s\"%s\":{\"healthy\":%s,\"stats\":", i ? "," : "", r->name,
                      r->healthy ? "true" : "false");
        ep_buf_puts(&b, r->stats ? r->stats : "null");
        if (!r->healthy || r->error[0]) {
            ep_buf_puts(&b, ",\"error\":");
            ep_buf_put_json_str(&b, r->error[0] ? r->error : "unhealthy",
                                strlen(r->error[0] ? r->error : "unhealthy"));
        }
        ep_buf_putc(&b, '}');
        ep_free(r->stats);
    }
    ep_buf_puts(&b, "}\n");
    ep_http_respond_buf(a->req, 200, &b);
    ep_free(a);
}

static void on_probe_done(void *arg, const ep_http_response_t *res)
{
    probe_t *p = arg;
    role_result_t *r = &p->agg->r[p->idx];

    if (p->is_stats) {
        if (res->status == 200 && res->body_len > 0 && res->body[0] == '{') {
            size_t n = res->body_len;
            while (n > 0 && (res->body[n - 1] == '\n' || res->body[n - 1] == '\r')) {
                n--;
            }
            r->stats = ep_strndup(res->body, n);
        }
    } else {
        r->healthy = res->status == 200;
        if (res->status == 0) {
            snprintf(r->error, sizeof(r->error), "%s", res->error);
        } else if (res->status != 200) {
            snprintf(r->error, sizeof(r->error), "/health answered %d", res->status);
        }
    }
    if (atomic_fetch_sub_explicit(&p->agg->pending, 1, memory_order_acq_rel) == 1) {
        agg_finish(p->agg);
    }
}

/* GET base/health and base/<stats_path> ("stats", "analytics/summary"). */
static void probe_remote(ep_app_t *app, agg_t *a, int idx, const char *base, const char *stats_path)
{
    char url[300];

    for (int k = 0; k < 2; k++) {
        probe_t *p = &a->probes[idx * 2 + k];
        p->agg = a;
        p->idx = idx;
        p->is_stats = k;
        ep_http_request_opts_t o = {.headers = a->hdr};

        snprintf(url, sizeof(url), "%s/%s", base, k ? stats_path : "health");
        if (ep_http_client_request_ex(app->client, "GET", url, &o, NULL, 0,
                                      app->cfg.status_timeout_ms, on_probe_done, p) != 0) {
            ep_http_response_t res = {.status = 0,
                                      .err = EP_ECLOSED,
                                      .error = "shutting down",
                                      .body = "",
                                      .content_type = "",
                                      .retry_after = "",
                                      .pass_headers = ""};
            on_probe_done(p, &res);
        }
    }
}

static void probe_local(agg_t *a, int idx, ep_app_t *app, void (*stats)(ep_app_t *, ep_buf_t *))
{
    ep_buf_t b = EP_BUF_INIT;

    stats(app, &b);
    a->r[idx].healthy = 1;
    a->r[idx].stats = ep_buf_steal(&b, NULL);
}

static void on_status(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    agg_t *a = ep_calloc(1, sizeof(*a));
    int remote = 0;

    a->req = req;
    if (hop_headers(app, req, a->hdr, sizeof(a->hdr)) < 0) {
        a->hdr[0] = '\0';
    }
    a->r[0].name = "ingest";
    a->r[1].name = "processor";
    a->r[2].name = "analytics";
    a->n = 3;
    remote += !(app->roles & EP_ROLE_INGEST);
    remote += !(app->roles & EP_ROLE_PROCESSOR);
    remote += !(app->roles & EP_ROLE_ANALYTICS);
    /* One extra count keeps the aggregate alive until every probe is started. */
    atomic_store(&a->pending, remote * 2 + 1);
    if (app->roles & EP_ROLE_INGEST) {
        probe_local(a, 0, app, ep__ingest_stats_json);
    } else {
        probe_remote(app, a, 0, app->cfg.ingest_url, "stats");
    }
    if (app->roles & EP_ROLE_PROCESSOR) {
        probe_local(a, 1, app, ep__processor_stats_json);
    } else {
        probe_remote(app, a, 1, app->cfg.processor_url, "stats");
    }
    if (app->roles & EP_ROLE_ANALYTICS) {
        probe_local(a, 2, app, ep__analytics_stats_json);
    } else {
        probe_remote(app, a, 2, app->cfg.analytics_url, "analytics/summary");
    }
    if (atomic_fetch_sub_explicit(&a->pending, 1, memory_order_acq_rel) == 1) {
        agg_finish(a);
    }
}

/* ------------------------------------------------------------ stats */

/* GET /stats of a gateway apart from ingest: its hop's circuit breaker. */
static void on_gateway_stats(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep_buf_puts(&b, "{\"circuit_breakers\":{");
    if (app->ingest_breaker) {
        ep_breaker_stats_json(app->ingest_breaker, &b);
    }
    ep_buf_puts(&b, "}}\n");
    ep_http_respond_buf(req, 200, &b);
}

/* ------------------------------------------------------------ readiness */

static void on_ready_done(void *arg, const ep_http_response_t *res)
{
    ep_http_req_t *req = arg;
    char msg[256];

    if (res->status == 200) {
        ep_http_respond(req, 200, NULL, "{\"ready\":true}\n", 15);
        return;
    }
    snprintf(msg, sizeof(msg), "ingest not ready: %s",
             res->status == 0 ? res->error : (res->body_len ? res->body : "503"));
    ep_http_respond_error(req, 503, msg, NULL);
}

static void on_gateway_ready(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    char url[300];

    snprintf(url, sizeof(url), "%s/ready", app->cfg.ingest_url);
    if (ep_http_client_request(app->client, "GET", url, NULL, NULL, 0, app->cfg.status_timeout_ms,
                               on_ready_done, req) != 0) {
        ep_http_respond_error(req, 503, "shutting down", NULL);
    }
}

void ep__gateway_routes(ep_app_t *app, ep_http_server_t *srv)
{
    if (app->roles & EP_ROLE_INGEST) {
        ep__ingest_routes(app, srv, 1);
        ep__common_routes(app, srv, ep__ingest_ready);
    } else {
        size_t batch = (size_t)app->cfg.max_batch_body;

        proxy(app, srv, EP_HTTP_POST, "/api/v1/ingest", "/ingest", 0);
        proxy(app, srv, EP_HTTP_POST, "/api/ingest", "/ingest", 0);
        proxy(app, srv, EP_HTTP_POST, "/ingest", "/ingest", 0);
        proxy(app, srv, EP_HTTP_POST, "/api/v1/events", "/events", 0);
        proxy(app, srv, EP_HTTP_POST, "/api/v1/events/async", "/events/async", 0);
        proxy(app, srv, EP_HTTP_POST, "/api/v1/events/batch", "/events/batch", batch);
        proxy(app, srv, EP_HTTP_POST, "/api/v1/events/user", "/api/v1/events/user", 0);
        proxy(app, srv, EP_HTTP_POST, "/api/v1/events/order", "/api/v1/events/order", 0);
        proxy(app, srv, EP_HTTP_POST, "/api/v1/events/payment", "/api/v1/events/payment", 0);
        proxy(app, srv, EP_HTTP_GET, "/api/v1/events/stats", "/api/v1/events/stats", 0);
        ep__common_routes(app, srv, NULL);
        ep_http_server_route(srv, EP_HTTP_GET, "/ready", on_gateway_ready, app);
        ep_http_server_route(srv, EP_HTTP_GET, "/stats", on_gateway_stats, app);
    }
    ep_access_route(app->access, srv, EP_HTTP_GET, "/api/v1/status", EP_ACCESS_READ, on_status, app,
                    0);
    ep_access_route(app->access, srv, EP_HTTP_GET, "/status", EP_ACCESS_READ, on_status, app, 0);
    ep__dashboard_routes(app, srv);
}
