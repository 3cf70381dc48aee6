#ifndef EP_RATELIMIT_H
#define EP_RATELIMIT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Token buckets counted in events (RATE_LIMIT_EVENTS_PER_SEC, RATE_LIMIT_BURST).
 *
 * A bucket holds up to `burst` tokens and gains `rate` a second; taking n
 * events needs n tokens. It is kept as one number, the time at which the
 * bucket will be full again ("theoretical arrival time", as in the generic
 * cell rate algorithm): tokens(now) = burst - (full_at - now) * rate, so a
 * bucket is one 64-bit word changed with one compare-and-swap (no lock), and a
 * bucket that is full is indistinguishable from no bucket at all, which lets
 * the per-address table forget full buckets without changing any answer.
 *
 * Time is passed in (monotonic ns), so tests drive the clock.
 */

typedef struct ep_rate_s {
    int64_t rate;         /* events per second (> 0) */
    int64_t burst;        /* bucket size in events (> 0) */
    int64_t interval_ns;  /* ns one event's token takes to come back: 1e9 / rate (>= 1) */
    int64_t tolerance_ns; /* burst * interval_ns: how far full_at may run ahead of now */
} ep_rate_t;

typedef struct ep_rate_result_s {
    int64_t limit;     /* the bucket size (RateLimit-Limit) */
    int64_t remaining; /* tokens left after this request, or now when refused */
    int64_t reset_s;   /* seconds until the bucket is full again (RateLimit-Reset) */
    int64_t retry_s;   /* refused: seconds until the request would fit (Retry-After), >= 1 */
} ep_rate_result_t;

/** Sets r for rate events/s and a bucket of burst events (burst 0: one second's worth). */
void ep_rate_init(ep_rate_t *r, int64_t rate, int64_t burst);

/**
 * Takes n events from the bucket whose state is *full_at (0 for a new, full
 * bucket) at time now_ns. Returns 0 (taken), EP_EAGAIN (not enough tokens:
 * nothing taken, res->retry_s says when) or EP_E2BIG (n exceeds the burst: it
 * can never be taken). res may be NULL. Lock-free; thread-safe.
 */
int ep_rate_take(const ep_rate_t *r, _Atomic int64_t *full_at, int64_t n, int64_t now_ns,
                 ep_rate_result_t *res);

/*
 * Buckets per client address, in a table of fixed size, so that a client with
 * many addresses cannot make it grow: sets of EP_RATE_WAYS entries; an address
 * not in its set takes the entry whose bucket is the fullest (a full one is
 * the same as none, see above; only when every entry of the set is in use does
 * an address lose what it owed). Sets are guarded by striped locks, never one
 * lock for the whole table.
 */
#define EP_RATE_WAYS    8
#define EP_RATE_SETS    4096 /* 32768 addresses */
#define EP_RATE_STRIPES 64

typedef struct ep_rate_entry_s {
    uint8_t addr[16];
    int64_t full_at; /* 0: free */
} ep_rate_entry_t;

typedef struct ep_rate_table_s {
    ep_rate_entry_t *e; /* EP_RATE_SETS * EP_RATE_WAYS */
    pthread_mutex_t mu[EP_RATE_STRIPES];
    uint64_t seed;
    atomic_uint_fast64_t replaced_busy; /* entries taken over while their bucket was not full */
} ep_rate_table_t;

/** Allocates the table (about 0.8 MiB). */
void ep_rate_table_init(ep_rate_table_t *t);

/**
 * ep_rate_take for the bucket of addr (16 bytes; IPv4 mapped into IPv6).
 * Thread-safe; no allocation.
 */
int ep_rate_table_take(ep_rate_table_t *t, const ep_rate_t *r, const uint8_t addr[16], int64_t n,
                       int64_t now_ns, ep_rate_result_t *res);

void ep_rate_table_close(ep_rate_table_t *t);

#endif /* EP_RATELIMIT_H */
