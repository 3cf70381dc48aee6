/*
 * CORS_ALLOWED_ORIGINS: parsing and validating the list of origins, matching
 * a request's Origin header, and the CORS headers of an answer. The preflight
 * itself (OPTIONS with Access-Control-Request-Method) is answered by the HTTP
 * server before any route runs (ep_http_server.c, start_request).
 */
#include "http/ep_http_cors.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct ep_http_cors_s {
    int any;        /* "*": every origin */
    int n;          /* listed origins */
    char **origins; /* normalised: lower-case scheme://host[:port], no default port */
};

static int fail(char *err, size_t errlen, const char *entry, size_t len, const char *why)
{
    snprintf(err, errlen, "'%.*s' is not an origin (scheme://host[:port]): %s", (int)len, entry,
             why);
    return EP_ECONFIG;
}

/* The host part of p[0, n): a name, an IPv4 address or a bracketed IPv6 one. Its length, or 0. */
static size_t host_len(const char *p, size_t n, const char **why)
{
    size_t i = 0;

    if (n > 0 && p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++) {
            if (!isxdigit((unsigned char)p[i]) && p[i] != ':' && p[i] != '.') {
                *why = "an IPv6 address holds only hex digits, ':' and '.'";
                return 0;
            }
        }
        if (i == n || i < 3) {
            *why = "an IPv6 address needs its closing ']'";
            return 0;
        }
        return i + 1;
    }
    for (; i < n && p[i] != ':' && p[i] != '/' && p[i] != '?' && p[i] != '#'; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '*') {
            *why = "wildcards are not supported: list each origin, or set '*' alone";
            return 0;
        }
        if (!isalnum(ch) && ch != '-' && ch != '.') {
            *why = "a host name holds only letters, digits, '-' and '.'";
            return 0;
        }
        if (ch == '.' && (i == 0 || p[i - 1] == '.')) {
            *why = "a host name has no empty label";
            return 0;
        }
    }
    if (i == 0) {
        *why = "it has no host";
    }
    return i;
}

/*
 * Validates the origin p[0, n) and writes its normalised form to out (room
 * for n + 1 bytes; normalising only shortens). 0 or EP_ECONFIG with err.
 */
static int parse_origin(const char *p, size_t n, char *out, char *err, size_t errlen)
{
    const char *sep = NULL, *why = "";
    size_t i, slen, hlen, o = 0;
    long port = -1;

    for (i = 0; i + 3 <= n; i++) {
        if (memcmp(p + i, "://", 3) == 0) {
            sep = p + i;
            break;
        }
    }
    if (sep == NULL) {
        return fail(err, errlen, p, n, "it has no scheme:// (e.g. https://app.example.com)");
    }
    slen = (size_t)(sep - p);
    if (slen == 0 || !isalpha((unsigned char)p[0])) {
        return fail(err, errlen, p, n, "its scheme must start with a letter");
    }
    for (i = 0; i < slen; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (!isalnum(ch) && ch != '+' && ch != '-' && ch != '.') {
            return fail(err, errlen, p, n, "its scheme holds only letters, digits, '+', '-', '.'");
        }
        out[o++] = (char)tolower(ch);
    }
    memcpy(out + o, "://", 3);
    o += 3;
    p += slen + 3;
    n -= slen + 3;
    hlen = host_len(p, n, &why);
    if (hlen == 0) {
        return fail(err, errlen, p - slen - 3, n + slen + 3, why);
    }
    for (i = 0; i < hlen; i++) {
        out[o++] = (char)tolower((unsigned char)p[i]);
    }
    if (hlen < n && p[hlen] == ':') {
        char *end;
        if (hlen + 1 == n || !isdigit((unsigned char)p[hlen + 1])) {
            return fail(err, errlen, p - slen - 3, n + slen + 3, "its port is not a number");
        }
        port = strtol(p + hlen + 1, &end, 10);
        if (end != p + n) {
            return fail(err, errlen, p - slen - 3, n + slen + 3,
                        *end == '/' ? "an origin has no path: drop it, and any trailing '/'"
                                    : "an origin ends after its host and port");
        }
        if (port < 1 || port > 65535) {
            return fail(err, errlen, p - slen - 3, n + slen + 3,
                        "its port is not a number from 1 to 65535");
        }
    } else if (hlen < n) {
        return fail(err, errlen, p - slen - 3, n + slen + 3,
                    p[hlen] == '/' ? "an origin has no path: drop it, and any trailing '/'"
                                   : "an origin ends after its host and port");
    }
    /* Browsers leave the scheme's default port out of Origin. */
    if (port > 0 && !((port == 80 && strncmp(out, EP_STRLIT("http://")) == 0) ||
                      (port == 443 && strncmp(out, EP_STRLIT("https://")) == 0))) {
        o += (size_t)sprintf(out + o, ":%ld", port);
    }
    out[o] = '\0';
    return 0;
}

static void trim(const char **p, size_t *n)
{
    while (*n > 0 && isspace((unsigned char)**p)) {
        (*p)++;
        (*n)--;
    }
    while (*n > 0 && isspace((unsigned char)(*p)[*n - 1])) {
        (*n)--;
    }
}

int ep_http_cors_create(const char *spec, ep_http_cors_t **out, char *err, size_t errlen)
{
    ep_http_cors_t *c;
    const char *p = spec ? spec : "";
    size_t n = strlen(p);
    int rc;

    *out = NULL;
    trim(&p, &n);
    if (n == 0) {
        return 0;
    }
    c = ep_calloc(1, sizeof(*c));
    if (n == 1 && p[0] == '*') {
        c->any = 1;
        *out = c;
        return 0;
    }
    for (;;) {
        const char *comma = memchr(p, ',', n);
        size_t len = comma ? (size_t)(comma - p) : n;
        const char *e = p;
        size_t elen = len;
        char *norm;

        trim(&e, &elen);
        if (elen == 0) {
            snprintf(err, errlen,
                     "an empty entry in the list (two commas in a row, or one at "
                     "an end)");
            rc = EP_ECONFIG;
            goto err;
        }
        if (elen == 1 && e[0] == '*') {
            snprintf(err, errlen, "'*' allows every origin: set it alone, not in a list");
            rc = EP_ECONFIG;
            goto err;
        }
        if (elen == 4 && strncasecmp(e, "null", 4) == 0) {
            snprintf(err, errlen,
                     "'null' is not an origin that can be trusted (sandboxed pages "
                     "and local files all send it)");
            rc = EP_ECONFIG;
            goto err;
        }
        norm = ep_malloc(elen + 1);
        if ((rc = parse_origin(e, elen, norm, err, errlen)) != 0) {
            ep_free(norm);
            goto err;
        }
        c->origins = ep_realloc(c->origins, (size_t)(c->n + 1) * sizeof(char *));
        c->origins[c->n++] = norm;
        if (comma == NULL) {
            break;
        }
        p = comma + 1;
        n -= len + 1;
    }
    *out = c;
    return 0;
err:
    ep_http_cors_destroy(c);
    return rc;
}

const char *ep_http_cors_allow(const ep_http_cors_t *c, const char *origin)
{
    if (c->any) {
        return "*";
    }
    for (int i = 0; i < c->n; i++) {
        if (strcasecmp(c->origins[i], origin) == 0) {
            return c->origins[i];
        }
    }
    return NULL;
}

int ep_http_cors_same_origin(const char *origin, const char *host, const char *sec_fetch_site)
{
    const char *authority = strstr(origin, "://");

    if (authority != NULL && host != NULL && strcasecmp(authority + 3, host) == 0) {
        return 1;
    }
    return sec_fetch_site != NULL && strcmp(sec_fetch_site, "same-origin") == 0;
}

void ep_http_cors_put_headers(const ep_http_cors_t *c, const char *allow, ep_buf_t *out)
{
    if (allow) {
        ep_buf_append(out, EP_STRLIT("Access-Control-Allow-Origin: "));
        ep_buf_puts(out, allow);
        ep_buf_append(
            out,
            EP_STRLIT("\r\nAccess-Control-Expose-Headers: " EP_HTTP_CORS_EXPOSE_HEADERS "\r\n"));
    }
    if (allow || !c->any) {
        ep_buf_append(out, EP_STRLIT("Vary: Origin\r\n"));
    }
}

void ep_http_cors_destroy(ep_http_cors_t *c)
{
    if (c == NULL) {
        return;
    }
    for (int i = 0; i < c->n; i++) {
        ep_free(c->origins[i]);
    }
    ep_free(c->origins);
    ep_free(c);
}
