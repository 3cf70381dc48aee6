/*
 * Process lifecycle: build the queue, pool and servers for the chosen roles,
 * start them, and stop them in the order that loses nothing: stop accepting,
 * finish requests, drain the queue through the workers, flush the sink.
 */
#include "roles/ep_app.h"
#include "analytics/ep_analytics.h"
#include "guard/ep_breaker.h"
#include "roles/ep_access.h"
#include "base/ep_duration.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "grpc/ep_grpc_api.h"
#include "obs/ep_metrics.h"
#include "roles/ep_monitor.h"
#include "obs/ep_obs.h"
#include "base/ep_time.h"
#include "http/ep_tls.h"

#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

extern const ep_queue_provider_t ep_queue_forward_provider;

static void on_health(void *arg, ep_http_req_t *req)
{
    ep_http_respond(req, 200, NULL, "{\"healthy\":true}\n", 17);
}

static void on_ready(void *arg, ep_http_req_t *req)
{
    ep_ready_route_t *rc = arg;
    char reason[512] = "";

    if (rc->ready(rc->app, reason, sizeof(reason))) {
        ep_http_respond(req, 200, NULL, "{\"ready\":true}\n", 15);
    } else {
        ep_http_respond_error(req, 503, reason[0] ? reason : "not ready", NULL);
    }
}

void ep__common_routes(ep_app_t *app, ep_http_server_t *srv,
                       int (*ready)(ep_app_t *, char *, size_t))
{
    ep_http_server_route(srv, EP_HTTP_GET, "/health", on_health, app);
    ep__monitor_routes(app, srv); /* GET /metrics and the per-request metrics */
    if (ready) {
        ep_ready_route_t *rr;

        ep_assert(app->n_ready_routes <
                  (int)(sizeof(app->ready_routes) / sizeof(app->ready_routes[0])));
        rr = &app->ready_routes[app->n_ready_routes++];
        rr->app = app;
        rr->ready = ready;
        ep_http_server_route(srv, EP_HTTP_GET, "/ready", on_ready, rr);
    }
}

/* A circuit breaker for the hop to target, or NULL when CIRCUIT_BREAKER_FAILURES=0. */
static struct ep_breaker_s *new_breaker(const ep_config_t *cfg, const char *target)
{
    ep_breaker_opts_t o = {.target = target,
                           .failures = (uint32_t)cfg->breaker_failures,
                           .open_ms = cfg->breaker_open_ms};
    ep_breaker_t *b = NULL;

    if (cfg->breaker_failures > 0) {
        ep_breaker_create(&o, &b); /* the options are validated by the config table */
    }
    return b;
}

static ep_http_server_t *new_server(ep_app_t *app, const char *name, const char *addr, int port)
{
    ep_http_server_opts_t o = {
        .name = name,
        .bind_addr = addr,
        .port = port,
        .threads = app->cfg.http_threads,
        .max_body = (size_t)app->cfg.max_body,
        .max_header = (size_t)app->cfg.max_header,
        .idle_timeout_ms = app->cfg.idle_timeout_ms,
        .max_connections = app->cfg.max_connections,
        .retry_after_s = app->cfg.retry_after_s,
        .header_timeout_ms = app->cfg.header_timeout_ms,
        .body_timeout_ms = app->cfg.body_timeout_ms,
        .body_min_rate = app->cfg.body_min_rate,
        .send_timeout_ms = app->cfg.send_timeout_ms,
        .read_timeout_ms = app->cfg.read_timeout_ms,
        .write_timeout_ms = app->cfg.write_timeout_ms,
        .max_conns_per_client = app->cfg.max_per_client,
        .memory_limit = (size_t)app->cfg.memory_limit,
        .cors = app->cors,
        .tls = app->tls,
    };
    ep_http_server_t *s;

    ep_http_server_create(&o, &s);
    return s;
}

/*
 * TLS (issue 15): the listeners' context from TLS_CERT_FILE and TLS_KEY_FILE,
 * and the files the hops' client uses loaded once here, so that a bad file
 * stops the start (exit 2) instead of failing every hop later.
 */
static int tls_setup(ep_app_t *app, char *err, size_t errlen)
{
    const ep_config_t *cfg = &app->cfg;
    SSL_CTX *client;
    char what[300];
    int rc;

    if (cfg->tls_cert_file[0] || cfg->tls_key_file[0]) {
        rc = ep_tls_server_create(cfg->tls_cert_file, cfg->tls_key_file, cfg->tls_client_ca_file,
                                  &app->tls, err, errlen);
        if (rc != 0) {
            return rc;
        }
        ep_tls_describe(app->tls, what, sizeof(what));
        ep_log_info("tls", "every listener speaks TLS only (1.2, 1.3): %s%s", what,
                    cfg->tls_client_ca_file[0] ? "; mutual TLS: clients need a certificate" : "");
    }
    if (!cfg->tls_ca_file[0] && !cfg->tls_cert_file[0]) {
        return 0; /* https:// hops, if any, verify with the system store */
    }
    client =
        ep_tls_client_ctx(cfg->tls_ca_file, cfg->tls_cert_file, cfg->tls_key_file, err, errlen);
    if (client == NULL) {
        return EP_ECONFIG;
    }
    SSL_CTX_free(client);
    return 0;
}

void ep_app_reload(ep_app_t *app)
{
    char err[600], what[300];

    if (app->tls == NULL) {
        ep_log_info("app", "SIGHUP: nothing to reload (TLS_CERT_FILE is not set)");
        return;
    }
    if (ep_tls_reload(app->tls, err, sizeof(err)) != 0) {
        ep_log_error("tls", "SIGHUP: the certificate stays as it was: %s", err);
        return;
    }
    ep_tls_describe(app->tls, what, sizeof(what));
    ep_log_info("tls", "SIGHUP: reloaded TLS_CERT_FILE and TLS_KEY_FILE for new connections: %s",
                what);
}

/* Opens PROCESSOR_SINK with the PROCESSOR_SINK_* and TLS client settings. */
static int sink_create(ep_app_t *app, const ep_config_t *cfg, char *err, size_t errlen)
{
    ep_sink_opts_t so = {.batch_events = cfg->sink_batch,
                         .batch_bytes = (size_t)cfg->sink_batch_bytes,
                         .linger_ms = cfg->sink_linger_ms,
                         .timeout_ms = cfg->sink_timeout_ms,
                         .retries = cfg->sink_retries,
                         .backoff_ms = cfg->sink_backoff_ms,
                         .backoff_max_ms = cfg->sink_backoff_max_ms,
                         .tls_ca_file = cfg->tls_ca_file,
                         .tls_cert_file = cfg->tls_cert_file,
                         .tls_key_file = cfg->tls_key_file,
                         .metrics = ep_obs_registry(app->obs)};

    return ep_sink_create_ex(cfg->sink, &so, &app->sink, err, errlen);
}

int ep_app_create(const ep_config_t *cfg, unsigned roles, ep_app_t **out, char *err, size_t errlen)
{
    ep_app_t *app = ep_calloc(1, sizeof(*app));
    const ep_queue_provider_t *qp;
    int rc;

    *out = NULL;
    app->cfg = *cfg;
    {
        /* Every decoder (JSON, protobuf from /enqueue and the queues) applies these. */
        ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
        lim.max_meta_keys = (uint32_t)cfg->max_meta_keys;
        lim.max_data_len = (uint32_t)cfg->max_data_len;
        ep_event_limits_set_default(&lim);
    }
    app->roles = roles;
    app->started_ms = ep_time_now_ms();
    {
        char why[400];
        rc = ep_http_cors_create(cfg->cors_allowed_origins, &app->cors, why, sizeof(why));
        if (rc != 0) {
            snprintf(err, errlen, "CORS_ALLOWED_ORIGINS: %s", why);
            goto err;
        }
    }
    if (cfg->metrics_enabled) {
        app->obs = ep_obs_create(); /* before anything that records into it */
    }

    qp = ep_queue_provider_find(cfg->queue_type);
    if (qp == NULL) {
        char names[200];
        ep_queue_provider_names(names, sizeof(names));
        snprintf(err, errlen, "QUEUE_TYPE: '%s' is not available in this build (available: %s)",
                 cfg->queue_type, names);
        rc = EP_ECONFIG;
        goto err;
    }
    if ((rc = tls_setup(app, err, errlen)) != 0) {
        goto err;
    }
    if ((rc = ep_access_create(cfg, &app->access, err, errlen)) != 0) {
        goto err;
    }
    rc = ep_http_client_create(64, &app->client);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create the HTTP client: %s", ep_strerror(rc));
        goto err;
    }
    ep_http_client_set_tls(app->client, cfg->tls_ca_file, cfg->tls_cert_file, cfg->tls_key_file);
    if (roles & EP_ROLE_ANALYTICS) {
        app->analytics = ep_analytics_create();
        if ((rc = ep__analytics_consumer_create(app, qp, err, errlen)) != 0) {
            goto err;
        }
    }
    if (roles & EP_ROLE_PROCESSOR) {
        if ((rc = ep_queue_create_with(qp, cfg, &app->queue, err, errlen)) != 0) {
            goto err;
        }
        if ((rc = sink_create(app, cfg, err, errlen)) != 0) {
            goto err;
        }
        rc =
            ep_worker_pool_create(app->queue, app->sink, cfg->workers, cfg->batch_size, &app->pool);
        if (rc != 0) {
            snprintf(err, errlen, "cannot create the worker pool: %s", ep_strerror(rc));
            goto err;
        }
        ep_worker_pool_set_max_attempts(app->pool, cfg->max_attempts);
        ep_worker_pool_set_obs(app->pool, app->obs);
        ep__analytics_attach(app);
    }
    if (roles & EP_ROLE_INGEST) {
        if (app->queue) {
            app->ingest.queue = app->queue;
        } else if (qp->flags & EP_QUEUE_F_LOCAL) {
            /* The queue lives in the processor: hand events over its /enqueue. */
            rc = ep_queue_create_with(&ep_queue_forward_provider, cfg, &app->forward, err, errlen);
            if (rc != 0) {
                goto err;
            }
            app->ingest.queue = app->forward;
        } else {
            if ((rc = ep_queue_create_with(qp, cfg, &app->queue, err, errlen)) != 0) {
                goto err;
            }
            app->ingest.queue = app->queue;
        }
        /* A queue elsewhere (the processor's, a broker) is a hop that can fail. */
        if (!ep_queue_is_local(app->ingest.queue)) {
            app->ingest.breaker =
                new_breaker(cfg, app->forward ? "processor" : app->ingest.queue->provider->name);
        }
    }
    if ((roles & EP_ROLE_GATEWAY) && !(roles & EP_ROLE_INGEST)) {
        app->ingest_breaker = new_breaker(cfg, "ingest");
    }
    if (roles & EP_ROLE_GATEWAY) {
        /* SERVER_ADDRESS gives the gateway its own address; the other roles keep BIND_ADDR. */
        app->gateway_srv =
            new_server(app, "gateway", cfg->api_bind_addr[0] ? cfg->api_bind_addr : cfg->bind_addr,
                       cfg->api_port);
        ep__gateway_routes(app, app->gateway_srv);
    }
    if (roles & EP_ROLE_INGEST) {
        app->ingest_srv = new_server(app, "ingest", cfg->bind_addr, cfg->ingest_port);
        ep__ingest_routes(app, app->ingest_srv, 0);
        ep__common_routes(app, app->ingest_srv, ep__ingest_ready);
    }
    if (roles & EP_ROLE_PROCESSOR) {
        app->processor_srv = new_server(app, "processor", cfg->bind_addr, cfg->processor_port);
        ep__processor_routes(app, app->processor_srv);
        ep__common_routes(app, app->processor_srv, ep__processor_ready);
    }
    if (roles & EP_ROLE_ANALYTICS) {
        app->analytics_srv = new_server(app, "analytics", cfg->bind_addr, cfg->analytics_port);
        ep__analytics_routes(app, app->analytics_srv);
        ep__common_routes(app, app->analytics_srv, ep__analytics_ready);
    }
    if (cfg->metrics_port > 0) {
        /* METRICS_PORT (seed 003): /metrics and /health on a port of their own. */
        const struct {
            unsigned role;
            int port;
            const char *name;
        } used[] = {{EP_ROLE_GATEWAY, cfg->api_port, "API_PORT"},
                    {EP_ROLE_INGEST, cfg->ingest_port, "INGEST_PORT"},
                    {EP_ROLE_PROCESSOR, cfg->processor_port, "PROCESSOR_PORT"},
                    {EP_ROLE_ANALYTICS, cfg->analytics_port, "ANALYTICS_PORT"}};
        for (size_t i = 0; i < sizeof(used) / sizeof(used[0]); i++) {
            if ((roles & used[i].role) && used[i].port == cfg->metrics_port) {
                snprintf(err, errlen, "METRICS_PORT: %d is also %s of this process",
                         cfg->metrics_port, used[i].name);
                rc = EP_ECONFIG;
                goto err;
            }
        }
        app->metrics_srv = new_server(app, "metrics", cfg->bind_addr, cfg->metrics_port);
        ep__common_routes(app, app->metrics_srv, NULL);
    }
    if ((rc = ep__grpc_create(app, err, errlen)) != 0) { /* GRPC_*_PORT (issue 16) */
        goto err;
    }
    *out = app;
    return 0;
err:
    ep_app_destroy(app);
    return rc;
}

/*
 * /metrics: each HTTP server's connections, held bytes (HTTP_MEMORY_LIMIT) and
 * what its limits closed or refused, labelled by server (the role of the port).
 */
static void http_limits_collect(void *arg, ep_buf_t *out)
{
    static const char *const l_srv[] = {"server"}, *const l_srv_reason[] = {"server", "reason"};
    ep_app_t *app = arg;
    ep_http_server_t *srvs[5] = {app->gateway_srv, app->ingest_srv, app->processor_srv,
                                 app->analytics_srv, app->metrics_srv};
    ep_http_server_stats_t st[5];

    for (int i = 0; i < 5; i++) {
        if (srvs[i]) {
            ep_http_server_stats(srvs[i], &st[i]);
        }
    }
    ep_metrics_put_family(out, "ep_http_connections", EP_METRIC_GAUGE, "Open HTTP connections.");
    for (int i = 0; i < 5; i++) {
        const char *lv[1] = {srvs[i] ? ep_http_server_name(srvs[i]) : NULL};
        if (srvs[i]) {
            ep_metrics_put_sample(out, "ep_http_connections", 1, l_srv, lv,
                                  (double)st[i].connections);
        }
    }
    ep_metrics_put_family(out, "ep_http_memory_held_bytes", EP_METRIC_GAUGE,
                          "Bytes of buffered requests and unsent answers (HTTP_MEMORY_LIMIT).");
    for (int i = 0; i < 5; i++) {
        const char *lv[1] = {srvs[i] ? ep_http_server_name(srvs[i]) : NULL};
        if (srvs[i]) {
            ep_metrics_put_sample(out, "ep_http_memory_held_bytes", 1, l_srv, lv,
                                  (double)st[i].memory_held);
        }
    }
    ep_metrics_put_family(out, "ep_http_connections_closed_total", EP_METRIC_COUNTER,
                          "Connections closed or refused by a limit, by reason: idle, "
                          "header_timeout, body_timeout, stalled, send_timeout (deadlines); "
                          "evicted, full (HTTP_MAX_CONNECTIONS); per_client "
                          "(HTTP_MAX_CONNECTIONS_PER_CLIENT); memory (HTTP_MEMORY_LIMIT); "
                          "tls_handshake (failed, or not done within HTTP_HEADER_TIMEOUT).");
    for (int i = 0; i < 5; i++) {
        const struct {
            const char *reason;
            uint64_t v;
        } rows[] = {{"idle", st[i].closed_idle},
                    {"header_timeout", st[i].closed_header_timeout},
                    {"body_timeout", st[i].closed_body_timeout},
                    {"stalled", st[i].closed_stalled},
                    {"send_timeout", st[i].closed_send_timeout},
                    {"evicted", st[i].evicted},
                    {"full", st[i].refused_full},
                    {"per_client", st[i].refused_per_client},
                    {"memory", st[i].shed_memory},
                    {"tls_handshake", st[i].tls_failed}};
        if (srvs[i] == NULL) {
            continue;
        }
        for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
            const char *lv[2] = {ep_http_server_name(srvs[i]), rows[k].reason};
            ep_metrics_put_sample(out, "ep_http_connections_closed_total", 2, l_srv_reason, lv,
                                  (double)rows[k].v);
        }
    }
    ep_metrics_put_family(out, "ep_http_requests_refused_memory_total", EP_METRIC_COUNTER,
                          "Requests answered 503 because the server was over HTTP_MEMORY_LIMIT.");
    for (int i = 0; i < 5; i++) {
        const char *lv[1] = {srvs[i] ? ep_http_server_name(srvs[i]) : NULL};
        if (srvs[i]) {
            ep_metrics_put_sample(out, "ep_http_requests_refused_memory_total", 1, l_srv, lv,
                                  (double)st[i].refused_memory);
        }
    }
}

int ep_app_start(ep_app_t *app, char *err, size_t errlen)
{
    ep_http_server_t *srvs[5] = {app->processor_srv, app->ingest_srv, app->gateway_srv,
                                 app->analytics_srv, app->metrics_srv};
    char grpc_ports[128];
    int rc;

    if (app->pool && (rc = ep_worker_pool_start(app->pool)) != 0) {
        snprintf(err, errlen, "cannot start workers: %s", ep_strerror(rc));
        return rc;
    }
    if ((rc = ep__analytics_push_start(app)) != 0) {
        snprintf(err, errlen, "cannot start the analytics pusher: %s", ep_strerror(rc));
        return rc;
    }
    if (app->analytics_pool && (rc = ep_worker_pool_start(app->analytics_pool)) != 0) {
        snprintf(err, errlen, "cannot start the analytics consumer: %s", ep_strerror(rc));
        return rc;
    }
    /*
     * gRPC first: an HTTP /health that answers then means every listener is up. A client
     * that waited for /health and then called gRPC got "connection refused" on a busy
     * machine when the HTTP servers started first.
     */
    if ((rc = ep__grpc_start(app, err, errlen)) != 0) {
        return rc;
    }
    for (int i = 0; i < 5; i++) {
        if (srvs[i] == NULL) {
            continue;
        }
        if ((rc = ep_http_server_start(srvs[i], err, errlen)) != 0) {
            return rc;
        }
    }
    ep__grpc_describe(app, grpc_ports, sizeof(grpc_ports));
    if (grpc_ports[0]) {
        ep_log_info("app", "gRPC: %s", grpc_ports);
    }
    if (app->obs) {
        ep_metrics_collector_add(ep_obs_registry(app->obs), http_limits_collect, app);
        ep_metrics_collector_add(ep_obs_registry(app->obs), ep_access_collect, app->access);
    }
    ep_access_log(app->access);
    ep_log_info("app", "listening:%s%.0d%s%.0d%s%.0d%s%.0d; queue %s; %d workers",
                app->gateway_srv ? " gateway :" : "",
                app->gateway_srv ? ep_http_server_port(app->gateway_srv) : 0,
                app->ingest_srv ? " ingest :" : "",
                app->ingest_srv ? ep_http_server_port(app->ingest_srv) : 0,
                app->processor_srv ? " processor :" : "",
                app->processor_srv ? ep_http_server_port(app->processor_srv) : 0,
                app->metrics_srv ? " metrics :" : "",
                app->metrics_srv ? ep_http_server_port(app->metrics_srv) : 0,
                app->ingest.queue ? app->ingest.queue->provider->name : app->cfg.queue_type,
                app->pool ? app->cfg.workers : 0);
    return 0;
}

static int64_t servers_in_flight(ep_app_t *app)
{
    ep_http_server_t *srvs[5] = {app->gateway_srv, app->ingest_srv, app->processor_srv,
                                 app->analytics_srv, app->metrics_srv};
    ep_http_server_stats_t st;
    int64_t n = 0;

    for (int i = 0; i < 5; i++) {
        if (srvs[i]) {
            ep_http_server_stats(srvs[i], &st);
            n += st.in_flight;
        }
    }
    return n + ep__grpc_busy(app); /* gRPC calls not answered yet */
}

int ep_app_stop(ep_app_t *app)
{
    int64_t deadline = ep_time_mono_ms() + app->cfg.shutdown_timeout_ms;
    ep_http_server_t *srvs[5] = {app->gateway_srv, app->ingest_srv, app->processor_srv,
                                 app->analytics_srv, app->metrics_srv};
    int result = 0;

    char limit[32];

    ep_log_info("app",
                "shutting down: finishing requests, draining the queue (SHUTDOWN_TIMEOUT %s)",
                ep_duration_format(app->cfg.shutdown_timeout_ms * EP_MS, limit, sizeof(limit)));
    /* 1. No new connections; open ones are told to close after their next answer. */
    for (int i = 0; i < 5; i++) {
        if (srvs[i]) {
            ep_http_server_quiesce(srvs[i]);
        }
    }
    ep__grpc_quiesce(app); /* GOAWAY on every gRPC connection */
    /* 2. Let the requests being handled finish (their events reach the queue). */
    while (servers_in_flight(app) > 0 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(10);
    }
    if ((app->abandoned = servers_in_flight(app)) > 0) {
        ep_log_warn("app",
                    "%lld requests still in flight at the shutdown deadline: they get no answer "
                    "(their servers stay open until the process exits)",
                    (long long)app->abandoned);
        result = EP_ETIMEDOUT;
    }
    /*
     * 3. Close every connection (the scrape-time collector reads the servers: first),
     * unless a request is still waiting: another thread (the HTTP client, a queue's
     * acknowledgement) may answer it at any time, so its server must not be freed.
     */
    if (app->abandoned == 0 && app->obs) {
        ep_metrics_collector_remove(ep_obs_registry(app->obs), http_limits_collect, app);
        ep_metrics_collector_remove(ep_obs_registry(app->obs), ep_access_collect, app->access);
    }
    if (app->abandoned == 0) {
        ep__grpc_destroy(app);
        ep_http_server_destroy(app->gateway_srv);
        ep_http_server_destroy(app->ingest_srv);
        ep_http_server_destroy(app->processor_srv);
        ep_http_server_destroy(app->analytics_srv);
        ep_http_server_destroy(app->metrics_srv);
        app->gateway_srv = app->ingest_srv = app->processor_srv = app->analytics_srv = NULL;
        app->metrics_srv = NULL;
    }
    /* 4. Hand over what ingest still holds. */
    if (app->forward) {
        int64_t left = deadline - ep_time_mono_ms();
        ep_queue_flush(app->forward, left > 0 ? (int)left : 0);
        ep_queue_close(app->forward);
    }
    /* 5. Drain the queue through the workers, then flush the output. */
    if (app->queue) {
        ep_queue_flush(app->queue, 1000);
        ep_queue_close(app->queue);
    }
    if (app->pool) {
        int64_t left = deadline - ep_time_mono_ms();
        if (ep_worker_pool_stop(app->pool, left > 0 ? (int)left : 0) != 0) {
            ep_log_warn("app", "the queue was not drained before the shutdown deadline");
            result = EP_ETIMEDOUT;
        }
    }
    if (app->sink) {
        ep_sink_flush(app->sink, 1);
    }
    /* 6. The drained events' analytics go to a remote analytics role. */
    ep__analytics_push_stop(app);
    if (app->analytics_queue) {
        int64_t left = deadline - ep_time_mono_ms();
        ep_queue_close(app->analytics_queue);
        ep_worker_pool_stop(app->analytics_pool, left > 0 ? (int)left : 0);
    }
    ep_app_log_summary(app);
    return result;
}

int64_t ep_app_abandoned(const ep_app_t *app)
{
    return app->abandoned;
}

void ep_app_log_summary(ep_app_t *app)
{
    ep_worker_pool_stats_t ps = {0};
    ep_queue_stats_t qs = {0};
    char size[32] = "0";

    if (app->pool) {
        ep_worker_pool_stats(app->pool, &ps);
    }
    if (app->queue) {
        ep_queue_stats(app->queue, &qs);
        /* -1 means unknown (a broker unreachable, its figures not read yet): say so. */
        if (qs.size >= 0) {
            snprintf(size, sizeof(size), "%lld", (long long)qs.size);
        } else {
            snprintf(size, sizeof(size), "unknown");
        }
    }
    ep_log_info("stats",
                "received=%llu sent=%llu failed=%llu rejected=%llu queue_size=%s "
                "processed=%llu errors=%llu uptime_s=%lld",
                (unsigned long long)atomic_load(&app->ingest.received),
                (unsigned long long)atomic_load(&app->ingest.sent),
                (unsigned long long)atomic_load(&app->ingest.failed),
                (unsigned long long)atomic_load(&app->ingest.rejected), size,
                (unsigned long long)ps.processed, (unsigned long long)ps.errors,
                (long long)((ep_time_now_ms() - app->started_ms) / 1000));
}

void ep_app_destroy(ep_app_t *app)
{
    if (app == NULL) {
        return;
    }
    if (app->obs) {
        ep_metrics_collector_remove(ep_obs_registry(app->obs), http_limits_collect, app);
        ep_metrics_collector_remove(ep_obs_registry(app->obs), ep_access_collect, app->access);
    }
    ep__grpc_destroy(app);
    ep_http_server_destroy(app->gateway_srv);
    ep_http_server_destroy(app->ingest_srv);
    ep_http_server_destroy(app->processor_srv);
    ep_http_server_destroy(app->analytics_srv);
    ep_http_cors_destroy(app->cors); /* after the servers that read it */
    ep_http_server_destroy(app->metrics_srv);
    ep_worker_pool_destroy(app->pool);
    ep_worker_pool_destroy(app->analytics_pool);
    ep_queue_destroy(app->analytics_queue);
    ep__analytics_close(app);
    ep__ingest_close(app);
    ep_queue_destroy(app->forward);
    ep_queue_destroy(app->queue);
    ep_sink_destroy(app->sink);
    ep_http_client_destroy(app->client);
    ep_breaker_destroy(app->ingest.breaker);
    ep_breaker_destroy(app->ingest_breaker);
    ep__monitor_close(app);
    ep_obs_destroy(app->obs);
    ep_access_destroy(app->access);
    ep_tls_destroy(app->tls); /* after the servers: their connections held it */
    ep_free(app);
}
