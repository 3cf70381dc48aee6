#ifndef EP_STR_H
#define EP_STR_H

/*
 * String literal helpers, so that no length is counted by hand. s must be a
 * string literal (the "" concatenation refuses anything else at compile time).
 *
 *   strncasecmp(ct, EP_STRLIT("text/plain")) == 0
 *   len == EP_STRLEN("page") && memcmp(p, EP_STRLIT("page")) == 0
 */

/** The length of a string literal, without its terminating NUL. */
#define EP_STRLEN(s) (sizeof("" s) - 1)

/** A string literal and its length, as two arguments. */
#define EP_STRLIT(s) ("" s), EP_STRLEN(s)

#endif /* EP_STR_H */
