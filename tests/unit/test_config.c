/* Unit tests of ep_config: defaults, environment, flags, validation messages. */
#include "config/ep_config.h"
#include "base/ep_error.h"
#include "ep_test.h"

#include <stddef.h>

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

/* Every duration setting: a Go duration, or a bare number in its historic unit. */
static void test_durations_everywhere(void)
{
    static const struct {
        const char *env, *bare, *go;
        size_t off;
        int is64;
        int64_t want; /* in the field's unit, for both forms */
    } rows[] = {
#define F(f) offsetof(ep_config_t, f), sizeof(((ep_config_t *)0)->f) == 8
        {"HTTP_IDLE_TIMEOUT", "7", "7s", F(idle_timeout_ms), 7000},
        {"HTTP_HEADER_TIMEOUT", "3", "3000ms", F(header_timeout_ms), 3000},
        {"HTTP_BODY_TIMEOUT", "15", "0.25m", F(body_timeout_ms), 15000},
        {"HTTP_SEND_TIMEOUT", "90", "1m30s", F(send_timeout_ms), 90000},
        {"SERVER_READ_TIMEOUT", "15", "15s", F(read_timeout_ms), 15000},
        {"SERVER_WRITE_TIMEOUT", "2", "2s", F(write_timeout_ms), 2000},
        {"UPSTREAM_TIMEOUT_MS", "2500", "2.5s", F(upstream_timeout_ms), 2500},
        {"STATUS_TIMEOUT_MS", "750", "750ms", F(status_timeout_ms), 750},
        {"RETRY_AFTER", "5", "5s", F(retry_after_s), 5},
        {"SHUTDOWN_TIMEOUT", "12", "12s", F(shutdown_timeout_ms), 12000},
        {"SERVER_SHUTDOWN_TIMEOUT", "30", "30s", F(shutdown_timeout_ms), 30000},
        {"DEDUP_WINDOW", "600", "10m", F(dedup_window_s), 600},
        {"QUEUE_RETENTION_AGE", "86400", "24h", F(queue_retention_age_s), 86400},
        {"STATS_INTERVAL", "2", "2000ms", F(stats_interval_ms), 2000},
        {"ANALYTICS_PUSH_INTERVAL_MS", "200", "200ms", F(analytics_push_interval_ms), 200},
        {"KAFKA_LINGER_MS", "5", "5ms", F(kafka_linger_ms), 5},
#undef F
    };
    char *argv[] = {"run", NULL};

    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *forms[2] = {rows[i].bare, rows[i].go};
        for (int k = 0; k < 2; k++) {
            ep_config_t c;
            char err[256] = "";
            int64_t got;

            setenv(rows[i].env, forms[k], 1);
            if (ep_config_load(&c, 1, argv, err, sizeof(err)) != 0) {
                EP__FAIL("%s=%s refused: %s", rows[i].env, forms[k], err);
            }
            got = rows[i].is64 ? *(int64_t *)((char *)&c + rows[i].off)
                               : *(int *)((char *)&c + rows[i].off);
            if (got != rows[i].want) {
                EP__FAIL("%s=%s gave %lld, want %lld", rows[i].env, forms[k], (long long)got,
                         (long long)rows[i].want);
            }
            unsetenv(rows[i].env);
        }
    }
}

static void test_duration_refusals(void)
{
    expect_env_error("HTTP_IDLE_TIMEOUT", "ten");
    expect_env_error("HTTP_IDLE_TIMEOUT", "-5s");
    expect_env_error("HTTP_IDLE_TIMEOUT", "5d");
    expect_env_error("HTTP_IDLE_TIMEOUT", "0");    /* below its minimum */
    expect_env_error("HTTP_HEADER_TIMEOUT", "2h"); /* above its maximum (1h) */
    expect_env_error("UPSTREAM_TIMEOUT_MS", "99999999999h");
    expect_env_error("UPSTREAM_TIMEOUT_MS", "1500us"); /* finer than whole ms */
    expect_env_error("RETRY_AFTER", "500ms");          /* Retry-After is whole seconds */
    expect_env_error("DEDUP_WINDOW", "1.5s");
    expect_env_error("QUEUE_RETENTION_AGE", "10ms");
    expect_env_error("SERVER_READ_TIMEOUT", "1m30");
    expect_env_error("QUEUE_FSYNC", "sometimes");
    expect_env_error("QUEUE_FSYNC", "10us");
    expect_env_error("QUEUE_FSYNC", "2h");
    {
        ep_config_t c;
        char err[256] = "";
        char *argv[] = {"run", "--idle-timeout", "250ms", "--queue-fsync", "50ms", NULL};

        EP_ASSERT_EQ(ep_config_load(&c, 5, argv, err, sizeof(err)), 0);
        EP_ASSERT_EQ(c.idle_timeout_ms, 250); /* stored finer than the historic seconds */
        EP_ASSERT_STR_EQ(c.queue_fsync, "50ms");
    }
}

static void test_server_address_and_aliases(void)
{
    ep_config_t c;
    char err[256] = "";
    char *argv[] = {"run", NULL};

    setenv("SERVER_ADDRESS", ":9123", 1);
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.api_port, 9123);
    EP_ASSERT_STR_EQ(c.api_bind_addr, "0.0.0.0");
    EP_ASSERT_STR_EQ(c.bind_addr, "0.0.0.0");
    setenv("SERVER_ADDRESS", "localhost:7000", 1);
    setenv("BIND_ADDR", "127.0.0.2", 1); /* the other roles' address: no conflict */
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.api_port, 7000);
    EP_ASSERT_STR_EQ(c.api_bind_addr, "127.0.0.1");
    EP_ASSERT_STR_EQ(c.bind_addr, "127.0.0.2");
    unsetenv("BIND_ADDR");
    setenv("API_PORT", "8000", 1); /* two ports for one listener */
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "SERVER_ADDRESS") != NULL && strstr(err, "API_PORT") != NULL);
    unsetenv("API_PORT");
    unsetenv("SERVER_ADDRESS");
    expect_env_error("SERVER_ADDRESS", "8080");
    expect_env_error("SERVER_ADDRESS", "example.com:80");
    expect_env_error("SERVER_ADDRESS", "127.0.0.1:65536");
    expect_env_error("SERVER_ADDRESS", "127.0.0.1:");
    /* Without SERVER_ADDRESS the gateway keeps BIND_ADDR:API_PORT. */
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.api_bind_addr, "");
    EP_ASSERT_EQ(c.api_port, 8080);

    /* SERVER_SHUTDOWN_TIMEOUT is SHUTDOWN_TIMEOUT: equal is fine, different is an error. */
    EP_ASSERT_EQ(c.shutdown_timeout_ms, 10000);
    setenv("SHUTDOWN_TIMEOUT", "30", 1);
    setenv("SERVER_SHUTDOWN_TIMEOUT", "30s", 1);
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.shutdown_timeout_ms, 30000);
    setenv("SERVER_SHUTDOWN_TIMEOUT", "5s", 1);
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "SERVER_SHUTDOWN_TIMEOUT") != NULL);
    unsetenv("SHUTDOWN_TIMEOUT");
    unsetenv("SERVER_SHUTDOWN_TIMEOUT");

    /* METRICS_PORT off by default; APP_* defaults. */
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.metrics_port, 0);
    EP_ASSERT_STR_EQ(c.app_name, "eventpipe");
    EP_ASSERT_STR_EQ(c.app_version, EP_VERSION);
    EP_ASSERT_STR_EQ(c.app_env, "development");
    setenv("METRICS_PORT", "9100", 1);
    setenv("METRICS_ENABLED", "false", 1);
    EP_ASSERT_EQ(ep_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "METRICS_PORT") != NULL);
    unsetenv("METRICS_PORT");
    unsetenv("METRICS_ENABLED");
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
    EP_TEST(test_durations_everywhere),
    EP_TEST(test_duration_refusals),
    EP_TEST(test_server_address_and_aliases),
    EP_TEST(test_tls_settings),
    EP_TEST_END,
};
EP_TEST_MAIN()
