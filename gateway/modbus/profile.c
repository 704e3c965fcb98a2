/* Device profiles: parse, validate, decode and encode. See profile.h for the contract
 * and docs/profiles.md for the file format. */
#include "profile.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../alloc.h"
#include "../error.h"

/* ---- names ---------------------------------------------------------------------- */

static const char *const table_names[GW_MB__TABLES] = {"coil", "discrete", "holding", "input"};
static const char *const type_names[GW_PT__TYPES] = {
    "bool", "bit", "u16", "i16", "u32", "i32", "u64", "i64",
    "f32", "f64", "string", "bcd", "enum"};
static const char *const order_names[GW_BO__COUNT] = {"ABCD", "CDAB", "BADC", "DCBA"};

const char *gw_mb_table_name(gw_mb_table t)
{
    return (unsigned)t < GW_MB__TABLES ? table_names[t] : "?";
}

int gw_mb_table_parse(const char *s, gw_mb_table *out)
{
    if (!s)
        return GW_EINVAL;
    for (int i = 0; i < GW_MB__TABLES; i++)
        if (strcmp(s, table_names[i]) == 0) {
            *out = (gw_mb_table)i;
            return 0;
        }
    /* Common synonyms seen in datasheets and other gateways' configs. */
    if (strcmp(s, "coils") == 0) *out = GW_MB_COIL;
    else if (strcmp(s, "discrete_input") == 0 || strcmp(s, "discrete_inputs") == 0) *out = GW_MB_DISCRETE;
    else if (strcmp(s, "holding_register") == 0 || strcmp(s, "holding_registers") == 0) *out = GW_MB_HOLDING;
    else if (strcmp(s, "input_register") == 0 || strcmp(s, "input_registers") == 0) *out = GW_MB_INPUT;
    else return GW_EINVAL;
    return 0;
}

int gw_mb_table_is_bits(gw_mb_table t)
{
    return t == GW_MB_COIL || t == GW_MB_DISCRETE;
}

const char *gw_point_type_name(gw_point_type t)
{
    return (unsigned)t < GW_PT__TYPES ? type_names[t] : "?";
}

int gw_point_type_parse(const char *s, gw_point_type *out)
{
    if (!s)
        return GW_EINVAL;
    for (int i = 0; i < GW_PT__TYPES; i++)
        if (strcmp(s, type_names[i]) == 0) {
            *out = (gw_point_type)i;
            return 0;
        }
    return GW_EINVAL;
}

const char *gw_byte_order_name(gw_byte_order o)
{
    return (unsigned)o < GW_BO__COUNT ? order_names[o] : "?";
}

int gw_byte_order_parse(const char *s, gw_byte_order *out)
{
    if (!s)
        return GW_EINVAL;
    for (int i = 0; i < GW_BO__COUNT; i++)
        if (strcmp(s, order_names[i]) == 0) {
            *out = (gw_byte_order)i;
            return 0;
        }
    return GW_EINVAL;
}

/* Registers a fixed-size type occupies; 0 for the variable ones (string, bcd). */
static unsigned type_words(gw_point_type t)
{
    switch (t) {
    case GW_PT_BOOL: case GW_PT_BIT: case GW_PT_U16: case GW_PT_I16: case GW_PT_ENUM:
        return 1;
    case GW_PT_U32: case GW_PT_I32: case GW_PT_F32:
        return 2;
    case GW_PT_U64: case GW_PT_I64: case GW_PT_F64:
        return 4;
    default:
        return 0;
    }
}

static int type_is_integer(gw_point_type t)
{
    return t == GW_PT_U16 || t == GW_PT_I16 || t == GW_PT_U32 || t == GW_PT_I32 ||
           t == GW_PT_U64 || t == GW_PT_I64;
}

static int type_is_float(gw_point_type t)
{
    return t == GW_PT_F32 || t == GW_PT_F64;
}

/* ---- byte order ------------------------------------------------------------------- */

/* Turn n registers as received into the value's big-endian bytes (or back: each of the
 * four permutations is its own inverse). n <= 4 for numbers, <= 16 for strings. */
static void wire_to_be(const uint16_t *w, unsigned n, gw_byte_order o, uint8_t *out)
{
    uint8_t b[2 * GW_PROFILE_MAX_STRING_REGS];
    for (unsigned i = 0; i < n; i++) {
        b[2 * i] = (uint8_t)(w[i] >> 8);
        b[2 * i + 1] = (uint8_t)(w[i] & 0xFF);
    }
    unsigned nb = 2 * n;
    for (unsigned i = 0; i < nb; i++) {
        unsigned word = i / 2, byte = i % 2, src;
        switch (o) {
        case GW_BO_CDAB: src = 2 * (n - 1 - word) + byte; break;
        case GW_BO_BADC: src = 2 * word + (1 - byte); break;
        case GW_BO_DCBA: src = nb - 1 - i; break;
        default: src = i; break;
        }
        out[i] = b[src];
    }
}

/* The value of n (1..4) registers in wire order as one big-endian integer: the same
 * bytes as wire_to_be read as one number, without the byte array (every cycle decodes every
 * point through here). */
static uint64_t wire_to_u64(const uint16_t *w, unsigned n, gw_byte_order o)
{
    int rev_words = o == GW_BO_CDAB || o == GW_BO_DCBA;
    int swap_bytes = o == GW_BO_BADC || o == GW_BO_DCBA;
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++) {
        uint16_t x = w[rev_words ? n - 1 - i : i];
        if (swap_bytes)
            x = (uint16_t)((x << 8) | (x >> 8));
        v = (v << 16) | x;
    }
    return v;
}

static void be_to_wire(const uint8_t *be, unsigned n, gw_byte_order o, uint16_t *w)
{
    uint16_t tmp[GW_PROFILE_MAX_STRING_REGS] = {0};
    for (unsigned i = 0; i < n; i++)
        tmp[i] = (uint16_t)((be[2 * i] << 8) | be[2 * i + 1]);
    uint8_t b[2 * GW_PROFILE_MAX_STRING_REGS];
    wire_to_be(tmp, n, o, b); /* involution */
    for (unsigned i = 0; i < n; i++)
        w[i] = (uint16_t)((b[2 * i] << 8) | b[2 * i + 1]);
}

static void u64_to_be(uint64_t v, unsigned nbytes, uint8_t *b)
{
    for (unsigned i = nbytes; i-- > 0;) {
        b[i] = (uint8_t)(v & 0xFF);
        v >>= 8;
    }
}

static const double pow10_tab[10] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9};

/* ---- decode ----------------------------------------------------------------------- */

static int marker_hit(const gw_profile_point *pt, uint64_t raw, double fval)
{
    for (size_t i = 0; i < pt->n_invalid; i++) {
        if (type_is_float(pt->type)) {
            if (fval == pt->invalid_value[i])
                return 1;
        } else if (raw == pt->invalid_raw[i]) {
            return 1;
        }
    }
    return 0;
}

/* integer: num is an integer register value, so the result has at most the decimals
 * of scale, offset and dp, and is rounded to them (floats keep their own digits). */
static void finish_number(const gw_profile_point *pt, double num, int dp, int integer,
                          gw_point_value *out)
{
    double v = num * pt->scale;
    if (pt->has_dp)
        v /= pow10_tab[dp];
    v += pt->offset;
    if (integer && pt->round_dp >= 0)
        v = gw_round_decimals(v, pt->round_dp + (pt->has_dp ? dp : 0));
    out->type = GW_V_NUMBER;
    out->value = v;
    if (!isfinite(v) || (pt->has_min && v < pt->min) || (pt->has_max && v > pt->max))
        out->quality = GW_Q_OUT_OF_RANGE;
}

/* A float32 as the shortest decimal that reads back as the same float: 230.2, not
 * 230.1999969482422 (what the device meant; the same float when written back). */
static double f32_decimal(float f)
{
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        if (strtof(buf, NULL) == f)
            return strtod(buf, NULL);
    }
    return f;
}

int gw_profile_decode_point(const gw_profile_point *pt, const uint16_t *raw, size_t n, int dp,
                            gw_point_value *out)
{
    if (!pt || !raw || !out || n < pt->count || pt->count == 0)
        return GW_EINVAL;
    /* No memset of the whole value (its text is 48 bytes): only text types fill text. */
    out->type = GW_V_NUMBER;
    out->value = 0;
    out->text[0] = '\0';
    out->quality = GW_Q_GOOD;
    out->raw = 0;
    if (pt->has_dp && (dp < 0 || dp > 9)) {
        out->quality = GW_Q_DECODE_ERROR;
        return 0;
    }

    switch (pt->type) {
    case GW_PT_BOOL:
        out->type = GW_V_BOOL;
        out->raw = raw[0];
        out->value = raw[0] != 0;
        if (marker_hit(pt, raw[0], 0))
            out->quality = GW_Q_OUT_OF_RANGE;
        return 0;
    case GW_PT_BIT: {
        uint16_t w = (uint16_t)wire_to_u64(raw, 1, pt->order);
        out->type = GW_V_BOOL;
        out->raw = w;
        out->value = (w >> pt->bit) & 1u;
        if (marker_hit(pt, w, 0))
            out->quality = GW_Q_OUT_OF_RANGE;
        return 0;
    }
    case GW_PT_U16: case GW_PT_I16: case GW_PT_U32: case GW_PT_I32:
    case GW_PT_U64: case GW_PT_I64: {
        uint64_t r = wire_to_u64(raw, pt->count, pt->order);
        out->raw = r;
        double num;
        switch (pt->type) {
        case GW_PT_I16: num = (double)(int16_t)(uint16_t)r; break;
        case GW_PT_I32: num = (double)(int32_t)(uint32_t)r; break;
        case GW_PT_I64: num = (double)(int64_t)r; break;
        default: num = (double)r; break;
        }
        finish_number(pt, num, dp, 1, out);
        if (marker_hit(pt, r, 0))
            out->quality = GW_Q_OUT_OF_RANGE;
        return 0;
    }
    case GW_PT_F32: case GW_PT_F64: {
        uint64_t r = wire_to_u64(raw, pt->count, pt->order);
        out->raw = r;
        double f;
        if (pt->type == GW_PT_F32) {
            uint32_t u = (uint32_t)r;
            float ff;
            memcpy(&ff, &u, sizeof ff);
            f = isfinite(ff) ? f32_decimal(ff) : ff;
        } else {
            memcpy(&f, &r, sizeof f);
        }
        if (!isfinite(f)) {
            out->value = NAN;
            out->quality = GW_Q_OUT_OF_RANGE;
            return 0;
        }
        finish_number(pt, f, dp, 0, out);
        if (marker_hit(pt, r, f))
            out->quality = GW_Q_OUT_OF_RANGE;
        return 0;
    }
    case GW_PT_BCD: {
        unsigned words = pt->count;
        uint64_t r = wire_to_u64(raw, words, pt->order);
        out->raw = r;
        uint64_t num = 0;
        for (int shift = (int)(words * 16) - 4; shift >= 0; shift -= 4) {
            unsigned d = (unsigned)((r >> shift) & 0xF);
            if (d > 9) {
                out->quality = GW_Q_DECODE_ERROR;
                return 0;
            }
            num = num * 10 + d;
        }
        finish_number(pt, (double)num, dp, 1, out);
        if (marker_hit(pt, r, 0))
            out->quality = GW_Q_OUT_OF_RANGE;
        return 0;
    }
    case GW_PT_ENUM: {
        uint16_t w = (uint16_t)wire_to_u64(raw, 1, pt->order);
        memset(out->text, 0, sizeof out->text);
        out->raw = w;
        out->value = w;
        out->type = GW_V_TEXT;
        for (size_t i = 0; i < pt->n_enums; i++)
            if (pt->enums[i].raw == w) {
                snprintf(out->text, sizeof out->text, "%s", pt->enums[i].label);
                if (marker_hit(pt, w, 0))
                    out->quality = GW_Q_OUT_OF_RANGE;
                return 0;
            }
        snprintf(out->text, sizeof out->text, "%u", (unsigned)w);
        out->quality = GW_Q_OUT_OF_RANGE;
        return 0;
    }
    case GW_PT_STRING: {
        unsigned words = pt->count;
        /* Strings are byte sequences: only the byte swap inside a register applies. */
        gw_byte_order o = (pt->order == GW_BO_BADC || pt->order == GW_BO_DCBA) ? GW_BO_BADC
                                                                               : GW_BO_ABCD;
        uint8_t be[2 * GW_PROFILE_MAX_STRING_REGS];
        memset(out->text, 0, sizeof out->text);
        wire_to_be(raw, words, o, be);
        out->type = GW_V_TEXT;
        size_t len = 0;
        for (unsigned i = 0; i < 2 * words; i++) {
            if (be[i] == 0)
                break;
            if (be[i] < 0x20 || be[i] > 0x7E) {
                out->quality = GW_Q_DECODE_ERROR;
                out->text[0] = '\0';
                return 0;
            }
            if (len + 1 < sizeof out->text)
                out->text[len++] = (char)be[i];
        }
        while (len > 0 && out->text[len - 1] == ' ')
            len--;
        out->text[len] = '\0';
        out->value = 0;
        return 0;
    }
    default:
        return GW_EINVAL;
    }
}

/* ---- encode ----------------------------------------------------------------------- */

int gw_profile_encode_point(const gw_profile_point *pt, const gw_point_value *in, int dp,
                            uint16_t *raw, size_t n)
{
    if (!pt || !in || !raw || n < pt->count || pt->count == 0)
        return GW_EINVAL;
    if (pt->has_dp && (dp < 0 || dp > 9))
        return GW_EINVAL;
    uint8_t be[2 * GW_PROFILE_MAX_STRING_REGS];
    unsigned words = pt->count;

    if (pt->type == GW_PT_BOOL) {
        raw[0] = in->value != 0 ? 1 : 0;
        return 0;
    }
    if (pt->type == GW_PT_BIT) {
        wire_to_be(raw, 1, pt->order, be);
        uint16_t w = (uint16_t)((be[0] << 8) | be[1]);
        if (in->value != 0)
            w = (uint16_t)(w | (1u << pt->bit));
        else
            w = (uint16_t)(w & ~(1u << pt->bit));
        u64_to_be(w, 2, be);
        be_to_wire(be, 1, pt->order, raw);
        return 0;
    }
    if (pt->type == GW_PT_STRING) {
        memset(be, 0, sizeof be);
        size_t len = strlen(in->text);
        if (len > 2 * words)
            return GW_EINVAL;
        memcpy(be, in->text, len);
        gw_byte_order o = (pt->order == GW_BO_BADC || pt->order == GW_BO_DCBA) ? GW_BO_BADC
                                                                               : GW_BO_ABCD;
        be_to_wire(be, words, o, raw);
        return 0;
    }
    if (pt->type == GW_PT_ENUM) {
        long code = -1;
        if (in->type == GW_V_TEXT && in->text[0]) {
            for (size_t i = 0; i < pt->n_enums; i++)
                if (strcmp(pt->enums[i].label, in->text) == 0)
                    code = pt->enums[i].raw;
            if (code < 0)
                return GW_ENOTFOUND;
        } else {
            if (!(in->value >= 0 && in->value <= 65535))
                return GW_EINVAL;
            code = lround(in->value);
        }
        u64_to_be((uint64_t)code, 2, be);
        be_to_wire(be, 1, pt->order, raw);
        return 0;
    }

    /* Numbers: invert value = num * scale / 10^dp + offset. */
    if (!isfinite(in->value) && !type_is_float(pt->type))
        return GW_EINVAL;
    double num = in->value - pt->offset;
    if (pt->has_dp)
        num *= pow10_tab[dp];
    num /= pt->scale;

    uint64_t r;
    if (pt->type == GW_PT_F32) {
        float f = (float)num;
        uint32_t u;
        memcpy(&u, &f, sizeof u);
        r = u;
    } else if (pt->type == GW_PT_F64) {
        memcpy(&r, &num, sizeof r);
    } else {
        double rn = nearbyint(num);
        switch (pt->type) {
        case GW_PT_U16: if (rn < 0 || rn > 65535) return GW_EINVAL; r = (uint64_t)rn; break;
        case GW_PT_I16: if (rn < -32768 || rn > 32767) return GW_EINVAL;
                        r = (uint16_t)(int16_t)rn; break;
        case GW_PT_U32: if (rn < 0 || rn > 4294967295.0) return GW_EINVAL; r = (uint64_t)rn; break;
        case GW_PT_I32: if (rn < -2147483648.0 || rn > 2147483647.0) return GW_EINVAL;
                        r = (uint32_t)(int32_t)rn; break;
        case GW_PT_U64: if (rn < 0 || rn >= 18446744073709551616.0) return GW_EINVAL;
                        r = (uint64_t)rn; break;
        case GW_PT_I64: if (rn < -9223372036854775808.0 || rn >= 9223372036854775808.0)
                            return GW_EINVAL;
                        r = (uint64_t)(int64_t)rn; break;
        case GW_PT_BCD: {
            double lim = words == 1 ? 9999 : 99999999;
            if (rn < 0 || rn > lim)
                return GW_EINVAL;
            uint64_t v = (uint64_t)rn, b = 0;
            for (unsigned i = 0; i < 4 * words; i++) {
                b |= (v % 10) << (4 * i);
                v /= 10;
            }
            r = b;
            break;
        }
        default:
            return GW_EINVAL;
        }
    }
    u64_to_be(r, 2 * words, be);
    be_to_wire(be, words, pt->order, raw);
    return 0;
}

/* ---- parse ------------------------------------------------------------------------ */

typedef struct pctx {
    const char *file;
    gw_cfgerr *errs;
    int bad;
} pctx;

#define PERR(c, path, ...) do { gw_cfgerr_add((c)->errs, (c)->file, (path), __VA_ARGS__); (c)->bad = 1; } while (0)

static int check_keys(pctx *c, const cJSON *obj, const char *path, const char *const *known)
{
    int ok = 1;
    for (const cJSON *it = obj->child; it; it = it->next) {
        int found = 0;
        for (size_t i = 0; known[i]; i++)
            if (it->string && strcmp(it->string, known[i]) == 0)
                found = 1;
        if (!found) {
            char p[160];
            snprintf(p, sizeof p, "%s%s%s", path, path[0] ? "." : "", it->string ? it->string : "?");
            /* Suggest a known key that differs only in case or by a plural 's'. */
            const char *sugg = NULL;
            for (size_t i = 0; known[i] && it->string; i++) {
                size_t a = strlen(known[i]), b = strlen(it->string);
                if (strcasecmp(known[i], it->string) == 0 ||
                    (a + 1 == b && strncmp(known[i], it->string, a) == 0) ||
                    (b + 1 == a && strncmp(known[i], it->string, b) == 0))
                    sugg = known[i];
            }
            if (sugg)
                PERR(c, p, "unknown key (did you mean \"%s\"?)", sugg);
            else
                PERR(c, p, "unknown key");
            ok = 0;
        }
    }
    return ok;
}

/* An unsigned integer given as a JSON number or a "0x..."/decimal string. */
static int get_uint(const cJSON *v, uint64_t max, uint64_t *out)
{
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d < 0 || d != floor(d) || d > (double)max)
            return GW_EINVAL;
        *out = (uint64_t)d;
        return 0;
    }
    if (cJSON_IsString(v) && v->valuestring[0]) {
        const char *s = v->valuestring;
        if (!isdigit((unsigned char)s[0]))
            return GW_EINVAL;
        char *end;
        errno = 0;
        unsigned long long u = strtoull(s, &end, 0);
        if (errno || *end || u > max)
            return GW_EINVAL;
        *out = u;
        return 0;
    }
    return GW_EINVAL;
}

static void copy_str(char *dst, size_t n, const char *src)
{
    snprintf(dst, n, "%s", src);
}

static int field_name_ok(const char *s)
{
    if (!s[0] || !(islower((unsigned char)s[0])))
        return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

/* "30001" style reference to table + address. */
static int parse_register_ref(const char *s, gw_mb_table *t, uint16_t *addr)
{
    size_t len = strlen(s);
    if (len != 5 && len != 6)
        return GW_EINVAL;
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]))
            return GW_EINVAL;
    switch (s[0]) {
    case '0': *t = GW_MB_COIL; break;
    case '1': *t = GW_MB_DISCRETE; break;
    case '3': *t = GW_MB_INPUT; break;
    case '4': *t = GW_MB_HOLDING; break;
    default: return GW_EINVAL;
    }
    long n = strtol(s + 1, NULL, 10);
    if (n < 1 || n > (len == 5 ? 9999 : 65536))
        return GW_EINVAL;
    *addr = (uint16_t)(n - 1);
    return 0;
}

static const char *const point_keys[] = {
    "field", "table", "address", "register", "type", "byte_order", "bit", "count", "scale",
    "offset", "unit", "decimal_register", "invalid", "min", "max", "enum", "description",
    "sim", NULL};

static int parse_point(pctx *c, const cJSON *pj, const char *path, gw_profile *prof,
                       gw_profile_point *pt)
{
    char p[192];
    if (!cJSON_IsObject(pj)) {
        PERR(c, path, "must be an object");
        return 0;
    }
    check_keys(c, pj, path, point_keys);
    pt->scale = 1;
    pt->order = prof->order;

    const cJSON *v = cJSON_GetObjectItemCaseSensitive(pj, "field");
    snprintf(p, sizeof p, "%s.field", path);
    if (!cJSON_IsString(v))
        PERR(c, p, "required string");
    else if (!field_name_ok(v->valuestring) || strlen(v->valuestring) >= GW_FIELD_MAX)
        PERR(c, p, "must match [a-z][a-z0-9_]* and be at most %d bytes, got \"%s\"",
             GW_FIELD_MAX - 1, v->valuestring);
    else
        copy_str(pt->field, sizeof pt->field, v->valuestring);

    int have_table = 0;
    v = cJSON_GetObjectItemCaseSensitive(pj, "table");
    snprintf(p, sizeof p, "%s.table", path);
    if (v) {
        if (!cJSON_IsString(v) || gw_mb_table_parse(v->valuestring, &pt->table) != 0)
            PERR(c, p, "must be \"coil\", \"discrete\", \"holding\" or \"input\"");
        else
            have_table = 1;
    }

    const cJSON *va = cJSON_GetObjectItemCaseSensitive(pj, "address");
    const cJSON *vr = cJSON_GetObjectItemCaseSensitive(pj, "register");
    if (va && vr) {
        snprintf(p, sizeof p, "%s.register", path);
        PERR(c, p, "give either \"address\" (0-based PDU address) or \"register\" (\"40001\" style), not both");
    } else if (vr) {
        snprintf(p, sizeof p, "%s.register", path);
        gw_mb_table t;
        uint16_t a;
        if (!cJSON_IsString(vr) || parse_register_ref(vr->valuestring, &t, &a) != 0) {
            PERR(c, p, "must be a 5- or 6-digit reference string like \"30001\" or \"400001\"");
        } else if (have_table && t != pt->table) {
            PERR(c, p, "\"%s\" is a %s reference but table is \"%s\"", vr->valuestring,
                 gw_mb_table_name(t), gw_mb_table_name(pt->table));
        } else {
            pt->table = t;
            pt->address = a;
            have_table = 1;
        }
    } else if (va) {
        snprintf(p, sizeof p, "%s.address", path);
        uint64_t a;
        if (get_uint(va, 65535, &a) != 0)
            PERR(c, p, "must be 0..65535 (0-based PDU address; number or \"0x...\")");
        else
            pt->address = (uint16_t)a;
    } else {
        PERR(c, path, "\"address\" (0-based) or \"register\" (\"40001\" style) is required");
    }
    if (!have_table && !vr) {
        snprintf(p, sizeof p, "%s.table", path);
        if (!v)
            PERR(c, p, "required (\"coil\", \"discrete\", \"holding\" or \"input\")");
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "type");
    snprintf(p, sizeof p, "%s.type", path);
    int have_type = 0;
    if (!cJSON_IsString(v)) {
        PERR(c, p, "required string");
    } else if (gw_point_type_parse(v->valuestring, &pt->type) != 0) {
        const char *s = v->valuestring;
        const char *hint = strcmp(s, "float") == 0 || strcmp(s, "float32") == 0 ? "f32"
                         : strcmp(s, "double") == 0 || strcmp(s, "float64") == 0 ? "f64"
                         : strcmp(s, "uint16") == 0 ? "u16" : strcmp(s, "int16") == 0 ? "i16"
                         : strcmp(s, "uint32") == 0 ? "u32" : strcmp(s, "int32") == 0 ? "i32"
                         : strcmp(s, "boolean") == 0 ? "bool" : NULL;
        if (hint)
            PERR(c, p, "unknown type \"%s\" (did you mean \"%s\"?)", s, hint);
        else
            PERR(c, p, "unknown type \"%s\" (bool, bit, u16, i16, u32, i32, u64, i64, f32, f64, string, bcd, enum)", s);
    } else {
        have_type = 1;
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "byte_order");
    if (v) {
        snprintf(p, sizeof p, "%s.byte_order", path);
        if (!cJSON_IsString(v) || gw_byte_order_parse(v->valuestring, &pt->order) != 0)
            PERR(c, p, "must be \"ABCD\", \"CDAB\", \"BADC\" or \"DCBA\"");
    }

    if (have_type && have_table) {
        int bits = gw_mb_table_is_bits(pt->table);
        snprintf(p, sizeof p, "%s.type", path);
        if (bits && pt->type != GW_PT_BOOL)
            PERR(c, p, "a %s holds single bits: type must be \"bool\"", gw_mb_table_name(pt->table));
    }

    /* count */
    v = cJSON_GetObjectItemCaseSensitive(pj, "count");
    snprintf(p, sizeof p, "%s.count", path);
    if (have_type) {
        unsigned fixed = type_words(pt->type);
        uint64_t cnt = 0;
        if (v && get_uint(v, 65535, &cnt) != 0) {
            PERR(c, p, "must be a positive integer");
            cnt = 0;
        }
        if (pt->type == GW_PT_STRING) {
            if (!v) cnt = 1;
            if (cnt < 1 || cnt > GW_PROFILE_MAX_STRING_REGS)
                PERR(c, p, "string registers must be 1..%d", GW_PROFILE_MAX_STRING_REGS);
            else
                pt->count = (uint16_t)cnt;
        } else if (pt->type == GW_PT_BCD) {
            if (!v) cnt = 1;
            if (cnt != 1 && cnt != 2)
                PERR(c, p, "bcd is 1 register (4 digits) or 2 (8 digits)");
            else
                pt->count = (uint16_t)cnt;
        } else {
            if (v && cnt != fixed)
                PERR(c, p, "type %s occupies %u register(s), not %u", gw_point_type_name(pt->type),
                     fixed, (unsigned)cnt);
            pt->count = (uint16_t)fixed;
        }
        if (pt->count && (unsigned)pt->address + pt->count > 65536u) {
            snprintf(p, sizeof p, "%s.address", path);
            PERR(c, p, "point runs past address 65535");
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "bit");
    snprintf(p, sizeof p, "%s.bit", path);
    if (have_type && pt->type == GW_PT_BIT) {
        uint64_t b;
        if (!v || get_uint(v, 15, &b) != 0)
            PERR(c, p, "type bit needs \"bit\": 0..15 (0 = least significant)");
        else
            pt->bit = (int)b;
        if (have_table && gw_mb_table_is_bits(pt->table))
            PERR(c, p, "bit of a register needs table holding or input");
    } else if (v) {
        PERR(c, p, "only for type \"bit\"");
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "scale");
    if (v) {
        snprintf(p, sizeof p, "%s.scale", path);
        if (!cJSON_IsNumber(v) || v->valuedouble == 0 || !isfinite(v->valuedouble))
            PERR(c, p, "must be a non-zero number");
        else
            pt->scale = v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(pj, "offset");
    if (v) {
        snprintf(p, sizeof p, "%s.offset", path);
        if (!cJSON_IsNumber(v))
            PERR(c, p, "must be a number");
        else
            pt->offset = v->valuedouble;
    }
    int ds = gw_decimals(pt->scale), doff = gw_decimals(pt->offset);
    pt->round_dp = ds < 0 || doff < 0 ? -1 : ds > doff ? ds : doff;
    v = cJSON_GetObjectItemCaseSensitive(pj, "unit");
    if (v) {
        snprintf(p, sizeof p, "%s.unit", path);
        if (!cJSON_IsString(v) || strlen(v->valuestring) >= GW_UNIT_MAX)
            PERR(c, p, "must be a string of at most %d bytes", GW_UNIT_MAX - 1);
        else
            copy_str(pt->unit, sizeof pt->unit, v->valuestring);
    }
    const char *lim[2] = {"min", "max"};
    for (int i = 0; i < 2; i++) {
        v = cJSON_GetObjectItemCaseSensitive(pj, lim[i]);
        if (!v)
            continue;
        snprintf(p, sizeof p, "%s.%s", path, lim[i]);
        if (!cJSON_IsNumber(v)) {
            PERR(c, p, "must be a number");
        } else if (i == 0) {
            pt->has_min = 1;
            pt->min = v->valuedouble;
        } else {
            pt->has_max = 1;
            pt->max = v->valuedouble;
        }
    }
    if (pt->has_min && pt->has_max && pt->min > pt->max) {
        snprintf(p, sizeof p, "%s.min", path);
        PERR(c, p, "min %g is above max %g", pt->min, pt->max);
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "decimal_register");
    if (v) {
        snprintf(p, sizeof p, "%s.decimal_register", path);
        uint64_t a;
        pt->dp_table = have_table && !gw_mb_table_is_bits(pt->table) ? pt->table : GW_MB_HOLDING;
        if (cJSON_IsObject(v)) {
            static const char *const dk[] = {"table", "address", NULL};
            check_keys(c, v, p, dk);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(v, "table");
            if (t && (!cJSON_IsString(t) || gw_mb_table_parse(t->valuestring, &pt->dp_table) != 0 ||
                      gw_mb_table_is_bits(pt->dp_table)))
                PERR(c, p, "table must be \"holding\" or \"input\"");
            v = cJSON_GetObjectItemCaseSensitive(v, "address");
        }
        if (!v || get_uint(v, 65535, &a) != 0)
            PERR(c, p, "must be a 0-based address (same table as the point) or {\"table\", \"address\"}");
        else {
            pt->has_dp = 1;
            pt->dp_address = (uint16_t)a;
        }
        if (have_type && !type_is_integer(pt->type) && !type_is_float(pt->type) && pt->type != GW_PT_BCD)
            PERR(c, p, "only numeric types can have a decimal register");
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "invalid");
    if (v) {
        snprintf(p, sizeof p, "%s.invalid", path);
        if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) > GW_PROFILE_MAX_INVALID) {
            PERR(c, p, "must be an array of at most %d markers", GW_PROFILE_MAX_INVALID);
        } else {
            unsigned bitsz = have_type ? 16u * (type_words(pt->type) ? type_words(pt->type) : pt->count) : 64;
            if (bitsz > 64) bitsz = 64;
            int i = 0;
            for (const cJSON *m = v->child; m; m = m->next, i++) {
                char pm[224];
                snprintf(pm, sizeof pm, "%s[%d]", p, i);
                if (have_type && type_is_float(pt->type)) {
                    if (cJSON_IsString(m) && (strcasecmp(m->valuestring, "nan") == 0 ||
                                              strcasecmp(m->valuestring, "inf") == 0))
                        continue; /* always invalid anyway */
                    if (!cJSON_IsNumber(m)) {
                        PERR(c, pm, "float markers are numbers (NaN and Inf are always invalid)");
                        continue;
                    }
                    pt->invalid_value[pt->n_invalid++] = m->valuedouble;
                    continue;
                }
                if (cJSON_IsNumber(m) && m->valuedouble < 0 && m->valuedouble == floor(m->valuedouble)) {
                    /* A negative marker for a signed type: store its two's complement. */
                    double d = m->valuedouble;
                    /* The int64 cast is defined only down to -2^63 (fuzz_profile found
                     * -1.2e55 here), so 64-bit types are bounded too. */
                    if (d < -ldexp(1.0, (int)(bitsz < 64 ? bitsz : 64) - 1)) {
                        PERR(c, pm, "does not fit %u bits", bitsz);
                        continue;
                    }
                    uint64_t r = (uint64_t)(int64_t)d;
                    if (bitsz < 64)
                        r &= (UINT64_C(1) << bitsz) - 1;
                    pt->invalid_raw[pt->n_invalid++] = r;
                    continue;
                }
                uint64_t r;
                uint64_t maxr = bitsz >= 64 ? UINT64_MAX : (UINT64_C(1) << bitsz) - 1;
                if (get_uint(m, maxr, &r) != 0) {
                    PERR(c, pm, "must be a raw value 0..%llu (number or \"0x...\")",
                         (unsigned long long)maxr);
                    continue;
                }
                pt->invalid_raw[pt->n_invalid++] = r;
            }
        }
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "enum");
    snprintf(p, sizeof p, "%s.enum", path);
    if (have_type && pt->type == GW_PT_ENUM) {
        if (!cJSON_IsObject(v) || !v->child) {
            PERR(c, p, "type enum needs a non-empty object {\"raw value\": \"label\"}");
        } else {
            size_t cnt = (size_t)cJSON_GetArraySize(v);
            pt->enums = gw_calloc(cnt, sizeof *pt->enums);
            if (!pt->enums)
                return GW_ENOMEM;
            for (const cJSON *e = v->child; e; e = e->next) {
                char pe[260];
                snprintf(pe, sizeof pe, "%s.%s", p, e->string ? e->string : "?");
                cJSON key = {0};
                key.type = cJSON_String;
                key.valuestring = e->string;
                uint64_t r;
                if (!e->string || get_uint(&key, 65535, &r) != 0) {
                    PERR(c, pe, "key must be a raw value 0..65535 (\"85\" or \"0x55\")");
                    continue;
                }
                if (!cJSON_IsString(e) || !e->valuestring[0] || strlen(e->valuestring) >= GW_TEXT_MAX) {
                    PERR(c, pe, "label must be a non-empty string of at most %d bytes", GW_TEXT_MAX - 1);
                    continue;
                }
                int dup = 0;
                for (size_t k = 0; k < pt->n_enums; k++)
                    if (pt->enums[k].raw == r)
                        dup = 1;
                if (dup) {
                    PERR(c, pe, "raw value %llu mapped twice", (unsigned long long)r);
                    continue;
                }
                pt->enums[pt->n_enums].raw = (uint16_t)r;
                copy_str(pt->enums[pt->n_enums].label, GW_TEXT_MAX, e->valuestring);
                pt->n_enums++;
            }
        }
    } else if (v) {
        PERR(c, p, "only for type \"enum\"");
    }

    v = cJSON_GetObjectItemCaseSensitive(pj, "description");
    if (v && !cJSON_IsString(v)) {
        snprintf(p, sizeof p, "%s.description", path);
        PERR(c, p, "must be a string");
    }
    /* "sim" is the simulator's business (value ranges, waveforms): only its shape. */
    v = cJSON_GetObjectItemCaseSensitive(pj, "sim");
    if (v && !cJSON_IsObject(v)) {
        snprintf(p, sizeof p, "%s.sim", path);
        PERR(c, p, "must be an object");
    }
    return 0;
}

static char *dup_opt(pctx *c, const cJSON *root, const char *key, int *oom)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return NULL;
    if (!cJSON_IsString(v)) {
        PERR(c, key, "must be a string");
        return NULL;
    }
    char *s = gw_strdup(v->valuestring);
    if (!s)
        *oom = 1;
    return s;
}

static const char *const profile_keys[] = {
    "$schema", "name", "description", "manufacturer", "model", "kind", "byte_order",
    "max_read_registers", "max_read_bits", "max_gap", "serial", "points", "notes", NULL};

static void int_opt(pctx *c, const cJSON *root, const char *key, long lo, long hi, int *dst)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v)
        return;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < lo ||
        v->valuedouble > hi)
        PERR(c, key, "must be an integer %ld..%ld", lo, hi);
    else
        *dst = (int)v->valuedouble;
}

int gw_profile_parse(const char *file, const cJSON *json, gw_cfgerr *errs, gw_profile **out)
{
    int rc = GW_ECONFIG, oom = 0;
    pctx c = {file ? file : "(profile)", errs, 0};
    *out = NULL;
    if (!cJSON_IsObject(json)) {
        PERR(&c, "", "a profile must be a JSON object");
        return GW_ECONFIG;
    }
    gw_profile *p = gw_calloc(1, sizeof *p);
    if (!p)
        return GW_ENOMEM;
    p->max_read_registers = 125;
    p->max_read_bits = 2000;
    p->max_gap = -1;
    p->order = GW_BO_ABCD;
    p->file = gw_strdup(c.file);
    if (!p->file)
        goto fail_oom;

    check_keys(&c, json, "", profile_keys);
    p->name = dup_opt(&c, json, "name", &oom);
    p->description = dup_opt(&c, json, "description", &oom);
    p->manufacturer = dup_opt(&c, json, "manufacturer", &oom);
    p->model = dup_opt(&c, json, "model", &oom);
    if (oom)
        goto fail_oom;
    if (!p->name) {
        /* Default name: the file's base name without .json. */
        const char *b = strrchr(c.file, '/');
        b = b ? b + 1 : c.file;
        size_t len = strlen(b);
        if (len > 5 && strcmp(b + len - 5, ".json") == 0)
            len -= 5;
        p->name = gw_strndup(b, len);
        if (!p->name)
            goto fail_oom;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(json, "kind");
    if (v && !cJSON_IsString(v))
        PERR(&c, "kind", "must be a string");
    v = cJSON_GetObjectItemCaseSensitive(json, "notes");
    if (v && !cJSON_IsString(v) && !cJSON_IsArray(v))
        PERR(&c, "notes", "must be a string or an array of strings");
    v = cJSON_GetObjectItemCaseSensitive(json, "byte_order");
    if (v && (!cJSON_IsString(v) || gw_byte_order_parse(v->valuestring, &p->order) != 0))
        PERR(&c, "byte_order", "must be \"ABCD\", \"CDAB\", \"BADC\" or \"DCBA\"");
    int_opt(&c, json, "max_read_registers", 1, 125, &p->max_read_registers);
    int_opt(&c, json, "max_read_bits", 1, 2000, &p->max_read_bits);
    int_opt(&c, json, "max_gap", 0, 124, &p->max_gap);

    v = cJSON_GetObjectItemCaseSensitive(json, "serial");
    if (v) {
        static const char *const sk[] = {"baud", "parity", "data_bits", "stop_bits", "unit_id", NULL};
        if (!cJSON_IsObject(v)) {
            PERR(&c, "serial", "must be an object");
        } else {
            check_keys(&c, v, "serial", sk);
            int dummy = 0;
            const cJSON *b = cJSON_GetObjectItemCaseSensitive(v, "baud");
            if (b && (!cJSON_IsNumber(b) || b->valuedouble < 300 || b->valuedouble > 4000000))
                PERR(&c, "serial.baud", "must be 300..4000000");
            else if (b)
                p->default_baud = (int)b->valuedouble;
            const cJSON *pa = cJSON_GetObjectItemCaseSensitive(v, "parity");
            if (pa && (!cJSON_IsString(pa) || strlen(pa->valuestring) != 1 ||
                       !strchr("NEO", pa->valuestring[0])))
                PERR(&c, "serial.parity", "must be \"N\", \"E\" or \"O\"");
            else if (pa)
                p->default_parity = pa->valuestring[0];
            const cJSON *db = cJSON_GetObjectItemCaseSensitive(v, "data_bits");
            if (db && (!cJSON_IsNumber(db) || (db->valueint != 7 && db->valueint != 8)))
                PERR(&c, "serial.data_bits", "must be 7 or 8");
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(v, "stop_bits");
            if (st && (!cJSON_IsNumber(st) || (st->valueint != 1 && st->valueint != 2)))
                PERR(&c, "serial.stop_bits", "must be 1 or 2");
            pctx c2 = c;
            int_opt(&c2, v, "unit_id", 0, 247, &dummy);
            if (c2.bad) {
                c.bad = 1;
            } else {
                p->default_unit_id = dummy;
            }
        }
    }

    const cJSON *pts = cJSON_GetObjectItemCaseSensitive(json, "points");
    if (!cJSON_IsArray(pts) || cJSON_GetArraySize(pts) == 0) {
        PERR(&c, "points", "required non-empty array");
    } else {
        size_t n = (size_t)cJSON_GetArraySize(pts);
        if (n > 4096) {
            PERR(&c, "points", "at most 4096 points");
        } else {
            p->points = gw_calloc(n, sizeof *p->points);
            if (!p->points)
                goto fail_oom;
            size_t i = 0;
            for (const cJSON *pj = pts->child; pj; pj = pj->next, i++) {
                char path[64];
                snprintf(path, sizeof path, "points[%zu]", i);
                p->n_points = i + 1;
                if (parse_point(&c, pj, path, p, &p->points[i]) == GW_ENOMEM)
                    goto fail_oom;
                for (size_t k = 0; k < i; k++)
                    if (p->points[i].field[0] &&
                        strcmp(p->points[k].field, p->points[i].field) == 0) {
                        char fp[80];
                        snprintf(fp, sizeof fp, "%s.field", path);
                        PERR(&c, fp, "duplicate field \"%s\" (also points[%zu])",
                             p->points[i].field, k);
                    }
            }
        }
    }

    if (c.bad) {
        gw_profile_free(p);
        return GW_ECONFIG;
    }
    *out = p;
    return 0;

fail_oom:
    rc = GW_ENOMEM;
    gw_profile_free(p);
    return rc;
}

int gw_profile_load(const char *path, gw_cfgerr *errs, gw_profile **out)
{
    *out = NULL;
    cJSON *j = gw_cfg_read_json(path, errs);
    if (!j)
        return GW_ECONFIG;
    int rc = gw_profile_parse(path, j, errs, out);
    cJSON_Delete(j);
    return rc;
}

void gw_profile_free(gw_profile *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_points; i++)
        gw_free(p->points[i].enums);
    gw_free(p->points);
    gw_free(p->name);
    gw_free(p->file);
    gw_free(p->description);
    gw_free(p->manufacturer);
    gw_free(p->model);
    gw_free(p);
}

const gw_profile_point *gw_profile_point_by_field(const gw_profile *p, const char *name)
{
    if (!p || !name)
        return NULL;
    for (size_t i = 0; i < p->n_points; i++)
        if (strcmp(p->points[i].field, name) == 0)
            return &p->points[i];
    return NULL;
}
