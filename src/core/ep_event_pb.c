/*
 * Event <-> protobuf (diplom.v1.DataMessage / DataBatch, proto/eventpipe.proto),
 * written directly against the wire format. Fields 1-5 are the seed's; 6-12 are
 * eventpipe's. Any protobuf implementation reads what this writes and the
 * other way round (the unit tests check both directions against protobuf-c).
 *
 * Encoding computes the exact size first, then writes in one pass into the
 * output buffer: no allocation besides growing the buffer. proto3 rules: empty
 * strings and zero integers are left out; fields go out in number order.
 *
 * Decoding walks the message twice without allocating: once to check the
 * structure and count the repeated fields, once to collect (pointer, length)
 * views into the input; the event is then built with one allocation. It
 * rejects malformed wire data, wrong wire types for known fields, groups,
 * strings that are not UTF-8 or contain NUL, values of keys listed in
 * number_keys that are not JSON numbers and of those in bool_keys that are not
 * "true"/"false" (they are written into JSON unquoted), and a seconds timestamp
 * that does not fit in milliseconds. Unknown fields are skipped; for a
 * repeated singular field the last one wins. Metadata entries are kept in wire
 * order; duplicate keys are not merged.
 */
#include "ep_error.h"
#include "ep_event.h"
#include "ep_mem.h"
#include "ep_time.h"

#include <stdbool.h>
#include <string.h>

#define STACK_META 16 /* metadata entries decoded without a heap scratch block */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

enum {
    F_ID = 1,
    F_TIMESTAMP = 2,
    F_SOURCE = 3,
    F_PAYLOAD = 4,
    F_METADATA = 5,
    F_EVENT_TYPE = 6,
    F_USER_ID = 7,
    F_TIMESTAMP_MS = 8,
    F_RECEIVED_US = 9,
    F_ATTEMPTS = 10,
    F_NUMBER_KEYS = 11,
    F_BOOL_KEYS = 12,
};

/* ------------------------------------------------------------------ encode */

static size_t varint_size(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* Size of a length-delimited field (tag < 16: one byte) holding n bytes. */
static size_t len_field_size(size_t n)
{
    return 1 + varint_size(n) + n;
}

static uint8_t *put_len_field(uint8_t *p, unsigned field, const void *s, size_t n)
{
    p = put_varint(p, (uint64_t)field << 3 | WT_LEN);
    p = put_varint(p, n);
    if (n) {
        memcpy(p, s, n);
    }
    return p + n;
}

static int64_t seconds_of(int64_t ms)
{
    /* Field 2 is whole seconds (seed); floor, so pre-1970 times stay ordered. */
    return ms >= 0 ? ms / 1000 : -((-(ms + 1)) / 1000) - 1;
}

static size_t entry_size(const ep_kv_t *kv)
{
    return (kv->key.len ? len_field_size(kv->key.len) : 0) +
           (kv->val.len ? len_field_size(kv->val.len) : 0);
}

/* Exact encoded size of ev as a DataMessage. */
static size_t msg_size(const ep_event_t *ev)
{
    size_t n = 0;
    int64_t secs = seconds_of(ev->timestamp_ms);

    n += ev->id.len ? len_field_size(ev->id.len) : 0;
    n += secs ? 1 + varint_size((uint64_t)secs) : 0;
    n += ev->source.len ? len_field_size(ev->source.len) : 0;
    n += ev->data.len ? len_field_size(ev->data.len) : 0;
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        n += len_field_size(entry_size(&ev->meta[i]));
    }
    n += ev->event_type.len ? len_field_size(ev->event_type.len) : 0;
    n += ev->user_id.len ? len_field_size(ev->user_id.len) : 0;
    n += ev->timestamp_ms ? 1 + varint_size((uint64_t)ev->timestamp_ms) : 0;
    n += ev->received_us ? 1 + varint_size((uint64_t)ev->received_us) : 0;
    n += ev->attempts ? 1 + varint_size(ev->attempts) : 0;
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        if (ev->meta[i].type != EP_VAL_STRING) {
            n += len_field_size(ev->meta[i].key.len);
        }
    }
    return n;
}

static uint8_t *put_int_field(uint8_t *p, unsigned field, uint64_t v)
{
    p = put_varint(p, (uint64_t)field << 3 | WT_VARINT);
    return put_varint(p, v);
}

/* Writes ev's fields; the caller reserved msg_size(ev) bytes at p. */
static uint8_t *write_msg(const ep_event_t *ev, uint8_t *p)
{
    int64_t secs = seconds_of(ev->timestamp_ms);

    if (ev->id.len) {
        p = put_len_field(p, F_ID, ev->id.p, ev->id.len);
    }
    if (secs) {
        p = put_int_field(p, F_TIMESTAMP, (uint64_t)secs);
    }
    if (ev->source.len) {
        p = put_len_field(p, F_SOURCE, ev->source.p, ev->source.len);
    }
    if (ev->data.len) {
        p = put_len_field(p, F_PAYLOAD, ev->data.p, ev->data.len);
    }
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        const ep_kv_t *kv = &ev->meta[i];

        p = put_varint(p, (uint64_t)F_METADATA << 3 | WT_LEN);
        p = put_varint(p, entry_size(kv));
        if (kv->key.len) {
            p = put_len_field(p, 1, kv->key.p, kv->key.len);
        }
        if (kv->val.len) {
            p = put_len_field(p, 2, kv->val.p, kv->val.len);
        }
    }
    if (ev->event_type.len) {
        p = put_len_field(p, F_EVENT_TYPE, ev->event_type.p, ev->event_type.len);
    }
    if (ev->user_id.len) {
        p = put_len_field(p, F_USER_ID, ev->user_id.p, ev->user_id.len);
    }
    if (ev->timestamp_ms) {
        p = put_int_field(p, F_TIMESTAMP_MS, (uint64_t)ev->timestamp_ms);
    }
    if (ev->received_us) {
        p = put_int_field(p, F_RECEIVED_US, (uint64_t)ev->received_us);
    }
    if (ev->attempts) {
        p = put_int_field(p, F_ATTEMPTS, ev->attempts);
    }
    for (int type = EP_VAL_NUMBER; type <= EP_VAL_BOOL; type++) {
        unsigned field = type == EP_VAL_NUMBER ? F_NUMBER_KEYS : F_BOOL_KEYS;
        for (uint32_t i = 0; i < ev->n_meta; i++) {
            if (ev->meta[i].type == type) {
                p = put_len_field(p, field, ev->meta[i].key.p, ev->meta[i].key.len);
            }
        }
    }
    return p;
}

_Static_assert(EP_VAL_NUMBER + 1 == EP_VAL_BOOL, "number keys are written before bool keys");

/* Appends ev as a DataMessage to out. Returns 0; OOM aborts. Thread-safe per out. */
int ep_event_encode_pb(const ep_event_t *ev, ep_buf_t *out)
{
    size_t size = msg_size(ev);
    uint8_t *end;

    ep_buf_reserve(out, size);
    end = write_msg(ev, (uint8_t *)out->data + out->len);
    ep_assert(end == (uint8_t *)out->data + out->len + size);
    out->len += size;
    out->data[out->len] = '\0';
    return 0;
}

/* Appends evs[0..n) as one DataBatch to out. Returns 0; OOM aborts. Thread-safe per out. */
int ep_event_batch_encode_pb(ep_event_t *const *evs, size_t n, ep_buf_t *out)
{
    size_t total = 0;

    for (size_t i = 0; i < n; i++) {
        total += len_field_size(msg_size(evs[i]));
    }
    ep_buf_reserve(out, total);
    {
        uint8_t *p = (uint8_t *)out->data + out->len;

        for (size_t i = 0; i < n; i++) {
            p = put_varint(p, (uint64_t)1 << 3 | WT_LEN);
            p = put_varint(p, msg_size(evs[i]));
            p = write_msg(evs[i], p);
        }
        ep_assert(p == (uint8_t *)out->data + out->len + total);
    }
    out->len += total;
    out->data[out->len] = '\0';
    return 0;
}

/* ------------------------------------------------------------------ decode */

typedef struct reader_s {
    const uint8_t *p, *end;
} reader_t;

/* Reads a varint (at most 10 bytes, no bits past 64). Returns 0 or -1. */
static int get_varint(reader_t *r, uint64_t *v)
{
    uint64_t x = 0;

    for (int shift = 0; shift < 70; shift += 7) {
        uint8_t b;

        if (r->p == r->end) {
            return -1;
        }
        b = *r->p++;
        if (shift == 63 && b > 1) {
            return -1;
        }
        x |= (uint64_t)(b & 0x7f) << shift;
        if (b < 0x80) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

/* Reads a field header and, for WT_LEN, the payload's view; skips I32/I64. */
typedef struct field_s {
    unsigned num;
    unsigned wt;
    uint64_t varint; /* WT_VARINT */
    ep_str_t bytes;  /* WT_LEN: a view into the input (not NUL-terminated) */
} field_t;

static int next_field(reader_t *r, field_t *f)
{
    uint64_t tag, len;

    if (get_varint(r, &tag) != 0 || tag >> 3 == 0 || tag >> 3 > 0x1fffffff) {
        return -1;
    }
    f->num = (unsigned)(tag >> 3);
    f->wt = (unsigned)(tag & 7);
    switch (f->wt) {
    case WT_VARINT:
        return get_varint(r, &f->varint);
    case WT_I64:
    case WT_I32: {
        size_t n = f->wt == WT_I64 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n) {
            return -1;
        }
        r->p += n;
        return 0;
    }
    case WT_LEN:
        if (get_varint(r, &len) != 0 || len > (uint64_t)(r->end - r->p) || len > UINT32_MAX / 2) {
            return -1;
        }
        f->bytes.p = (const char *)r->p;
        f->bytes.len = (uint32_t)len;
        r->p += len;
        return 0;
    default:
        return -1; /* groups (3, 4) and the reserved types 6, 7 */
    }
}

/* A decoded DataMessage: views into the input. */
typedef struct pb_msg_s {
    ep_str_t id, source, payload, event_type, user_id;
    int64_t timestamp, timestamp_ms, received_us;
    uint32_t attempts;
    size_t n_meta, n_num, n_bool; /* counts (pass 1) or filled (pass 2) */
    ep_kv_t *meta;                /* n_meta entries, types still EP_VAL_STRING */
    ep_str_t *num_keys, *bool_keys;
} pb_msg_t;

/* One metadata map entry: key = 1, value = 2 (both optional). */
static int parse_entry(const ep_str_t *in, ep_kv_t *kv)
{
    reader_t r = {(const uint8_t *)in->p, (const uint8_t *)in->p + in->len};
    field_t f;

    kv->key.p = kv->val.p = "";
    kv->key.len = kv->val.len = 0;
    kv->type = EP_VAL_STRING;
    while (r.p < r.end) {
        if (next_field(&r, &f) != 0) {
            return -1;
        }
        if (f.num == 1 || f.num == 2) {
            if (f.wt != WT_LEN) {
                return -1;
            }
            *(f.num == 1 ? &kv->key : &kv->val) = f.bytes;
        }
    }
    return 0;
}

/*
 * Walks a DataMessage. With fill == 0 it checks the structure and counts the
 * repeated fields into m; with fill == 1 it stores them into the arrays the
 * caller sized from those counts.
 */
static int parse_msg(const uint8_t *buf, size_t len, pb_msg_t *m, int fill)
{
    reader_t r = {buf, buf + len};
    size_t n_meta = 0, n_num = 0, n_bool = 0;
    field_t f;

    while (r.p < r.end) {
        if (next_field(&r, &f) != 0) {
            return -1;
        }
        switch (f.num) {
        case F_ID:
        case F_SOURCE:
        case F_PAYLOAD:
        case F_EVENT_TYPE:
        case F_USER_ID:
        case F_METADATA:
        case F_NUMBER_KEYS:
        case F_BOOL_KEYS:
            if (f.wt != WT_LEN) {
                return -1;
            }
            break;
        case F_TIMESTAMP:
        case F_TIMESTAMP_MS:
        case F_RECEIVED_US:
        case F_ATTEMPTS:
            if (f.wt != WT_VARINT) {
                return -1;
            }
            break;
        default:
            continue; /* unknown: skipped */
        }
        switch (f.num) {
        case F_ID:
            m->id = f.bytes;
            break;
        case F_SOURCE:
            m->source = f.bytes;
            break;
        case F_PAYLOAD:
            m->payload = f.bytes;
            break;
        case F_EVENT_TYPE:
            m->event_type = f.bytes;
            break;
        case F_USER_ID:
            m->user_id = f.bytes;
            break;
        case F_TIMESTAMP:
            m->timestamp = (int64_t)f.varint;
            break;
        case F_TIMESTAMP_MS:
            m->timestamp_ms = (int64_t)f.varint;
            break;
        case F_RECEIVED_US:
            m->received_us = (int64_t)f.varint;
            break;
        case F_ATTEMPTS:
            m->attempts = (uint32_t)f.varint;
            break;
        case F_METADATA:
            if (fill) {
                if (parse_entry(&f.bytes, &m->meta[n_meta]) != 0) {
                    return -1;
                }
            } else {
                ep_kv_t scratch;
                if (parse_entry(&f.bytes, &scratch) != 0) {
                    return -1;
                }
            }
            n_meta++;
            break;
        case F_NUMBER_KEYS:
            if (fill) {
                m->num_keys[n_num] = f.bytes;
            }
            n_num++;
            break;
        case F_BOOL_KEYS:
            if (fill) {
                m->bool_keys[n_bool] = f.bytes;
            }
            n_bool++;
            break;
        default:
            break;
        }
    }
    m->n_meta = n_meta;
    m->n_num = n_num;
    m->n_bool = n_bool;
    return 0;
}

/* Text fields: valid UTF-8 without NUL (events hold them as C strings too). */
static bool text_ok(const ep_str_t *s)
{
    return ep__event_utf8_valid(s->p, s->len) && memchr(s->p, '\0', s->len) == NULL;
}

static bool same(const ep_str_t *a, const ep_str_t *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
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

/*
 * Index of the metadata entry named key, or -1. The search starts after the
 * previous hit, so keys listed in metadata order (as this encoder writes them)
 * cost one comparison each.
 */
static long find_key(const pb_msg_t *m, const ep_str_t *key, size_t *hint)
{
    for (size_t k = 0; k < m->n_meta; k++) {
        size_t i = (*hint + k) % m->n_meta;
        if (same(&m->meta[i].key, key)) {
            *hint = i + 1;
            return (long)i;
        }
    }
    return -1;
}

/* Types the metadata entries: each typed key applies to the entry find_key gives. */
static void assign_types(pb_msg_t *m)
{
    size_t hint = 0;
    long i;

    for (size_t k = 0; k < m->n_num; k++) {
        if ((i = find_key(m, &m->num_keys[k], &hint)) >= 0) {
            m->meta[i].type = EP_VAL_NUMBER;
        }
    }
    hint = 0;
    for (size_t k = 0; k < m->n_bool; k++) {
        if ((i = find_key(m, &m->bool_keys[k], &hint)) >= 0) {
            m->meta[i].type = EP_VAL_BOOL;
        }
    }
}

static bool value_ok(const ep_kv_t *kv)
{
    static const ep_str_t t = {"true", 4}, f = {"false", 5};

    if (kv->type == EP_VAL_NUMBER) {
        return json_number_ok(&kv->val);
    }
    if (kv->type == EP_VAL_BOOL) {
        return same(&kv->val, &t) || same(&kv->val, &f);
    }
    return true;
}

/* Checks everything that could make building the event fail or produce bad JSON later. */
static int check_msg(pb_msg_t *m)
{
    if (!text_ok(&m->id) || !text_ok(&m->source) || !text_ok(&m->event_type) ||
        !text_ok(&m->user_id)) {
        return EP_EPARSE;
    }
    if (m->timestamp_ms == 0 &&
        (m->timestamp > INT64_MAX / 1000 || m->timestamp < INT64_MIN / 1000)) {
        return EP_EPARSE;
    }
    if (m->n_meta > UINT32_MAX / 2) {
        return EP_EPARSE;
    }
    for (size_t k = 0; k < m->n_num; k++) {
        if (!text_ok(&m->num_keys[k])) {
            return EP_EPARSE;
        }
    }
    for (size_t k = 0; k < m->n_bool; k++) {
        if (!text_ok(&m->bool_keys[k])) {
            return EP_EPARSE;
        }
    }
    assign_types(m);
    for (size_t i = 0; i < m->n_meta; i++) {
        if (!text_ok(&m->meta[i].key) || !text_ok(&m->meta[i].val) || !value_ok(&m->meta[i])) {
            return EP_EPARSE;
        }
    }
    return 0;
}

/* Scratch arrays for one message's repeated fields: on the stack when small. */
typedef struct scratch_s {
    ep_kv_t meta[STACK_META];
    ep_str_t keys[STACK_META];
    void *heap;
} scratch_t;

/*
 * Decodes and checks one DataMessage into m (views into buf, arrays in sc;
 * release with scratch_free). Returns 0 or EP_EPARSE.
 */
static int decode_msg(const uint8_t *buf, size_t len, pb_msg_t *m, scratch_t *sc)
{
    static const ep_str_t empty = {"", 0};

    memset(m, 0, sizeof(*m));
    m->id = m->source = m->payload = m->event_type = m->user_id = empty;
    sc->heap = NULL;
    if (parse_msg(buf, len, m, 0) != 0) {
        return EP_EPARSE;
    }
    if (m->n_meta <= STACK_META && m->n_num + m->n_bool <= STACK_META) {
        m->meta = sc->meta;
        m->num_keys = sc->keys;
    } else {
        sc->heap =
            ep_malloc(m->n_meta * sizeof(ep_kv_t) + (m->n_num + m->n_bool) * sizeof(ep_str_t) + 1);
        m->meta = sc->heap;
        m->num_keys = (ep_str_t *)(m->meta + m->n_meta);
    }
    m->bool_keys = m->num_keys + m->n_num;
    if (parse_msg(buf, len, m, 1) != 0) {
        return EP_EPARSE; /* cannot happen: the first walk accepted it */
    }
    return check_msg(m);
}

static void scratch_free(scratch_t *sc)
{
    ep_free(sc->heap);
    sc->heap = NULL;
}

/* Builds the event of a message that passed decode_msg(). Cannot fail. */
static ep_event_t *build_event(const pb_msg_t *m)
{
    int64_t ts = m->timestamp_ms ? m->timestamp_ms : m->timestamp * 1000;
    /* A message from eventpipe carries its receive time: no clock read per event then. */
    int64_t received_us = m->received_us ? m->received_us : ep_time_now_us();
    ep_event_t *ev =
        ep_event_create_at(&m->id, &m->source, &m->event_type, &m->user_id, m->payload.p,
                           m->payload.len, m->meta, (uint32_t)m->n_meta, ts, received_us);

    ev->attempts = m->attempts;
    return ev;
}

/*
 * Decodes one DataMessage. Returns 0 and a caller-owned event in *out, or
 * EP_EPARSE (not protobuf, bad UTF-8, bad typed value) with *out NULL. Thread-safe.
 */
int ep_event_decode_pb(const void *buf, size_t len, ep_event_t **out)
{
    pb_msg_t m;
    scratch_t sc;
    int rc = decode_msg(buf, len, &m, &sc);

    *out = rc == 0 ? build_event(&m) : NULL;
    scratch_free(&sc);
    return rc;
}

/* Counts the messages of a DataBatch (field 1; unknown fields skipped). Returns 0 or EP_EPARSE. */
static int batch_count(const void *buf, size_t len, size_t *count)
{
    reader_t r = {buf, (const uint8_t *)buf + len};
    field_t f;
    size_t n = 0;

    while (r.p < r.end) {
        if (next_field(&r, &f) != 0 || (f.num == 1 && f.wt != WT_LEN)) {
            return EP_EPARSE;
        }
        n += f.num == 1;
    }
    *count = n;
    return 0;
}

/*
 * Decodes a DataBatch, all or nothing. Returns 0 with a caller-owned array
 * (ep_free) of *count caller-owned events, or EP_EPARSE with *out NULL, *count 0
 * and nothing allocated. Thread-safe. One pass over the messages: a bad one
 * frees the events built before it.
 */
int ep_event_batch_decode_pb(const void *buf, size_t len, ep_event_t ***out, size_t *count)
{
    reader_t r = {buf, (const uint8_t *)buf + len};
    ep_event_t **evs;
    size_t n = 0, built = 0;
    field_t f;

    *out = NULL;
    *count = 0;
    if (batch_count(buf, len, &n) != 0) {
        return EP_EPARSE;
    }
    evs = ep_malloc((n ? n : 1) * sizeof(*evs));
    while (r.p < r.end) {
        pb_msg_t m;
        scratch_t sc;
        int rc;

        (void)next_field(&r, &f); /* batch_count accepted the framing */
        if (f.num != 1) {
            continue;
        }
        rc = decode_msg((const uint8_t *)f.bytes.p, f.bytes.len, &m, &sc);
        if (rc == 0) {
            evs[built++] = build_event(&m);
        }
        scratch_free(&sc);
        if (rc != 0) {
            while (built > 0) {
                ep_event_destroy(evs[--built]);
            }
            ep_free(evs);
            return rc;
        }
    }
    ep_assert(built == n);
    *out = evs;
    *count = n;
    return 0;
}
