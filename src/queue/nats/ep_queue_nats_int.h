#ifndef EP_QUEUE_NATS_INT_H
#define EP_QUEUE_NATS_INT_H

/*
 * The NATS JetStream queue provider, private layout shared by
 * ep_queue_nats.c (publish, consume, ack, stats: the provider operations) and
 * ep_queue_nats_config.c (connection, stream and consumer set-up, the keeper
 * thread, destroy).
 */

#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "config/ep_config.h"
#include "queue/ep_queue.h"

#define EP_NATS_PUB_BUCKETS     4096  /* in-flight publish map (power of two) */
#define EP_NATS_FETCH_MAX       256   /* most messages asked for in one pull request */
#define EP_NATS_ACK_WAIT_MS     30000 /* consumer AckWait when we create the durable */
#define EP_NATS_API_WAIT_MS     2000  /* JetStream API requests (stream/consumer info, add) */
#define EP_NATS_INFO_PERIOD_MS  1000  /* stream/consumer figures refreshed at most this often */
#define EP_NATS_MAX_PENDING     65536 /* async publishes in flight before publish stalls */
#define EP_NATS_STALL_WAIT_MS   200   /* how long a stalled publish waits (then EP_EFULL) */
#define EP_NATS_STREAM_MAX_AGE  (24LL * 3600 * 1000000000LL) /* ns; Limits retention */
#define EP_NATS_STREAM_MAX_SIZE (8LL << 30)                  /* bytes; DiscardNew beyond */
#define EP_NATS_MAX_SERVERS     32                           /* entries in the NATS_URL list */
#define EP_NATS_REPLICA_IDLE_MS (5 * 60 * 1000) /* a replica durable's InactiveThreshold */
#define EP_NATS_PACK_MAX        1000            /* most events in one message (both ways) */
#define EP_NATS_PACK_BYTES      (256 * 1024)    /* a packed message stops growing past this */

/* The provider's settings (its table, ep__nats_options, in ep_queue_nats_config.c). */
typedef struct ep_nats_opts_s {
    char url[256];         /* NATS_URL: a server or a comma-separated list */
    char stream[64];       /* NATS_STREAM */
    char subject[128];     /* NATS_SUBJECT */
    char durable[64];      /* NATS_DURABLE: the pull consumer */
    char dlq_subject[128]; /* NATS_DLQ_SUBJECT */
    int replicas;          /* NATS_STREAM_REPLICAS of the stream and consumers created here */
    int batch_events;      /* NATS_BATCH_EVENTS: most events per published message */
    int replica; /* own_consumer: the durable is this process's alone (see ep__nats_own_consumer) */
} ep_nats_opts_t;

extern const ep_opt_table_t ep__nats_options;

/* Makes opts those of a durable of this process alone, "<NATS_DURABLE>-<name>-<instance tag>",
 * reading the stream from its start; the server removes it after EP_NATS_REPLICA_IDLE_MS without
 * pull requests (the process died). The provider's own_consumer. */
int ep__nats_own_consumer(void *opts, const char *name, char *err, size_t errlen);

typedef struct ep_nats_batch_s ep_nats_batch_t;

/* One published message waiting for its PubAck; lives inside its batch. */
typedef struct ep_nats_slot_s {
    natsMsg *msg;                /* key of the in-flight map */
    struct ep_nats_slot_s *next; /* hash chain */
    ep_nats_batch_t *batch;
    uint32_t idx; /* position of its first event in the publish call */
    uint32_t cnt; /* events it carries (a packed message: more than one) */
} ep_nats_slot_t;

/*
 * A consumed message that carries several events (NATS_BATCH_EVENTS > 1 at the
 * publisher): each of its events holds it (ev->qh, tagged with the low bit), and
 * the message is acknowledged once every event was acked or dead-lettered, or
 * nak'ed (all of it comes back) when any was nacked.
 */
typedef struct ep_nats_pack_s {
    natsMsg *msg;
    _Atomic uint32_t left; /* events not yet given back */
    _Atomic int nak_ms;    /* -1: ack at the end; else nak with this delay (the largest asked) */
} ep_nats_pack_t;

/* One publish call: the callback fires when left drops to zero. */
struct ep_nats_batch_s {
    ep_publish_cb cb;
    void *arg;
    size_t n;
    _Atomic size_t left; /* results still due, plus one held by the publishing thread */
    int *status;         /* n entries, after the slots */
    ep_nats_slot_t slots[];
};

typedef struct ep_nats_ctx_s {
    ep_config_t cfg;    /* a copy: the strings are ours */
    ep_nats_opts_t set; /* its settings, a copy */
    natsOptions *opts;
    natsConnection *nc;
    jsCtx *js;

    /* In-flight publishes: natsMsg * -> slot. */
    pthread_mutex_t pub_lock;
    ep_nats_slot_t *pub_map[EP_NATS_PUB_BUCKETS];

    /* Consumer side: one pull subscription, Fetch serialized (nats.c refuses concurrent
     * fetches on one subscription). */
    pthread_mutex_t fetch_lock;
    natsSubscription *sub;
    int consumer_ok; /* the durable is known to exist (under fetch_lock) */
    /* Events of packed messages fetched beyond what the consume call had room for, handed
     * out first by the next one (under fetch_lock; spare_avail readable without it). */
    ep_event_t **spare;
    size_t spare_off, spare_n, spare_cap;
    _Atomic size_t spare_avail;
    _Atomic uint32_t
        per_msg; /* events per fetched message, smoothed: sizes the next pull request */

    /* Keeper thread: (re)ensures the stream, refreshes the figures. */
    pthread_t keeper;
    int keeper_started;
    pthread_mutex_t lock; /* guards the cond wait, last_error */
    pthread_cond_t cond;
    char last_error[384];
    int conn_closed; /* the connection's closed callback ran */

    _Atomic int closed;
    _Atomic int stopping;   /* destroy: the keeper exits */
    _Atomic int stream_ok;  /* the stream exists since the last (re)connect */
    _Atomic int wake;       /* a callback asked the keeper to look now */
    _Atomic int async_used; /* js_PublishMsgAsync was called (nats.c's pending map exists) */
    /* Set on every (re)connect and when the durable is found missing: consume looks the
     * durable up again (another server of the list, or one restarted with an empty store,
     * lacks it, and a pull request to a missing durable only times out). */
    _Atomic int consumer_recheck;
    /* A replica durable (set.replica): the highest stream sequence handed out, so a durable the
     * server removed meanwhile (a long disconnection) is made again from the next one. */
    _Atomic uint64_t replica_seq;

    /* Figures from the broker, -1 when unknown. */
    _Atomic int64_t stream_msgs;
    _Atomic int64_t num_pending;
    _Atomic int64_t num_ack_pending;
    _Atomic int64_t num_redelivered;

    /* Counters (relaxed). */
    ep_queue_counters_t counts;      /* acked counts the dead-lettered too; rejected_unavailable
                                      * the failed and the refused (not full) publishes */
    _Atomic uint64_t publish_failed; /* PubAck errors other than full */
    _Atomic uint64_t dead_lettered;
    _Atomic uint64_t poison;
    _Atomic uint64_t ack_failed;
    _Atomic int64_t last_warn_ms; /* rate limit for warnings from hot paths */
} ep_nats_ctx_t;

/*
 * Internal API of the provider (ep_queue_nats_config.c), used by
 * ep_queue_nats.c. ep__nats_ack_handler lives in ep_queue_nats.c and is
 * installed on the JetStream context by ep__nats_ctx_create.
 */

/**
 * Creates the context: validates set->url (EP_ECONFIG naming NATS_URL when
 * unusable), connects in the background with reconnects for ever, starts the
 * keeper thread. A server that is down is not an error. Returns 0 and *out, or
 * EP_E* with a message in err. Not thread-safe with respect to the new context.
 */
int ep__nats_ctx_create(const ep_config_t *cfg, const ep_nats_opts_t *set, ep_nats_ctx_t **out,
                        char *err, size_t errlen);

/**
 * Stops the keeper, fails the publishes still in flight (their callbacks run
 * with EP_EUNAVAIL), closes the connection and frees everything. Accepts NULL.
 * Call once, after every consumed event was given back.
 */
void ep__nats_ctx_destroy(ep_nats_ctx_t *ctx);

/**
 * Makes sure the durable pull consumer exists and is subscribed. Call with
 * fetch_lock held. Returns 0 or EP_EUNAVAIL (details in last_error).
 */
int ep__nats_consumer_ensure(ep_nats_ctx_t *ctx);

/** 1 when the connection is up. Thread-safe. */
int ep__nats_connected(ep_nats_ctx_t *ctx);

/** Records a problem for ready() and the log (warnings at most every 5 s). Thread-safe. */
void ep__nats_note_error(ep_nats_ctx_t *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Wakes the keeper (reconnect, a missing stream). Thread-safe. */
void ep__nats_kick(ep_nats_ctx_t *ctx);

/** The PubAck handler installed on the JetStream context (runs on a nats.c thread). */
void ep__nats_ack_handler(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure);

/** Gives back the consumed events no caller took (destroy path, before the connection closes). */
void ep__nats_drop_spare(ep_nats_ctx_t *ctx);

/** Fails a message nats.c handed back unacknowledged (destroy path). */
void ep__nats_fail_pending(ep_nats_ctx_t *ctx, natsMsg *msg, int err);

#endif /* EP_QUEUE_NATS_INT_H */
