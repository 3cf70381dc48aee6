/*
 * NATS JetStream provider: context create and destroy, the connection, the
 * stream and the durable consumer, and the keeper thread.
 *
 * The connection retries for ever (first connect included): a server that is
 * down at start-up is a readiness problem, not a configuration error. The
 * keeper thread makes sure the stream exists after every (re)connect and
 * refreshes the stream and consumer figures once a second; ready() only reads
 * flags, so /ready never blocks on the broker.
 *
 * Stream policy, when we create the stream (an existing one is used as is):
 * subjects "<prefix>.*" so the dead-letter subject lives in the same stream,
 * file storage, Limits retention, DiscardNew, MaxAge 24 h, MaxBytes 8 GiB.
 * WorkQueue retention would delete a message on its first ack, which rules
 * out a second durable (analytics) on the same subject; Interest retention
 * drops messages published while no consumer exists yet (an ingest started
 * before its processors) and the dead-letter subject, which nobody consumes.
 * DiscardNew because DiscardOld would silently drop the oldest messages,
 * acknowledged or not, once the stream is full; with DiscardNew a full stream
 * refuses publishes (EP_EFULL, a 503 to the client) instead.
 */
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "queue/nats/ep_queue_nats_int.h"
#include "base/ep_str.h"
#include "base/ep_time.h"

#include <ctype.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RECONNECT_MIN_MS 250
#define RECONNECT_MAX_MS 2000
#define KEEPER_FAST_MS   250 /* keeper period while the stream is not confirmed */
#define WARN_EVERY_MS    5000

/* ------------------------------------------------------------ helpers */

/*
 * Records a problem as the context's last error (shown by ready()) and logs it
 * as a warning at most every WARN_EVERY_MS. Thread-safe; never blocks on NATS.
 */
void ep__nats_note_error(ep_nats_ctx_t *ctx, const char *fmt, ...)
{
    char msg[sizeof(ctx->last_error)];
    int64_t now = ep_time_mono_ms();
    int64_t last = atomic_load_explicit(&ctx->last_warn_ms, memory_order_relaxed);
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&ctx->lock);
    snprintf(ctx->last_error, sizeof(ctx->last_error), "%s", msg);
    pthread_mutex_unlock(&ctx->lock);
    if (now - last >= WARN_EVERY_MS &&
        atomic_compare_exchange_strong_explicit(&ctx->last_warn_ms, &last, now,
                                                memory_order_relaxed, memory_order_relaxed)) {
        ep_log_warn("nats", "%s", msg);
    }
}

/* Returns 1 when the connection is up, else 0. Thread-safe, cheap (one nats.c lock). */
int ep__nats_connected(ep_nats_ctx_t *ctx)
{
    return natsConnection_Status(ctx->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* Wakes the keeper thread to look at the stream now. Thread-safe, callable from callbacks. */
void ep__nats_kick(ep_nats_ctx_t *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    atomic_store(&ctx->wake, 1);
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->lock);
}

/* The text nats.c recorded for the last error of this thread. */
static const char *nats_error_text(natsStatus s)
{
    const char *txt = nats_GetLastError(NULL);

    return txt && *txt ? txt : natsStatus_GetText(s);
}

/*
 * Checks NATS_URL: a comma-separated list of [nats|tls://][user[:pass]@]host[:port].
 * Returns 1 when usable, else 0 with the reason in why.
 */
static int url_valid(const char *url, char *why, size_t len)
{
    const char *p = url;
    int servers = 0;

    if (*url == '\0') {
        snprintf(why, len, "empty");
        return 0;
    }
    while (*p) {
        const char *end = strchr(p, ','), *host, *at, *colon, *hend;
        size_t n;

        if (end == NULL) {
            end = p + strlen(p);
        }
        while (p < end && isspace((unsigned char)*p)) {
            p++;
        }
        n = (size_t)(end - p);
        if (n > 0 && ++servers > EP_NATS_MAX_SERVERS) {
            snprintf(why, len, "more than %d servers", EP_NATS_MAX_SERVERS);
            return 0;
        }
        host = strstr(p, "://");
        if (host != NULL && host < end) {
            size_t slen = (size_t)(host - p);
            if (!((slen == EP_STRLEN("nats") && strncasecmp(p, EP_STRLIT("nats")) == 0) ||
                  (slen == EP_STRLEN("tls") && strncasecmp(p, EP_STRLIT("tls")) == 0))) {
                snprintf(why, len, "unsupported scheme '%.*s' (use nats:// or tls://)", (int)slen,
                         p);
                return 0;
            }
            host += 3;
        } else {
            host = p;
        }
        at = memchr(host, '@', (size_t)(end - host));
        if (at != NULL) {
            host = at + 1;
        }
        hend = end;
        while (hend > host && isspace((unsigned char)hend[-1])) {
            hend--;
        }
        if (host < hend && *host == '[') {
            colon = memchr(host, ']', (size_t)(hend - host));
            if (colon == NULL) {
                snprintf(why, len, "unterminated IPv6 address in '%.*s'", (int)n, p);
                return 0;
            }
            colon = colon + 1 < hend ? colon + 1 : NULL;
        } else {
            colon = memchr(host, ':', (size_t)(hend - host));
            for (const char *c = host; c < (colon ? colon : hend); c++) {
                if (!isalnum((unsigned char)*c) && *c != '.' && *c != '-' && *c != '_') {
                    snprintf(why, len, "bad host name in '%.*s'", (int)n, p);
                    return 0;
                }
            }
        }
        if ((colon ? colon : hend) == host) {
            snprintf(why, len, "no host in '%.*s'", (int)n, p);
            return 0;
        }
        if (colon != NULL) {
            long port = 0;
            const char *c = colon + 1;

            if (*colon != ':' || c == hend) {
                snprintf(why, len, "bad port in '%.*s'", (int)n, p);
                return 0;
            }
            for (; c < hend; c++) {
                if (!isdigit((unsigned char)*c) || (port = port * 10 + (*c - '0')) > 65535) {
                    snprintf(why, len, "bad port in '%.*s'", (int)n, p);
                    return 0;
                }
            }
            if (port == 0) {
                snprintf(why, len, "bad port in '%.*s'", (int)n, p);
                return 0;
            }
        }
        p = *end ? end + 1 : end;
    }
    return 1;
}

/*
 * Hands the NATS_URL list to nats.c as its server pool. natsOptions_SetURL
 * takes one URL: given "nats://a:4222,nats://b:4222" it parses the whole
 * string as a single address and no connect ever succeeds. Each entry is
 * trimmed and gets "nats://" when it has no scheme (url_valid accepts
 * "host:port"); empty entries (a trailing comma) are skipped. The order is
 * kept (no randomizing): the first reachable server of the list is used, so
 * every eventpipe process given the same list settles on the same server,
 * which a fallback list of independent JetStream servers needs (they share
 * no streams); in a cluster any server is as good. Returns a nats.c status.
 */
static natsStatus set_servers(natsOptions *opts, const char *list)
{
    char *urls[EP_NATS_MAX_SERVERS];
    int n = 0;
    natsStatus s = NATS_OK;

    for (const char *p = list; *p && s == NATS_OK;) {
        const char *end = strchr(p, ','), *b = p, *e;

        if (end == NULL) {
            end = p + strlen(p);
        }
        e = end;
        while (b < e && isspace((unsigned char)*b)) {
            b++;
        }
        while (e > b && isspace((unsigned char)e[-1])) {
            e--;
        }
        if (b < e) {
            int scheme = memmem(b, (size_t)(e - b), EP_STRLIT("://")) != NULL;
            size_t len = (size_t)(e - b) + (scheme ? 0 : 7) + 1;

            if (n == EP_NATS_MAX_SERVERS) {
                s = NATS_INVALID_ARG;
                break;
            }
            urls[n] = ep_malloc(len);
            snprintf(urls[n], len, "%s%.*s", scheme ? "" : "nats://", (int)(e - b), b);
            n++;
        }
        p = *end ? end + 1 : end;
    }
    if (s == NATS_OK) {
        s = natsOptions_SetServers(opts, (const char **)urls, n);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetNoRandomize(opts, true);
    }
    for (int i = 0; i < n; i++) {
        ep_free(urls[i]);
    }
    return s;
}

/* ------------------------------------------------------------ connection callbacks */

static void on_disconnected(natsConnection *nc, void *closure)
{
    ep_nats_ctx_t *ctx = closure;

    atomic_store(&ctx->stream_ok, 0);
    if (!atomic_load(&ctx->stopping)) {
        /* Once per disconnection: logged every time, not rate-limited. */
        pthread_mutex_lock(&ctx->lock);
        snprintf(ctx->last_error, sizeof(ctx->last_error),
                 "NATS disconnected from %s: reconnecting", ctx->set.url);
        pthread_mutex_unlock(&ctx->lock);
        ep_log_warn("nats", "disconnected from %s; reconnecting for ever", ctx->set.url);
    }
}

static void on_connected(natsConnection *nc, void *closure)
{
    ep_nats_ctx_t *ctx = closure;
    char url[256] = "";

    natsConnection_GetConnectedUrl(nc, url, sizeof(url));
    ep_log_info("nats", "connected to %s", url);
    atomic_store(&ctx->consumer_recheck, 1);
    ep__nats_kick(ctx);
}

static void on_closed(natsConnection *nc, void *closure)
{
    ep_nats_ctx_t *ctx = closure;

    pthread_mutex_lock(&ctx->lock);
    ctx->conn_closed = 1;
    pthread_cond_broadcast(&ctx->cond);
    pthread_mutex_unlock(&ctx->lock);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    ep__nats_note_error(closure, "NATS asynchronous error: %s", natsStatus_GetText(err));
}

/* Backoff between reconnect rounds: 250 ms doubling to 2 s, with up to 20% jitter. */
static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
    int64_t d = RECONNECT_MIN_MS;

    for (int i = 1; i < attempts && d < RECONNECT_MAX_MS; i++) {
        d *= 2;
    }
    if (d > RECONNECT_MAX_MS) {
        d = RECONNECT_MAX_MS;
    }
    return d + (int64_t)(ep_time_mono_ns() % (uint64_t)(d / 5 + 1));
}

/* ------------------------------------------------------------ stream and consumer */

/* Builds "<prefix>.*" from the subject "<prefix>.<name>" into out. */
static void stream_subject(const char *subject, char *out, size_t len)
{
    const char *dot = strrchr(subject, '.');

    if (dot == NULL) {
        snprintf(out, len, "%s", subject);
    } else {
        snprintf(out, len, "%.*s.*", (int)(dot - subject), subject);
    }
}

static void api_opts(jsOptions *o)
{
    jsOptions_Init(o);
    o->Wait = EP_NATS_API_WAIT_MS;
}

/* Reads the stream's message count into ctx->stream_msgs; the lookup's status. */
static natsStatus stream_msgs(ep_nats_ctx_t *ctx, jsOptions *o, jsErrCode *jerr)
{
    jsStreamInfo *si = NULL;
    natsStatus s = js_GetStreamInfo(&si, ctx->js, ctx->set.stream, o, jerr);

    if (s == NATS_OK) {
        atomic_store(&ctx->stream_msgs, (int64_t)si->State.Msgs);
        jsStreamInfo_Destroy(si);
    }
    return s;
}

/* Finds or creates the stream. Returns 0 or EP_EUNAVAIL (noted). Any thread. */
static int stream_ensure(ep_nats_ctx_t *ctx)
{
    jsStreamInfo *si = NULL;
    jsStreamConfig sc;
    jsErrCode jerr = 0;
    jsOptions o;
    char subj[160];
    const char *subjects[1];
    natsStatus s;

    api_opts(&o);
    s = stream_msgs(ctx, &o, &jerr);
    if (s == NATS_OK) {
        return 0;
    }
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr) {
        ep__nats_note_error(ctx, "NATS stream %s: %s", ctx->set.stream, nats_error_text(s));
        return EP_EUNAVAIL;
    }
    stream_subject(ctx->set.subject, subj, sizeof(subj));
    subjects[0] = subj;
    jsStreamConfig_Init(&sc);
    sc.Name = ctx->set.stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_LimitsPolicy;
    sc.Discard = js_DiscardNew;
    sc.Storage = js_FileStorage;
    sc.MaxAge = EP_NATS_STREAM_MAX_AGE;
    sc.MaxBytes = EP_NATS_STREAM_MAX_SIZE;
    sc.MaxMsgs = -1;
    sc.Replicas = ctx->set.replicas;
    jerr = 0;
    s = js_AddStream(&si, ctx->js, &sc, &o, &jerr);
    if (s == NATS_OK || jerr == JSStreamNameExistErr) {
        ep_log_info("nats", "stream %s %s (subjects %s)", ctx->set.stream,
                    s == NATS_OK ? "created" : "exists", subj);
        jsStreamInfo_Destroy(si);
        return 0;
    }
    ep__nats_note_error(ctx, "NATS cannot create stream %s (subjects %s): %s", ctx->set.stream,
                        subj, nats_error_text(s));
    return EP_EUNAVAIL;
}

/*
 * Finds or creates the durable pull consumer and binds the subscription to it
 * (once; a rebound consumer keeps the same subscription). Returns 0, or
 * EP_EUNAVAIL with the reason noted. Call with fetch_lock held; blocks for at
 * most a few JetStream API round trips (EP_NATS_API_WAIT_MS each).
 */
int ep__nats_consumer_ensure(ep_nats_ctx_t *ctx)
{
    jsConsumerInfo *ci = NULL;
    jsConsumerConfig cc;
    jsSubOptions so;
    jsErrCode jerr = 0;
    jsOptions o;
    natsStatus s;

    api_opts(&o);
    s = js_GetConsumerInfo(&ci, ctx->js, ctx->set.stream, ctx->set.durable, &o, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr || jerr == JSStreamNotFoundErr) {
        if (jerr == JSStreamNotFoundErr && stream_ensure(ctx) != 0) {
            return EP_EUNAVAIL;
        }
        jsConsumerConfig_Init(&cc);
        cc.Durable = ctx->set.durable;
        cc.AckPolicy = js_AckExplicit;
        cc.DeliverPolicy = js_DeliverAll;
        cc.FilterSubject = ctx->set.subject;
        cc.AckWait = (int64_t)EP_NATS_ACK_WAIT_MS * 1000000;
        /*
         * Unlimited deliveries: the worker pool dead-letters an event once its
         * attempts (NumDelivered) reach PROCESSOR_MAX_ATTEMPTS, and consume
         * dead-letters a message that keeps coming back unacknowledged
         * (a processor crashing on it). A server-side MaxDeliver would
         * instead leave such a message in the stream, undelivered and
         * unreported.
         */
        cc.MaxDeliver = -1;
        cc.MaxAckPending = 20000;
        cc.Replicas = ctx->set.replicas;
        if (ctx->set.replica) {
            /* This process's alone: gone after it stops pulling; made again (the server
             * removed it during a long disconnection) from the next unread sequence. */
            uint64_t last = atomic_load(&ctx->replica_seq);

            cc.InactiveThreshold = (int64_t)EP_NATS_REPLICA_IDLE_MS * 1000000;
            if (last > 0) {
                cc.DeliverPolicy = js_DeliverByStartSequence;
                cc.OptStartSeq = last + 1;
            }
        }
        jerr = 0;
        s = js_AddConsumer(&ci, ctx->js, ctx->set.stream, &cc, &o, &jerr);
        if (s != NATS_OK && jerr != JSConsumerNameExistErr && jerr != JSConsumerExistingActiveErr) {
            ep__nats_note_error(ctx, "NATS cannot create consumer %s on %s: %s", ctx->set.durable,
                                ctx->set.stream, nats_error_text(s));
            return EP_EUNAVAIL;
        }
        if (s == NATS_OK) {
            ep_log_info("nats", "durable consumer %s created on %s (filter %s)", ctx->set.durable,
                        ctx->set.stream, ctx->set.subject);
        }
    } else if (s != NATS_OK) {
        ep__nats_note_error(ctx, "NATS consumer %s: %s", ctx->set.durable, nats_error_text(s));
        return EP_EUNAVAIL;
    }
    jsConsumerInfo_Destroy(ci);
    if (ctx->sub == NULL) {
        /* Bind to the durable as it is (its settings are the operator's if it existed). */
        jsSubOptions_Init(&so);
        so.Stream = ctx->set.stream;
        so.Consumer = ctx->set.durable;
        so.ManualAck = true;
        s = js_PullSubscribe(&ctx->sub, ctx->js, NULL, ctx->set.durable, &o, &so, &jerr);
        if (s != NATS_OK) {
            ctx->sub = NULL;
            ep__nats_note_error(ctx, "NATS cannot subscribe to consumer %s: %s", ctx->set.durable,
                                nats_error_text(s));
            return EP_EUNAVAIL;
        }
        natsSubscription_SetPendingLimits(ctx->sub, -1, -1);
    }
    ctx->consumer_ok = 1;
    return 0;
}

/* Reads the stream and consumer figures. Keeper thread only. */
static void refresh_figures(ep_nats_ctx_t *ctx)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    jsOptions o;
    natsStatus s;

    api_opts(&o);
    s = stream_msgs(ctx, &o, &jerr);
    if (s != NATS_OK && (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)) {
        /* Deleted behind our back (or a server with a fresh store): recreate it. */
        atomic_store(&ctx->stream_ok, 0);
        atomic_store(&ctx->stream_msgs, -1);
        ep__nats_note_error(ctx, "NATS stream %s disappeared; recreating it", ctx->set.stream);
        return;
    }
    jerr = 0;
    s = js_GetConsumerInfo(&ci, ctx->js, ctx->set.stream, ctx->set.durable, &o, &jerr);
    if (s == NATS_OK) {
        atomic_store(&ctx->num_pending, (int64_t)ci->NumPending);
        atomic_store(&ctx->num_ack_pending, ci->NumAckPending);
        atomic_store(&ctx->num_redelivered, ci->NumRedelivered);
        jsConsumerInfo_Destroy(ci);
    } else if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
        atomic_store(&ctx->consumer_recheck, 1);
        atomic_store(&ctx->num_pending, -1);
        atomic_store(&ctx->num_ack_pending, -1);
        atomic_store(&ctx->num_redelivered, -1);
    }
}

static void *keeper_main(void *arg)
{
    ep_nats_ctx_t *ctx = arg;
    int64_t next_info = 0;

    while (!atomic_load(&ctx->stopping)) {
        struct timespec ts;
        int64_t wait_ms;

        if (ep__nats_connected(ctx)) {
            if (!atomic_load(&ctx->stream_ok) && stream_ensure(ctx) == 0) {
                char url[256] = "";

                atomic_store(&ctx->stream_ok, 1);
                next_info = 0;
                natsConnection_GetConnectedUrl(ctx->nc, url, sizeof(url));
                ep_log_info("nats", "ready: stream %s on %s", ctx->set.stream, url);
            }
            if (atomic_load(&ctx->stream_ok) && ep_time_mono_ms() >= next_info) {
                refresh_figures(ctx);
                next_info = ep_time_mono_ms() + EP_NATS_INFO_PERIOD_MS;
            }
        }
        wait_ms = atomic_load(&ctx->stream_ok) ? EP_NATS_INFO_PERIOD_MS : KEEPER_FAST_MS;
        ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, wait_ms);
        pthread_mutex_lock(&ctx->lock);
        while (!atomic_load(&ctx->wake) && !atomic_load(&ctx->stopping)) {
            if (pthread_cond_timedwait(&ctx->cond, &ctx->lock, &ts) != 0) {
                break;
            }
        }
        atomic_store(&ctx->wake, 0);
        pthread_mutex_unlock(&ctx->lock);
    }
    return NULL;
}

/* ------------------------------------------------------------ settings */

#define S(f) offsetof(ep_nats_opts_t, f), sizeof(((ep_nats_opts_t *)0)->f)

static const ep_opt_t nats_opt_rows[] = {
    {EP_OPT_URL, "NATS_URL", "nats-url", "nats://localhost:4222", S(url), 0, 0, NULL,
     "NATS server, or a comma-separated list (first reachable, in order)"},
    {EP_OPT_STR, "NATS_STREAM", "nats-stream", "DIPLOM_STREAM", S(stream), 0, 0, NULL,
     "JetStream stream (subjects diplom.*)"},
    {EP_OPT_STR, "NATS_SUBJECT", "nats-subject", "diplom.messages", S(subject), 0, 0, NULL,
     "subject events are published to"},
    {EP_OPT_STR, "NATS_DURABLE", "nats-durable", "processor", S(durable), 0, 0, NULL,
     "durable pull consumer shared by processors"},
    {EP_OPT_STR, "NATS_DLQ_SUBJECT", "nats-dlq-subject", "diplom.dlq", S(dlq_subject), 0, 0, NULL,
     "subject of dead-lettered events"},
    {EP_OPT_INT, "NATS_STREAM_REPLICAS", "nats-stream-replicas", "1",
     offsetof(ep_nats_opts_t, replicas), 0, 1, 5, NULL,
     "replicas of the stream and of the consumers eventpipe creates (3 on a 3-node JetStream "
     "cluster; a single server takes 1)"},
    {EP_OPT_INT, "NATS_BATCH_EVENTS", "nats-batch-events", "1",
     offsetof(ep_nats_opts_t, batch_events), 0, 1, EP_NATS_PACK_MAX, NULL,
     "most events in one published message (a DataBatch): 1 keeps one DataMessage per event, "
     "as the seed; 100 costs the server a hundredth per event, and a failed or unacked "
     "message redelivers all of its events"},
};

#undef S

const ep_opt_table_t ep__nats_options = {
    .name = "nats",
    .opts = nats_opt_rows,
    .n_opts = sizeof(nats_opt_rows) / sizeof(nats_opt_rows[0]),
    .size = sizeof(ep_nats_opts_t),
};

int ep__nats_own_consumer(void *opts, const char *name, char *err, size_t errlen)
{
    ep_nats_opts_t *o = opts;
    char durable[sizeof(o->durable)];

    if (name[0] == '\0' || strpbrk(name, ". *>") != NULL) {
        snprintf(err, errlen,
                 "NATS_DURABLE: consumer name '%s' is empty or has '.', ' ', '*' or '>'", name);
        return EP_EINVAL;
    }
    /* 30 + 1 + 16 + 1 + 12 characters: within NATS_DURABLE's 63. */
    snprintf(durable, sizeof(durable), "%.30s-%.16s-%s", o->durable, name, ep_queue_instance_tag());
    memcpy(o->durable, durable, sizeof(durable));
    o->replica = 1;
    return 0;
}

/* ------------------------------------------------------------ create / destroy */

/*
 * Creates the provider context from cfg (copied): checks NATS_URL and the names
 * (EP_ECONFIG with a message naming the variable), connects with reconnects
 * for ever (a server that is down is not an error), ensures the stream when
 * connected, starts the keeper thread. Returns 0 and *out (free with
 * ep__nats_ctx_destroy), or EP_E* with err filled and nothing left behind.
 */
int ep__nats_ctx_create(const ep_config_t *cfg, const ep_nats_opts_t *set, ep_nats_ctx_t **out,
                        char *err, size_t errlen)
{
    ep_nats_ctx_t *ctx;
    pthread_condattr_t ca;
    jsOptions jo;
    char why[160];
    natsStatus s;
    int rc;

    *out = NULL;
    if (!url_valid(set->url, why, sizeof(why))) {
        snprintf(err, errlen, "NATS_URL: '%s' is not a usable NATS URL: %s", set->url, why);
        return EP_ECONFIG;
    }
    if (set->stream[0] == '\0' || set->subject[0] == '\0' || set->durable[0] == '\0' ||
        set->dlq_subject[0] == '\0') {
        snprintf(err, errlen,
                 "NATS_STREAM, NATS_SUBJECT, NATS_DURABLE and NATS_DLQ_SUBJECT "
                 "must not be empty");
        return EP_ECONFIG;
    }
    if (strpbrk(set->durable, ". *>") != NULL) {
        snprintf(err, errlen, "NATS_DURABLE: '%s' must not contain '.', ' ', '*' or '>'",
                 set->durable);
        return EP_ECONFIG;
    }
    ctx = ep_calloc(1, sizeof(*ctx));
    ctx->cfg = *cfg;
    ctx->set = *set;
    if (ctx->set.batch_events < 1 || ctx->set.batch_events > EP_NATS_PACK_MAX) {
        ctx->set.batch_events = 1; /* an options struct not filled by the table */
    }
    atomic_init(&ctx->per_msg, 1);
    pthread_mutex_init(&ctx->pub_lock, NULL);
    pthread_mutex_init(&ctx->fetch_lock, NULL);
    pthread_mutex_init(&ctx->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&ctx->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&ctx->stream_msgs, -1);
    atomic_init(&ctx->num_pending, -1);
    atomic_init(&ctx->num_ack_pending, -1);
    atomic_init(&ctx->num_redelivered, -1);
    atomic_init(&ctx->last_warn_ms, -WARN_EVERY_MS);
    snprintf(ctx->last_error, sizeof(ctx->last_error), "NATS connecting to %s", set->url);

    s = natsOptions_Create(&ctx->opts);
    if (s == NATS_OK) {
        s = set_servers(ctx->opts, set->url);
        if (s != NATS_OK) {
            snprintf(err, errlen, "NATS_URL: '%s' is not a usable NATS URL: %s", set->url,
                     nats_error_text(s));
            rc = EP_ECONFIG;
            goto err;
        }
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(ctx->opts, "eventpipe");
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(ctx->opts, -1);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(ctx->opts, RECONNECT_MIN_MS);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetCustomReconnectDelay(ctx->opts, reconnect_delay, ctx);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetRetryOnFailedConnect(ctx->opts, true, on_connected, ctx);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(ctx->opts, 2000);
    }
    if (s == NATS_OK) {
        /* Notice a silent server (no FIN, no RST) within about 10 s. */
        s = natsOptions_SetPingInterval(ctx->opts, 5000);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxPingsOut(ctx->opts, 2);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetDisconnectedCB(ctx->opts, on_disconnected, ctx);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectedCB(ctx->opts, on_connected, ctx);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetClosedCB(ctx->opts, on_closed, ctx);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetErrorHandler(ctx->opts, on_async_error, ctx);
    }
    if (s != NATS_OK) {
        snprintf(err, errlen, "NATS options: %s", nats_error_text(s));
        rc = EP_EINVAL;
        goto err;
    }
    s = natsConnection_Connect(&ctx->nc, ctx->opts);
    if (s == NATS_NOT_YET_CONNECTED) {
        ep_log_warn("nats", "NATS server %s not reachable yet; retrying in the background",
                    set->url);
    } else if (s != NATS_OK) {
        snprintf(err, errlen, "NATS_URL: cannot use '%s': %s", set->url, nats_error_text(s));
        rc = s == NATS_ADDRESS_MISSING || s == NATS_INVALID_ARG ? EP_ECONFIG : EP_EUNAVAIL;
        ctx->nc = NULL;
        goto err;
    }
    jsOptions_Init(&jo);
    jo.Wait = EP_NATS_API_WAIT_MS;
    jo.PublishAsync.AckHandler = ep__nats_ack_handler;
    jo.PublishAsync.AckHandlerClosure = ctx;
    jo.PublishAsync.MaxPending = EP_NATS_MAX_PENDING;
    jo.PublishAsync.StallWait = EP_NATS_STALL_WAIT_MS;
    s = natsConnection_JetStream(&ctx->js, ctx->nc, &jo);
    if (s != NATS_OK) {
        snprintf(err, errlen, "NATS JetStream context: %s", nats_error_text(s));
        rc = EP_EUNAVAIL;
        goto err;
    }
    if (ep__nats_connected(ctx) && stream_ensure(ctx) == 0) {
        atomic_store(&ctx->stream_ok, 1);
    }
    rc = pthread_create(&ctx->keeper, NULL, keeper_main, ctx);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the NATS keeper thread: %s", ep_strerror(EP__ERR(rc)));
        rc = EP__ERR(rc);
        goto err;
    }
    ctx->keeper_started = 1;
    *out = ctx;
    return 0;

err:
    ep__nats_ctx_destroy(ctx);
    return rc;
}

/* Waits for the connection's closed callback (it runs on a nats.c thread and uses ctx). */
static void wait_conn_closed(ep_nats_ctx_t *ctx)
{
    struct timespec ts;

    ep_time_deadline_ts(&ts, CLOCK_MONOTONIC, 10000);
    pthread_mutex_lock(&ctx->lock);
    while (!ctx->conn_closed) {
        if (pthread_cond_timedwait(&ctx->cond, &ctx->lock, &ts) != 0) {
            ep_log_warn("nats", "the connection's closed callback did not run within 10 s");
            break;
        }
    }
    pthread_mutex_unlock(&ctx->lock);
}

/*
 * Stops the keeper, waits (bounded) for the PubAcks still due and fails the
 * rest with EP_EUNAVAIL (each publish callback runs exactly once), closes the
 * connection, waits for its closed callback and frees everything. Accepts
 * NULL. Not thread-safe: call once, after every consumed event was given back.
 */
void ep__nats_ctx_destroy(ep_nats_ctx_t *ctx)
{
    if (ctx == NULL) {
        return;
    }
    atomic_store(&ctx->closed, 1);
    atomic_store(&ctx->stopping, 1);
    if (ctx->keeper_started) {
        ep__nats_kick(ctx);
        pthread_join(ctx->keeper, NULL);
    }
    /* nats.c 3.4 crashes in js_PublishAsyncGetPendingList before the first async publish. */
    if (ctx->js != NULL && atomic_load(&ctx->async_used)) {
        natsMsgList pending = {0};
        jsPubOptions po;

        /* Every publish gets its answer: wait (bounded), then fail what is left. */
        jsPubOptions_Init(&po);
        po.MaxWait = ctx->cfg.upstream_timeout_ms > 0 ? ctx->cfg.upstream_timeout_ms : 1000;
        js_PublishAsyncComplete(ctx->js, &po);
        if (js_PublishAsyncGetPendingList(&pending, ctx->js) == NATS_OK) {
            /* Handlers already running finish before we fail the rest. */
            po.MaxWait = 1000;
            js_PublishAsyncComplete(ctx->js, &po);
            for (int i = 0; i < pending.Count; i++) {
                ep__nats_fail_pending(ctx, pending.Msgs[i], EP_EUNAVAIL);
                pending.Msgs[i] = NULL;
            }
            natsMsgList_Destroy(&pending);
        }
    }
    if (ctx->set.replica && ctx->js != NULL && ep__nats_connected(ctx)) {
        /* A replica durable is this process's alone: gone now, not after its idle threshold. */
        jsOptions o;

        api_opts(&o);
        if (js_DeleteConsumer(ctx->js, ctx->set.stream, ctx->set.durable, &o, NULL) == NATS_OK) {
            ep_log_info("nats", "durable consumer %s removed", ctx->set.durable);
        }
    }
    ep__nats_drop_spare(ctx);
    if (ctx->sub != NULL) {
        natsSubscription_Destroy(ctx->sub);
    }
    if (ctx->nc != NULL) {
        natsConnection_Close(ctx->nc);
        wait_conn_closed(ctx);
    }
    jsCtx_Destroy(ctx->js);
    natsConnection_Destroy(ctx->nc);
    natsOptions_Destroy(ctx->opts);
    pthread_cond_destroy(&ctx->cond);
    pthread_mutex_destroy(&ctx->lock);
    pthread_mutex_destroy(&ctx->fetch_lock);
    pthread_mutex_destroy(&ctx->pub_lock);
    ep_free(ctx);
}
