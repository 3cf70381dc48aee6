/*
 * eventpipe: one binary, a subcommand per role.
 */
#include "roles/ep_app.h"
#include "config/ep_config.h"
#include "base/ep_error.h"
#include "base/ep_exit.h"
#include "base/ep_log.h"
#include "base/ep_time.h"
#include "queue/ep_queue.h"
#include "tools/ep_tools.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

typedef struct command_s {
    const char *name;
    unsigned roles;
    const char *summary;
} command_t;

static const command_t commands[] = {
    {"run", EP_ROLE_ALL,
     "all roles in one process: gateway :8080, ingest :8081, processor :8082, analytics :8083"},
    {"gateway", EP_ROLE_GATEWAY, "public API on API_PORT (8080), proxies to INGEST_URL"},
    {"ingest", EP_ROLE_INGEST, "validates events on INGEST_PORT (8081) and queues them"},
    {"processor", EP_ROLE_PROCESSOR, "queue and worker pool on PROCESSOR_PORT (8082)"},
    {"analytics", EP_ROLE_ANALYTICS, "real-time aggregates on ANALYTICS_PORT (8083)"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
    fprintf(f, "eventpipe %s: real-time event ingestion, queueing and processing\n\n", EP_VERSION);
    fprintf(f, "Usage: eventpipe <command> [options]\n\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++) {
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    }
    fprintf(f, "  %-10s %s\n", "send", "sends synthetic or given events (generate-data)");
    fprintf(f, "  %-10s %s\n", "status", "every role's health and stats as a table");
    fprintf(f, "  %-10s %s\n", "bench", "HTTP load generator: throughput and latency percentiles");
    fprintf(f, "  %-10s %s\n", "healthcheck", "GET /health of a role on this host (exit 0 if 200)");
    fprintf(f, "\n  eventpipe <command> --help   options of a command\n");
    fprintf(f, "  eventpipe --version\n");
}

static int serve(const command_t *cmd, int argc, char **argv)
{
    ep_config_t cfg;
    ep_app_t *app = NULL;
    char err[512];
    sigset_t set;
    int64_t next_summary;
    int rc, sig;

    rc = ep_queue_config_load(&cfg, argc, argv, err, sizeof(err));
    if (rc == EP_ENOENT) {
        printf("Usage: eventpipe %s [options]\n%s\n\n", cmd->name, cmd->summary);
        ep_queue_config_usage(stdout);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "eventpipe %s: %s\n", cmd->name, err);
        return 2;
    }
    ep_log_configure((ep_log_level_t)cfg.log_level, cfg.log_format == EP_LOG_FORMAT_JSON);
    ep_log_set_app(cfg.app_name, cfg.app_version, cfg.app_env);

    /* Signals are taken by this thread only: every thread started later inherits the mask. */
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP); /* reloads the TLS certificate (ep_app_reload) */
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = ep_app_create(&cfg, cmd->roles, &app, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "eventpipe %s: %s\n", cmd->name, err);
        return rc == EP_ECONFIG || rc == EP_EINVAL ? 2 : 1;
    }
    rc = ep_app_start(app, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "eventpipe %s: %s\n", cmd->name, err);
        ep_app_stop(app);
        ep_app_destroy(app);
        return 1;
    }
    next_summary = ep_time_mono_ms() + cfg.stats_interval_ms;
    for (;;) {
        /* A second at most between looks, less for a shorter STATS_INTERVAL. */
        int64_t wait_ms = cfg.stats_interval_ms > 0 && cfg.stats_interval_ms < 1000
                              ? cfg.stats_interval_ms
                              : 1000;
        struct timespec ts = {.tv_sec = (time_t)(wait_ms / 1000),
                              .tv_nsec = (long)(wait_ms % 1000) * 1000000L};
        sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM) {
            ep_log_info("app", "received %s", sig == SIGINT ? "SIGINT" : "SIGTERM");
            break;
        }
        if (sig == SIGHUP) {
            ep_app_reload(app);
        }
        if (cfg.stats_interval_ms > 0 && ep_time_mono_ms() >= next_summary) {
            ep_app_log_summary(app);
            next_summary += cfg.stats_interval_ms;
        }
    }
    rc = ep_app_stop(app);
    if (ep_app_abandoned(app) > 0) {
        /* Threads may still answer the abandoned requests: exit without freeing. */
        ep_log_info("app", "stopped (shutdown deadline reached; %lld requests abandoned)",
                    (long long)ep_app_abandoned(app));
        _exit(1);
    }
    ep_app_destroy(app);
    ep_log_info("app", "stopped%s", rc == 0 ? "" : " (shutdown deadline reached)");
    if (ep_exit_fast_requested()) {
        /* A component left a thread it could not stop (it said which): no atexit handlers. */
        fflush(stdout);
        fflush(stderr);
        _exit(rc == 0 ? 0 : 1);
    }
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("eventpipe %s\n", EP_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "send") == 0) {
        return ep_tool_send(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "status") == 0) {
        return ep_tool_status(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "bench") == 0) {
        return ep_tool_bench(argc - 1, argv + 1);
    }
    if (strcmp(argv[1], "healthcheck") == 0) {
        return ep_tool_healthcheck(argc - 1, argv + 1);
    }
    for (size_t i = 0; i < N_COMMANDS; i++) {
        if (strcmp(argv[1], commands[i].name) == 0) {
            return serve(&commands[i], argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "eventpipe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
