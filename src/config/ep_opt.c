/*
 * Option tables (ep_opt.h): parsing, defaults and help of one row or table,
 * whoever owns it.
 */
#include "config/ep_opt.h"
#include "base/ep_duration.h"
#include "base/ep_error.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int ep_opt_parse_int(const char *s, int64_t *out)
{
    char *end;
    long long v;

    while (isspace((unsigned char)*s)) {
        s++;
    }
    if (*s == '\0') {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s) {
        return -1;
    }
    while (isspace((unsigned char)*end)) {
        end++;
    }
    if (*end != '\0') {
        return -1;
    }
    *out = v;
    return 0;
}

/* "1048576", "512k", "1m", "1g" (binary units). */
static int parse_size(const char *s, int64_t *out)
{
    char *end;
    long long v;
    int64_t mul = 1;

    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || end == s || v < 0) {
        return -1;
    }
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'k':
        mul = 1024;
        end++;
        break;
    case 'm':
        mul = 1024 * 1024;
        end++;
        break;
    case 'g':
        mul = 1024 * 1024 * 1024;
        end++;
        break;
    default:
        return -1;
    }
    if (*end == 'b' || *end == 'B') {
        end++;
    }
    if (*end != '\0' || v > INT64_MAX / mul) {
        return -1;
    }
    *out = v * mul;
    return 0;
}

/* A duration option's value, in its field's unit. */
static int set_duration(char *field, const ep_opt_t *o, const char *val, char *err, size_t errlen)
{
    int64_t unit = o->type == EP_OPT_DURATION_S ? EP_S : EP_MS;
    int64_t bare = strcmp(o->choices, "ms") == 0 ? EP_MS : EP_S;
    int64_t ns, v;
    const char *why = NULL;
    char lo[32], hi[32];

    if (ep_duration_parse_bare(val, bare, &ns, &why) != 0) {
        snprintf(err, errlen, "%s: '%s' is not a duration: %s (a bare number is %s)", o->env, val,
                 why, o->choices);
        return EP_ECONFIG;
    }
    if (ns % unit != 0) {
        snprintf(err, errlen, "%s: '%s' is finer than this setting takes (whole %s)", o->env, val,
                 unit == EP_S ? "seconds" : "milliseconds");
        return EP_ECONFIG;
    }
    v = ns / unit;
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "%s: '%s' is out of range [%s, %s]", o->env, val,
                 ep_duration_format(o->min * unit, lo, sizeof(lo)),
                 o->max > INT64_MAX / unit ? "2562047h"
                                           : ep_duration_format(o->max * unit, hi, sizeof(hi)));
        return EP_ECONFIG;
    }
    if (o->cap == sizeof(int64_t)) {
        *(int64_t *)field = v;
    } else {
        *(int *)field = (int)v;
    }
    return 0;
}

/* The index of val in "a|b|c" (case-insensitive), or -1. */
static int choice_index(const char *choices, const char *val, const char **spelt, size_t *len)
{
    const char *c = choices;
    size_t n = strlen(val);

    for (int i = 0; *c; i++) {
        const char *bar = strchr(c, '|');
        size_t l = bar ? (size_t)(bar - c) : strlen(c);
        if (l == n && strncasecmp(c, val, n) == 0) {
            *spelt = c;
            *len = l;
            return i;
        }
        c += l + (bar ? 1 : 0);
    }
    return -1;
}

static int set_number(char *field, const ep_opt_t *o, const char *val, char *err, size_t errlen)
{
    int64_t v = 0;

    if ((o->type == EP_OPT_SIZE ? parse_size(val, &v) : ep_opt_parse_int(val, &v)) != 0) {
        snprintf(err, errlen, "%s: '%s' is not a%s number", o->env, val,
                 o->type == EP_OPT_SIZE ? " size" : "n integer");
        return EP_ECONFIG;
    }
    if (v < o->min || v > o->max) {
        snprintf(err, errlen, "%s: %lld is out of range [%lld, %lld]", o->env, (long long)v,
                 (long long)o->min, (long long)o->max);
        return EP_ECONFIG;
    }
    if (o->type == EP_OPT_I64 || o->type == EP_OPT_SIZE) {
        *(int64_t *)field = v;
    } else {
        *(int *)field = (int)v;
    }
    return 0;
}

static int set_string(char *field, const ep_opt_t *o, const char *val, char *err, size_t errlen)
{
    if (o->type == EP_OPT_URL && (strstr(val, "://") == NULL || strlen(val) < 8)) {
        snprintf(err, errlen, "%s: '%s' is not a URL (expected scheme://host:port)", o->env, val);
        return EP_ECONFIG;
    }
    if (strlen(val) >= o->cap) {
        snprintf(err, errlen, "%s: value is longer than %zu bytes", o->env, o->cap - 1);
        return EP_ECONFIG;
    }
    snprintf(field, o->cap, "%s", val);
    /* A trailing slash on a URL would double up in "URL/path". */
    if (o->type == EP_OPT_URL) {
        size_t len = strlen(field);
        while (len > 0 && field[len - 1] == '/') {
            field[--len] = '\0';
        }
    }
    return 0;
}

int ep_opt_set(void *base, const ep_opt_t *o, const char *val, char *err, size_t errlen)
{
    char *field = (char *)base + o->off;

    switch (o->type) {
    case EP_OPT_DURATION_S:
    case EP_OPT_DURATION_MS:
        return set_duration(field, o, val, err, errlen);
    case EP_OPT_INT:
    case EP_OPT_I64:
    case EP_OPT_PORT:
    case EP_OPT_SIZE:
        return set_number(field, o, val, err, errlen);
    case EP_OPT_RATIO: {
        char *end;
        double d;
        errno = 0;
        d = strtod(val, &end);
        if (errno != 0 || end == val || *end != '\0' || !(d >= 0.0 && d <= 1.0)) {
            snprintf(err, errlen, "%s: '%s' is not a number in [0, 1]", o->env, val);
            return EP_ECONFIG;
        }
        memcpy(field, &d, sizeof(d)); /* the field is a double */
        return 0;
    }
    case EP_OPT_ENUM:
    case EP_OPT_BOOL:
    case EP_OPT_CHOICE: {
        const char *choices = o->type == EP_OPT_BOOL ? "true|false" : o->choices, *spelt;
        size_t len;
        int i = choice_index(choices, val, &spelt, &len);
        if (i < 0) {
            snprintf(err, errlen, "%s: '%s' is not one of %s", o->env, val, choices);
            return EP_ECONFIG;
        }
        if (o->type == EP_OPT_ENUM) {
            snprintf(field, o->cap, "%.*s", (int)len, spelt);
        } else {
            *(int *)field = o->type == EP_OPT_BOOL ? i == 0 : i;
        }
        return 0;
    }
    case EP_OPT_URL:
    case EP_OPT_STR:
        return set_string(field, o, val, err, errlen);
    }
    return EP_ECONFIG;
}

void ep_opt_defaults(void *base, const ep_opt_t *opts, size_t n)
{
    char err[256];

    for (size_t i = 0; i < n; i++) {
        /* "": no default of its own (SERVER_ADDRESS, an alias such as SERVER_SHUTDOWN_TIMEOUT). */
        int rc = opts[i].def[0] ? ep_opt_set(base, &opts[i], opts[i].def, err, sizeof(err)) : 0;
        (void)rc;
    }
}

const ep_opt_t *ep_opt_find_env(const ep_opt_t *opts, size_t n, const char *env)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(opts[i].env, env) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

const ep_opt_t *ep_opt_find_flag(const ep_opt_t *opts, size_t n, const char *name, size_t len)
{
    for (size_t i = 0; i < n; i++) {
        if (strlen(opts[i].flag) == len && strncmp(opts[i].flag, name, len) == 0) {
            return &opts[i];
        }
    }
    return NULL;
}

void ep_opt_usage(FILE *f, const ep_opt_t *opts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const ep_opt_t *o = &opts[i];
        if (o->type == EP_OPT_DURATION_S || o->type == EP_OPT_DURATION_MS) {
            fprintf(f, "  --%-22s %-22s %-24s [duration: 15s, 500ms, 1m30s; bare number: %s] %s\n",
                    o->flag, o->env, o->def[0] ? o->def : "-", o->choices, o->desc);
        } else {
            fprintf(f, "  --%-22s %-22s %-24s %s\n", o->flag, o->env, o->def[0] ? o->def : "-",
                    o->desc);
        }
    }
}
