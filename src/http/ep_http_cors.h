#ifndef EP_HTTP_CORS_H
#define EP_HTTP_CORS_H

#include <stddef.h>

#include "base/ep_buf.h"

/*
 * Cross-origin resource sharing (CORS_ALLOWED_ORIGINS): the web origins whose
 * pages a browser lets call the API. Parsed and validated once at start; the
 * HTTP server consults it per request (ep_http_server_opts_t.cors): a
 * preflight OPTIONS from an allowed origin gets 204 with the route's methods
 * and the request headers clients send; other answers to an allowed origin
 * carry Access-Control-Allow-Origin, Vary: Origin and the exposed headers.
 * Any request from a page of another origin (an Origin header neither listed
 * nor the server's own) gets 403 and no CORS header, also where the browser
 * sends without a preflight, so that nothing of it is kept. With no list,
 * that is every other origin.
 * No Access-Control-Allow-Credentials: API keys travel in headers the page
 * sets itself (Authorization, X-API-Key), never in cookies.
 */

/** Request headers a page may send (Access-Control-Allow-Headers of a preflight). */
#define EP_HTTP_CORS_ALLOW_HEADERS "Content-Type, Content-Encoding, Authorization, X-API-Key"
/** Answer headers a page may read besides the safelisted ones. */
#define EP_HTTP_CORS_EXPOSE_HEADERS                                                                \
    "Retry-After, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, WWW-Authenticate"
/** Seconds a browser may cache a preflight's answer (Chromium caps it at 7200). */
#define EP_HTTP_CORS_MAX_AGE "600"

typedef struct ep_http_cors_s ep_http_cors_t;

/**
 * Parses spec: "*" (every origin) or a comma-separated list of origins,
 * scheme://host[:port] each (spaces around commas allowed; scheme and host
 * are lower-cased and a default port, :80 for http and :443 for https, is
 * dropped, as browsers do in the Origin header). An empty or NULL spec sets
 * *out to NULL: no cross-origin access. Returns 0, or EP_ECONFIG with a
 * message in err naming the malformed entry (*out NULL then). The result is
 * the caller's to free with ep_http_cors_destroy; read-only and shareable by
 * any number of threads once made.
 */
int ep_http_cors_create(const char *spec, ep_http_cors_t **out, char *err, size_t errlen);

/**
 * The Access-Control-Allow-Origin value for a request whose Origin header is
 * origin: "*" when every origin is allowed, the listed origin when it matches
 * (case-insensitively), NULL when it is not allowed. The result lives as long
 * as c. Thread-safe.
 */
const char *ep_http_cors_allow(const ep_http_cors_t *c, const char *origin);

/**
 * Whether a request with this Origin comes from a page of the server's own
 * origin: the Origin's host[:port] is the Host header (both as sent), or the
 * browser says so (Sec-Fetch-Site: same-origin; behind a proxy that rewrites
 * Host). host and sec_fetch_site may be NULL. Thread-safe.
 */
int ep_http_cors_same_origin(const char *origin, const char *host, const char *sec_fetch_site);

/**
 * Appends the CORS headers of an answer ("Name: value\r\n" lines): for an
 * allowed origin (allow, from ep_http_cors_allow) Access-Control-Allow-Origin,
 * Access-Control-Expose-Headers and Vary: Origin; with a list of origins,
 * Vary: Origin on every other answer too (the answer depends on the Origin).
 */
void ep_http_cors_put_headers(const ep_http_cors_t *c, const char *allow, ep_buf_t *out);

/** Frees c. Accepts NULL. */
void ep_http_cors_destroy(ep_http_cors_t *c);

#endif /* EP_HTTP_CORS_H */
