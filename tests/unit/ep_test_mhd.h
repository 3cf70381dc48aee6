#ifndef EP_TEST_MHD_H
#define EP_TEST_MHD_H

/*
 * Peers for the client-side tests (test_http_client, test_queue_forward): a
 * libmicrohttpd daemon on a free loopback port, the body a request handler
 * gathers in pieces, and a port that refuses connections.
 */
#include "base/ep_mem.h"
#include "ep_test.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* A request's body (the connection's con_cls), freed by ep_test_mhd_completed. */
typedef struct ep_test_body_s {
    char *p; /* NULL while empty */
    size_t len;
    size_t cap;
} ep_test_body_t;

/*
 * The body part of an access handler. Returns 1 when this call only started
 * the request or took a piece of its body (the handler returns MHD_YES), or 0
 * once the body is complete, with *b set.
 */
static inline int ep_test_mhd_body(void **con_cls, const char *data, size_t *size,
                                   ep_test_body_t **b)
{
    ep_test_body_t *x = *con_cls;

    if (x == NULL) {
        *con_cls = ep_calloc(1, sizeof(*x)); /* the first call: headers only */
        return 1;
    }
    if (*size > 0) {
        if (x->len + *size + 1 > x->cap) {
            /* Doubling: a 17 MiB body arrives in many small pieces. */
            x->cap = (x->len + *size + 1) * 2;
            x->p = ep_realloc(x->p, x->cap);
        }
        memcpy(x->p + x->len, data, *size);
        x->len += *size;
        *size = 0;
        return 1;
    }
    *b = x;
    return 0;
}

static inline void ep_test_mhd_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                                         enum MHD_RequestTerminationCode toe)
{
    ep_test_body_t *b = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (b) {
        ep_free(b->p);
        ep_free(b);
        *con_cls = NULL;
    }
}

/* Starts a daemon (4 threads, epoll) serving handler on 127.0.0.1; its port in *port. */
static inline struct MHD_Daemon *ep_test_mhd_start(MHD_AccessHandlerCallback handler, int *port)
{
    const union MHD_DaemonInfo *di;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL, handler, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, ep_test_mhd_completed, NULL, MHD_OPTION_THREAD_POOL_SIZE, 4u,
        MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);

    EP_ASSERT(d != NULL);
    di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    EP_ASSERT(di != NULL);
    *port = di->port;
    EP_ASSERT(*port > 0);
    return d;
}

/* A socket bound to a loopback port and never listening: connections to it are refused. */
static inline int ep_test_refusing_socket(int *port)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    EP_ASSERT(fd >= 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EP_ASSERT_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    EP_ASSERT_EQ(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

#endif /* EP_TEST_MHD_H */
