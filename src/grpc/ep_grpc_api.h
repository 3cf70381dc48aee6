#ifndef EP_GRPC_API_H
#define EP_GRPC_API_H

#include <stddef.h>
#include <stdint.h>

/*
 * The gRPC API of an eventpipe process (issue 16; proto/eventpipe_api.proto):
 *   GRPC_PRODUCER_PORT   eventpipe.v1.ProducerService, eventpipe.v1.IngestService (ingest role)
 *   GRPC_CONSUMER_PORT   eventpipe.v1.ConsumerService (processor role)
 *   GRPC_ANALYTICS_PORT  eventpipe.v1.AnalyticsService (analytics role)
 * each with grpc.health.v1.Health and server reflection; 0 turns one off.
 * The semantics are the REST API's: see proto/eventpipe_api.proto.
 */

typedef struct ep_app_s ep_app_t;

/** Creates the listeners of app's roles (not started). 0, or EP_E* with err filled. */
int ep__grpc_create(ep_app_t *app, char *err, size_t errlen);

/** Starts them. 0, or EP_E* with err filled. */
int ep__grpc_start(ep_app_t *app, char *err, size_t errlen);

/** SIGTERM: health says NOT_SERVING, every connection gets GOAWAY, no new ones. */
void ep__grpc_quiesce(ep_app_t *app);

/** Calls not answered yet (the shutdown waits for them like HTTP requests). */
int64_t ep__grpc_busy(ep_app_t *app);

/** "producer :50051 consumer :50052 ..." for the start-up log ("" when none). */
void ep__grpc_describe(ep_app_t *app, char *out, size_t len);

/** Stops and frees the listeners. Idempotent. */
void ep__grpc_destroy(ep_app_t *app);

#endif /* EP_GRPC_API_H */
