/* procstat.c — see procstat.h. Field numbers follow proc(5): after "pid (comm)" come
 * state (3) ... utime (14), stime (15) ... starttime (22), vsize (23), rss (24). The
 * start time is computed on every read (two small files); nothing is cached, so a
 * figure is always what /proc says now. */
#include "procstat.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

int procstat_parse_stat(const char *text, unsigned long long *cpu_ticks, unsigned long long *start_ticks,
                        unsigned long long *vsize, long long *rss_pages) {
    const char *p = strrchr(text, ')'); /* comm ends at the last ')' */
    if (!p) return -1;
    p++;
    unsigned long long utime = 0, stime = 0;
    int field = 2, got = 0;
    while (*p && got < 5) {
        while (*p == ' ') p++;
        if (!*p || *p == '\n') break;
        field++;
        char *end;
        switch (field) {
        case 14: utime = strtoull(p, &end, 10); got++; break;
        case 15: stime = strtoull(p, &end, 10); got++; break;
        case 22: *start_ticks = strtoull(p, &end, 10); got++; break;
        case 23: *vsize = strtoull(p, &end, 10); got++; break;
        case 24: *rss_pages = strtoll(p, &end, 10); got++; break;
        default: end = (char *)p + strcspn(p, " \n"); break;
        }
        if (end == p) return -1; /* not a number where one belongs */
        p = end;
    }
    if (got < 5) return -1;
    *cpu_ticks = utime + stime;
    return 0;
}

/* Reads a small /proc file into buf (NUL-terminated). Returns its length or -1. */
static long procstat_slurp(const char *path, char *buf, size_t cap) {
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = 0;
    return (long)n;
}

/* Boot time (seconds since the epoch) from /proc/stat's "btime" line; NaN if absent. */
static double procstat_boot_time(void) {
    char buf[16384]; /* btime follows the per-cpu lines: enough for a few dozen cores, else NaN */
    if (procstat_slurp("/proc/stat", buf, sizeof buf) < 0) return NAN;
    const char *p = strstr(buf, "\nbtime ");
    if (!p) return NAN;
    char *end;
    unsigned long long bt = strtoull(p + 7, &end, 10);
    return end == p + 7 ? NAN : (double)bt;
}

static double procstat_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return NAN;
    int own = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        if (*end == 0 && fd == own) continue; /* the directory we are reading */
        n++;
    }
    closedir(d);
    return n;
}

int procstat_read(procstat_t *p) {
    p->cpu_seconds = p->resident_bytes = p->virtual_bytes = p->start_time_s = p->open_fds = p->max_fds = NAN;
    long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    char buf[1024];
    unsigned long long cpu, start, vsize;
    long long rss;
    if (tick > 0 && page > 0 && procstat_slurp("/proc/self/stat", buf, sizeof buf) > 0 &&
        procstat_parse_stat(buf, &cpu, &start, &vsize, &rss) == 0) {
        p->cpu_seconds = (double)cpu / (double)tick;
        p->resident_bytes = rss > 0 ? (double)rss * (double)page : 0;
        p->virtual_bytes = (double)vsize;
        double bt = procstat_boot_time();
        if (!isnan(bt)) p->start_time_s = bt + (double)start / (double)tick;
    }
    p->open_fds = procstat_open_fds();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) p->max_fds = rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
    double all[] = {p->cpu_seconds, p->resident_bytes, p->virtual_bytes, p->start_time_s, p->open_fds, p->max_fds};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (isnan(all[i])) return -1;
    return 0;
}
