/*
 * The "nats" queue provider: NATS JetStream through nats.c.
 *
 * Publish: each event is encoded once as a protobuf DataMessage and published
 * asynchronously to NATS_SUBJECT with its id as Nats-Msg-Id (JetStream drops
 * a repeat within the stream's duplicate window). With NATS_BATCH_EVENTS > 1
 * up to that many events of one call go into one message instead, a DataBatch
 * with an Ep-Events header, whose Nats-Msg-Id is a hash of their ids (a client
 * resending the same batch sends the same message); the server then stores,
 * delivers and acknowledges one message for them all. The call's callback fires
 * once, after every message of the call got its PubAck, an error or its
 * MaxWait timeout; so a 2xx upstream means the broker stored the event.
 * PubAcks arrive on a nats.c thread with the original natsMsg; a small
 * mutex-protected map finds the publish call it belongs to.
 *
 * Consume: one durable pull consumer (NATS_DURABLE), created on the first
 * consume only. Fetches are serialized (nats.c allows one at a time per
 * subscription): first a no-wait request for up to max messages, and when
 * nothing is there a waiting request for one, so an idle worker wakes as soon
 * as a message arrives. The natsMsg stays in ev->qh until ack, nack or
 * dead_letter; the events of a packed message share it through an
 * ep_nats_pack_t, and what a call had no room for waits in ctx->spare. A message that does not
 * decode is published raw to the dead-letter subject and terminated, never handed to the workers.
 *
 * Connection, stream policy and the keeper thread: ep_queue_nats_config.c.
 */
#include "base/ep_counter.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "queue/ep_queue.h"
#include "queue/nats/ep_queue_nats_int.h"
#include "base/ep_time.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define HDR_MSG_ID      "Nats-Msg-Id"
#define HDR_REASON      "Ep-Dlq-Reason"
#define HDR_ATTEMPTS    "Ep-Attempts"
#define HDR_EVENT_ID    "Ep-Event-Id"
#define HDR_ORIG_SUBJ   "Ep-Original-Subject"
#define HDR_ORIG_SEQ    "Ep-Original-Seq"
#define HDR_EVENTS      "Ep-Events" /* a packed message: a DataBatch of this many events */
#define DLQ_RETRY_MS    5000        /* redelivery delay when a dead-letter publish failed */
#define POISON_RETRY_MS 1000
#define CRASH_MARGIN    3 /* deliveries past max_attempts before consume dead-letters */
/* Packed messages: a pull asks for this many calls' worth of events, so the workers after
 * the one fetching take theirs from the spare list instead of each waiting a round trip. */
#ifndef FETCH_AHEAD
#define FETCH_AHEAD 4
#endif

static const int empty_status[1];

/* 1 when s can go into a NATS header value as is (no control characters). */
static int header_safe(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
            return 0;
        }
    }
    return len > 0;
}

/* Copies s into out with control characters replaced by spaces. */
static void header_clean(const char *s, char *out, size_t len)
{
    size_t i = 0;

    for (; s && s[i] && i + 1 < len; i++) {
        out[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? ' ' : s[i];
    }
    out[i] = '\0';
}

/* ------------------------------------------------------------ in-flight publish map */

static size_t slot_bucket(const natsMsg *m)
{
    uint64_t h = (uint64_t)(uintptr_t)m * 0x9E3779B97F4A7C15ull;

    return (size_t)(h >> 40) & (EP_NATS_PUB_BUCKETS - 1);
}

/* Unlinks and returns the slot of m, or NULL. Call with pub_lock held. */
static ep_nats_slot_t *slot_take_locked(ep_nats_ctx_t *ctx, natsMsg *m)
{
    ep_nats_slot_t **pp = &ctx->pub_map[slot_bucket(m)];

    for (; *pp != NULL; pp = &(*pp)->next) {
        if ((*pp)->msg == m) {
            ep_nats_slot_t *s = *pp;
            *pp = s->next;
            s->next = NULL;
            return s;
        }
    }
    return NULL;
}

static ep_nats_slot_t *slot_take(ep_nats_ctx_t *ctx, natsMsg *m)
{
    ep_nats_slot_t *s;

    pthread_mutex_lock(&ctx->pub_lock);
    s = slot_take_locked(ctx, m);
    pthread_mutex_unlock(&ctx->pub_lock);
    return s;
}

/* Runs the callback of a finished publish call and frees it. */
static void batch_finish(ep_nats_ctx_t *ctx, ep_nats_batch_t *b)
{
    uint64_t ok = 0, full = 0;

    for (size_t i = 0; i < b->n; i++) {
        ok += b->status[i] == 0;
        full += b->status[i] == EP_EFULL;
    }
    ep_counter_add(&ctx->counts.enqueued, ok);
    ep_counter_add(&ctx->counts.rejected_full, full);
    ep_counter_add(&ctx->counts.rejected_unavailable, b->n - ok - full);
    ep_counter_add(&ctx->publish_failed, b->n - ok - full);
    if (b->cb) {
        b->cb(b->arg, b->n, b->status);
    }
    ep_free(b);
}

/* Records the result of one message; the last one finishes the call. */
static void slot_done(ep_nats_ctx_t *ctx, ep_nats_slot_t *s, int status)
{
    ep_nats_batch_t *b = s->batch;

    for (uint32_t i = 0; i < s->cnt; i++) {
        b->status[s->idx + i] = status;
    }
    if (atomic_fetch_sub_explicit(&b->left, 1, memory_order_acq_rel) == 1) {
        batch_finish(ctx, b);
    }
}

/* Maps a PubAck error to an EP_E* code. */
static int puback_error(const jsPubAckErr *pae)
{
    switch (pae->ErrCode) {
    case JSStreamStoreFailedErr: /* maximum messages / bytes exceeded (DiscardNew) */
    case JSStorageResourcesExceededErr:
    case JSInsufficientResourcesErr:
        return EP_EFULL;
    case JSStreamMessageExceedsMaximumErr:
        return EP_E2BIG;
    default:
        break;
    }
    if (pae->ErrText &&
        (strstr(pae->ErrText, "maximum messages") || strstr(pae->ErrText, "maximum bytes") ||
         strstr(pae->ErrText, "resources exceeded"))) {
        return EP_EFULL;
    }
    /* Timeouts, no responders (no stream), connection trouble. */
    return EP_EUNAVAIL;
}

/* Maps a synchronous publish failure. */
static int publish_error(natsStatus s)
{
    /* A stall on MaxPending in-flight publishes is backpressure. */
    return s == NATS_TIMEOUT ? EP_EFULL : EP_EUNAVAIL;
}

/*
 * nats.c's PubAck handler (one per JetStream context, on a nats.c thread):
 * maps the answer to 0 or EP_E*, destroys the message and completes its slot;
 * the last slot of a publish call runs the call's callback here.
 */
void ep__nats_ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    ep_nats_ctx_t *ctx = closure;
    ep_nats_slot_t *s = slot_take(ctx, msg);
    int rc = 0;

    if (pa == NULL) {
        rc = pae ? puback_error(pae) : EP_EUNAVAIL;
        ep__nats_note_error(ctx, "NATS publish to %s failed: %s", ctx->set.subject,
                            pae && pae->ErrText ? pae->ErrText
                                                : natsStatus_GetText(pae ? pae->Err : NATS_ERR));
    }
    natsMsg_Destroy(msg);
    if (s != NULL) {
        slot_done(ctx, s, rc);
    }
}

/* Completes a message nats.c gave back unanswered with err, and destroys it. Thread-safe. */
void ep__nats_fail_pending(ep_nats_ctx_t *ctx, natsMsg *msg, int err)
{
    ep_nats_slot_t *s = slot_take(ctx, msg);

    natsMsg_Destroy(msg);
    if (s != NULL) {
        slot_done(ctx, s, err);
    }
}

/* ------------------------------------------------------------ provider operations */

static int nats_init(const ep_config_t *cfg, const void *set, void **out, char *err, size_t errlen)
{
    ep_nats_ctx_t *ctx = NULL;
    int rc;

    *out = NULL;
    rc = ep__nats_ctx_create(cfg, set, &ctx, err, errlen);
    if (rc == 0) {
        *out = ctx;
    }
    return rc;
}

/* Encodes ev into a new message for the subject. */
static natsMsg *build_msg(const char *subject, const ep_event_t *ev, ep_buf_t *buf)
{
    natsMsg *m = NULL;

    ep_buf_reset(buf);
    ep_event_encode_pb(ev, buf);
    if (natsMsg_Create(&m, subject, NULL, buf->data, (int)buf->len) != NATS_OK) {
        return NULL;
    }
    return m;
}

/* How many of evs[0..n) go into the next message: at most max, and fewer once their
 * sizes pass EP_NATS_PACK_BYTES (one event always goes). */
static size_t pack_count(ep_event_t *const *evs, size_t n, size_t max)
{
    size_t k = 1, bytes = evs[0]->size;

    while (k < n && k < max && bytes + evs[k]->size <= EP_NATS_PACK_BYTES) {
        bytes += evs[k++]->size;
    }
    return k;
}

#define PACK_ID_LEN 64 /* "ep-pack-" + 32 hex digits + "-" + count */

/* A packed message of evs[0..k) with its Ep-Events header; its Nats-Msg-Id into id: two
 * 64-bit FNV-1a hashes of the ids (different bases) and k, so the same batch sent again
 * is the same message to the duplicate window. */
static natsMsg *build_pack(const char *subject, ep_event_t *const *evs, size_t k, ep_buf_t *buf,
                           char *id)
{
    uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
    natsMsg *m = NULL;
    char count[24];

    ep_buf_reset(buf);
    ep_event_batch_encode_pb(evs, k, buf);
    if (natsMsg_Create(&m, subject, NULL, buf->data, (int)buf->len) != NATS_OK) {
        return NULL;
    }
    snprintf(count, sizeof(count), "%zu", k);
    if (natsMsgHeader_Set(m, HDR_EVENTS, count) != NATS_OK) {
        natsMsg_Destroy(m);
        return NULL;
    }
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j <= evs[i]->id.len; j++) { /* a NUL ends each id */
            unsigned char c = j < evs[i]->id.len ? (unsigned char)evs[i]->id.p[j] : 0;

            h1 = (h1 ^ c) * 0x100000001b3ull;
            h2 = (h2 ^ c) * 0x100000001b3ull;
            h2 ^= h2 >> 29;
        }
    }
    snprintf(id, PACK_ID_LEN, "ep-pack-%016" PRIx64 "%016" PRIx64 "-%zu", h1, h2, k);
    return m;
}

/*
 * Builds the messages of evs[0..n) into b's slots: slot m carries events idx..idx+cnt,
 * and ids[m] its Nats-Msg-Id (a packed one is written into pack_ids). Returns how many
 * messages, or 0 when out of memory (then none is left).
 */
static size_t build_msgs(ep_nats_ctx_t *ctx, ep_nats_batch_t *b, ep_event_t **evs, size_t n,
                         const char **ids, char *pack_ids)
{
    ep_buf_t buf = EP_BUF_INIT;
    size_t m = 0, max = (size_t)ctx->set.batch_events;

    for (size_t i = 0; i < n; m++) {
        size_t k = max > 1 ? pack_count(evs + i, n - i, max) : 1;
        ep_nats_slot_t *slot = &b->slots[m];

        *slot = (ep_nats_slot_t){.batch = b, .idx = (uint32_t)i, .cnt = (uint32_t)k};
        if (k > 1) {
            slot->msg = build_pack(ctx->set.subject, evs + i, k, &buf, pack_ids + m * PACK_ID_LEN);
            ids[m] = pack_ids + m * PACK_ID_LEN;
        } else {
            slot->msg = build_msg(ctx->set.subject, evs[i], &buf);
            ids[m] = header_safe(evs[i]->id.p, evs[i]->id.len) ? evs[i]->id.p : NULL;
        }
        if (slot->msg == NULL) {
            for (size_t j = 0; j < m; j++) {
                natsMsg_Destroy(b->slots[j].msg);
            }
            m = 0;
            break;
        }
        i += k;
    }
    ep_buf_close(&buf);
    return m;
}

static int nats_publish(void *vctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    ep_nats_ctx_t *ctx = vctx;
    ep_nats_batch_t *b;
    const char **ids;
    char *pack_ids = NULL;
    size_t msgs;
    int rc = 0;

    if (atomic_load(&ctx->closed)) {
        return EP_ECLOSED;
    }
    if (n == 0) {
        if (cb) {
            cb(arg, 0, empty_status);
        }
        return 0;
    }
    /* Fail fast while disconnected: nats.c would otherwise buffer until MaxWait. */
    if (!ep__nats_connected(ctx)) {
        ep__nats_note_error(ctx, "NATS disconnected from %s: reconnecting", ctx->set.url);
        ep_counter_add(&ctx->counts.rejected_unavailable, n);
        return EP_EUNAVAIL;
    }
    /* The call, its slots, the statuses and the message ids in one block. */
    b = ep_malloc(sizeof(*b) + n * (sizeof(ep_nats_slot_t) + sizeof(int) + sizeof(char *)) +
                  sizeof(int));
    b->cb = cb;
    b->arg = arg;
    b->n = n;
    b->status = (int *)(void *)&b->slots[n];
    ids = (const char **)(void *)(b->status + n + (n & 1));
    memset(b->status, 0, n * sizeof(int));
    if (ctx->set.batch_events > 1 && n > 1) {
        pack_ids = ep_malloc(n * PACK_ID_LEN);
    }
    msgs = build_msgs(ctx, b, evs, n, ids, pack_ids);
    if (msgs == 0) {
        ep_free(pack_ids);
        ep_free(b);
        return EP_ENOMEM;
    }
    atomic_init(&b->left, msgs + 1);
    atomic_store(&ctx->async_used, 1);
    /* Every message is in the map before the first can be acknowledged. */
    pthread_mutex_lock(&ctx->pub_lock);
    for (size_t i = 0; i < msgs; i++) {
        ep_nats_slot_t **head = &ctx->pub_map[slot_bucket(b->slots[i].msg)];
        b->slots[i].next = *head;
        *head = &b->slots[i];
    }
    pthread_mutex_unlock(&ctx->pub_lock);

    for (size_t i = 0; i < msgs; i++) {
        natsMsg *m = b->slots[i].msg;
        jsPubOptions po;
        natsStatus s;

        jsPubOptions_Init(&po);
        po.MaxWait = ctx->cfg.upstream_timeout_ms;
        po.MsgId = ids[i];
        s = js_PublishMsgAsync(ctx->js, &m, &po);
        if (s == NATS_OK) {
            continue;
        }
        /* The library did not take m: it is still ours, and so is its slot. */
        if (i == 0) {
            /* Nothing went out: undo everything, the caller keeps the events. */
            pthread_mutex_lock(&ctx->pub_lock);
            for (size_t j = 0; j < msgs; j++) {
                slot_take_locked(ctx, b->slots[j].msg);
            }
            pthread_mutex_unlock(&ctx->pub_lock);
            for (size_t j = 0; j < msgs; j++) {
                natsMsg_Destroy(b->slots[j].msg);
            }
            ep__nats_note_error(ctx, "NATS publish to %s failed: %s", ctx->set.subject,
                                natsStatus_GetText(s));
            ep_free(pack_ids);
            ep_free(b);
            rc = publish_error(s);
            ep_counter_add(
                rc == EP_EFULL ? &ctx->counts.rejected_full : &ctx->counts.rejected_unavailable, n);
            return rc;
        }
        {
            ep_nats_slot_t *slot = slot_take(ctx, m);
            natsMsg_Destroy(m);
            if (slot != NULL) {
                slot_done(ctx, slot, publish_error(s));
            }
        }
    }
    ep_free(pack_ids);
    /* Ownership was taken; the broker has the bytes. */
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
        evs[i] = NULL;
    }
    if (atomic_fetch_sub_explicit(&b->left, 1, memory_order_acq_rel) == 1) {
        batch_finish(ctx, b);
    }
    return 0;
}

/* Publishes a dead-letter message and waits for its PubAck. Returns 0 or EP_E*. */
static int dlq_publish(ep_nats_ctx_t *ctx, natsMsg *m, const char *msg_id)
{
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    jsPubOptions po;
    natsStatus s;

    jsPubOptions_Init(&po);
    po.MaxWait = ctx->cfg.upstream_timeout_ms;
    po.MsgId = msg_id;
    s = js_PublishMsg(&pa, ctx->js, m, &po, &jerr);
    jsPubAck_Destroy(pa);
    if (s != NATS_OK) {
        ep__nats_note_error(ctx, "NATS dead-letter publish to %s failed: %s", ctx->set.dlq_subject,
                            natsStatus_GetText(s));
        return EP_EUNAVAIL;
    }
    return 0;
}

/* Adds the headers saying where a dead-lettered message came from. */
static void dlq_headers(natsMsg *m, natsMsg *orig, const char *reason, uint64_t attempts,
                        char *msg_id, size_t idlen)
{
    jsMsgMetaData *meta = NULL;
    char tmp[256];

    header_clean(reason, tmp, sizeof(tmp));
    natsMsgHeader_Set(m, HDR_REASON, tmp);
    snprintf(tmp, sizeof(tmp), "%" PRIu64, attempts);
    natsMsgHeader_Set(m, HDR_ATTEMPTS, tmp);
    natsMsgHeader_Set(m, HDR_ORIG_SUBJ, natsMsg_GetSubject(orig));
    msg_id[0] = '\0';
    if (natsMsg_GetMetaData(&meta, orig) == NATS_OK) {
        snprintf(tmp, sizeof(tmp), "%" PRIu64, meta->Sequence.Stream);
        natsMsgHeader_Set(m, HDR_ORIG_SEQ, tmp);
        /* Idempotent within the duplicate window, yet distinct from the original's id. */
        snprintf(msg_id, idlen, "dlq-%s-%" PRIu64, meta->Stream, meta->Sequence.Stream);
        jsMsgMetaData_Destroy(meta);
    }
}

/* A message that is not a DataMessage: raw bytes to the DLQ, then terminate it. */
static void poison_out(ep_nats_ctx_t *ctx, natsMsg *msg, const char *reason, uint64_t attempts)
{
    natsMsg *m = NULL;
    char msg_id[160];

    ep_counter_add(&ctx->poison, 1);
    if (natsMsg_Create(&m, ctx->set.dlq_subject, NULL, natsMsg_GetData(msg),
                       natsMsg_GetDataLength(msg)) == NATS_OK) {
        dlq_headers(m, msg, reason, attempts, msg_id, sizeof(msg_id));
        if (dlq_publish(ctx, m, msg_id[0] ? msg_id : NULL) == 0) {
            natsMsg_Term(msg, NULL);
            natsMsg_Destroy(m);
            natsMsg_Destroy(msg);
            ep__nats_note_error(ctx, "NATS message moved to %s: %s", ctx->set.dlq_subject, reason);
            return;
        }
        natsMsg_Destroy(m);
    }
    /* Could not store it elsewhere: leave it in the stream and look again later. */
    natsMsg_NakWithDelay(msg, POISON_RETRY_MS, NULL);
    natsMsg_Destroy(msg);
}

/* ------------------------------------------------------------ packed messages */

#define PACK_TAG ((uintptr_t)1) /* ev->qh of an event of a packed message: pack | 1 */

/* The pack ev belongs to, or NULL when ev->qh is its own natsMsg. */
static ep_nats_pack_t *ev_pack(const ep_event_t *ev)
{
    uintptr_t h = (uintptr_t)ev->qh;

    return (h & PACK_TAG) ? (ep_nats_pack_t *)(h & ~PACK_TAG) : NULL;
}

static natsMsg *ev_msg(const ep_event_t *ev)
{
    ep_nats_pack_t *p = ev_pack(ev);

    return p ? p->msg : ev->qh;
}

/*
 * Gives back one event of p; nak_ms >= 0 asks for the whole message again after that
 * delay. When this was its last event p is freed, and the message is either nak'ed here
 * (some event asked) or returned for the caller to acknowledge and destroy; otherwise
 * NULL. Thread-safe: the events of one message may be with different workers.
 */
static natsMsg *pack_put(ep_nats_pack_t *p, int nak_ms)
{
    natsMsg *m;
    int nak;

    if (nak_ms >= 0) {
        int cur = atomic_load(&p->nak_ms);

        while (cur < nak_ms && !atomic_compare_exchange_weak(&p->nak_ms, &cur, nak_ms)) {
        }
    }
    if (atomic_fetch_sub_explicit(&p->left, 1, memory_order_acq_rel) != 1) {
        return NULL;
    }
    m = p->msg;
    nak = atomic_load(&p->nak_ms);
    ep_free(p);
    if (nak < 0) {
        return m;
    }
    if (nak > 0) {
        natsMsg_NakWithDelay(m, nak, NULL);
    } else {
        natsMsg_Nak(m, NULL);
    }
    natsMsg_Destroy(m);
    return NULL;
}

/* Events a consume call had no room for, gathered without fetch_lock. */
typedef struct extra_s {
    ep_event_t **evs;
    size_t n, cap;
} extra_t;

static void extra_push(extra_t *x, ep_event_t *ev)
{
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 256;
        x->evs = ep_realloc(x->evs, x->cap * sizeof(ep_event_t *));
    }
    x->evs[x->n++] = ev;
}

/* Keeps x's events for the next consume calls and empties x. Takes fetch_lock. */
static void spare_keep(ep_nats_ctx_t *ctx, extra_t *x)
{
    pthread_mutex_lock(&ctx->fetch_lock);
    if (ctx->spare_n + x->n > ctx->spare_cap) {
        ctx->spare_cap = ctx->spare_n + x->n;
        ctx->spare = ep_realloc(ctx->spare, ctx->spare_cap * sizeof(ep_event_t *));
    }
    memcpy(ctx->spare + ctx->spare_n, x->evs, x->n * sizeof(ep_event_t *));
    ctx->spare_n += x->n;
    atomic_store(&ctx->spare_avail, ctx->spare_n - ctx->spare_off);
    pthread_mutex_unlock(&ctx->fetch_lock);
    ep_free(x->evs);
    *x = (extra_t){0};
}

/* Moves up to max kept events into out. Call with fetch_lock held. */
static size_t spare_take(ep_nats_ctx_t *ctx, ep_event_t **out, size_t max)
{
    size_t k = ctx->spare_n - ctx->spare_off;

    k = k < max ? k : max;
    memcpy(out, ctx->spare + ctx->spare_off, k * sizeof(ep_event_t *));
    ctx->spare_off += k;
    if (ctx->spare_off == ctx->spare_n) {
        ctx->spare_off = ctx->spare_n = 0;
    }
    atomic_store(&ctx->spare_avail, ctx->spare_n - ctx->spare_off);
    return k;
}

void ep__nats_drop_spare(ep_nats_ctx_t *ctx)
{
    size_t msgs = 0;

    /* Not handed out: the messages come back whole to whoever consumes next, so their
     * events that were handed out are processed again. Said, so it can be counted. */
    for (size_t i = ctx->spare_off; i < ctx->spare_n; i++) {
        msgs += i == ctx->spare_off || ev_pack(ctx->spare[i]) != ev_pack(ctx->spare[i - 1]);
    }
    if (msgs > 0) {
        ep_log_warn("nats",
                    "%zu events of %zu packed messages were not handed out before the end: "
                    "those messages come back whole",
                    ctx->spare_n - ctx->spare_off, msgs);
    }
    for (size_t i = ctx->spare_off; i < ctx->spare_n; i++) {
        pack_put(ev_pack(ctx->spare[i]), 0);
        ep_event_destroy(ctx->spare[i]);
    }
    ep_free(ctx->spare);
    ctx->spare = NULL;
    ctx->spare_off = ctx->spare_n = ctx->spare_cap = 0;
    atomic_store(&ctx->spare_avail, 0);
}

/* The events of a packed message: out while there is room (*got < max), then the spare
 * list. Returns how many, or 0 when msg was moved to the dead-letter subject. */
static size_t take_pack(ep_nats_ctx_t *ctx, natsMsg *msg, uint64_t delivered, uint64_t limit,
                        uint64_t seq, ep_event_t **out, size_t *got, size_t max, extra_t *x)
{
    ep_event_t **evs = NULL;
    ep_nats_pack_t *p;
    size_t k = 0;

    if (ep_event_batch_decode_pb_ex(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), NULL,
                                    EP_NATS_PACK_MAX, &evs, &k, NULL) != 0 ||
        k == 0) {
        if (evs != NULL) {
            ep_free(evs);
        }
        poison_out(ctx, msg, "undecodable: not a protobuf DataBatch", delivered);
        return 0;
    }
    if (delivered > limit) {
        char reason[128];

        for (size_t j = 0; j < k; j++) {
            ep_event_destroy(evs[j]);
        }
        ep_free(evs);
        snprintf(reason, sizeof(reason), "delivered %" PRIu64 " times without an acknowledgement",
                 delivered);
        poison_out(ctx, msg, reason, delivered);
        return 0;
    }
    p = ep_malloc(sizeof(*p));
    p->msg = msg;
    atomic_init(&p->left, (uint32_t)k);
    atomic_init(&p->nak_ms, -1);
    for (size_t j = 0; j < k; j++) {
        ep_event_t *ev = evs[j];

        ev->attempts = delivered > UINT32_MAX ? UINT32_MAX : (uint32_t)delivered;
        ev->qh = (void *)((uintptr_t)p | PACK_TAG);
        ev->qseq = seq;
        if (*got < max) {
            out[(*got)++] = ev;
        } else {
            extra_push(x, ev);
        }
    }
    ep_free(evs);
    return k;
}

/* Turns fetched messages into events: up to max in out (returns how many), the rest of
 * a packed message's events into the spare list. Call without fetch_lock. */
static size_t take_msgs(ep_nats_ctx_t *ctx, natsMsgList *list, ep_event_t **out, size_t max)
{
    uint64_t limit =
        (uint64_t)(ctx->cfg.max_attempts > 0 ? ctx->cfg.max_attempts : 1) + CRASH_MARGIN;
    size_t got = 0, events = 0;
    extra_t x = {0};

    for (int i = 0; i < list->Count; i++) {
        natsMsg *msg = list->Msgs[i];
        jsMsgMetaData *meta = NULL;
        const char *packed = NULL;
        ep_event_t *ev = NULL;
        uint64_t delivered = 1, seq = 0;

        list->Msgs[i] = NULL;
        if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
            delivered = meta->NumDelivered;
            seq = meta->Sequence.Stream;
            jsMsgMetaData_Destroy(meta);
        }
        if (natsMsgHeader_Get(msg, HDR_EVENTS, &packed) == NATS_OK) {
            events += take_pack(ctx, msg, delivered, limit, seq, out, &got, max, &x);
            continue;
        }
        if (ep_event_decode_pb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &ev) !=
            0) {
            poison_out(ctx, msg, "undecodable: not a protobuf DataMessage", delivered);
            continue;
        }
        if (delivered > limit) {
            char reason[128];

            snprintf(reason, sizeof(reason),
                     "delivered %" PRIu64 " times without an acknowledgement", delivered);
            ep_event_destroy(ev);
            poison_out(ctx, msg, reason, delivered);
            continue;
        }
        ev->attempts = delivered > UINT32_MAX ? UINT32_MAX : (uint32_t)delivered;
        ev->qh = msg;
        ev->qseq = seq;
        events++;
        if (got < max) {
            out[got++] = ev;
        } else {
            extra_push(&x, ev); /* after a packed message filled out */
        }
    }
    if (list->Count > 0) {
        /* Events per message, smoothed: the next pull asks for about max events' worth. */
        size_t cur = events / (size_t)list->Count;
        size_t was = atomic_load_explicit(&ctx->per_msg, memory_order_relaxed);

        atomic_store_explicit(&ctx->per_msg, (uint32_t)((3 * was + (cur ? cur : 1) + 3) / 4),
                              memory_order_relaxed);
    }
    if (x.n > 0) {
        spare_keep(ctx, &x);
    }
    return got;
}

/* Sleeps up to ms, stopping early once the queue is closed. */
static void nap(ep_nats_ctx_t *ctx, int64_t ms)
{
    while (ms > 0 && !atomic_load(&ctx->closed)) {
        int64_t step = ms < 50 ? ms : 50;
        ep_time_sleep_ms(step);
        ms -= step;
    }
}

/* Locks fetch_lock, waiting until deadline (mono ms). Returns 1 when locked. */
static int fetch_lock(ep_nats_ctx_t *ctx, int64_t deadline)
{
    struct timespec ts;
    int64_t wait = deadline - ep_time_mono_ms();

    if (pthread_mutex_trylock(&ctx->fetch_lock) == 0) {
        return 1;
    }
    if (wait <= 0) {
        return 0;
    }
    ep_time_deadline_ts(&ts, CLOCK_REALTIME, wait);
    return pthread_mutex_timedlock(&ctx->fetch_lock, &ts) == 0;
}

/* Counts out[0..got) as handed out; a replica durable remembers how far it read. */
static size_t taken(ep_nats_ctx_t *ctx, ep_event_t **out, size_t got)
{
    if (ctx->set.replica && got > 0) {
        /* One consumer thread reads a replica durable; a batch is in stream order. */
        uint64_t last = atomic_load(&ctx->replica_seq);

        for (size_t i = 0; i < got; i++) {
            last = out[i]->qseq > last ? out[i]->qseq : last;
        }
        atomic_store(&ctx->replica_seq, last);
    }
    ep_counter_add(&ctx->counts.dequeued, got);
    return got;
}

static int nats_consume(void *vctx, ep_event_t **out, size_t max, int timeout_ms)
{
    ep_nats_ctx_t *ctx = vctx;
    int64_t deadline = ep_time_mono_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    natsMsgList list = {0};
    jsFetchRequest req;
    natsStatus s;
    int64_t left;
    size_t got, per;

    /* Closed: what was fetched already is still handed out (its messages are ours). */
    if (atomic_load(&ctx->closed) && atomic_load(&ctx->spare_avail) == 0) {
        return EP_ECLOSED;
    }
    if (max == 0) {
        return 0;
    }
    if (!fetch_lock(ctx, deadline)) {
        return atomic_load(&ctx->closed) && atomic_load(&ctx->spare_avail) == 0 ? EP_ECLOSED : 0;
    }
    if (ctx->spare_n > ctx->spare_off) {
        got = spare_take(ctx, out, max);
        pthread_mutex_unlock(&ctx->fetch_lock);
        return (int)taken(ctx, out, got);
    }
    if (atomic_load(&ctx->closed)) {
        pthread_mutex_unlock(&ctx->fetch_lock);
        return EP_ECLOSED;
    }
    if (atomic_exchange(&ctx->consumer_recheck, 0)) {
        /* A pull request to a durable the server lacks just times out: look it up again. */
        ctx->consumer_ok = 0;
    }
    if (!ctx->consumer_ok && (!ep__nats_connected(ctx) || ep__nats_consumer_ensure(ctx) != 0)) {
        pthread_mutex_unlock(&ctx->fetch_lock);
        left = deadline - ep_time_mono_ms();
        nap(ctx, left < 250 ? left : 250);
        return atomic_load(&ctx->closed) ? EP_ECLOSED : 0;
    }
    /* What is there now, up to max, without waiting. */
    left = deadline - ep_time_mono_ms();
    jsFetchRequest_Init(&req);
    /* Packed messages carry per_msg events each, so fewer messages are asked for. */
    per = atomic_load_explicit(&ctx->per_msg, memory_order_relaxed);
    per = per > 1 ? (FETCH_AHEAD * max + per - 1) / per : max;
    req.Batch = (int)(per > EP_NATS_FETCH_MAX ? EP_NATS_FETCH_MAX : per > 0 ? per : 1);
    req.NoWait = true;
    req.Expires = (int64_t)(left > 1000 ? left : 1000) * 1000000;
    s = natsSubscription_FetchRequest(&list, ctx->sub, &req);
    if (s != NATS_OK && list.Count == 0 && (s == NATS_NOT_FOUND || s == NATS_TIMEOUT)) {
        /* Nothing yet: wait for the first message only, so it is handed out at once. */
        left = deadline - ep_time_mono_ms();
        if (left > 0) {
            natsMsgList_Destroy(&list);
            jsFetchRequest_Init(&req);
            req.Batch = 1;
            req.Expires = left * 1000000;
            s = natsSubscription_FetchRequest(&list, ctx->sub, &req);
        }
    }
    if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_NOT_FOUND && list.Count == 0) {
        /* The consumer or the stream may be gone (server restarted empty): check again. */
        const char *why = nats_GetLastError(NULL);

        ctx->consumer_ok = 0;
        if (ep__nats_connected(ctx)) {
            /* While disconnected the disconnection itself was logged. */
            ep__nats_note_error(ctx, "NATS fetch from consumer %s failed: %s", ctx->set.durable,
                                why && *why ? why : natsStatus_GetText(s));
        }
    }
    if (list.Count == 0) {
        pthread_mutex_unlock(&ctx->fetch_lock);
        natsMsgList_Destroy(&list);
        if (s != NATS_OK && s != NATS_TIMEOUT && s != NATS_NOT_FOUND) {
            left = deadline - ep_time_mono_ms();
            nap(ctx, left < 250 ? left : 250);
        }
        return 0;
    }
    pthread_mutex_unlock(&ctx->fetch_lock);
    got = take_msgs(ctx, &list, out, max);
    natsMsgList_Destroy(&list);
    return (int)taken(ctx, out, got);
}

static int nats_ack(void *vctx, ep_event_t **evs, size_t n)
{
    ep_nats_ctx_t *ctx = vctx;
    uint64_t failed = 0;
    natsMsg *last = NULL;
    jsOptions o;

    jsOptions_Init(&o);
    o.Wait = EP_NATS_API_WAIT_MS;
    for (size_t i = 0; i < n; i++) {
        ep_nats_pack_t *p = ev_pack(evs[i]);
        /* A packed message is acknowledged with the last of its events. */
        natsMsg *msg = p ? pack_put(p, -1) : evs[i]->qh;

        ep_event_destroy(evs[i]);
        if (msg == NULL) {
            continue;
        }
        /*
         * Plain acks, and a synchronous one for the last message of the call:
         * the server handles a connection's acks in order, so its reply
         * confirms them all for one round trip. A lost ack means a redelivery
         * (at-least-once), never a loss.
         */
        if (last != NULL) {
            failed += natsMsg_Ack(last, NULL) != NATS_OK;
            natsMsg_Destroy(last);
        }
        last = msg;
    }
    if (last != NULL) {
        failed += natsMsg_AckSync(last, &o, NULL) != NATS_OK;
        natsMsg_Destroy(last);
    }
    ep_counter_add(&ctx->counts.acked, n);
    if (failed) {
        ep_counter_add(&ctx->ack_failed, failed);
        ep__nats_note_error(
            ctx, "NATS ack of %" PRIu64 " messages failed; they will be redelivered", failed);
        return EP_EUNAVAIL;
    }
    return 0;
}

static int nats_nack(void *vctx, ep_event_t **evs, size_t n, int delay_ms)
{
    ep_nats_ctx_t *ctx = vctx;

    for (size_t i = 0; i < n; i++) {
        ep_nats_pack_t *p = ev_pack(evs[i]);
        natsMsg *msg = evs[i]->qh;

        if (p != NULL) {
            /* The whole message comes back, with the events already done. */
            pack_put(p, delay_ms > 0 ? delay_ms : 0);
        } else {
            if (delay_ms > 0) {
                natsMsg_NakWithDelay(msg, delay_ms, NULL);
            } else {
                natsMsg_Nak(msg, NULL);
            }
            natsMsg_Destroy(msg);
        }
        ep_event_destroy(evs[i]);
    }
    ep_counter_add(&ctx->counts.nacked, n);
    return 0;
}

/*
 * Publishes each event (protobuf, with reason and attempts headers) to the
 * dead-letter subject, waits for its PubAck and acks the original. An event
 * whose dead-letter publish fails is nacked with a delay instead: it comes
 * back, still out of attempts, and is dead-lettered then; so this returns 0
 * and never lets the caller drop an event.
 */
static int nats_dead_letter(void *vctx, ep_event_t **evs, size_t n, const char *reason)
{
    ep_nats_ctx_t *ctx = vctx;
    ep_buf_t buf = EP_BUF_INIT;
    char msg_id[160];

    for (size_t i = 0; i < n; i++) {
        ep_event_t *ev = evs[i];
        ep_nats_pack_t *p = ev_pack(ev);
        natsMsg *orig = ev_msg(ev), *m = build_msg(ctx->set.dlq_subject, ev, &buf);
        int rc = EP_ENOMEM;

        if (m != NULL) {
            dlq_headers(m, orig, reason ? reason : "failed", ev->attempts, msg_id, sizeof(msg_id));
            if (p != NULL && msg_id[0]) {
                /* The events of a packed message share its sequence: tell them apart. */
                size_t l = strlen(msg_id);
                uint64_t h = 0xcbf29ce484222325ull;

                for (size_t j = 0; j < ev->id.len; j++) {
                    h = (h ^ (unsigned char)ev->id.p[j]) * 0x100000001b3ull;
                }
                snprintf(msg_id + l, sizeof(msg_id) - l, "-%016" PRIx64, h);
            }
            if (header_safe(ev->id.p, ev->id.len)) {
                natsMsgHeader_Set(m, HDR_EVENT_ID, ev->id.p);
            }
            rc = dlq_publish(ctx, m, msg_id[0] ? msg_id : NULL);
            natsMsg_Destroy(m);
        }
        if (p != NULL) {
            /* Done with, as an ack; or the message comes back, and this event is
             * dead-lettered then. */
            orig = pack_put(p, rc == 0 ? -1 : DLQ_RETRY_MS);
            if (orig != NULL) {
                natsMsg_Ack(orig, NULL);
            }
        } else if (rc == 0) {
            natsMsg_Ack(orig, NULL);
        } else {
            natsMsg_NakWithDelay(orig, DLQ_RETRY_MS, NULL);
        }
        if (rc == 0) {
            ep_counter_add(&ctx->dead_lettered, 1);
            ep_counter_add(&ctx->counts.acked, 1); /* done with, as an ack */
        } else {
            ep_counter_add(&ctx->counts.nacked, 1);
        }
        natsMsg_Destroy(orig);
        ep_event_destroy(ev);
        evs[i] = NULL;
    }
    ep_buf_close(&buf);
    return 0;
}

static void nats_stats(void *vctx, ep_queue_stats_t *st)
{
    ep_nats_ctx_t *ctx = vctx;

    ep_queue_counters_read(&ctx->counts, st);
    /* While disconnected the last figure is stale: unknown. */
    st->size = ep__nats_connected(ctx)
                   ? atomic_load_explicit(&ctx->num_pending, memory_order_relaxed)
                   : -1;
}

/* Appends the server in use (of the NATS_URL list), without user or password, or null. */
static void put_server(ep_nats_ctx_t *ctx, ep_buf_t *out)
{
    char url[256] = "", shown[256];
    const char *host, *at;
    int n;

    if (natsConnection_GetConnectedUrl(ctx->nc, url, sizeof(url)) != NATS_OK || url[0] == '\0') {
        ep_buf_puts(out, "null");
        return;
    }
    host = strstr(url, "://");
    host = host ? host + 3 : url;
    at = strrchr(host, '@');
    n = snprintf(shown, sizeof(shown), "%.*s%s", (int)(host - url), url, at ? at + 1 : host);
    ep_buf_put_json_str(out, shown, n < (int)sizeof(shown) ? (size_t)n : sizeof(shown) - 1);
}

static void nats_stats_json(void *vctx, ep_buf_t *out)
{
    ep_nats_ctx_t *ctx = vctx;

    ep_buf_printf(
        out, ",\"nats\":{\"connected\":%s,\"server\":", ep__nats_connected(ctx) ? "true" : "false");
    put_server(ctx, out);
    ep_buf_printf(
        out, ",\"stream_ready\":%s,\"stream\":", atomic_load(&ctx->stream_ok) ? "true" : "false");
    ep_buf_put_json_str(out, ctx->set.stream, strlen(ctx->set.stream));
    ep_buf_printf(out,
                  ",\"stream_messages\":%" PRId64 ",\"pending\":%" PRId64
                  ",\"ack_pending\":%" PRId64 ",\"redelivered\":%" PRId64
                  ",\"dead_lettered\":%" PRIu64 ",\"poison\":%" PRIu64
                  ",\"publish_failed\":%" PRIu64 ",\"ack_failed\":%" PRIu64 "}",
                  atomic_load(&ctx->stream_msgs), atomic_load(&ctx->num_pending),
                  atomic_load(&ctx->num_ack_pending), atomic_load(&ctx->num_redelivered),
                  ep_counter_get(&ctx->dead_lettered), ep_counter_get(&ctx->poison),
                  ep_counter_get(&ctx->publish_failed), ep_counter_get(&ctx->ack_failed));
}

static void nats_lag_json(void *vctx, ep_buf_t *out)
{
    ep_nats_ctx_t *ctx = vctx;
    int64_t pending = atomic_load(&ctx->num_pending);

    ep_buf_printf(out,
                  "{\"total\":%" PRId64 ",\"pending\":%" PRId64 ",\"ack_pending\":%" PRId64
                  ",\"stream\":",
                  pending, pending, atomic_load(&ctx->num_ack_pending));
    ep_buf_put_json_str(out, ctx->set.stream, strlen(ctx->set.stream));
    ep_buf_puts(out, ",\"durable\":");
    ep_buf_put_json_str(out, ctx->set.durable, strlen(ctx->set.durable));
    ep_buf_putc(out, '}');
}

static int nats_ready(void *vctx, char *reason, size_t len)
{
    ep_nats_ctx_t *ctx = vctx;

    if (atomic_load(&ctx->closed)) {
        snprintf(reason, len, "queue closed");
        return 0;
    }
    if (!ep__nats_connected(ctx)) {
        snprintf(reason, len, "NATS disconnected from %s: reconnecting", ctx->set.url);
        return 0;
    }
    if (!atomic_load(&ctx->stream_ok)) {
        pthread_mutex_lock(&ctx->lock);
        snprintf(reason, len, "NATS stream %s not confirmed yet (%s)", ctx->set.stream,
                 ctx->last_error);
        pthread_mutex_unlock(&ctx->lock);
        return 0;
    }
    return 1;
}

static int nats_flush(void *vctx, int timeout_ms)
{
    ep_nats_ctx_t *ctx = vctx;
    jsPubOptions po;

    jsPubOptions_Init(&po);
    po.MaxWait = timeout_ms > 0 ? timeout_ms : 1;
    return js_PublishAsyncComplete(ctx->js, &po) == NATS_OK ? 0 : EP_ETIMEDOUT;
}

static void nats_close(void *vctx)
{
    ep_nats_ctx_t *ctx = vctx;

    if (atomic_exchange(&ctx->closed, 1)) {
        return;
    }
    /* Publishes already under way get their answers (each is bounded by its MaxWait). */
    nats_flush(ctx, ctx->cfg.upstream_timeout_ms);
}

static void nats_destroy(void *vctx)
{
    ep__nats_ctx_destroy(vctx);
}

/* The provider, registered by ep_queue.c when built with EP_WITH_NATS. */
const ep_queue_provider_t ep_queue_nats_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "nats",
    .flags = 0,
    .init = nats_init,
    .publish = nats_publish,
    .consume = nats_consume,
    .ack = nats_ack,
    .nack = nats_nack,
    .stats = nats_stats,
    .stats_json = nats_stats_json,
    .ready = nats_ready,
    .flush = nats_flush,
    .close = nats_close,
    .destroy = nats_destroy,
    .dead_letter = nats_dead_letter,
    .lag_json = nats_lag_json,
    .options = &ep__nats_options,
    .own_consumer = ep__nats_own_consumer,
};
