/*
 * The HTTP server's TLS I/O (issue 15, opts.tls): every OpenSSL call of the
 * server's connections. ep_http_server.c calls these where a connection has
 * c->ssl (one branch per read, write, close); its plain path stays static.
 *
 * A connection starts in C_TLS, the handshake, which must finish within
 * header_timeout_s of the accept (the sweep ends it). An SSL_read returns one
 * record at most, so a TLS connection's socket counts as drained only when the
 * last recv under OpenSSL came short (ep_tls_io_t) and OpenSSL holds nothing
 * more (SSL_has_pending), or SSL_read said SSL_ERROR_WANT_READ. A write that
 * wants a read is retried on any event; a read that wants a write on the next
 * EPOLLOUT (c->tls_rd_wants_wr).
 */
#include "http/ep_http_server_int.h"
#include "http/ep_tls.h"

#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>

int ep__http_tls_accept(conn_t *c, ep_tls_t *tls)
{
    c->tio.fd = c->fd;
    c->ssl = ep_tls_accept(tls, &c->tio);
    c->state = C_TLS;
    return c->ssl ? 0 : -1;
}

void ep__http_tls_free(conn_t *c)
{
    SSL_free(c->ssl); /* no close_notify: a close here is an abort */
    c->ssl = NULL;
}

int ep__http_tls_handshake(conn_t *c)
{
    int n;

    ERR_clear_error();
    n = SSL_do_handshake(c->ssl);
    if (n == 1) {
        c->state = C_HEAD;
        c->idle_ns = c->rx_ns = c->lp->now; /* HTTP_IDLE_TIMEOUT counts from here */
        c->rd_pending = 1;                  /* the first request may have come with it */
        return 1;
    }
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        c->rd_pending = 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        return 0; /* EPOLLOUT runs it again */
    default:
        /* Plain HTTP to this port, an unknown CA, no client certificate, a reset... */
        ERR_clear_error();
        count_kill(c->lp->srv, K_TLS_FAILED);
        ep__http_conn_close(c);
        return -1;
    }
}

ssize_t ep__http_tls_recv(conn_t *c, char *buf, size_t len)
{
    int n;

    if (c->tls_idle) {
        c->tls_idle = 0; /* the read allocates its buffers again */
        ep__http_conn_account(c);
    }
    ERR_clear_error();
    n = SSL_read(c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) {
        c->rx_ns = c->lp->now;
        /*
         * One record at most per SSL_read: the socket is drained only when the
         * last recv under it came short and OpenSSL holds nothing more.
         */
        if (c->tio.drained && !c->hup && !SSL_has_pending(c->ssl)) {
            c->rd_pending = 0;
        }
        return n;
    }
    switch (SSL_get_error(c->ssl, n)) {
    case SSL_ERROR_WANT_READ:
        c->rd_pending = 0;
        return 0;
    case SSL_ERROR_WANT_WRITE:
        c->rd_pending = 0;
        c->tls_rd_wants_wr = 1;
        return 0;
    default:
        ERR_clear_error();
        ep__http_conn_close(c); /* close_notify, end of stream or a TLS error */
        return -1;
    }
}

/*
 * An answer that fits in one record (the usual small one) is copied into one
 * buffer first, so that head and body leave in one record and one send; a
 * larger one is written from where it is. A write that must wait is retried
 * later with the same bytes from the same out_off, as OpenSSL requires (the
 * buffer may move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER).
 */
ssize_t ep__http_tls_send(conn_t *c)
{
    ep_http_req_t *r = &c->req;
    size_t hl = r->out.len, len = hl + r->resp_len - c->out_off;
    char one[16384];
    const char *p;
    int n, e;

    if (c->out_off < hl && len <= sizeof(one)) {
        memcpy(one, r->out.data + c->out_off, hl - c->out_off);
        if (r->resp_len) {
            memcpy(one + hl - c->out_off, r->resp, r->resp_len);
        }
        p = one;
    } else if (c->out_off < hl) {
        p = r->out.data + c->out_off;
        len = hl - c->out_off;
    } else {
        p = r->resp + (c->out_off - hl);
    }
    ERR_clear_error();
    n = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) {
        return n;
    }
    e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        return 0; /* the next event on the connection runs it again */
    }
    ERR_clear_error();
    ep__http_conn_close(c);
    return -1;
}

int ep__http_tls_send_all(conn_t *c, const char *p, size_t len)
{
    ERR_clear_error();
    if (SSL_write(c->ssl, p, (int)len) != (int)len) {
        ERR_clear_error();
        ep__http_conn_close(c);
        return -1;
    }
    return 0;
}

void ep__http_tls_shutdown(conn_t *c)
{
    ERR_clear_error();
    if (SSL_shutdown(c->ssl) < 0) { /* our close_notify; the peer's is not awaited */
        ERR_clear_error();
    }
}

void ep__http_tls_trim(conn_t *c)
{
    /* OpenSSL allocates them again for the next record; refused while it holds unread bytes. */
    if (!c->tls_idle && c->state == C_HEAD && SSL_free_buffers(c->ssl) == 1) {
        c->tls_idle = 1;
    }
}
