/*
 * The live dashboard: GET / answers the page embedded at build time from
 * src/roles/dashboard/index.html, GET /dashboard.js and /dashboard.css its
 * script and styles; GET /api/v1/dashboard answers what only this process
 * knows (latency percentiles from its histograms). Everything else the page
 * shows comes from /api/v1/status.
 *
 * The page runs under a Content-Security-Policy that allows only its own
 * origin's script, styles and fetches, nothing inline, and no framing (also
 * X-Frame-Options for older browsers); no Referer leaves it.
 */
#include "base/ep_error.h"
#include "roles/ep_monitor.h"
#include "obs/ep_obs.h"
#include "base/ep_time.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "                \
    "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

extern const unsigned char ep_dashboard_html[], ep_dashboard_js[], ep_dashboard_css[];
extern const size_t ep_dashboard_html_len, ep_dashboard_js_len, ep_dashboard_css_len;

static void on_page(void *arg, ep_http_req_t *req)
{
    ep_http_req_add_header(req, "Cache-Control", "no-cache");
    ep_http_req_add_header(req, "Content-Security-Policy", CSP);
    ep_http_req_add_header(req, "X-Frame-Options", "DENY");
    ep_http_req_add_header(req, "Referrer-Policy", "no-referrer");
    ep_http_respond(req, 200, "text/html; charset=utf-8", (const char *)ep_dashboard_html,
                    ep_dashboard_html_len);
}

static void on_script(void *arg, ep_http_req_t *req)
{
    ep_http_req_add_header(req, "Cache-Control", "no-cache");
    ep_http_respond(req, 200, "text/javascript; charset=utf-8", (const char *)ep_dashboard_js,
                    ep_dashboard_js_len);
}

static void on_styles(void *arg, ep_http_req_t *req)
{
    ep_http_req_add_header(req, "Cache-Control", "no-cache");
    ep_http_respond(req, 200, "text/css; charset=utf-8", (const char *)ep_dashboard_css,
                    ep_dashboard_css_len);
}

/* {"p50":x,"p95":y,"p99":z,"count":n} in milliseconds, or null when empty. */
static void put_quantiles(ep_buf_t *b, const ep_metric_child_t *c)
{
    uint64_t count;
    double sum;

    ep_metrics_hist_read(c, &count, &sum, NULL);
    if (c == NULL || count == 0) {
        ep_buf_puts(b, "null");
        return;
    }
    ep_buf_printf(b, "{\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"mean\":%.3f,\"count\":%llu}",
                  ep_metrics_hist_quantile(c, 0.50) * 1e3, ep_metrics_hist_quantile(c, 0.95) * 1e3,
                  ep_metrics_hist_quantile(c, 0.99) * 1e3, sum / (double)count * 1e3,
                  (unsigned long long)count);
}

static void on_dashboard(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;
    ep_metric_t *f_req, *f_dur;
    ep_metric_child_t *ingest = NULL;

    ep_obs_http_families(app->obs, &f_req, &f_dur);
    if (f_dur) {
        /* The public single-event route: what a client of the gateway waits for. */
        const char *lv[2] = {"gateway", "/api/v1/ingest"};
        ingest = ep_metrics_child(f_dur, lv);
    }
    ep_buf_printf(&b, "{\"metrics_enabled\":%s,\"uptime_s\":%.1f,\"roles\":%u,",
                  app->obs ? "true" : "false",
                  (double)(ep_time_now_ms() - app->started_ms) / 1000.0, app->roles);
    ep_buf_puts(&b, "\"ingest_latency_ms\":");
    put_quantiles(&b, ingest);
    ep_buf_puts(&b, ",\"processing_latency_ms\":");
    put_quantiles(&b, app->pool ? ep_obs_processing_hist(app->obs) : NULL);
    ep_buf_puts(&b, "}\n");
    ep_http_respond_buf(req, 200, &b);
}

void ep__dashboard_routes(ep_app_t *app, ep_http_server_t *srv)
{
    ep_http_server_route(srv, EP_HTTP_GET, "/", on_page, app);
    ep_http_server_route(srv, EP_HTTP_GET, "/dashboard.js", on_script, app);
    ep_http_server_route(srv, EP_HTTP_GET, "/dashboard.css", on_styles, app);
    ep_http_server_route(srv, EP_HTTP_GET, "/api/v1/dashboard", on_dashboard, app);
}
