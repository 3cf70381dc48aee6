/*
 * `eventpipe bench`: an HTTP/1.1 load generator. N keep-alive connections
 * spread over T threads, each thread one epoll loop; a duration or a request
 * count; single events or NDJSON batches. With --rate the requests follow a
 * fixed schedule and latency is measured from the time a request was due, so a
 * stalled server cannot hide its stall (no coordinated omission).
 *
 * Latency goes into an ep_hist log-linear histogram (64 sub-buckets per power
 * of two: under 1.6% relative error) merged from the threads at the end.
 *
 * At the end no new request starts, and the ones in flight are waited for (up
 * to DRAIN_NS) and counted: the server may have accepted them, so leaving them
 * unread would make the report's 2xx count fall short of what the server kept.
 * A request still unanswered after DRAIN_NS is a socket error.
 *
 * https:// URLs go over OpenSSL on the same non-blocking sockets: a connection
 * first finishes its handshake (a failed one is a socket error), then its
 * requests go through SSL_write and SSL_read; the server is verified against
 * --cacert (else TLS_CA_FILE, else the system store).
 */
#include "analytics/ep_hist.h"
#include "base/ep_buf.h"
#include "base/ep_duration.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "base/ep_time.h"
#include "http/ep_tls.h"
#include "tools/ep_tools.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---------------------------------------------------------------- histogram */

/*
 * ep_hist's buckets (64 per power of two), read with the bench's own rule: the
 * rank is rounded to the nearest and the bucket's upper edge is reported (a
 * conservative percentile), clamped to the largest latency seen.
 */
static uint64_t hist_pct(const ep_hist_t *h, double pct)
{
    uint64_t want = (uint64_t)((double)h->count * pct / 100.0 + 0.5), seen = 0;

    if (h->count == 0) {
        return 0;
    }
    if (want < 1) {
        want = 1;
    }
    for (uint32_t i = 0; i < EP_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= want) {
            uint64_t lo, hi;

            ep_hist_bucket_range(i, &lo, &hi);
            return hi < h->max ? hi : h->max;
        }
    }
    return h->max;
}

/* ---------------------------------------------------------------- load */

typedef struct opts_s {
    char host[256];
    int port;
    char path[512];
    int connections, threads, batch;
    double duration_s, rate;
    int duration_given; /* -d given: it bounds a -n run too */
    long long requests;
    const char *body_arg;
    const char *api_key; /* sent as X-API-Key (API_KEYS) */
    int json, quiet;
    SSL_CTX *tls; /* https:// */
} opts_t;

typedef struct conn_s {
    int fd;
    int busy;            /* a request is outstanding */
    int64_t due_ns;      /* when the current request was due (fixed rate) or sent */
    int64_t next_due_ns; /* fixed rate: next scheduled send */
    size_t sent;         /* bytes of the request written */
    int connected;       /* the connect completed (else a reset is a connect error) */
    int64_t retry_ns;    /* fd < 0: when to try connecting again */
    SSL *ssl;            /* https:// */
    ep_tls_io_t tio;     /* its socket (ep_tls.h): whether the last recv drained it */
    int tls_ready;       /* the handshake is done */
    char rbuf[16384];
    size_t rlen;
} conn_t;

typedef struct worker_s {
    const opts_t *o;
    struct sockaddr_in addr;
    const char *req;
    size_t req_len;
    int nconn;
    int64_t interval_ns; /* per connection, fixed rate */
    ep_hist_t hist;
    uint64_t ok, non2xx, errors, status[6]; /* status by class: 1xx..5xx */
    atomic_uint_fast64_t done;              /* read by the progress thread */
    pthread_t tid;
} worker_t;

static atomic_int stop_flag; /* no new requests; workers exit once theirs are answered */
static atomic_llong budget;  /* requests left to start when --requests is set */

#define RECONNECT_NS 100000000     /* 100 ms between attempts after a failed connect */
#define DRAIN_NS     10000000000LL /* answers to requests in flight at the end: 10 s at most */

/* send() or SSL_write: bytes written, or -1 (errno EAGAIN: later; else the connection failed). */
static ssize_t c_send(conn_t *c, const char *buf, size_t len)
{
    int n, e;

    if (c->ssl == NULL) {
        return send(c->fd, buf, len, MSG_NOSIGNAL);
    }
    ERR_clear_error();
    n = SSL_write(c->ssl, buf, (int)len);
    if (n > 0) {
        return n;
    }
    e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EIO;
    return -1;
}

/* recv() or SSL_read: bytes read, 0 at the end, or -1 (errno EAGAIN: none now). */
static ssize_t c_recv(conn_t *c, char *buf, size_t len)
{
    int n, e;

    if (c->ssl == NULL) {
        return recv(c->fd, buf, len, 0);
    }
    ERR_clear_error();
    n = SSL_read(c->ssl, buf, (int)len);
    if (n > 0) {
        return n;
    }
    e = SSL_get_error(c->ssl, n);
    ERR_clear_error();
    if (e == SSL_ERROR_ZERO_RETURN) {
        return 0;
    }
    errno = e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? EAGAIN : EIO;
    return -1;
}

/* The first failed handshake says why (every later one counts as a socket error only). */
static void tls_fail_once(SSL *ssl)
{
    static atomic_int said;
    long v = SSL_get_verify_result(ssl);
    char why[256];

    ep_tls_last_error(why, sizeof(why));
    if (!atomic_exchange(&said, 1)) {
        fprintf(stderr, "eventpipe bench: TLS handshake failed: %s\n",
                v != X509_V_OK ? X509_verify_cert_error_string(v)
                : why[0]       ? why
                               : "closed");
    }
}

static int conn_open(worker_t *w, conn_t *c, int ep)
{
    struct epoll_event ev;
    int one = 1;

    c->connected = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd >= 0) {
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(c->fd, (struct sockaddr *)&w->addr, sizeof(w->addr)) < 0 &&
            errno != EINPROGRESS) {
            close(c->fd);
            c->fd = -1;
        }
    }
    if (c->fd < 0) {
        /* Refused or out of sockets: a socket error; try again a little later, not in a spin. */
        w->errors++;
        c->busy = 0;
        c->retry_ns = ep_time_mono_ns() + RECONNECT_NS;
        return -1;
    }
    c->busy = 0;
    c->rlen = 0;
    c->sent = 0;
    c->tls_ready = 0;
    if (w->o->tls) {
        c->tio.fd = c->fd;
        c->ssl = ep_tls_connect(w->o->tls, &c->tio, w->o->host);
        if (c->ssl == NULL) {
            close(c->fd);
            c->fd = -1;
            w->errors++;
            c->retry_ns = ep_time_mono_ns() + RECONNECT_NS;
            return -1;
        }
    }
    /* Edge-triggered: a writable socket must not wake the loop over and over. */
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static void conn_reset(worker_t *w, conn_t *c, int ep)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    SSL_free(c->ssl);
    c->ssl = NULL;
    c->fd = -1;
    if (c->busy) {
        w->errors++;
        atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
    } else if (!c->connected) {
        w->errors++; /* the connect itself failed */
        c->retry_ns = ep_time_mono_ns() + RECONNECT_NS;
        return;
    }
    c->busy = 0;
    if (!atomic_load(&stop_flag)) {
        conn_open(w, c, ep);
    }
}

/* Starts the next request on c if one is due. */
static void try_send(worker_t *w, conn_t *c, int64_t now)
{
    ssize_t n;

    if (c->busy || c->fd < 0 || (c->ssl && !c->tls_ready) ||
        atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
        return;
    }
    if (w->interval_ns > 0) {
        if (c->next_due_ns > now) {
            return;
        }
        c->due_ns = c->next_due_ns;
        c->next_due_ns += w->interval_ns;
    } else {
        c->due_ns = now;
    }
    if (w->o->requests > 0 && atomic_fetch_sub(&budget, 1) <= 0) {
        /* All started: the main thread stops once the ones in flight are answered. */
        return;
    }
    c->busy = 1;
    c->sent = 0;
    n = c_send(c, w->req, w->req_len);
    if (n > 0) {
        c->sent = (size_t)n;
    }
}

/* Parses a complete response at the start of c->rbuf; returns its length or 0. */
static size_t parse_response(const char *b, size_t len, int *status, int *close_after)
{
    const char *end = memmem(b, len, EP_STRLIT("\r\n\r\n"));
    const char *p;
    size_t head, body = 0;

    if (end == NULL) {
        return 0;
    }
    head = (size_t)(end - b) + 4;
    if (len < 12) {
        return 0;
    }
    *status = atoi(b + 9);
    *close_after = 0;
    for (p = b; p < end; p++) {
        if ((*p == 'C' || *p == 'c') && (size_t)(end - p) > 16 &&
            strncasecmp(p, EP_STRLIT("Content-Length:")) == 0) {
            body = (size_t)strtoul(p + 15, NULL, 10);
        } else if ((*p == 'C' || *p == 'c') &&
                   strncasecmp(p, EP_STRLIT("Connection: close")) == 0) {
            *close_after = 1;
        }
    }
    return len >= head + body ? head + body : 0;
}

static void on_readable(worker_t *w, conn_t *c, int ep)
{
    for (;;) {
        ssize_t n = c_recv(c, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_reset(w, c, ep);
            return;
        }
        if (n < 0) {
            return;
        }
        c->rlen += (size_t)n;
        for (;;) {
            int status = 0, close_after = 0;
            size_t used = parse_response(c->rbuf, c->rlen, &status, &close_after);
            int64_t now;
            if (used == 0) {
                if (c->rlen == sizeof(c->rbuf)) {
                    conn_reset(w, c, ep); /* oversized answer: not ours to read */
                    return;
                }
                break;
            }
            now = ep_time_mono_ns();
            if (c->busy) {
                ep_hist_record(&w->hist, (uint64_t)((now - c->due_ns) / 1000));
                if (status >= 200 && status < 300) {
                    w->ok++;
                } else {
                    w->non2xx++;
                }
                if (status >= 100 && status < 600) {
                    w->status[status / 100]++;
                }
                c->busy = 0;
                atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
            }
            memmove(c->rbuf, c->rbuf + used, c->rlen - used);
            c->rlen -= used;
            if (close_after) {
                c->busy = 0;
                conn_reset(w, c, ep);
                return;
            }
            try_send(w, c, now);
        }
        /* TLS: one record per read; the socket is empty once a recv came short and
           OpenSSL holds nothing (no extra SSL_read only to get WANT_READ). */
        if (c->ssl && c->tio.drained && !SSL_has_pending(c->ssl)) {
            return;
        }
    }
}

/* Connections with a request in flight. */
static int busy_conns(const conn_t *conns, int n)
{
    int busy = 0;

    for (int i = 0; i < n; i++) {
        busy += conns[i].fd >= 0 && conns[i].busy;
    }
    return busy;
}

/* After stop_flag: whether to leave the loop (every answer in, or DRAIN_NS over). */
static int drained(const worker_t *w, const conn_t *conns, int64_t now, int64_t *deadline)
{
    if (*deadline == 0) {
        *deadline = now + DRAIN_NS;
    }
    return busy_conns(conns, w->nconn) == 0 || now >= *deadline;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    int ep = epoll_create1(EPOLL_CLOEXEC);
    conn_t *conns = ep_calloc((size_t)w->nconn, sizeof(conn_t));
    struct epoll_event evs[256];
    int64_t t0 = ep_time_mono_ns(), drain_deadline = 0;

    for (int i = 0; i < w->nconn; i++) {
        conns[i].fd = -1;
        /* Spread the first sends over one interval so connections don't fire together. */
        conns[i].next_due_ns = t0 + (w->interval_ns * i) / (w->nconn ? w->nconn : 1);
        conn_open(w, &conns[i], ep);
    }
    for (;;) {
        int timeout = w->interval_ns > 0 ? 1 : 100;
        int n;
        int64_t now = ep_time_mono_ns();

        if (atomic_load_explicit(&stop_flag, memory_order_relaxed) &&
            drained(w, conns, now, &drain_deadline)) {
            break;
        }
        n = epoll_wait(ep, evs, 256, timeout);
        now = ep_time_mono_ns();

        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (c->fd < 0) {
                continue;
            }
            if (evs[i].events & (EPOLLERR | EPOLLHUP)) {
                conn_reset(w, c, ep);
                continue;
            }
            c->connected = 1;
            if (c->ssl && !c->tls_ready) {
                int r;
                ERR_clear_error();
                r = SSL_do_handshake(c->ssl);
                if (r != 1) {
                    int e = SSL_get_error(c->ssl, r);
                    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                        tls_fail_once(c->ssl);
                        c->busy = 0;
                        c->connected = 0; /* counted as a connect error, retried later */
                        conn_reset(w, c, ep);
                    }
                    continue;
                }
                c->tls_ready = 1;
                try_send(w, c, now);
            }
            if (evs[i].events & EPOLLIN) {
                on_readable(w, c, ep);
            }
            if (c->fd >= 0 && (evs[i].events & EPOLLOUT)) {
                if (c->busy && c->sent < w->req_len) {
                    ssize_t s = c_send(c, w->req + c->sent, w->req_len - c->sent);
                    if (s > 0) {
                        c->sent += (size_t)s;
                    }
                } else {
                    try_send(w, c, now);
                }
            }
        }
        if (w->interval_ns > 0) {
            for (int i = 0; i < w->nconn; i++) {
                try_send(w, &conns[i], now);
            }
        }
        for (int i = 0; i < w->nconn; i++) {
            if (conns[i].fd < 0 && now >= conns[i].retry_ns &&
                !atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
                conn_open(w, &conns[i], ep);
            }
        }
    }
    for (int i = 0; i < w->nconn; i++) {
        if (conns[i].fd >= 0) {
            if (conns[i].busy) {
                w->errors++; /* no answer within DRAIN_NS */
            }
            SSL_free(conns[i].ssl);
            close(conns[i].fd);
        }
    }
    close(ep);
    ep_free(conns);
    return NULL;
}

/* ---------------------------------------------------------------- cli */

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: eventpipe bench [options]\n"
        "HTTP load generator for eventpipe (keep-alive connections, epoll).\n\n"
        "  --url URL          target (http://127.0.0.1:8080/api/v1/ingest)\n"
        "  -c, --connections N  connections (64)\n"
        "  -t, --threads N    load threads (1)\n"
        "  -d, --duration D  run time: seconds or a duration such as 30s, 1m30s (10)\n"
        "  -n, --requests N   stop after N answered requests instead (-d still bounds it)\n"
        "  --rate R           fixed rate in requests/s; latency from the scheduled time\n"
        "  --batch B          events per request as NDJSON (1: one JSON event)\n"
        "  --body JSON        the event to send (a seed 000 event by default)\n" EP_TOOL_CONN_HELP
        "  --json             print the report as JSON\n"
        "  --quiet            no progress line\n"
        "  --grpc             gRPC: SendEvent (SendBatchEvents with --batch);\n"
        "                     --url host:port (grpcs:// for TLS; 127.0.0.1:50051)\n"
        "  --streams S        --grpc: calls in flight per connection (1)\n");
}

static int parse_url(const char *url, opts_t *o)
{
    const char *p = url, *slash, *colon;
    int https = strncmp(p, EP_STRLIT("https://")) == 0;

    if (!https && strncmp(p, EP_STRLIT("http://")) != 0) {
        return -1;
    }
    p += https ? 8 : 7;
    slash = strchr(p, '/');
    colon = memchr(p, ':', slash ? (size_t)(slash - p) : strlen(p));
    snprintf(o->host, sizeof(o->host), "%.*s",
             (int)((colon ? colon : (slash ? slash : p + strlen(p))) - p), p);
    o->port = colon ? atoi(colon + 1) : https ? 443 : 80;
    snprintf(o->path, sizeof(o->path), "%s", slash ? slash : "/");
    return o->port > 0 ? https : -1;
}

/*
 * Reads the options into o, *url and conn. Returns -1 (run), or the exit
 * status (0 after --help, 2 after a usage error on stderr).
 */
static int parse_args(int argc, char **argv, opts_t *o, const char **url, ep_tool_conn_t *conn)
{
    int taken;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--json") == 0) {
            o->json = 1;
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "eventpipe bench: %s needs a value (see --help)\n", a);
            return 2;
        }
        if ((taken = ep__tool_conn_opt(conn, "bench", a, v)) != 0) {
            if (taken < 0) {
                return 2;
            }
        } else if (strcmp(a, "--url") == 0) {
            *url = v;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--connections") == 0) {
            o->connections = atoi(v);
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            o->threads = atoi(v);
        } else if (strcmp(a, "-d") == 0 || strcmp(a, "--duration") == 0) {
            /* A number of seconds ("2.5"), or a Go duration ("30s", "1m30s"). */
            if (ep__tool_duration("bench", v, &o->duration_s) != 0) {
                return 2;
            }
            o->duration_given = 1;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--requests") == 0) {
            o->requests = atoll(v);
        } else if (strcmp(a, "--rate") == 0) {
            o->rate = atof(v);
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = atoi(v);
        } else if (strcmp(a, "--body") == 0) {
            o->body_arg = v;
        } else {
            fprintf(stderr, "eventpipe bench: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        i++;
    }
    return -1;
}

/* The request every connection sends: the event (o->batch times, as NDJSON) and its head. */
static void build_request(const opts_t *o, ep_buf_t *req)
{
    const char *def_body =
        "{\"source\":\"sensor-01\",\"data\":\"temperature:23.5\",\"metadata\":{\"location\":"
        "\"warehouse-A\"}}";
    ep_buf_t body = EP_BUF_INIT;

    for (int k = 0; k < o->batch; k++) {
        ep_buf_puts(&body, o->body_arg ? o->body_arg : def_body);
        if (o->batch > 1) {
            ep_buf_putc(&body, '\n');
        }
    }
    ep_buf_printf(req,
                  "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: %s\r\nContent-Length: %zu\r\n",
                  o->path, o->host, o->port,
                  o->batch > 1 ? "application/x-ndjson" : "application/json", body.len);
    if (o->api_key) {
        ep_buf_printf(req, "X-API-Key: %s\r\n", o->api_key);
    }
    ep_buf_puts(req, "\r\n");
    ep_buf_append(req, body.data, body.len);
    ep_buf_close(&body);
}

static uint64_t requests_done(const worker_t *ws, int n)
{
    uint64_t d = 0;

    for (int i = 0; i < n; i++) {
        d += atomic_load(&ws[i].done);
    }
    return d;
}

/* Waits, printing progress once a second, until the run's duration or request count is done. */
static void wait_run(const opts_t *o, const worker_t *ws, int64_t t0)
{
    int64_t t_end = t0 + (int64_t)(o->duration_s * 1e9), next = t0 + 1000000000;

    while (!atomic_load(&stop_flag)) {
        int64_t now = ep_time_mono_ns();
        if ((o->requests <= 0 || o->duration_given) && now >= t_end) {
            break;
        }
        if (o->requests > 0 && (long long)requests_done(ws, o->threads) >= o->requests) {
            break;
        }
        if (!o->quiet && now >= next) {
            uint64_t d = requests_done(ws, o->threads);
            fprintf(stderr, "  %.0fs: %llu requests (%.0f/s)\n", (double)(now - t0) / 1e9,
                    (unsigned long long)d, (double)d / ((double)(now - t0) / 1e9));
            next += 1000000000;
        }
        ep_time_sleep_ms(10);
    }
}

/* Prints the workers' sums (JSON or text). Returns the exit status: 0 when every answer was 2xx. */
static int report(const opts_t *o, const char *url, const worker_t *ws, double el)
{
    ep_hist_t all;
    uint64_t ok = 0, non2xx = 0, errors = 0, status[6] = {0};

    ep_hist_init(&all);
    for (int i = 0; i < o->threads; i++) {
        const worker_t *w = &ws[i];
        ep_hist_merge(&all, &w->hist);
        ok += w->ok;
        non2xx += w->non2xx;
        errors += w->errors;
        for (int k = 0; k < 6; k++) {
            status[k] += w->status[k];
        }
    }
    if (o->json) {
        printf("{\"url\":\"%s\",\"connections\":%d,\"threads\":%d,\"batch\":%d,\"rate\":%.0f,"
               "\"duration_s\":%.3f,\"requests\":%llu,\"ok\":%llu,\"non2xx\":%llu,"
               "\"socket_errors\":%llu,\"requests_per_s\":%.1f,\"events_per_s\":%.1f,"
               "\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p95\":%llu,\"p99\":%llu,\"p99_9\":%llu,"
               "\"max\":%llu},\"status\":{\"2xx\":%llu,\"4xx\":%llu,\"5xx\":%llu}}\n",
               url, o->connections, o->threads, o->batch, o->rate, el,
               (unsigned long long)all.count, (unsigned long long)ok, (unsigned long long)non2xx,
               (unsigned long long)errors, (double)all.count / el, (double)ok * o->batch / el,
               (unsigned long long)hist_pct(&all, 50), (unsigned long long)hist_pct(&all, 90),
               (unsigned long long)hist_pct(&all, 95), (unsigned long long)hist_pct(&all, 99),
               (unsigned long long)hist_pct(&all, 99.9), (unsigned long long)all.max,
               (unsigned long long)status[2], (unsigned long long)status[4],
               (unsigned long long)status[5]);
    } else {
        printf("%s: %d connections, %d threads, batch %d%s, %.2f s\n", url, o->connections,
               o->threads, o->batch, o->rate > 0 ? ", fixed rate" : "", el);
        printf("  requests %llu (%.0f/s), events %.0f/s\n", (unsigned long long)all.count,
               (double)all.count / el, (double)ok * o->batch / el);
        printf("  latency p50 %.3f ms, p90 %.3f ms, p95 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, "
               "max %.3f ms\n",
               (double)hist_pct(&all, 50) / 1000.0, (double)hist_pct(&all, 90) / 1000.0,
               (double)hist_pct(&all, 95) / 1000.0, (double)hist_pct(&all, 99) / 1000.0,
               (double)hist_pct(&all, 99.9) / 1000.0, (double)all.max / 1000.0);
        printf("  2xx %llu, non-2xx %llu (4xx %llu, 5xx %llu), socket errors %llu\n",
               (unsigned long long)ok, (unsigned long long)non2xx, (unsigned long long)status[4],
               (unsigned long long)status[5], (unsigned long long)errors);
    }
    return errors == 0 && non2xx == 0 ? 0 : 1;
}

int ep_tool_bench(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--grpc") == 0) {
            return ep_tool_bench_grpc(argc, argv); /* issue 16 */
        }
    }
    opts_t o = {.connections = 64, .threads = 1, .batch = 1, .duration_s = 10};
    const char *url = "http://127.0.0.1:8080/api/v1/ingest";
    ep_buf_t req = EP_BUF_INIT;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    worker_t *ws;
    int64_t t0;
    double el;
    ep_tool_conn_t conn;
    int https, rc;

    ep__tool_conn_init(&conn);
    if ((rc = parse_args(argc, argv, &o, &url, &conn)) >= 0) {
        return rc;
    }
    https = parse_url(url, &o);
    if (https < 0 || o.connections < 1 || o.threads < 1 || o.batch < 1 || o.rate < 0 ||
        (o.duration_s <= 0 && o.requests <= 0)) {
        fprintf(stderr, "eventpipe bench: invalid options (see --help)\n");
        return 2;
    }
    o.api_key = conn.api_key;
    if (o.threads > o.connections) {
        o.threads = o.connections;
    }
    if (https) {
        char err[600];
        o.tls = ep_tls_client_ctx(conn.cacert, conn.cert, conn.key, err, sizeof(err));
        if (o.tls == NULL) {
            fprintf(stderr, "eventpipe bench: %s\n", err);
            return 2;
        }
    }
    if (getaddrinfo(o.host, NULL, &hints, &ai) != 0 || ai == NULL) {
        fprintf(stderr, "eventpipe bench: cannot resolve %s\n", o.host);
        SSL_CTX_free(o.tls);
        return 1;
    }
    build_request(&o, &req);
    atomic_store(&stop_flag, 0);
    atomic_store(&budget, o.requests);

    ws = ep_calloc((size_t)o.threads, sizeof(worker_t));
    for (int i = 0; i < o.threads; i++) {
        worker_t *w = &ws[i];
        w->o = &o;
        ep_hist_init(&w->hist);
        memcpy(&w->addr, ai->ai_addr, sizeof(w->addr));
        w->addr.sin_port = htons((uint16_t)o.port);
        w->req = req.data;
        w->req_len = req.len;
        w->nconn = o.connections / o.threads + (i < o.connections % o.threads);
        w->interval_ns = o.rate > 0 ? (int64_t)(1e9 * o.connections / o.rate) : 0;
        pthread_create(&w->tid, NULL, worker_main, w);
    }
    freeaddrinfo(ai);

    t0 = ep_time_mono_ns();
    wait_run(&o, ws, t0);
    atomic_store(&stop_flag, 1);
    for (int i = 0; i < o.threads; i++) {
        pthread_join(ws[i].tid, NULL);
    }
    /* Until the last answer: the requests answered while draining are in the counts. */
    el = (double)(ep_time_mono_ns() - t0) / 1e9;
    rc = report(&o, url, ws, el);
    ep_free(ws);
    ep_buf_close(&req);
    SSL_CTX_free(o.tls);
    return rc;
}
