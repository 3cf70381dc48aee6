#include "base/ep_error.h"
#include "http/ep_http_client.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "base/ep_str.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/*
 * The "forward" queue: publish-only, for an ingest role that runs apart from
 * the processor. Published events wait in a FIFO; up to MAX_INFLIGHT HTTP
 * requests carry them as DataBatch bodies to POST {processor_url}/enqueue.
 * A request leaves as soon as a slot is free, so an idle forwarder adds no
 * latency and a busy one batches naturally (whatever piled up while every slot
 * was busy goes out together). There is no timer.
 *
 * Each event records its publish call in ev->qh and its index in ev->qseq.
 * The call's status array fills in as the batches holding its events come
 * back; the last one to arrive runs the callback.
 *
 * Readiness is probed before it is claimed: ready() is 0 until the processor
 * answered, either a GET {processor_url}/ready (the first one leaves at init)
 * or an /enqueue. Afterwards it follows the processor: every answer or failure
 * sets it, and ready() starts a new probe when the last word from the
 * processor is older than PROBE_INTERVAL_MS.
 */

#define MAX_INFLIGHT      8             /* concurrent /enqueue requests */
#define BATCH_MAX_EVENTS  256           /* events per request */
#define BATCH_MAX_BYTES   (1024 * 1024) /* approximate body bytes per request */
#define PENDING_MAX       65536         /* events waiting; beyond this EP_EFULL */
#define PROBE_INTERVAL_MS 1000          /* /ready probes at most this often */
#define DEFAULT_TIMEOUT   3000          /* when cfg->upstream_timeout_ms <= 0 */

typedef struct pub_s {
    ep_publish_cb cb;
    void *arg;
    size_t n;
    atomic_size_t remaining; /* events without a status yet */
    int status[];            /* n entries */
} pub_t;

typedef struct fwd_s fwd_t;

typedef struct batch_s {
    fwd_t *f;
    size_t n;
    ep_event_t *evs[BATCH_MAX_EVENTS];
} batch_t;

struct fwd_s {
    ep_http_client_t *http;
    char enqueue_url[300];
    char ready_url[300];
    char auth_hdr[300]; /* "Authorization: Bearer <INTERNAL_TOKEN>" for /enqueue, or "" */
    int timeout_ms;

    pthread_mutex_t mu;
    pthread_cond_t idle; /* broadcast when pending or in-flight work shrinks */
    ep_event_t *head;    /* pending FIFO, linked through ev->next */
    ep_event_t *tail;
    size_t pending;
    int inflight;        /* requests */
    size_t inflight_evs; /* events inside those requests */
    int closed;
    int last_ok;           /* outcome of the most recent request or probe; 0 before any */
    char last_error[512];  /* the reason ready() gives while last_ok is 0 */
    int64_t last_word_ms;  /* when that outcome arrived (monotonic) */
    int probing;           /* a /ready probe is in flight */
    int64_t last_probe_ms; /* when the last probe left */

    atomic_uint_fast64_t enqueued; /* accepted by the processor */
    atomic_uint_fast64_t rejected; /* refused: full here or 503/429 there */
    atomic_uint_fast64_t failed;   /* other failures */
    atomic_uint_fast64_t requests; /* /enqueue requests completed */
    atomic_int_fast64_t size;      /* mirror of pending, for lock-free stats */
};

/* ------------------------------------------------------------ completion */

/* Records st for ev in its publish call, frees ev, runs the callback if it was the last. */
static void resolve_event(ep_event_t *ev, int st)
{
    pub_t *p = ev->qh;

    p->status[ev->qseq] = st;
    ep_event_destroy(ev);
    /* The seq_cst decrement orders the status write before the last reader's callback. */
    if (atomic_fetch_sub(&p->remaining, 1) == 1) {
        if (p->cb) {
            p->cb(p->arg, p->n, p->status);
        }
        ep_free(p);
    }
}

/* Maps an /enqueue outcome to the status every event of the batch gets. */
static int status_of(const ep_http_response_t *res)
{
    if (res->err == EP_ECLOSED) {
        return EP_ECLOSED;
    }
    if (res->err != 0) {
        return EP_EUNAVAIL;
    }
    if (res->status >= 200 && res->status < 300) {
        return 0;
    }
    if (res->status == 503 || res->status == 429) {
        return EP_EFULL;
    }
    if (res->status == 401 || res->status == 403) {
        /* The processor refused ingest itself (INTERNAL_TOKEN): not the client's fault. */
        return EP_ECONFIG;
    }
    if (res->status >= 400 && res->status < 500) {
        return EP_EINVAL;
    }
    return EP_EUNAVAIL;
}

/*
 * Finishes a batch with st: callbacks, frees, slot release. reachable says
 * whether the processor answered at all (for ready()); error describes a failure.
 */
static void batch_finish(batch_t *b, int st, int reachable, const char *error)
{
    fwd_t *f = b->f;

    if (st == 0) {
        atomic_fetch_add(&f->enqueued, b->n);
    } else if (st == EP_EFULL) {
        atomic_fetch_add(&f->rejected, b->n);
    } else {
        atomic_fetch_add(&f->failed, b->n);
    }
    for (size_t i = 0; i < b->n; i++) {
        resolve_event(b->evs[i], st);
    }

    pthread_mutex_lock(&f->mu);
    f->inflight--;
    f->inflight_evs -= b->n;
    if (st != EP_ECLOSED) {
        f->last_ok = reachable;
        f->last_word_ms = ep_time_mono_ms();
        if (!reachable) {
            snprintf(f->last_error, sizeof(f->last_error), "processor unreachable: %s", error);
        }
    }
    pthread_cond_broadcast(&f->idle);
    pthread_mutex_unlock(&f->mu);
    ep_free(b);
}

static void pump(fwd_t *f);

static void on_enqueue_done(void *arg, const ep_http_response_t *res)
{
    batch_t *b = arg;
    fwd_t *f = b->f;
    int st = status_of(res);
    /* The processor is reachable when it answered with anything but a server fault. */
    int reachable = res->err == 0 && (res->status < 500 || res->status == 503) &&
                    res->status != 401 && res->status != 403;
    char error[160];

    atomic_fetch_add(&f->requests, 1);
    if (res->err != 0) {
        snprintf(error, sizeof(error), "%s", res->error);
    } else if (res->status == 401 || res->status == 403) {
        snprintf(error, sizeof(error),
                 "HTTP %d from /enqueue: the processor refused ingest (INTERNAL_TOKEN must be "
                 "the same on both)",
                 res->status);
    } else {
        snprintf(error, sizeof(error), "HTTP %d from /enqueue", res->status);
    }
    if (st != 0 && st != EP_ECLOSED) {
        ep_log_debug("forward", "POST %s: %d events failed: %s", f->enqueue_url, (int)b->n, error);
    }
    batch_finish(b, st, reachable, error);
    pump(f);
}

/* ------------------------------------------------------------ sending */

/* Moves up to one request's worth of pending events into a new batch. Caller holds mu. */
static batch_t *batch_take_locked(fwd_t *f)
{
    batch_t *b = ep_malloc(sizeof(*b));
    size_t bytes = 0;

    b->f = f;
    b->n = 0;
    while (f->head && b->n < BATCH_MAX_EVENTS) {
        ep_event_t *ev = f->head;
        if (b->n > 0 && bytes + ev->size > BATCH_MAX_BYTES) {
            break;
        }
        f->head = ev->next;
        ev->next = NULL;
        bytes += ev->size;
        b->evs[b->n++] = ev;
    }
    if (f->head == NULL) {
        f->tail = NULL;
    }
    f->pending -= b->n;
    atomic_store(&f->size, (int_fast64_t)f->pending);
    f->inflight++;
    f->inflight_evs += b->n;
    return b;
}

/*
 * Sends pending events while request slots are free. Runs on publishing threads
 * and on the HTTP client's thread after each response; never holds mu while
 * calling out.
 */
static void pump(fwd_t *f)
{
    for (;;) {
        batch_t *b;
        ep_buf_t body;
        int rc;

        pthread_mutex_lock(&f->mu);
        if (f->head == NULL || f->inflight >= MAX_INFLIGHT) {
            pthread_mutex_unlock(&f->mu);
            return;
        }
        b = batch_take_locked(f);
        pthread_mutex_unlock(&f->mu);

        ep_buf_init(&body);
        rc = ep_event_batch_encode_pb(b->evs, b->n, &body);
        if (rc != 0) {
            ep_buf_close(&body);
            batch_finish(b, EP_EINVAL, 1, "cannot encode batch");
            continue;
        }
        {
            ep_http_request_opts_t o = {.content_type = "application/x-protobuf",
                                        .headers = f->auth_hdr[0] ? f->auth_hdr : NULL};
            rc = ep_http_client_request_ex(f->http, "POST", f->enqueue_url, &o,
                                           body.data ? body.data : "", body.len, f->timeout_ms,
                                           on_enqueue_done, b);
        }
        ep_buf_close(&body);
        if (rc != 0) {
            /* Only while the HTTP client shuts down: nothing will answer this batch. */
            batch_finish(b, rc == EP_ECLOSED ? EP_ECLOSED : EP_EUNAVAIL, 0, ep_strerror(rc));
        }
    }
}

/* ------------------------------------------------------------ readiness probe */

static void on_probe_done(void *arg, const ep_http_response_t *res)
{
    fwd_t *f = arg;
    int body_len = res->body ? (int)res->body_len : 0;

    /* A JSON answer ends with a newline; the reason is one line. */
    while (body_len > 0 && (res->body[body_len - 1] == '\n' || res->body[body_len - 1] == '\r')) {
        body_len--;
    }
    pthread_mutex_lock(&f->mu);
    f->probing = 0;
    if (res->err != EP_ECLOSED) {
        f->last_word_ms = ep_time_mono_ms();
        f->last_ok = res->err == 0 && res->status >= 200 && res->status < 300;
        if (res->err != 0) {
            snprintf(f->last_error, sizeof(f->last_error), "processor unreachable: %s", res->error);
        } else if (!f->last_ok) {
            snprintf(f->last_error, sizeof(f->last_error),
                     "processor not ready: HTTP %d from %s %.*s", res->status, f->ready_url,
                     body_len > 160 ? 160 : body_len, body_len > 0 ? res->body : "");
        }
    }
    pthread_mutex_unlock(&f->mu);
}

/* Sends GET /ready unless one is in flight or left less than PROBE_INTERVAL_MS ago. */
static void probe_start(fwd_t *f)
{
    int64_t now = ep_time_mono_ms();
    int t = f->timeout_ms < PROBE_INTERVAL_MS ? f->timeout_ms : PROBE_INTERVAL_MS;

    pthread_mutex_lock(&f->mu);
    if (f->probing || f->closed ||
        (f->last_probe_ms != 0 && now - f->last_probe_ms < PROBE_INTERVAL_MS)) {
        pthread_mutex_unlock(&f->mu);
        return;
    }
    f->probing = 1;
    f->last_probe_ms = now;
    pthread_mutex_unlock(&f->mu);
    if (ep_http_client_request(f->http, "GET", f->ready_url, NULL, NULL, 0, t, on_probe_done, f) !=
        0) {
        pthread_mutex_lock(&f->mu);
        f->probing = 0;
        pthread_mutex_unlock(&f->mu);
    }
}

/* ------------------------------------------------------------ provider */

static void fwd_free(fwd_t *f)
{
    pthread_cond_destroy(&f->idle);
    pthread_mutex_destroy(&f->mu);
    ep_free(f);
}

static int fwd_init(const ep_config_t *cfg, const void *opts, void **ctx, char *err, size_t errlen)
{
    fwd_t *f;
    size_t ulen = strnlen(cfg->processor_url, sizeof(cfg->processor_url));
    int rc;

    *ctx = NULL;
    if (ulen == 0 || ulen == sizeof(cfg->processor_url)) {
        snprintf(err, errlen, "PROCESSOR_URL must be set for the forward queue");
        return EP_ECONFIG;
    }
    if (strncmp(cfg->processor_url, EP_STRLIT("http://")) != 0 &&
        strncmp(cfg->processor_url, EP_STRLIT("https://")) != 0) {
        snprintf(err, errlen, "PROCESSOR_URL must start with http:// or https:// (got '%s')",
                 cfg->processor_url);
        return EP_ECONFIG;
    }
    while (ulen > 0 && cfg->processor_url[ulen - 1] == '/') {
        ulen--;
    }

    f = ep_calloc(1, sizeof(*f));
    snprintf(f->enqueue_url, sizeof(f->enqueue_url), "%.*s/enqueue", (int)ulen, cfg->processor_url);
    snprintf(f->ready_url, sizeof(f->ready_url), "%.*s/ready", (int)ulen, cfg->processor_url);
    /* /enqueue is a role-to-role route: it needs INTERNAL_TOKEN when one is set (issue 15). */
    if (cfg->internal_token[0]) {
        snprintf(f->auth_hdr, sizeof(f->auth_hdr), "Authorization: Bearer %s", cfg->internal_token);
    }
    f->timeout_ms = cfg->upstream_timeout_ms > 0 ? cfg->upstream_timeout_ms : DEFAULT_TIMEOUT;
    f->last_ok = 0;
    snprintf(f->last_error, sizeof(f->last_error), "processor not probed yet (GET %s)",
             f->ready_url);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->idle, NULL);
    /* One connection per request slot, plus one for the readiness probe. */
    rc = ep_http_client_create(MAX_INFLIGHT + 1, &f->http);
    if (rc != 0) {
        snprintf(err, errlen, "cannot create HTTP client: %s", ep_strerror(rc));
        fwd_free(f);
        return rc;
    }
    ep_http_client_set_tls(f->http, cfg->tls_ca_file, cfg->tls_cert_file, cfg->tls_key_file);
    probe_start(f);
    *ctx = f;
    return 0;
}

static int fwd_publish(void *ctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    fwd_t *f = ctx;
    pub_t *p;

    if (n == 0) {
        /* Nothing to send; still honour "called exactly once", like the memory queue. */
        if (cb) {
            cb(arg, 0, &(int){0});
        }
        return 0;
    }
    p = ep_malloc(sizeof(*p) + n * sizeof(int));
    p->cb = cb;
    p->arg = arg;
    p->n = n;
    atomic_init(&p->remaining, n);

    pthread_mutex_lock(&f->mu);
    if (f->closed) {
        pthread_mutex_unlock(&f->mu);
        ep_free(p);
        return EP_ECLOSED;
    }
    if (f->pending + n > PENDING_MAX) {
        pthread_mutex_unlock(&f->mu);
        ep_free(p);
        atomic_fetch_add(&f->rejected, n);
        return EP_EFULL;
    }
    for (size_t i = 0; i < n; i++) {
        ep_event_t *ev = evs[i];
        p->status[i] = EP_EUNAVAIL;
        ev->qh = p;
        ev->qseq = i;
        ev->next = NULL;
        if (f->tail) {
            f->tail->next = ev;
        } else {
            f->head = ev;
        }
        f->tail = ev;
        evs[i] = NULL;
    }
    f->pending += n;
    atomic_store(&f->size, (int_fast64_t)f->pending);
    pthread_mutex_unlock(&f->mu);

    pump(f);
    return 0;
}

static int fwd_consume(void *ctx, ep_event_t **out, size_t max, int timeout_ms)
{
    return EP_ENOTSUP;
}

static int fwd_ack(void *ctx, ep_event_t **evs, size_t n)
{
    return EP_ENOTSUP;
}

static int fwd_nack(void *ctx, ep_event_t **evs, size_t n, int delay_ms)
{
    return EP_ENOTSUP;
}

static void fwd_stats(void *ctx, ep_queue_stats_t *st)
{
    fwd_t *f = ctx;

    memset(st, 0, sizeof(*st));
    st->enqueued = atomic_load(&f->enqueued);
    st->rejected_full = atomic_load(&f->rejected);
    st->size = atomic_load(&f->size);
    st->capacity = PENDING_MAX;
    pthread_mutex_lock(&f->mu);
    st->in_flight = (int64_t)f->inflight_evs;
    pthread_mutex_unlock(&f->mu);
}

static void fwd_stats_json(void *ctx, ep_buf_t *out)
{
    fwd_t *f = ctx;
    int inflight;

    pthread_mutex_lock(&f->mu);
    inflight = f->inflight;
    pthread_mutex_unlock(&f->mu);
    ep_buf_puts(out, ",\"processor_url\":");
    ep_buf_put_json_str(out, f->enqueue_url, strlen(f->enqueue_url) - strlen("/enqueue"));
    ep_buf_printf(out,
                  ",\"forward_requests\":%llu,\"forward_requests_in_flight\":%d"
                  ",\"forward_failed\":%llu",
                  (unsigned long long)atomic_load(&f->requests), inflight,
                  (unsigned long long)atomic_load(&f->failed));
}

/*
 * Reports the last word from the processor (0 before the first). When that is
 * a failure or older than PROBE_INTERVAL_MS, also starts (asynchronously, at
 * most once per interval) a GET /ready, so that an idle forwarder follows the
 * processor going away and coming back; the result shows on a later call.
 */
static int fwd_ready(void *ctx, char *reason, size_t len)
{
    fwd_t *f = ctx;
    int ok, stale;

    pthread_mutex_lock(&f->mu);
    ok = f->last_ok;
    stale = !ok || ep_time_mono_ms() - f->last_word_ms >= PROBE_INTERVAL_MS;
    if (!ok) {
        snprintf(reason, len, "%s", f->last_error);
    } else if (f->closed) {
        snprintf(reason, len, "forward queue closed");
        ok = 0;
    }
    pthread_mutex_unlock(&f->mu);

    if (stale) {
        probe_start(f);
    }
    return ok;
}

/* Waits until nothing is pending or in flight, up to timeout_ms. Returns 0 or EP_ETIMEDOUT. */
static int fwd_flush(void *ctx, int timeout_ms)
{
    fwd_t *f = ctx;
    struct timespec ts;
    int rc = 0;

    ep_time_deadline_ts(&ts, CLOCK_REALTIME, timeout_ms);
    pthread_mutex_lock(&f->mu);
    while ((f->pending > 0 || f->inflight > 0) && rc == 0) {
        if (pthread_cond_timedwait(&f->idle, &f->mu, &ts) != 0) {
            rc = (f->pending > 0 || f->inflight > 0) ? EP_ETIMEDOUT : 0;
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static void fwd_close(void *ctx)
{
    fwd_t *f = ctx;

    /* Pending events keep going out as slots free up; only new publishes are refused. */
    pthread_mutex_lock(&f->mu);
    f->closed = 1;
    pthread_mutex_unlock(&f->mu);
}

static void fwd_destroy(void *ctx)
{
    fwd_t *f = ctx;
    ep_event_t *ev, *next;

    if (f == NULL) {
        return;
    }
    fwd_close(f);
    /* Give what is pending or in flight one request timeout to be delivered. */
    fwd_flush(f, f->timeout_ms);
    /*
     * Destroying the client completes every request still in flight with
     * EP_ECLOSED; their pump() calls then fail to send, finishing what was
     * still pending with EP_ECLOSED too.
     */
    ep_http_client_destroy(f->http);
    f->http = NULL;

    pthread_mutex_lock(&f->mu);
    ev = f->head;
    f->head = f->tail = NULL;
    f->pending = 0;
    pthread_mutex_unlock(&f->mu);
    for (; ev; ev = next) {
        next = ev->next;
        resolve_event(ev, EP_ECLOSED);
    }
    fwd_free(f);
}

const ep_queue_provider_t ep_queue_forward_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "forward",
    .flags = EP_QUEUE_F_INTERNAL,
    .init = fwd_init,
    .publish = fwd_publish,
    .consume = fwd_consume,
    .ack = fwd_ack,
    .nack = fwd_nack,
    .stats = fwd_stats,
    .stats_json = fwd_stats_json,
    .ready = fwd_ready,
    .flush = fwd_flush,
    .close = fwd_close,
    .destroy = fwd_destroy,
};
