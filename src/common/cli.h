/* cli.h — the one command-line shape every krill program shares (getopt_long in each
 * (Where this part sits among the others: docs/architecture.md.)
 * program's own argparse function; this file holds what they all do alike):
 *   - `--opt value` and `--opt=value` both work (getopt_long);
 *   - numbers are parsed strictly: the whole string, range-checked; a bad one prints
 *     "PROG: OPTION: 'abc' is not a whole number from LO to HI (try --help)" and the
 *     program exits 2;
 *   - -h/--help prints the usage on stdout and exits 0; --version prints
 *     "PROG VERSION" and exits 0;
 *   - an unknown option, a missing argument or a stray operand exits 2 with
 *     "try --help" (after getopt's own message for the first two).
 * The shape of an argparse loop:
 *     static const struct option lopts[] = {{"model", required_argument, NULL, 'm'}, ...,
 *                                           CLI_OPTIONS_END};
 *     while ((c = getopt_long(argc, argv, "m:h", lopts, NULL)) != -1)
 *         switch (c) { case 'm': ...; break; default: cli_default(c, usage); }
 *     cli_no_operands(argc, argv);
 * Exiting is right here: these run before the program has anything to lose. */
#ifndef KRILL_CLI_H
#define KRILL_CLI_H

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

/* getopt_long's value for --version (past every short option and the tools' enums). */
#define CLI_OPT_VERSION 0x10000
/* The last entries of every long-option table: --help ('h'), --version, the end mark. */
#define CLI_OPTIONS_END                                                                                         \
    {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, CLI_OPT_VERSION}, { NULL, 0, NULL, 0 }

typedef void cli_usage_fn(FILE *f);

/* The program name used in messages (set once by cli_init; default "krill"). */
void cli_init(const char *prog);
const char *cli_prog(void);

long cli_long(const char *opt, const char *arg, long lo, long hi);
double cli_double(const char *opt, const char *arg, double lo, double hi);
uint64_t cli_u64(const char *opt, const char *arg); /* any whole number from 0 to 2^64-1 */
/* "KEY=VALUE" (kcat's -X, a --set override): copies KEY (non-empty, shorter than
 * keycap) into key and returns VALUE (a pointer into arg). */
const char *cli_kv(const char *opt, const char *arg, char *key, size_t keycap);
/* Non-exiting forms for parsers that report through their own channel: 0, or -1 with
 * the message in err. */
int cli_parse_long(const char *opt, const char *arg, long lo, long hi, long *out, char *err, size_t errlen);
int cli_parse_double(const char *opt, const char *arg, double lo, double hi, double *out, char *err,
                     size_t errlen);
int cli_parse_u64(const char *opt, const char *arg, uint64_t *out, char *err, size_t errlen);
int cli_parse_kv(const char *opt, const char *arg, char *key, size_t keycap, const char **value, char *err,
                 size_t errlen);

void cli_version(void) __attribute__((noreturn));          /* prints, exits 0 */
void cli_usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2))); /* exits 2 */
/* The exit for getopt's '?' and ':' cases: getopt printed the reason already. */
void cli_bad_option(void) __attribute__((noreturn));
/* The argparse switch's default case: 'h' prints usage on stdout and exits 0,
 * CLI_OPT_VERSION is cli_version, anything else cli_bad_option. */
void cli_default(int c, cli_usage_fn *usage) __attribute__((noreturn));
/* Exits 2 naming the first operand getopt left (for programs that take none). */
void cli_no_operands(int argc, char *const *argv);

/* The whole file named by an option's argument (--json-schema FILE), malloc'd and
 * NUL-terminated, its length in *len; exits 2 naming opt when it cannot be read. */
char *cli_file(const char *opt, const char *path, size_t *len);

/* A repeatable option's values in order (-X, --set): argv's strings, not copies. */
typedef struct {
    const char **items;
    size_t n;
} cli_list_t;
/* Appends; the first call makes room for argc items (no option repeats more often),
 * exits 1 when out of memory. */
void cli_list_add(cli_list_t *l, int argc, const char *item);
void cli_list_free(cli_list_t *l);

#endif
