/* backend_module.h — a backend built as a shared module (the CUDA backend:
 * libkrill-cuda.so), loaded with dlopen the first time it is needed, so that a program
 * which never uses it never maps it, nor the libraries it links (cudart, cuBLAS: about
 * 160 MB of resident memory).
 * (Where this part sits among the others: docs/architecture.md.)
 *
 * Only backend.c uses it, for its registry rows. Rules:
 * - The module is looked for, in order: the path in the environment variable `env`
 *   (nothing else then); `<program's directory>/lib/`; `<program's directory>/../lib/`
 *   (build/tests/ -> build/lib/, /opt/krill/bin/ -> /opt/krill/lib/); the dynamic
 *   linker's own search (LD_LIBRARY_PATH, ld.so.cache).
 * - It is opened RTLD_NOW | RTLD_LOCAL, once per process (thread-safe); success and
 *   failure are both remembered, and never unloaded. The module resolves the engine
 *   functions it calls (log, err, quant, gpuq, the dtype helpers) from the program,
 *   which exports exactly those (the build's dynamic list, scripts/module-syms.sh).
 * - A module that exists but cannot be loaded is the error reported (the dlerror text
 *   names the missing library or symbol); the search does not go on past it. */
#ifndef KRILL_BACKEND_MODULE_H
#define KRILL_BACKEND_MODULE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "backend.h"

typedef struct {
    const char *name;   /* the backend's name in messages: "cuda" */
    const char *file;   /* "libkrill-cuda.so" */
    const char *env;    /* "KRILL_CUDA_MODULE": a path that replaces the search */
    const char *symbol; /* the module's entry, const backend_ops_t *(*)(void): "backend_cuda_ops" */
    const char *driver; /* a library without which no device can exist ("libcuda.so.1"), or NULL */
    const char *needs;  /* what the module links, for the message when it cannot load */
    /* the outcome of the first load, under mu */
    pthread_mutex_t mu;
    bool tried;
    const backend_ops_t *ops;
    char err[768];
    bool warned; /* backend.c: "auto" said once that it could not load */
} backend_module_t;

#define BACKEND_MODULE_INIT(name_, file_, env_, symbol_, driver_, needs_) \
    {.name = (name_), .file = (file_), .env = (env_), .symbol = (symbol_), .driver = (driver_), \
     .needs = (needs_), .mu = PTHREAD_MUTEX_INITIALIZER}

/* The module's table: loads it on the first call. NULL with the reason in err (what is
 * missing, and what to do) when it cannot be found or loaded. */
const backend_ops_t *backend_module_ops(backend_module_t *m, char *err, size_t errlen);

/* False when m->driver cannot be loaded, so that no device of this backend can be
 * present (the CUDA runtime finds the GPU through libcuda.so.1): "auto" then skips the
 * module without loading it. True when m has no driver, or the module is already loaded. */
bool backend_module_driver_present(backend_module_t *m);

#endif
