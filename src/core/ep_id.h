#ifndef EP_ID_H
#define EP_ID_H

#include <stddef.h>

#define EP_UUID_STR_LEN 36 /* without the NUL */

/**
 * Writes a new UUID v7 (48 bits of Unix milliseconds, then random bits) as 36
 * lowercase characters plus NUL into out (>= 37 bytes). Time-ordered, so ids
 * sort by creation time. Thread-safe, no locks (a per-thread random state).
 */
void ep_id_uuid7(char *out);

/** Writes a random UUID v4, same format. Thread-safe. */
void ep_id_uuid4(char *out);

#endif /* EP_ID_H */
