/*
 * The disk queue's writer side (design in ep_queue_disk.c): the writer thread
 * takes the pending batch, seals and writes its records with one write(2) per
 * segment touched, fdatasyncs per QUEUE_FSYNC (group commit), makes the records
 * visible to consumers and completes the publish callbacks. The keeper thread
 * persists the committed position into the cursor file and runs retention.
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

const int ep__disk_zero_status[ZERO_STATUS_N];

/* fdatasync with latency accounting. Writer thread only. Returns 0 or errno. */
static int timed_fdatasync(disk_ctx_t *ctx, int fd)
{
    int64_t t0 = ep_time_mono_ns(), dt;

    if (fdatasync(fd) != 0) {
        return errno;
    }
    dt = (ep_time_mono_ns() - t0) / 1000;
    ep_counter_add(&ctx->hist[ep__disk_hist_index((uint64_t)(dt > 0 ? dt : 0))], 1);
    ep_counter_add(&ctx->fsyncs, 1);
    ep_counter_add(&ctx->synced_events, ctx->unsynced);
    ctx->unsynced = 0;
    ctx->last_fsync_ms = ep_time_mono_ms();
    return 0;
}

/* ----------------------------------------------------------------- writer */

/* Opens a new active segment named first_seq. Writer thread. Returns 0 or errno. */
static int segment_open(disk_ctx_t *ctx, uint64_t first_seq, int64_t ts_ms)
{
    ep_disk_seg_t s = {first_seq, first_seq, 0, ts_ms, ts_ms};
    char name[64];
    int fd;

    ep__disk_seg_name(first_seq, name, sizeof(name));
    fd = openat(ctx->dir_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        return errno;
    }
    /* The new name must survive a crash as well as the records in it. */
    if (ctx->fsync_mode != FSYNC_NEVER && fsync(ctx->dir_fd) != 0) {
        int e = errno;
        close(fd);
        return e;
    }
    ctx->seg_fd = fd;
    pthread_mutex_lock(&ctx->seg_lock);
    ep__disk_seg_append(ctx, &s);
    pthread_mutex_unlock(&ctx->seg_lock);
    return 0;
}

/* Writes buf (records [first, end)) to the active segment. Returns 0 or errno. */
static int segment_write(disk_ctx_t *ctx, const uint8_t *buf, size_t len, uint64_t end_seq,
                         int64_t last_ts)
{
    int rc = ep__disk_write_all(ctx->seg_fd, buf, len);
    ep_disk_seg_t *s;

    if (rc != 0) {
        return -rc;
    }
    pthread_mutex_lock(&ctx->seg_lock);
    s = &ctx->segs[ctx->n_segs - 1];
    s->bytes += (int64_t)len;
    s->end_seq = end_seq;
    s->last_ts_ms = last_ts;
    pthread_mutex_unlock(&ctx->seg_lock);
    return 0;
}

/* Size of the active segment. Writer thread. */
static int64_t active_bytes(disk_ctx_t *ctx)
{
    int64_t b;

    pthread_mutex_lock(&ctx->seg_lock);
    b = ctx->n_segs ? ctx->segs[ctx->n_segs - 1].bytes : 0;
    pthread_mutex_unlock(&ctx->seg_lock);
    return b;
}

/*
 * Writes the batch in wbuf (records [first, first + n)): seals every record,
 * rolls segments at QUEUE_SEGMENT_SIZE, syncs as the policy says. Returns 0
 * or EP_EIO (then the disk queue is broken).
 */
static int write_batch(disk_ctx_t *ctx, size_t n)
{
    uint8_t *base = (uint8_t *)ctx->wbuf.data;
    size_t off = 0, chunk = 0;
    int64_t seg_bytes;
    const char *what = "write";
    ep_disk_hdr_t h = {0};
    int64_t chunk_ts = 0;
    int err = 0;

    if (ctx->seg_fd < 0) {
        ep__disk_hdr_decode(base, &h);
        if ((err = segment_open(ctx, h.seq, h.ts_ms)) != 0) {
            what = "create a segment";
            goto fail;
        }
    }
    seg_bytes = active_bytes(ctx);
    while (off < ctx->wbuf.len) {
        uint8_t *rec = base + off;
        size_t rec_len;

        ep__disk_hdr_decode(rec, &h);
        rec_len = EP_DISK_HDR_SIZE + (size_t)h.length;
        ep__disk_rec_seal(rec);
        if (seg_bytes > 0 && seg_bytes + (int64_t)rec_len > ctx->segment_bytes) {
            /* Roll: finish the active segment (durably), then start one named by this record. */
            if (chunk > 0) {
                if ((err = segment_write(ctx, base + off - chunk, chunk, h.seq, chunk_ts))) {
                    goto fail;
                }
            }
            if (ctx->fsync_mode != FSYNC_NEVER && (err = timed_fdatasync(ctx, ctx->seg_fd))) {
                what = "fdatasync";
                goto fail;
            }
            close(ctx->seg_fd);
            ctx->seg_fd = -1;
            if ((err = segment_open(ctx, h.seq, h.ts_ms)) != 0) {
                what = "create a segment";
                goto fail;
            }
            chunk = 0;
            seg_bytes = 0;
        }
        chunk += rec_len;
        chunk_ts = h.ts_ms;
        seg_bytes += (int64_t)rec_len;
        off += rec_len;
        ctx->unsynced++;
    }
    if (chunk > 0 && (err = segment_write(ctx, base + off - chunk, chunk, h.seq + 1, h.ts_ms))) {
        goto fail;
    }
    if (ctx->fsync_mode == FSYNC_ALWAYS ||
        (ctx->fsync_mode == FSYNC_EVERY &&
         ep_time_mono_ms() - ctx->last_fsync_ms >= ctx->fsync_interval_ms)) {
        if ((err = timed_fdatasync(ctx, ctx->seg_fd)) != 0) {
            what = "fdatasync";
            goto fail;
        }
    }
    ep_counter_add(&ctx->counts.enqueued, n);
    return 0;

fail:
    ep__disk_set_broken(ctx, "%s: cannot %s: %s", what, err);
    return EP_EIO;
}

/* Completes the callbacks of the batch just written. Writer thread. */
static void complete_batch(disk_ctx_t *ctx, int status)
{
    for (size_t i = 0; i < ctx->n_wcbs; i++) {
        pub_cb_t *c = &ctx->wcbs[i];
        const int *st = ep__disk_zero_status;

        if (c->cb == NULL) {
            continue;
        }
        if (status != 0 || c->n > ZERO_STATUS_N) {
            if (c->n > ctx->cap_status) {
                ctx->cap_status = c->n;
                ctx->status = ep_realloc(ctx->status, c->n * sizeof(int));
            }
            for (size_t k = 0; k < c->n; k++) {
                ctx->status[k] = status;
            }
            st = ctx->status;
        }
        c->cb(c->arg, c->n, st);
    }
    ctx->n_wcbs = 0;
}

/* Persists the floor when it moved (or always when force). Keeper thread. */
static void persist_cursor(disk_ctx_t *ctx, int force)
{
    uint64_t floor = atomic_load_explicit(&ctx->floor_pub, memory_order_relaxed);
    int64_t now = ep_time_mono_ms();
    int rc;

    if (floor == ctx->persisted_floor && !force) {
        return;
    }
    if (!force && now - ctx->last_cursor_ms < CURSOR_INTERVAL_MS) {
        return;
    }
    ctx->last_cursor_ms = now;
    rc = ep__disk_cursor_write(ctx->dir_fd, floor, ctx->fsync_mode != FSYNC_NEVER);
    if (rc != 0) {
        ep_log_warn("disk", "%s/cursor: cannot write: %s", ctx->dir, strerror(-rc));
        return;
    }
    ctx->persisted_floor = floor;
}

/*
 * Deletes whole segments that are entirely below the persisted floor, are not
 * the active one, and are older than the age bound or make the log larger
 * than the size bound. Keeper thread.
 */
static void run_retention(disk_ctx_t *ctx, int64_t now_mono)
{
    int64_t now = ep_time_now_ms(), total = 0;
    char name[64];

    if (now_mono - ctx->last_retention_ms < RETENTION_INTERVAL_MS) {
        return;
    }
    ctx->last_retention_ms = now_mono;
    if (ctx->retention_bytes <= 0 && ctx->retention_age_s <= 0) {
        return;
    }
    for (;;) {
        ep_disk_seg_t victim;
        int old, big;

        pthread_mutex_lock(&ctx->seg_lock);
        total = 0;
        for (size_t i = 0; i < ctx->n_segs; i++) {
            total += ctx->segs[i].bytes;
        }
        if (ctx->n_segs < 2 || ctx->segs[0].end_seq > ctx->persisted_floor) {
            pthread_mutex_unlock(&ctx->seg_lock);
            return;
        }
        victim = ctx->segs[0];
        old = ctx->retention_age_s > 0 && now - victim.last_ts_ms >= ctx->retention_age_s * 1000;
        big = ctx->retention_bytes > 0 && total > ctx->retention_bytes;
        if (!old && !big) {
            pthread_mutex_unlock(&ctx->seg_lock);
            return;
        }
        memmove(&ctx->segs[0], &ctx->segs[1], (ctx->n_segs - 1) * sizeof(ep_disk_seg_t));
        ctx->n_segs--;
        pthread_mutex_unlock(&ctx->seg_lock);
        ep__disk_seg_name(victim.first_seq, name, sizeof(name));
        if (unlinkat(ctx->dir_fd, name, 0) != 0 && errno != ENOENT) {
            ep_log_warn("disk", "%s/%s: cannot delete: %s", ctx->dir, name, strerror(errno));
        } else {
            ep_log_debug("disk", "retention: deleted %s/%s (%" PRId64 " bytes, %s)", ctx->dir, name,
                         victim.bytes, old ? "age" : "size");
        }
    }
}

/* Milliseconds until the writer must run an interval fdatasync (1000 when none is due). */
static int64_t writer_timeout(disk_ctx_t *ctx, int64_t now)
{
    int64_t t = 1000;

    if (ctx->fsync_mode == FSYNC_EVERY && ctx->unsynced > 0) {
        int64_t f = ctx->fsync_interval_ms - (now - ctx->last_fsync_ms);
        t = f < t ? f : t;
    }
    return t < 1 ? 1 : t;
}

/*
 * The keeper thread: persists the committed position every CURSOR_INTERVAL_MS
 * and runs retention, off the writer's path so that the cursor's own syncs
 * never delay a group commit.
 */
void *ep__disk_keeper_main(void *arg)
{
    disk_ctx_t *ctx = arg;

    pthread_mutex_lock(&ctx->keep_lock);
    while (!ctx->keep_stop) {
        struct timespec ts;

        ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, CURSOR_INTERVAL_MS);
        pthread_cond_timedwait(&ctx->keep_cond, &ctx->keep_lock, &ts);
        if (ctx->keep_stop) {
            break;
        }
        pthread_mutex_unlock(&ctx->keep_lock);
        persist_cursor(ctx, 0);
        run_retention(ctx, ep_time_mono_ms());
        pthread_mutex_lock(&ctx->keep_lock);
    }
    pthread_mutex_unlock(&ctx->keep_lock);
    persist_cursor(ctx, 1);
    return NULL;
}

void *ep__disk_writer_main(void *arg)
{
    disk_ctx_t *ctx = arg;

    for (;;) {
        int64_t now = ep_time_mono_ms();
        size_t n;
        int stop, drained, rc = 0;
        uint64_t end_seq;

        pthread_mutex_lock(&ctx->pub_lock);
        if (ctx->pending.len == 0 && !ctx->stopping) {
            struct timespec ts;

            ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, writer_timeout(ctx, now));
            ctx->writer_waiting = 1;
            pthread_cond_timedwait(&ctx->pub_cond, &ctx->pub_lock, &ts);
            ctx->writer_waiting = 0;
        }
        /* Take the batch: publishers fill the other buffer meanwhile. */
        {
            ep_buf_t tb = ctx->wbuf;
            pub_cb_t *tc = ctx->wcbs;
            size_t tcap = ctx->cap_wcbs;

            ctx->wbuf = ctx->pending;
            ctx->pending = tb;
            ctx->pending.len = 0;
            ctx->wcbs = ctx->cbs;
            ctx->n_wcbs = ctx->n_cbs;
            ctx->cap_wcbs = ctx->cap_cbs;
            ctx->cbs = tc;
            ctx->cap_cbs = tcap;
            ctx->n_cbs = 0;
        }
        n = ctx->pending_records;
        ctx->pending_records = 0;
        end_seq = ctx->next_seq;
        stop = ctx->stopping;
        drained = ctx->closing;
        pthread_mutex_unlock(&ctx->pub_lock);

        if (ctx->wbuf.len > 0) {
            rc = atomic_load(&ctx->broken) ? EP_EIO : write_batch(ctx, n);
            if (rc == 0) {
                pthread_mutex_lock(&ctx->read_lock);
                ctx->visible_seq = end_seq;
                pthread_cond_broadcast(&ctx->read_cond);
                pthread_mutex_unlock(&ctx->read_lock);
            }
            complete_batch(ctx, rc);
            ctx->wbuf.len = 0;
        }
        if (drained) {
            pthread_mutex_lock(&ctx->read_lock);
            if (!ctx->writer_drained) {
                ctx->writer_drained = 1;
                pthread_cond_broadcast(&ctx->read_cond);
            }
            pthread_mutex_unlock(&ctx->read_lock);
        }
        now = ep_time_mono_ms();
        if (ctx->fsync_mode == FSYNC_EVERY && ctx->unsynced > 0 && ctx->seg_fd >= 0 &&
            now - ctx->last_fsync_ms >= ctx->fsync_interval_ms && !atomic_load(&ctx->broken)) {
            int e = timed_fdatasync(ctx, ctx->seg_fd);
            if (e != 0) {
                ep__disk_set_broken(ctx, "%s: cannot %s: %s", "fdatasync", e);
            }
        }
        if (stop) {
            pthread_mutex_lock(&ctx->pub_lock);
            stop = ctx->pending.len == 0;
            pthread_mutex_unlock(&ctx->pub_lock);
            if (stop) {
                break;
            }
        }
    }
    if (ctx->seg_fd >= 0 && ctx->fsync_mode != FSYNC_NEVER && ctx->unsynced > 0) {
        timed_fdatasync(ctx, ctx->seg_fd);
    }
    return NULL;
}
