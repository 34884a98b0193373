/* err.h — the one way to fill a caller's error buffer (char *err, size_t errlen).
 * err may be NULL or errlen 0: then nothing is written. Messages say what is wrong
 * and what to do about it. */
#ifndef KRILL_ERR_H
#define KRILL_ERR_H

#include <stddef.h>

void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
