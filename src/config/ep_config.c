/*
 * Configuration table: one row per option, with its environment variable, its
 * flag, its default and its bounds. Environment first, then flags.
 */
#include "config/ep_config.h"
#include "base/ep_duration.h"
#include "base/ep_error.h"
#include "base/ep_str.h"

#include <arpa/inet.h>
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
    OPT_RATIO,      /* a double in [0, 1] */
    OPT_DURATION_S, /* a duration stored in whole seconds; choices: a bare number's unit */
    OPT_DURATION_MS /* a duration stored in whole milliseconds; choices: likewise */
} opt_type_t;

typedef struct {
    opt_type_t type;
    const char *env;
    const char *flag;
    const char *def;
    size_t off;
    size_t cap;          /* string capacity; a duration field's size (int or int64_t) */
    int64_t min, max;    /* numbers; durations: in the field's unit */
    const char *choices; /* OPT_ENUM: "a|b|c"; OPT_DURATION_*: a bare number's unit, "s" or "ms" */
    const char *desc;
} opt_t;

#define S(f) offsetof(ep_config_t, f), sizeof(((ep_config_t *)0)->f)
#define N(f) offsetof(ep_config_t, f), 0
#define D(f) S(f)

static const opt_t options[] = {
    {OPT_STR, "BIND_ADDR", "bind", "0.0.0.0", S(bind_addr), 0, 0, NULL,
     "address every role listens on"},
    {OPT_PORT, "API_PORT", "api-port", "8080", N(api_port), 0, 65535, NULL, "gateway port"},
    {OPT_STR, "SERVER_ADDRESS", "server-address", "", S(server_address), 0, 0, NULL,
     "host:port of the gateway (API) listener, \":8080\" = every address (seed 003); "
     "overrides BIND_ADDR for the gateway; not together with API_PORT"},
    {OPT_PORT, "METRICS_PORT", "metrics-port", "0", N(metrics_port), 0, 65535, NULL,
     "a separate listener for /metrics and /health in this process (0: none; /metrics "
     "stays on every role port)"},
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
     "disk queue fsync policy: always, never or an interval (a duration, 1ms-1h; bare "
     "number: ms)"},
    {OPT_SIZE, "QUEUE_SEGMENT_SIZE", "queue-segment-size", "67108864", N(queue_segment_bytes), 4096,
     4294967295LL, NULL, "bytes per disk queue segment file"},
    {OPT_SIZE, "QUEUE_RETENTION_BYTES", "queue-retention-bytes", "1073741824",
     N(queue_retention_bytes), 0, INT64_MAX, NULL,
     "disk queue: bytes kept at most, and un-acked bytes before 503 (0: no bound)"},
    {OPT_DURATION_S, "QUEUE_RETENTION_AGE", "queue-retention-age", "168h", D(queue_retention_age_s),
     0, INT64_MAX / 1000000000, "s",
     "how long consumed disk queue data is kept at most, whole seconds (0: no age bound)"},
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
    {OPT_DURATION_MS, "KAFKA_LINGER_MS", "kafka-linger", "1ms", D(kafka_linger_ms), 0, 60000, "ms",
     "how long the producer waits to fill a batch (every ingest answer waits for it)"},
    {OPT_STR, "KAFKA_CLIENT_ID", "kafka-client-id", "eventpipe", S(kafka_client_id), 0, 0, NULL,
     "Kafka client.id"},
    {OPT_STR, "KAFKA_DLQ_TOPIC", "kafka-dlq-topic", "diplom-messages-dlq", S(kafka_dlq_topic), 0, 0,
     NULL, "topic of dead-lettered events"},
    {OPT_INT, "PROCESSOR_MAX_ATTEMPTS", "max-attempts", "5", N(max_attempts), 1, 1000, NULL,
     "processing attempts before an event is dead-lettered"},
    {OPT_DURATION_S, "DEDUP_WINDOW", "dedup-window", "5m", D(dedup_window_s), 0, 86400 * 7, "s",
     "how long a client-given event id is remembered for idempotency, whole seconds (0: off)"},
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
    {OPT_DURATION_MS, "HTTP_IDLE_TIMEOUT", "idle-timeout", "30s", D(idle_timeout_ms), 1, 86400000,
     "s", "how long an idle or stalled connection is kept"},
    {OPT_INT, "HTTP_MAX_CONNECTIONS", "max-connections", "4096", N(max_connections), 1, 1000000,
     NULL, "concurrent connections per port"},
    {OPT_INT, "HTTP_MAX_CONNECTIONS_PER_CLIENT", "max-connections-per-client", "256",
     N(max_per_client), 0, 1000000, NULL,
     "concurrent connections per port from one client address; more get 503 (0: no limit)"},
    {OPT_DURATION_MS, "HTTP_HEADER_TIMEOUT", "header-timeout", "10s", D(header_timeout_ms), 1,
     3600000, "s", "how long a request head may take from its first byte (then 408)"},
    {OPT_DURATION_MS, "HTTP_BODY_TIMEOUT", "body-timeout", "20s", D(body_timeout_ms), 1, 86400000,
     "s", "how long a request body may take before HTTP_BODY_MIN_RATE applies (then 408)"},
    {OPT_INT, "HTTP_BODY_MIN_RATE", "body-min-rate", "500", N(body_min_rate), 1, 1073741824, NULL,
     "bytes/s a body must keep after HTTP_BODY_TIMEOUT: each byte adds 1/rate s (then 408)"},
    {OPT_DURATION_MS, "HTTP_SEND_TIMEOUT", "send-timeout", "30s", D(send_timeout_ms), 1, 86400000,
     "s", "how long an answer may go without write progress before the connection is closed"},
    {OPT_DURATION_MS, "SERVER_READ_TIMEOUT", "read-timeout", "0", D(read_timeout_ms), 0, 86400000,
     "s",
     "a whole request (head and body) must arrive within this from its first byte, else 408 "
     "(seed 003, Go's ReadTimeout; 0: off, the HTTP_*_TIMEOUT deadlines only)"},
    {OPT_DURATION_MS, "SERVER_WRITE_TIMEOUT", "write-timeout", "0", D(write_timeout_ms), 0,
     86400000, "s",
     "a whole answer must be written within this from its first byte, else the connection "
     "is closed (seed 003, Go's WriteTimeout; 0: off, HTTP_SEND_TIMEOUT only)"},
    {OPT_SIZE, "HTTP_MEMORY_LIMIT", "memory-limit", "67108864", N(memory_limit), 1048576, INT64_MAX,
     NULL,
     "bytes of buffered requests and unsent answers per port; past it the largest holders are "
     "closed and new requests get 503"},
    {OPT_DURATION_MS, "UPSTREAM_TIMEOUT_MS", "upstream-timeout", "3s", D(upstream_timeout_ms), 10,
     600000, "ms", "timeout of a hop to another role"},
    {OPT_DURATION_MS, "STATUS_TIMEOUT_MS", "status-timeout", "1s", D(status_timeout_ms), 10, 60000,
     "ms", "how long /api/v1/status waits for a role"},
    {OPT_DURATION_S, "RETRY_AFTER", "retry-after", "1s", D(retry_after_s), 0, 3600, "s",
     "Retry-After sent with 503 and 429, whole seconds (the header has no finer unit)"},
    {OPT_INT, "CIRCUIT_BREAKER_FAILURES", "circuit-breaker-failures", "5", N(breaker_failures), 0,
     1000000, NULL,
     "consecutive failed calls (no answer, timeout, 5xx but 503) that open a hop's circuit "
     "breaker: calls then get 503 at once (0: no breakers)"},
    {OPT_DURATION_MS, "CIRCUIT_BREAKER_OPEN_MS", "circuit-breaker-open", "5s", D(breaker_open_ms),
     1, 3600000, "ms", "how long an open circuit breaker refuses calls before one probe may try"},
    {OPT_INT, "EVENT_MAX_KEYS", "max-keys", "64", N(max_meta_keys), 1, 100000, NULL,
     "metadata/properties entries per event"},
    {OPT_INT, "EVENT_MAX_DATA", "max-data", "262144", N(max_data_len), 1, 1073741824, NULL,
     "bytes of an event's data"},
    {OPT_DURATION_MS, "SHUTDOWN_TIMEOUT", "shutdown-timeout", "10s", D(shutdown_timeout_ms), 0,
     3600000, "s", "the graceful shutdown limit on SIGTERM: finish requests, drain the queue"},
    {OPT_DURATION_MS, "SERVER_SHUTDOWN_TIMEOUT", "server-shutdown-timeout", "",
     D(shutdown_timeout_ms), 0, 3600000, "s",
     "seed 003's name of SHUTDOWN_TIMEOUT (the same limit; both set and "
     "different: error)"},
    {OPT_ENUM, "LOG_LEVEL", "log-level", "info", S(log_level), 0, 0, "debug|info|warn|error",
     "log level"},
    {OPT_ENUM, "LOG_FORMAT", "log-format", "text", S(log_format), 0, 0, "text|json", "log format"},
    {OPT_DURATION_MS, "STATS_INTERVAL", "stats-interval", "1m", D(stats_interval_ms), 0, 86400000,
     "s", "time between summary log lines (0: none)"},
    {OPT_ENUM, "ANALYTICS_PUSH", "analytics-push", "auto", S(analytics_push), 0, 0, "auto|on|off",
     "a processor without the analytics role pushes deltas to ANALYTICS_URL (auto = on)"},
    {OPT_DURATION_MS, "ANALYTICS_PUSH_INTERVAL_MS", "analytics-push-interval", "1s",
     D(analytics_push_interval_ms), 50, 600000, "ms", "time between analytics delta pushes"},
    {OPT_ENUM, "METRICS_ENABLED", "metrics", "true", S(metrics_enabled), 0, 0, "true|false",
     "GET /metrics on every port and the request/event metrics behind it"},
    {OPT_RATIO, "ACCESS_LOG_SAMPLE", "access-log-sample", "0", N(access_log_sample), 0, 1, NULL,
     "fraction of requests written to the access log (0: none, 1: all)"},
    {OPT_STR, "CORS_ALLOWED_ORIGINS", "cors-allowed-origins", "", S(cors_allowed_origins), 0, 0,
     NULL,
     "web origins (scheme://host[:port], comma-separated) whose pages may call the API, or * "
     "(empty: none)"},
    {OPT_STR, "API_KEYS", "api-keys", "", S(api_keys), 0, 0, NULL,
     "API keys, comma-separated (named key1, key2, ...); when any key is set, ingesting routes "
     "need one (Authorization: Bearer <key> or X-API-Key)"},
    {OPT_STR, "API_KEYS_FILE", "api-keys-file", "", S(api_keys_file), 0, 0, NULL,
     "file of API keys, one a line: name key-or-sha256:<hex> [rate=N] [burst=N]"},
    {OPT_ENUM, "API_KEYS_PROTECT_READS", "api-keys-protect-reads", "false",
     S(api_keys_protect_reads), 0, 0, "true|false",
     "reading routes (stats, status, analytics, lag) need an API key too"},
    {OPT_STR, "INTERNAL_TOKEN", "internal-token", "", S(internal_token), 0, 0, NULL,
     "Bearer token of role-to-role routes (/enqueue, /analytics/merge); unset: loopback only"},
    {OPT_I64, "RATE_LIMIT_EVENTS_PER_SEC", "rate-limit", "0", N(rate_limit), 0, 1000000000, NULL,
     "events/s per API key (per client address without keys); over it 429 (0: off)"},
    {OPT_I64, "RATE_LIMIT_BURST", "rate-limit-burst", "0", N(rate_limit_burst), 0, 1000000000, NULL,
     "events a key or address may send at once (0: RATE_LIMIT_EVENTS_PER_SEC)"},
    {OPT_STR, "APP_NAME", "app-name", "eventpipe", S(app_name), 0, 0, NULL,
     "\"app\" of every JSON log line, name of the app_info metric"},
    {OPT_STR, "APP_VERSION", "app-version", EP_VERSION, S(app_version), 0, 0, NULL,
     "\"version\" of every JSON log line and of app_info (default: this build's)"},
    {OPT_STR, "APP_ENV", "app-env", "development", S(app_env), 0, 0, NULL,
     "\"env\" of every JSON log line and of app_info (development, staging, production...)"},
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

/* A duration option's value, in its field's unit. */
static int set_duration(char *field, const opt_t *o, const char *val, char *err, size_t errlen)
{
    int64_t unit = o->type == OPT_DURATION_S ? EP_S : EP_MS;
    int64_t bare = strcmp(o->choices, "ms") == 0 ? EP_MS : EP_S;
    int64_t ns, v;
    const char *why = NULL;
    char lo[32], hi[32];

    if (ep_duration_parse_bare(val, bare, &ns, &why) != 0) {
        snprintf(err, errlen, "%s: '%s' is not a duration: %s (a bare number is %s)", o->env, val,
                 why, o->choices);
        return EP_ECONFIG;
    }
    if (ns % unit != 0) {
        snprintf(err, errlen, "%s: '%s' is finer than this setting takes (whole %s)", o->env, val,
                 unit == EP_S ? "seconds" : "milliseconds");
        return EP_ECONFIG;
    }
    v = ns / unit;
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "%s: '%s' is out of range [%s, %s]", o->env, val,
                 ep_duration_format(o->min * unit, lo, sizeof(lo)),
                 o->max > INT64_MAX / unit ? "2562047h"
                                           : ep_duration_format(o->max * unit, hi, sizeof(hi)));
        return EP_ECONFIG;
    }
    if (o->cap == sizeof(int64_t)) {
        *(int64_t *)field = v;
    } else {
        *(int *)field = (int)v;
    }
    return 0;
}

static int set_opt(ep_config_t *cfg, const opt_t *o, const char *val, char *err, size_t errlen)
{
    char *base = (char *)cfg;
    int64_t v = 0;

    switch (o->type) {
    case OPT_DURATION_S:
    case OPT_DURATION_MS:
        return set_duration(base + o->off, o, val, err, errlen);
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
        memcpy(base + o->off, &d, sizeof(d)); /* the field is a double */
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
        /* "": no default of its own (SERVER_ADDRESS, an alias such as SERVER_SHUTDOWN_TIMEOUT). */
        int rc =
            options[i].def[0] ? set_opt(cfg, &options[i], options[i].def, err, sizeof(err)) : 0;
        (void)rc;
    }
}

static const opt_t *find_env(const char *env)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strcmp(options[i].env, env) == 0) {
            return &options[i];
        }
    }
    return NULL;
}

/* SERVER_ADDRESS "host:port" (host: IPv4, "localhost" or empty for every address). */
static int server_address(ep_config_t *cfg, char *err, size_t errlen)
{
    const char *a = cfg->server_address, *colon = strrchr(a, ':');
    char host[64];
    int64_t port;
    struct in_addr ia;

    if (colon == NULL || (size_t)(colon - a) >= sizeof(host) || parse_int(colon + 1, &port) != 0 ||
        colon[1] < '0' || colon[1] > '9' || port > 65535) {
        snprintf(err, errlen,
                 "SERVER_ADDRESS: '%s' is not host:port (e.g. :8080, 127.0.0.1:8080, "
                 "localhost:8080)",
                 a);
        return EP_ECONFIG;
    }
    snprintf(host, sizeof(host), "%.*s", (int)(colon - a), a);
    if (host[0] == '\0') {
        snprintf(host, sizeof(host), "0.0.0.0");
    } else if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    } else if (inet_pton(AF_INET, host, &ia) != 1) {
        snprintf(err, errlen, "SERVER_ADDRESS: '%s' is not an IPv4 address or localhost", host);
        return EP_ECONFIG;
    }
    snprintf(cfg->api_bind_addr, sizeof(cfg->api_bind_addr), "%s", host);
    cfg->api_port = (int)port;
    return 0;
}

/* Rules between options, once every value is read. given[i]: options[i] was set. */
static int check_relations(ep_config_t *cfg, const char *const *given, char *err, size_t errlen)
{
    const opt_t *o_api = find_env("API_PORT"), *o_sa = find_env("SERVER_ADDRESS");
    const opt_t *o_st = find_env("SHUTDOWN_TIMEOUT"), *o_sst = find_env("SERVER_SHUTDOWN_TIMEOUT");
    const char *why;
    int64_t a, b;

    if (given[o_sa - options] && given[o_api - options]) {
        snprintf(err, errlen,
                 "SERVER_ADDRESS: set together with API_PORT; both give the gateway's port, set "
                 "one");
        return EP_ECONFIG;
    }
    if (given[o_sa - options] && server_address(cfg, err, errlen) != 0) {
        return EP_ECONFIG;
    }
    if (given[o_st - options] && given[o_sst - options] &&
        (ep_duration_parse_bare(given[o_st - options], EP_S, &a, &why) != 0 ||
         ep_duration_parse_bare(given[o_sst - options], EP_S, &b, &why) != 0 || a != b)) {
        snprintf(err, errlen,
                 "SERVER_SHUTDOWN_TIMEOUT: '%s' differs from SHUTDOWN_TIMEOUT '%s'; they name the "
                 "same limit, set one",
                 given[o_sst - options], given[o_st - options]);
        return EP_ECONFIG;
    }
    if (strcmp(cfg->queue_fsync, "always") != 0 && strcmp(cfg->queue_fsync, "never") != 0 &&
        (ep_duration_parse_bare(cfg->queue_fsync, EP_MS, &a, &why) != 0 || a < EP_MS ||
         a > 3600 * EP_S || a % EP_MS != 0)) {
        snprintf(err, errlen,
                 "QUEUE_FSYNC: '%s' is not always, never or an interval of whole ms in [1ms, 1h] "
                 "(e.g. 50ms; a bare number is ms)",
                 cfg->queue_fsync);
        return EP_ECONFIG;
    }
    if (cfg->metrics_port > 0 && strcmp(cfg->metrics_enabled, "true") != 0) {
        snprintf(err, errlen,
                 "METRICS_PORT: set while METRICS_ENABLED=false (no /metrics to serve)");
        return EP_ECONFIG;
    }
    return 0;
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
                memcpy(u, urls[i].tls, strlen(urls[i].tls) + 1); /* fits: the field holds def */
            }
        }
    }
    return 0;
}

int ep_config_load(ep_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    const char *given[N_OPTIONS] = {0}; /* the value each option was given, if any */
    int rc;

    ep_config_defaults(cfg);
    /* Seed 003 spells the broker list KAFKA_BROKER_LIST; KAFKA_BROKERS wins when both are set. */
    const char *broker_list = getenv("KAFKA_BROKER_LIST");
    if (broker_list && *broker_list && !getenv("KAFKA_BROKERS")) {
        snprintf(cfg->kafka_brokers, sizeof(cfg->kafka_brokers), "%s", broker_list);
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].env);
        /* An empty variable counts as unset, as in the seed. */
        if (v && *v && (rc = set_opt(cfg, &options[i], v, err, errlen)) != 0) {
            return rc;
        }
        if (v && *v) {
            given[i] = v;
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
        given[o - options] = val;
    }
    if ((rc = check_relations(cfg, given, err, errlen)) != 0) {
        return rc;
    }
    return tls_check(cfg, err, errlen);
}

void ep_config_usage(FILE *f)
{
    fprintf(f, "Options (flag, environment variable, default):\n");
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const opt_t *o = &options[i];
        if (o->type == OPT_DURATION_S || o->type == OPT_DURATION_MS) {
            fprintf(f, "  --%-22s %-22s %-24s [duration: 15s, 500ms, 1m30s; bare number: %s] %s\n",
                    o->flag, o->env, o->def[0] ? o->def : "-", o->choices, o->desc);
        } else {
            fprintf(f, "  --%-22s %-22s %-24s %s\n", o->flag, o->env, o->def[0] ? o->def : "-",
                    o->desc);
        }
    }
}
