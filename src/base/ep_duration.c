/*
 * Go-style durations ("1m30s", "500ms"): parsing with exact integer
 * arithmetic (the fraction is scaled per unit without floating point, as Go
 * does) and refusal of anything past INT64_MAX nanoseconds (~292 years).
 */
#include "base/ep_duration.h"

#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int64_t ns;
} units[] = {
    {"ns", EP_NS},        {"us", EP_US}, {"\xc2\xb5s", EP_US}, /* µs, U+00B5 micro sign */
    {"\xce\xbcs", EP_US},                                      /* μs, U+03BC greek mu */
    {"ms", EP_MS},        {"s", EP_S},   {"m", 60 * EP_S},     {"h", 3600 * EP_S},
};

int ep_duration_parse(const char *s, int64_t *ns, const char **why)
{
    const char *p = s;
    uint64_t total = 0;

    if (s == NULL || *s == '\0') {
        *why = "empty duration";
        return -1;
    }
    if (*p == '-') {
        *why = "negative durations are not allowed";
        return -1;
    }
    if (*p == '+') {
        p++;
    }
    if (strcmp(p, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (*p == '\0') {
        *why = "expected numbers with units, e.g. 15s, 500ms, 1m30s";
        return -1;
    }
    while (*p) {
        uint64_t whole = 0, frac = 0, scale = 1, unit = 0, v;
        int digits = 0, overflow = 0;
        const char *u;
        size_t ulen;

        while (*p >= '0' && *p <= '9') {
            if (whole > (UINT64_C(1) << 63) / 10) {
                overflow = 1;
            } else {
                whole = whole * 10 + (uint64_t)(*p - '0');
            }
            p++;
            digits++;
        }
        if (*p == '.') {
            p++;
            while (*p >= '0' && *p <= '9') {
                /* Digits past 1e18 cannot change a value in ns: read and drop them. */
                if (scale < UINT64_C(1000000000000000000)) {
                    frac = frac * 10 + (uint64_t)(*p - '0');
                    scale *= 10;
                }
                p++;
                digits++;
            }
        }
        if (digits == 0) {
            *why = "expected numbers with units, e.g. 15s, 500ms, 1m30s";
            return -1;
        }
        u = p;
        while (*p && !(*p >= '0' && *p <= '9') && *p != '.') {
            p++;
        }
        ulen = (size_t)(p - u);
        if (ulen == 0) {
            *why = "missing unit (one of ns, us, ms, s, m, h), e.g. 15s";
            return -1;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strlen(units[i].name) == ulen && memcmp(units[i].name, u, ulen) == 0) {
                unit = (uint64_t)units[i].ns;
                break;
            }
        }
        if (unit == 0) {
            *why = "unknown unit (use ns, us, ms, s, m or h)";
            return -1;
        }
        if (overflow || whole > (uint64_t)INT64_MAX / unit) {
            *why = "out of range (at most 2562047h47m16.854775807s)";
            return -1;
        }
        v = whole * unit;
        if (frac > 0) {
            /* frac/scale of a unit, in ns, rounded down: frac * unit / scale without overflow. */
            v += (uint64_t)((double)frac * ((double)unit / (double)scale));
            if (v > (uint64_t)INT64_MAX) {
                *why = "out of range (at most 2562047h47m16.854775807s)";
                return -1;
            }
        }
        total += v;
        if (total > (uint64_t)INT64_MAX) {
            *why = "out of range (at most 2562047h47m16.854775807s)";
            return -1;
        }
    }
    *ns = (int64_t)total;
    return 0;
}

int ep_duration_parse_bare(const char *s, int64_t bare_unit_ns, int64_t *ns, const char **why)
{
    const char *p = s;
    uint64_t v = 0;

    if (s != NULL && *p >= '0' && *p <= '9') {
        while (*p >= '0' && *p <= '9') {
            if (v > (uint64_t)INT64_MAX / 10) {
                *why = "out of range";
                return -1;
            }
            v = v * 10 + (uint64_t)(*p - '0');
            p++;
        }
        if (*p == '\0') {
            if (v > (uint64_t)(INT64_MAX / bare_unit_ns)) {
                *why = "out of range";
                return -1;
            }
            *ns = (int64_t)v * bare_unit_ns;
            return 0;
        }
    }
    return ep_duration_parse(s, ns, why);
}

/* Appends "<v / div>[.<fraction>]" trimmed of trailing zeros, then unit. */
static size_t put_part(char *b, size_t len, uint64_t v, uint64_t div, const char *unit)
{
    char frac[24] = "";
    uint64_t f = v % div;
    int n;

    if (f) {
        size_t k = 0;
        frac[k++] = '.';
        for (uint64_t d = div / 10; d > 0 && k < sizeof(frac) - 1; d /= 10) {
            frac[k++] = (char)('0' + f / d % 10);
        }
        while (k > 1 && frac[k - 1] == '0') {
            k--;
        }
        frac[k] = '\0';
    }
    n = snprintf(b, len, "%llu%s%s", (unsigned long long)(v / div), frac, unit);
    return n < 0 ? 0 : (size_t)n >= len ? len - 1 : (size_t)n;
}

char *ep_duration_format(int64_t ns, char *buf, size_t len)
{
    uint64_t v = ns < 0 ? 0 - (uint64_t)ns : (uint64_t)ns;
    size_t o = 0;

    if (len == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (ns < 0 && len > 1) {
        buf[o++] = '-';
        buf[o] = '\0';
    }
    if (v == 0) {
        snprintf(buf, len, "0s");
    } else if (v < (uint64_t)EP_US) {
        put_part(buf + o, len - o, v, 1, "ns");
    } else if (v < (uint64_t)EP_MS) {
        put_part(buf + o, len - o, v, (uint64_t)EP_US, "us");
    } else if (v < (uint64_t)EP_S) {
        put_part(buf + o, len - o, v, (uint64_t)EP_MS, "ms");
    } else {
        uint64_t h = v / (3600 * (uint64_t)EP_S), m = v / (60 * (uint64_t)EP_S) % 60;
        if (h) {
            o += (size_t)snprintf(buf + o, len - o, "%lluh", (unsigned long long)h);
        }
        if (h || m) {
            o += (size_t)snprintf(buf + o, len - o, "%llum", (unsigned long long)m);
        }
        if (o < len) {
            put_part(buf + o, len - o, v % (60 * (uint64_t)EP_S), (uint64_t)EP_S, "s");
        }
    }
    return buf;
}
