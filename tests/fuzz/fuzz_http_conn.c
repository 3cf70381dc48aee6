/*
 * Fuzz target: the HTTP server's connection state machine. One server (one
 * loop thread, a few routes) is started on 127.0.0.1 on the first input and
 * kept for all of them. Each input is a byte stream a client sends on one
 * connection, cut into pieces:
 *
 *   byte 0        number of cuts k (low 4 bits)
 *   2k bytes      cut positions (little-endian, modulo the stream length + 1)
 *   the rest      the stream
 *
 * Each piece is written, then the fuzzer waits until the server has read it
 * (the kernel, asked by address through sock_diag, says the server's end has
 * nothing unread), so that the server's reads see the pieces as cut, the same
 * on every run. Only the public server API is used; the server's fds are
 * never touched. Then the client shuts down its sending side and reads everything
 * until the server closes.
 *
 * The answers are checked against a model: the stream is read sequentially
 * with ep_http_parse (the server's own parser; what is under test here is the
 * connection handling: buffering, pipelining, bodies across reads, refusals,
 * answers from another thread, partial writes). Every answer must have a
 * well-formed status line and headers, and Content-Length with exactly that
 * many bytes (none for HEAD) or a valid chunked body; answer i must be the
 * answer to request i (the handlers echo what identifies the request); a
 * refusal that leaves the framing unknown must say Connection: close and be
 * the last bytes; nothing may follow a Connection: close answer; there are
 * exactly as many answers as complete requests up to the first close; and the
 * server must close after the client's end of stream; a 100 Continue comes
 * only before the answer to a request that asked for it. Any violation, or no
 * close within a generous time, aborts.
 *
 * Run (libFuzzer's own leak check re-runs inputs whenever the server thread
 * frees a connection after the input returned; the leak check at exit stays):
 *   build-fuzz/fuzz_http_conn -max_len=8192 -detect_leaks=0 CORPUS_DIR
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "http/ep_http_parse.h"
#include "http/ep_http_server.h"
#include "base/ep_mem.h"

#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER    1024  /* small, so that 431 is within reach of short inputs */
#define MAX_BODY      65536 /* the server's body limit */
#define SMALL_BODY    16    /* /small's body limit */
#define BIG_LEN       40000 /* /big's answer: more than the client's socket buffer takes */
#define CLIENT_RCVBUF 4096  /* so that the server's writes of larger answers stop half-way */
#define MAX_CUTS      15
#define MAX_REQS      2048
#define DEADLINE_NS   INT64_C(30000000000) /* a connection not closed by then hangs */
#define ANSWER_LIMIT  (64u << 20)

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_http_conn: " __VA_ARGS__);                                           \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

#define CHECK(c, ...)                                                                              \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_http_conn: %s:%d: %s: ", __FILE__, __LINE__, #c);                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the server ---- */

static ep_http_server_t *srv;
static int srv_port;
static char big[BIG_LEN];

/* Answers to /async, given by a thread of their own (a connection waits in between). */
static pthread_t async_tid;
static pthread_mutex_t async_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t async_cv = PTHREAD_COND_INITIALIZER;
static ep_http_req_t *async_q[64];
static int async_n, async_stop;

static uint32_t fnv(const char *p, size_t n)
{
    uint32_t h = 2166136261u;

    for (size_t i = 0; i < n; i++) {
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    }
    return h;
}

/* What the echoing handlers answer: enough to tell which request it was. */
static void describe(ep_buf_t *b, const char *method, const char *path, const char *body,
                     size_t len)
{
    char tail[64];

    ep_buf_puts(b, method);
    ep_buf_putc(b, ' ');
    ep_buf_puts(b, path);
    snprintf(tail, sizeof(tail), " %zu %08x\n", len, fnv(body, len));
    ep_buf_puts(b, tail);
}

static void on_echo(void *arg, ep_http_req_t *r)
{
    ep_buf_t b = EP_BUF_INIT;

    describe(&b, ep_http_req_method(r), ep_http_req_path(r), ep_http_req_body(r),
             ep_http_req_body_len(r));
    ep_http_respond(r, 200, "text/plain", b.data, b.len);
    ep_buf_close(&b);
}

static void on_big(void *arg, ep_http_req_t *r)
{
    ep_http_respond(r, 200, "application/octet-stream", big, sizeof(big));
}

static void on_empty(void *arg, ep_http_req_t *r)
{
    ep_http_respond(r, 204, NULL, NULL, 0);
}

static void on_err(void *arg, ep_http_req_t *r)
{
    ep_http_respond_error(r, 503, "busy", NULL);
}

static void on_async(void *arg, ep_http_req_t *r)
{
    pthread_mutex_lock(&async_mu);
    if (async_n == (int)(sizeof(async_q) / sizeof(async_q[0]))) {
        FAIL("more than 64 /async requests waiting");
    }
    async_q[async_n++] = r;
    pthread_cond_signal(&async_cv);
    pthread_mutex_unlock(&async_mu);
}

static void *async_main(void *arg)
{
    pthread_mutex_lock(&async_mu);
    for (;;) {
        while (async_n == 0 && !async_stop) {
            pthread_cond_wait(&async_cv, &async_mu);
        }
        if (async_n == 0) {
            break;
        }
        ep_http_req_t *r = async_q[0];
        memmove(async_q, async_q + 1, (size_t)(--async_n) * sizeof(async_q[0]));
        pthread_mutex_unlock(&async_mu);
        on_echo(NULL, r);
        pthread_mutex_lock(&async_mu);
    }
    pthread_mutex_unlock(&async_mu);
    return NULL;
}

/* The routes, as the model sees them. */
typedef struct route_s {
    const char *path;
    unsigned methods; /* GET implies HEAD */
    size_t max_body;
    int status;
    int kind; /* K_ECHO, K_BIG, K_ERR */
    ep_http_handler_cb cb;
} route_t;

enum { K_ECHO, K_BIG, K_ERR, K_EMPTY };

static const route_t routes[] = {
    {"/", EP_HTTP_GET | EP_HTTP_HEAD, MAX_BODY, 200, K_ECHO, on_echo},
    {"/echo", EP_HTTP_POST | EP_HTTP_PUT, MAX_BODY, 200, K_ECHO, on_echo},
    {"/small", EP_HTTP_POST, SMALL_BODY, 200, K_ECHO, on_echo},
    {"/big", EP_HTTP_GET | EP_HTTP_HEAD, MAX_BODY, 200, K_BIG, on_big},
    {"/empty", EP_HTTP_GET | EP_HTTP_HEAD | EP_HTTP_POST | EP_HTTP_DELETE, MAX_BODY, 204, K_EMPTY,
     on_empty},
    {"/async", EP_HTTP_GET | EP_HTTP_HEAD | EP_HTTP_POST, MAX_BODY, 200, K_ECHO, on_async},
    {"/err", EP_HTTP_GET | EP_HTTP_HEAD, MAX_BODY, 503, K_ERR, on_err},
};
#define N_ROUTES (sizeof(routes) / sizeof(routes[0]))

static void stop_server(void)
{
    ep_http_server_destroy(srv);
    srv = NULL;
    pthread_mutex_lock(&async_mu);
    async_stop = 1;
    pthread_cond_signal(&async_cv);
    pthread_mutex_unlock(&async_mu);
    pthread_join(async_tid, NULL);
}

static void start_server(void)
{
    ep_http_server_opts_t o;
    char err[256];

    memset(&o, 0, sizeof(o));
    o.name = "fuzz";
    o.bind_addr = "127.0.0.1";
    o.threads = 1;
    o.max_body = MAX_BODY;
    o.max_header = MAX_HEADER;
    o.idle_timeout_ms = 3600000;
    o.max_connections = 256;
    o.retry_after_s = 1;
    signal(SIGPIPE, SIG_IGN);
    for (size_t i = 0; i < sizeof(big); i++) {
        big[i] = (char)('a' + i % 23);
    }
    if (ep_http_server_create(&o, &srv) != 0) {
        FAIL("cannot create the server");
    }
    for (size_t i = 0; i < N_ROUTES; i++) {
        unsigned m = routes[i].methods & ~(unsigned)EP_HTTP_HEAD;
        ep_http_server_route_ex(srv, m, routes[i].path, routes[i].cb, NULL,
                                routes[i].max_body == MAX_BODY ? 0 : routes[i].max_body);
    }
    if (ep_http_server_start(srv, err, sizeof(err)) != 0) {
        FAIL("cannot start the server: %s", err);
    }
    srv_port = ep_http_server_port(srv);
    if (pthread_create(&async_tid, NULL, async_main, NULL) != 0) {
        FAIL("cannot start the /async thread");
    }
    atexit(stop_server);
}

/* ---- the model: what the server must answer to the whole stream ---- */

typedef struct exp_s {
    int status;
    int alt_status;            /* a refusal with this status (and a close) is right too */
    int must_close;            /* Connection: close, and nothing after */
    int may_close;             /* closing after it is right too (HTTP/1.0 with a chunked body) */
    int no_body;               /* HEAD: Content-Length without the bytes */
    int cont;                  /* a 100 Continue may come first */
    int pending;               /* the stream ends inside its body: no final answer */
    int kind;                  /* -1: a refusal (body not checked) */
    size_t want_off, want_len; /* K_ECHO: the expected body in model.want */
} exp_t;

typedef struct model_s {
    exp_t e[MAX_REQS];
    int n;
    ep_buf_t want;
} model_t;

static unsigned method_bit(const char *m)
{
    static const struct {
        const char *name;
        unsigned bit;
    } methods[] = {{"GET", EP_HTTP_GET}, {"POST", EP_HTTP_POST},     {"HEAD", EP_HTTP_HEAD},
                   {"PUT", EP_HTTP_PUT}, {"DELETE", EP_HTTP_DELETE}, {"OPTIONS", EP_HTTP_OPTIONS}};

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strcmp(m, methods[i].name) == 0) {
            return methods[i].bit;
        }
    }
    return 0;
}

static exp_t *model_add(model_t *m)
{
    exp_t *e = &m->e[m->n++];

    memset(e, 0, sizeof(*e));
    e->kind = -1;
    return e;
}

static void model_run(model_t *m, const char *s, size_t n)
{
    size_t pos = 0;
    char *copy = NULL;
    ep_buf_t body = EP_BUF_INIT;

    m->n = 0;
    ep_buf_reset(&m->want);
    while (m->n < MAX_REQS) {
        size_t skip = 0, hl = ep_http_head_end(s + pos, n - pos, &skip);
        ep_http_head_t h;
        const char *err = NULL;
        const route_t *rt = NULL;
        const char *origin;
        unsigned mb;
        exp_t *e;
        int rc, foreign;

        if (hl == 0) {
            if (n - pos > MAX_HEADER + 2) {
                e = model_add(m); /* no end of the head within the limit */
                e->status = 431;
                e->must_close = 1;
            }
            break;
        }
        e = model_add(m);
        if (hl > MAX_HEADER) {
            e->status = 431;
            e->must_close = 1;
            break;
        }
        if (skip + hl > MAX_HEADER + 3) {
            /* Empty lines first: the server may give up before the head's end arrives. */
            e->alt_status = 431;
        }
        copy = ep_realloc(copy, hl + 1);
        memcpy(copy, s + pos + skip, hl);
        copy[hl] = '\0';
        pos += skip + hl;
        rc = ep_http_parse_head(copy, hl, &h, &err);
        if (rc != 0) {
            e->status = rc;
            e->must_close = 1;
            break;
        }
        mb = method_bit(h.method);
        for (size_t i = 0; i < N_ROUTES; i++) {
            if (strcmp(routes[i].path, h.path) == 0) {
                rt = &routes[i];
            }
        }
        e->no_body = mb == EP_HTTP_HEAD;
        e->must_close = !h.keep_alive;
        /* No CORS_ALLOWED_ORIGINS: a page of another origin, or any preflight, gets 403. */
        origin = ep_http_head_field(&h, "Origin");
        foreign =
            origin != NULL && ((mb == EP_HTTP_OPTIONS &&
                                ep_http_head_field(&h, "Access-Control-Request-Method") != NULL) ||
                               !ep_http_cors_same_origin(origin, ep_http_head_field(&h, "Host"),
                                                         ep_http_head_field(&h, "Sec-Fetch-Site")));
        if (foreign || rt == NULL || (rt->methods & mb) == 0 ||
            (h.content_length > 0 && (uint64_t)h.content_length > rt->max_body)) {
            e->status = foreign ? 403 : rt == NULL ? 404 : (rt->methods & mb) == 0 ? 405 : 413;
            if (h.content_length > 0 || h.chunked) {
                e->must_close = 1; /* the body stays unread */
                break;
            }
            if (e->must_close) {
                break;
            }
            continue;
        }
        e->cont = h.expect_continue && (h.chunked || h.content_length > 0);
        if (h.chunked && h.minor == 0) {
            /* RFC 9112 6.1: the framing is faulty; close after it, or refuse it. */
            e->may_close = 1;
            e->alt_status = 400;
        }
        ep_buf_reset(&body);
        if (h.chunked) {
            ep_http_chunked_t c;
            int done = 0;
            ssize_t r;

            ep_http_chunked_init(&c);
            r = ep_http_chunked_feed(&c, s + pos, n - pos, &body, rt->max_body, &done, &err);
            if (r < 0) {
                e->status = r == EP_E2BIG ? 413 : 400;
                e->must_close = 1;
                break;
            }
            if (!done) {
                e->pending = 1; /* the stream ends inside the body: no answer */
                break;
            }
            pos += (size_t)r;
        } else if (h.content_length > 0) {
            if ((uint64_t)(n - pos) < (uint64_t)h.content_length) {
                e->pending = 1;
                break;
            }
            ep_buf_append(&body, s + pos, (size_t)h.content_length);
            pos += (size_t)h.content_length;
        }
        e->status = rt->status;
        e->kind = rt->kind;
        if (rt->kind == K_ECHO) {
            e->want_off = m->want.len;
            describe(&m->want, h.method, h.path, body.data ? body.data : "", body.len);
            e->want_len = m->want.len - e->want_off;
        }
        if (e->must_close) {
            break;
        }
    }
    ep_free(copy);
    ep_buf_close(&body);
}

/* ---- the client ---- */

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct client_s {
    int fd;
    int local_port;
    int eof; /* the server closed (or reset) */
    ep_buf_t in;
    int64_t deadline;
} client_t;

/* Reads what has arrived, without blocking. */
static void client_drain(client_t *c)
{
    while (!c->eof) {
        ssize_t n;

        ep_buf_reserve(&c->in, 16384);
        n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len - 1, MSG_DONTWAIT);
        if (n > 0) {
            c->in.len += (size_t)n;
            c->in.data[c->in.len] = '\0';
            CHECK(c->in.len < ANSWER_LIMIT, "answers keep coming");
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            c->eof = 1;
        } else if (errno != EINTR) {
            return;
        }
    }
}

/* Waits up to us microseconds for bytes or the end from the server, and reads them. */
static void client_wait(client_t *c, long us)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = us % 1000000 * 1000};

    CHECK(now_ns() < c->deadline, "the server neither answered nor closed within %lld s",
          (long long)(DEADLINE_NS / 1000000000));
    if (ppoll(&p, 1, &ts, NULL) > 0) {
        client_drain(c);
    }
}

/*
 * Bytes the server has not read yet on this connection, or -1 when its end
 * is gone: asked of the kernel by address (sock_diag), never through the
 * server's fd. (A syscall on the server's fd from this thread holds a
 * reference to its file, so the server's close() would not take the socket
 * out of its epoll set, and epoll could report an event for a freed
 * connection: that was a false use-after-free of an earlier version.)
 */
static int server_unread(const client_t *c)
{
    static int nl = -1;
    struct {
        struct nlmsghdr h;
        struct inet_diag_req_v2 r;
    } req;
    union {
        struct nlmsghdr h;
        char b[1024];
    } ans;
    const struct inet_diag_msg *m;
    ssize_t n;

    if (nl < 0 && (nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) < 0) {
        FAIL("sock_diag: %s", strerror(errno));
    }
    memset(&req, 0, sizeof(req));
    req.h.nlmsg_len = sizeof(req);
    req.h.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.r.sdiag_family = AF_INET;
    req.r.sdiag_protocol = IPPROTO_TCP;
    req.r.idiag_states = ~0u;
    req.r.id.idiag_sport = htons((uint16_t)srv_port); /* the server's end */
    req.r.id.idiag_dport = htons((uint16_t)c->local_port);
    req.r.id.idiag_src[0] = htonl(INADDR_LOOPBACK);
    req.r.id.idiag_dst[0] = htonl(INADDR_LOOPBACK);
    req.r.id.idiag_cookie[0] = req.r.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;
    if (send(nl, &req, sizeof(req), 0) != (ssize_t)sizeof(req)) {
        FAIL("sock_diag send: %s", strerror(errno));
    }
    n = recv(nl, &ans, sizeof(ans), 0);
    if (n < (ssize_t)sizeof(struct nlmsghdr) || ans.h.nlmsg_type != SOCK_DIAG_BY_FAMILY) {
        return -1; /* NLMSG_ERROR (ENOENT): no such connection any more */
    }
    m = NLMSG_DATA(&ans.h);
    /* Not found, the lookup may answer with the listening socket; closed ones wait in TIME_WAIT. */
    if (m->idiag_state == 10 /* TCP_LISTEN */ || m->idiag_state == 6 /* TCP_TIME_WAIT */ ||
        m->idiag_state == 7 /* TCP_CLOSE */) {
        return -1;
    }
    return (int)m->idiag_rqueue;
}

/* Waits until the server has read everything sent so far, or has closed. */
static void client_settle(client_t *c)
{
    for (int spins = 0; !c->eof; spins++) {
        if (server_unread(c) <= 0) {
            return;
        }
        client_drain(c);
        if (spins < 20) {
            sched_yield();
        } else {
            client_wait(c, 50); /* the server's read shows nowhere: look again soon */
        }
    }
}

/* Sends all of p[0, n), reading answers while the socket is full. */
static void client_send(client_t *c, const char *p, size_t n)
{
    while (n > 0 && !c->eof) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = c->fd, .events = POLLIN | POLLOUT};
            CHECK(now_ns() < c->deadline, "the server reads nothing for %lld s",
                  (long long)(DEADLINE_NS / 1000000000));
            if (poll(&pf, 1, 10) > 0 && (pf.revents & POLLIN)) {
                client_drain(c);
            }
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else {
            return; /* reset: the server closed; what it answered is read below */
        }
    }
}

/* A socket with a small receive buffer (set before connect, so the window is small too). */
static int client_socket(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1, rcv = CLIENT_RCVBUF;

    if (fd < 0) {
        FAIL("socket: %s", strerror(errno));
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
    return fd;
}

static int client_open(client_t *c)
{
    struct sockaddr_in a;
    socklen_t l = sizeof(a);

    memset(c, 0, sizeof(*c));
    c->deadline = now_ns() + DEADLINE_NS;
    c->fd = client_socket();
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)srv_port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int tries = 0; connect(c->fd, (struct sockaddr *)&a, sizeof(a)) != 0; tries++) {
        if (errno == EINTR) {
            continue;
        }
        /* EADDRNOTAVAIL: ephemeral ports in TIME_WAIT; wait for some to free. */
        if (tries > 3000) {
            FAIL("connect: %s", strerror(errno));
        }
        close(c->fd);
        usleep(10000);
        c->fd = client_socket();
    }
    getsockname(c->fd, (struct sockaddr *)&a, &l);
    c->local_port = ntohs(a.sin_port);
    return 0;
}

/* ---- checking the answers ---- */

static int is_tchar(unsigned char ch)
{
    return ch > 0x20 && ch < 0x7f && strchr("\"(),/:;<=>?@[\\]{}", ch) == NULL;
}

/* One header line at p (up to CRLF). Returns its length with the CRLF, or aborts. */
static size_t header_line(const char *p, const char *end, const char **name, size_t *nlen,
                          const char **val, size_t *vlen)
{
    const char *c = p, *eol;

    while (c < end && is_tchar((unsigned char)*c)) {
        c++;
    }
    CHECK(c > p && c < end && *c == ':', "malformed header name at answer offset");
    *name = p;
    *nlen = (size_t)(c - p);
    c++;
    while (c < end && *c == ' ') {
        c++;
    }
    eol = c;
    while (eol < end && *eol != '\r' && *eol != '\n') {
        CHECK((unsigned char)*eol >= 0x20 && *eol != 0x7f, "control character in a header value");
        eol++;
    }
    CHECK(end - eol >= 2 && eol[0] == '\r' && eol[1] == '\n', "header line without CRLF");
    *val = c;
    *vlen = (size_t)(eol - c);
    return (size_t)(eol + 2 - p);
}

static int name_is(const char *n, size_t nl, const char *want)
{
    return nl == strlen(want) && strncasecmp(n, want, nl) == 0;
}

static void check_answers(const model_t *m, const client_t *c, const char *stream, size_t slen)
{
    const char *p = c->in.data ? c->in.data : "", *end = p + c->in.len;
    int ai = 0, cont_seen = 0, closed = 0;

    while (p < end) {
        const char *q = p, *te = NULL;
        int status, is_close = 0, have_cl = 0;
        size_t tel = 0;
        uint64_t cl = 0, blen;
        const exp_t *e;

        CHECK(!closed, "bytes after a Connection: close answer (%zu more)", (size_t)(end - p));
        CHECK(end - q >= 15 && memcmp(q, "HTTP/1.1 ", 9) == 0 && q[9] >= '1' && q[9] <= '5' &&
                  q[10] >= '0' && q[10] <= '9' && q[11] >= '0' && q[11] <= '9' && q[12] == ' ',
              "malformed status line, answer %d", ai);
        status = (q[9] - '0') * 100 + (q[10] - '0') * 10 + (q[11] - '0');
        q += 13;
        while (q < end && *q != '\r') {
            CHECK((unsigned char)*q >= 0x20 && *q != 0x7f, "control character in a reason");
            q++;
        }
        CHECK(end - q >= 2 && q[1] == '\n', "status line without CRLF, answer %d", ai);
        q += 2;
        while (!(end - q >= 2 && q[0] == '\r' && q[1] == '\n')) {
            const char *n, *v;
            size_t nl, vl;
            CHECK(q < end, "answer %d ends inside its headers", ai);
            q += header_line(q, end, &n, &nl, &v, &vl);
            if (name_is(n, nl, "Content-Length")) {
                CHECK(!have_cl && vl > 0 && vl <= 15, "bad or repeated Content-Length, answer %d",
                      ai);
                have_cl = 1;
                for (size_t i = 0; i < vl; i++) {
                    CHECK(v[i] >= '0' && v[i] <= '9', "Content-Length not a number, answer %d", ai);
                    cl = cl * 10 + (uint64_t)(v[i] - '0');
                }
            } else if (name_is(n, nl, "Transfer-Encoding")) {
                te = v;
                tel = vl;
            } else if (name_is(n, nl, "Connection")) {
                is_close |= vl == 5 && strncasecmp(v, "close", 5) == 0;
            }
        }
        q += 2;
        CHECK(ai < m->n, "answer %d, but the stream holds only %d requests", ai + 1, m->n);
        e = &m->e[ai];
        if (status == 100) { /* may come before the body, even one that never ends */
            CHECK(e->cont && !cont_seen, "100 Continue for request %d, which did not ask", ai);
            CHECK(!have_cl && te == NULL, "100 Continue with a body");
            cont_seen = 1;
            p = q;
            continue;
        }
        CHECK(status >= 200, "interim answer %d", status);
        CHECK(!e->pending, "answer %d to request %d, whose body never ended", status, ai);
        if (!(e->alt_status && status == e->alt_status)) {
            CHECK(status == e->status, "answer %d is %d, the model says %d", ai, status, e->status);
        }
        CHECK(!(have_cl && te), "answer %d has Content-Length and Transfer-Encoding", ai);
        if (status == 204 || status == 304) {
            CHECK(!have_cl && te == NULL, "answer %d (%d) has body framing", ai, status);
            blen = 0;
        } else if (te) {
            ep_http_chunked_t ch;
            ep_buf_t b = EP_BUF_INIT;
            const char *err = NULL;
            int done = 0;
            ssize_t r;
            CHECK(tel == 7 && strncasecmp(te, "chunked", 7) == 0, "answer %d: unknown coding", ai);
            ep_http_chunked_init(&ch);
            r = ep_http_chunked_feed(&ch, q, (size_t)(end - q), &b, ANSWER_LIMIT, &done, &err);
            CHECK(r >= 0 && done, "answer %d: bad chunked body (%s)", ai, err ? err : "cut short");
            ep_buf_close(&b);
            blen = (uint64_t)r;
        } else {
            CHECK(have_cl, "answer %d (%d) without Content-Length", ai, status);
            blen = e->no_body ? 0 : cl;
        }
        CHECK((uint64_t)(end - q) >= blen, "answer %d: %llu body bytes announced, %zu came", ai,
              (unsigned long long)blen, (size_t)(end - q));
        if (e->kind == K_ECHO && status == e->status && !te) {
            CHECK(cl == e->want_len, "answer %d: Content-Length %llu, want %zu", ai,
                  (unsigned long long)cl, e->want_len);
            CHECK(blen == 0 || memcmp(q, m->want.data + e->want_off, e->want_len) == 0,
                  "answer %d is not the answer to request %d: %.*s", ai, ai, (int)blen, q);
        } else if (e->kind == K_BIG && status == 200 && !te) {
            CHECK(cl == BIG_LEN && (blen == 0 || memcmp(q, big, BIG_LEN) == 0),
                  "answer %d: /big's body differs", ai);
        }
        if (e->must_close || (e->alt_status && status == e->alt_status)) {
            CHECK(is_close, "answer %d (%d) should say Connection: close", ai, status);
        } else if (!e->may_close) {
            CHECK(!is_close, "answer %d (%d) closes a keep-alive connection", ai, status);
        }
        closed = is_close;
        p = q + blen;
        ai++;
        cont_seen = 0;
    }
    if (!closed) {
        /* The client ended the stream: every complete request must have been answered. */
        int complete = m->n > 0 && m->e[m->n - 1].pending ? m->n - 1 : m->n;
        CHECK(ai == complete, "%d answers to %d complete requests (stream of %zu bytes)", ai,
              complete, slen);
    }
    (void)stream;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static model_t *m;
    size_t cuts[MAX_CUTS + 2], k, nc = 0;
    const char *s;
    size_t n;
    client_t c;

    if (size == 0) {
        return 0;
    }
    if (srv == NULL) {
        start_server();
        m = ep_calloc(1, sizeof(*m));
        ep_buf_init(&m->want);
    }
    k = data[0] & MAX_CUTS;
    if (size < 1 + 2 * k) {
        k = (size - 1) / 2;
    }
    s = (const char *)data + 1 + 2 * k;
    n = size - 1 - 2 * k;
    /* Cut positions, sorted, without repeats, strictly inside the stream. */
    cuts[nc++] = 0;
    for (size_t i = 0; i < k; i++) {
        size_t at = (size_t)(data[1 + 2 * i] | data[2 + 2 * i] << 8) % (n + 1), j = nc;
        int seen = at == 0 || at == n;
        for (size_t x = 1; x < nc; x++) {
            seen |= cuts[x] == at;
        }
        if (seen) {
            continue;
        }
        while (j > 1 && cuts[j - 1] > at) {
            cuts[j] = cuts[j - 1];
            j--;
        }
        cuts[j] = at;
        nc++;
    }
    cuts[nc++] = n;

    model_run(m, s, n);
    client_open(&c);
    for (size_t i = 0; i + 1 < nc && !c.eof; i++) {
        client_send(&c, s + cuts[i], cuts[i + 1] - cuts[i]);
        if (i + 2 < nc) {
            client_settle(&c);
        }
    }
    shutdown(c.fd, SHUT_WR);
    while (!c.eof) {
        client_wait(&c, 1000000);
    }
    close(c.fd);
    check_answers(m, &c, s, n);
    ep_buf_close(&c.in);
    return 0;
}
