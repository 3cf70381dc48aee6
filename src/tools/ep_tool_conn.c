/*
 * The options every tool (bench, send, status) takes to reach a server:
 * --cacert, --cert, --key for https:// URLs and --api-key.
 */
#include "tools/ep_tools.h"

#include "base/ep_duration.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ep__tool_conn_init(ep_tool_conn_t *t)
{
    memset(t, 0, sizeof(*t));
    t->cacert = getenv("TLS_CA_FILE");
}

int ep__tool_conn_opt(ep_tool_conn_t *t, const char *tool, const char *a, const char *v)
{
    if (strcmp(a, "--cacert") == 0) {
        t->cacert = v;
    } else if (strcmp(a, "--cert") == 0) {
        t->cert = v;
    } else if (strcmp(a, "--key") == 0) {
        t->key = v;
    } else if (strcmp(a, "--api-key") == 0) {
        if (strpbrk(v, "\r\n") != NULL || strlen(v) > EP_TOOL_API_KEY_MAX) {
            fprintf(stderr, "eventpipe %s: --api-key must be one line of at most %d bytes\n", tool,
                    EP_TOOL_API_KEY_MAX);
            return -1;
        }
        t->api_key = v;
    } else {
        return 0;
    }
    return 1;
}

int ep__tool_duration(const char *tool, const char *v, double *seconds)
{
    char *end;
    int64_t ns;
    const char *why;

    *seconds = strtod(v, &end);
    if (end == v || *end != '\0') {
        if (ep_duration_parse(v, &ns, &why) != 0) {
            fprintf(stderr, "eventpipe %s: --duration '%s': %s\n", tool, v, why);
            return -1;
        }
        *seconds = (double)ns / 1e9;
    }
    return 0;
}
