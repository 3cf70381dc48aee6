#ifndef EP_TLS_H
#define EP_TLS_H

#include <stddef.h>

/*
 * TLS with OpenSSL (issue 15): the server side's SSL_CTX, shared by every
 * listener of the process and swapped for a new one on SIGHUP, and the client
 * side's SSL_CTX of `eventpipe bench`. TLS 1.2 and 1.3 only, AEAD ciphers with
 * forward secrecy, no compression, no renegotiation, ALPN http/1.1.
 *
 * Errors name the setting and the file: "TLS_KEY_FILE: /etc/key.pem: ...",
 * with OpenSSL's reason.
 */
typedef struct ep_tls_s ep_tls_t;
typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/**
 * Loads the certificate chain and key (PEM) and, when client_ca_file is not
 * NULL or "", requires every client to present a certificate signed by one of
 * its CAs (mutual TLS). Returns 0, or EP_ECONFIG with "NAME: file: why" in err.
 */
int ep_tls_server_create(const char *cert_file, const char *key_file, const char *client_ca_file,
                         ep_tls_t **out, char *err, size_t errlen);

/**
 * Loads the same files again into a new context and swaps it in: connections
 * accepted from now on use it, open ones keep theirs. On failure the old one
 * stays and err says why (EP_ECONFIG). Thread-safe.
 */
int ep_tls_reload(ep_tls_t *t, char *err, size_t errlen);

/*
 * The socket under a server-side SSL: OpenSSL reads and writes it with recv
 * and send (not read and write), and says whether its last recv drained the
 * socket (returned less than asked for, or nothing yet), so that an
 * edge-triggered loop need not call SSL_read once more only to learn that.
 */
typedef struct ep_tls_io_s {
    int fd;
    int drained; /* the last recv returned less than asked for, or EAGAIN */
} ep_tls_io_t;

/**
 * A server-side SSL for an accepted socket (io->fd), on the current context;
 * NULL when out of memory. io must outlive the SSL.
 */
SSL *ep_tls_accept(ep_tls_t *t, ep_tls_io_t *io);

/** Marks a server-side SSL as HTTP/2 (the gRPC listeners): ALPN selects "h2", not http/1.1. */
void ep_tls_alpn_h2(SSL *ssl);

/** "subject, expires date" of the certificate in use, for logs. */
void ep_tls_describe(ep_tls_t *t, char *out, size_t len);

/** Frees the server context (connections' SSLs hold references of their own). Accepts NULL. */
void ep_tls_destroy(ep_tls_t *t);

/**
 * A client context: verifies servers against ca_file (NULL or "": the system
 * store) and, when cert_file is set, presents it with key_file (mutual TLS).
 * NULL with "NAME: file: why" in err.
 */
SSL_CTX *ep_tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file,
                           char *err, size_t errlen);

/**
 * A client-side SSL on a connecting socket (io->fd, the same recv/send BIO as
 * the server's): SNI and the name or IP host checked. io must outlive the SSL.
 */
SSL *ep_tls_connect(SSL_CTX *ctx, ep_tls_io_t *io, const char *host);

/** OpenSSL's reason for the last failure on this thread ("" when none); clears the queue. */
void ep_tls_last_error(char *out, size_t len);

#endif /* EP_TLS_H */
