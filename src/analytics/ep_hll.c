/*
 * HyperLogLog with a 64-bit hash: the top EP_HLL_P bits choose the register,
 * the rank is 1 + the number of leading zeros of the remaining 50 bits.
 */
#include "analytics/ep_hll.h"
#include "base/ep_error.h"

#include <math.h>
#include <string.h>

#define Q          (64 - EP_HLL_P) /* bits left for the rank */
#define ENC_DENSE  0
#define ENC_SPARSE 1

/* Odd constants with well spread bits (chosen for this hash, not taken from one). */
#define K1 0x9e3779b97f4a7c15ull
#define K2 0xc2b2ae3d27d4eb4full
#define K3 0x165667b19e3779f9ull
#define K4 0xd6e8feb86659fd93ull

static inline uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* Final avalanche: every input bit affects every output bit. */
static inline uint64_t finish(uint64_t h)
{
    h ^= h >> 31;
    h *= K4;
    h ^= h >> 29;
    h *= K2;
    h ^= h >> 32;
    return h;
}

uint64_t ep_hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = seed ^ K3 ^ ((uint64_t)n * K1);
    uint64_t tail = 0;

    while (n >= 8) {
        uint64_t v = load64(s) * K2;
        v = rotl(v, 31) * K1;
        h = rotl(h ^ v, 27) * K4 + K3;
        s += 8;
        n -= 8;
    }
    for (size_t i = 0; i < n; i++) {
        tail |= (uint64_t)s[i] << (8 * i);
    }
    h ^= rotl(tail * K1, 33) * K2;
    return finish(h);
}

void ep_hll_init(ep_hll_t *h)
{
    memset(h->reg, 0, sizeof(h->reg));
}

void ep_hll_add_hash(ep_hll_t *h, uint64_t hash)
{
    uint32_t idx = (uint32_t)(hash >> Q);
    uint64_t rest = hash << EP_HLL_P;
    uint8_t rank = rest == 0 ? (uint8_t)(Q + 1) : (uint8_t)(__builtin_clzll(rest) + 1);

    if (rank > Q + 1) {
        rank = Q + 1;
    }
    if (rank > h->reg[idx]) {
        h->reg[idx] = rank;
    }
}

void ep_hll_add(ep_hll_t *h, const void *p, size_t n)
{
    ep_hll_add_hash(h, ep_hash64(p, n, 0));
}

int ep_hll_is_empty(const ep_hll_t *h)
{
    for (uint32_t i = 0; i < EP_HLL_M; i++) {
        if (h->reg[i]) {
            return 0;
        }
    }
    return 1;
}

/* Ertl (2017), "New cardinality estimation algorithms for HyperLogLog sketches", eq. for sigma. */
static double sigma(double x)
{
    double y = 1.0, z = x, zp;

    if (x == 1.0) {
        return INFINITY;
    }
    do {
        x *= x;
        zp = z;
        z += x * y;
        y += y;
    } while (z != zp);
    return z;
}

/* Same paper, tau: the correction for registers at the maximal rank. */
static double tau(double x)
{
    double y = 1.0, z, zp;

    if (x == 0.0 || x == 1.0) {
        return 0.0;
    }
    z = 1.0 - x;
    do {
        x = sqrt(x);
        zp = z;
        y *= 0.5;
        z -= (1.0 - x) * (1.0 - x) * y;
    } while (z != zp);
    return z / 3.0;
}

double ep_hll_estimate(const ep_hll_t *h)
{
    uint32_t c[Q + 2] = {0};
    const double m = (double)EP_HLL_M;
    double z;

    for (uint32_t i = 0; i < EP_HLL_M; i++) {
        c[h->reg[i]]++;
    }
    if (c[0] == EP_HLL_M) {
        return 0.0;
    }
    /*
     * Linear counting while empty registers are plentiful: it is the more
     * accurate estimator below ~0.7 m distinct values (HLL++'s observation).
     */
    if (c[0] > 0) {
        double lc = m * log(m / (double)c[0]);
        if (lc < 0.7 * m) {
            return lc;
        }
    }
    z = m * tau(1.0 - (double)c[Q + 1] / m);
    for (int k = Q; k >= 1; k--) {
        z = 0.5 * (z + (double)c[k]);
    }
    z += m * sigma((double)c[0] / m);
    return (0.5 / log(2.0)) * m * m / z;
}

void ep_hll_merge(ep_hll_t *dst, const ep_hll_t *src)
{
    for (uint32_t i = 0; i < EP_HLL_M; i++) {
        if (src->reg[i] > dst->reg[i]) {
            dst->reg[i] = src->reg[i];
        }
    }
}

void ep_hll_serialize(const ep_hll_t *h, ep_buf_t *out)
{
    uint32_t nz = 0;
    unsigned char hdr[3] = {EP_HLL_VERSION, EP_HLL_P, ENC_DENSE};

    for (uint32_t i = 0; i < EP_HLL_M; i++) {
        nz += h->reg[i] != 0;
    }
    if (nz * 3 < EP_HLL_M) {
        unsigned char cnt[2] = {(unsigned char)(nz & 0xff), (unsigned char)(nz >> 8)};
        hdr[2] = ENC_SPARSE;
        ep_buf_append(out, hdr, 3);
        ep_buf_append(out, cnt, 2);
        ep_buf_reserve(out, (size_t)nz * 3);
        for (uint32_t i = 0; i < EP_HLL_M; i++) {
            if (h->reg[i]) {
                unsigned char e[3] = {(unsigned char)(i & 0xff), (unsigned char)(i >> 8),
                                      h->reg[i]};
                ep_buf_append(out, e, 3);
            }
        }
        return;
    }
    ep_buf_append(out, hdr, 3);
    ep_buf_append(out, h->reg, EP_HLL_M);
}

int ep_hll_merge_serialized(ep_hll_t *h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint32_t nz;

    if (len < 3 || p[0] != EP_HLL_VERSION || p[1] != EP_HLL_P) {
        return EP_EPARSE;
    }
    if (p[2] == ENC_DENSE) {
        if (len != 3 + EP_HLL_M) {
            return EP_EPARSE;
        }
        for (uint32_t i = 0; i < EP_HLL_M; i++) {
            if (p[3 + i] > Q + 1) {
                return EP_EPARSE;
            }
        }
        for (uint32_t i = 0; i < EP_HLL_M; i++) {
            if (p[3 + i] > h->reg[i]) {
                h->reg[i] = p[3 + i];
            }
        }
        return 0;
    }
    if (p[2] != ENC_SPARSE || len < 5) {
        return EP_EPARSE;
    }
    nz = (uint32_t)p[3] | ((uint32_t)p[4] << 8);
    if (len != 5 + (size_t)nz * 3) {
        return EP_EPARSE;
    }
    for (uint32_t k = 0; k < nz; k++) {
        const unsigned char *e = p + 5 + k * 3;
        uint32_t i = (uint32_t)e[0] | ((uint32_t)e[1] << 8);
        if (i >= EP_HLL_M || e[2] > Q + 1) {
            return EP_EPARSE;
        }
    }
    for (uint32_t k = 0; k < nz; k++) {
        const unsigned char *e = p + 5 + k * 3;
        uint32_t i = (uint32_t)e[0] | ((uint32_t)e[1] << 8);
        if (e[2] > h->reg[i]) {
            h->reg[i] = e[2];
        }
    }
    return 0;
}
