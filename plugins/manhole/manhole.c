/* manhole: smart manhole cover monitors (智能井盖).
 *
 * Decodes Milesight-style TLV frames (EM310-TILT, EM400-MUD / -UDL, EM300-MCS: channel
 * id, channel type, little-endian value; domain.md §4.3) and the decoded objects their
 * codecs produce (ChirpStack `object`, TTS `decoded_payload`, plain JSON), into:
 *   tilt_deg       angle between the cover's gravity vector and its reference attitude,
 *                  minus the background angle (|angle - reference_tilt_deg|)
 *   cover_open     contact / position switch (1 = open or displaced)
 *   water_level_m  well depth (device param well_depth_m) - distance to water
 *   distance_m     raw ultrasonic distance
 *   temperature_c, battery_pct
 * See README.md for the frame table and options. */
#include <citygate/plugin.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cg_util.h"

static const cg_host *host;

static const cg_option options[] = {
    {"reference_tilt_deg", CG_OPT_DOUBLE, "0", 0, 180, NULL,
     "background angle of the installed cover, subtracted from the measured tilt"},
    {"ref_x", CG_OPT_DOUBLE, "0", -1e6, 1e6, NULL, "reference attitude: gravity vector x (any unit)"},
    {"ref_y", CG_OPT_DOUBLE, "0", -1e6, 1e6, NULL, "reference attitude: gravity vector y"},
    {"ref_z", CG_OPT_DOUBLE, "1", -1e6, 1e6, NULL, "reference attitude: gravity vector z"},
    {"mount_offset_m", CG_OPT_DOUBLE, "0", -10, 10, NULL,
     "distance from the top of the well to the ultrasonic sensor's zero"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

/* Tilt from a gravity vector g (accelerometer axes, any unit) against the reference. */
static int emit_tilt_vector(cg_ctx *ctx, cg_emit_fn emit, double gx, double gy, double gz,
                            int quality)
{
    double rx = host->opt_double(ctx, "ref_x"), ry = host->opt_double(ctx, "ref_y"),
           rz = host->opt_double(ctx, "ref_z");
    double ng = sqrt(gx * gx + gy * gy + gz * gz), nr = sqrt(rx * rx + ry * ry + rz * rz);
    if (!(ng > 1e-9) || !(nr > 1e-9))
        return host->reject(ctx, CG_BAD_RANGE, "zero-length acceleration or reference vector");
    double c = (gx * rx + gy * ry + gz * rz) / (ng * nr);
    if (c > 1)
        c = 1;
    if (c < -1)
        c = -1;
    double angle = acos(c) * 180.0 / M_PI;
    double tilt = fabs(angle - host->opt_double(ctx, "reference_tilt_deg"));
    return cgu_emit_num(ctx, emit, "tilt_deg", tilt, "deg", quality);
}

/* EM310-TILT reports each axis' angle to the horizontal plane (flat: 0, 0, 90), so the
 * gravity vector in the sensor frame is (sin ax, sin ay, sin az). */
static int emit_tilt_angles(cg_ctx *ctx, cg_emit_fn emit, double ax, double ay, double az)
{
    int q = fabs(ax) > 180 || fabs(ay) > 180 || fabs(az) > 180 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD;
    double k = M_PI / 180.0;
    return emit_tilt_vector(ctx, emit, sin(ax * k), sin(ay * k), sin(az * k), q);
}

static int emit_distance(cg_ctx *ctx, cg_emit_fn emit, double mm)
{
    double d = mm / 1000.0;
    int rc = cgu_emit_num(ctx, emit, "distance_m", d, "m", CG_Q_GOOD);
    double depth;
    if (rc == 0 && host->device_param(ctx, "well_depth_m", &depth) == 0) {
        double level = depth - d - host->opt_double(ctx, "mount_offset_m");
        /* An echo from below the bottom or above the cover is a bad reading. */
        int q = level < -0.05 || level > depth + 0.05 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD;
        rc = cgu_emit_num(ctx, emit, "water_level_m", level < 0 && q == CG_Q_GOOD ? 0 : level, "m", q);
    }
    return rc;
}

static int emit_battery(cg_ctx *ctx, cg_emit_fn emit, double pct)
{
    return cgu_emit_num(ctx, emit, "battery_pct", pct, "%",
                    cgu_range_quality(pct, 0, 100));
}

/* Length of the value after (id, type) for frames we skip: device info and replies. */
static int info_len(uint8_t type)
{
    switch (type) {
    case 0x01: case 0x0b: case 0x0f: case 0xfe: return 1;
    case 0x09: case 0x0a: case 0xff: return 2;
    case 0x16: return 8;
    }
    return -1;
}

static int manhole_channel(cg_ctx *ctx, cg_emit_fn emit, cgu_tlv *c)
{
    const uint8_t *v = c->v;
    uint8_t id = c->id, type = c->type;
    if (id == 0x01 && type == 0x75) {
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        return emit_battery(ctx, emit, v[0]);
    }
    if (id == 0x03 && type == 0xcf) {
        if (cgu_tlv_short(c, 7)) return CGU_TLV_SHORT;
        return emit_tilt_angles(ctx, emit, cgu_s16le(v) / 100.0, cgu_s16le(v + 2) / 100.0,
                                cgu_s16le(v + 4) / 100.0);
    }
    if ((id == 0x03 || id == 0x83) && type == 0x67) {
        if (cgu_tlv_short(c, id == 0x83 ? 3 : 2)) return CGU_TLV_SHORT;
        return cgu_emit_num(ctx, emit, "temperature_c", cgu_s16le(v) / 10.0, "°C", CG_Q_GOOD);
    }
    if ((id == 0x04 || id == 0x84) && type == 0x82) {
        if (cgu_tlv_short(c, id == 0x84 ? 3 : 2)) return CGU_TLV_SHORT;
        return emit_distance(ctx, emit, cgu_u16le(v));
    }
    if ((id == 0x05 || id == 0x06) && type == 0x00) {
        /* 0x05: EM400 position (0 normal, 1 tilt = cover lifted);
         * 0x06: EM300-MCS style magnet contact (0 closed, 1 open). */
        if (cgu_tlv_short(c, 1)) return CGU_TLV_SHORT;
        if (v[0] > 1) {
            char why[80];
            snprintf(why, sizeof why, "channel %02x: state %u is not 0/1", id, v[0]);
            return host->reject(ctx, CG_BAD_RANGE, why);
        }
        return cgu_emit_bool(ctx, emit, "cover_open", v[0]);
    }
    if (id == 0x07 && type == 0x71) {
        /* citygate convention: raw accelerometer x, y, z int16 LE in mg. */
        if (cgu_tlv_short(c, 6)) return CGU_TLV_SHORT;
        return emit_tilt_vector(ctx, emit, cgu_s16le(v), cgu_s16le(v + 2), cgu_s16le(v + 4), CG_Q_GOOD);
    }
    if ((id == 0xff || id == 0xfe) && info_len(type) > 0) {
        if (cgu_tlv_short(c, (size_t)info_len(type))) return CGU_TLV_SHORT;
        return 0;
    }
    return CGU_TLV_UNKNOWN;
}

/* Enumerations arrive as words ("tilt", "open") or numbers (RAW_VALUE codecs). */
static int json_state(cg_ctx *ctx, const char *key, const char *on, const char *off, int *out)
{
    char buf[32];
    double x;
    int rc = host->json_number(ctx, key, &x);
    if (rc == 0) {
        if (x != 0 && x != 1)
            return CG_EINVAL;
        *out = x != 0;
        return 0;
    }
    if (rc == CG_ENOTFOUND)
        return rc;
    if (host->json_string(ctx, key, buf, sizeof buf) != 0)
        return CG_EINVAL;
    if (strcmp(buf, on) == 0 || strcmp(buf, "open") == 0) {
        *out = 1;
        return 0;
    }
    if (strcmp(buf, off) == 0 || strcmp(buf, "close") == 0 || strcmp(buf, "closed") == 0) {
        *out = 0;
        return 0;
    }
    return CG_EINVAL;
}

static int decode_json(cg_ctx *ctx, cg_emit_fn emit)
{
    double a[3], x;
    char why[80];
    int rc = 0, found = 0, r;
    const char *bad = NULL;

    static const char *const angles[3] = {"angle_x", "angle_y", "angle_z"};
    static const char *const accel[3] = {"acc_x", "acc_y", "acc_z"};
    int na = 0, nacc = 0;
    for (int k = 0; k < 3; k++) {
        if ((r = host->json_number(ctx, angles[k], &a[k])) == 0)
            na++;
        else if (r != CG_ENOTFOUND)
            bad = angles[k];
    }
    if (na == 3) {
        rc = emit_tilt_angles(ctx, emit, a[0], a[1], a[2]);
        found = 1;
    } else {
        for (int k = 0; k < 3; k++) {
            if ((r = host->json_number(ctx, accel[k], &a[k])) == 0)
                nacc++;
            else if (r != CG_ENOTFOUND)
                bad = accel[k];
        }
        if (nacc == 3) {
            rc = emit_tilt_vector(ctx, emit, a[0], a[1], a[2], CG_Q_GOOD);
            found = 1;
        } else if ((r = host->json_number(ctx, "tilt_deg", &x)) == 0 ||
                   (r = host->json_number(ctx, "tilt", &x)) == 0) {
            rc = cgu_emit_num(ctx, emit, "tilt_deg", fabs(x - host->opt_double(ctx, "reference_tilt_deg")),
                          "deg", fabs(x) > 180 ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD);
            found = 1;
        } else if (r != CG_ENOTFOUND) {
            bad = "tilt";
        }
    }
    if (rc == 0 && (r = host->json_number(ctx, "distance", &x)) == 0) {
        rc = emit_distance(ctx, emit, x);
        found = 1;
    } else if (r != CG_ENOTFOUND && rc == 0) {
        bad = "distance";
    }
    static const char *const batt[2] = {"battery", "battery_pct"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        if ((r = host->json_number(ctx, batt[k], &x)) == 0) {
            rc = emit_battery(ctx, emit, x);
            found = 1;
            break;
        } else if (r != CG_ENOTFOUND) {
            bad = batt[k];
        }
    }
    if (rc == 0 && (r = host->json_number(ctx, "temperature", &x)) == 0) {
        rc = cgu_emit_num(ctx, emit, "temperature_c", x, "°C", CG_Q_GOOD);
        found = 1;
    } else if (r != CG_ENOTFOUND && rc == 0) {
        bad = "temperature";
    }
    static const char *const contact[4] = {"cover_open", "position", "magnet_status", "door"};
    for (int k = 0; k < 4 && rc == 0; k++) {
        int st;
        r = json_state(ctx, contact[k], k == 1 ? "tilt" : "open", k == 1 ? "normal" : "close", &st);
        if (r == 0) {
            rc = cgu_emit_bool(ctx, emit, "cover_open", st);
            found = 1;
            break;
        } else if (r != CG_ENOTFOUND) {
            bad = contact[k];
        }
    }
    if (rc != 0)
        return rc;
    if (bad) {
        snprintf(why, sizeof why, "%s has the wrong type or value", bad);
        return host->reject(ctx, CG_BAD_TYPE, why);
    }
    if (!found)
        return host->reject(ctx, CG_BAD_MISSING, "no manhole field (angle_x.., acc_x.., tilt, distance, battery, position)");
    return 0;
}

static int manhole_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    if (host->payload_kind(ctx) == CG_PAYLOAD_JSON)
        return decode_json(ctx, emit);
    return cgu_tlv_walk(host, ctx, payload, len, emit, manhole_channel);
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_plugin_desc),
    .name = "manhole",
    .version = "1.0.0",
    .description = "manhole covers: tilt, cover contact, water level, battery (Milesight EM310/EM400 TLV or JSON)",
    .options = options,
    .decode = manhole_decode,
};

CG_PLUGIN_ENTRY(manhole)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR)
        return NULL;
    host = host_table;
    return &desc;
}
