/*
 * Fuzz target: arbitrary bytes -> ep_json_tree_parse. The tree must accept
 * exactly what the tokenizer accepts at the same depth; a tree must be
 * consistent (counts match the children iterated, members have keys and
 * elements do not, texts are NUL-terminated at their length, a lookup by a
 * member's key finds a member with that key). Any broken invariant aborts.
 */
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_json_lex.h"
#include "event/ep_json_tree.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_json_tree: %s:%d: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define DEPTH 16

static int nop_open(void *ctx, bool is_object)
{
    (*(size_t *)ctx)++;
    return 1;
}
static int nop_close(void *ctx)
{
    return 1;
}
static int nop_key(void *ctx, const char *s, size_t n, bool nul)
{
    return 1;
}
static int nop_value(void *ctx, ep_json_kind_t kind, const char *s, size_t n, bool nul)
{
    (*(size_t *)ctx)++;
    return 1;
}

/* Checks the subtree at n; returns its number of nodes. */
static size_t check_node(const ep_json_node_t *n, int in_object, unsigned depth)
{
    ep_json_type_t type = ep_json_type(n);
    size_t nodes = 1, count = 0, len = 0;
    const char *text = ep_json_text(n, &len);

    CHECK(depth <= DEPTH + 1); /* DEPTH containers, then a scalar */
    CHECK((ep_json_key(n) != NULL) == in_object);
    CHECK((text != NULL) == (type == EP_JT_STRING || type == EP_JT_NUMBER));
    if (text != NULL) {
        CHECK(text[len] == '\0');
    }
    if (type != EP_JT_OBJECT && type != EP_JT_ARRAY) {
        CHECK(ep_json_first(n) == NULL && ep_json_count(n) == 0);
        return nodes;
    }
    CHECK(depth <= DEPTH);
    for (const ep_json_node_t *c = ep_json_first(n); c; c = ep_json_next(c)) {
        nodes += check_node(c, type == EP_JT_OBJECT, depth + 1);
        if (type == EP_JT_OBJECT) {
            const char *key = ep_json_key(c);
            const ep_json_node_t *found = ep_json_get(n, (const char *const[]){key, NULL});
            /* A key holding U+0000 matches no path (its prefix may be another key). */
            CHECK(found != NULL || strlen(key) != ep_json_key_len(c));
            CHECK(found == NULL ||
                  (strcmp(ep_json_key(found), key) == 0 && ep_json_key_len(found) == strlen(key)));
        }
        count++;
    }
    CHECK(count == ep_json_count(n));
    return nodes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ep_json_tree_t *t = NULL;
    ep_json_lex_t lx;
    ep_buf_t esc = EP_BUF_INIT;
    uint8_t stk[DEPTH];
    static const ep_json_handlers_t h = {nop_open, nop_close, nop_key, nop_value};
    size_t values = 0;
    char err[128];
    int rc, lex;

    rc = ep_json_tree_parse((const char *)data, size, DEPTH, &t, err, sizeof(err));
    ep_json_lex_init(&lx, (const char *)data, size, stk, DEPTH, &esc);
    lex = ep_json_walk(&lx, &h, &values);
    ep_buf_close(&esc);
    CHECK((rc == 0) == (lex == EP_JSON_DONE && values > 0));
    if (rc != 0) {
        CHECK(rc == EP_EPARSE && t == NULL && err[0] != '\0');
        return 0;
    }
    CHECK(check_node(ep_json_tree_root(t), 0, 1) == values);
    CHECK(ep_json_next(ep_json_tree_root(t)) == NULL);
    ep_json_tree_free(t);
    return 0;
}
