#ifndef EP_TOOLS_H
#define EP_TOOLS_H

/*
 * The user tools of the eventpipe binary. Each takes the arguments after its
 * subcommand name (argv[0] is the subcommand) and returns the process exit
 * status: 0 success, 1 failure, 2 usage error.
 */

/** `eventpipe send`: the seed 004 example client and generate-data. */
int ep_tool_send(int argc, char **argv);

/** `eventpipe status`: the cluster status (GET /api/v1/status) as a table. */
int ep_tool_status(int argc, char **argv);

/** `eventpipe bench`: the HTTP load generator (throughput and latency percentiles). */
int ep_tool_bench(int argc, char **argv);

/** `eventpipe healthcheck`: GET /health (or /ready) of a local role; the container HEALTHCHECK. */
int ep_tool_healthcheck(int argc, char **argv);

#endif /* EP_TOOLS_H */
