/* lamp plugin: the NOAA sunrise equation against known values, the schedule, and the
 * vectors/ through the real decoder chain. The plugin source is included so its static
 * functions can be tested directly (as Mosquitto's unit tests do). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lamp.c"
#include "vectors.h"

/* Chongqing (29.56 N, 106.55 E), China Standard Time = UTC+8 = +480 min. Reference
 * times from NOAA's full (Meeus) solar calculator: 2026-06-21 rise 05:54:18 set
 * 19:56:49; 2026-12-21 rise 07:44:22 set 17:59:06 (CST). The sunrise equation used
 * here is within two minutes of it. */
static void assert_minutes(double got_utc_min, int hh, int mm, int ss)
{
    double want_utc = hh * 60 + mm + ss / 60.0 - 480;
    if (fabs(got_utc_min - want_utc) > 2.0)
        fail_msg("got %.2f min UTC, want %.2f", got_utc_min, want_utc);
}

static void test_sun_chongqing(void **state)
{
    (void)state;
    double rise, set;
    assert_int_equal(sun_times(29.56, 106.55, 2026, 6, 21, &rise, &set), 0);
    assert_minutes(rise, 5, 54, 18);
    assert_minutes(set, 19, 56, 49);
    assert_int_equal(sun_times(29.56, 106.55, 2026, 12, 21, &rise, &set), 0);
    assert_minutes(rise, 7, 44, 22);
    assert_minutes(set, 17, 59, 6);
    /* Day length at the June solstice ~14 h 2 min, December ~10 h 15 min. */
    assert_in_range((long)(set - rise), 0, 100000);
}

static void test_sun_polar(void **state)
{
    (void)state;
    double rise, set;
    /* Tromsø 69.65 N: polar night at the December solstice, midnight sun in June. */
    assert_int_equal(sun_times(69.65, 18.96, 2026, 12, 21, &rise, &set), 1);
    assert_int_equal(sun_times(69.65, 18.96, 2026, 6, 21, &rise, &set), 2);
    assert_int_equal(astro_on(69.65, 18.96, 1797854400000000LL, 0, 0), 1);   /* 2026-12-21T12:00Z */
    assert_int_equal(astro_on(69.65, 18.96, 1782043200000000LL, 0, 0), 0);   /* 2026-06-21T12:00Z */
}

static void test_civil_days(void **state)
{
    (void)state;
    int y, m, d;
    assert_int_equal(days_from_civil(1970, 1, 1), 0);
    assert_int_equal(days_from_civil(2026, 6, 21), 20625);
    civil_from_days(20625, &y, &m, &d);
    assert_int_equal(y * 10000 + m * 100 + d, 20260621);
    civil_from_days(days_from_civil(2024, 2, 29), &y, &m, &d);
    assert_int_equal(y * 10000 + m * 100 + d, 20240229);
}

static void test_schedule(void **state)
{
    (void)state;
    int on = -1, off = -1; /* set by parse_hhmm; initialised for -O3's flow analysis */
    assert_int_equal(parse_hhmm("18:30", &on), 0);
    assert_int_equal(parse_hhmm("06:30", &off), 0);
    assert_int_equal(parse_hhmm("25:00", &on), -1);
    assert_int_equal(parse_hhmm("18:30x", &on), -1);
    parse_hhmm("18:30", &on);
    /* 2026-06-01T11:00Z = 19:00 CST on; 04:00Z = 12:00 off; 22:29Z = 06:29 on. */
    assert_int_equal(schedule_on(on, off, 480, 1780311600000000LL), 1);
    assert_int_equal(schedule_on(on, off, 480, 1780286400000000LL), 0);
    assert_int_equal(schedule_on(on, off, 480, 1780352940000000LL), 1);
    assert_int_equal(schedule_on(on, off, 480, 1780353060000000LL), 0);
}

static void test_vectors(void **state)
{
    (void)state;
    assert_true(cgt_run_vectors(VECTORS_DIR, "lamp") >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sun_chongqing),
        cmocka_unit_test(test_sun_polar),
        cmocka_unit_test(test_civil_days),
        cmocka_unit_test(test_schedule),
        cmocka_unit_test(test_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
