/* clock.h — the one monotonic clock (CLOCK_MONOTONIC), for durations and deadlines. */
#ifndef KRILL_CLOCK_H
#define KRILL_CLOCK_H

double clock_now_ms(void); /* milliseconds since an arbitrary fixed point */
double clock_now_s(void);

#endif
