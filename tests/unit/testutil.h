/* testutil.h — what the unit tests (tests/unit) and the GPU test programs (tests/gpu)
 * share, so that each test says only what it checks (llm.c's dev/cuda/common.h idea):
 *   - one seeded random stream for test data: splitmix64 (src/common/rng.h), the same
 *     sequence every test carried its own copy of, so data and vectors are unchanged;
 *   - the skip convention: a test whose prerequisite is missing prints "SKIP: why" and
 *     its binary exits 77 (scripts/run-tests.sh shows a skip, never a pass);
 *   - the default model, the test venv's Python and the GGUF files it writes from
 *     tests/reference/ (Python scripts) into $KRILL_BUILD at test time;
 *   - files, shell commands, environment numbers and small numeric helpers.
 * testutil.c needs no cmocka (the tests/gpu programs build without it): the cmocka
 * shorthands are the macros at the end. Everything here is for test programs only;
 * failures print a message and return a status, never abort a test half-way. */
#ifndef KRILL_TESTUTIL_H
#define KRILL_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#define TESTUTIL_MODEL "models/SmolLM2-135M-Instruct.Q4_1.gguf" /* scripts/fetch-model.sh */
#define TESTUTIL_PYTHON ".cache/pyenv/bin/python"                /* scripts/setup.sh */
#define TESTUTIL_SKIP 77                                         /* a test binary's "skipped" */

/* ---- random test data: one splitmix64 stream per program (seed 0 until seeded) */
void testutil_seed(uint64_t seed);
uint64_t testutil_next(void);                        /* the next splitmix64 output */
float testutil_unif(void);                           /* uniform in [-1, 1), 24 bits */
void testutil_fill(float *x, size_t n, float scale); /* x[i] = testutil_unif() * scale */
void testutil_shuffle(int32_t *a, int n);            /* Fisher-Yates, j = next % (i + 1) from the top */

/* ---- skips: the first reason is kept for the binary's last line */
void testutil_skip_note(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* prints "SKIP: ..." */
bool testutil_skipped(void);
/* main's return value: rc, or 77 (after "SKIP: <first reason>") when rc is 0 and a
 * part was skipped. */
int testutil_exit(int rc);
/* The default model is readable; otherwise notes "TESTUTIL_MODEL missing". */
bool testutil_have_model(void);
/* SANITIZE=1 in the environment (run-tests.sh under make test SANITIZE=1). */
bool testutil_sanitize(void);

/* ---- files and commands ($KRILL_BUILD is set by scripts/run-tests.sh) */
const char *testutil_build_dir(void); /* $KRILL_BUILD, else "build" */
/* dir = "<build>/test-tmp/<name>.XXXXXX", created; 0 or -1. */
int testutil_tmpdir(char *dir, size_t n, const char *name);
int testutil_rmtree(const char *dir); /* 0 or -1 */
/* The whole file, malloc'd with a NUL after it; NULL when it cannot be read. */
void *testutil_read_file(const char *path, size_t *len);
int testutil_write_file(const char *path, const void *p, size_t n); /* 0 or -1 */
/* Runs a shell command; its exit status, or -1 when it did not exit normally. */
int testutil_run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Writes GGUF files with the test venv's Python: `mkdir -p dir && python
 * tests/reference/<script> 'dir' <args>`, output in "<dir>.log". Returns 0; 77 when
 * the venv is missing (noted as a skip); 1 when the writer failed (its log is shown). */
int testutil_write_gguf(const char *script, const char *dir, const char *args);

/* ---- the engine */
/* Submits the n requests (engine.h), steps until all have finished and leaves their
 * results in res sorted by id (release each with engine_result_clear). 0, or -1 with
 * err naming the request engine_submit refused. */
int testutil_engine_run(engine_t *e, const engine_request_t *reqs, int n, engine_result_t *res, char *err,
                        size_t errlen);

/* ---- small helpers */
void *testutil_xmalloc(size_t n); /* malloc that exits 1 with a message when memory runs out */
/* An integer from the environment (benchmark knobs): def when unset; a malformed or
 * out-of-range value exits 2 naming the variable (src/common/cli.h). */
long testutil_env_long(const char *name, long def, long lo, long hi);
int testutil_argmax(const float *x, int n); /* the first index of the maximum */
/* Normalised L2 error ||got - ref|| / ||ref|| (||got - ref|| when ref is all zero). */
double testutil_nerr(const float *got, const double *ref, size_t n);

/* ---- cmocka shorthands (macros: testutil.c does not link cmocka) */
#define TESTUTIL_NEED_MODEL()                    \
    do {                                         \
        if (!testutil_have_model()) skip();      \
    } while (0)

#endif
