/* krill-run-batch — the worker's request path without Kafka: a JSONL file of requests in,
 * a JSONL file of results out (OpenAI Batch API style), through the same codec, pipeline
 * and engine as krill-worker, so the same request gets the same answer.
 *
 * One thread: it reads ahead only while fewer than --window requests are in flight, so
 * memory stays bounded however large the file; results are written as requests finish
 * (completion order, not input order). A line that is not a valid request is answered
 * with an error line (the worker would answer it with a 400 result or a DLQ record):
 * its custom_id is the request's if one can be found, else "<file>:<line>".
 *
 * --ordered writes answers in input order through a reorder window of --window
 * answers: line i is read only once every answer before line i - window is written,
 * so at most window answers wait in memory. A slow line stalls the window (the lines
 * behind it finish and wait; no new line is read) until it is answered — the price of
 * order is throughput, never unbounded memory. The summary line on stderr counts the
 * answers by status_code; --fail-on-error makes any answer other than 200 exit 1. */
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
#include "pipeline_answer.h"

typedef struct {
    uint32_t gen;
    bool busy;
    long seq; /* the line's place among the answers (--ordered) */
    char *id;
    codec_kind_t kind;
    codec_format_t fmt;
    pipeline_answer_t *answer; /* the choices gathered (n > 1: one result each) */
} job_t;

static void usage(FILE *f) {
    fprintf(f,
            "usage: krill-run-batch -m MODEL -i IN.jsonl -o OUT.jsonl [options]\n"
            "\n"
            "Answers every line of IN (a request as krill-worker takes it) with one result line\n"
            "in OUT, using the engine directly (no Kafka). Results come in completion order\n"
            "unless --ordered.\n"
            "  -m, --model PATH     GGUF model (model.path)\n"
            "  -i, --input FILE     requests, one JSON object per line (- = stdin)\n"
            "  -o, --output FILE    results (- = stdout)\n"
            "  -c, --config FILE    krill.cfg for the model, batching, input and output keys\n"
            "  --set K=V            override one key (repeatable), e.g. model.name=...\n"
            "  --window N           requests in flight at most (default 4 x batching.max_seqs, >= 64)\n"
            "  --ordered            write answers in input order; at most N answers wait in memory\n"
            "                       (a slow line stalls reading until it is answered)\n"
            "  --fail-on-error      exit 1 if any line was answered with an error (status != 200)\n"
            "  -q, --quiet          no progress line\n"
            "  -h, --help           this text\n"
            "      --version        print the version\n"
            "A summary line on stderr counts the answers by status, e.g.\n"
            "  krill-run-batch: 1000 lines: 990 200, 8 400, 2 500; ...\n"
            "Exit status: 0 when every line was answered (errors included, as vLLM's run_batch),\n"
            "1 on a model or I/O error or, with --fail-on-error, an error answer; 2 usage.\n");
}

typedef struct {
    const char *model, *in_path, *out_path, *cfg_path;
    cli_list_t sets; /* --set K=V */
    int window; /* 0: from batching.max_seqs */
    bool quiet, ordered, fail_on_error;
} args_t;

static void argparse(int argc, char **argv, args_t *a) {
    enum { O_SET = 256, O_WINDOW, O_ORDERED, O_FAIL_ON_ERROR };
    static const struct option lopts[] = {
        {"model", required_argument, NULL, 'm'},  {"input", required_argument, NULL, 'i'},
        {"output", required_argument, NULL, 'o'}, {"config", required_argument, NULL, 'c'},
        {"set", required_argument, NULL, O_SET},  {"window", required_argument, NULL, O_WINDOW},
        {"quiet", no_argument, NULL, 'q'},        {"ordered", no_argument, NULL, O_ORDERED},
        {"fail-on-error", no_argument, NULL, O_FAIL_ON_ERROR}, CLI_OPTIONS_END};
    *a = (args_t){0};
    int c;
    while ((c = getopt_long(argc, argv, "m:i:o:c:qh", lopts, NULL)) != -1) {
        switch (c) {
        case 'm': a->model = optarg; break;
        case 'i': a->in_path = optarg; break;
        case 'o': a->out_path = optarg; break;
        case 'c': a->cfg_path = optarg; break;
        case O_SET: cli_list_add(&a->sets, argc, optarg); break;
        case O_WINDOW: a->window = (int)cli_long("--window", optarg, 1, 1 << 24); break;
        case 'q': a->quiet = true; break;
        case O_ORDERED: a->ordered = true; break;
        case O_FAIL_ON_ERROR: a->fail_on_error = true; break;
        default: cli_default(c, usage);
        }
    }
    cli_no_operands(argc, argv);
    if (!a->in_path || !a->out_path) cli_usage_error("-i IN.jsonl and -o OUT.jsonl are required");
}

/* The config file and --set overrides, with -m on top; 0, or the exit status after
 * printing why. */
static int load_config(const args_t *a, config_t **out) {
    char err[1024];
    config_t *cfg = *out = config_new();
    if (!cfg) return 1;
    if (config_load(cfg, a->cfg_path, NULL, a->sets.items, a->sets.n, err, sizeof err) != 0) {
        fprintf(stderr, "krill-run-batch: %s\n", err);
        return 2;
    }
    if (a->model) {
        char *p = strdup(a->model);
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
    return 0;
}

#define RESULTS_MAX 256
#define STATUS_KINDS 16

typedef struct {
    int status; /* status_code; -1: every status past the first STATUS_KINDS - 1 */
    long n;
} status_count_t;

/* One run: the requests in flight (slots of jobs, ids gen << 32 | slot) and the answers
 * written so far. */
typedef struct {
    engine_t *e;
    pipeline_t pipe;
    codec_limits_t lim;
    const char *model_names[1];
    FILE *out;
    int window, n_free, in_flight;
    job_t *jobs;
    int *free_list;
    engine_result_t *res; /* RESULTS_MAX */
    buf_t buf;            /* the answer being written */
    long answered, ok_count, gen_tokens;
    long unanswered;      /* lines whose answer could not be encoded */
    bool io_error;
    /* --ordered: answers wait in held[seq % window] until every earlier one is written */
    bool ordered;
    long next_seq;        /* the next line's seq */
    long next_write;      /* the seq written next */
    buf_t *held;          /* window answers */
    bool *ready;          /* held[i] (or a line without answer, held empty) is complete */
    status_count_t by_status[STATUS_KINDS]; /* in order of first appearance; the last (-1) the rest */
} batch_t;

static int batch_init(batch_t *b, engine_t *e, const config_t *cfg, int window, bool ordered, FILE *out) {
    *b = (batch_t){.e = e, .out = out, .window = window, .n_free = window, .ordered = ordered};
    b->model_names[0] = engine_get_info(e)->model_name;
    pipeline_codec_limits(cfg, b->model_names, &b->lim);
    b->pipe = (pipeline_t){
        .engine = e,
        .model_name = config_model_name(cfg, engine_get_info(e)->model_name),
        .worker = "krill-run-batch",
        .max_prompt_tokens = cfg->input.max_prompt_tokens,
        .parse_special_in_content = cfg->input.parse_special_in_content,
        .parse_special_in_prompt = cfg->input.parse_special_in_prompt,
        .output_format = CODEC_FMT_JSON, /* a .jsonl file holds JSON */
        .uid_base = ((uint64_t)time(NULL) << 32) ^ ((uint64_t)getpid() << 44),
    };
    b->jobs = calloc((size_t)window, sizeof *b->jobs);
    b->res = calloc(RESULTS_MAX, sizeof *b->res);
    b->free_list = calloc((size_t)window, sizeof *b->free_list);
    if (!b->jobs || !b->res || !b->free_list) return -1;
    if (ordered) {
        b->held = calloc((size_t)window, sizeof *b->held);
        b->ready = calloc((size_t)window, sizeof *b->ready);
        if (!b->held || !b->ready) return -1;
    }
    for (int i = 0; i < window; i++) b->free_list[i] = window - 1 - i;
    return 0;
}

static void batch_free(batch_t *b) {
    if (b->jobs)
        for (int i = 0; i < b->window; i++) free(b->jobs[i].id), pipeline_answer_free(b->jobs[i].answer);
    free(b->jobs);
    free(b->res);
    free(b->free_list);
    if (b->held)
        for (int i = 0; i < b->window; i++) buf_free(&b->held[i]);
    free(b->held);
    free(b->ready);
    buf_free(&b->buf);
}

static void batch_write(batch_t *b, const buf_t *line) {
    if (fwrite(line->data, 1, line->len, b->out) != line->len || fputc('\n', b->out) == EOF) b->io_error = true;
}

static void batch_count(batch_t *b, int status) {
    int i = 0;
    while (i < STATUS_KINDS - 1 && b->by_status[i].n > 0 && b->by_status[i].status != status) i++;
    if (b->by_status[i].n == 0) b->by_status[i].status = i == STATUS_KINDS - 1 ? -1 : status;
    b->by_status[i].n++;
}

/* Line seq is done: its answer is in b->buf (answered) or it has none (an answer that
 * could not be encoded, already reported). Unordered, it is written now; --ordered, it
 * waits for the lines before it, and every answer now in order is written. */
static void batch_done(batch_t *b, long seq, bool answered) {
    if (answered) {
        b->answered++;
        batch_count(b, b->pipe.status);
    } else {
        b->unanswered++;
    }
    if (!b->ordered) {
        if (answered) batch_write(b, &b->buf);
        return;
    }
    int slot = (int)(seq % b->window);
    buf_reset(&b->held[slot]);
    if (answered && buf_append(&b->held[slot], b->buf.data, b->buf.len) != 0) {
        fprintf(stderr, "krill-run-batch: out of memory holding an answer\n");
        b->io_error = true;
    }
    b->ready[slot] = true;
    while (b->ready[slot = (int)(b->next_write % b->window)]) {
        if (b->held[slot].len) batch_write(b, &b->held[slot]);
        b->ready[slot] = false;
        b->next_write++;
    }
}

/* Room to read another line: a free job slot and, --ordered, a free place in the
 * reorder window (a slow line holds the window's start until it is answered). */
static bool batch_can_read(const batch_t *b) {
    if (b->in_flight >= b->window) return false;
    return !b->ordered || b->next_seq - b->next_write < b->window;
}

/* The summary line: "N lines: 990 200, 8 400, 2 500". */
static void batch_summary(const batch_t *b, char *out, size_t cap) {
    status_count_t st[STATUS_KINDS];
    memcpy(st, b->by_status, sizeof st);
    for (int i = 1; i < STATUS_KINDS && st[i].n > 0; i++) /* by status, "other" last */
        for (int j = i; j > 0 && st[j].status >= 0 && (st[j - 1].status < 0 || st[j - 1].status > st[j].status); j--) {
            status_count_t t = st[j];
            st[j] = st[j - 1];
            st[j - 1] = t;
        }
    size_t o = (size_t)snprintf(out, cap, "%ld lines:", b->answered + b->unanswered);
    for (int i = 0; i < STATUS_KINDS && st[i].n > 0 && o < cap; i++)
        o += st[i].status < 0
                 ? (size_t)snprintf(out + o, cap - o, "%s %ld other", i ? "," : "", st[i].n)
                 : (size_t)snprintf(out + o, cap - o, "%s %ld %d", i ? "," : "", st[i].n,
                                    st[i].status);
    if (b->unanswered && o < cap) o += (size_t)snprintf(out + o, cap - o, ", %ld unanswered", b->unanswered);
    if (o < cap && !b->answered && !b->unanswered) snprintf(out + o, cap - o, " none");
}

/* One input line: submitted to the engine, or answered at once with its error. */
static void batch_submit_line(batch_t *b, const char *line, size_t len, const char *fallback_id, long lineno) {
    char err[1024];
    codec_request_t req;
    long seq = b->next_seq++;
    memset(&req, 0, sizeof req);
    codec_decode(&b->lim, line, len, fallback_id, &req);
    if (req.status != CODEC_OK) {
        bool encoded = pipeline_encode_request_error(&b->pipe, &req, &b->buf, err, sizeof err) == 0;
        if (!encoded) fprintf(stderr, "krill-run-batch: line %ld: %s\n", lineno, err);
        batch_done(b, seq, encoded);
        codec_request_clear(&req);
        return;
    }
    int slot = b->free_list[--b->n_free];
    job_t *j = &b->jobs[slot];
    j->gen++;
    uint64_t id = ((uint64_t)j->gen << 32) | (uint64_t)slot;
    engine_request_t er;
    int32_t *ids = NULL;
    pipeline_error_t pe;
    int st = ENGINE_OK;
    if (pipeline_prepare(&b->pipe, &req, id, &er, &ids, &pe) != 0) {
        batch_done(b, seq,
                   pipeline_encode_error(&b->pipe, req.id, req.kind, req.format, pe.code, pe.message, pe.param,
                                         &b->buf, err, sizeof err) == 0);
        b->free_list[b->n_free++] = slot;
    } else if (!(j->answer = pipeline_answer_new(&req)) || (st = engine_submit(b->e, &er, err, sizeof err)) != ENGINE_OK) {
        free(ids);
        if (!j->answer) pipeline_submit_error(ENGINE_ERR_INTERNAL, "out of memory", &pe);
        else pipeline_submit_error(st, err, &pe);
        if (j->answer && st == ENGINE_ERR_INVALID) pe.param = pipeline_submit_param(&req);
        pipeline_answer_free(j->answer);
        j->answer = NULL;
        char e2[256];
        batch_done(b, seq,
                   pipeline_encode_error(&b->pipe, req.id, req.kind, req.format, pe.code, pe.message, pe.param,
                                         &b->buf, e2, sizeof e2) == 0);
        b->free_list[b->n_free++] = slot;
    } else {
        free(ids);
        j->busy = true;
        j->seq = seq;
        j->id = strdup(req.id);
        j->kind = req.kind;
        j->fmt = req.format;
        b->in_flight++;
    }
    codec_request_clear(&req);
}

/* Writes every finished request's answer. */
static void batch_collect(batch_t *b) {
    char err[1024];
    size_t n;
    while ((n = engine_poll(b->e, b->res, RESULTS_MAX)) > 0) {
        for (size_t i = 0; i < n; i++) {
            engine_result_t *r = &b->res[i];
            int slot = (int)(r->id & 0xffffffffu);
            job_t *j = slot < b->window ? &b->jobs[slot] : NULL;
            if (!j || !j->busy || j->gen != (uint32_t)(r->id >> 32)) {
                fprintf(stderr, "krill-run-batch: engine result for an unknown request\n");
                engine_result_clear(r);
                continue;
            }
            if (!pipeline_answer_add(j->answer, r)) continue; /* more choices to come */
            bool ok = false;
            bool encoded =
                pipeline_encode_answer(&b->pipe, j->id, j->fmt, j->answer, &ok, &b->buf, err, sizeof err) == 0;
            if (!encoded) fprintf(stderr, "krill-run-batch: cannot encode a result: %s\n", err);
            batch_done(b, j->seq, encoded);
            b->ok_count += ok;
            for (int c = 0; c < pipeline_answer_n(j->answer); c++)
                b->gen_tokens += pipeline_answer_result(j->answer, c)->completion_tokens;
            pipeline_answer_free(j->answer);
            j->answer = NULL;
            free(j->id);
            j->id = NULL;
            j->busy = false;
            b->free_list[b->n_free++] = slot;
            b->in_flight--;
        }
        fflush(b->out);
    }
}

/* Reads ahead while fewer than window requests are in flight, steps the engine, writes
 * answers as requests finish; until the input ends and nothing is in flight. */
static void batch_run(batch_t *b, FILE *in, const char *in_path, bool quiet) {
    const char *base = strrchr(in_path, '/') ? strrchr(in_path, '/') + 1 : in_path;
    bool tty = !quiet && isatty(2), eof = false;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0;
    double last = 0;
    while (!b->io_error && (!eof || b->in_flight > 0)) {
        while (!eof && batch_can_read(b)) {
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
            batch_submit_line(b, line, (size_t)len, fallback, lineno);
        }
        if (b->in_flight == 0) continue;
        engine_step(b->e);
        batch_collect(b);
        if (tty && clock_now_s() - last > 0.25) {
            last = clock_now_s();
            fprintf(stderr, "\rkrill-run-batch: %ld lines read, %ld answered, %d in flight ", lineno, b->answered,
                    b->in_flight);
        }
    }
    if (fflush(b->out) != 0) b->io_error = true;
    if (tty) fprintf(stderr, "\n");
    free(line);
}

int main(int argc, char **argv) {
    args_t a;
    cli_init("krill-run-batch");
    argparse(argc, argv, &a);
    config_t *cfg = NULL;
    int rc = load_config(&a, &cfg);
    engine_t *e = NULL;
    FILE *in = NULL, *out = NULL;
    batch_t b = {0};
    char err[1024];
    if (rc != 0) goto done;
    rc = 1;

    engine_config_t ec;
    pipeline_engine_config(cfg, &ec);
    e = engine_open(&ec, err, sizeof err);
    if (!e) {
        fprintf(stderr, "krill-run-batch: cannot open the model: %s\n", err);
        goto done;
    }
    int window = a.window;
    if (window == 0) {
        window = 4 * (cfg->batching.max_seqs > 0 ? cfg->batching.max_seqs : 64);
        if (window < 64) window = 64;
    }
    in = strcmp(a.in_path, "-") == 0 ? stdin : fopen(a.in_path, "rb");
    if (!in) {
        fprintf(stderr, "krill-run-batch: cannot open %s: %s\n", a.in_path, strerror(errno));
        goto done;
    }
    out = strcmp(a.out_path, "-") == 0 ? stdout : fopen(a.out_path, "wb");
    if (!out) {
        fprintf(stderr, "krill-run-batch: cannot create %s: %s\n", a.out_path, strerror(errno));
        goto done;
    }
    if (batch_init(&b, e, cfg, window, a.ordered, out) != 0) {
        fprintf(stderr, "krill-run-batch: out of memory\n");
        goto done;
    }
    double t0 = clock_now_s();
    batch_run(&b, in, a.in_path, a.quiet);
    if (ferror(in)) {
        fprintf(stderr, "krill-run-batch: read error on %s\n", a.in_path);
        goto done;
    }
    if (b.io_error) {
        fprintf(stderr, "krill-run-batch: write error on %s: %s\n", a.out_path, strerror(errno));
        goto done;
    }
    double dt = clock_now_s() - t0;
    char summary[512];
    batch_summary(&b, summary, sizeof summary);
    fprintf(stderr, "krill-run-batch: %s; %.2fs, %.1f req/s, %.1f generated tok/s\n", summary, dt,
            dt > 0 ? (double)b.answered / dt : 0, dt > 0 ? (double)b.gen_tokens / dt : 0);
    rc = a.fail_on_error && (b.answered > b.ok_count || b.unanswered) ? 1 : 0;
done:
    batch_free(&b);
    if (in && in != stdin) fclose(in);
    if (out && out != stdout && fclose(out) != 0 && rc == 0) {
        fprintf(stderr, "krill-run-batch: cannot write %s\n", a.out_path);
        rc = 1;
    }
    engine_close(e);
    config_free(cfg);
    cli_list_free(&a.sets);
    return rc;
}
