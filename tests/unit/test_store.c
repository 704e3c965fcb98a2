/* The local store: latest values, the history window and ring capacity, alarm upsert and
 * removal, the newest-first bounded events ring, device health counts, JSON outputs that
 * parse, and allocation failure at every step without a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "alloc.h"
#include "config.h"
#include "log.h"
#include "sample.h"
#include "store.h"
#include "timeutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#define MINUTE_US (60LL * 1000000LL)

/* A hand-made configuration: three devices, no files. */
typedef struct fixture {
    gw_config cfg;
    gw_device dev[3];
    gw_store *st;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    gw_log_set_level(GW_LOG_ERROR);
    static char *ids[] = {"mh-0001", "lamp-0001", "water-0001"};
    static char *kinds[] = {"manhole", "lamp", "water"};
    for (int i = 0; i < 3; i++) {
        f->dev[i].id = ids[i];
        f->dev[i].kind = kinds[i];
        f->dev[i].interval_ms = 10000;
        f->dev[i].enabled = 1;
    }
    f->dev[0].name = "Jiefangbei cover 1";
    f->dev[0].component.code = "5001030102000001";
    f->dev[0].component.grid = "500103001002003";
    f->dev[2].source = GW_SRC_MQTT;
    f->cfg.devices = f->dev;
    f->cfg.n_devices = 3;
    f->cfg.http.history_minutes = 180;
    assert_int_equal(gw_store_new(&f->cfg, &f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_store_free(f->st);
    gw_alloc_fail_after(-1);
    free(f);
    return 0;
}

static void put(gw_store *st, const char *dev, uint32_t idx, const char *field, double v,
                gw_quality q, int64_t ts_us)
{
    gw_sample s;
    memset(&s, 0, sizeof s);
    gw_sample_set(&s, dev, field, v, "deg", q, ts_us);
    s.device_idx = idx;
    gw_store_put(st, &s);
}

static cJSON *parse_owned(char *txt)
{
    assert_non_null(txt);
    cJSON *j = cJSON_Parse(txt);
    if (!j)
        fail_msg("not JSON: %s", txt);
    gw_free(txt);
    return j;
}

static cJSON *device_obj(cJSON *arr, const char *id)
{
    cJSON *d;
    cJSON_ArrayForEach(d, arr) {
        cJSON *i = cJSON_GetObjectItemCaseSensitive(d, "id");
        if (cJSON_IsString(i) && strcmp(i->valuestring, id) == 0)
            return d;
    }
    return NULL;
}

static void test_latest_values(void **state)
{
    fixture *f = *state;
    int64_t now = gw_now_us();
    put(f->st, "mh-0001", 0, "tilt_deg", 3.5, GW_Q_GOOD, now - 2000000);
    put(f->st, "mh-0001", 0, "tilt_deg", 4.25, GW_Q_GOOD, now - 1000000);
    put(f->st, "mh-0001", 0, "level_m", NAN, GW_Q_GOOD, now - 1000000);
    /* A bad-quality sample replaces the latest value but carries its quality. */
    put(f->st, "lamp-0001", 1, "power_w", 0, GW_Q_COMM_ERROR, now - 500000);
    /* A wrong index is corrected by name; an unknown device is ignored. */
    put(f->st, "water-0001", 0, "pressure_mpa", 0.31, GW_Q_GOOD, now);
    put(f->st, "nope-9999", 1, "x", 1, GW_Q_GOOD, now);
    gw_sample b;
    memset(&b, 0, sizeof b);
    gw_sample_set(&b, "lamp-0001", "door_open", 1, "", GW_Q_GOOD, now);
    b.type = GW_V_BOOL;
    b.device_idx = 1;
    gw_sample t;
    memset(&t, 0, sizeof t);
    gw_sample_set(&t, "lamp-0001", "mode", 0, "", GW_Q_GOOD, now);
    t.type = GW_V_TEXT;
    snprintf(t.text, sizeof t.text, "%s", "auto \"night\"");
    t.device_idx = 1;
    /* The engine's way: a batch under one lock. */
    gw_sample both[2] = {b, t};
    gw_store_put_many(f->st, both, 2);

    cJSON *arr = parse_owned(gw_store_devices_json(f->st, now));
    assert_true(cJSON_IsArray(arr));
    assert_int_equal(cJSON_GetArraySize(arr), 3);

    cJSON *mh = device_obj(arr, "mh-0001");
    assert_non_null(mh);
    assert_string_equal(cJSON_GetObjectItem(mh, "kind")->valuestring, "manhole");
    assert_string_equal(cJSON_GetObjectItem(mh, "name")->valuestring, "Jiefangbei cover 1");
    assert_string_equal(cJSON_GetObjectItem(mh, "source")->valuestring, "modbus");
    assert_string_equal(cJSON_GetObjectItem(mh, "health")->valuestring, "unknown");
    assert_string_equal(cJSON_GetObjectItem(mh, "component")->valuestring, "5001030102000001");
    assert_string_equal(cJSON_GetObjectItem(mh, "grid")->valuestring, "500103001002003");
    assert_int_equal((int)cJSON_GetObjectItem(mh, "samples")->valuedouble, 3);
    assert_float_equal(cJSON_GetObjectItem(mh, "age_s")->valuedouble, 1.0, 1e-6);
    cJSON *vals = cJSON_GetObjectItem(mh, "values");
    cJSON *tilt = cJSON_GetObjectItem(vals, "tilt_deg");
    assert_non_null(tilt);
    assert_float_equal(cJSON_GetObjectItem(tilt, "value")->valuedouble, 4.25, 1e-9);
    assert_string_equal(cJSON_GetObjectItem(tilt, "unit")->valuestring, "deg");
    assert_string_equal(cJSON_GetObjectItem(tilt, "quality")->valuestring, "good");
    assert_float_equal(cJSON_GetObjectItem(tilt, "age_s")->valuedouble, 1.0, 1e-6);
    /* NaN cannot be JSON: it is null. */
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetObjectItem(vals, "level_m"), "value")));

    cJSON *lamp = device_obj(arr, "lamp-0001");
    cJSON *lv = cJSON_GetObjectItem(lamp, "values");
    cJSON *pw = cJSON_GetObjectItem(lv, "power_w");
    assert_string_equal(cJSON_GetObjectItem(pw, "quality")->valuestring, "comm_error");
    assert_int_equal((int)cJSON_GetObjectItem(lamp, "bad_samples")->valuedouble, 1);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(lv, "door_open"), "value")));
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lv, "mode"), "value")->valuestring,
                        "auto \"night\"");

    cJSON *w = device_obj(arr, "water-0001");
    assert_string_equal(cJSON_GetObjectItem(w, "source")->valuestring, "mqtt");
    assert_non_null(cJSON_GetObjectItem(cJSON_GetObjectItem(w, "values"), "pressure_mpa"));
    /* Never a good sample: age is null. */
    cJSON_Delete(arr);

    gw_store_counts c;
    gw_store_counts_get(f->st, &c);
    assert_int_equal(c.devices, 3);
    assert_int_equal(c.points, 2 + 3 + 1);
}

static void test_no_good_sample_age_null(void **state)
{
    fixture *f = *state;
    int64_t now = gw_now_us();
    put(f->st, "lamp-0001", 1, "power_w", 0, GW_Q_COMM_ERROR, now);
    cJSON *arr = parse_owned(gw_store_devices_json(f->st, now));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(device_obj(arr, "lamp-0001"), "age_s")));
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(device_obj(arr, "mh-0001"), "age_s")));
    cJSON_Delete(arr);
    /* Bad samples never enter the history. */
    int nf = -1;
    cJSON *h = parse_owned(gw_store_history_json(f->st, "lamp-0001", "power_w", 60, now, &nf));
    assert_int_equal(nf, 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(h, "points")), 0);
    cJSON_Delete(h);
}

static void test_history_window(void **state)
{
    fixture *f = *state;
    int64_t now = gw_now_us();
    /* One sample a minute for the last 30 minutes, oldest first. */
    for (int k = 30; k >= 1; k--)
        put(f->st, "mh-0001", 0, "tilt_deg", (double)k, GW_Q_GOOD, now - k * MINUTE_US + 1000);
    int nf = -1;
    cJSON *h = parse_owned(gw_store_history_json(f->st, "mh-0001", "tilt_deg", 10, now, &nf));
    assert_int_equal(nf, 0);
    assert_string_equal(cJSON_GetObjectItem(h, "device")->valuestring, "mh-0001");
    assert_string_equal(cJSON_GetObjectItem(h, "field")->valuestring, "tilt_deg");
    assert_string_equal(cJSON_GetObjectItem(h, "unit")->valuestring, "deg");
    cJSON *pts = cJSON_GetObjectItem(h, "points");
    assert_int_equal(cJSON_GetArraySize(pts), 10);
    /* Oldest first, [ts_ms, value]. */
    cJSON *first = cJSON_GetArrayItem(pts, 0), *last = cJSON_GetArrayItem(pts, 9);
    assert_float_equal(cJSON_GetArrayItem(first, 1)->valuedouble, 10, 0);
    assert_float_equal(cJSON_GetArrayItem(last, 1)->valuedouble, 1, 0);
    assert_float_equal(cJSON_GetArrayItem(last, 0)->valuedouble,
                       (double)((now - MINUTE_US + 1000) / 1000), 0.5);
    cJSON_Delete(h);

    h = parse_owned(gw_store_history_json(f->st, "mh-0001", "tilt_deg", 60, now, &nf));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(h, "points")), 30);
    cJSON_Delete(h);

    assert_null(gw_store_history_json(f->st, "mh-0001", "no_such_field", 60, now, &nf));
    assert_int_equal(nf, 1);
    nf = 0;
    assert_null(gw_store_history_json(f->st, "nope", "tilt_deg", 60, now, &nf));
    assert_int_equal(nf, 1);
}

static void test_history_ring_capacity(void **state)
{
    fixture *f = *state;
    /* 1 minute of history at a 10 s interval is 6 points: clamped to the minimum 16. */
    gw_store_free(f->st);
    f->cfg.http.history_minutes = 1;
    assert_int_equal(gw_store_new(&f->cfg, &f->st), 0);
    int64_t now = gw_now_us();
    for (int k = 0; k < 100; k++)
        put(f->st, "mh-0001", 0, "tilt_deg", (double)k, GW_Q_GOOD, now - (100 - k) * 1000);
    int nf;
    cJSON *h = parse_owned(gw_store_history_json(f->st, "mh-0001", "tilt_deg", 60, now, &nf));
    cJSON *pts = cJSON_GetObjectItem(h, "points");
    assert_int_equal(cJSON_GetArraySize(pts), 16);
    for (int i = 0; i < 16; i++)
        assert_float_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(pts, i), 1)->valuedouble,
                           84 + i, 0);
    cJSON_Delete(h);

    /* 180 minutes at 1 s would be 10800 points: clamped to 2048. */
    gw_store_free(f->st);
    f->cfg.http.history_minutes = 180;
    f->dev[0].interval_ms = 1000;
    assert_int_equal(gw_store_new(&f->cfg, &f->st), 0);
    for (int k = 0; k < 5000; k++)
        put(f->st, "mh-0001", 0, "tilt_deg", (double)k, GW_Q_GOOD, now - (5000 - k) * 1000);
    h = parse_owned(gw_store_history_json(f->st, "mh-0001", "tilt_deg", 180, now, &nf));
    pts = cJSON_GetObjectItem(h, "points");
    assert_int_equal(cJSON_GetArraySize(pts), 2048);
    assert_float_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(pts, 0), 1)->valuedouble, 5000 - 2048, 0);
    assert_float_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(pts, 2047), 1)->valuedouble, 4999, 0);
    cJSON_Delete(h);
}

static int alarm_count(gw_store *st)
{
    cJSON *a = parse_owned(gw_store_alarms_json(st));
    assert_true(cJSON_IsArray(a));
    int n = cJSON_GetArraySize(a);
    cJSON_Delete(a);
    return n;
}

static void test_alarms(void **state)
{
    fixture *f = *state;
    assert_int_equal(alarm_count(f->st), 0);
    gw_store_alarm(f->st, "mh-0001/cover-tilt",
                   "{\"id\":\"mh-0001/cover-tilt\",\"state\":\"active_unacked\",\"severity\":\"major\"}");
    gw_store_alarm(f->st, "lamp-0001/lamp-failure",
                   "{\"id\":\"lamp-0001/lamp-failure\",\"state\":\"active_unacked\"}");
    assert_int_equal(alarm_count(f->st), 2);
    /* Upsert: same id, new state, still two. */
    gw_store_alarm(f->st, "mh-0001/cover-tilt",
                   "{\"id\":\"mh-0001/cover-tilt\",\"state\":\"active_acked\",\"severity\":\"major\"}");
    cJSON *a = parse_owned(gw_store_alarms_json(f->st));
    assert_int_equal(cJSON_GetArraySize(a), 2);
    int seen = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, a) {
        if (strcmp(cJSON_GetObjectItem(it, "id")->valuestring, "mh-0001/cover-tilt") == 0) {
            assert_string_equal(cJSON_GetObjectItem(it, "state")->valuestring, "active_acked");
            seen++;
        }
    }
    assert_int_equal(seen, 1);
    cJSON_Delete(a);
    gw_store_counts c;
    gw_store_counts_get(f->st, &c);
    assert_int_equal(c.alarms, 2);

    /* Remove one, remove an unknown one (no effect), remove again (no effect). */
    gw_store_alarm(f->st, "mh-0001/cover-tilt", NULL);
    gw_store_alarm(f->st, "nope/none", NULL);
    gw_store_alarm(f->st, "mh-0001/cover-tilt", NULL);
    a = parse_owned(gw_store_alarms_json(f->st));
    assert_int_equal(cJSON_GetArraySize(a), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "id")->valuestring,
                        "lamp-0001/lamp-failure");
    cJSON_Delete(a);

    /* Unparsable state JSON is kept out of the document, which stays valid. */
    gw_store_alarm(f->st, "x/broken", "{not json");
    assert_int_equal(alarm_count(f->st), 1);
    gw_store_alarm(f->st, "x/broken", NULL);
    gw_store_alarm(f->st, "lamp-0001/lamp-failure", NULL);
    assert_int_equal(alarm_count(f->st), 0);

    /* Many alarms: the table grows. */
    char id[64], js[128];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "dev-%03d/r", i);
        snprintf(js, sizeof js, "{\"id\":\"%s\",\"n\":%d}", id, i);
        gw_store_alarm(f->st, id, js);
    }
    assert_int_equal(alarm_count(f->st), 100);
    for (int i = 0; i < 100; i += 2) {
        snprintf(id, sizeof id, "dev-%03d/r", i);
        gw_store_alarm(f->st, id, NULL);
    }
    assert_int_equal(alarm_count(f->st), 50);
}

static void test_events_ring(void **state)
{
    fixture *f = *state;
    cJSON *e = parse_owned(gw_store_events_json(f->st, 50));
    assert_int_equal(cJSON_GetArraySize(e), 0);
    cJSON_Delete(e);

    char js[96];
    for (int i = 0; i < 5; i++) {
        snprintf(js, sizeof js, "{\"seq\":%d,\"type\":\"raised\"}", i);
        gw_store_event(f->st, js);
    }
    e = parse_owned(gw_store_events_json(f->st, 3));
    assert_int_equal(cJSON_GetArraySize(e), 3);
    for (int k = 0; k < 3; k++)
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(e, k), "seq")->valueint, 4 - k);
    cJSON_Delete(e);

    /* Far more than the ring keeps: bounded, newest first, oldest dropped. */
    for (int i = 5; i < 1000; i++) {
        snprintf(js, sizeof js, "{\"seq\":%d,\"type\":\"updated\"}", i);
        gw_store_event(f->st, js);
    }
    e = parse_owned(gw_store_events_json(f->st, 100000));
    int n = cJSON_GetArraySize(e);
    assert_true(n > 0 && n <= 1000);
    assert_int_equal(n, 200);
    for (int k = 0; k < n; k++)
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(e, k), "seq")->valueint, 999 - k);
    cJSON_Delete(e);

    e = parse_owned(gw_store_events_json(f->st, 0));
    assert_int_equal(cJSON_GetArraySize(e), 0);
    cJSON_Delete(e);
}

static void test_health_counts(void **state)
{
    fixture *f = *state;
    gw_store_counts c;
    gw_store_counts_get(f->st, &c);
    assert_int_equal(c.devices, 3);
    assert_int_equal(c.unknown, 3);
    assert_int_equal(c.online + c.degraded + c.offline, 0);

    gw_store_set_health(f->st, 0, GW_HEALTH_ONLINE);
    gw_store_set_health(f->st, 1, GW_HEALTH_OFFLINE);
    gw_store_set_health(f->st, 2, GW_HEALTH_DEGRADED);
    gw_store_set_health(f->st, 99, GW_HEALTH_ONLINE); /* out of range: ignored */
    gw_store_counts_get(f->st, &c);
    assert_int_equal(c.online, 1);
    assert_int_equal(c.offline, 1);
    assert_int_equal(c.degraded, 1);
    assert_int_equal(c.unknown, 0);

    /* Probing counts as offline: not yet back. */
    gw_store_set_health(f->st, 0, GW_HEALTH_PROBING);
    gw_store_counts_get(f->st, &c);
    assert_int_equal(c.online, 0);
    assert_int_equal(c.offline, 2);

    cJSON *arr = parse_owned(gw_store_devices_json(f->st, gw_now_us()));
    assert_string_equal(cJSON_GetObjectItem(device_obj(arr, "mh-0001"), "health")->valuestring,
                        "probing");
    assert_string_equal(cJSON_GetObjectItem(device_obj(arr, "lamp-0001"), "health")->valuestring,
                        "offline");
    cJSON_Delete(arr);

    assert_string_equal(gw_health_name(GW_HEALTH_ONLINE), "online");
    assert_string_equal(gw_health_name((gw_health)42), "unknown");
}

/* One full round of every store operation; returns 1 when every output came back. */
static int store_round(const gw_config *cfg)
{
    gw_store *st = NULL;
    if (gw_store_new(cfg, &st) != 0)
        return 0;
    int64_t now = gw_now_us();
    for (int k = 0; k < 40; k++) {
        put(st, "mh-0001", 0, "tilt_deg", k, GW_Q_GOOD, now - (40 - k) * 1000);
        put(st, "lamp-0001", 1, k % 2 ? "power_w" : "voltage_v", k, GW_Q_GOOD, now);
    }
    for (int i = 0; i < 12; i++) {
        char id[32];
        snprintf(id, sizeof id, "mh-0001/r%d", i);
        gw_store_alarm(st, id, "{\"id\":\"a\"}");
    }
    gw_store_alarm(st, "mh-0001/r3", "{\"id\":\"b\"}");
    gw_store_alarm(st, "mh-0001/r4", NULL);
    for (int i = 0; i < 210; i++)
        gw_store_event(st, "{\"seq\":1}");
    gw_store_set_health(st, 0, GW_HEALTH_ONLINE);
    gw_store_counts c;
    gw_store_counts_get(st, &c);

    int ok = 1, nf = 0;
    char *s[4] = {
        gw_store_devices_json(st, now),
        gw_store_alarms_json(st),
        gw_store_events_json(st, 300),
        gw_store_history_json(st, "mh-0001", "tilt_deg", 60, now, &nf),
    };
    for (int i = 0; i < 4; i++) {
        if (!s[i]) {
            ok = 0;
            continue;
        }
        cJSON *j = cJSON_Parse(s[i]);
        assert_non_null(j); /* whatever comes back is valid JSON */
        cJSON_Delete(j);
        gw_free(s[i]);
    }
    gw_store_free(st);
    return ok;
}

static void test_alloc_failure(void **state)
{
    fixture *f = *state;
    /* A clean round first: it must complete, and tells how many allocations it makes. */
    unsigned long before = gw_alloc_count();
    assert_true(store_round(&f->cfg));
    unsigned long total = gw_alloc_count() - before;
    assert_true(total > 200);
    /* Then fail allocation n (and every one after it) for every n in the round. */
    int incomplete = 0;
    for (unsigned long n = 0; n < total; n++) {
        gw_alloc_fail_after((long)n);
        incomplete += !store_round(&f->cfg);
        gw_alloc_fail_after(-1);
    }
    /* Late failures may hit only best-effort steps; early ones must show. */
    assert_true(incomplete > 0);
    assert_true(store_round(&f->cfg));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_latest_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_good_sample_age_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_window, setup, teardown),
        cmocka_unit_test_setup_teardown(test_history_ring_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarms, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_health_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failure, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
