/*
 * API key table (src/guard/ep_auth.c): the key file parser and its errors,
 * API_KEYS, constant-time comparison, credentials from the request headers,
 * and the loopback check of the role-to-role routes (src/roles/ep_access.c).
 */
#include "roles/ep_access.h"
#include "guard/ep_auth.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "ep_test.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define K_ALICE "alice-key-0123456789"
#define K_BOB   "bob-key-0123456789abc"
/* sha256("bob-key-0123456789abc"), as `printf %s KEY | sha256sum` prints it */
#define H_BOB "ddefa10d3f53345111922fcf47154c50615b95f13caca8a97bb8b9f9c41a8be6"

static int parse(ep_auth_t *a, const char *text, char *err, size_t errlen)
{
    ep_auth_init(a);
    err[0] = '\0';
    return ep_auth_add_text(a, text, strlen(text), "keys.txt", err, errlen);
}

static void test_sha256_known_value(void)
{
    uint8_t d[32];
    static const uint8_t abc[32] = {0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea,
                                    0x41, 0x41, 0x40, 0xde, 0x5d, 0xae, 0x22, 0x23,
                                    0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c,
                                    0xb4, 0x10, 0xff, 0x61, 0xf2, 0x00, 0x15, 0xad};

    ep_auth_sha256("abc", 3, d); /* FIPS 180-2, appendix B.1 */
    EP_ASSERT(memcmp(d, abc, 32) == 0);
}

static void test_ct_equal(void)
{
    uint8_t a[32], b[32];

    memset(a, 0x5a, sizeof(a));
    memcpy(b, a, sizeof(b));
    EP_ASSERT_EQ(ep_auth_ct_equal(a, b, 32), 1);
    for (int i = 0; i < 32; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b[i] ^= (uint8_t)(1 << bit);
            EP_ASSERT_EQ(ep_auth_ct_equal(a, b, 32), 0);
            b[i] ^= (uint8_t)(1 << bit);
        }
    }
    EP_ASSERT_EQ(ep_auth_ct_equal(a, b, 0), 1);
    EP_ASSERT_EQ(ep_auth_token_equal("same-token-123456", 17, "same-token-123456", 17), 1);
    EP_ASSERT_EQ(ep_auth_token_equal("same-token-123456", 17, "same-token-12345", 16), 0);
    EP_ASSERT_EQ(ep_auth_token_equal("same-token-123456", 17, "same-token-123457", 17), 0);
    EP_ASSERT_EQ(ep_auth_token_equal("", 0, "", 0), 1);
}

static void test_file_plain_and_hashed(void)
{
    ep_auth_t a;
    char err[256];

    EP_ASSERT_EQ(parse(&a,
                       "# keys of the test\n"
                       "\n"
                       "alice " K_ALICE " rate=10 burst=20   # trailing comment\r\n"
                       "  bob\tsha256:" H_BOB "\n"
                       "carol SHA256:" H_BOB "x\n",
                       err, sizeof(err)),
                 EP_ECONFIG);
    /* The third line is wrong (65 hex digits): the error names file, line and why. */
    EP_ASSERT_STR_EQ(err, "API_KEYS_FILE: keys.txt:5: a sha256: key needs exactly 64 hex "
                          "digits, not 65");
    ep_auth_close(&a);

    EP_ASSERT_EQ(parse(&a,
                       "# keys of the test\n"
                       "alice " K_ALICE " rate=10 burst=20   # trailing comment\r\n"
                       "  bob\tsha256:" H_BOB "\n",
                       err, sizeof(err)),
                 0);
    EP_ASSERT_EQ(a.n, 2);
    EP_ASSERT_STR_EQ(a.keys[0].name, "alice");
    EP_ASSERT_EQ(a.keys[0].rate, 10);
    EP_ASSERT_EQ(a.keys[0].burst, 20);
    EP_ASSERT_STR_EQ(a.keys[1].name, "bob");
    EP_ASSERT_EQ(a.keys[1].rate, -1);
    EP_ASSERT_EQ(a.keys[1].burst, -1);
    EP_ASSERT_EQ(ep_auth_find(&a, K_ALICE, strlen(K_ALICE)), 0);
    EP_ASSERT_EQ(ep_auth_find(&a, K_BOB, strlen(K_BOB)), 1);  /* by the hash of what is sent */
    EP_ASSERT_EQ(ep_auth_find(&a, H_BOB, strlen(H_BOB)), -1); /* the hash is not the key */
    EP_ASSERT_EQ(ep_auth_find(&a, K_ALICE, strlen(K_ALICE) - 1), -1);
    EP_ASSERT_EQ(ep_auth_find(&a, "", 0), -1);
    ep_auth_close(&a);
}

static void expect_error(const char *text, const char *want)
{
    ep_auth_t a;
    char err[256];

    EP_ASSERT_EQ(parse(&a, text, err, sizeof(err)), EP_ECONFIG);
    if (strcmp(err, want) != 0) {
        fprintf(stderr, "for %s\n got  %s\n want %s\n", text, err, want);
    }
    EP_ASSERT_STR_EQ(err, want);
    ep_auth_close(&a);
}

static void test_file_errors(void)
{
    expect_error("alice\n", "API_KEYS_FILE: keys.txt:1: a name and a key are needed (expected: "
                            "name key [rate=N] [burst=N])");
    expect_error("# c\nal!ce " K_ALICE "\n",
                 "API_KEYS_FILE: keys.txt:2: the name must be 1 to 63 letters, digits, '_', '.' "
                 "or '-'");
    expect_error("alice short\n",
                 "API_KEYS_FILE: keys.txt:1: the key is 5 characters long; at least 16 are needed");
    expect_error("alice " K_ALICE "\"x\n",
                 "API_KEYS_FILE: keys.txt:1: the key holds a character other than letters, digits "
                 "and - . _ ~ + / = (at position 21)");
    expect_error("alice " K_ALICE " rate=x\n",
                 "API_KEYS_FILE: keys.txt:1: rate must be a whole number from 0 to 1000000000");
    expect_error("alice " K_ALICE " burst=0\n",
                 "API_KEYS_FILE: keys.txt:1: burst must be a whole number from 1 to 1000000000");
    expect_error("alice " K_ALICE " rate=2000000000\n",
                 "API_KEYS_FILE: keys.txt:1: rate must be a whole number from 0 to 1000000000");
    expect_error("alice " K_ALICE " rate=1 rate=2\n",
                 "API_KEYS_FILE: keys.txt:1: rate is given twice");
    expect_error(
        "alice " K_ALICE " speed=3\n",
        "API_KEYS_FILE: keys.txt:1: unknown option 'speed=3' (expected rate=N or burst=N)");
    expect_error("alice " K_ALICE " rate=\n", "API_KEYS_FILE: keys.txt:1: rate has no value");
    expect_error("alice " K_ALICE "\nalice " K_BOB "\n",
                 "API_KEYS_FILE: keys.txt:2: the name 'alice' is used twice");
    expect_error("alice " K_ALICE "\nbob " K_ALICE "\n",
                 "API_KEYS_FILE: keys.txt:2: the same key as 'alice'");
    /* A plain key and the hash of the same key are the same key. */
    expect_error("bob " K_BOB "\nbob2 sha256:" H_BOB "\n",
                 "API_KEYS_FILE: keys.txt:2: the same key as 'bob'");
    expect_error("bob sha256:" H_BOB
                 "\n bob3 sha256:zzefa10d3f53345111922fcf47154c50615b95f13caca8a97bb8b9f9c41a8be6",
                 "API_KEYS_FILE: keys.txt:2: a sha256: key holds a character that is not a hex "
                 "digit");
    expect_error("a b c d e f g h i\n", "API_KEYS_FILE: keys.txt:1: too many fields (expected: "
                                        "name key [rate=N] [burst=N])");
}

static void test_file_nul_and_empty(void)
{
    ep_auth_t a;
    char err[256];
    const char text[] = "alice " K_ALICE "\0\n";
    char path[] = "/tmp/ep_test_auth_XXXXXX";
    int fd;

    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_text(&a, text, sizeof(text) - 1, "k", err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "API_KEYS_FILE: k: holds a NUL byte (not a text file)");
    ep_auth_close(&a);

    /* A file with only comments holds no key: that is an error, not "no keys". */
    fd = mkstemp(path);
    EP_ASSERT(fd >= 0);
    EP_ASSERT_EQ(write(fd, "# nothing\n\n", 11), 11);
    close(fd);
    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_file(&a, path, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "holds no key") != NULL);
    ep_auth_close(&a);
    unlink(path);
    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_file(&a, path, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "API_KEYS_FILE: cannot open") == err);
    ep_auth_close(&a);
}

static void test_csv(void)
{
    ep_auth_t a;
    char err[256];

    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_csv(&a, " " K_ALICE " , " K_BOB, err, sizeof(err)), 0);
    EP_ASSERT_EQ(a.n, 2);
    EP_ASSERT_STR_EQ(a.keys[0].name, "key1");
    EP_ASSERT_STR_EQ(a.keys[1].name, "key2");
    EP_ASSERT_EQ(ep_auth_find(&a, K_BOB, strlen(K_BOB)), 1);
    ep_auth_close(&a);

    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_csv(&a, K_ALICE ",,", err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "API_KEYS: key 2 is empty");
    ep_auth_close(&a);
    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_csv(&a, K_ALICE ",tiny", err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "API_KEYS: key 2: the key is 4 characters long; at least 16 are needed");
    ep_auth_close(&a);
}

/* Thousands of keys: each found by its text, none by a near miss; the index grows. */
static void test_many_keys(void)
{
    ep_auth_t a;
    ep_buf_t text = EP_BUF_INIT;
    char err[256], key[64];

    for (int i = 0; i < 5000; i++) {
        ep_buf_printf(&text, "k%d key-number-%08d\n", i, i);
    }
    ep_auth_init(&a);
    EP_ASSERT_EQ(ep_auth_add_text(&a, text.data, text.len, "many", err, sizeof(err)), 0);
    EP_ASSERT_EQ(a.n, 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "key-number-%08d", i);
        EP_ASSERT_EQ(ep_auth_find(&a, key, strlen(key)), i);
        snprintf(key, sizeof(key), "key-number-%08d", i + 5000);
        EP_ASSERT_EQ(ep_auth_find(&a, key, strlen(key)), -1);
    }
    ep_auth_close(&a);
    ep_buf_close(&text);
}

static void test_credential(void)
{
    const char *k;
    size_t n;

    EP_ASSERT_EQ(ep_auth_credential(NULL, NULL, &k, &n), 0);
    EP_ASSERT_EQ(ep_auth_credential(NULL, "Bearer  abc ", &k, &n), 1);
    EP_ASSERT_EQ(n, 3);
    EP_ASSERT(memcmp(k, "abc", 3) == 0);
    EP_ASSERT_EQ(ep_auth_credential(NULL, "bearer abc", &k, &n), 1);
    EP_ASSERT_EQ(ep_auth_credential(NULL, "Basic YWJj", &k, &n), 0);
    EP_ASSERT_EQ(ep_auth_credential(NULL, "Bearer", &k, &n), 0);
    EP_ASSERT_EQ(ep_auth_credential(NULL, "Bearerabc", &k, &n), 0);
    /* X-API-Key wins over Authorization (a hop sends the client's key there). */
    EP_ASSERT_EQ(ep_auth_credential(" xyz ", "Bearer abc", &k, &n), 1);
    EP_ASSERT_EQ(n, 3);
    EP_ASSERT(memcmp(k, "xyz", 3) == 0);
    EP_ASSERT_EQ(ep_auth_credential("", "Bearer abc", &k, &n), 1);
    EP_ASSERT(memcmp(k, "abc", 3) == 0);
}

static void test_loopback(void)
{
    uint8_t a[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};

    EP_ASSERT_EQ(ep_access_is_loopback(a), 1);
    a[15] = 9; /* 127.0.0.9 */
    EP_ASSERT_EQ(ep_access_is_loopback(a), 1);
    a[12] = 192, a[13] = 0, a[14] = 2, a[15] = 2; /* 192.0.2.2 */
    EP_ASSERT_EQ(ep_access_is_loopback(a), 0);
    a[12] = 10; /* 10.0.2.2 */
    EP_ASSERT_EQ(ep_access_is_loopback(a), 0);
    memset(a, 0, 16);
    a[15] = 1; /* ::1 */
    EP_ASSERT_EQ(ep_access_is_loopback(a), 1);
    a[0] = 0xfd; /* fd00::1 */
    EP_ASSERT_EQ(ep_access_is_loopback(a), 0);
    memset(a, 0, 16);
    a[12] = 127; /* ::127.0.0.0 (not mapped) is not loopback */
    EP_ASSERT_EQ(ep_access_is_loopback(a), 0);
}

static void test_access_config_errors(void)
{
    ep_config_t cfg;
    ep_access_t *ac = NULL;
    char err[256];

    ep_config_defaults(&cfg);
    snprintf(cfg.internal_token, sizeof(cfg.internal_token), "short");
    EP_ASSERT_EQ(ep_access_create(&cfg, &ac, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "INTERNAL_TOKEN: 5 characters; at least 16 are needed");
    ep_config_defaults(&cfg);
    cfg.api_keys_protect_reads = 1;
    EP_ASSERT_EQ(ep_access_create(&cfg, &ac, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "API_KEYS_PROTECT_READS:") == err);
    ep_config_defaults(&cfg);
    cfg.rate_limit_burst = 5;
    EP_ASSERT_EQ(ep_access_create(&cfg, &ac, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "RATE_LIMIT_BURST:") == err);
    ep_config_defaults(&cfg);
    snprintf(cfg.api_keys, sizeof(cfg.api_keys), "%s", K_ALICE);
    snprintf(cfg.internal_token, sizeof(cfg.internal_token), "internal-token-0123456789");
    EP_ASSERT_EQ(ep_access_create(&cfg, &ac, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_access_has_keys(ac), 1);
    ep_access_destroy(ac);
}

EP_TEST_LIST = {EP_TEST(test_sha256_known_value),
                EP_TEST(test_ct_equal),
                EP_TEST(test_file_plain_and_hashed),
                EP_TEST(test_file_errors),
                EP_TEST(test_file_nul_and_empty),
                EP_TEST(test_csv),
                EP_TEST(test_many_keys),
                EP_TEST(test_credential),
                EP_TEST(test_loopback),
                EP_TEST(test_access_config_errors),
                EP_TEST_END};

EP_TEST_MAIN()
