/*
 * Event construction, copy, destruction and JSON output. The JSON parser lives
 * in ep_event_json.c and the protobuf codec in ep_event_pb.c.
 */
#include "event/ep_event.h"
#include "event/ep_id.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <string.h>

/* Copies n bytes plus a NUL at *cursor and points s at them. */
static void put_str(ep_str_t *s, char **cursor, const char *p, size_t n)
{
    if (n) {
        memcpy(*cursor, p, n);
    }
    (*cursor)[n] = '\0';
    s->p = *cursor;
    s->len = (uint32_t)n;
    *cursor += n + 1;
}

/* A (pointer, length) view of a C string; NULL is the empty string. */
static ep_str_t cstr(const char *s)
{
    ep_str_t v = {s ? s : "", s ? (uint32_t)strlen(s) : 0};
    return v;
}

ep_event_t *ep_event_create(const char *id, const char *source, const char *event_type,
                            const char *user_id, const void *data, size_t data_len,
                            const ep_kv_t *meta, uint32_t n_meta, int64_t timestamp_ms)
{
    ep_str_t v_id = cstr(id), v_source = cstr(source), v_type = cstr(event_type),
             v_user = cstr(user_id);

    return ep_event_create_n(&v_id, &v_source, &v_type, &v_user, data, data_len, meta, n_meta,
                             timestamp_ms);
}

ep_event_t *ep_event_create_n(const ep_str_t *id, const ep_str_t *source,
                              const ep_str_t *event_type, const ep_str_t *user_id, const void *data,
                              size_t data_len, const ep_kv_t *meta, uint32_t n_meta,
                              int64_t timestamp_ms)
{
    /* One clock read for received_us and a generated id. */
    return ep_event_create_at(id, source, event_type, user_id, data, data_len, meta, n_meta,
                              timestamp_ms, ep_time_now_us());
}

ep_event_t *ep_event_create_at(const ep_str_t *id, const ep_str_t *source,
                               const ep_str_t *event_type, const ep_str_t *user_id,
                               const void *data, size_t data_len, const ep_kv_t *meta,
                               uint32_t n_meta, int64_t timestamp_ms, int64_t now_us)
{
    char gen_id[EP_UUID_STR_LEN + 1];
    const char *id_p = id->p;
    size_t size, id_len = id->len;
    ep_event_t *ev;
    char *cur;
    uint32_t flags = 0;

    if (id_len == 0) {
        ep_id_uuid7_at(gen_id, now_us / 1000);
        id_p = gen_id;
        id_len = strlen(gen_id);
        flags |= EP_EVENT_F_ID_GENERATED;
    }
    size = sizeof(ep_event_t) + (size_t)n_meta * sizeof(ep_kv_t);
    size += id_len + 1 + (size_t)source->len + 1 + (size_t)event_type->len + 1 +
            (size_t)user_id->len + 1;
    size += data_len + 1;
    for (uint32_t i = 0; i < n_meta; i++) {
        size += (size_t)meta[i].key.len + 1 + (size_t)meta[i].val.len + 1;
    }
    ev = ep_malloc(size);
    memset(ev, 0, sizeof(*ev));
    ev->meta = (ep_kv_t *)(ev + 1);
    ev->n_meta = n_meta;
    cur = (char *)(ev->meta + n_meta);
    put_str(&ev->id, &cur, id_p, id_len);
    put_str(&ev->source, &cur, source->p, source->len);
    put_str(&ev->event_type, &cur, event_type->p, event_type->len);
    put_str(&ev->user_id, &cur, user_id->p, user_id->len);
    put_str(&ev->data, &cur, data ? data : "", data ? data_len : 0);
    for (uint32_t i = 0; i < n_meta; i++) {
        put_str(&ev->meta[i].key, &cur, meta[i].key.p, meta[i].key.len);
        put_str(&ev->meta[i].val, &cur, meta[i].val.p, meta[i].val.len);
        ev->meta[i].type = meta[i].type;
    }
    ev->received_us = now_us;
    if (timestamp_ms == 0) {
        timestamp_ms = ev->received_us / 1000;
        flags |= EP_EVENT_F_TS_GENERATED;
    }
    ev->timestamp_ms = timestamp_ms;
    ev->flags = flags;
    ev->size = (uint32_t)size;
    return ev;
}

ep_event_t *ep_event_clone(const ep_event_t *src)
{
    ep_event_t *ev = ep_malloc(src->size);
    ptrdiff_t delta;

    memcpy(ev, src, src->size);
    /* Every pointer inside the block moves by the same offset. */
    delta = (const char *)ev - (const char *)src;
    ev->next = NULL;
    ev->qh = NULL;
    ev->meta = (ep_kv_t *)((char *)src->meta + delta);
    ev->id.p += delta;
    ev->source.p += delta;
    ev->event_type.p += delta;
    ev->user_id.p += delta;
    ev->data.p += delta;
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        ev->meta[i].key.p += delta;
        ev->meta[i].val.p += delta;
    }
    return ev;
}

void ep_event_destroy(ep_event_t *ev)
{
    ep_free(ev);
}

static void put_field(ep_buf_t *out, const char *name, const ep_str_t *s, int *first)
{
    if (s->len == 0) {
        return;
    }
    ep_buf_puts(out, *first ? "\"" : ",\"");
    ep_buf_puts(out, name);
    ep_buf_puts(out, "\":");
    ep_buf_put_json_str(out, s->p, s->len);
    *first = 0;
}

void ep_event_to_json(const ep_event_t *ev, ep_buf_t *out)
{
    int first = 1;

    ep_buf_putc(out, '{');
    put_field(out, "id", &ev->id, &first);
    put_field(out, "source", &ev->source, &first);
    put_field(out, "event_type", &ev->event_type, &first);
    put_field(out, "user_id", &ev->user_id, &first);
    put_field(out, "data", &ev->data, &first);
    ep_buf_puts(out, first ? "\"timestamp\":" : ",\"timestamp\":");
    ep_buf_put_i64(out, ev->timestamp_ms);
    if (ev->n_meta) {
        ep_buf_puts(out, ",\"metadata\":{");
        for (uint32_t i = 0; i < ev->n_meta; i++) {
            const ep_kv_t *kv = &ev->meta[i];
            if (i) {
                ep_buf_putc(out, ',');
            }
            ep_buf_put_json_str(out, kv->key.p, kv->key.len);
            ep_buf_putc(out, ':');
            if (kv->type == EP_VAL_STRING) {
                ep_buf_put_json_str(out, kv->val.p, kv->val.len);
            } else {
                ep_buf_append(out, kv->val.p, kv->val.len);
            }
        }
        ep_buf_putc(out, '}');
    }
    ep_buf_putc(out, '}');
}

void ep_event_to_sink_line(const ep_event_t *ev, ep_buf_t *out)
{
    ep_buf_puts(out, "{\"id\":");
    ep_buf_put_json_str(out, ev->id.p, ev->id.len);
    ep_buf_puts(out, ",\"event_type\":");
    ep_buf_put_json_str(out, ev->event_type.p, ev->event_type.len);
    ep_buf_puts(out, ",\"source\":");
    ep_buf_put_json_str(out, ev->source.p, ev->source.len);
    ep_buf_puts(out, ",\"user_id\":");
    ep_buf_put_json_str(out, ev->user_id.p, ev->user_id.len);
    ep_buf_puts(out, ",\"timestamp\":");
    ep_buf_put_i64(out, ev->timestamp_ms);
    ep_buf_puts(out, ",\"received_at\":");
    ep_buf_put_i64(out, ev->received_us);
    ep_buf_puts(out, ",\"processed_at\":");
    ep_buf_put_i64(out, ev->processed_us);
    ep_buf_puts(out, ",\"latency_us\":");
    ep_buf_put_i64(out, ev->processed_us - ev->received_us);
    ep_buf_puts(out, "}\n");
}

/* ------------------------------------------------------------------ validation */

static ep_event_limits_t default_limits = EP_EVENT_LIMITS_DEFAULT;

void ep_event_limits_set_default(const ep_event_limits_t *lim)
{
    default_limits = *lim;
}

const ep_event_limits_t *ep_event_limits_default(void)
{
    return &default_limits;
}

#include "base/ep_error.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#define DUP_STACK_SLOTS 128 /* drafts of up to this many entries sort on the stack */

static int verr(ep_parse_err_t *err, int code, const char *field, const ep_str_t *key,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Fills err (field, or "field.key" when key is given) and returns code. */
static int verr(ep_parse_err_t *err, int code, const char *field, const ep_str_t *key,
                const char *fmt, ...)
{
    va_list ap;

    if (err == NULL) {
        return code;
    }
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (key) {
        int klen = key->len > 64 ? 64 : (int)key->len;
        snprintf(err->field, sizeof(err->field), "%s.%.*s", field, klen, key->p);
    } else {
        snprintf(err->field, sizeof(err->field), "%s", field);
    }
    return code;
}

static bool is_digit(const char *p, const char *end)
{
    return p < end && *p >= '0' && *p <= '9';
}

/* JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const ep_str_t *s)
{
    const char *p = s->p, *end = s->p + s->len;

    if (p < end && *p == '-') {
        p++;
    }
    if (p < end && *p == '0') {
        p++;
    } else if (p < end && *p >= '1' && *p <= '9') {
        while (is_digit(p, end)) {
            p++;
        }
    } else {
        return false;
    }
    if (p < end && *p == '.') {
        p++;
        if (!is_digit(p, end)) {
            return false;
        }
        while (is_digit(p, end)) {
            p++;
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) {
            p++;
        }
        if (!is_digit(p, end)) {
            return false;
        }
        while (is_digit(p, end)) {
            p++;
        }
    }
    return p == end;
}

static bool same_str(const ep_str_t *a, const ep_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/* Checks a text field: length, then (unless the decoder did) UTF-8 and NUL. */
static int check_text(const ep_str_t *s, uint32_t max, bool checked, const char *field,
                      const ep_str_t *key, const char *what, ep_parse_err_t *err)
{
    if (s->len > max) {
        return verr(err, EP_EVALIDATE, field, key, "%sis longer than %u bytes", what, max);
    }
    if (checked || s->len == 0) {
        return 0;
    }
    if (!ep__event_utf8_valid(s->p, s->len)) {
        return verr(err, EP_EPARSE, field, key, "%sis not valid UTF-8", what);
    }
    if (memchr(s->p, '\0', s->len) != NULL) {
        return verr(err, EP_EVALIDATE, field, key, "%smust not contain NUL characters", what);
    }
    return 0;
}

/* Key comparisons made by this thread (ep__event_key_work), for the tests of linearity. */
static _Thread_local uint64_t key_cmps;

uint64_t ep__event_key_work(void)
{
    return key_cmps;
}

static int key_cmp(const ep_str_t *a, const ep_str_t *b)
{
    uint32_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->p, b->p, n) : 0;

    key_cmps++;
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static int kv_ptr_cmp(const void *a, const void *b)
{
    const ep_kv_t *x = *(const ep_kv_t *const *)a, *y = *(const ep_kv_t *const *)b;
    int c = key_cmp(&x->key, &y->key);

    /* Equal keys stay in input order, so the later one is reported as the duplicate. */
    return c ? c : (x > y) - (x < y);
}

long ep__event_sort_keys(const ep_kv_t *meta, uint32_t n, const ep_kv_t **sorted)
{
    long dup = -1;

    for (uint32_t i = 0; i < n; i++) {
        sorted[i] = &meta[i];
    }
    /* glibc's qsort is O(n log n) in the worst case (merge sort, or introsort). */
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    qsort(sorted, n, sizeof(*sorted), kv_ptr_cmp);
    for (uint32_t i = 1; i < n; i++) {
        if (key_cmp(&sorted[i - 1]->key, &sorted[i]->key) == 0) {
            long at = (long)(sorted[i] - meta);
            if (dup < 0 || at < dup) {
                dup = at;
            }
        }
    }
    return dup;
}

const ep_kv_t *ep__event_find_key(const ep_kv_t *const *sorted, uint32_t n, const ep_str_t *key)
{
    uint32_t lo = 0, hi = n;

    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(&sorted[mid]->key, key);

        if (c == 0) {
            return sorted[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return NULL;
}

/* Index of the first key that repeats an earlier one, or -1. O(n log n) comparisons. */
static long find_duplicate(const ep_kv_t *meta, uint32_t n)
{
    const ep_kv_t *stack[DUP_STACK_SLOTS], **sorted = stack;
    long dup;

    if (n <= 8) {
        for (uint32_t i = 1; i < n; i++) {
            for (uint32_t j = 0; j < i; j++) {
                if (key_cmp(&meta[i].key, &meta[j].key) == 0) {
                    return (long)i;
                }
            }
        }
        return -1;
    }
    if (n > DUP_STACK_SLOTS) {
        /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
        sorted = ep_malloc(n * sizeof(*sorted));
    }
    dup = ep__event_sort_keys(meta, n, sorted);
    if (sorted != stack) {
        ep_free(sorted);
    }
    return dup;
}

int ep_event_validate(const ep_event_draft_t *d, const ep_event_limits_t *lim, ep_parse_err_t *err)
{
    bool checked = (d->flags & EP_DRAFT_TEXT_CHECKED) != 0;
    int rc;

    if (d->source.p == NULL || d->source.len == 0) {
        return verr(err, EP_EVALIDATE, "source", NULL,
                    d->source.p == NULL ? "is required" : "must not be empty");
    }
    if ((rc = check_text(&d->source, lim->max_value_len, checked, "source", NULL, "", err)) ||
        (rc = check_text(&d->id, lim->max_id_len, checked, "id", NULL, "", err)) ||
        (rc = check_text(&d->event_type, lim->max_value_len, checked, "event_type", NULL, "",
                         err)) ||
        (rc = check_text(&d->user_id, lim->max_value_len, checked, "user_id", NULL, "", err))) {
        return rc;
    }
    if (d->data.len > lim->max_data_len) {
        return verr(err, EP_EVALIDATE, "data", NULL, "is longer than %u bytes", lim->max_data_len);
    }
    if (d->data.len == 0 && d->event_type.len == 0) {
        return verr(err, EP_EVALIDATE, "data", NULL,
                    "is required: one of data, payload or event_type must be non-empty");
    }
    if (d->timestamp_ms < 0 || d->timestamp_ms > EP_EVENT_TS_MAX_MS) {
        return verr(err, EP_EVALIDATE, "timestamp", NULL,
                    "is out of range (0 to 9999-12-31T23:59:59.999Z)");
    }
    /* An absent timestamp becomes the receive time: it must be a valid timestamp too. */
    if (d->received_us < 0 || d->received_us / 1000 > EP_EVENT_TS_MAX_MS) {
        return verr(err, EP_EVALIDATE, "received_us", NULL,
                    "is out of range (0 to 9999-12-31T23:59:59.999Z)");
    }
    if (d->attempts > EP_EVENT_MAX_ATTEMPTS) {
        return verr(err, EP_EVALIDATE, "attempts", NULL, "is larger than %u",
                    (unsigned)EP_EVENT_MAX_ATTEMPTS);
    }
    if (d->n_meta > lim->max_meta_keys) {
        return verr(err, EP_EVALIDATE, "metadata", NULL, "too many metadata entries (at most %u)",
                    lim->max_meta_keys);
    }
    for (uint32_t i = 0; i < d->n_meta; i++) {
        static const ep_str_t t = {"true", 4}, f = {"false", 5};
        const ep_kv_t *kv = &d->meta[i];

        if (kv->key.len == 0) {
            return verr(err, EP_EVALIDATE, "metadata", NULL, "keys must not be empty");
        }
        if ((rc = check_text(&kv->key, lim->max_key_len, checked, "metadata", &kv->key, "key ",
                             err)) ||
            (rc = check_text(&kv->val, lim->max_value_len, checked, "metadata", &kv->key, "",
                             err))) {
            return rc;
        }
        if (checked) {
            continue;
        }
        if (kv->type == EP_VAL_NUMBER && !json_number_ok(&kv->val)) {
            return verr(err, EP_EVALIDATE, "metadata", &kv->key, "must be a JSON number");
        }
        if (kv->type == EP_VAL_BOOL && !same_str(&kv->val, &t) && !same_str(&kv->val, &f)) {
            return verr(err, EP_EVALIDATE, "metadata", &kv->key, "must be true or false");
        }
        if (kv->type > EP_VAL_BOOL) {
            return verr(err, EP_EVALIDATE, "metadata", &kv->key, "has an unknown type");
        }
    }
    if (!(d->flags & EP_DRAFT_KEYS_UNIQUE)) {
        long dup = find_duplicate(d->meta, d->n_meta);
        if (dup >= 0) {
            return verr(err, EP_EVALIDATE, "metadata", &d->meta[dup].key, "duplicate metadata key");
        }
    }
    return 0;
}
