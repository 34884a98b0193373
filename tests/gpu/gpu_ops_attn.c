/* gpu_ops_attn.c — gpu_ops's kv_write and attention checks and bench_attention: part of
 * gpu_ops.c's translation unit (#included there, after the benchmark helpers), so that
 * scripts/gpu-check.sh keeps linking gpu_ops.c alone and this file shares its statics
 * (results, cpu/gpu backends, upload helpers, roofline figures).
 *
 * Tolerances: the CUDA backend picks its attention kernels per call (kernels/attention.cu,
 * attention_choose). Rows a tensor-core prefill tile may have written (f16 cache,
 * head_dim a multiple of 16, tokens in a uniform tile of 64 / G tokens: the host twin of
 * tile_uniform) are checked as "attention_tc" at 1e-3 (q and p rounded to f16,
 * kernels/attn_prefill_tc.cu); every other row as "attention" at 2e-5 (f32 throughout).
 * On a device where the CUDA-core prefill serves those rows instead (sm_89 at head_dim
 * 256), they are only more accurate than the looser bound. */

typedef struct {
    const char *name;
    int nh, nkv, hd, bs;
    int n_seqs;
    int ctx[8];   /* cached tokens of each sequence after this batch */
    int nq[8];    /* tokens of each sequence in this batch (the last nq positions) */
    int window;   /* sliding window (0: global) */
} att_case_t;

/* The order inside a KV block is each backend's own (backend.h). To compare kv_write
 * results, K is brought to (block, kv head, slot, dim) order: the CUDA backend's own;
 * the CPU backend stores K blocks as (kv head, dim, slot) (docs/engine.md). V is
 * (kv head, slot, dim) on both. */
static void canon_k(const backend_t *b, uint8_t *k, int n_blocks, const backend_attn_t *a, size_t es) {
    if (strcmp(b->info.name, "cpu")) return;
    const size_t blk = (size_t)a->n_kv_heads * a->block_size * a->head_dim * es;
    uint8_t *tmp = testutil_xmalloc(blk);
    for (int i = 0; i < n_blocks; i++) {
        uint8_t *base = k + (size_t)i * blk;
        for (int g = 0; g < a->n_kv_heads; g++)
            for (int d = 0; d < a->head_dim; d++)
                for (int s = 0; s < a->block_size; s++)
                    memcpy(tmp + (((size_t)g * a->block_size + s) * a->head_dim + d) * es,
                           base + (((size_t)g * a->head_dim + d) * a->block_size + s) * es, es);
        memcpy(base, tmp, blk);
    }
    free(tmp);
}

static const att_case_t att_cases[] = {
    {"decode 1B shape", 32, 8, 64, 16, 4, {1, 17, 300, 1000}, {1, 1, 1, 1}, 0},
    {"decode batch1 long ctx (splits)", 32, 8, 64, 16, 1, {4096}, {1}, 0},
    {"decode SmolLM2 shape", 9, 3, 64, 16, 3, {5, 64, 129}, {1, 1, 1}, 0},
    {"prefill from 0", 32, 8, 64, 16, 1, {100}, {100}, 0},
    {"prefill continued chunk", 9, 3, 64, 32, 2, {150, 20}, {113, 20}, 0},
    {"mixed ragged batch", 32, 8, 64, 16, 5, {40, 1, 77, 300, 9}, {1, 1, 77, 1, 5}, 0},
    {"hd128 GQA4", 16, 4, 128, 16, 3, {33, 200, 64}, {1, 50, 64}, 0},
    {"hd256 MHA", 8, 8, 256, 16, 2, {70, 3}, {1, 3}, 0},
    {"hd80 scalar path", 16, 2, 80, 16, 3, {90, 1, 45}, {1, 1, 45}, 0},
    {"odd block size 7", 4, 2, 64, 7, 3, {50, 13, 8}, {50, 1, 2}, 0},
    {"block 256, GQA 32", 32, 1, 64, 256, 2, {600, 31}, {1, 31}, 0},
    {"MQA hd96", 12, 1, 96, 16, 2, {129, 64}, {1, 64}, 0},
    {"tiny hd6", 2, 1, 6, 4, 2, {9, 5}, {3, 5}, 0},
    /* issue 17: flash-decoding and the tensor-core prefill */
    {"tc prefill G1 hd64", 8, 8, 64, 16, 1, {300}, {300}, 0},
    {"tc prefill G4 hd128", 32, 8, 128, 16, 2, {520, 130}, {520, 1}, 0},
    {"tc chunk after ctx G8 hd128", 32, 4, 128, 16, 3, {900, 256, 40}, {256, 1, 40}, 0},
    {"tc ragged G4 hd64", 32, 8, 64, 16, 6, {100, 1, 47, 3000, 19, 700}, {37, 1, 47, 1, 19, 1}, 0},
    {"tc window 512 G4 hd64", 16, 4, 64, 16, 3, {1500, 700, 30}, {600, 1, 30}, 512},
    {"tc window 100 G8 hd128", 16, 2, 128, 32, 2, {777, 33}, {200, 33}, 100},
    {"tc hd256 G4 (gemma3)", 4, 1, 256, 16, 3, {700, 520, 30}, {300, 1, 30}, 512},
    {"decode long G8 hd128", 32, 4, 128, 16, 2, {8000, 2500}, {1, 1}, 0},
};

/* The host twin of tile_uniform (kernels/attention.cuh): tokens [tile*qt, tile*qt + qt)
 * of n are at least two, of one sequence, at consecutive positions. */
static bool gpu_ops_attn_uniform(const int32_t *pos, const int32_t *seq, int n, int tile, int qt) {
    if (qt < 2) return false;
    const int t0 = tile * qt, t1 = t0 + qt < n ? t0 + qt : n;
    if (t1 - t0 < 2) return false;
    for (int t = t0 + 1; t < t1; t++)
        if (seq[t] != seq[t0] || pos[t] != pos[t0] + (t - t0)) return false;
    return true;
}

static void run_att_case(const att_case_t *c, bool big_batch) {
    const int nh = c->nh, nkv = c->nkv, hd = c->hd, bsz = c->bs, qd = nh * hd, kvd = nkv * hd;
    int n_seqs = c->n_seqs, ctx[256], nq[256];
    for (int s = 0; s < n_seqs; s++) ctx[s] = c->ctx[s], nq[s] = c->nq[s];
    if (big_batch) { /* 256 decode sequences of varied length: the graph-sized case */
        n_seqs = 256;
        for (int s = 0; s < n_seqs; s++) ctx[s] = 1 + (s * 37) % 700, nq[s] = 1;
    }
    int n = 0, max_blocks = 0, total_blocks = 0;
    for (int s = 0; s < n_seqs; s++) {
        n += nq[s];
        int b = (ctx[s] + bsz - 1) / bsz;
        if (b > max_blocks) max_blocks = b;
        total_blocks += b;
    }
    total_blocks += 3; /* unused blocks keep their poison */
    if (quick) {
        double work = 0;
        for (int s = 0; s < n_seqs; s++) work += (double)nq[s] * ctx[s] * nh * hd;
        if (work > QUICK_WORK / 4) {
            char shape[120];
            snprintf(shape, sizeof shape, "%s: heads %d/%d hd=%d n=%d", big_batch ? "decode batch 256" : c->name, nh,
                     nkv, hd, n);
            add_result("attention", shape, NAN, 0, "SKIPPED");
            return;
        }
    }
    testutil_seed(70 + (uint64_t)nh * 3 + hd + bsz + n);
    /* block table: a random permutation of physical blocks */
    int32_t *perm = testutil_xmalloc(sizeof(int32_t) * total_blocks);
    int32_t *table = testutil_xmalloc(sizeof(int32_t) * n_seqs * max_blocks);
    for (int i = 0; i < total_blocks; i++) perm[i] = i;
    testutil_shuffle(perm, total_blocks);
    for (int s = 0, k = 0; s < n_seqs; s++)
        for (int b = 0; b < max_blocks; b++)
            table[s * max_blocks + b] = b < (ctx[s] + bsz - 1) / bsz ? perm[k++] : 0;
    /* tokens: the last nq[s] positions of each sequence */
    int32_t *pos = testutil_xmalloc(sizeof(int32_t) * n), *seq = testutil_xmalloc(sizeof(int32_t) * n);
    for (int s = 0, t = 0; s < n_seqs; s++)
        for (int p = ctx[s] - nq[s]; p < ctx[s]; p++, t++) pos[t] = p, seq[t] = s;
    /* the earlier positions' K/V: written by kv_write from random rows too */
    int n_hist = 0;
    for (int s = 0; s < n_seqs; s++) n_hist += ctx[s] - nq[s];
    int32_t *hpos = testutil_xmalloc(sizeof(int32_t) * (n_hist + 1));
    int32_t *hseq = testutil_xmalloc(sizeof(int32_t) * (n_hist + 1));
    for (int s = 0, t = 0; s < n_seqs; s++)
        for (int p = 0; p < ctx[s] - nq[s]; p++, t++) hpos[t] = p, hseq[t] = s;
    const int stride = qd + 2 * kvd + 5; /* fused qkv rows with padding */
    float *qkv = testutil_xmalloc(sizeof(float) * n * stride);
    float *hkv = testutil_xmalloc(sizeof(float) * (n_hist + 1) * stride);
    testutil_fill(qkv, (size_t)n * stride, 2.0f);
    testutil_fill(hkv, (size_t)(n_hist + 1) * stride, 2.0f);
    const backend_attn_t a = {nh, nkv, hd, bsz, 1.0f / sqrtf((float)hd), c->window};
    const size_t cache_bytes = (size_t)total_blocks * nkv * bsz * hd * backend_dtype_size(gpu->info.kv_dtype);
    backend_t *bs[2] = {cpu, gpu};
    float *out[2];
    uint8_t *cache[2];
    for (int k = 0; k < 2; k++) {
        backend_t *b = bs[k];
        void *kc = poisoned(b, cache_bytes), *vc = poisoned(b, cache_bytes);
        int32_t *dtab = up(b, table, sizeof(int32_t) * n_seqs * max_blocks);
        int32_t *dpos = up(b, pos, sizeof(int32_t) * n), *dseq = up(b, seq, sizeof(int32_t) * n);
        int32_t *dhp = up(b, hpos, sizeof(int32_t) * (n_hist + 1)), *dhs = up(b, hseq, sizeof(int32_t) * (n_hist + 1));
        float *dq = up(b, qkv, sizeof(float) * n * stride), *dh = up(b, hkv, sizeof(float) * (n_hist + 1) * stride);
        float *dout = poisoned(b, sizeof(float) * n * qd);
        if (n_hist) b->ops->kv_write(b->ctx, kc, vc, dh + qd, dh + qd + kvd, stride, dhp, dhs, dtab, max_blocks, n_hist, &a);
        b->ops->kv_write(b->ctx, kc, vc, dq + qd, dq + qd + kvd, stride, dpos, dseq, dtab, max_blocks, n, &a);
        b->ops->attention(b->ctx, dout, dq, stride, kc, vc, dpos, dseq, dtab, max_blocks, n, &a);
        out[k] = testutil_xmalloc(sizeof(float) * n * qd);
        down(b, out[k], dout, sizeof(float) * n * qd);
        cache[k] = testutil_xmalloc(2 * cache_bytes);
        down(b, cache[k], kc, cache_bytes);
        down(b, cache[k] + cache_bytes, vc, cache_bytes);
        canon_k(b, cache[k], total_blocks, &a, backend_dtype_size(gpu->info.kv_dtype));
        dfree(b, kc), dfree(b, vc), dfree(b, dtab), dfree(b, dpos), dfree(b, dseq), dfree(b, dhp), dfree(b, dhs);
        dfree(b, dq), dfree(b, dh), dfree(b, dout);
    }
    char shape[120];
    int maxctx = 0;
    for (int s = 0; s < n_seqs; s++) maxctx = ctx[s] > maxctx ? ctx[s] : maxctx;
    snprintf(shape, sizeof shape, "%s: heads %d/%d hd=%d bs=%d n=%d seqs=%d ctx<=%d kv=%s",
             big_batch ? "decode batch 256" : c->name, nh, nkv, hd, bsz, n, n_seqs, maxctx,
             backend_dtype_name(gpu->info.kv_dtype));
    size_t diff = 0;
    for (size_t i = 0; i < 2 * cache_bytes; i++) diff += cache[0][i] != cache[1][i];
    check("kv_write", shape, (double)diff, 0);
    /* rows a tensor-core prefill tile may have written vs the rest (tolerances: top) */
    const bool tc = gpu->info.kv_dtype == BACKEND_DT_F16 && hd % 16 == 0;
    const int qt = n >= 2 ? 64 / (nh / nkv) : 1;
    float *sel[2][2] = {{testutil_xmalloc(sizeof(float) * n * qd), testutil_xmalloc(sizeof(float) * n * qd)},
                        {testutil_xmalloc(sizeof(float) * n * qd), testutil_xmalloc(sizeof(float) * n * qd)}};
    size_t cnt[2] = {0, 0};
    for (int t = 0; t < n; t++) {
        const int k = tc && gpu_ops_attn_uniform(pos, seq, n, t / qt, qt);
        memcpy(sel[k][0] + cnt[k], out[0] + (size_t)t * qd, sizeof(float) * qd);
        memcpy(sel[k][1] + cnt[k], out[1] + (size_t)t * qd, sizeof(float) * qd);
        cnt[k] += qd;
    }
    if (cnt[0]) check("attention", shape, nerr(sel[0][1], sel[0][0], cnt[0]), 2e-5);
    if (cnt[1]) check("attention_tc", shape, nerr(sel[1][1], sel[1][0], cnt[1]), 1e-3);
    free(sel[0][0]), free(sel[0][1]), free(sel[1][0]), free(sel[1][1]);
    free(out[0]), free(out[1]), free(cache[0]), free(cache[1]);
    free(perm), free(table), free(pos), free(seq), free(hpos), free(hseq), free(qkv), free(hkv);
}

static void test_attention(void) {
    for (size_t i = 0; i < sizeof att_cases / sizeof att_cases[0]; i++) run_att_case(&att_cases[i], false);
    run_att_case(&att_cases[0], true);
}

/* ------------------------------------------------------------------ bench_attention */

typedef struct {
    float *out, *q;
    void *kc, *vc;
    int32_t *pos, *seq, *tab;
    int stride, mb, n;
    backend_attn_t a;
} att_arg_t;
static void att_fn(void *p) {
    att_arg_t *x = p;
    gpu->ops->attention(gpu->ctx, x->out, x->q, x->stride, x->kc, x->vc, x->pos, x->seq, x->tab, x->mb, x->n, &x->a);
}

/* Decode rows report the K/V stream: every token reads its context's K and V once per kv
 * head (GQA heads share the read), as GB/s and % of the roofline's copy bandwidth
 * (issue 17: >= 50 % at 256 sequences). Prefill rows report causal TFLOP/s (4 * ctx *
 * head_dim per query head and key: q.k and p.v) and % of the cuBLAS GEMM peak. */
static void bench_attention(void) {
    static const struct {
        const char *geo;
        int nh, nkv, hd, n_seqs, ctx, nq;
    } cs[] = {
        {"1B 32/8 hd64", 32, 8, 64, 1, 4096, 1},      {"1B 32/8 hd64", 32, 8, 64, 64, 1024, 1},
        {"1B 32/8 hd64", 32, 8, 64, 256, 256, 1},     {"1B 32/8 hd64", 32, 8, 64, 256, 2048, 1},
        {"8B 32/8 hd128", 32, 8, 128, 256, 1024, 1},  {"G8 64/8 hd128", 64, 8, 128, 256, 1024, 1},
        {"1B 32/8 hd64", 32, 8, 64, 1, 2048, 2048},   {"8B 32/8 hd128", 32, 8, 128, 1, 4096, 4096},
        {"8B 32/8 hd128", 32, 8, 128, 4, 2048, 512},
    };
    const int bsz = 16;
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        const int nh = cs[i].nh, nkv = cs[i].nkv, hd = cs[i].hd;
        const int S = cs[i].n_seqs, ctx = cs[i].ctx, nq = cs[i].nq, n = S * nq, mb = (ctx + bsz - 1) / bsz;
        const size_t es = backend_dtype_size(gpu->info.kv_dtype), cb = (size_t)S * mb * nkv * bsz * hd * es;
        int32_t *tab = testutil_xmalloc(sizeof(int32_t) * S * mb), *pos = testutil_xmalloc(sizeof(int32_t) * n);
        int32_t *seq = testutil_xmalloc(sizeof(int32_t) * n);
        for (int k = 0; k < S * mb; k++) tab[k] = k;
        for (int s = 0, t = 0; s < S; s++)
            for (int p = ctx - nq; p < ctx; p++, t++) pos[t] = p, seq[t] = s;
        float *q = testutil_xmalloc(sizeof(float) * n * nh * hd);
        testutil_fill(q, (size_t)n * nh * hd, 1.0f);
        uint8_t *kv = testutil_xmalloc(cb);
        for (size_t k = 0; k < cb; k += 2) { /* random finite f16/f32 bytes */
            uint16_t h = quant_f32_to_f16(testutil_unif());
            memcpy(kv + k, &h, 2);
        }
        att_arg_t a = {dalloc(gpu, sizeof(float) * n * nh * hd), up(gpu, q, sizeof(float) * n * nh * hd), up(gpu, kv, cb),
                       up(gpu, kv, cb), up(gpu, pos, sizeof(int32_t) * n), up(gpu, seq, sizeof(int32_t) * n),
                       up(gpu, tab, sizeof(int32_t) * S * mb), nh * hd, mb, n, {nh, nkv, hd, bsz, 1.0f / sqrtf(hd), 0}};
        const double ms = time_op(att_fn, &a, 10), sec = ms * 1e-3;
        double kv_read = 0, flops = 0;
        for (int t = 0; t < n; t++) {
            kv_read += 2.0 * (pos[t] + 1) * nkv * hd * es;
            flops += 4.0 * (pos[t] + 1) * nh * hd;
        }
        char shape[120];
        snprintf(shape, sizeof shape, "%s: %d seqs x ctx %d, %d new", cs[i].geo, S, ctx, nq);
        if (nq == 1)
            bench_line("bench_att", shape, ms, "decode: %.0f GB/s K/V stream (%.0f%% of copy bandwidth)",
                       kv_read / sec / 1e9, 100 * kv_read / sec / 1e9 / roof.copy_gbs);
        else
            bench_line("bench_att", shape, ms, "prefill: %.1f TFLOP/s (%.0f%% of GEMM peak)", flops / sec / 1e12,
                       100 * flops / sec / 1e12 / roof.gemm_tflops);
        dfree(gpu, a.out), dfree(gpu, a.q), dfree(gpu, a.kc), dfree(gpu, a.vc), dfree(gpu, a.pos), dfree(gpu, a.seq);
        dfree(gpu, a.tab);
        free(tab), free(pos), free(seq), free(q), free(kv);
    }
}
