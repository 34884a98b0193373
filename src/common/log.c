/* log.c — see log.h. One fprintf per line under a mutex so threads never interleave. */
#include "log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

volatile int log_level_current = LOG_LVL_INFO;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static const char *const log_names[] = {"debug", "info", "warn", "error", "off"};

void log_set_level(log_level_t lvl) { log_level_current = (int)lvl; }

int log_level_parse(const char *name) {
    for (int i = 0; i <= LOG_LVL_OFF; i++)
        if (name && strcmp(name, log_names[i]) == 0) return i;
    return -1;
}

void log_vwrite(log_level_t lvl, const char *func, const char *msg, const char *fmt, va_list ap) {
    char line[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ level=%s fn=%s msg=\"%s\"",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(tv.tv_usec / 1000), log_names[lvl < LOG_LVL_OFF ? lvl : LOG_LVL_ERROR],
                     func ? func : "-", msg ? msg : "");
    if (n < 0) return;
    if ((size_t)n < sizeof line - 2 && fmt && *fmt) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
        if (m > 0) n += m;
    }
    if ((size_t)n > sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    pthread_mutex_lock(&log_mu);
    fwrite(line, 1, (size_t)n, stderr);
    pthread_mutex_unlock(&log_mu);
}

void log_write(log_level_t lvl, const char *func, const char *msg, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(lvl, func, msg, fmt, ap);
    va_end(ap);
}

void log_check_failed(const char *file, int line, const char *what) {
    fprintf(stderr, "CHECK failed at %s:%d: %s\n", file, line, what);
    abort();
}
