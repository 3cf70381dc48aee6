/*
 * The gRPC services of an eventpipe process (see ep_grpc_api.h and
 * proto/eventpipe_api.proto).
 *
 * Ingest goes through ep__ingest_submit, the path of the REST routes after
 * parsing (counters, de-duplication, the circuit breaker, publish): a call is
 * answered from the publish callback, on whatever thread that runs, only
 * after the queue accepted its events. Errors map to gRPC codes as the REST
 * statuses do: 400 -> INVALID_ARGUMENT (the message names the field), 401 ->
 * UNAUTHENTICATED, 409 (the same id being stored) -> ABORTED, 413/429 and a
 * full queue -> RESOURCE_EXHAUSTED, 503 -> UNAVAILABLE (saying whether the
 * event may be kept anyway).
 *
 * Health, stats and grpc.health.v1 are in ep_grpc_api_health.c.
 */
#include "grpc/ep_grpc_api.h"
#include "grpc/ep_grpc_api_int.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"
#include "event/ep_event.h"
#include "event/ep_json_tree.h"
#include "grpc/ep_grpc_reflect.h"
#include "grpc/ep_grpc_server.h"
#include "grpc/ep_grpc_wire.h"
#include "obs/ep_metrics.h"
#include "roles/ep_access.h"
#include "roles/ep_app.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_CAP 132

extern const unsigned char ep_grpc_descriptors[];
extern const size_t ep_grpc_descriptors_len;

const char *const ep__grpc_srv_names[N_SRV] = {"producer", "consumer", "analytics"};

/* ------------------------------------------------------------ helpers */

static ep_grpc_api_t *api_of(ep_app_t *app)
{
    return (ep_grpc_api_t *)app->grpc;
}

int ep__grpc_is_ready(ep_grpc_api_t *api, int which, char *reason, size_t len)
{
    ep_app_t *app = api->app;

    reason[0] = '\0';
    if (atomic_load(&api->quiesced)) {
        snprintf(reason, len, "shutting down");
        return 0;
    }
    switch (which) {
    case SRV_PRODUCER:
        return ep__ingest_ready(app, reason, len);
    case SRV_CONSUMER:
        return ep__processor_ready(app, reason, len);
    default:
        return ep__analytics_ready(app, reason, len);
    }
}

/* The access check of a call: 0 (go on) or the call was answered UNAUTHENTICATED. */
int ep__grpc_access_ok(ep_grpc_api_t *api, ep_grpc_call_t *call, int cls, ep_access_who_t *who)
{
    uint8_t peer[16];
    const char *msg;
    int has_peer = ep_grpc_call_peer(call, peer);

    if (ep_access_check_meta(api->app->access, ep_grpc_call_header(call, "authorization"),
                             ep_grpc_call_header(call, "x-api-key"), has_peer ? peer : NULL, cls,
                             who, &msg) != 0) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_UNAUTHENTICATED, msg);
        return 0;
    }
    return 1;
}

static int charge_ok(ep_grpc_api_t *api, ep_grpc_call_t *call, const ep_access_who_t *who, size_t n)
{
    char msg[256];

    if (ep_access_charge_meta(api->app->access, who, n, msg, sizeof(msg)) != 0) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_RESOURCE_EXHAUSTED, msg);
        return 0;
    }
    return 1;
}

/* The gRPC code of a failed publish (the REST status in brackets). */
static int code_of(int err)
{
    switch (err) {
    case EP_EINVAL:
    case EP_EVALIDATE:
        return EP_GRPC_INVALID_ARGUMENT; /* 400 */
    case EP_E2BIG:
    case EP_EFULL:
        return EP_GRPC_RESOURCE_EXHAUSTED; /* 413, 503 queue full */
    case EP_EAGAIN:
        return EP_GRPC_ABORTED; /* 409 */
    default:
        return EP_GRPC_UNAVAILABLE; /* 503 */
    }
}

static void error_text(ep_grpc_api_t *api, int err, char *out, size_t len)
{
    const char *t = ep__ingest_error_text(&api->app->ingest, err);

    if (err == EP_EAGAIN) {
        snprintf(out, len, "%s", t);
    } else {
        snprintf(out, len, "%s%s", t,
                 ep__publish_maybe_kept(err)
                     ? " (the event may have been kept: retry with the same id)"
                     : " (nothing was kept)");
    }
}

static void parse_error(ep_grpc_call_t *call, const ep_parse_err_t *pe)
{
    char msg[320];

    if (pe->field[0]) {
        snprintf(msg, sizeof(msg), "%s: %s", pe->field, pe->msg);
    } else {
        snprintf(msg, sizeof(msg), "%s", pe->msg);
    }
    ep_grpc_answer(call, NULL, 0, EP_GRPC_INVALID_ARGUMENT, msg);
}

/* ------------------------------------------------------------ one event */

typedef struct one_s {
    ep_grpc_api_t *api;
    ep_grpc_call_t *call;
    int kind; /* 0 SendEvent, 1 Ingest, 2 IngestStream */
    int status[1];
    ep_str_t ids[1];
    char id[ID_CAP];
} one_t;

/* A short string field into out at *n (len < 16384: at most a two-byte length). */
static void put_small(uint8_t *out, size_t *n, uint32_t num, const char *p, size_t len)
{
    if (len == 0) {
        return;
    }
    out[(*n)++] = (uint8_t)(num << 3 | EP_PB_LEN);
    if (len >= 0x80) {
        out[(*n)++] = (uint8_t)(len | 0x80);
        out[(*n)++] = (uint8_t)(len >> 7);
    } else {
        out[(*n)++] = (uint8_t)len;
    }
    memcpy(out + *n, p, len);
    *n += len;
}

static void on_one_done(void *arg)
{
    one_t *o = arg;
    int st = o->status[0];

    if (st == 0 || st == EP_EEXIST) {
        /* SendEventResponse / IngestResponse, on the stack: no allocation per call. */
        uint8_t out[ID_CAP + 32];
        size_t n = 0;
        put_small(out, &n, 1, o->id, o->ids[0].len);
        if (o->kind == 0) {
            put_small(out, &n, 2, "accepted", 8);
            if (st == EP_EEXIST) {
                out[n++] = 3 << 3 | EP_PB_VARINT;
                out[n++] = 1;
            }
        } else {
            put_small(out, &n, 2, st == EP_EEXIST ? "duplicate" : "accepted",
                      st == EP_EEXIST ? 9 : 8);
        }
        ep_grpc_answer(o->call, out, n, o->kind == 2 ? -1 : EP_GRPC_OK, NULL);
    } else {
        char msg[256];
        error_text(o->api, st, msg, sizeof(msg));
        ep_grpc_answer(o->call, NULL, 0, code_of(st), msg);
    }
    ep_free(o);
}

/* Submits one decoded event; the call is answered by on_one_done. */
static void submit_one(ep_grpc_api_t *api, ep_grpc_call_t *call, int kind, ep_event_t *ev)
{
    one_t *o = ep_malloc(sizeof(*o));
    size_t n = ev->id.len < ID_CAP - 1 ? ev->id.len : ID_CAP - 1;

    o->api = api;
    o->call = call;
    o->kind = kind;
    memcpy(o->id, ev->id.p, n);
    o->id[n] = '\0';
    o->ids[0].p = o->id;
    o->ids[0].len = (uint32_t)n;
    ep__ingest_submit(&api->app->ingest, &ev, o->ids, o->status, 1, ep_grpc_call_start_ns(call),
                      on_one_done, o);
}

static void inc_rejected(ep_grpc_api_t *api, uint64_t n)
{
    atomic_fetch_add_explicit(&api->app->ingest.rejected, n, memory_order_relaxed);
}

/* ProducerService.SendEvent: SendEventRequest { Event event = 1; } */
static void on_send_event(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    ep_grpc_api_t *api = p->api;
    ep_access_who_t who;
    ep_pb_reader_t r;
    ep_pb_field_t f;
    const uint8_t *evp = NULL;
    size_t evlen = 0;
    int more, have = 0;
    ep_event_t *ev;
    ep_parse_err_t pe;

    if (!ep__grpc_access_ok(api, call, EP_ACCESS_INGEST, &who)) {
        return;
    }
    ep_pb_reader_init(&r, msg, len);
    while ((more = ep_pb_next(&r, &f)) == 1) {
        if (f.num == 1 && f.wt == EP_PB_LEN) {
            evp = f.p;
            evlen = f.len;
            have = 1;
        }
    }
    if (more < 0) {
        inc_rejected(api, 1);
        ep_grpc_answer(call, NULL, 0, EP_GRPC_INVALID_ARGUMENT, "not a SendEventRequest message");
        return;
    }
    if (!have) {
        inc_rejected(api, 1);
        ep_grpc_answer(call, NULL, 0, EP_GRPC_INVALID_ARGUMENT, "event: is required");
        return;
    }
    if (ep_grpc_decode_event(evp, evlen, NULL, "event.", 0, &ev, &pe) != 0) {
        inc_rejected(api, 1);
        parse_error(call, &pe);
        return;
    }
    if (!charge_ok(api, call, &who, 1)) {
        ep_event_destroy(ev);
        return;
    }
    submit_one(api, call, 0, ev);
}

/* IngestService.Ingest and IngestStream: diplom.v1.IngestRequest (seed 000). */
static void ingest_message(port_t *p, ep_grpc_call_t *call, const uint8_t *msg, size_t len,
                           int kind)
{
    ep_grpc_api_t *api = p->api;
    ep_access_who_t who;
    ep_event_t *ev;
    ep_parse_err_t pe;

    if (!ep__grpc_access_ok(api, call, EP_ACCESS_INGEST, &who)) {
        return;
    }
    if (ep_grpc_decode_ingest(msg, len, NULL, 0, &ev, &pe) != 0) {
        inc_rejected(api, 1);
        if (kind == 2) {
            /* A stream goes on: this message's answer says why it was refused. */
            ep_buf_t b = EP_BUF_INIT;
            char st[320];
            snprintf(st, sizeof(st), "rejected: %s%s%s", pe.field, pe.field[0] ? ": " : "", pe.msg);
            ep_pb_put_bytes(&b, 2, st, strlen(st));
            ep_grpc_answer(call, b.data, b.len, -1, NULL);
            ep_buf_close(&b);
            return;
        }
        parse_error(call, &pe);
        return;
    }
    if (!charge_ok(api, call, &who, 1)) {
        ep_event_destroy(ev);
        return;
    }
    submit_one(api, call, kind, ev);
}

static void on_ingest(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    ingest_message(arg, call, msg, len, 1);
}

static void on_ingest_stream(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    if (msg == NULL) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_OK, NULL); /* the client's stream ended */
        return;
    }
    ingest_message(arg, call, msg, len, 2);
}

/* ------------------------------------------------------------ batches */

typedef struct batch_s {
    ep_grpc_api_t *api;
    ep_grpc_call_t *call;
    size_t n, nsub;
    uint8_t *invalid;  /* per event: 1 when it failed validation */
    uint32_t *err_off; /* per event: its "field\0msg\0" in errs */
    uint32_t *sub_of;  /* submitted slot -> event index */
    int *status;       /* per submitted event */
    ep_str_t *ids;     /* per submitted event */
    char *idbuf;       /* ID_CAP per submitted event */
    ep_buf_t errs;
} batch_t;

static size_t varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint_at(uint8_t *w, uint64_t v)
{
    while (v >= 0x80) {
        *w++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *w++ = (uint8_t)v;
    return w;
}

static void on_batch_done(void *arg)
{
    batch_t *bt = arg;
    ep_buf_t out = EP_BUF_INIT;
    size_t accepted = 0, dups = 0, failed = 0, rejected = 0, sub = 0;
    int first_err = 0;
    ep_buf_t res = EP_BUF_INIT;

    ep_buf_reserve(&res, bt->n * 48);
    for (size_t i = 0; i < bt->n; i++) {
        size_t at;
        uint8_t *w;
        if (!bt->invalid[i] && (bt->status[sub] == 0 || bt->status[sub] == EP_EEXIST)) {
            /* The common case, its size known up front: no move of the bytes. */
            const ep_str_t *id = &bt->ids[sub];
            int dup = bt->status[sub] == EP_EEXIST;
            size_t inner = (i ? 1 + varint_len(i) : 0) + (id->len ? 1 + varint_len(id->len) : 0) +
                           id->len + (dup ? 2 : 0);
            /* Written in place (a few bytes per event, no call per field). */
            ep_buf_reserve(&res, inner + 12);
            w = (uint8_t *)res.data + res.len;
            *w++ = (5 << 3) | EP_PB_LEN;
            w = put_varint_at(w, inner);
            if (i) {
                *w++ = (1 << 3) | EP_PB_VARINT;
                w = put_varint_at(w, i);
            }
            if (id->len) {
                *w++ = (2 << 3) | EP_PB_LEN;
                w = put_varint_at(w, id->len);
                memcpy(w, id->p, id->len);
                w += id->len;
            }
            if (dup) {
                *w++ = (3 << 3) | EP_PB_VARINT;
                *w++ = 1;
            }
            res.len = (size_t)((char *)w - res.data);
            res.data[res.len] = '\0';
            accepted += !dup;
            dups += dup;
            sub++;
            continue;
        }
        at = ep_pb_open(&res, 5);
        ep_pb_put_uint(&res, 1, i);
        if (bt->invalid[i]) {
            const char *field = bt->errs.data + bt->err_off[i];
            const char *msg = field + strlen(field) + 1;
            rejected++;
            ep_pb_put_uint(&res, 4, EP_GRPC_INVALID_ARGUMENT);
            ep_pb_put_bytes(&res, 5, msg, strlen(msg));
            ep_pb_put_bytes(&res, 6, field, strlen(field));
        } else {
            int st = bt->status[sub];
            const ep_str_t *id = &bt->ids[sub];
            sub++;
            ep_pb_put_bytes(&res, 2, id->p, id->len);
            if (st == 0) {
                accepted++;
            } else if (st == EP_EEXIST) {
                dups++;
                ep_pb_put_uint(&res, 3, 1);
            } else {
                char msg[256];
                failed++;
                first_err = first_err ? first_err : st;
                error_text(bt->api, st, msg, sizeof(msg));
                ep_pb_put_uint(&res, 4, (uint64_t)code_of(st));
                ep_pb_put_bytes(&res, 5, msg, strlen(msg));
                ep_pb_put_uint(&res, 7, (uint64_t)ep__publish_maybe_kept(st));
            }
        }
        ep_pb_close(&res, at);
    }
    if (accepted + dups > 0) {
        /* Something was kept: OK, and the results say exactly what. */
        ep_pb_put_uint(&out, 1, accepted);
        ep_pb_put_uint(&out, 2, rejected);
        ep_pb_put_uint(&out, 3, dups);
        ep_pb_put_uint(&out, 4, failed);
        if (res.len) {
            ep_buf_append(&out, res.data, res.len);
        }
        ep_grpc_answer(bt->call, out.data ? out.data : "", out.len, EP_GRPC_OK, NULL);
    } else if (failed > 0) {
        char msg[300];
        error_text(bt->api, first_err, msg, sizeof(msg));
        ep_grpc_answer(bt->call, NULL, 0, code_of(first_err), msg);
    } else {
        /* Nothing valid: the first event's problem, like the REST 400. */
        const char *field = bt->errs.data + bt->err_off[0];
        char msg[320];
        snprintf(msg, sizeof(msg), "%s: %s (%zu of %zu events invalid)", field,
                 field + strlen(field) + 1, rejected, bt->n);
        ep_grpc_answer(bt->call, NULL, 0, EP_GRPC_INVALID_ARGUMENT, msg);
    }
    ep_buf_close(&res);
    ep_buf_close(&out);
    ep_buf_close(&bt->errs);
    ep_free(bt);
}

/* ProducerService.SendBatchEvents: SendBatchEventsRequest { repeated Event events = 1; } */
static void on_send_batch(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    ep_grpc_api_t *api = p->api;
    size_t max = (size_t)api->app->cfg.batch_max_events, n = 0, nsub = 0, sz;
    ep_access_who_t who;
    ep_pb_reader_t r;
    ep_pb_field_t f;
    int more;
    batch_t *bt;
    ep_event_t **evs;
    int64_t now_us = ep_time_now_us();
    char *mem;

    if (!ep__grpc_access_ok(api, call, EP_ACCESS_INGEST, &who)) {
        return;
    }
    ep_pb_reader_init(&r, msg, len);
    while ((more = ep_pb_next(&r, &f)) == 1) {
        n += f.num == 1;
        if (n > max) {
            char m[96];
            snprintf(m, sizeof(m), "more than %zu events in one batch (BATCH_MAX_EVENTS)", max);
            ep_grpc_answer(call, NULL, 0, EP_GRPC_RESOURCE_EXHAUSTED, m);
            return;
        }
    }
    if (more < 0) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_INVALID_ARGUMENT,
                       "not a SendBatchEventsRequest message");
        return;
    }
    if (n == 0) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_INVALID_ARGUMENT, "events: empty batch");
        return;
    }
    /* One block: the batch, its per-event arrays and the ids. */
    sz = sizeof(*bt) +
         n * (1 + sizeof(uint32_t) * 2 + sizeof(int) + sizeof(ep_str_t) + sizeof(ep_event_t *) +
              ID_CAP) +
         64;
    mem = ep_malloc(sz);
    bt = (batch_t *)mem;
    memset(bt, 0, sizeof(*bt));
    mem += sizeof(*bt);
    bt->ids = (ep_str_t *)mem;
    mem += n * sizeof(ep_str_t);
    evs = (ep_event_t **)mem;
    mem += n * sizeof(ep_event_t *);
    bt->status = (int *)mem;
    mem += n * sizeof(int);
    bt->err_off = (uint32_t *)mem;
    mem += n * sizeof(uint32_t);
    bt->sub_of = (uint32_t *)mem;
    mem += n * sizeof(uint32_t);
    bt->invalid = (uint8_t *)mem;
    mem += n;
    bt->idbuf = mem;
    bt->api = api;
    bt->call = call;
    bt->n = n;
    ep_buf_init(&bt->errs);
    ep_pb_reader_init(&r, msg, len);
    for (size_t i = 0; ep_pb_next(&r, &f) == 1;) {
        char prefix[32];
        ep_parse_err_t pe;
        ep_event_t *ev;
        if (f.num != 1) {
            continue;
        }
        bt->invalid[i] = 0;
        if (f.wt != EP_PB_LEN ||
            ep_grpc_decode_event(f.p, f.len, NULL, "", now_us, &ev, &pe) != 0) {
            /* The field is named from the batch: "events[3].source" (no printf per event). */
            char field[sizeof(pe.field)];
            snprintf(field, sizeof(field), "%s", f.wt != EP_PB_LEN ? "" : pe.field);
            snprintf(prefix, sizeof(prefix), "events[%zu]%s", i, field[0] ? "." : "");
            snprintf(pe.field, sizeof(pe.field), "%.30s%.64s", prefix, field);
            if (f.wt != EP_PB_LEN) {
                snprintf(pe.msg, sizeof(pe.msg), "wrong wire type");
            }
            bt->invalid[i] = 1;
            bt->err_off[i] = (uint32_t)bt->errs.len;
            ep_buf_append(&bt->errs, pe.field, strlen(pe.field) + 1);
            ep_buf_append(&bt->errs, pe.msg, strlen(pe.msg) + 1);
        } else {
            char *id = bt->idbuf + nsub * ID_CAP;
            size_t il = ev->id.len < ID_CAP - 1 ? ev->id.len : ID_CAP - 1;
            memcpy(id, ev->id.p, il);
            id[il] = '\0';
            bt->ids[nsub].p = id;
            bt->ids[nsub].len = (uint32_t)il;
            bt->sub_of[nsub] = (uint32_t)i;
            evs[nsub++] = ev;
        }
        i++;
    }
    bt->nsub = nsub;
    inc_rejected(api, n - nsub);
    atomic_fetch_add_explicit(&api->app->ingest.batches, 1, memory_order_relaxed);
    if (nsub && !charge_ok(api, call, &who, nsub)) {
        for (size_t i = 0; i < nsub; i++) {
            ep_event_destroy(evs[i]);
        }
        ep_buf_close(&bt->errs);
        ep_free(bt);
        return;
    }
    if (nsub == 0) {
        on_batch_done(bt);
        return;
    }
    ep__ingest_submit(&api->app->ingest, evs, bt->ids, bt->status, nsub,
                      ep_grpc_call_start_ns(call), on_batch_done, bt);
}

/* ------------------------------------------------------------ metrics */

static void observe(void *arg, int method, int code, int64_t start_ns)
{
    port_t *p = arg;
    ep_metric_child_t *c;

    if (p->api->handled == NULL || method < 0 || method >= MAX_METHODS || code < 0 ||
        code >= EP_GRPC_CODES) {
        return;
    }
    c = atomic_load_explicit(&p->handled[method][code], memory_order_acquire);
    if (c == NULL) {
        /* Once per (method, code): the registry's lock, then the cell is kept. */
        const char *lv[3] = {p->svc[method], p->meth[method], ep_grpc_code_name(code)};
        c = ep_metrics_child(p->api->handled, lv);
        atomic_store_explicit(&p->handled[method][code], c, memory_order_release);
    }
    ep_metrics_counter_add(c, 1);
    ep_metrics_hist_observe(p->seconds[method], (uint64_t)(ep_time_mono_ns() - start_ns));
}

/* ------------------------------------------------------------ wiring */

static int add(port_t *p, const char *path, int kind, ep_grpc_handler_cb cb)
{
    int i = ep_grpc_server_method(p->srv, path, kind, cb, p);
    const char *s = path + 1, *slash = strchr(s, '/');

    snprintf(p->svc[i], sizeof(p->svc[i]), "%.*s", (int)(slash - s), s);
    snprintf(p->meth[i], sizeof(p->meth[i]), "%s", slash + 1);
    if (p->api->seconds) {
        const char *lv[2] = {p->svc[i], p->meth[i]};
        p->seconds[i] = ep_metrics_child(p->api->seconds, lv);
    }
    return i;
}

/* ServerReflectionInfo: one answer per request, from the embedded descriptor set. */
static void on_reflection(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len)
{
    port_t *p = arg;
    const char *list[8];
    int n = 0;
    ep_buf_t b = EP_BUF_INIT;

    if (msg == NULL) {
        ep_grpc_answer(call, NULL, 0, EP_GRPC_OK, NULL);
        return;
    }
    for (int i = 0; i < p->nservices; i++) {
        list[n++] = p->services[i];
    }
    list[n++] = "grpc.health.v1.Health";
    list[n++] = "grpc.reflection.v1alpha.ServerReflection";
    ep_grpc_reflect_answer(ep_grpc_descriptors, ep_grpc_descriptors_len, msg, len, list, n, &b);
    ep_grpc_answer(call, b.data ? b.data : "", b.len, -1, NULL);
    ep_buf_close(&b);
}

int ep__grpc_create(ep_app_t *app, char *err, size_t errlen)
{
    const ep_config_t *cfg = &app->cfg;
    ep_grpc_api_t *api;
    const struct {
        unsigned role;
        int port;
    } want[N_SRV] = {{EP_ROLE_INGEST, cfg->grpc_producer_port},
                     {EP_ROLE_PROCESSOR, cfg->grpc_consumer_port},
                     {EP_ROLE_ANALYTICS, cfg->grpc_analytics_port}};

    (void)err;
    (void)errlen;
    api = ep_calloc(1, sizeof(*api));
    api->app = app;
    app->grpc = (struct ep_grpc_api_s *)api;
    if (app->obs) {
        static const char *const l3[] = {"grpc_service", "grpc_method", "grpc_code"};
        static const double b[] = EP_METRICS_SECONDS_BUCKETS;
        ep_metrics_t *m = ep_obs_registry(app->obs);
        api->handled =
            ep_metrics_counter(m, "grpc_server_handled_total",
                               "gRPC calls completed on the server, by status code.", 3, l3);
        api->seconds =
            ep_metrics_histogram(m, "grpc_server_handling_seconds",
                                 "Time from a gRPC call's headers to its status, in seconds.", 2,
                                 l3, b, (int)(sizeof(b) / sizeof(b[0])), 1e-9);
    }
    for (int i = 0; i < N_SRV; i++) {
        port_t *p = &api->ports[i];
        ep_grpc_server_opts_t o;
        p->api = api;
        p->idx = i;
        if (!(app->roles & want[i].role) || want[i].port <= 0) {
            continue;
        }
        memset(&o, 0, sizeof(o));
        o.name = ep__grpc_srv_names[i];
        o.bind_addr = cfg->bind_addr;
        o.port = want[i].port;
        o.threads = 1;
        o.max_message = (size_t)cfg->grpc_max_message;
        o.keepalive_ms = (int)cfg->grpc_keepalive_ms;
        o.keepalive_timeout_ms = (int)cfg->grpc_keepalive_timeout_ms;
        o.tls = app->tls;
        ep_grpc_server_create(&o, &p->srv);
        ep_grpc_server_set_observer(p->srv, observe, p);
        switch (i) {
        case SRV_PRODUCER:
            p->services[p->nservices++] = "eventpipe.v1.ProducerService";
            p->services[p->nservices++] = "eventpipe.v1.IngestService";
            add(p, "/eventpipe.v1.ProducerService/SendEvent", EP_GRPC_UNARY, on_send_event);
            add(p, "/eventpipe.v1.ProducerService/SendBatchEvents", EP_GRPC_UNARY, on_send_batch);
            add(p, "/eventpipe.v1.ProducerService/GetProducerHealth", EP_GRPC_UNARY,
                ep__grpc_on_producer_health);
            add(p, "/eventpipe.v1.IngestService/Ingest", EP_GRPC_UNARY, on_ingest);
            add(p, "/eventpipe.v1.IngestService/IngestStream", EP_GRPC_STREAM, on_ingest_stream);
            break;
        case SRV_CONSUMER:
            p->services[p->nservices++] = "eventpipe.v1.ConsumerService";
            add(p, "/eventpipe.v1.ConsumerService/GetConsumerHealth", EP_GRPC_UNARY,
                ep__grpc_on_consumer_health);
            add(p, "/eventpipe.v1.ConsumerService/GetConsumerStats", EP_GRPC_UNARY,
                ep__grpc_on_consumer_stats);
            break;
        default:
            p->services[p->nservices++] = "eventpipe.v1.AnalyticsService";
            add(p, "/eventpipe.v1.AnalyticsService/GetAnalyticsSummary", EP_GRPC_UNARY,
                ep__grpc_on_summary);
            add(p, "/eventpipe.v1.AnalyticsService/GetMetrics", EP_GRPC_UNARY, ep__grpc_on_metrics);
            add(p, "/eventpipe.v1.AnalyticsService/GetAnalyticsHealth", EP_GRPC_UNARY,
                ep__grpc_on_analytics_health);
            break;
        }
        add(p, "/grpc.health.v1.Health/Check", EP_GRPC_UNARY, ep__grpc_on_health_check);
        add(p, "/grpc.health.v1.Health/Watch", EP_GRPC_WATCH, ep__grpc_on_health_watch);
        add(p, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", EP_GRPC_STREAM,
            on_reflection);
        add(p, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", EP_GRPC_STREAM,
            on_reflection);
    }
    return 0;
}

int ep__grpc_start(ep_app_t *app, char *err, size_t errlen)
{
    ep_grpc_api_t *api = api_of(app);
    int rc;

    for (int i = 0; api && i < N_SRV; i++) {
        if (api->ports[i].srv && (rc = ep_grpc_server_start(api->ports[i].srv, err, errlen)) != 0) {
            return rc;
        }
    }
    return 0;
}

void ep__grpc_quiesce(ep_app_t *app)
{
    ep_grpc_api_t *api = api_of(app);

    if (api == NULL) {
        return;
    }
    atomic_store(&api->quiesced, 1);
    for (int i = 0; i < N_SRV; i++) {
        ep_grpc_server_quiesce(api->ports[i].srv);
    }
}

int64_t ep__grpc_busy(ep_app_t *app)
{
    ep_grpc_api_t *api = api_of(app);
    int64_t n = 0;

    for (int i = 0; api && i < N_SRV; i++) {
        n += ep_grpc_server_busy(api->ports[i].srv);
    }
    return n;
}

void ep__grpc_describe(ep_app_t *app, char *out, size_t len)
{
    ep_grpc_api_t *api = api_of(app);
    size_t o = 0;

    out[0] = '\0';
    for (int i = 0; api && i < N_SRV; i++) {
        if (api->ports[i].srv && o < len) {
            int w = snprintf(out + o, len - o, "%s%s :%d", o ? " " : "", ep__grpc_srv_names[i],
                             ep_grpc_server_port(api->ports[i].srv));
            o += w > 0 ? (size_t)w : 0;
        }
    }
}

void ep__grpc_destroy(ep_app_t *app)
{
    ep_grpc_api_t *api = api_of(app);

    if (api == NULL) {
        return;
    }
    for (int i = 0; i < N_SRV; i++) {
        ep_grpc_server_destroy(api->ports[i].srv);
    }
    ep_free(api);
    app->grpc = NULL;
}
