/* gas: combustible and toxic gas detectors (wells, regulator stations, pipe galleries).
 *
 * ch4_lel (%LEL) from ppm, %VOL or %LEL: for methane 100 %LEL = 5 %VOL = 50 000 ppm
 * (lel_vol_pct, configurable for other combustibles), so %LEL = ppm / (lel_vol_pct *
 * 100) and %LEL = %VOL * 100 / lel_vol_pct; above 100 %LEL the detector is over range.
 * Toxic gases stay in ppm (h2s_ppm, co_ppm), oxygen in %VOL (o2_pct), pipe pressure in
 * kPa (pressure_kpa). JSON keys: ch4 (in ch4_unit), ch4_ppm, ch4_vol, ch4_lel, h2s /
 * h2s_ppm, co / co_ppm, o2 / o2_pct, pressure_kpa, battery. */
#include <citygate/plugin.h>

#include <stdio.h>
#include <string.h>

static const cg_host *host;

static const cg_option options[] = {
    {"ch4_unit", CG_OPT_ENUM, "ppm", 0, 0, "ppm|vol|lel", "unit of a bare \"ch4\" value and of TLV channel 10/A0"},
    {"lel_vol_pct", CG_OPT_DOUBLE, "5.0", 0.1, 100, NULL, "lower explosive limit of the gas in %VOL (CH4: 5.0)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int emit_num(cg_ctx *ctx, cg_emit_fn emit, const char *field, double v, const char *unit,
                    int q)
{
    cg_sample s = {.field = field, .unit = unit, .value = v, .quality = q};
    return emit(ctx, &s);
}

static int emit_ch4(cg_ctx *ctx, cg_emit_fn emit, double raw, const char *unit)
{
    double lel_vol = host->opt_double(ctx, "lel_vol_pct"), lel;
    if (!strcmp(unit, "ppm"))
        lel = raw / (lel_vol * 100.0);
    else if (!strcmp(unit, "vol"))
        lel = raw * 100.0 / lel_vol;
    else
        lel = raw;
    return emit_num(ctx, emit, "ch4_lel", lel, "%LEL",
                    lel < 0 || lel > 100 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
}

static int emit_ppm(cg_ctx *ctx, cg_emit_fn emit, const char *field, double v)
{
    return emit_num(ctx, emit, field, v, "ppm", v < 0 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
}

static int emit_o2(cg_ctx *ctx, cg_emit_fn emit, double v)
{
    return emit_num(ctx, emit, "o2_pct", v, "%VOL", v < 0 || v > 30 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
}

static int decode_tlv(cg_ctx *ctx, const uint8_t *p, size_t len, cg_emit_fn emit)
{
    char why[80];
    size_t i = 0;
    int rc = 0;
    if (len == 0)
        return host->reject(ctx, CG_BAD_SIZE, "empty frame");
    while (i < len && rc == 0) {
        if (len - i < 2)
            goto short_frame;
        uint8_t id = p[i], type = p[i + 1];
        const uint8_t *v = p + i + 2;
        size_t left = len - i - 2, need;
        unsigned u16 = left >= 2 ? (unsigned)(v[0] | v[1] << 8) : 0;
        if (id == 0x01 && type == 0x75) {
            if (left < (need = 1)) goto short_frame;
            rc = emit_num(ctx, emit, "battery_pct", v[0], "%", v[0] > 100 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
        } else if (id == 0x10 && type == 0xa0) {
            if (left < (need = 4)) goto short_frame;
            uint32_t x = (uint32_t)v[0] | (uint32_t)v[1] << 8 | (uint32_t)v[2] << 16 | (uint32_t)v[3] << 24;
            /* ppm as an integer; %VOL and %LEL in hundredths. */
            const char *unit = host->opt_string(ctx, "ch4_unit");
            rc = emit_ch4(ctx, emit, strcmp(unit, "ppm") ? x / 100.0 : (double)x, unit);
        } else if (id == 0x11 && type == 0xa1) {
            if (left < (need = 2)) goto short_frame;
            rc = emit_ppm(ctx, emit, "h2s_ppm", u16 / 10.0);
        } else if (id == 0x12 && type == 0xa2) {
            if (left < (need = 2)) goto short_frame;
            rc = emit_ppm(ctx, emit, "co_ppm", u16);
        } else if (id == 0x13 && type == 0xa3) {
            if (left < (need = 2)) goto short_frame;
            rc = emit_o2(ctx, emit, u16 / 10.0);
        } else if (id == 0x14 && type == 0x7b) {
            if (left < (need = 2)) goto short_frame;
            rc = emit_num(ctx, emit, "pressure_kpa", u16 / 10.0, "kPa", CG_Q_GOOD);
        } else {
            snprintf(why, sizeof why, "unknown channel %02x/%02x at byte %zu", id, type, i);
            return host->reject(ctx, CG_BAD_FRAME, why);
        }
        i += 2 + need;
    }
    return rc;
short_frame:
    snprintf(why, sizeof why, "frame truncated at byte %zu of %zu", i, len);
    return host->reject(ctx, CG_BAD_SIZE, why);
}

static int decode_json(cg_ctx *ctx, cg_emit_fn emit)
{
    static const struct {
        const char *key, *kind;
    } keys[] = {
        {"ch4_lel", "lel"}, {"ch4_vol", "vol"}, {"ch4_ppm", "ppm"}, {"ch4", NULL},
        {"h2s_ppm", "h2s"}, {"h2s", "h2s"},     {"co_ppm", "co"},   {"co", "co"},
        {"o2_pct", "o2"},   {"o2", "o2"},       {"pressure_kpa", "kpa"},
        {"battery", "bat"}, {"battery_pct", "bat"},
    };
    const char *done[8];
    size_t ndone = 0;
    char why[80];
    int rc = 0, found = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && rc == 0; k++) {
        double x;
        int r = host->json_number(ctx, keys[k].key, &x);
        if (r == CG_ENOTFOUND)
            continue;
        if (r != 0) {
            snprintf(why, sizeof why, "%s is not a number", keys[k].key);
            return host->reject(ctx, CG_BAD_TYPE, why);
        }
        const char *kind = keys[k].kind ? keys[k].kind : host->opt_string(ctx, "ch4_unit");
        const char *group = !strcmp(kind, "lel") || !strcmp(kind, "vol") || !strcmp(kind, "ppm") ? "ch4" : kind;
        int seen = 0;
        for (size_t j = 0; j < ndone; j++)
            seen |= !strcmp(done[j], group);
        if (seen)
            continue;
        done[ndone++] = group;
        found = 1;
        if (!strcmp(group, "ch4"))
            rc = emit_ch4(ctx, emit, x, kind);
        else if (!strcmp(group, "h2s"))
            rc = emit_ppm(ctx, emit, "h2s_ppm", x);
        else if (!strcmp(group, "co"))
            rc = emit_ppm(ctx, emit, "co_ppm", x);
        else if (!strcmp(group, "o2"))
            rc = emit_o2(ctx, emit, x);
        else if (!strcmp(group, "kpa"))
            rc = emit_num(ctx, emit, "pressure_kpa", x, "kPa", CG_Q_GOOD);
        else
            rc = emit_num(ctx, emit, "battery_pct", x, "%", x < 0 || x > 100 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
    }
    if (rc == 0 && !found)
        return host->reject(ctx, CG_BAD_MISSING, "no gas field (ch4, h2s, co, o2, pressure_kpa)");
    return rc;
}

static int gas_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    if (host->payload_kind(ctx) == CG_PAYLOAD_JSON)
        return decode_json(ctx, emit);
    return decode_tlv(ctx, payload, len, emit);
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_plugin_desc),
    .name = "gas",
    .version = "1.0.0",
    .description = "gas detectors: CH4 in %LEL from ppm/%VOL, H2S and CO in ppm, O2 in %VOL",
    .options = options,
    .decode = gas_decode,
};

CG_PLUGIN_ENTRY(gas)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR)
        return NULL;
    host = host_table;
    return &desc;
}
