/*
 * Fuzz target: arbitrary bytes -> ep_event_parser_parse. A rejected input must
 * come back as EP_EPARSE or EP_EVALIDATE with a usable message; an accepted one
 * must be a well-formed event that survives ep_event_to_json + re-parse, the
 * protobuf codec (single and batch) and ep_event_clone unchanged. Every input
 * is also parsed by the yajl-driven reference and the results compared
 * (event_json_diff.h). Any broken invariant aborts.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "event_json_diff.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_event_json: %s:%d: %s\n", __FILE__, __LINE__, #c);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static const ep_event_limits_t limits = EP_EVENT_LIMITS_DEFAULT;

/* A NUL-terminated, NUL-free, valid UTF-8 string of at most max bytes. */
static void check_text(const ep_str_t *s, uint32_t max)
{
    CHECK(s->p != NULL);
    CHECK(s->len <= max);
    CHECK(s->p[s->len] == '\0');
    CHECK(strlen(s->p) == s->len);
    CHECK(ep__event_utf8_valid(s->p, s->len));
}

static int json_number_ok(const char *p)
{
    if (*p == '-') {
        p++;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        p += strspn(p, "0123456789");
    } else {
        return 0;
    }
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            return 0;
        }
        p += strspn(p, "0123456789");
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        if (!(*p >= '0' && *p <= '9')) {
            return 0;
        }
        p += strspn(p, "0123456789");
    }
    return *p == '\0';
}

static void check_event(const ep_event_t *ev)
{
    check_text(&ev->id, ev->flags & EP_EVENT_F_ID_GENERATED ? 36 : limits.max_id_len);
    CHECK(ev->id.len > 0);
    check_text(&ev->source, limits.max_value_len);
    CHECK(ev->source.len > 0);
    check_text(&ev->event_type, limits.max_value_len);
    check_text(&ev->user_id, limits.max_value_len);
    CHECK(ev->data.len <= limits.max_data_len);
    CHECK(ev->data.p[ev->data.len] == '\0');
    CHECK(ev->data.len > 0 || ev->event_type.len > 0);
    CHECK(ev->timestamp_ms > 0);
    CHECK(ev->n_meta <= limits.max_meta_keys);
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        const ep_kv_t *kv = &ev->meta[i];

        check_text(&kv->key, limits.max_key_len);
        CHECK(kv->key.len > 0);
        check_text(&kv->val, limits.max_value_len);
        CHECK(kv->type <= EP_VAL_BOOL);
        if (kv->type == EP_VAL_NUMBER) {
            CHECK(json_number_ok(kv->val.p));
        } else if (kv->type == EP_VAL_BOOL) {
            CHECK(strcmp(kv->val.p, "true") == 0 || strcmp(kv->val.p, "false") == 0);
        }
        for (uint32_t j = 0; j < i; j++) {
            CHECK(strcmp(ev->meta[j].key.p, kv->key.p) != 0);
        }
    }
}

static void same_str(const ep_str_t *a, const ep_str_t *b)
{
    CHECK(a->len == b->len);
    CHECK(memcmp(a->p, b->p, a->len) == 0);
}

/* Same content; with_times also compares the fields JSON does not carry exactly. */
static void check_same(const ep_event_t *a, const ep_event_t *b, int with_times)
{
    same_str(&a->id, &b->id);
    same_str(&a->source, &b->source);
    same_str(&a->event_type, &b->event_type);
    same_str(&a->user_id, &b->user_id);
    same_str(&a->data, &b->data);
    CHECK(a->n_meta == b->n_meta);
    for (uint32_t i = 0; i < a->n_meta; i++) {
        same_str(&a->meta[i].key, &b->meta[i].key);
        same_str(&a->meta[i].val, &b->meta[i].val);
        CHECK(a->meta[i].type == b->meta[i].type);
    }
    if (with_times) {
        CHECK(a->timestamp_ms == b->timestamp_ms);
        CHECK(a->received_us == b->received_us);
        CHECK(a->attempts == b->attempts);
    }
}

static void check_error(int rc, const ep_event_t *ev, const ep_parse_err_t *err)
{
    CHECK(rc == EP_EPARSE || rc == EP_EVALIDATE);
    CHECK(ev == NULL);
    CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL);
    CHECK(memchr(err->field, '\0', sizeof(err->field)) != NULL);
    CHECK(err->msg[0] != '\0');
    CHECK(strchr(err->msg, '\n') == NULL);
    CHECK(ep__event_utf8_valid(err->msg, strlen(err->msg)));
    CHECK(ep__event_utf8_valid(err->field, strlen(err->field)));
}

static void round_trips(ep_event_parser_t *p, ep_event_t *ev)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *back = NULL, *clone, *pair[2], **evs = NULL;
    ep_parse_err_t err;
    size_t n = 0;
    int rc;

    /* JSON: only text data can be written back as a JSON string. */
    if (ep__event_utf8_valid(ev->data.p, ev->data.len)) {
        ep_event_to_json(ev, &b);
        rc = ep_event_parser_parse(p, b.data, b.len, &back, &err);
        if (rc != 0) {
            fprintf(stderr, "re-parse failed: %s %s: %s\n%s\n", ep_err_name(rc), err.field, err.msg,
                    b.data);
        }
        CHECK(rc == 0);
        check_event(back);
        check_same(ev, back, 0);
        /* Below 1e11 a timestamp reads as seconds: only larger ones survive as written. */
        if (ev->timestamp_ms >= INT64_C(100000000000)) {
            CHECK(back->timestamp_ms == ev->timestamp_ms);
        }
        ep_event_destroy(back);
    }

    /* Protobuf, single. */
    ev->attempts = 7;
    ep_buf_reset(&b);
    CHECK(ep_event_encode_pb(ev, &b) == 0);
    CHECK(ep_event_decode_pb(b.data, b.len, &back) == 0);
    check_same(ev, back, 1);
    ep_event_destroy(back);

    /* Protobuf, batch of the event and its clone. */
    clone = ep_event_clone(ev);
    check_same(ev, clone, 1);
    pair[0] = ev;
    pair[1] = clone;
    ep_buf_reset(&b);
    CHECK(ep_event_batch_encode_pb(pair, 2, &b) == 0);
    CHECK(ep_event_batch_decode_pb(b.data, b.len, &evs, &n) == 0);
    CHECK(n == 2);
    for (size_t i = 0; i < n; i++) {
        check_same(ev, evs[i], 1);
        ep_event_destroy(evs[i]);
    }
    ep_free(evs);
    ep_event_destroy(clone);
    ep_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ep_event_parser_t *p, *ref;
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    int rc;

    if (p == NULL) {
        p = ep_event_parser_create(&limits);
        ref = ep_event_parser_create(&limits);
    }
    ep_event_json_diff(p, ref, (const char *)data, size);
    memset(&err, 0x5a, sizeof(err));
    rc = ep_event_parser_parse(p, (const char *)data, size, &ev, &err);
    if (rc != 0) {
        check_error(rc, ev, &err);
        return 0;
    }
    CHECK(ev != NULL);
    check_event(ev);
    round_trips(p, ev);
    ep_event_destroy(ev);
    return 0;
}
