/*
 * Differential check of the JSON event parser: the tokenizer
 * (ep_event_parser_parse) against the same handlers driven by yajl
 * (ep__event_parser_parse_ref). Shared by fuzz_event_json.c and
 * tests/unit/test_event_json.c. Any difference outside the documented ones
 * (ep_event_json_ref.h) prints both results and aborts.
 *
 * Allowed differences:
 *   - yajl takes \v and \f as whitespace and turns a high surrogate escape
 *     without a low one into '?': inputs with those may be accepted by yajl
 *     only;
 *   - yajl checks UTF-8 only in the strings it hands over, and only fully
 *     outside skip mode: on input that is not valid UTF-8 (or has \u escapes)
 *     the error codes may differ;
 *   - yajl misses trailing garbage that is an unterminated string or a
 *     truncated literal after a complete value;
 *   - syntax error messages differ (both start "malformed JSON at byte ").
 */
#ifndef EP_EVENT_JSON_DIFF_H
#define EP_EVENT_JSON_DIFF_H

#include "base/ep_error.h"
#include "event/ep_event.h"
#include "support/ep_event_json_ref.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int diff_has(const char *s, size_t n, const char *needle)
{
    size_t k = strlen(needle);

    for (size_t i = 0; i + k <= n; i++) {
        if (memcmp(s + i, needle, k) == 0) {
            return 1;
        }
    }
    return 0;
}

static int diff_same_str(const ep_str_t *a, const ep_str_t *b)
{
    return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* Same content; ids and times only when the input gave them. */
static int diff_same_event(const ep_event_t *a, const ep_event_t *b)
{
    if ((a->flags & EP_EVENT_F_ID_GENERATED) != (b->flags & EP_EVENT_F_ID_GENERATED) ||
        (!(a->flags & EP_EVENT_F_ID_GENERATED) && !diff_same_str(&a->id, &b->id))) {
        return 0;
    }
    if ((a->flags & EP_EVENT_F_TS_GENERATED) != (b->flags & EP_EVENT_F_TS_GENERATED) ||
        (!(a->flags & EP_EVENT_F_TS_GENERATED) && a->timestamp_ms != b->timestamp_ms)) {
        return 0;
    }
    if (!diff_same_str(&a->source, &b->source) || !diff_same_str(&a->event_type, &b->event_type) ||
        !diff_same_str(&a->user_id, &b->user_id) || !diff_same_str(&a->data, &b->data) ||
        a->n_meta != b->n_meta) {
        return 0;
    }
    for (uint32_t i = 0; i < a->n_meta; i++) {
        if (!diff_same_str(&a->meta[i].key, &b->meta[i].key) ||
            !diff_same_str(&a->meta[i].val, &b->meta[i].val) ||
            a->meta[i].type != b->meta[i].type) {
            return 0;
        }
    }
    return 1;
}

static void diff_fail(const char *why, const char *s, size_t n, int rc, const ep_parse_err_t *e,
                      int rrc, const ep_parse_err_t *re)
{
    fprintf(stderr, "event JSON differential: %s\ninput (%zu bytes): ", why, n);
    for (size_t i = 0; i < n && i < 400; i++) {
        unsigned char c = (unsigned char)s[i];
        fprintf(stderr, c >= 0x20 && c < 0x7f && c != '\\' ? "%c" : "\\x%02x", c);
    }
    fprintf(stderr,
            "\ntokenizer: %s field=\"%s\" msg=\"%s\"\nyajl:      %s field=\"%s\" msg=\"%s\"\n",
            ep_err_name(rc), rc ? e->field : "", rc ? e->msg : "", ep_err_name(rrc),
            rrc ? re->field : "", rrc ? re->msg : "");
    abort();
}

/*
 * Parses s with both drivers (tok and ref are two parsers made with the same
 * limits) and aborts on a difference. Returns the tokenizer's result code.
 */
static int ep_event_json_diff(ep_event_parser_t *tok, ep_event_parser_t *ref, const char *s,
                              size_t n)
{
    ep_event_t *ev = NULL, *rev = NULL;
    ep_parse_err_t e, re;
    int rc = ep_event_parser_parse(tok, s, n, &ev, &e);
    int rrc = ep__event_parser_parse_ref(ref, s, n, &rev, &re);
    int lax = diff_has(s, n, "\v") || diff_has(s, n, "\f") || diff_has(s, n, "\\u") ||
              !ep__event_utf8_valid(s, n) ||
              (rc == EP_EPARSE && strstr(e.msg, "trailing garbage") != NULL);

    if (rc == 0 && rrc != 0) {
        diff_fail("accepted by the tokenizer only", s, n, rc, &e, rrc, &re);
    }
    if (rc == 0 && !diff_same_event(ev, rev)) {
        diff_fail("both accepted, different events", s, n, rc, &e, rrc, &re);
    }
    if (rc != 0 && rrc == 0 && !lax) {
        diff_fail("accepted by yajl only", s, n, rc, &e, rrc, &re);
    }
    if (rc != 0 && rrc != 0 && rc != rrc && !lax) {
        diff_fail("rejected with different codes", s, n, rc, &e, rrc, &re);
    }
    if (rc == EP_EVALIDATE && rrc == EP_EVALIDATE &&
        (strcmp(e.msg, re.msg) != 0 || strcmp(e.field, re.field) != 0)) {
        diff_fail("different validation errors", s, n, rc, &e, rrc, &re);
    }
    if (rc == EP_EPARSE && strncmp(e.msg, "malformed JSON at byte ", 23) != 0 &&
        !(rrc == EP_EPARSE && strcmp(e.msg, re.msg) == 0)) {
        diff_fail("a parse error that is neither a syntax error nor yajl's", s, n, rc, &e, rrc,
                  &re);
    }
    ep_event_destroy(ev);
    ep_event_destroy(rev);
    return rc;
}

#endif /* EP_EVENT_JSON_DIFF_H */
