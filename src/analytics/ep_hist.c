/*
 * Log-linear histogram: bucket = (power of two, 64ths of it). See ep_hist.h for
 * the error bound.
 */
#include "analytics/ep_hist.h"
#include "base/ep_error.h"
#include "analytics/ep_varint.h"

#include <string.h>

void ep_hist_init(ep_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

uint32_t ep_hist_index(uint64_t v)
{
    int k;

    if (v < EP_HIST_SUB) {
        return (uint32_t)v;
    }
    if (v > EP_HIST_MAX) {
        v = EP_HIST_MAX;
    }
    k = 63 - __builtin_clzll(v); /* v in [2^k, 2^(k+1)), k >= EP_HIST_SUB_BITS */
    return EP_HIST_SUB + (uint32_t)(k - EP_HIST_SUB_BITS) * EP_HIST_SUB +
           (uint32_t)((v >> (k - EP_HIST_SUB_BITS)) - EP_HIST_SUB);
}

void ep_hist_bucket_range(uint32_t idx, uint64_t *lo, uint64_t *hi)
{
    uint32_t k, sub;

    if (idx < EP_HIST_SUB) {
        *lo = *hi = idx;
        return;
    }
    k = (idx - EP_HIST_SUB) / EP_HIST_SUB + EP_HIST_SUB_BITS;
    sub = (idx - EP_HIST_SUB) % EP_HIST_SUB;
    *lo = ((uint64_t)EP_HIST_SUB + sub) << (k - EP_HIST_SUB_BITS);
    *hi = *lo + (1ull << (k - EP_HIST_SUB_BITS)) - 1;
}

void ep_hist_record_n(ep_hist_t *h, uint64_t v, uint64_t n)
{
    if (n == 0) {
        return;
    }
    if (v > EP_HIST_MAX) {
        v = EP_HIST_MAX;
        h->clamped += n;
    }
    h->b[ep_hist_index(v)] += n;
    h->count += n;
    h->sum += v * n;
    if (v < h->min) {
        h->min = v;
    }
    if (v > h->max) {
        h->max = v;
    }
}

void ep_hist_record(ep_hist_t *h, uint64_t v)
{
    ep_hist_record_n(h, v, 1);
}

uint64_t ep_hist_percentile(const ep_hist_t *h, double q)
{
    uint64_t rank, seen = 0;

    if (h->count == 0) {
        return 0;
    }
    if (q <= 0.0) {
        return h->min;
    }
    if (q >= 1.0) {
        return h->max;
    }
    /* The smallest value with at least ceil(q * count) values at or below it. */
    rank = (uint64_t)(q * (double)h->count);
    if ((double)rank < q * (double)h->count) {
        rank++;
    }
    if (rank == 0) {
        rank = 1;
    }
    for (uint32_t i = 0; i < EP_HIST_BUCKETS; i++) {
        seen += h->b[i];
        if (seen >= rank) {
            uint64_t lo, hi, mid;
            ep_hist_bucket_range(i, &lo, &hi);
            mid = lo + (hi - lo + 1) / 2;
            if (hi == lo) {
                mid = lo;
            }
            if (mid < h->min) {
                mid = h->min;
            }
            if (mid > h->max) {
                mid = h->max;
            }
            return mid;
        }
    }
    return h->max;
}

double ep_hist_mean(const ep_hist_t *h)
{
    return h->count ? (double)h->sum / (double)h->count : 0.0;
}

void ep_hist_merge(ep_hist_t *dst, const ep_hist_t *src)
{
    if (src->count == 0) {
        return;
    }
    for (uint32_t i = 0; i < EP_HIST_BUCKETS; i++) {
        dst->b[i] = ep_sat_add(dst->b[i], src->b[i]);
    }
    dst->count = ep_sat_add(dst->count, src->count);
    dst->sum = ep_sat_add(dst->sum, src->sum);
    dst->clamped = ep_sat_add(dst->clamped, src->clamped);
    if (src->min < dst->min) {
        dst->min = src->min;
    }
    if (src->max > dst->max) {
        dst->max = src->max;
    }
}

void ep_hist_serialize(const ep_hist_t *h, ep_buf_t *out)
{
    uint32_t nz = 0, prev = 0;

    for (uint32_t i = 0; i < EP_HIST_BUCKETS; i++) {
        nz += h->b[i] != 0;
    }
    ep_buf_putc(out, EP_HIST_VERSION);
    ep_varint_put(out, h->count);
    ep_varint_put(out, h->sum);
    ep_varint_put(out, h->count ? h->min : 0);
    ep_varint_put(out, h->max);
    ep_varint_put(out, h->clamped);
    ep_varint_put(out, nz);
    /* Bucket indexes as gaps from the previous one: mostly one byte each. */
    for (uint32_t i = 0; i < EP_HIST_BUCKETS; i++) {
        if (h->b[i]) {
            ep_varint_put(out, i - prev);
            ep_varint_put(out, h->b[i]);
            prev = i;
        }
    }
}

int ep_hist_merge_serialized(ep_hist_t *h, const void *buf, size_t len)
{
    ep_rd_t r;
    const unsigned char *v;
    uint64_t count, sum, mn, mx, clamped, nz, total = 0, idx = 0;
    ep_rd_t again;

    ep_rd_init(&r, buf, len);
    v = ep_rd_bytes(&r, 1);
    if (v == NULL || v[0] != EP_HIST_VERSION) {
        return EP_EPARSE;
    }
    count = ep_rd_varint(&r);
    sum = ep_rd_varint(&r);
    mn = ep_rd_varint(&r);
    mx = ep_rd_varint(&r);
    clamped = ep_rd_varint(&r);
    nz = ep_rd_varint(&r);
    if (r.err || nz > EP_HIST_BUCKETS || mx > EP_HIST_MAX || mn > mx || clamped > count) {
        return EP_EPARSE;
    }
    /* Validate everything first, so a bad input leaves h unchanged. */
    again = r;
    for (uint64_t k = 0; k < nz; k++) {
        uint64_t gap = ep_rd_varint(&r), n = ep_rd_varint(&r);
        if (r.err || (k > 0 && gap == 0) || gap >= EP_HIST_BUCKETS || n == 0) {
            return EP_EPARSE;
        }
        idx += gap;
        if (idx >= EP_HIST_BUCKETS || total + n < total) {
            return EP_EPARSE;
        }
        total += n;
    }
    if (total != count || r.p != r.end) {
        return EP_EPARSE;
    }
    if (count == 0) {
        return 0;
    }
    idx = 0;
    for (uint64_t k = 0; k < nz; k++) {
        idx += ep_rd_varint(&again);
        h->b[idx] = ep_sat_add(h->b[idx], ep_rd_varint(&again));
    }
    h->count = ep_sat_add(h->count, count);
    h->sum = ep_sat_add(h->sum, sum);
    h->clamped = ep_sat_add(h->clamped, clamped);
    if (mn < h->min) {
        h->min = mn;
    }
    if (mx > h->max) {
        h->max = mx;
    }
    return 0;
}
