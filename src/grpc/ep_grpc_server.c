/*
 * gRPC server: nghttp2 sessions driven by epoll loops of our own (see
 * ep_grpc_server.h for the contract).
 *
 * Threads: each loop owns its listener (SO_REUSEPORT), its connections and
 * their calls; nothing of a loop is touched by another thread except the
 * answer stack. An answer (ep_grpc_answer) is written into the call and the
 * call pushed onto its loop's lock-free stack; the loop is woken through an
 * eventfd unless the answer came from the loop itself (a synchronous queue),
 * and applies the answers in order after every round. A call is freed only by
 * its loop, once its stream is closed and no answer is owed.
 *
 * Flow control is by hand (NGHTTP2_OPT_NO_AUTO_WINDOW_UPDATE): DATA is given
 * back to the connection window at once, and to the stream's window at once
 * unless the call's handler has not answered yet; then it is held until the
 * answer, so a client streaming faster than the queue accepts is held back by
 * HTTP/2 instead of filling our memory.
 *
 * Calls and their buffers are reused from a per-loop free list: a unary call
 * allocates nothing once the loop is warm, besides what its handler does.
 */
#include "grpc/ep_grpc_server.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "grpc/ep_grpc_wire.h"
#include "http/ep_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_METHODS     32
#define READ_CHUNK      (64 * 1024)
#define WBUF_HIGH       (256 * 1024) /* stop asking nghttp2 for frames above this */
#define FREE_CALLS      256          /* calls kept for reuse per loop */
#define TICK_MS         100
#define WATCH_PERIOD_MS 1000
#define STREAM_WINDOW   (1 << 20)
#define CONN_WINDOW     (16 << 20)

typedef struct method_s {
    char *path;
    int kind;
    ep_grpc_handler_cb cb;
    void *arg;
} method_t;

typedef struct loop_s loop_t;
typedef struct conn_s conn_t;

struct ep_grpc_call_s {
    ep_grpc_call_t *prev, *next; /* in conn->calls */
    ep_grpc_call_t *post_next;   /* on loop->posted */
    ep_grpc_call_t *free_next;
    conn_t *conn; /* NULL once the stream or the connection is gone */
    loop_t *loop;
    int32_t stream_id;
    int method; /* -1: unknown */
    unsigned busy : 1, closed : 1, finished : 1, end_stream : 1, headers_sent : 1,
        data_deferred : 1, gzip_in : 1, gzip_out : 1, bad_type : 1, observed : 1;
    uint32_t nmsg;
    int state; /* ep_grpc_call_state */
    int64_t start_ns;
    int64_t deadline_ms; /* monotonic ms; 0: none */
    int64_t next_tick_ms;
    size_t held; /* stream bytes received while busy, given back at the answer */
    ep_buf_t in;
    size_t in_off;
    ep_buf_t out;
    size_t out_off;
    ep_buf_t watch_msg;
    ep_buf_t hdrs; /* "name\0value\0"... */
    /* the posted answer */
    ep_buf_t ans;
    int ans_has_msg;
    int ans_code;
    char ans_text[256];
    /* the final status */
    int code;
    char text[256];
};

struct conn_s {
    conn_t *prev, *next; /* in loop->conns */
    conn_t *dirty_next;
    loop_t *loop;
    int fd;
    int dirty;
    int closing;
    int handshaking;
    SSL *ssl;
    ep_tls_io_t io;
    nghttp2_session *h2;
    ep_buf_t wbuf;
    size_t woff;
    int want_out; /* EPOLLOUT registered */
    int64_t last_rx_ms;
    int64_t ping_sent_ms; /* 0: none outstanding */
    int goaway_sent;
    uint8_t peer[16];
    int has_peer;
    ep_grpc_call_t *calls;
};

struct loop_s {
    ep_grpc_server_t *s;
    pthread_t th;
    int ep, lfd, efd;
    _Atomic(ep_grpc_call_t *) posted;
    conn_t *conns;
    int nconns;
    conn_t *dirty;
    ep_grpc_call_t *free_calls;
    int nfree;
    ep_buf_t scratch;
    int quiesced;
    uint8_t rbuf[READ_CHUNK];
};

struct ep_grpc_server_s {
    ep_grpc_server_opts_t o;
    char name[32];
    char bind_addr[64];
    method_t methods[MAX_METHODS];
    int nmethods;
    ep_grpc_observe_cb observe;
    void *observe_arg;
    loop_t *loops;
    int nloops;
    int port;
    int started;
    atomic_int stop;
    atomic_int quiesce;
    atomic_int_fast64_t busy;
    nghttp2_session_callbacks *cbs;
    nghttp2_option *h2opt;
};

static __thread loop_t *tl_loop;

/* ------------------------------------------------------------ calls */

static ep_grpc_call_t *call_new(loop_t *l, conn_t *c, int32_t id)
{
    ep_grpc_call_t *k = l->free_calls;

    if (k) {
        l->free_calls = k->free_next;
        l->nfree--;
    } else {
        k = ep_calloc(1, sizeof(*k));
    }
    k->conn = c;
    k->loop = l;
    k->stream_id = id;
    k->method = -1;
    k->start_ns = ep_time_mono_ns();
    k->prev = NULL;
    k->next = c->calls;
    if (c->calls) {
        c->calls->prev = k;
    }
    c->calls = k;
    return k;
}

static void call_unlink(ep_grpc_call_t *k)
{
    conn_t *c = k->conn;

    if (c == NULL) {
        return;
    }
    if (k->prev) {
        k->prev->next = k->next;
    } else {
        c->calls = k->next;
    }
    if (k->next) {
        k->next->prev = k->prev;
    }
    k->prev = k->next = NULL;
    k->conn = NULL;
}

static void call_free(ep_grpc_call_t *k)
{
    loop_t *l = k->loop;

    if (l->nfree >= FREE_CALLS || l->s == NULL) {
        ep_buf_close(&k->in);
        ep_buf_close(&k->out);
        ep_buf_close(&k->watch_msg);
        ep_buf_close(&k->hdrs);
        ep_buf_close(&k->ans);
        ep_free(k);
        return;
    }
    {
        ep_buf_t in = k->in, out = k->out, wm = k->watch_msg, h = k->hdrs, a = k->ans;
        /* Keep small buffers; a large one (a big batch) goes back to the allocator. */
        if (in.cap > 64 * 1024) {
            ep_buf_close(&in);
        }
        if (out.cap > 64 * 1024) {
            ep_buf_close(&out);
        }
        if (a.cap > 64 * 1024) {
            ep_buf_close(&a);
        }
        ep_buf_reset(&in);
        ep_buf_reset(&out);
        ep_buf_reset(&wm);
        ep_buf_reset(&h);
        ep_buf_reset(&a);
        memset(k, 0, sizeof(*k));
        k->in = in;
        k->out = out;
        k->watch_msg = wm;
        k->hdrs = h;
        k->ans = a;
    }
    k->free_next = l->free_calls;
    l->free_calls = k;
    l->nfree++;
}

/* The stream is gone (closed, reset, or its connection closed). */
static void call_closed(ep_grpc_call_t *k)
{
    call_unlink(k);
    k->closed = 1;
    if (!k->busy) {
        call_free(k);
    }
}

static void mark_dirty(conn_t *c)
{
    if (c && !c->dirty) {
        c->dirty = 1;
        c->dirty_next = c->loop->dirty;
        c->loop->dirty = c;
    }
}

/* grpc-message: percent-encoded outside printable ASCII and '%'. */
static void percent_encode(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    for (const unsigned char *p = (const unsigned char *)in; *p && o + 4 < cap; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
}

#define NV(n, v, vl)                                                                               \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE                  \
    }

static ssize_t data_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user);

static void observe(ep_grpc_call_t *k)
{
    ep_grpc_server_t *s = k->loop->s;

    if (!k->observed && s->observe) {
        k->observed = 1;
        s->observe(s->observe_arg, k->method, k->code, k->start_ns);
    }
}

static int submit_headers(ep_grpc_call_t *k)
{
    nghttp2_nv h[3] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16),
                       NV("grpc-encoding", "gzip", 4)};
    nghttp2_data_provider dp;

    dp.source.ptr = k;
    dp.read_callback = data_read;
    k->headers_sent = 1;
    return nghttp2_submit_response(k->conn->h2, k->stream_id, h, k->gzip_out ? 3 : 2, &dp);
}

/* grpc-status values, without a printf per call. */
static const char *const code_text[EP_GRPC_CODES] = {
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16"};

static const char *code_str(int code, char *tmp, size_t len)
{
    if (code >= 0 && code < EP_GRPC_CODES) {
        return code_text[code];
    }
    snprintf(tmp, len, "%d", code);
    return tmp;
}

/* Ends the call with code (and text): trailers, or a trailers-only answer. */
static void call_finish(ep_grpc_call_t *k, int code, const char *text)
{
    conn_t *c = k->conn;
    char enc[sizeof(k->text) * 3 + 1];
    char cs[12];

    if (k->finished || c == NULL) {
        return;
    }
    k->finished = 1;
    k->code = code;
    snprintf(k->text, sizeof(k->text), "%s", text ? text : "");
    observe(k);
    if (k->headers_sent) {
        if (k->data_deferred) {
            k->data_deferred = 0;
            nghttp2_session_resume_data(c->h2, k->stream_id);
        }
    } else {
        int nh = 4;
        nghttp2_nv h[4] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16),
                           NV("grpc-status", cs, 0), NV("grpc-message", enc, 0)};
        h[2].value = (uint8_t *)(uintptr_t)code_str(code, cs, sizeof(cs));
        h[2].valuelen = strlen((const char *)h[2].value);
        percent_encode(k->text, enc, sizeof(enc));
        h[3].valuelen = strlen(enc);
        if (h[3].valuelen == 0) {
            nh = 3;
        }
        k->headers_sent = 1;
        nghttp2_submit_response(c->h2, k->stream_id, h, (size_t)nh, NULL);
    }
    mark_dirty(c);
}

static ssize_t data_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *user)
{
    ep_grpc_call_t *k = src->ptr;
    size_t n = k->out.len - k->out_off;

    (void)user;
    if (n > len) {
        n = len;
    }
    if (n) {
        memcpy(buf, k->out.data + k->out_off, n);
        k->out_off += n;
    }
    if (k->out_off == k->out.len) {
        ep_buf_reset(&k->out);
        k->out_off = 0;
        if (k->finished) {
            char enc[sizeof(k->text) * 3 + 1];
            char cs[12];
            nghttp2_nv t[2] = {NV("grpc-status", cs, 0), NV("grpc-message", enc, 0)};
            t[0].value = (uint8_t *)(uintptr_t)code_str(k->code, cs, sizeof(cs));
            t[0].valuelen = strlen((const char *)t[0].value);
            percent_encode(k->text, enc, sizeof(enc));
            t[1].valuelen = strlen(enc);
            *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(h2, id, t, t[1].valuelen ? 2 : 1);
        } else if (n == 0) {
            k->data_deferred = 1;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

/* Appends one message (framed; gzip when the client sent gzip) to the call's output. */
static void call_send(ep_grpc_call_t *k, const uint8_t *msg, size_t len)
{
    conn_t *c = k->conn;

    if (k->gzip_out) {
        ep_buf_t *z = &k->loop->scratch;
        ep_buf_reset(z);
        if (ep_grpc_gzip(msg, len, z) == 0) {
            ep_grpc_frame_prefix(&k->out, z->len, 1);
            ep_buf_append(&k->out, z->data, z->len);
        } else {
            ep_grpc_frame_prefix(&k->out, len, 0);
            ep_buf_append(&k->out, msg, len);
        }
    } else {
        ep_grpc_frame_prefix(&k->out, len, 0);
        ep_buf_append(&k->out, msg, len);
    }
    if (!k->headers_sent) {
        submit_headers(k);
    } else if (k->data_deferred) {
        k->data_deferred = 0;
        nghttp2_session_resume_data(c->h2, k->stream_id);
    }
    mark_dirty(c);
}

static void invoke(ep_grpc_call_t *k, const uint8_t *msg, size_t len)
{
    method_t *m = &k->loop->s->methods[k->method];

    k->busy = 1;
    atomic_fetch_add_explicit(&k->loop->s->busy, 1, memory_order_relaxed);
    m->cb(m->arg, k, msg, len);
}

/* Hands the call's next complete message (or its end) to the handler, when it may run. */
static void call_pump(ep_grpc_call_t *k)
{
    ep_grpc_server_t *s = k->loop->s;
    size_t max = s->o.max_message;

    while (!k->busy && !k->finished && !k->closed && k->conn) {
        const uint8_t *msg;
        size_t mlen, used;
        int compressed;
        int r;

        if (k->in_off >= 64 * 1024) {
            /* A long stream: drop the handled bytes so the buffer stays bounded. */
            memmove(k->in.data, k->in.data + k->in_off, k->in.len - k->in_off);
            k->in.len -= k->in_off;
            k->in_off = 0;
        }
        r = ep_grpc_frame_next((const uint8_t *)k->in.data + k->in_off, k->in.len - k->in_off, max,
                               &msg, &mlen, &compressed, &used);
        if (r == EP_E2BIG) {
            char t[96];
            snprintf(t, sizeof(t), "message larger than the maximum of %zu bytes", max);
            call_finish(k, EP_GRPC_RESOURCE_EXHAUSTED, t);
            return;
        }
        if (r < 0) {
            call_finish(k, EP_GRPC_INTERNAL, "malformed message frame (compressed flag)");
            return;
        }
        if (r == 0) {
            if (!k->end_stream || k->in.len != k->in_off) {
                if (k->end_stream) {
                    call_finish(k, EP_GRPC_INTERNAL, "the stream ended inside a message");
                }
                return;
            }
            if (s->methods[k->method].kind == EP_GRPC_STREAM) {
                invoke(k, NULL, 0);
            } else if (k->nmsg == 0) {
                call_finish(k, EP_GRPC_INTERNAL, "no request message");
            }
            return;
        }
        k->in_off += used;
        if (k->in_off == k->in.len) {
            ep_buf_reset(&k->in);
            k->in_off = 0;
        }
        if (k->nmsg > 0 && s->methods[k->method].kind != EP_GRPC_STREAM) {
            call_finish(k, EP_GRPC_INTERNAL, "more than one request message for a unary method");
            return;
        }
        k->nmsg++;
        if (compressed) {
            ep_buf_t *z = &k->loop->scratch;
            int zr;
            if (!k->gzip_in) {
                call_finish(k, EP_GRPC_INTERNAL,
                            "a compressed message without grpc-encoding: gzip");
                return;
            }
            ep_buf_reset(z);
            zr = ep_grpc_gunzip(msg, mlen, max, z);
            if (zr == EP_E2BIG) {
                char t[96];
                snprintf(t, sizeof(t), "message larger than the maximum of %zu bytes", max);
                call_finish(k, EP_GRPC_RESOURCE_EXHAUSTED, t);
                return;
            }
            if (zr != 0) {
                call_finish(k, EP_GRPC_INTERNAL, "the message is not valid gzip");
                return;
            }
            if (s->methods[k->method].kind == EP_GRPC_WATCH) {
                ep_buf_append(&k->watch_msg, z->data, z->len);
            }
            invoke(k, (const uint8_t *)z->data, z->len);
        } else {
            if (s->methods[k->method].kind == EP_GRPC_WATCH) {
                ep_buf_append(&k->watch_msg, msg, mlen);
            }
            /* msg points into k->in, which is not touched until the answer. */
            invoke(k, msg, mlen);
        }
    }
}

void ep_grpc_answer(ep_grpc_call_t *k, const void *msg, size_t len, int code, const char *message)
{
    loop_t *l = k->loop;
    ep_grpc_call_t *old;

    ep_buf_reset(&k->ans);
    k->ans_has_msg = msg != NULL;
    if (msg) {
        ep_buf_append(&k->ans, msg, len);
    }
    k->ans_code = code;
    snprintf(k->ans_text, sizeof(k->ans_text), "%s", message ? message : "");
    old = atomic_load_explicit(&l->posted, memory_order_relaxed);
    do {
        k->post_next = old;
    } while (!atomic_compare_exchange_weak_explicit(&l->posted, &old, k, memory_order_release,
                                                    memory_order_relaxed));
    if (old == NULL && tl_loop != l) {
        uint64_t one = 1;
        ssize_t w = write(l->efd, &one, sizeof(one));
        (void)w;
    }
}

static void apply_answer(ep_grpc_call_t *k)
{
    conn_t *c = k->conn;

    k->busy = 0;
    atomic_fetch_sub_explicit(&k->loop->s->busy, 1, memory_order_relaxed);
    if (k->closed) {
        call_free(k);
        return;
    }
    if (k->finished || c == NULL) {
        return; /* the deadline answered already */
    }
    if (k->held) {
        nghttp2_session_consume_stream(c->h2, k->stream_id, k->held);
        k->held = 0;
        mark_dirty(c);
    }
    if (k->ans_has_msg) {
        call_send(k, (const uint8_t *)k->ans.data, k->ans.len);
    }
    if (k->ans_code >= 0) {
        call_finish(k, k->ans_code, k->ans_text);
        return;
    }
    if (k->method >= 0 && k->loop->s->methods[k->method].kind == EP_GRPC_WATCH) {
        k->next_tick_ms = ep_time_mono_ms() + WATCH_PERIOD_MS;
        return;
    }
    call_pump(k);
}

static void drain_posted(loop_t *l)
{
    for (;;) {
        ep_grpc_call_t *k = atomic_exchange_explicit(&l->posted, NULL, memory_order_acquire);
        ep_grpc_call_t *rev = NULL;
        if (k == NULL) {
            return;
        }
        while (k) { /* the stack is newest first: answer in posting order */
            ep_grpc_call_t *n = k->post_next;
            k->post_next = rev;
            rev = k;
            k = n;
        }
        while (rev) {
            ep_grpc_call_t *n = rev->post_next;
            rev->post_next = NULL;
            apply_answer(rev);
            rev = n;
        }
    }
}

/* ------------------------------------------------------------ nghttp2 callbacks */

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    conn_t *c = user;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    nghttp2_session_set_stream_user_data(h2, f->hd.stream_id,
                                         call_new(c->loop, c, f->hd.stream_id));
    return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    ep_grpc_call_t *k = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    ep_grpc_server_t *s;

    (void)flags;
    (void)user;
    if (k == NULL || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0; /* trailers of the client: nothing we use */
    }
    s = k->loop->s;
    if (namelen == 5 && memcmp(name, ":path", 5) == 0) {
        for (int i = 0; i < s->nmethods; i++) {
            if (strlen(s->methods[i].path) == valuelen &&
                memcmp(s->methods[i].path, value, valuelen) == 0) {
                k->method = i;
            }
        }
    } else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
        k->bad_type = !(valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
                        (valuelen == 16 || value[16] == '+' || value[16] == ';'));
    } else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
        int64_t ms = ep_grpc_timeout_ms((const char *)value, valuelen);
        if (ms > 0) {
            k->deadline_ms = ep_time_mono_ms() + ms;
        }
    } else if (namelen == 13 && memcmp(name, "grpc-encoding", 13) == 0) {
        k->gzip_in = valuelen == 4 && memcmp(value, "gzip", 4) == 0;
        k->gzip_out = k->gzip_in;
    }
    if (namelen && name[0] != ':') {
        ep_buf_append(&k->hdrs, name, namelen);
        ep_buf_putc(&k->hdrs, '\0');
        ep_buf_append(&k->hdrs, value, valuelen);
        ep_buf_putc(&k->hdrs, '\0');
    }
    return 0;
}

static void request_ready(conn_t *c, ep_grpc_call_t *k)
{
    if (k->bad_type) {
        nghttp2_nv h[2] = {NV(":status", "415", 3), NV("content-type", "text/plain", 10)};
        k->finished = 1;
        k->headers_sent = 1;
        nghttp2_submit_response(c->h2, k->stream_id, h, 2, NULL);
        mark_dirty(c);
        return;
    }
    if (k->method < 0) {
        k->method = -1;
        /* Not a method of this port: no observer (the label set stays bounded). */
        k->observed = 1;
        call_finish(k, EP_GRPC_UNIMPLEMENTED, "unknown service or method on this port");
        return;
    }
    if (k->gzip_in == 0) {
        const char *e = ep_grpc_call_header(k, "grpc-encoding");
        if (e && strcmp(e, "identity") != 0) {
            call_finish(k, EP_GRPC_UNIMPLEMENTED, "grpc-encoding not supported; use gzip");
            return;
        }
    }
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *f, void *user)
{
    conn_t *c = user;
    ep_grpc_call_t *k;

    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->ping_sent_ms = 0;
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) {
        return 0;
    }
    k = nghttp2_session_get_stream_user_data(h2, f->hd.stream_id);
    if (k == NULL) {
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        request_ready(c, k);
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        k->end_stream = 1;
    }
    if (!k->finished) {
        call_pump(k);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    ep_grpc_call_t *k = nghttp2_session_get_stream_user_data(h2, id);

    (void)flags;
    (void)user;
    nghttp2_session_consume_connection(h2, len);
    if (k == NULL || k->finished) {
        nghttp2_session_consume_stream(h2, id, len);
        return 0;
    }
    ep_buf_append(&k->in, data, len);
    if (k->busy) {
        k->held += len;
    } else {
        nghttp2_session_consume_stream(h2, id, len);
        call_pump(k);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t id, uint32_t ec, void *user)
{
    ep_grpc_call_t *k = nghttp2_session_get_stream_user_data(h2, id);

    (void)ec;
    (void)user;
    if (k) {
        if (!k->finished && k->method >= 0) {
            k->code = EP_GRPC_CANCELLED;
            observe(k);
        }
        nghttp2_session_set_stream_user_data(h2, id, NULL);
        call_closed(k);
    }
    return 0;
}

/* ------------------------------------------------------------ connections */

static void conn_close(conn_t *c)
{
    loop_t *l = c->loop;

    while (c->calls) {
        ep_grpc_call_t *k = c->calls;
        if (!k->finished && k->method >= 0) {
            k->code = EP_GRPC_CANCELLED;
            observe(k);
        }
        call_closed(k);
    }
    nghttp2_session_del(c->h2);
    if (c->ssl) {
        SSL_free(c->ssl);
    }
    epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
    /*
     * Unread input makes close() send a reset, and a reset may make the peer drop
     * what we sent last (a GOAWAY, a final status): read it off first.
     */
    for (int i = 0; i < 16 && recv(c->fd, l->rbuf, READ_CHUNK, MSG_DONTWAIT) > 0; i++) {
    }
    shutdown(c->fd, SHUT_WR);
    close(c->fd);
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        l->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    l->nconns--;
    ep_buf_close(&c->wbuf);
    ep_free(c);
}

/* Writes what is pending; 0, or -1 when the connection is dead. */
static int conn_write(conn_t *c)
{
    while (c->woff < c->wbuf.len) {
        ssize_t w;
        size_t n = c->wbuf.len - c->woff;
        if (c->ssl) {
            int r = SSL_write(c->ssl, c->wbuf.data + c->woff, (int)(n > INT32_MAX ? INT32_MAX : n));
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
                    return 0;
                }
                return -1;
            }
            w = r;
        } else {
            w = send(c->fd, c->wbuf.data + c->woff, n, MSG_NOSIGNAL);
            if (w < 0) {
                if (errno == EAGAIN || errno == EINTR) {
                    return 0;
                }
                return -1;
            }
        }
        c->woff += (size_t)w;
    }
    ep_buf_reset(&c->wbuf);
    c->woff = 0;
    return 0;
}

static void want_out(conn_t *c, int on)
{
    struct epoll_event ev;

    if (c->want_out == on) {
        return;
    }
    c->want_out = on;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(c->loop->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Moves nghttp2's frames out to the socket. 0, or -1: close the connection. */
static int conn_flush(conn_t *c)
{
    if (c->handshaking) {
        return 0;
    }
    for (;;) {
        while (c->wbuf.len - c->woff < WBUF_HIGH) {
            const uint8_t *d;
            ssize_t n = nghttp2_session_mem_send(c->h2, &d);
            if (n < 0) {
                return -1;
            }
            if (n == 0) {
                break;
            }
            ep_buf_append(&c->wbuf, d, (size_t)n);
        }
        if (c->wbuf.len == c->woff) {
            break;
        }
        if (conn_write(c) != 0) {
            return -1;
        }
        if (c->wbuf.len != c->woff) {
            break; /* the socket is full */
        }
    }
    want_out(c, c->wbuf.len != c->woff);
    if (c->wbuf.len == c->woff && !nghttp2_session_want_read(c->h2) &&
        !nghttp2_session_want_write(c->h2)) {
        return -1; /* GOAWAY done, or the peer's GOAWAY and nothing left */
    }
    return 0;
}

static int conn_start_h2(conn_t *c)
{
    ep_grpc_server_t *s = c->loop->s;
    nghttp2_settings_entry st[3] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)s->o.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16 * 1024},
    };

    if (nghttp2_session_server_new2(&c->h2, s->cbs, c, s->h2opt) != 0) {
        return -1;
    }
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, st, 3);
    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
    if (c->loop->quiesced) {
        nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
        c->goaway_sent = 1;
    }
    mark_dirty(c);
    return 0;
}

static int conn_handshake(conn_t *c)
{
    const unsigned char *proto = NULL;
    unsigned int plen = 0;
    int r = SSL_do_handshake(c->ssl);

    if (r == 1) {
        SSL_get0_alpn_selected(c->ssl, &proto, &plen);
        if (plen != 2 || memcmp(proto, "h2", 2) != 0) {
            return -1; /* gRPC over TLS is HTTP/2 only */
        }
        c->handshaking = 0;
        return conn_start_h2(c);
    }
    r = SSL_get_error(c->ssl, r);
    ERR_clear_error();
    return r == SSL_ERROR_WANT_READ || r == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

/* Reads what the socket has; 0, or -1: close. */
static int conn_read(conn_t *c)
{
    loop_t *l = c->loop;

    if (c->handshaking) {
        if (conn_handshake(c) != 0) {
            return -1;
        }
        if (c->handshaking) {
            return 0;
        }
        /* Done: the client's first frames may already sit decrypted in OpenSSL. */
    }
    for (int rounds = 0; rounds < 4; rounds++) {
        ssize_t n;
        if (c->ssl) {
            int r = SSL_read(c->ssl, l->rbuf, READ_CHUNK);
            if (r <= 0) {
                int e = SSL_get_error(c->ssl, r);
                ERR_clear_error();
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    return 0;
                }
                return -1;
            }
            n = r;
        } else {
            n = recv(c->fd, l->rbuf, READ_CHUNK, 0);
            if (n < 0) {
                return errno == EAGAIN || errno == EINTR ? 0 : -1;
            }
            if (n == 0) {
                return -1;
            }
        }
        c->last_rx_ms = ep_time_mono_ms();
        c->ping_sent_ms = 0; /* anything from the peer shows it is alive */
        if (nghttp2_session_mem_recv(c->h2, l->rbuf, (size_t)n) < 0) {
            return -1;
        }
        mark_dirty(c);
        if (c->ssl) {
            /* OpenSSL may hold bytes epoll cannot see: read until it wants the socket. */
            rounds = 0;
            continue;
        }
        if (n < READ_CHUNK) {
            return 0;
        }
    }
    return 0;
}

static void accept_all(loop_t *l)
{
    ep_grpc_server_t *s = l->s;

    for (;;) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof(sa);
        int one = 1;
        int fd = accept4(l->lfd, (struct sockaddr *)&sa, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        conn_t *c;
        struct epoll_event ev;

        if (fd < 0) {
            return;
        }
        if (l->nconns >= s->o.max_connections || l->quiesced) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c = ep_calloc(1, sizeof(*c));
        c->loop = l;
        c->fd = fd;
        c->last_rx_ms = ep_time_mono_ms();
        if (sa.ss_family == AF_INET) {
            const struct sockaddr_in *in = (const struct sockaddr_in *)&sa;
            memset(c->peer, 0, 10);
            c->peer[10] = c->peer[11] = 0xff;
            memcpy(c->peer + 12, &in->sin_addr, 4);
            c->has_peer = 1;
        } else if (sa.ss_family == AF_INET6) {
            memcpy(c->peer, &((const struct sockaddr_in6 *)&sa)->sin6_addr, 16);
            c->has_peer = 1;
        }
        c->next = l->conns;
        if (l->conns) {
            l->conns->prev = c;
        }
        l->conns = c;
        l->nconns++;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
        if (s->o.tls) {
            c->io.fd = fd;
            c->ssl = ep_tls_accept(s->o.tls, &c->io);
            if (c->ssl == NULL) {
                conn_close(c);
                continue;
            }
            ep_tls_alpn_h2(c->ssl);
            /* The write buffer grows and moves between a short write and its retry. */
            SSL_set_mode(c->ssl,
                         SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
            SSL_set_accept_state(c->ssl);
            c->handshaking = 1;
            if (conn_handshake(c) != 0) {
                conn_close(c);
            }
            continue;
        }
        if (conn_start_h2(c) != 0) {
            conn_close(c);
        }
    }
}

/* A connection closed while it was on the dirty list must leave it first. */
static void conn_drop(loop_t *l, conn_t *c)
{
    if (c->dirty) {
        conn_t **pp = &l->dirty;
        while (*pp && *pp != c) {
            pp = &(*pp)->dirty_next;
        }
        if (*pp) {
            *pp = c->dirty_next;
        }
    }
    conn_close(c);
}

/* Deadlines, watch ticks and keepalive, about every TICK_MS. */
static void timers(loop_t *l)
{
    ep_grpc_server_t *s = l->s;
    int64_t now = ep_time_mono_ms();
    conn_t *c = l->conns;

    while (c) {
        conn_t *next = c->next;
        ep_grpc_call_t *k = c->calls;
        while (k) {
            ep_grpc_call_t *kn = k->next;
            if (!k->finished && k->deadline_ms && now >= k->deadline_ms) {
                call_finish(k, EP_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
            } else if (!k->finished && !k->busy && k->next_tick_ms && now >= k->next_tick_ms) {
                k->next_tick_ms = 0;
                invoke(k, (const uint8_t *)k->watch_msg.data, k->watch_msg.len);
            }
            k = kn;
        }
        if (c->ping_sent_ms && now - c->ping_sent_ms >= s->o.keepalive_timeout_ms) {
            conn_drop(l, c); /* the keepalive PING went unanswered */
        } else if (!c->handshaking && !c->ping_sent_ms &&
                   now - c->last_rx_ms >= s->o.keepalive_ms) {
            nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL);
            c->ping_sent_ms = now;
            mark_dirty(c);
        }
        c = next;
    }
}

static void do_quiesce(loop_t *l)
{
    if (l->quiesced) {
        return;
    }
    l->quiesced = 1;
    if (l->lfd >= 0) {
        epoll_ctl(l->ep, EPOLL_CTL_DEL, l->lfd, NULL);
        close(l->lfd);
        l->lfd = -1;
    }
    for (conn_t *c = l->conns; c; c = c->next) {
        if (!c->handshaking && !c->goaway_sent) {
            nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE,
                                  nghttp2_session_get_last_proc_stream_id(c->h2), NGHTTP2_NO_ERROR,
                                  NULL, 0);
            c->goaway_sent = 1;
            mark_dirty(c);
        }
        /* Health watchers hear the news now (NOT_SERVING), not at their next tick. */
        for (ep_grpc_call_t *k = c->calls; k; k = k->next) {
            if (k->method >= 0 && l->s->methods[k->method].kind == EP_GRPC_WATCH && !k->busy &&
                !k->finished && k->nmsg > 0) {
                k->next_tick_ms = 0;
                invoke(k, (const uint8_t *)k->watch_msg.data, k->watch_msg.len);
            }
        }
    }
}

static void flush_dirty(loop_t *l)
{
    while (l->dirty) {
        conn_t *c = l->dirty;
        l->dirty = c->dirty_next;
        c->dirty = 0;
        c->dirty_next = NULL;
        if (conn_flush(c) != 0) {
            conn_close(c);
        }
    }
}

static void *loop_main(void *arg)
{
    loop_t *l = arg;
    ep_grpc_server_t *s = l->s;
    int64_t last_tick = ep_time_mono_ms();

    tl_loop = l;
    while (!atomic_load_explicit(&s->stop, memory_order_acquire)) {
        struct epoll_event evs[64];
        int n = epoll_wait(l->ep, evs, 64, TICK_MS);
        int64_t now;

        if (atomic_load_explicit(&s->quiesce, memory_order_acquire)) {
            do_quiesce(l);
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (p == &l->lfd) {
                accept_all(l);
            } else if (p == &l->efd) {
                uint64_t v;
                ssize_t r = read(l->efd, &v, sizeof(v));
                (void)r;
            } else {
                conn_t *c = p;
                int bad = 0;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
                    bad = conn_read(c) != 0;
                }
                if (!bad && (evs[i].events & EPOLLOUT)) {
                    if (c->handshaking) {
                        bad = conn_read(c) != 0;
                    } else {
                        bad = conn_write(c) != 0;
                        mark_dirty(c);
                    }
                }
                if (bad) {
                    conn_drop(l, c);
                    /* Later events of this round may name it: skip them. */
                    for (int j = i + 1; j < n; j++) {
                        if (evs[j].data.ptr == c) {
                            evs[j].data.ptr = &l->efd;
                        }
                    }
                }
            }
        }
        drain_posted(l);
        now = ep_time_mono_ms();
        if (now - last_tick >= TICK_MS) {
            last_tick = now;
            timers(l);
            drain_posted(l);
        }
        flush_dirty(l);
    }
    while (l->conns) {
        conn_close(l->conns);
    }
    return NULL;
}

/* ------------------------------------------------------------ server */

int ep_grpc_server_create(const ep_grpc_server_opts_t *opts, ep_grpc_server_t **out)
{
    ep_grpc_server_t *s = ep_calloc(1, sizeof(*s));

    s->o = *opts;
    snprintf(s->name, sizeof(s->name), "%s", opts->name ? opts->name : "grpc");
    snprintf(s->bind_addr, sizeof(s->bind_addr), "%s",
             opts->bind_addr ? opts->bind_addr : "0.0.0.0");
    s->o.name = s->name;
    s->o.bind_addr = s->bind_addr;
    s->o.threads = opts->threads > 0 ? opts->threads : 1;
    s->o.max_message = opts->max_message ? opts->max_message : 4 * 1024 * 1024;
    s->o.keepalive_ms = opts->keepalive_ms > 0 ? opts->keepalive_ms : 2 * 3600 * 1000;
    s->o.keepalive_timeout_ms = opts->keepalive_timeout_ms > 0 ? opts->keepalive_timeout_ms : 20000;
    s->o.max_streams = opts->max_streams > 0 ? opts->max_streams : 100;
    s->o.max_connections = opts->max_connections > 0 ? opts->max_connections : 4096;
    nghttp2_session_callbacks_new(&s->cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(s->cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(s->cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(s->cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(s->cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(s->cbs, on_stream_close);
    nghttp2_option_new(&s->h2opt);
    nghttp2_option_set_no_auto_window_update(s->h2opt, 1);
    nghttp2_option_set_max_send_header_block_length(s->h2opt, 64 * 1024);
    *out = s;
    return 0;
}

int ep_grpc_server_method(ep_grpc_server_t *s, const char *path, int kind, ep_grpc_handler_cb cb,
                          void *arg)
{
    method_t *m;

    ep_assert(s->nmethods < MAX_METHODS && !s->started);
    m = &s->methods[s->nmethods];
    m->path = ep_strdup(path);
    m->kind = kind;
    m->cb = cb;
    m->arg = arg;
    return s->nmethods++;
}

const char *ep_grpc_server_method_path(const ep_grpc_server_t *s, int idx)
{
    return idx >= 0 && idx < s->nmethods ? s->methods[idx].path : NULL;
}

void ep_grpc_server_set_observer(ep_grpc_server_t *s, ep_grpc_observe_cb cb, void *arg)
{
    s->observe = cb;
    s->observe_arg = arg;
}

static int listen_on(ep_grpc_server_t *s, int port, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    socklen_t sl;
    int fd, one = 1;

    memset(&sa, 0, sizeof(sa));
    if (inet_pton(AF_INET, s->bind_addr, &((struct sockaddr_in *)&sa)->sin_addr) == 1) {
        ((struct sockaddr_in *)&sa)->sin_family = AF_INET;
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)port);
        sl = sizeof(struct sockaddr_in);
    } else if (inet_pton(AF_INET6, s->bind_addr, &((struct sockaddr_in6 *)&sa)->sin6_addr) == 1) {
        ((struct sockaddr_in6 *)&sa)->sin6_family = AF_INET6;
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)port);
        sl = sizeof(struct sockaddr_in6);
    } else {
        snprintf(err, errlen, "%s gRPC: bad bind address %s", s->name, s->bind_addr);
        return -1;
    }
    fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s gRPC: socket: %s", s->name, strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (s->o.threads > 1) {
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    }
    if (bind(fd, (struct sockaddr *)&sa, sl) != 0 || listen(fd, 1024) != 0) {
        snprintf(err, errlen, "%s gRPC: listen on %s:%d: %s", s->name, s->bind_addr, port,
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int ep_grpc_server_start(ep_grpc_server_t *s, char *err, size_t errlen)
{
    int port = s->o.port;

    s->loops = ep_calloc((size_t)s->o.threads, sizeof(*s->loops));
    for (int i = 0; i < s->o.threads; i++) {
        loop_t *l = &s->loops[i];
        struct epoll_event ev;
        l->s = s;
        l->lfd = -1;
        l->ep = epoll_create1(EPOLL_CLOEXEC);
        l->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        ev.events = EPOLLIN;
        ev.data.ptr = &l->efd;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->efd, &ev);
    }
    s->nloops = s->o.threads;
    for (int i = 0; i < s->nloops; i++) {
        loop_t *l = &s->loops[i];
        struct epoll_event ev;
        l->lfd = listen_on(s, port, err, errlen);
        if (l->lfd < 0) {
            return EP_EIO;
        }
        if (port == 0) {
            struct sockaddr_storage sa;
            socklen_t sl = sizeof(sa);
            getsockname(l->lfd, (struct sockaddr *)&sa, &sl);
            port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                                 : ((struct sockaddr_in6 *)&sa)->sin6_port);
        }
        ev.events = EPOLLIN;
        ev.data.ptr = &l->lfd;
        epoll_ctl(l->ep, EPOLL_CTL_ADD, l->lfd, &ev);
    }
    s->port = port;
    for (int i = 0; i < s->nloops; i++) {
        if (pthread_create(&s->loops[i].th, NULL, loop_main, &s->loops[i]) != 0) {
            snprintf(err, errlen, "%s gRPC: cannot start a thread", s->name);
            s->nloops = i;
            return EP_EIO;
        }
    }
    s->started = 1;
    return 0;
}

int ep_grpc_server_port(const ep_grpc_server_t *s)
{
    return s->port;
}

void ep_grpc_server_quiesce(ep_grpc_server_t *s)
{
    if (s == NULL || atomic_exchange(&s->quiesce, 1)) {
        return;
    }
    for (int i = 0; i < s->nloops; i++) {
        uint64_t one = 1;
        ssize_t w = write(s->loops[i].efd, &one, sizeof(one));
        (void)w;
    }
}

int64_t ep_grpc_server_busy(ep_grpc_server_t *s)
{
    return s ? atomic_load_explicit(&s->busy, memory_order_relaxed) : 0;
}

void ep_grpc_server_destroy(ep_grpc_server_t *s)
{
    if (s == NULL) {
        return;
    }
    atomic_store(&s->stop, 1);
    for (int i = 0; i < s->nloops; i++) {
        uint64_t one = 1;
        ssize_t w = write(s->loops[i].efd, &one, sizeof(one));
        (void)w;
        pthread_join(s->loops[i].th, NULL);
    }
    for (int i = 0; s->loops && i < s->o.threads; i++) {
        loop_t *l = &s->loops[i];
        drain_posted(l); /* answers that came after the loop stopped */
        while (l->free_calls) {
            ep_grpc_call_t *k = l->free_calls;
            l->free_calls = k->free_next;
            ep_buf_close(&k->in);
            ep_buf_close(&k->out);
            ep_buf_close(&k->watch_msg);
            ep_buf_close(&k->hdrs);
            ep_buf_close(&k->ans);
            ep_free(k);
        }
        if (l->lfd >= 0) {
            close(l->lfd);
        }
        if (l->ep >= 0) {
            close(l->ep);
        }
        if (l->efd >= 0) {
            close(l->efd);
        }
        ep_buf_close(&l->scratch);
    }
    for (int i = 0; i < s->nmethods; i++) {
        ep_free(s->methods[i].path);
    }
    nghttp2_session_callbacks_del(s->cbs);
    nghttp2_option_del(s->h2opt);
    ep_free(s->loops);
    ep_free(s);
}

/* ------------------------------------------------------------ call accessors */

const char *ep_grpc_call_header(const ep_grpc_call_t *k, const char *name)
{
    const char *p = k->hdrs.data, *end = p + k->hdrs.len;

    while (p && p < end) {
        const char *v = p + strlen(p) + 1;
        if (strcmp(p, name) == 0) {
            return v;
        }
        p = v + strlen(v) + 1;
    }
    return NULL;
}

int ep_grpc_call_peer(const ep_grpc_call_t *k, uint8_t out[16])
{
    conn_t *c = k->conn;

    if (c == NULL || !c->has_peer) {
        memset(out, 0, 16);
        return 0;
    }
    memcpy(out, c->peer, 16);
    return 1;
}

int64_t ep_grpc_call_start_ns(const ep_grpc_call_t *k)
{
    return k->start_ns;
}

int ep_grpc_call_method(const ep_grpc_call_t *k)
{
    return k->method;
}

int *ep_grpc_call_state(ep_grpc_call_t *k)
{
    return &k->state;
}
