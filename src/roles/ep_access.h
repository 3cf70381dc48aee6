#ifndef EP_ACCESS_H
#define EP_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"
#include "config/ep_config.h"
#include "http/ep_http_server.h"

/*
 * Who may do what (issue 15): API keys on the routes that ingest (and, with
 * API_KEYS_PROTECT_READS, on the reading routes), INTERNAL_TOKEN on the
 * role-to-role routes (loopback peers only while it is unset), and the event
 * rate limit per key (per client address when there are no keys).
 *
 * Route classes:
 *   EP_ACCESS_INGEST    a key when keys are configured; events charged by the handler
 *   EP_ACCESS_READ      a key (or the internal token) when keys and API_KEYS_PROTECT_READS
 *   EP_ACCESS_INTERNAL  the internal token (a key never opens it), else a loopback peer
 * /health, /ready, /metrics and the dashboard page are registered without a class.
 *
 * Per request: one SHA-256 of the presented key and a constant-time comparison
 * with every key, no allocation, no lock (per-key buckets are one atomic word;
 * the per-address table takes one of 64 striped locks).
 */

enum { EP_ACCESS_INGEST = 1, EP_ACCESS_READ, EP_ACCESS_INTERNAL };

typedef struct ep_access_s ep_access_t;

/* The identity a check found, for the charge that follows. */
typedef struct ep_access_who_s {
    int key;          /* index of the API key, or -1 */
    int has_addr;     /* addr is the client's address */
    uint8_t addr[16]; /* the peer, or what a role hop says in X-Forwarded-For */
} ep_access_who_t;

/**
 * Builds the access rules from cfg: reads API_KEYS_FILE. Returns 0, or
 * EP_ECONFIG with "NAME: why" in err (the file, line and what is wrong).
 */
int ep_access_create(const ep_config_t *cfg, ep_access_t **out, char *err, size_t errlen);

/** Frees a. Accepts NULL. */
void ep_access_destroy(ep_access_t *a);

/** 1 when API keys are configured. */
int ep_access_has_keys(const ep_access_t *a);

/**
 * Checks req's credentials for cls. Returns 1 (go on; *who filled), or 0 after
 * answering 401 (with WWW-Authenticate) or 403. Any thread; no allocation.
 */
int ep_access_check(ep_access_t *a, ep_http_req_t *req, int cls, ep_access_who_t *who);

/**
 * Charges n events to who's bucket (its key's, else its address's) and counts
 * them. Returns 1 (go on; RateLimit-* headers added when limits are on), or 0
 * after answering 429 (Retry-After, RateLimit-*) or 413 (more than the burst).
 * Nothing may have been kept before. Lock-free for keys.
 */
int ep_access_charge(ep_access_t *a, ep_http_req_t *req, const ep_access_who_t *who, size_t n);

/**
 * Adds a route of class cls: the handler runs only after ep_access_check let
 * the request through. A class that needs no check with this configuration is
 * registered as is (no cost). Before the server starts.
 */
void ep_access_route(ep_access_t *a, ep_http_server_t *srv, unsigned methods, const char *path,
                     int cls, ep_http_handler_cb handler, void *arg, size_t max_body);

/** Appends the access metrics (per key name, refusals) in Prometheus text. */
void ep_access_collect(void *arg, ep_buf_t *out);

/** Logs what is protected and how (start-up). */
void ep_access_log(const ep_access_t *a);

/**
 * The header lines a role sends on a hop to another role: "Authorization:
 * Bearer <INTERNAL_TOKEN>" (nothing when unset), written into out.
 */
void ep_access_hop_header(const ep_config_t *cfg, char *out, size_t len);

/** 1 when addr (16 bytes, IPv4 mapped) is a loopback address: 127.0.0.0/8 or ::1. */
int ep_access_is_loopback(const uint8_t addr[16]);

/**
 * ep_access_check for a transport without an ep_http_req_t (the gRPC API):
 * EP_ACCESS_INGEST or EP_ACCESS_READ with the credentials of the
 * authorization / x-api-key metadata (NULL when absent) and the peer (16
 * bytes, or NULL). Returns 0 (go on; *who filled), or 401 with *msg saying why.
 */
int ep_access_check_meta(ep_access_t *a, const char *authorization, const char *x_api_key,
                         const uint8_t *peer, int cls, ep_access_who_t *who, const char **msg);

/**
 * ep_access_charge without an ep_http_req_t: 0 (go on), 429 (rate limited) or
 * 413 (more than the burst), with msg filled. Nothing may have been kept before.
 */
int ep_access_charge_meta(ep_access_t *a, const ep_access_who_t *who, size_t n, char *msg,
                          size_t msglen);

#endif /* EP_ACCESS_H */
