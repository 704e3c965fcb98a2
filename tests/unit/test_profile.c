/* Device profiles: parsing and its error lines, and decode/encode of every type and byte
 * order against known vectors (incl. the device examples of domain.md §3). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "modbus/profile.h"
#include "error.h"

static gw_profile *g_prof;

/* Parse a profile with one point given as JSON object text. */
static const gw_profile_point *pt_of(const char *point_json)
{
    char buf[2048];
    snprintf(buf, sizeof buf, "{\"name\":\"t\",\"points\":[%s]}", point_json);
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    gw_cfgerr e = {0};
    gw_profile_free(g_prof);
    g_prof = NULL;
    int rc = gw_profile_parse("t.json", j, &e, &g_prof);
    if (rc != 0)
        for (size_t i = 0; i < e.n; i++)
            fprintf(stderr, "%s\n", e.lines[i]);
    assert_int_equal(rc, 0);
    cJSON_Delete(j);
    gw_cfgerr_free(&e);
    return &g_prof->points[0];
}

/* Parse text expecting failure; returns the errors joined by '\n' (static). */
static const char *errs_of(const char *profile_json)
{
    static char out[4096];
    cJSON *j = cJSON_Parse(profile_json);
    assert_non_null(j);
    gw_cfgerr e = {0};
    gw_profile *p = NULL;
    int rc = gw_profile_parse("dev.json", j, &e, &p);
    assert_int_equal(rc, GW_ECONFIG);
    assert_null(p);
    out[0] = '\0';
    for (size_t i = 0; i < e.n; i++) {
        strncat(out, e.lines[i], sizeof out - strlen(out) - 2);
        strcat(out, "\n");
    }
    cJSON_Delete(j);
    gw_cfgerr_free(&e);
    return out;
}

static gw_point_value dec(const gw_profile_point *pt, const uint16_t *w, size_t n, int dp)
{
    gw_point_value v;
    assert_int_equal(gw_profile_decode_point(pt, w, n, dp, &v), 0);
    return v;
}

static void test_f32_orders(void **state)
{
    (void)state;
    /* 230.5 = 0x43668000 */
    static const struct { const char *order; uint16_t w[2]; } cases[] = {
        {"ABCD", {0x4366, 0x8000}}, {"CDAB", {0x8000, 0x4366}},
        {"BADC", {0x6643, 0x0080}}, {"DCBA", {0x0080, 0x6643}}};
    for (size_t i = 0; i < 4; i++) {
        char j[200];
        snprintf(j, sizeof j, "{\"field\":\"v\",\"table\":\"input\",\"address\":0,\"type\":\"f32\",\"byte_order\":\"%s\"}",
                 cases[i].order);
        gw_point_value v = dec(pt_of(j), cases[i].w, 2, 0);
        assert_int_equal(v.quality, GW_Q_GOOD);
        assert_true(v.value == 230.5);
        /* and back */
        uint16_t out[2] = {0};
        assert_int_equal(gw_profile_encode_point(&g_prof->points[0], &v, 0, out, 2), 0);
        assert_int_equal(out[0], cases[i].w[0]);
        assert_int_equal(out[1], cases[i].w[1]);
    }
}

static void test_device_vectors(void **state)
{
    (void)state;
    /* DDSU666: 43 66 33 34 = 230.2 V (ABCD). */
    uint16_t ddsu[2] = {0x4366, 0x3334};
    gw_point_value v = dec(pt_of("{\"field\":\"v\",\"table\":\"input\",\"address\":8192,\"type\":\"f32\"}"), ddsu, 2, 0);
    /* A float32 reads as the shortest decimal of that float: 0x43663334 is 230.20001,
     * not 230.2000122070312. */
    assert_true(v.value == 230.20001);
    /* Xintai water meter: bytes 1E 85 0B 3F, little-endian float = 0.545 m3/h. */
    uint16_t xt[2] = {0x1E85, 0x0B3F};
    v = dec(pt_of("{\"field\":\"f\",\"table\":\"holding\",\"address\":5,\"type\":\"f32\",\"byte_order\":\"DCBA\"}"), xt, 2, 0);
    assert_true(v.value == 0.54499996); /* 0x3F0B851E: the float next to 0.545 */
    /* PZEM-016 current: u32 low word first, 0.001 A: 0x00012345 = 74565 -> 74.565 A;
     * a <<8 combination (the public-code bug) would give 0x2445 -> 9.285. */
    uint16_t pz[2] = {0x2345, 0x0001};
    v = dec(pt_of("{\"field\":\"i\",\"table\":\"input\",\"address\":1,\"type\":\"u32\",\"byte_order\":\"CDAB\",\"scale\":0.001}"), pz, 2, 0);
    assert_true(v.value == 74.565); /* rounded to the scale's decimals, exactly */
    /* JXBS CO: 0x00BD x 0.1 = 18.9 ppm */
    uint16_t co = 0x00BD;
    v = dec(pt_of("{\"field\":\"co\",\"table\":\"holding\",\"address\":6,\"type\":\"u16\",\"scale\":0.1}"), &co, 1, 0);
    assert_true(v.value == 18.9); /* 189 x 0.1 is 18.900000000000002 unrounded */
    /* Scale, offset and decimal-point register together: 653 x 0.1 - 40 = 25.3; with
     * dp 2, 12345 x 0.1 / 100 = 12.345. */
    uint16_t t = 653;
    v = dec(pt_of("{\"field\":\"t\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\",\"scale\":0.1,\"offset\":-40}"), &t, 1, 0);
    assert_true(v.value == 25.3);
    uint16_t q = 12345;
    v = dec(pt_of("{\"field\":\"q\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\",\"scale\":0.1,\"decimal_register\":{\"table\":\"holding\",\"address\":9}}"), &q, 1, 2);
    assert_true(v.value == 12.345);
}

static void test_int_types(void **state)
{
    (void)state;
    uint16_t w = 0xFFFE;
    gw_point_value v = dec(pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"i16\",\"scale\":0.1}"), &w, 1, 0);
    assert_true(fabs(v.value + 0.2) < 1e-12);
    v = dec(pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\"}"), &w, 1, 0);
    assert_true(v.value == 65534);
    uint16_t sw = 0xFEFF; /* BADC on 16 bits swaps the bytes */
    v = dec(pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"i16\",\"byte_order\":\"BADC\"}"), &sw, 1, 0);
    assert_true(v.value == -2);

    uint16_t i32[2] = {0xFFFE, 0x7960}; /* -100000 */
    v = dec(pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"i32\"}"), i32, 2, 0);
    assert_true(v.value == -100000);
    v = dec(pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"u32\"}"), i32, 2, 0);
    assert_true(v.value == 4294867296.0);

    static const struct { const char *o; uint16_t w[4]; } c64[] = {
        {"ABCD", {0x0102, 0x0304, 0x0506, 0x0708}}, {"CDAB", {0x0708, 0x0506, 0x0304, 0x0102}},
        {"BADC", {0x0201, 0x0403, 0x0605, 0x0807}}, {"DCBA", {0x0807, 0x0605, 0x0403, 0x0201}}};
    for (size_t i = 0; i < 4; i++) {
        char j[200];
        snprintf(j, sizeof j, "{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"u64\",\"byte_order\":\"%s\"}", c64[i].o);
        v = dec(pt_of(j), c64[i].w, 4, 0);
        assert_true(v.raw == UINT64_C(0x0102030405060708));
        snprintf(j, sizeof j, "{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"f64\",\"byte_order\":\"%s\"}", c64[i].o);
        gw_point_value in = {.type = GW_V_NUMBER, .value = 230.5};
        uint16_t out[4];
        const gw_profile_point *pt = pt_of(j);
        assert_int_equal(gw_profile_encode_point(pt, &in, 0, out, 4), 0);
        v = dec(pt, out, 4, 0);
        assert_true(v.value == 230.5);
        assert_true(v.raw == UINT64_C(0x406CD00000000000));
    }
    uint16_t neg[4] = {0xFFFF, 0xFFFF, 0xFFFF, 0xFFFB};
    v = dec(pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"i64\"}"), neg, 4, 0);
    assert_true(v.value == -5);
}

static void test_invalid_markers(void **state)
{
    (void)state;
    const gw_profile_point *pt = pt_of("{\"field\":\"t\",\"table\":\"holding\",\"address\":0,\"type\":\"i16\","
                                       "\"scale\":0.1,\"invalid\":[32767,\"0x8000\",-1]}");
    uint16_t w = 0x7FFF;
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_OUT_OF_RANGE);
    w = 0x8000;
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_OUT_OF_RANGE);
    w = 0xFFFF; /* -1 as raw pattern */
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_OUT_OF_RANGE);
    w = 0x7FFE;
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_GOOD);

    /* NaN and Inf floats are always invalid; listed values too. */
    pt = pt_of("{\"field\":\"f\",\"table\":\"input\",\"address\":0,\"type\":\"f32\",\"invalid\":[-999]}");
    uint16_t nan[2] = {0x7FC0, 0x0000}, inf[2] = {0x7F80, 0x0000}, m999[2] = {0xC479, 0xC000};
    assert_int_equal(dec(pt, nan, 2, 0).quality, GW_Q_OUT_OF_RANGE);
    assert_int_equal(dec(pt, inf, 2, 0).quality, GW_Q_OUT_OF_RANGE);
    assert_int_equal(dec(pt, m999, 2, 0).quality, GW_Q_OUT_OF_RANGE);

    /* min / max on the final value */
    pt = pt_of("{\"field\":\"p\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\",\"scale\":0.01,\"min\":0,\"max\":1.6}");
    w = 161;
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_OUT_OF_RANGE);
    w = 160;
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_GOOD);
}

static void test_scale_offset_dp(void **state)
{
    (void)state;
    const gw_profile_point *pt = pt_of("{\"field\":\"t\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\",\"scale\":0.1,\"offset\":-40}");
    uint16_t w = 650;
    assert_true(fabs(dec(pt, &w, 1, 0).value - 25.0) < 1e-9);

    pt = pt_of("{\"field\":\"p\",\"table\":\"holding\",\"address\":4,\"type\":\"i16\",\"decimal_register\":3}");
    assert_true(pt->has_dp && pt->dp_address == 3 && pt->dp_table == GW_MB_HOLDING);
    w = 1234;
    assert_true(fabs(dec(pt, &w, 1, 2).value - 12.34) < 1e-9);
    assert_true(fabs(dec(pt, &w, 1, 0).value - 1234) < 1e-9);
    assert_int_equal(dec(pt, &w, 1, 10).quality, GW_Q_DECODE_ERROR);
    assert_int_equal(dec(pt, &w, 1, -1).quality, GW_Q_DECODE_ERROR);
    gw_point_value in = {.type = GW_V_NUMBER, .value = 5.67};
    assert_int_equal(gw_profile_encode_point(pt, &in, 2, &w, 1), 0);
    assert_int_equal(w, 567);
    pt = pt_of("{\"field\":\"p\",\"table\":\"input\",\"address\":4,\"type\":\"i16\",\"decimal_register\":{\"table\":\"holding\",\"address\":9}}");
    assert_true(pt->dp_table == GW_MB_HOLDING && pt->dp_address == 9);
}

static void test_bcd_enum_string_bits(void **state)
{
    (void)state;
    const gw_profile_point *pt = pt_of("{\"field\":\"b\",\"table\":\"holding\",\"address\":0,\"type\":\"bcd\"}");
    uint16_t w = 0x1234;
    assert_true(dec(pt, &w, 1, 0).value == 1234);
    w = 0x12A4;
    assert_int_equal(dec(pt, &w, 1, 0).quality, GW_Q_DECODE_ERROR);
    pt = pt_of("{\"field\":\"b\",\"table\":\"holding\",\"address\":0,\"type\":\"bcd\",\"count\":2}");
    uint16_t w2[2] = {0x1234, 0x5678};
    assert_true(dec(pt, w2, 2, 0).value == 12345678);
    gw_point_value in = {.type = GW_V_NUMBER, .value = 90817263};
    assert_int_equal(gw_profile_encode_point(pt, &in, 0, w2, 2), 0);
    assert_int_equal(w2[0], 0x9081);
    assert_int_equal(w2[1], 0x7263);

    pt = pt_of("{\"field\":\"pipe\",\"table\":\"holding\",\"address\":7,\"type\":\"enum\",\"enum\":{\"0x55\":\"empty\",\"170\":\"full\"}}");
    w = 0x55;
    gw_point_value v = dec(pt, &w, 1, 0);
    assert_int_equal(v.type, GW_V_TEXT);
    assert_string_equal(v.text, "empty");
    assert_true(v.value == 0x55);
    w = 0xAA;
    assert_string_equal(dec(pt, &w, 1, 0).text, "full");
    w = 3;
    v = dec(pt, &w, 1, 0);
    assert_int_equal(v.quality, GW_Q_OUT_OF_RANGE);
    assert_string_equal(v.text, "3");
    gw_point_value lab = {.type = GW_V_TEXT};
    strcpy(lab.text, "full");
    assert_int_equal(gw_profile_encode_point(pt, &lab, 0, &w, 1), 0);
    assert_int_equal(w, 0xAA);
    strcpy(lab.text, "leaking");
    assert_int_equal(gw_profile_encode_point(pt, &lab, 0, &w, 1), GW_ENOTFOUND);

    pt = pt_of("{\"field\":\"model\",\"table\":\"holding\",\"address\":0,\"type\":\"string\",\"count\":4}");
    uint16_t s[4] = {0x5344, 0x4D31, 0x3230, 0x0000};
    v = dec(pt, s, 4, 0);
    assert_string_equal(v.text, "SDM120");
    uint16_t bad[4] = {0x5301, 0, 0, 0};
    assert_int_equal(dec(pt, bad, 4, 0).quality, GW_Q_DECODE_ERROR);
    pt = pt_of("{\"field\":\"model\",\"table\":\"holding\",\"address\":0,\"type\":\"string\",\"count\":4,\"byte_order\":\"BADC\"}");
    uint16_t sw[4] = {0x4453, 0x314D, 0x3032, 0x2020};
    assert_string_equal(dec(pt, sw, 4, 0).text, "SDM120");
    strcpy(lab.text, "PZEM16");
    uint16_t out[4];
    assert_int_equal(gw_profile_encode_point(pt, &lab, 0, out, 4), 0);
    assert_string_equal(dec(pt, out, 4, 0).text, "PZEM16");

    pt = pt_of("{\"field\":\"valve_open\",\"table\":\"holding\",\"address\":28,\"type\":\"bit\",\"bit\":3}");
    w = 0x0008;
    v = dec(pt, &w, 1, 0);
    assert_int_equal(v.type, GW_V_BOOL);
    assert_true(v.value == 1);
    w = 0xFFF7;
    assert_true(dec(pt, &w, 1, 0).value == 0);
    /* encode keeps the other bits */
    w = 0x0101;
    gw_point_value on = {.type = GW_V_BOOL, .value = 1};
    assert_int_equal(gw_profile_encode_point(pt, &on, 0, &w, 1), 0);
    assert_int_equal(w, 0x0109);

    pt = pt_of("{\"field\":\"cover_open\",\"table\":\"discrete\",\"address\":0,\"type\":\"bool\"}");
    w = 1;
    assert_true(dec(pt, &w, 1, 0).value == 1);
    w = 0;
    assert_true(dec(pt, &w, 1, 0).value == 0);
}

static void test_round_trip_all(void **state)
{
    (void)state;
    static const char *types[] = {"u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64"};
    static const char *orders[] = {"ABCD", "CDAB", "BADC", "DCBA"};
    static const double vals[] = {0, 1, 123, 32767};
    static const double svals[] = {-1, -32768, -123};
    for (size_t t = 0; t < 8; t++)
        for (size_t o = 0; o < 4; o++) {
            char j[256];
            snprintf(j, sizeof j, "{\"field\":\"x\",\"table\":\"holding\",\"address\":10,\"type\":\"%s\",\"byte_order\":\"%s\",\"scale\":0.5,\"offset\":3}",
                     types[t], orders[o]);
            const gw_profile_point *pt = pt_of(j);
            for (size_t k = 0; k < 4 + (types[t][0] != 'u' ? 3 : 0); k++) {
                double raw = k < 4 ? vals[k] : svals[k - 4];
                gw_point_value in = {.type = GW_V_NUMBER, .value = raw * 0.5 + 3};
                uint16_t w[4] = {0};
                assert_int_equal(gw_profile_encode_point(pt, &in, 0, w, 4), 0);
                gw_point_value out = dec(pt, w, 4, 0);
                assert_true(out.value == in.value);
            }
        }
    /* out of range for the type */
    const gw_profile_point *pt = pt_of("{\"field\":\"x\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\"}");
    gw_point_value big = {.type = GW_V_NUMBER, .value = 70000};
    uint16_t w;
    assert_int_equal(gw_profile_encode_point(pt, &big, 0, &w, 1), GW_EINVAL);
    /* short buffer */
    pt = pt_of("{\"field\":\"x\",\"table\":\"holding\",\"address\":0,\"type\":\"f32\"}");
    gw_point_value v;
    assert_int_equal(gw_profile_decode_point(pt, &w, 1, 0, &v), GW_EINVAL);
}

static void test_register_refs(void **state)
{
    (void)state;
    const gw_profile_point *pt = pt_of("{\"field\":\"a\",\"register\":\"40101\",\"type\":\"u16\"}");
    assert_int_equal(pt->table, GW_MB_HOLDING);
    assert_int_equal(pt->address, 100);
    pt = pt_of("{\"field\":\"a\",\"register\":\"30001\",\"type\":\"f32\"}");
    assert_int_equal(pt->table, GW_MB_INPUT);
    assert_int_equal(pt->address, 0);
    pt = pt_of("{\"field\":\"a\",\"register\":\"465536\",\"type\":\"u16\"}");
    assert_int_equal(pt->address, 65535);
    pt = pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":\"0x2000\",\"type\":\"f32\"}");
    assert_int_equal(pt->address, 0x2000);
    /* a bare number is never reinterpreted */
    pt = pt_of("{\"field\":\"a\",\"table\":\"holding\",\"address\":40001,\"type\":\"u16\"}");
    assert_int_equal(pt->address, 40001);
}

static void test_parse_errors(void **state)
{
    (void)state;
    const char *e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"float\"}]}");
    assert_non_null(strstr(e, "dev.json: points[0].type: unknown type \"float\" (did you mean \"f32\"?)"));
    e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"register\":\"30001\",\"type\":\"u16\"}]}");
    assert_non_null(strstr(e, "dev.json: points[0].register: \"30001\" is a input reference but table is \"holding\""));
    e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\"},"
                "{\"field\":\"a\",\"table\":\"holding\",\"address\":1,\"type\":\"u16\"}]}");
    assert_non_null(strstr(e, "dev.json: points[1].field: duplicate field \"a\""));
    e = errs_of("{\"points\":[{\"field\":\"Bad Name\",\"table\":\"holdng\",\"address\":70000,\"type\":\"u16\",\"scael\":2}]}");
    assert_non_null(strstr(e, "points[0].field: must match"));
    assert_non_null(strstr(e, "points[0].table: must be"));
    assert_non_null(strstr(e, "points[0].address: must be 0..65535"));
    assert_non_null(strstr(e, "points[0].scael: unknown key"));
    e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"coil\",\"address\":0,\"type\":\"u16\"}]}");
    assert_non_null(strstr(e, "points[0].type: a coil holds single bits"));
    e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"address\":65535,\"type\":\"u32\"}]}");
    assert_non_null(strstr(e, "points[0].address: point runs past address 65535"));
    e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"bit\"}]}");
    assert_non_null(strstr(e, "points[0].bit: type bit needs"));
    e = errs_of("{\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"enum\"}]}");
    assert_non_null(strstr(e, "points[0].enum: type enum needs"));
    e = errs_of("{\"points\":[]}");
    assert_non_null(strstr(e, "dev.json: points: required non-empty array"));
    e = errs_of("{\"byte_order\":\"ABDC\",\"max_read_registers\":200,\"points\":[{\"field\":\"a\",\"table\":\"holding\",\"address\":0,\"type\":\"u16\",\"invalid\":[70000]}]}");
    assert_non_null(strstr(e, "dev.json: byte_order: must be"));
    assert_non_null(strstr(e, "dev.json: max_read_registers: must be an integer 1..125"));
    assert_non_null(strstr(e, "points[0].invalid[0]: must be a raw value 0..65535"));
}

static void test_shipped_profiles(void **state)
{
    (void)state;
    /* Every shipped profile in devices/ must parse. */
    static const char *names[] = {"eastron-sdm120", "pzem-016", "chint-ddsu666", "rs485-pressure",
                                  "xintai-water-meter", "gas-detector", "generic-manhole",
                                  "generic-lamp", "generic-water", "generic-gas"};
    char here[512];
    const char *src = getenv("CITYGATE_SRC");
    if (!src) { /* run by hand: the tree this file is in */
        snprintf(here, sizeof here, "%s", __FILE__);
        char *cut = strstr(here, "/tests/unit/");
        if (cut)
            *cut = '\0';
        src = cut ? here : ".";
    }
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[640];
        snprintf(path, sizeof path, "%s/devices/%s.json", src, names[i]);
        gw_cfgerr e = {0};
        gw_profile *p = NULL;
        int rc = gw_profile_load(path, &e, &p);
        for (size_t k = 0; k < e.n; k++)
            fprintf(stderr, "%s\n", e.lines[k]);
        assert_int_equal(rc, 0);
        assert_string_equal(p->name, names[i]);
        gw_profile_free(p);
        gw_cfgerr_free(&e);
    }
}

static int teardown(void **state)
{
    (void)state;
    gw_profile_free(g_prof);
    g_prof = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_f32_orders, teardown),
        cmocka_unit_test_teardown(test_device_vectors, teardown),
        cmocka_unit_test_teardown(test_int_types, teardown),
        cmocka_unit_test_teardown(test_invalid_markers, teardown),
        cmocka_unit_test_teardown(test_scale_offset_dp, teardown),
        cmocka_unit_test_teardown(test_bcd_enum_string_bits, teardown),
        cmocka_unit_test_teardown(test_round_trip_all, teardown),
        cmocka_unit_test_teardown(test_register_refs, teardown),
        cmocka_unit_test_teardown(test_parse_errors, teardown),
        cmocka_unit_test_teardown(test_shipped_profiles, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
