/* rng.h — splitmix64, the one small hash/RNG step every module shares (sampler seeds,
 * Gumbel keys on host and device, test data, benchmark load). Its functions are
 * static inline here, an exception to "no bodies in headers": gumbel.h and the CUDA
 * kernels need the same code on the device (RNG_HD marks it host+device). */
#ifndef KRILL_RNG_H
#define KRILL_RNG_H

#include <stdint.h>

#ifdef __CUDACC__
#define RNG_HD __host__ __device__ __forceinline__
#else
#define RNG_HD static inline
#endif

#define RNG_GOLDEN 0x9E3779B97F4A7C15ull

/* splitmix64's finalizer: a bijective 64-bit mix. */
RNG_HD uint64_t rng_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The next splitmix64 output; advances *state. */
RNG_HD uint64_t rng_next(uint64_t *state) { return rng_mix64(*state += RNG_GOLDEN); }

/* Uniform in [0, 1) with 53 bits. */
RNG_HD double rng_uniform(uint64_t *state) {
    return (double)(rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

#endif
