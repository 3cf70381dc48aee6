/*
 * HTTP server on libmicrohttpd. Per-request state lives in *con_cls from the
 * headers call to the completion notification; the body streams into it
 * piece by piece; the handler runs once the body is complete. Answers given
 * from another thread resume the suspended connection.
 *
 * Threads: we run the event loops, not libmicrohttpd. Each of opts.threads
 * loops owns one daemon in external-epoll mode; all daemons accept from one
 * listening socket (each holds a dup of it). A loop sleeps in epoll_wait on
 * its daemon's epoll fd and an eventfd, then calls MHD_run, which never
 * blocks. Why not MHD's own threads: in 0.9.75 (and 1.0.1) its internal epoll
 * loop calls epoll_wait again with the full timeout whenever one call returned
 * its maximum of 128 events, so with 128 or more busy connections on one
 * thread the ready ones wait for an unrelated wake-up (measured: 275-1,300
 * requests/s at 256 connections instead of tens of thousands).
 */
#include "ep_http_server.h"
#include "ep_error.h"
#include "ep_log.h"
#include "ep_mem.h"
#include "ep_time.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ROUTES       64
#define MAX_RESP_HEADERS 8

typedef struct route_s {
    unsigned methods;
    char *path;
    ep_http_handler_cb handler;
    void *arg;
    size_t max_body;
} route_t;

/* One event loop: a thread driving one daemon. */
typedef struct loop_s {
    ep_http_server_t *srv;
    struct MHD_Daemon *daemon;
    pthread_t tid;
    int started;
    int epfd;   /* ours: the daemon's epoll fd and wakefd */
    int wakefd; /* eventfd: a resume or the stop happened */
    /*
     * Resumes come from other threads. A resumer bumps resumes, then writes
     * wakefd only if the loop is (about to be) asleep; the loop sets sleeping,
     * then rechecks resumes before it blocks. Both sides use sequentially
     * consistent operations, so at least one of them sees the other.
     */
    atomic_uint resumes;
    atomic_int sleeping;
} loop_t;

struct ep_http_server_s {
    ep_http_server_opts_t opts;
    char name[32];
    char bind_addr[64];
    loop_t *loops;
    int n_loops;
    int listen_fd;
    atomic_int stop;
    /*
     * Answers being handed over by other threads: counted from before a request
     * is released to its loop until the resume and wake-up are done, so that
     * destroy does not free a loop under a resumer's last steps.
     */
    atomic_int handing_over;
    route_t routes[MAX_ROUTES];
    int n_routes;
    int port;
    atomic_int draining;
    atomic_uint_fast64_t requests, s2xx, s4xx, s5xx;
    atomic_int_fast64_t in_flight;
    ep_http_observe_cb observe; /* metrics and access log; NULL = none */
    void *observe_arg;
};

struct ep_http_req_s {
    ep_http_server_t *srv;
    loop_t *loop;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    const route_t *route;
    ep_buf_t body;
    int64_t start_ns;
    int handled;
    int suspended;
    pthread_mutex_t mu;
    struct MHD_Response *resp;
    int status;
    int n_headers;
    char *hdr_name[MAX_RESP_HEADERS];
    char *hdr_value[MAX_RESP_HEADERS];
};

static unsigned method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0) {
        return EP_HTTP_GET;
    }
    if (strcmp(m, "POST") == 0) {
        return EP_HTTP_POST;
    }
    if (strcmp(m, "HEAD") == 0) {
        return EP_HTTP_HEAD;
    }
    if (strcmp(m, "PUT") == 0) {
        return EP_HTTP_PUT;
    }
    if (strcmp(m, "DELETE") == 0) {
        return EP_HTTP_DELETE;
    }
    if (strcmp(m, "OPTIONS") == 0) {
        return EP_HTTP_OPTIONS;
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

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r')) {
        msg[--n] = '\0';
    }
    ep_log_debug("http", "%s: %s", ((loop_t *)cls)->srv->name, msg);
}

/* Queues the stored response on the connection (server thread only). */
static enum MHD_Result queue_stored(ep_http_req_t *r)
{
    enum MHD_Result rc;

    rc = MHD_queue_response(r->conn, (unsigned)r->status, r->resp);
    MHD_destroy_response(r->resp);
    r->resp = NULL;
    return rc;
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

static void free_body(void *p)
{
    ep_free(p);
}

/* Builds the response and either leaves it for the server thread or resumes. */
/* Makes sure the loop runs MHD again soon after a resume from another thread. */
static void loop_wake(loop_t *lp)
{
    atomic_fetch_add(&lp->resumes, 1);
    if (atomic_load(&lp->sleeping)) {
        uint64_t one = 1;
        ssize_t w = write(lp->wakefd, &one, sizeof(one));
        (void)w; /* EAGAIN only when the counter is full: the loop wakes anyway */
    }
}

static void respond_take(ep_http_req_t *r, int status, const char *content_type, char *body,
                         size_t len)
{
    struct MHD_Response *resp;
    struct MHD_Connection *conn;
    loop_t *lp = r->loop;
    ep_http_server_t *srv = r->srv;

    resp = MHD_create_response_from_buffer_with_free_callback(len, body, free_body);
    ep_assert(resp != NULL);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            content_type ? content_type : "application/json");
    for (int i = 0; i < r->n_headers; i++) {
        MHD_add_response_header(resp, r->hdr_name[i], r->hdr_value[i]);
    }
    if (atomic_load_explicit(&r->srv->draining, memory_order_relaxed)) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    }
    count_status(r->srv, status);
    if (r->srv->observe) {
        r->srv->observe(r->srv->observe_arg, r, status);
    }

    atomic_fetch_add(&srv->handing_over, 1);
    pthread_mutex_lock(&r->mu);
    ep_assert(r->resp == NULL);
    r->resp = resp;
    r->status = status;
    conn = r->suspended ? r->conn : NULL;
    r->suspended = 0;
    pthread_mutex_unlock(&r->mu);
    /*
     * After the unlock r belongs to the server thread again and may be freed as
     * soon as the connection runs: resume through the saved pointer only. A
     * suspended connection stays valid until it is resumed.
     */
    if (conn) {
        MHD_resume_connection(conn);
        loop_wake(lp);
    }
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
        ep_http_req_add_header(r, MHD_HTTP_HEADER_RETRY_AFTER, v);
    }
    ep_http_respond_buf(r, status, &b);
}

void ep_http_req_add_header(ep_http_req_t *r, const char *name, const char *value)
{
    if (r->n_headers >= MAX_RESP_HEADERS) {
        return;
    }
    r->hdr_name[r->n_headers] = ep_strdup(name);
    r->hdr_value[r->n_headers] = ep_strdup(value);
    r->n_headers++;
}

static enum MHD_Result sum_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                  const char *value)
{
    size_t *sum = cls;

    *sum += strlen(key) + (value ? strlen(value) : 0) + 4;
    return MHD_YES;
}

static ep_http_req_t *req_new(loop_t *lp, struct MHD_Connection *conn, const char *url,
                              const char *method)
{
    ep_http_server_t *s = lp->srv;
    ep_http_req_t *r = ep_calloc(1, sizeof(*r));

    r->srv = s;
    r->loop = lp;
    r->conn = conn;
    r->url = url;
    r->method = method;
    r->start_ns = ep_time_mono_ns();
    ep_buf_init(&r->body);
    pthread_mutex_init(&r->mu, NULL);
    atomic_fetch_add_explicit(&s->requests, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->in_flight, 1, memory_order_relaxed);
    return r;
}

static void req_free(ep_http_req_t *r)
{
    if (r->resp) {
        MHD_destroy_response(r->resp);
    }
    for (int i = 0; i < r->n_headers; i++) {
        ep_free(r->hdr_name[i]);
        ep_free(r->hdr_value[i]);
    }
    ep_buf_close(&r->body);
    pthread_mutex_destroy(&r->mu);
    ep_free(r);
}

/* Checks what can be refused from the headers alone. Returns 1 when answered. */
static int check_headers(ep_http_server_t *s, ep_http_req_t *r)
{
    const char *cl;
    size_t hdr_bytes = 0;
    unsigned bit = method_bit(r->method);
    char allow[64];
    char msg[160];

    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, sum_header, &hdr_bytes);
    if (hdr_bytes > s->opts.max_header) {
        snprintf(msg, sizeof(msg), "request headers are larger than %zu bytes", s->opts.max_header);
        ep_http_respond_error(r, 431, msg, NULL);
        return 1;
    }
    r->route = find_route(s, r->url);
    if (r->route == NULL) {
        ep_http_respond_error(r, 404, "no such path", NULL);
        return 1;
    }
    if ((r->route->methods & bit) == 0) {
        allow_header(r->route->methods, allow, sizeof(allow));
        ep_http_req_add_header(r, MHD_HTTP_HEADER_ALLOW, allow);
        snprintf(msg, sizeof(msg), "method %s is not allowed here; use %s", r->method, allow);
        ep_http_respond_error(r, 405, msg, NULL);
        return 1;
    }
    cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > r->route->max_body) {
        snprintf(msg, sizeof(msg), "request body is larger than %zu bytes", r->route->max_body);
        ep_http_respond_error(r, 413, msg, NULL);
        return 1;
    }
    return 0;
}

/* MHD's accept policy: no new connections once draining. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    ep_http_server_t *s = ((loop_t *)cls)->srv;

    (void)addr;
    (void)addrlen;
    return atomic_load_explicit(&s->draining, memory_order_relaxed) ? MHD_NO : MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    loop_t *lp = cls;
    ep_http_server_t *s = lp->srv;
    ep_http_req_t *r = *con_cls;

    if (r == NULL) {
        r = req_new(lp, conn, url, method);
        *con_cls = r;
        if (check_headers(s, r)) {
            r->handled = 1;
            return queue_stored(r);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        if (r->handled) {
            /* Body of a request already refused: discard it. */
            *upload_data_size = 0;
            return MHD_YES;
        }
        if (r->body.len + *upload_data_size > r->route->max_body) {
            /* A chunked body over the limit: 0.9.75 cannot answer mid-upload. */
            ep_log_debug("http", "%s: chunked body over %zu bytes, closing", s->name,
                         r->route->max_body);
            return MHD_NO;
        }
        ep_buf_append(&r->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!r->handled) {
        r->handled = 1;
        r->route->handler(r->route->arg, r);
        pthread_mutex_lock(&r->mu);
        if (r->resp == NULL) {
            /* Answered later from another thread; it resumes us. */
            r->suspended = 1;
            MHD_suspend_connection(conn);
            pthread_mutex_unlock(&r->mu);
            return MHD_YES;
        }
        pthread_mutex_unlock(&r->mu);
        return queue_stored(r);
    }
    if (r->resp) {
        return queue_stored(r);
    }
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    ep_http_server_t *s = ((loop_t *)cls)->srv;
    ep_http_req_t *r = *con_cls;

    if (r == NULL) {
        return;
    }
    *con_cls = NULL;
    atomic_fetch_sub_explicit(&s->in_flight, 1, memory_order_relaxed);
    req_free(r);
}

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
    if (s->opts.idle_timeout_s <= 0) {
        s->opts.idle_timeout_s = 30;
    }
    if (s->opts.max_connections <= 0) {
        s->opts.max_connections = 4096;
    }
    *out = s;
    return 0;
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

static void *loop_main(void *arg)
{
    loop_t *lp = arg;
    char name[16];

    memcpy(name, "http-", 5); /* thread names hold 15 characters */
    snprintf(name + 5, sizeof(name) - 5, "%.10s", lp->srv->name);
    pthread_setname_np(pthread_self(), name);
    while (!atomic_load_explicit(&lp->srv->stop, memory_order_acquire)) {
        unsigned seen = atomic_load(&lp->resumes);
        MHD_UNSIGNED_LONG_LONG to;
        struct epoll_event ev[2];
        int timeout = -1, n;

        MHD_run(lp->daemon); /* never blocks: every epoll_wait inside has timeout 0 */
        atomic_store(&lp->sleeping, 1);
        if (atomic_load(&lp->resumes) != seen) {
            timeout = 0;
        } else if (MHD_get_timeout(lp->daemon, &to) == MHD_YES) {
            timeout = to > INT_MAX ? INT_MAX : (int)to;
        }
        n = epoll_wait(lp->epfd, ev, 2, timeout);
        atomic_store(&lp->sleeping, 0);
        for (int i = 0; i < n; i++) {
            if (ev[i].data.ptr == &lp->wakefd) {
                uint64_t v;
                ssize_t r = read(lp->wakefd, &v, sizeof(v));
                (void)r;
            }
        }
    }
    return NULL;
}

/* The listening socket all loops accept from. Returns the fd, or -1 with errno. */
static int listen_on(const struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

    if (fd < 0) {
        return -1;
    }
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, (const struct sockaddr *)sa, sizeof(*sa)) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int loop_start(ep_http_server_t *s, loop_t *lp, size_t mem, char *err, size_t errlen)
{
    unsigned limit = (unsigned)(s->opts.max_connections / s->n_loops);
    const union MHD_DaemonInfo *info;
    struct epoll_event ev;
    int lfd = fcntl(s->listen_fd, F_DUPFD_CLOEXEC, 0); /* the daemon closes its copy */

    lp->srv = s;
    if (lfd < 0) {
        snprintf(err, errlen, "%s: dup of the listening socket: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    lp->daemon = MHD_start_daemon(
        /* The logger comes first so that MHD's option warnings reach it too. */
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, on_accept, lp, on_access,
        lp, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, lp, MHD_OPTION_LISTEN_SOCKET, lfd,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->opts.idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, limit > 0 ? limit : 1u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        mem, MHD_OPTION_NOTIFY_COMPLETED, on_completed, lp, MHD_OPTION_END);
    if (lp->daemon == NULL) {
        snprintf(err, errlen, "%s: libmicrohttpd did not start", s->name);
        return EP_EIO;
    }
    info = MHD_get_daemon_info(lp->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    lp->epfd = epoll_create1(EPOLL_CLOEXEC);
    lp->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (info == NULL || lp->epfd < 0 || lp->wakefd < 0) {
        snprintf(err, errlen, "%s: event loop set-up failed: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = lp->daemon;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, info->epoll_fd, &ev) != 0) {
        snprintf(err, errlen, "%s: epoll_ctl: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    ev.data.ptr = &lp->wakefd;
    if (epoll_ctl(lp->epfd, EPOLL_CTL_ADD, lp->wakefd, &ev) != 0) {
        snprintf(err, errlen, "%s: epoll_ctl: %s", s->name, strerror(errno));
        return EP_EIO;
    }
    if (pthread_create(&lp->tid, NULL, loop_main, lp) != 0) {
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
    /*
     * Room for the header block (checked against max_header by us, so that a
     * block up to twice that still gets our JSON 431) and the read buffer.
     * libmicrohttpd zeroes the whole pool after every request: at 64 KB that
     * memset was 10% of the server's CPU on single-event requests, at 24 KB 4-7%.
     */
    size_t mem = s->opts.max_header * 2 + 8 * 1024;

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)s->opts.port);
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
    }
    for (int i = 0; i < s->n_loops; i++) {
        int rc = loop_start(s, &s->loops[i], mem, err, errlen);
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
 * Draining: connections that arrive now are accepted and closed at once (the
 * accept policy), and answers on open ones carry "Connection: close". Not
 * MHD_quiesce_daemon: in 0.9.75 with an epoll thread pool it raced with the
 * pool's own removal of the listening socket from its epoll sets, and the loser
 * aborted the process ("Failed to remove listen FD from epoll set", seen in CI).
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
     * be between MHD_resume_connection and its wake-up call; the joins above order
     * its count before this read.
     */
    while (atomic_load(&s->handing_over) > 0) {
        ep_time_sleep_ms(1);
    }
    for (int i = 0; i < s->n_loops; i++) {
        loop_t *lp = &s->loops[i];
        if (lp->daemon) {
            MHD_stop_daemon(lp->daemon);
        }
        if (lp->epfd >= 0) {
            close(lp->epfd);
        }
        if (lp->wakefd >= 0) {
            close(lp->wakefd);
        }
    }
    ep_free(s->loops);
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    for (int i = 0; i < s->n_routes; i++) {
        ep_free(s->routes[i].path);
    }
    ep_free(s);
}

const char *ep_http_req_method(const ep_http_req_t *r)
{
    return r->method;
}

const char *ep_http_req_path(const ep_http_req_t *r)
{
    return r->url;
}

const char *ep_http_req_header(ep_http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *ep_http_req_query(ep_http_req_t *r, const char *name)
{
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
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
