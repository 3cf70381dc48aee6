/*
 * gRPC server: nghttp2 sessions driven by epoll loops of our own (see
 * ep_grpc_server.h for the contract).
 *
 * Threads: each loop owns its listener (SO_REUSEPORT), its connections and
 * their calls; nothing of a loop is touched by another thread except the
 * answer stack. An answer (ep_grpc_answer) is written into the call and the
 * call pushed onto its loop's lock-free stack; the loop is woken through an
 * eventfd unless the answer came from the loop itself (a synchronous queue),
 * and applies the answers in order after every round. A call is freed only by
 * its loop, once its stream is closed and no answer is owed.
 *
 * Flow control is by hand (NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE): DATA is given
 * back to the connection window at once, and to the stream's window at once
 * unless the call's handler has not answered yet; then it is held until the
 * answer, so a client streaming faster than the queue accepts is held back by
 * HTTP/2 instead of filling our memory.
 *
 * Calls and their buffers are reused from a per-loop free list: a unary call
 * allocates nothing once the loop is warm, besides what its handler does.
 *
 * This file: connections, loops, listeners and the server object; calls and
 * the nghttp2 stream callbacks are in ep_grpc_server_call.c.
 */
#include "grpc/ep_grpc_server_int.h"

#include "base/ep_error.h"
#include "base/ep_list.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "grpc/ep_grpc_h2.h"
#include "grpc/ep_grpc_wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define WBUF_HIGH     (256 * 1024) /* stop asking nghttp2 for frames above this */
#define TICK_MS       100
#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW   (16 << 20)

__thread loop_t *ep__grpc_tl_loop;

/* ------------------------------------------------------------ connections */

static void conn_close(conn_t *c)
{
    loop_t *l = c->loop;

    while (c->calls) {
        ep_grpc_call_t *k = c->calls;
        if (!k->finished && k->method >= 0) {
            k->code = EP_GRPC_CANCELLED;
            ep__grpc_observe(k);
        }
        ep__grpc_call_closed(k);
    }
    nghttp2_session_del(c->h2);
    if (c->ssl) {
        SSL_free(c->ssl);
    }
    epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
    /*
     * Unread input makes close() send a reset, and a reset may make the peer drop
     * what we sent last (a GOAWAY, a final status): read it off first.
     */
    for (int i = 0; i < 16 && recv(c->fd, l->rbuf, READ_CHUNK, MSG_DONTWAIT) > 0; i++) {
    }
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    EP_DLIST_UNLINK(l->conns, c);
    l->nconns--;
    ep_buf_close(&c->wbuf);
    ep_free(c);
}

/* Writes what is pending; 0, or -1 when the connection is dead. */
static int conn_write(conn_t *c)
{
    while (c->woff < c->wbuf.len) {
        ssize_t w;
        size_t n = c->wbuf.len - c->woff;
        if (c->ssl) {
            int r = SSL_write(c->ssl, c->wbuf.data + c->woff, (int)(n > INT32_MAX ? INT32_MAX : n));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    return 0;
                }
                return -1;
            }
            w = r;
        } else {
            w = send(c->fd, c->wbuf.data + c->woff, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    return 0;
                }
                return -1;
            }
        }
        c->woff += (size_t)w;
    }
    ep_buf_reset(&c->wbuf);
    c->woff = 0;
    return 0;
}

static void want_out(conn_t *c, int on)
{
    struct epoll_event ev;

    if (c->want_out == on) {
        return;
    }
    c->want_out = on;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Moves nghttp2's frames out to the socket. 0, or -1: close the connection. */
static int conn_flush(conn_t *c)
{
    if (c->handshaking) {
        return 0;
    }
    for (;;) {
        if (ep_grpc_h2_fill(c->h2, &c->wbuf, c->woff, WBUF_HIGH) != 0) {
            return -1;
        }
        if (c->wbuf.len == c->woff) {
            break;
        }
        if (conn_write(c) != 0) {
            return -1;
        }
        if (c->wbuf.len != c->woff) {
            break; /* the socket is full */
        }
    }
    want_out(c, c->wbuf.len != c->woff);
    if (c->wbuf.len == c->woff && !nghttp2_session_want_read(c->h2) &&
        !nghttp2_session_want_write(c->h2)) {
        return -1; /* GOAWAY done, or the peer's GOAWAY and nothing left */
    }
    return 0;
}

static int conn_start_h2(conn_t *c)
{
    ep_grpc_server_t *s = c->loop->s;
    nghttp2_settings_entry st[3] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)s->o.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16 * 1024},
    };

    if (nghttp2_session_server_new2(&c->h2, s->cbs, c, s->h2opt) != 0) {
        return -1;
    }
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, st, 3);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    if (c->loop->quiesced) {
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        c->goaway_sent = 1;
    }
    ep__grpc_mark_dirty(c);
    return 0;
}

static int conn_handshake(conn_t *c)
{
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    int r = SSL_do_handshake(c->ssl);

    if (r == 1) {
        SSL_get0_alpn_selected(c->ssl, &proto, &plen);
        if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
            return -1; /* gRPC over TLS is HTTP/2 only */
        }
        c->handshaking = 0;
        return conn_start_h2(c);
    }
    r = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Reads what the socket has; 0, or -1: close. */
static int conn_read(conn_t *c)
{
    loop_t *l = c->loop;

    if (c->handshaking) {
        if (conn_handshake(c) != 0) {
            return -1;
        }
        if (c->handshaking) {
            return 0;
        }
        /* Done: the client's first frames may already sit decrypted in OpenSSL. */
    }
    for (int rounds = 0; rounds < 4; rounds++) {
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, l->rbuf, READ_CHUNK);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return 0;
                }
                return -1;
            }
            n = r;
        } else {
            n = recv(c->fd, l->rbuf, READ_CHUNK, 0);
            if (n < 0) {
                return errno == EAGAIN || errno == EINTR ? 0 : -1;
            }
            if (n == 0) {
                return -1;
            }
        }
        c->last_rx_ms = ep_time_mono_ms();
        c->ping_sent_ms = 0; /* anything from the peer shows it is alive */
        if (nghttp2_session_mem_recv(c->h2, l->rbuf, (size_t)n) < 0) {
            return -1;
        }
        ep__grpc_mark_dirty(c);
        if (c->ssl) {
            /* OpenSSL may hold bytes epoll cannot see: read until it wants the socket. */
            rounds = 0;
            continue;
        }
        if (n < READ_CHUNK) {
            return 0;
        }
    }
    return 0;
}

static void accept_all(loop_t *l)
{
    ep_grpc_server_t *s = l->s;

    for (;;) {
        struct sockaddr_storage sa = {0};
        socklen_t sl = sizeof(sa);
        int one = 1;
        int fd = accept4(l->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        conn_t *c;
        struct epoll_event ev;

        if (fd < 0) {
            return;
        }
        if (l->nconns >= s->o.max_connections || l->quiesced) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = ep_calloc(1, sizeof(*c));
        c->loop = l;
        c->fd = fd;
        c->last_rx_ms = ep_time_mono_ms();
        if (sa.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
            memset(c->peer, 0, 10);
            c->peer[10] = c->peer[11] = 0xff;
            memcpy(c->peer + 12, &in->sin_addr, 4);
            c->has_peer = 1;
        } else if (sa.ss_family == AF_INET6) {
            memcpy(c->peer, &((const struct sockaddr_in6 *)&sa)->sin6_addr, 16);
            c->has_peer = 1;
        }
        c->next = l->conns;
        if (l->conns) {
            l->conns->prev = c;
        }
        l->conns = c;
        l->nconns++;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
        if (s->o.tls) {
            c->io.fd = fd;
            c->ssl = ep_tls_accept(s->o.tls, &c->io);
            if (c->ssl == NULL) {
                conn_close(c);
                continue;
            }
            ep_tls_alpn_h2(c->ssl);
            /* The write buffer grows and moves between a short write and its retry. */
            SSL_set_mode(c->ssl,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            SSL_set_accept_state(c->ssl);
            c->handshaking = 1;
            if (conn_handshake(c) != 0) {
                conn_close(c);
            }
            continue;
        }
        if (conn_start_h2(c) != 0) {
            conn_close(c);
        }
    }
}

/* A connection closed while it was on the dirty list must leave it first. */
static void conn_drop(loop_t *l, conn_t *c)
{
    if (c->dirty) {
        conn_t **pp = &l->dirty;
        while (*pp && *pp != c) {
            pp = &(*pp)->dirty_next;
        }
        if (*pp) {
            *pp = c->dirty_next;
        }
    }
    conn_close(c);
}

/* Deadlines, watch ticks and keepalive, about every TICK_MS. */
static void timers(loop_t *l)
{
    ep_grpc_server_t *s = l->s;
    int64_t now = ep_time_mono_ms();
    conn_t *c = l->conns;

    while (c) {
        conn_t *next = c->next;
        ep_grpc_call_t *k = c->calls;
        while (k) {
            ep_grpc_call_t *kn = k->next;
            if (!k->finished && k->deadline_ms && now >= k->deadline_ms) {
                ep__grpc_call_finish(k, EP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
            } else if (!k->finished && !k->busy && k->next_tick_ms && now >= k->next_tick_ms) {
                k->next_tick_ms = 0;
                ep__grpc_invoke(k, (const uint8_t *)k->watch_msg.data, k->watch_msg.len);
            }
            k = kn;
        }
        if (c->ping_sent_ms && now - c->ping_sent_ms >= s->o.keepalive_timeout_ms) {
            conn_drop(l, c); /* the keepalive PING went unanswered */
        } else if (!c->handshaking && !c->ping_sent_ms &&
                   now - c->last_rx_ms >= s->o.keepalive_ms) {
            nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
            c->ping_sent_ms = now;
            ep__grpc_mark_dirty(c);
        }
        c = next;
    }
}

static void do_quiesce(loop_t *l)
{
    if (l->quiesced) {
        return;
    }
    l->quiesced = 1;
    if (l->lfd >= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, l->lfd, NULL);
        close(l->lfd);
        l->lfd = -1;
    }
    for (conn_t *c = l->conns; c; c = c->next) {
        if (!c->handshaking && !c->goaway_sent) {
            nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                                  NULL, 0);
            c->goaway_sent = 1;
            ep__grpc_mark_dirty(c);
        }
        /* Health watchers hear the news now (NOT_SERVING), not at their next tick. */
        for (ep_grpc_call_t *k = c->calls; k; k = k->next) {
            if (k->method >= 0 && l->s->methods[k->method].kind == EP_GRPC_WATCH && !k->busy &&
                !k->finished && k->nmsg > 0) {
                k->next_tick_ms = 0;
                ep__grpc_invoke(k, (const uint8_t *)k->watch_msg.data, k->watch_msg.len);
            }
        }
    }
}

static void flush_dirty(loop_t *l)
{
    while (l->dirty) {
        conn_t *c = l->dirty;
        l->dirty = c->dirty_next;
        c->dirty = 0;
        c->dirty_next = NULL;
        if (conn_flush(c) != 0) {
            conn_close(c);
        }
    }
}

static void *loop_main(void *arg)
{
    loop_t *l = arg;
    ep_grpc_server_t *s = l->s;
    int64_t last_tick = ep_time_mono_ms();

    ep__grpc_tl_loop = l;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        struct epoll_event evs[64];
        int n = epoll_wait(l->ep, evs, 64, TICK_MS);
        int64_t now;

        if (atomic_load_explicit(&s->quiesce, memory_order_acquire)) {
            do_quiesce(l);
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &l->lfd) {
                accept_all(l);
            } else if (p == &l->efd) {
                uint64_t v;
                ssize_t r = read(l->efd, &v, sizeof(v));
                (void)r;
            } else {
                conn_t *c = p;
                int bad = 0;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    bad = conn_read(c) != 0;
                }
                if (!bad && (evs[i].events & EPOLLOUT)) {
                    if (c->handshaking) {
                        bad = conn_read(c) != 0;
                    } else {
                        bad = conn_write(c) != 0;
                        ep__grpc_mark_dirty(c);
                    }
                }
                if (bad) {
                    conn_drop(l, c);
                    /* Later events of this round may name it: skip them. */
                    for (int j = i + 1; j < n; j++) {
                        if (evs[j].data.ptr == c) {
                            evs[j].data.ptr = &l->efd;
                        }
                    }
                }
            }
        }
        ep__grpc_drain_posted(l);
        now = ep_time_mono_ms();
        if (now - last_tick >= TICK_MS) {
            last_tick = now;
            timers(l);
            ep__grpc_drain_posted(l);
        }
        flush_dirty(l);
    }
    while (l->conns) {
        conn_close(l->conns);
    }
    return NULL;
}

/* ------------------------------------------------------------ server */

int ep_grpc_server_create(const ep_grpc_server_opts_t *opts, ep_grpc_server_t **out)
{
    ep_grpc_server_t *s = ep_calloc(1, sizeof(*s));

    s->o = *opts;
    snprintf(s->name, sizeof(s->name), "%s", opts->name ? opts->name : "grpc");
    snprintf(s->bind_addr, sizeof(s->bind_addr), "%s",
             opts->bind_addr ? opts->bind_addr : "0.0.0.0");
    s->o.name = s->name;
    s->o.bind_addr = s->bind_addr;
    s->o.threads = opts->threads > 0 ? opts->threads : 1;
    s->o.max_message = opts->max_message ? opts->max_message : 4 * 1024 * 1024;
    s->o.keepalive_ms = opts->keepalive_ms > 0 ? opts->keepalive_ms : 2 * 3600 * 1000;
    s->o.keepalive_timeout_ms = opts->keepalive_timeout_ms > 0 ? opts->keepalive_timeout_ms : 20000;
    s->o.max_streams = opts->max_streams > 0 ? opts->max_streams : 100;
    s->o.max_connections = opts->max_connections > 0 ? opts->max_connections : 4096;
    nghttp2_session_callbacks_new(&s->cbs);
    ep__grpc_session_callbacks(s->cbs);
    nghttp2_option_new(&s->h2opt);
    nghttp2_option_set_no_auto_window_update(s->h2opt, 1);
    nghttp2_option_set_max_send_header_block_length(s->h2opt, 64 * 1024);
    *out = s;
    return 0;
}

int ep_grpc_server_method(ep_grpc_server_t *s, const char *path, int kind, ep_grpc_handler_cb cb,
                          void *arg)
{
    method_t *m;

    ep_assert(s->nmethods < MAX_METHODS && !s->started);
    m = &s->methods[s->nmethods];
    m->path = ep_strdup(path);
    m->kind = kind;
    m->cb = cb;
    m->arg = arg;
    return s->nmethods++;
}

const char *ep_grpc_server_method_path(const ep_grpc_server_t *s, int idx)
{
    return idx >= 0 && idx < s->nmethods ? s->methods[idx].path : NULL;
}

void ep_grpc_server_set_observer(ep_grpc_server_t *s, ep_grpc_observe_cb cb, void *arg)
{
    s->observe = cb;
    s->observe_arg = arg;
}

static int listen_on(ep_grpc_server_t *s, int port, char *err, size_t errlen)
{
    struct sockaddr_storage sa = {0};
    socklen_t sl;
    int fd, one = 1;

    memset(&sa, 0, sizeof(sa));
    if (inet_pton(AF_INET, s->bind_addr, &((struct sockaddr_in *)&sa)->sin_addr) == 1) {
        ((struct sockaddr_in *)&sa)->sin_family = AF_INET;
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
        sl = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, s->bind_addr, &((struct sockaddr_in6 *)&sa)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&sa)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)port);
        sl = sizeof(struct sockaddr_in6);
    } else {
        snprintf(err, errlen, "%s gRPC: bad bind address %s", s->name, s->bind_addr);
        return -1;
    }
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s gRPC: socket: %s", s->name, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s->o.threads > 1) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "%s gRPC: listen on %s:%d: %s", s->name, s->bind_addr, port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int ep_grpc_server_start(ep_grpc_server_t *s, char *err, size_t errlen)
{
    int port = s->o.port;

    s->loops = ep_calloc((size_t)s->o.threads, sizeof(*s->loops));
    for (int i = 0; i < s->o.threads; i++) {
        loop_t *l = &s->loops[i];
        struct epoll_event ev;
        l->s = s;
        l->lfd = -1;
        l->ep = epoll_create1(EPOLL_CLOEXEC);
        l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ev.events = EPOLLIN;
        ev.data.ptr = &l->efd;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &ev);
    }
    s->nloops = s->o.threads;
    for (int i = 0; i < s->nloops; i++) {
        loop_t *l = &s->loops[i];
        struct epoll_event ev;
        l->lfd = listen_on(s, port, err, errlen);
        if (l->lfd < 0) {
            return EP_EIO;
        }
        if (port == 0) {
            union {
                struct sockaddr a;
                struct sockaddr_in in;
                struct sockaddr_in6 in6;
            } sa;
            socklen_t sl = sizeof(sa);
            memset(&sa, 0, sizeof(sa));
            if (getsockname(l->lfd, &sa.a, &sl) != 0) {
                snprintf(err, errlen, "gRPC listener: getsockname: %s", strerror(errno));
                return EP_EIO;
            }
            port = ntohs(sa.a.sa_family == AF_INET ? sa.in.sin_port : sa.in6.sin6_port);
        }
        ev.events = EPOLLIN;
        ev.data.ptr = &l->lfd;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lfd, &ev);
    }
    s->port = port;
    for (int i = 0; i < s->nloops; i++) {
        if (pthread_create(&s->loops[i].th, NULL, loop_main, &s->loops[i]) != 0) {
            snprintf(err, errlen, "%s gRPC: cannot start a thread", s->name);
            s->nloops = i;
            return EP_EIO;
        }
    }
    s->started = 1;
    return 0;
}

int ep_grpc_server_port(const ep_grpc_server_t *s)
{
    return s->port;
}

void ep_grpc_server_quiesce(ep_grpc_server_t *s)
{
    if (s == NULL || atomic_exchange(&s->quiesce, 1)) {
        return;
    }
    for (int i = 0; i < s->nloops; i++) {
        uint64_t one = 1;
        ssize_t w = write(s->loops[i].efd, &one, sizeof(one));
        (void)w;
    }
}

int64_t ep_grpc_server_busy(ep_grpc_server_t *s)
{
    return s ? atomic_load_explicit(&s->busy, memory_order_relaxed) : 0;
}

void ep_grpc_server_destroy(ep_grpc_server_t *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stop, 1);
    for (int i = 0; i < s->nloops; i++) {
        uint64_t one = 1;
        ssize_t w = write(s->loops[i].efd, &one, sizeof(one));
        (void)w;
        pthread_join(s->loops[i].th, NULL);
    }
    for (int i = 0; s->loops && i < s->o.threads; i++) {
        loop_t *l = &s->loops[i];
        ep__grpc_drain_posted(l); /* answers that came after the loop stopped */
        while (l->free_calls) {
            ep_grpc_call_t *k = l->free_calls;
            l->free_calls = k->free_next;
            ep__grpc_call_destroy(k);
        }
        if (l->lfd >= 0) {
            close(l->lfd);
        }
        if (l->ep >= 0) {
            close(l->ep);
        }
        if (l->efd >= 0) {
            close(l->efd);
        }
        ep_buf_close(&l->scratch);
    }
    for (int i = 0; i < s->nmethods; i++) {
        ep_free(s->methods[i].path);
    }
    nghttp2_session_callbacks_del(s->cbs);
    nghttp2_option_del(s->h2opt);
    ep_free(s->loops);
    ep_free(s);
}
