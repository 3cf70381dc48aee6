/*
 * TLS contexts (design in ep_tls.h). The server context is one per process:
 * every listener's loops take an SSL from it per accepted connection, under a
 * mutex (per connection, never per request); a reload builds a whole new
 * context from the files and swaps the pointer, and the old one lives on in
 * the SSLs of the connections that still use it (SSL_new takes a reference).
 */
#include "http/ep_tls.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"

#include <arpa/inet.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* TLS 1.2: ECDHE key exchange and AEAD ciphers only (TLS 1.3's suites are all AEAD). */
#define TLS12_CIPHERS                                                                              \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static const unsigned char alpn_http11[] = "\x08http/1.1";

struct ep_tls_s {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* under mu */
    char cert_file[512], key_file[512], client_ca_file[512];
};

void ep_tls_last_error(char *out, size_t len)
{
    unsigned long e = ERR_peek_last_error();

    if (len == 0) {
        return;
    }
    out[0] = '\0';
    if (e != 0) {
        const char *r = ERR_reason_error_string(e);
        if (r) {
            snprintf(out, len, "%s", r);
        } else {
            ERR_error_string_n(e, out, len);
        }
    }
    ERR_clear_error();
}

/* "NAME: file: why": why is errno's text when the file cannot be read, else OpenSSL's reason. */
static void file_error(char *err, size_t errlen, const char *name, const char *file,
                       const char *what)
{
    char why[256];
    FILE *f = fopen(file, "r");
    int unreadable = f == NULL;

    if (unreadable) {
        snprintf(why, sizeof(why), "%s", strerror(errno));
        ERR_clear_error();
    } else {
        ep_tls_last_error(why, sizeof(why));
        fclose(f);
    }
    if (unreadable) {
        snprintf(err, errlen, "%s: %s: %s: %s", name, file, what, why);
    } else if (why[0]) {
        snprintf(err, errlen, "%s: %s: %s (OpenSSL: %s)", name, file, what, why);
    } else {
        snprintf(err, errlen, "%s: %s: %s", name, file, what);
    }
}

/* The protocol floor, cipher choice and options both sides share. */
static int ctx_common(SSL_CTX *ctx)
{
    long opts = SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION;

#ifdef SSL_OP_NO_CLIENT_RENEGOTIATION
    opts |= SSL_OP_NO_CLIENT_RENEGOTIATION;
#endif
    SSL_CTX_set_options(ctx, (uint64_t)opts);
    /* A write that fills the socket returns what went; its retry may come from a moved buffer. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* One recv takes what has arrived (several records), not a record header and then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1 &&
           SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1 &&
           SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) == 1 &&
           SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) == 1;
}

static const char h2_mark = 'h'; /* SSL app data of a gRPC connection (ep_tls_alpn_h2) */
static const unsigned char alpn_h2[] = "\x02h2";

void ep_tls_alpn_h2(SSL *ssl)
{
    SSL_set_app_data(ssl, (void *)(uintptr_t)&h2_mark);
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    unsigned char *sel = NULL;
    int h2 = SSL_get_app_data(ssl) == (void *)(uintptr_t)&h2_mark;

    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, h2 ? alpn_h2 : alpn_http11,
                              h2 ? sizeof(alpn_h2) - 1 : sizeof(alpn_http11) - 1, in,
                              inlen) == OPENSSL_NPN_NEGOTIATED) {
        *out = sel;
        return SSL_TLSEXT_ERR_OK;
    }
    return SSL_TLSEXT_ERR_NOACK; /* no http/1.1 offered: go on without ALPN */
}

/* A new server context from the files. NULL with err set. */
static SSL_CTX *server_ctx(const ep_tls_t *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

    ERR_clear_error();
    if (ctx == NULL || !ctx_common(ctx)) {
        char why[256];
        ep_tls_last_error(why, sizeof(why));
        snprintf(err, errlen, "TLS: cannot set up an OpenSSL context: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* Resumed sessions of a mutual-TLS server need an id context. */
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"eventpipe", 9);
    if (SSL_CTX_use_certificate_chain_file(ctx, t->cert_file) != 1) {
        file_error(err, errlen, "TLS_CERT_FILE", t->cert_file, "cannot load a PEM certificate");
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, t->key_file, SSL_FILETYPE_PEM) != 1) {
        int mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        file_error(err, errlen, "TLS_KEY_FILE", t->key_file,
                   mismatch ? "the key does not belong to the certificate of TLS_CERT_FILE"
                            : "cannot load a PEM private key");
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        file_error(err, errlen, "TLS_KEY_FILE", t->key_file,
                   "the key does not belong to the certificate of TLS_CERT_FILE");
        goto fail;
    }
    if (t->client_ca_file[0]) {
        STACK_OF(X509_NAME) * names;
        if (SSL_CTX_load_verify_locations(ctx, t->client_ca_file, NULL) != 1) {
            file_error(err, errlen, "TLS_CLIENT_CA_FILE", t->client_ca_file,
                       "cannot load PEM CA certificates");
            goto fail;
        }
        names = SSL_load_client_CA_file(t->client_ca_file);
        if (names == NULL) {
            file_error(err, errlen, "TLS_CLIENT_CA_FILE", t->client_ca_file,
                       "no CA certificate in it");
            goto fail;
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int ep_tls_server_create(const char *cert_file, const char *key_file, const char *client_ca_file,
                         ep_tls_t **out, char *err, size_t errlen)
{
    ep_tls_t *t;

    *out = NULL;
    if (cert_file == NULL || key_file == NULL || !cert_file[0] || !key_file[0]) {
        snprintf(err, errlen, "%s: must be set together with %s",
                 cert_file && cert_file[0] ? "TLS_KEY_FILE" : "TLS_CERT_FILE",
                 cert_file && cert_file[0] ? "TLS_CERT_FILE" : "TLS_KEY_FILE");
        return EP_ECONFIG;
    }
    t = ep_calloc(1, sizeof(*t));
    snprintf(t->cert_file, sizeof(t->cert_file), "%s", cert_file);
    snprintf(t->key_file, sizeof(t->key_file), "%s", key_file);
    snprintf(t->client_ca_file, sizeof(t->client_ca_file), "%s",
             client_ca_file ? client_ca_file : "");
    t->ctx = server_ctx(t, err, errlen);
    if (t->ctx == NULL) {
        ep_free(t);
        return EP_ECONFIG;
    }
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    return 0;
}

int ep_tls_reload(ep_tls_t *t, char *err, size_t errlen)
{
    SSL_CTX *ctx = server_ctx(t, err, errlen), *old;

    if (ctx == NULL) {
        return EP_ECONFIG;
    }
    pthread_mutex_lock(&t->mu);
    old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* open connections' SSLs keep it alive until they close */
    return 0;
}

/*
 * The server's socket BIO (ep_tls_io_t): recv and send, one syscall each, and
 * the drained flag. OpenSSL's own socket BIO uses read and write, which cost
 * more in the kernel (the file position lock), and says nothing of a short read.
 */
static int io_write(BIO *b, const char *buf, int len)
{
    ep_tls_io_t *io = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    do {
        n = send(io->fd, buf, (size_t)len, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        BIO_set_retry_write(b);
    }
    return (int)n;
}

static int io_read(BIO *b, char *buf, int len)
{
    ep_tls_io_t *io = BIO_get_data(b);
    ssize_t n;

    BIO_clear_retry_flags(b);
    do {
        n = recv(io->fd, buf, (size_t)len, 0);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
        io->drained = n < len;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        io->drained = 1;
        BIO_set_retry_read(b);
    } else {
        io->drained = 0; /* the end of the stream, or an error: to be read, not waited for */
    }
    return (int)n;
}

static long io_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* every write goes out at once */
}

static BIO_METHOD *io_method;
static pthread_once_t io_once = PTHREAD_ONCE_INIT;

static void io_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "ep_tls_io");

    if (m && BIO_meth_set_write(m, io_write) == 1 && BIO_meth_set_read(m, io_read) == 1 &&
        BIO_meth_set_ctrl(m, io_ctrl) == 1) {
        io_method = m;
    } else {
        BIO_meth_free(m);
    }
}

/* Puts ssl on io's socket (the SSL owns the BIO). 0, or -1 with ssl freed. */
static int io_attach(SSL *ssl, ep_tls_io_t *io)
{
    BIO *b;

    pthread_once(&io_once, io_method_init);
    if (ssl == NULL || io_method == NULL || (b = BIO_new(io_method)) == NULL) {
        SSL_free(ssl);
        ERR_clear_error();
        return -1;
    }
    BIO_set_data(b, io);
    BIO_set_init(b, 1);
    io->drained = 0;
    SSL_set_bio(ssl, b, b);
    return 0;
}

SSL *ep_tls_accept(ep_tls_t *t, ep_tls_io_t *io)
{
    SSL *ssl;

    pthread_mutex_lock(&t->mu);
    ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    if (io_attach(ssl, io) != 0) {
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void ep_tls_describe(ep_tls_t *t, char *out, size_t len)
{
    BIO *b = BIO_new(BIO_s_mem());
    X509 *x;
    char *p = NULL;
    long n;

    out[0] = '\0';
    if (b == NULL) {
        return;
    }
    pthread_mutex_lock(&t->mu);
    x = SSL_CTX_get0_certificate(t->ctx);
    if (x) {
        X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_ONELINE);
        BIO_puts(b, ", expires ");
        ASN1_TIME_print(b, X509_get0_notAfter(x));
    }
    pthread_mutex_unlock(&t->mu);
    n = BIO_get_mem_data(b, &p);
    snprintf(out, len, "%.*s", (int)n, p ? p : "");
    BIO_free(b);
}

void ep_tls_destroy(ep_tls_t *t)
{
    if (t == NULL) {
        return;
    }
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    ep_free(t);
}

SSL_CTX *ep_tls_client_ctx(const char *ca_file, const char *cert_file, const char *key_file,
                           char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

    ERR_clear_error();
    if (ctx == NULL || !ctx_common(ctx) ||
        SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof(alpn_http11) - 1) != 0) {
        char why[256];
        ep_tls_last_error(why, sizeof(why));
        snprintf(err, errlen, "TLS: cannot set up an OpenSSL context: %s", why);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (ca_file && ca_file[0]) {
        if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
            file_error(err, errlen, "TLS_CA_FILE", ca_file, "cannot load PEM CA certificates");
            goto fail;
        }
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        file_error(err, errlen, "TLS_CA_FILE", "(system store)", "cannot load the system CAs");
        goto fail;
    }
    if (cert_file && cert_file[0]) {
        if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
            file_error(err, errlen, "TLS_CERT_FILE", cert_file, "cannot load a PEM certificate");
            goto fail;
        }
        if (key_file == NULL || !key_file[0] ||
            SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
            file_error(err, errlen, "TLS_KEY_FILE", key_file ? key_file : "",
                       "cannot load the PEM private key of TLS_CERT_FILE");
            goto fail;
        }
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

SSL *ep_tls_connect(SSL_CTX *ctx, ep_tls_io_t *io, const char *host)
{
    SSL *ssl = SSL_new(ctx);
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;

    if (io_attach(ssl, io) != 0) {
        return NULL;
    }
    if (is_ip) {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
    } else {
        SSL_set_tlsext_host_name(ssl, host); /* SNI is for names only (RFC 6066) */
        SSL_set1_host(ssl, host);
    }
    SSL_set_connect_state(ssl);
    return ssl;
}
