/*
 * Unit tests of ep_breaker with a fake clock: the threshold of consecutive
 * failures, the cool-down and Retry-After, exactly one probe in half-open
 * under concurrent callers, the probe's success closing and its failure
 * reopening, outcomes from an older generation ignored, and the
 * classification of publish statuses and HTTP answers (issue 15).
 */
#include "guard/ep_breaker.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "ep_test.h"

#include <pthread.h>
#include <stdatomic.h>

static _Atomic int64_t fake_ms = 1000000;

static int64_t fake_clock(void *arg)
{
    (void)arg;
    return atomic_load(&fake_ms);
}

static ep_breaker_t *make(uint32_t failures, int64_t open_ms)
{
    ep_breaker_opts_t o = {
        .target = "processor", .failures = failures, .open_ms = open_ms, .now_ms = fake_clock};
    ep_breaker_t *b = NULL;

    ep_log_configure(EP_LOG_ERROR, 0); /* a line per transition: thousands here */
    EP_ASSERT_EQ(ep_breaker_create(&o, &b), 0);
    return b;
}

static ep_breaker_state_t state(ep_breaker_t *b)
{
    ep_breaker_stats_t st;

    ep_breaker_stats(b, &st);
    return st.state;
}

/* One call let through and reported with outcome o. */
static void call(ep_breaker_t *b, ep_breaker_outcome_t o)
{
    ep_breaker_pass_t p;

    EP_ASSERT_EQ(ep_breaker_allow(b, &p), 0);
    ep_breaker_record(b, &p, o, "connection refused");
}

static void test_create_rejects_bad_options(void)
{
    ep_breaker_opts_t o = {.target = "x", .failures = 0, .open_ms = 10};
    ep_breaker_t *b = (ep_breaker_t *)1;

    EP_ASSERT_EQ(ep_breaker_create(&o, &b), EP_EINVAL);
    EP_ASSERT(b == NULL);
    o.failures = 1;
    o.open_ms = 0;
    EP_ASSERT_EQ(ep_breaker_create(&o, &b), EP_EINVAL);
    o.open_ms = 1;
    EP_ASSERT_EQ(ep_breaker_create(&o, &b), 0);
    EP_ASSERT_STR_EQ(ep_breaker_target(b), "x");
    ep_breaker_destroy(b);
    ep_breaker_destroy(NULL);
}

static void test_threshold_of_consecutive_failures(void)
{
    ep_breaker_t *b = make(5, 3000);
    ep_breaker_stats_t st;
    ep_breaker_pass_t p;

    for (int i = 0; i < 4; i++) {
        call(b, EP_BREAKER_FAIL);
    }
    EP_ASSERT_EQ(state(b), EP_BREAKER_CLOSED);
    /* A success resets the count; so 4 more are still not enough. */
    call(b, EP_BREAKER_OK);
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.consecutive_failures, 0);
    for (int i = 0; i < 4; i++) {
        call(b, EP_BREAKER_FAIL);
    }
    /* Neither a neutral outcome nor backpressure resets or counts. */
    call(b, EP_BREAKER_NEUTRAL);
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.consecutive_failures, 4);
    EP_ASSERT_EQ(st.state, EP_BREAKER_CLOSED);
    EP_ASSERT_EQ(st.retry_after_s, 0);
    call(b, EP_BREAKER_FAIL);
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.state, EP_BREAKER_OPEN);
    EP_ASSERT_EQ(st.times_opened, 1);
    EP_ASSERT_EQ(st.consecutive_failures, 5);
    EP_ASSERT_EQ(st.rejected, 0);

    EP_ASSERT_EQ(ep_breaker_allow(b, &p), EP_ECIRCUIT);
    EP_ASSERT_EQ(ep_breaker_allow(b, &p), EP_ECIRCUIT);
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.rejected, 2);
    EP_ASSERT(strstr(ep_breaker_message(b), "processor") != NULL);
    ep_breaker_destroy(b);
}

static void test_cool_down_and_retry_after(void)
{
    ep_breaker_t *b = make(1, 2500);
    ep_breaker_pass_t p;

    call(b, EP_BREAKER_FAIL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_OPEN);
    EP_ASSERT_EQ(ep_breaker_retry_after_s(b), 3); /* 2.5 s rounded up */
    atomic_fetch_add(&fake_ms, 1000);
    EP_ASSERT_EQ(ep_breaker_retry_after_s(b), 2); /* 1.5 s */
    atomic_fetch_add(&fake_ms, 1000);
    EP_ASSERT_EQ(ep_breaker_retry_after_s(b), 1); /* 0.5 s: at least 1 */
    atomic_fetch_add(&fake_ms, 499);
    EP_ASSERT_EQ(ep_breaker_retry_after_s(b), 1); /* 1 ms */
    EP_ASSERT_EQ(ep_breaker_allow(b, &p), EP_ECIRCUIT);
    EP_ASSERT_EQ(state(b), EP_BREAKER_OPEN);
    atomic_fetch_add(&fake_ms, 1);
    /* Cool-down over: this call is the probe. */
    EP_ASSERT_EQ(ep_breaker_allow(b, &p), 0);
    EP_ASSERT_EQ(state(b), EP_BREAKER_HALF_OPEN);
    EP_ASSERT_EQ(ep_breaker_retry_after_s(b), 1);
    ep_breaker_destroy(b);
}

static void test_probe_success_closes(void)
{
    ep_breaker_t *b = make(2, 1000);
    ep_breaker_pass_t probe, other;
    ep_breaker_stats_t st;

    call(b, EP_BREAKER_FAIL);
    call(b, EP_BREAKER_FAIL);
    atomic_fetch_add(&fake_ms, 1000);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), 0);
    /* Only one probe: everything else is refused until its outcome is known. */
    for (int i = 0; i < 10; i++) {
        EP_ASSERT_EQ(ep_breaker_allow(b, &other), EP_ECIRCUIT);
    }
    atomic_fetch_add(&fake_ms, 60000); /* however long the probe takes */
    EP_ASSERT_EQ(ep_breaker_allow(b, &other), EP_ECIRCUIT);
    ep_breaker_record(b, &probe, EP_BREAKER_OK, NULL);
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.state, EP_BREAKER_CLOSED);
    EP_ASSERT_EQ(st.consecutive_failures, 0);
    EP_ASSERT_EQ(st.times_opened, 1);
    EP_ASSERT_EQ(st.rejected, 11);
    /* Closed again: calls go through, and it takes the full threshold to reopen. */
    call(b, EP_BREAKER_FAIL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_CLOSED);
    call(b, EP_BREAKER_FAIL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_OPEN);
    ep_breaker_destroy(b);
}

static void test_probe_failure_reopens(void)
{
    ep_breaker_t *b = make(3, 1000);
    ep_breaker_pass_t probe;
    ep_breaker_stats_t st;

    for (int i = 0; i < 3; i++) {
        call(b, EP_BREAKER_FAIL);
    }
    atomic_fetch_add(&fake_ms, 1500);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), 0);
    ep_breaker_record(b, &probe, EP_BREAKER_FAIL, "timed out");
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.state, EP_BREAKER_OPEN);
    EP_ASSERT_EQ(st.times_opened, 2);
    /* A fresh cool-down from the probe's failure, not from the first opening. */
    EP_ASSERT_EQ(ep_breaker_retry_after_s(b), 1);
    atomic_fetch_add(&fake_ms, 999);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), EP_ECIRCUIT);
    atomic_fetch_add(&fake_ms, 1);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), 0);
    EP_ASSERT_EQ(state(b), EP_BREAKER_HALF_OPEN);
    ep_breaker_record(b, &probe, EP_BREAKER_OK, NULL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_CLOSED);
    ep_breaker_destroy(b);
}

static void test_inconclusive_probe_lets_the_next_call_probe(void)
{
    ep_breaker_t *b = make(1, 1000);
    ep_breaker_pass_t probe;
    int closed = EP_ECLOSED;

    call(b, EP_BREAKER_FAIL);
    atomic_fetch_add(&fake_ms, 1000);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), 0);
    ep_breaker_record_status(b, &probe, 1, &closed); /* our own shutdown: says nothing */
    EP_ASSERT_EQ(state(b), EP_BREAKER_OPEN);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), 0); /* no new cool-down */
    EP_ASSERT_EQ(state(b), EP_BREAKER_HALF_OPEN);
    ep_breaker_destroy(b);
}

static void test_outcomes_of_an_older_generation_are_ignored(void)
{
    ep_breaker_t *b = make(2, 1000);
    ep_breaker_pass_t old1, old2, old3, probe;
    ep_breaker_stats_t st;

    EP_ASSERT_EQ(ep_breaker_allow(b, &old1), 0);
    EP_ASSERT_EQ(ep_breaker_allow(b, &old2), 0);
    EP_ASSERT_EQ(ep_breaker_allow(b, &old3), 0);
    call(b, EP_BREAKER_FAIL);
    call(b, EP_BREAKER_FAIL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_OPEN);
    atomic_fetch_add(&fake_ms, 1000);
    EP_ASSERT_EQ(ep_breaker_allow(b, &probe), 0);
    /* A late success of a call from before the opening does not close it... */
    ep_breaker_record(b, &old1, EP_BREAKER_OK, NULL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_HALF_OPEN);
    /* ... a late failure does not reopen it... */
    ep_breaker_record(b, &old2, EP_BREAKER_FAIL, "late");
    EP_ASSERT_EQ(state(b), EP_BREAKER_HALF_OPEN);
    /* ... only the probe decides. */
    ep_breaker_record(b, &probe, EP_BREAKER_OK, NULL);
    EP_ASSERT_EQ(state(b), EP_BREAKER_CLOSED);
    /* A late failure from before does not count in the new closed period. */
    ep_breaker_record(b, &old3, EP_BREAKER_FAIL, "late");
    ep_breaker_stats(b, &st);
    EP_ASSERT_EQ(st.consecutive_failures, 0);
    ep_breaker_destroy(b);
}

/* ---------------------------------------------------------- concurrency */

#define N_THREADS 8
#define N_ROUNDS  200

typedef struct race_s {
    ep_breaker_t *b;
    pthread_barrier_t start, done;
    atomic_int admitted;
    ep_breaker_pass_t pass[N_THREADS];
    int got[N_THREADS];
} race_t;

typedef struct racer_s {
    race_t *r;
    int k;
} racer_t;

static void *racer(void *arg)
{
    racer_t *me = arg;
    race_t *r = me->r;

    for (int round = 0; round < N_ROUNDS; round++) {
        pthread_barrier_wait(&r->start);
        me->r->got[me->k] = ep_breaker_allow(r->b, &r->pass[me->k]) == 0;
        if (r->got[me->k]) {
            atomic_fetch_add(&r->admitted, 1);
        }
        pthread_barrier_wait(&r->done);
    }
    return NULL;
}

/* Every round: open, cool-down over, N threads ask at once; exactly one is the probe. */
static void test_one_probe_under_concurrent_callers(void)
{
    race_t r;
    racer_t rs[N_THREADS];
    pthread_t th[N_THREADS];
    ep_breaker_stats_t st;

    memset(&r, 0, sizeof(r));
    r.b = make(1, 100);
    pthread_barrier_init(&r.start, NULL, N_THREADS + 1);
    pthread_barrier_init(&r.done, NULL, N_THREADS + 1);
    for (int k = 0; k < N_THREADS; k++) {
        rs[k].r = &r;
        rs[k].k = k;
        pthread_create(&th[k], NULL, racer, &rs[k]);
    }
    call(r.b, EP_BREAKER_FAIL);
    for (int round = 0; round < N_ROUNDS; round++) {
        int probe = -1;

        EP_ASSERT_EQ(state(r.b), EP_BREAKER_OPEN);
        atomic_fetch_add(&fake_ms, 100);
        atomic_store(&r.admitted, 0);
        pthread_barrier_wait(&r.start);
        pthread_barrier_wait(&r.done);
        EP_ASSERT_EQ(atomic_load(&r.admitted), 1);
        EP_ASSERT_EQ(state(r.b), EP_BREAKER_HALF_OPEN);
        for (int k = 0; k < N_THREADS; k++) {
            if (r.got[k]) {
                probe = k;
            }
        }
        /* Alternate: the probe fails (reopen) or succeeds and the next call fails. */
        if (round % 2 == 0) {
            ep_breaker_record(r.b, &r.pass[probe], EP_BREAKER_FAIL, "refused");
        } else {
            ep_breaker_record(r.b, &r.pass[probe], EP_BREAKER_OK, NULL);
            EP_ASSERT_EQ(state(r.b), EP_BREAKER_CLOSED);
            call(r.b, EP_BREAKER_FAIL);
        }
    }
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
    }
    ep_breaker_stats(r.b, &st);
    EP_ASSERT_EQ(st.times_opened, N_ROUNDS + 1);
    EP_ASSERT_EQ(st.rejected, (uint64_t)N_ROUNDS * (N_THREADS - 1));
    pthread_barrier_destroy(&r.start);
    pthread_barrier_destroy(&r.done);
    ep_breaker_destroy(r.b);
}

typedef struct failer_s {
    ep_breaker_t *b;
    pthread_barrier_t *start;
} failer_t;

static void *failer(void *arg)
{
    failer_t *f = arg;

    pthread_barrier_wait(f->start);
    for (int i = 0; i < 10000; i++) {
        ep_breaker_pass_t p;
        if (ep_breaker_allow(f->b, &p) == 0) {
            ep_breaker_record(f->b, &p, EP_BREAKER_FAIL, "refused");
        }
    }
    return NULL;
}

/* Many threads failing at once while closed: it opens exactly once and stays open. */
static void test_concurrent_failures_open_once(void)
{
    pthread_barrier_t start;
    pthread_t th[N_THREADS];
    failer_t f;
    ep_breaker_stats_t st;

    f.b = make(50, 1000000);
    f.start = &start;
    pthread_barrier_init(&start, NULL, N_THREADS);
    for (int k = 0; k < N_THREADS; k++) {
        pthread_create(&th[k], NULL, failer, &f);
    }
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
    }
    ep_breaker_stats(f.b, &st);
    EP_ASSERT_EQ(st.state, EP_BREAKER_OPEN);
    EP_ASSERT_EQ(st.times_opened, 1);
    /* Every call after the opening was refused; at most the ones in flight got through. */
    EP_ASSERT(st.rejected >= (uint64_t)N_THREADS * 10000 - 50 - N_THREADS * 2);
    pthread_barrier_destroy(&start);
    ep_breaker_destroy(f.b);
}

/* ---------------------------------------------------------- classification */

static void test_what_counts_as_a_failure(void)
{
    ep_breaker_t *b = make(1, 1000);
    ep_breaker_pass_t p;
    int st[3];

    EP_ASSERT_EQ(ep_breaker_outcome_of(0), EP_BREAKER_OK);
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_EFULL), EP_BREAKER_OK); /* backpressure */
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_EINVAL), EP_BREAKER_OK);
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_E2BIG), EP_BREAKER_OK);
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_ECLOSED), EP_BREAKER_NEUTRAL);
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_EUNAVAIL), EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_ETIMEDOUT), EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_outcome_of(EP_ECONNREFUSED), EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(0), EP_BREAKER_FAIL); /* no answer */
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(500), EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(502), EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(504), EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(503), EP_BREAKER_OK); /* queue full */
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(429), EP_BREAKER_OK);
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(400), EP_BREAKER_OK);
    EP_ASSERT_EQ(ep_breaker_outcome_of_http(202), EP_BREAKER_OK);

    /* A call's statuses: full and ok do not open it; one unavailable event does. */
    st[0] = 0;
    st[1] = EP_EFULL;
    st[2] = 0;
    EP_ASSERT_EQ(ep_breaker_allow(b, &p), 0);
    ep_breaker_record_status(b, &p, 3, st);
    EP_ASSERT_EQ(state(b), EP_BREAKER_CLOSED);
    st[2] = EP_EUNAVAIL;
    EP_ASSERT_EQ(ep_breaker_allow(b, &p), 0);
    ep_breaker_record_status(b, &p, 3, st);
    EP_ASSERT_EQ(state(b), EP_BREAKER_OPEN);
    ep_breaker_destroy(b);
}

static void test_stats_json(void)
{
    ep_breaker_t *b = make(1, 4000);
    ep_buf_t out = EP_BUF_INIT;
    ep_breaker_pass_t p;

    ep_breaker_stats_json(b, &out);
    ep_buf_putc(&out, '\0');
    EP_ASSERT_STR_EQ(out.data, "\"processor\":{\"state\":\"closed\",\"consecutive_failures\":0,"
                               "\"times_opened\":0,\"rejected\":0,\"retry_after_s\":0,"
                               "\"last_opened_because\":null}");
    ep_buf_reset(&out);
    call(b, EP_BREAKER_FAIL);
    EP_ASSERT_EQ(ep_breaker_allow(b, &p), EP_ECIRCUIT);
    ep_breaker_stats_json(b, &out);
    ep_buf_putc(&out, '\0');
    EP_ASSERT_STR_EQ(out.data, "\"processor\":{\"state\":\"open\",\"consecutive_failures\":1,"
                               "\"times_opened\":1,\"rejected\":1,\"retry_after_s\":4,"
                               "\"last_opened_because\":\"1 consecutive failures, last: "
                               "connection refused\"}");
    ep_buf_close(&out);
    ep_breaker_destroy(b);
}

EP_TEST_LIST = {
    EP_TEST(test_create_rejects_bad_options),
    EP_TEST(test_threshold_of_consecutive_failures),
    EP_TEST(test_cool_down_and_retry_after),
    EP_TEST(test_probe_success_closes),
    EP_TEST(test_probe_failure_reopens),
    EP_TEST(test_inconclusive_probe_lets_the_next_call_probe),
    EP_TEST(test_outcomes_of_an_older_generation_are_ignored),
    EP_TEST(test_one_probe_under_concurrent_callers),
    EP_TEST(test_concurrent_failures_open_once),
    EP_TEST(test_what_counts_as_a_failure),
    EP_TEST(test_stats_json),
    EP_TEST_END,
};

EP_TEST_MAIN()
