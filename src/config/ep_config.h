#ifndef EP_CONFIG_H
#define EP_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "config/ep_opt.h"

/*
 * Configuration: the seeds' environment variables with their defaults, a
 * command-line flag for each (--queue-size 2000 or --queue-size=2000), flags
 * winning over the environment. The table in ep_config.c is the single source
 * of truth (names, defaults, help text, validation). Durations are written as
 * Go writes them ("15s", "500ms", "1m30s"; see ep_duration.h); a bare number
 * keeps the option's historic unit (HTTP_IDLE_TIMEOUT=30 is 30 s).
 *
 * The queue providers own their settings (NATS_URL, KAFKA_TOPIC, QUEUE_DIR...):
 * each has a table of its own (ep_opt_table_t), which ep_config_load reads from
 * the environment and flags, validates and keeps as text in provider_settings,
 * and --help lists per provider. QUEUE_TYPE must name one of those providers.
 */

enum { EP_LOG_FORMAT_TEXT, EP_LOG_FORMAT_JSON };                              /* LOG_FORMAT */
enum { EP_ANALYTICS_PUSH_AUTO, EP_ANALYTICS_PUSH_ON, EP_ANALYTICS_PUSH_OFF }; /* ANALYTICS_PUSH */

typedef struct ep_config_s {
    /* ports and addresses */
    char bind_addr[64];      /* BIND_ADDR (0.0.0.0) */
    int api_port;            /* API_PORT (8080) */
    char server_address[80]; /* SERVER_ADDRESS host:port of the gateway ("": BIND_ADDR:API_PORT) */
    char api_bind_addr[64];  /* the gateway's address from SERVER_ADDRESS ("": BIND_ADDR) */
    int metrics_port;        /* METRICS_PORT: a listener for /metrics and /health (0: none) */
    int ingest_port;         /* INGEST_PORT (8081) */
    int processor_port;      /* PROCESSOR_PORT (8082) */
    int analytics_port;      /* ANALYTICS_PORT (8083) */
    /* gRPC API (issue 16) */
    int grpc_producer_port;            /* GRPC_PRODUCER_PORT (50051; 0: off) */
    int grpc_consumer_port;            /* GRPC_CONSUMER_PORT (50052; 0: off) */
    int grpc_analytics_port;           /* GRPC_ANALYTICS_PORT (50053; 0: off) */
    int64_t grpc_max_message;          /* GRPC_MAX_MESSAGE_SIZE bytes (4 MiB) */
    int64_t grpc_keepalive_ms;         /* GRPC_KEEPALIVE_TIME (2h) */
    int64_t grpc_keepalive_timeout_ms; /* GRPC_KEEPALIVE_TIMEOUT (20s) */

    char ingest_url[256];    /* INGEST_URL (http://localhost:8081) */
    char processor_url[256]; /* PROCESSOR_URL (http://localhost:8082) */
    char analytics_url[256]; /* ANALYTICS_URL (http://localhost:8083) */
    /* queue: the provider; its own settings live in its own table (src/queue/<name>/) */
    char queue_type[32]; /* QUEUE_TYPE (memory): one of the registered providers */
    /* The settings of the providers' tables as given (environment, then flags):
     * "NAME\0value\0"..., one entry a name. A provider turns those of its table
     * into its own options struct when a queue is made (ep_config_table_parse). */
    char provider_settings[4096];
    size_t provider_settings_len;
    /* processing */
    int max_attempts;       /* PROCESSOR_MAX_ATTEMPTS before dead-lettering (5) */
    int dedup_window_s;     /* DEDUP_WINDOW seconds a client id is remembered (300) */
    int64_t dedup_capacity; /* DEDUP_CAPACITY ids remembered at most (1000000) */
    int64_t max_batch_body; /* HTTP_MAX_BATCH_BODY bytes of a batch request (32 MiB) */
    int batch_max_events;   /* BATCH_MAX_EVENTS per batch request (100000) */
    int workers;            /* PROCESSOR_WORKERS (4) */
    int batch_size;         /* PROCESSOR_BATCH (64) */
    char sink[512];         /* PROCESSOR_SINK (none | stdout | file:PATH | http(s)://...) */

    /* the webhook sink (PROCESSOR_SINK=http(s)://...) */
    int sink_batch;           /* PROCESSOR_SINK_BATCH events per POST (500) */
    int64_t sink_batch_bytes; /* PROCESSOR_SINK_BATCH_BYTES per POST (1 MiB) */
    int sink_linger_ms;       /* PROCESSOR_SINK_LINGER to fill a POST (5ms) */
    int sink_timeout_ms;      /* PROCESSOR_SINK_TIMEOUT of one POST (10s) */
    int sink_retries;         /* PROCESSOR_SINK_RETRIES after a failed POST (5) */
    int sink_backoff_ms;      /* PROCESSOR_SINK_BACKOFF first retry delay (100ms) */
    int sink_backoff_max_ms;  /* PROCESSOR_SINK_BACKOFF_MAX cap of the delay (10s) */

    /* http */
    int http_threads;      /* HTTP_THREADS (1) */
    int64_t max_body;      /* HTTP_MAX_BODY bytes (1 MiB) */
    int max_header;        /* HTTP_MAX_HEADER bytes (8 KiB) */
    int idle_timeout_ms;   /* HTTP_IDLE_TIMEOUT (30s) */
    int max_connections;   /* HTTP_MAX_CONNECTIONS (4096) */
    int max_per_client;    /* HTTP_MAX_CONNECTIONS_PER_CLIENT (256; 0 = no limit) */
    int header_timeout_ms; /* HTTP_HEADER_TIMEOUT (10s) */
    int body_timeout_ms;   /* HTTP_BODY_TIMEOUT (20s) */
    int body_min_rate;     /* HTTP_BODY_MIN_RATE bytes/s (500) */
    int send_timeout_ms;   /* HTTP_SEND_TIMEOUT (30s) */
    int read_timeout_ms;   /* SERVER_READ_TIMEOUT: a whole request, from its first byte (0: off) */
    int write_timeout_ms;  /* SERVER_WRITE_TIMEOUT: a whole answer, from its first byte (0: off) */
    int64_t memory_limit;  /* HTTP_MEMORY_LIMIT bytes per port (64 MiB) */
    int upstream_timeout_ms; /* UPSTREAM_TIMEOUT_MS (3s) */
    int status_timeout_ms;   /* STATUS_TIMEOUT_MS (1s) */
    int retry_after_s;       /* RETRY_AFTER whole seconds (1) */
    /* circuit breakers on the hops (gateway -> ingest, ingest -> processor or broker) */
    int breaker_failures; /* CIRCUIT_BREAKER_FAILURES consecutive failures that open (5; 0 = off) */
    int breaker_open_ms;  /* CIRCUIT_BREAKER_OPEN_MS cool-down before the probe (5s) */
    /* events */
    int max_meta_keys; /* EVENT_MAX_KEYS (64) */
    int max_data_len;  /* EVENT_MAX_DATA (262144) */
    /* lifecycle and logs */
    int shutdown_timeout_ms; /* SHUTDOWN_TIMEOUT = SERVER_SHUTDOWN_TIMEOUT (10s) */
    int log_level;           /* LOG_LEVEL (info): an ep_log_level_t, debug..error */
    int log_format;          /* LOG_FORMAT (text): EP_LOG_FORMAT_* */
    int stats_interval_ms;   /* STATS_INTERVAL between summary log lines (60s; 0 = off) */
    /* analytics */
    int analytics_push;             /* ANALYTICS_PUSH (auto): EP_ANALYTICS_PUSH_* */
    int analytics_push_interval_ms; /* ANALYTICS_PUSH_INTERVAL_MS (1s) */
    /* observability */
    int metrics_enabled;      /* METRICS_ENABLED (true): 1 or 0 */
    double access_log_sample; /* ACCESS_LOG_SAMPLE fraction of requests logged, 0..1 (0) */
    /* browser access */
    char cors_allowed_origins[2048]; /* CORS_ALLOWED_ORIGINS: origins, or * ("": none) */
    /* access control (issue 15, README "Running eventpipe on the internet") */
    char api_keys[4096];        /* API_KEYS: comma-separated keys, named key1, key2, ... */
    char api_keys_file[512];    /* API_KEYS_FILE: "name key|sha256:<hex> [rate=N] [burst=N]" */
    int api_keys_protect_reads; /* API_KEYS_PROTECT_READS (false): 1 or 0 */
    char internal_token[256];   /* INTERNAL_TOKEN: Bearer token of role-to-role routes */
    int64_t rate_limit;         /* RATE_LIMIT_EVENTS_PER_SEC per key or address (0 = off) */
    int64_t rate_limit_burst;   /* RATE_LIMIT_BURST events (0 = one second's worth) */
    char app_name[64];          /* APP_NAME (eventpipe): JSON log lines, app_info metric */
    char app_version[64];       /* APP_VERSION (the build's version) */
    char app_env[64];           /* APP_ENV (development) */
    /* TLS (issue 15): "" = unset */
    char tls_cert_file[512];      /* TLS_CERT_FILE: PEM chain; with the key, every listener TLS */
    char tls_key_file[512];       /* TLS_KEY_FILE: PEM private key */
    char tls_ca_file[512];        /* TLS_CA_FILE: CAs the hops verify servers with ("": system) */
    char tls_client_ca_file[512]; /* TLS_CLIENT_CA_FILE: mutual TLS, clients' CAs */
} ep_config_t;

/** Fills cfg with every default of the core's table (no provider settings). */
void ep_config_defaults(ep_config_t *cfg);

/**
 * Loads the environment, then argv flags (argv[0] is skipped; parsing stops at
 * the first non-flag), for the core's table and the n providers' tables (each
 * named by its provider; QUEUE_TYPE must be one of those names when n > 0).
 * On an invalid value or unknown flag returns EP_ECONFIG and writes "NAME: why"
 * into err. --help is reported as EP_ENOENT (caller prints ep_config_usage and
 * exits 0).
 */
int ep_config_load(ep_config_t *cfg, const ep_opt_table_t *providers, size_t n, int argc,
                   char **argv, char *err, size_t errlen);

/** Prints every option (flag, variable, default, description) to f, providers' per provider. */
void ep_config_usage(FILE *f, const ep_opt_table_t *providers, size_t n);

/**
 * Gives a provider's setting NAME the value val in cfg, as the environment
 * would (replacing an earlier value); checked when the provider parses it.
 * Returns 0 or EP_E2BIG (provider_settings is full).
 */
int ep_config_put(ep_config_t *cfg, const char *name, const char *val);

/**
 * Fills opts (t->size bytes, the owner's struct) from t's defaults, then the
 * values cfg holds for t's names, then t->check. Returns 0 or EP_ECONFIG with
 * "NAME: why" in err.
 */
int ep_config_table_parse(const ep_config_t *cfg, const ep_opt_table_t *t, void *opts, char *err,
                          size_t errlen);

#endif /* EP_CONFIG_H */
