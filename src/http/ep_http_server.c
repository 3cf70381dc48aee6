/*
 * HTTP server on libmicrohttpd. Per-request state lives in *con_cls from the
 * headers call to the completion notification; the body streams into it
 * piece by piece; the handler runs once the body is complete. Answers given
 * from another thread resume the suspended connection.
 */
#include "ep_http_server.h"
#include "ep_error.h"
#include "ep_log.h"
#include "ep_mem.h"
#include "ep_time.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
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

struct ep_http_server_s {
    ep_http_server_opts_t opts;
    char name[32];
    char bind_addr[64];
    struct MHD_Daemon *daemon;
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
    ep_log_debug("http", "%s: %s", ((ep_http_server_t *)cls)->name, msg);
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
static void respond_take(ep_http_req_t *r, int status, const char *content_type, char *body,
                         size_t len)
{
    struct MHD_Response *resp;
    struct MHD_Connection *conn;

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
    }
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

static ep_http_req_t *req_new(ep_http_server_t *s, struct MHD_Connection *conn, const char *url,
                              const char *method)
{
    ep_http_req_t *r = ep_calloc(1, sizeof(*r));

    r->srv = s;
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
    ep_http_server_t *s = cls;

    (void)addr;
    (void)addrlen;
    return atomic_load_explicit(&s->draining, memory_order_relaxed) ? MHD_NO : MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    ep_http_server_t *s = cls;
    ep_http_req_t *r = *con_cls;

    if (r == NULL) {
        r = req_new(s, conn, url, method);
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
    ep_http_server_t *s = cls;
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
        s->opts.threads = 2;
    }
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

    ep_assert(s->n_routes < MAX_ROUTES && s->daemon == NULL);
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
    ep_assert(s->daemon == NULL);
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

int ep_http_server_start(ep_http_server_t *s, char *err, size_t errlen)
{
    struct sockaddr_in sa;
    const union MHD_DaemonInfo *info;
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
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
    s->daemon = MHD_start_daemon(
        /* The logger comes first so that MHD's option warnings reach it too. */
        flags, (uint16_t)s->opts.port, on_accept, s, on_access, s, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, s, MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)s->opts.threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)s->opts.idle_timeout_s,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->opts.max_connections,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, mem, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (s->daemon == NULL) {
        snprintf(err, errlen, "%s: cannot listen on %s:%d (port in use?)", s->name, s->bind_addr,
                 s->opts.port);
        return EP_EIO;
    }
    info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : s->opts.port;
    return 0;
}

int ep_http_server_port(const ep_http_server_t *s)
{
    return s->port;
}

/*
 * Draining: connections that arrive now are accepted and closed at once (the
 * accept policy below), and answers on open ones carry "Connection: close".
 * Not MHD_quiesce_daemon: in 0.9.75 with an epoll thread pool it races with the
 * pool's own removal of the listening socket from its epoll sets, and the loser
 * aborts the process ("Failed to remove listen FD from epoll set", seen in CI).
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
    if (s->daemon) {
        MHD_stop_daemon(s->daemon);
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
