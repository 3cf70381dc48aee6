/*
 * JSON -> event. The tokenizer (ep_json_lex.h: RFC 8259, strict) walks the
 * input once and calls the same handlers a SAX parser would (on_open, on_key,
 * on_value, on_close; run_lexer passes them), which fill a per-parser draft;
 * the only heap allocation per successful parse is the event block itself:
 *   - strings without escapes are handed over as slices of the input; escaped
 *     ones are decoded into a reusable buffer;
 *   - string values are copied into one reusable buffer and referred to by
 *     offset until the event is built.
 * The tokenizer checks UTF-8 as it scans (an invalid byte or an unpaired \u
 * surrogate is a syntax error with its byte offset). The handlers are also
 * open to another driver (ep_event_json_int.h): the yajl-driven reference the
 * differential tests and the fuzz target compare against lives under tests/
 * (tests/support/ep_event_json_ref.c; yajl was the parser until the tokenizer
 * replaced it for speed), so the product does not link yajl for this.
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
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "event/ep_event_json_int.h"
#include "event/ep_json_lex.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ UTF-8 */

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
        k = ep_json_utf8_seq(p, end);
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
 * (or only one of them) becomes the field path. Returns the value for a
 * handler: 0 (stop) for parse errors, 1 (go on, in skip mode) for validation.
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

#define TS_MAX_MS  EP_EVENT_TS_MAX_MS /* 9999-12-31T23:59:59.999Z */
#define TS_SECONDS 1e11               /* below: seconds, from here on: milliseconds */

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

/* ------------------------------------------------------------------ handlers */

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

/* ------------------------------------------------------------------ tokenizer driver */

/* Records the tokenizer's syntax error; it replaces any validation error. */
static void syntax_error(ep_event_parser_t *p, size_t off, const char *why, int why_len)
{
    p->code = 0;
    fail(p, EP_EPARSE, NULL, NULL, 0, "malformed JSON at byte %zu: %.*s", off, why_len, why);
}

/* The handlers as the tokenizer calls them; inlined into its walk. */
static inline int lex_open(void *ctx, bool is_object)
{
    return on_open(ctx, is_object);
}

static inline int lex_close(void *ctx)
{
    return on_close(ctx);
}

static inline int lex_key(void *ctx, const char *s, size_t n, bool nul)
{
    ep_event_parser_t *p = ctx;

    p->str_nul = nul;
    return on_key(p, (const unsigned char *)s, n);
}

static inline int lex_value(void *ctx, ep_json_kind_t kind, const char *s, size_t n, bool nul)
{
    ep_event_parser_t *p = ctx;

    switch (kind) {
    case EP_JSON_STRING:
        p->str_nul = nul;
        return on_value(p, V_STRING, s, n);
    case EP_JSON_NUMBER:
        return on_value(p, V_NUMBER, s, n);
    case EP_JSON_NULL:
        return on_value(p, V_NULL, s, n);
    default:
        return on_value(p, V_BOOL, s, n);
    }
}

static const ep_json_handlers_t lex_handlers = {lex_open, lex_close, lex_key, lex_value};

/*
 * Walks the whole input with the tokenizer (ep_json_lex.h), which calls the
 * handlers; errors land in p->code and *p->err.
 */
static void run_lexer(ep_event_parser_t *p, const char *json, size_t len)
{
    ep_json_lex_t lx;

    ep_json_lex_init(&lx, json, len, p->stk, (size_t)p->lim.max_depth + 1, &p->esc);
    if (ep_json_walk(&lx, &lex_handlers, p) == EP_JSON_SYNTAX) {
        syntax_error(p, lx.err_off, lx.err_why, (int)strlen(lx.err_why));
    }
}

/* ------------------------------------------------------------------ other drivers */

/* The handlers for another driver (ep_event_json_int.h). */
int ep__event_json_null(void *ctx)
{
    return on_value(ctx, V_NULL, "", 0);
}

int ep__event_json_bool(void *ctx, int b)
{
    return b ? on_value(ctx, V_BOOL, "true", 4) : on_value(ctx, V_BOOL, "false", 5);
}

int ep__event_json_number(void *ctx, const char *s, size_t n)
{
    return on_value(ctx, V_NUMBER, s, n);
}

int ep__event_json_string(void *ctx, const unsigned char *s, size_t n)
{
    return on_value(ctx, V_STRING, (const char *)s, n);
}

int ep__event_json_start_map(void *ctx)
{
    return on_open(ctx, true);
}

int ep__event_json_start_array(void *ctx)
{
    return on_open(ctx, false);
}

int ep__event_json_end(void *ctx)
{
    return on_close(ctx);
}

int ep__event_json_key(void *ctx, const unsigned char *s, size_t n)
{
    return on_key(ctx, s, n);
}

void ep__event_json_syntax_error(ep_event_parser_t *p, size_t offset, const char *why,
                                 size_t why_len)
{
    syntax_error(p, offset, why, (int)why_len);
}

/* ------------------------------------------------------------------ driver */

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

/*
 * Applies the route's options, runs the shared validation (ep_event_validate,
 * the same one every protobuf path runs) and builds the event. The rules
 * checked while tokenizing (lengths, key count, text, duplicate keys) stop a
 * bad body early and name the exact JSON path; the shared validation is the
 * final word on what an event may be.
 */
static int finish(ep_event_parser_t *p, const ep_event_parse_opts_t *opts, ep_event_t **out)
{
    ep_event_draft_t d;
    int rc;

    memset(&d, 0, sizeof(d));
    d.id = field_str(p, F_ID);
    d.source = field_str(p, F_SOURCE);
    d.event_type = field_str(p, F_EVENT_TYPE);
    d.user_id = field_str(p, F_USER_ID);
    d.data.p = "";
    if (d.id.len == 0 && opts && opts->id) {
        /* Assigned by the hop in front (the gateway's X-Message-Id). */
        d.id.p = opts->id;
        d.id.len = (uint32_t)strlen(opts->id);
    }
    if (!(p->present & (1u << F_SOURCE))) {
        d.source.p = opts && opts->default_source ? opts->default_source : NULL;
        d.source.len = d.source.p ? (uint32_t)strlen(d.source.p) : 0;
    }
    if (d.source.p == NULL || d.source.len == 0) {
        /* Before the route's checks, as ep_event_validate would say it. */
        return fail(p, EP_EVALIDATE, NULL, "source", 6,
                    d.source.p == NULL ? "is required" : "must not be empty");
    }
    if (opts && opts->event_type) {
        size_t n = strlen(opts->event_type);
        if ((p->present & (1u << F_EVENT_TYPE)) &&
            (d.event_type.len != n || memcmp(d.event_type.p, opts->event_type, n) != 0)) {
            return fail(p, EP_EVALIDATE, NULL, "event_type", 10,
                        "is set by this route; leave it out or use the route's type");
        }
        d.event_type.p = opts->event_type;
        d.event_type.len = (uint32_t)n;
    }
    if (p->present & (1u << F_DATA)) {
        d.data = field_str(p, F_DATA);
    } else if (p->present & (1u << F_PAYLOAD)) {
        d.data = field_str(p, F_PAYLOAD);
    }
    if (opts && opts->require_data && d.data.len == 0) {
        if (!(p->present & ((1u << F_DATA) | (1u << F_PAYLOAD)))) {
            return fail(p, EP_EVALIDATE, NULL, "data", 4, "is required");
        }
        return fail(p, EP_EVALIDATE, NULL, (p->present & (1u << F_DATA)) ? "data" : "payload",
                    (p->present & (1u << F_DATA)) ? 4 : 7, "must not be empty");
    }
    for (uint32_t i = 0; i < p->n_kv; i++) {
        p->meta[i].key.p = str_at(p, p->kv[i].key);
        p->meta[i].key.len = p->kv[i].key.len;
        p->meta[i].val.p = str_at(p, p->kv[i].val);
        p->meta[i].val.len = p->kv[i].val.len;
        p->meta[i].type = p->kv[i].type;
    }
    d.meta = p->meta;
    d.n_meta = p->n_kv;
    d.timestamp_ms = p->ts_ms;
    /* The tokenizer checked the text and typed values, add_kv the keys' uniqueness. */
    d.flags = EP_DRAFT_TEXT_CHECKED | EP_DRAFT_KEYS_UNIQUE;
    if ((rc = ep_event_validate(&d, &p->lim, p->err)) != 0) {
        p->code = rc;
        return 1;
    }
    *out = ep_event_create_at(&d.id, &d.source, &d.event_type, &d.user_id, d.data.p, d.data.len,
                              p->meta, p->n_kv, p->ts_ms,
                              opts && opts->received_us ? opts->received_us : ep_time_now_us());
    return 0;
}

/* Creates a parser (NULL lim = defaults); OOM aborts. The caller owns it; one thread at a time. */
ep_event_parser_t *ep_event_parser_create(const ep_event_limits_t *lim)
{
    ep_event_parser_t *p = ep_calloc(1, sizeof(*p));

    for (int f = 0; f < F_COUNT_; f++) {
        ep_assert(strlen(field_names[f]) == field_lens[f]);
    }
    p->lim = lim ? *lim : *ep_event_limits_default();
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

/* The parse with run as the driver (NULL: the tokenizer). */
static int parse_with(ep_event_parser_t *p, ep__event_json_run_t run, const char *json, size_t len,
                      const ep_event_parse_opts_t *opts, ep_event_t **out, ep_parse_err_t *err)
{
    ep_parse_err_t scratch;
    int rc;

    *out = NULL;
    /* cppcheck-suppress uninitvar ; scratch is written (msg, field) before it is read */
    p->err = err ? err : &scratch;
    p->err->msg[0] = '\0';
    p->err->field[0] = '\0';
    reset_draft(p);
    p->in = json;
    p->in_end = json + len;
    p->utf8_done = run == NULL;
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
    } else if (run == NULL) {
        run_lexer(p, json, len);
    } else {
        run(p, json, len);
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
    return parse_with(p, NULL, json, len, opts, out, err);
}

/* The same parse with another driver (ep_event_json_int.h). */
int ep__event_json_parse_driven(ep_event_parser_t *p, ep__event_json_run_t run, const char *json,
                                size_t len, ep_event_t **out, ep_parse_err_t *err)
{
    return parse_with(p, run, json, len, NULL, out, err);
}

/* Frees the parser and its buffers. Accepts NULL. */
void ep_event_parser_destroy(ep_event_parser_t *p)
{
    if (p == NULL) {
        return;
    }
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
