#ifndef EP_APP_H
#define EP_APP_H

#include <stdatomic.h>
#include <stdint.h>

#include "config/ep_config.h"
#include "http/ep_http_client.h"
#include "http/ep_http_server.h"
#include "obs/ep_obs.h"
#include "queue/ep_queue.h"
#include "pipeline/ep_sink.h"
#include "pipeline/ep_worker_pool.h"

/*
 * One eventpipe process: the roles it runs (all of them for `eventpipe run`),
 * their HTTP servers, the queue, the worker pool and the client for hops to
 * roles running elsewhere. Inside one process the roles call each other
 * directly; a role that runs elsewhere is reached over HTTP.
 */

#define EP_ROLE_GATEWAY   0x1
#define EP_ROLE_INGEST    0x2
#define EP_ROLE_PROCESSOR 0x4
#define EP_ROLE_ANALYTICS 0x8
#define EP_ROLE_ALL       (EP_ROLE_GATEWAY | EP_ROLE_INGEST | EP_ROLE_PROCESSOR | EP_ROLE_ANALYTICS)

typedef struct ep_app_s ep_app_t;
typedef struct ep_analytics_push_s ep_analytics_push_t;

/* Route contexts: what a route's handler gets, owned by the app (see ep_app_s). */
typedef struct ep_ready_route_s {
    ep_app_t *app;
    int (*ready)(ep_app_t *, char *, size_t);
} ep_ready_route_t; /* GET /ready of a role's port (ep_app.c) */

typedef struct ep_proxy_route_s {
    ep_app_t *app;
    const char *target; /* the path on ingest */
    int batch;          /* target is a batch route (answers per event) */
} ep_proxy_route_t;     /* a gateway path proxied to a remote ingest (ep_gateway.c) */

typedef struct ep_ingest_s {
    ep_app_t *app;
    ep_queue_t *queue; /* where accepted events go: the local queue, a broker, or the forwarder */
    struct ep_dedup_s *dedup;     /* client-id idempotency window; NULL when DEDUP_WINDOW=0 */
    struct ep_breaker_s *breaker; /* circuit breaker of the hop to a remote queue (the forwarder
                                     or a broker); NULL when local or CIRCUIT_BREAKER_FAILURES=0 */
    atomic_uint_fast64_t received, sent, failed, rejected;
    atomic_uint_fast64_t duplicates, batches, async_accepted;
    atomic_uint_fast64_t publish_us_sum, publish_count; /* request start -> queue ack */
    atomic_uint_fast64_t typed[3];                      /* user, order, payment */
    struct ep_ingest_routes_s *routes; /* its route contexts (ep_ingest.c), made by the first
                                          ep__ingest_routes, freed by ep__ingest_close */
} ep_ingest_t;

struct ep_app_s {
    ep_config_t cfg;
    int64_t abandoned; /* requests left unanswered at the shutdown deadline (ep_app_stop) */
    unsigned roles;
    int64_t started_ms;
    ep_queue_t *queue;   /* the processor's queue (or a broker shared with ingest) */
    ep_queue_t *forward; /* ingest -> remote processor, when the queue is process-local */
    ep_sink_t *sink;
    ep_worker_pool_t *pool;
    ep_http_client_t *client;
    ep_ingest_t ingest;
    ep_http_server_t *gateway_srv, *ingest_srv, *processor_srv;
    struct ep_analytics_s *analytics; /* the analytics role's aggregate (NULL without the role) */
    ep_analytics_push_t *push;        /* processor -> remote analytics deltas, or NULL */
    ep_http_server_t *analytics_srv;
    ep_http_server_t *metrics_srv;    /* METRICS_PORT: /metrics and /health only */
    ep_queue_t *analytics_queue;      /* analytics' own consumer of a broker queue, or NULL */
    ep_worker_pool_t *analytics_pool; /* feeds the aggregate from analytics_queue */
    _Atomic int analytics_caught_up;  /* analytics_queue came within a batch of its end once */
    ep_obs_t *obs;                    /* the metric registry; NULL when METRICS_ENABLED=false */
    struct ep_srv_obs_s *observers;   /* per-server answer observers (ep_monitor.c) */
    ep_ready_route_t ready_routes[4]; /* one per port that serves GET /ready */
    int n_ready_routes;
    ep_proxy_route_t proxy_routes[16]; /* the gateway's routes to a remote ingest */
    int n_proxy_routes;
    struct ep_breaker_s *ingest_breaker; /* the gateway's hop to a remote ingest, or NULL */
    ep_http_cors_t *cors;                /* CORS_ALLOWED_ORIGINS of every server; NULL: none */
    struct ep_access_s *access;          /* API keys, internal token, rate limits (ep_access.h) */
    struct ep_tls_s *tls; /* every listener's TLS (TLS_CERT_FILE), or NULL: plain HTTP */

    struct ep_grpc_api_s *grpc; /* the gRPC listeners of its roles (src/grpc/ep_grpc_api.h) */
};

/** Creates the process for `roles` from cfg (copied). Returns 0, or EP_E* with err filled. */
int ep_app_create(const ep_config_t *cfg, unsigned roles, ep_app_t **out, char *err, size_t errlen);

/** Starts workers and listeners. Returns 0, or EP_E* with err filled. */
int ep_app_start(ep_app_t *app, char *err, size_t errlen);

/**
 * Graceful stop: stop accepting, finish in-flight requests, drain the queue
 * through the workers, flush the sink; bounded by cfg.shutdown_timeout_ms.
 * Returns 0, or EP_ETIMEDOUT when something was left undone. Requests still
 * waiting for an answer at the deadline are abandoned: their servers are left
 * open (another thread may still answer them), ep_app_abandoned says so, and
 * the caller must then exit without ep_app_destroy.
 */
int ep_app_stop(ep_app_t *app);

/** The number of requests ep_app_stop abandoned at the deadline (0: none). */
int64_t ep_app_abandoned(const ep_app_t *app);

/** Frees everything. Accepts NULL. */
void ep_app_destroy(ep_app_t *app);

/**
 * SIGHUP: loads TLS_CERT_FILE and TLS_KEY_FILE again for new connections (open
 * ones keep theirs); a file that does not load leaves the old ones, logged.
 */
void ep_app_reload(ep_app_t *app);

/** Writes one summary log line (throughput so far). */
void ep_app_log_summary(ep_app_t *app);

/* Role wiring (ep_ingest.c, ep_processor.c, ep_gateway.c). */
void ep__ingest_routes(ep_app_t *app, ep_http_server_t *srv, int as_gateway);
/*
 * Ingest without HTTP (the gRPC API, issue 16): evs[0..n) are validated
 * events (taken; the array's slots are set to NULL), ids[i] their ids and
 * status[] n ints, both valid until cb. Does what the HTTP routes do after
 * parsing: counters, de-duplication by client id, the hop's circuit breaker,
 * publishing in chunks. cb(arg) runs once, on any thread (possibly before
 * this returns), when status[i] holds each event's outcome: 0 kept, EP_EEXIST
 * a repeat of a kept id (not enqueued again), EP_EAGAIN the same id is being
 * stored right now, else the publish error (ep__publish_maybe_kept tells).
 */
typedef void (*ep_ingest_done_cb)(void *arg);
void ep__ingest_submit(ep_ingest_t *ig, ep_event_t **evs, const ep_str_t *ids, int *status,
                       size_t n, int64_t start_ns, ep_ingest_done_cb cb, void *arg);
/** The words of a failed publish, as the batch results say them (valid until the thread calls
 * again). */
const char *ep__ingest_error_text(ep_ingest_t *ig, int err);
/** Frees what the ingest role allocated (the idempotency window). */
void ep__ingest_close(ep_app_t *app);
void ep__ingest_stats_json(ep_app_t *app, ep_buf_t *out);
int ep__ingest_ready(ep_app_t *app, char *reason, size_t len);
void ep__processor_routes(ep_app_t *app, ep_http_server_t *srv);
void ep__processor_stats_json(ep_app_t *app, ep_buf_t *out);
int ep__processor_ready(ep_app_t *app, char *reason, size_t len);
void ep__gateway_routes(ep_app_t *app, ep_http_server_t *srv);
/* Analytics (roles/ep_analytics_role.c). */
void ep__analytics_routes(ep_app_t *app, ep_http_server_t *srv);
/** Appends the summary JSON (the /api/v1/status "analytics" stats). */
void ep__analytics_stats_json(ep_app_t *app, ep_buf_t *out);
int ep__analytics_ready(ep_app_t *app, char *reason, size_t len);
/**
 * Connects the worker pool to analytics: the in-process aggregate when the
 * analytics role runs here, else (unless ANALYTICS_PUSH=off) a delta pusher to
 * ANALYTICS_URL. Call after the pool is created, before it starts.
 */
void ep__analytics_attach(ep_app_t *app);
/**
 * For an analytics role without a processor in the process and a broker queue:
 * creates a consumer of this process alone (group/durable "<name>-analytics-<tag>",
 * from the stream's start) feeding the aggregate: a full replica. Returns 0 or EP_E*
 * with err filled; nothing to do otherwise.
 */
int ep__analytics_consumer_create(ep_app_t *app, const ep_queue_provider_t *qp, char *err,
                                  size_t errlen);
/** Starts the pusher thread, if any. Returns 0 or EP_ENOMEM. */
int ep__analytics_push_start(ep_app_t *app);
/** Stops the pusher and makes a last delivery attempt; call once the workers have drained. */
void ep__analytics_push_stop(ep_app_t *app);
/** Appends the pusher's counters as JSON ("null" without a pusher). */
void ep__analytics_push_stats_json(ep_app_t *app, ep_buf_t *out);
/** Frees the aggregate and the pusher (stopping it first). */
void ep__analytics_close(ep_app_t *app);
/** Frees the answer observers ep__monitor_routes made (after the servers are gone). */
void ep__monitor_close(ep_app_t *app);
/** Routes every port serves: /health, /ready (with the given readiness function). */
void ep__common_routes(ep_app_t *app, ep_http_server_t *srv,
                       int (*ready)(ep_app_t *, char *, size_t));
/**
 * Answers a failed publish of one event whose id is id (len bytes; NULL: none)
 * from ingest's one table of publish errors: 400 or 413 when the queue refused
 * it, else 503 with Retry-After, "messageId" (when id) and "maybe_kept"
 * (whether the queue may have kept it anyway, see ep__publish_maybe_kept).
 */
void ep__respond_publish_error(ep_http_req_t *req, int err, const char *id, size_t len,
                               int retry_after_s);
/** 1 when a publish that failed with err may still have kept the event, else 0. */
int ep__publish_maybe_kept(int err);
/**
 * The most bytes ingest's answer to one batch can take with cfg's limits (the
 * gateway lets a batch answer grow to this, so it never fails a kept batch).
 */
size_t ep__ingest_batch_answer_max(const ep_config_t *cfg);
/**
 * The gateway's 503 body for a request to ingest whose outcome is unknown:
 * {"error":error,"maybe_kept":maybe,...} with, when maybe, the "messageId" of
 * the event (single) or a "results" entry with the "id" of each event (batch):
 * the client's own id, or the one derived from base_id (X-Message-Id) as ingest
 * would. body/len/enc are the request the gateway forwarded.
 */
void ep__ingest_unknown_answer(ep_app_t *app, int batch, const char *body, size_t len,
                               const char *enc, const char *base_id, const char *error, int maybe,
                               ep_buf_t *out);

#endif /* EP_APP_H */
