#include "http/ep_http_client.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "base/ep_list.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "http/ep_http_curl.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/*
 * One thread owns the CURLM handle and every easy handle: it adds new requests,
 * drives transfers with curl_multi_perform and sleeps in curl_multi_poll. Other
 * threads only touch the submission list (under mu) and call curl_multi_wakeup,
 * which libcurl documents as safe from any thread. Connections live in the multi
 * handle's connection cache, so consecutive requests to the same host reuse them.
 */

#define MAX_CONNECT_MS   1000 /* connect timeout cap */
#define MAX_FREE_EASY    64   /* idle easy handles kept for reuse */
#define POLL_IDLE_MS     1000 /* poll wait when nothing is scheduled */
#define HEADER_VALUE_MAX 128  /* bytes kept of Content-Type / Retry-After */
#define MAX_HEADER_LINES 8    /* request header lines: Expect, Content-Type, extras */
#define PASS_MAX         384  /* bytes kept of the headers a proxy passes on (pass_headers) */

typedef struct req_s req_t;
struct req_s {
    req_t *next;        /* submission list, then the active list */
    req_t *prev;        /* active list only */
    CURL *easy;         /* set once started on the client thread */
    const char *method; /* method, url, header lines and body live in mem[] */
    const char *url;
    const char *body; /* copy of the request body, NULL when none */
    size_t body_len;
    size_t max_response; /* response body cap in bytes */
    int timeout_ms;
    ep_http_done_cb cb;
    void *arg;
    /*
     * The header list handed to libcurl, built in place (libcurl only reads it):
     * no allocation per header line. hdr[0..n_hdr) point into mem[].
     */
    struct curl_slist hdr[MAX_HEADER_LINES];
    int n_hdr;
    ep_buf_t resp; /* response body */
    int too_large; /* response body exceeded max_response */
    char resp_ctype[HEADER_VALUE_MAX];
    char resp_retry[HEADER_VALUE_MAX];
    char resp_pass[PASS_MAX]; /* WWW-Authenticate and RateLimit-* lines, "Name: value\n" */
    char errbuf[CURL_ERROR_SIZE];
    const void *ctx; /* the caller's context copy (start of mem), or NULL */
    /* One allocation: the context, method, url, header lines, body. */
    _Alignas(16) char mem[];
};

struct ep_http_client_s {
    CURLM *multi;
    pthread_t thread;
    pthread_mutex_t mu;
    req_t *sub_head; /* submitted, not yet started (under mu) */
    req_t *sub_tail;
    int closing; /* under mu: destroy began, no new requests */
    /* Owned by the client thread only. */
    req_t *active; /* requests added to the multi handle */
    CURL *free_easy[MAX_FREE_EASY];
    int n_free;
    /* https:// (ep_http_client_set_tls): set before the first request. "" = none. */
    char tls_ca[512], tls_cert[512], tls_key[512];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc;

static void curl_global_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : EP_EIO;
}

/* ------------------------------------------------------------ request lifecycle */

static void req_free(req_t *r)
{
    ep_buf_close(&r->resp);
    ep_free(r);
}

/* Runs the user's callback once with the outcome, then frees the request. */
static void req_complete(req_t *r, int status, int err, const char *error, int sent)
{
    ep_http_response_t res;

    res.status = status;
    res.err = err;
    res.sent = status != 0 || sent;
    res.error = error ? error : "";
    res.body = r->resp.data ? r->resp.data : "";
    res.body_len = r->resp.len;
    res.content_type = r->resp_ctype;
    res.ctx = r->ctx;
    res.retry_after = r->resp_retry;
    res.pass_headers = r->resp_pass;
    r->cb(r->arg, &res);
    req_free(r);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    req_t *r = userdata;
    size_t n = size * nmemb;

    if (r->resp.len + n > r->max_response) {
        r->too_large = 1;
        return 0; /* makes libcurl fail the transfer with CURLE_WRITE_ERROR */
    }
    ep_buf_append(&r->resp, ptr, n);
    return n;
}

/* Copies a header value without surrounding blanks or the trailing CRLF. */
static void copy_header_value(char *dst, size_t cap, const char *v, size_t n)
{
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) {
        n--;
    }
    if (n >= cap) {
        n = cap - 1;
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    req_t *r = userdata;
    size_t n = size * nitems;
    static const char ct[] = "content-type:";
    static const char ra[] = "retry-after:";

    /* A new status line starts a new header block (e.g. after a 1xx): forget the old one. */
    if (n >= EP_STRLEN("HTTP/") && memcmp(buf, EP_STRLIT("HTTP/")) == 0) {
        r->resp_ctype[0] = '\0';
        r->resp_retry[0] = '\0';
        r->resp_pass[0] = '\0';
    } else if ((n >= EP_STRLEN("www-authenticate:") &&
                strncasecmp(buf, EP_STRLIT("www-authenticate:")) == 0) ||
               (n >= EP_STRLEN("ratelimit-") && strncasecmp(buf, EP_STRLIT("ratelimit-")) == 0)) {
        /* Access-control answers a proxy passes on whole (a line that does not fit is left out). */
        size_t have = strlen(r->resp_pass), len = n;
        while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == '\n')) {
            len--;
        }
        if (have + len + 2 <= sizeof(r->resp_pass)) {
            memcpy(r->resp_pass + have, buf, len);
            r->resp_pass[have + len] = '\n';
            r->resp_pass[have + len + 1] = '\0';
        }
    } else if (n >= sizeof(ct) - 1 && strncasecmp(buf, ct, sizeof(ct) - 1) == 0) {
        copy_header_value(r->resp_ctype, sizeof(r->resp_ctype), buf + sizeof(ct) - 1,
                          n - (sizeof(ct) - 1));
    } else if (n >= sizeof(ra) - 1 && strncasecmp(buf, ra, sizeof(ra) - 1) == 0) {
        copy_header_value(r->resp_retry, sizeof(r->resp_retry), buf + sizeof(ra) - 1,
                          n - (sizeof(ra) - 1));
    }
    return n;
}

static CURL *easy_get(ep_http_client_t *c)
{
    CURL *e;

    if (c->n_free > 0) {
        e = c->free_easy[--c->n_free];
        curl_easy_reset(e);
        return e;
    }
    return curl_easy_init();
}

static void easy_put(ep_http_client_t *c, CURL *e)
{
    if (c->n_free < MAX_FREE_EASY) {
        c->free_easy[c->n_free++] = e;
    } else {
        curl_easy_cleanup(e);
    }
}

static void active_link(ep_http_client_t *c, req_t *r)
{
    r->prev = NULL;
    r->next = c->active;
    if (c->active) {
        c->active->prev = r;
    }
    c->active = r;
}

static void active_unlink(ep_http_client_t *c, req_t *r)
{
    EP_DLIST_UNLINK(c->active, r);
    r->next = r->prev = NULL;
}

/* Configures an easy handle for r and adds it to the multi handle (client thread). */
static void req_start(ep_http_client_t *c, req_t *r)
{
    CURL *e = easy_get(c);
    long connect_ms = r->timeout_ms < MAX_CONNECT_MS ? r->timeout_ms : MAX_CONNECT_MS;

    if (e == NULL) {
        req_complete(r, 0, EP_EUNAVAIL, "curl_easy_init failed", 0);
        return;
    }
    r->easy = e;
    r->errbuf[0] = '\0';

    curl_easy_setopt(e, CURLOPT_URL, r->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->hdr);
    /* Service-to-service hops go direct; https:// is verified against TLS_CA_FILE. */
    ep_http_curl_setup(e, (long)r->timeout_ms, connect_ms, r->errbuf, on_body, r,
                       c->tls_ca[0] ? c->tls_ca : NULL, c->tls_cert[0] ? c->tls_cert : NULL,
                       c->tls_key);

    if (strcmp(r->method, "GET") == 0) {
        curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(r->method, "HEAD") == 0) {
        curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    } else {
        if (strcmp(r->method, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POST, 1L);
        } else {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
        }
        if (r->body || strcmp(r->method, "POST") == 0) {
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body ? r->body : "");
        }
    }

    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        r->easy = NULL;
        easy_put(c, e);
        req_complete(r, 0, EP_EUNAVAIL, "curl_multi_add_handle failed", 0);
        return;
    }
    active_link(c, r);
}

/* Maps a finished transfer to the response and completes it (client thread). */
static void req_finish(ep_http_client_t *c, req_t *r, CURLcode code)
{
    long status = 0;
    long os_errno = 0;
    long sent_bytes = 0;
    int err = 0;
    const char *error = NULL;

    active_unlink(c, r);
    curl_multi_remove_handle(c->multi, r->easy);
    if (code == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    } else {
        curl_easy_getinfo(r->easy, CURLINFO_OS_ERRNO, &os_errno);
        /* Bytes of request head sent: 0 means the server cannot have seen the request. */
        curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent_bytes);
        error = r->errbuf[0] ? r->errbuf : curl_easy_strerror(code);
        if (code == CURLE_OPERATION_TIMEDOUT) {
            err = EP_ETIMEDOUT;
        } else if (code == CURLE_COULDNT_CONNECT && os_errno == ECONNREFUSED) {
            err = EP_ECONNREFUSED;
        } else if (code == CURLE_WRITE_ERROR && r->too_large) {
            err = EP_E2BIG;
            snprintf(r->errbuf, sizeof(r->errbuf), "response body exceeds %zu bytes",
                     r->max_response);
            error = r->errbuf;
        } else {
            err = EP_EUNAVAIL;
        }
        /* A partial body of a failed transfer is meaningless to callers. */
        ep_buf_reset(&r->resp);
        r->resp_ctype[0] = '\0';
        r->resp_retry[0] = '\0';
    }
    easy_put(c, r->easy);
    r->easy = NULL;
    req_complete(r, (int)status, err, error, sent_bytes > 0);
}

/* Fails every request still active or waiting for submission (client thread, at exit). */
static void fail_all(ep_http_client_t *c)
{
    req_t *r, *next;

    while ((r = c->active) != NULL) {
        active_unlink(c, r);
        curl_multi_remove_handle(c->multi, r->easy);
        easy_put(c, r->easy);
        r->easy = NULL;
        ep_buf_reset(&r->resp);
        r->resp_ctype[0] = '\0';
        r->resp_retry[0] = '\0';
        req_complete(r, 0, EP_ECLOSED, "http client closed", 1);
    }
    pthread_mutex_lock(&c->mu);
    r = c->sub_head;
    c->sub_head = c->sub_tail = NULL;
    pthread_mutex_unlock(&c->mu);
    for (; r; r = next) {
        next = r->next;
        req_complete(r, 0, EP_ECLOSED, "http client closed", 0);
    }
}

static void *client_main(void *arg)
{
    ep_http_client_t *c = arg;

    for (;;) {
        req_t *r, *next;
        CURLMsg *msg;
        int closing, running = 0, left;

        pthread_mutex_lock(&c->mu);
        closing = c->closing;
        r = closing ? NULL : c->sub_head;
        if (!closing) {
            c->sub_head = c->sub_tail = NULL;
        }
        pthread_mutex_unlock(&c->mu);
        if (closing) {
            break;
        }
        for (; r; r = next) {
            next = r->next;
            r->next = NULL;
            req_start(c, r);
        }

        curl_multi_perform(c->multi, &running);
        while ((msg = curl_multi_info_read(c->multi, &left)) != NULL) {
            if (msg->msg == CURLMSG_DONE) {
                CURLcode code = msg->data.result;
                req_t *done = NULL;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&done);
                req_finish(c, done, code);
            }
        }
        /* Callbacks may have submitted more work; curl_multi_wakeup makes this return. */
        curl_multi_poll(c->multi, NULL, 0, POLL_IDLE_MS, NULL);
    }
    fail_all(c);
    return NULL;
}

/* ------------------------------------------------------------ public API */

/*
 * Creates a client with its own thread and connection cache. max_per_host (<= 0
 * means 8) caps parallel connections per host; further requests wait inside
 * libcurl for a free connection. Returns 0 and *out (caller destroys), or EP_EIO
 * when libcurl cannot be initialised. Thread-safe.
 */
int ep_http_client_create(int max_per_host, ep_http_client_t **out)
{
    ep_http_client_t *c;
    long cache;

    *out = NULL;
    pthread_once(&curl_once, curl_global_once);
    if (curl_init_rc != 0) {
        return curl_init_rc;
    }
    if (max_per_host <= 0) {
        max_per_host = 8;
    }
    c = ep_calloc(1, sizeof(*c));
    c->multi = curl_multi_init();
    if (c->multi == NULL) {
        goto err;
    }
    /* Room to keep every host's connections alive between bursts. */
    cache = (long)max_per_host * 8 < 64 ? 64 : (long)max_per_host * 8;
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)max_per_host);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, cache);
    pthread_mutex_init(&c->mu, NULL);
    if (pthread_create(&c->thread, NULL, client_main, c) != 0) {
        pthread_mutex_destroy(&c->mu);
        curl_multi_cleanup(c->multi);
        goto err;
    }
    *out = c;
    return 0;

err:
    ep_free(c);
    return EP_EIO;
}

void ep_http_client_set_tls(ep_http_client_t *c, const char *ca_file, const char *cert_file,
                            const char *key_file)
{
    snprintf(c->tls_ca, sizeof(c->tls_ca), "%s", ca_file ? ca_file : "");
    snprintf(c->tls_cert, sizeof(c->tls_cert), "%s", cert_file ? cert_file : "");
    snprintf(c->tls_key, sizeof(c->tls_key), "%s", key_file ? key_file : "");
}

/*
 * Queues a request for the client thread. Copies method, url, content_type and
 * body. Returns 0 (cb runs exactly once, on the client thread) or EP_EINVAL /
 * EP_ECLOSED (cb never runs). Thread-safe; may be called from a callback.
 */
int ep_http_client_request(ep_http_client_t *c, const char *method, const char *url,
                           const char *content_type, const void *body, size_t body_len,
                           int timeout_ms, ep_http_done_cb cb, void *arg)
{
    ep_http_request_opts_t o = {.content_type = content_type};

    return ep_http_client_request_ex(c, method, url, &o, body, body_len, timeout_ms, cb, arg);
}

/* Appends one header line "<a><b>" to r (in mem at *at); returns 0 or EP_EINVAL. */
static int add_line(req_t *r, size_t *at, const char *a, const char *b, size_t blen)
{
    size_t alen = strlen(a);
    char *dst = r->mem + *at;

    /* A CR or LF inside a value would start a new header line on the wire. */
    if (r->n_hdr == MAX_HEADER_LINES || memchr(b, '\r', blen) || memchr(b, '\n', blen)) {
        return EP_EINVAL;
    }
    memcpy(dst, a, alen);
    memcpy(dst + alen, b, blen);
    dst[alen + blen] = '\0';
    *at += alen + blen + 1;
    r->hdr[r->n_hdr].data = dst;
    r->hdr[r->n_hdr].next = NULL;
    if (r->n_hdr > 0) {
        r->hdr[r->n_hdr - 1].next = &r->hdr[r->n_hdr];
    }
    r->n_hdr++;
    return 0;
}

/*
 * ep_http_client_request with options: the Content-Type is passed whole (never
 * cut), extra header lines, a response cap. One allocation per request.
 */
int ep_http_client_request_ex(ep_http_client_t *c, const char *method, const char *url,
                              const ep_http_request_opts_t *opts, const void *body, size_t body_len,
                              int timeout_ms, ep_http_done_cb cb, void *arg)
{
    static const ep_http_request_opts_t none = {0};
    const char *ct, *ce, *hs;
    size_t mlen, ulen, clen, elen, hlen, xlen, at = 0;
    req_t *r;

    if (c == NULL || method == NULL || url == NULL || cb == NULL) {
        return EP_EINVAL;
    }
    opts = opts ? opts : &none;
    ct = opts->content_type;
    ce = opts->content_encoding;
    hs = opts->headers;
    mlen = strlen(method);
    ulen = strlen(url);
    clen = ct ? strlen(ct) : 0;
    elen = ce ? strlen(ce) : 0;
    hlen = hs ? strlen(hs) : 0;
    xlen = opts->ctx ? (opts->ctx_len + 15) & ~(size_t)15 : 0;
    /*
     * mem: ctx, method, url, "Expect:", "Content-Type: <ct>", "Content-Encoding: <ce>",
     * the extra lines, body (NULs between).
     */
    r = ep_calloc(1, sizeof(*r) + xlen + mlen + ulen + clen + elen + hlen + body_len + 96);
    if (opts->ctx) {
        memcpy(r->mem, opts->ctx, opts->ctx_len);
        r->ctx = r->mem;
    }
    at = xlen;
    memcpy(r->mem + at, method, mlen + 1);
    r->method = r->mem + at;
    at += mlen + 1;
    memcpy(r->mem + at, url, ulen + 1);
    r->url = r->mem + at;
    at += ulen + 1;
    /* No "Expect: 100-continue" round trip before a POST body. */
    add_line(r, &at, "Expect:", "", 0);
    if (ct) {
        if (add_line(r, &at, "Content-Type: ", ct, clen) != 0) {
            goto invalid;
        }
    } else if (body) {
        /* Without this libcurl would label a POST body as a form. */
        add_line(r, &at, "Content-Type:", "", 0);
    }
    if (ce && add_line(r, &at, "Content-Encoding: ", ce, elen) != 0) {
        goto invalid;
    }
    while (hs && *hs) {
        const char *nl = strchr(hs, '\n');
        size_t n = nl ? (size_t)(nl - hs) : strlen(hs);
        if (n > 0 && add_line(r, &at, "", hs, n) != 0) {
            goto invalid;
        }
        hs = nl ? nl + 1 : hs + n;
    }
    if (body) {
        char *dst = r->mem + at;
        memcpy(dst, body, body_len);
        r->body = dst;
        r->body_len = body_len;
    }
    r->max_response = opts->max_response ? opts->max_response : EP_HTTP_CLIENT_MAX_RESPONSE;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    r->cb = cb;
    r->arg = arg;
    ep_buf_init(&r->resp);

    pthread_mutex_lock(&c->mu);
    if (c->closing) {
        pthread_mutex_unlock(&c->mu);
        req_free(r);
        return EP_ECLOSED;
    }
    if (c->sub_tail) {
        c->sub_tail->next = r;
    } else {
        c->sub_head = r;
    }
    c->sub_tail = r;
    /*
     * Wake the thread while still holding mu: once destroy has set closing under
     * mu it may free the multi handle, so nobody may touch it after that.
     */
    curl_multi_wakeup(c->multi);
    pthread_mutex_unlock(&c->mu);
    return 0;

invalid:
    req_free(r);
    return EP_EINVAL;
}

typedef struct sync_wait_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    int status;
    int err;
    char *body;
} sync_wait_t;

static void on_sync_done(void *arg, const ep_http_response_t *res)
{
    sync_wait_t *w = arg;
    char *body = res->err == 0 ? ep_strndup(res->body, res->body_len) : NULL;

    pthread_mutex_lock(&w->mu);
    w->status = res->status;
    w->err = res->err;
    w->body = body;
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/*
 * Runs one request and blocks until it completes. Returns 0 when a response
 * arrived (any status), else the transport error (EP_ETIMEDOUT, ...). *body_out
 * (may be NULL) receives a new string the caller frees, or NULL on error.
 * Thread-safe, but must not be called from a completion callback (it would wait
 * for itself).
 */
int ep_http_client_request_sync(ep_http_client_t *c, const char *method, const char *url,
                                const char *content_type, const void *body, size_t body_len,
                                int timeout_ms, int *status, char **body_out)
{
    ep_http_request_opts_t o = {.content_type = content_type};

    return ep_http_client_request_sync_ex(c, method, url, &o, body, body_len, timeout_ms, status,
                                          body_out);
}

int ep_http_client_request_sync_ex(ep_http_client_t *c, const char *method, const char *url,
                                   const ep_http_request_opts_t *opts, const void *body,
                                   size_t body_len, int timeout_ms, int *status, char **body_out)
{
    sync_wait_t w;
    int rc;

    memset(&w, 0, sizeof(w));
    if (status) {
        *status = 0;
    }
    if (body_out) {
        *body_out = NULL;
    }
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    rc = ep_http_client_request_ex(c, method, url, opts, body, body_len, timeout_ms, on_sync_done,
                                   &w);
    if (rc == 0) {
        pthread_mutex_lock(&w.mu);
        while (!w.done) {
            pthread_cond_wait(&w.cv, &w.mu);
        }
        pthread_mutex_unlock(&w.mu);
        rc = w.err;
        if (status) {
            *status = w.status;
        }
        if (body_out) {
            *body_out = w.body;
        } else {
            ep_free(w.body);
        }
    }
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    return rc;
}

/*
 * Refuses new requests, stops the thread and completes every unfinished request
 * with EP_ECLOSED before returning. Accepts NULL. Must not be called from a
 * completion callback.
 */
void ep_http_client_destroy(ep_http_client_t *c)
{
    if (c == NULL) {
        return;
    }
    pthread_mutex_lock(&c->mu);
    c->closing = 1;
    curl_multi_wakeup(c->multi);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->thread, NULL);
    while (c->n_free > 0) {
        curl_easy_cleanup(c->free_easy[--c->n_free]);
    }
    curl_multi_cleanup(c->multi);
    pthread_mutex_destroy(&c->mu);
    ep_free(c);
}
