#ifndef EP_DURATION_H
#define EP_DURATION_H

#include <stddef.h>
#include <stdint.h>

/*
 * Durations written the way Go's time.ParseDuration reads them: one or more
 * decimal numbers, each with an optional fraction and a unit, such as "15s",
 * "500ms", "1m30s", "1.5h", ".5s". Units: ns, us (also µs and μs), ms, s, m, h.
 * "0" alone needs no unit. Unlike Go, negative durations are refused (no
 * setting here takes one), and a bare number is accepted by
 * ep_duration_parse_bare in the unit the caller names (an option's historic
 * unit: HTTP_IDLE_TIMEOUT=30 still means 30 s).
 */

#define EP_NS INT64_C(1)
#define EP_US INT64_C(1000)
#define EP_MS INT64_C(1000000)
#define EP_S  INT64_C(1000000000)

/**
 * Parses s into nanoseconds. Returns 0, or -1 with *why set to a sentence
 * saying what is wrong ("missing unit", "unknown unit 'd'", "out of range",
 * "negative durations are not allowed", ...).
 */
int ep_duration_parse(const char *s, int64_t *ns, const char **why);

/**
 * As ep_duration_parse, and a plain unsigned integer (digits only) means that
 * many bare_unit_ns (EP_S, EP_MS, ...).
 */
int ep_duration_parse_bare(const char *s, int64_t bare_unit_ns, int64_t *ns, const char **why);

/**
 * Writes ns in the shortest form Go's Duration.String would use for it
 * ("1m30s", "500ms", "0s") into buf. Returns buf.
 */
char *ep_duration_format(int64_t ns, char *buf, size_t len);

#endif /* EP_DURATION_H */
