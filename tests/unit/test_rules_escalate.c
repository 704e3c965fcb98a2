/* Value escalation (escalate_step) and re-notify, table-driven (DESIGN.md §4: "updated
 * (severity or value escalates) ...; optional re-notify while active").
 *
 * Each scenario is one rule "r" on device "d1", a timeline of samples, ticks, commands,
 * commit failures and restarts, and the exact event sequence expected, written as
 * "raised:major@30,updated:major/value@40,cleared": type, severity and (for updated) the
 * reason, the evidence value of raised / updated, and "!acked" when an updated event
 * leaves the alarm acknowledged. Every event is validated against
 * docs/event.schema.json by the commit hook; seq must stay dense across restarts.
 *
 * Then: `citygate check` errors for escalate_step where it does not apply (FILE:
 * json.path: message), the steps the shipped rule sets set, and the persisted reference
 * in the alarm state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "rules/alarm.h"
#include "test_rules_util.h"

typedef struct step {
    char kind;          /* s sample, q bad-quality sample, t tick, c command, f commit fails,
                         * F commit ok, R restart (states restored from the last events),
                         * O restart from states written before escalation (no esc_ref) */
    const char *field;  /* sample field, or command verb */
    double v;           /* sample value (or gw_quality for q) */
    double t;           /* seconds after T0 */
    const char *arg;    /* command: extra request JSON members */
} step;

typedef struct scenario {
    const char *name;
    const char *rules;     /* the rules array of rule set "t" */
    const char *overrides; /* device overrides JSON, or NULL */
    const char *expect;
    step steps[40];
} scenario;

#define R(...) "[" #__VA_ARGS__ "]"

static const scenario scenarios[] = {
    /* ---- direction follows the condition ---- */
    {"> worsens upward: one update per step, measured from the last reported value",
     R({"id": "r", "when": {"field": "x", "op": ">=", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0403", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@40,updated:major/value@52,cleared",
     {{'s', "x", 5, 0}, {'s', "x", 30, 1}, {'s', "x", 35, 2}, {'s', "x", 39.9, 3}, {'s', "x", 40, 4},
      {'s', "x", 45, 5}, {'s', "x", 52, 6}, {'s', "x", 55, 7}, {'s', "x", 10, 8}, {0}}},

    {"< worsens downward (pressure-low, step 0.05 MPa, floating-point slack)",
     R({"id": "r", "when": {"field": "p", "op": "<", "raise": 0.14, "clear": 0.15}, "escalate_step": 0.05,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@0.13,updated:major/value@0.08,updated:major/value@0.03,cleared",
     {{'s', "p", 0.3, 0}, {'s', "p", 0.13, 1}, {'s', "p", 0.09, 2}, {'s', "p", 0.08, 3},
      {'s', "p", 0.1, 4}, {'s', "p", 0.04, 5}, {'s', "p", 0.03, 6}, {'s', "p", 0.2, 7}, {0}}},

    {"outside worsens away from the band, on either side",
     R({"id": "r", "when": {"field": "v", "op": "outside", "low": 198, "high": 235.4, "deadband": 2},
        "escalate_step": 5, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@240,updated:major/value@245.5,updated:major/value@180,cleared",
     {{'s', "v", 220, 0}, {'s', "v", 240, 1}, {'s', "v", 244, 2}, {'s', "v", 245.5, 3},
      {'s', "v", 190, 4}, {'s', "v", 185, 5}, {'s', "v", 180, 6}, {'s', "v", 220, 7}, {0}}},

    {"improving within the level does not move the reference",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@40",
     {{'s', "x", 30, 0}, {'s', "x", 22, 1}, {'s', "x", 38, 2}, {'s', "x", 25, 3}, {'s', "x", 40, 4},
      {'s', "x", 45, 5}, {0}}},

    {"without escalate_step a worsening value is silent (as before)",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,cleared",
     {{'s', "x", 30, 0}, {'s', "x", 60, 1}, {'s', "x", 90, 2}, {'s', "x", 1, 3}, {0}}},

    {"a combination watches its primary threshold leaf",
     R({"id": "r", "when": {"all": [{"field": "x", "op": ">", "raise": 20, "clear": 15},
                                    {"field": "on", "op": "==", "value": true}]},
        "escalate_step": 10, "evidence": "x", "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@41",
     {{'s', "on", 1, 0}, {'s', "x", 30, 1}, {'s', "on", 1, 2}, {'s', "x", 41, 3}, {0}}},

    /* ---- levels ---- */
    {"per-level steps; a higher level waiting for its on-delay holds value updates back",
     R({"id": "r", "when": {"field": "x", "op": ">=", "raise": 20, "clear": 15},
        "levels": [{"severity": "warning", "raise": 20, "clear": 15, "escalate_step": 10},
                   {"severity": "major", "raise": 50, "clear": 40, "on_delay": "5s", "escalate_step": 5}],
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL,
     /* 60 at 2 s is 25 over the warning reference, but major is on its way: no
      * warning update; major comes with the sample at 7 s (62) */
     "raised:warning@25,updated:warning/value@35,updated:major/escalated@62,updated:major/value@67,"
     "updated:warning/deescalated@30,updated:warning/value@40,cleared",
     {{'s', "x", 25, 0}, {'s', "x", 35, 1}, {'s', "x", 60, 2}, {'s', "x", 60, 3}, {'t', NULL, 0, 4},
      {'s', "x", 62, 7}, {'s', "x", 66, 8}, {'s', "x", 67, 9}, {'s', "x", 30, 10}, {'s', "x", 35, 11},
      {'s', "x", 40, 12}, {'s', "x", 10, 13}, {0}}},

    {"the rule's step is inherited by its levels; a level may switch it off",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "levels": [{"severity": "warning", "raise": 20, "clear": 15},
                   {"severity": "critical", "raise": 50, "clear": 45, "escalate_step": 0}],
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:warning@25,updated:warning/value@35,updated:critical/escalated@55",
     {{'s', "x", 25, 0}, {'s', "x", 35, 1}, {'s', "x", 55, 2}, {'s', "x", 90, 3}, {'s', "x", 120, 4},
      {0}}},

    {"the example of docs/rules.md",
     R({"id": "r", "when": {"field": "ch4_lel", "op": ">=", "raise": 20, "clear": 15}, "escalate_step": 10,
        "levels": [{"severity": "warning", "raise": 20, "clear": 15, "on_delay": "5s"},
                   {"severity": "major", "raise": 50, "clear": 40, "escalate_step": 5}],
        "problem": {"class": "event", "code": "0403", "name": "n"}}),
     NULL, "raised:warning@24,updated:warning/value@34,updated:warning/value@44,"
     "updated:major/escalated@55,updated:major/value@60",
     {{'s', "ch4_lel", 24, 0}, {'s', "ch4_lel", 24, 5}, {'s', "ch4_lel", 30, 6}, {'s', "ch4_lel", 34, 7},
      {'s', "ch4_lel", 28, 8}, {'s', "ch4_lel", 40, 9}, {'s', "ch4_lel", 44, 10}, {'s', "ch4_lel", 55, 11},
      {'s', "ch4_lel", 60, 12}, {0}}},

    /* ---- per-device overrides ---- */
    {"override sets the step for a device",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     "{\"r\": {\"escalate_step\": 2}}", "raised:major@21,updated:major/value@23,updated:major/value@25.5",
     {{'s', "x", 21, 0}, {'s', "x", 22, 1}, {'s', "x", 23, 2}, {'s', "x", 25.5, 3}, {0}}},

    {"override 0 switches the rule's step off",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 1,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     "{\"r\": {\"escalate_step\": 0}}", "raised:major@21",
     {{'s', "x", 21, 0}, {'s', "x", 30, 1}, {'s', "x", 60, 2}, {0}}},

    {"override per level",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "levels": [{"severity": "warning", "raise": 20, "clear": 15},
                   {"severity": "major", "raise": 50, "clear": 45}],
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     "{\"r\": {\"levels\": [{\"escalate_step\": 3}]}}",
     "raised:warning@21,updated:warning/value@24,updated:major/escalated@51,updated:major/value@61",
     {{'s', "x", 21, 0}, {'s', "x", 24, 1}, {'s', "x", 51, 2}, {'s', "x", 55, 3}, {'s', "x", 61, 4},
      {0}}},

    /* ---- what value escalation leaves alone ---- */
    {"deadband and off-delay unaffected: the alarm clears once, after the off-delay",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "off_delay": "10s",
        "escalate_step": 10, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@45,cleared",
     {{'s', "x", 30, 0}, {'s', "x", 16, 1}, {'s', "x", 10, 2}, {'s', "x", 45, 5}, {'s', "x", 10, 6},
      {'t', NULL, 0, 10}, {'s', "x", 10, 15}, {'t', NULL, 0, 16}, {'t', NULL, 0, 17}, {0}}},

    {"a bad-quality sample is no value: neither escalates nor resets",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@41",
     {{'s', "x", 30, 0}, {'q', "x", GW_Q_OUT_OF_RANGE, 1}, {'q', "x", GW_Q_COMM_ERROR, 2},
      {'s', "x", 41, 3}, {0}}},

    {"shelved: nothing while shelved, the worsening is reported when the shelve ends",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,shelved,unshelved,updated:major/value@70,updated:major/value@80",
     {{'s', "x", 30, 0}, {'c', "shelve", 0, 1, "\"duration_s\": 60"}, {'s', "x", 50, 2},
      {'s', "x", 70, 3}, {'c', "unshelve", 0, 4, NULL}, {'s', "x", 75, 5}, {'s', "x", 80, 6}, {0}}},

    {"out of service: nothing until in service",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,out_of_service,in_service,updated:major/value@90",
     {{'s', "x", 30, 0}, {'c', "out_of_service", 0, 1, NULL}, {'s', "x", 60, 2}, {'s', "x", 90, 3},
      {'t', NULL, 0, 4}, {'c', "in_service", 0, 5, NULL}, {'s', "x", 95, 6}, {0}}},

    {"an acknowledgement stands through a value update (not through an escalation)",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "levels": [{"severity": "warning", "raise": 20, "clear": 15},
                   {"severity": "major", "raise": 80, "clear": 75}],
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:warning@30,acked,updated:warning/value@40!acked,updated:major/escalated@85",
     {{'s', "x", 30, 0}, {'c', "ack", 0, 1, NULL}, {'s', "x", 40, 2}, {'s', "x", 85, 3}, {0}}},

    {"a failed commit is retried on the tick with the same seq",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@45",
     {{'s', "x", 30, 0}, {'f', NULL, 0, 1}, {'s', "x", 45, 2}, {'t', NULL, 0, 3}, {'F', NULL, 0, 4},
      {'t', NULL, 0, 5}, {'t', NULL, 0, 6}, {'s', "x", 46, 7}, {0}}},

    /* ---- restarts ---- */
    {"restart: the persisted reference means no second report of the same value",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@40,updated:major/value@50",
     {{'s', "x", 30, 0}, {'s', "x", 40, 1}, {'R', NULL, 0, 2}, {'s', "x", 40, 3}, {'s', "x", 45, 4},
      {'R', NULL, 0, 5}, {'s', "x", 49, 6}, {'s', "x", 50, 7}, {0}}},

    {"restart from a state without a reference: the first value is taken silently",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "escalate_step": 10,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@55",
     {{'s', "x", 30, 0}, {'O', NULL, 0, 1}, {'s', "x", 45, 2}, {'s', "x", 50, 3}, {'s', "x", 55, 4},
      {0}}},

    /* ---- re-notify ---- */
    {"re-notify every N while unacknowledged; none once acknowledged",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "renotify": "10m",
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/renotify@30,updated:major/renotify@30,acked,cleared",
     {{'s', "x", 30, 0}, {'t', NULL, 0, 599}, {'t', NULL, 0, 600}, {'t', NULL, 0, 601},
      {'t', NULL, 0, 1200}, {'c', "ack", 0, 1300, NULL}, {'t', NULL, 0, 1800}, {'t', NULL, 0, 2400},
      {'t', NULL, 0, 4000}, {'s', "x", 1, 4100}, {'t', NULL, 0, 9000}, {0}}},

    {"re-notify resumes when an escalation needs a fresh acknowledgement",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "renotify": "10m",
        "levels": [{"severity": "warning", "raise": 20, "clear": 15},
                   {"severity": "major", "raise": 80, "clear": 75}],
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:warning@30,acked,updated:major/escalated@90,updated:major/renotify@90",
     {{'s', "x", 30, 0}, {'c', "ack", 0, 10, NULL}, {'t', NULL, 0, 700}, {'s', "x", 90, 800},
      {'t', NULL, 0, 1300}, {'t', NULL, 0, 1400}, {'t', NULL, 0, 1500}, {0}}},

    {"a value update restarts the re-notify interval; re-notify is the new reference",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "renotify": "10m",
        "escalate_step": 10, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/value@40,updated:major/renotify@35,updated:major/value@45",
     {{'s', "x", 30, 0}, {'s', "x", 40, 300}, {'t', NULL, 0, 600}, {'s', "x", 35, 850},
      {'t', NULL, 0, 899}, {'t', NULL, 0, 900}, {'s', "x", 44, 950}, {'s', "x", 45, 960}, {0}}},

    {"re-notify survives a restart (its clock is persisted), is silent while shelved and due at "
     "once when the shelve is lifted",
     R({"id": "r", "when": {"field": "x", "op": ">", "raise": 20, "clear": 15}, "renotify": "10m",
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "raised:major@30,updated:major/renotify@30,shelved,unshelved,updated:major/renotify@30,"
     "updated:major/renotify@30",
     {{'s', "x", 30, 0}, {'R', NULL, 0, 100}, {'s', "x", 30, 200}, {'t', NULL, 0, 599},
      {'t', NULL, 0, 600}, {'c', "shelve", 0, 700, "\"duration_s\": 3600"}, {'t', NULL, 0, 1300},
      {'t', NULL, 0, 2000}, {'c', "unshelve", 0, 2100, NULL}, {'t', NULL, 0, 2600},
      {'t', NULL, 0, 2700}, {0}}},
};

/* ---- runner ----------------------------------------------------------------------------- */

/* type[:severity[/reason]][@value][!acked] for each event. */
static void summarise(const tu_cap *c, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; i < c->n; i++) {
        const tu_event *e = &c->ev[i];
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i ? "," : "", e->type);
        int cond = !strcmp(e->type, "raised") || !strcmp(e->type, "updated");
        if (!cond)
            continue;
        l = strlen(buf);
        snprintf(buf + l, n - l, ":%s", e->severity);
        if (!strcmp(e->type, "updated")) {
            l = strlen(buf);
            snprintf(buf + l, n - l, "/%s", e->reason);
        }
        cJSON *j = cJSON_Parse(e->json);
        const cJSON *v = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "evidence"), "value");
        l = strlen(buf);
        if (cJSON_IsNumber(v))
            snprintf(buf + l, n - l, "@%g", v->valuedouble);
        cJSON_Delete(j);
        if (!strcmp(e->state, "active_acked")) {
            l = strlen(buf);
            snprintf(buf + l, n - l, "!acked");
        }
    }
}

/* The saved state of d1/r after the captured events (NULL: normal, nothing saved). */
static const char *last_state(const tu_cap *c)
{
    const char *s = NULL;
    for (int i = 0; i < c->n; i++)
        s = c->ev[i].state_json;
    return s;
}

static gw_engine *restart(gw_engine *old, const gw_config *cfg, tu_cap *cap, int strip_ref)
{
    gw_engine_hooks hooks = {tu_commit, tu_now};
    uint64_t last = gw_engine_last_seq(old);
    gw_engine_free(old);
    gw_engine *e = NULL;
    assert_int_equal(gw_engine_new(cfg, &hooks, cap, &e), 0);
    gw_engine_restore(e, last);
    const char *st = last_state(cap);
    if (st) {
        cJSON *o = cJSON_Parse(st);
        assert_non_null(o);
        if (strip_ref) {
            assert_non_null(cJSON_GetObjectItem(o, "esc_ref"));
            cJSON_DeleteItemFromObject(o, "esc_ref");
        }
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        assert_int_equal(gw_engine_restore_alarm(e, "d1/r", txt), 0);
        free(txt);
    }
    return e;
}

static void run_scenario(const scenario *sc, tu_cap *cap, char *summary, size_t n)
{
    gw_config *cfg = tu_cfg_new();
    char set[4096];
    snprintf(set, sizeof set, "{\"schema\": \"citygate.rules/1\", \"rules\": %s}", sc->rules);
    tu_cfg_ruleset(cfg, "t", set);
    tu_cfg_device(cfg, "d1", "manhole", "t", NULL, sc->overrides, NULL);
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
        case 'R': e = restart(e, cfg, cap, 0); break;
        case 'O': e = restart(e, cfg, cap, 1); break;
        case 'c': {
            char req[512];
            snprintf(req, sizeof req, "{\"request_id\": \"q%d\", \"alarm\": \"d1/r\", \"user\": \"op1\"%s%s}",
                     (int)(st - sc->steps), st->arg ? ", " : "", st->arg ? st->arg : "");
            cap->now = TU_T0 + t;
            char *reply = NULL;
            int crc = gw_engine_command(e, st->field, req, &reply);
            if (crc != 0)
                fprintf(stderr, "%s: command %s refused: %s\n", sc->name, st->field, reply);
            gw_free(reply);
            break;
        }
        default: fail_msg("bad step kind %c", st->kind);
        }
    }
    summarise(cap, summary, n);
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

/* ---- check: where escalate_step does not apply ------------------------------------------- */

typedef struct bad_case {
    const char *rules;     /* rules array */
    const char *overrides; /* device overrides or NULL: the rule set alone */
    const char *want;      /* one error line, whole */
} bad_case;

#define NA ": not applicable: value escalation needs a value threshold (> >= < <=) or outside in " \
           "the condition (not == != in not_in between stuck stale quality or a rate)"

static const bad_case bad[] = {
    {R({"id": "r", "when": {"field": "open", "op": "==", "value": true}, "escalate_step": 1, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "r", "when": {"field": "s", "op": "in", "values": ["fault"]}, "escalate_step": 1, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "r", "when": {"op": "stale", "for": "1m"}, "escalate_step": 1, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "r", "when": {"op": "quality", "in": ["comm_error"]}, "escalate_step": 1, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "r", "when": {"field": "x", "op": "stuck", "for": "1h"}, "escalate_step": 1, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "r", "when": {"field": "x", "op": "between", "low": 1, "high": 2}, "escalate_step": 1, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "r", "when": {"field": "p", "of": "rate", "op": "<", "raise": -0.1}, "escalate_step": 0.1,
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step" NA},
    {R({"id": "a", "when": {"field": "x", "op": ">", "raise": 1}, "problem": {"class": "event", "code": "0499", "name": "n"}},
       {"id": "r", "when": {"field": "x", "op": ">", "raise": 1},
        "levels": [{"severity": "warning", "raise": 1}, {"severity": "major", "raise": 5, "escalate_step": -1}],
        "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[1].levels[1].escalate_step: must be a number >= 0 in the field's unit (0 = off)"},
    {R({"id": "r", "when": {"field": "x", "op": ">", "raise": 1}, "escalate_step": "10%", "problem": {"class": "event", "code": "0499", "name": "n"}}),
     NULL, "rules/t.json: rules[0].escalate_step: must be a number >= 0 in the field's unit (0 = off)"},
    {R({"id": "r", "when": {"field": "open", "op": "==", "value": true}, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     "{\"r\": {\"escalate_step\": 2}}", "test.json: devices[0].overrides.r.escalate_step" NA},
    {R({"id": "r", "when": {"field": "x", "op": ">", "raise": 1}, "problem": {"class": "event", "code": "0499", "name": "n"}}),
     "{\"r\": {\"levels\": [{\"escalate_step\": null}]}}",
     "test.json: devices[0].overrides.r.levels[0].escalate_step: must be a number >= 0 in the field's unit (0 = off)"},
};

static void test_check_errors(void **state)
{
    (void)state;
    int failed = 0;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_config *cfg = tu_cfg_new();
        char set[4096];
        snprintf(set, sizeof set, "{\"schema\": \"citygate.rules/1\", \"rules\": %s}", bad[i].rules);
        tu_cfg_ruleset(cfg, "t", set);
        if (bad[i].overrides)
            tu_cfg_device(cfg, "d1", "manhole", "t", NULL, bad[i].overrides, NULL);
        gw_cfgerr errs = {0};
        int rc = gw_rules_check(cfg, &errs);
        int hit = 0;
        for (size_t k = 0; k < errs.n; k++)
            hit |= !strcmp(errs.lines[k], bad[i].want);
        if (rc != GW_ECONFIG || !hit) {
            fprintf(stderr, "FAIL case %zu: rc %d, wanted line\n  %s\ngot:\n", i, rc, bad[i].want);
            for (size_t k = 0; k < errs.n; k++)
                fprintf(stderr, "  | %s\n", errs.lines[k]);
            failed++;
        }
        gw_cfgerr_free(&errs);
        tu_cfg_free(cfg);
    }
    assert_int_equal(failed, 0);
}

/* ---- shipped defaults ------------------------------------------------------------------- */

typedef struct shipped {
    const char *set, *kind, *params, *rule;
    double step[2]; /* per level (levels beyond n_levels: ignored) */
} shipped;

static const shipped shipped_steps[] = {
    {"manhole", "manhole", "{\"well_depth_m\": 2.5}", "ch4-high", {10, 10}},
    {"manhole", "manhole", "{\"well_depth_m\": 2.5}", "water-level-high", {0.2, 0.2}},
    {"manhole", "manhole", "{\"well_depth_m\": 2.5}", "cover-tilt", {0, 0}},
    {"gas", "gas", NULL, "ch4-high", {10, 10}},
    {"water", "water", "{\"high_level_m\": 1.5}", "pressure-low", {0.05, 0}},
    {"water", "water", "{\"high_level_m\": 1.5}", "level-high", {0.2, 0}},
    {"water", "water", "{\"high_level_m\": 1.5}", "pipe-burst", {0, 0}},
};

static void test_shipped_steps(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof shipped_steps / sizeof shipped_steps[0]; i++) {
        const shipped *s = &shipped_steps[i];
        gw_config *cfg = tu_cfg_new();
        tu_cfg_ruleset_file(cfg, s->set);
        tu_cfg_device(cfg, "d1", s->kind, s->set, s->params, NULL, NULL);
        gw_rule_inst *arr;
        size_t n;
        assert_int_equal(gw_rule_compile(cfg, &cfg->devices[0], NULL, &arr, &n), 0);
        const gw_rule_inst *ri = NULL;
        for (size_t k = 0; k < n; k++)
            if (!strcmp(arr[k].rule_id, s->rule))
                ri = &arr[k];
        if (!ri)
            fail_msg("%s: no rule %s", s->set, s->rule);
        for (int l = 0; l < ri->n_levels && l < 2; l++)
            if (ri->levels[l].escalate_step != s->step[l])
                fail_msg("%s/%s level %d: escalate_step %g, expected %g", s->set, s->rule, l,
                         ri->levels[l].escalate_step, s->step[l]);
        for (size_t k = 0; k < n; k++)
            gw_rule_inst_clear(&arr[k]);
        gw_free(arr);
        tu_cfg_free(cfg);
    }
}

/* ---- the persisted reference ------------------------------------------------------------ */

static void test_state_json(void **state)
{
    (void)state;
    gw_rule_inst ri;
    memset(&ri, 0, sizeof ri);
    ri.n_levels = 1;
    ri.esc_field = 0;
    ri.esc_op = GW_OP_GT;
    ri.levels[0].escalate_step = 10;
    gw_alarm a;
    memset(&a, 0, sizeof a);
    a.state = GW_ALARM_ACTIVE_UNACKED;
    a.rep_level = a.cond_level = 1;
    a.lv[0].on = a.lv[0].raw = 1;
    a.esc_ref = 42.5;
    a.esc_has = 1;
    char *js;
    assert_int_equal(gw_alarm_to_json(&a, &js), 0);
    assert_non_null(strstr(js, "\"esc_ref\":42.5"));
    gw_alarm b;
    assert_int_equal(gw_alarm_from_json(&b, &ri, js), 0);
    assert_true(b.esc_has && b.esc_ref == 42.5);
    /* due only at one step further; not while shelved */
    assert_false(gw_alarm_value_due(&b, &ri, 52.4));
    assert_true(gw_alarm_value_due(&b, &ri, 52.5));
    b.sup = GW_SUP_SHELVED;
    assert_false(gw_alarm_value_due(&b, &ri, 90));
    gw_free(js);
    /* an unreadable reference is an unreadable state */
    assert_int_equal(gw_alarm_from_json(&b, &ri,
        "{\"state\":\"active_unacked\",\"sup\":\"none\",\"shelved_until\":0,\"rep_level\":1,"
        "\"levels_on\":1,\"cond_since\":0,\"active_since\":0,\"count\":1,\"last_notify\":0,"
        "\"last_change\":0,\"value\":0,\"esc_ref\":\"x\"}"), GW_EINVAL);
    /* no reference when not active */
    memset(&a, 0, sizeof a);
    assert_int_equal(gw_alarm_to_json(&a, &js), 0);
    assert_null(strstr(js, "esc_ref"));
    gw_free(js);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_check_errors),
        cmocka_unit_test(test_shipped_steps),
        cmocka_unit_test(test_state_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
