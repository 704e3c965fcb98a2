/* Clocks and time formats. Thread: any. */
#ifndef CITYGATE_TIMEUTIL_H
#define CITYGATE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

/* Wall clock, microseconds / milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t gw_now_us(void);
int64_t gw_now_ms(void);
/* Monotonic clock in milliseconds / microseconds (CLOCK_MONOTONIC), for intervals. */
int64_t gw_mono_ms(void);
int64_t gw_mono_us(void);
/* *ts = the monotonic clock ms milliseconds from now: an absolute deadline for
 * pthread_cond_timedwait on a condition variable set to CLOCK_MONOTONIC. */
struct timespec;
void gw_mono_deadline(struct timespec *ts, int64_t ms);

/* Format ts_us as RFC 3339 with milliseconds in the given UTC offset (minutes, e.g.
 * 480 for +08:00; 0 gives "Z"). Writes at most n bytes including the NUL; returns the
 * length or GW_EINVAL if it did not fit. */
int gw_format_rfc3339(char *buf, size_t n, int64_t ts_us, int utc_offset_min);
/* Parse RFC 3339 ("2026-06-01T08:30:05.120+08:00", "…Z", fraction optional) into
 * microseconds since the epoch. Returns 0 or GW_EINVAL. */
int gw_parse_rfc3339(const char *s, int64_t *ts_us);
/* Parse "+08:00", "-05:30" or "Z" into minutes. Returns 0 or GW_EINVAL. */
int gw_parse_utc_offset(const char *s, int *minutes);

/* Sleep for ms milliseconds (restarts on EINTR unless *stop becomes non-zero). */
void gw_sleep_ms(int64_t ms);

#endif
