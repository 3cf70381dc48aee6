/*
 * `eventpipe send --grpc` and `eventpipe bench --grpc` (issue 16): the same
 * tools over the gRPC API (ProducerService.SendEvent, or SendBatchEvents with
 * --batch), on the client of src/grpc/ep_grpc_client.c.
 *
 * bench: N connections over T threads, S calls in flight per connection
 * (--streams, 1 by default: the HTTP bench's one request per connection);
 * the report and its --json have the HTTP bench's fields, "2xx" meaning
 * status OK, so bench/load_test.sh reads both alike.
 */
#include "analytics/ep_hist.h"
#include "base/ep_buf.h"
#include "base/ep_duration.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "event/ep_id.h"
#include "grpc/ep_grpc_client.h"
#include "grpc/ep_grpc_wire.h"
#include "http/ep_tls.h"
#include "tools/ep_tools.h"

#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define P_SEND  "/eventpipe.v1.ProducerService/SendEvent"
#define P_BATCH "/eventpipe.v1.ProducerService/SendBatchEvents"

/* "host:port", "grpc://host:port" or "grpcs://host:port" (TLS). 0, 1 (TLS) or -1. */
static int parse_target(const char *t, char *host, size_t hlen, int *port)
{
    int tls = 0;
    const char *colon;

    if (strncmp(t, "grpcs://", 8) == 0) {
        tls = 1;
        t += 8;
    } else if (strncmp(t, "grpc://", 7) == 0) {
        t += 7;
    }
    colon = strrchr(t, ':');
    if (colon == NULL || colon == t || (size_t)(colon - t) >= hlen) {
        return -1;
    }
    snprintf(host, hlen, "%.*s", (int)(colon - t), t);
    *port = atoi(colon + 1);
    return *port > 0 && *port < 65536 ? tls : -1;
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    return ep__tool_rand(&rng);
}

/* One synthetic eventpipe.v1.Event (seed 004's data), appended as field num of out. */
static void gen_event(ep_buf_t *out, uint32_t num, int users)
{
    static const char *const types[] = {"page_view", "page_view",   "page_view", "click",
                                        "click",     "add_to_cart", "search",    "purchase"};
    static const char *const pages[] = {"/", "/dashboard", "/products", "/cart", "/checkout"};
    static const char *const sources[] = {"web-app", "web-app", "ios-app", "android-app"};
    double r = (double)(rnd() % 1000000) / 1000000.0;
    int user = (int)(r * r * users);
    char id[EP_UUID_STR_LEN + 1], u[32], sess[40];
    const char *type = types[rnd() % 8], *page = pages[rnd() % 5], *src = sources[rnd() % 4];
    size_t at = ep_pb_open(out, num);

    ep_id_uuid7(id);
    snprintf(u, sizeof(u), "user_%05d", user);
    snprintf(sess, sizeof(sess), "sess_%05d_%d", user, (int)(rnd() % 4));
    ep_pb_put_bytes(out, 1, id, strlen(id));
    ep_pb_put_bytes(out, 2, u, strlen(u));
    ep_pb_put_bytes(out, 3, type, strlen(type));
    ep_pb_put_map_entry(out, 4, "page", 4, page, strlen(page));
    ep_pb_put_map_entry(out, 4, "session_id", 10, sess, strlen(sess));
    ep_pb_put_uint(out, 5, (uint64_t)ep_time_now_ms());
    ep_pb_put_bytes(out, 6, src, strlen(src));
    ep_pb_close(out, at);
}

/* Events a successful answer reports kept (accepted + duplicates of a batch; 1 for one). */
static size_t kept_of(const uint8_t *msg, size_t len, int batch)
{
    ep_pb_reader_t r;
    ep_pb_field_t f;
    size_t n = 0;

    if (!batch) {
        return 1;
    }
    ep_pb_reader_init(&r, msg, len);
    while (ep_pb_next(&r, &f) == 1) {
        if ((f.num == 1 || f.num == 3) && f.wt == EP_PB_VARINT) {
            n += (size_t)f.v;
        }
    }
    return n;
}

static SSL_CTX *client_tls(int tls, const char *cacert, const char *tool)
{
    char err[600];
    SSL_CTX *ctx;

    if (!tls) {
        return NULL;
    }
    ctx = ep_tls_client_ctx(cacert, NULL, NULL, err, sizeof(err));
    if (ctx == NULL) {
        fprintf(stderr, "eventpipe %s: %s\n", tool, err);
    }
    return ctx;
}

/* ---------------------------------------------------------------- send */

typedef struct sendst_s {
    int batch;
    size_t events_in_flight[1];
    unsigned long long ok, failed, calls;
    char last_error[256];
} sendst_t;

typedef struct sendcall_s {
    sendst_t *s;
    size_t n;
} sendcall_t;

static void on_sent(void *arg, int code, const char *message, const uint8_t *msg, size_t len)
{
    sendcall_t *c = arg;
    sendst_t *s = c->s;
    size_t ok = code == 0 ? kept_of(msg, len, s->batch > 1) : 0;

    s->calls++;
    s->ok += ok;
    s->failed += c->n - (ok < c->n ? ok : c->n);
    if (code != 0) {
        snprintf(s->last_error, sizeof(s->last_error), "%s: %s", ep_grpc_code_name(code), message);
    }
    ep_free(c);
}

typedef struct sendopts_s {
    const char *target, *api_key, *cacert;
    long long count;
    double duration, rate;
    int batch, conc, users, quiet, port, tls;
    char host[256];
    char auth[300]; /* "Bearer <api key>" */
} sendopts_t;

/*
 * Reads the options into o. Returns -1 (run), or the exit status (2 after a
 * usage error on stderr).
 */
static int send_parse(int argc, char **argv, sendopts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--grpc") == 0) {
            continue;
        }
        if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "eventpipe send: %s needs a value (see --help)\n", a);
            return 2;
        }
        if (strcmp(a, "--url") == 0) {
            o->target = v;
        } else if (strcmp(a, "--count") == 0) {
            o->count = atoll(v);
        } else if (strcmp(a, "--duration") == 0) {
            o->duration = atof(v);
        } else if (strcmp(a, "--rate") == 0) {
            o->rate = atof(v);
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = atoi(v);
        } else if (strcmp(a, "--concurrency") == 0) {
            o->conc = atoi(v);
        } else if (strcmp(a, "--users") == 0) {
            o->users = atoi(v);
        } else if (strcmp(a, "--seed") == 0) {
            rng = strtoull(v, NULL, 10) | 1;
        } else if (strcmp(a, "--api-key") == 0) {
            o->api_key = v;
        } else if (strcmp(a, "--cacert") == 0) {
            o->cacert = v;
        } else {
            fprintf(stderr, "eventpipe send: %s is not available with --grpc (see --help)\n", a);
            return 2;
        }
        i++;
    }
    o->tls = parse_target(o->target, o->host, sizeof(o->host), &o->port);
    if (o->tls < 0 || o->batch < 1 || o->conc < 1 || o->users < 1 || o->rate < 0 ||
        o->duration < 0) {
        fprintf(stderr, "eventpipe send: with --grpc, --url is host:port (grpc:// or grpcs://); "
                        "--batch, --concurrency and --users must be >= 1\n");
        return 2;
    }
    if (o->count < 0) {
        o->count = o->duration > 0 ? -1 : 1000;
    }
    if (o->api_key) {
        snprintf(o->auth, sizeof(o->auth), "Bearer %s", o->api_key);
    }
    return -1;
}

/* Calls until count or duration, at most conc in flight; returns the events sent. */
static long long send_all(const sendopts_t *o, ep_grpc_conn_t *c, sendst_t *s, int64_t t0)
{
    ep_buf_t msg = EP_BUF_INIT;
    long long sent = 0;

    while (o->count < 0 || sent < o->count) {
        int64_t now = ep_time_mono_ms();
        size_t n = (size_t)o->batch;
        sendcall_t *k;
        if (o->duration > 0 && now - t0 >= (int64_t)(o->duration * 1000)) {
            break;
        }
        if (o->count >= 0 && (long long)n > o->count - sent) {
            n = (size_t)(o->count - sent);
        }
        if (o->rate > 0 && t0 + (int64_t)((double)sent * 1000.0 / o->rate) > now) {
            if (ep_grpc_conn_wait(c, 5) != 0) {
                break;
            }
            continue;
        }
        if (ep_grpc_conn_inflight(c) >= o->conc) {
            if (ep_grpc_conn_wait(c, 100) != 0) {
                break;
            }
            continue;
        }
        ep_buf_reset(&msg);
        if (o->batch > 1) {
            for (size_t j = 0; j < n; j++) {
                gen_event(&msg, 1, o->users);
            }
        } else {
            gen_event(&msg, 1, o->users); /* SendEventRequest.event */
        }
        k = ep_malloc(sizeof(*k));
        k->s = s;
        k->n = n;
        if (ep_grpc_conn_call(c, o->batch > 1 ? P_BATCH : P_SEND, o->api_key ? o->auth : NULL,
                              msg.data, msg.len, 10000, on_sent, k) != 0) {
            ep_free(k);
            break;
        }
        sent += (long long)n;
        if (ep_grpc_conn_io(c) != 0) {
            break;
        }
    }
    ep_buf_close(&msg);
    return sent;
}

int ep_tool_send_grpc(int argc, char **argv)
{
    sendopts_t o = {.target = "127.0.0.1:50051",
                    .cacert = getenv("TLS_CA_FILE"),
                    .count = -1,
                    .batch = 1,
                    .conc = 8,
                    .users = 1000};
    char err[600];
    ep_grpc_conn_t *c = NULL;
    SSL_CTX *ctx;
    sendst_t s;
    long long sent;
    int64_t t0;
    double el;
    int rc;

    if ((rc = send_parse(argc, argv, &o)) >= 0) {
        return rc;
    }
    ctx = client_tls(o.tls, o.cacert, "send");
    if (o.tls && ctx == NULL) {
        return 2;
    }
    if (ep_grpc_conn_open(o.host, o.port, ctx, 10000, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "eventpipe send: %s\n", err);
        SSL_CTX_free(ctx);
        return 1;
    }
    memset(&s, 0, sizeof(s));
    s.batch = o.batch;
    t0 = ep_time_mono_ms();
    sent = send_all(&o, c, &s, t0);
    while (ep_grpc_conn_inflight(c) > 0 && ep_grpc_conn_wait(c, 1000) == 0) {
    }
    ep_grpc_conn_close(c); /* calls still in flight end as failed */
    SSL_CTX_free(ctx);
    el = (double)(ep_time_mono_ms() - t0) / 1000.0;
    if (!o.quiet) {
        fprintf(stderr, "gRPC %s:%d\n", o.host, o.port);
    }
    printf("sent %lld events in %llu calls over %.2f s: %llu accepted, %llu failed "
           "(%.0f events/s)\n",
           sent, s.calls, el, s.ok, s.failed, (double)s.ok / (el > 0 ? el : 1));
    if (s.failed || (unsigned long long)sent != s.ok) {
        printf("last error: %s\n", s.last_error[0] ? s.last_error : "calls left unanswered");
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- bench */

typedef struct bopts_s {
    char host[256];
    int port, connections, threads, streams, batch, json, quiet, duration_given;
    double duration_s;
    long long requests;
    SSL_CTX *tls;
    const char *auth;
    const char *path;
    ep_buf_t msg;
} bopts_t;

typedef struct bworker_s {
    const bopts_t *o;
    int nconn;
    ep_hist_t hist;
    uint64_t ok, bad, errors;
    atomic_uint_fast64_t done;
    pthread_t tid;
} bworker_t;

typedef struct bslot_s {
    bworker_t *w;
    int64_t start_ns;
} bslot_t;

static atomic_int bstop;
static atomic_llong bbudget;

static void on_bench(void *arg, int code, const char *message, const uint8_t *msg, size_t len)
{
    bslot_t *sl = arg;
    bworker_t *w = sl->w;

    (void)message;
    (void)msg;
    (void)len;
    ep_hist_record(&w->hist, (uint64_t)((ep_time_mono_ns() - sl->start_ns) / 1000));
    if (code == 0) {
        w->ok++;
    } else if (code == EP_GRPC_UNAVAILABLE && strncmp(message, "connection", 10) == 0) {
        w->errors++;
    } else {
        w->bad++;
    }
    atomic_fetch_add_explicit(&w->done, 1, memory_order_relaxed);
    ep_free(sl);
}

static int may_start(void)
{
    if (atomic_load_explicit(&bstop, memory_order_relaxed)) {
        return 0;
    }
    if (atomic_load_explicit(&bbudget, memory_order_relaxed) <= 0) {
        return 1; /* no --requests: duration only */
    }
    return atomic_fetch_sub(&bbudget, 1) > 0;
}

static void *bench_main(void *arg)
{
    bworker_t *w = arg;
    const bopts_t *o = w->o;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    ep_grpc_conn_t **cs = ep_calloc((size_t)w->nconn, sizeof(*cs));
    struct pollfd *pf = ep_calloc((size_t)w->nconn, sizeof(*pf));
    int limited = atomic_load(&bbudget) > 0, live = 0;
    int64_t drain_until = 0;

    for (int i = 0; i < w->nconn; i++) {
        char err[600];
        if (ep_grpc_conn_open(o->host, o->port, o->tls, 10000, &cs[i], err, sizeof(err)) != 0) {
            if (!o->quiet) {
                fprintf(stderr, "eventpipe bench: %s\n", err);
            }
            cs[i] = NULL;
            w->errors++;
        } else {
            live++;
        }
    }
    for (int i = 0; i < w->nconn; i++) {
        pf[i].fd = cs[i] ? ep_grpc_conn_fd(cs[i]) : -1;
        pf[i].revents = POLLOUT; /* first round: start calls everywhere */
    }
    while (live > 0) {
        int stopping = atomic_load(&bstop) || (limited && atomic_load(&bbudget) <= 0);
        int inflight = 0, again = 0;
        if (stopping && drain_until == 0) {
            drain_until = ep_time_mono_ns() + 10000000000LL;
        }
        for (int i = 0; i < w->nconn; i++) {
            int started = 0;
            if (cs[i] == NULL) {
                continue;
            }
            while (!stopping && ep_grpc_conn_inflight(cs[i]) < o->streams && may_start()) {
                bslot_t *sl = ep_malloc(sizeof(*sl));
                sl->w = w;
                sl->start_ns = ep_time_mono_ns();
                if (ep_grpc_conn_call_ref(cs[i], o->path, o->auth, o->msg.data, o->msg.len, 30000,
                                          on_bench, sl) != 0) {
                    ep_free(sl);
                    break;
                }
                started = 1;
            }
            /*
             * Only the connections with news or new calls: no syscall for idle ones, and
             * no read where poll saw nothing (new calls only need writing).
             */
            if ((pf[i].revents ? ep_grpc_conn_io(cs[i])
                 : started     ? ep_grpc_conn_flush(cs[i])
                               : 0) != 0) {
                ep_grpc_conn_close(cs[i]);
                cs[i] = NULL;
                pf[i].fd = -1;
                w->errors++;
                live--;
                continue;
            }
            /* Answers that completed in that io let new calls start without waiting. */
            if (!stopping && ep_grpc_conn_inflight(cs[i]) < o->streams) {
                again = 1;
            }
            inflight += ep_grpc_conn_inflight(cs[i]);
            pf[i].events = (short)(POLLIN | (ep_grpc_conn_want_write(cs[i]) ? POLLOUT : 0));
            pf[i].revents = 0;
        }
        if (stopping && (inflight == 0 || ep_time_mono_ns() >= drain_until)) {
            break;
        }
        if (poll(pf, (nfds_t)w->nconn, again && !limited ? 0 : 5) < 0) {
            continue;
        }
    }
    for (int i = 0; i < w->nconn; i++) {
        ep_grpc_conn_close(cs[i]); /* calls unanswered after the drain count as errors */
    }
    ep_free(cs);
    ep_free(pf);
    return NULL;
}

/*
 * Reads the options into o (and the TLS and key settings into the rest).
 * Returns -1 (run), or the exit status (2 after a usage error on stderr).
 */
static int bench_parse(int argc, char **argv, bopts_t *o, const char **target, const char **cacert,
                       const char **api_key)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--grpc") == 0) {
            continue;
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
        if (strcmp(a, "--url") == 0) {
            *target = v;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--connections") == 0) {
            o->connections = atoi(v);
        } else if (strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0) {
            o->threads = atoi(v);
        } else if (strcmp(a, "--streams") == 0) {
            o->streams = atoi(v);
        } else if (strcmp(a, "-d") == 0 || strcmp(a, "--duration") == 0) {
            /* A number of seconds ("2.5"), or a Go duration ("30s", "1m30s"). */
            if (ep__tool_duration("bench", v, &o->duration_s) != 0) {
                return 2;
            }
            o->duration_given = 1;
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--requests") == 0) {
            o->requests = atoll(v);
        } else if (strcmp(a, "--batch") == 0) {
            o->batch = atoi(v);
        } else if (strcmp(a, "--api-key") == 0) {
            *api_key = v;
        } else if (strcmp(a, "--cacert") == 0) {
            *cacert = v;
        } else {
            fprintf(stderr, "eventpipe bench: %s is not available with --grpc (see --help)\n", a);
            return 2;
        }
        i++;
    }
    return -1;
}

/* The bench's fixed event (as the HTTP bench's default body), once or --batch times. */
static void bench_message(bopts_t *o)
{
    for (int k = 0; k < o->batch; k++) {
        size_t at = ep_pb_open(&o->msg, 1);
        ep_pb_put_bytes(&o->msg, 6, "sensor-01", 9);
        ep_pb_put_bytes(&o->msg, 7, "temperature:23.5", 16);
        ep_pb_put_map_entry(&o->msg, 8, "location", 8, "warehouse-A", 11);
        ep_pb_close(&o->msg, at);
    }
    o->path = o->batch > 1 ? P_BATCH : P_SEND;
}

/* Waits, printing progress once a second, until the run's duration or call count is done. */
static void bench_wait(const bopts_t *o, const bworker_t *ws, int64_t t0)
{
    int64_t t_end = t0 + (int64_t)(o->duration_s * 1e9), next = t0 + 1000000000;

    for (;;) {
        int64_t now = ep_time_mono_ns();
        uint64_t d = 0;
        for (int i = 0; i < o->threads; i++) {
            d += atomic_load(&ws[i].done);
        }
        /* -n alone runs to its count; -d bounds it too when given. */
        if ((o->requests > 0 && (long long)d >= o->requests) ||
            ((o->requests <= 0 || o->duration_given) && now >= t_end)) {
            break;
        }
        if (!o->quiet && now >= next) {
            fprintf(stderr, "  %.0fs: %llu calls (%.0f/s)\n", (double)(now - t0) / 1e9,
                    (unsigned long long)d, (double)d / ((double)(now - t0) / 1e9));
            next += 1000000000;
        }
        ep_time_sleep_ms(10);
    }
}

/* Prints the workers' sums (JSON or text). Returns the exit status: 0 when every call was OK. */
static int bench_report(const bopts_t *o, int tls, const bworker_t *ws, double el)
{
    ep_hist_t all;
    uint64_t ok = 0, bad = 0, errors = 0;

    ep_hist_init(&all);
    for (int i = 0; i < o->threads; i++) {
        ep_hist_merge(&all, &ws[i].hist);
        ok += ws[i].ok;
        bad += ws[i].bad;
        errors += ws[i].errors;
    }
    if (o->json) {
        printf("{\"url\":\"grpc%s://%s:%d%s\",\"connections\":%d,\"threads\":%d,\"streams\":%d,"
               "\"batch\":%d,\"rate\":0,\"duration_s\":%.3f,\"requests\":%llu,\"ok\":%llu,"
               "\"non2xx\":%llu,\"socket_errors\":%llu,\"requests_per_s\":%.1f,"
               "\"events_per_s\":%.1f,\"latency_us\":{\"p50\":%llu,\"p90\":%llu,\"p95\":%llu,"
               "\"p99\":%llu,"
               "\"p99_9\":%llu,\"max\":%llu}}\n",
               tls ? "s" : "", o->host, o->port, o->path, o->connections, o->threads, o->streams,
               o->batch, el, (unsigned long long)all.count, (unsigned long long)ok,
               (unsigned long long)bad, (unsigned long long)errors, (double)all.count / el,
               (double)ok * o->batch / el, (unsigned long long)ep_hist_percentile(&all, 0.50),
               (unsigned long long)ep_hist_percentile(&all, 0.90),
               (unsigned long long)ep_hist_percentile(&all, 0.95),
               (unsigned long long)ep_hist_percentile(&all, 0.99),
               (unsigned long long)ep_hist_percentile(&all, 0.999), (unsigned long long)all.max);
    } else {
        printf("grpc%s://%s:%d%s: %d connections x %d streams, %d threads, batch %d, %.2f s\n",
               tls ? "s" : "", o->host, o->port, o->path, o->connections, o->streams, o->threads,
               o->batch, el);
        printf("  calls %llu (%.0f/s), events %.0f/s\n", (unsigned long long)all.count,
               (double)all.count / el, (double)ok * o->batch / el);
        printf("  latency p50 %.3f ms, p90 %.3f ms, p99 %.3f ms, p99.9 %.3f ms, max %.3f ms\n",
               (double)ep_hist_percentile(&all, 0.50) / 1000.0,
               (double)ep_hist_percentile(&all, 0.90) / 1000.0,
               (double)ep_hist_percentile(&all, 0.99) / 1000.0,
               (double)ep_hist_percentile(&all, 0.999) / 1000.0, (double)all.max / 1000.0);
        printf("  OK %llu, other status %llu, connection errors %llu\n", (unsigned long long)ok,
               (unsigned long long)bad, (unsigned long long)errors);
    }
    return errors == 0 && bad == 0 ? 0 : 1;
}

int ep_tool_bench_grpc(int argc, char **argv)
{
    bopts_t o;
    const char *target = "127.0.0.1:50051", *cacert = getenv("TLS_CA_FILE"), *api_key = NULL;
    char auth[300];
    int tls, rc;
    bworker_t *ws;
    int64_t t0;
    double el;

    memset(&o, 0, sizeof(o));
    o.connections = 64;
    o.threads = 1;
    o.streams = 1;
    o.batch = 1;
    o.duration_s = 10;
    if ((rc = bench_parse(argc, argv, &o, &target, &cacert, &api_key)) >= 0) {
        return rc;
    }
    tls = parse_target(target, o.host, sizeof(o.host), &o.port);
    if (tls < 0 || o.connections < 1 || o.threads < 1 || o.streams < 1 || o.batch < 1 ||
        (o.duration_s <= 0 && o.requests <= 0)) {
        fprintf(stderr, "eventpipe bench: invalid options (see --help; with --grpc, --url is "
                        "host:port, grpc:// or grpcs://)\n");
        return 2;
    }
    if (o.threads > o.connections) {
        o.threads = o.connections;
    }
    o.tls = client_tls(tls, cacert, "bench");
    if (tls && o.tls == NULL) {
        return 2;
    }
    if (api_key) {
        snprintf(auth, sizeof(auth), "Bearer %s", api_key);
        o.auth = auth;
    }
    bench_message(&o);
    atomic_store(&bstop, 0);
    atomic_store(&bbudget, o.requests);
    ws = ep_calloc((size_t)o.threads, sizeof(*ws));
    t0 = ep_time_mono_ns();
    for (int i = 0; i < o.threads; i++) {
        ws[i].o = &o;
        ep_hist_init(&ws[i].hist);
        ws[i].nconn = o.connections / o.threads + (i < o.connections % o.threads);
        pthread_create(&ws[i].tid, NULL, bench_main, &ws[i]);
    }
    bench_wait(&o, ws, t0);
    atomic_store(&bstop, 1);
    for (int i = 0; i < o.threads; i++) {
        pthread_join(ws[i].tid, NULL);
    }
    el = (double)(ep_time_mono_ns() - t0) / 1e9;
    rc = bench_report(&o, tls, ws, el);
    ep_free(ws);
    ep_buf_close(&o.msg);
    SSL_CTX_free(o.tls);
    return rc;
}
