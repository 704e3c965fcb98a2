/* Rule-set validation and per-device overrides, as `citygate check` reports them:
 * every error "FILE: json.path: message", table-driven. Also: the shipped rule sets are
 * valid, overrides change what the engine compiles, allocation failures do not crash
 * or leak. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_rules_util.h"

static int has_line(const gw_cfgerr *e, const char *want)
{
    for (size_t i = 0; i < e->n; i++)
        if (strstr(e->lines[i], want))
            return 1;
    return 0;
}

static void dump(const gw_cfgerr *e)
{
    for (size_t i = 0; i < e->n; i++)
        fprintf(stderr, "  | %s\n", e->lines[i]);
}

static void test_shipped_sets_valid(void **state)
{
    (void)state;
    const char *sets[] = {"manhole", "lamp", "water", "gas", "common"};
    for (int i = 0; i < 5; i++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/rules/%s.json", tu_src(), sets[i]);
        char *txt = tu_read_file(path);
        assert_non_null(txt);
        cJSON *doc = cJSON_Parse(txt);
        free(txt);
        assert_non_null(doc);
        gw_cfgerr errs = {0};
        int rc = gw_rules_check_doc(doc, path, &errs);
        if (rc)
            dump(&errs);
        assert_int_equal(rc, 0);
        gw_cfgerr_free(&errs);
        cJSON_Delete(doc);
    }
}

typedef struct bad_case {
    const char *doc;
    const char *want; /* substring of one error line */
} bad_case;

static const bad_case bad_docs[] = {
    {"[]", "rules/x.json: a rule set must be an object"},
    {"{\"rules\": 3}", "rules/x.json: rules: required: an array"},
    {"{\"rules\": [], \"colour\": 1}", "unknown key \"colour\""},
    {"{\"schema\": \"v2\", \"rules\": []}", "schema: must be \"citygate.rules/1\""},
    {"{\"rules\": [{\"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].id: required"},
    {"{\"rules\": [{\"id\": \"Bad Id\"}]}", "rules[0].id: required: lower-case"},
    {"{\"rules\": [{\"id\": \"r\", \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when: required"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \"~\"}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.op: must be one of"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 10, \"clear\": 12}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0]: clear (12) must be <= raise (10) for op > (deadband)"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \"<\", \"raise\": 10, \"clear\": 8}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "clear (8) must be >= raise (10) for op <"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\"}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.raise: a threshold needs"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1, \"low\": 2}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.low: not used by op \">\""},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"on_delay\": \"soon\", \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].on_delay: must be a duration"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"on_delay\": \"5s\", \"n_of_m\": [2, 3], \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "use either on_delay / off_delay or n_of_m"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"n_of_m\": [4, 3], \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].n_of_m: needs 1 <= N <= M <= 32"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"severity\": \"huge\", \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].severity: must be one of warning, minor, major, critical"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"levels\": [{\"severity\": \"major\", \"raise\": 5}, {\"severity\": \"warning\", \"raise\": 9}], \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "levels must rise in severity"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"levels\": [{\"severity\": \"warning\", \"raise\": 5}, {\"severity\": \"major\", \"raise\": 3}], \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "level 1 raise (3) must be higher than level 0 (5)"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"op\": \"stale\"}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "stale needs one of \"for\""},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"op\": \"quality\", \"in\": [\"good\"]}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.in[0]: must be one of"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"any\": []}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.any: must be an array of 1..16 conditions"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"all\": [{\"field\": \"x\", \"op\": \"==\", \"value\": [1]}]}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.all[0].value: needs a number, boolean or string"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \"in\", \"values\": [1, \"a\"]}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.values[1]: values must all be"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": {\"param\": 3}}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.raise.param: must name a device parameter"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"problem\": {\"class\": \"event\", \"code\": \"gas\", \"name\": \"n\"}}]}",
     "rules[0].problem.code: an event class code is 4 or 5 digits"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"problem\": {\"class\": \"device\", \"name\": \"n\"}}]}",
     "rules[0].problem.code: required"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}},"
     " {\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[1].id: duplicate rule id \"r\" (also rules[0])"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"of\": \"rate\", \"op\": \"==\", \"value\": 1}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.of: a rate is compared with"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \"between\", \"low\": 5, \"high\": 1}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "low (5) must not exceed high (1)"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"any\": [{\"field\": \"x\", \"op\": \"==\", \"value\": 1}]}, \"levels\": [{\"severity\": \"major\", \"raise\": 1}], \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].levels: levels need a threshold"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"evidence\": \"y\", \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].evidence: \"y\" is not a field of the condition"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"op\": \"stuck\", \"field\": \"x\"}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].when.for: stuck needs a duration"},
    {"{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"select\": {\"kind\": 3}, \"problem\": {\"class\": \"device\", \"code\": \"D1\", \"name\": \"n\"}}]}",
     "rules[0].select.kind: must be a string or an array of strings"},
};

static void test_bad_docs(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof bad_docs / sizeof bad_docs[0]; i++) {
        cJSON *doc = cJSON_Parse(bad_docs[i].doc);
        assert_non_null(doc);
        gw_cfgerr errs = {0};
        int rc = gw_rules_check_doc(doc, "rules/x.json", &errs);
        if (rc != GW_ECONFIG || !has_line(&errs, bad_docs[i].want)) {
            fprintf(stderr, "case %zu: want \"%s\", got rc %d:\n", i, bad_docs[i].want, rc);
            dump(&errs);
            failed++;
        }
        gw_cfgerr_free(&errs);
        cJSON_Delete(doc);
    }
    assert_int_equal(failed, 0);
}

typedef struct ov_case {
    const char *overrides;
    const char *want; /* NULL: valid */
} ov_case;

static const ov_case ov_cases[] = {
    {"{\"cover-tilt\": {\"raise\": 20, \"clear\": 12}}", NULL},
    {"{\"cover-tilt\": {\"enabled\": false}, \"battery-low\": {\"severity\": \"minor\"}}", NULL},
    {"{\"comm-loss\": {\"on_delay\": \"1m\"}}", NULL},
    {"{\"cover-tilx\": {\"raise\": 20}}",
     "test.json: devices[0].overrides.cover-tilx: no rule \"cover-tilx\" in the device's rule sets (manhole, common)"},
    {"{\"cover-tilt\": {\"raise\": 20, \"clear\": 25}}",
     "test.json: devices[0].overrides.cover-tilt: clear (25) must be <= raise (20) for op > (deadband)"},
    {"{\"cover-tilt\": {\"raise\": \"high\"}}", "test.json: devices[0].overrides.cover-tilt.raise: must be a number"},
    {"{\"cover-tilt\": {\"rasie\": 20}}", "test.json: devices[0].overrides.cover-tilt: unknown key \"rasie\""},
    {"{\"cover-tilt\": {\"enabled\": \"no\"}}", "devices[0].overrides.cover-tilt.enabled: must be true or false"},
    {"{\"cover-tilt\": {\"severity\": \"fatal\"}}", "devices[0].overrides.cover-tilt.severity: must be one of"},
    {"{\"cover-tilt\": {\"on_delay\": -5}}", "devices[0].overrides.cover-tilt.on_delay: must be a duration"},
    {"{\"comm-loss\": {\"raise\": 3}}", "devices[0].overrides.comm-loss: \"raise\"/\"clear\" need a rule whose condition has a threshold"},
    {"{\"cover-tilt\": {\"raise\": 95}}", "devices[0].overrides.cover-tilt: level 1 raise (90) must be higher than level 0 (95)"},
    {"{\"cover-tilt\": 5}", "devices[0].overrides.cover-tilt: must be an object"},
    {"{\"cover-tilt\": {\"levels\": [{\"raise\": 30}, {\"raise\": 100, \"clear\": 85}]}}", NULL},
    {"{\"cover-tilt\": {\"levels\": [{}, {}, {}]}}", "devices[0].overrides.cover-tilt.levels: must be an array of at most 2"},
};

static void test_overrides(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof ov_cases / sizeof ov_cases[0]; i++) {
        gw_config *cfg = tu_cfg_new();
        tu_cfg_ruleset_file(cfg, "manhole");
        tu_cfg_ruleset_file(cfg, "common");
        tu_cfg_device(cfg, "mh-1", "manhole", "manhole,common", NULL, ov_cases[i].overrides, NULL);
        gw_cfgerr errs = {0};
        int rc = gw_rules_check(cfg, &errs);
        int ok = ov_cases[i].want ? (rc == GW_ECONFIG && has_line(&errs, ov_cases[i].want)) : rc == 0;
        if (!ok) {
            fprintf(stderr, "override case %zu: want %s, rc %d:\n", i,
                    ov_cases[i].want ? ov_cases[i].want : "no error", rc);
            dump(&errs);
            failed++;
        }
        gw_cfgerr_free(&errs);
        tu_cfg_free(cfg);
    }
    assert_int_equal(failed, 0);
}

static const gw_rule_inst *find_inst(const gw_rule_inst *arr, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(arr[i].rule_id, id))
            return &arr[i];
    return NULL;
}

static void test_compile(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset_file(cfg, "manhole");
    tu_cfg_ruleset_file(cfg, "lamp");
    tu_cfg_ruleset_file(cfg, "common");
    tu_cfg_ruleset(cfg, "local",
        "{\"select\": {\"tags\": {\"district\": \"yuzhong\"}}, \"rules\": ["
        "{\"id\": \"only-mh-1\", \"select\": {\"devices\": [\"mh-1*\"]},"
        " \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 1}, \"problem\": {\"class\": \"device\", \"code\": \"X\", \"name\": \"n\"}}]}");
    tu_cfg_device(cfg, "mh-1", "manhole", "", "{\"well_depth_m\": 2.5}",
                  "{\"cover-tilt\": {\"raise\": 20, \"on_delay\": \"10s\"}, \"cover-open\": {\"enabled\": false}}", NULL);
    tu_cfg_device(cfg, "mh-10", "manhole", "manhole,local", NULL, NULL, "{\"district\": \"yuzhong\"}");
    tu_cfg_device(cfg, "mh-2", "manhole", "manhole,local", NULL, NULL, "{\"district\": \"yuzhong\"}");
    tu_cfg_device(cfg, "lamp-1", "lamp", "", NULL, NULL, NULL);

    gw_rule_inst *arr;
    size_t n;
    assert_int_equal(gw_rule_compile(cfg, &cfg->devices[0], NULL, &arr, &n), 0);
    const gw_rule_inst *t = find_inst(arr, n, "cover-tilt");
    assert_non_null(t);
    assert_string_equal(t->alarm_id, "mh-1/cover-tilt");
    assert_true(t->levels[0].raise == 20);
    assert_true(t->levels[0].clear == 15); /* deadband kept: 15/10 moved to 20/15 */
    assert_int_equal(t->levels[0].on_delay_us, 10000000);
    assert_int_equal(t->levels[1].on_delay_us, 10000000); /* debounce applies to every level */
    assert_true(t->levels[1].raise == 90);
    assert_string_equal(t->levels[0].condition, "tilt_deg > 20 for 10s");
    assert_string_equal(t->pcode, "0102"); /* minor class of the component code */
    assert_null(find_inst(arr, n, "cover-open"));
    const gw_rule_inst *w = find_inst(arr, n, "water-level-high");
    assert_non_null(w); /* param present */
    assert_true(w->levels[0].raise == 2.0 && w->levels[1].raise == 2.5);
    assert_non_null(find_inst(arr, n, "comm-loss"));
    assert_string_equal(find_inst(arr, n, "comm-loss")->levels[0].condition,
                        "no good sample for 3 intervals (30s)");
    for (size_t i = 0; i < n; i++)
        gw_rule_inst_clear(&arr[i]);
    gw_free(arr);

    /* mh-10: selector by id pattern and tag; no well depth: water rule skipped */
    assert_int_equal(gw_rule_compile(cfg, &cfg->devices[1], NULL, &arr, &n), 0);
    assert_non_null(find_inst(arr, n, "only-mh-1"));
    assert_null(find_inst(arr, n, "water-level-high"));
    assert_null(find_inst(arr, n, "comm-loss")); /* explicit rule_sets without common */
    for (size_t i = 0; i < n; i++)
        gw_rule_inst_clear(&arr[i]);
    gw_free(arr);
    assert_int_equal(gw_rule_compile(cfg, &cfg->devices[2], NULL, &arr, &n), 0);
    assert_null(find_inst(arr, n, "only-mh-1"));
    for (size_t i = 0; i < n; i++)
        gw_rule_inst_clear(&arr[i]);
    gw_free(arr);

    /* lamp: rated power default 100 W; the composite's condition text */
    assert_int_equal(gw_rule_compile(cfg, &cfg->devices[3], NULL, &arr, &n), 0);
    const gw_rule_inst *lf = find_inst(arr, n, "lamp-failure");
    assert_non_null(lf);
    assert_string_equal(lf->levels[0].condition, "power_w < 10 and should_be_on == 1 for 1m");
    assert_null(find_inst(arr, n, "cover-tilt"));
    for (size_t i = 0; i < n; i++)
        gw_rule_inst_clear(&arr[i]);
    gw_free(arr);
    tu_cfg_free(cfg);
}

/* Fail every allocation in turn while compiling and running: no crash, no leak (the
 * sanitizer build checks the leaks). */
static int nop_commit(void *ctx, const gw_event_out *ev)
{
    (void)ctx;
    (void)ev;
    return 0;
}

/* A rule skipped for a missing parameter is a warning for `citygate check`, named with
 * the device's place, and no error. */
static void test_skip_warnings(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset_file(cfg, "manhole");
    tu_cfg_ruleset_file(cfg, "gas");
    tu_cfg_ruleset_file(cfg, "common");
    tu_cfg_device(cfg, "mh-1", "manhole", "", "{\"well_depth_m\": 2.5}", NULL, NULL);
    tu_cfg_device(cfg, "mh-2", "manhole", "", NULL, NULL, NULL);
    tu_cfg_device(cfg, "gas-1", "gas", "", "{\"pressure_high_kpa\": 4}", NULL, NULL);
    tu_cfg_device(cfg, "gas-2", "gas", "", "{\"pressure_low_kpa\": 1, \"pressure_high_kpa\": 4}", NULL, NULL);
    gw_cfgerr errs = {0}, warns = {0};
    assert_int_equal(gw_rules_check(cfg, &errs), 0);
    assert_int_equal(errs.n, 0);
    assert_int_equal(gw_rules_warnings(cfg, &warns), 2);
    assert_int_equal(warns.n, 2);
    assert_string_equal(warns.lines[0], "test.json: devices[1].params: rule water-level-high (rules/manhole.json) "
                                        "skipped for device mh-2: params.well_depth_m not set");
    assert_string_equal(warns.lines[1], "test.json: devices[2].params: rule pressure-band (rules/gas.json) "
                                        "skipped for device gas-1: params.pressure_low_kpa not set");
    gw_cfgerr_free(&warns);
    gw_cfgerr_free(&errs);
    /* params that break a rule for one device are that device's errors, with its place
     * (rated power < 0: lamp-failure's clear limit falls on the wrong side of raise) */
    tu_cfg_ruleset_file(cfg, "lamp");
    tu_cfg_device(cfg, "lamp-1", "lamp", "", "{\"rated_power_w\": -100}", NULL, NULL);
    assert_int_equal(gw_rules_check(cfg, &errs), GW_ECONFIG);
    assert_true(errs.n >= 1);
    assert_non_null(strstr(errs.lines[0], "test.json: devices[4].params: with these params: rules/lamp.json: rules[0]"));
    assert_non_null(strstr(errs.lines[0], "deadband"));
    gw_cfgerr_free(&errs);
    cfg->devices[4].enabled = 0;
    /* a disabled device gets no rules: no warning */
    cfg->devices[1].enabled = 0;
    cfg->devices[2].enabled = 0;
    assert_int_equal(gw_rules_warnings(cfg, &warns), 0);
    gw_cfgerr_free(&warns);
    tu_cfg_free(cfg);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset_file(cfg, "manhole");
    tu_cfg_ruleset_file(cfg, "common");
    tu_cfg_device(cfg, "mh-1", "manhole", "", "{\"well_depth_m\": 2.5}", NULL, NULL);
    gw_engine_hooks hooks = {nop_commit, NULL};
    int succeeded = 0;
    for (long k = 0; k < 4000 && !succeeded; k++) {
        gw_alloc_fail_after(k);
        gw_engine *e = NULL;
        int rc = gw_engine_new(cfg, &hooks, NULL, &e);
        if (rc == 0) {
            tu_sample(e, "mh-1", "tilt_deg", 95, 0);
            gw_engine_tick(e, TU_T0 + TU_S(100));
            gw_alloc_fail_after(-1);
            succeeded = 1;
            gw_engine_free(e);
        } else {
            assert_int_equal(rc, GW_ENOMEM);
        }
    }
    gw_alloc_fail_after(-1);
    assert_true(succeeded);
    tu_cfg_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shipped_sets_valid),
        cmocka_unit_test(test_bad_docs),
        cmocka_unit_test(test_overrides),
        cmocka_unit_test(test_compile),
        cmocka_unit_test(test_skip_warnings),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
