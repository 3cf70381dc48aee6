/*
 * `eventpipe healthcheck [ROLE] [--ready]`: GET /health (or /ready) of one role of
 * the eventpipe running beside it, for a container HEALTHCHECK or a Kubernetes exec
 * probe, where there is no curl. Ports, listen address and TLS come from the same
 * environment the server reads (API_PORT, SERVER_ADDRESS, INGEST_PORT, BIND_ADDR,
 * TLS_*, ...), so the check follows the server's configuration.
 *
 * Without ROLE it checks the role of the eventpipe that is PID 1 (the server of its
 * container: `docker run IMAGE eventpipe processor` needs no other HEALTHCHECK), else
 * `run` (the gateway port).
 *
 * Exit status: 0 the role answered 200, 1 it did not (refused, timed out, another
 * status, or a configuration the server would refuse too), 2 a usage error.
 */
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "config/ep_config.h"
#include "http/ep_http_client.h"
#include "queue/ep_queue.h"
#include "tools/ep_tools.h"

#include <stdio.h>
#include <string.h>

#define CHECK_TIMEOUT_MS 3000 /* under Docker's default HEALTHCHECK --timeout (30 s) */

/* The host to reach a listener bound to addr on: itself, or localhost for a wildcard. */
static void host_of(const char *addr, char *out, size_t len)
{
    if (addr[0] == '\0' || strcmp(addr, "0.0.0.0") == 0 || strcmp(addr, "::") == 0 ||
        strcmp(addr, "[::]") == 0) {
        snprintf(out, len, "localhost");
    } else if (strchr(addr, ':') != NULL && addr[0] != '[') {
        snprintf(out, len, "[%s]", addr); /* an IPv6 address in a URL */
    } else {
        snprintf(out, len, "%s", addr);
    }
}

/* The role PID 1 serves when PID 1 is `eventpipe <role>`, else NULL. */
static const char *pid1_role(void)
{
    static const char *const roles[] = {"run", "gateway", "ingest", "processor", "analytics"};
    char cmd[256];
    const char *arg, *base;
    size_t n;
    FILE *f = fopen("/proc/1/cmdline", "r");

    if (f == NULL) {
        return NULL;
    }
    n = fread(cmd, 1, sizeof(cmd) - 1, f);
    fclose(f);
    cmd[n] = '\0'; /* argv[0] NUL argv[1] NUL ... */
    base = strrchr(cmd, '/') ? strrchr(cmd, '/') + 1 : cmd;
    arg = cmd + strlen(cmd) + 1;
    if (strcmp(base, "eventpipe") != 0 || arg >= cmd + n) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++) {
        if (strcmp(arg, roles[i]) == 0) {
            return roles[i];
        }
    }
    return NULL;
}

int ep_tool_healthcheck(int argc, char **argv)
{
    const char *role = NULL, *path = "/health";
    char *env_only[] = {argv[0], NULL};
    char err[512], host[80], url[256];
    char *body = NULL;
    ep_config_t cfg;
    ep_http_client_t *c;
    int port, status = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--ready") == 0) {
            path = "/ready";
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("Usage: eventpipe healthcheck [run|gateway|ingest|processor|analytics] "
                   "[--ready]\n"
                   "GET /health (--ready: /ready) of that role of the eventpipe on this host\n"
                   "(default: the role of PID 1 when it is eventpipe, as in its container, else\n"
                   "run: the gateway port), with the ports, address and TLS settings of the\n"
                   "environment. Exit status: 0 it answered 200, 1 it did not.\n");
            return 0;
        } else if (argv[i][0] != '-' && i == 1) {
            role = argv[i];
        } else {
            fprintf(stderr, "eventpipe healthcheck: unknown argument '%s' (see --help)\n", argv[i]);
            return 2;
        }
    }
    if (role == NULL) {
        const char *served = pid1_role();
        role = served ? served : "run";
    }
    rc = ep_queue_config_load(&cfg, 1, env_only, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "eventpipe healthcheck: %s\n", err);
        return 1;
    }
    if (strcmp(role, "run") == 0 || strcmp(role, "gateway") == 0) {
        port = cfg.api_port;
        host_of(cfg.api_bind_addr[0] ? cfg.api_bind_addr : cfg.bind_addr, host, sizeof(host));
    } else if (strcmp(role, "ingest") == 0 || strcmp(role, "processor") == 0 ||
               strcmp(role, "analytics") == 0) {
        port = role[0] == 'i'   ? cfg.ingest_port
               : role[0] == 'p' ? cfg.processor_port
                                : cfg.analytics_port;
        host_of(cfg.bind_addr, host, sizeof(host));
    } else {
        fprintf(stderr,
                "eventpipe healthcheck: unknown role '%s' (run, gateway, ingest, "
                "processor or analytics)\n",
                role);
        return 2;
    }
    snprintf(url, sizeof(url), "%s://%s:%d%s", cfg.tls_cert_file[0] ? "https" : "http", host, port,
             path);
    if (ep_http_client_create(1, &c) != 0) {
        fprintf(stderr, "eventpipe healthcheck: cannot start the HTTP client\n");
        return 1;
    }
    /* A server that asks for client certificates gets the role's own (as its hops do). */
    ep_http_client_set_tls(c, cfg.tls_ca_file, cfg.tls_client_ca_file[0] ? cfg.tls_cert_file : NULL,
                           cfg.tls_client_ca_file[0] ? cfg.tls_key_file : NULL);
    rc = ep_http_client_request_sync_ex(c, "GET", url, NULL, NULL, 0, CHECK_TIMEOUT_MS, &status,
                                        &body);
    ep_http_client_destroy(c);
    ep_free(body);
    if (rc != 0) {
        fprintf(stderr, "eventpipe healthcheck: %s: %s\n", url, ep_strerror(rc));
        return 1;
    }
    if (status != 200) {
        fprintf(stderr, "eventpipe healthcheck: %s: status %d\n", url, status);
        return 1;
    }
    printf("%s: 200\n", url);
    return 0;
}
