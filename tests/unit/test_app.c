/*
 * Apps in one process: each keeps its own route contexts, readiness routes,
 * proxy routes, observers and metric registry (issue 19 item 2).
 */
#include "roles/ep_app.h"
#include "http/ep_http_client.h"
#include "base/ep_mem.h"
#include "ep_test.h"
#include "ep_test_app.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENT "{\"source\":\"test\",\"data\":\"hello\",\"metadata\":{\"type\":\"demo\"}}"

/* url: INGEST_URL and PROCESSOR_URL (where a gateway or an ingest-only app goes), or NULL. */
static ep_app_t *app_new(unsigned roles, const char *metrics, const char *url)
{
    ep_config_t cfg;

    ep_test_app_config(&cfg);
    cfg.metrics_enabled = strcmp(metrics, "true") == 0;
    if (url) {
        snprintf(cfg.ingest_url, sizeof(cfg.ingest_url), "%s", url);
        snprintf(cfg.processor_url, sizeof(cfg.processor_url), "%s", url);
    }
    return ep_test_app_start(&cfg, roles);
}

static void url_of(char *url, size_t len, ep_http_server_t *srv, const char *path)
{
    snprintf(url, len, "http://127.0.0.1:%d%s", ep_http_server_port(srv), path);
}

/* One request; returns the status, the body in *body when asked (ep_free it). */
static int call(ep_http_client_t *c, const char *method, ep_http_server_t *srv, const char *path,
                const char *body, char **out)
{
    char url[128], *b = NULL;
    int status = 0;

    url_of(url, sizeof(url), srv, path);
    EP_ASSERT_EQ(ep_http_client_request_sync(c, method, url, body ? "application/json" : NULL, body,
                                             body ? strlen(body) : 0, 5000, &status, &b),
                 0);
    if (out) {
        *out = b;
    } else {
        ep_free(b);
    }
    return status;
}

/*
 * The gRPC listeners start before the HTTP ones, so an HTTP /health that answers means
 * every listener is up: with a gRPC port taken, start fails before any HTTP server
 * listens (the HTTP server got its port, and answered, when it started first).
 */
static void test_grpc_listens_before_http(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ep_config_t cfg;
    ep_app_t *app = NULL;
    char err[256] = "";

    EP_ASSERT(fd >= 0);
    EP_ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    EP_ASSERT_EQ(listen(fd, 1), 0);
    EP_ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    ep_test_app_config(&cfg);
    cfg.grpc_producer_port = ntohs(sa.sin_port); /* taken */
    EP_ASSERT_EQ(ep_app_create(&cfg, EP_ROLE_INGEST | EP_ROLE_PROCESSOR, &app, err, sizeof(err)),
                 0);
    EP_ASSERT(ep_app_start(app, err, sizeof(err)) != 0);
    EP_ASSERT(strstr(err, "Address already in use") != NULL);
    EP_ASSERT_EQ(ep_http_server_port(app->ingest_srv), 0); /* never listened */
    ep_app_destroy(app);
    close(fd);
}

/* Ingest routes and readiness routes answer for their own app. */
static void test_two_ingest_apps(void)
{
    ep_app_t *a = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "true", NULL);
    ep_app_t *b = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "true", NULL);
    ep_http_client_t *c;

    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    EP_ASSERT_EQ(call(c, "POST", a->ingest_srv, "/ingest", EVENT, NULL), 202);
    EP_ASSERT_EQ(call(c, "POST", b->ingest_srv, "/events", EVENT, NULL), 202);
    EP_ASSERT_EQ(call(c, "POST", b->ingest_srv, "/api/v1/events", EVENT, NULL), 202);
    EP_ASSERT_EQ(call(c, "POST", b->ingest_srv, "/api/v1/events/user", "{\"data\":\"u1\"}", NULL),
                 202);
    EP_ASSERT_EQ(atomic_load(&a->ingest.received), 1);
    EP_ASSERT_EQ(atomic_load(&a->ingest.sent), 1);
    EP_ASSERT_EQ(atomic_load(&b->ingest.received), 3);
    EP_ASSERT_EQ(atomic_load(&b->ingest.sent), 3);
    EP_ASSERT_EQ(atomic_load(&a->ingest.typed[0]), 0);
    EP_ASSERT_EQ(atomic_load(&b->ingest.typed[0]), 1);

    ep_http_client_destroy(c);
    ep_app_stop(a);
    ep_app_destroy(a);
    ep_app_stop(b);
    ep_app_destroy(b);
}

/* /ready answers for its own app: a ready one next to one whose processor is unreachable. */
static void test_two_apps_ready(void)
{
    ep_app_t *a = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "true", NULL);
    ep_app_t *b = app_new(EP_ROLE_INGEST, "true", "http://127.0.0.1:1");
    ep_http_client_t *c;

    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    EP_ASSERT_EQ(call(c, "GET", a->ingest_srv, "/ready", NULL, NULL), 200);
    EP_ASSERT_EQ(call(c, "GET", a->processor_srv, "/ready", NULL, NULL), 200);
    EP_ASSERT_EQ(call(c, "GET", b->ingest_srv, "/ready", NULL, NULL), 503);

    ep_http_client_destroy(c);
    ep_app_stop(b);
    ep_app_destroy(b);
    ep_app_stop(a);
    ep_app_destroy(a);
}

/* The value of a sample line "name value" in a /metrics body, -1 when absent. */
static double sample(const char *text, const char *name)
{
    char key[128];
    const char *p;

    snprintf(key, sizeof(key), "\n%s ", name);
    p = strstr(text, key);
    return p ? strtod(p + strlen(key), NULL) : -1;
}

/* Each app's /metrics shows its own registry; one without metrics has none. */
static void test_two_apps_metrics(void)
{
    ep_app_t *a = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "true", NULL);
    ep_app_t *b = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "true", NULL);
    ep_app_t *off = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "false", NULL);
    ep_http_client_t *c;
    char *ma = NULL, *mb = NULL;

    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    EP_ASSERT_EQ(call(c, "POST", a->ingest_srv, "/ingest", EVENT, NULL), 202);
    for (int i = 0; i < 3; i++) {
        EP_ASSERT_EQ(call(c, "POST", b->ingest_srv, "/ingest", EVENT, NULL), 202);
    }
    EP_ASSERT_EQ(call(c, "POST", off->ingest_srv, "/ingest", EVENT, NULL), 202);
    EP_ASSERT_EQ(call(c, "GET", a->ingest_srv, "/metrics", NULL, &ma), 200);
    EP_ASSERT_EQ(call(c, "GET", b->ingest_srv, "/metrics", NULL, &mb), 200);
    EP_ASSERT_EQ(call(c, "GET", off->ingest_srv, "/metrics", NULL, NULL), 404);
    EP_ASSERT(ma && mb);
    EP_ASSERT_EQ(sample(ma, "producer_batch_size_count"), 1);
    EP_ASSERT_EQ(sample(mb, "producer_batch_size_count"), 3);
    EP_ASSERT_EQ(sample(ma, "ep_ingest_events_received_total"), 1);
    EP_ASSERT_EQ(sample(mb, "ep_ingest_events_received_total"), 3);
    /* The request counters: each app saw its own POSTs only. */
    EP_ASSERT(strstr(ma, "http_requests_total{role=\"ingest\",route=\"/ingest\",method=\"POST\","
                         "status=\"202\"} 1\n") != NULL);
    EP_ASSERT(strstr(mb, "http_requests_total{role=\"ingest\",route=\"/ingest\",method=\"POST\","
                         "status=\"202\"} 3\n") != NULL);
    ep_free(ma);
    ep_free(mb);

    ep_http_client_destroy(c);
    ep_app_stop(off);
    ep_app_destroy(off);
    ep_app_stop(b);
    ep_app_destroy(b);
    ep_app_stop(a);
    ep_app_destroy(a);
}

/* Two gateways without ingest in the process: each proxies to its own INGEST_URL. */
static void test_two_gateways_proxy_to_their_ingest(void)
{
    ep_app_t *ia = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "false", NULL);
    ep_app_t *ib = app_new(EP_ROLE_INGEST | EP_ROLE_PROCESSOR, "false", NULL);
    ep_app_t *ga, *gb;
    ep_http_client_t *c;
    char url[128];

    url_of(url, sizeof(url), ia->ingest_srv, "");
    ga = app_new(EP_ROLE_GATEWAY, "false", url);
    url_of(url, sizeof(url), ib->ingest_srv, "");
    gb = app_new(EP_ROLE_GATEWAY, "false", url);

    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    EP_ASSERT_EQ(call(c, "POST", ga->gateway_srv, "/api/v1/ingest", EVENT, NULL), 202);
    EP_ASSERT_EQ(call(c, "POST", gb->gateway_srv, "/api/v1/ingest", EVENT, NULL), 202);
    EP_ASSERT_EQ(call(c, "POST", gb->gateway_srv, "/api/v1/events", EVENT, NULL), 202);
    EP_ASSERT_EQ(atomic_load(&ia->ingest.received), 1);
    EP_ASSERT_EQ(atomic_load(&ib->ingest.received), 2);

    ep_http_client_destroy(c);
    ep_app_stop(gb);
    ep_app_destroy(gb);
    ep_app_stop(ga);
    ep_app_destroy(ga);
    ep_app_stop(ib);
    ep_app_destroy(ib);
    ep_app_stop(ia);
    ep_app_destroy(ia);
}

EP_TEST_LIST = {
    EP_TEST(test_grpc_listens_before_http),
    EP_TEST(test_two_ingest_apps),
    EP_TEST(test_two_apps_ready),
    EP_TEST(test_two_apps_metrics),
    EP_TEST(test_two_gateways_proxy_to_their_ingest),
    EP_TEST_END,
};

EP_TEST_MAIN()
