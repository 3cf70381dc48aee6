/*
 * Tests for the "disk" queue provider (src/queue/disk/): the round trip,
 * configuration, acks, retention, group commit, backpressure, nack and DLQ,
 * fsync policies, close and a stress run. Recovery from a damaged or
 * reopened QUEUE_DIR is in test_queue_disk_recovery.c.
 */
#include "ep_test_disk.h"

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
    ep_config_put(&cfg, "QUEUE_FSYNC", "0");
    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    ep_config_put(&cfg, "QUEUE_FSYNC", "50x"); /* unknown unit */
    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    ep_config_put(&cfg, "QUEUE_FSYNC", "500us"); /* finer than whole ms */
    EP_ASSERT_EQ(ep_queue_create("disk", &cfg, &q, err, sizeof(err)), EP_ECONFIG);
    /* A path under a regular file cannot be created. */
    ep_config_put(&cfg, "QUEUE_FSYNC", "always");
    ep_config_put(&cfg, "QUEUE_DIR", "/etc/hostname/q");
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
    EP_TEST(test_out_of_order_acks),
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
