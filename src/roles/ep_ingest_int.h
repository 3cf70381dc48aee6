/*
 * The ingest role's internals, shared by
 *   ep_ingest.c        single events, the publish and its answers, stats, the route table
 *   ep_ingest_batch.c  POST /events/batch: read, split, parse, de-duplicate, publish, answer
 */
#ifndef EP_INGEST_INT_H
#define EP_INGEST_INT_H

#include "base/ep_time.h"
#include "event/ep_dedup.h"
#include "event/ep_event.h"
#include "event/ep_id.h"
#include "guard/ep_breaker.h"
#include "roles/ep_app.h"

#include <stdatomic.h>
#include <stdint.h>

#define ID_HEADER "X-Message-Id" /* id (UUID) assigned by the gateway before its hop */

/* The window key of a request's numbered ids: its base and a '*' (no event id is that). */
#define PUBLISH_CHUNK 256 /* events per publish call of a batch (and of a gRPC submit) */
#define RANGE_KEY_LEN (EP_UUID_STR_LEN + 1)

typedef enum { MODE_SYNC, MODE_ASYNC } mode_t_;

/* A route's context: its ingest, when it answers, and what it adds to each event. */
typedef struct route_s {
    ep_ingest_t *ig;
    mode_t_ mode;
    ep_event_parse_opts_t opts; /* typed routes: default source, forced type */
    int typed_index;            /* -1, or 0..2 for user/order/payment */
} route_t;

static inline void ingest_inc(atomic_uint_fast64_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* The dedup window's clock: monotonic seconds. */
static inline int64_t ingest_now_s(void)
{
    return ep_time_mono_ms() / 1000;
}

/* The calling server thread's event parser (one per thread, made with cfg's limits). */
ep_event_parser_t *ep__ingest_parser(const ep_config_t *cfg);

/*
 * Publishes through the hop's circuit breaker, when there is one: EP_ECIRCUIT
 * (nothing taken, nothing sent) while it is open. The callback must report the
 * outcome with ep__ingest_report(); a synchronous failure is reported here.
 */
int ep__ingest_publish(ep_ingest_t *ig, ep_breaker_pass_t *pass, ep_event_t **evs, size_t n,
                       ep_publish_cb cb, void *arg);
/* Reports a publish outcome (n statuses) to the hop's circuit breaker, if any. */
void ep__ingest_report(ep_ingest_t *ig, const ep_breaker_pass_t *pass, size_t n, const int *status);
/* Retry-After for a failed publish: the breaker's cool-down left while it is open. */
int ep__ingest_retry_after(ep_ingest_t *ig, int err);
/*
 * The publish error table (ep_ingest.c): the HTTP status that answers err
 * (400 or 413 when the queue refused the event, 409 for an id still being
 * stored, else 503), and its message (the breaker's own while it is open;
 * "queue unavailable: ..." written into buf for an error without a row).
 */
int ep__ingest_error_status(int err);
const char *ep__ingest_error_msg(ep_ingest_t *ig, int err, char *buf, size_t len);

/* JSON, NDJSON, text and curl's default form type are read as JSON. 1: readable, else 0. */
int ep__ingest_content_type_ok(ep_http_req_t *req);
/*
 * The gateway's X-Message-Id, when sent: 1 with *id set (NULL when absent), or
 * 0 after answering 400 (not a UUID).
 */
int ep__ingest_id_header(ep_http_req_t *req, const char **id);
/* The range key (RANGE_KEY_LEN bytes and a NUL) of the request numbered from id. */
void ep__ingest_range_key(const char *id, char *key);
/*
 * Reserves an event id in the window. numbered: the id is this request's own
 * numbering (X-Message-Id). Else an id the gateway assigned once is also a
 * repeat when the request that numbered it was kept whole (its range key).
 */
ep_dedup_result_t ep__ingest_reserve_id(ep_dedup_t *d, const char *id, size_t len, int numbered,
                                        int64_t now);

static inline int ingest_has_client_id(const ep_event_t *ev)
{
    return (ev->flags & EP_EVENT_F_ID_GENERATED) == 0;
}

/* ep_ingest_batch.c: the handler of POST /events/batch (arg: its route_t). */
void ep__ingest_on_batch(void *arg, ep_http_req_t *req);

#endif /* EP_INGEST_INT_H */
