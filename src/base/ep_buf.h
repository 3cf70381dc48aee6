#ifndef EP_BUF_H
#define EP_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/*
 * A growable byte buffer, caller-allocated (init/close). Always NUL-terminated
 * after any append, so b->data can be used as a C string when it holds text.
 */
typedef struct ep_buf_s {
    char *data;
    size_t len;
    size_t cap;
} ep_buf_t;

#define EP_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void ep_buf_init(ep_buf_t *b);
void ep_buf_close(ep_buf_t *b); /* frees the storage */
void ep_buf_reset(ep_buf_t *b); /* len = 0, keeps the storage */
void ep_buf_reserve(ep_buf_t *b, size_t extra);
void ep_buf_append_slow(ep_buf_t *b, const void *p, size_t n);
void ep_buf_putc_slow(ep_buf_t *b, char c);

/* Appends n bytes of p (p may be NULL when n is 0). Inline: the answer paths call it per field. */
static inline void ep_buf_append(ep_buf_t *b, const void *p, size_t n)
{
    if (n < b->cap - b->len) { /* room for the bytes and the NUL (cap 0: never) */
        if (n) {
            memcpy(b->data + b->len, p, n);
        }
        b->len += n;
        b->data[b->len] = '\0';
    } else {
        ep_buf_append_slow(b, p, n);
    }
}

/* Appends a C string (inline, so the length of a literal is known at compile time). */
static inline void ep_buf_puts(ep_buf_t *b, const char *s)
{
    ep_buf_append(b, s, strlen(s));
}

/* Appends one byte (inline: the response and parser paths call it per character). */
static inline void ep_buf_putc(ep_buf_t *b, char c)
{
    if (b->len + 2 <= b->cap) {
        b->data[b->len++] = c;
        b->data[b->len] = '\0';
    } else {
        ep_buf_putc_slow(b, c);
    }
}

/* Appends s[0..n) and a '\0' (one of a table of strings); returns where it starts. */
static inline size_t ep_buf_append_z(ep_buf_t *b, const char *s, size_t n)
{
    size_t off = b->len;

    ep_buf_append(b, s, n);
    ep_buf_putc(b, '\0');
    return off;
}
void ep_buf_printf(ep_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ep_buf_vprintf(ep_buf_t *b, const char *fmt, va_list ap);
void ep_buf_put_i64(ep_buf_t *b, int64_t v);
void ep_buf_put_u64(ep_buf_t *b, uint64_t v);
/** Appends s (n bytes) as a JSON string literal, quotes included, escaping as needed. */
void ep_buf_put_json_str(ep_buf_t *b, const char *s, size_t n);
/** Detaches the storage: returns it (caller frees with ep_free) and re-inits b. */
char *ep_buf_steal(ep_buf_t *b, size_t *len);

#endif /* EP_BUF_H */
