#ifndef EP_WINDOW_H
#define EP_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * Event counts over time: a ring of per-second slots (1024 s, so the last
 * 15 min + 1 s are always complete) and a ring of per-minute slots (64 min, so
 * the last hour is complete). Each slot holds the total and the counts of up
 * to EP_WINDOW_SLOT_KEYS dimension keys (event type or source, identified by
 * a 64-bit hash chosen by the caller); keys beyond that in one slot are
 * counted as "other" of their dimension.
 *
 * Time is never read here: every call takes `now_s`, the caller's clock in
 * seconds (ep_analytics passes its injectable clock), so tests move time at
 * will. A slot belongs to one second (minute); when the ring comes round to it
 * for a newer second, it is cleared first (rollover). Adds for a second older
 * than what its slot holds are dropped from the window (not from totals).
 *
 * Not thread-safe: the caller serialises access. Mergeable: slots of the same
 * second add up, so windows from several processors combine exactly.
 */

#define EP_WINDOW_SECONDS    1024 /* per-second slots (power of two) */
#define EP_WINDOW_MINUTES    64   /* per-minute slots (power of two) */
#define EP_WINDOW_SLOT_KEYS  20   /* dimension keys per slot; more go to "other" */
#define EP_WINDOW_MAX_POINTS 3600 /* most buckets one series query returns */
#define EP_WINDOW_VERSION    1    /* first byte of the serialised form */

#define EP_WINDOW_DIM_TOTAL  0 /* every event */
#define EP_WINDOW_DIM_TYPE   1 /* by event type */
#define EP_WINDOW_DIM_SOURCE 2 /* by source */

#define EP_WINDOW_KEY_OTHER 0 /* the "other" key of a dimension in queries */

typedef struct ep_window_slot_s {
    int64_t t;                         /* first second the slot covers; INT64_MIN when unused */
    uint64_t total;                    /* events in the slot */
    uint64_t other[2];                 /* events whose type / source key did not fit */
    uint32_t n;                        /* keys in use */
    uint64_t key[EP_WINDOW_SLOT_KEYS]; /* (hash & ~3) | dim */
    uint64_t cnt[EP_WINDOW_SLOT_KEYS];
} ep_window_slot_t;

typedef struct ep_window_s {
    ep_window_slot_t sec[EP_WINDOW_SECONDS];
    ep_window_slot_t min[EP_WINDOW_MINUTES];
} ep_window_t;

/** Empties a caller-allocated window. */
void ep_window_init(ep_window_t *w);

/**
 * Counts n events at second now_s with the given type and source key hashes
 * (any 64-bit values; the two low bits are ignored).
 */
void ep_window_add(ep_window_t *w, int64_t now_s, uint64_t type_key, uint64_t source_key,
                   uint64_t n);

/** Events in the last `seconds` seconds, the current one included: (now_s - seconds, now_s]. */
uint64_t ep_window_sum(const ep_window_t *w, int64_t now_s, int seconds);

/**
 * Checks a series query: window_s a multiple of bucket_s; buckets of whole
 * minutes cover up to 1 h, shorter buckets up to 15 min; at most
 * EP_WINDOW_MAX_POINTS buckets. Returns the number of buckets, or EP_EINVAL.
 */
int ep_window_series_check(int window_s, int bucket_s);

/**
 * Fills out[0..n) (n from ep_window_series_check) with the counts per bucket,
 * oldest first, of dimension dim (EP_WINDOW_DIM_*) and key (ignored for
 * TOTAL; EP_WINDOW_KEY_OTHER = the "other" counts). Buckets are aligned to
 * multiples of bucket_s; the last holds now_s. *first_s is the first bucket's
 * start. Returns n, or EP_EINVAL.
 */
int ep_window_series(const ep_window_t *w, int64_t now_s, int window_s, int bucket_s, int dim,
                     uint64_t key, uint64_t *out, int64_t *first_s);

/**
 * Distinct keys of dimension dim seen in the series' range (window_s,
 * bucket_s as above): up to max into keys. Returns how many were written, or
 * EP_EINVAL; *has_other is set when some counts went to "other".
 */
int ep_window_keys(const ep_window_t *w, int64_t now_s, int window_s, int bucket_s, int dim,
                   uint64_t *keys, size_t max, int *has_other);

/** Internal key of a caller hash in a dimension (what ep_window_keys returns). */
uint64_t ep_window_key(uint64_t hash, int dim);

/** dst += src, slot by slot (slots older than dst's are dropped). */
void ep_window_merge(ep_window_t *dst, const ep_window_t *src);

/** 1 when no slot is in use. */
int ep_window_is_empty(const ep_window_t *w);

/** Appends the used slots, serialised. */
void ep_window_serialize(const ep_window_t *w, ep_buf_t *out);

/**
 * Merges a serialised window of len bytes into w. Returns 0, or EP_EPARSE on a
 * malformed input, in which case w is unchanged.
 */
int ep_window_merge_serialized(ep_window_t *w, const void *buf, size_t len);

#endif /* EP_WINDOW_H */
