#include "base/ep_buf.h"
#include "base/ep_mem.h"

#include <stdio.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

void ep_buf_init(ep_buf_t *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void ep_buf_close(ep_buf_t *b)
{
    ep_free(b->data);
    ep_buf_init(b);
}

void ep_buf_reset(ep_buf_t *b)
{
    b->len = 0;
    if (b->data) {
        b->data[0] = '\0';
    }
}

void ep_buf_reserve(ep_buf_t *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    size_t cap;

    if (need <= b->cap) {
        return;
    }
    cap = b->cap ? b->cap : 256;
    while (cap < need) {
        cap *= 2;
    }
    b->data = ep_realloc(b->data, cap);
    b->cap = cap;
}

void ep_buf_append_slow(ep_buf_t *b, const void *p, size_t n)
{
    ep_buf_reserve(b, n);
    if (n) {
        memcpy(b->data + b->len, p, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}

void ep_buf_putc_slow(ep_buf_t *b, char c)
{
    ep_buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

void ep_buf_vprintf(ep_buf_t *b, const char *fmt, va_list ap)
{
    va_list cp;
    int n;

    va_copy(cp, ap);
    ep_buf_reserve(b, 64);
    n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, cp);
    va_end(cp);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= b->cap - b->len) {
        ep_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    }
    b->len += (size_t)n;
}

void ep_buf_printf(ep_buf_t *b, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ep_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void ep_buf_put_u64(ep_buf_t *b, uint64_t v)
{
    char tmp[24];
    int i = (int)sizeof(tmp);

    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ep_buf_append(b, tmp + i, sizeof(tmp) - (size_t)i);
}

void ep_buf_put_i64(ep_buf_t *b, int64_t v)
{
    if (v < 0) {
        ep_buf_putc(b, '-');
        ep_buf_put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        ep_buf_put_u64(b, (uint64_t)v);
    }
}

void ep_buf_put_json_str(ep_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, start = 0;

    unsigned plain = 1;

    ep_buf_reserve(b, n + 2);
    ep_buf_putc(b, '"');
    /* Most text needs no escape: one check pass (16 bytes a step), then a single copy. */
    i = 0;
#if defined(__SSE2__)
    for (; i + 16 <= n && plain; i += 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        __m128i m = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('"')),
                         _mm_cmpeq_epi8(x, _mm_set1_epi8('\\'))),
            /* unsigned x < 0x20 <=> x saturating-minus 0x1f is 0 */
            _mm_cmpeq_epi8(_mm_subs_epu8(x, _mm_set1_epi8(0x1f)), _mm_setzero_si128()));
        plain = _mm_movemask_epi8(m) == 0;
    }
#endif
    for (; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        plain &= (unsigned)(c >= 0x20) & (unsigned)(c != '"') & (unsigned)(c != '\\');
    }
    if (plain) {
        ep_buf_append(b, s, n);
        ep_buf_putc(b, '"');
        return;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char u[7];

        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            u[0] = '\\';
            u[1] = 'u';
            u[2] = '0';
            u[3] = '0';
            u[4] = hex[c >> 4];
            u[5] = hex[c & 15];
            u[6] = '\0';
            esc = u;
            break;
        }
        ep_buf_append(b, s + start, i - start);
        ep_buf_puts(b, esc);
        start = i + 1;
    }
    ep_buf_append(b, s + start, n - start);
    ep_buf_putc(b, '"');
}

char *ep_buf_steal(ep_buf_t *b, size_t *len)
{
    char *p;

    if (b->data == NULL) { /* nothing appended yet: an empty string of its own */
        p = ep_calloc(1, 1);
        if (len) {
            *len = 0;
        }
        ep_buf_init(b);
        return p;
    }
    p = b->data;
    if (len) {
        *len = b->len;
    }
    ep_buf_init(b);
    return p;
}
