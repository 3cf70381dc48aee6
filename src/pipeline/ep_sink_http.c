/*
 * The webhook sink: NDJSON batches POSTed to PROCESSOR_SINK=http(s)://...
 *
 * Each worker owns one libcurl easy handle (ep__sink_http_conn_t) and calls
 * ep__sink_http_post from its own thread: the handle keeps its connection
 * alive between batches, so a steady flow costs no connect, and no lock is
 * shared between workers on the way (counters are relaxed atomic adds, one
 * per request, never per event).
 *
 * Outcomes of one request:
 *   2xx                          delivered
 *   408, 429, 5xx, no answer     retried after a delay: backoff_ms doubling up
 *                                to backoff_max_ms, with "equal jitter" (half
 *                                fixed, half random) so workers that failed
 *                                together do not retry together; a Retry-After
 *                                (seconds or an HTTP date) replaces the delay
 *   anything else (4xx, 3xx)     rejected for good: a retry would get the same
 * After `retries` retries the events come back EP_SINK_FAILED and the worker
 * pool redelivers them later (or dead-letters them past PROCESSOR_MAX_ATTEMPTS).
 *
 * Shutdown: ep__sink_http_cancel wakes every backoff wait (a condition
 * variable) and aborts requests in progress (libcurl's progress callback).
 */
#include "pipeline/ep_sink_http.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "http/ep_http_curl.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define DEF_BATCH_EVENTS   500
#define DEF_BATCH_BYTES    (1024u * 1024u)
#define DEF_LINGER_MS      5
#define DEF_TIMEOUT_MS     10000
#define DEF_RETRIES        5
#define DEF_BACKOFF_MS     100
#define DEF_BACKOFF_MAX_MS 10000
#define CONNECT_MAX_MS     5000   /* connect timeout, within the request timeout */
#define RETRY_AFTER_MAX_MS 300000 /* a receiver's Retry-After is honoured up to 5 minutes */
#define LOG_EVERY_MS       1000   /* at most one failure line a second per sink */
#define SNIPPET            160    /* bytes of a refusal's body kept for the log */
#define UNREADY_AFTER_MS   5000   /* failing this long without a 2xx: /ready says so */

/* Request results: the label values of ep_sink_requests_total{result}. */
enum { R_OK = 0, R_REJECTED, R_SERVER_ERROR, R_THROTTLED, R_TRANSPORT, R_N };
static const char *const r_names[R_N] = {"ok", "rejected", "server_error", "throttled",
                                         "transport"};
/* Event results: ep_sink_events_total{result}, indexed by EP_SINK_*. */
static const char *const e_names[3] = {"delivered", "failed", "rejected"};

struct ep__sink_http_s {
    char *url;
    char *tls_ca, *tls_cert, *tls_key; /* NULL: unset */
    size_t batch_events, batch_bytes;
    int linger_ms, timeout_ms, retries, backoff_ms, backoff_max_ms;
    _Atomic int cancelled;
    pthread_mutex_t lock; /* with wake: the backoff waits */
    pthread_cond_t wake;
    _Atomic int64_t last_log_ms;
    _Atomic int64_t failing_since_ms; /* first failed POST since the last 2xx; 0: none */
    char last_error[CURL_ERROR_SIZE]; /* what the last failed POST got (under lock) */
    _Atomic uint64_t requests, failures, retried;
    _Atomic uint64_t events[3];                                               /* by EP_SINK_* */
    ep_metric_child_t *m_requests[R_N], *m_events[3], *m_seconds, *m_retries; /* or NULL */
};

struct ep__sink_http_conn_s {
    ep__sink_http_t *h;
    CURL *easy;
    struct curl_slist *hdr;
    uint64_t rng; /* xorshift state for the jitter */
    size_t snippet_len;
    char snippet[SNIPPET + 1]; /* start of the last answer's body */
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_ok;

static void curl_init_once(void)
{
    /* Reference-counted by libcurl: the HTTP client's own init is no conflict. */
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
}

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? ep_strdup(s) : NULL;
}

/* Checks the URL the way libcurl will read it: http or https, a host, no blanks. */
static int check_url(const char *url, char *err, size_t errlen)
{
    CURLU *u;
    char *scheme = NULL, *host = NULL;
    int ok;

    for (const char *p = url; *p; p++) {
        if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            snprintf(err, errlen,
                     "PROCESSOR_SINK: the webhook URL has a blank or control "
                     "character");
            return EP_EINVAL;
        }
    }
    u = curl_url();
    if (u == NULL) {
        snprintf(err, errlen, "PROCESSOR_SINK: out of memory");
        return EP_EINVAL;
    }
    ok = curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
         curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host[0] != '\0' &&
         (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0);
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    if (!ok) {
        snprintf(err, errlen, "PROCESSOR_SINK: '%s' is not a valid http:// or https:// URL", url);
        return EP_EINVAL;
    }
    return 0;
}

static void register_metrics(ep__sink_http_t *h, ep_metrics_t *reg)
{
    static const char *const ln[] = {"result"};
    static const double secs[] = EP_METRICS_SECONDS_BUCKETS;
    ep_metric_t *f;

    if (reg == NULL) {
        return;
    }
    f = ep_metrics_counter(reg, "ep_sink_requests_total",
                           "Webhook sink POSTs by result: ok (2xx), rejected (other 4xx, not "
                           "retried), server_error (5xx), throttled (408, 429), transport (no "
                           "answer).",
                           1, ln);
    for (int i = 0; f != NULL && i < R_N; i++) {
        h->m_requests[i] = ep_metrics_child(f, &r_names[i]);
    }
    f = ep_metrics_counter(reg, "ep_sink_events_total",
                           "Events the webhook sink handled, by result: delivered (acked after a "
                           "2xx), failed (retries exhausted: redelivered or dead-lettered), "
                           "rejected (refused with a 4xx: dead-lettered).",
                           1, ln);
    for (int i = 0; f != NULL && i < 3; i++) {
        h->m_events[i] = ep_metrics_child(f, &e_names[i]);
    }
    f = ep_metrics_histogram(reg, "ep_sink_request_seconds",
                             "Time of one webhook POST, from send to the end of the answer.", 0,
                             NULL, secs, (int)(sizeof(secs) / sizeof(secs[0])), 1e-9);
    h->m_seconds = f ? ep_metrics_child(f, NULL) : NULL;
    f = ep_metrics_counter(reg, "ep_sink_retries_total",
                           "Webhook POSTs that were retries of a failed one.", 0, NULL);
    h->m_retries = f ? ep_metrics_child(f, NULL) : NULL;
}

/*
 * Prepares a webhook sink for url. Returns 0 and *out (ep__sink_http_destroy),
 * or EP_EINVAL with err filled. Thread-safe.
 */
int ep__sink_http_create(const char *url, const ep_sink_opts_t *opts, ep__sink_http_t **out,
                         char *err, size_t errlen)
{
    static const ep_sink_opts_t defaults = {.linger_ms = DEF_LINGER_MS, .retries = DEF_RETRIES};
    const ep_sink_opts_t *o = opts ? opts : &defaults;
    ep__sink_http_t *h;
    pthread_condattr_t ca;
    int rc;

    *out = NULL;
    pthread_once(&curl_once, curl_init_once);
    if (!curl_ok) {
        snprintf(err, errlen, "PROCESSOR_SINK: libcurl could not be initialised");
        return EP_EINVAL;
    }
    if ((rc = check_url(url, err, errlen)) != 0) {
        return rc;
    }
    h = ep_calloc(1, sizeof(*h));
    h->url = ep_strdup(url);
    h->tls_ca = dup_or_null(o->tls_ca_file);
    h->tls_cert = dup_or_null(o->tls_cert_file);
    h->tls_key = dup_or_null(o->tls_key_file);
    h->batch_events = o->batch_events > 0 ? (size_t)o->batch_events : DEF_BATCH_EVENTS;
    h->batch_bytes = o->batch_bytes > 0 ? o->batch_bytes : DEF_BATCH_BYTES;
    h->linger_ms = o->linger_ms > 0 ? o->linger_ms : 0;
    h->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEF_TIMEOUT_MS;
    h->retries = o->retries > 0 ? o->retries : 0;
    h->backoff_ms = o->backoff_ms > 0 ? o->backoff_ms : DEF_BACKOFF_MS;
    h->backoff_max_ms = o->backoff_max_ms > 0 ? o->backoff_max_ms : DEF_BACKOFF_MAX_MS;
    if (h->backoff_max_ms < h->backoff_ms) {
        h->backoff_max_ms = h->backoff_ms;
    }
    pthread_mutex_init(&h->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&h->wake, &ca);
    pthread_condattr_destroy(&ca);
    register_metrics(h, o->metrics);
    *out = h;
    return 0;
}

/* ------------------------------------------------------------ connection */

/* The answer's body is not needed beyond a snippet for the log. */
static size_t on_body(char *p, size_t size, size_t nmemb, void *arg)
{
    ep__sink_http_conn_t *c = arg;
    size_t n = size * nmemb, room = SNIPPET - c->snippet_len;

    if (room > 0) {
        size_t k = n < room ? n : room;
        memcpy(c->snippet + c->snippet_len, p, k);
        c->snippet_len += k;
        c->snippet[c->snippet_len] = '\0';
    }
    return n;
}

/* Aborts a request in progress once the sink is cancelled (shutdown deadline). */
static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    ep__sink_http_conn_t *c = arg;

    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load_explicit(&c->h->cancelled, memory_order_relaxed) ? 1 : 0;
}

/*
 * Creates a worker's connection: one easy handle, configured once, whose
 * connection cache keeps the receiver's connection open between POSTs.
 * Returns NULL when libcurl cannot make a handle.
 */
ep__sink_http_conn_t *ep__sink_http_conn_create(ep__sink_http_t *h)
{
    ep__sink_http_conn_t *c = ep_calloc(1, sizeof(*c));
    CURL *e = curl_easy_init();
    long connect_ms = h->timeout_ms < CONNECT_MAX_MS ? h->timeout_ms : CONNECT_MAX_MS;

    if (e == NULL) {
        ep_free(c);
        return NULL;
    }
    c->h = h;
    c->easy = e;
    c->rng = (uint64_t)ep_time_mono_ns() ^ (uint64_t)(uintptr_t)c ^ 0x9e3779b97f4a7c15ull;
    c->hdr = curl_slist_append(NULL, "Content-Type: application/x-ndjson");
    c->hdr = curl_slist_append(c->hdr, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(e, CURLOPT_URL, h->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->hdr);
    curl_easy_setopt(e, CURLOPT_POST, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_XFERINFODATA, c);
    /* Straight to the receiver (no http_proxy); its certificate sent when asked. */
    ep_http_curl_setup(e, (long)h->timeout_ms, connect_ms, c->errbuf, on_body, c, h->tls_ca,
                       h->tls_cert, h->tls_key);
    return c;
}

void ep__sink_http_conn_destroy(ep__sink_http_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    curl_easy_cleanup(c->easy);
    curl_slist_free_all(c->hdr);
    ep_free(c);
}

/* ------------------------------------------------------------ one request, retries */

/* One POST. Returns an R_* result; *retry_after_ms gets a Retry-After (else -1). */
static int post_once(ep__sink_http_t *h, ep__sink_http_conn_t *c, const char *body, size_t len,
                     long *status, int64_t *retry_after_ms)
{
    CURLcode cc;
    curl_off_t ra = -1;
    int64_t t0 = ep_time_mono_ns();

    *status = 0;
    *retry_after_ms = -1;
    c->errbuf[0] = '\0';
    c->snippet_len = 0;
    c->snippet[0] = '\0';
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, body);
    cc = curl_easy_perform(c->easy);
    ep_metrics_hist_observe(h->m_seconds, (uint64_t)(ep_time_mono_ns() - t0));
    if (cc != CURLE_OK) {
        if (c->errbuf[0] == '\0') {
            snprintf(c->errbuf, sizeof(c->errbuf), "%s", curl_easy_strerror(cc));
        }
        return R_TRANSPORT;
    }
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, status);
    if (*status >= 200 && *status < 300) {
        return R_OK;
    }
    /* libcurl reads seconds or an HTTP date; 0 also stands for "none" (then the backoff). */
    if (curl_easy_getinfo(c->easy, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) {
        *retry_after_ms = ra > RETRY_AFTER_MAX_MS / 1000 ? RETRY_AFTER_MAX_MS : (int64_t)ra * 1000;
    }
    if (*status == 408 || *status == 429) {
        return R_THROTTLED;
    }
    return *status >= 500 ? R_SERVER_ERROR : R_REJECTED;
}

/* The delay before retry number `retry` (1, 2, ...): doubling, capped, equal jitter. */
static int64_t backoff_delay(ep__sink_http_t *h, ep__sink_http_conn_t *c, int retry)
{
    int64_t d = h->backoff_ms;
    uint64_t x = c->rng;

    for (int i = 1; i < retry && d < h->backoff_max_ms; i++) {
        d *= 2;
    }
    if (d > h->backoff_max_ms) {
        d = h->backoff_max_ms;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c->rng = x;
    return d / 2 + (int64_t)(x % (uint64_t)(d / 2 + 1));
}

/* Waits ms unless the sink is cancelled first. Returns 0 after the wait, 1 when cancelled. */
static int wait_or_cancel(ep__sink_http_t *h, int64_t ms)
{
    struct timespec ts;
    int cancelled;

    ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, ms);
    pthread_mutex_lock(&h->lock);
    while (!(cancelled = atomic_load(&h->cancelled))) {
        if (pthread_cond_timedwait(&h->wake, &h->lock, &ts) != 0) {
            break;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return cancelled;
}

/* A failure line, at most one a second per sink (never one per event or per retry storm). */
static void log_failure(ep__sink_http_t *h, ep__sink_http_conn_t *c, int r, long status, size_t n,
                        int final)
{
    int64_t now = ep_time_mono_ms(), last = atomic_load(&h->last_log_ms);

    if (now - last < LOG_EVERY_MS || !atomic_compare_exchange_strong(&h->last_log_ms, &last, now)) {
        return;
    }
    while (c->snippet_len > 0 && (unsigned char)c->snippet[c->snippet_len - 1] <= ' ') {
        c->snippet[--c->snippet_len] = '\0'; /* a trailing newline says nothing */
    }
    if (r == R_TRANSPORT) {
        ep_log_warn("sink", "webhook POST of %zu events failed: %s%s", n, c->errbuf,
                    final ? " (retries exhausted: the events go back to the queue)" : "; retrying");
    } else {
        ep_log_warn("sink", "webhook answered %ld to a POST of %zu events%s: %.*s", status, n,
                    r == R_REJECTED ? " (not retried: dead-lettered)"
                    : final         ? " (retries exhausted: the events go back to the queue)"
                                    : "; retrying",
                    (int)c->snippet_len, c->snippet);
    }
}

/* Remembers that the receiver is failing, since when, and with what (for /ready). */
static void note_failure(ep__sink_http_t *h, ep__sink_http_conn_t *c, int r, long status)
{
    int64_t zero = 0;

    atomic_compare_exchange_strong(&h->failing_since_ms, &zero, ep_time_mono_ms());
    pthread_mutex_lock(&h->lock);
    if (r == R_TRANSPORT) {
        snprintf(h->last_error, sizeof(h->last_error), "%s", c->errbuf);
    } else {
        snprintf(h->last_error, sizeof(h->last_error), "answered %ld", status);
    }
    pthread_mutex_unlock(&h->lock);
}

static int finish(ep__sink_http_t *h, int result, size_t n)
{
    atomic_fetch_add_explicit(&h->events[result], n, memory_order_relaxed);
    ep_metrics_counter_add(h->m_events[result], n);
    return result;
}

/*
 * POSTs one batch with retries. Returns EP_SINK_* for its n events. Blocks up
 * to (retries + 1) request timeouts plus the backoff delays, less once cancelled.
 */
int ep__sink_http_post(ep__sink_http_t *h, ep__sink_http_conn_t *c, const char *body, size_t len,
                       size_t n)
{
    for (int attempt = 0;; attempt++) {
        long status;
        int64_t retry_after, delay;
        int r = post_once(h, c, body, len, &status, &retry_after);

        atomic_fetch_add_explicit(&h->requests, 1, memory_order_relaxed);
        ep_metrics_counter_add(h->m_requests[r], 1);
        if (r == R_OK) {
            if (atomic_load_explicit(&h->failing_since_ms, memory_order_relaxed) != 0) {
                atomic_store(&h->failing_since_ms, 0);
            }
            return finish(h, EP_SINK_DELIVERED, n);
        }
        atomic_fetch_add_explicit(&h->failures, 1, memory_order_relaxed);
        if (r != R_REJECTED) {
            note_failure(h, c, r, status);
        }
        if (r == R_REJECTED) {
            log_failure(h, c, r, status, n, 1);
            return finish(h, EP_SINK_REJECTED, n);
        }
        if (attempt >= h->retries || atomic_load(&h->cancelled)) {
            log_failure(h, c, r, status, n, 1);
            return finish(h, EP_SINK_FAILED, n);
        }
        log_failure(h, c, r, status, n, 0);
        delay = retry_after >= 0 ? retry_after : backoff_delay(h, c, attempt + 1);
        if (wait_or_cancel(h, delay)) {
            return finish(h, EP_SINK_FAILED, n);
        }
        atomic_fetch_add_explicit(&h->retried, 1, memory_order_relaxed);
        ep_metrics_counter_add(h->m_retries, 1);
    }
}

void ep__sink_http_limits(const ep__sink_http_t *h, size_t *events, size_t *bytes, int *linger_ms)
{
    *events = h->batch_events;
    *bytes = h->batch_bytes;
    *linger_ms = h->linger_ms;
}

int ep__sink_http_ready(ep__sink_http_t *h, char *reason, size_t len)
{
    int64_t since = atomic_load(&h->failing_since_ms), now = ep_time_mono_ms();

    if (since == 0 || now - since < UNREADY_AFTER_MS) {
        return 1;
    }
    pthread_mutex_lock(&h->lock);
    snprintf(reason, len, "PROCESSOR_SINK: the webhook has failed every POST for %llds (%s)",
             (long long)((now - since) / 1000), h->last_error);
    pthread_mutex_unlock(&h->lock);
    return 0;
}

void ep__sink_http_cancel(ep__sink_http_t *h)
{
    pthread_mutex_lock(&h->lock);
    atomic_store(&h->cancelled, 1);
    pthread_cond_broadcast(&h->wake);
    pthread_mutex_unlock(&h->lock);
}

void ep__sink_http_stats(const ep__sink_http_t *h, ep_sink_stats_t *st)
{
    ep__sink_http_t *m = (ep__sink_http_t *)h; /* atomics are read, never written */

    st->requests = atomic_load_explicit(&m->requests, memory_order_relaxed);
    st->failures = atomic_load_explicit(&m->failures, memory_order_relaxed);
    st->retries = atomic_load_explicit(&m->retried, memory_order_relaxed);
    st->delivered = atomic_load_explicit(&m->events[EP_SINK_DELIVERED], memory_order_relaxed);
    st->failed = atomic_load_explicit(&m->events[EP_SINK_FAILED], memory_order_relaxed);
    st->rejected = atomic_load_explicit(&m->events[EP_SINK_REJECTED], memory_order_relaxed);
}

void ep__sink_http_destroy(ep__sink_http_t *h)
{
    if (h == NULL) {
        return;
    }
    pthread_cond_destroy(&h->wake);
    pthread_mutex_destroy(&h->lock);
    ep_free(h->url);
    ep_free(h->tls_ca);
    ep_free(h->tls_cert);
    ep_free(h->tls_key);
    ep_free(h);
}
