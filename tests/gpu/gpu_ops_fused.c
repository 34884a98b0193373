/* gpu_ops_fused.c — the CUDA backend's fused ops (backend.h: norm_matmul, qkv_rope_kv,
 * glu_matmul, matmul_res) against the unfused op sequence each replaces, on the same
 * CUDA backend, and against the CPU backend's unfused sequence.
 *
 * Included by gpu_ops.c (it shares that file's helpers and result table, and
 * scripts/gpu-check.sh builds gpu_ops.c alone). Tolerances: vs the unfused CUDA
 * sequence FUSED_TOL — the fused kernels do the same f32 operations in the same order
 * (bit for bit on the emulator, tests/integration/50), but on a GPU nvcc may contract
 * a*b + c into an FMA differently in two kernels and cuBLAS may pick another algorithm
 * for beta = 1; vs the CPU, matmul_tol() as for matmul. A table without the fused ops
 * (KRILL_CUDA_FUSED=0) reports them UNSUPPORTED, a coverage failure. */

#define FUSED_TOL 1e-5

static bool fused_have(bool present, const char *name) {
    if (present) return true;
    add_result(name, "not in the cuda table (KRILL_CUDA_FUSED=0?)", NAN, 0, "UNSUPPORTED");
    return false;
}

static bool fused_skip(const char *op, const char *shape, double work) {
    if (!quick || work <= QUICK_WORK) return false;
    add_result(op, shape, NAN, 0, "SKIPPED");
    return true;
}

static float *fused_down(backend_t *b, const void *dev, size_t n) {
    float *h = testutil_xmalloc(sizeof(float) * n);
    down(b, h, dev, sizeof(float) * n);
    return h;
}

/* norm_matmul vs rmsnorm + matmul (with and without the residual add and the bias). */
static void fused_norm_matmul(void) {
    static const int shapes[][3] = {{1, 576, 1536}, {3, 64, 96}, {5, 100, 37}, {1, 2048, 256}, {17, 256, 512}, {64, 960, 577}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2], with_add = s % 2 == 0, with_bias = s % 3 == 1;
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d in=%d out=%d%s%s (%s)", n, in, out, with_add ? " +residual" : "",
                 with_bias ? " +bias" : "", backend_dtype_name(gpu->info.weight_dtype));
        if (fused_skip("norm_matmul", shape, (double)n * in * out)) continue;
        testutil_seed(70 + s);
        float *x = testutil_xmalloc(sizeof(float) * n * in), *a = testutil_xmalloc(sizeof(float) * n * in);
        float *nw = testutil_xmalloc(sizeof(float) * in), *bias = testutil_xmalloc(sizeof(float) * out);
        float *wf = testutil_xmalloc(sizeof(float) * out * in);
        uint16_t *wb = testutil_xmalloc(2 * (size_t)out * in);
        testutil_fill(x, (size_t)n * in, 3.0f);
        testutil_fill(a, (size_t)n * in, 2.0f);
        testutil_fill(nw, in, 1.5f);
        testutil_fill(bias, out, 1.0f);
        bf16_weights(wf, wb, (size_t)out * in, 0.5f);
        /* [0] cpu unfused, [1] cuda unfused, [2] cuda fused */
        float *y[3], *xo[3];
        for (int k = 0; k < 3; k++) {
            backend_t *b = k ? gpu : cpu;
            float *dx = up(b, x, sizeof(float) * n * in), *da = up(b, a, sizeof(float) * n * in);
            float *dn = up(b, nw, sizeof(float) * in), *db = up(b, bias, sizeof(float) * out);
            void *dw = load_weights(b, wb, (size_t)out * in);
            float *dy = poisoned(b, sizeof(float) * n * out), *dh = poisoned(b, sizeof(float) * n * in);
            if (k < 2) {
                b->ops->rmsnorm(b->ctx, dh, dx, with_add ? da : NULL, dn, n, in, 1e-5f);
                b->ops->matmul(b->ctx, dy, dh, dw, with_bias ? db : NULL, n, in, out);
            } else {
                b->ops->norm_matmul(b->ctx, dy, dx, with_add ? da : NULL, dn, 1e-5f, dw, with_bias ? db : NULL, n, in, out);
            }
            y[k] = fused_down(b, dy, (size_t)n * out);
            xo[k] = fused_down(b, dx, (size_t)n * in);
            dfree(b, dx), dfree(b, da), dfree(b, dn), dfree(b, db), dfree(b, dw), dfree(b, dy), dfree(b, dh);
        }
        const double ex = nerr(xo[2], xo[1], (size_t)n * in), ey = nerr(y[2], y[1], (size_t)n * out);
        check("norm_matmul", shape, ex > ey ? ex : ey, FUSED_TOL);
        char vs[120];
        snprintf(vs, sizeof vs, "%s vs cpu", shape);
        check("norm_matmul", vs, nerr(y[2], y[0], (size_t)n * out), matmul_tol());
        for (int k = 0; k < 3; k++) free(y[k]), free(xo[k]);
        free(x), free(a), free(nw), free(bias), free(wf), free(wb);
    }
}

/* matmul_res (y += x W^T) and glu_matmul (y (+)= glu(gu) W^T) vs the unfused ops, the
 * residual add done on the host in f32 (one rounding, as the next rmsnorm does it). */
static void fused_res_glu(void) {
    static const int shapes[][3] = {{1, 1536, 576}, {3, 96, 64}, {4, 37, 100}, {1, 512, 2048}, {9, 512, 256}, {32, 577, 960}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int op = 0; op < 3; op++) { /* 0 matmul_res, 1 glu_matmul (=), 2 glu_matmul (+=) */
            const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2], gelu = s % 2 == 1, acc = op != 1;
            const char *name = op ? "glu_matmul" : "matmul_res";
            char shape[120];
            snprintf(shape, sizeof shape, "n=%d in=%d out=%d%s%s (%s)", n, in, out, op ? (gelu ? " geglu" : " swiglu") : "",
                     acc ? " y+=" : "", backend_dtype_name(gpu->info.weight_dtype));
            if (fused_skip(name, shape, (double)n * in * out)) continue;
            testutil_seed(80 + s * 3 + op);
            const size_t nx = (size_t)n * in * (op ? 2 : 1); /* glu: gu (n, 2 in) */
            float *x = testutil_xmalloc(sizeof(float) * nx), *y0 = testutil_xmalloc(sizeof(float) * n * out);
            float *wf = testutil_xmalloc(sizeof(float) * out * in);
            uint16_t *wb = testutil_xmalloc(2 * (size_t)out * in);
            testutil_fill(x, nx, op ? 4.0f : 1.0f);
            testutil_fill(y0, (size_t)n * out, 4.0f);
            bf16_weights(wf, wb, (size_t)out * in, 0.5f);
            float *y[3];
            for (int k = 0; k < 3; k++) {
                backend_t *b = k ? gpu : cpu;
                float *dx = up(b, x, sizeof(float) * nx), *dy = up(b, y0, sizeof(float) * n * out);
                float *dt = poisoned(b, sizeof(float) * n * out), *dact = poisoned(b, sizeof(float) * n * in);
                void *dw = load_weights(b, wb, (size_t)out * in);
                if (k < 2) {
                    const float *mx = dx;
                    if (op) {
                        if (gelu) b->ops->geglu(b->ctx, dact, dx, n, in);
                        else b->ops->swiglu(b->ctx, dact, dx, n, in);
                        mx = dact;
                    }
                    b->ops->matmul(b->ctx, dt, mx, dw, NULL, n, in, out);
                    y[k] = fused_down(b, dt, (size_t)n * out);
                    for (size_t i = 0; acc && i < (size_t)n * out; i++) y[k][i] = y0[i] + y[k][i];
                } else {
                    if (op) b->ops->glu_matmul(b->ctx, acc ? dy : dt, dx, gelu, dw, n, in, out, acc);
                    else b->ops->matmul_res(b->ctx, dy, dx, dw, n, in, out);
                    y[k] = fused_down(b, acc ? dy : dt, (size_t)n * out);
                }
                dfree(b, dx), dfree(b, dy), dfree(b, dt), dfree(b, dact), dfree(b, dw);
            }
            check(name, shape, nerr(y[2], y[1], (size_t)n * out), FUSED_TOL);
            char vs[120];
            snprintf(vs, sizeof vs, "%s vs cpu", shape);
            check(name, vs, nerr(y[2], y[0], (size_t)n * out), matmul_tol());
            for (int k = 0; k < 3; k++) free(y[k]);
            free(x), free(y0), free(wf), free(wb);
        }
}

/* The KV cache's element k of a buffer of the backend's kv dtype, as f32. */
static void fused_kv_f32(const backend_t *b, const void *src, float *dst, size_t n) {
    for (size_t i = 0; i < n; i++)
        dst[i] = b->info.kv_dtype == BACKEND_DT_F32 ? ((const float *)src)[i] : quant_f16_to_f32(((const uint16_t *)src)[i]);
}

/* qkv_rope_kv vs (bias in the matmul) + rope + kv_write: q in place vs both backends,
 * the caches vs the unfused CUDA ops (the cache layout is each backend's own). */
static void fused_qkv_rope_kv(void) {
    struct { int n, nh, nkv, hd, rd, neox, bias, bs; } cs[] = {
        {1, 32, 8, 64, 64, 0, 0, 16}, {5, 9, 3, 64, 64, 1, 1, 16}, {3, 4, 4, 128, 96, 0, 1, 7}, {4, 6, 2, 80, 40, 1, 0, 4}};
    for (size_t c = 0; c < sizeof cs / sizeof cs[0]; c++) {
        const int n = cs[c].n, nh = cs[c].nh, nkv = cs[c].nkv, hd = cs[c].hd, rd = cs[c].rd, bs = cs[c].bs;
        const int qd = nh * hd, kvd = nkv * hd, row = qd + 2 * kvd, mb = 4, blocks = n * mb;
        testutil_seed(90 + c);
        float *qkv = testutil_xmalloc(sizeof(float) * n * row), *bias = testutil_xmalloc(sizeof(float) * row);
        float *inv = testutil_xmalloc(sizeof(float) * (size_t)(rd / 2));
        int32_t *pos = testutil_xmalloc(4 * (size_t)n), *seq = testutil_xmalloc(4 * (size_t)n);
        int32_t *table = testutil_xmalloc(4 * (size_t)blocks);
        testutil_fill(qkv, (size_t)n * row, 2.0f);
        testutil_fill(bias, row, 1.0f);
        llama3_inv_freq(inv, rd, 500000.0);
        for (int i = 0; i < n; i++) pos[i] = (int32_t)((i * 37 + 11) % (mb * bs)), seq[i] = i;
        for (int i = 0; i < blocks; i++) table[i] = blocks - 1 - i;
        const backend_attn_t at = {nh, nkv, hd, bs, 1.0f / sqrtf((float)hd), 0};
        const size_t cache_elems = (size_t)blocks * nkv * bs * hd;
        float *q[3], *kc[3], *vc[3];
        for (int k = 0; k < 3; k++) {
            backend_t *b = k ? gpu : cpu;
            const size_t es = backend_dtype_size(b->info.kv_dtype), cb = cache_elems * es;
            float *dq = up(b, qkv, sizeof(float) * n * row), *db = up(b, bias, sizeof(float) * row);
            float *di = up(b, inv, sizeof(float) * (size_t)(rd / 2));
            int32_t *dp = up(b, pos, 4 * (size_t)n), *ds = up(b, seq, 4 * (size_t)n), *dt = up(b, table, 4 * (size_t)blocks);
            void *dk = dalloc(b, cb), *dv = dalloc(b, cb);
            void *zero = calloc(1, cb);
            b->ops->upload(b->ctx, dk, zero, cb);
            b->ops->upload(b->ctx, dv, zero, cb);
            if (k < 2) {
                /* the bias as the matmul adds it: y += bias, f32 */
                if (cs[c].bias) {
                    float *h = fused_down(b, dq, (size_t)n * row);
                    for (int i = 0; i < n; i++)
                        for (int j = 0; j < row; j++) h[(size_t)i * row + j] += bias[j];
                    b->ops->upload(b->ctx, dq, h, sizeof(float) * n * row);
                    if (b->ops->synchronize(b->ctx)) die_backend(b, "synchronize");
                    free(h);
                }
                b->ops->rope(b->ctx, dq, n, row, nh + nkv, hd, rd, dp, di, cs[c].neox);
                b->ops->kv_write(b->ctx, dk, dv, dq + qd, dq + qd + kvd, row, dp, ds, dt, mb, n, &at);
            } else {
                b->ops->qkv_rope_kv(b->ctx, dq, cs[c].bias ? db : NULL, n, rd, dp, di, cs[c].neox, dk, dv, ds, dt, mb, &at);
            }
            q[k] = testutil_xmalloc(sizeof(float) * n * qd);
            float *h = fused_down(b, dq, (size_t)n * row);
            for (int i = 0; i < n; i++) memcpy(q[k] + (size_t)i * qd, h + (size_t)i * row, sizeof(float) * qd);
            free(h);
            void *hk = testutil_xmalloc(cb), *hv = testutil_xmalloc(cb);
            down(b, hk, dk, cb);
            down(b, hv, dv, cb);
            kc[k] = testutil_xmalloc(sizeof(float) * cache_elems);
            vc[k] = testutil_xmalloc(sizeof(float) * cache_elems);
            fused_kv_f32(b, hk, kc[k], cache_elems);
            fused_kv_f32(b, hv, vc[k], cache_elems);
            free(hk), free(hv), free(zero);
            dfree(b, dq), dfree(b, db), dfree(b, di), dfree(b, dp), dfree(b, ds), dfree(b, dt), dfree(b, dk), dfree(b, dv);
        }
        char shape[120];
        snprintf(shape, sizeof shape, "n=%d %d/%d hd=%d rope_dim=%d %s%s bs=%d kv %s", n, nh, nkv, hd, rd,
                 cs[c].neox ? "neox" : "norm", cs[c].bias ? " +bias" : "", bs, backend_dtype_name(gpu->info.kv_dtype));
        double e = nerr(q[2], q[1], (size_t)n * qd), ek = nerr(kc[2], kc[1], cache_elems), ev = nerr(vc[2], vc[1], cache_elems);
        e = e > ek ? e : ek;
        check("qkv_rope_kv", shape, e > ev ? e : ev, FUSED_TOL);
        char vs[120];
        snprintf(vs, sizeof vs, "%s: q vs cpu", shape);
        check("qkv_rope_kv", vs, nerr(q[2], q[0], (size_t)n * qd), 2e-6);
        for (int k = 0; k < 3; k++) free(q[k]), free(kc[k]), free(vc[k]);
        free(qkv), free(bias), free(inv), free(pos), free(seq), free(table);
    }
}

static void test_fused(void) {
    const backend_ops_t *o = gpu->ops;
    if (gpu->info.weight_dtype == BACKEND_DT_F32) {
        add_result("fused", "f32 weights: the fused ops take 16-bit weights only (model.c's weight_fusable)", NAN, 0,
                   "SKIPPED");
        return;
    }
    if (fused_have(o->norm_matmul != NULL, "norm_matmul")) fused_norm_matmul();
    const bool res = fused_have(o->matmul_res != NULL, "matmul_res"), glu = fused_have(o->glu_matmul != NULL, "glu_matmul");
    if (res && glu) fused_res_glu();
    if (fused_have(o->qkv_rope_kv != NULL, "qkv_rope_kv")) fused_qkv_rope_kv();
}
