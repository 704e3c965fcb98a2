/* The gateway's own alarms (gw_engine_system_alarm): content of the events (device kind
 * "gateway", problem class "gateway", evidence = detail; valid against
 * docs/event.schema.json), one seq with device alarms, commit failures retried on the
 * tick, commands, severity changes, restore across a restart (known and unknown rule
 * ids), and the refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "test_rules_util.h"

#define GW "GW-500103-0001"

static gw_config *cfg_with_device(void)
{
    gw_config *cfg = tu_cfg_new();
    tu_cfg_ruleset(cfg, "t",
        "{\"rules\": [{\"id\": \"r\", \"when\": {\"field\": \"x\", \"op\": \">\", \"raise\": 15},"
        " \"problem\": {\"class\": \"component\", \"name\": \"t\"}}]}");
    tu_cfg_device(cfg, "a", "manhole", "t", NULL, NULL, NULL);
    return cfg;
}

static const char *jstr(const cJSON *o, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

static int jnull(const cJSON *o, const char *a, const char *b)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(o, a), b));
}

static void test_raise_clear(void **state)
{
    (void)state;
    gw_config *cfg = cfg_with_device();
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    gw_engine_stats st;
    gw_engine_stats_get(e, &st);
    assert_int_equal(st.rules, 1); /* compiled rules only */

    tu_sample(e, "a", "x", 20, 0); /* a device alarm first: one seq for both */
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_MAJOR, 1, NULL,
                                            "HTTP 401: authorization failed", TU_T0 + TU_S(1)), 0);
    assert_int_equal(cap.n, 2);
    assert_string_equal(cap.ev[1].type, "raised");
    assert_string_equal(cap.ev[1].alarm, GW "/influx-config");
    assert_int_equal(cap.ev[1].seq, 2);
    assert_string_equal(cap.ev[1].severity, "major");
    assert_non_null(cap.ev[1].state_json);
    assert_non_null(cap.ev[1].retained);

    cJSON *j = cJSON_Parse(cap.ev[1].json);
    assert_string_equal(jstr(j, "device", "id"), GW);
    assert_string_equal(jstr(j, "device", "kind"), "gateway");
    assert_true(jnull(j, "device", "profile"));
    assert_string_equal(jstr(j, "problem", "class"), "gateway");
    assert_string_equal(jstr(j, "problem", "code"), "G01");
    assert_string_equal(jstr(j, "problem", "name"), "InfluxDB configuration fault");
    assert_string_equal(jstr(j, "rule", "id"), "influx-config");
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "rule"), "raise"));
    assert_string_equal(jstr(j, "evidence", "value"), "HTTP 401: authorization failed");
    assert_true(jnull(j, "evidence", "field"));
    assert_true(jnull(j, "component", "code"));
    assert_true(jnull(j, "component", "location"));
    assert_string_equal(jstr(j, "reason", NULL), "condition");
    cJSON_Delete(j);
    cJSON *r = cJSON_Parse(cap.ev[1].retained);
    assert_string_equal(jstr(r, "schema", NULL), "citygate.alarm/1");
    assert_string_equal(jstr(r, "alarm", "id"), GW "/influx-config");
    assert_string_equal(jstr(r, "value", NULL), "HTTP 401: authorization failed");
    cJSON_Delete(r);

    /* Said again: nothing new (the writer repeats itself on every retry). */
    for (int i = 2; i < 10; i++)
        assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_MAJOR, 1, NULL,
                                                "HTTP 401", TU_T0 + TU_S(i)), 0);
    gw_engine_tick(e, TU_T0 + TU_S(10));
    assert_int_equal(cap.n, 2);
    gw_engine_stats_get(e, &st);
    assert_int_equal(st.active, 2);
    assert_int_equal(st.active_by_severity[GW_SEV_MAJOR], 2);

    /* The page's snapshot shows it. */
    char *snap = NULL;
    assert_int_equal(gw_engine_alarms_json(e, &snap), 0);
    assert_non_null(strstr(snap, "\"id\":\"" GW "/influx-config\""));
    gw_free(snap);

    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_NONE, 0, NULL,
                                            "writes accepted again", TU_T0 + TU_S(11)), 0);
    assert_int_equal(cap.n, 3);
    assert_string_equal(cap.ev[2].type, "cleared");
    assert_int_equal(cap.ev[2].seq, 3);
    assert_null(cap.ev[2].retained);  /* empty retained message */
    assert_non_null(cap.ev[2].state_json); /* cleared, not yet acknowledged */
    j = cJSON_Parse(cap.ev[2].json);
    assert_string_equal(jstr(j, "evidence", "value"), "writes accepted again");
    assert_string_equal(jstr(j, "alarm", "state"), "cleared_unacked");
    cJSON_Delete(j);
    /* Cleared again: nothing. */
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_NONE, 0, NULL,
                                            NULL, TU_T0 + TU_S(12)), 0);
    assert_int_equal(cap.n, 3);

    /* A rule id the catalogue does not know: code G00, the given name and severity. */
    assert_int_equal(gw_engine_system_alarm(e, "disk-full", GW_SEV_WARNING, 1, "data disk full",
                                            NULL, TU_T0 + TU_S(13)), 0);
    assert_int_equal(cap.n, 4);
    j = cJSON_Parse(cap.ev[3].json);
    assert_string_equal(jstr(j, "problem", "code"), "G00");
    assert_string_equal(jstr(j, "problem", "name"), "data disk full");
    assert_string_equal(jstr(j, "alarm", "severity"), "warning");
    assert_true(jnull(j, "evidence", "value"));
    cJSON_Delete(j);

    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* A failed commit applies nothing; the tick retries with the same seq. */
static void test_commit_failure(void **state)
{
    (void)state;
    gw_config *cfg = cfg_with_device();
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    cap.fail = 1;
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_TELEMETRY_DROP, GW_SEV_NONE, 1, NULL,
                                            "1200 lines dropped", TU_T0), GW_EAGAIN);
    assert_int_equal(gw_engine_tick(e, TU_T0 + TU_S(1)), GW_EAGAIN);
    gw_engine_stats st;
    gw_engine_stats_get(e, &st);
    assert_int_equal(st.pending, 1);
    assert_int_equal(st.active, 0);
    cap.fail = 0;
    assert_int_equal(gw_engine_tick(e, TU_T0 + TU_S(2)), 0);
    assert_int_equal(cap.n, 1);
    assert_string_equal(cap.ev[0].type, "raised");
    assert_string_equal(cap.ev[0].severity, "warning"); /* the catalogue's default */
    assert_int_equal(cap.ev[0].seq, 1);
    assert_int_equal(gw_engine_last_seq(e), 1);
    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

static int cmd(gw_engine *e, const char *verb, const char *body)
{
    char *reply = NULL;
    int rc = gw_engine_command(e, verb, body, &reply);
    gw_free(reply);
    return rc;
}

/* ack, shelve and out_of_service work on the gateway's alarms like on any other. */
static void test_commands(void **state)
{
    (void)state;
    gw_config *cfg = cfg_with_device();
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    cap.now = TU_T0;
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    /* Known alarms exist before they are ever raised: maintenance can come first. */
    assert_int_equal(cmd(e, "out_of_service", "{\"alarm\": \"" GW "/influx-config\"}"), 0);
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_MAJOR, 1, NULL,
                                            "HTTP 404", TU_T0 + TU_S(1)), 0);
    assert_int_equal(cap.n, 1); /* suppressed */
    cap.now = TU_T0 + TU_S(2);
    assert_int_equal(cmd(e, "in_service", "{\"alarm\": \"" GW "/influx-config\"}"), 0);
    char sum[256];
    assert_string_equal(tu_summary(&cap, sum, sizeof sum), "out_of_service,in_service,raised:major");
    cap.now = TU_T0 + TU_S(3);
    assert_int_equal(cmd(e, "ack", "{\"alarm\": \"" GW "/influx-config\", \"user\": \"ops\"}"), 0);
    assert_string_equal(cap.ev[3].type, "acked");
    assert_string_equal(cap.ev[3].state, "active_acked");
    /* Worse while acknowledged: updated (escalated) and unacknowledged again. */
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_CRITICAL, 1, NULL,
                                            "HTTP 404", TU_T0 + TU_S(4)), 0);
    assert_string_equal(cap.ev[4].type, "updated");
    assert_string_equal(cap.ev[4].reason, "escalated");
    assert_string_equal(cap.ev[4].severity, "critical");
    assert_string_equal(cap.ev[4].state, "active_unacked");
    cap.now = TU_T0 + TU_S(5);
    assert_int_equal(cmd(e, "shelve", "{\"alarm\": \"" GW "/influx-config\", \"duration_s\": 60}"), 0);
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_NONE, 0, NULL,
                                            NULL, TU_T0 + TU_S(6)), 0);
    assert_int_equal(cap.n, 6); /* shelved: the clear waits */
    gw_engine_tick(e, TU_T0 + TU_S(66));
    assert_string_equal(tu_summary(&cap, sum, sizeof sum),
                        "out_of_service,in_service,raised:major,acked,updated:critical,shelved,unshelved,cleared");
    for (int i = 0; i < cap.n; i++)
        assert_int_equal(cap.ev[i].seq, (uint64_t)i + 1);
    assert_int_equal(cap.schema_errors, 0);
    tu_cap_reset(&cap);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* Saved state comes back after a restart: no second raised while the fault lasts, the
 * clear is reported once the caller says so, and an unknown gateway rule id is kept
 * (not dropped as "no longer configured"). */
static void test_restore(void **state)
{
    (void)state;
    gw_config *cfg = cfg_with_device();
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_NONE, 1, NULL,
                                            "HTTP 403", TU_T0), 0);
    assert_int_equal(gw_engine_system_alarm(e, "legacy-thing", GW_SEV_MINOR, 1, "old alarm",
                                            NULL, TU_T0 + TU_S(1)), 0);
    assert_int_equal(cap.n, 2);
    char *s1 = strdup(cap.ev[0].state_json), *s2 = strdup(cap.ev[1].state_json);
    gw_engine_free(e);

    static tu_cap cap2;
    memset(&cap2, 0, sizeof cap2);
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap2, &e), 0);
    gw_engine_restore(e, 2);
    assert_int_equal(gw_engine_restore_alarm(e, GW "/influx-config", s1), 0);
    assert_int_equal(gw_engine_restore_alarm(e, GW "/legacy-thing", s2), 0);
    assert_int_equal(gw_engine_restore_alarm(e, GW "/Bad Id", s2), GW_ENOTFOUND);
    assert_int_equal(gw_engine_restore_alarm(e, "other-gw/influx-config", s1), GW_ENOTFOUND);
    for (int t = 10; t < 100; t++)
        gw_engine_tick(e, TU_T0 + TU_S(t));
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_NONE, 1, NULL,
                                            "HTTP 403", TU_T0 + TU_S(100)), 0);
    assert_int_equal(cap2.n, 0);
    gw_engine_stats st;
    gw_engine_stats_get(e, &st);
    assert_int_equal(st.active, 2);
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_NONE, 0, NULL,
                                            "recovered", TU_T0 + TU_S(101)), 0);
    assert_int_equal(gw_engine_system_alarm(e, "legacy-thing", GW_SEV_NONE, 0, NULL, NULL,
                                            TU_T0 + TU_S(102)), 0);
    char sum[256];
    assert_string_equal(tu_summary(&cap2, sum, sizeof sum), "cleared,cleared");
    assert_int_equal(cap2.ev[0].seq, 3);
    assert_string_equal(cap2.ev[1].alarm, GW "/legacy-thing");
    assert_string_equal(cap2.ev[1].severity, "minor"); /* from the saved level, not a default */
    assert_int_equal(cap.schema_errors + cap2.schema_errors, 0);
    free(s1);
    free(s2);
    tu_cap_reset(&cap);
    tu_cap_reset(&cap2);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

static void test_refusals(void **state)
{
    (void)state;
    gw_config *cfg = cfg_with_device();
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    gw_engine *e;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    assert_int_equal(gw_engine_system_alarm(e, "Bad/Id", GW_SEV_MAJOR, 1, NULL, NULL, TU_T0), GW_EINVAL);
    assert_int_equal(gw_engine_system_alarm(e, "", GW_SEV_MAJOR, 1, NULL, NULL, TU_T0), GW_EINVAL);
    assert_int_equal(gw_engine_system_alarm(e, NULL, GW_SEV_MAJOR, 1, NULL, NULL, TU_T0), GW_EINVAL);
    assert_int_equal(gw_engine_system_alarm(e, "ok-id", GW_SEV__COUNT, 1, NULL, NULL, TU_T0), GW_EINVAL);
    assert_int_equal(cap.n, 0);
    gw_engine_free(e);
    /* No gateway id: no system alarms. */
    gw_free(cfg->gateway.id);
    cfg->gateway.id = NULL;
    assert_int_equal(gw_engine_new(cfg, &hooks, &cap, &e), 0);
    assert_int_equal(gw_engine_system_alarm(e, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_MAJOR, 1, NULL,
                                            NULL, TU_T0), GW_EINVAL);
    assert_int_equal(gw_engine_restore_alarm(e, "/influx-config", "{}"), GW_ENOTFOUND);
    gw_engine_free(e);
    tu_cfg_free(cfg);
}

/* Allocation failures while building the gateway's alarms or adding one: an error,
 * never a crash (leaks show in the sanitizer build). */
static void test_oom(void **state)
{
    (void)state;
    gw_config *cfg = cfg_with_device();
    static tu_cap cap;
    memset(&cap, 0, sizeof cap);
    gw_engine_hooks hooks = {tu_commit, tu_now};
    for (int n = 0; n < 60; n++) {
        gw_engine *e = NULL;
        gw_alloc_fail_after(n);
        int rc = gw_engine_new(cfg, &hooks, &cap, &e);
        if (rc == 0)
            rc = gw_engine_system_alarm(e, "new-one", GW_SEV_MAJOR, 1, NULL, NULL, TU_T0);
        gw_alloc_fail_after(-1);
        assert_true(rc == 0 || rc == GW_ENOMEM || rc == GW_EAGAIN);
        gw_engine_free(e);
        tu_cap_reset(&cap);
    }
    tu_cfg_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raise_clear),
        cmocka_unit_test(test_commit_failure),
        cmocka_unit_test(test_commands),
        cmocka_unit_test(test_restore),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_oom),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cJSON_Delete(tu_event_schema);
    return rc;
}
