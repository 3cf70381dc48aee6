#ifndef EP_EVENT_JSON_REF_H
#define EP_EVENT_JSON_REF_H

/*
 * The yajl-driven reference of the JSON event parser (ep_event_json_ref.c),
 * test and benchmark targets only: a target that includes this compiles
 * tests/support/ep_event_json_ref.c and links yajl (see CMakeLists.txt).
 */

#include "event/ep_event.h"

#include <stddef.h>

/*
 * For the differential tests: ep_event_parser_parse driven by yajl
 * instead of the tokenizer, with the same handlers. Strictness differs only
 * where yajl is lax: it takes \v and \f as whitespace, turns a high surrogate
 * escape without a low one into '?' and checks UTF-8 only in strings it hands
 * over (so in a document already invalid it may report EP_EVALIDATE where the
 * tokenizer reports EP_EPARSE). Messages of syntax errors differ. Results
 * and errors as ep_event_parser_parse; not thread-safe per parser.
 */
int ep__event_parser_parse_ref(ep_event_parser_t *p, const char *json, size_t len, ep_event_t **out,
                               ep_parse_err_t *err);

#endif /* EP_EVENT_JSON_REF_H */
