/*
 * The worker pool: N threads, each consuming batches from the queue,
 * processing them, writing them to the sink and only then acking them.
 *
 * Counters live in per-worker structs, each on its own cache lines, written
 * only by their owner (relaxed load + store, no read-modify-write across
 * threads) and summed by ep_worker_pool_stats. Nothing is logged per event.
 *
 * A sink that wants bigger batches than PROCESSOR_BATCH (a webhook's
 * PROCESSOR_SINK_BATCH) gets them: a worker keeps consuming for up to the
 * sink's linger until it holds that many events, and delivers them at once.
 * The sink says per event whether it was delivered (acked), failed (nacked
 * for a later redelivery, dead-lettered past PROCESSOR_MAX_ATTEMPTS) or
 * rejected for good (dead-lettered at once).
 *
 * Shutdown: the owner closes the queue, then ep_worker_pool_stop waits for the
 * workers, which drain the queue (delivering what they gathered) and exit on
 * EP_ECLOSED. Past the timeout the sink's retries are cancelled and a stop
 * flag makes the workers exit after their current batch.
 */
#include "pipeline/ep_worker_pool.h"
#include "base/ep_counter.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "obs/ep_obs.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#define CACHE_LINE          64
#define CONSUME_TIMEOUT_MS  200  /* how often an idle worker looks at the stop flag */
#define NACK_BACKOFF_MIN_MS 50   /* first redelivery delay after a sink failure */
#define NACK_BACKOFF_MAX_MS 5000 /* cap of the doubling delay */
#define MAX_WORKERS         1024

typedef struct worker_s {
    /* Written by the owning thread only. */
    _Atomic uint64_t processed;
    _Atomic uint64_t errors;
    _Atomic uint64_t batches;
    _Atomic uint64_t latency_us_sum;
    _Atomic int active;
    char pad0[CACHE_LINE];
    /* The owner's private state. */
    ep_worker_pool_t *pool;
    pthread_t tid;
    int started;
    ep_event_t **batch;
    ep_event_t **poison;
    ep_event_t **retry;   /* events the sink could not deliver this time */
    uint8_t *result;      /* the sink's EP_SINK_* per event of batch */
    ep_sink_worker_t *sw; /* the worker's sink buffer and connection */
    char pad1[CACHE_LINE];
} worker_t;

struct ep_worker_pool_s {
    ep_queue_t *q;
    ep_sink_t *sink;
    int n_workers;
    int batch_size;
    size_t gather; /* events to gather for one delivery (>= batch_size) */
    int linger_ms; /* how long to wait for them */
    ep_worker_batch_cb hook;
    void *hook_arg;
    ep_obs_t *obs; /* the owner's metrics (event_processing_duration_seconds), or NULL */
    worker_t *workers;
    int max_attempts; /* deliveries before an event is dead-lettered */
    _Atomic uint64_t dead_lettered;
    _Atomic int stop; /* exit after the current batch */
    int running;
    pthread_mutex_t lock; /* guards n_exited */
    pthread_cond_t exited_cond;
    int n_exited;
};

/* Redelivery delay after a failure: doubles with the attempt count, capped. */
static int backoff_ms(ep_event_t *const *evs, size_t n)
{
    uint32_t attempts = 1;
    int64_t delay = NACK_BACKOFF_MIN_MS;

    for (size_t i = 0; i < n; i++) {
        if (evs[i]->attempts > attempts) {
            attempts = evs[i]->attempts;
        }
    }
    for (uint32_t i = 1; i < attempts && delay < NACK_BACKOFF_MAX_MS; i++) {
        delay *= 2;
    }
    return (int)(delay < NACK_BACKOFF_MAX_MS ? delay : NACK_BACKOFF_MAX_MS);
}

/* Hands failed-for-good events to the queue's dead-letter store, or acks them. */
static void dead_letter(ep_worker_pool_t *p, ep_event_t **evs, size_t n, const char *reason)
{
    int rc = ep_queue_dead_letter(p->q, evs, n, reason);

    atomic_fetch_add_explicit(&p->dead_lettered, n, memory_order_relaxed);
    if (rc != 0) {
        if (rc != EP_ENOTSUP) {
            ep_log_warn("pool", "dead-lettering %zu events failed (%s); dropping them: %s", n,
                        ep_strerror(rc), reason);
        }
        ep_queue_ack(p->q, evs, n);
    }
}

/* Processes one batch of n events taken from the queue. */
static void process_batch(worker_t *w, size_t n)
{
    ep_worker_pool_t *p = w->pool;
    size_t good = 0, bad = 0;
    uint64_t latency = 0;
    int64_t now = ep_time_now_us();

    /* Validate and stamp; invalid events (poison) are set aside to be acked, not retried. */
    for (size_t i = 0; i < n; i++) {
        ep_event_t *ev = w->batch[i];

        if (ev->id.len == 0 || ev->id.p == NULL) {
            w->poison[bad++] = ev;
            continue;
        }
        ev->processed_us = now;
        w->batch[good++] = ev;
    }
    if (bad > 0) {
        ep_counter_add_single_writer(&w->errors, bad);
        dead_letter(p, w->poison, bad, "invalid event: empty id");
    }
    if (good == 0) {
        return;
    }
    if (ep_sink_deliver(p->sink, w->sw, w->batch, good, w->result) != good) {
        size_t ok = 0, retry = 0, dead = 0, rejected = 0;

        /* Sort the batch: delivered stay in w->batch, the others are set aside. */
        for (size_t i = 0; i < good; i++) {
            ep_event_t *ev = w->batch[i];

            if (w->result[i] == EP_SINK_DELIVERED) {
                w->batch[ok++] = ev;
            } else if (w->result[i] == EP_SINK_REJECTED) {
                w->poison[rejected++] = ev;
            } else {
                w->retry[retry++] = ev;
            }
        }
        ep_counter_add_single_writer(&w->errors, good - ok);
        if (rejected > 0) {
            dead_letter(p, w->poison, rejected, "the output refused the events (a 4xx)");
        }
        /* Events out of attempts go to the dead-letter store; the others come back later. */
        for (size_t i = 0; i < retry; i++) {
            if (w->retry[i]->attempts >= (uint32_t)p->max_attempts) {
                w->poison[dead++] = w->retry[i];
            } else {
                w->retry[i - dead] = w->retry[i];
            }
        }
        if (dead > 0) {
            dead_letter(p, w->poison, dead, "output failed on every attempt");
        }
        if (retry - dead > 0) {
            ep_queue_nack(p->q, w->retry, retry - dead, backoff_ms(w->retry, retry - dead));
        }
        good = ok;
        if (good == 0) {
            return;
        }
    }
    for (size_t i = 0; i < good; i++) {
        int64_t rec = w->batch[i]->received_us;
        latency += (uint64_t)(now > rec ? now - rec : 0);
    }
    /* The analytics hook sees an event once it is in the output, right before its ack. */
    if (p->hook) {
        p->hook(p->hook_arg, w->batch, good);
    }
    ep_obs_processed(p->obs, w->batch, good); /* before the ack, which may free them */
    ep_queue_ack(p->q, w->batch, good);
    ep_counter_add_single_writer(&w->processed, good);
    ep_counter_add_single_writer(&w->latency_us_sum, latency);
}

/*
 * After a first batch of n events, keeps consuming until the sink's gather
 * size or its linger is reached. Returns the new count; *closed is set when
 * the queue said EP_ECLOSED (the events held are still delivered).
 */
static size_t gather_more(worker_t *w, size_t n, int *closed)
{
    ep_worker_pool_t *p = w->pool;
    int64_t deadline = ep_time_mono_ms() + p->linger_ms;

    while (n < p->gather) {
        int64_t left = deadline - ep_time_mono_ms();
        size_t want = p->gather - n;
        int m;

        if (want > (size_t)p->batch_size) {
            want = (size_t)p->batch_size;
        }
        m = ep_queue_consume(p->q, w->batch + n, want, left > 0 ? (int)left : 0);
        if (m == EP_ECLOSED) {
            *closed = 1;
        }
        if (m <= 0) {
            break;
        }
        n += (size_t)m;
    }
    return n;
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    ep_worker_pool_t *p = w->pool;
    int closed = 0;

    while (!closed && !atomic_load_explicit(&p->stop, memory_order_acquire)) {
        int n = ep_queue_consume(p->q, w->batch, (size_t)p->batch_size, CONSUME_TIMEOUT_MS);

        if (n == EP_ECLOSED) {
            break;
        }
        if (n < 0) {
            /* A broken provider: back off instead of spinning on the error. */
            ep_time_sleep_ms(CONSUME_TIMEOUT_MS);
            continue;
        }
        if (n == 0) {
            continue;
        }
        atomic_store_explicit(&w->active, 1, memory_order_relaxed);
        ep_counter_add_single_writer(&w->batches, 1);
        if (p->gather > (size_t)n) {
            n = (int)gather_more(w, (size_t)n, &closed);
        }
        process_batch(w, (size_t)n);
        atomic_store_explicit(&w->active, 0, memory_order_relaxed);
    }

    pthread_mutex_lock(&p->lock);
    p->n_exited++;
    pthread_cond_broadcast(&p->exited_cond);
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Stop flag, then join every started thread. */
static void join_all(ep_worker_pool_t *p)
{
    atomic_store_explicit(&p->stop, 1, memory_order_release);
    for (int i = 0; i < p->n_workers; i++) {
        if (p->workers[i].started) {
            pthread_join(p->workers[i].tid, NULL);
            p->workers[i].started = 0;
        }
    }
}

/*
 * Creates a stopped pool. Returns 0 and *out (free with
 * ep_worker_pool_destroy), or EP_EINVAL for a bad worker count or batch size.
 * Borrows q and sink. Not thread-safe with respect to the new pool.
 */
int ep_worker_pool_create(ep_queue_t *q, ep_sink_t *sink, int workers, int batch_size,
                          ep_worker_pool_t **out)
{
    ep_worker_pool_t *p;
    pthread_condattr_t ca;
    size_t cap;

    *out = NULL;
    if (q == NULL || workers < 1 || workers > MAX_WORKERS || batch_size < 1) {
        return EP_EINVAL;
    }
    p = ep_calloc(1, sizeof(*p));
    p->q = q;
    p->sink = sink;
    p->n_workers = workers;
    p->batch_size = batch_size;
    p->max_attempts = 5;
    p->gather = ep_sink_gather(sink, &p->linger_ms);
    if (p->gather < (size_t)batch_size) {
        p->gather = (size_t)batch_size;
    }
    cap = p->gather;
    p->workers = ep_calloc((size_t)workers, sizeof(worker_t));
    for (int i = 0; i < workers; i++) {
        worker_t *w = &p->workers[i];

        w->pool = p;
        w->batch = ep_malloc(cap * sizeof(ep_event_t *));
        w->poison = ep_malloc(cap * sizeof(ep_event_t *));
        w->retry = ep_malloc(cap * sizeof(ep_event_t *));
        w->result = ep_malloc(cap);
        w->sw = ep_sink_worker_create(sink);
    }
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->exited_cond, &ca);
    pthread_condattr_destroy(&ca);
    *out = p;
    return 0;
}

/* Sets the deliveries before dead-lettering (at least 1). Before start; not thread-safe. */
void ep_worker_pool_set_max_attempts(ep_worker_pool_t *p, int max_attempts)
{
    p->max_attempts = max_attempts > 0 ? max_attempts : 1;
}

/* Sets the batch hook. Call before ep_worker_pool_start; not thread-safe. */
void ep_worker_pool_set_hook(ep_worker_pool_t *p, ep_worker_batch_cb cb, void *arg)
{
    p->hook = cb;
    p->hook_arg = arg;
}

/* Sets the metrics the workers record into (NULL: none). Before start; not thread-safe. */
void ep_worker_pool_set_obs(ep_worker_pool_t *p, ep_obs_t *obs)
{
    p->obs = obs;
}

/*
 * Starts the worker threads. Returns 0, or EP_EINVAL when already running, or
 * the pthread_create error (then no thread is left running). Not thread-safe.
 */
int ep_worker_pool_start(ep_worker_pool_t *p)
{
    int rc;

    if (p->running) {
        return EP_EINVAL;
    }
    atomic_store(&p->stop, 0);
    p->n_exited = 0;
    for (int i = 0; i < p->n_workers; i++) {
        rc = pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]);
        if (rc != 0) {
            ep_log_error("worker", "cannot start worker %d: %s", i, ep_strerror(EP__ERR(rc)));
            goto err;
        }
        p->workers[i].started = 1;
    }
    p->running = 1;
    return 0;

err:
    join_all(p);
    return EP__ERR(rc);
}

/*
 * Waits up to timeout_ms (< 0: forever) for the workers to drain the closed
 * queue and exit, then makes the rest exit after their current batch and
 * joins them all. Returns 0 when drained, EP_ETIMEDOUT when events were left.
 * Not thread-safe (one owner calls start/stop/destroy).
 */
int ep_worker_pool_stop(ep_worker_pool_t *p, int timeout_ms)
{
    ep_queue_stats_t st;
    struct timespec ts;
    int drained;

    if (!p->running) {
        return 0;
    }
    ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, timeout_ms > 0 ? timeout_ms : 0);
    pthread_mutex_lock(&p->lock);
    while (p->n_exited < p->n_workers) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&p->exited_cond, &p->lock);
        } else if (pthread_cond_timedwait(&p->exited_cond, &p->lock, &ts) != 0) {
            break; /* ETIMEDOUT (EINTR is not returned by timedwait) */
        }
    }
    drained = p->n_exited == p->n_workers;
    pthread_mutex_unlock(&p->lock);
    if (!drained) {
        /* Past the deadline: a worker waiting out a webhook's backoff gives its events back. */
        ep_sink_cancel(p->sink);
    }

    join_all(p);
    p->running = 0;
    if (drained) {
        return 0;
    }
    ep_queue_stats(p->q, &st);
    return st.size == 0 ? 0 : EP_ETIMEDOUT;
}

/* Sums the per-worker counters. Thread-safe. */
void ep_worker_pool_stats(ep_worker_pool_t *p, ep_worker_pool_stats_t *st)
{
    st->processed = 0;
    st->errors = 0;
    st->batches = 0;
    st->latency_us_sum = 0;
    st->workers = p->n_workers;
    st->dead_lettered = atomic_load_explicit(&p->dead_lettered, memory_order_relaxed);
    st->active = 0;
    for (int i = 0; i < p->n_workers; i++) {
        worker_t *w = &p->workers[i];

        st->processed += atomic_load_explicit(&w->processed, memory_order_relaxed);
        st->errors += atomic_load_explicit(&w->errors, memory_order_relaxed);
        st->batches += atomic_load_explicit(&w->batches, memory_order_relaxed);
        st->latency_us_sum += atomic_load_explicit(&w->latency_us_sum, memory_order_relaxed);
        st->active += atomic_load_explicit(&w->active, memory_order_relaxed);
    }
}

/* Stops the pool if running (without waiting for a drain) and frees it. Accepts NULL. */
void ep_worker_pool_destroy(ep_worker_pool_t *p)
{
    if (p == NULL) {
        return;
    }
    if (p->running) {
        ep_worker_pool_stop(p, 0);
    }
    for (int i = 0; i < p->n_workers; i++) {
        ep_free(p->workers[i].batch);
        ep_free(p->workers[i].poison);
        ep_free(p->workers[i].retry);
        ep_free(p->workers[i].result);
        ep_sink_worker_destroy(p->workers[i].sw);
    }
    ep_free(p->workers);
    pthread_cond_destroy(&p->exited_cond);
    pthread_mutex_destroy(&p->lock);
    ep_free(p);
}
