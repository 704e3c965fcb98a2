#include "timeutil.h"

#include "error.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t clock_us(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t gw_now_us(void) { return clock_us(CLOCK_REALTIME); }
int64_t gw_now_ms(void) { return clock_us(CLOCK_REALTIME) / 1000; }
int64_t gw_mono_us(void) { return clock_us(CLOCK_MONOTONIC); }
int64_t gw_mono_ms(void) { return clock_us(CLOCK_MONOTONIC) / 1000; }

void gw_mono_deadline(struct timespec *ts, int64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void gw_sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        ;
}

int gw_format_rfc3339(char *buf, size_t n, int64_t ts_us, int off_min)
{
    int64_t local_us = ts_us + (int64_t)off_min * 60 * 1000000;
    time_t secs = (time_t)(local_us / 1000000);
    int64_t frac = local_us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    struct tm tm;
    if (!gmtime_r(&secs, &tm))
        return GW_EINVAL;
    char zone[8];
    if (off_min == 0) {
        strcpy(zone, "Z");
    } else {
        int a = off_min < 0 ? -off_min : off_min;
        snprintf(zone, sizeof zone, "%c%02d:%02d", off_min < 0 ? '-' : '+', (a / 60) % 100, a % 60);
    }
    int len = snprintf(buf, n, "%04d-%02d-%02dT%02d:%02d:%02d.%03d%s", tm.tm_year + 1900,
                       tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                       (int)(frac / 1000), zone);
    if (len < 0 || (size_t)len >= n)
        return GW_EINVAL;
    return len;
}

static int digits(const char *s, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int gw_parse_utc_offset(const char *s, int *minutes)
{
    if (!s)
        return GW_EINVAL;
    if ((s[0] == 'Z' || s[0] == 'z') && s[1] == '\0') {
        *minutes = 0;
        return 0;
    }
    /* Exactly "+hh:mm" / "-hh:mm": scanf's %d would also take " 8" or "-1". */
    int h, m;
    if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || digits(s + 1, 2, &h) ||
        s[3] != ':' || digits(s + 4, 2, &m) || h > 14 || m > 59)
        return GW_EINVAL;
    *minutes = (s[0] == '-' ? -1 : 1) * (h * 60 + m);
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int gw_parse_rfc3339(const char *s, int64_t *ts_us)
{
    int Y, M, D, h, mi, sec;
    if (!s || strlen(s) < 20)
        return GW_EINVAL;
    if (digits(s, 4, &Y) || s[4] != '-' || digits(s + 5, 2, &M) || s[7] != '-' ||
        digits(s + 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        return GW_EINVAL;
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (M < 1 || M > 12 || D < 1 || D > mdays[M - 1] || h > 23 || mi > 59 || sec > 60)
        return GW_EINVAL;
    if (M == 2 && D == 29 && !(Y % 4 == 0 && (Y % 100 != 0 || Y % 400 == 0)))
        return GW_EINVAL;
    const char *p = s + 19;
    int64_t frac_us = 0;
    if (*p == '.') {
        p++;
        int nd = 0;
        int64_t scale = 100000;
        while (*p >= '0' && *p <= '9') {
            if (nd < 6) {
                frac_us += (*p - '0') * scale;
                scale /= 10;
            }
            nd++;
            p++;
        }
        if (nd == 0)
            return GW_EINVAL;
    }
    int off;
    if (gw_parse_utc_offset(p, &off))
        return GW_EINVAL;
    int64_t days = days_from_civil(Y, M, D);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - (int64_t)off * 60;
    *ts_us = secs * 1000000 + frac_us;
    return 0;
}
