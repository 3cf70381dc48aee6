#ifndef EP_COUNTER_H
#define EP_COUNTER_H

/*
 * Statistics counters: relaxed atomics, read by the stats and metrics paths
 * while the owning threads count. Relaxed order is enough, as no other memory
 * is published through them.
 */

#include <stdatomic.h>
#include <stdint.h>

/** Adds n to a counter that several threads may add to at once (an atomic RMW). */
static inline void ep_counter_add(_Atomic uint64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/**
 * Adds n to a counter that only the calling thread ever writes (others only read):
 * a plain load and store, cheaper than an RMW. Wrong if two threads may add.
 */
static inline void ep_counter_add_single_writer(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

/** Reads a counter. */
static inline uint64_t ep_counter_get(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

#endif /* EP_COUNTER_H */
