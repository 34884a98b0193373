/* fake_cudart.cpp — a CPU stand-in for the parts of the CUDA runtime and cuBLAS that
 * kernels/backend_cuda.cu and tests/gpu/gpu_ops.c call, so that the whole CUDA backend
 * (glue + emulated kernels) runs on a machine without a GPU.
 *
 * Faithful where bugs hide:
 * - Device work is DEFERRED: kernel launches, async copies, cuBLAS calls and event
 *   records go into one in-order queue (all streams share it) that runs only when the
 *   host waits (stream/event synchronize, a synchronous copy, cudaFree). A host that
 *   reuses pinned staging before its async copy ran, or reads results without waiting,
 *   gets wrong data here as it would on a GPU.
 * - Async copies from pageable host memory snapshot the source at the call (the real
 *   driver stages pageable memory before returning); from pinned memory
 *   (cudaHostAlloc) they read it when the queue runs.
 * - Graph capture records the queue entries instead of running them; a launched graph
 *   enqueues them again (same pointers, same arguments).
 * - Device memory is host memory and is NOT zeroed (like cudaMalloc).
 * Not faithful: one queue for every stream, no real concurrency, timings meaningless,
 * cuBLAS is a plain triple loop with f32 accumulation.
 * Knobs: KRILL_EMU_SMS (multiprocessors, default 8), KRILL_EMU_MEM_MB (device memory,
 * default 4096), KRILL_EMU_DEVICES (0 simulates a machine without a GPU). */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <vector>

#include "cuda_emu.h"

struct CUstream_st {
    int unused;
};
struct CUevent_st {
    bool done = true;
    long seq = 0; /* queue position of its record */
    double t_ms = 0;
};
struct CUgraph_st {
    std::vector<std::function<void()>> ops;
};
struct CUgraphExec_st {
    std::vector<std::function<void()>> ops;
};
struct cublasContext {
    cudaStream_t s = nullptr;
};

namespace {

struct entry_t {
    long seq;
    std::function<void()> f;
};
std::deque<entry_t> q;
long next_seq = 1, done_seq = 0;
CUgraph_st *capturing;
cudaError_t last_err = cudaSuccess;
std::map<char *, size_t> pinned, device;
size_t device_used;

int env_int(const char *k, int def) {
    const char *v = getenv(k);
    return v && *v ? atoi(v) : def;
}
double now_ms() {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void submit(std::function<void()> f) {
    if (capturing) capturing->ops.push_back(std::move(f));
    else q.push_back({next_seq++, std::move(f)});
}
void run_until(long seq) {
    while (!q.empty() && q.front().seq <= seq) {
        entry_t e = std::move(q.front());
        q.pop_front();
        e.f();
        done_seq = e.seq;
    }
}
void drain() { run_until(next_seq); }
bool is_pinned(const void *p) {
    auto it = pinned.upper_bound((char *)p);
    if (it == pinned.begin()) return false;
    --it;
    return (char *)p < it->first + it->second;
}

struct hook_installer {
    hook_installer() { emu_submit_hook = [](std::function<void()> f) { submit(std::move(f)); }; }
} install;

} // namespace

extern "C" {

cudaError_t cudaGetDeviceCount(int *n) {
    *n = env_int("KRILL_EMU_DEVICES", 1);
    return *n ? cudaSuccess : cudaErrorNoDevice;
}
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *p, int) {
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "krill CUDA emulator on the CPU (not a GPU)");
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = env_int("KRILL_EMU_SMS", 8);
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *v, enum cudaDeviceAttr a, int) {
    switch (a) {
    case cudaDevAttrMultiProcessorCount: *v = env_int("KRILL_EMU_SMS", 8); break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = 227 << 10; break;
    case cudaDevAttrComputeCapabilityMajor: *v = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *v = 0; break;
    default: *v = 0;
    }
    return cudaSuccess;
}
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected (emulator: KRILL_EMU_DEVICES=0)";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    default: return "emulated CUDA error";
    }
}
const char *cudaGetErrorName(cudaError_t e) { return e == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated"; }
cudaError_t cudaPeekAtLastError(void) { return last_err; }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) {
    *s = new CUstream_st();
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    drain();
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
    if (capturing) return cudaErrorStreamCaptureUnsupported;
    drain();
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) {
    *e = new CUevent_st();
    return cudaSuccess;
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    if (capturing) return cudaErrorStreamCaptureUnsupported; /* the backend never records inside a capture */
    e->done = false;
    e->seq = next_seq;
    submit([e]() { e->done = true, e->t_ms = now_ms(); });
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    if (!e->done) run_until(e->seq);
    return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) {
    if (!a->done || !b->done) return cudaErrorNotReady;
    *ms = (float)(b->t_ms - a->t_ms);
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) {
    const size_t total = (size_t)env_int("KRILL_EMU_MEM_MB", 4096) << 20;
    if (device_used + n > total || !(*p = malloc(n ? n : 1))) {
        *p = nullptr;
        return last_err = cudaErrorMemoryAllocation;
    }
    device[(char *)*p] = n;
    device_used += n;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    drain(); /* cudaFree synchronises */
    auto it = device.find((char *)p);
    if (it == device.end()) {
        fprintf(stderr, "emu: cudaFree of %p, which cudaMalloc did not return\n", p);
        abort();
    }
    device_used -= it->second;
    device.erase(it);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = (size_t)env_int("KRILL_EMU_MEM_MB", 4096) << 20;
    *free_b = *total_b - device_used;
    return cudaSuccess;
}
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) {
    if (!(*p = malloc(n))) return cudaErrorMemoryAllocation;
    pinned[(char *)*p] = n;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    drain();
    pinned.erase((char *)p);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind k, cudaStream_t) {
    if (k == cudaMemcpyHostToDevice && !is_pinned(src)) {
        std::vector<char> snap((const char *)src, (const char *)src + n); /* pageable: staged now */
        submit([dst, snap]() { memcpy(dst, snap.data(), snap.size()); });
    } else {
        submit([dst, src, n]() { memcpy(dst, src, n); });
    }
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t n, enum cudaMemcpyKind) {
    drain();
    memcpy(dst, src, n);
    return cudaSuccess;
}
cudaError_t cudaMemset(void *p, int v, size_t n) {
    drain();
    memset(p, v, n);
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t, enum cudaStreamCaptureMode) {
    if (capturing) return cudaErrorIllegalState;
    capturing = new CUgraph_st();
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t, cudaGraph_t *g) {
    if (!capturing) return cudaErrorIllegalState;
    *g = capturing;
    capturing = nullptr;
    return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *num) {
    if (nodes) return cudaErrorInvalidValue; /* only the count is emulated */
    *num = g->ops.size();
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long) {
    *e = new CUgraphExec_st{g->ops};
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    drain();
    delete e;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t) {
    if (capturing) return cudaErrorStreamCaptureUnsupported;
    for (auto &f : e->ops) submit(f);
    return cudaSuccess;
}

/* ---------------------------------------------------------------- cuBLAS */
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cublasContext();
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    drain();
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->s = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t, void *, size_t) { return CUBLAS_STATUS_SUCCESS; }

static float elem(const void *p, cudaDataType t, size_t i) {
    switch (t) {
    case CUDA_R_32F: return ((const float *)p)[i];
    case CUDA_R_16F: return __half2float(((const __half *)p)[i]);
    case CUDA_R_16BF: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
    default: abort();
    }
}

/* Column-major C (m, n) = alpha op(A) op(B) + beta C; only what matmul_launch uses:
 * op(A) = A^T (A is k x m, lda), op(B) = B (k x n, ldb), C f32. */
cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B,
                            cudaDataType bt, int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t, cublasGemmAlgo_t) {
    if (ta != CUBLAS_OP_T || tb != CUBLAS_OP_N || ct != CUDA_R_32F || at != bt || lda < k || ldb < k || ldc < m)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    submit([=]() {
        float *c = (float *)C;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float s = 0.0f;
                for (int p = 0; p < k; p++) s += elem(A, at, (size_t)i * lda + p) * elem(B, bt, (size_t)j * ldb + p);
                c[(size_t)j * ldc + i] = al * s + (be != 0.0f ? be * c[(size_t)j * ldc + i] : 0.0f);
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_NOT_SUPPORTED (emulator)";
}

} /* extern "C" */
