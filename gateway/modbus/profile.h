/* Device profiles: the declarative register map of one sensor model (devices/<name>.json,
 * schema devices/profile.schema.json, documented in docs/profiles.md), and the decoding
 * of raw Modbus registers / bits into values (and the inverse, for the simulator).
 *
 * ADDRESS BASE: every "address" is the 0-based PDU address sent on the wire (what
 * libmodbus takes). Datasheet references such as "30001" / "40001" / "400001" are
 * accepted only under the separate key "register" (string), which is converted:
 * 0xxxx coil, 1xxxx discrete input, 3xxxx input register, 4xxxx holding register,
 * address = number - 1 (5 digits: 1..9999, 6 digits: 1..65536); the table implied by
 * the first digit must agree with "table" when both are given. A bare number in
 * "address" is never reinterpreted ("address": 40001 means PDU address 40001).
 *
 * BYTE ORDER names list the wire order of the value's bytes, A = most significant:
 *   ABCD big-endian (high word first)          CDAB word-swapped (low word first)
 *   BADC bytes swapped inside each word        DCBA little-endian
 * For 64-bit values the pattern extends (CDAB = words in reverse order, bytes big-endian
 * inside each). For 16-bit values only the byte swap matters (BADC/DCBA swap).
 * Strings: ABCD/CDAB = high byte first in each register, BADC/DCBA = low byte first.
 *
 * VALUE: value = raw * scale / 10^dp + offset, dp = the decimal-point register's value
 * when the point has one (0 otherwise). Invalid markers (raw bit patterns for integer
 * types, decoded values for floats; NaN and ±Inf floats are always invalid) and min/max
 * give quality GW_Q_OUT_OF_RANGE, never a number that looks like a measurement.
 *
 * Ownership: a gw_profile owns all its memory; gw_profile_free releases it.
 * Thread: parsing on any one thread; a parsed profile is immutable and may be read by
 * any number of threads; decode/encode are pure functions. */
#ifndef CITYGATE_MODBUS_PROFILE_H
#define CITYGATE_MODBUS_PROFILE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "../config.h"
#include "../sample.h"

typedef enum {
    GW_MB_COIL = 0,     /* FC01, 1 bit */
    GW_MB_DISCRETE,     /* FC02, 1 bit ("discrete") */
    GW_MB_HOLDING,      /* FC03, 16-bit registers ("holding") */
    GW_MB_INPUT,        /* FC04, 16-bit registers ("input") */
    GW_MB__TABLES
} gw_mb_table;

typedef enum {
    GW_PT_BOOL = 0, /* coil / discrete input; on a register table: raw != 0 */
    GW_PT_BIT,      /* one bit ("bit": 0..15, 0 = LSB) of one 16-bit register */
    GW_PT_U16, GW_PT_I16, GW_PT_U32, GW_PT_I32, GW_PT_U64, GW_PT_I64,
    GW_PT_F32, GW_PT_F64,
    GW_PT_STRING,   /* "count" registers (default 1), 2 ASCII bytes each, NULs trimmed */
    GW_PT_BCD,      /* packed BCD, "count" 1 (4 digits, default) or 2 (8 digits) */
    GW_PT_ENUM,     /* u16 raw mapped to labels ("enum": {"85": "empty", "0xAA": "full"}) */
    GW_PT__TYPES
} gw_point_type;

typedef enum { GW_BO_ABCD = 0, GW_BO_CDAB, GW_BO_BADC, GW_BO_DCBA, GW_BO__COUNT } gw_byte_order;

#define GW_PROFILE_MAX_INVALID 8
#define GW_PROFILE_MAX_STRING_REGS 16 /* 32 characters; GW_TEXT_MAX bounds what is kept */

typedef struct gw_profile_enum {
    uint16_t raw;
    char label[GW_TEXT_MAX];
} gw_profile_enum;

typedef struct gw_profile_point {
    char field[GW_FIELD_MAX];   /* name used downstream (rules, InfluxDB): [a-z0-9_] */
    char unit[GW_UNIT_MAX];     /* "" when dimensionless */
    gw_mb_table table;
    uint16_t address;           /* 0-based PDU address */
    uint16_t count;             /* registers (or bits) occupied: from the type, or "count" */
    gw_point_type type;
    gw_byte_order order;        /* the point's "byte_order", else the profile's, else ABCD */
    int bit;                    /* GW_PT_BIT only: 0..15 */
    double scale;               /* default 1 */
    double offset;              /* default 0 */
    int round_dp;               /* integer types: decimals of scale and offset, to which
                                   values are rounded (raw 229 x 0.1 gives 22.9, not
                                   22.900000000000002); -1 when either has more than 9 */
    int has_dp;                 /* "decimal_register" given */
    gw_mb_table dp_table;       /* register table of the decimal-point register */
    uint16_t dp_address;        /* its 0-based address; its value (0..9) is the exponent */
    int has_min, has_max;       /* valid range of the final value */
    double min, max;
    size_t n_invalid;
    uint64_t invalid_raw[GW_PROFILE_MAX_INVALID];   /* integer types: raw bit pattern */
    double invalid_value[GW_PROFILE_MAX_INVALID];   /* f32/f64: decoded value */
    gw_profile_enum *enums;     /* GW_PT_ENUM: the map (owned) */
    size_t n_enums;
} gw_profile_point;

typedef struct gw_profile {
    char *name;                 /* "name" in the file (default: from the file name) */
    char *file;                 /* path it was parsed from (for messages) */
    char *description, *manufacturer, *model; /* may be NULL */
    gw_byte_order order;        /* profile default "byte_order" */
    int max_read_registers;     /* "max_read_registers", default 125 (1..125) */
    int max_read_bits;          /* "max_read_bits", default 2000 (1..2000) */
    int max_gap;                /* "max_gap" override, -1 = the bus's */
    /* Serial defaults as documented by the vendor (informational, used by `check` to
     * warn on a mismatched bus and by the simulator); 0 / '\0' = not stated. */
    int default_baud;
    char default_parity;
    int default_unit_id;
    gw_profile_point *points;
    size_t n_points;
} gw_profile;

/* A decoded (or to-be-encoded) point value. */
typedef struct gw_point_value {
    gw_value_type type;         /* GW_V_NUMBER, GW_V_BOOL (value 0/1) or GW_V_TEXT */
    double value;               /* numbers, booleans; enums: the raw code */
    char text[GW_TEXT_MAX];     /* GW_V_TEXT: string contents or enum label */
    gw_quality quality;         /* GW_Q_GOOD, GW_Q_OUT_OF_RANGE or GW_Q_DECODE_ERROR */
    uint64_t raw;               /* raw bit pattern (integers, enum, bcd, floats' bits) */
} gw_point_value;

/* Parse and validate one profile document. file names the source in error lines;
 * every problem is appended to errs as "FILE: json.path: message" (e.g.
 * "devices/x.json: points[3].type: unknown type \"float\" (did you mean \"f32\"?)").
 * Returns 0 with *out (free with gw_profile_free), GW_ECONFIG with errs filled, or
 * GW_ENOMEM. json is borrowed (not kept). Thread: caller's. */
int gw_profile_parse(const char *file, const cJSON *json, gw_cfgerr *errs, gw_profile **out);
/* gw_cfg_read_json(path) + gw_profile_parse. */
int gw_profile_load(const char *path, gw_cfgerr *errs, gw_profile **out);
void gw_profile_free(gw_profile *p);

/* The point whose field is name, or NULL. */
const gw_profile_point *gw_profile_point_by_field(const gw_profile *p, const char *name);

/* Decode one point from its raw words. raw holds pt->count elements starting at
 * pt->address (for coil/discrete tables one element per bit, 0 or 1); n is the number
 * available. dp is the decimal-point register's value (ignored unless pt->has_dp; a
 * dp outside 0..9 gives GW_Q_DECODE_ERROR). Returns 0 with out filled (its quality
 * says good / out_of_range / decode_error), or GW_EINVAL when n < pt->count. */
int gw_profile_decode_point(const gw_profile_point *pt, const uint16_t *raw, size_t n, int dp,
                            gw_point_value *out);

/* The inverse, for the simulator and tests: write in (value for numbers/bools, text
 * for strings, text or value for enums) as raw words into raw[0..pt->count). For
 * GW_PT_BIT the other bits of raw[0] are kept (read-modify-write). Rounds to the
 * nearest raw integer. Returns 0, GW_EINVAL (n < count, value not representable in
 * the type, dp outside 0..9) or GW_ENOTFOUND (enum label unknown). */
int gw_profile_encode_point(const gw_profile_point *pt, const gw_point_value *in, int dp,
                            uint16_t *raw, size_t n);

/* Names as they appear in profile files; parse returns 0 or GW_EINVAL. */
const char *gw_mb_table_name(gw_mb_table t);          /* "coil", "discrete", "holding", "input" */
int gw_mb_table_parse(const char *s, gw_mb_table *out);
const char *gw_point_type_name(gw_point_type t);      /* "u16", "f32", "enum", ... */
int gw_point_type_parse(const char *s, gw_point_type *out);
const char *gw_byte_order_name(gw_byte_order o);      /* "ABCD", ... */
int gw_byte_order_parse(const char *s, gw_byte_order *out);
/* 1 for coil / discrete (bit tables), 0 for register tables. */
int gw_mb_table_is_bits(gw_mb_table t);

#endif
