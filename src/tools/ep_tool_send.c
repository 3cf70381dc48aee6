/*
 * `eventpipe send`: sends realistic synthetic events (seed 004's example client
 * and generate-data) at a chosen rate or count, one per request or in NDJSON
 * batches, with a progress line on stderr and a summary at the end.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "http/ep_http_client.h"
#include "event/ep_id.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "tools/ep_tools.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct send_s {
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int inflight;
    atomic_uint_fast64_t ok_events, failed_events, requests, failed_requests;
    char last_error[200];
} send_t;

typedef struct req_ctx_s {
    send_t *s;
    size_t events;
} req_ctx_t;

static const char *const event_types[] = {"page_view", "page_view", "page_view",   "page_view",
                                          "click",     "click",     "add_to_cart", "search",
                                          "purchase",  "signup"};
static const char *const pages[] = {"/",        "/dashboard", "/products", "/products/42",
                                    "/cart",    "/checkout",  "/search",   "/account",
                                    "/pricing", "/docs"};
static const char *const sources[] = {"web-app", "web-app", "ios-app", "android-app"};
static const char *const devices[] = {"desktop", "mobile", "tablet"};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    return ep__tool_rand(&rng_state);
}

#define PICK(arr) ((arr)[rnd() % (sizeof(arr) / sizeof((arr)[0]))])

/* Appends one synthetic event as a JSON object. Users are skewed: a few are very active. */
static void gen_event(ep_buf_t *b, int users)
{
    double r = (double)(rnd() % 1000000) / 1000000.0;
    int user = (int)(r * r * users);
    const char *type = PICK(event_types);
    char id[EP_UUID_STR_LEN + 1];

    ep_id_uuid7(id);
    ep_buf_printf(b,
                  "{\"id\":\"%s\",\"user_id\":\"user_%05d\",\"event_type\":\"%s\","
                  "\"source\":\"%s\",\"timestamp\":%lld,\"properties\":{\"page\":\"%s\","
                  "\"session_id\":\"sess_%05d_%d\",\"device\":\"%s\"",
                  id, user, type, PICK(sources), (long long)ep_time_now_ms(), PICK(pages), user,
                  (int)(rnd() % 4), PICK(devices));
    if (strcmp(type, "purchase") == 0) {
        ep_buf_printf(b, ",\"amount\":%d.%02d,\"currency\":\"EUR\"", (int)(rnd() % 500) + 1,
                      (int)(rnd() % 100));
    }
    ep_buf_puts(b, "}}");
}

static void on_done(void *arg, const ep_http_response_t *res)
{
    req_ctx_t *rc = arg;
    send_t *s = rc->s;
    size_t ok = 0;

    atomic_fetch_add(&s->requests, 1);
    if (res->status >= 200 && res->status < 300) {
        const char *acc = res->body ? strstr(res->body, "\"accepted\":") : NULL;
        ok = rc->events;
        if (acc && rc->events > 1) {
            const char *dup = strstr(res->body, "\"duplicates\":");
            ok = (size_t)strtoull(acc + 11, NULL, 10) +
                 (dup ? (size_t)strtoull(dup + 13, NULL, 10) : 0);
        }
    } else {
        atomic_fetch_add(&s->failed_requests, 1);
    }
    atomic_fetch_add(&s->ok_events, ok);
    atomic_fetch_add(&s->failed_events, rc->events - ok);
    pthread_mutex_lock(&s->mu);
    if (ok < rc->events) {
        if (res->status == 0) {
            snprintf(s->last_error, sizeof(s->last_error), "%s", res->error);
        } else {
            snprintf(s->last_error, sizeof(s->last_error), "HTTP %d: %.150s", res->status,
                     res->body ? res->body : "");
        }
    }
    s->inflight--;
    pthread_cond_signal(&s->cond);
    pthread_mutex_unlock(&s->mu);
    ep_free(rc);
}

static void usage(FILE *f)
{
    fprintf(f, "Usage: eventpipe send [options]\n"
               "Sends synthetic events (users, sessions, event types, properties) to eventpipe.\n\n"
               "  --url URL          gateway or ingest base URL (http://localhost:8080)\n"
               "  --count N          events to send (default 1000 unless --duration)\n"
               "  --duration SEC     send for SEC seconds instead\n"
               "  --rate R           events per second (0: as fast as allowed; default 0)\n"
               "  --batch B          events per request, NDJSON to /api/v1/events/batch (1)\n"
               "  --concurrency C    requests in flight (8)\n"
               "  --users U          distinct users (1000)\n"
               "  --path P           path for single events (/api/v1/events)\n"
               "  --event JSON       send this one event once (seed 004 example client)\n"
               "  --seed S           random seed (fixed data sets)\n" EP_TOOL_CONN_HELP
               "  --quiet            no progress line\n"
               "  --grpc             over gRPC (ProducerService.SendEvent, SendBatchEvents with\n"
               "                     --batch); --url is host:port (grpc://, grpcs:// for TLS;\n"
               "                     default 127.0.0.1:50051), --api-key goes in authorization\n\n"
               "Exit status: 0 when every event was accepted, 1 otherwise, 2 usage error.\n");
}

/* The options of one run. */
typedef struct send_opts_s {
    const char *base, *path, *one; /* --url, --path, --event (NULL: synthetic events) */
    long long count;               /* events to send; -1: until duration */
    double duration, rate;
    int batch, conc, users, quiet;
    ep_tool_conn_t conn;
} send_opts_t;

/* Reads the options into o. Returns -1 (run), or the exit status (0 after --help, 2). */
static int parse_args(int argc, char **argv, send_opts_t *o)
{
    int taken;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "eventpipe send: %s needs a value (see --help)\n", a);
            return 2;
        } else if ((taken = ep__tool_conn_opt(&o->conn, "send", a, v)) != 0) {
            if (taken < 0) {
                return 2;
            }
        } else if (strcmp(a, "--url") == 0) {
            o->base = v;
        } else if (strcmp(a, "--path") == 0) {
            o->path = v;
        } else if (strcmp(a, "--event") == 0) {
            o->one = v;
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
            rng_state = (uint64_t)atoll(v) * 0x9e3779b97f4a7c15ULL + 1;
        } else {
            fprintf(stderr, "eventpipe send: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        i++;
    }
    if (o->batch < 1 || o->conc < 1 || o->users < 1 || o->rate < 0 || o->duration < 0) {
        fprintf(stderr, "eventpipe send: --batch, --concurrency and --users must be >= 1\n");
        return 2;
    }
    if (o->count < 0) {
        o->count = o->duration > 0 ? -1 : 1000;
    }
    if (o->one) {
        o->count = 1;
        o->batch = 1;
    }
    return -1;
}

/* The body of one request of n events: --event, or n synthetic ones (NDJSON when batched). */
static void fill_body(ep_buf_t *body, const send_opts_t *o, size_t n)
{
    ep_buf_reset(body);
    if (o->one) {
        ep_buf_puts(body, o->one);
        return;
    }
    for (size_t k = 0; k < n; k++) {
        gen_event(body, o->users);
        if (o->batch > 1) {
            ep_buf_putc(body, '\n');
        }
    }
}

/* Waits until at most max - take requests are in flight, then counts take more (0, 0: drained). */
static void wait_inflight(send_t *s, int max, int take)
{
    pthread_mutex_lock(&s->mu);
    while (s->inflight > max - take) {
        pthread_cond_wait(&s->cond, &s->mu);
    }
    s->inflight += take;
    pthread_mutex_unlock(&s->mu);
}

/* Sends until count or duration; returns the events sent. */
static long long send_all(const send_opts_t *o, ep_http_client_t *c, send_t *s, int64_t t0, int tty)
{
    const char *url_path = o->batch > 1 ? "/api/v1/events/batch" : o->path;
    char url[512], key_hdr[300] = "";
    ep_http_request_opts_t ro = {.content_type =
                                     o->batch > 1 ? "application/x-ndjson" : "application/json"};
    ep_buf_t body = EP_BUF_INIT;
    int64_t next_progress = t0 + 1000;
    long long sent = 0;

    snprintf(url, sizeof(url), "%s%s", o->base, url_path);
    if (o->conn.api_key) {
        snprintf(key_hdr, sizeof(key_hdr), "X-API-Key: %s", o->conn.api_key);
        ro.headers = key_hdr;
    }
    while (o->count < 0 || sent < o->count) {
        int64_t now = ep_time_mono_ms();
        size_t n = (size_t)o->batch;
        req_ctx_t *rc;

        if (o->duration > 0 && now - t0 >= (int64_t)(o->duration * 1000)) {
            break;
        }
        if (o->count >= 0 && (long long)n > o->count - sent) {
            n = (size_t)(o->count - sent);
        }
        /* Pace: event k leaves at t0 + k / rate. */
        if (o->rate > 0) {
            int64_t due = t0 + (int64_t)((double)sent * 1000.0 / o->rate);
            if (due > now) {
                ep_time_sleep_ms(due - now < 50 ? due - now : 50);
                continue;
            }
        }
        wait_inflight(s, o->conc, 1);
        fill_body(&body, o, n);
        rc = ep_malloc(sizeof(*rc));
        rc->s = s;
        rc->events = n;
        if (ep_http_client_request_ex(c, "POST", url, &ro, body.data, body.len, 10000, on_done,
                                      rc) != 0) {
            ep_free(rc);
            break;
        }
        sent += (long long)n;
        if (!o->quiet && now >= next_progress) {
            double el = (double)(now - t0) / 1000.0;
            fprintf(stderr, "%ssent=%lld ok=%llu failed=%llu rate=%.0f/s%s", tty ? "\r" : "", sent,
                    (unsigned long long)atomic_load(&s->ok_events),
                    (unsigned long long)atomic_load(&s->failed_events),
                    (double)atomic_load(&s->ok_events) / (el > 0 ? el : 1), tty ? "" : "\n");
            next_progress += 1000;
        }
    }
    ep_buf_close(&body);
    return sent;
}

int ep_tool_send(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--grpc") == 0) {
            return ep_tool_send_grpc(argc, argv); /* issue 16 */
        }
    }
    send_opts_t o = {.base = "http://localhost:8080",
                     .path = "/api/v1/events",
                     .count = -1,
                     .batch = 1,
                     .conc = 8,
                     .users = 1000};
    send_t s;
    ep_http_client_t *c;
    long long sent;
    int64_t t0;
    int tty = isatty(STDERR_FILENO), rc;
    double el;
    unsigned long long ok, bad;

    ep__tool_conn_init(&o.conn);
    if ((rc = parse_args(argc, argv, &o)) >= 0) {
        return rc;
    }
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cond, NULL);
    if (ep_http_client_create(o.conc, &c) != 0) {
        fprintf(stderr, "eventpipe send: cannot start the HTTP client\n");
        return 1;
    }
    ep_http_client_set_tls(c, o.conn.cacert, o.conn.cert, o.conn.key);
    t0 = ep_time_mono_ms();
    sent = send_all(&o, c, &s, t0, tty);
    wait_inflight(&s, 0, 0);
    ep_http_client_destroy(c);

    el = (double)(ep_time_mono_ms() - t0) / 1000.0;
    ok = atomic_load(&s.ok_events);
    bad = atomic_load(&s.failed_events);
    if (!o.quiet && tty) {
        fprintf(stderr, "\n");
    }
    printf("sent %lld events in %llu requests over %.2f s: %llu accepted, %llu failed "
           "(%.0f events/s)\n",
           sent, (unsigned long long)atomic_load(&s.requests), el, ok, bad,
           (double)ok / (el > 0 ? el : 1));
    if (bad) {
        printf("last error: %s\n", s.last_error);
    }
    pthread_mutex_destroy(&s.mu);
    pthread_cond_destroy(&s.cond);
    return bad ? 1 : 0;
}
