#ifndef EP_EVENT_JSON_INT_H
#define EP_EVENT_JSON_INT_H

/*
 * Internal to the JSON event parser (ep_event_json.c): its handlers, open to a
 * driver other than the tokenizer. The only such driver is the yajl-driven
 * reference of the differential tests (tests/support/ep_event_json_ref.c);
 * nothing in the product calls these.
 *
 * The handlers have the shapes of yajl's callbacks: ctx is the parser, and each
 * returns 1 to go on or 0 to stop (the error is then recorded in the parser).
 * They may only be called from inside a run function passed to
 * ep__event_json_parse_driven, in document order, for the parser given there.
 * Strings reach them as the driver decoded them, not yet checked as UTF-8:
 * the handlers check them (the tokenizer checks while scanning instead).
 */

#include "event/ep_event.h"

#include <stddef.h>

int ep__event_json_null(void *ctx);
int ep__event_json_bool(void *ctx, int b);
int ep__event_json_number(void *ctx, const char *s, size_t n);
int ep__event_json_string(void *ctx, const unsigned char *s, size_t n);
int ep__event_json_start_map(void *ctx);
int ep__event_json_start_array(void *ctx);
int ep__event_json_end(void *ctx); /* end of an object or of an array */
int ep__event_json_key(void *ctx, const unsigned char *s, size_t n);

/*
 * Records a syntax error found by the driver, "malformed JSON at byte <offset>:
 * <why[0..why_len)>"; it replaces any validation error recorded before.
 */
void ep__event_json_syntax_error(ep_event_parser_t *p, size_t offset, const char *why,
                                 size_t why_len);

/* Walks json[0..len) calling the handlers above; errors go through them. */
typedef void (*ep__event_json_run_t)(ep_event_parser_t *p, const char *json, size_t len);

/*
 * ep_event_parser_parse with run as the driver instead of the tokenizer: the
 * same set-up, handlers, final checks and results (0, or EP_EPARSE /
 * EP_EVALIDATE with *err filled; err may be NULL). run is not called for an
 * empty body or one over 2 GiB. Not thread-safe per parser.
 */
int ep__event_json_parse_driven(ep_event_parser_t *p, ep__event_json_run_t run, const char *json,
                                size_t len, ep_event_t **out, ep_parse_err_t *err);

#endif /* EP_EVENT_JSON_INT_H */
