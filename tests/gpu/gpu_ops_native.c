/* gpu_ops_native.c — op checks of the CUDA backend's native GGUF weights
 * (model.gpu_weights = native: load_matrix into a GQ* dtype, kernels/qmatmul.cu).
 * #included by gpu_ops.c, whose helpers it uses (check, nerr, up, down, poisoned,
 * dalloc, dfree, quick): scripts/gpu-check.sh builds gpu_ops from that one source.
 *
 * For every type kept native (Q8_0, Q4_0, Q4_1, Q4_K, Q6_K), random GGUF blocks go
 * to the CUDA backend through load_matrix (repacked, native) and to the CPU backend
 * through load_tensor as f32 (quant.c's exact dequantization). Checks:
 *   qmatmul      native vs cpu f32: normalised error <= 1.5e-2 (the bf16 matmul's bound:
 *                the kernels use the bf16-rounded weights and activations, 2^-9 each);
 *   qmatmul=bf16 native vs the CUDA bf16 path on the same file bytes (load_tensor to
 *                bf16; for n <= 8 with the bf16 GEMV forced on): <= 1e-6. The kernels
 *                form the bf16 path's weights bit for bit and sum in its order, so the
 *                emulator gets 0; on a GPU the GEMM of n > 8 rows may be split into
 *                row chunks, which can change cuBLAS's algorithm.
 * Shapes: n = 1..8 (the GEMV) and > 8 (dequantize + cuBLAS), with and without bias,
 * out not a multiple of 8, fused matrices of parts loaded at consecutive offsets (of
 * one type, and of mixed types: each part its own kernel, writing its columns of y),
 * and weight_native true for a native matrix, false for a bf16 one. */

static uint8_t *native_rand_blocks(gguf_ttype_t t, int64_t rows, int64_t cols, uint64_t seed) {
    const int64_t nbytes = quant_row_bytes(t, cols) * rows;
    uint8_t *raw = testutil_xmalloc((size_t)nbytes);
    testutil_seed(seed);
    for (int64_t i = 0; i < nbytes; i++) raw[i] = (uint8_t)testutil_next();
    for (int64_t i = 1; i < nbytes; i += 2) raw[i] &= 0x3f; /* finite f16 scales (test_load_tensor's trick) */
    return raw;
}

/* A matrix of n_parts parts stacked by rows (part p: pt[p] blocks, rows[p] rows),
 * loaded one after another at consecutive offsets, as model.c loads wq|wk|wv. */
static void run_native(int n, int in, int with_bias, int n_parts, const gguf_ttype_t *pt, const int *rows) {
    int out = 0;
    char shape[120], types[48] = "";
    for (int p = 0; p < n_parts; p++) {
        out += rows[p];
        snprintf(types + strlen(types), sizeof types - strlen(types), "%s%s", p ? "+" : "", quant_type_name(pt[p]));
    }
    snprintf(shape, sizeof shape, "%s n=%d in=%d out=%d%s%s", types, n, in, out, with_bias ? " +bias" : "",
             n_parts > 1 ? " fused" : "");
    if (quick && (double)n * in * out > QUICK_WORK) {
        add_result("qmatmul", shape, NAN, 0, "SKIPPED");
        return;
    }
    uint8_t *raw[3];
    for (int p = 0; p < n_parts; p++)
        raw[p] = native_rand_blocks(pt[p], rows[p], in, 900 + (uint64_t)pt[p] * 17 + (uint64_t)n * 5 + (uint64_t)in + p);
    float *x = testutil_xmalloc(sizeof(float) * n * in), *bias = testutil_xmalloc(sizeof(float) * out);
    testutil_fill(x, (size_t)n * in, 1.0f);
    testutil_fill(bias, out, 1.0f);
    float *y[3];
    for (int k = 0; k < 3; k++) { /* cpu f32, cuda native, cuda bf16 */
        backend_t *b = k == 0 ? cpu : gpu;
        y[k] = NULL;
        if (k == 2 && gpu->info.weight_dtype != BACKEND_DT_BF16) break;
        float *dx = up(b, x, sizeof(float) * n * in), *db = up(b, bias, sizeof(float) * out);
        size_t bytes = 0;
        for (int p = 0; p < n_parts; p++) {
            const backend_dtype_t dt = k == 1 ? (backend_dtype_t)backend_dtype_native(pt[p])
                                              : k == 0 ? BACKEND_DT_F32 : BACKEND_DT_BF16;
            bytes += backend_weight_bytes(dt, rows[p], in);
        }
        char *dw = dalloc(b, bytes);
        for (int p = 0, off = 0; p < n_parts; p++) {
            const backend_dtype_t dt = k == 1 ? (backend_dtype_t)backend_dtype_native(pt[p])
                                              : k == 0 ? BACKEND_DT_F32 : BACKEND_DT_BF16;
            const int rc = k == 1 ? b->ops->load_matrix(b->ctx, dw + off, dt, pt[p], raw[p], rows[p], in)
                                  : b->ops->load_tensor(b->ctx, dw + off, dt, pt[p], raw[p], (int64_t)rows[p] * in);
            if (rc) die_backend(b, k == 1 ? "load_matrix" : "load_tensor");
            off += (int)backend_weight_bytes(dt, rows[p], in);
        }
        if (k && b->ops->weight_native(b->ctx, dw) != (k == 1)) add_result("qmatmul", shape, INFINITY, 0, "FAIL");
        float *dy = poisoned(b, sizeof(float) * n * out);
        const int old = k == 2 ? set_gemv_max_n(8) : 0;
        b->ops->matmul(b->ctx, dy, dx, dw, with_bias ? db : NULL, n, in, out);
        if (k == 2) set_gemv_max_n(old);
        y[k] = testutil_xmalloc(sizeof(float) * n * out);
        down(b, y[k], dy, sizeof(float) * n * out);
        dfree(b, dx), dfree(b, db), dfree(b, dw), dfree(b, dy);
    }
    check("qmatmul", shape, nerr(y[1], y[0], (size_t)n * out), 1.5e-2);
    if (y[2]) check("qmatmul=bf16", shape, nerr(y[1], y[2], (size_t)n * out), 1e-6);
    for (int k = 0; k < 3; k++) free(y[k]);
    for (int p = 0; p < n_parts; p++) free(raw[p]);
    free(x), free(bias);
}

static void test_native(void) {
    if (!gpu->ops->weight_native || !gpu->ops->load_matrix) {
        add_result("qmatmul", "native GGUF weights", NAN, 0, "UNSUPPORTED");
        return;
    }
    static const gguf_ttype_t types[] = {GGUF_T_Q8_0, GGUF_T_Q4_0, GGUF_T_Q4_1, GGUF_T_Q4_K, GGUF_T_Q6_K};
    static const int shapes[][3] = {{1, 256, 37},   {3, 512, 64},     {8, 1024, 33},     {17, 768, 40},
                                    {33, 2048, 129}, {1, 4096, 1024}, {5, 4096, 4096},   {64, 4096, 1024},
                                    {512, 2048, 2048}, {2, 96, 11}};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int n = shapes[s][0], in = shapes[s][1], out = shapes[s][2];
            if (!backend_weight_bytes((backend_dtype_t)backend_dtype_native(types[ti]), out, in)) continue;
            for (int b = 0; b < 2; b++) run_native(n, in, b, 1, &types[ti], &out);
        }
    /* wq|wk|wv style: parts at consecutive offsets, one matmul; of one type, and mixed
     * as Q4_K_M mixes them (Q6_K attn_v beside Q4_K q and k) */
    static const int parts[] = {24, 40, 16};
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const gguf_ttype_t same[2] = {types[ti], types[ti]};
        run_native(2, 512, 1, 2, same, parts);
        run_native(12, 512, 0, 2, same, parts);
    }
    static const gguf_ttype_t mixed[3] = {GGUF_T_Q4_K, GGUF_T_Q4_K, GGUF_T_Q6_K};
    static const gguf_ttype_t legacy[3] = {GGUF_T_Q8_0, GGUF_T_Q4_0, GGUF_T_Q4_1};
    for (int b = 0; b < 2; b++) {
        run_native(3, 512, b, 3, mixed, parts);
        run_native(20, 512, b, 3, mixed, parts);
        run_native(1, 256, b, 3, legacy, parts);
        run_native(9, 256, b, 3, legacy, parts);
    }
}
