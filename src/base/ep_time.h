#ifndef EP_TIME_H
#define EP_TIME_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/** Wall-clock time, microseconds since the Unix epoch. Thread-safe. */
int64_t ep_time_now_us(void);
/** Wall-clock time, milliseconds since the Unix epoch. Thread-safe. */
int64_t ep_time_now_ms(void);
/** Monotonic time in nanoseconds, for durations. Thread-safe. */
int64_t ep_time_mono_ns(void);
/** Monotonic time in milliseconds. Thread-safe. */
int64_t ep_time_mono_ms(void);
/**
 * Sets *ts to the absolute time ms_from_now milliseconds after now on clock
 * (CLOCK_MONOTONIC for a condition variable set to it, CLOCK_REALTIME for a
 * default one or pthread_mutex_timedlock). A negative ms gives a time in the past.
 */
void ep_time_deadline_ts(struct timespec *ts, clockid_t clock, int64_t ms_from_now);
/** Sleeps for ms milliseconds (restarts on EINTR). */
void ep_time_sleep_ms(int64_t ms);

/**
 * Parses an RFC 3339 timestamp ("2024-01-15T10:30:00Z", "...00.123+02:00") into
 * milliseconds since the epoch. Returns 0 or EP_EPARSE.
 */
int ep_time_parse_rfc3339(const char *s, size_t n, int64_t *out_ms);

/** Formats ms since the epoch as RFC 3339 UTC with milliseconds into out (>= 25 bytes). */
void ep_time_format_rfc3339(int64_t ms, char *out, size_t outlen);

#endif /* EP_TIME_H */
