/*
 * The "kafka" queue provider (QUEUE_TYPE=kafka) on librdkafka.
 *
 * Producer. One idempotent producer (acks=all) per instance; records are keyed
 * by user_id, else by id, the value is the protobuf DataMessage, and the
 * headers carry source, message_id and event_type. A publish produces every
 * event of the call and completes (its callback runs once) when the last
 * delivery report of the call arrived: a 0 status means the broker
 * acknowledged the record on every in-sync replica. A dedicated thread polls
 * the producer for delivery reports and statistics.
 *
 * Consumer. Created on the first consume only, so an ingest-only process
 * never joins the group (KAFKA_CONSUMER_GROUP). Offsets are committed only
 * after processing: for every assigned partition the offsets handed out are
 * kept in order with an "acked" flag, and only the contiguous acked prefix is
 * committed (a commit of X says everything below X is done), because acks of
 * one partition come back out of order from several workers. Commits are
 * asynchronous and batched (at most every COMMIT_INTERVAL_MS) and synchronous
 * on revocation and destroy.
 *
 * Nack. A nacked event goes to a local redelivery list that consume serves
 * first once its delay has passed (attempts incremented). Its offset stays
 * un-acked, so the commit point does not pass it: after a crash Kafka
 * redelivers it. Seeking the partition back was rejected: it would redeliver
 * every later record of the partition that other workers are processing.
 *
 * Poison records (values that are not a DataMessage) are copied raw to the
 * dead-letter topic (KAFKA_DLQ_TOPIC), the copy's delivery is awaited, and the
 * offset counts as done. dead_letter() does the same with an event.
 *
 * Rebalance. On revocation the contiguous prefix is committed synchronously
 * and the partitions' local state (offset logs, redelivery entries) is
 * dropped; events of those partitions still in flight are redelivered to the
 * new owner (at-least-once). Both eager and cooperative protocols work.
 *
 * Nothing here knows about test brokers: it talks to KAFKA_BROKERS.
 *
 * Split: ep_queue_kafka_offsets.c (offset tracking, commits, rebalance),
 * ep_queue_kafka_admin.c (client callbacks, topics, broker probe, lag monitor),
 * ep_queue_kafka_config.c (librdkafka configuration); this file keeps
 * producing, consuming and the provider ops.
 */
#include "queue/kafka/ep_queue_kafka_int.h"

#include "base/ep_counter.h"
#include "base/ep_error.h"
#include "base/ep_exit.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOG                   "kafka"
#define POLL_INTERVAL_MS      50    /* producer poll: delivery reports, statistics */
#define COMMIT_INTERVAL_MS    100   /* at most one asynchronous commit this often */
#define CONSUME_SLICE_MS      100   /* longest single consumer poll under cons_lock */
#define CONSUME_BATCH_MAX     256   /* records taken from librdkafka's queue at once */
#define INIT_TOPIC_TIMEOUT_MS 3000  /* bound for the first topic check at init */
#define COMMIT_SYNC_TIMEOUT   1     /* marker: commit synchronously */
#define LEAVE_TIMEOUT_MS      15000 /* bound for leaving the group at destroy */

/* How far leaving the group got (leave_step), and who waits for whom (leave_state). */
enum { LEAVE_COMMIT, LEAVE_CLOSE, LEAVE_DESTROY, LEAVE_FINISHED };
enum { LEAVE_RUNNING, LEAVE_DONE, LEAVE_ABANDONED };

enum { DR_PUBLISH = 1, DR_WAIT = 2 };

typedef struct pub_call_s pub_call_t;

/* Delivery report opaque for one record of a publish call. kind comes first. */
typedef struct dr_slot_s {
    int kind; /* DR_PUBLISH */
    uint32_t idx;
    pub_call_t *call;
} dr_slot_t;

/* One publish call: completes when pending drops to zero. One allocation. */
struct pub_call_s {
    ep_publish_cb cb;
    void *arg;
    size_t n;
    _Atomic size_t pending; /* records without a report, plus one while publish runs */
    int *status;
    dr_slot_t slots[];
};

/* A blocking wait for a few records' delivery (dead-letter copies). kind comes first. */
typedef struct dr_wait_s {
    int kind; /* DR_WAIT */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    int err; /* first failure, EP_E* */
} dr_wait_t;

void ep__kafka_set_error(kafka_ctx_t *ctx, const char *fmt, ...)
{
    va_list ap;

    pthread_mutex_lock(&ctx->info_lock);
    va_start(ap, fmt);
    vsnprintf(ctx->last_error, sizeof(ctx->last_error), fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&ctx->info_lock);
}

/* ------------------------------------------------------------ callbacks */

static void publish_done(pub_call_t *call)
{
    if (call->cb) {
        call->cb(call->arg, call->n, call->status);
    }
    ep_free(call);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    kafka_ctx_t *ctx = opaque;
    int kind = m->_private ? *(int *)m->_private : 0;
    int rc = ep__kafka_err(m->err);

    (void)rk;
    if (rc == 0) {
        ep_counter_add(&ctx->delivered, 1);
    } else {
        ep_counter_add(&ctx->delivery_failed, 1);
    }
    if (kind == DR_PUBLISH) {
        dr_slot_t *slot = m->_private;
        pub_call_t *call = slot->call;

        call->status[slot->idx] = rc;
        if (rc != 0 && rc != EP_EFULL) {
            ep_counter_add(&ctx->counts.rejected_unavailable, 1);
        }
        if (atomic_fetch_sub_explicit(&call->pending, 1, memory_order_acq_rel) == 1) {
            publish_done(call);
        }
    } else if (kind == DR_WAIT) {
        dr_wait_t *w = m->_private;

        pthread_mutex_lock(&w->mu);
        if (rc != 0 && w->err == 0) {
            w->err = rc;
        }
        if (--w->pending == 0) {
            pthread_cond_broadcast(&w->cv);
        }
        pthread_mutex_unlock(&w->mu);
    }
}

/* ------------------------------------------------------------ producing */

/*
 * Produces one record. headers: pairs of name/value (NULL-terminated), values
 * with their lengths in hlen. ts_ms: the record's timestamp (0: now). Returns
 * the librdkafka error (nothing queued).
 */
static rd_kafka_resp_err_t produce(kafka_ctx_t *ctx, rd_kafka_topic_t *rkt, const void *key,
                                   size_t klen, const void *val, size_t vlen,
                                   const char *const *hname, const char *const *hval,
                                   const size_t *hlen, size_t nh, int64_t ts_ms, void *opaque)
{
    rd_kafka_headers_t *hdrs = rd_kafka_headers_new(nh);
    rd_kafka_resp_err_t err;

    for (size_t i = 0; i < nh; i++) {
        rd_kafka_header_add(hdrs, hname[i], -1, hval[i], (ssize_t)hlen[i]);
    }
    err = rd_kafka_producev(ctx->prod, RD_KAFKA_V_RKT(rkt),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, klen),
                            RD_KAFKA_V_VALUE((void *)val, vlen), RD_KAFKA_V_HEADERS(hdrs),
                            RD_KAFKA_V_TIMESTAMP(ts_ms), RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
    if (err) {
        /* The headers are ours again when producev fails. */
        rd_kafka_headers_destroy(hdrs);
    }
    return err;
}

/* Produces an event: key user_id or id, protobuf value, the standard headers. */
static rd_kafka_resp_err_t produce_event(kafka_ctx_t *ctx, rd_kafka_topic_t *rkt,
                                         const ep_event_t *ev, ep_buf_t *buf,
                                         const char *const *xname, const char *const *xval,
                                         size_t nx, void *opaque)
{
    const char *hname[8] = {"source", "message_id", "event_type"};
    const char *hval[8] = {ev->source.p, ev->id.p, ev->event_type.p};
    size_t hlen[8] = {ev->source.len, ev->id.len, ev->event_type.len};
    size_t nh = 3;
    const ep_str_t *key = ev->user_id.len ? &ev->user_id : &ev->id;

    for (size_t i = 0; i < nx && nh < 8; i++, nh++) {
        hname[nh] = xname[i];
        hval[nh] = xval[i];
        hlen[nh] = strlen(xval[i]);
    }
    ep_buf_reset(buf);
    ep_event_encode_pb(ev, buf);
    /* The record's time is when eventpipe received the event (no clock read per record). */
    return produce(ctx, rkt, key->p, key->len, buf->data, buf->len, hname, hval, hlen, nh,
                   ev->received_us / 1000, opaque);
}

static void wait_init(dr_wait_t *w)
{
    pthread_condattr_t ca;

    memset(w, 0, sizeof(*w));
    w->kind = DR_WAIT;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cv, &ca);
    pthread_condattr_destroy(&ca);
}

/*
 * Waits until every record of w got its delivery report. Reports always come:
 * message.timeout.ms bounds each record, and the poll thread serves them.
 */
static int wait_finish(dr_wait_t *w)
{
    int err;

    pthread_mutex_lock(&w->mu);
    while (w->pending > 0) {
        pthread_cond_wait(&w->cv, &w->mu);
    }
    err = w->err;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return err;
}

/* Copies an undecodable record's raw bytes to the dead-letter topic and waits. Returns 0/EP_E*. */
static int dlq_raw(kafka_ctx_t *ctx, const rd_kafka_message_t *m)
{
    char part[16], off[24];
    const char *hname[] = {"error", "source_topic", "source_partition", "source_offset"};
    const char *hval[] = {"undecodable record", ctx->topic, part, off};
    size_t hlen[4];
    dr_wait_t w;
    rd_kafka_resp_err_t err;

    snprintf(part, sizeof(part), "%" PRId32, m->partition);
    snprintf(off, sizeof(off), "%" PRId64, m->offset);
    for (int i = 0; i < 4; i++) {
        hlen[i] = strlen(hval[i]);
    }
    wait_init(&w);
    w.pending = 1;
    err = produce(ctx, ctx->dlq_rkt, m->key, m->key_len, m->payload, m->len, hname, hval, hlen, 4,
                  0, &w);
    if (err) {
        w.pending = 0;
        wait_finish(&w);
        return ep__kafka_err(err);
    }
    return wait_finish(&w);
}

/* ------------------------------------------------------------ threads */

static void *poll_main(void *arg)
{
    kafka_ctx_t *ctx = arg;
    int64_t last_commit = 0;

    while (!atomic_load(&ctx->stop)) {
        rd_kafka_t *cons;

        rd_kafka_poll(ctx->prod, POLL_INTERVAL_MS);
        cons = atomic_load(&ctx->cons);
        if (cons && atomic_load(&ctx->commit_dirty) &&
            ep_time_mono_ms() - last_commit >= COMMIT_INTERVAL_MS) {
            atomic_store(&ctx->commit_dirty, 0);
            last_commit = ep_time_mono_ms();
            ep__kafka_commit_now(ctx, cons, 0);
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ consumer */

/* Creates the consumer and subscribes, once. Returns it, or NULL (reason in cons_err). */
static rd_kafka_t *ensure_consumer(kafka_ctx_t *ctx)
{
    rd_kafka_t *cons = atomic_load(&ctx->cons);
    rd_kafka_topic_partition_list_t *sub;
    rd_kafka_conf_t *conf = NULL;
    rd_kafka_resp_err_t err;
    char errstr[512];

    if (cons) {
        return cons;
    }
    pthread_mutex_lock(&ctx->cons_lock);
    cons = atomic_load(&ctx->cons);
    if (cons || ctx->cons_err[0]) {
        pthread_mutex_unlock(&ctx->cons_lock);
        return cons;
    }
    if (ep__kafka_consumer_conf(ctx, &conf, errstr, sizeof(errstr)) != 0) {
        goto err;
    }
    rd_kafka_conf_set_opaque(conf, ctx);
    rd_kafka_conf_set_error_cb(conf, ep__kafka_on_error);
    rd_kafka_conf_set_log_cb(conf, ep__kafka_on_log);
    rd_kafka_conf_set_rebalance_cb(conf, ep__kafka_on_rebalance);
    rd_kafka_conf_set_offset_commit_cb(conf, ep__kafka_on_commit);
    cons = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (cons == NULL) {
        rd_kafka_conf_destroy(conf);
        goto err;
    }
    rd_kafka_poll_set_consumer(cons);
    ctx->cons_q = rd_kafka_queue_get_consumer(cons);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, ctx->topic, RD_KAFKA_PARTITION_UA);
    err = rd_kafka_subscribe(cons, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    if (err) {
        snprintf(errstr, sizeof(errstr), "subscribe to %s: %s", ctx->topic, rd_kafka_err2str(err));
        rd_kafka_destroy(cons);
        goto err;
    }
    ep_log_info(LOG, "consumer joined group %s on topic %s", ctx->group, ctx->topic);
    atomic_store(&ctx->cons, cons);
    pthread_mutex_unlock(&ctx->cons_lock);
    return cons;

err:
    snprintf(ctx->cons_err, sizeof(ctx->cons_err), "%.200s", errstr);
    ep_log_error(LOG, "cannot create the consumer: %s", errstr);
    pthread_mutex_unlock(&ctx->cons_lock);
    return NULL;
}

/* Moves due redeliveries into out; *next_due gets the earliest one still waiting. */
static size_t take_due(kafka_ctx_t *ctx, ep_event_t **out, size_t max, int64_t *next_due)
{
    size_t got;

    pthread_mutex_lock(&ctx->state_lock);
    got = ep_redeliver_take_due(&ctx->retry, ep_time_mono_ms(), out, max, next_due);
    if (got) {
        atomic_fetch_sub(&ctx->retry_n, got);
    }
    pthread_mutex_unlock(&ctx->state_lock);
    return got;
}

/* Logs a consumer error (the end of a partition is none). */
static void consumer_error(kafka_ctx_t *ctx, const rd_kafka_message_t *m)
{
    if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        ep__kafka_set_error(ctx, "consumer: %s", rd_kafka_message_errstr(m));
        ep_log_warn(LOG, "consumer: %s", rd_kafka_message_errstr(m));
    }
}

/* Copies an undecodable record to the dead-letter topic; its offset is done once that worked. */
static void take_poison(kafka_ctx_t *ctx, const rd_kafka_message_t *m)
{
    kafka_part_t *p;
    int rc;

    ep_counter_add(&ctx->poison, 1);
    rc = dlq_raw(ctx, m);
    if (rc != 0) {
        /* Left un-acked: the commit point stays before it, a restart retries. */
        ep_log_error(LOG,
                     "undecodable record %s[%" PRId32 "]@%" PRId64
                     " could not be dead-lettered (%s); it holds back the partition's commits",
                     ctx->topic, m->partition, m->offset, ep_strerror(rc));
        return;
    }
    ep_log_warn(LOG, "undecodable record %s[%" PRId32 "]@%" PRId64 " moved to %s", ctx->topic,
                m->partition, m->offset, ctx->dlq_topic);
    pthread_mutex_lock(&ctx->state_lock);
    p = ep__kafka_part_find(ctx, m->partition);
    if (p && ep__kafka_part_ack(p, m->offset)) {
        atomic_store(&ctx->commit_dirty, 1);
    }
    pthread_mutex_unlock(&ctx->state_lock);
}

/*
 * Turns consumed records ms[0..n) into events in out[*got..]: decoded outside
 * any lock, their offsets logged in one state_lock round for the batch; errors
 * are logged, poison goes to the dead-letter topic. Destroys every record.
 * Called with cons_lock held; n <= CONSUME_BATCH_MAX.
 */
static void take_records(kafka_ctx_t *ctx, rd_kafka_message_t **ms, size_t n, ep_event_t **out,
                         size_t *got)
{
    ep_event_t *evs[CONSUME_BATCH_MAX];
    kafka_part_t *p = NULL;

    for (size_t i = 0; i < n; i++) {
        evs[i] = NULL;
        if (ms[i]->err) {
            consumer_error(ctx, ms[i]);
            rd_kafka_message_destroy(ms[i]);
            ms[i] = NULL;
        } else if (ep_event_decode_pb(ms[i]->payload, ms[i]->len, &evs[i]) != 0) {
            evs[i] = NULL; /* poison */
        }
    }
    pthread_mutex_lock(&ctx->state_lock);
    for (size_t i = 0; i < n; i++) {
        int64_t skipped, from = 0;

        if (ms[i] == NULL) {
            continue;
        }
        if (p == NULL || p->partition != ms[i]->partition) {
            p = ep__kafka_part_add(ctx,
                                   ms[i]->partition); /* may move ctx->parts: p is always fresh */
        }
        ep__kafka_part_append(p, ms[i]->offset);
        skipped = ep__kafka_part_skipped(p, ms[i]->offset, &from);
        if (skipped > 0) {
            ep__kafka_report_lost(ctx, ms[i]->partition, from, skipped); /* rare: once per reset */
        }
    }
    pthread_mutex_unlock(&ctx->state_lock);
    for (size_t i = 0; i < n; i++) {
        if (ms[i] == NULL) {
            continue;
        }
        if (evs[i] == NULL) {
            take_poison(ctx, ms[i]);
        } else {
            evs[i]->qh = part_handle(ms[i]->partition);
            evs[i]->qseq = (uint64_t)ms[i]->offset;
            evs[i]->next = NULL;
            out[(*got)++] = evs[i];
        }
        rd_kafka_message_destroy(ms[i]);
    }
}

static int handed_out(kafka_ctx_t *ctx, ep_event_t **out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i]->attempts++;
    }
    ep_counter_add(&ctx->counts.dequeued, n);
    return (int)n;
}

/* ------------------------------------------------------------ provider ops */

static void kafka_destroy(void *vctx);

static int kafka_init(const ep_config_t *cfg, const void *vset, void **out, char *err,
                      size_t errlen)
{
    const ep_kafka_opts_t *set = vset;
    kafka_ctx_t *ctx;
    rd_kafka_conf_t *conf = NULL, *cconf = NULL;
    char errstr[512];
    int rc;

    *out = NULL;
    ep__kafka_tsan_link();
    if (set->brokers[0] == '\0') {
        snprintf(err, errlen, "KAFKA_BROKERS: empty (host:port,...)");
        return EP_ECONFIG;
    }
    if (set->topic[0] == '\0') {
        snprintf(err, errlen, "KAFKA_TOPIC: empty");
        return EP_ECONFIG;
    }
    ctx = ep_calloc(1, sizeof(*ctx));
    snprintf(ctx->brokers, sizeof(ctx->brokers), "%s", set->brokers);
    snprintf(ctx->topic, sizeof(ctx->topic), "%s", set->topic);
    snprintf(ctx->dlq_topic, sizeof(ctx->dlq_topic), "%s",
             set->dlq_topic[0] ? set->dlq_topic : "diplom-messages-dlq");
    snprintf(ctx->group, sizeof(ctx->group), "%s", set->group[0] ? set->group : "processor-group");
    snprintf(ctx->client_id, sizeof(ctx->client_id), "%s",
             set->client_id[0] ? set->client_id : "eventpipe");
    ctx->partitions = set->partitions > 0 ? set->partitions : 1;
    ctx->replication = set->replication;
    ctx->timeout_ms = cfg->upstream_timeout_ms > 0 ? cfg->upstream_timeout_ms : 3000;
    atomic_init(&ctx->refs, 1); /* the caller; the leaving thread takes one at destroy */
    atomic_init(&ctx->brokers_up, -1);
    atomic_init(&ctx->lag_total, -1); /* unknown until measured with an assignment */
    pthread_mutex_init(&ctx->cons_lock, NULL);
    pthread_mutex_init(&ctx->state_lock, NULL);
    pthread_mutex_init(&ctx->info_lock, NULL);
    pthread_mutex_init(&ctx->mon_lock, NULL);
    {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(&ctx->mon_cond, &ca);
        pthread_condattr_destroy(&ca);
    }
    ep_buf_init(&ctx->lag_json);
    ep_buf_puts(&ctx->lag_json, "{\"total\":0,\"partitions\":[]}");
    snprintf(ctx->last_error, sizeof(ctx->last_error), "not connected yet");

    rc = ep__kafka_props_from_env(&ctx->props, &ctx->n_props, err, errlen);
    if (rc != 0) {
        goto err;
    }
    rc = ep__kafka_producer_conf(ctx, cfg, set, &conf, err, errlen);
    if (rc != 0) {
        goto err;
    }
    /* Check the consumer's settings now too, though the consumer is created on first use. */
    rc = ep__kafka_consumer_conf(ctx, &cconf, err, errlen);
    if (rc != 0) {
        goto err;
    }
    rd_kafka_conf_destroy(cconf);
    rd_kafka_conf_set_opaque(conf, ctx);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_stats_cb(conf, ep__kafka_on_stats);
    rd_kafka_conf_set_error_cb(conf, ep__kafka_on_error);
    rd_kafka_conf_set_log_cb(conf, ep__kafka_on_log);
    ctx->prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (ctx->prod == NULL) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "kafka: cannot create the producer: %s", errstr);
        rc = EP_ECONFIG;
        goto err;
    }
    /*
     * One bounded attempt now; the monitor thread keeps trying if the cluster is not there.
     * Before the topic handles: their metadata requests would let a broker that auto-creates
     * topics make them with its own defaults instead of KAFKA_PARTITIONS and
     * KAFKA_REPLICATION_FACTOR.
     */
    if (ep__kafka_ensure_topics(ctx, INIT_TOPIC_TIMEOUT_MS) == 0) {
        atomic_store(&ctx->topics_ok, 1);
    } else {
        ep_log_warn(LOG, "brokers %s not reachable yet; will keep trying", ctx->brokers);
    }
    ctx->prod_topic = rd_kafka_topic_new(ctx->prod, ctx->topic, NULL);
    ctx->dlq_rkt = rd_kafka_topic_new(ctx->prod, ctx->dlq_topic, NULL);
    if (ctx->prod_topic == NULL || ctx->dlq_rkt == NULL) {
        snprintf(err, errlen, "KAFKA_TOPIC: cannot use topic %s / %s: %s", ctx->topic,
                 ctx->dlq_topic, rd_kafka_err2str(rd_kafka_last_error()));
        rc = EP_ECONFIG;
        goto err;
    }
    if ((rc = pthread_create(&ctx->poll_tid, NULL, poll_main, ctx)) != 0) {
        snprintf(err, errlen, "kafka: cannot start the poll thread: %s", strerror(rc));
        rc = EP__ERR(rc);
        goto err;
    }
    ctx->poll_started = 1;
    if ((rc = pthread_create(&ctx->mon_tid, NULL, ep__kafka_monitor_main, ctx)) != 0) {
        snprintf(err, errlen, "kafka: cannot start the monitor thread: %s", strerror(rc));
        rc = EP__ERR(rc);
        goto err;
    }
    ctx->mon_started = 1;
    ep_log_info(LOG, "producer to %s, topic %s (compression %s, linger %d ms, batch %d)",
                ctx->brokers, ctx->topic, set->compression, set->linger_ms, set->batch_size);
    *out = ctx;
    return 0;

err:
    kafka_destroy(ctx);
    return rc;
}

static int kafka_publish(void *vctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    kafka_ctx_t *ctx = vctx;
    ep_buf_t buf = EP_BUF_INIT;
    pub_call_t *call;
    size_t produced = 0;
    int rc = 0;

    if (atomic_load(&ctx->closed)) {
        return EP_ECLOSED;
    }
    if (atomic_load(&ctx->fatal)) {
        return EP_EUNAVAIL;
    }
    if (atomic_load(&ctx->brokers_up) == 0) {
        /*
         * Every broker is known to be down (what ready() reports): producing
         * would only wait for message.timeout.ms to fail the same way.
         */
        ep_counter_add(&ctx->rejected_down, n);
        ep_counter_add(&ctx->counts.rejected_unavailable, n);
        return EP_EUNAVAIL;
    }
    if (n == 0) {
        if (cb) {
            cb(arg, 0, NULL);
        }
        return 0;
    }
    call = ep_malloc(sizeof(*call) + n * sizeof(dr_slot_t) + n * sizeof(int));
    call->cb = cb;
    call->arg = arg;
    call->n = n;
    call->status = (int *)(void *)&call->slots[n];
    /* One extra count while this function runs, so the callback cannot fire under our feet. */
    atomic_init(&call->pending, n + 1);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t err;

        call->slots[i].kind = DR_PUBLISH;
        call->slots[i].idx = (uint32_t)i;
        call->slots[i].call = call;
        call->status[i] = 0;
        err = produce_event(ctx, ctx->prod_topic, evs[i], &buf, NULL, NULL, 0, &call->slots[i]);
        if (err) {
            rc = ep__kafka_err(err);
            break;
        }
        produced++;
    }
    ep_buf_close(&buf);
    if (produced == 0) {
        /* Nothing queued: the caller keeps the events and no callback runs. */
        ep_free(call);
        ep_counter_add(
            rc == EP_EFULL ? &ctx->counts.rejected_full : &ctx->counts.rejected_unavailable, n);
        return rc;
    }
    if (produced < n) {
        /* Partial: the rest fails with the producer's error (EP_EFULL for a full local queue). */
        for (size_t i = produced; i < n; i++) {
            call->status[i] = rc;
        }
        ep_counter_add(rc == EP_EFULL ? &ctx->counts.rejected_full
                                      : &ctx->counts.rejected_unavailable,
                       n - produced);
        atomic_fetch_sub_explicit(&call->pending, n - produced, memory_order_acq_rel);
    }
    ep_counter_add(&ctx->counts.enqueued, produced);
    /* The records hold copies: the events are done with. */
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
        evs[i] = NULL;
    }
    if (atomic_fetch_sub_explicit(&call->pending, 1, memory_order_acq_rel) == 1) {
        publish_done(call);
    }
    return 0;
}

static int kafka_consume(void *vctx, ep_event_t **out, size_t max, int timeout_ms)
{
    kafka_ctx_t *ctx = vctx;
    int64_t deadline = timeout_ms > 0 ? ep_time_mono_ms() + timeout_ms : 0;
    rd_kafka_t *cons;

    if (max == 0) {
        return 0;
    }
    if (max > INT32_MAX) {
        max = INT32_MAX;
    }
    if (atomic_load(&ctx->closed)) {
        return EP_ECLOSED;
    }
    cons = ensure_consumer(ctx);
    if (cons == NULL) {
        return EP_EUNAVAIL;
    }
    for (;;) {
        int64_t next_due = INT64_MAX, now, wait;
        size_t got = 0;

        if (atomic_load(&ctx->retry_n) > 0) {
            got = take_due(ctx, out, max, &next_due);
        }
        if (got == max) {
            return handed_out(ctx, out, got);
        }
        now = ep_time_mono_ms();
        wait = got > 0 || timeout_ms == 0 ? 0 : CONSUME_SLICE_MS;
        if (timeout_ms > 0 && deadline - now < wait) {
            wait = deadline - now > 0 ? deadline - now : 0;
        }
        if (next_due != INT64_MAX && next_due - now < wait) {
            wait = next_due - now > 0 ? next_due - now : 0;
        }
        pthread_mutex_lock(&ctx->cons_lock);
        while (got < max && !atomic_load(&ctx->closed)) {
            rd_kafka_message_t *ms[CONSUME_BATCH_MAX];
            size_t want = max - got < CONSUME_BATCH_MAX ? max - got : CONSUME_BATCH_MAX;
            ssize_t more = 0;

            /* The first record waits up to wait; then what is already fetched, in one go. */
            ms[0] = rd_kafka_consumer_poll(cons, (int)wait);
            if (ms[0] == NULL) {
                break;
            }
            if (want > 1) {
                more = rd_kafka_consume_batch_queue(ctx->cons_q, 0, ms + 1, want - 1);
            }
            take_records(ctx, ms, 1 + (size_t)(more > 0 ? more : 0), out, &got);
            wait = 0;
        }
        pthread_mutex_unlock(&ctx->cons_lock);
        if (got > 0) {
            return handed_out(ctx, out, got);
        }
        if (atomic_load(&ctx->closed)) {
            return EP_ECLOSED;
        }
        if (timeout_ms == 0 || (timeout_ms > 0 && ep_time_mono_ms() >= deadline)) {
            return 0;
        }
    }
}

static int kafka_ack(void *vctx, ep_event_t **evs, size_t n)
{
    kafka_ctx_t *ctx = vctx;
    int moved = 0;

    kafka_part_t *p = NULL;

    pthread_mutex_lock(&ctx->state_lock);
    for (size_t i = 0; i < n; i++) {
        if (evs[i]->qh == NULL) {
            continue;
        }
        if (p == NULL || p->partition != handle_part(evs[i])) {
            p = ep__kafka_part_find(ctx, handle_part(evs[i]));
        }
        if (p) {
            moved |= ep__kafka_part_ack(p, (int64_t)evs[i]->qseq);
        }
    }
    pthread_mutex_unlock(&ctx->state_lock);
    if (moved) {
        atomic_store(&ctx->commit_dirty, 1);
    }
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_counter_add(&ctx->counts.acked, n);
    return 0;
}

static int kafka_nack(void *vctx, ep_event_t **evs, size_t n, int delay_ms)
{
    kafka_ctx_t *ctx = vctx;
    int64_t not_before = ep_time_mono_ms() + (delay_ms > 0 ? delay_ms : 0);

    pthread_mutex_lock(&ctx->state_lock);
    ep_redeliver_add(&ctx->retry, evs, n, not_before);
    atomic_fetch_add(&ctx->retry_n, n);
    pthread_mutex_unlock(&ctx->state_lock);
    ep_counter_add(&ctx->counts.nacked, n);
    return 0;
}

static int kafka_dead_letter(void *vctx, ep_event_t **evs, size_t n, const char *reason)
{
    kafka_ctx_t *ctx = vctx;
    const char *xname[4] = {"error", "attempts", "source_partition", "source_offset"};
    char attempts[16], part[16], off[24];
    const char *xval[4] = {reason ? reason : "", attempts, part, off};
    ep_buf_t buf = EP_BUF_INIT;
    dr_wait_t w;
    int rc = 0;

    if (n == 0) {
        return 0;
    }
    wait_init(&w);
    pthread_mutex_lock(&w.mu);
    w.pending = n;
    pthread_mutex_unlock(&w.mu);
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t err;

        snprintf(attempts, sizeof(attempts), "%u", evs[i]->attempts);
        snprintf(part, sizeof(part), "%" PRId32, evs[i]->qh ? handle_part(evs[i]) : -1);
        snprintf(off, sizeof(off), "%" PRId64, evs[i]->qh ? (int64_t)evs[i]->qseq : -1);
        err = produce_event(ctx, ctx->dlq_rkt, evs[i], &buf, xname, xval, 4, &w);
        if (err) {
            pthread_mutex_lock(&w.mu);
            w.pending -= n - i;
            if (w.err == 0) {
                w.err = ep__kafka_err(err);
            }
            pthread_mutex_unlock(&w.mu);
            break;
        }
    }
    ep_buf_close(&buf);
    rc = wait_finish(&w);
    if (rc != 0) {
        ep_log_warn(LOG, "dead-lettering %zu event(s) to %s failed: %s", n, ctx->dlq_topic,
                    ep_strerror(rc));
        return rc;
    }
    ep_counter_add(&ctx->dead_lettered, n);
    return kafka_ack(ctx, evs, n);
}

static void kafka_stats(void *vctx, ep_queue_stats_t *st)
{
    kafka_ctx_t *ctx = vctx;

    ep_queue_counters_read(&ctx->counts, st);
    /* Waiting events = the consumer lag, known once this process has partitions (-1 before:
     * an analytics replica is not "caught up" before its group's first assignment). */
    st->size = atomic_load(&ctx->cons) ? atomic_load(&ctx->lag_total) : -1;
}

static void kafka_stats_json(void *vctx, ep_buf_t *out)
{
    kafka_ctx_t *ctx = vctx;
    rd_kafka_t *cons = atomic_load(&ctx->cons);
    int brokers_up = atomic_load(&ctx->brokers_up);
    size_t assigned;
    int64_t lag = atomic_load(&ctx->lag_total); /* -1: unknown, shown as 0 */

    pthread_mutex_lock(&ctx->state_lock);
    assigned = ctx->n_parts;
    pthread_mutex_unlock(&ctx->state_lock);
    ep_buf_puts(out, ",\"kafka\":{\"topic\":");
    ep_buf_put_json_str(out, ctx->topic, strlen(ctx->topic));
    ep_buf_puts(out, ",\"group\":");
    ep_buf_put_json_str(out, ctx->group, strlen(ctx->group));
    ep_buf_printf(out,
                  ",\"brokers_up\":%d,\"consumer\":%s,\"assigned_partitions\":%zu,\"lag\":%" PRId64
                  ",\"retry_pending\":%zu,\"delivered\":%" PRIu64 ",\"delivery_failed\":%" PRIu64
                  ",\"rejected_down\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"lost_resets\":%" PRIu64
                  ",\"poison\":%" PRIu64 ",\"dead_lettered\":%" PRIu64 ",\"commits\":%" PRIu64
                  ",\"outq\":%d,\"topic_partitions\":%d,\"topic_replicas\":%d"
                  ",\"revoked_in_flight\":%" PRIu64 "}",
                  brokers_up > 0 ? brokers_up : 0, cons ? "true" : "false", assigned,
                  cons && lag > 0 ? lag : 0, atomic_load(&ctx->retry_n),
                  ep_counter_get(&ctx->delivered), ep_counter_get(&ctx->delivery_failed),
                  ep_counter_get(&ctx->rejected_down), ep_counter_get(&ctx->counts.lost),
                  ep_counter_get(&ctx->lost_resets), ep_counter_get(&ctx->poison),
                  ep_counter_get(&ctx->dead_lettered), ep_counter_get(&ctx->commits),
                  rd_kafka_outq_len(ctx->prod), atomic_load(&ctx->topic_partitions),
                  atomic_load(&ctx->topic_replicas), ep_counter_get(&ctx->revoked_in_flight));
}

static void kafka_lag_json(void *vctx, ep_buf_t *out)
{
    kafka_ctx_t *ctx = vctx;

    pthread_mutex_lock(&ctx->info_lock);
    ep_buf_append(out, ctx->lag_json.data, ctx->lag_json.len);
    pthread_mutex_unlock(&ctx->info_lock);
}

static int kafka_ready(void *vctx, char *reason, size_t len)
{
    kafka_ctx_t *ctx = vctx;
    const char *why = NULL;

    if (atomic_load(&ctx->closed)) {
        why = "queue closed";
    } else if (atomic_load(&ctx->fatal)) {
        why = "fatal producer error";
    } else if (ctx->cons_err[0] && atomic_load(&ctx->cons) == NULL) {
        why = "consumer could not be created";
    } else if (atomic_load(&ctx->topics_refused)) {
        why = "cannot create its topics";
    } else if (atomic_load(&ctx->brokers_up) > 0) {
        return 1;
    }
    if (reason && len) {
        pthread_mutex_lock(&ctx->info_lock);
        if (why) {
            snprintf(reason, len, "kafka: %s: %s", why, ctx->last_error);
        } else {
            snprintf(reason, len, "kafka: no broker reachable at %s: %s", ctx->brokers,
                     ctx->last_error);
        }
        pthread_mutex_unlock(&ctx->info_lock);
    }
    return 0;
}

static int kafka_flush(void *vctx, int timeout_ms)
{
    kafka_ctx_t *ctx = vctx;

    return rd_kafka_flush(ctx->prod, timeout_ms < 0 ? -1 : timeout_ms) == 0 ? 0 : EP_ETIMEDOUT;
}

static void kafka_close(void *vctx)
{
    kafka_ctx_t *ctx = vctx;

    if (atomic_exchange(&ctx->closed, 1)) {
        return;
    }
    if (rd_kafka_flush(ctx->prod, ctx->timeout_ms) != 0) {
        ep_log_warn(LOG, "%d record(s) not yet delivered at close", rd_kafka_outq_len(ctx->prod));
    }
    /* The poll thread commits what was acked so far; destroy commits the rest synchronously. */
    atomic_store(&ctx->commit_dirty, 1);
}

/* Frees ctx and what the consumer side left in it (un-acked redeliveries are not
 * committed: Kafka hands them out again). The producer is gone already. */
static void ctx_free(kafka_ctx_t *ctx)
{
    ep_redeliver_drop(&ctx->retry, NULL, NULL);
    for (size_t i = 0; i < ctx->n_parts; i++) {
        ep_free(ctx->parts[i].offs);
    }
    ep_free(ctx->parts);
    ep__kafka_props_free(ctx->props, ctx->n_props);
    ep_buf_close(&ctx->lag_json);
    pthread_cond_destroy(&ctx->mon_cond);
    pthread_mutex_destroy(&ctx->mon_lock);
    pthread_mutex_destroy(&ctx->info_lock);
    pthread_mutex_destroy(&ctx->state_lock);
    pthread_mutex_destroy(&ctx->cons_lock);
    ep_free(ctx);
}

/* Drops one of ctx's two owners at destroy (the destroying thread, the leaving one);
 * the last one frees it. */
static void ctx_release(kafka_ctx_t *ctx)
{
    if (atomic_fetch_sub(&ctx->refs, 1) == 1) {
        ctx_free(ctx);
    }
}

/* Thread: the final commit of the acked prefix, then leaving the group (the revocation
 * commits too), then the consumer's end. */
static void *leave_main(void *arg)
{
    kafka_ctx_t *ctx = arg;
    rd_kafka_t *cons = atomic_load(&ctx->cons);
    int abandoned;

    ep__kafka_commit_now(ctx, cons, COMMIT_SYNC_TIMEOUT);
    atomic_store(&ctx->leave_step, LEAVE_CLOSE);
    rd_kafka_consumer_close(cons);
    atomic_store(&ctx->leave_step, LEAVE_DESTROY);
    rd_kafka_queue_destroy(ctx->cons_q);
    rd_kafka_destroy(cons);
    atomic_store(&ctx->leave_step, LEAVE_FINISHED);
    pthread_mutex_lock(&ctx->mon_lock);
    abandoned = ctx->leave_state == LEAVE_ABANDONED;
    ctx->leave_state = LEAVE_DONE;
    pthread_cond_broadcast(&ctx->mon_cond);
    pthread_mutex_unlock(&ctx->mon_lock);
    if (abandoned) {
        ep_log_info(LOG, "the consumer left group %s after all, past the deadline", ctx->group);
    }
    ctx_release(ctx);
    return NULL;
}

/*
 * Leaves the group on a thread of its own and waits LEAVE_TIMEOUT_MS at most.
 * librdkafka 2.0.2 was seen never to return from rd_kafka_consumer_close when the
 * group rebalanced as the member left (CI, a processor's SIGTERM right after another
 * member's). Past the deadline that thread is left running: the process must then
 * end with _exit (ep_exit_fast_request), and the group drops the member at its
 * session timeout. Takes one reference of ctx for the thread.
 */
static void leave_group(kafka_ctx_t *ctx)
{
    static const char *const steps[] = {"the final offset commit",
                                        "rd_kafka_consumer_close (leaving the group)",
                                        "rd_kafka_destroy of the consumer", "done"};
    pthread_attr_t attr;
    pthread_t tid;
    struct timespec ts;
    int step, done, rc;

    atomic_fetch_add(&ctx->refs, 1);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, leave_main, ctx);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        leave_main(ctx); /* no thread to spare: unbounded, as before */
        return;
    }
    ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, LEAVE_TIMEOUT_MS);
    pthread_mutex_lock(&ctx->mon_lock);
    while (ctx->leave_state == LEAVE_RUNNING &&
           pthread_cond_timedwait(&ctx->mon_cond, &ctx->mon_lock, &ts) != ETIMEDOUT) {
    }
    done = ctx->leave_state == LEAVE_DONE;
    if (!done) {
        ctx->leave_state = LEAVE_ABANDONED;
    }
    pthread_mutex_unlock(&ctx->mon_lock);
    if (done) {
        return;
    }
    step = atomic_load(&ctx->leave_step);
    ep_exit_fast_request();
    ep_log_warn(LOG,
                "leaving consumer group %s did not finish within %d s (stuck in %s); going on "
                "without it: the group drops this member after its session timeout, and the "
                "next owners read from the offsets the broker holds%s",
                ctx->group, LEAVE_TIMEOUT_MS / 1000, steps[step],
                step == LEAVE_COMMIT ? " (events acknowledged since the last accepted commit "
                                       "are processed again)"
                                     : "");
}

static void kafka_destroy(void *vctx)
{
    kafka_ctx_t *ctx = vctx;
    rd_kafka_t *cons;

    if (ctx == NULL) {
        return;
    }
    atomic_store(&ctx->closed, 1);
    atomic_store(&ctx->stop, 1);
    pthread_mutex_lock(&ctx->mon_lock);
    pthread_cond_broadcast(&ctx->mon_cond);
    pthread_mutex_unlock(&ctx->mon_lock);
    if (ctx->mon_started) {
        pthread_join(ctx->mon_tid, NULL);
    }
    if (ctx->poll_started) {
        pthread_join(ctx->poll_tid, NULL);
    }
    cons = atomic_load(&ctx->cons);
    if (cons) {
        leave_group(ctx);
    }
    if (ctx->prod) {
        /* Deliver what can be delivered, then fail the rest so every callback runs once. */
        rd_kafka_flush(ctx->prod, ctx->timeout_ms);
        rd_kafka_purge(ctx->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(ctx->prod, 1000);
        if (ctx->prod_topic) {
            rd_kafka_topic_destroy(ctx->prod_topic);
        }
        if (ctx->dlq_rkt) {
            rd_kafka_topic_destroy(ctx->dlq_rkt);
        }
        rd_kafka_destroy(ctx->prod);
    }
    ctx_release(ctx);
}

const ep_queue_provider_t ep_queue_kafka_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "kafka",
    .flags = 0,
    .init = kafka_init,
    .publish = kafka_publish,
    .consume = kafka_consume,
    .ack = kafka_ack,
    .nack = kafka_nack,
    .stats = kafka_stats,
    .stats_json = kafka_stats_json,
    .ready = kafka_ready,
    .flush = kafka_flush,
    .close = kafka_close,
    .destroy = kafka_destroy,
    .dead_letter = kafka_dead_letter,
    .lag_json = kafka_lag_json,
    .options = &ep__kafka_options,
    .own_consumer = ep__kafka_own_consumer,
};
