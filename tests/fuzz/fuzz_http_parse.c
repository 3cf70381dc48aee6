/*
 * Fuzz target: arbitrary bytes as what a client sends -> ep_http_head_end,
 * ep_http_parse_head, ep_http_query_split, and the rest as a chunked body,
 * fed once whole and once in small pieces: both feeds must agree. A parsed
 * head must be well-formed; any broken invariant aborts.
 */
#include "base/ep_buf.h"
#include "http/ep_http_parse.h"
#include "base/ep_mem.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_http_parse: %s:%d: %s\n", __FILE__, __LINE__, #c);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int no_ctl(const char *s)
{
    for (; *s; s++) {
        if (*s == '\r' || *s == '\n') {
            return 0;
        }
    }
    return 1;
}

static void check_head(const ep_http_head_t *h)
{
    CHECK(h->method && *h->method && no_ctl(h->method) && strchr(h->method, ' ') == NULL);
    CHECK(h->path && (h->path[0] == '/' || strcmp(h->path, "*") == 0));
    CHECK(h->minor >= 0 && h->minor <= 9);
    CHECK(h->n_fields >= 0 && h->n_fields <= EP_HTTP_MAX_FIELDS);
    for (int i = 0; i < h->n_fields; i++) {
        CHECK(*h->fields[i].name && strchr(h->fields[i].name, ':') == NULL);
        CHECK(no_ctl(h->fields[i].name) && no_ctl(h->fields[i].value));
    }
    CHECK(h->content_length >= -1);
    CHECK(!(h->chunked && h->content_length >= 0));
    if (h->query) {
        char *names[8], *values[8];
        int n = ep_http_query_split(h->query, names, values, 8);
        CHECK(n >= 0 && n <= 8);
        for (int i = 0; i < n; i++) {
            CHECK(names[i] && values[i]);
        }
    }
}

/* Decodes body as chunked, in pieces of step bytes. Returns the feed's result. */
static ssize_t decode(const char *body, size_t len, size_t step, ep_buf_t *out, int *done)
{
    ep_http_chunked_t c;
    size_t off = 0;
    const char *err = NULL;

    ep_http_chunked_init(&c);
    *done = 0;
    while (off < len && !*done) {
        size_t n = len - off < step ? len - off : step;
        ssize_t r = ep_http_chunked_feed(&c, body + off, n, out, 4096, done, &err);
        if (r < 0) {
            CHECK(err != NULL);
            return r;
        }
        CHECK((size_t)r <= n);
        CHECK((size_t)r == n || *done);
        off += (size_t)r;
    }
    CHECK(out->len <= 4096);
    return (ssize_t)off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t skip = 0, hl = ep_http_head_end(in, size, &skip), rest;
    const char *body;
    ep_buf_t a = EP_BUF_INIT, b = EP_BUF_INIT;
    int done_a, done_b;
    ssize_t ra, rb;

    CHECK(skip <= size);
    if (hl > 0) {
        char *copy = ep_malloc(hl + 1);
        ep_http_head_t h;
        const char *err = NULL;
        int rc;

        CHECK(skip + hl <= size);
        memcpy(copy, in + skip, hl);
        copy[hl] = '\0';
        rc = ep_http_parse_head(copy, hl, &h, &err);
        if (rc == 0) {
            check_head(&h);
        } else {
            CHECK(err != NULL && (rc == 400 || rc == 431 || rc == 501 || rc == 505));
        }
        ep_free(copy);
    }
    body = in + skip + hl;
    rest = size - skip - hl;
    ra = decode(body, rest, rest ? rest : 1, &a, &done_a);
    rb = decode(body, rest, 3, &b, &done_b);
    CHECK((ra < 0) == (rb < 0));
    if (ra >= 0) {
        CHECK(ra == rb && done_a == done_b);
        CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    }
    ep_buf_close(&a);
    ep_buf_close(&b);
    return 0;
}
