/* backend.c — the backend registry: which backends this binary has, picking one by
 * name, opening it; plus the dtype helpers every backend shares.
 *
 * The one place that knows which backends were built: the only #ifdef KRILL_CUDA in
 * the engine. A backend's defaults live in its own table (backend.h), never here.
 * The CUDA backend is a shared module (libkrill-cuda.so, backend_module.h) loaded on
 * first use, so a CPU run never maps the CUDA libraries; KRILL_CUDA_STATIC (the CPU
 * emulator, tests/gpu/emu/build.sh) links its table into the program instead. */
#include "backend.h"

#include <stdlib.h>
#include <string.h>

#include "backend_module.h"
#include "cpu/qmat.h"
#include "err.h"
#include "gpuq.h"
#include "log.h"

size_t backend_dtype_size(backend_dtype_t t) {
    switch (t) {
    case BACKEND_DT_F32: return 4;
    case BACKEND_DT_F16: return 2;
    case BACKEND_DT_BF16: return 2;
    case BACKEND_DT_Q8:
    case BACKEND_DT_Q4:
    case BACKEND_DT_GQ8_0:
    case BACKEND_DT_GQ4_0:
    case BACKEND_DT_GQ4_1:
    case BACKEND_DT_GQ4_K:
    case BACKEND_DT_GQ6_K: return 0; /* no per-element size: backend_weight_bytes */
    }
    return 0;
}

size_t backend_weight_bytes(backend_dtype_t t, int64_t rows, int64_t cols) {
    if (t == BACKEND_DT_Q8 || t == BACKEND_DT_Q4) return qmat_bytes(t == BACKEND_DT_Q8 ? QMAT_Q8 : QMAT_Q4, rows, cols);
    if (rows <= 0 || cols <= 0) return 0;
    const int q = backend_dtype_gpuq(t);
    if (q >= 0) return (size_t)rows * gpuq_row_bytes((gpuq_type_t)q, cols);
    return (size_t)rows * (size_t)cols * backend_dtype_size(t);
}

int backend_dtype_gpuq(backend_dtype_t t) {
    return t >= BACKEND_DT_GQ8_0 && t <= BACKEND_DT_GQ6_K ? (int)(t - BACKEND_DT_GQ8_0) : -1;
}

int backend_dtype_native(gguf_ttype_t src) {
    const int q = gpuq_from_gguf(src);
    return q < 0 ? -1 : BACKEND_DT_GQ8_0 + q;
}

const char *backend_dtype_name(backend_dtype_t t) {
    switch (t) {
    case BACKEND_DT_F32: return "f32";
    case BACKEND_DT_F16: return "f16";
    case BACKEND_DT_BF16: return "bf16";
    case BACKEND_DT_Q8: return "q8";
    case BACKEND_DT_Q4: return "q4";
    case BACKEND_DT_GQ8_0: return "gq8_0";
    case BACKEND_DT_GQ4_0: return "gq4_0";
    case BACKEND_DT_GQ4_1: return "gq4_1";
    case BACKEND_DT_GQ4_K: return "gq4_k";
    case BACKEND_DT_GQ6_K: return "gq6_k";
    }
    return "unknown";
}

int backend_dtype_parse(const char *s, backend_dtype_t *out) {
    if (!s) return -1;
    if (!strcmp(s, "f32")) *out = BACKEND_DT_F32;
    else if (!strcmp(s, "f16")) *out = BACKEND_DT_F16;
    else if (!strcmp(s, "bf16")) *out = BACKEND_DT_BF16;
    else return -1;
    return 0;
}

#if defined(KRILL_CUDA) && !defined(KRILL_CUDA_STATIC)
static backend_module_t cuda_module =
    BACKEND_MODULE_INIT("cuda", "libkrill-cuda.so", "KRILL_CUDA_MODULE", "backend_cuda_ops", "libcuda.so.1",
                        "the CUDA runtime and cuBLAS (libcudart, libcublas, libcublasLt; an NVIDIA driver to run)");
#endif

/* One row per backend krill knows, in the order "auto" prefers them: its table linked
 * into the program, or a shared module loaded on first use; both NULL for a backend
 * this binary was built without. */
static const struct {
    const char *name;
    const backend_ops_t *(*table)(void);
    backend_module_t *module;
} backend_registry[] = {
#if defined(KRILL_CUDA) && defined(KRILL_CUDA_STATIC)
    {"cuda", backend_cuda_ops, NULL},
#elif defined(KRILL_CUDA)
    {"cuda", NULL, &cuda_module},
#else
    {"cuda", NULL, NULL},
#endif
    {"cpu", backend_cpu_ops, NULL},
};
#define BACKEND_REGISTRY_N (sizeof backend_registry / sizeof backend_registry[0])

/* Row i's table: NULL with the reason in err (not built, or its module cannot load). */
static const backend_ops_t *registry_ops(size_t i, char *err, size_t errlen) {
    if (backend_registry[i].table) return backend_registry[i].table();
    if (backend_registry[i].module) return backend_module_ops(backend_registry[i].module, err, errlen);
    err_set(err, errlen, "backend '%s': not built into this binary (rebuild with nvcc present or `make CUDA=1`), "
                         "or use backend \"cpu\"", backend_registry[i].name);
    return NULL;
}

/* "auto"'s look at row i: its table when one of its devices may be present. A module is
 * not loaded where its driver is missing (a CPU-only machine stays free of the CUDA
 * libraries); a module that cannot load where the driver is present is worth a warning
 * (once), since a GPU then goes unused. */
static const backend_ops_t *registry_probe(size_t i) {
    backend_module_t *m = backend_registry[i].module;
    if (m && !backend_module_driver_present(m)) return NULL;
    char why[768] = "";
    const backend_ops_t *ops = registry_ops(i, why, sizeof why);
    if (!ops && m && !__atomic_exchange_n(&m->warned, true, __ATOMIC_RELAXED))
        LOG_WARN("backend unavailable, trying the next", "backend=%s why=\"%s\"", m->name, why);
    return ops;
}

bool backend_available(const char *name) {
    for (size_t i = 0; name && i < BACKEND_REGISTRY_N; i++)
        if (!strcmp(name, backend_registry[i].name)) return registry_ops(i, NULL, 0) != NULL;
    return false;
}

const backend_ops_t *backend_find(const char *name, char *err, size_t errlen) {
    if (!name || !*name) name = "auto";
    if (!strcmp(name, "auto")) {
        for (size_t i = 0; i < BACKEND_REGISTRY_N; i++) {
            const backend_ops_t *ops = registry_probe(i);
            if (ops && ops->device_count() > 0) return ops;
        }
        err_set(err, errlen, "backend 'auto': no backend with a device was built into this binary");
        return NULL;
    }
    for (size_t i = 0; i < BACKEND_REGISTRY_N; i++)
        if (!strcmp(name, backend_registry[i].name)) return registry_ops(i, err, errlen);
    err_set(err, errlen, "unknown backend '%s': use \"cpu\", \"cuda\" or \"auto\"", name);
    return NULL;
}

backend_t *backend_open(const char *name, const backend_params_t *p, char *err, size_t errlen) {
    backend_params_t defaults = {0};
    if (!p) p = &defaults;
    const backend_ops_t *ops = backend_find(name, err, errlen);
    if (!ops) return NULL;
    backend_t *b = calloc(1, sizeof *b);
    if (!b) {
        err_set(err, errlen, "backend '%s': out of memory", ops->name);
        return NULL;
    }
    b->ops = ops;
    b->ctx = ops->init(p, &b->info, err, errlen);
    if (!b->ctx) {
        free(b);
        return NULL;
    }
    return b;
}

void backend_close(backend_t *b) {
    if (!b) return;
    b->ops->destroy(b->ctx);
    free(b);
}
