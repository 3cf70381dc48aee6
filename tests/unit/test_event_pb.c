/*
 * Tests for src/event/ep_event_pb.c: round trips, seed compatibility, and
 * rejection of malformed input.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "ep_test.h"

#include "proto/eventpipe.pb-c.h"

static ep_event_t *sample(int with_many_meta)
{
    ep_kv_t meta[40];
    char keys[40][8], vals[40][8];
    uint32_t n = 3;
    ep_event_t *ev;

    meta[0] = (ep_kv_t){{"temp", 4}, {"23.5", 4}, EP_VAL_NUMBER};
    meta[1] = (ep_kv_t){{"ok", 2}, {"true", 4}, EP_VAL_BOOL};
    meta[2] =
        (ep_kv_t){{"\xc3\xa9t\xc3\xa9", 5}, {"\xe6\x97\xa5\xf0\x9f\x98\x80", 7}, EP_VAL_STRING};
    if (with_many_meta) {
        for (uint32_t i = 3; i < 40; i++) {
            snprintf(keys[i], sizeof(keys[i]), "k%u", i);
            snprintf(vals[i], sizeof(vals[i]), "%u", i * 3);
            meta[i] = (ep_kv_t){{keys[i], (uint32_t)strlen(keys[i])},
                                {vals[i], (uint32_t)strlen(vals[i])},
                                (uint8_t)(i % 3)};
            if (meta[i].type == EP_VAL_BOOL) {
                meta[i].val = (ep_str_t){"false", 5};
            }
        }
        n = 40;
    }
    ev = ep_event_create("id-\xe2\x82\xac", "sensor-01", "reading", "user-1", "a\0b\xff", 4, meta,
                         n, INT64_C(1640995200123));
    ev->attempts = 3;
    ev->received_us = INT64_C(1640995200456789);
    return ev;
}

static void assert_same(const ep_event_t *a, const ep_event_t *b)
{
    EP_ASSERT_STR_EQ(a->id.p, b->id.p);
    EP_ASSERT_STR_EQ(a->source.p, b->source.p);
    EP_ASSERT_STR_EQ(a->event_type.p, b->event_type.p);
    EP_ASSERT_STR_EQ(a->user_id.p, b->user_id.p);
    EP_ASSERT_EQ(a->data.len, b->data.len);
    EP_ASSERT_STRN_EQ(a->data.p, b->data.p, a->data.len);
    EP_ASSERT_EQ(a->timestamp_ms, b->timestamp_ms);
    EP_ASSERT_EQ(a->received_us, b->received_us);
    EP_ASSERT_EQ(a->attempts, b->attempts);
    EP_ASSERT_EQ(a->n_meta, b->n_meta);
    for (uint32_t i = 0; i < a->n_meta; i++) {
        EP_ASSERT_STR_EQ(a->meta[i].key.p, b->meta[i].key.p);
        EP_ASSERT_STR_EQ(a->meta[i].val.p, b->meta[i].val.p);
        EP_ASSERT_EQ(a->meta[i].val.len, b->meta[i].val.len);
        EP_ASSERT_EQ(a->meta[i].type, b->meta[i].type);
    }
}

static void test_round_trip_single(void)
{
    for (int many = 0; many <= 1; many++) {
        ep_event_t *ev = sample(many), *back = NULL;
        ep_buf_t b = EP_BUF_INIT;

        ep_buf_puts(&b, "prefix"); /* encode appends */
        EP_ASSERT_EQ(ep_event_encode_pb(ev, &b), 0);
        EP_ASSERT_EQ(ep_event_decode_pb(b.data + 6, b.len - 6, &back), 0);
        assert_same(ev, back);
        EP_ASSERT(!(back->flags & EP_EVENT_F_ID_GENERATED));
        ep_event_destroy(back);
        ep_event_destroy(ev);
        ep_buf_close(&b);
    }
}

static void test_round_trip_batch(void)
{
    ep_event_t *evs[5], **back = NULL;
    ep_buf_t b = EP_BUF_INIT;
    size_t n = 0;

    for (int i = 0; i < 5; i++) {
        evs[i] = sample(i % 2);
    }
    EP_ASSERT_EQ(ep_event_batch_encode_pb(evs, 5, &b), 0);
    EP_ASSERT_EQ(ep_event_batch_decode_pb(b.data, b.len, &back, &n), 0);
    EP_ASSERT_EQ(n, 5);
    for (int i = 0; i < 5; i++) {
        assert_same(evs[i], back[i]);
        ep_event_destroy(back[i]);
        ep_event_destroy(evs[i]);
    }
    ep_free(back);

    /* An empty batch. */
    ep_buf_reset(&b);
    EP_ASSERT_EQ(ep_event_batch_encode_pb(NULL, 0, &b), 0);
    EP_ASSERT_EQ(b.len, 0);
    EP_ASSERT_EQ(ep_event_batch_decode_pb(b.data, b.len, &back, &n), 0);
    EP_ASSERT_EQ(n, 0);
    ep_free(back);
    ep_buf_close(&b);
}

/* A message as the seed's Go service writes it: only fields 1-5. */
static void test_seed_compatible_decode(void)
{
    Diplom__V1__DataMessage m = DIPLOM__V1__DATA_MESSAGE__INIT;
    Diplom__V1__DataMessage__MetadataEntry e = DIPLOM__V1__DATA_MESSAGE__METADATA_ENTRY__INIT;
    Diplom__V1__DataMessage__MetadataEntry *ep[1] = {&e};
    uint8_t buf[256];
    ep_event_t *ev = NULL;
    size_t len;

    m.id = "seed-1";
    m.timestamp = 1640995200;
    m.source = "sensor-01";
    m.payload.data = (uint8_t *)"temperature:23.5";
    m.payload.len = 16;
    e.key = "location";
    e.value = "A";
    m.n_metadata = 1;
    m.metadata = ep;
    len = diplom__v1__data_message__pack(&m, buf);
    EP_ASSERT_EQ(ep_event_decode_pb(buf, len, &ev), 0);
    EP_ASSERT_STR_EQ(ev->id.p, "seed-1");
    EP_ASSERT_EQ(ev->timestamp_ms, INT64_C(1640995200000));
    EP_ASSERT_STR_EQ(ev->source.p, "sensor-01");
    EP_ASSERT_STR_EQ(ev->data.p, "temperature:23.5");
    EP_ASSERT_EQ(ev->n_meta, 1);
    EP_ASSERT_STR_EQ(ev->meta[0].key.p, "location");
    EP_ASSERT_STR_EQ(ev->meta[0].val.p, "A");
    EP_ASSERT_EQ(ev->meta[0].type, EP_VAL_STRING);
    EP_ASSERT_EQ(ev->attempts, 0);
    EP_ASSERT(ev->received_us > 0);
    ep_event_destroy(ev);

    /* No id and no timestamp: generated. */
    m.id = "";
    m.timestamp = 0;
    len = diplom__v1__data_message__pack(&m, buf);
    EP_ASSERT_EQ(ep_event_decode_pb(buf, len, &ev), 0);
    EP_ASSERT_EQ(ev->id.len, 36);
    EP_ASSERT(ev->flags & EP_EVENT_F_ID_GENERATED);
    EP_ASSERT(ev->flags & EP_EVENT_F_TS_GENERATED);
    ep_event_destroy(ev);
}

static void test_seed_fields_written(void)
{
    ep_event_t *ev = sample(0);
    Diplom__V1__DataMessage *m;
    ep_buf_t b = EP_BUF_INIT;

    ep_event_encode_pb(ev, &b);
    m = diplom__v1__data_message__unpack(NULL, b.len, (const uint8_t *)b.data);
    EP_ASSERT(m != NULL);
    EP_ASSERT_EQ(m->timestamp, 1640995200); /* seconds for the seed */
    EP_ASSERT_EQ(m->timestamp_ms, INT64_C(1640995200123));
    EP_ASSERT_EQ(m->n_number_keys, 1);
    EP_ASSERT_STR_EQ(m->number_keys[0], "temp");
    EP_ASSERT_EQ(m->n_bool_keys, 1);
    EP_ASSERT_STR_EQ(m->bool_keys[0], "ok");
    diplom__v1__data_message__free_unpacked(m, NULL);
    ep_event_destroy(ev);
    ep_buf_close(&b);
}

static void test_garbage(void)
{
    static const char *const inputs[] = {
        "\xff\xff\xff\xff",         /* wire type 7 */
        "\x0a\x10\x61\x62\x63",     /* id longer than the input */
        "\x0a",                     /* tag without a length */
        "\x22\xff\xff\xff\xff\x0f", /* payload length beyond the input */
    };
    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        ep_event_t *ev = (ep_event_t *)1, **evs = (ep_event_t **)1;
        size_t n = 99;

        EP_ASSERT_EQ(ep_event_decode_pb(inputs[i], strlen(inputs[i]), &ev), EP_EPARSE);
        EP_ASSERT(ev == NULL);
        EP_ASSERT_EQ(ep_event_batch_decode_pb(inputs[i], strlen(inputs[i]), &evs, &n), EP_EPARSE);
        EP_ASSERT(evs == NULL);
        EP_ASSERT_EQ(n, 0);
    }
}

static void test_invalid_utf8(void)
{
    Diplom__V1__DataMessage m = DIPLOM__V1__DATA_MESSAGE__INIT;
    Diplom__V1__DataMessage__MetadataEntry e = DIPLOM__V1__DATA_MESSAGE__METADATA_ENTRY__INIT;
    Diplom__V1__DataMessage__MetadataEntry *ep[1] = {&e};
    char *bad[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80"};
    uint8_t buf[256];
    ep_event_t *ev = NULL;

    m.source = "s";
    m.event_type = "t"; /* the shared validation wants data or a type */
    m.n_metadata = 1;
    m.metadata = ep;
    e.key = "k";
    e.value = "v";
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (int where = 0; where < 5; where++) {
            size_t len;
            m.id = where == 0 ? bad[i] : "id";
            m.source = where == 1 ? bad[i] : "s";
            m.user_id = where == 2 ? bad[i] : "";
            e.key = where == 3 ? bad[i] : "k";
            e.value = where == 4 ? bad[i] : "v";
            len = diplom__v1__data_message__pack(&m, buf);
            EP_ASSERT_EQ(ep_event_decode_pb(buf, len, &ev), EP_EPARSE);
            EP_ASSERT(ev == NULL);
        }
    }
    /* Payload is bytes: anything goes. */
    m.id = "id";
    m.source = "s";
    m.user_id = "";
    e.key = "k";
    e.value = "v";
    m.payload.data = (uint8_t *)"\xff\xfe";
    m.payload.len = 2;
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev), 0);
    ep_event_destroy(ev);
}

static void test_typed_value_mismatch(void)
{
    Diplom__V1__DataMessage m = DIPLOM__V1__DATA_MESSAGE__INIT;
    Diplom__V1__DataMessage__MetadataEntry e = DIPLOM__V1__DATA_MESSAGE__METADATA_ENTRY__INIT;
    Diplom__V1__DataMessage__MetadataEntry *ep[1] = {&e};
    char *key[1] = {"k"};
    uint8_t buf[256];
    ep_event_t *ev = NULL;

    m.source = "s";
    m.event_type = "t";
    m.n_metadata = 1;
    m.metadata = ep;
    e.key = "k";
    /* A "number" that would be written into JSON unquoted must be a JSON number. */
    e.value = "1}{";
    m.n_number_keys = 1;
    m.number_keys = key;
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev),
                 EP_EVALIDATE);
    e.value = "-1.5e+3";
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev), 0);
    EP_ASSERT_EQ(ev->meta[0].type, EP_VAL_NUMBER);
    ep_event_destroy(ev);
    m.n_number_keys = 0;
    m.n_bool_keys = 1;
    m.bool_keys = key;
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev),
                 EP_EVALIDATE);
    e.value = "true";
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev), 0);
    EP_ASSERT_EQ(ev->meta[0].type, EP_VAL_BOOL);
    ep_event_destroy(ev);
    /* A typed key naming no entry is ignored. */
    key[0] = "other";
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev), 0);
    EP_ASSERT_EQ(ev->meta[0].type, EP_VAL_STRING);
    ep_event_destroy(ev);
}

static void test_timestamp_fallback(void)
{
    Diplom__V1__DataMessage m = DIPLOM__V1__DATA_MESSAGE__INIT;
    uint8_t buf[64];
    ep_event_t *ev = NULL;

    m.source = "s";
    m.event_type = "t";
    m.timestamp = 1700000000;
    m.timestamp_ms = 1700000000999;
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev), 0);
    EP_ASSERT_EQ(ev->timestamp_ms, INT64_C(1700000000999));
    ep_event_destroy(ev);
    m.timestamp_ms = 0;
    m.timestamp = INT64_MAX / 100; /* would overflow in milliseconds */
    EP_ASSERT_EQ(ep_event_decode_pb(buf, diplom__v1__data_message__pack(&m, buf), &ev),
                 EP_EVALIDATE);
}

/* The last message of a batch is bad or cut off: nothing is returned, nothing leaks (ASan). */
static void test_truncated_batch(void)
{
    ep_event_t *evs[4], **back = NULL;
    ep_buf_t b = EP_BUF_INIT;
    size_t n = 0;

    for (int i = 0; i < 4; i++) {
        evs[i] = sample(i == 3);
    }
    ep_event_batch_encode_pb(evs, 4, &b);
    for (size_t cut = 1; cut < b.len; cut += 7) {
        int rc = ep_event_batch_decode_pb(b.data, b.len - cut, &back, &n);
        if (rc == 0) {
            /* Cutting exactly at a message boundary leaves a valid, shorter batch. */
            EP_ASSERT(n < 4);
            for (size_t i = 0; i < n; i++) {
                ep_event_destroy(back[i]);
            }
            ep_free(back);
            continue;
        }
        EP_ASSERT_EQ(rc, EP_EPARSE);
        EP_ASSERT(back == NULL);
        EP_ASSERT_EQ(n, 0);
    }
    /* Three good messages, then one with invalid UTF-8 in its source. */
    {
        Diplom__V1__DataMessage m = DIPLOM__V1__DATA_MESSAGE__INIT;
        uint8_t buf[64];
        size_t len;

        m.source = "\xfe";
        len = diplom__v1__data_message__pack(&m, buf);
        ep_buf_reset(&b);
        ep_event_batch_encode_pb(evs, 3, &b);
        ep_buf_putc(&b, 0x0a);
        ep_buf_putc(&b, (char)len);
        ep_buf_append(&b, buf, len);
        EP_ASSERT_EQ(ep_event_batch_decode_pb(b.data, b.len, &back, &n), EP_EPARSE);
        EP_ASSERT(back == NULL);
    }
    for (int i = 0; i < 4; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_buf_close(&b);
}

static void test_json_to_pb(void)
{
    const char *json =
        "{\"source\":\"s\",\"event_type\":\"t\",\"metadata\":{\"n\":12345678901234567890,"
        "\"b\":false,\"s\":\"x\"},\"extra\":2.5}";
    ep_event_t *ev = NULL, *back = NULL;
    ep_parse_err_t err;
    ep_buf_t b = EP_BUF_INIT;

    EP_ASSERT_EQ(ep_event_parse_json(json, strlen(json), NULL, &ev, &err), 0);
    ep_event_encode_pb(ev, &b);
    EP_ASSERT_EQ(ep_event_decode_pb(b.data, b.len, &back), 0);
    assert_same(ev, back);
    EP_ASSERT_EQ(back->meta[3].type, EP_VAL_NUMBER);
    ep_event_destroy(ev);
    ep_event_destroy(back);
    ep_buf_close(&b);
}

/* Every field we write, read back by protobuf-c (an independent implementation). */
static void test_protobuf_c_reads_ours(void)
{
    for (int many = 0; many <= 1; many++) {
        ep_event_t *ev = sample(many);
        Diplom__V1__DataMessage *m;
        Diplom__V1__DataBatch *bm;
        ep_buf_t b = EP_BUF_INIT;
        size_t num = 0, bools = 0;

        ev->timestamp_ms = -1500; /* negative: ten-byte varints, floored seconds */
        ep_event_encode_pb(ev, &b);
        m = diplom__v1__data_message__unpack(NULL, b.len, (const uint8_t *)b.data);
        EP_ASSERT(m != NULL);
        EP_ASSERT_STR_EQ(m->id, ev->id.p);
        EP_ASSERT_EQ(m->timestamp, -2);
        EP_ASSERT_EQ(m->timestamp_ms, -1500);
        EP_ASSERT_STR_EQ(m->source, ev->source.p);
        EP_ASSERT_EQ(m->payload.len, ev->data.len);
        EP_ASSERT(memcmp(m->payload.data, ev->data.p, ev->data.len) == 0);
        EP_ASSERT_STR_EQ(m->event_type, ev->event_type.p);
        EP_ASSERT_STR_EQ(m->user_id, ev->user_id.p);
        EP_ASSERT_EQ(m->received_us, ev->received_us);
        EP_ASSERT_EQ(m->attempts, ev->attempts);
        EP_ASSERT_EQ(m->n_metadata, ev->n_meta);
        for (uint32_t i = 0; i < ev->n_meta; i++) {
            EP_ASSERT_STR_EQ(m->metadata[i]->key, ev->meta[i].key.p);
            EP_ASSERT_STR_EQ(m->metadata[i]->value, ev->meta[i].val.p);
            if (ev->meta[i].type == EP_VAL_NUMBER) {
                EP_ASSERT_STR_EQ(m->number_keys[num++], ev->meta[i].key.p);
            } else if (ev->meta[i].type == EP_VAL_BOOL) {
                EP_ASSERT_STR_EQ(m->bool_keys[bools++], ev->meta[i].key.p);
            }
        }
        EP_ASSERT_EQ(m->n_number_keys, num);
        EP_ASSERT_EQ(m->n_bool_keys, bools);
        diplom__v1__data_message__free_unpacked(m, NULL);

        ep_buf_reset(&b);
        {
            ep_event_t *two[2] = {ev, ev};
            ep_event_batch_encode_pb(two, 2, &b);
        }
        bm = diplom__v1__data_batch__unpack(NULL, b.len, (const uint8_t *)b.data);
        EP_ASSERT(bm != NULL);
        EP_ASSERT_EQ(bm->n_messages, 2);
        EP_ASSERT_STR_EQ(bm->messages[1]->id, ev->id.p);
        EP_ASSERT_EQ(bm->messages[1]->n_metadata, ev->n_meta);
        diplom__v1__data_batch__free_unpacked(bm, NULL);
        ep_event_destroy(ev);
        ep_buf_close(&b);
    }
}

/* Wire-level cases protobuf-c does not produce: unknown fields, repeats, bad types. */
#define B(lit) lit, sizeof(lit) - 1
#define SRC    "\x1a\x01s\x32\x01t" /* source "s", event_type "t": what validation needs */

static void test_wire_details(void)
{
    static const struct {
        const char *bytes;
        size_t len;
        int rc;
        const char *id; /* expected id when rc == 0 */
    } cases[] = {
        /* unknown fields of every wire type are skipped (string pieces end where a
           hex escape would swallow the next letter) */
        {B(SRC "\x0a\x01"
               "z\x78\x05\x81\x01\x01\x02\x03\x04\x05\x06\x07\x08\x8a\x01\x02"
               "hi\x95\x01\x01\x02\x03\x04"),
         0, "z"},
        /* a repeated singular field: the last one wins */
        {B(SRC "\x0a\x01"
               "a\x0a\x01"
               "b"),
         0, "b"},
        /* id with a wrong wire type */
        {B(SRC "\x08\x01"), EP_EPARSE, NULL},
        /* attempts as a length-delimited field */
        {B(SRC "\x52\x01\x01"), EP_EPARSE, NULL},
        /* a group (start, wire type 3) */
        {B(SRC "\x7b\x7c"), EP_EPARSE, NULL},
        /* field number 0 */
        {B(SRC "\x00\x01"), EP_EPARSE, NULL},
        /* a varint of eleven bytes */
        {B(SRC "\x40\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"), EP_EPARSE, NULL},
        /* a varint with bits past 64 */
        {B(SRC "\x40\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02"), EP_EPARSE, NULL},
        /* NUL inside a string field (refused by the shared validation, as in JSON) */
        {B(SRC "\x0a\x03"
               "a\x00"
               "b"),
         EP_EVALIDATE, NULL},
        /* NUL inside a metadata key */
        {B(SRC "\x0a\x01"
               "a\x2a\x05\x0a\x03k\x00y"),
         EP_EVALIDATE, NULL},
        /* a metadata entry that is not a message */
        {B(SRC "\x0a\x01"
               "a\x2a\x02\x0a\x05"),
         EP_EPARSE, NULL},
        /* a cut I64 field */
        {B(SRC "\x0a\x01"
               "a\x79\x01\x02"),
         EP_EPARSE, NULL},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ep_event_t *ev = NULL;
        int rc = ep_event_decode_pb(cases[i].bytes, cases[i].len, &ev);

        if (rc != cases[i].rc) {
            fprintf(stderr, "case %zu\n", i);
        }
        EP_ASSERT_EQ(rc, cases[i].rc);
        if (rc == 0) {
            EP_ASSERT_STR_EQ(ev->id.p, cases[i].id);
            ep_event_destroy(ev);
        } else {
            EP_ASSERT(ev == NULL);
        }
    }
}

/* ------------------------------------------------- issue 14: bounded, validated decoding */

/* Appends a varint. */
static void put_vi(ep_buf_t *b, uint64_t v)
{
    while (v >= 0x80) {
        ep_buf_putc(b, (char)(v | 0x80));
        v >>= 7;
    }
    ep_buf_putc(b, (char)v);
}

/* Wraps msg as the only DataMessage of a DataBatch. */
static void as_batch(const ep_buf_t *msg, ep_buf_t *out)
{
    ep_buf_putc(out, 0x0a);
    put_vi(out, msg->len);
    ep_buf_append(out, msg->data, msg->len);
}

/*
 * The body of finding 1, scaled: n empty metadata entries and n number keys
 * that name none of them. The old decoder compared every number key with
 * every entry (n^2); this one stops at EVENT_MAX_KEYS before matching a key.
 */
static void test_pathological_body_stops_at_limit(void)
{
    const size_t n = 30000;
    ep_buf_t msg = EP_BUF_INIT, body = EP_BUF_INIT;
    ep_event_t *ev = (ep_event_t *)1, **evs = (ep_event_t **)1;
    ep_parse_err_t err;
    size_t count = 99;
    uint64_t work;

    ep_buf_append(&msg, SRC, sizeof(SRC) - 1);
    for (size_t i = 0; i < n; i++) {
        ep_buf_append(&msg, "\x2a\x00", 2); /* metadata {} */
    }
    for (size_t i = 0; i < n; i++) {
        ep_buf_append(&msg, "\x5a\x01x", 3); /* number_keys "x" */
    }
    as_batch(&msg, &body);
    /* The plain API (queues) applies the default limits too. */
    EP_ASSERT_EQ(ep_event_decode_pb(msg.data, msg.len, &ev), EP_EVALIDATE);
    EP_ASSERT(ev == NULL);
    work = ep__event_key_work();
    EP_ASSERT_EQ(ep_event_batch_decode_pb_ex(body.data, body.len, NULL, 100000, &evs, &count, &err),
                 EP_EVALIDATE);
    EP_ASSERT_EQ(ep__event_key_work() - work, 0); /* stopped while counting */
    EP_ASSERT(evs == NULL);
    EP_ASSERT_EQ(count, 0);
    EP_ASSERT_STR_EQ(err.msg, "too many metadata entries (at most 64)");
    EP_ASSERT_STR_EQ(err.field, "events[0].metadata");
    ep_buf_close(&msg);
    ep_buf_close(&body);
}

/* A message of n distinct metadata keys and n number keys naming none of them. */
static uint64_t key_work_for(size_t n)
{
    ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
    ep_buf_t msg = EP_BUF_INIT;
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    uint64_t work;
    char key[32];

    lim.max_meta_keys = 1u << 20;
    ep_buf_append(&msg, SRC, sizeof(SRC) - 1);
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "k%07zu", (i * 7919) % n); /* not in order */
        ep_buf_append(&msg, "\x2a\x0d\x0a\x08", 4);
        ep_buf_append(&msg, key, 8);
        ep_buf_append(&msg, "\x12\x01v", 3);
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "z%07zu", i);
        ep_buf_append(&msg, "\x5a\x08", 2);
        ep_buf_append(&msg, key, 8);
    }
    work = ep__event_key_work();
    EP_ASSERT_EQ(ep_event_decode_pb_ex(msg.data, msg.len, &lim, &ev, &err), 0);
    work = ep__event_key_work() - work;
    EP_ASSERT_EQ(ev->n_meta, n);
    ep_event_destroy(ev);
    ep_buf_close(&msg);
    return work;
}

/* Key matching grows as n log n (counted comparisons, not time): doubling n about doubles it. */
static void test_key_matching_is_n_log_n(void)
{
    uint64_t w1 = key_work_for(20000), w2 = key_work_for(40000);

    printf("key comparisons: n=20000: %llu, n=40000: %llu (ratio %.2f)\n", (unsigned long long)w1,
           (unsigned long long)w2, (double)w2 / (double)w1);
    EP_ASSERT(w1 <= 20000ull * 40); /* (n + n) * (log2 n + 2) at most */
    EP_ASSERT(w2 * 10 <= w1 * 23);  /* quadratic would be 4x */
}

/* Packs m and decodes it as a one-message batch; returns the code, err filled. */
static int decode_one(Diplom__V1__DataMessage *m, ep_parse_err_t *err)
{
    size_t len = diplom__v1__data_message__get_packed_size(m);
    uint8_t *buf = ep_malloc(len + 8);
    ep_buf_t msg = EP_BUF_INIT, body = EP_BUF_INIT;
    ep_event_t **evs = NULL, *ev = NULL;
    size_t n = 0;
    int rc, rc1;

    diplom__v1__data_message__pack(m, buf);
    ep_buf_append(&msg, buf, len);
    as_batch(&msg, &body);
    rc = ep_event_batch_decode_pb_ex(body.data, body.len, NULL, 100000, &evs, &n, err);
    rc1 = ep_event_decode_pb(buf, len, &ev); /* the queues' path: the same verdict */
    EP_ASSERT_EQ(rc1, rc);
    if (rc == 0) {
        EP_ASSERT_EQ(n, 1);
        ep_event_destroy(evs[0]);
        ep_free(evs);
        ep_event_destroy(ev);
    }
    ep_free(buf);
    ep_buf_close(&msg);
    ep_buf_close(&body);
    return rc;
}

/* What /enqueue accepted in finding 1, each refused by the shared validation, naming the field. */
static void test_enqueue_validation_of_finding_1(void)
{
    Diplom__V1__DataMessage m = DIPLOM__V1__DATA_MESSAGE__INIT;
    Diplom__V1__DataMessage__MetadataEntry e[1000], *ep[1000];
    char keys[1000][8], *big = ep_malloc(100 * 1024 + 1);
    ep_parse_err_t err;

    m.source = "s";
    m.event_type = "t";
    EP_ASSERT_EQ(decode_one(&m, &err), 0);

    m.source = "";
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].source");
    EP_ASSERT_STR_EQ(err.msg, "is required");
    m.source = "s";

    for (int i = 0; i < 1000; i++) {
        Diplom__V1__DataMessage__MetadataEntry init =
            DIPLOM__V1__DATA_MESSAGE__METADATA_ENTRY__INIT;
        e[i] = init;
        snprintf(keys[i], sizeof(keys[i]), "k%d", i);
        e[i].key = keys[i];
        e[i].value = "v";
        ep[i] = &e[i];
    }
    m.n_metadata = 1000;
    m.metadata = ep;
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].metadata");
    EP_ASSERT_STR_EQ(err.msg, "too many metadata entries (at most 64)");
    m.n_metadata = 64; /* the limit itself is fine */
    EP_ASSERT_EQ(decode_one(&m, &err), 0);
    m.n_metadata = 2;
    e[1].key = "k0"; /* JSON refuses a key given twice; so does protobuf now */
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].metadata.k0");
    EP_ASSERT_STR_EQ(err.msg, "duplicate metadata key");
    e[1].key = keys[1];
    m.n_metadata = 0;

    memset(big, 'a', 100 * 1024);
    big[100 * 1024] = '\0';
    m.source = big;
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].source");
    EP_ASSERT_STR_EQ(err.msg, "is longer than 1024 bytes");
    m.source = "s";

    m.timestamp_ms = -1;
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].timestamp");
    m.timestamp_ms = 0;
    m.timestamp = -5;
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].timestamp");
    m.timestamp = 0;

    m.attempts = UINT32_MAX;
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].attempts");
    m.attempts = EP_EVENT_MAX_ATTEMPTS;
    EP_ASSERT_EQ(decode_one(&m, &err), 0);
    m.attempts = 0;

    /* An absent timestamp becomes the receive time, so that is bounded too (found by fuzz_enqueue).
     */
    m.received_us = INT64_MAX;
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].received_us");
    m.received_us = 0;

    m.event_type = "";
    EP_ASSERT_EQ(decode_one(&m, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "events[0].data");
    ep_free(big);
}

/* 1 MiB of 0a 00 pairs: 524,288 empty messages. Refused while counting past the cap. */
static void test_batch_of_empty_messages(void)
{
    ep_buf_t body = EP_BUF_INIT;
    ep_event_t **evs = (ep_event_t **)1;
    ep_parse_err_t err;
    size_t n = 99;

    for (size_t i = 0; i < (1u << 20) / 2; i++) {
        ep_buf_append(&body, "\x0a\x00", 2);
    }
    EP_ASSERT_EQ(ep_event_batch_decode_pb_ex(body.data, body.len, NULL, 100000, &evs, &n, &err),
                 EP_E2BIG);
    EP_ASSERT(evs == NULL && n == 0);
    EP_ASSERT_STR_EQ(err.msg, "too many events in one batch (at most 100000)");
    /* Without a cap, the first empty message fails validation; nothing is returned. */
    EP_ASSERT_EQ(ep_event_batch_decode_pb(body.data, body.len, &evs, &n), EP_EVALIDATE);
    EP_ASSERT(evs == NULL && n == 0);
    ep_buf_close(&body);
}

/* The shared rules, called directly: duplicates found by sorting at any size. */
static void test_validate_direct(void)
{
    ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
    ep_kv_t meta[100];
    char keys[100][8];
    ep_event_draft_t d;
    ep_parse_err_t err;

    memset(&d, 0, sizeof(d));
    d.source = (ep_str_t){"s", 1};
    d.event_type = (ep_str_t){"t", 1};
    for (int i = 0; i < 100; i++) {
        snprintf(keys[i], sizeof(keys[i]), "k%02d", i);
        meta[i] = (ep_kv_t){{keys[i], 3}, {"1", 1}, EP_VAL_NUMBER};
    }
    d.meta = meta;
    d.n_meta = 100;
    lim.max_meta_keys = 100;
    EP_ASSERT_EQ(ep_event_validate(&d, &lim, &err), 0);
    meta[77].key = meta[12].key; /* sorted path (> 8 entries) */
    EP_ASSERT_EQ(ep_event_validate(&d, &lim, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "metadata.k12");
    d.n_meta = 5;
    meta[4].key = meta[1].key; /* pairwise path */
    EP_ASSERT_EQ(ep_event_validate(&d, &lim, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.msg, "duplicate metadata key");
    meta[4].key = (ep_str_t){keys[4], 3};
    meta[2].val = (ep_str_t){"1}{", 3};
    EP_ASSERT_EQ(ep_event_validate(&d, &lim, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "metadata.k02");
    d.flags = EP_DRAFT_TEXT_CHECKED; /* the JSON tokenizer vouches for typed values */
    EP_ASSERT_EQ(ep_event_validate(&d, &lim, &err), 0);
    d.source = (ep_str_t){NULL, 0};
    EP_ASSERT_EQ(ep_event_validate(&d, &lim, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.msg, "is required");
}

EP_TEST_LIST = {
    EP_TEST(test_pathological_body_stops_at_limit),
    EP_TEST(test_key_matching_is_n_log_n),
    EP_TEST(test_enqueue_validation_of_finding_1),
    EP_TEST(test_batch_of_empty_messages),
    EP_TEST(test_validate_direct),
    EP_TEST(test_protobuf_c_reads_ours),
    EP_TEST(test_wire_details),
    EP_TEST(test_round_trip_single),
    EP_TEST(test_round_trip_batch),
    EP_TEST(test_seed_compatible_decode),
    EP_TEST(test_seed_fields_written),
    EP_TEST(test_garbage),
    EP_TEST(test_invalid_utf8),
    EP_TEST(test_typed_value_mismatch),
    EP_TEST(test_timestamp_fallback),
    EP_TEST(test_truncated_batch),
    EP_TEST(test_json_to_pb),
    EP_TEST_END,
};

EP_TEST_MAIN()
