#ifndef EP_GRPC_SERVER_INT_H
#define EP_GRPC_SERVER_INT_H

/*
 * Private layout of the gRPC server, shared by ep_grpc_server.c (connections,
 * loops, listeners, the server object) and ep_grpc_server_call.c (calls,
 * answers, the nghttp2 stream callbacks). Nothing here leaves src/grpc/.
 */
#include "base/ep_buf.h"
#include "grpc/ep_grpc_server.h"
#include "http/ep_tls.h"

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define MAX_METHODS 32
#define READ_CHUNK  (64 * 1024)

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

/* The loop the calling thread runs (NULL outside the loops). */
extern __thread loop_t *ep__grpc_tl_loop;

/* ---- ep_grpc_server_call.c: calls, on their loop's thread. */

/** Frees a call and its buffers (on no list any more). */
void ep__grpc_call_destroy(ep_grpc_call_t *k);

/** The stream is gone (closed, reset, or its connection closed). */
void ep__grpc_call_closed(ep_grpc_call_t *k);

/** Queues c for a flush after this round. Accepts NULL. */
void ep__grpc_mark_dirty(conn_t *c);

/** Reports the call's outcome to the server's observer, once. */
void ep__grpc_observe(ep_grpc_call_t *k);

/** Ends the call with a status (trailers), code and text. */
void ep__grpc_call_finish(ep_grpc_call_t *k, int code, const char *text);

/** Hands one request message to the call's handler. */
void ep__grpc_invoke(ep_grpc_call_t *k, const uint8_t *msg, size_t len);

/** Applies the answers posted to l, in order. */
void ep__grpc_drain_posted(loop_t *l);

/** Registers the stream callbacks (headers, data, frames, close) in cbs. */
void ep__grpc_session_callbacks(nghttp2_session_callbacks *cbs);

#endif /* EP_GRPC_SERVER_INT_H */
