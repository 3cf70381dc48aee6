#ifndef EP_ID_H
#define EP_ID_H

#include <stddef.h>
#include <stdint.h>

#define EP_UUID_STR_LEN 36 /* without the NUL */

/**
 * Writes a new UUID v7 (48 bits of Unix milliseconds, then random bits) as 36
 * lowercase characters plus NUL into out (>= 37 bytes). Time-ordered, so ids
 * sort by creation time. Thread-safe, no locks (a per-thread random state).
 */
void ep_id_uuid7(char *out);

/** ep_id_uuid7 with the time given (unix ms), for callers that already read the clock. */
void ep_id_uuid7_at(char *out, int64_t unix_ms);

/** 1 when s[0..n) is a UUID in text form (8-4-4-4-12 hex digits, either case), else 0. */
int ep_id_uuid_valid(const char *s, size_t n);

/**
 * Writes the i-th id of a run that starts at base into out (>= 37 bytes): base
 * with i added to its last 48 bits (modulo 2^48), lowercase. base must pass
 * ep_id_uuid_valid; i = 0 gives base itself (lowercased). The gateway assigns
 * one base per request and ingest derives the id of each event from it.
 */
void ep_id_uuid_add(const char *base, uint64_t i, char *out);

#endif /* EP_ID_H */
