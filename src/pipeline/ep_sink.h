#ifndef EP_SINK_H
#define EP_SINK_H

#include <stddef.h>

#include "event/ep_event.h"

/*
 * The output for processed events (PROCESSOR_SINK): "none", "stdout" or
 * "file:PATH" (appended, created if missing). One NDJSON line per event
 * (ep_event_to_sink_line), written a whole batch per write(2) call.
 */
typedef struct ep_sink_s ep_sink_t;

/** Opens the sink named by spec. Returns 0 and *out, or EP_EINVAL / EP_EIO with err filled. */
int ep_sink_create(const char *spec, ep_sink_t **out, char *err, size_t errlen);

/**
 * Writes evs[0..n) as NDJSON lines. scratch is the caller's (per-thread) buffer,
 * reused between calls. Returns 0 or EP_EIO. Thread-safe: concurrent batches
 * never interleave within a line.
 */
int ep_sink_write(ep_sink_t *s, ep_event_t *const *evs, size_t n, ep_buf_t *scratch);

/** Flushes to the OS (and fdatasync for files when sync != 0). Returns 0 or EP_EIO. */
int ep_sink_flush(ep_sink_t *s, int sync);

/** Closes the sink. Accepts NULL. */
void ep_sink_destroy(ep_sink_t *s);

#endif /* EP_SINK_H */
