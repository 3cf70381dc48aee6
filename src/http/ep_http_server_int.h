/*
 * The HTTP server's internal state (design in ep_http_server.c): the structs
 * of the server, its loops, connections and requests, shared by
 *   ep_http_server.c      the event loops, connections and answer writing (the hot path)
 *   ep_http_server_api.c  creating, starting and destroying a server, its route
 *                         table, and the request accessors handlers call
 *   ep_http_server_limits.c  deadlines, shedding over the memory budget, room at
 *                         the connection cap, the per-client refusal
 *   ep_http_server_tls.c  the connections' TLS I/O: handshake, SSL_read, SSL_write
 */
#ifndef EP_HTTP_SERVER_INT_H
#define EP_HTTP_SERVER_INT_H

#include "http/ep_http_server.h"
#include "http/ep_http_parse.h"
#include "http/ep_tls.h"

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
#define LISTEN_BACKLOG  4096 /* the kernel caps it at net.core.somaxconn */
#define EPOLL_BATCH     128
#define PAUSE_ACCEPT_NS INT64_C(100000000)
#define IDLE_TRIM_NS    INT64_C(1000000000) /* idle this long: spare buffers are freed */
#define SHED_RETRY_NS                                                                              \
    INT64_C(10000000)  /* a shedding pass that freed too little: not again sooner */
#define EVICT_BATCH 32 /* connections closed at most per scan at the connection cap */
/*
 * What OpenSSL allocates for a TLS connection, counted in HTTP_MEMORY_LIMIT:
 * its read and write buffers (a record of 16 KiB plus overhead each) and the
 * SSL object. An idle connection's buffers are freed with its others
 * (ep__http_conn_trim): then only the SSL object counts.
 */
#define TLS_CONN_BYTES (40 * 1024)
#define TLS_IDLE_BYTES (6 * 1024)
/*
 * Over the soft memory budget (memory_limit), a request whose body may be
 * larger than this (Content-Length above it, chunked, or any Content-Encoding,
 * which may inflate a few hundred bytes to the route's maximum) is refused
 * with 503 before its body is read, and a body above it that is being
 * received stops being read. Smaller requests go on, up to the hard limit.
 * 64 KiB: IN_MAX, what one connection's input buffer holds anyway.
 */
#define SMALL_BODY IN_MAX
/*
 * Handler time a loop gives heavy requests (those of req_may_grow: a large,
 * chunked or encoded body) per round. Past it, further heavy requests wait for
 * the next round, after the events that came meanwhile: small requests are
 * never stuck behind more than this much heavy work (plus one handler).
 */
#define HEAVY_ROUND_NS INT64_C(20000000)
#define WARN_EVERY_NS                                                                              \
    INT64_C(10000000000) /* shedding and eviction warnings, at most this often                     \
                          */

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
    /* extra has a Cache-Control (no default no-store); the answer's Access-Control-Allow-Origin. */
    int own_cache;
    const char *cors_allow; /* NULL: none */
    /* The answer: written by the answering thread before the hand-over. */
    int close_after;
    ep_buf_t out; /* status line and headers */
    char *resp;
    size_t resp_len;
    int answered_inline; /* loop thread only: answered during its handler */
    ep_http_req_t *next; /* in a loop's list of answered requests */
};

/*
 * C_DEFER: a complete heavy request waiting for a later round (loop_deferred).
 * C_TLS: the TLS handshake (opts.tls), within HTTP_HEADER_TIMEOUT of the accept.
 */
enum { C_HEAD, C_BODY, C_WAIT, C_WRITE, C_LINGER, C_DEAD, C_DEFER, C_TLS };

/* Why connections were closed or refused by a limit (ep_http_server_stats). */
enum {
    K_IDLE,           /* HTTP_IDLE_TIMEOUT between requests */
    K_HEADER_TIMEOUT, /* 408: head not complete within HTTP_HEADER_TIMEOUT */
    K_BODY_TIMEOUT,   /* 408: body slower than HTTP_BODY_MIN_RATE past HTTP_BODY_TIMEOUT */
    K_STALLED,        /* 408: no byte of a started request for HTTP_IDLE_TIMEOUT */
    K_SEND_TIMEOUT,   /* no write progress for HTTP_SEND_TIMEOUT */
    K_EVICTED,        /* closed to make room for a new connection at the cap */
    K_FULL,           /* new connection closed at the cap: nothing could make room */
    K_PER_CLIENT,     /* new connection refused: HTTP_MAX_CONNECTIONS_PER_CLIENT */
    K_SHED,           /* closed (or answered 503) to get back under HTTP_MEMORY_LIMIT */
    K_REFUSED_MEMORY, /* new request answered 503: over HTTP_MEMORY_LIMIT */
    K_PAUSED,         /* a large body stopped being read: over HTTP_MEMORY_LIMIT */
    K_DEFERRED,       /* a heavy request waited for a later round (HEAVY_ROUND_NS) */
    K_TLS_FAILED,     /* the TLS handshake failed (or did not finish in HTTP_HEADER_TIMEOUT) */
    K_N
};

/* Open connections of one client address (IPv4 as ::ffff:a.b.c.d). */
typedef struct peer_s {
    uint8_t addr[16];
    uint32_t count; /* 0: free slot */
} peer_t;

struct conn_s {
    loop_t *lp;
    int fd;
    int state;
    struct ssl_st *ssl;  /* TLS (opts.tls): every byte goes through it; NULL: plain */
    ep_tls_io_t tio;     /* its socket: fd, and whether the last recv drained it */
    int tls_rd_wants_wr; /* an SSL_read needs the socket writable first (an EPOLLOUT reads on) */
    int tls_idle;        /* its buffers were freed (SSL_free_buffers): TLS_IDLE_BYTES counted */
    char *in;            /* bytes read and not yet consumed: in[in_off, in_len) */
    size_t in_off, in_len, in_cap;
    ep_http_req_t req;
    uint64_t body_left; /* Content-Length bytes still to come */
    int chunked;
    ep_http_chunked_t ch;
    size_t out_off; /* bytes of the answer written */
    int in_request; /* counted in in_flight */
    int rd_pending; /* the socket may hold unread bytes */
    int hup;        /* the peer shut down or reset */
    int big_body;   /* the body may exceed SMALL_BODY: not read over the soft memory limit */
    int paused;     /* big_body not read for now (counted in lp->n_paused) */
    int heavy;      /* the request's body may be large or encoded (req_may_grow) */
    /* Deadlines (checked by the loop's sweep), from lp->now. */
    int64_t idle_ns;     /* accepted, or last answer written: idle since */
    int64_t head_ns;     /* first byte of the current head; 0 = none yet */
    int64_t rx_ns;       /* last byte received */
    int64_t body_ns;     /* the body began (head complete) */
    int64_t req_ns;      /* the current request's first byte (SERVER_READ_TIMEOUT) */
    uint64_t body_got;   /* body bytes received (before dechunking) */
    int64_t wr_ns;       /* the answer's last write progress */
    int64_t wr_start_ns; /* the answer's first write (SERVER_WRITE_TIMEOUT counts from it) */
    int64_t linger_until;
    int64_t held;      /* bytes accounted in srv->mem_held for this connection */
    size_t body_offer; /* room offered to a body recv; doubles while recvs fill it */
    uint8_t peer[16];  /* client address, counted in srv->peers */
    int has_peer;
    int queued;            /* in the loop's write queue */
    conn_t *wnext;         /* next in the write queue */
    conn_t *dprev, *dnext; /* in the loop's list of deferred heavy requests (C_DEFER) */
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
    int pressure;               /* held bytes went over the memory limit this round: shed */
    int n_paused;               /* connections whose body is not read for now (conn_t.paused) */
    int64_t heavy_ns;           /* handler time of heavy requests this round */
    conn_t *defer, *defer_tail; /* heavy requests waiting for a later round, oldest first */
    conn_t **resume;            /* scratch array of loop_resume, max_conns entries */
    int64_t now, last_sweep, resume_accept, shed_fail_ns;
    int shed_fail_level; /* the last failed pass ended over the soft (1) or hard (2) limit */
    conn_t *dead;        /* closed this round, freed at its end (events may still name them) */
    struct shed_s *shed; /* scratch array of the shedding pass, max_conns entries */
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
    /* Limits against hostile clients (design in ep_http_server.c). */
    atomic_int_fast64_t mem_held; /* bytes the connections of all loops hold */
    atomic_int_fast64_t n_conns;
    atomic_uint_fast64_t kills[K_N];
    atomic_int_fast64_t warned_ns; /* last shedding / eviction warning */
    pthread_mutex_t peers_mu;      /* peers: touched on accept and close only */
    peer_t *peers;                 /* open addressing, linear probing; NULL = no limit */
    size_t peers_mask;
};

/* ep_http_server.c */
/* Closes at once, without an answer (never a connection waiting for one); freed by loop_reap. */
/* ep_http_server.c: the connection state machine, used by the limits. */
void ep__http_conn_run(conn_t *c);
void ep__http_conn_trim(conn_t *c);
void ep__http_refuse_now(conn_t *c, int status, const char *msg);

/* ep_http_server_limits.c: deadlines, shedding, room at the cap (design in ep_http_server.c). */
void ep__http_shed_warn(ep_http_server_t *s, int64_t now, const char *what);
int ep__http_loop_shed(loop_t *lp, conn_t *self);
int ep__http_make_room(loop_t *lp);
void ep__http_refuse_per_client(ep_http_server_t *s, int fd);
int ep__http_peer_key(const struct sockaddr_storage *ss, uint8_t out[16]);
void ep__http_loop_sweep(loop_t *lp);
void ep__http_loop_resume(loop_t *lp);

/* Over the soft limit, memory_limit: no new large request, no reading of large bodies. */
static inline int mem_over(const ep_http_server_t *s)
{
    return atomic_load_explicit(&s->mem_held, memory_order_relaxed) > (int64_t)s->opts.memory_limit;
}

/* The hard limit: a quarter above the soft one, for the small requests admitted past it. */
static inline int64_t mem_hard(const ep_http_server_t *s)
{
    return (int64_t)(s->opts.memory_limit + s->opts.memory_limit / 4);
}

static inline int mem_over_hard(const ep_http_server_t *s)
{
    return atomic_load_explicit(&s->mem_held, memory_order_relaxed) > mem_hard(s);
}

static inline void count_kill(ep_http_server_t *s, int kind)
{
    atomic_fetch_add_explicit(&s->kills[kind], 1, memory_order_relaxed);
}

void ep__http_conn_close(conn_t *c);
/* Brings srv->mem_held up to date with the connection's buffers. Loop thread. */
void ep__http_conn_account(conn_t *c);
/* Frees the connections closed this round. Loop thread, or after the loop ended. */
void ep__http_loop_reap(loop_t *lp);
void *ep__http_loop_main(void *arg);

/* ep_http_server_api.c: connections per client address. Thread-safe. */
/* Counts one more connection of addr. 0, or -1 (nothing counted) when it has the limit. */
int ep__http_peer_acquire(ep_http_server_t *s, const uint8_t addr[16]);
void ep__http_peer_release(ep_http_server_t *s, const uint8_t addr[16]);

/*
 * ep_http_server_tls.c: a connection's TLS I/O, on its loop thread. Those that
 * return -1 have closed the connection (ep__http_conn_close) first.
 */
/* Starts the server side of TLS on c->fd (state C_TLS). 0, or -1: no SSL object. */
int ep__http_tls_accept(conn_t *c, ep_tls_t *tls);
/* Frees the SSL object without a close_notify (an abort). */
void ep__http_tls_free(conn_t *c);
/* One step of the handshake. 1: done (now C_HEAD); 0: it waits for the socket; -1: closed. */
int ep__http_tls_handshake(conn_t *c);
/* One SSL_read into buf: bytes read, 0 when none now (rd_pending cleared as drained), -1. */
ssize_t ep__http_tls_recv(conn_t *c, char *buf, size_t len);
/* One SSL_write of the answer from c->out_off: bytes written, 0 when it must wait, -1. */
ssize_t ep__http_tls_send(conn_t *c);
/* Writes p whole at once (a small interim answer). 0, or -1 (closed: it did not go whole). */
int ep__http_tls_send_all(conn_t *c, const char *p, size_t len);
/* Sends our close_notify (the peer's is not awaited). */
void ep__http_tls_shutdown(conn_t *c);
/* Frees OpenSSL's buffers of an idle connection (c->tls_idle), when it holds no unread bytes. */
void ep__http_tls_trim(conn_t *c);

#endif /* EP_HTTP_SERVER_INT_H */
