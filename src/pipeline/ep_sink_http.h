#ifndef EP_SINK_HTTP_H
#define EP_SINK_HTTP_H

#include <stddef.h>

#include "pipeline/ep_sink.h"

/*
 * The webhook sink behind ep_sink.c (PROCESSOR_SINK=http://... or https://...):
 * blocking POSTs on libcurl easy handles, one per worker (a connection kept
 * alive between batches), retried with exponential backoff and jitter.
 * Internal to src/pipeline: the rest of the program uses ep_sink.h.
 */
typedef struct ep__sink_http_s ep__sink_http_t;
typedef struct ep__sink_http_conn_s ep__sink_http_conn_t;

/**
 * Checks url (http:// or https:// with a host) and prepares the sink with
 * opts (NULL: defaults; the TLS paths are copied). Registers the ep_sink_*
 * metric families in opts->metrics when set. Returns 0 and *out, or EP_EINVAL
 * with err filled ("PROCESSOR_SINK: ...").
 */
int ep__sink_http_create(const char *url, const ep_sink_opts_t *opts, ep__sink_http_t **out,
                         char *err, size_t errlen);

/** A connection for one worker (connects on first use). Free with ep__sink_http_conn_destroy. */
ep__sink_http_conn_t *ep__sink_http_conn_create(ep__sink_http_t *h);

/** Closes and frees c. Accepts NULL. */
void ep__sink_http_conn_destroy(ep__sink_http_conn_t *c);

/**
 * POSTs body[0..len), the NDJSON lines of n events, on c, retrying as the
 * settings say. Returns EP_SINK_DELIVERED, EP_SINK_FAILED or EP_SINK_REJECTED
 * for all n events (and counts them). Blocks; thread-safe across connections.
 */
int ep__sink_http_post(ep__sink_http_t *h, ep__sink_http_conn_t *c, const char *body, size_t len,
                       size_t n);

/** The batch limits: events and bytes per POST, and the linger in ms. */
void ep__sink_http_limits(const ep__sink_http_t *h, size_t *events, size_t *bytes, int *linger_ms);

/**
 * 1 when the receiver answered 2xx lately; 0 with a reason once every POST has
 * failed (408, 429, 5xx, no answer) for 5 s. Thread-safe.
 */
int ep__sink_http_ready(ep__sink_http_t *h, char *reason, size_t len);

/** Ends retries and requests in progress (see ep_sink_cancel). Thread-safe. */
void ep__sink_http_cancel(ep__sink_http_t *h);

/** Reads the counters. Thread-safe. */
void ep__sink_http_stats(const ep__sink_http_t *h, ep_sink_stats_t *st);

/** Frees h (every connection already destroyed). Accepts NULL. */
void ep__sink_http_destroy(ep__sink_http_t *h);

#endif /* EP_SINK_HTTP_H */
