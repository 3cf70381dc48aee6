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
 */
#include "ep_disk_int.h"
#include "ep_counter.h"
#include "ep_error.h"
#include "ep_event.h"
#include "ep_log.h"
#include "ep_mem.h"
#include "ep_queue.h"
#include "ep_redeliver.h"
#include "ep_time.h"

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

#define FSYNC_ALWAYS 0
#define FSYNC_NEVER  1
#define FSYNC_EVERY  2

#define CURSOR_INTERVAL_MS    100         /* the committed position is persisted this often */
#define RETENTION_INTERVAL_MS 1000        /* retention runs this often */
#define READ_CHUNK            (256 << 10) /* bytes a consumer reads from a segment at once */
#define WINDOW_MAX            (1u << 26)  /* consumed-but-unacked records tracked at most */
#define HIST_BUCKETS          (16 + 40 * 8)
#define ZERO_STATUS_N         1024

static const int zero_status[ZERO_STATUS_N];

typedef struct pub_cb_s {
    ep_publish_cb cb;
    void *arg;
    size_t n;
} pub_cb_t;

/* The queue directory's longest path (QUEUE_DIR's buffer in ep_config.h). */
#define DISK_DIR_MAX sizeof(((ep_config_t *)0)->queue_dir)

typedef struct disk_ctx_s {
    char dir[DISK_DIR_MAX];
    int dir_fd;
    int lock_fd;
    int fsync_mode;
    int64_t fsync_interval_ms;
    int64_t segment_bytes;
    int64_t retention_bytes; /* also the bound of unacked bytes; 0 = none */
    int64_t retention_age_s;

    /* Publishers and the writer: pub_lock. */
    pthread_mutex_t pub_lock;
    pthread_cond_t pub_cond;
    ep_buf_t pending; /* encoded records not yet taken by the writer */
    pub_cb_t *cbs;    /* their publish callbacks */
    size_t n_cbs, cap_cbs;
    size_t pending_records;
    uint64_t next_seq; /* next sequence to assign */
    int closing;       /* close(): publishes refused */
    int stopping;      /* destroy(): the writer exits once all is written */
    int writer_waiting;

    /* Writer thread only. */
    pthread_t writer;
    int writer_started;
    ep_buf_t wbuf;
    pub_cb_t *wcbs;
    size_t n_wcbs, cap_wcbs;
    int *status;
    size_t cap_status;
    int seg_fd;        /* active segment, -1 before the first write */
    uint64_t unsynced; /* records written since the last fdatasync */
    int64_t last_fsync_ms;

    /* Keeper thread only (cursor and retention), but for keep_lock. */
    pthread_t keeper;
    int keeper_started;
    pthread_mutex_t keep_lock;
    pthread_cond_t keep_cond;
    int keep_stop;
    int64_t last_cursor_ms;
    int64_t last_retention_ms;
    uint64_t persisted_floor;

    /* Segments: seg_lock. */
    pthread_mutex_t seg_lock;
    ep_disk_seg_t *segs;
    size_t n_segs, cap_segs;

    /* Consumers: read_lock. */
    pthread_mutex_t read_lock;
    pthread_cond_t read_cond;
    uint64_t visible_seq; /* records below it are written (and synced as the policy says) */
    int writer_drained;   /* closing and everything published is written */
    uint64_t read_seq;    /* next record to read from disk */
    uint64_t read_seg;    /* first_seq of the segment being read */
    int read_fd;
    int64_t read_off;
    uint8_t *rbuf; /* bytes [rbuf_off, rbuf_off + rbuf_len) of the read segment */
    size_t rbuf_cap, rbuf_len;
    int64_t rbuf_off;
    ep_redeliver_t rd;
    uint64_t floor;  /* lowest un-acked sequence */
    uint64_t *bits;  /* acked flags of [floor, read_seq), indexed seq & (bits_cap - 1) */
    size_t bits_cap; /* in bits, a power of two */
    int read_broken;

    /* Failure state: once set, publishes fail with EP_EIO and ready is 0. */
    _Atomic int broken;
    pthread_mutex_t err_lock;
    /* "<dir>: cannot <what>: <strerror>": room for the whole directory and the words around it. */
    char broken_reason[DISK_DIR_MAX + 256];

    /* DLQ: dlq_lock. */
    pthread_mutex_t dlq_lock;
    int dlq_fd;

    /* Counters (relaxed atomics). */
    _Atomic uint64_t enqueued, dequeued, acked, nacked, rejected_full, dlq_records;
    _Atomic uint64_t fsyncs, synced_events;
    _Atomic int64_t unacked_bytes;
    _Atomic uint64_t next_seq_pub, read_seq_pub, floor_pub, rd_n;
    _Atomic uint64_t hist[HIST_BUCKETS];
} disk_ctx_t;

/* ------------------------------------------------------------------ helpers */

static void set_broken(disk_ctx_t *ctx, const char *fmt, const char *what, int err)
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

/*
 * fdatasync latency histogram: 8 buckets per power of two in relaxed atomics,
 * so that the writer records and the stats path reads without a lock. Not
 * ep_hist: that one is not thread-safe (a lock on the writer's path), and its
 * 64 buckets per power of two and rounding would change the reported figures.
 */
static int hist_index(uint64_t us)
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

/* fdatasync with latency accounting. Writer thread only. Returns 0 or errno. */
static int timed_fdatasync(disk_ctx_t *ctx, int fd)
{
    int64_t t0 = ep_time_mono_ns(), dt;

    if (fdatasync(fd) != 0) {
        return errno;
    }
    dt = (ep_time_mono_ns() - t0) / 1000;
    ep_counter_add(&ctx->hist[hist_index((uint64_t)(dt > 0 ? dt : 0))], 1);
    ep_counter_add(&ctx->fsyncs, 1);
    ep_counter_add(&ctx->synced_events, ctx->unsynced);
    ctx->unsynced = 0;
    ctx->last_fsync_ms = ep_time_mono_ms();
    return 0;
}

/* Index of the first segment whose first_seq > seq (n_segs when none). Under seg_lock. */
static size_t seg_upper(disk_ctx_t *ctx, uint64_t seq)
{
    size_t lo = 0, hi = ctx->n_segs;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (ctx->segs[mid].first_seq <= seq) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* The segment named first_seq, or NULL. Under seg_lock. */
static ep_disk_seg_t *seg_find(disk_ctx_t *ctx, uint64_t first_seq)
{
    size_t i = seg_upper(ctx, first_seq);

    if (i > 0 && ctx->segs[i - 1].first_seq == first_seq) {
        return &ctx->segs[i - 1];
    }
    return NULL;
}

static void seg_append(disk_ctx_t *ctx, const ep_disk_seg_t *s)
{
    if (ctx->n_segs == ctx->cap_segs) {
        ctx->cap_segs = ctx->cap_segs ? ctx->cap_segs * 2 : 16;
        ctx->segs = ep_realloc(ctx->segs, ctx->cap_segs * sizeof(*ctx->segs));
    }
    ctx->segs[ctx->n_segs++] = *s;
}

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
    i = seg_upper(ctx, ctx->read_seg);
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
    s = seg_find(ctx, ctx->read_seg);
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
            set_broken(ctx, "%s: %s: %s", "a record read back is damaged", EIO);
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
    seg_append(ctx, &s);
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
    ep_counter_add(&ctx->enqueued, n);
    return 0;

fail:
    set_broken(ctx, "%s: cannot %s: %s", what, err);
    return EP_EIO;
}

/* Completes the callbacks of the batch just written. Writer thread. */
static void complete_batch(disk_ctx_t *ctx, int status)
{
    for (size_t i = 0; i < ctx->n_wcbs; i++) {
        pub_cb_t *c = &ctx->wcbs[i];
        const int *st = zero_status;

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
static void *keeper_main(void *arg)
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

static void *writer_main(void *arg)
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
                set_broken(ctx, "%s: cannot %s: %s", "fdatasync", e);
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

/* --------------------------------------------------------------- recovery */

static int cmp_seq(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return x < y ? -1 : x > y;
}

/*
 * Scans, checks and repairs every segment; fills ctx->segs. want is the
 * cursor: *want_seg and *want_off get the segment and offset holding it (or
 * UINT64_MAX/-1). Returns 0 or EP_EIO with a message.
 */
static int recover_segments(disk_ctx_t *ctx, uint64_t want, uint64_t *want_seg, int64_t *want_off,
                            char *err, size_t errlen)
{
    uint64_t *names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    DIR *d;
    int dfd, rc = 0;

    *want_seg = UINT64_MAX;
    *want_off = -1;
    dfd = openat(ctx->dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    d = dfd >= 0 ? fdopendir(dfd) : NULL;
    if (d == NULL) {
        snprintf(err, errlen, "QUEUE_DIR %s: cannot list: %s", ctx->dir, strerror(errno));
        if (dfd >= 0) {
            close(dfd);
        }
        return EP_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        uint64_t first;

        if (ep__disk_seg_parse(de->d_name, &first)) {
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                names = ep_realloc(names, cap * sizeof(*names));
            }
            names[n++] = first;
        }
    }
    closedir(d);
    if (n > 0) {
        qsort(names, n, sizeof(*names), cmp_seq);
    }
    for (size_t i = 0; i < n; i++) {
        ep_disk_scan_t sc = {.want_seq = want};
        char name[64];
        int fd;

        ep__disk_seg_name(names[i], name, sizeof(name));
        fd = openat(ctx->dir_fd, name, O_RDWR | O_CLOEXEC);
        if (fd < 0 || (rc = ep__disk_scan(fd, names[i], &sc)) != 0) {
            snprintf(err, errlen, "QUEUE_DIR %s: cannot read %s: %s", ctx->dir, name,
                     strerror(fd < 0 ? errno : -rc));
            if (fd >= 0) {
                close(fd);
            }
            rc = EP_EIO;
            goto out;
        }
        if (sc.valid < sc.size) {
            /* A bad record with more data after it sat in the middle of the segment. */
            int middle = !sc.torn && sc.size - sc.valid > EP_DISK_HDR_SIZE;

            ep_log_warn("disk",
                        "%s/%s: offset %" PRId64 ": %s; truncating the segment there (%" PRId64
                        " bytes cut, %" PRIu64 " records before it intact)%s",
                        ctx->dir, name, sc.valid, sc.reason, sc.size - sc.valid, sc.records,
                        middle ? "; the corruption is in the middle of the segment: the records "
                                 "after it are dropped too"
                               : "");
            if (ftruncate(fd, sc.valid) != 0 || fdatasync(fd) != 0) {
                snprintf(err, errlen, "QUEUE_DIR %s: cannot truncate %s: %s", ctx->dir, name,
                         strerror(errno));
                close(fd);
                rc = EP_EIO;
                goto out;
            }
        }
        close(fd);
        if (sc.records == 0) {
            unlinkat(ctx->dir_fd, name, 0);
            continue;
        }
        if (ctx->n_segs > 0 && names[i] < ctx->segs[ctx->n_segs - 1].end_seq) {
            char bad[80];

            snprintf(bad, sizeof(bad), "%s.corrupt", name);
            ep_log_warn("disk", "%s/%s overlaps the segment before it; renamed to %s", ctx->dir,
                        name, bad);
            renameat(ctx->dir_fd, name, ctx->dir_fd, bad);
            continue;
        }
        {
            ep_disk_seg_t s = {names[i], sc.end_seq, sc.valid, sc.first_ts_ms, sc.last_ts_ms};
            seg_append(ctx, &s);
        }
        if (sc.want_off >= 0) {
            *want_seg = names[i];
            *want_off = sc.want_off;
        }
    }
    if (ctx->fsync_mode != FSYNC_NEVER) {
        fsync(ctx->dir_fd);
    }
out:
    ep_free(names);
    return rc;
}

/* Opens dlq.log for appending, cutting a torn tail first. Returns 0 or EP_EIO. */
static int open_dlq(disk_ctx_t *ctx, char *err, size_t errlen)
{
    ep_disk_scan_t sc = {.want_seq = UINT64_MAX};
    int fd = openat(ctx->dir_fd, "dlq.log", O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

    if (fd < 0 || ep__disk_scan(fd, UINT64_MAX, &sc) != 0) {
        snprintf(err, errlen, "QUEUE_DIR %s: cannot open dlq.log: %s", ctx->dir, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return EP_EIO;
    }
    if (sc.valid < sc.size) {
        ep_log_warn("disk", "%s/dlq.log: offset %" PRId64 ": %s; truncating there", ctx->dir,
                    sc.valid, sc.reason);
        if (ftruncate(fd, sc.valid) != 0) {
            snprintf(err, errlen, "QUEUE_DIR %s: cannot truncate dlq.log: %s", ctx->dir,
                     strerror(errno));
            close(fd);
            return EP_EIO;
        }
    }
    atomic_store(&ctx->dlq_records, sc.records);
    ctx->dlq_fd = fd;
    return 0;
}

/* --------------------------------------------------------------- provider */

static int parse_fsync(const char *s, int *mode, int64_t *ms)
{
    char *end;
    long long v;

    if (strcmp(s, "always") == 0) {
        *mode = FSYNC_ALWAYS;
        return 0;
    }
    if (strcmp(s, "never") == 0) {
        *mode = FSYNC_NEVER;
        return 0;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || v < 1 || v > 3600000) {
        return EP_ECONFIG;
    }
    *mode = FSYNC_EVERY;
    *ms = v;
    return 0;
}

static void disk_destroy(void *vctx);

static int disk_init(const ep_config_t *cfg, void **out, char *err, size_t errlen)
{
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

    if (parse_fsync(cfg->queue_fsync, &ctx->fsync_mode, &ctx->fsync_interval_ms) != 0) {
        snprintf(err, errlen,
                 "QUEUE_FSYNC: '%s' is not valid (always, never or an interval in ms, 1-3600000)",
                 cfg->queue_fsync);
        rc = EP_ECONFIG;
        goto err;
    }
    if (cfg->queue_segment_bytes < EP_DISK_HDR_SIZE * 2) {
        snprintf(err, errlen, "QUEUE_SEGMENT_SIZE: %lld is too small",
                 (long long)cfg->queue_segment_bytes);
        rc = EP_ECONFIG;
        goto err;
    }
    if (cfg->queue_dir[0] == '\0') {
        snprintf(err, errlen, "QUEUE_DIR: empty");
        rc = EP_ECONFIG;
        goto err;
    }
    snprintf(ctx->dir, sizeof(ctx->dir), "%s", cfg->queue_dir);
    ctx->segment_bytes = cfg->queue_segment_bytes;
    ctx->retention_bytes = cfg->queue_retention_bytes;
    ctx->retention_age_s = cfg->queue_retention_age_s;

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
    rc = recover_segments(ctx, cursor, &want_seg, &want_off, err, errlen);
    if (rc != 0) {
        goto err;
    }
    if ((rc = open_dlq(ctx, err, errlen)) != 0) {
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

    rc = pthread_create(&ctx->writer, NULL, writer_main, ctx);
    if (rc != 0) {
        snprintf(err, errlen, "disk queue: cannot start the writer thread: %s", strerror(rc));
        rc = EP_EIO;
        goto err;
    }
    ctx->writer_started = 1;
    rc = pthread_create(&ctx->keeper, NULL, keeper_main, ctx);
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
                cfg->queue_fsync);
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
            cb(arg, 0, zero_status);
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
        ep_counter_add(&ctx->rejected_full, n);
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

static int disk_consume(void *vctx, ep_event_t **out, size_t max, int timeout_ms)
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
    ep_counter_add(&ctx->dequeued, got);
    return (int)got;
}

static int disk_ack(void *vctx, ep_event_t **evs, size_t n)
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
    ep_counter_add(&ctx->acked, n);
    return 0;
}

static int disk_nack(void *vctx, ep_event_t **evs, size_t n, int delay_ms)
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
    ep_counter_add(&ctx->nacked, n);
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
    return disk_ack(ctx, evs, n);
}

static void disk_stats(void *vctx, ep_queue_stats_t *st)
{
    disk_ctx_t *ctx = vctx;
    uint64_t rs, ns;
    int64_t in_flight;

    memset(st, 0, sizeof(*st));
    st->acked = ep_counter_get(&ctx->acked);
    st->nacked = ep_counter_get(&ctx->nacked);
    st->dequeued = ep_counter_get(&ctx->dequeued);
    st->enqueued = ep_counter_get(&ctx->enqueued);
    st->rejected_full = ep_counter_get(&ctx->rejected_full);
    rs = ep_counter_get(&ctx->read_seq_pub);
    ns = ep_counter_get(&ctx->next_seq_pub);
    st->size = (int64_t)(ns > rs ? ns - rs : 0) + (int64_t)ep_counter_get(&ctx->rd_n);
    st->capacity = -1;
    in_flight = (int64_t)(st->dequeued - st->acked - st->nacked);
    st->in_flight = in_flight > 0 ? in_flight : 0;
}

static void disk_stats_json(void *vctx, ep_buf_t *out)
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

static void disk_lag_json(void *vctx, ep_buf_t *out)
{
    disk_ctx_t *ctx = vctx;
    uint64_t ns = ep_counter_get(&ctx->next_seq_pub), fl = ep_counter_get(&ctx->floor_pub);

    ep_buf_printf(out, "{\"total\":%" PRIu64 ",\"committed_seq\":%" PRIu64 "}",
                  ns > fl ? ns - fl : 0, fl);
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
    .api_version = EP_QUEUE_API_V1,
    .name = "disk",
    .flags = EP_QUEUE_F_LOCAL,
    .init = disk_init,
    .publish = disk_publish,
    .consume = disk_consume,
    .ack = disk_ack,
    .nack = disk_nack,
    .stats = disk_stats,
    .stats_json = disk_stats_json,
    .ready = disk_ready,
    .flush = disk_flush,
    .close = disk_close,
    .destroy = disk_destroy,
    .dead_letter = disk_dead_letter,
    .lag_json = disk_lag_json,
};
