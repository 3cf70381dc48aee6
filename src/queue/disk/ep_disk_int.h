#ifndef EP_DISK_INT_H
#define EP_DISK_INT_H

#include <stddef.h>
#include <stdint.h>

/*
 * Private layout of the "disk" queue provider (see docs/disk-queue.md).
 *
 * QUEUE_DIR holds:
 *   lock                      flock()ed by the owning process
 *   cursor                    the committed position: lowest un-acked sequence
 *   <20-digit first seq>.seg  append-only segment files of records
 *   dlq.log                   dead-lettered records (same record format)
 *
 * A record is a 32-byte little-endian header followed by `length` payload
 * bytes (a protobuf DataMessage):
 *   0  u32 magic   EP_DISK_MAGIC
 *   4  u32 length  payload bytes
 *   8  u32 crc     CRC32C of the header with this field zeroed, then the payload
 *  12  u32 flags   EP_DISK_REC_F_*
 *  16  u64 seq     sequence number; records of a segment are consecutive
 *  24  i64 ts_ms   wall-clock time the record was published, ms since epoch
 */

#define EP_DISK_MAGIC        0x31515045u /* "EPQ1" */
#define EP_DISK_HDR_SIZE     32          /* bytes of a record header */
#define EP_DISK_MAX_RECORD   (64u << 20) /* largest payload accepted or recovered */
#define EP_DISK_REC_F_DLQ    0x1         /* dlq.log record: payload = u16 reason len, reason, pb */
#define EP_DISK_CURSOR_MAGIC 0x31435045u /* "EPC1" */
#define EP_DISK_CURSOR_SIZE  24          /* magic, version, seq, crc, pad */
#define EP_DISK_SEG_SUFFIX   ".seg"
#define EP_DISK_SEG_NAME_LEN 24 /* 20 digits + ".seg" */

/* A record header, decoded. */
typedef struct ep_disk_hdr_s {
    uint32_t magic;
    uint32_t length;
    uint32_t crc;
    uint32_t flags;
    uint64_t seq;
    int64_t ts_ms;
} ep_disk_hdr_t;

/* One segment file as known in memory. */
typedef struct ep_disk_seg_s {
    uint64_t first_seq; /* from the file name */
    uint64_t end_seq;   /* one past the last record (== first_seq when empty) */
    int64_t bytes;      /* valid bytes written */
    int64_t first_ts_ms;
    int64_t last_ts_ms;
} ep_disk_seg_t;

/* The outcome of scanning one record file. */
typedef struct ep_disk_scan_s {
    uint64_t end_seq; /* one past the last valid record */
    uint64_t records; /* valid records */
    int64_t valid;    /* bytes of valid records from the start */
    int64_t size;     /* file size */
    int64_t first_ts_ms;
    int64_t last_ts_ms;
    uint64_t want_seq; /* in: a sequence whose offset is wanted */
    int64_t want_off;  /* out: its offset, -1 when not in the file */
    int torn;          /* the stop looks like an interrupted write at the tail */
    char reason[128];  /* why the scan stopped early; "" when the whole file is valid */
} ep_disk_scan_t;

/** CRC32C (Castagnoli), table-driven. Continue a running crc with crc = previous value; start 0. */
uint32_t ep__disk_crc32c(uint32_t crc, const void *buf, size_t len);

/** Encodes h into the 32-byte header at p (crc as given). */
void ep__disk_hdr_encode(const ep_disk_hdr_t *h, uint8_t *p);

/** Decodes the 32-byte header at p. */
void ep__disk_hdr_decode(const uint8_t *p, ep_disk_hdr_t *h);

/**
 * Computes and stores the crc of the record at p (header + h.length payload
 * bytes, already encoded). Thread-safe (touches only p).
 */
void ep__disk_rec_seal(uint8_t *p);

/**
 * Checks the record at p, of which avail bytes are readable: magic, length,
 * checksum and, when expect_seq is not UINT64_MAX, the sequence. Returns the
 * record's total size (> 0), or 0 with a reason in why (and *torn = 1 when the
 * record merely runs past the available bytes). Never reads past avail.
 */
int64_t ep__disk_rec_check(const uint8_t *p, int64_t avail, uint64_t expect_seq, int *torn,
                           char *why, size_t whylen);

/**
 * Scans the record file fd (segment or dlq.log) from offset 0. first_seq is
 * the expected first sequence (UINT64_MAX: no sequence check, as for
 * dlq.log). Fills *sc. Returns 0, or EP_EIO when the file cannot be read.
 * Never fails on content: a bad record just ends the valid part.
 */
int ep__disk_scan(int fd, uint64_t first_seq, ep_disk_scan_t *sc);

/** Formats a segment file name ("%020llu.seg") into out (>= 25 bytes). */
void ep__disk_seg_name(uint64_t first_seq, char *out, size_t len);

/** Parses a segment file name. Returns 1 and *first_seq, or 0 when name is not one. */
int ep__disk_seg_parse(const char *name, uint64_t *first_seq);

/**
 * Reads the cursor file in dir_fd. Returns 0 and *seq, EP_ENOENT when there
 * is none, or EP_EPARSE when it is damaged (reason in why).
 */
int ep__disk_cursor_read(int dir_fd, uint64_t *seq, char *why, size_t whylen);

/**
 * Writes the cursor durably: cursor.tmp, fdatasync, rename over cursor,
 * fsync of the directory (skipped when sync is 0). Returns 0 or EP_EIO.
 */
int ep__disk_cursor_write(int dir_fd, uint64_t seq, int sync);

/** Creates dir and its missing parents (mkdir -p). Returns 0 or EP_E* from errno. */
int ep__disk_mkdir_p(const char *dir);

/** write(2) of all n bytes, retrying short writes and EINTR. Returns 0 or EP_E*. */
int ep__disk_write_all(int fd, const void *buf, size_t n);

#endif /* EP_DISK_INT_H */
