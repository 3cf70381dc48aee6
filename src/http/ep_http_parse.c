/*
 * HTTP/1.x request parsing (RFC 9112), strict where leniency lets requests be
 * read two ways (both Content-Length and Transfer-Encoding, differing
 * Content-Lengths, folded lines, space before a colon), lenient where it
 * costs nothing (bare LF line ends, empty lines before the request line).
 * A bare CR is refused everywhere, chunk extensions and trailers included.
 */
#include "http/ep_http_parse.h"
#include "base/ep_error.h"
#include "base/ep_str.h"

#include <string.h>
#include <strings.h>

/* tchar of RFC 9110 5.6.2: the characters of methods and field names. */
static int is_tchar(unsigned char c)
{
    static const char extra[] = "!#$%&'*+-.^_`|~";

    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && memchr(extra, c, sizeof(extra) - 1) != NULL);
}

static int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t ep_http_head_end(const char *buf, size_t len, size_t *skip)
{
    size_t i = 0;
    const char *p;

    while (i < len && (buf[i] == '\n' || buf[i] == '\r')) {
        if (buf[i] == '\r' && (i + 1 >= len || buf[i + 1] != '\n')) {
            break; /* a lone CR: the request line will refuse it */
        }
        i += buf[i] == '\r' ? 2 : 1;
    }
    *skip = i;
    p = buf + i;
    while ((p = memchr(p, '\n', (size_t)(buf + len - p))) != NULL) {
        size_t k = (size_t)(p - buf);
        if (k + 1 >= len) {
            return 0;
        }
        if (buf[k + 1] == '\n') {
            return k + 2 - i;
        }
        if (buf[k + 1] == '\r') {
            if (k + 2 >= len) {
                return 0;
            }
            if (buf[k + 2] == '\n') {
                return k + 3 - i;
            }
        }
        p++;
    }
    return 0;
}

/* Decodes %XX in place; returns -1 on a decoded NUL. */
static int pct_decode(char *s, int plus_is_space)
{
    char *w = s;

    for (char *r = s; *r; r++) {
        int hi, lo;
        if (*r == '%' && (hi = hex_val((unsigned char)r[1])) >= 0 &&
            (lo = hex_val((unsigned char)r[2])) >= 0) {
            *w = (char)(hi * 16 + lo);
            if (*w == '\0') {
                return -1;
            }
            w++;
            r += 2;
        } else {
            *w++ = plus_is_space && *r == '+' ? ' ' : *r;
        }
    }
    *w = '\0';
    return 0;
}

/* 1 when the comma-separated list v holds token t (case-insensitive). */
static int has_token(const char *v, const char *t)
{
    size_t tl = strlen(t);

    while (*v) {
        size_t n;
        while (*v == ' ' || *v == '\t' || *v == ',') {
            v++;
        }
        n = strcspn(v, ", \t");
        if (n == tl && strncasecmp(v, t, tl) == 0) {
            return 1;
        }
        v += n;
    }
    return 0;
}

static int fail(const char **err, const char *msg, int status)
{
    *err = msg;
    return status;
}

/* Interprets the fields that frame the message. Returns 0 or a status. */
static int framing(ep_http_head_t *h, const char **err)
{
    int have_host = 0;

    h->content_length = -1;
    h->keep_alive = h->minor >= 1;
    for (int i = 0; i < h->n_fields; i++) {
        const char *n = h->fields[i].name, *v = h->fields[i].value;
        if (strcasecmp(n, "Content-Length") == 0) {
            int64_t cl = 0;
            if (*v == '\0' || strlen(v) > 15 || v[strspn(v, "0123456789")] != '\0') {
                return fail(err, "Content-Length is not a number", 400);
            }
            for (const char *d = v; *d; d++) {
                cl = cl * 10 + (*d - '0');
            }
            if (h->content_length >= 0 && h->content_length != cl) {
                return fail(err, "Content-Length is given twice, with different values", 400);
            }
            h->content_length = cl;
        } else if (strcasecmp(n, "Transfer-Encoding") == 0) {
            if (h->chunked || strcasecmp(v, "chunked") != 0) {
                return fail(err, "Transfer-Encoding other than chunked is not supported", 501);
            }
            h->chunked = 1;
        } else if (strcasecmp(n, "Connection") == 0) {
            if (has_token(v, "close")) {
                h->keep_alive = 0;
            } else if (has_token(v, "keep-alive")) {
                h->keep_alive = 1;
            }
        } else if (strcasecmp(n, "Expect") == 0) {
            h->expect_continue = strcasecmp(v, "100-continue") == 0;
        } else if (strcasecmp(n, "Host") == 0) {
            if (have_host++) {
                return fail(err, "Host is given twice", 400);
            }
        }
    }
    if (h->chunked && h->content_length >= 0) {
        return fail(err, "both Content-Length and Transfer-Encoding are given", 400);
    }
    if (h->minor >= 1 && !have_host) {
        return fail(err, "an HTTP/1.1 request needs a Host header", 400);
    }
    return 0;
}

/* The request line p[0, n) (line end excluded). */
static int request_line(char *p, size_t n, ep_http_head_t *h, const char **err)
{
    char *sp1 = memchr(p, ' ', n), *sp2, *v, *t;
    size_t vn;

    if (sp1 == NULL || sp1 == p || sp1 - p > 32) {
        return fail(err, "malformed request line", 400);
    }
    for (char *c = p; c < sp1; c++) {
        if (!is_tchar((unsigned char)*c)) {
            return fail(err, "malformed method in the request line", 400);
        }
    }
    sp2 = memchr(sp1 + 1, ' ', (size_t)(p + n - sp1 - 1));
    if (sp2 == NULL || sp2 == sp1 + 1) {
        return fail(err, "malformed request line", 400);
    }
    for (char *c = sp1 + 1; c < sp2; c++) {
        if ((unsigned char)*c <= 0x20 || *c == 0x7f) {
            return fail(err, "control character in the request target", 400);
        }
    }
    v = sp2 + 1;
    vn = (size_t)(p + n - v);
    if (vn != 8 || memcmp(v, EP_STRLIT("HTTP/")) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9') {
        return fail(err, "malformed HTTP version in the request line", 400);
    }
    if (v[5] != '1') {
        return fail(err, "only HTTP/1.0 and HTTP/1.1 are supported", 505);
    }
    h->minor = v[7] - '0';
    *sp1 = '\0';
    *sp2 = '\0';
    h->method = p;
    t = sp1 + 1;
    if (strncasecmp(t, EP_STRLIT("http://")) == 0 || strncasecmp(t, EP_STRLIT("https://")) == 0) {
        /* absolute-form: the path starts after the authority */
        char *s = strchr(t + (t[4] == ':' ? 7 : 8), '/');
        if (s == NULL) {
            t = sp2; /* "http://host": the path is "/" */
            t[0] = '/';
            t[1] = '\0'; /* overwrites the version, already read */
        } else {
            t = s;
        }
    } else if (t[0] != '/' && strcmp(t, "*") != 0) {
        return fail(err, "the request target is not a path", 400);
    }
    h->path = t;
    if ((t = strchr(t, '?')) != NULL) {
        *t = '\0';
        h->query = t + 1;
    }
    if (pct_decode(h->path, 0) != 0) {
        return fail(err, "NUL byte in the request path", 400);
    }
    return 0;
}

int ep_http_parse_head(char *p, size_t len, ep_http_head_t *h, const char **err)
{
    char *end = p + len, *line = p, *nl;
    int rc;

    memset(h, 0, sizeof(*h));
    nl = memchr(line, '\n', len);
    if (nl == NULL) {
        return fail(err, "malformed request line", 400);
    }
    rc = request_line(line, (size_t)(nl - line) - (nl > line && nl[-1] == '\r'), h, err);
    if (rc != 0) {
        return rc;
    }
    for (line = nl + 1; line < end; line = nl + 1) {
        char *colon, *v, *ve;
        nl = memchr(line, '\n', (size_t)(end - line));
        if (nl == NULL) {
            return fail(err, "malformed header line", 400);
        }
        ve = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        if (ve == line) {
            break; /* the blank line */
        }
        if (*line == ' ' || *line == '\t') {
            return fail(err, "folded header lines are not accepted", 400);
        }
        colon = memchr(line, ':', (size_t)(ve - line));
        if (colon == NULL || colon == line) {
            return fail(err, "header line without a name and a colon", 400);
        }
        for (char *c = line; c < colon; c++) {
            if (!is_tchar((unsigned char)*c)) {
                return fail(err, "invalid character in a header name", 400);
            }
        }
        for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++) {
        }
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) {
            ve--;
        }
        for (char *c = v; c < ve; c++) {
            if (((unsigned char)*c < 0x20 && *c != '\t') || *c == 0x7f) {
                return fail(err, "control character in a header value", 400);
            }
        }
        if (h->n_fields == EP_HTTP_MAX_FIELDS) {
            return fail(err, "too many header lines", 431);
        }
        *colon = '\0';
        *ve = '\0';
        h->fields[h->n_fields].name = line;
        h->fields[h->n_fields].value = v;
        h->n_fields++;
    }
    return framing(h, err);
}

const char *ep_http_head_field(const ep_http_head_t *h, const char *name)
{
    for (int i = 0; i < h->n_fields; i++) {
        if (strcasecmp(h->fields[i].name, name) == 0) {
            return h->fields[i].value;
        }
    }
    return NULL;
}

/*
 * The chunked decoder's states. A size line is chunk-size [ chunk-ext ] CRLF
 * (RFC 9112 7.1.1), with
 *   chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
 * names and values tokens, values also quoted strings. Extensions are read
 * to their end and ignored. A trailer line is field-name ":" field-value; they
 * are checked and dropped. A CR must be followed by LF everywhere (RFC 9112
 * 2.2: a bare CR is refused); a bare LF ends a line, as in the head.
 */
enum {
    CH_SIZE,        /* hex digits of a chunk size */
    CH_EXT_WS,      /* after the size or a value: BWS, then ';' or the line end */
    CH_EXT_NAME_WS, /* after ';': BWS, then a name */
    CH_EXT_NAME,    /* in an extension name */
    CH_EXT_EQ_WS,   /* after a name: BWS, then '=', ';' or the line end */
    CH_EXT_VAL_WS,  /* after '=': BWS, then a value */
    CH_EXT_VAL,     /* in a token value */
    CH_EXT_QVAL,    /* in a quoted-string value */
    CH_EXT_QESC,    /* after a backslash in a quoted string */
    CH_SIZE_LF,     /* after the size line's CR */
    CH_DATA,
    CH_DATA_CR, /* the CRLF after chunk data */
    CH_DATA_LF,
    CH_TRAILER,       /* start of a trailer line (or the final blank line) */
    CH_TRAILER_NAME,  /* in a trailer's field name */
    CH_TRAILER_VALUE, /* in a trailer's value, up to the line end */
    CH_TRAILER_LF,    /* after a trailer line's CR */
    CH_END_LF,        /* after the final blank line's CR */
    CH_DONE
};

#define CH_MAX_LINE    1024
#define CH_MAX_TRAILER 8192

void ep_http_chunked_init(ep_http_chunked_t *c)
{
    memset(c, 0, sizeof(*c));
}

/* The size line ended: on to the data or, for size 0, the trailers. */
static void size_done(ep_http_chunked_t *c)
{
    c->state = c->left ? CH_DATA : CH_TRAILER;
    c->line = 0;
}

/* qdtext and quoted-pair characters of RFC 9110 5.6.4 (HTAB, SP, VCHAR, obs-text). */
static int is_qchar(unsigned char ch)
{
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

/*
 * One byte of a size line after its digits. Returns the next state, or -1
 * when the byte cannot be there.
 */
static int ext_step(int state, unsigned char ch)
{
    int ws = ch == ' ' || ch == '\t';

    switch (state) {
    case CH_EXT_NAME_WS:
        return ws ? state : is_tchar(ch) ? CH_EXT_NAME : -1;
    case CH_EXT_VAL_WS:
        return ws ? state : ch == '"' ? CH_EXT_QVAL : is_tchar(ch) ? CH_EXT_VAL : -1;
    case CH_EXT_QVAL:
        return ch == '"' ? CH_EXT_WS : ch == '\\' ? CH_EXT_QESC : is_qchar(ch) ? state : -1;
    case CH_EXT_QESC:
        return is_qchar(ch) ? CH_EXT_QVAL : -1;
    case CH_EXT_NAME:
    case CH_EXT_VAL:
        if (is_tchar(ch)) {
            return state;
        }
        break;
    default:
        break;
    }
    /* Between the parts (CH_EXT_WS, CH_EXT_EQ_WS) or right after a name or a value. */
    if (ws) {
        return state == CH_EXT_NAME ? CH_EXT_EQ_WS : state == CH_EXT_VAL ? CH_EXT_WS : state;
    }
    if (ch == ';') {
        return CH_EXT_NAME_WS;
    }
    if (ch == '=' && (state == CH_EXT_NAME || state == CH_EXT_EQ_WS)) {
        return CH_EXT_VAL_WS;
    }
    return -1;
}

ssize_t ep_http_chunked_feed(ep_http_chunked_t *c, const char *in, size_t len, ep_buf_t *out,
                             size_t max, int *done, const char **err)
{
    size_t i = 0;

    *done = c->state == CH_DONE;
    while (i < len && c->state != CH_DONE) {
        unsigned char ch = (unsigned char)in[i];
        int d;

        switch (c->state) {
        case CH_SIZE:
            if ((d = hex_val(ch)) >= 0) {
                if (c->left >> 56) {
                    *err = "chunk size too large";
                    return EP_EPARSE;
                }
                c->left = c->left * 16 + (uint64_t)d;
                c->line++;
            } else if (c->line > 0 && (ch == ';' || ch == ' ' || ch == '\t')) {
                c->state = ch == ';' ? CH_EXT_NAME_WS : CH_EXT_WS;
            } else if (c->line > 0 && ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (c->line > 0 && ch == '\n') {
                size_done(c);
            } else {
                *err = "malformed chunk size";
                return EP_EPARSE;
            }
            i++;
            break;
        case CH_EXT_WS:
        case CH_EXT_NAME_WS:
        case CH_EXT_NAME:
        case CH_EXT_EQ_WS:
        case CH_EXT_VAL_WS:
        case CH_EXT_VAL:
        case CH_EXT_QVAL:
        case CH_EXT_QESC:
            if (++c->line > CH_MAX_LINE) {
                *err = "chunk extension too long";
                return EP_EPARSE;
            }
            /* The line may end after the size, a name or a value, not inside a part. */
            if ((ch == '\r' || ch == '\n') &&
                (c->state == CH_EXT_WS || c->state == CH_EXT_NAME || c->state == CH_EXT_EQ_WS ||
                 c->state == CH_EXT_VAL)) {
                if (ch == '\r') {
                    c->state = CH_SIZE_LF;
                } else {
                    size_done(c);
                }
            } else if ((d = ext_step(c->state, ch)) >= 0) {
                c->state = d;
            } else {
                *err = "malformed chunk extension";
                return EP_EPARSE;
            }
            i++;
            break;
        case CH_SIZE_LF:
            if (ch != '\n') {
                *err = "bare CR in a chunk size line";
                return EP_EPARSE;
            }
            size_done(c);
            i++;
            break;
        case CH_DATA: {
            size_t n = len - i;
            if (n > c->left) {
                n = (size_t)c->left;
            }
            if (out->len + n > max) {
                *err = "request body too large";
                return EP_E2BIG;
            }
            ep_buf_append(out, in + i, n);
            c->left -= n;
            i += n;
            if (c->left == 0) {
                c->state = CH_DATA_CR;
            }
            break;
        }
        case CH_DATA_CR:
            if (ch == '\r') {
                c->state = CH_DATA_LF;
            } else if (ch == '\n') {
                c->state = CH_SIZE;
            } else {
                *err = "chunk data longer than its size";
                return EP_EPARSE;
            }
            i++;
            break;
        case CH_DATA_LF:
            if (ch != '\n') {
                *err = "chunk data longer than its size";
                return EP_EPARSE;
            }
            c->state = CH_SIZE;
            i++;
            break;
        case CH_TRAILER:
        case CH_TRAILER_NAME:
        case CH_TRAILER_VALUE:
        case CH_TRAILER_LF:
            if (++c->trailer > CH_MAX_TRAILER) {
                *err = "chunked trailers too long";
                return EP_EPARSE;
            }
            if (c->state == CH_TRAILER) {
                if (ch == '\r') {
                    c->state = CH_END_LF;
                } else if (ch == '\n') {
                    c->state = CH_DONE;
                } else if (is_tchar(ch)) {
                    c->state = CH_TRAILER_NAME;
                } else {
                    *err = "malformed trailer line";
                    return EP_EPARSE;
                }
            } else if (c->state == CH_TRAILER_NAME) {
                if (ch == ':') {
                    c->state = CH_TRAILER_VALUE;
                } else if (!is_tchar(ch)) {
                    *err = "malformed trailer line";
                    return EP_EPARSE;
                }
            } else if (c->state == CH_TRAILER_VALUE) {
                if (ch == '\r') {
                    c->state = CH_TRAILER_LF;
                } else if (ch == '\n') {
                    c->state = CH_TRAILER;
                } else if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
                    *err = "control character in a trailer";
                    return EP_EPARSE;
                }
            } else if (ch == '\n') {
                c->state = CH_TRAILER;
            } else {
                *err = "bare CR in a trailer";
                return EP_EPARSE;
            }
            i++;
            break;
        case CH_END_LF:
            if (ch != '\n') {
                *err = "malformed end of a chunked body";
                return EP_EPARSE;
            }
            c->state = CH_DONE;
            i++;
            break;
        default:
            break;
        }
    }
    *done = c->state == CH_DONE;
    return (ssize_t)i;
}

int ep_http_query_split(char *q, char **names, char **values, int max)
{
    int n = 0;

    while (q && *q && n < max) {
        char *amp = strchr(q, '&'), *eq;
        if (amp) {
            *amp = '\0';
        }
        if (*q) {
            eq = strchr(q, '=');
            if (eq) {
                *eq = '\0';
            }
            names[n] = q;
            values[n] = eq ? eq + 1 : q + strlen(q);
            if (pct_decode(names[n], 1) == 0 && pct_decode(values[n], 1) == 0) {
                n++;
            }
        }
        q = amp ? amp + 1 : NULL;
    }
    return n;
}
