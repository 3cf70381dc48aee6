/*
 * The ingest role: validates events and hands them to the queue.
 *
 *   POST /ingest, /events                   one event; 202 once the queue acknowledged it
 *   POST /events/async                      one event; 202 once it is handed to the queue
 *   POST /events/batch                      a JSON array or NDJSON (gzip allowed); per-event
 * results POST /api/v1/events/{user,order,payment} seed 003 typed events GET  /stats,
 * /api/v1/events/stats       counters
 *
 * Client-given ids are idempotent within DEDUP_WINDOW: a repeat is acknowledged
 * again (with "duplicate":true) and not enqueued twice.
 */
#include "roles/ep_access.h"
#include "roles/ep_app.h"
#include "guard/ep_breaker.h"
#include "event/ep_dedup.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "event/ep_id.h"
#include "base/ep_mem.h"
#include "obs/ep_obs.h"
#include "base/ep_str.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#define PUBLISH_CHUNK 256            /* events per publish call of a batch */
#define ID_HEADER     "X-Message-Id" /* id (UUID) assigned by the gateway before its hop */

/* ------------------------------------------------------------ shared bits */

typedef enum { MODE_SYNC, MODE_ASYNC } mode_t_;

typedef struct route_s {
    ep_ingest_t *ig;
    mode_t_ mode;
    ep_event_parse_opts_t opts; /* typed routes: default source, forced type */
    int typed_index;            /* -1, or 0..2 for user/order/payment */
} route_t;

static const char *const typed_names[3] = {"user", "order", "payment"};
static const char *const typed_types[3] = {"user_created", "order_created", "payment_created"};

static pthread_key_t parser_key;
static pthread_once_t parser_once = PTHREAD_ONCE_INIT;

static void parser_free(void *p)
{
    ep_event_parser_destroy(p);
}

static void parser_key_init(void)
{
    pthread_key_create(&parser_key, parser_free);
}

/* One parser per server thread, reused for every request. */
static ep_event_parser_t *thread_parser(const ep_config_t *cfg)
{
    ep_event_parser_t *p;

    pthread_once(&parser_once, parser_key_init);
    p = pthread_getspecific(parser_key);
    if (p == NULL) {
        ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
        lim.max_meta_keys = (uint32_t)cfg->max_meta_keys;
        lim.max_data_len = (uint32_t)cfg->max_data_len;
        p = ep_event_parser_create(&lim);
        pthread_setspecific(parser_key, p);
    }
    return p;
}

static int64_t now_s(void)
{
    return ep_time_mono_ms() / 1000;
}

static void inc(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/*
 * A queue refuses an event with EP_EFULL, EP_ECLOSED, EP_EINVAL/EP_EVALIDATE,
 * EP_E2BIG or EP_ECONFIG (the processor refused ingest's INTERNAL_TOKEN) before
 * keeping any of it. Any other failure (a timeout, a downstream
 * that stopped answering after it got the event, a fail-fast composite where
 * one provider had already stored it) leaves open whether it was kept.
 */
int ep__publish_maybe_kept(int err)
{
    return err != 0 && err != EP_EFULL && err != EP_ECLOSED && err != EP_EINVAL &&
           err != EP_EVALIDATE && err != EP_E2BIG && err != EP_ECIRCUIT && err != EP_ECONFIG;
}

/*
 * Publishes through the hop's circuit breaker, when there is one: EP_ECIRCUIT
 * (nothing taken, nothing sent) while it is open. The callback must report the
 * outcome with report_published(); a synchronous failure is reported here.
 */
static int publish(ep_ingest_t *ig, ep_breaker_pass_t *pass, ep_event_t **evs, size_t n,
                   ep_publish_cb cb, void *arg)
{
    int rc;

    if (ig->breaker == NULL) {
        return ep_queue_publish(ig->queue, evs, n, cb, arg);
    }
    /* The pass is written before the publish: the callback may run before it returns. */
    if ((rc = ep_breaker_allow(ig->breaker, pass)) != 0) {
        return rc;
    }
    rc = ep_queue_publish(ig->queue, evs, n, cb, arg);
    if (rc != 0) {
        ep_breaker_record_status(ig->breaker, pass, 1, &rc);
    }
    return rc;
}

static void report_published(ep_ingest_t *ig, const ep_breaker_pass_t *pass, size_t n,
                             const int *status)
{
    if (ig->breaker) {
        ep_breaker_record_status(ig->breaker, pass, n, status);
    }
}

/* Retry-After for a failed publish: the breaker's cool-down left while it is open. */
static int retry_after_of(ep_ingest_t *ig, int err)
{
    return err == EP_ECIRCUIT && ig->breaker ? ep_breaker_retry_after_s(ig->breaker)
                                             : ig->app->cfg.retry_after_s;
}

/* A 503 for a failed publish: what, the event's id, whether it may be kept, Retry-After. */
static void respond_503(ep_http_req_t *req, const char *msg, int err, const char *id, size_t len,
                        int retry_after_s)
{
    ep_buf_t b = EP_BUF_INIT;
    char v[16];

    /* A 503 says whether the event may be kept anyway, and under which id to retry it. */
    ep_buf_puts(&b, "{\"error\":");
    ep_buf_put_json_str(&b, msg, strlen(msg));
    if (id) {
        ep_buf_puts(&b, ",\"messageId\":");
        ep_buf_put_json_str(&b, id, len);
    }
    ep_buf_puts(&b, ep__publish_maybe_kept(err) ? ",\"maybe_kept\":true}\n"
                                                : ",\"maybe_kept\":false}\n");
    snprintf(v, sizeof(v), "%d", retry_after_s);
    ep_http_req_add_header(req, "Retry-After", v);
    ep_http_respond_buf(req, 503, &b);
}

void ep__respond_publish_error_id(ep_http_req_t *req, int err, const char *id, size_t len,
                                  int retry_after_s)
{
    char msg[160];

    switch (err) {
    case EP_EINVAL:
    case EP_EVALIDATE:
        ep_http_respond_error(req, 400, "the queue rejected the event as invalid", NULL);
        return;
    case EP_E2BIG:
        ep_http_respond_error(req, 413, "the event is larger than the queue accepts", NULL);
        return;
    case EP_EFULL:
        snprintf(msg, sizeof(msg), "queue is full, retry later");
        break;
    case EP_ECLOSED:
        snprintf(msg, sizeof(msg), "shutting down, retry on another instance");
        break;
    case EP_ECIRCUIT:
        snprintf(msg, sizeof(msg), "circuit breaker open for the next hop; retry later");
        break;
    default:
        snprintf(msg, sizeof(msg), "queue unavailable: %s", ep_strerror(err));
        break;
    }
    respond_503(req, msg, err, id, len, retry_after_s);
}

/* Answers a failed publish; while the hop's breaker is open, with its message and cool-down. */
static void respond_failed(ep_ingest_t *ig, ep_http_req_t *req, int err, const char *id, size_t len)
{
    if (err == EP_ECIRCUIT && ig->breaker) {
        respond_503(req, ep_breaker_message(ig->breaker), err, id, len, retry_after_of(ig, err));
    } else {
        ep__respond_publish_error_id(req, err, id, len, ig->app->cfg.retry_after_s);
    }
}

void ep__respond_publish_error(ep_http_req_t *req, int err)
{
    char msg[160];

    switch (err) {
    case EP_EFULL:
        ep_http_respond_error(req, 503, "queue is full, retry later", NULL);
        break;
    case EP_ECLOSED:
        ep_http_respond_error(req, 503, "shutting down, retry on another instance", NULL);
        break;
    case EP_EINVAL:
    case EP_EVALIDATE:
        ep_http_respond_error(req, 400, "the queue rejected the event as invalid", NULL);
        break;
    case EP_E2BIG:
        ep_http_respond_error(req, 413, "the event is larger than the queue accepts", NULL);
        break;
    default:
        snprintf(msg, sizeof(msg), "queue unavailable: %s", ep_strerror(err));
        ep_http_respond_error(req, 503, msg, NULL);
        break;
    }
}

static const char *publish_error_text(ep_ingest_t *ig, int err)
{
    switch (err) {
    case EP_ECIRCUIT:
        return ig->breaker ? ep_breaker_message(ig->breaker) : "circuit breaker open, retry later";
    case EP_EFULL:
        return "queue is full, retry later";
    case EP_ECLOSED:
        return "shutting down, retry later";
    case EP_EINVAL:
    case EP_EVALIDATE:
        return "the queue rejected the event as invalid";
    case EP_EAGAIN:
        return "an event with this id is still being stored; retry";
    default:
        return "queue unavailable, retry later";
    }
}

/*
 * The gateway's X-Message-Id, when sent: 1 with *id set (NULL when absent), or
 * 0 after answering 400 (not a UUID).
 */
static int id_header(ep_http_req_t *req, const char **id)
{
    const char *h = ep_http_req_header(req, ID_HEADER);

    *id = NULL;
    if (h == NULL || *h == '\0') {
        return 1;
    }
    if (!ep_id_is_assigned_base(h, strlen(h))) {
        ep_http_respond_error(req, 400, "must be a UUID of version 8 ending in 000000", ID_HEADER);
        return 0;
    }
    *id = h;
    return 1;
}

/* JSON, NDJSON, text and curl's default form type are read as JSON; others are refused. */
static int content_type_ok(ep_http_req_t *req)
{
    const char *ct = ep_http_req_header(req, "Content-Type");

    if (ct == NULL || *ct == '\0') {
        return 1;
    }
    return strncasecmp(ct, EP_STRLIT("application/json")) == 0 || strcasestr(ct, "+json") != NULL ||
           strncasecmp(ct, EP_STRLIT("application/x-ndjson")) == 0 ||
           strncasecmp(ct, EP_STRLIT("application/ndjson")) == 0 ||
           strncasecmp(ct, EP_STRLIT("text/plain")) == 0 ||
           strncasecmp(ct, EP_STRLIT("application/x-www-form-urlencoded")) == 0;
}

static int has_client_id(const ep_event_t *ev)
{
    return (ev->flags & EP_EVENT_F_ID_GENERATED) == 0;
}

/* The window key of a request's numbered ids: its base and a '*' (no event id is that). */
#define RANGE_KEY_LEN (EP_UUID_STR_LEN + 1)

static void range_key(const char *id, char *key)
{
    ep_id_base_of(id, key);
    key[EP_UUID_STR_LEN] = '*';
    key[RANGE_KEY_LEN] = '\0';
}

/*
 * Reserves an event id in the window. numbered: the id is this request's own
 * numbering (X-Message-Id). Else an id the gateway assigned once (UUID v8, see
 * ep_id_assigned_base) is also a repeat when the request that numbered it was
 * kept whole: such a request is remembered once, under its range key.
 */
static ep_dedup_result_t reserve_id(ep_dedup_t *d, const char *id, size_t len, int numbered,
                                    int64_t now)
{
    if (!numbered && ep_id_is_assigned(id, len)) {
        char key[RANGE_KEY_LEN + 1];
        ep_dedup_result_t r;

        range_key(id, key);
        r = ep_dedup_reserve(d, key, RANGE_KEY_LEN, now);
        if (r != EP_DEDUP_NEW) {
            return r;
        }
        ep_dedup_release(d, key, RANGE_KEY_LEN);
    }
    return ep_dedup_reserve(d, id, len, now);
}

static void put_accepted(ep_buf_t *b, const char *id, size_t len, const char *status, int dup)
{
    ep_buf_puts(b, "{\"messageId\":");
    ep_buf_put_json_str(b, id, len);
    ep_buf_puts(b, ",\"status\":\"");
    ep_buf_puts(b, status);
    ep_buf_puts(b, dup ? "\",\"duplicate\":true}" : "\"}");
}

/* ------------------------------------------------------------ one event */

typedef struct single_s {
    ep_ingest_t *ig;
    ep_http_req_t *req; /* NULL once answered (async mode) */
    int dedup;          /* the id was reserved in the window */
    int typed_index;
    int64_t start_ns;
    ep_breaker_pass_t pass; /* from the hop's circuit breaker */
    size_t id_len;
    char id[132];
} single_t;

static void on_single_published(void *arg, size_t n, const int *status)
{
    single_t *p = arg;
    ep_ingest_t *ig = p->ig;
    ep_buf_t b = EP_BUF_INIT;

    ep_obs_publish_done(ig->app->obs, n, status, p->start_ns);
    report_published(ig, &p->pass, n, status);
    if (status[0] == 0) {
        inc(&ig->sent, 1);
        inc(&ig->publish_us_sum, (uint64_t)((ep_time_mono_ns() - p->start_ns) / 1000));
        inc(&ig->publish_count, 1);
        if (p->typed_index >= 0) {
            inc(&ig->typed[p->typed_index], 1);
        }
        if (p->dedup) {
            ep_dedup_commit(ig->dedup, p->id, p->id_len, now_s());
        }
        if (p->req) {
            put_accepted(&b, p->id, p->id_len, "accepted", 0);
            ep_buf_putc(&b, '\n');
            ep_http_respond_buf(p->req, 202, &b);
        }
    } else {
        inc(&ig->failed, 1);
        if (p->dedup) {
            ep_dedup_release(ig->dedup, p->id, p->id_len);
        }
        if (p->req) {
            respond_failed(ig, p->req, status[0], p->id, p->id_len);
        }
    }
    ep_free(p);
}

static void on_single(void *arg, ep_http_req_t *req)
{
    route_t *rt = arg;
    ep_ingest_t *ig = rt->ig;
    ep_event_t *ev = NULL;
    ep_parse_err_t perr;
    ep_event_parse_opts_t opts;
    const ep_event_parse_opts_t *o =
        rt->opts.event_type || rt->opts.default_source ? &rt->opts : NULL;
    const char *hid;
    char lid[EP_UUID_STR_LEN + 1];
    single_t *p;
    ep_access_who_t who;
    int rc;

    if (!ep_access_check(ig->app->access, req, EP_ACCESS_INGEST, &who)) {
        return;
    }
    if (!content_type_ok(req)) {
        inc(&ig->rejected, 1);
        ep_http_respond_error(req, 415, "unsupported Content-Type; send application/json",
                              "Content-Type");
        return;
    }
    if (!id_header(req, &hid)) {
        inc(&ig->rejected, 1);
        return;
    }
    if (hid) {
        /* The id the gateway assigned (and would name in a 503) when the body has none. */
        ep_id_uuid_add(hid, 0, lid);
        opts = rt->opts;
        opts.id = lid;
        o = &opts;
    }
    rc = ep_event_parser_parse_opts(thread_parser(&ig->app->cfg), ep_http_req_body(req),
                                    ep_http_req_body_len(req), o, &ev, &perr);
    if (rc != 0) {
        inc(&ig->rejected, 1);
        ep_http_respond_error(req, 400, perr.msg, perr.field);
        return;
    }
    /* Charged once parsed, before anything is kept: a refusal (429) keeps nothing. */
    if (!ep_access_charge(ig->app->access, req, &who, 1)) {
        ep_event_destroy(ev);
        return;
    }
    inc(&ig->received, 1);
    p = ep_malloc(sizeof(*p));
    p->ig = ig;
    p->req = req;
    p->dedup = 0;
    p->typed_index = rt->typed_index;
    p->start_ns = ep_http_req_start_ns(req);
    p->id_len = ev->id.len < sizeof(p->id) - 1 ? ev->id.len : sizeof(p->id) - 1;
    memcpy(p->id, ev->id.p, p->id_len);
    p->id[p->id_len] = '\0';

    if (ig->dedup && has_client_id(ev)) {
        ep_buf_t b = EP_BUF_INIT;
        int numbered = hid && p->id_len == EP_UUID_STR_LEN && memcmp(p->id, lid, p->id_len) == 0;
        switch (reserve_id(ig->dedup, p->id, p->id_len, numbered, now_s())) {
        case EP_DEDUP_DONE:
            inc(&ig->duplicates, 1);
            put_accepted(&b, p->id, p->id_len, "accepted", 1);
            ep_buf_putc(&b, '\n');
            ep_http_respond_buf(req, 202, &b);
            ep_event_destroy(ev);
            ep_free(p);
            return;
        case EP_DEDUP_PENDING:
            ep_http_respond_error(req, 409, "an event with this id is still being stored; retry",
                                  "id");
            ep_event_destroy(ev);
            ep_free(p);
            return;
        case EP_DEDUP_NEW:
            p->dedup = 1;
            break;
        }
    }
    if (rt->mode == MODE_ASYNC) {
        /* Answer once buffered: the callback only counts. */
        ep_buf_t b = EP_BUF_INIT;
        char id[132];
        size_t id_len = p->id_len;

        memcpy(id, p->id, id_len + 1);
        p->req = NULL;
        rc = publish(ig, &p->pass, &ev, 1, on_single_published, p);
        if (rc != 0) {
            if (p->dedup) {
                ep_dedup_release(ig->dedup, id, id_len);
            }
            ep_event_destroy(ev);
            ep_free(p);
            inc(&ig->failed, 1);
            respond_failed(ig, req, rc, id, id_len);
            return;
        }
        inc(&ig->async_accepted, 1);
        put_accepted(&b, id, id_len, "buffered", 0);
        ep_buf_putc(&b, '\n');
        ep_http_respond_buf(req, 202, &b);
        return;
    }
    rc = publish(ig, &p->pass, &ev, 1, on_single_published, p);
    if (rc != 0) {
        if (p->dedup) {
            ep_dedup_release(ig->dedup, p->id, p->id_len);
        }
        inc(&ig->failed, 1);
        respond_failed(ig, req, rc, p->id, p->id_len);
        ep_event_destroy(ev);
        ep_free(p);
    }
}

/* ------------------------------------------------------------ batches */

#define ITEM_PENDING  0
#define ITEM_ACCEPTED 1
#define ITEM_DUP      2
#define ITEM_INVALID  3
#define ITEM_FAILED   4

typedef struct item_s {
    uint8_t state;
    uint8_t dedup;   /* id reserved in the window */
    uint8_t derived; /* id numbered from the gateway's X-Message-Id, covered by batch->base */
    uint32_t line;   /* 1-based line (NDJSON) or 0 */
    uint32_t id_off; /* into batch->strs */
    uint32_t id_len;
    uint32_t err_off; /* message, then field, NUL-separated */
    int err;          /* publish error */
} item_t;

typedef struct batch_s {
    ep_ingest_t *ig;
    ep_http_req_t *req;
    int64_t start_ns;
    size_t n;
    item_t *items;
    ep_buf_t strs;
    atomic_int pending;           /* publish callbacks outstanding, +1 while publishing */
    int base_reserved;            /* base holds the window's one entry for every derived item */
    char base[RANGE_KEY_LEN + 1]; /* range key of the gateway's X-Message-Id */
} batch_t;

typedef struct chunk_s {
    batch_t *b;
    size_t n;
    ep_breaker_pass_t pass;         /* from the hop's circuit breaker */
    uint32_t idx[PUBLISH_CHUNK];    /* item index of each published event */
    ep_event_t *evs[PUBLISH_CHUNK]; /* the events; the queue takes them */
} chunk_t;

static uint32_t keep_str(batch_t *b, const char *s, size_t n)
{
    uint32_t off = (uint32_t)b->strs.len;

    ep_buf_append(&b->strs, s, n);
    ep_buf_putc(&b->strs, '\0');
    return off;
}

static void batch_finish(batch_t *b)
{
    ep_ingest_t *ig = b->ig;
    size_t accepted = 0, dups = 0, invalid = 0, failed = 0, maybe = 0;
    int first_err = 0, all_derived_kept = 1;
    ep_buf_t out = EP_BUF_INIT;
    int status;

    /*
     * The events numbered from the gateway's id are remembered as one entry (the
     * base) when all of them were kept; otherwise each kept one is remembered.
     */
    for (size_t i = 0; b->base_reserved && i < b->n; i++) {
        all_derived_kept &= !b->items[i].derived || b->items[i].state == ITEM_ACCEPTED;
    }
    if (b->base_reserved && all_derived_kept) {
        ep_dedup_commit(ig->dedup, b->base, RANGE_KEY_LEN, now_s());
    } else if (b->base_reserved) {
        ep_dedup_release(ig->dedup, b->base, RANGE_KEY_LEN);
        for (size_t i = 0; i < b->n; i++) {
            item_t *it = &b->items[i];
            if (it->derived && it->state == ITEM_ACCEPTED &&
                ep_dedup_reserve(ig->dedup, b->strs.data + it->id_off, it->id_len, now_s()) ==
                    EP_DEDUP_NEW) {
                ep_dedup_commit(ig->dedup, b->strs.data + it->id_off, it->id_len, now_s());
            }
        }
    }

    for (size_t i = 0; i < b->n; i++) {
        item_t *it = &b->items[i];
        const char *id = b->strs.data + it->id_off;
        switch (it->state) {
        case ITEM_ACCEPTED:
            accepted++;
            if (it->dedup) {
                ep_dedup_commit(ig->dedup, id, it->id_len, now_s());
            }
            break;
        case ITEM_DUP:
            dups++;
            break;
        case ITEM_INVALID:
            invalid++;
            break;
        default:
            failed++;
            maybe += (size_t)ep__publish_maybe_kept(it->err);
            first_err = first_err ? first_err : it->err;
            if (it->dedup) {
                ep_dedup_release(ig->dedup, id, it->id_len);
            }
            break;
        }
    }
    inc(&ig->sent, accepted);
    inc(&ig->failed, failed);
    inc(&ig->duplicates, dups);
    if (accepted) {
        inc(&ig->publish_us_sum,
            (uint64_t)((ep_time_mono_ns() - b->start_ns) / 1000) * (uint64_t)accepted);
        inc(&ig->publish_count, accepted);
    }

    ep_buf_reserve(&out, 64 + b->n * 64);
    ep_buf_printf(&out, "{\"accepted\":%zu,\"rejected\":%zu,\"duplicates\":%zu,\"failed\":%zu,",
                  accepted, invalid, dups, failed);
    if (accepted + dups == 0 && first_err == EP_ECIRCUIT) {
        const char *msg = publish_error_text(ig, first_err);
        ep_buf_puts(&out, "\"error\":");
        ep_buf_put_json_str(&out, msg, strlen(msg));
        ep_buf_putc(&out, ',');
    }
    if (failed) {
        /* Some failed events may be kept anyway: retry those with their "id". */
        ep_buf_puts(&out, maybe ? "\"maybe_kept\":true," : "\"maybe_kept\":false,");
    }
    ep_buf_puts(&out, "\"results\":[");
    for (size_t i = 0; i < b->n; i++) {
        item_t *it = &b->items[i];
        if (i) {
            ep_buf_putc(&out, ',');
        }
        /* Per event: integers by hand, never printf. */
        ep_buf_puts(&out, "{\"index\":");
        ep_buf_put_u64(&out, i);
        ep_buf_putc(&out, ',');
        if (it->line) {
            ep_buf_puts(&out, "\"line\":");
            ep_buf_put_u64(&out, it->line);
            ep_buf_putc(&out, ',');
        }
        if (it->state == ITEM_ACCEPTED || it->state == ITEM_DUP) {
            ep_buf_puts(&out, "\"messageId\":");
            ep_buf_put_json_str(&out, b->strs.data + it->id_off, it->id_len);
            ep_buf_puts(&out, it->state == ITEM_DUP ? ",\"duplicate\":true}" : "}");
        } else if (it->state == ITEM_INVALID) {
            const char *msg = b->strs.data + it->err_off;
            const char *field = msg + strlen(msg) + 1;
            ep_buf_puts(&out, "\"error\":");
            ep_buf_put_json_str(&out, msg, strlen(msg));
            if (*field) {
                ep_buf_puts(&out, ",\"field\":");
                ep_buf_put_json_str(&out, field, strlen(field));
            }
            ep_buf_putc(&out, '}');
        } else {
            const char *msg = publish_error_text(ig, it->err);
            if (it->id_len) {
                ep_buf_puts(&out, "\"id\":");
                ep_buf_put_json_str(&out, b->strs.data + it->id_off, it->id_len);
                ep_buf_putc(&out, ',');
            }
            ep_buf_puts(&out, "\"error\":");
            ep_buf_put_json_str(&out, msg, strlen(msg));
            ep_buf_puts(&out, ep__publish_maybe_kept(it->err)
                                  ? ",\"retry\":true,\"maybe_kept\":true}"
                                  : ",\"retry\":true,\"maybe_kept\":false}");
        }
    }
    ep_buf_puts(&out, "]}\n");

    /*
     * 202 when something was kept (per-event results say exactly what); 503 when
     * nothing could be stored for queue reasons; 400 when nothing was valid.
     */
    if (accepted + dups > 0) {
        status = 202;
    } else if (failed > 0) {
        status = first_err == EP_EINVAL ? 400 : 503;
    } else {
        status = 400;
    }
    if (status == 503) {
        char v[16];
        snprintf(v, sizeof(v), "%d", retry_after_of(ig, first_err));
        ep_http_req_add_header(b->req, "Retry-After", v);
    }
    ep_http_respond_buf(b->req, status, &out);
    ep_buf_close(&b->strs);
    ep_free(b->items);
    ep_free(b);
}

static void batch_release(batch_t *b)
{
    if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel) == 1) {
        batch_finish(b);
    }
}

static void on_chunk_published(void *arg, size_t n, const int *status)
{
    chunk_t *c = arg;
    batch_t *b = c->b;

    ep_obs_publish_done(b->ig->app->obs, n, status, b->start_ns);
    report_published(b->ig, &c->pass, n, status);
    for (size_t i = 0; i < n; i++) {
        item_t *it = &b->items[c->idx[i]];
        if (status[i] == 0) {
            it->state = ITEM_ACCEPTED;
        } else {
            it->state = ITEM_FAILED;
            it->err = status[i];
        }
    }
    ep_free(c);
    batch_release(b);
}

/*
 * Publishes a chunk of a batch. On success the chunk belongs to its callback
 * (which may already have run); on failure its items are marked failed and the
 * error is returned so the rest of the batch is answered without trying.
 */
static int flush_chunk(batch_t *b, chunk_t **cp)
{
    chunk_t *c = *cp;
    size_t cn = c->n;
    int rc;

    *cp = NULL;
    atomic_fetch_add_explicit(&b->pending, 1, memory_order_relaxed);
    rc = publish(b->ig, &c->pass, c->evs, cn, on_chunk_published, c);
    if (rc == 0) {
        return 0;
    }
    atomic_fetch_sub_explicit(&b->pending, 1, memory_order_relaxed);
    for (size_t k = 0; k < cn; k++) {
        item_t *it = &b->items[c->idx[k]];
        it->state = ITEM_FAILED;
        it->err = rc;
        ep_event_destroy(c->evs[k]);
    }
    ep_free(c);
    return rc;
}

/* Inflates a gzip (or zlib) body into out, at most max bytes. Returns 0, EP_E2BIG or EP_EPARSE. */
static int gunzip(const char *in, size_t len, size_t max, ep_buf_t *out)
{
    z_stream z;
    int zr;

    memset(&z, 0, sizeof(z));
    if (inflateInit2(&z, 15 + 32) != Z_OK) {
        return EP_ENOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)len;
    do {
        ep_buf_reserve(out, 64 * 1024);
        z.next_out = (Bytef *)out->data + out->len;
        z.avail_out = (uInt)(out->cap - out->len - 1);
        zr = inflate(&z, Z_NO_FLUSH);
        out->len = (size_t)((char *)z.next_out - out->data);
        out->data[out->len] = '\0';
        if (out->len > max) {
            inflateEnd(&z);
            return EP_E2BIG;
        }
    } while (zr == Z_OK);
    inflateEnd(&z);
    return zr == Z_STREAM_END && z.avail_in == 0 ? 0 : EP_EPARSE;
}

/*
 * Splits a JSON array into its element slices without parsing them (strings and
 * nesting are tracked so commas inside values do not split). Returns 0, or
 * EP_EPARSE with *bad_at set when the array itself is malformed.
 */
typedef struct slice_s {
    const char *p;
    size_t len;
    uint32_t line;
} slice_t;

static int split_array(const char *s, size_t n, slice_t **out, size_t *count, size_t max_items,
                       size_t *bad_at)
{
    size_t i = 0, cap = 64, k = 0, start = 0;
    int depth = 0, in_str = 0, esc = 0, have = 0;
    slice_t *v;

    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) {
        i++;
    }
    if (i >= n || s[i] != '[') {
        *bad_at = i;
        return EP_EPARSE;
    }
    v = ep_malloc(cap * sizeof(*v));
    for (i++; i < n; i++) {
        char c = s[i];
        if (in_str) {
            if (esc) {
                esc = 0;
            } else if (c == '\\') {
                esc = 1;
            } else if (c == '"') {
                in_str = 0;
            }
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            continue;
        }
        if (!have && depth == 0 && c != ',' && c != ']') {
            have = 1;
            start = i;
        }
        if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            depth++;
        } else if ((c == '}' || c == ']') && depth > 0) {
            depth--;
        } else if (depth == 0 && (c == ',' || c == ']')) {
            if (!have) {
                if (c == ']' && k == 0) {
                    break; /* [] */
                }
                *bad_at = i;
                ep_free(v);
                return EP_EPARSE;
            }
            if (k == cap) {
                cap *= 2;
                v = ep_realloc(v, cap * sizeof(*v));
            }
            {
                size_t end = i;
                while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\n' ||
                                       s[end - 1] == '\r' || s[end - 1] == '\t')) {
                    end--;
                }
                v[k].p = s + start;
                v[k].len = end - start;
                v[k].line = 0;
                k++;
            }
            have = 0;
            if (k > max_items) {
                /* Over BATCH_MAX_EVENTS: the caller answers 413 without reading the rest. */
                *out = v;
                *count = k;
                return 0;
            }
            if (c == ']') {
                break;
            }
        }
    }
    if (i >= n) {
        *bad_at = n;
        ep_free(v);
        return EP_EPARSE;
    }
    for (i++; i < n; i++) {
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') {
            *bad_at = i;
            ep_free(v);
            return EP_EPARSE;
        }
    }
    *out = v;
    *count = k;
    return 0;
}

/* Splits NDJSON into non-blank lines (1-based line numbers kept). */
static void split_lines(const char *s, size_t n, slice_t **out, size_t *count, size_t max_items)
{
    size_t cap = 64, k = 0, start = 0;
    uint32_t line = 1;
    slice_t *v = ep_malloc(cap * sizeof(*v));

    while (start <= n && k <= max_items) {
        /* memchr finds the line end a vector at a time. */
        const char *nl = start < n ? memchr(s + start, '\n', n - start) : NULL;
        size_t i = nl ? (size_t)(nl - s) : n;
        size_t a = start, b = i;

        while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) {
            a++;
        }
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) {
            b--;
        }
        if (b > a) {
            if (k == cap) {
                cap *= 2;
                v = ep_realloc(v, cap * sizeof(*v));
            }
            v[k].p = s + a;
            v[k].len = b - a;
            v[k].line = line;
            k++;
        }
        start = i + 1;
        line++;
    }
    *out = v;
    *count = k;
}

static void on_batch(void *arg, ep_http_req_t *req)
{
    route_t *rt = arg;
    ep_ingest_t *ig = rt->ig;
    const ep_config_t *cfg = &ig->app->cfg;
    const char *body = ep_http_req_body(req);
    size_t len = ep_http_req_body_len(req), n = 0, max_items = (size_t)cfg->batch_max_events;
    const char *enc = ep_http_req_header(req, "Content-Encoding");
    ep_event_parser_t *parser = thread_parser(cfg);
    ep_buf_t inflated = EP_BUF_INIT;
    slice_t *sl = NULL;
    batch_t *b;
    chunk_t *chunk = NULL;
    size_t i = 0;
    char msg[160];
    int queue_err = 0;
    /* The events of one request share one receive time (one clock read). */
    ep_event_parse_opts_t batch_opts = {.received_us = ep_time_now_us()};
    const char *hid;
    char lid[EP_UUID_STR_LEN + 1];
    ep_access_who_t who;

    if (!ep_access_check(ig->app->access, req, EP_ACCESS_INGEST, &who)) {
        return;
    }
    if (!content_type_ok(req)) {
        ep_http_respond_error(req, 415,
                              "unsupported Content-Type; send application/json (an array) or "
                              "application/x-ndjson",
                              "Content-Type");
        return;
    }
    if (!id_header(req, &hid)) {
        return;
    }
    if (enc && *enc && strcasecmp(enc, "identity") != 0) {
        int rc;
        if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0) {
            ep_http_respond_error(req, 415, "unsupported Content-Encoding; use gzip",
                                  "Content-Encoding");
            return;
        }
        rc = gunzip(body, len, (size_t)cfg->max_batch_body, &inflated);
        if (rc != 0) {
            ep_buf_close(&inflated);
            if (rc == EP_E2BIG) {
                snprintf(msg, sizeof(msg), "decompressed body is larger than %lld bytes",
                         (long long)cfg->max_batch_body);
                ep_http_respond_error(req, 413, msg, NULL);
            } else {
                ep_http_respond_error(req, 400, "body is not valid gzip", NULL);
            }
            return;
        }
        body = inflated.data ? inflated.data : "";
        len = inflated.len;
    }
    {
        size_t j = 0;
        while (j < len &&
               (body[j] == ' ' || body[j] == '\t' || body[j] == '\r' || body[j] == '\n')) {
            j++;
        }
        if (j == len) {
            ep_buf_close(&inflated);
            ep_http_respond_error(req, 400, "empty batch", NULL);
            return;
        }
        if (body[j] == '[') {
            size_t bad_at = 0;
            if (split_array(body, len, &sl, &n, max_items, &bad_at) != 0) {
                ep_buf_close(&inflated);
                snprintf(msg, sizeof(msg), "malformed JSON array at byte %zu", bad_at);
                ep_http_respond_error(req, 400, msg, NULL);
                return;
            }
        } else {
            split_lines(body, len, &sl, &n, max_items);
        }
    }
    if (n > max_items) {
        ep_free(sl);
        ep_buf_close(&inflated);
        snprintf(msg, sizeof(msg), "more than %zu events in one batch (BATCH_MAX_EVENTS)",
                 max_items);
        ep_http_respond_error(req, 413, msg, NULL);
        return;
    }
    if (n == 0) {
        ep_free(sl);
        ep_buf_close(&inflated);
        ep_http_respond_error(req, 400, "empty batch", NULL);
        return;
    }
    /* A batch of n events costs n, charged before any of them is kept (429: none is). */
    if (!ep_access_charge(ig->app->access, req, &who, n)) {
        ep_free(sl);
        ep_buf_close(&inflated);
        return;
    }

    inc(&ig->batches, 1);
    b = ep_calloc(1, sizeof(*b));
    b->ig = ig;
    b->req = req;
    b->start_ns = ep_http_req_start_ns(req);
    b->n = n;
    b->items = ep_calloc(n, sizeof(item_t));
    ep_buf_init(&b->strs);
    ep_buf_putc(&b->strs, '\0');
    atomic_store(&b->pending, 1);

    for (i = 0; i < n; i++) {
        item_t *it = &b->items[i];
        ep_event_t *ev = NULL;
        ep_parse_err_t perr;
        int rc, numbered;

        it->line = sl[i].line;
        if (hid) {
            /* Event i without an id gets the gateway's id + i (what its 503 would name). */
            ep_id_uuid_add(hid, i, lid);
            batch_opts.id = lid;
        }
        rc = ep_event_parser_parse_opts(parser, sl[i].p, sl[i].len, &batch_opts, &ev, &perr);
        if (rc != 0) {
            it->state = ITEM_INVALID;
            it->err_off = keep_str(b, perr.msg, strlen(perr.msg));
            keep_str(b, perr.field, strlen(perr.field));
            inc(&ig->rejected, 1);
            continue;
        }
        inc(&ig->received, 1);
        it->id_off = keep_str(b, ev->id.p, ev->id.len);
        it->id_len = ev->id.len;
        numbered =
            hid && ev->id.len == EP_UUID_STR_LEN && memcmp(ev->id.p, lid, EP_UUID_STR_LEN) == 0;
        if (ig->dedup && numbered) {
            /* Numbered from the gateway's id: one window entry for the whole request. */
            if (b->base[0] == '\0') {
                range_key(hid, b->base);
                b->base_reserved =
                    ep_dedup_reserve(ig->dedup, b->base, RANGE_KEY_LEN, now_s()) == EP_DEDUP_NEW;
            }
            it->derived = (uint8_t)b->base_reserved;
        }
        if (ig->dedup && has_client_id(ev) && !it->derived) {
            ep_dedup_result_t d = reserve_id(ig->dedup, ev->id.p, ev->id.len, numbered, now_s());
            if (d == EP_DEDUP_DONE) {
                it->state = ITEM_DUP;
                ep_event_destroy(ev);
                continue;
            }
            if (d == EP_DEDUP_PENDING) {
                it->state = ITEM_FAILED;
                it->err = EP_EAGAIN;
                ep_event_destroy(ev);
                continue;
            }
            it->dedup = 1;
        }
        if (queue_err) {
            it->state = ITEM_FAILED;
            it->err = queue_err;
            ep_event_destroy(ev);
            continue;
        }
        if (chunk == NULL) {
            chunk = ep_malloc(sizeof(*chunk));
            chunk->b = b;
            chunk->n = 0;
        }
        chunk->idx[chunk->n] = (uint32_t)i;
        chunk->evs[chunk->n++] = ev;
        if (chunk->n == PUBLISH_CHUNK) {
            queue_err = flush_chunk(b, &chunk);
        }
    }
    if (chunk != NULL) {
        flush_chunk(b, &chunk);
    }
    ep_free(sl);
    ep_buf_close(&inflated);
    batch_release(b);
}

/*
 * Bound of one batch answer: per event two numbers of up to 20 digits, the keys
 * and punctuation of any result shape, and its texts (error message, field, id)
 * with every byte escaped as \u00XX.
 */
size_t ep__ingest_batch_answer_max(const ep_config_t *cfg)
{
    const ep_event_limits_t lim = EP_EVENT_LIMITS_DEFAULT;
    size_t texts = sizeof(((ep_parse_err_t *)0)->msg) + sizeof(((ep_parse_err_t *)0)->field) +
                   lim.max_id_len + 64;
    size_t item = 160 + 6 * texts;

    return 256 + (size_t)cfg->batch_max_events * item;
}

/* The id ingest gives the event in json[0..len) at index i: its own, else base + i. */
static void unknown_id(ep_event_parser_t *parser, const char *json, size_t len, const char *base,
                       size_t i, ep_buf_t *out)
{
    ep_event_t *ev = NULL;
    ep_parse_err_t perr;
    char lid[EP_UUID_STR_LEN + 1];

    if (ep_event_parser_parse(parser, json, len, &ev, &perr) == 0 && has_client_id(ev)) {
        ep_buf_put_json_str(out, ev->id.p, ev->id.len);
    } else {
        ep_id_uuid_add(base, i, lid);
        ep_buf_put_json_str(out, lid, EP_UUID_STR_LEN);
    }
    ep_event_destroy(ev);
}

void ep__ingest_unknown_answer(ep_app_t *app, int batch, const char *body, size_t len,
                               const char *enc, const char *base_id, const char *error, int maybe,
                               ep_buf_t *out)
{
    const ep_config_t *cfg = &app->cfg;
    ep_event_parser_t *parser = thread_parser(cfg);
    ep_buf_t inflated = EP_BUF_INIT;
    slice_t *sl = NULL;
    size_t n = 0, j = 0, bad_at = 0;

    ep_buf_puts(out, "{\"error\":");
    ep_buf_put_json_str(out, error, strlen(error));
    if (!maybe || base_id == NULL) {
        ep_buf_puts(out, ",\"maybe_kept\":false}\n");
        return;
    }
    ep_buf_puts(out, ",\"maybe_kept\":true");
    if (!batch) {
        ep_buf_puts(out, ",\"messageId\":");
        unknown_id(parser, body, len, base_id, 0, out);
        ep_buf_puts(out, "}\n");
        return;
    }
    /* The batch as ingest reads it: each event's id, so that a retry can reuse them. */
    if (enc && *enc && strcasecmp(enc, "identity") != 0) {
        int grc = gunzip(body, len, (size_t)cfg->max_batch_body, &inflated);
        body = inflated.data ? inflated.data : "";
        len = grc == 0 ? inflated.len : 0; /* ingest refused it: nothing listed */
    }
    while (j < len && (body[j] == ' ' || body[j] == '\t' || body[j] == '\r' || body[j] == '\n')) {
        j++;
    }
    if (j < len && body[j] == '[') {
        if (split_array(body, len, &sl, &n, (size_t)cfg->batch_max_events, &bad_at) != 0) {
            sl = NULL;
            n = 0;
        }
    } else if (j < len) {
        split_lines(body, len, &sl, &n, (size_t)cfg->batch_max_events);
    }
    if (n > (size_t)cfg->batch_max_events) {
        n = 0; /* ingest answers 413: nothing kept */
    }
    ep_buf_puts(out, ",\"results\":[");
    for (size_t i = 0; i < n; i++) {
        ep_buf_puts(out, i ? ",{\"index\":" : "{\"index\":");
        ep_buf_put_u64(out, i);
        if (sl[i].line) {
            ep_buf_puts(out, ",\"line\":");
            ep_buf_put_u64(out, sl[i].line);
        }
        ep_buf_puts(out, ",\"id\":");
        unknown_id(parser, sl[i].p, sl[i].len, base_id, i, out);
        ep_buf_putc(out, '}');
    }
    ep_buf_puts(out, "]}\n");
    ep_free(sl);
    ep_buf_close(&inflated);
}

/* ------------------------------------------------------------ stats */

void ep__ingest_stats_json(ep_app_t *app, ep_buf_t *out)
{
    ep_ingest_t *ig = &app->ingest;
    ep_queue_stats_t qs;
    uint64_t pc = atomic_load(&ig->publish_count);
    double uptime = (double)(ep_time_now_ms() - app->started_ms) / 1000.0;

    ep_queue_stats(ig->queue, &qs);
    ep_buf_printf(out,
                  "{\"TotalReceived\":%llu,\"TotalSent\":%llu,\"TotalFailed\":%llu,"
                  "\"TotalRejected\":%llu,\"duplicates\":%llu,\"batches\":%llu,"
                  "\"async_accepted\":%llu,\"avg_publish_latency_ms\":%.3f,"
                  "\"events_per_second\":%.1f,\"queue\":\"%s\",\"pending\":%lld",
                  (unsigned long long)atomic_load(&ig->received),
                  (unsigned long long)atomic_load(&ig->sent),
                  (unsigned long long)atomic_load(&ig->failed),
                  (unsigned long long)atomic_load(&ig->rejected),
                  (unsigned long long)atomic_load(&ig->duplicates),
                  (unsigned long long)atomic_load(&ig->batches),
                  (unsigned long long)atomic_load(&ig->async_accepted),
                  pc ? (double)atomic_load(&ig->publish_us_sum) / (double)pc / 1000.0 : 0.0,
                  uptime > 0 ? (double)atomic_load(&ig->sent) / uptime : 0.0,
                  ig->queue->provider->name, (long long)(qs.size < 0 ? 0 : qs.size));
    if (ig->dedup != NULL) {
        ep_dedup_stats_t ds;
        ep_dedup_stats(ig->dedup, now_s(), &ds);
        ep_buf_printf(out,
                      ",\"dedup\":{\"capacity\":%zu,\"size\":%zu,\"evicted\":%llu,"
                      "\"window_s\":%lld,\"effective_window_s\":%lld}",
                      ds.capacity, ds.size, (unsigned long long)ds.evicted, (long long)ds.window_s,
                      (long long)ds.effective_window_s);
    }
    if (ig->breaker != NULL) {
        ep_buf_puts(out, ",\"circuit_breakers\":{");
        ep_breaker_stats_json(ig->breaker, out);
        ep_buf_putc(out, '}');
    }
    ep_buf_putc(out, '}');
}

static void on_stats(void *arg, ep_http_req_t *req)
{
    ep_app_t *app = arg;
    ep_buf_t b = EP_BUF_INIT;

    ep__ingest_stats_json(app, &b);
    ep_buf_putc(&b, '\n');
    ep_http_respond_buf(req, 200, &b);
}

static void on_events_stats(void *arg, ep_http_req_t *req)
{
    ep_ingest_t *ig = arg;
    ep_buf_t b = EP_BUF_INIT;
    uint64_t total = 0;

    ep_buf_puts(&b, "{\"events_by_type\":{");
    for (int i = 0; i < 3; i++) {
        uint64_t v = atomic_load(&ig->typed[i]);
        total += v;
        ep_buf_printf(&b, "%s\"%s\":%llu", i ? "," : "", typed_types[i], (unsigned long long)v);
    }
    ep_buf_printf(&b,
                  "},\"total_typed\":%llu,\"total_published\":%llu,\"total_failed\":%llu,"
                  "\"total_rejected\":%llu}\n",
                  (unsigned long long)total, (unsigned long long)atomic_load(&ig->sent),
                  (unsigned long long)atomic_load(&ig->failed),
                  (unsigned long long)atomic_load(&ig->rejected));
    ep_http_respond_buf(req, 200, &b);
}

int ep__ingest_ready(ep_app_t *app, char *reason, size_t len)
{
    return ep_queue_ready(app->ingest.queue, reason, len);
}

/* ------------------------------------------------------------ wiring */

/* The route contexts of one ingest (ep_ingest_t.routes), shared by the ports that serve it. */
struct ep_ingest_routes_s {
    route_t sync, async, batch, typed[3];
};

void ep__ingest_routes(ep_app_t *app, ep_http_server_t *srv, int as_gateway)
{
    ep_ingest_t *ig = &app->ingest;
    size_t batch_body = (size_t)app->cfg.max_batch_body;
    struct ep_ingest_routes_s *r;
    char path[64];

    ig->app = app;
    if (ig->dedup == NULL && app->cfg.dedup_window_s > 0) {
        ig->dedup = ep_dedup_create(app->cfg.dedup_window_s, (size_t)app->cfg.dedup_capacity);
        ep_dedup_set_name(ig->dedup, "DEDUP_CAPACITY");
    }
    if (ig->routes == NULL) {
        r = ig->routes = ep_calloc(1, sizeof(*r));
        r->sync = (route_t){.ig = ig, .mode = MODE_SYNC, .typed_index = -1};
        r->async = (route_t){.ig = ig, .mode = MODE_ASYNC, .typed_index = -1};
        r->batch = (route_t){.ig = ig, .mode = MODE_SYNC, .typed_index = -1};
        for (int i = 0; i < 3; i++) {
            r->typed[i] = (route_t){
                .ig = ig,
                .mode = MODE_SYNC,
                .opts = {.default_source = "api", .event_type = typed_types[i], .require_data = 1},
                .typed_index = i};
        }
    }
    r = ig->routes;

    /* The gateway's public paths on ingest too: a client works against either base URL. */
    ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/ingest", on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/api/ingest", on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/events", on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/api/v1/events/async", on_single, &r->async);
    ep_http_server_route_ex(srv, EP_HTTP_POST, "/api/v1/events/batch", on_batch, &r->batch,
                            batch_body);
    if (!as_gateway) {
        ep_access_route(app->access, srv, EP_HTTP_GET, "/stats", EP_ACCESS_READ, on_stats, app, 0);
    }
    ep_http_server_route(srv, EP_HTTP_POST, "/ingest", on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/events", on_single, &r->sync);
    ep_http_server_route(srv, EP_HTTP_POST, "/events/async", on_single, &r->async);
    ep_http_server_route_ex(srv, EP_HTTP_POST, "/events/batch", on_batch, &r->batch, batch_body);
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "/api/v1/events/%s", typed_names[i]);
        ep_http_server_route(srv, EP_HTTP_POST, path, on_single, &r->typed[i]);
    }
    ep_access_route(app->access, srv, EP_HTTP_GET, "/api/v1/events/stats", EP_ACCESS_READ,
                    on_events_stats, ig, 0);
}

void ep__ingest_close(ep_app_t *app)
{
    ep_dedup_destroy(app->ingest.dedup);
    app->ingest.dedup = NULL;
    ep_free(app->ingest.routes);
    app->ingest.routes = NULL;
}

/* ------------------------------------------------------------ without HTTP (gRPC, issue 16) */

typedef struct sub_chunk_s {
    struct submit_s *job;
    ep_breaker_pass_t pass;
    uint32_t first, n; /* into job->pub */
} sub_chunk_t;

typedef struct submit_s {
    ep_ingest_t *ig;
    const ep_str_t *ids;
    int *status;
    size_t n, npub;
    int64_t start_ns;
    ep_ingest_done_cb cb;
    void *arg;
    atomic_int pending;
    uint8_t *dedup;   /* the id was reserved in the window */
    uint32_t *idx;    /* pub slot -> event index */
    ep_event_t **pub; /* the events to publish, in chunks */
    sub_chunk_t chunks[];
} submit_t;

static void submit_finish(submit_t *j)
{
    ep_ingest_t *ig = j->ig;
    size_t kept = 0, failed = 0, dups = 0;

    for (size_t i = 0; i < j->n; i++) {
        int st = j->status[i];
        if (st == 0) {
            kept++;
            if (j->dedup[i]) {
                ep_dedup_commit(ig->dedup, j->ids[i].p, j->ids[i].len, now_s());
            }
        } else if (st == EP_EEXIST) {
            dups++;
        } else {
            failed += st != EP_EAGAIN;
            if (j->dedup[i]) {
                ep_dedup_release(ig->dedup, j->ids[i].p, j->ids[i].len);
            }
        }
    }
    inc(&ig->sent, kept);
    inc(&ig->failed, failed);
    inc(&ig->duplicates, dups);
    if (kept) {
        inc(&ig->publish_us_sum,
            (uint64_t)((ep_time_mono_ns() - j->start_ns) / 1000) * (uint64_t)kept);
        inc(&ig->publish_count, kept);
    }
    j->cb(j->arg);
    ep_free(j);
}

static void submit_release(submit_t *j)
{
    if (atomic_fetch_sub_explicit(&j->pending, 1, memory_order_acq_rel) == 1) {
        submit_finish(j);
    }
}

static void on_submit_published(void *arg, size_t n, const int *status)
{
    sub_chunk_t *c = arg;
    submit_t *j = c->job;

    ep_obs_publish_done(j->ig->app->obs, n, status, j->start_ns);
    report_published(j->ig, &c->pass, n, status);
    for (size_t i = 0; i < n; i++) {
        j->status[j->idx[c->first + i]] = status[i];
    }
    submit_release(j);
}

void ep__ingest_submit(ep_ingest_t *ig, ep_event_t **evs, const ep_str_t *ids, int *status,
                       size_t n, int64_t start_ns, ep_ingest_done_cb cb, void *arg)
{
    size_t nch = (n + PUBLISH_CHUNK - 1) / PUBLISH_CHUNK;
    size_t sz = sizeof(submit_t) + nch * sizeof(sub_chunk_t);
    submit_t *j;
    size_t npub = 0, k;
    int rc = 0;
    int64_t now = now_s();

    sz = (sz + 7) & ~(size_t)7;
    j = ep_malloc(sz + n * (sizeof(ep_event_t *) + sizeof(uint32_t) + 1));
    j->pub = (ep_event_t **)((char *)j + sz);
    j->idx = (uint32_t *)(j->pub + n);
    j->dedup = (uint8_t *)(j->idx + n);
    j->ig = ig;
    j->ids = ids;
    j->status = status;
    j->n = n;
    j->start_ns = start_ns;
    j->cb = cb;
    j->arg = arg;
    atomic_init(&j->pending, 1);
    inc(&ig->received, n);
    for (size_t i = 0; i < n; i++) {
        j->dedup[i] = 0;
        status[i] = 1; /* not answered yet */
        if (ig->dedup && has_client_id(evs[i])) {
            switch (reserve_id(ig->dedup, ids[i].p, ids[i].len, 0, now)) {
            case EP_DEDUP_DONE:
                status[i] = EP_EEXIST;
                ep_event_destroy(evs[i]);
                evs[i] = NULL;
                continue;
            case EP_DEDUP_PENDING:
                status[i] = EP_EAGAIN;
                ep_event_destroy(evs[i]);
                evs[i] = NULL;
                continue;
            case EP_DEDUP_NEW:
                j->dedup[i] = 1;
                break;
            }
        }
        j->idx[npub] = (uint32_t)i;
        j->pub[npub++] = evs[i];
        evs[i] = NULL;
    }
    j->npub = npub;
    for (k = 0; k * PUBLISH_CHUNK < npub; k++) {
        sub_chunk_t *c = &j->chunks[k];
        c->job = j;
        c->first = (uint32_t)(k * PUBLISH_CHUNK);
        c->n = (uint32_t)(npub - c->first < PUBLISH_CHUNK ? npub - c->first : PUBLISH_CHUNK);
        if (rc == 0) {
            atomic_fetch_add_explicit(&j->pending, 1, memory_order_relaxed);
            rc = publish(ig, &c->pass, j->pub + c->first, c->n, on_submit_published, c);
            if (rc == 0) {
                continue;
            }
            atomic_fetch_sub_explicit(&j->pending, 1, memory_order_relaxed);
        }
        /* This chunk and the rest fail without trying: the queue refused. */
        for (uint32_t i = 0; i < c->n; i++) {
            status[j->idx[c->first + i]] = rc;
            ep_event_destroy(j->pub[c->first + i]);
        }
    }
    submit_release(j);
}

const char *ep__ingest_error_text(ep_ingest_t *ig, int err)
{
    return publish_error_text(ig, err);
}
