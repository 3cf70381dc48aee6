#ifndef EP_HIST_H
#define EP_HIST_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * Log-linear histogram of non-negative integer values (microseconds here).
 * Values below 64 have a bucket each (exact); above, every power of two is
 * split into 64 equal buckets, up to 2^32 - 1 (about 71.6 minutes; larger
 * values are clamped into the last bucket and counted in `clamped`).
 *
 * Error bound: a percentile is reported as the midpoint of its bucket, and a
 * bucket [L, L + w) above 64 has w <= L / 64, so the reported value is within
 * 1/128 (0.79%) of the true order statistic; below 64 it is exact. Reported
 * values are also clamped to the exact [min, max] seen. 1728 buckets of 8 bytes.
 *
 * Not thread-safe: the caller serialises access.
 */

#define EP_HIST_SUB_BITS 6                        /* 64 buckets per power of two */
#define EP_HIST_SUB      (1u << EP_HIST_SUB_BITS) /* exact values below this */
#define EP_HIST_MAX_BIT  32                       /* values < 2^32 */
#define EP_HIST_BUCKETS  (EP_HIST_SUB * (EP_HIST_MAX_BIT - EP_HIST_SUB_BITS + 1))
#define EP_HIST_MAX      ((1ull << EP_HIST_MAX_BIT) - 1) /* largest value kept as is */
#define EP_HIST_VERSION  1                               /* first byte of the serialised form */
#define EP_HIST_REL_ERR  (1.0 / 128.0)                   /* stated relative error bound */

typedef struct ep_hist_s {
    uint64_t count;   /* values recorded */
    uint64_t sum;     /* sum of recorded (clamped) values */
    uint64_t min;     /* exact smallest value (UINT64_MAX when empty) */
    uint64_t max;     /* exact largest value (clamped) */
    uint64_t clamped; /* values above EP_HIST_MAX */
    uint64_t b[EP_HIST_BUCKETS];
} ep_hist_t;

/** Empties a caller-allocated histogram. */
void ep_hist_init(ep_hist_t *h);

/** Records one value. */
void ep_hist_record(ep_hist_t *h, uint64_t v);

/** Records a value n times. */
void ep_hist_record_n(ep_hist_t *h, uint64_t v, uint64_t n);

/**
 * The value at quantile q in [0, 1] (0.5 = median, 0.99 = p99), within
 * EP_HIST_REL_ERR of the true order statistic. Returns 0 when empty.
 */
uint64_t ep_hist_percentile(const ep_hist_t *h, double q);

/** Mean of the recorded values (0 when empty). */
double ep_hist_mean(const ep_hist_t *h);

/** dst += src. */
void ep_hist_merge(ep_hist_t *dst, const ep_hist_t *src);

/** Bucket index of a value, and the [lo, hi] range a bucket covers (for tests). */
uint32_t ep_hist_index(uint64_t v);
void ep_hist_bucket_range(uint32_t idx, uint64_t *lo, uint64_t *hi);

/** Appends the serialised histogram (version, counters, non-empty buckets as varints). */
void ep_hist_serialize(const ep_hist_t *h, ep_buf_t *out);

/**
 * Merges a serialised histogram of len bytes into h. Returns 0, or EP_EPARSE on
 * a malformed input, in which case h is unchanged.
 */
int ep_hist_merge_serialized(ep_hist_t *h, const void *buf, size_t len);

#endif /* EP_HIST_H */
