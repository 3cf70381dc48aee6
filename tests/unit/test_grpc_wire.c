/*
 * The bytes of the gRPC API (src/grpc/ep_grpc_wire.c, ep_grpc_reflect.c):
 * protobuf written here is read by protobuf-c and the other way round (an
 * independent implementation), framing, grpc-timeout, gzip caps, the Event
 * decoder's rules and field names, and reflection lookups.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "grpc/ep_grpc_reflect.h"
#include "grpc/ep_grpc_wire.h"
#include "proto/eventpipe.pb-c.h"

#include "ep_test.h"

#include <math.h>
#include <zlib.h>

extern const unsigned char ep_grpc_descriptors[];
extern const size_t ep_grpc_descriptors_len;

static void test_protobuf_c_reads_ours(void)
{
    ep_buf_t b = EP_BUF_INIT;
    Diplom__V1__IngestResponse *r;
    char big[300];

    memset(big, 'x', sizeof(big));
    ep_pb_put_bytes(&b, 1, "event_123", 9);
    ep_pb_put_bytes(&b, 2, big, sizeof(big)); /* a two-byte length */
    ep_pb_put_uint(&b, 9, 0);                 /* zero: left out, and unknown anyway */
    r = diplom__v1__ingest_response__unpack(NULL, b.len, (const uint8_t *)b.data);
    EP_ASSERT(r != NULL);
    EP_ASSERT_STR_EQ(r->message_id, "event_123");
    EP_ASSERT_EQ(strlen(r->status), sizeof(big));
    diplom__v1__ingest_response__free_unpacked(r, NULL);
    ep_buf_close(&b);
}

static void test_we_read_protobuf_c(void)
{
    Diplom__V1__IngestRequest req = DIPLOM__V1__INGEST_REQUEST__INIT;
    Diplom__V1__IngestRequest__MetadataEntry e1 = DIPLOM__V1__INGEST_REQUEST__METADATA_ENTRY__INIT;
    Diplom__V1__IngestRequest__MetadataEntry *es[1] = {&e1};
    uint8_t buf[256];
    size_t n;
    ep_event_t *ev = NULL;
    ep_parse_err_t pe;

    req.source = "sensor-01";
    req.data.data = (uint8_t *)"temperature:23.5";
    req.data.len = 16;
    e1.key = "location";
    e1.value = "warehouse-A";
    req.n_metadata = 1;
    req.metadata = es;
    n = diplom__v1__ingest_request__pack(&req, buf);
    EP_ASSERT_EQ(ep_grpc_decode_ingest(buf, n, NULL, 0, &ev, &pe), 0);
    EP_ASSERT_STR_EQ(ev->source.p, "sensor-01");
    EP_ASSERT_STR_EQ(ev->data.p, "temperature:23.5");
    EP_ASSERT_EQ(ev->n_meta, 1);
    EP_ASSERT_STR_EQ(ev->meta[0].key.p, "location");
    EP_ASSERT_STR_EQ(ev->meta[0].val.p, "warehouse-A");
    EP_ASSERT_EQ(ev->id.len, 36); /* a UUID was given */
    ep_event_destroy(ev);
    /* No source: the JSON API's message and field. */
    req.source = "";
    n = diplom__v1__ingest_request__pack(&req, buf);
    EP_ASSERT_EQ(ep_grpc_decode_ingest(buf, n, NULL, 0, &ev, &pe), EP_EVALIDATE);
    EP_ASSERT(ev == NULL);
    EP_ASSERT_STR_EQ(pe.field, "source");
}

static void test_nested_messages(void)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_pb_reader_t r, in;
    ep_pb_field_t f, g;
    char long_text[200];
    size_t at;

    memset(long_text, 'a', sizeof(long_text));
    at = ep_pb_open(&b, 5);
    ep_pb_put_uint(&b, 1, 7);
    ep_pb_put_bytes(&b, 2, long_text, sizeof(long_text));
    ep_pb_close(&b, at);
    ep_pb_put_uint(&b, 1, 300);
    ep_pb_reader_init(&r, b.data, b.len);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), 1);
    EP_ASSERT_EQ(f.num, 5);
    EP_ASSERT_EQ(f.wt, EP_PB_LEN);
    EP_ASSERT_EQ(f.len, 2 + 3 + sizeof(long_text));
    ep_pb_reader_init(&in, f.p, f.len);
    EP_ASSERT_EQ(ep_pb_next(&in, &g), 1);
    EP_ASSERT_EQ(g.v, 7);
    EP_ASSERT_EQ(ep_pb_next(&in, &g), 1);
    EP_ASSERT_EQ(g.len, sizeof(long_text));
    EP_ASSERT_EQ(ep_pb_next(&in, &g), 0);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), 1);
    EP_ASSERT_EQ(f.v, 300);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), 0);
    /* Truncated, a group, field 0: not a message. */
    ep_pb_reader_init(&r, b.data, b.len - 1);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), 1);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), -1);
    ep_pb_reader_init(&r, "\x0b", 1);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), -1);
    ep_pb_reader_init(&r, "\x00\x01", 2);
    EP_ASSERT_EQ(ep_pb_next(&r, &f), -1);
    ep_buf_close(&b);
}

static void test_framing(void)
{
    ep_buf_t b = EP_BUF_INIT;
    const uint8_t *m;
    size_t ml, used;
    int comp;

    ep_grpc_frame_prefix(&b, 3, 0);
    ep_buf_append(&b, "abc", 3);
    ep_grpc_frame_prefix(&b, 0, 1);
    EP_ASSERT_EQ(ep_grpc_frame_next((const uint8_t *)b.data, b.len, 100, &m, &ml, &comp, &used), 1);
    EP_ASSERT_EQ(ml, 3);
    EP_ASSERT_EQ(used, 8);
    EP_ASSERT_EQ(comp, 0);
    EP_ASSERT(memcmp(m, "abc", 3) == 0);
    EP_ASSERT_EQ(ep_grpc_frame_next((const uint8_t *)b.data + 8, 5, 100, &m, &ml, &comp, &used), 1);
    EP_ASSERT_EQ(ml, 0);
    EP_ASSERT_EQ(comp, 1);
    /* Partial: more bytes needed; over the maximum: refused at the prefix. */
    EP_ASSERT_EQ(ep_grpc_frame_next((const uint8_t *)b.data, 7, 100, &m, &ml, &comp, &used), 0);
    EP_ASSERT_EQ(ep_grpc_frame_next((const uint8_t *)b.data, 4, 100, &m, &ml, &comp, &used), 0);
    EP_ASSERT_EQ(ep_grpc_frame_next((const uint8_t *)b.data, 5, 2, &m, &ml, &comp, &used),
                 EP_E2BIG);
    EP_ASSERT_EQ(ep_grpc_frame_next((const uint8_t *)"\x02\0\0\0\0", 5, 2, &m, &ml, &comp, &used),
                 EP_EPARSE);
    ep_buf_close(&b);
}

static void test_timeout(void)
{
    EP_ASSERT_EQ(ep_grpc_timeout_ms("1S", 2), 1000);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("300m", 4), 300);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("2H", 2), 7200000);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("3M", 2), 180000);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("5n", 2), 1);    /* rounded up */
    EP_ASSERT_EQ(ep_grpc_timeout_ms("1500u", 5), 2); /* rounded up */
    EP_ASSERT_EQ(ep_grpc_timeout_ms("99999999S", 9), 99999999000LL);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("123456789S", 10), -1); /* at most 8 digits */
    EP_ASSERT_EQ(ep_grpc_timeout_ms("S", 1), -1);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("1x", 2), -1);
    EP_ASSERT_EQ(ep_grpc_timeout_ms("-1S", 3), -1);
}

static void test_gzip_cap(void)
{
    static uint8_t zeros[100000];
    ep_buf_t z = EP_BUF_INIT, out = EP_BUF_INIT;

    EP_ASSERT_EQ(ep_grpc_gzip(zeros, sizeof(zeros), &z), 0);
    EP_ASSERT(z.len < 1000);
    EP_ASSERT_EQ(ep_grpc_gunzip((const uint8_t *)z.data, z.len, sizeof(zeros), &out), 0);
    EP_ASSERT_EQ(out.len, sizeof(zeros));
    ep_buf_reset(&out);
    /* One byte over the cap is refused, and no more than that is ever inflated. */
    EP_ASSERT_EQ(ep_grpc_gunzip((const uint8_t *)z.data, z.len, sizeof(zeros) - 1, &out), EP_E2BIG);
    EP_ASSERT(out.len <= sizeof(zeros));
    ep_buf_reset(&out);
    EP_ASSERT_EQ(ep_grpc_gunzip((const uint8_t *)z.data, z.len, 20000, &out), EP_E2BIG);
    EP_ASSERT(out.len <= 20001); /* a bomb costs the cap, not its size */
    ep_buf_reset(&out);
    EP_ASSERT_EQ(ep_grpc_gunzip((const uint8_t *)z.data, z.len - 4, sizeof(zeros), &out),
                 EP_EPARSE);
    ep_buf_close(&z);
    ep_buf_close(&out);
}

/* An eventpipe.v1.Event written field by field. */
static void event_msg(ep_buf_t *b, const char *id, const char *source, const char *type, int64_t ts,
                      const char *pk, const char *mk)
{
    ep_buf_reset(b);
    if (id) {
        ep_pb_put_bytes(b, 1, id, strlen(id));
    }
    ep_pb_put_bytes(b, 2, "user_456", 8);
    if (type) {
        ep_pb_put_bytes(b, 3, type, strlen(type));
    }
    if (pk) {
        ep_pb_put_map_entry(b, 4, pk, strlen(pk), "/dashboard", 10);
    }
    ep_pb_put_uint(b, 5, (uint64_t)ts);
    if (source) {
        ep_pb_put_bytes(b, 6, source, strlen(source));
    }
    if (mk) {
        ep_pb_put_map_entry(b, 8, mk, strlen(mk), "v", 1);
    }
    ep_pb_put_uint(b, 99, 5); /* unknown: skipped */
}

static void test_event_rules(void)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *ev = NULL;
    ep_parse_err_t pe;

    event_msg(&b, "event_123", "web-app", "page_view", 1640995200, "page", "k");
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "event.", 0, &ev, &pe),
                 0);
    EP_ASSERT_STR_EQ(ev->id.p, "event_123");
    EP_ASSERT_STR_EQ(ev->user_id.p, "user_456");
    EP_ASSERT_EQ(ev->timestamp_ms, 1640995200000LL); /* seconds */
    EP_ASSERT_EQ(ev->n_meta, 2);
    EP_ASSERT_EQ(ev->flags & EP_EVENT_F_ID_GENERATED, 0);
    ep_event_destroy(ev);
    event_msg(&b, NULL, "web-app", "page_view", 1640995200123LL, NULL, NULL);
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "", 0, &ev, &pe), 0);
    EP_ASSERT_EQ(ev->timestamp_ms, 1640995200123LL); /* milliseconds */
    EP_ASSERT(ev->flags & EP_EVENT_F_ID_GENERATED);
    ep_event_destroy(ev);
    /* Each refusal names the field, with the caller's prefix. */
    event_msg(&b, NULL, NULL, "page_view", 0, NULL, NULL);
    EP_ASSERT_EQ(
        ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "events[2].", 0, &ev, &pe),
        EP_EVALIDATE);
    EP_ASSERT_STR_EQ(pe.field, "events[2].source");
    event_msg(&b, NULL, "s", "t", -1, NULL, NULL);
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "event.", 0, &ev, &pe),
                 EP_EVALIDATE);
    EP_ASSERT_STR_EQ(pe.field, "event.timestamp");
    event_msg(&b, NULL, "s", NULL, 0, NULL, NULL);
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "event.", 0, &ev, &pe),
                 EP_EVALIDATE);
    EP_ASSERT_STR_EQ(pe.field, "event.data");
    /* properties and metadata are one namespace, as in JSON. */
    event_msg(&b, NULL, "s", "t", 0, "same", "same");
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "", 0, &ev, &pe),
                 EP_EVALIDATE);
    EP_ASSERT(strncmp(pe.field, "metadata", 8) == 0);
    /* A string field with a varint: not this message. */
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)"\x08\x01", 2, NULL, "event.", 0, &ev, &pe),
                 EP_EPARSE);
    EP_ASSERT_STR_EQ(pe.field, "event.id");
    EP_ASSERT(ev == NULL);
    ep_buf_close(&b);
}

/* One typed_properties (field 9) entry: kind is the google.protobuf.Value field number. */
static void typed(ep_buf_t *b, const char *key, int kind, double num, const char *str)
{
    size_t at = ep_pb_open(b, 9), v;

    ep_pb_put_bytes(b, 1, key, strlen(key));
    v = ep_pb_open(b, 2);
    switch (kind) {
    case 1: /* null_value */
    case 4: /* bool_value */
        ep_pb_put_varint(b, ((uint64_t)kind << 3) | EP_PB_VARINT);
        ep_pb_put_varint(b, str != NULL);
        break;
    case 2: /* number_value */
        ep_pb_put_varint(b, (2 << 3) | EP_PB_I64);
        ep_buf_append(b, &num, sizeof(num));
        break;
    case 3: /* string_value */
    case 6: /* list_value */
        ep_pb_put_bytes_always(b, (uint32_t)kind, str, strlen(str));
        break;
    default: /* no kind */
        break;
    }
    ep_pb_close(b, v);
    ep_pb_close(b, at);
}

/* The event's JSON (ep_event_to_json), of a gRPC Event or of a JSON text. */
static void json_of(const ep_buf_t *pb, const char *json, ep_buf_t *out)
{
    ep_event_t *ev = NULL;
    ep_parse_err_t pe;

    if (pb) {
        EP_ASSERT_EQ(
            ep_grpc_decode_event((const uint8_t *)pb->data, pb->len, NULL, "", 0, &ev, &pe), 0);
    } else {
        EP_ASSERT_EQ(ep_event_parse_json(json, strlen(json), NULL, &ev, &pe), 0);
    }
    ep_buf_reset(out);
    ep_event_to_json(ev, out);
    ep_event_destroy(ev);
}

/* typed_properties: numbers and booleans keep their JSON type, as the same JSON event's do. */
static void test_typed_properties(void)
{
    ep_buf_t b = EP_BUF_INIT, got = EP_BUF_INIT, want = EP_BUF_INIT, json = EP_BUF_INIT;
    ep_event_t *ev = NULL;
    ep_parse_err_t pe;
    static const struct {
        const char *key;
        int kind;
        double num;
        const char *str, *json;
    } vals[] = {{"temperature", 2, 23.5, NULL, "23.5"}, {"count", 2, 42, NULL, "42"},
                {"tiny", 2, 0.1, NULL, "0.1"},          {"big", 2, 1e21, NULL, "1e+21"},
                {"neg", 2, -0.5, NULL, "-0.5"},         {"third", 2, 1.0 / 3, NULL, NULL},
                {"in_stock", 4, 0, "", "true"},         {"off", 4, 0, NULL, "false"},
                {"label", 3, 0, "x", "\"x\""},          {"gone", 1, 0, NULL, "null"}};

    ep_buf_puts(&json, "{\"id\":\"t1\",\"source\":\"s\",\"event_type\":\"t\",\"timestamp\":"
                       "1640995200,\"properties\":{\"page\":\"/\"");
    ep_pb_put_bytes(&b, 1, "t1", 2);
    ep_pb_put_bytes(&b, 3, "t", 1);
    ep_pb_put_map_entry(&b, 4, "page", 4, "/", 1);
    ep_pb_put_uint(&b, 5, 1640995200);
    ep_pb_put_bytes(&b, 6, "s", 1);
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        typed(&b, vals[i].key, vals[i].kind, vals[i].num, vals[i].str);
        ep_buf_printf(&json, ",\"%s\":%s", vals[i].key,
                      vals[i].json ? vals[i].json : "0.3333333333333333");
    }
    ep_buf_puts(&json, "}}");
    json_of(&b, NULL, &got);
    json_of(NULL, json.data, &want);
    EP_ASSERT_STR_EQ(got.data, want.data);
    EP_ASSERT(strstr(got.data, "\"temperature\":23.5,\"count\":42,") != NULL);
    EP_ASSERT(strstr(got.data, "\"in_stock\":true,\"off\":false,\"label\":\"x\"}") != NULL);

    /* More numbers than the decoder's stack holds (16): the rest in one block. */
    ep_buf_reset(&b);
    ep_pb_put_bytes(&b, 6, "s", 1);
    ep_pb_put_bytes(&b, 3, "t", 1);
    for (int i = 0; i < 40; i++) {
        char k[8];
        snprintf(k, sizeof(k), "n%d", i);
        typed(&b, k, 2, i + 0.25, NULL);
    }
    EP_ASSERT_EQ(ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "", 0, &ev, &pe), 0);
    EP_ASSERT_EQ(ev->n_meta, 40);
    EP_ASSERT_STR_EQ(ev->meta[39].val.p, "39.25");
    EP_ASSERT_EQ(ev->meta[39].type, EP_VAL_NUMBER);
    EP_ASSERT_STR_EQ(ev->meta[3].val.p, "3.25");
    ep_event_destroy(ev);

    /* Refused: nested, not finite, no kind, a key also in properties, a wrong wire type. */
    for (int c = 0; c < 5; c++) {
        static const char *const why[] = {"struct or list", "finite", "must be set", "duplicate",
                                          "wrong wire type"};
        ep_buf_reset(&b);
        ep_pb_put_bytes(&b, 6, "s", 1);
        ep_pb_put_bytes(&b, 3, "t", 1);
        ep_pb_put_map_entry(&b, 4, "page", 4, "/", 1);
        if (c == 0) {
            typed(&b, "x", 6, 0, "");
        } else if (c == 1) {
            typed(&b, "x", 2, INFINITY, NULL);
        } else if (c == 2) {
            typed(&b, "x", 0, 0, NULL);
        } else if (c == 3) {
            typed(&b, "page", 2, 1, NULL);
        } else {
            typed(&b, "x", 3, 0, "y");
            b.data[b.len - 3] = (char)((2 << 3) | EP_PB_LEN); /* number_value as bytes */
        }
        ev = NULL;
        EP_ASSERT_NE(
            ep_grpc_decode_event((const uint8_t *)b.data, b.len, NULL, "event.", 0, &ev, &pe), 0);
        EP_ASSERT(ev == NULL);
        EP_ASSERT(strstr(pe.msg, why[c]) != NULL);
    }
    EP_ASSERT_STR_EQ(pe.field, "event.typed_properties");
    ep_buf_close(&b);
    ep_buf_close(&got);
    ep_buf_close(&want);
    ep_buf_close(&json);
}

static void test_reflection(void)
{
    static const char *const svc[] = {"eventpipe.v1.ProducerService"};
    ep_buf_t req = EP_BUF_INIT, out = EP_BUF_INIT;
    ep_pb_reader_t r, in;
    ep_pb_field_t f, g;
    int files = 0, list = 0, error = 0;

    ep_pb_put_bytes(&req, 4, "eventpipe.v1.Event", 18);
    ep_grpc_reflect_answer(ep_grpc_descriptors, ep_grpc_descriptors_len, (const uint8_t *)req.data,
                           req.len, svc, 1, &out);
    ep_pb_reader_init(&r, out.data, out.len);
    while (ep_pb_next(&r, &f) == 1) {
        if (f.num == 4) {
            ep_pb_reader_init(&in, f.p, f.len);
            while (ep_pb_next(&in, &g) == 1) {
                files++;
            }
        }
    }
    /* eventpipe_api.proto and what it imports: eventpipe.proto, google/protobuf/struct.proto */
    EP_ASSERT_EQ(files, 3);
    /* A name that only starts like a symbol is not one. */
    ep_buf_reset(&req);
    ep_buf_reset(&out);
    ep_pb_put_bytes(&req, 4, "eventpipe.v1.EventX", 19);
    ep_grpc_reflect_answer(ep_grpc_descriptors, ep_grpc_descriptors_len, (const uint8_t *)req.data,
                           req.len, svc, 1, &out);
    ep_pb_reader_init(&r, out.data, out.len);
    while (ep_pb_next(&r, &f) == 1) {
        error += f.num == 7;
    }
    EP_ASSERT_EQ(error, 1);
    ep_buf_reset(&req);
    ep_buf_reset(&out);
    ep_pb_put_bytes_always(&req, 7, "", 0);
    ep_grpc_reflect_answer(ep_grpc_descriptors, ep_grpc_descriptors_len, (const uint8_t *)req.data,
                           req.len, svc, 1, &out);
    ep_pb_reader_init(&r, out.data, out.len);
    while (ep_pb_next(&r, &f) == 1) {
        list += f.num == 6 && f.len > 20;
    }
    EP_ASSERT_EQ(list, 1);
    ep_buf_close(&req);
    ep_buf_close(&out);
}

EP_TEST_LIST = {
    EP_TEST(test_protobuf_c_reads_ours),
    EP_TEST(test_we_read_protobuf_c),
    EP_TEST(test_nested_messages),
    EP_TEST(test_framing),
    EP_TEST(test_timeout),
    EP_TEST(test_gzip_cap),
    EP_TEST(test_event_rules),
    EP_TEST(test_typed_properties),
    EP_TEST(test_reflection),
    EP_TEST_END,
};

EP_TEST_MAIN()
