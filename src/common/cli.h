/* cli.h — the one command-line shape every krill program shares (getopt_long in each
 * program's own argparse function; this file holds what they all do alike):
 *   - numbers are parsed strictly: the whole string, range-checked; a bad one prints
 *     "PROG: OPTION: 'abc' is not a whole number from LO to HI (try --help)" and the
 *     program exits 2;
 *   - --version prints "PROG VERSION";
 *   - an unknown option or a missing argument exits 2 after getopt's own message.
 * Exiting is right here: these run before the program has anything to lose. */
#ifndef KRILL_CLI_H
#define KRILL_CLI_H

#include <stdio.h>

/* The program name used in messages (set once by cli_init; default "krill"). */
void cli_init(const char *prog);
const char *cli_prog(void);

long cli_long(const char *opt, const char *arg, long lo, long hi);
double cli_double(const char *opt, const char *arg, double lo, double hi);
/* Non-exiting forms for parsers that report through their own channel: 0, or -1 with
 * the message in err. */
int cli_parse_long(const char *opt, const char *arg, long lo, long hi, long *out, char *err, size_t errlen);
int cli_parse_double(const char *opt, const char *arg, double lo, double hi, double *out, char *err,
                     size_t errlen);

void cli_version(void) __attribute__((noreturn));          /* prints, exits 0 */
void cli_usage_error(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2))); /* exits 2 */
/* The exit for getopt's '?' and ':' cases: getopt printed the reason already. */
void cli_bad_option(void) __attribute__((noreturn));

#endif
