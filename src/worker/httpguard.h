/* httpguard.h — keeps the metrics endpoint reachable under a slow-loris.
 *
 * Many connections that each trickle a header line now and then reset
 * libmicrohttpd's idle timeout forever and fill its connection limit, so scrapes wait
 * (issue 16: 70 such connections kept /metrics away for 40 s). The guard tracks every
 * connection of one libmicrohttpd daemon through its NOTIFY_CONNECTION and
 * NOTIFY_COMPLETED callbacks:
 * - a request must arrive whole within HTTPGUARD_REQUEST_DEADLINE_S of the connection
 *   opening or of the previous answer, however it trickles (a thread checks once a
 *   second);
 * - above HTTPGUARD_KEEP_CONNS open connections a new one closes the oldest, so a
 *   scrape always gets in (it is the newest and is answered in milliseconds).
 * Closing is shutdown(2): libmicrohttpd sees the end of the stream and releases the
 * connection on its own thread. Entries leave the table in NOTIFY_CLOSED, which
 * libmicrohttpd calls before it closes the socket, so every fd in the table is still
 * that connection's. docs/operations-metrics.md, "The endpoint under abuse", has the
 * measurements. */
#ifndef KRILL_HTTPGUARD_H
#define KRILL_HTTPGUARD_H

#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#define HTTPGUARD_MAX_CONNS 64          /* the daemon's MHD_OPTION_CONNECTION_LIMIT */
#define HTTPGUARD_KEEP_CONNS 32         /* more open than this: a new one closes the oldest */
#define HTTPGUARD_IDLE_TIMEOUT_S 10     /* the daemon's MHD_OPTION_CONNECTION_TIMEOUT (silence) */
#define HTTPGUARD_REQUEST_DEADLINE_S 10 /* a whole request, trickled or not */
#define HTTPGUARD_LOG_INTERVAL_S 60     /* libmicrohttpd's per-connection messages: one line per interval */

typedef struct httpguard httpguard_t;

/* A guard with its deadline thread running. NULL with err when the thread cannot start. */
httpguard_t *httpguard_new(char *err, size_t errlen);
/* Stops the deadline thread and frees. Call after MHD_stop_daemon. Accepts NULL. */
void httpguard_free(httpguard_t *g);

/* Pass to MHD_start_daemon with g as the closure. */
void httpguard_on_connection(void *g, struct MHD_Connection *c, void **socket_context,
                             enum MHD_ConnectionNotificationCode code);
void httpguard_on_completed(void *g, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe);

/* Connections the guard closed (deadline or cap). 0 for NULL. */
uint64_t httpguard_dropped(const httpguard_t *g);

/* Rate limit for libmicrohttpd's per-connection log messages: true at most once per
 * HTTPGUARD_LOG_INTERVAL_S, with *suppressed = the messages dropped since the last
 * true (any thread). */
bool httpguard_log_allow(httpguard_t *g, unsigned *suppressed);

#endif
