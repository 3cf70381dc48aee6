/*
 * The bytes of the gRPC API: protobuf fields, gRPC message framing, gzip,
 * grpc-timeout and the Event decoder (see ep_grpc_wire.h). No I/O, no
 * globals; every function is bounded by its input and the limits it is given.
 */
#include "grpc/ep_grpc_wire.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static const char *const code_names[EP_GRPC_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

const char *ep_grpc_code_name(int code)
{
    return code >= 0 && code < EP_GRPC_CODES ? code_names[code] : "UNKNOWN";
}

/* ------------------------------------------------------------ protobuf */

void ep_pb_reader_init(ep_pb_reader_t *r, const void *buf, size_t len)
{
    r->p = buf;
    r->end = r->p + len;
}

static int get_varint(ep_pb_reader_t *r, uint64_t *out)
{
    uint64_t v = 0;

    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t c;
        if (r->p >= r->end) {
            return -1;
        }
        c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

int ep_pb_next(ep_pb_reader_t *r, ep_pb_field_t *f)
{
    uint64_t key, v;

    if (r->p >= r->end) {
        return 0;
    }
    if (get_varint(r, &key) != 0 || (key >> 3) == 0 || (key >> 3) > 0x1fffffff) {
        return -1;
    }
    f->num = (uint32_t)(key >> 3);
    f->wt = (int)(key & 7);
    f->p = NULL;
    f->len = 0;
    f->v = 0;
    switch (f->wt) {
    case EP_PB_VARINT:
        return get_varint(r, &f->v) == 0 ? 1 : -1;
    case EP_PB_I64:
        if (r->end - r->p < 8) {
            return -1;
        }
        memcpy(&f->v, r->p, 8);
        r->p += 8;
        return 1;
    case EP_PB_I32: {
        uint32_t w;
        if (r->end - r->p < 4) {
            return -1;
        }
        memcpy(&w, r->p, 4);
        f->v = w;
        r->p += 4;
        return 1;
    }
    case EP_PB_LEN:
        if (get_varint(r, &v) != 0 || v > (uint64_t)(r->end - r->p)) {
            return -1;
        }
        f->p = r->p;
        f->len = (size_t)v;
        r->p += v;
        return 1;
    default:
        return -1; /* groups and reserved wire types */
    }
}

void ep_pb_put_varint(ep_buf_t *b, uint64_t v)
{
    uint8_t *p;

    if (b->cap - b->len < 11) {
        ep_buf_reserve(b, 11);
    }
    p = (uint8_t *)b->data + b->len;
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    b->len = (size_t)((char *)p - b->data);
    b->data[b->len] = '\0';
}

static void put_key(ep_buf_t *b, uint32_t num, int wt)
{
    ep_pb_put_varint(b, ((uint64_t)num << 3) | (uint64_t)wt);
}

void ep_pb_put_uint(ep_buf_t *b, uint32_t num, uint64_t v)
{
    if (v) {
        put_key(b, num, EP_PB_VARINT);
        ep_pb_put_varint(b, v);
    }
}

void ep_pb_put_bytes_always(ep_buf_t *b, uint32_t num, const void *p, size_t len)
{
    put_key(b, num, EP_PB_LEN);
    ep_pb_put_varint(b, len);
    if (len) {
        ep_buf_append(b, p, len);
    }
}

void ep_pb_put_bytes(ep_buf_t *b, uint32_t num, const void *p, size_t len)
{
    if (len) {
        ep_pb_put_bytes_always(b, num, p, len);
    }
}

size_t ep_pb_open(ep_buf_t *b, uint32_t num)
{
    put_key(b, num, EP_PB_LEN);
    return b->len;
}

void ep_pb_close(ep_buf_t *b, size_t start)
{
    size_t len = b->len - start, n = 0;
    uint8_t tmp[10];
    uint64_t v = len;

    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    ep_buf_reserve(b, n);
    memmove(b->data + start + n, b->data + start, len);
    memcpy(b->data + start, tmp, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ep_pb_put_map_entry(ep_buf_t *b, uint32_t num, const char *k, size_t klen, const char *v,
                         size_t vlen)
{
    size_t at = ep_pb_open(b, num);

    ep_pb_put_bytes(b, 1, k, klen);
    ep_pb_put_bytes(b, 2, v, vlen);
    ep_pb_close(b, at);
}

/* ------------------------------------------------------------ gRPC framing */

int ep_grpc_frame_next(const uint8_t *buf, size_t len, size_t max, const uint8_t **msg,
                       size_t *msg_len, int *compressed, size_t *used)
{
    uint32_t n;

    if (len < EP_GRPC_PREFIX) {
        return 0;
    }
    if (buf[0] > 1) {
        return EP_EPARSE;
    }
    n = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
    if (n > max) {
        return EP_E2BIG;
    }
    if (len - EP_GRPC_PREFIX < n) {
        return 0;
    }
    *msg = buf + EP_GRPC_PREFIX;
    *msg_len = n;
    *compressed = buf[0];
    *used = EP_GRPC_PREFIX + (size_t)n;
    return 1;
}

void ep_grpc_frame_prefix(ep_buf_t *b, size_t len, int compressed)
{
    uint8_t p[EP_GRPC_PREFIX] = {(uint8_t)(compressed ? 1 : 0), (uint8_t)(len >> 24),
                                 (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};

    ep_buf_append(b, p, sizeof(p));
}

int ep_grpc_gunzip(const uint8_t *in, size_t len, size_t max, ep_buf_t *out)
{
    z_stream z;
    int zr;
    size_t start = out->len;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 16 + 15) != Z_OK) {
        return EP_ENOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    do {
        size_t room, left = max + 1 - (out->len - start); /* one byte past max tells E2BIG */
        ep_buf_reserve(out, left < 16 * 1024 ? left : 16 * 1024);
        room = out->cap - out->len - 1;
        z.next_out = (Bytef *)out->data + out->len;
        z.avail_out = (uInt)(room < left ? room : left);
        zr = inflate(&z, Z_NO_FLUSH);
        out->len = (size_t)((char *)z.next_out - out->data);
        out->data[out->len] = '\0';
        if (out->len - start > max) {
            inflateEnd(&z);
            return EP_E2BIG;
        }
    } while (zr == Z_OK && (z.avail_in > 0 || z.avail_out == 0));
    inflateEnd(&z);
    return zr == Z_STREAM_END && z.avail_in == 0 ? 0 : EP_EPARSE;
}

int ep_grpc_gzip(const uint8_t *in, size_t len, ep_buf_t *out)
{
    z_stream z;
    uLong bound;
    int zr;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        return EP_ENOMEM;
    }
    bound = deflateBound(&z, (uLong)len);
    ep_buf_reserve(out, bound + 1);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    z.next_out = (Bytef *)out->data + out->len;
    z.avail_out = (uInt)bound;
    zr = deflate(&z, Z_FINISH);
    out->len = (size_t)((char *)z.next_out - out->data);
    out->data[out->len] = '\0';
    deflateEnd(&z);
    return zr == Z_STREAM_END ? 0 : EP_ENOMEM;
}

int64_t ep_grpc_timeout_ms(const char *v, size_t len)
{
    int64_t n = 0;

    if (len < 2 || len > 9) {
        return -1;
    }
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9') {
            return -1;
        }
        n = n * 10 + (v[i] - '0');
    }
    switch (v[len - 1]) {
    case 'H':
        n *= 3600000;
        break;
    case 'M':
        n *= 60000;
        break;
    case 'S':
        n *= 1000;
        break;
    case 'm':
        break;
    case 'u':
        n = (n + 999) / 1000;
        break;
    case 'n':
        n = (n + 999999) / 1000000;
        break;
    default:
        return -1;
    }
    return n < 1 ? 1 : n;
}

/* ------------------------------------------------------------ events */

#define STACK_KV   16
#define TS_SECONDS INT64_C(100000000000) /* below: seconds, from here on: milliseconds */

#define NUM_TEXT 32 /* "%.17g" of a double and its NUL fit */

typedef struct kvs_s {
    ep_kv_t stack[STACK_KV];
    ep_kv_t *kv;
    uint32_t n, cap, max;
    char num_stack[STACK_KV][NUM_TEXT]; /* the text of typed_properties numbers */
    char (*num)[NUM_TEXT];
    uint32_t nnum, num_cap;
} kvs_t;

static void kvs_init(kvs_t *k, uint32_t max)
{
    k->kv = k->stack;
    k->n = 0;
    k->cap = STACK_KV;
    k->max = max;
    k->num = k->num_stack;
    k->nnum = 0;
    k->num_cap = STACK_KV;
}

static void kvs_close(kvs_t *k)
{
    if (k->kv != k->stack) {
        ep_free(k->kv);
    }
    if (k->num != k->num_stack) {
        ep_free(k->num);
    }
}

/* Appends kv (the caller checked k->n < k->max). */
static void kvs_push(kvs_t *k, const ep_kv_t *kv)
{
    if (k->n == k->cap) {
        ep_kv_t *nk = ep_malloc((size_t)k->max * sizeof(*nk));
        memcpy(nk, k->kv, (size_t)k->n * sizeof(*nk));
        if (k->kv != k->stack) {
            ep_free(k->kv);
        }
        k->kv = nk;
        k->cap = k->max;
    }
    k->kv[k->n++] = *kv;
}

static int verr(ep_parse_err_t *err, int code, const char *prefix, const char *field,
                const char *msg)
{
    if (err) {
        snprintf(err->msg, sizeof(err->msg), "%s", msg);
        snprintf(err->field, sizeof(err->field), "%s%s", prefix, field);
        err->line = 0;
    }
    return code;
}

/* A map<string,string> entry into k. 0, or EP_EPARSE / EP_EVALIDATE. */
static int add_entry(kvs_t *k, const ep_pb_field_t *f, const char *prefix, const char *map,
                     ep_parse_err_t *err)
{
    ep_pb_reader_t r;
    ep_pb_field_t e;
    ep_kv_t kv = {{"", 0}, {"", 0}, EP_VAL_STRING};
    int rc;

    if (f->wt != EP_PB_LEN) {
        return verr(err, EP_EPARSE, prefix, map, "wrong wire type");
    }
    if (k->n >= k->max) {
        char msg[64];
        snprintf(msg, sizeof(msg), "too many metadata entries (at most %u)", k->max);
        return verr(err, EP_EVALIDATE, prefix, map, msg);
    }
    ep_pb_reader_init(&r, f->p, f->len);
    while ((rc = ep_pb_next(&r, &e)) == 1) {
        if (e.num != 1 && e.num != 2) {
            continue;
        }
        if (e.wt != EP_PB_LEN) {
            return verr(err, EP_EPARSE, prefix, map, "wrong wire type in a map entry");
        }
        if (e.num == 1) {
            kv.key.p = (const char *)e.p;
            kv.key.len = (uint32_t)e.len;
        } else {
            kv.val.p = (const char *)e.p;
            kv.val.len = (uint32_t)e.len;
        }
    }
    if (rc < 0) {
        return verr(err, EP_EPARSE, prefix, map, "malformed map entry");
    }
    kvs_push(k, &kv);
    return 0;
}

/*
 * The shortest "%.*g" text that reads back as v (JSON number syntax: v is
 * finite). Into out[NUM_TEXT]; returns its length.
 */
static size_t number_text(double v, char *out)
{
    int n = 0;

    for (int prec = 1; prec <= 17; prec++) {
        n = snprintf(out, NUM_TEXT, "%.*g", prec, v);
        if (strtod(out, NULL) == v) {
            break;
        }
    }
    return (size_t)n;
}

/*
 * A map<string, google.protobuf.Value> entry (typed_properties) into k:
 * number_value (2) and bool_value (4) keep their JSON type, string_value (3) is
 * a string, null_value (1) skips the entry (JSON null), struct_value (5) and
 * list_value (6) are refused like nested values in JSON. 0, or EP_E*.
 */
static int add_typed_entry(kvs_t *k, const ep_pb_field_t *f, const char *prefix,
                           ep_parse_err_t *err)
{
    static const char *const map = "typed_properties";
    ep_pb_reader_t r, vr;
    ep_pb_field_t e, v;
    ep_kv_t kv = {{"", 0}, {"", 0}, EP_VAL_STRING};
    int rc, kind = 0; /* the Value's field number: 0 none yet */
    double num = 0;

    if (f->wt != EP_PB_LEN) {
        return verr(err, EP_EPARSE, prefix, map, "wrong wire type");
    }
    if (k->n >= k->max) {
        char msg[64];
        snprintf(msg, sizeof(msg), "too many metadata entries (at most %u)", k->max);
        return verr(err, EP_EVALIDATE, prefix, map, msg);
    }
    ep_pb_reader_init(&r, f->p, f->len);
    while ((rc = ep_pb_next(&r, &e)) == 1) {
        if (e.num == 1 && e.wt == EP_PB_LEN) {
            kv.key.p = (const char *)e.p;
            kv.key.len = (uint32_t)e.len;
        } else if (e.num == 2 && e.wt == EP_PB_LEN) {
            kind = 0; /* a repeated value field: the last one counts (protobuf's merge) */
            ep_pb_reader_init(&vr, e.p, e.len);
            while ((rc = ep_pb_next(&vr, &v)) == 1) {
                static const int wt_of[7] = {
                    0, EP_PB_VARINT, EP_PB_I64, EP_PB_LEN, EP_PB_VARINT, EP_PB_LEN, EP_PB_LEN};
                if (v.num < 1 || v.num > 6) {
                    continue; /* unknown fields are skipped */
                }
                if (v.wt != wt_of[v.num]) {
                    return verr(err, EP_EPARSE, prefix, map, "wrong wire type in a Value");
                }
                kind = (int)v.num; /* a oneof: the last one set counts */
                if (kind == 2) {
                    memcpy(&num, &v.v, sizeof(num));
                } else if (kind == 3) {
                    kv.val.p = (const char *)v.p;
                    kv.val.len = (uint32_t)v.len;
                } else if (kind == 4) {
                    kv.val.p = v.v ? "true" : "false";
                    kv.val.len = v.v ? 4 : 5;
                }
            }
            if (rc < 0) {
                break;
            }
        } else if (e.num == 1 || e.num == 2) {
            return verr(err, EP_EPARSE, prefix, map, "wrong wire type in a map entry");
        }
    }
    if (rc < 0) {
        return verr(err, EP_EPARSE, prefix, map, "malformed map entry");
    }
    switch (kind) {
    case 1:
        return 0; /* null: absent, as a JSON null */
    case 2:
        if (!isfinite(num)) {
            return verr(err, EP_EVALIDATE, prefix, map, "a number must be finite");
        }
        if (k->nnum == k->num_cap) {
            /* More numbers than the stack holds: one block for the rest of the event. */
            k->num = ep_malloc((size_t)k->max * sizeof(*k->num));
            k->num_cap = k->max;
            k->nnum = 0;
        }
        kv.val.p = k->num[k->nnum];
        kv.val.len = (uint32_t)number_text(num, k->num[k->nnum++]);
        kv.type = EP_VAL_NUMBER;
        break;
    case 4:
        kv.type = EP_VAL_BOOL;
        break;
    case 3:
        break;
    case 0:
        return verr(err, EP_EVALIDATE, prefix, map, "a value must be set (Value has no kind)");
    default:
        return verr(err, EP_EVALIDATE, prefix, map,
                    "must be a string, number or boolean, not a struct or list");
    }
    kvs_push(k, &kv);
    return 0;
}

static int str_field(const ep_pb_field_t *f, ep_str_t *s, const char *prefix, const char *name,
                     ep_parse_err_t *err)
{
    if (f->wt != EP_PB_LEN) {
        return verr(err, EP_EPARSE, prefix, name, "wrong wire type");
    }
    if (f->len > UINT32_MAX) {
        return verr(err, EP_EVALIDATE, prefix, name, "is too long");
    }
    s->p = (const char *)f->p;
    s->len = (uint32_t)f->len;
    return 0;
}

/* Builds the event from a draft whose strings point into the message. */
static int finish(ep_event_draft_t *d, kvs_t *k, const ep_event_limits_t *lim, const char *prefix,
                  int64_t received_us, ep_event_t **out, ep_parse_err_t *err)
{
    ep_parse_err_t local = {{0}, {0}, 0};
    ep_parse_err_t *e = err ? err : &local;
    int rc;

    d->meta = k->kv;
    d->n_meta = k->n;
    d->flags = 0;
    rc = ep_event_validate(d, lim, e);
    if (rc != 0) {
        char field[sizeof(e->field)];
        snprintf(field, sizeof(field), "%s", e->field);
        snprintf(e->field, sizeof(e->field), "%s%s", prefix, field);
        return rc;
    }
    *out = ep_event_create_at(&d->id, d->source.p ? &d->source : NULL, &d->event_type, &d->user_id,
                              d->data.p, d->data.len, k->kv, k->n, d->timestamp_ms,
                              received_us ? received_us : ep_time_now_us());
    return 0;
}

int ep_grpc_decode_event(const uint8_t *buf, size_t len, const ep_event_limits_t *lim,
                         const char *prefix, int64_t received_us, ep_event_t **out,
                         ep_parse_err_t *err)
{
    ep_event_draft_t d;
    ep_pb_reader_t r;
    ep_pb_field_t f;
    kvs_t k;
    int rc = 0, more;

    *out = NULL;
    lim = lim ? lim : ep_event_limits_default();
    prefix = prefix ? prefix : "";
    memset(&d, 0, sizeof(d));
    d.id.p = d.event_type.p = d.user_id.p = d.data.p = "";
    kvs_init(&k, lim->max_meta_keys);
    ep_pb_reader_init(&r, buf, len);
    while (rc == 0 && (more = ep_pb_next(&r, &f)) != 0) {
        if (more < 0) {
            rc = verr(err, EP_EPARSE, prefix, "", "not a protobuf message");
            break;
        }
        switch (f.num) {
        case 1:
            rc = str_field(&f, &d.id, prefix, "id", err);
            break;
        case 2:
            rc = str_field(&f, &d.user_id, prefix, "user_id", err);
            break;
        case 3:
            rc = str_field(&f, &d.event_type, prefix, "event_type", err);
            break;
        case 4:
            rc = add_entry(&k, &f, prefix, "properties", err);
            break;
        case 5: {
            int64_t ts = (int64_t)f.v;
            if (f.wt != EP_PB_VARINT) {
                rc = verr(err, EP_EPARSE, prefix, "timestamp", "wrong wire type");
            } else if (ts < 0) {
                rc = verr(err, EP_EVALIDATE, prefix, "timestamp", "must not be negative");
            } else if (ts > EP_EVENT_TS_MAX_MS) {
                rc = verr(err, EP_EVALIDATE, prefix, "timestamp", "is out of range");
            } else {
                d.timestamp_ms = ts < TS_SECONDS ? ts * 1000 : ts;
            }
            break;
        }
        case 6:
            rc = str_field(&f, &d.source, prefix, "source", err);
            break;
        case 7:
            rc = str_field(&f, &d.data, prefix, "data", err);
            break;
        case 8:
            rc = add_entry(&k, &f, prefix, "metadata", err);
            break;
        case 9:
            rc = add_typed_entry(&k, &f, prefix, err);
            break;
        default:
            break; /* unknown fields are skipped (protobuf's rule) */
        }
    }
    if (rc == 0) {
        if (d.source.p && d.source.len == 0) {
            d.source.p = NULL; /* proto3: an empty string is an absent one */
        }
        rc = finish(&d, &k, lim, prefix, received_us, out, err);
    }
    kvs_close(&k);
    return rc;
}

int ep_grpc_decode_ingest(const uint8_t *buf, size_t len, const ep_event_limits_t *lim,
                          int64_t received_us, ep_event_t **out, ep_parse_err_t *err)
{
    ep_event_draft_t d;
    ep_pb_reader_t r;
    ep_pb_field_t f;
    kvs_t k;
    int rc = 0, more;

    *out = NULL;
    lim = lim ? lim : ep_event_limits_default();
    memset(&d, 0, sizeof(d));
    d.id.p = d.event_type.p = d.user_id.p = d.data.p = "";
    kvs_init(&k, lim->max_meta_keys);
    ep_pb_reader_init(&r, buf, len);
    while (rc == 0 && (more = ep_pb_next(&r, &f)) != 0) {
        if (more < 0) {
            rc = verr(err, EP_EPARSE, "", "", "not a protobuf message");
            break;
        }
        switch (f.num) {
        case 1:
            rc = str_field(&f, &d.source, "", "source", err);
            break;
        case 2:
            rc = str_field(&f, &d.data, "", "data", err);
            break;
        case 3:
            rc = add_entry(&k, &f, "", "metadata", err);
            break;
        default:
            break;
        }
    }
    if (rc == 0) {
        if (d.source.p && d.source.len == 0) {
            d.source.p = NULL;
        }
        rc = finish(&d, &k, lim, "", received_us, out, err);
    }
    kvs_close(&k);
    return rc;
}
