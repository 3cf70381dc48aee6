/*
 * Fuzz target: arbitrary bytes -> ep_analytics_merge_delta_ex, what POST
 * /analytics/merge runs (src/roles/ep_analytics_role.c). One aggregate lives
 * across inputs, so merges pile up as they would on a long-running analytics
 * role. Invariants:
 *   - a refused delta (malformed, implausible, too large) changes nothing:
 *     the total and the merged count stay, the refusal says what is wrong;
 *   - an accepted delta adds at most EP_ANALYTICS_DELTA_MAX_EVENTS events and
 *     the total never goes down (counters saturate, never wrap);
 *   - the summary of the aggregate still renders.
 * Any broken invariant aborts.
 */
#include "analytics/ep_analytics.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_analytics_merge: %s:%d: %s\n", __FILE__, __LINE__, #c);          \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int64_t fixed_clock(void *arg)
{
    (void)arg;
    return INT64_C(1700000000000000);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ep_analytics_t *a;
    static unsigned runs;
    ep_analytics_stats_t before, after;
    ep_parse_err_t err;
    int rc;

    if (a == NULL) {
        a = ep_analytics_create();
        ep_analytics_set_clock(a, fixed_clock, NULL);
    }
    ep_analytics_stats(a, &before);
    rc = ep_analytics_merge_delta_ex(a, data, size, &err);
    ep_analytics_stats(a, &after);
    CHECK(rc == 0 || rc == EP_EEXIST || rc == EP_EPARSE || rc == EP_EVALIDATE);
    if (rc != 0) {
        CHECK(after.total_events == before.total_events);
        CHECK(after.batches == before.batches);
        CHECK(after.deltas_merged == before.deltas_merged);
        CHECK(rc == EP_EEXIST || after.deltas_rejected == before.deltas_rejected + 1);
        CHECK(rc == EP_EEXIST || err.msg[0] != '\0');
        return 0;
    }
    CHECK(size <= EP_ANALYTICS_DELTA_MAX_BYTES);
    CHECK(after.deltas_merged == before.deltas_merged + 1);
    CHECK(after.total_events >= before.total_events);
    CHECK(after.total_events - before.total_events <= EP_ANALYTICS_DELTA_MAX_EVENTS);
    CHECK(after.batches >= before.batches);
    if (++runs % 64 == 1) {
        ep_buf_t b = EP_BUF_INIT;
        ep_analytics_summary_json(a, &b);
        CHECK(b.len > 2 && b.data[0] == '{');
        ep_buf_close(&b);
    }
    return 0;
}
