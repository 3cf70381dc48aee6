/* Tests for the processed-event sink (src/pipeline/ep_sink.c). */
#include "base/ep_str.h"
#include "ep_test.h"

#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "pipeline/ep_sink.h"

#include "base/ep_time.h"
#include "obs/ep_metrics.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <pthread.h>
#include <sys/stat.h>
#include <yajl/yajl_tree.h>

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ep_sink_XXXXXX");
    EP_ASSERT(mkdtemp(tmpdir) != NULL);
}

/* Reads a whole file into a new NUL-terminated buffer (ep_free). */
static char *slurp(const char *path, size_t *len)
{
    ep_buf_t b = EP_BUF_INIT;
    char chunk[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY);

    EP_ASSERT(fd >= 0);
    ep_buf_puts(&b, "");
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        ep_buf_append(&b, chunk, (size_t)n);
    }
    close(fd);
    return ep_buf_steal(&b, len);
}

/* Checks that every line parses as a JSON object with an "id"; returns the line count. */
static size_t check_lines(char *text, size_t len)
{
    size_t lines = 0;
    char *p = text, *nl;

    EP_ASSERT(len == 0 || text[len - 1] == '\n');
    while ((nl = strchr(p, '\n')) != NULL) {
        char errbuf[128];
        yajl_val v, id;
        const char *path[] = {"id", NULL};

        *nl = '\0';
        v = yajl_tree_parse(p, errbuf, sizeof(errbuf));
        EP_ASSERT(v != NULL);
        EP_ASSERT(YAJL_IS_OBJECT(v));
        id = yajl_tree_get(v, path, yajl_t_string);
        EP_ASSERT(id != NULL);
        yajl_tree_free(v);
        lines++;
        p = nl + 1;
    }
    EP_ASSERT(*p == '\0');
    return lines;
}

static ep_event_t *make_event(const char *id)
{
    ep_event_t *ev = ep_event_create(id, "src \"quoted\"", "click", "u1", "d", 1, NULL, 0, 0);
    ev->processed_us = ev->received_us + 5;
    return ev;
}

static void test_invalid_specs(void)
{
    const char *bad[] = {"",        "file:",       "files:/tmp/x",     "STDOUT",
                         "none ",   "kafka",       "ftp://x/y",        "HTTP://x",
                         "http://", "http:// x/y", "http://h/p q",     "https://",
                         "http:x",  "http://h/\n", "http://[::1/hook", NULL};
    ep_sink_t *s = (ep_sink_t *)&s;
    char err[256];

    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        EP_ASSERT_EQ(ep_sink_create(bad[i], &s, err, sizeof(err)), EP_EINVAL);
        EP_ASSERT(s == NULL);
        EP_ASSERT(strstr(err, "PROCESSOR_SINK") != NULL);
        if (strncmp(bad[i], "http", 4) == 0) {
            EP_ASSERT(strstr(err, "URL") != NULL);
        } else {
            EP_ASSERT(strstr(err, "none, stdout, file:PATH or an http(s):// URL") != NULL);
        }
    }
    EP_ASSERT_EQ(ep_sink_create(NULL, &s, err, sizeof(err)), EP_EINVAL);
}

static void test_unopenable_file(void)
{
    ep_sink_t *s = NULL;
    char err[256] = "";

    EP_ASSERT_EQ(ep_sink_create("file:/nonexistent-dir/x/y.ndjson", &s, err, sizeof(err)), EP_EIO);
    EP_ASSERT(s == NULL);
    EP_ASSERT(strstr(err, "/nonexistent-dir/x/y.ndjson") != NULL);
}

static void test_none(void)
{
    ep_sink_t *s = NULL;
    ep_event_t *ev = make_event("a");
    ep_buf_t scratch = EP_BUF_INIT;
    char err[256];

    EP_ASSERT_EQ(ep_sink_create("none", &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, &ev, 1, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_flush(s, 1), 0);
    EP_ASSERT_EQ(ep_sink_write(NULL, &ev, 1, &scratch), 0);
    ep_sink_destroy(s);
    ep_sink_destroy(NULL);
    ep_event_destroy(ev);
    ep_buf_close(&scratch);
}

static void test_stdout(void)
{
    ep_sink_t *s = NULL;
    ep_event_t *ev = make_event("to-stdout");
    ep_buf_t scratch = EP_BUF_INIT;
    char err[256], path[128], *text;
    size_t len;
    int saved, fd;

    /* Point fd 1 at a file for the duration of the write. */
    make_tmpdir();
    snprintf(path, sizeof(path), "%s/stdout.ndjson", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EP_ASSERT(fd >= 0);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    EP_ASSERT(dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
    close(fd);

    EP_ASSERT_EQ(ep_sink_create("stdout", &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, &ev, 1, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_flush(s, 1), 0);
    ep_sink_destroy(s); /* must not close fd 1 */
    EP_ASSERT(write(STDOUT_FILENO, "", 0) == 0);

    dup2(saved, STDOUT_FILENO);
    close(saved);
    text = slurp(path, &len);
    EP_ASSERT_EQ(check_lines(text, len), 1);
    EP_ASSERT(strstr(text, "\"id\":\"to-stdout\"") != NULL);
    ep_free(text);
    ep_event_destroy(ev);
    ep_buf_close(&scratch);
    unlink(path);
    rmdir(tmpdir);
}

static void test_file_lines(void)
{
    ep_sink_t *s = NULL;
    ep_event_t *evs[3] = {make_event("a"), make_event("b\n\"c\""), make_event("d")};
    ep_buf_t scratch = EP_BUF_INIT;
    char err[256], spec[256], path[128], *text;
    size_t len;
    struct stat sb;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/out.ndjson", tmpdir);
    snprintf(spec, sizeof(spec), "file:%s", path);
    umask(022);
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, evs, 3, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_write(s, evs, 0, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_flush(s, 1), 0);
    ep_sink_destroy(s);
    EP_ASSERT_EQ(stat(path, &sb), 0);
    EP_ASSERT_EQ(sb.st_mode & 0777, 0644);

    /* Reopening appends. */
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, evs + 2, 1, &scratch), 0);
    ep_sink_destroy(s);

    text = slurp(path, &len);
    EP_ASSERT(strncmp(text, EP_STRLIT("{\"id\":\"a\",")) == 0);
    EP_ASSERT(strstr(text, "\"latency_us\":5}\n") != NULL);
    EP_ASSERT(strstr(text, "\"id\":\"b\\n\\\"c\\\"\"") != NULL);
    EP_ASSERT_EQ(check_lines(text, len), 4); /* cuts text into lines */
    ep_free(text);
    for (int i = 0; i < 3; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_buf_close(&scratch);
    unlink(path);
    rmdir(tmpdir);
}

/* Several threads write batches at once: every line must stay whole. */
#define CW_THREADS 4
#define CW_BATCHES 200
#define CW_BATCH   50

typedef struct {
    ep_sink_t *s;
    int index;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    ep_event_t *evs[CW_BATCH];
    ep_buf_t scratch = EP_BUF_INIT;
    char id[32];

    for (int b = 0; b < CW_BATCHES; b++) {
        for (int i = 0; i < CW_BATCH; i++) {
            snprintf(id, sizeof(id), "w%d-%d-%d", w->index, b, i);
            evs[i] = make_event(id);
        }
        EP_ASSERT_EQ(ep_sink_write(w->s, evs, CW_BATCH, &scratch), 0);
        for (int i = 0; i < CW_BATCH; i++) {
            ep_event_destroy(evs[i]);
        }
    }
    ep_buf_close(&scratch);
    return NULL;
}

static void test_concurrent_writers(void)
{
    ep_sink_t *s = NULL;
    writer_t w[CW_THREADS];
    pthread_t t[CW_THREADS];
    char err[256], spec[256], path[128], *text;
    size_t len;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/cc.ndjson", tmpdir);
    snprintf(spec, sizeof(spec), "file:%s", path);
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    for (int i = 0; i < CW_THREADS; i++) {
        w[i] = (writer_t){s, i};
        EP_ASSERT_EQ(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < CW_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    ep_sink_destroy(s);
    text = slurp(path, &len);
    EP_ASSERT_EQ(check_lines(text, len), CW_THREADS * CW_BATCHES * CW_BATCH);
    ep_free(text);
    unlink(path);
    rmdir(tmpdir);
}

/* ------------------------------------------------------------ webhook (http://) */

/*
 * An independent receiver (libmicrohttpd, in process). It answers from a
 * script: codes[i] for the i-th request, then `code_after`; a 503 or 429 carries
 * Retry-After when retry_after is set. It keeps the bodies it answered 2xx,
 * the client ports it saw (connection reuse) and the Content-Type of each.
 */
#define RX_MAX_SCRIPT 16
#define RX_MAX_PORTS  256

typedef struct rx_s {
    struct MHD_Daemon *d;
    int port;
    pthread_mutex_t mu;
    unsigned codes[RX_MAX_SCRIPT];
    int n_codes;
    unsigned code_after;
    const char *retry_after;
    int delay_ms;
    atomic_int requests;
    atomic_int bad_type; /* requests without Content-Type: application/x-ndjson */
    size_t max_body;     /* largest body seen */
    ep_buf_t accepted;   /* the bodies answered 2xx, concatenated */
    int ports[RX_MAX_PORTS];
    int n_ports;
    int64_t req_ms[64]; /* monotonic arrival time of the first requests */
} rx_t;

static rx_t rx;

typedef struct {
    ep_buf_t body;
} rx_req_t;

static void rx_note_port(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    int port, i;

    if (ci == NULL || ci->client_addr == NULL || ci->client_addr->sa_family != AF_INET) {
        return;
    }
    port = ntohs(((const struct sockaddr_in *)(const void *)ci->client_addr)->sin_port);
    pthread_mutex_lock(&rx.mu);
    for (i = 0; i < rx.n_ports && rx.ports[i] != port; i++) {
    }
    if (i == rx.n_ports && rx.n_ports < RX_MAX_PORTS) {
        rx.ports[rx.n_ports++] = port;
    }
    pthread_mutex_unlock(&rx.mu);
}

static enum MHD_Result rx_on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *version,
                                     const char *upload_data, size_t *upload_size, void **con_cls)
{
    rx_req_t *r = *con_cls;
    struct MHD_Response *resp;
    enum MHD_Result ret;
    const char *ct;
    unsigned code;
    int idx;

    (void)cls, (void)url, (void)version;
    if (r == NULL) {
        r = ep_calloc(1, sizeof(*r));
        ep_buf_init(&r->body);
        *con_cls = r;
        rx_note_port(conn);
        return MHD_YES;
    }
    if (*upload_size > 0) {
        ep_buf_append(&r->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    idx = atomic_fetch_add(&rx.requests, 1);
    ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (strcmp(method, "POST") != 0 || ct == NULL || strcmp(ct, "application/x-ndjson") != 0) {
        atomic_fetch_add(&rx.bad_type, 1);
    }
    if (rx.delay_ms > 0) {
        ep_time_sleep_ms(rx.delay_ms);
    }
    code = idx < rx.n_codes ? rx.codes[idx] : rx.code_after;
    pthread_mutex_lock(&rx.mu);
    if (idx < 64) {
        rx.req_ms[idx] = ep_time_mono_ms();
    }
    if (r->body.len > rx.max_body) {
        rx.max_body = r->body.len;
    }
    if (code >= 200 && code < 300) {
        ep_buf_append(&rx.accepted, r->body.data, r->body.len);
    }
    pthread_mutex_unlock(&rx.mu);
    resp = MHD_create_response_from_buffer(7, (void *)"answer\n", MHD_RESPMEM_PERSISTENT);
    if (rx.retry_after && (code == 503 || code == 429)) {
        MHD_add_response_header(resp, "Retry-After", rx.retry_after);
    }
    ret = MHD_queue_response(conn, code, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void rx_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                            enum MHD_RequestTerminationCode toe)
{
    rx_req_t *r = *con_cls;

    (void)cls, (void)conn, (void)toe;
    if (r) {
        ep_buf_close(&r->body);
        ep_free(r);
        *con_cls = NULL;
    }
}

/* Starts the receiver on a free port with the script codes[0..n), then code_after. */
static void rx_start(const unsigned *codes, int n, unsigned code_after)
{
    const union MHD_DaemonInfo *di;

    memset(&rx, 0, sizeof(rx));
    pthread_mutex_init(&rx.mu, NULL);
    ep_buf_init(&rx.accepted);
    for (int i = 0; i < n && i < RX_MAX_SCRIPT; i++) {
        rx.codes[i] = codes[i];
    }
    rx.n_codes = n;
    rx.code_after = code_after;
    rx.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
                            rx_on_request, NULL, MHD_OPTION_NOTIFY_COMPLETED, rx_on_completed, NULL,
                            MHD_OPTION_THREAD_POOL_SIZE, 2u, MHD_OPTION_CONNECTION_TIMEOUT, 60u,
                            MHD_OPTION_END);
    EP_ASSERT(rx.d != NULL);
    di = MHD_get_daemon_info(rx.d, MHD_DAEMON_INFO_BIND_PORT);
    EP_ASSERT(di != NULL);
    rx.port = di->port;
}

static void rx_stop(void)
{
    MHD_stop_daemon(rx.d);
    ep_buf_close(&rx.accepted);
    pthread_mutex_destroy(&rx.mu);
}

static void rx_url(char *out, size_t len)
{
    snprintf(out, len, "http://127.0.0.1:%d/hook", rx.port);
}

/* Options for fast tests: tiny backoff, generous timeout. */
static ep_sink_opts_t fast_opts(int retries)
{
    return (ep_sink_opts_t){
        .timeout_ms = 30000, .retries = retries, .backoff_ms = 1, .backoff_max_ms = 5};
}

static ep_event_t **make_events(size_t n, const char *prefix)
{
    ep_event_t **evs = ep_malloc(n * sizeof(*evs));
    char id[64];

    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "%s-%zu", prefix, i);
        evs[i] = make_event(id);
    }
    return evs;
}

static void free_events(ep_event_t **evs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_free(evs);
}

/* Every id "<prefix>-<i>" for i < n appears exactly once among the accepted lines. */
static void check_accepted_once(const char *prefix, size_t n)
{
    char *text, needle[80];
    size_t len;

    ep_buf_putc(&rx.accepted, '\0');
    rx.accepted.len--;
    text = ep_strdup(rx.accepted.data);
    len = rx.accepted.len;
    EP_ASSERT_EQ(check_lines(text, len), n);
    ep_free(text);
    for (size_t i = 0; i < n; i++) {
        const char *p;

        snprintf(needle, sizeof(needle), "{\"id\":\"%s-%zu\",", prefix, i);
        p = strstr(rx.accepted.data, needle);
        EP_ASSERT(p != NULL);
        EP_ASSERT(strstr(p + 1, needle) == NULL);
    }
}

static void expect_all(const uint8_t *result, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++) {
        EP_ASSERT_EQ(result[i], v);
    }
}

/* One HTTP sink test's set-up: the receiver with its script (codes[0..n_codes), then
 * code_after), a sink on it with the options o, a worker, and n events "<prefix>-<i>" with
 * room for their results. hook_close undoes all of it. */
typedef struct {
    ep_sink_t *s;
    ep_sink_worker_t *w;
    ep_event_t **evs;
    uint8_t *result;
    size_t n;
} hook_t;

static void hook_open(hook_t *h, const ep_sink_opts_t *o, const unsigned *codes, int n_codes,
                      unsigned code_after, size_t n, const char *prefix)
{
    char url[128], err[256];

    rx_start(codes, n_codes, code_after);
    rx_url(url, sizeof(url));
    h->s = NULL;
    EP_ASSERT_EQ(ep_sink_create_ex(url, o, &h->s, err, sizeof(err)), 0);
    h->w = ep_sink_worker_create(h->s);
    h->evs = make_events(n, prefix);
    h->result = ep_calloc(n, 1);
    h->n = n;
}

/* Delivers events [from, from + n) and returns how many were delivered. */
static size_t hook_deliver(hook_t *h, size_t from, size_t n)
{
    return ep_sink_deliver(h->s, h->w, h->evs + from, n, h->result + from);
}

static void hook_close(hook_t *h)
{
    ep_sink_worker_destroy(h->w);
    ep_sink_destroy(h->s);
    rx_stop();
    free_events(h->evs, h->n);
    ep_free(h->result);
}

/* Batches of PROCESSOR_SINK_BATCH events, NDJSON, on one kept-alive connection. */
static void test_http_batches_keepalive(void)
{
    ep_sink_opts_t o = fast_opts(0);
    ep_sink_stats_t st;
    hook_t h;
    int linger = -1;

    o.batch_events = 500;
    o.linger_ms = 7;
    hook_open(&h, &o, NULL, 0, 200, 1200, "k");
    EP_ASSERT_EQ(ep_sink_gather(h.s, &linger), 500);
    EP_ASSERT_EQ(linger, 7);
    EP_ASSERT_EQ(hook_deliver(&h, 0, 1000), 1000);
    EP_ASSERT_EQ(hook_deliver(&h, 1000, 200), 200);
    expect_all(h.result, 1200, EP_SINK_DELIVERED);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 3); /* 500 + 500, then 200 */
    EP_ASSERT_EQ(atomic_load(&rx.bad_type), 0);
    EP_ASSERT_EQ(rx.n_ports, 1); /* one connection, kept alive */
    check_accepted_once("k", 1200);
    ep_sink_stats(h.s, &st);
    EP_ASSERT_EQ(st.requests, 3);
    EP_ASSERT_EQ(st.delivered, 1200);
    EP_ASSERT_EQ(st.failures + st.retries + st.failed + st.rejected, 0);
    hook_close(&h);
}

/* PROCESSOR_SINK_BATCH_BYTES splits a batch; one line larger than it still goes, alone. */
static void test_http_batch_bytes(void)
{
    ep_sink_opts_t o = fast_opts(0);
    hook_t h;

    o.batch_bytes = 1024; /* a line is ~170 bytes: about 6 a POST */
    hook_open(&h, &o, NULL, 0, 200, 100, "b");
    EP_ASSERT_EQ(hook_deliver(&h, 0, 100), 100);
    EP_ASSERT(atomic_load(&rx.requests) >= 100 * 100 / 1024);
    EP_ASSERT(rx.max_body <= 1024);
    check_accepted_once("b", 100);
    hook_close(&h);

    o.batch_bytes = 16; /* smaller than any line: one event per POST */
    hook_open(&h, &o, NULL, 0, 200, 5, "one");
    EP_ASSERT_EQ(hook_deliver(&h, 0, 5), 5);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 5);
    check_accepted_once("one", 5);
    hook_close(&h);
}

/* 503, 500, 408, 429 are retried; the batch arrives once, after the 200. */
static void test_http_retries_then_ok(void)
{
    static const unsigned codes[] = {503, 500, 408, 429};
    ep_sink_opts_t o = fast_opts(4);
    ep_metrics_t *m;
    ep_sink_stats_t st;
    ep_buf_t text = EP_BUF_INIT;
    hook_t h;

    ep_metrics_create(0, &m);
    o.metrics = m;
    hook_open(&h, &o, codes, 4, 200, 10, "r");
    EP_ASSERT_EQ(hook_deliver(&h, 0, 10), 10);
    expect_all(h.result, 10, EP_SINK_DELIVERED);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 5);
    check_accepted_once("r", 10);
    ep_sink_stats(h.s, &st);
    EP_ASSERT_EQ(st.requests, 5);
    EP_ASSERT_EQ(st.failures, 4);
    EP_ASSERT_EQ(st.retries, 4);
    EP_ASSERT_EQ(st.delivered, 10);
    ep_metrics_render(m, &text);
    ep_buf_putc(&text, '\0');
    EP_ASSERT(strstr(text.data, "ep_sink_requests_total{result=\"ok\"} 1\n") != NULL);
    EP_ASSERT(strstr(text.data, "ep_sink_requests_total{result=\"server_error\"} 2\n") != NULL);
    EP_ASSERT(strstr(text.data, "ep_sink_requests_total{result=\"throttled\"} 2\n") != NULL);
    EP_ASSERT(strstr(text.data, "ep_sink_events_total{result=\"delivered\"} 10\n") != NULL);
    EP_ASSERT(strstr(text.data, "ep_sink_retries_total 4\n") != NULL);
    EP_ASSERT(strstr(text.data, "ep_sink_request_seconds_count 5\n") != NULL);
    ep_buf_close(&text);
    hook_close(&h);
    ep_metrics_destroy(m);
}

/* A 400 (or 404, 413) is final: no retry, the events come back rejected. */
static void test_http_rejected_not_retried(void)
{
    static const unsigned finals[] = {400, 404, 413};

    for (int k = 0; k < 3; k++) {
        ep_sink_opts_t o = fast_opts(5);
        ep_sink_stats_t st;
        hook_t h;

        hook_open(&h, &o, NULL, 0, finals[k], 3, "x");
        EP_ASSERT_EQ(hook_deliver(&h, 0, 3), 0);
        expect_all(h.result, 3, EP_SINK_REJECTED);
        EP_ASSERT_EQ(atomic_load(&rx.requests), 1);
        ep_sink_stats(h.s, &st);
        EP_ASSERT_EQ(st.rejected, 3);
        EP_ASSERT_EQ(st.retries, 0);
        EP_ASSERT_EQ(ep_sink_write(h.s, h.evs, 3, NULL), EP_EIO);
        hook_close(&h);
    }
}

/* Always 503: PROCESSOR_SINK_RETRIES retries, then the events come back failed. */
static void test_http_retries_exhausted(void)
{
    ep_sink_opts_t o = fast_opts(3);
    ep_sink_stats_t st;
    hook_t h;

    hook_open(&h, &o, NULL, 0, 503, 4, "e");
    EP_ASSERT_EQ(hook_deliver(&h, 0, 4), 0);
    expect_all(h.result, 4, EP_SINK_FAILED);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 4);
    EP_ASSERT_EQ(rx.accepted.len, 0);
    ep_sink_stats(h.s, &st);
    EP_ASSERT_EQ(st.failed, 4);
    EP_ASSERT_EQ(st.retries, 3);
    hook_close(&h);
}

/* The delays grow: with backoff 40 ms the 3rd retry waits at least 80 ms (half of 160). */
static void test_http_backoff_grows(void)
{
    ep_sink_opts_t o = fast_opts(3);
    hook_t h;

    o.backoff_ms = 40;
    o.backoff_max_ms = 1000;
    hook_open(&h, &o, NULL, 0, 500, 1, "g");
    EP_ASSERT_EQ(hook_deliver(&h, 0, 1), 0);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 4);
    /* Lower bounds only (equal jitter: at least half of 40, 80, 160 ms). */
    EP_ASSERT(rx.req_ms[1] - rx.req_ms[0] >= 20 - 1);
    EP_ASSERT(rx.req_ms[2] - rx.req_ms[1] >= 40 - 1);
    EP_ASSERT(rx.req_ms[3] - rx.req_ms[2] >= 80 - 1);
    hook_close(&h);
}

/* One delivery, several POSTs with different answers: each run of events gets its own result. */
static void test_http_results_per_post(void)
{
    static const unsigned codes[] = {200, 400, 503, 200};
    static const uint8_t want[8] = {EP_SINK_DELIVERED, EP_SINK_DELIVERED, EP_SINK_REJECTED,
                                    EP_SINK_REJECTED,  EP_SINK_FAILED,    EP_SINK_FAILED,
                                    EP_SINK_DELIVERED, EP_SINK_DELIVERED};
    ep_sink_opts_t o = fast_opts(0);
    ep_sink_stats_t st;
    hook_t h;

    o.batch_events = 2;
    hook_open(&h, &o, codes, 4, 500, 8, "m");
    EP_ASSERT_EQ(hook_deliver(&h, 0, 8), 4);
    for (int i = 0; i < 8; i++) {
        EP_ASSERT_EQ(h.result[i], want[i]);
    }
    EP_ASSERT_EQ(atomic_load(&rx.requests), 4);
    ep_buf_putc(&rx.accepted, '\0');
    EP_ASSERT(strstr(rx.accepted.data, "\"id\":\"m-0\"") != NULL);
    EP_ASSERT(strstr(rx.accepted.data, "\"id\":\"m-7\"") != NULL);
    EP_ASSERT(strstr(rx.accepted.data, "\"id\":\"m-2\"") == NULL);
    ep_sink_stats(h.s, &st);
    EP_ASSERT_EQ(st.delivered, 4);
    EP_ASSERT_EQ(st.rejected, 2);
    EP_ASSERT_EQ(st.failed, 2);
    hook_close(&h);
}

/* A Retry-After replaces the (here 1 ms) backoff. */
static void test_http_retry_after(void)
{
    static const unsigned codes[] = {429};
    ep_sink_opts_t o = fast_opts(2);
    hook_t h;

    hook_open(&h, &o, codes, 1, 200, 2, "ra");
    rx.retry_after = "1";
    EP_ASSERT_EQ(hook_deliver(&h, 0, 2), 2);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 2);
    EP_ASSERT(rx.req_ms[1] - rx.req_ms[0] >= 900);
    check_accepted_once("ra", 2);
    hook_close(&h);
}

/* Nothing listening: transport errors are retried, then the events come back failed. */
static void test_http_connection_refused(void)
{
    ep_sink_opts_t o = fast_opts(2);
    ep_sink_t *s = NULL;
    ep_sink_worker_t *w;
    ep_event_t **evs = make_events(2, "c");
    uint8_t result[2];
    ep_sink_stats_t st;
    char url[128], err[256];
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);

    /* A port that was free a moment ago and has no listener. */
    EP_ASSERT(fd >= 0);
    EP_ASSERT_EQ(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    EP_ASSERT_EQ(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/hook", ntohs(a.sin_port));
    EP_ASSERT_EQ(ep_sink_create_ex(url, &o, &s, err, sizeof(err)), 0);
    w = ep_sink_worker_create(s);
    EP_ASSERT_EQ(ep_sink_deliver(s, w, evs, 2, result), 0);
    expect_all(result, 2, EP_SINK_FAILED);
    ep_sink_stats(s, &st);
    EP_ASSERT_EQ(st.requests, 3);
    EP_ASSERT_EQ(st.retries, 2);
    EP_ASSERT_EQ(st.failed, 2);
    close(fd);
    ep_sink_worker_destroy(w);
    ep_sink_destroy(s);
    free_events(evs, 2);
}

typedef struct {
    ep_sink_t *s;
    ep_event_t **evs;
    uint8_t result[2];
    size_t delivered;
    atomic_int done;
} deliverer_t;

static void *deliverer_main(void *arg)
{
    deliverer_t *d = arg;
    ep_sink_worker_t *w = ep_sink_worker_create(d->s);

    d->delivered = ep_sink_deliver(d->s, w, d->evs, 2, d->result);
    ep_sink_worker_destroy(w);
    atomic_store(&d->done, 1);
    return NULL;
}

/* ep_sink_cancel ends a long backoff at once (the shutdown deadline). */
static void test_http_cancel(void)
{
    ep_sink_opts_t o = fast_opts(5);
    deliverer_t d = {0};
    pthread_t t;
    char url[128], err[256];
    int64_t t0;

    o.backoff_ms = 60000;
    o.backoff_max_ms = 60000;
    rx_start(NULL, 0, 503);
    rx_url(url, sizeof(url));
    EP_ASSERT_EQ(ep_sink_create_ex(url, &o, &d.s, err, sizeof(err)), 0);
    d.evs = make_events(2, "z");
    EP_ASSERT_EQ(pthread_create(&t, NULL, deliverer_main, &d), 0);
    for (int i = 0; i < 3000 && atomic_load(&rx.requests) == 0; i++) {
        ep_time_sleep_ms(10);
    }
    EP_ASSERT_EQ(atomic_load(&rx.requests), 1);
    ep_time_sleep_ms(50);
    EP_ASSERT_EQ(atomic_load(&d.done), 0); /* waiting out the 30..60 s backoff */
    t0 = ep_time_mono_ms();
    ep_sink_cancel(d.s);
    pthread_join(t, NULL);
    EP_ASSERT(ep_time_mono_ms() - t0 < 20000);
    EP_ASSERT_EQ(d.delivered, 0);
    expect_all(d.result, 2, EP_SINK_FAILED);
    EP_ASSERT_EQ(atomic_load(&rx.requests), 1);
    ep_sink_destroy(d.s);
    rx_stop();
    free_events(d.evs, 2);
}

/* Worker state with the other sinks: deliver writes the batch like ep_sink_write. */
static void test_deliver_file(void)
{
    ep_sink_t *s = NULL;
    ep_sink_worker_t *w;
    ep_event_t **evs = make_events(3, "f");
    uint8_t result[3];
    char err[256], spec[256], path[128], *text;
    size_t len;
    int linger = -1;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/d.ndjson", tmpdir);
    snprintf(spec, sizeof(spec), "file:%s", path);
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_gather(s, &linger), 0);
    EP_ASSERT_EQ(linger, 0);
    w = ep_sink_worker_create(s);
    EP_ASSERT_EQ(ep_sink_deliver(s, w, evs, 3, result), 3);
    expect_all(result, 3, EP_SINK_DELIVERED);
    ep_sink_worker_destroy(w);
    ep_sink_destroy(s);
    text = slurp(path, &len);
    EP_ASSERT_EQ(check_lines(text, len), 3);
    ep_free(text);
    unlink(path);
    rmdir(tmpdir);
    free_events(evs, 3);
}

EP_TEST_LIST = {
    EP_TEST(test_invalid_specs),
    EP_TEST(test_unopenable_file),
    EP_TEST(test_none),
    EP_TEST(test_stdout),
    EP_TEST(test_file_lines),
    EP_TEST(test_concurrent_writers),
    EP_TEST(test_http_batches_keepalive),
    EP_TEST(test_http_batch_bytes),
    EP_TEST(test_http_retries_then_ok),
    EP_TEST(test_http_rejected_not_retried),
    EP_TEST(test_http_retries_exhausted),
    EP_TEST(test_http_backoff_grows),
    EP_TEST(test_http_results_per_post),
    EP_TEST(test_http_retry_after),
    EP_TEST(test_http_connection_refused),
    EP_TEST(test_http_cancel),
    EP_TEST(test_deliver_file),
    EP_TEST_END,
};

EP_TEST_MAIN()
