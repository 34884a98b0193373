/* gumbel.h — temperature sampling as an argmax, shared by the host sampler (sampler.c,
 * model.c) and the GPU kernel (kernels/sampling.cu), so that a request samples the same
 * token whichever side draws it.
 *
 * Gumbel-max: argmax_i (logit_i / T + g_i), with g_i = -log(-log(u_i)) and u_i uniform,
 * is an exact draw from softmax(logits / T). Here u_i comes from a counter-based hash of
 * (key, i): key is one 64-bit draw of the request's RNG per sampled token (the RNG
 * advances exactly once, as sampler.h promises), i the token id, so every token's noise
 * is known without a sequential pass and any thread can compute it. u has 24 random
 * bits, centred in its bucket: u in (0, 1), exact in f32; the tails this truncates
 * carry about 2^-24 of the probability. Ties keep the lowest id; NaN never wins; a row
 * with no finite score has nothing to draw and gives the plain argmax of the logits.
 *
 * Host and device compute the same f32 expressions; they can differ only where logf
 * rounds differently (CUDA's logf is within 1 ulp), which changes a pick only when two
 * scores tie to the last bit. */
#ifndef KRILL_GUMBEL_H
#define KRILL_GUMBEL_H

#include <math.h>
#include <stdint.h>

#include "rng.h"

#ifdef __CUDACC__
#define GUMBEL_HD __host__ __device__ __forceinline__
#else
#define GUMBEL_HD static inline
#endif

/* The noise of token i under key: the finalizer over key + i * golden ratio. */
GUMBEL_HD float gumbel_noise(uint64_t key, uint32_t i) {
    const uint64_t z = rng_mix64(key + (uint64_t)i * RNG_GOLDEN);
    const float u = ((float)(uint32_t)(z >> 40) + 0.5f) * (1.0f / 16777216.0f);
    return -logf(-logf(u));
}

/* An upper bound of gumbel_noise with margin (the largest u gives 17.33). */
#define GUMBEL_MAX 18.0f

/* The score whose argmax is the draw; inv_temp > 0. One fused multiply-add on both
 * sides, so host and device round it alike. */
GUMBEL_HD float gumbel_score(float logit, float inv_temp, uint64_t key, uint32_t i) {
    return fmaf(logit, inv_temp, gumbel_noise(key, i));
}

#endif
