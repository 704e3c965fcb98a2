/* citygate poll: poll one configured Modbus device once and print what it decoded, the
 * reads it made and how long they took — the field engineer's first tool. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../alloc.h"
#include "../check.h"
#include "../cli.h"
#include "../config.h"
#include "../error.h"
#include "../log.h"
#include "../queue.h"
#include "../timeutil.h"
#include "poller.h"

static const char poll_usage[] =
    "usage: citygate poll -c FILE --device ID [--json]\n"
    "\n"
    "Poll Modbus device ID of config FILE once and print each decoded sample\n"
    "(field, value, unit, quality, time), then the reads made (table, address range,\n"
    "result, attempts, duration). Addresses are 0-based PDU addresses.\n"
    "\n"
    "  -c, --config FILE   the gateway config\n"
    "  --device ID         the device to poll (must be a Modbus device)\n"
    "  --json              print one JSON object instead of tables\n"
    "\n"
    "exit codes: 0 the device answered, 1 no answer (timeout, connection), 2 usage or\n"
    "config error\n";

/* The shortest of %.15g, %.16g and %.17g that reads back as exactly v (17 digits always
 * do), so 2.151 prints as 2.151, not 2.1510000000000002. */
static void json_number(FILE *f, double v)
{
    char buf[32];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            break;
    }
    fputs(buf, f);
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static const char *read_result(const gw_poll_read_report *r, char *buf, size_t n)
{
    if (r->rc == 0)
        return "ok";
    if (r->exception)
        snprintf(buf, n, "exception %d", r->exception);
    else
        snprintf(buf, n, "%s", r->rc == GW_ETIMEDOUT ? "timeout" : r->rc == GW_ECORRUPT ? "crc error"
                              : r->rc == GW_EDECODE ? "malformed" : r->rc == GW_EIO ? "connection lost"
                              : gw_strerror(r->rc));
    return buf;
}

int gw_cmd_poll(int argc, char **argv)
{
    if (gw_cli_wants_help(argc, argv)) {
        fputs(poll_usage, stdout);
        return GW_EXIT_OK;
    }
    const char *device = NULL;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc)
            device = argv[++i];
        else if (strncmp(argv[i], "--device=", 9) == 0)
            device = argv[i] + 9;
        else if (strcmp(argv[i], "--json") == 0)
            as_json = 1;
        else if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0)
            i++;
        else if (strncmp(argv[i], "--config=", 9) != 0) {
            fprintf(stderr, "citygate poll: unknown argument '%s'\n%s", argv[i], poll_usage);
            return GW_EXIT_CONFIG;
        }
    }
    const char *file = gw_cli_config_arg(argc, argv, poll_usage);
    if (!file)
        return GW_EXIT_CONFIG;
    if (!device) {
        fprintf(stderr, "citygate poll: --device ID is required\n%s", poll_usage);
        return GW_EXIT_CONFIG;
    }

    int ret = GW_EXIT_CONFIG;
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    gw_queue *q = NULL;
    gw_poller *p = NULL;
    gw_sample *s = NULL;
    gw_poll_report *rep = NULL;

    if (gw_config_load_checked(file, &errs, &cfg) != 0) {
        gw_cfgerr_print(&errs, 2);
        goto out;
    }
    gw_log_set_level(cfg->gateway.log_level);
    const gw_device *d = gw_config_device(cfg, device);
    if (!d) {
        fprintf(stderr, "citygate poll: no device '%s' in %s\n", device, file);
        goto out;
    }
    if (d->source != GW_SRC_MODBUS) {
        fprintf(stderr, "citygate poll: device '%s' is not a Modbus device\n", device);
        goto out;
    }
    size_t idx = (size_t)(d - cfg->devices);
    const gw_cfg_doc *doc = gw_config_profile(cfg, d->profile);
    size_t cap = 64;
    if (doc && cJSON_GetObjectItem(doc->json, "points"))
        cap += (size_t)cJSON_GetArraySize(cJSON_GetObjectItem(doc->json, "points"));
    s = gw_calloc(cap, sizeof *s);
    rep = gw_calloc(1, sizeof *rep);
    if (!s || !rep || gw_queue_new(cap, sizeof(gw_sample), GW_QUEUE_DROP_NEWEST, &q) != 0) {
        fprintf(stderr, "citygate poll: out of memory\n");
        ret = GW_EXIT_RUNTIME;
        goto out;
    }
    /* The poller only polls enabled devices: poll this one even when disabled. */
    gw_device *dm = &cfg->devices[idx];
    dm->enabled = 1;
    int rc = gw_poller_new(cfg, q, &p);
    if (rc != 0) {
        fprintf(stderr, "citygate poll: %s\n", gw_strerror(rc));
        ret = rc == GW_ECONFIG ? GW_EXIT_CONFIG : GW_EXIT_RUNTIME;
        goto out;
    }
    rc = gw_poller_poll_once(p, idx, rep);
    ret = rc == 0 ? GW_EXIT_OK : GW_EXIT_RUNTIME;
    int n = gw_queue_pop_many(q, s, cap, 0);
    if (n < 0)
        n = 0;

    const gw_bus *b = gw_config_bus(cfg, d->bus);
    if (as_json) {
        printf("{\"device\":");
        json_str(stdout, d->id);
        printf(",\"unit_id\":%d,\"bus\":", d->unit_id);
        json_str(stdout, b ? b->id : "");
        printf(",\"answered\":%s,\"connect_us\":%lld,\"total_us\":%lld,\"error\":",
               rep->answered ? "true" : "false", (long long)rep->connect_us, (long long)rep->total_us);
        json_str(stdout, rep->error);
        printf(",\"samples\":[");
        for (int i = 0; i < n; i++) {
            printf("%s{\"field\":", i ? "," : "");
            json_str(stdout, s[i].field);
            printf(",\"value\":");
            if (s[i].type == GW_V_TEXT)
                json_str(stdout, s[i].text);
            else if (s[i].type == GW_V_BOOL)
                printf("%s", s[i].value != 0 ? "true" : "false");
            else
                json_number(stdout, s[i].value);
            if (s[i].type == GW_V_TEXT && s[i].quality == GW_Q_GOOD) {
                printf(",\"code\":");
                json_number(stdout, s[i].value);
            }
            printf(",\"unit\":");
            json_str(stdout, s[i].unit);
            printf(",\"quality\":\"%s\",\"ts_us\":%lld}", gw_quality_name(s[i].quality),
                   (long long)s[i].ts_us);
        }
        printf("],\"reads\":[");
        for (size_t i = 0; i < rep->n_reads; i++) {
            const gw_poll_read_report *r = &rep->reads[i];
            char buf[48];
            printf("%s{\"table\":\"%s\",\"address\":%u,\"count\":%u,\"result\":\"%s\","
                   "\"exception\":%d,\"attempts\":%d,\"split\":%s,\"duration_us\":%lld}",
                   i ? "," : "", gw_mb_table_name(r->table), (unsigned)r->address,
                   (unsigned)r->count, read_result(r, buf, sizeof buf), r->exception,
                   r->attempts, r->split ? "true" : "false", (long long)r->duration_us);
        }
        printf("]}\n");
    } else {
        printf("device %s (unit %d on bus %s): %s in %.1f ms%s%s\n", d->id, d->unit_id,
               b ? b->id : "?", rep->answered ? "answered" : "NO ANSWER", rep->total_us / 1000.0,
               rep->error[0] ? ": " : "", rep->error);
        printf("%-20s %16s %-8s %-13s %s\n", "FIELD", "VALUE", "UNIT", "QUALITY", "TIME");
        for (int i = 0; i < n; i++) {
            char ts[40], val[64];
            if (gw_format_rfc3339(ts, sizeof ts, s[i].ts_us, cfg->gateway.utc_offset_min) < 0)
                snprintf(ts, sizeof ts, "%lld", (long long)s[i].ts_us);
            if (s[i].type == GW_V_BOOL)
                snprintf(val, sizeof val, "%s", s[i].value != 0 ? "true" : "false");
            else if (s[i].type == GW_V_TEXT)
                snprintf(val, sizeof val, "\"%s\"", s[i].text);
            else
                snprintf(val, sizeof val, "%.10g", s[i].value);
            printf("%-20s %16s %-8s %-13s %s\n", s[i].field, val, s[i].unit[0] ? s[i].unit : "-",
                   gw_quality_name(s[i].quality), ts);
        }
        printf("\nreads (0-based addresses):\n");
        if (rep->connect_us)
            printf("  connect %.1f ms\n", rep->connect_us / 1000.0);
        for (size_t i = 0; i < rep->n_reads; i++) {
            const gw_poll_read_report *r = &rep->reads[i];
            char buf[48];
            printf("  %-8s %5u..%-5u (%3u) %-16s %d attempt%s %8.1f ms%s\n",
                   gw_mb_table_name(r->table), (unsigned)r->address,
                   (unsigned)(r->address + r->count - 1), (unsigned)r->count,
                   read_result(r, buf, sizeof buf), r->attempts, r->attempts == 1 ? " " : "s",
                   r->duration_us / 1000.0, r->split ? "  -> split" : "");
        }
    }

out:
    gw_poller_free(p);
    gw_queue_free(q);
    gw_free(s);
    gw_free(rep);
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    return ret;
}
