/* water: supply and drainage network sensors.
 *
 * pressure_mpa from whatever the transmitter reports: kPa (Milesight EM500-PP style
 * channel 03/7B), bar, psi, MPa, or a 4–20 mA loop current scaled over the configured
 * range (below 3.8 mA is a broken loop, above 20.5 mA over range); flow_m3h; level_m;
 * battery_pct. JSON keys: pressure (in pressure_unit), pressure_mpa, pressure_kpa,
 * current_ma, flow / flow_m3h, level / level_m, battery. */
#include <citygate/plugin.h>

#include <string.h>

#include "cg_util.h"

static const cg_host *host;

static const cg_option options[] = {
    {"pressure_unit", CG_OPT_ENUM, "kpa", 0, 0, "mpa|kpa|bar|psi|ma",
     "unit of a bare \"pressure\" value; ma = 4-20 mA loop over range_min_mpa..range_max_mpa"},
    {"range_min_mpa", CG_OPT_DOUBLE, "0", -1, 100, NULL, "4-20 mA: pressure at 4 mA"},
    {"range_max_mpa", CG_OPT_DOUBLE, "1.6", -1, 100, NULL, "4-20 mA: pressure at 20 mA"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int emit_loop(cg_ctx *ctx, cg_emit_fn emit, double ma)
{
    double lo = host->opt_double(ctx, "range_min_mpa"), hi = host->opt_double(ctx, "range_max_mpa");
    int q = ma < 3.8 ? CG_Q_COMM_ERROR : ma > 20.5 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD;
    int rc = cgu_emit_num(ctx, emit, "current_ma", ma, "mA", CG_Q_GOOD);
    if (rc == 0)
        rc = cgu_emit_num(ctx, emit, "pressure_mpa", lo + (ma - 4.0) * (hi - lo) / 16.0, "MPa", q);
    return rc;
}

static int emit_pressure(cg_ctx *ctx, cg_emit_fn emit, double raw, const char *unit)
{
    double mpa;
    if (!strcmp(unit, "ma"))
        return emit_loop(ctx, emit, raw);
    if (!strcmp(unit, "mpa"))
        mpa = raw;
    else if (!strcmp(unit, "kpa"))
        mpa = raw / 1000.0;
    else if (!strcmp(unit, "bar"))
        mpa = raw / 10.0;
    else
        mpa = raw * 0.00689475729; /* psi */
    return cgu_emit_num(ctx, emit, "pressure_mpa", mpa, "MPa", cgu_range_quality(mpa, -0.1, 100));
}

static int water_channel(cg_ctx *ctx, cg_emit_fn emit, cgu_tlv *c)
{
    const uint8_t *v = c->v;
    if (c->id == 0x01 && c->type == 0x75) {
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "battery_pct", v[0], "%", cgu_range_quality(v[0], 0, 100));
    }
    if (c->id == 0x03 && c->type == 0x7b) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return emit_pressure(ctx, emit, cgu_u16le(v), "kpa");
    }
    if (c->id == 0x04 && c->type == 0x02) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return emit_loop(ctx, emit, cgu_u16le(v) / 100.0);
    }
    if (c->id == 0x05 && c->type == 0x82) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "level_m", cgu_u16le(v) / 1000.0, "m", CG_Q_GOOD);
    }
    if (c->id == 0x06 && c->type == 0x8a) {
        if (cgu_tlv_short(c, 4)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "flow_m3h", (int32_t)cgu_u32le(v) / 1000.0, "m3/h", CG_Q_GOOD);
    }
    return CGU_TLV_UNKNOWN;
}

static int decode_json(cg_ctx *ctx, cg_emit_fn emit)
{
    static const struct {
        const char *key, *how;
    } keys[] = {
        {"pressure_mpa", "mpa"}, {"pressure_kpa", "kpa"}, {"pressure", NULL}, {"current_ma", "ma"},
        {"flow_m3h", "flow"},    {"flow", "flow"},        {"level_m", "level"}, {"level", "level"},
        {"battery", "battery"},  {"battery_pct", "battery"},
    };
    int rc = 0, found = 0, p_done = 0, f_done = 0, l_done = 0, b_done = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0] && rc == 0; k++) {
        double x;
        int r = cgu_json_number(host, ctx, keys[k].key, &x);
        if (r == CG_ENOTFOUND)
            continue;
        if (r != 0)
            return r;
        const char *how = keys[k].how ? keys[k].how : host->opt_string(ctx, "pressure_unit");
        if (!strcmp(how, "flow")) {
            if (!f_done++)
                rc = cgu_emit_num(ctx, emit, "flow_m3h", x, "m3/h", CG_Q_GOOD);
        } else if (!strcmp(how, "level")) {
            if (!l_done++)
                rc = cgu_emit_num(ctx, emit, "level_m", x, "m", x < -1 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
        } else if (!strcmp(how, "battery")) {
            if (!b_done++)
                rc = cgu_emit_num(ctx, emit, "battery_pct", x, "%", cgu_range_quality(x, 0, 100));
        } else if (!p_done++) {
            rc = emit_pressure(ctx, emit, x, how);
        }
        found = 1;
    }
    if (rc == 0 && !found)
        return host->reject(ctx, CG_BAD_MISSING, "no water field (pressure, current_ma, flow, level)");
    return rc;
}

static int water_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    if (host->payload_kind(ctx) == CG_PAYLOAD_JSON)
        return decode_json(ctx, emit);
    return cgu_tlv_walk(host, ctx, payload, len, emit, water_channel);
}

static int water_init(cg_ctx *ctx, void **state)
{
    *state = NULL;
    if (!(host->opt_double(ctx, "range_max_mpa") > host->opt_double(ctx, "range_min_mpa"))) {
        host->log(ctx, CG_LOG_ERROR, "range_max_mpa must be above range_min_mpa");
        return CG_EINVAL;
    }
    return 0;
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_plugin_desc),
    .name = "water",
    .version = "1.0.0",
    .description = "water networks: pressure in MPa from kPa/bar/psi/4-20 mA, flow, level",
    .options = options,
    .init = water_init,
    .decode = water_decode,
};

CG_PLUGIN_ENTRY(water)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR)
        return NULL;
    host = host_table;
    return &desc;
}
