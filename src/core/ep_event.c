/*
 * Event construction, copy, destruction and JSON output. The JSON parser lives
 * in ep_event_json.c and the protobuf codec in ep_event_pb.c.
 */
#include "ep_event.h"
#include "ep_id.h"
#include "ep_mem.h"
#include "ep_time.h"

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
