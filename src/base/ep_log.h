#ifndef EP_LOG_H
#define EP_LOG_H

/*
 * Structured logging to stderr. LOG_LEVEL (debug, info, warn, error) and
 * LOG_FORMAT (text, json). Never called per event on the hot path.
 *
 *   ep_log_info("http", "listening on %s:%d", addr, port);
 *
 * text: 2026-11-22T19:40:00.123Z INFO  [http] listening on 0.0.0.0:8080
 * json: {"ts":"...","level":"info","component":"http","msg":"listening on 0.0.0.0:8080"}
 */

typedef enum {
    EP_LOG_DEBUG = 0,
    EP_LOG_INFO,
    EP_LOG_WARN,
    EP_LOG_ERROR,
    EP_LOG_OFF
} ep_log_level_t;

/** Sets the level and format. Call at start-up. json != 0 selects JSON lines. */
void ep_log_configure(ep_log_level_t level, int json);

/**
 * Names the application in every JSON log line: "app", "version" and "env"
 * fields (APP_NAME, APP_VERSION, APP_ENV of seed 003). NULL or "" leaves a
 * field out. Call before the threads that log start.
 */
void ep_log_set_app(const char *name, const char *version, const char *env);
int ep_log_enabled(ep_log_level_t level);

/** Writes one line, atomically (one write(2)). Thread-safe. */
void ep_log_write(ep_log_level_t level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define ep_log_debug(comp, ...)                                                                    \
    do {                                                                                           \
        if (ep_log_enabled(EP_LOG_DEBUG)) {                                                        \
            ep_log_write(EP_LOG_DEBUG, comp, __VA_ARGS__);                                         \
        }                                                                                          \
    } while (0)
#define ep_log_info(comp, ...)  ep_log_write(EP_LOG_INFO, comp, __VA_ARGS__)
#define ep_log_warn(comp, ...)  ep_log_write(EP_LOG_WARN, comp, __VA_ARGS__)
#define ep_log_error(comp, ...) ep_log_write(EP_LOG_ERROR, comp, __VA_ARGS__)

#endif /* EP_LOG_H */
