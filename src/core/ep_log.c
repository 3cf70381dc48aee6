#include "ep_log.h"
#include "ep_buf.h"
#include "ep_error.h"
#include "ep_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static ep_log_level_t log_level = EP_LOG_INFO;
static int log_json;

static const char *level_names[] = {"debug", "info", "warn", "error", "off"};

void ep_log_configure(ep_log_level_t level, int json)
{
    log_level = level;
    log_json = json;
}

int ep_log_level_parse(const char *s, ep_log_level_t *out)
{
    for (int i = 0; i <= EP_LOG_OFF; i++) {
        if (strcasecmp(s, level_names[i]) == 0) {
            *out = (ep_log_level_t)i;
            return 0;
        }
    }
    if (strcasecmp(s, "warning") == 0) {
        *out = EP_LOG_WARN;
        return 0;
    }
    return EP_EINVAL;
}

int ep_log_enabled(ep_log_level_t level)
{
    return level >= log_level;
}

void ep_log_write(ep_log_level_t level, const char *component, const char *fmt, ...)
{
    char ts[32];
    char msg[1024];
    char line[1400];
    ep_buf_t b = EP_BUF_INIT;
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
    if (log_json) {
        ep_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, level_names[level]);
        ep_buf_put_json_str(&b, component, strlen(component));
        ep_buf_puts(&b, ",\"msg\":");
        ep_buf_put_json_str(&b, msg, strlen(msg));
        ep_buf_puts(&b, "}\n");
        if (write(STDERR_FILENO, b.data, b.len) < 0) {
            /* Nothing sensible to do when stderr is gone. */
        }
        ep_buf_close(&b);
        return;
    }
    n = snprintf(line, sizeof(line), "%s %-5s [%s] %s\n", ts, level_names[level], component, msg);
    if (n > 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        line[len - 1] = '\n';
        if (write(STDERR_FILENO, line, len) < 0) {
            /* Nothing sensible to do when stderr is gone. */
        }
    }
}
