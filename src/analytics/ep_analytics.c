/*
 * The analytics aggregate: shards of partial aggregates, merged at read time,
 * and the delta format that carries them between processes.
 *
 * Delta layout (all integers little-endian; varint = unsigned LEB128):
 *   "EPAD" | version u8 (1) | sender u64 | seq varint | sections...
 *   section = tag u8 | length varint | body; unknown tags are skipped.
 *   1 counts: total, with_user, batches, last_us
 *   2 types, 3 sources: n, n x (hash u64, count, name length, name), other
 *   4 users (ep_hll), 5 top users, 6 top pages (ep_topk), 7 window (ep_window),
 *   8 latency, 9 lag (ep_hist); 0 end (empty, required last: a truncated delta is refused)
 */
#include "analytics/ep_analytics.h"
#include "base/ep_error.h"
#include "analytics/ep_hist.h"
#include "analytics/ep_hll.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "base/ep_time.h"
#include "analytics/ep_topk.h"
#include "analytics/ep_varint.h"
#include "analytics/ep_window.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <string.h>

#define KEYMAP_CAP  2048 /* open-addressing slots, >= 2 x EP_ANALYTICS_MAX_KEYS */
#define SEED_TYPE   0x74797065ull
#define SEED_SOURCE 0x73726365ull
#define SEED_USER   0

enum {
    SEC_END = 0,
    SEC_COUNTS = 1,
    SEC_TYPES,
    SEC_SOURCES,
    SEC_USERS,
    SEC_TOP_USERS,
    SEC_TOP_PAGES,
    SEC_WINDOW,
    SEC_LATENCY,
    SEC_LAG
};

typedef struct keymap_s {
    uint32_t n;
    uint64_t other;
    uint64_t hash[KEYMAP_CAP];
    uint64_t count[KEYMAP_CAP];
    char *name[KEYMAP_CAP]; /* NULL = free slot */
} keymap_t;

typedef struct part_s {
    uint64_t total, with_user, batches;
    int64_t last_us;
    keymap_t types, sources;
    ep_hll_t users;
    ep_topk_t top_users, top_pages;
    ep_window_t win;
    ep_hist_t latency, lag;
} part_t;

typedef struct shard_s {
    pthread_mutex_t lock;
    part_t *p;
    char pad[64];
} shard_t;

typedef struct sender_s {
    uint64_t id, seq;
    int64_t seen_us;
} sender_t;

struct ep_analytics_s {
    shard_t shards[EP_ANALYTICS_SHARDS];
    ep_analytics_clock_cb clock;
    void *clock_arg;
    pthread_mutex_t senders_lock; /* also serialises delta merges */
    part_t *scratch;              /* a delta is decoded here first (under senders_lock) */
    sender_t senders[EP_ANALYTICS_MAX_SENDERS];
    uint32_t n_senders;
    _Atomic uint64_t deltas_merged, deltas_rejected, deltas_duplicate;
};

static atomic_int next_slot;
static _Thread_local int tl_slot = -1;

/* ------------------------------------------------------------- keymap */

static void keymap_free(keymap_t *m)
{
    for (uint32_t i = 0; i < KEYMAP_CAP && m->n > 0; i++) {
        if (m->name[i]) {
            ep_free(m->name[i]);
            m->name[i] = NULL;
        }
    }
    m->n = 0;
    m->other = 0;
}

static void keymap_add(keymap_t *m, uint64_t h, const char *name, size_t len, uint64_t n)
{
    uint32_t i = (uint32_t)h & (KEYMAP_CAP - 1);

    while (m->name[i] != NULL) {
        if (m->hash[i] == h) {
            m->count[i] = ep_sat_add(m->count[i], n);
            return;
        }
        i = (i + 1) & (KEYMAP_CAP - 1);
    }
    if (m->n >= EP_ANALYTICS_MAX_KEYS) {
        m->other = ep_sat_add(m->other, n);
        return;
    }
    if (len > EP_ANALYTICS_KEY_LEN) {
        len = EP_ANALYTICS_KEY_LEN;
    }
    m->name[i] = ep_strndup(name, len);
    m->hash[i] = h;
    m->count[i] = n;
    m->n++;
}

static const char *keymap_name(const keymap_t *m, uint64_t wkey, int dim)
{
    for (uint32_t i = 0; i < KEYMAP_CAP; i++) {
        if (m->name[i] && ep_window_key(m->hash[i], dim) == wkey) {
            return m->name[i];
        }
    }
    return NULL;
}

static void keymap_merge(keymap_t *d, const keymap_t *s)
{
    for (uint32_t i = 0; i < KEYMAP_CAP; i++) {
        if (s->name[i]) {
            keymap_add(d, s->hash[i], s->name[i], strlen(s->name[i]), s->count[i]);
        }
    }
    d->other = ep_sat_add(d->other, s->other);
}

/* --------------------------------------------------------------- part */

/* Empties what the sections in mask (1 << SEC_*) filled, so the part can be reused. */
static void part_reset(part_t *p, uint32_t mask)
{
    if (mask & (1u << SEC_COUNTS)) {
        p->total = p->with_user = p->batches = 0;
        p->last_us = 0;
    }
    if (mask & (1u << SEC_TYPES)) {
        keymap_free(&p->types);
    }
    if (mask & (1u << SEC_SOURCES)) {
        keymap_free(&p->sources);
    }
    if (mask & (1u << SEC_USERS)) {
        ep_hll_init(&p->users);
    }
    if (mask & (1u << SEC_TOP_USERS)) {
        ep_topk_init(&p->top_users, EP_ANALYTICS_TOP_CAP);
    }
    if (mask & (1u << SEC_TOP_PAGES)) {
        ep_topk_init(&p->top_pages, EP_ANALYTICS_TOP_CAP);
    }
    if (mask & (1u << SEC_WINDOW)) {
        ep_window_init(&p->win);
    }
    if (mask & (1u << SEC_LATENCY)) {
        ep_hist_init(&p->latency);
    }
    if (mask & (1u << SEC_LAG)) {
        ep_hist_init(&p->lag);
    }
}

static part_t *part_create(void)
{
    part_t *p = ep_calloc(1, sizeof(*p));

    ep_hll_init(&p->users);
    ep_topk_init(&p->top_users, EP_ANALYTICS_TOP_CAP);
    ep_topk_init(&p->top_pages, EP_ANALYTICS_TOP_CAP);
    ep_window_init(&p->win);
    ep_hist_init(&p->latency);
    ep_hist_init(&p->lag);
    return p;
}

static void part_destroy(part_t *p)
{
    if (p) {
        keymap_free(&p->types);
        keymap_free(&p->sources);
        ep_free(p);
    }
}

static void part_merge(part_t *d, const part_t *s)
{
    d->total = ep_sat_add(d->total, s->total);
    d->with_user = ep_sat_add(d->with_user, s->with_user);
    d->batches = ep_sat_add(d->batches, s->batches);
    if (s->last_us > d->last_us) {
        d->last_us = s->last_us;
    }
    keymap_merge(&d->types, &s->types);
    keymap_merge(&d->sources, &s->sources);
    ep_hll_merge(&d->users, &s->users);
    ep_topk_merge(&d->top_users, &s->top_users);
    ep_topk_merge(&d->top_pages, &s->top_pages);
    ep_window_merge(&d->win, &s->win);
    ep_hist_merge(&d->latency, &s->latency);
    ep_hist_merge(&d->lag, &s->lag);
}

static const ep_str_t *page_of(const ep_event_t *ev)
{
    const ep_str_t *url = NULL;

    for (uint32_t i = 0; i < ev->n_meta; i++) {
        const ep_kv_t *kv = &ev->meta[i];
        if (kv->key.len == EP_STRLEN("page") && memcmp(kv->key.p, EP_STRLIT("page")) == 0 &&
            kv->val.len) {
            return &kv->val;
        }
        if (url == NULL && kv->key.len == EP_STRLEN("url") &&
            memcmp(kv->key.p, EP_STRLIT("url")) == 0 && kv->val.len) {
            url = &kv->val;
        }
    }
    return url;
}

static void part_add(part_t *p, const ep_event_t *ev, int64_t now_us)
{
    static const char none[] = "(none)";
    const char *type = ev->event_type.len ? ev->event_type.p : none;
    size_t tlen = ev->event_type.len ? ev->event_type.len : sizeof(none) - 1;
    uint64_t th = ep_hash64(type, tlen, SEED_TYPE);
    uint64_t sh = ep_hash64(ev->source.p, ev->source.len, SEED_SOURCE);
    int64_t done = ev->processed_us > 0 ? ev->processed_us : now_us;
    const ep_str_t *page;

    p->total++;
    keymap_add(&p->types, th, type, tlen, 1);
    keymap_add(&p->sources, sh, ev->source.p, ev->source.len, 1);
    if (ev->user_id.len) {
        p->with_user++;
        ep_hll_add_hash(&p->users, ep_hash64(ev->user_id.p, ev->user_id.len, SEED_USER));
        ep_topk_add(&p->top_users, ev->user_id.p, ev->user_id.len, 1);
    }
    if ((page = page_of(ev)) != NULL) {
        ep_topk_add(&p->top_pages, page->p, page->len, 1);
    }
    /* Windows by the time ingest accepted the event (now when absent, or ahead of this
     * clock): an analytics replica replaying the stream puts the events where they were. */
    ep_window_add(&p->win,
                  (ev->received_us > 0 && ev->received_us < now_us ? ev->received_us : now_us) /
                      1000000,
                  th, sh, 1);
    if (ev->received_us > 0) {
        ep_hist_record(&p->latency,
                       done > ev->received_us ? (uint64_t)(done - ev->received_us) : 0);
    }
    if (ev->timestamp_ms > 0) {
        int64_t lag = done - ev->timestamp_ms * 1000;
        ep_hist_record(&p->lag, lag > 0 ? (uint64_t)lag : 0);
    }
}

/* ---------------------------------------------------------- aggregate */

static int64_t wall_clock(void *arg)
{
    (void)arg;
    return ep_time_now_us();
}

ep_analytics_t *ep_analytics_create(void)
{
    ep_analytics_t *a = ep_calloc(1, sizeof(*a));

    for (int i = 0; i < EP_ANALYTICS_SHARDS; i++) {
        pthread_mutex_init(&a->shards[i].lock, NULL);
        a->shards[i].p = part_create();
    }
    pthread_mutex_init(&a->senders_lock, NULL);
    a->clock = wall_clock;
    return a;
}

void ep_analytics_set_clock(ep_analytics_t *a, ep_analytics_clock_cb cb, void *arg)
{
    a->clock = cb ? cb : wall_clock;
    a->clock_arg = arg;
}

static shard_t *my_shard(ep_analytics_t *a)
{
    if (tl_slot < 0) {
        tl_slot = atomic_fetch_add_explicit(&next_slot, 1, memory_order_relaxed) & 0xffff;
    }
    return &a->shards[tl_slot % EP_ANALYTICS_SHARDS];
}

void ep_analytics_add_batch(ep_analytics_t *a, ep_event_t *const *evs, size_t n)
{
    int64_t now_us = a->clock(a->clock_arg);
    shard_t *s = my_shard(a);

    if (n == 0) {
        return;
    }
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        part_add(s->p, evs[i], now_us);
    }
    s->p->batches++;
    if (now_us > s->p->last_us) {
        s->p->last_us = now_us;
    }
    pthread_mutex_unlock(&s->lock);
}

/* A new part holding the merge of every shard. */
static part_t *snapshot(ep_analytics_t *a)
{
    part_t *snap = part_create();

    for (int i = 0; i < EP_ANALYTICS_SHARDS; i++) {
        pthread_mutex_lock(&a->shards[i].lock);
        part_merge(snap, a->shards[i].p);
        pthread_mutex_unlock(&a->shards[i].lock);
    }
    return snap;
}

/* ------------------------------------------------------------ summary */

static void put_keymap_json(ep_buf_t *out, const keymap_t *m)
{
    int first = 1;

    ep_buf_putc(out, '{');
    for (uint32_t i = 0; i < KEYMAP_CAP; i++) {
        if (m->name[i]) {
            if (!first) {
                ep_buf_putc(out, ',');
            }
            first = 0;
            ep_buf_put_json_str(out, m->name[i], strlen(m->name[i]));
            ep_buf_printf(out, ":%llu", (unsigned long long)m->count[i]);
        }
    }
    if (m->other) {
        ep_buf_printf(out, "%s\"other\":%llu", first ? "" : ",", (unsigned long long)m->other);
    }
    ep_buf_putc(out, '}');
}

static void put_top_json(ep_buf_t *out, const ep_topk_t *t, const char *field)
{
    ep_topk_item_t items[EP_ANALYTICS_TOP_SHOW];
    size_t n = ep_topk_top(t, items, EP_ANALYTICS_TOP_SHOW);

    ep_buf_putc(out, '[');
    for (size_t i = 0; i < n; i++) {
        ep_buf_printf(out, "%s{\"%s\":", i ? "," : "", field);
        ep_buf_put_json_str(out, items[i].name, strlen(items[i].name));
        ep_buf_printf(out, ",\"count\":%llu", (unsigned long long)items[i].count);
        if (items[i].error) {
            ep_buf_printf(out, ",\"max_error\":%llu", (unsigned long long)items[i].error);
        }
        ep_buf_putc(out, '}');
    }
    ep_buf_putc(out, ']');
}

static void put_hist_json(ep_buf_t *out, const ep_hist_t *h)
{
    ep_buf_printf(out,
                  "{\"count\":%llu,\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"mean\":%.3f,"
                  "\"min\":%.3f,\"max\":%.3f}",
                  (unsigned long long)h->count, (double)ep_hist_percentile(h, 0.50) / 1000.0,
                  (double)ep_hist_percentile(h, 0.95) / 1000.0,
                  (double)ep_hist_percentile(h, 0.99) / 1000.0, ep_hist_mean(h) / 1000.0,
                  h->count ? (double)h->min / 1000.0 : 0.0, (double)h->max / 1000.0);
}

void ep_analytics_summary_json(ep_analytics_t *a, ep_buf_t *out)
{
    part_t *p = snapshot(a);
    int64_t now_us = a->clock(a->clock_arg), now_s = now_us / 1000000;
    ep_analytics_stats_t st;
    char when[40] = "";

    ep_analytics_stats(a, &st);
    ep_buf_printf(out, "{\"total_events\":%llu,\"events_by_type\":", (unsigned long long)p->total);
    put_keymap_json(out, &p->types);
    ep_buf_puts(out, ",\"events_by_source\":");
    put_keymap_json(out, &p->sources);
    ep_buf_printf(out, ",\"unique_users\":%llu,\"events_with_user\":%llu,\"top_users\":",
                  (unsigned long long)(ep_hll_estimate(&p->users) + 0.5),
                  (unsigned long long)p->with_user);
    put_top_json(out, &p->top_users, "user_id");
    ep_buf_puts(out, ",\"top_pages\":");
    put_top_json(out, &p->top_pages, "page");
    ep_buf_printf(out,
                  ",\"events_per_second\":{\"1m\":%.3f,\"5m\":%.3f,\"15m\":%.3f},"
                  "\"events_last\":{\"1m\":%llu,\"5m\":%llu,\"15m\":%llu},\"latency_ms\":",
                  (double)ep_window_sum(&p->win, now_s, 60) / 60.0,
                  (double)ep_window_sum(&p->win, now_s, 300) / 300.0,
                  (double)ep_window_sum(&p->win, now_s, 900) / 900.0,
                  (unsigned long long)ep_window_sum(&p->win, now_s, 60),
                  (unsigned long long)ep_window_sum(&p->win, now_s, 300),
                  (unsigned long long)ep_window_sum(&p->win, now_s, 900));
    put_hist_json(out, &p->latency);
    ep_buf_puts(out, ",\"event_lag_ms\":");
    put_hist_json(out, &p->lag);
    if (p->last_us > 0) {
        ep_time_format_rfc3339(p->last_us / 1000, when, sizeof(when));
    }
    ep_buf_printf(out,
                  ",\"processing\":{\"batches\":%llu,\"deltas_merged\":%llu,"
                  "\"deltas_rejected\":%llu,\"deltas_duplicate\":%llu,\"senders\":%llu,"
                  "\"last_event_at\":",
                  (unsigned long long)p->batches, (unsigned long long)st.deltas_merged,
                  (unsigned long long)st.deltas_rejected, (unsigned long long)st.deltas_duplicate,
                  (unsigned long long)st.senders);
    if (when[0]) {
        ep_buf_put_json_str(out, when, strlen(when));
    } else {
        ep_buf_puts(out, "null");
    }
    ep_buf_printf(out, ",\"latency_error_bound\":%.4f,\"unique_users_std_error\":%.4f}",
                  EP_HIST_REL_ERR, 1.04 / 128.0);
    ep_buf_putc(out, '}');
    part_destroy(p);
}

int ep_analytics_timeseries_json(ep_analytics_t *a, int window_s, int bucket_s,
                                 const char *dimension, ep_buf_t *out)
{
    int n = ep_window_series_check(window_s, bucket_s);
    int dim, nk = 0, has_other = 0;
    int64_t now_s, first = 0;
    uint64_t *counts, keys[64] = {0};
    part_t *p;

    if (n < 0) {
        return EP_EINVAL;
    }
    if (dimension == NULL || strcmp(dimension, "total") == 0) {
        dim = EP_WINDOW_DIM_TOTAL;
        dimension = "total";
    } else if (strcmp(dimension, "event_type") == 0) {
        dim = EP_WINDOW_DIM_TYPE;
    } else if (strcmp(dimension, "source") == 0) {
        dim = EP_WINDOW_DIM_SOURCE;
    } else {
        return EP_EINVAL;
    }
    p = snapshot(a);
    now_s = a->clock(a->clock_arg) / 1000000;
    counts = ep_malloc(sizeof(*counts) * (size_t)n);
    if (dim != EP_WINDOW_DIM_TOTAL) {
        nk = ep_window_keys(&p->win, now_s, window_s, bucket_s, dim, keys, 64, &has_other);
    }
    ep_window_series(&p->win, now_s, window_s, bucket_s, EP_WINDOW_DIM_TOTAL, 0, counts, &first);
    ep_buf_printf(out,
                  "{\"window_seconds\":%d,\"bucket_seconds\":%d,\"dimension\":\"%s\","
                  "\"start\":%lld,\"end\":%lld,\"series\":[",
                  window_s, bucket_s, dimension, (long long)first,
                  (long long)first + (long long)n * bucket_s);
    for (int k = -1; k < nk + has_other; k++) {
        const char *name = "total";
        if (k >= 0 && k < nk) {
            name = keymap_name(dim == EP_WINDOW_DIM_TYPE ? &p->types : &p->sources, keys[k], dim);
            name = name ? name : "other";
            ep_window_series(&p->win, now_s, window_s, bucket_s, dim, keys[k], counts, NULL);
        } else if (k >= nk) {
            name = "other";
            ep_window_series(&p->win, now_s, window_s, bucket_s, dim, EP_WINDOW_KEY_OTHER, counts,
                             NULL);
        } else if (dim != EP_WINDOW_DIM_TOTAL) {
            continue; /* with a dimension, the total is not repeated as a series */
        }
        ep_buf_printf(out, "%s{\"key\":", out->len && out->data[out->len - 1] == '[' ? "" : ",");
        ep_buf_put_json_str(out, name, strlen(name));
        ep_buf_puts(out, ",\"counts\":[");
        for (int i = 0; i < n; i++) {
            ep_buf_printf(out, "%s%llu", i ? "," : "", (unsigned long long)counts[i]);
        }
        ep_buf_puts(out, "]}");
    }
    ep_buf_puts(out, "]}");
    ep_free(counts);
    part_destroy(p);
    return 0;
}

void ep_analytics_stats(ep_analytics_t *a, ep_analytics_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    for (int i = 0; i < EP_ANALYTICS_SHARDS; i++) {
        pthread_mutex_lock(&a->shards[i].lock);
        st->total_events = ep_sat_add(st->total_events, a->shards[i].p->total);
        st->batches = ep_sat_add(st->batches, a->shards[i].p->batches);
        if (a->shards[i].p->last_us > st->last_event_us) {
            st->last_event_us = a->shards[i].p->last_us;
        }
        pthread_mutex_unlock(&a->shards[i].lock);
    }
    st->deltas_merged = atomic_load(&a->deltas_merged);
    st->deltas_rejected = atomic_load(&a->deltas_rejected);
    st->deltas_duplicate = atomic_load(&a->deltas_duplicate);
    pthread_mutex_lock(&a->senders_lock);
    st->senders = a->n_senders;
    pthread_mutex_unlock(&a->senders_lock);
}

/* -------------------------------------------------------------- delta */

static void put_u64(ep_buf_t *b, uint64_t v)
{
    unsigned char x[8];

    for (int i = 0; i < 8; i++) {
        x[i] = (unsigned char)(v >> (8 * i));
    }
    ep_buf_append(b, x, 8);
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v |= (uint64_t)p[i] << (8 * i);
    }
    return v;
}

/* Appends tag, then the body written by the caller into scratch, with its length. */
static void put_section(ep_buf_t *out, int tag, ep_buf_t *body)
{
    ep_buf_putc(out, (char)tag);
    ep_varint_put(out, body->len);
    ep_buf_append(out, body->data, body->len);
    ep_buf_reset(body);
}

static void keymap_serialize(const keymap_t *m, ep_buf_t *b)
{
    ep_varint_put(b, m->n);
    for (uint32_t i = 0; i < KEYMAP_CAP; i++) {
        if (m->name[i]) {
            size_t len = strlen(m->name[i]);
            put_u64(b, m->hash[i]);
            ep_varint_put(b, m->count[i]);
            ep_varint_put(b, len);
            ep_buf_append(b, m->name[i], len);
        }
    }
    ep_varint_put(b, m->other);
}

static int keymap_read(keymap_t *m, const void *buf, size_t len)
{
    ep_rd_t r;
    uint64_t n;

    ep_rd_init(&r, buf, len);
    n = ep_rd_varint(&r);
    if (r.err || n > EP_ANALYTICS_MAX_KEYS) {
        return EP_EPARSE;
    }
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *h = ep_rd_bytes(&r, 8);
        uint64_t c = ep_rd_varint(&r), l = ep_rd_varint(&r);
        const unsigned char *name = ep_rd_bytes(&r, l);
        if (r.err || l > EP_ANALYTICS_KEY_LEN || memchr(name, 0, l) != NULL) {
            return EP_EPARSE;
        }
        keymap_add(m, get_u64(h), (const char *)name, l, c);
    }
    m->other = ep_sat_add(m->other, ep_rd_varint(&r));
    return r.err || r.p != r.end ? EP_EPARSE : 0;
}

static void part_serialize(const part_t *p, ep_buf_t *out)
{
    ep_buf_t b = EP_BUF_INIT;

    ep_varint_put(&b, p->total);
    ep_varint_put(&b, p->with_user);
    ep_varint_put(&b, p->batches);
    ep_varint_put(&b, p->last_us > 0 ? (uint64_t)p->last_us : 0);
    put_section(out, SEC_COUNTS, &b);
    keymap_serialize(&p->types, &b);
    put_section(out, SEC_TYPES, &b);
    keymap_serialize(&p->sources, &b);
    put_section(out, SEC_SOURCES, &b);
    if (!ep_hll_is_empty(&p->users)) {
        ep_hll_serialize(&p->users, &b);
        put_section(out, SEC_USERS, &b);
    }
    ep_topk_serialize(&p->top_users, &b);
    put_section(out, SEC_TOP_USERS, &b);
    ep_topk_serialize(&p->top_pages, &b);
    put_section(out, SEC_TOP_PAGES, &b);
    ep_window_serialize(&p->win, &b);
    put_section(out, SEC_WINDOW, &b);
    ep_hist_serialize(&p->latency, &b);
    put_section(out, SEC_LATENCY, &b);
    ep_hist_serialize(&p->lag, &b);
    put_section(out, SEC_LAG, &b);
    put_section(out, SEC_END, &b);
    ep_buf_close(&b);
}

static int section_read(part_t *p, int tag, const unsigned char *body, size_t len)
{
    ep_rd_t r;

    switch (tag) {
    case SEC_COUNTS:
        ep_rd_init(&r, body, len);
        p->total = ep_sat_add(p->total, ep_rd_varint(&r));
        p->with_user = ep_sat_add(p->with_user, ep_rd_varint(&r));
        p->batches = ep_sat_add(p->batches, ep_rd_varint(&r));
        p->last_us = (int64_t)(ep_rd_varint(&r) & (uint64_t)INT64_MAX);
        return r.err ? EP_EPARSE : 0;
    case SEC_TYPES:
        return keymap_read(&p->types, body, len);
    case SEC_SOURCES:
        return keymap_read(&p->sources, body, len);
    case SEC_USERS:
        return ep_hll_merge_serialized(&p->users, body, len);
    case SEC_TOP_USERS:
        return ep_topk_merge_serialized(&p->top_users, body, len);
    case SEC_TOP_PAGES:
        return ep_topk_merge_serialized(&p->top_pages, body, len);
    case SEC_WINDOW:
        return ep_window_merge_serialized(&p->win, body, len);
    case SEC_LATENCY:
        return ep_hist_merge_serialized(&p->latency, body, len);
    case SEC_LAG:
        return ep_hist_merge_serialized(&p->lag, body, len);
    default:
        return 0; /* a section from a newer writer: skipped */
    }
}

int ep_analytics_take_delta(ep_analytics_t *a, uint64_t sender, uint64_t seq, ep_buf_t *out)
{
    part_t *acc = NULL;

    for (int i = 0; i < EP_ANALYTICS_SHARDS; i++) {
        shard_t *s = &a->shards[i];
        part_t *full = NULL, *fresh;

        pthread_mutex_lock(&s->lock);
        if (s->p->total > 0) {
            full = s->p;
        }
        pthread_mutex_unlock(&s->lock);
        if (full == NULL) {
            continue;
        }
        /* Swap in an empty part under the lock; merge the full one outside it. */
        fresh = part_create();
        pthread_mutex_lock(&s->lock);
        full = s->p;
        s->p = fresh;
        pthread_mutex_unlock(&s->lock);
        if (acc == NULL) {
            acc = full;
        } else {
            part_merge(acc, full);
            part_destroy(full);
        }
    }
    if (acc == NULL) {
        return 0;
    }
    ep_buf_append(out, "EPAD", 4);
    ep_buf_putc(out, EP_ANALYTICS_DELTA_VERSION);
    put_u64(out, sender);
    ep_varint_put(out, seq);
    part_serialize(acc, out);
    part_destroy(acc);
    return 1;
}

static sender_t *sender_find(ep_analytics_t *a, uint64_t id)
{
    for (uint32_t i = 0; i < a->n_senders; i++) {
        if (a->senders[i].id == id) {
            return &a->senders[i];
        }
    }
    return NULL;
}

static void sender_record(ep_analytics_t *a, uint64_t id, uint64_t seq, int64_t now_us)
{
    sender_t *s = sender_find(a, id);

    if (s == NULL) {
        if (a->n_senders < EP_ANALYTICS_MAX_SENDERS) {
            s = &a->senders[a->n_senders++];
        } else {
            /* Forget the sender heard from least recently. */
            s = &a->senders[0];
            for (uint32_t i = 1; i < a->n_senders; i++) {
                if (a->senders[i].seen_us < s->seen_us) {
                    s = &a->senders[i];
                }
            }
        }
        s->id = id;
    }
    s->seq = seq;
    s->seen_us = now_us;
}

static const char *const section_names[] = {"end",       "counts",    "types",  "sources", "users",
                                            "top_users", "top_pages", "window", "latency", "lag"};

static int delta_err(ep_parse_err_t *err, int code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int delta_err(ep_parse_err_t *err, int code, const char *field, const char *fmt, ...)
{
    va_list ap;

    if (err) {
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
        snprintf(err->field, sizeof(err->field), "%s", field);
    }
    return code;
}

/* Per-name counts: each at most the delta's total, and all of them together too. */
static int keymap_check(const keymap_t *m, uint64_t total, const char *field, ep_parse_err_t *err)
{
    uint64_t sum = m->other;

    if (m->other > total) {
        return delta_err(err, EP_EVALIDATE, field, "\"other\" count is larger than the total");
    }
    for (uint32_t i = 0; i < KEYMAP_CAP; i++) {
        if (m->name[i] == NULL) {
            continue;
        }
        if (m->count[i] > total || (sum = ep_sat_add(sum, m->count[i])) > total) {
            return delta_err(err, EP_EVALIDATE, field, "counts add up to more than the total");
        }
    }
    return 0;
}

static int topk_check(const ep_topk_t *t, uint64_t total, const char *field, ep_parse_err_t *err)
{
    for (uint32_t i = 0; i < t->n; i++) {
        if (t->count[i] > total) {
            return delta_err(err, EP_EVALIDATE, field, "a count is larger than the total");
        }
    }
    return 0;
}

static int hist_check(const ep_hist_t *h, uint64_t total, const char *field, ep_parse_err_t *err)
{
    if (h->count > total || (h->count && h->sum / h->count > EP_HIST_MAX)) {
        return delta_err(err, EP_EVALIDATE, field, "more values than events, or a sum too large");
    }
    return 0;
}

static int window_check(const ep_window_t *w, uint64_t total, ep_parse_err_t *err)
{
    for (int i = 0; i < EP_WINDOW_SECONDS + EP_WINDOW_MINUTES; i++) {
        const ep_window_slot_t *s =
            i < EP_WINDOW_SECONDS ? &w->sec[i] : &w->min[i - EP_WINDOW_SECONDS];

        if (s->total > total || s->other[0] > s->total || s->other[1] > s->total) {
            return delta_err(err, EP_EVALIDATE, "window", "a slot counts more than the total");
        }
        for (uint32_t k = 0; k < s->n; k++) {
            if (s->cnt[k] > s->total) {
                return delta_err(err, EP_EVALIDATE, "window", "a key counts more than its slot");
            }
        }
    }
    return 0;
}

/* A decoded delta is plausible: bounded total, no count above the total. */
static int part_check(const part_t *p, ep_parse_err_t *err)
{
    uint64_t t = p->total;
    int rc;

    if (t > EP_ANALYTICS_DELTA_MAX_EVENTS) {
        return delta_err(err, EP_EVALIDATE, "counts.total", "is larger than %llu events per delta",
                         (unsigned long long)EP_ANALYTICS_DELTA_MAX_EVENTS);
    }
    if (p->with_user > t) {
        return delta_err(err, EP_EVALIDATE, "counts.with_user", "is larger than the total");
    }
    if (p->batches > t) {
        return delta_err(err, EP_EVALIDATE, "counts.batches", "is larger than the total");
    }
    if (p->last_us > EP_EVENT_TS_MAX_MS * 1000) {
        return delta_err(err, EP_EVALIDATE, "counts.last_us", "is out of range");
    }
    if ((rc = keymap_check(&p->types, t, "types", err)) ||
        (rc = keymap_check(&p->sources, t, "sources", err)) ||
        (rc = topk_check(&p->top_users, t, "top_users", err)) ||
        (rc = topk_check(&p->top_pages, t, "top_pages", err)) ||
        (rc = hist_check(&p->latency, t, "latency", err)) ||
        (rc = hist_check(&p->lag, t, "lag", err)) || (rc = window_check(&p->win, t, err))) {
        return rc;
    }
    return 0;
}

int ep_analytics_merge_delta_ex(ep_analytics_t *a, const void *buf, size_t len, ep_parse_err_t *err)
{
    ep_rd_t r;
    const unsigned char *hdr, *sid;
    uint64_t sender, seq;
    uint32_t seen = 0;
    sender_t *known;
    part_t *p = NULL;
    shard_t *s;
    int rc = EP_EPARSE;

    if (err) {
        memset(err, 0, sizeof(*err));
    }
    if (len > EP_ANALYTICS_DELTA_MAX_BYTES) {
        atomic_fetch_add(&a->deltas_rejected, 1);
        return delta_err(err, EP_EVALIDATE, "", "delta is larger than %u bytes",
                         EP_ANALYTICS_DELTA_MAX_BYTES);
    }
    ep_rd_init(&r, buf, len);
    hdr = ep_rd_bytes(&r, 5);
    sid = ep_rd_bytes(&r, 8);
    seq = ep_rd_varint(&r);
    if (r.err || memcmp(hdr, EP_STRLIT("EPAD")) != 0 || hdr[4] != EP_ANALYTICS_DELTA_VERSION) {
        atomic_fetch_add(&a->deltas_rejected, 1);
        return delta_err(err, EP_EPARSE, "header",
                         "not an analytics delta (\"EPAD\", version %d, sender, seq)",
                         EP_ANALYTICS_DELTA_VERSION);
    }
    sender = get_u64(sid);
    pthread_mutex_lock(&a->senders_lock);
    known = sender_find(a, sender);
    if (known && seq <= known->seq) {
        pthread_mutex_unlock(&a->senders_lock);
        atomic_fetch_add(&a->deltas_duplicate, 1);
        return EP_EEXIST;
    }
    /* Decode everything into a scratch part first: a bad delta changes nothing. */
    if (a->scratch == NULL) {
        a->scratch = part_create();
    }
    p = a->scratch;
    for (;;) {
        const unsigned char *tag = ep_rd_bytes(&r, 1);
        uint64_t blen = ep_rd_varint(&r);
        const unsigned char *body = ep_rd_bytes(&r, blen);
        const char *name;

        if (r.err) {
            delta_err(err, EP_EPARSE, "", "truncated: a section runs past the end");
            goto done;
        }
        name = tag[0] < sizeof(section_names) / sizeof(section_names[0]) ? section_names[tag[0]]
                                                                         : "unknown";
        if (tag[0] == SEC_END) {
            if (blen != 0 || r.p != r.end) {
                delta_err(err, EP_EPARSE, "end", "the end section must be empty and last");
                goto done;
            }
            break;
        }
        /* The writer sends each section once; a repeat could only pile counts up. */
        if (tag[0] < 32 && (seen & (1u << tag[0]))) {
            delta_err(err, EP_EPARSE, name, "section appears more than once");
            goto done;
        }
        seen |= tag[0] < 32 ? 1u << tag[0] : 0;
        if (section_read(p, tag[0], body, blen) != 0) {
            delta_err(err, EP_EPARSE, name, "malformed section");
            goto done;
        }
    }
    if ((rc = part_check(p, err)) != 0) {
        goto done;
    }
    s = my_shard(a);
    pthread_mutex_lock(&s->lock);
    part_merge(s->p, p);
    pthread_mutex_unlock(&s->lock);
    sender_record(a, sender, seq, a->clock(a->clock_arg));
    rc = 0;
done:
    part_reset(p, seen); /* kept for the next delta: no 500 KB allocation per merge */
    pthread_mutex_unlock(&a->senders_lock);
    if (rc == EP_EPARSE && err && err->msg[0] == '\0') {
        delta_err(err, EP_EPARSE, "", "malformed delta");
    }
    atomic_fetch_add(rc == 0 ? &a->deltas_merged : &a->deltas_rejected, 1);
    return rc;
}

int ep_analytics_merge_delta(ep_analytics_t *a, const void *buf, size_t len)
{
    return ep_analytics_merge_delta_ex(a, buf, len, NULL);
}

void ep_analytics_destroy(ep_analytics_t *a)
{
    if (a == NULL) {
        return;
    }
    for (int i = 0; i < EP_ANALYTICS_SHARDS; i++) {
        part_destroy(a->shards[i].p);
        pthread_mutex_destroy(&a->shards[i].lock);
    }
    part_destroy(a->scratch);
    pthread_mutex_destroy(&a->senders_lock);
    ep_free(a);
}
