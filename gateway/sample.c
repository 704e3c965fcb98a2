#include "sample.h"

#include "error.h"
#include "timeutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *const quality_names[GW_Q__COUNT] = {
    "good", "stale", "comm_error", "decode_error", "out_of_range",
};

const char *gw_quality_name(gw_quality q)
{
    return (unsigned)q < GW_Q__COUNT ? quality_names[q] : "unknown";
}

int gw_quality_parse(const char *name, gw_quality *out)
{
    for (int i = 0; name && i < GW_Q__COUNT; i++) {
        if (strcmp(name, quality_names[i]) == 0) {
            *out = (gw_quality)i;
            return 0;
        }
    }
    return GW_EINVAL;
}

static const double pow10_tab[10] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

int gw_decimals(double x)
{
    double ax = fabs(x);
    for (int d = 0; d <= 9; d++) {
        double m = ax * pow10_tab[d];
        if (fabs(m - round(m)) <= 1e-9 * (m > 1 ? m : 1))
            return d;
    }
    return -1;
}

double gw_round_decimals(double v, int d)
{
    if (d < 1 || d > 9)
        return v;
    double m = v * pow10_tab[d];
    if (!(fabs(m) < 9007199254740992.0)) /* 2^53: still an exact integer (and not NaN) */
        return v;
    return round(m) / pow10_tab[d];
}

void gw_strlcpy(char *dst, const char *src, size_t size)
{
    if (size == 0)
        return;
    size_t n = src ? strnlen(src, size - 1) : 0;
    memcpy(dst, src ? src : "", n);
    dst[n] = '\0';
}

void gw_sample_set(gw_sample *s, const char *device, const char *field, double value,
                   const char *unit, gw_quality q, int64_t ts_us)
{
    memset(s, 0, sizeof *s);
    gw_strlcpy(s->device, device, sizeof s->device);
    gw_strlcpy(s->field, field, sizeof s->field);
    gw_strlcpy(s->unit, unit, sizeof s->unit);
    s->value = value;
    s->quality = q;
    s->type = GW_V_NUMBER;
    s->ts_us = ts_us ? ts_us : gw_now_us();
}
