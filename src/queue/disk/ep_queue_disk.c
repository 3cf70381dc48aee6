/*
 * The "disk" queue provider: an embedded append-only log in QUEUE_DIR that
 * survives kill -9 (layout in ep_disk_int.h and docs/disk-queue.md).
 *
 * Publish (any thread): encodes the events as records into the pending batch
 * under pub_lock, assigns their sequence numbers, and returns; the events are
 * freed there. One writer thread swaps the pending batch out, seals the
 * records (CRC), writes them with one write(2) per segment touched and, with
 * QUEUE_FSYNC=always, one fdatasync per batch (group commit), then makes the
 * records visible to consumers and completes every publish callback of the
 * batch. With an interval the callbacks follow the write and fdatasync runs
 * every interval; with "never" the kernel decides.
 *
 * Consume (workers): reads records back from the segment files under
 * read_lock through a buffer (page cache), checks each CRC again and decodes
 * it into a new event (ev->qseq = sequence, ev->qh = record bytes). Nacked
 * events wait on an ep_redeliver list. Acks set bits in a window bitmap that
 * starts at the lowest un-acked sequence (the floor); the floor advances over
 * the contiguous acked prefix, and a keeper thread persists it into the cursor file
 * at most every CURSOR_INTERVAL_MS. After a restart everything from the
 * persisted floor is delivered again (at-least-once); ev->attempts counts the
 * deliveries in this process only.
 *
 * Backpressure: records published and not yet acked may take at most
 * QUEUE_RETENTION_BYTES (0: unbounded); past it publish returns EP_EFULL.
 * Retention (keeper thread, every RETENTION_INTERVAL_MS) deletes whole
 * segments below the persisted floor once older than QUEUE_RETENTION_AGE or
 * while the log is larger than QUEUE_RETENTION_BYTES.
 *
 * Lock order: read_lock, then seg_lock. pub_lock is never held with another.
 *
 * This file holds the provider's entry points but for the consumer's; the
 * writer and keeper threads, the consumer side (consume, ack, nack), the
 * segment table and recovery, and the stats are in
 * ep_queue_disk_{writer,read,segs,stats}.c around the context struct in
 * ep_queue_disk_int.h.
 */
#include "queue/disk/ep_queue_disk_int.h"
#include "base/ep_counter.h"
#include "base/ep_duration.h"
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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

void ep__disk_set_broken(disk_ctx_t *ctx, const char *fmt, const char *what, int err)
{
    pthread_mutex_lock(&ctx->err_lock);
    if (!atomic_load(&ctx->broken)) {
        snprintf(ctx->broken_reason, sizeof(ctx->broken_reason), fmt, ctx->dir, what,
                 strerror(err));
        ep_log_error("disk", "%s; the disk queue refuses publishes until restarted",
                     ctx->broken_reason);
        atomic_store(&ctx->broken, 1);
    }
    pthread_mutex_unlock(&ctx->err_lock);
}

/* --------------------------------------------------------------- provider */

/* The disk queue's settings (its table below); fsync_* are derived from fsync by disk_check. */
typedef struct {
    char dir[DISK_DIR_MAX];  /* QUEUE_DIR */
    char fsync[32];          /* QUEUE_FSYNC: always | never | an interval */
    int64_t segment_bytes;   /* QUEUE_SEGMENT_SIZE */
    int64_t retention_bytes; /* QUEUE_RETENTION_BYTES (0: no bound) */
    int64_t retention_age_s; /* QUEUE_RETENTION_AGE (0: no bound) */
    int fsync_mode;          /* FSYNC_* */
    int64_t fsync_interval_ms;
} disk_opts_t;

#define S(f) offsetof(disk_opts_t, f), sizeof(((disk_opts_t *)0)->f)
#define N(f) offsetof(disk_opts_t, f), 0

static const ep_opt_t disk_opt_rows[] = {
    {EP_OPT_STR, "QUEUE_DIR", "queue-dir", "./eventpipe-data/queue", S(dir), 0, 0, NULL,
     "directory of the disk queue"},
    {EP_OPT_STR, "QUEUE_FSYNC", "queue-fsync", "always", S(fsync), 0, 0, NULL,
     "disk queue fsync policy: always, never or an interval (a duration, 1ms-1h; bare "
     "number: ms)"},
    {EP_OPT_SIZE, "QUEUE_SEGMENT_SIZE", "queue-segment-size", "67108864", N(segment_bytes), 4096,
     4294967295LL, NULL, "bytes per disk queue segment file"},
    {EP_OPT_SIZE, "QUEUE_RETENTION_BYTES", "queue-retention-bytes", "1073741824",
     N(retention_bytes), 0, INT64_MAX, NULL,
     "disk queue: bytes kept at most, and un-acked bytes before 503 (0: no bound)"},
    {EP_OPT_DURATION_S, "QUEUE_RETENTION_AGE", "queue-retention-age", "168h", S(retention_age_s), 0,
     INT64_MAX / 1000000000, "s",
     "how long consumed disk queue data is kept at most, whole seconds (0: no age bound)"},
};

#undef S
#undef N

/* QUEUE_FSYNC: always, never, or an interval (a duration, a bare number being ms; whole ms in
 * [1ms, 1h]); the segment size. */
static int disk_check(void *vopts, char *err, size_t errlen)
{
    disk_opts_t *o = vopts;
    const char *why;
    int64_t ns;

    if (strcmp(o->fsync, "always") == 0 || strcmp(o->fsync, "never") == 0) {
        o->fsync_mode = o->fsync[0] == 'a' ? FSYNC_ALWAYS : FSYNC_NEVER;
    } else if (ep_duration_parse_bare(o->fsync, EP_MS, &ns, &why) != 0 || ns % EP_MS != 0 ||
               ns < EP_MS || ns > 3600 * EP_S) {
        snprintf(err, errlen,
                 "QUEUE_FSYNC: '%s' is not always, never or an interval of whole ms in [1ms, 1h] "
                 "(e.g. 50ms; a bare number is ms)",
                 o->fsync);
        return EP_ECONFIG;
    } else {
        o->fsync_mode = FSYNC_EVERY;
        o->fsync_interval_ms = ns / EP_MS;
    }
    if (o->segment_bytes < EP_DISK_HDR_SIZE * 2) {
        snprintf(err, errlen, "QUEUE_SEGMENT_SIZE: %lld is too small", (long long)o->segment_bytes);
        return EP_ECONFIG;
    }
    return 0;
}

static const ep_opt_table_t disk_options = {
    .name = "disk",
    .opts = disk_opt_rows,
    .n_opts = sizeof(disk_opt_rows) / sizeof(disk_opt_rows[0]),
    .size = sizeof(disk_opts_t),
    .check = disk_check,
};

static void disk_destroy(void *vctx);

static int disk_init(const ep_config_t *cfg, const void *vopts, void **out, char *err,
                     size_t errlen)
{
    const disk_opts_t *opts = vopts;
    disk_ctx_t *ctx;
    pthread_condattr_t ca;
    uint64_t cursor = 0, want_seg;
    int64_t want_off, unacked = 0;
    char why[128];
    int rc;

    *out = NULL;
    ctx = ep_calloc(1, sizeof(*ctx));
    ctx->dir_fd = ctx->lock_fd = ctx->seg_fd = ctx->read_fd = ctx->dlq_fd = -1;
    pthread_mutex_init(&ctx->pub_lock, NULL);
    pthread_mutex_init(&ctx->seg_lock, NULL);
    pthread_mutex_init(&ctx->read_lock, NULL);
    pthread_mutex_init(&ctx->err_lock, NULL);
    pthread_mutex_init(&ctx->dlq_lock, NULL);
    pthread_mutex_init(&ctx->keep_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->pub_cond, &ca);
    pthread_cond_init(&ctx->read_cond, &ca);
    pthread_cond_init(&ctx->keep_cond, &ca);
    pthread_condattr_destroy(&ca);
    ep_buf_init(&ctx->pending);
    ep_buf_init(&ctx->wbuf);
    ctx->bits_cap = 4096;
    ctx->bits = ep_calloc(ctx->bits_cap / 64, sizeof(uint64_t));

    if (opts->dir[0] == '\0') {
        snprintf(err, errlen, "QUEUE_DIR: empty");
        rc = EP_ECONFIG;
        goto err;
    }
    ctx->fsync_mode = opts->fsync_mode;
    ctx->fsync_interval_ms = opts->fsync_interval_ms;
    snprintf(ctx->dir, sizeof(ctx->dir), "%s", opts->dir);
    ctx->segment_bytes = opts->segment_bytes;
    ctx->retention_bytes = opts->retention_bytes;
    ctx->retention_age_s = opts->retention_age_s;

    rc = ep__disk_mkdir_p(ctx->dir);
    if (rc == 0) {
        ctx->dir_fd = open(ctx->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        rc = ctx->dir_fd < 0 ? EP__ERR(errno) : 0;
    }
    if (rc != 0) {
        snprintf(err, errlen, "QUEUE_DIR %s: cannot create or open: %s", ctx->dir, strerror(-rc));
        rc = EP_EIO;
        goto err;
    }
    ctx->lock_fd = openat(ctx->dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (ctx->lock_fd < 0 || flock(ctx->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        snprintf(err, errlen, "QUEUE_DIR %s: %s", ctx->dir,
                 errno == EWOULDBLOCK ? "in use by another process (its lock file is held)"
                                      : strerror(errno));
        rc = EP_EIO;
        goto err;
    }

    rc = ep__disk_cursor_read(ctx->dir_fd, &cursor, why, sizeof(why));
    if (rc == EP_EPARSE) {
        ep_log_warn("disk", "%s/cursor: %s; delivering every retained record again", ctx->dir, why);
        cursor = 0;
    } else if (rc != 0) {
        cursor = 0;
    }
    rc = ep__disk_recover_segments(ctx, cursor, &want_seg, &want_off, err, errlen);
    if (rc != 0) {
        goto err;
    }
    if ((rc = ep__disk_open_dlq(ctx, err, errlen)) != 0) {
        goto err;
    }

    /* Where reading resumes: the cursor's record, else the first record after it. */
    ctx->next_seq = cursor;
    if (ctx->n_segs > 0 && ctx->segs[ctx->n_segs - 1].end_seq > ctx->next_seq) {
        ctx->next_seq = ctx->segs[ctx->n_segs - 1].end_seq;
    }
    if (want_off >= 0) {
        ctx->read_seq = cursor;
        ctx->read_seg = want_seg;
        ctx->read_off = want_off;
    } else {
        size_t i = 0;

        while (i < ctx->n_segs && ctx->segs[i].first_seq < cursor) {
            i++;
        }
        if (i < ctx->n_segs) {
            ctx->read_seq = ctx->segs[i].first_seq;
            ctx->read_seg = ctx->segs[i].first_seq;
        } else {
            ctx->read_seq = ctx->next_seq;
            ctx->read_seg = ctx->next_seq;
        }
        ctx->read_off = 0;
    }
    ctx->floor = ctx->read_seq;
    ctx->persisted_floor = cursor;
    ctx->visible_seq = ctx->next_seq;
    for (size_t i = 0; i < ctx->n_segs; i++) {
        if (ctx->segs[i].first_seq == ctx->read_seg) {
            unacked += ctx->segs[i].bytes - ctx->read_off;
        } else if (ctx->segs[i].first_seq > ctx->read_seg) {
            unacked += ctx->segs[i].bytes;
        }
    }
    atomic_store(&ctx->unacked_bytes, unacked);
    atomic_store(&ctx->next_seq_pub, ctx->next_seq);
    atomic_store(&ctx->read_seq_pub, ctx->read_seq);
    atomic_store(&ctx->floor_pub, ctx->floor);
    ctx->last_fsync_ms = ctx->last_cursor_ms = ctx->last_retention_ms = ep_time_mono_ms();

    rc = pthread_create(&ctx->writer, NULL, ep__disk_writer_main, ctx);
    if (rc != 0) {
        snprintf(err, errlen, "disk queue: cannot start the writer thread: %s", strerror(rc));
        rc = EP_EIO;
        goto err;
    }
    ctx->writer_started = 1;
    rc = pthread_create(&ctx->keeper, NULL, ep__disk_keeper_main, ctx);
    if (rc != 0) {
        snprintf(err, errlen, "disk queue: cannot start the keeper thread: %s", strerror(rc));
        rc = EP_EIO;
        goto err;
    }
    ctx->keeper_started = 1;
    ep_log_info("disk",
                "%s: %zu segments, %" PRIu64 " records to deliver from sequence %" PRIu64
                " (%" PRId64 " bytes), fsync %s",
                ctx->dir, ctx->n_segs, ctx->next_seq - ctx->read_seq, ctx->read_seq, unacked,
                opts->fsync);
    *out = ctx;
    return 0;

err:
    disk_destroy(ctx);
    return rc;
}

static int disk_publish(void *vctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    disk_ctx_t *ctx = vctx;
    int64_t ts = ep_time_now_ms(), bytes;
    size_t start;
    int rc = 0;

    if (n == 0) {
        if (cb) {
            cb(arg, 0, ep__disk_zero_status);
        }
        return 0;
    }
    pthread_mutex_lock(&ctx->pub_lock);
    if (ctx->closing) {
        rc = EP_ECLOSED;
    } else if (atomic_load(&ctx->broken)) {
        rc = EP_EIO;
    }
    if (rc != 0) {
        pthread_mutex_unlock(&ctx->pub_lock);
        return rc;
    }
    start = ctx->pending.len;
    for (size_t i = 0; i < n; i++) {
        ep_disk_hdr_t h = {EP_DISK_MAGIC, 0, 0, 0, ctx->next_seq + i, ts};
        size_t at = ctx->pending.len;
        uint8_t *p;

        ep_buf_reserve(&ctx->pending, EP_DISK_HDR_SIZE);
        ctx->pending.len += EP_DISK_HDR_SIZE;
        ep_event_encode_pb(evs[i], &ctx->pending);
        if (ctx->pending.len - at - EP_DISK_HDR_SIZE > EP_DISK_MAX_RECORD) {
            rc = EP_E2BIG;
            break;
        }
        h.length = (uint32_t)(ctx->pending.len - at - EP_DISK_HDR_SIZE);
        p = (uint8_t *)ctx->pending.data + at;
        ep__disk_hdr_encode(&h, p);
    }
    bytes = (int64_t)(ctx->pending.len - start);
    if (rc == 0 && ctx->retention_bytes > 0 &&
        atomic_load_explicit(&ctx->unacked_bytes, memory_order_relaxed) + bytes >
            ctx->retention_bytes) {
        rc = EP_EFULL;
        ep_counter_add(&ctx->counts.rejected_full, n);
    }
    if (rc != 0) {
        /* All or nothing: the batch leaves no trace. */
        ctx->pending.len = start;
        pthread_mutex_unlock(&ctx->pub_lock);
        return rc;
    }
    if (ctx->n_cbs == ctx->cap_cbs) {
        ctx->cap_cbs = ctx->cap_cbs ? ctx->cap_cbs * 2 : 64;
        ctx->cbs = ep_realloc(ctx->cbs, ctx->cap_cbs * sizeof(*ctx->cbs));
    }
    ctx->cbs[ctx->n_cbs++] = (pub_cb_t){cb, arg, n};
    ctx->next_seq += n;
    ctx->pending_records += n;
    atomic_store_explicit(&ctx->next_seq_pub, ctx->next_seq, memory_order_relaxed);
    atomic_fetch_add_explicit(&ctx->unacked_bytes, bytes, memory_order_relaxed);
    if (ctx->writer_waiting) {
        pthread_cond_signal(&ctx->pub_cond);
    }
    pthread_mutex_unlock(&ctx->pub_lock);
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
        evs[i] = NULL;
    }
    return 0;
}

static int disk_dead_letter(void *vctx, ep_event_t **evs, size_t n, const char *reason)
{
    disk_ctx_t *ctx = vctx;
    size_t rlen = reason ? strlen(reason) : 0;
    ep_buf_t b = EP_BUF_INIT;
    int rc = 0;

    if (n == 0) {
        return 0;
    }
    if (rlen > 1024) {
        rlen = 1024;
    }
    for (size_t i = 0; i < n; i++) {
        ep_disk_hdr_t h = {EP_DISK_MAGIC, 0, 0, EP_DISK_REC_F_DLQ, evs[i]->qseq, ep_time_now_ms()};
        size_t at = b.len;
        uint8_t rl[2] = {(uint8_t)rlen, (uint8_t)(rlen >> 8)};

        ep_buf_reserve(&b, EP_DISK_HDR_SIZE);
        b.len += EP_DISK_HDR_SIZE;
        ep_buf_append(&b, rl, 2);
        ep_buf_append(&b, reason ? reason : "", rlen);
        ep_event_encode_pb(evs[i], &b);
        h.length = (uint32_t)(b.len - at - EP_DISK_HDR_SIZE);
        ep__disk_hdr_encode(&h, (uint8_t *)b.data + at);
        ep__disk_rec_seal((uint8_t *)b.data + at);
    }
    pthread_mutex_lock(&ctx->dlq_lock);
    rc = ep__disk_write_all(ctx->dlq_fd, b.data, b.len);
    if (rc == 0 && ctx->fsync_mode != FSYNC_NEVER && fdatasync(ctx->dlq_fd) != 0) {
        rc = EP__ERR(errno);
    }
    pthread_mutex_unlock(&ctx->dlq_lock);
    ep_buf_close(&b);
    if (rc != 0) {
        ep_log_error("disk", "%s/dlq.log: cannot append: %s", ctx->dir, strerror(-rc));
        return EP_EIO;
    }
    ep_counter_add(&ctx->dlq_records, n);
    ep_log_warn("disk", "dead-lettered %zu events into %s/dlq.log: %s", n, ctx->dir,
                reason ? reason : "");
    return ep__disk_ack(ctx, evs, n);
}

static int disk_ready(void *vctx, char *reason, size_t len)
{
    disk_ctx_t *ctx = vctx;
    int ok = 1;

    pthread_mutex_lock(&ctx->err_lock);
    if (atomic_load(&ctx->broken)) {
        if (reason && len) {
            snprintf(reason, len, "%s", ctx->broken_reason);
        }
        ok = 0;
    }
    pthread_mutex_unlock(&ctx->err_lock);
    if (ok) {
        pthread_mutex_lock(&ctx->pub_lock);
        if (ctx->closing) {
            if (reason && len) {
                snprintf(reason, len, "queue closed");
            }
            ok = 0;
        }
        pthread_mutex_unlock(&ctx->pub_lock);
    }
    return ok;
}

static int disk_flush(void *vctx, int timeout_ms)
{
    disk_ctx_t *ctx = vctx;
    int64_t deadline = ep_time_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    uint64_t target;
    int rc = 0;

    pthread_mutex_lock(&ctx->pub_lock);
    target = ctx->next_seq;
    pthread_mutex_unlock(&ctx->pub_lock);
    pthread_mutex_lock(&ctx->read_lock);
    while (ctx->visible_seq < target && !atomic_load(&ctx->broken)) {
        struct timespec ts;
        int64_t left = deadline - ep_time_mono_ms();

        if (left <= 0) {
            rc = EP_ETIMEDOUT;
            break;
        }
        left = left > 50 ? 50 : left;
        ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, left);
        pthread_cond_timedwait(&ctx->read_cond, &ctx->read_lock, &ts);
    }
    pthread_mutex_unlock(&ctx->read_lock);
    return atomic_load(&ctx->broken) ? EP_EIO : rc;
}

static void disk_close(void *vctx)
{
    disk_ctx_t *ctx = vctx;

    pthread_mutex_lock(&ctx->pub_lock);
    ctx->closing = 1;
    pthread_cond_signal(&ctx->pub_cond);
    pthread_mutex_unlock(&ctx->pub_lock);
}

static void disk_destroy(void *vctx)
{
    disk_ctx_t *ctx = vctx;
    if (ctx == NULL) {
        return;
    }
    if (ctx->writer_started) {
        pthread_mutex_lock(&ctx->pub_lock);
        ctx->closing = 1;
        ctx->stopping = 1;
        pthread_cond_signal(&ctx->pub_cond);
        pthread_mutex_unlock(&ctx->pub_lock);
        pthread_join(ctx->writer, NULL);
    }
    /* After the writer: the keeper's last act persists the final committed position. */
    if (ctx->keeper_started) {
        pthread_mutex_lock(&ctx->keep_lock);
        ctx->keep_stop = 1;
        pthread_cond_signal(&ctx->keep_cond);
        pthread_mutex_unlock(&ctx->keep_lock);
        pthread_join(ctx->keeper, NULL);
    }
    ep_redeliver_drop(&ctx->rd, NULL, NULL);
    if (ctx->seg_fd >= 0) {
        close(ctx->seg_fd);
    }
    if (ctx->read_fd >= 0) {
        close(ctx->read_fd);
    }
    if (ctx->dlq_fd >= 0) {
        close(ctx->dlq_fd);
    }
    if (ctx->lock_fd >= 0) {
        close(ctx->lock_fd); /* releases the flock */
    }
    if (ctx->dir_fd >= 0) {
        close(ctx->dir_fd);
    }
    ep_buf_close(&ctx->pending);
    ep_buf_close(&ctx->wbuf);
    ep_free(ctx->cbs);
    ep_free(ctx->wcbs);
    ep_free(ctx->status);
    ep_free(ctx->segs);
    ep_free(ctx->rbuf);
    ep_free(ctx->bits);
    pthread_mutex_destroy(&ctx->pub_lock);
    pthread_mutex_destroy(&ctx->seg_lock);
    pthread_mutex_destroy(&ctx->read_lock);
    pthread_mutex_destroy(&ctx->err_lock);
    pthread_mutex_destroy(&ctx->dlq_lock);
    pthread_mutex_destroy(&ctx->keep_lock);
    pthread_cond_destroy(&ctx->keep_cond);
    pthread_cond_destroy(&ctx->pub_cond);
    pthread_cond_destroy(&ctx->read_cond);
    ep_free(ctx);
}

const ep_queue_provider_t ep_queue_disk_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "disk",
    .flags = EP_QUEUE_F_LOCAL,
    .init = disk_init,
    .publish = disk_publish,
    .consume = ep__disk_consume,
    .ack = ep__disk_ack,
    .nack = ep__disk_nack,
    .stats = ep__disk_stats,
    .stats_json = ep__disk_stats_json,
    .ready = disk_ready,
    .flush = disk_flush,
    .close = disk_close,
    .destroy = disk_destroy,
    .dead_letter = disk_dead_letter,
    .lag_json = ep__disk_lag_json,
    .options = &disk_options,
};
