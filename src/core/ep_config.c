/*
 * Configuration table: one row per option, with its environment variable, its
 * flag, its default and its bounds. Environment first, then flags.
 */
#include "ep_config.h"
#include "ep_error.h"
#include "ep_str.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    OPT_INT,
    OPT_I64,
    OPT_STR,
    OPT_PORT,
    OPT_URL,
    OPT_ENUM,
    OPT_SIZE,
    OPT_RATIO /* a double in [0, 1] */
} opt_type_t;

typedef struct {
    opt_type_t type;
    const char *env;
    const char *flag;
    const char *def;
    size_t off;
    size_t cap; /* string capacity */
    int64_t min, max;
    const char *choices; /* OPT_ENUM: "a|b|c" */
    const char *desc;
} opt_t;

#define S(f) offsetof(ep_config_t, f), sizeof(((ep_config_t *)0)->f)
#define N(f) offsetof(ep_config_t, f), 0

static const opt_t options[] = {
    {OPT_STR, "BIND_ADDR", "bind", "0.0.0.0", S(bind_addr), 0, 0, NULL,
     "address every role listens on"},
    {OPT_PORT, "API_PORT", "api-port", "8080", N(api_port), 0, 65535, NULL, "gateway port"},
    {OPT_PORT, "INGEST_PORT", "ingest-port", "8081", N(ingest_port), 0, 65535, NULL, "ingest port"},
    {OPT_PORT, "PROCESSOR_PORT", "processor-port", "8082", N(processor_port), 0, 65535, NULL,
     "processor port"},
    {OPT_PORT, "ANALYTICS_PORT", "analytics-port", "8083", N(analytics_port), 0, 65535, NULL,
     "analytics port"},
    {OPT_URL, "INGEST_URL", "ingest-url", "http://localhost:8081", S(ingest_url), 0, 0, NULL,
     "where the gateway finds ingest"},
    {OPT_URL, "PROCESSOR_URL", "processor-url", "http://localhost:8082", S(processor_url), 0, 0,
     NULL, "where ingest and the gateway find the processor"},
    {OPT_URL, "ANALYTICS_URL", "analytics-url", "http://localhost:8083", S(analytics_url), 0, 0,
     NULL, "where the gateway finds analytics"},
    {OPT_ENUM, "QUEUE_TYPE", "queue", "memory", S(queue_type), 0, 0,
     "memory|disk|nats|kafka|composite", "queue provider"},
    {OPT_I64, "QUEUE_SIZE", "queue-size", "1000", N(queue_size), 1, 100000000, NULL,
     "capacity of the memory queue in events (memory only)"},
    {OPT_URL, "NATS_URL", "nats-url", "nats://localhost:4222", S(nats_url), 0, 0, NULL,
     "NATS server, or a comma-separated list (first reachable, in order)"},
    {OPT_STR, "KAFKA_BROKERS", "kafka-brokers", "localhost:9092", S(kafka_brokers), 0, 0, NULL,
     "Kafka bootstrap servers, comma-separated"},
    {OPT_STR, "KAFKA_TOPIC", "kafka-topic", "diplom-messages", S(kafka_topic), 0, 0, NULL,
     "Kafka topic"},
    {OPT_STR, "KAFKA_CONSUMER_GROUP", "kafka-group", "processor-group", S(kafka_group), 0, 0, NULL,
     "Kafka consumer group"},
    {OPT_STR, "COMPOSITE_PROVIDERS", "composite-providers", "nats,kafka", S(composite_providers), 0,
     0, NULL, "providers of the composite queue"},
    {OPT_ENUM, "COMPOSITE_STRATEGY", "composite-strategy", "fail-fast", S(composite_strategy), 0, 0,
     "fail-fast|best-effort", "composite write strategy"},
    {OPT_STR, "QUEUE_DIR", "queue-dir", "./eventpipe-data/queue", S(queue_dir), 0, 0, NULL,
     "directory of the disk queue"},
    {OPT_STR, "QUEUE_FSYNC", "queue-fsync", "always", S(queue_fsync), 0, 0, NULL,
     "disk queue fsync policy: always, never or an interval in ms"},
    {OPT_SIZE, "QUEUE_SEGMENT_SIZE", "queue-segment-size", "67108864", N(queue_segment_bytes), 4096,
     4294967295LL, NULL, "bytes per disk queue segment file"},
    {OPT_SIZE, "QUEUE_RETENTION_BYTES", "queue-retention-bytes", "1073741824",
     N(queue_retention_bytes), 0, INT64_MAX, NULL,
     "disk queue: bytes kept at most, and un-acked bytes before 503 (0: no bound)"},
    {OPT_I64, "QUEUE_RETENTION_AGE", "queue-retention-age", "604800", N(queue_retention_age_s), 0,
     INT64_MAX, NULL, "seconds consumed disk queue data is kept at most (0: no age bound)"},
    {OPT_STR, "NATS_STREAM", "nats-stream", "DIPLOM_STREAM", S(nats_stream), 0, 0, NULL,
     "JetStream stream (subjects diplom.*)"},
    {OPT_STR, "NATS_SUBJECT", "nats-subject", "diplom.messages", S(nats_subject), 0, 0, NULL,
     "subject events are published to"},
    {OPT_STR, "NATS_DURABLE", "nats-durable", "processor", S(nats_durable), 0, 0, NULL,
     "durable pull consumer shared by processors"},
    {OPT_STR, "NATS_DLQ_SUBJECT", "nats-dlq-subject", "diplom.dlq", S(nats_dlq_subject), 0, 0, NULL,
     "subject of dead-lettered events"},
    {OPT_ENUM, "KAFKA_COMPRESSION", "kafka-compression", "snappy", S(kafka_compression), 0, 0,
     "none|gzip|snappy|lz4|zstd", "Kafka producer compression"},
    {OPT_INT, "KAFKA_PARTITIONS", "kafka-partitions", "6", N(kafka_partitions), 1, 100000, NULL,
     "partitions of a topic eventpipe creates"},
    {OPT_INT, "KAFKA_MAX_RETRIES", "kafka-max-retries", "3", N(kafka_max_retries), 0, 1000, NULL,
     "publish retries (exponential backoff)"},
    {OPT_INT, "KAFKA_BATCH_SIZE", "kafka-batch-size", "10000", N(kafka_batch_size), 1, 1000000,
     NULL, "most events in one producer batch (batch.num.messages)"},
    {OPT_INT, "KAFKA_LINGER_MS", "kafka-linger", "1", N(kafka_linger_ms), 0, 60000, NULL,
     "ms the producer waits to fill a batch (every ingest answer waits for it)"},
    {OPT_STR, "KAFKA_CLIENT_ID", "kafka-client-id", "eventpipe", S(kafka_client_id), 0, 0, NULL,
     "Kafka client.id"},
    {OPT_STR, "KAFKA_DLQ_TOPIC", "kafka-dlq-topic", "diplom-messages-dlq", S(kafka_dlq_topic), 0, 0,
     NULL, "topic of dead-lettered events"},
    {OPT_INT, "PROCESSOR_MAX_ATTEMPTS", "max-attempts", "5", N(max_attempts), 1, 1000, NULL,
     "processing attempts before an event is dead-lettered"},
    {OPT_INT, "DEDUP_WINDOW", "dedup-window", "300", N(dedup_window_s), 0, 86400 * 7, NULL,
     "seconds a client-given event id is remembered for idempotency (0: off)"},
    {OPT_I64, "DEDUP_CAPACITY", "dedup-capacity", "1000000", N(dedup_capacity), 1000, 1000000000,
     NULL, "client ids remembered at most; when full, the oldest go first"},
    {OPT_SIZE, "HTTP_MAX_BATCH_BODY", "max-batch-body", "33554432", N(max_batch_body), 1024,
     1073741824, NULL, "largest batch request body in bytes, after decompression too"},
    {OPT_INT, "BATCH_MAX_EVENTS", "batch-max-events", "100000", N(batch_max_events), 1, 10000000,
     NULL, "events per batch request"},
    {OPT_INT, "PROCESSOR_WORKERS", "workers", "4", N(workers), 1, 1024, NULL,
     "worker threads in the processor"},
    {OPT_INT, "PROCESSOR_BATCH", "batch", "64", N(batch_size), 1, 65536, NULL,
     "events a worker takes from the queue at once"},
    {OPT_STR, "PROCESSOR_SINK", "sink", "none", S(sink), 0, 0, NULL,
     "output for processed events: none, stdout or file:PATH (NDJSON)"},
    {OPT_INT, "HTTP_THREADS", "http-threads", "1", N(http_threads), 1, 256, NULL,
     "HTTP event-loop threads per port (one serves ~60k requests/s on a core; more for more "
     "cores)"},
    {OPT_SIZE, "HTTP_MAX_BODY", "max-body", "1048576", N(max_body), 1024, 1073741824, NULL,
     "largest accepted request body in bytes (larger: 413)"},
    {OPT_INT, "HTTP_MAX_HEADER", "max-header", "8192", N(max_header), 1024, 1048576, NULL,
     "largest accepted request header block in bytes (larger: 431)"},
    {OPT_INT, "HTTP_IDLE_TIMEOUT", "idle-timeout", "30", N(idle_timeout_s), 1, 86400, NULL,
     "seconds before an idle or stalled connection is closed"},
    {OPT_INT, "HTTP_MAX_CONNECTIONS", "max-connections", "4096", N(max_connections), 1, 1000000,
     NULL, "concurrent connections per port"},
    {OPT_INT, "HTTP_MAX_CONNECTIONS_PER_CLIENT", "max-connections-per-client", "256",
     N(max_per_client), 0, 1000000, NULL,
     "concurrent connections per port from one client address; more get 503 (0: no limit)"},
    {OPT_INT, "HTTP_HEADER_TIMEOUT", "header-timeout", "10", N(header_timeout_s), 1, 3600, NULL,
     "seconds a request head may take from its first byte (then 408)"},
    {OPT_INT, "HTTP_BODY_TIMEOUT", "body-timeout", "20", N(body_timeout_s), 1, 86400, NULL,
     "seconds a request body may take before HTTP_BODY_MIN_RATE applies (then 408)"},
    {OPT_INT, "HTTP_BODY_MIN_RATE", "body-min-rate", "500", N(body_min_rate), 1, 1073741824, NULL,
     "bytes/s a body must keep after HTTP_BODY_TIMEOUT: each byte adds 1/rate s (then 408)"},
    {OPT_INT, "HTTP_SEND_TIMEOUT", "send-timeout", "30", N(send_timeout_s), 1, 86400, NULL,
     "seconds an answer may go without write progress before the connection is closed"},
    {OPT_SIZE, "HTTP_MEMORY_LIMIT", "memory-limit", "67108864", N(memory_limit), 1048576, INT64_MAX,
     NULL,
     "bytes of buffered requests and unsent answers per port; past it the largest holders are "
     "closed and new requests get 503"},
    {OPT_INT, "UPSTREAM_TIMEOUT_MS", "upstream-timeout", "3000", N(upstream_timeout_ms), 10, 600000,
     NULL, "timeout of a hop to another role (ms)"},
    {OPT_INT, "STATUS_TIMEOUT_MS", "status-timeout", "1000", N(status_timeout_ms), 10, 60000, NULL,
     "how long /api/v1/status waits for a role (ms)"},
    {OPT_INT, "RETRY_AFTER", "retry-after", "1", N(retry_after_s), 0, 3600, NULL,
     "Retry-After seconds sent with 503 and 429"},
    {OPT_INT, "EVENT_MAX_KEYS", "max-keys", "64", N(max_meta_keys), 1, 100000, NULL,
     "metadata/properties entries per event"},
    {OPT_INT, "EVENT_MAX_DATA", "max-data", "262144", N(max_data_len), 1, 1073741824, NULL,
     "bytes of an event's data"},
    {OPT_INT, "SHUTDOWN_TIMEOUT", "shutdown-timeout", "10", N(shutdown_timeout_s), 0, 3600, NULL,
     "seconds to finish requests and drain the queue on SIGTERM"},
    {OPT_ENUM, "LOG_LEVEL", "log-level", "info", S(log_level), 0, 0, "debug|info|warn|error",
     "log level"},
    {OPT_ENUM, "LOG_FORMAT", "log-format", "text", S(log_format), 0, 0, "text|json", "log format"},
    {OPT_INT, "STATS_INTERVAL", "stats-interval", "60", N(stats_interval_s), 0, 86400, NULL,
     "seconds between summary log lines (0: none)"},
    {OPT_ENUM, "ANALYTICS_PUSH", "analytics-push", "auto", S(analytics_push), 0, 0, "auto|on|off",
     "a processor without the analytics role pushes deltas to ANALYTICS_URL (auto = on)"},
    {OPT_INT, "ANALYTICS_PUSH_INTERVAL_MS", "analytics-push-interval", "1000",
     N(analytics_push_interval_ms), 50, 600000, NULL, "ms between analytics delta pushes"},
    {OPT_ENUM, "METRICS_ENABLED", "metrics", "true", S(metrics_enabled), 0, 0, "true|false",
     "GET /metrics on every port and the request/event metrics behind it"},
    {OPT_RATIO, "ACCESS_LOG_SAMPLE", "access-log-sample", "0", N(access_log_sample), 0, 1, NULL,
     "fraction of requests written to the access log (0: none, 1: all)"},
    {OPT_STR, "TLS_CERT_FILE", "tls-cert", "", S(tls_cert_file), 0, 0, NULL,
     "PEM certificate chain: with TLS_KEY_FILE every listener speaks only TLS (reloaded on "
     "SIGHUP); the default role URLs become https://"},
    {OPT_STR, "TLS_KEY_FILE", "tls-key", "", S(tls_key_file), 0, 0, NULL,
     "PEM private key of TLS_CERT_FILE"},
    {OPT_STR, "TLS_CA_FILE", "tls-ca", "", S(tls_ca_file), 0, 0, NULL,
     "PEM CAs that hops to https:// roles verify with (empty: the system store)"},
    {OPT_STR, "TLS_CLIENT_CA_FILE", "tls-client-ca", "", S(tls_client_ca_file), 0, 0, NULL,
     "mutual TLS: clients must present a certificate from these PEM CAs"},
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

static int parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (*s == '\0') {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s) {
        return -1;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

/* "1048576", "512k", "1m", "1g" (binary units). */
static int parse_size(const char *s, int64_t *out)
{
    char *end;
    long long v;
    int64_t mul = 1;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) {
        return -1;
    }
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'k':
        mul = 1024;
        end++;
        break;
    case 'm':
        mul = 1024 * 1024;
        end++;
        break;
    case 'g':
        mul = 1024 * 1024 * 1024;
        end++;
        break;
    default:
        return -1;
    }
    if (*end == 'b' || *end == 'B') {
        end++;
    }
    if (*end != '\0' || v > INT64_MAX / mul) {
        return -1;
    }
    *out = v * mul;
    return 0;
}

static int set_opt(ep_config_t *cfg, const opt_t *o, const char *val, char *err, size_t errlen)
{
    char *base = (char *)cfg;
    int64_t v = 0;

    switch (o->type) {
    case OPT_INT:
    case OPT_I64:
    case OPT_PORT:
    case OPT_SIZE:
        if ((o->type == OPT_SIZE ? parse_size(val, &v) : parse_int(val, &v)) != 0) {
            snprintf(err, errlen, "%s: '%s' is not a%s number", o->env, val,
                     o->type == OPT_SIZE ? " size" : "n integer");
            return EP_ECONFIG;
        }
        if (v < o->min || v > o->max) {
            snprintf(err, errlen, "%s: %lld is out of range [%lld, %lld]", o->env, (long long)v,
                     (long long)o->min, (long long)o->max);
            return EP_ECONFIG;
        }
        if (o->type == OPT_I64 || o->type == OPT_SIZE) {
            *(int64_t *)(base + o->off) = v;
        } else {
            *(int *)(base + o->off) = (int)v;
        }
        return 0;
    case OPT_RATIO: {
        char *end;
        double d;
        errno = 0;
        d = strtod(val, &end);
        if (errno != 0 || end == val || *end != '\0' || !(d >= 0.0 && d <= 1.0)) {
            snprintf(err, errlen, "%s: '%s' is not a number in [0, 1]", o->env, val);
            return EP_ECONFIG;
        }
        *(double *)(base + o->off) = d;
        return 0;
    }
    case OPT_ENUM: {
        const char *c = o->choices;
        size_t n = strlen(val);
        while (*c) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            if (len == n && strncasecmp(c, val, n) == 0) {
                snprintf(base + o->off, o->cap, "%.*s", (int)len, c);
                return 0;
            }
            c += len + (bar ? 1 : 0);
        }
        snprintf(err, errlen, "%s: '%s' is not one of %s", o->env, val, o->choices);
        return EP_ECONFIG;
    }
    case OPT_URL:
        if (strstr(val, "://") == NULL || strlen(val) < 8) {
            snprintf(err, errlen, "%s: '%s' is not a URL (expected scheme://host:port)", o->env,
                     val);
            return EP_ECONFIG;
        }
        /* fall through */
    case OPT_STR:
        if (strlen(val) >= o->cap) {
            snprintf(err, errlen, "%s: value is longer than %zu bytes", o->env, o->cap - 1);
            return EP_ECONFIG;
        }
        snprintf(base + o->off, o->cap, "%s", val);
        /* A trailing slash on a URL would double up in "URL/path". */
        if (o->type == OPT_URL) {
            size_t len = strlen(base + o->off);
            while (len > 0 && (base + o->off)[len - 1] == '/') {
                (base + o->off)[--len] = '\0';
            }
        }
        return 0;
    }
    return EP_ECONFIG;
}

void ep_config_defaults(ep_config_t *cfg)
{
    char err[256];

    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < N_OPTIONS; i++) {
        int rc = set_opt(cfg, &options[i], options[i].def, err, sizeof(err));
        (void)rc;
    }
}

static const opt_t *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, name, len) == 0) {
            return &options[i];
        }
    }
    return NULL;
}

/*
 * TLS settings that cannot work together; whether the files load is checked
 * when the process starts (ep_tls). With TLS on, the role URLs still at their
 * plain-HTTP defaults point at the same ports over https.
 */
static int tls_check(ep_config_t *cfg, char *err, size_t errlen)
{
    static const struct {
        size_t off;
        const char *def, *tls;
    } urls[] = {
        {offsetof(ep_config_t, ingest_url), "http://localhost:8081", "https://localhost:8081"},
        {offsetof(ep_config_t, processor_url), "http://localhost:8082", "https://localhost:8082"},
        {offsetof(ep_config_t, analytics_url), "http://localhost:8083", "https://localhost:8083"},
    };

    if (!cfg->tls_cert_file[0] != !cfg->tls_key_file[0]) {
        snprintf(err, errlen, "%s: must be set together with %s",
                 cfg->tls_cert_file[0] ? "TLS_KEY_FILE" : "TLS_CERT_FILE",
                 cfg->tls_cert_file[0] ? "TLS_CERT_FILE" : "TLS_KEY_FILE");
        return EP_ECONFIG;
    }
    if (cfg->tls_client_ca_file[0] && !cfg->tls_cert_file[0]) {
        snprintf(err, errlen,
                 "TLS_CLIENT_CA_FILE: mutual TLS needs TLS_CERT_FILE and TLS_KEY_FILE too");
        return EP_ECONFIG;
    }
    if (cfg->tls_cert_file[0]) {
        for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
            char *u = (char *)cfg + urls[i].off;
            if (strcmp(u, urls[i].def) == 0) {
                strcpy(u, urls[i].tls);
            }
        }
    }
    return 0;
}

int ep_config_load(ep_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    int rc;

    ep_config_defaults(cfg);
    /* Seed 003 spells the broker list KAFKA_BROKER_LIST; KAFKA_BROKERS wins when both are set. */
    if (getenv("KAFKA_BROKER_LIST") && *getenv("KAFKA_BROKER_LIST") && !getenv("KAFKA_BROKERS")) {
        snprintf(cfg->kafka_brokers, sizeof(cfg->kafka_brokers), "%s", getenv("KAFKA_BROKER_LIST"));
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].env);
        /* An empty variable counts as unset, as in the seed. */
        if (v && *v && (rc = set_opt(cfg, &options[i], v, err, errlen)) != 0) {
            return rc;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *name, *eq, *val;
        const opt_t *o;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return EP_ENOENT;
        }
        if (strncmp(a, EP_STRLIT("--")) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return EP_ECONFIG;
        }
        name = a + 2;
        eq = strchr(name, '=');
        o = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
        if (o == NULL) {
            snprintf(err, errlen, "unknown option '%s' (see --help)", a);
            return EP_ECONFIG;
        }
        if (eq) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            snprintf(err, errlen, "option '--%s' needs a value (%s)", o->flag, o->env);
            return EP_ECONFIG;
        }
        if ((rc = set_opt(cfg, o, val, err, errlen)) != 0) {
            return rc;
        }
    }
    return tls_check(cfg, err, errlen);
}

void ep_config_usage(FILE *f)
{
    fprintf(f, "Options (flag, environment variable, default):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_t *o = &options[i];
        fprintf(f, "  --%-22s %-22s %-24s %s\n", o->flag, o->env, o->def, o->desc);
    }
}
