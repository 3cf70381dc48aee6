#ifndef EP_SINK_H
#define EP_SINK_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"
#include "event/ep_event.h"
#include "obs/ep_metrics.h"

/*
 * The output for processed events (PROCESSOR_SINK): "none", "stdout",
 * "file:PATH" (appended, created if missing) or a webhook, "http://..." or
 * "https://...". One NDJSON line per event (ep_event_to_sink_line): a whole
 * batch per write(2) call, or per POST for a webhook.
 *
 * A webhook POSTs batches (Content-Type: application/x-ndjson) over one
 * keep-alive connection per worker (ep_sink_worker_t), retries 408, 429, 5xx
 * and transport errors with exponential backoff and jitter (a Retry-After
 * replaces the computed delay), and reports per event whether it was
 * delivered (a 2xx), rejected for good (any other answer) or failed (retries
 * exhausted, or cancelled at shutdown): the worker pool acks only the
 * delivered ones.
 */
typedef struct ep_sink_s ep_sink_t;
typedef struct ep_sink_worker_s ep_sink_worker_t; /* one worker's buffers and connection */

#define EP_SINK_DELIVERED 0 /* in the output (a webhook answered 2xx) */
#define EP_SINK_FAILED    1 /* not delivered, may succeed later: redeliver */
#define EP_SINK_REJECTED                                                                           \
    2 /* refused for good (a webhook's 4xx other than 408/429): dead-letter                        \
       */

/*
 * Webhook settings (PROCESSOR_SINK_*); zero values take the defaults except where
 * 0 is valid. Other sinks ignore them. NULL options: every default (linger 5 ms, 5 retries).
 */
typedef struct ep_sink_opts_s {
    int batch_events;          /* most events per POST (0: 500) */
    size_t batch_bytes;        /* most body bytes per POST; a larger single event goes alone
                                  (0: 1 MiB) */
    int linger_ms;             /* how long a worker waits to fill a POST (< 0: 0; 0 is valid) */
    int timeout_ms;            /* one request, connect included (0: 10 s) */
    int retries;               /* retries after the first try (< 0: 0; 0 is valid) */
    int backoff_ms;            /* first retry delay, doubling per retry (0: 100 ms) */
    int backoff_max_ms;        /* cap of the computed delay (0: 10 s) */
    const char *tls_ca_file;   /* https://: CAs to verify the receiver with (NULL, "": system) */
    const char *tls_cert_file; /* client certificate for mutual TLS (NULL, "": none) */
    const char *tls_key_file;
    ep_metrics_t *metrics; /* registry for the ep_sink_* families; NULL: none. Borrowed */
} ep_sink_opts_t;

/* A webhook's counters (exact; all zero for the other sinks). */
typedef struct ep_sink_stats_s {
    uint64_t requests;  /* POSTs sent (retries included) */
    uint64_t failures;  /* POSTs without a 2xx */
    uint64_t retries;   /* POSTs that were retries */
    uint64_t delivered; /* events acknowledged by a 2xx */
    uint64_t rejected;  /* events refused for good */
    uint64_t failed;    /* events given back after the retries (or at a shutdown) */
} ep_sink_stats_t;

/**
 * Opens the sink named by spec with opts (NULL: defaults). Returns 0 and *out,
 * or EP_EINVAL (bad spec) / EP_EIO (file) with err filled ("PROCESSOR_SINK: ...").
 */
int ep_sink_create_ex(const char *spec, const ep_sink_opts_t *opts, ep_sink_t **out, char *err,
                      size_t errlen);

/** ep_sink_create_ex with the default options. */
int ep_sink_create(const char *spec, ep_sink_t **out, char *err, size_t errlen);

/**
 * Writes evs[0..n) as NDJSON lines. scratch is the caller's (per-thread) buffer,
 * reused between calls. Returns 0 or EP_EIO (a webhook: anything not delivered).
 * Thread-safe: concurrent batches never interleave within a line. A webhook
 * opens a connection per call here: workers use ep_sink_deliver.
 */
int ep_sink_write(ep_sink_t *s, ep_event_t *const *evs, size_t n, ep_buf_t *scratch);

/**
 * Creates one thread's state for ep_sink_deliver (a buffer, and a webhook's
 * connection, opened on first use and kept alive). s may be NULL. Free with
 * ep_sink_worker_destroy; use from one thread at a time.
 */
ep_sink_worker_t *ep_sink_worker_create(ep_sink_t *s);

/** Closes the connection and frees w. Accepts NULL. */
void ep_sink_worker_destroy(ep_sink_worker_t *w);

/**
 * Delivers evs[0..n) with w's buffer and connection (a webhook: batched
 * POSTs with retries; this blocks for them). result[i] gets EP_SINK_DELIVERED,
 * EP_SINK_FAILED or EP_SINK_REJECTED. Returns how many were delivered. A NULL
 * sink delivers everything. The events stay the caller's. No allocation once
 * w's buffers have grown to the batch size. Thread-safe with other workers.
 */
size_t ep_sink_deliver(ep_sink_t *s, ep_sink_worker_t *w, ep_event_t *const *evs, size_t n,
                       uint8_t *result);

/**
 * Events a worker should gather for one ep_sink_deliver (PROCESSOR_SINK_BATCH for
 * a webhook), 0 when the sink does not care; *linger_ms gets how long to wait
 * for them. Thread-safe.
 */
size_t ep_sink_gather(const ep_sink_t *s, int *linger_ms);

/**
 * Makes retries stop: the backoff waits and requests in progress end at once
 * and their events come back EP_SINK_FAILED; later deliveries fail at once.
 * For the shutdown deadline. Thread-safe; accepts NULL.
 */
void ep_sink_cancel(ep_sink_t *s);

/** Flushes to the OS (and fdatasync for files when sync != 0). Returns 0 or EP_EIO. */
int ep_sink_flush(ep_sink_t *s, int sync);

/**
 * Whether the output is usable, for /ready: 0 with a reason when a webhook
 * has failed every POST (408, 429, 5xx, no answer) for 5 s, else 1 (and
 * always 1 for the other sinks and NULL). A 2xx makes it 1 again. Thread-safe.
 */
int ep_sink_ready(ep_sink_t *s, char *reason, size_t len);

/** Reads a webhook's counters (zeros for other sinks and NULL). Thread-safe. */
void ep_sink_stats(const ep_sink_t *s, ep_sink_stats_t *st);

/** Appends {"type":"none|stdout|file|http", ...counters} for processor:/stats. */
void ep_sink_stats_json(const ep_sink_t *s, ep_buf_t *out);

/** Closes the sink. Accepts NULL. No worker may use it any more. */
void ep_sink_destroy(ep_sink_t *s);

#endif /* EP_SINK_H */
