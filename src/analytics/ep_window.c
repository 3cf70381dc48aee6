/*
 * Per-second and per-minute rings of keyed counts. See ep_window.h.
 */
#include "analytics/ep_window.h"
#include "base/ep_error.h"
#include "analytics/ep_varint.h"

#include <string.h>

#define SEC_MASK (EP_WINDOW_SECONDS - 1)
#define MIN_MASK (EP_WINDOW_MINUTES - 1)
#define UNUSED   INT64_MIN

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static void slot_clear(ep_window_slot_t *s, int64_t t)
{
    s->t = t;
    s->total = 0;
    s->other[0] = s->other[1] = 0;
    s->n = 0;
}

uint64_t ep_window_key(uint64_t hash, int dim)
{
    uint64_t k = hash & ~3ull;
    return (k ? k : 4) | (uint64_t)dim;
}

static void slot_add_key(ep_window_slot_t *s, uint64_t key, uint64_t n)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->key[i] == key) {
            s->cnt[i] = ep_sat_add(s->cnt[i], n);
            return;
        }
    }
    if (s->n < EP_WINDOW_SLOT_KEYS) {
        s->key[s->n] = key;
        s->cnt[s->n++] = n;
        return;
    }
    s->other[(key & 3) - 1] = ep_sat_add(s->other[(key & 3) - 1], n);
}

/* The slot for time t in a ring, rolled over when it holds an older period; NULL when newer. */
static ep_window_slot_t *slot_for(ep_window_slot_t *ring, uint32_t mask, int64_t period, int64_t t)
{
    ep_window_slot_t *s = &ring[(uint64_t)floor_div(t, period) & mask];

    if (s->t == t) {
        return s;
    }
    if (s->t != UNUSED && s->t > t) {
        return NULL;
    }
    slot_clear(s, t);
    return s;
}

void ep_window_init(ep_window_t *w)
{
    for (int i = 0; i < EP_WINDOW_SECONDS; i++) {
        slot_clear(&w->sec[i], UNUSED);
    }
    for (int i = 0; i < EP_WINDOW_MINUTES; i++) {
        slot_clear(&w->min[i], UNUSED);
    }
}

static void slot_add(ep_window_slot_t *s, uint64_t tk, uint64_t sk, uint64_t n)
{
    s->total = ep_sat_add(s->total, n);
    slot_add_key(s, tk, n);
    slot_add_key(s, sk, n);
}

void ep_window_add(ep_window_t *w, int64_t now_s, uint64_t type_key, uint64_t source_key,
                   uint64_t n)
{
    uint64_t tk = ep_window_key(type_key, EP_WINDOW_DIM_TYPE);
    uint64_t sk = ep_window_key(source_key, EP_WINDOW_DIM_SOURCE);
    ep_window_slot_t *s;

    if ((s = slot_for(w->sec, SEC_MASK, 1, now_s)) != NULL) {
        slot_add(s, tk, sk, n);
    }
    if ((s = slot_for(w->min, MIN_MASK, 60, floor_div(now_s, 60) * 60)) != NULL) {
        slot_add(s, tk, sk, n);
    }
}

uint64_t ep_window_sum(const ep_window_t *w, int64_t now_s, int seconds)
{
    uint64_t sum = 0;

    if (seconds > EP_WINDOW_SECONDS) {
        seconds = EP_WINDOW_SECONDS;
    }
    for (int64_t t = now_s - seconds + 1; t <= now_s; t++) {
        const ep_window_slot_t *s = &w->sec[(uint64_t)t & SEC_MASK];
        if (s->t == t) {
            sum += s->total;
        }
    }
    return sum;
}

int ep_window_series_check(int window_s, int bucket_s)
{
    if (bucket_s <= 0 || window_s <= 0 || window_s % bucket_s != 0) {
        return EP_EINVAL;
    }
    if (bucket_s % 60 == 0) {
        if (window_s > 3600) {
            return EP_EINVAL;
        }
    } else if (window_s > 900) {
        return EP_EINVAL;
    }
    if (window_s / bucket_s > EP_WINDOW_MAX_POINTS) {
        return EP_EINVAL;
    }
    return window_s / bucket_s;
}

static uint64_t slot_value(const ep_window_slot_t *s, int dim, uint64_t key)
{
    if (dim == EP_WINDOW_DIM_TOTAL) {
        return s->total;
    }
    if (key == EP_WINDOW_KEY_OTHER) {
        return s->other[dim - 1];
    }
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->key[i] == key) {
            return s->cnt[i];
        }
    }
    return 0;
}

/*
 * Calls fn for every in-range slot of the ring a series of (window_s, bucket_s)
 * reads, with the bucket index it falls in.
 */
typedef void (*visit_cb)(void *arg, const ep_window_slot_t *s, int bucket);

static int visit(const ep_window_t *w, int64_t now_s, int window_s, int bucket_s, visit_cb fn,
                 void *arg, int64_t *first_s)
{
    int n = ep_window_series_check(window_s, bucket_s);
    int64_t first;
    int minutes;

    if (n < 0) {
        return n;
    }
    first = floor_div(now_s, bucket_s) * bucket_s - (int64_t)(n - 1) * bucket_s;
    if (first_s) {
        *first_s = first;
    }
    minutes = bucket_s % 60 == 0;
    for (int b = 0; b < n; b++) {
        int64_t start = first + (int64_t)b * bucket_s;
        for (int64_t t = start; t < start + bucket_s; t += minutes ? 60 : 1) {
            const ep_window_slot_t *s = minutes ? &w->min[(uint64_t)floor_div(t, 60) & MIN_MASK]
                                                : &w->sec[(uint64_t)t & SEC_MASK];
            if (s->t == t) {
                fn(arg, s, b);
            }
        }
    }
    return n;
}

typedef struct series_ctx_s {
    int dim;
    uint64_t key;
    uint64_t *out;
} series_ctx_t;

static void on_series(void *arg, const ep_window_slot_t *s, int bucket)
{
    series_ctx_t *c = arg;
    c->out[bucket] += slot_value(s, c->dim, c->key);
}

int ep_window_series(const ep_window_t *w, int64_t now_s, int window_s, int bucket_s, int dim,
                     uint64_t key, uint64_t *out, int64_t *first_s)
{
    series_ctx_t c = {dim, key, out};
    int n = ep_window_series_check(window_s, bucket_s);

    if (n < 0 || dim < EP_WINDOW_DIM_TOTAL || dim > EP_WINDOW_DIM_SOURCE) {
        return EP_EINVAL;
    }
    memset(out, 0, sizeof(*out) * (size_t)n);
    return visit(w, now_s, window_s, bucket_s, on_series, &c, first_s);
}

typedef struct keys_ctx_s {
    int dim;
    uint64_t *keys;
    size_t max, n;
    int has_other;
} keys_ctx_t;

static void on_keys(void *arg, const ep_window_slot_t *s, int bucket)
{
    keys_ctx_t *c = arg;

    if (s->other[c->dim - 1]) {
        c->has_other = 1;
    }
    for (uint32_t i = 0; i < s->n; i++) {
        size_t j;
        if ((s->key[i] & 3) != (uint64_t)c->dim) {
            continue;
        }
        for (j = 0; j < c->n && c->keys[j] != s->key[i]; j++) {
        }
        if (j == c->n) {
            if (c->n < c->max) {
                c->keys[c->n++] = s->key[i];
            } else {
                c->has_other = 1;
            }
        }
    }
}

int ep_window_keys(const ep_window_t *w, int64_t now_s, int window_s, int bucket_s, int dim,
                   uint64_t *keys, size_t max, int *has_other)
{
    keys_ctx_t c = {dim, keys, max, 0, 0};
    int rc;

    if (dim != EP_WINDOW_DIM_TYPE && dim != EP_WINDOW_DIM_SOURCE) {
        return EP_EINVAL;
    }
    rc = visit(w, now_s, window_s, bucket_s, on_keys, &c, NULL);
    if (rc < 0) {
        return rc;
    }
    *has_other = c.has_other;
    return (int)c.n;
}

static void slot_merge(ep_window_slot_t *ring, uint32_t mask, int64_t period,
                       const ep_window_slot_t *src)
{
    ep_window_slot_t *d;

    if (src->t == UNUSED || (d = slot_for(ring, mask, period, src->t)) == NULL) {
        return;
    }
    d->total = ep_sat_add(d->total, src->total);
    d->other[0] = ep_sat_add(d->other[0], src->other[0]);
    d->other[1] = ep_sat_add(d->other[1], src->other[1]);
    for (uint32_t i = 0; i < src->n; i++) {
        slot_add_key(d, src->key[i], src->cnt[i]);
    }
}

void ep_window_merge(ep_window_t *dst, const ep_window_t *src)
{
    for (int i = 0; i < EP_WINDOW_SECONDS; i++) {
        slot_merge(dst->sec, SEC_MASK, 1, &src->sec[i]);
    }
    for (int i = 0; i < EP_WINDOW_MINUTES; i++) {
        slot_merge(dst->min, MIN_MASK, 60, &src->min[i]);
    }
}

int ep_window_is_empty(const ep_window_t *w)
{
    for (int i = 0; i < EP_WINDOW_MINUTES; i++) {
        if (w->min[i].t != UNUSED) {
            return 0;
        }
    }
    return 1;
}

static void ring_serialize(const ep_window_slot_t *ring, int n, ep_buf_t *out)
{
    uint64_t used = 0;

    for (int i = 0; i < n; i++) {
        used += ring[i].t != UNUSED;
    }
    ep_varint_put(out, used);
    for (int i = 0; i < n; i++) {
        const ep_window_slot_t *s = &ring[i];
        if (s->t == UNUSED) {
            continue;
        }
        ep_varint_put(out, (uint64_t)s->t);
        ep_varint_put(out, s->total);
        ep_varint_put(out, s->other[0]);
        ep_varint_put(out, s->other[1]);
        ep_varint_put(out, s->n);
        for (uint32_t k = 0; k < s->n; k++) {
            ep_buf_append(out, &s->key[k], 8);
            ep_varint_put(out, s->cnt[k]);
        }
    }
}

void ep_window_serialize(const ep_window_t *w, ep_buf_t *out)
{
    ep_buf_putc(out, EP_WINDOW_VERSION);
    ring_serialize(w->sec, EP_WINDOW_SECONDS, out);
    ring_serialize(w->min, EP_WINDOW_MINUTES, out);
}

/* Reads one ring; merges it into w when apply is set (a first pass only validates). */
static int ring_read(ep_rd_t *r, ep_window_t *w, int minutes, int apply)
{
    uint64_t used = ep_rd_varint(r);

    if (r->err || used > (minutes ? EP_WINDOW_MINUTES : EP_WINDOW_SECONDS)) {
        return EP_EPARSE;
    }
    for (uint64_t i = 0; i < used; i++) {
        ep_window_slot_t s;
        uint64_t t = ep_rd_varint(r);
        s.total = ep_rd_varint(r);
        s.other[0] = ep_rd_varint(r);
        s.other[1] = ep_rd_varint(r);
        uint64_t n = ep_rd_varint(r);
        if (r->err || n > EP_WINDOW_SLOT_KEYS || t > (uint64_t)INT64_MAX / 2 ||
            (minutes && t % 60 != 0)) {
            return EP_EPARSE;
        }
        s.t = (int64_t)t;
        s.n = (uint32_t)n;
        for (uint64_t k = 0; k < n; k++) {
            const unsigned char *kp = ep_rd_bytes(r, 8);
            if (kp == NULL) {
                return EP_EPARSE;
            }
            memcpy(&s.key[k], kp, 8);
            s.cnt[k] = ep_rd_varint(r);
            if (r->err || (s.key[k] & 3) == 0 || (s.key[k] & 3) == 3 || (s.key[k] & ~3ull) == 0) {
                return EP_EPARSE;
            }
        }
        if (apply) {
            if (minutes) {
                slot_merge(w->min, MIN_MASK, 60, &s);
            } else {
                slot_merge(w->sec, SEC_MASK, 1, &s);
            }
        }
    }
    return 0;
}

int ep_window_merge_serialized(ep_window_t *w, const void *buf, size_t len)
{
    for (int apply = 0; apply <= 1; apply++) {
        ep_rd_t r;
        const unsigned char *v;

        ep_rd_init(&r, buf, len);
        v = ep_rd_bytes(&r, 1);
        if (v == NULL || v[0] != EP_WINDOW_VERSION) {
            return EP_EPARSE;
        }
        if (ring_read(&r, w, 0, apply) != 0 || ring_read(&r, w, 1, apply) != 0 || r.p != r.end) {
            return EP_EPARSE;
        }
    }
    return 0;
}
