/*
 * Unit tests of ep_tls: errors that name the setting, the file and the reason;
 * a reload that swaps the certificate for new connections only and keeps the
 * old one when the new files are bad; handshakes over a socket pair (TLS 1.2
 * at least, ALPN http/1.1, mutual TLS). Certificates are made here with
 * OpenSSL's API.
 */
#include "base/ep_error.h"
#include "ep_test.h"
#include "http/ep_tls.h"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[64];

static void path(char *out, size_t len, const char *name)
{
    snprintf(out, len, "%s/%s", dir, name);
}

static void add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *e;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    EP_ASSERT(e != NULL);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* A self-signed P-256 certificate for localhost / 127.0.0.1: <name>.pem and <name>.key. */
static void make_cert(const char *name)
{
    static long serial = 1;
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_NAME *n;
    char p[128], file[64];
    FILE *f;

    EP_ASSERT(k != NULL && x != NULL);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 3600);
    X509_set_pubkey(x, k);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(x, n);
    add_ext(x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1");
    EP_ASSERT(X509_sign(x, k, EVP_sha256()) > 0);
    snprintf(file, sizeof(file), "%s.pem", name);
    path(p, sizeof(p), file);
    f = fopen(p, "w");
    EP_ASSERT(f != NULL && PEM_write_X509(f, x) == 1);
    fclose(f);
    snprintf(file, sizeof(file), "%s.key", name);
    path(p, sizeof(p), file);
    f = fopen(p, "w");
    EP_ASSERT(f != NULL && PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) == 1);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void write_file(const char *name, const char *text)
{
    char p[128];
    FILE *f;

    path(p, sizeof(p), name);
    f = fopen(p, "w");
    EP_ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

static void copy_file(const char *from, const char *to)
{
    char a[128], b[128], buf[8192];
    FILE *in, *out;
    size_t n;

    path(a, sizeof(a), from);
    path(b, sizeof(b), to);
    in = fopen(a, "r");
    out = fopen(b, "w");
    EP_ASSERT(in != NULL && out != NULL);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0) {
        fwrite(buf, 1, n, out);
    }
    fclose(in);
    fclose(out);
}

/* Removes the directory and what the tests wrote into it. */
static void cleanup(void)
{
    static const char *const files[] = {"a.pem",    "a.key",    "b.pem",   "b.key",
                                        "junk.pem", "live.pem", "live.key"};
    char p[128];

    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        path(p, sizeof(p), files[i]);
        unlink(p);
    }
    rmdir(dir);
}

static void setup(void)
{
    if (dir[0]) {
        return;
    }
    snprintf(dir, sizeof(dir), "/tmp/ep-test-tls-XXXXXX");
    EP_ASSERT(mkdtemp(dir) != NULL);
    atexit(cleanup);
    make_cert("a");
    make_cert("b");
    write_file("junk.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n");
}

static int create(const char *cert, const char *key, const char *client_ca, ep_tls_t **t, char *err,
                  size_t errlen)
{
    char c[128], k[128], ca[128];

    path(c, sizeof(c), cert);
    path(k, sizeof(k), key);
    if (client_ca) {
        path(ca, sizeof(ca), client_ca);
    }
    return ep_tls_server_create(cert[0] ? c : "", key[0] ? k : "", client_ca ? ca : NULL, t, err,
                                errlen);
}

static void test_load_errors_name_setting_file_and_reason(void)
{
    ep_tls_t *t = NULL;
    char err[600];

    setup();
    EP_ASSERT_EQ(create("missing.pem", "a.key", NULL, &t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(t == NULL);
    EP_ASSERT(strncmp(err, "TLS_CERT_FILE: ", 15) == 0 && strstr(err, "/missing.pem: ") != NULL);
    EP_ASSERT(strstr(err, "No such file") != NULL);

    EP_ASSERT_EQ(create("junk.pem", "a.key", NULL, &t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_CERT_FILE: ", 15) == 0 && strstr(err, "/junk.pem: ") != NULL);
    EP_ASSERT(strstr(err, "(OpenSSL: ") != NULL);

    EP_ASSERT_EQ(create("a.pem", "junk.pem", NULL, &t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_KEY_FILE: ", 14) == 0 && strstr(err, "/junk.pem: ") != NULL);

    EP_ASSERT_EQ(create("a.pem", "b.key", NULL, &t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_KEY_FILE: ", 14) == 0 && strstr(err, "/b.key: ") != NULL);
    EP_ASSERT(strstr(err, "does not belong") != NULL);

    EP_ASSERT_EQ(create("a.pem", "", NULL, &t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strstr(err, "TLS_KEY_FILE: must be set") != NULL);

    EP_ASSERT_EQ(create("a.pem", "a.key", "junk.pem", &t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_CLIENT_CA_FILE: ", 20) == 0);

    EP_ASSERT(ep_tls_client_ctx("/nonexistent/ca.pem", NULL, NULL, err, sizeof(err)) == NULL);
    EP_ASSERT(strncmp(err, "TLS_CA_FILE: /nonexistent/ca.pem: ", 34) == 0);

    EP_ASSERT_EQ(create("a.pem", "a.key", NULL, &t, err, sizeof(err)), 0);
    ep_tls_destroy(t);
}

/* Drives both ends of a handshake over non-blocking sockets. 1: both done; 0: one failed. */
static int handshake(SSL *srv, SSL *cli)
{
    int s_done = 0, c_done = 0;

    for (int i = 0; i < 1000 && !(s_done && c_done); i++) {
        if (!c_done) {
            int r = SSL_do_handshake(cli), e = SSL_get_error(cli, r);
            if (r == 1) {
                c_done = 1;
            } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                return 0;
            }
        }
        if (!s_done) {
            int r = SSL_do_handshake(srv), e = SSL_get_error(srv, r);
            if (r == 1) {
                s_done = 1;
            } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                ERR_clear_error();
                return 0;
            }
        }
    }
    return s_done && c_done;
}

typedef struct pair_s {
    int fd[2];
    ep_tls_io_t io, cio;
    SSL *srv, *cli;
} pair_t;

static void pair_open(pair_t *p, ep_tls_t *t, SSL_CTX *cctx)
{
    EP_ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->fd), 0);
    p->io.fd = p->fd[0];
    p->srv = ep_tls_accept(t, &p->io);
    p->cio.fd = p->fd[1];
    p->cli = ep_tls_connect(cctx, &p->cio, "localhost");
    EP_ASSERT(p->srv != NULL && p->cli != NULL);
}

static void pair_close(pair_t *p)
{
    SSL_free(p->srv);
    SSL_free(p->cli);
    close(p->fd[0]);
    close(p->fd[1]);
}

/* The CN of the certificate the server side of p presents. */
static void served_cn(SSL *srv, char *out, size_t len)
{
    X509 *x = SSL_get_certificate(srv);

    out[0] = '\0';
    EP_ASSERT(x != NULL);
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, out, (int)len);
}

static void test_handshake_protocol_floor_and_alpn(void)
{
    ep_tls_t *t;
    SSL_CTX *cctx, *old;
    char err[600], ca[128];
    const unsigned char *alpn;
    unsigned alpn_len;
    pair_t p;

    setup();
    EP_ASSERT_EQ(create("a.pem", "a.key", NULL, &t, err, sizeof(err)), 0);
    path(ca, sizeof(ca), "a.pem");
    cctx = ep_tls_client_ctx(ca, NULL, NULL, err, sizeof(err));
    EP_ASSERT(cctx != NULL);
    pair_open(&p, t, cctx);
    EP_ASSERT(handshake(p.srv, p.cli));
    EP_ASSERT(SSL_version(p.srv) >= TLS1_2_VERSION);
    SSL_get0_alpn_selected(p.srv, &alpn, &alpn_len);
    EP_ASSERT(alpn_len == 8 && memcmp(alpn, "http/1.1", 8) == 0);
    pair_close(&p);

    /* A client that offers TLS 1.1 at most is refused. */
    old = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_security_level(old, 0);
    SSL_CTX_set_min_proto_version(old, TLS1_VERSION);
    SSL_CTX_set_max_proto_version(old, TLS1_1_VERSION);
    SSL_CTX_set_verify(old, SSL_VERIFY_NONE, NULL);
    pair_open(&p, t, old);
    EP_ASSERT(!handshake(p.srv, p.cli));
    pair_close(&p);

    /* A client verifying against another CA refuses the server. */
    SSL_CTX_free(cctx);
    path(ca, sizeof(ca), "b.pem");
    cctx = ep_tls_client_ctx(ca, NULL, NULL, err, sizeof(err));
    pair_open(&p, t, cctx);
    EP_ASSERT(!handshake(p.srv, p.cli));
    pair_close(&p);
    SSL_CTX_free(old);
    SSL_CTX_free(cctx);
    ep_tls_destroy(t);
}

static void test_mutual_tls_needs_a_client_certificate(void)
{
    ep_tls_t *t;
    SSL_CTX *anon, *with_a, *with_b;
    char err[600], ca[128], cert[128], key[128];
    pair_t p;

    setup();
    /* Clients must present a certificate signed by a (self-signed here). */
    EP_ASSERT_EQ(create("a.pem", "a.key", "a.pem", &t, err, sizeof(err)), 0);
    path(ca, sizeof(ca), "a.pem");
    anon = ep_tls_client_ctx(ca, NULL, NULL, err, sizeof(err));
    path(cert, sizeof(cert), "a.pem");
    path(key, sizeof(key), "a.key");
    with_a = ep_tls_client_ctx(ca, cert, key, err, sizeof(err));
    path(cert, sizeof(cert), "b.pem");
    path(key, sizeof(key), "b.key");
    with_b = ep_tls_client_ctx(ca, cert, key, err, sizeof(err));
    EP_ASSERT(anon && with_a && with_b);

    pair_open(&p, t, with_a);
    EP_ASSERT(handshake(p.srv, p.cli));
    EP_ASSERT(SSL_get0_peer_certificate(p.srv) != NULL);
    pair_close(&p);

    /* TLS 1.3: the client may finish first; the server refuses. */
    pair_open(&p, t, anon);
    EP_ASSERT(!handshake(p.srv, p.cli));
    pair_close(&p);
    pair_open(&p, t, with_b);
    EP_ASSERT(!handshake(p.srv, p.cli));
    pair_close(&p);

    SSL_CTX_free(anon);
    SSL_CTX_free(with_a);
    SSL_CTX_free(with_b);
    ep_tls_destroy(t);
}

static void test_reload_swaps_for_new_connections_only(void)
{
    ep_tls_t *t;
    char err[600], what[300], cn[64];
    SSL *before, *after;
    ep_tls_io_t io0, io1;
    int fd[2];

    setup();
    copy_file("a.pem", "live.pem");
    copy_file("a.key", "live.key");
    EP_ASSERT_EQ(create("live.pem", "live.key", NULL, &t, err, sizeof(err)), 0);
    ep_tls_describe(t, what, sizeof(what));
    EP_ASSERT(strstr(what, "CN = a") != NULL && strstr(what, "expires") != NULL);
    EP_ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fd), 0);
    io0.fd = fd[0];
    io1.fd = fd[1];
    before = ep_tls_accept(t, &io0);

    copy_file("b.pem", "live.pem");
    copy_file("b.key", "live.key");
    EP_ASSERT_EQ(ep_tls_reload(t, err, sizeof(err)), 0);
    ep_tls_describe(t, what, sizeof(what));
    EP_ASSERT(strstr(what, "CN = b") != NULL);
    after = ep_tls_accept(t, &io1);
    served_cn(after, cn, sizeof(cn));
    EP_ASSERT_STR_EQ(cn, "b");
    /* The connection made before keeps its context (freed with it, not before). */
    served_cn(before, cn, sizeof(cn));
    EP_ASSERT_STR_EQ(cn, "a");
    SSL_free(after);

    /* Half-written files: the reload fails, the current certificate stays. */
    write_file("live.pem", "-----BEGIN CERTIFICATE-----\n");
    EP_ASSERT_EQ(ep_tls_reload(t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_CERT_FILE: ", 15) == 0);
    copy_file("a.pem", "live.pem"); /* a's certificate, b's key */
    EP_ASSERT_EQ(ep_tls_reload(t, err, sizeof(err)), EP_ECONFIG);
    EP_ASSERT(strncmp(err, "TLS_KEY_FILE: ", 14) == 0);
    ep_tls_describe(t, what, sizeof(what));
    EP_ASSERT(strstr(what, "CN = b") != NULL);
    after = ep_tls_accept(t, &io1);
    served_cn(after, cn, sizeof(cn));
    EP_ASSERT_STR_EQ(cn, "b");
    SSL_free(after);

    ep_tls_destroy(t);
    served_cn(before, cn, sizeof(cn)); /* still valid after the server context went */
    EP_ASSERT_STR_EQ(cn, "a");
    SSL_free(before);
    close(fd[0]);
    close(fd[1]);
}

EP_TEST_LIST = {
    EP_TEST(test_load_errors_name_setting_file_and_reason),
    EP_TEST(test_handshake_protocol_floor_and_alpn),
    EP_TEST(test_mutual_tls_needs_a_client_certificate),
    EP_TEST(test_reload_swaps_for_new_connections_only),
    EP_TEST_END,
};
EP_TEST_MAIN()
