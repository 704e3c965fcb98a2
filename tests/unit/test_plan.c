/* Read plans: golden tables (points in, reads out), the gap and size limits, and the
 * split of a read refused with exception 02/03 that the plan remembers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "modbus/plan.h"
#include "error.h"

static gw_profile *g_prof;
static gw_plan *g_plan;
static void expect_locs(const gw_plan *p);

/* Build a profile from compact point specs "table:address:type[:count]" and plan it. */
static gw_plan *plan_of(int max_gap, const char *extra_top, const char *const *specs, size_t n)
{
    char buf[16384];
    size_t o = (size_t)snprintf(buf, sizeof buf, "{%s\"points\":[", extra_top ? extra_top : "");
    for (size_t i = 0; i < n; i++) {
        char table[16], type[16];
        unsigned addr, count = 0;
        int k = sscanf(specs[i], "%15[a-z]:%u:%15[a-z0-9]:%u", table, &addr, type, &count);
        assert_true(k >= 3);
        o += (size_t)snprintf(buf + o, sizeof buf - o,
                              "%s{\"field\":\"f%zu\",\"table\":\"%s\",\"address\":%u,\"type\":\"%s\"%s",
                              i ? "," : "", i, table, addr, type, k == 4 ? ",\"count\":" : "");
        if (k == 4)
            o += (size_t)snprintf(buf + o, sizeof buf - o, "%u", count);
        o += (size_t)snprintf(buf + o, sizeof buf - o, "}");
    }
    snprintf(buf + o, sizeof buf - o, "]}");
    cJSON *j = cJSON_Parse(buf);
    assert_non_null(j);
    gw_cfgerr e = {0};
    gw_plan_free(g_plan);
    gw_profile_free(g_prof);
    g_plan = NULL;
    g_prof = NULL;
    int rc = gw_profile_parse("t.json", j, &e, &g_prof);
    for (size_t i = 0; i < e.n; i++)
        fprintf(stderr, "%s\n", e.lines[i]);
    assert_int_equal(rc, 0);
    gw_cfgerr_free(&e);
    cJSON_Delete(j);
    assert_int_equal(gw_plan_build(g_prof, max_gap, &g_plan), 0);
    expect_locs(g_plan);
    return g_plan;
}

/* Expected reads as "table:address:count" strings. */
static void expect_reads(const gw_plan *p, const char *const *want, size_t n)
{
    char got[4096] = "", exp[4096] = "";
    for (size_t i = 0; i < p->n_reads; i++) {
        char r[48];
        snprintf(r, sizeof r, "%s:%u:%u ", gw_mb_table_name(p->reads[i].table),
                 (unsigned)p->reads[i].address, (unsigned)p->reads[i].count);
        strcat(got, r);
    }
    for (size_t i = 0; i < n; i++) {
        strcat(exp, want[i]);
        strcat(exp, " ");
    }
    assert_string_equal(got, exp);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* The cached locations (what a poll cycle reads) agree with gw_plan_locate and point at
 * the point's own address inside its read. */
static void expect_locs(const gw_plan *p)
{
    for (size_t i = 0; i < p->profile->n_points; i++) {
        const gw_profile_point *pt = &p->profile->points[i];
        size_t r, off;
        assert_int_equal(gw_plan_locate(p, p->point_span[i], &r, &off), 0);
        const gw_plan_loc *l = &p->point_loc[i];
        assert_int_equal(l->read, r);
        assert_int_equal(l->word, p->reads[r].data_off + off);
        assert_int_equal(l->avail, p->reads[r].count - off);
        assert_int_equal(p->reads[r].address + off, pt->address);
        assert_true(l->avail >= pt->count);
        if (!pt->has_dp) {
            assert_int_equal(p->dp_loc[i].read, GW_PLAN_NOLOC);
            continue;
        }
        assert_int_equal(gw_plan_locate(p, p->dp_span[i], &r, &off), 0);
        assert_int_equal(p->dp_loc[i].read, r);
        assert_int_equal(p->dp_loc[i].word, p->reads[r].data_off + off);
        assert_int_equal(p->reads[r].address + off, pt->dp_address);
    }
}

static void test_adjacent_and_gap(void **state)
{
    (void)state;
    static const char *const pts[] = {"holding:0:u16", "holding:1:u16", "holding:2:f32",
                                      "holding:10:u16", "holding:19:u16", "holding:40:u16"};
    /* gap 8: 4..9 is a hole of 6 -> merged; 11..18 a hole of 8 -> merged; 20..39 -> new read */
    static const char *const want8[] = {"holding:0:20", "holding:40:1"};
    expect_reads(plan_of(8, NULL, pts, N(pts)), want8, N(want8));
    static const char *const want0[] = {"holding:0:4", "holding:10:1", "holding:19:1", "holding:40:1"};
    expect_reads(plan_of(0, NULL, pts, N(pts)), want0, N(want0));
    static const char *const want5[] = {"holding:0:4", "holding:10:1", "holding:19:1", "holding:40:1"};
    expect_reads(plan_of(5, NULL, pts, N(pts)), want5, N(want5));
    static const char *const want6[] = {"holding:0:11", "holding:19:1", "holding:40:1"};
    expect_reads(plan_of(6, NULL, pts, N(pts)), want6, N(want6));
}

static void test_tables_and_order(void **state)
{
    (void)state;
    /* Unsorted points on four tables: one read per table (coil/discrete gaps count in
     * bits, 16 per register of gap). */
    static const char *const pts[] = {"input:5:u16", "coil:0:bool", "holding:3:u16",
                                      "discrete:7:bool", "input:0:u16", "coil:100:bool",
                                      "coil:300:bool", "discrete:0:bool", "holding:3:i16"};
    static const char *const want[] = {"coil:0:101", "coil:300:1", "discrete:0:8",
                                       "holding:3:1", "input:0:6"};
    expect_reads(plan_of(8, NULL, pts, N(pts)), want, N(want));
    /* point -> read mapping */
    size_t r, off;
    assert_int_equal(gw_plan_locate(g_plan, g_plan->point_span[0], &r, &off), 0);
    assert_int_equal(r, 4);
    assert_int_equal(off, 5);
    assert_int_equal(gw_plan_locate(g_plan, g_plan->point_span[5], &r, &off), 0);
    assert_int_equal(r, 0);
    assert_int_equal(off, 100);
    /* data offsets are consecutive */
    assert_int_equal(g_plan->reads[1].data_off, 101);
    assert_int_equal(g_plan->data_words, 101 + 1 + 8 + 1 + 6);
}

static void test_limits(void **state)
{
    (void)state;
    /* 130 consecutive u16: 125 + 5 */
    static const char *pts[130];
    static char bufs[130][32];
    for (int i = 0; i < 130; i++) {
        snprintf(bufs[i], sizeof bufs[i], "input:%d:u16", i);
        pts[i] = bufs[i];
    }
    static const char *const want[] = {"input:0:125", "input:125:5"};
    expect_reads(plan_of(8, NULL, pts, 130), want, N(want));
    /* a f32 straddling the 125 boundary moves whole to the next read */
    static const char *const pts2[] = {"holding:0:u16", "holding:124:f32"};
    static const char *const want2[] = {"holding:0:1", "holding:124:2"};
    expect_reads(plan_of(125, NULL, pts2, N(pts2)), want2, N(want2));
    /* profile limit (a slow 2400-baud meter) */
    static const char *const pts3[] = {"input:0:f32", "input:6:f32", "input:12:f32"};
    static const char *const want3[] = {"input:0:8", "input:12:2"};
    expect_reads(plan_of(8, "\"max_read_registers\":10,", pts3, N(pts3)), want3, N(want3));
    /* 2000 bits per coil read */
    static const char *const pts4[] = {"coil:0:bool", "coil:1999:bool", "coil:2000:bool"};
    static const char *const want4[] = {"coil:0:2000", "coil:2000:1"};
    expect_reads(plan_of(125, NULL, pts4, N(pts4)), want4, N(want4));
    /* profile max_gap overrides the bus's */
    static const char *const pts5[] = {"holding:0:u16", "holding:3:u16"};
    static const char *const want5[] = {"holding:0:1", "holding:3:1"};
    expect_reads(plan_of(8, "\"max_gap\":1,", pts5, N(pts5)), want5, N(want5));
    /* strings and overlapping points */
    static const char *const pts6[] = {"holding:10:string:8", "holding:12:u16", "holding:17:u32"};
    static const char *const want6[] = {"holding:10:9"};
    expect_reads(plan_of(0, NULL, pts6, N(pts6)), want6, N(want6));
}

static void test_real_profiles(void **state)
{
    (void)state;
    /* SDM120 map: 0..37 (7 floats), 70..79 (5 floats), 342..345 with gap 8 */
    static const char *const pts[] = {"input:0:f32", "input:6:f32", "input:12:f32", "input:18:f32",
                                      "input:24:f32", "input:30:f32", "input:36:f32", "input:70:f32",
                                      "input:72:f32", "input:74:f32", "input:76:f32", "input:78:f32",
                                      "input:342:f32", "input:344:f32"};
    static const char *const want[] = {"input:0:38", "input:70:10", "input:342:4"};
    expect_reads(plan_of(8, NULL, pts, N(pts)), want, N(want));
    /* and with a gap of 32 the first two merge (70 - 38 = 32) */
    static const char *const want32[] = {"input:0:80", "input:342:4"};
    expect_reads(plan_of(32, NULL, pts, N(pts)), want32, N(want32));
}

static void test_decimal_register_span(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"points\":[{\"field\":\"p\",\"table\":\"input\",\"address\":4,\"type\":\"i16\","
                           "\"decimal_register\":{\"table\":\"holding\",\"address\":3}}]}");
    gw_cfgerr e = {0};
    gw_profile *p = NULL;
    assert_int_equal(gw_profile_parse("t.json", j, &e, &p), 0);
    gw_plan *pl = NULL;
    assert_int_equal(gw_plan_build(p, 8, &pl), 0);
    static const char *const want[] = {"holding:3:1", "input:4:1"};
    expect_reads(pl, want, N(want));
    size_t r, off;
    assert_int_equal(gw_plan_locate(pl, pl->dp_span[0], &r, &off), 0);
    assert_int_equal(r, 0);
    expect_locs(pl);
    assert_int_equal(pl->dp_loc[0].read, 0);
    assert_int_equal(pl->point_loc[0].read, 1);
    gw_plan_free(pl);
    gw_profile_free(p);
    cJSON_Delete(j);
    gw_cfgerr_free(&e);
}

static void test_split_on_exception(void **state)
{
    (void)state;
    /* A device implements 0..3 and 10..13 only; with gap 8 the plan asks 0..13 in one
     * read, which the device refuses (exception 02). */
    static const char *const pts[] = {"holding:0:u32", "holding:2:u32", "holding:10:u16",
                                      "holding:11:u16", "holding:12:u32", "holding:40:u16"};
    gw_plan *p = plan_of(8, NULL, pts, N(pts));
    static const char *const before[] = {"holding:0:14", "holding:40:1"};
    expect_reads(p, before, N(before));
    expect_locs(p);
    assert_int_equal(p->point_loc[5].word, 14);
    /* cut at the widest hole (4..9) */
    assert_int_equal(gw_plan_split(p, 0), 0);
    static const char *const after[] = {"holding:0:4", "holding:10:4", "holding:40:1"};
    expect_reads(p, after, N(after));
    expect_locs(p); /* the cache follows the split: point 5 moved from word 14 to 8 */
    assert_int_equal(p->point_loc[5].word, 8);
    assert_int_equal(p->point_loc[4].avail, 2);
    assert_int_equal(p->reads[0].splits, 1);
    /* remembered: the plan stays split; locations follow */
    size_t r, off;
    assert_int_equal(gw_plan_locate(p, p->point_span[4], &r, &off), 0);
    assert_int_equal(r, 1);
    assert_int_equal(off, 2);
    assert_int_equal(gw_plan_locate(p, p->point_span[5], &r, &off), 0);
    assert_int_equal(r, 2);
    assert_int_equal(p->reads[2].data_off, 8);
    assert_int_equal(p->data_words, 9);
    /* contiguous spans split at the boundary nearest the middle, down to single spans */
    assert_int_equal(gw_plan_split(p, 1), 0);
    static const char *const after2[] = {"holding:0:4", "holding:10:1", "holding:11:3", "holding:40:1"};
    expect_reads(p, after2, N(after2));
    expect_locs(p);
    assert_int_equal(gw_plan_split(p, 2), 0);
    assert_int_equal(gw_plan_split(p, 3), GW_EINVAL); /* 12:2 is one span */
    assert_int_equal(gw_plan_split(p, 4), GW_EINVAL); /* single span */
    assert_int_equal(gw_plan_split(p, 99), GW_EINVAL);
    static const char *const after3[] = {"holding:0:4", "holding:10:1", "holding:11:1",
                                         "holding:12:2", "holding:40:1"};
    expect_reads(p, after3, N(after3));
    expect_locs(p);
    assert_int_equal(gw_plan_requested(p), 9);
}

static void test_split_overlap(void **state)
{
    (void)state;
    /* A string covering 0..7 and a u16 inside it: no cut keeps halves disjoint. */
    static const char *const pts[] = {"holding:0:string:8", "holding:3:u16"};
    gw_plan *p = plan_of(8, NULL, pts, N(pts));
    assert_int_equal(p->n_reads, 1);
    assert_int_equal(gw_plan_split(p, 0), GW_EINVAL);
}

static int teardown(void **state)
{
    (void)state;
    gw_plan_free(g_plan);
    gw_profile_free(g_prof);
    g_plan = NULL;
    g_prof = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_adjacent_and_gap, teardown),
        cmocka_unit_test_teardown(test_tables_and_order, teardown),
        cmocka_unit_test_teardown(test_limits, teardown),
        cmocka_unit_test_teardown(test_real_profiles, teardown),
        cmocka_unit_test_teardown(test_decimal_register_span, teardown),
        cmocka_unit_test_teardown(test_split_on_exception, teardown),
        cmocka_unit_test_teardown(test_split_overlap, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
