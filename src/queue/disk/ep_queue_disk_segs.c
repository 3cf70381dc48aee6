/*
 * The disk queue's segment table (design in ep_queue_disk.c): the segments
 * known in memory, sorted by first sequence, under seg_lock; and recovery at
 * startup: scanning, checking and repairing every segment file and dlq.log.
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

/* Index of the first segment whose first_seq > seq (n_segs when none). Under seg_lock. */
size_t ep__disk_seg_upper(disk_ctx_t *ctx, uint64_t seq)
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
ep_disk_seg_t *ep__disk_seg_find(disk_ctx_t *ctx, uint64_t first_seq)
{
    size_t i = ep__disk_seg_upper(ctx, first_seq);

    if (i > 0 && ctx->segs[i - 1].first_seq == first_seq) {
        return &ctx->segs[i - 1];
    }
    return NULL;
}

void ep__disk_seg_append(disk_ctx_t *ctx, const ep_disk_seg_t *s)
{
    if (ctx->n_segs == ctx->cap_segs) {
        ctx->cap_segs = ctx->cap_segs ? ctx->cap_segs * 2 : 16;
        ctx->segs = ep_realloc(ctx->segs, ctx->cap_segs * sizeof(*ctx->segs));
    }
    ctx->segs[ctx->n_segs++] = *s;
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
int ep__disk_recover_segments(disk_ctx_t *ctx, uint64_t want, uint64_t *want_seg, int64_t *want_off,
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
            ep__disk_seg_append(ctx, &s);
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
int ep__disk_open_dlq(disk_ctx_t *ctx, char *err, size_t errlen)
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
