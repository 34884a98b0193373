/* httpguard.c — see httpguard.h. One mutex guards the table: libmicrohttpd's thread
 * (callbacks) and the deadline thread take it for a scan of at most 64 entries. */
#include "httpguard.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "clock.h"
#include "err.h"

typedef struct {
    struct MHD_Connection *c; /* NULL: free slot */
    int fd;                   /* -1 once shut down by the guard (waiting for NOTIFY_CLOSED) */
    double t0;                /* monotonic s: opened, or the last answer completed */
} httpguard_conn_t;

struct httpguard {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    httpguard_conn_t conn[HTTPGUARD_MAX_CONNS];
    pthread_t reaper;
    bool stopping;
    _Atomic uint64_t dropped;
    pthread_mutex_t log_mu;
    double log_last; /* monotonic s of the last allowed message; 0 = never */
    unsigned log_suppressed;
};

/* Shuts down hc's socket (mu held); the entry stays until libmicrohttpd reports it closed. */
static void httpguard_drop(httpguard_t *g, httpguard_conn_t *hc) {
    if (hc->fd >= 0) shutdown(hc->fd, SHUT_RDWR);
    hc->fd = -1;
    atomic_fetch_add_explicit(&g->dropped, 1, memory_order_relaxed);
}

/* Once a second: shut down connections past the request deadline. */
static void *httpguard_reaper(void *arg) {
    httpguard_t *g = arg;
    pthread_mutex_lock(&g->mu);
    while (!g->stopping) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&g->cv, &g->mu, &ts);
        double now = clock_now_s();
        for (int i = 0; i < HTTPGUARD_MAX_CONNS; i++) {
            httpguard_conn_t *hc = &g->conn[i];
            if (hc->c && hc->fd >= 0 && now - hc->t0 > HTTPGUARD_REQUEST_DEADLINE_S) httpguard_drop(g, hc);
        }
    }
    pthread_mutex_unlock(&g->mu);
    return NULL;
}

httpguard_t *httpguard_new(char *err, size_t errlen) {
    httpguard_t *g = calloc(1, sizeof *g);
    if (!g) {
        err_set(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    pthread_mutex_init(&g->log_mu, NULL);
    atomic_init(&g->dropped, 0);
    int rc = pthread_create(&g->reaper, NULL, httpguard_reaper, g);
    if (rc != 0) {
        err_set(err, errlen, "metrics.listen: cannot start the connection deadline thread (%s); raise the "
                "process's thread limit or set metrics.listen=off", strerror(rc));
        pthread_mutex_destroy(&g->mu);
        pthread_cond_destroy(&g->cv);
        pthread_mutex_destroy(&g->log_mu);
        free(g);
        return NULL;
    }
    return g;
}

void httpguard_free(httpguard_t *g) {
    if (!g) return;
    pthread_mutex_lock(&g->mu);
    g->stopping = true;
    pthread_cond_signal(&g->cv);
    pthread_mutex_unlock(&g->mu);
    pthread_join(g->reaper, NULL);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    pthread_mutex_destroy(&g->log_mu);
    free(g);
}

void httpguard_on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode code) {
    (void)socket_context;
    httpguard_t *g = cls;
    pthread_mutex_lock(&g->mu);
    if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
        for (int i = 0; i < HTTPGUARD_MAX_CONNS; i++)
            if (g->conn[i].c == c) g->conn[i].c = NULL;
        pthread_mutex_unlock(&g->mu);
        return;
    }
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int live = 0, oldest = -1, free_slot = -1;
    for (int i = 0; i < HTTPGUARD_MAX_CONNS; i++) {
        httpguard_conn_t *hc = &g->conn[i];
        if (!hc->c) {
            if (free_slot < 0) free_slot = i;
            continue;
        }
        if (hc->fd < 0) continue; /* already shut down */
        live++;
        if (oldest < 0 || hc->t0 < g->conn[oldest].t0) oldest = i;
    }
    if (live >= HTTPGUARD_KEEP_CONNS && oldest >= 0) httpguard_drop(g, &g->conn[oldest]);
    if (free_slot >= 0) /* always: the daemon's limit is the table's size */
        g->conn[free_slot] = (httpguard_conn_t){.c = c, .fd = ci ? (int)ci->connect_fd : -1, .t0 = clock_now_s()};
    pthread_mutex_unlock(&g->mu);
}

void httpguard_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)con_cls;
    httpguard_t *g = cls;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK) return;
    pthread_mutex_lock(&g->mu);
    for (int i = 0; i < HTTPGUARD_MAX_CONNS; i++)
        if (g->conn[i].c == c) g->conn[i].t0 = clock_now_s(); /* the next request's deadline starts now */
    pthread_mutex_unlock(&g->mu);
}

uint64_t httpguard_dropped(const httpguard_t *g) {
    return g ? atomic_load_explicit(&((httpguard_t *)g)->dropped, memory_order_relaxed) : 0;
}

bool httpguard_log_allow(httpguard_t *g, unsigned *suppressed) {
    double now = clock_now_s();
    pthread_mutex_lock(&g->log_mu);
    bool ok = g->log_last == 0 || now - g->log_last >= HTTPGUARD_LOG_INTERVAL_S;
    if (ok) {
        *suppressed = g->log_suppressed;
        g->log_suppressed = 0;
        g->log_last = now;
    } else {
        g->log_suppressed++;
    }
    pthread_mutex_unlock(&g->log_mu);
    return ok;
}
