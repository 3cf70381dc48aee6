/* Unit tests of ep_dedup: reserve/commit/release, window expiry, concurrency. */
#include "ep_dedup.h"
#include "ep_test.h"

#include <pthread.h>

static void test_reserve_commit_release(void)
{
    ep_dedup_t *d = ep_dedup_create(10, 1000);

    EP_ASSERT_EQ(ep_dedup_reserve(d, "a", 1, 100), EP_DEDUP_NEW);
    EP_ASSERT_EQ(ep_dedup_reserve(d, "a", 1, 100), EP_DEDUP_PENDING);
    ep_dedup_commit(d, "a", 1, 100);
    EP_ASSERT_EQ(ep_dedup_reserve(d, "a", 1, 105), EP_DEDUP_DONE);
    EP_ASSERT_EQ(ep_dedup_reserve(d, "a", 1, 111), EP_DEDUP_NEW); /* window over */
    ep_dedup_release(d, "a", 1);
    EP_ASSERT_EQ(ep_dedup_reserve(d, "a", 1, 111), EP_DEDUP_NEW); /* released */
    EP_ASSERT_EQ(ep_dedup_reserve(d, "b", 1, 111), EP_DEDUP_NEW);
    ep_dedup_destroy(d);
}

static void test_bounded_and_sweeps(void)
{
    ep_dedup_t *d = ep_dedup_create(5, 1000);
    char id[32];

    for (int i = 0; i < 100000; i++) {
        int n = snprintf(id, sizeof(id), "id-%d", i);
        EP_ASSERT_EQ(ep_dedup_reserve(d, id, (size_t)n, i / 1000), EP_DEDUP_NEW);
        ep_dedup_commit(d, id, (size_t)n, i / 1000);
    }
    /* Old ids were swept out as they expired; memory stayed bounded. */
    EP_ASSERT(ep_dedup_size(d) < 100000);
    ep_dedup_destroy(d);
}

static ep_dedup_t *shared;
static int news[4];

static void *racer(void *arg)
{
    int k = (int)(intptr_t)arg;
    char id[32];

    for (int i = 0; i < 20000; i++) {
        int n = snprintf(id, sizeof(id), "r-%d", i);
        if (ep_dedup_reserve(shared, id, (size_t)n, 1) == EP_DEDUP_NEW) {
            news[k]++;
            ep_dedup_commit(shared, id, (size_t)n, 1);
        }
    }
    return NULL;
}

static void test_concurrent_exactly_one_winner(void)
{
    pthread_t t[4];

    shared = ep_dedup_create(60, 100000);
    for (int k = 0; k < 4; k++) {
        pthread_create(&t[k], NULL, racer, (void *)(intptr_t)k);
    }
    for (int k = 0; k < 4; k++) {
        pthread_join(t[k], NULL);
    }
    EP_ASSERT_EQ(news[0] + news[1] + news[2] + news[3], 20000);
    ep_dedup_destroy(shared);
}

EP_TEST_LIST = {
    EP_TEST(test_reserve_commit_release),
    EP_TEST(test_bounded_and_sweeps),
    EP_TEST(test_concurrent_exactly_one_winner),
    EP_TEST_END,
};
EP_TEST_MAIN()
