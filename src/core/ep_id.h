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

#endif /* EP_ID_H */
