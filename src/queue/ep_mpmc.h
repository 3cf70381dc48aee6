#ifndef EP_MPMC_H
#define EP_MPMC_H

#include <stddef.h>
#include <stdint.h>

/*
 * A bounded multi-producer multi-consumer queue of opaque pointers.
 *
 * The ring is an array of cells, each with a sequence number that tells
 * producers and consumers whose turn it is (the bounded queue design described
 * by Dmitry Vyukov). The ring is sized to a power of two, but a separate
 * reservation counter enforces the exact capacity asked for: a queue created
 * with capacity 1000 never holds more than 1000 items.
 *
 * Consumers that find the queue empty may block on a futex with a timeout.
 * Producers only make a wake-up system call when a consumer is asleep, so an
 * uncontended push costs a few atomic operations and no syscall.
 *
 * The queue never owns the items: ep_mpmc_destroy() does not look at them, so
 * the caller drains the queue first if the items need freeing.
 */

#define EP_MPMC_MAX_CAPACITY ((size_t)1 << 30) /* largest capacity accepted */

typedef struct ep_mpmc_s ep_mpmc_t;

/**
 * Creates a queue holding at most `capacity` items (1..EP_MPMC_MAX_CAPACITY).
 * Returns 0 and the new queue in *out (free with ep_mpmc_destroy), or EP_EINVAL
 * for a capacity out of range (*out is then NULL). OOM aborts.
 */
int ep_mpmc_create(size_t capacity, ep_mpmc_t **out);

/**
 * Pushes items[0..n) as one unit: either all n fit and are enqueued in order,
 * or none is. Returns 0, EP_EFULL (not enough room now, or n > capacity) or
 * EP_ECLOSED (after ep_mpmc_close). n == 0 returns 0. Never blocks waiting for
 * room; it may yield briefly while a consumer preempted in the middle of a pop
 * finishes releasing a slot. Thread-safe.
 */
int ep_mpmc_push_batch(ep_mpmc_t *q, void *const *items, size_t n);

/**
 * ep_mpmc_push_batch, except when the items do not fit while a consumer is
 * idle in ep_mpmc_pop_batch (woken or about to be, so room is coming): then it
 * wakes the sleepers and waits up to timeout_ms for a pop to make room. With
 * every consumer busy it returns EP_EFULL at once, as ep_mpmc_push_batch does.
 * Same results and all-or-nothing rule. Thread-safe.
 */
int ep_mpmc_push_batch_wait(ep_mpmc_t *q, void *const *items, size_t n, int timeout_ms);

/**
 * Pops up to max items into out[], oldest first. If the queue is empty, waits
 * up to timeout_ms for an item (0 = do not wait, < 0 = wait forever) on a
 * futex, without spinning. Returns the number of items taken (>= 1), 0 on
 * timeout (or max == 0), or EP_ECLOSED once the queue is closed and empty.
 * Thread-safe.
 */
int ep_mpmc_pop_batch(ep_mpmc_t *q, void **out, size_t max, int timeout_ms);

/**
 * Number of items in the queue now, counting pushes and pops in progress.
 * A snapshot under concurrency. Thread-safe, lock-free.
 */
size_t ep_mpmc_size(const ep_mpmc_t *q);

/**
 * Number of consumers inside ep_mpmc_pop_batch that found the queue empty and
 * have not returned yet (lingering, sleeping, or woken). A snapshot. Thread-safe.
 */
size_t ep_mpmc_idle(const ep_mpmc_t *q);

/** The capacity given to ep_mpmc_create. Thread-safe. */
size_t ep_mpmc_capacity(const ep_mpmc_t *q);

/**
 * Wakes every consumer blocked in ep_mpmc_pop_batch without adding an item;
 * they re-check the queue and go back to sleep if it is still empty. For
 * owners that keep items elsewhere too. Thread-safe.
 */
void ep_mpmc_wake_all(ep_mpmc_t *q);

/**
 * Lets consumers batch up a trickle of items: a consumer that finds the queue
 * empty waits up to linger_us before producers wake it for each item, unless
 * wake_batch items are waiting, and a push wakes one consumer per wake_batch
 * items (each is expected to take a batch). Items wait at most linger_us longer.
 * wake_batch is capped at a quarter of the capacity (at least 1), so a queue
 * never fills while its consumers linger.
 * 0 (the default) disables it. Call before any consumer runs.
 */
void ep_mpmc_set_linger(ep_mpmc_t *q, uint32_t linger_us, size_t wake_batch);

/**
 * Closes the queue: later pushes return EP_ECLOSED, every blocked consumer is
 * woken, and consumers get EP_ECLOSED once the remaining items are popped.
 * Idempotent. Thread-safe.
 */
void ep_mpmc_close(ep_mpmc_t *q);

/** Returns 1 once ep_mpmc_close has been called, else 0. Thread-safe. */
int ep_mpmc_is_closed(const ep_mpmc_t *q);

/**
 * Frees the queue. Items still inside are not touched (drain them first if
 * they need freeing). No thread may use q during or after the call. Accepts NULL.
 */
void ep_mpmc_destroy(ep_mpmc_t *q);

#endif /* EP_MPMC_H */
