/* Line-protocol formatter: every escaping rule, injection attempts, NaN/Inf, precision. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "error.h"
#include "influx/lineproto.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char out[4096];

/* Format and NUL-terminate; returns the rc. */
static int fmt(const gw_lp_point *p, gw_lp_precision prec, gw_lp_skips *sk)
{
    int n = gw_lp_format(out, sizeof out - 1, p, prec, sk);
    out[n > 0 ? n : 0] = '\0';
    return n;
}

static size_t count_nl(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void test_basic(void **st)
{
    (void)st;
    gw_lp_tag tags[] = {{"device", "mh-0001"}, {"component", "5001030102000001"}};
    gw_lp_field f[] = {{.key = "tilt_deg", .type = GW_LP_FLOAT, .f = 1.5},
                       {.key = "count", .type = GW_LP_INT, .i = -42},
                       {.key = "open", .type = GW_LP_BOOL, .b = 1},
                       {.key = "shut", .type = GW_LP_BOOL, .b = 0},
                       {.key = "label", .type = GW_LP_STRING, .s = "ok"}};
    gw_lp_point p = {"manhole", tags, 2, f, 5, 1700000000123456};
    int n = fmt(&p, GW_LP_US, NULL);
    assert_int_equal(n, (int)strlen(out));
    assert_string_equal(out, "manhole,device=mh-0001,component=5001030102000001 "
                             "tilt_deg=1.5,count=-42i,open=true,shut=false,label=\"ok\" "
                             "1700000000123456\n");
}

static void test_measurement_escaping(void **st)
{
    (void)st;
    gw_lp_field f = {.key = "v", .type = GW_LP_FLOAT, .f = 1};
    gw_lp_point p = {"a b,c=d", NULL, 0, &f, 1, 5};
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "a\\ b\\,c=d v=1 5\n");
    p.measurement = "#comment";
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "_comment v=1 5\n");
    p.measurement = "x#y";
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "x#y v=1 5\n");
    p.measurement = "";
    assert_int_equal(gw_lp_format(out, sizeof out, &p, GW_LP_US, NULL), GW_EINVAL);
    p.measurement = NULL;
    assert_int_equal(gw_lp_format(out, sizeof out, &p, GW_LP_US, NULL), GW_EINVAL);
}

static void test_tag_and_key_escaping(void **st)
{
    (void)st;
    gw_lp_tag t[] = {{"k y", "v,=x"}, {"a=b", "c d"}};
    gw_lp_field f = {.key = "f,k=1 x", .type = GW_LP_INT, .i = 7};
    gw_lp_point p = {"m", t, 2, &f, 1, 0};
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "m,k\\ y=v\\,\\=x,a\\=b=c\\ d f\\,k\\=1\\ x=7i 0\n");
}

static void test_string_field_escaping(void **st)
{
    (void)st;
    gw_lp_field f = {.key = "s", .type = GW_LP_STRING, .s = "say \"hi\" C:\\dir\\"};
    gw_lp_point p = {"m", NULL, 0, &f, 1, 1};
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "m s=\"say \\\"hi\\\" C:\\\\dir\\\\\" 1\n");
    /* Tabs stay inside quotes; newline / CR become the characters \n / \r. */
    f.s = "a\tb\nc\rd\x01" "e";
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "m s=\"a\tb\\nc\\rd e\" 1\n");
}

static void test_control_chars_in_identifiers(void **st)
{
    (void)st;
    gw_lp_tag t = {"t", "a\nb\rc\td\x7f" "e"};
    gw_lp_field f = {.key = "k\n", .type = GW_LP_FLOAT, .f = 2};
    gw_lp_point p = {"m\nx", &t, 1, &f, 1, 3};
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "m\\ x,t=a\\ b\\ c\\ d\\ e k\\ =2 3\n");
}

static void test_backslashes(void **st)
{
    (void)st;
    gw_lp_tag t[] = {{"a", "x\\y"}, {"b", "end\\"}, {"c", "p\\,q"}, {"d", "\\\\"},
                     {"e", "z\\\n"}};
    gw_lp_field f = {.key = "k\\", .type = GW_LP_FLOAT, .f = 1};
    gw_lp_point p = {"m\\ n\\", t, 5, &f, 1, 1};
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "m/\\ n/,a=x\\y,b=end/,c=p/\\,q,d=\\/,e=z/\\  k/=1 1\n");
}

static void test_injection_attempts(void **st)
{
    (void)st;
    const char *evil[] = {
        "x 1\nevil,t=1 f=1 1",  "x\r\nevil f=1",   "\"\n#drop", "v\\\nm f=1",
        "a\\", "a\\\\\\", "=,= ,\\ \\,\\=", "\n\n\n", "x\" f=1\n"};
    for (size_t i = 0; i < sizeof evil / sizeof *evil; i++) {
        gw_lp_tag t = {evil[i], evil[i]};
        gw_lp_field f[] = {{.key = evil[i], .type = GW_LP_STRING, .s = evil[i]},
                           {.key = "v", .type = GW_LP_FLOAT, .f = 1}};
        gw_lp_point p = {evil[i], &t, 1, f, 2, 9};
        int n = fmt(&p, GW_LP_NS, NULL);
        assert_true(n > 0);
        assert_int_equal(count_nl(out), 1);
        assert_int_equal(out[n - 1], '\n');
        assert_null(strchr(out, '\r'));
        assert_true(out[0] != '#');
    }
}

static void test_nonfinite(void **st)
{
    (void)st;
    gw_lp_skips sk = {0};
    gw_lp_field f[] = {{.key = "a", .type = GW_LP_FLOAT, .f = NAN},
                       {.key = "b", .type = GW_LP_FLOAT, .f = 3.25},
                       {.key = "c", .type = GW_LP_FLOAT, .f = INFINITY},
                       {.key = "d", .type = GW_LP_FLOAT, .f = -INFINITY}};
    gw_lp_point p = {"m", NULL, 0, f, 4, 1};
    fmt(&p, GW_LP_US, &sk);
    assert_string_equal(out, "m b=3.25 1\n");
    assert_int_equal(sk.nonfinite, 3);
    gw_lp_point q = {"m", NULL, 0, f, 1, 1};
    assert_int_equal(gw_lp_format(out, sizeof out, &q, GW_LP_US, &sk), GW_EINVAL);
    assert_int_equal(sk.nonfinite, 4);
}

static void test_reserved_and_empty(void **st)
{
    (void)st;
    gw_lp_skips sk = {0};
    gw_lp_tag t[] = {{"time", "x"}, {"", "y"}, {"e", ""}, {"ok", "1"}, {"_measurement", "z"}};
    gw_lp_field f[] = {{.key = "time", .type = GW_LP_FLOAT, .f = 1},
                       {.key = "_field", .type = GW_LP_FLOAT, .f = 1},
                       {.key = "", .type = GW_LP_FLOAT, .f = 1},
                       {.key = "v", .type = GW_LP_INT, .i = INT64_MIN}};
    gw_lp_point p = {"m", t, 5, f, 4, 1};
    fmt(&p, GW_LP_US, &sk);
    assert_string_equal(out, "m,ok=1 v=-9223372036854775808i 1\n");
    assert_int_equal(sk.bad_key, 7);
}

static void test_floats(void **st)
{
    (void)st;
    double vals[] = {0.1,    1e300,  -2.5e-300, 123456789.125, 0.0,   -0.0,  1.0 / 3.0,
                     3.6,    -12.5,  0.001,     1700,          1e-5,  1e15,  9007199254740992.0,
                     0.1 + 0.2, 5e-324};
    const char *want[] = {"0.1",    "1e+300", "-2.5e-300", "123456789.125", "0",
                          "-0",     "0.3333333333333333", "3.6", "-12.5", "0.001",
                          "1700",   "0.00001", "1000000000000000", "9007199254740992",
                          "0.30000000000000004", "4.94065645841247e-324"};
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        gw_lp_field f = {.key = "v", .type = GW_LP_FLOAT, .f = vals[i]};
        gw_lp_point p = {"m", NULL, 0, &f, 1, 0};
        fmt(&p, GW_LP_US, NULL);
        char exp[64];
        snprintf(exp, sizeof exp, "m v=%s 0\n", want[i]);
        assert_string_equal(out, exp);
    }
}

/* Format v as a field and read the text back: the same bits, and text the 1.x grammar
 * takes as a float (digits, one point, an exponent only in the rare form). */
static void assert_round_trip(double v)
{
    if (!isfinite(v))
        return; /* nextafter(DBL_MAX, inf) */
    gw_lp_field f = {.key = "v", .type = GW_LP_FLOAT, .f = v};
    gw_lp_point p = {"m", NULL, 0, &f, 1, 0};
    int n = fmt(&p, GW_LP_US, NULL);
    assert_true(n > 0);
    assert_true(strncmp(out, "m v=", 4) == 0);
    char *end;
    double back = strtod(out + 4, &end);
    if (memcmp(&back, &v, sizeof v) != 0)
        fail_msg("%.17g formatted as %s", v, out);
    assert_string_equal(end, " 0\n");
    assert_true(strlen(out + 4) - 3 <= 24); /* never longer than %.17g with exponent */
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}

static void test_float_round_trip(void **st)
{
    (void)st;
    const double edges[] = {0.0, -0.0, DBL_MIN, -DBL_MIN, DBL_MAX, -DBL_MAX, DBL_TRUE_MIN,
                            DBL_EPSILON, 1.0, -1.0, 0.1, 0.2, 0.3, 0.7, 1e-7, 1e16, 1e17,
                            1e22, 1e23, 123456789012345678.0, 9007199254740991.0,
                            9007199254740992.0, 9007199254740994.0, 4503599627370495.5,
                            0.5, 2.5e-16, 1.7976931348623157e308, 2.2250738585072009e-308};
    for (size_t i = 0; i < sizeof edges / sizeof *edges; i++) {
        assert_round_trip(edges[i]);
        assert_round_trip(nextafter(edges[i], INFINITY));
        assert_round_trip(nextafter(edges[i], -INFINITY));
    }
    for (int i = 0; i < 200000; i++) {
        /* Any finite bit pattern. */
        uint64_t bits = rnd();
        double v;
        memcpy(&v, &bits, sizeof v);
        if (isfinite(v))
            assert_round_trip(v);
        /* Sensor-like: an integer scaled by a power of ten, and its neighbours (which
         * have no short decimal form and must leave the fast path correctly). */
        int64_t m = (int64_t)(rnd() % 2000000001ULL) - 1000000000;
        static const double scale[] = {1, 10, 100, 1000, 1e4, 1e5, 1e6, 1e7, 1e9, 1e12};
        double sv = (double)m / scale[rnd() % 10];
        assert_round_trip(sv);
        assert_round_trip(nextafter(sv, INFINITY));
        /* Any magnitude with a random mantissa. */
        assert_round_trip(ldexp((double)(rnd() >> 11), (int)(rnd() % 200) - 150));
    }
}

static void test_series_then_line(void **st)
{
    (void)st;
    gw_lp_tag tags[] = {{"device", "mh 1,x=y"}, {"empty", ""}, {"time", "r"}, {"gw", "名"}};
    gw_lp_field f[] = {{.key = "tilt", .type = GW_LP_FLOAT, .f = 12.5},
                       {.key = "n", .type = GW_LP_INT, .i = INT64_MIN},
                       {.key = "bad", .type = GW_LP_FLOAT, .f = NAN},
                       {.key = "s", .type = GW_LP_STRING, .s = "a\"b\n"}};
    gw_lp_point p = {"#man hole", tags, 4, f, 4, 1700000000123456};
    gw_lp_skips a = {0}, b = {0};
    char whole[512], series[256], line[512];
    int n = gw_lp_format(whole, sizeof whole, &p, GW_LP_MS, &a);
    assert_true(n > 0);
    int sn = gw_lp_format_series(series, sizeof series, p.measurement, tags, 4, &b);
    assert_true(sn > 0);
    assert_int_equal(series[sn - 1], ' ');
    int ln = gw_lp_format_line(line, sizeof line, series, (size_t)sn, f, 4, p.ts_us, GW_LP_MS, &b);
    assert_int_equal(ln, n);
    assert_memory_equal(line, whole, (size_t)n);
    assert_int_equal(a.bad_key, b.bad_key);
    assert_int_equal(a.nonfinite, b.nonfinite);
    /* Too small, no field, a series without its separator. */
    for (size_t cap = 0; cap < (size_t)n; cap += 7)
        assert_int_equal(gw_lp_format_line(line, cap, series, (size_t)sn, f, 4, p.ts_us, GW_LP_MS,
                                                           NULL),
                         GW_EFULL);
    assert_int_equal(gw_lp_format_line(line, sizeof line, series, (size_t)sn, &f[2], 1, 1,
                                       GW_LP_MS, NULL), GW_EINVAL);
    assert_int_equal(gw_lp_format_line(line, sizeof line, series, (size_t)sn - 1, f, 1, 1,
                                       GW_LP_MS, NULL), GW_EINVAL);
    assert_int_equal(gw_lp_format_series(series, sizeof series, "", tags, 1, NULL), GW_EINVAL);
    assert_int_equal(gw_lp_format_series(series, 3, "manhole", tags, 1, NULL), GW_EFULL);
}

static void test_precision(void **st)
{
    (void)st;
    assert_int_equal(gw_lp_timestamp(1700000000123456, GW_LP_NS), 1700000000123456000);
    assert_int_equal(gw_lp_timestamp(1700000000123456, GW_LP_US), 1700000000123456);
    assert_int_equal(gw_lp_timestamp(1700000000123456, GW_LP_MS), 1700000000123);
    assert_int_equal(gw_lp_timestamp(1700000000123456, GW_LP_S), 1700000000);
    assert_int_equal(gw_lp_timestamp(-1, GW_LP_MS), -1);
    assert_int_equal(gw_lp_timestamp(-1000001, GW_LP_S), -2);
    assert_int_equal(gw_lp_timestamp(INT64_MAX, GW_LP_NS), INT64_MAX);
    gw_lp_precision pr;
    assert_int_equal(gw_lp_precision_parse("ms", &pr), 0);
    assert_int_equal(pr, GW_LP_MS);
    assert_int_equal(gw_lp_precision_parse("h", &pr), GW_EINVAL);
    assert_int_equal(gw_lp_precision_parse(NULL, &pr), GW_EINVAL);
    assert_string_equal(gw_lp_precision_param(GW_LP_US, 1), "u");
    assert_string_equal(gw_lp_precision_param(GW_LP_NS, 1), "n");
    assert_string_equal(gw_lp_precision_param(GW_LP_US, 2), "us");
    assert_string_equal(gw_lp_precision_param(GW_LP_S, 2), "s");
    gw_lp_field f = {.key = "v", .type = GW_LP_BOOL, .b = 1};
    gw_lp_point p = {"m", NULL, 0, &f, 1, 1500};
    fmt(&p, GW_LP_MS, NULL);
    assert_string_equal(out, "m v=true 1\n");
    fmt(&p, GW_LP_NS, NULL);
    assert_string_equal(out, "m v=true 1500000\n");
}

static void test_buffer_full(void **st)
{
    (void)st;
    gw_lp_field f = {.key = "value", .type = GW_LP_FLOAT, .f = 1};
    gw_lp_point p = {"m", NULL, 0, &f, 1, 12};
    const char *want = "m value=1 12\n";
    char small[32];
    for (size_t cap = 0; cap < strlen(want); cap++)
        assert_int_equal(gw_lp_format(small, cap, &p, GW_LP_US, NULL), GW_EFULL);
    assert_int_equal(gw_lp_format(small, strlen(want), &p, GW_LP_US, NULL), (int)strlen(want));
    assert_memory_equal(small, want, strlen(want));
}

static void test_utf8(void **st)
{
    (void)st;
    gw_lp_tag t = {"名", "污水井盖 1"};
    gw_lp_field f = {.key = "s", .type = GW_LP_STRING, .s = "ok\xff\xc3(\xe6\xb1\xa1\xed\xa0\x80"};
    gw_lp_point p = {"井", &t, 1, &f, 1, 1};
    fmt(&p, GW_LP_US, NULL);
    assert_string_equal(out, "井,名=污水井盖\\ 1 s=\"ok?\?(污?\?\?\" 1\n");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_measurement_escaping),
        cmocka_unit_test(test_tag_and_key_escaping),
        cmocka_unit_test(test_string_field_escaping),
        cmocka_unit_test(test_control_chars_in_identifiers),
        cmocka_unit_test(test_backslashes),
        cmocka_unit_test(test_injection_attempts),
        cmocka_unit_test(test_nonfinite),
        cmocka_unit_test(test_reserved_and_empty),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_float_round_trip),
        cmocka_unit_test(test_series_then_line),
        cmocka_unit_test(test_precision),
        cmocka_unit_test(test_buffer_full),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
