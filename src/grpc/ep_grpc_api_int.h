#ifndef EP_GRPC_API_INT_H
#define EP_GRPC_API_INT_H

/*
 * Private layout of the gRPC services, shared by ep_grpc_api.c (helpers,
 * ingest, wiring) and ep_grpc_api_health.c (health, stats, grpc.health.v1,
 * the call metrics). Nothing here leaves src/grpc/.
 */
#include "grpc/ep_grpc_server.h"
#include "grpc/ep_grpc_wire.h"
#include "obs/ep_metrics.h"
#include "roles/ep_access.h"
#include "roles/ep_app.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define N_SRV       3
#define MAX_METHODS 32

enum { SRV_PRODUCER, SRV_CONSUMER, SRV_ANALYTICS };
extern const char *const ep__grpc_srv_names[N_SRV]; /* the services, by SRV_* */

typedef struct ep_grpc_api_s ep_grpc_api_t;

/* One listener: its server and the metric cells of its methods. */
typedef struct port_s {
    ep_grpc_api_t *api;
    int idx;
    ep_grpc_server_t *srv;
    const char *services[4]; /* the services it serves (health names) */
    int nservices;
    char svc[MAX_METHODS][64], meth[MAX_METHODS][48];
    _Atomic(ep_metric_child_t *) handled[MAX_METHODS][EP_GRPC_CODES];
    ep_metric_child_t *seconds[MAX_METHODS];
} port_t;

struct ep_grpc_api_s {
    ep_app_t *app;
    port_t ports[N_SRV];
    ep_metric_t *handled, *seconds;
    atomic_int quiesced;
};

/** 1 when the role behind service which is ready; else 0 and why in reason. */
int ep__grpc_is_ready(ep_grpc_api_t *api, int which, char *reason, size_t len);

/** The access check of a call: 1 (go on), or 0 and the call was answered UNAUTHENTICATED. */
int ep__grpc_access_ok(ep_grpc_api_t *api, ep_grpc_call_t *call, int cls, ep_access_who_t *who);

/* ---- ep_grpc_api_health.c: the handlers (ep_grpc_handler_cb), arg the port_t. */
void ep__grpc_on_producer_health(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_consumer_health(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_analytics_health(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_consumer_stats(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_summary(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_metrics(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_health_check(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);
void ep__grpc_on_health_watch(void *arg, ep_grpc_call_t *call, const uint8_t *msg, size_t len);

#endif /* EP_GRPC_API_INT_H */
