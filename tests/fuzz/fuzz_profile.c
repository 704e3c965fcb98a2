/* Fuzz the device-profile parser, and everything a parsed profile drives: the read plan
 * (build and repeated splits) and decode/encode of every point over register values
 * taken from the input. Must never crash, leak or read out of bounds. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "modbus/plan.h"
#include "modbus/profile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cJSON *j = cJSON_ParseWithLength((const char *)data, size);
    if (!j)
        return 0;
    gw_cfgerr e = {0};
    gw_profile *p = NULL;
    if (gw_profile_parse("fuzz.json", j, &e, &p) == 0) {
        gw_plan *plan = NULL;
        if (gw_plan_build(p, (int)(size % 130), &plan) == 0) {
            for (size_t i = 0; i < plan->n_reads && i < 64; i++)
                if (gw_plan_split(plan, i) == 0 && (size & 1))
                    i--;
            for (size_t k = 0; k < p->n_points; k++) {
                size_t r, off;
                if (gw_plan_locate(plan, plan->point_span[k], &r, &off) != 0)
                    __builtin_trap(); /* every point must be planned */
                if (off + p->points[k].count > plan->reads[r].count)
                    __builtin_trap();
            }
            gw_plan_free(plan);
        }
        uint16_t regs[GW_PROFILE_MAX_STRING_REGS];
        for (size_t i = 0; i < GW_PROFILE_MAX_STRING_REGS; i++)
            regs[i] = (uint16_t)((size > 2 * i + 1) ? (unsigned)(data[2 * i] << 8 | data[2 * i + 1]) : (unsigned)i);
        for (size_t k = 0; k < p->n_points; k++) {
            gw_point_value v, back;
            int dp = (int)(size % 11) - 1;
            if (gw_profile_decode_point(&p->points[k], regs, GW_PROFILE_MAX_STRING_REGS, dp, &v) != 0)
                continue;
            uint16_t out[GW_PROFILE_MAX_STRING_REGS] = {0};
            if (v.quality == GW_Q_GOOD &&
                gw_profile_encode_point(&p->points[k], &v, dp, out, GW_PROFILE_MAX_STRING_REGS) == 0)
                (void)gw_profile_decode_point(&p->points[k], out, GW_PROFILE_MAX_STRING_REGS, dp, &back);
        }
        gw_profile_free(p);
    }
    gw_cfgerr_free(&e);
    cJSON_Delete(j);
    return 0;
}
