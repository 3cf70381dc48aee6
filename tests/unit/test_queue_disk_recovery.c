/*
 * Tests for the "disk" queue provider's recovery (src/queue/disk/): reopening
 * a QUEUE_DIR, and a torn tail, flipped bytes, a corrupt middle segment and
 * random garbage in it. The other disk queue tests are in test_queue_disk.c.
 */
#include "ep_test_disk.h"

/* ------------------------------------------------------------------ tests */

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

EP_TEST_LIST = {
    EP_TEST(test_persist_reopen),         EP_TEST(test_truncated_tail), EP_TEST(test_flipped_bytes),
    EP_TEST(test_corrupt_middle_segment), EP_TEST(test_garbage),        EP_TEST_END,
};

EP_TEST_MAIN()
