#ifndef EP_TOPK_H
#define EP_TOPK_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * Heavy hitters with the space-saving sketch: at most `cap` counters. A value
 * already counted is incremented; a new value takes a free counter, or
 * replaces the smallest one and inherits its count (recorded as `error`). So
 * every count over-estimates the true count by at most its error, and any
 * value seen more than total / cap times is guaranteed to be present. With
 * fewer distinct values than counters, counts are exact.
 *
 * Merge: counts add; a value missing from a full sketch is credited that
 * sketch's smallest count (the most it can have had there), which keeps the
 * over-estimate guarantee; the cap largest survive.
 *
 * Values are strings, kept up to EP_TOPK_NAME - 1 bytes (longer ones are
 * truncated for display; they are told apart by the hash of the whole value).
 * Not thread-safe: the caller serialises access.
 */

#define EP_TOPK_MAX     128 /* most counters a sketch can have */
#define EP_TOPK_NAME    64  /* bytes kept per value, NUL included */
#define EP_TOPK_VERSION 1   /* first byte of the serialised form */

typedef struct ep_topk_s {
    uint32_t cap; /* counters, <= EP_TOPK_MAX */
    uint32_t n;   /* counters in use */
    uint64_t hash[EP_TOPK_MAX];
    uint64_t count[EP_TOPK_MAX];
    uint64_t error[EP_TOPK_MAX];
    char name[EP_TOPK_MAX][EP_TOPK_NAME];
} ep_topk_t;

typedef struct ep_topk_item_s {
    const char *name; /* borrowed from the sketch */
    uint64_t count;   /* upper bound of the true count */
    uint64_t error;   /* count - error is a lower bound */
} ep_topk_item_t;

/** Empties a caller-allocated sketch with cap counters (clamped to 1..EP_TOPK_MAX). */
void ep_topk_init(ep_topk_t *t, uint32_t cap);

/** Counts value s (len bytes) n times. */
void ep_topk_add(ep_topk_t *t, const char *s, size_t len, uint64_t n);

/**
 * Writes the k largest counters into out, largest first (ties by name).
 * Returns how many were written. Names are borrowed from t.
 */
size_t ep_topk_top(const ep_topk_t *t, ep_topk_item_t *out, size_t k);

/** dst = merge(dst, src) (see above). */
void ep_topk_merge(ep_topk_t *dst, const ep_topk_t *src);

/** Appends the serialised sketch. */
void ep_topk_serialize(const ep_topk_t *t, ep_buf_t *out);

/**
 * Merges a serialised sketch of len bytes into t. Returns 0, or EP_EPARSE on a
 * malformed input, in which case t is unchanged.
 */
int ep_topk_merge_serialized(ep_topk_t *t, const void *buf, size_t len);

#endif /* EP_TOPK_H */
