/* Unit tests of ep_redeliver: due order, next_due, max, selective drop. */
#include "queue/ep_redeliver.h"
#include "ep_test.h"

static ep_event_t *ev(const char *id, const char *source)
{
    return ep_event_create(id, source, "t", NULL, "x", 1, NULL, 0, 1);
}

static void test_take_due_in_order(void)
{
    ep_redeliver_t r = EP_REDELIVER_INIT;
    ep_event_t *a[3] = {ev("a", "s"), ev("b", "s"), ev("c", "s")}, *d[1] = {ev("d", "s")};
    ep_event_t *out[8];
    int64_t next = INT64_MAX;

    ep_redeliver_add(&r, a, 3, 100);
    ep_redeliver_add(&r, d, 1, 50);
    EP_ASSERT_EQ(ep_redeliver_take_due(&r, 10, out, 8, &next), 0);
    EP_ASSERT_EQ(next, 50);
    next = INT64_MAX;
    EP_ASSERT_EQ(ep_redeliver_take_due(&r, 60, out, 8, &next), 1);
    EP_ASSERT_STR_EQ(out[0]->id.p, "d");
    EP_ASSERT_EQ(out[0]->due_ms, 0);
    EP_ASSERT_EQ(next, 100);
    ep_event_destroy(out[0]);
    next = INT64_MAX;
    EP_ASSERT_EQ(ep_redeliver_take_due(&r, 100, out, 2, &next), 2); /* max respected */
    EP_ASSERT_STR_EQ(out[0]->id.p, "a");
    EP_ASSERT_STR_EQ(out[1]->id.p, "b");
    ep_event_destroy(out[0]);
    ep_event_destroy(out[1]);
    EP_ASSERT_EQ(ep_redeliver_take_due(&r, 100, out, 8, &next), 1);
    EP_ASSERT_STR_EQ(out[0]->id.p, "c");
    ep_event_destroy(out[0]);
    EP_ASSERT(r.head == NULL && r.tail == NULL);
    /* The list works again after being emptied. */
    d[0] = ev("e", "s");
    ep_redeliver_add(&r, d, 1, 0);
    EP_ASSERT_EQ(ep_redeliver_take_due(&r, 0, out, 8, &next), 1);
    ep_event_destroy(out[0]);
}

static int from_source(const ep_event_t *e, void *arg)
{
    return strcmp(e->source.p, (const char *)arg) == 0;
}

static void test_drop(void)
{
    ep_redeliver_t r = EP_REDELIVER_INIT;
    ep_event_t *a[4] = {ev("1", "p0"), ev("2", "p1"), ev("3", "p0"), ev("4", "p1")};
    ep_event_t *out[8];
    int64_t next = INT64_MAX;

    ep_redeliver_add(&r, a, 4, 0);
    EP_ASSERT_EQ(ep_redeliver_drop(&r, from_source, "p1"), 2);
    EP_ASSERT_EQ(ep_redeliver_take_due(&r, 0, out, 8, &next), 2);
    EP_ASSERT_STR_EQ(out[0]->id.p, "1");
    EP_ASSERT_STR_EQ(out[1]->id.p, "3");
    ep_redeliver_add(&r, out, 2, 5);
    EP_ASSERT_EQ(ep_redeliver_drop(&r, NULL, NULL), 2); /* destroys everything left */
    EP_ASSERT(r.head == NULL && r.tail == NULL);
}

EP_TEST_LIST = {
    EP_TEST(test_take_due_in_order),
    EP_TEST(test_drop),
    EP_TEST_END,
};
EP_TEST_MAIN()
