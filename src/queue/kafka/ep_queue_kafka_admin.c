/*
 * The cluster side of the "kafka" queue provider (split from ep_queue_kafka.c):
 * the client callbacks that track broker health and route librdkafka's log,
 * topic creation (KAFKA_PARTITIONS, KAFKA_REPLICATION_FACTOR), the broker probe
 * while every broker is down, and the monitor thread that refreshes the
 * consumer group's lag.
 */
#include "queue/kafka/ep_queue_kafka_int.h"

#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_time.h"
#include "event/ep_json_tree.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

#define LOG                 "kafka"
#define MONITOR_INTERVAL_MS 1000 /* topic check and lag refresh */
#define REPLICATION_MAX     3

/* ------------------------------------------------------------ client callbacks */

/* 1 when v is a JSON string equal to s. */
static int str_is(const ep_json_node_t *v, const char *s)
{
    const char *p = ep_json_str(v);

    return p != NULL && strcmp(p, s) == 0;
}

/*
 * Statistics (once a second): counts the brokers the client is connected to.
 * Learned brokers (node id >= 0) count; a bootstrap connection counts as one
 * while no broker was learned yet.
 */
int ep__kafka_on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    kafka_ctx_t *ctx = opaque;
    static const char *const brokers_path[] = {"brokers", NULL};
    static const char *const nodeid_path[] = {"nodeid", NULL};
    static const char *const state_path[] = {"state", NULL};
    static const char *const source_path[] = {"source", NULL};
    ep_json_tree_t *tree = NULL;
    const ep_json_node_t *brokers = NULL;
    int learned = 0, bootstrap = 0;

    (void)rk;
    if (ep_json_tree_parse(json, len, 0, &tree, NULL, 0) == 0) {
        brokers = ep_json_get_type(ep_json_tree_root(tree), brokers_path, EP_JT_OBJECT);
    }
    for (const ep_json_node_t *b = ep_json_first(brokers); b; b = ep_json_next(b)) {
        int64_t id;

        if (!str_is(ep_json_get(b, state_path), "UP")) {
            continue;
        }
        if (ep_json_int(ep_json_get(b, nodeid_path), &id) && id >= 0) {
            learned++;
        } else if (str_is(ep_json_get(b, source_path), "configured")) {
            bootstrap = 1;
        }
    }
    if (tree) {
        atomic_store(&ctx->brokers_up, learned ? learned : bootstrap);
        atomic_store(&ctx->stats_at_ms, ep_time_mono_ms());
    }
    ep_json_tree_free(tree);
    return 0; /* librdkafka frees json */
}

void ep__kafka_on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    kafka_ctx_t *ctx = opaque;
    char fatal[256];

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
        atomic_store(&ctx->fatal, 1);
        ep__kafka_set_error(ctx, "fatal: %s", fatal);
        ep_log_error(LOG, "%s: fatal error: %s", rd_kafka_name(rk), fatal);
        return;
    }
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        atomic_store(&ctx->brokers_up, 0);
    }
    ep__kafka_set_error(ctx, "%s", reason);
    ep_log_warn(LOG, "%s: %s", rd_kafka_name(rk), reason);
}

void ep__kafka_on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    if (strcmp(fac, "OFFSET") == 0 && rd_kafka_type(rk) == RD_KAFKA_CONSUMER &&
        strstr(buf, "offset reset (at offset ") != NULL && rd_kafka_opaque(rk) != NULL) {
        ep__kafka_note_offset_reset(rd_kafka_opaque(rk), buf);
    }
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "will be ignored by this")) {
        /* KAFKA_* passthrough feeds both clients: a consumer-only property is expected here. */
        ep_log_debug(LOG, "%s: %s", fac, buf);
        return;
    }
    if (level <= 3) {
        ep_log_error(LOG, "%s: %s", fac, buf);
    } else if (level == 4) {
        ep_log_warn(LOG, "%s: %s", fac, buf);
    } else if (level <= 6) {
        ep_log_info(LOG, "%s: %s", fac, buf);
    } else {
        ep_log_debug(LOG, "%s: %s", fac, buf);
    }
}
/* ------------------------------------------------------------ topics and lag */

int ep__kafka_replication(int setting, int brokers)
{
    if (setting > 0) {
        return setting <= brokers ? setting : -1;
    }
    return brokers < 1 ? 1 : brokers < REPLICATION_MAX ? brokers : REPLICATION_MAX;
}

/*
 * Records the partitions and replicas of an existing KAFKA_TOPIC, and says when they
 * differ from KAFKA_PARTITIONS / KAFKA_REPLICATION_FACTOR: those apply only to topics
 * created here, so an existing topic keeps its own (adding partitions moves keys).
 */
static void note_topic(kafka_ctx_t *ctx, const struct rd_kafka_metadata_topic *t)
{
    int replicas = t->partition_cnt > 0 ? t->partitions[0].replica_cnt : 0;

    for (int p = 1; p < t->partition_cnt; p++) {
        if (t->partitions[p].replica_cnt < replicas) {
            replicas = t->partitions[p].replica_cnt;
        }
    }
    atomic_store(&ctx->topic_partitions, t->partition_cnt);
    atomic_store(&ctx->topic_replicas, replicas);
    if (t->partition_cnt != ctx->partitions) {
        ep_log_warn(LOG,
                    "topic %s exists with %d partitions, not KAFKA_PARTITIONS=%d (that applies "
                    "only to a topic eventpipe creates)",
                    t->topic, t->partition_cnt, ctx->partitions);
    }
    if (ctx->replication > 0 && replicas < ctx->replication) {
        ep_log_warn(LOG,
                    "topic %s exists with %d replicas per partition, fewer than "
                    "KAFKA_REPLICATION_FACTOR=%d",
                    t->topic, replicas, ctx->replication);
    }
    ep_log_info(LOG, "topic %s: %d partitions, %d replicas", t->topic, t->partition_cnt, replicas);
}

/* Creates the topics with KAFKA_PARTITIONS and KAFKA_REPLICATION_FACTOR if the cluster lacks them.
 */
int ep__kafka_ensure_topics(kafka_ctx_t *ctx, int timeout_ms)
{
    const struct rd_kafka_metadata *md = NULL;
    const char *want[2] = {ctx->topic, ctx->dlq_topic};
    rd_kafka_NewTopic_t *nt[2];
    rd_kafka_AdminOptions_t *opts;
    rd_kafka_queue_t *q;
    rd_kafka_event_t *ev;
    rd_kafka_resp_err_t err;
    int n_new = 0, rf, rc = 0;
    char errstr[256];

    /* all_topics=1: a metadata request for one topic could auto-create it with defaults. */
    err = rd_kafka_metadata(ctx->prod, 1, NULL, &md, timeout_ms);
    if (err) {
        ep__kafka_set_error(ctx, "metadata: %s", rd_kafka_err2str(err));
        return ep__kafka_err(err);
    }
    rf = ep__kafka_replication(ctx->replication, md->broker_cnt);
    if (atomic_load(&ctx->brokers_up) <= 0) {
        atomic_store(&ctx->brokers_up, md->broker_cnt > 0 ? 1 : 0);
    }
    for (int i = 0; i < 2; i++) {
        int found = 0;

        if (i == 1 && strcmp(want[0], want[1]) == 0) {
            continue;
        }
        for (int t = 0; t < md->topic_cnt; t++) {
            if (strcmp(md->topics[t].topic, want[i]) == 0 && md->topics[t].err == 0) {
                found = 1;
                if (i == 0) {
                    note_topic(ctx, &md->topics[t]);
                }
            }
        }
        if (found) {
            continue;
        }
        nt[n_new] = rd_kafka_NewTopic_new(want[i], ctx->partitions, rf < 1 ? 1 : rf, errstr,
                                          sizeof(errstr));
        if (nt[n_new] == NULL) {
            ep_log_warn(LOG, "cannot create topic %s: %s", want[i], errstr);
            continue;
        }
        n_new++;
    }
    if (n_new > 0 && rf < 0) {
        /* The cluster would refuse it: say why, and stay not ready until brokers join. */
        ep__kafka_set_error(
            ctx, "KAFKA_REPLICATION_FACTOR: %d is more than the %d brokers of the cluster",
            ctx->replication, md->broker_cnt);
        atomic_store(&ctx->topics_refused, 1);
        rd_kafka_metadata_destroy(md);
        rd_kafka_NewTopic_destroy_array(nt, (size_t)n_new);
        return EP_EUNAVAIL;
    }
    atomic_store(&ctx->topics_refused, 0);
    rd_kafka_metadata_destroy(md);
    if (n_new == 0) {
        return 0;
    }
    opts = rd_kafka_AdminOptions_new(ctx->prod, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_request_timeout(opts, timeout_ms, errstr, sizeof(errstr));
    q = rd_kafka_queue_new(ctx->prod);
    rd_kafka_CreateTopics(ctx->prod, nt, (size_t)n_new, opts, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (ev == NULL) {
        rc = EP_ETIMEDOUT;
    } else if (rd_kafka_event_error(ev)) {
        err = rd_kafka_event_error(ev);
        rc = ep__kafka_err(err);
        if (rc != EP_EUNAVAIL) {
            /* E.g. a broker without CreateTopics: rely on existing or auto-created topics. */
            ep_log_warn(LOG, "cannot create topics (%s); they must exist or be auto-created",
                        rd_kafka_event_error_string(ev));
            rc = 0;
        }
    } else {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt = 0;
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);

        for (size_t i = 0; i < cnt; i++) {
            err = rd_kafka_topic_result_error(tr[i]);
            if (err == 0) {
                ep_log_info(LOG, "created topic %s (%d partitions, replication %d)",
                            rd_kafka_topic_result_name(tr[i]), ctx->partitions, rf);
            } else if (err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                ep_log_warn(LOG, "cannot create topic %s: %s", rd_kafka_topic_result_name(tr[i]),
                            rd_kafka_topic_result_error_string(tr[i]));
            }
        }
    }
    if (ev) {
        rd_kafka_event_destroy(ev);
    }
    rd_kafka_queue_destroy(q);
    rd_kafka_AdminOptions_destroy(opts);
    rd_kafka_NewTopic_destroy_array(nt, (size_t)n_new);
    return rc;
}

/*
 * While every broker is known to be down, publishes are refused without
 * producing, so nothing else may make the producer reach for the cluster: a
 * metadata request does (bounded), and success says a broker answers again.
 */
static void probe_brokers(kafka_ctx_t *ctx)
{
    const struct rd_kafka_metadata *md = NULL;

    if (rd_kafka_metadata(ctx->prod, 1, NULL, &md, MONITOR_INTERVAL_MS) != 0) {
        return;
    }
    if (md->broker_cnt > 0) {
        int none = 0;
        atomic_compare_exchange_strong(&ctx->brokers_up, &none, 1);
    }
    rd_kafka_metadata_destroy(md);
}

/* Refreshes the lag JSON from the group's committed offsets and the high watermarks. */
static void refresh_lag(kafka_ctx_t *ctx)
{
    rd_kafka_t *cons = atomic_load(&ctx->cons);
    rd_kafka_topic_partition_list_t *parts = NULL;
    ep_buf_t b = EP_BUF_INIT;
    int64_t total = 0;
    int known = 0; /* measured with an assignment */

    ep_buf_puts(&b, "{\"topic\":");
    ep_buf_put_json_str(&b, ctx->topic, strlen(ctx->topic));
    ep_buf_puts(&b, ",\"group\":");
    ep_buf_put_json_str(&b, ctx->group, strlen(ctx->group));
    ep_buf_puts(&b, ",\"partitions\":[");
    if (cons && rd_kafka_assignment(cons, &parts) == 0 && parts->cnt > 0) {
        known = 1;
        rd_kafka_topic_partition_list_sort(parts, NULL, NULL);
        if (rd_kafka_committed(cons, parts, MONITOR_INTERVAL_MS) != 0) {
            for (int i = 0; i < parts->cnt; i++) {
                parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID;
            }
        }
        for (int i = 0; i < parts->cnt; i++) {
            rd_kafka_topic_partition_t *tp = &parts->elems[i];
            int64_t lo = -1, hi = -1, committed = tp->offset, lag;

            rd_kafka_get_watermark_offsets(cons, tp->topic, tp->partition, &lo, &hi);
            if (hi < 0 || (committed < 0 && lo < 0)) {
                rd_kafka_query_watermark_offsets(cons, tp->topic, tp->partition, &lo, &hi, 500);
            }
            if (committed < 0) {
                committed = lo > 0 ? lo : 0;
            }
            lag = hi >= committed ? hi - committed : 0;
            total += lag;
            ep_buf_printf(&b,
                          "%s{\"partition\":%" PRId32 ",\"committed\":%" PRId64
                          ",\"high_watermark\":%" PRId64 ",\"lag\":%" PRId64 "}",
                          i ? "," : "", tp->partition, committed, hi, lag);
        }
    }
    if (parts) {
        rd_kafka_topic_partition_list_destroy(parts);
    }
    ep_buf_puts(&b, "]}");
    pthread_mutex_lock(&ctx->info_lock);
    ep_buf_reset(&ctx->lag_json);
    ep_buf_printf(&ctx->lag_json, "{\"total\":%" PRId64 ",", total);
    ep_buf_append(&ctx->lag_json, b.data + 1, b.len - 1);
    pthread_mutex_unlock(&ctx->info_lock);
    atomic_store(&ctx->lag_total, known ? total : -1);
    atomic_store(&ctx->lag_at_ms, ep_time_mono_ms());
    ep_buf_close(&b);
}

void *ep__kafka_monitor_main(void *arg)
{
    kafka_ctx_t *ctx = arg;

    while (!atomic_load(&ctx->stop)) {
        struct timespec ts;

        if (!atomic_load(&ctx->topics_ok) &&
            ep__kafka_ensure_topics(ctx, MONITOR_INTERVAL_MS) == 0) {
            atomic_store(&ctx->topics_ok, 1);
        }
        if (atomic_load(&ctx->brokers_up) == 0) {
            probe_brokers(ctx);
        }
        if (atomic_load(&ctx->cons)) {
            refresh_lag(ctx);
        }
        ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, MONITOR_INTERVAL_MS);
        pthread_mutex_lock(&ctx->mon_lock);
        if (!atomic_load(&ctx->stop)) {
            pthread_cond_timedwait(&ctx->mon_cond, &ctx->mon_lock, &ts);
        }
        pthread_mutex_unlock(&ctx->mon_lock);
    }
    return NULL;
}