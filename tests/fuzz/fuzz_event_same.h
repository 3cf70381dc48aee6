/*
 * Shared by the protobuf fuzz targets: the CHECK that aborts with the target's
 * name, and check_same (two events hold the same content, field by field).
 * Define FUZZ_NAME before including.
 */
#ifndef FUZZ_EVENT_SAME_H
#define FUZZ_EVENT_SAME_H

#include "event/ep_event.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s: %s:%d: %s\n", FUZZ_NAME, __FILE__, __LINE__, #c);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void same_str(const ep_str_t *a, const ep_str_t *b)
{
    CHECK(a->len == b->len);
    CHECK(memcmp(a->p, b->p, a->len) == 0);
}

static void check_same(const ep_event_t *a, const ep_event_t *b)
{
    same_str(&a->id, &b->id);
    same_str(&a->source, &b->source);
    same_str(&a->event_type, &b->event_type);
    same_str(&a->user_id, &b->user_id);
    same_str(&a->data, &b->data);
    CHECK(a->timestamp_ms == b->timestamp_ms);
    CHECK(a->received_us == b->received_us);
    CHECK(a->attempts == b->attempts);
    CHECK(a->n_meta == b->n_meta);
    for (uint32_t i = 0; i < a->n_meta; i++) {
        same_str(&a->meta[i].key, &b->meta[i].key);
        same_str(&a->meta[i].val, &b->meta[i].val);
        CHECK(a->meta[i].type == b->meta[i].type);
    }
}

#endif
