/* cg_util: helpers the in-tree decoder plugins share (gas, water, lamp, manhole,
 * chirpstack, ttn).
 *
 * Header-only (static inline), so each plugin — the .so and its built-in copy in
 * citygate_core — compiles its own copy and still needs nothing but <citygate/plugin.h>
 * from the host: no extra link step, no new exported symbol. Only the public ABI is
 * used; every function that calls the host takes the plugin's host table.
 * Out-of-tree plugins (plugins/template) do not use it: they build from the installed
 * header alone.
 *
 * THREADS: the same as the plugin callback that calls them (ctx is that callback's).
 * OWNERSHIP: everything is borrowed for the call; nothing is allocated. */
#ifndef CITYGATE_PLUGINS_CG_UTIL_H
#define CITYGATE_PLUGINS_CG_UTIL_H

#include <citygate/plugin.h>

#include <stdio.h>
#include <string.h>

/* ---- samples --------------------------------------------------------------------------- */

/* Emit a number. Returns what emit returns (0 or a negative code: stop decoding). */
static inline int cgu_emit_num(cg_ctx *ctx, cg_emit_fn emit, const char *field, double v,
                               const char *unit, int quality)
{
    cg_sample s = {.field = field, .unit = unit, .value = v, .quality = quality};
    return emit(ctx, &s);
}

/* Emit a boolean (any non-zero v is 1). */
static inline int cgu_emit_bool(cg_ctx *ctx, cg_emit_fn emit, const char *field, int v)
{
    cg_sample s = {.field = field, .value = v != 0, .type = CG_BOOL};
    return emit(ctx, &s);
}

/* CG_Q_GOOD when lo <= v <= hi, else CG_Q_OUT_OF_RANGE (NaN never reaches here: the host
 * refuses non-finite numbers before a plugin sees them). */
static inline int cgu_range_quality(double v, double lo, double hi)
{
    return v < lo || v > hi ? CG_Q_OUT_OF_RANGE : CG_Q_GOOD;
}

/* ---- little-endian values -------------------------------------------------------------- */

static inline uint16_t cgu_u16le(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline int16_t cgu_s16le(const uint8_t *p)
{
    return (int16_t)cgu_u16le(p);
}

static inline uint32_t cgu_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- TLV frames (Milesight style: channel id, channel type, little-endian value) -------- */

/* One channel of a frame, as the walker hands it to the plugin's channel function. */
typedef struct cgu_tlv {
    uint8_t id, type;
    const uint8_t *v;  /* the value; only `left` bytes follow */
    size_t left;       /* bytes after (id, type) to the end of the frame */
    size_t need;       /* set by the channel function: the value's length */
} cgu_tlv;

/* What a channel function returns besides 0 and negative codes (emit's or reject's). */
enum {
    CGU_TLV_SHORT = 0x7101,   /* the value is longer than what is left: frame truncated */
    CGU_TLV_UNKNOWN = 0x7102, /* not a channel this plugin knows */
};

/* Decode one channel: call cgu_tlv_short() with the value's length before reading c->v,
 * then emit. Return 0 (c->need set), a negative code, CGU_TLV_SHORT or CGU_TLV_UNKNOWN. */
typedef int (*cgu_tlv_fn)(cg_ctx *ctx, cg_emit_fn emit, cgu_tlv *c);

/* Declare the value's length n: 1 when fewer than n bytes are left (return CGU_TLV_SHORT),
 * else 0. */
static inline int cgu_tlv_short(cgu_tlv *c, size_t n)
{
    c->need = n;
    return c->left < n;
}

/* Walk a whole frame channel by channel. An empty frame, a truncated channel and an
 * unknown channel are rejected (CG_BAD_SIZE / CG_BAD_FRAME, naming the byte); a negative
 * code from a channel stops the walk and is returned. Samples emitted before a rejection
 * are kept (the plugin ABI's rule). */
static inline int cgu_tlv_walk(const cg_host *host, cg_ctx *ctx, const uint8_t *p, size_t len,
                               cg_emit_fn emit, cgu_tlv_fn channel)
{
    char why[80];
    size_t i = 0;
    int rc = 0;
    if (len == 0)
        return host->reject(ctx, CG_BAD_SIZE, "empty frame");
    while (i < len && rc == 0) {
        if (len - i < 2)
            goto short_frame;
        cgu_tlv c = {.id = p[i], .type = p[i + 1], .v = p + i + 2, .left = len - i - 2};
        rc = channel(ctx, emit, &c);
        if (rc == CGU_TLV_SHORT)
            goto short_frame;
        if (rc == CGU_TLV_UNKNOWN) {
            snprintf(why, sizeof why, "unknown channel %02x/%02x at byte %zu", c.id, c.type, i);
            return host->reject(ctx, CG_BAD_FRAME, why);
        }
        i += 2 + c.need;
    }
    return rc;
short_frame:
    snprintf(why, sizeof why, "frame truncated at byte %zu of %zu", i, len);
    return host->reject(ctx, CG_BAD_SIZE, why);
}

/* ---- JSON payloads --------------------------------------------------------------------- */

/* A number at key: 0 with *x, CG_ENOTFOUND when absent, or the rejection (CG_BAD_TYPE,
 * "<key> is not a number") when it is there with another type. */
static inline int cgu_json_number(const cg_host *host, cg_ctx *ctx, const char *key, double *x)
{
    char why[96];
    int r = host->json_number(ctx, key, x);
    if (r == 0 || r == CG_ENOTFOUND)
        return r;
    snprintf(why, sizeof why, "%s is not a number", key);
    return host->reject(ctx, CG_BAD_TYPE, why);
}

/* ---- envelopes (network-server uplinks) ------------------------------------------------ */

/* rssi_dbm and snr_db of the best gateway (highest RSSI) in the array at list, whose
 * elements hold "rssi" and snr_key. Emits nothing when no element has an RSSI, and no
 * snr_db when the best one has no SNR. Looks at the first 64 gateways. */
static inline int cgu_emit_radio(const cg_host *host, cg_ctx *ctx, cg_emit_fn emit,
                                 const char *list, const char *snr_key)
{
    int n = host->json_count(ctx, list);
    double best_rssi = 0, best_snr = 0;
    int have = 0;
    char path[96];
    for (int i = 0; i < n && i < 64; i++) {
        double rssi, snr;
        snprintf(path, sizeof path, "%s[%d].rssi", list, i);
        if (host->json_number(ctx, path, &rssi) != 0)
            continue;
        snprintf(path, sizeof path, "%s[%d].%s", list, i, snr_key);
        int has_snr = host->json_number(ctx, path, &snr) == 0;
        if (!have || rssi > best_rssi) {
            best_rssi = rssi;
            best_snr = has_snr ? snr : 0;
            have = has_snr ? 2 : 1;
        }
    }
    if (!have)
        return 0;
    int rc = cgu_emit_num(ctx, emit, "rssi_dbm", best_rssi, "dBm", CG_Q_GOOD);
    if (rc == 0 && have == 2)
        rc = cgu_emit_num(ctx, emit, "snr_db", best_snr, "dB", CG_Q_GOOD);
    return rc;
}

/* Chain the inner payload to the device decoder: the decoded object at obj (taken as
 * obj_how) when present and the "prefer" option says "object" or there is no raw data,
 * else the base64 data at data. 0 when there is neither (a MAC-only uplink). */
static inline int cgu_chain_preferred(const cg_host *host, cg_ctx *ctx, const char *obj, int obj_how,
                                      const char *data)
{
    int has_obj = host->json_has(ctx, obj);
    int has_data = host->json_has(ctx, data);
    if (has_obj && (strcmp(host->opt_string(ctx, "prefer"), "object") == 0 || !has_data))
        return host->chain(ctx, obj, obj_how);
    if (has_data)
        return host->chain(ctx, data, CG_CHAIN_BASE64);
    return 0;
}

#endif
