/*
 * librdkafka configuration for the "kafka" queue provider: eventpipe's own
 * settings mapped to librdkafka properties, the KAFKA_* passthrough, and the
 * mapping of librdkafka errors to EP_E* codes.
 *
 * Retries and backoff. librdkafka 2.0 retries a failed produce request
 * message.send.max.retries times (KAFKA_MAX_RETRIES), waiting retry.backoff.ms
 * between tries; it has no retry.backoff.max.ms (added in 2.4), so the
 * per-request backoff is constant. What does grow exponentially is the
 * reconnect backoff (reconnect.backoff.ms doubling up to
 * reconnect.backoff.max.ms), which is what spaces out retries during a broker
 * outage, and message.timeout.ms bounds the whole attempt so a publish always
 * completes.
 *
 * Delivery timeout. A publish must be answered within UPSTREAM_TIMEOUT_MS (a
 * gateway in front waits that long), and a failure must be true: the record
 * will not be written later. So librdkafka itself fails the record by then:
 * message.timeout.ms is UPSTREAM_TIMEOUT_MS less the time librdkafka takes to
 * report it (it scans for timed-out records about once a second from threads
 * that wake about once a second; with the mock cluster a report came 1.6-1.8 s
 * after message.timeout.ms), and at least a third of it. With the default 3 s
 * that is 1 s; raise UPSTREAM_TIMEOUT_MS (or set KAFKA_MESSAGE_TIMEOUT_MS) for
 * a slower cluster. While every broker is known to be down, publish does not
 * produce at all (ep_queue_kafka.c): only publishes made before that is known
 * wait for the timeout.
 * Re-producing from the application after a failed delivery report
 * was rejected on purpose: it would get a new idempotence sequence number and
 * could duplicate or reorder what the idempotent producer already protects.
 */
#include "queue/kafka/ep_queue_kafka_int.h"

#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define RETRY_BACKOFF_MS         100  /* between produce retries (constant in librdkafka 2.0) */
#define RECONNECT_BACKOFF_MS     100  /* first reconnect delay ... */
#define RECONNECT_BACKOFF_MAX_MS 5000 /* ... doubling up to this */
#define MSG_TIMEOUT_SCAN_MS      2000 /* how late librdkafka may report a timed-out record */
#define MSG_TIMEOUT_MAX_MS       30000

/* eventpipe's own KAFKA_* settings; every other KAFKA_* passes through (is_own_name). */
#define S(f) offsetof(ep_kafka_opts_t, f), sizeof(((ep_kafka_opts_t *)0)->f)
#define N(f) offsetof(ep_kafka_opts_t, f), 0

static const ep_opt_t kafka_opt_rows[] = {
    {EP_OPT_STR, "KAFKA_BROKERS", "kafka-brokers", "localhost:9092", S(brokers), 0, 0, NULL,
     "Kafka bootstrap servers, comma-separated"},
    {EP_OPT_STR, "KAFKA_TOPIC", "kafka-topic", "diplom-messages", S(topic), 0, 0, NULL,
     "Kafka topic"},
    {EP_OPT_STR, "KAFKA_CONSUMER_GROUP", "kafka-group", "processor-group", S(group), 0, 0, NULL,
     "Kafka consumer group"},
    {EP_OPT_ENUM, "KAFKA_COMPRESSION", "kafka-compression", "snappy", S(compression), 0, 0,
     "none|gzip|snappy|lz4|zstd", "Kafka producer compression"},
    {EP_OPT_INT, "KAFKA_PARTITIONS", "kafka-partitions", "6", N(partitions), 1, 100000, NULL,
     "partitions of a topic eventpipe creates"},
    {EP_OPT_INT, "KAFKA_REPLICATION_FACTOR", "kafka-replication-factor", "0", N(replication), 0,
     1000, NULL,
     "replicas of each partition of a topic eventpipe creates (0: as many as brokers, at "
     "most 3)"},
    {EP_OPT_INT, "KAFKA_MAX_RETRIES", "kafka-max-retries", "3", N(max_retries), 0, 1000, NULL,
     "publish retries (exponential backoff)"},
    {EP_OPT_INT, "KAFKA_BATCH_SIZE", "kafka-batch-size", "10000", N(batch_size), 1, 1000000, NULL,
     "most events in one producer batch (batch.num.messages)"},
    {EP_OPT_DURATION_MS, "KAFKA_LINGER_MS", "kafka-linger", "1ms", S(linger_ms), 0, 60000, "ms",
     "how long the producer waits to fill a batch (every ingest answer waits for it)"},
    {EP_OPT_STR, "KAFKA_CLIENT_ID", "kafka-client-id", "eventpipe", S(client_id), 0, 0, NULL,
     "Kafka client.id"},
    {EP_OPT_STR, "KAFKA_DLQ_TOPIC", "kafka-dlq-topic", "diplom-messages-dlq", S(dlq_topic), 0, 0,
     NULL, "topic of dead-lettered events"},
};

#undef S
#undef N

/* Seed 003 spells the broker list KAFKA_BROKER_LIST; KAFKA_BROKERS wins when both are set. */
static const char *const kafka_aliases[] = {"KAFKA_BROKER_LIST", "KAFKA_BROKERS", NULL};

const ep_opt_table_t ep__kafka_options = {
    .name = "kafka",
    .opts = kafka_opt_rows,
    .n_opts = sizeof(kafka_opt_rows) / sizeof(kafka_opt_rows[0]),
    .size = sizeof(ep_kafka_opts_t),
    .aliases = kafka_aliases,
};

int ep__kafka_own_consumer(void *opts, const char *name, char *err, size_t errlen)
{
    ep_kafka_opts_t *o = opts;
    char group[sizeof(o->group)];

    if (name[0] == '\0') {
        snprintf(err, errlen, "KAFKA_CONSUMER_GROUP: empty consumer name");
        return EP_EINVAL;
    }
    /* A group of this process alone: a new one starts at the earliest offset. */
    snprintf(group, sizeof(group), "%.90s-%.20s-%s", o->group, name, ep_queue_instance_tag());
    memcpy(o->group, group, sizeof(group));
    return 0;
}

/*
 * Variables that Kafka distributions and container images set for the broker
 * and its JVM, not for clients: skipped, so they do not stop our start-up.
 */
static const char *const foreign_names[] = {
    "KAFKA_HOME",     "KAFKA_OPTS",      "KAFKA_HEAP_OPTS",         "KAFKA_JVM_PERFORMANCE_OPTS",
    "KAFKA_JMX_OPTS", "KAFKA_JMX_PORT",  "KAFKA_LOG4J_OPTS",        "KAFKA_GC_LOG_OPTS",
    "KAFKA_LOG_DIRS", "KAFKA_DEBUG",     "KAFKA_VERSION",           "KAFKA_CLUSTER_ID",
    "KAFKA_NODE_ID",  "KAFKA_BROKER_ID", "KAFKA_ZOOKEEPER_CONNECT", NULL,
};

static int in_list(const char *const *list, const char *name, size_t len)
{
    for (size_t i = 0; list[i]; i++) {
        if (strlen(list[i]) == len && memcmp(list[i], name, len) == 0) {
            return 1;
        }
    }
    return 0;
}

static int is_own_name(const char *name, size_t len)
{
    for (size_t i = 0; i < ep__kafka_options.n_opts; i++) {
        if (strlen(kafka_opt_rows[i].env) == len && memcmp(kafka_opt_rows[i].env, name, len) == 0) {
            return 1;
        }
    }
    return in_list(kafka_aliases, name, len) || in_list(foreign_names, name, len);
}

void ep__kafka_props_free(kafka_prop_t *props, size_t n)
{
    for (size_t i = 0; i < n && props; i++) {
        ep_free(props[i].name);
        ep_free(props[i].value);
        ep_free(props[i].var);
    }
    ep_free(props);
}

int ep__kafka_props_from_env(kafka_prop_t **props, size_t *n, char *err, size_t errlen)
{
    rd_kafka_conf_t *probe = rd_kafka_conf_new();
    kafka_prop_t *v = NULL;
    size_t cnt = 0, cap = 0;
    char errstr[256];

    *props = NULL;
    *n = 0;
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        size_t len;
        char *name;

        if (strncmp(*e, EP_STRLIT("KAFKA_")) != 0 || eq == NULL) {
            continue;
        }
        len = (size_t)(eq - *e);
        if (len == 6 || is_own_name(*e, len)) {
            continue;
        }
        name = ep_strndup(*e + 6, len - 6);
        for (char *c = name; *c; c++) {
            *c = *c == '_' ? '.' : (char)tolower((unsigned char)*c);
        }
        /* Check the property against librdkafka now, so a typo stops the start-up. */
        if (rd_kafka_conf_set(probe, name, eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
            snprintf(err, errlen, "%.*s: not a valid librdkafka setting %s: %s", (int)len, *e, name,
                     errstr);
            ep_free(name);
            goto err;
        }
        if (cnt == cap) {
            cap = cap ? cap * 2 : 8;
            v = ep_realloc(v, cap * sizeof(*v));
        }
        v[cnt].name = name;
        v[cnt].value = ep_strdup(eq + 1);
        v[cnt].var = ep_strndup(*e, len);
        cnt++;
    }
    rd_kafka_conf_destroy(probe);
    *props = v;
    *n = cnt;
    return 0;

err:
    rd_kafka_conf_destroy(probe);
    ep__kafka_props_free(v, cnt);
    return EP_ECONFIG;
}

/* Sets one property; on failure writes "what: why" into err. */
static int set(rd_kafka_conf_t *conf, const char *what, const char *name, const char *value,
               char *err, size_t errlen)
{
    char errstr[256];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        snprintf(err, errlen, "%s: cannot set librdkafka %s=%s: %s", what, name, value, errstr);
        return EP_ECONFIG;
    }
    return 0;
}

static int set_int(rd_kafka_conf_t *conf, const char *what, const char *name, long long value,
                   char *err, size_t errlen)
{
    char buf[32];

    snprintf(buf, sizeof(buf), "%lld", value);
    return set(conf, what, name, buf, err, errlen);
}

/* Applies the passthrough properties, last so they can override any default above. */
static int apply_props(kafka_ctx_t *ctx, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    for (size_t i = 0; i < ctx->n_props; i++) {
        if (set(conf, ctx->props[i].var, ctx->props[i].name, ctx->props[i].value, err, errlen)) {
            return EP_ECONFIG;
        }
    }
    return 0;
}

/* What both clients share (reconnection, the socket), then the passthrough, last. */
static int set_shared(kafka_ctx_t *ctx, rd_kafka_conf_t *conf, char *err, size_t errlen)
{
    if (set_int(conf, "kafka", "reconnect.backoff.ms", RECONNECT_BACKOFF_MS, err, errlen) ||
        set_int(conf, "kafka", "reconnect.backoff.max.ms", RECONNECT_BACKOFF_MAX_MS, err, errlen) ||
        set(conf, "kafka", "log.connection.close", "false", err, errlen) ||
        /* As the Java client: a request behind an unacknowledged one is not held back. */
        set(conf, "kafka", "socket.nagle.disable", "true", err, errlen)) {
        return EP_ECONFIG;
    }
    return apply_props(ctx, conf, err, errlen);
}

int ep__kafka_producer_conf(kafka_ctx_t *ctx, const ep_config_t *cfg, const ep_kafka_opts_t *opts,
                            rd_kafka_conf_t **out, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    long long upstream = cfg->upstream_timeout_ms > 0 ? cfg->upstream_timeout_ms : 3000;
    long long timeout = upstream - MSG_TIMEOUT_SCAN_MS;
    int batch = opts->batch_size;

    *out = NULL;
    if (timeout < upstream / 3) {
        timeout = upstream / 3;
    }
    if (timeout < 1) {
        timeout = 1; /* 0 would mean "no timeout" to librdkafka */
    }
    if (timeout > MSG_TIMEOUT_MAX_MS) {
        timeout = MSG_TIMEOUT_MAX_MS;
    }
    if (batch < 1) {
        batch = 1;
    }
    if (set(conf, "KAFKA_BROKERS", "bootstrap.servers", ctx->brokers, err, errlen) ||
        set(conf, "KAFKA_CLIENT_ID", "client.id", ctx->client_id, err, errlen) ||
        /* Idempotent: acks=all, no duplicates or reordering from retries. */
        set(conf, "kafka", "enable.idempotence", "true", err, errlen) ||
        set(conf, "kafka", "acks", "all", err, errlen) ||
        set_int(conf, "KAFKA_LINGER_MS", "linger.ms", opts->linger_ms, err, errlen) ||
        set_int(conf, "KAFKA_BATCH_SIZE", "batch.num.messages", batch, err, errlen) ||
        set(conf, "KAFKA_COMPRESSION", "compression.type", opts->compression, err, errlen) ||
        set_int(conf, "KAFKA_MAX_RETRIES", "message.send.max.retries", opts->max_retries, err,
                errlen) ||
        set_int(conf, "kafka", "retry.backoff.ms", RETRY_BACKOFF_MS, err, errlen) ||
        /* A publish always completes: delivered, or failed for good within UPSTREAM_TIMEOUT_MS. */
        set_int(conf, "UPSTREAM_TIMEOUT_MS", "message.timeout.ms", timeout, err, errlen) ||
        /* Same partition for a key as the Java client's default partitioner. */
        set(conf, "kafka", "partitioner", "murmur2_random", err, errlen) ||
        /* Broker states for ready() and stats, once a second. */
        set(conf, "kafka", "statistics.interval.ms", "1000", err, errlen) ||
        set_shared(ctx, conf, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return EP_ECONFIG;
    }
    *out = conf;
    return 0;
}

/* 1 when the (possibly passed-through) partition.assignment.strategy is cooperative: librdkafka
 * refuses to mix cooperative and eager assignors, so one cooperative name decides. */
static int is_cooperative(rd_kafka_conf_t *conf)
{
    char strategy[256];
    size_t n = sizeof(strategy);

    return rd_kafka_conf_get(conf, "partition.assignment.strategy", strategy, &n) ==
               RD_KAFKA_CONF_OK &&
           strstr(strategy, "cooperative") != NULL;
}

int ep__kafka_consumer_conf(kafka_ctx_t *ctx, rd_kafka_conf_t **out, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    *out = NULL;
    if (set(conf, "KAFKA_BROKERS", "bootstrap.servers", ctx->brokers, err, errlen) ||
        set(conf, "KAFKA_CLIENT_ID", "client.id", ctx->client_id, err, errlen) ||
        set(conf, "KAFKA_CONSUMER_GROUP", "group.id", ctx->group, err, errlen) ||
        /* Offsets are committed by us, only after processing (see ep_queue_kafka.c). */
        set(conf, "kafka", "enable.auto.commit", "false", err, errlen) ||
        set(conf, "kafka", "enable.auto.offset.store", "false", err, errlen) ||
        set(conf, "kafka", "auto.offset.reset", "earliest", err, errlen) ||
        set_shared(ctx, conf, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return EP_ECONFIG;
    }
    ctx->cooperative = is_cooperative(conf);
    *out = conf;
    return 0;
}

int ep__kafka_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return EP_EFULL;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        return EP_E2BIG;
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return EP_ECLOSED;
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__CONFLICT:
        return EP_EINVAL;
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
        return EP_ENOTSUP;
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
        return EP_EIO;
    default:
        /*
         * Transport errors, all brokers down, timeouts, leader elections,
         * unknown topic, not enough replicas: the cluster is (for now) not
         * able to take the event. 503 with Retry-After is the right answer.
         */
        return EP_EUNAVAIL;
    }
}
