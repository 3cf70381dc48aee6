/*
 * Tests for src/event/ep_event_json.c: accepted shapes, rejected inputs with
 * their error code and field, limits, parser reuse, the tokenizer's grammar
 * edges, and a differential run against the yajl-driven reference.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "ep_test.h"
#include "fuzz/event_json_diff.h"

/* ------------------------------------------------------------------ helpers */

static ep_event_t *parse_ok(const char *json)
{
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    int rc = ep_event_parse_json(json, strlen(json), NULL, &ev, &err);

    if (rc != 0) {
        fprintf(stderr, "parse failed: %s (%s) field=%s\n  input: %s\n", ep_err_name(rc), err.msg,
                err.field, json);
    }
    EP_ASSERT_EQ(rc, 0);
    EP_ASSERT(ev != NULL);
    return ev;
}

static const ep_kv_t *find_meta(const ep_event_t *ev, const char *key)
{
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        if (strcmp(ev->meta[i].key.p, key) == 0) {
            return &ev->meta[i];
        }
    }
    return NULL;
}

static void assert_meta(const ep_event_t *ev, const char *key, const char *val, int type)
{
    const ep_kv_t *kv = find_meta(ev, key);

    if (kv == NULL) {
        EP__FAIL("metadata key \"%s\" missing", key);
    }
    EP_ASSERT_STR_EQ(kv->val.p, val);
    EP_ASSERT_EQ(kv->type, type);
}

/* ------------------------------------------------------------------ accepted shapes */

static void test_seed_000_shape(void)
{
    ep_event_t *ev = parse_ok("{\"source\":\"sensor-01\",\"data\":\"temperature:23.5\","
                              "\"metadata\":{\"location\":\"A\"}}");

    EP_ASSERT_STR_EQ(ev->source.p, "sensor-01");
    EP_ASSERT_STR_EQ(ev->data.p, "temperature:23.5");
    EP_ASSERT_EQ(ev->data.len, 16);
    EP_ASSERT_EQ(ev->n_meta, 1);
    assert_meta(ev, "location", "A", EP_VAL_STRING);
    EP_ASSERT_EQ(ev->event_type.len, 0);
    EP_ASSERT_STR_EQ(ev->user_id.p, "");
    EP_ASSERT(ev->flags & EP_EVENT_F_ID_GENERATED);
    EP_ASSERT(ev->flags & EP_EVENT_F_TS_GENERATED);
    EP_ASSERT(ev->received_us > 0);
    ep_event_destroy(ev);
}

static void test_generated_id_is_uuid(void)
{
    ep_event_t *ev = parse_ok("{\"source\":\"s\",\"data\":\"x\"}");

    EP_ASSERT_EQ(ev->id.len, 36);
    EP_ASSERT_EQ(strlen(ev->id.p), 36);
    for (int i = 0; i < 36; i++) {
        char c = ev->id.p[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            EP_ASSERT_EQ(c, '-');
        } else {
            EP_ASSERT((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        }
    }
    EP_ASSERT_EQ(ev->id.p[14], '7'); /* UUID version 7 */
    EP_ASSERT(ev->flags & EP_EVENT_F_ID_GENERATED);
    ep_event_destroy(ev);

    ev = parse_ok("{\"id\":\"abc\",\"source\":\"s\",\"data\":\"x\"}");
    EP_ASSERT_STR_EQ(ev->id.p, "abc");
    EP_ASSERT(!(ev->flags & EP_EVENT_F_ID_GENERATED));
    ep_event_destroy(ev);
}

static void test_seed_004_shape(void)
{
    static const struct {
        const char *json;
        int64_t ts_ms;
    } cases[] = {
        {"{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
         "\"properties\":{\"page\":\"/"
         "dashboard\"},\"timestamp\":1640995200,\"source\":\"web-app\"}",
         INT64_C(1640995200000)},
        {"{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
         "\"properties\":{\"page\":\"/dashboard\"},\"timestamp\":1640995200123,"
         "\"source\":\"web-app\"}",
         INT64_C(1640995200123)},
        {"{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
         "\"properties\":{\"page\":\"/dashboard\"},\"timestamp\":1640995200.25,"
         "\"source\":\"web-app\"}",
         INT64_C(1640995200250)},
        {"{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
         "\"properties\":{\"page\":\"/dashboard\"},\"timestamp\":\"2022-01-01T00:00:00Z\","
         "\"source\":\"web-app\"}",
         INT64_C(1640995200000)},
        {"{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
         "\"properties\":{\"page\":\"/dashboard\"},"
         "\"timestamp\":\"2022-01-01T02:00:00.500+02:00\",\"source\":\"web-app\"}",
         INT64_C(1640995200500)},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ep_event_t *ev = parse_ok(cases[i].json);

        EP_ASSERT_STR_EQ(ev->id.p, "event_123");
        EP_ASSERT_STR_EQ(ev->user_id.p, "user_456");
        EP_ASSERT_STR_EQ(ev->event_type.p, "page_view");
        EP_ASSERT_STR_EQ(ev->source.p, "web-app");
        EP_ASSERT_EQ(ev->data.len, 0);
        EP_ASSERT_EQ(ev->timestamp_ms, cases[i].ts_ms);
        EP_ASSERT(!(ev->flags & EP_EVENT_F_TS_GENERATED));
        EP_ASSERT(!(ev->flags & EP_EVENT_F_ID_GENERATED));
        EP_ASSERT_EQ(ev->n_meta, 1);
        assert_meta(ev, "page", "/dashboard", EP_VAL_STRING);
        ep_event_destroy(ev);
    }
}

static void test_data_message_payload(void)
{
    /* "aGVsbG8gd29ybGQ=" is base64 for "hello world"; "AAEC/w==" is 00 01 02 ff. */
    ep_event_t *ev = parse_ok("{\"id\":\"m-1\",\"timestamp\":1700000000,\"source\":\"svc\","
                              "\"payload\":\"aGVsbG8gd29ybGQ=\",\"metadata\":{\"k\":\"v\"}}");

    EP_ASSERT_STR_EQ(ev->data.p, "hello world");
    EP_ASSERT_EQ(ev->data.len, 11);
    EP_ASSERT_EQ(ev->timestamp_ms, INT64_C(1700000000000));
    assert_meta(ev, "k", "v", EP_VAL_STRING);
    ep_event_destroy(ev);

    ev = parse_ok("{\"source\":\"svc\",\"payload\":\"AAEC/w==\"}");
    EP_ASSERT_EQ(ev->data.len, 4);
    EP_ASSERT_STRN_EQ(ev->data.p, "\x00\x01\x02\xff", 4);
    ep_event_destroy(ev);

    /* Unpadded and URL-safe forms are accepted too. */
    ev = parse_ok("{\"source\":\"svc\",\"payload\":\"AAEC_w\"}");
    EP_ASSERT_EQ(ev->data.len, 4);
    EP_ASSERT_STRN_EQ(ev->data.p, "\x00\x01\x02\xff", 4);
    ep_event_destroy(ev);
}

static void test_metadata_types(void)
{
    ep_event_t *ev =
        parse_ok("{\"source\":\"s\",\"data\":\"d\",\"metadata\":{\"temp\":23.5,\"count\":"
                 "12345678901234567890,"
                 "\"neg\":-1e-7,\"ok\":true,\"bad\":false,\"name\":\"x\",\"gone\":null},"
                 "\"properties\":{\"page\":\"/p\",\"n\":0}}");

    EP_ASSERT_EQ(ev->n_meta, 8);
    assert_meta(ev, "temp", "23.5", EP_VAL_NUMBER);
    assert_meta(ev, "count", "12345678901234567890", EP_VAL_NUMBER);
    assert_meta(ev, "neg", "-1e-7", EP_VAL_NUMBER);
    assert_meta(ev, "ok", "true", EP_VAL_BOOL);
    assert_meta(ev, "bad", "false", EP_VAL_BOOL);
    assert_meta(ev, "name", "x", EP_VAL_STRING);
    assert_meta(ev, "page", "/p", EP_VAL_STRING);
    assert_meta(ev, "n", "0", EP_VAL_NUMBER);
    EP_ASSERT(find_meta(ev, "gone") == NULL); /* null values are skipped */
    /* Input order is kept. */
    EP_ASSERT_STR_EQ(ev->meta[0].key.p, "temp");
    EP_ASSERT_STR_EQ(ev->meta[7].key.p, "n");
    ep_event_destroy(ev);
}

static void test_unknown_scalars_kept(void)
{
    ep_event_t *ev = parse_ok("{\"source\":\"s\",\"event_type\":\"click\",\"region\":\"eu\","
                              "\"score\":9.75,\"vip\":false,\"nothing\":null,\"user_id\":42}");

    EP_ASSERT_EQ(ev->n_meta, 3);
    assert_meta(ev, "region", "eu", EP_VAL_STRING);
    assert_meta(ev, "score", "9.75", EP_VAL_NUMBER);
    assert_meta(ev, "vip", "false", EP_VAL_BOOL);
    EP_ASSERT_STR_EQ(ev->user_id.p, "42"); /* a numeric user_id keeps its text */
    ep_event_destroy(ev);
}

static void test_unicode_and_escapes(void)
{
    ep_event_t *ev =
        parse_ok("{\"source\":\"\\u0441\\u0435\\u043d\\u0441\\u043e\\u0440\","
                 "\"data\":\"a\\u0000b\\n\\ud83d\\ude00\",\"metadata\":{\"\xc3\xa9t\xc3\xa9\":"
                 "\"\xe6\x97\xa5\"}}");

    EP_ASSERT_STR_EQ(ev->source.p, "\xd1\x81\xd0\xb5\xd0\xbd\xd1\x81\xd0\xbe\xd1\x80");
    EP_ASSERT_EQ(ev->data.len, 8); /* NUL is kept in data */
    EP_ASSERT_STRN_EQ(ev->data.p, "a\0b\n\xf0\x9f\x98\x80", 8);
    assert_meta(ev, "\xc3\xa9t\xc3\xa9", "\xe6\x97\xa5", EP_VAL_STRING);
    ep_event_destroy(ev);
}

static void test_nulls_are_absent(void)
{
    ep_event_t *ev = parse_ok("{\"id\":null,\"source\":\"s\",\"data\":\"x\",\"timestamp\":null,"
                              "\"metadata\":null,\"event_type\":null}");

    EP_ASSERT(ev->flags & EP_EVENT_F_ID_GENERATED);
    EP_ASSERT(ev->flags & EP_EVENT_F_TS_GENERATED);
    EP_ASSERT_EQ(ev->n_meta, 0);
    ep_event_destroy(ev);
}

static void test_whitespace_around(void)
{
    ep_event_t *ev = parse_ok(" \r\n\t{ \"source\" : \"s\" , \"data\" : \"x\" } \n");

    EP_ASSERT_STR_EQ(ev->data.p, "x");
    ep_event_destroy(ev);
}

/* ------------------------------------------------------------------ rejected inputs */

typedef struct reject_s {
    const char *name;
    const char *json;
    size_t len; /* 0 = strlen(json) */
    int code;
    const char *field;
    const char *msg_part; /* a substring the message must contain, or NULL */
} reject_t;

#define OK_PREFIX "{\"source\":\"s\",\"data\":\"x\","

static const reject_t rejects[] = {
    {"empty body", "", 0, EP_EPARSE, "", "empty body"},
    {"whitespace only", "  \n\t ", 0, EP_EPARSE, "", "malformed JSON"},
    {"truncated", "{\"source\":\"s\",\"data\":\"x", 0, EP_EPARSE, "", "malformed JSON at byte"},
    {"truncated after colon", "{\"source\":", 0, EP_EPARSE, "", "malformed JSON"},
    {"bad key", "{source:\"s\"}", 0, EP_EPARSE, "", "key expected"},
    {"array", "[]", 0, EP_EVALIDATE, "", "expected a JSON object"},
    {"array of objects", "[{\"source\":\"s\",\"data\":\"x\"}]", 0, EP_EVALIDATE, "",
     "expected a JSON object"},
    {"null", "null", 0, EP_EVALIDATE, "", "expected a JSON object"},
    {"string", "\"str\"", 0, EP_EVALIDATE, "", "expected a JSON object"},
    {"number", "42", 0, EP_EVALIDATE, "", "expected a JSON object"},
    {"trailing garbage", "{\"source\":\"s\",\"data\":\"x\"} x", 0, EP_EPARSE, "", "malformed JSON"},
    {"two objects", "{\"source\":\"s\",\"data\":\"x\"}{\"source\":\"s\",\"data\":\"x\"}", 0,
     EP_EPARSE, "", "malformed JSON"},
    {"line comment", "{\"source\":\"s\", // c\n\"data\":\"x\"}", 0, EP_EPARSE, "",
     "malformed JSON"},
    {"block comment", "/* c */{\"source\":\"s\",\"data\":\"x\"}", 0, EP_EPARSE, "",
     "malformed JSON"},
    {"trailing comma", "{\"source\":\"s\",\"data\":\"x\",}", 0, EP_EPARSE, "", "malformed JSON"},
    {"syntax beats validation", "{\"source\":1,\"data\":\"x\"", 0, EP_EPARSE, "", NULL},
    {"source missing", "{\"data\":\"x\"}", 0, EP_EVALIDATE, "source", "is required"},
    {"source null", "{\"source\":null,\"data\":\"x\"}", 0, EP_EVALIDATE, "source", "is required"},
    {"source empty", "{\"source\":\"\",\"data\":\"x\"}", 0, EP_EVALIDATE, "source",
     "must not be empty"},
    {"source number", "{\"source\":7,\"data\":\"x\"}", 0, EP_EVALIDATE, "source",
     "must be a string"},
    {"source object", "{\"source\":{},\"data\":\"x\"}", 0, EP_EVALIDATE, "source",
     "must be a string"},
    {"no data", "{\"source\":\"s\"}", 0, EP_EVALIDATE, "data", "is required"},
    {"empty data", "{\"source\":\"s\",\"data\":\"\"}", 0, EP_EVALIDATE, "data", "is required"},
    {"data number", "{\"source\":\"s\",\"data\":1}", 0, EP_EVALIDATE, "data", "must be a string"},
    {"data object", "{\"source\":\"s\",\"data\":{\"a\":1}}", 0, EP_EVALIDATE, "data",
     "must be a string"},
    {"data and payload", "{\"source\":\"s\",\"data\":\"x\",\"payload\":\"eA==\"}", 0, EP_EVALIDATE,
     "payload", "cannot be combined"},
    {"duplicate key", "{\"source\":\"s\",\"data\":\"x\",\"source\":\"t\"}", 0, EP_EVALIDATE,
     "source", "more than once"},
    {"metadata string", OK_PREFIX "\"metadata\":\"a=b\"}", 0, EP_EVALIDATE, "metadata",
     "must be an object"},
    {"metadata array", OK_PREFIX "\"metadata\":[1]}", 0, EP_EVALIDATE, "metadata",
     "must be an object"},
    {"metadata nested object", OK_PREFIX "\"metadata\":{\"location\":{\"x\":1}}}", 0, EP_EVALIDATE,
     "metadata.location", "must be a string, number or boolean"},
    {"properties nested array", OK_PREFIX "\"properties\":{\"tags\":[\"a\"]}}", 0, EP_EVALIDATE,
     "properties.tags", "must be a string, number or boolean"},
    {"metadata duplicate key", OK_PREFIX "\"metadata\":{\"a\":1},\"properties\":{\"a\":2}}", 0,
     EP_EVALIDATE, "properties.a", "duplicate"},
    {"metadata empty key", OK_PREFIX "\"metadata\":{\"\":1}}", 0, EP_EVALIDATE, "metadata.",
     "must not be empty"},
    {"unknown top-level object", OK_PREFIX "\"extra\":{\"a\":1}}", 0, EP_EVALIDATE, "extra",
     "must be a string, number or boolean"},
    {"unknown top-level array", OK_PREFIX "\"tags\":[]}", 0, EP_EVALIDATE, "tags", NULL},
    {"invalid UTF-8 in value", "{\"source\":\"s\xff\",\"data\":\"x\"}", 0, EP_EPARSE, "", NULL},
    {"invalid UTF-8 in key", OK_PREFIX "\"k\xc3\":1}", 0, EP_EPARSE, "", NULL},
    {"overlong UTF-8", "{\"source\":\"\xc0\xaf\",\"data\":\"x\"}", 0, EP_EPARSE, "", "UTF-8"},
    {"lone surrogate escape", "{\"source\":\"\\udc00\",\"data\":\"x\"}", 0, EP_EPARSE, "",
     "surrogate"},
    {"NUL in source", "{\"source\":\"a\\u0000b\",\"data\":\"x\"}", 0, EP_EVALIDATE, "source",
     "NUL"},
    {"NUL in metadata key", OK_PREFIX "\"metadata\":{\"a\\u0000\":1}}", 0, EP_EVALIDATE,
     "metadata.a", "NUL"},
    {"bad base64", "{\"source\":\"s\",\"payload\":\"not base64!\"}", 0, EP_EVALIDATE, "payload",
     "base64"},
    {"bad base64 length", "{\"source\":\"s\",\"payload\":\"abcde\"}", 0, EP_EVALIDATE, "payload",
     "base64"},
    {"base64 number", "{\"source\":\"s\",\"payload\":12}", 0, EP_EVALIDATE, "payload", "base64"},
    {"timestamp negative", OK_PREFIX "\"timestamp\":-5}", 0, EP_EVALIDATE, "timestamp", "negative"},
    {"timestamp garbage string", OK_PREFIX "\"timestamp\":\"yesterday\"}", 0, EP_EVALIDATE,
     "timestamp", "RFC 3339"},
    {"timestamp bool", OK_PREFIX "\"timestamp\":true}", 0, EP_EVALIDATE, "timestamp", NULL},
    {"timestamp huge", OK_PREFIX "\"timestamp\":99999999999999999999999}", 0, EP_EVALIDATE,
     "timestamp", "out of range"},
    {"timestamp float huge", OK_PREFIX "\"timestamp\":1e300}", 0, EP_EVALIDATE, "timestamp",
     "out of range"},
    {"timestamp object", OK_PREFIX "\"timestamp\":{}}", 0, EP_EVALIDATE, "timestamp", NULL},
    {"user_id bool", OK_PREFIX "\"user_id\":true}", 0, EP_EVALIDATE, "user_id", "must be a string"},
    {"id number", "{\"id\":5,\"source\":\"s\",\"data\":\"x\"}", 0, EP_EVALIDATE, "id",
     "must be a string"},
};

static void check_reject(const reject_t *r, const char *json, size_t len)
{
    ep_event_t *ev = (ep_event_t *)1;
    ep_parse_err_t err;
    int rc = ep_event_parse_json(json, len, NULL, &ev, &err);

    if (rc != r->code || strcmp(err.field, r->field) != 0 ||
        (r->msg_part && strstr(err.msg, r->msg_part) == NULL)) {
        EP__FAIL("case \"%s\": got %s field=\"%s\" msg=\"%s\"; want %s field=\"%s\" msg~\"%s\"",
                 r->name, ep_err_name(rc), err.field, err.msg, ep_err_name(r->code), r->field,
                 r->msg_part ? r->msg_part : "");
    }
    EP_ASSERT(ev == NULL);
    EP_ASSERT(err.msg[0] != '\0');
    EP_ASSERT(strchr(err.msg, '\n') == NULL);
}

static void test_rejects(void)
{
    for (size_t i = 0; i < sizeof(rejects) / sizeof(rejects[0]); i++) {
        const reject_t *r = &rejects[i];
        check_reject(r, r->json, r->len ? r->len : strlen(r->json));
    }
}

static void test_parse_error_message(void)
{
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    const char *json = "{\"source\":\"s\",]";

    EP_ASSERT_EQ(ep_event_parse_json(json, strlen(json), NULL, &ev, &err), EP_EPARSE);
    /* yajl's reason, one line, with the byte offset. */
    EP_ASSERT(strncmp(err.msg, "malformed JSON at byte ", 23) == 0);
    EP_ASSERT(strstr(err.msg, "error") == NULL);
    EP_ASSERT(strlen(err.msg) > 30);
}

/* Builds {"source":"s","data":"x","metadata":{"a":[[[...]]]}} with depth nested arrays. */
static void test_too_deep(void)
{
    reject_t r = {"deep", NULL, 0, EP_EVALIDATE, "metadata.a", NULL};
    ep_buf_t b = EP_BUF_INIT;

    ep_buf_puts(&b, OK_PREFIX "\"metadata\":{\"a\":");
    for (int i = 0; i < 100; i++) {
        ep_buf_putc(&b, '[');
    }
    for (int i = 0; i < 100; i++) {
        ep_buf_putc(&b, ']');
    }
    ep_buf_puts(&b, "}}");
    check_reject(&r, b.data, b.len);

    /* Deep nesting under an unknown key stops at max_depth too, even unterminated. */
    ep_buf_reset(&b);
    ep_buf_puts(&b, OK_PREFIX "\"z\":");
    for (int i = 0; i < 100000; i++) {
        ep_buf_putc(&b, '[');
    }
    r.field = "z";
    check_reject(&r, b.data, b.len);
    ep_buf_close(&b);
}

static void test_custom_depth_limit(void)
{
    ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    const char *json = OK_PREFIX "\"metadata\":{\"a\":1}}";

    lim.max_depth = 1;
    EP_ASSERT_EQ(ep_event_parse_json(json, strlen(json), &lim, &ev, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "metadata");
    EP_ASSERT(strstr(err.msg, "deeper than 1") != NULL);
}

static void test_limits(void)
{
    ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
    ep_event_parser_t *p;
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    ep_buf_t b = EP_BUF_INIT;

    lim.max_meta_keys = 4;
    lim.max_data_len = 16;
    lim.max_id_len = 8;
    lim.max_key_len = 5;
    lim.max_value_len = 6;
    p = ep_event_parser_create(&lim);

#define REJECT(json, fld, part)                                                                    \
    do {                                                                                           \
        ep_buf_reset(&b);                                                                          \
        ep_buf_puts(&b, json);                                                                     \
        EP_ASSERT_EQ(ep_event_parser_parse(p, b.data, b.len, &ev, &err), EP_EVALIDATE);            \
        EP_ASSERT(ev == NULL);                                                                     \
        EP_ASSERT_STR_EQ(err.field, fld);                                                          \
        if (strstr(err.msg, part) == NULL) {                                                       \
            EP__FAIL("message \"%s\" lacks \"%s\"", err.msg, part);                                \
        }                                                                                          \
    } while (0)

    REJECT("{\"id\":\"123456789\",\"source\":\"s\",\"data\":\"x\"}", "id",
           "is longer than 8 bytes");
    REJECT("{\"source\":\"s\",\"data\":\"0123456789abcdefg\"}", "data", "is longer than 16 bytes");
    REJECT("{\"source\":\"s\",\"payload\":\"MDEyMzQ1Njc4OWFiY2RlZmc=\"}", "payload",
           "more than 16 bytes");
    REJECT("{\"source\":\"1234567\",\"data\":\"x\"}", "source", "is longer than 6 bytes");
    REJECT(OK_PREFIX "\"metadata\":{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5}}", "metadata.e",
           "too many metadata entries");
    REJECT(OK_PREFIX "\"metadata\":{\"a\":1,\"b\":2,\"c\":3},\"x\":1,\"y\":2}", "y",
           "too many metadata entries");
    REJECT(OK_PREFIX "\"metadata\":{\"abcdef\":1}}", "metadata.abcdef", "longer than 5 bytes");
    REJECT(OK_PREFIX "\"metadata\":{\"a\":\"1234567\"}}", "metadata.a", "longer than 6 bytes");
    REJECT(OK_PREFIX "\"metadata\":{\"a\":1234567}}", "metadata.a", "longer than 6 bytes");
#undef REJECT

    /* Exactly at the limits is fine. */
    ep_buf_reset(&b);
    ep_buf_puts(&b, "{\"id\":\"12345678\",\"source\":\"123456\",\"data\":\"0123456789abcdef\","
                    "\"metadata\":{\"abcde\":\"123456\",\"b\":2,\"c\":3},\"d\":4}");
    EP_ASSERT_EQ(ep_event_parser_parse(p, b.data, b.len, &ev, &err), 0);
    EP_ASSERT_EQ(ev->n_meta, 4);
    EP_ASSERT_EQ(ev->data.len, 16);
    ep_event_destroy(ev);
    ep_buf_close(&b);
    ep_event_parser_destroy(p);
}

static void test_large_data_default_limit(void)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *ev = NULL;
    ep_parse_err_t err;

    ep_buf_puts(&b, "{\"source\":\"s\",\"data\":\"");
    for (int i = 0; i < 256 * 1024; i++) {
        ep_buf_putc(&b, 'a' + i % 26);
    }
    ep_buf_puts(&b, "\"}");
    EP_ASSERT_EQ(ep_event_parse_json(b.data, b.len, NULL, &ev, &err), 0);
    EP_ASSERT_EQ(ev->data.len, 256 * 1024);
    ep_event_destroy(ev);

    /* One byte over, and escapes count after decoding. */
    ep_buf_reset(&b);
    ep_buf_puts(&b, "{\"source\":\"s\",\"data\":\"");
    for (int i = 0; i < 256 * 1024 + 1; i++) {
        ep_buf_puts(&b, "\\n");
    }
    ep_buf_puts(&b, "\"}");
    EP_ASSERT_EQ(ep_event_parse_json(b.data, b.len, NULL, &ev, &err), EP_EVALIDATE);
    EP_ASSERT_STR_EQ(err.field, "data");
    EP_ASSERT_STR_EQ(err.msg, "is longer than 262144 bytes");
    ep_buf_close(&b);
}

static void test_overlong_key_field_is_truncated_safely(void)
{
    ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *ev = NULL;
    ep_parse_err_t err;

    lim.max_key_len = 4096;
    ep_buf_puts(&b, OK_PREFIX "\"metadata\":{\"");
    for (int i = 0; i < 200; i++) {
        ep_buf_puts(&b, "\xc3\xa9"); /* two-byte characters: truncation must not split them */
    }
    ep_buf_puts(&b, "\":{}}}");
    EP_ASSERT_EQ(ep_event_parse_json(b.data, b.len, &lim, &ev, &err), EP_EVALIDATE);
    EP_ASSERT(strncmp(err.field, "metadata.\xc3\xa9", 11) == 0);
    EP_ASSERT(strlen(err.field) < sizeof(err.field));
    EP_ASSERT(ep__event_utf8_valid(err.field, strlen(err.field)));
    ep_buf_close(&b);
}

static void test_route_requires_data(void)
{
    /* Seed 003's typed routes: the route sets the type, so data must not be empty. */
    static const struct {
        const char *json, *field, *msg;
    } bad[] = {
        {"{}", "data", "is required"},
        {"{\"source\":\"s\"}", "data", "is required"},
        {"{\"data\":\"\"}", "data", "must not be empty"},
        {"{\"payload\":\"\"}", "payload", "must not be empty"},
    };
    ep_event_parse_opts_t opts = {
        .default_source = "api", .event_type = "user_created", .require_data = 1};
    ep_event_parser_t *p = ep_event_parser_create(NULL);
    ep_event_t *ev = NULL;
    ep_parse_err_t err;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        EP_ASSERT_EQ(
            ep_event_parser_parse_opts(p, bad[i].json, strlen(bad[i].json), &opts, &ev, &err),
            EP_EVALIDATE);
        EP_ASSERT(ev == NULL);
        EP_ASSERT_STR_EQ(err.field, bad[i].field);
        EP_ASSERT_STR_EQ(err.msg, bad[i].msg);
    }
    EP_ASSERT_EQ(ep_event_parser_parse_opts(p, "{\"data\":\"x\"}", 12, &opts, &ev, &err), 0);
    EP_ASSERT_STR_EQ(ev->event_type.p, "user_created");
    EP_ASSERT_STR_EQ(ev->source.p, "api");
    ep_event_destroy(ev);
    /* Without the option the forced type alone is enough, as before. */
    opts.require_data = 0;
    EP_ASSERT_EQ(ep_event_parser_parse_opts(p, "{}", 2, &opts, &ev, &err), 0);
    ep_event_destroy(ev);
    ep_event_parser_destroy(p);
}

static void test_assigned_id_option(void)
{
    /* The id the hop in front assigned is used only when the body has none. */
    ep_event_parse_opts_t opts = {.id = "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"};
    ep_event_parser_t *p = ep_event_parser_create(NULL);
    ep_event_t *ev = NULL;
    ep_parse_err_t err;
    const char *own = "{\"id\":\"mine\",\"source\":\"s\",\"data\":\"x\"}";
    const char *none = "{\"source\":\"s\",\"data\":\"x\"}";

    EP_ASSERT_EQ(ep_event_parser_parse_opts(p, none, strlen(none), &opts, &ev, &err), 0);
    EP_ASSERT_STR_EQ(ev->id.p, opts.id);
    EP_ASSERT((ev->flags & EP_EVENT_F_ID_GENERATED) == 0); /* de-duplicated like a client id */
    ep_event_destroy(ev);
    EP_ASSERT_EQ(ep_event_parser_parse_opts(p, own, strlen(own), &opts, &ev, &err), 0);
    EP_ASSERT_STR_EQ(ev->id.p, "mine");
    ep_event_destroy(ev);
    opts.id = NULL;
    EP_ASSERT_EQ(ep_event_parser_parse_opts(p, none, strlen(none), &opts, &ev, &err), 0);
    EP_ASSERT((ev->flags & EP_EVENT_F_ID_GENERATED) != 0);
    ep_event_destroy(ev);
    ep_event_parser_destroy(p);
}

static void test_parser_reuse(void)
{
    ep_event_parser_t *p = ep_event_parser_create(NULL);
    ep_buf_t b = EP_BUF_INIT;

    for (int i = 0; i < 2000; i++) {
        ep_event_t *ev = NULL;
        ep_parse_err_t err;
        int rc;

        ep_buf_reset(&b);
        switch (i % 5) {
        case 0:
            ep_buf_printf(&b,
                          "{\"id\":\"e%d\",\"source\":\"s\",\"data\":\"%d\","
                          "\"metadata\":{\"i\":%d,\"b\":true}}",
                          i, i * 7, i);
            break;
        case 1:
            ep_buf_printf(&b, "{\"source\":\"s\",\"data\":\"x\",\"metadata\":{\"a\":[[[[[[");
            break;
        case 2:
            ep_buf_printf(&b, "{\"source\":\"s\",\"payload\":\"aGVsbG8=\",\"k%d\":\"v\"}", i);
            break;
        case 3:
            ep_buf_printf(&b, "{\"source\":\"s\",\"data\":\"\\u00e9\\n\\t\"} junk");
            break;
        default:
            /* A big escaped string makes yajl's arena overflow into the heap. */
            ep_buf_puts(&b, "{\"source\":\"s\",\"data\":\"");
            for (int j = 0; j < 50000; j++) {
                ep_buf_puts(&b, "\\\"");
            }
            ep_buf_puts(&b, "\"}");
            break;
        }
        rc = ep_event_parser_parse(p, b.data, b.len, &ev, &err);
        switch (i % 5) {
        case 0:
            EP_ASSERT_EQ(rc, 0);
            EP_ASSERT_EQ(ev->n_meta, 2);
            EP_ASSERT_EQ(atoi(ev->data.p), i * 7);
            EP_ASSERT_EQ(atoi(ev->id.p + 1), i);
            break;
        case 1:
            EP_ASSERT_EQ(rc, EP_EVALIDATE);
            break;
        case 2:
            EP_ASSERT_EQ(rc, 0);
            EP_ASSERT_STR_EQ(ev->data.p, "hello");
            break;
        case 3:
            EP_ASSERT_EQ(rc, EP_EPARSE);
            break;
        default:
            EP_ASSERT_EQ(rc, 0);
            EP_ASSERT_EQ(ev->data.len, 50000);
            break;
        }
        ep_event_destroy(ev);
    }
    ep_buf_close(&b);
    ep_event_parser_destroy(p);
    ep_event_parser_destroy(NULL);
}

static void test_to_json_round_trip(void)
{
    ep_event_t *ev =
        parse_ok("{\"id\":\"r1\",\"source\":\"s\",\"event_type\":\"t\",\"user_id\":\"u\","
                 "\"data\":\"q\\\"\\\\\",\"timestamp\":1640995200123,"
                 "\"metadata\":{\"n\":1.5e3,\"b\":false,\"s\":\"\\u00e9\"}}");
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *ev2;

    ep_event_to_json(ev, &b);
    ev2 = parse_ok(b.data);
    EP_ASSERT_STR_EQ(ev2->id.p, "r1");
    EP_ASSERT_STR_EQ(ev2->data.p, "q\"\\");
    EP_ASSERT_EQ(ev2->timestamp_ms, ev->timestamp_ms);
    EP_ASSERT_EQ(ev2->n_meta, 3);
    assert_meta(ev2, "n", "1.5e3", EP_VAL_NUMBER);
    assert_meta(ev2, "b", "false", EP_VAL_BOOL);
    assert_meta(ev2, "s", "\xc3\xa9", EP_VAL_STRING);
    ep_event_destroy(ev);
    ep_event_destroy(ev2);
    ep_buf_close(&b);
}

/* The UTF-8 check, at every offset around its eight-byte ASCII steps. */
static void test_utf8_valid_offsets(void)
{
    static const struct {
        const char *seq;
        int ok;
    } cases[] = {
        {"\xc3\xa9", 1},
        {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"\xff", 0},
        {"\xc3", 0},
        {"\xc0\xaf", 0},         /* overlong */
        {"\xed\xa0\x80", 0},     /* surrogate */
        {"\xf4\x90\x80\x80", 0}, /* above U+10FFFF */
        {"\xe2\x82", 0},         /* cut short */
    };
    char buf[64];

    for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
        size_t n = strlen(cases[c].seq);
        for (size_t before = 0; before < 20; before++) {
            for (size_t after = 0; after < 10; after++) {
                memset(buf, 'a', before);
                memcpy(buf + before, cases[c].seq, n);
                memset(buf + before + n, 'b', after);
                EP_ASSERT_EQ(ep__event_utf8_valid(buf, before + n + after), cases[c].ok);
            }
        }
    }
    memset(buf, 'x', sizeof(buf));
    EP_ASSERT_EQ(ep__event_utf8_valid(buf, sizeof(buf)), 1);
    EP_ASSERT_EQ(ep__event_utf8_valid(buf, 0), 1);
}

/* ------------------------------------------------------------------ tokenizer */

/* The RFC 8259 grammar at its edges: each input is data's value in an otherwise good event. */
static void test_tokenizer_values(void)
{
    static const struct {
        const char *meta_value; /* JSON text of metadata "v" */
        int ok;
        const char *want; /* the kept text when ok */
    } cases[] = {
        {"0", 1, "0"},
        {"-0", 1, "-0"},
        {"-12.5e+3", 1, "-12.5e+3"},
        {"1E9", 1, "1E9"},
        {"1e-0", 1, "1e-0"},
        {"01", 0, NULL},
        {"1.", 0, NULL},
        {".5", 0, NULL},
        {"-", 0, NULL},
        {"+1", 0, NULL},
        {"1e", 0, NULL},
        {"1e+", 0, NULL},
        {"0x10", 0, NULL},
        {"true", 1, "true"},
        {"false", 1, "false"},
        {"tru", 0, NULL},
        {"True", 0, NULL},
        {"nul", 0, NULL},
        {"\"\\u00e9\\u20AC\"", 1, "\xc3\xa9\xe2\x82\xac"},
        {"\"\\ud83d\\ude00\"", 1, "\xf0\x9f\x98\x80"}, /* surrogate pair */
        {"\"\\ud83d\"", 0, NULL},                      /* high alone */
        {"\"\\ud83dx\"", 0, NULL},
        {"\"\\ud83d\\u0041\"", 0, NULL}, /* high + not a low */
        {"\"\\ude00\"", 0, NULL},        /* low alone */
        {"\"\\u12\"", 0, NULL},
        {"\"\\u12G4\"", 0, NULL},
        {"\"\\x41\"", 0, NULL},
        {"\"\\b\\f\\n\\r\\t\\/\\\\\\\"\"", 1, "\b\f\n\r\t/\\\""},
        {"\"tab\there\"", 0, NULL}, /* raw control character */
        {"\"\x7f\"", 1, "\x7f"},    /* DEL is not a control character in JSON */
        {"\"\xe2\x82\"", 0, NULL},  /* cut UTF-8 */
        {"\"\xf4\x90\x80\x80\"", 0, NULL},
        {"\"0123456789abcdef0123456789abcdef\xc3\xa9\"", 1,
         "0123456789abcdef0123456789abcdef\xc3\xa9"},
    };
    ep_buf_t b = EP_BUF_INIT;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ep_event_t *ev = NULL;
        ep_parse_err_t err;
        int rc;

        ep_buf_reset(&b);
        ep_buf_printf(&b, OK_PREFIX "\"metadata\":{\"v\":%s}}", cases[i].meta_value);
        rc = ep_event_parse_json(b.data, b.len, NULL, &ev, &err);
        if (cases[i].ok) {
            if (rc != 0) {
                EP__FAIL("case %zu (%s): %s %s", i, cases[i].meta_value, ep_err_name(rc), err.msg);
            }
            EP_ASSERT_EQ(ev->n_meta, 1);
            EP_ASSERT_EQ(ev->meta[0].val.len, strlen(cases[i].want));
            EP_ASSERT(memcmp(ev->meta[0].val.p, cases[i].want, strlen(cases[i].want)) == 0);
            ep_event_destroy(ev);
        } else {
            if (rc != EP_EPARSE) {
                EP__FAIL("case %zu (%s): got %s, want EP_EPARSE", i, cases[i].meta_value,
                         ep_err_name(rc));
            }
            EP_ASSERT(strncmp(err.msg, "malformed JSON at byte ", 23) == 0);
            EP_ASSERT_STR_EQ(err.field, "");
        }
    }
    ep_buf_close(&b);
}

/* The byte offset in a syntax error points at the offending byte. */
static void test_tokenizer_offsets(void)
{
    static const struct {
        const char *json;
        const char *want;
    } cases[] = {
        {"{\"source\":\"s\",]", "at byte 14: object key expected"},
        {"{\"source\" \"s\"}", "at byte 10: ':' expected"},
        {"{\"source\":\"s\" \"data\"}", "at byte 14: ',' or '}' expected"},
        {"{\"source\":\"s\",\"data\":\"x\"} x", "at byte 26: trailing garbage"},
        {"{\"source\":\"s\xff\"}", "at byte 12: invalid UTF-8"},
        {"{\"source\":\"s", "at byte 12: premature end"},
        {"{\"a\":[1 2]}", "at byte 8: ',' or ']' expected"},
        {"\v{}", "at byte 0: invalid value"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ep_event_t *ev = NULL;
        ep_parse_err_t err;

        EP_ASSERT_EQ(ep_event_parse_json(cases[i].json, strlen(cases[i].json), NULL, &ev, &err),
                     EP_EPARSE);
        if (strstr(err.msg, cases[i].want) == NULL) {
            EP__FAIL("case %zu: \"%s\" does not contain \"%s\"", i, err.msg, cases[i].want);
        }
    }
}

/* Every proper prefix of a good event is a syntax error, never an accepted event. */
static void test_tokenizer_prefixes(void)
{
    const char *json = "{\"id\":\"e\\u00e91\",\"source\":\"s\",\"data\":\"x\",\"timestamp\":"
                       "1640995200.5,\"metadata\":{\"a\":[],\"b\":true,\"c\":null,\"d\":-1e2}}";
    ep_event_parser_t *p = ep_event_parser_create(NULL);

    for (size_t n = 1; n < strlen(json); n++) {
        ep_event_t *ev = NULL;
        ep_parse_err_t err;
        int rc = ep_event_parser_parse(p, json, n, &ev, &err);

        /* The empty array under metadata is a validation error once it is complete. */
        EP_ASSERT(rc == EP_EPARSE);
        EP_ASSERT(ev == NULL);
    }
    ep_event_parser_destroy(p);
}

/* Deterministic xorshift, so a failure reproduces. */
static uint64_t rnd_state = 0x9e3779b97f4a7c15u;
static uint32_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t)(rnd_state >> 11);
}

/*
 * The tokenizer against the yajl-driven reference on 200,000 mutations of good
 * and bad events (byte flips, JSON punctuation inserted, deletions, cuts); the
 * fuzz target does the same on whatever libFuzzer finds.
 */
static void test_differential_mutations(void)
{
    static const char *const seeds[] = {
        "{\"id\":\"event_123\",\"user_id\":\"user_456\",\"event_type\":\"page_view\","
        "\"properties\":{\"page\":\"/dashboard\",\"duration\":\"45\"},\"timestamp\":1640995200,"
        "\"source\":\"web-app\"}",
        "{\"source\":\"sensor-01\",\"data\":\"temperature:23.5\",\"metadata\":{\"location\":"
        "\"warehouse-A\",\"n\":-1.5e3,\"ok\":true,\"z\":null}}",
        "{\"source\":\"s\",\"payload\":\"aGVsbG8=\",\"timestamp\":\"2024-01-02T03:04:05.678Z\","
        "\"extra\":\"\\u00e9\\ud83d\\ude00\\n\",\"user_id\":42}",
        "{\"source\":\"s\",\"data\":\"x\",\"metadata\":{\"a\":{\"b\":[1,[2,{}]]}}}",
        "{\"source\":\"\xc3\xa9t\xc3\xa9\",\"event_type\":\"t\",\"data\":\"\",\"tags\":[\"a\"]}",
    };
    static const char inserts[] = "{}[],:\"\\ \n\t\v0-1.eE+tfnu\x80\xc3\xff";
    ep_event_parser_t *tok = ep_event_parser_create(NULL), *ref = ep_event_parser_create(NULL);
    char buf[512];
    size_t ok = 0, bad = 0;

    for (int iter = 0; iter < 200000; iter++) {
        const char *seed = seeds[rnd() % (sizeof(seeds) / sizeof(seeds[0]))];
        size_t n = strlen(seed);
        int edits = 1 + (int)(rnd() % 3);

        memcpy(buf, seed, n);
        for (int e = 0; e < edits && n > 1; e++) {
            size_t at = rnd() % n;
            switch (rnd() % 4) {
            case 0: /* replace a byte */
                buf[at] = inserts[rnd() % (sizeof(inserts) - 1)];
                break;
            case 1: /* insert a byte */
                if (n < sizeof(buf) - 1) {
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = inserts[rnd() % (sizeof(inserts) - 1)];
                    n++;
                }
                break;
            case 2: /* delete a byte */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
                break;
            default: /* cut */
                n = at + 1;
                break;
            }
        }
        if (ep_event_json_diff(tok, ref, buf, n) == 0) {
            ok++;
        } else {
            bad++;
        }
    }
    /* The mutations reach both sides of the parser. */
    EP_ASSERT(ok > 1000);
    EP_ASSERT(bad > 1000);
    ep_event_parser_destroy(tok);
    ep_event_parser_destroy(ref);
}

EP_TEST_LIST = {
    EP_TEST(test_tokenizer_values),
    EP_TEST(test_tokenizer_offsets),
    EP_TEST(test_tokenizer_prefixes),
    EP_TEST(test_differential_mutations),
    EP_TEST(test_utf8_valid_offsets),
    EP_TEST(test_seed_000_shape),
    EP_TEST(test_generated_id_is_uuid),
    EP_TEST(test_seed_004_shape),
    EP_TEST(test_data_message_payload),
    EP_TEST(test_metadata_types),
    EP_TEST(test_unknown_scalars_kept),
    EP_TEST(test_unicode_and_escapes),
    EP_TEST(test_nulls_are_absent),
    EP_TEST(test_whitespace_around),
    EP_TEST(test_rejects),
    EP_TEST(test_parse_error_message),
    EP_TEST(test_too_deep),
    EP_TEST(test_custom_depth_limit),
    EP_TEST(test_limits),
    EP_TEST(test_large_data_default_limit),
    EP_TEST(test_overlong_key_field_is_truncated_safely),
    EP_TEST(test_route_requires_data),
    EP_TEST(test_assigned_id_option),
    EP_TEST(test_parser_reuse),
    EP_TEST(test_to_json_round_trip),
    EP_TEST_END,
};

EP_TEST_MAIN()
