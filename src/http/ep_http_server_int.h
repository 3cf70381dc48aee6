/*
 * The HTTP server's internal state (design in ep_http_server.c): the structs
 * of the server, its loops, connections and requests, shared by
 *   ep_http_server.c      the event loops, connections and answer writing (the hot path)
 *   ep_http_server_api.c  creating, starting and destroying a server, its route
 *                         table, and the request accessors handlers call
 */
#ifndef EP_HTTP_SERVER_INT_H
#define EP_HTTP_SERVER_INT_H

#include "ep_http_server.h"
#include "ep_http_parse.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MAX_ROUTES      64
#define MAX_QUERY       32
#define IN_INITIAL      4096
#define IN_MIN_SPACE    1024
#define IN_MAX          (64 * 1024)  /* a read that fills the buffer doubles it, up to this */
#define BODY_KEEP       (256 * 1024) /* larger body buffers are freed after their request */
#define LINGER_NS       INT64_C(2000000000) /* reading what a closed-on client still sends */
#define SWEEP_NS        INT64_C(250000000)
#define ACCEPT_BATCH    64
#define EPOLL_BATCH     128
#define PAUSE_ACCEPT_NS INT64_C(100000000)

typedef struct route_s {
    unsigned methods;
    char *path;
    ep_http_handler_cb handler;
    void *arg;
    size_t max_body;
} route_t;

typedef struct loop_s loop_t;
typedef struct conn_s conn_t;

struct ep_http_req_s {
    ep_http_server_t *srv;
    loop_t *loop;
    conn_t *conn;
    ep_http_head_t head;
    char *raw; /* a copy of the head, parsed in place */
    size_t raw_cap;
    const route_t *route;
    unsigned method_bit;
    ep_buf_t body;
    int64_t start_ns;
    int q_done, n_q;
    char *q_name[MAX_QUERY], *q_value[MAX_QUERY];
    ep_buf_t extra; /* response headers from ep_http_req_add_header, "Name: value\r\n" */
    /* The answer: written by the answering thread before the hand-over. */
    int close_after;
    ep_buf_t out; /* status line and headers */
    char *resp;
    size_t resp_len;
    int answered_inline; /* loop thread only: answered during its handler */
    ep_http_req_t *next; /* in a loop's list of answered requests */
};

enum { C_HEAD, C_BODY, C_WAIT, C_WRITE, C_LINGER };

struct conn_s {
    loop_t *lp;
    int fd;
    int state;
    char *in; /* bytes read and not yet consumed: in[in_off, in_len) */
    size_t in_off, in_len, in_cap;
    ep_http_req_t req;
    uint64_t body_left; /* Content-Length bytes still to come */
    int chunked;
    ep_http_chunked_t ch;
    size_t out_off;  /* bytes of the answer written */
    int in_request;  /* counted in in_flight */
    int rd_pending;  /* the socket may hold unread bytes */
    int hup;         /* the peer shut down or reset */
    int64_t last_ns; /* last progress, for the idle timeout */
    int64_t linger_until;
    int queued;    /* in the loop's write queue */
    conn_t *wnext; /* next in the write queue */
    conn_t *prev, *next;
};

struct loop_s {
    ep_http_server_t *srv;
    pthread_t tid;
    pthread_t self; /* set by the loop thread itself */
    int started;
    int epfd;
    int wakefd; /* eventfd: an answer from another thread, or the stop */
    /*
     * An answering thread appends to answered under mu, bumps resumes, then
     * writes wakefd only if the loop is (about to be) asleep; the loop sets
     * sleeping, then rechecks resumes before it blocks. Both sides use
     * sequentially consistent operations, so at least one sees the other.
     */
    pthread_mutex_t mu;
    ep_http_req_t *answered, *answered_tail;
    atomic_uint resumes;
    atomic_int sleeping;
    /* Loop thread only. */
    ep_http_req_t *local, *local_tail; /* answered on this thread outside their handler */
    ep_http_req_t *running;            /* the request whose handler runs now */
    conn_t *wq, *wq_tail;              /* answers to write at the end of this round */
    conn_t *conns;
    int n_conns, max_conns;
    int accept_paused;
    int64_t now, last_sweep, resume_accept;
    int listen_marker, wake_marker; /* epoll data for the two fds */
};

struct ep_http_server_s {
    ep_http_server_opts_t opts;
    char name[32];
    char bind_addr[64];
    loop_t *loops;
    int n_loops;
    int listen_fd;
    atomic_int stop;
    /*
     * Answers being handed over by other threads: counted from before a request
     * is appended to its loop's list until the wake-up is done, so that destroy
     * does not free a loop under an answerer's last steps.
     */
    atomic_int handing_over;
    route_t routes[MAX_ROUTES];
    int n_routes;
    int port;
    atomic_int draining;
    atomic_uint_fast64_t requests, s2xx, s4xx, s5xx;
    atomic_int_fast64_t in_flight;
    ep_http_observe_cb observe; /* metrics and access log; NULL = none */
    void *observe_arg;
};

/* ep_http_server.c */
void ep__http_conn_close(conn_t *c);
void *ep__http_loop_main(void *arg);

#endif /* EP_HTTP_SERVER_INT_H */
