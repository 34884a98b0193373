/* test_config.c — the settings table, its sources and precedence, error messages
 * with key paths, secret redaction, list parsing running out of memory, and agreement
 * of conf/krill.cfg and docs/configuration.md with the table.
 *
 * `build/krill-config-doc --write` rewrites the generated table in docs/configuration.md;
 * this test compiles that tool (main renamed) to check the committed doc. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"

#define main krill_config_doc_main
#include "tools/krill-config-doc.c"
#undef main

#define CFG_PATH "conf/krill.cfg"

static void expect_err(int rc, const char *err, const char *must1, const char *must2) {
    assert_int_equal(rc, -1);
    if (must1 && !strstr(err, must1)) fail_msg("error \"%s\" lacks \"%s\"", err, must1);
    if (must2 && !strstr(err, must2)) fail_msg("error \"%s\" lacks \"%s\"", err, must2);
}

static void test_defaults(void **state) {
    (void)state;
    config_t *c = config_new();
    char err[512];
    assert_non_null(c);
    assert_string_equal(c->kafka.brokers, "127.0.0.1:9092");
    assert_string_equal(c->kafka.group, "krill-workers");
    assert_string_equal(c->kafka.topic_requests, "krill.requests");
    assert_string_equal(c->kafka.topic_results, "krill.results");
    assert_string_equal(c->kafka.topic_dlq, "krill.dlq");
    assert_string_equal(c->kafka.topic_stats, "krill.stats");
    assert_int_equal(c->kafka.n_properties, 0);
    assert_string_equal(c->metrics.listen, "127.0.0.1:9464");
    assert_string_equal(c->output.format, "auto");
    assert_int_equal(c->input.max_message_bytes, 1048576);
    assert_true(c->model.gpu_memory_fraction == 0.9);
    assert_string_equal(c->log.level, "info");
    assert_string_equal(c->worker.id, "");
    assert_int_equal(config_validate(c, err, sizeof err), 0);
    config_free(c);
    config_free(NULL);
    char env[64];
    config_env_name("batching.slo.ttft_ms", env, sizeof env);
    assert_string_equal(env, "KRILL_BATCHING_SLO_TTFT_MS");
}

static void test_precedence(void **state) {
    (void)state;
    char path[] = "/tmp/krill-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "kafka = { brokers = \"file:1\"; group = \"g-file\"; };\n"
                       "batching = { max_seqs = 8; slo = { ttft_ms = 250; }; };\n"
                       "model = { gpu_memory_fraction = 0.5; kv_cache_tokens = 5000000000L; };\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char *const envp[] = {"KRILL_KAFKA_BROKERS=env:2", "KRILL_BATCHING_MAX_SEQS=16", "KRILL_BUILD=/x",
                          "KRILL_KAFKA_PORT=9999", "KRILL_TEST_FILTER=y", "PATH=/bin", NULL};
    const char *sets[] = {"kafka.brokers=set:3", "log.level=debug"};
    char err[512];
    config_t *c = config_new();
    assert_int_equal(config_load(c, path, envp, sets, 2, err, sizeof err), 0);
    assert_string_equal(c->kafka.brokers, "set:3");  /* --set wins */
    assert_int_equal(c->batching.max_seqs, 16);       /* env over file */
    assert_string_equal(c->kafka.group, "g-file");   /* file over default */
    assert_true(c->batching.slo.ttft_ms == 250.0);    /* an integer literal for a float key */
    assert_true(c->model.gpu_memory_fraction == 0.5);
    assert_int_equal(c->model.kv_cache_tokens, 5000000000LL);
    assert_string_equal(c->log.level, "debug");
    assert_string_equal(c->kafka.topic_dlq, "krill.dlq");
    config_free(c);
    c = config_new();
    assert_int_equal(config_load(c, path, envp, NULL, 0, err, sizeof err), 0);
    assert_string_equal(c->kafka.brokers, "env:2");
    config_free(c);
    c = config_new();
    assert_int_equal(config_load(c, path, NULL, NULL, 0, err, sizeof err), 0); /* environ */
    config_free(c);
    unlink(path);
    c = config_new();
    expect_err(config_load(c, "/nonexistent/krill.cfg", envp, NULL, 0, err, sizeof err), err,
               "/nonexistent/krill.cfg", "cannot read");
    config_free(c);
}

static void test_errors_name_the_key(void **state) {
    (void)state;
    char err[512];
    config_t *c = config_new();
    expect_err(config_load_string(c, "kafka = { brokerz = \"x\"; };", err, sizeof err), err, "kafka.brokerz",
               "unknown key");
    expect_err(config_load_string(c, "kafak = { brokers = \"x\"; };", err, sizeof err), err, "kafak", "unknown key");
    expect_err(config_load_string(c, "batching = { slo = { ttft = 1.0; }; };", err, sizeof err), err,
               "batching.slo.ttft", "unknown key");
    expect_err(config_load_string(c, "batching = {\n max_seqs = \"8\"; };", err, sizeof err), err,
               "batching.max_seqs", ":2");
    expect_err(config_load_string(c, "batching = { max_seqs = 100000; };", err, sizeof err), err,
               "batching.max_seqs", "outside");
    expect_err(config_load_string(c, "batching = { max_batch_tokens = 1.5; };", err, sizeof err), err,
               "batching.max_batch_tokens", "integer");
    expect_err(config_load_string(c, "model = { backend = \"tpu\"; };", err, sizeof err), err, "model.backend",
               "auto|cpu|cuda");
    expect_err(config_load_string(c, "model = { gpu_memory_fraction = 1.5; };", err, sizeof err), err,
               "model.gpu_memory_fraction", "outside");
    expect_err(config_load_string(c, "kafka = { topic_results = \"bad topic!\"; };", err, sizeof err), err,
               "kafka.topic_results", "topic name");
    expect_err(config_load_string(c, "kafka = { topic_requests = \"a,,b\"; };", err, sizeof err), err,
               "kafka.topic_requests", NULL);
    expect_err(config_load_string(c, "metrics = { listen = \"localhost\"; };", err, sizeof err), err,
               "metrics.listen", "host:port");
    expect_err(config_load_string(c, "metrics = { listen = \"h:70000\"; };", err, sizeof err), err,
               "metrics.listen", NULL);
    expect_err(config_load_string(c, "metrics = { listen = \"h:-1\"; };", err, sizeof err), err,
               "metrics.listen", NULL);
    expect_err(config_load_string(c, "kafka = { properties = \"a=b\"; };", err, sizeof err), err,
               "kafka.properties", "list");
    expect_err(config_load_string(c, "kafka = { brokers = ; };", err, sizeof err), err, "<string>:1", NULL);
    expect_err(config_set(c, "kafka.nope=1", err, sizeof err), err, "kafka.nope", "unknown key");
    expect_err(config_set(c, "kafka.brokers", err, sizeof err), err, "section.key=value", NULL);
    expect_err(config_set(c, "worker.queue_high=lots", err, sizeof err), err, "worker.queue_high", "not an integer");
    expect_err(config_set(c, "worker.queue_high=10x", err, sizeof err), err, "worker.queue_high", NULL);
    expect_err(config_set(c, "stats.format=xml", err, sizeof err), err, "stats.format", "json|msgpack");
    expect_err(config_set(c, "kafka.brokers+=x", err, sizeof err), err, "kafka.brokers", "lists only");
    expect_err(config_set(c, "model.gpu_memory_fraction=nan", err, sizeof err), err, "model.gpu_memory_fraction", NULL);
    char *const envp[] = {"KRILL_INPUT_MAX_TOKENS_CAP=0", NULL};
    expect_err(config_apply_env(c, envp, err, sizeof err), err, "KRILL_INPUT_MAX_TOKENS_CAP", "input.max_tokens_cap");
    /* a failed set leaves the old value */
    assert_int_equal(c->input.max_tokens_cap, 4096);
    assert_string_equal(c->model.backend, "auto");
    /* good values through every path */
    assert_int_equal(config_set(c, "worker.queue_high=2048", err, sizeof err), 0);
    assert_int_equal(c->worker.queue_high, 2048);
    assert_int_equal(config_set(c, "metrics.listen=[::1]:9464", err, sizeof err), 0);
    assert_int_equal(config_set(c, "metrics.listen=off", err, sizeof err), 0);
    assert_int_equal(config_set(c, "metrics.listen=127.0.0.1:0", err, sizeof err), 0); /* any free port */
    assert_int_equal(config_set(c, "kafka.topic_requests=a,b.c,d_e-f", err, sizeof err), 0);
    config_free(c);
}

static void test_cross_checks(void **state) {
    (void)state;
    char err[512];
    const char *bad[][2] = {
        {"worker.queue_low=2000", "worker.queue_low"},
        {"input.default_max_tokens=5000", "input.default_max_tokens"},
        {"stats.interval_ms=50", "stats.interval_ms"},
        {"kafka.topic_results=krill.requests", "kafka.topic_results"},
        {"batching.max_batch_tokens=8", "batching.max_batch_tokens"}, /* 0 = backend default, else >= 16 */
        {"kafka.topic_dlq=other", NULL},
    };
    for (size_t i = 0; i < 6; i++) {
        config_t *c = config_new();
        if (i == 5) {
            assert_int_equal(config_set(c, "kafka.topic_requests=x,other", err, sizeof err), 0);
        }
        assert_int_equal(config_set(c, bad[i][0], err, sizeof err), 0);
        if (i == 5) expect_err(config_validate(c, err, sizeof err), err, "kafka.topic_dlq", "request topic");
        else expect_err(config_validate(c, err, sizeof err), err, bad[i][1], NULL);
        config_free(c);
    }
}

static void test_properties_and_secrets(void **state) {
    (void)state;
    char err[512];
    config_t *c = config_new();
    assert_int_equal(config_load_string(c,
                                        "kafka = { properties = [\"security.protocol=SASL_SSL\", "
                                        "\"sasl.password=hunter2\", \"producer.linger.ms=5\", "
                                        "\"consumer.fetch.max.bytes=1000\", \"ssl.key.password=a=b=c\"]; };",
                                        err, sizeof err),
                     0);
    assert_int_equal(c->kafka.n_properties, 5);
    char key[64];
    const char *val;
    size_t cons = 0, prod = 0;
    for (size_t i = 0; i < c->kafka.n_properties; i++) {
        if (kafka_property_split(c->kafka.properties[i], true, key, sizeof key, &val) == 1) {
            cons++;
            if (strcmp(key, "fetch.max.bytes") == 0) assert_string_equal(val, "1000");
            assert_string_not_equal(key, "linger.ms");
        }
        if (kafka_property_split(c->kafka.properties[i], false, key, sizeof key, &val) == 1) {
            prod++;
            if (strcmp(key, "linger.ms") == 0) assert_string_equal(val, "5");
            if (strcmp(key, "ssl.key.password") == 0) assert_string_equal(val, "a=b=c");
        }
    }
    assert_int_equal(cons, 4);
    assert_int_equal(prod, 4);
    assert_int_equal(kafka_property_split("consumer.=x", true, key, sizeof key, &val), -1);
    assert_int_equal(kafka_property_split("=x", true, key, sizeof key, &val), -1);
    assert_int_equal(kafka_property_split("noequals", false, key, sizeof key, &val), -1);
    assert_int_equal(kafka_property_split("consumer.a=1", false, key, sizeof key, &val), 0);

    char *r = config_render(c);
    assert_non_null(r);
    assert_null(strstr(r, "hunter2"));
    assert_null(strstr(r, "SASL_SSL"));
    assert_null(strstr(r, "a=b=c"));
    assert_non_null(strstr(r, "\"sasl.password=<redacted>\""));
    assert_non_null(strstr(r, "\"producer.linger.ms=<redacted>\""));
    free(r);

    /* errors about entries never quote them */
    const char *secret_bad[] = {"kafka.properties=[\"sasl.passwordhunter2\"]", "kafka.properties+==hunter2",
                                "kafka.properties+=sasl password=hunter2", "kafka.properties=[\"hunter2\", 5]",
                                "kafka.properties=[\"hunter2",
                                "kafka.properties+=group.id=hunter2", "kafka.properties+=consumer.bootstrap.servers=hunter2"};
    for (size_t i = 0; i < sizeof secret_bad / sizeof *secret_bad; i++) {
        int rc = config_set(c, secret_bad[i], err, sizeof err);
        assert_int_equal(rc, -1);
        if (strstr(err, "hunter2")) fail_msg("error quotes a secret: %s", err);
        assert_non_null(strstr(err, "kafka.properties"));
    }
    config_set(c, "kafka.properties+=group.id=x", err, sizeof err);
    assert_non_null(strstr(err, "kafka.group"));
    assert_int_equal(c->kafka.n_properties, 5); /* unchanged by the failures */

    /* list forms: literal, newline-separated, += */
    assert_int_equal(config_set(c, "kafka.properties=[\"a.b=1\", \"c=2\"]", err, sizeof err), 0);
    assert_int_equal(c->kafka.n_properties, 2);
    assert_int_equal(config_set(c, "kafka.properties+=d=3", err, sizeof err), 0);
    assert_int_equal(c->kafka.n_properties, 3);
    assert_string_equal(c->kafka.properties[2], "d=3");
    char *const envp[] = {"KRILL_KAFKA_PROPERTIES=x=1\ny=2\r\n\nz=3", NULL};
    assert_int_equal(config_apply_env(c, envp, err, sizeof err), 0);
    assert_int_equal(c->kafka.n_properties, 3);
    assert_string_equal(c->kafka.properties[1], "y=2");
    assert_int_equal(config_set(c, "kafka.properties=[]", err, sizeof err), 0);
    assert_int_equal(c->kafka.n_properties, 0);
    config_free(c);
}

/* Every type with a non-default value: render, load the render, render again. */
static void test_render_round_trip(void **state) {
    (void)state;
    char err[512];
    config_t *c = config_new();
    const char *sets[] = {"kafka.brokers=b1:9092,b2:9092", "kafka.properties=[\"linger.ms=5\"]",
                          "model.gpu_memory_fraction=0.35", "model.seed=9000000000", "batching.slo.tpot_ms=12.5",
                          "worker.id=w \\\"x", "model.path=/models/a b.gguf", "output.format=msgpack"};
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        int rc = config_set(c, sets[i], err, sizeof err);
        if (i == 5) { /* quotes/backslashes are refused in worker.id */
            assert_int_equal(rc, -1);
            continue;
        }
        if (rc) fail_msg("%s", err);
    }
    c->kafka.n_properties = 0; /* secrets do not survive a render: leave them out */
    free(c->kafka.properties[0]);
    char *r1 = config_render(c);
    config_t *d = config_new();
    if (config_load_string(d, r1, err, sizeof err) != 0) fail_msg("%s\n%s", err, r1);
    char *r2 = config_render(d);
    assert_string_equal(r1, r2);
    assert_int_equal(d->model.seed, 9000000000LL);
    assert_true(d->model.gpu_memory_fraction == 0.35);
    assert_string_equal(d->model.path, "/models/a b.gguf");
    free(r1);
    free(r2);
    config_free(c);
    config_free(d);
}

/* A list that cannot be stored is an error, never a shorter list: a newline-separated
 * list from --set and from the environment, parsed under an address-space limit too
 * small for its entries (in a child process; ASan needs more address space than any
 * such limit leaves, so the sanitizer build skips this). */
static void test_list_out_of_memory(void **state) {
    (void)state;
#if defined(__SANITIZE_ADDRESS__)
    skip();
#else
    enum { N = 8 << 20 }; /* "a=1\n" each: 32 MiB of text, ~320 MiB to store */
    static const char head[] = "kafka.properties=";
    static const char env_head[] = "KRILL_KAFKA_PROPERTIES=";
    for (int via_env = 0; via_env < 2; via_env++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            /* cmocka catches crashes to go on with the next test: not in this child */
            int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
            for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
            const char *h = via_env ? env_head : head;
            size_t hl = strlen(h);
            char *text = malloc(hl + (size_t)N * 4 + 1);
            config_t *c = config_new();
            if (!text || !c) _exit(3);
            memcpy(text, h, hl);
            for (size_t i = 0; i < N; i++) memcpy(text + hl + i * 4, "a=1\n", 4);
            text[hl + (size_t)N * 4] = 0;
            char err[512] = "";
            if (config_set(c, "kafka.properties=[\"x=1\"]", err, sizeof err) != 0) _exit(4);
            /* room for 64 MiB more than the process holds now */
            FILE *f = fopen("/proc/self/statm", "r");
            unsigned long pages = 0;
            if (!f || fscanf(f, "%lu", &pages) != 1) _exit(5);
            fclose(f);
            struct rlimit rl = {.rlim_cur = pages * (unsigned long)sysconf(_SC_PAGESIZE) + (64ul << 20)};
            rl.rlim_max = RLIM_INFINITY;
            if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(6);
            char *const envp[] = {text, NULL};
            int rc = via_env ? config_apply_env(c, envp, err, sizeof err) : config_set(c, text, err, sizeof err);
            if (rc != -1) _exit(7);                           /* a shortened list was taken */
            if (!strstr(err, "kafka.properties") || !strstr(err, "out of memory")) _exit(8);
            if (c->kafka.n_properties != 1) _exit(9);         /* the old list is kept */
            _exit(0);
        }
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            fail_msg("%s: child %s %d", via_env ? "environment" : "--set", WIFEXITED(st) ? "exit" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    }
#endif
}

/* conf/krill.cfg: loads; with every "# key = value;" line uncommented it sets every
 * key of the table exactly once, to its default, and nothing else. */
static void test_krill_cfg_lists_every_key(void **state) {
    (void)state;
    char *text = config_doc_slurp(CFG_PATH);
    assert_non_null(text);
    char err[512];
    config_t *c = config_new();
    if (config_load_file(c, CFG_PATH, err, sizeof err) != 0) fail_msg("%s", err);
    config_free(c);

    size_t nkeys;
    const config_key_t *keys = config_keys(&nkeys);
    int *seen = calloc(nkeys, sizeof *seen);
    size_t len = strlen(text);
    char *un = malloc(len + 1), *w = un;
    char section[3][64];
    int depth = 0;
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        size_t l = next ? (size_t)(next - line) : strlen(line);
        if (next) next++;
        char buf[512];
        snprintf(buf, sizeof buf, "%.*s", (int)l, line);
        char *p = buf;
        while (*p == ' ') p++;
        char name[64];
        if (sscanf(p, "%63[a-z_] = {", name) == 1 && strstr(p, "= {")) {
            snprintf(section[depth++], 64, "%s", name);
        } else if (strncmp(p, "};", 2) == 0) {
            depth--;
        } else if (p[0] == '#' && p[1] == ' ' && p[2] >= 'a' && p[2] <= 'z' && strstr(p, " = ") &&
                   buf[strlen(buf) - 1] == ';') {
            /* "# key = value;" -> "key = value;" */
            size_t indent = (size_t)(p - buf);
            memmove(p, p + 2, strlen(p + 2) + 1);
            (void)indent;
            char key[64];
            assert_int_equal(sscanf(p, "%63[a-z_]", key), 1);
            char path[192] = "";
            for (int i = 0; i < depth; i++) {
                strcat(path, section[i]);
                strcat(path, ".");
            }
            strcat(path, key);
            bool found = false;
            for (size_t i = 0; i < nkeys; i++)
                if (strcmp(keys[i].path, path) == 0) seen[i]++, found = true;
            if (!found) fail_msg(CFG_PATH " documents %s, which is not a key", path);
        }
        w += sprintf(w, "%s\n", buf);
    }
    *w = 0;
    for (size_t i = 0; i < nkeys; i++)
        if (seen[i] != 1) fail_msg(CFG_PATH " lists %s %d times (want a commented \"# %s = <default>;\")", keys[i].path,
                                   seen[i], strrchr(keys[i].path, '.') + 1);
    /* the uncommented file loads and holds exactly the defaults */
    config_t *u = config_new(), *def = config_new();
    if (config_load_string(u, un, err, sizeof err) != 0) fail_msg("uncommented " CFG_PATH ": %s", err);
    char *r1 = config_render(u), *r2 = config_render(def);
    if (strcmp(r1, r2) != 0) fail_msg("defaults in " CFG_PATH " differ from the table:\n%s\n--- table:\n%s", r1, r2);
    free(r1);
    free(r2);
    config_free(u);
    config_free(def);
    free(seen);
    free(un);
    free(text);
}

static void test_doc_matches_table(void **state) {
    (void)state;
    char *doc = config_doc_slurp(CONFIG_DOC_PATH);
    assert_non_null(doc);
    char *table = config_doc_table();
    assert_non_null(table);
    char *want = config_doc_splice(doc, table);
    if (!want) fail_msg(CONFIG_DOC_PATH " lacks the markers %s ... %s", CONFIG_DOC_BEGIN, CONFIG_DOC_END);
    if (strcmp(doc, want) != 0)
        fail_msg(CONFIG_DOC_PATH " is out of date with the key table: run build/krill-config-doc --write");
    /* and every key is in it, with its environment variable */
    size_t n;
    const config_key_t *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        char pat[160], env[96];
        config_env_name(keys[i].path, env, sizeof env);
        snprintf(pat, sizeof pat, "| `%s` |", keys[i].path);
        assert_non_null(strstr(doc, pat));
        assert_non_null(strstr(doc, env));
    }
    free(doc);
    free(table);
    free(want);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_errors_name_the_key),
        cmocka_unit_test(test_cross_checks),
        cmocka_unit_test(test_properties_and_secrets),
        cmocka_unit_test(test_render_round_trip),
        cmocka_unit_test(test_list_out_of_memory),
        cmocka_unit_test(test_krill_cfg_lists_every_key),
        cmocka_unit_test(test_doc_matches_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
