/*
 * An app's metric set. The hooks read plain pointers written once by
 * ep_obs_create before the threads that call them were created.
 */
#include "obs/ep_obs.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

struct ep_obs_s {
    ep_metrics_t *reg;
    ep_metric_child_t *publish_duration; /* producer_publish_duration_seconds (ns) */
    ep_metric_child_t *batch_size;       /* producer_batch_size (events) */
    ep_metric_child_t *processing;       /* event_processing_duration_seconds (us) */
    ep_metric_t *http_requests, *http_duration;
};

ep_obs_t *ep_obs_create(void)
{
    static const char *const req_labels[] = {"role", "route", "method", "status"};
    static const double secs[] = EP_METRICS_SECONDS_BUCKETS;
    static const double sizes[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
    int nsecs = (int)(sizeof(secs) / sizeof(secs[0]));
    ep_obs_t *o = ep_calloc(1, sizeof(*o));
    ep_metric_t *f;

    ep_metrics_create(0, &o->reg);
    o->http_requests = ep_metrics_counter(
        o->reg, "http_requests_total",
        "HTTP requests answered, by role, route template (or unmatched), method and status code.",
        4, req_labels);
    o->http_duration = ep_metrics_histogram(
        o->reg, "http_request_duration_seconds",
        "Time from a request's headers to its answer, by role and route template.", 2, req_labels,
        secs, nsecs, 1e-9);
    f = ep_metrics_histogram(o->reg, "producer_publish_duration_seconds",
                             "Time from the ingest request's start to the queue's acknowledgement "
                             "of its events, per publish call.",
                             0, NULL, secs, nsecs, 1e-9);
    o->publish_duration = ep_metrics_child(f, NULL);
    f = ep_metrics_histogram(o->reg, "producer_batch_size", "Events per publish call of ingest.", 0,
                             NULL, sizes, (int)(sizeof(sizes) / sizeof(sizes[0])), 1.0);
    o->batch_size = ep_metrics_child(f, NULL);
    f = ep_metrics_histogram(o->reg, "event_processing_duration_seconds",
                             "End-to-end time of processed events: processed_us - received_us.", 0,
                             NULL, secs, nsecs, 1e-6);
    o->processing = ep_metrics_child(f, NULL);
    ep_metrics_collector_add(o->reg, ep_metrics_process_collect, NULL);
    return o;
}

void ep_obs_destroy(ep_obs_t *obs)
{
    if (obs == NULL) {
        return;
    }
    ep_metrics_destroy(obs->reg);
    ep_free(obs);
}

ep_metrics_t *ep_obs_registry(const ep_obs_t *obs)
{
    return obs ? obs->reg : NULL;
}

void ep_obs_http_families(const ep_obs_t *obs, ep_metric_t **requests, ep_metric_t **duration)
{
    *requests = obs ? obs->http_requests : NULL;
    *duration = obs ? obs->http_duration : NULL;
}

ep_metric_child_t *ep_obs_processing_hist(const ep_obs_t *obs)
{
    return obs ? obs->processing : NULL;
}

void ep_obs_publish_done(ep_obs_t *obs, size_t n, const int *status, int64_t start_ns)
{
    int64_t d;

    if (obs == NULL || n == 0) {
        return;
    }
    (void)status;
    d = ep_time_mono_ns() - start_ns;
    ep_metrics_hist_observe(obs->publish_duration, (uint64_t)(d > 0 ? d : 0));
    ep_metrics_hist_observe(obs->batch_size, (uint64_t)n);
}

void ep_obs_processed(ep_obs_t *obs, ep_event_t *const *evs, size_t n)
{
    if (obs == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        int64_t d = evs[i]->processed_us - evs[i]->received_us;
        ep_metrics_hist_observe(obs->processing, (uint64_t)(d > 0 ? d : 0));
    }
}
