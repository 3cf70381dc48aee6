/* Unit tests of ep_duration: Go's time.ParseDuration syntax, units, refusals, formatting. */
#include "base/ep_duration.h"
#include "ep_test.h"

#include <string.h>

static int64_t ok(const char *s)
{
    int64_t ns = -1;
    const char *why = NULL;

    if (ep_duration_parse(s, &ns, &why) != 0) {
        EP__FAIL("'%s' refused: %s", s, why);
    }
    return ns;
}

static void bad(const char *s, const char *why_has)
{
    int64_t ns = 12345;
    const char *why = NULL;

    if (ep_duration_parse(s, &ns, &why) == 0) {
        EP__FAIL("'%s' accepted as %lld ns", s, (long long)ns);
    }
    EP_ASSERT(why != NULL);
    if (strstr(why, why_has) == NULL) {
        EP__FAIL("'%s': reason '%s' lacks '%s'", s, why, why_has);
    }
    EP_ASSERT_EQ(ns, 12345); /* nothing written on a refusal */
}

static void test_units_and_forms(void)
{
    EP_ASSERT_EQ(ok("0"), 0);
    EP_ASSERT_EQ(ok("+0"), 0);
    EP_ASSERT_EQ(ok("0s"), 0);
    EP_ASSERT_EQ(ok("15s"), 15 * EP_S);
    EP_ASSERT_EQ(ok("500ms"), 500 * EP_MS);
    EP_ASSERT_EQ(ok("1m30s"), 90 * EP_S);
    EP_ASSERT_EQ(ok("1.5h"), 5400 * EP_S);
    EP_ASSERT_EQ(ok("2h45m"), (2 * 3600 + 45 * 60) * EP_S);
    EP_ASSERT_EQ(ok("1h2m3s4ms5us6ns"), 3723 * EP_S + 4 * EP_MS + 5 * EP_US + 6 * EP_NS);
    EP_ASSERT_EQ(ok("10us"), 10 * EP_US);
    EP_ASSERT_EQ(ok("10\xc2\xb5s"), 10 * EP_US); /* µs (micro sign) */
    EP_ASSERT_EQ(ok("10\xce\xbcs"), 10 * EP_US); /* μs (greek mu) */
    EP_ASSERT_EQ(ok("7ns"), 7);
    EP_ASSERT_EQ(ok(".5s"), 500 * EP_MS);
    EP_ASSERT_EQ(ok("1.s"), EP_S);
    EP_ASSERT_EQ(ok("0.001s"), EP_MS);
    EP_ASSERT_EQ(ok("1.000000001s"), EP_S + 1);
    EP_ASSERT_EQ(ok("+5s"), 5 * EP_S);
    EP_ASSERT_EQ(ok("1s1s"), 2 * EP_S); /* Go adds repeated parts */
    /* The largest value: INT64_MAX ns. */
    EP_ASSERT_EQ(ok("9223372036854775807ns"), INT64_MAX);
    EP_ASSERT_EQ(ok("2562047h47m16.854775807s"), INT64_MAX);
    EP_ASSERT_EQ(ok("0.0000000000000000000001s"), 0); /* digits past ns resolution dropped */
}

static void test_refusals(void)
{
    bad("", "empty");
    bad("-1s", "negative");
    bad("-0", "negative");
    bad("15", "missing unit");
    bad("1m30", "missing unit");
    bad("10d", "unknown unit");
    bad("10S", "unknown unit"); /* units are case-sensitive, as in Go */
    bad("1 s", "unknown unit");
    bad("s", "expected");
    bad(".s", "expected");
    bad("+", "expected");
    bad("1.5.3s", "missing unit"); /* as Go: the part "1.5" has no unit */
    bad("9223372036854775808ns", "out of range");
    bad("2562048h", "out of range");
    bad("2562047h47m16.854775808s", "out of range");
    bad("99999999999999999999999s", "out of range");
    bad("5000000h5000000h", "out of range");
}

static void test_bare_number_unit(void)
{
    int64_t ns = 0;
    const char *why = NULL;

    EP_ASSERT_EQ(ep_duration_parse_bare("30", EP_S, &ns, &why), 0);
    EP_ASSERT_EQ(ns, 30 * EP_S);
    EP_ASSERT_EQ(ep_duration_parse_bare("3000", EP_MS, &ns, &why), 0);
    EP_ASSERT_EQ(ns, 3 * EP_S);
    EP_ASSERT_EQ(ep_duration_parse_bare("0", EP_S, &ns, &why), 0);
    EP_ASSERT_EQ(ns, 0);
    EP_ASSERT_EQ(ep_duration_parse_bare("250ms", EP_S, &ns, &why), 0);
    EP_ASSERT_EQ(ns, 250 * EP_MS);
    EP_ASSERT_EQ(ep_duration_parse_bare("9223372037", EP_S, &ns, &why), -1); /* > INT64_MAX ns */
    EP_ASSERT(strstr(why, "out of range") != NULL);
    EP_ASSERT_EQ(ep_duration_parse_bare("99999999999999999999", EP_NS, &ns, &why), -1);
    EP_ASSERT_EQ(ep_duration_parse_bare("1.5", EP_S, &ns, &why), -1); /* bare: integers only */
    EP_ASSERT_EQ(ep_duration_parse_bare("-3", EP_S, &ns, &why), -1);
}

static void test_format_round_trips(void)
{
    static const struct {
        int64_t ns;
        const char *s;
    } cases[] = {{0, "0s"},
                 {1, "1ns"},
                 {1500, "1.5us"},
                 {500 * EP_MS, "500ms"},
                 {1500 * EP_MS, "1.5s"},
                 {15 * EP_S, "15s"},
                 {90 * EP_S, "1m30s"},
                 {3600 * EP_S, "1h0m0s"},
                 {5400 * EP_S, "1h30m0s"},
                 {INT64_MAX, "2562047h47m16.854775807s"}};
    char buf[40];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ep_duration_format(cases[i].ns, buf, sizeof(buf));
        if (strcmp(buf, cases[i].s) != 0) {
            EP__FAIL("%lld ns formatted '%s', want '%s'", (long long)cases[i].ns, buf, cases[i].s);
        }
        EP_ASSERT_EQ(ok(buf), cases[i].ns);
    }
}

EP_TEST_LIST = {
    EP_TEST(test_units_and_forms),
    EP_TEST(test_refusals),
    EP_TEST(test_bare_number_unit),
    EP_TEST(test_format_round_trips),
    EP_TEST_END,
};
EP_TEST_MAIN()
