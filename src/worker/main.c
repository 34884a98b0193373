/* main.c — krill-worker: Kafka prompts in, completions out. This file only parses the
 * command line, loads the configuration and wires the parts together
 * (docs/architecture.md):
 *
 *   engine (engine.h) -> observe (stats, metrics, SLO controller: observe.h)
 *   -> io loop (ledger, pipeline, Kafka: io_loop.h) -> engine loop (engine_loop.h)
 *
 * then runs the io loop on this thread until a signal or a fatal error, and exits with
 * its status. Two threads: the io thread (this one) and the engine thread; the metrics
 * server has its own. SIGINT/SIGTERM set a flag and wake the io loop; everything else
 * about shutting down lives in io_loop.c. */
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "clock.h"
#include "config.h"
#include "engine.h"
#include "engine_loop.h"
#include "io_loop.h"
#include "log.h"
#include "observe.h"
#include "pipeline.h"

static volatile sig_atomic_t g_stop;
static volatile int g_wake_fd = -1;

static void worker_on_signal(int sig) {
    (void)sig;
    g_stop = 1;
    if (g_wake_fd >= 0) {
        uint64_t one = 1;
        ssize_t n = write(g_wake_fd, &one, sizeof one);
        (void)n;
    }
}

static void worker_signals_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = worker_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* ---------------------------------------------------------------- arguments */

static void worker_usage(FILE *f) {
    fprintf(f,
            "usage: krill-worker [-c FILE] [--set section.key=value]... [--print-config] [--help] [--version]\n"
            "\n"
            "Consumes prompts from Kafka (kafka.topic_requests), runs them through the inference\n"
            "engine with continuous batching and produces one result per request\n"
            "(kafka.topic_results), a DLQ record per undecodable message (kafka.topic_dlq) and\n"
            "throughput statistics (kafka.topic_stats).\n"
            "\n"
            "  -c, --config FILE   libconfig file (see conf/krill.cfg for every key)\n"
            "  --set K=V           override one key (also K+=V to append to a list); repeatable\n"
            "  --print-config      print the effective configuration (secrets redacted) and exit\n"
            "  -h, --help          this text\n"
            "  --version           the version\n"
            "\n"
            "Environment variables KRILL_<SECTION>_<KEY> override the file; --set overrides both.\n"
            "SIGINT/SIGTERM: stop fetching, finish in-flight work (worker.drain_timeout_ms), flush,\n"
            "commit, leave the group, exit 0. Exit status: 1 start-up error, 2 usage, 3 a result\n"
            "could not be delivered, 4 fatal Kafka error (exactly-once mode: also fenced by another\n"
            "instance of the same transactional.id).\n");
}

typedef struct {
    const char *cfg_path;     /* NULL: defaults + environment + --set only */
    const char **sets;        /* (argc) the --set assignments, in order */
    size_t n_sets;
    bool print_config;
} worker_args_t;

/* kcat's argparse shape: getopt_long and a switch. --help and --version exit 0, a bad
 * argument exits 2 (cli.h). a->sets must hold argc entries. */
static void worker_argparse(int argc, char **argv, worker_args_t *a) {
    enum { O_SET = 256, O_PRINT_CONFIG, O_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'},        {"set", required_argument, 0, O_SET},
        {"print-config", no_argument, 0, O_PRINT_CONFIG}, {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, O_VERSION},       {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': a->cfg_path = optarg; break;
        case O_SET: a->sets[a->n_sets++] = optarg; break;
        case O_PRINT_CONFIG: a->print_config = true; break;
        case 'h': worker_usage(stdout); exit(0);
        case O_VERSION: cli_version();
        default: cli_bad_option();
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
}

/* ---------------------------------------------------------------- wiring */

/* worker.id, else <hostname>-<pid>. */
static void worker_id(const config_t *cfg, char *out, size_t outlen) {
    if (cfg->worker.id && *cfg->worker.id) {
        snprintf(out, outlen, "%s", cfg->worker.id);
        return;
    }
    char host[64] = "worker";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    snprintf(out, outlen, "%s-%d", host, (int)getpid());
}

static engine_t *worker_engine_open(const config_t *cfg, char *err, size_t errlen) {
    engine_config_t ec;
    pipeline_engine_config(cfg, &ec);
    ec.max_queue = 0; /* the io loop bounds what it submits (worker.queue_high) */
    double t0 = clock_now_ms();
    engine_t *e = engine_open(&ec, err, errlen);
    if (!e) return NULL;
    const engine_info_t *info = engine_get_info(e);
    LOG_INFO("engine ready", "model=\"%s\" backend=%s device=\"%s\" n_ctx=%d load_ms=%.0f", info->model_name,
             info->backend, info->device, info->n_ctx, clock_now_ms() - t0);
    return e;
}

int main(int argc, char **argv) {
    char err[1024];
    int rc = IO_EXIT_START;
    config_t *cfg = NULL;
    engine_t *engine = NULL;
    observe_t *obs = NULL;
    io_loop_t *io = NULL;
    engine_loop_t *el = NULL;
    char wid[128];

    cli_init("krill-worker");
    worker_args_t args = {.sets = calloc((size_t)argc + 1, sizeof(const char *))};
    if (!args.sets) {
        fprintf(stderr, "krill-worker: out of memory\n");
        return IO_EXIT_START;
    }
    worker_argparse(argc, argv, &args);

    if (!(cfg = config_new())) {
        fprintf(stderr, "krill-worker: out of memory\n");
        goto done;
    }
    if (config_load(cfg, args.cfg_path, NULL, args.sets, args.n_sets, err, sizeof err) != 0) {
        fprintf(stderr, "krill-worker: %s\n", err);
        rc = IO_EXIT_USAGE;
        goto done;
    }
    if (args.print_config) {
        char *txt = config_render(cfg);
        if (txt) fputs(txt, stdout);
        free(txt);
        rc = IO_EXIT_OK;
        goto done;
    }
    int lvl = log_level_parse(cfg->log.level);
    if (lvl >= 0) log_set_level((log_level_t)lvl);
    worker_id(cfg, wid, sizeof wid);

    if (!(engine = worker_engine_open(cfg, err, sizeof err))) {
        fprintf(stderr, "krill-worker: cannot open the model: %s\n", err);
        goto done;
    }
    if (!(obs = observe_new(cfg, engine_get_info(engine), wid, err, sizeof err))) {
        fprintf(stderr, "krill-worker: %s\n", err);
        goto done;
    }
    io_loop_config_t ic = {.cfg = cfg, .engine = engine, .worker_id = wid, .observe = obs, .stop = &g_stop};
    if (!(io = io_loop_new(&ic, err, sizeof err))) {
        fprintf(stderr, "krill-worker: %s\n", err);
        goto done;
    }
    g_wake_fd = io_loop_wake_fd(io);
    worker_signals_install();

    pthread_setname_np(pthread_self(), "krill-io");
    engine_loop_config_t lc = {.engine = engine,
                               .observe = obs,
                               .capacity = io_loop_capacity(io),
                               .max_wait_ms = cfg->batching.max_wait_ms,
                               .max_seqs = cfg->batching.max_seqs,
                               .wake = io_loop_wake,
                               .wake_ctx = io};
    if (!(el = engine_loop_start(&lc, err, sizeof err))) {
        fprintf(stderr, "krill-worker: %s\n", err);
        goto done;
    }
    rc = io_loop_run(io, el);

done:
    g_wake_fd = -1;
    engine_loop_free(el); /* before the engine and the observers it uses */
    io_loop_free(io);
    engine_close(engine);
    observe_free(obs); /* stops the metrics server (after the engine thread is gone) */
    config_free(cfg);
    free(args.sets);
    return rc;
}
