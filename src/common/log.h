/* log.h — the one logger: levels, key=value lines with a timestamp and __func__.
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * LOG_INFO("msg", "key=%d", v) checks the level before evaluating its arguments
 * (redis serverLog, kcat KC_INFO). Output goes to stderr, one line per call:
 *   2026-11-26T06:00:00.123Z level=info fn=worker_run msg="assigned" partitions=4
 * Never pass secrets: there is no redaction here, callers keep them out. */
#ifndef KRILL_LOG_H
#define KRILL_LOG_H

#include <stdarg.h>

typedef enum { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_OFF } log_level_t;

extern volatile int log_level_current;

void log_set_level(log_level_t lvl);
/* Parses "debug|info|warn|error|off"; returns -1 when the name is unknown. */
int log_level_parse(const char *name);
/* msg is quoted; fmt (may be NULL) adds key=value pairs after it. */
void log_write(log_level_t lvl, const char *func, const char *msg, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void log_vwrite(log_level_t lvl, const char *func, const char *msg, const char *fmt, va_list ap);

#define LOG_AT(lvl, msg, ...) \
    do { if ((int)(lvl) >= log_level_current) log_write((lvl), __func__, (msg), __VA_ARGS__); } while (0)
#define LOG_DEBUG(msg, ...) LOG_AT(LOG_LVL_DEBUG, msg, __VA_ARGS__)
#define LOG_INFO(msg, ...)  LOG_AT(LOG_LVL_INFO, msg, __VA_ARGS__)
#define LOG_WARN(msg, ...)  LOG_AT(LOG_LVL_WARN, msg, __VA_ARGS__)
#define LOG_ERROR(msg, ...) LOG_AT(LOG_LVL_ERROR, msg, __VA_ARGS__)

/* Broken invariants (never input errors): print file:line and the failed condition, abort. */
#define CHECK(cond) \
    do { if (!(cond)) log_check_failed(__FILE__, __LINE__, #cond); } while (0)
void log_check_failed(const char *file, int line, const char *what) __attribute__((noreturn));

#endif
