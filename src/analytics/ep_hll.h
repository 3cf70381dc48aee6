#ifndef EP_HLL_H
#define EP_HLL_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * HyperLogLog distinct counter, precision 14: 16384 one-byte registers
 * (16 KiB), standard error 1.04 / sqrt(16384) = 0.81%. Small cardinalities
 * use linear counting (near exact below a few thousand); above that the
 * estimate is Ertl's improved raw estimator (no bias tables). Sketches with
 * the same precision merge losslessly (register-wise max).
 *
 * Not thread-safe: the caller serialises access (ep_analytics keeps one per shard).
 */

#define EP_HLL_P       14               /* precision: index bits of the hash */
#define EP_HLL_M       (1u << EP_HLL_P) /* number of registers */
#define EP_HLL_VERSION 1                /* first byte of the serialised form */
#define EP_HLL_SER_MAX (EP_HLL_M + 8)   /* upper bound of a serialised sketch, bytes */

typedef struct ep_hll_s {
    uint8_t reg[EP_HLL_M]; /* max rank seen per register, 0 = empty */
} ep_hll_t;

/** 64-bit hash of n bytes with a seed (eventpipe's own mix; not cryptographic). Thread-safe. */
uint64_t ep_hash64(const void *p, size_t n, uint64_t seed);

/** Empties a caller-allocated sketch. */
void ep_hll_init(ep_hll_t *h);

/** Adds a value given by its ep_hash64. */
void ep_hll_add_hash(ep_hll_t *h, uint64_t hash);

/** Adds n bytes (hashes them with seed 0). */
void ep_hll_add(ep_hll_t *h, const void *p, size_t n);

/** Estimated number of distinct values added. */
double ep_hll_estimate(const ep_hll_t *h);

/** 1 when nothing was added. */
int ep_hll_is_empty(const ep_hll_t *h);

/** dst = union(dst, src). */
void ep_hll_merge(ep_hll_t *dst, const ep_hll_t *src);

/**
 * Appends the serialised sketch to out: version, precision, then either the
 * dense registers or (when fewer than a third are set) sparse (index, rank)
 * pairs. At most EP_HLL_SER_MAX bytes.
 */
void ep_hll_serialize(const ep_hll_t *h, ep_buf_t *out);

/**
 * Merges a serialised sketch of len bytes into h (a union, so deserialising into
 * an empty sketch restores it). Returns 0, or EP_EPARSE on a malformed or
 * foreign-precision input, in which case h is unchanged.
 */
int ep_hll_merge_serialized(ep_hll_t *h, const void *buf, size_t len);

#endif /* EP_HLL_H */
