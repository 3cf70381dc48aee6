/*
 * The HTTP server's defences against hostile clients (design in the header
 * comment of ep_http_server.c): the deadlines each loop's sweep applies, the
 * shedding pass over the memory budget, making room at the connection cap,
 * the per-client-address refusal, and the resumption of paused bodies. The
 * policy side, off the per-request path: the connection state machine they
 * act on is in ep_http_server.c.
 */
#include "base/ep_duration.h"
#include "http/ep_http_server_int.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

void ep__http_shed_warn(ep_http_server_t *s, int64_t now, const char *what)
{
    int64_t last = atomic_load_explicit(&s->warned_ns, memory_order_relaxed);

    if ((last == 0 || now - last >= WARN_EVERY_NS) &&
        atomic_compare_exchange_strong(&s->warned_ns, &last, now)) {
        ep_log_warn("http",
                    "%s: %s (held %lld of HTTP_MEMORY_LIMIT %zu bytes, %lld connections; so far "
                    "%llu shed, %llu requests refused for memory, %llu evicted at the cap)",
                    s->name, what, (long long)atomic_load(&s->mem_held), s->opts.memory_limit,
                    (long long)atomic_load(&s->n_conns),
                    (unsigned long long)atomic_load(&s->kills[K_SHED]),
                    (unsigned long long)atomic_load(&s->kills[K_REFUSED_MEMORY]),
                    (unsigned long long)atomic_load(&s->kills[K_EVICTED]));
    }
}

typedef struct shed_s {
    int64_t held;
    conn_t *c;
} shed_t;

static int shed_cmp(const void *a, const void *b)
{
    const shed_t *x = a, *y = b;

    return x->held < y->held ? 1 : x->held > y->held ? -1 : 0;
}

/*
 * Over the soft memory limit: frees the spare buffers of idle connections.
 * Past the hard limit it then closes the connections that hold the most (an
 * unread answer, the largest unfinished body; a body gets a 503 first) until
 * the server holds at most 7/8 of the soft limit; under the hard limit unread
 * answers are left to HTTP_SEND_TIMEOUT and large bodies are paused instead.
 * Requests waiting for their handler's answer, and self, are left alone.
 * Returns 1 when the server is under the soft limit afterwards. A pass that
 * could not get under it (or under the hard limit) is not repeated for
 * SHED_RETRY_NS unless the held bytes went past the hard limit since, so that
 * refusing requests stays cheap.
 */
int ep__http_loop_shed(loop_t *lp, conn_t *self)
{
    ep_http_server_t *s = lp->srv;
    int64_t limit = (int64_t)s->opts.memory_limit, low = limit - limit / 8;
    int n = 0, closed = 0;

    /* A failed pass at the soft limit does not hold back one at the hard limit. */
    if (lp->shed_fail_ns != 0 && lp->now - lp->shed_fail_ns < SHED_RETRY_NS &&
        (mem_over_hard(s) ? 2 : 1) <= lp->shed_fail_level) {
        return !mem_over(s); /* pressure stays: a later round tries again */
    }
    lp->pressure = 0;
    if (lp->shed == NULL) {
        lp->shed = ep_malloc((size_t)lp->max_conns * sizeof(shed_t));
    }
    for (conn_t *c = lp->conns; c; c = c->next) {
        if (c == self || c->state == C_WAIT) {
            continue;
        }
        if (c->state == C_HEAD && c->head_ns == 0 && c->in_off == c->in_len) {
            ep__http_conn_trim(c);
        } else if (n < lp->max_conns) {
            lp->shed[n].held = c->held;
            lp->shed[n++].c = c;
        }
    }
    if (mem_over_hard(s)) {
        qsort(lp->shed, (size_t)n, sizeof(shed_t), shed_cmp);
        for (int i = 0; i < n && atomic_load_explicit(&s->mem_held, memory_order_relaxed) > low;
             i++) {
            conn_t *c = lp->shed[i].c;
            count_kill(s, K_SHED);
            if (c->state == C_BODY) {
                ep__http_refuse_now(c, 503,
                                    "the server is over its memory budget (HTTP_MEMORY_LIMIT); "
                                    "retry later");
            } else {
                ep__http_conn_close(c);
            }
            closed++;
        }
    }
    if (closed) {
        ep__http_shed_warn(
            s, lp->now, "over the hard memory limit: closing the connections that hold the most");
    }
    if (mem_over(s)) {
        lp->shed_fail_ns = lp->now;
        lp->shed_fail_level = mem_over_hard(s) ? 2 : 1;
        return 0;
    }
    lp->shed_fail_ns = 0;
    return 1;
}

/*
 * How long a connection has kept us waiting for its client, to pick whom to
 * close at the connection cap: idle keep-alive since its last answer, a head
 * since its first byte, a body since its start less the time its bytes earned
 * at HTTP_BODY_MIN_RATE. -1: not to be evicted (a request being handled or
 * answered).
 */
static int64_t wait_score(const conn_t *c, int64_t now, int min_rate)
{
    switch (c->state) {
    case C_LINGER:
        return INT64_MAX; /* closing anyway */
    case C_HEAD:
        return now - (c->head_ns ? c->head_ns : c->idle_ns);
    case C_TLS:
        return now - c->idle_ns; /* the handshake, since the accept */
    case C_BODY:
        return now - c->body_ns -
               (int64_t)(c->body_got * UINT64_C(1000000000) / (uint64_t)min_rate);
    default:
        return -1;
    }
}

/*
 * At the cap: closes the connection that has kept us waiting longest, and with
 * it up to EVICT_BATCH - 1 more that kept us waiting a second or more, so that
 * a flood of new connections costs one scan per batch, not one per
 * connection (nginx drains its reusable connections 32 at a time too).
 * 1: room made.
 */
int ep__http_make_room(loop_t *lp)
{
    conn_t *top[EVICT_BATCH];
    int64_t score[EVICT_BATCH];
    int n = 0, k = lp->max_conns / 64;

    k = k < 1 ? 1 : k > EVICT_BATCH ? EVICT_BATCH : k;
    for (conn_t *c = lp->conns; c; c = c->next) {
        int64_t w = wait_score(c, lp->now, lp->srv->opts.body_min_rate);
        int i;
        if (w < 0 || (n == k && w <= score[n - 1])) {
            continue;
        }
        /* Insertion into the k worst so far, worst first. */
        i = n < k ? n++ : n - 1;
        while (i > 0 && score[i - 1] < w) {
            score[i] = score[i - 1];
            top[i] = top[i - 1];
            i--;
        }
        score[i] = w;
        top[i] = c;
    }
    for (int i = 0; i < n; i++) {
        if (i > 0 && score[i] < INT64_C(1000000000)) {
            break;
        }
        count_kill(lp->srv, K_EVICTED);
        ep__http_conn_close(top[i]);
    }
    if (n > 0) {
        ep__http_shed_warn(
            lp->srv, lp->now,
            "at HTTP_MAX_CONNECTIONS: closing the longest-waiting connections for new ones");
    }
    return n > 0;
}

/*
 * A new connection over HTTP_MAX_CONNECTIONS_PER_CLIENT: a 503 if the socket
 * takes it, closed. Over TLS only closed (a handshake would cost more than the
 * connection is allowed).
 */
void ep__http_refuse_per_client(ep_http_server_t *s, int fd)
{
    char msg[512]; /* the head in [0, 256), the body first at 256 */
    int body, n;

    if (s->opts.tls) {
        close(fd);
        count_kill(s, K_PER_CLIENT);
        return;
    }
    body = snprintf(msg + 256, 256,
                    "{\"error\":\"too many connections from this client address (limit %d, "
                    "HTTP_MAX_CONNECTIONS_PER_CLIENT)\"}\n",
                    s->opts.max_conns_per_client);
    n = snprintf(msg, 256,
                 "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nRetry-After: %d\r\nX-Content-Type-Options: nosniff\r\n"
                 "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                 body, s->opts.retry_after_s);
    memmove(msg + n, msg + 256, (size_t)body);
    if (send(fd, msg, (size_t)n + (size_t)body, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
        /* nothing more to do: the close below is the refusal */
    }
    shutdown(fd, SHUT_WR);
    close(fd);
    count_kill(s, K_PER_CLIENT);
}

/* The client's address as 16 bytes (IPv4 mapped into IPv6). 0: none (not IP). */
int ep__http_peer_key(const struct sockaddr_storage *ss, uint8_t out[16])
{
    memset(out, 0, 16);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return 1;
    }
    if (ss->ss_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
        return 1;
    }
    return 0;
}

#define MS INT64_C(1000000) /* ns in a ms */

/* The deadline a connection in C_BODY must meet: HTTP_BODY_TIMEOUT plus what its bytes earned. */
static int64_t body_deadline(const conn_t *c, const ep_http_server_opts_t *o)
{
    return c->body_ns + (int64_t)o->body_timeout_ms * MS +
           (int64_t)(c->body_got * UINT64_C(1000000000) / (uint64_t)o->body_min_rate);
}

static const char *dur(int ms, char *buf)
{
    return ep_duration_format((int64_t)ms * MS, buf, 32);
}

/* SERVER_READ_TIMEOUT: the whole request (head and body) within it of its first byte. */
static int read_late(const conn_t *c, const ep_http_server_opts_t *o, int64_t now)
{
    int64_t first = c->state == C_BODY ? c->req_ns : c->head_ns;

    return o->read_timeout_ms > 0 && first > 0 && now - first > (int64_t)o->read_timeout_ms * MS;
}

static void refuse_read_late(conn_t *c, const ep_http_server_opts_t *o, int kind)
{
    char msg[160], d[32];

    snprintf(msg, sizeof(msg),
             "the request did not arrive within %s of its first byte (SERVER_READ_TIMEOUT)",
             dur(o->read_timeout_ms, d));
    ep__http_refuse_now(c, 408, msg);
    count_kill(c->lp->srv, kind);
}

/* Applies the deadlines to one connection (see ep_http_server.c's design notes). */
static void conn_check(conn_t *c, int64_t now)
{
    ep_http_server_t *s = c->lp->srv;
    const ep_http_server_opts_t *o = &s->opts;
    int64_t idle = (int64_t)o->idle_timeout_ms * MS;
    char msg[200], d1[32];

    switch (c->state) {
    case C_LINGER:
        if (now > c->linger_until) {
            ep__http_conn_close(c);
        }
        break;
    case C_TLS:
        /* No 408: there is no channel to send it on yet. */
        if (now - c->idle_ns > (int64_t)o->header_timeout_ms * MS) {
            count_kill(s, K_TLS_FAILED);
            ep__http_conn_close(c);
        }
        break;
    case C_HEAD:
        if (c->head_ns == 0) {
            if (now - c->idle_ns > idle) {
                count_kill(s, K_IDLE); /* before the close: a client may look at once */
                ep__http_conn_close(c);
            } else if (now - c->idle_ns > IDLE_TRIM_NS) {
                ep__http_conn_trim(c);
            }
        } else if (read_late(c, o, now)) {
            refuse_read_late(c, o, K_HEADER_TIMEOUT);
        } else if (now - c->head_ns > (int64_t)o->header_timeout_ms * MS) {
            snprintf(msg, sizeof(msg),
                     "the request head did not arrive within %s of its first byte "
                     "(HTTP_HEADER_TIMEOUT)",
                     dur(o->header_timeout_ms, d1));
            ep__http_refuse_now(c, 408, msg);
            count_kill(s, K_HEADER_TIMEOUT);
        } else if (now - c->rx_ns > idle) {
            snprintf(msg, sizeof(msg), "no byte of the request head for %s (HTTP_IDLE_TIMEOUT)",
                     dur(o->idle_timeout_ms, d1));
            ep__http_refuse_now(c, 408, msg);
            count_kill(s, K_STALLED);
        }
        break;
    case C_BODY:
        if (read_late(c, o, now)) {
            refuse_read_late(c, o, K_BODY_TIMEOUT);
        } else if (now > body_deadline(c, o)) {
            snprintf(msg, sizeof(msg),
                     "the request body arrived slower than %d bytes/s after its first %s "
                     "(HTTP_BODY_MIN_RATE, HTTP_BODY_TIMEOUT)",
                     o->body_min_rate, dur(o->body_timeout_ms, d1));
            ep__http_refuse_now(c, 408, msg);
            count_kill(s, K_BODY_TIMEOUT);
        } else if (now - c->rx_ns > idle && c->paused) {
            /* Not the client's stall: we stopped reading. */
            snprintf(msg, sizeof(msg),
                     "the server stayed over its memory budget (HTTP_MEMORY_LIMIT) for %s while "
                     "this body waited; retry later",
                     dur(o->idle_timeout_ms, d1));
            ep__http_refuse_now(c, 503, msg);
            count_kill(s, K_SHED);
        } else if (now - c->rx_ns > idle) {
            snprintf(msg, sizeof(msg), "no byte of the request body for %s (HTTP_IDLE_TIMEOUT)",
                     dur(o->idle_timeout_ms, d1));
            ep__http_refuse_now(c, 408, msg);
            count_kill(s, K_STALLED);
        }
        break;
    case C_WRITE:
        if (!c->queued && (now - c->wr_ns > (int64_t)o->send_timeout_ms * MS ||
                           (o->write_timeout_ms > 0 && c->wr_start_ns > 0 &&
                            now - c->wr_start_ns > (int64_t)o->write_timeout_ms * MS))) {
            count_kill(s, K_SEND_TIMEOUT);
            ep__http_conn_close(c);
        }
        break;
    default:
        break;
    }
}

/* Applies the deadlines to every connection; resumes accepting after a pause. */
void ep__http_loop_sweep(loop_t *lp)
{
    conn_t *c = lp->conns;

    while (c) {
        conn_t *next = c->next;
        conn_check(c, lp->now);
        c = next;
    }
    if (lp->accept_paused && lp->now >= lp->resume_accept) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN | EPOLLEXCLUSIVE;
        ev.data.ptr = &lp->listen_marker;
        if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->srv->listen_fd, &ev) == 0) {
            lp->accept_paused = 0;
        }
    }
    lp->last_sweep = lp->now;
}

/*
 * Back under the soft memory limit: reads the paused bodies again. Their
 * bytes may have arrived while they were paused, and an edge-triggered epoll
 * raises no new edge for those. Each may pause again at once if its reads
 * take the server over the limit.
 */
void ep__http_loop_resume(loop_t *lp)
{
    int n = 0;

    if (lp->resume == NULL) {
        lp->resume = ep_malloc((size_t)lp->max_conns * sizeof(conn_t *));
    }
    for (conn_t *c = lp->conns; c && n < lp->max_conns; c = c->next) {
        if (c->paused) {
            lp->resume[n++] = c;
        }
    }
    /* A connection run here may close others (shedding): all were picked first. */
    for (int i = 0; i < n; i++) {
        conn_t *c = lp->resume[i];
        if (c->paused && c->state == C_BODY && !c->queued) {
            ep__http_conn_run(c);
        }
    }
}
