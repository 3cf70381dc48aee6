#ifndef EP_ERROR_H
#define EP_ERROR_H

#include <errno.h>

/*
 * Error codes. Every fallible function returns 0 (EP_OK) on success or one of
 * these negative codes. Details go to the object's last error or to the log.
 */
#define EP_ERRNO_MAP(XX)                                                                           \
    XX(EINVAL, -EINVAL, "invalid argument")                                                        \
    XX(ENOMEM, -ENOMEM, "out of memory")                                                           \
    XX(EIO, -EIO, "input/output error")                                                            \
    XX(EAGAIN, -EAGAIN, "resource temporarily unavailable")                                        \
    XX(ETIMEDOUT, -ETIMEDOUT, "timed out")                                                         \
    XX(ENOENT, -ENOENT, "not found")                                                               \
    XX(EEXIST, -EEXIST, "already exists")                                                          \
    XX(E2BIG, -E2BIG, "too large")                                                                 \
    XX(ENOTSUP, -ENOTSUP, "not supported")                                                         \
    XX(ECONNREFUSED, -ECONNREFUSED, "connection refused")                                          \
    XX(EFULL, -10001, "queue is full")                                                             \
    XX(ECLOSED, -10002, "queue is closed")                                                         \
    XX(EPARSE, -10003, "malformed input")                                                          \
    XX(EVALIDATE, -10004, "validation failed")                                                     \
    XX(EUNAVAIL, -10005, "downstream unavailable")                                                 \
    XX(EPROTO, -10006, "protocol error")                                                           \
    XX(ECONFIG, -10007, "invalid configuration")                                                   \
    XX(ECIRCUIT, -10008, "circuit breaker open")

typedef enum {
    EP_OK = 0,
#define XX(name, val, msg) EP_##name = (val),
    EP_ERRNO_MAP(XX)
#undef XX
} ep_errno_t;

/* Translates a positive errno at the boundary into an EP_ code. */
#define EP__ERR(e) (-(e))

/** Human-readable text of an error code. Never NULL; thread-safe. */
const char *ep_strerror(int err);

/** Symbolic name of an error code ("EP_EFULL"). Never NULL; thread-safe. */
const char *ep_err_name(int err);

#endif /* EP_ERROR_H */
