/* Unit tests of ep_http_cors: parsing CORS_ALLOWED_ORIGINS, matching, same origin, headers. */
#include "base/ep_error.h"
#include "http/ep_http_cors.h"
#include "ep_test.h"

static void test_empty_is_no_cross_origin_access(void)
{
    ep_http_cors_t *c = (ep_http_cors_t *)1;
    char err[256] = "";

    EP_ASSERT_EQ(ep_http_cors_create("", &c, err, sizeof(err)), 0);
    EP_ASSERT(c == NULL);
    c = (ep_http_cors_t *)1;
    EP_ASSERT_EQ(ep_http_cors_create("  ", &c, err, sizeof(err)), 0);
    EP_ASSERT(c == NULL);
    c = (ep_http_cors_t *)1;
    EP_ASSERT_EQ(ep_http_cors_create(NULL, &c, err, sizeof(err)), 0);
    EP_ASSERT(c == NULL);
    ep_http_cors_destroy(NULL);
}

static void test_star_allows_every_origin(void)
{
    ep_http_cors_t *c;
    char err[256] = "";
    ep_buf_t b = EP_BUF_INIT;

    EP_ASSERT_EQ(ep_http_cors_create(" * ", &c, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "https://anything.example"), "*");
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "null"), "*");
    /* An answer to a request without Origin does not vary with it. */
    ep_http_cors_put_headers(c, NULL, &b);
    EP_ASSERT_EQ(b.len, 0);
    ep_http_cors_put_headers(c, "*", &b);
    EP_ASSERT(strstr(b.data, "Access-Control-Allow-Origin: *\r\n") != NULL);
    ep_buf_close(&b);
    ep_http_cors_destroy(c);
}

static void test_list_is_normalised_and_matched(void)
{
    ep_http_cors_t *c;
    char err[256] = "";

    EP_ASSERT_EQ(ep_http_cors_create("HTTPS://App.Example.com:443 , http://127.0.0.1:8000,"
                                     "http://localhost:80,https://[::1]:8443,app+x://h-1.b",
                                     &c, err, sizeof(err)),
                 0);
    /* As browsers send it: lower case, the default port left out. */
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "https://app.example.com"), "https://app.example.com");
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "https://APP.example.com"), "https://app.example.com");
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "http://127.0.0.1:8000"), "http://127.0.0.1:8000");
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "http://localhost"), "http://localhost");
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "https://[::1]:8443"), "https://[::1]:8443");
    EP_ASSERT_STR_EQ(ep_http_cors_allow(c, "app+x://h-1.b"), "app+x://h-1.b");
    /* Another scheme, port or host is another origin. */
    EP_ASSERT(ep_http_cors_allow(c, "http://app.example.com") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "https://app.example.com:8443") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "http://127.0.0.1:8001") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "http://127.0.0.1") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "https://evil.example.com") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "https://app.example.com.evil.com") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "null") == NULL);
    EP_ASSERT(ep_http_cors_allow(c, "") == NULL);
    ep_http_cors_destroy(c);
}

static void expect_error(const char *spec, const char *words)
{
    ep_http_cors_t *c = (ep_http_cors_t *)1;
    char err[256] = "";

    EP_ASSERT_EQ(ep_http_cors_create(spec, &c, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(c == NULL);
    if (strstr(err, words) == NULL) {
        EP__FAIL("'%s': expected \"%s\" in the message: %s", spec, words, err);
    }
}

static void test_malformed_origins_are_refused(void)
{
    expect_error("app.example.com", "no scheme://");
    expect_error("https://app.example.com/", "no path");
    expect_error("https://app.example.com/api", "no path");
    expect_error("https://app.example.com:8443/", "no path");
    expect_error("https://*.example.com", "wildcards");
    expect_error("https://", "no host");
    expect_error("https://:443", "no host");
    expect_error("https://a b.com", "host name");
    expect_error("https://a..b", "empty label");
    expect_error("https://a.com:", "port is not a number");
    expect_error("https://a.com:x", "port is not a number");
    expect_error("https://a.com:0", "1 to 65535");
    expect_error("https://a.com:65536", "1 to 65535");
    expect_error("https://a.com:99999999999999999999", "1 to 65535");
    expect_error("https://a.com:80x", "ends after its host and port");
    expect_error("https://a.com?x", "ends after its host and port");
    expect_error("https://[::1", "closing ']'");
    expect_error("https://[zz]", "IPv6");
    expect_error("1http://a.com", "scheme must start with a letter");
    expect_error("ht_tp://a.com", "scheme holds only");
    expect_error("://a.com", "scheme must start with a letter");
    expect_error("null", "'null'");
    expect_error("*,https://a.com", "'*' allows every origin");
    expect_error("https://a.com,*", "'*' allows every origin");
    expect_error("https://a.com,,https://b.com", "empty entry");
    expect_error("https://a.com,", "empty entry");
    /* The message quotes the entry that is wrong, not its neighbours. */
    expect_error("https://good.com, https://bad.com/", "'https://bad.com/'");
}

static void test_same_origin(void)
{
    EP_ASSERT(ep_http_cors_same_origin("http://127.0.0.1:8080", "127.0.0.1:8080", NULL));
    EP_ASSERT(ep_http_cors_same_origin("https://API.example.com", "api.example.com", NULL));
    EP_ASSERT(!ep_http_cors_same_origin("http://127.0.0.1:9000", "127.0.0.1:8080", NULL));
    EP_ASSERT(!ep_http_cors_same_origin("http://127.0.0.1:9000", NULL, NULL));
    EP_ASSERT(!ep_http_cors_same_origin("null", "127.0.0.1:8080", NULL));
    /* Behind a proxy that rewrote Host, the browser's word. */
    EP_ASSERT(ep_http_cors_same_origin("https://app.example.com", "backend:8080", "same-origin"));
    EP_ASSERT(!ep_http_cors_same_origin("https://evil.com", "backend:8080", "cross-site"));
    EP_ASSERT(!ep_http_cors_same_origin("https://evil.com", "backend:8080", "same-site"));
}

static void test_headers_of_answers(void)
{
    ep_http_cors_t *c;
    char err[256] = "";
    ep_buf_t b = EP_BUF_INIT;

    EP_ASSERT_EQ(ep_http_cors_create("https://a.com", &c, err, sizeof(err)), 0);
    ep_http_cors_put_headers(c, ep_http_cors_allow(c, "https://a.com"), &b);
    ep_buf_putc(&b, '\0');
    EP_ASSERT_STR_EQ(b.data, "Access-Control-Allow-Origin: https://a.com\r\n"
                             "Access-Control-Expose-Headers: " EP_HTTP_CORS_EXPOSE_HEADERS "\r\n"
                             "Vary: Origin\r\n");
    ep_buf_reset(&b);
    /* With a list, every answer depends on the Origin: caches must know. */
    ep_http_cors_put_headers(c, NULL, &b);
    ep_buf_putc(&b, '\0');
    EP_ASSERT_STR_EQ(b.data, "Vary: Origin\r\n");
    ep_buf_close(&b);
    ep_http_cors_destroy(c);
}

EP_TEST_LIST = {
    EP_TEST(test_empty_is_no_cross_origin_access),
    EP_TEST(test_star_allows_every_origin),
    EP_TEST(test_list_is_normalised_and_matched),
    EP_TEST(test_malformed_origins_are_refused),
    EP_TEST(test_same_origin),
    EP_TEST(test_headers_of_answers),
    EP_TEST_END,
};
EP_TEST_MAIN()
