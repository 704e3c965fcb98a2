/* Fuzz the rule loader: any bytes as a rule set, checked alone, then compiled for a
 * device with params and overrides and run through the engine for a few samples and
 * ticks. Nothing may crash, leak or trip the sanitizers. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "config.h"
#include "rules/engine.h"
#include "rules/rule.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int commit_ok(void *ctx, const gw_event_out *ev)
{
    (void)ctx;
    return ev->json && ev->json_len ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *txt = malloc(size + 1);
    if (!txt)
        return 0;
    memcpy(txt, data, size);
    txt[size] = '\0';
    cJSON *doc = cJSON_Parse(txt);
    free(txt);
    if (!doc)
        return 0;
    gw_cfgerr errs = {0};
    gw_rules_check_doc(doc, "fuzz.json", &errs);
    gw_cfgerr_free(&errs);

    gw_config cfg;
    memset(&cfg, 0, sizeof cfg);
    gw_device dev;
    memset(&dev, 0, sizeof dev);
    gw_cfg_doc set = {(char *)"fuzz", (char *)"fuzz.json", doc};
    char *rs = (char *)"fuzz";
    dev.id = (char *)"dev-1";
    dev.kind = (char *)"manhole";
    dev.enabled = 1;
    dev.interval_ms = 1000;
    dev.rule_sets = &rs;
    dev.n_rule_sets = 1;
    dev.component.code = (char *)"5001030102000001";
    dev.params = cJSON_Parse("{\"p\": 100, \"rated_power_w\": 50, \"well_depth_m\": 2}");
    /* Overrides for every rule id in the document, from the document's own first rule
     * settings: exercises the override path with fuzzed values. */
    dev.overrides = cJSON_CreateObject();
    const cJSON *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(doc, "rules")) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
        const cJSON *ov = cJSON_GetObjectItemCaseSensitive(r, "override");
        if (cJSON_IsString(id) && ov && !cJSON_GetObjectItemCaseSensitive(dev.overrides, id->valuestring))
            cJSON_AddItemToObject(dev.overrides, id->valuestring, cJSON_Duplicate(ov, 1));
    }
    cfg.file = (char *)"fuzz-config.json";
    cfg.gateway.id = (char *)"GW-FUZZ";
    cfg.devices = &dev;
    cfg.n_devices = 1;
    cfg.rulesets = &set;
    cfg.n_rulesets = 1;
    gw_rules_check(&cfg, &errs);
    gw_cfgerr_free(&errs);

    gw_engine_hooks hooks = {commit_ok, NULL};
    gw_engine *e = NULL;
    if (gw_engine_new(&cfg, &hooks, NULL, &e) == 0) {
        static const char *const fields[] = {"a", "b", "c", "x", "tilt_deg", "power_w", "ch4_lel"};
        int64_t t = 1780272000000000LL;
        for (int i = 0; i < 40; i++) {
            gw_sample s;
            gw_sample_set(&s, "dev-1", fields[i % 7], (double)((i * 37) % 101) - 10, "u",
                          i % 11 == 10 ? GW_Q_DECODE_ERROR : GW_Q_GOOD, t);
            if (i % 13 == 5) {
                s.type = GW_V_TEXT;
                strcpy(s.text, "x");
            }
            gw_engine_on_sample(e, &s);
            t += 7000000;
            if (i % 5 == 0)
                gw_engine_tick(e, t);
        }
        char *reply = NULL;
        gw_engine_command(e, "ack", "{\"alarm\": \"dev-1/r\"}", &reply);
        gw_free(reply);
        char *snap = NULL;
        if (gw_engine_alarms_json(e, &snap) == 0)
            gw_free(snap);
        gw_engine_free(e);
    }
    cJSON_Delete(dev.params);
    cJSON_Delete(dev.overrides);
    cJSON_Delete(doc);
    return 0;
}
