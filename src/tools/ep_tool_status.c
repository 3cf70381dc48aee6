/*
 * `eventpipe status`: GET {url}/api/v1/status and print one line per role.
 *
 *   ROLE        HEALTH  DETAIL
 *   ingest      up      received=150 sent=148 failed=2 rejected=0
 *   processor   up      queue=5/1000 processed=148 errors=0 workers=4
 *
 * A queue without a bound (a broker) shows queue=5; one whose size is not
 * known now shows queue=unknown with the queue's own reason, e.g.
 * "queue=unknown (NATS disconnected from nats://...: reconnecting)".
 */
#include "base/ep_error.h"
#include "http/ep_http_client.h"
#include "event/ep_json_tree.h"
#include "base/ep_mem.h"
#include "tools/ep_tools.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The integer at path, or -1 when it is missing or not an integer. */
static long long num(const ep_json_node_t *root, const char *const *path)
{
    int64_t v;

    return ep_json_int(ep_json_get(root, path), &v) ? (long long)v : -1;
}

/* Prints "queue=<size>[/<capacity>]", or "queue=unknown (<why>)" when the size is -1. */
static void print_queue(const ep_json_node_t *stats)
{
    long long size = num(stats, PATH("queue", "size"));
    long long cap = num(stats, PATH("queue", "capacity"));
    const char *why = ep_json_str(ep_json_get(stats, PATH("queue", "reason")));

    if (size >= 0 && cap > 0) {
        printf("queue=%lld/%lld", size, cap);
    } else if (size >= 0) {
        printf("queue=%lld", size);
    } else {
        printf("queue=unknown (%s)", why ? why : "not reported by the broker yet");
    }
}

static void print_role(const char *name, const ep_json_node_t *role)
{
    const char *err = ep_json_str(ep_json_get(role, PATH("error")));
    const ep_json_node_t *stats = ep_json_get_type(role, PATH("stats"), EP_JT_OBJECT);
    int up = ep_json_is_true(ep_json_get(role, PATH("healthy")));

    printf("%-11s %-7s ", name, up ? "up" : "DOWN");
    if (!up) {
        printf("%s\n", err ? err : "unhealthy");
        return;
    }
    if (stats == NULL) {
        printf("(no stats)\n");
    } else if (strcmp(name, "ingest") == 0) {
        printf("received=%lld sent=%lld failed=%lld rejected=%lld\n",
               num(stats, PATH("TotalReceived")), num(stats, PATH("TotalSent")),
               num(stats, PATH("TotalFailed")), num(stats, PATH("TotalRejected")));
    } else if (strcmp(name, "processor") == 0) {
        print_queue(stats);
        printf(" processed=%lld errors=%lld workers=%lld\n", num(stats, PATH("pool", "processed")),
               num(stats, PATH("pool", "errors")), num(stats, PATH("pool", "workers")));
    } else {
        printf("total_events=%lld unique_users=%lld\n", num(stats, PATH("total_events")),
               num(stats, PATH("unique_users")));
    }
}

int ep_tool_status(int argc, char **argv)
{
    const char *base = "http://localhost:8080";
    ep_tool_conn_t conn;
    int json = 0, status = 0, rc, all_up = 1, taken = 0;
    ep_http_client_t *c;
    char url[512], errbuf[256], key_hdr[300] = "";
    char *body = NULL;
    ep_json_tree_t *tree;
    const ep_json_node_t *root;

    ep__tool_conn_init(&conn);
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && (taken = ep__tool_conn_opt(&conn, "status", argv[i], argv[i + 1]))) {
            if (taken < 0) {
                return 2;
            }
            i++;
        } else if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf(
                "Usage: eventpipe status [--url http://localhost:8080] [--json] [--api-key KEY]\n"
                "       [--cacert FILE] [--cert FILE --key FILE]\n"
                "Shows every role's health and stats (GET /api/v1/status on the gateway).\n"
                "https:// URLs are verified against --cacert (else TLS_CA_FILE, else the\n"
                "system store); --cert and --key answer a server that asks (mutual TLS).\n"
                "Exit status: 0 all roles up, 1 a role is down or the gateway unreachable.\n");
            return 0;
        } else {
            fprintf(stderr, "eventpipe status: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    snprintf(url, sizeof(url), "%s/api/v1/status", base);
    if (ep_http_client_create(2, &c) != 0) {
        fprintf(stderr, "eventpipe status: cannot start the HTTP client\n");
        return 1;
    }
    ep_http_client_set_tls(c, conn.cacert, conn.cert, conn.key);
    if (conn.api_key) {
        snprintf(key_hdr, sizeof(key_hdr), "X-API-Key: %s", conn.api_key);
    }
    {
        /* With API_KEYS_PROTECT_READS the status needs a key. */
        ep_http_request_opts_t o = {.headers = key_hdr[0] ? key_hdr : NULL};
        rc = ep_http_client_request_sync_ex(c, "GET", url, &o, NULL, 0, 5000, &status, &body);
    }
    ep_http_client_destroy(c);
    if (rc != 0 || status != 200 || body == NULL) {
        fprintf(stderr, "eventpipe status: %s: %s\n", url,
                rc != 0 ? ep_strerror(rc) : "unexpected answer");
        ep_free(body);
        return 1;
    }
    if (json) {
        printf("%s", body);
        ep_free(body);
        return 0;
    }
    rc = ep_json_tree_parse(body, strlen(body), 0, &tree, errbuf, sizeof(errbuf));
    root = rc == 0 ? ep_json_tree_root(tree) : NULL;
    if (root == NULL || ep_json_type(root) != EP_JT_OBJECT) {
        fprintf(stderr, "eventpipe status: not JSON: %s\n", rc == 0 ? "not an object" : errbuf);
        ep_json_tree_free(tree);
        ep_free(body);
        return 1;
    }
    printf("%-11s %-7s %s\n", "ROLE", "HEALTH", "DETAIL");
    for (const ep_json_node_t *role = ep_json_first(root); role; role = ep_json_next(role)) {
        print_role(ep_json_key(role), role);
        all_up &= ep_json_is_true(ep_json_get(role, PATH("healthy")));
    }
    ep_json_tree_free(tree);
    ep_free(body);
    return all_up ? 0 : 1;
}
