/* backend.c — picks and opens a compute backend by name.
 *
 * The one place that knows which backends were built: the only #ifdef KRILL_CUDA in
 * the engine. "auto" means cuda when it was built and a device is present, else cpu. */
#include "err.h"
#include "backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

size_t backend_dtype_size(backend_dtype_t t) {
    switch (t) {
    case BACKEND_DT_F32: return 4;
    case BACKEND_DT_F16: return 2;
    case BACKEND_DT_BF16: return 2;
    }
    return 0;
}

const char *backend_dtype_name(backend_dtype_t t) {
    switch (t) {
    case BACKEND_DT_F32: return "f32";
    case BACKEND_DT_F16: return "f16";
    case BACKEND_DT_BF16: return "bf16";
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

static const backend_ops_t *cuda_table(void) {
#ifdef KRILL_CUDA
    return backend_cuda_ops();
#else
    return NULL;
#endif
}

backend_t *backend_open(const char *name, const backend_params_t *p, char *err, size_t errlen) {
    backend_params_t defaults = {0};
    if (!p) p = &defaults;
    if (!name || !*name) name = "auto";
    const backend_ops_t *ops = NULL;
    if (!strcmp(name, "cpu")) {
        ops = backend_cpu_ops();
    } else if (!strcmp(name, "cuda")) {
        ops = cuda_table();
        if (!ops) {
            err_set(err, errlen, "backend 'cuda': not built into this binary (rebuild with nvcc present "
                                  "or `make CUDA=1`), or use backend \"cpu\"");
            return NULL;
        }
    } else if (!strcmp(name, "auto")) {
        const backend_ops_t *cu = cuda_table();
        ops = (cu && cu->device_count() > 0) ? cu : backend_cpu_ops();
    } else {
        err_set(err, errlen, "unknown backend '%s': use \"cpu\", \"cuda\" or \"auto\"", name);
        return NULL;
    }
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
