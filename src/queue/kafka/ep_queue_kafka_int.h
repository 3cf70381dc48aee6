#ifndef EP_QUEUE_KAFKA_INT_H
#define EP_QUEUE_KAFKA_INT_H

/*
 * Private layout of the "kafka" queue provider, shared by ep_queue_kafka.c
 * (provider ops, producing, consuming), ep_queue_kafka_offsets.c (offset
 * tracking, commits, rebalance), ep_queue_kafka_admin.c (client callbacks,
 * topics, lag) and ep_queue_kafka_config.c (librdkafka configuration,
 * passthrough, error mapping). Nothing here leaves
 * src/queue/kafka/: rd_kafka_resp_err_t is mapped to EP_E* at this boundary.
 */

#include "base/ep_buf.h"
#include "config/ep_config.h"
#include "event/ep_event.h"
#include "queue/ep_queue.h"
#include "queue/ep_redeliver.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* A KAFKA_<X> variable passed through to librdkafka as property x (lowercase, '_' -> '.'). */
/* The provider's settings (its table, ep__kafka_options, in ep_queue_kafka_config.c). */
typedef struct ep_kafka_opts_s {
    char brokers[256];    /* KAFKA_BROKERS (seed 003: KAFKA_BROKER_LIST) */
    char topic[128];      /* KAFKA_TOPIC */
    char group[128];      /* KAFKA_CONSUMER_GROUP */
    char compression[16]; /* KAFKA_COMPRESSION */
    int partitions;       /* KAFKA_PARTITIONS of a topic created here */
    int replication;      /* KAFKA_REPLICATION_FACTOR of a topic created here (0: automatic) */
    int max_retries;      /* KAFKA_MAX_RETRIES */
    int batch_size;       /* KAFKA_BATCH_SIZE */
    int linger_ms;        /* KAFKA_LINGER_MS */
    char client_id[64];   /* KAFKA_CLIENT_ID */
    char dlq_topic[128];  /* KAFKA_DLQ_TOPIC */
} ep_kafka_opts_t;

extern const ep_opt_table_t ep__kafka_options;

/* Makes opts those of a group of its own: "<KAFKA_CONSUMER_GROUP>-<name>" (own_consumer). */
int ep__kafka_own_consumer(void *opts, const char *name, char *err, size_t errlen);

typedef struct kafka_prop_s {
    char *name;  /* librdkafka property, e.g. "sasl.mechanism" */
    char *value; /* as given */
    char *var;   /* the environment variable, for error messages */
} kafka_prop_t;

/* One entry of a partition's delivery log: an offset handed out, and whether it is done. */
typedef struct kafka_off_s {
    int64_t offset;
    int acked;
} kafka_off_t;

/*
 * Commit tracking for one assigned partition. offs[head..tail) are the offsets
 * handed out and not yet below the commit point, in increasing order (a
 * partition is fetched in order). The acked prefix is popped; commit_pos is
 * then the offset of the first entry still waiting, or one past the last
 * popped offset: everything below it is done.
 */
typedef struct kafka_part_s {
    int32_t partition;
    kafka_off_t *offs;
    size_t head, tail, cap;
    int64_t commit_pos; /* next offset to commit; -1 while nothing was acked */
    int64_t committed;  /* last commit_pos handed to rd_kafka_commit; -1 none */
    int64_t reset_from; /* offset librdkafka could not fetch and reset from; -1 none */
    int64_t confirmed;  /* highest commit the broker accepted in this assignment; -1 none */
    int64_t first;      /* first offset handed out in this assignment; -1 none */
} kafka_part_t;

typedef struct kafka_ctx_s {
    /* Settings (copied from the config at init). */
    char brokers[256];
    char topic[128];
    char dlq_topic[128];
    char group[128];
    char client_id[64];
    int partitions;
    int replication; /* 0: as many as brokers, at most REPLICATION_MAX */
    int timeout_ms;  /* bound for blocking broker calls (flush, DLQ delivery) */
    kafka_prop_t *props;
    size_t n_props;

    rd_kafka_t *prod;
    rd_kafka_topic_t *prod_topic;
    rd_kafka_topic_t *dlq_rkt;

    /* Consumer, created on the first consume. cons_lock serialises polling. */
    pthread_mutex_t cons_lock;
    _Atomic(rd_kafka_t *) cons;
    rd_kafka_queue_t *cons_q; /* its queue (records, callbacks), for batch reads */
    char cons_err[256];
    /* partition.assignment.strategy is cooperative: read from the configuration, because
     * rd_kafka_rebalance_protocol() may block when called from a callback during close. */
    int cooperative;
    /*
     * Leaving the group at destroy runs on a thread of its own (the final commit,
     * rd_kafka_consumer_close, rd_kafka_destroy). librdkafka 2.0.2 was seen never to
     * return from the close when the group rebalanced at that moment, so destroy waits
     * LEAVE_TIMEOUT_MS at most, then leaves that thread running and ctx to it.
     */
    _Atomic int leave_step; /* LEAVE_* of ep_queue_kafka.c: how far it got */
    int leave_state;        /* under mon_lock: LEAVE_RUNNING, LEAVE_DONE, LEAVE_ABANDONED */
    _Atomic int refs;       /* owners at destroy: its caller, the leaving thread */

    /* Commit tracking and the nack redelivery list, under state_lock. */
    pthread_mutex_t state_lock;
    kafka_part_t *parts;
    size_t n_parts, cap_parts;
    ep_redeliver_t retry; /* nacked events waiting for their redelivery time */
    _Atomic size_t retry_n;
    _Atomic int commit_dirty;

    /* Background threads: poll (delivery reports, stats, commits) and monitor (topics, lag). */
    pthread_t poll_tid, mon_tid;
    int poll_started, mon_started;
    _Atomic int stop;
    pthread_mutex_t mon_lock;
    pthread_cond_t mon_cond;
    _Atomic int topics_ok;
    _Atomic int topics_refused; /* KAFKA_REPLICATION_FACTOR above the broker count: not ready */
    /* KAFKA_TOPIC as the cluster's metadata showed it (0 until seen): /stats topic_*. */
    _Atomic int topic_partitions;
    _Atomic int topic_replicas; /* the fewest replicas of any of its partitions */

    /*
     * Broker health from the statistics and error callbacks: brokers up, 0 when
     * every broker is known to be down (publish then fails at once), -1 while
     * not known yet (start-up).
     */
    _Atomic int brokers_up;
    _Atomic int64_t stats_at_ms; /* monotonic time of the last statistics */
    _Atomic int fatal;
    pthread_mutex_t info_lock; /* guards last_error and lag_json */
    char last_error[256];
    ep_buf_t lag_json;
    _Atomic int64_t lag_total;
    _Atomic int64_t lag_at_ms;

    _Atomic int closed;

    /* Counters. */
    ep_queue_counters_t counts;     /* rejected_unavailable: failed for another reason than full;
                                     * lost: records skipped by an offset reset, never processed */
    _Atomic uint64_t rejected_down; /* publishes refused at once: every broker known down */
    _Atomic uint64_t delivered;
    _Atomic uint64_t delivery_failed;
    _Atomic uint64_t poison;
    _Atomic uint64_t dead_lettered;
    _Atomic uint64_t commits;
    _Atomic uint64_t lost_resets; /* offset resets that skipped records */
    /* Records handed out past the offset the broker holds for a partition when it was
     * revoked: the new owner reads them again, so they bound a rebalance's duplicates. */
    _Atomic uint64_t revoked_in_flight;
} kafka_ctx_t;

/*
 * Reads every KAFKA_<X> environment variable that is not one of eventpipe's own
 * names into *props (lowercased, '_' -> '.'), checking each against librdkafka.
 * Returns 0, or EP_ECONFIG with "KAFKA_X: why" in err (nothing allocated).
 */
int ep__kafka_props_from_env(kafka_prop_t **props, size_t *n, char *err, size_t errlen);

/** Frees what ep__kafka_props_from_env returned. Accepts NULL. */
void ep__kafka_props_free(kafka_prop_t *props, size_t n);

/**
 * The replication factor of a topic created here: KAFKA_REPLICATION_FACTOR when set
 * (setting > 0) and the cluster has that many brokers, else -1 (refused); by default
 * as many as brokers, at most 3.
 */
int ep__kafka_replication(int setting, int brokers);

/**
 * Builds the producer's configuration (idempotent, batching, compression,
 * retries, bounded message timeout) with the passthrough properties applied
 * last. Returns 0 and a conf owned by the caller, or EP_ECONFIG with a message.
 */
int ep__kafka_producer_conf(kafka_ctx_t *ctx, const ep_config_t *cfg, const ep_kafka_opts_t *opts,
                            rd_kafka_conf_t **out, char *err, size_t errlen);

/**
 * Builds the consumer's configuration (group, manual commits, earliest reset),
 * passthrough last. Returns 0 and a conf owned by the caller, or EP_ECONFIG.
 */
int ep__kafka_consumer_conf(kafka_ctx_t *ctx, rd_kafka_conf_t **out, char *err, size_t errlen);

/** No-op that links ep_queue_kafka_tsan.c (C11-thread shims under ThreadSanitizer). */
void ep__kafka_tsan_link(void);

/** Maps a librdkafka error to EP_E* (0 for no error). Thread-safe. */
int ep__kafka_err(rd_kafka_resp_err_t err);

/** Sets the last error that /stats and readiness report (under info_lock). */
void ep__kafka_set_error(kafka_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Events carry their partition as qh = partition + 1 (NULL: not from a record). */
static inline void *part_handle(int32_t partition)
{
    return (void *)(uintptr_t)((uint32_t)partition + 1u);
}

static inline int32_t handle_part(const ep_event_t *ev)
{
    return (int32_t)((uintptr_t)ev->qh - 1u);
}

/* ---- ep_queue_kafka_offsets.c: offset tracking, under state_lock unless said. */

/** The tracking of partition, or NULL. */
kafka_part_t *ep__kafka_part_find(kafka_ctx_t *ctx, int32_t partition);

/** The tracking of partition, added if missing (may move ctx->parts). */
kafka_part_t *ep__kafka_part_add(kafka_ctx_t *ctx, int32_t partition);

/** Records that offset was handed out. */
void ep__kafka_part_append(kafka_part_t *p, int64_t offset);

/** Marks offset done and advances the commit point over the acked prefix; 1 if it moved. */
int ep__kafka_part_ack(kafka_part_t *p, int64_t offset);

/** How many records a pending offset reset skipped before offset (0: none); first in *from. */
int64_t ep__kafka_part_skipped(kafka_part_t *p, int64_t offset, int64_t *from);

/** Counts and reports records an offset reset skipped. */
void ep__kafka_report_lost(kafka_ctx_t *ctx, int32_t partition, int64_t from, int64_t n);

/** Notes an offset reset from librdkafka's log line buf (takes state_lock). */
void ep__kafka_note_offset_reset(kafka_ctx_t *ctx, const char *buf);

/** Commits every moved commit point; async, or synchronous if sync. Takes state_lock. */
void ep__kafka_commit_now(kafka_ctx_t *ctx, rd_kafka_t *cons, int sync);

/** The consumer's offset commit callback. */
void ep__kafka_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque);

/** The consumer's rebalance callback (eager and cooperative). */
void ep__kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque);

/* ---- ep_queue_kafka_admin.c: client callbacks, topics, lag. */

/** Statistics callback: counts the brokers up. */
int ep__kafka_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque);

/** Error callback of both clients. */
void ep__kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque);

/** Log callback of both clients (notes offset resets). */
void ep__kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf);

/** Creates the topics if the cluster lacks them. Returns 0 or EP_E*. */
int ep__kafka_ensure_topics(kafka_ctx_t *ctx, int timeout_ms);

/** The monitor thread: topic check, broker probe, lag refresh, until ctx->stop. */
void *ep__kafka_monitor_main(void *arg);

#endif /* EP_QUEUE_KAFKA_INT_H */
