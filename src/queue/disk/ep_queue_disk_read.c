/*
 * The disk queue's consumer side (design in ep_queue_disk.c): the ack window
 * (a bitmap from the lowest un-acked sequence, the floor), reading records
 * back from the segment files through the read buffer, checking each CRC
 * again, and the provider's consume, ack and nack entry points. All of it
 * under read_lock; it takes seg_lock inside (lock order: read_lock, then
 * seg_lock). One file with its entry points so that the per-event steps
 * (read_one, mark_acked) stay static.
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

/* ------------------------------------------------------------- ack window */

static int bit_get(disk_ctx_t *ctx, uint64_t seq)
{
    size_t i = (size_t)(seq & (ctx->bits_cap - 1));

    return (int)((ctx->bits[i / 64] >> (i % 64)) & 1);
}

static void bit_set(disk_ctx_t *ctx, uint64_t seq, int on)
{
    size_t i = (size_t)(seq & (ctx->bits_cap - 1));

    if (on) {
        ctx->bits[i / 64] |= 1ull << (i % 64);
    } else {
        ctx->bits[i / 64] &= ~(1ull << (i % 64));
    }
}

/* Makes the window hold [floor, upto). Returns 0, or EP_EFULL past WINDOW_MAX. Under read_lock. */
static int window_reserve(disk_ctx_t *ctx, uint64_t upto)
{
    uint64_t need = upto - ctx->floor;
    uint64_t *old = ctx->bits;
    size_t old_cap = ctx->bits_cap, cap = old_cap;

    if (need <= cap) {
        return 0;
    }
    if (need > WINDOW_MAX) {
        return EP_EFULL;
    }
    while (cap < need) {
        cap *= 2;
    }
    ctx->bits = ep_calloc(cap / 64, sizeof(uint64_t));
    ctx->bits_cap = cap;
    for (uint64_t s = ctx->floor; s < ctx->read_seq; s++) {
        size_t i = (size_t)(s & (old_cap - 1));

        if ((old[i / 64] >> (i % 64)) & 1) {
            bit_set(ctx, s, 1);
        }
    }
    ep_free(old);
    return 0;
}

/* Moves the floor over the acked prefix. Under read_lock. */
static void floor_advance(disk_ctx_t *ctx)
{
    while (ctx->floor < ctx->read_seq && bit_get(ctx, ctx->floor)) {
        bit_set(ctx, ctx->floor, 0);
        ctx->floor++;
    }
    atomic_store_explicit(&ctx->floor_pub, ctx->floor, memory_order_relaxed);
}

/* Marks seq acked (it must be in [floor, read_seq)). Under read_lock. */
static void mark_acked(disk_ctx_t *ctx, uint64_t seq)
{
    if (seq >= ctx->floor && seq < ctx->read_seq) {
        bit_set(ctx, seq, 1);
    }
}

/* ---------------------------------------------------------------- reading */

/* Closes the read segment and moves to the next one; skipped sequences count as acked. */
static int read_next_segment(disk_ctx_t *ctx)
{
    uint64_t next_first;
    size_t i;

    pthread_mutex_lock(&ctx->seg_lock);
    i = ep__disk_seg_upper(ctx, ctx->read_seg);
    if (i == ctx->n_segs) {
        pthread_mutex_unlock(&ctx->seg_lock);
        return 0;
    }
    next_first = ctx->segs[i].first_seq;
    pthread_mutex_unlock(&ctx->seg_lock);
    if (ctx->read_fd >= 0) {
        close(ctx->read_fd);
        ctx->read_fd = -1;
    }
    ctx->read_seg = next_first;
    ctx->read_off = 0;
    ctx->rbuf_len = 0;
    ctx->rbuf_off = 0;
    if (next_first > ctx->read_seq) {
        /* A gap (records cut at start-up): nothing there to deliver or to wait for. */
        if (ctx->floor != ctx->read_seq && window_reserve(ctx, next_first) == 0) {
            for (uint64_t s = ctx->read_seq; s < next_first; s++) {
                bit_set(ctx, s, 1);
            }
        } else {
            /* Nothing in flight, or a gap too wide to track: restart the window there. */
            memset(ctx->bits, 0, ctx->bits_cap / 8);
            ctx->floor = next_first;
        }
        ctx->read_seq = next_first;
        atomic_store_explicit(&ctx->read_seq_pub, ctx->read_seq, memory_order_relaxed);
        floor_advance(ctx);
    }
    return 1;
}

/*
 * Makes [read_off, read_off + need) of the read segment available in rbuf.
 * Returns 1, 0 when the segment holds fewer written bytes, or EP_EIO.
 */
static int read_fill(disk_ctx_t *ctx, size_t need)
{
    ep_disk_seg_t *s;
    int64_t committed;
    ssize_t got;
    size_t want;

    if (ctx->read_off >= ctx->rbuf_off &&
        ctx->read_off + (int64_t)need <= ctx->rbuf_off + (int64_t)ctx->rbuf_len) {
        return 1;
    }
    /* Only bytes the writer has finished are read, so the buffer never holds a torn record. */
    pthread_mutex_lock(&ctx->seg_lock);
    s = ep__disk_seg_find(ctx, ctx->read_seg);
    committed = s ? s->bytes : 0;
    pthread_mutex_unlock(&ctx->seg_lock);
    if (committed - ctx->read_off < (int64_t)need) {
        return 0;
    }
    if (ctx->read_fd < 0) {
        char name[64];

        ep__disk_seg_name(ctx->read_seg, name, sizeof(name));
        ctx->read_fd = openat(ctx->dir_fd, name, O_RDONLY | O_CLOEXEC);
        if (ctx->read_fd < 0) {
            ep_log_error("disk", "%s/%s: cannot open for reading: %s", ctx->dir, name,
                         strerror(errno));
            return EP_EIO;
        }
    }
    want = need > READ_CHUNK ? need : READ_CHUNK;
    if ((int64_t)want > committed - ctx->read_off) {
        want = (size_t)(committed - ctx->read_off);
    }
    if (want > ctx->rbuf_cap) {
        ctx->rbuf = ep_realloc(ctx->rbuf, want);
        ctx->rbuf_cap = want;
    }
    got = pread(ctx->read_fd, ctx->rbuf, want, ctx->read_off);
    if (got < (ssize_t)need) {
        ep_log_error("disk", "%s: short read of segment %" PRIu64 " at %" PRId64 ": %s", ctx->dir,
                     ctx->read_seg, ctx->read_off, got < 0 ? strerror(errno) : "end of file");
        return EP_EIO;
    }
    ctx->rbuf_off = ctx->read_off;
    ctx->rbuf_len = (size_t)got;
    return 1;
}

/*
 * Reads the record at read_seq into *out. Returns 1, 0 when none is
 * available, or EP_EIO. Under read_lock.
 */
static int read_one(disk_ctx_t *ctx, ep_event_t **out)
{
    for (;;) {
        const uint8_t *p;
        ep_disk_hdr_t h;
        char why[128];
        int64_t n;
        int rc, torn;

        if (ctx->read_broken) {
            return EP_EIO;
        }
        if (ctx->read_seq >= ctx->visible_seq) {
            return 0;
        }
        if (window_reserve(ctx, ctx->read_seq + 1) != 0) {
            return 0;
        }
        rc = read_fill(ctx, EP_DISK_HDR_SIZE);
        if (rc == 0) {
            /* This segment is done; the record is in a later one. */
            if (read_next_segment(ctx) == 0) {
                return 0;
            }
            continue;
        }
        if (rc < 0) {
            ctx->read_broken = 1;
            return rc;
        }
        p = ctx->rbuf + (ctx->read_off - ctx->rbuf_off);
        ep__disk_hdr_decode(p, &h);
        if (h.magic == EP_DISK_MAGIC && h.length <= EP_DISK_MAX_RECORD) {
            rc = read_fill(ctx, EP_DISK_HDR_SIZE + (size_t)h.length);
            if (rc < 0) {
                ctx->read_broken = 1;
                return rc;
            }
            p = ctx->rbuf + (ctx->read_off - ctx->rbuf_off);
        }
        n = ep__disk_rec_check(p, (int64_t)ctx->rbuf_len - (ctx->read_off - ctx->rbuf_off),
                               ctx->read_seq, &torn, why, sizeof(why));
        if (n == 0) {
            /* Written by us and checked at start-up: the disk changed under us. */
            ep_log_error("disk", "%s: segment %" PRIu64 " offset %" PRId64 ": %s", ctx->dir,
                         ctx->read_seg, ctx->read_off, why);
            ctx->read_broken = 1;
            ep__disk_set_broken(ctx, "%s: %s: %s", "a record read back is damaged", EIO);
            return EP_EIO;
        }
        ctx->read_off += n;
        ctx->read_seq++;
        atomic_store_explicit(&ctx->read_seq_pub, ctx->read_seq, memory_order_relaxed);
        rc = ep_event_decode_pb(p + EP_DISK_HDR_SIZE, h.length, out);
        if (rc != 0) {
            /* A sound record that is no event: never hand it out, count it as done. */
            ep_log_warn("disk", "%s: record %" PRIu64 " is not a valid event; skipped", ctx->dir,
                        h.seq);
            bit_set(ctx, h.seq, 1);
            floor_advance(ctx);
            atomic_fetch_sub(&ctx->unacked_bytes, n);
            continue;
        }
        (*out)->qseq = h.seq;
        (*out)->qh = (void *)(uintptr_t)n;
        (*out)->attempts = 0;
        return 1;
    }
}

/* Takes due redeliveries. Lowers *next_due to the earliest one left. Under read_lock. */
static size_t take_due(disk_ctx_t *ctx, ep_event_t **out, size_t max, int64_t *next_due)
{
    size_t got = ep_redeliver_take_due(&ctx->rd, ep_time_mono_ms(), out, max, next_due);

    if (got) {
        atomic_fetch_sub_explicit(&ctx->rd_n, got, memory_order_relaxed);
    }
    return got;
}

/* ----------------------------------------------------- consumer entry points */

int ep__disk_consume(void *vctx, ep_event_t **out, size_t max, int timeout_ms)
{
    disk_ctx_t *ctx = vctx;
    int64_t deadline = timeout_ms > 0 ? ep_time_mono_ms() + timeout_ms : 0;
    int rc = 0;
    size_t got = 0;

    if (max == 0) {
        return 0;
    }
    if (max > INT_MAX) {
        max = INT_MAX;
    }
    pthread_mutex_lock(&ctx->read_lock);
    for (;;) {
        int64_t next_due = INT64_MAX, wait;
        struct timespec ts;

        if (ctx->rd.head) {
            got = take_due(ctx, out, max, &next_due);
        }
        while (got < max) {
            rc = read_one(ctx, &out[got]);
            if (rc <= 0) {
                break;
            }
            got++;
        }
        if (got > 0 || rc < 0) {
            break;
        }
        if (ctx->writer_drained && ctx->read_seq >= ctx->visible_seq && ctx->rd.head == NULL) {
            rc = EP_ECLOSED;
            break;
        }
        if (timeout_ms == 0) {
            break;
        }
        wait = timeout_ms > 0 ? deadline - ep_time_mono_ms() : 1000;
        if (timeout_ms > 0 && wait <= 0) {
            break;
        }
        if (next_due != INT64_MAX) {
            int64_t until = next_due - ep_time_mono_ms();
            until = until < 1 ? 1 : until;
            wait = until < wait ? until : wait;
        }
        ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, wait);
        pthread_cond_timedwait(&ctx->read_cond, &ctx->read_lock, &ts);
    }
    pthread_mutex_unlock(&ctx->read_lock);
    if (got == 0) {
        return rc < 0 ? rc : 0;
    }
    for (size_t i = 0; i < got; i++) {
        out[i]->attempts++;
    }
    ep_counter_add(&ctx->counts.dequeued, got);
    return (int)got;
}

int ep__disk_ack(void *vctx, ep_event_t **evs, size_t n)
{
    disk_ctx_t *ctx = vctx;
    int64_t bytes = 0;

    if (n == 0) {
        return 0;
    }
    pthread_mutex_lock(&ctx->read_lock);
    for (size_t i = 0; i < n; i++) {
        mark_acked(ctx, evs[i]->qseq);
        bytes += (int64_t)(uintptr_t)evs[i]->qh;
    }
    floor_advance(ctx);
    pthread_mutex_unlock(&ctx->read_lock);
    atomic_fetch_sub_explicit(&ctx->unacked_bytes, bytes, memory_order_relaxed);
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_counter_add(&ctx->counts.acked, n);
    return 0;
}

int ep__disk_nack(void *vctx, ep_event_t **evs, size_t n, int delay_ms)
{
    disk_ctx_t *ctx = vctx;
    int64_t nb = ep_time_mono_ms() + (delay_ms > 0 ? delay_ms : 0);

    if (n == 0) {
        return 0;
    }
    pthread_mutex_lock(&ctx->read_lock);
    ep_redeliver_add(&ctx->rd, evs, n, nb);
    atomic_fetch_add_explicit(&ctx->rd_n, n, memory_order_relaxed);
    pthread_cond_broadcast(&ctx->read_cond);
    pthread_mutex_unlock(&ctx->read_lock);
    ep_counter_add(&ctx->counts.nacked, n);
    return 0;
}
