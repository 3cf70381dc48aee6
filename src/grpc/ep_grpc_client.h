#ifndef EP_GRPC_CLIENT_H
#define EP_GRPC_CLIENT_H

#include <stddef.h>
#include <stdint.h>

/*
 * A small gRPC client for the tools (`eventpipe send --grpc`, `eventpipe bench
 * --grpc`): one HTTP/2 connection (nghttp2) driven by its caller's loop,
 * unary calls multiplexed on it, h2c with prior knowledge or TLS (ALPN h2).
 * Not thread-safe: one thread per connection.
 */

typedef struct ep_grpc_conn_s ep_grpc_conn_t;
typedef struct ssl_ctx_st SSL_CTX;

/**
 * A call's outcome, on the thread that drives the connection: the gRPC status
 * code (14 UNAVAILABLE when the connection failed), its message ("" when
 * none) and the response message (NULL when none).
 */
typedef void (*ep_grpc_client_cb)(void *arg, int code, const char *message, const uint8_t *msg,
                                  size_t len);

/**
 * Connects to host:port (numeric IPv4 or a name) and, with tls, finishes the
 * handshake; blocks up to timeout_ms. 0, or EP_E* with err filled.
 */
int ep_grpc_conn_open(const char *host, int port, SSL_CTX *tls, int timeout_ms,
                      ep_grpc_conn_t **out, char *err, size_t errlen);

/**
 * Starts a unary call of path with msg (len bytes, copied); authorization (NULL:
 * none) is sent as that metadata, timeout_ms > 0 as grpc-timeout. cb runs once,
 * from ep_grpc_conn_io or ep_grpc_conn_close. 0, or EP_E* (nothing started).
 */
int ep_grpc_conn_call(ep_grpc_conn_t *c, const char *path, const char *authorization,
                      const void *msg, size_t len, int timeout_ms, ep_grpc_client_cb cb, void *arg);

/**
 * ep_grpc_conn_call without the copy: msg must stay unchanged until cb has run
 * (the bench sends one fixed message on every call).
 */
int ep_grpc_conn_call_ref(ep_grpc_conn_t *c, const char *path, const char *authorization,
                          const void *msg, size_t len, int timeout_ms, ep_grpc_client_cb cb,
                          void *arg);

/** The socket, for the caller's poll/epoll (read; and write while ep_grpc_conn_want_write). */
int ep_grpc_conn_fd(const ep_grpc_conn_t *c);

/** 1 while frames wait to be written. */
int ep_grpc_conn_want_write(const ep_grpc_conn_t *c);

/** Reads what arrived and writes what waits (runs callbacks). 0, or -1: the connection is dead. */
int ep_grpc_conn_io(ep_grpc_conn_t *c);

/** Writes what waits, without reading (after starting calls). 0, or -1: dead. */
int ep_grpc_conn_flush(ep_grpc_conn_t *c);

/** Calls in flight. */
int ep_grpc_conn_inflight(const ep_grpc_conn_t *c);

/** Closes; calls in flight end with UNAVAILABLE. Accepts NULL. */
void ep_grpc_conn_close(ep_grpc_conn_t *c);

/** Waits (poll) up to timeout_ms for c's socket, then ep_grpc_conn_io. 0 or -1 as that. */
int ep_grpc_conn_wait(ep_grpc_conn_t *c, int timeout_ms);

#endif /* EP_GRPC_CLIENT_H */
