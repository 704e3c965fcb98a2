/* Decoding cost per message on one core, for the payloads MQTT sensors send: a
 * ChirpStack v4 uplink and a The Things Stack v3 uplink (each with a base64 EM310-TILT
 * TLV frame chained to the manhole decoder), a plain JSON row through the json decoder's
 * field map, and the bare TLV frame as bytes. gw_decode_message is timed from payload
 * to samples (emitted to a counting sink).
 *
 * Baseline, measured in the same run: cJSON parsing the same JSON text and freeing the
 * tree (cJSON_ParseWithLength + cJSON_Delete, with malloc), the floor of any decoder
 * that reads these payloads with the library. The ratio is citygate / baseline.
 *
 *   bench_decode [N]     (default 300000 messages per payload, best of 3 runs)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "decode.h"
#include "timeutil.h"

static const char config[] =
    "{\"gateway\": {\"id\": \"GW-BENCH\", \"admin_code\": \"500103\", \"data_dir\": \"/tmp\"},"
    " \"mqtt_sources\": [{\"id\": \"lora\", \"url\": \"tcp://127.0.0.1:1883\", \"client_id\": \"bench\","
    "   \"subscriptions\": [{\"topic\": \"application/+/device/{dev_eui}/event/up\", \"decoder\": \"chirpstack\"},"
    "                      {\"topic\": \"v3/+/devices/{dev_id}/up\", \"decoder\": \"ttn\"},"
    "                      {\"topic\": \"city/sensors/json\", \"decoder\": \"json\", \"device_key\": \"meta.id\"}]}],"
    " \"devices\": ["
    "  {\"id\": \"mh-0001\", \"kind\": \"manhole\", \"interval_ms\": 60000,"
    "   \"mqtt\": {\"source\": \"lora\", \"key\": \"24e1247130000001\", \"decoder\": \"manhole\"},"
    "   \"component\": {\"code\": \"5001030102000001\"}, \"params\": {\"well_depth_m\": 2.5}},"
    "  {\"id\": \"wm-0001\", \"kind\": \"water\", \"interval_ms\": 60000,"
    "   \"mqtt\": {\"source\": \"lora\", \"key\": \"w-1\", \"options\": {\"fields\": {"
    "     \"pressure_mpa\": {\"path\": \"data.p_kpa\", \"scale\": 0.001, \"unit\": \"MPa\"},"
    "     \"level_m\": {\"path\": \"data.level_mm\", \"scale\": 0.001, \"unit\": \"m\"},"
    "     \"pump_on\": {\"path\": \"data.pump\", \"type\": \"bool\"}},"
    "     \"timestamp\": {\"path\": \"ts\", \"format\": \"epoch_ms\"}}},"
    "   \"component\": {\"code\": \"5001030101000001\"}}],"
    " \"outputs\": {\"mqtt\": {\"enabled\": false}, \"influxdb\": {\"enabled\": false}},"
    " \"http\": {\"enabled\": false}}";

/* EM310-TILT frame: battery 85 %, tilt axes (0, 1.50, 88.50 degrees), no alarm. */
static const unsigned char tlv[] = {0x01, 0x75, 0x55, 0x03, 0xCF, 0x00, 0x00, 0x96,
                                    0x00, 0x92, 0x22, 0x00};
#define TLV_B64 "AXVVA88AAJYAkiIA"

static const char chirpstack[] =
    "{\"deduplicationId\":\"3ac7e3c4-4401-4b8d-9386-000000000005\",\"time\":\"2026-06-01T08:00:01.005Z\","
    "\"deviceInfo\":{\"tenantId\":\"52f14cd4-c6f1-4fbd-8f87-4025e1d49242\",\"tenantName\":\"ChirpStack\","
    "\"applicationId\":\"17c82e96-be03-4f38-aef3-f83d48582d97\",\"applicationName\":\"city\","
    "\"deviceProfileId\":\"14855bf7-d10d-4aee-b618-ebfcb64dc7ad\",\"deviceProfileName\":\"EM310-TILT\","
    "\"deviceName\":\"mh-0001\",\"devEui\":\"24e1247130000001\",\"tags\":{}},"
    "\"devAddr\":\"00189440\",\"adr\":true,\"dr\":5,\"fCnt\":5,\"fPort\":85,\"confirmed\":false,"
    "\"rxInfo\":[{\"gatewayId\":\"0016c001f153a14c\",\"uplinkId\":4217106260,\"rssi\":-93,\"snr\":7.5,"
    "\"channel\":2,\"location\":{},\"context\":\"EFwMtA==\"}],"
    "\"txInfo\":{\"frequency\":486300000,\"modulation\":{\"lora\":{\"bandwidth\":125000,"
    "\"spreadingFactor\":7,\"codeRate\":\"CR_4_5\"}}},\"data\":\"" TLV_B64 "\"}";

static const char tts[] =
    "{\"end_device_ids\":{\"device_id\":\"mh-0001\",\"application_ids\":{\"application_id\":\"city\"},"
    "\"dev_eui\":\"24E1247130000001\",\"join_eui\":\"24E124C0002A0001\",\"dev_addr\":\"00189440\"},"
    "\"correlation_ids\":[\"as:up:01HZ8Q6N4W9V3Y2K7T5R1M0P8D\",\"rpc:/ttn.lorawan.v3.AppAs/SimulateUplink\"],"
    "\"received_at\":\"2026-06-01T08:00:01.123456789Z\",\"uplink_message\":{\"session_key_id\":\"AYfg2ZqL\","
    "\"f_port\":85,\"f_cnt\":5,\"frm_payload\":\"" TLV_B64 "\",\"rx_metadata\":[{\"gateway_ids\":"
    "{\"gateway_id\":\"eui-0016c001f153a14c\",\"eui\":\"0016C001F153A14C\"},\"time\":\"2026-06-01T08:00:01.005Z\","
    "\"timestamp\":2035681780,\"rssi\":-93,\"channel_rssi\":-93,\"snr\":7.5,\"uplink_token\":\"ChsKGQoNZXVp\","
    "\"channel_index\":2,\"received_at\":\"2026-06-01T08:00:01.050Z\"}],\"settings\":{\"data_rate\":{\"lora\":"
    "{\"bandwidth\":125000,\"spreading_factor\":7,\"coding_rate\":\"4/5\"}},\"frequency\":\"486300000\","
    "\"timestamp\":2035681780},\"received_at\":\"2026-06-01T08:00:01.100Z\",\"consumed_airtime\":\"0.061696s\","
    "\"network_ids\":{\"net_id\":\"000013\",\"tenant_id\":\"ttn\",\"cluster_id\":\"eu1\"}}}";

static const char row[] =
    "{\"meta\":{\"id\":\"w-1\"},\"ts\":1780300800123,\"data\":{\"p_kpa\":312,\"level_mm\":1215,\"pump\":1}}";

static long samples;

static int count(void *ctx, const gw_sample *s)
{
    (void)ctx;
    (void)s;
    samples++;
    return 0;
}

typedef struct payload {
    const char *name;
    size_t device;
    const char *decoder;
    const void *data;
    size_t len;
    int json; /* the baseline applies */
} payload;

/* Best of three runs, in microseconds per message; -1 on a decode error. */
static double time_decode(gw_decoders *d, const payload *p, long n)
{
    double best = -1;
    for (int run = 0; run < 3; run++) {
        int64_t t0 = gw_mono_us();
        for (long i = 0; i < n; i++)
            if (gw_decode_message(d, p->device, p->decoder, p->data, p->len, 1, count, NULL) != 0)
                return -1;
        double us = (double)(gw_mono_us() - t0) / (double)n;
        if (best < 0 || us < best)
            best = us;
    }
    return best;
}

static double time_cjson(const payload *p, long n)
{
    double best = -1;
    for (int run = 0; run < 3; run++) {
        int64_t t0 = gw_mono_us();
        for (long i = 0; i < n; i++) {
            cJSON *j = cJSON_ParseWithLength(p->data, p->len);
            if (!j)
                return -1;
            cJSON_Delete(j);
        }
        double us = (double)(gw_mono_us() - t0) / (double)n;
        if (best < 0 || us < best)
            best = us;
    }
    return best;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 300000;
    if (n <= 0) {
        fprintf(stderr, "usage: bench_decode [N]\n");
        return 2;
    }
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    gw_decoders *d = NULL;
    if (gw_config_load_mem("bench.json", config, sizeof config - 1, &errs, &cfg) != 0 ||
        gw_decoders_create(cfg, NULL, &errs, &d) != 0) {
        gw_cfgerr_print(&errs, 2);
        return 1;
    }
    const payload payloads[] = {
        {"ChirpStack v4 uplink, base64 TLV -> manhole", 0, "chirpstack", chirpstack, sizeof chirpstack - 1, 1},
        {"The Things Stack v3 uplink, base64 TLV -> manhole", 0, "ttn", tts, sizeof tts - 1, 1},
        {"plain JSON row, json decoder field map", 1, NULL, row, sizeof row - 1, 1},
        {"EM310-TILT TLV frame as bytes, manhole", 0, "manhole", tlv, sizeof tlv, 0},
    };
    printf("Decoding on one core, %ld messages per payload, best of 3 runs\n\n", n);
    printf("| payload | bytes | samples/msg | citygate us/msg | msgs/s | cJSON parse+free us/msg | citygate / cJSON |\n");
    printf("|---|---|---|---|---|---|---|\n");
    int rc = 0;
    for (size_t i = 0; i < sizeof payloads / sizeof payloads[0]; i++) {
        const payload *p = &payloads[i];
        samples = 0;
        double us = time_decode(d, p, n);
        if (us < 0) {
            fprintf(stderr, "bench_decode: %s: decode failed\n", p->name);
            rc = 1;
            continue;
        }
        double per = (double)samples / (3.0 * (double)n);
        if (p->json) {
            double base = time_cjson(p, n);
            printf("| %s | %zu | %.1f | %.3f | %.0f | %.3f | %.2fx |\n", p->name, p->len, per, us,
                   1e6 / us, base, us / base);
        } else {
            printf("| %s | %zu | %.1f | %.3f | %.0f | - | - |\n", p->name, p->len, per, us, 1e6 / us);
        }
    }
    gw_decoders_free(d);
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    return rc;
}
