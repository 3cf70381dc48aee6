/* Unit tests of ep_config: defaults, environment, flags, validation messages. */
#include "ep_config.h"
#include "ep_error.h"
#include "ep_test.h"

static void test_defaults_are_the_seeds(void)
{
    ep_config_t c;

    ep_config_defaults(&c);
    EP_ASSERT_EQ(c.api_port, 8080);
    EP_ASSERT_EQ(c.ingest_port, 8081);
    EP_ASSERT_EQ(c.processor_port, 8082);
    EP_ASSERT_EQ(c.workers, 4);
    EP_ASSERT_EQ(c.queue_size, 1000);
    EP_ASSERT_STR_EQ(c.queue_type, "memory");
    EP_ASSERT_STR_EQ(c.processor_url, "http://localhost:8082");
    EP_ASSERT_STR_EQ(c.ingest_url, "http://localhost:8081");
    EP_ASSERT_STR_EQ(c.nats_url, "nats://localhost:4222");
    EP_ASSERT_STR_EQ(c.kafka_topic, "diplom-messages");
    EP_ASSERT_STR_EQ(c.kafka_group, "processor-group");
    EP_ASSERT_STR_EQ(c.composite_providers, "nats,kafka");
    EP_ASSERT_STR_EQ(c.composite_strategy, "fail-fast");
    EP_ASSERT_STR_EQ(c.sink, "none");
    EP_ASSERT_EQ(c.max_body, 1048576);
}

static void test_env_then_flags(void)
{
    ep_config_t c;
    char err[256];
    char *argv[] = {"run", "--workers", "8", "--queue-size=2000", "--max-body", "2m", NULL};

    setenv("PROCESSOR_WORKERS", "6", 1);
    setenv("QUEUE_TYPE", "MEMORY", 1);
    setenv("PROCESSOR_URL", "http://p:9/", 1);
    setenv("API_PORT", "", 1); /* empty = unset */
    EP_ASSERT_EQ(ep_config_load(&c, 6, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.workers, 8);
    EP_ASSERT_EQ(c.queue_size, 2000);
    EP_ASSERT_EQ(c.max_body, 2 * 1024 * 1024);
    EP_ASSERT_STR_EQ(c.queue_type, "memory");
    EP_ASSERT_STR_EQ(c.processor_url, "http://p:9"); /* trailing slash trimmed */
    EP_ASSERT_EQ(c.api_port, 8080);
}

static void expect_env_error(const char *name, const char *value)
{
    ep_config_t c;
    char err[256] = "";
    char *argv[] = {"run", NULL};

    setenv(name, value, 1);
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    if (strstr(err, name) == NULL) {
        EP__FAIL("message for %s=%s does not name it: %s", name, value, err);
    }
    unsetenv(name);
}

static void test_invalid_values_name_the_variable(void)
{
    expect_env_error("PROCESSOR_WORKERS", "four");
    expect_env_error("PROCESSOR_WORKERS", "0");
    expect_env_error("QUEUE_SIZE", "-5");
    expect_env_error("QUEUE_SIZE", "10x");
    expect_env_error("API_PORT", "65536");
    expect_env_error("QUEUE_TYPE", "redis");
    expect_env_error("INGEST_URL", "nope");
    expect_env_error("LOG_FORMAT", "xml");
    expect_env_error("HTTP_MAX_BODY", "1q");
    expect_env_error("HTTP_THREADS", "0");
}

static void test_flag_errors_and_help(void)
{
    ep_config_t c;
    char err[256];
    char *unknown[] = {"run", "--bogus", "1", NULL};
    char *missing[] = {"run", "--workers", NULL};
    char *positional[] = {"run", "extra", NULL};
    char *help[] = {"run", "--help", NULL};

    EP_ASSERT_EQ(ep_config_load(&c, 3, unknown, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "--bogus") != NULL);
    EP_ASSERT_EQ(ep_config_load(&c, 2, missing, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "PROCESSOR_WORKERS") != NULL);
    EP_ASSERT_EQ(ep_config_load(&c, 2, positional, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_EQ(ep_config_load(&c, 2, help, err, sizeof(err)), EP_ENOENT);
}

/* TLS (issue 15): cert and key together; mutual TLS needs both; default URLs go https. */
static void test_tls_settings(void)
{
    ep_config_t c;
    char err[256];
    char *only_cert[] = {"run", "--tls-cert", "/c.pem", NULL};
    char *only_key[] = {"run", "--tls-key", "/k.pem", NULL};
    char *client_ca[] = {"run", "--tls-client-ca", "/ca.pem", NULL};
    char *both[] = {"run",          "--tls-cert",          "/c.pem", "--tls-key", "/k.pem",
                    "--ingest-url", "https://ingest:9443", NULL};

    EP_ASSERT_EQ(ep_config_load(&c, 3, only_cert, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "TLS_KEY_FILE: must be set together with TLS_CERT_FILE") != NULL);
    EP_ASSERT_EQ(ep_config_load(&c, 3, only_key, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "TLS_CERT_FILE: must be set together with TLS_KEY_FILE") != NULL);
    EP_ASSERT_EQ(ep_config_load(&c, 3, client_ca, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_CLIENT_CA_FILE: ", 20) == 0);
    EP_ASSERT_EQ(ep_config_load(&c, 1, both, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.processor_url, "http://localhost:8082"); /* no TLS: unchanged */
    EP_ASSERT_EQ(ep_config_load(&c, 7, both, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.tls_cert_file, "/c.pem");
    EP_ASSERT_STR_EQ(c.ingest_url, "https://ingest:9443"); /* given: kept */
    EP_ASSERT_STR_EQ(c.processor_url, "https://localhost:8082");
    EP_ASSERT_STR_EQ(c.analytics_url, "https://localhost:8083");
}

EP_TEST_LIST = {
    EP_TEST(test_defaults_are_the_seeds),
    EP_TEST(test_env_then_flags),
    EP_TEST(test_invalid_values_name_the_variable),
    EP_TEST(test_flag_errors_and_help),
    EP_TEST(test_tls_settings),
    EP_TEST_END,
};
EP_TEST_MAIN()
