/* lamp: single-lamp controllers (单灯控制器) and street-lamp circuits.
 *
 * decode: Milesight WS52x-style TLV frames or JSON (flat keys, or Tasmota's "ENERGY"
 * object) into voltage_v, current_a, power_w, power_factor, energy_kwh, relay_on,
 * dimming_pct.
 * derive: energy_delta_kwh (since the previous report; a meter reset restarts the
 * baseline) and should_be_on — from a fixed schedule, or from sunset / sunrise at the
 * lamp's location computed with NOAA's sunrise equation (General Solar Position
 * Calculations, NOAA Global Monitoring Division): fractional year, equation of time,
 * solar declination, hour angle of the 90.833° zenith (refraction + solar disc). */
#include <citygate/plugin.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cg_util.h"

static const cg_host *host;

static const cg_option options[] = {
    {"mode", CG_OPT_ENUM, "astro", 0, 0, "astro|schedule|none",
     "how should_be_on is decided: sunset/sunrise at the lamp, a fixed schedule, or not at all"},
    {"on_time", CG_OPT_STRING, "18:30", 0, 5, NULL, "schedule: switch-on time HH:MM (local, utc_offset_min)"},
    {"off_time", CG_OPT_STRING, "06:30", 0, 5, NULL, "schedule: switch-off time HH:MM (local)"},
    {"utc_offset_min", CG_OPT_INT, "480", -720, 840, NULL, "schedule: offset of local time from UTC"},
    {"sunset_offset_min", CG_OPT_INT, "0", -180, 180, NULL, "astro: on this many minutes after sunset"},
    {"sunrise_offset_min", CG_OPT_INT, "0", -180, 180, NULL, "astro: off this many minutes after sunrise"},
    {"lat", CG_OPT_DOUBLE, "0", -90, 90, NULL, "astro: latitude when the device has no component.location"},
    {"lon", CG_OPT_DOUBLE, "0", -180, 180, NULL, "astro: longitude when the device has no component.location"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

typedef struct lamp_state {
    int have_energy;
    double last_energy_kwh;
} lamp_state;

/* ---- NOAA sunrise equation ------------------------------------------------------------ */

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

/* Sunrise and sunset of the given date at (lat, lon) as minutes after 00:00 UTC of
 * that date (may be negative or above 1440 far from Greenwich). Returns 0, 1 when the
 * sun stays below the horizon all day (polar night), 2 when it never sets. */
static int sun_times(double lat, double lon, int y, int m, int d, double *rise, double *set)
{
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    int doy = (int)(days_from_civil(y, m, d) - days_from_civil(y, 1, 1)) + 1;
    /* Fractional year at local solar noon. */
    double g = 2.0 * M_PI / (leap ? 366.0 : 365.0) * (doy - 1 + (12.0 - lon / 15.0 - 12.0) / 24.0);
    double eqtime = 229.18 * (0.000075 + 0.001868 * cos(g) - 0.032077 * sin(g) -
                              0.014615 * cos(2 * g) - 0.040849 * sin(2 * g));
    double decl = 0.006918 - 0.399912 * cos(g) + 0.070257 * sin(g) - 0.006758 * cos(2 * g) +
                  0.000907 * sin(2 * g) - 0.002697 * cos(3 * g) + 0.00148 * sin(3 * g);
    double phi = lat * M_PI / 180.0;
    double c = cos(90.833 * M_PI / 180.0) / (cos(phi) * cos(decl)) - tan(phi) * tan(decl);
    if (c > 1)
        return 1;
    if (c < -1)
        return 2;
    double ha = acos(c) * 180.0 / M_PI;
    *rise = 720.0 - 4.0 * (lon + ha) - eqtime;
    *set = 720.0 - 4.0 * (lon - ha) - eqtime;
    return 0;
}

/* Astronomical should-be-on at ts_us: dark between sunset and the next sunrise. */
static int astro_on(double lat, double lon, int64_t ts_us, int rise_off, int set_off)
{
    int64_t t = ts_us / 1000000;
    /* The lamp's own (solar) date, so a lamp at 106°E uses its local day, not UTC's. */
    int64_t local_day = (int64_t)floor((t + lon * 240.0) / 86400.0);
    int y, mo, d;
    civil_from_days(local_day, &y, &mo, &d);
    double rise, set;
    int r = sun_times(lat, lon, y, mo, d, &rise, &set);
    if (r == 1)
        return 1;
    if (r == 2)
        return 0;
    double day0 = (double)days_from_civil(y, mo, d) * 86400.0;
    double on_at = day0 + (set + set_off) * 60.0, off_at = day0 + (rise + rise_off) * 60.0;
    return (double)t < off_at || (double)t >= on_at;
}

static int parse_hhmm(const char *s, int *min)
{
    int h, m;
    char extra;
    if (sscanf(s, "%d:%d%c", &h, &m, &extra) != 2 || h < 0 || h > 24 || m < 0 || m > 59 ||
        (h == 24 && m))
        return -1;
    *min = h * 60 + m;
    return 0;
}

static int schedule_on(int on_min, int off_min, int utc_off, int64_t ts_us)
{
    int64_t local = ts_us / 1000000 + (int64_t)utc_off * 60;
    int now = (int)(((local % 86400) + 86400) % 86400 / 60);
    if (on_min == off_min)
        return 0;
    if (on_min < off_min)
        return now >= on_min && now < off_min;
    return now >= on_min || now < off_min; /* across midnight */
}

/* ---- decode ---------------------------------------------------------------------------- */

static int lamp_channel(cg_ctx *ctx, cg_emit_fn emit, cgu_tlv *c)
{
    const uint8_t *v = c->v;
    if (c->id == 0x03 && c->type == 0x74) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "voltage_v", cgu_u16le(v) / 10.0, "V", CG_Q_GOOD);
    }
    if (c->id == 0x04 && c->type == 0x80) {
        if (cgu_tlv_short(c, 4)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "power_w", (double)(int32_t)cgu_u32le(v), "W", CG_Q_GOOD);
    }
    if (c->id == 0x05 && c->type == 0x81) {
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "power_factor", v[0] / 100.0, "", cgu_range_quality(v[0], 0, 100));
    }
    if (c->id == 0x06 && c->type == 0x83) {
        if (cgu_tlv_short(c, 4)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "energy_kwh", cgu_u32le(v) / 1000.0, "kWh", CG_Q_GOOD);
    }
    if (c->id == 0x07 && c->type == 0xc9) {
        if (cgu_tlv_short(c, 2)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "current_a", cgu_u16le(v) / 1000.0, "A", CG_Q_GOOD);
    }
    if (c->id == 0x08 && c->type == 0x70) {
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        if (v[0] > 1) {
            char why[80];
            snprintf(why, sizeof why, "relay state %u is not 0/1", v[0]);
            return host->reject(ctx, CG_BAD_RANGE, why);
        }
        return cgu_emit_bool(ctx, emit, "relay_on", v[0]);
    }
    if (c->id == 0x09 && c->type == 0x71) {
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "dimming_pct", v[0], "%", cgu_range_quality(v[0], 0, 100));
    }
    return CGU_TLV_UNKNOWN;
}

typedef struct jfield {
    const char *path;
    const char *field;
    const char *unit;
    double scale;
} jfield;

/* Flat keys first (the profile's own names), then Tasmota's ENERGY object. */
static const jfield jfields[] = {
    {"voltage_v", "voltage_v", "V", 1},           {"ENERGY.Voltage", "voltage_v", "V", 1},
    {"current_a", "current_a", "A", 1},           {"ENERGY.Current", "current_a", "A", 1},
    {"power_w", "power_w", "W", 1},               {"ENERGY.Power", "power_w", "W", 1},
    {"power_factor", "power_factor", "", 1},      {"ENERGY.Factor", "power_factor", "", 1},
    {"energy_kwh", "energy_kwh", "kWh", 1},       {"ENERGY.Total", "energy_kwh", "kWh", 1},
    {"dimming_pct", "dimming_pct", "%", 1},
};

static int decode_json(cg_ctx *ctx, cg_emit_fn emit)
{
    char why[96], buf[16];
    int rc = 0, found = 0;
    const char *done[16];
    size_t ndone = 0;
    for (size_t k = 0; k < sizeof jfields / sizeof jfields[0] && rc == 0; k++) {
        const jfield *f = &jfields[k];
        int seen = 0;
        for (size_t j = 0; j < ndone; j++)
            seen |= strcmp(done[j], f->field) == 0;
        if (seen)
            continue;
        double x;
        int r = cgu_json_number(host, ctx, f->path, &x);
        if (r == CG_ENOTFOUND)
            continue;
        if (r != 0)
            return r;
        int q = CG_Q_GOOD;
        if ((!strcmp(f->field, "power_factor") && (x < 0 || x > 1)) ||
            (!strcmp(f->field, "dimming_pct") && (x < 0 || x > 100)))
            q = CG_Q_OUT_OF_RANGE;
        rc = cgu_emit_num(ctx, emit, f->field, x * f->scale, f->unit, q);
        done[ndone++] = f->field;
        found = 1;
    }
    /* Relay: a boolean / 0-1 number, or Tasmota's "POWER": "ON" / "OFF". */
    static const char *const relay[2] = {"relay_on", "POWER"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        double x;
        int r = host->json_number(ctx, relay[k], &x);
        if (r == 0 && (x == 0 || x == 1)) {
            rc = cgu_emit_bool(ctx, emit, "relay_on", x != 0);
            found = 1;
            break;
        }
        if (r == CG_ENOTFOUND)
            continue;
        if (host->json_string(ctx, relay[k], buf, sizeof buf) == 0 &&
            (!strcmp(buf, "ON") || !strcmp(buf, "on") || !strcmp(buf, "OFF") || !strcmp(buf, "off"))) {
            rc = cgu_emit_bool(ctx, emit, "relay_on", buf[1] == 'N' || buf[1] == 'n');
            found = 1;
            break;
        }
        snprintf(why, sizeof why, "%s is not on/off", relay[k]);
        return host->reject(ctx, CG_BAD_TYPE, why);
    }
    if (rc == 0 && !found)
        return host->reject(ctx, CG_BAD_MISSING, "no lamp field (voltage_v, power_w, ENERGY, relay_on ...)");
    return rc;
}

static int lamp_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    if (host->payload_kind(ctx) == CG_PAYLOAD_JSON)
        return decode_json(ctx, emit);
    return cgu_tlv_walk(host, ctx, payload, len, emit, lamp_channel);
}

/* ---- derive ----------------------------------------------------------------------------- */

static int lamp_derive(cg_ctx *ctx, const cg_sample *s, size_t n, cg_emit_fn emit)
{
    lamp_state *st = host->state(ctx);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (strcmp(s[i].field, "energy_kwh") != 0 || s[i].quality != CG_Q_GOOD)
            continue;
        double e = s[i].value;
        if (st->have_energy && e >= st->last_energy_kwh)
            rc = cgu_emit_num(ctx, emit, "energy_delta_kwh", e - st->last_energy_kwh, "kWh", CG_Q_GOOD);
        /* A lower reading is a meter reset or replacement: restart the baseline. */
        st->last_energy_kwh = e;
        st->have_energy = 1;
    }
    if (rc != 0)
        return rc;
    const char *mode = host->opt_string(ctx, "mode");
    int64_t t = host->message_time(ctx);
    int on;
    if (strcmp(mode, "astro") == 0) {
        double lon, lat;
        if (host->device_location(ctx, &lon, &lat) != 0) {
            lon = host->opt_double(ctx, "lon");
            lat = host->opt_double(ctx, "lat");
        }
        on = astro_on(lat, lon, t, (int)host->opt_int(ctx, "sunrise_offset_min"),
                      (int)host->opt_int(ctx, "sunset_offset_min"));
    } else if (strcmp(mode, "schedule") == 0) {
        int on_min, off_min;
        if (parse_hhmm(host->opt_string(ctx, "on_time"), &on_min) != 0 ||
            parse_hhmm(host->opt_string(ctx, "off_time"), &off_min) != 0)
            return 0; /* refused at init; unreachable */
        on = schedule_on(on_min, off_min, (int)host->opt_int(ctx, "utc_offset_min"), t);
    } else {
        return 0;
    }
    return cgu_emit_bool(ctx, emit, "should_be_on", on);
}

static int lamp_init(cg_ctx *ctx, void **state)
{
    int a, b;
    if (strcmp(host->opt_string(ctx, "mode"), "schedule") == 0 &&
        (parse_hhmm(host->opt_string(ctx, "on_time"), &a) != 0 ||
         parse_hhmm(host->opt_string(ctx, "off_time"), &b) != 0)) {
        host->log(ctx, CG_LOG_ERROR, "on_time / off_time must be HH:MM");
        return CG_EINVAL;
    }
    lamp_state *st = host->alloc(sizeof *st);
    if (!st)
        return CG_ENOMEM;
    memset(st, 0, sizeof *st);
    *state = st;
    return 0;
}

static void lamp_fini(cg_ctx *ctx, void *state)
{
    (void)ctx;
    host->free(state);
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_plugin_desc),
    .name = "lamp",
    .version = "1.0.0",
    .description = "street lamps: power, power factor, energy and its delta, relay, should_be_on (schedule or sunset/sunrise)",
    .options = options,
    .init = lamp_init,
    .fini = lamp_fini,
    .decode = lamp_decode,
    .derive = lamp_derive,
};

CG_PLUGIN_ENTRY(lamp)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR)
        return NULL;
    host = host_table;
    return &desc;
}
