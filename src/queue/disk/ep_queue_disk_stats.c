/*
 * The disk queue's stats (design in ep_queue_disk.c): the queue counters,
 * the "disk" part of the stats JSON, the lag JSON, and the fdatasync latency
 * histogram the writer records into.
 */
#include "queue/disk/ep_queue_disk_int.h"
#include "base/ep_counter.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "queue/ep_redeliver.h"
#include "base/ep_time.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * fdatasync latency histogram: 8 buckets per power of two in relaxed atomics,
 * so that the writer records and the stats path reads without a lock. Not
 * ep_hist: that one is not thread-safe (a lock on the writer's path), and its
 * 64 buckets per power of two and rounding would change the reported figures.
 */
int ep__disk_hist_index(uint64_t us)
{
    int e;

    if (us < 16) {
        return (int)us;
    }
    e = 63 - __builtin_clzll(us);
    if (e > 43) {
        return HIST_BUCKETS - 1;
    }
    return 16 + (e - 4) * 8 + (int)((us >> (e - 3)) & 7);
}

static uint64_t hist_value(int i)
{
    int e, sub;

    if (i < 16) {
        return (uint64_t)i;
    }
    e = (i - 16) / 8 + 4;
    sub = (i - 16) % 8;
    /* The middle of the bucket. */
    return ((8ull + (uint64_t)sub) << (e - 3)) + (1ull << (e - 3)) / 2;
}

static uint64_t hist_percentile(disk_ctx_t *ctx, double pct)
{
    uint64_t total = 0, seen = 0, want;

    for (int i = 0; i < HIST_BUCKETS; i++) {
        total += ep_counter_get(&ctx->hist[i]);
    }
    if (total == 0) {
        return 0;
    }
    want = (uint64_t)((double)total * pct / 100.0);
    if (want == 0) {
        want = 1;
    }
    for (int i = 0; i < HIST_BUCKETS; i++) {
        seen += ep_counter_get(&ctx->hist[i]);
        if (seen >= want) {
            return hist_value(i);
        }
    }
    return hist_value(HIST_BUCKETS - 1);
}

void ep__disk_stats(void *vctx, ep_queue_stats_t *st)
{
    disk_ctx_t *ctx = vctx;
    uint64_t rs, ns;

    ep_queue_counters_read(&ctx->counts, st);
    rs = ep_counter_get(&ctx->read_seq_pub);
    ns = ep_counter_get(&ctx->next_seq_pub);
    st->size = (int64_t)(ns > rs ? ns - rs : 0) + (int64_t)ep_counter_get(&ctx->rd_n);
}

void ep__disk_stats_json(void *vctx, ep_buf_t *out)
{
    disk_ctx_t *ctx = vctx;
    uint64_t records = 0, fsyncs = ep_counter_get(&ctx->fsyncs);
    int64_t bytes = 0, oldest = 0;
    size_t segs;

    pthread_mutex_lock(&ctx->seg_lock);
    segs = ctx->n_segs;
    for (size_t i = 0; i < ctx->n_segs; i++) {
        records += ctx->segs[i].end_seq - ctx->segs[i].first_seq;
        bytes += ctx->segs[i].bytes;
    }
    if (segs > 0 && ctx->segs[0].end_seq > ctx->segs[0].first_seq) {
        oldest = ep_time_now_ms() - ctx->segs[0].first_ts_ms;
    }
    pthread_mutex_unlock(&ctx->seg_lock);
    ep_buf_printf(
        out,
        ",\"disk\":{\"records\":%" PRIu64 ",\"bytes\":%" PRId64 ",\"segments\":%zu,"
        "\"oldest_age_s\":%.3f,\"fsyncs\":%" PRIu64 ",\"events_per_fsync\":%.2f,"
        "\"fsync_p50_us\":%" PRIu64 ",\"fsync_p99_us\":%" PRIu64 ",\"unacked_bytes\":%" PRId64
        ",\"max_unacked_bytes\":%" PRId64 ",\"committed_seq\":%" PRIu64 ",\"next_seq\":%" PRIu64
        ",\"dlq_records\":%" PRIu64 ",\"broken\":%s}",
        records, bytes, segs, oldest > 0 ? (double)oldest / 1000.0 : 0.0, fsyncs,
        fsyncs ? (double)ep_counter_get(&ctx->synced_events) / (double)fsyncs : 0.0,
        hist_percentile(ctx, 50), hist_percentile(ctx, 99),
        atomic_load_explicit(&ctx->unacked_bytes, memory_order_relaxed), ctx->retention_bytes,
        ep_counter_get(&ctx->floor_pub), ep_counter_get(&ctx->next_seq_pub),
        ep_counter_get(&ctx->dlq_records), atomic_load(&ctx->broken) ? "true" : "false");
}

void ep__disk_lag_json(void *vctx, ep_buf_t *out)
{
    disk_ctx_t *ctx = vctx;
    uint64_t ns = ep_counter_get(&ctx->next_seq_pub), fl = ep_counter_get(&ctx->floor_pub);

    ep_buf_printf(out, "{\"total\":%" PRIu64 ",\"committed_seq\":%" PRIu64 "}",
                  ns > fl ? ns - fl : 0, fl);
}
