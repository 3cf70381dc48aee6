/* Unit tests of the small core modules: ep_error, ep_buf, ep_time, ep_id. */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_id.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "ep_test.h"
#include "base/ep_time.h"

static void test_error_names(void)
{
    EP_ASSERT_STR_EQ(ep_err_name(EP_EFULL), "EP_EFULL");
    EP_ASSERT_STR_EQ(ep_strerror(EP_EFULL), "queue is full");
    EP_ASSERT_STR_EQ(ep_strerror(0), "success");
    EP_ASSERT(ep_strerror(-99999) != NULL);
    EP_ASSERT_EQ(EP_EINVAL, -EINVAL);
}

static void test_buf_append_and_json(void)
{
    ep_buf_t b = EP_BUF_INIT;
    char *p;
    size_t len;

    ep_buf_puts(&b, "a");
    ep_buf_printf(&b, "%d-%s", 42, "x");
    ep_buf_put_i64(&b, -9223372036854775807LL - 1);
    EP_ASSERT_STR_EQ(b.data, "a42-x-9223372036854775808");
    ep_buf_reset(&b);
    ep_buf_put_json_str(&b, "q\"\\\n\x01\xc3\xa9", 7);
    EP_ASSERT_STR_EQ(b.data, "\"q\\\"\\\\\\n\\u0001\xc3\xa9\"");
    ep_buf_reset(&b);
    /* One character to escape at every offset of a 48-byte string (16-byte scan steps). */
    for (size_t at = 0; at < 48; at++) {
        static const char specials[] = {'"', '\\', '\n', 0x1f, 0x7f, (char)0xc3};
        for (size_t k = 0; k < sizeof(specials); k++) {
            char in[48], want[64];
            size_t w = 0;
            memset(in, 'a', sizeof(in));
            in[at] = specials[k];
            want[w++] = '"';
            for (size_t i = 0; i < sizeof(in); i++) {
                if (i != at || ((unsigned char)in[i] >= 0x20 && in[i] != '"' && in[i] != '\\')) {
                    want[w++] = in[i];
                } else if (in[i] == '\n') {
                    want[w++] = '\\';
                    want[w++] = 'n';
                } else if (in[i] == 0x1f) {
                    memcpy(want + w, EP_STRLIT("\\u001f"));
                    w += 6;
                } else {
                    want[w++] = '\\';
                    want[w++] = in[i];
                }
            }
            want[w++] = '"';
            ep_buf_reset(&b);
            ep_buf_put_json_str(&b, in, sizeof(in));
            EP_ASSERT_EQ(b.len, w);
            EP_ASSERT(memcmp(b.data, want, w) == 0);
        }
    }
    ep_buf_reset(&b);
    for (int i = 0; i < 10000; i++) {
        ep_buf_putc(&b, 'z');
    }
    EP_ASSERT_EQ(b.len, 10000);
    p = ep_buf_steal(&b, &len);
    EP_ASSERT_EQ(len, 10000);
    EP_ASSERT(b.data == NULL && b.len == 0);
    ep_free(p);
    ep_buf_close(&b);
}

static void test_rfc3339(void)
{
    int64_t ms;
    char out[40];

    EP_ASSERT_EQ(ep_time_parse_rfc3339("2024-01-15T10:30:00Z", 20, &ms), 0);
    EP_ASSERT_EQ(ms, 1705314600000LL);
    EP_ASSERT_EQ(ep_time_parse_rfc3339("2024-01-15T10:30:00.123+02:00", 29, &ms), 0);
    EP_ASSERT_EQ(ms, 1705314600123LL - 7200000LL);
    EP_ASSERT_EQ(ep_time_parse_rfc3339("1970-01-01T00:00:00Z", 20, &ms), 0);
    EP_ASSERT_EQ(ms, 0);
    EP_ASSERT_EQ(ep_time_parse_rfc3339("2024-13-15T10:30:00Z", 20, &ms), EP_EPARSE);
    EP_ASSERT_EQ(ep_time_parse_rfc3339("2024-01-15 10:30", 16, &ms), EP_EPARSE);
    EP_ASSERT_EQ(ep_time_parse_rfc3339("2024-01-15T10:30:00", 19, &ms), EP_EPARSE);
    EP_ASSERT_EQ(ep_time_parse_rfc3339("2024-01-15T10:30:00Zjunk", 24, &ms), EP_EPARSE);
    ep_time_format_rfc3339(1705314600123LL, out, sizeof(out));
    EP_ASSERT_STR_EQ(out, "2024-01-15T10:30:00.123Z");
}

static void test_clocks_advance(void)
{
    int64_t a = ep_time_mono_ns();
    ep_time_sleep_ms(5);
    EP_ASSERT(ep_time_mono_ns() - a >= 5000000);
    EP_ASSERT(ep_time_now_ms() > 1700000000000LL);
}

static int64_t ts_ms(const struct timespec *ts)
{
    return (int64_t)ts->tv_sec * 1000 + ts->tv_nsec / 1000000;
}

static void test_deadline_ts(void)
{
    static const int64_t offsets[] = {0, 1, 999, 1000, 1500, 61999, -1, -1500};
    struct timespec before, ts, after;

    for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
        clock_gettime(CLOCK_MONOTONIC, &before);
        ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, offsets[i]);
        clock_gettime(CLOCK_MONOTONIC, &after);
        EP_ASSERT(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L);
        EP_ASSERT(ts_ms(&ts) >= ts_ms(&before) + offsets[i]);
        EP_ASSERT(ts_ms(&ts) <= ts_ms(&after) + offsets[i]);
    }
    clock_gettime(CLOCK_REALTIME, &before);
    ep_time_deadline_ts(&ts, CLOCK_REALTIME, 2500);
    clock_gettime(CLOCK_REALTIME, &after);
    EP_ASSERT(ts_ms(&ts) >= ts_ms(&before) + 2500 && ts_ms(&ts) <= ts_ms(&after) + 2500);
}

static void test_uuid_format_and_order(void)
{
    char a[EP_UUID_STR_LEN + 1], b[EP_UUID_STR_LEN + 1];

    ep_id_uuid7(a);
    EP_ASSERT_EQ(strlen(a), 36);
    EP_ASSERT(a[8] == '-' && a[13] == '-' && a[18] == '-' && a[23] == '-');
    EP_ASSERT_EQ(a[14], '7');
    EP_ASSERT(strchr("89ab", a[19]) != NULL);
    ep_time_sleep_ms(2);
    ep_id_uuid7(b);
    EP_ASSERT(strcmp(a, b) < 0); /* time-ordered */
    /* The given time is the first 48 bits: 0x0123456789ab ms. */
    ep_id_uuid7_at(a, INT64_C(0x0123456789ab));
    EP_ASSERT(strncmp(a, EP_STRLIT("01234567-89ab-7")) == 0);
}

static void test_uuid_valid_and_add(void)
{
    char out[EP_UUID_STR_LEN + 1];
    char id[EP_UUID_STR_LEN + 1];

    EP_ASSERT(ep_id_uuid_valid("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", 36));
    EP_ASSERT(ep_id_uuid_valid("0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B", 36));
    EP_ASSERT(!ep_id_uuid_valid("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2", 35));
    EP_ASSERT(!ep_id_uuid_valid("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2bb", 37));
    EP_ASSERT(!ep_id_uuid_valid("0190a1b2xc3d4-7e5f-8a6b-7c8d9e0f1a2b", 36));
    EP_ASSERT(!ep_id_uuid_valid("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2g", 36));
    EP_ASSERT(!ep_id_uuid_valid("", 0));

    ep_id_uuid_add("0190A1B2-C3D4-7E5F-8A6B-7C8D9E0F1A2B", 0, out);
    EP_ASSERT_STR_EQ(out, "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b");
    ep_id_uuid_add("0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b", 5, out);
    EP_ASSERT_STR_EQ(out, "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a30");
    /* The last 48 bits wrap; the rest never changes. */
    ep_id_uuid_add("0190a1b2-c3d4-7e5f-8a6b-ffffffffffff", 2, out);
    EP_ASSERT_STR_EQ(out, "0190a1b2-c3d4-7e5f-8a6b-000000000001");
    ep_id_uuid7(id);
    ep_id_uuid_add(id, 99999, out);
    EP_ASSERT(ep_id_uuid_valid(out, strlen(out)));
    EP_ASSERT(memcmp(out, id, 24) == 0);

    /* The gateway's bases: version 8, last 24 bits zero; numbered ids lead back to them. */
    ep_id_assigned_base(id);
    EP_ASSERT(ep_id_uuid_valid(id, strlen(id)));
    EP_ASSERT(id[14] == '8');
    EP_ASSERT(strchr("89ab", id[19]) != NULL);
    EP_ASSERT(ep_id_is_assigned_base(id, strlen(id)));
    EP_ASSERT_STR_EQ(id + 30, "000000");
    ep_id_uuid_add(id, 0xabcdef, out);
    EP_ASSERT_STR_EQ(out + 30, "abcdef");
    EP_ASSERT(ep_id_is_assigned(out, strlen(out)));
    EP_ASSERT(!ep_id_is_assigned_base(out, strlen(out)));
    ep_id_base_of(out, out);
    EP_ASSERT_STR_EQ(out, id);
    ep_id_uuid7(out);
    EP_ASSERT(!ep_id_is_assigned(out, strlen(out)));
    EP_ASSERT(!ep_id_is_assigned("event_123", 9));
}

EP_TEST_LIST = {
    EP_TEST(test_error_names),
    EP_TEST(test_buf_append_and_json),
    EP_TEST(test_rfc3339),
    EP_TEST(test_clocks_advance),
    EP_TEST(test_deadline_ts),
    EP_TEST(test_uuid_format_and_order),
    EP_TEST(test_uuid_valid_and_add),
    EP_TEST_END,
};
EP_TEST_MAIN()
