/*
 * Unit tests of ep_http_server's defences against hostile clients (issue 14):
 * header and body deadlines, the send timeout, the idle clock, the connection
 * cap making room, the per-client-address limit, the memory budget, and
 * HTTP/1.0 with Transfer-Encoding closing after the answer.
 *
 * Small settings keep them quick; waits are on real conditions with generous
 * limits, never on the machine being fast.
 */
#include "http/ep_http_server.h"
#include "base/ep_str.h"
#include "ep_test.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define SEC        INT64_C(1000000000)
#define BIG_ANSWER (8 << 20)

static atomic_int big_answered;

static void on_echo(void *arg, ep_http_req_t *req)
{
    (void)arg;
    ep_http_respond(req, 200, "text/plain", ep_http_req_body(req), ep_http_req_body_len(req));
}

/* Slower than the idle timeouts the tests use (2 s). */
static void on_sleep(void *arg, ep_http_req_t *req)
{
    (void)arg;
    ep_time_sleep_ms(3000);
    ep_http_respond(req, 200, "text/plain", "z", 1);
}

static void on_big(void *arg, ep_http_req_t *req)
{
    ep_buf_t b = EP_BUF_INIT;

    (void)arg;
    ep_buf_reserve(&b, BIG_ANSWER);
    memset(b.data, 'x', BIG_ANSWER);
    b.len = BIG_ANSWER;
    b.data[b.len] = '\0';
    ep_http_respond_buf(req, 200, &b);
    atomic_fetch_add(&big_answered, 1);
}

/* Answers the body's length in decimal (an upload larger than the answer budget). */
static void on_count(void *arg, ep_http_req_t *req)
{
    char n[32];

    (void)arg;
    snprintf(n, sizeof(n), "%zu", ep_http_req_body_len(req));
    ep_http_respond(req, 200, "text/plain", n, strlen(n));
}

/* Starts a one-loop server on 127.0.0.1 with o's limits (name, address and port set here). */
static ep_http_server_t *start(ep_http_server_opts_t o)
{
    ep_http_server_t *s;
    char err[256];

    o.name = "test";
    o.bind_addr = "127.0.0.1";
    o.port = 0;
    if (o.threads == 0) {
        o.threads = 1;
    }
    if (o.max_body == 0) {
        o.max_body = 1024;
    }
    EP_ASSERT_EQ(ep_http_server_create(&o, &s), 0);
    ep_http_server_route(s, EP_HTTP_POST, "/echo", on_echo, NULL);
    ep_http_server_route(s, EP_HTTP_GET, "/sleep", on_sleep, NULL);
    ep_http_server_route(s, EP_HTTP_GET, "/big", on_big, NULL);
    ep_http_server_route_ex(s, EP_HTTP_POST, "/upload", on_echo, NULL, 64 << 20);
    ep_http_server_route_ex(s, EP_HTTP_POST, "/count", on_count, NULL, 64 << 20);
    EP_ASSERT_EQ(ep_http_server_start(s, err, sizeof(err)), 0);
    return s;
}

/* A connection from src (a 127.x.y.z address) to the server; rcvbuf > 0 sets SO_RCVBUF. */
static int connect_from(int port, const char *src, int rcvbuf)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    struct sockaddr_in me = {.sin_family = AF_INET};
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    EP_ASSERT(fd >= 0);
    if (rcvbuf > 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    }
    inet_pton(AF_INET, src, &me.sin_addr);
    EP_ASSERT_EQ(bind(fd, (struct sockaddr *)&me, sizeof(me)), 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    EP_ASSERT_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static int conn(int port)
{
    return connect_from(port, "127.0.0.1", 0);
}

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        EP_ASSERT(w > 0);
        p += w;
        n -= (size_t)w;
    }
}

static void send_str(int fd, const char *s)
{
    send_all(fd, s, strlen(s));
}

/*
 * Reads what arrives within ms milliseconds of quiet, up to the server's
 * close. Returns 1 when the server closed (EOF or reset), 0 when it stayed open.
 */
static int read_some(int fd, ep_buf_t *out, int ms)
{
    for (;;) {
        char tmp[65536];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        ssize_t n;
        if (poll(&p, 1, ms) <= 0) {
            ep_buf_putc(out, '\0');
            out->len--;
            return 0;
        }
        n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0) {
            ep_buf_putc(out, '\0');
            out->len--;
            return 1;
        }
        ep_buf_append(out, tmp, (size_t)n);
    }
}

/* Reads one answer with a body of clen bytes; 1 when complete. Waits up to 30 s. */
static int read_answer(int fd, ep_buf_t *out, size_t clen)
{
    int64_t deadline = ep_time_mono_ns() + 30 * SEC;

    ep_buf_reset(out);
    while (ep_time_mono_ns() < deadline) {
        char tmp[4096];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        const char *end;
        ssize_t n;
        if (poll(&p, 1, 100) <= 0) {
            continue;
        }
        n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0) {
            return 0;
        }
        ep_buf_append(out, tmp, (size_t)n);
        end = strstr(out->data, "\r\n\r\n");
        if (end && (size_t)(end + 4 - out->data) + clen <= out->len) {
            return 1;
        }
    }
    return 0;
}

static void stats(ep_http_server_t *s, ep_http_server_stats_t *st)
{
    ep_http_server_stats(s, st);
}

/*
 * Slowloris: a head trickled a byte at a time (well inside the idle timeout
 * each) gets 408 with a JSON error once HTTP_HEADER_TIMEOUT has passed since
 * its first byte, and the connection closes.
 */
static void test_trickled_head_gets_408(void)
{
    ep_http_server_t *s =
        start((ep_http_server_opts_t){.header_timeout_ms = 1000, .idle_timeout_ms = 30000});
    static const char head[] = "GET /echo HTTP/1.1\r\nHost: t\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaa";
    int fd = conn(ep_http_server_port(s)), closed = 0;
    int64_t deadline = ep_time_mono_ns() + 10 * SEC;
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;

    for (size_t i = 0; i < sizeof(head) - 1 && ep_time_mono_ns() < deadline && !closed; i++) {
        if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1) {
            break; /* closed under us: the answer is read below */
        }
        closed = read_some(fd, &out, 200);
    }
    if (!closed) {
        closed = read_some(fd, &out, 10000);
    }
    EP_ASSERT(closed);
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 408 ")) == 0);
    EP_ASSERT(strstr(out.data, "Content-Type: application/json\r\n") != NULL);
    EP_ASSERT(strstr(out.data, "Connection: close\r\n") != NULL);
    EP_ASSERT(strstr(out.data, "{\"error\":\"") != NULL && strstr(out.data, "HTTP_HEADER_TIMEOUT"));
    stats(s, &st);
    EP_ASSERT_EQ(st.closed_header_timeout, 1);
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * A body that trickles below HTTP_BODY_MIN_RATE gets 408 once its deadline
 * (HTTP_BODY_TIMEOUT plus 1/rate s per byte) passes, though each byte came
 * well inside the idle timeout; meanwhile the server holds about what arrived,
 * not the 32 MiB the head announced.
 */
static void test_trickled_body_hits_min_rate(void)
{
    ep_http_server_t *s = start((ep_http_server_opts_t){
        .body_timeout_ms = 1000, .body_min_rate = 1000, .idle_timeout_ms = 30000});
    int fd = conn(ep_http_server_port(s)), closed = 0;
    int64_t deadline = ep_time_mono_ns() + 15 * SEC;
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;
    char piece[100];
    int64_t max_held = 0;

    memset(piece, 'a', sizeof(piece));
    send_str(fd, "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 33554432\r\n\r\n");
    /* 100 bytes every 200 ms: 500 bytes/s, half the minimum. */
    while (!closed && ep_time_mono_ns() < deadline) {
        if (send(fd, piece, sizeof(piece), MSG_NOSIGNAL) != (ssize_t)sizeof(piece)) {
            break;
        }
        closed = read_some(fd, &out, 200);
        stats(s, &st);
        max_held = st.memory_held > max_held ? st.memory_held : max_held;
    }
    if (!closed) {
        closed = read_some(fd, &out, 10000);
    }
    EP_ASSERT(closed);
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 408 ")) == 0);
    EP_ASSERT(strstr(out.data, "HTTP_BODY_MIN_RATE") != NULL);
    stats(s, &st);
    EP_ASSERT_EQ(st.closed_body_timeout, 1);
    /* At most a few KiB arrived: buffers of 16-32 KiB plus the connection, far from 32 MiB. */
    EP_ASSERT(max_held > 0 && max_held < 128 * 1024);
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/* A keep-alive connection with nothing sent is closed, without an answer, after the idle time. */
static void test_idle_connection_closed_silently(void)
{
    ep_http_server_t *s = start((ep_http_server_opts_t){.idle_timeout_ms = 1000});
    int fd = conn(ep_http_server_port(s));
    int64_t t0 = ep_time_mono_ns();
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;

    EP_ASSERT(read_some(fd, &out, 10000));
    EP_ASSERT_EQ(out.len, 0);
    EP_ASSERT(ep_time_mono_ns() - t0 >= INT64_C(900000000));
    stats(s, &st);
    EP_ASSERT_EQ(st.closed_idle, 1);
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * The idle time counts from the end of the last answer: a handler slower than
 * the idle timeout does not get its keep-alive connection closed right after
 * its answer (issue 14, finding 8).
 */
static void test_idle_clock_starts_after_a_slow_handler(void)
{
    ep_http_server_t *s = start((ep_http_server_opts_t){.idle_timeout_ms = 2000});
    int fd = conn(ep_http_server_port(s));
    ep_buf_t out = EP_BUF_INIT;

    send_str(fd, "GET /sleep HTTP/1.1\r\nHost: t\r\n\r\n");
    EP_ASSERT(read_answer(fd, &out, 1));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    ep_time_sleep_ms(1000); /* half the idle timeout, measured from the answer */
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok");
    EP_ASSERT(read_answer(fd, &out, 2));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    EP_ASSERT(strstr(out.data, "\r\n\r\nok") != NULL);
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/* HTTP/1.0 with Transfer-Encoding: answered with Connection: close, then closed (RFC 9112 6.1). */
static void test_http10_chunked_closes(void)
{
    ep_http_server_t *s = start((ep_http_server_opts_t){.idle_timeout_ms = 30000});
    int fd = conn(ep_http_server_port(s));
    ep_buf_t out = EP_BUF_INIT;

    send_str(fd,
             "POST /echo HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n0\r\n\r\n");
    EP_ASSERT(read_some(fd, &out, 10000)); /* closed long before the 30 s idle timeout */
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    EP_ASSERT(strstr(out.data, "Connection: close\r\n") != NULL);
    EP_ASSERT(strstr(out.data, "keep-alive") == NULL);
    EP_ASSERT(strstr(out.data, "\r\n\r\nabc") != NULL);
    close(fd);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * At the connection cap a new connection is served: the connection idle the
 * longest is closed to make room, not the newcomer.
 */
static void test_cap_evicts_the_longest_idle(void)
{
    enum { CAP = 4 };
    ep_http_server_t *s =
        start((ep_http_server_opts_t){.max_connections = CAP, .idle_timeout_ms = 60000});
    int port = ep_http_server_port(s), fds[CAP], fresh;
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;
    static const char echo[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx";

    for (int i = 0; i < CAP; i++) {
        fds[i] = conn(port);
        send_str(fds[i], echo);
        EP_ASSERT(read_answer(fds[i], &out, 1));
        ep_time_sleep_ms(20); /* fds[0] idle the longest */
    }
    fresh = conn(port);
    send_str(fresh, echo);
    EP_ASSERT(read_answer(fresh, &out, 1));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    ep_buf_reset(&out);
    EP_ASSERT(read_some(fds[0], &out, 10000)); /* closed, with nothing to read */
    EP_ASSERT_EQ(out.len, 0);
    for (int i = 1; i < CAP; i++) { /* the others still work */
        send_str(fds[i], echo);
        EP_ASSERT(read_answer(fds[i], &out, 1));
        EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    }
    stats(s, &st);
    EP_ASSERT_EQ(st.evicted, 1);
    EP_ASSERT_EQ(st.connections, CAP);
    for (int i = 0; i < CAP; i++) {
        close(fds[i]);
    }
    close(fresh);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * Past HTTP_MAX_CONNECTIONS_PER_CLIENT a new connection from the same address
 * gets a 503 and is closed; other addresses are served, and a closed
 * connection makes room again.
 */
static void test_per_client_limit(void)
{
    ep_http_server_t *s = start((ep_http_server_opts_t){
        .max_conns_per_client = 2, .threads = 2, .retry_after_s = 3, .idle_timeout_ms = 60000});
    int port = ep_http_server_port(s), a, b, c, other;
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;
    static const char echo[] = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx";

    a = conn(port);
    b = conn(port);
    send_str(a, echo);
    EP_ASSERT(read_answer(a, &out, 1));
    send_str(b, echo);
    EP_ASSERT(read_answer(b, &out, 1));
    c = conn(port);
    ep_buf_reset(&out);
    EP_ASSERT(read_some(c, &out, 10000));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 503 ")) == 0);
    EP_ASSERT(strstr(out.data, "Retry-After: 3\r\n") != NULL);
    EP_ASSERT(strstr(out.data, "HTTP_MAX_CONNECTIONS_PER_CLIENT") != NULL);
    close(c);
    other = connect_from(port, "127.0.0.2", 0);
    send_str(other, echo);
    EP_ASSERT(read_answer(other, &out, 1));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    close(a);
    /* The server counts a's close when it sees it: retry until a new connection is served. */
    for (int tries = 0;; tries++) {
        c = conn(port);
        send(c, echo, sizeof(echo) - 1, MSG_NOSIGNAL);
        if (read_answer(c, &out, 1) && strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0) {
            break;
        }
        close(c);
        EP_ASSERT(tries < 100);
        ep_time_sleep_ms(100);
    }
    stats(s, &st);
    EP_ASSERT(st.refused_per_client >= 1);
    close(b);
    close(c);
    close(other);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * Answers that are never read are bounded by the memory budget: past the hard
 * limit (a quarter above it) the largest unread ones are closed, the server
 * holds no more than that, and a normal request is still served.
 */
static void test_unread_answers_are_shed(void)
{
    enum { N = 8 };
    ep_http_server_t *s = start((ep_http_server_opts_t){
        .memory_limit = 16 << 20, .idle_timeout_ms = 60000, .send_timeout_ms = 60000});
    int port = ep_http_server_port(s), fds[N], fd, cut = 0;
    int64_t deadline = ep_time_mono_ns() + 30 * SEC;
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;

    atomic_store(&big_answered, 0);
    for (int i = 0; i < N; i++) {
        fds[i] = connect_from(port, "127.0.0.3", 4096);
        send_str(fds[i], "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    while (atomic_load(&big_answered) < N && ep_time_mono_ns() < deadline) {
        ep_time_sleep_ms(10);
    }
    EP_ASSERT_EQ(atomic_load(&big_answered), N);
    /* A normal client is served meanwhile. */
    fd = conn(port);
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    EP_ASSERT(read_answer(fd, &out, 2));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    close(fd);
    stats(s, &st);
    EP_ASSERT(st.memory_held <= 20 << 20); /* the hard limit: a quarter above the budget */
    EP_ASSERT(st.shed_memory >= 1);
    /* Some of the unread answers were cut short by the close. */
    for (int i = 0; i < N; i++) {
        ep_buf_reset(&out);
        if (read_some(fds[i], &out, 1000) && out.len < BIG_ANSWER) {
            cut++; /* closed before the whole answer (served ones stay open) */
        }
        close(fds[i]);
    }
    EP_ASSERT(cut >= 1);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * Two unread answers of BIG_ANSWER take a server with a 16 MiB budget over
 * its soft limit but not its hard one (20 MiB): none is closed for that. The
 * big answers' connections (a small receive buffer each) come back in fds.
 */
static void fill_with_unread_answers(ep_http_server_t *s, int fds[2])
{
    int64_t deadline = ep_time_mono_ns() + 30 * SEC;
    ep_http_server_stats_t st;

    atomic_store(&big_answered, 0);
    for (int i = 0; i < 2; i++) {
        fds[i] = connect_from(ep_http_server_port(s), "127.0.0.3", 4096);
        send_str(fds[i], "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    }
    do {
        ep_time_sleep_ms(10);
        stats(s, &st);
    } while ((atomic_load(&big_answered) < 2 || st.memory_held <= 16 << 20) &&
             ep_time_mono_ns() < deadline);
    EP_ASSERT_EQ(atomic_load(&big_answered), 2);
    EP_ASSERT(st.memory_held > 16 << 20);
}

/*
 * Over the soft memory budget a request whose body may be large (a big
 * Content-Length, or any Content-Encoding: a few gzip bytes may inflate to
 * megabytes) gets 503 with Retry-After at once, before its body is sent,
 * while a small request on another connection is still served; the unread
 * answers are not closed under the hard limit.
 */
static void test_over_soft_limit_refuses_large_requests(void)
{
    ep_http_server_t *s = start((ep_http_server_opts_t){.memory_limit = 16 << 20,
                                                        .retry_after_s = 2,
                                                        .idle_timeout_ms = 60000,
                                                        .send_timeout_ms = 60000});
    int port = ep_http_server_port(s), big[2], fd;
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;
    static const char *const large[] = {
        "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n",
        "POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n",
    };

    fill_with_unread_answers(s, big);
    for (size_t i = 0; i < sizeof(large) / sizeof(large[0]); i++) {
        fd = conn(port);
        send_str(fd, large[i]); /* the head only: the answer must not wait for the body */
        ep_buf_reset(&out);
        EP_ASSERT(read_some(fd, &out, 10000)); /* answered and closed */
        EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 503 ")) == 0);
        EP_ASSERT(strstr(out.data, "Retry-After: 2\r\n") != NULL);
        EP_ASSERT(strstr(out.data, "{\"error\":\"") != NULL);
        EP_ASSERT(strstr(out.data, "HTTP_MEMORY_LIMIT") != NULL);
        close(fd);
    }
    fd = conn(port);
    send_str(fd, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    EP_ASSERT(read_answer(fd, &out, 2));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    EP_ASSERT(strstr(out.data, "\r\n\r\nhi") != NULL);
    close(fd);
    stats(s, &st);
    EP_ASSERT_EQ(st.refused_memory, 3);
    EP_ASSERT_EQ(st.shed_memory, 0);
    EP_ASSERT(st.memory_held > 16 << 20 && st.memory_held <= 20 << 20);
    close(big[0]);
    close(big[1]);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/*
 * A large body being received when the server goes over its soft memory
 * budget stops being read: the client's sends block and the server's held
 * bytes stay put. Once the unread answers that filled the budget go away,
 * the body is read on and answered.
 */
static void test_large_body_paused_then_resumed(void)
{
    enum { BODY = 15 << 20, FIRST = 256 << 10, PIECE = 64 << 10 };
    ep_http_server_t *s = start((ep_http_server_opts_t){.memory_limit = 16 << 20,
                                                        .idle_timeout_ms = 60000,
                                                        .send_timeout_ms = 60000,
                                                        .body_timeout_ms = 60000});
    int up = conn(ep_http_server_port(s)), big[2], sndbuf = 64 << 10, stalls = 0;
    int64_t deadline = ep_time_mono_ns() + 30 * SEC, held;
    size_t sent = 0;
    char *body = malloc(BODY);
    char expect[32];
    ep_buf_t out = EP_BUF_INIT;
    ep_http_server_stats_t st;

    EP_ASSERT(body != NULL);
    memset(body, 'b', BODY);
    setsockopt(up, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    send_str(up, "POST /count HTTP/1.1\r\nHost: t\r\nContent-Length: 15728640\r\n\r\n");
    send_all(up, body, FIRST);
    sent = FIRST;
    do { /* the server reads while under its budget */
        ep_time_sleep_ms(10);
        stats(s, &st);
    } while (st.memory_held < FIRST && ep_time_mono_ns() < deadline);
    EP_ASSERT(st.memory_held >= FIRST);
    fill_with_unread_answers(s, big);
    /* Send on until the server has taken nothing for a second. */
    fcntl(up, F_SETFL, fcntl(up, F_GETFL) | O_NONBLOCK);
    while (stalls < 5 && sent < BODY && ep_time_mono_ns() < deadline) {
        size_t n = BODY - sent < PIECE ? BODY - sent : PIECE;
        ssize_t w = send(up, body + sent, n, MSG_NOSIGNAL);
        if (w > 0) {
            sent += (size_t)w;
            stalls = 0;
            continue;
        }
        EP_ASSERT(w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        struct pollfd p = {.fd = up, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0) {
            stalls++;
        }
    }
    EP_ASSERT(sent < BODY); /* the server stopped reading */
    stats(s, &st);
    held = st.memory_held;
    EP_ASSERT(st.paused_memory >= 1);
    EP_ASSERT(held <= 20 << 20);
    ep_time_sleep_ms(500);
    stats(s, &st);
    EP_ASSERT(st.memory_held <= held); /* nothing more was read */
    EP_ASSERT_EQ(st.shed_memory, 0);
    /* The unread answers go: the body is read on and answered. */
    close(big[0]);
    close(big[1]);
    fcntl(up, F_SETFL, fcntl(up, F_GETFL) & ~O_NONBLOCK);
    send_all(up, body + sent, BODY - sent);
    snprintf(expect, sizeof(expect), "\r\n\r\n%d", BODY);
    EP_ASSERT(read_answer(up, &out, strlen(expect) - 4));
    EP_ASSERT(strncmp(out.data, EP_STRLIT("HTTP/1.1 200 ")) == 0);
    EP_ASSERT(strstr(out.data, expect) != NULL);
    close(up);
    free(body);
    ep_buf_close(&out);
    ep_http_server_destroy(s);
}

/* An answer that makes no write progress for HTTP_SEND_TIMEOUT: the connection is closed. */
static void test_send_timeout(void)
{
    ep_http_server_t *s =
        start((ep_http_server_opts_t){.send_timeout_ms = 1000, .idle_timeout_ms = 60000});
    int fd = connect_from(ep_http_server_port(s), "127.0.0.1", 4096);
    int64_t deadline = ep_time_mono_ns() + 20 * SEC;
    ep_http_server_stats_t st;

    send_str(fd, "GET /big HTTP/1.1\r\nHost: t\r\n\r\n");
    do {
        ep_time_sleep_ms(50);
        stats(s, &st);
    } while (st.closed_send_timeout == 0 && ep_time_mono_ns() < deadline);
    EP_ASSERT_EQ(st.closed_send_timeout, 1);
    EP_ASSERT_EQ(st.connections, 0);
    close(fd);
    ep_http_server_destroy(s);
}

/*
 * Heavy work is spread over rounds: handlers that spin longer than the loop's
 * heavy budget, one per connection, all ready in the same round behind a
 * request that holds the loop (the gate). Ready in the same round, the heavy
 * requests came first and a small request last; without the budget the small
 * one ran after all of them. With it, it runs after at most one.
 */
static atomic_int gate_open, gate_running, heavy_seq, small_seq;

static void spin_ms(int ms)
{
    int64_t end = ep_time_mono_ns() + (int64_t)ms * 1000000;

    while (ep_time_mono_ns() < end) {
    }
}

static void on_heavy(void *arg, ep_http_req_t *req)
{
    (void)arg;
    if (strcmp(ep_http_req_path(req), "/gate") == 0) {
        atomic_store(&gate_running, 1);
        while (!atomic_load(&gate_open)) {
            ep_time_sleep_ms(1);
        }
    } else {
        spin_ms(30); /* more than HEAVY_ROUND_NS */
    }
    atomic_fetch_add(&heavy_seq, 1);
    ep_http_respond(req, 200, "text/plain", "h", 1);
}

static void on_small(void *arg, ep_http_req_t *req)
{
    (void)arg;
    atomic_store(&small_seq, atomic_fetch_add(&heavy_seq, 1) + 1);
    ep_http_respond(req, 200, "text/plain", "s", 1);
}

static void test_heavy_requests_spread_over_rounds(void)
{
    enum { N_HEAVY = 5 };
    ep_http_server_opts_t o = {.idle_timeout_ms = 60000, .max_body = 1024};
    ep_http_server_t *s;
    const char *heavy = "POST /heavy HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n"
                        "Content-Length: 1\r\n\r\nx";
    int gate, fds[N_HEAVY], small, port;
    int64_t deadline = ep_time_mono_ns() + 30 * SEC;
    ep_http_server_stats_t st;
    ep_buf_t b = EP_BUF_INIT;
    char err[256];

    atomic_store(&gate_open, 0);
    atomic_store(&gate_running, 0);
    atomic_store(&heavy_seq, 0);
    atomic_store(&small_seq, 0);
    o.name = "test";
    o.bind_addr = "127.0.0.1";
    o.threads = 1;
    EP_ASSERT_EQ(ep_http_server_create(&o, &s), 0);
    ep_http_server_route(s, EP_HTTP_POST, "/gate", on_heavy, NULL);
    ep_http_server_route(s, EP_HTTP_POST, "/heavy", on_heavy, NULL);
    ep_http_server_route(s, EP_HTTP_GET, "/small", on_small, NULL);
    EP_ASSERT_EQ(ep_http_server_start(s, err, sizeof(err)), 0);
    port = ep_http_server_port(s);
    gate = conn(port);
    for (int i = 0; i < N_HEAVY; i++) {
        fds[i] = conn(port);
    }
    small = conn(port);
    do { /* every connection accepted before the gate holds the loop */
        ep_time_sleep_ms(10);
        stats(s, &st);
    } while (st.connections < N_HEAVY + 2 && ep_time_mono_ns() < deadline);
    EP_ASSERT_EQ(st.connections, N_HEAVY + 2);
    send_str(gate, "POST /gate HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\n"
                   "Content-Length: 1\r\n\r\nx");
    while (!atomic_load(&gate_running) && ep_time_mono_ns() < deadline) {
        ep_time_sleep_ms(1);
    }
    EP_ASSERT(atomic_load(&gate_running));
    for (int i = 0; i < N_HEAVY; i++) {
        send_str(fds[i], heavy);
    }
    send_str(small, "GET /small HTTP/1.1\r\nHost: t\r\n\r\n");
    ep_time_sleep_ms(50); /* into the sockets before the loop's next epoll_wait */
    atomic_store(&gate_open, 1);
    EP_ASSERT(read_answer(small, &b, 1));
    for (int i = 0; i < N_HEAVY; i++) {
        EP_ASSERT(read_answer(fds[i], &b, 1));
        EP_ASSERT(strstr(b.data, "200 OK") != NULL);
    }
    EP_ASSERT(read_answer(gate, &b, 1));
    /* The gate is 1; the small request ran at most one heavy one after it. */
    EP_ASSERT(atomic_load(&small_seq) <= 3);
    stats(s, &st);
    EP_ASSERT(st.deferred_heavy >= N_HEAVY - 2);
    for (int i = 0; i < N_HEAVY; i++) {
        close(fds[i]);
    }
    close(gate);
    close(small);
    ep_buf_close(&b);
    ep_http_server_destroy(s);
}

EP_TEST_LIST = {
    EP_TEST(test_trickled_head_gets_408),
    EP_TEST(test_trickled_body_hits_min_rate),
    EP_TEST(test_idle_connection_closed_silently),
    EP_TEST(test_idle_clock_starts_after_a_slow_handler),
    EP_TEST(test_http10_chunked_closes),
    EP_TEST(test_cap_evicts_the_longest_idle),
    EP_TEST(test_per_client_limit),
    EP_TEST(test_unread_answers_are_shed),
    EP_TEST(test_send_timeout),
    EP_TEST(test_over_soft_limit_refuses_large_requests),
    EP_TEST(test_large_body_paused_then_resumed),
    EP_TEST(test_heavy_requests_spread_over_rounds),
    EP_TEST_END,
};
EP_TEST_MAIN()
