/*
 * Circuit breaker: closed -> open after N consecutive failures, open for a
 * cool-down, then half-open with one probe (see ep_breaker.h).
 *
 * The state and its generation share one atomic word (gen << 2 | state), so
 * a reader sees both from the same moment and the closed path is one load.
 * Transitions happen under mu, each one storing a new word with the next
 * generation; the mutex only orders transitions (and their log lines), the
 * hot path never takes it.
 */
#include "guard/ep_breaker.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_time.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define WORD(gen, st) (((uint64_t)(gen) << 2) | (uint64_t)(st))
#define GEN(w)        ((w) >> 2)
#define STATE(w)      ((ep_breaker_state_t)((w)&3u))

struct ep_breaker_s {
    _Atomic uint64_t word;         /* gen << 2 | state */
    _Atomic int64_t open_until;    /* when the cool-down ends (clock ms); read while open */
    _Atomic uint64_t fails;        /* consecutive failures */
    _Atomic uint64_t times_opened; /* stats */
    _Atomic uint64_t rejected;     /* stats */
    uint64_t threshold;
    int64_t open_ms;
    int64_t (*now_ms)(void *arg);
    void *clock_arg;
    pthread_mutex_t mu;    /* serialises transitions */
    char last_reason[200]; /* why it last opened (under mu) */
    char target[64];
    char message[160];
};

static int64_t default_clock(void *arg)
{
    (void)arg;
    return ep_time_mono_ms();
}

static int64_t now(ep_breaker_t *b)
{
    return b->now_ms(b->clock_arg);
}

const char *ep_breaker_state_name(ep_breaker_state_t s)
{
    switch (s) {
    case EP_BREAKER_CLOSED:
        return "closed";
    case EP_BREAKER_OPEN:
        return "open";
    case EP_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

int ep_breaker_create(const ep_breaker_opts_t *o, ep_breaker_t **out)
{
    ep_breaker_t *b;

    *out = NULL;
    if (o == NULL || o->target == NULL || o->failures < 1 || o->open_ms < 1) {
        return EP_EINVAL;
    }
    b = ep_calloc(1, sizeof(*b));
    atomic_init(&b->word, WORD(1, EP_BREAKER_CLOSED));
    b->threshold = o->failures;
    b->open_ms = o->open_ms;
    b->now_ms = o->now_ms ? o->now_ms : default_clock;
    b->clock_arg = o->clock_arg;
    pthread_mutex_init(&b->mu, NULL);
    snprintf(b->target, sizeof(b->target), "%s", o->target);
    snprintf(b->message, sizeof(b->message),
             "circuit breaker open for %s: it failed repeatedly; retry after Retry-After seconds",
             b->target);
    *out = b;
    return 0;
}

void ep_breaker_destroy(ep_breaker_t *b)
{
    if (b == NULL) {
        return;
    }
    pthread_mutex_destroy(&b->mu);
    ep_free(b);
}

/* Publishes a new state with the next generation and logs the transition. Caller holds mu. */
static void transition_locked(ep_breaker_t *b, uint64_t from, ep_breaker_state_t to,
                              int64_t cool_ms, const char *why)
{
    if (to == EP_BREAKER_OPEN) {
        /* Before the word: a reader that sees OPEN sees this cool-down. */
        atomic_store_explicit(&b->open_until, now(b) + cool_ms, memory_order_relaxed);
        atomic_fetch_add_explicit(&b->times_opened, 1, memory_order_relaxed);
        snprintf(b->last_reason, sizeof(b->last_reason), "%s", why);
    } else if (to == EP_BREAKER_CLOSED) {
        atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&b->word, WORD(GEN(from) + 1, to), memory_order_release);
    ep_log_write(to == EP_BREAKER_CLOSED ? EP_LOG_INFO : EP_LOG_WARN, "breaker",
                 "circuit breaker %s: %s -> %s: %s", b->target, ep_breaker_state_name(STATE(from)),
                 ep_breaker_state_name(to), why);
}

int ep_breaker_allow(ep_breaker_t *b, ep_breaker_pass_t *pass)
{
    uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);

    while (STATE(w) != EP_BREAKER_CLOSED) {
        uint64_t cur;
        char why[96];

        if (STATE(w) == EP_BREAKER_HALF_OPEN ||
            now(b) < atomic_load_explicit(&b->open_until, memory_order_relaxed)) {
            atomic_fetch_add_explicit(&b->rejected, 1, memory_order_relaxed);
            return EP_ECIRCUIT;
        }
        /* The cool-down is over: the first caller to get here is the probe. */
        snprintf(why, sizeof(why), "cool-down of %lld ms over, letting one probe through",
                 (long long)b->open_ms);
        pthread_mutex_lock(&b->mu);
        cur = atomic_load_explicit(&b->word, memory_order_acquire);
        if (cur == w) {
            transition_locked(b, w, EP_BREAKER_HALF_OPEN, 0, why);
            pthread_mutex_unlock(&b->mu);
            pass->gen = GEN(w) + 1;
            return 0;
        }
        pthread_mutex_unlock(&b->mu);
        w = cur; /* another caller moved it on: look again */
    }
    pass->gen = GEN(w);
    return 0;
}

/* Opens a closed breaker that reached the threshold, unless it moved on meanwhile. */
static void trip(ep_breaker_t *b, uint64_t w, uint64_t n, const char *why)
{
    char reason[200];

    snprintf(reason, sizeof(reason), "%llu consecutive failures, last: %s", (unsigned long long)n,
             why ? why : "failed");
    pthread_mutex_lock(&b->mu);
    if (atomic_load_explicit(&b->word, memory_order_acquire) == w) {
        transition_locked(b, w, EP_BREAKER_OPEN, b->open_ms, reason);
    }
    pthread_mutex_unlock(&b->mu);
}

/* Settles the probe of a half-open breaker. */
static void settle_probe(ep_breaker_t *b, uint64_t w, ep_breaker_outcome_t o, const char *why)
{
    char reason[200];

    pthread_mutex_lock(&b->mu);
    if (atomic_load_explicit(&b->word, memory_order_acquire) != w) {
        pthread_mutex_unlock(&b->mu);
        return;
    }
    switch (o) {
    case EP_BREAKER_OK:
        transition_locked(b, w, EP_BREAKER_CLOSED, 0, "the probe succeeded");
        break;
    case EP_BREAKER_FAIL:
        atomic_fetch_add_explicit(&b->fails, 1, memory_order_relaxed);
        snprintf(reason, sizeof(reason), "the probe failed: %s", why ? why : "failed");
        transition_locked(b, w, EP_BREAKER_OPEN, b->open_ms, reason);
        break;
    case EP_BREAKER_NEUTRAL:
        /* It said nothing about the target: open with the cool-down over, the next call probes. */
        snprintf(reason, sizeof(reason), "the probe was inconclusive: %s", why ? why : "-");
        transition_locked(b, w, EP_BREAKER_OPEN, 0, reason);
        break;
    }
    pthread_mutex_unlock(&b->mu);
}

void ep_breaker_record(ep_breaker_t *b, const ep_breaker_pass_t *pass, ep_breaker_outcome_t o,
                       const char *why)
{
    uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);

    if (GEN(w) != pass->gen) {
        return; /* let through before a transition: says nothing about now */
    }
    if (STATE(w) == EP_BREAKER_HALF_OPEN) {
        settle_probe(b, w, o, why);
        return;
    }
    if (STATE(w) != EP_BREAKER_CLOSED) {
        return;
    }
    if (o == EP_BREAKER_OK) {
        /* Read first: a steady stream of successes writes nothing shared. */
        if (atomic_load_explicit(&b->fails, memory_order_relaxed) != 0) {
            atomic_store_explicit(&b->fails, 0, memory_order_relaxed);
        }
    } else if (o == EP_BREAKER_FAIL) {
        uint64_t n = atomic_fetch_add_explicit(&b->fails, 1, memory_order_relaxed) + 1;
        if (n >= b->threshold) {
            trip(b, w, n, why);
        }
    }
}

ep_breaker_outcome_t ep_breaker_outcome_of(int status)
{
    switch (status) {
    case 0:
    case EP_EFULL:     /* backpressure: the target works */
    case EP_EINVAL:    /* a refusal by a working target */
    case EP_EVALIDATE: /* ... */
    case EP_E2BIG:
    case EP_EAGAIN:
        return EP_BREAKER_OK;
    case EP_ECLOSED: /* our own shutdown */
    case EP_ECIRCUIT:
        return EP_BREAKER_NEUTRAL;
    default: /* unavailable, timed out, refused connection, I/O error */
        return EP_BREAKER_FAIL;
    }
}

ep_breaker_outcome_t ep_breaker_outcome_of_http(int status)
{
    if (status == 0 || (status >= 500 && status != 503)) {
        return EP_BREAKER_FAIL;
    }
    return EP_BREAKER_OK;
}

void ep_breaker_record_status(ep_breaker_t *b, const ep_breaker_pass_t *pass, size_t n,
                              const int *status)
{
    ep_breaker_outcome_t o = EP_BREAKER_NEUTRAL;
    int fail = 0;

    for (size_t i = 0; i < n; i++) {
        ep_breaker_outcome_t e = ep_breaker_outcome_of(status[i]);
        if (e == EP_BREAKER_FAIL) {
            o = EP_BREAKER_FAIL;
            fail = status[i];
            break;
        }
        if (e == EP_BREAKER_OK) {
            o = EP_BREAKER_OK;
        }
    }
    ep_breaker_record(b, pass, o, fail ? ep_strerror(fail) : "shutting down");
}

static int retry_after_of(ep_breaker_t *b, uint64_t w)
{
    int64_t left;

    if (STATE(w) != EP_BREAKER_OPEN) {
        return 1;
    }
    left = atomic_load_explicit(&b->open_until, memory_order_relaxed) - now(b);
    return left <= 1000 ? 1 : (int)((left + 999) / 1000);
}

int ep_breaker_retry_after_s(ep_breaker_t *b)
{
    return retry_after_of(b, atomic_load_explicit(&b->word, memory_order_acquire));
}

const char *ep_breaker_message(const ep_breaker_t *b)
{
    return b->message;
}

const char *ep_breaker_target(const ep_breaker_t *b)
{
    return b->target;
}

void ep_breaker_stats(ep_breaker_t *b, ep_breaker_stats_t *st)
{
    uint64_t w = atomic_load_explicit(&b->word, memory_order_acquire);

    st->state = STATE(w);
    st->consecutive_failures = atomic_load_explicit(&b->fails, memory_order_relaxed);
    st->times_opened = atomic_load_explicit(&b->times_opened, memory_order_relaxed);
    st->rejected = atomic_load_explicit(&b->rejected, memory_order_relaxed);
    st->retry_after_s = st->state == EP_BREAKER_CLOSED ? 0 : retry_after_of(b, w);
}

void ep_breaker_stats_json(ep_breaker_t *b, ep_buf_t *out)
{
    ep_breaker_stats_t st;
    char reason[sizeof(b->last_reason)];

    ep_breaker_stats(b, &st);
    pthread_mutex_lock(&b->mu);
    memcpy(reason, b->last_reason, sizeof(reason));
    pthread_mutex_unlock(&b->mu);
    ep_buf_put_json_str(out, b->target, strlen(b->target));
    ep_buf_printf(out,
                  ":{\"state\":\"%s\",\"consecutive_failures\":%llu,\"times_opened\":%llu,"
                  "\"rejected\":%llu,\"retry_after_s\":%d,\"last_opened_because\":",
                  ep_breaker_state_name(st.state), (unsigned long long)st.consecutive_failures,
                  (unsigned long long)st.times_opened, (unsigned long long)st.rejected,
                  st.retry_after_s);
    if (reason[0]) {
        ep_buf_put_json_str(out, reason, strlen(reason));
    } else {
        ep_buf_puts(out, "null");
    }
    ep_buf_putc(out, '}');
}
