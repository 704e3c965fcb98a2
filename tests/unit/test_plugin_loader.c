/* Plugin loading and ABI negotiation through gw_plugins_add (the same checks a dlopen'ed
 * plugin goes through; tests/integration/30-plugin-out-of-tree.sh does it with real
 * .so files): an older minor loads with its newer members read as NULL, a wrong major,
 * a short or misnamed descriptor and a bad option table are refused with clear
 * messages; option parsing and validation with places; init failure at check time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "config.h"
#include "error.h"
#include "plugin.h"

static int dec(cg_ctx *c, const uint8_t *p, size_t n, cg_emit_fn e)
{
    (void)c, (void)p, (void)n, (void)e;
    return 0;
}

static int der(cg_ctx *c, const cg_sample *s, size_t n, cg_emit_fn e)
{
    (void)c, (void)s, (void)n, (void)e;
    return 0;
}

/* ABI 1.0 ended after decode: build a full struct but declare the old size, with a
 * derive pointer beyond it that the host must not read. */
static cg_plugin_desc old_minor = {.abi = CG_ABI_VERSION(1, 0), .name = "old",
                                   .decode = dec, .derive = der};
static const cg_plugin_desc *entry_old(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    old_minor.size = offsetof(cg_plugin_desc, decode) + sizeof old_minor.decode;
    return &old_minor;
}

static const cg_plugin_desc major2 = {.abi = CG_ABI_VERSION(2, 0), .size = sizeof major2,
                                      .name = "major2", .decode = dec};
static const cg_plugin_desc *entry_major2(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return &major2;
}

static const cg_plugin_desc tiny = {.abi = CG_ABI_CURRENT, .size = 8, .name = "tiny", .decode = dec};
static const cg_plugin_desc *entry_tiny(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return &tiny;
}

static const cg_plugin_desc misnamed = {.abi = CG_ABI_CURRENT, .size = sizeof misnamed,
                                        .name = "other", .decode = dec};
static const cg_plugin_desc *entry_misnamed(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return &misnamed;
}

static const cg_plugin_desc nodecode = {.abi = CG_ABI_CURRENT, .size = sizeof nodecode, .name = "nodecode"};
static const cg_plugin_desc *entry_nodecode(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return &nodecode;
}

static const cg_plugin_desc *entry_null(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return NULL;
}

static const cg_option bad_enum[] = {{"mode", CG_OPT_ENUM, "a", 0, 0, NULL, "no choices"}, {NULL, 0, NULL, 0, 0, NULL, NULL}};
static const cg_plugin_desc badopt = {.abi = CG_ABI_CURRENT, .size = sizeof badopt, .name = "badopt",
                                      .decode = dec, .options = bad_enum};
static const cg_plugin_desc *entry_badopt(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return &badopt;
}

static const cg_option bad_default[] = {{"n", CG_OPT_INT, "1.5", 0, 10, NULL, "not an int"}, {NULL, 0, NULL, 0, 0, NULL, NULL}};
static const cg_plugin_desc baddef = {.abi = CG_ABI_CURRENT, .size = sizeof baddef, .name = "baddef",
                                      .decode = dec, .options = bad_default};
static const cg_plugin_desc *entry_baddef(const cg_host *h, uint32_t abi)
{
    (void)h, (void)abi;
    return &baddef;
}

static const cg_option opts[] = {
    {"count", CG_OPT_INT, "3", 1, 10, NULL, "an int"},
    {"gain", CG_OPT_DOUBLE, "1.5", 0, 0, NULL, "unbounded"},
    {"on", CG_OPT_BOOL, "false", 0, 0, NULL, "a bool"},
    {"name", CG_OPT_STRING, "abc", 0, 5, NULL, "at most 5 bytes"},
    {"mode", CG_OPT_ENUM, "fast", 0, 0, "slow|fast|auto", "an enum"},
    {"key", CG_OPT_STRING, NULL, 0, 0, NULL, "required"},
    {NULL, 0, NULL, 0, 0, NULL, NULL},
};
static int init_calls;
static int opt_init(cg_ctx *ctx, void **state)
{
    const cg_host *h = gw_plugin_host();
    init_calls++;
    *state = NULL;
    return strcmp(h->opt_string(ctx, "key"), "fail") == 0 ? CG_EINVAL : 0;
}
static const cg_plugin_desc withopts = {.abi = CG_ABI_CURRENT, .size = sizeof withopts, .name = "withopts",
                                        .decode = dec, .options = opts, .init = opt_init};
static const cg_plugin_desc *entry_withopts(const cg_host *h, uint32_t abi)
{
    assert_int_equal(abi, CG_ABI_CURRENT);
    assert_int_equal(h->size, sizeof(cg_host));
    assert_true(CG_HOST_HAS(h, json_time));
    return &withopts;
}

static int has_error(const gw_cfgerr *e, const char *text)
{
    for (size_t i = 0; i < e->n; i++)
        if (strstr(e->lines[i], text))
            return 1;
    return 0;
}

static void test_negotiation(void **state)
{
    (void)state;
    gw_plugins *r;
    char err[512];
    const gw_plugin *p;
    assert_int_equal(gw_plugins_create(NULL, &r), 0);

    assert_int_equal(gw_plugins_add(r, "old", entry_old, "test", err, sizeof err), 0);
    assert_int_equal(gw_plugins_get(r, "old", &p, err, sizeof err), 0);
    assert_null(p->desc.derive); /* beyond its declared size: not read */
    assert_ptr_equal(p->desc.decode, dec);

    assert_int_equal(gw_plugins_add(r, "major2", entry_major2, "m2.so", err, sizeof err), GW_EABI);
    assert_string_equal(err, "plugin 'major2' (m2.so): ABI major 2, this citygate speaks 1");
    /* Asked again, the same answer (the failure is remembered, not retried). */
    assert_int_equal(gw_plugins_get(r, "major2", &p, err, sizeof err), GW_EABI);
    assert_string_equal(err, "plugin 'major2' (m2.so): ABI major 2, this citygate speaks 1");

    assert_int_equal(gw_plugins_add(r, "tiny", entry_tiny, "t", err, sizeof err), GW_EABI);
    assert_non_null(strstr(err, "descriptor of 8 bytes is smaller"));
    assert_int_equal(gw_plugins_add(r, "misnamed", entry_misnamed, "t", err, sizeof err), GW_EABI);
    assert_non_null(strstr(err, "descriptor names itself 'other'"));
    assert_int_equal(gw_plugins_add(r, "nodecode", entry_nodecode, "t", err, sizeof err), GW_EABI);
    assert_non_null(strstr(err, "no decode function"));
    assert_int_equal(gw_plugins_add(r, "refuses", entry_null, "t", err, sizeof err), GW_EABI);
    assert_non_null(strstr(err, "entry returned no descriptor"));
    assert_int_equal(gw_plugins_add(r, "badopt", entry_badopt, "t", err, sizeof err), GW_EABI);
    assert_non_null(strstr(err, "enum option 'mode' declares no choices"));
    assert_int_equal(gw_plugins_add(r, "baddef", entry_baddef, "t", err, sizeof err), GW_EABI);
    assert_non_null(strstr(err, "option 'n': default: must be an integer"));

    assert_int_equal(gw_plugins_get(r, "../evil", &p, err, sizeof err), GW_EINVAL);
    assert_int_equal(gw_plugins_get(r, "Upper", &p, err, sizeof err), GW_EINVAL);
    assert_int_equal(gw_plugins_get(r, "absent", &p, err, sizeof err), GW_ENOTFOUND);
    assert_non_null(strstr(err, "not built in and no (no plugins directory)/absent.so"));
    gw_plugins_free(r);
}

static void test_builtins(void **state)
{
    (void)state;
    const char *const *names = gw_plugins_builtin_names();
    int seen = 0;
    for (size_t i = 0; names[i]; i++)
        seen |= (!strcmp(names[i], "manhole")) << 0 | (!strcmp(names[i], "chirpstack")) << 1 |
                (!strcmp(names[i], "lamp")) << 2 | (!strcmp(names[i], "ttn")) << 3 |
                (!strcmp(names[i], "water")) << 4 | (!strcmp(names[i], "gas")) << 5;
    assert_int_equal(seen, 0x3f);
    gw_plugins *r;
    char err[256];
    const gw_plugin *p;
    assert_int_equal(gw_plugins_create("/nonexistent-dir", &r), 0);
    assert_int_equal(gw_plugins_get(r, "chirpstack", &p, err, sizeof err), 0);
    assert_string_equal(p->origin, "built-in");
    assert_true(p->desc.flags & CG_PLUGIN_ENVELOPE);
    assert_int_equal(gw_plugins_get(r, "lamp", &p, err, sizeof err), 0);
    assert_non_null(p->desc.derive);
    gw_plugins_free(r);
}

static void test_options(void **state)
{
    (void)state;
    gw_plugins *r;
    char err[256];
    const gw_plugin *p;
    assert_int_equal(gw_plugins_create(NULL, &r), 0);
    assert_int_equal(gw_plugins_add(r, "withopts", entry_withopts, "t", err, sizeof err), 0);
    assert_int_equal(gw_plugins_get(r, "withopts", &p, err, sizeof err), 0);
    assert_int_equal(p->n_options, 6);
    gw_device dev = {.id = "d1"};
    gw_cfgerr errs = {0};
    cg_ctx *ctx = NULL;
    const cg_host *h = gw_plugin_host();

    /* Defaults, and the required key given. */
    cJSON *o = cJSON_Parse("{\"key\": \"k\"}");
    assert_int_equal(gw_plugin_instance_create(p, &dev, 0, o, &errs, "f.json", "devices[0].mqtt.options", &ctx), 0);
    assert_int_equal(h->opt_int(ctx, "count"), 3);
    assert_true(h->opt_double(ctx, "gain") == 1.5);
    assert_int_equal(h->opt_bool(ctx, "on"), 0);
    assert_string_equal(h->opt_string(ctx, "name"), "abc");
    assert_string_equal(h->opt_string(ctx, "mode"), "fast");
    assert_int_equal(h->opt_int(ctx, "mode"), 1);
    assert_string_equal(h->opt_string(ctx, "nope"), "");
    assert_int_equal(h->opt_int(ctx, "name"), 0); /* wrong type asked: zero */
    assert_string_equal(h->device_id(ctx), "d1");
    gw_plugin_instance_free(ctx);
    cJSON_Delete(o);

    /* Every kind of bad value, each at its place. */
    o = cJSON_Parse("{\"count\": 2.5, \"gain\": \"x\", \"on\": 1, \"name\": \"toolong\", \"mode\": \"turbo\","
                    " \"cuont\": 1, \"zzz\": 0}");
    ctx = NULL;
    assert_int_equal(gw_plugin_instance_create(p, &dev, 0, o, &errs, "f.json", "devices[0].mqtt.options", &ctx),
                     GW_ECONFIG);
    assert_null(ctx);
    assert_true(has_error(&errs, "f.json: devices[0].mqtt.options.count: must be an integer, got 2.5"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.gain: must be a number"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.on: must be true or false"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.name: at most 5 bytes"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.mode: must be one of slow|fast|auto, got 'turbo'"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.cuont: unknown option for plugin 'withopts' (did you mean 'count'?)"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.zzz: unknown option for plugin 'withopts' (it knows: count, ...)"));
    assert_true(has_error(&errs, "devices[0].mqtt.options.key: required by plugin 'withopts'"));
    gw_cfgerr_free(&errs);
    cJSON_Delete(o);

    o = cJSON_Parse("{\"count\": 11, \"key\": \"k\"}");
    assert_int_equal(gw_plugin_instance_create(p, &dev, 0, o, &errs, "f.json", "p", &ctx), GW_ECONFIG);
    assert_true(has_error(&errs, "f.json: p.count: must be 1..10, got 11"));
    gw_cfgerr_free(&errs);
    cJSON_Delete(o);

    /* init refuses: a config error naming the device, at check time. */
    init_calls = 0;
    o = cJSON_Parse("{\"key\": \"fail\"}");
    assert_int_equal(gw_plugin_instance_create(p, &dev, 0, o, &errs, "f.json", "p", &ctx), GW_ECONFIG);
    assert_int_equal(init_calls, 1);
    assert_true(has_error(&errs, "f.json: p: plugin 'withopts': init for device 'd1' failed"));
    gw_cfgerr_free(&errs);
    cJSON_Delete(o);

    o = cJSON_Parse("[1]");
    assert_int_equal(gw_plugin_instance_create(p, &dev, 0, o, &errs, "f.json", "p", &ctx), GW_ECONFIG);
    assert_true(has_error(&errs, "f.json: p: must be an object"));
    gw_cfgerr_free(&errs);
    cJSON_Delete(o);
    gw_plugins_free(r);
}

static void test_host_outside_callback(void **state)
{
    (void)state;
    /* A plugin calling message functions outside a callback gets an error, not a crash. */
    const cg_host *h = gw_plugin_host();
    cg_sample s = {.field = "x"};
    double x;
    assert_int_equal(h->emit(NULL, &s), CG_EINVAL);
    assert_int_equal(h->json_number(NULL, "a", &x), CG_EINVAL);
    assert_int_equal(h->chain(NULL, "a", CG_CHAIN_BASE64), CG_EINVAL);
    assert_int_equal(h->reject(NULL, CG_BAD_FRAME, "x"), CG_EDECODE);
    void *m = h->alloc(16);
    assert_non_null(m);
    h->free(m);
    h->free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_negotiation),
        cmocka_unit_test(test_builtins),
        cmocka_unit_test(test_options),
        cmocka_unit_test(test_host_outside_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
