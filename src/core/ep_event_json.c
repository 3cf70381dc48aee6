/*
 * JSON -> event. A tokenizer of our own (RFC 8259, strict) walks the input once
 * and calls the same handlers a SAX parser would (on_open, on_key, on_value,
 * on_close), which fill a per-parser draft; the only heap allocation per
 * successful parse is the event block itself:
 *   - strings without escapes are handed over as slices of the input; escaped
 *     ones are decoded into a reusable buffer;
 *   - string values are copied into one reusable buffer and referred to by
 *     offset until the event is built.
 * The tokenizer checks UTF-8 as it scans (an invalid byte or an unpaired \u
 * surrogate is a syntax error with its byte offset). yajl drives the same
 * handlers in ep__event_parser_parse_ref, the reference the differential tests
 * and the fuzz target compare against (it was the parser until the tokenizer
 * replaced it for speed: yajl's handle, lexer and per-parse set-up cost more
 * than the rest of the parse for a typical event).
 *
 * Decisions the contract in ep_event.h leaves open:
 *   - null as a value means "absent": a null known field is ignored (so a null
 *     "source" is reported as missing), a null metadata/properties value or a
 *     null unknown top-level field is skipped;
 *   - a known top-level key given twice is rejected ("appears more than once");
 *   - metadata keys are one namespace shared by "metadata", "properties" and
 *     unknown top-level scalars; a key seen twice is rejected, empty keys too;
 *   - NUL characters (\u0000) are rejected in id, source, event_type, user_id
 *     and in metadata keys and values (they travel as C strings); "data" keeps
 *     them;
 *   - "data" and "payload" together are rejected; at least one of "data",
 *     "payload" or "event_type" must be non-empty;
 *   - a timestamp of 0 means "absent" (the receive time is used);
 *   - a syntax error (EP_EPARSE) wins over a validation error found earlier in
 *     the document, so the parse continues after the first validation error,
 *     only tracking depth; exceeding max_depth stops it at once.
 */
#include "ep_error.h"
#include "ep_event.h"
#include "ep_mem.h"
#include "ep_time.h"

#include <yajl/yajl_parse.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

/*
 * yajl allocates a handle, a lexer, a decode buffer and two stacks per parse.
 * They come from this arena: one block reused across parses, with overflow
 * blocks from the heap that are freed at the next reset (and make the block
 * grow, up to ARENA_KEEP_MAX, so the steady state allocates nothing).
 */
#define ARENA_MIN      (16 * 1024)
#define ARENA_KEEP_MAX (1024 * 1024)

typedef union ahdr_u {
    size_t size;
    max_align_t align_;
} ahdr_t;

typedef struct arena_s {
    char *base;
    size_t cap;
    size_t used;
    void **big; /* overflow blocks, freed at reset */
    size_t n_big;
    size_t cap_big;
    size_t big_bytes;
} arena_t;

static size_t arena_round(size_t n)
{
    return (n + sizeof(ahdr_t) - 1) / sizeof(ahdr_t) * sizeof(ahdr_t);
}

static void arena_reset(arena_t *a)
{
    size_t want = a->cap;

    for (size_t i = 0; i < a->n_big; i++) {
        ep_free(a->big[i]);
    }
    if (a->big_bytes) {
        want = a->cap + a->big_bytes;
        want = want > ARENA_KEEP_MAX ? ARENA_KEEP_MAX : want;
    }
    if (want < ARENA_MIN) {
        want = ARENA_MIN;
    }
    if (want != a->cap) {
        ep_free(a->base);
        a->base = ep_malloc(want);
        a->cap = want;
    }
    a->n_big = 0;
    a->big_bytes = 0;
    a->used = 0;
}

static void arena_close(arena_t *a)
{
    for (size_t i = 0; i < a->n_big; i++) {
        ep_free(a->big[i]);
    }
    ep_free(a->big);
    ep_free(a->base);
    memset(a, 0, sizeof(*a));
}

static bool arena_owns(const arena_t *a, const void *p)
{
    uintptr_t u = (uintptr_t)p, b = (uintptr_t)a->base;

    return u >= b && u < b + a->cap;
}

static void *arena_alloc(void *ctx, size_t n)
{
    arena_t *a = ctx;
    size_t need = sizeof(ahdr_t) + arena_round(n);
    ahdr_t *h;

    if (need <= a->cap - a->used) {
        h = (ahdr_t *)(a->base + a->used);
        a->used += need;
    } else {
        if (a->n_big == a->cap_big) {
            a->cap_big = a->cap_big ? a->cap_big * 2 : 16;
            a->big = ep_realloc(a->big, a->cap_big * sizeof(*a->big));
        }
        h = ep_malloc(need);
        a->big[a->n_big++] = h;
        a->big_bytes += need;
    }
    h->size = n;
    return h + 1;
}

static void arena_free(void *ctx, void *p)
{
    arena_t *a = ctx;
    ahdr_t *h;

    if (p == NULL || !arena_owns(a, p)) {
        return; /* heap overflow blocks live until the next reset */
    }
    h = (ahdr_t *)p - 1;
    if ((char *)p + arena_round(h->size) == a->base + a->used) {
        a->used = (size_t)((char *)h - a->base);
    }
}

static void *arena_realloc(void *ctx, void *p, size_t n)
{
    arena_t *a = ctx;
    ahdr_t *h;
    void *q;

    if (p == NULL) {
        return arena_alloc(ctx, n);
    }
    h = (ahdr_t *)p - 1;
    /* The last block of the arena grows in place when there is room. */
    if (arena_owns(a, p) && (char *)p + arena_round(h->size) == a->base + a->used &&
        arena_round(n) <= a->cap - (size_t)((char *)p - a->base)) {
        a->used = (size_t)((char *)p - a->base) + arena_round(n);
        h->size = n;
        return p;
    }
    q = arena_alloc(ctx, n);
    memcpy(q, p, h->size < n ? h->size : n);
    arena_free(ctx, p);
    return q;
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the well-formed UTF-8 sequence (2-4 bytes) starting at q, or 0. */
static size_t utf8_seq(const unsigned char *q, const unsigned char *end)
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

/*
 * Returns 1 when s[0..n) is well-formed UTF-8 (RFC 3629: no overlong forms, no
 * surrogates, nothing above U+10FFFF), else 0. Pure; thread-safe.
 */
int ep__event_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + n;

    while (p < end) {
        size_t k;

        /* ASCII runs, eight bytes at a time (most event text is ASCII). */
        while (end - p >= 8) {
            uint64_t w;
            memcpy(&w, p, 8);
            if (w & UINT64_C(0x8080808080808080)) {
                break;
            }
            p += 8;
        }
        if (p == end) {
            break;
        }
        if (*p < 0x80) {
            p++;
            continue;
        }
        k = utf8_seq(p, end);
        if (k == 0) {
            return 0;
        }
        p += k;
    }
    return 1;
}

/* ------------------------------------------------------------------ draft */

typedef enum {
    F_ID,
    F_SOURCE,
    F_DATA,
    F_PAYLOAD,
    F_EVENT_TYPE,
    F_USER_ID,
    F_TIMESTAMP,
    F_METADATA,
    F_PROPERTIES,
    F_OTHER,
    F_COUNT_
} field_t;

static const char *const field_names[F_COUNT_] = {
    "id",      "source",    "data",     "payload",    "event_type",
    "user_id", "timestamp", "metadata", "properties", "",
};
static const uint8_t field_lens[F_COUNT_] = {2, 6, 4, 7, 10, 7, 9, 8, 10, 0};

typedef struct span_s {
    uint32_t off; /* into p->strs */
    uint32_t len;
} span_t;

typedef struct draft_kv_s {
    span_t key;
    span_t val;
    uint8_t type;
} draft_kv_t;

struct ep_event_parser_s {
    ep_event_limits_t lim;
    arena_t arena;   /* yajl's memory, reference driver only */
    ep_buf_t strs;   /* every copied string, each NUL-terminated */
    ep_buf_t esc;    /* the decoded form of the string being handled, when it has escapes */
    uint8_t *stk;    /* tokenizer: open containers, 1 = object; lim.max_depth + 1 entries */
    draft_kv_t *kv;  /* metadata draft, capacity lim.max_meta_keys */
    ep_kv_t *meta;   /* the same, as pointers, for ep_event_create */
    uint32_t kv_cap; /* entries allocated in kv and meta */
    ep_parse_err_t *err;
    const char *in, *in_end; /* the input of the parse under way */

    /* Per-parse state, cleared by reset_draft(). */
    int code;         /* first error (EP_EPARSE beats EP_EVALIDATE) */
    bool utf8_done;   /* strings reach the handlers already checked as UTF-8 ... */
    bool str_nul;     /* ... and this string may hold a NUL only when set */
    uint32_t depth;   /* containers open; inside the root object = 1 */
    bool root_seen;   /* the root value has started */
    field_t cur;      /* top-level field whose value comes next */
    field_t section;  /* F_METADATA / F_PROPERTIES while inside one, else F_OTHER */
    span_t key;       /* current metadata key, or unknown top-level key */
    uint32_t seen;    /* bit per known field: key seen */
    uint32_t present; /* bit per known field: non-null value */
    span_t val[F_COUNT_];
    int64_t ts_ms;
    uint32_t n_kv;
};

static void reset_draft(ep_event_parser_t *p)
{
    p->code = 0;
    p->depth = 0;
    p->root_seen = false;
    p->cur = F_OTHER;
    p->section = F_OTHER;
    p->key.off = p->key.len = 0;
    p->seen = 0;
    p->present = 0;
    memset(p->val, 0, sizeof(p->val));
    p->ts_ms = 0;
    p->n_kv = 0;
}

/* Copies at most n bytes of s into dst (cap bytes) without splitting a UTF-8 sequence. */
static size_t copy_trunc(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) {
            n--;
        }
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return n;
}

/*
 * Records an error unless a stronger one is already there. prefix + "." + key
 * (or only one of them) becomes the field path. Returns the value for a yajl
 * callback: 0 (stop) for parse errors, 1 (go on, in skip mode) for validation.
 */
static int fail(ep_event_parser_t *p, int code, const char *prefix, const char *key, size_t klen,
                const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static int fail(ep_event_parser_t *p, int code, const char *prefix, const char *key, size_t klen,
                const char *fmt, ...)
{
    ep_parse_err_t *e = p->err;
    size_t n = 0;
    va_list ap;

    if (p->code == 0 || (p->code == EP_EVALIDATE && code == EP_EPARSE)) {
        p->code = code;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
        va_end(ap);
        e->field[0] = '\0';
        if (prefix && prefix[0]) {
            n = copy_trunc(e->field, sizeof(e->field), prefix, strlen(prefix));
            if (key && n + 2 < sizeof(e->field)) {
                e->field[n++] = '.';
            }
        }
        if (key && n + 1 < sizeof(e->field)) {
            copy_trunc(e->field + n, sizeof(e->field) - n, key, klen);
        }
    }
    return code == EP_EPARSE ? 0 : 1;
}

/* Spans with this bit in off are slices of the input being parsed, not copies. */
#define SPAN_IN UINT32_C(0x80000000)

static const char *str_at(const ep_event_parser_t *p, span_t s)
{
    if (s.off & SPAN_IN) {
        return p->in + (s.off & ~SPAN_IN);
    }
    return p->strs.data + s.off;
}

/*
 * Keeps s[0..n) for the event: a slice of the input is referred to where it is
 * (the input outlives the parse); anything else is appended, with a NUL, to the
 * string buffer. Either way the span's text is not NUL-terminated for sure.
 */
static span_t keep(ep_event_parser_t *p, const void *s, size_t n)
{
    span_t sp;

    if ((const char *)s >= p->in && (const char *)s < p->in_end) {
        sp.off = SPAN_IN | (uint32_t)((const char *)s - p->in);
        sp.len = (uint32_t)n;
        return sp;
    }

    sp.off = (uint32_t)p->strs.len;
    sp.len = (uint32_t)n;
    ep_buf_reserve(&p->strs, n + 1); /* the string and its NUL in one step */
    if (n) {
        memcpy(p->strs.data + p->strs.len, s, n);
    }
    p->strs.len += n + 1;
    p->strs.data[p->strs.len - 1] = '\0';
    p->strs.data[p->strs.len] = '\0';
    return sp;
}

/* The JSON path prefix of the value being handled, for error messages. */
static const char *cur_prefix(const ep_event_parser_t *p)
{
    return p->section != F_OTHER ? field_names[p->section] : NULL;
}

/* The last path element: a metadata key, an unknown top-level key or a known field. */
static void cur_key(const ep_event_parser_t *p, const char **key, size_t *klen)
{
    if (p->section != F_OTHER || p->cur == F_OTHER) {
        *key = str_at(p, p->key);
        *klen = p->key.len;
    } else {
        *key = field_names[p->cur];
        *klen = strlen(*key);
    }
}

static int fail_here(ep_event_parser_t *p, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail_here(ep_event_parser_t *p, int code, const char *fmt, ...)
{
    char msg[sizeof(p->err->msg)];
    const char *key;
    size_t klen;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cur_key(p, &key, &klen);
    return fail(p, code, cur_prefix(p), key, klen, "%s", msg);
}

/* ------------------------------------------------------------------ values */

typedef enum { V_NULL, V_BOOL, V_NUMBER, V_STRING } vkind_t;

static const char *kind_name(vkind_t k)
{
    switch (k) {
    case V_NULL:
        return "null";
    case V_BOOL:
        return "a boolean";
    case V_NUMBER:
        return "a number";
    default:
        return "a string";
    }
}

/* Checks a decoded string: valid UTF-8 (else EP_EPARSE) and, when no_nul, no NUL bytes. */
static int check_text(ep_event_parser_t *p, const char *s, size_t n, bool no_nul)
{
    if (!p->utf8_done && !ep__event_utf8_valid(s, n)) {
        fail_here(p, EP_EPARSE, "invalid UTF-8 in string (or an unpaired \\u surrogate escape)");
        return -1;
    }
    if (no_nul && (!p->utf8_done || p->str_nul) && memchr(s, '\0', n) != NULL) {
        fail_here(p, EP_EVALIDATE, "must not contain NUL characters");
        return -1;
    }
    return 0;
}

/* Decodes base64 (standard or URL-safe alphabet, padding optional) into the string buffer. */
static int decode_base64(ep_event_parser_t *p, const char *s, size_t n, span_t *out)
{
    uint32_t acc = 0;
    size_t bits = 0, pad = 0, start;

    while (pad < 2 && n > 0 && s[n - 1] == '=') {
        n--;
        pad++;
    }
    if ((pad && (n + pad) % 4 != 0) || n % 4 == 1) {
        return -1;
    }
    if (n / 4 * 3 > p->lim.max_data_len) {
        return -2; /* decodes to at least n / 4 * 3 bytes */
    }
    start = p->strs.len;
    ep_buf_reserve(&p->strs, n / 4 * 3 + 3);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int v;

        if (c >= 'A' && c <= 'Z') {
            v = c - 'A';
        } else if (c >= 'a' && c <= 'z') {
            v = c - 'a' + 26;
        } else if (c >= '0' && c <= '9') {
            v = c - '0' + 52;
        } else if (c == '+' || c == '-') {
            v = 62;
        } else if (c == '/' || c == '_') {
            v = 63;
        } else {
            p->strs.len = start;
            p->strs.data[start] = '\0';
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            p->strs.data[p->strs.len++] = (char)((acc >> bits) & 0xFF);
        }
    }
    out->off = (uint32_t)start;
    out->len = (uint32_t)(p->strs.len - start);
    p->strs.data[p->strs.len++] = '\0';
    if (out->len > p->lim.max_data_len) {
        p->strs.len = start;
        p->strs.data[start] = '\0';
        return -2;
    }
    return 0;
}

/* Parses a non-negative JSON integer text exactly. Returns 0, or -1 on overflow. */
static int parse_u63(const char *s, size_t n, int64_t *out)
{
    int64_t v = 0;

    for (size_t i = 0; i < n; i++) {
        int d = s[i] - '0';
        if (v > (INT64_MAX - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

#define TS_MAX_MS  INT64_C(253402300799999) /* 9999-12-31T23:59:59.999Z */
#define TS_SECONDS 1e11                     /* below: seconds, from here on: milliseconds */

static int set_timestamp(ep_event_parser_t *p, vkind_t k, const char *s, size_t n)
{
    static const char bad[] = "must be unix seconds, unix milliseconds or an RFC 3339 string";
    int64_t ms = 0;

    if (k == V_STRING) {
        if (ep_time_parse_rfc3339(s, n, &ms) != 0) {
            return fail_here(p, EP_EVALIDATE, "%s", bad);
        }
    } else if (k == V_NUMBER) {
        bool integral =
            memchr(s, '.', n) == NULL && memchr(s, 'e', n) == NULL && memchr(s, 'E', n) == NULL;
        if (s[0] == '-') {
            return fail_here(p, EP_EVALIDATE, "must not be negative");
        }
        if (integral) {
            if (parse_u63(s, n, &ms) != 0 || ms > TS_MAX_MS) {
                return fail_here(p, EP_EVALIDATE, "is out of range");
            }
            if (ms < (int64_t)TS_SECONDS) {
                ms *= 1000;
            }
        } else {
            char tmp[64];
            double d;

            if (n >= sizeof(tmp)) {
                return fail_here(p, EP_EVALIDATE, "%s", bad);
            }
            memcpy(tmp, s, n);
            tmp[n] = '\0';
            d = strtod(tmp, NULL);
            if (d < TS_SECONDS) {
                d *= 1000.0; /* seconds with a fraction */
            }
            if (!(d >= 0.0 && d <= (double)TS_MAX_MS)) {
                return fail_here(p, EP_EVALIDATE, "is out of range");
            }
            ms = (int64_t)(d + 0.5);
        }
    } else {
        return fail_here(p, EP_EVALIDATE, "%s", bad);
    }
    if (ms < 0 || ms > TS_MAX_MS) {
        return fail_here(p, EP_EVALIDATE, "is out of range");
    }
    p->ts_ms = ms;
    return 1;
}

/* Adds a metadata entry under the current key. */
static int add_kv(ep_event_parser_t *p, vkind_t k, const char *s, size_t n)
{
    const char *key = str_at(p, p->key);
    draft_kv_t *kv;

    if (k == V_NULL) {
        return 1; /* null values are skipped */
    }
    if (p->n_kv >= p->lim.max_meta_keys) {
        return fail_here(p, EP_EVALIDATE, "too many metadata entries (at most %u)",
                         p->lim.max_meta_keys);
    }
    if (n > p->lim.max_value_len) {
        return fail_here(p, EP_EVALIDATE, "is longer than %u bytes", p->lim.max_value_len);
    }
    if (k == V_STRING && check_text(p, s, n, true) != 0) {
        return p->code == EP_EPARSE ? 0 : 1;
    }
    for (uint32_t i = 0; i < p->n_kv; i++) {
        if (p->kv[i].key.len == p->key.len &&
            memcmp(str_at(p, p->kv[i].key), key, p->key.len) == 0) {
            return fail_here(p, EP_EVALIDATE, "duplicate metadata key");
        }
    }
    if (p->n_kv == p->kv_cap) {
        p->kv_cap = p->kv_cap ? p->kv_cap * 2 : 16;
        p->kv = ep_realloc(p->kv, p->kv_cap * sizeof(*p->kv));
        p->meta = ep_realloc(p->meta, p->kv_cap * sizeof(*p->meta));
    }
    kv = &p->kv[p->n_kv++];
    kv->key = p->key;
    kv->val = keep(p, s, n);
    kv->type = k == V_STRING ? EP_VAL_STRING : k == V_NUMBER ? EP_VAL_NUMBER : EP_VAL_BOOL;
    return 1;
}

/* A string field of at most max bytes. */
static int set_str(ep_event_parser_t *p, vkind_t k, const char *s, size_t n, uint32_t max,
                   bool no_nul)
{
    if (k != V_STRING) {
        return fail_here(p, EP_EVALIDATE, "must be a string, not %s", kind_name(k));
    }
    if (n > max) {
        return fail_here(p, EP_EVALIDATE, "is longer than %u bytes", max);
    }
    if (check_text(p, s, n, no_nul) != 0) {
        return p->code == EP_EPARSE ? 0 : 1;
    }
    p->val[p->cur] = keep(p, s, n);
    p->present |= 1u << p->cur;
    return 1;
}

/* Every scalar goes through here. */
static int on_value(ep_event_parser_t *p, vkind_t k, const char *s, size_t n)
{
    if (p->code) {
        return 1; /* skip mode: only syntax and depth still matter */
    }
    if (p->depth == 0) {
        p->root_seen = true;
        return fail(p, EP_EVALIDATE, NULL, NULL, 0, "expected a JSON object, not %s", kind_name(k));
    }
    if (p->depth >= 2) {
        return add_kv(p, k, s, n);
    }
    if (k == V_NULL && p->cur != F_OTHER) {
        return 1; /* null known field = absent */
    }
    switch (p->cur) {
    case F_ID:
        return set_str(p, k, s, n, p->lim.max_id_len, true);
    case F_SOURCE:
    case F_EVENT_TYPE:
        return set_str(p, k, s, n, p->lim.max_value_len, true);
    case F_USER_ID:
        if (k == V_NUMBER) {
            k = V_STRING; /* keep the number's text */
        }
        return set_str(p, k, s, n, p->lim.max_value_len, true);
    case F_DATA:
        if (p->present & (1u << F_PAYLOAD)) {
            return fail_here(p, EP_EVALIDATE, "cannot be combined with payload");
        }
        return set_str(p, k, s, n, p->lim.max_data_len, false);
    case F_PAYLOAD: {
        int rc;
        if (k != V_STRING) {
            return fail_here(p, EP_EVALIDATE, "must be a base64 string, not %s", kind_name(k));
        }
        if (p->present & (1u << F_DATA)) {
            return fail_here(p, EP_EVALIDATE, "cannot be combined with data");
        }
        rc = decode_base64(p, s, n, &p->val[F_PAYLOAD]);
        if (rc == -1) {
            return fail_here(p, EP_EVALIDATE, "must be valid base64");
        }
        if (rc == -2) {
            return fail_here(p, EP_EVALIDATE, "decodes to more than %u bytes", p->lim.max_data_len);
        }
        p->present |= 1u << F_PAYLOAD;
        return 1;
    }
    case F_TIMESTAMP:
        if (set_timestamp(p, k, s, n) && p->code == 0) {
            p->present |= 1u << F_TIMESTAMP;
        }
        return 1;
    case F_METADATA:
    case F_PROPERTIES:
        return fail_here(p, EP_EVALIDATE, "must be an object, not %s", kind_name(k));
    default:
        return add_kv(p, k, s, n);
    }
}

/* ------------------------------------------------------------------ yajl callbacks */

static int on_null(void *ctx)
{
    return on_value(ctx, V_NULL, "", 0);
}

static int on_bool(void *ctx, int b)
{
    return b ? on_value(ctx, V_BOOL, "true", 4) : on_value(ctx, V_BOOL, "false", 5);
}

static int on_number(void *ctx, const char *s, size_t n)
{
    return on_value(ctx, V_NUMBER, s, n);
}

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    return on_value(ctx, V_STRING, (const char *)s, n);
}

static int on_open(ep_event_parser_t *p, bool is_map)
{
    const char *what = is_map ? "an object" : "an array";

    p->depth++;
    if (p->depth > p->lim.max_depth) {
        fail_here(p, EP_EVALIDATE, "is nested deeper than %u levels", p->lim.max_depth);
        return 0; /* stop: bounds the work on hostile input */
    }
    if (p->code) {
        return 1;
    }
    if (p->depth == 1) {
        p->root_seen = true;
        if (!is_map) {
            return fail(p, EP_EVALIDATE, NULL, NULL, 0, "expected a JSON object, not an array");
        }
        return 1;
    }
    if (p->depth == 2) {
        if ((p->cur == F_METADATA || p->cur == F_PROPERTIES) && is_map) {
            p->section = p->cur;
            p->present |= 1u << p->cur;
            return 1;
        }
        if (p->cur == F_METADATA || p->cur == F_PROPERTIES) {
            return fail_here(p, EP_EVALIDATE, "must be an object, not an array");
        }
        if (p->cur == F_OTHER) {
            return fail_here(p, EP_EVALIDATE,
                             "must be a string, number or boolean (objects and arrays are only "
                             "allowed in metadata and properties)");
        }
        if (p->cur == F_TIMESTAMP || p->cur == F_USER_ID) {
            return fail_here(p, EP_EVALIDATE, "must be a string or number, not %s", what);
        }
        return fail_here(p, EP_EVALIDATE, "must be a string, not %s", what);
    }
    return fail_here(p, EP_EVALIDATE, "must be a string, number or boolean, not %s", what);
}

static int on_start_map(void *ctx)
{
    return on_open(ctx, true);
}

static int on_start_array(void *ctx)
{
    return on_open(ctx, false);
}

static int on_close(void *ctx)
{
    ep_event_parser_t *p = ctx;

    p->depth--;
    if (p->depth <= 1) {
        p->section = F_OTHER;
    }
    return 1;
}

/* The known top-level field named k[0..n), or F_OTHER. */
static field_t known_field(const char *k, size_t n)
{
    field_t a = F_OTHER, b = F_OTHER;

    switch (n) {
    case 2:
        a = F_ID;
        break;
    case 4:
        a = F_DATA;
        break;
    case 6:
        a = F_SOURCE;
        break;
    case 7:
        a = F_PAYLOAD;
        b = F_USER_ID;
        break;
    case 8:
        a = F_METADATA;
        break;
    case 9:
        a = F_TIMESTAMP;
        break;
    case 10:
        a = F_EVENT_TYPE;
        b = F_PROPERTIES;
        break;
    default:
        return F_OTHER;
    }
    if (memcmp(field_names[a], k, n) == 0) {
        return a;
    }
    if (b != F_OTHER && memcmp(field_names[b], k, n) == 0) {
        return b;
    }
    return F_OTHER;
}

static int on_key(void *ctx, const unsigned char *s, size_t n)
{
    ep_event_parser_t *p = ctx;
    const char *k = (const char *)s;
    const char *prefix = cur_prefix(p);

    if (p->code) {
        return 1;
    }
    if (p->depth == 1) {
        p->cur = known_field(k, n);
        if (p->cur != F_OTHER) {
            if (p->seen & (1u << p->cur)) {
                return fail(p, EP_EVALIDATE, NULL, k, n, "appears more than once");
            }
            p->seen |= 1u << p->cur;
            return 1;
        }
    }
    if (!p->utf8_done && !ep__event_utf8_valid(k, n)) {
        return fail(p, EP_EPARSE, prefix, NULL, 0,
                    "invalid UTF-8 in key (or an unpaired \\u surrogate escape)");
    }
    if (n == 0) {
        return fail(p, EP_EVALIDATE, prefix, "", 0, "keys must not be empty");
    }
    if (n > p->lim.max_key_len) {
        return fail(p, EP_EVALIDATE, prefix, k, n, "key is longer than %u bytes",
                    p->lim.max_key_len);
    }
    if ((!p->utf8_done || p->str_nul) && memchr(k, '\0', n) != NULL) {
        return fail(p, EP_EVALIDATE, prefix, k, n, "key must not contain NUL characters");
    }
    p->key = keep(p, k, n);
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_key,
    .yajl_end_map = on_close,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_close,
};

/* ------------------------------------------------------------------ tokenizer */

/*
 * RFC 8259 without extensions: no comments, no trailing commas, whitespace is
 * space, tab, CR and LF only, strings are UTF-8 without raw control
 * characters, \u escapes must pair surrogates. A value's handler runs as soon as
 * the value is complete; a handler returning 0 stops the walk (its error is
 * already recorded). A syntax error replaces any validation error.
 */

typedef struct lex_s {
    const unsigned char *start, *p, *end;
} lex_t;

/* Records a syntax error at byte offset at; returns 0 so callers can `return syntax(...)`. */
static int syntax(ep_event_parser_t *p, const lex_t *lx, const unsigned char *at, const char *why)
{
    size_t off = (size_t)(at - lx->start);

    p->code = 0; /* a syntax error replaces any validation error */
    if (at >= lx->end) {
        fail(p, EP_EPARSE, NULL, NULL, 0, "malformed JSON at byte %zu: premature end of input",
             off);
    } else {
        fail(p, EP_EPARSE, NULL, NULL, 0, "malformed JSON at byte %zu: %s", off, why);
    }
    return 0;
}

static const unsigned char *skip_ws(const unsigned char *q, const unsigned char *end)
{
    while (q < end && (*q == ' ' || *q == '\n' || *q == '\r' || *q == '\t')) {
        q++;
    }
    return q;
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
static size_t plain_char(ep_event_parser_t *p, const lex_t *lx, const unsigned char *q)
{
    size_t k;

    if (*q < 0x20) {
        syntax(p, lx, q, "control character inside a string (escape it)");
        return 0;
    }
    if (*q < 0x80) {
        return 1;
    }
    k = utf8_seq(q, lx->end);
    if (k == 0) {
        syntax(p, lx, q, "invalid UTF-8 in string");
    }
    return k;
}

/*
 * Scans the string whose opening quote is at lx->p. On success returns 1 with
 * *s, *n the decoded text (a slice of the input when there are no escapes, else
 * p->esc) and lx->p after the closing quote; on a syntax error returns 0.
 */
static int lex_string(ep_event_parser_t *p, lex_t *lx, const char **s, size_t *n)
{
    const unsigned char *q = lx->p + 1, *end = lx->end, *from = q;
    size_t k;

    p->str_nul = false;
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
            return syntax(p, lx, end, "");
        }
        if (*q == '"') {
            *s = (const char *)from;
            *n = (size_t)(q - from);
            lx->p = q + 1;
            return 1;
        }
        if (*q == '\\') {
            break;
        }
        k = plain_char(p, lx, q);
        if (k == 0) {
            return 0;
        }
        q += k;
    }

    /* Escapes: decode into p->esc. */
    ep_buf_reset(&p->esc);
    ep_buf_append(&p->esc, from, (size_t)(q - from));
    while (q < end && *q != '"') {
        unsigned cp, lo;
        const unsigned char *at = q;

        if (*q != '\\') {
            k = plain_char(p, lx, q);
            if (k == 0) {
                return 0;
            }
            ep_buf_append(&p->esc, q, k);
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
                ep_buf_putc(&p->esc, esc_out[e - esc_in]);
                q++;
                continue;
            }
        }
        if (*q++ != 'u') {
            return syntax(p, lx, at, "invalid escape in string");
        }
        if (hex4(q, end, &cp) != 0) {
            return syntax(p, lx, at, "invalid \\u escape (four hex digits expected)");
        }
        q += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return syntax(p, lx, at, "unpaired UTF-16 surrogate in \\u escape (not UTF-8)");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (end - q < 6 || q[0] != '\\' || q[1] != 'u' || hex4(q + 2, end, &lo) != 0 ||
                lo < 0xDC00 || lo > 0xDFFF) {
                return syntax(p, lx, at, "unpaired UTF-16 surrogate in \\u escape (not UTF-8)");
            }
            q += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        put_utf8(&p->esc, cp);
        p->str_nul |= cp == 0;
    }
    if (q >= end) {
        return syntax(p, lx, end, "");
    }
    *s = p->esc.data;
    *n = p->esc.len;
    lx->p = q + 1;
    return 1;
}

/* Scans a number at lx->p (the grammar of RFC 8259); 0 on a syntax error. */
static int lex_number(ep_event_parser_t *p, lex_t *lx)
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
        return syntax(p, lx, q, "invalid number (a digit expected)");
    }
    if (q < end && *q == '.') {
        q++;
        if (q >= end || !DIGIT(*q)) {
            return syntax(p, lx, q, "invalid number (a digit expected after '.')");
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
            return syntax(p, lx, q, "invalid number (a digit expected in the exponent)");
        }
        while (q < end && DIGIT(*q)) {
            q++;
        }
    }
#undef DIGIT
    {
        const unsigned char *s = lx->p;
        lx->p = q;
        return on_value(p, V_NUMBER, (const char *)s, (size_t)(q - s));
    }
}

static int lex_literal(ep_event_parser_t *p, lex_t *lx)
{
    static const struct {
        const char *text;
        size_t len;
        vkind_t kind;
    } lits[] = {{"true", 4, V_BOOL}, {"false", 5, V_BOOL}, {"null", 4, V_NULL}};

    for (size_t i = 0; i < sizeof(lits) / sizeof(lits[0]); i++) {
        if ((size_t)(lx->end - lx->p) >= lits[i].len &&
            memcmp(lx->p, lits[i].text, lits[i].len) == 0) {
            lx->p += lits[i].len;
            return on_value(p, lits[i].kind, lits[i].kind == V_NULL ? "" : lits[i].text,
                            lits[i].kind == V_NULL ? 0 : lits[i].len);
        }
    }
    return syntax(p, lx, lx->p,
                  "invalid value (expected a string, number, object, array, "
                  "true, false or null)");
}

/* Walks the whole input; errors land in p->code and *p->err. */
static void run_lexer(ep_event_parser_t *p, const char *json, size_t len)
{
    lex_t lx = {(const unsigned char *)json, (const unsigned char *)json,
                (const unsigned char *)json + len};
    const char *s;
    size_t n, sp = 0;

    lx.p = skip_ws(lx.p, lx.end);
    if (lx.p == lx.end) {
        return; /* no value: reported by the caller */
    }

value:
    if (lx.p >= lx.end) {
        syntax(p, &lx, lx.p, "");
        return;
    }
    switch (*lx.p) {
    case '{':
    case '[': {
        bool is_map = *lx.p == '{';
        if (!on_open(p, is_map)) {
            return;
        }
        if (sp > p->lim.max_depth) {
            syntax(p, &lx, lx.p, "nested too deep"); /* on_open stops first; a guard */
            return;
        }
        p->stk[sp++] = is_map;
        lx.p = skip_ws(lx.p + 1, lx.end);
        if (lx.p < lx.end && *lx.p == (is_map ? '}' : ']')) {
            lx.p++;
            sp--;
            on_close(p);
            goto after;
        }
        if (is_map) {
            goto key;
        }
        goto value;
    }
    case '"':
        if (!lex_string(p, &lx, &s, &n) || !on_value(p, V_STRING, s, n)) {
            return;
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
        if (!lex_number(p, &lx)) {
            return;
        }
        goto after;
    default:
        if (!lex_literal(p, &lx)) {
            return;
        }
        goto after;
    }

key:
    if (lx.p >= lx.end || *lx.p != '"') {
        syntax(p, &lx, lx.p, "object key expected (a string in double quotes)");
        return;
    }
    if (!lex_string(p, &lx, &s, &n) || !on_key(p, (const unsigned char *)s, n)) {
        return;
    }
    lx.p = skip_ws(lx.p, lx.end);
    if (lx.p >= lx.end || *lx.p != ':') {
        syntax(p, &lx, lx.p, "':' expected after an object key");
        return;
    }
    lx.p = skip_ws(lx.p + 1, lx.end);
    goto value;

after:
    lx.p = skip_ws(lx.p, lx.end);
    if (sp == 0) {
        if (lx.p < lx.end) {
            syntax(p, &lx, lx.p, "trailing garbage after the JSON value");
        }
        return;
    }
    if (lx.p >= lx.end) {
        syntax(p, &lx, lx.p, "");
        return;
    }
    if (*lx.p == ',') {
        lx.p = skip_ws(lx.p + 1, lx.end);
        if (p->stk[sp - 1]) {
            goto key;
        }
        goto value;
    }
    if (*lx.p == (p->stk[sp - 1] ? '}' : ']')) {
        lx.p++;
        sp--;
        on_close(p);
        goto after;
    }
    syntax(p, &lx, lx.p,
           p->stk[sp - 1] ? "',' or '}' expected after an object member"
                          : "',' or ']' expected after an array element");
}

/* ------------------------------------------------------------------ driver */

/* Formats yajl's error as "malformed JSON at byte N: <reason>". */
static void syntax_error(ep_event_parser_t *p, yajl_handle h, const char *json, size_t len,
                         size_t offset)
{
    unsigned char *ye = yajl_get_error(h, 0, (const unsigned char *)json, len);
    const char *why = ye ? (const char *)ye : "invalid JSON";
    const char *colon = strstr(why, "error: ");
    size_t n;

    if (colon) {
        why = colon + strlen("error: ");
    }
    n = strcspn(why, "\r\n");
    while (n > 0 && (why[n - 1] == ' ' || why[n - 1] == '.')) {
        n--;
    }
    p->code = 0; /* a syntax error replaces any validation error */
    fail(p, EP_EPARSE, NULL, NULL, 0, "malformed JSON at byte %zu: %.*s", offset, (int)n, why);
    if (ye) {
        yajl_free_error(h, ye);
    }
}

/* A field's text as (pointer, length); empty when the field is absent. */
static ep_str_t field_str(const ep_event_parser_t *p, field_t f)
{
    ep_str_t r = {"", 0};

    if (p->present & (1u << f)) {
        r.p = str_at(p, p->val[f]);
        r.len = p->val[f].len;
    }
    return r;
}

/* Checks the requirements that need the whole object and builds the event. */
static int finish(ep_event_parser_t *p, const ep_event_parse_opts_t *opts, ep_event_t **out)
{
    ep_str_t id = field_str(p, F_ID), source = field_str(p, F_SOURCE),
             event_type = field_str(p, F_EVENT_TYPE), user_id = field_str(p, F_USER_ID),
             data = {"", 0};

    if (!(p->present & (1u << F_SOURCE)) && !(opts && opts->default_source)) {
        return fail(p, EP_EVALIDATE, NULL, "source", 6, "is required");
    }
    if ((p->present & (1u << F_SOURCE)) && source.len == 0) {
        return fail(p, EP_EVALIDATE, NULL, "source", 6, "must not be empty");
    }
    if (opts && opts->event_type) {
        size_t n = strlen(opts->event_type);
        if ((p->present & (1u << F_EVENT_TYPE)) &&
            (event_type.len != n || memcmp(event_type.p, opts->event_type, n) != 0)) {
            return fail(p, EP_EVALIDATE, NULL, "event_type", 10,
                        "is set by this route; leave it out or use the route's type");
        }
        event_type.p = opts->event_type;
        event_type.len = n;
    }
    if (!(p->present & (1u << F_SOURCE))) {
        source.p = opts->default_source;
        source.len = strlen(source.p);
    }
    if (p->present & (1u << F_DATA)) {
        data = field_str(p, F_DATA);
    } else if (p->present & (1u << F_PAYLOAD)) {
        data = field_str(p, F_PAYLOAD);
    }
    if (opts && opts->require_data && data.len == 0) {
        if (!(p->present & ((1u << F_DATA) | (1u << F_PAYLOAD)))) {
            return fail(p, EP_EVALIDATE, NULL, "data", 4, "is required");
        }
        return fail(p, EP_EVALIDATE, NULL, (p->present & (1u << F_DATA)) ? "data" : "payload",
                    (p->present & (1u << F_DATA)) ? 4 : 7, "must not be empty");
    }
    if (data.len == 0 && event_type.len == 0) {
        return fail(p, EP_EVALIDATE, NULL, "data", 4,
                    "is required: one of data, payload or event_type must be non-empty");
    }
    for (uint32_t i = 0; i < p->n_kv; i++) {
        p->meta[i].key.p = str_at(p, p->kv[i].key);
        p->meta[i].key.len = p->kv[i].key.len;
        p->meta[i].val.p = str_at(p, p->kv[i].val);
        p->meta[i].val.len = p->kv[i].val.len;
        p->meta[i].type = p->kv[i].type;
    }
    *out = ep_event_create_at(&id, &source, &event_type, &user_id, data.p, data.len, p->meta,
                              p->n_kv, p->ts_ms,
                              opts && opts->received_us ? opts->received_us : ep_time_now_us());
    return 0;
}

/* Runs yajl over the whole input; errors land in p->code and *p->err. */
static void run_yajl(ep_event_parser_t *p, const char *json, size_t len)
{
    yajl_alloc_funcs af = {arena_alloc, arena_realloc, arena_free, &p->arena};
    yajl_handle h;
    yajl_status st;

    h = yajl_alloc(&callbacks, &af, p);
    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);

    st = yajl_parse(h, (const unsigned char *)json, len);
    if (st == yajl_status_error) {
        syntax_error(p, h, json, len, yajl_get_bytes_consumed(h));
    } else if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        if (st == yajl_status_error) {
            syntax_error(p, h, json, len, len);
        }
    }
    /* yajl_status_client_canceled: one of the callbacks recorded the error. */
    yajl_free(h);
}

/* Creates a parser (NULL lim = defaults); OOM aborts. The caller owns it; one thread at a time. */
ep_event_parser_t *ep_event_parser_create(const ep_event_limits_t *lim)
{
    static const ep_event_limits_t defaults = EP_EVENT_LIMITS_DEFAULT;
    ep_event_parser_t *p = ep_calloc(1, sizeof(*p));

    for (int f = 0; f < F_COUNT_; f++) {
        ep_assert(strlen(field_names[f]) == field_lens[f]);
    }
    p->lim = lim ? *lim : defaults;
    ep_buf_init(&p->strs);
    ep_buf_init(&p->esc);
    p->stk = ep_malloc((size_t)p->lim.max_depth + 1);
    return p;
}

/*
 * Parses one JSON object into a new event (see ep_event.h for the rules). Returns
 * 0 and a caller-owned *out, or EP_EPARSE / EP_EVALIDATE with *err filled (err
 * may be NULL) and *out NULL. Reuses p's buffers; not thread-safe per parser.
 */
int ep_event_parser_parse(ep_event_parser_t *p, const char *json, size_t len, ep_event_t **out,
                          ep_parse_err_t *err)
{
    return ep_event_parser_parse_opts(p, json, len, NULL, out, err);
}

static int parse_with(ep_event_parser_t *p, bool ref, const char *json, size_t len,
                      const ep_event_parse_opts_t *opts, ep_event_t **out, ep_parse_err_t *err)
{
    ep_parse_err_t scratch;
    int rc;

    *out = NULL;
    p->err = err ? err : &scratch;
    p->err->msg[0] = '\0';
    p->err->field[0] = '\0';
    reset_draft(p);
    p->in = json;
    p->in_end = json + len;
    p->utf8_done = !ref;
    if (ref) {
        arena_reset(&p->arena);
    }
    /* Decoded escapes of one huge string are not kept around either. */
    if (p->esc.cap > (size_t)p->lim.max_data_len * 2 + 64 * 1024) {
        ep_buf_close(&p->esc);
    }
    /* A body of one huge string is not kept around for the next parse. */
    if (p->strs.cap > (size_t)p->lim.max_data_len * 2 + 64 * 1024) {
        ep_buf_close(&p->strs);
    }
    ep_buf_reset(&p->strs);
    ep_buf_putc(&p->strs, '\0'); /* offset 0 is the empty string */
    if (len == 0) {
        fail(p, EP_EPARSE, NULL, NULL, 0, "empty body");
    } else if (len > UINT32_MAX / 2) {
        fail(p, EP_EVALIDATE, NULL, NULL, 0, "body is larger than 2 GiB");
    } else if (ref) {
        run_yajl(p, json, len);
    } else {
        run_lexer(p, json, len);
    }
    if (p->code == 0 && !p->root_seen) {
        fail(p, EP_EPARSE, NULL, NULL, 0, "malformed JSON at byte %zu: no value", len);
    }
    if (p->code == 0) {
        finish(p, opts, out);
    }
    rc = p->code;
    p->err = NULL;
    return rc;
}

/* ep_event_parser_parse with route defaults (see ep_event.h). */
int ep_event_parser_parse_opts(ep_event_parser_t *p, const char *json, size_t len,
                               const ep_event_parse_opts_t *opts, ep_event_t **out,
                               ep_parse_err_t *err)
{
    return parse_with(p, false, json, len, opts, out, err);
}

/* The same parse driven by yajl: the reference for the differential tests (ep_event.h). */
int ep__event_parser_parse_ref(ep_event_parser_t *p, const char *json, size_t len, ep_event_t **out,
                               ep_parse_err_t *err)
{
    return parse_with(p, true, json, len, NULL, out, err);
}

/* Frees the parser and its buffers. Accepts NULL. */
void ep_event_parser_destroy(ep_event_parser_t *p)
{
    if (p == NULL) {
        return;
    }
    arena_close(&p->arena);
    ep_buf_close(&p->strs);
    ep_buf_close(&p->esc);
    ep_free(p->stk);
    ep_free(p->kv);
    ep_free(p->meta);
    ep_free(p);
}

/* ep_event_parser_parse with a temporary parser; same results. Thread-safe. */
int ep_event_parse_json(const char *json, size_t len, const ep_event_limits_t *lim,
                        ep_event_t **out, ep_parse_err_t *err)
{
    ep_event_parser_t *p = ep_event_parser_create(lim);
    int rc = ep_event_parser_parse(p, json, len, out, err);

    ep_event_parser_destroy(p);
    return rc;
}
