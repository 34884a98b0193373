/* gpu_parity.c — model-level parity: krill's logits for S sequences x L positions
 * against reference logits (transformers on the GPU, or krill's CPU backend).
 *
 * Builds without cmocka (scripts/gpu-check.sh builds it on bare GPU machines).
 * Two ways through the model, both compared with the reference:
 *   prefill: every sequence's L tokens in ragged batches of whole sequences;
 *   decode:  the first L/2 tokens of every sequence as one prefill batch, then L/2
 *            steps of S decode tokens (one per sequence): the decode attention path,
 *            and CUDA graphs where the model uses them.
 * Per position: relative error ||krill - ref|| / ||ref|| over the vocabulary, and
 * whether the greedy token (argmax) agrees. Gates: every position's relative error
 * <= --max-rel, and the agreeing fraction >= --min-agree. --out writes the prefill
 * logits (S, L, vocab) as f32 for another run's --ref, --out-decode the decode path's.
 * Greedy ids: the decode steps are run again through model_forward_argmax (the
 * device's argmax where the backend has one, padded graph buckets on CUDA); every id
 * must equal the argmax of the decode logits (gate: exact). --no-graphs runs the
 * decode steps eagerly (to compare the two with --out-decode); --logit-chunk N caps the
 * LM head's chunk at N rows, so a decode bucket wider than N is graphed without its
 * head, which then runs in chunks after the replay.
 * Exit: 0 gates met, 1 not met or error, 77 no GPU for --backend cuda. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include "backend.h"
#include "cli.h"
#include "clock.h"
#include "gguf.h"
#include "model.h"
#include "../unit/testutil.h"

#define PARITY_VERSION "gpu_parity " KRILL_VERSION

/* Maps a whole file read-only; exits with a message when it is not `want` bytes. */
static const float *map_floats(const char *path, size_t want) {
    int fd = open(path, O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st)) {
        fprintf(stderr, "gpu_parity: cannot open %s\n", path);
        exit(1);
    }
    if ((size_t)st.st_size != want) {
        fprintf(stderr, "gpu_parity: %s has %lld bytes, expected %zu (seqs x len x vocab floats)\n", path,
                (long long)st.st_size, want);
        exit(1);
    }
    void *p = mmap(NULL, want, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) {
        fprintf(stderr, "gpu_parity: cannot map %s\n", path);
        exit(1);
    }
    return p;
}

typedef struct {
    double rel_median, rel_max, rel_p99, agree;
    int n_over;
} cmp_t;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static cmp_t compare(const float *got, const float *ref, size_t rows, int vocab, double max_rel) {
    double *rel = testutil_xmalloc(sizeof(double) * rows);
    cmp_t c = {0};
    size_t agree = 0;
    for (size_t r = 0; r < rows; r++) {
        const float *g = got + r * vocab, *f = ref + r * vocab;
        double num = 0, den = 0;
        bool bad = false;
        for (int i = 0; i < vocab; i++) {
            if (!isfinite(g[i])) bad = true;
            double d = (double)g[i] - f[i];
            num += d * d;
            den += (double)f[i] * f[i];
        }
        rel[r] = bad ? INFINITY : sqrt(num / (den > 0 ? den : 1));
        c.n_over += rel[r] > max_rel;
        agree += testutil_argmax(g, vocab) == testutil_argmax(f, vocab);
    }
    qsort(rel, rows, sizeof *rel, cmp_double);
    c.rel_median = rel[rows / 2];
    c.rel_p99 = rel[(size_t)(rows * 0.99)];
    c.rel_max = rel[rows - 1];
    c.agree = (double)agree / rows;
    free(rel);
    return c;
}

typedef struct {
    model_t *m;
    int S, L, vocab, mb;
    const int32_t *toks; /* (S, L) */
    int32_t *table;      /* (S, mb) */
    int32_t *cur;        /* (S) cached tokens of each sequence */
    int max_tokens;      /* tokens per model_forward */
    int32_t *ids;        /* (S, L) greedy ids of model_forward_argmax, or NULL */
} run_t;

/* Runs tokens [p0, p1) of sequences [s0, s1) in one batch; logits of every row go to
 * out (S, L, vocab) at their (s, p). */
static int run_batch(run_t *r, int s0, int s1, int p0, int p1, float *out, float *scratch) {
    const int n = (s1 - s0) * (p1 - p0);
    int32_t *tok = testutil_xmalloc(sizeof(int32_t) * n), *pos = testutil_xmalloc(sizeof(int32_t) * n);
    int32_t *seq = testutil_xmalloc(sizeof(int32_t) * n);
    int32_t *rows = testutil_xmalloc(sizeof(int32_t) * n), *len = testutil_xmalloc(sizeof(int32_t) * r->S);
    for (int s = s0; s < s1; s++) r->cur[s] = p1;
    for (int s = 0; s < r->S; s++) len[s] = r->cur[s];
    int t = 0;
    for (int s = s0; s < s1; s++)
        for (int p = p0; p < p1; p++, t++) tok[t] = r->toks[(size_t)s * r->L + p], pos[t] = p, seq[t] = s, rows[t] = t;
    model_batch_t b = {.n_tokens = n, .tokens = tok, .pos = pos, .seq = seq, .n_seqs = r->S, .seq_len = len,
                       .block_table = r->table, .max_blocks = r->mb, .n_logits = n, .logit_rows = rows};
    if (r->ids) { /* greedy ids only */
        int32_t *got = testutil_xmalloc(sizeof(int32_t) * n);
        int rc = model_forward_argmax(r->m, &b, got, NULL, NULL);
        for (t = 0; !rc && t < n; t++) r->ids[(size_t)seq[t] * r->L + pos[t]] = got[t];
        free(got), free(tok), free(pos), free(seq), free(rows), free(len);
        return rc;
    }
    int rc = model_forward(r->m, &b, scratch);
    if (!rc)
        for (t = 0; t < n; t++)
            memcpy(out + ((size_t)seq[t] * r->L + pos[t]) * r->vocab, scratch + (size_t)t * r->vocab,
                   sizeof(float) * r->vocab);
    free(tok), free(pos), free(seq), free(rows), free(len);
    return rc;
}

/* Positions [p0, p1) of every sequence, as many whole sequences per call as fit. */
static int run_all(run_t *r, int p0, int p1, float *out, float *scratch) {
    int per = r->max_tokens / (p1 - p0);
    if (per < 1) per = 1;
    for (int s = 0; s < r->S; s += per)
        if (run_batch(r, s, s + per < r->S ? s + per : r->S, p0, p1, out, scratch)) return -1;
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: gpu_parity --model M.gguf --tokens T.bin --seqs S --len L [--backend cuda|cpu] [--dtype bf16|f16]\n"
               "                  [--gpu-weights auto|bf16|native]\n"
               "                  [--ref FILE[:NAME]]... [--out FILE] [--max-rel 2e-2] [--min-agree 0.9]\n"
               "                  [--json FILE] [--threads N] [--out-decode FILE] [--no-graphs] [--logit-chunk N]\n"
               "Compares krill's logits (prefill and decode paths) with reference logits (S, L, vocab) f32.\n");
}

int main(int argc, char **argv) {
    cli_init("gpu_parity");
    const char *model_path = NULL, *tok_path = NULL, *out_path = NULL, *out_dec_path = NULL;
    int no_graphs = 0;
    char *refs[4];
    int n_refs = 0;
    const char *backend = "cuda", *dtype = "bf16", *json_path = NULL, *gpu_weights = NULL;
    int S = 0, L = 0, threads = 0, logit_chunk = 0;
    double max_rel = 2e-2, min_agree = 0.9;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--version")) {
            printf("%s\n", PARITY_VERSION);
            return 0;
        } else if (!strcmp(a, "--no-graphs")) {
            no_graphs = 1;
            continue;
        } else if (!v) {
            fprintf(stderr, "gpu_parity: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--model")) model_path = v;
        else if (!strcmp(a, "--tokens")) tok_path = v;
        else if (!strcmp(a, "--ref") && n_refs < 4) refs[n_refs++] = strdup(v);
        else if (!strcmp(a, "--out")) out_path = v;
        else if (!strcmp(a, "--out-decode")) out_dec_path = v;
        else if (!strcmp(a, "--backend")) backend = v;
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--gpu-weights")) gpu_weights = v;
        else if (!strcmp(a, "--json")) json_path = v;
        else if (!strcmp(a, "--seqs")) S = (int)cli_long(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--len")) L = (int)cli_long(a, v, 2, 1 << 20);
        else if (!strcmp(a, "--threads")) threads = (int)cli_long(a, v, 0, 1024);
        else if (!strcmp(a, "--logit-chunk")) logit_chunk = (int)cli_long(a, v, 1, 1 << 20);
        else if (!strcmp(a, "--max-rel")) max_rel = cli_double(a, v, 0, 1e300);
        else if (!strcmp(a, "--min-agree")) min_agree = cli_double(a, v, 0, 1);
        else {
            fprintf(stderr, "gpu_parity: unknown argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!model_path || !tok_path || S <= 0 || L < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(backend, "cuda")) {
        char e2[1024];
        if (!backend_available("cuda")) { /* not built, or its module does not load: an error, not "no GPU" */
            backend_find("cuda", e2, sizeof e2);
            fprintf(stderr, "gpu_parity: %s\n", e2);
            return 1;
        }
        backend_t *probe = backend_open("cuda", NULL, e2, sizeof e2);
        if (!probe) {
            printf("no GPU: %s\n", e2);
            return 77;
        }
        backend_close(probe);
    }
    char err[512];
    gguf_t *g = gguf_open(model_path, err, sizeof err);
    if (!g) {
        fprintf(stderr, "gpu_parity: %s\n", err);
        return 1;
    }
    const int bs = 16, mb = (L + bs - 1) / bs;
    /* logits of every row are wanted: keep batches (and so logits buffers) modest */
    const int max_tokens = L > 256 ? L : 256;
    model_params_t mp = {.backend = backend, .dtype = dtype, .n_threads = threads, .max_batch_tokens = max_tokens,
                         .max_seqs = S, .kv_block_size = bs, .kv_cache_tokens = (int64_t)S * mb * bs,
                         .gpu_memory_fraction = 0.5, .no_graphs = no_graphs, .gpu_weights = gpu_weights,
                         .logit_chunk = logit_chunk};
    double t0 = clock_now_ms();
    model_t *m = model_load(g, &mp, err, sizeof err);
    if (!m) {
        fprintf(stderr, "gpu_parity: model_load: %s\n", err);
        return 1;
    }
    const double load_ms = clock_now_ms() - t0;
    const int vocab = model_hparams(m)->n_vocab;
    if (model_kv_blocks(m) < (int64_t)S * mb) {
        fprintf(stderr, "gpu_parity: the model allocated %lld KV blocks, %d needed\n", (long long)model_kv_blocks(m),
                S * mb);
        return 1;
    }
    /* tokens */
    FILE *tf = fopen(tok_path, "rb");
    int32_t *toks = testutil_xmalloc(sizeof(int32_t) * S * L);
    if (!tf || fread(toks, sizeof(int32_t), (size_t)S * L, tf) != (size_t)S * L) {
        fprintf(stderr, "gpu_parity: cannot read %d x %d int32 tokens from %s\n", S, L, tok_path);
        return 1;
    }
    fclose(tf);
    for (int i = 0; i < S * L; i++)
        if (toks[i] < 0 || toks[i] >= vocab) {
            fprintf(stderr, "gpu_parity: token %d out of the vocabulary (%d)\n", toks[i], vocab);
            return 1;
        }
    run_t r = {m, S, L, vocab, mb, toks, testutil_xmalloc(sizeof(int32_t) * S * mb), calloc(S, sizeof(int32_t)), max_tokens,
               NULL};
    for (int i = 0; i < S * mb; i++) r.table[i] = i; /* sequence s owns blocks [s*mb, (s+1)*mb) */
    const size_t rows = (size_t)S * L, bytes = rows * vocab * sizeof(float);
    float *pre = testutil_xmalloc(bytes), *dec = testutil_xmalloc(bytes);
    float *scratch = testutil_xmalloc(sizeof(float) * max_tokens * vocab);
    printf("gpu_parity: %s on %s (%s), %d x %d positions, vocab %d, load %.0f ms\n", model_path,
           model_device_name(m), model_backend_name(m), S, L, vocab, load_ms);

    /* prefill path: whole sequences, as many per batch as fit max_tokens */
    t0 = clock_now_ms();
    if (run_all(&r, 0, L, pre, scratch)) {
        fprintf(stderr, "gpu_parity: model_forward (prefill) failed\n");
        return 1;
    }
    const double pre_ms = clock_now_ms() - t0;
    /* decode path: prefill L/2, then one token per sequence per step. The KV cache of the
     * first run is simply overwritten: same blocks, same positions. */
    t0 = clock_now_ms();
    const int half = L / 2;
    if (run_all(&r, 0, half, dec, scratch)) {
        fprintf(stderr, "gpu_parity: model_forward (decode prefix) failed\n");
        return 1;
    }
    for (int p = half; p < L; p++)
        if (run_all(&r, p, p + 1, dec, scratch)) {
            fprintf(stderr, "gpu_parity: model_forward (decode step %d) failed\n", p);
            return 1;
        }
    const double dec_ms = clock_now_ms() - t0;
    int fail = 0;
    /* the decode steps again, greedy ids only (same blocks, same positions) */
    r.ids = testutil_xmalloc(sizeof(int32_t) * S * L);
    for (int p = half; p < L; p++)
        if (run_all(&r, p, p + 1, NULL, scratch)) {
            fprintf(stderr, "gpu_parity: model_forward_argmax (decode step %d) failed\n", p);
            return 1;
        }
    int id_bad = 0;
    for (int s = 0; s < S; s++)
        for (int p = half; p < L; p++) {
            const float *x = dec + ((size_t)s * L + p) * vocab;
            int best = 0;
            for (int v = 1; v < vocab; v++)
                if (x[v] > x[best]) best = v;
            if (r.ids[(size_t)s * L + p] != best) id_bad++;
        }
    model_stats_t mst;
    model_get_stats(m, &mst);
    printf("  decode greedy ids (model_forward_argmax) vs argmax of decode logits: %d of %d differ; "
           "graphs: %llu captured, %llu replays, %llu nodes in the last\n", id_bad, S * (L - half),
           (unsigned long long)mst.graph_captures, (unsigned long long)mst.graph_replays,
           (unsigned long long)mst.graph_nodes);
    if (id_bad) fail = 1;
    free(r.ids);
    cmp_t self = compare(dec, pre, rows, vocab, max_rel);
    printf("  decode vs prefill (krill)   rel median %.3g p99 %.3g max %.3g  argmax agree %.1f%%  (%.0f ms / %.0f ms)\n",
           self.rel_median, self.rel_p99, self.rel_max, 100 * self.agree, pre_ms, dec_ms);
    /* the two paths differ in summation order (and so, with bf16 matmul inputs, in a few
     * roundings): a sanity bound; the references below are the real gates */
    if (self.rel_max > max_rel) fail = 1;
    FILE *jf = json_path ? fopen(json_path, "w") : NULL;
    if (jf)
        fprintf(jf,
                "{\"model\": \"%s\", \"backend\": \"%s\", \"device\": \"%s\", \"seqs\": %d, \"len\": %d, "
                "\"max_rel\": %g, \"min_agree\": %g, \"load_ms\": %.1f, \"prefill_ms\": %.1f, \"decode_ms\": %.1f,\n"
                " \"decode_vs_prefill\": {\"rel_median\": %g, \"rel_max\": %g, \"agree\": %g},\n \"references\": [",
                model_path, model_backend_name(m), model_device_name(m), S, L, max_rel, min_agree, load_ms, pre_ms,
                dec_ms, self.rel_median, self.rel_max, self.agree);
    for (int k = 0; k < n_refs; k++) {
        char *name = strrchr(refs[k], ':');
        if (name) *name++ = 0;
        else name = refs[k];
        const float *ref = map_floats(refs[k], bytes);
        cmp_t cp = compare(pre, ref, rows, vocab, max_rel), cd = compare(dec, ref, rows, vocab, max_rel);
        printf("  prefill vs %-16s rel median %.3g p99 %.3g max %.3g  over %.0e: %d  argmax agree %.1f%%\n", name,
               cp.rel_median, cp.rel_p99, cp.rel_max, max_rel, cp.n_over, 100 * cp.agree);
        printf("  decode  vs %-16s rel median %.3g p99 %.3g max %.3g  over %.0e: %d  argmax agree %.1f%%\n", name,
               cd.rel_median, cd.rel_p99, cd.rel_max, max_rel, cd.n_over, 100 * cd.agree);
        const bool ok = !cp.n_over && !cd.n_over && cp.agree >= min_agree && cd.agree >= min_agree;
        if (!ok) fail = 1;
        if (jf)
            fprintf(jf,
                    "%s\n  {\"name\": \"%s\", \"pass\": %s,\n   \"prefill\": {\"rel_median\": %g, \"rel_p99\": %g, "
                    "\"rel_max\": %g, \"over\": %d, \"agree\": %g},\n   \"decode\": {\"rel_median\": %g, \"rel_p99\": %g, "
                    "\"rel_max\": %g, \"over\": %d, \"agree\": %g}}",
                    k ? "," : "", name, ok ? "true" : "false", cp.rel_median, cp.rel_p99, cp.rel_max, cp.n_over,
                    cp.agree, cd.rel_median, cd.rel_p99, cd.rel_max, cd.n_over, cd.agree);
        munmap((void *)ref, bytes);
        free(refs[k]);
    }
    if (jf) {
        fprintf(jf, "],\n \"pass\": %s}\n", fail ? "false" : "true");
        fclose(jf);
    }
    if (out_dec_path) {
        FILE *f = fopen(out_dec_path, "wb");
        if (!f || fwrite(dec, 1, bytes, f) != bytes || fclose(f)) {
            fprintf(stderr, "gpu_parity: cannot write %s\n", out_dec_path);
            return 1;
        }
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f || fwrite(pre, 1, bytes, f) != bytes || fclose(f)) {
            fprintf(stderr, "gpu_parity: cannot write %s\n", out_path);
            return 1;
        }
    }
    printf("gpu_parity: %s\n", fail ? "FAIL" : "PASS");
    model_free(m);
    gguf_close(g);
    free(pre), free(dec), free(scratch), free(toks), free(r.table), free(r.cur);
    return fail;
}
