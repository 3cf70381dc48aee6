#ifndef EP_GRPC_SERVER_H
#define EP_GRPC_SERVER_H

#include <stddef.h>
#include <stdint.h>

/*
 * gRPC server (issue 16): HTTP/2 by nghttp2 in epoll loops of our own (one
 * thread per loop, SO_REUSEPORT listeners), h2c with prior knowledge or TLS
 * (ep_tls, ALPN h2), the gRPC message framing of ep_grpc_wire.h, gzip message
 * compression both ways, grpc-timeout deadlines, keepalive pings, a maximum
 * message size, and GOAWAY for a graceful stop.
 *
 * A method is an exact path ("/eventpipe.v1.ProducerService/SendEvent") and a
 * handler. The handler runs on a loop thread with one request message (whole,
 * decompressed, valid only while the handler runs). It answers exactly once per invocation, now or
 * later from any thread, with ep_grpc_answer: a message to send (or none) and, when code >= 0, the
 * call's final status. A call whose handler has not answered gets no other message: a stream's next
 * message waits (HTTP/2 flow control holds the client back), which keeps a stream's answers in
 * order.
 *
 *   EP_GRPC_UNARY   one message in, one answer with a status
 *   EP_GRPC_STREAM  the handler runs for every message; answers with code -1
 *                   keep the call open; at the client's end of stream it runs
 *                   once more with msg NULL and must end the call (code >= 0)
 *   EP_GRPC_WATCH   one message in; the handler answers with code -1 and runs
 *                   again with the same message about once a second until the
 *                   client leaves or the server stops (server streaming)
 */

enum { EP_GRPC_UNARY = 0, EP_GRPC_STREAM = 1, EP_GRPC_WATCH = 2 };

typedef struct ep_grpc_server_s ep_grpc_server_t;
typedef struct ep_grpc_call_s ep_grpc_call_t;

/** msg NULL: the client's stream ended (EP_GRPC_STREAM only). */
typedef void (*ep_grpc_handler_cb)(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);

/** Called once per finished call, on the loop thread (metrics). method: the path. */
typedef void (*ep_grpc_observe_cb)(void *arg, int method, int code, int64_t start_ns);

typedef struct ep_grpc_server_opts_s {
    const char *name;         /* role for logs ("producer") */
    const char *bind_addr;    /* "0.0.0.0" */
    int port;                 /* 0: any free port (ep_grpc_server_port) */
    int threads;              /* loops (default 1) */
    size_t max_message;       /* largest request message, after decompression (0: 4 MiB) */
    int keepalive_ms;         /* PING a connection silent this long (0: 2 h) */
    int keepalive_timeout_ms; /* close when the PING is not answered within (0: 20 s) */
    int max_streams;          /* concurrent streams per connection (0: 100) */
    int max_connections;      /* per loop (0: 4096) */
    struct ep_tls_s *tls;     /* not NULL: TLS with ALPN h2 (borrowed) */
} ep_grpc_server_opts_t;

/** Creates a server (not listening). Returns 0 or EP_E*. */
int ep_grpc_server_create(const ep_grpc_server_opts_t *opts, ep_grpc_server_t **out);

/** Adds a method; returns its index (for the observer). Before start only. */
int ep_grpc_server_method(ep_grpc_server_t *s, const char *path, int kind, ep_grpc_handler_cb cb,
                          void *arg);

/** The path of method idx, or NULL. */
const char *ep_grpc_server_method_path(const ep_grpc_server_t *s, int idx);

void ep_grpc_server_set_observer(ep_grpc_server_t *s, ep_grpc_observe_cb cb, void *arg);

/** Binds and starts the loops. Returns 0, or EP_EIO with "why" in err. */
int ep_grpc_server_start(ep_grpc_server_t *s, char *err, size_t errlen);

/** The bound port. */
int ep_grpc_server_port(const ep_grpc_server_t *s);

/**
 * Graceful stop, first step: closes the listeners and sends GOAWAY on every
 * connection (calls under way finish; new ones go elsewhere). Idempotent;
 * thread-safe.
 */
void ep_grpc_server_quiesce(ep_grpc_server_t *s);

/** Calls whose handler has not answered yet. Thread-safe. */
int64_t ep_grpc_server_busy(ep_grpc_server_t *s);

/** Stops the loops, closes every connection, frees. Accepts NULL. */
void ep_grpc_server_destroy(ep_grpc_server_t *s);

/* ---- the call (valid while its handler runs, and until it answered) ---- */

/** A request header (metadata), lower-case name; NULL when absent. Handler thread only. */
const char *ep_grpc_call_header(const ep_grpc_call_t *c, const char *name);

/** The client's address, 16 bytes (IPv4 mapped). 1, or 0 when not an IP peer. */
int ep_grpc_call_peer(const ep_grpc_call_t *c, uint8_t out[16]);

/** Monotonic ns when the call's headers arrived. */
int64_t ep_grpc_call_start_ns(const ep_grpc_call_t *c);

/** The method index. */
int ep_grpc_call_method(const ep_grpc_call_t *c);

/** An int the handler may keep between invocations of one call (0 at first). */
int *ep_grpc_call_state(ep_grpc_call_t *c);

/**
 * Answers the current invocation (see above). msg (len bytes, copied) may be
 * NULL; message is the status text for code > 0 (copied; NULL: none). Any
 * thread; exactly once per handler invocation.
 */
void ep_grpc_answer(ep_grpc_call_t *c, const void *msg, size_t len, int code, const char *message);

#endif /* EP_GRPC_SERVER_H */
