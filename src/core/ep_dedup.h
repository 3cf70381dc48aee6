#ifndef EP_DEDUP_H
#define EP_DEDUP_H

#include <stddef.h>
#include <stdint.h>

/*
 * Idempotency window for client-given event ids. An id is first reserved
 * (pending) when its event is handed to the queue, then committed when the
 * queue acknowledged it (remembered for window_s seconds) or released when the
 * queue refused it. Ids are kept as 64-bit hashes in 64 independently locked
 * shards; memory is bounded by capacity (when a shard is full of live entries,
 * new ids are not remembered: EP_DEDUP_NEW without a reservation).
 */

typedef struct ep_dedup_s ep_dedup_t;

typedef enum {
    EP_DEDUP_NEW = 0,     /* not seen: now reserved (pending) unless the table was full */
    EP_DEDUP_DONE = 1,    /* acknowledged within the window: answer again, do not enqueue */
    EP_DEDUP_PENDING = 2, /* being stored right now by another request */
} ep_dedup_result_t;

/** Creates a window of window_s seconds holding up to about capacity ids. */
ep_dedup_t *ep_dedup_create(int window_s, size_t capacity);

/** Looks the id up and reserves it when new. now_s: monotonic seconds. Thread-safe. */
ep_dedup_result_t ep_dedup_reserve(ep_dedup_t *d, const char *id, size_t len, int64_t now_s);

/** Marks a reserved id as acknowledged (kept until now_s + window). Thread-safe. */
void ep_dedup_commit(ep_dedup_t *d, const char *id, size_t len, int64_t now_s);

/** Forgets a reserved id (its event was not kept). Thread-safe. */
void ep_dedup_release(ep_dedup_t *d, const char *id, size_t len);

/** Ids currently remembered (committed or pending). */
size_t ep_dedup_size(ep_dedup_t *d);

/** Frees the window. Accepts NULL. */
void ep_dedup_destroy(ep_dedup_t *d);

#endif /* EP_DEDUP_H */
