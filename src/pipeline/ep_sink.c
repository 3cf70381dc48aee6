/*
 * The processed-event sink (PROCESSOR_SINK): "none", "stdout", "file:PATH" or a
 * webhook ("http://...", "https://...", in ep_sink_http.c).
 *
 * A batch is formatted into the caller's scratch buffer outside any lock, then
 * written with one write(2) under the sink's mutex, so lines from concurrent
 * workers never interleave and the lock is taken once per batch. A webhook
 * needs no lock: each worker POSTs its own buffer on its own connection.
 */
#include "pipeline/ep_sink.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"
#include "pipeline/ep_sink_http.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef enum { SINK_NONE = 0, SINK_STDOUT, SINK_FILE, SINK_HTTP } sink_kind_t;

static const char *const kind_names[] = {"none", "stdout", "file", "http"};

struct ep_sink_s {
    sink_kind_t kind;
    int fd; /* -1 for none */
    pthread_mutex_t lock;
    char *path;            /* file sinks only */
    ep__sink_http_t *http; /* webhooks only */
};

struct ep_sink_worker_s {
    ep_buf_t scratch;           /* the batch's NDJSON lines */
    size_t *ends;               /* webhooks: end offset of each event's line in scratch */
    size_t ends_cap;            /* entries ends holds (grows to the largest batch, then stays) */
    ep__sink_http_conn_t *conn; /* webhooks: this worker's keep-alive connection */
};

/* Writes all of buf, retrying short writes and EINTR. Returns 0 or a negative errno. */
static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return EP__ERR(errno);
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/*
 * Opens the sink named by spec ("none", "stdout", "file:PATH", "http://...",
 * "https://...") with opts (NULL: defaults). Returns 0 and *out (free with
 * ep_sink_destroy), EP_EINVAL for an unknown spec or a bad URL, or EP_EIO when
 * the file cannot be opened, with a message in err. Thread-safe.
 */
int ep_sink_create_ex(const char *spec, const ep_sink_opts_t *opts, ep_sink_t **out, char *err,
                      size_t errlen)
{
    ep_sink_t *s;
    int rc;

    *out = NULL;
    if (spec == NULL) {
        spec = "";
    }
    s = ep_calloc(1, sizeof(*s));
    s->fd = -1;
    if (strcmp(spec, "none") == 0) {
        s->kind = SINK_NONE;
    } else if (strcmp(spec, "stdout") == 0) {
        s->kind = SINK_STDOUT;
        s->fd = STDOUT_FILENO;
    } else if (strncmp(spec, EP_STRLIT("file:")) == 0 && spec[EP_STRLEN("file:")] != '\0') {
        s->kind = SINK_FILE;
        s->path = ep_strdup(spec + 5);
        s->fd = open(s->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (s->fd < 0) {
            snprintf(err, errlen, "PROCESSOR_SINK: cannot open '%s': %s", s->path, strerror(errno));
            ep_free(s->path);
            ep_free(s);
            return EP_EIO;
        }
    } else if (strncmp(spec, EP_STRLIT("http://")) == 0 ||
               strncmp(spec, EP_STRLIT("https://")) == 0) {
        s->kind = SINK_HTTP;
        if ((rc = ep__sink_http_create(spec, opts, &s->http, err, errlen)) != 0) {
            ep_free(s);
            return rc;
        }
    } else {
        snprintf(err, errlen,
                 "PROCESSOR_SINK: expected none, stdout, file:PATH or an http(s):// URL "
                 "(got '%s')",
                 spec);
        ep_free(s);
        return EP_EINVAL;
    }
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
}

/* ep_sink_create_ex with the default options. */
int ep_sink_create(const char *spec, ep_sink_t **out, char *err, size_t errlen)
{
    return ep_sink_create_ex(spec, NULL, out, err, errlen);
}

/*
 * Writes evs[0..n) as NDJSON lines in one write(2). scratch is the caller's
 * buffer, reset and reused. Returns 0 or EP_EIO (the batch may then be partly
 * written). The events stay the caller's. Thread-safe; a NULL sink discards.
 */
int ep_sink_write(ep_sink_t *s, ep_event_t *const *evs, size_t n, ep_buf_t *scratch)
{
    int rc;

    if (s == NULL || s->kind == SINK_NONE || n == 0) {
        return 0;
    }
    if (s->kind == SINK_HTTP) {
        /* For occasional callers (tests, tools): the workers keep their connection. */
        ep_sink_worker_t *w = ep_sink_worker_create(s);
        uint8_t *result = ep_malloc(n);
        size_t ok = ep_sink_deliver(s, w, evs, n, result);

        ep_free(result);
        ep_sink_worker_destroy(w);
        return ok == n ? 0 : EP_EIO;
    }
    ep_buf_reset(scratch);
    for (size_t i = 0; i < n; i++) {
        ep_event_to_sink_line(evs[i], scratch);
    }
    pthread_mutex_lock(&s->lock);
    rc = write_all(s->fd, scratch->data, scratch->len);
    pthread_mutex_unlock(&s->lock);
    return rc == 0 ? 0 : EP_EIO;
}

/*
 * Nothing is buffered in user space, so this only syncs a file sink to disk
 * when sync != 0. Returns 0 or EP_EIO. Thread-safe.
 */
int ep_sink_flush(ep_sink_t *s, int sync)
{
    if (s == NULL || s->kind != SINK_FILE || !sync) {
        return 0;
    }
    return fdatasync(s->fd) == 0 ? 0 : EP_EIO;
}

/*
 * Creates a worker's state: its scratch buffer and, for a webhook, its
 * connection (NULL when libcurl cannot make one: deliveries then fail and are
 * redelivered). s may be NULL. Thread-safe.
 */
ep_sink_worker_t *ep_sink_worker_create(ep_sink_t *s)
{
    ep_sink_worker_t *w = ep_calloc(1, sizeof(*w));

    ep_buf_init(&w->scratch);
    if (s != NULL && s->kind == SINK_HTTP) {
        w->conn = ep__sink_http_conn_create(s->http);
    }
    return w;
}

/* Closes the connection and frees w. Accepts NULL. */
void ep_sink_worker_destroy(ep_sink_worker_t *w)
{
    if (w == NULL) {
        return;
    }
    ep__sink_http_conn_destroy(w->conn);
    ep_buf_close(&w->scratch);
    ep_free(w->ends);
    ep_free(w);
}

static void set_results(uint8_t *result, size_t n, uint8_t v)
{
    memset(result, v, n);
}

/*
 * A webhook: formats every line once into w->scratch (noting where each ends),
 * then POSTs runs of at most batch_events events and batch_bytes bytes (a
 * single larger line goes alone), each with its own retries.
 */
static size_t deliver_http(ep_sink_t *s, ep_sink_worker_t *w, ep_event_t *const *evs, size_t n,
                           uint8_t *result)
{
    size_t max_events, max_bytes, delivered = 0, i = 0;
    int linger;

    if (w->conn == NULL) {
        set_results(result, n, EP_SINK_FAILED);
        return 0;
    }
    if (w->ends_cap < n) {
        ep_free(w->ends);
        w->ends = ep_malloc(n * sizeof(*w->ends));
        w->ends_cap = n;
    }
    ep_buf_reset(&w->scratch);
    for (size_t k = 0; k < n; k++) {
        ep_event_to_sink_line(evs[k], &w->scratch);
        w->ends[k] = w->scratch.len;
    }
    ep__sink_http_limits(s->http, &max_events, &max_bytes, &linger);
    while (i < n) {
        size_t start = i == 0 ? 0 : w->ends[i - 1], j = i + 1;
        int r;

        while (j < n && j - i < max_events && w->ends[j] - start <= max_bytes) {
            j++;
        }
        r = ep__sink_http_post(s->http, w->conn, w->scratch.data + start, w->ends[j - 1] - start,
                               j - i);
        set_results(result + i, j - i, (uint8_t)r);
        delivered += r == EP_SINK_DELIVERED ? j - i : 0;
        i = j;
    }
    return delivered;
}

/*
 * Delivers evs[0..n): a webhook by POSTs (see deliver_http), the others with
 * one write. Fills result[0..n) and returns how many were delivered.
 * Thread-safe with other workers' w.
 */
size_t ep_sink_deliver(ep_sink_t *s, ep_sink_worker_t *w, ep_event_t *const *evs, size_t n,
                       uint8_t *result)
{
    if (s != NULL && s->kind == SINK_HTTP) {
        return deliver_http(s, w, evs, n, result);
    }
    if (ep_sink_write(s, evs, n, &w->scratch) != 0) {
        set_results(result, n, EP_SINK_FAILED);
        return 0;
    }
    set_results(result, n, EP_SINK_DELIVERED);
    return n;
}

/* A webhook's PROCESSOR_SINK_BATCH and linger; 0 for the other sinks. Thread-safe. */
size_t ep_sink_gather(const ep_sink_t *s, int *linger_ms)
{
    size_t events = 0, bytes;

    *linger_ms = 0;
    if (s != NULL && s->kind == SINK_HTTP) {
        ep__sink_http_limits(s->http, &events, &bytes, linger_ms);
    }
    return events;
}

/* Stops a webhook's retries (shutdown deadline). Thread-safe; accepts NULL. */
void ep_sink_cancel(ep_sink_t *s)
{
    if (s != NULL && s->kind == SINK_HTTP) {
        ep__sink_http_cancel(s->http);
    }
}

/* A webhook failing for a while is not ready; the other sinks always are. Thread-safe. */
int ep_sink_ready(ep_sink_t *s, char *reason, size_t len)
{
    if (s != NULL && s->kind == SINK_HTTP) {
        return ep__sink_http_ready(s->http, reason, len);
    }
    return 1;
}

/* A webhook's counters, zeros otherwise. Thread-safe. */
void ep_sink_stats(const ep_sink_t *s, ep_sink_stats_t *st)
{
    memset(st, 0, sizeof(*st));
    if (s != NULL && s->kind == SINK_HTTP) {
        ep__sink_http_stats(s->http, st);
    }
}

/* Appends the sink's kind, and a webhook's counters, as a JSON object. Thread-safe. */
void ep_sink_stats_json(const ep_sink_t *s, ep_buf_t *out)
{
    ep_sink_stats_t st;

    ep_buf_printf(out, "{\"type\":\"%s\"", kind_names[s ? s->kind : SINK_NONE]);
    if (s != NULL && s->kind == SINK_HTTP) {
        ep_sink_stats(s, &st);
        ep_buf_printf(out,
                      ",\"requests\":%llu,\"failed_requests\":%llu,\"retries\":%llu,"
                      "\"delivered\":%llu,\"rejected\":%llu,\"failed\":%llu",
                      (unsigned long long)st.requests, (unsigned long long)st.failures,
                      (unsigned long long)st.retries, (unsigned long long)st.delivered,
                      (unsigned long long)st.rejected, (unsigned long long)st.failed);
    }
    ep_buf_putc(out, '}');
}

/* Closes the file (never stdout) and frees the sink. Accepts NULL. Not thread-safe. */
void ep_sink_destroy(ep_sink_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->kind == SINK_FILE && s->fd >= 0) {
        close(s->fd);
    }
    ep__sink_http_destroy(s->http);
    pthread_mutex_destroy(&s->lock);
    ep_free(s->path);
    ep_free(s);
}
