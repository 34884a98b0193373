/* emu_kernels.cpp — the CUDA kernels of kernels/*.cu, executed by the CPU emulator
 * (tests/gpu/emu), against the CPU backend over a table of shapes.
 *
 * This runs the real kernel code (indexing, tile classification, split-K decode and
 * its combine, the prefill tiles, vector and scalar variants, reductions) without a
 * GPU, so CI machines check it. It does not replace a GPU run: fibers do not race,
 * and cuBLAS (the matmul itself), streams, graphs and the memory glue are not
 * emulated — tests/gpu/gpu_ops.c covers those on a GPU.
 * Every launcher is called directly with host memory; outputs are poisoned (NaN)
 * first. Exit 0 when every case is within tolerance. */
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "attention.cuh"
#include "common.cuh"

extern "C" {
#include "backend.h"
#include "quant.h"
#include "sampler.h"
}

static int n_fail, n_checks;
extern "C" int emu_qmatmul_run(int *checks);
static uint64_t rng_state;
static uint64_t rng_next() {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float unif() { return (float)((rng_next() >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f; }
static std::vector<float> rnd(size_t n, float scale) {
    std::vector<float> v(n);
    for (auto &x : v) x = unif() * scale;
    return v;
}
static std::vector<float> nans(size_t n) { return std::vector<float>(n, NAN); }

static double nerr(const float *got, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!std::isfinite(got[i]) && std::isfinite(ref[i])) return INFINITY;
        const double d = (double)got[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

static void check(const char *op, const char *shape, double err, double tol) {
    n_checks++;
    const bool ok = err <= tol;
    n_fail += !ok;
    printf("  %-4s %-10s %-62s err %-10.3g tol %.1g\n", ok ? "PASS" : "FAIL", op, shape, err, tol);
}

static void ck(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        printf("  FAIL %s returned %d\n", what, (int)e);
        n_fail++;
    }
}

static backend_t *cpu[2]; /* kv f16, kv f32 */

static void test_small_ops() {
    char shape[128];
    /* rmsnorm (+ residual) */
    static const int rn[][2] = {{1, 576}, {3, 1000}, {2, 5}, {4, 2048}, {1, 3}};
    for (auto &s : rn)
        for (int add = 0; add < 2; add++) {
            const int n = s[0], d = s[1];
            rng_state = 1 + n + d;
            auto x = rnd((size_t)n * d, 3), a = rnd((size_t)n * d, 2), w = rnd(d, 1.5f);
            auto x2 = x, o1 = nans((size_t)n * d), o2 = nans((size_t)n * d);
            ck(rmsnorm_launch(o1.data(), x.data(), add ? a.data() : nullptr, w.data(), n, d, 1e-5f, nullptr), "rmsnorm");
            cpu[0]->ops->rmsnorm(cpu[0]->ctx, o2.data(), x2.data(), add ? a.data() : nullptr, w.data(), n, d, 1e-5f);
            snprintf(shape, sizeof shape, "n=%d dim=%d%s", n, d, add ? " +residual" : "");
            const double e1 = nerr(o1.data(), o2.data(), o1.size()), e2 = nerr(x.data(), x2.data(), x.size());
            check("rmsnorm", shape, e1 > e2 ? e1 : e2, 1e-6);
        }
    /* rope */
    static const int rp[][6] = {{2, 4, 64, 64, 0, 0}, {3, 9, 64, 64, 7, 1}, {2, 2, 128, 64, 0, 0}, {1, 3, 6, 2, 0, 1},
                                {2, 2, 80, 80, 0, 1}};
    for (auto &s : rp) {
        const int n = s[0], nh = s[1], hd = s[2], rd = s[3], stride = nh * hd + s[4], neox = s[5];
        rng_state = 7 + n * nh + hd;
        auto x = rnd((size_t)n * stride, 2), x2 = x;
        std::vector<float> inv(rd / 2);
        for (int i = 0; i < rd / 2; i++) inv[i] = (float)(1.0 / pow(500000.0, 2.0 * i / rd));
        std::vector<int32_t> pos(n);
        for (int i = 0; i < n; i++) pos[i] = i == 0 ? 131071 : (int32_t)(rng_next() % 5000);
        ck(rope_launch(x.data(), n, stride, nh, hd, rd, pos.data(), inv.data(), neox, nullptr), "rope");
        cpu[0]->ops->rope(cpu[0]->ctx, x2.data(), n, stride, nh, hd, rd, pos.data(), inv.data(), neox);
        snprintf(shape, sizeof shape, "n=%d heads=%d hd=%d rope_dim=%d stride=%d %s", n, nh, hd, rd, stride,
                 neox ? "neox" : "norm");
        check("rope", shape, nerr(x.data(), x2.data(), x.size()), 2e-6);
    }
    /* swiglu */
    static const int sw[][2] = {{1, 1536}, {3, 13}, {2, 300}};
    for (auto &s : sw) {
        const int n = s[0], f = s[1];
        rng_state = 11 + n + f;
        auto gu = rnd((size_t)n * 2 * f, 6), o1 = nans((size_t)n * f), o2 = nans((size_t)n * f);
        ck(swiglu_launch(o1.data(), gu.data(), n, f, nullptr), "swiglu");
        cpu[0]->ops->swiglu(cpu[0]->ctx, o2.data(), gu.data(), n, f);
        snprintf(shape, sizeof shape, "n=%d ffn=%d", n, f);
        check("swiglu", shape, nerr(o1.data(), o2.data(), o1.size()), 1e-6);
    }
    /* model-family ops (gemma3, qwen3): QK-norm per head in place, GeGLU, scale */
    static const int hn[][4] = {{3, 4, 256, 1536}, {2, 1, 32, 96}, {5, 6, 64, 640}}; /* n, heads, hd, stride */
    for (auto &s : hn) {
        const int n = s[0], h = s[1], hd = s[2], st = s[3];
        rng_state = 17 + n + hd;
        auto x = rnd((size_t)n * st, 3), w = rnd(hd, 1.5f);
        auto x2 = x;
        ck(head_norm_launch(x.data(), n, st, h, hd, w.data(), 1e-6f, nullptr), "head_norm");
        cpu[0]->ops->head_norm(cpu[0]->ctx, x2.data(), n, st, h, hd, w.data(), 1e-6f);
        snprintf(shape, sizeof shape, "n=%d heads=%d hd=%d stride=%d", n, h, hd, st);
        check("head_norm", shape, nerr(x.data(), x2.data(), x.size()), 1e-6);
    }
    for (auto &s : sw) {
        const int n = s[0], f = s[1];
        rng_state = 19 + n + f;
        auto gu = rnd((size_t)n * 2 * f, 6), o1 = nans((size_t)n * f), o2 = nans((size_t)n * f);
        ck(geglu_launch(o1.data(), gu.data(), n, f, nullptr), "geglu");
        cpu[0]->ops->geglu(cpu[0]->ctx, o2.data(), gu.data(), n, f);
        snprintf(shape, sizeof shape, "n=%d ffn=%d", n, f);
        check("geglu", shape, nerr(o1.data(), o2.data(), o1.size()), 1e-6);
        auto x = rnd((size_t)n * f, 4), x2 = x;
        ck(scale_launch(x.data(), (int64_t)n * f, 25.298221f, nullptr), "scale");
        cpu[0]->ops->scale(cpu[0]->ctx, x2.data(), (int64_t)n * f, 25.298221f);
        check("scale", shape, nerr(x.data(), x2.data(), x.size()), 0);
    }
    /* embed (bf16, f16, f32 tables) and get_rows */
    for (int dt = 0; dt < 3; dt++) {
        const int n = 5, vocab = 40, dim = 67;
        rng_state = 13 + dt;
        std::vector<uint16_t> t16((size_t)vocab * dim);
        std::vector<float> tf((size_t)vocab * dim), ref((size_t)n * dim), out = nans((size_t)n * dim);
        for (size_t i = 0; i < t16.size(); i++) {
            const float v = unif() * 4;
            t16[i] = dt == KDT_F16 ? quant_f32_to_f16(v) : quant_f32_to_bf16(v);
            tf[i] = dt == KDT_F32 ? v : dt == KDT_F16 ? quant_f16_to_f32(t16[i]) : quant_bf16_to_f32(t16[i]);
        }
        std::vector<int32_t> ids(n);
        for (auto &i : ids) i = (int32_t)(rng_next() % vocab);
        ck(embed_launch(out.data(), dt == KDT_F32 ? (const void *)tf.data() : (const void *)t16.data(), dt, ids.data(), n,
                        dim, nullptr),
           "embed");
        cpu[0]->ops->get_rows(cpu[0]->ctx, ref.data(), tf.data(), ids.data(), n, dim);
        snprintf(shape, sizeof shape, "n=%d vocab=%d dim=%d table %s", n, vocab, dim,
                 backend_dtype_name((backend_dtype_t)dt));
        check("embed", shape, nerr(out.data(), ref.data(), out.size()), 0);
        out = nans(out.size());
        ck(get_rows_launch(out.data(), tf.data(), ids.data(), n, dim, nullptr), "get_rows");
        check("get_rows", shape, nerr(out.data(), ref.data(), out.size()), 0);
    }
    /* convert (the matmul's activation rounding) and bias_add */
    for (int dt = 1; dt < 3; dt++) {
        const int64_t cnt = 1000;
        rng_state = 17 + dt;
        auto x = rnd(cnt, 100);
        x[0] = 65519.0f, x[1] = -1e-8f, x[2] = 3.0e38f;
        std::vector<uint16_t> got(cnt, 0xffff);
        ck(convert_launch(got.data(), dt, x.data(), cnt, nullptr), "convert");
        int bad = 0;
        for (int64_t i = 0; i < cnt; i++)
            bad += got[i] != (dt == KDT_F16 ? quant_f32_to_f16(x[i]) : quant_f32_to_bf16(x[i]));
        snprintf(shape, sizeof shape, "f32 -> %s, %lld values (round to nearest even, overflow)",
                 backend_dtype_name((backend_dtype_t)dt), (long long)cnt);
        check("convert", shape, bad, 0);
    }
    {
        const int n = 3, out = 37;
        auto y = rnd((size_t)n * out, 1), b = rnd(out, 1), want = y;
        for (int r = 0; r < n; r++)
            for (int c = 0; c < out; c++) want[(size_t)r * out + c] += b[c];
        ck(bias_add_launch(y.data(), b.data(), n, out, nullptr), "bias_add");
        check("bias_add", "n=3 out=37", nerr(y.data(), want.data(), y.size()), 0);
    }
    /* argmax with ties */
    {
        const int n = 3, vocab = 1000;
        rng_state = 19;
        std::vector<float> l((size_t)n * vocab);
        for (auto &x : l) x = (float)(int)(unif() * 10);
        l[5] = NAN;
        std::vector<int32_t> ids(n, -7);
        ck(argmax_launch(ids.data(), l.data(), n, vocab, nullptr, nullptr, nullptr), "argmax");
        int bad = 0;
        for (int r = 0; r < n; r++) {
            int best = -1;
            for (int j = 0; j < vocab; j++) {
                const float v = l[(size_t)r * vocab + j];
                if (!std::isnan(v) && (best < 0 || v > l[(size_t)r * vocab + best])) best = j;
            }
            bad += ids[r] != best;
        }
        check("argmax", "n=3 vocab=1000 (ties -> lowest index, NaN skipped)", bad, 0);
    }
    /* temperature rows: the kernel's Gumbel-max draw is the host sampler's */
    {
        const int n = 6, vocab = 3001;
        rng_state = 23;
        auto l = rnd((size_t)n * vocab, 6);
        l[7] = NAN;
        for (int j = 0; j < vocab; j++) l[(size_t)4 * vocab + j] = -INFINITY; /* nothing to draw */
        std::vector<float> it = {1.0f, 0.0f, 0.5f, 1.7f, 1.0f, 1.0f};
        std::vector<uint64_t> keys = {1, 2, 0xdeadbeefcafef00dull, 42, 5, 0};
        std::vector<int32_t> ids(n, -7);
        ck(argmax_launch(ids.data(), l.data(), n, vocab, it.data(), keys.data(), nullptr), "argmax");
        int bad = 0;
        for (int r = 0; r < n; r++) {
            bad += ids[r] != sampler_pick(l.data() + (size_t)r * vocab, vocab, it[r], keys[r]);
        }
        check("argmax", "n=6 vocab=3001 Gumbel rows (temperature 1, 0.5, 1.7; NaN; all -inf) = sampler_pick", bad, 0);
    }
    /* constrained rows: a packed mask per row (grammar.h), argmax and Gumbel = sampler_pick_masked */
    {
        const int n = 6, vocab = 3001, words = (vocab + 31) / 32;
        rng_state = 29;
        auto l = rnd((size_t)n * vocab, 6);
        std::vector<uint32_t> m((size_t)n * words, 0);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < vocab; j++)
                if (r == 5 ? j == vocab - 1 : unif() < -0.8f) m[(size_t)r * words + j / 32] |= 1u << (j % 32);
        for (int w = 0; w < words; w++) m[(size_t)3 * words + w] = 0xffffffffu; /* row 3: everything allowed */
        std::vector<float> it = {0.0f, 1.0f, 0.5f, 0.0f, 1.3f, 1.0f};
        std::vector<uint64_t> keys = {3, 4, 0xfeedull, 6, 7, 8};
        std::vector<int32_t> ids(n, -7);
        ck(argmax_masked_launch(ids.data(), l.data(), n, vocab, it.data(), keys.data(), m.data(), nullptr), "argmax_masked");
        int bad = 0;
        for (int r = 0; r < n; r++) {
            const int32_t want = sampler_pick_masked(l.data() + (size_t)r * vocab, vocab, it[r], keys[r], m.data() + (size_t)r * words);
            bad += ids[r] != want || !((m[(size_t)r * words + want / 32] >> (want % 32)) & 1u);
        }
        check("argmax_masked", "n=6 vocab=3001 (10% allowed, all, one; greedy and Gumbel rows) = sampler_pick_masked", bad, 0);
    }
}

/* ------------------------------------------------------------------ attention */

struct att_case {
    const char *name;
    int nh, nkv, hd, bs, n_seqs;
    int ctx[6], nq[6];
    int window; /* sliding window (0: global attention) */
};

static const att_case cases[] = {
    {"decode 1B shape", 32, 8, 64, 16, 3, {1, 17, 150}, {1, 1, 1}},
    {"decode long ctx, splits", 8, 2, 64, 16, 1, {700}, {1}},
    {"prefill from 0", 8, 2, 64, 16, 1, {70}, {70}},
    {"prefill continued chunk", 9, 3, 64, 32, 2, {90, 20}, {53, 20}},
    {"mixed ragged batch", 4, 2, 64, 16, 5, {40, 1, 37, 100, 9}, {1, 1, 37, 1, 5}},
    {"hd128 GQA4", 8, 2, 128, 16, 2, {33, 50}, {1, 50}},
    {"hd256 MHA", 2, 2, 256, 16, 2, {40, 3}, {1, 3}},
    {"hd80 scalar path", 4, 2, 80, 16, 2, {60, 45}, {1, 45}},
    {"odd block size 7", 4, 2, 64, 7, 3, {50, 13, 8}, {50, 1, 2}},
    {"GQA 32 (prefill disabled)", 32, 1, 64, 256, 2, {300, 31}, {1, 31}},
    {"MQA hd96", 12, 1, 96, 16, 2, {70, 40}, {1, 40}},
    {"tiny hd6", 2, 1, 6, 4, 2, {9, 5}, {3, 5}},
    {"hd32 G2 (P>1 partials)", 4, 2, 32, 16, 2, {100, 16}, {1, 16}},
    {"batch 1, one token", 16, 4, 64, 16, 1, {333}, {1}},
    {"first token (pos 0)", 8, 8, 128, 16, 2, {1, 1}, {1, 1}},
    /* sliding windows (gemma3 local layers, Mistral style) */
    {"window 6, ragged", 4, 2, 64, 16, 4, {40, 1, 37, 9}, {1, 1, 37, 5}, 6},
    {"window 5, block 7", 4, 1, 32, 7, 3, {50, 13, 8}, {50, 1, 2}, 5},
    {"window 40 > chunk", 8, 2, 64, 16, 2, {300, 120}, {1, 120}, 40},
    {"gemma3 270M local W512", 4, 1, 256, 16, 3, {700, 520, 30}, {1, 9, 30}, 512},
};

/* The host twin of tile_uniform (attention.cuh): token tile of qt is a prefill tile. */
static bool host_tile_uniform(const std::vector<int32_t> &pos, const std::vector<int32_t> &seq, int n, int tile, int qt) {
    if (qt < 2) return false;
    const int t0 = tile * qt, t1 = std::min(t0 + qt, n);
    if (t1 - t0 < 2) return false;
    for (int t = t0 + 1; t < t1; t++)
        if (seq[t] != seq[t0] || pos[t] != pos[t0] + (t - t0)) return false;
    return true;
}

/* cc 0: the CUDA-core kernels of attention.cu only; cc 90: attention_choose's pick
 * (attn_decode.cu where it applies; attn_prefill_tc.cu for f16 caches with head_dim a
 * multiple of 16). Rows the tensor-core prefill wrote are checked on their own with the
 * tolerance of f16-rounded q and p (attn_prefill_tc.cu); every other row at 2e-6. */
static const char *only; /* --only SUBSTR: attention cases whose name contains it */

static void run_case(const att_case &c, int kv_f32, int n_sm, int cc = 0) {
    if (only && !strstr(c.name, only)) return;
    const int nh = c.nh, nkv = c.nkv, hd = c.hd, bs = c.bs, qd = nh * hd, kvd = nkv * hd, S = c.n_seqs;
    int n = 0, mb = 0, total = 3;
    for (int s = 0; s < S; s++) {
        n += c.nq[s];
        const int b = (c.ctx[s] + bs - 1) / bs;
        mb = b > mb ? b : mb;
        total += b;
    }
    rng_state = 23 + nh + hd * 3 + bs + n + kv_f32;
    std::vector<int32_t> perm(total), table((size_t)S * mb, 0), pos, seq, hpos, hseq;
    for (int i = 0; i < total; i++) perm[i] = i;
    for (int i = total - 1; i > 0; i--) std::swap(perm[i], perm[rng_next() % (uint64_t)(i + 1)]);
    for (int s = 0, k = 0; s < S; s++)
        for (int b = 0; b < (c.ctx[s] + bs - 1) / bs; b++) table[(size_t)s * mb + b] = perm[k++];
    for (int s = 0; s < S; s++) {
        for (int p = c.ctx[s] - c.nq[s]; p < c.ctx[s]; p++) pos.push_back(p), seq.push_back(s);
        for (int p = 0; p < c.ctx[s] - c.nq[s]; p++) hpos.push_back(p), hseq.push_back(s);
    }
    const int nh_tok = (int)hpos.size(), stride = qd + 2 * kvd + 3;
    auto qkv = rnd((size_t)n * stride, 2), hkv = rnd((size_t)(nh_tok + 1) * stride, 2);
    const backend_attn_t a = {nh, nkv, hd, bs, 1.0f / std::sqrt((float)hd), c.window};
    const size_t es = kv_f32 ? 4 : 2, cache = (size_t)total * nkv * bs * hd * es;
    std::vector<uint8_t> kc[2], vc[2];
    std::vector<float> out[2];
    backend_t *b = cpu[kv_f32];
    for (int k = 0; k < 2; k++) {
        kc[k].assign(cache, 0xff), vc[k].assign(cache, 0xff), out[k] = nans((size_t)n * qd);
    }
    /* CPU reference */
    if (nh_tok)
        b->ops->kv_write(b->ctx, kc[0].data(), vc[0].data(), hkv.data() + qd, hkv.data() + qd + kvd, stride, hpos.data(),
                         hseq.data(), table.data(), mb, nh_tok, &a);
    b->ops->kv_write(b->ctx, kc[0].data(), vc[0].data(), qkv.data() + qd, qkv.data() + qd + kvd, stride, pos.data(),
                     seq.data(), table.data(), mb, n, &a);
    b->ops->attention(b->ctx, out[0].data(), qkv.data(), stride, kc[0].data(), vc[0].data(), pos.data(), seq.data(),
                      table.data(), mb, n, &a);
    /* the kernels */
    const int kdt = kv_f32 ? KDT_F32 : KDT_F16;
    if (nh_tok)
        ck(kv_write_launch(kc[1].data(), vc[1].data(), kdt, hkv.data() + qd, hkv.data() + qd + kvd, stride, hpos.data(),
                           hseq.data(), table.data(), mb, nh_tok, nkv, hd, bs, nullptr),
           "kv_write");
    ck(kv_write_launch(kc[1].data(), vc[1].data(), kdt, qkv.data() + qd, qkv.data() + qd + kvd, stride, pos.data(),
                       seq.data(), table.data(), mb, n, nkv, hd, bs, nullptr),
       "kv_write");
    std::vector<float> part(attention_scratch_floats(n, nh, hd, n_sm), NAN);
    const int max_smem = 227 << 10;
    attention_plan_t p = {nh, nkv, hd, bs, a.scale, kdt, n_sm, part.data(), (int64_t)part.size(), c.window,
                          cc, max_smem};
    ck(attention_launch(out[1].data(), qkv.data(), stride, kc[1].data(), vc[1].data(), pos.data(), seq.data(),
                        table.data(), mb, n, &p, nullptr),
       "attention");
    /* the CPU keeps K blocks as (kv head, dim, slot) (docs/engine.md); these kernels as
     * (kv head, slot, dim): compare in the kernels' order */
    {
        std::vector<uint8_t> t(cache);
        for (int blk = 0; blk < total; blk++)
            for (int g = 0; g < nkv; g++)
                for (int d = 0; d < hd; d++)
                    for (int sl = 0; sl < bs; sl++)
                        memcpy(&t[((((size_t)blk * nkv + g) * bs + sl) * hd + d) * es],
                               &kc[0][((((size_t)blk * nkv + g) * hd + d) * bs + sl) * es], es);
        kc[0] = t;
    }
    char shape[160];
    int maxctx = 0;
    for (int s = 0; s < S; s++) maxctx = c.ctx[s] > maxctx ? c.ctx[s] : maxctx;
    snprintf(shape, sizeof shape, "%s: %d/%d hd=%d bs=%d n=%d ctx<=%d kv=%s sms=%d%s%s", c.name, nh, nkv, hd, bs, n,
             maxctx, kv_f32 ? "f32" : "f16", n_sm, c.window ? " win" : "", cc ? " new" : "");
    check("kv_write", shape, memcmp(kc[0].data(), kc[1].data(), cache) || memcmp(vc[0].data(), vc[1].data(), cache), 0);
    const bool tc = cc && attn_prefill_tc_applies(cc, kdt, hd, max_smem);
    if (!tc) {
        check(cc && attn_decode_applies(kdt, hd, kc[1].data(), vc[1].data()) ? "att_dec" : "attention", shape,
              nerr(out[1].data(), out[0].data(), out[0].size()), 2e-6);
        return;
    }
    /* split the rows: tensor-core prefill tiles vs the decode kernel's tokens */
    const int qt = n >= 2 ? attn_prefill_tc_qt(nh / nkv) : 1;
    std::vector<float> got[2], ref[2];
    for (int t = 0; t < n; t++) {
        const int k = host_tile_uniform(pos, seq, n, t / qt, qt);
        got[k].insert(got[k].end(), out[1].begin() + (size_t)t * qd, out[1].begin() + (size_t)(t + 1) * qd);
        ref[k].insert(ref[k].end(), out[0].begin() + (size_t)t * qd, out[0].begin() + (size_t)(t + 1) * qd);
    }
    const char *dec = attn_decode_applies(kdt, hd, kc[1].data(), vc[1].data()) ? "att_dec" : "attention";
    if (!got[0].empty()) check(dec, shape, nerr(got[0].data(), ref[0].data(), got[0].size()), 2e-6);
    if (!got[1].empty()) check("att_tc", shape, nerr(got[1].data(), ref[1].data(), got[1].size()), 1e-3);
}

/* ---------------------------------------------------------------- fused ops
 * Each fused kernel (kernels/fused.cu, matmul_ex_launch) against the unfused kernel
 * sequence it replaces: the same f32 operations in the same order, so bit for bit
 * (mismatching elements are counted; tolerance 0). */
static int bits_differ(const void *a, const void *b, size_t bytes) { return memcmp(a, b, bytes) != 0; }
static int count_diff(const float *a, const float *b, size_t n) {
    int d = 0;
    for (size_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], 4) != 0;
    return d;
}

static void test_fused() {
    char shape[160];
    /* norm_round = rmsnorm + convert (residual add written back included) */
    static const int rn[][2] = {{1, 576}, {3, 1000}, {2, 5}, {4, 2048}, {1, 3}};
    for (int dt = KDT_F16; dt <= KDT_BF16; dt++)
        for (auto &s : rn)
            for (int add = 0; add < 2; add++) {
                const int n = s[0], d = s[1];
                rng_state = 31 + n + d + dt;
                auto x = rnd((size_t)n * d, 3), a = rnd((size_t)n * d, 2), w = rnd(d, 1.5f);
                auto x2 = x, h = nans((size_t)n * d);
                std::vector<uint16_t> got((size_t)n * d, 0xffff), want((size_t)n * d, 0);
                ck(norm_round_launch(got.data(), dt, x.data(), add ? a.data() : nullptr, w.data(), n, d, 1e-5f, nullptr),
                   "norm_round");
                ck(rmsnorm_launch(h.data(), x2.data(), add ? a.data() : nullptr, w.data(), n, d, 1e-5f, nullptr), "rmsnorm");
                ck(convert_launch(want.data(), dt, h.data(), (int64_t)n * d, nullptr), "convert");
                snprintf(shape, sizeof shape, "n=%d dim=%d%s -> %s (vs rmsnorm + convert)", n, d, add ? " +residual" : "",
                         backend_dtype_name((backend_dtype_t)dt));
                check("norm_round", shape, bits_differ(got.data(), want.data(), got.size() * 2) + count_diff(x.data(), x2.data(), x.size()), 0);
            }
    /* glu_round = swiglu / geglu + convert */
    static const int sw[][2] = {{1, 1536}, {3, 13}, {2, 300}};
    for (int dt = KDT_F16; dt <= KDT_BF16; dt++)
        for (int gelu = 0; gelu < 2; gelu++)
            for (auto &s : sw) {
                const int n = s[0], f = s[1];
                rng_state = 37 + n + f + dt;
                auto gu = rnd((size_t)n * 2 * f, 6), act = nans((size_t)n * f);
                std::vector<uint16_t> got((size_t)n * f, 0xffff), want((size_t)n * f, 0);
                ck(glu_round_launch(got.data(), dt, gu.data(), n, f, gelu, nullptr), "glu_round");
                ck(gelu ? geglu_launch(act.data(), gu.data(), n, f, nullptr) : swiglu_launch(act.data(), gu.data(), n, f, nullptr),
                   "glu");
                ck(convert_launch(want.data(), dt, act.data(), (int64_t)n * f, nullptr), "convert");
                snprintf(shape, sizeof shape, "n=%d ffn=%d %s -> %s (vs %s + convert)", n, f, gelu ? "geglu" : "swiglu",
                         backend_dtype_name((backend_dtype_t)dt), gelu ? "geglu" : "swiglu");
                check("glu_round", shape, bits_differ(got.data(), want.data(), got.size() * 2), 0);
            }
    /* qkv_rope_kv = bias_add + rope + kv_write: q rows in place, the caches */
    struct qc { int n, nh, nkv, hd, rd, neox, bias, kv_f32, bs; };
    static const qc qcs[] = {{3, 8, 2, 32, 32, 0, 0, 0, 16}, {5, 4, 4, 64, 64, 1, 1, 0, 7}, {1, 32, 8, 64, 64, 0, 0, 0, 16},
                             {4, 6, 2, 80, 40, 1, 1, 1, 4}, {2, 2, 1, 6, 2, 0, 1, 1, 4}, {3, 9, 3, 128, 96, 0, 1, 0, 32}};
    for (const qc &c : qcs) {
        const int qd = c.nh * c.hd, kvd = c.nkv * c.hd, row = qd + 2 * kvd, S = c.n;
        rng_state = 41 + c.n * c.hd + c.nh;
        auto qkv = rnd((size_t)c.n * row, 2), bias = rnd(row, 1);
        std::vector<float> inv(c.rd / 2);
        for (int i = 0; i < c.rd / 2; i++) inv[i] = (float)(1.0 / pow(500000.0, 2.0 * i / c.rd));
        /* one token per sequence at a scattered position; each sequence owns 3 blocks */
        const int mb = 3, blocks = S * mb;
        std::vector<int32_t> pos(c.n), seq(c.n), table((size_t)S * mb);
        for (int i = 0; i < c.n; i++) pos[i] = (int32_t)(rng_next() % (uint64_t)(mb * c.bs)), seq[i] = i;
        pos[0] = mb * c.bs - 1;
        for (int i = 0; i < S * mb; i++) table[i] = S * mb - 1 - i; /* blocks in reverse order */
        const size_t es = c.kv_f32 ? 4 : 2, cache = (size_t)blocks * c.nkv * c.bs * c.hd * es;
        const int kdt = c.kv_f32 ? KDT_F32 : KDT_F16;
        std::vector<uint8_t> kc[2], vc[2];
        for (int k = 0; k < 2; k++) kc[k].assign(cache, 0xa5), vc[k].assign(cache, 0x5a);
        auto q2 = qkv;
        ck(qkv_rope_kv_launch(qkv.data(), c.bias ? bias.data() : nullptr, c.n, c.nh, c.nkv, c.hd, c.rd, pos.data(),
                              inv.data(), c.neox, kc[0].data(), vc[0].data(), kdt, seq.data(), table.data(), mb, c.bs,
                              nullptr),
           "qkv_rope_kv");
        if (c.bias) ck(bias_add_launch(q2.data(), bias.data(), c.n, row, nullptr), "bias_add");
        ck(rope_launch(q2.data(), c.n, row, c.nh + c.nkv, c.hd, c.rd, pos.data(), inv.data(), c.neox, nullptr), "rope");
        ck(kv_write_launch(kc[1].data(), vc[1].data(), kdt, q2.data() + qd, q2.data() + qd + kvd, row, pos.data(),
                           seq.data(), table.data(), mb, c.n, c.nkv, c.hd, c.bs, nullptr),
           "kv_write");
        int bad = bits_differ(kc[0].data(), kc[1].data(), cache) + bits_differ(vc[0].data(), vc[1].data(), cache);
        for (int i = 0; i < c.n; i++) bad += count_diff(qkv.data() + (size_t)i * row, q2.data() + (size_t)i * row, qd);
        snprintf(shape, sizeof shape, "n=%d %d/%d hd=%d rope_dim=%d %s%s kv=%s bs=%d (vs bias+rope+kv_write)", c.n, c.nh,
                 c.nkv, c.hd, c.rd, c.neox ? "neox" : "norm", c.bias ? " +bias" : "", c.kv_f32 ? "f32" : "f16", c.bs);
        check("qkv_rope_kv", shape, bad, 0);
    }
    /* the GEMV behind the fused matmuls: 16-bit input (x16) = rounding x itself, and
     * the accumulate epilogue (y += x W^T) = a separate y + tmp */
    const int def = matmul_set_gemv_max_n(8);
    static const int mm[][3] = {{1, 256, 37}, {3, 520, 17}, {8, 2048, 9}, {1, 8, 5}};
    for (int dt = KDT_F16; dt <= KDT_BF16; dt++)
        for (auto &s : mm) {
            const int n = s[0], in = s[1], out = s[2];
            rng_state = 43 + n + in + out + dt;
            auto x = rnd((size_t)n * in, 1), y0 = rnd((size_t)n * out, 4), b = rnd(out, 1);
            std::vector<uint16_t> w((size_t)out * in), xs((size_t)n * in);
            for (auto &v : w) v = dt == KDT_F16 ? quant_f32_to_f16(unif() * 0.5f) : quant_f32_to_bf16(unif() * 0.5f);
            auto ref = nans((size_t)n * out), got = nans((size_t)n * out), acc = y0, acc_ref = y0;
            const char *e1 = matmul_launch(nullptr, ref.data(), x.data(), w.data(), dt, b.data(), nullptr, n, in, out, nullptr);
            ck(convert_launch(xs.data(), dt, x.data(), (int64_t)n * in, nullptr), "convert");
            const char *e2 = matmul_ex_launch(nullptr, got.data(), nullptr, xs.data(), w.data(), dt, b.data(), nullptr, n, in,
                                              out, 0, nullptr);
            const char *e3 = matmul_ex_launch(nullptr, acc.data(), x.data(), nullptr, w.data(), dt, nullptr, nullptr, n, in,
                                              out, 1, nullptr);
            auto tmp = nans((size_t)n * out);
            const char *e4 = matmul_launch(nullptr, tmp.data(), x.data(), w.data(), dt, nullptr, nullptr, n, in, out, nullptr);
            for (size_t i = 0; i < acc_ref.size(); i++) acc_ref[i] += tmp[i];
            const int err = (e1 || e2 || e3 || e4) ? 1 << 20 : 0;
            snprintf(shape, sizeof shape, "n=%d in=%d out=%d %s: x16 input (vs rounding f32 x)", n, in, out,
                     backend_dtype_name((backend_dtype_t)dt));
            check("gemv_x16", shape, err + count_diff(got.data(), ref.data(), got.size()), 0);
            snprintf(shape, sizeof shape, "n=%d in=%d out=%d %s: y += x W^T (vs y + tmp)", n, in, out,
                     backend_dtype_name((backend_dtype_t)dt));
            check("gemv_acc", shape, err + count_diff(acc.data(), acc_ref.data(), acc.size()), 0);
        }
    matmul_set_gemv_max_n(def);
}

int main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        printf("usage: emu_kernels [--quick] [--only SUBSTR]\nRuns kernels/*.cu on the CPU emulator against the CPU "
               "backend; --only: just the attention cases whose name contains SUBSTR.\n");
        return 0;
    }
    bool quick = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = true;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else {
            fprintf(stderr, "emu_kernels: unknown argument %s (--help)\n", argv[i]);
            return 2;
        }
    }
    char err[256];
    for (int k = 0; k < 2; k++) {
        backend_params_t p = {};
        p.n_threads = 1;
        p.kv_dtype = k ? "f32" : "f16";
        if (!(cpu[k] = backend_open("cpu", &p, err, sizeof err))) {
            fprintf(stderr, "emu_kernels: %s\n", err);
            return 1;
        }
    }
    printf("emu_kernels: CUDA kernels on the CPU emulator vs the CPU backend\n");
    if (!only) {
        test_small_ops();
        test_fused();
    }
    for (const att_case &c : cases) {
        run_case(c, 0, 132); /* an H100's SM count: many splits for small batches */
        if (!quick) run_case(c, 1, 4);
    }
    /* 6 decode sequences per kind of context length plus one prefill chunk, 1 SM: no splits */
    att_case wide = {"wide ragged batch, 1 SM", 8, 2, 64, 16, 6, {1, 64, 65, 129, 17, 40}, {1, 1, 1, 1, 17, 1}};
    run_case(wide, 0, 1);
    /* long contexts over many splits and on one SM, G = 8 with head_dim 128, and the
     * SmolLM2 geometry (G = 3) */
    att_case longr = {"long ragged hd128 G8", 16, 2, 128, 16, 4, {1000, 33, 257, 64}, {1, 1, 1, 1}};
    run_case(longr, 0, 132);
    run_case(longr, 0, 1);
    att_case smol = {"SmolLM2 G3 hd64", 9, 3, 64, 16, 3, {300, 129, 2}, {1, 1, 1}};
    run_case(smol, 0, 132);
    run_case(smol, 0, 2);
    /* issue 17: attn_decode.cu and attn_prefill_tc.cu (cc 90) on every case above, then
     * the shapes they were built for: GQA 1/4/8, head_dim 64/128, chunked prefill after
     * prior context, windows, ragged batches, 1 / a few / many splits */
    for (const att_case &c : cases) run_case(c, 0, 132, 90); /* f32 caches: the f32 runs below */
    static const att_case tc_cases[] = {
        {"tc prefill G1 hd64", 4, 4, 64, 16, 1, {150}, {150}},
        {"tc prefill G4 hd128", 8, 2, 128, 16, 1, {130}, {130}},
        {"tc prefill G8 hd128 chunk", 16, 2, 128, 16, 2, {200, 70}, {70, 3}},
        {"tc chunk after ctx G4 hd64", 16, 4, 64, 16, 2, {260, 90}, {90, 1}},
        {"tc ragged mix G4 hd64", 8, 2, 64, 16, 5, {100, 1, 47, 300, 19}, {37, 1, 47, 1, 19}},
        {"tc window 48 G4 hd64", 8, 2, 64, 16, 3, {200, 90, 5}, {120, 1, 5}, 48},
        {"tc window 100 G8 hd128", 16, 2, 128, 32, 2, {260, 33}, {70, 33}, 100},
        {"tc G3 hd64 (padded rows)", 9, 3, 64, 16, 2, {100, 40}, {100, 1}},
        {"tc G32 hd64", 32, 1, 64, 16, 2, {80, 9}, {9, 1}},
        {"tc hd256 G2", 4, 2, 256, 16, 2, {90, 20}, {70, 1}},
        {"tc hd16 odd blocks", 4, 1, 16, 7, 2, {75, 12}, {60, 12}},
        {"dec long G8 hd128", 16, 2, 128, 16, 3, {1500, 700, 64}, {1, 1, 1}},
        {"dec long G4 hd64 window", 8, 2, 64, 16, 3, {1200, 600, 30}, {1, 1, 1}, 257},
    };
    for (const att_case &c : tc_cases) {
        run_case(c, 0, 132, 90);            /* many splits */
        if (!quick) run_case(c, 0, 1, 90);  /* one: no combine */
        if (!quick) run_case(c, 1, 16, 90); /* f32 cache (a few splits): CUDA-core prefill, attn_decode f32 */
    }
    if (!only) n_fail += emu_qmatmul_run(&n_checks); /* native GGUF weights: tests/gpu/emu_qmatmul.cpp */
    printf("emu_kernels: %d checks, %d failed, %ld launches\n", n_checks, n_fail, emu_launches);
    backend_close(cpu[0]);
    backend_close(cpu[1]);
    return n_fail ? 1 : 0;
}
