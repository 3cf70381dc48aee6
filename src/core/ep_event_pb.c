/*
 * Event <-> protobuf (diplom.v1.DataMessage / DataBatch, proto/eventpipe.proto)
 * with protobuf-c. Fields 1-5 are the seed's; 6-12 are eventpipe's.
 *
 * Encoding points the generated structs at the event's own strings; the only
 * allocation is one scratch block for the metadata entry arrays (on the stack
 * for events with few metadata entries).
 *
 * Decoding validates what protobuf-c does not: string fields must be UTF-8,
 * values of keys listed in number_keys must be JSON numbers and those in
 * bool_keys "true"/"false" (they are written into JSON unquoted), and the
 * seconds timestamp must fit in milliseconds. Metadata entries are kept in wire
 * order; duplicate keys are not merged.
 */
#include "ep_error.h"
#include "ep_event.h"
#include "ep_mem.h"

#include "eventpipe.pb-c.h"

#include <stdbool.h>
#include <string.h>

typedef Diplom__V1__DataMessage msg_t;
typedef Diplom__V1__DataMessage__MetadataEntry entry_t;

#define STACK_META 16 /* metadata entries encoded without a heap scratch block */

/* ------------------------------------------------------------------ encode */

/* Scratch space for one message's repeated fields. */
typedef struct slots_s {
    entry_t *entries;
    entry_t **entry_ptrs;
    char **typed_keys; /* number keys from the front, bool keys from the back */
} slots_t;

static size_t slots_size(uint32_t n_meta)
{
    return (size_t)n_meta * (sizeof(entry_t) + sizeof(entry_t *) + sizeof(char *));
}

static void slots_carve(slots_t *s, void *mem, uint32_t n_meta)
{
    char *p = mem;

    s->entries = (entry_t *)p;
    p += (size_t)n_meta * sizeof(entry_t);
    s->entry_ptrs = (entry_t **)p;
    p += (size_t)n_meta * sizeof(entry_t *);
    s->typed_keys = (char **)p;
}

/* Points msg at ev's strings. The event outlives msg; nothing is copied. */
static void fill_msg(const ep_event_t *ev, msg_t *msg, const slots_t *s)
{
    size_t n_num = 0, n_bool = 0;

    diplom__v1__data_message__init(msg);
    msg->id = (char *)ev->id.p;
    /* Field 2 is whole seconds (seed); floor, so pre-1970 times stay ordered. */
    msg->timestamp =
        ev->timestamp_ms >= 0 ? ev->timestamp_ms / 1000 : -((-(ev->timestamp_ms + 1)) / 1000) - 1;
    msg->source = (char *)ev->source.p;
    msg->payload.data = (uint8_t *)ev->data.p;
    msg->payload.len = ev->data.len;
    msg->event_type = (char *)ev->event_type.p;
    msg->user_id = (char *)ev->user_id.p;
    msg->timestamp_ms = ev->timestamp_ms;
    msg->received_us = ev->received_us;
    msg->attempts = ev->attempts;
    msg->n_metadata = ev->n_meta;
    msg->metadata = ev->n_meta ? s->entry_ptrs : NULL;
    for (uint32_t i = 0; i < ev->n_meta; i++) {
        const ep_kv_t *kv = &ev->meta[i];
        entry_t *e = &s->entries[i];

        diplom__v1__data_message__metadata_entry__init(e);
        e->key = (char *)kv->key.p;
        e->value = (char *)kv->val.p;
        s->entry_ptrs[i] = e;
        if (kv->type == EP_VAL_NUMBER) {
            s->typed_keys[n_num++] = (char *)kv->key.p;
        } else if (kv->type == EP_VAL_BOOL) {
            s->typed_keys[ev->n_meta - ++n_bool] = (char *)kv->key.p;
        }
    }
    msg->n_number_keys = n_num;
    msg->number_keys = n_num ? s->typed_keys : NULL;
    msg->n_bool_keys = n_bool;
    msg->bool_keys = n_bool ? s->typed_keys + ev->n_meta - n_bool : NULL;
}

/* Appends ev as a DataMessage to out. Returns 0; OOM aborts. Thread-safe per out. */
int ep_event_encode_pb(const ep_event_t *ev, ep_buf_t *out)
{
    union {
        char bytes[STACK_META * (sizeof(entry_t) + sizeof(entry_t *) + sizeof(char *))];
        void *align_;
    } stack;
    void *mem = ev->n_meta <= STACK_META ? (void *)&stack : ep_malloc(slots_size(ev->n_meta));
    slots_t s;
    msg_t msg;
    size_t size;

    slots_carve(&s, mem, ev->n_meta);
    fill_msg(ev, &msg, &s);
    size = diplom__v1__data_message__get_packed_size(&msg);
    ep_buf_reserve(out, size);
    diplom__v1__data_message__pack(&msg, (uint8_t *)out->data + out->len);
    out->len += size;
    out->data[out->len] = '\0';
    if (mem != (void *)&stack) {
        ep_free(mem);
    }
    return 0;
}

/* Appends evs[0..n) as one DataBatch to out. Returns 0; OOM aborts. Thread-safe per out. */
int ep_event_batch_encode_pb(ep_event_t *const *evs, size_t n, ep_buf_t *out)
{
    Diplom__V1__DataBatch batch = DIPLOM__V1__DATA_BATCH__INIT;
    size_t total = n * (sizeof(msg_t) + sizeof(msg_t *)), size;
    msg_t *msgs, **ptrs;
    char *mem, *cur;

    /* One scratch block: the messages, their pointers, then each one's slots. */
    for (size_t i = 0; i < n; i++) {
        total += slots_size(evs[i]->n_meta);
    }
    mem = ep_malloc(total ? total : 1);
    msgs = (msg_t *)mem;
    ptrs = (msg_t **)(msgs + n);
    cur = (char *)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        slots_t s;

        slots_carve(&s, cur, evs[i]->n_meta);
        cur += slots_size(evs[i]->n_meta);
        fill_msg(evs[i], &msgs[i], &s);
        ptrs[i] = &msgs[i];
    }
    batch.n_messages = n;
    batch.messages = n ? ptrs : NULL;
    size = diplom__v1__data_batch__get_packed_size(&batch);
    ep_buf_reserve(out, size);
    diplom__v1__data_batch__pack(&batch, (uint8_t *)out->data + out->len);
    out->len += size;
    out->data[out->len] = '\0';
    ep_free(mem);
    return 0;
}

/* ------------------------------------------------------------------ decode */

static bool utf8_ok(const char *s)
{
    return ep__event_utf8_valid(s, strlen(s)) != 0;
}

/* JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_ok(const char *s)
{
    const char *p = s;

    if (*p == '-') {
        p++;
    }
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    } else {
        return false;
    }
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9')) {
            return false;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') {
            p++;
        }
        if (!(*p >= '0' && *p <= '9')) {
            return false;
        }
        while (*p >= '0' && *p <= '9') {
            p++;
        }
    }
    return *p == '\0';
}

/*
 * Index of the metadata entry named key, or -1. The search starts after the
 * previous hit, so keys listed in metadata order (as this encoder writes them)
 * cost one comparison each.
 */
static long find_key(const msg_t *m, const char *key, size_t *hint)
{
    for (size_t k = 0; k < m->n_metadata; k++) {
        size_t i = (*hint + k) % m->n_metadata;
        if (strcmp(m->metadata[i]->key, key) == 0) {
            *hint = i + 1;
            return (long)i;
        }
    }
    return -1;
}

/* Fills types[0..n_metadata): each typed key applies to the first entry it names. */
static void assign_types(const msg_t *m, uint8_t *types)
{
    size_t hint = 0;
    long i;

    memset(types, EP_VAL_STRING, m->n_metadata);
    for (size_t k = 0; k < m->n_number_keys; k++) {
        if ((i = find_key(m, m->number_keys[k], &hint)) >= 0) {
            types[i] = EP_VAL_NUMBER;
        }
    }
    hint = 0;
    for (size_t k = 0; k < m->n_bool_keys; k++) {
        if ((i = find_key(m, m->bool_keys[k], &hint)) >= 0) {
            types[i] = EP_VAL_BOOL;
        }
    }
}

static bool value_ok(const char *v, uint8_t type)
{
    if (type == EP_VAL_NUMBER) {
        return json_number_ok(v);
    }
    if (type == EP_VAL_BOOL) {
        return strcmp(v, "true") == 0 || strcmp(v, "false") == 0;
    }
    return true;
}

/* Checks everything that could make building the event fail or produce bad JSON later. */
static int check_msg(const msg_t *m)
{
    uint8_t stack[STACK_META], *types = stack;
    int rc = 0;

    if (!utf8_ok(m->id) || !utf8_ok(m->source) || !utf8_ok(m->event_type) || !utf8_ok(m->user_id)) {
        return EP_EPARSE;
    }
    if (m->timestamp_ms == 0 &&
        (m->timestamp > INT64_MAX / 1000 || m->timestamp < INT64_MIN / 1000)) {
        return EP_EPARSE;
    }
    if (m->n_metadata > UINT32_MAX / 2) {
        return EP_EPARSE;
    }
    for (size_t k = 0; k < m->n_number_keys; k++) {
        if (!utf8_ok(m->number_keys[k])) {
            return EP_EPARSE;
        }
    }
    for (size_t k = 0; k < m->n_bool_keys; k++) {
        if (!utf8_ok(m->bool_keys[k])) {
            return EP_EPARSE;
        }
    }
    if (m->n_metadata > STACK_META) {
        types = ep_malloc(m->n_metadata);
    }
    assign_types(m, types);
    for (size_t i = 0; i < m->n_metadata && rc == 0; i++) {
        if (!utf8_ok(m->metadata[i]->key) || !utf8_ok(m->metadata[i]->value) ||
            !value_ok(m->metadata[i]->value, types[i])) {
            rc = EP_EPARSE;
        }
    }
    if (types != stack) {
        ep_free(types);
    }
    return rc;
}

/* Builds the event of a message that passed check_msg(). Cannot fail. */
static ep_event_t *build_event(const msg_t *m)
{
    ep_kv_t stack[STACK_META];
    uint8_t tstack[STACK_META];
    bool small = m->n_metadata <= STACK_META;
    ep_kv_t *meta = small ? stack : ep_malloc(m->n_metadata * sizeof(ep_kv_t));
    uint8_t *types = small ? tstack : ep_malloc(m->n_metadata);
    int64_t ts = m->timestamp_ms ? m->timestamp_ms : m->timestamp * 1000;
    ep_event_t *ev;

    assign_types(m, types);
    for (size_t i = 0; i < m->n_metadata; i++) {
        meta[i].key.p = m->metadata[i]->key;
        meta[i].key.len = (uint32_t)strlen(m->metadata[i]->key);
        meta[i].val.p = m->metadata[i]->value;
        meta[i].val.len = (uint32_t)strlen(m->metadata[i]->value);
        meta[i].type = types[i];
    }
    ev = ep_event_create(m->id, m->source, m->event_type, m->user_id, m->payload.data,
                         m->payload.len, meta, (uint32_t)m->n_metadata, ts);
    if (m->received_us) {
        ev->received_us = m->received_us;
    }
    ev->attempts = m->attempts;
    if (!small) {
        ep_free(meta);
        ep_free(types);
    }
    return ev;
}

/*
 * Decodes one DataMessage. Returns 0 and a caller-owned event in *out, or
 * EP_EPARSE (not protobuf, bad UTF-8, bad typed value) with *out NULL. Thread-safe.
 */
int ep_event_decode_pb(const void *buf, size_t len, ep_event_t **out)
{
    msg_t *m = diplom__v1__data_message__unpack(NULL, len, buf);
    int rc;

    *out = NULL;
    if (m == NULL) {
        return EP_EPARSE;
    }
    rc = check_msg(m);
    if (rc == 0) {
        *out = build_event(m);
    }
    diplom__v1__data_message__free_unpacked(m, NULL);
    return rc;
}

/*
 * Decodes a DataBatch, all or nothing. Returns 0 with a caller-owned array
 * (ep_free) of *count caller-owned events, or EP_EPARSE with *out NULL, *count 0
 * and nothing allocated. Thread-safe.
 */
int ep_event_batch_decode_pb(const void *buf, size_t len, ep_event_t ***out, size_t *count)
{
    Diplom__V1__DataBatch *b = diplom__v1__data_batch__unpack(NULL, len, buf);
    ep_event_t **evs;

    *out = NULL;
    *count = 0;
    if (b == NULL) {
        return EP_EPARSE;
    }
    /* Check every message first, so a bad one leaves nothing half-built. */
    for (size_t i = 0; i < b->n_messages; i++) {
        if (check_msg(b->messages[i]) != 0) {
            diplom__v1__data_batch__free_unpacked(b, NULL);
            return EP_EPARSE;
        }
    }
    evs = ep_malloc((b->n_messages ? b->n_messages : 1) * sizeof(*evs));
    for (size_t i = 0; i < b->n_messages; i++) {
        evs[i] = build_event(b->messages[i]);
    }
    *out = evs;
    *count = b->n_messages;
    diplom__v1__data_batch__free_unpacked(b, NULL);
    return 0;
}
