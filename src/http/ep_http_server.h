#ifndef EP_HTTP_SERVER_H
#define EP_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"
#include "http/ep_http_cors.h"

/*
 * HTTP/1.1 server (epoll event loops of our own, ep_http_parse): keep-alive,
 * pipelining, chunked request bodies, Expect: 100-continue, HTTP/1.0, bounded
 * headers and bodies, idle, header, body-rate and send timeouts, a memory
 * budget, a connection cap that makes room and a per-client-address limit,
 * and JSON errors for everything it refuses, malformed requests included.
 *
 * A handler runs on a server thread with the whole body in memory. It either
 * answers before returning (ep_http_respond*) or returns without answering, in
 * which case the connection is suspended until some thread answers; the
 * request object stays valid until then. Exactly one answer per request.
 *
 * Before any handler, requests from web pages follow opts.cors
 * (ep_http_cors.h): a CORS preflight from an allowed origin is answered 204 by
 * the server, and a request from a page of an origin neither allowed nor the
 * server's own gets 403.
 */

#define EP_HTTP_GET     0x1
#define EP_HTTP_POST    0x2
#define EP_HTTP_HEAD    0x4 /* implied by GET */
#define EP_HTTP_PUT     0x8
#define EP_HTTP_DELETE  0x10
#define EP_HTTP_OPTIONS 0x20

typedef struct ep_http_server_s ep_http_server_t;
typedef struct ep_http_req_s ep_http_req_t;

typedef void (*ep_http_handler_cb)(void *arg, ep_http_req_t *req);

/**
 * Called once per answered request, on the answering thread, right when the
 * answer is handed over (metrics, access log). req is borrowed for the call.
 */
typedef void (*ep_http_observe_cb)(void *arg, const ep_http_req_t *req, int status);

typedef struct ep_http_server_opts_s {
    const char *name;      /* role name for logs ("gateway") */
    const char *bind_addr; /* "0.0.0.0" */
    int port;              /* 0 = any free port (see ep_http_server_port) */
    int threads;           /* event-loop threads, each with its own epoll set (default 1) */
    size_t max_body;       /* larger bodies: 413 */
    size_t max_header;     /* larger header blocks: 431 */
    int idle_timeout_ms;   /* between requests, from the end of the last answer; and the
                              longest pause inside a request (408) (0: 30 s) */
    int max_connections;   /* per server; at the cap a new one makes room (0: 4096) */
    int retry_after_s;     /* used by ep_http_respond_error for 429 / 503 */
    int header_timeout_ms; /* a head completes within this from its first byte, else 408 (0: 10 s)
                            */
    int body_timeout_ms;   /* a body's deadline starts this far from its head... (0: 20 s) */
    int body_min_rate;     /* ...and each byte received moves it 1/this s later (0: 500) */
    int send_timeout_ms;   /* an answer without write progress this long: close (0: 30 s) */
    int read_timeout_ms;   /* a whole request (head and body) within this of its first byte,
                              else 408 (0: no such bound; Go's ReadTimeout) */
    int write_timeout_ms;  /* a whole answer written within this of its first byte, else
                              close (0: no such bound; Go's WriteTimeout) */
    int max_conns_per_client; /* per client address (0: no limit) */
    size_t memory_limit;      /* bytes of buffered requests and unsent answers (0: 64 MiB) */
    /* CORS_ALLOWED_ORIGINS; NULL: no cross-origin access. Borrowed: outlives the server. */
    const ep_http_cors_t *cors;
    struct ep_tls_s *tls; /* not NULL: every connection speaks TLS (ep_tls.h); borrowed,
                             it outlives the server */
} ep_http_server_opts_t;

typedef struct ep_http_server_stats_s {
    uint64_t requests;
    uint64_t status_2xx, status_4xx, status_5xx;
    int64_t in_flight;
    int64_t connections;            /* open now */
    int64_t memory_held;            /* bytes the connections hold (memory_limit) */
    uint64_t closed_idle;           /* idle between requests past idle_timeout_ms */
    uint64_t closed_header_timeout; /* 408: head past header_timeout_ms or read_timeout_ms */
    uint64_t closed_body_timeout; /* 408: body slower than body_min_rate, or past read_timeout_ms */
    uint64_t closed_stalled;      /* 408: no byte of a started request for idle_timeout_ms */
    uint64_t closed_send_timeout; /* no write progress for send_timeout_ms, or past
                                     write_timeout_ms */
    uint64_t evicted;             /* closed to make room for a new connection at the cap */
    uint64_t refused_full;        /* new connections closed at the cap, nothing to evict */
    uint64_t refused_per_client;  /* new connections over max_conns_per_client (503) */
    uint64_t shed_memory;         /* closed or answered 503 to get under memory_limit */
    uint64_t refused_memory;      /* new requests answered 503 over memory_limit */
    uint64_t paused_memory;       /* large bodies whose reading stopped over memory_limit */
    uint64_t deferred_heavy;      /* heavy requests that waited for a later loop round */
    uint64_t tls_failed;          /* TLS handshakes that failed (plain HTTP to a TLS port...) */
} ep_http_server_stats_t;

/** Creates a server (not listening yet). Returns 0 or EP_E*. opts is copied. */
int ep_http_server_create(const ep_http_server_opts_t *opts, ep_http_server_t **out);

/**
 * Adds a route: exact path match, methods a mask of EP_HTTP_*. A path with
 * other methods answers 405 with Allow; an unknown path 404. Before start only.
 */
void ep_http_server_route(ep_http_server_t *s, unsigned methods, const char *path,
                          ep_http_handler_cb handler, void *arg);

/** Like ep_http_server_route, with its own body limit (0 = the server's max_body). */
void ep_http_server_route_ex(ep_http_server_t *s, unsigned methods, const char *path,
                             ep_http_handler_cb handler, void *arg, size_t max_body);

/** Sets the per-answer observer (NULL = none). Before start only. */
void ep_http_server_set_observer(ep_http_server_t *s, ep_http_observe_cb cb, void *arg);

/** The server's name (opts.name: the role). */
const char *ep_http_server_name(const ep_http_server_t *s);

/** Path of route idx (0-based, in the order added), or NULL past the last one. */
const char *ep_http_server_route_path(const ep_http_server_t *s, int idx);

/** Binds and starts the threads. Returns 0, or EP_EIO with a message in err. */
int ep_http_server_start(ep_http_server_t *s, char *err, size_t errlen);

/** The bound port (after start). */
int ep_http_server_port(const ep_http_server_t *s);

/**
 * Drains: connections that arrive from now on are closed as soon as they are
 * accepted (no answer); requests on open connections are still served but
 * answered with "Connection: close", so keep-alive clients leave. Idempotent;
 * thread-safe.
 */
void ep_http_server_quiesce(ep_http_server_t *s);

/** Counters. Thread-safe. */
void ep_http_server_stats(ep_http_server_t *s, ep_http_server_stats_t *st);

/** Stops the threads and closes every connection; frees the server. Accepts NULL. */
void ep_http_server_destroy(ep_http_server_t *s);

/* ---- request accessors (valid until the request is answered and completed) ---- */

const char *ep_http_req_method(const ep_http_req_t *r);
const char *ep_http_req_path(const ep_http_req_t *r);
/** Request header value (case-insensitive name), or NULL. */
const char *ep_http_req_header(ep_http_req_t *r, const char *name);
/** Query argument value, or NULL. */
const char *ep_http_req_query(ep_http_req_t *r, const char *name);
const char *ep_http_req_body(const ep_http_req_t *r);
size_t ep_http_req_body_len(const ep_http_req_t *r);
/** Monotonic ns when the request's headers arrived. */
int64_t ep_http_req_start_ns(const ep_http_req_t *r);
/** Index of the matched route (see ep_http_server_route_path), or -1 when none matched. */
int ep_http_req_route_index(const ep_http_req_t *r);
/**
 * The client's address (the TCP peer) as 16 bytes, an IPv4 address mapped into
 * IPv6 (::ffff:a.b.c.d). Returns 1, or 0 (out zeroed) when it is not an IP peer.
 */
int ep_http_req_peer(const ep_http_req_t *r, uint8_t out[16]);

/* ---- answering (exactly once per request, from any thread) ---- */

/**
 * Adds a response header to the coming answer (before ep_http_respond*).
 * Every answer carries X-Content-Type-Options: nosniff, and Cache-Control:
 * no-store unless a Cache-Control is added here.
 */
void ep_http_req_add_header(ep_http_req_t *r, const char *name, const char *value);

/** Answers with a copy of body. content_type NULL = application/json. */
void ep_http_respond(ep_http_req_t *r, int status, const char *content_type, const char *body,
                     size_t len);

/** Answers with the contents of b (taken; b is re-initialised). JSON. */
void ep_http_respond_buf(ep_http_req_t *r, int status, ep_buf_t *b);

/**
 * Answers {"error":msg,"field":field} (field omitted when NULL). Adds
 * Retry-After for 429 and 503.
 */
void ep_http_respond_error(ep_http_req_t *r, int status, const char *msg, const char *field);

#endif /* EP_HTTP_SERVER_H */
