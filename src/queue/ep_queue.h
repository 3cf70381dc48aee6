#ifndef EP_QUEUE_H
#define EP_QUEUE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/ep_buf.h"
#include "config/ep_config.h"
#include "base/ep_error.h"
#include "event/ep_event.h"

/*
 * The queue provider interface. Every queue (memory, disk, nats, kafka,
 * composite, the HTTP forwarder to a remote processor) is one const
 * ep_queue_provider_t; the core only calls the ep_queue_* wrappers below and
 * never looks at which provider it has.
 *
 * Ownership: ep_queue_publish() takes the events on success (the caller's
 * array slots are set to NULL); on an error return the caller still owns them
 * and the callback is never invoked. ep_queue_consume() hands events to the
 * caller, who must give each back exactly once through ep_queue_ack() (done,
 * the provider frees it) or ep_queue_nack() (redeliver later).
 *
 * Options: a provider owns its settings, as a Fluent Bit plugin owns its
 * config_map. Its table (options: names, flags, defaults, bounds, help, offsets
 * into its own options struct) is what ep_queue_config_load reads, validates
 * and lists in --help under its name; QUEUE_TYPE chooses among the registered
 * providers by name. When a queue is made, its settings are parsed from the
 * ep_config_t into a fresh options struct that init borrows. Nothing outside
 * src/queue/ reads them: a role that needs a consumer of its own asks for one
 * (ep_queue_open_consumer) instead of editing the provider's settings.
 */

/*
 * The provider struct's version. 2 (issue 19): init receives the provider's parsed
 * options (opts), and options / own_consumer were appended. A provider built for
 * version 1 would be called with the wrong init signature, so registration refuses it.
 */
#define EP_QUEUE_API_V2      2
#define EP_QUEUE_API_VERSION EP_QUEUE_API_V2

#define EP_QUEUE_F_LOCAL    0x1 /* the queue lives in this process only (memory) */
#define EP_QUEUE_F_INTERNAL 0x2 /* not a QUEUE_TYPE: used by the roles themselves (forward) */

typedef struct ep_queue_s ep_queue_t;

typedef struct ep_queue_stats_s {
    uint64_t enqueued;      /* events accepted by publish */
    uint64_t dequeued;      /* events handed out by consume (redeliveries included) */
    uint64_t acked;         /* events acknowledged */
    uint64_t nacked;        /* events given back for redelivery */
    uint64_t rejected_full; /* publishes refused because the queue was full */
    int64_t size;           /* events waiting now; -1 when unknown */
    int64_t capacity;       /* bound; -1 when unbounded or unknown */
    int64_t in_flight;      /* consumed, not yet acked */
    /* Appended (providers that memset the struct leave it 0): */
    uint64_t rejected_unavailable; /* publishes that failed for any other reason than full:
                                    * broker unreachable, timed out, closed, refused */
    uint64_t lost; /* acknowledged events skipped without being processed (Kafka: offset reset) */
} ep_queue_stats_t;

/*
 * The counters behind ep_queue_stats_t that every provider keeps, bumped once
 * per batch (ep_counter_add). Publisher and consumer sides are a full cache line
 * apart, so publishing threads and workers do not write the same line.
 */
#define EP_QUEUE_CACHE_LINE 64

typedef struct ep_queue_counters_s {
    _Atomic uint64_t enqueued; /* publisher side */
    _Atomic uint64_t rejected_full;
    _Atomic uint64_t rejected_unavailable;
    char pad[EP_QUEUE_CACHE_LINE];
    _Atomic uint64_t dequeued; /* consumer side */
    _Atomic uint64_t acked;
    _Atomic uint64_t nacked;
    _Atomic uint64_t lost;
} ep_queue_counters_t;

/**
 * Fills st from c: every counter, in_flight = dequeued - acked - nacked (read in
 * that order, so it errs on the high side; never below 0), size and capacity -1
 * (unknown: the provider sets what it knows after the call). Thread-safe.
 */
void ep_queue_counters_read(ep_queue_counters_t *c, ep_queue_stats_t *st);

/**
 * Publish completion: status[i] is 0 or a negative EP_E* for evs[i] of the
 * publish call, in order. Called exactly once per successful publish call,
 * possibly before ep_queue_publish() returns, from any thread. The status
 * array is borrowed for the duration of the call.
 */
typedef void (*ep_publish_cb)(void *arg, size_t n, const int *status);

typedef struct ep_queue_provider_s {
    int api_version;  /* EP_QUEUE_API_VERSION; fields are only appended within a version */
    const char *name; /* "memory" */
    unsigned flags;   /* EP_QUEUE_F_* */
    /**
     * Creates the instance from cfg and opts into *ctx. opts is the provider's own
     * options struct, parsed from cfg by its table (NULL when it has none), borrowed
     * for the call: the instance copies what it keeps. Returns 0 or EP_E*, message in err.
     */
    int (*init)(const ep_config_t *cfg, const void *opts, void **ctx, char *err, size_t errlen);
    /**
     * Publishes evs[0..n). Returns 0 (ownership taken, cb will be called once) or
     * EP_EFULL / EP_ECLOSED / EP_EUNAVAIL / ... (nothing taken, cb never called).
     */
    int (*publish)(void *ctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg);
    /**
     * Takes up to max events into out, waiting up to timeout_ms for the first
     * one (blocking wait, never spinning). Returns the count (0 on timeout), or
     * EP_ECLOSED once closed and drained.
     */
    int (*consume)(void *ctx, ep_event_t **out, size_t max, int timeout_ms);
    /** Acknowledges processed events; the provider frees them. Returns 0 or EP_E*. */
    int (*ack)(void *ctx, ep_event_t **evs, size_t n);
    /** Gives events back for redelivery after delay_ms. Returns 0 or EP_E*. */
    int (*nack)(void *ctx, ep_event_t **evs, size_t n, int delay_ms);
    /** Fills the counters. Thread-safe, lock-free where possible. */
    void (*stats)(void *ctx, ep_queue_stats_t *st);
    /** Appends provider-specific JSON members (",\"k\":v..." with a leading comma) or nothing. May
     * be NULL. */
    void (*stats_json)(void *ctx, ep_buf_t *out);
    /** Returns 1 when usable; otherwise 0 and a reason in reason. */
    int (*ready)(void *ctx, char *reason, size_t len);
    /** Waits until published events are handed off (brokers). May be NULL. */
    int (*flush)(void *ctx, int timeout_ms);
    /** Stops accepting publishes (EP_ECLOSED); consumers drain what is left, then get EP_ECLOSED.
     */
    void (*close)(void *ctx);
    /** Frees the instance and any events still inside. Accepts NULL. */
    void (*destroy)(void *ctx);
    /**
     * Moves consumed events that failed for good to the dead-letter store (a
     * subject, a topic, a list) and acknowledges the originals; takes the events.
     * reason is borrowed. Returns 0 or EP_E* (then the caller still owns them).
     * May be NULL: the caller then logs, counts and acks them.
     */
    int (*dead_letter)(void *ctx, ep_event_t **evs, size_t n, const char *reason);
    /**
     * Appends the consumer lag as one JSON object ({"total":n,"partitions":[...]} for
     * Kafka, {"total":n,"pending":n,...} for NATS). May be NULL (no lag to report).
     */
    void (*lag_json)(void *ctx, ep_buf_t *out);
    /** Its settings: names, flags, defaults, bounds, help, offsets into its options struct
     * (ep_opt.h; the table's name is the provider's). NULL: it has none. */
    const ep_opt_table_t *options;
    /**
     * Turns opts (its options struct, parsed, before init) into those of a consumer
     * of this process alone named name: every retained event from the start of the
     * topic/stream, with a position (offsets, acks) nobody else shares (Kafka: group
     * "<group>-<name>-<tag>", NATS: durable "<durable>-<name>-<tag>", tag from
     * ep_queue_instance_tag), so each process that opens one reads everything.
     * name is borrowed. Returns 0 or EP_E*, "NAME: why" in err.
     * May be NULL: the provider has only the one consumer (ep_queue_open_consumer
     * then answers EP_ENOTSUP).
     */
    int (*own_consumer)(void *opts, const char *name, char *err, size_t errlen);
} ep_queue_provider_t;

struct ep_queue_s {
    const ep_queue_provider_t *provider;
    void *ctx;
    char last_error[256];
};

/**
 * Registers a provider besides the compiled-in ones (a plugin, a test double).
 * Call at start-up, before any lookup; not thread-safe. Returns 0, EP_EINVAL
 * (api_version is not EP_QUEUE_API_VERSION, or the name is taken) or EP_E2BIG (too many).
 */
int ep_queue_provider_register(const ep_queue_provider_t *p);

/** Finds a provider by name ("memory"). NULL when unknown. */
const ep_queue_provider_t *ep_queue_provider_find(const char *name);

/** Lists compiled-in provider names, comma-separated, into out. */
void ep_queue_provider_names(char *out, size_t len);

/**
 * Fills out[0..max) with the option table of every provider QUEUE_TYPE can
 * name (compiled-in and registered; not EP_QUEUE_F_INTERNAL ones), in order; a
 * provider without options gets an empty table of its name. Returns the count.
 */
size_t ep_queue_option_tables(ep_opt_table_t *out, size_t max);

/** ep_config_load with the options of every provider ep_queue_option_tables lists. */
int ep_queue_config_load(ep_config_t *cfg, int argc, char **argv, char *err, size_t errlen);

/** ep_config_usage with the registered providers and their options. */
void ep_queue_config_usage(FILE *f);

/**
 * Creates a queue of the named type from cfg. Returns 0 and *out, or EP_EINVAL
 * (unknown type) / the provider's error, with a message in err.
 */
int ep_queue_create(const char *type, const ep_config_t *cfg, ep_queue_t **out, char *err,
                    size_t errlen);

/** Creates a queue from an explicit provider (tests, forwarders). Same contract. */
int ep_queue_create_with(const ep_queue_provider_t *provider, const ep_config_t *cfg,
                         ep_queue_t **out, char *err, size_t errlen);

/**
 * Creates a queue of provider with a consumer of this process alone named name (a
 * role reading every event without taking it from the processor: "analytics"),
 * through the provider's own_consumer. Same contract as ep_queue_create_with;
 * EP_ENOTSUP (message in err) when the provider has only the one consumer.
 */
int ep_queue_open_consumer(const ep_queue_provider_t *provider, const ep_config_t *cfg,
                           const char *name, ep_queue_t **out, char *err, size_t errlen);

/**
 * This process's instance tag: 12 lower-case hex digits, random, the same for every
 * call in one process (own_consumer names). Thread-safe.
 */
const char *ep_queue_instance_tag(void);

/** Destroys the queue and its provider instance. Accepts NULL. */
void ep_queue_destroy(ep_queue_t *q);

static inline int ep_queue_publish(ep_queue_t *q, ep_event_t **evs, size_t n, ep_publish_cb cb,
                                   void *arg)
{
    return q->provider->publish(q->ctx, evs, n, cb, arg);
}

static inline int ep_queue_consume(ep_queue_t *q, ep_event_t **out, size_t max, int timeout_ms)
{
    return q->provider->consume(q->ctx, out, max, timeout_ms);
}

static inline int ep_queue_ack(ep_queue_t *q, ep_event_t **evs, size_t n)
{
    return q->provider->ack(q->ctx, evs, n);
}

static inline int ep_queue_nack(ep_queue_t *q, ep_event_t **evs, size_t n, int delay_ms)
{
    return q->provider->nack(q->ctx, evs, n, delay_ms);
}

static inline void ep_queue_stats(ep_queue_t *q, ep_queue_stats_t *st)
{
    q->provider->stats(q->ctx, st);
}

static inline void ep_queue_stats_json(ep_queue_t *q, ep_buf_t *out)
{
    if (q->provider->stats_json) {
        q->provider->stats_json(q->ctx, out);
    }
}

static inline int ep_queue_ready(ep_queue_t *q, char *reason, size_t len)
{
    return q->provider->ready(q->ctx, reason, len);
}

static inline int ep_queue_flush(ep_queue_t *q, int timeout_ms)
{
    return q->provider->flush ? q->provider->flush(q->ctx, timeout_ms) : 0;
}

static inline void ep_queue_close(ep_queue_t *q)
{
    q->provider->close(q->ctx);
}

/** Dead-letters consumed events (see the provider field). EP_ENOTSUP when the provider has none. */
static inline int ep_queue_dead_letter(ep_queue_t *q, ep_event_t **evs, size_t n,
                                       const char *reason)
{
    return q->provider->dead_letter ? q->provider->dead_letter(q->ctx, evs, n, reason) : EP_ENOTSUP;
}

/** Appends the lag object, or "null" when the provider reports none. */
static inline void ep_queue_lag_json(ep_queue_t *q, ep_buf_t *out)
{
    if (q->provider->lag_json) {
        q->provider->lag_json(q->ctx, out);
    } else {
        ep_buf_puts(out, "null");
    }
}

static inline int ep_queue_is_local(const ep_queue_t *q)
{
    return (q->provider->flags & EP_QUEUE_F_LOCAL) != 0;
}

#endif /* EP_QUEUE_H */
