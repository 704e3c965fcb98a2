/* ttn: The Things Stack v3 uplink messages (and TTN v2 for old integrations), an
 * envelope plugin like chirpstack:
 *
 *   v3: {"end_device_ids": {"device_id", "dev_eui", ...}, "received_at": RFC 3339,
 *        "uplink_message": {"f_port", "frm_payload": base64, "decoded_payload": {...},
 *        "rx_metadata": [{"rssi", "snr", ...}], "received_at"}}
 *   v2: {"dev_id", "hardware_serial", "payload_raw": base64, "payload_fields": {...},
 *        "metadata": {"time", "gateways": [{"rssi", "snr"}]}}
 *
 * The Things Stack omits empty, zero and false fields, so everything but the envelope
 * itself is optional. Emits rssi_dbm / snr_db of the best gateway. */
#include <citygate/plugin.h>

#include "cg_util.h"

static const cg_host *host;

static const cg_option options[] = {
    {"prefer", CG_OPT_ENUM, "object", 0, 0, "object|data",
     "when both are present, hand the device decoder decoded_payload (object) or frm_payload (data)"},
    {"radio_metrics", CG_OPT_BOOL, "true", 0, 0, NULL, "emit rssi_dbm and snr_db of the best gateway"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};

static int ttn_decode(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit)
{
    (void)payload;
    (void)len;
    int v3 = host->json_has(ctx, "end_device_ids");
    int v2 = !v3 && (host->json_has(ctx, "dev_id") || host->json_has(ctx, "hardware_serial"));
    if (!v3 && !v2)
        return host->reject(ctx, CG_BAD_MISSING, "no end_device_ids (not a The Things Stack uplink)");
    const char *obj = v3 ? "uplink_message.decoded_payload" : "payload_fields";
    const char *data = v3 ? "uplink_message.frm_payload" : "payload_raw";
    if (v3 && !host->json_has(ctx, "uplink_message"))
        return 0; /* join-accept, downlink ack ... on a shared topic: nothing to decode */

    int64_t ts;
    if (host->json_time(ctx, v3 ? "uplink_message.received_at" : "metadata.time", &ts) == 0 ||
        (v3 && host->json_time(ctx, "received_at", &ts) == 0))
        host->set_message_time(ctx, ts);

    int rc = 0;
    if (host->opt_bool(ctx, "radio_metrics"))
        rc = cgu_emit_radio(host, ctx, emit, v3 ? "uplink_message.rx_metadata" : "metadata.gateways",
                            "snr");
    if (rc != 0)
        return rc;

    return cgu_chain_preferred(host, ctx, obj, CG_CHAIN_OBJECT, data);
}

static const cg_plugin_desc desc = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_plugin_desc),
    .name = "ttn",
    .version = "1.0.0",
    .description = "The Things Stack v3 (and TTN v2) uplink envelope: time, RSSI/SNR, then frm_payload or decoded_payload",
    .flags = CG_PLUGIN_ENVELOPE,
    .options = options,
    .decode = ttn_decode,
};

CG_PLUGIN_ENTRY(ttn)
{
    if (CG_ABI_MAJOR_OF(host_abi) != CG_ABI_MAJOR || !CG_HOST_HAS(host_table, json_time))
        return NULL;
    host = host_table;
    return &desc;
}
