#ifndef EP_JSON_LEX_H
#define EP_JSON_LEX_H

#include "base/ep_buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * The JSON tokenizer of the event parser (RFC 8259, strict), kept apart from
 * what is done with the values (the event handlers of ep_event_json.c). It
 * walks one document and calls a handler per value, key, open and close, as
 * a SAX parser would.
 *
 * No extensions: no comments, no trailing commas, whitespace is space, tab, CR
 * and LF only, strings are UTF-8 without raw control characters and \u
 * escapes must pair surrogates; one value, then only whitespace. The walk
 * checks the grammar as well (commas, colons, nesting): the handlers see a
 * well-formed prefix of a document, each value as soon as it is complete, and
 * the first syntax error ends the walk with its byte offset and reason.
 *
 * Ownership: the tokenizer allocates nothing and owns nothing. The caller
 * owns the input, the nesting stack and the escape buffer, and keeps all
 * three alive and unchanged during the walk. The text a handler gets points
 * into the input (a string without escapes, a number) or into the escape
 * buffer (a string with escapes, decoded) or is static (true, false): it is
 * valid during that handler call only. One thread per walk.
 */

/* The kinds of scalar values. */
typedef enum {
    EP_JSON_STRING, /* text decoded, UTF-8; nul says whether it holds U+0000 */
    EP_JSON_NUMBER, /* text as written (the RFC 8259 grammar, not converted) */
    EP_JSON_TRUE,   /* text "true" */
    EP_JSON_FALSE,  /* text "false" */
    EP_JSON_NULL,   /* text "" */
} ep_json_kind_t;

/*
 * What the walk calls, in document order; each returns 1 to go on or 0 to
 * stop the walk (the handler records why). ctx is the walk's ctx.
 */
typedef struct ep_json_handlers_s {
    int (*open)(void *ctx, bool is_object); /* '{' or '[' */
    int (*close)(void *ctx);                /* its matching '}' or ']' */
    /* An object key; nul: an escape decoded to U+0000 (the text holds a NUL). */
    int (*key)(void *ctx, const char *s, size_t n, bool nul);
    int (*value)(void *ctx, ep_json_kind_t kind, const char *s, size_t n, bool nul);
} ep_json_handlers_t;

/* ep_json_walk's results. */
#define EP_JSON_DONE    1    /* one complete value, or only whitespace (no handler called) */
#define EP_JSON_STOPPED 0    /* a handler returned 0 */
#define EP_JSON_SYNTAX  (-1) /* a syntax error: err_off, err_why */

typedef struct ep_json_lex_s {
    /* After EP_JSON_SYNTAX, read-only for the caller. */
    size_t err_off;      /* byte offset of the error in the input */
    const char *err_why; /* the reason, a static string ("premature end of input"
                            when the input stops early; never empty) */

    /* Private. */
    const unsigned char *start, *p, *end;
    const char *s; /* the string just scanned */
    size_t n;
    bool nul;
    uint8_t *stk; /* open containers, 1 = object */
    size_t cap;
    ep_buf_t *esc;
} ep_json_lex_t;

/*
 * Prepares a walk over json[0..len). stk has room for max_open containers open
 * at once (a deeper document is a syntax error, "nested too deep", found after
 * the open handler ran); esc receives the decoded text of strings with escapes
 * (reset per such string). Never fails.
 */
static inline void ep_json_lex_init(ep_json_lex_t *lx, const char *json, size_t len, uint8_t *stk,
                                    size_t max_open, ep_buf_t *esc);

/*
 * Walks the whole input, calling h's handlers with ctx. Returns EP_JSON_DONE,
 * EP_JSON_STOPPED or EP_JSON_SYNTAX (see above). One walk per
 * ep_json_lex_init.
 */
static inline int ep_json_walk(ep_json_lex_t *lx, const ep_json_handlers_t *h, void *ctx);

/*
 * Length of the well-formed UTF-8 sequence of 2-4 bytes starting at q (RFC
 * 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or 0 when
 * there is none before end (q < end). Pure; inline for the scanning loops.
 */
static inline size_t ep_json_utf8_seq(const unsigned char *q, const unsigned char *end)
{
    unsigned c = q[0], lo = 0x80, hi = 0xBF;
    size_t k;

    if (c >= 0xC2 && c <= 0xDF) {
        k = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        k = 2;
        lo = c == 0xE0 ? 0xA0 : 0x80; /* no overlongs */
        hi = c == 0xED ? 0x9F : 0xBF; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        k = 3;
        lo = c == 0xF0 ? 0x90 : 0x80;
        hi = c == 0xF4 ? 0x8F : 0xBF; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if ((size_t)(end - q) <= k || q[1] < lo || q[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i <= k; i++) {
        if ((q[i] & 0xC0) != 0x80) {
            return 0;
        }
    }
    return k + 1;
}

/* ------------------------------------------------------------------ implementation */

/*
 * The walk is inline so that, with a constant handler table, it compiles to
 * direct calls inside its caller, as when it was part of the event parser
 * (a first cut with an out-of-line call per token was 5-15% slower on a
 * typical event in bench/ep_microbench.c). Strings and literals, the bulk of the scanning,
 * are in ep_json_lex.c. Nothing below is for callers.
 */

/* Records a syntax error at byte at; returns 0. */
int ep__json_syntax(ep_json_lex_t *lx, const unsigned char *at, const char *why);
/* Scans the string at lx->p into lx->s, lx->n, lx->nul; 0 after a syntax error. */
int ep__json_string(ep_json_lex_t *lx);
/* Scans true, false or null at lx->p into *kind; 0 after a syntax error. */
int ep__json_literal(ep_json_lex_t *lx, ep_json_kind_t *kind);

static inline const unsigned char *ep__json_skip_ws(const unsigned char *q,
                                                    const unsigned char *end)
{
    while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) {
        q++;
    }
    return q;
}

/* Scans a number at lx->p (the grammar of RFC 8259); 0 on a syntax error. */
static inline int ep__json_number(ep_json_lex_t *lx)
{
    const unsigned char *q = lx->p, *end = lx->end;

#define DIGIT(c) ((unsigned)((c) - '0') < 10u)
    if (*q == '-') {
        q++;
    }
    if (q < end && *q == '0') {
        q++;
    } else if (q < end && DIGIT(*q)) {
        while (q < end && DIGIT(*q)) {
            q++;
        }
    } else {
        return ep__json_syntax(lx, q, "invalid number (a digit expected)");
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || !DIGIT(*q)) {
            return ep__json_syntax(lx, q, "invalid number (a digit expected after '.')");
        }
        while (q < end && DIGIT(*q)) {
            q++;
        }
    }
    if (q < end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < end && (*q == '+' || *q == '-')) {
            q++;
        }
        if (q >= end || !DIGIT(*q)) {
            return ep__json_syntax(lx, q, "invalid number (a digit expected in the exponent)");
        }
        while (q < end && DIGIT(*q)) {
            q++;
        }
    }
#undef DIGIT
    {
        const unsigned char *s = lx->p;
        lx->p = q;
        lx->s = (const char *)s;
        lx->n = (size_t)(q - s);
        return 1;
    }
}

static inline void ep_json_lex_init(ep_json_lex_t *lx, const char *json, size_t len, uint8_t *stk,
                                    size_t max_open, ep_buf_t *esc)
{
    memset(lx, 0, sizeof(*lx));
    lx->start = lx->p = (const unsigned char *)json;
    lx->end = lx->start + len;
    lx->stk = stk;
    lx->cap = max_open;
    lx->esc = esc;
}

static inline int ep_json_walk(ep_json_lex_t *lx, const ep_json_handlers_t *h, void *ctx)
{
    static const char *const lit_text[] = {"", "", "true", "false", ""};
    static const uint8_t lit_len[] = {0, 0, 4, 5, 0};
    size_t sp = 0;
    ep_json_kind_t kind;

    lx->p = ep__json_skip_ws(lx->p, lx->end);
    if (lx->p == lx->end) {
        return EP_JSON_DONE; /* no value: the caller tells */
    }

value:
    if (lx->p >= lx->end) {
        ep__json_syntax(lx, lx->p, "");
        return EP_JSON_SYNTAX;
    }
    switch (*lx->p) {
    case '{':
    case '[': {
        bool is_map = *lx->p == '{';
        if (!h->open(ctx, is_map)) {
            return EP_JSON_STOPPED;
        }
        if (sp >= lx->cap) {
            ep__json_syntax(lx, lx->p, "nested too deep");
            return EP_JSON_SYNTAX;
        }
        lx->stk[sp++] = is_map;
        lx->p = ep__json_skip_ws(lx->p + 1, lx->end);
        if (lx->p < lx->end && *lx->p == (is_map ? '}' : ']')) {
            lx->p++;
            sp--;
            if (!h->close(ctx)) {
                return EP_JSON_STOPPED;
            }
            goto after;
        }
        if (is_map) {
            goto key;
        }
        goto value;
    }
    case '"':
        if (!ep__json_string(lx)) {
            return EP_JSON_SYNTAX;
        }
        if (!h->value(ctx, EP_JSON_STRING, lx->s, lx->n, lx->nul)) {
            return EP_JSON_STOPPED;
        }
        goto after;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        if (!ep__json_number(lx)) {
            return EP_JSON_SYNTAX;
        }
        if (!h->value(ctx, EP_JSON_NUMBER, lx->s, lx->n, false)) {
            return EP_JSON_STOPPED;
        }
        goto after;
    default:
        if (!ep__json_literal(lx, &kind)) {
            return EP_JSON_SYNTAX;
        }
        if (!h->value(ctx, kind, lit_text[kind], lit_len[kind], false)) {
            return EP_JSON_STOPPED;
        }
        goto after;
    }

key:
    if (lx->p >= lx->end || *lx->p != '"') {
        ep__json_syntax(lx, lx->p, "object key expected (a string in double quotes)");
        return EP_JSON_SYNTAX;
    }
    if (!ep__json_string(lx)) {
        return EP_JSON_SYNTAX;
    }
    if (!h->key(ctx, lx->s, lx->n, lx->nul)) {
        return EP_JSON_STOPPED;
    }
    lx->p = ep__json_skip_ws(lx->p, lx->end);
    if (lx->p >= lx->end || *lx->p != ':') {
        ep__json_syntax(lx, lx->p, "':' expected after an object key");
        return EP_JSON_SYNTAX;
    }
    lx->p = ep__json_skip_ws(lx->p + 1, lx->end);
    goto value;

after:
    lx->p = ep__json_skip_ws(lx->p, lx->end);
    if (sp == 0) {
        if (lx->p < lx->end) {
            ep__json_syntax(lx, lx->p, "trailing garbage after the JSON value");
            return EP_JSON_SYNTAX;
        }
        return EP_JSON_DONE;
    }
    if (lx->p >= lx->end) {
        ep__json_syntax(lx, lx->p, "");
        return EP_JSON_SYNTAX;
    }
    if (*lx->p == ',') {
        lx->p = ep__json_skip_ws(lx->p + 1, lx->end);
        if (lx->stk[sp - 1]) {
            goto key;
        }
        goto value;
    }
    if (*lx->p == (lx->stk[sp - 1] ? '}' : ']')) {
        lx->p++;
        sp--;
        if (!h->close(ctx)) {
            return EP_JSON_STOPPED;
        }
        goto after;
    }
    ep__json_syntax(lx, lx->p,
                    lx->stk[sp - 1] ? "',' or '}' expected after an object member"
                                    : "',' or ']' expected after an array element");
    return EP_JSON_SYNTAX;
}

#endif /* EP_JSON_LEX_H */
