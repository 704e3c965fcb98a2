/* Topic patterns with a named segment: compile errors, broker-equivalent matching and
 * capture of the named level. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "alloc.h"
#include "error.h"
#include "mqtt/topic.h"

static int match(const char *pattern, const char *topic, char *key, size_t keylen)
{
    gw_topic_pattern p;
    char err[128];
    assert_int_equal(gw_topic_pattern_compile(pattern, &p, err, sizeof err), 0);
    gw_topic_capture cap;
    int m = gw_topic_pattern_match(&p, topic, strlen(topic), &cap);
    if (key) {
        key[0] = '\0';
        if (m && cap.value) {
            assert_true(cap.len < keylen);
            memcpy(key, cap.value, cap.len);
            key[cap.len] = '\0';
        }
    }
    gw_topic_pattern_free(&p);
    return m;
}

static void test_compile_filter(void **state)
{
    (void)state;
    gw_topic_pattern p;
    char err[128];
    assert_int_equal(gw_topic_pattern_compile("application/+/device/{dev_eui}/event/up", &p,
                                              err, sizeof err), 0);
    assert_string_equal(p.filter, "application/+/device/+/event/up");
    assert_string_equal(p.name, "dev_eui");
    assert_int_equal(p.named_level, 3);
    assert_int_equal(p.n_levels, 6);
    gw_topic_pattern_free(&p);

    assert_int_equal(gw_topic_pattern_compile("city/sensors/json", &p, err, sizeof err), 0);
    assert_string_equal(p.filter, "city/sensors/json");
    assert_int_equal(p.named_level, -1);
    assert_string_equal(p.name, "");
    gw_topic_pattern_free(&p);

    assert_int_equal(gw_topic_pattern_compile("v3/{id}/#", &p, err, sizeof err), 0);
    assert_string_equal(p.filter, "v3/+/#");
    gw_topic_pattern_free(&p);

    /* empty levels are legal MQTT */
    assert_int_equal(gw_topic_pattern_compile("/a//b/", &p, err, sizeof err), 0);
    assert_string_equal(p.filter, "/a//b/");
    assert_int_equal(p.n_levels, 5);
    gw_topic_pattern_free(&p);
}

static void test_compile_errors(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",           "a/#/b",        "a/b#",     "a+/b",       "a/{}/c",     "a/{x y}",
        "a/{x}{y}",   "a/x{y}",       "a/{x}/{y}", "a/{x",       "a/x}",       "a/\x01",
        "{abcdefghijklmnopqrstuvwxyz0123456789}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gw_topic_pattern p;
        char err[128] = "";
        int rc = gw_topic_pattern_compile(bad[i], &p, err, sizeof err);
        if (rc != GW_EINVAL)
            fail_msg("pattern \"%s\" accepted", bad[i]);
        assert_true(strlen(err) > 0);
        assert_null(p.filter);
        gw_topic_pattern_free(&p); /* safe after a failed compile */
    }
    gw_topic_pattern p;
    assert_int_equal(gw_topic_pattern_compile(NULL, &p, NULL, 0), GW_EINVAL);

    char big[1100];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(gw_topic_pattern_compile(big, &p, NULL, 0), GW_EINVAL);

    char deep[200] = "";
    for (int i = 0; i < 40; i++)
        strcat(deep, "a/");
    strcat(deep, "a");
    assert_int_equal(gw_topic_pattern_compile(deep, &p, NULL, 0), GW_EINVAL);
}

static void test_match_named(void **state)
{
    (void)state;
    char key[64];
    assert_true(match("application/+/device/{dev_eui}/event/up",
                      "application/7/device/24e124713b100001/event/up", key, sizeof key));
    assert_string_equal(key, "24e124713b100001");
    assert_false(match("application/+/device/{dev_eui}/event/up",
                       "application/7/device/24e124713b100001/event/join", key, sizeof key));
    assert_false(match("application/+/device/{dev_eui}/event/up",
                       "application/7/device/24e1/extra/event/up", key, sizeof key));
    assert_false(match("application/+/device/{dev_eui}/event/up",
                       "application/7/device/24e1/event", key, sizeof key));
    assert_false(match("application/+/device/{dev_eui}/event/up",
                       "application/7/device/24e1/event/up/more", key, sizeof key));
    /* empty named level matches like "+" and captures "" */
    assert_true(match("a/{k}/b", "a//b", key, sizeof key));
    assert_string_equal(key, "");
    /* named first and last */
    assert_true(match("{k}", "dev1", key, sizeof key));
    assert_string_equal(key, "dev1");
    assert_true(match("x/{k}", "x/dev2", key, sizeof key));
    assert_string_equal(key, "dev2");
    assert_true(match("{k}/#", "dev3/a/b/c", key, sizeof key));
    assert_string_equal(key, "dev3");
}

static void test_match_wildcards(void **state)
{
    (void)state;
    assert_true(match("a/b", "a/b", NULL, 0));
    assert_false(match("a/b", "a/bc", NULL, 0));
    assert_false(match("a/b", "a/b/", NULL, 0));
    assert_false(match("a/b", "a", NULL, 0));
    assert_true(match("a/+", "a/x", NULL, 0));
    assert_true(match("a/+", "a/", NULL, 0));
    assert_false(match("a/+", "a", NULL, 0));
    assert_false(match("a/+", "a/x/y", NULL, 0));
    assert_true(match("a/#", "a", NULL, 0));
    assert_true(match("a/#", "a/", NULL, 0));
    assert_true(match("a/#", "a/x/y/z", NULL, 0));
    assert_false(match("a/#", "ab", NULL, 0));
    assert_true(match("#", "anything/at/all", NULL, 0));
    assert_true(match("+/+", "/", NULL, 0));
    assert_true(match("/+", "/x", NULL, 0));
    /* "$" topics are not matched by a leading wildcard, but are by a literal */
    assert_false(match("#", "$SYS/broker/uptime", NULL, 0));
    assert_false(match("+/broker/uptime", "$SYS/broker/uptime", NULL, 0));
    assert_false(match("{k}/broker/uptime", "$SYS/broker/uptime", NULL, 0));
    assert_true(match("$SYS/#", "$SYS/broker/uptime", NULL, 0));
}

static void test_match_not_terminated(void **state)
{
    (void)state;
    gw_topic_pattern p;
    assert_int_equal(gw_topic_pattern_compile("d/{id}/up", &p, NULL, 0), 0);
    /* topic bytes with garbage after topic_len, and an embedded NUL */
    const char buf[] = "d/dev9/upXXXX";
    gw_topic_capture cap;
    assert_int_equal(gw_topic_pattern_match(&p, buf, 9, &cap), 1);
    assert_int_equal(cap.len, 4);
    assert_memory_equal(cap.value, "dev9", 4);
    assert_int_equal(gw_topic_pattern_match(&p, buf, 8, &cap), 0);
    const char nul[] = {'d', '/', 'a', '\0', 'b', '/', 'u', 'p'};
    assert_int_equal(gw_topic_pattern_match(&p, nul, sizeof nul, &cap), 1);
    assert_int_equal(cap.len, 3);
    assert_int_equal(gw_topic_pattern_match(&p, "", 0, &cap), 0);
    assert_int_equal(gw_topic_pattern_match(NULL, "d/x/up", 6, &cap), 0);
    gw_topic_pattern_free(&p);
}

static void test_level_safe(void **state)
{
    (void)state;
    assert_true(gw_topic_level_is_safe("mh-0001", 7));
    assert_true(gw_topic_level_is_safe("req.42:a_b", 10));
    assert_false(gw_topic_level_is_safe("", 0));
    assert_false(gw_topic_level_is_safe("a/b", 3));
    assert_false(gw_topic_level_is_safe("a+", 2));
    assert_false(gw_topic_level_is_safe("a#", 2));
    assert_false(gw_topic_level_is_safe("a b", 3));
    assert_false(gw_topic_level_is_safe("\xe4\xb8\xad", 3));
    char long_id[66];
    memset(long_id, 'a', 65);
    assert_false(gw_topic_level_is_safe(long_id, 65));
    assert_true(gw_topic_level_is_safe(long_id, 64));
}

static void test_alloc_failure(void **state)
{
    (void)state;
    for (long n = 0; n < 3; n++) {
        gw_topic_pattern p;
        gw_alloc_fail_after(n);
        int rc = gw_topic_pattern_compile("a/{b}/c", &p, NULL, 0);
        gw_alloc_fail_after(-1);
        if (rc == 0)
            gw_topic_pattern_free(&p);
        else
            assert_int_equal(rc, GW_ENOMEM);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compile_filter),     cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_match_named),        cmocka_unit_test(test_match_wildcards),
        cmocka_unit_test(test_match_not_terminated), cmocka_unit_test(test_level_safe),
        cmocka_unit_test(test_alloc_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
