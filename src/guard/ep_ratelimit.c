/*
 * Token buckets kept as the time they are full again (see ep_ratelimit.h).
 */
#include "guard/ep_ratelimit.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"

#include <string.h>
#include <sys/random.h>

#define NS_PER_S INT64_C(1000000000)

void ep_rate_init(ep_rate_t *r, int64_t rate, int64_t burst)
{
    if (rate < 1) {
        rate = 1;
    }
    if (burst < 1) {
        burst = rate;
    }
    r->rate = rate;
    r->burst = burst;
    r->interval_ns = NS_PER_S / rate;
    if (r->interval_ns < 1) {
        r->interval_ns = 1;
    }
    r->tolerance_ns = burst * r->interval_ns;
}

static int64_t ceil_s(int64_t ns)
{
    return ns <= 0 ? 0 : (ns + NS_PER_S - 1) / NS_PER_S;
}

/* The decision for a bucket full at full_at: 0 with *next set, or EP_EAGAIN / EP_E2BIG. */
static int decide(const ep_rate_t *r, int64_t full_at, int64_t n, int64_t now,
                  ep_rate_result_t *res, int64_t *next)
{
    int64_t base = full_at > now ? full_at : now;
    int64_t cost = n * r->interval_ns;
    int64_t after = base + cost;

    if (res) {
        res->limit = r->burst;
    }
    if (n > r->burst) {
        if (res) {
            res->remaining = (r->tolerance_ns - (base - now)) / r->interval_ns;
            res->reset_s = ceil_s(base - now);
            res->retry_s = 0;
        }
        return EP_E2BIG;
    }
    if (after - now > r->tolerance_ns) {
        if (res) {
            res->remaining = (r->tolerance_ns - (base - now)) / r->interval_ns;
            res->reset_s = ceil_s(base - now);
            res->retry_s = ceil_s(after - r->tolerance_ns - now);
            if (res->retry_s < 1) {
                res->retry_s = 1;
            }
        }
        return EP_EAGAIN;
    }
    if (res) {
        res->remaining = (r->tolerance_ns - (after - now)) / r->interval_ns;
        res->reset_s = ceil_s(after - now);
        res->retry_s = 0;
    }
    *next = after;
    return 0;
}

int ep_rate_take(const ep_rate_t *r, _Atomic int64_t *full_at, int64_t n, int64_t now_ns,
                 ep_rate_result_t *res)
{
    int64_t cur = atomic_load_explicit(full_at, memory_order_relaxed), next = 0;

    for (;;) {
        int rc = decide(r, cur, n, now_ns, res, &next);
        if (rc != 0) {
            return rc;
        }
        if (atomic_compare_exchange_weak_explicit(full_at, &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            return 0;
        }
    }
}

/* ------------------------------------------------------------ per address */

void ep_rate_table_init(ep_rate_table_t *t)
{
    memset(t, 0, sizeof(*t));
    t->e = ep_calloc((size_t)EP_RATE_SETS * EP_RATE_WAYS, sizeof(ep_rate_entry_t));
    for (int i = 0; i < EP_RATE_STRIPES; i++) {
        pthread_mutex_init(&t->mu[i], NULL);
    }
    /* A secret seed, so that a client cannot pick addresses that all land in one set. */
    if (getrandom(&t->seed, sizeof(t->seed), 0) != (ssize_t)sizeof(t->seed)) {
        t->seed = (uint64_t)(uintptr_t)t ^ UINT64_C(0x9e3779b97f4a7c15);
    }
}

void ep_rate_table_close(ep_rate_table_t *t)
{
    if (t->e == NULL) {
        return;
    }
    for (int i = 0; i < EP_RATE_STRIPES; i++) {
        pthread_mutex_destroy(&t->mu[i]);
    }
    ep_free(t->e);
    t->e = NULL;
}

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

static size_t set_of(const ep_rate_table_t *t, const uint8_t addr[16])
{
    uint64_t a, b;

    memcpy(&a, addr, 8);
    memcpy(&b, addr + 8, 8);
    return (size_t)(mix(a ^ t->seed) ^ mix(b + t->seed)) % EP_RATE_SETS;
}

int ep_rate_table_take(ep_rate_table_t *t, const ep_rate_t *r, const uint8_t addr[16], int64_t n,
                       int64_t now_ns, ep_rate_result_t *res)
{
    size_t set = set_of(t, addr);
    ep_rate_entry_t *e = &t->e[set * EP_RATE_WAYS], *slot = NULL, *fullest = e;
    pthread_mutex_t *mu = &t->mu[set % EP_RATE_STRIPES];
    int64_t next = 0;
    int rc;

    pthread_mutex_lock(mu);
    for (int i = 0; i < EP_RATE_WAYS; i++) {
        if (e[i].full_at != 0 && memcmp(e[i].addr, addr, 16) == 0) {
            slot = &e[i];
            break;
        }
        if (e[i].full_at < fullest->full_at) {
            fullest = &e[i];
        }
    }
    rc = decide(r, slot ? slot->full_at : 0, n, now_ns, res, &next);
    if (rc == 0) {
        if (slot == NULL) {
            /* Its bucket was full (or forgotten): take the entry closest to full. */
            slot = fullest;
            if (slot->full_at > now_ns) {
                atomic_fetch_add_explicit(&t->replaced_busy, 1, memory_order_relaxed);
            }
            memcpy(slot->addr, addr, 16);
        }
        slot->full_at = next;
    }
    pthread_mutex_unlock(mu);
    return rc;
}
