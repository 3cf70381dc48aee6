#ifndef EP_WORKER_POOL_H
#define EP_WORKER_POOL_H

#include <stdint.h>

#include "obs/ep_obs.h"
#include "queue/ep_queue.h"
#include "pipeline/ep_sink.h"

/*
 * The worker pool: N threads, each taking batches from the queue, processing
 * them (validate, stamp processed_us, count, optional hook), writing them to
 * the sink, and only then acking them. A processing failure nacks the event
 * for redelivery (with backoff) and counts an error.
 */
typedef struct ep_worker_pool_s ep_worker_pool_t;

/**
 * Optional per-batch hook run once a batch is in the output, before its ack (analytics).
 * Must not keep the event pointers. Called from worker threads concurrently.
 */
typedef void (*ep_worker_batch_cb)(void *arg, ep_event_t *const *evs, size_t n);

typedef struct ep_worker_pool_stats_s {
    uint64_t processed;      /* events processed and acked */
    uint64_t errors;         /* events that failed processing (each failure counted) */
    uint64_t batches;        /* batches taken from the queue */
    uint64_t latency_us_sum; /* sum over processed events of processed_us - received_us */
    uint64_t dead_lettered;  /* events handed to the dead-letter store (or dropped without one) */
    int workers;             /* configured threads */
    int active;              /* threads busy with a batch right now */
} ep_worker_pool_stats_t;

/**
 * Creates a pool of `workers` threads over q, writing to sink (may be NULL =
 * none), taking batches of up to batch_size. Does not start threads. The pool
 * borrows q and sink: both must outlive it.
 */
int ep_worker_pool_create(ep_queue_t *q, ep_sink_t *sink, int workers, int batch_size,
                          ep_worker_pool_t **out);

/**
 * Sets how many deliveries an event gets before a failure dead-letters it
 * (PROCESSOR_MAX_ATTEMPTS; default 5). Before start.
 */
void ep_worker_pool_set_max_attempts(ep_worker_pool_t *p, int max_attempts);

/** Sets the batch hook (before start). */
void ep_worker_pool_set_hook(ep_worker_pool_t *p, ep_worker_batch_cb cb, void *arg);

/**
 * Sets the metrics the workers record processed events into
 * (event_processing_duration_seconds); NULL (the default) records nothing.
 * Borrowed: must outlive the pool's threads. Before start.
 */
void ep_worker_pool_set_obs(ep_worker_pool_t *p, ep_obs_t *obs);

/** Starts the threads. Returns 0 or EP_E*. */
int ep_worker_pool_start(ep_worker_pool_t *p);

/**
 * Stops the pool: the caller has closed the queue first (ep_queue_close), so the
 * workers drain what is left and exit; waits up to timeout_ms for that, then
 * asks the workers to stop after their current batch. Returns 0 when drained,
 * EP_ETIMEDOUT when events were left in the queue.
 */
int ep_worker_pool_stop(ep_worker_pool_t *p, int timeout_ms);

/** Reads the counters (exact, merged from per-worker counters). Thread-safe. */
void ep_worker_pool_stats(ep_worker_pool_t *p, ep_worker_pool_stats_t *st);

/** Frees the pool (stops it first if running). Accepts NULL. */
void ep_worker_pool_destroy(ep_worker_pool_t *p);

#endif /* EP_WORKER_POOL_H */
