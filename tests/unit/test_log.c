/* log: level filtering, one line per call, secrets masked, journald prefix, and the
 * rate-limited complaint (first logged, repeats suppressed with doubling intervals up to
 * the cap and counted, "recovered" once). Output is captured through gw_log_set_fd on a
 * temp file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int cap_fd = -1;
static char cap_buf[65536];

static int setup(void **state)
{
    (void)state;
    char path[] = "/tmp/citygate-test-log.XXXXXX";
    cap_fd = mkstemp(path);
    if (cap_fd < 0)
        return -1;
    unlink(path);
    gw_log_set_fd(cap_fd);
    gw_log_set_journal(0);
    gw_log_set_level(GW_LOG_DEBUG);
    gw_log_clear_secrets();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gw_log_set_fd(2);
    gw_log_set_journal(-1);
    gw_log_set_level(GW_LOG_INFO);
    gw_log_clear_secrets();
    close(cap_fd);
    cap_fd = -1;
    return 0;
}

/* Everything written since the last call, NUL-terminated (the file is then emptied). */
static const char *captured(void)
{
    off_t end = lseek(cap_fd, 0, SEEK_CUR);
    assert_true(end >= 0 && (size_t)end < sizeof cap_buf);
    ssize_t n = pread(cap_fd, cap_buf, (size_t)end, 0);
    assert_int_equal(n, end);
    cap_buf[n] = '\0';
    assert_int_equal(ftruncate(cap_fd, 0), 0);
    lseek(cap_fd, 0, SEEK_SET);
    return cap_buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static int count_of(const char *s, const char *needle)
{
    int n = 0;
    size_t l = strlen(needle);
    for (const char *p = s; (p = strstr(p, needle)) != NULL; p += l)
        n++;
    return n;
}

static void test_parse_level(void **state)
{
    (void)state;
    gw_log_level l;
    const struct {
        const char *name;
        gw_log_level level;
    } ok[] = {{"error", GW_LOG_ERROR},
              {"warn", GW_LOG_WARN},
              {"notice", GW_LOG_NOTICE},
              {"info", GW_LOG_INFO},
              {"debug", GW_LOG_DEBUG}};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        assert_int_equal(gw_log_parse_level(ok[i].name, &l), 0);
        assert_int_equal(l, ok[i].level);
    }
    assert_int_equal(gw_log_parse_level("verbose", &l), GW_EINVAL);
    assert_int_equal(gw_log_parse_level("", &l), GW_EINVAL);
    assert_int_equal(gw_log_parse_level("INFO ", &l), GW_EINVAL);
    assert_int_equal(gw_log_parse_level(NULL, &l), GW_EINVAL);
}

static void test_line_format(void **state)
{
    (void)state;
    gw_warn("modbus", "device %s offline (%d)", "mh-0001", 3);
    const char *out = captured();
    assert_int_equal(count_lines(out), 1);
    /* "2026-06-01T08:30:05.120Z warn   modbus: device mh-0001 offline (3)\n" */
    assert_int_equal(strlen(out) > 25, 1);
    assert_true(out[4] == '-' && out[10] == 'T' && out[23] == 'Z' && out[24] == ' ');
    assert_non_null(strstr(out, " warn "));
    assert_non_null(strstr(out, "modbus: device mh-0001 offline (3)\n"));
}

static void test_journal_prefix(void **state)
{
    (void)state;
    gw_log_set_journal(1);
    gw_error("influx", "write failed");
    gw_info("gateway", "started");
    gw_log_set_journal(0);
    assert_string_equal(captured(), "<3>influx: write failed\n<6>gateway: started\n");
}

static void test_level_filtering(void **state)
{
    (void)state;
    gw_log_set_level(GW_LOG_WARN);
    assert_int_equal(gw_log_get_level(), GW_LOG_WARN);
    gw_debug("t", "debug-line");
    gw_info("t", "info-line");
    gw_notice("t", "notice-line");
    gw_warn("t", "warn-line");
    gw_error("t", "error-line");
    const char *out = captured();
    assert_int_equal(count_lines(out), 2);
    assert_null(strstr(out, "debug-line"));
    assert_null(strstr(out, "info-line"));
    assert_null(strstr(out, "notice-line"));
    assert_non_null(strstr(out, "warn-line"));
    assert_non_null(strstr(out, "error-line"));

    gw_log_set_level(GW_LOG_ERROR);
    gw_warn("t", "warn-line");
    assert_string_equal(captured(), "");
    gw_log_set_level(GW_LOG_DEBUG);
    gw_debug("t", "debug-line");
    assert_non_null(strstr(captured(), "debug-line"));
}

static void test_newlines_neutralised(void **state)
{
    (void)state;
    /* A payload with newlines must not forge a second record. */
    gw_warn("mqtt", "bad payload 'a\nfake 2026-01-01T00:00:00.000Z error x: forged\r\nb'");
    const char *out = captured();
    assert_int_equal(count_lines(out), 1);
    assert_null(strchr(out, '\r'));
    assert_non_null(strstr(out, "'a fake 2026"));
    assert_non_null(strstr(out, "forged  b'"));
    /* Newlines in the area are neutralised too. */
    gw_warn("mq\ntt", "x");
    assert_int_equal(count_lines(captured()), 1);
}

static void test_long_line_truncated_whole(void **state)
{
    (void)state;
    static char big[8192];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    gw_info("t", "%s", big);
    const char *out = captured();
    assert_int_equal(count_lines(out), 1);
    size_t len = strlen(out);
    assert_true(len > 1000 && len <= 2048);
    assert_int_equal(out[len - 1], '\n');
}

static void test_secrets_masked(void **state)
{
    (void)state;
    gw_log_add_secret("s3cr3t-pass");
    gw_log_add_secret("tok_ABCDEF");
    gw_log_add_secret("ab"); /* too short: ignored, or every line would be garbled */
    gw_log_add_secret("");
    gw_log_add_secret(NULL);
    gw_info("mqtt", "connect user=u password=s3cr3t-pass token=tok_ABCDEF again s3cr3t-pass");
    const char *out = captured();
    assert_null(strstr(out, "s3cr3t"));
    assert_null(strstr(out, "tok_ABC"));
    assert_int_equal(count_of(out, "***"), 3);
    assert_non_null(strstr(out, "password=*** token=*** again ***"));
    gw_info("t", "about tab");
    assert_non_null(strstr(captured(), "about tab"));

    /* Registering the same secret twice is harmless. */
    gw_log_add_secret("s3cr3t-pass");
    gw_info("t", "[s3cr3t-pass]");
    assert_non_null(strstr(captured(), "[***]"));

    /* A secret in the area is masked as well. */
    gw_info("s3cr3t-pass", "x");
    assert_null(strstr(captured(), "s3cr3t"));

    gw_log_clear_secrets();
    gw_info("t", "[s3cr3t-pass]");
    assert_non_null(strstr(captured(), "[s3cr3t-pass]"));
}

/* A secret that looks like the mask must not make the masker loop forever. */
static void test_secret_equal_to_mask(void **state)
{
    (void)state;
    gw_log_add_secret("***");
    gw_log_add_secret("****");
    gw_info("t", "a *** b **** c *****");
    const char *out = captured();
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, "t: a *** b *** c "));
}

/* A secret cut by the line-length limit must not leak its beginning either. */
static void test_secret_cut_at_line_end(void **state)
{
    (void)state;
    gw_log_add_secret("TOPSECRETVALUE");
    static char pad[4096];
    for (size_t cut = 1990; cut < 2040; cut++) {
        memset(pad, 'x', cut);
        pad[cut] = '\0';
        gw_info("t", "%sTOPSECRETVALUE", pad);
        const char *out = captured();
        assert_int_equal(count_lines(out), 1);
        if (strstr(out, "TOPS") || strstr(out, "TOP\n"))
            fail_msg("secret prefix leaked with %zu bytes of padding", cut);
    }
}

/* ---- complaints -------------------------------------------------------------------- */

static void test_complain_first_logs_repeats_suppressed(void **state)
{
    (void)state;
    gw_complaint c = GW_COMPLAINT_INIT;
    /* base 1 s, max 8 s: lines at 0, 1, 3, 7, 15, 23, 31 s (intervals 1, 2, 4, 8, 8, 8). */
    const int64_t t0 = 1000000;
    int lines = 0;
    int64_t logged_at[16];
    uint64_t reported_suppressed[16];
    for (int64_t t = 0; t <= 31000; t += 100) {
        int64_t before_supp = (int64_t)c.suppressed;
        int r = gw_complain(&c, t0 + t, 1000, 8000, GW_LOG_WARN, "modbus", "device %s silent",
                            "mh-1");
        const char *out = captured();
        if (r) {
            assert_true(lines < 16);
            assert_int_equal(count_lines(out), 1);
            assert_non_null(strstr(out, "modbus: device mh-1 silent"));
            reported_suppressed[lines] = (uint64_t)before_supp;
            if (before_supp) {
                char want[64];
                snprintf(want, sizeof want, "repeated %lld times", (long long)before_supp);
                assert_non_null(strstr(out, want));
            }
            logged_at[lines++] = t;
            assert_int_equal(c.suppressed, 0);
        } else {
            assert_string_equal(out, "");
        }
    }
    const int64_t want_at[] = {0, 1000, 3000, 7000, 15000, 23000, 31000};
    assert_int_equal(lines, 7);
    for (int i = 0; i < lines; i++)
        assert_int_equal(logged_at[i], want_at[i]);
    /* At 100 ms steps, the suppressed count before each line is the gap / 100 - 1. */
    assert_int_equal(reported_suppressed[0], 0);
    assert_int_equal(reported_suppressed[1], 9);
    assert_int_equal(reported_suppressed[2], 19);
    assert_int_equal(reported_suppressed[3], 39);
    assert_int_equal(reported_suppressed[4], 79);
    assert_int_equal(reported_suppressed[5], 79);
    assert_int_equal(c.total, 311);
    assert_int_equal(c.interval_ms, 8000);

    /* Recovery: one notice line naming the count, then the object is fresh. */
    assert_int_equal(gw_complain_clear(&c, "modbus", "device %s answers again", "mh-1"), 1);
    const char *out = captured();
    assert_int_equal(count_lines(out), 1);
    assert_non_null(strstr(out, " notice "));
    assert_non_null(strstr(out, "modbus: device mh-1 answers again"));
    assert_non_null(strstr(out, "recovered"));
    assert_non_null(strstr(out, "311"));
    assert_int_equal(c.interval_ms, 0);
    assert_int_equal(c.total, 0);
    assert_int_equal(c.suppressed, 0);

    /* A second clear says nothing. */
    assert_int_equal(gw_complain_clear(&c, "modbus", "again"), 0);
    assert_string_equal(captured(), "");

    /* The next episode starts over: logged at once, base interval again. */
    assert_int_equal(gw_complain(&c, t0 + 50000, 1000, 8000, GW_LOG_WARN, "modbus", "down"), 1);
    assert_null(strstr(captured(), "repeated"));
    assert_int_equal(gw_complain(&c, t0 + 50999, 1000, 8000, GW_LOG_WARN, "modbus", "down"), 0);
    assert_int_equal(gw_complain(&c, t0 + 51000, 1000, 8000, GW_LOG_WARN, "modbus", "down"), 1);
    captured();
}

static void test_complain_clear_without_complaint_is_silent(void **state)
{
    (void)state;
    gw_complaint c = GW_COMPLAINT_INIT;
    assert_int_equal(gw_complain_clear(&c, "t", "recovered?"), 0);
    gw_complaint z;
    memset(&z, 0, sizeof z);
    assert_int_equal(gw_complain_clear(&z, "t", "recovered?"), 0);
    assert_string_equal(captured(), "");
}

static void test_complain_respects_level(void **state)
{
    (void)state;
    gw_log_set_level(GW_LOG_WARN);
    gw_complaint c = GW_COMPLAINT_INIT;
    gw_complain(&c, 1000, 1000, 8000, GW_LOG_INFO, "t", "quiet complaint");
    assert_string_equal(captured(), "");
    gw_complain(&c, 1000, 1000, 8000, GW_LOG_ERROR, "t", "loud complaint");
    gw_complain(&c, 2500, 1000, 8000, GW_LOG_ERROR, "t", "loud complaint");
    assert_int_equal(count_lines(captured()), 1);
}

static void test_complain_secret_masked(void **state)
{
    (void)state;
    gw_log_add_secret("hunter2-pw");
    gw_complaint c = GW_COMPLAINT_INIT;
    gw_complain(&c, 1, 1000, 1000, GW_LOG_WARN, "mqtt", "auth failed for pw hunter2-pw\nx");
    const char *out = captured();
    assert_int_equal(count_lines(out), 1);
    assert_null(strstr(out, "hunter2"));
    gw_complain_clear(&c, "mqtt", "connected with hunter2-pw");
    assert_null(strstr(captured(), "hunter2"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_journal_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newlines_neutralised, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_truncated_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secrets_masked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_equal_to_mask, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_cut_at_line_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complain_first_logs_repeats_suppressed, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_complain_clear_without_complaint_is_silent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_complain_respects_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_complain_secret_masked, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
