/* Tests for the "disk" queue provider (src/queue/disk/). */
#include "ep_str.h"
#include "ep_test.h"

#include "../../src/queue/disk/ep_disk_int.h"
#include "ep_error.h"
#include "ep_event.h"
#include "ep_mem.h"
#include "ep_queue.h"
#include "ep_time.h"

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

static const char *qdir(void)
{
    if (tmp_dir[0] == '\0') {
        snprintf(tmp_dir, sizeof(tmp_dir), "/tmp/ep-disk-test-XXXXXX");
        EP_ASSERT(mkdtemp(tmp_dir) != NULL);
        /* A subdirectory that does not exist yet: init must create it. */
        strcat(tmp_dir, "/a/b/q");
    }
    return tmp_dir;
}

static void rm_tmp(void)
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

static ep_config_t make_cfg(const char *fsync, int64_t seg, int64_t ret_bytes, int64_t ret_age)
{
    ep_config_t cfg;

    ep_config_defaults(&cfg);
    snprintf(cfg.queue_dir, sizeof(cfg.queue_dir), "%s", qdir());
    snprintf(cfg.queue_fsync, sizeof(cfg.queue_fsync), "%s", fsync);
    cfg.queue_segment_bytes = seg;
    cfg.queue_retention_bytes = ret_bytes;
    cfg.queue_retention_age_s = ret_age;
    return cfg;
}

static ep_queue_t *open_cfg(const ep_config_t *cfg)
{
    ep_queue_t *q = NULL;
    char err[256] = "";
    int rc = ep_queue_create("disk", cfg, &q, err, sizeof(err));

    if (rc != 0) {
        EP__FAIL("open: %s: %s", ep_strerror(rc), err);
    }
    return q;
}

static ep_queue_t *open_default(void)
{
    ep_config_t cfg = make_cfg("always", 64 << 20, 0, 0);

    return open_cfg(&cfg);
}

typedef struct {
    _Atomic int calls;
    _Atomic int events;
    _Atomic int failed;
} cb_rec_t;

static void on_publish(void *arg, size_t n, const int *status)
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

static ep_event_t *make_event(int i)
{
    char id[32];

    snprintf(id, sizeof(id), "e-%d", i);
    return ep_event_create(id, "test", "unit", "user-1", "payload", 7, NULL, 0, 1700000000000 + i);
}

/* Publishes e-from .. e-(to-1) one call each and waits until all are written. */
static void publish_range(ep_queue_t *q, int from, int to)
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

static int event_num(const ep_event_t *ev)
{
    EP_ASSERT(strncmp(ev->id.p, EP_STRLIT("e-")) == 0);
    return atoi(ev->id.p + 2);
}

/* Consumes up to max events (stops after a quiet wait_ms). */
static int consume_wait(ep_queue_t *q, ep_event_t **out, int max, int wait_ms)
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
static int consume_all(ep_queue_t *q, ep_event_t **out, int max)
{
    return consume_wait(q, out, max, 100);
}

static int64_t stat_field(ep_queue_t *q, const char *key)
{
    ep_buf_t b = EP_BUF_INIT;
    char pat[64];
    const char *p;
    int64_t v;

    ep_queue_stats_json(q, &b);
    snprintf(pat, sizeof(pat), "\"%s\":", key);
    p = strstr(b.data, pat);
    EP_ASSERT(p != NULL);
    v = (int64_t)strtod(p + strlen(pat), NULL);
    ep_buf_close(&b);
    return v;
}

static double stat_double(ep_queue_t *q, const char *key)
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

/* Segment file names in the queue dir, sorted; returns the count. */
static int list_segments(char names[][64], int max)
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

static void seg_path(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", qdir(), name);
}

static off_t file_size(const char *path)
{
    struct stat st;

    EP_ASSERT_EQ(stat(path, &st), 0);
    return st.st_size;
}

/* Sends stderr (the log) to a file; returns the fd to restore it. */
static int capture_log(const char *path)
{
    int saved = dup(STDERR_FILENO);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    EP_ASSERT(fd >= 0 && saved >= 0);
    dup2(fd, STDERR_FILENO);
    close(fd);
    return saved;
}

static char *end_capture(int saved, const char *path)
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

static void ack_all(ep_queue_t *q, ep_event_t **evs, int n)
{
    EP_ASSERT_EQ(ep_queue_ack(q, evs, (size_t)n), 0);
}

/* ------------------------------------------------------------------ tests */

static void test_crc32c(void)
{
    EP_ASSERT_EQ(ep__disk_crc32c(0, "123456789", 9), 0xE3069283u);
    EP_ASSERT_EQ(ep__disk_crc32c(ep__disk_crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
    EP_ASSERT_EQ(ep__disk_crc32c(0, "", 0), 0);
}

static void test_round_trip(void)
{
    ep_queue_t *q = open_default();
    ep_event_t *out[16];
    ep_queue_stats_t st;
    int n;

    publish_range(q, 0, 10);
    n = consume_all(q, out, 16);
    EP_ASSERT_EQ(n, 10);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(event_num(out[i]), i);
        EP_ASSERT_STR_EQ(out[i]->source.p, "test");
        EP_ASSERT_STR_EQ(out[i]->event_type.p, "unit");
        EP_ASSERT_STR_EQ(out[i]->user_id.p, "user-1");
        EP_ASSERT_EQ(out[i]->data.len, 7);
        EP_ASSERT_EQ(out[i]->timestamp_ms, 1700000000000 + i);
        EP_ASSERT_EQ(out[i]->attempts, 1);
    }
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.enqueued, 10);
    EP_ASSERT_EQ(st.dequeued, 10);
    EP_ASSERT_EQ(st.in_flight, 10);
    EP_ASSERT_EQ(st.size, 0);
    EP_ASSERT_EQ(st.capacity, -1);
    ack_all(q, out, n);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.acked, 10);
    EP_ASSERT_EQ(stat_field(q, "records"), 10);
    EP_ASSERT_EQ(stat_field(q, "segments"), 1);
    EP_ASSERT(stat_field(q, "fsyncs") >= 1);
    EP_ASSERT_EQ(stat_field(q, "committed_seq"), 10);
    {
        char reason[128] = "";
        EP_ASSERT_EQ(ep_queue_ready(q, reason, sizeof(reason)), 1);
    }
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_bad_config(void)
{
    ep_config_t cfg = make_cfg("sometimes", 64 << 20, 0, 0);
    ep_queue_t *q = NULL;
    char err[256] = "";

    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "QUEUE_FSYNC") != NULL);
    EP_ASSERT(q == NULL);
    snprintf(cfg.queue_fsync, sizeof(cfg.queue_fsync), "0");
    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    snprintf(cfg.queue_fsync, sizeof(cfg.queue_fsync), "50ms");
    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    /* A path under a regular file cannot be created. */
    snprintf(cfg.queue_fsync, sizeof(cfg.queue_fsync), "always");
    snprintf(cfg.queue_dir, sizeof(cfg.queue_dir), "/etc/hostname/q");
    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_EIO);
    EP_ASSERT(strstr(err, "QUEUE_DIR") != NULL);
    rm_tmp();
}

static void test_lock(void)
{
    ep_queue_t *q = open_default(), *q2 = NULL;
    ep_config_t cfg = make_cfg("always", 64 << 20, 0, 0);
    char err[256] = "";

    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q2, err, sizeof(err)), EP_EIO);
    EP_ASSERT(strstr(err, "in use") != NULL);
    ep_queue_destroy(q);
    q = open_default();
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_persist_reopen(void)
{
    ep_queue_t *q = open_default();
    ep_event_t *out[64];
    int n;

    publish_range(q, 0, 20);
    n = consume_all(q, out, 64);
    EP_ASSERT_EQ(n, 20);
    ack_all(q, out, 10);
    /* Unacked events still held by the consumer are simply freed: the disk keeps them. */
    for (int i = 10; i < 20; i++) {
        ep_event_destroy(out[i]);
    }
    ep_queue_destroy(q);

    q = open_default();
    n = consume_all(q, out, 64);
    EP_ASSERT_EQ(n, 10);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(event_num(out[i]), 10 + i);
    }
    ack_all(q, out, n);
    publish_range(q, 20, 25);
    n = consume_all(q, out, 64);
    EP_ASSERT_EQ(n, 5);
    EP_ASSERT_EQ(event_num(out[0]), 20);
    ack_all(q, out, n);
    ep_queue_destroy(q);

    q = open_default();
    EP_ASSERT_EQ(consume_all(q, out, 64), 0);
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_out_of_order_acks(void)
{
    ep_queue_t *q = open_default();
    ep_event_t *out[16], *sel[8];
    int n, k = 0;

    publish_range(q, 0, 10);
    n = consume_all(q, out, 16);
    EP_ASSERT_EQ(n, 10);
    /* Ack 0, 1, 2, 5, 6, 7: the contiguous prefix ends at 3. */
    for (int i = 0; i < 10; i++) {
        if (i < 3 || (i >= 5 && i < 8)) {
            sel[k++] = out[i];
            out[i] = NULL;
        }
    }
    ack_all(q, sel, k);
    EP_ASSERT_EQ(stat_field(q, "committed_seq"), 3);
    for (int i = 0; i < 10; i++) {
        ep_event_destroy(out[i]);
    }
    ep_queue_destroy(q);

    q = open_default();
    n = consume_all(q, out, 16);
    /* Everything from 3 comes back, the acked 5-7 included (at-least-once). */
    EP_ASSERT_EQ(n, 7);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(event_num(out[i]), 3 + i);
    }
    /* Acking 3 and 4 last moves the floor over everything. */
    ack_all(q, out + 2, n - 2);
    EP_ASSERT_EQ(stat_field(q, "committed_seq"), 3);
    ack_all(q, out, 2);
    EP_ASSERT_EQ(stat_field(q, "committed_seq"), 10);
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_truncated_tail(void)
{
    char names[8][64], path[512], logf[600];
    ep_event_t *out[16];
    ep_queue_t *q = open_default();
    int n, saved;
    char *log;

    publish_range(q, 0, 10);
    ep_queue_destroy(q);
    EP_ASSERT_EQ(list_segments(names, 8), 1);
    seg_path(names[0], path, sizeof(path));
    /* Cut the last record in its middle. */
    EP_ASSERT_EQ(truncate(path, file_size(path) - 7), 0);

    snprintf(logf, sizeof(logf), "%s.log", path);
    saved = capture_log(logf);
    q = open_default();
    log = end_capture(saved, logf);
    EP_ASSERT(strstr(log, names[0]) != NULL);
    EP_ASSERT(strstr(log, "offset") != NULL);
    EP_ASSERT(strstr(log, "incomplete record") != NULL);
    EP_ASSERT(strstr(log, "truncating") != NULL);
    n = consume_all(q, out, 16);
    EP_ASSERT_EQ(n, 9);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(event_num(out[i]), i);
    }
    ack_all(q, out, n);
    /* New records follow the cut ones; nothing garbled is ever delivered. */
    publish_range(q, 100, 102);
    n = consume_all(q, out, 16);
    EP_ASSERT_EQ(n, 2);
    EP_ASSERT_EQ(event_num(out[0]), 100);
    ack_all(q, out, n);
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_flipped_bytes(void)
{
    char names[8][64], path[512], logf[600];
    ep_event_t *out[16];
    ep_queue_t *q = open_default();
    off_t size;
    int n, saved, fd;
    uint8_t b;
    char *log;

    publish_range(q, 0, 10);
    ep_queue_destroy(q);
    EP_ASSERT_EQ(list_segments(names, 8), 1);
    seg_path(names[0], path, sizeof(path));
    size = file_size(path);
    /* Records are the same size: flip a payload byte of record 5. */
    fd = open(path, O_RDWR);
    EP_ASSERT(fd >= 0);
    EP_ASSERT_EQ(pread(fd, &b, 1, size / 10 * 5 + 40), 1);
    b ^= 0x5a;
    EP_ASSERT_EQ(pwrite(fd, &b, 1, size / 10 * 5 + 40), 1);
    close(fd);

    snprintf(logf, sizeof(logf), "%s.log", path);
    saved = capture_log(logf);
    q = open_default();
    log = end_capture(saved, logf);
    EP_ASSERT(strstr(log, "checksum mismatch") != NULL);
    EP_ASSERT(strstr(log, "middle") != NULL);
    n = consume_all(q, out, 16);
    EP_ASSERT_EQ(n, 5);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(event_num(out[i]), i);
    }
    ack_all(q, out, n);
    EP_ASSERT_EQ(file_size(path), size / 10 * 5);
    ep_queue_destroy(q);
    rm_tmp();
}

/* A corrupt record in an older segment cuts that segment only; later segments stay. */
static void test_corrupt_middle_segment(void)
{
    ep_config_t cfg = make_cfg("never", 4096, 0, 0);
    char names[64][64], path[512];
    ep_event_t *out[256];
    ep_queue_t *q = open_cfg(&cfg);
    int n, nseg, fd, seen_last = 0;
    uint8_t b = 0xff;

    publish_range(q, 0, 120);
    ep_queue_destroy(q);
    nseg = list_segments(names, 64);
    EP_ASSERT(nseg >= 3);
    seg_path(names[0], path, sizeof(path));
    fd = open(path, O_RDWR);
    EP_ASSERT_EQ(pwrite(fd, &b, 1, 200), 1);
    close(fd);
    q = open_cfg(&cfg);
    n = consume_all(q, out, 256);
    EP_ASSERT(n > 0 && n < 120);
    for (int i = 0; i < n; i++) {
        seen_last |= event_num(out[i]) == 119;
        if (i > 0) {
            EP_ASSERT(event_num(out[i]) > event_num(out[i - 1]));
        }
    }
    EP_ASSERT(seen_last);
    ack_all(q, out, n);
    /* The gap is no hole in the committed position. */
    EP_ASSERT_EQ(stat_field(q, "committed_seq"), 120);
    ep_queue_destroy(q);
    rm_tmp();
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void write_random_file(const char *path, size_t len)
{
    uint8_t buf[4096];
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

    EP_ASSERT(fd >= 0);
    while (len > 0) {
        size_t k = len < sizeof(buf) ? len : sizeof(buf);
        for (size_t i = 0; i < k; i++) {
            buf[i] = (uint8_t)rnd();
        }
        EP_ASSERT_EQ(write(fd, buf, k), (ssize_t)k);
        len -= k;
    }
    close(fd);
}

static void check_only_known(ep_queue_t *q, int max_id)
{
    ep_event_t *out[512];
    /* Everything recovered or flushed is visible at once. */
    int n = consume_wait(q, out, 512, 0);

    for (int i = 0; i < n; i++) {
        int id = event_num(out[i]);
        EP_ASSERT(id >= 0 && id < max_id);
    }
    if (n > 0) {
        ack_all(q, out, n);
    }
}

/* Random files, random bytes appended and flipped: start-up never crashes or delivers junk. */
static void test_garbage(void)
{
    ep_config_t cfg = make_cfg("never", 4096, 0, 0);
    int rounds = 30;

    for (int r = 0; r < rounds; r++) {
        char names[64][64], path[512];
        ep_queue_t *q;
        int nseg;

        cfg = make_cfg("never", 4096, 0, 0);
        q = open_cfg(&cfg);
        publish_range(q, 0, 30 + (int)(rnd() % 50));
        ep_queue_destroy(q);
        nseg = list_segments(names, 64);
        EP_ASSERT(nseg > 0);
        switch (r % 5) {
        case 0: /* random bytes appended to the last segment */
            seg_path(names[nseg - 1], path, sizeof(path));
            {
                int fd = open(path, O_WRONLY | O_APPEND);
                uint8_t junk[300];
                size_t k = 1 + rnd() % sizeof(junk);
                for (size_t i = 0; i < k; i++) {
                    junk[i] = (uint8_t)rnd();
                }
                EP_ASSERT_EQ(write(fd, junk, k), (ssize_t)k);
                close(fd);
            }
            break;
        case 1: /* random bytes flipped anywhere in a segment */
            seg_path(names[rnd() % (uint64_t)nseg], path, sizeof(path));
            {
                int fd = open(path, O_RDWR);
                off_t size = file_size(path);
                for (int k = 0; k < 1 + (int)(rnd() % 8); k++) {
                    uint8_t b = (uint8_t)rnd();
                    EP_ASSERT_EQ(pwrite(fd, &b, 1, (off_t)(rnd() % (uint64_t)size)), 1);
                }
                close(fd);
            }
            break;
        case 2: /* a random file with a segment name, and a random cursor */
            snprintf(path, sizeof(path), "%s/%020llu.seg", qdir(),
                     (unsigned long long)(rnd() % 200));
            write_random_file(path, rnd() % 5000);
            snprintf(path, sizeof(path), "%s/cursor", qdir());
            write_random_file(path, rnd() % 2 ? 24 : rnd() % 64);
            break;
        case 3: /* a header with a huge length, and junk in dlq.log */
            seg_path(names[nseg - 1], path, sizeof(path));
            {
                ep_disk_hdr_t h = {EP_DISK_MAGIC, 0xfffffff0u, 0, 0, 999999, 0};
                uint8_t hb[EP_DISK_HDR_SIZE];
                int fd = open(path, O_WRONLY | O_APPEND);
                ep__disk_hdr_encode(&h, hb);
                EP_ASSERT_EQ(write(fd, hb, sizeof(hb)), (ssize_t)sizeof(hb));
                close(fd);
            }
            snprintf(path, sizeof(path), "%s/dlq.log", qdir());
            write_random_file(path, rnd() % 3000);
            break;
        default: /* a segment truncated at a random length */
            seg_path(names[rnd() % (uint64_t)nseg], path, sizeof(path));
            EP_ASSERT_EQ(truncate(path, (off_t)(rnd() % (uint64_t)(file_size(path) + 1))), 0);
            break;
        }
        q = open_cfg(&cfg);
        check_only_known(q, 100);
        /* The queue still works after the repair. */
        publish_range(q, 0, 3);
        check_only_known(q, 100);
        ep_queue_destroy(q);
        /* A second start finds nothing left to repair. */
        q = open_cfg(&cfg);
        check_only_known(q, 100);
        ep_queue_destroy(q);
        if (r % 4 == 3) {
            rm_tmp();
        }
    }
    rm_tmp();
}

/* Retention by size and by age deletes whole consumed segments, never an unconsumed one. */
static void test_retention(void)
{
    ep_config_t cfg = make_cfg("never", 4096, 20000, 0);
    char names[128][64];
    ep_event_t *out[512];
    ep_queue_t *q = open_cfg(&cfg);
    int n, before, after;

    /* 150 records consumed and acked, then 100 that nobody consumes. */
    publish_range(q, 0, 150);
    n = consume_all(q, out, 150);
    EP_ASSERT_EQ(n, 150);
    ack_all(q, out, n);
    publish_range(q, 150, 250);
    before = list_segments(names, 128);
    EP_ASSERT(before >= 6);
    /* Retention runs once a second. */
    for (int64_t end = ep_time_mono_ms() + 30000; ep_time_mono_ms() < end;) {
        ep_time_sleep_ms(50);
        if (list_segments(names, 128) < before && stat_field(q, "bytes") <= 20000) {
            break;
        }
    }
    after = list_segments(names, 128);
    EP_ASSERT(after < before);
    EP_ASSERT(stat_field(q, "bytes") <= 20000);
    EP_ASSERT_EQ(stat_field(q, "segments"), after);
    ep_queue_destroy(q);

    /* Every unconsumed record is still there. */
    q = open_cfg(&cfg);
    n = consume_all(q, out, 512);
    EP_ASSERT_EQ(n, 100);
    for (int i = 0; i < n; i++) {
        EP_ASSERT_EQ(event_num(out[i]), 150 + i);
    }
    for (int i = 0; i < n; i++) {
        ep_event_destroy(out[i]);
    }
    ep_queue_destroy(q);

    /* By age: everything consumed goes but the active segment; the unconsumed stay. */
    cfg = make_cfg("never", 4096, 0, 1);
    q = open_cfg(&cfg);
    n = consume_all(q, out, 60);
    EP_ASSERT_EQ(n, 60);
    ack_all(q, out, n);
    before = list_segments(names, 128);
    for (int64_t end = ep_time_mono_ms() + 30000; ep_time_mono_ms() < end;) {
        ep_time_sleep_ms(50);
        if (list_segments(names, 128) < before - 2) {
            break;
        }
    }
    after = list_segments(names, 128);
    EP_ASSERT(after < before);
    ep_queue_destroy(q);
    q = open_cfg(&cfg);
    n = consume_all(q, out, 512);
    EP_ASSERT_EQ(n, 40);
    EP_ASSERT_EQ(event_num(out[0]), 210);
    ack_all(q, out, n);
    ep_queue_destroy(q);
    rm_tmp();
}

typedef struct {
    ep_queue_t *q;
    int base, count;
    cb_rec_t *rec;
} pub_arg_t;

static void *publisher(void *arg)
{
    pub_arg_t *a = arg;

    for (int i = 0; i < a->count; i++) {
        ep_event_t *ev = make_event(a->base + i);
        int rc;

        while ((rc = ep_queue_publish(a->q, &ev, 1, on_publish, a->rec)) == EP_EFULL) {
            ep_time_sleep_ms(1);
        }
        EP_ASSERT_EQ(rc, 0);
    }
    return NULL;
}

/* Many concurrent publishers share fdatasyncs. */
static void test_group_commit(void)
{
    ep_queue_t *q = open_default();
    pthread_t th[16];
    pub_arg_t args[16];
    cb_rec_t rec = {0};
    int per = 150;
    double epf;

    for (int t = 0; t < 16; t++) {
        args[t] = (pub_arg_t){q, t * per, per, &rec};
        pthread_create(&th[t], NULL, publisher, &args[t]);
    }
    for (int t = 0; t < 16; t++) {
        pthread_join(th[t], NULL);
    }
    EP_ASSERT_EQ(ep_queue_flush(q, 30000), 0);
    for (int64_t end = ep_time_mono_ms() + 30000;
         atomic_load(&rec.events) < 16 * per && ep_time_mono_ms() < end;) {
        ep_time_sleep_ms(5);
    }
    EP_ASSERT_EQ(atomic_load(&rec.events), 16 * per);
    epf = stat_double(q, "events_per_fsync");
    fprintf(stderr, "events_per_fsync=%.2f fsyncs=%lld p50=%lldus p99=%lldus\n", epf,
            (long long)stat_field(q, "fsyncs"), (long long)stat_field(q, "fsync_p50_us"),
            (long long)stat_field(q, "fsync_p99_us"));
    EP_ASSERT(epf > 1.0);
    EP_ASSERT(stat_field(q, "fsyncs") < 16 * per);
    EP_ASSERT(stat_field(q, "fsync_p50_us") > 0);
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_full(void)
{
    ep_config_t cfg = make_cfg("never", 4096, 2000, 0);
    ep_queue_t *q = open_cfg(&cfg);
    ep_event_t *out[64], *ev;
    ep_queue_stats_t st;
    int ok = 0, rc;

    for (;;) {
        ev = make_event(ok);
        rc = ep_queue_publish(q, &ev, 1, NULL, NULL);
        if (rc != 0) {
            break;
        }
        ok++;
        EP_ASSERT(ok < 1000);
    }
    EP_ASSERT_EQ(rc, EP_EFULL);
    EP_ASSERT(ev != NULL); /* still ours */
    ep_event_destroy(ev);
    EP_ASSERT(ok > 5);
    ep_queue_stats(q, &st);
    EP_ASSERT_EQ(st.rejected_full, 1);
    /* Consuming alone frees nothing; acking does. */
    EP_ASSERT_EQ(consume_all(q, out, 5), 5);
    ev = make_event(999);
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, NULL, NULL), EP_EFULL);
    ack_all(q, out, 5);
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, NULL, NULL), 0);
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_nack_and_dead_letter(void)
{
    ep_queue_t *q = open_default();
    ep_event_t *out[8];
    int64_t t0;
    char path[512];
    int n;

    publish_range(q, 0, 3);
    EP_ASSERT_EQ(consume_all(q, out, 8), 3);
    t0 = ep_time_mono_ms();
    EP_ASSERT_EQ(ep_queue_nack(q, out, 1, 80), 0);
    n = ep_queue_consume(q, out, 1, 30000);
    EP_ASSERT_EQ(n, 1);
    EP_ASSERT(ep_time_mono_ms() - t0 >= 75);
    EP_ASSERT_EQ(event_num(out[0]), 0);
    EP_ASSERT_EQ(out[0]->attempts, 2);
    /* 0 goes to the DLQ; 1 and 2 are acked. */
    EP_ASSERT_EQ(ep_queue_dead_letter(q, out, 1, "test reason"), 0);
    EP_ASSERT_EQ(stat_field(q, "dlq_records"), 1);
    /* 1 and 2 stay un-acked: the consumer "crashes" with them. */
    ep_event_destroy(out[1]);
    ep_event_destroy(out[2]);
    ep_queue_destroy(q);
    snprintf(path, sizeof(path), "%s/dlq.log", qdir());
    EP_ASSERT(file_size(path) > EP_DISK_HDR_SIZE);

    q = open_default();
    EP_ASSERT_EQ(stat_field(q, "dlq_records"), 1);
    /* 1 and 2 were never acked: they come back; 0 does not. */
    n = consume_all(q, out, 8);
    EP_ASSERT_EQ(n, 2);
    EP_ASSERT_EQ(event_num(out[0]), 1);
    ack_all(q, out, n);
    ep_queue_destroy(q);
    rm_tmp();
}

static void test_fsync_policies(void)
{
    const char *modes[] = {"never", "20"};

    for (int m = 0; m < 2; m++) {
        ep_config_t cfg = make_cfg(modes[m], 64 << 20, 0, 0);
        ep_queue_t *q = open_cfg(&cfg);
        ep_event_t *out[64];

        publish_range(q, 0, 30);
        if (m == 0) {
            ep_time_sleep_ms(100);
            EP_ASSERT_EQ(stat_field(q, "fsyncs"), 0);
        } else {
            /* Every 20 ms in theory; a loaded machine may take longer, never 30 s. */
            for (int64_t end = ep_time_mono_ms() + 30000;
                 stat_field(q, "fsyncs") < 1 && ep_time_mono_ms() < end;) {
                ep_time_sleep_ms(10);
            }
            EP_ASSERT(stat_field(q, "fsyncs") >= 1);
        }
        EP_ASSERT_EQ(consume_all(q, out, 64), 30);
        ack_all(q, out, 30);
        ep_queue_destroy(q);
        q = open_cfg(&cfg);
        EP_ASSERT_EQ(consume_all(q, out, 64), 0);
        ep_queue_destroy(q);
        rm_tmp();
    }
}

static void test_close_drains(void)
{
    ep_queue_t *q = open_default();
    ep_event_t *out[16], *ev;
    int n, got = 0;

    publish_range(q, 0, 5);
    ep_queue_close(q);
    ev = make_event(9);
    EP_ASSERT_EQ(ep_queue_publish(q, &ev, 1, NULL, NULL), EP_ECLOSED);
    ep_event_destroy(ev);
    while ((n = ep_queue_consume(q, out, 2, 30000)) > 0) {
        ack_all(q, out, n);
        got += n;
    }
    EP_ASSERT_EQ(n, EP_ECLOSED);
    EP_ASSERT_EQ(got, 5);
    ep_queue_destroy(q);
    rm_tmp();
}

/* ------------------------------------------------------------------ stress */

#define STRESS_PUBLISHERS 4
#define STRESS_CONSUMERS  3

typedef struct {
    ep_queue_t *q;
    _Atomic int *acked_count; /* per id */
    _Atomic int done_publishing;
    _Atomic int total_acked;
    int total;
} stress_t;

static void *stress_consumer(void *arg)
{
    stress_t *s = arg;
    ep_event_t *out[32];
    unsigned seed = 7;

    while (atomic_load(&s->total_acked) < s->total) {
        int n = ep_queue_consume(s->q, out, 32, 50);
        int keep = 0;

        EP_ASSERT(n >= 0);
        for (int i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            if ((seed >> 16) % 10 == 0 && out[i]->attempts < 3) {
                EP_ASSERT_EQ(ep_queue_nack(s->q, &out[i], 1, (int)((seed >> 8) % 5)), 0);
                continue;
            }
            atomic_fetch_add(&s->acked_count[event_num(out[i])], 1);
            out[keep++] = out[i];
        }
        if (keep > 0) {
            ack_all(s->q, out, keep);
            atomic_fetch_add(&s->total_acked, keep);
        }
    }
    return NULL;
}

static void test_stress(void)
{
#ifdef EP_TEST_SLOW
    int per = 1500;
#else
    int per = 10000;
#endif
    ep_config_t cfg = make_cfg("20", 64 << 10, 0, 0);
    pthread_t pt[STRESS_PUBLISHERS], ct[STRESS_CONSUMERS];
    pub_arg_t pa[STRESS_PUBLISHERS];
    cb_rec_t rec = {0};
    stress_t s;
    ep_event_t *out[8];

    memset(&s, 0, sizeof(s));
    s.q = open_cfg(&cfg);
    s.total = per * STRESS_PUBLISHERS;
    s.acked_count = ep_calloc((size_t)s.total, sizeof(*s.acked_count));
    for (int c = 0; c < STRESS_CONSUMERS; c++) {
        pthread_create(&ct[c], NULL, stress_consumer, &s);
    }
    for (int t = 0; t < STRESS_PUBLISHERS; t++) {
        pa[t] = (pub_arg_t){s.q, t * per, per, &rec};
        pthread_create(&pt[t], NULL, publisher, &pa[t]);
    }
    for (int t = 0; t < STRESS_PUBLISHERS; t++) {
        pthread_join(pt[t], NULL);
    }
    for (int c = 0; c < STRESS_CONSUMERS; c++) {
        pthread_join(ct[c], NULL);
    }
    /* The writer makes a batch visible, then runs its callbacks: they may still be due. */
    for (int64_t end = ep_time_mono_ms() + 30000;
         atomic_load(&rec.events) < s.total && ep_time_mono_ms() < end;) {
        ep_time_sleep_ms(5);
    }
    for (int i = 0; i < s.total; i++) {
        EP_ASSERT_EQ(atomic_load(&s.acked_count[i]), 1);
    }
    EP_ASSERT_EQ(atomic_load(&rec.events), s.total);
    EP_ASSERT_EQ(atomic_load(&rec.failed), 0);
    EP_ASSERT_EQ(stat_field(s.q, "committed_seq"), s.total);
    EP_ASSERT_EQ(stat_field(s.q, "unacked_bytes"), 0);
    EP_ASSERT(stat_field(s.q, "segments") > 1);
    ep_queue_destroy(s.q);
    /* Nothing is delivered again after a clean restart. */
    s.q = open_cfg(&cfg);
    EP_ASSERT_EQ(consume_all(s.q, out, 8), 0);
    ep_queue_destroy(s.q);
    ep_free(s.acked_count);
    rm_tmp();
}

EP_TEST_LIST = {
    EP_TEST(test_crc32c),
    EP_TEST(test_round_trip),
    EP_TEST(test_bad_config),
    EP_TEST(test_lock),
    EP_TEST(test_persist_reopen),
    EP_TEST(test_out_of_order_acks),
    EP_TEST(test_truncated_tail),
    EP_TEST(test_flipped_bytes),
    EP_TEST(test_corrupt_middle_segment),
    EP_TEST(test_garbage),
    EP_TEST(test_retention),
    EP_TEST(test_group_commit),
    EP_TEST(test_full),
    EP_TEST(test_nack_and_dead_letter),
    EP_TEST(test_fsync_policies),
    EP_TEST(test_close_drains),
    EP_TEST(test_stress),
    EP_TEST_END,
};

EP_TEST_MAIN()
