/*
 * Unit tests of ep_http_parse: finding and parsing request heads, the
 * refusals and their statuses, chunked bodies fed in any pieces, queries.
 */
#include "base/ep_error.h"
#include "http/ep_http_parse.h"
#include "ep_test.h"

/* Parses text as one whole head; returns the status (0 = parsed). */
static int parse(const char *text, ep_http_head_t *h, char *buf, size_t cap)
{
    size_t skip, len = strlen(text), hl = ep_http_head_end(text, len, &skip);
    const char *err = NULL;
    int rc;

    EP_ASSERT(hl > 0 && skip + hl == len && hl < cap);
    memcpy(buf, text + skip, hl);
    buf[hl] = '\0';
    rc = ep_http_parse_head(buf, hl, h, &err);
    EP_ASSERT(rc == 0 || (err != NULL && *err != '\0'));
    return rc;
}

static void test_head_end(void)
{
    size_t skip;
    const char *a = "GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";

    EP_ASSERT_EQ(ep_http_head_end(a, strlen(a), &skip), strlen(a) - 4);
    EP_ASSERT_EQ(skip, 0);
    for (size_t n = 0; n < strlen(a) - 4; n++) {
        EP_ASSERT_EQ(ep_http_head_end(a, n, &skip), 0); /* every prefix is incomplete */
    }
    EP_ASSERT_EQ(ep_http_head_end("\r\n\nGET / HTTP/1.0\n\n", 19, &skip), 16);
    EP_ASSERT_EQ(skip, 3);
}

static void test_parse_fields(void)
{
    ep_http_head_t h;
    char buf[1024];

    EP_ASSERT_EQ(parse("POST /api/v1/ingest?x=1 HTTP/1.1\r\nHost: a\r\ncontent-length:  26 \r\n"
                       "Content-Type: application/json\r\nExpect: 100-continue\r\n\r\n",
                       &h, buf, sizeof(buf)),
                 0);
    EP_ASSERT_STR_EQ(h.method, "POST");
    EP_ASSERT_STR_EQ(h.path, "/api/v1/ingest");
    EP_ASSERT_STR_EQ(h.query, "x=1");
    EP_ASSERT_EQ(h.minor, 1);
    EP_ASSERT_EQ(h.content_length, 26);
    EP_ASSERT(h.keep_alive && h.expect_continue && !h.chunked);
    EP_ASSERT_STR_EQ(ep_http_head_field(&h, "CONTENT-TYPE"), "application/json");
    EP_ASSERT(ep_http_head_field(&h, "X-None") == NULL);

    EP_ASSERT_EQ(parse("GET /a%20b HTTP/1.0\nConnection: keep-alive\n\n", &h, buf, sizeof(buf)), 0);
    EP_ASSERT_STR_EQ(h.path, "/a b");
    EP_ASSERT(h.keep_alive && h.content_length == -1);
    EP_ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", &h, buf, sizeof(buf)), 0);
    EP_ASSERT(!h.keep_alive);
    EP_ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\n\r\n", &h, buf,
                       sizeof(buf)),
                 0);
    EP_ASSERT(!h.keep_alive);
    EP_ASSERT_EQ(parse("GET http://example.com:80/health?v=1 HTTP/1.1\r\nHost: a\r\n\r\n", &h, buf,
                       sizeof(buf)),
                 0);
    EP_ASSERT_STR_EQ(h.path, "/health");
    EP_ASSERT_STR_EQ(h.query, "v=1");
    EP_ASSERT_EQ(parse("POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", &h, buf,
                       sizeof(buf)),
                 0);
    EP_ASSERT(h.chunked);
}

static void test_refusals(void)
{
    static const struct {
        const char *text;
        int status;
    } cases[] = {
        {"GET\r\n\r\n", 400},
        {"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400},
        {"GET / HTTX/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        {"GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\x01\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
        {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
         400},
        {"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
    };
    ep_http_head_t h;
    char buf[1024];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = parse(cases[i].text, &h, buf, sizeof(buf));
        if (rc != cases[i].status) {
            fprintf(stderr, "case %zu: got %d\n", i, rc);
        }
        EP_ASSERT_EQ(rc, cases[i].status);
    }
    /* Duplicate equal Content-Lengths are one value. */
    EP_ASSERT_EQ(
        parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n", &h,
              buf, sizeof(buf)),
        0);
    EP_ASSERT_EQ(h.content_length, 3);
}

static void test_too_many_fields(void)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_http_head_t h;
    char buf[4096];

    ep_buf_puts(&b, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < EP_HTTP_MAX_FIELDS; i++) {
        ep_buf_printf(&b, "X-%d: v\r\n", i);
    }
    ep_buf_puts(&b, "\r\n");
    EP_ASSERT_EQ(parse(b.data, &h, buf, sizeof(buf)), 431);
    ep_buf_close(&b);
}

/* Feeds text to a chunked decoder in pieces of step bytes. */
static ssize_t feed(const char *text, size_t step, size_t max, ep_buf_t *out, int *done)
{
    ep_http_chunked_t c;
    size_t len = strlen(text), off = 0;
    const char *err = NULL;

    ep_http_chunked_init(&c);
    ep_buf_reset(out);
    *done = 0;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        ssize_t r = ep_http_chunked_feed(&c, text + off, n, out, max, done, &err);
        if (r < 0) {
            EP_ASSERT(err != NULL);
            return r;
        }
        off += (size_t)r;
    }
    return (ssize_t)off;
}

static void test_chunked(void)
{
    const char *body =
        "5\r\nhello\r\n6;name=val\r\n world\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
    ep_buf_t out = EP_BUF_INIT;
    int done;

    for (size_t step = 1; step <= strlen(body); step++) {
        EP_ASSERT_EQ(feed(body, step, 100, &out, &done), (ssize_t)strlen(body) - 4);
        EP_ASSERT(done);
        EP_ASSERT_EQ(out.len, 21);
        EP_ASSERT_STRN_EQ(out.data, "hello world0123456789", 21);
    }
    EP_ASSERT_EQ(feed("3\r\nabc\r\n0\r\n\r\n", 2, 2, &out, &done), EP_E2BIG); /* over max */
    EP_ASSERT_EQ(feed("3\r\nabcd\r\n0\r\n\r\n", 4, 100, &out, &done), EP_EPARSE);
    EP_ASSERT_EQ(feed("z\r\n", 1, 100, &out, &done), EP_EPARSE);
    EP_ASSERT_EQ(feed("\r\n", 1, 100, &out, &done), EP_EPARSE);
    EP_ASSERT_EQ(feed("ffffffffffffffffff\r\n", 5, 100, &out, &done), EP_EPARSE);
    EP_ASSERT_EQ(feed("0\r\n\r", 5, 100, &out, &done), 4); /* not done yet */
    EP_ASSERT(!done);
    ep_buf_close(&out);
}

/*
 * Chunk extensions follow RFC 9112 7.1.1 and trailers are field lines; a CR
 * not followed by LF is refused anywhere (RFC 9112 2.2). Fed in every piece size.
 */
static void test_chunked_strict(void)
{
    static const char *good[] = {
        "5;a\r\nhello\r\n0\r\n\r\n",
        "5 ; a = b\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x y\\\"z;\"\r\nhello\r\n0\r\n\r\n",
        "5;a;b=c ;d\r\nhello\r\n0\r\n\r\n",
        "5 \r\nhello\r\n0;last\r\n\r\n",
        "5;a=b \nhello\n0\nT: v\nU:\n\n",
        "5\r\nhello\r\n0\r\nT: v\t w\r\nU: x\r\n\r\n",
    };
    static const char *bad[] = {
        "5;a\rb\r\nhello\r\n0\r\n\r\n", /* the bare CR of issue 14 */
        "5;a\r\r\nhello\r\n0\r\n\r\n",
        "5\rx\nhello\r\n0\r\n\r\n",
        "5;a=\"x\ry\"\r\nhello\r\n0\r\n\r\n",
        "5;\r\nhello\r\n0\r\n\r\n",
        "5;a=\r\nhello\r\n0\r\n\r\n",
        "5;a=\"x\r\nhello\r\n0\r\n\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",
        "5 x\r\nhello\r\n0\r\n\r\n",
        "5;a b\r\nhello\r\n0\r\n\r\n",
        "5;a=b c\r\nhello\r\n0\r\n\r\n",
        "5;a==b\r\nhello\r\n0\r\n\r\n",
        "5;a;;b\r\nhello\r\n0\r\n\r\n",
        "0\r\nT: a\rb\r\n\r\n",
        "0\r\nT: a\r\r\n\r\n",
        "0\r\nT: \x01\r\n\r\n",
        "0\r\nNoColon\r\n\r\n",
        "0\r\nT: a\r\n folded\r\n\r\n",
        "0\r\n: v\r\n\r\n",
        "0\r\nT : v\r\n\r\n",
    };
    ep_buf_t out = EP_BUF_INIT;
    int done;

    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        for (size_t step = 1; step <= strlen(good[i]); step++) {
            ssize_t r = feed(good[i], step, 100, &out, &done);
            if (r != (ssize_t)strlen(good[i]) || !done) {
                fprintf(stderr, "good case %zu, step %zu: %zd\n", i, step, r);
            }
            EP_ASSERT_EQ(r, (ssize_t)strlen(good[i]));
            EP_ASSERT(done);
            EP_ASSERT_EQ(out.len, 5);
            EP_ASSERT_STRN_EQ(out.data, "hello", 5);
        }
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        for (size_t step = 1; step <= strlen(bad[i]); step++) {
            ssize_t r = feed(bad[i], step, 100, &out, &done);
            if (r != EP_EPARSE) {
                fprintf(stderr, "bad case %zu, step %zu: %zd\n", i, step, r);
            }
            EP_ASSERT_EQ(r, EP_EPARSE);
        }
    }
    ep_buf_close(&out);
}

/* A bare CR in the request line or a header line is refused; a bare LF ends a line. */
static void test_bare_cr(void)
{
    static const char *bad[] = {
        "GET / HTTP/1.1\rHost: a\r\n\r\n",      "GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET\r/ HTTP/1.1\r\nHost: a\r\n\r\n",   "GET / HTTP/1.1\r\r\nHost: a\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\r\n\r\n",
        "GET / HTTP/1.1\r\nHo\rst: a\r\n\r\n",  "GET / HTTP/1.1\r\nHost: a\r\n\r\r\n\r\n",
        "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    };
    ep_http_head_t h;
    char buf[256];

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t skip = 0, len = strlen(bad[i]), hl = ep_http_head_end(bad[i], len, &skip);
        const char *err = NULL;
        int rc = -1;
        if (hl > 0) {
            memcpy(buf, bad[i] + skip, hl);
            buf[hl] = '\0';
            rc = ep_http_parse_head(buf, hl, &h, &err);
        }
        if (rc != 400) {
            fprintf(stderr, "case %zu: head %zu, rc %d\n", i, hl, rc);
        }
        EP_ASSERT_EQ(rc, 400);
    }
    EP_ASSERT_EQ(parse("GET / HTTP/1.1\nHost: a\n\n", &h, buf, sizeof(buf)), 0);
    EP_ASSERT_STR_EQ(ep_http_head_field(&h, "Host"), "a");
}

static void test_query(void)
{
    char q[] = "limit=10&source=a%20b+c&&flag&x=%zz";
    char *names[8], *values[8];
    int n = ep_http_query_split(q, names, values, 8);

    EP_ASSERT_EQ(n, 4);
    EP_ASSERT_STR_EQ(names[0], "limit");
    EP_ASSERT_STR_EQ(values[0], "10");
    EP_ASSERT_STR_EQ(values[1], "a b c");
    EP_ASSERT_STR_EQ(names[2], "flag");
    EP_ASSERT_STR_EQ(values[2], "");
    EP_ASSERT_STR_EQ(values[3], "%zz");
    EP_ASSERT_EQ(ep_http_query_split(NULL, names, values, 8), 0);
}

EP_TEST_LIST = {
    EP_TEST(test_head_end),        EP_TEST(test_parse_fields), EP_TEST(test_refusals),
    EP_TEST(test_too_many_fields), EP_TEST(test_chunked),      EP_TEST(test_chunked_strict),
    EP_TEST(test_bare_cr),         EP_TEST(test_query),        EP_TEST_END,
};
EP_TEST_MAIN()
