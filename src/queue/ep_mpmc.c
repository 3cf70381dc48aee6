/*
 * Bounded MPMC queue: a ring of cells with per-cell sequence numbers (after
 * Dmitry Vyukov's bounded queue), an exact-capacity reservation counter, and
 * a futex for consumers that have nothing to pop.
 *
 * Cell protocol, for a ring of R cells (R a power of two): cell i starts with
 * seq = i. A producer owning position p waits until cell (p mod R) has
 * seq == p, stores the item and publishes seq = p + 1. A consumer owning
 * position p reads the item once seq == p + 1 and releases the cell for the
 * next lap with seq = p + R.
 *
 * Producers first reserve room in `count` (never above `capacity`), then claim
 * n consecutive positions with one fetch_add. Consumers claim runs of already
 * published cells with a compare-and-swap on dequeue_pos and give the room
 * back in `count` only after releasing the cells. Because count >= the number
 * of claimed but unreleased positions, and count <= capacity <= R, a producer
 * that claimed position p knows position p - R has already been claimed by a
 * consumer; at worst it waits for that consumer to finish two stores.
 *
 * Sleeping: a consumer registers in `waiters`, re-checks, and sleeps on the
 * futex word `gen`. A producer that published passes a full barrier and looks
 * at `waiters`; only when it is non-zero does it bump `gen` and call
 * FUTEX_WAKE. The barriers on both sides guarantee that either the producer
 * sees the waiter or the waiter's re-check sees the item.
 *
 * Lingering (ep_mpmc_set_linger): a consumer that finds the queue empty first
 * sleeps for at most linger_us as a "lingerer" before it registers as a
 * waiter. While any consumer lingers, producers skip the wake-up unless
 * wake_batch items are waiting: under a steady trickle the lingerer collects
 * a batch per sleep instead of being woken (a context switch and a futex call
 * on each side) for every item. An idle queue still wakes its waiters at
 * once, so an item is delayed by at most linger_us. The same handshake holds:
 * a lingerer that stops lingering passes a full barrier and re-checks.
 * wake_batch is capped at a quarter of the capacity, so a small queue cannot
 * fill while its consumers linger.
 *
 * A full queue with idle consumers (ep_mpmc_push_batch_wait): a consumer
 * counts itself in `idle` from the moment it finds the queue empty until it
 * returns, so a producer that finds no room while one is idle knows the room
 * is about to come (the consumer was woken, or is being woken now). It then
 * wakes every sleeper and waits on the futex word `room` for a pop to release
 * room, bounded by its timeout. Consumers bump `room` only while a producer
 * waits (`room_waiters`), so the common path pays one relaxed load per pop.
 */
#include "queue/ep_mpmc.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CACHE_LINE 64

typedef struct cell_s {
    _Atomic size_t seq;
    void *data;
} cell_t;

/* Hot fields written by different sides are kept 64 bytes apart. */
struct ep_mpmc_s {
    cell_t *cells;
    size_t mask;
    size_t capacity;
    char pad0[CACHE_LINE];
    _Atomic size_t enqueue_pos; /* next position a producer claims */
    char pad1[CACHE_LINE - sizeof(size_t)];
    _Atomic size_t dequeue_pos; /* next position a consumer claims */
    char pad2[CACHE_LINE - sizeof(size_t)];
    _Atomic size_t count; /* reserved by producers, not yet released by consumers */
    char pad3[CACHE_LINE - sizeof(size_t)];
    _Atomic uint32_t gen;       /* futex word: bumped on every wake-up */
    _Atomic uint32_t waiters;   /* consumers between "register" and "woke up" */
    _Atomic uint32_t lingerers; /* consumers in a bounded linger sleep */
    _Atomic uint32_t idle;      /* consumers inside a pop that found the queue empty */
    _Atomic int closed;
    char pad5[CACHE_LINE];
    _Atomic uint32_t room;         /* futex word for producers waiting for room */
    _Atomic uint32_t room_waiters; /* producers waiting on it */
    uint32_t linger_us;            /* 0 = never linger */
    size_t wake_batch;             /* with a lingerer: wake only at this many items */
    char pad4[CACHE_LINE];
};

_Static_assert(sizeof(_Atomic uint32_t) == sizeof(uint32_t), "futex word must be 32 bits");

static size_t round_pow2(size_t n)
{
    size_t r = 1;

    while (r < n) {
        r <<= 1;
    }
    return r;
}

static void futex_wait(_Atomic uint32_t *word, uint32_t val, const struct timespec *rel)
{
    /* EINTR, EAGAIN (word changed) and ETIMEDOUT all just send the caller back to re-check. */
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, rel, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word, int n)
{
    (void)syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/*
 * The store-load handshake between a publishing producer and a consumer about
 * to sleep: each side stores (cell seq / waiters), then needs a full barrier
 * before it loads the other side's variable. Plain builds use seq_cst fences,
 * which cost no shared cache-line write. ThreadSanitizer does not model fences
 * (GCC refuses them with -Werror=tsan), so under TSan both sides use seq_cst
 * read-modify-writes on `waiters` instead, which are ordered by the variable's
 * modification order and give the same guarantee.
 */
#if defined(__SANITIZE_THREAD__)
#define EP_MPMC_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EP_MPMC_TSAN 1
#endif
#endif

#ifdef EP_MPMC_TSAN
static uint32_t waiters_after_publish(ep_mpmc_t *q, uint32_t *lingerers)
{
    *lingerers = atomic_fetch_add_explicit(&q->lingerers, 0, memory_order_seq_cst);
    return atomic_fetch_add_explicit(&q->waiters, 0, memory_order_seq_cst);
}

static void counter_change(_Atomic uint32_t *c, int delta)
{
    if (delta > 0) {
        atomic_fetch_add_explicit(c, 1, memory_order_seq_cst);
    } else {
        atomic_fetch_sub_explicit(c, 1, memory_order_seq_cst);
    }
}
#else
static uint32_t waiters_after_publish(ep_mpmc_t *q, uint32_t *lingerers)
{
    atomic_thread_fence(memory_order_seq_cst);
    *lingerers = atomic_load_explicit(&q->lingerers, memory_order_relaxed);
    return atomic_load_explicit(&q->waiters, memory_order_relaxed);
}

static void counter_change(_Atomic uint32_t *c, int delta)
{
    if (delta > 0) {
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
    } else {
        atomic_fetch_sub_explicit(c, 1, memory_order_relaxed);
    }
    atomic_thread_fence(memory_order_seq_cst);
}
#endif

/* Bumps the generation and wakes up to n sleepers. */
static void wake(ep_mpmc_t *q, int n)
{
    atomic_fetch_add_explicit(&q->gen, 1, memory_order_seq_cst);
    futex_wake(&q->gen, n);
}

/*
 * Called after publishing items: wakes sleepers, but only if there are any,
 * and while one lingers only once wake_batch items wait (force: always).
 */
static void notify(ep_mpmc_t *q, size_t n, int force)
{
    uint32_t lingerers;
    uint32_t waiters = waiters_after_publish(q, &lingerers);

    if (waiters == 0 && lingerers == 0) {
        return;
    }
    if (!force && lingerers != 0 &&
        atomic_load_explicit(&q->count, memory_order_relaxed) < q->wake_batch) {
        return; /* a lingerer comes back within linger_us and takes them */
    }
    /* A woken consumer takes a batch: one per wake_batch items is enough. */
    n = n / q->wake_batch + (n % q->wake_batch != 0);
    wake(q, n > INT_MAX ? INT_MAX : (int)n);
}

static int closed_and_empty(ep_mpmc_t *q)
{
    return atomic_load(&q->closed) && atomic_load(&q->count) == 0;
}

/*
 * Releases room for k popped items. When that empties a closed queue, wakes
 * the consumers still asleep waiting for in-progress pushes or pops, so that
 * they can return EP_ECLOSED.
 */
static void release_room(ep_mpmc_t *q, size_t k)
{
    size_t prev = atomic_fetch_sub(&q->count, k);

    if (prev == k && atomic_load(&q->closed)) {
        wake(q, INT_MAX);
    }
    /* seq_cst after the seq_cst fetch_sub: a waiting producer either is seen here or sees the room.
     */
    if (atomic_load(&q->room_waiters) != 0) {
        atomic_fetch_add(&q->room, 1);
        futex_wake(&q->room, INT_MAX);
    }
}

/* Takes up to max published items without waiting. Returns how many. */
static size_t try_pop(ep_mpmc_t *q, void **out, size_t max)
{
    size_t pos = atomic_load_explicit(&q->dequeue_pos, memory_order_relaxed);
    size_t k, seq = 0;
    cell_t *c;

    for (;;) {
        for (k = 0; k < max; k++) {
            c = &q->cells[(pos + k) & q->mask];
            seq = atomic_load_explicit(&c->seq, memory_order_acquire);
            if (seq != pos + k + 1) {
                break;
            }
        }
        if (k == 0) {
            if ((intptr_t)(seq - (pos + 1)) < 0) {
                return 0; /* empty, or the producer of pos has not published yet */
            }
            /* Another consumer took pos; start again from where they left off. */
            pos = atomic_load_explicit(&q->dequeue_pos, memory_order_relaxed);
            continue;
        }
        /* On success nobody claimed pos.. yet, so the k cells scanned are still ours to take. */
        if (atomic_compare_exchange_weak_explicit(&q->dequeue_pos, &pos, pos + k,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            break;
        }
    }
    for (size_t i = 0; i < k; i++) {
        c = &q->cells[(pos + i) & q->mask];
        out[i] = c->data;
        atomic_store_explicit(&c->seq, pos + i + q->mask + 1, memory_order_release);
    }
    release_room(q, k);
    return k;
}

/*
 * Creates a queue of the given exact capacity. Returns 0 and *out, or EP_EINVAL.
 * The caller owns the queue. Thread-safe (touches no shared state).
 */
int ep_mpmc_create(size_t capacity, ep_mpmc_t **out)
{
    ep_mpmc_t *q;
    size_t ring;

    *out = NULL;
    if (capacity < 1 || capacity > EP_MPMC_MAX_CAPACITY) {
        return EP_EINVAL;
    }
    ring = round_pow2(capacity);
    q = ep_calloc(1, sizeof(*q));
    q->cells = ep_malloc(ring * sizeof(cell_t));
    for (size_t i = 0; i < ring; i++) {
        atomic_init(&q->cells[i].seq, i);
        q->cells[i].data = NULL;
    }
    q->mask = ring - 1;
    q->capacity = capacity;
    atomic_init(&q->enqueue_pos, 0);
    atomic_init(&q->dequeue_pos, 0);
    atomic_init(&q->count, 0);
    atomic_init(&q->gen, 0);
    atomic_init(&q->waiters, 0);
    atomic_init(&q->lingerers, 0);
    atomic_init(&q->idle, 0);
    atomic_init(&q->closed, 0);
    atomic_init(&q->room, 0);
    atomic_init(&q->room_waiters, 0);
    q->wake_batch = 1;
    *out = q;
    return 0;
}

/*
 * Pushes all n items or none. Returns 0, EP_EFULL or EP_ECLOSED; on an error
 * nothing was enqueued. The items stay the caller's business. Thread-safe.
 */
/* Reserves room for n items in count. Returns 1, or 0 when they do not fit now. */
static int reserve(ep_mpmc_t *q, size_t n)
{
    size_t c = atomic_load_explicit(&q->count, memory_order_relaxed);

    do {
        if (c + n > q->capacity) {
            return 0;
        }
    } while (!atomic_compare_exchange_weak(&q->count, &c, c + n));
    return 1;
}

/*
 * The queue is full. While a consumer is idle in a pop (woken, or about to
 * be), room is coming: wake every sleeper and wait for a pop to release room,
 * up to timeout_ms. Returns 1 once n items were reserved, else 0.
 */
static int reserve_when_idle(ep_mpmc_t *q, size_t n, int timeout_ms)
{
    int64_t deadline = ep_time_mono_ns() + (int64_t)timeout_ms * 1000000, left;
    struct timespec rel;
    uint32_t g;
    int got = 0;

    atomic_fetch_add(&q->room_waiters, 1);
    for (;;) {
        g = atomic_load(&q->room);
        if (reserve(q, n)) {
            got = 1;
            break;
        }
        left = deadline - ep_time_mono_ns();
        if (left <= 0 || atomic_load(&q->idle) == 0 || atomic_load(&q->closed)) {
            break;
        }
        notify(q, INT_MAX, 1);
        /* Short naps: an idle consumer may take all it can in one pop while we sleep. */
        if (left > 1000000) {
            left = 1000000;
        }
        rel.tv_sec = 0;
        rel.tv_nsec = (long)left;
        futex_wait(&q->room, g, &rel);
    }
    atomic_fetch_sub(&q->room_waiters, 1);
    return got;
}

int ep_mpmc_push_batch(ep_mpmc_t *q, void *const *items, size_t n)
{
    return ep_mpmc_push_batch_wait(q, items, n, 0);
}

int ep_mpmc_push_batch_wait(ep_mpmc_t *q, void *const *items, size_t n, int timeout_ms)
{
    size_t pos;

    if (atomic_load_explicit(&q->closed, memory_order_relaxed)) {
        return EP_ECLOSED;
    }
    if (n == 0) {
        return 0;
    }
    if (n > q->capacity) {
        return EP_EFULL;
    }
    if (!reserve(q, n) &&
        (timeout_ms <= 0 || atomic_load(&q->idle) == 0 || !reserve_when_idle(q, n, timeout_ms))) {
        return EP_EFULL;
    }

    /*
     * Re-check after reserving. With both sides sequentially consistent, a
     * consumer that saw closed && count == 0 cannot miss a push that got
     * past this point, so items are never stranded in a closed queue.
     */
    if (atomic_load(&q->closed)) {
        release_room(q, n);
        return EP_ECLOSED;
    }

    pos = atomic_fetch_add_explicit(&q->enqueue_pos, n, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        cell_t *cell = &q->cells[(pos + i) & q->mask];

        /*
         * The reservation guarantees a consumer already owns the previous lap
         * of this cell; it only has to finish its stores. This is the one
         * wait in a push, normally zero iterations.
         */
        while (atomic_load_explicit(&cell->seq, memory_order_acquire) != pos + i) {
            sched_yield();
        }
        cell->data = items[i];
        atomic_store_explicit(&cell->seq, pos + i + 1, memory_order_release);
    }
    notify(q, n, 0);
    return 0;
}

/*
 * Pops up to max items, waiting up to timeout_ms on a futex when empty.
 * Returns the count, 0 on timeout, or EP_ECLOSED when closed and drained.
 * Thread-safe.
 */
static int pop_wait(ep_mpmc_t *q, void **out, size_t max, int timeout_ms, int *idle);

int ep_mpmc_pop_batch(ep_mpmc_t *q, void **out, size_t max, int timeout_ms)
{
    int idle = 0, rc;

    if (max == 0) {
        return 0;
    }
    if (max > INT_MAX) {
        max = INT_MAX;
    }
    rc = pop_wait(q, out, max, timeout_ms, &idle);
    if (idle) {
        atomic_fetch_sub(&q->idle, 1);
    }
    return rc;
}

/* The body of ep_mpmc_pop_batch; sets *idle once it counted itself in q->idle. */
static int pop_wait(ep_mpmc_t *q, void **out, size_t max, int timeout_ms, int *idle)
{
    int64_t deadline = 0, left;
    struct timespec rel;
    size_t k;
    int lingered = 0;

    if (timeout_ms > 0) {
        deadline = ep_time_mono_ns() + (int64_t)timeout_ms * 1000000;
    }
    for (;;) {
        uint32_t g;
        int linger;

        k = try_pop(q, out, max);
        if (k > 0) {
            return (int)k;
        }
        if (closed_and_empty(q)) {
            return EP_ECLOSED;
        }
        if (timeout_ms == 0) {
            return 0;
        }
        left = timeout_ms > 0 ? deadline - ep_time_mono_ns() : INT64_MAX;
        if (left <= 0) {
            return 0;
        }
        if (!*idle) {
            /* From here until we return, a producer that finds no room knows room is coming. */
            *idle = 1;
            atomic_fetch_add(&q->idle, 1);
        }
        /* Linger once per call before sleeping as a waiter that producers wake. */
        linger = q->linger_us > 0 && !lingered;
        if (linger) {
            lingered = 1;
            if ((int64_t)q->linger_us * 1000 < left) {
                left = (int64_t)q->linger_us * 1000;
            }
        }
        rel.tv_sec = (time_t)(left / 1000000000);
        rel.tv_nsec = (long)(left % 1000000000);

        /* Register, then re-check: a producer either sees us or we see its item. */
        counter_change(linger ? &q->lingerers : &q->waiters, 1);
        g = atomic_load_explicit(&q->gen, memory_order_acquire);
        k = try_pop(q, out, max);
        if (k == 0 && !closed_and_empty(q)) {
            futex_wait(&q->gen, g, left != INT64_MAX ? &rel : NULL);
        }
        /* Deregister with a barrier: the next try_pop sees what a skipping producer published. */
        counter_change(linger ? &q->lingerers : &q->waiters, -1);
        if (k > 0) {
            return (int)k;
        }
    }
}

/* Current item count (a snapshot). Thread-safe. */
size_t ep_mpmc_size(const ep_mpmc_t *q)
{
    return atomic_load_explicit(&((ep_mpmc_t *)q)->count, memory_order_relaxed);
}

/* Consumers idle in a pop (a snapshot). Thread-safe. */
size_t ep_mpmc_idle(const ep_mpmc_t *q)
{
    return atomic_load_explicit(&((ep_mpmc_t *)q)->idle, memory_order_relaxed);
}

/* The exact capacity. Thread-safe. */
size_t ep_mpmc_capacity(const ep_mpmc_t *q)
{
    return q->capacity;
}

/* Wakes all sleeping consumers if there are any. Thread-safe. */
void ep_mpmc_wake_all(ep_mpmc_t *q)
{
    notify(q, INT_MAX, 1);
}

/* Sets lingering (see the top of this file). Before consumers start. */
void ep_mpmc_set_linger(ep_mpmc_t *q, uint32_t linger_us, size_t wake_batch)
{
    size_t cap = q->capacity / 4 > 0 ? q->capacity / 4 : 1;

    q->linger_us = linger_us;
    q->wake_batch = wake_batch < 1 ? 1 : wake_batch > cap ? cap : wake_batch;
}

/* Closes the queue and wakes every sleeping consumer. Idempotent; thread-safe. */
void ep_mpmc_close(ep_mpmc_t *q)
{
    atomic_store(&q->closed, 1);
    wake(q, INT_MAX);
}

/* Returns 1 when closed. Thread-safe. */
int ep_mpmc_is_closed(const ep_mpmc_t *q)
{
    return atomic_load(&((ep_mpmc_t *)q)->closed);
}

/* Frees the ring and the queue; items inside are not touched. Accepts NULL. */
void ep_mpmc_destroy(ep_mpmc_t *q)
{
    if (q == NULL) {
        return;
    }
    ep_free(q->cells);
    ep_free(q);
}
