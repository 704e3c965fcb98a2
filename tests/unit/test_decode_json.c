/* The built-in json decoder and the decoding dispatcher: safe parsing of untrusted
 * buffers (not NUL-terminated, trailing garbage, depth, size), JSON paths, field maps
 * with scale/offset/unit, timestamps (RFC 3339, epoch s/ms, auto), option validation
 * with places, bad payloads counted per reason, consumer errors passed through, and
 * allocation failures at every step without a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "config.h"
#include "decode.h"
#include "error.h"
#include "sample.h"
#include "timeutil.h"
#include <citygate/plugin.h>

typedef struct got {
    gw_sample s[32];
    size_t n;
    int fail_with;
} got;

static int collect(void *ctx, const gw_sample *s)
{
    got *g = ctx;
    if (g->fail_with)
        return g->fail_with;
    if (g->n < 32)
        g->s[g->n++] = *s;
    return 0;
}

static const gw_sample *find(const got *g, const char *field)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->s[i].field, field) == 0)
            return &g->s[i];
    return NULL;
}

/* A config of one MQTT device using the json decoder with options (JSON text). */
typedef struct fixture {
    gw_config cfg;
    gw_device dev[2];
    cJSON *opts;
    gw_cfgerr errs;
    gw_decoders *d;
} fixture;

static int make(fixture *f, const char *options)
{
    memset(f, 0, sizeof *f);
    f->opts = options ? cJSON_Parse(options) : NULL;
    f->dev[0] = (gw_device){.id = "dev-json", .kind = "test", .source = GW_SRC_MQTT,
                            .decoder = "json", .decoder_options = f->opts, .enabled = 1};
    f->dev[1] = (gw_device){.id = "dev-modbus", .kind = "test", .source = GW_SRC_MODBUS, .enabled = 1};
    f->cfg.file = "site.json";
    f->cfg.devices = f->dev;
    f->cfg.n_devices = 2;
    return gw_decoders_create(&f->cfg, NULL, &f->errs, &f->d);
}

static void drop(fixture *f)
{
    gw_decoders_free(f->d);
    gw_cfgerr_free(&f->errs);
    cJSON_Delete(f->opts);
}

static int decode(fixture *f, const char *json, got *g)
{
    memset(g, 0, sizeof *g);
    return gw_decode_message(f->d, 0, NULL, json, strlen(json), 1780300800000000LL, collect, g);
}

static int has_error(const gw_cfgerr *e, const char *text)
{
    for (size_t i = 0; i < e->n; i++)
        if (strstr(e->lines[i], text))
            return 1;
    return 0;
}

static void test_parse_untrusted(void **state)
{
    (void)state;
    cJSON *j;
    int reason;
    /* Exactly len bytes, no terminator after them: a heap copy of that size lets ASan
     * catch any read past the end (CVE-2023-53154's pattern). */
    const char text[] = "{\"1\":1,";
    char *raw = malloc(sizeof text - 1);
    memcpy(raw, text, sizeof text - 1);
    assert_int_equal(gw_decode_json_parse(raw, sizeof text - 1, 1024, &j, &reason), GW_EDECODE);
    assert_int_equal(reason, CG_BAD_JSON);
    memcpy(raw, "{\"a\":1}", 7);
    assert_int_equal(gw_decode_json_parse(raw, 7, 1024, &j, &reason), 0);
    assert_non_null(j);
    gw_decode_json_free(j);
    free(raw);
    assert_int_equal(gw_decode_json_parse("{} x", 4, 1024, &j, &reason), GW_EDECODE);
    assert_int_equal(gw_decode_json_parse("{}\0{}", 5, 1024, &j, &reason), GW_EDECODE);
    assert_int_equal(gw_decode_json_parse("{}", 2, 1, &j, &reason), GW_EDECODE);
    assert_int_equal(reason, CG_BAD_SIZE);
    assert_int_equal(gw_decode_json_parse("", 0, 10, &j, &reason), GW_EDECODE);
    assert_int_equal(reason, CG_BAD_SIZE);
    char deep[200];
    int n = 0;
    for (int i = 0; i < GW_DECODE_JSON_DEPTH + 1; i++)
        deep[n++] = '[';
    for (int i = 0; i < GW_DECODE_JSON_DEPTH + 1; i++)
        deep[n++] = ']';
    assert_int_equal(gw_decode_json_parse(deep, (size_t)n, 1024, &j, &reason), GW_EDECODE);
    assert_int_equal(reason, CG_BAD_JSON);
    /* Brackets inside strings do not count. */
    const char *in_str = "{\"a\":\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\\"[[\"}";
    assert_int_equal(gw_decode_json_parse(in_str, strlen(in_str), 1024, &j, &reason), 0);
    gw_decode_json_free(j);
}

static void test_paths(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"a\":{\"b\":[10,{\"c\":\"x\"}]},\"rx\":[{\"rssi\":-91}],\"k.e\":1}");
    assert_non_null(j);
    assert_ptr_equal(gw_decode_json_path(j, ""), j);
    assert_int_equal(gw_decode_json_path(j, "a.b[0]")->valueint, 10);
    assert_string_equal(gw_decode_json_path(j, "a.b[1].c")->valuestring, "x");
    assert_int_equal(gw_decode_json_path(j, "rx[0].rssi")->valueint, -91);
    assert_null(gw_decode_json_path(j, "a.b[2]"));
    assert_null(gw_decode_json_path(j, "a..b"));
    assert_null(gw_decode_json_path(j, "a.b[x]"));
    assert_null(gw_decode_json_path(j, "a.b["));
    assert_null(gw_decode_json_path(j, "a."));
    assert_null(gw_decode_json_path(j, "a.b.c"));
    assert_null(gw_decode_json_path(j, "A"));
    cJSON_Delete(j);
}

static void test_field_map(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, "{\"fields\": {"
                              "\"tilt_deg\": {\"path\": \"object.angle\", \"unit\": \"deg\", \"scale\": 0.01},"
                              "\"temp_c\": {\"path\": \"t\", \"scale\": 0.1, \"offset\": -40},"
                              "\"relay_on\": {\"path\": \"r\", \"type\": \"bool\"},"
                              "\"state\": {\"path\": \"s\", \"type\": \"text\"},"
                              "\"rssi_dbm\": \"rx[0].rssi\"},"
                              "\"timestamp\": {\"path\": \"time\", \"format\": \"rfc3339\"}}"),
                     0);
    got g;
    assert_int_equal(decode(&f, "{\"time\": \"2026-06-01T08:30:05.120+08:00\", \"object\": {\"angle\": 1250},"
                                " \"t\": 653, \"r\": 1, \"s\": \"ok\", \"rx\": [{\"rssi\": -91}]}", &g),
                     0);
    assert_int_equal(g.n, 5);
    const gw_sample *s = find(&g, "tilt_deg");
    assert_non_null(s);
    assert_true(s->value > 12.4999 && s->value < 12.5001);
    assert_string_equal(s->unit, "deg");
    assert_string_equal(s->device, "dev-json");
    assert_int_equal(s->device_idx, 0);
    int64_t want;
    assert_int_equal(gw_parse_rfc3339("2026-06-01T00:30:05.120Z", &want), 0);
    assert_int_equal(s->ts_us, want);
    /* Rounded to the decimals of value, scale and offset: 653 x 0.1 - 40 is
     * 25.299999999999997 unrounded. */
    assert_true(find(&g, "temp_c")->value == 25.3);
    assert_int_equal(find(&g, "relay_on")->type, GW_V_BOOL);
    assert_int_equal(find(&g, "state")->type, GW_V_TEXT);
    assert_string_equal(find(&g, "state")->text, "ok");
    assert_int_equal(find(&g, "rssi_dbm")->value, -91);

    /* Absent fields are skipped (sensors omit what they did not measure). */
    assert_int_equal(decode(&f, "{\"time\": \"2026-06-01T00:00:00Z\", \"t\": 400}", &g), 0);
    assert_int_equal(g.n, 1);
    /* Wrong type: counted under "type", nothing emitted after it. */
    assert_int_equal(decode(&f, "{\"time\": \"2026-06-01T00:00:00Z\", \"object\": {\"angle\": \"12\"}}", &g),
                     GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_TYPE), 1);
    /* A number that overflows to infinity is not finite: wrong type. */
    assert_int_equal(decode(&f, "{\"time\": \"2026-06-01T00:00:00Z\", \"t\": 1e999}", &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_TYPE), 2);
    /* Missing timestamp, bad timestamp, none of the fields. */
    assert_int_equal(decode(&f, "{\"t\": 1}", &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_MISSING), 1);
    assert_int_equal(decode(&f, "{\"time\": \"yesterday\", \"t\": 1}", &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_TYPE), 3);
    assert_int_equal(decode(&f, "{\"time\": \"2026-06-01T00:00:00Z\"}", &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_MISSING), 2);
    /* Malformed JSON, and a huge payload. */
    assert_int_equal(decode(&f, "{\"time\": ", &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_JSON), 1);
    size_t big = GW_DECODE_MAX_PAYLOAD_DEFAULT + 10;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    memset(&g, 0, sizeof g);
    assert_int_equal(gw_decode_message(f.d, 0, NULL, huge, big, 0, collect, &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_SIZE), 1);
    free(huge);
    assert_int_equal(gw_decode_bad_total(f.d), 7);
    drop(&f);
}

static void test_timestamps(void **state)
{
    (void)state;
    static const struct {
        const char *fmt, *payload;
        int64_t want;
    } cases[] = {
        {"epoch_s", "{\"ts\": 1736889600, \"v\": 1}", 1736889600000000LL},
        {"epoch_ms", "{\"ts\": 1736889600123, \"v\": 1}", 1736889600123000LL},
        {"auto", "{\"ts\": 1736889600123, \"v\": 1}", 1736889600123000LL},
        {"auto", "{\"ts\": 1736889600, \"v\": 1}", 1736889600000000LL},
        {"auto", "{\"ts\": \"2025-01-14T21:20:00Z\", \"v\": 1}", 1736889600000000LL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char opts[200];
        snprintf(opts, sizeof opts, "{\"fields\": {\"v\": \"v\"}, \"timestamp\": {\"path\": \"ts\", \"format\": \"%s\"}}",
                 cases[i].fmt);
        fixture f;
        assert_int_equal(make(&f, opts), 0);
        got g;
        assert_int_equal(decode(&f, cases[i].payload, &g), 0);
        assert_int_equal(g.n, 1);
        assert_int_equal(g.s[0].ts_us, cases[i].want);
        drop(&f);
    }
    /* A string where epoch seconds are configured is the wrong type. */
    fixture f;
    assert_int_equal(make(&f, "{\"timestamp\": {\"path\": \"ts\", \"format\": \"epoch_s\"}}"), 0);
    got g;
    assert_int_equal(decode(&f, "{\"ts\": \"2025-01-14T21:20:00Z\", \"v\": 1}", &g), GW_EDECODE);
    drop(&f);
}

static void test_auto_fields(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, NULL), 0);
    got g;
    assert_int_equal(decode(&f, "{\"tilt\": 22.4, \"battery\": 89, \"status\": \"abnormal\", \"ok\": true,"
                                " \"bad key\": 1, \"nested\": {\"x\": 1}}", &g), 0);
    assert_int_equal(g.n, 3);
    assert_non_null(find(&g, "tilt"));
    assert_non_null(find(&g, "battery"));
    assert_int_equal(find(&g, "ok")->type, GW_V_BOOL);
    assert_int_equal(decode(&f, "[1, 2]", &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_TYPE), 1);
    drop(&f);
}

static void test_option_errors(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, "{\"field\": {}, \"fields\": {\"x y\": \"a\", \"ok\": {\"path\": \"a..b\"},"
                              " \"s\": {\"path\": \"a\", \"scale\": 0, \"unit\": \"this-unit-is-far-too-long\", \"typ\": 1},"
                              " \"t\": {\"path\": \"a\", \"type\": \"float\"}},"
                              " \"timestamp\": {\"path\": \"ts\", \"format\": \"julian\"}}"),
                     GW_ECONFIG);
    assert_null(f.d);
    assert_true(has_error(&f.errs, "site.json: devices[0].mqtt.options.field: unknown option for decoder 'json'"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.fields.x y: field names are"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.fields.ok.path: must be a JSON path"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.fields.s.scale: must be a finite non-zero number"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.fields.s.unit: must be a string"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.fields.s.typ: unknown key"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.fields.t.type: must be number, bool or text"));
    assert_true(has_error(&f.errs, "devices[0].mqtt.options.timestamp.format: must be rfc3339"));
    drop(&f);
}

static void test_dispatch_errors(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, NULL), 0);
    got g = {0};
    /* Not an MQTT device, out of range: not found, nothing counted. */
    assert_int_equal(gw_decode_message(f.d, 1, NULL, "{}", 2, 0, collect, &g), GW_ENOTFOUND);
    assert_int_equal(gw_decode_message(f.d, 7, NULL, "{}", 2, 0, collect, &g), GW_ENOTFOUND);
    /* The device's decoder replaces a plain subscription decoder ... */
    assert_int_equal(gw_decode_message(f.d, 0, "manhole", "{\"a\": 1}", 8, 0, collect, &g), 0);
    assert_int_equal(g.n, 1);
    /* ... but not an envelope, which was never prepared for this device. */
    assert_int_equal(gw_decode_message(f.d, 0, "chirpstack", "{}", 2, 0, collect, &g), GW_EDECODE);
    assert_int_equal(gw_decode_bad_count(f.d, 0, CG_BAD_NO_DECODER), 1);
    gw_decoders_free(f.d);
    gw_cfgerr_free(&f.errs);
    f.d = NULL;
    assert_int_equal(gw_decoders_create(&f.cfg, NULL, &f.errs, &f.d), 0);
    memset(&g, 0, sizeof g);
    /* The consumer's error comes back as is and is not a bad payload. */
    g.fail_with = GW_EFULL;
    assert_int_equal(gw_decode_message(f.d, 0, NULL, "{\"a\": 1}", 8, 0, collect, &g), GW_EFULL);
    assert_int_equal(gw_decode_bad_total(f.d), 0);
    drop(&f);
}

static void test_unknown_plugin(void **state)
{
    (void)state;
    fixture f;
    memset(&f, 0, sizeof f);
    f.dev[0] = (gw_device){.id = "d", .source = GW_SRC_MQTT, .decoder = "no-such-plugin"};
    f.cfg.file = "site.json";
    f.cfg.devices = f.dev;
    f.cfg.n_devices = 1;
    assert_int_equal(gw_decoders_create(&f.cfg, NULL, &f.errs, &f.d), GW_ECONFIG);
    assert_true(has_error(&f.errs, "site.json: devices[0].mqtt.decoder: plugin 'no-such-plugin': not built in"));
    gw_cfgerr_free(&f.errs);
    f.dev[0].decoder = "../etc/passwd";
    assert_int_equal(gw_decoders_create(&f.cfg, NULL, &f.errs, &f.d), GW_ECONFIG);
    assert_true(has_error(&f.errs, "a plugin name is [a-z0-9_-]+"));
    gw_cfgerr_free(&f.errs);
}

/* Each thread keeps its message scratch (the sink) across messages. A consumer that
 * decodes again from its emit callback gets a scratch of its own: the outer message's
 * later samples keep their device, time and count. */
typedef struct nested {
    fixture *f;
    got outer, inner;
    int inner_rc;
} nested;

static int collect_nested(void *ctx, const gw_sample *s)
{
    nested *n = ctx;
    if (n->outer.n == 0) {
        const char *p = "{\"x\": 10, \"y\": 20, \"z\": 30}";
        n->inner_rc = gw_decode_message(n->f->d, 0, NULL, p, strlen(p), 2000000, collect, &n->inner);
    }
    return collect(&n->outer, s);
}

static void test_nested_decode(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, NULL), 0);
    for (int round = 0; round < 2; round++) { /* the second round reuses the kept scratch */
        nested n = {.f = &f};
        const char *p = "{\"a\": 1, \"b\": 2}";
        assert_int_equal(gw_decode_message(f.d, 0, NULL, p, strlen(p), 1000000, collect_nested, &n), 0);
        assert_int_equal(n.inner_rc, 0);
        assert_int_equal(n.outer.n, 2);
        assert_int_equal(n.inner.n, 3);
        for (size_t i = 0; i < n.outer.n; i++) {
            assert_string_equal(n.outer.s[i].device, "dev-json");
            assert_int_equal(n.outer.s[i].ts_us, 1000000);
        }
        assert_non_null(find(&n.outer, "b"));
        assert_int_equal(find(&n.inner, "z")->value, 30);
        assert_int_equal(find(&n.inner, "z")->ts_us, 2000000);
    }
    drop(&f);
}

static int parse_str(const char *text, cJSON **out, int *reason)
{
    return gw_decode_json_parse(text, strlen(text), 1024, out, reason);
}

/* Trees parsed into the thread's arena stay intact while others are parsed and freed
 * in any order, the arena starts over once none is alive, and a payload larger than
 * the arena parses (its tail from malloc) and frees without a leak. */
static void test_parse_arena(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, NULL), 0); /* installs the hooks */
    int reason;
    for (int round = 0; round < 3; round++) {
        cJSON *a, *b, *c;
        assert_int_equal(parse_str("{\"k\": \"alpha\", \"n\": 1}", &a, &reason), 0);
        assert_int_equal(parse_str("{\"k\": \"beta\", \"n\": 2}", &b, &reason), 0);
        gw_decode_json_free(a);
        assert_int_equal(parse_str("{\"k\": \"gamma\", \"n\": 3}", &c, &reason), 0);
        assert_int_equal(parse_str("{\"k\": ", &a, &reason), GW_EDECODE);
        assert_string_equal(cJSON_GetObjectItem(b, "k")->valuestring, "beta");
        assert_string_equal(cJSON_GetObjectItem(c, "k")->valuestring, "gamma");
        assert_int_equal(cJSON_GetObjectItem(c, "n")->valueint, 3);
        gw_decode_json_free(c);
        gw_decode_json_free(b);
    }
    /* 4,000 strings of 30 bytes: well past the arena. */
    size_t cap = 4000 * 40 + 16, n = 0;
    char *big = malloc(cap);
    big[n++] = '[';
    for (int i = 0; i < 4000; i++)
        n += (size_t)sprintf(big + n, "%s\"%028d\"", i ? "," : "", i);
    big[n++] = ']';
    cJSON *j;
    assert_int_equal(gw_decode_json_parse(big, n, cap, &j, &reason), 0);
    assert_int_equal(cJSON_GetArraySize(j), 4000);
    assert_string_equal(cJSON_GetArrayItem(j, 3999)->valuestring, "0000000000000000000000003999");
    gw_decode_json_free(j);
    free(big);
    /* A tree parsed while the arena is nearly full (a live tree fills it) must not put
     * its tail in the arena: that tree is rooted on the heap, and the arena starts over
     * once the tree filling it is freed. Sizes sweep the arena's end across every
     * alignment of B's nodes and strings. */
    for (int k = 560; k < 700; k++) {
        char *fill = malloc((size_t)k * 8 + 8), *over = malloc(700 * 8 + 8);
        size_t nf = 0, no = 0;
        fill[nf++] = '[';
        for (int i = 0; i < k; i++)
            nf += (size_t)sprintf(fill + nf, "%s\"a\"", i ? "," : "");
        fill[nf++] = ']';
        over[no++] = '[';
        for (int i = 0; i < 700; i++)
            no += (size_t)sprintf(over + no, "%s\"ZZZZ\"", i ? "," : "");
        over[no++] = ']';
        cJSON *fa, *b, *c;
        assert_int_equal(gw_decode_json_parse(fill, nf, 1 << 20, &fa, &reason), 0);
        assert_int_equal(parse_str("[\"q\", \"r\", {\"s\": \"t\"}]", &b, &reason), 0);
        gw_decode_json_free(fa);
        assert_int_equal(gw_decode_json_parse(over, no, 1 << 20, &c, &reason), 0);
        assert_string_equal(cJSON_GetArrayItem(b, 0)->valuestring, "q");
        assert_string_equal(cJSON_GetArrayItem(b, 1)->valuestring, "r");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(b, 2), "s")->valuestring, "t");
        gw_decode_json_free(c);
        gw_decode_json_free(b);
        free(fill);
        free(over);
    }
    /* Trees made outside a parse are ordinary heap trees. */
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "x", "y");
    char *text = cJSON_PrintUnformatted(o);
    assert_string_equal(text, "{\"x\":\"y\"}");
    cJSON_free(text);
    cJSON_Delete(o);
    drop(&f);
}

/* A decoding thread that ends frees its scratch (under ASan, a leak otherwise). */
static void *decode_once(void *arg)
{
    got g;
    return (void *)(intptr_t)decode(arg, "{\"a\": 1}", &g);
}

/* On a fresh thread without memory for its scratch (and then for a sink), the decode
 * fails cleanly; once memory is back the thread decodes. */
static void *decode_without_memory(void *arg)
{
    got g;
    gw_alloc_fail_after(0);
    int rc = decode(arg, "{\"a\": 1}", &g);
    gw_alloc_fail_after(-1);
    if (rc != GW_ENOMEM)
        return (void *)1;
    rc = decode(arg, "{\"a\": 1}", &g);
    return (void *)(intptr_t)(rc != 0 || g.n != 1 ? 2 : 0);
}

static void test_thread_scratch(void **state)
{
    (void)state;
    fixture f;
    assert_int_equal(make(&f, NULL), 0);
    pthread_t th0;
    void *rc0;
    assert_int_equal(pthread_create(&th0, NULL, decode_without_memory, &f), 0);
    assert_int_equal(pthread_join(th0, &rc0), 0);
    assert_int_equal((intptr_t)rc0, 0);
    for (int i = 0; i < 3; i++) {
        pthread_t th;
        void *rc;
        assert_int_equal(pthread_create(&th, NULL, decode_once, &f), 0);
        assert_int_equal(pthread_join(th, &rc), 0);
        assert_int_equal((intptr_t)rc, 0);
    }
    drop(&f);
}

/* Fail every allocation in turn: no crash, and (under ASan) no leak. */
static void test_alloc_failures(void **state)
{
    (void)state;
    const char *payload = "{\"time\": \"2026-06-01T00:00:00Z\", \"object\": {\"angle\": 1250}}";
    for (long n = 0; n < 200; n++) {
        fixture f;
        gw_alloc_fail_after(n);
        int rc = make(&f, "{\"fields\": {\"tilt_deg\": {\"path\": \"object.angle\", \"unit\": \"deg\"}},"
                          " \"timestamp\": {\"path\": \"time\"}}");
        if (rc == 0) {
            got g;
            rc = decode(&f, payload, &g);
            assert_true(rc == 0 || rc == GW_ENOMEM);
        } else {
            assert_true(rc == GW_ENOMEM || rc == GW_ECONFIG);
        }
        gw_alloc_fail_after(-1);
        drop(&f);
        if (rc == 0 && n > 50)
            break;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_untrusted),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_field_map),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_auto_fields),
        cmocka_unit_test(test_option_errors),
        cmocka_unit_test(test_dispatch_errors),
        cmocka_unit_test(test_unknown_plugin),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_nested_decode),
        cmocka_unit_test(test_thread_scratch),
        cmocka_unit_test(test_parse_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
