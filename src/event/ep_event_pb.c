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
 * views into the input; the event is then built with one allocation. The
 * first walk stops as soon as a message has more metadata entries (or typed
 * keys) than the limits allow, and a batch is refused once it holds more
 * messages than the caller's cap, so the work is bounded by the limits, not
 * by the body. Typed keys are matched by sorting the metadata keys (O(n log
 * n) whatever the keys; it also finds duplicate keys). Then every message
 * passes ep_event_validate, the rules JSON ingest applies. It rejects
 * malformed wire data, wrong wire types for known fields, groups, strings
 * that are not UTF-8 or contain NUL, values of keys listed in number_keys
 * that are not JSON numbers and of those in bool_keys that are not
 * "true"/"false" (they are written into JSON unquoted), duplicate metadata
 * keys, and a seconds timestamp that does not fit in milliseconds. Unknown
 * fields are skipped; for a repeated singular field the last one wins.
 * Metadata entries are kept in wire order.
 */
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define STACK_META 16 /* metadata entries decoded without a heap scratch block */
#define SMALL_META 8  /* up to this many entries and typed keys: matched pairwise, no sort */

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

/* parse_msg's results besides 0 and -1 (malformed): a limit was reached, the walk stopped. */
enum { PB_TOO_MANY_META = -2, PB_TOO_MANY_TYPED = -3 };

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
static int parse_msg(const uint8_t *buf, size_t len, pb_msg_t *m, int fill, size_t max_keys)
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
            if (++n_meta > max_keys) {
                return PB_TOO_MANY_META;
            }
            break;
        case F_NUMBER_KEYS:
            if (fill) {
                m->num_keys[n_num] = f.bytes;
            }
            if (++n_num + n_bool > max_keys) {
                return PB_TOO_MANY_TYPED;
            }
            break;
        case F_BOOL_KEYS:
            if (fill) {
                m->bool_keys[n_bool] = f.bytes;
            }
            if (n_num + ++n_bool > max_keys) {
                return PB_TOO_MANY_TYPED;
            }
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

static bool str_eq(const ep_str_t *a, const ep_str_t *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->p, b->p, a->len) == 0);
}

/*
 * Sorts the metadata keys (O(n log n), no hash an attacker could flood) and
 * types the entries the typed keys name (binary search each). Returns -1 when
 * done, or the index of the first entry whose key repeats an earlier one.
 */
static long assign_types(pb_msg_t *m, const ep_kv_t **sorted)
{
    uint32_t n = (uint32_t)m->n_meta;
    const ep_kv_t *kv;
    long dup;

    if (n <= SMALL_META && m->n_num + m->n_bool <= SMALL_META) {
        /* The usual event: a few keys, compared pairwise (at most 28 + 64 comparisons). */
        for (uint32_t i = 1; i < n; i++) {
            for (uint32_t j = 0; j < i; j++) {
                if (str_eq(&m->meta[i].key, &m->meta[j].key)) {
                    return (long)i;
                }
            }
        }
        for (size_t k = 0; k < m->n_num + m->n_bool; k++) {
            for (uint32_t i = 0; i < n; i++) {
                if (str_eq(&m->meta[i].key, &m->num_keys[k])) {
                    m->meta[i].type = k < m->n_num ? EP_VAL_NUMBER : EP_VAL_BOOL;
                    break;
                }
            }
        }
        return -1;
    }
    if ((dup = ep__event_sort_keys(m->meta, n, sorted)) >= 0) {
        return dup;
    }
    for (size_t k = 0; k < m->n_num; k++) {
        if ((kv = ep__event_find_key(sorted, n, &m->num_keys[k])) != NULL) {
            m->meta[kv - m->meta].type = EP_VAL_NUMBER;
        }
    }
    for (size_t k = 0; k < m->n_bool; k++) {
        if ((kv = ep__event_find_key(sorted, n, &m->bool_keys[k])) != NULL) {
            m->meta[kv - m->meta].type = EP_VAL_BOOL;
        }
    }
    return -1;
}

/* Fills err with a wire-format error of the message at byte offset off. */
static int wire_err(ep_parse_err_t *err, const char *msg)
{
    if (err) {
        snprintf(err->msg, sizeof(err->msg), "%s", msg);
        err->field[0] = '\0';
    }
    return EP_EPARSE;
}

/*
 * Checks what building the event needs (the seconds timestamp fits in ms, typed
 * key names are text), types the entries, then runs the shared validation.
 */
static int check_msg(pb_msg_t *m, const ep_kv_t **sorted, const ep_event_limits_t *lim,
                     ep_parse_err_t *err)
{
    ep_event_draft_t d;
    long dup;

    if (m->timestamp_ms == 0 &&
        (m->timestamp > INT64_MAX / 1000 || m->timestamp < INT64_MIN / 1000)) {
        if (err) {
            snprintf(err->msg, sizeof(err->msg), "is out of range");
            snprintf(err->field, sizeof(err->field), "timestamp");
        }
        return EP_EVALIDATE;
    }
    for (size_t k = 0; k < m->n_num + m->n_bool; k++) {
        if (!text_ok(&m->num_keys[k])) {
            if (err) {
                snprintf(err->msg, sizeof(err->msg), "is not valid UTF-8 or contains NUL");
                snprintf(err->field, sizeof(err->field),
                         k < m->n_num ? "number_keys" : "bool_keys");
            }
            return EP_EPARSE;
        }
    }
    if ((dup = assign_types(m, sorted)) >= 0) {
        if (err) {
            const ep_str_t *key = &m->meta[dup].key;
            snprintf(err->msg, sizeof(err->msg),
                     key->len ? "duplicate metadata key" : "keys must not be empty");
            snprintf(err->field, sizeof(err->field), key->len ? "metadata.%.*s" : "metadata%.*s",
                     key->len > 64 ? 64 : (int)key->len, key->p);
        }
        return EP_EVALIDATE;
    }
    memset(&d, 0, sizeof(d));
    d.id = m->id;
    d.source = m->source;
    if (d.source.len == 0) {
        d.source.p = NULL; /* proto3: an empty string is an absent one */
    }
    d.event_type = m->event_type;
    d.user_id = m->user_id;
    d.data = m->payload;
    d.meta = m->meta;
    d.n_meta = (uint32_t)m->n_meta;
    d.timestamp_ms = m->timestamp_ms ? m->timestamp_ms : m->timestamp * 1000;
    d.received_us = m->received_us;
    d.attempts = m->attempts;
    d.flags = EP_DRAFT_KEYS_UNIQUE;
    return ep_event_validate(&d, lim, err);
}

/* Scratch arrays for one message's repeated fields: on the stack when small. */
typedef struct scratch_s {
    ep_kv_t meta[STACK_META];
    ep_str_t keys[STACK_META];
    const ep_kv_t *sorted[STACK_META];
    void *heap;
} scratch_t;

/*
 * Decodes and checks one DataMessage into m (views into buf, arrays in sc;
 * release with scratch_free). Returns 0, EP_EPARSE (wire format) or
 * EP_EVALIDATE (a limit or rule of ep_event_validate), with err filled.
 */
static int decode_msg(const uint8_t *buf, size_t len, pb_msg_t *m, scratch_t *sc,
                      const ep_event_limits_t *lim, ep_parse_err_t *err)
{
    static const ep_str_t empty = {"", 0};
    const ep_kv_t **sorted;
    int rc;

    memset(m, 0, sizeof(*m));
    m->id = m->source = m->payload = m->event_type = m->user_id = empty;
    sc->heap = NULL;
    rc = parse_msg(buf, len, m, 0, lim->max_meta_keys);
    if (rc == PB_TOO_MANY_META || rc == PB_TOO_MANY_TYPED) {
        if (err) {
            snprintf(err->msg, sizeof(err->msg), "too many %s (at most %u)",
                     rc == PB_TOO_MANY_META ? "metadata entries" : "typed keys",
                     lim->max_meta_keys);
            snprintf(err->field, sizeof(err->field), "%s",
                     rc == PB_TOO_MANY_META ? "metadata" : "number_keys");
        }
        return EP_EVALIDATE;
    }
    if (rc != 0) {
        return wire_err(err, "malformed protobuf DataMessage");
    }
    if (m->n_meta <= STACK_META && m->n_num + m->n_bool <= STACK_META) {
        m->meta = sc->meta;
        m->num_keys = sc->keys;
        sorted = sc->sorted;
    } else {
        sc->heap = ep_malloc(m->n_meta * (sizeof(ep_kv_t) + sizeof(ep_kv_t *)) +
                             (m->n_num + m->n_bool) * sizeof(ep_str_t) + 1);
        sorted = sc->heap;
        m->meta = (ep_kv_t *)(sorted + m->n_meta);
        m->num_keys = (ep_str_t *)(m->meta + m->n_meta);
    }
    m->bool_keys = m->num_keys + m->n_num;
    if (parse_msg(buf, len, m, 1, lim->max_meta_keys) != 0) {
        return wire_err(err, "malformed protobuf DataMessage"); /* cannot happen */
    }
    return check_msg(m, sorted, lim, err);
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

int ep_event_decode_pb_ex(const void *buf, size_t len, const ep_event_limits_t *lim,
                          ep_event_t **out, ep_parse_err_t *err)
{
    pb_msg_t m;
    scratch_t sc;
    int rc;

    if (err) {
        memset(err, 0, sizeof(*err));
    }
    rc = decode_msg(buf, len, &m, &sc, lim ? lim : ep_event_limits_default(), err);
    *out = rc == 0 ? build_event(&m) : NULL;
    scratch_free(&sc);
    return rc;
}

int ep_event_decode_pb(const void *buf, size_t len, ep_event_t **out)
{
    return ep_event_decode_pb_ex(buf, len, NULL, out, NULL);
}

/*
 * Counts the messages of a DataBatch (field 1; unknown fields skipped),
 * stopping past max. Returns 0, EP_EPARSE or EP_E2BIG.
 */
static int batch_count(const void *buf, size_t len, size_t max, size_t *count)
{
    reader_t r = {buf, (const uint8_t *)buf + len};
    field_t f;
    size_t n = 0;

    while (r.p < r.end) {
        if (next_field(&r, &f) != 0 || (f.num == 1 && f.wt != WT_LEN)) {
            return EP_EPARSE;
        }
        n += f.num == 1;
        if (n > max) {
            return EP_E2BIG;
        }
    }
    *count = n;
    return 0;
}

/* Prefixes err->field with "events[i]" (the message's index in the batch). */
static void where_in_batch(ep_parse_err_t *err, size_t i)
{
    char field[sizeof(err->field)];

    if (err == NULL) {
        return;
    }
    if (err->field[0]) {
        snprintf(field, sizeof(field), "events[%zu].%.*s", i, (int)(sizeof(field) - 32),
                 err->field);
    } else {
        snprintf(field, sizeof(field), "events[%zu]", i);
    }
    memcpy(err->field, field, sizeof(field));
}

int ep_event_batch_decode_pb_ex(const void *buf, size_t len, const ep_event_limits_t *lim,
                                size_t max_events, ep_event_t ***out, size_t *count,
                                ep_parse_err_t *err)
{
    reader_t r = {buf, (const uint8_t *)buf + len};
    ep_event_t **evs;
    size_t n = 0, built = 0;
    field_t f;
    int rc;

    *out = NULL;
    *count = 0;
    if (err) {
        memset(err, 0, sizeof(*err));
    }
    lim = lim ? lim : ep_event_limits_default();
    rc = batch_count(buf, len, max_events, &n);
    if (rc == EP_E2BIG) {
        if (err) {
            snprintf(err->msg, sizeof(err->msg), "too many events in one batch (at most %zu)",
                     max_events);
        }
        return EP_E2BIG;
    }
    if (rc != 0) {
        return wire_err(err, "malformed protobuf DataBatch");
    }
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    evs = ep_malloc((n ? n : 1) * sizeof(*evs));
    while (r.p < r.end) {
        pb_msg_t m;
        scratch_t sc;

        if (next_field(&r, &f) != 0) {
            break; /* not reached: batch_count accepted the framing */
        }
        if (f.num != 1 || f.wt != WT_LEN) {
            continue; /* batch_count refused a field 1 of another wire type */
        }
        rc = decode_msg((const uint8_t *)f.bytes.p, f.bytes.len, &m, &sc, lim, err);
        if (rc == 0) {
            evs[built++] = build_event(&m);
        }
        scratch_free(&sc);
        if (rc != 0) {
            where_in_batch(err, built);
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

int ep_event_batch_decode_pb(const void *buf, size_t len, ep_event_t ***out, size_t *count)
{
    return ep_event_batch_decode_pb_ex(buf, len, NULL, SIZE_MAX, out, count, NULL);
}
