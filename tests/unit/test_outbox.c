/* The durable outbox: commit / fetch / ack order, alarm state restore, seq across
 * reopen, corrupt / truncated / foreign stores quarantined, allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "outbox.h"

#include <dirent.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];
static char dbpath[300];

static int setup(void **st)
{
    (void)st;
    snprintf(dir, sizeof dir, "/tmp/test_outbox.XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(dbpath, sizeof dbpath, "%s/outbox.db", dir);
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

static int commit_n(gw_outbox *ob, uint64_t seq, const char *alarm, const char *state)
{
    char id[64], payload[128];
    snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
    snprintf(payload, sizeof payload, "{\"seq\":%llu}", (unsigned long long)seq);
    gw_outbox_event ev = {.seq = seq, .event_id = id, .device_id = "mh-0001",
                          .payload = payload, .payload_len = strlen(payload),
                          .created_us = (int64_t)seq * 1000, .alarm_id = alarm,
                          .alarm_state = state, .alarm_state_len = state ? strlen(state) : 0};
    return gw_outbox_commit(ob, &ev);
}

typedef struct seen {
    uint64_t seq[64];
    char ids[64][32];
    size_t n;
    size_t stop_after;
} seen;

static int on_event(void *ctx, const gw_outbox_event *ev)
{
    seen *s = ctx;
    char want[128];
    snprintf(want, sizeof want, "{\"seq\":%llu}", (unsigned long long)ev->seq);
    assert_int_equal(ev->payload_len, strlen(want));
    assert_memory_equal(ev->payload, want, ev->payload_len);
    assert_string_equal(ev->device_id, "mh-0001");
    assert_int_equal(ev->created_us, (int64_t)ev->seq * 1000);
    snprintf(s->ids[s->n], sizeof s->ids[0], "%s", ev->event_id);
    s->seq[s->n++] = ev->seq;
    return s->stop_after && s->n >= s->stop_after;
}

static void test_commit_fetch_ack(void **st)
{
    (void)st;
    gw_outbox *ob;
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    assert_int_equal(gw_outbox_last_seq(ob), 0);
    for (uint64_t s = 1; s <= 5; s++)
        assert_int_equal(commit_n(ob, s, NULL, NULL), 0);
    assert_int_equal(gw_outbox_last_seq(ob), 5);
    assert_int_equal(commit_n(ob, 5, NULL, NULL), GW_EINVAL);
    assert_int_equal(commit_n(ob, 3, NULL, NULL), GW_EINVAL);
    assert_int_equal(gw_outbox_pending_count(ob), 5);

    seen s = {0};
    assert_int_equal(gw_outbox_fetch(ob, 0, 10, on_event, &s), 5);
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(s.seq[i], i + 1);
    assert_string_equal(s.ids[2], "ev-3");

    memset(&s, 0, sizeof s);
    assert_int_equal(gw_outbox_fetch(ob, 2, 2, on_event, &s), 2);
    assert_int_equal(s.seq[0], 3);
    assert_int_equal(s.seq[1], 4);

    memset(&s, 0, sizeof s);
    s.stop_after = 1;
    assert_int_equal(gw_outbox_fetch(ob, 0, 10, on_event, &s), 1);

    assert_int_equal(gw_outbox_ack(ob, 3), 0);
    assert_int_equal(gw_outbox_ack(ob, 3), 0); /* idempotent */
    assert_int_equal(gw_outbox_ack(ob, 99), 0);
    assert_int_equal(gw_outbox_pending_count(ob), 4);
    memset(&s, 0, sizeof s);
    assert_int_equal(gw_outbox_fetch(ob, 0, 10, on_event, &s), 4);
    assert_int_equal(s.seq[2], 4);

    gw_outbox_stats stt;
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.depth, 4);
    assert_int_equal(stt.commits, 5);
    assert_int_equal(stt.acks, 1);
    assert_int_equal(stt.acked_seq, 3);
    assert_int_equal(stt.bytes, 4 * strlen("{\"seq\":1}"));
    assert_true(stt.commit_us_max > 0);
    assert_int_equal(stt.quarantined, 0);
    gw_outbox_close(ob);
}

typedef struct alarms_seen {
    char ids[8][32];
    char states[8][64];
    int null_state[8];
    uint64_t seq[8];
    size_t n;
} alarms_seen;

static int on_alarm(void *ctx, const char *id, const char *state, size_t len)
{
    alarms_seen *a = ctx;
    snprintf(a->ids[a->n], 32, "%s", id);
    snprintf(a->states[a->n], 64, "%.*s", (int)len, state);
    a->n++;
    return 0;
}

static int on_pub(void *ctx, const gw_outbox_alarm_pub *p)
{
    alarms_seen *a = ctx;
    snprintf(a->ids[a->n], 32, "%s", p->alarm_id);
    a->null_state[a->n] = p->state == NULL;
    if (p->state)
        snprintf(a->states[a->n], 64, "%.*s", (int)p->state_len, p->state);
    a->seq[a->n] = p->seq;
    a->n++;
    return 0;
}

static void test_alarms_and_reopen(void **st)
{
    (void)st;
    gw_outbox *ob;
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    assert_int_equal(commit_n(ob, 10, "mh-0001/cover-tilt", "{\"s\":\"active\"}"), 0);
    assert_int_equal(commit_n(ob, 11, "mh-0001/gas", "{\"s\":\"active\"}"), 0);
    assert_int_equal(commit_n(ob, 12, "mh-0001/gas", "{\"s\":\"acked\"}"), 0);
    assert_int_equal(commit_n(ob, 13, "mh-0001/cover-tilt", NULL), 0); /* cleared */

    alarms_seen a = {0};
    assert_int_equal(gw_outbox_foreach_alarm(ob, on_alarm, &a), 0);
    assert_int_equal(a.n, 1);
    assert_string_equal(a.ids[0], "mh-0001/gas");
    assert_string_equal(a.states[0], "{\"s\":\"acked\"}");

    memset(&a, 0, sizeof a);
    assert_int_equal(gw_outbox_fetch_alarm_pubs(ob, 10, on_pub, &a), 2);
    assert_string_equal(a.ids[0], "mh-0001/gas");
    assert_int_equal(a.seq[0], 12);
    assert_string_equal(a.ids[1], "mh-0001/cover-tilt");
    assert_true(a.null_state[1]);
    /* A stale ack (seq 11) leaves the newer pending publication. */
    assert_int_equal(gw_outbox_ack_alarm_pub(ob, "mh-0001/gas", 11), 0);
    gw_outbox_stats stt;
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.alarm_pubs, 2);
    assert_int_equal(gw_outbox_ack_alarm_pub(ob, "mh-0001/gas", 12), 0);
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.alarm_pubs, 1);
    assert_int_equal(stt.alarms, 1);

    for (uint64_t s = 10; s <= 13; s++)
        assert_int_equal(gw_outbox_ack(ob, s), 0);
    assert_int_equal(gw_outbox_pending_count(ob), 0);
    gw_outbox_close(ob);

    /* Everything survives a reopen; seq continues even with nothing pending. */
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    assert_int_equal(gw_outbox_last_seq(ob), 13);
    assert_int_equal(commit_n(ob, 13, NULL, NULL), GW_EINVAL);
    assert_int_equal(commit_n(ob, 14, NULL, NULL), 0);
    memset(&a, 0, sizeof a);
    assert_int_equal(gw_outbox_foreach_alarm(ob, on_alarm, &a), 0);
    assert_int_equal(a.n, 1);
    memset(&a, 0, sizeof a);
    assert_int_equal(gw_outbox_fetch_alarm_pubs(ob, 10, on_pub, &a), 1);
    assert_string_equal(a.ids[0], "mh-0001/cover-tilt");
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.acked_seq, 13);
    assert_int_equal(stt.depth, 1);
    gw_outbox_close(ob);
}

static int count_quarantined(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "outbox.db.corrupt-", 18) == 0 && !strstr(e->d_name, "-wal") &&
            !strstr(e->d_name, "-shm"))
            n++;
    closedir(d);
    return n;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void test_garbage_quarantined(void **st)
{
    (void)st;
    char junk[8192];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (char)(i * 7 + 3);
    write_file(dbpath, junk, sizeof junk);
    gw_outbox *ob;
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    gw_outbox_stats stt;
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.quarantined, 1);
    assert_int_equal(stt.depth, 0);
    assert_int_equal(count_quarantined(), 1);
    assert_int_equal(commit_n(ob, 1, NULL, NULL), 0);
    gw_outbox_close(ob);
    /* The fresh store opens cleanly afterwards. */
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.quarantined, 0);
    assert_int_equal(stt.depth, 1);
    gw_outbox_close(ob);
}

static void test_truncated_quarantined(void **st)
{
    (void)st;
    gw_outbox *ob;
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    /* Large payloads so the file has many pages (overflow chains) to lose. */
    static char big[3000];
    memset(big, 'x', sizeof big - 1);
    for (uint64_t s = 1; s <= 200; s++) {
        gw_outbox_event ev = {.seq = s, .event_id = "e", .device_id = "d", .payload = big,
                              .payload_len = sizeof big - 1, .created_us = 1};
        assert_int_equal(gw_outbox_commit(ob, &ev), 0);
    }
    gw_outbox_close(ob);
    struct stat sb;
    assert_int_equal(stat(dbpath, &sb), 0);
    assert_true(sb.st_size > 100000);
    assert_int_equal(truncate(dbpath, sb.st_size / 2), 0);

    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    gw_outbox_stats stt;
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.quarantined, 1);
    assert_int_equal(stt.depth, 0);
    assert_int_equal(gw_outbox_last_seq(ob), 0);
    gw_outbox_close(ob);
    assert_int_equal(count_quarantined(), 1);
}

static void test_foreign_schema_quarantined(void **st)
{
    (void)st;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "CREATE TABLE events(x); PRAGMA user_version=1",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    gw_outbox *ob;
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    gw_outbox_stats stt;
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.quarantined, 1);
    assert_int_equal(commit_n(ob, 1, NULL, NULL), 0);
    gw_outbox_close(ob);

    /* A future schema version is not ours either. */
    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version=7", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.quarantined, 1);
    gw_outbox_close(ob);
    assert_int_equal(count_quarantined(), 2);
}

static void test_empty_file_is_fine(void **st)
{
    (void)st;
    write_file(dbpath, "", 0);
    gw_outbox *ob;
    assert_int_equal(gw_outbox_open(dir, &ob), 0);
    gw_outbox_stats stt;
    gw_outbox_stats_get(ob, &stt);
    assert_int_equal(stt.quarantined, 0);
    gw_outbox_close(ob);
}

static void test_unwritable_dir(void **st)
{
    (void)st;
    gw_outbox *ob = (gw_outbox *)1;
    assert_int_equal(gw_outbox_open("/nonexistent/dir/x", &ob), GW_EIO);
    assert_null(ob);
}

static int count_cb(void *ctx, const gw_outbox_event *ev)
{
    (void)ev;
    (*(int *)ctx)++;
    return 0;
}

static void test_alloc_failures(void **st)
{
    (void)st;
    int completed = 0;
    for (long n = 0; n < 500 && !completed; n++) {
        char sub[300];
        snprintf(sub, sizeof sub, "%s/a%ld", dir, n);
        mkdir(sub, 0700);
        gw_alloc_fail_after(n);
        gw_outbox *ob = NULL;
        int rc = gw_outbox_open(sub, &ob);
        if (rc == 0) {
            char id[16];
            snprintf(id, sizeof id, "e%ld", n);
            gw_outbox_event ev = {.seq = 1, .event_id = id, .device_id = "d",
                                  .payload = "{}", .payload_len = 2, .created_us = 1,
                                  .alarm_id = "d/r", .alarm_state = "{}", .alarm_state_len = 2};
            int c = gw_outbox_commit(ob, &ev);
            assert_true(c == 0 || c == GW_ENOMEM);
            int cnt = 0;
            int f = gw_outbox_fetch(ob, 0, 10, count_cb, &cnt);
            assert_true(f >= 0 || f == GW_ENOMEM);
            int g = gw_outbox_foreach_alarm(ob, on_alarm, &(alarms_seen){0});
            assert_true(g == 0 || g == GW_ENOMEM);
            if (c == 0 && f == 1 && cnt == 1 && g == 0)
                completed = 1;
            gw_outbox_close(ob);
        } else {
            assert_int_equal(rc, GW_ENOMEM);
            assert_null(ob);
        }
        gw_alloc_fail_after(-1);
    }
    assert_true(completed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_commit_fetch_ack, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarms_and_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_quarantined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_quarantined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_foreign_schema_quarantined, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_file_is_fine, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
