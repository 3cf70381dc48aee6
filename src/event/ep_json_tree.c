/*
 * A read-only JSON tree over the project's tokenizer (see ep_json_tree.h).
 *
 * Building: the walk's handlers append a node per value in document order and
 * copy keys, strings and numbers into one text arena, recording offsets (the
 * arena moves while it grows); a stack of the open containers counts their
 * children and, on close, records the subtree's size and marks the last
 * child. Once the walk is done the offsets become pointers.
 */
#include "event/ep_json_tree.h"

#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_json_lex.h"
#include "base/ep_mem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define NO_TEXT UINT32_MAX

struct ep_json_node_s {
    const char *key;  /* NULL unless an object member */
    const char *text; /* strings and numbers; NULL otherwise */
    uint32_t key_off, key_len;
    uint32_t text_off, len;
    uint32_t size;  /* nodes in the subtree, this one included */
    uint32_t count; /* members or elements */
    uint8_t type;   /* ep_json_type_t */
    uint8_t last;   /* the last member or element of its container (or the root) */
};

struct ep_json_tree_s {
    ep_json_node_t *nodes;
    size_t n;
    char *text;
};

typedef struct {
    ep_json_node_t *nodes;
    size_t n, cap;
    ep_buf_t text;
    uint32_t *open; /* node index of each open container */
    uint32_t *last; /* index of the newest child of each, NO_TEXT before the first */
    size_t sp;
    uint32_t key_off, key_len; /* the pending key, NO_TEXT when none */
} build_t;

static uint32_t add_text(build_t *b, const char *s, size_t n)
{
    return (uint32_t)ep_buf_append_z(&b->text, s, n);
}

static ep_json_node_t *add_node(build_t *b, ep_json_type_t type)
{
    ep_json_node_t *nd;

    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 16;
        b->nodes = ep_realloc(b->nodes, b->cap * sizeof(*b->nodes));
    }
    nd = &b->nodes[b->n];
    memset(nd, 0, sizeof(*nd));
    nd->type = (uint8_t)type;
    nd->size = 1;
    nd->key_off = b->key_off;
    nd->key_len = b->key_len;
    nd->text_off = NO_TEXT;
    b->key_off = NO_TEXT;
    if (b->sp > 0) {
        b->nodes[b->open[b->sp - 1]].count++;
        b->last[b->sp - 1] = (uint32_t)b->n;
    } else {
        nd->last = 1; /* the root */
    }
    b->n++;
    return nd;
}

static int on_open(void *ctx, bool is_object)
{
    build_t *b = ctx;

    add_node(b, is_object ? EP_JT_OBJECT : EP_JT_ARRAY);
    /* The stack has one spare entry: the tokenizer rejects a container past
     * max_depth only after this handler ran. */
    b->open[b->sp] = (uint32_t)(b->n - 1);
    b->last[b->sp] = NO_TEXT;
    b->sp++;
    return 1;
}

static int on_close(void *ctx)
{
    build_t *b = ctx;
    uint32_t idx = b->open[--b->sp];

    b->nodes[idx].size = (uint32_t)(b->n - idx);
    if (b->last[b->sp] != NO_TEXT) {
        b->nodes[b->last[b->sp]].last = 1;
    }
    return 1;
}

static int on_key(void *ctx, const char *s, size_t n, bool nul)
{
    build_t *b = ctx;

    (void)nul;
    b->key_off = add_text(b, s, n);
    b->key_len = (uint32_t)n;
    return 1;
}

static int on_value(void *ctx, ep_json_kind_t kind, const char *s, size_t n, bool nul)
{
    build_t *b = ctx;
    static const uint8_t type_of[] = {
        [EP_JSON_STRING] = EP_JT_STRING, [EP_JSON_NUMBER] = EP_JT_NUMBER,
        [EP_JSON_TRUE] = EP_JT_TRUE,     [EP_JSON_FALSE] = EP_JT_FALSE,
        [EP_JSON_NULL] = EP_JT_NULL,
    };
    ep_json_node_t *nd = add_node(b, (ep_json_type_t)type_of[kind]);

    (void)nul;
    if (kind == EP_JSON_STRING || kind == EP_JSON_NUMBER) {
        nd->text_off = add_text(b, s, n);
        nd->len = (uint32_t)n;
    }
    return 1;
}

static const ep_json_handlers_t handlers = {on_open, on_close, on_key, on_value};

int ep_json_tree_parse(const char *json, size_t len, unsigned max_depth, ep_json_tree_t **out,
                       char *err, size_t err_len)
{
    build_t b;
    ep_json_lex_t lx;
    ep_buf_t esc = EP_BUF_INIT;
    uint8_t stk[255];
    ep_json_tree_t *t;
    int rc;

    if (out != NULL) {
        *out = NULL;
    }
    if (err_len > 0) {
        err[0] = '\0';
    }
    if (out == NULL || (json == NULL && len > 0) || max_depth > 255) {
        return EP_EINVAL;
    }
    if (len > EP_JSON_TREE_MAX_INPUT) {
        if (err_len > 0) {
            snprintf(err, err_len, "input too large (%zu bytes)", len);
        }
        return EP_E2BIG;
    }
    if (max_depth == 0) {
        max_depth = EP_JSON_TREE_DEPTH;
    }
    memset(&b, 0, sizeof(b));
    ep_buf_init(&b.text);
    b.key_off = NO_TEXT;
    b.open = ep_malloc((max_depth + 1) * sizeof(*b.open));
    b.last = ep_malloc((max_depth + 1) * sizeof(*b.last));
    ep_json_lex_init(&lx, json ? json : "", len, stk, max_depth, &esc);
    rc = ep_json_walk(&lx, &handlers, &b);
    ep_buf_close(&esc);
    ep_free(b.open);
    ep_free(b.last);
    if (rc != EP_JSON_DONE || b.n == 0) {
        if (err_len > 0) {
            if (rc == EP_JSON_SYNTAX) {
                snprintf(err, err_len, "%s at byte %zu", lx.err_why, lx.err_off);
            } else {
                snprintf(err, err_len, "no JSON value");
            }
        }
        ep_free(b.nodes);
        ep_buf_close(&b.text);
        return EP_EPARSE;
    }
    t = ep_malloc(sizeof(*t));
    t->nodes = b.nodes;
    t->n = b.n;
    t->text = ep_buf_steal(&b.text, NULL); /* NULL when there is no text */
    for (size_t i = 0; i < t->n; i++) {
        ep_json_node_t *nd = &t->nodes[i];
        nd->key = nd->key_off == NO_TEXT ? NULL : t->text + nd->key_off;
        nd->text = nd->text_off == NO_TEXT ? NULL : t->text + nd->text_off;
    }
    *out = t;
    return 0;
}

void ep_json_tree_free(ep_json_tree_t *t)
{
    if (t == NULL) {
        return;
    }
    ep_free(t->nodes);
    ep_free(t->text);
    ep_free(t);
}

const ep_json_node_t *ep_json_tree_root(const ep_json_tree_t *t)
{
    return &t->nodes[0];
}

ep_json_type_t ep_json_type(const ep_json_node_t *n)
{
    return (ep_json_type_t)n->type;
}

size_t ep_json_count(const ep_json_node_t *n)
{
    return n ? n->count : 0;
}

const ep_json_node_t *ep_json_first(const ep_json_node_t *n)
{
    return n && n->count > 0 ? n + 1 : NULL;
}

const ep_json_node_t *ep_json_next(const ep_json_node_t *n)
{
    return n && !n->last ? n + n->size : NULL;
}

const ep_json_node_t *ep_json_get(const ep_json_node_t *n, const char *const *path)
{
    for (; n != NULL && *path != NULL; path++) {
        size_t klen = strlen(*path);
        const ep_json_node_t *c;

        if (n->type != EP_JT_OBJECT) {
            return NULL;
        }
        for (c = ep_json_first(n); c != NULL; c = ep_json_next(c)) {
            if (c->key_len == klen && memcmp(c->key, *path, klen) == 0) {
                break;
            }
        }
        if (c == NULL) {
            return NULL;
        }
        n = c;
    }
    return n;
}

const ep_json_node_t *ep_json_get_type(const ep_json_node_t *n, const char *const *path,
                                       ep_json_type_t type)
{
    n = ep_json_get(n, path);
    return n && n->type == type ? n : NULL;
}

const char *ep_json_key(const ep_json_node_t *n)
{
    return n ? n->key : NULL;
}

size_t ep_json_key_len(const ep_json_node_t *n)
{
    return n && n->key ? n->key_len : 0;
}

const char *ep_json_text(const ep_json_node_t *n, size_t *len)
{
    if (n == NULL || n->text == NULL) {
        return NULL;
    }
    if (len != NULL) {
        *len = n->len;
    }
    return n->text;
}

const char *ep_json_str(const ep_json_node_t *n)
{
    return n && n->type == EP_JT_STRING ? n->text : NULL;
}

bool ep_json_int(const ep_json_node_t *n, int64_t *v)
{
    char *end;
    long long x;

    if (n == NULL || n->type != EP_JT_NUMBER || strpbrk(n->text, ".eE") != NULL) {
        return false;
    }
    errno = 0;
    x = strtoll(n->text, &end, 10);
    if (errno == ERANGE || *end != '\0') {
        return false;
    }
    *v = (int64_t)x;
    return true;
}

bool ep_json_double(const ep_json_node_t *n, double *v)
{
    if (n == NULL || n->type != EP_JT_NUMBER) {
        return false;
    }
    *v = strtod(n->text, NULL);
    return true;
}

bool ep_json_is_true(const ep_json_node_t *n)
{
    return n != NULL && n->type == EP_JT_TRUE;
}
