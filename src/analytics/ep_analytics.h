#ifndef EP_ANALYTICS_H
#define EP_ANALYTICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"
#include "event/ep_event.h"

/*
 * The real-time analytics aggregate (seed 004's Analytics Service):
 *  - total events; counts by event_type and by source (at most
 *    EP_ANALYTICS_MAX_KEYS distinct names each, the rest counted as "other";
 *    an empty event_type counts as "(none)");
 *  - unique users: HyperLogLog over user_id. Events without a user_id are
 *    not counted as users (a source is a producer, not a user; mixing them
 *    would inflate the figure); events_with_user says how many had one;
 *  - top users (user_id) and top pages (metadata/properties "page", else
 *    "url"): space-saving sketches;
 *  - per-second / per-minute windows (rates over 1m/5m/15m, time series by
 *    type or source), bucketed by the aggregate's clock when the batch is added;
 *  - end-to-end latency (processed_us - received_us) and event-time lag
 *    (processed_us - timestamp) histograms, in microseconds.
 *
 * Concurrency: add_batch is called from several worker threads at once. The
 * aggregate is split into shards, each a complete partial aggregate with its
 * own mutex; a thread keeps to one shard, so the lock is taken once per batch
 * and is normally uncontended. Readers merge the shards into a snapshot.
 *
 * Deltas: ep_analytics_take_delta moves everything gathered so far into a
 * serialised delta (versioned binary, "EPAD" v1) and empties the aggregate;
 * ep_analytics_merge_delta adds one to another aggregate, so processors in
 * other processes feed one analytics role. Each delta carries (sender, seq):
 * a seq at or below the last one merged from that sender is a duplicate and is
 * ignored, so a push retried after an unclear failure is counted once.
 */

#define EP_ANALYTICS_MAX_KEYS      1000 /* distinct event types (and sources) kept by name */
#define EP_ANALYTICS_KEY_LEN       128  /* bytes of a type / source name kept */
#define EP_ANALYTICS_TOP_CAP       100  /* counters of the top-users / top-pages sketches */
#define EP_ANALYTICS_TOP_SHOW      10   /* entries shown in the summary */
#define EP_ANALYTICS_SHARDS        8    /* partial aggregates */
#define EP_ANALYTICS_DELTA_VERSION 1    /* version byte after the "EPAD" magic */
#define EP_ANALYTICS_MAX_SENDERS   256  /* senders whose last seq is remembered */

/*
 * Bounds of a delta a receiver accepts. A delta carries what one processor
 * counted since its last successful push (a push interval, or an outage of
 * the analytics role): 10^10 events is 28 hours at 100k events/s. Every count
 * in a delta (total, per type, per source, window slots, histograms, top-k)
 * must be at most its total, and the total at most this. The largest delta the
 * writer can produce (every name table, sketch, window slot and histogram
 * bucket full) is measured by the unit tests to stay under
 * EP_ANALYTICS_DELTA_MAX_BYTES; POST /analytics/merge refuses larger bodies.
 */
#define EP_ANALYTICS_DELTA_MAX_EVENTS UINT64_C(10000000000)
#define EP_ANALYTICS_DELTA_MAX_BYTES  (2u << 20)

typedef struct ep_analytics_s ep_analytics_t;

/** Clock: wall-clock microseconds since the epoch. */
typedef int64_t (*ep_analytics_clock_cb)(void *arg);

typedef struct ep_analytics_stats_s {
    uint64_t total_events;     /* events counted (local and merged) */
    uint64_t batches;          /* add_batch calls */
    uint64_t deltas_merged;    /* deltas accepted */
    uint64_t deltas_rejected;  /* malformed deltas */
    uint64_t deltas_duplicate; /* deltas ignored as already merged */
    uint64_t senders;          /* distinct senders seen */
    int64_t last_event_us;     /* clock time of the last counted batch (0: none) */
} ep_analytics_stats_t;

/** Creates an empty aggregate using the wall clock. Never fails (OOM aborts). */
ep_analytics_t *ep_analytics_create(void);

/** Replaces the clock (tests). Not thread-safe: call before any other use. */
void ep_analytics_set_clock(ep_analytics_t *a, ep_analytics_clock_cb cb, void *arg);

/**
 * Counts n processed events. Borrows evs only during the call. Thread-safe;
 * one shard lock per call.
 */
void ep_analytics_add_batch(ep_analytics_t *a, ep_event_t *const *evs, size_t n);

/**
 * Appends the summary JSON object to out (fields documented in
 * docs/analytics.md: total_events, events_by_type, events_by_source,
 * unique_users, top_users, top_pages, events_per_second, latency_ms,
 * event_lag_ms, processing). Thread-safe.
 */
void ep_analytics_summary_json(ep_analytics_t *a, ep_buf_t *out);

/**
 * Appends a time series JSON object: counts per bucket_s bucket over the last
 * window_s seconds for dimension "total", "event_type" or "source" (one series
 * per key). Returns 0, or EP_EINVAL (nothing appended) for an unsupported
 * combination (see ep_window_series_check). Thread-safe.
 */
int ep_analytics_timeseries_json(ep_analytics_t *a, int window_s, int bucket_s,
                                 const char *dimension, ep_buf_t *out);

/** Reads the counters. Thread-safe. */
void ep_analytics_stats(ep_analytics_t *a, ep_analytics_stats_t *st);

/**
 * Moves everything counted so far into a delta appended to out, tagged
 * (sender, seq), and empties the aggregate. Returns 1 when a delta was
 * written, 0 when there was nothing to send (out untouched). Thread-safe.
 */
int ep_analytics_take_delta(ep_analytics_t *a, uint64_t sender, uint64_t seq, ep_buf_t *out);

/**
 * Merges a delta of len bytes. Returns 0 when merged, EP_EEXIST when its seq
 * was already merged from that sender (nothing changes), EP_EPARSE when it is
 * malformed or of an unknown version (nothing changes). Thread-safe.
 */
int ep_analytics_merge_delta(ep_analytics_t *a, const void *buf, size_t len);

/**
 * ep_analytics_merge_delta that also says what was wrong with a refused delta:
 * err->msg what, err->field where ("header", "types", "counts.total", ...).
 * Besides the format it checks the bounds above (EP_EVALIDATE when a count is
 * implausible). Counters of the aggregate saturate at 2^64-1, never wrap.
 */
int ep_analytics_merge_delta_ex(ep_analytics_t *a, const void *buf, size_t len,
                                ep_parse_err_t *err);

/** Frees the aggregate. Accepts NULL. */
void ep_analytics_destroy(ep_analytics_t *a);

#endif /* EP_ANALYTICS_H */
