/* procstat.h — this process's resource figures, read from /proc at the moment they are
 * asked for (a scrape), in the units of the Prometheus client libraries' process_*
 * metrics (docs/operations-metrics.md): CPU seconds, bytes, seconds since the epoch.
 *
 * Rules it keeps: Linux only (/proc/self); a figure that cannot be read is NaN, never
 * a guess; no allocation; safe from any thread. */
#ifndef KRILL_PROCSTAT_H
#define KRILL_PROCSTAT_H

typedef struct {
    double cpu_seconds;      /* user + system CPU time (/proc/self/stat utime + stime) */
    double resident_bytes;   /* resident set size (stat rss x page size) */
    double virtual_bytes;    /* virtual memory size (stat vsize) */
    double start_time_s;     /* process start, seconds since the epoch (stat starttime + /proc/stat btime) */
    double open_fds;         /* entries of /proc/self/fd */
    double max_fds;          /* the soft RLIMIT_NOFILE (+Inf when unlimited) */
} procstat_t;

/* Fills every field; the ones that cannot be read are NaN. Returns 0 when all were
 * read, -1 when at least one is NaN. */
int procstat_read(procstat_t *p);

/* Parses the text of /proc/<pid>/stat (comm may hold spaces and parentheses) into
 * clock ticks and bytes: utime + stime, starttime, vsize, rss pages. 0, or -1 when the
 * text is not a stat line. Exposed for the unit test. */
int procstat_parse_stat(const char *text, unsigned long long *cpu_ticks, unsigned long long *start_ticks,
                        unsigned long long *vsize, long long *rss_pages);

#endif
