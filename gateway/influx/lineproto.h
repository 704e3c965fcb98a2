/* InfluxDB line protocol: a pure formatter into a caller's buffer (no I/O, no
 * allocation), so tests and the fuzz target need no network.
 *
 * One point is always exactly one physical line ending in '\n': no value can inject a
 * second line, a comment or a different series. The rules, checked against influxd
 * 1.6.7 (the line-protocol reference plus what its parser really accepts):
 *
 *  - measurement: ',' and ' ' escaped with '\'; a leading '#' (a comment line) becomes
 *    '_'. tag keys, tag values, field keys: ',', '=' and ' ' escaped.
 *  - control characters (bytes < 0x20 and 0x7f: newline, CR, tab, ...) cannot be
 *    escaped in identifiers; they become ' ' (then escaped as "\ ").
 *  - a backslash that ends an identifier or stands before an escaped character cannot
 *    be represented in 1.x (its parser reads "\\ " as an escaped space and unescapes
 *    only "\,", "\=", "\ "); it becomes '/'. Any other backslash is written as is and
 *    reads back exactly.
 *  - string field values: '"' and '\' escaped; newline and CR become the two characters
 *    "\n" / "\r" (1.x would take a raw newline inside quotes, but line-based tools,
 *    this writer's batch splitting and the dead-letter file would not); other control
 *    characters except tab become ' '.
 *  - invalid UTF-8 bytes become '?' everywhere.
 *  - floats read back as exactly the same double: values with few decimal places
 *    (12.5, 0.001, 1700) are printed digit by digit with the fewest decimals that
 *    reproduce them, others with the fewest of 15, 16 or 17 significant digits that
 *    do. NaN and Inf are never written: the field is skipped and counted. Integers get the 'i' suffix; booleans
 *    are true / false.
 *  - fields or tags keyed "time", "_field" or "_measurement" (rejected or silently
 *    dropped by InfluxDB) and tags with an empty key or value are skipped and counted.
 *  - the timestamp is always explicit (retries then overwrite rather than duplicate),
 *    converted from epoch microseconds to the chosen precision.
 *
 * Thread: any; no shared state. */
#ifndef CITYGATE_INFLUX_LINEPROTO_H
#define CITYGATE_INFLUX_LINEPROTO_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GW_LP_NS = 0, GW_LP_US, GW_LP_MS, GW_LP_S } gw_lp_precision;

typedef enum { GW_LP_FLOAT = 0, GW_LP_INT, GW_LP_BOOL, GW_LP_STRING } gw_lp_type;

typedef struct gw_lp_tag {
    const char *key, *value;      /* borrowed, NUL-terminated */
} gw_lp_tag;

typedef struct gw_lp_field {
    const char *key;              /* borrowed */
    gw_lp_type type;
    double f;                     /* GW_LP_FLOAT */
    int64_t i;                    /* GW_LP_INT */
    int b;                        /* GW_LP_BOOL */
    const char *s;                /* GW_LP_STRING, borrowed */
} gw_lp_field;

typedef struct gw_lp_point {
    const char *measurement;
    const gw_lp_tag *tags;
    size_t n_tags;
    const gw_lp_field *fields;
    size_t n_fields;
    int64_t ts_us;                /* epoch microseconds */
} gw_lp_point;

/* What the formatter left out (added to, never reset). */
typedef struct gw_lp_skips {
    uint64_t nonfinite;           /* NaN / Inf fields */
    uint64_t bad_key;             /* fields / tags with reserved or empty keys or values */
} gw_lp_skips;

/* Parse "ns", "us", "ms", "s"; returns 0 or GW_EINVAL. */
int gw_lp_precision_parse(const char *s, gw_lp_precision *out);
/* The precision query value: 1.x /write ("n", "u", "ms", "s") or 2.x ("ns", "us", ...). */
const char *gw_lp_precision_param(gw_lp_precision p, int influx_version);
/* ts_us converted to the precision (truncating toward minus infinity). */
int64_t gw_lp_timestamp(int64_t ts_us, gw_lp_precision p);

/* Format one point as one line (with its '\n') into buf[0..cap). skips may be NULL.
 * Returns the number of bytes written (> 0; buf is not NUL-terminated), GW_EFULL if
 * cap is too small (buf contents then undefined), or GW_EINVAL if the point has no
 * measurement or no field left to write (nothing written; skips still counted). */
int gw_lp_format(char *buf, size_t cap, const gw_lp_point *p, gw_lp_precision prec,
                 gw_lp_skips *skips);

/* The series key alone: the escaped measurement and tags followed by the ' ' that
 * starts the fields, as gw_lp_format writes them. A writer formats it once per device
 * and reuses it for every line (gw_lp_format_line). Tags skipped are counted in skips
 * (may be NULL). Returns the bytes written, GW_EFULL or GW_EINVAL (no measurement). */
int gw_lp_format_series(char *buf, size_t cap, const char *measurement, const gw_lp_tag *tags,
                        size_t n_tags, gw_lp_skips *skips);

/* One line from a series key made by gw_lp_format_series (series[0..series_len),
 * borrowed): the same bytes gw_lp_format writes for that measurement and those tags.
 * Returns as gw_lp_format (GW_EINVAL also for a series not ending in ' '). */
int gw_lp_format_line(char *buf, size_t cap, const char *series, size_t series_len,
                      const gw_lp_field *fields, size_t n_fields, int64_t ts_us,
                      gw_lp_precision prec, gw_lp_skips *skips);

#endif
