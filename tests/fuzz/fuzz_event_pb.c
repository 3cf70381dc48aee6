/*
 * Fuzz target: arbitrary bytes -> ep_event_batch_decode_pb and
 * ep_event_decode_pb. A failure must leave nothing allocated; decoded events
 * must be well-formed, re-encode to the same content, and render as JSON that
 * is at least syntactically valid. Any broken invariant aborts.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_NAME "fuzz_event_pb"
#include "fuzz_event_same.h"

static void check_text(const ep_str_t *s)
{
    CHECK(s->p != NULL);
    CHECK(s->p[s->len] == '\0');
    CHECK(strlen(s->p) == s->len);
    CHECK(ep__event_utf8_valid(s->p, s->len));
}

static void check_event(const ep_event_t *ev)
{
    check_text(&ev->id);
    CHECK(ev->id.len > 0);
    check_text(&ev->source);
    check_text(&ev->event_type);
    check_text(&ev->user_id);
    CHECK(ev->data.p[ev->data.len] == '\0');
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        check_text(&ev->meta[i].key);
        check_text(&ev->meta[i].val);
        CHECK(ev->meta[i].type <= EP_VAL_BOOL);
    }
}

/* The JSON of a decoded event may fail validation but must never be malformed. */
static void check_json(ep_event_parser_t *p, const ep_event_t *ev)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *back = NULL;
    ep_parse_err_t err;
    int rc;

    if (!ep__event_utf8_valid(ev->data.p, ev->data.len)) {
        return;
    }
    ep_event_to_json(ev, &b);
    rc = ep_event_parser_parse(p, b.data, b.len, &back, &err);
    if (rc == EP_EPARSE) {
        fprintf(stderr, "to_json output malformed: %s\n%s\n", err.msg, b.data);
    }
    CHECK(rc != EP_EPARSE);
    ep_event_destroy(back);
    ep_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ep_event_parser_t *p;
    ep_event_t **evs = (ep_event_t **)&p, **again = NULL, *one = (ep_event_t *)&p;
    size_t n = 12345, n2 = 0;
    ep_buf_t b = EP_BUF_INIT;
    int rc;

    if (p == NULL) {
        /* Metadata from protobuf is unbounded: lift the JSON limits that could reject it. */
        ep_event_limits_t lim = {8, 1u << 20, 1u << 20, 1u << 20, 1u << 30, 1u << 20};
        p = ep_event_parser_create(&lim);
    }

    rc = ep_event_decode_pb(data, size, &one);
    CHECK(rc == 0 || rc == EP_EPARSE || rc == EP_EVALIDATE);
    CHECK(rc == 0 ? one != NULL : one == NULL);
    if (rc == 0) {
        check_event(one);
        ep_event_destroy(one);
    }

    rc = ep_event_batch_decode_pb(data, size, &evs, &n);
    if (rc != 0) {
        CHECK(rc == EP_EPARSE || rc == EP_EVALIDATE);
        CHECK(evs == NULL && n == 0);
        return 0;
    }
    CHECK(evs != NULL);
    for (size_t i = 0; i < n; i++) {
        check_event(evs[i]);
        check_json(p, evs[i]);
    }
    CHECK(ep_event_batch_encode_pb(evs, n, &b) == 0);
    CHECK(ep_event_batch_decode_pb(b.data, b.len, &again, &n2) == 0);
    CHECK(n2 == n);
    for (size_t i = 0; i < n; i++) {
        check_same(evs[i], again[i]);
        ep_event_destroy(again[i]);
        ep_event_destroy(evs[i]);
    }
    ep_free(again);
    ep_free(evs);
    ep_buf_close(&b);
    return 0;
}
