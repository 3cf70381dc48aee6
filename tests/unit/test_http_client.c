#include "base/ep_error.h"
#include "http/ep_http_client.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "ep_test.h"
#include "ep_test_mhd.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

/*
 * A real HTTP server (libmicrohttpd, in-process) with a few routes:
 *   /echo         GET -> "hello"; POST -> the request body, same Content-Type
 *   /status/NNN   answers NNN; 503 carries "Retry-After: 7"
 *   /slow         answers 200 after 60 s (sooner when the server stops)
 * It records the client port of every connection it sees, to count reuse.
 */

/* Timeout of the requests that should succeed: generous, for a loaded machine. */
#define OK_MS 30000

#define MAX_PORTS 1024

typedef struct srv_s {
    struct MHD_Daemon *d;
    int port;
    atomic_int stopping;
    pthread_mutex_t mu;
    int ports[MAX_PORTS];
    int n_ports;
    atomic_int requests;
    atomic_int slow; /* /slow requests being answered */
} srv_t;

static srv_t srv;

static void note_port(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    int port, i;

    if (ci == NULL || ci->client_addr == NULL || ci->client_addr->sa_family != AF_INET) {
        return;
    }
    port = ntohs(((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_port);
    pthread_mutex_lock(&srv.mu);
    for (i = 0; i < srv.n_ports; i++) {
        if (srv.ports[i] == port) {
            break;
        }
    }
    if (i == srv.n_ports && srv.n_ports < MAX_PORTS) {
        srv.ports[srv.n_ports++] = port;
    }
    pthread_mutex_unlock(&srv.mu);
}

static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code, const char *ctype,
                             const void *data, size_t len, const char *retry_after)
{
    struct MHD_Response *resp;
    enum MHD_Result ret;

    resp = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_MUST_COPY);
    if (ctype) {
        MHD_add_response_header(resp, "Content-Type", ctype);
    }
    if (retry_after) {
        MHD_add_response_header(resp, "Retry-After", retry_after);
    }
    ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    ep_test_body_t *b = NULL;

    if (*con_cls == NULL) {
        note_port(conn);
    }
    if (ep_test_mhd_body(con_cls, upload_data, upload_size, &b)) {
        return MHD_YES;
    }
    atomic_fetch_add(&srv.requests, 1);
    if (strcmp(url, "/echo") == 0) {
        if (strcmp(method, "POST") == 0) {
            const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
            return reply(conn, 200, ct ? ct : "application/octet-stream", b->p ? b->p : "", b->len,
                         NULL);
        }
        return reply(conn, 200, "text/plain", "hello", 5, NULL);
    }
    if (strncmp(url, EP_STRLIT("/status/")) == 0) {
        unsigned code = (unsigned)atoi(url + 8);
        return reply(conn, code, "application/json", "{\"status\":\"x\"}", 14,
                     code == 503 ? "7" : NULL);
    }
    if (strcmp(url, "/headers") == 0) {
        /* The request's Content-Type, Content-Encoding and X-Message-Id, '|'-separated. */
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        const char *ce = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding");
        const char *id = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Message-Id");
        size_t n = (ct ? strlen(ct) : 0) + (ce ? strlen(ce) : 0) + (id ? strlen(id) : 0) + 3;
        char *out = ep_malloc(n);
        enum MHD_Result rc;
        snprintf(out, n, "%s|%s|%s", ct ? ct : "", ce ? ce : "", id ? id : "");
        rc = reply(conn, 200, "text/plain", out, strlen(out), NULL);
        ep_free(out);
        return rc;
    }
    if (strcmp(url, "/slow") == 0) {
        atomic_fetch_add(&srv.slow, 1);
        for (int i = 0; i < 6000 && !atomic_load(&srv.stopping); i++) {
            ep_time_sleep_ms(10);
        }
        return reply(conn, 200, "text/plain", "late", 4, NULL);
    }
    return reply(conn, 404, "text/plain", "not found", 9, NULL);
}

static void srv_start(void)
{
    memset(&srv, 0, sizeof(srv));
    pthread_mutex_init(&srv.mu, NULL);
    srv.d = ep_test_mhd_start(on_request, &srv.port);
}

static void srv_stop(void)
{
    atomic_store(&srv.stopping, 1);
    MHD_stop_daemon(srv.d);
    pthread_mutex_destroy(&srv.mu);
}

static void url_of(char *out, size_t len, const char *path)
{
    snprintf(out, len, "http://127.0.0.1:%d%s", srv.port, path);
}

/*
 * A URL with path on a bound but never listening socket: connecting to it is
 * refused. Returns the socket (close it after the test).
 */
static int refusing_url(char *url, size_t len, const char *path)
{
    int port, fd = ep_test_refusing_socket(&port);

    snprintf(url, len, "http://127.0.0.1:%d%s", port, path);
    return fd;
}

/* ------------------------------------------------------------ async bookkeeping */

#define MAX_CALLS 256

typedef struct tracker_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls[MAX_CALLS]; /* callback count per request index */
    int err[MAX_CALLS];
    int status[MAX_CALLS];
    int body_ok[MAX_CALLS];
    int done;
} tracker_t;

typedef struct call_s {
    tracker_t *t;
    int idx;
    char expect[32];
} call_t;

static void tracker_init(tracker_t *t)
{
    memset(t, 0, sizeof(*t));
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
}

static void tracker_close(tracker_t *t)
{
    pthread_cond_destroy(&t->cv);
    pthread_mutex_destroy(&t->mu);
}

static void on_tracked(void *arg, const ep_http_response_t *res)
{
    call_t *c = arg;
    tracker_t *t = c->t;
    int ok = res->body_len == strlen(c->expect) && memcmp(res->body, c->expect, res->body_len) == 0;

    pthread_mutex_lock(&t->mu);
    t->calls[c->idx]++;
    t->err[c->idx] = res->err;
    t->status[c->idx] = res->status;
    t->body_ok[c->idx] = ok;
    t->done++;
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
}

/* Waits until n callbacks ran or timeout_ms passed; returns the count seen. */
static int tracker_wait(tracker_t *t, int n, int timeout_ms)
{
    int64_t deadline = ep_time_mono_ms() + timeout_ms;
    int done;

    pthread_mutex_lock(&t->mu);
    while (t->done < n && ep_time_mono_ms() < deadline) {
        pthread_mutex_unlock(&t->mu);
        ep_time_sleep_ms(5);
        pthread_mutex_lock(&t->mu);
    }
    done = t->done;
    pthread_mutex_unlock(&t->mu);
    return done;
}

/* ------------------------------------------------------------ tests */

static void test_get_roundtrip(void)
{
    ep_http_client_t *c;
    char url[128], *body = NULL;
    int status;

    srv_start();
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    url_of(url, sizeof(url), "/echo");
    EP_ASSERT_EQ(ep_http_client_request_sync(c, "GET", url, NULL, NULL, 0, OK_MS, &status, &body),
                 0);
    EP_ASSERT_EQ(status, 200);
    EP_ASSERT_STR_EQ(body, "hello");
    ep_free(body);

    url_of(url, sizeof(url), "/nope");
    EP_ASSERT_EQ(ep_http_client_request_sync(c, "GET", url, NULL, NULL, 0, OK_MS, &status, NULL),
                 0);
    EP_ASSERT_EQ(status, 404);
    ep_http_client_destroy(c);
    srv_stop();
}

typedef struct capture_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    int err;
    char body[256];
    char ctype[128];
    char retry[32];
    char error[256];
} capture_t;

static void on_capture(void *arg, const ep_http_response_t *res)
{
    capture_t *cap = arg;

    pthread_mutex_lock(&cap->mu);
    cap->status = res->status;
    cap->err = res->err;
    snprintf(cap->body, sizeof(cap->body), "%.*s", (int)res->body_len, res->body);
    snprintf(cap->ctype, sizeof(cap->ctype), "%s", res->content_type);
    snprintf(cap->retry, sizeof(cap->retry), "%s", res->retry_after);
    snprintf(cap->error, sizeof(cap->error), "%s", res->error);
    cap->done++;
    pthread_cond_signal(&cap->cv);
    pthread_mutex_unlock(&cap->mu);
}

static void capture_run(ep_http_client_t *c, const char *method, const char *url, const char *ctype,
                        const char *body, int timeout_ms, capture_t *cap)
{
    memset(cap, 0, sizeof(*cap));
    pthread_mutex_init(&cap->mu, NULL);
    pthread_cond_init(&cap->cv, NULL);
    EP_ASSERT_EQ(ep_http_client_request(c, method, url, ctype, body, body ? strlen(body) : 0,
                                        timeout_ms, on_capture, cap),
                 0);
    pthread_mutex_lock(&cap->mu);
    while (!cap->done) {
        pthread_cond_wait(&cap->cv, &cap->mu);
    }
    pthread_mutex_unlock(&cap->mu);
    pthread_cond_destroy(&cap->cv);
    pthread_mutex_destroy(&cap->mu);
}

static void test_post_roundtrip(void)
{
    ep_http_client_t *c;
    capture_t cap;
    char url[128];
    const char *json = "{\"source\":\"sensor-01\",\"data\":\"temperature:23.5\"}";

    srv_start();
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    url_of(url, sizeof(url), "/echo");
    capture_run(c, "POST", url, "application/json", json, OK_MS, &cap);
    EP_ASSERT_EQ(cap.err, 0);
    EP_ASSERT_EQ(cap.status, 200);
    EP_ASSERT_STR_EQ(cap.body, json);
    EP_ASSERT_STR_EQ(cap.ctype, "application/json");
    EP_ASSERT_STR_EQ(cap.retry, "");
    EP_ASSERT_STR_EQ(cap.error, "");

    /* An empty POST body is still a POST. */
    capture_run(c, "POST", url, "text/plain", "", OK_MS, &cap);
    EP_ASSERT_EQ(cap.status, 200);
    EP_ASSERT_STR_EQ(cap.body, "");
    ep_http_client_destroy(c);
    srv_stop();
}

static void test_status_codes(void)
{
    ep_http_client_t *c;
    capture_t cap;
    char url[128];

    srv_start();
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    url_of(url, sizeof(url), "/status/202");
    capture_run(c, "POST", url, "application/json", "{}", OK_MS, &cap);
    EP_ASSERT_EQ(cap.err, 0);
    EP_ASSERT_EQ(cap.status, 202);
    EP_ASSERT_STR_EQ(cap.body, "{\"status\":\"x\"}");

    url_of(url, sizeof(url), "/status/400");
    capture_run(c, "POST", url, "application/json", "{}", OK_MS, &cap);
    EP_ASSERT_EQ(cap.err, 0);
    EP_ASSERT_EQ(cap.status, 400);
    EP_ASSERT_STR_EQ(cap.retry, "");

    url_of(url, sizeof(url), "/status/503");
    capture_run(c, "GET", url, NULL, NULL, OK_MS, &cap);
    EP_ASSERT_EQ(cap.err, 0);
    EP_ASSERT_EQ(cap.status, 503);
    EP_ASSERT_STR_EQ(cap.retry, "7");
    EP_ASSERT_STR_EQ(cap.ctype, "application/json");
    ep_http_client_destroy(c);
    srv_stop();
}

typedef struct submitter_s {
    ep_http_client_t *c;
    tracker_t *t;
    call_t *calls;
    int from, to;
} submitter_t;

static void *submit_range(void *arg)
{
    submitter_t *s = arg;
    char url[128];

    url_of(url, sizeof(url), "/echo");
    for (int i = s->from; i < s->to; i++) {
        call_t *cl = &s->calls[i];
        cl->t = s->t;
        cl->idx = i;
        snprintf(cl->expect, sizeof(cl->expect), "body-%d", i);
        EP_ASSERT_EQ(ep_http_client_request(s->c, "POST", url, "text/plain", cl->expect,
                                            strlen(cl->expect), OK_MS, on_tracked, cl),
                     0);
    }
    return NULL;
}

static void test_concurrent_100(void)
{
    ep_http_client_t *c;
    tracker_t t;
    call_t calls[100];
    submitter_t sub[4];
    pthread_t th[4];

    srv_start();
    tracker_init(&t);
    EP_ASSERT_EQ(ep_http_client_create(8, &c), 0);
    for (int i = 0; i < 4; i++) {
        sub[i] = (submitter_t){c, &t, calls, i * 25, (i + 1) * 25};
        EP_ASSERT_EQ(pthread_create(&th[i], NULL, submit_range, &sub[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
    }
    EP_ASSERT_EQ(tracker_wait(&t, 100, 2 * OK_MS), 100);
    /* Let any duplicate callback show up before checking. */
    ep_time_sleep_ms(50);
    pthread_mutex_lock(&t.mu);
    EP_ASSERT_EQ(t.done, 100);
    for (int i = 0; i < 100; i++) {
        EP_ASSERT_EQ(t.calls[i], 1);
        EP_ASSERT_EQ(t.err[i], 0);
        EP_ASSERT_EQ(t.status[i], 200);
        EP_ASSERT_EQ(t.body_ok[i], 1);
    }
    pthread_mutex_unlock(&t.mu);
    ep_http_client_destroy(c);
    tracker_close(&t);
    /* At most max_per_host connections were opened. */
    pthread_mutex_lock(&srv.mu);
    EP_ASSERT(srv.n_ports <= 8);
    pthread_mutex_unlock(&srv.mu);
    srv_stop();
}

static void test_connection_reuse(void)
{
    ep_http_client_t *c;
    char url[128];
    int status, n;

    srv_start();
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    url_of(url, sizeof(url), "/echo");
    for (int i = 0; i < 200; i++) {
        char *body = NULL;
        EP_ASSERT_EQ(ep_http_client_request_sync(c, "POST", url, "text/plain", "x", 1, OK_MS,
                                                 &status, &body),
                     0);
        EP_ASSERT_EQ(status, 200);
        EP_ASSERT_STR_EQ(body, "x");
        ep_free(body);
    }
    ep_http_client_destroy(c);
    pthread_mutex_lock(&srv.mu);
    n = srv.n_ports;
    pthread_mutex_unlock(&srv.mu);
    EP_ASSERT_EQ(atomic_load(&srv.requests), 200);
    EP_ASSERT(n >= 1);
    EP_ASSERT(n <= 4);
    srv_stop();
}

static void test_timeout(void)
{
    ep_http_client_t *c;
    capture_t cap;
    char url[128];
    int64_t t0, elapsed;

    srv_start();
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    url_of(url, sizeof(url), "/slow");
    t0 = ep_time_mono_ms();
    capture_run(c, "GET", url, NULL, NULL, 300, &cap);
    elapsed = ep_time_mono_ms() - t0;
    EP_ASSERT_EQ(cap.err, EP_ETIMEDOUT);
    EP_ASSERT_EQ(cap.status, 0);
    EP_ASSERT(cap.error[0] != '\0');
    EP_ASSERT(elapsed >= 250);
    EP_ASSERT(elapsed < 10000); /* the timeout, long before the 60 s answer */

    /* The client still works after a timeout. */
    url_of(url, sizeof(url), "/echo");
    capture_run(c, "GET", url, NULL, NULL, OK_MS, &cap);
    EP_ASSERT_EQ(cap.err, 0);
    EP_ASSERT_EQ(cap.status, 200);
    ep_http_client_destroy(c);
    srv_stop();
}

static void test_refused(void)
{
    ep_http_client_t *c;
    capture_t cap;
    char url[128];
    int fd, status;
    int64_t t0;

    fd = refusing_url(url, sizeof(url), "/x");

    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    t0 = ep_time_mono_ms();
    capture_run(c, "POST", url, "application/json", "{}", OK_MS, &cap);
    EP_ASSERT_EQ(cap.err, EP_ECONNREFUSED);
    EP_ASSERT_EQ(cap.status, 0);
    EP_ASSERT(cap.error[0] != '\0');
    EP_ASSERT(ep_time_mono_ms() - t0 < OK_MS / 2); /* refused at once, not the timeout */

    EP_ASSERT_EQ(ep_http_client_request_sync(c, "GET", url, NULL, NULL, 0, OK_MS, &status, NULL),
                 EP_ECONNREFUSED);
    EP_ASSERT_EQ(status, 0);
    ep_http_client_destroy(c);
    close(fd);
}

static void test_destroy_in_flight(void)
{
    ep_http_client_t *c;
    tracker_t t;
    call_t calls[20];
    char url[128];
    int64_t t0, deadline;

    srv_start();
    tracker_init(&t);
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    url_of(url, sizeof(url), "/slow");
    for (int i = 0; i < 20; i++) {
        calls[i].t = &t;
        calls[i].idx = i;
        calls[i].expect[0] = '\0';
        EP_ASSERT_EQ(
            ep_http_client_request(c, "GET", url, NULL, NULL, 0, 60000, on_tracked, &calls[i]), 0);
    }
    /* Requests in flight: the server is answering one (for 60 s), the rest wait. */
    deadline = ep_time_mono_ms() + OK_MS;
    while (atomic_load(&srv.slow) == 0 && ep_time_mono_ms() < deadline) {
        ep_time_sleep_ms(5);
    }
    EP_ASSERT(atomic_load(&srv.slow) > 0);
    t0 = ep_time_mono_ms();
    ep_http_client_destroy(c);
    EP_ASSERT(ep_time_mono_ms() - t0 < 30000); /* not the 60 s request timeout */
    /* Every callback ran before destroy returned, exactly once, with EP_ECLOSED. */
    EP_ASSERT_EQ(t.done, 20);
    for (int i = 0; i < 20; i++) {
        EP_ASSERT_EQ(t.calls[i], 1);
        EP_ASSERT_EQ(t.err[i], EP_ECLOSED);
        EP_ASSERT_EQ(t.status[i], 0);
    }
    tracker_close(&t);
    srv_stop();
}

typedef struct ex_capture_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    int err;
    int sent;
    char *body; /* a copy, NUL-terminated */
    size_t body_len;
    char ctx[32];
} ex_capture_t;

static void on_ex(void *arg, const ep_http_response_t *res)
{
    ex_capture_t *cap = *(ex_capture_t *const *)res->ctx;

    EP_ASSERT(arg == NULL);
    pthread_mutex_lock(&cap->mu);
    cap->status = res->status;
    cap->err = res->err;
    cap->sent = res->sent;
    cap->body = ep_strndup(res->body, res->body_len);
    cap->body_len = res->body_len;
    memcpy(cap->ctx, (const char *)res->ctx + sizeof(cap), sizeof(cap->ctx));
    cap->done = 1;
    pthread_cond_signal(&cap->cv);
    pthread_mutex_unlock(&cap->mu);
}

/* Runs one request with opts; the context is {cap, "ctx-" + tag}, checked on the way back. */
static int ex_run(ep_http_client_t *c, const char *url, ep_http_request_opts_t *o, const char *body,
                  size_t body_len, int timeout_ms, ex_capture_t *cap)
{
    char ctx[sizeof(cap) + 32];
    int rc;

    memset(cap, 0, sizeof(*cap));
    pthread_mutex_init(&cap->mu, NULL);
    pthread_cond_init(&cap->cv, NULL);
    memcpy(ctx, &cap, sizeof(cap));
    snprintf(ctx + sizeof(cap), 32, "ctx-%s", url + strlen(url) - 4);
    o->ctx = ctx;
    o->ctx_len = sizeof(ctx);
    rc = ep_http_client_request_ex(c, body ? "POST" : "GET", url, o, body, body_len, timeout_ms,
                                   on_ex, NULL);
    memset(ctx, 0, sizeof(ctx)); /* the client holds its own copy */
    if (rc == 0) {
        pthread_mutex_lock(&cap->mu);
        while (!cap->done) {
            pthread_cond_wait(&cap->cv, &cap->mu);
        }
        pthread_mutex_unlock(&cap->mu);
    }
    pthread_cond_destroy(&cap->cv);
    pthread_mutex_destroy(&cap->mu);
    return rc;
}

static void test_request_options(void)
{
    ep_http_client_t *c;
    ex_capture_t cap;
    ep_http_request_opts_t o;
    char url[128], ct[1200], expect[1400];
    size_t big = 17u * 1024 * 1024;
    char *body;

    srv_start();
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);

    /* A long Content-Type and Content-Encoding travel whole, with the extra line. */
    memset(ct, 'a', sizeof(ct) - 1);
    memcpy(ct, "application/vnd.x-", 18);
    memcpy(ct + sizeof(ct) - 6, "+json", 6);
    o = (ep_http_request_opts_t){.content_type = ct,
                                 .content_encoding = "gzip",
                                 .headers = "X-Message-Id: 0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"};
    url_of(url, sizeof(url), "/headers");
    EP_ASSERT_EQ(ex_run(c, url, &o, "{}", 2, OK_MS, &cap), 0);
    EP_ASSERT_EQ(cap.status, 200);
    snprintf(expect, sizeof(expect), "%s|gzip|0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", ct);
    EP_ASSERT_STR_EQ(cap.body, expect);
    EP_ASSERT_STR_EQ(cap.ctx, "ctx-ders");
    EP_ASSERT_EQ(cap.sent, 1);
    ep_free(cap.body);

    /* A line break inside a value would forge a header: refused, no callback. */
    o = (ep_http_request_opts_t){.content_type = "text/plain\r\nX-Evil: 1"};
    EP_ASSERT_EQ(ex_run(c, url, &o, "{}", 2, OK_MS, &cap), EP_EINVAL);
    o = (ep_http_request_opts_t){.headers = "A: 1\nB: 2\nC: 3\nD: 4\nE: 5\nF: 6\nG: 7"};
    EP_ASSERT_EQ(ex_run(c, url, &o, "{}", 2, OK_MS, &cap), EP_EINVAL);

    /* The response cap: over 16 MiB when allowed, EP_E2BIG past a small one. */
    body = ep_malloc(big);
    memset(body, 'x', big);
    url_of(url, sizeof(url), "/echo");
    o = (ep_http_request_opts_t){.content_type = "text/plain", .max_response = 2 * big};
    EP_ASSERT_EQ(ex_run(c, url, &o, body, big, OK_MS, &cap), 0);
    EP_ASSERT_EQ(cap.status, 200);
    EP_ASSERT_EQ(cap.body_len, big);
    ep_free(cap.body);
    o = (ep_http_request_opts_t){.content_type = "text/plain"};
    EP_ASSERT_EQ(ex_run(c, url, &o, body, big, OK_MS, &cap), 0);
    EP_ASSERT_EQ(cap.status, 0);
    EP_ASSERT_EQ(cap.err, EP_E2BIG);
    EP_ASSERT_EQ(cap.sent, 1); /* the server got it: it may have acted on it */
    EP_ASSERT_EQ(cap.body_len, 0);
    ep_free(cap.body);
    o = (ep_http_request_opts_t){.content_type = "text/plain", .max_response = 10};
    EP_ASSERT_EQ(ex_run(c, url, &o, "0123456789A", 11, OK_MS, &cap), 0);
    EP_ASSERT_EQ(cap.err, EP_E2BIG);
    ep_free(cap.body);
    ep_free(body);

    /* A timeout after the request left: sent. */
    url_of(url, sizeof(url), "/slow");
    o = (ep_http_request_opts_t){0};
    EP_ASSERT_EQ(ex_run(c, url, &o, NULL, 0, 300, &cap), 0);
    EP_ASSERT_EQ(cap.err, EP_ETIMEDOUT);
    EP_ASSERT_EQ(cap.sent, 1);
    ep_free(cap.body);
    ep_http_client_destroy(c);
    srv_stop();
}

static void test_refused_not_sent(void)
{
    ep_http_client_t *c;
    ex_capture_t cap;
    ep_http_request_opts_t o = {.content_type = "application/json"};
    char url[128];
    int fd;

    fd = refusing_url(url, sizeof(url), "/xxxx");
    EP_ASSERT_EQ(ep_http_client_create(4, &c), 0);
    EP_ASSERT_EQ(ex_run(c, url, &o, "{}", 2, OK_MS, &cap), 0);
    EP_ASSERT_EQ(cap.err, EP_ECONNREFUSED);
    EP_ASSERT_EQ(cap.sent, 0); /* never left: the server cannot have acted on it */
    EP_ASSERT_STR_EQ(cap.ctx, "ctx-xxxx");
    ep_free(cap.body);
    ep_http_client_destroy(c);
    close(fd);
}

static void test_invalid_args(void)
{
    ep_http_client_t *c;

    EP_ASSERT_EQ(ep_http_client_create(0, &c), 0);
    EP_ASSERT_EQ(ep_http_client_request(c, "GET", NULL, NULL, NULL, 0, 100, on_capture, NULL),
                 EP_EINVAL);
    ep_http_client_destroy(c);
    ep_http_client_destroy(NULL);
}

EP_TEST_LIST = {
    EP_TEST(test_get_roundtrip),   EP_TEST(test_post_roundtrip),    EP_TEST(test_status_codes),
    EP_TEST(test_concurrent_100),  EP_TEST(test_connection_reuse),  EP_TEST(test_timeout),
    EP_TEST(test_refused),         EP_TEST(test_destroy_in_flight), EP_TEST(test_invalid_args),
    EP_TEST(test_request_options), EP_TEST(test_refused_not_sent),  EP_TEST_END,
};

EP_TEST_MAIN()
