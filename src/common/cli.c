/* cli.c — see cli.h. */
#include "cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
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

int cli_parse_u64(const char *opt, const char *arg, uint64_t *out, char *err, size_t errlen) {
    char *end;
    errno = 0;
    /* strtoull would take "-1" as 2^64-1: only digits are a whole number here */
    unsigned long long v = arg && *arg >= '0' && *arg <= '9' ? strtoull(arg, &end, 10) : 0;
    if (!arg || *arg < '0' || *arg > '9' || *end || errno) {
        err_set(err, errlen, "%s: '%s' is not a whole number from 0 to %llu", opt, arg ? arg : "",
                (unsigned long long)UINT64_MAX);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

int cli_parse_kv(const char *opt, const char *arg, char *key, size_t keycap, const char **value, char *err,
                 size_t errlen) {
    const char *eq = arg ? strchr(arg, '=') : NULL;
    if (!eq || eq == arg || (size_t)(eq - arg) >= keycap) {
        err_set(err, errlen, "%s: '%s' is not KEY=VALUE%s", opt, arg ? arg : "",
                eq && eq != arg ? " (the key is too long)" : "");
        return -1;
    }
    memcpy(key, arg, (size_t)(eq - arg));
    key[eq - arg] = 0;
    *value = eq + 1;
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

uint64_t cli_u64(const char *opt, const char *arg) {
    char err[256];
    uint64_t v;
    if (cli_parse_u64(opt, arg, &v, err, sizeof err) != 0) cli_usage_error("%s", err);
    return v;
}

const char *cli_kv(const char *opt, const char *arg, char *key, size_t keycap) {
    char err[512];
    const char *v;
    if (cli_parse_kv(opt, arg, key, keycap, &v, err, sizeof err) != 0) cli_usage_error("%s", err);
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

void cli_default(int c, cli_usage_fn *usage) {
    if (c == 'h') {
        usage(stdout);
        exit(0);
    }
    if (c == CLI_OPT_VERSION) cli_version();
    cli_bad_option();
}

void cli_no_operands(int argc, char *const *argv) {
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
}

void cli_list_add(cli_list_t *l, int argc, const char *item) {
    if (!l->items && !(l->items = calloc((size_t)argc + 1, sizeof *l->items))) {
        fprintf(stderr, "%s: out of memory\n", prog_name);
        exit(1);
    }
    l->items[l->n++] = item;
}

void cli_list_free(cli_list_t *l) {
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

char *cli_file(const char *opt, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) cli_usage_error("%s: cannot open '%s': %s", opt, path, strerror(errno));
    buf_t b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad || b.oom) cli_usage_error("%s: cannot read '%s'", opt, path);
    char *s = buf_detach(&b, len);
    if (!s) s = strdup(""), *len = 0;
    if (!s) cli_usage_error("%s: out of memory", opt);
    return s;
}
