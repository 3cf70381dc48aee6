/*
 * Fuzz target: what POST /enqueue does with a protobuf body (src/roles/
 * ep_processor.c): ep_event_batch_decode_pb_ex with the configured limits and
 * the BATCH_MAX_EVENTS cap, i.e. decoding plus the shared validation
 * (ep_event_validate). Run with the default limits and with tiny ones, so the
 * limit paths are reached by small inputs. Invariants:
 *   - a refusal returns a known code, leaves nothing allocated and says why;
 *   - an accepted body never holds more events than the cap, and every event
 *     keeps every limit (checked field by field here, and again by
 *     ep_event_validate on the built event);
 *   - accepted events re-encode and decode to the same events;
 *   - the key-matching work is bounded by the input's size (no quadratic
 *     blow-up: at most size * (log2(max keys) + 3) comparisons).
 * Any broken invariant aborts.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz_enqueue"
#include "fuzz_event_same.h"

static void check_text(const ep_str_t *s, uint32_t max)
{
    CHECK(s->p != NULL);
    CHECK(s->len <= max);
    CHECK(s->p[s->len] == '\0');
    CHECK(strlen(s->p) == s->len);
    CHECK(ep__event_utf8_valid(s->p, s->len));
}

/* Every limit of ep_event_validate, checked on the built event. */
static void check_event(const ep_event_t *ev, const ep_event_limits_t *lim)
{
    ep_event_draft_t d;
    ep_parse_err_t err;

    CHECK(ev->id.len > 0);
    if (!(ev->flags & EP_EVENT_F_ID_GENERATED)) {
        check_text(&ev->id, lim->max_id_len);
    }
    check_text(&ev->source, lim->max_value_len);
    CHECK(ev->source.len > 0);
    check_text(&ev->event_type, lim->max_value_len);
    check_text(&ev->user_id, lim->max_value_len);
    CHECK(ev->data.len <= lim->max_data_len);
    CHECK(ev->data.len > 0 || ev->event_type.len > 0);
    CHECK(ev->timestamp_ms >= 0 && ev->timestamp_ms <= EP_EVENT_TS_MAX_MS);
    CHECK(ev->received_us >= 0);
    CHECK(ev->attempts <= EP_EVENT_MAX_ATTEMPTS);
    CHECK(ev->n_meta <= lim->max_meta_keys);
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        check_text(&ev->meta[i].key, lim->max_key_len);
        CHECK(ev->meta[i].key.len > 0);
        check_text(&ev->meta[i].val, lim->max_value_len);
        CHECK(ev->meta[i].type <= EP_VAL_BOOL);
        if (ev->n_meta <= 16) {
            for (uint32_t j = 0; j < i; j++) {
                CHECK(ev->meta[j].key.len != ev->meta[i].key.len ||
                      memcmp(ev->meta[j].key.p, ev->meta[i].key.p, ev->meta[i].key.len) != 0);
            }
        }
    }
    memset(&d, 0, sizeof(d));
    d.id = (ev->flags & EP_EVENT_F_ID_GENERATED) ? (ep_str_t){"", 0} : ev->id;
    d.source = ev->source;
    d.event_type = ev->event_type;
    d.user_id = ev->user_id;
    d.data = ev->data;
    d.meta = ev->meta;
    d.n_meta = ev->n_meta;
    d.timestamp_ms = ev->timestamp_ms;
    d.received_us = ev->received_us;
    d.attempts = ev->attempts;
    CHECK(ep_event_validate(&d, lim, &err) == 0);
}

static unsigned log2_ceil(uint32_t n)
{
    unsigned b = 0;

    while ((1ull << b) < n) {
        b++;
    }
    return b;
}

static void run(const uint8_t *data, size_t size, const ep_event_limits_t *lim, size_t max_events)
{
    ep_event_t **evs = (ep_event_t **)&evs, **again = NULL, *one = (ep_event_t *)&one;
    size_t n = 12345, n2 = 0;
    ep_parse_err_t err;
    ep_buf_t b = EP_BUF_INIT;
    uint64_t work = ep__event_key_work();
    int rc;

    rc = ep_event_decode_pb_ex(data, size, lim, &one, &err);
    work = ep__event_key_work() - work;
    CHECK(rc == 0 || rc == EP_EPARSE || rc == EP_EVALIDATE);
    if (rc == 0) {
        CHECK(one != NULL);
        check_event(one, lim);
        ep_event_destroy(one);
    } else {
        CHECK(one == NULL && err.msg[0] != '\0');
    }

    work -= ep__event_key_work();
    rc = ep_event_batch_decode_pb_ex(data, size, lim, max_events, &evs, &n, &err);
    work += ep__event_key_work();
    /* Two decodes of size bytes; each entry or typed key takes at least 2 bytes. */
    CHECK(work <= (uint64_t)size * (log2_ceil(lim->max_meta_keys) + 3) + 16);
    if (rc != 0) {
        CHECK(rc == EP_EPARSE || rc == EP_EVALIDATE || rc == EP_E2BIG);
        CHECK(evs == NULL && n == 0);
        CHECK(err.msg[0] != '\0');
        return;
    }
    CHECK(n <= max_events);
    CHECK(evs != NULL);
    for (size_t i = 0; i < n; i++) {
        check_event(evs[i], lim);
    }
    CHECK(ep_event_batch_encode_pb(evs, n, &b) == 0);
    CHECK(ep_event_batch_decode_pb_ex(b.data, b.len, lim, max_events, &again, &n2, &err) == 0);
    CHECK(n2 == n);
    for (size_t i = 0; i < n; i++) {
        check_same(evs[i], again[i]);
        ep_event_destroy(again[i]);
        ep_event_destroy(evs[i]);
    }
    ep_free(again);
    ep_free(evs);
    ep_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ep_event_limits_t defaults = EP_EVENT_LIMITS_DEFAULT;
    static const ep_event_limits_t tiny = {4, 3, 8, 16, 32, 40}; /* ids: a generated UUID fits */

    run(data, size, &defaults, 100000); /* EVENT_MAX_KEYS, EVENT_MAX_DATA, BATCH_MAX_EVENTS */
    run(data, size, &tiny, 4);
    return 0;
}
