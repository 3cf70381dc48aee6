#ifndef EP_HTTP_PARSE_H
#define EP_HTTP_PARSE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/ep_buf.h"

/*
 * HTTP/1.x request parsing without I/O: finding the end of a request head,
 * parsing it in place, decoding a chunked body piece by piece, and splitting
 * a query string. Every refusal comes with the HTTP status to answer and a
 * static message saying what is wrong. No allocation except into the ep_buf
 * a caller passes.
 */

#define EP_HTTP_MAX_FIELDS 64

typedef struct ep_http_field_s {
    char *name; /* as sent; compare case-insensitively */
    char *value;
} ep_http_field_t;

typedef struct ep_http_head_s {
    char *method; /* NUL-terminated, inside the parsed buffer */
    char *path;   /* percent-decoded, without the query */
    char *query;  /* raw text after '?', or NULL */
    int minor;    /* HTTP/1.<minor> */
    int n_fields;
    ep_http_field_t fields[EP_HTTP_MAX_FIELDS];
    int64_t content_length; /* -1 when absent */
    int chunked;            /* Transfer-Encoding: chunked */
    int keep_alive;         /* by version and Connection */
    int expect_continue;    /* Expect: 100-continue */
} ep_http_head_t;

/**
 * Looks for a complete request head in buf[0, len). Returns its length up to
 * and including the blank line, or 0 when more bytes are needed. *skip gets
 * the number of empty lines before the request line (ignored, RFC 9112 2.2);
 * the head starts at buf + *skip.
 */
size_t ep_http_head_end(const char *buf, size_t len, size_t *skip);

/**
 * Parses a head found by ep_http_head_end (without the skipped lines), in
 * place: names, values and the path are NUL-terminated inside p. Returns 0, or
 * the HTTP status to refuse with (400, 431, 501, 505) and *err a static
 * message. h's pointers point into p.
 */
int ep_http_parse_head(char *p, size_t len, ep_http_head_t *h, const char **err);

/** Value of a header (case-insensitive name), or NULL. */
const char *ep_http_head_field(const ep_http_head_t *h, const char *name);

/** Chunked body decoder state; zero it (or ep_http_chunked_init) per body. */
typedef struct ep_http_chunked_s {
    int state;
    uint64_t left;  /* bytes of the current chunk still to come */
    size_t line;    /* bytes of the current size or trailer line */
    size_t trailer; /* bytes of trailers so far */
} ep_http_chunked_t;

void ep_http_chunked_init(ep_http_chunked_t *c);

/**
 * Feeds in[0, len) to the decoder, appending chunk data to out. Returns the
 * bytes consumed (all of them unless the body ended inside in) and sets *done
 * once the last chunk and its trailers are read. Returns EP_EPARSE when the
 * encoding is malformed, EP_E2BIG when out would grow past max; *err says why.
 */
ssize_t ep_http_chunked_feed(ep_http_chunked_t *c, const char *in, size_t len, ep_buf_t *out,
                             size_t max, int *done, const char **err);

/**
 * Splits a query string in place ("a=1&b=x%20y"): decodes '+' and %XX, stores
 * up to max pairs (a name without '=' gets ""). Returns the number stored.
 */
int ep_http_query_split(char *q, char **names, char **values, int max);

#endif /* EP_HTTP_PARSE_H */
