#ifndef EP_METRICS_H
#define EP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * Metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * A registry holds families (counter, gauge, histogram), each with a fixed
 * list of label names; a child is one combination of label values, created
 * once (under the registry lock) and then updated without any lock or malloc.
 *
 * Counter and histogram cells are striped: every thread owns one stripe of
 * the registry's cell arena (picked once per thread), so increments are
 * relaxed atomic adds on a cache line no other core writes; a scrape sums
 * the stripes. More threads than stripes share stripes, which stays exact
 * (the adds are atomic) and only costs some cache traffic.
 *
 * Histogram observations are integers in the family's unit (nanoseconds,
 * events, ...); `scale` converts them to the exposed unit (1e-9 for seconds).
 *
 *   ep_metrics_t *m;
 *   ep_metrics_create(0, &m);
 *   const char *ln[] = {"route"};
 *   ep_metric_t *f = ep_metrics_counter(m, "http_requests_total", "Requests.", 1, ln);
 *   const char *lv[] = {"/ingest"};
 *   ep_metric_child_t *c = ep_metrics_child(f, lv);
 *   ep_metrics_counter_add(c, 1);
 */

#define EP_METRICS_STRIPES       16   /* cell stripes (threads share them round-robin) */
#define EP_METRICS_MAX_LABELS    4    /* label names per family */
#define EP_METRICS_MAX_BUCKETS   24   /* finite bucket bounds per histogram */
#define EP_METRICS_MAX_CHILDREN  1024 /* label combinations per family; more are refused */
#define EP_METRICS_DEFAULT_CELLS 8192 /* arena cells per stripe when 0 is passed */

/* The seconds buckets every latency histogram uses (14 bounds). */
#define EP_METRICS_SECONDS_BUCKETS                                                                 \
    {                                                                                              \
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10             \
    }

typedef enum { EP_METRIC_COUNTER = 0, EP_METRIC_GAUGE, EP_METRIC_HISTOGRAM } ep_metric_type_t;

typedef struct ep_metrics_s ep_metrics_t;
typedef struct ep_metric_s ep_metric_t;             /* a family */
typedef struct ep_metric_child_s ep_metric_child_t; /* one label combination */

/**
 * Scrape-time collector: appends whole families to out with
 * ep_metrics_put_family and ep_metrics_put_sample. Runs on the scraping
 * thread, with the registry lock held: it must not register metrics.
 */
typedef void (*ep_metrics_collect_cb)(void *arg, ep_buf_t *out);

/* ---- create ---- */

/**
 * Creates a registry whose arena holds `cells` cells per stripe (0 = the
 * default). A counter child takes 1 cell, a histogram child bounds + 2.
 * Returns 0 (never fails: OOM aborts). Free with ep_metrics_destroy.
 */
int ep_metrics_create(size_t cells, ep_metrics_t **out);

/**
 * Registers a counter family. Names and label names must be valid Prometheus
 * identifiers (checked: NULL on a bad name, a duplicate name or too many
 * labels). The strings are copied. Thread-safe.
 */
ep_metric_t *ep_metrics_counter(ep_metrics_t *m, const char *name, const char *help, int nlabels,
                                const char *const *label_names);

/** Registers a gauge family (set with ep_metrics_gauge_set). As ep_metrics_counter. */
ep_metric_t *ep_metrics_gauge(ep_metrics_t *m, const char *name, const char *help, int nlabels,
                              const char *const *label_names);

/**
 * Registers a histogram family with nbounds increasing finite upper bounds
 * (exposed unit) and the scale from observed integers to that unit. As
 * ep_metrics_counter; NULL also for unsorted or too many bounds.
 */
ep_metric_t *ep_metrics_histogram(ep_metrics_t *m, const char *name, const char *help, int nlabels,
                                  const char *const *label_names, const double *bounds, int nbounds,
                                  double scale);

/**
 * Returns the child for these label values (nlabels strings, copied), creating
 * it on first use. NULL when the family is full (EP_METRICS_MAX_CHILDREN) or
 * the arena is; the update functions accept NULL and do nothing. Takes the
 * registry lock: call once and keep the pointer, not per update. Children
 * live as long as the registry.
 */
ep_metric_child_t *ep_metrics_child(ep_metric_t *f, const char *const *label_values);

/** Adds a collector run at every render, after the families. Thread-safe. */
void ep_metrics_collector_add(ep_metrics_t *m, ep_metrics_collect_cb cb, void *arg);

/** Removes the collector registered with the same cb and arg. Thread-safe. */
void ep_metrics_collector_remove(ep_metrics_t *m, ep_metrics_collect_cb cb, void *arg);

/* ---- hot path: lock-free, allocation-free, any thread ---- */

/** Adds n to a counter child (exact). NULL is ignored. */
void ep_metrics_counter_add(ep_metric_child_t *c, uint64_t n);

/** Records one observation v (in the family's integer unit). NULL is ignored. */
void ep_metrics_hist_observe(ep_metric_child_t *c, uint64_t v);

/** Sets a gauge child. NULL is ignored. */
void ep_metrics_gauge_set(ep_metric_child_t *c, double v);

/* ---- reading ---- */

/** Current sum of a counter child over all stripes (0 for NULL). */
uint64_t ep_metrics_counter_value(const ep_metric_child_t *c);

/**
 * Reads a histogram child: count, sum (exposed unit) and the cumulative count
 * of each bound into cum[] (nbounds entries, may be NULL). Returns the number
 * of bounds, 0 for NULL.
 */
int ep_metrics_hist_read(const ep_metric_child_t *c, uint64_t *count, double *sum, uint64_t *cum);

/**
 * Estimates quantile q (0..1) of a histogram child by linear interpolation in
 * its bucket, as PromQL's histogram_quantile does. Returns NaN when empty.
 */
double ep_metrics_hist_quantile(const ep_metric_child_t *c, double q);

/**
 * Appends the whole registry (families in registration order, then the
 * collectors) to out in the text format. Thread-safe; takes the registry lock.
 */
void ep_metrics_render(ep_metrics_t *m, ep_buf_t *out);

/* ---- exposition helpers (for collectors) ---- */

/** Appends the # HELP and # TYPE lines of a family (help escaped). */
void ep_metrics_put_family(ep_buf_t *out, const char *name, ep_metric_type_t type,
                           const char *help);

/**
 * Appends one sample line: name{n1="v1",...} value. Label values are escaped
 * (backslash, double quote, newline); value NaN and infinities are written as
 * NaN, +Inf, -Inf. nlabels may be 0 (names and values NULL).
 */
void ep_metrics_put_sample(ep_buf_t *out, const char *name, int nlabels,
                           const char *const *label_names, const char *const *label_values,
                           double value);

/** Appends a label value escaped for the text format. */
void ep_metrics_put_label_value(ep_buf_t *out, const char *v);

/** Appends a sample value: integers exactly, other numbers with 15 digits. */
void ep_metrics_put_value(ep_buf_t *out, double v);

/** Returns 1 when s is a valid metric (or, label != 0, label) name. */
int ep_metrics_name_valid(const char *s, int label);

/**
 * Collector for the process_* metrics read from /proc/self: CPU seconds,
 * resident and virtual memory, open and max fds, start time. arg unused.
 */
void ep_metrics_process_collect(void *arg, ep_buf_t *out);

/** Frees the registry and every family and child. Accepts NULL. */
void ep_metrics_destroy(ep_metrics_t *m);

#endif /* EP_METRICS_H */
