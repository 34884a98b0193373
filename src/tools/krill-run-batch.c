/* krill-run-batch — the worker's request path without Kafka: a JSONL file of requests in,
 * a JSONL file of results out (OpenAI Batch API style), through the same codec, pipeline
 * and engine as krill-worker, so the same request gets the same answer.
 *
 * One thread: it reads ahead only while fewer than --window requests are in flight, so
 * memory stays bounded however large the file; results are written as requests finish
 * (completion order, not input order). A line that is not a valid request is answered
 * with an error line (the worker would answer it with a 400 result or a DLQ record):
 * its custom_id is the request's if one can be found, else "<file>:<line>". */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "codec.h"
#include "config.h"
#include "engine.h"
#include "log.h"
#include "pipeline.h"

typedef struct {
    uint32_t gen;
    bool busy;
    char *id;
    codec_kind_t kind;
    codec_format_t fmt;
} job_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-run-batch -m MODEL -i IN.jsonl -o OUT.jsonl [options]\n"
            "\n"
            "Answers every line of IN (a request as krill-worker takes it) with one result line\n"
            "in OUT, using the engine directly (no Kafka). Results come in completion order.\n"
            "  -m, --model PATH     GGUF model (model.path)\n"
            "  -i, --input FILE     requests, one JSON object per line (- = stdin)\n"
            "  -o, --output FILE    results (- = stdout)\n"
            "  -c, --config FILE    krill.cfg for the model, batching, input and output keys\n"
            "  --set K=V            override one key (repeatable), e.g. model.name=...\n"
            "  --window N           requests in flight at most (default 4 x batching.max_seqs, >= 64)\n"
            "  -q, --quiet          no progress line\n"
            "  -h, --help           this text\n"
            "      --version        print the version\n"
            "Exit status: 0 when every line was answered, 1 on a model or I/O error, 2 usage.\n");
}

typedef struct {
    const char *model, *in_path, *out_path, *cfg_path;
    const char **sets; /* --set K=V, in order */
    size_t n_sets;
    int window; /* 0: from batching.max_seqs */
    bool quiet;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_SET = 256, O_WINDOW };
    static const struct option lopts[] = {
        {"model", required_argument, NULL, 'm'},  {"input", required_argument, NULL, 'i'},
        {"output", required_argument, NULL, 'o'}, {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, O_SET},  {"window", required_argument, NULL, O_WINDOW},
        {"quiet", no_argument, NULL, 'q'},        CLI_OPTIONS_END};
    *a = (args_t){.sets = calloc((size_t)argc + 1, sizeof *a->sets)};
    if (!a->sets) exit(1);
    int c;
    while ((c = getopt_long(argc, argv, "m:i:o:c:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'i': a->in_path = optarg; break;
        case 'o': a->out_path = optarg; break;
        case 'c': a->cfg_path = optarg; break;
        case O_SET: a->sets[a->n_sets++] = optarg; break;
        case O_WINDOW: a->window = (int)cli_long("--window", optarg, 1, 1 << 24); break;
        case 'q': a->quiet = true; break;
        default: cli_default(c, usage);
        }
    }
    cli_no_operands(argc, argv);
    if (!a->in_path || !a->out_path) cli_usage_error("-i IN.jsonl and -o OUT.jsonl are required");
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-run-batch");
    argparse(argc, argv, &a);
    const char *model = a.model, *in_path = a.in_path, *out_path = a.out_path;
    int window = a.window;
    char err[1024];
    config_t *cfg = config_new();
    if (!cfg) return 1;
    if (config_load(cfg, a.cfg_path, NULL, a.sets, a.n_sets, err, sizeof err) != 0) {
        fprintf(stderr, "krill-run-batch: %s\n", err);
        return 2;
    }
    if (model) {
        char *p = strdup(model);
        if (!p) return 1;
        free(cfg->model.path);
        cfg->model.path = p;
    }
    if (!cfg->model.path || !*cfg->model.path) {
        fprintf(stderr, "krill-run-batch: no model: give -m MODEL (or model.path)\n");
        return 2;
    }
    int lvl = log_level_parse(cfg->log.level);
    if (lvl >= 0) log_set_level((log_level_t)lvl);

    int rc = 1;
    engine_t *e = NULL;
    FILE *in = NULL, *out = NULL;
    job_t *jobs = NULL;
    engine_result_t *res = NULL;
    char *line = NULL;
    codec_request_t req;
    buf_t buf = {0};
    memset(&req, 0, sizeof req);

    engine_config_t ec;
    pipeline_engine_config(cfg, &ec);
    e = engine_open(&ec, err, sizeof err);
    if (!e) {
        fprintf(stderr, "krill-run-batch: cannot open the model: %s\n", err);
        goto done;
    }
    const engine_info_t *info = engine_get_info(e);
    if (window == 0) {
        window = 4 * (cfg->batching.max_seqs > 0 ? cfg->batching.max_seqs : 64);
        if (window < 64) window = 64;
    }

    codec_limits_t lim;
    codec_limits_defaults(&lim);
    lim.max_message_bytes = (size_t)cfg->input.max_message_bytes;
    lim.max_tokens_cap = cfg->input.max_tokens_cap;
    lim.default_max_tokens = cfg->input.default_max_tokens;
    const char *names[1];
    if (cfg->model.name && *cfg->model.name) {
        names[0] = cfg->model.name;
        lim.model_names = names;
        lim.n_model_names = 1;
    }
    pipeline_t pipe = {
        .engine = e,
        .model_name = cfg->model.name && *cfg->model.name ? cfg->model.name : info->model_name,
        .worker = "krill-run-batch",
        .max_prompt_tokens = cfg->input.max_prompt_tokens,
        .output_format = CODEC_FMT_JSON, /* a .jsonl file holds JSON */
        .uid_base = ((uint64_t)time(NULL) << 32) ^ ((uint64_t)getpid() << 44),
    };

    in = strcmp(in_path, "-") == 0 ? stdin : fopen(in_path, "rb");
    if (!in) {
        fprintf(stderr, "krill-run-batch: cannot open %s: %s\n", in_path, strerror(errno));
        goto done;
    }
    out = strcmp(out_path, "-") == 0 ? stdout : fopen(out_path, "wb");
    if (!out) {
        fprintf(stderr, "krill-run-batch: cannot create %s: %s\n", out_path, strerror(errno));
        goto done;
    }
    jobs = calloc((size_t)window, sizeof *jobs);
    res = calloc(256, sizeof *res);
    int *free_list = calloc((size_t)window, sizeof *free_list);
    if (!jobs || !res || !free_list) {
        free(free_list);
        fprintf(stderr, "krill-run-batch: out of memory\n");
        goto done;
    }
    int n_free = window;
    for (int i = 0; i < window; i++) free_list[i] = window - 1 - i;

    const char *base = strrchr(in_path, '/') ? strrchr(in_path, '/') + 1 : in_path;
    bool tty = !a.quiet && isatty(2);
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, answered = 0, ok_count = 0, gen_tokens = 0;
    int in_flight = 0;
    bool eof = false, io_error = false;
    double t0 = clock_now_s(), last = 0;
#define EMIT()                                                                                                  \
    do {                                                                                                        \
        if (fwrite(buf.data, 1, buf.len, out) != buf.len || fputc('\n', out) == EOF) io_error = true;           \
        answered++;                                                                                             \
    } while (0)
    while (!io_error && (!eof || in_flight > 0)) {
        /* read ahead while there is room */
        while (!eof && in_flight < window) {
            len = getline(&line, &cap, in);
            if (len < 0) {
                eof = true;
                break;
            }
            lineno++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (len == 0) continue;
            char fallback[300];
            snprintf(fallback, sizeof fallback, "%s:%ld", base, lineno);
            codec_decode(&lim, line, (size_t)len, fallback, &req);
            if (req.status != CODEC_OK) {
                if (pipeline_encode_request_error(&pipe, &req, &buf, err, sizeof err) == 0) EMIT();
                else fprintf(stderr, "krill-run-batch: line %ld: %s\n", lineno, err);
                codec_request_clear(&req);
                continue;
            }
            int slot = free_list[--n_free];
            job_t *j = &jobs[slot];
            j->gen++;
            uint64_t id = ((uint64_t)j->gen << 32) | (uint64_t)slot;
            engine_request_t er;
            int32_t *ids = NULL;
            pipeline_error_t pe;
            int st;
            if (pipeline_prepare(&pipe, &req, id, &er, &ids, &pe) != 0) {
                if (pipeline_encode_error(&pipe, req.id, req.kind, req.format, pe.code, pe.message, pe.param, &buf,
                                          err, sizeof err) == 0)
                    EMIT();
                free_list[n_free++] = slot;
            } else if ((st = engine_submit(e, &er, err, sizeof err)) != ENGINE_OK) {
                free(ids);
                pipeline_submit_error(st, err, &pe);
                char e2[256];
                if (pipeline_encode_error(&pipe, req.id, req.kind, req.format, pe.code, pe.message, pe.param, &buf,
                                          e2, sizeof e2) == 0)
                    EMIT();
                free_list[n_free++] = slot;
            } else {
                free(ids);
                j->busy = true;
                j->id = strdup(req.id);
                j->kind = req.kind;
                j->fmt = req.format;
                in_flight++;
            }
            codec_request_clear(&req);
        }
        if (in_flight == 0) continue;
        engine_step(e);
        size_t n;
        while ((n = engine_poll(e, res, 256)) > 0) {
            for (size_t i = 0; i < n; i++) {
                int slot = (int)(res[i].id & 0xffffffffu);
                job_t *j = slot < window ? &jobs[slot] : NULL;
                if (!j || !j->busy || j->gen != (uint32_t)(res[i].id >> 32)) {
                    fprintf(stderr, "krill-run-batch: engine result for an unknown request\n");
                    engine_result_clear(&res[i]);
                    continue;
                }
                bool ok = false;
                if (pipeline_encode_result(&pipe, j->id, j->kind, j->fmt, &res[i], &ok, &buf, err, sizeof err) == 0)
                    EMIT();
                else
                    fprintf(stderr, "krill-run-batch: cannot encode a result: %s\n", err);
                ok_count += ok;
                gen_tokens += res[i].completion_tokens;
                engine_result_clear(&res[i]);
                free(j->id);
                j->id = NULL;
                j->busy = false;
                free_list[n_free++] = slot;
                in_flight--;
            }
            fflush(out);
        }
        if (tty && clock_now_s() - last > 0.25) {
            last = clock_now_s();
            fprintf(stderr, "\rkrill-run-batch: %ld lines read, %ld answered, %d in flight ", lineno, answered,
                    in_flight);
        }
    }
    if (fflush(out) != 0) io_error = true;
    if (tty) fprintf(stderr, "\n");
    free(free_list);
    if (ferror(in)) {
        fprintf(stderr, "krill-run-batch: read error on %s\n", in_path);
        goto done;
    }
    if (io_error) {
        fprintf(stderr, "krill-run-batch: write error on %s: %s\n", out_path, strerror(errno));
        goto done;
    }
    double dt = clock_now_s() - t0;
    fprintf(stderr, "krill-run-batch: %ld answers (%ld ok, %ld errors) in %.2fs: %.1f req/s, %.1f generated tok/s\n",
            answered, ok_count, answered - ok_count, dt, dt > 0 ? (double)answered / dt : 0,
            dt > 0 ? (double)gen_tokens / dt : 0);
    rc = 0;
done:
    if (jobs)
        for (int i = 0; i < window; i++) free(jobs[i].id);
    free(jobs);
    free(res);
    free(line);
    codec_request_clear(&req);
    buf_free(&buf);
    if (in && in != stdin) fclose(in);
    if (out && out != stdout && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "krill-run-batch: cannot write %s\n", out_path);
        rc = 1;
    }
    engine_close(e);
    config_free(cfg);
    free(a.sets);
    return rc;
}
