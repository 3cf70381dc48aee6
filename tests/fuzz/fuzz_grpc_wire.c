/*
 * Fuzz target: the bytes of the gRPC API (src/grpc/ep_grpc_wire.c and
 * ep_grpc_reflect.c). The first byte picks what the rest is fed to:
 *   0 the gRPC message framing (ep_grpc_frame_next), walked to the end
 *   1 an eventpipe.v1.Event (ep_grpc_decode_event); a decoded event is
 *     encoded again and must decode to the same fields (typed_properties
 *     numbers and booleans to the same text and type)
 *   2 a diplom.v1.IngestRequest (ep_grpc_decode_ingest)
 *   3 a grpc-timeout value
 *   4 a ServerReflectionRequest, answered from the embedded descriptor set;
 *     the answer must be a well-formed protobuf message
 *   5 a gzip message (ep_grpc_gunzip, 1 MiB cap)
 * Any broken invariant aborts.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "grpc/ep_grpc_reflect.h"
#include "grpc/ep_grpc_wire.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_grpc_wire: %s:%d: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

extern const unsigned char ep_grpc_descriptors[];
extern const size_t ep_grpc_descriptors_len;

static void walk_all(const uint8_t *p, size_t n)
{
    ep_pb_reader_t r;
    ep_pb_field_t f;
    int rc;

    ep_pb_reader_init(&r, p, n);
    while ((rc = ep_pb_next(&r, &f)) == 1) {
        CHECK(f.wt != EP_PB_LEN || (f.p >= p && f.p + f.len <= p + n));
    }
    CHECK(rc == 0);
}

static int same(const ep_str_t *a, const ep_str_t *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

static void event_round_trip(const ep_event_t *ev)
{
    ep_buf_t b = EP_BUF_INIT;
    ep_event_t *again = NULL;
    ep_parse_err_t pe;

    ep_pb_put_bytes(&b, 1, ev->id.p, ev->id.len);
    ep_pb_put_bytes(&b, 2, ev->user_id.p, ev->user_id.len);
    ep_pb_put_bytes(&b, 3, ev->event_type.p, ev->event_type.len);
    /* Below 1e11 the field is read as seconds (the JSON API's rule): write those as seconds. */
    ep_pb_put_uint(&b, 5,
                   (uint64_t)(ev->timestamp_ms < INT64_C(100000000000) ? ev->timestamp_ms / 1000
                                                                       : ev->timestamp_ms));
    ep_pb_put_bytes(&b, 6, ev->source.p, ev->source.len);
    ep_pb_put_bytes(&b, 7, ev->data.p, ev->data.len);
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        const ep_kv_t *kv = &ev->meta[i];
        size_t at, v;
        double num;
        if (kv->type == EP_VAL_STRING) {
            ep_pb_put_map_entry(&b, 8, kv->key.p, kv->key.len, kv->val.p, kv->val.len);
            continue;
        }
        /* A typed_properties entry: its text must come back the same (shortest round trip). */
        at = ep_pb_open(&b, 9);
        ep_pb_put_bytes(&b, 1, kv->key.p, kv->key.len);
        v = ep_pb_open(&b, 2);
        if (kv->type == EP_VAL_BOOL) {
            ep_pb_put_varint(&b, (4 << 3) | EP_PB_VARINT);
            ep_pb_put_varint(&b, kv->val.len == 4);
        } else {
            num = strtod(kv->val.p, NULL);
            ep_pb_put_varint(&b, (2 << 3) | EP_PB_I64);
            ep_buf_append(&b, &num, sizeof(num));
        }
        ep_pb_close(&b, v);
        ep_pb_close(&b, at);
    }
    CHECK(ep_grpc_decode_event((const uint8_t *)(b.data ? b.data : ""), b.len, NULL, "", 0, &again,
                               &pe) == 0);
    CHECK(same(&ev->id, &again->id) && same(&ev->source, &again->source));
    CHECK(same(&ev->event_type, &again->event_type) && same(&ev->user_id, &again->user_id));
    CHECK(same(&ev->data, &again->data) && ev->n_meta == again->n_meta);
    CHECK(ev->timestamp_ms == again->timestamp_ms);
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        CHECK(same(&ev->meta[i].key, &again->meta[i].key));
        CHECK(same(&ev->meta[i].val, &again->meta[i].val));
        CHECK(ev->meta[i].type == again->meta[i].type);
    }
    ep_event_destroy(again);
    ep_buf_close(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data + 1;
    size_t n = size ? size - 1 : 0;
    ep_event_t *ev = NULL;
    ep_parse_err_t pe;
    ep_buf_t out = EP_BUF_INIT;

    if (size == 0) {
        return 0;
    }
    switch (data[0] % 6) {
    case 0: {
        size_t off = 0;
        for (;;) {
            const uint8_t *m;
            size_t ml, used;
            int comp, rc = ep_grpc_frame_next(p + off, n - off, 1024, &m, &ml, &comp, &used);
            if (rc != 1) {
                CHECK(rc == 0 || rc == EP_E2BIG || rc == EP_EPARSE);
                break;
            }
            CHECK(used == ml + EP_GRPC_PREFIX && off + used <= n && ml <= 1024);
            CHECK(m == p + off + EP_GRPC_PREFIX && (comp == 0 || comp == 1));
            off += used;
        }
        break;
    }
    case 1:
        if (ep_grpc_decode_event(p, n, NULL, "events[1].", 0, &ev, &pe) == 0) {
            CHECK(ev->id.len > 0 && ev->source.len > 0);
            event_round_trip(ev);
            ep_event_destroy(ev);
        } else {
            CHECK(ev == NULL && strlen(pe.msg) > 0);
        }
        break;
    case 2:
        if (ep_grpc_decode_ingest(p, n, NULL, 0, &ev, &pe) == 0) {
            CHECK(ev->source.len > 0);
            ep_event_destroy(ev);
        } else {
            CHECK(ev == NULL);
        }
        break;
    case 3: {
        int64_t ms = ep_grpc_timeout_ms((const char *)p, n);
        CHECK(ms == -1 || ms >= 1);
        break;
    }
    case 4: {
        static const char *const svc[] = {"eventpipe.v1.ProducerService", "grpc.health.v1.Health"};
        ep_grpc_reflect_answer(ep_grpc_descriptors, ep_grpc_descriptors_len, p, n, svc, 2, &out);
        walk_all((const uint8_t *)out.data, out.len);
        break;
    }
    default: {
        int rc = ep_grpc_gunzip(p, n, 1 << 20, &out);
        CHECK(rc == 0 || rc == EP_E2BIG || rc == EP_EPARSE);
        CHECK(out.len <= (1 << 20) + 1);
        break;
    }
    }
    ep_buf_close(&out);
    return 0;
}
