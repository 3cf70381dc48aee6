#ifndef EP_GRPC_WIRE_H
#define EP_GRPC_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "base/ep_buf.h"
#include "event/ep_event.h"

/*
 * The bytes of the gRPC API (issue 16), without any I/O: protobuf fields read
 * and written by hand against the wire format (as ep_event_pb.c does), the
 * gRPC length-prefixed message framing of a stream's DATA, gzip message
 * compression, grpc-timeout, and the eventpipe.v1.Event decoder
 * (proto/eventpipe_api.proto). Everything here is reached by the fuzz target
 * tests/fuzz/fuzz_grpc_wire.c.
 */

/* gRPC status codes (the ones eventpipe answers). */
enum {
    EP_GRPC_OK = 0,
    EP_GRPC_CANCELLED = 1,
    EP_GRPC_UNKNOWN = 2,
    EP_GRPC_INVALID_ARGUMENT = 3,
    EP_GRPC_DEADLINE_EXCEEDED = 4,
    EP_GRPC_NOT_FOUND = 5,
    EP_GRPC_ALREADY_EXISTS = 6,
    EP_GRPC_PERMISSION_DENIED = 7,
    EP_GRPC_RESOURCE_EXHAUSTED = 8,
    EP_GRPC_FAILED_PRECONDITION = 9,
    EP_GRPC_ABORTED = 10,
    EP_GRPC_UNIMPLEMENTED = 12,
    EP_GRPC_INTERNAL = 13,
    EP_GRPC_UNAVAILABLE = 14,
    EP_GRPC_UNAUTHENTICATED = 16,
    EP_GRPC_CODES = 17
};

/** "OK", "INVALID_ARGUMENT", ... (the grpc_code label); "UNKNOWN" out of range. */
const char *ep_grpc_code_name(int code);

/* ------------------------------------------------------------ protobuf */

enum { EP_PB_VARINT = 0, EP_PB_I64 = 1, EP_PB_LEN = 2, EP_PB_I32 = 5 };

typedef struct ep_pb_reader_s {
    const uint8_t *p, *end;
} ep_pb_reader_t;

typedef struct ep_pb_field_s {
    uint32_t num;
    int wt;           /* EP_PB_* */
    uint64_t v;       /* VARINT, I64, I32 */
    const uint8_t *p; /* LEN: the bytes */
    size_t len;
} ep_pb_field_t;

/** Starts reading buf[0..len). */
void ep_pb_reader_init(ep_pb_reader_t *r, const void *buf, size_t len);

/**
 * The next field: 1 (f filled), 0 at the end, or -1 when the bytes are not a
 * protobuf message (truncated, field 0, a group or an unknown wire type).
 */
int ep_pb_next(ep_pb_reader_t *r, ep_pb_field_t *f);

void ep_pb_put_varint(ep_buf_t *b, uint64_t v);
/** Field num as a varint; 0 is left out (proto3). */
void ep_pb_put_uint(ep_buf_t *b, uint32_t num, uint64_t v);
/** Field num as bytes/string; empty is left out. */
void ep_pb_put_bytes(ep_buf_t *b, uint32_t num, const void *p, size_t len);
/** Field num as bytes even when empty (a message that must be present). */
void ep_pb_put_bytes_always(ep_buf_t *b, uint32_t num, const void *p, size_t len);
/** Opens a nested message of field num; returns its start for ep_pb_close. */
size_t ep_pb_open(ep_buf_t *b, uint32_t num);
/** Closes the nested message opened at start (writes its length before it). */
void ep_pb_close(ep_buf_t *b, size_t start);
/** A map<string,string> entry of field num. */
void ep_pb_put_map_entry(ep_buf_t *b, uint32_t num, const char *k, size_t klen, const char *v,
                         size_t vlen);

/* ------------------------------------------------------------ gRPC framing */

/*
 * Length-prefixed messages: 1 byte compressed flag, 4 bytes big-endian length,
 * the message. A stream's DATA is appended to a buffer and messages are taken
 * from its front as they complete.
 */
#define EP_GRPC_PREFIX 5

/**
 * Looks at buf[0..len) for a whole message. Returns 1 (*msg, *msg_len,
 * *compressed and *used set: the bytes to drop from the front), 0 when more
 * bytes are needed, EP_E2BIG when the announced length exceeds max, or
 * EP_EPARSE when the flag byte is neither 0 nor 1.
 */
int ep_grpc_frame_next(const uint8_t *buf, size_t len, size_t max, const uint8_t **msg,
                       size_t *msg_len, int *compressed, size_t *used);

/** Appends the 5-byte prefix of a message of len bytes (uncompressed). */
void ep_grpc_frame_prefix(ep_buf_t *b, size_t len, int compressed);

/** Inflates a gzip message into out (at most max bytes). 0, EP_E2BIG or EP_EPARSE. */
int ep_grpc_gunzip(const uint8_t *in, size_t len, size_t max, ep_buf_t *out);

/** Deflates in as gzip, appending to out. 0 or EP_ENOMEM. */
int ep_grpc_gzip(const uint8_t *in, size_t len, ep_buf_t *out);

/**
 * Parses a grpc-timeout value ("<1-8 digits><H|M|S|m|u|n>"). Returns the
 * timeout in ms (rounded up, at least 1), or -1 when malformed.
 */
int64_t ep_grpc_timeout_ms(const char *v, size_t len);

/* ------------------------------------------------------------ events */

/**
 * Decodes one eventpipe.v1.Event (proto/eventpipe_api.proto) into a new
 * event, with the JSON API's rules (ep_event_validate with lim; timestamp as
 * unix seconds, or ms when >= 1e11). id: the id to give an event without one
 * (NULL: a UUID v7). prefix: put before err->field ("event." or
 * "events[3]."). received_us: the receive time (0: now). Returns 0, EP_EPARSE
 * (not a message, bad UTF-8) or EP_EVALIDATE, with err saying what and which
 * field. Properties and metadata are kept together (metadata), as the JSON API
 * keeps them. Thread-safe; one allocation (the event) besides a scratch array
 * for more than 16 entries.
 */
int ep_grpc_decode_event(const uint8_t *buf, size_t len, const ep_event_limits_t *lim,
                         const char *prefix, int64_t received_us, ep_event_t **out,
                         ep_parse_err_t *err);

/**
 * Decodes a diplom.v1.IngestRequest (seed 000: source, data, metadata) into a
 * new event, like ep_grpc_decode_event.
 */
int ep_grpc_decode_ingest(const uint8_t *buf, size_t len, const ep_event_limits_t *lim,
                          int64_t received_us, ep_event_t **out, ep_parse_err_t *err);

#endif /* EP_GRPC_WIRE_H */
