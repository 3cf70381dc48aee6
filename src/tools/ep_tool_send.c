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
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
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
               "  --seed S           random seed (fixed data sets)\n"
               "  --api-key KEY      send X-API-Key: KEY (servers with API_KEYS)\n"
               "  --cacert FILE      https://: PEM CAs to verify the server with (default\n"
               "                     TLS_CA_FILE, else the system store)\n"
               "  --cert FILE, --key FILE  https://: client certificate and key (mutual TLS)\n"
               "  --quiet            no progress line\n\n"
               "Exit status: 0 when every event was accepted, 1 otherwise, 2 usage error.\n");
}

int ep_tool_send(int argc, char **argv)
{
    const char *base = "http://localhost:8080", *path = "/api/v1/events", *one = NULL;
    const char *cacert = getenv("TLS_CA_FILE"), *cert = NULL, *key = NULL;
    long long count = -1;
    double duration = 0, rate = 0;
    int batch = 1, conc = 8, users = 1000, quiet = 0;
    send_t s;
    ep_http_client_t *c;
    char url[512], key_hdr[300] = "";
    ep_buf_t body = EP_BUF_INIT;
    long long sent = 0;
    int64_t t0, next_progress;
    int tty = isatty(STDERR_FILENO);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--quiet") == 0) {
            quiet = 1;
            continue;
        } else if (v == NULL) {
            fprintf(stderr, "eventpipe send: %s needs a value (see --help)\n", a);
            return 2;
        } else if (strcmp(a, "--url") == 0) {
            base = v;
        } else if (strcmp(a, "--cacert") == 0) {
            cacert = v;
        } else if (strcmp(a, "--cert") == 0) {
            cert = v;
        } else if (strcmp(a, "--key") == 0) {
            key = v;
        } else if (strcmp(a, "--path") == 0) {
            path = v;
        } else if (strcmp(a, "--api-key") == 0) {
            if (strpbrk(v, "\r\n") != NULL || strlen(v) > 256) {
                fprintf(stderr,
                        "eventpipe send: --api-key must be one line of at most 256 bytes\n");
                return 2;
            }
            snprintf(key_hdr, sizeof(key_hdr), "X-API-Key: %s", v);
        } else if (strcmp(a, "--event") == 0) {
            one = v;
        } else if (strcmp(a, "--count") == 0) {
            count = atoll(v);
        } else if (strcmp(a, "--duration") == 0) {
            duration = atof(v);
        } else if (strcmp(a, "--rate") == 0) {
            rate = atof(v);
        } else if (strcmp(a, "--batch") == 0) {
            batch = atoi(v);
        } else if (strcmp(a, "--concurrency") == 0) {
            conc = atoi(v);
        } else if (strcmp(a, "--users") == 0) {
            users = atoi(v);
        } else if (strcmp(a, "--seed") == 0) {
            rng_state = (uint64_t)atoll(v) * 0x9e3779b97f4a7c15ULL + 1;
        } else {
            fprintf(stderr, "eventpipe send: unknown option '%s' (see --help)\n", a);
            return 2;
        }
        i++;
    }
    if (batch < 1 || conc < 1 || users < 1 || rate < 0 || duration < 0) {
        fprintf(stderr, "eventpipe send: --batch, --concurrency and --users must be >= 1\n");
        return 2;
    }
    if (count < 0) {
        count = duration > 0 ? -1 : 1000;
    }
    if (one) {
        count = 1;
        batch = 1;
    }
    memset(&s, 0, sizeof(s));
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cond, NULL);
    if (ep_http_client_create(conc, &c) != 0) {
        fprintf(stderr, "eventpipe send: cannot start the HTTP client\n");
        return 1;
    }
    ep_http_client_set_tls(c, cacert, cert, key);
    snprintf(url, sizeof(url), "%s%s", base, batch > 1 ? "/api/v1/events/batch" : path);

    t0 = ep_time_mono_ms();
    next_progress = t0 + 1000;
    while (count < 0 || sent < count) {
        int64_t now = ep_time_mono_ms();
        size_t n = (size_t)batch;
        req_ctx_t *rc;

        if (duration > 0 && now - t0 >= (int64_t)(duration * 1000)) {
            break;
        }
        if (count >= 0 && (long long)n > count - sent) {
            n = (size_t)(count - sent);
        }
        /* Pace: event k leaves at t0 + k / rate. */
        if (rate > 0) {
            int64_t due = t0 + (int64_t)((double)sent * 1000.0 / rate);
            if (due > now) {
                ep_time_sleep_ms(due - now < 50 ? due - now : 50);
                continue;
            }
        }
        pthread_mutex_lock(&s.mu);
        while (s.inflight >= conc) {
            pthread_cond_wait(&s.cond, &s.mu);
        }
        s.inflight++;
        pthread_mutex_unlock(&s.mu);

        ep_buf_reset(&body);
        if (one) {
            ep_buf_puts(&body, one);
        } else {
            for (size_t k = 0; k < n; k++) {
                gen_event(&body, users);
                if (batch > 1) {
                    ep_buf_putc(&body, '\n');
                }
            }
        }
        rc = ep_malloc(sizeof(*rc));
        rc->s = &s;
        rc->events = n;
        ep_http_request_opts_t o = {.content_type =
                                        batch > 1 ? "application/x-ndjson" : "application/json",
                                    .headers = key_hdr[0] ? key_hdr : NULL};
        if (ep_http_client_request_ex(c, "POST", url, &o, body.data, body.len, 10000, on_done,
                                      rc) != 0) {
            ep_free(rc);
            break;
        }
        sent += (long long)n;
        if (!quiet && now >= next_progress) {
            double el = (double)(now - t0) / 1000.0;
            fprintf(stderr, "%ssent=%lld ok=%llu failed=%llu rate=%.0f/s%s", tty ? "\r" : "", sent,
                    (unsigned long long)atomic_load(&s.ok_events),
                    (unsigned long long)atomic_load(&s.failed_events),
                    (double)atomic_load(&s.ok_events) / (el > 0 ? el : 1), tty ? "" : "\n");
            next_progress += 1000;
        }
    }
    pthread_mutex_lock(&s.mu);
    while (s.inflight > 0) {
        pthread_cond_wait(&s.cond, &s.mu);
    }
    pthread_mutex_unlock(&s.mu);
    ep_http_client_destroy(c);
    ep_buf_close(&body);
    {
        double el = (double)(ep_time_mono_ms() - t0) / 1000.0;
        unsigned long long ok = atomic_load(&s.ok_events), bad = atomic_load(&s.failed_events);
        if (!quiet && tty) {
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
}
