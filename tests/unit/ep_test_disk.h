#ifndef EP_TEST_DISK_H
#define EP_TEST_DISK_H

/*
 * Helpers shared by the "disk" queue provider's tests (test_queue_disk.c and
 * test_queue_disk_recovery.c): a temporary QUEUE_DIR, opening a queue,
 * publishing and consuming numbered events, reading the stats JSON, and the
 * segment files.
 */
#include "base/ep_str.h"
#include "ep_test.h"

#include "queue/disk/ep_disk_int.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "base/ep_time.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define EP_TEST_SLOW 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define EP_TEST_SLOW 1
#endif
#endif

/* ---------------------------------------------------------------- helpers */

static char tmp_dir[256];

static inline const char *qdir(void)
{
    if (tmp_dir[0] == '\0') {
        snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/ep-disk-test-XXXXXX");
        EP_ASSERT(mkdtemp(tmp_dir) != NULL);
        /* A subdirectory that does not exist yet: init must create it. */
        strcat(tmp_dir, "/a/b/q");
    }
    return tmp_dir;
}

static inline void rm_tmp(void)
{
    char cmd[512];
    char *slash;

    if (tmp_dir[0] == '\0') {
        return;
    }
    slash = strstr(tmp_dir, "/a/b/q");
    if (slash) {
        *slash = '\0';
    }
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_dir);
    EP_ASSERT_EQ(system(cmd), 0);
    tmp_dir[0] = '\0';
}

/* A provider setting given as a number (a bare number: bytes, seconds). */
static inline void put_i64(ep_config_t *cfg, const char *name, int64_t v)
{
    char s[32];

    snprintf(s, sizeof(s), "%lld", (long long)v);
    EP_ASSERT_EQ(ep_config_put(cfg, name, s), 0);
}

static inline ep_config_t make_cfg(const char *fsync, int64_t seg, int64_t ret_bytes,
                                   int64_t ret_age)
{
    ep_config_t cfg;

    ep_config_defaults(&cfg);
    ep_config_put(&cfg, "QUEUE_DIR", qdir());
    ep_config_put(&cfg, "QUEUE_FSYNC", fsync);
    put_i64(&cfg, "QUEUE_SEGMENT_SIZE", seg);
    put_i64(&cfg, "QUEUE_RETENTION_BYTES", ret_bytes);
    put_i64(&cfg, "QUEUE_RETENTION_AGE", ret_age);
    return cfg;
}

static inline ep_queue_t *open_cfg(const ep_config_t *cfg)
{
    ep_queue_t *q = NULL;
    char err[256] = "";
    int rc = ep_queue_create("disk", cfg, &q, err, sizeof(err));

    if (rc != 0) {
        EP__FAIL("open: %s: %s", ep_strerror(rc), err);
    }
    return q;
}

static inline ep_queue_t *open_default(void)
{
    ep_config_t cfg = make_cfg("always", 64 << 20, 0, 0);

    return open_cfg(&cfg);
}

typedef struct {
    _Atomic int calls;
    _Atomic int events;
    _Atomic int failed;
} cb_rec_t;

static inline void on_publish(void *arg, size_t n, const int *status)
{
    cb_rec_t *r = arg;

    for (size_t i = 0; i < n; i++) {
        if (status[i] != 0) {
            atomic_fetch_add(&r->failed, 1);
        }
    }
    atomic_fetch_add(&r->events, (int)n);
    atomic_fetch_add(&r->calls, 1);
}

static inline ep_event_t *make_event(int i)
{
    char id[32];

    snprintf(id, sizeof(id), "e-%d", i);
    return ep_event_create(id, "test", "unit", "user-1", "payload", 7, NULL, 0, 1700000000000 + i);
}

/* Publishes e-from .. e-(to-1) one call each and waits until all are written. */
static inline void publish_range(ep_queue_t *q, int from, int to)
{
    cb_rec_t rec = {0};

    for (int i = from; i < to; i++) {
        ep_event_t *ev = make_event(i);

        EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, on_publish, &rec), 0);
        EP_ASSERT(ev == NULL);
    }
    EP_ASSERT_EQ(ep_queue_flush(q, 30000), 0);
    for (int64_t end = ep_time_mono_ms() + 30000;
         atomic_load(&rec.calls) < to - from && ep_time_mono_ms() < end;) {
        ep_time_sleep_ms(5);
    }
    EP_ASSERT_EQ(atomic_load(&rec.calls), to - from);
    EP_ASSERT_EQ(atomic_load(&rec.failed), 0);
}

static inline int event_num(const ep_event_t *ev)
{
    EP_ASSERT(strncmp(ev->id.p, EP_STRLIT("e-")) == 0);
    return atoi(ev->id.p + 2);
}

/* Consumes up to max events (stops after a quiet wait_ms). */
static inline int consume_wait(ep_queue_t *q, ep_event_t **out, int max, int wait_ms)
{
    int got = 0;

    while (got < max) {
        int n = ep_queue_consume(q, out + got, (size_t)(max - got), wait_ms);

        EP_ASSERT(n >= 0);
        if (n == 0) {
            break;
        }
        got += n;
    }
    return got;
}

/* Consumes up to max events (stops after a quiet 100 ms). */
static inline int consume_all(ep_queue_t *q, ep_event_t **out, int max)
{
    return consume_wait(q, out, max, 100);
}

/* The number after "key": in the queue's stats JSON (the key must be there). */
static inline double stat_double(ep_queue_t *q, const char *key)
{
    ep_buf_t b = EP_BUF_INIT;
    char pat[64];
    const char *p;
    double v;

    ep_queue_stats_json(q, &b);
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(b.data, pat);
    EP_ASSERT(p != NULL);
    v = strtod(p + strlen(pat), NULL);
    ep_buf_close(&b);
    return v;
}

static inline int64_t stat_field(ep_queue_t *q, const char *key)
{
    return (int64_t)stat_double(q, key);
}

/* Segment file names in the queue dir, sorted; returns the count. */
static inline int list_segments(char names[][64], int max)
{
    DIR *d = opendir(qdir());
    struct dirent *de;
    int n = 0;

    EP_ASSERT(d != NULL);
    while ((de = readdir(d)) != NULL && n < max) {
        uint64_t s;

        if (ep__disk_seg_parse(de->d_name, &s)) {
            memcpy(names[n++], de->d_name, EP_DISK_SEG_NAME_LEN + 1);
        }
    }
    closedir(d);
    for (int i = 1; i < n; i++) {
        for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char t[64];
            memcpy(t, names[j], 64);
            memcpy(names[j], names[j - 1], 64);
            memcpy(names[j - 1], t, 64);
        }
    }
    return n;
}

static inline void seg_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", qdir(), name);
}

static inline off_t file_size(const char *path)
{
    struct stat st;

    EP_ASSERT_EQ(stat(path, &st), 0);
    return st.st_size;
}

/* Sends stderr (the log) to a file; returns the fd to restore it. */
static inline int capture_log(const char *path)
{
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    EP_ASSERT(fd >= 0 && saved >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

static inline char *end_capture(int saved, const char *path)
{
    static char text[16384];
    int fd;
    ssize_t n;

    dup2(saved, STDERR_FILENO);
    close(saved);
    fd = open(path, O_RDONLY);
    EP_ASSERT(fd >= 0);
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    text[n > 0 ? n : 0] = '\0';
    fputs(text, stderr);
    return text;
}

static inline void ack_all(ep_queue_t *q, ep_event_t **evs, int n)
{
    EP_ASSERT_EQ(ep_queue_ack(q, evs, (size_t)n), 0);
}

#endif /* EP_TEST_DISK_H */
