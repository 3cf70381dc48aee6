/*
 * gRPC server reflection (grpc.reflection.v1alpha and v1; issue 16): answers
 * from the FileDescriptorSet of proto/ that protoc writes at build time and
 * CMake embeds as ep_grpc_descriptors (cmake/ep_embed.cmake). The set is read
 * in place for every request (a few KB): no state, no allocation besides the
 * answer.
 */
#include "grpc/ep_grpc_reflect.h"
#include "grpc/ep_grpc_wire.h"

#include <string.h>

#define MAX_FILES 32

typedef struct file_s {
    const uint8_t *p; /* the FileDescriptorProto */
    size_t len;
    const uint8_t *name, *pkg;
    size_t name_len, pkg_len;
} file_t;

/* The files of the set, in order. Returns how many (bounded by MAX_FILES). */
static int files_of(const uint8_t *set, size_t len, file_t *out)
{
    ep_pb_reader_t r, fr;
    ep_pb_field_t f, g;
    int n = 0;

    ep_pb_reader_init(&r, set, len);
    while (n < MAX_FILES && ep_pb_next(&r, &f) == 1) {
        file_t *fl = &out[n];
        if (f.num != 1 || f.wt != EP_PB_LEN) {
            continue;
        }
        memset(fl, 0, sizeof(*fl));
        fl->p = f.p;
        fl->len = f.len;
        fl->name = fl->pkg = (const uint8_t *)"";
        ep_pb_reader_init(&fr, f.p, f.len);
        while (ep_pb_next(&fr, &g) == 1) {
            if (g.num == 1 && g.wt == EP_PB_LEN) {
                fl->name = g.p;
                fl->name_len = g.len;
            } else if (g.num == 2 && g.wt == EP_PB_LEN) {
                fl->pkg = g.p;
                fl->pkg_len = g.len;
            }
        }
        n++;
    }
    return n;
}

static int same(const uint8_t *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* 1 when file f defines symbol (a top-level message, enum or service, or a member of one). */
static int defines(const file_t *f, const char *sym, size_t slen)
{
    ep_pb_reader_t r, d;
    ep_pb_field_t g, h;

    if (f->pkg_len) {
        if (slen <= f->pkg_len + 1 || memcmp(sym, f->pkg, f->pkg_len) != 0 ||
            sym[f->pkg_len] != '.') {
            return 0;
        }
        sym += f->pkg_len + 1;
        slen -= f->pkg_len + 1;
    }
    ep_pb_reader_init(&r, f->p, f->len);
    while (ep_pb_next(&r, &g) == 1) {
        if ((g.num != 4 && g.num != 5 && g.num != 6) || g.wt != EP_PB_LEN) {
            continue;
        }
        ep_pb_reader_init(&d, g.p, g.len);
        while (ep_pb_next(&d, &h) == 1) {
            if (h.num == 1 && h.wt == EP_PB_LEN && h.len <= slen && memcmp(h.p, sym, h.len) == 0 &&
                (h.len == slen || sym[h.len] == '.')) {
                return 1;
            }
        }
    }
    return 0;
}

/* Adds file i and (once each) the files it imports, to the FileDescriptorResponse in out. */
static void add_file(const file_t *files, int n, int i, uint8_t *added, ep_buf_t *out, int depth)
{
    ep_pb_reader_t r;
    ep_pb_field_t g;

    if (added[i] || depth > MAX_FILES) {
        return;
    }
    added[i] = 1;
    ep_pb_put_bytes_always(out, 1, files[i].p, files[i].len);
    ep_pb_reader_init(&r, files[i].p, files[i].len);
    while (ep_pb_next(&r, &g) == 1) {
        if (g.num != 3 || g.wt != EP_PB_LEN) {
            continue;
        }
        for (int j = 0; j < n; j++) {
            if (same(files[j].name, files[j].name_len, (const char *)g.p, g.len)) {
                add_file(files, n, j, added, out, depth + 1);
            }
        }
    }
}

static void error(ep_buf_t *out, int code, const char *msg)
{
    size_t at = ep_pb_open(out, 7);

    ep_pb_put_uint(out, 1, (uint64_t)code);
    ep_pb_put_bytes(out, 2, msg, strlen(msg));
    ep_pb_close(out, at);
}

void ep_grpc_reflect_answer(const uint8_t *set, size_t set_len, const uint8_t *msg, size_t len,
                            const char *const *services, int nservices, ep_buf_t *out)
{
    file_t files[MAX_FILES];
    uint8_t added[MAX_FILES];
    int n = files_of(set, set_len, files);
    ep_pb_reader_t r;
    ep_pb_field_t f, host = {0, 0, 0, NULL, 0}, req = {0, 0, 0, NULL, 0};

    ep_pb_reader_init(&r, msg, len);
    while (ep_pb_next(&r, &f) == 1) {
        if (f.num == 1 && f.wt == EP_PB_LEN) {
            host = f;
        } else if (f.num >= 3 && f.num <= 7) {
            req = f;
        }
    }
    ep_pb_put_bytes(out, 1, host.p, host.len);
    ep_pb_put_bytes_always(out, 2, msg, len);
    memset(added, 0, sizeof(added));
    switch (req.num) {
    case 3:   /* file_by_filename */
    case 4: { /* file_containing_symbol */
        int found = -1;
        for (int i = 0; i < n && found < 0 && req.wt == EP_PB_LEN; i++) {
            if (req.num == 3 ? same(files[i].name, files[i].name_len, (const char *)req.p, req.len)
                             : defines(&files[i], (const char *)req.p, req.len)) {
                found = i;
            }
        }
        if (found < 0) {
            error(out, EP_GRPC_NOT_FOUND, req.num == 3 ? "file not found" : "symbol not found");
        } else {
            size_t at = ep_pb_open(out, 4);
            add_file(files, n, found, added, out, 0);
            ep_pb_close(out, at);
        }
        break;
    }
    case 7: { /* list_services */
        size_t at = ep_pb_open(out, 6);
        for (int i = 0; i < nservices; i++) {
            size_t s = ep_pb_open(out, 1);
            ep_pb_put_bytes(out, 1, services[i], strlen(services[i]));
            ep_pb_close(out, s);
        }
        ep_pb_close(out, at);
        break;
    }
    case 5:
    case 6:
        error(out, EP_GRPC_NOT_FOUND, "eventpipe's services define no extensions");
        break;
    default:
        error(out, EP_GRPC_INVALID_ARGUMENT, "no request in the ServerReflectionRequest");
        break;
    }
}
