/* The sample: one decoded value of one device field at one moment. Sources make them,
 * the engine, the store and the InfluxDB writer consume them. A sample is a plain
 * value type (no pointers), copied across the queue. */
#ifndef CITYGATE_SAMPLE_H
#define CITYGATE_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#define GW_ID_MAX 64    /* device, bus, rule, profile ids: at most 63 bytes */
#define GW_FIELD_MAX 48 /* field names */
#define GW_UNIT_MAX 16
#define GW_TEXT_MAX 48  /* string-valued samples (Modbus strings, enum labels) */

typedef enum {
    GW_Q_GOOD = 0,
    GW_Q_STALE,        /* no fresh value for too long (set by the engine's timers) */
    GW_Q_COMM_ERROR,   /* timeout, CRC error, connection lost */
    GW_Q_DECODE_ERROR, /* bytes arrived but could not be decoded */
    GW_Q_OUT_OF_RANGE, /* decoded to a device's invalid marker or outside its range */
    GW_Q__COUNT
} gw_quality;

typedef enum { GW_V_NUMBER = 0, GW_V_BOOL, GW_V_TEXT } gw_value_type;

typedef struct gw_sample {
    int64_t ts_us;                /* acquisition time (or payload time), epoch µs */
    double value;                 /* numbers and booleans (0/1) */
    uint32_t device_idx;          /* index into the device registry */
    gw_quality quality;
    gw_value_type type;
    char device[GW_ID_MAX];
    char field[GW_FIELD_MAX];
    char unit[GW_UNIT_MAX];
    char text[GW_TEXT_MAX];       /* GW_V_TEXT only */
} gw_sample;

/* "good", "stale", "comm_error", "decode_error", "out_of_range". */
const char *gw_quality_name(gw_quality q);
/* Inverse of gw_quality_name; returns 0 or GW_EINVAL. */
int gw_quality_parse(const char *name, gw_quality *out);

/* Copy src (NULL: "") into dst of size bytes, truncated to fit and terminated (size
 * 0: nothing written): snprintf(dst, size, "%s", src) without the format machinery, for the
 * per-sample paths. */
void gw_strlcpy(char *dst, const char *src, size_t size);

/* Decimal places of x (0..9; within 1e-9 relative), or -1 when it has more. */
int gw_decimals(double x);
/* v rounded to d decimal places (1..9): the double nearest that decimal, so arithmetic
 * noise goes (189 x 0.1 gives 18.9, not 18.900000000000002). v itself when d is out of
 * range or v too large for the rounding to be exact. */
double gw_round_decimals(double v, int d);

/* Fill a number sample; strings are truncated to fit. ts_us 0 means now. */
void gw_sample_set(gw_sample *s, const char *device, const char *field, double value,
                   const char *unit, gw_quality q, int64_t ts_us);

#endif
