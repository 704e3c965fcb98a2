/* timeutil: RFC 3339 formatting and parsing (offsets, fractions, round trips, bad
 * input rejected), UTC offsets, clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"
#include "timeutil.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

/* Seconds since the epoch of a UTC civil time, through the C library (independent of
 * the code under test). */
static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d,
                    .tm_hour = h, .tm_min = mi, .tm_sec = s};
    return (int64_t)timegm(&tm);
}

static void test_format_known(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(gw_format_rfc3339(buf, sizeof buf, 0, 0), 24);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");

    int64_t ts = utc(2026, 6, 1, 0, 30, 5) * 1000000 + 120000;
    assert_true(gw_format_rfc3339(buf, sizeof buf, ts, 480) > 0);
    assert_string_equal(buf, "2026-06-01T08:30:05.120+08:00");
    assert_true(gw_format_rfc3339(buf, sizeof buf, ts, 0) > 0);
    assert_string_equal(buf, "2026-06-01T00:30:05.120Z");
    assert_true(gw_format_rfc3339(buf, sizeof buf, ts, -330) > 0);
    assert_string_equal(buf, "2026-05-31T19:00:05.120-05:30");
    assert_true(gw_format_rfc3339(buf, sizeof buf, ts, 345) > 0);
    assert_string_equal(buf, "2026-06-01T06:15:05.120+05:45");

    /* Microseconds are truncated to milliseconds, never rounded up into the next second. */
    ts = utc(2026, 12, 31, 23, 59, 59) * 1000000 + 999999;
    assert_true(gw_format_rfc3339(buf, sizeof buf, ts, 0) > 0);
    assert_string_equal(buf, "2026-12-31T23:59:59.999Z");

    /* Leap day. */
    ts = utc(2024, 2, 29, 12, 0, 0) * 1000000;
    assert_true(gw_format_rfc3339(buf, sizeof buf, ts, 480) > 0);
    assert_string_equal(buf, "2024-02-29T20:00:00.000+08:00");
}

static void test_format_before_epoch(void **state)
{
    (void)state;
    char buf[64];
    assert_true(gw_format_rfc3339(buf, sizeof buf, -1, 0) > 0);
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
    assert_true(gw_format_rfc3339(buf, sizeof buf, -1500000, 0) > 0);
    assert_string_equal(buf, "1969-12-31T23:59:58.500Z");
}

static void test_format_buffer_too_small(void **state)
{
    (void)state;
    char buf[64];
    memset(buf, 'X', sizeof buf);
    assert_int_equal(gw_format_rfc3339(buf, 24, 0, 0), GW_EINVAL); /* needs 25 with NUL */
    assert_int_equal(gw_format_rfc3339(buf, 25, 0, 0), 24);
    assert_int_equal(gw_format_rfc3339(buf, 29, 0, 480), GW_EINVAL);
    assert_int_equal(gw_format_rfc3339(buf, 30, 0, 480), 29);
    assert_int_equal(buf[29], '\0');
}

static void test_parse_known(void **state)
{
    (void)state;
    const int64_t base = utc(2026, 6, 1, 0, 30, 5) * 1000000;
    const struct {
        const char *s;
        int64_t want;
    } cases[] = {
        {"2026-06-01T08:30:05.120+08:00", base + 120000},
        {"2026-06-01T00:30:05.120Z", base + 120000},
        {"2026-06-01T00:30:05.120z", base + 120000},
        {"2026-06-01t00:30:05.120Z", base + 120000},
        {"2026-06-01 00:30:05.120Z", base + 120000},
        {"2026-06-01T00:30:05Z", base},
        {"2026-06-01T08:30:05+08:00", base},
        {"2026-05-31T19:00:05-05:30", base},
        {"2026-06-01T00:30:05.1Z", base + 100000},
        {"2026-06-01T00:30:05.123456Z", base + 123456},
        {"2026-06-01T00:30:05.123456789Z", base + 123456}, /* beyond µs: truncated */
        {"2026-06-01T00:30:05.000001+00:00", base + 1},
        {"2026-06-01T00:30:05.5-00:00", base + 500000},
        {"1970-01-01T00:00:00Z", 0},
        {"1969-12-31T23:59:59.999Z", -1000},
        {"2024-02-29T00:00:00Z", utc(2024, 2, 29, 0, 0, 0) * 1000000},
        {"2000-02-29T23:59:59Z", utc(2000, 2, 29, 23, 59, 59) * 1000000},
        {"2026-01-01T00:00:00+14:00", utc(2025, 12, 31, 10, 0, 0) * 1000000},
        {"2026-01-01T00:00:00-12:00", utc(2026, 1, 1, 12, 0, 0) * 1000000},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t got = 12345;
        if (gw_parse_rfc3339(cases[i].s, &got) != 0)
            fail_msg("rejected valid \"%s\"", cases[i].s);
        if (got != cases[i].want)
            fail_msg("\"%s\": got %lld, want %lld", cases[i].s, (long long)got,
                     (long long)cases[i].want);
    }
}

static void test_parse_rejects_bad(void **state)
{
    (void)state;
    const char *bad[] = {
        "",
        "2026-06-01",
        "2026-06-01T08:30:05",           /* no offset */
        "2026-06-01T08:30:05.120",       /* no offset */
        "2026-06-01T08:30:05.+08:00",    /* empty fraction */
        "2026-06-01T08:30:05,120+08:00", /* comma */
        "2026-06-01T08:30:05.120+8:00",
        "2026-06-01T08:30:05.120+0800",
        "2026-06-01T08:30:05.120+08",
        "2026-06-01T08:30:05.120+08:00x",
        "2026-06-01T08:30:05.120 +08:00",
        "2026-06-01T08:30:05.120+ 8:00",
        "2026-06-01T08:30:05.120+-1:00",
        "2026-06-01T08:30:05.120+08:-1",
        "2026-06-01T08:30:05.120+15:00",
        "2026-06-01T08:30:05.120+08:60",
        "2026-06-01T08:30:05.120ZZ",
        "2026-06-01X08:30:05Z",
        "2026-6-01T08:30:05Z",
        "2026-06-1T08:30:05Z",
        "2026/06/01T08:30:05Z",
        "2026-13-01T00:00:00Z",
        "2026-00-01T00:00:00Z",
        "2026-06-00T00:00:00Z",
        "2026-06-32T00:00:00Z",
        "2026-06-31T00:00:00Z", /* June has 30 days */
        "2026-02-29T00:00:00Z", /* not a leap year */
        "1900-02-29T00:00:00Z", /* century, not a leap year */
        "2026-04-31T00:00:00Z",
        "2026-06-01T24:00:00Z",
        "2026-06-01T08:60:00Z",
        "2026-06-01T08:30:61Z",
        "2026-06-01T08:3a:05Z",
        "-026-06-01T08:30:05Z",
        " 2026-06-01T08:30:05Z",
        "2026-06-01T08:30:05Z ",
        "20260601T083005Z",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t got = 777;
        if (gw_parse_rfc3339(bad[i], &got) != GW_EINVAL)
            fail_msg("accepted bad \"%s\" as %lld", bad[i], (long long)got);
        assert_int_equal(got, 777); /* output untouched on error */
    }
    int64_t got;
    assert_int_equal(gw_parse_rfc3339(NULL, &got), GW_EINVAL);
}

static void test_round_trip(void **state)
{
    (void)state;
    const int offsets[] = {0, 480, -300, 330, 345, 840, -720, 60, -60, 1};
    const int64_t stamps[] = {
        0,
        1,
        999,
        -1,
        -999999,
        -86400LL * 1000000 * 365 * 50, /* 1920 */
        utc(2026, 6, 1, 8, 30, 5) * 1000000 + 120456,
        utc(2024, 2, 29, 23, 59, 59) * 1000000 + 999999,
        utc(2038, 1, 19, 3, 14, 8) * 1000000,         /* past 32-bit time_t */
        utc(2099, 12, 31, 23, 59, 59) * 1000000 + 1000,
        utc(9999, 12, 31, 23, 59, 59) * 1000000 - 86400LL * 1000000,
    };
    char buf[64];
    for (size_t i = 0; i < sizeof stamps / sizeof stamps[0]; i++) {
        for (size_t j = 0; j < sizeof offsets / sizeof offsets[0]; j++) {
            int64_t ts = stamps[i];
            assert_true(gw_format_rfc3339(buf, sizeof buf, ts, offsets[j]) > 0);
            int64_t back;
            if (gw_parse_rfc3339(buf, &back) != 0)
                fail_msg("could not parse own output \"%s\"", buf);
            /* Formatting keeps milliseconds: the round trip floors to the millisecond. */
            int64_t want = ts - (((ts % 1000) + 1000) % 1000);
            if (back != want)
                fail_msg("%lld at %+d min -> \"%s\" -> %lld", (long long)ts, offsets[j], buf,
                         (long long)back);
            /* And formatting the parsed value again gives the same text. */
            char again[64];
            assert_true(gw_format_rfc3339(again, sizeof again, back, offsets[j]) > 0);
            assert_string_equal(buf, again);
        }
    }
}

static void test_utc_offset(void **state)
{
    (void)state;
    const struct {
        const char *s;
        int min;
    } ok[] = {{"+08:00", 480}, {"-05:30", -330}, {"Z", 0},     {"z", 0},
              {"+00:00", 0},   {"-00:00", 0},    {"+05:45", 345}, {"+14:00", 840},
              {"-12:00", -720}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        int m = 12345;
        if (gw_parse_utc_offset(ok[i].s, &m) != 0)
            fail_msg("rejected \"%s\"", ok[i].s);
        assert_int_equal(m, ok[i].min);
    }
    const char *bad[] = {"",       "08:00",  "+0800",  "+8:00",   "+08:0", "+08:00:00",
                         "+ 8:00", "+-1:00", "+08:-1", "+08: 1",  "+15:00", "+08:60",
                         "UTC",    "ZZ",     "Z ",     "+08:00 ", "*08:00", "+0a:00"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int m = 12345;
        if (gw_parse_utc_offset(bad[i], &m) != GW_EINVAL)
            fail_msg("accepted bad offset \"%s\" as %d", bad[i], m);
        assert_int_equal(m, 12345);
    }
    int m;
    assert_int_equal(gw_parse_utc_offset(NULL, &m), GW_EINVAL);
}

static void test_clocks(void **state)
{
    (void)state;
    int64_t wall = gw_now_ms();
    assert_true(wall > utc(2020, 1, 1, 0, 0, 0) * 1000);
    int64_t wall_us = gw_now_us();
    assert_true(wall_us / 1000 - wall >= 0 && wall_us / 1000 - wall < 1000);

    int64_t m0 = gw_mono_ms(), u0 = gw_mono_us();
    gw_sleep_ms(50);
    int64_t m1 = gw_mono_ms(), u1 = gw_mono_us();
    assert_true(m1 - m0 >= 50);
    assert_true(m1 - m0 < 2000);
    assert_true(u1 - u0 >= 50000);
    /* Non-positive sleeps return at once. */
    gw_sleep_ms(0);
    gw_sleep_ms(-5);
    assert_true(gw_mono_ms() - m1 < 1000);
    /* Monotonic never goes back. */
    int64_t prev = gw_mono_us();
    for (int i = 0; i < 10000; i++) {
        int64_t now = gw_mono_us();
        assert_true(now >= prev);
        prev = now;
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_known),
        cmocka_unit_test(test_format_before_epoch),
        cmocka_unit_test(test_format_buffer_too_small),
        cmocka_unit_test(test_parse_known),
        cmocka_unit_test(test_parse_rejects_bad),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_utc_offset),
        cmocka_unit_test(test_clocks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
