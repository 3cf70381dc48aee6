/*
 * Access control of every role's routes (design in ep_access.h): API keys,
 * the internal token, loopback-only internal routes, event rate limits.
 */
#include "roles/ep_access.h"
#include "guard/ep_auth.h"
#include "base/ep_error.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "obs/ep_metrics.h"
#include "guard/ep_ratelimit.h"
#include "base/ep_time.h"

#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GUARDS 64 /* wrapped routes per process */
#define REALM      "Bearer realm=\"eventpipe\""

/* Per-key state, one cache line each so that two keys' traffic never shares one. */
typedef struct key_state_s {
    _Alignas(64) _Atomic int64_t full_at; /* the key's bucket (ep_rate_take) */
    ep_rate_t rate;
    int limited; /* the key has a rate limit */
    atomic_uint_fast64_t accepted, unauthorized, rate_limited, events;
} key_state_t;

/* A wrapped route: its class and the real handler. */
typedef struct guard_s {
    ep_access_t *a;
    int cls;
    ep_http_handler_cb handler;
    void *arg;
} guard_t;

enum { R_MISSING_KEY, R_INVALID_KEY, R_MISSING_TOKEN, R_INVALID_TOKEN, R_NOT_LOOPBACK, R_N };
static const char *const reason_names[R_N] = {"missing_key", "invalid_key", "missing_token",
                                              "invalid_token", "not_loopback"};

struct ep_access_s {
    ep_auth_t keys;
    key_state_t *ks;
    int protect_reads;
    int has_token;
    uint8_t token_digest[EP_AUTH_DIGEST_SZ];
    int rate_on;           /* RATE_LIMIT_EVENTS_PER_SEC > 0 */
    ep_rate_t rate;        /* the default bucket */
    ep_rate_table_t addrs; /* per client address, when there are no keys */
    atomic_uint_fast64_t refused[R_N];
    atomic_uint_fast64_t addr_limited, addr_events;
    guard_t guards[MAX_GUARDS];
    atomic_int n_guards;
};

/* ------------------------------------------------------------ set-up */

static int token_ok(const char *t, char *err, size_t errlen)
{
    size_t n = strlen(t);

    if (n < EP_AUTH_KEY_MIN) {
        snprintf(err, errlen, "INTERNAL_TOKEN: %zu characters; at least %d are needed", n,
                 EP_AUTH_KEY_MIN);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr("-._~+/=", c) != NULL)) {
            snprintf(err, errlen,
                     "INTERNAL_TOKEN: holds a character other than letters, digits and "
                     "- . _ ~ + / = (at position %zu)",
                     i + 1);
            return 0;
        }
    }
    return 1;
}

int ep_access_create(const ep_config_t *cfg, ep_access_t **out, char *err, size_t errlen)
{
    ep_access_t *a = ep_calloc(1, sizeof(*a));
    int rc;

    *out = NULL;
    ep_auth_init(&a->keys);
    if (cfg->api_keys[0] && (rc = ep_auth_add_csv(&a->keys, cfg->api_keys, err, errlen)) != 0) {
        goto err;
    }
    if (cfg->api_keys_file[0] &&
        (rc = ep_auth_add_file(&a->keys, cfg->api_keys_file, err, errlen)) != 0) {
        goto err;
    }
    if (cfg->internal_token[0]) {
        if (!token_ok(cfg->internal_token, err, errlen)) {
            rc = EP_ECONFIG;
            goto err;
        }
        a->has_token = 1;
        ep_auth_sha256(cfg->internal_token, strlen(cfg->internal_token), a->token_digest);
    }
    a->protect_reads = cfg->api_keys_protect_reads;
    if (a->protect_reads && a->keys.n == 0) {
        snprintf(err, errlen, "API_KEYS_PROTECT_READS: true needs API_KEYS or API_KEYS_FILE");
        rc = EP_ECONFIG;
        goto err;
    }
    if (cfg->rate_limit_burst > 0 && cfg->rate_limit == 0) {
        snprintf(err, errlen,
                 "RATE_LIMIT_BURST: set without RATE_LIMIT_EVENTS_PER_SEC (which turns limits on)");
        rc = EP_ECONFIG;
        goto err;
    }
    a->rate_on = cfg->rate_limit > 0;
    if (a->rate_on) {
        ep_rate_init(&a->rate, cfg->rate_limit, cfg->rate_limit_burst);
    }
    if (a->keys.n > 0) {
        void *mem = NULL;
        if (posix_memalign(&mem, 64, (size_t)a->keys.n * sizeof(key_state_t)) != 0) {
            snprintf(err, errlen, "out of memory for %d API keys", a->keys.n);
            rc = EP_ENOMEM;
            goto err;
        }
        a->ks = memset(mem, 0, (size_t)a->keys.n * sizeof(key_state_t));
        for (int i = 0; i < a->keys.n; i++) {
            const ep_auth_key_t *k = &a->keys.keys[i];
            key_state_t *st = &a->ks[i];
            if (k->rate > 0) {
                /* Its own rate; its own burst, else the default burst, else a second's worth. */
                ep_rate_init(&st->rate, k->rate,
                             k->burst > 0 ? k->burst : (a->rate_on ? cfg->rate_limit_burst : 0));
                st->limited = 1;
            } else if (k->rate < 0 && a->rate_on) {
                ep_rate_init(&st->rate, cfg->rate_limit,
                             k->burst > 0 ? k->burst : cfg->rate_limit_burst);
                st->limited = 1;
            } else if (k->rate < 0 && k->burst > 0) {
                snprintf(err, errlen,
                         "API_KEYS_FILE: key '%s' has burst= but no rate=, and "
                         "RATE_LIMIT_EVENTS_PER_SEC is 0",
                         k->name);
                rc = EP_ECONFIG;
                goto err;
            }
        }
    } else if (a->rate_on) {
        ep_rate_table_init(&a->addrs);
    }
    *out = a;
    return 0;
err:
    ep_access_destroy(a);
    return rc;
}

void ep_access_destroy(ep_access_t *a)
{
    if (a == NULL) {
        return;
    }
    free(a->ks); /* posix_memalign */
    ep_auth_close(&a->keys);
    ep_rate_table_close(&a->addrs);
    explicit_bzero(a->token_digest, sizeof(a->token_digest));
    ep_free(a);
}

int ep_access_has_keys(const ep_access_t *a)
{
    return a->keys.n > 0;
}

int ep_access_is_loopback(const uint8_t addr[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};

    if (memcmp(addr, mapped, 12) == 0) {
        return addr[12] == 127;
    }
    return memcmp(addr, one, 16) == 0;
}

void ep_access_hop_header(const ep_config_t *cfg, char *out, size_t len)
{
    if (cfg->internal_token[0]) {
        snprintf(out, len, "Authorization: Bearer %s", cfg->internal_token);
    } else if (len > 0) {
        out[0] = '\0';
    }
}

/* ------------------------------------------------------------ checks */

static void refuse(ep_access_t *a, ep_http_req_t *req, int reason, int status, const char *msg)
{
    atomic_fetch_add_explicit(&a->refused[reason], 1, memory_order_relaxed);
    if (status == 401) {
        ep_http_req_add_header(req, "WWW-Authenticate", REALM);
    }
    ep_http_respond_error(req, status, msg, NULL);
}

/* 1 when the request carries "Authorization: Bearer <INTERNAL_TOKEN>" (constant time). */
static int has_internal_token(const ep_access_t *a, ep_http_req_t *req, int *presented)
{
    const char *tok;
    size_t n;
    uint8_t d[EP_AUTH_DIGEST_SZ];

    *presented = 0;
    if (!a->has_token || !ep_auth_bearer(ep_http_req_header(req, "Authorization"), &tok, &n)) {
        return 0;
    }
    *presented = 1;
    ep_auth_sha256(tok, n, d);
    return ep_auth_ct_equal(d, a->token_digest, sizeof(d));
}

/*
 * A role-to-role hop: the internal token, or (while it is unset) a loopback
 * peer. Such a hop may say whose request it carries in X-Forwarded-For.
 */
static int is_hop(const ep_access_t *a, ep_http_req_t *req, const ep_access_who_t *who)
{
    int presented;

    if (a->has_token) {
        return has_internal_token(a, req, &presented);
    }
    return who->has_addr && ep_access_is_loopback(who->addr);
}

static void forwarded_addr(ep_http_req_t *req, ep_access_who_t *who)
{
    const char *x = ep_http_req_header(req, "X-Forwarded-For");
    char ip[64];
    size_t n = 0;
    struct in_addr v4;

    if (x == NULL) {
        return;
    }
    while (*x == ' ') {
        x++;
    }
    while (x[n] && x[n] != ',' && x[n] != ' ' && n < sizeof(ip) - 1) {
        ip[n] = x[n];
        n++;
    }
    ip[n] = '\0';
    if (inet_pton(AF_INET, ip, &v4) == 1) {
        memset(who->addr, 0, 10);
        who->addr[10] = who->addr[11] = 0xff;
        memcpy(who->addr + 12, &v4, 4);
        who->has_addr = 1;
    } else if (inet_pton(AF_INET6, ip, who->addr) == 1) {
        who->has_addr = 1;
    }
}

static int check_key(ep_access_t *a, ep_http_req_t *req, ep_access_who_t *who)
{
    const char *key;
    size_t n;

    if (!ep_auth_credential(ep_http_req_header(req, "X-API-Key"),
                            ep_http_req_header(req, "Authorization"), &key, &n)) {
        refuse(a, req, R_MISSING_KEY, 401,
               "an API key is required: send Authorization: Bearer <key> or X-API-Key: <key>");
        return 0;
    }
    who->key = ep_auth_find(&a->keys, key, n);
    if (who->key < 0) {
        refuse(a, req, R_INVALID_KEY, 401, "invalid API key");
        return 0;
    }
    return 1;
}

int ep_access_check(ep_access_t *a, ep_http_req_t *req, int cls, ep_access_who_t *who)
{
    int presented;

    who->key = -1;
    who->has_addr = ep_http_req_peer(req, who->addr);
    switch (cls) {
    case EP_ACCESS_INGEST:
        if (a->keys.n > 0) {
            return check_key(a, req, who);
        }
        if (a->rate_on && is_hop(a, req, who)) {
            forwarded_addr(req, who); /* the gateway's hop: limit the client, not the gateway */
        }
        return 1;
    case EP_ACCESS_READ:
        if (a->keys.n == 0 || !a->protect_reads) {
            return 1;
        }
        if (has_internal_token(a, req, &presented)) {
            return 1; /* a role's probe (the gateway's /api/v1/status) */
        }
        if (!check_key(a, req, who)) {
            return 0;
        }
        atomic_fetch_add_explicit(&a->ks[who->key].accepted, 1, memory_order_relaxed);
        return 1;
    case EP_ACCESS_INTERNAL:
        if (a->has_token) {
            if (has_internal_token(a, req, &presented)) {
                return 1;
            }
            if (a->keys.n > 0) {
                /* An API key never opens a role-to-role route: count it under its name. */
                const char *key;
                size_t n;
                if (ep_auth_credential(ep_http_req_header(req, "X-API-Key"),
                                       ep_http_req_header(req, "Authorization"), &key, &n)) {
                    int k = ep_auth_find(&a->keys, key, n);
                    if (k >= 0) {
                        atomic_fetch_add_explicit(&a->ks[k].unauthorized, 1, memory_order_relaxed);
                    }
                }
            }
            refuse(a, req, presented ? R_INVALID_TOKEN : R_MISSING_TOKEN, 401,
                   "this route is for eventpipe roles only: send Authorization: Bearer "
                   "<INTERNAL_TOKEN>");
            return 0;
        }
        if (who->has_addr && ep_access_is_loopback(who->addr)) {
            return 1;
        }
        refuse(a, req, R_NOT_LOOPBACK, 403,
               "this route is for eventpipe roles only, and answers loopback clients only while "
               "INTERNAL_TOKEN is unset");
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------ rate limits */

static void put_i64(ep_http_req_t *req, const char *name, int64_t v)
{
    char s[24];

    snprintf(s, sizeof(s), "%lld", (long long)v);
    ep_http_req_add_header(req, name, s);
}

static void ratelimit_headers(ep_http_req_t *req, const ep_rate_result_t *res)
{
    put_i64(req, "RateLimit-Limit", res->limit);
    put_i64(req, "RateLimit-Remaining", res->remaining < 0 ? 0 : res->remaining);
    put_i64(req, "RateLimit-Reset", res->reset_s);
}

static void refuse_rate(ep_http_req_t *req, int rc, const ep_rate_t *r, const ep_rate_result_t *res,
                        size_t n)
{
    char msg[256];

    if (rc == EP_E2BIG) {
        snprintf(msg, sizeof(msg),
                 "%zu events in one request are more than the rate limit's burst of %lld allows; "
                 "send smaller batches",
                 n, (long long)r->burst);
        ep_http_respond_error(req, 413, msg, NULL);
        return;
    }
    snprintf(msg, sizeof(msg),
             "{\"error\":\"rate limit exceeded: %lld events/s with a burst of %lld; retry after "
             "%lld s\",\"retry_after\":%lld}\n",
             (long long)r->rate, (long long)r->burst, (long long)res->retry_s,
             (long long)res->retry_s);
    put_i64(req, "Retry-After", res->retry_s);
    ratelimit_headers(req, res);
    ep_http_respond(req, 429, NULL, msg, strlen(msg));
}

/*
 * Takes n events from who's bucket: its key's (when the key is limited), else
 * its address's (rate limiting by address, no keys). Counts the outcome.
 * Returns 0 (taken; *charged 1 when a bucket was charged, *res its state), or
 * the ep_rate error with *r the bucket that refused.
 */
static int charge(ep_access_t *a, const ep_access_who_t *who, size_t n, ep_rate_result_t *res,
                  const ep_rate_t **r, int *charged)
{
    int rc;

    *charged = 0;
    if (who->key >= 0) {
        key_state_t *st = &a->ks[who->key];
        if (st->limited) {
            rc = ep_rate_take(&st->rate, &st->full_at, (int64_t)n, ep_time_mono_ns(), res);
            if (rc != 0) {
                atomic_fetch_add_explicit(&st->rate_limited, 1, memory_order_relaxed);
                *r = &st->rate;
                return rc;
            }
            *charged = 1;
        }
        atomic_fetch_add_explicit(&st->accepted, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&st->events, n, memory_order_relaxed);
        return 0;
    }
    if (!a->rate_on || a->keys.n > 0 || !who->has_addr) {
        return 0;
    }
    rc = ep_rate_table_take(&a->addrs, &a->rate, who->addr, (int64_t)n, ep_time_mono_ns(), res);
    if (rc != 0) {
        atomic_fetch_add_explicit(&a->addr_limited, 1, memory_order_relaxed);
        *r = &a->rate;
        return rc;
    }
    atomic_fetch_add_explicit(&a->addr_events, n, memory_order_relaxed);
    *charged = 1;
    return 0;
}

int ep_access_charge(ep_access_t *a, ep_http_req_t *req, const ep_access_who_t *who, size_t n)
{
    ep_rate_result_t res;
    const ep_rate_t *r = NULL;
    int charged;
    int rc = charge(a, who, n, &res, &r, &charged);

    if (rc != 0) {
        refuse_rate(req, rc, r, &res, n);
        return 0;
    }
    if (charged) {
        ratelimit_headers(req, &res);
    }
    return 1;
}

/* ------------------------------------------------------------ routes */

static void on_guarded(void *arg, ep_http_req_t *req)
{
    guard_t *g = arg;
    ep_access_who_t who;

    if (ep_access_check(g->a, req, g->cls, &who)) {
        g->handler(g->arg, req);
    }
}

void ep_access_route(ep_access_t *a, ep_http_server_t *srv, unsigned methods, const char *path,
                     int cls, ep_http_handler_cb handler, void *arg, size_t max_body)
{
    int need = cls == EP_ACCESS_INTERNAL || (cls == EP_ACCESS_READ && a->protect_reads) ||
               (cls == EP_ACCESS_INGEST && a->keys.n > 0);
    guard_t *g;
    int i;

    if (!need) {
        ep_http_server_route_ex(srv, methods, path, handler, arg, max_body);
        return;
    }
    i = atomic_fetch_add(&a->n_guards, 1);
    ep_assert(i < MAX_GUARDS);
    g = &a->guards[i];
    g->a = a;
    g->cls = cls;
    g->handler = handler;
    g->arg = arg;
    ep_http_server_route_ex(srv, methods, path, on_guarded, g, max_body);
}

/* ------------------------------------------------------------ observability */

void ep_access_collect(void *arg, ep_buf_t *out)
{
    static const char *const l_key_result[] = {"key", "result"}, *const l_key[] = {"key"},
                             *const l_reason[] = {"reason"};
    ep_access_t *a = arg;

    ep_metrics_put_family(out, "ep_api_key_requests_total", EP_METRIC_COUNTER,
                          "Requests per API key (by its name): accepted, rate_limited (429), "
                          "unauthorized (the key sent to a role-to-role route).");
    for (int i = 0; i < a->keys.n; i++) {
        const key_state_t *st = &a->ks[i];
        const struct {
            const char *r;
            uint64_t v;
        } rows[] = {
            {"accepted", atomic_load_explicit(&st->accepted, memory_order_relaxed)},
            {"rate_limited", atomic_load_explicit(&st->rate_limited, memory_order_relaxed)},
            {"unauthorized", atomic_load_explicit(&st->unauthorized, memory_order_relaxed)}};
        for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
            const char *lv[2] = {a->keys.keys[i].name, rows[k].r};
            ep_metrics_put_sample(out, "ep_api_key_requests_total", 2, l_key_result, lv,
                                  (double)rows[k].v);
        }
    }
    ep_metrics_put_family(out, "ep_api_key_events_total", EP_METRIC_COUNTER,
                          "Events accepted per API key (by its name), before validation.");
    for (int i = 0; i < a->keys.n; i++) {
        const char *lv[1] = {a->keys.keys[i].name};
        ep_metrics_put_sample(out, "ep_api_key_events_total", 1, l_key, lv,
                              (double)atomic_load_explicit(&a->ks[i].events, memory_order_relaxed));
    }
    ep_metrics_put_family(out, "ep_auth_refused_total", EP_METRIC_COUNTER,
                          "Requests refused by access control: missing_key, invalid_key (401), "
                          "missing_token, invalid_token (401 on role-to-role routes), "
                          "not_loopback (403: INTERNAL_TOKEN unset).");
    for (int r = 0; r < R_N; r++) {
        const char *lv[1] = {reason_names[r]};
        ep_metrics_put_sample(out, "ep_auth_refused_total", 1, l_reason, lv,
                              (double)atomic_load_explicit(&a->refused[r], memory_order_relaxed));
    }
    if (a->rate_on && a->keys.n == 0) {
        ep_metrics_put_family(out, "ep_rate_limited_requests_total", EP_METRIC_COUNTER,
                              "Requests answered 429 by the per-client-address limit.");
        ep_metrics_put_sample(out, "ep_rate_limited_requests_total", 0, NULL, NULL,
                              (double)atomic_load_explicit(&a->addr_limited, memory_order_relaxed));
        ep_metrics_put_family(out, "ep_rate_limit_table_replaced_total", EP_METRIC_COUNTER,
                              "Per-address buckets dropped for another address before they "
                              "were full again (the table is full of active clients).");
        ep_metrics_put_sample(
            out, "ep_rate_limit_table_replaced_total", 0, NULL, NULL,
            (double)atomic_load_explicit(&a->addrs.replaced_busy, memory_order_relaxed));
    }
}

void ep_access_log(const ep_access_t *a)
{
    if (a->keys.n > 0) {
        ep_log_info("auth", "API keys: %d; ingesting routes need one%s", a->keys.n,
                    a->protect_reads ? ", and so do reading routes (API_KEYS_PROTECT_READS)"
                                     : "; reading routes are open");
    } else {
        ep_log_warn("auth", "no API keys (API_KEYS, API_KEYS_FILE): anyone who reaches a "
                            "port may send events");
    }
    if (a->has_token) {
        ep_log_info("auth", "role-to-role routes (/enqueue, /analytics/merge) need "
                            "INTERNAL_TOKEN");
    } else {
        ep_log_warn("auth", "INTERNAL_TOKEN is unset: role-to-role routes (/enqueue, "
                            "/analytics/merge) answer loopback clients only");
    }
    if (a->rate_on) {
        ep_log_info("auth", "rate limit: %lld events/s, burst %lld, per %s",
                    (long long)a->rate.rate, (long long)a->rate.burst,
                    a->keys.n > 0 ? "API key" : "client address");
    }
}

/* ------------------------------------------------------------ without HTTP (gRPC, issue 16) */

int ep_access_check_meta(ep_access_t *a, const char *authorization, const char *x_api_key,
                         const uint8_t *peer, int cls, ep_access_who_t *who, const char **msg)
{
    const char *key;
    size_t n;

    who->key = -1;
    who->has_addr = peer != NULL;
    if (peer) {
        memcpy(who->addr, peer, 16);
    } else {
        memset(who->addr, 0, 16);
    }
    *msg = NULL;
    if (a->keys.n == 0 || (cls == EP_ACCESS_READ && !a->protect_reads)) {
        return 0;
    }
    if (cls == EP_ACCESS_READ && a->has_token) {
        const char *tok;
        uint8_t d[EP_AUTH_DIGEST_SZ];
        if (ep_auth_bearer(authorization, &tok, &n)) {
            ep_auth_sha256(tok, n, d);
            if (ep_auth_ct_equal(d, a->token_digest, sizeof(d))) {
                return 0;
            }
        }
    }
    if (!ep_auth_credential(x_api_key, authorization, &key, &n)) {
        atomic_fetch_add_explicit(&a->refused[R_MISSING_KEY], 1, memory_order_relaxed);
        *msg = "an API key is required: send the metadata authorization: Bearer <key>";
        return 401;
    }
    who->key = ep_auth_find(&a->keys, key, n);
    if (who->key < 0) {
        atomic_fetch_add_explicit(&a->refused[R_INVALID_KEY], 1, memory_order_relaxed);
        *msg = "invalid API key";
        return 401;
    }
    if (cls == EP_ACCESS_READ) {
        atomic_fetch_add_explicit(&a->ks[who->key].accepted, 1, memory_order_relaxed);
    }
    return 0;
}

int ep_access_charge_meta(ep_access_t *a, const ep_access_who_t *who, size_t n, char *msg,
                          size_t msglen)
{
    ep_rate_result_t res;
    const ep_rate_t *r = NULL;
    int charged;
    int rc = charge(a, who, n, &res, &r, &charged);

    if (rc == 0) {
        return 0;
    }
    if (rc == EP_E2BIG) {
        snprintf(msg, msglen,
                 "%zu events in one request are more than the rate limit's burst of %lld allows; "
                 "send smaller batches",
                 n, (long long)r->burst);
        return 413;
    }
    snprintf(msg, msglen,
             "rate limit exceeded: %lld events/s with a burst of %lld; retry after %lld s",
             (long long)r->rate, (long long)r->burst, (long long)res.retry_s);
    return 429;
}
