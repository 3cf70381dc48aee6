/*
 * The disk queue provider's shared context (internal): the struct every part
 * of the provider works on, its tunables, and the functions one part calls in
 * another. The on-disk format is in ep_disk_int.h; the design in
 * ep_queue_disk.c's opening comment.
 *
 * The parts:
 *   ep_queue_disk.c          the provider's entry points (init, publish, dead_letter, ...)
 *   ep_queue_disk_writer.c   the writer thread (group commit) and the keeper thread
 *   ep_queue_disk_read.c     the consumer side: ack window, reading records back,
 *                            and the consume, ack and nack entry points
 *   ep_queue_disk_segs.c     the segment table and recovery at startup
 *   ep_queue_disk_stats.c    stats, stats JSON and the fdatasync latency histogram
 *
 * Lock order: read_lock, then seg_lock. pub_lock is never held with another.
 */
#ifndef EP_QUEUE_DISK_INT_H
#define EP_QUEUE_DISK_INT_H

#include "queue/disk/ep_disk_int.h"
#include "config/ep_config.h"
#include "event/ep_event.h"
#include "queue/ep_queue.h"
#include "queue/ep_redeliver.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#define FSYNC_ALWAYS 0
#define FSYNC_NEVER  1
#define FSYNC_EVERY  2

#define CURSOR_INTERVAL_MS    100         /* the committed position is persisted this often */
#define RETENTION_INTERVAL_MS 1000        /* retention runs this often */
#define READ_CHUNK            (256 << 10) /* bytes a consumer reads from a segment at once */
#define WINDOW_MAX            (1u << 26)  /* consumed-but-unacked records tracked at most */
#define HIST_BUCKETS          (16 + 40 * 8)
#define ZERO_STATUS_N         1024

/* All zeros: the status of every event of a batch that succeeded. */
extern const int ep__disk_zero_status[ZERO_STATUS_N];

typedef struct pub_cb_s {
    ep_publish_cb cb;
    void *arg;
    size_t n;
} pub_cb_t;

/* The queue directory's longest path (QUEUE_DIR's buffer, disk_opts_t in ep_queue_disk.c). */
#define DISK_DIR_MAX 512

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
    ep_queue_counters_t counts;
    _Atomic uint64_t dlq_records;
    _Atomic uint64_t fsyncs, synced_events;
    _Atomic int64_t unacked_bytes;
    _Atomic uint64_t next_seq_pub, read_seq_pub, floor_pub, rd_n;
    _Atomic uint64_t hist[HIST_BUCKETS];
} disk_ctx_t;

/* ep_queue_disk.c */
void ep__disk_set_broken(disk_ctx_t *ctx, const char *fmt, const char *what, int err);

/* ep_queue_disk_writer.c */
void *ep__disk_keeper_main(void *arg);
void *ep__disk_writer_main(void *arg);

/* ep_queue_disk_read.c */
int ep__disk_consume(void *vctx, ep_event_t **out, size_t max, int timeout_ms);
int ep__disk_ack(void *vctx, ep_event_t **evs, size_t n);
int ep__disk_nack(void *vctx, ep_event_t **evs, size_t n, int delay_ms);

/* ep_queue_disk_segs.c */
size_t ep__disk_seg_upper(disk_ctx_t *ctx, uint64_t seq);
ep_disk_seg_t *ep__disk_seg_find(disk_ctx_t *ctx, uint64_t first_seq);
void ep__disk_seg_append(disk_ctx_t *ctx, const ep_disk_seg_t *s);
int ep__disk_recover_segments(disk_ctx_t *ctx, uint64_t want, uint64_t *want_seg, int64_t *want_off,
                              char *err, size_t errlen);
int ep__disk_open_dlq(disk_ctx_t *ctx, char *err, size_t errlen);

/* ep_queue_disk_stats.c */
int ep__disk_hist_index(uint64_t us);
void ep__disk_stats(void *vctx, ep_queue_stats_t *st);
void ep__disk_stats_json(void *vctx, ep_buf_t *out);
void ep__disk_lag_json(void *vctx, ep_buf_t *out);

#endif /* EP_QUEUE_DISK_INT_H */
