/* Severity levels of the default rule sets, end to end through the engine (issue 5 bug:
 * cover-tilt raised "critical" / "tilt_deg > 90" at once for a tilt of 35°).
 *
 * The cause: every level's limits apply to the rule's primary threshold leaf, which the
 * engine recognised by comparing the leaf's address with a pointer kept in the rule
 * instance. Instances are built on the stack and copied into their array, so the pointer
 * named the stack copy; no leaf matched, every level fell back to the condition's own
 * limits (15 / 10 for cover-tilt), and the critical level, without an on-delay, fired
 * at 35°. The leaf now carries a flag that travels with every copy.
 *
 * Table-driven: each multi-level rule of the shipped rule sets, taken from the file as shipped,
 * with hand-written expectations (severities, on-delays, condition texts, limits) and
 * three values: normal, between the levels, beyond the top level. Two timelines per rule:
 *   A: normal → between (nothing until the lower on-delay, then raised at the lower
 *      severity) → beyond (nothing until the upper on-delay, then updated) → normal
 *      (cleared);
 *   B: normal → beyond at once (raised at the top severity after the shorter delay)
 *      → between (updated, de-escalated, at once) → normal (cleared).
 * Samples and ticks every second; event times are checked to the second. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_rules_util.h"

typedef struct lvl {
    const char *severity;
    int delay_s;            /* on-delay */
    const char *condition;  /* rule.condition in the event */
    double raise;           /* rule.raise in the event */
} lvl;

typedef struct lcase {
    const char *set, *rule, *kind, *params, *field;
    double normal, mid, high;
    lvl lo, hi;
} lcase;

static const lcase cases[] = {
    {"manhole", "cover-tilt", "manhole", NULL, "tilt_deg", 1, 35, 95,
     {"major", 30, "tilt_deg > 15 for 30s", 15}, {"critical", 0, "tilt_deg > 90", 90}},
    {"manhole", "ch4-high", "manhole", NULL, "ch4_lel", 2, 30, 60,
     {"warning", 10, "ch4_lel >= 20 for 10s", 20}, {"major", 5, "ch4_lel >= 50 for 5s", 50}},
    {"manhole", "water-level-high", "manhole", "{\"well_depth_m\": 2.5}", "water_level_m", 0.5, 2.2, 2.6,
     {"warning", 60, "water_level_m >= 2 for 1m", 2}, {"critical", 30, "water_level_m >= 2.5 for 30s", 2.5}},
    {"manhole", "h2s-high", "manhole", NULL, "h2s_ppm", 0, 12, 25,
     {"warning", 30, "h2s_ppm >= 10 for 30s", 10}, {"major", 10, "h2s_ppm >= 20 for 10s", 20}},
    {"manhole", "co-high", "manhole", NULL, "co_ppm", 1, 50, 200,
     {"warning", 30, "co_ppm >= 24 for 30s", 24}, {"major", 10, "co_ppm >= 160 for 10s", 160}},
    {"manhole", "battery-low", "manhole", NULL, "battery_pct", 90, 15, 3,
     {"warning", 0, "battery_pct < 20", 20}, {"major", 0, "battery_pct < 5", 5}},
    {"gas", "ch4-high", "gas", NULL, "ch4_lel", 1, 30, 62,
     {"warning", 5, "ch4_lel >= 20 for 5s", 20}, {"major", 0, "ch4_lel >= 50", 50}},
    {"gas", "co-high", "gas", NULL, "co_ppm", 1, 50, 200,
     {"warning", 30, "co_ppm >= 24 for 30s", 24}, {"major", 10, "co_ppm >= 160 for 10s", 160}},
    {"water", "turbidity-high", "water", NULL, "turbidity_ntu", 0.3, 2, 4,
     {"warning", 300, "turbidity_ntu > 1 for 5m", 1}, {"major", 60, "turbidity_ntu > 3 for 1m", 3}},
    {"lamp", "over-voltage", "lamp", NULL, "voltage_v", 221, 240, 260,
     {"warning", 60, "voltage_v > 235.4 for 1m", 235.4}, {"major", 10, "voltage_v > 253 for 10s", 253}},
    {"lamp", "under-voltage", "lamp", NULL, "voltage_v", 221, 195, 180,
     {"warning", 60, "voltage_v < 198 and voltage_v >= 50 for 1m", 198},
     {"major", 10, "voltage_v < 187 and voltage_v >= 50 for 10s", 187}},
};

/* A config with one device and one rule set "t" holding only rule c->rule of the
 * shipped rules/<set>.json (other rules of the set would add their own events). */
static gw_config *one_rule_cfg(const lcase *c)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/rules/%s.json", tu_src(), c->set);
    char *txt = tu_read_file(path);
    assert_non_null(txt);
    cJSON *doc = cJSON_Parse(txt);
    free(txt);
    assert_non_null(doc);
    cJSON *rule = NULL, *r;
    cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "rules")) {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(r, "id")), c->rule))
            rule = r;
    }
    if (!rule)
        fail_msg("rules/%s.json has no rule %s", c->set, c->rule);
    cJSON *set = cJSON_CreateObject();
    cJSON_AddStringToObject(set, "schema", "citygate.rules/1");
    cJSON_AddItemToObject(set, "select", cJSON_Duplicate(cJSON_GetObjectItem(doc, "select"), 1));
    cJSON *rules = cJSON_AddArrayToObject(set, "rules");
    cJSON_AddItemToArray(rules, cJSON_Duplicate(rule, 1));
    char *s = cJSON_PrintUnformatted(set);
    cJSON_Delete(set);
    cJSON_Delete(doc);
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset(cfg, "t", s);
    free(s);
    tu_cfg_device(cfg, "d1", c->kind, "t", c->params, NULL, NULL);
    gw_cfgerr errs = {0};
    int rc = gw_rules_check(cfg, &errs);
    if (rc != 0)
        gw_cfgerr_print(&errs, 2);
    gw_cfgerr_free(&errs);
    assert_int_equal(rc, 0);
    return cfg;
}

typedef struct seen {
    int at;                 /* seconds after T0 the event came */
    char type[24], severity[16], condition[128];
    double raise, value;
} seen;

typedef struct run {
    gw_engine *e;
    tu_cap *cap;
    seen ev[16];
    int n;
} run;

/* Hold value v from second t0 to t1 (inclusive): a sample and a tick each second. */
static void hold(run *r, const lcase *c, double v, int t0, int t1)
{
    for (int t = t0; t <= t1; t++) {
        int before = r->cap->n;
        tu_sample(r->e, "d1", c->field, v, TU_S(t));
        gw_engine_tick(r->e, TU_T0 + TU_S(t) + 500000);
        for (int i = before; i < r->cap->n && r->n < 16; i++) {
            seen *s = &r->ev[r->n++];
            memset(s, 0, sizeof *s);
            s->at = t;
            cJSON *j = cJSON_Parse(r->cap->ev[i].json);
            const cJSON *ru = cJSON_GetObjectItem(j, "rule");
            snprintf(s->type, sizeof s->type, "%s", r->cap->ev[i].type);
            snprintf(s->severity, sizeof s->severity, "%s", r->cap->ev[i].severity);
            snprintf(s->condition, sizeof s->condition, "%s",
                     cJSON_GetStringValue(cJSON_GetObjectItem(ru, "condition")));
            const cJSON *ra = cJSON_GetObjectItem(ru, "raise");
            s->raise = cJSON_IsNumber(ra) ? ra->valuedouble : NAN;
            const cJSON *val = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "evidence"), "value");
            s->value = cJSON_IsNumber(val) ? val->valuedouble : NAN;
            cJSON_Delete(j);
        }
    }
}

static int check_ev(const lcase *c, const run *r, int i, const char *type, int at, const lvl *l,
                    double value)
{
    char want[256], got[256];
    snprintf(want, sizeof want, "%s@%d %s \"%s\" raise=%g value=%g", type, at, l->severity,
             l->condition, l->raise, value);
    if (i >= r->n) {
        fprintf(stderr, "FAIL %s/%s: event %d missing, expected %s\n", c->set, c->rule, i, want);
        return 1;
    }
    const seen *s = &r->ev[i];
    snprintf(got, sizeof got, "%s@%d %s \"%s\" raise=%g value=%g", s->type, s->at, s->severity,
             s->condition, s->raise, s->value);
    if (strcmp(want, got) != 0) {
        fprintf(stderr, "FAIL %s/%s: event %d\n  expected %s\n  got      %s\n", c->set, c->rule, i,
                want, got);
        return 1;
    }
    return 0;
}

static int check_n(const lcase *c, const run *r, int n, const char *timeline)
{
    if (r->n == n)
        return 0;
    fprintf(stderr, "FAIL %s/%s timeline %s: %d events, expected %d:\n", c->set, c->rule, timeline,
            r->n, n);
    for (int i = 0; i < r->n; i++)
        fprintf(stderr, "  %s@%d %s \"%s\" raise=%g value=%g\n", r->ev[i].type, r->ev[i].at,
                r->ev[i].severity, r->ev[i].condition, r->ev[i].raise, r->ev[i].value);
    return 1;
}

static int run_case(const lcase *c)
{
    int failed = 0;
    static tu_cap cap;
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_config *cfg = one_rule_cfg(c);

    /* A: normal, between the levels, beyond the top, normal again. */
    run r = {.cap = &cap};
    memset(&cap, 0, sizeof cap);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &r.e), 0);
    int t1 = 10, t2 = t1 + c->lo.delay_s + 20, t3 = t2 + c->hi.delay_s + 20;
    hold(&r, c, c->normal, 0, t1 - 1);
    hold(&r, c, c->mid, t1, t2 - 1);
    hold(&r, c, c->high, t2, t3 - 1);
    hold(&r, c, c->normal, t3, t3 + 5);
    failed |= check_n(c, &r, 3, "A");
    failed |= check_ev(c, &r, 0, "raised", t1 + c->lo.delay_s, &c->lo, c->mid);
    failed |= check_ev(c, &r, 1, "updated", t2 + c->hi.delay_s, &c->hi, c->high);
    /* the cleared event speaks of the level that cleared */
    failed |= check_ev(c, &r, 2, "cleared", t3, &c->hi, c->normal);
    failed |= cap.schema_errors != 0;
    gw_engine_free(r.e);
    tu_cap_reset(&cap);

    /* B: straight beyond the top, back between the levels, normal. */
    memset(&r, 0, sizeof r);
    r.cap = &cap;
    memset(&cap, 0, sizeof cap);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &r.e), 0);
    int d = c->hi.delay_s < c->lo.delay_s ? c->hi.delay_s : c->lo.delay_s;
    t2 = t1 + (c->lo.delay_s > c->hi.delay_s ? c->lo.delay_s : c->hi.delay_s) + 20;
    t3 = t2 + 20;
    hold(&r, c, c->normal, 0, t1 - 1);
    hold(&r, c, c->high, t1, t2 - 1);
    hold(&r, c, c->mid, t2, t3 - 1);
    hold(&r, c, c->normal, t3, t3 + 5);
    int k = 0;
    if (c->hi.delay_s <= c->lo.delay_s) {
        failed |= check_n(c, &r, 3, "B");
        failed |= check_ev(c, &r, k++, "raised", t1 + d, &c->hi, c->high);
    } else {
        failed |= check_n(c, &r, 4, "B");
        failed |= check_ev(c, &r, k++, "raised", t1 + d, &c->lo, c->high);
        failed |= check_ev(c, &r, k++, "updated", t1 + c->hi.delay_s, &c->hi, c->high);
    }
    failed |= check_ev(c, &r, k++, "updated", t2, &c->lo, c->mid);
    failed |= check_ev(c, &r, k++, "cleared", t3, &c->lo, c->normal);
    failed |= cap.schema_errors != 0;
    gw_engine_free(r.e);
    tu_cap_reset(&cap);
    tu_cfg_free(cfg);
    return failed;
}

static void test_default_levels(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        failed += run_case(&cases[i]);
    assert_int_equal(failed, 0);
}

/* Every multi-level rule of the shipped sets is in the table above. */
static void test_table_covers_every_level_rule(void **state)
{
    (void)state;
    const char *sets[] = {"manhole", "lamp", "water", "gas", "common"};
    int missing = 0;
    for (int s = 0; s < 5; s++) {
        char path[2048];
        snprintf(path, sizeof path, "%s/rules/%s.json", tu_src(), sets[s]);
        char *txt = tu_read_file(path);
        assert_non_null(txt);
        cJSON *doc = cJSON_Parse(txt);
        free(txt);
        const cJSON *r;
        cJSON_ArrayForEach(r, cJSON_GetObjectItem(doc, "rules")) {
            if (cJSON_GetArraySize(cJSON_GetObjectItem(r, "levels")) < 2)
                continue;
            const char *id = cJSON_GetStringValue(cJSON_GetObjectItem(r, "id"));
            int found = 0;
            for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
                found |= !strcmp(cases[i].set, sets[s]) && !strcmp(cases[i].rule, id);
            if (!found) {
                fprintf(stderr, "rules/%s.json: multi-level rule %s has no case here\n", sets[s], id);
                missing++;
            }
        }
        cJSON_Delete(doc);
    }
    assert_int_equal(missing, 0);
}

/* The primary leaf survives copies of the instance (the engine keeps instances in an
 * array that may be moved; a caller may copy them too). */
static void test_primary_survives_copies(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset_file(cfg, "manhole");
    tu_cfg_ruleset_file(cfg, "lamp");
    tu_cfg_ruleset_file(cfg, "common");
    tu_cfg_device(cfg, "mh-1", "manhole", "", "{\"well_depth_m\": 2.5}", NULL, NULL);
    tu_cfg_device(cfg, "lamp-1", "lamp", "", "{\"rated_power_w\": 150}", NULL, NULL);
    for (size_t dv = 0; dv < cfg->n_devices; dv++) {
        gw_rule_inst *arr;
        size_t n;
        assert_int_equal(gw_rule_compile(cfg, &cfg->devices[dv], NULL, &arr, &n), 0);
        assert_true(n > 8); /* more than the first array allocation: it was moved */
        gw_rule_inst *copy = malloc(n * sizeof *copy);
        memcpy(copy, arr, n * sizeof *copy);
        memset(arr, 0xa5, n * sizeof *arr); /* the old place holds garbage now */
        gw_free(arr);
        int with_primary = 0;
        for (size_t i = 0; i < n; i++) {
            const gw_cond *p = gw_rule_primary(&copy[i]);
            if (!p)
                continue;
            with_primary++;
            /* the root itself, or one of its kids: inside this copy's tree */
            int inside = p == &copy[i].root;
            for (size_t k = 0; k < copy[i].root.n_kids; k++)
                inside |= p == &copy[i].root.kids[k];
            assert_true(inside);
            assert_true(p->op <= GW_OP_LE);
        }
        assert_true(with_primary >= 5);
        for (size_t i = 0; i < n; i++)
            gw_rule_inst_clear(&copy[i]);
        free(copy);
    }
    tu_cfg_free(cfg);
}

/* The retained document follows the reported level: the level's severity while active,
 * empty once cleared even while the clear waits for an acknowledgement (DESIGN.md §5),
 * though the engine keeps the alarm's state for the ack. */
static void test_retained_follows_level(void **state)
{
    (void)state;
    gw_config *cfg = one_rule_cfg(&cases[0]);
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    tu_sample(e, "d1", "tilt_deg", 35, 0);
    tu_sample(e, "d1", "tilt_deg", 35, TU_S(30));
    tu_sample(e, "d1", "tilt_deg", 95, TU_S(31));
    tu_sample(e, "d1", "tilt_deg", 1, TU_S(32));
    char sum[128];
    assert_string_equal(tu_summary(&cap, sum, sizeof sum), "raised:major,updated:critical,cleared");
    const char *sev[] = {"major", "critical"};
    for (int i = 0; i < 2; i++) {
        cJSON *r = cJSON_Parse(cap.ev[i].retained);
        assert_non_null(r);
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(r, "schema")), "citygate.alarm/1");
        assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(r, "alarm"), "severity")),
                            sev[i]);
        assert_int_equal((int)cJSON_GetObjectItem(r, "seq")->valuedouble, i + 1);
        cJSON_Delete(r);
    }
    assert_null(cap.ev[2].retained);
    assert_non_null(cap.ev[2].state_json); /* cleared_unacked: kept for the ack */
    assert_string_equal(cap.ev[2].state, "cleared_unacked");
    cap.now = TU_T0 + TU_S(40);
    char *reply = NULL;
    assert_int_equal(gw_engine_command(e, "ack", "{\"alarm\": \"d1/cover-tilt\"}", &reply), 0);
    gw_free(reply);
    assert_int_equal(cap.n, 4);
    assert_null(cap.ev[3].retained);
    assert_null(cap.ev[3].state_json); /* normal: forgotten */
    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default_levels),
        cmocka_unit_test(test_table_covers_every_level_rule),
        cmocka_unit_test(test_primary_survives_copies),
        cmocka_unit_test(test_retained_follows_level),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(tu_event_schema);
    return rc;
}
