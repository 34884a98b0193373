/* backend_module.c — finds, loads (dlopen) and remembers a backend built as a shared
 * module; backend_module.h states the search order and the rules. */
#include "backend_module.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "log.h"

/* The directory of the running program (no trailing '/'), "" when /proc cannot say. */
static void module_exe_dir(char *out, size_t n) {
    const ssize_t len = readlink("/proc/self/exe", out, n - 1);
    if (len <= 0 || (size_t)len >= n - 1) { /* unknown, or possibly truncated */
        out[0] = 0;
        return;
    }
    out[len] = 0;
    char *slash = strrchr(out, '/');
    if (slash) *slash = 0;
    else out[0] = 0;
}

/* Opens path (a file that exists, or a bare name for the dynamic linker's search) and
 * takes its table. 0; -1 with m->err filled; 1 when path is a bare name the dynamic
 * linker did not find (m->err untouched). */
static int module_open(backend_module_t *m, const char *path) {
    dlerror();
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *why = dlerror();
        /* glibc: "<name>: cannot open shared object file: ..." names the file it missed,
         * the module itself or one of the libraries it needs */
        if (!strchr(path, '/') && why && !strncmp(why, path, strlen(path)) && why[strlen(path)] == ':' &&
            strstr(why, "cannot open shared object file"))
            return 1;
        if (why && strstr(why, "undefined symbol"))
            err_set(m->err, sizeof m->err,
                    "backend '%s': cannot load the module %s: %s. The module and this program come from different "
                    "builds, or the program was linked without the build's dynamic list (-Wl,--dynamic-list, "
                    "scripts/module-syms.sh): rebuild both with `make`, or use backend \"cpu\"", m->name, path, why);
        else
            err_set(m->err, sizeof m->err,
                    "backend '%s': cannot load the module %s: %s. It needs %s: install them where its rpath or "
                    "LD_LIBRARY_PATH points, point %s at a module that loads, or use backend \"cpu\"",
                    m->name, path, why ? why : "unknown dlopen error", m->needs, m->env);
        return -1;
    }
    dlerror();
    void *sym = dlsym(h, m->symbol);
    const char *why = dlerror();
    const backend_ops_t *(*table)(void) = NULL;
    if (sym) memcpy(&table, &sym, sizeof table); /* object pointer -> function pointer (POSIX) */
    const backend_ops_t *ops = table ? table() : NULL;
    if (!ops || !ops->name || strcmp(ops->name, m->name) != 0) {
        err_set(m->err, sizeof m->err, "backend '%s': %s is not krill's %s module (%s): rebuild it with the programs "
                "(`make`), or point %s at the right file", m->name, path, m->name,
                !sym ? (why ? why : "no entry point") : "its table has another name", m->env);
        dlclose(h);
        return -1;
    }
    m->ops = ops; /* the handle stays open for the life of the process */
    LOG_INFO("backend module loaded", "backend=%s path=\"%s\"", m->name, path);
    return 0;
}

static void module_load(backend_module_t *m) {
    const char *env = getenv(m->env);
    if (env && *env) {
        if (strchr(env, '/') && access(env, F_OK) != 0)
            err_set(m->err, sizeof m->err, "backend '%s': %s=%s: no such file: point it at %s (built into build/lib/ "
                    "by `make` when nvcc is present), unset it, or use backend \"cpu\"", m->name, m->env, env, m->file);
        else
            module_open(m, env);
        return;
    }
    char dir[PATH_MAX], path[PATH_MAX + 64], looked[2 * PATH_MAX + 128] = "";
    module_exe_dir(dir, sizeof dir);
    if (dir[0]) {
        static const char *const rel[] = {"lib", "../lib"};
        for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
            if (snprintf(path, sizeof path, "%s/%s/%s", dir, rel[i], m->file) >= (int)sizeof path) continue;
            if (access(path, F_OK) == 0) {
                char real[PATH_MAX];
                module_open(m, realpath(path, real) ? real : path); /* the path in messages without ".." */
                return;
            }
            const size_t used = strlen(looked);
            if (snprintf(looked + used, sizeof looked - used, "%s/%s, ", dir, rel[i]) >= (int)(sizeof looked - used))
                looked[used] = 0; /* too long to say */
        }
    }
    if (module_open(m, m->file) <= 0) return;
    err_set(m->err, sizeof m->err,
            "backend '%s': %s not found (looked in %sthe library path). It is built with the programs when nvcc "
            "is present (`make`; it lands in build/lib/): keep it in lib/ or ../lib/ next to the program, set "
            "%s=/path/to/%s, or use backend \"cpu\"",
            m->name, m->file, looked, m->env, m->file);
}

const backend_ops_t *backend_module_ops(backend_module_t *m, char *err, size_t errlen) {
    pthread_mutex_lock(&m->mu);
    if (!m->tried) {
        m->tried = true;
        module_load(m);
    }
    const backend_ops_t *ops = m->ops;
    if (!ops) err_set(err, errlen, "%s", m->err);
    pthread_mutex_unlock(&m->mu);
    return ops;
}

bool backend_module_driver_present(backend_module_t *m) {
    pthread_mutex_lock(&m->mu);
    const bool loaded = m->ops != NULL;
    pthread_mutex_unlock(&m->mu);
    if (loaded || !m->driver) return true;
    /* kept open when it loads: the module's runtime opens the same library next */
    return dlopen(m->driver, RTLD_LAZY | RTLD_LOCAL) != NULL;
}
