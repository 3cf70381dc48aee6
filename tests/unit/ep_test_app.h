#ifndef EP_TEST_APP_H
#define EP_TEST_APP_H

/*
 * A whole app in the test process (test_app, test_ingest): every port picked
 * by the kernel on 127.0.0.1, no sink, no analytics push, one HTTP thread and
 * one worker.
 */
#include "config/ep_config.h"
#include "roles/ep_app.h"
#include "ep_test.h"

#include <stdio.h>

/* The defaults with the test's ports, bind address, sink, pusher and threads. */
static inline void ep_test_app_config(ep_config_t *cfg)
{
    ep_config_defaults(cfg);
    cfg->api_port = cfg->ingest_port = cfg->processor_port = cfg->analytics_port = 0;
    cfg->grpc_producer_port = cfg->grpc_consumer_port = cfg->grpc_analytics_port = 0; /* off */
    snprintf(cfg->bind_addr, sizeof(cfg->bind_addr), "127.0.0.1");
    snprintf(cfg->sink, sizeof(cfg->sink), "none");
    cfg->analytics_push = EP_ANALYTICS_PUSH_OFF;
    cfg->http_threads = 1;
    cfg->workers = 1;
}

/* Creates and starts an app of roles from cfg; fails the test when it cannot. */
static inline ep_app_t *ep_test_app_start(const ep_config_t *cfg, unsigned roles)
{
    ep_app_t *app = NULL;
    char err[256] = "";

    if (ep_app_create(cfg, roles, &app, err, sizeof(err)) != 0) {
        fprintf(stderr, "ep_app_create: %s\n", err);
    }
    EP_ASSERT(app != NULL);
    if (ep_app_start(app, err, sizeof(err)) != 0) {
        fprintf(stderr, "ep_app_start: %s\n", err);
        EP_ASSERT(0);
    }
    return app;
}

#endif /* EP_TEST_APP_H */
