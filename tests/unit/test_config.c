/* Unit tests of ep_config: defaults, environment, flags, validation messages. */
#include "config/ep_config.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "ep_test.h"

#include <stddef.h>

/*
 * A provider's setting as its provider will see it: its table parsed from c
 * (ep_config_table_parse), the row's field read back. Numbers come as int64.
 */
static const ep_opt_t *provider_row(const char *prov, const char *name, const ep_opt_table_t **t)
{
    const ep_queue_provider_t *p = ep_queue_provider_find(prov);
    const ep_opt_t *o;

    EP_ASSERT(p != NULL && p->options != NULL);
    *t = p->options;
    o = ep_opt_find_env((*t)->opts, (*t)->n_opts, name);
    if (o == NULL) {
        EP__FAIL("%s has no setting %s", prov, name);
    }
    return o;
}

static void *provider_opts(const ep_config_t *c, const ep_opt_table_t *t)
{
    void *opts = ep_malloc(t->size);
    char err[256] = "";

    if (ep_config_table_parse(c, t, opts, err, sizeof(err)) != 0) {
        EP__FAIL("%s's settings refused: %s", t->name, err);
    }
    return opts;
}

static const char *pstr(const ep_config_t *c, const char *prov, const char *name)
{
    static char out[512];
    const ep_opt_table_t *t;
    const ep_opt_t *o = provider_row(prov, name, &t);
    char *opts = provider_opts(c, t);

    snprintf(out, sizeof(out), "%s", opts + o->off);
    ep_free(opts);
    return out;
}

static int64_t pnum(const ep_config_t *c, const char *prov, const char *name)
{
    const ep_opt_table_t *t;
    const ep_opt_t *o = provider_row(prov, name, &t);
    char *opts = provider_opts(c, t);
    int64_t v = o->type == EP_OPT_I64 || o->type == EP_OPT_SIZE ||
                        (o->type == EP_OPT_DURATION_S && o->cap == sizeof(int64_t))
                    ? *(int64_t *)(opts + o->off)
                    : *(int *)(opts + o->off);

    ep_free(opts);
    return v;
}

static void test_defaults_are_the_seeds(void)
{
    ep_config_t c;

    ep_config_defaults(&c);
    EP_ASSERT_EQ(c.api_port, 8080);
    EP_ASSERT_EQ(c.ingest_port, 8081);
    EP_ASSERT_EQ(c.processor_port, 8082);
    EP_ASSERT_EQ(c.workers, 4);
    EP_ASSERT_EQ(pnum(&c, "memory", "QUEUE_SIZE"), 1000);
    EP_ASSERT_STR_EQ(c.queue_type, "memory");
    EP_ASSERT_STR_EQ(c.processor_url, "http://localhost:8082");
    EP_ASSERT_STR_EQ(c.ingest_url, "http://localhost:8081");
    EP_ASSERT_STR_EQ(pstr(&c, "nats", "NATS_URL"), "nats://localhost:4222");
    EP_ASSERT_STR_EQ(pstr(&c, "kafka", "KAFKA_TOPIC"), "diplom-messages");
    EP_ASSERT_STR_EQ(pstr(&c, "kafka", "KAFKA_CONSUMER_GROUP"), "processor-group");
    EP_ASSERT_EQ(pnum(&c, "kafka", "KAFKA_PARTITIONS"), 6);
    EP_ASSERT_STR_EQ(pstr(&c, "disk", "QUEUE_DIR"), "./eventpipe-data/queue");
    EP_ASSERT_STR_EQ(pstr(&c, "composite", "COMPOSITE_PROVIDERS"), "nats,kafka");
    EP_ASSERT_EQ(pnum(&c, "composite", "COMPOSITE_STRATEGY"), 0); /* fail-fast */
    EP_ASSERT_EQ(c.metrics_enabled, 1);
    EP_ASSERT_EQ(c.log_level, EP_LOG_INFO);
    EP_ASSERT_EQ(c.log_format, EP_LOG_FORMAT_TEXT);
    EP_ASSERT_EQ(c.analytics_push, EP_ANALYTICS_PUSH_AUTO);
    EP_ASSERT_EQ(c.api_keys_protect_reads, 0);
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
    EP_ASSERT_EQ(ep_queue_config_load(&c, 6, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.workers, 8);
    EP_ASSERT_EQ(pnum(&c, "memory", "QUEUE_SIZE"), 2000);
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
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
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
        {"STATS_INTERVAL", "2", "2000ms", F(stats_interval_ms), 2000},
        {"ANALYTICS_PUSH_INTERVAL_MS", "200", "200ms", F(analytics_push_interval_ms), 200},
#undef F
    };
    static const struct {
        const char *prov, *env, *bare, *go;
        int64_t want;
    } prov_rows[] = {
        {"disk", "QUEUE_RETENTION_AGE", "86400", "24h", 86400},
        {"kafka", "KAFKA_LINGER_MS", "5", "5ms", 5},
    };
    char *argv[] = {"run", NULL};

    for (size_t i = 0; i < sizeof(prov_rows) / sizeof(prov_rows[0]); i++) {
        const char *forms[2] = {prov_rows[i].bare, prov_rows[i].go};
        for (int k = 0; k < 2; k++) {
            ep_config_t c;
            char err[256] = "";

            setenv(prov_rows[i].env, forms[k], 1);
            if (ep_queue_config_load(&c, 1, argv, err, sizeof(err)) != 0) {
                EP__FAIL("%s=%s refused: %s", prov_rows[i].env, forms[k], err);
            }
            EP_ASSERT_EQ(pnum(&c, prov_rows[i].prov, prov_rows[i].env), prov_rows[i].want);
            unsetenv(prov_rows[i].env);
        }
    }
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *forms[2] = {rows[i].bare, rows[i].go};
        for (int k = 0; k < 2; k++) {
            ep_config_t c;
            char err[256] = "";
            int64_t got;

            setenv(rows[i].env, forms[k], 1);
            if (ep_queue_config_load(&c, 1, argv, err, sizeof(err)) != 0) {
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

        EP_ASSERT_EQ(ep_queue_config_load(&c, 5, argv, err, sizeof(err)), 0);
        EP_ASSERT_EQ(c.idle_timeout_ms, 250); /* stored finer than the historic seconds */
        EP_ASSERT_STR_EQ(pstr(&c, "disk", "QUEUE_FSYNC"), "50ms");
    }
}

static void test_server_address_and_aliases(void)
{
    ep_config_t c;
    char err[256] = "";
    char *argv[] = {"run", NULL};

    setenv("SERVER_ADDRESS", ":9123", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.api_port, 9123);
    EP_ASSERT_STR_EQ(c.api_bind_addr, "0.0.0.0");
    EP_ASSERT_STR_EQ(c.bind_addr, "0.0.0.0");
    setenv("SERVER_ADDRESS", "localhost:7000", 1);
    setenv("BIND_ADDR", "127.0.0.2", 1); /* the other roles' address: no conflict */
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.api_port, 7000);
    EP_ASSERT_STR_EQ(c.api_bind_addr, "127.0.0.1");
    EP_ASSERT_STR_EQ(c.bind_addr, "127.0.0.2");
    unsetenv("BIND_ADDR");
    setenv("API_PORT", "8000", 1); /* two ports for one listener */
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "SERVER_ADDRESS") != NULL && strstr(err, "API_PORT") != NULL);
    unsetenv("API_PORT");
    unsetenv("SERVER_ADDRESS");
    expect_env_error("SERVER_ADDRESS", "8080");
    expect_env_error("SERVER_ADDRESS", "example.com:80");
    expect_env_error("SERVER_ADDRESS", "127.0.0.1:65536");
    expect_env_error("SERVER_ADDRESS", "127.0.0.1:");
    /* Without SERVER_ADDRESS the gateway keeps BIND_ADDR:API_PORT. */
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.api_bind_addr, "");
    EP_ASSERT_EQ(c.api_port, 8080);

    /* SERVER_SHUTDOWN_TIMEOUT is SHUTDOWN_TIMEOUT: equal is fine, different is an error. */
    EP_ASSERT_EQ(c.shutdown_timeout_ms, 10000);
    setenv("SHUTDOWN_TIMEOUT", "30", 1);
    setenv("SERVER_SHUTDOWN_TIMEOUT", "30s", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.shutdown_timeout_ms, 30000);
    setenv("SERVER_SHUTDOWN_TIMEOUT", "5s", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "SERVER_SHUTDOWN_TIMEOUT") != NULL);
    unsetenv("SHUTDOWN_TIMEOUT");
    unsetenv("SERVER_SHUTDOWN_TIMEOUT");

    /* METRICS_PORT off by default; APP_* defaults. */
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.metrics_port, 0);
    EP_ASSERT_STR_EQ(c.app_name, "eventpipe");
    EP_ASSERT_STR_EQ(c.app_version, EP_VERSION);
    EP_ASSERT_STR_EQ(c.app_env, "development");
    setenv("METRICS_PORT", "9100", 1);
    setenv("METRICS_ENABLED", "false", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
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

    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, unknown, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "--bogus") != NULL);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 2, missing, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "PROCESSOR_WORKERS") != NULL);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 2, positional, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 2, help, err, sizeof(err)), EP_ENOENT);
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

    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, only_cert, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "TLS_KEY_FILE: must be set together with TLS_CERT_FILE") != NULL);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, only_key, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "TLS_CERT_FILE: must be set together with TLS_KEY_FILE") != NULL);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, client_ca, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_CLIENT_CA_FILE: ", 20) == 0);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, both, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.processor_url, "http://localhost:8082"); /* no TLS: unchanged */
    EP_ASSERT_EQ(ep_queue_config_load(&c, 7, both, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.tls_cert_file, "/c.pem");
    EP_ASSERT_STR_EQ(c.ingest_url, "https://ingest:9443"); /* given: kept */
    EP_ASSERT_STR_EQ(c.processor_url, "https://localhost:8082");
    EP_ASSERT_STR_EQ(c.analytics_url, "https://localhost:8083");
}

/* Typed once: booleans and choices are numbers in ep_config_t, whatever the case given. */
static void test_typed_choices(void)
{
    ep_config_t c;
    char err[256] = "";
    char *argv[] = {"run", "--log-level", "WARN", "--analytics-push", "off", NULL};

    setenv("METRICS_ENABLED", "FALSE", 1);
    setenv("LOG_FORMAT", "json", 1);
    setenv("API_KEYS_PROTECT_READS", "true", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 5, argv, err, sizeof(err)), 0);
    EP_ASSERT_EQ(c.metrics_enabled, 0);
    EP_ASSERT_EQ(c.log_format, EP_LOG_FORMAT_JSON);
    EP_ASSERT_EQ(c.log_level, EP_LOG_WARN);
    EP_ASSERT_EQ(c.analytics_push, EP_ANALYTICS_PUSH_OFF);
    EP_ASSERT_EQ(c.api_keys_protect_reads, 1);
    unsetenv("METRICS_ENABLED");
    unsetenv("LOG_FORMAT");
    unsetenv("API_KEYS_PROTECT_READS");
    expect_env_error("METRICS_ENABLED", "yes");
    expect_env_error("ANALYTICS_PUSH", "sometimes");
}

/* --help lists every provider and, under its name, the rows of its own table. */
static void test_help_lists_provider_tables(void)
{
    static const char *const want[] = {
        "Queue providers (QUEUE_TYPE): memory, disk, nats, kafka, composite\n",
        "Options of the memory queue (QUEUE_TYPE=memory):\n  --queue-size ",
        "Options of the disk queue (QUEUE_TYPE=disk):\n  --queue-dir ",
        "QUEUE_FSYNC",
        "Options of the nats queue (QUEUE_TYPE=nats):\n  --nats-url ",
        "NATS_DLQ_SUBJECT",
        "Options of the kafka queue (QUEUE_TYPE=kafka):\n  --kafka-brokers ",
        "KAFKA_PARTITIONS",
        "Options of the composite queue (QUEUE_TYPE=composite):\n  --composite-providers ",
        "COMPOSITE_STRATEGY",
    };
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);

    ep_queue_config_usage(f);
    fclose(f);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        if (strstr(text, want[i]) == NULL) {
            EP__FAIL("--help lacks \"%s\"", want[i]);
        }
    }
    /* The forwarder is the roles' own, not a QUEUE_TYPE. */
    EP_ASSERT(strstr(text, "forward") == NULL);
    free(text);
}

/* A provider's bounds and checks hold whether the value comes from the environment or a flag. */
static void test_provider_bounds(void)
{
    ep_config_t c;
    char err[256] = "";
    char *big[] = {"run", "--kafka-partitions", "100001", NULL};
    char *size0[] = {"run", "--queue-size=0", NULL};
    char *good[] = {"run", "--kafka-partitions", "12", "--queue-size", "5", NULL};

    expect_env_error("KAFKA_PARTITIONS", "0");
    expect_env_error("KAFKA_COMPRESSION", "brotli");
    expect_env_error("NATS_URL", "nope");
    expect_env_error("QUEUE_SEGMENT_SIZE", "1k");
    expect_env_error("COMPOSITE_STRATEGY", "sometimes");
    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, big, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "KAFKA_PARTITIONS: 100001 is out of range [1, 100000]");
    EP_ASSERT_EQ(ep_queue_config_load(&c, 2, size0, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "QUEUE_SIZE: 0 is out of range [1, 100000000]");
    EP_ASSERT_EQ(ep_queue_config_load(&c, 5, good, err, sizeof(err)), 0);
    EP_ASSERT_EQ(pnum(&c, "kafka", "KAFKA_PARTITIONS"), 12);
    EP_ASSERT_EQ(pnum(&c, "memory", "QUEUE_SIZE"), 5);

    /* Seed 003's KAFKA_BROKER_LIST: read when KAFKA_BROKERS is unset; KAFKA_BROKERS wins. */
    setenv("KAFKA_BROKER_LIST", "k1:9092,k2:9092", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, good, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(pstr(&c, "kafka", "KAFKA_BROKERS"), "k1:9092,k2:9092");
    setenv("KAFKA_BROKERS", "k3:9092", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, good, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(pstr(&c, "kafka", "KAFKA_BROKERS"), "k3:9092");
    unsetenv("KAFKA_BROKER_LIST");
    unsetenv("KAFKA_BROKERS");

    /* ep_config_put replaces: the last value given is the one parsed. */
    ep_config_defaults(&c);
    EP_ASSERT_EQ(ep_config_put(&c, "QUEUE_SIZE", "0"), 0);
    EP_ASSERT_EQ(ep_config_put(&c, "QUEUE_SIZE", "7"), 0);
    EP_ASSERT_EQ(pnum(&c, "memory", "QUEUE_SIZE"), 7);
}

/* A provider registered at run time: chosen by QUEUE_TYPE, its table read, listed, enforced. */
typedef struct {
    int width;
} echo_opts_t;

static int echo_seen_width;

static const ep_opt_t echo_rows[] = {
    {EP_OPT_INT, "ECHO_WIDTH", "echo-width", "3", offsetof(echo_opts_t, width), 0, 1, 10, NULL,
     "how wide the echo is"},
};

static const ep_opt_table_t echo_table = {
    .name = "echo",
    .opts = echo_rows,
    .n_opts = 1,
    .size = sizeof(echo_opts_t),
};

static int echo_init(const ep_config_t *cfg, const void *opts, void **ctx, char *err, size_t errlen)
{
    echo_seen_width = ((const echo_opts_t *)opts)->width;
    *ctx = ep_malloc(1);
    return 0;
}

static int echo_own_consumer(void *opts, const char *name, char *err, size_t errlen)
{
    ((echo_opts_t *)opts)->width += (int)strlen(name); /* "analytics": +9 */
    return 0;
}

static const ep_queue_provider_t echo_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "echo",
    .init = echo_init,
    .destroy = ep_free,
    .options = &echo_table,
    .own_consumer = echo_own_consumer,
};

static void test_runtime_provider_can_be_chosen(void)
{
    ep_config_t c;
    ep_queue_t *q = NULL;
    char err[256] = "";
    char *argv[] = {"run", "--echo-width", "7", NULL};
    char *bad[] = {"run", "--echo-width", "11", NULL};
    char *text = NULL;
    size_t len = 0;
    FILE *f;

    setenv("QUEUE_TYPE", "echo", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "QUEUE_TYPE: 'echo' is not one of memory|disk|nats|kafka|composite");
    /* A provider built for the version-1 struct (init without opts) is refused. */
    {
        ep_queue_provider_t v1 = echo_provider;

        v1.api_version = 1;
        EP_ASSERT_EQ(ep_queue_provider_register(&v1), EP_EINVAL);
        EP_ASSERT(ep_queue_provider_find("echo") == NULL);
    }
    EP_ASSERT_EQ(ep_queue_provider_register(&echo_provider), 0);
    EP_ASSERT_EQ(ep_queue_provider_register(&echo_provider), EP_EINVAL); /* name taken */
    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, argv, err, sizeof(err)), 0);
    EP_ASSERT_STR_EQ(c.queue_type, "echo");
    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, bad, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err, "ECHO_WIDTH: 11 is out of range [1, 10]");
    setenv("QUEUE_TYPE", "redis", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 1, argv, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT_STR_EQ(err,
                     "QUEUE_TYPE: 'redis' is not one of memory|disk|nats|kafka|composite|echo");

    /* init gets the provider's own options, parsed from the config. */
    setenv("QUEUE_TYPE", "ECHO", 1);
    EP_ASSERT_EQ(ep_queue_config_load(&c, 3, argv, err, sizeof(err)), 0);
    unsetenv("QUEUE_TYPE");
    EP_ASSERT_EQ(ep_queue_create(c.queue_type, &c, &q, err, sizeof(err)), 0);
    EP_ASSERT_EQ(echo_seen_width, 7);
    ep_queue_destroy(q);
    /* A consumer of its own: the provider's hook turns the options before init. */
    EP_ASSERT_EQ(ep_queue_open_consumer(&echo_provider, &c, "analytics", &q, err, sizeof(err)), 0);
    EP_ASSERT_EQ(echo_seen_width, 16);
    ep_queue_destroy(q);
    /* A provider with one consumer only says so. */
    EP_ASSERT_EQ(ep_queue_open_consumer(ep_queue_provider_find("memory"), &c, "analytics", &q, err,
                                        sizeof(err)),
                 EP_ENOTSUP);
    EP_ASSERT(q == NULL && strstr(err, "memory") != NULL);

    f = open_memstream(&text, &len);
    ep_queue_config_usage(f);
    fclose(f);
    EP_ASSERT(strstr(text, "Queue providers (QUEUE_TYPE): memory, disk, nats, kafka, composite, "
                           "echo\n") != NULL);
    EP_ASSERT(strstr(text, "Options of the echo queue (QUEUE_TYPE=echo):\n  --echo-width ") !=
              NULL);
    free(text);
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
    EP_TEST(test_typed_choices),
    EP_TEST(test_help_lists_provider_tables),
    EP_TEST(test_provider_bounds),
    EP_TEST(test_runtime_provider_can_be_chosen),
    EP_TEST_END,
};
EP_TEST_MAIN()
