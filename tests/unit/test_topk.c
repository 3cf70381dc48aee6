/*
 * Space-saving top-k: exact below capacity, heavy hitters found in a skewed
 * stream with many distinct values, merge and serialisation.
 */
#include "analytics/ep_topk.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "ep_test.h"

#include <stdio.h>

static void add(ep_topk_t *t, const char *s, uint64_t n)
{
    ep_topk_add(t, s, strlen(s), n);
}

static void test_topk_exact(void)
{
    ep_topk_t *t = ep_malloc(sizeof(*t));
    ep_topk_item_t it[3];

    ep_topk_init(t, 10);
    add(t, "/home", 5);
    add(t, "/cart", 9);
    add(t, "/about", 1);
    add(t, "/home", 5);
    EP_ASSERT_EQ(ep_topk_top(t, it, 3), 3);
    EP_ASSERT_STR_EQ(it[0].name, "/home");
    EP_ASSERT_EQ(it[0].count, 10);
    EP_ASSERT_EQ(it[0].error, 0);
    EP_ASSERT_STR_EQ(it[1].name, "/cart");
    EP_ASSERT_STR_EQ(it[2].name, "/about");
    ep_free(t);
}

static void test_topk_heavy_hitters(void)
{
    ep_topk_t *t = ep_malloc(sizeof(*t));
    ep_topk_item_t it[5];
    char name[32];

    /* 5 heavy users (1000 events each) hidden among 50,000 users seen once. */
    ep_topk_init(t, 64);
    for (int i = 0; i < 50000; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        add(t, name, 1);
        if (i % 50 == 0) {
            snprintf(name, sizeof(name), "heavy%d", (i / 50) % 5);
            add(t, name, 5);
        }
    }
    EP_ASSERT_EQ(ep_topk_top(t, it, 5), 5);
    for (int k = 0; k < 5; k++) {
        EP_ASSERT(strncmp(it[k].name, EP_STRLIT("heavy")) == 0);
        /* count over-estimates by at most error. */
        EP_ASSERT(it[k].count >= 1000 && it[k].count - it[k].error <= 1000);
    }
    ep_free(t);
}

static void test_topk_merge_and_serialize(void)
{
    ep_topk_t *a = ep_malloc(sizeof(*a)), *b = ep_malloc(sizeof(*b)), *r = ep_malloc(sizeof(*r));
    ep_topk_item_t it[4];
    ep_buf_t buf = EP_BUF_INIT;
    char longname[200];

    ep_topk_init(a, 8);
    ep_topk_init(b, 8);
    ep_topk_init(r, 8);
    add(a, "x", 3);
    add(a, "y", 1);
    add(b, "x", 2);
    add(b, "z", 7);
    memset(longname, 'p', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    add(b, longname, 1);
    ep_topk_merge(a, b);
    EP_ASSERT_EQ(ep_topk_top(a, it, 4), 4);
    EP_ASSERT_STR_EQ(it[0].name, "z");
    EP_ASSERT_EQ(it[0].count, 7);
    EP_ASSERT_STR_EQ(it[1].name, "x");
    EP_ASSERT_EQ(it[1].count, 5);
    EP_ASSERT_EQ(strlen(it[2].name) + strlen(it[3].name), 1 + EP_TOPK_NAME - 1);

    ep_topk_serialize(a, &buf);
    EP_ASSERT_EQ(ep_topk_merge_serialized(r, buf.data, buf.len), 0);
    EP_ASSERT_EQ(ep_topk_top(r, it, 4), 4);
    EP_ASSERT_STR_EQ(it[0].name, "z");
    EP_ASSERT_EQ(it[1].count, 5);
    EP_ASSERT_EQ(ep_topk_merge_serialized(r, buf.data, buf.len - 1), EP_EPARSE);
    EP_ASSERT_EQ(ep_topk_top(r, it, 1), 1);
    EP_ASSERT_EQ(it[0].count, 7);
    ep_buf_close(&buf);
    ep_free(a);
    ep_free(b);
    ep_free(r);
}

EP_TEST_LIST = {
    EP_TEST(test_topk_exact),
    EP_TEST(test_topk_heavy_hitters),
    EP_TEST(test_topk_merge_and_serialize),
    EP_TEST_END,
};
EP_TEST_MAIN()
