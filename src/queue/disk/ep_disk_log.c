/*
 * The disk queue's file formats: record headers and checks, the scan that
 * recovery runs over every segment, segment names, the cursor file, and a
 * few file helpers. Nothing here keeps state; ep_queue_disk.c owns the files.
 */
#include "queue/disk/ep_disk_int.h"
#include "base/ep_error.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)v);
    put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

/* CRC of a record: its header with the crc field read as zero, then the payload. */
static uint32_t rec_crc(const uint8_t *p, uint32_t length)
{
    static const uint8_t zero[4];
    uint32_t c;

    c = ep__disk_crc32c(0, p, 8);
    c = ep__disk_crc32c(c, zero, 4);
    c = ep__disk_crc32c(c, p + 12, EP_DISK_HDR_SIZE - 12);
    return ep__disk_crc32c(c, p + EP_DISK_HDR_SIZE, length);
}

/* Encodes h at p. Thread-safe. */
void ep__disk_hdr_encode(const ep_disk_hdr_t *h, uint8_t *p)
{
    put_u32(p, h->magic);
    put_u32(p + 4, h->length);
    put_u32(p + 8, h->crc);
    put_u32(p + 12, h->flags);
    put_u64(p + 16, h->seq);
    put_u64(p + 24, (uint64_t)h->ts_ms);
}

/* Decodes the header at p. Thread-safe. */
void ep__disk_hdr_decode(const uint8_t *p, ep_disk_hdr_t *h)
{
    h->magic = get_u32(p);
    h->length = get_u32(p + 4);
    h->crc = get_u32(p + 8);
    h->flags = get_u32(p + 12);
    h->seq = get_u64(p + 16);
    h->ts_ms = (int64_t)get_u64(p + 24);
}

/* Stores the crc of the encoded record at p. Thread-safe. */
void ep__disk_rec_seal(uint8_t *p)
{
    put_u32(p + 8, rec_crc(p, get_u32(p + 4)));
}

/*
 * Validates the record at p (avail readable bytes). Returns its total size or
 * 0 with the reason. Thread-safe.
 */
int64_t ep__disk_rec_check(const uint8_t *p, int64_t avail, uint64_t expect_seq, int *torn,
                           char *why, size_t whylen)
{
    ep_disk_hdr_t h;

    *torn = 0;
    if (avail < EP_DISK_HDR_SIZE) {
        *torn = 1;
        snprintf(why, whylen, "incomplete record header (%" PRId64 " bytes)", avail);
        return 0;
    }
    ep__disk_hdr_decode(p, &h);
    if (h.magic != EP_DISK_MAGIC) {
        snprintf(why, whylen, "bad record magic 0x%08" PRIx32, h.magic);
        return 0;
    }
    if (h.length > EP_DISK_MAX_RECORD) {
        snprintf(why, whylen, "record length %" PRIu32 " over the limit", h.length);
        return 0;
    }
    if ((int64_t)h.length > avail - EP_DISK_HDR_SIZE) {
        *torn = 1;
        snprintf(why, whylen, "incomplete record (length %" PRIu32 ", %" PRId64 " bytes left)",
                 h.length, avail - EP_DISK_HDR_SIZE);
        return 0;
    }
    if (expect_seq != UINT64_MAX && h.seq != expect_seq) {
        snprintf(why, whylen, "sequence %" PRIu64 " where %" PRIu64 " was expected", h.seq,
                 expect_seq);
        return 0;
    }
    if (rec_crc(p, h.length) != h.crc) {
        snprintf(why, whylen, "checksum mismatch (record seq %" PRIu64 ", length %" PRIu32 ")",
                 h.seq, h.length);
        return 0;
    }
    return EP_DISK_HDR_SIZE + (int64_t)h.length;
}

/*
 * Scans a whole record file through a read-only mapping. Returns 0 or EP_EIO.
 * Not thread-safe with writers of the same file (recovery holds the lock).
 */
int ep__disk_scan(int fd, uint64_t first_seq, ep_disk_scan_t *sc)
{
    uint64_t want = sc->want_seq, seq = first_seq;
    const uint8_t *map = NULL;
    struct stat st;
    int64_t off = 0;

    memset(sc, 0, sizeof(*sc));
    sc->want_seq = want;
    sc->want_off = -1;
    sc->end_seq = first_seq;
    if (fstat(fd, &st) != 0) {
        return EP__ERR(errno);
    }
    sc->size = (int64_t)st.st_size;
    if (sc->size == 0) {
        return 0;
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        return EP_E2BIG;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        return EP__ERR(errno);
    }
    while (off < sc->size) {
        ep_disk_hdr_t h;
        int64_t n = ep__disk_rec_check(map + off, sc->size - off, seq, &sc->torn, sc->reason,
                                       sizeof(sc->reason));

        if (n == 0) {
            break;
        }
        ep__disk_hdr_decode(map + off, &h);
        if (sc->records == 0) {
            sc->first_ts_ms = h.ts_ms;
        }
        sc->last_ts_ms = h.ts_ms;
        if (seq != UINT64_MAX) {
            if (seq == want) {
                sc->want_off = off;
            }
            seq++;
            sc->end_seq = seq;
        }
        sc->records++;
        off += n;
    }
    sc->valid = off;
    munmap((void *)map, (size_t)st.st_size);
    return 0;
}

/* Formats a segment name. Thread-safe. */
void ep__disk_seg_name(uint64_t first_seq, char *out, size_t len)
{
    snprintf(out, len, "%020" PRIu64 EP_DISK_SEG_SUFFIX, first_seq);
}

/* Parses "<20 digits>.seg". Returns 1 and *first_seq, else 0. Thread-safe. */
int ep__disk_seg_parse(const char *name, uint64_t *first_seq)
{
    uint64_t v = 0;

    if (strlen(name) != EP_DISK_SEG_NAME_LEN || strcmp(name + 20, EP_DISK_SEG_SUFFIX) != 0) {
        return 0;
    }
    for (int i = 0; i < 20; i++) {
        unsigned d;

        if (name[i] < '0' || name[i] > '9') {
            return 0;
        }
        d = (unsigned)(name[i] - '0');
        if (v > (UINT64_MAX - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *first_seq = v;
    return 1;
}

/* Reads the cursor file. Returns 0, EP_ENOENT or EP_EPARSE. Thread-safe. */
int ep__disk_cursor_read(int dir_fd, uint64_t *seq, char *why, size_t whylen)
{
    uint8_t b[EP_DISK_CURSOR_SIZE + 1];
    ssize_t n;
    int fd;

    fd = openat(dir_fd, "cursor", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            return EP_ENOENT;
        }
        snprintf(why, whylen, "cannot open: %s", strerror(errno));
        return EP_EPARSE;
    }
    n = pread(fd, b, sizeof(b), 0);
    close(fd);
    if (n != EP_DISK_CURSOR_SIZE) {
        snprintf(why, whylen, "%zd bytes where %d were expected", n, EP_DISK_CURSOR_SIZE);
        return EP_EPARSE;
    }
    if (get_u32(b) != EP_DISK_CURSOR_MAGIC || get_u32(b + 4) != 1) {
        snprintf(why, whylen, "bad magic or version");
        return EP_EPARSE;
    }
    if (ep__disk_crc32c(0, b, 16) != get_u32(b + 16)) {
        snprintf(why, whylen, "checksum mismatch");
        return EP_EPARSE;
    }
    *seq = get_u64(b + 8);
    return 0;
}

/* Writes the cursor with write + fdatasync + rename. Returns 0 or EP_E*. Not thread-safe. */
int ep__disk_cursor_write(int dir_fd, uint64_t seq, int sync)
{
    uint8_t b[EP_DISK_CURSOR_SIZE];
    int fd, rc;

    memset(b, 0, sizeof(b));
    put_u32(b, EP_DISK_CURSOR_MAGIC);
    put_u32(b + 4, 1);
    put_u64(b + 8, seq);
    put_u32(b + 16, ep__disk_crc32c(0, b, 16));
    fd = openat(dir_fd, "cursor.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return EP__ERR(errno);
    }
    rc = ep__disk_write_all(fd, b, sizeof(b));
    if (rc == 0 && sync && fdatasync(fd) != 0) {
        rc = EP__ERR(errno);
    }
    close(fd);
    if (rc == 0 && renameat(dir_fd, "cursor.tmp", dir_fd, "cursor") != 0) {
        rc = EP__ERR(errno);
    }
    if (rc == 0 && sync && fsync(dir_fd) != 0) {
        rc = EP__ERR(errno);
    }
    return rc;
}

/* mkdir -p. Returns 0 or EP_E* (EP_E2BIG for an over-long path). Thread-safe. */
int ep__disk_mkdir_p(const char *dir)
{
    char path[PATH_MAX];
    size_t len = strlen(dir);

    if (len == 0 || len >= sizeof(path)) {
        return len ? EP_E2BIG : EP_EINVAL;
    }
    memcpy(path, dir, len + 1);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] == '/' || path[i] == '\0') {
            char c = path[i];

            path[i] = '\0';
            if (mkdir(path, 0755) != 0 && errno != EEXIST) {
                return EP__ERR(errno);
            }
            path[i] = c;
        }
    }
    return 0;
}

/* Writes all of buf. Returns 0 or EP_E* (EP_EIO for a write that makes no progress). */
int ep__disk_write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;

    while (n > 0) {
        ssize_t w = write(fd, p, n);

        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return EP__ERR(errno);
        }
        if (w == 0) {
            return EP_EIO;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}
