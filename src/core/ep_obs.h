#ifndef EP_OBS_H
#define EP_OBS_H

#include <stddef.h>
#include <stdint.h>

#include "ep_event.h"
#include "ep_metrics.h"

/*
 * eventpipe's process-wide metrics: the registry behind GET /metrics and the
 * hooks the hot paths call (ingest publishes, processed batches). Until
 * ep_obs_init runs (METRICS_ENABLED=false: never) every hook is a no-op that
 * costs one predictable branch.
 */

/**
 * Creates the registry and the families the hooks feed, once per process;
 * later calls do nothing. Returns 0 (OOM aborts). Call before any thread
 * that uses the hooks starts. Not thread-safe against itself.
 */
int ep_obs_init(void);

/** The registry, or NULL before ep_obs_init. */
ep_metrics_t *ep_obs_registry(void);

/**
 * The request families every HTTP server shares: http_requests_total
 * {role,route,method,status} and http_request_duration_seconds{role,route}
 * (observed in ns). NULL before ep_obs_init.
 */
void ep_obs_http_families(ep_metric_t **requests, ep_metric_t **duration);

/** The event_processing_duration_seconds child (for the dashboard), NULL before init. */
ep_metric_child_t *ep_obs_processing_hist(void);

/**
 * Ingest: one publish call of n events finished with per-event status
 * (0 = accepted); start_ns is the monotonic time the request started.
 * Records producer_publish_duration_seconds and producer_batch_size.
 * Thread-safe, lock-free.
 */
void ep_obs_publish_done(size_t n, const int *status, int64_t start_ns);

/**
 * Worker pool: n events of a batch were processed (processed_us stamped).
 * Records event_processing_duration_seconds (processed_us - received_us) per
 * event. Thread-safe, lock-free.
 */
void ep_obs_processed(ep_event_t *const *evs, size_t n);

#endif /* EP_OBS_H */
