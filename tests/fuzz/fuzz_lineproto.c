/* Fuzz the line-protocol formatter with arbitrary strings in every position: the
 * output must be exactly one line per point (ending in its only '\n'), contain no
 * control character but tabs inside string values, and parse with a small checker of
 * the 1.x grammar (escapes, tag and field separators, typed field values, timestamp).
 * Input layout: bytes split at 0x00 into measurement, tag key, tag value, field key,
 * string value, second tag value; the first 8 bytes also give a double and an int. */
#include "error.h"
#include "influx/lineproto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Identifier ends at an unescaped one of stops; returns index after it or -1. */
static long scan_ident(const char *s, size_t n, size_t i, const char *stops, char *stop)
{
    size_t start = i;
    while (i < n) {
        char c = s[i];
        if ((unsigned char)c < 0x20 || c == 0x7f)
            return -1; /* no control character in an identifier */
        if (c == '\\' && i + 1 < n && strchr(",= ", s[i + 1])) {
            i += 2;
            continue;
        }
        if (c == '\\' && (i + 1 == n || strchr(stops, s[i + 1])))
            return -1; /* a bare backslash before a separator: ambiguous in 1.x */
        if (strchr(stops, c)) {
            *stop = c;
            return i == start ? -1 : (long)(i + 1);
        }
        i++;
    }
    return -1;
}

static int check_value(const char *s, size_t n, size_t *i)
{
    if (s[*i] == '"') {
        for (size_t k = *i + 1; k < n; k++) {
            if (((unsigned char)s[k] < 0x20 && s[k] != '\t') || s[k] == 0x7f)
                return -1; /* only tabs inside quotes */
            if (s[k] == '\\') {
                k++;
                continue;
            }
            if (s[k] == '"') {
                *i = k + 1;
                return 0;
            }
        }
        return -1;
    }
    if (!strncmp(s + *i, "true", 4)) {
        *i += 4;
        return 0;
    }
    if (!strncmp(s + *i, "false", 5)) {
        *i += 5;
        return 0;
    }
    char *end;
    char tmp[64];
    size_t k = 0;
    while (*i + k < n && k < 63 && strchr("0123456789+-.eEi", s[*i + k]))
        k++;
    memcpy(tmp, s + *i, k);
    tmp[k] = '\0';
    if (k && tmp[k - 1] == 'i') {
        tmp[k - 1] = '\0';
        strtoll(tmp, &end, 10);
    } else
        strtod(tmp, &end);
    if (k == 0 || *end != '\0' || strstr(tmp, "nan") || strstr(tmp, "inf"))
        return -1;
    *i += k;
    return 0;
}

static void check_line(const char *s, size_t n)
{
    if (n == 0 || s[n - 1] != '\n' || memchr(s, '\n', n - 1) || s[0] == '#')
        abort();
    n--;
    char stop;
    long i = scan_ident(s, n, 0, ", ", &stop);
    if (i < 0)
        abort();
    while (stop == ',') { /* tags */
        if ((i = scan_ident(s, n, (size_t)i, "=", &stop)) < 0)
            abort();
        if ((i = scan_ident(s, n, (size_t)i, ", ", &stop)) < 0)
            abort();
    }
    for (;;) { /* fields */
        if ((i = scan_ident(s, n, (size_t)i, "=", &stop)) < 0)
            abort();
        size_t k = (size_t)i;
        if (check_value(s, n, &k) != 0 || k >= n)
            abort();
        if (s[k] == ' ') {
            i = (long)k + 1;
            break;
        }
        if (s[k] != ',')
            abort();
        i = (long)k + 1;
    }
    if ((size_t)i >= n)
        abort();
    for (size_t k = (size_t)i; k < n; k++)
        if (!(s[k] >= '0' && s[k] <= '9') && !(k == (size_t)i && s[k] == '-'))
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *part[6] = {"m", "t", "v", "f", "s", "w"};
    size_t np = 0, start = 0;
    for (size_t i = 0; i <= size && np < 6; i++)
        if (i == size || copy[i] == '\0') {
            copy[i] = '\0';
            part[np++] = copy + start;
            start = i + 1;
        }
    double d = 0;
    int64_t iv = 0;
    if (size >= 8) {
        memcpy(&d, data, 8);
        memcpy(&iv, data, 8);
    }
    gw_lp_tag tags[2] = {{part[1], part[2]}, {"k2", part[5]}};
    gw_lp_field f[4] = {{.key = part[3], .type = GW_LP_FLOAT, .f = d},
                        {.key = "s", .type = GW_LP_STRING, .s = part[4]},
                        {.key = "i", .type = GW_LP_INT, .i = iv},
                        {.key = part[4], .type = GW_LP_BOOL, .b = (int)(size & 1)}};
    gw_lp_point p = {part[0], tags, 2, f, 4, iv};
    static char out[8192];
    for (int prec = 0; prec < 4; prec++) {
        gw_lp_skips sk = {0};
        int n = gw_lp_format(out, sizeof out, &p, (gw_lp_precision)prec, &sk);
        if (n > 0)
            check_line(out, (size_t)n);
        else if (n != GW_EINVAL && n != GW_EFULL)
            abort();
        /* Any smaller buffer either fits the same line or says GW_EFULL. */
        if (n > 1) {
            static char small[8192];
            int m = gw_lp_format(small, (size_t)n - 1, &p, (gw_lp_precision)prec, NULL);
            if (m != GW_EFULL)
                abort();
        }
    }
    free(copy);
    return 0;
}
