/* Every built-in decoder on arbitrary bytes, through the same dispatcher the ingest
 * calls (gw_decode_message, kind auto-detected). The first byte picks the device, and
 * with it the decoder chain; the rest is the payload. Devices:
 *   0 json (every top-level number)      1 json with a field map and a timestamp
 *   2 chirpstack -> manhole              3 ttn -> lamp (derive: energy, astro)
 *   4 manhole   5 lamp (schedule)        6 water (4-20 mA)   7 gas
 *   8 chirpstack -> json                 9 ttn -> water
 * Corpus: tests/fuzz/corpus/decoders/, one file per plugin vector (selector + payload). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "decode.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static gw_config cfg;
static gw_device devs[10];
static gw_mqtt_source src;
static gw_mqtt_sub subs[1];
static gw_decoders *decoders;

static int sink(void *ctx, const gw_sample *s)
{
    /* Touch everything the consumer would, so sanitizers see bad samples. */
    size_t *n = ctx;
    *n += strlen(s->device) + strlen(s->field) + strlen(s->unit) + (s->value != s->value);
    return 0;
}

static void setup(void)
{
    static const struct {
        const char *decoder, *options;
    } d[10] = {
        {"json", NULL},
        {"json", "{\"fields\": {\"a\": {\"path\": \"x.y[1]\", \"scale\": 2, \"unit\": \"m\"},"
                 " \"b\": {\"path\": \"s\", \"type\": \"text\"}, \"c\": {\"path\": \"b\", \"type\": \"bool\"}},"
                 " \"timestamp\": {\"path\": \"t\", \"format\": \"auto\"}}"},
        {"manhole", "{\"reference_tilt_deg\": 3}"},
        {"lamp", NULL},
        {"manhole", NULL},
        {"lamp", "{\"mode\": \"schedule\"}"},
        {"water", "{\"pressure_unit\": \"ma\"}"},
        {"gas", NULL},
        {NULL, NULL},
        {"water", NULL},
    };
    static const char *const via[10] = {NULL, NULL, "chirpstack", "ttn", NULL, NULL, NULL, NULL,
                                        "chirpstack", "ttn"};
    gw_log_set_level(GW_LOG_ERROR); /* rejections are expected by the thousand */
    static gw_mqtt_source srcs[10];
    static gw_mqtt_sub ss[10];
    static char ids[10][16];
    for (int i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof ids[i], "dev-%d", i);
        ss[i] = (gw_mqtt_sub){.topic = "t/#", .decoder = (char *)(via[i] ? via[i] : (d[i].decoder ? d[i].decoder : "json")), .qos = 1};
        srcs[i] = (gw_mqtt_source){.id = ids[i], .subs = &ss[i], .n_subs = 1, .max_payload = 65536};
        devs[i] = (gw_device){.id = ids[i], .kind = "fuzz", .source = GW_SRC_MQTT, .enabled = 1,
                              .mqtt_source = ids[i], .decoder = (char *)d[i].decoder,
                              .decoder_options = d[i].options ? cJSON_Parse(d[i].options) : NULL,
                              .params = cJSON_Parse("{\"well_depth_m\": 2.5}")};
        devs[i].component.location = (gw_location){.has = i == 3, .lon = 106.55, .lat = 29.56};
    }
    (void)src;
    (void)subs;
    cfg.file = "fuzz";
    cfg.devices = devs;
    cfg.n_devices = 10;
    cfg.mqtt_sources = srcs;
    cfg.n_mqtt_sources = 10;
    gw_cfgerr errs = {0};
    if (gw_decoders_create(&cfg, NULL, &errs, &decoders) != 0) {
        gw_cfgerr_print(&errs, 2);
        abort();
    }
    gw_cfgerr_free(&errs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!decoders)
        setup();
    if (size < 1)
        return 0;
    size_t n = 0;
    gw_decode_message(decoders, data[0] % 10, NULL, data + 1, size - 1, 1780300800000000LL, sink, &n);
    return 0;
}
