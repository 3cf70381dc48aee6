#ifndef EP_OPT_H
#define EP_OPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/*
 * Option tables: one row per setting, with its environment variable, its
 * flag, its default, its bounds, its help and the offset of its field in the
 * struct the table describes. The core's table (ep_config.c) describes
 * ep_config_t; each queue provider owns a table of its own that describes its
 * own options struct (src/queue/<name>/), as a Fluent Bit plugin owns its
 * config_map. The same code parses, validates and prints every table.
 */

typedef enum {
    EP_OPT_INT,         /* int */
    EP_OPT_I64,         /* int64_t */
    EP_OPT_STR,         /* char[cap] */
    EP_OPT_PORT,        /* int in [min, max] */
    EP_OPT_URL,         /* char[cap]: scheme://..., trailing slashes trimmed */
    EP_OPT_ENUM,        /* char[cap]: one of choices "a|b|c" (case-insensitive), as spelt there */
    EP_OPT_SIZE,        /* int64_t: "1048576", "512k", "1m", "1g" */
    EP_OPT_RATIO,       /* double in [0, 1] */
    EP_OPT_DURATION_S,  /* whole seconds (int or int64_t: cap); choices: a bare number's unit */
    EP_OPT_DURATION_MS, /* whole milliseconds (likewise) */
    EP_OPT_BOOL,        /* int 0 or 1, from "true" | "false" (case-insensitive) */
    EP_OPT_CHOICE       /* int: the index of the value in choices "a|b|c" (case-insensitive) */
} ep_opt_type_t;

typedef struct ep_opt_s {
    ep_opt_type_t type;
    const char *env;     /* NAME of the environment variable; error messages start "NAME: " */
    const char *flag;    /* --flag, without the dashes */
    const char *def;     /* default as text ("": none of its own, the field stays as it is) */
    size_t off;          /* offset of the field in the table's struct */
    size_t cap;          /* string capacity; a duration field's size (int or int64_t) */
    int64_t min, max;    /* numbers; durations: in the field's unit */
    const char *choices; /* ENUM, CHOICE: "a|b|c"; DURATION_*: a bare number's unit, "s" or "ms" */
    const char *desc;    /* help text */
} ep_opt_t;

/**
 * A table of options and the struct it fills. The struct is the owner's
 * (ep_config_t, a provider's options); size is its sizeof.
 */
typedef struct ep_opt_table_s {
    const char *name; /* the owner: a provider's name ("kafka"), the --help group */
    const ep_opt_t *opts;
    size_t n_opts;
    size_t size;
    /**
     * Rules between the table's options, and fields derived from them, once
     * every value is set. Returns 0 or EP_ECONFIG with "NAME: why" in err.
     * May be NULL.
     */
    int (*check)(void *opts, char *err, size_t errlen);
    /** Other names of its variables, pairs {"OTHER", "NAME", ..., NULL}: OTHER is read
     * when NAME is unset (seed 003's KAFKA_BROKER_LIST). May be NULL. */
    const char *const *aliases;
} ep_opt_table_t;

/**
 * Parses val into o's field of the struct at base. Returns 0, or EP_ECONFIG
 * with "NAME: why" in err (the field is then left as it was).
 */
int ep_opt_set(void *base, const ep_opt_t *o, const char *val, char *err, size_t errlen);

/** Sets every field of t that has a default to it (the struct is zeroed first). */
void ep_opt_defaults(void *base, const ep_opt_t *opts, size_t n);

/** The row named env, or NULL. */
const ep_opt_t *ep_opt_find_env(const ep_opt_t *opts, size_t n, const char *env);

/** The row whose flag is name[0..len), or NULL. */
const ep_opt_t *ep_opt_find_flag(const ep_opt_t *opts, size_t n, const char *name, size_t len);

/** Prints one help line per row (flag, variable, default, description) to f. */
void ep_opt_usage(FILE *f, const ep_opt_t *opts, size_t n);

/** Parses a whole decimal number (spaces around allowed). 0 or -1. */
int ep_opt_parse_int(const char *s, int64_t *out);

#endif /* EP_OPT_H */
