#ifndef EP_GRPC_H2_H
#define EP_GRPC_H2_H

/* What the gRPC server and client share of driving an nghttp2 session. */

#include "base/ep_buf.h"

#include <nghttp2/nghttp2.h>
#include <stddef.h>
#include <stdint.h>

/**
 * Appends the frames h2 has ready to wbuf while fewer than high bytes past woff
 * wait to be written. Returns 0, or -1 on a session error (close).
 */
static inline int ep_grpc_h2_fill(nghttp2_session *h2, ep_buf_t *wbuf, size_t woff, size_t high)
{
    while (wbuf->len - woff < high) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(h2, &d);
        if (n < 0) {
            return -1;
        }
        if (n == 0) {
            break;
        }
        ep_buf_append(wbuf, d, (size_t)n);
    }
    return 0;
}

#endif /* EP_GRPC_H2_H */
