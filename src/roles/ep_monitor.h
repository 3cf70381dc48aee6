#ifndef EP_MONITOR_H
#define EP_MONITOR_H

#include "roles/ep_app.h"

/*
 * Observability of a role's port: GET /metrics (Prometheus text format), the
 * per-request metrics and the sampled access log behind every answer, and
 * the live dashboard page on the gateway.
 */

/**
 * Adds GET /metrics to srv and observes every answer srv gives
 * (http_requests_total, http_request_duration_seconds, the access log).
 * Does nothing when METRICS_ENABLED=false, except the access log. Call while
 * the routes are being added, before start; once per server.
 */
void ep__monitor_routes(ep_app_t *app, ep_http_server_t *srv);

/**
 * Appends the families read from the app at scrape time (queue, pool,
 * ingest and processing counters, health, uptime) to out. Thread-safe.
 */
void ep__monitor_collect(ep_app_t *app, ep_buf_t *out);

/**
 * Adds the dashboard: GET / (the embedded page) and GET /api/v1/dashboard
 * (its JSON: latency percentiles, local health, analytics summary when an
 * analytics role answers). Before start.
 */
void ep__dashboard_routes(ep_app_t *app, ep_http_server_t *srv);

#endif /* EP_MONITOR_H */
