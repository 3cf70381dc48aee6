#ifndef EP_HTTP_CLIENT_H
#define EP_HTTP_CLIENT_H

#include <stddef.h>

/*
 * Asynchronous HTTP client on libcurl's multi interface: one thread drives all
 * requests, connections are kept alive and reused per host. Used for the
 * gateway -> ingest -> processor hops and the /api/v1/status aggregate.
 */
typedef struct ep_http_client_s ep_http_client_t;

#define EP_HTTP_CLIENT_MAX_RESPONSE (16u * 1024 * 1024) /* default response body cap */

typedef struct ep_http_response_s {
    int status;        /* HTTP status; 0 when no response arrived */
    int err;           /* 0, or EP_ETIMEDOUT / EP_ECONNREFUSED / EP_E2BIG / EP_EUNAVAIL */
    int sent;          /* the request (or part of it) left: the server may have acted on it */
    const char *error; /* human-readable transport error ("" when none) */
    const char *body;  /* response body (NUL-terminated), borrowed */
    size_t body_len;
    const char *content_type; /* borrowed; "" when absent */
    const char *retry_after;  /* value of Retry-After; "" when absent */
    const char *pass_headers; /* WWW-Authenticate and RateLimit-* lines ("Name: value\n"), or "" */
    const void *ctx;          /* the request's context copy (ep_http_request_opts_t), or NULL */
} ep_http_response_t;

/**
 * Completion callback, called exactly once per accepted request on the client's
 * thread. res and everything it points to are borrowed until the callback returns.
 * It must not block; it may start new requests.
 */
typedef void (*ep_http_done_cb)(void *arg, const ep_http_response_t *res);

/** Creates a client and starts its thread. max_per_host bounds connections per host. */
int ep_http_client_create(int max_per_host, ep_http_client_t **out);

/**
 * TLS for https:// URLs: servers are verified against ca_file (NULL or "": the
 * system store); cert_file and key_file (PEM), when set, are presented to a
 * server that asks for a client certificate (mutual TLS). Call before the
 * first request. Paths are copied; libcurl reads the files per connection.
 */
void ep_http_client_set_tls(ep_http_client_t *c, const char *ca_file, const char *cert_file,
                            const char *key_file);

/**
 * Starts a request. method "GET"/"POST"; body may be NULL. The body is copied.
 * content_type may be NULL. timeout_ms bounds the whole request (connect
 * included). Returns 0 (cb will be called once) or EP_ECLOSED after destroy began
 * (cb never called). Thread-safe.
 */
int ep_http_client_request(ep_http_client_t *c, const char *method, const char *url,
                           const char *content_type, const void *body, size_t body_len,
                           int timeout_ms, ep_http_done_cb cb, void *arg);

/* Options of ep_http_client_request_ex; zero values are the defaults. */
typedef struct ep_http_request_opts_s {
    const char *content_type;     /* sent whole; NULL: none */
    const char *content_encoding; /* sent whole; NULL: none */
    const char *headers; /* extra "Name: value" lines separated by '\n' (at most 6), or NULL */
    size_t max_response; /* response body cap in bytes; 0: EP_HTTP_CLIENT_MAX_RESPONSE.
                            A larger body fails the request with err EP_E2BIG */
    const void *ctx;     /* caller data copied with the request (16-byte aligned copy), */
    size_t ctx_len;      /* handed back as res->ctx: per-request state without a malloc */
} ep_http_request_opts_t;

/**
 * ep_http_client_request with options (opts may be NULL). A CR or LF inside the
 * Content-Type or a header line, or too many lines, is EP_EINVAL (cb never called).
 */
int ep_http_client_request_ex(ep_http_client_t *c, const char *method, const char *url,
                              const ep_http_request_opts_t *opts, const void *body, size_t body_len,
                              int timeout_ms, ep_http_done_cb cb, void *arg);

/**
 * Blocking convenience for tools and tests: runs one request and waits. On return
 * *status holds the HTTP status (0 on transport error) and *body a new
 * NUL-terminated string (caller frees with ep_free), or NULL. Returns 0 or EP_E*.
 */
int ep_http_client_request_sync(ep_http_client_t *c, const char *method, const char *url,
                                const char *content_type, const void *body, size_t body_len,
                                int timeout_ms, int *status, char **body_out);

/** ep_http_client_request_sync with options (opts may be NULL; its ctx is not used). */
int ep_http_client_request_sync_ex(ep_http_client_t *c, const char *method, const char *url,
                                   const ep_http_request_opts_t *opts, const void *body,
                                   size_t body_len, int timeout_ms, int *status, char **body_out);

/**
 * Stops the thread. Requests still in flight complete with err EP_ECLOSED (their
 * callbacks run before destroy returns). Accepts NULL.
 */
void ep_http_client_destroy(ep_http_client_t *c);

#endif /* EP_HTTP_CLIENT_H */
