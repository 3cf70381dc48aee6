/*
 * Ingest's answers to a failed publish come from one table (issue 19 item 5):
 * single events, batches and the processor's /enqueue answer each queue error
 * with the same status (design.md section 2: 400 failed validation, 413 over a
 * limit, 503 with Retry-After for a full or unavailable queue), and a 503 says
 * whether the event may be kept. The queue is the memory provider with its
 * publish replaced by one that fails with a chosen error.
 */
#include "roles/ep_app.h"
#include "http/ep_http_client.h"
#include "base/ep_mem.h"
#include "ep_test.h"
#include "ep_test_app.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

extern const ep_queue_provider_t ep_queue_memory_provider;

#define EVENT "{\"id\":\"ev-1\",\"source\":\"test\",\"data\":\"hello\"}"
#define BATCH                                                                                      \
    "[{\"id\":\"b-1\",\"source\":\"t\",\"data\":\"a\"},{\"id\":\"b-2\",\"source\":\"t\",\"data\":" \
    "\"b\"}]"

static atomic_int fail_err;  /* 0: publish as the memory queue does; else this error */
static atomic_int fail_sync; /* 1: publish returns the error; 0: its callback reports it */
static ep_queue_provider_t failing;

static int failing_publish(void *ctx, ep_event_t **evs, size_t n, ep_publish_cb cb, void *arg)
{
    int err = atomic_load(&fail_err), status[8];

    if (err == 0) {
        return ep_queue_memory_provider.publish(ctx, evs, n, cb, arg);
    }
    if (atomic_load(&fail_sync)) {
        return err;
    }
    EP_ASSERT(n <= 8);
    for (size_t i = 0; i < n; i++) {
        ep_event_destroy(evs[i]);
        evs[i] = NULL;
        status[i] = err;
    }
    cb(arg, n, status);
    return 0;
}

static ep_app_t *app_new(void)
{
    ep_config_t cfg;

    if (failing.name == NULL) {
        failing = ep_queue_memory_provider;
        failing.name = "failing";
        failing.publish = failing_publish;
        EP_ASSERT_EQ(ep_queue_provider_register(&failing), 0);
    }
    ep_test_app_config(&cfg);
    snprintf(cfg.queue_type, sizeof(cfg.queue_type), "failing");
    cfg.retry_after_s = 7;
    return ep_test_app_start(&cfg, EP_ROLE_INGEST | EP_ROLE_PROCESSOR);
}

static void app_free(ep_app_t *app)
{
    atomic_store(&fail_err, 0);
    ep_app_stop(app);
    ep_app_destroy(app);
}

typedef struct answer_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done, status;
    char retry_after[16];
    char body[4096];
} answer_t;

static void on_answer(void *arg, const ep_http_response_t *res)
{
    answer_t *a = arg;

    pthread_mutex_lock(&a->mu);
    a->status = res->status;
    snprintf(a->retry_after, sizeof(a->retry_after), "%s", res->retry_after);
    snprintf(a->body, sizeof(a->body), "%s", res->body ? res->body : "");
    a->done = 1;
    pthread_cond_signal(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* POSTs body to path of srv; the answer's status, Retry-After and body in *a. */
static void post(ep_http_server_t *srv, const char *path, const char *body, answer_t *a)
{
    ep_http_client_t *c;
    char url[128];

    memset(a, 0, sizeof(*a));
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", ep_http_server_port(srv), path);
    EP_ASSERT_EQ(ep_http_client_create(1, &c), 0);
    EP_ASSERT_EQ(ep_http_client_request(c, "POST", url, "application/json", body, strlen(body),
                                        10000, on_answer, a),
                 0);
    pthread_mutex_lock(&a->mu);
    while (!a->done) {
        pthread_cond_wait(&a->cv, &a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    ep_http_client_destroy(c);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
}

static void fail_with(int err, int sync)
{
    atomic_store(&fail_sync, sync);
    atomic_store(&fail_err, err);
}

/* A single event: the queue's refusals are 4xx, the rest 503 with Retry-After and maybe_kept. */
static void test_single_event_errors(void)
{
    ep_app_t *app = app_new();
    answer_t a;

    for (int sync = 0; sync <= 1; sync++) {
        fail_with(EP_EVALIDATE, sync);
        post(app->ingest_srv, "/events", EVENT, &a);
        EP_ASSERT_EQ(a.status, 400);
        EP_ASSERT(strstr(a.body, "rejected the event as invalid") != NULL);
        fail_with(EP_E2BIG, sync);
        post(app->ingest_srv, "/events", EVENT, &a);
        EP_ASSERT_EQ(a.status, 413);
        fail_with(EP_EFULL, sync);
        post(app->ingest_srv, "/events", EVENT, &a);
        EP_ASSERT_EQ(a.status, 503);
        EP_ASSERT_STR_EQ(a.retry_after, "7");
        EP_ASSERT_STR_EQ(a.body, "{\"error\":\"queue is full, retry later\",\"messageId\":"
                                 "\"ev-1\",\"maybe_kept\":false}\n");
        fail_with(EP_ETIMEDOUT, sync);
        post(app->ingest_srv, "/events/async", EVENT, &a);
        EP_ASSERT_EQ(a.status, sync ? 503 : 202); /* async: answered once buffered */
        if (sync) {
            EP_ASSERT(strstr(a.body, "\"maybe_kept\":true") != NULL);
            EP_ASSERT(strstr(a.body, "queue unavailable: ") != NULL);
        }
    }
    fail_with(0, 0);
    post(app->ingest_srv, "/events", EVENT, &a);
    EP_ASSERT_EQ(a.status, 202);
    app_free(app);
}

/*
 * A batch nothing of which was kept answers as a single event would: 400 when
 * the queue found every event invalid, 413 when too large (both were 503
 * before the table was one), 503 with Retry-After when full.
 */
static void test_batch_errors_match_single(void)
{
    ep_app_t *app = app_new();
    answer_t a;

    for (int sync = 0; sync <= 1; sync++) {
        fail_with(EP_EVALIDATE, sync);
        post(app->ingest_srv, "/events/batch", BATCH, &a);
        EP_ASSERT_EQ(a.status, 400);
        EP_ASSERT(strstr(a.body, "\"failed\":2,") != NULL);
        EP_ASSERT(strstr(a.body, "\"maybe_kept\":false") != NULL);
        fail_with(EP_E2BIG, sync);
        post(app->ingest_srv, "/events/batch", BATCH, &a);
        EP_ASSERT_EQ(a.status, 413);
        EP_ASSERT_STR_EQ(a.retry_after, "");
        fail_with(EP_EFULL, sync);
        post(app->ingest_srv, "/events/batch", BATCH, &a);
        EP_ASSERT_EQ(a.status, 503);
        EP_ASSERT_STR_EQ(a.retry_after, "7");
        EP_ASSERT(strstr(a.body, "\"id\":\"b-2\",\"error\":\"queue is full, retry later\"") !=
                  NULL);
        fail_with(EP_ECLOSED, sync);
        post(app->ingest_srv, "/events/batch", BATCH, &a);
        EP_ASSERT_EQ(a.status, 503);
        EP_ASSERT(strstr(a.body, "shutting down, retry on another instance") != NULL);
    }
    fail_with(0, 0);
    post(app->ingest_srv, "/events/batch", BATCH, &a);
    EP_ASSERT_EQ(a.status, 202);
    EP_ASSERT(strstr(a.body, "\"accepted\":2,") != NULL);
    app_free(app);
}

/* The processor's /enqueue answers from the same table. */
static void test_enqueue_errors(void)
{
    ep_app_t *app = app_new();
    answer_t a;

    fail_with(EP_EFULL, 1);
    post(app->processor_srv, "/enqueue", EVENT, &a);
    EP_ASSERT_EQ(a.status, 503);
    EP_ASSERT_STR_EQ(a.retry_after, "7");
    EP_ASSERT_STR_EQ(a.body, "{\"error\":\"queue is full, retry later\",\"maybe_kept\":false}\n");
    fail_with(EP_E2BIG, 0);
    post(app->processor_srv, "/enqueue", EVENT, &a);
    EP_ASSERT_EQ(a.status, 413);
    fail_with(0, 0);
    post(app->processor_srv, "/enqueue", EVENT, &a);
    EP_ASSERT_EQ(a.status, 202);
    app_free(app);
}

EP_TEST_LIST = {
    EP_TEST(test_single_event_errors),
    EP_TEST(test_batch_errors_match_single),
    EP_TEST(test_enqueue_errors),
    EP_TEST_END,
};

EP_TEST_MAIN()
