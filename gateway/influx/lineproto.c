#include "influx/lineproto.h"

#include "error.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct lp_out {
    char *buf;
    size_t cap, len;
    int full;
} lp_out;

static void put(lp_out *o, const char *s, size_t n)
{
    if (o->full || n > o->cap - o->len) {
        o->full = 1;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void putc_(lp_out *o, char c) { put(o, &c, 1); }

/* Length of a valid UTF-8 sequence at s (at most avail bytes), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else
        return 0;
    if (n > avail)
        return 0;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (size_t k = 2; k < n; k++)
        if (s[k] < 0x80 || s[k] > 0xBF)
            return 0;
    return n;
}

/* One "unit" of input after the control-character and UTF-8 mapping: either one ASCII
 * byte (already mapped) or a whole valid multi-byte sequence. Returns the input bytes
 * consumed (0 at the end); *ascii is the mapped byte, or 0 for a multi-byte unit. */
static size_t next_unit(const unsigned char *s, size_t avail, char *ascii, int keep_tab)
{
    if (avail == 0)
        return 0;
    unsigned char c = s[0];
    if (c < 0x80) {
        if ((c < 0x20 && !(keep_tab && c == '\t')) || c == 0x7f)
            *ascii = (c == '\n' || c == '\r') ? (char)c : ' ';
        else
            *ascii = (char)c;
        return 1;
    }
    size_t n = utf8_len(s, avail);
    if (n == 0) {
        *ascii = '?';
        return 1;
    }
    *ascii = 0;
    return n;
}

/* Byte classes for the fast path: a byte with any of these bits needs the careful
 * per-unit treatment below; an identifier without any is copied as is. */
enum { C_CTRL = 1, C_HIGH = 2, C_BSL = 4, C_COMMA = 8, C_SPACE = 16, C_EQ = 32 };
#define C_MEAS (C_CTRL | C_HIGH | C_BSL | C_COMMA | C_SPACE)
#define C_KEY (C_MEAS | C_EQ)

static unsigned char byte_class(unsigned char c)
{
    if (c < 0x20 || c == 0x7f)
        return C_CTRL;
    if (c >= 0x80)
        return C_HIGH;
    return c == '\\' ? C_BSL : c == ',' ? C_COMMA : c == ' ' ? C_SPACE : c == '=' ? C_EQ : 0;
}

static const unsigned char *class_table(void)
{
    /* Filled on first use; racing threads write identical bytes, and the flag is
     * published with release / acquire so a reader never sees a half-filled table. */
    static unsigned char table[256];
    static _Atomic int ready;
    if (!atomic_load_explicit(&ready, memory_order_acquire)) {
        for (int c = 0; c < 256; c++)
            table[c] = byte_class((unsigned char)c);
        atomic_store_explicit(&ready, 1, memory_order_release);
    }
    return table;
}

static void put_ident_slow(lp_out *o, const char *str, const char *special, int measurement);

/* Identifier (measurement, tag key / value, field key); special = characters escaped.
 * Most identifiers are plain ASCII with nothing to escape: those are copied in one
 * go; anything else takes the careful path. */
static void put_ident(lp_out *o, const char *str, const char *special, int measurement)
{
    const unsigned char *t = class_table(), *s = (const unsigned char *)str;
    unsigned char mask = measurement ? C_MEAS : C_KEY;
    size_t n = 0;
    while (s[n] && !(t[s[n]] & mask))
        n++;
    if (s[n] || (measurement && s[0] == '#')) {
        put_ident_slow(o, str, special, measurement);
        return;
    }
    put(o, str, n);
}

static void put_ident_slow(lp_out *o, const char *str, const char *special, int measurement)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), i = 0;
    while (i < n) {
        char a;
        size_t used = next_unit(s + i, n - i, &a, 0);
        if (a == '\n' || a == '\r')
            a = ' ';
        if (a == 0) {
            put(o, (const char *)s + i, used);
        } else {
            if (measurement && i == 0 && a == '#')
                a = '_';
            if (a == '\\') {
                /* A backslash is safe only before an ordinary character. */
                char b = 0;
                size_t u2 = next_unit(s + i + used, n - i - used, &b, 0);
                if (b == '\n' || b == '\r')
                    b = ' ';
                if (u2 == 0 || (b != 0 && strchr(special, b)))
                    a = '/';
            }
            if (strchr(special, a))
                putc_(o, '\\');
            putc_(o, a);
        }
        i += used;
    }
}

static void put_string_value(lp_out *o, const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t n = strlen(str), i = 0;
    putc_(o, '"');
    while (i < n) {
        char a;
        size_t used = next_unit(s + i, n - i, &a, 1);
        if (a == 0)
            put(o, (const char *)s + i, used);
        else if (a == '\n')
            put(o, "\\n", 2);
        else if (a == '\r')
            put(o, "\\r", 2);
        else if (a == '"' || a == '\\') {
            putc_(o, '\\');
            putc_(o, a);
        } else
            putc_(o, a);
        i += used;
    }
    putc_(o, '"');
}

/* Decimal digits of v into the END of tmp (which must hold 20); returns the start. */
static char *u64_digits(char *end, uint64_t v)
{
    char *p = end;
    do {
        *--p = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return p;
}

static void put_i64(lp_out *o, int64_t v)
{
    char tmp[24], *end = tmp + sizeof tmp;
    /* The magnitude as unsigned, so INT64_MIN needs no special case. */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    char *p = u64_digits(end, mag);
    if (v < 0)
        *--p = '-';
    put(o, p, (size_t)(end - p));
}

/* Powers of ten exact in a double (10^22 is the largest). */
static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,
                             1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
#define FAST_DECIMALS 17
#define EXACT_INT_MAX 9007199254740992.0 /* 2^53: every integer up to it is a double */

/* A float that reads back as exactly the same double. Sensor values usually have few
 * decimal places (12.5, 3.6, 0.001): find the smallest d with v = m / 10^d for an
 * integer m < 2^53; then "m with d decimals" is exact, because strtod of that text and
 * the IEEE division m / 10^d (both operands exact) round the same rational number the
 * same way — the check below is that division, so the fast path never prints a value
 * that does not round-trip. Everything else (1/3, 1e300, denormals) takes the rare
 * path: %.15g, %.16g, %.17g, the first that reads back (17 digits always do). */
static void put_float(lp_out *o, double v)
{
    double a = fabs(v);
    for (int d = 0; d <= FAST_DECIMALS && a * p10[d] < EXACT_INT_MAX; d++) {
        double m = nearbyint(a * p10[d]);
        if (m / p10[d] != a)
            continue;
        uint64_t mi = (uint64_t)m;
        while (d > 0 && mi % 10 == 0) { /* the same rational: keep the shorter text */
            mi /= 10;
            d--;
        }
        char tmp[48], *end = tmp + sizeof tmp;
        char *p = u64_digits(end, mi);
        if (d > 0) {
            /* Insert the point before the last d digits, padding with zeros. */
            while (end - p <= d)
                *--p = '0';
            char *dot = end - d;
            memmove(p - 1, p, (size_t)(dot - p));
            p--;
            dot[-1] = '.';
        }
        if (signbit(v))
            *--p = '-';
        put(o, p, (size_t)(end - p));
        return;
    }
    char tmp[40];
    int len = 0;
    for (int prec = 15; prec <= 17; prec++) {
        len = snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (prec == 17 || strtod(tmp, NULL) == v)
            break;
    }
    put(o, tmp, (size_t)len);
}

static int reserved_key(const char *k)
{
    if (k == NULL || k[0] == '\0')
        return 1;
    if (k[0] == 't')
        return strcmp(k, "time") == 0;
    return k[0] == '_' && (strcmp(k, "_field") == 0 || strcmp(k, "_measurement") == 0);
}

int gw_lp_precision_parse(const char *s, gw_lp_precision *out)
{
    static const char *names[] = {"ns", "us", "ms", "s"};
    for (int i = 0; i < 4; i++)
        if (s && strcmp(s, names[i]) == 0) {
            *out = (gw_lp_precision)i;
            return 0;
        }
    return GW_EINVAL;
}

const char *gw_lp_precision_param(gw_lp_precision p, int influx_version)
{
    static const char *v1[] = {"n", "u", "ms", "s"};
    static const char *v2[] = {"ns", "us", "ms", "s"};
    if ((unsigned)p > GW_LP_S)
        p = GW_LP_US;
    return influx_version == 2 ? v2[p] : v1[p];
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b) != 0 && (a < 0))
        q--;
    return q;
}

int64_t gw_lp_timestamp(int64_t ts_us, gw_lp_precision p)
{
    switch (p) {
    case GW_LP_NS:
        if (ts_us > INT64_MAX / 1000 || ts_us < INT64_MIN / 1000)
            return ts_us > 0 ? INT64_MAX : INT64_MIN;
        return ts_us * 1000;
    case GW_LP_MS:
        return floor_div(ts_us, 1000);
    case GW_LP_S:
        return floor_div(ts_us, 1000000);
    case GW_LP_US:
    default:
        return ts_us;
    }
}

/* Count the fields that will be written (skips counted), so an all-skipped point
 * writes nothing. */
static size_t count_good_fields(const gw_lp_field *fields, size_t n, gw_lp_skips *skips)
{
    size_t good = 0;
    for (size_t i = 0; i < n; i++) {
        const gw_lp_field *f = &fields[i];
        if (reserved_key(f->key))
            skips->bad_key++;
        else if (f->type == GW_LP_FLOAT && !isfinite(f->f))
            skips->nonfinite++;
        else
            good++;
    }
    return good;
}

static void put_series(lp_out *o, const char *measurement, const gw_lp_tag *tags, size_t n_tags,
                       gw_lp_skips *skips)
{
    put_ident(o, measurement, ", ", 1);
    for (size_t i = 0; i < n_tags; i++) {
        const gw_lp_tag *t = &tags[i];
        if (reserved_key(t->key) || !t->value || t->value[0] == '\0') {
            skips->bad_key++;
            continue;
        }
        putc_(o, ',');
        put_ident(o, t->key, ",= ", 0);
        putc_(o, '=');
        put_ident(o, t->value, ",= ", 0);
    }
    putc_(o, ' ');
}

/* The fields (those count_good_fields let through), the timestamp and the newline. */
static void put_fields(lp_out *o, const gw_lp_field *fields, size_t n_fields, int64_t ts_us,
                       gw_lp_precision prec)
{
    int first = 1;
    for (size_t i = 0; i < n_fields; i++) {
        const gw_lp_field *f = &fields[i];
        if (reserved_key(f->key) || (f->type == GW_LP_FLOAT && !isfinite(f->f)))
            continue;
        if (!first)
            putc_(o, ',');
        first = 0;
        put_ident(o, f->key, ",= ", 0);
        putc_(o, '=');
        switch (f->type) {
        case GW_LP_INT:
            put_i64(o, f->i);
            putc_(o, 'i');
            break;
        case GW_LP_BOOL:
            if (f->b)
                put(o, "true", 4);
            else
                put(o, "false", 5);
            break;
        case GW_LP_STRING:
            put_string_value(o, f->s ? f->s : "");
            break;
        case GW_LP_FLOAT:
        default:
            put_float(o, f->f);
            break;
        }
    }
    putc_(o, ' ');
    put_i64(o, gw_lp_timestamp(ts_us, prec));
    putc_(o, '\n');
}

int gw_lp_format(char *buf, size_t cap, const gw_lp_point *p, gw_lp_precision prec,
                 gw_lp_skips *skips)
{
    gw_lp_skips dummy = {0};
    if (!skips)
        skips = &dummy;
    if (!p || !p->measurement || p->measurement[0] == '\0')
        return GW_EINVAL;
    if (count_good_fields(p->fields, p->n_fields, skips) == 0)
        return GW_EINVAL;
    lp_out o = {.buf = buf, .cap = cap};
    put_series(&o, p->measurement, p->tags, p->n_tags, skips);
    put_fields(&o, p->fields, p->n_fields, p->ts_us, prec);
    if (o.full)
        return GW_EFULL;
    return (int)o.len;
}

int gw_lp_format_series(char *buf, size_t cap, const char *measurement, const gw_lp_tag *tags,
                        size_t n_tags, gw_lp_skips *skips)
{
    gw_lp_skips dummy = {0};
    if (!skips)
        skips = &dummy;
    if (!measurement || measurement[0] == '\0')
        return GW_EINVAL;
    lp_out o = {.buf = buf, .cap = cap};
    put_series(&o, measurement, tags, n_tags, skips);
    if (o.full)
        return GW_EFULL;
    return (int)o.len;
}

int gw_lp_format_line(char *buf, size_t cap, const char *series, size_t series_len,
                      const gw_lp_field *fields, size_t n_fields, int64_t ts_us,
                      gw_lp_precision prec, gw_lp_skips *skips)
{
    gw_lp_skips dummy = {0};
    if (!skips)
        skips = &dummy;
    if (!series || series_len < 2 || series[series_len - 1] != ' ')
        return GW_EINVAL;
    if (count_good_fields(fields, n_fields, skips) == 0)
        return GW_EINVAL;
    lp_out o = {.buf = buf, .cap = cap};
    put(&o, series, series_len);
    put_fields(&o, fields, n_fields, ts_us, prec);
    if (o.full)
        return GW_EFULL;
    return (int)o.len;
}
