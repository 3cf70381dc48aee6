/*
 * Offset tracking and commits of the "kafka" queue provider (split from
 * ep_queue_kafka.c, whose opening comment describes the scheme): per assigned
 * partition, the offsets handed out and whether each is done; the contiguous
 * acked prefix is what gets committed. Also the offset-reset (lost records)
 * bookkeeping and the commit and rebalance callbacks. Everything here runs
 * under ctx->state_lock unless it says it takes it.
 */
#include "queue/kafka/ep_queue_kafka_int.h"

#include "base/ep_counter.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define LOG "kafka"

kafka_part_t *ep__kafka_part_find(kafka_ctx_t *ctx, int32_t partition)
{
    for (size_t i = 0; i < ctx->n_parts; i++) {
        if (ctx->parts[i].partition == partition) {
            return &ctx->parts[i];
        }
    }
    return NULL;
}

kafka_part_t *ep__kafka_part_add(kafka_ctx_t *ctx, int32_t partition)
{
    kafka_part_t *p = ep__kafka_part_find(ctx, partition);

    if (p) {
        return p;
    }
    if (ctx->n_parts == ctx->cap_parts) {
        ctx->cap_parts = ctx->cap_parts ? ctx->cap_parts * 2 : 8;
        ctx->parts = ep_realloc(ctx->parts, ctx->cap_parts * sizeof(*ctx->parts));
    }
    p = &ctx->parts[ctx->n_parts++];
    memset(p, 0, sizeof(*p));
    p->partition = partition;
    p->commit_pos = -1;
    p->committed = -1;
    p->reset_from = -1;
    p->confirmed = -1;
    p->first = -1;
    return p;
}

static void part_remove(kafka_ctx_t *ctx, int32_t partition)
{
    for (size_t i = 0; i < ctx->n_parts; i++) {
        if (ctx->parts[i].partition == partition) {
            ep_free(ctx->parts[i].offs);
            ctx->parts[i] = ctx->parts[--ctx->n_parts];
            return;
        }
    }
}

/*
 * Lost records. When the offset a partition is fetched from is no longer on
 * the broker (retention deleted it before it was read, typically because the
 * consumer fell behind), librdkafka 2.0 applies auto.offset.reset=earliest by
 * itself and says so only in its log: "[thrd:main]: <topic> [<p>]: offset reset
 * (at offset <o>, broker <b>) to ...". (auto.offset.reset=error would report it as an
 * event, but stops the partition's fetcher with no way to restart it short of
 * a new assignment.) The offset is noted on the partition here; the first
 * record read at or past it tells how many were skipped (take_records), and
 * those acknowledged events are counted as lost, never silently.
 *
 * Readiness stays as it was: the records are gone, and taking the consumer out
 * of service would only let the next ones expire too. The loss shows in
 * /stats (kafka.lost), in ep_queue_lost_events_total (an alert rule fires on
 * any increase, deploy/prometheus/alerts.yml) and in an error log line.
 */
void ep__kafka_note_offset_reset(kafka_ctx_t *ctx, const char *buf)
{
    size_t tl = strlen(ctx->topic);
    const char *thrd = strstr(buf, "]: ");
    int32_t partition;
    long long at;
    kafka_part_t *p;

    if (buf[0] == '[' && thrd) {
        buf = thrd + 3; /* "[thrd:main]: " */
    }
    if (strncmp(buf, ctx->topic, tl) != 0 ||
        sscanf(buf + tl, " [%" SCNd32 "]: offset reset (at offset %lld,", &partition, &at) != 2 ||
        at < 0) {
        return; /* another topic, or a logical offset (no committed offset yet) */
    }
    pthread_mutex_lock(&ctx->state_lock);
    p = ep__kafka_part_add(ctx, partition);
    if (p->reset_from < 0 || at < p->reset_from) {
        p->reset_from = at;
    }
    pthread_mutex_unlock(&ctx->state_lock);
}

/*
 * Called with the offset of a record just read from p: returns how many
 * records a pending offset reset skipped before it (0 if none), and the first
 * skipped offset in *from.
 */
int64_t ep__kafka_part_skipped(kafka_part_t *p, int64_t offset, int64_t *from)
{
    int64_t n;

    if (p->reset_from < 0 || offset < p->reset_from) {
        return 0; /* none pending, or records fetched before the reset point */
    }
    n = offset - p->reset_from;
    *from = p->reset_from;
    p->reset_from = -1;
    return n;
}

/* Counts and reports records an offset reset skipped. */
void ep__kafka_report_lost(kafka_ctx_t *ctx, int32_t partition, int64_t from, int64_t n)
{
    ep_counter_add(&ctx->counts.lost, (uint64_t)n);
    ep_counter_add(&ctx->lost_resets, 1);
    ep__kafka_set_error(
        ctx, "%" PRId64 " acknowledged event(s) lost to an offset reset on %s[%" PRId32 "]", n,
        ctx->topic, partition);
    ep_log_error(LOG,
                 "%" PRId64 " acknowledged event(s) lost: %s[%" PRId32 "] offsets %" PRId64
                 "..%" PRId64 " were no longer on the broker when the consumer got to them "
                 "(retention removed them unread); reading resumed at %" PRId64,
                 n, ctx->topic, partition, from, from + n - 1, from + n);
}

/* Records that offset was handed out. */
void ep__kafka_part_append(kafka_part_t *p, int64_t offset)
{
    if (p->tail > p->head && offset <= p->offs[p->tail - 1].offset) {
        /* The partition was rewound (offset reset): start the log again from here. */
        p->head = p->tail = 0;
    }
    if (p->head == p->tail) {
        p->head = p->tail = 0;
    } else if (p->tail == p->cap && p->head > 0) {
        memmove(p->offs, p->offs + p->head, (p->tail - p->head) * sizeof(*p->offs));
        p->tail -= p->head;
        p->head = 0;
    }
    if (p->tail == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 256;
        p->offs = ep_realloc(p->offs, p->cap * sizeof(*p->offs));
    }
    p->offs[p->tail].offset = offset;
    p->offs[p->tail].acked = 0;
    p->tail++;
    if (p->first < 0) {
        p->first = offset;
    }
}

/* Marks offset done and advances the commit point over the acked prefix. Returns 1 if it moved. */
int ep__kafka_part_ack(kafka_part_t *p, int64_t offset)
{
    size_t lo = p->head, hi = p->tail;
    int64_t last = -1;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->offs[mid].offset < offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == p->tail || p->offs[lo].offset != offset) {
        return 0; /* not handed out by this assignment (stale ack after a rebalance) */
    }
    p->offs[lo].acked = 1;
    while (p->head < p->tail && p->offs[p->head].acked) {
        last = p->offs[p->head].offset;
        p->head++;
    }
    if (last < 0) {
        return 0;
    }
    /* Everything below the first offset still out (or past the last one) is done. */
    p->commit_pos = p->head < p->tail ? p->offs[p->head].offset : last + 1;
    return 1;
}

/*
 * Builds the list of partitions whose commit point moved (optionally only those in only).
 * force: every partition with a commit point, whether or not it was sent before: at
 * revocation and at the end an earlier asynchronous commit may still be in flight and
 * fail (a rebalance in progress), and nothing would send its offset again.
 */
static rd_kafka_topic_partition_list_t *
commit_list(kafka_ctx_t *ctx, const rd_kafka_topic_partition_list_t *only, int force)
{
    rd_kafka_topic_partition_list_t *l = NULL;

    for (size_t i = 0; i < ctx->n_parts; i++) {
        kafka_part_t *p = &ctx->parts[i];

        if (p->commit_pos < 0 || (!force && p->commit_pos <= p->committed)) {
            continue;
        }
        if (only && !rd_kafka_topic_partition_list_find(only, ctx->topic, p->partition)) {
            continue;
        }
        if (l == NULL) {
            l = rd_kafka_topic_partition_list_new((int)ctx->n_parts);
        }
        rd_kafka_topic_partition_list_add(l, ctx->topic, p->partition)->offset = p->commit_pos;
        p->committed = p->commit_pos;
    }
    return l;
}

/* Commits every moved commit point; async or synchronous. Takes state_lock. */
void ep__kafka_commit_now(kafka_ctx_t *ctx, rd_kafka_t *cons, int sync)
{
    rd_kafka_topic_partition_list_t *l;
    rd_kafka_resp_err_t err;

    pthread_mutex_lock(&ctx->state_lock);
    l = commit_list(ctx, NULL, sync);
    pthread_mutex_unlock(&ctx->state_lock);
    if (l == NULL) {
        return;
    }
    err = rd_kafka_commit(cons, l, sync ? 0 : 1);
    ep_counter_add(&ctx->commits, 1);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        ep_log_warn(LOG, "offset commit failed: %s", rd_kafka_err2str(err));
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static int in_partition(const ep_event_t *ev, void *arg)
{
    return ev->qh != NULL && handle_part(ev) == *(int32_t *)arg;
}

/* Drops the redelivery entries of a revoked partition (the new owner gets them from Kafka). */
static void retry_drop_partition(kafka_ctx_t *ctx, int32_t partition)
{
    size_t dropped = ep_redeliver_drop(&ctx->retry, in_partition, &partition);

    if (dropped) {
        atomic_fetch_sub(&ctx->retry_n, dropped);
    }
}

/*
 * A failed commit (e.g. "rebalance in progress") is sent again: its partitions are marked
 * as never committed, so the next commit (the poll thread's, or the one at revocation)
 * includes them. Without this the broker kept the older offset and the next owner of the
 * partition processed everything since then a second time.
 */
void ep__kafka_on_commit(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    kafka_ctx_t *ctx = opaque;
    int again = 0;

    (void)rk;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET) {
        return;
    }
    if (err) {
        ep_log_warn(LOG, "offset commit failed: %s", rd_kafka_err2str(err));
    }
    if (ctx == NULL || offsets == NULL) {
        return;
    }
    pthread_mutex_lock(&ctx->state_lock);
    for (int i = 0; i < offsets->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        kafka_part_t *p;

        if (strcmp(tp->topic, ctx->topic) != 0) {
            continue;
        }
        p = ep__kafka_part_find(ctx, tp->partition);
        if (err == 0 && tp->err == 0) {
            if (p && tp->offset > p->confirmed) {
                p->confirmed = tp->offset;
            }
        } else if (p && p->committed == tp->offset) {
            p->committed = -1;
            again = 1;
        }
    }
    pthread_mutex_unlock(&ctx->state_lock);
    if (again) {
        atomic_store(&ctx->commit_dirty, 1);
    }
}

void ep__kafka_on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                            rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    kafka_ctx_t *ctx = opaque;
    int cooperative = ctx->cooperative;
    rd_kafka_error_t *error = NULL;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        ep_log_info(LOG, "assigned %d partition(s) of %s", parts->cnt, ctx->topic);
        pthread_mutex_lock(&ctx->state_lock);
        for (int i = 0; i < parts->cnt; i++) {
            part_remove(ctx, parts->elems[i].partition);
            ep__kafka_part_add(ctx, parts->elems[i].partition);
        }
        pthread_mutex_unlock(&ctx->state_lock);
        if (cooperative) {
            error = rd_kafka_incremental_assign(rk, parts);
        } else {
            rd_kafka_assign(rk, parts);
        }
    } else {
        rd_kafka_topic_partition_list_t *l;
        uint64_t in_flight = 0, unconfirmed = 0;
        int commit_failed = rd_kafka_assignment_lost(rk);

        pthread_mutex_lock(&ctx->state_lock);
        l = commit_list(ctx, parts, 1);
        for (int i = 0; i < parts->cnt; i++) {
            kafka_part_t *p = ep__kafka_part_find(ctx, parts->elems[i].partition);
            int64_t base = p && p->confirmed >= 0 ? p->confirmed : p ? p->first : -1;

            /* Handed out, not below the commit point: the new owner gets them again ... */
            in_flight += p ? p->tail - p->head : 0;
            /* ... and, if this commit fails, everything since the broker's last one. */
            if (p && base >= 0 && p->commit_pos > base) {
                unconfirmed += (uint64_t)(p->commit_pos - base);
            }
            part_remove(ctx, parts->elems[i].partition);
            retry_drop_partition(ctx, parts->elems[i].partition);
        }
        pthread_mutex_unlock(&ctx->state_lock);
        if (l && !commit_failed) {
            rd_kafka_resp_err_t cerr = rd_kafka_commit(rk, l, 0);
            ep_counter_add(&ctx->commits, 1);
            if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET) {
                ep_log_warn(LOG, "commit on revocation failed: %s", rd_kafka_err2str(cerr));
                commit_failed = 1;
            }
        }
        in_flight += commit_failed ? unconfirmed : 0;
        ep_counter_add(&ctx->revoked_in_flight, in_flight);
        ep_log_info(LOG,
                    "revoked %d partition(s) of %s%s; %" PRIu64 " in flight past the broker's "
                    "commit point go to the new owner",
                    parts->cnt, ctx->topic, rd_kafka_assignment_lost(rk) ? " (lost)" : "",
                    in_flight);
        if (l) {
            rd_kafka_topic_partition_list_destroy(l);
        }
        if (cooperative) {
            error = rd_kafka_incremental_unassign(rk, parts);
        } else {
            rd_kafka_assign(rk, NULL);
        }
    }
    if (error) {
        ep_log_warn(LOG, "rebalance: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
}