/*
 * The JSON tokenizer (ep_json_lex.h), its out-of-line part: strings (UTF-8
 * checks, escape decoding), literals and syntax errors. The walk, whitespace
 * and numbers are inline in the header. Moved out of ep_event_json.c, which
 * drives it; the scanning code is unchanged.
 */
#include "event/ep_json_lex.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <string.h>

/* Records a syntax error at byte at; returns 0 for `return ep__json_syntax(...)`. */
int ep__json_syntax(ep_json_lex_t *lx, const unsigned char *at, const char *why)
{
    lx->err_off = (size_t)(at - lx->start);
    lx->err_why = at >= lx->end ? "premature end of input" : why;
    return 0;
}

static int hex4(const unsigned char *q, const unsigned char *end, unsigned *out)
{
    unsigned v = 0;

    if (end - q < 4) {
        return -1;
    }
    for (int i = 0; i < 4; i++) {
        unsigned c = q[i];
        if (c >= '0' && c <= '9') {
            c -= '0';
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f') {
            c = (c | 0x20) - 'a' + 10;
        } else {
            return -1;
        }
        v = v << 4 | c;
    }
    *out = v;
    return 0;
}

static void put_utf8(ep_buf_t *b, unsigned cp)
{
    char u[4];
    size_t n;

    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | cp >> 6);
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12);
        u[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18);
        u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    ep_buf_append(b, u, n);
}

/*
 * Offset of the first byte in q[0..16) that a string scan must look at ('"',
 * '\\', below 0x20, 0x80 and above), or 16 when there is none. Needs 16
 * readable bytes.
 */
static inline unsigned str_special16(const unsigned char *q)
{
#if defined(__SSE2__)
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)q);
    /* Signed compare: bytes from 0x80 are negative, so "< 0x20" catches them too. */
    __m128i m = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')), _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)));
    unsigned bits = (unsigned)_mm_movemask_epi8(m);

    return bits ? (unsigned)__builtin_ctz(bits) : 16u;
#else
    for (unsigned i = 0; i < 16; i++) {
        if (q[i] == '"' || q[i] == '\\' || q[i] < 0x20 || q[i] >= 0x80) {
            return i;
        }
    }
    return 16u;
#endif
}

/*
 * Length of the character at q inside a string, which is neither '"' nor '\\':
 * 1 for printable ASCII, 2-4 for a UTF-8 sequence; 0 after recording a syntax
 * error (a raw control character or invalid UTF-8).
 */
static size_t plain_char(ep_json_lex_t *lx, const unsigned char *q)
{
    size_t k;

    if (*q < 0x20) {
        ep__json_syntax(lx, q, "control character inside a string (escape it)");
        return 0;
    }
    if (*q < 0x80) {
        return 1;
    }
    k = ep_json_utf8_seq(q, lx->end);
    if (k == 0) {
        ep__json_syntax(lx, q, "invalid UTF-8 in string");
    }
    return k;
}

/*
 * Scans the string whose opening quote is at lx->p. On success returns 1 with
 * lx->s, lx->n the decoded text (a slice of the input when there are no escapes, else
 * lx->esc) and lx->p after the closing quote; on a syntax error returns 0.
 */
int ep__json_string(ep_json_lex_t *lx)
{
    const unsigned char *q = lx->p + 1, *end = lx->end, *from = q;
    size_t k;

    lx->nul = false;
    for (;;) {
        /* Sixteen plain ASCII bytes at a time, straight to the first other one. */
        while (end - q >= 16) {
            unsigned skip = str_special16(q);
            q += skip;
            if (skip < 16) {
                break;
            }
        }
        if (q >= end) {
            return ep__json_syntax(lx, end, "");
        }
        if (*q == '"') {
            lx->s = (const char *)from;
            lx->n = (size_t)(q - from);
            lx->p = q + 1;
            return 1;
        }
        if (*q == '\\') {
            break;
        }
        k = plain_char(lx, q);
        if (k == 0) {
            return 0;
        }
        q += k;
    }

    /* Escapes: decode into lx->esc. */
    ep_buf_reset(lx->esc);
    ep_buf_append(lx->esc, from, (size_t)(q - from));
    while (q < end && *q != '"') {
        unsigned cp, lo;
        const unsigned char *at = q;

        if (*q != '\\') {
            k = plain_char(lx, q);
            if (k == 0) {
                return 0;
            }
            ep_buf_append(lx->esc, q, k);
            q += k;
            continue;
        }
        if (++q >= end) {
            break;
        }
        {
            /* The one-character escapes, and what each stands for. */
            static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
            const char *e = *q != '\0' ? strchr(esc_in, *q) : NULL;
            if (e != NULL) {
                ep_buf_putc(lx->esc, esc_out[e - esc_in]);
                q++;
                continue;
            }
        }
        if (*q++ != 'u') {
            return ep__json_syntax(lx, at, "invalid escape in string");
        }
        if (hex4(q, end, &cp) != 0) {
            return ep__json_syntax(lx, at, "invalid \\u escape (four hex digits expected)");
        }
        q += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return ep__json_syntax(lx, at, "unpaired UTF-16 surrogate in \\u escape (not UTF-8)");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, end, &lo) != 0 ||
                lo < 0xDC00 || lo > 0xDFFF) {
                return ep__json_syntax(lx, at,
                                       "unpaired UTF-16 surrogate in \\u escape (not UTF-8)");
            }
            q += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        put_utf8(lx->esc, cp);
        lx->nul |= cp == 0;
    }
    if (q >= end) {
        return ep__json_syntax(lx, end, "");
    }
    lx->s = lx->esc->data;
    lx->n = lx->esc->len;
    lx->p = q + 1;
    return 1;
}

/* Scans true, false or null at lx->p into *kind; 0 after a syntax error. */
int ep__json_literal(ep_json_lex_t *lx, ep_json_kind_t *kind)
{
    static const struct {
        const char *text;
        size_t len;
        ep_json_kind_t kind;
    } lits[] = {{"true", 4, EP_JSON_TRUE}, {"false", 5, EP_JSON_FALSE}, {"null", 4, EP_JSON_NULL}};

    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        if ((size_t)(lx->end - lx->p) >= lits[i].len &&
            memcmp(lx->p, lits[i].text, lits[i].len) == 0) {
            lx->p += lits[i].len;
            *kind = lits[i].kind;
            return 1;
        }
    }
    return ep__json_syntax(lx, lx->p,
                           "invalid value (expected a string, number, object, array, "
                           "true, false or null)");
}
