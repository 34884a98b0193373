/* krill-config-doc — writes the key table of docs/configuration.md from the settings
 * table of src/worker/config.c (config_keys), so that the worker carries no document
 * generator: the table is one row per key, this tool turns the rows into Markdown.
 *
 *   krill-config-doc           prints the Markdown table
 *   krill-config-doc --write   rewrites the table between the markers of the doc
 *   krill-config-doc --check   exits 1 when the doc's table differs from the key table
 *
 * test_config compiles this file with main renamed and checks the committed doc with
 * config_doc_table/config_doc_splice (llama2.c's way of keeping a tool testable). */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "cli.h"
#include "config.h"

#define CONFIG_DOC_PATH "docs/configuration.md"
#define CONFIG_DOC_BEGIN \
    "<!-- keys:begin (generated from src/worker/config.c; `build/krill-config-doc --write` rewrites it) -->\n"
#define CONFIG_DOC_END "<!-- keys:end -->"

/* Markdown table of every key, one row each. malloc'd; NULL when out of memory. */
static char *config_doc_table(void) {
    buf_t b = {0};
    buf_puts(&b, "| Key | Type | Default | Environment | Description |\n|---|---|---|---|---|\n");
    size_t n;
    const config_key_t *keys = config_keys(&n);
    for (size_t i = 0; i < n; i++) {
        const config_key_t *k = &keys[i];
        char env[96], type[96];
        config_env_name(k->path, env, sizeof env);
        if (k->type == CONFIG_ENUM) {
            snprintf(type, sizeof type, "one of %s", k->choices);
            for (char *p = type; *p; p++)
                if (*p == '|') *p = '/';
        } else if (k->type == CONFIG_DOUBLE) {
            snprintf(type, sizeof type, "float [%g, %g]", k->min, k->max);
        } else if (k->type == CONFIG_INT || k->type == CONFIG_INT64) {
            snprintf(type, sizeof type, "integer [%.0f, %.0f]", k->min, k->max);
        } else {
            snprintf(type, sizeof type, "%s", config_type_name(k->type));
        }
        buf_printf(&b, "| `%s` | %s | `%s` | `%s` | %s |\n", k->path, type, k->def, env, k->doc);
    }
    if (b.oom) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

/* doc with the text between its markers replaced by table. malloc'd; NULL when the
 * markers are missing (or out of memory). */
static char *config_doc_splice(const char *doc, const char *table) {
    const char *b = strstr(doc, CONFIG_DOC_BEGIN), *e = strstr(doc, CONFIG_DOC_END);
    if (!b || !e || e < b) return NULL;
    buf_t out = {0};
    buf_append(&out, doc, (size_t)(b - doc) + strlen(CONFIG_DOC_BEGIN));
    buf_puts(&out, table);
    buf_puts(&out, e);
    if (out.oom) {
        buf_free(&out);
        return NULL;
    }
    return buf_detach(&out, NULL);
}

/* A whole file, NUL-terminated (malloc'd); NULL when it cannot be read. */
static char *config_doc_slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf_t b = {0};
    char chunk[8192];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) buf_append(&b, chunk, k);
    bool bad = ferror(f) || b.oom;
    fclose(f);
    if (!bad && !b.data) buf_append(&b, "", 0);
    if (bad || b.oom) {
        buf_free(&b);
        return NULL;
    }
    return buf_detach(&b, NULL);
}

static void config_doc_usage(FILE *f) {
    fprintf(f, "usage: krill-config-doc [--write | --check] [--doc FILE]\n"
               "Prints the key table of " CONFIG_DOC_PATH " from krill's settings table.\n"
               "  --write     rewrite the table between the doc's keys:begin/keys:end markers\n"
               "  --check     exit 1 when the doc's table is out of date\n"
               "  --doc FILE  the document (default " CONFIG_DOC_PATH ")\n"
               "  --help      this text\n"
               "  --version   print the version\n"
               "Exit status: 0 ok, 1 out of date or unreadable doc (the reason is printed), 2 usage error.\n");
}

int main(int argc, char **argv) {
    enum { O_WRITE = 256, O_CHECK, O_DOC, O_HELP, O_VERSION };
    static const struct option opts[] = {
        {"write", no_argument, 0, O_WRITE}, {"check", no_argument, 0, O_CHECK},
        {"doc", required_argument, 0, O_DOC}, {"help", no_argument, 0, O_HELP},
        {"version", no_argument, 0, O_VERSION}, {0, 0, 0, 0},
    };
    const char *path = CONFIG_DOC_PATH;
    bool write = false, check = false;
    int c;
    cli_init("krill-config-doc");
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_WRITE: write = true; break;
        case O_CHECK: check = true; break;
        case O_DOC: path = optarg; break;
        case 'h':
        case O_HELP: config_doc_usage(stdout); return 0;
        case O_VERSION: cli_version();
        default: cli_bad_option();
        }
    }
    if (optind < argc) cli_usage_error("unexpected argument '%s'", argv[optind]);
    if (write && check) cli_usage_error("--write and --check exclude each other");
    char *table = config_doc_table();
    if (!table) {
        fprintf(stderr, "krill-config-doc: out of memory\n");
        return 1;
    }
    if (!write && !check) {
        fputs(table, stdout);
        free(table);
        return 0;
    }
    int rc = 1;
    char *doc = config_doc_slurp(path), *want = doc ? config_doc_splice(doc, table) : NULL;
    if (!doc) {
        fprintf(stderr, "krill-config-doc: %s: cannot read it\n", path);
    } else if (!want) {
        fprintf(stderr, "krill-config-doc: %s: no %s ... %s markers\n", path, "<!-- keys:begin", CONFIG_DOC_END);
    } else if (check) {
        rc = strcmp(doc, want) == 0 ? 0 : 1;
        if (rc) fprintf(stderr, "krill-config-doc: %s is out of date with the key table: run krill-config-doc --write\n", path);
    } else {
        FILE *f = fopen(path, "wb");
        bool ok = f && fputs(want, f) >= 0;
        if (f && fclose(f) != 0) ok = false;
        if (!ok) {
            fprintf(stderr, "krill-config-doc: %s: cannot write it\n", path);
        } else {
            printf("rewrote the key table in %s\n", path);
            rc = 0;
        }
    }
    free(want);
    free(doc);
    free(table);
    return rc;
}
