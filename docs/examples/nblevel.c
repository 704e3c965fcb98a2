/* nblevel: the decoder plugin of docs/add-a-sensor.md, made from plugins/template.
 *
 * The sensor: a (hypothetical, tutorial) NB-IoT well level sensor that publishes one raw
 * 10-byte frame per reading straight to the city's MQTT broker, on city/nblevel/<IMEI>:
 *
 *   byte 0     0xA5 start
 *   byte 1     frame type: 0x01 = measurement (anything else is refused)
 *   bytes 2-3  level above the well bottom, mm, unsigned big-endian; 0xFFFF = no echo
 *   bytes 4-5  temperature, 0.1 degC, signed big-endian
 *   bytes 6-7  battery, mV, unsigned big-endian
 *   byte 8     flags: bit 0 probe fault, bit 1 enclosure opened
 *   byte 9     checksum: sum of bytes 0..8, modulo 256
 *
 * Build it against the installed header only:
 *   cc -std=c11 -Wall -Wextra -O2 -shared -fPIC $(pkg-config --cflags citygate-plugin) \
 *      -o nblevel.so nblevel.c -lm */
#include <citygate/plugin.h>

#include <stdio.h>
#include <string.h>

#define FRAME_LEN 10
#define FRAME_START 0xA5
#define FRAME_MEASUREMENT 0x01
#define LEVEL_NO_ECHO 0xFFFF

/* The host table, kept from the entry call; valid until the plugin is unloaded. */
static const cg_host *host;

/* Validated by the core before any message arrives (citygate check names a bad one). */
static const cg_option options[] = {
    {"level_offset_m", CG_OPT_DOUBLE, "0", -100, 100, NULL,
     "added to the level: the height of the well bottom above the site's level datum"},
    {NULL, 0, NULL, 0, 0, NULL, NULL}, /* end of table */
};

static unsigned be16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

static int emit_number(cg_ctx *ctx, cg_emit_fn emit, const char *field, const char *unit,
                       double value, int quality)
{
    cg_sample s = {0}; /* ts 0 = message time, type 0 = number */
    s.field = field;
    s.unit = unit;
    s.value = value;
    s.quality = quality;
    return emit(ctx, &s); /* the core copies the sample */
}

static int emit_bool(cg_ctx *ctx, cg_emit_fn emit, const char *field, int on)
{
    cg_sample s = {0};
    s.field = field;
    s.unit = "";
    s.value = on ? 1 : 0;
    s.type = CG_BOOL;
    return emit(ctx, &s);
}

/* Never trust the payload: check the length, the start byte and the checksum before
 * reading a value, and reject (counted, logged rate-limited) rather than guess. */
static int nblevel_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    char why[64];
    if (host->payload_kind(ctx) != CG_PAYLOAD_BYTES)
        return host->reject(ctx, CG_BAD_TYPE, "expected a binary frame, got JSON");
    if (len != FRAME_LEN) {
        snprintf(why, sizeof why, "expected %d bytes, got %zu", FRAME_LEN, len);
        return host->reject(ctx, CG_BAD_SIZE, why);
    }
    if (payload[0] != FRAME_START)
        return host->reject(ctx, CG_BAD_FRAME, "no 0xA5 start byte");
    unsigned sum = 0;
    for (size_t i = 0; i < FRAME_LEN - 1; i++)
        sum += payload[i];
    if ((sum & 0xFF) != payload[FRAME_LEN - 1]) {
        snprintf(why, sizeof why, "checksum 0x%02X, computed 0x%02X", payload[FRAME_LEN - 1],
                 sum & 0xFF);
        return host->reject(ctx, CG_BAD_FRAME, why);
    }
    if (payload[1] != FRAME_MEASUREMENT) {
        snprintf(why, sizeof why, "frame type 0x%02X is not a measurement", payload[1]);
        return host->reject(ctx, CG_BAD_FRAME, why);
    }

    unsigned level_mm = be16(payload + 2);
    int16_t temp_tenths = (int16_t)be16(payload + 4);
    unsigned battery_mv = be16(payload + 6);
    int rc;
    /* No echo is "no measurement", never a plausible number: the rules treat
     * out_of_range as unknown, and the bad-quality rule reports it. */
    if (level_mm == LEVEL_NO_ECHO)
        rc = emit_number(ctx, emit, "level_m", "m", 0, CG_Q_OUT_OF_RANGE);
    else
        rc = emit_number(ctx, emit, "level_m", "m",
                         level_mm / 1000.0 + host->opt_double(ctx, "level_offset_m"), CG_Q_GOOD);
    if (rc == 0)
        rc = emit_number(ctx, emit, "temperature_c", "degC", temp_tenths / 10.0, CG_Q_GOOD);
    if (rc == 0)
        rc = emit_number(ctx, emit, "battery_v", "V", battery_mv / 1000.0, CG_Q_GOOD);
    if (rc == 0)
        rc = emit_bool(ctx, emit, "sensor_fault", payload[8] & 0x01);
    if (rc == 0)
        rc = emit_bool(ctx, emit, "tamper", payload[8] & 0x02);
    return rc;
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,            /* the ABI this file was compiled against */
    .size = sizeof(cg_plugin_desc),
    .name = "nblevel",                /* must equal the file name: nblevel.so */
    .version = "0.1.0",
    .description = "tutorial NB-IoT well level sensor: 10-byte frame A5 01 ...",
    .options = options,
    .decode = nblevel_decode,
};

/* The one exported symbol. Refuse a host of another major ABI. */
CG_PLUGIN_ENTRY(nblevel)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR)
        return NULL;
    host = host_table;
    return &desc;
}
