/* emu_stubs.cpp — for the kernels-only emulator build (emu_kernels): matmul.cu references
 * cuBLAS, which that build never calls (its tests call the kernels directly). The
 * whole-backend build links fake_cudart.cpp instead. */
#include <cublas_v2.h>

#include "cuda_emu.h"

extern "C" {
const char *cublasGetStatusString(cublasStatus_t) { return "emulator: cuBLAS is not linked in this build"; }
cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                            const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                            cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) {
    return CUBLAS_STATUS_NOT_SUPPORTED;
}
}
