/*
 * HTTP/1.1 server: our own event loops over epoll, requests parsed by
 * ep_http_parse. Why not libmicrohttpd any more: on single-event requests it
 * cost a quarter of the server's CPU (it zeroes its whole per-connection pool,
 * 24 KB, after every request; it formats a Date per answer; it copies every
 * header name and value of a response), and it answers malformed requests and
 * oversized headers with HTML of its own. Here every refusal is our JSON.
 *
 * Threads: opts.threads loops, each with its own epoll set, all accepting from
 * one listening socket (EPOLLEXCLUSIVE). A connection belongs to the loop that
 * accepted it; only that loop reads, writes or frees it. Connections are
 * edge-triggered: a read that fills less than the space offered has drained
 * the socket, and any later data raises a new edge, so one recv per request
 * suffices.
 *
 * A connection handles one request at a time: head, body, handler, answer,
 * write; pipelined requests wait in the input buffer. A handler that answers
 * before returning is written at once; an answer from another thread goes
 * through the loop's list of answered requests and an eventfd wake-up.
 *
 * Hostile clients (issue 14). Every limit is a setting (ep_http_server_opts_t):
 *  - Deadlines, checked by each loop's sweep every SWEEP_NS: idle time counts
 *    from accept or from the end of the last answer (the clock is read again
 *    after handlers ran); a head must complete within header_timeout_ms of its
 *    first byte; a body's deadline is body_timeout_ms after its head plus
 *    1/body_min_rate s per byte received (Apache mod_reqtimeout's MinRate); a
 *    pause of idle_timeout_ms inside a request also ends it; with
 *    read_timeout_ms (Go's ReadTimeout) the whole request must arrive within
 *    it of its first byte. These answer 408 and close. An answer without write
 *    progress for send_timeout_ms, or (write_timeout_ms, Go's WriteTimeout) not
 *    written whole within it of its first write: closed.
 *  - Memory: each connection accounts its buffers and its unwritten answer in
 *    srv->mem_held (an atomic add when a buffer changes size, two per small
 *    request). memory_limit is a soft limit: past it the loop frees idle
 *    connections' spare buffers; a new request whose body may be large
 *    (Content-Length over SMALL_BODY, chunked, any Content-Encoding) gets 503
 *    with Retry-After before its body is read, so expensive work costs a
 *    refusal, not a handler run; and a large body being received is paused
 *    (no recv) until the server is back under the limit, when the loop reads it
 *    again itself (edge-triggered: bytes that arrived meanwhile raise no new
 *    edge). Paused bodies keep their deadlines and stay evictable; one paused
 *    for idle_timeout_ms gets 503. Small requests go on up to the hard limit, a
 *    quarter above; unread answers under it end by send_timeout_ms. Past the
 *    hard limit the loop closes the connections holding the most (an
 *    unfinished body gets a 503 first) until 7/8 of the soft limit, and any
 *    new request that still finds it over gets 503. Bodies grow with what
 *    arrives, never with what Content-Length announces.
 *  - Connections: at the cap, the connection that has kept us waiting longest
 *    (lingering, idle keep-alive, slowest head or body) is closed for the new
 *    one, with up to EVICT_BATCH others waiting a second or more. Per client
 *    address a counter table (one mutex, touched on accept and close only)
 *    refuses connections past max_conns_per_client with a 503.
 * A connection closed while the round's events may still name it is freed at
 * the end of the round (C_DEAD, lp->dead); its buffers go at once.
 *
 * TLS (issue 15, opts.tls): every byte goes through OpenSSL on the same
 * edge-triggered events, one branch on c->ssl per read, write and close; the
 * plain path is unchanged. The TLS I/O (handshake, SSL_read and SSL_write and
 * their drained-socket rules) is in ep_http_server_tls.c.
 *
 * This file is the hot path: the loops, the connection state machine and the
 * answer writing, one unit so that the per-request steps stay static and
 * inlinable. Creating, starting and destroying a server, its route table and
 * the request accessors are in ep_http_server_api.c; the limits' policy
 * (the sweep's deadlines, shedding, room at the cap, the per-client refusal)
 * in ep_http_server_limits.c, off the per-request path; the structs in
 * ep_http_server_int.h.
 */
#include "http/ep_http_server_int.h"
#include "base/ep_error.h"
#include "base/ep_list.h"
#include "http/ep_http_parse.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

void ep__http_conn_run(conn_t *c);
static void queue_write(conn_t *c);

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

static void allow_header(unsigned methods, char *out, size_t len)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{EP_HTTP_GET, "GET"}, {EP_HTTP_HEAD, "HEAD"},     {EP_HTTP_POST, "POST"},
                 {EP_HTTP_PUT, "PUT"}, {EP_HTTP_DELETE, "DELETE"}, {EP_HTTP_OPTIONS, "OPTIONS"}};
    size_t off = 0;

    out[0] = '\0';
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (methods & names[i].bit) {
            int n = snprintf(out + off, len - off, "%s%s", off ? ", " : "", names[i].name);
            if (n < 0 || (size_t)n >= len - off) {
                break;
            }
            off += (size_t)n;
        }
    }
}

static const route_t *find_route(ep_http_server_t *s, const char *path)
{
    for (int i = 0; i < s->n_routes; i++) {
        if (strcmp(s->routes[i].path, path) == 0) {
            return &s->routes[i];
        }
    }
    return NULL;
}

static const char *reason(int status)
{
    static const struct {
        int status;
        const char *text;
    } reasons[] = {{100, "Continue"},
                   {200, "OK"},
                   {201, "Created"},
                   {202, "Accepted"},
                   {204, "No Content"},
                   {301, "Moved Permanently"},
                   {302, "Found"},
                   {304, "Not Modified"},
                   {400, "Bad Request"},
                   {401, "Unauthorized"},
                   {403, "Forbidden"},
                   {404, "Not Found"},
                   {405, "Method Not Allowed"},
                   {408, "Request Timeout"},
                   {409, "Conflict"},
                   {411, "Length Required"},
                   {413, "Content Too Large"},
                   {414, "URI Too Long"},
                   {415, "Unsupported Media Type"},
                   {422, "Unprocessable Content"},
                   {429, "Too Many Requests"},
                   {431, "Request Header Fields Too Large"},
                   {500, "Internal Server Error"},
                   {501, "Not Implemented"},
                   {502, "Bad Gateway"},
                   {503, "Service Unavailable"},
                   {504, "Gateway Timeout"},
                   {505, "HTTP Version Not Supported"}};

    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++) {
        if (reasons[i].status == status) {
            return reasons[i].text;
        }
    }
    return "Unknown";
}

/* The Date header's value, formatted once a second per thread. */
static const char *http_date(void)
{
    static _Thread_local time_t cached = -1;
    static _Thread_local char text[40];
    time_t now = time(NULL);

    if (now != cached) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        cached = now;
    }
    return text;
}

static void count_status(ep_http_server_t *s, int status)
{
    if (status >= 500) {
        atomic_fetch_add_explicit(&s->s5xx, 1, memory_order_relaxed);
    } else if (status >= 400) {
        atomic_fetch_add_explicit(&s->s4xx, 1, memory_order_relaxed);
    } else if (status >= 200 && status < 300) {
        atomic_fetch_add_explicit(&s->s2xx, 1, memory_order_relaxed);
    }
}

/* Makes sure the loop looks at its list of answered requests soon. */
static void loop_wake(loop_t *lp)
{
    atomic_fetch_add(&lp->resumes, 1);
    if (atomic_load(&lp->sleeping)) {
        uint64_t one = 1;
        ssize_t w = write(lp->wakefd, &one, sizeof(one));
        (void)w; /* EAGAIN only when the counter is full: the loop wakes anyway */
    }
}

static void list_append(ep_http_req_t **head, ep_http_req_t **tail, ep_http_req_t *r)
{
    r->next = NULL;
    if (*tail) {
        (*tail)->next = r;
    } else {
        *head = r;
    }
    *tail = r;
}

/* Builds the answer (status line, headers; body taken) and hands it to the loop. */
static void respond_take(ep_http_req_t *r, int status, const char *content_type, char *body,
                         size_t len)
{
    ep_http_server_t *srv = r->srv;
    loop_t *lp = r->loop;
    ep_buf_t *o = &r->out;
    int no_body = status < 200 || status == 204 || status == 304;

    if (atomic_load_explicit(&srv->draining, memory_order_relaxed)) {
        r->close_after = 1;
    }
    ep_buf_reset(o);
    ep_buf_puts(o, "HTTP/1.1 ");
    ep_buf_put_i64(o, status);
    ep_buf_putc(o, ' ');
    ep_buf_puts(o, reason(status));
    ep_buf_puts(o, "\r\nDate: ");
    ep_buf_puts(o, http_date());
    if (!no_body) {
        ep_buf_puts(o, "\r\nContent-Type: ");
        ep_buf_puts(o, content_type ? content_type : "application/json");
        ep_buf_puts(o, "\r\nContent-Length: ");
        ep_buf_put_u64(o, len);
    }
    /* On every answer, refusals included; an API answer is not to be stored by any cache. */
    if (r->own_cache) {
        ep_buf_append(o, EP_STRLIT("\r\nX-Content-Type-Options: nosniff\r\n"));
    } else {
        ep_buf_append(o, EP_STRLIT("\r\nX-Content-Type-Options: nosniff\r\n"
                                   "Cache-Control: no-store\r\n"));
    }
    if (srv->opts.cors) {
        ep_http_cors_put_headers(srv->opts.cors, r->cors_allow, o);
    }
    if (r->extra.len) {
        ep_buf_append(o, r->extra.data, r->extra.len);
    }
    if (r->close_after) {
        ep_buf_puts(o, "Connection: close\r\n");
    } else if (r->head.minor == 0) {
        ep_buf_puts(o, "Connection: keep-alive\r\n");
    }
    ep_buf_puts(o, "\r\n");
    if (no_body || r->method_bit == EP_HTTP_HEAD) {
        ep_free(body);
        body = NULL;
        len = 0;
    }
    r->resp = body;
    r->resp_len = len;
    count_status(srv, status);
    if (srv->observe) {
        srv->observe(srv->observe_arg, r, status);
    }
    /* From here on r belongs to its loop again. */
    if (pthread_equal(pthread_self(), lp->self)) {
        if (lp->running == r) {
            r->answered_inline = 1;
        } else {
            list_append(&lp->local, &lp->local_tail, r);
        }
        return;
    }
    atomic_fetch_add(&srv->handing_over, 1);
    pthread_mutex_lock(&lp->mu);
    list_append(&lp->answered, &lp->answered_tail, r);
    pthread_mutex_unlock(&lp->mu);
    loop_wake(lp);
    atomic_fetch_sub(&srv->handing_over, 1);
}

void ep_http_respond(ep_http_req_t *r, int status, const char *content_type, const char *body,
                     size_t len)
{
    char *copy = ep_malloc(len + 1);

    if (len) {
        memcpy(copy, body, len);
    }
    copy[len] = '\0';
    respond_take(r, status, content_type, copy, len);
}

void ep_http_respond_buf(ep_http_req_t *r, int status, ep_buf_t *b)
{
    size_t len;
    char *data = ep_buf_steal(b, &len);

    respond_take(r, status, NULL, data, len);
}

void ep_http_respond_error(ep_http_req_t *r, int status, const char *msg, const char *field)
{
    ep_buf_t b = EP_BUF_INIT;

    ep_buf_puts(&b, "{\"error\":");
    ep_buf_put_json_str(&b, msg, strlen(msg));
    if (field && *field) {
        ep_buf_puts(&b, ",\"field\":");
        ep_buf_put_json_str(&b, field, strlen(field));
    }
    ep_buf_puts(&b, "}\n");
    if (status == 503 || status == 429) {
        char v[16];
        snprintf(v, sizeof(v), "%d", r->srv->opts.retry_after_s);
        ep_http_req_add_header(r, "Retry-After", v);
    }
    ep_http_respond_buf(r, status, &b);
}

void ep_http_req_add_header(ep_http_req_t *r, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") != NULL || strpbrk(value, "\r\n") != NULL) {
        return; /* would split the header block */
    }
    if (strcasecmp(name, "Cache-Control") == 0) {
        r->own_cache = 1;
    }
    ep_buf_puts(&r->extra, name);
    ep_buf_puts(&r->extra, ": ");
    ep_buf_puts(&r->extra, value);
    ep_buf_puts(&r->extra, "\r\n");
}

/* ---- connections (loop thread only) ---- */

/* Bytes the connection holds now: its buffers, and the answer once it is ours to write. */
static int64_t conn_bytes(const conn_t *c)
{
    const ep_http_req_t *r = &c->req;
    /*
     * A body buffer past BODY_KEEP is an mmap of which only what was received
     * is touched (its capacity doubles past a 32 MiB body to 64 MiB): count that.
     */
    size_t body = r->body.cap > BODY_KEEP ? r->body.len : r->body.cap;
    size_t n = sizeof(*c) + c->in_cap + r->raw_cap + body + r->extra.cap + r->out.cap;

    if (c->ssl) {
        n += c->tls_idle ? TLS_IDLE_BYTES : TLS_CONN_BYTES;
    }

    if (c->state == C_WRITE) {
        n += r->resp_len;
    }
    return (int64_t)n;
}

/*
 * Brings the server's count of held bytes up to date with this connection.
 * Never while the request waits for its answer (C_WAIT): the answering thread
 * owns its buffers then. Over the limit, the loop sheds at the end of its round.
 */
static void conn_account(conn_t *c)
{
    ep_http_server_t *s = c->lp->srv;
    int64_t now = conn_bytes(c), d = now - c->held;

    if (d != 0) {
        int64_t total = atomic_fetch_add_explicit(&s->mem_held, d, memory_order_relaxed) + d;
        c->held = now;
        if (d > 0 && total > (int64_t)s->opts.memory_limit) {
            c->lp->pressure = 1;
        }
    }
}

void ep__http_conn_account(conn_t *c)
{
    conn_account(c);
}

/* Stops reading a large body until the server is back under its soft memory limit. */
static void conn_pause(conn_t *c)
{
    if (!c->paused) {
        c->paused = 1;
        c->lp->n_paused++;
        count_kill(c->lp->srv, K_PAUSED);
    }
}

static void conn_unpause(conn_t *c)
{
    if (c->paused) {
        c->paused = 0;
        c->lp->n_paused--;
    }
}

/* Frees the buffers an idle connection keeps for its next request. */
void ep__http_conn_trim(conn_t *c)
{
    ep_http_req_t *r = &c->req;

    if (c->in_off == c->in_len && c->in_cap > IN_INITIAL) {
        c->in_off = c->in_len = 0;
        c->in_cap = IN_INITIAL;
        c->in = ep_realloc(c->in, c->in_cap);
    }
    ep_buf_close(&r->body);
    ep_buf_close(&r->extra);
    ep_buf_close(&r->out);
    if (c->ssl) {
        ep__http_tls_trim(c);
    }
    if (r->raw_cap > 1024) {
        ep_free(r->raw);
        r->raw = NULL;
        r->raw_cap = 0;
    }
    conn_account(c);
}

static void conn_free_buffers(conn_t *c)
{
    ep_http_req_t *r = &c->req;

    ep_free(c->in);
    c->in = NULL;
    c->in_cap = c->in_off = c->in_len = 0;
    ep_free(r->raw);
    r->raw = NULL;
    r->raw_cap = 0;
    ep_buf_close(&r->body);
    ep_buf_close(&r->extra);
    ep_buf_close(&r->out);
    ep_free(r->resp);
    r->resp = NULL;
    r->resp_len = 0;
}

/* Out of the loop's list of deferred heavy requests (it leaves C_DEFER). */
static void defer_unlink(conn_t *c)
{
    loop_t *lp = c->lp;

    if (c->dprev) {
        c->dprev->dnext = c->dnext;
    } else {
        lp->defer = c->dnext;
    }
    if (c->dnext) {
        c->dnext->dprev = c->dprev;
    } else {
        lp->defer_tail = c->dprev;
    }
    c->dprev = c->dnext = NULL;
}

void ep__http_conn_close(conn_t *c)
{
    loop_t *lp = c->lp;
    ep_http_server_t *s = lp->srv;

    ep_assert(c->state != C_WAIT && c->state != C_DEAD);
    if (c->state == C_DEFER) {
        defer_unlink(c);
    }
    conn_unpause(c);
    if (c->ssl) {
        ep__http_tls_free(c);
    }
    close(c->fd);
    if (c->in_request) {
        atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
        c->in_request = 0;
    }
    EP_DLIST_UNLINK(lp->conns, c);
    lp->n_conns--;
    atomic_fetch_sub_explicit(&s->n_conns, 1, memory_order_relaxed);
    if (c->has_peer) {
        ep__http_peer_release(s, c->peer);
    }
    /* The memory goes back now; the struct at the end of the round (events may name it). */
    conn_free_buffers(c);
    atomic_fetch_sub_explicit(&s->mem_held, c->held, memory_order_relaxed);
    c->held = 0;
    c->state = C_DEAD;
    c->prev = NULL;
    c->next = lp->dead;
    lp->dead = c;
}

void ep__http_loop_reap(loop_t *lp)
{
    conn_t **pp = &lp->dead;

    while (*pp) {
        conn_t *c = *pp;
        if (c->queued) {
            pp = &c->next; /* still in the write queue: the next flush drops it */
            continue;
        }
        *pp = c->next;
        ep_free(c);
    }
}

/*
 * One recv into buf. Returns the bytes read, 0 when there are none now, -1
 * when the connection ended (then it is closed). A read shorter than len has
 * drained the socket: the next bytes raise a new edge.
 */
static ssize_t conn_recv(conn_t *c, char *buf, size_t len)
{
    if (c->ssl) {
        return ep__http_tls_recv(c, buf, len);
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, 0);
        if (n > 0) {
            c->rx_ns = c->lp->now;
            if ((size_t)n < len && !c->hup) {
                c->rd_pending = 0;
            }
            return n;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->rd_pending = 0;
            return 0;
        }
        ep__http_conn_close(c); /* end of stream or error, in the middle of a request or between */
        return -1;
    }
}

/* Reads once into the input buffer. 1: bytes came; 0: none now; -1: closed. */
static int conn_read(conn_t *c)
{
    size_t space;
    ssize_t n;

    if (c->in_off == c->in_len) {
        c->in_off = c->in_len = 0;
    } else if (c->in_off > 0 && c->in_cap - c->in_len < IN_MIN_SPACE) {
        memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
        c->in_len -= c->in_off;
        c->in_off = 0;
    }
    if (c->in_cap - c->in_len < IN_MIN_SPACE) {
        c->in_cap *= 2;
        c->in = ep_realloc(c->in, c->in_cap);
        conn_account(c);
    }
    space = c->in_cap - c->in_len;
    n = conn_recv(c, c->in + c->in_len, space);
    if (n <= 0) {
        return (int)n;
    }
    c->in_len += (size_t)n;
    if ((size_t)n == space && c->in_cap < IN_MAX) {
        /* Requests larger than the buffer: grow it, so that one read takes one. */
        c->in_cap *= 2;
        c->in = ep_realloc(c->in, c->in_cap);
        conn_account(c);
    }
    return 1;
}

/* The request is finished (answer written): ready for the next one. */
static void req_done(conn_t *c)
{
    ep_http_req_t *r = &c->req;

    ep_free(r->resp);
    r->resp = NULL;
    ep_buf_reset(&r->out);
    if (r->body.cap > BODY_KEEP) {
        ep_buf_close(&r->body);
    }
    c->in_request = 0;
    c->idle_ns = c->lp->now;
    atomic_fetch_sub_explicit(&c->lp->srv->in_flight, 1, memory_order_relaxed);
    if (r->close_after) {
        /*
         * Close gracefully: stop sending, then read and drop what the client
         * still sends (an unread body), so that our close does not reset the
         * connection before the client has read the answer.
         */
        if (c->ssl) {
            ep__http_tls_shutdown(c);
        }
        shutdown(c->fd, SHUT_WR);
        ep_buf_close(&r->body);
        c->state = C_LINGER;
        c->linger_until = c->lp->now + LINGER_NS;
        c->rd_pending = 1;
    } else {
        c->state = C_HEAD;
        if (c->in_cap > IN_MAX && c->in_off == c->in_len) {
            c->in_off = c->in_len = 0;
            c->in_cap = IN_INITIAL;
            c->in = ep_realloc(c->in, c->in_cap);
        }
    }
    conn_account(c);
}

/* One sendmsg of the answer from out_off: bytes sent, 0 when the socket is full, -1: closed. */
static ssize_t plain_send(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    size_t hl = r->out.len;
    struct iovec iov[2];
    struct msghdr m;
    ssize_t n;

    memset(&m, 0, sizeof(m));
    m.msg_iov = iov;
    if (c->out_off < hl) {
        iov[m.msg_iovlen].iov_base = r->out.data + c->out_off;
        iov[m.msg_iovlen++].iov_len = hl - c->out_off;
    }
    if (r->resp_len) {
        size_t bo = c->out_off > hl ? c->out_off - hl : 0;
        iov[m.msg_iovlen].iov_base = r->resp + bo;
        iov[m.msg_iovlen++].iov_len = r->resp_len - bo;
    }
    for (;;) {
        n = sendmsg(c->fd, &m, MSG_NOSIGNAL);
        if (n >= 0) {
            return n;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0; /* EPOLLOUT raises an edge when there is room */
        }
        if (errno != EINTR) {
            ep__http_conn_close(c);
            return -1;
        }
    }
}

/*
 * Writes the answer, plain or over TLS (ep__http_tls_send). 1: all written
 * (req_done ran); 0: the socket is full; -1: closed.
 */
static int conn_write(conn_t *c)
{
    size_t total = c->req.out.len + c->req.resp_len;

    if (c->out_off == 0) {
        c->wr_ns = c->wr_start_ns = c->lp->now; /* the send and write timeouts count from here */
    }
    while (c->out_off < total) {
        ssize_t n = c->ssl ? ep__http_tls_send(c) : plain_send(c);
        if (n <= 0) {
            return (int)n;
        }
        c->out_off += (size_t)n;
        c->wr_ns = c->lp->now;
    }
    req_done(c);
    return 1;
}

/* Answers from the server itself (refusals), on the loop thread. */
static void refuse(conn_t *c, int status, const char *msg)
{
    ep_http_req_t *r = &c->req;
    loop_t *lp = c->lp;

    c->state = C_WAIT;
    lp->running = r;
    ep_http_respond_error(r, status, msg, NULL);
    lp->running = NULL;
}

/*
 * A complete request goes to its handler. A heavy one (c->heavy) is timed: once
 * this round's heavy requests took HEAVY_ROUND_NS, the next ones wait for a
 * later round (C_DEFER), so the small requests of other connections are served
 * in between. A heavy request that finds the server over its memory budget by
 * the time it would run is refused (its answer could be as large as its work).
 */
static void dispatch(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    loop_t *lp = c->lp;
    int64_t t0 = 0;

    if (c->heavy) {
        if (lp->heavy_ns >= HEAVY_ROUND_NS) {
            c->state = C_DEFER;
            c->dnext = NULL;
            c->dprev = lp->defer_tail;
            if (lp->defer_tail) {
                lp->defer_tail->dnext = c;
            } else {
                lp->defer = c;
            }
            lp->defer_tail = c;
            count_kill(lp->srv, K_DEFERRED);
            return;
        }
        if (mem_over(lp->srv)) {
            r->close_after = 1;
            count_kill(lp->srv, K_REFUSED_MEMORY);
            refuse(c, 503, "the server is over its memory budget (HTTP_MEMORY_LIMIT); retry later");
            return;
        }
        t0 = ep_time_mono_ns();
    }
    c->state = C_WAIT;
    lp->running = r;
    r->route->handler(r->route->arg, r);
    lp->running = NULL;
    if (t0 != 0) {
        lp->heavy_ns += ep_time_mono_ns() - t0; /* c may be answered and gone: use lp */
    }
}

/* A request begins: its per-request state is reset and it counts as in flight. */
static void req_begin(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    ep_http_server_t *s = c->lp->srv;

    c->in_request = 1;
    c->head_ns = 0;
    r->route = NULL;
    r->method_bit = 0;
    r->close_after = 0;
    r->q_done = r->n_q = 0;
    r->answered_inline = 0;
    r->own_cache = 0;
    r->cors_allow = NULL;
    c->out_off = 0;
    ep_buf_reset(&r->body);
    ep_buf_reset(&r->extra);
    r->start_ns = c->lp->now;
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
}

/*
 * A refusal outside ep__http_conn_run (a deadline, memory shedding): the answer is made
 * now and written with the round's others, then the connection closes. The
 * body read so far is dropped first.
 */
void ep__http_refuse_now(conn_t *c, int status, const char *msg)
{
    ep_http_req_t *r = &c->req;

    if (!c->in_request) {
        /* No head yet: a request with no method, path or route. */
        req_begin(c);
        memset(&r->head, 0, sizeof(r->head));
        r->head.method = r->head.path = (char *)"";
        r->head.minor = 1;
    }
    conn_unpause(c);
    ep_buf_close(&r->body);
    r->close_after = 1;
    refuse(c, status, msg);
    r->answered_inline = 0;
    c->state = C_WRITE;
    conn_account(c);
    queue_write(c);
}

/*
 * A CORS preflight (OPTIONS with Origin and Access-Control-Request-Method) for
 * an existing route from an allowed origin: 204 with what the route accepts.
 * The route's handler never sees it.
 */
static void preflight(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    loop_t *lp = c->lp;
    char allow[64];

    if (r->head.content_length > 0 || r->head.chunked) {
        r->close_after = 1; /* its body stays unread */
    }
    allow_header(r->route->methods, allow, sizeof(allow));
    ep_http_req_add_header(r, "Access-Control-Allow-Methods", allow);
    ep_buf_append(&r->extra, EP_STRLIT("Access-Control-Allow-Headers: " EP_HTTP_CORS_ALLOW_HEADERS
                                       "\r\nAccess-Control-Max-Age: " EP_HTTP_CORS_MAX_AGE "\r\n"));
    c->state = C_WAIT;
    lp->running = r;
    ep_http_respond(r, 204, NULL, "", 0);
    lp->running = NULL;
}

/* The Origin header, or NULL: every request looks, so the first letter is checked first. */
static const char *req_origin(const ep_http_head_t *h)
{
    for (int i = 0; i < h->n_fields; i++) {
        const char *n = h->fields[i].name;
        if ((n[0] | 0x20) == 'o' && strcasecmp(n, "Origin") == 0) {
            return h->fields[i].value;
        }
    }
    return NULL;
}

static int is_preflight(const ep_http_req_t *r, const char *origin)
{
    return origin != NULL && r->method_bit == EP_HTTP_OPTIONS &&
           ep_http_head_field(&r->head, "Access-Control-Request-Method") != NULL;
}

/*
 * A page of another web origin, not in CORS_ALLOWED_ORIGINS, is refused even
 * where the browser sends without asking first (a form-like POST of
 * text/plain): only so is nothing of such a request kept.
 */
static int origin_refused(const ep_http_req_t *r, const char *origin)
{
    if (origin == NULL || r->cors_allow != NULL) {
        return 0;
    }
    return is_preflight(r, origin) ||
           !ep_http_cors_same_origin(origin, ep_http_head_field(&r->head, "Host"),
                                     ep_http_head_field(&r->head, "Sec-Fetch-Site"));
}

/*
 * A request whose body may make the server hold much: more than SMALL_BODY
 * announced, chunked (no announcement), or encoded (a small gzip body may
 * inflate to the route's maximum in its handler).
 */
static int req_may_grow(const ep_http_req_t *r)
{
    return r->head.chunked || r->head.content_length > SMALL_BODY ||
           ep_http_head_field(&r->head, "Content-Encoding") != NULL;
}

/*
 * Copies the head (hl bytes at in + in_off + skip) into the request and parses
 * it. 1: parsed; 0: refused (431 or 400, the connection closes after it).
 */
static int parse_head(conn_t *c, size_t skip, size_t hl)
{
    ep_http_req_t *r = &c->req;
    ep_http_server_t *s = c->lp->srv;
    const char *head = c->in + c->in_off + skip;
    const char *err;
    char msg[160];
    int rc;

    c->in_off += skip + hl;
    /* The request's first byte: when its head came in pieces, else now (one read). */
    c->req_ns = c->head_ns ? c->head_ns : c->lp->now;
    req_begin(c);
    if (hl + 1 > r->raw_cap) {
        r->raw_cap = hl + 1 > 1024 ? hl + 1 : 1024;
        r->raw = ep_realloc(r->raw, r->raw_cap);
        conn_account(c);
    }
    memcpy(r->raw, head, hl);
    r->raw[hl] = '\0';
    rc = hl > s->opts.max_header ? 431 : ep_http_parse_head(r->raw, hl, &r->head, &err);
    if (rc == 0) {
        return 1;
    }
    if (rc == 431 && hl > s->opts.max_header) {
        memset(&r->head, 0, sizeof(r->head));
        snprintf(msg, sizeof(msg), "request headers are larger than %zu bytes", s->opts.max_header);
        err = msg;
    }
    if (r->head.method == NULL || r->head.path == NULL) {
        r->head.method = r->head.path = (char *)"";
    }
    r->close_after = 1; /* the framing of what follows is unknown */
    refuse(c, rc, err);
    return 0;
}

/*
 * Checks a parsed request against its route and the server's state. Returns
 * 0 (go on), -1 (answered: a CORS preflight), or the refusal's status with
 * its message in msg.
 */
static int check_request(conn_t *c, char *msg, size_t len)
{
    ep_http_req_t *r = &c->req;
    ep_http_server_t *s = c->lp->srv;
    const char *origin = req_origin(&r->head);
    char allow[64];

    if (origin != NULL && s->opts.cors != NULL) {
        r->cors_allow = ep_http_cors_allow(s->opts.cors, origin);
    }
    if (origin_refused(r, origin)) {
        snprintf(msg, len,
                 "pages of the web origin %.60s may not call this server "
                 "(CORS_ALLOWED_ORIGINS)",
                 origin);
        return 403;
    }
    if (r->route == NULL) {
        snprintf(msg, len, "no such path");
        return 404;
    }
    if (is_preflight(r, origin)) {
        preflight(c); /* from an allowed origin */
        return -1;
    }
    if ((r->route->methods & r->method_bit) == 0) {
        allow_header(r->route->methods, allow, sizeof(allow));
        ep_http_req_add_header(r, "Allow", allow);
        snprintf(msg, len, "method %s is not allowed here; use %s", r->head.method, allow);
        return 405;
    }
    if (r->head.content_length > 0 && (uint64_t)r->head.content_length > r->route->max_body) {
        snprintf(msg, len, "request body is larger than %zu bytes", r->route->max_body);
        return 413;
    }
    if (mem_over(s) && !ep__http_loop_shed(c->lp, c) && (req_may_grow(r) || mem_over_hard(s))) {
        /*
         * Over the soft limit: a request whose body may be large is refused
         * before its body is read (a 503 costs less than the work); small ones
         * go on up to the hard limit.
         */
        snprintf(msg, len, "the server is over its memory budget (HTTP_MEMORY_LIMIT); retry later");
        count_kill(s, K_REFUSED_MEMORY);
        ep__http_shed_warn(s, c->lp->now,
                           "over the memory budget: new large requests are answered 503");
        return 503;
    }
    return 0;
}

/* The request has a body: C_BODY, and "100 Continue" when the client waits for it. */
static void body_begin(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

    c->state = C_BODY;
    c->chunked = r->head.chunked;
    c->body_left = r->head.chunked ? 0 : (uint64_t)r->head.content_length;
    c->body_ns = c->lp->now;
    c->body_got = 0;
    c->body_offer = 16 * 1024;
    c->big_body = r->head.chunked || r->head.content_length > SMALL_BODY;
    ep_http_chunked_init(&c->ch);
    if (!r->head.expect_continue || c->in_off != c->in_len) {
        return;
    }
    if (c->ssl) {
        /*
         * A TLS write that did not go whole would have to be retried before
         * the answer (OpenSSL's rule): an empty socket takes it, so one that
         * does not is given up on.
         */
        ep__http_tls_send_all(c, cont, sizeof(cont) - 1);
        return;
    }
    ssize_t w = send(c->fd, cont, sizeof(cont) - 1, MSG_NOSIGNAL);
    (void)w; /* an empty socket takes 25 bytes; if not, the client sends anyway */
}

/* A complete head of hl bytes at in + in_off + skip: parse, check, then the body or the handler. */
static void start_request(conn_t *c, size_t skip, size_t hl)
{
    ep_http_req_t *r = &c->req;
    char msg[160];
    int rc;

    if (!parse_head(c, skip, hl)) {
        return;
    }
    r->method_bit = method_bit(r->head.method);
    /* HTTP/1.0 has no chunked framing of its own: close after the answer (RFC 9112 6.1). */
    r->close_after = !r->head.keep_alive || (r->head.chunked && r->head.minor == 0);
    r->route = find_route(c->lp->srv, r->head.path);
    if ((rc = check_request(c, msg, sizeof(msg))) != 0) {
        if (rc > 0) {
            if (r->head.content_length > 0 || r->head.chunked) {
                r->close_after = 1; /* its body stays unread */
            }
            refuse(c, rc, msg);
        }
        return;
    }
    c->heavy = req_may_grow(r);
    if (r->head.chunked || r->head.content_length > 0) {
        body_begin(c);
        return;
    }
    dispatch(c);
}

/* Moves buffered body bytes into the request. 1: state changed; 0: more needed. */
static int body_some(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    const char *p = c->in + c->in_off;
    size_t avail = c->in_len - c->in_off, cap = r->body.cap;
    char msg[96];

    if (c->chunked) {
        const char *err = NULL;
        int done = 0;
        ssize_t n =
            ep_http_chunked_feed(&c->ch, p, avail, &r->body, r->route->max_body, &done, &err);
        if (n < 0) {
            r->close_after = 1;
            if (n == EP_E2BIG) {
                snprintf(msg, sizeof(msg), "request body is larger than %zu bytes",
                         r->route->max_body);
                refuse(c, 413, msg);
            } else {
                refuse(c, 400, err);
            }
            return 1;
        }
        c->in_off += (size_t)n;
        c->body_got += (uint64_t)n;
        if (r->body.cap != cap || r->body.cap > BODY_KEEP) {
            conn_account(c);
        }
        if (!done) {
            return 0;
        }
    } else {
        size_t take = avail < c->body_left ? avail : (size_t)c->body_left;
        ep_buf_append(&r->body, p, take);
        c->in_off += take;
        c->body_left -= take;
        c->body_got += take;
        if (r->body.cap != cap || r->body.cap > BODY_KEEP) {
            conn_account(c);
        }
        if (c->body_left > 0) {
            return 0;
        }
    }
    dispatch(c);
    return 1;
}

/*
 * Reads a large Content-Length body straight into the request (no pass
 * through the input buffer): one recv for what has arrived. 1: bytes came; 0: none now;
 * -1: closed.
 */
static int body_read(conn_t *c)
{
    ep_buf_t *b = &c->req.body;
    size_t room = b->cap > b->len + 1 ? b->cap - b->len - 1 : 0, cap = b->cap, want;
    ssize_t n;

    /*
     * Memory grows with what arrives, not with what Content-Length announces:
     * the room offered starts at 16 KiB and doubles (to 256 KiB) only while
     * recvs fill it, so a body that trickles holds little more than it sent.
     */
    if (room < c->body_offer / 2 && room < c->body_left) {
        ep_buf_reserve(b, c->body_offer < c->body_left ? c->body_offer : (size_t)c->body_left);
        room = b->cap - b->len - 1;
    }
    want = room < c->body_left ? room : (size_t)c->body_left;
    n = conn_recv(c, b->data + b->len, want);
    if (n <= 0) {
        return (int)n;
    }
    b->len += (size_t)n;
    b->data[b->len] = '\0';
    c->body_left -= (uint64_t)n;
    c->body_got += (uint64_t)n;
    if (cap != b->cap || b->cap > BODY_KEEP) {
        conn_account(c); /* a big buffer counts what it received */
    }
    if ((size_t)n == want && c->body_offer < 256 * 1024) {
        c->body_offer *= 2;
    }
    return 1;
}

/*
 * Answers are written at the end of the loop's round, all together, not one by
 * one as their handlers finish: each write to a client that sleeps wakes it,
 * and on a VM that wake-up (an IPI to its CPU) costs more than our whole
 * handling of a small request. A burst of answers to one client wakes it once.
 */
static void queue_write(conn_t *c)
{
    loop_t *lp = c->lp;

    if (c->queued) {
        return;
    }
    c->queued = 1;
    c->wnext = NULL;
    if (lp->wq_tail) {
        lp->wq_tail->wnext = c;
    } else {
        lp->wq = c;
    }
    lp->wq_tail = c;
}

/* Drives a connection as far as it can go without waiting. */
void ep__http_conn_run(conn_t *c)
{
    ep_http_server_t *s = c->lp->srv;

    for (;;) {
        switch (c->state) {
        case C_TLS:
            if (ep__http_tls_handshake(c) <= 0) {
                return;
            }
            continue;
        case C_HEAD: {
            size_t skip, hl = ep_http_head_end(c->in + c->in_off, c->in_len - c->in_off, &skip);
            if (hl > 0) {
                start_request(c, skip, hl);
                continue;
            }
            if (c->in_len - c->in_off > s->opts.max_header + 2) {
                /* No end of head in sight within the limit. */
                start_request(c, 0, c->in_len - c->in_off);
                continue;
            }
            if (c->head_ns == 0 && c->in_len > c->in_off) {
                c->head_ns = c->lp->now; /* HTTP_HEADER_TIMEOUT counts from the first byte */
            }
            break;
        }
        case C_BODY:
            if (body_some(c)) {
                continue;
            }
            if (c->big_body && mem_over(s)) {
                conn_pause(c); /* ep__http_loop_resume reads on once memory is freed */
                return;
            }
            conn_unpause(c);
            if (!c->chunked && c->rd_pending && c->body_left >= IN_MAX / 2) {
                if (body_read(c) < 0) {
                    return;
                }
                continue;
            }
            break;
        case C_WAIT:
            if (!c->req.answered_inline) {
                return; /* answered later from another thread */
            }
            c->req.answered_inline = 0;
            c->state = C_WRITE;
            conn_account(c);
            queue_write(c);
            return;
        case C_WRITE:
            if (conn_write(c) <= 0) {
                return;
            }
            continue;
        case C_LINGER:
            while (c->rd_pending) {
                c->in_off = c->in_len = 0;
                if (conn_read(c) < 0) {
                    return;
                }
            }
            return;
        case C_DEAD:
        case C_DEFER: /* loop_deferred runs it */
            return;
        }
        /* C_HEAD or C_BODY wanting more bytes. */
        if (!c->rd_pending) {
            return;
        }
        if (conn_read(c) < 0) {
            return;
        }
    }
}

static void conn_event(conn_t *c, uint32_t ev)
{
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        c->hup = 1;
    }
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        c->rd_pending = 1;
    }
    if (c->tls_rd_wants_wr && (ev & EPOLLOUT)) {
        c->tls_rd_wants_wr = 0;
        c->rd_pending = 1;
    }
    if (c->state == C_WAIT || c->queued) {
        return; /* the answer comes, or is written soon; the write finds out about the peer */
    }
    ep__http_conn_run(c);
}

static void loop_accept(loop_t *lp)
{
    ep_http_server_t *s = lp->srv;

    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(s->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC),
            one = 1, has_peer;
        uint8_t peer[16];
        struct epoll_event ev;
        conn_t *c;

        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors: stop accepting for a moment instead of spinning. */
                ep_log_warn("http", "%s: accept: %s; pausing new connections", s->name,
                            strerror(errno));
                epoll_ctl(lp->epfd, EPOLL_CTL_DEL, s->listen_fd, NULL);
                lp->accept_paused = 1;
                lp->resume_accept = lp->now + PAUSE_ACCEPT_NS;
            }
            return;
        }
        if (atomic_load_explicit(&s->draining, memory_order_relaxed)) {
            close(fd);
            continue;
        }
        has_peer = ep__http_peer_key(&ss, peer);
        if (has_peer && ep__http_peer_acquire(s, peer) != 0) {
            ep__http_refuse_per_client(s, fd);
            continue;
        }
        if (lp->n_conns >= lp->max_conns && !ep__http_make_room(lp)) {
            if (has_peer) {
                ep__http_peer_release(s, peer);
            }
            close(fd);
            count_kill(s, K_FULL);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = ep_calloc(1, sizeof(*c));
        c->lp = lp;
        c->fd = fd;
        c->state = C_HEAD;
        c->in_cap = IN_INITIAL;
        c->in = ep_malloc(c->in_cap);
        c->req.srv = s;
        c->req.loop = lp;
        c->req.conn = c;
        ep_buf_init(&c->req.body);
        ep_buf_init(&c->req.extra);
        ep_buf_init(&c->req.out);
        c->idle_ns = c->rx_ns = lp->now;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
        ev.data.ptr = c;
        if ((s->opts.tls && ep__http_tls_accept(c, s->opts.tls) != 0) ||
            epoll_ctl(lp->epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
            if (c->ssl) {
                ep__http_tls_free(c);
            }
            close(fd);
            if (has_peer) {
                ep__http_peer_release(s, peer);
            }
            ep_free(c->in);
            ep_free(c);
            continue;
        }
        memcpy(c->peer, peer, sizeof(peer));
        c->has_peer = has_peer;
        c->next = lp->conns;
        if (lp->conns) {
            lp->conns->prev = c;
        }
        lp->conns = c;
        lp->n_conns++;
        atomic_fetch_add_explicit(&s->n_conns, 1, memory_order_relaxed);
        conn_account(c);
    }
}

/* Writes the answers given on other threads, and those given here outside a handler. */
static void loop_answers(loop_t *lp)
{
    ep_http_req_t *r;

    pthread_mutex_lock(&lp->mu);
    r = lp->answered;
    lp->answered = lp->answered_tail = NULL;
    pthread_mutex_unlock(&lp->mu);
    while (r || lp->local) {
        ep_http_req_t *next;
        conn_t *c;
        if (r == NULL) {
            r = lp->local;
            lp->local = lp->local_tail = NULL;
        }
        next = r->next;
        c = r->conn;
        ep_assert(c->state == C_WAIT);
        c->state = C_WRITE;
        conn_account(c);
        queue_write(c);
        r = next;
    }
}

/*
 * Writes the queued answers; a connection then goes on with its next request.
 * The clock is read again before each pass: handlers ran since the loop woke,
 * and an answer's end starts the idle time (a slow handler must not count).
 */
static void loop_flush(loop_t *lp)
{
    while (lp->wq) {
        conn_t *c = lp->wq;
        lp->wq = lp->wq_tail = NULL;
        lp->now = ep_time_mono_ns();
        while (c) {
            conn_t *next = c->wnext;
            c->queued = 0;
            ep__http_conn_run(c); /* may queue c again, for the next pass */
            c = next;
        }
    }
}

/*
 * Runs the heavy requests deferred by earlier rounds, oldest first, while this
 * round's heavy budget lasts; the rest wait on (epoll is polled, not waited
 * on, while any wait).
 */
static void loop_deferred(loop_t *lp)
{
    while (lp->defer && lp->heavy_ns < HEAVY_ROUND_NS) {
        conn_t *c = lp->defer;
        defer_unlink(c);
        dispatch(c);
        ep__http_conn_run(c);
    }
}

void *ep__http_loop_main(void *arg)
{
    loop_t *lp = arg;
    ep_http_server_t *s = lp->srv;
    char name[16];

    lp->self = pthread_self();
    memcpy(name, EP_STRLIT("http-")); /* thread names hold 15 characters */
    snprintf(name + 5, sizeof(name) - 5, "%.10s", s->name);
    pthread_setname_np(pthread_self(), name);
    lp->now = lp->last_sweep = ep_time_mono_ns();
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        unsigned seen = atomic_load(&lp->resumes);
        struct epoll_event ev[EPOLL_BATCH];
        int timeout, n;

        loop_answers(lp);
        loop_flush(lp);
        atomic_store(&lp->sleeping, 1);
        if (atomic_load(&lp->resumes) != seen || lp->local || lp->wq || lp->defer) {
            timeout = 0;
        } else {
            timeout = lp->n_conns > 0 || lp->accept_paused ? (int)(SWEEP_NS / 1000000) : -1;
        }
        n = epoll_wait(lp->epfd, ev, EPOLL_BATCH, timeout);
        atomic_store(&lp->sleeping, 0);
        lp->now = ep_time_mono_ns();
        lp->heavy_ns = 0;
        for (int i = 0; i < n; i++) {
            void *p = ev[i].data.ptr;
            if (p == &lp->listen_marker) {
                loop_accept(lp);
            } else if (p == &lp->wake_marker) {
                uint64_t v;
                ssize_t r = read(lp->wakefd, &v, sizeof(v));
                (void)r;
            } else {
                conn_event(p, ev[i].events);
            }
        }
        loop_deferred(lp);
        loop_flush(lp);
        if (lp->now - lp->last_sweep >= SWEEP_NS) {
            ep__http_loop_sweep(lp);
        }
        if (lp->pressure) {
            ep__http_loop_shed(lp, NULL); /* may queue 503 answers: the next round writes them */
        }
        if (lp->n_paused > 0 && !mem_over(s)) {
            ep__http_loop_resume(lp);
        }
        ep__http_loop_reap(lp);
    }
    return NULL;
}
