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
#include "ep_error.h"
#include "ep_http_client.h"
#include "ep_mem.h"
#include "tools/ep_tools.h"

#include <stdio.h>
#include <string.h>
#include <yajl/yajl_tree.h>

static long long num(yajl_val root, const char **path)
{
    yajl_val v = yajl_tree_get(root, path, yajl_t_number);

    return v ? YAJL_GET_INTEGER(v) : -1;
}

/* Prints "queue=<size>[/<capacity>]", or "queue=unknown (<why>)" when the size is -1. */
static void print_queue(yajl_val stats)
{
    long long size = num(stats, (const char *[]){"queue", "size", NULL});
    long long cap = num(stats, (const char *[]){"queue", "capacity", NULL});
    yajl_val why = yajl_tree_get(stats, (const char *[]){"queue", "reason", NULL}, yajl_t_string);

    if (size >= 0 && cap > 0) {
        printf("queue=%lld/%lld", size, cap);
    } else if (size >= 0) {
        printf("queue=%lld", size);
    } else {
        printf("queue=unknown (%s)", why ? YAJL_GET_STRING(why) : "not reported by the broker yet");
    }
}

static void print_role(const char *name, yajl_val role)
{
    yajl_val healthy = yajl_tree_get(role, (const char *[]){"healthy", NULL}, yajl_t_any);
    yajl_val err = yajl_tree_get(role, (const char *[]){"error", NULL}, yajl_t_string);
    yajl_val stats = yajl_tree_get(role, (const char *[]){"stats", NULL}, yajl_t_object);
    int up = healthy && YAJL_IS_TRUE(healthy);

    printf("%-11s %-7s ", name, up ? "up" : "DOWN");
    if (!up) {
        printf("%s\n", err ? YAJL_GET_STRING(err) : "unhealthy");
        return;
    }
    if (stats == NULL) {
        printf("(no stats)\n");
    } else if (strcmp(name, "ingest") == 0) {
        printf("received=%lld sent=%lld failed=%lld rejected=%lld\n",
               num(stats, (const char *[]){"TotalReceived", NULL}),
               num(stats, (const char *[]){"TotalSent", NULL}),
               num(stats, (const char *[]){"TotalFailed", NULL}),
               num(stats, (const char *[]){"TotalRejected", NULL}));
    } else if (strcmp(name, "processor") == 0) {
        print_queue(stats);
        printf(" processed=%lld errors=%lld workers=%lld\n",
               num(stats, (const char *[]){"pool", "processed", NULL}),
               num(stats, (const char *[]){"pool", "errors", NULL}),
               num(stats, (const char *[]){"pool", "workers", NULL}));
    } else {
        printf("total_events=%lld unique_users=%lld\n",
               num(stats, (const char *[]){"total_events", NULL}),
               num(stats, (const char *[]){"unique_users", NULL}));
    }
}

int ep_tool_status(int argc, char **argv)
{
    const char *base = "http://localhost:8080";
    int json = 0, status = 0, rc, all_up = 1;
    ep_http_client_t *c;
    char url[512], errbuf[256];
    char *body = NULL;
    yajl_val root;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else if (strcmp(argv[i], "--json") == 0) {
            json = 1;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("Usage: eventpipe status [--url http://localhost:8080] [--json]\n"
                   "Shows every role's health and stats (GET /api/v1/status on the gateway).\n"
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
    rc = ep_http_client_request_sync(c, "GET", url, NULL, NULL, 0, 5000, &status, &body);
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
    root = yajl_tree_parse(body, errbuf, sizeof(errbuf));
    if (root == NULL || !YAJL_IS_OBJECT(root)) {
        fprintf(stderr, "eventpipe status: not JSON: %s\n", errbuf);
        yajl_tree_free(root);
        ep_free(body);
        return 1;
    }
    printf("%-11s %-7s %s\n", "ROLE", "HEALTH", "DETAIL");
    for (size_t i = 0; i < root->u.object.len; i++) {
        yajl_val role = root->u.object.values[i];
        yajl_val h = yajl_tree_get(role, (const char *[]){"healthy", NULL}, yajl_t_any);
        print_role(root->u.object.keys[i], role);
        all_up &= h && YAJL_IS_TRUE(h);
    }
    yajl_tree_free(root);
    ep_free(body);
    return all_up ? 0 : 1;
}
