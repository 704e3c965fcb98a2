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

#include <stdio.h>
#include <string.h>

static const cg_host *host;

static const cg_option options[] = {
    {"prefer", CG_OPT_ENUM, "object", 0, 0, "object|data",
     "when both are present, hand the device decoder the codec's object or the raw data"},
    {"radio_metrics", CG_OPT_BOOL, "true", 0, 0, NULL, "emit rssi_dbm and snr_db of the best gateway"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int emit_radio(cg_ctx *ctx, cg_emit_fn emit, const char *snr_key)
{
    int n = host->json_count(ctx, "rxInfo");
    double best_rssi = 0, best_snr = 0;
    int have = 0;
    char path[64];
    for (int i = 0; i < n && i < 64; i++) {
        double rssi, snr;
        snprintf(path, sizeof path, "rxInfo[%d].rssi", i);
        if (host->json_number(ctx, path, &rssi) != 0)
            continue;
        snprintf(path, sizeof path, "rxInfo[%d].%s", i, snr_key);
        int has_snr = host->json_number(ctx, path, &snr) == 0;
        if (!have || rssi > best_rssi) {
            best_rssi = rssi;
            best_snr = has_snr ? snr : best_snr;
            have = has_snr ? 2 : 1;
        }
    }
    if (!have)
        return 0;
    cg_sample s = {.field = "rssi_dbm", .unit = "dBm", .value = best_rssi};
    int rc = emit(ctx, &s);
    if (rc == 0 && have == 2) {
        cg_sample t = {.field = "snr_db", .unit = "dB", .value = best_snr};
        rc = emit(ctx, &t);
    }
    return rc;
}

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
        rc = emit_radio(ctx, emit, v3 ? "loRaSNR" : "snr");
    if (rc != 0)
        return rc;

    int has_obj = host->json_has(ctx, "object") || host->json_has(ctx, "objectJSON");
    int has_data = host->json_has(ctx, "data");
    int want_obj = strcmp(host->opt_string(ctx, "prefer"), "object") == 0;
    if (has_obj && (want_obj || !has_data)) {
        if (host->json_has(ctx, "object"))
            return host->chain(ctx, "object", CG_CHAIN_OBJECT);
        return host->chain(ctx, "objectJSON", CG_CHAIN_JSON_TEXT);
    }
    if (has_data)
        return host->chain(ctx, "data", CG_CHAIN_BASE64);
    /* A MAC-only uplink (fPort 0) carries no application payload: nothing to decode. */
    return 0;
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
