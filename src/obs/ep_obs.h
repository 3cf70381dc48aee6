#ifndef EP_OBS_H
#define EP_OBS_H

#include <stddef.h>
#include <stdint.h>

#include "event/ep_event.h"
#include "obs/ep_metrics.h"

/*
 * An app's metrics: the registry behind its GET /metrics and the hooks the
 * hot paths call (ingest publishes, processed batches). The app owns one
 * (ep_app_t.obs) when METRICS_ENABLED=true and hands it to what records into
 * it; two apps in one process have two. With a NULL ep_obs_t (metrics off)
 * every hook is a no-op that costs one predictable branch.
 */
typedef struct ep_obs_s ep_obs_t;

/**
 * Creates a registry and the families the hooks feed (OOM aborts). Create it
 * before any thread that uses the hooks starts; free with ep_obs_destroy once
 * they have stopped.
 */
ep_obs_t *ep_obs_create(void);

/** Frees obs and its registry. Accepts NULL. */
void ep_obs_destroy(ep_obs_t *obs);

/** The registry, or NULL when obs is NULL. */
ep_metrics_t *ep_obs_registry(const ep_obs_t *obs);

/**
 * The request families every HTTP server of the app shares: http_requests_total
 * {role,route,method,status} and http_request_duration_seconds{role,route}
 * (observed in ns). NULL when obs is NULL.
 */
void ep_obs_http_families(const ep_obs_t *obs, ep_metric_t **requests, ep_metric_t **duration);

/** The event_processing_duration_seconds child (for the dashboard), NULL when obs is NULL. */
ep_metric_child_t *ep_obs_processing_hist(const ep_obs_t *obs);

/**
 * Ingest: one publish call of n events finished with per-event status
 * (0 = accepted); start_ns is the monotonic time the request started.
 * Records producer_publish_duration_seconds and producer_batch_size.
 * Thread-safe, lock-free.
 */
void ep_obs_publish_done(ep_obs_t *obs, size_t n, const int *status, int64_t start_ns);

/**
 * Worker pool: n events of a batch were processed (processed_us stamped).
 * Records event_processing_duration_seconds (processed_us - received_us) per
 * event. Thread-safe, lock-free.
 */
void ep_obs_processed(ep_obs_t *obs, ep_event_t *const *evs, size_t n);

#endif /* EP_OBS_H */
