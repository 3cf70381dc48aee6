/*
 * gRPC server calls (split from ep_grpc_server.c, whose opening comment gives
 * the threading and flow-control contract): a call's life on its loop, its
 * response framing and status, the answers posted from other threads, the
 * nghttp2 stream callbacks that feed it, and the call accessors.
 */
#include "grpc/ep_grpc_server_int.h"

#include "base/ep_error.h"
#include "base/ep_list.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "grpc/ep_grpc_wire.h"

#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define FREE_CALLS      256 /* calls kept for reuse per loop */
#define WATCH_PERIOD_MS 1000

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
    EP_DLIST_UNLINK(c->calls, k);
    k->prev = k->next = NULL;
    k->conn = NULL;
}

void ep__grpc_call_destroy(ep_grpc_call_t *k)
{
    ep_buf_close(&k->in);
    ep_buf_close(&k->out);
    ep_buf_close(&k->watch_msg);
    ep_buf_close(&k->hdrs);
    ep_buf_close(&k->ans);
    ep_free(k);
}

static void call_free(ep_grpc_call_t *k)
{
    loop_t *l = k->loop;

    if (l->nfree >= FREE_CALLS || l->s == NULL) {
        ep__grpc_call_destroy(k);
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
void ep__grpc_call_closed(ep_grpc_call_t *k)
{
    call_unlink(k);
    k->closed = 1;
    if (!k->busy) {
        call_free(k);
    }
}

void ep__grpc_mark_dirty(conn_t *c)
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

void ep__grpc_observe(ep_grpc_call_t *k)
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
void ep__grpc_call_finish(ep_grpc_call_t *k, int code, const char *text)
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
    ep__grpc_observe(k);
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
    ep__grpc_mark_dirty(c);
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
    ep__grpc_mark_dirty(c);
}

void ep__grpc_invoke(ep_grpc_call_t *k, const uint8_t *msg, size_t len)
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
            ep__grpc_call_finish(k, EP_GRPC_RESOURCE_EXHAUSTED, t);
            return;
        }
        if (r < 0) {
            ep__grpc_call_finish(k, EP_GRPC_INTERNAL, "malformed message frame (compressed flag)");
            return;
        }
        if (r == 0) {
            if (!k->end_stream || k->in.len != k->in_off) {
                if (k->end_stream) {
                    ep__grpc_call_finish(k, EP_GRPC_INTERNAL, "the stream ended inside a message");
                }
                return;
            }
            if (s->methods[k->method].kind == EP_GRPC_STREAM) {
                ep__grpc_invoke(k, NULL, 0);
            } else if (k->nmsg == 0) {
                ep__grpc_call_finish(k, EP_GRPC_INTERNAL, "no request message");
            }
            return;
        }
        k->in_off += used;
        if (k->in_off == k->in.len) {
            ep_buf_reset(&k->in);
            k->in_off = 0;
        }
        if (k->nmsg > 0 && s->methods[k->method].kind != EP_GRPC_STREAM) {
            ep__grpc_call_finish(k, EP_GRPC_INTERNAL,
                                 "more than one request message for a unary method");
            return;
        }
        k->nmsg++;
        if (compressed) {
            ep_buf_t *z = &k->loop->scratch;
            int zr;
            if (!k->gzip_in) {
                ep__grpc_call_finish(k, EP_GRPC_INTERNAL,
                                     "a compressed message without grpc-encoding: gzip");
                return;
            }
            ep_buf_reset(z);
            zr = ep_grpc_gunzip(msg, mlen, max, z);
            if (zr == EP_E2BIG) {
                char t[96];
                snprintf(t, sizeof(t), "message larger than the maximum of %zu bytes", max);
                ep__grpc_call_finish(k, EP_GRPC_RESOURCE_EXHAUSTED, t);
                return;
            }
            if (zr != 0) {
                ep__grpc_call_finish(k, EP_GRPC_INTERNAL, "the message is not valid gzip");
                return;
            }
            if (s->methods[k->method].kind == EP_GRPC_WATCH) {
                ep_buf_append(&k->watch_msg, z->data, z->len);
            }
            ep__grpc_invoke(k, (const uint8_t *)z->data, z->len);
        } else {
            if (s->methods[k->method].kind == EP_GRPC_WATCH) {
                ep_buf_append(&k->watch_msg, msg, mlen);
            }
            /* msg points into k->in, which is not touched until the answer. */
            ep__grpc_invoke(k, msg, mlen);
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
    if (old == NULL && ep__grpc_tl_loop != l) {
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
        ep__grpc_mark_dirty(c);
    }
    if (k->ans_has_msg) {
        call_send(k, (const uint8_t *)k->ans.data, k->ans.len);
    }
    if (k->ans_code >= 0) {
        ep__grpc_call_finish(k, k->ans_code, k->ans_text);
        return;
    }
    if (k->method >= 0 && k->loop->s->methods[k->method].kind == EP_GRPC_WATCH) {
        k->next_tick_ms = ep_time_mono_ms() + WATCH_PERIOD_MS;
        return;
    }
    call_pump(k);
}

void ep__grpc_drain_posted(loop_t *l)
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
        ep__grpc_mark_dirty(c);
        return;
    }
    if (k->method < 0) {
        k->method = -1;
        /* Not a method of this port: no observer (the label set stays bounded). */
        k->observed = 1;
        ep__grpc_call_finish(k, EP_GRPC_UNIMPLEMENTED, "unknown service or method on this port");
        return;
    }
    if (k->gzip_in == 0) {
        const char *e = ep_grpc_call_header(k, "grpc-encoding");
        if (e && strcmp(e, "identity") != 0) {
            ep__grpc_call_finish(k, EP_GRPC_UNIMPLEMENTED, "grpc-encoding not supported; use gzip");
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
            ep__grpc_observe(k);
        }
        nghttp2_session_set_stream_user_data(h2, id, NULL);
        ep__grpc_call_closed(k);
    }
    return 0;
}

/* Registers the stream callbacks above with a server's nghttp2 callbacks. */
void ep__grpc_session_callbacks(nghttp2_session_callbacks *cbs)
{
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
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
