/*
 * Space-saving heavy hitters. Structure of arrays so the per-value lookup and
 * the smallest-counter search scan contiguous 64-bit words.
 */
#include "analytics/ep_topk.h"
#include "base/ep_error.h"
#include "analytics/ep_hll.h"
#include "base/ep_mem.h"
#include "analytics/ep_varint.h"

#include <stdlib.h>
#include <string.h>

void ep_topk_init(ep_topk_t *t, uint32_t cap)
{
    t->cap = cap < 1 ? 1 : cap > EP_TOPK_MAX ? EP_TOPK_MAX : cap;
    t->n = 0;
}

static void set_name(ep_topk_t *t, uint32_t i, const char *s, size_t len)
{
    if (len > EP_TOPK_NAME - 1) {
        len = EP_TOPK_NAME - 1;
    }
    memcpy(t->name[i], s, len);
    t->name[i][len] = '\0';
}

static uint32_t find(const ep_topk_t *t, uint64_t h)
{
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->hash[i] == h) {
            return i;
        }
    }
    return UINT32_MAX;
}

static uint32_t smallest(const ep_topk_t *t)
{
    uint32_t m = 0;

    for (uint32_t i = 1; i < t->n; i++) {
        if (t->count[i] < t->count[m]) {
            m = i;
        }
    }
    return m;
}

/* Adds a value known by hash; returns its counter. */
static uint32_t add_hash(ep_topk_t *t, uint64_t h, const char *s, size_t len, uint64_t n,
                         uint64_t err)
{
    uint32_t i = find(t, h);

    if (i != UINT32_MAX) {
        t->count[i] = ep_sat_add(t->count[i], n);
        t->error[i] = ep_sat_add(t->error[i], err);
        return i;
    }
    if (t->n < t->cap) {
        i = t->n++;
        t->count[i] = n;
        t->error[i] = err;
    } else {
        i = smallest(t);
        t->error[i] = t->count[i] + err;
        t->count[i] = ep_sat_add(t->count[i], n);
    }
    t->hash[i] = h;
    set_name(t, i, s, len);
    return i;
}

void ep_topk_add(ep_topk_t *t, const char *s, size_t len, uint64_t n)
{
    add_hash(t, ep_hash64(s, len, 0x7470), s, len, n, 0);
}

/* Insertion sort of indexes (n <= 128), thread-safe unlike a qsort with a global. */
static void sort_indexes(const ep_topk_t *t, uint32_t *idx)
{
    for (uint32_t i = 0; i < t->n; i++) {
        idx[i] = i;
    }
    for (uint32_t i = 1; i < t->n; i++) {
        uint32_t v = idx[i], j = i;
        while (j > 0) {
            uint32_t u = idx[j - 1];
            int before = t->count[v] != t->count[u] ? t->count[v] > t->count[u]
                                                    : strcmp(t->name[v], t->name[u]) < 0;
            if (!before) {
                break;
            }
            idx[j] = u;
            j--;
        }
        idx[j] = v;
    }
}

size_t ep_topk_top(const ep_topk_t *t, ep_topk_item_t *out, size_t k)
{
    uint32_t idx[EP_TOPK_MAX];
    size_t n = 0;

    sort_indexes(t, idx);
    for (uint32_t i = 0; i < t->n && n < k; i++) {
        out[n].name = t->name[idx[i]];
        out[n].count = t->count[idx[i]];
        out[n].error = t->error[idx[i]];
        n++;
    }
    return n;
}

void ep_topk_merge(ep_topk_t *dst, const ep_topk_t *src)
{
    ep_topk_t *u = ep_malloc(sizeof(*u));
    uint64_t dmin = 0, smin = 0;
    uint32_t idx[EP_TOPK_MAX * 2];
    uint32_t n;

    if (src->n == 0) {
        ep_free(u);
        return;
    }
    if (dst->n == dst->cap) {
        dmin = dst->count[smallest(dst)];
    }
    if (src->n == src->cap) {
        smin = src->count[smallest(src)];
    }
    /* The union, with up to 2 * EP_TOPK_MAX values, in two halves of a scratch sketch. */
    {
        uint64_t ch[EP_TOPK_MAX * 2], cc[EP_TOPK_MAX * 2], ce[EP_TOPK_MAX * 2];
        const char *cn[EP_TOPK_MAX * 2];
        n = 0;
        for (uint32_t i = 0; i < dst->n; i++) {
            uint32_t j = find(src, dst->hash[i]);
            ch[n] = dst->hash[i];
            cc[n] = dst->count[i] + (j != UINT32_MAX ? src->count[j] : smin);
            ce[n] = dst->error[i] + (j != UINT32_MAX ? src->error[j] : smin);
            cn[n] = dst->name[i];
            n++;
        }
        for (uint32_t j = 0; j < src->n; j++) {
            if (find(dst, src->hash[j]) != UINT32_MAX) {
                continue;
            }
            ch[n] = src->hash[j];
            cc[n] = src->count[j] + dmin;
            ce[n] = src->error[j] + dmin;
            cn[n] = src->name[j];
            n++;
        }
        /* Keep the cap largest: selection by repeated max (n <= 256, cap <= 128). */
        for (uint32_t i = 0; i < n; i++) {
            idx[i] = i;
        }
        u->cap = dst->cap;
        u->n = 0;
        for (uint32_t k = 0; k < n && u->n < u->cap; k++) {
            uint32_t best = k;
            for (uint32_t i = k + 1; i < n; i++) {
                if (cc[idx[i]] > cc[idx[best]]) {
                    best = i;
                }
            }
            uint32_t tmp = idx[k];
            idx[k] = idx[best];
            idx[best] = tmp;
            u->hash[u->n] = ch[idx[k]];
            u->count[u->n] = cc[idx[k]];
            u->error[u->n] = ce[idx[k]];
            set_name(u, u->n, cn[idx[k]], strlen(cn[idx[k]]));
            u->n++;
        }
    }
    memcpy(dst, u, sizeof(*u));
    ep_free(u);
}

void ep_topk_serialize(const ep_topk_t *t, ep_buf_t *out)
{
    ep_buf_putc(out, EP_TOPK_VERSION);
    ep_varint_put(out, t->cap);
    ep_varint_put(out, t->n);
    for (uint32_t i = 0; i < t->n; i++) {
        size_t len = strlen(t->name[i]);
        ep_buf_append(out, &t->hash[i], 8);
        ep_varint_put(out, t->count[i]);
        ep_varint_put(out, t->error[i]);
        ep_varint_put(out, len);
        ep_buf_append(out, t->name[i], len);
    }
}

int ep_topk_merge_serialized(ep_topk_t *t, const void *buf, size_t len)
{
    ep_topk_t *s = ep_malloc(sizeof(*s));
    ep_rd_t r;
    const unsigned char *v;
    uint64_t cap, n;

    ep_rd_init(&r, buf, len);
    v = ep_rd_bytes(&r, 1);
    cap = ep_rd_varint(&r);
    n = ep_rd_varint(&r);
    if (v == NULL || v[0] != EP_TOPK_VERSION || r.err || cap < 1 || cap > EP_TOPK_MAX || n > cap) {
        goto err;
    }
    s->cap = (uint32_t)cap;
    s->n = 0;
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *h = ep_rd_bytes(&r, 8);
        uint64_t c = ep_rd_varint(&r), e = ep_rd_varint(&r), l = ep_rd_varint(&r);
        const unsigned char *name = ep_rd_bytes(&r, l);
        if (r.err || l >= EP_TOPK_NAME || e > c || memchr(name, 0, l) != NULL) {
            goto err;
        }
        memcpy(&s->hash[s->n], h, 8);
        if (find(s, s->hash[s->n]) != UINT32_MAX) {
            goto err;
        }
        s->count[s->n] = c;
        s->error[s->n] = e;
        set_name(s, s->n, (const char *)name, l);
        s->n++;
    }
    if (r.p != r.end) {
        goto err;
    }
    ep_topk_merge(t, s);
    ep_free(s);
    return 0;
err:
    ep_free(s);
    return EP_EPARSE;
}
