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

/**
 * Writes a new base id for the events of one request (>= 37 bytes): a UUID v8
 * laid out as v7 (48 bits of Unix ms, then random bits) with its last 24 bits
 * zero. Event i of the request is ep_id_uuid_add(base, i) (i < 2^24), so the
 * base of any of them is ep_id_base_of(id). The gateway assigns these before
 * its hop to ingest.
 */
void ep_id_assigned_base(char *out);

/** 1 when id (len bytes) is a UUID of version 8, as ep_id_assigned_base gives. */
int ep_id_is_assigned(const char *id, size_t len);

/** 1 when id is an assigned base: version 8 and its last 24 bits zero. */
int ep_id_is_assigned_base(const char *id, size_t len);

/** Writes the base of the assigned id id (its last 24 bits zeroed, lowercase) into out. */
void ep_id_base_of(const char *id, char *out);

#endif /* EP_ID_H */
