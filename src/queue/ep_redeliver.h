#ifndef EP_REDELIVER_H
#define EP_REDELIVER_H

#include <stddef.h>
#include <stdint.h>

#include "event/ep_event.h"

/*
 * The list of nacked events waiting for their redelivery time, shared by the
 * providers that redeliver locally (memory, kafka, disk). An intrusive FIFO through
 * ev->next, each event's not-before time in ev->due_ms (monotonic ms). Not
 * thread-safe: the provider holds its own lock around every call. The list
 * owns the events it holds.
 */
typedef struct ep_redeliver_s {
    ep_event_t *head;
    ep_event_t *tail;
} ep_redeliver_t;

#define EP_REDELIVER_INIT                                                                          \
    {                                                                                              \
        NULL, NULL                                                                                 \
    }

/** Appends evs[0..n), to be handed out again no earlier than due_ms. */
void ep_redeliver_add(ep_redeliver_t *r, ep_event_t **evs, size_t n, int64_t due_ms);

/**
 * Moves up to max events due at now_ms into out, oldest first, and lowers
 * *next_due to the earliest due time left waiting. Returns how many were moved.
 */
size_t ep_redeliver_take_due(ep_redeliver_t *r, int64_t now_ms, ep_event_t **out, size_t max,
                             int64_t *next_due);

/**
 * Removes every event for which match(ev, arg) is true (every event when match
 * is NULL) and destroys it. Returns how many were removed.
 */
size_t ep_redeliver_drop(ep_redeliver_t *r, int (*match)(const ep_event_t *ev, void *arg),
                         void *arg);

#endif /* EP_REDELIVER_H */
