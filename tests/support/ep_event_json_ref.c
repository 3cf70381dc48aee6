/*
 * The yajl-driven reference of the JSON event parser, for the differential
 * tests (tests/unit/test_event_json.c, tests/fuzz/fuzz_event_json.c through
 * tests/fuzz/event_json_diff.h) and the microbenchmark's comparison figure.
 * yajl calls the parser's own handlers (src/event/ep_event_json_int.h), so
 * only the tokenizing differs from ep_event_parser_parse. yajl was the
 * product's parser until the tokenizer replaced it; it now lives here, built
 * only into the targets that use it, so the product does not link yajl for it.
 */
#include "support/ep_event_json_ref.h"

#include "event/ep_event_json_int.h"
#include "base/ep_mem.h"

#include <yajl/yajl_parse.h>

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

/* ------------------------------------------------------------------ arena */

/*
 * yajl allocates a handle, a lexer, a decode buffer and two stacks per parse.
 * They come from this arena: one block reused across parses, with overflow
 * blocks from the heap that are freed at the next reset (and make the block
 * grow, up to ARENA_KEEP_MAX, so the steady state allocates nothing).
 */
#define ARENA_MIN      (16 * 1024)
#define ARENA_KEEP_MAX (1024 * 1024)

typedef union ahdr_u {
    size_t size;
    max_align_t align_;
} ahdr_t;

typedef struct arena_s {
    char *base;
    size_t cap;
    size_t used;
    void **big; /* overflow blocks, freed at reset */
    size_t n_big;
    size_t cap_big;
    size_t big_bytes;
} arena_t;

static size_t arena_round(size_t n)
{
    return (n + sizeof(ahdr_t) - 1) / sizeof(ahdr_t) * sizeof(ahdr_t);
}

static void arena_reset(arena_t *a)
{
    size_t want = a->cap;

    for (size_t i = 0; i < a->n_big; i++) {
        ep_free(a->big[i]);
    }
    if (a->big_bytes) {
        want = a->cap + a->big_bytes;
        want = want > ARENA_KEEP_MAX ? ARENA_KEEP_MAX : want;
    }
    if (want < ARENA_MIN) {
        want = ARENA_MIN;
    }
    if (want != a->cap) {
        ep_free(a->base);
        a->base = ep_malloc(want);
        a->cap = want;
    }
    a->n_big = 0;
    a->big_bytes = 0;
    a->used = 0;
}

static bool arena_owns(const arena_t *a, const void *p)
{
    uintptr_t u = (uintptr_t)p, b = (uintptr_t)a->base;

    return u >= b && u < b + a->cap;
}

static void *arena_alloc(void *ctx, size_t n)
{
    arena_t *a = ctx;
    size_t need = sizeof(ahdr_t) + arena_round(n);
    ahdr_t *h;

    if (need <= a->cap - a->used) {
        h = (ahdr_t *)(a->base + a->used);
        a->used += need;
    } else {
        if (a->n_big == a->cap_big) {
            a->cap_big = a->cap_big ? a->cap_big * 2 : 16;
            a->big = ep_realloc(a->big, a->cap_big * sizeof(*a->big));
        }
        h = ep_malloc(need);
        a->big[a->n_big++] = h;
        a->big_bytes += need;
    }
    h->size = n;
    return h + 1;
}

static void arena_free(void *ctx, void *p)
{
    arena_t *a = ctx;
    ahdr_t *h;

    if (p == NULL || !arena_owns(a, p)) {
        return; /* heap overflow blocks live until the next reset */
    }
    h = (ahdr_t *)p - 1;
    if ((char *)p + arena_round(h->size) == a->base + a->used) {
        a->used = (size_t)((char *)h - a->base);
    }
}

static void *arena_realloc(void *ctx, void *p, size_t n)
{
    arena_t *a = ctx;
    ahdr_t *h;
    void *q;

    if (p == NULL) {
        return arena_alloc(ctx, n);
    }
    h = (ahdr_t *)p - 1;
    /* The last block of the arena grows in place when there is room. */
    if (arena_owns(a, p) && (char *)p + arena_round(h->size) == a->base + a->used &&
        arena_round(n) <= a->cap - (size_t)((char *)p - a->base)) {
        a->used = (size_t)((char *)p - a->base) + arena_round(n);
        h->size = n;
        return p;
    }
    q = arena_alloc(ctx, n);
    memcpy(q, p, h->size < n ? h->size : n);
    arena_free(ctx, p);
    return q;
}

/*
 * yajl's memory: one arena per thread, kept for the thread's life (the callers
 * are single-threaded tests and benchmarks; a thread that exits leaks its one
 * block).
 */
static _Thread_local arena_t ref_arena;

static const yajl_callbacks callbacks = {
    .yajl_null = ep__event_json_null,
    .yajl_boolean = ep__event_json_bool,
    .yajl_number = ep__event_json_number,
    .yajl_string = ep__event_json_string,
    .yajl_start_map = ep__event_json_start_map,
    .yajl_map_key = ep__event_json_key,
    .yajl_end_map = ep__event_json_end,
    .yajl_start_array = ep__event_json_start_array,
    .yajl_end_array = ep__event_json_end,
};

/* Records yajl's error as "malformed JSON at byte N: <reason>". */
static void syntax_error(ep_event_parser_t *p, yajl_handle h, const char *json, size_t len,
                         size_t offset)
{
    unsigned char *ye = yajl_get_error(h, 0, (const unsigned char *)json, len);
    const char *why = ye ? (const char *)ye : "invalid JSON";
    const char *colon = strstr(why, "error: ");
    size_t n;

    if (colon) {
        why = colon + strlen("error: ");
    }
    n = strcspn(why, "\r\n");
    while (n > 0 && (why[n - 1] == ' ' || why[n - 1] == '.')) {
        n--;
    }
    ep__event_json_syntax_error(p, offset, why, n);
    if (ye) {
        yajl_free_error(h, ye);
    }
}

/* Runs yajl over the whole input; errors land in the parser through its handlers. */
static void run_yajl(ep_event_parser_t *p, const char *json, size_t len)
{
    yajl_alloc_funcs af = {arena_alloc, arena_realloc, arena_free, &ref_arena};
    yajl_handle h;
    yajl_status st;

    arena_reset(&ref_arena);
    h = yajl_alloc(&callbacks, &af, p);
    yajl_config(h, yajl_allow_comments, 0);
    yajl_config(h, yajl_dont_validate_strings, 0);
    yajl_config(h, yajl_allow_trailing_garbage, 0);
    yajl_config(h, yajl_allow_multiple_values, 0);
    yajl_config(h, yajl_allow_partial_values, 0);

    st = yajl_parse(h, (const unsigned char *)json, len);
    if (st == yajl_status_error) {
        syntax_error(p, h, json, len, yajl_get_bytes_consumed(h));
    } else if (st == yajl_status_ok) {
        st = yajl_complete_parse(h);
        if (st == yajl_status_error) {
            syntax_error(p, h, json, len, len);
        }
    }
    /* yajl_status_client_canceled: one of the handlers recorded the error. */
    yajl_free(h);
}

int ep__event_parser_parse_ref(ep_event_parser_t *p, const char *json, size_t len, ep_event_t **out,
                               ep_parse_err_t *err)
{
    return ep__event_json_parse_driven(p, run_yajl, json, len, out, err);
}
