#define _GNU_SOURCE
/* nghttp2 + epoll unary gRPC server prototype: one thread, h2c prior
 * knowledge, answers any POST with a fixed 20-byte gRPC message + trailers. */
#include <nghttp2/nghttp2.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    nghttp2_session *s;
} conn_t;
typedef struct {
    size_t off;
} strm_t;

static unsigned char reply[25];

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE         \
    }

static ssize_t rd(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *fl,
                  nghttp2_data_source *src, void *u)
{
    (void)u;
    strm_t *st = src->ptr;
    size_t n = sizeof reply - st->off;
    if (n > len)
        n = len;
    memcpy(buf, reply + st->off, n);
    st->off += n;
    if (st->off == sizeof reply) {
        *fl |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_nv tr[] = {NV("grpc-status", "0")};
        nghttp2_submit_trailer(s, id, tr, 1);
    }
    return (ssize_t)n;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *u)
{
    (void)u;
    if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        strm_t *st = calloc(1, sizeof *st);
        nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
        nghttp2_nv h[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
        nghttp2_data_provider dp = {.source.ptr = st, .read_callback = rd};
        nghttp2_submit_response(s, f->hd.stream_id, h, 2, &dp);
    }
    return 0;
}
static int on_close(nghttp2_session *s, int32_t id, uint32_t ec, void *u)
{
    (void)ec;
    (void)u;
    free(nghttp2_session_get_stream_user_data(s, id));
    return 0;
}
static int on_chunk(nghttp2_session *s, uint8_t fl, int32_t id, const uint8_t *d, size_t l, void *u)
{
    (void)s;
    (void)fl;
    (void)id;
    (void)d;
    (void)l;
    (void)u;
    return 0;
}

static int flush(conn_t *c)
{
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(c->s, &d);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = write(c->fd, d + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EAGAIN)
                    continue;
                return -1;
            }
            off += w;
        }
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 50062;
    reply[0] = 0;
    reply[4] = 20;
    reply[5] = 0x0a;
    reply[6] = 18;
    memset(reply + 7, 'x', 18);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(ls, (void *)&a, sizeof a) || listen(ls, 128)) {
        perror("bind");
        return 1;
    }
    int ep = epoll_create1(0);
    struct epoll_event e = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &e);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_chunk);
    printf("ready\n");
    fflush(stdout);
    static uint8_t buf[65536];
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        for (int i = 0; i < n; i++) {
            if (!evs[i].data.ptr) {
                int fd;
                while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    conn_t *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    nghttp2_session_server_new(&c->s, cb, c);
                    nghttp2_settings_entry st[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100}};
                    nghttp2_submit_settings(c->s, NGHTTP2_FLAG_NONE, st, 1);
                    flush(c);
                    struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
                }
                continue;
            }
            conn_t *c = evs[i].data.ptr;
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r > 0 && nghttp2_session_mem_recv(c->s, buf, (size_t)r) >= 0 && flush(c) == 0)
                continue;
            if (r < 0 && errno == EAGAIN)
                continue;
            close(c->fd);
            nghttp2_session_del(c->s);
            free(c);
        }
    }
}
