/* template: the skeleton a field engineer copies to write a decoder plugin.
 *
 *   cp -r /usr/share/citygate/plugin-template myplug && cd myplug
 *   sed -i 's/template/myplug/g' template.c && mv template.c myplug.c
 *   cc -std=c11 -Wall -Wextra -O2 -shared -fPIC $(pkg-config --cflags citygate-plugin) \
 *      -o myplug.so myplug.c -lm
 *   citygate decode --plugin-dir . --plugin myplug --hex 01F4
 *   sudo cp myplug.so $(pkg-config --variable=plugindir citygate-plugin)/
 *
 * then name it in the config: "mqtt": {"decoder": "myplug", "options": {...}} and run
 * `citygate check -c FILE`. docs/plugins.md explains every part; <citygate/plugin.h>
 * is the contract.
 *
 * This example reads a sensor that sends one big-endian 16-bit reading (tenths of a
 * unit) as raw bytes, or {"reading": number} as JSON, and emits it as field "value"
 * multiplied by the "scale" option. Replace decode() with your device's format. */
#include <citygate/plugin.h>

#include <stdio.h>
#include <string.h>

/* The host table, kept from the entry call; valid until the plugin is unloaded. */
static const cg_host *host;

/* Options the core validates for you before any message arrives. Each device sets
 * them in "mqtt.options"; read them with host->opt_*(ctx, "key"). */
static const cg_option options[] = {
    {"scale", CG_OPT_DOUBLE, "1.0", -1e6, 1e6, NULL, "multiply the reading by this"},
    {"field", CG_OPT_STRING, "value", 0, 47, NULL, "name of the emitted field"},
    {"unit", CG_OPT_STRING, "", 0, 15, NULL, "unit of the emitted field"},
    {NULL, 0, NULL, 0, 0, NULL, NULL}, /* end of table */
};

static int emit_reading(cg_ctx *ctx, cg_emit_fn emit, double reading)
{
    cg_sample s = {0}; /* ts 0 = message time, quality 0 = good, type 0 = number */
    s.field = host->opt_string(ctx, "field");
    s.unit = host->opt_string(ctx, "unit");
    s.value = reading * host->opt_double(ctx, "scale");
    return emit(ctx, &s); /* the core copies the sample */
}

/* Called for every message of every device using this plugin. Never trust the payload:
 * check every length before reading, and reject (counted, logged rate-limited) rather
 * than guess. */
static int template_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    if (host->payload_kind(ctx) == CG_PAYLOAD_JSON) {
        double x;
        int rc = host->json_number(ctx, "reading", &x);
        if (rc == CG_ENOTFOUND)
            return host->reject(ctx, CG_BAD_MISSING, "no \"reading\"");
        if (rc != 0)
            return host->reject(ctx, CG_BAD_TYPE, "\"reading\" is not a number");
        return emit_reading(ctx, emit, x);
    }
    if (len != 2) {
        char why[64];
        snprintf(why, sizeof why, "expected 2 bytes, got %zu", len);
        return host->reject(ctx, CG_BAD_SIZE, why);
    }
    int16_t raw = (int16_t)(uint16_t)(payload[0] << 8 | payload[1]);
    return emit_reading(ctx, emit, raw / 10.0);
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,            /* the ABI this file was compiled against */
    .size = sizeof(cg_plugin_desc),
    .name = "template",               /* must equal the file name: template.so */
    .version = "0.1.0",
    .description = "example: one 16-bit big-endian reading in tenths",
    .options = options,
    .decode = template_decode,
    /* optional: .init / .fini for per-device state, .derive for computed fields */
};

/* The one exported symbol. Refuse a host of another major ABI. */
CG_PLUGIN_ENTRY(template)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR)
        return NULL;
    host = host_table;
    return &desc;
}
