/* testutil.c — the helpers the test programs share; see testutil.h. No cmocka here. */
#include "testutil.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "engine.h"
#include "rng.h"

/* ------------------------------------------------------------------ random data */

static uint64_t testutil_rng;

void testutil_seed(uint64_t seed) { testutil_rng = seed; }

uint64_t testutil_next(void) { return rng_next(&testutil_rng); }

float testutil_unif(void) { return (float)((testutil_next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }

void testutil_fill(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = testutil_unif() * scale;
}

void testutil_shuffle(int32_t *a, int n) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(testutil_next() % (uint64_t)(i + 1));
        int32_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* ------------------------------------------------------------------ skips */

static char testutil_skip_why[512];

void testutil_skip_note(const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    printf("SKIP: %s\n", why);
    fflush(stdout);
    if (!testutil_skip_why[0]) snprintf(testutil_skip_why, sizeof testutil_skip_why, "%s", why);
}

bool testutil_skipped(void) { return testutil_skip_why[0] != 0; }

int testutil_exit(int rc) {
    if (rc != 0 || !testutil_skipped()) return rc;
    printf("SKIP: %s\n", testutil_skip_why);
    return TESTUTIL_SKIP;
}

bool testutil_have_model(void) {
    if (access(TESTUTIL_MODEL, R_OK) == 0) return true;
    testutil_skip_note("%s missing (scripts/fetch-model.sh)", TESTUTIL_MODEL);
    return false;
}

bool testutil_sanitize(void) {
    const char *san = getenv("SANITIZE");
    return san && !strcmp(san, "1");
}

/* ------------------------------------------------------------------ files and commands */

const char *testutil_build_dir(void) {
    const char *build = getenv("KRILL_BUILD");
    return build && *build ? build : "build";
}

int testutil_tmpdir(char *dir, size_t n, const char *name) {
    int len = snprintf(dir, n, "%s/test-tmp", testutil_build_dir());
    if (len < 0 || (size_t)len >= n) return -1;
    mkdir(dir, 0755); /* exists already but for the first test: mkdtemp reports real failures */
    size_t used = (size_t)len;
    len = snprintf(dir + used, n - used, "/%s.XXXXXX", name);
    if (len < 0 || (size_t)len >= n - used) return -1;
    return mkdtemp(dir) ? 0 : -1;
}

int testutil_rmtree(const char *dir) { return testutil_run("rm -rf '%s'", dir) == 0 ? 0 : -1; }

void *testutil_read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (!p) return NULL;
    p[n] = 0;
    if (len) *len = (size_t)n;
    return p;
}

int testutil_write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    int ok = n == 0 || fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int testutil_run(const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (len < 0 || (size_t)len >= sizeof cmd) {
        fprintf(stderr, "testutil_run: command too long: %.80s...\n", cmd);
        return -1;
    }
    int rc = system(cmd);
    return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int testutil_write_gguf(const char *script, const char *dir, const char *args) {
    if (access(TESTUTIL_PYTHON, X_OK) != 0) {
        testutil_skip_note("%s missing (scripts/setup.sh creates it): cannot run tests/reference/%s", TESTUTIL_PYTHON,
                           script);
        return TESTUTIL_SKIP;
    }
    if (testutil_run("mkdir -p '%s' && " TESTUTIL_PYTHON " tests/reference/%s '%s' %s >'%s.log' 2>&1", dir, script, dir,
                     args ? args : "", dir) == 0)
        return 0;
    fprintf(stderr, "tests/reference/%s failed: see %s.log\n", script, dir);
    if (testutil_run("cat '%s.log' >&2", dir)) {}
    return 1;
}

/* ------------------------------------------------------------------ small helpers */

void *testutil_xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "%s: out of host memory (%zu bytes)\n", program_invocation_short_name, n);
        exit(1);
    }
    return p;
}

long testutil_env_long(const char *name, long def, long lo, long hi) {
    const char *v = getenv(name);
    return v ? cli_long(name, v, lo, hi) : def;
}

int testutil_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

double testutil_nerr(const float *got, const double *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den == 0 ? sqrt(num) : sqrt(num / den);
}

int testutil_engine_run(engine_t *e, const engine_request_t *q, int n, engine_result_t *r, char *err,
                        size_t errlen) {
    for (int i = 0; i < n; i++) {
        char sub[384];
        if (engine_submit(e, &q[i], sub, sizeof(sub)) != ENGINE_OK) {
            snprintf(err, errlen, "submit %d: %s", i, sub);
            return -1;
        }
    }
    int got = 0;
    while (got < n) {
        engine_step(e);
        got += (int)engine_poll(e, r + got, (size_t)(n - got));
    }
    for (int i = 0; i < n; i++) /* poll order is finish order: sort by id */
        for (int j = i + 1; j < n; j++)
            if (r[j].id < r[i].id) {
                engine_result_t t = r[i];
                r[i] = r[j];
                r[j] = t;
            }
    return 0;
}
