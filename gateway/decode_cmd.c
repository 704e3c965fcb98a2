/* citygate decode: run a decoder (plugin, envelope chain or the json decoder) on one
 * payload given on the command line and print the samples — the field engineer's tool
 * for trying a plugin before it meets a broker. */
#include "alloc.h"
#include "check.h"
#include "cli.h"
#include "config.h"
#include "decode.h"
#include "error.h"
#include "log.h"
#include "plugin.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>

static const char decode_usage[] =
    "usage: citygate decode --plugin NAME (--hex HEX | --json JSON)\n"
    "                       [--device ID -c FILE] [--options JSON]\n"
    "                       [--device-decoder NAME] [--plugin-dir DIR]\n"
    "\n"
    "Run decoder NAME (a plugin, or 'json') on one payload and print the samples as\n"
    "'field value unit quality time'.\n"
    "\n"
    "  --hex HEX             the payload as hex digits (spaces allowed): raw bytes\n"
    "  --json JSON           the payload as JSON text\n"
    "  -c FILE --device ID   decode as that configured device (its params, location,\n"
    "                        mqtt.decoder and mqtt.options)\n"
    "  --options JSON        options for the device's decoder (without -c)\n"
    "  --device-decoder NAME without -c: the device decoder an envelope plugin such as\n"
    "                        chirpstack or ttn chains to (default json)\n"
    "  --plugin-dir DIR      load NAME.so from DIR (default: the config's plugins dir,\n"
    "                        else " CITYGATE_PLUGIN_DIR ")\n"
    "  --plugin NAME --help  list NAME's options\n"
    "\n"
    "exit codes: 0 decoded, 1 the payload could not be decoded, 2 usage or config error\n";

/* ctx: the UTC offset in minutes (an int) times are shown in, as `citygate poll` does. */
static int print_sample(void *ctx, const gw_sample *s)
{
    const int *utc_offset_min = ctx;
    char ts[40];
    if (gw_format_rfc3339(ts, sizeof ts, s->ts_us, *utc_offset_min) < 0)
        snprintf(ts, sizeof ts, "%lld", (long long)s->ts_us);
    char val[64];
    if (s->type == GW_V_BOOL)
        snprintf(val, sizeof val, "%s", s->value != 0 ? "true" : "false");
    else if (s->type == GW_V_TEXT)
        snprintf(val, sizeof val, "\"%s\"", s->text);
    else
        snprintf(val, sizeof val, "%.6g", s->value);
    printf("%-16s %12s %-6s %-12s %s\n", s->field, val, s->unit[0] ? s->unit : "-",
           gw_quality_name(s->quality), ts);
    return 0;
}

static long parse_hex(const char *in, uint8_t **out)
{
    size_t n = strlen(in);
    uint8_t *b = gw_malloc(n / 2 + 1);
    if (!b)
        return -1;
    long o = 0;
    int half = -1;
    const char *s = in;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        s += 2;
    for (; *s; s++) {
        int c = (unsigned char)*s, v;
        if (c == ' ' || c == ':' || c == '-' || c == '\t')
            continue;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            v = c - 'A' + 10;
        else
            goto bad;
        if (half < 0) {
            half = v;
        } else {
            b[o++] = (uint8_t)(half * 16 + v);
            half = -1;
        }
    }
    if (half >= 0)
        goto bad;
    *out = b;
    return o;
bad:
    gw_free(b);
    return -1;
}

static const char *type_name(int t)
{
    switch (t) {
    case CG_OPT_INT: return "int";
    case CG_OPT_DOUBLE: return "number";
    case CG_OPT_BOOL: return "bool";
    case CG_OPT_STRING: return "string";
    case CG_OPT_ENUM: return "enum";
    }
    return "?";
}

static int plugin_help(const char *name, const char *dir)
{
    if (strcmp(name, "json") == 0) {
        printf("json (built into the core): options\n"
               "  fields     {\"name\": {\"path\": \"a.b[0]\", \"unit\": \"..\", \"scale\": 1,"
               " \"offset\": 0, \"type\": \"number|bool|text\"}} or {\"name\": \"path\"}\n"
               "             (absent: every top-level number and boolean)\n"
               "  timestamp  {\"path\": \"time\", \"format\": \"rfc3339|epoch_s|epoch_ms|auto\"}\n");
        return GW_EXIT_OK;
    }
    gw_plugins *r = NULL;
    const gw_plugin *p;
    char err[512];
    if (gw_plugins_create(dir, &r) != 0)
        return GW_EXIT_RUNTIME;
    int rc = gw_plugins_get(r, name, &p, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "citygate decode: %s\n", err);
        gw_plugins_free(r);
        return GW_EXIT_CONFIG;
    }
    printf("%s %s (%s, ABI %u.%u)%s\n  %s\noptions:\n", p->name,
           p->desc.version ? p->desc.version : "", p->origin,
           (unsigned)CG_ABI_MAJOR_OF(p->desc.abi), (unsigned)CG_ABI_MINOR_OF(p->desc.abi),
           (p->desc.flags & CG_PLUGIN_ENVELOPE) ? " envelope" : "",
           p->desc.description ? p->desc.description : "");
    if (!p->n_options)
        printf("  (none)\n");
    for (size_t i = 0; i < p->n_options; i++) {
        const cg_option *o = &p->desc.options[i];
        printf("  %-20s %-6s default %-10s", o->key, type_name(o->type), o->def ? o->def : "(required)");
        if (o->type == CG_OPT_ENUM)
            printf(" one of %s", o->choices);
        else if (o->min < o->max)
            printf(" %g..%g", o->min, o->max);
        printf("\n      %s\n", o->help ? o->help : "");
    }
    gw_plugins_free(r);
    return GW_EXIT_OK;
}

int gw_cmd_decode(int argc, char **argv)
{
    const char *plugin = NULL, *hex = NULL, *json = NULL, *device = NULL, *file = NULL;
    const char *options = NULL, *dir = NULL, *dev_decoder = NULL;
    int help = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            help = 1;
            continue;
        }
        if (strcmp(a, "--plugin") == 0)
            slot = &plugin;
        else if (strcmp(a, "--hex") == 0)
            slot = &hex;
        else if (strcmp(a, "--json") == 0)
            slot = &json;
        else if (strcmp(a, "--device") == 0)
            slot = &device;
        else if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0)
            slot = &file;
        else if (strcmp(a, "--options") == 0)
            slot = &options;
        else if (strcmp(a, "--plugin-dir") == 0)
            slot = &dir;
        else if (strcmp(a, "--device-decoder") == 0)
            slot = &dev_decoder;
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "citygate decode: %s '%s'\n%s",
                    slot ? "missing value after" : "unknown argument", a, decode_usage);
            return GW_EXIT_CONFIG;
        }
        *slot = argv[++i];
    }
    if (help && plugin)
        return plugin_help(plugin, dir ? dir : CITYGATE_PLUGIN_DIR);
    if (help) {
        fputs(decode_usage, stdout);
        return GW_EXIT_OK;
    }
    if (!plugin || !!hex == !!json || !!device != !!file || (file && (options || dev_decoder))) {
        fprintf(stderr, "citygate decode: need --plugin and exactly one of --hex / --json;"
                        " --device goes with -c (and then options come from the config)\n%s",
                decode_usage);
        return GW_EXIT_CONFIG;
    }

    int rc = GW_EXIT_CONFIG;
    uint8_t *bytes = NULL;
    long len = 0;
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL, local = {0};
    gw_device dev = {0};
    cJSON *opts = NULL;
    gw_decoders *d = NULL;
    size_t idx = 0;

    if (hex && (len = parse_hex(hex, &bytes)) < 0) {
        fprintf(stderr, "citygate decode: --hex: not an even number of hex digits\n");
        goto out;
    }
    if (file) {
        if (gw_config_load(file, &errs, &cfg) != 0) {
            gw_cfgerr_print(&errs, 2);
            goto out;
        }
        const gw_device *found = gw_config_device(cfg, device);
        if (!found) {
            fprintf(stderr, "citygate decode: %s: no device '%s'\n", file, device);
            goto out;
        }
        if (found->source != GW_SRC_MQTT) {
            fprintf(stderr, "citygate decode: device '%s' is a Modbus device (use citygate poll)\n",
                    device);
            goto out;
        }
        idx = (size_t)(found - cfg->devices);
    } else {
        if (options) {
            opts = cJSON_Parse(options);
            if (!opts || !cJSON_IsObject(opts)) {
                fprintf(stderr, "citygate decode: --options: not a JSON object\n");
                goto out;
            }
        }
        dev.id = (char *)"cli";
        dev.kind = (char *)"cli";
        dev.source = GW_SRC_MQTT;
        dev.enabled = 1;
        dev.decoder = (char *)(dev_decoder ? dev_decoder : plugin);
        dev.decoder_options = opts;
        local.file = (char *)"--options";
        local.plugins_dir = (char *)CITYGATE_PLUGIN_DIR;
        local.devices = &dev;
        local.n_devices = 1;
        cfg = &local;
    }
    gw_decoders_opts dopts = {.plugin_dir = dir, .extra_decoder = plugin};
    int r = gw_decoders_create(cfg, &dopts, &errs, &d);
    if (r != 0) {
        gw_cfgerr_print(&errs, 2);
        if (r == GW_ENOMEM)
            fprintf(stderr, "citygate decode: out of memory\n");
        goto out;
    }
    const void *payload = hex ? (const void *)bytes : (const void *)json;
    size_t plen = hex ? (size_t)len : strlen(json);
    r = gw_decode_payload(d, idx, plugin, payload, plen, hex ? GW_PAYLOAD_BYTES : GW_PAYLOAD_JSON,
                          0, print_sample, &cfg->gateway.utc_offset_min);
    if (r == 0) {
        rc = GW_EXIT_OK;
    } else {
        for (int k = 0; k < CG_BAD__COUNT; k++)
            if (gw_decode_bad_count(d, idx, k))
                fprintf(stderr, "citygate decode: payload rejected (%s)\n", gw_decode_reason_name(k));
        rc = GW_EXIT_RUNTIME;
    }
out:
    gw_decoders_free(d);
    if (cfg != &local)
        gw_config_free(cfg);
    cJSON_Delete(opts);
    gw_free(bytes);
    gw_cfgerr_free(&errs);
    return rc;
}
