/* test_hparams.c — hyper-parameters of the default model (values checked against the
 * gguf Python package's reading of the file) and of tiny synthetic models written at
 * test time by tests/reference/write_tiny_gguf.py (qwen2 biases, llama3 / linear rope
 * scaling, rope_freqs.weight, and files with one defect each). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "gguf.h"
#include "hparams.h"
#include "testutil.h"

static char tmpdir[512], tinydir[600];
static bool have_tiny;

static int setup(void **state) {
    (void)state;
    if (testutil_tmpdir(tmpdir, sizeof tmpdir, "hparams")) return -1;
    snprintf(tinydir, sizeof tinydir, "%s/tiny", tmpdir);
    int rc = testutil_write_gguf("write_tiny_gguf.py", tinydir, NULL);
    have_tiny = rc == 0;
    return rc == 1 ? -1 : 0; /* the writer is present but failed: a real failure */
}

static int teardown(void **state) {
    (void)state;
    return testutil_rmtree(tmpdir);
}

static gguf_t *open_file(const char *path) {
    char err[512];
    gguf_t *g = gguf_open(path, err, sizeof(err));
    if (!g) fail_msg("%s", err);
    return g;
}

static gguf_t *open_tiny(const char *name) {
    if (!have_tiny) skip(); /* the venv is missing: noted by testutil_write_gguf */
    char path[700];
    snprintf(path, sizeof(path), "%s/%s", tinydir, name);
    return open_file(path);
}

static void load(gguf_t *g, hparams_t *hp) {
    char err[512];
    if (hparams_load(g, hp, err, sizeof(err)) != 0) fail_msg("%s", err);
}

static void test_default_model(void **state) {
    (void)state;
    TESTUTIL_NEED_MODEL();
    hparams_t hp;
    gguf_t *g = open_file(TESTUTIL_MODEL);
    load(g, &hp);
    assert_string_equal(hp.arch, "llama");
    assert_string_equal(hp.name, "Smollm2 135M 8k Lc100K Mix1 Ep2");
    assert_int_equal(hp.n_layers, 30);
    assert_int_equal(hp.d_model, 576);
    assert_int_equal(hp.n_heads, 9);
    assert_int_equal(hp.n_kv_heads, 3);
    assert_int_equal(hp.head_dim, 64);
    assert_int_equal(hp.ffn_dim, 1536);
    assert_int_equal(hp.n_vocab, 49152);
    assert_int_equal(hp.n_ctx_train, 8192);
    assert_true(hp.rope_base == 100000.0f);
    assert_int_equal(hp.rope_dim, 64);
    assert_true(hp.rms_eps == 1e-5f); /* stored as f32 9.99999975e-06 */
    assert_int_equal(hp.rope_scaling, HPARAMS_ROPE_NONE);
    assert_true(hp.rope_factor == 1.0f);
    assert_true(hp.tied_embeddings);
    assert_false(hp.qkv_bias);
    assert_false(hp.rope_freqs);
    gguf_close(g);
}

static void test_qwen2_bias(void **state) {
    (void)state;
    gguf_t *g = open_tiny("qwen2.gguf");
    hparams_t hp;
    load(g, &hp);
    assert_string_equal(hp.arch, "qwen2");
    assert_string_equal(hp.name, "tiny-qwen2");
    assert_true(hp.qkv_bias);
    assert_false(hp.tied_embeddings);
    assert_int_equal(hp.n_layers, 2);
    assert_int_equal(hp.d_model, 64);
    assert_int_equal(hp.n_heads, 4);
    assert_int_equal(hp.n_kv_heads, 2);
    assert_int_equal(hp.head_dim, 16);
    assert_int_equal(hp.ffn_dim, 96);
    assert_int_equal(hp.n_vocab, 100);
    assert_int_equal(hp.n_ctx_train, 2048);
    assert_true(hp.rope_base == 500000.0f);
    assert_true(hp.rms_eps == 1e-6f);
    gguf_close(g);
}

static void test_llama3_scaling(void **state) {
    (void)state;
    gguf_t *g = open_tiny("llama3.gguf");
    hparams_t hp;
    load(g, &hp);
    assert_int_equal(hp.rope_scaling, HPARAMS_ROPE_LLAMA3);
    assert_true(hp.rope_factor == 8.0f);
    assert_true(hp.rope_low_freq_factor == 1.0f);
    assert_true(hp.rope_high_freq_factor == 4.0f);
    assert_int_equal(hp.rope_orig_ctx, 8192);
    assert_false(hp.rope_freqs);
    assert_false(hp.qkv_bias);
    assert_true(hp.tied_embeddings);
    gguf_close(g);

    g = open_tiny("ropefreqs.gguf");
    load(g, &hp);
    assert_true(hp.rope_freqs);
    assert_int_equal(hp.rope_scaling, HPARAMS_ROPE_LLAMA3);
    assert_int_equal(hp.rope_dim, 16);
    gguf_close(g);

    g = open_tiny("linear.gguf");
    load(g, &hp);
    assert_int_equal(hp.rope_scaling, HPARAMS_ROPE_LINEAR);
    assert_true(hp.rope_factor == 2.0f);
    assert_int_equal(hp.n_kv_heads, 4); /* head_count_kv absent: defaults to head_count */
    gguf_close(g);
}

static void test_bad_models(void **state) {
    (void)state;
    static const struct {
        const char *file, *msg;
    } bad[] = {
        {"bad_arch.gguf", "general.architecture 'gpt2' is not supported (supported: llama, qwen2, qwen3, gemma3)"},
        {"bad_qwen3_no_qknorm.gguf", "tensor 'blk.0.attn_q_norm.weight' is missing"},
        {"bad_no_block_count.gguf", "llama.block_count: missing"},
        {"bad_kv_heads.gguf", "not a multiple of 3 kv heads"},
        {"bad_shape.gguf", "'blk.1.ffn_up.weight' has shape [64, 95, 1, 1]"},
        {"bad_missing_tensor.gguf", "'blk.1.attn_v.weight' is missing"},
        {"bad_missing_bias.gguf", "'blk.1.attn_k.bias' is missing"},
        {"bad_yarn.gguf", "'yarn' is not supported"},
        {"bad_tokens.gguf", "tokenizer.ggml.tokens has 99 entries"},
        {"bad_eps.gguf", "layer_norm_rms_epsilon: value -1e-05"},
        {"bad_layers_type.gguf", "'llama.block_count' has type string"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        gguf_t *g = open_tiny(bad[i].file);
        hparams_t hp;
        char err[512] = "";
        int rc = hparams_load(g, &hp, err, sizeof(err));
        gguf_close(g);
        if (rc == 0) fail_msg("%s: loaded, expected an error", bad[i].file);
        if (!strstr(err, bad[i].msg)) fail_msg("%s: message \"%s\" lacks \"%s\"", bad[i].file, err, bad[i].msg);
        print_message("  %-26s -> %s\n", bad[i].file, err);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_model), cmocka_unit_test(test_qwen2_bias),
        cmocka_unit_test(test_llama3_scaling), cmocka_unit_test(test_bad_models),
    };
    return testutil_exit(cmocka_run_group_tests(tests, setup, teardown));
}
