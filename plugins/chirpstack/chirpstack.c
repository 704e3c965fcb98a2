/* chirpstack: ChirpStack uplink events (v4 `event/up`, and v3 for older servers), an
 * envelope plugin: it takes the time and radio metrics from the envelope and chains the
 * sensor payload to the device's decoder (docs/plugins.md "Chaining").
 *
 *   v4: {"time": RFC 3339, "deviceInfo": {"devEui": ...}, "fPort": n, "data": base64,
 *        "object": {decoded by the codec, only with a codec}, "rxInfo": [{"rssi", "snr"}]}
 *   v3: {"devEUI": ..., "data": base64, "objectJSON": "{...}" (a string),
 *        "rxInfo": [{"rssi", "loRaSNR", "time"}]}
 *
 * Emits rssi_dbm and snr_db (the best gateway's) when radio_metrics is on. */
#include <citygate/plugin.h>

#include "cg_util.h"

static const cg_host *host;

static const cg_option options[] = {
    {"prefer", CG_OPT_ENUM, "object", 0, 0, "object|data",
     "when both are present, hand the device decoder the codec's object or the raw data"},
    {"radio_metrics", CG_OPT_BOOL, "true", 0, 0, NULL, "emit rssi_dbm and snr_db of the best gateway"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int chirpstack_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    (void)payload;
    (void)len;
    int v3 = !host->json_has(ctx, "deviceInfo") && host->json_has(ctx, "devEUI");
    if (!v3 && !host->json_has(ctx, "deviceInfo"))
        return host->reject(ctx, CG_BAD_MISSING, "no deviceInfo (not a ChirpStack v4 uplink)");

    /* The network server's time of the uplink (v3 has it per gateway only). */
    int64_t ts;
    if (host->json_time(ctx, v3 ? "rxInfo[0].time" : "time", &ts) == 0)
        host->set_message_time(ctx, ts);

    int rc = 0;
    if (host->opt_bool(ctx, "radio_metrics"))
        rc = cgu_emit_radio(host, ctx, emit, "rxInfo", v3 ? "loRaSNR" : "snr");
    if (rc != 0)
        return rc;

    /* v4's codec output is an object, v3's objectJSON a string holding JSON. A MAC-only
     * uplink (fPort 0) carries no application payload: nothing to decode. */
    if (host->json_has(ctx, "object"))
        return cgu_chain_preferred(host, ctx, "object", CG_CHAIN_OBJECT, "data");
    return cgu_chain_preferred(host, ctx, "objectJSON", CG_CHAIN_JSON_TEXT, "data");
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_plugin_desc),
    .name = "chirpstack",
    .version = "1.0.0",
    .description = "ChirpStack v4 (and v3) uplink envelope: time, RSSI/SNR, then data or object to the device decoder",
    .flags = CG_PLUGIN_ENVELOPE,
    .options = options,
    .decode = chirpstack_decode,
};

CG_PLUGIN_ENTRY(chirpstack)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR || !CG_HOST_HAS(host_table, json_time))
        return NULL;
    host = host_table;
    return &desc;
}
