/*
 * Unit tests for src/event/ep_json_tree.c: the JSON tree of `eventpipe status`
 * and of the Kafka statistics.
 */
#include "base/ep_error.h"
#include "event/ep_json_tree.h"
#include "ep_test.h"

#include <math.h>

#define P(...) ((const char *const[]){__VA_ARGS__, NULL})

static ep_json_tree_t *parse(const char *json)
{
    ep_json_tree_t *t = NULL;
    char err[128];
    int rc = ep_json_tree_parse(json, strlen(json), 0, &t, err, sizeof(err));

    if (rc != 0) {
        fprintf(stderr, "parse failed: %s: %s\n", ep_strerror(rc), err);
    }
    EP_ASSERT_EQ(rc, 0);
    EP_ASSERT(t != NULL);
    return t;
}

/* Parses json, expecting EP_EPARSE, and returns the reason. */
static const char *parse_fails(const char *json, size_t len, unsigned depth)
{
    static char err[128];
    ep_json_tree_t *t = (ep_json_tree_t *)1;

    EP_ASSERT_EQ(ep_json_tree_parse(json, len, depth, &t, err, sizeof(err)), EP_EPARSE);
    EP_ASSERT(t == NULL);
    EP_ASSERT(err[0] != '\0');
    return err;
}

static void test_scalars(void)
{
    static const struct {
        const char *json;
        ep_json_type_t type;
    } cases[] = {
        {"null", EP_JT_NULL},    {" true ", EP_JT_TRUE}, {"false", EP_JT_FALSE},
        {"\"s\"", EP_JT_STRING}, {"0", EP_JT_NUMBER},    {"{}", EP_JT_OBJECT},
        {"[]", EP_JT_ARRAY},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ep_json_tree_t *t = parse(cases[i].json);
        const ep_json_node_t *r = ep_json_tree_root(t);

        EP_ASSERT_EQ(ep_json_type(r), cases[i].type);
        EP_ASSERT_EQ(ep_json_count(r), 0);
        EP_ASSERT(ep_json_first(r) == NULL);
        EP_ASSERT(ep_json_next(r) == NULL);
        EP_ASSERT(ep_json_key(r) == NULL);
        EP_ASSERT(ep_json_get(r, P(NULL)) == r); /* the empty path */
        EP_ASSERT(ep_json_get(r, P("x")) == NULL);
        EP_ASSERT_EQ(ep_json_is_true(r), cases[i].type == EP_JT_TRUE);
        ep_json_tree_free(t);
    }
}

static void test_objects(void)
{
    ep_json_tree_t *t = parse("{\"a\": 1, \"b\": {\"c\": \"x\", \"d\": [1, 2]}, \"e\": {}, "
                              "\"a\": 2, \"f\": true}");
    const ep_json_node_t *r = ep_json_tree_root(t), *c;
    const char *keys[] = {"a", "b", "e", "a", "f"};
    size_t i = 0;
    int64_t v = 0;

    EP_ASSERT_EQ(ep_json_type(r), EP_JT_OBJECT);
    EP_ASSERT_EQ(ep_json_count(r), 5);
    for (c = ep_json_first(r); c != NULL; c = ep_json_next(c), i++) {
        EP_ASSERT(i < 5);
        EP_ASSERT_STR_EQ(ep_json_key(c), keys[i]);
    }
    EP_ASSERT_EQ(i, 5);
    /* Duplicate keys: the first wins. */
    EP_ASSERT(ep_json_int(ep_json_get(r, P("a")), &v));
    EP_ASSERT_EQ(v, 1);
    EP_ASSERT_STR_EQ(ep_json_str(ep_json_get(r, P("b", "c"))), "x");
    EP_ASSERT_EQ(ep_json_count(ep_json_get(r, P("b", "d"))), 2);
    EP_ASSERT(ep_json_get_type(r, P("b", "d"), EP_JT_ARRAY) != NULL);
    EP_ASSERT(ep_json_get_type(r, P("b", "d"), EP_JT_OBJECT) == NULL);
    EP_ASSERT_EQ(ep_json_count(ep_json_get(r, P("e"))), 0);
    EP_ASSERT(ep_json_is_true(ep_json_get(r, P("f"))));
    /* Missing keys, and paths through scalars and arrays. */
    EP_ASSERT(ep_json_get(r, P("z")) == NULL);
    EP_ASSERT(ep_json_get(r, P("b", "z")) == NULL);
    EP_ASSERT(ep_json_get(r, P("a", "x")) == NULL);
    EP_ASSERT(ep_json_get(r, P("b", "d", "0")) == NULL);
    EP_ASSERT(ep_json_get(NULL, P("a")) == NULL);
    EP_ASSERT(ep_json_str(ep_json_get(r, P("a"))) == NULL); /* a number */
    ep_json_tree_free(t);
}

static void test_arrays_nested(void)
{
    ep_json_tree_t *t = parse("[[1, [2, [3]]], {\"k\": [{\"deep\": \"yes\"}]}, [], \"end\"]");
    const ep_json_node_t *r = ep_json_tree_root(t), *c, *d;
    int64_t v = 0;

    EP_ASSERT_EQ(ep_json_count(r), 4);
    c = ep_json_first(r);
    EP_ASSERT_EQ(ep_json_type(c), EP_JT_ARRAY);
    EP_ASSERT_EQ(ep_json_count(c), 2);
    d = ep_json_next(ep_json_first(c)); /* [2, [3]] */
    EP_ASSERT(ep_json_int(ep_json_first(d), &v));
    EP_ASSERT_EQ(v, 2);
    EP_ASSERT(ep_json_int(ep_json_first(ep_json_next(ep_json_first(d))), &v));
    EP_ASSERT_EQ(v, 3);
    EP_ASSERT(ep_json_next(ep_json_next(ep_json_first(d))) == NULL);
    c = ep_json_next(c); /* the object */
    d = ep_json_first(ep_json_get(c, P("k")));
    EP_ASSERT_STR_EQ(ep_json_str(ep_json_get(d, P("deep"))), "yes");
    c = ep_json_next(c);
    EP_ASSERT_EQ(ep_json_type(c), EP_JT_ARRAY);
    EP_ASSERT(ep_json_first(c) == NULL);
    c = ep_json_next(c);
    EP_ASSERT_STR_EQ(ep_json_str(c), "end");
    EP_ASSERT(ep_json_key(c) == NULL);
    EP_ASSERT(ep_json_next(c) == NULL);
    ep_json_tree_free(t);
}

static void test_numbers(void)
{
    ep_json_tree_t *t =
        parse("{\"i\": -42, \"z\": 0, \"big\": 9223372036854775807, "
              "\"neg\": -9223372036854775808, \"over\": 9223372036854775808, "
              "\"f\": -1.5, \"e\": 2.5e3, \"E\": -1E-2, \"ie\": 1e2, \"s\": \"7\"}");
    const ep_json_node_t *r = ep_json_tree_root(t);
    int64_t v = 99;
    double d = 0;
    size_t len = 0;

    EP_ASSERT(ep_json_int(ep_json_get(r, P("i")), &v));
    EP_ASSERT_EQ(v, -42);
    EP_ASSERT(ep_json_int(ep_json_get(r, P("z")), &v));
    EP_ASSERT_EQ(v, 0);
    EP_ASSERT(ep_json_int(ep_json_get(r, P("big")), &v));
    EP_ASSERT(v == INT64_MAX);
    EP_ASSERT(ep_json_int(ep_json_get(r, P("neg")), &v));
    EP_ASSERT(v == INT64_MIN);
    v = 99;
    EP_ASSERT(!ep_json_int(ep_json_get(r, P("over")), &v));
    EP_ASSERT(!ep_json_int(ep_json_get(r, P("f")), &v));
    EP_ASSERT(!ep_json_int(ep_json_get(r, P("ie")), &v)); /* an exponent: not an integer */
    EP_ASSERT(!ep_json_int(ep_json_get(r, P("s")), &v));  /* a string */
    EP_ASSERT(!ep_json_int(NULL, &v));
    EP_ASSERT_EQ(v, 99);
    EP_ASSERT(ep_json_double(ep_json_get(r, P("f")), &d));
    EP_ASSERT(d == -1.5);
    EP_ASSERT(ep_json_double(ep_json_get(r, P("e")), &d));
    EP_ASSERT(d == 2500.0);
    EP_ASSERT(ep_json_double(ep_json_get(r, P("E")), &d));
    EP_ASSERT(fabs(d + 0.01) < 1e-15);
    EP_ASSERT(!ep_json_double(ep_json_get(r, P("s")), &d));
    /* The text as written. */
    EP_ASSERT_STR_EQ(ep_json_text(ep_json_get(r, P("E")), &len), "-1E-2");
    EP_ASSERT_EQ(len, 5);
    ep_json_tree_free(t);
}

static void test_strings(void)
{
    const char *json = "{\"esc\": \"a\\\"b\\\\c\\/d\\n\\t\\u00e9\\ud83d\\ude00\", "
                       "\"utf8\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\", "
                       "\"k\\u00e9y\": 1, \"nul\": \"x\\u0000y\", \"a\\u0000b\": 2, \"\": 3}";
    ep_json_tree_t *t = parse(json);
    const ep_json_node_t *r = ep_json_tree_root(t), *n;
    size_t len = 0;
    int64_t v = 0;

    EP_ASSERT_STR_EQ(ep_json_str(ep_json_get(r, P("esc"))),
                     "a\"b\\c/d\n\t\xc3\xa9\xf0\x9f\x98\x80");
    EP_ASSERT_STR_EQ(ep_json_str(ep_json_get(r, P("utf8"))),
                     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    EP_ASSERT(ep_json_int(ep_json_get(r, P("k\xc3\xa9y")), &v)); /* an escaped key */
    EP_ASSERT_EQ(v, 1);
    n = ep_json_get(r, P("nul"));
    EP_ASSERT(ep_json_text(n, &len) != NULL);
    EP_ASSERT_EQ(len, 3);
    EP_ASSERT(memcmp(ep_json_text(n, NULL), "x\0y", 4) == 0);
    /* A key holding U+0000 matches no path. */
    EP_ASSERT(ep_json_get(r, P("a")) == NULL);
    n = ep_json_next(ep_json_get(r, P("nul")));
    EP_ASSERT_EQ(ep_json_key_len(n), 3);
    EP_ASSERT(memcmp(ep_json_key(n), "a\0b", 4) == 0);
    EP_ASSERT_EQ(ep_json_key_len(r), 0);
    EP_ASSERT(ep_json_int(ep_json_get(r, P("")), &v)); /* the empty key */
    EP_ASSERT_EQ(v, 3);
    ep_json_tree_free(t);
}

static void test_invalid(void)
{
    static const char *bad[] = {
        "",
        "   ",
        "{",
        "[1, 2",
        "{\"a\" 1}",
        "{\"a\": 1,}",
        "[1,]",
        "{a: 1}",
        "01",
        "-",
        "1.",
        "1e",
        "+1",
        "tru",
        "nul",
        "\"unterminated",
        "\"bad \\x escape\"",
        "\"\\ud83d alone\"",
        "\"\xc3\x28\"",     /* bad UTF-8 */
        "\"\xed\xa0\x80\"", /* an encoded surrogate */
        "\"tab\there\"",    /* a raw control character */
        "[1] [2]",          /* trailing garbage */
        "{} x",
        "// comment\n{}",
    };
    ep_json_tree_t *t = (ep_json_tree_t *)1;
    char err[64];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *why = parse_fails(bad[i], strlen(bad[i]), 0);
        if (i >= 2) {
            EP_ASSERT(strstr(why, " at byte ") != NULL);
        }
    }
    EP_ASSERT_STR_EQ(parse_fails("", 0, 0), "no JSON value");
    EP_ASSERT(strstr(parse_fails("[1, x]", 6, 0), "at byte 4") != NULL);
    /* An embedded NUL is not whitespace. */
    EP_ASSERT(strstr(parse_fails("{}\0", 3, 0), "trailing garbage") != NULL);
    /* Arguments. */
    EP_ASSERT_EQ(ep_json_tree_parse("1", 1, 0, NULL, err, sizeof(err)), EP_EINVAL);
    EP_ASSERT_EQ(ep_json_tree_parse(NULL, 1, 0, &t, err, sizeof(err)), EP_EINVAL);
    EP_ASSERT(t == NULL);
    EP_ASSERT_EQ(ep_json_tree_parse("1", 1, 256, &t, NULL, 0), EP_EINVAL);
    EP_ASSERT_EQ(ep_json_tree_parse("1", EP_JSON_TREE_MAX_INPUT + 1, 0, &t, err, sizeof(err)),
                 EP_E2BIG);
    EP_ASSERT_EQ(ep_json_tree_parse(NULL, 0, 0, &t, NULL, 0), EP_EPARSE);
    ep_json_tree_free(NULL);
}

static void test_depth_limit(void)
{
    char buf[600];
    ep_json_tree_t *t = NULL;
    const ep_json_node_t *n;
    size_t depth;

    /* Exactly max_depth containers pass; one more fails. */
    for (unsigned max = 1; max <= 255; max += 127) {
        for (depth = max; depth <= max + 1; depth++) {
            memset(buf, '[', depth);
            memset(buf + depth, ']', depth);
            if (depth == max) {
                EP_ASSERT_EQ(ep_json_tree_parse(buf, 2 * depth, max, &t, NULL, 0), 0);
                n = ep_json_tree_root(t);
                for (size_t i = 1; i < depth; i++) {
                    n = ep_json_first(n);
                    EP_ASSERT(n != NULL);
                }
                EP_ASSERT(ep_json_first(n) == NULL);
                ep_json_tree_free(t);
            } else {
                EP_ASSERT(strstr(parse_fails(buf, 2 * depth, max), "nested too deep") != NULL);
            }
        }
    }
    /* The default: EP_JSON_TREE_DEPTH. */
    memset(buf, '[', EP_JSON_TREE_DEPTH + 1);
    memset(buf + EP_JSON_TREE_DEPTH + 1, ']', EP_JSON_TREE_DEPTH + 1);
    parse_fails(buf, 2 * (EP_JSON_TREE_DEPTH + 1), 0);
    EP_ASSERT_EQ(ep_json_tree_parse(buf + 1, 2 * EP_JSON_TREE_DEPTH, 0, &t, NULL, 0), 0);
    ep_json_tree_free(t);
}

/* The shapes the two product callers read. */
static void test_callers_shapes(void)
{
    ep_json_tree_t *t =
        parse("{\"name\": \"rdkafka#producer-1\", \"brokers\": {"
              "\"localhost:9092/bootstrap\": {\"nodeid\": -1, \"state\": \"UP\", \"source\": "
              "\"configured\"},"
              "\"b1:9092/1\": {\"nodeid\": 1, \"state\": \"UP\", \"source\": \"learned\"},"
              "\"b2:9092/2\": {\"nodeid\": 2, \"state\": \"DOWN\", \"source\": \"learned\"}}}");
    const ep_json_node_t *b = ep_json_get_type(ep_json_tree_root(t), P("brokers"), EP_JT_OBJECT);
    int up = 0, learned = 0;

    EP_ASSERT_EQ(ep_json_count(b), 3);
    for (const ep_json_node_t *c = ep_json_first(b); c; c = ep_json_next(c)) {
        int64_t id;
        const char *st = ep_json_str(ep_json_get(c, P("state")));
        up += st && strcmp(st, "UP") == 0;
        learned += ep_json_int(ep_json_get(c, P("nodeid")), &id) && id >= 0;
    }
    EP_ASSERT_EQ(up, 2);
    EP_ASSERT_EQ(learned, 2);
    ep_json_tree_free(t);
}

EP_TEST_LIST = {
    EP_TEST(test_scalars),     EP_TEST(test_objects),        EP_TEST(test_arrays_nested),
    EP_TEST(test_numbers),     EP_TEST(test_strings),        EP_TEST(test_invalid),
    EP_TEST(test_depth_limit), EP_TEST(test_callers_shapes), EP_TEST_END,
};

EP_TEST_MAIN()
