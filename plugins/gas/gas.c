/* gas: combustible and toxic gas detectors (wells, regulator stations, pipe galleries).
 *
 * ch4_lel (%LEL) from ppm, %VOL or %LEL: for methane 100 %LEL = 5 %VOL = 50 000 ppm
 * (lel_vol_pct, configurable for other combustibles), so %LEL = ppm / (lel_vol_pct *
 * 100) and %LEL = %VOL * 100 / lel_vol_pct; above 100 %LEL the detector is over range.
 * Toxic gases stay in ppm (h2s_ppm, co_ppm), oxygen in %VOL (o2_pct), pipe pressure in
 * kPa (pressure_kpa). JSON keys: ch4 (in ch4_unit), ch4_ppm, ch4_vol, ch4_lel, h2s /
 * h2s_ppm, co / co_ppm, o2 / o2_pct, pressure_kpa, battery. */
#include <citygate/plugin.h>

#include <string.h>

#include "cg_util.h"

static const cg_host *host;

static const cg_option options[] = {
    {"ch4_unit", CG_OPT_ENUM, "ppm", 0, 0, "ppm|vol|lel", "unit of a bare \"ch4\" value and of TLV channel 10/A0"},
    {"lel_vol_pct", CG_OPT_DOUBLE, "5.0", 0.1, 100, NULL, "lower explosive limit of the gas in %VOL (CH4: 5.0)"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int emit_ch4(cg_ctx *ctx, cg_emit_fn emit, double raw, const char *unit)
{
    double lel_vol = host->opt_double(ctx, "lel_vol_pct"), lel;
    if (!strcmp(unit, "ppm"))
        lel = raw / (lel_vol * 100.0);
    else if (!strcmp(unit, "vol"))
        lel = raw * 100.0 / lel_vol;
    else
        lel = raw;
    return cgu_emit_num(ctx, emit, "ch4_lel", lel, "%LEL", cgu_range_quality(lel, 0, 100));
}

static int emit_ppm(cg_ctx *ctx, cg_emit_fn emit, const char *field, double v)
{
    return cgu_emit_num(ctx, emit, field, v, "ppm", v < 0 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
}

static int emit_o2(cg_ctx *ctx, cg_emit_fn emit, double v)
{
    return cgu_emit_num(ctx, emit, "o2_pct", v, "%VOL", cgu_range_quality(v, 0, 30));
}

static int gas_channel(cg_ctx *ctx, cg_emit_fn emit, cgu_tlv *c)
{
    const uint8_t *v = c->v;
    if (c->id == 0x01 && c->type == 0x75) {
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "battery_pct", v[0], "%", cgu_range_quality(v[0], 0, 100));
    }
    if (c->id == 0x10 && c->type == 0xa0) {
        if (cgu_tlv_short(c, 4)) return CGU_TLV_SHORT;
        uint32_t x = cgu_u32le(v);
        /* ppm as an integer; %VOL and %LEL in hundredths. */
        const char *unit = host->opt_string(ctx, "ch4_unit");
        return emit_ch4(ctx, emit, strcmp(unit, "ppm") ? x / 100.0 : (double)x, unit);
    }
    if (c->id == 0x11 && c->type == 0xa1) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return emit_ppm(ctx, emit, "h2s_ppm", cgu_u16le(v) / 10.0);
    }
    if (c->id == 0x12 && c->type == 0xa2) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return emit_ppm(ctx, emit, "co_ppm", cgu_u16le(v));
    }
    if (c->id == 0x13 && c->type == 0xa3) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return emit_o2(ctx, emit, cgu_u16le(v) / 10.0);
    }
    if (c->id == 0x14 && c->type == 0x7b) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "pressure_kpa", cgu_u16le(v) / 10.0, "kPa", CG_Q_GOOD);
    }
    return CGU_TLV_UNKNOWN;
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
    int rc = 0, found = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && rc == 0; k++) {
        double x;
        int r = cgu_json_number(host, ctx, keys[k].key, &x);
        if (r == CG_ENOTFOUND)
            continue;
        if (r != 0)
            return r;
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
            rc = cgu_emit_num(ctx, emit, "pressure_kpa", x, "kPa", CG_Q_GOOD);
        else
            rc = cgu_emit_num(ctx, emit, "battery_pct", x, "%", cgu_range_quality(x, 0, 100));
    }
    if (rc == 0 && !found)
        return host->reject(ctx, CG_BAD_MISSING, "no gas field (ch4, h2s, co, o2, pressure_kpa)");
    return rc;
}

static int gas_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    if (host->payload_kind(ctx) == CG_PAYLOAD_JSON)
        return decode_json(ctx, emit);
    return cgu_tlv_walk(host, ctx, payload, len, emit, gas_channel);
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
