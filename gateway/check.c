/* citygate check: load the configuration, run every module's validation on it, and
 * print either every error (exit 2) or a summary (exit 0). */
#include "check.h"

#include "cli.h"
#include "config.h"
#include "error.h"
#include "modbus/poller.h"
#include "mqtt/ingest.h"
#include "plugin.h"
#include "rules/rule.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char check_usage[] =
    "usage: citygate check -c FILE\n"
    "\n"
    "Validate the configuration file, the device profiles and rule sets it names and\n"
    "the plugins it loads. Prints a summary and exits 0, or prints every error as\n"
    "'file: json.path: message' and exits 2.\n";

int gw_check_deep(const gw_config *cfg, gw_cfgerr *errs)
{
    /* Every module validates its own part; all of them run so every error is shown. */
    gw_modbus_check(cfg, errs);
    gw_rules_check(cfg, errs);
    gw_ingest_check(cfg, errs);
    gw_plugins_check(cfg, errs);
    return errs->n ? GW_ECONFIG : 0;
}

int gw_config_load_checked(const char *file, gw_cfgerr *errs, gw_config **out)
{
    gw_config *cfg = NULL;
    int rc = gw_config_load(file, errs, &cfg);
    if (rc == 0)
        rc = gw_check_deep(cfg, errs);
    if (rc != 0 || errs->n) {
        gw_config_free(cfg);
        return GW_ECONFIG;
    }
    *out = cfg;
    return 0;
}

static void print_summary(const gw_config *cfg)
{
    printf("%s: ok\n", cfg->file);
    printf("gateway %s (admin code %s)\n", cfg->gateway.id, cfg->gateway.admin_code);

    /* Devices by kind and source. */
    const char *kinds[64];
    size_t n_kinds = 0, modbus[64] = {0}, mqtt[64] = {0};
    for (size_t i = 0; i < cfg->n_devices; i++) {
        const gw_device *d = &cfg->devices[i];
        size_t k = 0;
        while (k < n_kinds && strcmp(kinds[k], d->kind) != 0)
            k++;
        if (k == n_kinds) {
            if (n_kinds == 64)
                continue;
            kinds[n_kinds++] = d->kind;
        }
        if (d->source == GW_SRC_MODBUS)
            modbus[k]++;
        else
            mqtt[k]++;
    }
    printf("devices: %zu\n", cfg->n_devices);
    for (size_t k = 0; k < n_kinds; k++)
        printf("  %-10s %3zu  (modbus %zu, mqtt %zu)\n", kinds[k], modbus[k] + mqtt[k],
               modbus[k], mqtt[k]);
    size_t tcp = 0, rtu = 0;
    for (size_t i = 0; i < cfg->n_buses; i++)
        cfg->buses[i].type == GW_BUS_TCP ? tcp++ : rtu++;
    printf("modbus buses: %zu (tcp %zu, rtu %zu)\n", cfg->n_buses, tcp, rtu);
    printf("mqtt sources: %zu\n", cfg->n_mqtt_sources);
    printf("profiles: %zu\n", cfg->n_profiles);
    size_t n_rules = 0;
    for (size_t i = 0; i < cfg->n_rulesets; i++) {
        const cJSON *rules = cJSON_GetObjectItemCaseSensitive(cfg->rulesets[i].json, "rules");
        n_rules += (size_t)cJSON_GetArraySize(rules);
    }
    printf("rule sets: %zu (%zu rules)\n", cfg->n_rulesets, n_rules);
    /* Not errors: a rule a device cannot take (a parameter it lacks) is skipped. */
    gw_cfgerr warns = {0};
    if (gw_rules_warnings(cfg, &warns) > 0) {
        printf("warnings: %zu\n", warns.n);
        for (size_t i = 0; i < warns.n; i++)
            printf("  warning: %s\n", warns.lines[i]);
    }
    gw_cfgerr_free(&warns);
    printf("outputs:\n");
    printf("  mqtt upstream: %s\n", cfg->upstream.enabled ? cfg->upstream.conn.url : "off");
    printf("  influxdb:      %s\n", cfg->influx.enabled ? cfg->influx.url : "off");
    if (cfg->http.enabled)
        printf("  http:          %s:%d\n", cfg->http.listen, cfg->http.port);
    else
        printf("  http:          off\n");
}

int gw_cmd_check(int argc, char **argv)
{
    if (gw_cli_wants_help(argc, argv)) {
        fputs(check_usage, stdout);
        return GW_EXIT_OK;
    }
    const char *file = gw_cli_config_arg(argc, argv, check_usage);
    if (!file)
        return GW_EXIT_CONFIG;
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    if (gw_config_load_checked(file, &errs, &cfg) != 0) {
        gw_cfgerr_print(&errs, STDOUT_FILENO);
        fprintf(stdout, "%zu error%s\n", errs.n, errs.n == 1 ? "" : "s");
        gw_cfgerr_free(&errs);
        return GW_EXIT_CONFIG;
    }
    print_summary(cfg);
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    return GW_EXIT_OK;
}
