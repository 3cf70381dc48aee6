/*
 * The composite queue (QUEUE_TYPE=composite): dual-write to several providers
 * (COMPOSITE_PROVIDERS, e.g. "nats,kafka") for migrations and replication.
 *
 * Writes go to every provider in parallel (each gets its own copy of the
 * events). The publish callback reports, per event:
 *   fail-fast    0 only when every provider acknowledged; else the first error
 *   best-effort  0 when at least one provider acknowledged; an error when all failed
 * and every per-provider failure is counted (composite_stats). A failed event
 * counts as rejected_full when its status is EP_EFULL, else (a provider down,
 * timed out, closed) as rejected_unavailable: a broker outage is not "full".
 *
 * Reads come from EVERY provider (one pump thread each), de-duplicated by event
 * id, so an event that reached only one provider during an outage is still
 * processed, and no provider fills up unread. The first copy of an id to arrive
 * is handed to the workers; later copies are acknowledged on their provider
 * without processing. A nack forgets the claim, so whichever copy comes next is
 * processed (at-least-once).
 *
 * The claim table holds CLAIM_CAPACITY ids, oldest evicted first, so a late copy
 * is only recognized while its id is among the newest claims. Pumps are therefore
 * paced: one waits (before reading, holding nothing) while it has read more than
 * PACE_LEAD events beyond another provider that is catching up (its last read,
 * within PACE_RECENT_MS, brought at least half a batch). A provider that is down,
 * failing or empty holds nobody back, so pacing delays but never stalls; the
 * counts restart together whenever every provider was found empty, so a
 * difference left by an outage (best-effort) does not last.
 */
#include "base/ep_counter.h"
#include "event/ep_dedup.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "queue/ep_mpmc.h"
#include "queue/ep_queue.h"
#include "base/ep_time.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MAX_CHILDREN   4
#define PUMP_BATCH     256
#define INBOX_CAPACITY 8192
#define CLAIM_WINDOW_S 3600
#define CLAIM_CAPACITY 200000
#define PACE_LEAD      (CLAIM_CAPACITY / 4) /* events one pump may read ahead of a catching-up one */
#define PACE_RECENT_MS 1000                 /* a big batch this recent means "catching up" */
#define PACE_STEP_MS   2

/* Test-only overrides (ep__composite_test_limits); 0: the constants above. */
static size_t test_claim_capacity;
static uint64_t test_pace_lead;
static int64_t test_pace_recent_ms;

typedef enum { STRATEGY_FAIL_FAST, STRATEGY_BEST_EFFORT } strategy_t; /* COMPOSITE_STRATEGY */

/* The composite's settings (its table below), and the consumer name own_consumer gives it. */
typedef struct {
    char providers[128]; /* COMPOSITE_PROVIDERS */
    int strategy;        /* COMPOSITE_STRATEGY: a strategy_t */
    char consumer[32];   /* a consumer of its own for each child that has one ("": none) */
} composite_opts_t;

static const ep_opt_t composite_opt_rows[] = {
    {EP_OPT_STR, "COMPOSITE_PROVIDERS", "composite-providers", "nats,kafka",
     offsetof(composite_opts_t, providers), sizeof(((composite_opts_t *)0)->providers), 0, 0, NULL,
     "providers of the composite queue"},
    {EP_OPT_CHOICE, "COMPOSITE_STRATEGY", "composite-strategy", "fail-fast",
     offsetof(composite_opts_t, strategy), 0, 0, 0, "fail-fast|best-effort",
     "composite write strategy"},
};

static const ep_opt_table_t composite_options = {
    .name = "composite",
    .opts = composite_opt_rows,
    .n_opts = sizeof(composite_opt_rows) / sizeof(composite_opt_rows[0]),
    .size = sizeof(composite_opts_t),
};

static int composite_own_consumer(void *vopts, const char *name, char *err, size_t errlen)
{
    composite_opts_t *opts = vopts;

    if (name[0] == '\0' || strlen(name) >= sizeof(opts->consumer)) {
        snprintf(err, errlen, "COMPOSITE_PROVIDERS: consumer name '%s' is empty or too long", name);
        return EP_EINVAL;
    }
    snprintf(opts->consumer, sizeof(opts->consumer), "%s", name);
    return 0;
}

extern const ep_queue_provider_t ep_queue_composite_provider;

typedef struct child_s {
    ep_queue_t *q;
    char name[32];
    atomic_uint_fast64_t published, failed, consumed, duplicates;
    atomic_uint_fast64_t failed_full, failed_unavailable; /* failed: EP_EFULL, any other */
    pthread_t pump;
    int pump_started;
    atomic_int pump_done;
    atomic_uint_fast64_t paced_ms; /* time its pump waited for a slower provider */
    /* Pacing state, under the composite's pace_mu. */
    uint64_t pace_read; /* events read since the counts last restarted */
    int64_t backlog_ms; /* when a read last brought a big batch, or the pumps started */
    int pace_idle;      /* the last read found nothing (empty, failing or closed) */
} child_t;

typedef struct composite_s {
    strategy_t strategy;
    int n;
    child_t child[MAX_CHILDREN];
    ep_dedup_t *claims;
    ep_mpmc_t *inbox; /* events pumped from the children, for the workers */
    pthread_mutex_t start_mu;
    int pumps_started;
    atomic_int closed;
    atomic_int pumps_running;
    pthread_mutex_t pace_mu; /* the children's pacing state; taken once per batch */
    uint64_t pace_lead;
    int64_t pace_recent_ms;
    ep_queue_counters_t counts; /* rejected_full: EP_EFULL; rejected_unavailable: any other error */
    atomic_uint_fast64_t deduped;
} composite_t;

/* One publish call fanned out to the children. */
typedef struct fan_s {
    composite_t *c;
    ep_publish_cb cb;
    void *arg;
    size_t n;
    atomic_int pending; /* children still to report */
    int *ok_count;      /* per event: children that acknowledged */
    int *first_err;     /* per event: first failure */
    pthread_mutex_t mu;
} fan_t;

typedef struct fan_child_s {
    fan_t *fan;
    child_t *child;
} fan_child_t;

static void fan_finish(fan_t *f)
{
    composite_t *c = f->c;
    int *status = ep_malloc(f->n * sizeof(int));
    size_t ok = 0, full = 0;

    for (size_t i = 0; i < f->n; i++) {
        int all = f->ok_count[i] == c->n;
        int any = f->ok_count[i] > 0;
        if (c->strategy == STRATEGY_FAIL_FAST) {
            status[i] = all ? 0 : (f->first_err[i] ? f->first_err[i] : EP_EUNAVAIL);
        } else {
            status[i] = any ? 0 : (f->first_err[i] ? f->first_err[i] : EP_EUNAVAIL);
        }
        ok += status[i] == 0;
        full += status[i] == EP_EFULL;
    }
    ep_counter_add(&c->counts.enqueued, ok);
    ep_counter_add(&c->counts.rejected_full, full);
    ep_counter_add(&c->counts.rejected_unavailable, f->n - ok - full);
    if (f->cb) {
        f->cb(f->arg, f->n, status);
    }
    ep_free(status);
    ep_free(f->ok_count);
    ep_free(f->first_err);
    pthread_mutex_destroy(&f->mu);
    ep_free(f);
}

static void fan_report(fan_t *f, child_t *ch, size_t n, const int *status, int all_err)
{
    size_t ok = 0, full = 0;

    pthread_mutex_lock(&f->mu);
    for (size_t i = 0; i < n; i++) {
        int st = status ? status[i] : all_err;
        if (st == 0) {
            f->ok_count[i]++;
            ok++;
        } else if (f->first_err[i] == 0) {
            f->first_err[i] = st;
        }
        full += st == EP_EFULL;
    }
    pthread_mutex_unlock(&f->mu);
    atomic_fetch_add_explicit(&ch->published, ok, memory_order_relaxed);
    atomic_fetch_add_explicit(&ch->failed, n - ok, memory_order_relaxed);
    atomic_fetch_add_explicit(&ch->failed_full, full, memory_order_relaxed);
    atomic_fetch_add_explicit(&ch->failed_unavailable, n - ok - full, memory_order_relaxed);
    if (atomic_fetch_sub_explicit(&f->pending, 1, memory_order_acq_rel) == 1) {
        fan_finish(f);
    }
}

static void on_child_published(void *arg, size_t n, const int *status)
{
    fan_child_t *fc = arg;

    fan_report(fc->fan, fc->child, n, status, 0);
    ep_free(fc);
}

static int composite_publish(void *ctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    composite_t *c = ctx;
    fan_t *f;
    ep_event_t **copy;

    if (atomic_load(&c->closed)) {
        return EP_ECLOSED;
    }
    if (n == 0) {
        if (cb) {
            cb(arg, 0, NULL);
        }
        return 0;
    }
    f = ep_calloc(1, sizeof(*f));
    f->c = c;
    f->cb = cb;
    f->arg = arg;
    f->n = n;
    f->ok_count = ep_calloc(n, sizeof(int));
    f->first_err = ep_calloc(n, sizeof(int));
    pthread_mutex_init(&f->mu, NULL);
    /* One extra count keeps the fan alive until every child has been started. */
    atomic_store(&f->pending, c->n + 1);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    copy = ep_malloc(n * sizeof(*copy));
    for (int k = 0; k < c->n; k++) {
        child_t *ch = &c->child[k];
        fan_child_t *fc = ep_malloc(sizeof(*fc));
        int rc;

        /* Every child but the last gets clones; the last takes the originals. */
        for (size_t i = 0; i < n; i++) {
            copy[i] = k + 1 < c->n ? ep_event_clone(evs[i]) : evs[i];
        }
        fc->fan = f;
        fc->child = ch;
        rc = ep_queue_publish(ch->q, copy, n, on_child_published, fc);
        if (rc != 0) {
            for (size_t i = 0; i < n; i++) {
                ep_event_destroy(copy[i]);
            }
            ep_free(fc);
            fan_report(f, ch, n, NULL, rc);
        }
    }
    for (size_t i = 0; i < n; i++) {
        evs[i] = NULL;
    }
    ep_free(copy);
    fan_report(f, &c->child[0], 0, NULL, 0);
    return 0;
}

/* ------------------------------------------------------------ reading */

typedef struct pump_arg_s {
    composite_t *c;
    int idx;
} pump_arg_t;

/* Whether pump k must wait: it is more than pace_lead ahead of a provider catching up. */
static int pace_must_wait(composite_t *c, int k, int64_t now)
{
    int wait = 0;

    pthread_mutex_lock(&c->pace_mu);
    for (int j = 0; j < c->n && !wait; j++) {
        const child_t *o = &c->child[j];
        wait = j != k && o->backlog_ms != 0 && now - o->backlog_ms <= c->pace_recent_ms &&
               c->child[k].pace_read > o->pace_read + c->pace_lead;
    }
    pthread_mutex_unlock(&c->pace_mu);
    return wait;
}

/*
 * Waits, in small sleeps, while pump k is too far ahead. Also while closing, so the
 * drain is de-duplicated too: the slowest pump never waits, so the drain always ends.
 */
static void pace(composite_t *c, int k)
{
    int64_t start = ep_time_mono_ms(), now = start;

    if (c->n < 2) {
        return;
    }
    while (pace_must_wait(c, k, now)) {
        ep_time_sleep_ms(PACE_STEP_MS);
        now = ep_time_mono_ms();
    }
    if (now > start) {
        atomic_fetch_add_explicit(&c->child[k].paced_ms, (uint64_t)(now - start),
                                  memory_order_relaxed);
    }
}

/* Records what a read of pump k returned (n: events, or an error). */
static void pace_note(composite_t *c, int k, int n)
{
    child_t *ch = &c->child[k];
    int all_idle = 1;

    pthread_mutex_lock(&c->pace_mu);
    ch->pace_idle = n <= 0;
    if (n > 0) {
        ch->pace_read += (uint64_t)n;
    }
    if (n >= PUMP_BATCH / 2) {
        ch->backlog_ms = ep_time_mono_ms();
    } else if (n <= 0) {
        ch->backlog_ms = 0; /* empty, failing or closed: nobody waits for it */
    }
    for (int j = 0; j < c->n; j++) {
        all_idle &= c->child[j].pace_idle;
    }
    if (all_idle) {
        /* Every provider is drained: whatever difference there was is settled. */
        for (int j = 0; j < c->n; j++) {
            c->child[j].pace_read = 0;
        }
    }
    pthread_mutex_unlock(&c->pace_mu);
}

/* A pump waiting for room in the inbox with a big batch is still catching up. */
static void pace_still_busy(composite_t *c, int k)
{
    pthread_mutex_lock(&c->pace_mu);
    if (c->child[k].backlog_ms != 0) {
        c->child[k].backlog_ms = ep_time_mono_ms();
    }
    pthread_mutex_unlock(&c->pace_mu);
}

static void *pump_run(void *arg)
{
    pump_arg_t *pa = arg;
    composite_t *c = pa->c;
    child_t *ch = &c->child[pa->idx];
    uint32_t idx = (uint32_t)pa->idx;
    int pa_idx = pa->idx;
    ep_event_t *batch[PUMP_BATCH], *dups[PUMP_BATCH];

    ep_free(pa);
    for (;;) {
        int n, big;
        size_t nd = 0, nk = 0;

        pace(c, pa_idx);
        n = ep_queue_consume(ch->q, batch, PUMP_BATCH, 200);
        pace_note(c, pa_idx, n);
        big = n >= PUMP_BATCH / 2;
        if (n == EP_ECLOSED) {
            break;
        }
        if (n < 0) {
            ep_time_sleep_ms(100);
            continue;
        }
        atomic_fetch_add_explicit(&ch->consumed, (uint64_t)n, memory_order_relaxed);
        for (int i = 0; i < n; i++) {
            ep_event_t *ev = batch[i];
            ep_dedup_result_t d =
                ep_dedup_reserve(c->claims, ev->id.p, ev->id.len, ep_time_mono_ms() / 1000);
            ev->qidx = idx;
            if (d == EP_DEDUP_NEW) {
                batch[nk++] = ev;
            } else {
                dups[nd++] = ev;
            }
        }
        if (nd > 0) {
            /* Another provider's copy is being or was processed: done here. */
            atomic_fetch_add_explicit(&ch->duplicates, nd, memory_order_relaxed);
            atomic_fetch_add_explicit(&c->deduped, nd, memory_order_relaxed);
            ep_queue_ack(ch->q, dups, nd);
        }
        /* Hand the rest to the workers; wait for room rather than drop. */
        while (nk > 0) {
            int rc = ep_mpmc_push_batch(c->inbox, (void **)batch, nk);
            if (rc == 0) {
                break;
            }
            if (rc == EP_ECLOSED) {
                ep_queue_nack(ch->q, batch, nk, 0);
                break;
            }
            if (big) {
                pace_still_busy(c, pa_idx);
            }
            ep_time_sleep_ms(1);
        }
    }
    atomic_store(&ch->pump_done, 1);
    if (atomic_fetch_sub(&c->pumps_running, 1) == 1 && atomic_load(&c->closed)) {
        /* Every provider is drained: the workers finish the inbox, then see EP_ECLOSED. */
        ep_mpmc_close(c->inbox);
    }
    return NULL;
}

static void start_pumps(composite_t *c)
{
    pthread_mutex_lock(&c->start_mu);
    if (!c->pumps_started) {
        c->pumps_started = 1;
        atomic_store(&c->pumps_running, c->n);
        /* Until its first read, every provider is presumed to have a backlog. */
        pthread_mutex_lock(&c->pace_mu);
        for (int k = 0; k < c->n; k++) {
            c->child[k].backlog_ms = ep_time_mono_ms();
        }
        pthread_mutex_unlock(&c->pace_mu);
        for (int k = 0; k < c->n; k++) {
            pump_arg_t *pa = ep_malloc(sizeof(*pa));
            pa->c = c;
            pa->idx = k;
            if (pthread_create(&c->child[k].pump, NULL, pump_run, pa) == 0) {
                c->child[k].pump_started = 1;
            } else {
                ep_free(pa);
                atomic_fetch_sub(&c->pumps_running, 1);
            }
        }
    }
    pthread_mutex_unlock(&c->start_mu);
}

static int composite_consume(void *ctx, ep_event_t **out, size_t max, int timeout_ms)
{
    composite_t *c = ctx;
    int n;

    start_pumps(c);
    n = ep_mpmc_pop_batch(c->inbox, (void **)out, max, timeout_ms);
    if (n > 0) {
        ep_counter_add(&c->counts.dequeued, (uint64_t)n);
    }
    return n;
}

/*
 * Calls fn on each group of events that came from the same provider. The
 * provider of every event is read before any fn runs: fn may free them.
 */
static int per_child(composite_t *c, ep_event_t **evs, size_t n,
                     int (*fn)(composite_t *, child_t *, ep_event_t **, size_t, void *), void *a)
{
    ep_event_t *group[PUMP_BATCH];
    uint8_t small[PUMP_BATCH], *which = n <= PUMP_BATCH ? small : ep_malloc(n);
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        which[i] = evs[i] ? (uint8_t)evs[i]->qidx : 0xff;
    }
    for (int k = 0; k < c->n; k++) {
        size_t g = 0;
        for (size_t i = 0; i < n; i++) {
            if (which[i] == (uint8_t)k) {
                group[g++] = evs[i];
                if (g == PUMP_BATCH) {
                    rc |= fn(c, &c->child[k], group, g, a);
                    g = 0;
                }
            }
        }
        if (g) {
            rc |= fn(c, &c->child[k], group, g, a);
        }
    }
    if (which != small) {
        ep_free(which);
    }
    return rc ? EP_EIO : 0;
}

static int do_ack(composite_t *c, child_t *ch, ep_event_t **evs, size_t n, void *a)
{
    int64_t now = ep_time_mono_ms() / 1000;

    for (size_t i = 0; i < n; i++) {
        ep_dedup_commit(c->claims, evs[i]->id.p, evs[i]->id.len, now);
    }
    return ep_queue_ack(ch->q, evs, n);
}

static int do_nack(composite_t *c, child_t *ch, ep_event_t **evs, size_t n, void *a)
{
    for (size_t i = 0; i < n; i++) {
        ep_dedup_release(c->claims, evs[i]->id.p, evs[i]->id.len);
    }
    return ep_queue_nack(ch->q, evs, n, *(int *)a);
}

static int do_dead_letter(composite_t *c, child_t *ch, ep_event_t **evs, size_t n, void *a)
{
    int64_t now = ep_time_mono_ms() / 1000;
    int rc;

    for (size_t i = 0; i < n; i++) {
        ep_dedup_commit(c->claims, evs[i]->id.p, evs[i]->id.len, now);
    }
    rc = ep_queue_dead_letter(ch->q, evs, n, (const char *)a);
    return rc == EP_ENOTSUP ? ep_queue_ack(ch->q, evs, n) : rc;
}

static int composite_ack(void *ctx, ep_event_t **evs, size_t n)
{
    composite_t *c = ctx;

    ep_counter_add(&c->counts.acked, n);
    return per_child(c, evs, n, do_ack, NULL);
}

static int composite_nack(void *ctx, ep_event_t **evs, size_t n, int delay_ms)
{
    composite_t *c = ctx;

    ep_counter_add(&c->counts.nacked, n);
    return per_child(c, evs, n, do_nack, &delay_ms);
}

static int composite_dead_letter(void *ctx, ep_event_t **evs, size_t n, const char *reason)
{
    return per_child(ctx, evs, n, do_dead_letter, (void *)reason);
}

/* ------------------------------------------------------------ status */

static void composite_stats(void *ctx, ep_queue_stats_t *st)
{
    composite_t *c = ctx;
    int64_t size = 0;
    int unknown = 0;

    ep_queue_counters_read(&c->counts, st);
    for (int k = 0; k < c->n; k++) {
        ep_queue_stats_t cs;
        ep_queue_stats(c->child[k].q, &cs);
        st->lost += cs.lost;
        if (cs.size < 0) {
            unknown = 1;
        } else {
            size += cs.size;
        }
    }
    st->size = unknown ? -1 : size + (int64_t)ep_mpmc_size(c->inbox);
}

static void composite_stats_json(void *ctx, ep_buf_t *out)
{
    composite_t *c = ctx;

    ep_buf_printf(out, ",\"strategy\":\"%s\",\"deduplicated\":%llu,\"composite_stats\":{",
                  c->strategy == STRATEGY_FAIL_FAST ? "fail-fast" : "best-effort",
                  (unsigned long long)atomic_load(&c->deduped));
    for (int k = 0; k < c->n; k++) {
        child_t *ch = &c->child[k];
        ep_queue_stats_t cs;
        char reason[160] = "";
        int ready = ep_queue_ready(ch->q, reason, sizeof(reason));

        ep_queue_stats(ch->q, &cs);
        ep_buf_printf(out,
                      "%s\"%s\":{\"ready\":%s,\"published\":%llu,\"failed\":%llu,"
                      "\"failed_full\":%llu,\"failed_unavailable\":%llu,"
                      "\"consumed\":%llu,\"duplicates\":%llu,\"paced_ms\":%llu,\"size\":%lld",
                      k ? "," : "", ch->name, ready ? "true" : "false",
                      (unsigned long long)atomic_load(&ch->published),
                      (unsigned long long)atomic_load(&ch->failed),
                      (unsigned long long)atomic_load(&ch->failed_full),
                      (unsigned long long)atomic_load(&ch->failed_unavailable),
                      (unsigned long long)atomic_load(&ch->consumed),
                      (unsigned long long)atomic_load(&ch->duplicates),
                      (unsigned long long)atomic_load(&ch->paced_ms), (long long)cs.size);
        if (!ready) {
            ep_buf_puts(out, ",\"error\":");
            ep_buf_put_json_str(out, reason, strlen(reason));
        }
        ep_buf_putc(out, '}');
    }
    ep_buf_putc(out, '}');
}

static int composite_ready(void *ctx, char *reason, size_t len)
{
    composite_t *c = ctx;
    int up = 0;
    size_t off = 0;

    if (atomic_load(&c->closed)) {
        snprintf(reason, len, "queue closed");
        return 0;
    }
    reason[0] = '\0';
    for (int k = 0; k < c->n; k++) {
        char r[160] = "";
        if (ep_queue_ready(c->child[k].q, r, sizeof(r))) {
            up++;
        } else if (off < len) {
            int w = snprintf(reason + off, len - off, "%sprovider %s degraded: %s", off ? "; " : "",
                             c->child[k].name, r[0] ? r : "not ready");
            off += w > 0 ? (size_t)w : 0;
        }
    }
    /* fail-fast needs every provider to accept writes; best-effort needs one. */
    return c->strategy == STRATEGY_FAIL_FAST ? up == c->n : up > 0;
}

static void composite_lag_json(void *ctx, ep_buf_t *out)
{
    composite_t *c = ctx;

    ep_buf_putc(out, '{');
    for (int k = 0; k < c->n; k++) {
        ep_buf_printf(out, "%s\"%s\":", k ? "," : "", c->child[k].name);
        ep_queue_lag_json(c->child[k].q, out);
    }
    ep_buf_putc(out, '}');
}

static int composite_flush(void *ctx, int timeout_ms)
{
    composite_t *c = ctx;
    int rc = 0;

    for (int k = 0; k < c->n; k++) {
        rc |= ep_queue_flush(c->child[k].q, timeout_ms);
    }
    return rc ? EP_ETIMEDOUT : 0;
}

static void composite_close(void *ctx)
{
    composite_t *c = ctx;

    if (atomic_exchange(&c->closed, 1)) {
        return;
    }
    for (int k = 0; k < c->n; k++) {
        ep_queue_close(c->child[k].q);
    }
    /*
     * An instance that never read (an ingest-only process) has nothing to drain:
     * the events wait in the providers. One that reads drains them all first.
     */
    pthread_mutex_lock(&c->start_mu);
    if (!c->pumps_started || atomic_load(&c->pumps_running) == 0) {
        c->pumps_started = 1; /* no pump will start now */
        ep_mpmc_close(c->inbox);
    }
    pthread_mutex_unlock(&c->start_mu);
}

static void composite_destroy(void *ctx)
{
    composite_t *c = ctx;
    void *left[PUMP_BATCH];
    int n;

    if (c == NULL) {
        return;
    }
    composite_close(c);
    for (int k = 0; k < c->n; k++) {
        if (c->child[k].pump_started) {
            pthread_join(c->child[k].pump, NULL);
        }
    }
    /* Events still in the inbox were never processed: give them back to their provider. */
    while ((n = ep_mpmc_pop_batch(c->inbox, left, PUMP_BATCH, 0)) > 0) {
        int zero = 0;
        per_child(c, (ep_event_t **)left, (size_t)n, do_nack, &zero);
    }
    for (int k = 0; k < c->n; k++) {
        ep_queue_destroy(c->child[k].q);
    }
    ep_mpmc_destroy(c->inbox);
    ep_dedup_destroy(c->claims);
    pthread_mutex_destroy(&c->start_mu);
    pthread_mutex_destroy(&c->pace_mu);
    ep_free(c);
}

/* ------------------------------------------------------------ config */

/* The providers a composite can wrap: any a QUEUE_TYPE can name, but a composite. */
static int can_wrap(const ep_queue_provider_t *p)
{
    return p != NULL && !(p->flags & EP_QUEUE_F_INTERNAL) && p != &ep_queue_composite_provider;
}

static void wrappable_names(char *out, size_t len)
{
    ep_opt_table_t t[16];
    size_t n = ep_queue_option_tables(t, 16), off = 0;

    out[0] = '\0';
    for (size_t i = 0; i < n && off < len; i++) {
        if (can_wrap(ep_queue_provider_find(t[i].name))) {
            int w = snprintf(out + off, len - off, "%s%s", off ? ", " : "", t[i].name);
            off += w > 0 ? (size_t)w : 0;
        }
    }
}

static int parse_providers(const char *spec, char names[][32], int *count, char *err, size_t errlen)
{
    const char *p = spec;
    int n = 0;

    while (*p) {
        const char *start, *end;
        size_t len;

        while (*p == ' ' || *p == '\t' || *p == ',') {
            p++;
        }
        if (*p == '\0') {
            break;
        }
        start = p;
        while (*p && *p != ',') {
            p++;
        }
        end = p;
        while (end > start && isspace((unsigned char)end[-1])) {
            end--;
        }
        len = (size_t)(end - start);
        if (n == MAX_CHILDREN || len >= 32) {
            snprintf(err, errlen, "COMPOSITE_PROVIDERS: at most %d providers, names under 32 bytes",
                     MAX_CHILDREN);
            return EP_ECONFIG;
        }
        memcpy(names[n], start, len);
        names[n][len] = '\0';
        if (!can_wrap(ep_queue_provider_find(names[n]))) {
            char avail[160];
            wrappable_names(avail, sizeof(avail));
            snprintf(err, errlen, "COMPOSITE_PROVIDERS: unknown provider '%s' (built here: %s)",
                     names[n], avail);
            return EP_ECONFIG;
        }
        for (int k = 0; k < n; k++) {
            if (strcmp(names[k], names[n]) == 0) {
                snprintf(err, errlen, "COMPOSITE_PROVIDERS: '%s' is listed twice", names[n]);
                return EP_ECONFIG;
            }
        }
        n++;
    }
    if (n < 1) {
        snprintf(err, errlen, "COMPOSITE_PROVIDERS: no provider given (e.g. nats,kafka)");
        return EP_ECONFIG;
    }
    *count = n;
    return 0;
}

/* Its children, each made as a queue of its own from the same cfg; a consumer of their own when
 * the composite was asked for one (own_consumer), for those children that have one. */
static int create_child(const char *name, const ep_config_t *cfg, const char *consumer,
                        ep_queue_t **out, char *err, size_t errlen)
{
    const ep_queue_provider_t *p = ep_queue_provider_find(name);

    if (consumer[0] && p->own_consumer) {
        return ep_queue_open_consumer(p, cfg, consumer, out, err, errlen);
    }
    return ep_queue_create_with(p, cfg, out, err, errlen);
}

static int composite_init(const ep_config_t *cfg, const void *vopts, void **out, char *err,
                          size_t errlen)
{
    const composite_opts_t *opts = vopts;
    char names[MAX_CHILDREN][32];
    composite_t *c;
    int n = 0, rc;

    *out = NULL;
    if ((rc = parse_providers(opts->providers, names, &n, err, errlen)) != 0) {
        return rc;
    }
    c = ep_calloc(1, sizeof(*c));
    c->strategy = opts->strategy;
    pthread_mutex_init(&c->start_mu, NULL);
    for (int k = 0; k < n; k++) {
        char cerr[256] = "";
        rc = create_child(names[k], cfg, opts->consumer, &c->child[k].q, cerr, sizeof(cerr));
        if (rc != 0) {
            snprintf(err, errlen, "COMPOSITE_PROVIDERS: provider '%s': %s", names[k], cerr);
            for (int j = 0; j < k; j++) {
                ep_queue_destroy(c->child[j].q);
            }
            pthread_mutex_destroy(&c->start_mu);
            ep_free(c);
            return rc;
        }
        snprintf(c->child[k].name, sizeof(c->child[k].name), "%.31s", names[k]);
    }
    c->n = n;
    pthread_mutex_init(&c->pace_mu, NULL);
    c->pace_lead = test_pace_lead ? test_pace_lead : PACE_LEAD;
    c->pace_recent_ms = test_pace_recent_ms ? test_pace_recent_ms : PACE_RECENT_MS;
    c->claims =
        ep_dedup_create(CLAIM_WINDOW_S, test_claim_capacity ? test_claim_capacity : CLAIM_CAPACITY);
    ep_dedup_set_name(c->claims, "the composite queue's claim table: capacity");
    ep_mpmc_create(INBOX_CAPACITY, &c->inbox);
    ep_log_info("queue", "composite over %s%s%s%s%s (%s)", names[0], n > 1 ? "," : "",
                n > 1 ? names[1] : "", n > 2 ? ",..." : "", "",
                c->strategy == STRATEGY_FAIL_FAST ? "fail-fast" : "best-effort");
    *out = c;
    return 0;
}

/* Tests only: the claim table's size, the lead and PACE_RECENT_MS for composites created
 * afterwards (0: the defaults). */
void ep__composite_test_limits(size_t claim_capacity, uint64_t pace_lead, int64_t recent_ms);
void ep__composite_test_limits(size_t claim_capacity, uint64_t pace_lead, int64_t recent_ms)
{
    test_claim_capacity = claim_capacity;
    test_pace_lead = pace_lead;
    test_pace_recent_ms = recent_ms;
}

const ep_queue_provider_t ep_queue_composite_provider = {
    .api_version = EP_QUEUE_API_VERSION,
    .name = "composite",
    .flags = 0,
    .init = composite_init,
    .publish = composite_publish,
    .consume = composite_consume,
    .ack = composite_ack,
    .nack = composite_nack,
    .stats = composite_stats,
    .stats_json = composite_stats_json,
    .ready = composite_ready,
    .flush = composite_flush,
    .close = composite_close,
    .destroy = composite_destroy,
    .dead_letter = composite_dead_letter,
    .lag_json = composite_lag_json,
    .options = &composite_options,
    .own_consumer = composite_own_consumer,
};
