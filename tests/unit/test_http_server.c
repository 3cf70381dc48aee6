/*
 * Unit tests of ep_http_server: routing, limits, JSON errors, answers from
 * another thread, draining, and many connections ready at once on one loop.
 */
#include "http/ep_http_server.h"
#include "base/ep_str.h"
#include "ep_test.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    long status;
    ep_buf_t body;
    char allow[128];
    char ctype[128];
    char retry[32];
} resp_t;

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
    ep_buf_append(&((resp_t *)arg)->body, p, sz * n);
    return sz * n;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t len = sz * n;

    if (len > EP_STRLEN("Allow: ") && strncasecmp(p, EP_STRLIT("Allow: ")) == 0) {
        snprintf(r->allow, sizeof(r->allow), "%.*s", (int)(len - 9), p + 7);
    } else if (len > EP_STRLEN("Content-Type: ") &&
               strncasecmp(p, EP_STRLIT("Content-Type: ")) == 0) {
        snprintf(r->ctype, sizeof(r->ctype), "%.*s", (int)(len - 16), p + 14);
    } else if (len > EP_STRLEN("Retry-After: ") &&
               strncasecmp(p, EP_STRLIT("Retry-After: ")) == 0) {
        snprintf(r->retry, sizeof(r->retry), "%.*s", (int)(len - 15), p + 13);
    }
    return len;
}

static void do_req(int port, const char *method, const char *path, const char *body,
                   struct curl_slist *hdrs, resp_t *r)
{
    CURL *c = curl_easy_init();
    char url[256];

    ep_buf_close(&r->body);
    memset(r, 0, sizeof(*r));
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    if (hdrs) {
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 30000L);
    EP_ASSERT_EQ(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_cleanup(c);
    ep_buf_putc(&r->body, '\0');
}

static void on_echo(void *arg, ep_http_req_t *req)
{
    ep_http_respond(req, 200, "text/plain", ep_http_req_body(req), ep_http_req_body_len(req));
}

static void on_unavailable(void *arg, ep_http_req_t *req)
{
    ep_http_respond_error(req, 503, "try later", "x.y");
}

static void *answer_later(void *arg)
{
    ep_time_sleep_ms(50);
    ep_http_respond((ep_http_req_t *)arg, 202, NULL, "{\"later\":true}", 14);
    return NULL;
}

static void on_async(void *arg, ep_http_req_t *req)
{
    pthread_t t;

    pthread_create(&t, NULL, answer_later, req);
    pthread_detach(t);
}

static ep_http_server_t *start(void)
{
    ep_http_server_opts_t o = {.name = "test",
                               .bind_addr = "127.0.0.1",
                               .port = 0,
                               .threads = 2,
                               .max_body = 1024,
                               .max_header = 2048,
                               .idle_timeout_ms = 5000,
                               .retry_after_s = 7};
    ep_http_server_t *s;
    char err[256];

    EP_ASSERT_EQ(ep_http_server_create(&o, &s), 0);
    ep_http_server_route(s, EP_HTTP_POST, "/echo", on_echo, NULL);
    ep_http_server_route(s, EP_HTTP_GET, "/busy", on_unavailable, NULL);
    ep_http_server_route(s, EP_HTTP_POST | EP_HTTP_GET, "/async", on_async, NULL);
    EP_ASSERT_EQ(ep_http_server_start(s, err, sizeof(err)), 0);
    EP_ASSERT(ep_http_server_port(s) > 0);
    return s;
}

static void test_routes_and_errors(void)
{
    ep_http_server_t *s = start();
    int port = ep_http_server_port(s);
    resp_t r = {0};

    do_req(port, "POST", "/echo", "hello", NULL, &r);
    EP_ASSERT_EQ(r.status, 200);
    EP_ASSERT_STR_EQ(r.body.data, "hello");
    EP_ASSERT_STR_EQ(r.ctype, "text/plain");

    do_req(port, "GET", "/missing", NULL, NULL, &r);
    EP_ASSERT_EQ(r.status, 404);
    EP_ASSERT_STR_EQ(r.ctype, "application/json");
    EP_ASSERT(strstr(r.body.data, "\"error\"") != NULL);

    do_req(port, "GET", "/echo", NULL, NULL, &r);
    EP_ASSERT_EQ(r.status, 405);
    EP_ASSERT_STR_EQ(r.allow, "POST");

    do_req(port, "GET", "/busy", NULL, NULL, &r);
    EP_ASSERT_EQ(r.status, 503);
    EP_ASSERT_STR_EQ(r.retry, "7");
    EP_ASSERT_STR_EQ(r.body.data, "{\"error\":\"try later\",\"field\":\"x.y\"}\n");
    ep_buf_close(&r.body);
    ep_http_server_destroy(s);
}

static void test_limits(void)
{
    ep_http_server_t *s = start();
    int port = ep_http_server_port(s);
    char big[2048], hdr[4096];
    struct curl_slist *h = NULL;
    ep_http_server_stats_t st;
    resp_t r = {0};

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    do_req(port, "POST", "/echo", big, NULL, &r);
    EP_ASSERT_EQ(r.status, 413);
    EP_ASSERT(strstr(r.body.data, "larger than 1024") != NULL);

    snprintf(hdr, sizeof(hdr), "X-Big: %.*s", 3000, big);
    memset(hdr + 7, 'b', 3000);
    hdr[3007] = '\0';
    h = curl_slist_append(h, hdr);
    do_req(port, "POST", "/echo", "x", h, &r);
    curl_slist_free_all(h);
    EP_ASSERT_EQ(r.status, 431);
    EP_ASSERT_STR_EQ(r.ctype, "application/json");

    ep_http_server_stats(s, &st);
    EP_ASSERT(st.requests >= 2 && st.status_4xx >= 2);
    ep_buf_close(&r.body);
    ep_http_server_destroy(s);
}

static void test_answer_from_another_thread(void)
{
    ep_http_server_t *s = start();
    int port = ep_http_server_port(s);
    resp_t r = {0};

    for (int i = 0; i < 20; i++) {
        do_req(port, i % 2 ? "GET" : "POST", "/async", "x", NULL, &r);
        EP_ASSERT_EQ(r.status, 202);
        EP_ASSERT_STR_EQ(r.body.data, "{\"later\":true}");
        ep_buf_close(&r.body);
    }
    ep_http_server_destroy(s);
}

static size_t on_close_header(char *p, size_t sz, size_t n, void *arg)
{
    if (sz * n >= EP_STRLEN("Connection: close") &&
        strncasecmp(p, EP_STRLIT("Connection: close")) == 0) {
        *(int *)arg = 1;
    }
    return sz * n;
}

static size_t discard(char *p, size_t sz, size_t n, void *arg)
{
    (void)p;
    (void)arg;
    return sz * n;
}

static void test_quiesce_refuses_new_connections(void)
{
    for (int round = 0; round < 20; round++) {
        ep_http_server_t *s = start();
        int port = ep_http_server_port(s), closing = 0;
        long connects = -1;
        CURL *open = curl_easy_init(), *fresh = curl_easy_init();
        char url[128];

        /* A keep-alive connection opened before the drain... */
        snprintf(url, sizeof(url), "http://127.0.0.1:%d/busy", port);
        curl_easy_setopt(open, CURLOPT_URL, url);
        curl_easy_setopt(open, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(open, CURLOPT_WRITEFUNCTION, discard);
        EP_ASSERT_EQ(curl_easy_perform(open), CURLE_OK);
        ep_http_server_quiesce(s);
        ep_http_server_quiesce(s); /* idempotent */
        /* ...is still served, and told to close. */
        curl_easy_setopt(open, CURLOPT_HEADERFUNCTION, on_close_header);
        curl_easy_setopt(open, CURLOPT_HEADERDATA, &closing);
        EP_ASSERT_EQ(curl_easy_perform(open), CURLE_OK);
        curl_easy_getinfo(open, CURLINFO_NUM_CONNECTS, &connects);
        EP_ASSERT_EQ(connects, 0); /* the same connection */
        EP_ASSERT(closing);
        /* A new connection gets no answer. */
        curl_easy_setopt(fresh, CURLOPT_URL, url);
        curl_easy_setopt(fresh, CURLOPT_TIMEOUT_MS, 1000L);
        curl_easy_setopt(fresh, CURLOPT_WRITEFUNCTION, discard);
        EP_ASSERT_NE(curl_easy_perform(fresh), CURLE_OK);
        curl_easy_cleanup(open);
        curl_easy_cleanup(fresh);
        ep_http_server_destroy(s);
    }
}

static atomic_int slow_entered, slow_release;

/* Holds the server's only loop until the test lets it go (30 s at most). */
static void on_slow(void *arg, ep_http_req_t *req)
{
    (void)arg;
    atomic_store(&slow_entered, 1);
    for (int i = 0; i < 30000 && !atomic_load(&slow_release); i++) {
        ep_time_sleep_ms(1);
    }
    ep_http_respond(req, 200, "text/plain", "slow", 4);
}

static int raw_connect(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    EP_ASSERT(fd >= 0);
    EP_ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void raw_send(int fd, const char *req)
{
    EP_ASSERT_EQ(write(fd, req, strlen(req)), (ssize_t)strlen(req));
}

/* Reads one small answer ("...\r\n\r\nx", Content-Length 1) into buf; 1 when complete. */
static int raw_read_some(int fd, ep_buf_t *buf)
{
    char tmp[1024];
    ssize_t n = read(fd, tmp, sizeof(tmp));
    const char *end;

    EP_ASSERT(n > 0);
    ep_buf_append(buf, tmp, (size_t)n);
    end = strstr(buf->data, "\r\n\r\n");
    return end != NULL && (size_t)(end + 4 - buf->data) + 1 <= buf->len;
}

static void *answer_now(void *arg)
{
    ep_http_respond((ep_http_req_t *)arg, 200, "text/plain", "now", 3);
    return NULL;
}

static void on_async_now(void *arg, ep_http_req_t *req)
{
    pthread_t t;

    (void)arg;
    pthread_create(&t, NULL, answer_now, req);
    pthread_detach(t);
}

/* A server with one event loop and the routes of the tests below. */
static ep_http_server_t *start_one_loop(int idle_timeout_s)
{
    ep_http_server_opts_t o = {.name = "test",
                               .bind_addr = "127.0.0.1",
                               .threads = 1,
                               .max_body = 1024,
                               .max_header = 2048,
                               .idle_timeout_ms = idle_timeout_s * 1000};
    ep_http_server_t *s;
    char err[256];

    EP_ASSERT_EQ(ep_http_server_create(&o, &s), 0);
    ep_http_server_route(s, EP_HTTP_GET, "/now", on_async_now, NULL);
    ep_http_server_route(s, EP_HTTP_POST, "/echo", on_echo, NULL);
    ep_http_server_route(s, EP_HTTP_GET, "/slow", on_slow, NULL);
    EP_ASSERT_EQ(ep_http_server_start(s, err, sizeof(err)), 0);
    return s;
}

/*
 * The server is destroyed as soon as an answer given on another thread has
 * arrived: that thread may still be finishing its hand-over (resume, wake-up)
 * and must not find the loop freed (TSan run; a NATS e2e test once hit this).
 */
static void test_destroy_right_after_a_late_answer(void)
{
    for (int round = 0; round < 100; round++) {
        ep_http_server_t *s = start_one_loop(5);
        char buf[256];
        int fd;
        ssize_t n;

        fd = raw_connect(ep_http_server_port(s));
        raw_send(fd, "GET /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        n = read(fd, buf, sizeof(buf) - 1);
        EP_ASSERT(n > (ssize_t)EP_STRLEN("HTTP/1.1 200") &&
                  strncmp(buf, EP_STRLIT("HTTP/1.1 200")) == 0);
        close(fd);
        ep_http_server_destroy(s);
    }
}

/*
 * 256 keep-alive connections on one loop send their next request while the
 * loop is held up, so all of them are ready at once when it looks. (libmicrohttpd
 * 0.9.75's own epoll thread then handled 128 and waited for the idle timeout
 * before the rest; this test waited about 30 s on it.) All must be answered
 * long before the 60 s idle timeout.
 */
static void test_many_connections_ready_at_once(void)
{
    enum { N = 256 };
    static const char echo[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx";
    ep_http_server_t *s = start_one_loop(60);
    int fds[N], slow, answered = 0, done[N] = {0};
    ep_buf_t bufs[N];
    int64_t deadline;

    /* Every connection accepted and kept alive: one round trip each. */
    for (int i = 0; i < N; i++) {
        fds[i] = raw_connect(ep_http_server_port(s));
        ep_buf_init(&bufs[i]);
        raw_send(fds[i], echo);
        while (!raw_read_some(fds[i], &bufs[i])) {
        }
        EP_ASSERT(strncmp(bufs[i].data, EP_STRLIT("HTTP/1.1 200")) == 0);
        ep_buf_reset(&bufs[i]);
    }
    /* Hold the loop, then make all N ready together, then let it go. */
    slow = raw_connect(ep_http_server_port(s));
    raw_send(slow, "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
    deadline = ep_time_mono_ns() + INT64_C(30000000000);
    while (!atomic_load(&slow_entered) && ep_time_mono_ns() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT(atomic_load(&slow_entered));
    for (int i = 0; i < N; i++) {
        raw_send(fds[i], echo);
    }
    atomic_store(&slow_release, 1);
    deadline = ep_time_mono_ns() + INT64_C(30000000000); /* half the idle timeout */
    while (answered < N && ep_time_mono_ns() < deadline) {
        struct pollfd p[N];
        int np = 0;
        for (int i = 0; i < N; i++) {
            if (!done[i]) {
                p[np].fd = fds[i];
                p[np].events = POLLIN;
                p[np++].revents = 0;
            }
        }
        EP_ASSERT(poll(p, (nfds_t)np, 200) >= 0);
        for (int k = 0; k < np; k++) {
            if (p[k].revents & POLLIN) {
                int i = 0;
                while (fds[i] != p[k].fd) {
                    i++;
                }
                if (raw_read_some(fds[i], &bufs[i])) {
                    EP_ASSERT(strncmp(bufs[i].data, EP_STRLIT("HTTP/1.1 200")) == 0);
                    done[i] = 1;
                    answered++;
                }
            }
        }
    }
    EP_ASSERT_EQ(answered, N);
    for (int i = 0; i < N; i++) {
        close(fds[i]);
        ep_buf_close(&bufs[i]);
    }
    close(slow);
    ep_http_server_destroy(s);
}

/* Reads until the server closes the connection (or 30 s pass). */
static void read_to_close(int fd, ep_buf_t *out)
{
    int64_t deadline = ep_time_mono_ns() + INT64_C(30000000000);

    for (;;) {
        char tmp[4096];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;
        EP_ASSERT(ep_time_mono_ns() < deadline);
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        n = read(fd, tmp, sizeof(tmp));
        if (n <= 0) {
            break;
        }
        ep_buf_append(out, tmp, (size_t)n);
    }
    ep_buf_putc(out, '\0');
}

/* Sends req on a fresh connection and reads everything up to the server's close. */
static void exchange(int port, const char *req, ep_buf_t *out)
{
    int fd = raw_connect(port);

    ep_buf_reset(out);
    raw_send(fd, req);
    read_to_close(fd, out);
    close(fd);
}

/*
 * Pipelined requests in one write, a chunked body among them, are answered in
 * order; the last asks to close.
 */
static void test_pipelined_and_chunked(void)
{
    ep_http_server_t *s = start_one_loop(5);
    ep_buf_t out = EP_BUF_INIT;
    const char *a, *b, *c;

    exchange(ep_http_server_port(s),
             "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\none\r\n4;x=y\r\n-two\r\n0\r\n\r\n"
             "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nthree"
             "GET /missing HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
             &out);
    a = strstr(out.data, "HTTP/1.1 200 OK\r\n");
    EP_ASSERT(a != NULL && strstr(a, "\r\n\r\none-two") != NULL);
    b = strstr(a + 1, "HTTP/1.1 200 OK\r\n");
    EP_ASSERT(b != NULL && strstr(b, "\r\n\r\nthree") != NULL);
    c = strstr(b + 1, "HTTP/1.1 404 Not Found\r\n");
    EP_ASSERT(c != NULL && strstr(c, "Connection: close\r\n") != NULL);
    EP_ASSERT(strstr(c, "{\"error\":\"no such path\"}") != NULL);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/* What the parser refuses gets a JSON error and the connection closes. */
static void test_malformed_requests_get_json(void)
{
    static const struct {
        const char *req;
        const char *status;
    } cases[] = {
        {"NOT A REQUEST\r\n\r\n", "HTTP/1.1 400 "},
        {"GET /echo HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "}, /* no Host */
        {"GET /echo HTTP/3.0\r\nHost: t\r\n\r\n", "HTTP/1.1 505 "},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: br\r\n\r\n", "HTTP/1.1 501 "},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
         "HTTP/1.1 400 "},
        {"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
         "800\r\n",
         NULL}, /* the 2048 bytes follow below: over the 1024-byte limit, 413 */
    };
    ep_http_server_t *s = start_one_loop(5);
    int port = ep_http_server_port(s);
    ep_buf_t out = EP_BUF_INIT;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].status == NULL) {
            int fd = raw_connect(port);
            char chunk[2048];
            memset(chunk, 'a', sizeof(chunk));
            raw_send(fd, cases[i].req);
            EP_ASSERT_EQ(write(fd, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
            ep_buf_reset(&out);
            read_to_close(fd, &out);
            close(fd);
            EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 413 ")) == 0);
        } else {
            exchange(port, cases[i].req, &out);
            if (strncmp(out.data, cases[i].status, strlen(cases[i].status)) != 0) {
                fprintf(stderr, "case %zu: %s\n", i, out.data);
            }
            EP_ASSERT(strncmp(out.data, cases[i].status, strlen(cases[i].status)) == 0);
        }
        EP_ASSERT(strstr(out.data, "Content-Type: application/json\r\n") != NULL);
        EP_ASSERT(strstr(out.data, "Connection: close\r\n") != NULL);
        EP_ASSERT(strstr(out.data, "\r\n\r\n{\"error\":\"") != NULL);
    }
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * HTTP/1.0 closes after the answer unless it asks to stay; HEAD gets the
 * headers of GET without the body; Expect: 100-continue gets its interim answer.
 */
static void test_versions_head_and_continue(void)
{
    ep_http_server_t *s = start_one_loop(5);
    int port = ep_http_server_port(s), fd;
    ep_buf_t out = EP_BUF_INIT;
    char buf[256];
    ssize_t n;

    exchange(port, "GET /now HTTP/1.0\r\n\r\n", &out);
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 OK\r\n")) == 0);
    EP_ASSERT(strstr(out.data, "Connection: close\r\n") != NULL);
    EP_ASSERT(strstr(out.data, "\r\n\r\nnow") != NULL);

    exchange(port, "HEAD /now HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &out);
    EP_ASSERT(strstr(out.data, "Content-Length: 3\r\n") != NULL);
    EP_ASSERT(strcmp(strstr(out.data, "\r\n\r\n"), "\r\n\r\n") == 0); /* no body */

    fd = raw_connect(port);
    raw_send(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
                 "Content-Length: 4\r\n\r\n");
    n = read(fd, buf, sizeof(buf) - 1);
    EP_ASSERT(n > 0);
    buf[n] = '\0';
    EP_ASSERT_STR_EQ(buf, "HTTP/1.1 100 Continue\r\n\r\n");
    raw_send(fd, "body");
    ep_buf_reset(&out);
    while (!raw_read_some(fd, &out) || strstr(out.data, "\r\n\r\nbody") == NULL) {
    }
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 OK\r\n")) == 0);
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * A connection that stalls in the middle of a head gets a 408 JSON error
 * after the idle timeout (no byte for that long), then is closed.
 */
static void test_idle_timeout(void)
{
    ep_http_server_t *s = start_one_loop(1);
    ep_buf_t out = EP_BUF_INIT;
    int64_t t0 = ep_time_mono_ns();
    int fd = raw_connect(ep_http_server_port(s));

    raw_send(fd, "GET /now HTTP/1.1\r\nHost:");
    read_to_close(fd, &out);
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 408 ")) == 0);
    EP_ASSERT(strstr(out.data, "HTTP_IDLE_TIMEOUT") != NULL);
    EP_ASSERT(ep_time_mono_ns() - t0 >= INT64_C(900000000));
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

EP_TEST_LIST = {
    EP_TEST(test_many_connections_ready_at_once),
    EP_TEST(test_destroy_right_after_a_late_answer),
    EP_TEST(test_routes_and_errors),
    EP_TEST(test_limits),
    EP_TEST(test_answer_from_another_thread),
    EP_TEST(test_quiesce_refuses_new_connections),
    EP_TEST(test_pipelined_and_chunked),
    EP_TEST(test_malformed_requests_get_json),
    EP_TEST(test_versions_head_and_continue),
    EP_TEST(test_idle_timeout),
    EP_TEST_END,
};
EP_TEST_MAIN()
