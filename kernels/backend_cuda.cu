/* backend_cuda.cu — the CUDA backend: backend.h's table over the kernels in this folder,
 * cuBLAS for the matmuls, one stream, CUDA graphs for whole steps.
 *
 * Rules:
 * - Everything runs in order on ONE non-blocking stream; nothing synchronises except
 *   download() and synchronize() (where the caller reads results) and load_tensor()
 *   when its pinned staging wraps around.
 * - Memory: alloc() takes requests over 256 KiB straight from cudaMalloc (the model puts
 *   all weights in one such buffer) and carves smaller ones from 16 MiB chunks (block
 *   tables, index arrays, norms): few cudaMalloc calls, no fragmentation of the big
 *   ones. Scratch (16-bit copies of matmul inputs, split-softmax partials, the cuBLAS
 *   workspace) is allocated by reserve() or, failing that, grown outside graph capture.
 * - Host<->device copies go through 64 MiB of pinned staging used as two halves:
 *   an upload copies into the current half and queues an async copy; a half is reused
 *   only after an event says its copies finished. load_tensor() dequantizes on the host
 *   with quant.c (the CPU backend's bit-exact code) straight into staging as f32, f16 or
 *   bf16, so there is one dequantizer to trust.
 * - Errors are sticky, as backend.h says: the first failing CUDA or cuBLAS call is
 *   recorded with file:line; later compute ops are skipped; synchronize()/download()
 *   return -1 and last_error() says what happened. Only alloc() failing for lack of
 *   memory is not sticky (it returns NULL, the caller decides).
 * - Native weights (model.gpu_weights = native; docs/cuda.md): load_matrix repacks a
 *   Q8_0 / Q4_0 / Q4_1 / Q4_K / Q6_K matrix on the host (gpuq.c) into staging and records
 *   it (qweights.h); matmul looks w up there and runs qmatmul.cu for it, the bf16 path
 *   otherwise. The bf16 scratch of its large-batch path is sized by reserve().
 * - Step timing (get_stats): an event at the first op after a download and one at the
 *   next download give the device-busy time of the step and the idle gap before it. */
extern "C" {
#include "backend.h"
#include "err.h"
#include "gpuq.h"
#include "log.h"
#include "quant.h"
}

#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common.cuh"
#include "qweights.h"

#define STAGE_HALF ((size_t)32 << 20) /* bytes per half of the pinned staging */
#define ARENA_CHUNK ((size_t)16 << 20)
#define ARENA_MAX ((size_t)256 << 10)  /* allocations up to this size come from the arena */
#define ARENA_ALIGN 256
#define CUBLAS_WS ((size_t)32 << 20)
#define MAX_GRAPHS 128
#define QW_SCRATCH ((size_t)256 << 20) /* at most this much bf16 scratch for native matmuls of > 8 rows */

typedef struct arena_chunk {
    char *base;
    size_t used, live; /* bytes handed out; allocations still alive */
    struct arena_chunk *next;
} arena_chunk_t;

typedef struct {
    int key;
    int seen;              /* times graph_begin was asked for this key */
    cudaGraphExec_t exec;  /* NULL until captured */
} graph_slot_t;

typedef struct {
    int device, n_sm, smem_optin, cc;
    cudaStream_t stream;
    cublasHandle_t cublas;
    void *cublas_ws;
    backend_dtype_t wdt, kvdt;

    char *stage;            /* pinned, 2 * STAGE_HALF */
    int stage_half;         /* the half in use */
    size_t stage_off;       /* bytes used in it */
    cudaEvent_t stage_ev[2];

    void *xs;               /* 16-bit copy of a matmul input */
    size_t xs_bytes;
    qweights_t *qw;         /* which buffers hold native GGUF weights */
    void *qws;              /* bf16 rows of a native matrix (n > 8), QW_SCRATCH at most */
    size_t qws_bytes;
    float *part;            /* attention split partials */
    int64_t part_floats;

    arena_chunk_t *chunks;  /* head = the chunk being filled */

    graph_slot_t graphs[MAX_GRAPHS];
    int n_graphs, capturing, capture_failed;

    cudaEvent_t ev_start, ev_end, ev_prev_end;
    int in_step, have_prev;
    backend_stats_t stats;

    int failed;
    char err[320];
} cuda_t;

extern "C" void cuda_check_abort(cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", file, line, what, cudaGetErrorString(e), cudaGetErrorName(e));
    abort();
}

/* ------------------------------------------------------------------ errors */

static void cu_fail(cuda_t *c, const char *file, int line, const char *what, const char *why) {
    if (c->failed) return;
    c->failed = 1;
    const char *base = strrchr(file, '/');
    snprintf(c->err, sizeof c->err, "cuda backend: %s failed at %s:%d: %s", what, base ? base + 1 : file, line, why);
    LOG_ERROR("cuda backend failure", "what=\"%s\" why=\"%s\"", what, why);
}

/* Records a failed CUDA call; evaluates to true when the call succeeded. */
#define CU_OK(c, call) cu_ok_((c), (call), #call, __FILE__, __LINE__)
static bool cu_ok_(cuda_t *c, cudaError_t e, const char *what, const char *file, int line) {
    if (e == cudaSuccess) return true;
    cu_fail(c, file, line, what, cudaGetErrorString(e));
    return false;
}

/* ------------------------------------------------------------------ step timing */

static void step_start(cuda_t *c) {
    if (c->in_step || c->capturing) return;
    c->in_step = 1;
    CU_OK(c, cudaEventRecord(c->ev_start, c->stream));
}

/* Called with the step's last work queued, before the stream is synchronised. */
static void step_end_record(cuda_t *c) {
    if (c->in_step) CU_OK(c, cudaEventRecord(c->ev_end, c->stream));
}

/* After the stream synchronised: both events of the step are complete. */
static void step_end_account(cuda_t *c) {
    if (!c->in_step) return;
    c->in_step = 0;
    float ms = 0.0f;
    if (cudaEventElapsedTime(&ms, c->ev_start, c->ev_end) == cudaSuccess) c->stats.busy_ms += ms;
    if (c->have_prev && cudaEventElapsedTime(&ms, c->ev_prev_end, c->ev_start) == cudaSuccess && ms > 0)
        c->stats.idle_ms += ms;
    cudaEvent_t t = c->ev_prev_end;
    c->ev_prev_end = c->ev_end;
    c->ev_end = t;
    c->have_prev = 1;
    c->stats.steps++;
}

/* Non-compute calls are not allowed inside a capture (they would be recorded, or
 * would break it): fail sticky and poison the capture. */
static bool not_capturing(cuda_t *c, const char *what, int line) {
    if (!c->capturing) return true;
    c->capture_failed = 1;
    cu_fail(c, __FILE__, line, what, "not allowed between graph_begin and graph_end");
    return false;
}

/* ------------------------------------------------------------------ init */

static int cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver / no device: "auto" falls back to cpu quietly */
        return 0;
    }
    return n;
}

static void cuda_destroy(void *vctx);

static void *cuda_init(const backend_params_t *p, backend_info_t *info, char *err, size_t errlen) {
    const backend_defaults_t *def = &backend_cuda_ops()->defaults;
    backend_dtype_t wdt = def->weight_dtype, kvdt = def->kv_dtype;
    if (p->dtype && *p->dtype && backend_dtype_parse(p->dtype, &wdt)) {
        err_set(err, errlen, "cuda backend: weight dtype '%s' is not supported: use \"bf16\", \"f16\" or \"f32\"",
                 p->dtype);
        return NULL;
    }
    if (p->kv_dtype && *p->kv_dtype && (backend_dtype_parse(p->kv_dtype, &kvdt) || kvdt == BACKEND_DT_BF16)) {
        err_set(err, errlen, "cuda backend: kv dtype '%s' is not supported: use \"f16\" or \"f32\"", p->kv_dtype);
        return NULL;
    }
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        err_set(err, errlen, "cuda backend: no CUDA device (%s): check the driver (nvidia-smi) or use backend \"cpu\"",
                 e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
        return NULL;
    }
    if (p->device < 0 || p->device >= count) {
        err_set(err, errlen, "cuda backend: device %d does not exist (%d device%s): use 0..%d", p->device, count,
                 count == 1 ? "" : "s", count - 1);
        return NULL;
    }
    cuda_t *c = (cuda_t *)calloc(1, sizeof *c);
    if (!c) {
        err_set(err, errlen, "cuda backend: out of host memory");
        return NULL;
    }
    c->device = p->device;
    if (!(c->qw = qweights_new())) {
        free(c);
        err_set(err, errlen, "cuda backend: out of host memory");
        return NULL;
    }
    c->wdt = wdt;
    c->kvdt = kvdt;
    cudaDeviceProp prop;
    int major = 0, minor = 0;
    const char *step = "cudaSetDevice";
    if ((e = cudaSetDevice(c->device)) != cudaSuccess) goto fail;
    step = "cudaGetDeviceProperties";
    if ((e = cudaGetDeviceProperties(&prop, c->device)) != cudaSuccess) goto fail;
    cudaDeviceGetAttribute(&c->n_sm, cudaDevAttrMultiProcessorCount, c->device);
    cudaDeviceGetAttribute(&c->smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, c->device);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, c->device);
    c->cc = major * 10 + minor;
    if (c->cc < 80) {
        err_set(err, errlen, "cuda backend: %s is compute capability %d.%d; krill needs 8.0 or newer (bf16): use "
                 "backend \"cpu\"", prop.name, major, minor);
        cuda_destroy(c);
        return NULL;
    }
    /* Also proves that this binary carries code for the device (else: no kernel image). */
    step = "attention_init (is this GPU's architecture in CUDA_ARCH?)";
    if ((e = attention_init(c->smem_optin)) != cudaSuccess) goto fail;
    step = "cudaStreamCreate";
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) goto fail;
    step = "cudaHostAlloc (pinned staging)";
    if ((e = cudaHostAlloc((void **)&c->stage, 2 * STAGE_HALF, cudaHostAllocDefault)) != cudaSuccess) goto fail;
    step = "cudaEventCreate";
    for (int i = 0; i < 2; i++)
        if ((e = cudaEventCreateWithFlags(&c->stage_ev[i], cudaEventDisableTiming)) != cudaSuccess) goto fail;
    if ((e = cudaEventCreate(&c->ev_start)) != cudaSuccess || (e = cudaEventCreate(&c->ev_end)) != cudaSuccess ||
        (e = cudaEventCreate(&c->ev_prev_end)) != cudaSuccess)
        goto fail;
    step = "cudaMalloc (cuBLAS workspace)";
    if ((e = cudaMalloc(&c->cublas_ws, CUBLAS_WS)) != cudaSuccess) goto fail;
    {
        cublasStatus_t st = cublasCreate(&c->cublas);
        if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetStream(c->cublas, c->stream);
        /* a fixed workspace: cuBLAS then never allocates, which graph capture requires */
        if (st == CUBLAS_STATUS_SUCCESS) st = cublasSetWorkspace(c->cublas, c->cublas_ws, CUBLAS_WS);
        if (st != CUBLAS_STATUS_SUCCESS) {
            err_set(err, errlen, "cuda backend: cuBLAS initialisation failed: %s", cublasGetStatusString(st));
            cuda_destroy(c);
            return NULL;
        }
    }
    memset(info, 0, sizeof *info);
    snprintf(info->name, sizeof info->name, "cuda");
    snprintf(info->device, sizeof info->device, "%.127s", prop.name);
    info->weight_dtype = wdt;
    info->kv_dtype = kvdt;
    info->n_threads = 1;
    LOG_INFO("cuda backend ready", "device=\"%s\" cc=%d.%d sms=%d weights=%s kv=%s", prop.name, major, minor, c->n_sm,
             backend_dtype_name(wdt), backend_dtype_name(kvdt));
    return c;
fail:
    err_set(err, errlen, "cuda backend: %s failed: %s", step, cudaGetErrorString(e));
    cudaGetLastError();
    cuda_destroy(c);
    return NULL;
}

static void cuda_destroy(void *vctx) {
    cuda_t *c = (cuda_t *)vctx;
    if (!c) return;
    if (c->stream) {
        if (c->capturing) {
            cudaGraph_t g = NULL;
            cudaStreamEndCapture(c->stream, &g);
            if (g) cudaGraphDestroy(g);
        }
        cudaStreamSynchronize(c->stream);
    }
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
    if (c->cublas) cublasDestroy(c->cublas);
    cudaFree(c->cublas_ws);
    cudaFree(c->xs);
    cudaFree(c->qws);
    qweights_free(c->qw);
    cudaFree(c->part);
    for (arena_chunk_t *a = c->chunks, *next; a; a = next) {
        next = a->next;
        cudaFree(a->base);
        free(a);
    }
    if (c->stage) cudaFreeHost(c->stage);
    for (int i = 0; i < 2; i++)
        if (c->stage_ev[i]) cudaEventDestroy(c->stage_ev[i]);
    if (c->ev_start) cudaEventDestroy(c->ev_start);
    if (c->ev_end) cudaEventDestroy(c->ev_end);
    if (c->ev_prev_end) cudaEventDestroy(c->ev_prev_end);
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError();
    free(c);
}

/* ------------------------------------------------------------------ memory */

static void *cuda_alloc(void *ctx, size_t bytes) {
    cuda_t *c = (cuda_t *)ctx;
    if (!not_capturing(c, "alloc", __LINE__)) return NULL;
    if (bytes == 0) bytes = 1;
    if (bytes > ARENA_MAX) {
        void *p = NULL;
        if (cudaMalloc(&p, bytes) != cudaSuccess) {
            cudaGetLastError(); /* out of memory is the caller's decision, not a sticky failure */
            return NULL;
        }
        return p;
    }
    const size_t sz = (bytes + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
    arena_chunk_t *a = c->chunks;
    if (!a || a->used + sz > ARENA_CHUNK) {
        arena_chunk_t *n = (arena_chunk_t *)calloc(1, sizeof *n);
        if (!n) return NULL;
        if (cudaMalloc((void **)&n->base, ARENA_CHUNK) != cudaSuccess) {
            cudaGetLastError();
            free(n);
            return NULL;
        }
        n->next = a;
        c->chunks = a = n;
    }
    void *p = a->base + a->used;
    a->used += sz;
    a->live++;
    return p;
}

static void cuda_free(void *ctx, void *buf) {
    cuda_t *c = (cuda_t *)ctx;
    if (!buf) return;
    qweights_forget(c->qw, buf); /* the address may come back holding bf16 */
    for (arena_chunk_t **pp = &c->chunks; *pp; pp = &(*pp)->next) {
        arena_chunk_t *a = *pp;
        if ((char *)buf < a->base || (char *)buf >= a->base + ARENA_CHUNK) continue;
        if (--a->live == 0) {
            if (a == c->chunks) {
                a->used = 0; /* keep the current chunk for the next small allocations */
            } else {
                *pp = a->next;
                CU_OK(c, cudaFree(a->base));
                free(a);
            }
        }
        return;
    }
    CU_OK(c, cudaFree(buf));
}

static int cuda_mem_info(void *ctx, size_t *free_bytes, size_t *total_bytes) {
    cuda_t *c = (cuda_t *)ctx;
    if (!CU_OK(c, cudaMemGetInfo(free_bytes, total_bytes))) return -1;
    return 0;
}

/* Room for `bytes` (<= STAGE_HALF) in the current staging half, switching halves (and
 * waiting for the other half's earlier copies) when it is full. */
static char *stage_take(cuda_t *c, size_t bytes) {
    if (c->stage_off + bytes > STAGE_HALF) {
        CU_OK(c, cudaEventRecord(c->stage_ev[c->stage_half], c->stream));
        c->stage_half ^= 1;
        CU_OK(c, cudaEventSynchronize(c->stage_ev[c->stage_half]));
        c->stage_off = 0;
    }
    char *p = c->stage + (size_t)c->stage_half * STAGE_HALF + c->stage_off;
    c->stage_off += (bytes + 63) & ~(size_t)63;
    return p;
}

static void cuda_upload(void *ctx, void *dst, const void *src, size_t bytes) {
    cuda_t *c = (cuda_t *)ctx;
    if (c->failed || !not_capturing(c, "upload", __LINE__)) return;
    step_start(c);
    for (size_t off = 0; off < bytes;) {
        const size_t n = bytes - off < STAGE_HALF ? bytes - off : STAGE_HALF;
        char *st = stage_take(c, n);
        memcpy(st, (const char *)src + off, n);
        if (!CU_OK(c, cudaMemcpyAsync((char *)dst + off, st, n, cudaMemcpyHostToDevice, c->stream))) return;
        off += n;
    }
}

/* After the stream has drained, both staging halves are free again. */
static void stage_reset(cuda_t *c) {
    c->stage_half = 0;
    c->stage_off = 0;
}

static int cuda_download(void *ctx, void *dst, const void *src, size_t bytes) {
    cuda_t *c = (cuda_t *)ctx;
    if (!not_capturing(c, "download", __LINE__) || c->failed) return -1;
    /* Same-stream order makes it safe to land in staging that queued uploads still read. */
    for (size_t off = 0; off < bytes;) {
        const size_t n = bytes - off < 2 * STAGE_HALF ? bytes - off : 2 * STAGE_HALF;
        if (!CU_OK(c, cudaMemcpyAsync(c->stage, (const char *)src + off, n, cudaMemcpyDeviceToHost, c->stream)))
            return -1;
        if (off == 0) step_end_record(c);
        if (!CU_OK(c, cudaStreamSynchronize(c->stream))) return -1;
        memcpy((char *)dst + off, c->stage, n);
        off += n;
    }
    if (bytes == 0) {
        step_end_record(c);
        if (!CU_OK(c, cudaStreamSynchronize(c->stream))) return -1;
    }
    step_end_account(c);
    stage_reset(c);
    return c->failed ? -1 : 0;
}

static int cuda_synchronize(void *ctx) {
    cuda_t *c = (cuda_t *)ctx;
    if (!not_capturing(c, "synchronize", __LINE__)) return -1;
    step_end_record(c);
    if (CU_OK(c, cudaStreamSynchronize(c->stream))) {
        step_end_account(c);
        stage_reset(c);
    }
    return c->failed ? -1 : 0;
}

static const char *cuda_last_error(void *ctx) { return ((cuda_t *)ctx)->err; }

/* Host dequantization split over a few threads (quant.c is pure and thread-safe). */
typedef struct {
    gguf_ttype_t src_type;
    backend_dtype_t dst_type;
    const uint8_t *src;
    void *dst;
    int64_t b0, b1, be, bb; /* blocks [b0, b1), elements and bytes per block */
    int rc;
} deq_job_t;

static void *deq_run(void *arg) {
    deq_job_t *j = (deq_job_t *)arg;
    const void *src = j->src + j->b0 * j->bb;
    const int64_t n = (j->b1 - j->b0) * j->be, e0 = j->b0 * j->be;
    switch (j->dst_type) {
    case BACKEND_DT_F32: j->rc = quant_dequantize_f32(j->src_type, src, (float *)j->dst + e0, n); break;
    case BACKEND_DT_F16: j->rc = quant_dequantize_f16(j->src_type, src, (uint16_t *)j->dst + e0, n); break;
    case BACKEND_DT_BF16: j->rc = quant_dequantize_bf16(j->src_type, src, (uint16_t *)j->dst + e0, n); break;
    default: j->rc = -1;
    }
    return NULL;
}

#define DEQ_THREADS 8
static int dequantize(gguf_ttype_t st, const void *src, backend_dtype_t dt, void *dst, int64_t n_blocks, int64_t be,
                      int64_t bb) {
    static long online = 0;
    if (!online) online = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = n_blocks * be >= (1 << 20) ? (int)(online < DEQ_THREADS ? online : DEQ_THREADS) : 1;
    if (nth < 1) nth = 1;
    deq_job_t jobs[DEQ_THREADS];
    pthread_t th[DEQ_THREADS];
    int started[DEQ_THREADS] = {0};
    for (int i = 0; i < nth; i++) {
        jobs[i] = (deq_job_t){st, dt, (const uint8_t *)src, dst, n_blocks * i / nth, n_blocks * (i + 1) / nth, be, bb, 0};
        if (i > 0) started[i] = pthread_create(&th[i], NULL, deq_run, &jobs[i]) == 0;
    }
    deq_run(&jobs[0]);
    int rc = jobs[0].rc;
    for (int i = 1; i < nth; i++) {
        if (started[i]) pthread_join(th[i], NULL);
        else deq_run(&jobs[i]);
        rc |= jobs[i].rc;
    }
    return rc;
}

static int cuda_load_tensor(void *ctx, void *dst, backend_dtype_t dst_type, gguf_ttype_t src_type, const void *src,
                            int64_t n) {
    cuda_t *c = (cuda_t *)ctx;
    if (!not_capturing(c, "load_tensor", __LINE__) || c->failed) return -1;
    const int64_t be = quant_block_elems(src_type), bb = quant_block_bytes(src_type);
    const size_t es = backend_dtype_size(dst_type);
    if (!quant_supported(src_type) || be <= 0 || bb <= 0 || n % be || es == 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot convert %lld elements of type %s to %s", (long long)n,
                 quant_type_name(src_type), backend_dtype_name(dst_type));
        cu_fail(c, __FILE__, __LINE__, "load_tensor", msg);
        return -1;
    }
    const int64_t chunk_blocks = (int64_t)(STAGE_HALF / es) / be;
    for (int64_t b = 0, nb = n / be; b < nb; b += chunk_blocks) {
        const int64_t k = nb - b < chunk_blocks ? nb - b : chunk_blocks;
        char *st = stage_take(c, (size_t)(k * be) * es);
        if (dequantize(src_type, (const uint8_t *)src + b * bb, dst_type, st, k, be, bb)) {
            cu_fail(c, __FILE__, __LINE__, "load_tensor", "dequantization failed");
            return -1;
        }
        if (!CU_OK(c, cudaMemcpyAsync((char *)dst + (size_t)(b * be) * es, st, (size_t)(k * be) * es,
                                      cudaMemcpyHostToDevice, c->stream)))
            return -1;
    }
    return 0;
}

/* A matrix for matmul: GQ* dtypes are repacked (gpuq.c) a chunk of rows at a time into
 * staging and recorded as native; the others are load_tensor's. */
static int cuda_load_matrix(void *ctx, void *dst, backend_dtype_t dst_type, gguf_ttype_t src_type, const void *src,
                            int64_t rows, int64_t cols) {
    cuda_t *c = (cuda_t *)ctx;
    const int q = backend_dtype_gpuq(dst_type);
    if (q < 0) {
        qweights_forget(c->qw, dst);
        return cuda_load_tensor(ctx, dst, dst_type, src_type, src, rows * cols);
    }
    if (!not_capturing(c, "load_matrix", __LINE__) || c->failed) return -1;
    const size_t rb = gpuq_row_bytes((gpuq_type_t)q, cols);
    const int64_t sb = quant_row_bytes(src_type, cols);
    if (gpuq_from_gguf(src_type) != q || !rb || sb <= 0 || rows <= 0 || rb > STAGE_HALF) {
        char msg[160];
        snprintf(msg, sizeof msg, "cannot keep a %lld x %lld %s matrix as %s", (long long)rows, (long long)cols,
                 quant_type_name(src_type), backend_dtype_name(dst_type));
        cu_fail(c, __FILE__, __LINE__, "load_matrix", msg);
        return -1;
    }
    const int64_t chunk = (int64_t)(STAGE_HALF / rb);
    for (int64_t r = 0; r < rows; r += chunk) {
        const int64_t k = rows - r < chunk ? rows - r : chunk;
        char *st = stage_take(c, (size_t)k * rb);
        gpuq_repack((gpuq_type_t)q, (const uint8_t *)src + r * sb, st, k, cols);
        if (!CU_OK(c, cudaMemcpyAsync((char *)dst + (size_t)r * rb, st, (size_t)k * rb, cudaMemcpyHostToDevice,
                                      c->stream)))
            return -1;
    }
    if (qweights_add(c->qw, dst, q, rows, cols, (size_t)rows * rb)) {
        cu_fail(c, __FILE__, __LINE__, "load_matrix", "out of host memory");
        return -1;
    }
    return 0;
}

static bool cuda_weight_native(void *ctx, const void *w) { return qweights_has(((cuda_t *)ctx)->qw, w); }

/* Scratch that grows outside graph capture only (reserve() sizes it up front). */
static bool ensure(cuda_t *c, void **buf, size_t *have, size_t need, const char *what) {
    if (need <= *have) return true;
    if (c->capturing) {
        c->capture_failed = 1;
        cu_fail(c, __FILE__, __LINE__, what, "scratch too small inside graph capture (the model must call reserve)");
        return false;
    }
    if (!CU_OK(c, cudaStreamSynchronize(c->stream))) return false;
    cudaFree(*buf);
    *buf = NULL;
    *have = 0;
    if (!CU_OK(c, cudaMalloc(buf, need))) return false;
    *have = need;
    return true;
}

static int cuda_reserve(void *ctx, int max_tokens, int max_in, const backend_attn_t *a) {
    cuda_t *c = (cuda_t *)ctx;
    if (!not_capturing(c, "reserve", __LINE__) || c->failed) return -1;
    size_t xs_need = (size_t)max_tokens * max_in * 2, part_bytes = (size_t)c->part_floats * sizeof(float);
    const int64_t qe = qweights_max_elems(c->qw);
    if ((c->wdt != BACKEND_DT_F32 || qe) && !ensure(c, &c->xs, &c->xs_bytes, xs_need, "reserve")) return -1;
    if (qe && !ensure(c, &c->qws, &c->qws_bytes, (size_t)qe * 2 < QW_SCRATCH ? (size_t)qe * 2 : QW_SCRATCH, "reserve"))
        return -1;
    const int64_t pf = attention_scratch_floats(max_tokens, a->n_heads, a->head_dim, c->n_sm);
    if (!ensure(c, (void **)&c->part, &part_bytes, (size_t)pf * sizeof(float), "reserve")) return -1;
    c->part_floats = (int64_t)(part_bytes / sizeof(float));
    return 0;
}

/* ------------------------------------------------------------------ compute */

#define LAUNCH(c, call)                                                                 \
    do {                                                                                \
        if ((c)->failed) return;                                                        \
        step_start(c);                                                                  \
        cudaError_t e_ = (call);                                                        \
        if (e_ != cudaSuccess) cu_fail((c), __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
    } while (0)

static void cuda_embed(void *ctx, float *out, const void *table, const int32_t *ids, int n, int dim) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, embed_launch(out, table, (int)c->wdt, ids, n, dim, c->stream));
}

static void cuda_get_rows(void *ctx, float *out, const float *src, const int32_t *rows, int n, int dim) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, get_rows_launch(out, src, rows, n, dim, c->stream));
}

static void cuda_rmsnorm(void *ctx, float *out, float *x, const float *add, const float *w, int n, int dim,
                         float eps) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, rmsnorm_launch(out, x, add, w, n, dim, eps, c->stream));
}

static void cuda_matmul(void *ctx, float *y, const float *x, const void *w, const float *bias, int n, int in,
                        int out) {
    cuda_t *c = (cuda_t *)ctx;
    if (c->failed) return;
    step_start(c);
    qweights_part_t parts[4]; /* a fused matrix has at most 3 */
    const int np = qweights_parts(c->qw, w, out, in, parts, 4);
    if (np < 0) {
        cu_fail(c, __FILE__, __LINE__, "matmul", "the native weight records at w are not one matrix of this shape");
        return;
    }
    if (np > 0) { /* one launch per part, each writing its columns of y */
        const size_t row16 = (size_t)in * 2, ws = (size_t)out * row16 < QW_SCRATCH ? (size_t)out * row16 : QW_SCRATCH;
        if (n > 8 && (!ensure(c, &c->xs, &c->xs_bytes, (size_t)n * in * 2, "matmul") ||
                      !ensure(c, &c->qws, &c->qws_bytes, c->capturing || ws < row16 ? row16 : ws, "matmul")))
            return;
        int64_t r0 = 0;
        for (int i = 0; i < np; r0 += parts[i++].rows) {
            const char *why = qmatmul_launch(c->cublas, y + r0, out, x, parts[i].p, parts[i].qt, bias ? bias + r0 : NULL,
                                             c->xs, c->qws, c->qws_bytes, n, in, (int)parts[i].rows, c->stream);
            if (why) {
                cu_fail(c, __FILE__, __LINE__, "matmul", why);
                return;
            }
        }
        return;
    }
    if (c->wdt != BACKEND_DT_F32 && !ensure(c, &c->xs, &c->xs_bytes, (size_t)n * in * 2, "matmul")) return;
    const char *why = matmul_launch(c->cublas, y, x, w, (int)c->wdt, bias, c->xs, n, in, out, c->stream);
    if (why) cu_fail(c, __FILE__, __LINE__, "matmul", why);
}

static void cuda_rope(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, int rope_dim,
                      const int32_t *pos, const float *inv_freq, bool neox) {
    cuda_t *c = (cuda_t *)ctx;
    CHECK(rope_dim <= head_dim && rope_dim <= BACKEND_MAX_HEAD_DIM && rope_dim % 2 == 0);
    LAUNCH(c, rope_launch(x, n, row_stride, n_heads, head_dim, rope_dim, pos, inv_freq, neox ? 1 : 0, c->stream));
}

static void cuda_kv_write(void *ctx, void *kc, void *vc, const float *k, const float *v, int row_stride,
                          const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride, int n,
                          const backend_attn_t *a) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, kv_write_launch(kc, vc, (int)c->kvdt, k, v, row_stride, pos, seq, block_table, table_stride, n,
                              a->n_kv_heads, a->head_dim, a->block_size, c->stream));
}

static void cuda_attention(void *ctx, float *out, const float *q, int q_stride, const void *kc, const void *vc,
                           const int32_t *pos, const int32_t *seq, const int32_t *block_table, int table_stride, int n,
                           const backend_attn_t *a) {
    cuda_t *c = (cuda_t *)ctx;
    CHECK(a->head_dim > 0 && a->head_dim <= BACKEND_MAX_HEAD_DIM && a->n_kv_heads > 0 &&
          a->n_heads % a->n_kv_heads == 0 && a->n_heads / a->n_kv_heads <= BACKEND_MAX_GQA && a->block_size > 0 &&
          a->block_size <= BACKEND_MAX_BLOCK_SIZE);
    if (c->failed) return;
    /* the decode path needs at least one token's worth of partials to split at all */
    size_t part_bytes = (size_t)c->part_floats * sizeof(float);
    const size_t need = (size_t)attention_scratch_floats(n, a->n_heads, a->head_dim, c->n_sm) * sizeof(float);
    if (need > part_bytes && !c->capturing) {
        if (!ensure(c, (void **)&c->part, &part_bytes, need, "attention")) return;
        c->part_floats = (int64_t)(part_bytes / sizeof(float));
    }
    attention_plan_t p = {a->n_heads, a->n_kv_heads, a->head_dim, a->block_size, a->scale, (int)c->kvdt,
                          c->n_sm,    c->part,      c->part_floats, a->window,
                          c->cc,      c->smem_optin};
    LAUNCH(c, attention_launch(out, q, q_stride, kc, vc, pos, seq, block_table, table_stride, n, &p, c->stream));
}

static void cuda_swiglu(void *ctx, float *out, const float *gu, int n, int ffn) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, swiglu_launch(out, gu, n, ffn, c->stream));
}

static void cuda_head_norm(void *ctx, float *x, int n, int row_stride, int n_heads, int head_dim, const float *w,
                           float eps) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, head_norm_launch(x, n, row_stride, n_heads, head_dim, w, eps, c->stream));
}

static void cuda_geglu(void *ctx, float *out, const float *gu, int n, int ffn) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, geglu_launch(out, gu, n, ffn, c->stream));
}

static void cuda_scale(void *ctx, float *x, int64_t n, float f) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, scale_launch(x, n, f, c->stream));
}

static void cuda_argmax(void *ctx, int32_t *out, const float *logits, int n, int vocab, const float *inv_temp,
                        const uint64_t *keys) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, argmax_launch(out, logits, n, vocab, inv_temp, keys, c->stream));
}

static void cuda_argmax_masked(void *ctx, int32_t *out, const float *logits, int n, int vocab, const float *inv_temp,
                               const uint64_t *keys, const uint32_t *masks) {
    cuda_t *c = (cuda_t *)ctx;
    LAUNCH(c, argmax_masked_launch(out, logits, n, vocab, inv_temp, keys, masks, c->stream));
}

/* ------------------------------------------------------------------ fused ops */

/* The fused ops' common start: false (nothing to do) after an earlier failure, or when
 * the weights are not 16-bit (a contract violation: model.c checks weight_fusable) or
 * the 16-bit scratch cannot hold n x in elements. */
static bool fused_begin(cuda_t *c, int n, int in, const char *what) {
    if (c->failed) return false;
    step_start(c);
    if (c->wdt != BACKEND_DT_F16 && c->wdt != BACKEND_DT_BF16) {
        cu_fail(c, __FILE__, __LINE__, what, "fused ops take 16-bit weights only");
        return false;
    }
    return ensure(c, &c->xs, &c->xs_bytes, (size_t)n * in * 2, what);
}

static void fused_matmul(cuda_t *c, float *y, const void *w, const float *bias, int n, int in, int out, int acc,
                         const char *what) {
    const char *why = matmul_ex_launch(c->cublas, y, NULL, c->xs, w, (int)c->wdt, bias, NULL, n, in, out, acc, c->stream);
    if (why) cu_fail(c, __FILE__, __LINE__, what, why);
}

static void cuda_norm_matmul(void *ctx, float *y, float *x, const float *add, const float *norm_w, float eps,
                             const void *w, const float *bias, int n, int in, int out) {
    cuda_t *c = (cuda_t *)ctx;
    if (!fused_begin(c, n, in, "norm_matmul")) return;
    if (!CU_OK(c, norm_round_launch(c->xs, (int)c->wdt, x, add, norm_w, n, in, eps, c->stream))) return;
    fused_matmul(c, y, w, bias, n, in, out, 0, "norm_matmul");
}

static void cuda_qkv_rope_kv(void *ctx, float *qkv, const float *bias, int n, int rope_dim, const int32_t *pos,
                             const float *inv_freq, bool neox, void *kc, void *vc, const int32_t *seq,
                             const int32_t *block_table, int table_stride, const backend_attn_t *a) {
    cuda_t *c = (cuda_t *)ctx;
    CHECK(rope_dim <= a->head_dim && rope_dim % 2 == 0);
    LAUNCH(c, qkv_rope_kv_launch(qkv, bias, n, a->n_heads, a->n_kv_heads, a->head_dim, rope_dim, pos, inv_freq,
                                 neox ? 1 : 0, kc, vc, (int)c->kvdt, seq, block_table, table_stride, a->block_size,
                                 c->stream));
}

static void cuda_glu_matmul(void *ctx, float *y, const float *gu, bool gelu, const void *w, int n, int ffn, int out,
                            bool accumulate) {
    cuda_t *c = (cuda_t *)ctx;
    if (!fused_begin(c, n, ffn, "glu_matmul")) return;
    if (!CU_OK(c, glu_round_launch(c->xs, (int)c->wdt, gu, n, ffn, gelu ? 1 : 0, c->stream))) return;
    fused_matmul(c, y, w, NULL, n, ffn, out, accumulate ? 1 : 0, "glu_matmul");
}

static void cuda_matmul_res(void *ctx, float *y, const float *x, const void *w, int n, int in, int out) {
    cuda_t *c = (cuda_t *)ctx;
    if (!fused_begin(c, n, in, "matmul_res")) return;
    const char *why = matmul_ex_launch(c->cublas, y, x, NULL, w, (int)c->wdt, NULL, c->xs, n, in, out, 1, c->stream);
    if (why) cu_fail(c, __FILE__, __LINE__, "matmul_res", why);
}

/* ------------------------------------------------------------------ graphs */

static graph_slot_t *graph_find(cuda_t *c, int key) {
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].key == key) return &c->graphs[i];
    return NULL;
}

static int cuda_graph_replay(void *ctx, int key) {
    cuda_t *c = (cuda_t *)ctx;
    graph_slot_t *g = graph_find(c, key);
    if (c->failed || c->capturing || !g || !g->exec) return 0;
    step_start(c);
    if (!CU_OK(c, cudaGraphLaunch(g->exec, c->stream))) return 0;
    c->stats.graph_replays++;
    return 1;
}

static int cuda_graph_begin(void *ctx, int key) {
    cuda_t *c = (cuda_t *)ctx;
    if (c->failed || c->capturing) return -1;
    graph_slot_t *g = graph_find(c, key);
    if (!g) {
        if (c->n_graphs == MAX_GRAPHS) return -1;
        g = &c->graphs[c->n_graphs++];
        g->key = key;
        g->seen = 0;
        g->exec = NULL;
    }
    if (g->exec || g->seen++ == 0) return -1; /* first sight: run eagerly once */
    step_start(c); /* the start event must precede the capture */
    if (!CU_OK(c, cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal))) return -1;
    c->capturing = 1;
    c->capture_failed = 0;
    return 0;
}

static int cuda_graph_end(void *ctx, int key) {
    cuda_t *c = (cuda_t *)ctx;
    if (!c->capturing) {
        cu_fail(c, __FILE__, __LINE__, "graph_end", "no capture in progress");
        return -1;
    }
    cudaGraph_t graph = NULL;
    cudaError_t e = cudaStreamEndCapture(c->stream, &graph);
    c->capturing = 0;
    if (e != cudaSuccess || c->capture_failed || c->failed || !graph) {
        if (graph) cudaGraphDestroy(graph);
        cu_fail(c, __FILE__, __LINE__, "cudaStreamEndCapture", e != cudaSuccess ? cudaGetErrorString(e) : "capture failed");
        return -1;
    }
    graph_slot_t *g = graph_find(c, key);
    CHECK(g != NULL);
    size_t nodes = 0; /* kernel nodes per step: what the fused ops cut (docs/cuda.md) */
    if (cudaGraphGetNodes(graph, NULL, &nodes) == cudaSuccess) c->stats.graph_nodes = nodes;
    e = cudaGraphInstantiate(&g->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (!CU_OK(c, e)) {
        g->exec = NULL;
        return -1;
    }
    c->stats.graph_captures++;
    if (!CU_OK(c, cudaGraphLaunch(g->exec, c->stream))) return -1;
    return 0;
}

static int cuda_get_stats(void *ctx, backend_stats_t *st) {
    *st = ((cuda_t *)ctx)->stats;
    return 0;
}

/* ------------------------------------------------------------------ table */

static backend_ops_t make_ops(bool fused) {
    backend_ops_t o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    /* a step wide enough to fill the GPU: 512-1024 sequences x 8192 tokens ran both
     * shapes 28-41 % faster than 256 x 2048 on an H200 (docs/benchmarks.md, run 2), at
     * 2-3x the time per output token; bf16 weights, f16 KV */
    o.defaults.max_seqs = 512;
    o.defaults.max_batch_tokens = 8192;
    o.defaults.weight_dtype = BACKEND_DT_BF16;
    o.defaults.kv_dtype = BACKEND_DT_F16;
    o.device_count = cuda_device_count;
    o.init = cuda_init;
    o.destroy = cuda_destroy;
    o.alloc = cuda_alloc;
    o.free = cuda_free;
    o.mem_info = cuda_mem_info;
    o.upload = cuda_upload;
    o.download = cuda_download;
    o.load_tensor = cuda_load_tensor;
    o.synchronize = cuda_synchronize;
    o.last_error = cuda_last_error;
    o.embed = cuda_embed;
    o.get_rows = cuda_get_rows;
    o.rmsnorm = cuda_rmsnorm;
    o.matmul = cuda_matmul;
    o.rope = cuda_rope;
    o.kv_write = cuda_kv_write;
    o.attention = cuda_attention;
    o.swiglu = cuda_swiglu;
    o.reserve = cuda_reserve;
    o.graph_replay = cuda_graph_replay;
    o.graph_begin = cuda_graph_begin;
    o.graph_end = cuda_graph_end;
    o.argmax = cuda_argmax;
    o.get_stats = cuda_get_stats;
    o.argmax_masked = cuda_argmax_masked;
    o.head_norm = cuda_head_norm;
    o.geglu = cuda_geglu;
    o.scale = cuda_scale;
    o.attn_window = true;
    o.load_matrix = cuda_load_matrix;
    o.weight_native = cuda_weight_native;
    if (fused) {
        o.norm_matmul = cuda_norm_matmul;
        o.qkv_rope_kv = cuda_qkv_rope_kv;
        o.glu_matmul = cuda_glu_matmul;
        o.matmul_res = cuda_matmul_res;
    }
    return o;
}

static const backend_ops_t cuda_ops = make_ops(true), cuda_ops_unfused = make_ops(false);

/* KRILL_CUDA_FUSED=0: the table without the fused ops, so model.c issues the unfused
 * sequence (a switch for measuring and bisecting; docs/cuda.md). */
extern "C" const backend_ops_t *backend_cuda_ops(void) {
    const char *e = getenv("KRILL_CUDA_FUSED");
    return e && !strcmp(e, "0") ? &cuda_ops_unfused : &cuda_ops;
}
