/*
 * POST /events/batch: a JSON array or NDJSON body (gzip allowed), answered
 * with a result per event. on_batch is a straight pipeline of steps: content
 * type, Content-Encoding (gzip), split into events, limits, then per event
 * parse, de-duplicate and publish (PUBLISH_CHUNK events per publish call);
 * batch_finish answers once the last chunk's callback has run.
 *
 * Also the gateway's view of a batch whose outcome it does not know
 * (ep__ingest_unknown_answer): the same reading, to list each event's id.
 */
#include "roles/ep_ingest_int.h"
#include "roles/ep_access.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "obs/ep_obs.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* ------------------------------------------------------------ reading the body */

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
 * The body as ingest reads it: inflated into *inflated when Content-Encoding
 * is gzip, at most max bytes. Returns 0 with *body and *len set, EP_ENOTSUP
 * (another encoding), EP_E2BIG (inflates past max) or EP_EPARSE (not gzip).
 */
static int decode_body(const char *enc, size_t max, const char **body, size_t *len,
                       ep_buf_t *inflated)
{
    int rc;

    if (enc == NULL || *enc == '\0' || strcasecmp(enc, "identity") == 0) {
        return 0;
    }
    if (strcasecmp(enc, "gzip") != 0 && strcasecmp(enc, "x-gzip") != 0) {
        return EP_ENOTSUP;
    }
    if ((rc = gunzip(*body, *len, max, inflated)) != 0) {
        return rc;
    }
    *body = inflated->data ? inflated->data : "";
    *len = inflated->len;
    return 0;
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

/*
 * Splits a body into its events: a JSON array, else NDJSON. Returns 0 with
 * *sl (ep_free it) and *n (0 for a blank body; past max the rest was not
 * read), or EP_EPARSE with *bad_at when the array itself is malformed.
 */
static int split_body(const char *body, size_t len, size_t max, slice_t **sl, size_t *n,
                      size_t *bad_at)
{
    size_t j = 0;

    *sl = NULL;
    *n = 0;
    while (j < len && (body[j] == ' ' || body[j] == '\t' || body[j] == '\r' || body[j] == '\n')) {
        j++;
    }
    if (j == len) {
        return 0;
    }
    if (body[j] == '[') {
        return split_array(body, len, sl, n, max, bad_at);
    }
    split_lines(body, len, sl, n, max);
    return 0;
}

/* ------------------------------------------------------------ a batch in flight */

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

/* What the items of a finished batch came to. */
typedef struct tally_s {
    size_t accepted, dups, invalid, failed;
    size_t maybe;   /* failed, and may be kept anyway */
    size_t refused; /* failed with a 4xx of the publish error table: nothing kept, no retry */
    int first_err;
} tally_t;

static uint32_t keep_str(batch_t *b, const char *s, size_t n)
{
    return (uint32_t)ep_buf_append_z(&b->strs, s, n);
}

static batch_t *batch_create(ep_ingest_t *ig, ep_http_req_t *req, size_t n)
{
    batch_t *b = ep_calloc(1, sizeof(*b));

    b->ig = ig;
    b->req = req;
    b->start_ns = ep_http_req_start_ns(req);
    b->n = n;
    b->items = ep_calloc(n, sizeof(item_t));
    ep_buf_init(&b->strs);
    ep_buf_putc(&b->strs, '\0');
    atomic_store(&b->pending, 1);
    return b;
}

/*
 * The events numbered from the gateway's id are remembered as one entry (the
 * base) when all of them were kept; otherwise each kept one is remembered.
 */
static void commit_range(batch_t *b)
{
    ep_ingest_t *ig = b->ig;
    int all_derived_kept = 1;

    if (!b->base_reserved) {
        return;
    }
    for (size_t i = 0; i < b->n; i++) {
        all_derived_kept &= !b->items[i].derived || b->items[i].state == ITEM_ACCEPTED;
    }
    if (all_derived_kept) {
        ep_dedup_commit(ig->dedup, b->base, RANGE_KEY_LEN, ingest_now_s());
        return;
    }
    ep_dedup_release(ig->dedup, b->base, RANGE_KEY_LEN);
    for (size_t i = 0; i < b->n; i++) {
        item_t *it = &b->items[i];
        if (it->derived && it->state == ITEM_ACCEPTED &&
            ep_dedup_reserve(ig->dedup, b->strs.data + it->id_off, it->id_len, ingest_now_s()) ==
                EP_DEDUP_NEW) {
            ep_dedup_commit(ig->dedup, b->strs.data + it->id_off, it->id_len, ingest_now_s());
        }
    }
}

/* Counts the items' outcomes; each reserved id is committed (kept) or released. */
static void tally_items(batch_t *b, tally_t *t)
{
    ep_ingest_t *ig = b->ig;

    for (size_t i = 0; i < b->n; i++) {
        item_t *it = &b->items[i];
        const char *id = b->strs.data + it->id_off;
        switch (it->state) {
        case ITEM_ACCEPTED:
            t->accepted++;
            if (it->dedup) {
                ep_dedup_commit(ig->dedup, id, it->id_len, ingest_now_s());
            }
            break;
        case ITEM_DUP:
            t->dups++;
            break;
        case ITEM_INVALID:
            t->invalid++;
            break;
        default:
            t->failed++;
            t->maybe += (size_t)ep__publish_maybe_kept(it->err);
            t->refused +=
                ep__ingest_error_status(it->err) == 400 || ep__ingest_error_status(it->err) == 413;
            t->first_err = t->first_err ? t->first_err : it->err;
            if (it->dedup) {
                ep_dedup_release(ig->dedup, id, it->id_len);
            }
            break;
        }
    }
}

static void count_batch(batch_t *b, const tally_t *t)
{
    ep_ingest_t *ig = b->ig;

    ingest_inc(&ig->sent, t->accepted);
    ingest_inc(&ig->failed, t->failed);
    ingest_inc(&ig->duplicates, t->dups);
    if (t->accepted) {
        ingest_inc(&ig->publish_us_sum,
                   (uint64_t)((ep_time_mono_ns() - b->start_ns) / 1000) * (uint64_t)t->accepted);
        ingest_inc(&ig->publish_count, t->accepted);
    }
}

/* One entry of "results": {"index":i[,"line":n], then the id, or the error}. */
static void put_result(ep_buf_t *out, batch_t *b, size_t i)
{
    item_t *it = &b->items[i];
    char buf[160];

    /* Per event: integers by hand, never printf. */
    ep_buf_puts(out, "{\"index\":");
    ep_buf_put_u64(out, i);
    ep_buf_putc(out, ',');
    if (it->line) {
        ep_buf_puts(out, "\"line\":");
        ep_buf_put_u64(out, it->line);
        ep_buf_putc(out, ',');
    }
    if (it->state == ITEM_ACCEPTED || it->state == ITEM_DUP) {
        ep_buf_puts(out, "\"messageId\":");
        ep_buf_put_json_str(out, b->strs.data + it->id_off, it->id_len);
        ep_buf_puts(out, it->state == ITEM_DUP ? ",\"duplicate\":true}" : "}");
    } else if (it->state == ITEM_INVALID) {
        const char *msg = b->strs.data + it->err_off;
        const char *field = msg + strlen(msg) + 1;
        ep_buf_puts(out, "\"error\":");
        ep_buf_put_json_str(out, msg, strlen(msg));
        if (*field) {
            ep_buf_puts(out, ",\"field\":");
            ep_buf_put_json_str(out, field, strlen(field));
        }
        ep_buf_putc(out, '}');
    } else {
        const char *msg = ep__ingest_error_msg(b->ig, it->err, buf, sizeof(buf));
        if (it->id_len) {
            ep_buf_puts(out, "\"id\":");
            ep_buf_put_json_str(out, b->strs.data + it->id_off, it->id_len);
            ep_buf_putc(out, ',');
        }
        ep_buf_puts(out, "\"error\":");
        ep_buf_put_json_str(out, msg, strlen(msg));
        ep_buf_puts(out, ep__publish_maybe_kept(it->err) ? ",\"retry\":true,\"maybe_kept\":true}"
                                                         : ",\"retry\":true,\"maybe_kept\":false}");
    }
}

static void put_answer(ep_buf_t *out, batch_t *b, const tally_t *t)
{
    char buf[160];

    ep_buf_reserve(out, 64 + b->n * 64);
    ep_buf_printf(out, "{\"accepted\":%zu,\"rejected\":%zu,\"duplicates\":%zu,\"failed\":%zu,",
                  t->accepted, t->invalid, t->dups, t->failed);
    if (t->accepted + t->dups == 0 && t->first_err == EP_ECIRCUIT) {
        const char *msg = ep__ingest_error_msg(b->ig, t->first_err, buf, sizeof(buf));
        ep_buf_puts(out, "\"error\":");
        ep_buf_put_json_str(out, msg, strlen(msg));
        ep_buf_putc(out, ',');
    }
    if (t->failed) {
        /* Some failed events may be kept anyway: retry those with their "id". */
        ep_buf_puts(out, t->maybe ? "\"maybe_kept\":true," : "\"maybe_kept\":false,");
    }
    ep_buf_puts(out, "\"results\":[");
    for (size_t i = 0; i < b->n; i++) {
        if (i) {
            ep_buf_putc(out, ',');
        }
        put_result(out, b, i);
    }
    ep_buf_puts(out, "]}\n");
}

/*
 * 202 when something was kept (per-event results say exactly what); when
 * nothing was: the table's 400 or 413 when the queue refused every failed
 * event, else 503 (queue reasons: a retry may succeed); 400 when nothing was
 * valid.
 */
static int batch_status(const tally_t *t)
{
    if (t->accepted + t->dups > 0) {
        return 202;
    }
    if (t->failed > 0) {
        return t->refused == t->failed ? ep__ingest_error_status(t->first_err) : 503;
    }
    return 400;
}

static void batch_finish(batch_t *b)
{
    tally_t t = {0};
    ep_buf_t out = EP_BUF_INIT;
    int status;

    commit_range(b);
    tally_items(b, &t);
    count_batch(b, &t);
    put_answer(&out, b, &t);
    status = batch_status(&t);
    if (status == 503) {
        char v[16];
        snprintf(v, sizeof(v), "%d", ep__ingest_retry_after(b->ig, t.first_err));
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
    ep__ingest_report(b->ig, &c->pass, n, status);
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
    rc = ep__ingest_publish(b->ig, &c->pass, c->evs, cn, on_chunk_published, c);
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

/* ------------------------------------------------------------ the handler's steps */

/* One batch request on its way in, on the handler's stack. */
typedef struct batch_in_s {
    const char *body; /* as read: inflated when it came gzip'd */
    size_t len;
    ep_buf_t inflated;
    slice_t *sl; /* the events' slices of body */
    size_t n;
    const char *hid;               /* the gateway's X-Message-Id, or NULL */
    char lid[EP_UUID_STR_LEN + 1]; /* with hid: the id it numbers the current event with */
    ep_event_parse_opts_t opts;    /* one receive time for the request (one clock read) */
    ep_event_parser_t *parser;
    chunk_t *chunk; /* events gathered for the next publish call */
    int queue_err;  /* a publish failed: the rest is answered without trying */
} batch_in_t;

/* Step 1, content type. 1: readable; 0: answered 415. */
static int batch_content_type(ep_http_req_t *req)
{
    if (ep__ingest_content_type_ok(req)) {
        return 1;
    }
    ep_http_respond_error(req, 415,
                          "unsupported Content-Type; send application/json (an array) or "
                          "application/x-ndjson",
                          "Content-Type");
    return 0;
}

/* Step 2, Content-Encoding: gzip is inflated up to MAX_BATCH_BODY. 1, or 0: answered 415/413/400.
 */
static int batch_inflate(const ep_config_t *cfg, ep_http_req_t *req, batch_in_t *in)
{
    char msg[160];
    int rc = decode_body(ep_http_req_header(req, "Content-Encoding"), (size_t)cfg->max_batch_body,
                         &in->body, &in->len, &in->inflated);

    if (rc == 0) {
        return 1;
    }
    if (rc == EP_ENOTSUP) {
        ep_http_respond_error(req, 415, "unsupported Content-Encoding; use gzip",
                              "Content-Encoding");
    } else if (rc == EP_E2BIG) {
        snprintf(msg, sizeof(msg), "decompressed body is larger than %lld bytes",
                 (long long)cfg->max_batch_body);
        ep_http_respond_error(req, 413, msg, NULL);
    } else {
        ep_http_respond_error(req, 400, "body is not valid gzip", NULL);
    }
    return 0;
}

/* Step 3, split into events. 1, or 0: answered 400 (a malformed array). */
static int batch_split(const ep_config_t *cfg, ep_http_req_t *req, batch_in_t *in)
{
    char msg[160];
    size_t bad_at = 0;

    if (split_body(in->body, in->len, (size_t)cfg->batch_max_events, &in->sl, &in->n, &bad_at) ==
        0) {
        return 1;
    }
    snprintf(msg, sizeof(msg), "malformed JSON array at byte %zu", bad_at);
    ep_http_respond_error(req, 400, msg, NULL);
    return 0;
}

/* Step 4, limits: 1 to BATCH_MAX_EVENTS events. 1, or 0: answered 413 or 400. */
static int batch_limits(const ep_config_t *cfg, ep_http_req_t *req, const batch_in_t *in)
{
    char msg[160];
    size_t max_items = (size_t)cfg->batch_max_events;

    if (in->n > max_items) {
        snprintf(msg, sizeof(msg), "more than %zu events in one batch (BATCH_MAX_EVENTS)",
                 max_items);
        ep_http_respond_error(req, 413, msg, NULL);
        return 0;
    }
    if (in->n == 0) {
        ep_http_respond_error(req, 400, "empty batch", NULL);
        return 0;
    }
    return 1;
}

/* Step 5, parse event i. Returns it, or NULL (the item is ITEM_INVALID with its error). */
static ep_event_t *batch_parse(batch_t *b, batch_in_t *in, size_t i)
{
    item_t *it = &b->items[i];
    ep_event_t *ev = NULL;
    ep_parse_err_t perr;

    it->line = in->sl[i].line;
    if (in->hid) {
        /* Event i without an id gets the gateway's id + i (what its 503 would name). */
        ep_id_uuid_add(in->hid, i, in->lid);
        in->opts.id = in->lid;
    }
    if (ep_event_parser_parse_opts(in->parser, in->sl[i].p, in->sl[i].len, &in->opts, &ev, &perr) !=
        0) {
        it->state = ITEM_INVALID;
        it->err_off = keep_str(b, perr.msg, strlen(perr.msg));
        keep_str(b, perr.field, strlen(perr.field));
        ingest_inc(&b->ig->rejected, 1);
        return NULL;
    }
    ingest_inc(&b->ig->received, 1);
    it->id_off = keep_str(b, ev->id.p, ev->id.len);
    it->id_len = ev->id.len;
    return ev;
}

/*
 * Step 6, de-duplicate event i. 1: publish it; 0: a repeat (ITEM_DUP) or an id
 * still being stored (ITEM_FAILED, EP_EAGAIN), and ev is freed.
 */
static int batch_dedup(batch_t *b, const batch_in_t *in, size_t i, ep_event_t *ev)
{
    ep_ingest_t *ig = b->ig;
    item_t *it = &b->items[i];
    int numbered =
        in->hid && ev->id.len == EP_UUID_STR_LEN && memcmp(ev->id.p, in->lid, EP_UUID_STR_LEN) == 0;
    ep_dedup_result_t d;

    if (ig->dedup == NULL) {
        return 1;
    }
    if (numbered) {
        /* Numbered from the gateway's id: one window entry for the whole request. */
        if (b->base[0] == '\0') {
            ep__ingest_range_key(in->hid, b->base);
            b->base_reserved =
                ep_dedup_reserve(ig->dedup, b->base, RANGE_KEY_LEN, ingest_now_s()) == EP_DEDUP_NEW;
        }
        it->derived = (uint8_t)b->base_reserved;
    }
    if (!ingest_has_client_id(ev) || it->derived) {
        return 1;
    }
    d = ep__ingest_reserve_id(ig->dedup, ev->id.p, ev->id.len, numbered, ingest_now_s());
    if (d == EP_DEDUP_NEW) {
        it->dedup = 1;
        return 1;
    }
    if (d == EP_DEDUP_DONE) {
        it->state = ITEM_DUP;
    } else {
        it->state = ITEM_FAILED;
        it->err = EP_EAGAIN;
    }
    ep_event_destroy(ev);
    return 0;
}

/* Step 7, publish event i: into the chunk, published whenever it is full. */
static void batch_publish(batch_t *b, batch_in_t *in, size_t i, ep_event_t *ev)
{
    item_t *it = &b->items[i];

    if (in->queue_err) {
        it->state = ITEM_FAILED;
        it->err = in->queue_err;
        ep_event_destroy(ev);
        return;
    }
    if (in->chunk == NULL) {
        in->chunk = ep_malloc(sizeof(*in->chunk));
        in->chunk->b = b;
        in->chunk->n = 0;
    }
    in->chunk->idx[in->chunk->n] = (uint32_t)i;
    in->chunk->evs[in->chunk->n++] = ev;
    if (in->chunk->n == PUBLISH_CHUNK) {
        in->queue_err = flush_chunk(b, &in->chunk);
    }
}

/* Steps 5 to 7 for every event; the last publish callback (or this) answers. */
static void batch_run(ep_ingest_t *ig, ep_http_req_t *req, batch_in_t *in)
{
    batch_t *b = batch_create(ig, req, in->n);

    ingest_inc(&ig->batches, 1);
    for (size_t i = 0; i < in->n; i++) {
        ep_event_t *ev = batch_parse(b, in, i);
        if (ev != NULL && batch_dedup(b, in, i, ev)) {
            batch_publish(b, in, i, ev);
        }
    }
    if (in->chunk != NULL) {
        flush_chunk(b, &in->chunk);
    }
    batch_release(b);
}

void ep__ingest_on_batch(void *arg, ep_http_req_t *req)
{
    route_t *rt = arg;
    ep_ingest_t *ig = rt->ig;
    const ep_config_t *cfg = &ig->app->cfg;
    batch_in_t in = {.body = ep_http_req_body(req),
                     .len = ep_http_req_body_len(req),
                     .inflated = EP_BUF_INIT,
                     .opts = {.received_us = ep_time_now_us()},
                     .parser = ep__ingest_parser(cfg)};
    ep_access_who_t who;

    if (!ep_access_check(ig->app->access, req, EP_ACCESS_INGEST, &who) ||
        !batch_content_type(req) || !ep__ingest_id_header(req, &in.hid)) {
        return;
    }
    if (batch_inflate(cfg, req, &in) && batch_split(cfg, req, &in) && batch_limits(cfg, req, &in) &&
        /* A batch of n events costs n, charged before any of them is kept (429: none is). */
        ep_access_charge(ig->app->access, req, &who, in.n)) {
        batch_run(ig, req, &in);
    }
    ep_free(in.sl);
    ep_buf_close(&in.inflated);
}

/* ------------------------------------------------------------ the gateway's view */

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

    if (ep_event_parser_parse(parser, json, len, &ev, &perr) == 0 && ingest_has_client_id(ev)) {
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
    ep_event_parser_t *parser = ep__ingest_parser(cfg);
    ep_buf_t inflated = EP_BUF_INIT;
    slice_t *sl = NULL;
    size_t n = 0, bad_at = 0, max = (size_t)cfg->batch_max_events;

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
    if (decode_body(enc, (size_t)cfg->max_batch_body, &body, &len, &inflated) != 0 ||
        split_body(body, len, max, &sl, &n, &bad_at) != 0 || n > max) {
        n = 0; /* ingest refused it (415, 413 or 400): nothing kept, nothing listed */
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
