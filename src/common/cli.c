/* cli.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "err.h"

#ifndef KRILL_VERSION
#define KRILL_VERSION "unknown"
#endif

static const char *prog_name = "krill";

void cli_init(const char *prog) { prog_name = prog; }
const char *cli_prog(void) { return prog_name; }

int cli_parse_long(const char *opt, const char *arg, long lo, long hi, long *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    long v = arg && *arg ? strtol(arg, &end, 10) : 0;
    if (!arg || !*arg || *end || errno || v < lo || v > hi) {
        err_set(err, errlen, "%s: '%s' is not a whole number from %ld to %ld", opt, arg ? arg : "", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

int cli_parse_double(const char *opt, const char *arg, double lo, double hi, double *out, char *err,
                     size_t errlen) {
    char *end;
    errno = 0;
    double v = arg && *arg ? strtod(arg, &end) : 0;
    if (!arg || !*arg || *end || errno || !isfinite(v) || v < lo || v > hi) {
        err_set(err, errlen, "%s: '%s' is not a number from %g to %g", opt, arg ? arg : "", lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

long cli_long(const char *opt, const char *arg, long lo, long hi) {
    char err[256];
    long v;
    if (cli_parse_long(opt, arg, lo, hi, &v, err, sizeof err) != 0) cli_usage_error("%s", err);
    return v;
}

double cli_double(const char *opt, const char *arg, double lo, double hi) {
    char err[256];
    double v;
    if (cli_parse_double(opt, arg, lo, hi, &v, err, sizeof err) != 0) cli_usage_error("%s", err);
    return v;
}

void cli_version(void) {
    printf("%s %s\n", prog_name, KRILL_VERSION);
    exit(0);
}

void cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog_name);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try --help)\n");
    exit(2);
}

void cli_bad_option(void) {
    fprintf(stderr, "%s: try --help\n", prog_name);
    exit(2);
}
