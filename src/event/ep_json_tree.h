#ifndef EP_JSON_TREE_H
#define EP_JSON_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * A read-only JSON document tree for small documents read once (the /stats
 * answers `eventpipe status` prints, librdkafka's statistics), built on the
 * project's tokenizer (ep_json_lex.h), so it accepts exactly what the event
 * parser accepts: strict RFC 8259, UTF-8 checked.
 *
 * The tree is two arrays: nodes in document order (a container is followed by
 * its subtree; each node knows its subtree's size, so the next sibling is one
 * step away) and one text arena holding every key and string, decoded and
 * NUL-terminated, and every number as written. Lookups walk an object's
 * members in order (linear; duplicate keys: the first wins).
 *
 * Bounds: at most max_depth containers open at once (a deeper document is
 * rejected, not truncated) and at most EP_JSON_TREE_MAX_INPUT bytes of input;
 * the memory used is linear in the input (at most one node per input byte).
 *
 * Ownership: ep_json_tree_parse copies what it keeps; the input may be freed
 * once it returns. The tree owns every node and every text; the node and
 * text pointers the accessors return are valid until ep_json_tree_free.
 * A tree is immutable once built, so threads may read it concurrently.
 */

#define EP_JSON_TREE_MAX_INPUT ((size_t)64 << 20) /* largest input accepted (64 MiB) */
#define EP_JSON_TREE_DEPTH     64                 /* the default max_depth */

typedef enum {
    EP_JT_NULL,
    EP_JT_FALSE,
    EP_JT_TRUE,
    EP_JT_NUMBER, /* text as written */
    EP_JT_STRING, /* text decoded (UTF-8; may hold U+0000: use ep_json_text's len) */
    EP_JT_OBJECT,
    EP_JT_ARRAY,
} ep_json_type_t;

typedef struct ep_json_tree_s ep_json_tree_t;
typedef struct ep_json_node_s ep_json_node_t; /* owned by its tree */

/**
 * Parses json[0..len) into a new tree in *out (free with ep_json_tree_free).
 * max_depth: containers open at once, 1..255 (0 = EP_JSON_TREE_DEPTH).
 * Returns 0, EP_EPARSE (not one well-formed JSON value, too deep, or only
 * whitespace: err gets the reason and byte offset when err_len > 0),
 * EP_E2BIG (len > EP_JSON_TREE_MAX_INPUT) or EP_EINVAL (json NULL with len > 0,
 * out NULL, max_depth > 255). *out is NULL on failure. OOM aborts. Thread-safe.
 */
int ep_json_tree_parse(const char *json, size_t len, unsigned max_depth, ep_json_tree_t **out,
                       char *err, size_t err_len);

/** Frees the tree and everything it owns. NULL is a no-op. */
void ep_json_tree_free(ep_json_tree_t *t);

/** The document's value. Never NULL. */
const ep_json_node_t *ep_json_tree_root(const ep_json_tree_t *t);

/** The node's type. */
ep_json_type_t ep_json_type(const ep_json_node_t *n);

/**
 * Follows path (object keys, ending with NULL) from n: n itself for an empty
 * path. Returns NULL when a step is not an object or lacks the key, or when
 * n is NULL. Keys compare byte for byte (a key holding U+0000 never matches).
 */
const ep_json_node_t *ep_json_get(const ep_json_node_t *n, const char *const *path);

/** ep_json_get, then NULL unless the node found has type type. */
const ep_json_node_t *ep_json_get_type(const ep_json_node_t *n, const char *const *path,
                                       ep_json_type_t type);

/** Number of members (object) or elements (array); 0 for a scalar or NULL. */
size_t ep_json_count(const ep_json_node_t *n);

/**
 * The first member or element of a container, or NULL (empty, scalar, NULL).
 * Iterate: for (c = ep_json_first(n); c; c = ep_json_next(c)).
 */
const ep_json_node_t *ep_json_first(const ep_json_node_t *n);

/** The next member or element after n in its container, or NULL (last, root, NULL). */
const ep_json_node_t *ep_json_next(const ep_json_node_t *n);

/** The key of an object member (decoded, NUL-terminated), NULL otherwise. */
const char *ep_json_key(const ep_json_node_t *n);

/** The length in bytes of ep_json_key (it may hold U+0000); 0 when there is none. */
size_t ep_json_key_len(const ep_json_node_t *n);

/**
 * The text of a string (decoded) or a number (as written), NUL-terminated;
 * *len (when not NULL) gets its length in bytes. NULL for other types or NULL.
 */
const char *ep_json_text(const ep_json_node_t *n, size_t *len);

/** A string's text, or NULL when n is not a string. */
const char *ep_json_str(const ep_json_node_t *n);

/**
 * A number without fraction or exponent that fits an int64_t: true and *v.
 * False otherwise (other type, "1.0", "1e2", overflow, NULL), *v unchanged.
 */
bool ep_json_int(const ep_json_node_t *n, int64_t *v);

/** A number as a double (strtod; may round, or be ±HUGE_VAL when too large). */
bool ep_json_double(const ep_json_node_t *n, double *v);

/** True for the literal true only. */
bool ep_json_is_true(const ep_json_node_t *n);

#endif /* EP_JSON_TREE_H */
