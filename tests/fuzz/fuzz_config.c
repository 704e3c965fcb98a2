/* Fuzz target: the whole configuration loader from memory. Any input must end in
 * 0 (with a config) or GW_ECONFIG / GW_ENOMEM (with errors), never a crash or leak.
 * Relative paths in the input resolve against the working directory, read-only. */
#include "config.h"
#include "error.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    int rc = gw_config_load_mem("fuzz.json", (const char *)data, size, &errs, &cfg);
    if (rc == 0) {
        /* Exercise the lookups on what was built. */
        for (size_t i = 0; i < cfg->n_devices; i++) {
            const gw_device *d = &cfg->devices[i];
            if (gw_config_device(cfg, d->id) == NULL)
                abort();
            if (d->bus && !gw_config_bus(cfg, d->bus))
                abort();
            if (d->profile && !gw_config_profile(cfg, d->profile))
                abort();
            for (size_t k = 0; k < d->n_rule_sets; k++)
                if (!gw_config_ruleset(cfg, d->rule_sets[k]))
                    abort();
        }
        if (errs.n)
            abort();
    } else if (rc != GW_ECONFIG && rc != GW_ENOMEM) {
        abort();
    } else if (cfg) {
        abort();
    }
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    return 0;
}
