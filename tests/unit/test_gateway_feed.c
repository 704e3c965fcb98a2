/* The gateway's upstream feed (gateway.c: upstream_fetch / upstream_acked): events and
 * their retained alarm states leave the outbox in one combined sequence (event n = 2n,
 * its alarm state = 2n+1) while the engine keeps committing. Every committed event must
 * be emitted exactly once and the outbox must drain: an alarm state committed between
 * the feed's two outbox reads must not be emitted ahead of its own event (the publisher's
 * cursor would then pass the event, which stayed in the outbox for good).
 *
 * The feed is static in gateway.c, so this test compiles gateway.c into itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "../../gateway/gateway.c"

#include <stdlib.h>

#define N_EVENTS 3000
#define WINDOW 64

static char dir[256];

static int setup(void **st)
{
    (void)st;
    /* On tmpfs when there is one: fast commits make the committer race the feed often. */
    snprintf(dir, sizeof dir, "%s/test_gateway_feed.XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
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

typedef struct committer {
    gw_outbox *ob;
    atomic_int done;
    int failed;
} committer;

static void *commit_thread(void *arg)
{
    committer *c = arg;
    for (uint64_t seq = 1; seq <= N_EVENTS; seq++) {
        char id[32], alarm[32], payload[64], state[64];
        snprintf(id, sizeof id, "ev-%llu", (unsigned long long)seq);
        snprintf(alarm, sizeof alarm, "mh-%llu/flip", (unsigned long long)(seq % 8));
        snprintf(payload, sizeof payload, "{\"seq\":%llu}", (unsigned long long)seq);
        snprintf(state, sizeof state, "{\"state\":%llu}", (unsigned long long)seq);
        gw_outbox_event ev = {.seq = seq, .event_id = id, .device_id = "mh",
                              .payload = payload, .payload_len = strlen(payload),
                              .created_us = (int64_t)seq, .alarm_id = alarm,
                              .alarm_state = state, .alarm_state_len = strlen(state)};
        if (gw_outbox_commit(c->ob, &ev) != 0) {
            c->failed = 1;
            break;
        }
        /* A feed that is caught up is the one that can be overtaken between its reads. */
        struct timespec pause = {0, (long)(seq % 7) * 20000};
        nanosleep(&pause, NULL);
    }
    atomic_store(&c->done, 1);
    return NULL;
}

typedef struct sink {
    uint64_t cursor;
    uint64_t got[WINDOW];
    size_t n;
    unsigned char *event_seen; /* [N_EVENTS + 1] */
    int out_of_order, duplicate;
} sink;

static void sink_emit(void *ectx, const gw_upstream_msg *m)
{
    sink *s = ectx;
    if (m->seq <= s->cursor)
        s->out_of_order++;
    s->cursor = m->seq;
    s->got[s->n++] = m->seq;
    if (m->seq % 2 == 0) {
        uint64_t seq = m->seq / 2;
        if (seq <= N_EVENTS && s->event_seen[seq]++)
            s->duplicate++;
    }
}

/* One publisher round: fetch a window after the cursor, then ack all of it in order. */
static int round_trip(gw_gateway *gw, sink *s)
{
    s->n = 0;
    int n = upstream_fetch(gw, s->cursor, WINDOW, sink_emit, s);
    assert_true(n >= 0);
    assert_int_equal((size_t)n, s->n);
    for (size_t i = 0; i < s->n; i++)
        upstream_acked(gw, s->got[i]);
    return n;
}

static void test_feed_drains_while_the_engine_commits(void **st)
{
    (void)st;
    gw_gateway gw = {0};
    assert_int_equal(gw_outbox_open(dir, &gw.outbox), 0);
    committer c = {.ob = gw.outbox};
    sink s = {.event_seen = calloc(N_EVENTS + 1, 1)};
    assert_non_null(s.event_seen);

    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, commit_thread, &c), 0);
    while (!atomic_load(&c.done))
        round_trip(&gw, &s);
    pthread_join(t, NULL);
    assert_int_equal(c.failed, 0);
    while (round_trip(&gw, &s) > 0)
        ;

    size_t missing = 0;
    uint64_t first_missing = 0;
    for (uint64_t seq = 1; seq <= N_EVENTS; seq++)
        if (!s.event_seen[seq] && missing++ == 0)
            first_missing = seq;
    if (missing)
        print_error("%zu events never emitted (first: seq %llu)\n", missing,
                    (unsigned long long)first_missing);
    assert_int_equal(missing, 0);
    assert_int_equal(s.duplicate, 0);
    assert_int_equal(s.out_of_order, 0);
    assert_int_equal(gw_outbox_pending_count(gw.outbox), 0);
    gw_outbox_stats os;
    gw_outbox_stats_get(gw.outbox, &os);
    assert_int_equal(os.alarm_pubs, 0);
    assert_int_equal(gw.n_win, 0);

    free(s.event_seen);
    gw_free(gw.win);
    gw_outbox_close(gw.outbox);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_feed_drains_while_the_engine_commits, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
