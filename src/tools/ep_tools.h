#ifndef EP_TOOLS_H
#define EP_TOOLS_H

/*
 * The user tools of the eventpipe binary. Each takes the arguments after its
 * subcommand name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 failure, 2 usage error.
 */

#include <stdint.h>

/** `eventpipe send`: the seed 004 example client and generate-data. */
int ep_tool_send(int argc, char **argv);

/** `eventpipe status`: the cluster status (GET /api/v1/status) as a table. */
int ep_tool_status(int argc, char **argv);

/** `eventpipe bench`: the HTTP load generator (throughput and latency percentiles). */
int ep_tool_bench(int argc, char **argv);

/* ep_tool_conn.c: how every tool reaches a server (TLS files, an API key). */

#define EP_TOOL_API_KEY_MAX 256 /* bytes of an --api-key */

typedef struct ep_tool_conn_s {
    const char *cacert;  /* --cacert, else TLS_CA_FILE; NULL: the system store */
    const char *cert;    /* --cert (mutual TLS), or NULL */
    const char *key;     /* --key, or NULL */
    const char *api_key; /* --api-key, sent as X-API-Key; one line, or NULL */
} ep_tool_conn_t;

/* The --help lines of the options ep__tool_conn_opt takes. */
#define EP_TOOL_CONN_HELP                                                                          \
    "  --api-key KEY      send X-API-Key: KEY (servers with API_KEYS)\n"                           \
    "  --cacert FILE      https://: PEM CAs to verify the server with (default\n"                  \
    "                     TLS_CA_FILE, else the system store)\n"                                   \
    "  --cert FILE, --key FILE  https://: client certificate and key (mutual TLS)\n"

/** The defaults: TLS_CA_FILE from the environment, nothing else. */
void ep__tool_conn_init(ep_tool_conn_t *t);

/**
 * Takes option a with its value v (borrowed: argv) when it is --cacert,
 * --cert, --key or --api-key. Returns 1 (taken), 0 (another option), or -1
 * after printing "eventpipe TOOL: ..." to stderr (an --api-key that is not one
 * line of at most EP_TOOL_API_KEY_MAX bytes).
 */
int ep__tool_conn_opt(ep_tool_conn_t *t, const char *tool, const char *a, const char *v);

/**
 * Reads a --duration value v into *seconds: a number of seconds ("2.5") or a
 * Go duration ("30s", "1m30s"). Returns 0, or -1 after printing
 * "eventpipe TOOL: --duration 'v': why" to stderr.
 */
int ep__tool_duration(const char *tool, const char *v, double *seconds);

/** One xorshift64 step of the tools' synthetic data (*s must not be 0; not for secrets). */
static inline uint64_t ep__tool_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/** `eventpipe send --grpc` and `eventpipe bench --grpc`: the same over the gRPC API. */
int ep_tool_send_grpc(int argc, char **argv);
int ep_tool_bench_grpc(int argc, char **argv);

/** `eventpipe healthcheck`: GET /health (or /ready) of a local role; the container HEALTHCHECK. */
int ep_tool_healthcheck(int argc, char **argv);

#endif /* EP_TOOLS_H */
