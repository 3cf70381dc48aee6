/*
 * A small gRPC client over nghttp2 for the tools (see ep_grpc_client.h).
 * Unary calls only: the request is framed once, the answer collected, and
 * grpc-status / grpc-message read from the trailers (or a trailers-only
 * answer). Responses must be uncompressed (no grpc-accept-encoding is sent).
 */
#include "grpc/ep_grpc_client.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "grpc/ep_grpc_h2.h"
#include "grpc/ep_grpc_wire.h"
#include "http/ep_tls.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct ccall_s {
    ep_grpc_client_cb cb;
    void *arg;
    ep_buf_t req;       /* the framed request, when copied */
    const uint8_t *ref; /* or the caller's message (ep_grpc_conn_call_ref) */
    size_t ref_len;
    uint8_t prefix[EP_GRPC_PREFIX]; /* and its frame prefix */
    size_t req_off;
    ep_buf_t resp;
    int http_status;
    int code; /* -1: no grpc-status yet */
    char message[256];
} ccall_t;

struct ep_grpc_conn_s {
    int fd;
    SSL *ssl;
    ep_tls_io_t io;
    nghttp2_session *h2;
    ep_buf_t wbuf;
    size_t woff;
    int inflight;
    char authority[300];
    int tls;
};

static ssize_t req_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    ccall_t *k = src->ptr;
    size_t total = k->ref ? EP_GRPC_PREFIX + k->ref_len : k->req.len, n = 0;

    (void)h2;
    (void)id;
    (void)user;
    if (k->ref == NULL) {
        n = total - k->req_off < len ? total - k->req_off : len;
        memcpy(buf, k->req.data + k->req_off, n);
    } else {
        /* The prefix, then the caller's bytes: no copy of the message per call. */
        while (n < len && k->req_off + n < total) {
            size_t at = k->req_off + n, m;
            const uint8_t *from =
                at < EP_GRPC_PREFIX ? k->prefix + at : k->ref + (at - EP_GRPC_PREFIX);
            m = at < EP_GRPC_PREFIX ? EP_GRPC_PREFIX - at : total - at;
            m = m < len - n ? m : len - n;
            memcpy(buf + n, from, m);
            n += m;
        }
    }
    k->req_off += n;
    if (k->req_off == total) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    ccall_t *k = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);

    (void)flags;
    (void)user;
    if (k == NULL) {
        return 0;
    }
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        k->http_status = atoi((const char *)value);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        k->code = atoi((const char *)value);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        snprintf(k->message, sizeof(k->message), "%.*s", (int)valuelen, (const char *)value);
    }
    return 0;
}

static int on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    ccall_t *k = nghttp2_session_get_stream_user_data(h2, id);

    (void)flags;
    (void)user;
    if (k) {
        ep_buf_append(&k->resp, data, len);
    }
    return 0;
}

static void finish(ccall_t *k, int code, const char *message)
{
    const uint8_t *msg = NULL;
    size_t mlen = 0, used;
    int comp;

    if (code == 0 && ep_grpc_frame_next((const uint8_t *)k->resp.data, k->resp.len, SIZE_MAX, &msg,
                                        &mlen, &comp, &used) != 1) {
        msg = NULL;
        mlen = 0;
    }
    k->cb(k->arg, code, message, msg, mlen);
    ep_buf_close(&k->req);
    ep_buf_close(&k->resp);
    ep_free(k);
}

static int on_close(nghttp2_session *h2, int32_t id, uint32_t ec, void *user)
{
    ccall_t *k = nghttp2_session_get_stream_user_data(h2, id);
    ep_grpc_conn_t *c = user;
    char m[96];

    if (k == NULL) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(h2, id, NULL);
    c->inflight--;
    if (k->code >= 0) {
        finish(k, k->code, k->message);
    } else if (ec != NGHTTP2_NO_ERROR) {
        snprintf(m, sizeof(m), "stream reset: %s", nghttp2_http2_strerror(ec));
        finish(k, EP_GRPC_UNAVAILABLE, m);
    } else {
        snprintf(m, sizeof(m), "no grpc-status (HTTP %d)", k->http_status);
        finish(k, k->http_status == 200 ? EP_GRPC_UNKNOWN : EP_GRPC_UNAVAILABLE, m);
    }
    return 0;
}

static int wait_fd(int fd, short ev, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = ev};

    return poll(&p, 1, timeout_ms) > 0 ? 0 : -1;
}

int ep_grpc_conn_open(const char *host, int port, SSL_CTX *tls, int timeout_ms,
                      ep_grpc_conn_t **out, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    char ps[16];
    ep_grpc_conn_t *c;
    nghttp2_session_callbacks *cbs;
    int one = 1, rc;
    nghttp2_settings_entry st[1] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20}};

    snprintf(ps, sizeof(ps), "%d", port);
    if ((rc = getaddrinfo(host, ps, &hints, &ai)) != 0 || ai == NULL) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return EP_EIO;
    }
    c = ep_calloc(1, sizeof(*c));
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(errno));
        freeaddrinfo(ai);
        if (c->fd >= 0) {
            close(c->fd);
        }
        ep_free(c);
        return EP_ECONNREFUSED;
    }
    freeaddrinfo(ai);
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    snprintf(c->authority, sizeof(c->authority), "%s:%d", host, port);
    if (tls) {
        c->tls = 1;
        c->io.fd = c->fd;
        c->ssl = ep_tls_connect(tls, &c->io, host);
        if (c->ssl == NULL) {
            snprintf(err, errlen, "TLS: out of memory");
            ep_grpc_conn_close(c);
            return EP_ENOMEM;
        }
        SSL_set_alpn_protos(c->ssl, (const unsigned char *)"\x02h2", 3);
        for (;;) {
            int r = SSL_do_handshake(c->ssl), e;
            const unsigned char *p = NULL;
            unsigned int pl = 0;
            if (r == 1) {
                SSL_get0_alpn_selected(c->ssl, &p, &pl);
                if (pl != 2 || memcmp(p, "h2", 2) != 0) {
                    snprintf(err, errlen, "TLS: the server did not agree to HTTP/2 (ALPN h2)");
                    ep_grpc_conn_close(c);
                    return EP_EPROTO;
                }
                break;
            }
            e = SSL_get_error(c->ssl, r);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                char why[256];
                ep_tls_last_error(why, sizeof(why));
                snprintf(err, errlen, "TLS handshake with %s:%d failed: %s", host, port, why);
                ep_grpc_conn_close(c);
                return EP_EIO;
            }
            if (wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, timeout_ms) != 0) {
                snprintf(err, errlen, "TLS handshake with %s:%d timed out", host, port);
                ep_grpc_conn_close(c);
                return EP_ETIMEDOUT;
            }
        }
    }
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    nghttp2_session_client_new(&c->h2, cbs, c);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, st, 1);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 16 << 20);
    *out = c;
    return 0;
}

static int call_start(ep_grpc_conn_t *c, const char *path, const char *authorization,
                      const void *msg, size_t len, int borrow, int timeout_ms, ep_grpc_client_cb cb,
                      void *arg)
{
    ccall_t *k = ep_calloc(1, sizeof(*k));
    char to[24];
    nghttp2_nv h[8];
    size_t n = 0;
    nghttp2_data_provider dp;
    int32_t id;

#define H(nm, v)                                                                                   \
    do {                                                                                           \
        h[n].name = (uint8_t *)(nm);                                                               \
        h[n].namelen = strlen(nm);                                                                 \
        h[n].value = (uint8_t *)(v);                                                               \
        h[n].valuelen = strlen(v);                                                                 \
        h[n].flags = NGHTTP2_NV_FLAG_NONE;                                                         \
        n++;                                                                                       \
    } while (0)
    H(":method", "POST");
    H(":scheme", c->tls ? "https" : "http");
    H(":path", path);
    H(":authority", c->authority);
    H("content-type", "application/grpc");
    H("te", "trailers");
    if (timeout_ms > 0) {
        snprintf(to, sizeof(to), "%dm", timeout_ms);
        H("grpc-timeout", to);
    }
    if (authorization) {
        H("authorization", authorization);
    }
#undef H
    k->cb = cb;
    k->arg = arg;
    k->code = -1;
    if (borrow) {
        k->ref = msg;
        k->ref_len = len;
        k->prefix[0] = 0;
        k->prefix[1] = (uint8_t)(len >> 24);
        k->prefix[2] = (uint8_t)(len >> 16);
        k->prefix[3] = (uint8_t)(len >> 8);
        k->prefix[4] = (uint8_t)len;
    } else {
        ep_grpc_frame_prefix(&k->req, len, 0);
        ep_buf_append(&k->req, msg, len);
    }
    dp.source.ptr = k;
    dp.read_callback = req_read;
    id = nghttp2_submit_request(c->h2, NULL, h, n, &dp, k);
    if (id < 0) {
        ep_buf_close(&k->req);
        ep_free(k);
        return EP_EIO;
    }
    c->inflight++;
    return 0;
}

int ep_grpc_conn_call(ep_grpc_conn_t *c, const char *path, const char *authorization,
                      const void *msg, size_t len, int timeout_ms, ep_grpc_client_cb cb, void *arg)
{
    return call_start(c, path, authorization, msg, len, 0, timeout_ms, cb, arg);
}

int ep_grpc_conn_call_ref(ep_grpc_conn_t *c, const char *path, const char *authorization,
                          const void *msg, size_t len, int timeout_ms, ep_grpc_client_cb cb,
                          void *arg)
{
    return call_start(c, path, authorization, msg, len, 1, timeout_ms, cb, arg);
}

int ep_grpc_conn_fd(const ep_grpc_conn_t *c)
{
    return c->fd;
}

int ep_grpc_conn_want_write(const ep_grpc_conn_t *c)
{
    return c->woff < c->wbuf.len || nghttp2_session_want_write(c->h2);
}

int ep_grpc_conn_inflight(const ep_grpc_conn_t *c)
{
    return c->inflight;
}

static int conn_write(ep_grpc_conn_t *c)
{
    for (;;) {
        if (ep_grpc_h2_fill(c->h2, &c->wbuf, c->woff, 256 * 1024) != 0) {
            return -1;
        }
        if (c->woff == c->wbuf.len) {
            ep_buf_reset(&c->wbuf);
            c->woff = 0;
            return 0;
        }
        while (c->woff < c->wbuf.len) {
            ssize_t w;
            if (c->ssl) {
                int r = SSL_write(c->ssl, c->wbuf.data + c->woff, (int)(c->wbuf.len - c->woff));
                if (r <= 0) {
                    int e = SSL_get_error(c->ssl, r);
                    ERR_clear_error();
                    return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ ? 0 : -1;
                }
                w = r;
            } else {
                w = send(c->fd, c->wbuf.data + c->woff, c->wbuf.len - c->woff,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
                if (w < 0) {
                    return errno == EAGAIN || errno == EINTR ? 0 : -1;
                }
            }
            c->woff += (size_t)w;
        }
    }
}

int ep_grpc_conn_io(ep_grpc_conn_t *c)
{
    uint8_t buf[65536];

    if (conn_write(c) != 0) {
        return -1;
    }
    for (;;) {
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, buf, sizeof(buf));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    break;
                }
                return -1;
            }
            n = r;
        } else {
            n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
                break;
            }
            if (n <= 0) {
                return -1;
            }
        }
        if (nghttp2_session_mem_recv(c->h2, buf, (size_t)n) < 0) {
            return -1;
        }
        if (c->ssl == NULL && (size_t)n < sizeof(buf)) {
            break; /* a short read emptied the socket: no recv just to hear EAGAIN */
        }
    }
    return conn_write(c);
}

int ep_grpc_conn_flush(ep_grpc_conn_t *c)
{
    return conn_write(c);
}

int ep_grpc_conn_wait(ep_grpc_conn_t *c, int timeout_ms)
{
    struct pollfd p = {.fd = c->fd,
                       .events = (short)(POLLIN | (ep_grpc_conn_want_write(c) ? POLLOUT : 0))};

    if (c->ssl && SSL_has_pending(c->ssl)) {
        return ep_grpc_conn_io(c);
    }
    if (poll(&p, 1, timeout_ms) < 0 && errno != EINTR) {
        return -1;
    }
    return ep_grpc_conn_io(c);
}

void ep_grpc_conn_close(ep_grpc_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    if (c->h2) {
        /* Deleting the session does not report its streams: end the calls here. */
        for (int32_t id = 1; c->inflight > 0 && id < INT32_MAX - 1; id += 2) {
            ccall_t *k = nghttp2_session_get_stream_user_data(c->h2, id);
            if (k) {
                nghttp2_session_set_stream_user_data(c->h2, id, NULL);
                c->inflight--;
                finish(k, EP_GRPC_UNAVAILABLE, "connection closed");
            }
            if ((uint32_t)id > nghttp2_session_get_next_stream_id(c->h2)) {
                break;
            }
        }
        nghttp2_session_del(c->h2);
    }
    if (c->ssl) {
        SSL_free(c->ssl);
    }
    if (c->fd >= 0) {
        close(c->fd);
    }
    ep_buf_close(&c->wbuf);
    ep_free(c);
}
