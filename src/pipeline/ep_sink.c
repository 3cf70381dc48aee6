/*
 * The processed-event sink (PROCESSOR_SINK): "none", "stdout" or "file:PATH".
 *
 * A batch is formatted into the caller's scratch buffer outside any lock, then
 * written with one write(2) under the sink's mutex, so lines from concurrent
 * workers never interleave and the lock is taken once per batch.
 */
#include "pipeline/ep_sink.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"
#include "base/ep_str.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef enum { SINK_NONE = 0, SINK_STDOUT, SINK_FILE } sink_kind_t;

struct ep_sink_s {
    sink_kind_t kind;
    int fd; /* -1 for none */
    pthread_mutex_t lock;
    char *path; /* file sinks only */
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
 * Opens the sink named by spec ("none", "stdout", "file:PATH"). Returns 0 and
 * *out (free with ep_sink_destroy), EP_EINVAL for an unknown spec or EP_EIO
 * when the file cannot be opened, with a message in err. Thread-safe.
 */
int ep_sink_create(const char *spec, ep_sink_t **out, char *err, size_t errlen)
{
    ep_sink_t *s;

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
    } else {
        snprintf(err, errlen, "PROCESSOR_SINK: expected none, stdout or file:PATH (got '%s')",
                 spec);
        ep_free(s);
        return EP_EINVAL;
    }
    pthread_mutex_init(&s->lock, NULL);
    *out = s;
    return 0;
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

/* Closes the file (never stdout) and frees the sink. Accepts NULL. Not thread-safe. */
void ep_sink_destroy(ep_sink_t *s)
{
    if (s == NULL) {
        return;
    }
    if (s->kind == SINK_FILE && s->fd >= 0) {
        close(s->fd);
    }
    pthread_mutex_destroy(&s->lock);
    ep_free(s->path);
    ep_free(s);
}
