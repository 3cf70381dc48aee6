#include "base/ep_log.h"
#include "base/ep_error.h"
#include "base/ep_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static ep_log_level_t log_level = EP_LOG_INFO;
static int log_json;
static char app_fields[4096]; /* ,"app":"...","version":"...","env":"..." (ep_log_set_app) */

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void ep_log_configure(ep_log_level_t level, int json)
{
    log_level = level;
    log_json = json;
}

int ep_log_enabled(ep_log_level_t level)
{
    return level >= log_level;
}

/*
 * Log lines carry strings from clients (a request path in the access log, an
 * error text from a peer): every byte that could end the line, move the
 * cursor or start a terminal escape is written escaped, so a client cannot
 * forge a line or repaint a terminal. Kept: printable ASCII and well-formed
 * UTF-8 other than C1 controls. Escaped: C0 controls, DEL, C1 controls
 * (U+0080-U+009F) and bytes that are not well-formed UTF-8; as \xNN per byte
 * in text (and a backslash as \\, so that an escape cannot be faked), as
 * \u00NN in JSON (the byte's value for a malformed byte).
 */

/* Length (2 to 4) of the well-formed UTF-8 sequence at s[0, n) (RFC 3629), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xbf;
    size_t len;

    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        lo = c == 0xe0 ? 0xa0 : 0x80; /* no overlong forms */
        hi = c == 0xed ? 0x9f : 0xbf; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf; /* nothing past U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) {
            return 0;
        }
    }
    return len == 2 && c == 0xc2 && s[1] < 0xa0 ? 0 : len; /* C1 controls: escaped */
}

/* 1 when s[0, n) is printable ASCII without '"' and '\' (most lines): nothing to escape. */
static int plain_ascii(const char *s, size_t n)
{
    unsigned bad = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bad |= (unsigned)(c < 0x20) | (unsigned)(c >= 0x7f) | (unsigned)(c == '"') |
               (unsigned)(c == '\\');
    }
    return !bad;
}

/* A log line being built, on the stack: large enough for any message escaped. */
typedef struct line_s {
    char text[8192];
    size_t len;
} line_t;

static void line_put(line_t *l, const void *p, size_t n)
{
    if (n > sizeof(l->text) - 1 - l->len) {
        n = sizeof(l->text) - 1 - l->len; /* cannot happen: the message is at most 1 KB */
    }
    memcpy(l->text + l->len, p, n);
    l->len += n;
}

static void line_puts(line_t *l, const char *s)
{
    line_put(l, s, strlen(s));
}

/* Appends s[0, n) escaped for a log line: text (\xNN) or the inside of a JSON string. */
static void put_escaped(line_t *l, const char *s, size_t n, int json)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;

    if (plain_ascii(s, n)) {
        line_put(l, s, n);
        return;
    }
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        size_t k;
        char e[8];

        if (c >= 0x20 && c < 0x7f) {
            k = 0;
            if (c == '\\' || (json && c == '"')) {
                e[k++] = '\\';
            }
            e[k++] = (char)c;
            line_put(l, e, k);
            i++;
        } else if (c >= 0x80 && (k = utf8_len(p + i, n - i)) > 0) {
            line_put(l, s + i, k);
            i += k;
        } else {
            /* A C1 control arrives as C2 80..9F: escape its code point in JSON. */
            if (json && c == 0xc2 && i + 1 < n && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
                c = p[++i];
            }
            memcpy(e, json ? "\\u00" : "\\x", json ? 4 : 2);
            k = json ? 4 : 2;
            e[k++] = hex[c >> 4];
            e[k++] = hex[c & 15];
            line_put(l, e, k);
            i++;
        }
    }
}

void ep_log_set_app(const char *name, const char *version, const char *env)
{
    const char *keys[3] = {"app", "version", "env"}, *vals[3] = {name, version, env};
    line_t l;

    l.len = 0;
    for (int i = 0; i < 3; i++) {
        if (vals[i] && vals[i][0]) {
            line_puts(&l, ",\"");
            line_puts(&l, keys[i]);
            line_puts(&l, "\":\"");
            put_escaped(&l, vals[i], strnlen(vals[i], 128), 1);
            line_puts(&l, "\"");
        }
    }
    if (l.len >= sizeof(app_fields)) {
        l.len = 0; /* cannot happen: three values of at most 128 bytes, escaped */
    }
    memcpy(app_fields, l.text, l.len);
    app_fields[l.len] = '\0';
}

void ep_log_write(ep_log_level_t level, const char *component, const char *fmt, ...)
{
    char ts[32];
    char msg[1024];
    line_t l;
    va_list ap;
    int n;

    if (level < log_level || level >= EP_LOG_OFF) {
        return;
    }
    ep_time_format_rfc3339(ep_time_now_ms(), ts, sizeof(ts));
    va_start(ap, fmt);
    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((size_t)n >= sizeof(msg)) {
        n = (int)sizeof(msg) - 1; /* truncated */
    }
    l.len = 0;
    if (log_json) {
        line_puts(&l, "{\"ts\":\"");
        line_puts(&l, ts);
        line_puts(&l, "\",\"level\":\"");
        line_puts(&l, level_names[level]);
        line_puts(&l, "\",\"component\":\"");
        put_escaped(&l, component, strlen(component), 1);
        line_puts(&l, "\",\"msg\":\"");
        put_escaped(&l, msg, (size_t)n, 1);
        line_puts(&l, "\"");
        line_puts(&l, app_fields);
        line_puts(&l, "}\n");
    } else {
        char pre[64];
        int pn = snprintf(pre, sizeof(pre), "%s %-5s [", ts, level_names[level]);
        line_put(&l, pre, pn > 0 ? (size_t)pn : 0);
        put_escaped(&l, component, strlen(component), 0);
        line_puts(&l, "] ");
        put_escaped(&l, msg, (size_t)n, 0);
        line_puts(&l, "\n");
    }
    if (write(STDERR_FILENO, l.text, l.len) < 0) {
        /* Nothing sensible to do when stderr is gone. */
    }
}
