#include "queue/ep_queue.h"
#include "base/ep_counter.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/*
 * Compiled-in providers. Each broker is built behind its CMake option
 * (EP_WITH_NATS, EP_WITH_KAFKA), which defines the macro used here.
 */
extern const ep_queue_provider_t ep_queue_memory_provider;
extern const ep_queue_provider_t ep_queue_forward_provider;
#ifdef EP_WITH_DISK
extern const ep_queue_provider_t ep_queue_disk_provider;
#endif
#ifdef EP_WITH_NATS
extern const ep_queue_provider_t ep_queue_nats_provider;
#endif
#ifdef EP_WITH_KAFKA
extern const ep_queue_provider_t ep_queue_kafka_provider;
#endif
#ifdef EP_WITH_COMPOSITE
extern const ep_queue_provider_t ep_queue_composite_provider;
#endif

static const ep_queue_provider_t *const builtin_providers[] = {
    &ep_queue_memory_provider,
#ifdef EP_WITH_DISK
    &ep_queue_disk_provider,
#endif
#ifdef EP_WITH_NATS
    &ep_queue_nats_provider,
#endif
#ifdef EP_WITH_KAFKA
    &ep_queue_kafka_provider,
#endif
#ifdef EP_WITH_COMPOSITE
    &ep_queue_composite_provider,
#endif
    &ep_queue_forward_provider,   NULL,
};

#define MAX_BUILTIN (sizeof(builtin_providers) / sizeof(builtin_providers[0]) - 1)

/* Providers registered at run time (plugins, test doubles); filled before use. */
#define MAX_EXTRA_PROVIDERS 8
static const ep_queue_provider_t *extra_providers[MAX_EXTRA_PROVIDERS];
static size_t n_extra_providers;

int ep_queue_provider_register(const ep_queue_provider_t *p)
{
    if (p == NULL || p->api_version != EP_QUEUE_API_VERSION || ep_queue_provider_find(p->name)) {
        return EP_EINVAL;
    }
    if (n_extra_providers == MAX_EXTRA_PROVIDERS) {
        return EP_E2BIG;
    }
    extra_providers[n_extra_providers++] = p;
    return 0;
}

const ep_queue_provider_t *ep_queue_provider_find(const char *name)
{
    for (size_t i = 0; builtin_providers[i]; i++) {
        if (strcmp(builtin_providers[i]->name, name) == 0) {
            return builtin_providers[i];
        }
    }
    for (size_t i = 0; i < n_extra_providers; i++) {
        if (strcmp(extra_providers[i]->name, name) == 0) {
            return extra_providers[i];
        }
    }
    return NULL;
}

void ep_queue_provider_names(char *out, size_t len)
{
    size_t off = 0;

    out[0] = '\0';
    for (size_t i = 0; builtin_providers[i] && off < len; i++) {
        int n = snprintf(out + off, len - off, "%s%s", i ? ", " : "", builtin_providers[i]->name);
        if (n < 0) {
            break;
        }
        off += (size_t)n;
    }
}

/* Appends p's table (an empty one of its name when it has none) unless it is internal. */
static void add_table(const ep_queue_provider_t *p, ep_opt_table_t *out, size_t max, size_t *n)
{
    static const ep_opt_table_t none;

    if (*n < max && !(p->flags & EP_QUEUE_F_INTERNAL)) {
        out[*n] = p->options ? *p->options : none;
        out[(*n)++].name = p->name;
    }
}

size_t ep_queue_option_tables(ep_opt_table_t *out, size_t max)
{
    size_t n = 0;

    for (size_t i = 0; builtin_providers[i]; i++) {
        add_table(builtin_providers[i], out, max, &n);
    }
    for (size_t i = 0; i < n_extra_providers; i++) {
        add_table(extra_providers[i], out, max, &n);
    }
    return n;
}

#define MAX_TABLES (MAX_BUILTIN + MAX_EXTRA_PROVIDERS)

int ep_queue_config_load(ep_config_t *cfg, int argc, char **argv, char *err, size_t errlen)
{
    ep_opt_table_t tables[MAX_TABLES];
    size_t n = ep_queue_option_tables(tables, MAX_TABLES);

    return ep_config_load(cfg, tables, n, argc, argv, err, errlen);
}

void ep_queue_config_usage(FILE *f)
{
    ep_opt_table_t tables[MAX_TABLES];
    size_t n = ep_queue_option_tables(tables, MAX_TABLES);

    ep_config_usage(f, tables, n);
}

/* Parses the provider's options from cfg (opts: NULL when it has none), then the hook, then init.
 */
static int create(const ep_queue_provider_t *provider, const ep_config_t *cfg, const char *consumer,
                  ep_queue_t **out, char *err, size_t errlen)
{
    const ep_opt_table_t *t = provider->options;
    void *opts = NULL;
    ep_queue_t *q;
    int rc = 0;

    *out = NULL;
    if (t != NULL) {
        opts = ep_malloc(t->size);
        rc = ep_config_table_parse(cfg, t, opts, err, errlen);
    }
    if (rc == 0 && consumer != NULL) {
        rc = provider->own_consumer(opts, consumer, err, errlen);
    }
    if (rc != 0) {
        ep_free(opts);
        return rc;
    }
    q = ep_calloc(1, sizeof(*q));
    q->provider = provider;
    rc = provider->init(cfg, opts, &q->ctx, err, errlen);
    ep_free(opts);
    if (rc != 0) {
        ep_free(q);
        return rc;
    }
    *out = q;
    return 0;
}

int ep_queue_create_with(const ep_queue_provider_t *provider, const ep_config_t *cfg,
                         ep_queue_t **out, char *err, size_t errlen)
{
    return create(provider, cfg, NULL, out, err, errlen);
}

int ep_queue_open_consumer(const ep_queue_provider_t *provider, const ep_config_t *cfg,
                           const char *name, ep_queue_t **out, char *err, size_t errlen)
{
    if (provider->own_consumer == NULL) {
        *out = NULL;
        snprintf(err, errlen, "QUEUE_TYPE: the %s queue has no consumers of their own (wanted: %s)",
                 provider->name, name);
        return EP_ENOTSUP;
    }
    return create(provider, cfg, name, out, err, errlen);
}

static char instance_tag[13];
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;

static void instance_tag_init(void)
{
    uint64_t r = 0;
    struct timespec ts;

    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        /* No entropy yet (early boot): the clock and the pid still tell processes apart. */
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec) ^
            ((uint64_t)getpid() << 32) ^ (uint64_t)getpid();
        r *= 0x9e3779b97f4a7c15ull;
    }
    snprintf(instance_tag, sizeof(instance_tag), "%012llx",
             (unsigned long long)(r & 0xffffffffffffull));
}

const char *ep_queue_instance_tag(void)
{
    pthread_once(&instance_once, instance_tag_init);
    return instance_tag;
}

int ep_queue_create(const char *type, const ep_config_t *cfg, ep_queue_t **out, char *err,
                    size_t errlen)
{
    const ep_queue_provider_t *p = ep_queue_provider_find(type);

    *out = NULL;
    if (p == NULL) {
        char names[256];
        ep_queue_provider_names(names, sizeof(names));
        snprintf(err, errlen, "unsupported queue type '%s' (available: %s)", type, names);
        return EP_EINVAL;
    }
    return ep_queue_create_with(p, cfg, out, err, errlen);
}

void ep_queue_counters_read(ep_queue_counters_t *c, ep_queue_stats_t *st)
{
    int64_t in_flight;

    memset(st, 0, sizeof(*st));
    /* The later-stage counters first, so in_flight errs on the high side, not negative. */
    st->acked = ep_counter_get(&c->acked);
    st->nacked = ep_counter_get(&c->nacked);
    st->lost = ep_counter_get(&c->lost);
    st->dequeued = ep_counter_get(&c->dequeued);
    st->enqueued = ep_counter_get(&c->enqueued);
    st->rejected_full = ep_counter_get(&c->rejected_full);
    st->rejected_unavailable = ep_counter_get(&c->rejected_unavailable);
    st->size = -1;
    st->capacity = -1;
    in_flight = (int64_t)(st->dequeued - st->acked - st->nacked);
    st->in_flight = in_flight > 0 ? in_flight : 0;
}

void ep_queue_destroy(ep_queue_t *q)
{
    if (q == NULL) {
        return;
    }
    q->provider->destroy(q->ctx);
    ep_free(q);
}
