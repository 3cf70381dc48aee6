#include "queue/ep_redeliver.h"

void ep_redeliver_add(ep_redeliver_t *r, ep_event_t **evs, size_t n, int64_t due_ms)
{
    for (size_t i = 0; i < n; i++) {
        ep_event_t *ev = evs[i];

        ev->next = NULL;
        ev->due_ms = due_ms;
        if (r->tail) {
            r->tail->next = ev;
        } else {
            r->head = ev;
        }
        r->tail = ev;
    }
}

/* Unlinks ev, whose predecessor is prev (NULL for the head). */
static void unlink_after(ep_redeliver_t *r, ep_event_t *prev, ep_event_t *ev)
{
    if (prev) {
        prev->next = ev->next;
    } else {
        r->head = ev->next;
    }
    if (r->tail == ev) {
        r->tail = prev;
    }
    ev->next = NULL;
}

size_t ep_redeliver_take_due(ep_redeliver_t *r, int64_t now_ms, ep_event_t **out, size_t max,
                             int64_t *next_due)
{
    ep_event_t *prev = NULL, *ev, *next;
    size_t got = 0;

    for (ev = r->head; ev != NULL && got < max; ev = next) {
        next = ev->next;
        if (ev->due_ms > now_ms) {
            if (ev->due_ms < *next_due) {
                *next_due = ev->due_ms;
            }
            prev = ev;
            continue;
        }
        unlink_after(r, prev, ev);
        ev->due_ms = 0;
        out[got++] = ev;
    }
    return got;
}

size_t ep_redeliver_drop(ep_redeliver_t *r, int (*match)(const ep_event_t *ev, void *arg),
                         void *arg)
{
    ep_event_t *prev = NULL, *ev, *next;
    size_t dropped = 0;

    for (ev = r->head; ev != NULL; ev = next) {
        next = ev->next;
        if (match && !match(ev, arg)) {
            prev = ev;
            continue;
        }
        unlink_after(r, prev, ev);
        ep_event_destroy(ev);
        dropped++;
    }
    return dropped;
}
