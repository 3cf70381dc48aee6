#ifndef EP_BREAKER_H
#define EP_BREAKER_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * A circuit breaker for one hop (gateway -> ingest, ingest -> processor, a
 * broker publish). Closed: every call goes through; CIRCUIT_BREAKER_FAILURES
 * consecutive failed calls open it. Open: calls are refused at once
 * (EP_ECIRCUIT) for CIRCUIT_BREAKER_OPEN_MS. Then the first call to arrive
 * moves it to half-open and is let through as the one probe; every other call
 * is refused until the probe's outcome is known. The probe's success closes
 * the breaker, its failure opens it for another cool-down.
 *
 * Consecutive failures rather than a failure ratio: one counter, no window to
 * slide, and a downstream that is down fails every call, so N in a row is
 * reached as fast as any ratio would be. A success resets the count.
 *
 * What counts (ep_breaker_outcome_of): a transport error, a timeout or a 5xx
 * meaning the downstream is down is a failure; an answer from a working
 * downstream is a success, also a refusal (4xx) or backpressure (queue full,
 * 503 "queue full", 429); a call cut short by our own shutdown counts neither way.
 *
 * Every call that was let through (ep_breaker_allow returned 0) must be
 * reported exactly once with ep_breaker_record. A pass remembers the
 * breaker's generation, which changes at every transition: outcomes of calls
 * let through before a transition are ignored, so only the probe decides in
 * half-open, and failures from before an opening do not count after it.
 *
 * Cost while closed: allow is one atomic load; record is one atomic load
 * (success) or one atomic add (failure). Transitions take a mutex; each one
 * logs one line (target, from, to, why). Thread-safe throughout.
 */

typedef struct ep_breaker_s ep_breaker_t;

typedef enum {
    EP_BREAKER_CLOSED = 0,   /* calls go through (metric value 0) */
    EP_BREAKER_OPEN = 1,     /* calls refused until the cool-down ends (1) */
    EP_BREAKER_HALF_OPEN = 2 /* one probe is out; other calls refused (2) */
} ep_breaker_state_t;

typedef enum {
    EP_BREAKER_OK = 0,  /* the downstream answered */
    EP_BREAKER_FAIL,    /* the downstream is down, unreachable or timed out */
    EP_BREAKER_NEUTRAL, /* says nothing about the downstream (our own shutdown) */
} ep_breaker_outcome_t;

/** What ep_breaker_allow gives a call it lets through; report it back with ep_breaker_record. */
typedef struct ep_breaker_pass_s {
    uint64_t gen; /* generation the call was let through in */
} ep_breaker_pass_t;

typedef struct ep_breaker_opts_s {
    const char *target; /* the hop's name ("processor", "ingest", "nats"), copied */
    uint32_t failures;  /* consecutive failures that open it, >= 1 */
    int64_t open_ms;    /* cool-down before the probe, >= 1 */
    /* The clock in ms (monotonic); NULL: ep_time_mono_ms. Tests pass a fake one. */
    int64_t (*now_ms)(void *arg);
    void *clock_arg;
} ep_breaker_opts_t;

typedef struct ep_breaker_stats_s {
    ep_breaker_state_t state;
    uint64_t consecutive_failures; /* counted while closed */
    uint64_t times_opened;         /* transitions to open (from closed or half-open) */
    uint64_t rejected;             /* calls refused while open or half-open */
    int retry_after_s;             /* what a refusal now says (0 while closed) */
} ep_breaker_stats_t;

/** Creates a closed breaker. Returns 0 and *out, or EP_EINVAL for bad options. */
int ep_breaker_create(const ep_breaker_opts_t *o, ep_breaker_t **out);

/**
 * Asks to make a call. Returns 0 with *pass filled (report the outcome with
 * ep_breaker_record), or EP_ECIRCUIT: the breaker is open or its probe is
 * out, nothing must be sent (ep_breaker_retry_after_s says for how long).
 * Lock-free while closed. Thread-safe.
 */
int ep_breaker_allow(ep_breaker_t *b, ep_breaker_pass_t *pass);

/**
 * Reports the outcome of a call let through with pass. why (borrowed, may be
 * NULL) names a failure in the log line of the transition it causes.
 * Thread-safe.
 */
void ep_breaker_record(ep_breaker_t *b, const ep_breaker_pass_t *pass, ep_breaker_outcome_t o,
                       const char *why);

/**
 * Reports a call that published n events with these EP_E* statuses (a queue's
 * publish callback, or one synchronous error with n = 1): a failure when one
 * of them is, else a success when one is, else neutral. Thread-safe.
 */
void ep_breaker_record_status(ep_breaker_t *b, const ep_breaker_pass_t *pass, size_t n,
                              const int *status);

/** Classifies an EP_E* status of a publish (0 is a success). */
ep_breaker_outcome_t ep_breaker_outcome_of(int status);

/** Classifies an HTTP answer: status 0 (no answer) and 5xx other than 503 are failures. */
ep_breaker_outcome_t ep_breaker_outcome_of_http(int status);

/** Seconds a refused caller should wait: the cool-down left, rounded up, at least 1. */
int ep_breaker_retry_after_s(ep_breaker_t *b);

/** The error text for a refused call: "circuit breaker open for <target>: ...". */
const char *ep_breaker_message(const ep_breaker_t *b);

/** The target name given at creation. */
const char *ep_breaker_target(const ep_breaker_t *b);

/** Reads the state and counters. Thread-safe. */
void ep_breaker_stats(ep_breaker_t *b, ep_breaker_stats_t *st);

/**
 * Appends "<target>":{"state":"closed","consecutive_failures":n,"times_opened":n,
 * "rejected":n,"retry_after_s":n,"last_opened_because":"..."} to out.
 */
void ep_breaker_stats_json(ep_breaker_t *b, ep_buf_t *out);

/** "closed", "open" or "half_open". */
const char *ep_breaker_state_name(ep_breaker_state_t s);

/** Frees the breaker. Accepts NULL. No call may be in ep_breaker_* on it. */
void ep_breaker_destroy(ep_breaker_t *b);

#endif /* EP_BREAKER_H */
