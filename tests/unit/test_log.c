/*
 * ep_log: a message carrying a client's bytes stays one line, with control
 * characters, DEL, C1 controls and malformed UTF-8 escaped (\xNN in text, a
 * backslash doubled; \u00NN in JSON), well-formed UTF-8 kept (issue 14).
 */
#include "base/ep_log.h"
#include "ep_test.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Logs msg at info level in the given format; returns what reached stderr. */
static char *logged(int json, const char *msg)
{
    static char out[16384];
    FILE *f = tmpfile();
    int saved = dup(STDERR_FILENO);
    size_t n;

    EP_ASSERT(f != NULL && saved >= 0);
    EP_ASSERT(dup2(fileno(f), STDERR_FILENO) >= 0);
    ep_log_configure(EP_LOG_INFO, json);
    ep_log_info("access", "gateway GET %s 404", msg);
    EP_ASSERT(dup2(saved, STDERR_FILENO) >= 0);
    close(saved);
    rewind(f);
    n = fread(out, 1, sizeof(out) - 1, f);
    out[n] = '\0';
    fclose(f);
    return out;
}

/* The part of a line after "[access] " (text) or "\"msg\":\"" (JSON). */
static const char *after(const char *line, const char *mark)
{
    const char *p = strstr(line, mark);

    EP_ASSERT(p != NULL);
    return p + strlen(mark);
}

static const char *cases[][3] = {
    /* input, text, JSON */
    {"/plain", "/plain", "/plain"},
    {"/a\nb\r\x1b[31m\x7f", "/a\\x0ab\\x0d\\x1b[31m\\x7f", "/a\\u000ab\\u000d\\u001b[31m\\u007f"},
    {"/q\"\\", "/q\"\\\\", "/q\\\"\\\\"},
    {"/\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9", "/\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9",
     "/\xe2\x82\xac\xf0\x9f\x98\x80\xc3\xa9"},
    {"/\xc2\x9b\xc2\x85", "/\\xc2\\x9b\\xc2\\x85", "/\\u009b\\u0085"}, /* C1 controls */
    {"/\xff\xc0\x80\xc3(", "/\\xff\\xc0\\x80\\xc3(",
     "/\\u00ff\\u00c0\\u0080\\u00c3("},                                              /* malformed */
    {"/\xed\xa0\x80", "/\\xed\\xa0\\x80", "/\\u00ed\\u00a0\\u0080"},                 /* surrogate */
    {"/\xf4\x90\x80\x80", "/\\xf4\\x90\\x80\\x80", "/\\u00f4\\u0090\\u0080\\u0080"}, /* > 10FFFF */
    {"/\xe0\x80\xaf", "/\\xe0\\x80\\xaf", "/\\u00e0\\u0080\\u00af"},                 /* overlong */
    {"/\xe2\x82", "/\\xe2\\x82", "/\\u00e2\\u0082"},                                 /* cut short */
};

static void test_text_escapes(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = logged(0, cases[i][0]);
        char want[512];

        snprintf(want, sizeof(want), "gateway GET %s 404\n", cases[i][1]);
        if (strcmp(after(out, "[access] "), want) != 0) {
            fprintf(stderr, "case %zu: %s", i, out);
        }
        EP_ASSERT_STR_EQ(after(out, "[access] "), want);
        EP_ASSERT(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    }
}

static void test_json_escapes(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = logged(1, cases[i][0]);
        char want[512];

        snprintf(want, sizeof(want), "gateway GET %s 404\"}\n", cases[i][2]);
        if (strcmp(after(out, "\"msg\":\""), want) != 0) {
            fprintf(stderr, "case %zu: %s", i, out);
        }
        EP_ASSERT_STR_EQ(after(out, "\"msg\":\""), want);
        EP_ASSERT(strncmp(out, "{\"ts\":\"", 7) == 0);
        EP_ASSERT(strchr(out, '\n') == out + strlen(out) - 1);
    }
}

/* A long message escaped to several times its size is still whole, one line. */
static void test_long_message(void)
{
    char msg[1200];
    char *out;

    memset(msg, '\x01', sizeof(msg) - 1);
    msg[sizeof(msg) - 1] = '\0';
    out = logged(1, msg);
    EP_ASSERT(strlen(out) > 6000);
    EP_ASSERT(strchr(out, '\n') == out + strlen(out) - 1);
    EP_ASSERT(strcmp(out + strlen(out) - 3, "\"}\n") == 0);
}

EP_TEST_LIST = {
    EP_TEST(test_text_escapes),
    EP_TEST(test_json_escapes),
    EP_TEST(test_long_message),
    EP_TEST_END,
};

EP_TEST_MAIN()
