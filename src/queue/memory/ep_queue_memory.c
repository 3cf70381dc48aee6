/*
 * The "memory" queue provider: a bounded in-process queue (QUEUE_SIZE events)
 * on top of ep_mpmc.
 *
 * Publishes are all-or-nothing per batch. Consumed events are the consumer's
 * until ack (freed here) or nack. Nacked events go back into the ring when
 * they are due at once and fit; otherwise they wait on a small mutex-protected
 * redelivery list that consume looks at first. That list is the rare path: it
 * exists so a nack never loses an event, even with the ring full or closed,
 * and so a delay can be honoured (an event on it is not handed out before its
 * not-before time, which ep_redeliver keeps in ev->due_ms, monotonic ms).
 *
 * Counters are relaxed atomics bumped once per batch, never per event.
 */
#include "base/ep_counter.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "queue/ep_mpmc.h"
#include "queue/ep_redeliver.h"
#include "queue/ep_queue.h"
#include "base/ep_time.h"

#include <limits.h>
#include <stddef.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CACHE_LINE 64

#define LINGER_US 1000 /* longest extra wait for an event to be processed */
#define LINGER_WAKE_BATCH                                                                          \
    256 /* this many waiting events wake a lingering worker (at most                               \
           a quarter of QUEUE_SIZE: ep_mpmc_set_linger caps it) */
/*
 * A publish that finds the queue full while a worker is idle (woken, or about
 * to be) waits up to this long for it to make room instead of answering 503:
 * it is only ever the time a runnable worker takes to be scheduled. With every
 * worker busy the answer is 503 at once.
 */
#define FULL_WAIT_MS 250

/* Publish statuses handed to the callback: all zero. Bigger batches allocate. */
#define ZERO_STATUS_N 4096
static const int zero_status[ZERO_STATUS_N];

typedef struct mem_ctx_s {
    ep_mpmc_t *ring;
    int64_t capacity;
    /* Redelivery list (nack), FIFO through ev->next; ev->due_ms = not-before, monotonic ms. */
    pthread_mutex_t lock;
    ep_redeliver_t redeliver;   /* nacked events waiting for their time, under lock */
    _Atomic size_t redeliver_n; /* lets consume skip the lock when the list is empty */
    char pad0[CACHE_LINE];
    ep_queue_counters_t counts; /* publisher and consumer sides a line apart */
    char pad2[CACHE_LINE];
} mem_ctx_t;

/* Takes due redeliveries (see ep_redeliver_take_due). Returns how many. */
static size_t take_due(mem_ctx_t *ctx, ep_event_t **out, size_t max, int64_t *next_due)
{
    size_t got;

    pthread_mutex_lock(&ctx->lock);
    got = ep_redeliver_take_due(&ctx->redeliver, ep_time_mono_ms(), out, max, next_due);
    if (got) {
        atomic_fetch_sub_explicit(&ctx->redeliver_n, got, memory_order_relaxed);
    }
    pthread_mutex_unlock(&ctx->lock);
    return got;
}

/* Appends evs to the redelivery list, not to be handed out before not_before (mono ms). */
static void redeliver_later(mem_ctx_t *ctx, ep_event_t **evs, size_t n, int64_t not_before)
{
    pthread_mutex_lock(&ctx->lock);
    ep_redeliver_add(&ctx->redeliver, evs, n, not_before);
    atomic_fetch_add_explicit(&ctx->redeliver_n, n, memory_order_relaxed);
    pthread_mutex_unlock(&ctx->lock);
}

/* Bookkeeping for events handed to a consumer. Returns n. */
static int handed_out(mem_ctx_t *ctx, ep_event_t **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i]->attempts++;
    }
    ep_counter_add(&ctx->counts.dequeued, n);
    return (int)n;
}

/* The memory queue's settings (its table below). */
typedef struct {
    int64_t size; /* QUEUE_SIZE */
} mem_opts_t;

static const ep_opt_t mem_opt_rows[] = {
    {EP_OPT_I64, "QUEUE_SIZE", "queue-size", "1000", offsetof(mem_opts_t, size), 0, 1, 100000000,
     NULL, "capacity of the memory queue in events (memory only)"},
};

static const ep_opt_table_t mem_options = {
    .name = "memory",
    .opts = mem_opt_rows,
    .n_opts = sizeof(mem_opt_rows) / sizeof(mem_opt_rows[0]),
    .size = sizeof(mem_opts_t),
};

static int mem_init(const ep_config_t *cfg, const void *vopts, void **out, char *err, size_t errlen)
{
    const mem_opts_t *opts = vopts;
    mem_ctx_t *ctx;
    int rc;

    *out = NULL;
    if (opts->size < 1) {
        snprintf(err, errlen, "QUEUE_SIZE must be at least 1 (got %lld)", (long long)opts->size);
        return EP_ECONFIG;
    }
    if ((uint64_t)opts->size > EP_MPMC_MAX_CAPACITY) {
        snprintf(err, errlen, "QUEUE_SIZE must be at most %zu (got %lld)", EP_MPMC_MAX_CAPACITY,
                 (long long)opts->size);
        return EP_ECONFIG;
    }
    ctx = ep_calloc(1, sizeof(*ctx));
    rc = ep_mpmc_create((size_t)opts->size, &ctx->ring);
    if (rc != 0) {
        snprintf(err, errlen, "memory queue: %s", ep_strerror(rc));
        goto err;
    }
    /*
     * A worker that ran dry waits up to LINGER_US for more before the
     * publishers wake it per event: at tens of thousands of single-event
     * requests a second that turns a context switch per event into one per
     * batch (see docs/benchmarks.md).
     */
    ep_mpmc_set_linger(ctx->ring, LINGER_US, LINGER_WAKE_BATCH);
    pthread_mutex_init(&ctx->lock, NULL);
    ctx->capacity = opts->size;
    atomic_init(&ctx->redeliver_n, 0);
    *out = ctx;
    return 0;

err:
    ep_free(ctx);
    return rc;
}

static int mem_publish(void *vctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    mem_ctx_t *ctx = vctx;
    int *status = NULL;
    int rc;

    /* ep_event_t * and void * share a representation; the ring only copies the pointers. */
    rc = ep_mpmc_push_batch_wait(ctx->ring, (void *const *)evs, n, FULL_WAIT_MS);
    if (rc != 0) {
        if (rc == EP_EFULL) {
            /* Counted in events, like enqueued. */
            ep_counter_add(&ctx->counts.rejected_full, n);
        }
        return rc;
    }
    /* From here on a consumer may already own (and free) the events: only clear our slots. */
    for (size_t i = 0; i < n; i++) {
        evs[i] = NULL;
    }
    ep_counter_add(&ctx->counts.enqueued, n);
    if (cb) {
        if (n > ZERO_STATUS_N) {
            status = ep_calloc(n, sizeof(int));
        }
        cb(arg, n, status ? status : zero_status);
        ep_free(status);
    }
    return 0;
}

static int mem_consume(void *vctx, ep_event_t **out, size_t max, int timeout_ms)
{
    mem_ctx_t *ctx = vctx;
    int64_t deadline = timeout_ms > 0 ? ep_time_mono_ms() + timeout_ms : 0;
    int rc;

    if (max == 0) {
        return 0;
    }
    if (max > INT_MAX) {
        max = INT_MAX;
    }
    for (;;) {
        int64_t next_due = INT64_MAX, wait = -1;
        int drained = 0;
        size_t got = 0;

        /* Redeliveries first, then whatever the ring has, without waiting. */
        if (atomic_load_explicit(&ctx->redeliver_n, memory_order_relaxed) > 0) {
            got = take_due(ctx, out, max, &next_due);
        }
        if (got < max) {
            rc = ep_mpmc_pop_batch(ctx->ring, (void **)(out + got), max - got, 0);
            if (rc > 0) {
                got += (size_t)rc;
            } else if (rc == EP_ECLOSED) {
                drained = 1;
            }
        }
        if (got > 0) {
            return handed_out(ctx, out, got);
        }
        if (drained && atomic_load_explicit(&ctx->redeliver_n, memory_order_relaxed) == 0) {
            return EP_ECLOSED;
        }
        if (timeout_ms == 0) {
            return 0;
        }
        if (timeout_ms > 0) {
            wait = deadline - ep_time_mono_ms();
            if (wait <= 0) {
                return 0;
            }
        }
        /* Wake up in time for the first delayed redelivery. */
        if (next_due != INT64_MAX) {
            int64_t until = next_due - ep_time_mono_ms();
            if (until < 1) {
                until = 1;
            }
            if (wait < 0 || until < wait) {
                wait = until;
            }
        }
        if (drained) {
            /* Closed ring: only delayed redeliveries are left, nothing to block on. */
            ep_time_sleep_ms(next_due == INT64_MAX || wait < 0 ? 1 : wait);
            continue;
        }
        rc = ep_mpmc_pop_batch(ctx->ring, (void **)out, max, wait > INT_MAX ? INT_MAX : (int)wait);
        if (rc > 0) {
            return handed_out(ctx, out, (size_t)rc);
        }
        /* Timeout, a redelivery falling due, or closed: look at both sources again. */
    }
}

static int mem_ack(void *vctx, ep_event_t **evs, size_t n)
{
    mem_ctx_t *ctx = vctx;

    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_counter_add(&ctx->counts.acked, n);
    return 0;
}

static int mem_nack(void *vctx, ep_event_t **evs, size_t n, int delay_ms)
{
    mem_ctx_t *ctx = vctx;

    if (n == 0) {
        return 0;
    }
    ep_counter_add(&ctx->counts.nacked, n);
    /* Due now and room in the ring: the normal path, which also wakes consumers. */
    if (delay_ms <= 0 && ep_mpmc_push_batch(ctx->ring, (void *const *)evs, n) == 0) {
        return 0;
    }
    redeliver_later(ctx, evs, n, ep_time_mono_ms() + (delay_ms > 0 ? delay_ms : 0));
    /*
     * Nudge sleeping consumers so they notice the list (and recompute their
     * wake-up time for a delay). A consumer that was just about to sleep may
     * miss this and wait out its own timeout; the nacking consumer sees the
     * list on its next consume anyway.
     */
    ep_mpmc_wake_all(ctx->ring);
    return 0;
}

static void mem_stats(void *vctx, ep_queue_stats_t *st)
{
    mem_ctx_t *ctx = vctx;

    ep_queue_counters_read(&ctx->counts, st);
    st->size = (int64_t)ep_mpmc_size(ctx->ring) +
               (int64_t)atomic_load_explicit(&ctx->redeliver_n, memory_order_relaxed);
    st->capacity = ctx->capacity;
}

static void mem_stats_json(void *vctx, ep_buf_t *out)
{
    mem_ctx_t *ctx = vctx;

    ep_buf_puts(out, ",\"redelivery_pending\":");
    ep_buf_put_u64(out, atomic_load_explicit(&ctx->redeliver_n, memory_order_relaxed));
    ep_buf_puts(out, ",\"idle_consumers\":");
    ep_buf_put_u64(out, ep_mpmc_idle(ctx->ring));
}

static int mem_ready(void *vctx, char *reason, size_t len)
{
    mem_ctx_t *ctx = vctx;

    /* A full queue is backpressure, not unreadiness. */
    if (ep_mpmc_is_closed(ctx->ring)) {
        if (reason && len) {
            snprintf(reason, len, "queue closed");
        }
        return 0;
    }
    return 1;
}

static void mem_close(void *vctx)
{
    mem_ctx_t *ctx = vctx;

    ep_mpmc_close(ctx->ring);
}

static void mem_destroy(void *vctx)
{
    mem_ctx_t *ctx = vctx;
    ep_event_t *batch[64];
    int n;

    if (ctx == NULL) {
        return;
    }
    while ((n = ep_mpmc_pop_batch(ctx->ring, (void **)batch, 64, 0)) > 0) {
        for (int i = 0; i < n; i++) {
            ep_event_destroy(batch[i]);
        }
    }
    ep_redeliver_drop(&ctx->redeliver, NULL, NULL);
    ep_mpmc_destroy(ctx->ring);
    pthread_mutex_destroy(&ctx->lock);
    ep_free(ctx);
}

const ep_queue_provider_t ep_queue_memory_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "memory",
    .flags = EP_QUEUE_F_LOCAL,
    .init = mem_init,
    .publish = mem_publish,
    .consume = mem_consume,
    .ack = mem_ack,
    .nack = mem_nack,
    .stats = mem_stats,
    .stats_json = mem_stats_json,
    .ready = mem_ready,
    .flush = NULL,
    .close = mem_close,
    .destroy = mem_destroy,
    .options = &mem_options,
};
