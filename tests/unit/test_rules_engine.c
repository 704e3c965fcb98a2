/* Alarm semantics of the rule engine, table-driven: each scenario is a rule set, a
 * timeline of samples, ticks, commands and commit failures, and the exact event sequence
 * expected ("raised:major,updated:critical,cleared"). Every emitted event is validated
 * against docs/event.schema.json by the commit hook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_rules_util.h"

typedef struct step {
    char kind;          /* s sample, q bad-quality sample, t tick, c command, f commit fails, F commit ok */
    const char *field;  /* sample field, or command verb */
    double v;           /* sample value (or gw_quality for q) */
    double t;           /* seconds after T0 */
    const char *arg;    /* command: extra request JSON members, e.g. "\"duration_s\": 60" */
} step;

typedef struct scenario {
    const char *name;
    const char *kind;   /* device kind (default manhole) */
    const char *rules;  /* the rules array of rule set "t" (rule id "r" by convention) */
    const char *params;
    const char *expect;
    step steps[40];
} scenario;

#define R(...) "[" #__VA_ARGS__ "]"

static const scenario scenarios[] = {
    {"deadband chatter gives one raise and one clear",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,cleared",
     {{'s', "x", 9, 0}, {'s', "x", 16, 1}, {'s', "x", 14, 2}, {'s', "x", 15.5, 3}, {'s', "x", 11, 4},
      {'s', "x", 16, 5}, {'s', "x", 10.5, 6}, {'s', "x", 15.1, 7}, {'s', "x", 9.9, 8},
      {'s', "x", 14.9, 9}, {'s', "x", 10.1, 10}, {'s', "x", 12, 11}, {0}}},

    {"on-delay longer than the condition gives no alarm",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10}, "on_delay": "30s",
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "",
     {{'s', "x", 20, 0}, {'t', NULL, 0, 10}, {'s', "x", 25, 20}, {'t', NULL, 0, 29}, {'s', "x", 5, 29.5},
      {'t', NULL, 0, 31}, {'t', NULL, 0, 60}, {'s', "x", 20, 61}, {'t', NULL, 0, 80}, {'s', "x", 5, 90},
      {'t', NULL, 0, 120}, {0}}},

    {"on-delay held: raised by the tick, active_since at the start",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10}, "on_delay": "30s",
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,cleared",
     {{'s', "x", 20, 0}, {'t', NULL, 0, 29}, {'s', "x", 21, 29.9}, {'t', NULL, 0, 30}, {'t', NULL, 0, 31},
      {'s', "x", 9, 40}, {0}}},

    {"off-delay holds the alarm until the condition stays away",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10}, "off_delay": "60s",
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,cleared",
     {{'s', "x", 20, 0}, {'s', "x", 5, 10}, {'t', NULL, 0, 50}, {'s', "x", 20, 60}, {'s', "x", 5, 70},
      {'t', NULL, 0, 120}, {'t', NULL, 0, 129}, {'t', NULL, 0, 130}, {'t', NULL, 0, 200}, {0}}},

    {"N-of-M: 3 of 5 raise, 3 false of 5 clear",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15}, "n_of_m": [3, 5],
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,cleared",
     {{'s', "x", 20, 1}, {'s', "x", 0, 2}, {'s', "x", 20, 3}, {'s', "x", 0, 4}, {'s', "x", 20, 5},
      {'s', "x", 20, 6}, {'s', "x", 0, 7}, {'s', "x", 20, 8}, {'s', "x", 20, 9}, {'s', "x", 0, 10},
      {'s', "x", 20, 11}, {'s', "x", 0, 12}, {'s', "x", 0, 13}, {'s', "x", 0, 14}, {0}}},

    {"stale fires after its limit and clears on the next good sample",
     NULL,
     R({"id": "r", "when": {"op": "stale", "for": "30s"},
        "problem": {"class": "device", "code": "D01", "name": "silent"}}),
     NULL, "raised:major,cleared",
     {{'s', "x", 1, 0}, {'t', NULL, 0, 29}, {'q', "x", GW_Q_COMM_ERROR, 29.5}, {'t', NULL, 0, 29.9},
      {'t', NULL, 0, 30.5}, {'t', NULL, 0, 40}, {'s', "x", 1, 41}, {'t', NULL, 0, 50}, {0}}},

    {"stale in intervals: 3 x 10 s",
     NULL,
     R({"id": "r", "when": {"op": "stale", "intervals": 3},
        "problem": {"class": "device", "code": "D01", "name": "silent"}}),
     NULL, "raised:major",
     {{'s', "x", 1, 0}, {'t', NULL, 0, 29}, {'t', NULL, 0, 31}, {0}}},

    {"escalation gives updated, de-escalation too, then cleared",
     NULL,
     R({"id": "r", "when": {"field": "ch4_lel", "op": ">=", "raise": 20, "clear": 15},
        "levels": [{"severity": "warning", "raise": 20, "clear": 15},
                   {"severity": "major", "raise": 50, "clear": 40}],
        "problem": {"class": "event", "code": "0403", "name": "gas"}}),
     NULL, "raised:warning,updated:major,updated:warning,cleared",
     {{'s', "ch4_lel", 5, 0}, {'s', "ch4_lel", 25, 1}, {'s', "ch4_lel", 30, 2}, {'s', "ch4_lel", 55, 3},
      {'s', "ch4_lel", 45, 4}, {'s', "ch4_lel", 35, 5}, {'s', "ch4_lel", 18, 6}, {'s', "ch4_lel", 10, 7},
      {0}}},

    {"jump straight to the top level raises at that severity",
     NULL,
     R({"id": "r", "when": {"field": "tilt_deg", "op": ">", "raise": 15, "clear": 10},
        "levels": [{"severity": "major", "raise": 15, "clear": 10, "on_delay": "30s"},
                   {"severity": "critical", "raise": 90, "clear": 80, "on_delay": 0}],
        "problem": {"class": "component", "name": "cover displaced"}}),
     NULL, "raised:critical,updated:major,cleared",
     {{'s', "tilt_deg", 0, 0}, {'s', "tilt_deg", 95, 1}, {'s', "tilt_deg", 20, 2}, {'t', NULL, 0, 10},
      {'t', NULL, 0, 40}, {'s', "tilt_deg", 3, 50}, {0}}},

    {"shelving suppresses, expiry gives unshelved and the missed clear",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,shelved,unshelved,cleared",
     {{'s', "x", 20, 0}, {'c', "shelve", 0, 1, "\"duration_s\": 60"}, {'s', "x", 5, 10},
      {'s', "x", 20, 20}, {'s', "x", 5, 30}, {'t', NULL, 0, 60}, {'t', NULL, 0, 61.5}, {'t', NULL, 0, 70},
      {0}}},

    {"shelved while normal: a fault during the shelve is raised after unshelve",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "shelved,unshelved,raised:major",
     {{'s', "x", 1, 0}, {'c', "shelve", 0, 1, "\"duration_s\": 3600"}, {'s', "x", 20, 10},
      {'t', NULL, 0, 20}, {'c', "unshelve", 0, 30, NULL}, {'t', NULL, 0, 31}, {0}}},

    {"out of service suppresses until in_service",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "out_of_service,in_service,raised:major,cleared",
     {{'c', "out_of_service", 0, 0, NULL}, {'s', "x", 20, 1}, {'s', "x", 5, 2}, {'s', "x", 20, 3},
      {'t', NULL, 0, 1000}, {'c', "shelve", 0, 1001, "\"duration_s\": 10"},
      {'c', "out_of_service", 0, 1002, NULL}, {'c', "in_service", 0, 1003, NULL}, {'s', "x", 5, 1004},
      {0}}},

    {"ack: active_acked, then the clear returns it to normal",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,acked,cleared,raised:major,cleared,acked",
     {{'c', "ack", 0, 0, NULL}, {'s', "x", 20, 1}, {'c', "ack", 0, 2, NULL}, {'c', "ack", 0, 3, NULL},
      {'s', "x", 5, 4}, {'s', "x", 20, 5}, {'s', "x", 5, 6}, {'c', "ack", 0, 7, NULL},
      {'c', "ack", 0, 8, NULL}, {0}}},

    {"commit failure: kept pending, retried on tick, nothing lost or doubled",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,cleared",
     {{'f'}, {'s', "x", 20, 0}, {'t', NULL, 0, 1}, {'s', "x", 21, 2}, {'F'}, {'t', NULL, 0, 3},
      {'t', NULL, 0, 4}, {'f'}, {'s', "x", 5, 5}, {'F'}, {'t', NULL, 0, 6}, {'t', NULL, 0, 7}, {0}}},

    {"bad quality holds an active alarm: no clear, no second raise",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15, "clear": 10},
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,cleared",
     {{'q', "x", GW_Q_COMM_ERROR, 0}, {'s', "x", 20, 1}, {'q', "x", GW_Q_COMM_ERROR, 2},
      {'q', "x", GW_Q_OUT_OF_RANGE, 3}, {'t', NULL, 0, 4}, {'s', "x", 20, 5}, {'s', "x", 5, 6},
      {'q', "x", GW_Q_DECODE_ERROR, 7}, {'t', NULL, 0, 8}, {'s', "x", 5, 9}, {0}}},

    {"rate: a healthy reading's noise between fast polls is no burst, a sustained drop is",
     NULL,
     R({"id": "r", "when": {"field": "p", "of": "rate", "window": "1m", "op": "<", "raise": -0.1,
                            "clear": -0.02},
        "problem": {"class": "event", "code": "0402", "name": "burst"}}),
     NULL, "raised:major,cleared",
     /* every 2 s: +-0.008 MPa steps are +-0.24 MPa/min over one poll */
     {{'s', "p", 0.300, 0}, {'s', "p", 0.292, 2}, {'s', "p", 0.300, 4}, {'s', "p", 0.292, 6},
      {'s', "p", 0.284, 8}, {'s', "p", 0.292, 10}, {'s', "p", 0.300, 12}, {'s', "p", 0.292, 14},
      {'s', "p", 0.284, 16}, {'s', "p", 0.276, 18}, {'s', "p", 0.284, 20}, {'s', "p", 0.292, 22},
      {'s', "p", 0.300, 30}, {'s', "p", 0.292, 40}, {'s', "p", 0.300, 50}, {'s', "p", 0.292, 60},
      {'s', "p", 0.05, 62}, {'s', "p", 0.05, 64}, {'s', "p", 0.05, 90}, {'s', "p", 0.05, 110},
      {'s', "p", 0.05, 122}, {'s', "p", 0.05, 130}, {'s', "p", 0.05, 140}, {0}}},

    {"rate of change per minute (pipe burst)",
     NULL,
     R({"id": "r", "when": {"field": "p", "of": "rate", "window": "1m", "op": "<", "raise": -0.1,
                            "clear": -0.02},
        "problem": {"class": "event", "code": "0402", "name": "burst"}}),
     NULL, "raised:major,cleared",
     {{'s', "p", 0.30, 0}, {'s', "p", 0.30, 30}, {'s', "p", 0.29, 60}, {'s', "p", 0.27, 90},
      {'s', "p", 0.15, 120}, {'s', "p", 0.10, 150}, {'s', "p", 0.10, 180}, {'s', "p", 0.10, 210}, {0}}},

    {"stuck: no change for the time raises, a change clears",
     NULL,
     R({"id": "r", "when": {"op": "stuck", "fields": ["a", "b"], "for": "1h", "tolerance": 0.01},
        "severity": "warning", "problem": {"class": "device", "code": "D03", "name": "stuck"}}),
     NULL, "raised:warning,cleared",
     {{'s', "a", 5, 0}, {'s', "a", 5.005, 1800}, {'s', "b", 1, 1800}, {'s', "a", 5, 3599},
      {'s', "b", 2, 3601}, {'s', "a", 5, 3601}, {'s', "a", 6, 3700}, {'s', "b", 2, 3800}, {0}}},

    {"quality: decode errors raise, a good sample clears",
     NULL,
     R({"id": "r", "when": {"op": "quality", "in": ["decode_error"]},
        "problem": {"class": "device", "code": "D02", "name": "bad data"}}),
     NULL, "raised:major,cleared",
     {{'s', "x", 1, 0}, {'q', "x", GW_Q_COMM_ERROR, 1}, {'q', "x", GW_Q_DECODE_ERROR, 2},
      {'q', "y", GW_Q_DECODE_ERROR, 3}, {'s', "x", 2, 4}, {0}}},

    {"between / outside with deadband",
     NULL,
     R({"id": "r", "when": {"field": "v", "op": "outside", "low": 198, "high": 235.4, "deadband": 2},
        "problem": {"class": "component", "name": "voltage"}}),
     NULL, "raised:major,cleared,raised:major,cleared",
     {{'s', "v", 220, 0}, {'s', "v", 236, 1}, {'s', "v", 234, 2}, {'s', "v", 233, 3},
      {'s', "v", 197, 4}, {'s', "v", 199, 5}, {'s', "v", 200.5, 6}, {0}}},

    {"enum states (in) on text samples and booleans",
     NULL,
     R({"id": "r", "when": {"any": [{"field": "valve", "op": "in", "values": ["abnormal", "fault"]},
                                    {"field": "cover_open", "op": "==", "value": true}]},
        "problem": {"class": "component", "name": "valve"}}),
     NULL, "raised:major,cleared",
     {{'s', "cover_open", 1, 0}, {'s', "cover_open", 0, 1}, {0}}},

    {"re-notify while active",
     NULL,
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 15}, "renotify": "10m",
        "problem": {"class": "component", "name": "tilt"}}),
     NULL, "raised:major,updated:major,updated:major,cleared",
     {{'s', "x", 20, 0}, {'t', NULL, 0, 599}, {'t', NULL, 0, 600}, {'t', NULL, 0, 601},
      {'t', NULL, 0, 1200}, {'s', "x", 1, 1300}, {'t', NULL, 0, 2000}, {0}}},

    {"lamp: should be on (schedule) and power under 10 % of rated",
     "lamp",
     R({"id": "r", "when": {"all": [
          {"field": "power_w", "op": "<", "raise": {"param": "rated_power_w", "factor": 0.1},
           "clear": {"param": "rated_power_w", "factor": 0.2}},
          {"field": "should_be_on", "op": "==", "value": true}]},
        "on_delay": "60s", "problem": {"class": "component", "name": "lamp not lit"}}),
     /* 18:30..06:30 local (+08:00); T0 is 08:00 local, so +37800 s is 18:30 */
     "{\"rated_power_w\": 120, \"schedule\": {\"on\": \"18:30\", \"off\": \"06:30\"}}",
     "raised:major,cleared",
     {{'s', "power_w", 2, 0}, {'t', NULL, 0, 100}, {'s', "power_w", 2, 3600}, {'t', NULL, 0, 3700},
      {'s', "power_w", 2, 37800}, {'s', "power_w", 2, 37830}, {'t', NULL, 0, 37860},
      {'s', "power_w", 20, 37900}, {'s', "power_w", 30, 37950}, {'s', "power_w", 2, 100800},
      {'t', NULL, 0, 100900}, {0}}},
};

static void run_scenario(const scenario *sc, tu_cap *cap, char *summary, size_t n)
{
    gw_config *cfg = tu_cfg_new();
    char set[4096];
    snprintf(set, sizeof set, "{\"schema\": \"citygate.rules/1\", \"rules\": %s}", sc->rules);
    tu_cfg_ruleset(cfg, "t", set);
    tu_cfg_device(cfg, "d1", sc->kind ? sc->kind : "manhole", "t", sc->params, NULL, NULL);
    gw_cfgerr errs = {0};
    int rc = gw_rules_check(cfg, &errs);
    if (rc != 0)
        gw_cfgerr_print(&errs, 2);
    assert_int_equal(rc, 0);
    gw_cfgerr_free(&errs);

    memset(cap, 0, sizeof *cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e = NULL;
    assert_int_equal(gw_engine_new(cfg, &hooks, cap, &e), 0);
    for (const step *st = sc->steps; st->kind; st++) {
        int64_t t = TU_S(st->t);
        switch (st->kind) {
        case 's': tu_sample(e, "d1", st->field, st->v, t); break;
        case 'q': tu_sample_q(e, "d1", st->field, (gw_quality)st->v, t); break;
        case 't': gw_engine_tick(e, TU_T0 + t); break;
        case 'f': cap->fail = 1; break;
        case 'F': cap->fail = 0; break;
        case 'c': {
            char req[512];
            snprintf(req, sizeof req, "{\"request_id\": \"q%d\", \"alarm\": \"d1/r\", \"user\": \"op1\"%s%s}",
                     (int)(st - sc->steps), st->arg ? ", " : "", st->arg ? st->arg : "");
            cap->now = TU_T0 + t;
            char *reply = NULL;
            gw_engine_command(e, st->field, req, &reply);
            assert_non_null(reply);
            cJSON *r = cJSON_Parse(reply);
            assert_non_null(r);
            assert_non_null(cJSON_GetObjectItem(r, "ok"));
            cJSON_Delete(r);
            gw_free(reply);
            break;
        }
        }
    }
    tu_summary(cap, summary, n);
    /* seq is dense from 1 */
    for (int i = 0; i < cap->n; i++)
        assert_int_equal(cap->ev[i].seq, (uint64_t)i + 1);
    assert_int_equal(cap->schema_errors, 0);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

static void test_scenarios(void **state)
{
    (void)state;
    int failed = 0;
    static tu_cap cap;
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        char summary[1024];
        run_scenario(&scenarios[i], &cap, summary, sizeof summary);
        if (strcmp(summary, scenarios[i].expect) != 0) {
            fprintf(stderr, "FAIL %s\n  expected: %s\n  got:      %s\n", scenarios[i].name,
                    scenarios[i].expect, summary);
            failed++;
        }
        tu_cap_reset(&cap);
    }
    assert_int_equal(failed, 0);
}

/* The event of DESIGN.md §5 carries component, grid, units, location, rule, evidence. */
static void test_event_content(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset_file(cfg, "manhole");
    tu_cfg_ruleset_file(cfg, "common");
    tu_cfg_device(cfg, "mh-0123", "manhole", "", "{\"well_depth_m\": 2.5}", NULL, NULL);
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    tu_sample(e, "mh-0123", "tilt_deg", 1.0, 0);
    tu_sample(e, "mh-0123", "tilt_deg", 16.2, TU_S(5));
    tu_sample(e, "mh-0123", "tilt_deg", 23.4, TU_S(35.1));
    assert_int_equal(cap.n, 1);
    cJSON *j = cJSON_Parse(cap.ev[0].json);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "type")), "raised");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(j, "ts")), "2026-06-01T08:00:35.100+08:00");
    const cJSON *al = cJSON_GetObjectItem(j, "alarm");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(al, "id")), "mh-0123/cover-tilt");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(al, "state")), "active_unacked");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(al, "active_since")), "2026-06-01T08:00:05.000+08:00");
    const cJSON *ru = cJSON_GetObjectItem(j, "rule");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(ru, "condition")), "tilt_deg > 15 for 30s");
    assert_true(cJSON_GetObjectItem(ru, "raise")->valuedouble == 15);
    assert_true(cJSON_GetObjectItem(ru, "clear")->valuedouble == 10);
    const cJSON *pr = cJSON_GetObjectItem(j, "problem");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(pr, "code")), "0102");
    const cJSON *co = cJSON_GetObjectItem(j, "component");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(co, "grid")), "500103001002003");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(co, "scheme")), "CJ/T 214");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(co, "location"), "address")),
                        "Jiefangbei \"square\" 1");
    const cJSON *ev = cJSON_GetObjectItem(j, "evidence");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(ev, "field")), "tilt_deg");
    assert_true(cJSON_GetObjectItem(ev, "value")->valuedouble == 23.4);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(ev, "samples")), 3);
    assert_non_null(cap.ev[0].state_json);
    assert_non_null(cap.ev[0].retained);
    cJSON_Delete(j);

    /* gas: upstream type mapping; escalation through 20 and 50 %LEL */
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_ruleset_file(cfg, "gas");
    tu_cfg_device(cfg, "gas-01", "gas", "", NULL, NULL, NULL);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    tu_sample(e, "gas-01", "ch4_lel", 3, 0);
    tu_sample(e, "gas-01", "ch4_lel", 22, TU_S(10));
    tu_sample(e, "gas-01", "ch4_lel", 24, TU_S(16));
    tu_sample(e, "gas-01", "ch4_lel", 55, TU_S(20));
    char sum[256];
    assert_string_equal(tu_summary(&cap, sum, sizeof sum), "raised:warning,updated:major");
    j = cJSON_Parse(cap.ev[1].json);
    pr = cJSON_GetObjectItem(j, "problem");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(pr, "code")), "0403");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(pr, "upstream_type")), "SITE-GAS");
    cJSON_Delete(j);

    /* alarms snapshot for the page */
    char *snap = NULL;
    assert_int_equal(gw_engine_alarms_json(e, &snap), 0);
    cJSON *arr = cJSON_Parse(snap);
    assert_non_null(arr);
    assert_int_equal(cJSON_GetArraySize(arr), 1);
    cJSON_Delete(arr);
    gw_free(snap);
    gw_engine_stats st;
    gw_engine_stats_get(e, &st);
    assert_int_equal(st.active, 1);
    assert_int_equal(st.active_by_severity[GW_SEV_MAJOR], 1);
    assert_int_equal(st.events[GW_EV_RAISED], 1);
    assert_true(st.evaluations >= 4);
    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* Default rule sets, normal values: the first samples after a start make no noise. */
static void test_silent_start(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    const char *sets[] = {"manhole", "lamp", "water", "gas", "common"};
    for (int i = 0; i < 5; i++)
        tu_cfg_ruleset_file(cfg, sets[i]);
    tu_cfg_device(cfg, "mh-1", "manhole", "", "{\"well_depth_m\": 3}", NULL, NULL);
    tu_cfg_device(cfg, "lamp-1", "lamp", "", "{\"rated_power_w\": 100, \"schedule\": {\"on\": \"18:00\", \"off\": \"06:00\"}}", NULL, NULL);
    tu_cfg_device(cfg, "w-1", "water", "", NULL, NULL, NULL);
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    for (int k = 0; k < 10; k++) {
        int64_t t = TU_S(k * 10);
        tu_sample(e, "mh-1", "tilt_deg", 0.5, t);
        tu_sample(e, "mh-1", "cover_open", 0, t);
        tu_sample(e, "mh-1", "water_level_m", 0.4, t);
        tu_sample(e, "mh-1", "ch4_lel", 0, t);
        tu_sample(e, "mh-1", "o2_pct", 20.9, t);
        tu_sample(e, "mh-1", "battery_pct", 90, t);
        tu_sample(e, "lamp-1", "voltage_v", 221, t);
        tu_sample(e, "lamp-1", "power_w", 0.5, t); /* daytime: off */
        tu_sample(e, "lamp-1", "power_factor", 0, t);
        tu_sample(e, "w-1", "pressure_mpa", 0.3, t);
        gw_engine_tick(e, TU_T0 + t + TU_S(1));
    }
    assert_int_equal(cap.n, 0);
    gw_engine_stats st;
    gw_engine_stats_get(e, &st);
    assert_true(st.rules >= 20);
    /* then the water point falls silent: comm loss after 3 intervals, once */
    for (int k = 10; k < 20; k++) {
        int64_t t = TU_S(k * 10);
        tu_sample(e, "mh-1", "tilt_deg", 0.5, t);
        tu_sample(e, "lamp-1", "voltage_v", 221, t);
        gw_engine_tick(e, TU_T0 + t + TU_S(1));
    }
    char sum[256];
    assert_string_equal(tu_summary(&cap, sum, sizeof sum), "raised:major");
    assert_string_equal(cap.ev[0].alarm, "w-1/comm-loss");
    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* State survives a restart: no second raised, no lost cleared, silent normal points. */
static void test_restart(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset(cfg, "t",
        "{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 15, \"clear\": 10},"
        " \"off_delay\": \"10s\", \"problem\": {\"class\": \"component\", \"name\": \"t\"}}]}");
    tu_cfg_device(cfg, "a", "manhole", "t", NULL, NULL, NULL);
    tu_cfg_device(cfg, "b", "manhole", "t", NULL, NULL, NULL);
    tu_cfg_device(cfg, "c", "manhole", "t", NULL, NULL, NULL);
    tu_cfg_device(cfg, "d", "manhole", "t", NULL, NULL, NULL);
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    tu_sample(e, "a", "x", 20, 0);  /* active, stays active */
    tu_sample(e, "b", "x", 1, 0);   /* normal */
    tu_sample(e, "c", "x", 20, 0);  /* active, clears while down */
    tu_sample(e, "d", "x", 20, 0);  /* active then acked and shelved */
    cap.now = TU_T0 + TU_S(1);
    char *reply = NULL;
    assert_int_equal(gw_engine_command(e, "ack", "{\"alarm\": \"d/r\"}", &reply), 0);
    gw_free(reply);
    assert_int_equal(gw_engine_command(e, "shelve", "{\"alarm\": \"d/r\", \"duration_s\": 600}", &reply), 0);
    gw_free(reply);
    assert_int_equal(cap.n, 5);

    /* "persist": the last state per alarm and the last seq, as the outbox would */
    const char *ids[4] = {0};
    const char *states[4] = {0};
    int n_ids = 0;
    for (int i = 0; i < cap.n; i++) {
        int k = 0;
        while (k < n_ids && strcmp(ids[k], cap.ev[i].alarm) != 0)
            k++;
        if (k == n_ids)
            ids[n_ids++] = cap.ev[i].alarm;
        states[k] = cap.ev[i].state_json;
    }
    uint64_t last_seq = gw_engine_last_seq(e);
    assert_int_equal(last_seq, 5);
    gw_engine_free(e);

    static tu_cap cap2;
    memset(&cap2, 0, sizeof cap2);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap2, &e), 0);
    gw_engine_restore(e, last_seq);
    for (int k = 0; k < n_ids; k++)
        if (states[k])
            assert_int_equal(gw_engine_restore_alarm(e, ids[k], states[k]), 0);
    assert_int_equal(gw_engine_restore_alarm(e, "zz/r", "{}"), GW_ENOTFOUND);
    assert_int_equal(gw_engine_restore_alarm(e, "a/r", "not json"), GW_EINVAL);
    gw_engine_tick(e, TU_T0 + TU_S(100));
    assert_int_equal(cap2.n, 0);
    tu_sample(e, "a", "x", 20, TU_S(101));
    tu_sample(e, "b", "x", 1, TU_S(101));
    tu_sample(e, "c", "x", 2, TU_S(101));
    tu_sample(e, "d", "x", 2, TU_S(101));
    gw_engine_tick(e, TU_T0 + TU_S(105));
    assert_int_equal(cap2.n, 0); /* off-delay still running */
    gw_engine_tick(e, TU_T0 + TU_S(112));
    char sum[256];
    assert_string_equal(tu_summary(&cap2, sum, sizeof sum), "cleared");
    assert_string_equal(cap2.ev[0].alarm, "c/r");
    assert_int_equal(cap2.ev[0].seq, 6);
    /* d is still shelved after the restart: its clear waits for the unshelve */
    gw_engine_tick(e, TU_T0 + TU_S(602));
    assert_string_equal(tu_summary(&cap2, sum, sizeof sum), "cleared,unshelved,cleared");
    assert_string_equal(cap2.ev[2].alarm, "d/r");
    assert_null(cap2.ev[2].state_json); /* acked before: back to normal, forget */
    assert_int_equal(cap2.schema_errors, 0);
    tu_cap_reset(&cap);
    tu_cap_reset(&cap2);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* A comm-loss alarm active before a restart stays active after it while the device is
 * still silent (no clear on the first tick, no second raise three intervals later), and
 * clears on its first good sample. */
static void test_restart_stale(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset_file(cfg, "common");
    tu_cfg_device(cfg, "a", "manhole", "common", NULL, NULL, NULL);
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    tu_sample(e, "a", "tilt_deg", 1, 0);
    gw_engine_tick(e, TU_T0 + TU_S(29));
    gw_engine_tick(e, TU_T0 + TU_S(31));
    char sum[256];
    assert_string_equal(tu_summary(&cap, sum, sizeof sum), "raised:major");
    assert_string_equal(cap.ev[0].alarm, "a/comm-loss");
    char *saved = strdup(cap.ev[0].state_json);
    gw_engine_free(e);

    static tu_cap cap2;
    memset(&cap2, 0, sizeof cap2);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap2, &e), 0);
    gw_engine_restore(e, 1);
    assert_int_equal(gw_engine_restore_alarm(e, "a/comm-loss", saved), 0);
    for (int s = 100; s <= 160; s += 1)
        gw_engine_tick(e, TU_T0 + TU_S(s));
    tu_sample_q(e, "a", "tilt_deg", GW_Q_COMM_ERROR, TU_S(161));
    gw_engine_tick(e, TU_T0 + TU_S(162));
    assert_int_equal(cap2.n, 0);
    tu_sample(e, "a", "tilt_deg", 1, TU_S(170));
    assert_string_equal(tu_summary(&cap2, sum, sizeof sum), "cleared");
    assert_int_equal(cap2.ev[0].seq, 2);
    /* a device silent from the start is stale after 3 intervals from the start */
    tu_cfg_device(cfg, "b", "manhole", "common", NULL, NULL, NULL);
    gw_engine_free(e);
    tu_cap_reset(&cap2);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap2, &e), 0);
    gw_engine_tick(e, TU_T0 + TU_S(200));
    tu_sample(e, "a", "tilt_deg", 1, TU_S(210));
    gw_engine_tick(e, TU_T0 + TU_S(229));
    assert_int_equal(cap2.n, 0);
    tu_sample(e, "a", "tilt_deg", 1, TU_S(230));
    gw_engine_tick(e, TU_T0 + TU_S(230));
    assert_string_equal(tu_summary(&cap2, sum, sizeof sum), "raised:major");
    assert_string_equal(cap2.ev[0].alarm, "b/comm-loss");
    assert_int_equal(cap.schema_errors + cap2.schema_errors, 0);
    free(saved);
    tu_cap_reset(&cap);
    tu_cap_reset(&cap2);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* Command replies: refused commands say why and change nothing. */
static void test_commands(void **state)
{
    (void)state;
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset(cfg, "t",
        "{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 15},"
        " \"problem\": {\"class\": \"component\", \"name\": \"t\"}}]}");
    tu_cfg_device(cfg, "a", "manhole", "t", NULL, NULL, NULL);
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    cap.now = TU_T0;
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    char *reply = NULL;
    assert_int_equal(gw_engine_command(e, "ack", "{\"request_id\": \"1\", \"alarm\": \"a/nope\"}", &reply), GW_ENOTFOUND);
    assert_non_null(strstr(reply, "\"ok\":false"));
    assert_non_null(strstr(reply, "\"request_id\":\"1\""));
    gw_free(reply);
    assert_int_equal(gw_engine_command(e, "ack", "[1,2", &reply), GW_EINVAL);
    gw_free(reply);
    assert_int_equal(gw_engine_command(e, "shelve", "{\"alarm\": \"a/r\", \"until\": \"2020-01-01T00:00:00Z\"}", &reply), GW_EINVAL);
    assert_non_null(strstr(reply, "future"));
    gw_free(reply);
    assert_int_equal(gw_engine_command(e, "explode", "{\"alarm\": \"a/r\"}", &reply), GW_EINVAL);
    gw_free(reply);
    assert_int_equal(gw_engine_command(e, "shelve", "{\"alarm\": \"a/r\", \"until\": \"2026-06-01T09:00:00+08:00\", \"comment\": \"roadworks\"}", &reply), 0);
    assert_non_null(strstr(reply, "\"ok\":true"));
    assert_non_null(strstr(reply, "\"state\":\"shelved\""));
    gw_free(reply);
    cap.fail = 1;
    assert_int_equal(gw_engine_command(e, "unshelve", "{\"alarm\": \"a/r\"}", &reply), GW_EAGAIN);
    gw_free(reply);
    cap.fail = 0;
    assert_int_equal(cap.n, 1);
    cJSON *j = cJSON_Parse(cap.ev[0].json);
    const cJSON *cmd = cJSON_GetObjectItem(j, "command");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cmd, "comment")), "roadworks");
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "alarm"), "shelved_until")),
                        "2026-06-01T09:00:00.000+08:00");
    cJSON_Delete(j);
    /* shelved at 08:00 until 09:00; expiry on the tick after */
    gw_engine_tick(e, TU_T0 + TU_S(3599));
    assert_int_equal(cap.n, 1);
    gw_engine_tick(e, TU_T0 + TU_S(3600));
    assert_int_equal(cap.n, 2);
    assert_string_equal(cap.ev[1].type, "unshelved");
    assert_null(cap.ev[1].state_json);
    assert_null(cap.ev[1].retained);
    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_event_content),
        cmocka_unit_test(test_silent_start),
        cmocka_unit_test(test_restart),
        cmocka_unit_test(test_restart_stale),
        cmocka_unit_test(test_commands),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(tu_event_schema);
    return rc;
}
