/*
 * The HTTP server's setup and request accessors (design in ep_http_server.c):
 * creating a server, registering routes, binding the listening socket and
 * starting its loops, stats, quiescing and destroying it; and the accessors a
 * handler reads its request with. The loops and connections are in
 * ep_http_server.c.
 */
#include "http/ep_http_server_int.h"
#include "base/ep_error.h"
#include "http/ep_http_parse.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
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

int ep_http_server_create(const ep_http_server_opts_t *opts, ep_http_server_t **out)
{
    ep_http_server_t *s = ep_calloc(1, sizeof(*s));

    s->opts = *opts;
    snprintf(s->name, sizeof(s->name), "%s", opts->name ? opts->name : "http");
    snprintf(s->bind_addr, sizeof(s->bind_addr), "%s",
             opts->bind_addr ? opts->bind_addr : "0.0.0.0");
    s->opts.name = s->name;
    s->opts.bind_addr = s->bind_addr;
    if (s->opts.threads < 1) {
        s->opts.threads = 1;
    }
    s->listen_fd = -1;
    if (s->opts.max_header == 0) {
        s->opts.max_header = 8192;
    }
    if (s->opts.max_body == 0) {
        s->opts.max_body = 1 << 20;
    }
    if (s->opts.idle_timeout_ms <= 0) {
        s->opts.idle_timeout_ms = 30000;
    }
    if (s->opts.max_connections <= 0) {
        s->opts.max_connections = 4096;
    }
    if (s->opts.header_timeout_ms <= 0) {
        s->opts.header_timeout_ms = 10000;
    }
    if (s->opts.body_timeout_ms <= 0) {
        s->opts.body_timeout_ms = 20000;
    }
    if (s->opts.body_min_rate <= 0) {
        s->opts.body_min_rate = 500;
    }
    if (s->opts.send_timeout_ms <= 0) {
        s->opts.send_timeout_ms = 30000;
    }
    if (s->opts.memory_limit == 0) {
        s->opts.memory_limit = (size_t)64 << 20;
    }
    pthread_mutex_init(&s->peers_mu, NULL);
    if (s->opts.max_conns_per_client > 0) {
        size_t n = 64;
        while (n < 2 * (size_t)s->opts.max_connections) {
            n *= 2;
        }
        s->peers = ep_calloc(n, sizeof(peer_t));
        s->peers_mask = n - 1;
    }
    *out = s;
    return 0;
}

/* ---- connections per client address ---- */

static size_t peer_home(const ep_http_server_t *s, const uint8_t addr[16])
{
    uint64_t a, b;

    memcpy(&a, addr, 8);
    memcpy(&b, addr + 8, 8);
    a ^= b * UINT64_C(0x9e3779b97f4a7c15);
    a ^= a >> 29;
    a *= UINT64_C(0xbf58476d1ce4e5b9);
    a ^= a >> 32;
    return (size_t)a & s->peers_mask;
}

/* The slot of addr, or the free slot where it would go. Under peers_mu. */
static size_t peer_find(const ep_http_server_t *s, const uint8_t addr[16])
{
    size_t i = peer_home(s, addr);

    while (s->peers[i].count != 0 && memcmp(s->peers[i].addr, addr, 16) != 0) {
        i = (i + 1) & s->peers_mask;
    }
    return i;
}

int ep__http_peer_acquire(ep_http_server_t *s, const uint8_t addr[16])
{
    size_t i;
    int rc = 0;

    if (s->peers == NULL) {
        return 0;
    }
    pthread_mutex_lock(&s->peers_mu);
    i = peer_find(s, addr);
    if (s->peers[i].count == 0) {
        memcpy(s->peers[i].addr, addr, 16); /* the table is twice max_connections: room */
        s->peers[i].count = 1;
    } else if (s->peers[i].count >= (uint32_t)s->opts.max_conns_per_client) {
        rc = -1;
    } else {
        s->peers[i].count++;
    }
    pthread_mutex_unlock(&s->peers_mu);
    return rc;
}

void ep__http_peer_release(ep_http_server_t *s, const uint8_t addr[16])
{
    size_t i, j;

    if (s->peers == NULL) {
        return;
    }
    pthread_mutex_lock(&s->peers_mu);
    i = peer_find(s, addr);
    ep_assert(s->peers[i].count > 0);
    if (--s->peers[i].count == 0) {
        /*
         * Backward-shift deletion: move up every later entry of the run whose
         * home is not between the hole and itself, so lookups need no tombstones.
         */
        for (j = (i + 1) & s->peers_mask; s->peers[j].count != 0; j = (j + 1) & s->peers_mask) {
            size_t k = peer_home(s, s->peers[j].addr);
            int stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
            if (!stays) {
                s->peers[i] = s->peers[j];
                s->peers[j].count = 0;
                i = j;
            }
        }
    }
    pthread_mutex_unlock(&s->peers_mu);
}

void ep_http_server_route(ep_http_server_t *s, unsigned methods, const char *path,
                          ep_http_handler_cb handler, void *arg)
{
    ep_http_server_route_ex(s, methods, path, handler, arg, 0);
}

void ep_http_server_route_ex(ep_http_server_t *s, unsigned methods, const char *path,
                             ep_http_handler_cb handler, void *arg, size_t max_body)
{
    route_t *r;

    ep_assert(s->n_routes < MAX_ROUTES && s->loops == NULL);
    if (methods & EP_HTTP_GET) {
        methods |= EP_HTTP_HEAD;
    }
    r = &s->routes[s->n_routes++];
    r->methods = methods;
    r->path = ep_strdup(path);
    r->handler = handler;
    r->arg = arg;
    r->max_body = max_body ? max_body : s->opts.max_body;
}

void ep_http_server_set_observer(ep_http_server_t *s, ep_http_observe_cb cb, void *arg)
{
    ep_assert(s->loops == NULL);
    s->observe = cb;
    s->observe_arg = arg;
}

const char *ep_http_server_name(const ep_http_server_t *s)
{
    return s->name;
}

const char *ep_http_server_route_path(const ep_http_server_t *s, int idx)
{
    return idx >= 0 && idx < s->n_routes ? s->routes[idx].path : NULL;
}

/* The listening socket all loops accept from. Returns the fd, or -1 with errno. */
static int listen_on(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 ||
        listen(fd, LISTEN_BACKLOG) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int loop_start(ep_http_server_t *s, loop_t *lp, char *err, size_t errlen)
{
    struct epoll_event ev;
    int limit = s->opts.max_connections / s->n_loops;

    lp->srv = s;
    lp->max_conns = limit > 0 ? limit : 1;
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (lp->epfd < 0 || lp->wakefd < 0) {
        snprintf(err, errlen, "%s: event loop set-up failed: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLEXCLUSIVE;
    ev.data.ptr = &lp->listen_marker;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, s->listen_fd, &ev) != 0) {
        snprintf(err, errlen, "%s: event loop set-up failed: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &lp->wake_marker;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wakefd, &ev) != 0) {
        snprintf(err, errlen, "%s: event loop set-up failed: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    if (pthread_create(&lp->tid, NULL, ep__http_loop_main, lp) != 0) {
        snprintf(err, errlen, "%s: cannot start a thread", s->name);
        return EP_EIO;
    }
    lp->started = 1;
    return 0;
}

int ep_http_server_start(ep_http_server_t *s, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    socklen_t salen = sizeof(sa);

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->opts.port);
    /*
     * Bodies and answers of 256 KiB and more come straight from mmap, so that
     * freeing them (a shed connection, a finished batch) gives the memory back
     * to the system: glibc otherwise raises its mmap threshold to the largest
     * block freed so far (up to 32 MiB) and keeps such blocks in its heaps.
     */
    mallopt(M_MMAP_THRESHOLD, BODY_KEEP);
    if (inet_pton(AF_INET, s->bind_addr, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "BIND_ADDR: '%s' is not an IPv4 address", s->bind_addr);
        return EP_EINVAL;
    }
    s->listen_fd = listen_on(&sa);
    if (s->listen_fd < 0) {
        snprintf(err, errlen, "%s: cannot listen on %s:%d (%s)", s->name, s->bind_addr,
                 s->opts.port, strerror(errno));
        return EP_EIO;
    }
    if (getsockname(s->listen_fd, (struct sockaddr *)&sa, &salen) == 0) {
        s->port = ntohs(sa.sin_port);
    }
    s->n_loops = s->opts.threads;
    s->loops = ep_calloc((size_t)s->n_loops, sizeof(loop_t));
    for (int i = 0; i < s->n_loops; i++) {
        s->loops[i].epfd = s->loops[i].wakefd = -1; /* destroy closes only what was opened */
        pthread_mutex_init(&s->loops[i].mu, NULL);
    }
    for (int i = 0; i < s->n_loops; i++) {
        int rc = loop_start(s, &s->loops[i], err, errlen);
        if (rc != 0) {
            return rc; /* ep_http_server_destroy undoes what was started */
        }
    }
    return 0;
}

int ep_http_server_port(const ep_http_server_t *s)
{
    return s->port;
}

/*
 * Draining: connections that arrive now are accepted and closed at once, and
 * answers on open ones carry "Connection: close".
 */
void ep_http_server_quiesce(ep_http_server_t *s)
{
    atomic_store(&s->draining, 1);
}

void ep_http_server_stats(ep_http_server_t *s, ep_http_server_stats_t *st)
{
    st->requests = atomic_load_explicit(&s->requests, memory_order_relaxed);
    st->status_2xx = atomic_load_explicit(&s->s2xx, memory_order_relaxed);
    st->status_4xx = atomic_load_explicit(&s->s4xx, memory_order_relaxed);
    st->status_5xx = atomic_load_explicit(&s->s5xx, memory_order_relaxed);
    st->in_flight = atomic_load_explicit(&s->in_flight, memory_order_relaxed);
    st->connections = atomic_load_explicit(&s->n_conns, memory_order_relaxed);
    st->memory_held = atomic_load_explicit(&s->mem_held, memory_order_relaxed);
    st->closed_idle = atomic_load_explicit(&s->kills[K_IDLE], memory_order_relaxed);
    st->closed_header_timeout =
        atomic_load_explicit(&s->kills[K_HEADER_TIMEOUT], memory_order_relaxed);
    st->closed_body_timeout = atomic_load_explicit(&s->kills[K_BODY_TIMEOUT], memory_order_relaxed);
    st->closed_stalled = atomic_load_explicit(&s->kills[K_STALLED], memory_order_relaxed);
    st->closed_send_timeout = atomic_load_explicit(&s->kills[K_SEND_TIMEOUT], memory_order_relaxed);
    st->evicted = atomic_load_explicit(&s->kills[K_EVICTED], memory_order_relaxed);
    st->refused_full = atomic_load_explicit(&s->kills[K_FULL], memory_order_relaxed);
    st->refused_per_client = atomic_load_explicit(&s->kills[K_PER_CLIENT], memory_order_relaxed);
    st->shed_memory = atomic_load_explicit(&s->kills[K_SHED], memory_order_relaxed);
    st->refused_memory = atomic_load_explicit(&s->kills[K_REFUSED_MEMORY], memory_order_relaxed);
    st->paused_memory = atomic_load_explicit(&s->kills[K_PAUSED], memory_order_relaxed);
    st->deferred_heavy = atomic_load_explicit(&s->kills[K_DEFERRED], memory_order_relaxed);
    st->tls_failed = atomic_load_explicit(&s->kills[K_TLS_FAILED], memory_order_relaxed);
}

void ep_http_server_destroy(ep_http_server_t *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store_explicit(&s->stop, 1, memory_order_release);
    for (int i = 0; i < s->n_loops; i++) {
        loop_t *lp = &s->loops[i];
        if (lp->started) {
            uint64_t one = 1;
            ssize_t w = write(lp->wakefd, &one, sizeof(one));
            (void)w;
            pthread_join(lp->tid, NULL);
        }
    }
    /*
     * A thread that answered a request the loops have already finished may still
     * be between its append and its wake-up call; the joins above order its
     * count before this read.
     */
    while (atomic_load(&s->handing_over) > 0) {
        ep_time_sleep_ms(1);
    }
    for (int i = 0; i < s->n_loops; i++) {
        loop_t *lp = &s->loops[i];
        while (lp->conns) {
            conn_t *c = lp->conns;
            c->state = C_HEAD; /* a request still waiting is dropped with its connection */
            ep__http_conn_close(c);
        }
        ep__http_loop_reap(lp);
        ep_free(lp->shed);
        ep_free(lp->resume);
        if (lp->epfd >= 0) {
            close(lp->epfd);
        }
        if (lp->wakefd >= 0) {
            close(lp->wakefd);
        }
        pthread_mutex_destroy(&lp->mu);
    }
    ep_free(s->loops);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    for (int i = 0; i < s->n_routes; i++) {
        ep_free(s->routes[i].path);
    }
    ep_free(s->peers);
    pthread_mutex_destroy(&s->peers_mu);
    ep_free(s);
}

/* ---- request accessors ---- */

const char *ep_http_req_method(const ep_http_req_t *r)
{
    return r->head.method ? r->head.method : "";
}

const char *ep_http_req_path(const ep_http_req_t *r)
{
    return r->head.path ? r->head.path : "";
}

const char *ep_http_req_header(ep_http_req_t *r, const char *name)
{
    return ep_http_head_field(&r->head, name);
}

const char *ep_http_req_query(ep_http_req_t *r, const char *name)
{
    if (!r->q_done) {
        r->n_q = ep_http_query_split(r->head.query, r->q_name, r->q_value, MAX_QUERY);
        r->q_done = 1;
    }
    for (int i = 0; i < r->n_q; i++) {
        if (strcmp(r->q_name[i], name) == 0) {
            return r->q_value[i];
        }
    }
    return NULL;
}

const char *ep_http_req_body(const ep_http_req_t *r)
{
    return r->body.data ? r->body.data : "";
}

size_t ep_http_req_body_len(const ep_http_req_t *r)
{
    return r->body.len;
}

int64_t ep_http_req_start_ns(const ep_http_req_t *r)
{
    return r->start_ns;
}

int ep_http_req_route_index(const ep_http_req_t *r)
{
    return r->route ? (int)(r->route - r->srv->routes) : -1;
}

int ep_http_req_peer(const ep_http_req_t *r, uint8_t out[16])
{
    memcpy(out, r->conn->peer, 16);
    return r->conn->has_peer;
}
