/* Configuration loader: defaults, every error class, robustness, allocation failure.
 * Each test works in its own temp dir with real files (profiles, rule sets, secrets). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "alloc.h"
#include "config.h"
#include "error.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tdir {
    char path[64];
} tdir;

static void put(const tdir *t, const char *name, const char *content)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", t->path, name);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdir(p, 0755);
    *slash = '/';
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(p);
}

static int setup(void **state)
{
    tdir *t = calloc(1, sizeof *t);
    snprintf(t->path, sizeof t->path, "/tmp/citygate-test-config-XXXXXX");
    if (!mkdtemp(t->path))
        return -1;
    /* The layout of a source tree: profiles and rule sets beside the config dir. */
    put(t, "devices/generic-manhole.json", "{\"name\": \"generic-manhole\"}");
    put(t, "devices/generic-lamp.json", "{\"name\": \"generic-lamp\"}");
    put(t, "devices/broken.json", "{\"name\": \n\"broken\",,}");
    put(t, "rules/manhole.json", "{\"rules\": [{\"id\": \"cover-tilt\"}]}");
    put(t, "rules/common.json", "{\"rules\": []}");
    put(t, "etc/mqtt-password", "s3cret-from-file\n");
    put(t, "etc/ca.pem", "-----BEGIN CERTIFICATE-----\n");
    unsetenv("CREDENTIALS_DIRECTORY");
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    tdir *t = *state;
    nftw(t->path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

/* A valid config with paths relative to etc/; %s slots: extra gateway keys, extra
 * top-level keys (each with a trailing comma when non-empty). */
#define GOOD_HEAD                                                                       \
    "{\n"                                                                               \
    "  \"gateway\": {\"id\": \"GW-500103-0001\", \"admin_code\": \"500103\"},\n"        \
    "  \"paths\": {\"profiles\": [\"../nowhere\", \"../devices\"], \"rules\": \"../rules\"},\n" \
    "  \"buses\": [{\"id\": \"field-tcp\", \"type\": \"tcp\", \"host\": \"127.0.0.1\"},\n" \
    "            {\"id\": \"field-rtu\", \"type\": \"rtu\", \"device\": \"/dev/ttyUSB0\"}],\n" \
    "  \"mqtt_sources\": [{\"id\": \"lora\", \"url\": \"mqtts://127.0.0.1:8883\",\n"      \
    "     \"ca_file\": \"ca.pem\",\n"                                                   \
    "     \"subscriptions\": [{\"topic\": \"application/+/device/{dev_eui}/event/up\", \"decoder\": \"chirpstack\"}]}],\n"
#define GOOD_DEVICES                                                                    \
    "  \"devices\": [\n"                                                                \
    "    {\"id\": \"mh-0001\", \"kind\": \"manhole\",\n"                                \
    "     \"modbus\": {\"bus\": \"field-tcp\", \"unit_id\": 1, \"profile\": \"generic-manhole\"},\n" \
    "     \"component\": {\"code\": \"5001030102000001\", \"grid\": \"500103001002003\",\n" \
    "                   \"location\": {\"lon\": 106.577, \"lat\": 29.557}}},\n"           \
    "    {\"id\": \"lamp-0001\", \"kind\": \"lamp\", \"interval_ms\": 60000, \"enabled\": false,\n" \
    "     \"modbus\": {\"bus\": \"field-rtu\", \"unit_id\": 7, \"profile\": \"generic-lamp\"},\n" \
    "     \"component\": {\"code\": \"5001030118000001\", \"name\": \"路灯 A\"},\n"         \
    "     \"tags\": {\"district\": \"yuzhong\"}},\n"                                     \
    "    {\"id\": \"mh-0101\", \"kind\": \"manhole\",\n"                                \
    "     \"mqtt\": {\"source\": \"lora\", \"key\": \"24e1\", \"decoder\": \"manhole\", \"options\": {\"a\": 1}},\n" \
    "     \"component\": {\"code\": \"5001030103000101\"}, \"rule_sets\": [\"manhole\"]}\n" \
    "  ],\n"
#define GOOD_OUTPUTS                                                                    \
    "  \"outputs\": {\"mqtt\": {\"url\": \"tcp://127.0.0.1:1883\", \"password_file\": \"mqtt-password\"},\n" \
    "              \"influxdb\": {\"enabled\": false}}\n"                                 \
    "}\n"

static const char good_config[] = GOOD_HEAD GOOD_DEVICES GOOD_OUTPUTS;

static int load_text(const tdir *t, const char *text, gw_cfgerr *e, gw_config **cfg)
{
    put(t, "etc/site.json", text);
    char p[512];
    snprintf(p, sizeof p, "%s/etc/site.json", t->path);
    return gw_config_load(p, e, cfg);
}

static void test_good_config_defaults(void **state)
{
    tdir *t = *state;
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    int rc = load_text(t, good_config, &e, &c);
    gw_cfgerr_print(&e, 2);
    assert_int_equal(rc, 0);
    assert_int_equal(e.n, 0);
    assert_non_null(c);

    assert_string_equal(c->gateway.id, "GW-500103-0001");
    assert_string_equal(c->gateway.name, "GW-500103-0001");
    assert_int_equal(c->gateway.scheme, GW_SCHEME_CJT214);
    assert_string_equal(c->gateway.data_dir, "/var/lib/citygate");
    assert_int_equal(c->gateway.utc_offset_min, 480);
    assert_int_equal(c->gateway.log_level, GW_LOG_INFO);
    /* The first existing candidate wins. */
    assert_non_null(strstr(c->profiles_dir, "/etc/../devices"));
    assert_non_null(strstr(c->rules_dir, "/etc/../rules"));

    const gw_bus *tcp = gw_config_bus(c, "field-tcp"), *rtu = gw_config_bus(c, "field-rtu");
    assert_non_null(tcp);
    assert_non_null(rtu);
    assert_null(gw_config_bus(c, "nope"));
    assert_int_equal(tcp->type, GW_BUS_TCP);
    assert_int_equal(tcp->port, 502);
    assert_int_equal(tcp->response_timeout_ms, 500);
    assert_int_equal(tcp->byte_timeout_ms, 0);
    assert_int_equal(tcp->retries, 1);
    assert_int_equal(tcp->max_gap, 8);
    assert_int_equal(tcp->reconnect_min_ms, 500);
    assert_int_equal(tcp->reconnect_max_ms, 30000);
    assert_int_equal(rtu->type, GW_BUS_RTU);
    assert_int_equal(rtu->baud, 9600);
    assert_int_equal(rtu->parity, 'N');
    assert_int_equal(rtu->data_bits, 8);
    assert_int_equal(rtu->stop_bits, 1);

    assert_int_equal(c->n_mqtt_sources, 1);
    const gw_mqtt_source *s = &c->mqtt_sources[0];
    assert_string_equal(s->conn.url, "ssl://127.0.0.1:8883");
    assert_string_equal(s->conn.client_id, "citygate-GW-500103-0001-ingest-lora");
    assert_int_equal(s->conn.mqtt_version, 3);
    assert_int_equal(s->conn.keepalive_s, 30);
    assert_non_null(strstr(s->conn.ca_file, "/etc/ca.pem"));
    assert_int_equal(s->max_payload, 65536);
    assert_int_equal(s->n_subs, 1);
    assert_int_equal(s->subs[0].qos, 1);
    assert_string_equal(s->subs[0].decoder, "chirpstack");

    assert_int_equal(c->n_devices, 3);
    const gw_device *mh = gw_config_device(c, "mh-0001");
    assert_non_null(mh);
    assert_null(gw_config_device(c, "mh-9999"));
    assert_int_equal(mh->source, GW_SRC_MODBUS);
    assert_int_equal(mh->interval_ms, 10000);
    assert_int_equal(mh->enabled, 1);
    assert_string_equal(mh->name, "mh-0001");
    assert_string_equal(mh->component.name, "污水井盖");
    assert_int_equal(mh->component.location.has, 1);
    /* Default rule sets: the kind's and "common", those that exist. */
    assert_int_equal(mh->n_rule_sets, 2);
    assert_string_equal(mh->rule_sets[0], "manhole");
    assert_string_equal(mh->rule_sets[1], "common");
    const gw_device *lamp = gw_config_device(c, "lamp-0001");
    assert_int_equal(lamp->enabled, 0);
    assert_int_equal(lamp->interval_ms, 60000);
    assert_int_equal(lamp->unit_id, 7);
    assert_string_equal(lamp->component.name, "路灯 A");
    assert_int_equal(lamp->n_rule_sets, 1); /* no rules/lamp.json */
    assert_string_equal(lamp->rule_sets[0], "common");
    assert_non_null(lamp->tags);
    const gw_device *mq = gw_config_device(c, "mh-0101");
    assert_int_equal(mq->source, GW_SRC_MQTT);
    assert_string_equal(mq->mqtt_source, "lora");
    assert_string_equal(mq->decoder, "manhole");
    assert_non_null(mq->decoder_options);
    assert_string_equal(mq->component.name, "雨水井盖");
    assert_int_equal(mq->n_rule_sets, 1);

    assert_int_equal(c->n_profiles, 2);
    assert_non_null(gw_config_profile(c, "generic-manhole"));
    assert_null(gw_config_profile(c, "broken"));
    assert_non_null(gw_config_ruleset(c, "manhole"));
    assert_non_null(gw_config_ruleset(c, "common"));

    assert_int_equal(c->upstream.enabled, 1);
    assert_string_equal(c->upstream.conn.client_id, "citygate-GW-500103-0001");
    assert_string_equal(c->upstream.conn.password, "s3cret-from-file"); /* newline stripped */
    assert_string_equal(c->upstream.topic_prefix, "citygate");
    assert_int_equal(c->upstream.report_interval_s, 60);
    assert_int_equal(c->upstream.max_inflight, 10);
    assert_int_equal(c->upstream.renotify_s, 0);
    assert_int_equal(c->influx.enabled, 0);
    assert_int_equal(c->influx.version, 1);
    assert_string_equal(c->influx.precision, "us");
    assert_int_equal(c->influx.batch_lines, 5000);
    assert_int_equal(c->influx.batch_bytes, 1 << 20);
    assert_int_equal(c->influx.flush_ms, 1000);
    assert_int_equal(c->influx.timeout_ms, 10000);
    assert_int_equal(c->influx.gzip, 1);
    assert_true(c->influx.spool_max_bytes == 256LL << 20);
    assert_int_equal(c->http.enabled, 1);
    assert_string_equal(c->http.listen, "127.0.0.1");
    assert_int_equal(c->http.port, 8080);
    assert_int_equal(c->http.history_minutes, 180);
    assert_null(c->http.token);

    gw_config_free(c);
    gw_cfgerr_free(&e);
}

static void test_credentials_directory_first(void **state)
{
    tdir *t = *state;
    put(t, "creds/mqtt-password", "from-systemd\n");
    char p[512];
    snprintf(p, sizeof p, "%s/creds", t->path);
    setenv("CREDENTIALS_DIRECTORY", p, 1);
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    assert_int_equal(load_text(t, good_config, &e, &c), 0);
    assert_string_equal(c->upstream.conn.password, "from-systemd");
    gw_config_free(c);
    gw_cfgerr_free(&e);
    unsetenv("CREDENTIALS_DIRECTORY");
}

/* Load text (in the good config's directory) and require an error line ending in
 * "site.json: <want>". */
static void expect_error(const tdir *t, const char *text, const char *want)
{
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    int rc = load_text(t, text, &e, &c);
    assert_int_equal(rc, GW_ECONFIG);
    assert_null(c);
    int found = 0;
    for (size_t i = 0; i < e.n; i++) {
        const char *l = e.lines[i];
        const char *at = strstr(l, "site.json: ");
        if (at && strcmp(at + strlen("site.json: "), want) == 0)
            found = 1;
        else if (strcmp(l, want) == 0)
            found = 1;
    }
    if (!found) {
        fprintf(stderr, "wanted: %s\ngot:\n", want);
        gw_cfgerr_print(&e, 2);
    }
    assert_true(found);
    gw_cfgerr_free(&e);
}

/* good_config with one substring replaced. */
static char *edit(const char *from, const char *to)
{
    const char *at = strstr(good_config, from);
    assert_non_null(at);
    size_t n = strlen(good_config) - strlen(from) + strlen(to) + 1;
    char *s = malloc(n);
    snprintf(s, n, "%.*s%s%s", (int)(at - good_config), good_config, to, at + strlen(from));
    return s;
}

static void expect_edit(const tdir *t, const char *from, const char *to, const char *want)
{
    char *s = edit(from, to);
    expect_error(t, s, want);
    free(s);
}

static void test_invalid_json_position(void **state)
{
    tdir *t = *state;
    expect_error(t, "{\n  \"gateway\": {\n    \"id\": 1,,\n", "line 3, column 13: invalid JSON (unexpected ',')");
    expect_error(t, "{\"gateway\": {", "line 1, column 14: invalid JSON (unexpected end of input)");
    expect_error(t, "", "line 1, column 1: invalid JSON (unexpected end of input)");
    expect_error(t, "{} x", "line 1, column 4: invalid JSON (unexpected 'x')");
    expect_error(t, "{\"a\": [1, 2x]}", "line 1, column 12: invalid JSON (unexpected 'x')");
    expect_error(t, "{\"a\": 1, x}", "line 1, column 10: invalid JSON (unexpected 'x')");
    /* Brackets inside strings do not count as structure. */
    expect_error(t, "[\"{,\", 2x]", "line 1, column 9: invalid JSON (unexpected 'x')");
    /* A trailing comma: cJSON stops past the '}', the report points at it. */
    expect_error(t, "{\"gateway\": {\"id\": \"g\",\n}\n}", "line 2, column 1: invalid JSON (unexpected '}')");
    /* Columns count characters, not bytes. */
    expect_error(t, "{\"名\": x}", "line 1, column 7: invalid JSON (unexpected 'x')");
    /* A broken profile is reported with its own path. */
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    char *s = edit("\"generic-lamp\"", "\"broken\"");
    assert_int_equal(load_text(t, s, &e, &c), GW_ECONFIG);
    free(s);
    assert_int_equal(e.n, 1);
    assert_non_null(strstr(e.lines[0], "/devices/broken.json: line 2, column 10: invalid JSON (unexpected ',')"));
    gw_cfgerr_free(&e);
}

static void test_unknown_and_type_errors(void **state)
{
    tdir *t = *state;
    expect_edit(t, "\"unit_id\": 7", "\"unitid\": 7, \"unit_id\": 7",
                "devices[1].modbus.unitid: unknown key (did you mean 'unit_id'?)");
    expect_edit(t, "\"enabled\": false", "\"enabled\": \"no\"",
                "devices[1].enabled: must be true or false, got string");
    expect_edit(t, "\"host\": \"127.0.0.1\"", "\"host\": \"127.0.0.1\", \"port\": \"502\"",
                "buses[0].port: must be a number, got string");
    expect_edit(t, "\"host\": \"127.0.0.1\"", "\"host\": \"127.0.0.1\", \"port\": 1e400",
                "buses[0].port: must be an integer, got inf");
    expect_edit(t, "\"kind\": \"lamp\", ", "", "devices[1].kind: missing (required)");
    expect_edit(t, "\"profile\": \"generic-lamp\"", "\"profile\": null",
                "devices[1].modbus.profile: must be a string, got null");
    expect_edit(t, "\"admin_code\": \"500103\"", "\"admin_code\": 500103",
                "gateway.admin_code: must be a string, got number");
}

static void test_range_enum_and_refs(void **state)
{
    tdir *t = *state;
    expect_edit(t, "\"unit_id\": 7", "\"unit_id\": 300", "devices[1].modbus.unit_id: must be 1..247, got 300");
    expect_edit(t, "\"unit_id\": 7", "\"unit_id\": 0",
                "devices[1].modbus.unit_id: must be 1..247, got 0 (0 is accepted on tcp buses only)");
    expect_edit(t, "\"type\": \"rtu\"", "\"type\": \"rtuu\"",
                "buses[1].type: must be one of 'tcp', 'rtu', got 'rtuu' (did you mean 'rtu'?)");
    expect_edit(t, "\"admin_code\": \"500103\"", "\"admin_code\": \"500103\", \"log_level\": \"loud\"",
                "gateway.log_level: must be one of 'error', 'warn', 'notice', 'info', 'debug', got 'loud'");
    expect_edit(t, "\"id\": \"lamp-0001\"", "\"id\": \"mh-0001\"",
                "devices[1].id: duplicate id 'mh-0001' (first at devices[0])");
    expect_edit(t, "\"id\": \"field-rtu\"", "\"id\": \"field-tcp\"",
                "buses[1].id: duplicate id 'field-tcp' (first at buses[0])");
    expect_edit(t, "\"bus\": \"field-rtu\"", "\"bus\": \"field-rtv\"",
                "devices[1].modbus.bus: no bus 'field-rtv' in buses (did you mean 'field-rtu'?)");
    expect_edit(t, "\"source\": \"lora\"", "\"source\": \"loraa\"",
                "devices[2].mqtt.source: no MQTT source 'loraa' in mqtt_sources (did you mean 'lora'?)");
    char want[512];
    snprintf(want, sizeof want,
             "devices[1].modbus.profile: profile 'generic-lamp2' not found: no %s/etc/../devices/generic-lamp2.json",
             t->path);
    expect_edit(t, "\"generic-lamp\"", "\"generic-lamp2\"", want);
    snprintf(want, sizeof want,
             "devices[2].rule_sets[0]: rule set 'gas' not found: no %s/etc/../rules/gas.json", t->path);
    expect_edit(t, "\"rule_sets\": [\"manhole\"]", "\"rule_sets\": [\"gas\"]", want);
    expect_edit(t, "\"rule_sets\": [\"manhole\"]", "\"rule_sets\": [\"../manhole\"]",
                "devices[2].rule_sets[0]: must be a rule set name (A-Z a-z 0-9 _ . -), got '../manhole'");
}

static void test_domain_codes(void **state)
{
    tdir *t = *state;
    expect_edit(t, "\"5001030102000001\"", "\"500103010200001\"",
                "devices[0].component.code: must be 16 digits for CJ/T 214 (county 6 + major class 2 + minor class 2 + serial 6), got 15");
    expect_edit(t, "\"5001030102000001\"", "\"5001040102000001\"",
                "devices[0].component.code: county prefix 500104 does not match gateway.admin_code 500103");
    expect_edit(t, "\"5001030102000001\"", "\"5001030002000001\"",
                "devices[0].component.code: major class 00 must be 01..99");
    expect_edit(t, "\"5001030102000001\"", "\"50010301020000x1\"",
                "devices[0].component.code: must be digits only, got '50010301020000x1'");
    expect_edit(t, "\"500103001002003\"", "\"500104001002003\"",
                "devices[0].component.grid: county prefix 500104 does not match gateway.admin_code 500103");
    expect_edit(t, "\"500103001002003\"", "\"5001030010020\"",
                "devices[0].component.grid: must be a 15-digit unit grid code (county 6 + street 3 + community 3 + grid 3), got '5001030010020'");
    expect_edit(t, "\"500103\"}", "\"5001\"}",
                "gateway.admin_code: must be a 6-digit county code (GB/T 2260), got '5001'");
    expect_edit(t, "\"GW-500103-0001\"", "\"GW/500103\"",
                "gateway.id: must be 1..64 characters of A-Z a-z 0-9 _ . - (it is used in MQTT topics), got 'GW/500103'");
    expect_edit(t, "\"admin_code\": \"500103\"", "\"admin_code\": \"500103\", \"timezone\": \"+8\"",
                "gateway.timezone: must be a UTC offset like +08:00 (-14:00..+14:00), got '+8'");
    /* GB/T 47678: 17 digits, 3-digit minor. */
    char *s = edit("\"admin_code\": \"500103\"",
                   "\"admin_code\": \"500103\", \"component_scheme\": \"GB/T 47678\"");
    expect_error(t, s,
                 "devices[0].component.code: must be 17 digits for GB/T 47678 (county 6 + major class 2 + minor class 3 + serial 6), got 16");
    free(s);
}

static void test_sources_outputs_http(void **state)
{
    tdir *t = *state;
    expect_edit(t, "\"mqtt\": {\"source\"", "\"modbus\": {\"bus\": \"field-tcp\", \"unit_id\": 9, \"profile\": \"generic-lamp\"}, \"mqtt\": {\"source\"",
                "devices[2]: has both \"modbus\" and \"mqtt\"; a device has exactly one source");
    expect_edit(t, "\"modbus\": {\"bus\": \"field-rtu\", \"unit_id\": 7, \"profile\": \"generic-lamp\"},", "",
                "devices[1]: needs a source: either \"modbus\" or \"mqtt\"");
    expect_edit(t, "\"enabled\": false}}", "\"url\": \"http://127.0.0.1:8086\", \"version\": 2, \"org\": \"o\", \"bucket\": \"b\"}}",
                "outputs.influxdb.token: missing: InfluxDB 2.x needs token or token_file");
    expect_edit(t, "\"enabled\": false}}", "\"url\": \"http://127.0.0.1:8086\"}}",
                "outputs.influxdb.database: missing (required)");
    expect_edit(t, "\"enabled\": false}}", "\"url\": \"udp://127.0.0.1:8086\", \"database\": \"d\"}}",
                "outputs.influxdb.url: must start with http:// or https://, got 'udp://127.0.0.1:8086'");
    expect_edit(t, "\"tcp://127.0.0.1:1883\"", "\"tcp://127.0.0.1:99999\"",
                "outputs.mqtt.url: has an invalid port (1..65535), got 'tcp://127.0.0.1:99999'");
    expect_edit(t, "\"mqtts://127.0.0.1:8883\"", "\"tcp://127.0.0.1:1883\"",
                "mqtt_sources[0].ca_file: is a TLS option but url is tcp:// (use ssl:// or mqtts://)");
}

static void test_http_token_and_secrets(void **state)
{
    tdir *t = *state;
    char *s = edit(GOOD_OUTPUTS, "  \"outputs\": {},\n  \"http\": {\"listen\": \"0.0.0.0\"}\n}\n");
    expect_error(t, s, "http.token: missing: listen '0.0.0.0' is not loopback, so a token (or token_file) is required");
    free(s);
    s = edit(GOOD_OUTPUTS, "  \"http\": {\"listen\": \"::\", \"token\": \"short\"}\n}\n");
    expect_error(t, s, "http.token: must be at least 16 characters");
    free(s);
    /* Loopback needs no token. */
    s = edit(GOOD_OUTPUTS, "  \"http\": {\"listen\": \"::1\", \"port\": 9090}\n}\n");
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    assert_int_equal(load_text(t, s, &e, &c), 0);
    assert_int_equal(c->http.port, 9090);
    gw_config_free(c);
    gw_cfgerr_free(&e);
    free(s);
    char want[512];
    snprintf(want, sizeof want, "outputs.mqtt.password_file: cannot read '%s/etc/nope': No such file or directory",
             t->path);
    expect_edit(t, "\"mqtt-password\"", "\"nope\"", want);
    expect_edit(t, "\"password_file\": \"mqtt-password\"", "\"password\": \"x\", \"password_file\": \"mqtt-password\"",
                "outputs.mqtt.password_file: give either 'password' or 'password_file', not both");
    snprintf(want, sizeof want, "mqtt_sources[0].ca_file: cannot read '%s/etc/missing.pem': No such file or directory",
             t->path);
    expect_edit(t, "\"ca.pem\"", "\"missing.pem\"", want);
}

static void test_all_errors_reported(void **state)
{
    tdir *t = *state;
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    const char *text =
        "{\"gateway\": {\"id\": \"a b\", \"admin_code\": \"1\"}, \"paths\": {\"rules\": \"../rules\"},\n"
        " \"buses\": [{\"id\": \"b\", \"type\": \"tcp\"}, 5],\n"
        " \"devices\": [{\"id\": \"d\"}, {\"id\": \"d\", \"kind\": \"x\", \"mqtt\": {}}],\n"
        " \"http\": {\"port\": -1}, \"extra\": 1}";
    assert_int_equal(load_text(t, text, &e, &c), GW_ECONFIG);
    const char *want[] = {
        "extra: unknown key",
        "gateway.id: must be 1..64",
        "gateway.admin_code: must be a 6-digit",
        "buses[0].host: missing (required)",
        "buses[1]: must be an object, got number",
        "devices[0].kind: missing (required)",
        "devices[0]: needs a source",
        "devices[0].component: missing (required)",
        "devices[1].mqtt.source: missing (required)",
        "devices[1].mqtt.key: missing (required)",
        "devices[1].id: duplicate id 'd' (first at devices[0])",
        "http.port: must be 1..65535, got -1",
    };
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        int found = 0;
        for (size_t i = 0; i < e.n; i++)
            found |= strstr(e.lines[i], want[w]) != NULL;
        if (!found) {
            fprintf(stderr, "missing: %s\n", want[w]);
            gw_cfgerr_print(&e, 2);
        }
        assert_true(found);
    }
    gw_cfgerr_free(&e);
}

static void test_hostile_input(void **state)
{
    (void)state;
    static const char *inputs[] = {
        "null", "[]", "\"x\"", "1e999", "{\"gateway\": []}", "{\"devices\": {}}",
        "{\"devices\": [null, [], 1, \"x\"]}",
        "{\"gateway\": {\"id\": \"g\", \"admin_code\": \"500103\"}, \"devices\": [{\"id\": \"d\", \"kind\": \"k\", "
        "\"modbus\": {\"bus\": 1, \"unit_id\": -1e308, \"profile\": {}}, \"component\": {\"code\": \"\", "
        "\"location\": {\"lon\": 1e308, \"lat\": null}}, \"overrides\": [], \"tags\": {\"device\": 1}}]}",
        "{\"buses\": [{\"id\": \"b\", \"type\": \"tcp\", \"host\": \"h\", \"port\": 1.0000001, \"retries\": 1e18}]}",
        "{\"http\": {\"listen\": \"\\u0000\"}}",
        "{\"outputs\": {\"mqtt\": {\"url\": \"tcp://[::1\", \"topic_prefix\": \"a/+/b\"}, \"influxdb\": 1}}",
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        gw_cfgerr e = {0};
        gw_config *c = NULL;
        assert_int_equal(gw_config_load_mem("mem.json", inputs[i], strlen(inputs[i]), &e, &c), GW_ECONFIG);
        assert_null(c);
        assert_true(e.n > 0);
        gw_cfgerr_free(&e);
    }
    /* Deep nesting and embedded NULs. */
    size_t n = 200000;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    gw_cfgerr e = {0};
    gw_config *c = NULL;
    assert_int_equal(gw_config_load_mem("deep.json", deep, 2 * n, &e, &c), GW_ECONFIG);
    gw_cfgerr_free(&e);
    memcpy(deep, "{\"devices\": [{\"params\": ", 24);
    assert_int_equal(gw_config_load_mem("deep.json", deep, 2 * n, &e, &c), GW_ECONFIG);
    gw_cfgerr_free(&e);
    free(deep);
    assert_int_equal(gw_config_load_mem("nul.json", "{\"a\"\0: 1}", 9, &e, &c), GW_ECONFIG);
    assert_string_equal(e.lines[0], "nul.json: line 1, column 5: invalid JSON (NUL byte)");
    gw_cfgerr_free(&e);
    /* A file that cannot be read. */
    assert_int_equal(gw_config_load("/nonexistent/site.json", &e, &c), GW_ECONFIG);
    assert_string_equal(e.lines[0], "/nonexistent/site.json: cannot read: No such file or directory");
    gw_cfgerr_free(&e);
    /* Many errors are capped, and counted. */
    size_t k = 3000;
    char *many = malloc(k * 12 + 16);
    size_t off = (size_t)sprintf(many, "{");
    for (size_t i = 0; i < k; i++)
        off += (size_t)sprintf(many + off, "%s\"k%zu\":1", i ? "," : "", i);
    sprintf(many + off, "}");
    assert_int_equal(gw_config_load_mem("many.json", many, strlen(many), &e, &c), GW_ECONFIG);
    assert_true(e.n <= 510);
    assert_non_null(strstr(e.lines[e.n - 1], "too many errors"));
    gw_cfgerr_free(&e);
    free(many);
}

/* A site directory listed first adds its profiles to the shipped ones (each name is
 * looked up in every candidate) and its own copy of a shipped profile wins. */
static void test_profile_dirs_layered(void **state)
{
    tdir *t = *state;
    put(t, "site/generic-lamp.json", "{\"name\": \"site-lamp\"}");
    char *text = edit("[\"../nowhere\", \"../devices\"]", "[\"../site\", \"../devices\"]");
    gw_cfgerr e = {0};
    gw_config *cfg = NULL;
    assert_int_equal(load_text(t, text, &e, &cfg), 0);
    const gw_cfg_doc *mh = gw_config_profile(cfg, "generic-manhole");
    const gw_cfg_doc *lamp = gw_config_profile(cfg, "generic-lamp");
    assert_non_null(mh);
    assert_non_null(lamp);
    assert_non_null(strstr(mh->path, "/devices/generic-manhole.json"));
    assert_non_null(strstr(lamp->path, "/site/generic-lamp.json"));
    gw_config_free(cfg);
    gw_cfgerr_free(&e);
    free(text);
}

static void test_alloc_failure(void **state)
{
    tdir *t = *state;
    put(t, "etc/site.json", good_config);
    char p[512];
    snprintf(p, sizeof p, "%s/etc/site.json", t->path);
    int ok_at = -1;
    for (long n = 0; n < 20000; n++) {
        gw_cfgerr e = {0};
        gw_config *c = NULL;
        gw_alloc_fail_after(n);
        int rc = gw_config_load(p, &e, &c);
        gw_alloc_fail_after(-1);
        gw_cfgerr_free(&e);
        if (rc == 0) {
            assert_non_null(c);
            gw_config_free(c);
            ok_at = (int)n;
            break;
        }
        assert_int_equal(rc, GW_ENOMEM);
        assert_null(c);
    }
    assert_true(ok_at > 50); /* every allocation up to success was failed once */
    /* Failing while reporting errors: still no crash and no leak. */
    const char *bad = "{\"gateway\": {\"id\": \"a b\"}, \"x\": 1, \"devices\": [{}]}";
    for (long n = 0; n < 200; n++) {
        gw_cfgerr e = {0};
        gw_config *c = NULL;
        gw_alloc_fail_after(n);
        int rc = gw_config_load_mem("bad.json", bad, strlen(bad), &e, &c);
        gw_alloc_fail_after(-1);
        assert_true(rc == GW_ENOMEM || rc == GW_ECONFIG);
        assert_null(c);
        gw_cfgerr_free(&e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_good_config_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_credentials_directory_first, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_json_position, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_type_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_range_enum_and_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_domain_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sources_outputs_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_token_and_secrets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_errors_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hostile_input, setup, teardown),
        cmocka_unit_test_setup_teardown(test_profile_dirs_layered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
