/* The telemetry spool: byte bound, drop-oldest with an exact count, FIFO order, reopen,
 * quarantine of a corrupt file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "spool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/test_spool.XXXXXX");
    assert_non_null(mkdtemp(dir));
    gw_log_set_level(GW_LOG_ERROR);
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd);
}

/* Batch i: `lines` lines of 10 bytes each "m v=%05d\n"-like, body length lines*10. */
static size_t make_batch(char *buf, int i, uint32_t lines)
{
    size_t n = 0;
    for (uint32_t k = 0; k < lines; k++)
        n += (size_t)sprintf(buf + n, "m v=%05d\n", (i * 10 + (int)k) % 100000);
    return n;
}

static void test_order_and_delete(void **st)
{
    (void)st;
    gw_spool *sp;
    assert_int_equal(gw_spool_open(dir, 1 << 20, &sp), 0);
    gw_spool_batch b;
    assert_int_equal(gw_spool_peek(sp, &b), GW_ENOTFOUND);
    char buf[1024];
    for (int i = 0; i < 5; i++) {
        size_t n = make_batch(buf, i, 3);
        assert_int_equal(gw_spool_append(sp, buf, n, 3), 0);
    }
    assert_int_equal(gw_spool_count(sp), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(gw_spool_peek(sp, &b), 0);
        size_t n = make_batch(buf, i, 3);
        assert_int_equal(b.len, n);
        assert_int_equal(b.lines, 3);
        assert_memory_equal(b.data, buf, n);
        assert_int_equal(gw_spool_delete(sp, b.id), 0);
        assert_int_equal(gw_spool_delete(sp, b.id), 0); /* idempotent */
        gw_spool_batch_release(&b);
    }
    gw_spool_stats s;
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.batches, 0);
    assert_int_equal(s.bytes, 0);
    assert_int_equal(s.deleted_lines, 15);
    assert_int_equal(s.appended_lines, 15);
    assert_int_equal(s.dropped_lines, 0);
    gw_spool_close(sp);
}

static void test_bound_drop_oldest_exact(void **st)
{
    (void)st;
    gw_spool *sp;
    /* Room for exactly 10 batches of 5 lines (50 bytes each). */
    assert_int_equal(gw_spool_open(dir, 500, &sp), 0);
    char buf[1024];
    for (int i = 0; i < 37; i++) {
        size_t n = make_batch(buf, i, 5);
        assert_int_equal(n, 50);
        assert_int_equal(gw_spool_append(sp, buf, n, 5), 0);
        gw_spool_stats s;
        gw_spool_stats_get(sp, &s);
        assert_true(s.bytes <= 500);
    }
    gw_spool_stats s;
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.batches, 10);
    assert_int_equal(s.bytes, 500);
    assert_int_equal(s.dropped_batches, 27);
    assert_int_equal(s.dropped_lines, 27 * 5);
    assert_int_equal(s.lines + s.dropped_lines, s.appended_lines);
    /* The survivors are the newest 10, oldest first. */
    gw_spool_batch b;
    assert_int_equal(gw_spool_peek(sp, &b), 0);
    size_t n = make_batch(buf, 27, 5);
    assert_memory_equal(b.data, buf, n);
    gw_spool_batch_release(&b);

    /* A batch of 60 bytes evicts two of 50; one over the whole bound is refused. */
    char big[600];
    memset(big, 'x', sizeof big);
    assert_int_equal(gw_spool_append(sp, big, 60, 1), 0);
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.dropped_lines, 29 * 5);
    assert_int_equal(s.bytes, 8 * 50 + 60);
    assert_int_equal(gw_spool_append(sp, big, 501, 7), GW_EFULL);
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.dropped_lines, 29 * 5 + 7);
    assert_int_equal(s.batches, 9);
    gw_spool_close(sp);
}

static void test_reopen(void **st)
{
    (void)st;
    gw_spool *sp;
    assert_int_equal(gw_spool_open(dir, 1 << 20, &sp), 0);
    char buf[1024];
    for (int i = 0; i < 4; i++) {
        size_t n = make_batch(buf, i, 2);
        assert_int_equal(gw_spool_append(sp, buf, n, 2), 0);
    }
    gw_spool_batch b;
    assert_int_equal(gw_spool_peek(sp, &b), 0);
    assert_int_equal(gw_spool_delete(sp, b.id), 0);
    gw_spool_batch_release(&b);
    gw_spool_close(sp);

    assert_int_equal(gw_spool_open(dir, 1 << 20, &sp), 0);
    gw_spool_stats s;
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.batches, 3);
    assert_int_equal(s.lines, 6);
    assert_int_equal(s.bytes, 3 * 20);
    assert_int_equal(s.quarantined, 0);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(gw_spool_peek(sp, &b), 0);
        size_t n = make_batch(buf, i, 2);
        assert_memory_equal(b.data, buf, n);
        gw_spool_delete(sp, b.id);
        gw_spool_batch_release(&b);
    }
    /* Replace keeps the position and adjusts the counts. */
    assert_int_equal(gw_spool_append(sp, "r 1\nr 2\n", 8, 2), 0);
    assert_int_equal(gw_spool_append(sp, "z 9\n", 4, 1), 0);
    assert_int_equal(gw_spool_peek(sp, &b), 0);
    assert_int_equal(gw_spool_replace(sp, b.id, "r 2\n", 4, 1), 0);
    gw_spool_batch_release(&b);
    assert_int_equal(gw_spool_peek(sp, &b), 0);
    assert_memory_equal(b.data, "r 2\n", 4);
    assert_int_equal(b.lines, 1);
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.lines, 2);
    assert_int_equal(s.bytes, 8);
    gw_spool_delete(sp, b.id);
    gw_spool_batch_release(&b);
    assert_int_equal(gw_spool_peek(sp, &b), 0);
    gw_spool_delete(sp, b.id);
    gw_spool_batch_release(&b);
    /* New ids keep growing after deletions (AUTOINCREMENT): order stays FIFO. */
    assert_int_equal(gw_spool_append(sp, "a 1\n", 4, 1), 0);
    assert_int_equal(gw_spool_append(sp, "b 2\n", 4, 1), 0);
    assert_int_equal(gw_spool_peek(sp, &b), 0);
    assert_memory_equal(b.data, "a 1\n", 4);
    gw_spool_batch_release(&b);
    gw_spool_close(sp);
}

static void test_corrupt_quarantined(void **st)
{
    (void)st;
    char path[300];
    snprintf(path, sizeof path, "%s/spool.db", dir);
    FILE *f = fopen(path, "wb");
    for (int i = 0; i < 5000; i++)
        fputc(i * 13, f);
    fclose(f);
    gw_spool *sp;
    assert_int_equal(gw_spool_open(dir, 1000, &sp), 0);
    gw_spool_stats s;
    gw_spool_stats_get(sp, &s);
    assert_int_equal(s.quarantined, 1);
    assert_int_equal(s.batches, 0);
    assert_int_equal(gw_spool_append(sp, "x 1\n", 4, 1), 0);
    gw_spool_close(sp);
}

static void test_bad_args_and_alloc(void **st)
{
    (void)st;
    gw_spool *sp;
    assert_int_equal(gw_spool_open(dir, 0, &sp), GW_EINVAL);
    int done = 0;
    for (long n = 0; n < 200 && !done; n++) {
        gw_alloc_fail_after(n);
        int rc = gw_spool_open(dir, 1000, &sp);
        if (rc == 0) {
            gw_spool_append(sp, "x 1\n", 4, 1);
            gw_spool_batch b;
            rc = gw_spool_peek(sp, &b);
            assert_true(rc == 0 || rc == GW_ENOMEM);
            if (rc == 0) {
                gw_spool_delete(sp, b.id);
                gw_spool_batch_release(&b);
                done = 1;
            }
            gw_spool_close(sp);
        } else
            assert_int_equal(rc, GW_ENOMEM);
        gw_alloc_fail_after(-1);
    }
    assert_true(done);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_order_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bound_drop_oldest_exact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_quarantined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_args_and_alloc, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
