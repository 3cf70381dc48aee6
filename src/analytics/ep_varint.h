#ifndef EP_VARINT_H
#define EP_VARINT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * Unsigned LEB128 varints and a bounds-checked reader, shared by the analytics
 * serialisers. Header-only; everything is static inline and thread-safe.
 */

typedef struct ep_rd_s {
    const unsigned char *p; /* next byte */
    const unsigned char *end;
    int err; /* set once a read ran past the end or a varint was malformed */
} ep_rd_t;

/** Appends v as a varint (1-10 bytes). */
static inline void ep_varint_put(ep_buf_t *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;

    while (v >= 0x80) {
        tmp[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (unsigned char)v;
    ep_buf_append(b, tmp, n);
}

/** a + b, or UINT64_MAX where that would wrap: merged counters saturate, never wrap. */
static inline uint64_t ep_sat_add(uint64_t a, uint64_t b)
{
    return a + b < a ? UINT64_MAX : a + b;
}

/** Starts a reader over buf[0..len). */
static inline void ep_rd_init(ep_rd_t *r, const void *buf, size_t len)
{
    r->p = buf;
    r->end = r->p + len;
    r->err = 0;
}

/** Reads a varint; on error returns 0 and sets r->err. */
static inline uint64_t ep_rd_varint(ep_rd_t *r)
{
    uint64_t v = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        unsigned char c;
        if (r->p >= r->end) {
            r->err = 1;
            return 0;
        }
        c = *r->p++;
        if (shift == 63 && c > 1) {
            break;
        }
        v |= (uint64_t)(c & 0x7f) << shift;
        if (!(c & 0x80)) {
            return v;
        }
    }
    r->err = 1;
    return 0;
}

/** Borrows n bytes; on error returns NULL and sets r->err. */
static inline const unsigned char *ep_rd_bytes(ep_rd_t *r, uint64_t n)
{
    const unsigned char *p = r->p;

    if (r->err || n > (uint64_t)(r->end - r->p)) {
        r->err = 1;
        return NULL;
    }
    r->p += n;
    return p;
}

#endif /* EP_VARINT_H */
