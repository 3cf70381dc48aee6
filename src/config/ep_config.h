#ifndef EP_CONFIG_H
#define EP_CONFIG_H

#include <stdint.h>
#include <stdio.h>

/*
 * Configuration: the seeds' environment variables with their defaults, a
 * command-line flag for each (--queue-size 2000 or --queue-size=2000), flags
 * winning over the environment. The table in ep_config.c is the single source
 * of truth (names, defaults, help text, validation). Durations are written as
 * Go writes them ("15s", "500ms", "1m30s"; see ep_duration.h); a bare number
 * keeps the option's historic unit (HTTP_IDLE_TIMEOUT=30 is 30 s).
 */

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
    /* queue */
    char queue_type[32];           /* QUEUE_TYPE (memory) */
    int64_t queue_size;            /* QUEUE_SIZE (1000) */
    char nats_url[256];            /* NATS_URL */
    char kafka_brokers[256];       /* KAFKA_BROKERS */
    char kafka_topic[128];         /* KAFKA_TOPIC */
    char kafka_group[128];         /* KAFKA_CONSUMER_GROUP */
    char composite_providers[128]; /* COMPOSITE_PROVIDERS */
    char composite_strategy[32];   /* COMPOSITE_STRATEGY */
    /* disk queue */
    char queue_dir[512];           /* QUEUE_DIR (./eventpipe-data/queue) */
    char queue_fsync[32];          /* QUEUE_FSYNC: always | never | <interval ms> (always) */
    int64_t queue_segment_bytes;   /* QUEUE_SEGMENT_SIZE (64 MiB) */
    int64_t queue_retention_bytes; /* QUEUE_RETENTION_BYTES (1 GiB; 0 = no size bound) */
    int64_t queue_retention_age_s; /* QUEUE_RETENTION_AGE seconds (7 days; 0 = no age bound) */
    /* NATS JetStream */
    char nats_stream[64];       /* NATS_STREAM (DIPLOM_STREAM) */
    char nats_subject[128];     /* NATS_SUBJECT (diplom.messages) */
    char nats_durable[64];      /* NATS_DURABLE (processor) */
    char nats_dlq_subject[128]; /* NATS_DLQ_SUBJECT (diplom.dlq) */
    /* Kafka (other KAFKA_* variables pass through to librdkafka: KAFKA_SASL_MECHANISM=x
     * sets sasl.mechanism=x) */
    char kafka_compression[16]; /* KAFKA_COMPRESSION (snappy) */
    int kafka_partitions;       /* KAFKA_PARTITIONS for a topic created here (6) */
    int kafka_max_retries;      /* KAFKA_MAX_RETRIES (3) */
    int kafka_batch_size;       /* KAFKA_BATCH_SIZE (100; 10000 max per librdkafka batch) */
    int kafka_linger_ms;        /* KAFKA_LINGER_MS (5) */
    char kafka_client_id[64];   /* KAFKA_CLIENT_ID (eventpipe) */
    char kafka_dlq_topic[128];  /* KAFKA_DLQ_TOPIC (diplom-messages-dlq) */
    /* processing */
    int max_attempts;       /* PROCESSOR_MAX_ATTEMPTS before dead-lettering (5) */
    int dedup_window_s;     /* DEDUP_WINDOW seconds a client id is remembered (300) */
    int64_t dedup_capacity; /* DEDUP_CAPACITY ids remembered at most (1000000) */
    int64_t max_batch_body; /* HTTP_MAX_BATCH_BODY bytes of a batch request (32 MiB) */
    int batch_max_events;   /* BATCH_MAX_EVENTS per batch request (100000) */
    int workers;            /* PROCESSOR_WORKERS (4) */
    int batch_size;         /* PROCESSOR_BATCH (64) */
    char sink[512];         /* PROCESSOR_SINK (none | stdout | file:PATH) */
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
    char log_level[16];      /* LOG_LEVEL (info) */
    char log_format[16];     /* LOG_FORMAT (text) */
    int stats_interval_ms;   /* STATS_INTERVAL between summary log lines (60s; 0 = off) */
    /* analytics */
    char analytics_push[8];         /* ANALYTICS_PUSH: auto | on | off (auto) */
    int analytics_push_interval_ms; /* ANALYTICS_PUSH_INTERVAL_MS (1s) */
    /* observability */
    char metrics_enabled[8];  /* METRICS_ENABLED: true | false (true) */
    double access_log_sample; /* ACCESS_LOG_SAMPLE fraction of requests logged, 0..1 (0) */
    /* browser access */
    char cors_allowed_origins[2048]; /* CORS_ALLOWED_ORIGINS: origins, or * ("": none) */
    /* access control (issue 15, README "Running eventpipe on the internet") */
    char api_keys[4096];            /* API_KEYS: comma-separated keys, named key1, key2, ... */
    char api_keys_file[512];        /* API_KEYS_FILE: "name key|sha256:<hex> [rate=N] [burst=N]" */
    char api_keys_protect_reads[8]; /* API_KEYS_PROTECT_READS: true | false (false) */
    char internal_token[256];       /* INTERNAL_TOKEN: Bearer token of role-to-role routes */
    int64_t rate_limit;             /* RATE_LIMIT_EVENTS_PER_SEC per key or address (0 = off) */
    int64_t rate_limit_burst;       /* RATE_LIMIT_BURST events (0 = one second's worth) */
    char app_name[64];              /* APP_NAME (eventpipe): JSON log lines, app_info metric */
    char app_version[64];           /* APP_VERSION (the build's version) */
    char app_env[64];               /* APP_ENV (development) */
    /* TLS (issue 15): "" = unset */
    char tls_cert_file[512];      /* TLS_CERT_FILE: PEM chain; with the key, every listener TLS */
    char tls_key_file[512];       /* TLS_KEY_FILE: PEM private key */
    char tls_ca_file[512];        /* TLS_CA_FILE: CAs the hops verify servers with ("": system) */
    char tls_client_ca_file[512]; /* TLS_CLIENT_CA_FILE: mutual TLS, clients' CAs */
} ep_config_t;

/** Fills cfg with every default. */
void ep_config_defaults(ep_config_t *cfg);

/**
 * Loads the environment, then argv flags (argv[0] is skipped; parsing stops at
 * the first non-flag). On an invalid value or unknown flag returns EP_ECONFIG
 * and writes "NAME: why" into err. --help is reported as EP_ENOENT (caller
 * prints ep_config_usage and exits 0).
 */
int ep_config_load(ep_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/** Prints every option (flag, variable, default, description) to f. */
void ep_config_usage(FILE *f);

#endif /* EP_CONFIG_H */
