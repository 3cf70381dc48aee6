#ifndef EP_EVENT_H
#define EP_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"

/*
 * The event model. An event is ONE heap block: the ep_event_t header, then its
 * metadata array, then every string it points to (NUL-terminated). Creating an
 * event is one malloc; ep_event_destroy() is one free. Events are immutable
 * after creation except for the fields marked "mutable" below.
 *
 * Accepted JSON shapes (one object):
 *   seed 000: {"source":"sensor-01","data":"temperature:23.5","metadata":{"location":"A"}}
 *   seed 004: {"id":"event_123","user_id":"user_456","event_type":"page_view",
 *              "properties":{"page":"/dashboard"},"timestamp":1640995200,"source":"web-app"}
 *   seed DataMessage (processor /enqueue):
 * {"id","timestamp","source","payload":"<base64>","metadata"}
 */

typedef struct ep_str_s {
    const char *p; /* NUL-terminated, inside the event block; "" when absent */
    uint32_t len;
} ep_str_t;

typedef enum {
    EP_VAL_STRING = 0,
    EP_VAL_NUMBER = 1, /* val holds the number's JSON text, e.g. "23.5" */
    EP_VAL_BOOL = 2    /* val is "true" or "false" */
} ep_val_type_t;

typedef struct ep_kv_s {
    ep_str_t key;
    ep_str_t val;
    uint8_t type; /* ep_val_type_t */
} ep_kv_t;

#define EP_EVENT_F_ID_GENERATED 0x1 /* id was absent and generated (UUID v7) */
#define EP_EVENT_F_TS_GENERATED 0x2 /* timestamp was absent and set to receive time */

typedef struct ep_event_s ep_event_t;
struct ep_event_s {
    ep_event_t *next;     /* mutable: free for the current owner's intrusive lists */
    void *qh;             /* mutable: queue provider's per-message handle */
    uint64_t qseq;        /* mutable: queue provider's sequence number / offset */
    int64_t timestamp_ms; /* event time, ms since epoch */
    int64_t received_us;  /* when ingest accepted it, us since epoch */
    int64_t processed_us; /* mutable: set by the worker that processed it */
    uint32_t attempts;    /* mutable: delivery attempts so far */
    uint32_t qidx;        /* mutable: which provider of a composite queue delivered it */
    int64_t due_ms;       /* mutable: not-before time while waiting for redelivery (mono ms) */
    uint32_t flags;       /* EP_EVENT_F_* */
    ep_str_t id;          /* never empty */
    ep_str_t source;
    ep_str_t event_type;
    ep_str_t user_id;
    ep_str_t data; /* seed 000 "data" / DataMessage "payload" bytes */
    ep_kv_t *meta; /* metadata and properties, in input order */
    uint32_t n_meta;
    uint32_t size; /* bytes of the whole block */
};

/* Bounds applied while parsing; exceeding one is a validation error naming the field. */
typedef struct ep_event_limits_s {
    uint32_t max_depth;     /* JSON nesting depth, document root = 1 (default 4) */
    uint32_t max_meta_keys; /* metadata + properties entries (default 64) */
    uint32_t max_key_len;   /* bytes per metadata key (default 128) */
    uint32_t max_value_len; /* bytes per metadata value / short field (default 1024) */
    uint32_t max_data_len;  /* bytes of data / payload (default 256 KiB) */
    uint32_t max_id_len;    /* bytes of a client-given id (default 128) */
} ep_event_limits_t;

#define EP_EVENT_LIMITS_DEFAULT                                                                    \
    {                                                                                              \
        4, 64, 128, 1024, 256 * 1024, 128                                                          \
    }

/* What was wrong with a rejected input, for the 400 body. */
typedef struct ep_parse_err_s {
    char msg[192];  /* e.g. "expected a string" */
    char field[96]; /* JSON path, e.g. "metadata.location"; "" when none applies */
    uint32_t line;  /* 1-based line in an NDJSON body (0 when not applicable) */
} ep_parse_err_t;

/* Latest event time accepted: 9999-12-31T23:59:59.999Z in ms since the epoch. */
#define EP_EVENT_TS_MAX_MS INT64_C(253402300799999)

/*
 * Most delivery attempts an event may carry. PROCESSOR_MAX_ATTEMPTS is at most
 * 1000 and a queue may add a few deliveries past it before dead-lettering; a
 * larger count can only be forged.
 */
#define EP_EVENT_MAX_ATTEMPTS 10000

/* ep_event_draft_t.flags */
#define EP_DRAFT_TEXT_CHECKED 0x1 /* strings known to be UTF-8 without NUL, typed values valid */
#define EP_DRAFT_KEYS_UNIQUE  0x2 /* metadata keys known to be distinct */

/*
 * An event before it is built, as (pointer, length) views: what every decoder
 * (JSON, protobuf) hands to ep_event_validate. A NULL source.p means "absent".
 */
typedef struct ep_event_draft_s {
    ep_str_t id, source, event_type, user_id, data;
    const ep_kv_t *meta;
    uint32_t n_meta;
    int64_t timestamp_ms; /* 0 = absent (receive time) */
    int64_t received_us;  /* 0 = absent (now) */
    uint32_t attempts;
    uint32_t flags; /* EP_DRAFT_* */
} ep_event_draft_t;

/**
 * The one validation every event passes, whatever its wire format: source
 * present, non-empty, at most max_value_len bytes; id at most max_id_len;
 * event_type and user_id at most max_value_len; data at most max_data_len; one
 * of data or event_type non-empty; at most max_meta_keys metadata entries,
 * keys non-empty, distinct, at most max_key_len bytes, values at most
 * max_value_len, number values JSON numbers and bool values true/false; text
 * valid UTF-8 without NUL; timestamp in [0, EP_EVENT_TS_MAX_MS]; received_us
 * in the same range (in us); attempts at most EP_EVENT_MAX_ATTEMPTS. Linear in the draft's
 * size (duplicate keys are found by sorting: O(n log n)). Returns 0, or
 * EP_EVALIDATE (EP_EPARSE for text that is not UTF-8) with err filled (field
 * names the field: "source", "metadata.<key>", ...). Thread-safe.
 */
int ep_event_validate(const ep_event_draft_t *d, const ep_event_limits_t *lim, ep_parse_err_t *err);

/* A reusable parser (scratch buffers kept between calls). One per thread; not thread-safe. */
typedef struct ep_event_parser_s ep_event_parser_t;

/** Creates a parser with the given limits (NULL = ep_event_limits_default()). Never fails (OOM
 * aborts). */
ep_event_parser_t *ep_event_parser_create(const ep_event_limits_t *lim);

/**
 * Parses one JSON object of len bytes into a new event. Absent id -> a UUID v7;
 * absent timestamp -> now; received_us = now. On success returns 0 and *out is
 * owned by the caller (ep_event_destroy). On failure returns EP_EPARSE (not JSON,
 * bad UTF-8, trailing data) or EP_EVALIDATE (wrong type, missing or too-large
 * field, unknown non-scalar field), fills *err and leaves *out NULL.
 * Validation: an object; "source" a non-empty string; at least one of "data",
 * "payload" or "event_type"; strings are valid UTF-8; metadata/properties values
 * are strings, numbers or booleans; unknown top-level scalar fields are kept in
 * metadata; "timestamp" is unix seconds, unix milliseconds (>= 1e11) or RFC 3339.
 */
int ep_event_parser_parse(ep_event_parser_t *p, const char *json, size_t len, ep_event_t **out,
                          ep_parse_err_t *err);

/* Per-route parsing options (seed 003's typed routes). */
typedef struct ep_event_parse_opts_s {
    const char *default_source; /* used when "source" is absent (NULL: source required) */
    const char *event_type;     /* forced type; a different "event_type" in the body is an error */
    int require_data;           /* "data" (or "payload") must be present and non-empty */
    int64_t received_us;        /* receive time (ep_time_now_us) for the event; 0: read the clock */
    const char *id;             /* id when the body has none (NUL-terminated); NULL: a UUID v7 */
} ep_event_parse_opts_t;

/** ep_event_parser_parse with options (NULL opts = none). Same contract otherwise. */
int ep_event_parser_parse_opts(ep_event_parser_t *p, const char *json, size_t len,
                               const ep_event_parse_opts_t *opts, ep_event_t **out,
                               ep_parse_err_t *err);

/** Destroys a parser. Accepts NULL. */
void ep_event_parser_destroy(ep_event_parser_t *p);

/** Convenience: parse with a temporary parser. Same contract as ep_event_parser_parse. */
int ep_event_parse_json(const char *json, size_t len, const ep_event_limits_t *lim,
                        ep_event_t **out, ep_parse_err_t *err);

/**
 * Builds an event from parts (copies everything into one block). Strings may be
 * NULL (= absent). id NULL -> generated; timestamp_ms 0 -> now. Returns a new
 * event owned by the caller. Never fails (OOM aborts).
 */
ep_event_t *ep_event_create(const char *id, const char *source, const char *event_type,
                            const char *user_id, const void *data, size_t data_len,
                            const ep_kv_t *meta, uint32_t n_meta, int64_t timestamp_ms);

/**
 * ep_event_create with (pointer, length) strings, which need not be
 * NUL-terminated (p may be NULL when len is 0); an empty id is generated.
 */
ep_event_t *ep_event_create_n(const ep_str_t *id, const ep_str_t *source,
                              const ep_str_t *event_type, const ep_str_t *user_id, const void *data,
                              size_t data_len, const ep_kv_t *meta, uint32_t n_meta,
                              int64_t timestamp_ms);

/**
 * ep_event_create_n with the receive time given (ep_time_now_us units), so that
 * the events of one request share one clock read.
 */
ep_event_t *ep_event_create_at(const ep_str_t *id, const ep_str_t *source,
                               const ep_str_t *event_type, const ep_str_t *user_id,
                               const void *data, size_t data_len, const ep_kv_t *meta,
                               uint32_t n_meta, int64_t timestamp_ms, int64_t received_us);

/** Returns a deep copy (one block). */
ep_event_t *ep_event_clone(const ep_event_t *ev);

/** Frees an event. Accepts NULL. */
void ep_event_destroy(ep_event_t *ev);

/** Appends the event as one JSON object (all fields, metadata typed) to out. */
void ep_event_to_json(const ep_event_t *ev, ep_buf_t *out);

/**
 * Appends the sink's NDJSON line for a processed event, newline included:
 * {"id":..,"event_type":..,"source":..,"user_id":..,"timestamp":<ms>,
 *  "received_at":<us>,"processed_at":<us>,"latency_us":<processed-received>}
 */
void ep_event_to_sink_line(const ep_event_t *ev, ep_buf_t *out);

/*
 * Protobuf (proto/eventpipe.proto, message diplom.v1.DataMessage; fields 1-5 as
 * the seed's DataMessage). Used for everything that crosses a process boundary.
 */

/** Appends the DataMessage encoding of ev to out. Returns 0. */
int ep_event_encode_pb(const ep_event_t *ev, ep_buf_t *out);

/** Decodes one DataMessage. Returns 0 and a new event in *out, or EP_EPARSE. */
int ep_event_decode_pb(const void *buf, size_t len, ep_event_t **out);

/** Appends a DataBatch (repeated DataMessage) holding evs[0..n) to out. Returns 0. */
int ep_event_batch_encode_pb(ep_event_t *const *evs, size_t n, ep_buf_t *out);

/**
 * Decodes a DataBatch. On success returns 0, *out is a new array (ep_free) of
 * *count new events (each ep_event_destroy). On failure returns EP_EPARSE,
 * EP_EVALIDATE or EP_E2BIG and nothing is allocated.
 */
int ep_event_batch_decode_pb(const void *buf, size_t len, ep_event_t ***out, size_t *count);

/*
 * Every protobuf decode applies ep_event_validate with lim (NULL = the process
 * default, ep_event_limits_default) and stops at the limits: at most
 * max_meta_keys metadata entries and as many typed keys per message are
 * walked, at most max_events messages per batch are counted. Linear in len.
 * ep_event_decode_pb / ep_event_batch_decode_pb are these with lim NULL, no
 * event cap and no error text.
 */

/**
 * Decodes one DataMessage. Returns 0 and a new event, or EP_EPARSE (wire
 * format, bad UTF-8) / EP_EVALIDATE (a rule of ep_event_validate) with *out
 * NULL and err (may be NULL) saying what and which field. Thread-safe.
 */
int ep_event_decode_pb_ex(const void *buf, size_t len, const ep_event_limits_t *lim,
                          ep_event_t **out, ep_parse_err_t *err);

/**
 * Decodes a DataBatch of at most max_events messages, all or nothing. Errors
 * as ep_event_decode_pb_ex, plus EP_E2BIG past max_events; err->field names
 * the message ("events[3].source"). Thread-safe.
 */
int ep_event_batch_decode_pb_ex(const void *buf, size_t len, const ep_event_limits_t *lim,
                                size_t max_events, ep_event_t ***out, size_t *count,
                                ep_parse_err_t *err);

/*
 * Internal (ep_event.c, ep_event_pb.c): metadata keys in sorted order, for
 * duplicate detection and typed-key lookup in O(n log n) whatever the keys
 * (no hash to flood). ep__event_sort_keys fills sorted[0..n) and returns the
 * index in meta of a key that repeats an earlier one, or -1;
 * ep__event_find_key binary-searches it. ep__event_key_work counts this
 * thread's key comparisons (the tests check the growth is n log n).
 */
long ep__event_sort_keys(const ep_kv_t *meta, uint32_t n, const ep_kv_t **sorted);
const ep_kv_t *ep__event_find_key(const ep_kv_t *const *sorted, uint32_t n, const ep_str_t *key);
uint64_t ep__event_key_work(void);

/**
 * Sets the limits used where none are given (protobuf decodes from queues and
 * /enqueue, parsers created with NULL). Call once at start-up, before any
 * other thread decodes; the app sets it from EVENT_MAX_KEYS / EVENT_MAX_DATA.
 */
void ep_event_limits_set_default(const ep_event_limits_t *lim);

/** The limits set by ep_event_limits_set_default (EP_EVENT_LIMITS_DEFAULT until then). */
const ep_event_limits_t *ep_event_limits_default(void);

/*
 * Internal (ep_event_json.c, ep_event_pb.c): 1 when s[0..n) is well-formed UTF-8
 * (no overlong forms, no surrogates, nothing above U+10FFFF), else 0. Thread-safe.
 */
int ep__event_utf8_valid(const char *s, size_t n);

#endif /* EP_EVENT_H */
