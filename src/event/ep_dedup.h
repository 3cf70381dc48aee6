#ifndef EP_DEDUP_H
#define EP_DEDUP_H

#include <stddef.h>
#include <stdint.h>

/*
 * Idempotency window for client-given event ids. An id is first reserved
 * (pending) when its event is handed to the queue, then committed when the
 * queue acknowledged it (remembered for window_s seconds) or released when the
 * queue refused it. Ids are kept as 64-bit keyed hashes in 64 independently
 * locked shards, all memory allocated by ep_dedup_create.
 *
 * Every operation costs O(1) at any fill level: no allocation, no copying,
 * a few probes. When a shard is full, its oldest ids are evicted first, even
 * before their window ended; ep_dedup_stats tells how far back a duplicate is
 * then still caught (the effective window), and the first such eviction is
 * logged once (warn).
 */

typedef struct ep_dedup_s ep_dedup_t;

typedef enum {
    EP_DEDUP_NEW = 0,     /* not seen: now reserved (pending) */
    EP_DEDUP_DONE = 1,    /* acknowledged within the window: answer again, do not enqueue */
    EP_DEDUP_PENDING = 2, /* being stored right now by another request */
} ep_dedup_result_t;

typedef struct ep_dedup_stats_s {
    size_t capacity;            /* ids the table holds at most */
    size_t size;                /* ids held now (pending, committed, expired not yet dropped) */
    uint64_t evicted;           /* ids dropped to make room before their window ended */
    int64_t window_s;           /* the configured window */
    int64_t effective_window_s; /* every id reserved or committed less than this many
                                   seconds ago is held, so its repeat is caught: window_s
                                   unless ids that recent were evicted */
    uint64_t probes;            /* index cells examined or moved, all operations (work count) */
} ep_dedup_stats_t;

/** Creates a window of window_s seconds holding up to capacity ids (allocated now). */
ep_dedup_t *ep_dedup_create(int window_s, size_t capacity);

/** Names the setting that sizes the table in the eviction warning (static string). */
void ep_dedup_set_name(ep_dedup_t *d, const char *setting);

/** Looks the id up and reserves it when new. now_s: monotonic seconds. Thread-safe. */
ep_dedup_result_t ep_dedup_reserve(ep_dedup_t *d, const char *id, size_t len, int64_t now_s);

/**
 * Marks a reserved id as acknowledged (kept until now_s + window), remembering
 * it again if it was evicted meanwhile. Thread-safe.
 */
void ep_dedup_commit(ep_dedup_t *d, const char *id, size_t len, int64_t now_s);

/** Forgets a reserved id (its event was not kept). Thread-safe. */
void ep_dedup_release(ep_dedup_t *d, const char *id, size_t len);

/** Ids currently remembered (committed or pending). */
size_t ep_dedup_size(ep_dedup_t *d);

/** Fills st; now_s as for ep_dedup_reserve. Takes each shard's lock in turn. */
void ep_dedup_stats(ep_dedup_t *d, int64_t now_s, ep_dedup_stats_t *st);

/** Frees the window. Accepts NULL. */
void ep_dedup_destroy(ep_dedup_t *d);

#endif /* EP_DEDUP_H */
