/*
 * Configuration table: one row per option, with its environment variable, its
 * flag, its default and its bounds. Environment first, then flags. The queue
 * providers' tables (src/queue/<name>/) are read the same way, checked at once
 * and kept as text for their provider (ep_config_table_parse).
 */
#include "config/ep_config.h"
#include "base/ep_duration.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* The rows below use the short names of ep_opt.h's types. */
typedef ep_opt_t opt_t;
#define OPT_INT         EP_OPT_INT
#define OPT_I64         EP_OPT_I64
#define OPT_STR         EP_OPT_STR
#define OPT_PORT        EP_OPT_PORT
#define OPT_URL         EP_OPT_URL
#define OPT_ENUM        EP_OPT_ENUM
#define OPT_SIZE        EP_OPT_SIZE
#define OPT_RATIO       EP_OPT_RATIO
#define OPT_DURATION_S  EP_OPT_DURATION_S
#define OPT_DURATION_MS EP_OPT_DURATION_MS
#define OPT_BOOL        EP_OPT_BOOL
#define OPT_CHOICE      EP_OPT_CHOICE

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
    {OPT_PORT, "GRPC_PRODUCER_PORT", "grpc-producer-port", "50051", N(grpc_producer_port), 0, 65535,
     NULL, "gRPC ProducerService and IngestService of the ingest role (0: off)"},
    {OPT_PORT, "GRPC_CONSUMER_PORT", "grpc-consumer-port", "50052", N(grpc_consumer_port), 0, 65535,
     NULL, "gRPC ConsumerService of the processor role (0: off)"},
    {OPT_PORT, "GRPC_ANALYTICS_PORT", "grpc-analytics-port", "50053", N(grpc_analytics_port), 0,
     65535, NULL, "gRPC AnalyticsService of the analytics role (0: off)"},
    {OPT_SIZE, "GRPC_MAX_MESSAGE_SIZE", "grpc-max-message-size", "4194304", N(grpc_max_message),
     1024, 1073741824, NULL, "largest gRPC request message in bytes, after decompression too"},
    {OPT_DURATION_MS, "GRPC_KEEPALIVE_TIME", "grpc-keepalive-time", "2h", D(grpc_keepalive_ms), 100,
     INT32_MAX, "ms", "a gRPC connection silent this long gets a keepalive PING"},
    {OPT_DURATION_MS, "GRPC_KEEPALIVE_TIMEOUT", "grpc-keepalive-timeout", "20s",
     D(grpc_keepalive_timeout_ms), 100, INT32_MAX, "ms",
     "close a gRPC connection whose keepalive PING is not answered within this"},
    {OPT_URL, "INGEST_URL", "ingest-url", "http://localhost:8081", S(ingest_url), 0, 0, NULL,
     "where the gateway finds ingest"},
    {OPT_URL, "PROCESSOR_URL", "processor-url", "http://localhost:8082", S(processor_url), 0, 0,
     NULL, "where ingest and the gateway find the processor"},
    {OPT_URL, "ANALYTICS_URL", "analytics-url", "http://localhost:8083", S(analytics_url), 0, 0,
     NULL, "where the gateway finds analytics"},
    {OPT_STR, "QUEUE_TYPE", "queue", "memory", S(queue_type), 0, 0, NULL,
     "queue provider: one of those listed below"},
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
     "output for processed events: none, stdout, file:PATH (NDJSON) or a webhook "
     "http(s)://HOST/PATH (NDJSON POSTs; acked after a 2xx)"},
    {OPT_INT, "PROCESSOR_SINK_BATCH", "sink-batch", "500", N(sink_batch), 1, 100000, NULL,
     "webhook: most events per POST (a worker gathers up to this many)"},
    {OPT_SIZE, "PROCESSOR_SINK_BATCH_BYTES", "sink-batch-bytes", "1048576", N(sink_batch_bytes),
     1024, 268435456, NULL, "webhook: most body bytes per POST (a larger event goes alone)"},
    {OPT_DURATION_MS, "PROCESSOR_SINK_LINGER", "sink-linger", "5ms", D(sink_linger_ms), 0, 60000,
     "ms", "webhook: how long a worker waits to fill a POST"},
    {OPT_DURATION_MS, "PROCESSOR_SINK_TIMEOUT", "sink-timeout", "10s", D(sink_timeout_ms), 1,
     3600000, "ms", "webhook: limit of one POST, connect included"},
    {OPT_INT, "PROCESSOR_SINK_RETRIES", "sink-retries", "5", N(sink_retries), 0, 1000, NULL,
     "webhook: retries of a POST answered 408, 429 or 5xx or not answered, before its events "
     "go back to the queue (other 4xx: dead-lettered at once)"},
    {OPT_DURATION_MS, "PROCESSOR_SINK_BACKOFF", "sink-backoff", "100ms", D(sink_backoff_ms), 1,
     3600000, "ms",
     "webhook: first retry delay, doubled per retry, with jitter (Retry-After wins)"},
    {OPT_DURATION_MS, "PROCESSOR_SINK_BACKOFF_MAX", "sink-backoff-max", "10s",
     D(sink_backoff_max_ms), 1, 3600000, "ms", "webhook: cap of the retry delay"},
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
    {OPT_CHOICE, "LOG_LEVEL", "log-level", "info", N(log_level), 0, 0, "debug|info|warn|error",
     "log level"},
    {OPT_CHOICE, "LOG_FORMAT", "log-format", "text", N(log_format), 0, 0, "text|json",
     "log format"},
    {OPT_DURATION_MS, "STATS_INTERVAL", "stats-interval", "1m", D(stats_interval_ms), 0, 86400000,
     "s", "time between summary log lines (0: none)"},
    {OPT_CHOICE, "ANALYTICS_PUSH", "analytics-push", "auto", N(analytics_push), 0, 0, "auto|on|off",
     "a processor without the analytics role pushes deltas to ANALYTICS_URL (auto = on)"},
    {OPT_DURATION_MS, "ANALYTICS_PUSH_INTERVAL_MS", "analytics-push-interval", "1s",
     D(analytics_push_interval_ms), 50, 600000, "ms", "time between analytics delta pushes"},
    {OPT_BOOL, "METRICS_ENABLED", "metrics", "true", N(metrics_enabled), 0, 0, NULL,
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
    {OPT_BOOL, "API_KEYS_PROTECT_READS", "api-keys-protect-reads", "false",
     N(api_keys_protect_reads), 0, 0, NULL,
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

void ep_config_defaults(ep_config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    ep_opt_defaults(cfg, options, N_OPTIONS);
}

static const opt_t *find_env(const char *env)
{
    return ep_opt_find_env(options, N_OPTIONS, env);
}

/* SERVER_ADDRESS "host:port" (host: IPv4, "localhost" or empty for every address). */
static int server_address(ep_config_t *cfg, char *err, size_t errlen)
{
    const char *a = cfg->server_address, *colon = strrchr(a, ':');
    char host[64];
    int64_t port;
    struct in_addr ia;

    if (colon == NULL || (size_t)(colon - a) >= sizeof(host) ||
        ep_opt_parse_int(colon + 1, &port) != 0 || colon[1] < '0' || colon[1] > '9' ||
        port > 65535) {
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
    if (cfg->metrics_port > 0 && !cfg->metrics_enabled) {
        snprintf(err, errlen,
                 "METRICS_PORT: set while METRICS_ENABLED=false (no /metrics to serve)");
        return EP_ECONFIG;
    }
    return 0;
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

/* Removes the entry named name from provider_settings, if there is one. */
static void drop_setting(ep_config_t *cfg, const char *name)
{
    char *p = cfg->provider_settings, *end = p + cfg->provider_settings_len;

    while (p < end) {
        char *val = p + strlen(p) + 1, *next = val + strlen(val) + 1;
        if (strcmp(p, name) == 0) {
            memmove(p, next, (size_t)(end - next));
            cfg->provider_settings_len -= (size_t)(next - p);
            return;
        }
        p = next;
    }
}

int ep_config_put(ep_config_t *cfg, const char *name, const char *val)
{
    size_t nl = strlen(name) + 1, vl = strlen(val) + 1;

    drop_setting(cfg, name);
    if (cfg->provider_settings_len + nl + vl > sizeof(cfg->provider_settings)) {
        return EP_E2BIG;
    }
    memcpy(cfg->provider_settings + cfg->provider_settings_len, name, nl);
    memcpy(cfg->provider_settings + cfg->provider_settings_len + nl, val, vl);
    cfg->provider_settings_len += nl + vl;
    return 0;
}

int ep_config_table_parse(const ep_config_t *cfg, const ep_opt_table_t *t, void *opts, char *err,
                          size_t errlen)
{
    const char *p = cfg->provider_settings, *end = p + cfg->provider_settings_len;
    int rc;

    memset(opts, 0, t->size);
    ep_opt_defaults(opts, t->opts, t->n_opts);
    while (p < end) {
        const char *name = p, *val = p + strlen(p) + 1;
        const ep_opt_t *o = ep_opt_find_env(t->opts, t->n_opts, name);
        if (o && (rc = ep_opt_set(opts, o, val, err, errlen)) != 0) {
            return rc;
        }
        p = val + strlen(val) + 1;
    }
    return t->check ? t->check(opts, err, errlen) : 0;
}

/* The providers' row named by flag name[0..len), and its table in *t. */
static const opt_t *find_provider_flag(const ep_opt_table_t *providers, size_t n, const char *name,
                                       size_t len, const ep_opt_table_t **t)
{
    for (size_t i = 0; i < n; i++) {
        const opt_t *o = ep_opt_find_flag(providers[i].opts, providers[i].n_opts, name, len);
        if (o) {
            *t = &providers[i];
            return o;
        }
    }
    return NULL;
}

/* A provider's setting: checked against its row at once ("NAME: why"), kept as text. */
static int put_provider(ep_config_t *cfg, const ep_opt_table_t *t, const opt_t *o, const char *val,
                        char *err, size_t errlen)
{
    void *scratch = ep_calloc(1, t->size);
    int rc = ep_opt_set(scratch, o, val, err, errlen);

    ep_free(scratch);
    if (rc == 0 && ep_config_put(cfg, o->env, val) != 0) {
        snprintf(err, errlen, "%s: the queue providers' settings exceed %zu bytes", o->env,
                 sizeof(cfg->provider_settings));
        rc = EP_ECONFIG;
    }
    return rc;
}

/* The providers' settings from the environment, in table order (an alias first: the name wins). */
static int load_provider_env(ep_config_t *cfg, const ep_opt_table_t *t, char *err, size_t errlen)
{
    int rc;

    for (size_t k = 0; t->aliases && t->aliases[k]; k += 2) {
        const char *v = getenv(t->aliases[k]);
        const opt_t *o = ep_opt_find_env(t->opts, t->n_opts, t->aliases[k + 1]);
        if (o && v && *v && (rc = put_provider(cfg, t, o, v, err, errlen)) != 0) {
            return rc;
        }
    }
    for (size_t i = 0; i < t->n_opts; i++) {
        const char *v = getenv(t->opts[i].env);
        /* An empty variable counts as unset, as in the seed. */
        if (v && *v && (rc = put_provider(cfg, t, &t->opts[i], v, err, errlen)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* QUEUE_TYPE names one of the providers (any case; kept as the provider spells it). */
static int check_queue_type(ep_config_t *cfg, const ep_opt_table_t *providers, size_t n, char *err,
                            size_t errlen)
{
    char names[256] = "";
    size_t off = 0;

    if (n == 0) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(providers[i].name, cfg->queue_type) == 0) {
            snprintf(cfg->queue_type, sizeof(cfg->queue_type), "%s", providers[i].name);
            return 0;
        }
        if (off < sizeof(names)) {
            int w =
                snprintf(names + off, sizeof(names) - off, "%s%s", i ? "|" : "", providers[i].name);
            off += w > 0 ? (size_t)w : 0;
        }
    }
    snprintf(err, errlen, "QUEUE_TYPE: '%s' is not one of %s", cfg->queue_type, names);
    return EP_ECONFIG;
}

/* Every provider's settings together, as its provider will read them (its check included). */
static int check_providers(const ep_config_t *cfg, const ep_opt_table_t *providers, size_t n,
                           char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        void *opts;
        int rc;

        if (providers[i].n_opts == 0) {
            continue;
        }
        opts = ep_malloc(providers[i].size);
        rc = ep_config_table_parse(cfg, &providers[i], opts, err, errlen);
        ep_free(opts);
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* The environment: the core's options (given[i]: options[i]'s value), then the providers'. */
static int load_env(ep_config_t *cfg, const ep_opt_table_t *providers, size_t n, const char **given,
                    char *err, size_t errlen)
{
    int rc;

    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv(options[i].env);
        /* An empty variable counts as unset, as in the seed. */
        if (v && *v && (rc = ep_opt_set(cfg, &options[i], v, err, errlen)) != 0) {
            return rc;
        }
        if (v && *v) {
            given[i] = v;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if ((rc = load_provider_env(cfg, &providers[i], err, errlen)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* argv's flags (--name value or --name=value), after the environment; --help: EP_ENOENT. */
static int load_flags(ep_config_t *cfg, const ep_opt_table_t *providers, size_t n, int argc,
                      char **argv, const char **given, char *err, size_t errlen)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *name, *eq, *val;
        const ep_opt_table_t *t = NULL;
        const opt_t *o;
        size_t len;
        int rc;

        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return EP_ENOENT;
        }
        if (strncmp(a, EP_STRLIT("--")) != 0) {
            snprintf(err, errlen, "unexpected argument '%s' (see --help)", a);
            return EP_ECONFIG;
        }
        name = a + 2;
        eq = strchr(name, '=');
        len = eq ? (size_t)(eq - name) : strlen(name);
        o = ep_opt_find_flag(options, N_OPTIONS, name, len);
        if (o == NULL && (o = find_provider_flag(providers, n, name, len, &t)) == NULL) {
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
        if (t != NULL) {
            rc = put_provider(cfg, t, o, val, err, errlen);
        } else if ((rc = ep_opt_set(cfg, o, val, err, errlen)) == 0) {
            given[o - options] = val;
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

int ep_config_load(ep_config_t *cfg, const ep_opt_table_t *providers, size_t n, int argc,
                   char **argv, char *err, size_t errlen)
{
    const char *given[N_OPTIONS] = {0}; /* the value each option was given, if any */
    int rc;

    ep_config_defaults(cfg);
    if ((rc = load_env(cfg, providers, n, given, err, errlen)) != 0 ||
        (rc = load_flags(cfg, providers, n, argc, argv, given, err, errlen)) != 0 ||
        (rc = check_queue_type(cfg, providers, n, err, errlen)) != 0 ||
        (rc = check_providers(cfg, providers, n, err, errlen)) != 0 ||
        (rc = check_relations(cfg, given, err, errlen)) != 0) {
        return rc;
    }
    return tls_check(cfg, err, errlen);
}

void ep_config_usage(FILE *f, const ep_opt_table_t *providers, size_t n)
{
    fprintf(f, "Options (flag, environment variable, default):\n");
    ep_opt_usage(f, options, N_OPTIONS);
    if (n == 0) {
        return;
    }
    fprintf(f, "\nQueue providers (QUEUE_TYPE):");
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "%s %s", i ? "," : "", providers[i].name);
    }
    fprintf(f, "\n");
    for (size_t i = 0; i < n; i++) {
        if (providers[i].n_opts > 0) {
            fprintf(f, "\nOptions of the %s queue (QUEUE_TYPE=%s):\n", providers[i].name,
                    providers[i].name);
            ep_opt_usage(f, providers[i].opts, providers[i].n_opts);
        }
    }
}
