#include "influx/lineproto.h"

#include "error.h"

#include <math.h>
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

/* Identifier (measurement, tag key / value, field key); special = characters escaped. */
static void put_ident(lp_out *o, const char *str, const char *special, int measurement)
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

static void put_float(lp_out *o, double v)
{
    char tmp[40];
    /* Shortest of %.15g / %.17g that reads back to the same double. */
    int len = snprintf(tmp, sizeof tmp, "%.15g", v);
    if (strtod(tmp, NULL) != v)
        len = snprintf(tmp, sizeof tmp, "%.17g", v);
    put(o, tmp, (size_t)len);
}

static int reserved_key(const char *k)
{
    return k == NULL || k[0] == '\0' || strcmp(k, "time") == 0 || strcmp(k, "_field") == 0 ||
           strcmp(k, "_measurement") == 0;
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

int gw_lp_format(char *buf, size_t cap, const gw_lp_point *p, gw_lp_precision prec,
                 gw_lp_skips *skips)
{
    gw_lp_skips dummy = {0};
    if (!skips)
        skips = &dummy;
    if (!p || !p->measurement || p->measurement[0] == '\0')
        return GW_EINVAL;

    /* Count what will be written first, so an all-skipped point writes nothing. */
    size_t good_fields = 0;
    for (size_t i = 0; i < p->n_fields; i++) {
        const gw_lp_field *f = &p->fields[i];
        if (reserved_key(f->key)) {
            skips->bad_key++;
            continue;
        }
        if (f->type == GW_LP_FLOAT && !isfinite(f->f)) {
            skips->nonfinite++;
            continue;
        }
        good_fields++;
    }
    if (good_fields == 0)
        return GW_EINVAL;

    lp_out o = {.buf = buf, .cap = cap};
    put_ident(&o, p->measurement, ", ", 1);
    for (size_t i = 0; i < p->n_tags; i++) {
        const gw_lp_tag *t = &p->tags[i];
        if (reserved_key(t->key) || !t->value || t->value[0] == '\0') {
            skips->bad_key++;
            continue;
        }
        putc_(&o, ',');
        put_ident(&o, t->key, ",= ", 0);
        putc_(&o, '=');
        put_ident(&o, t->value, ",= ", 0);
    }
    putc_(&o, ' ');
    int first = 1;
    for (size_t i = 0; i < p->n_fields; i++) {
        const gw_lp_field *f = &p->fields[i];
        if (reserved_key(f->key) || (f->type == GW_LP_FLOAT && !isfinite(f->f)))
            continue;
        if (!first)
            putc_(&o, ',');
        first = 0;
        put_ident(&o, f->key, ",= ", 0);
        putc_(&o, '=');
        char tmp[32];
        switch (f->type) {
        case GW_LP_INT:
            put(&o, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lldi", (long long)f->i));
            break;
        case GW_LP_BOOL:
            if (f->b)
                put(&o, "true", 4);
            else
                put(&o, "false", 5);
            break;
        case GW_LP_STRING:
            put_string_value(&o, f->s ? f->s : "");
            break;
        case GW_LP_FLOAT:
        default:
            put_float(&o, f->f);
            break;
        }
    }
    char ts[32];
    int n = snprintf(ts, sizeof ts, " %lld\n", (long long)gw_lp_timestamp(p->ts_us, prec));
    put(&o, ts, (size_t)n);
    if (o.full)
        return GW_EFULL;
    return (int)o.len;
}
