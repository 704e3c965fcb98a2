/* Test driver for tests/integration/43-outbox-kill9.sh.
 *
 *   outbox_crash run DIR      open DIR/outbox.db, print "open last_seq=S",
 *                             "open pending=P", "open quarantined=Q", then commit events seq S+1, S+2, ... in a
 *                             loop (every third one also acked, every fifth one carrying
 *                             an alarm-state change), printing "C seq" after each commit
 *                             returned 0 and "a seq" before each ack, with one write(2)
 *                             per line so a SIGKILL never loses a printed line.
 *   outbox_crash dump DIR     print "P seq" for every pending event, "last_seq=S",
 *                             "quarantined=Q", "alarms=N".
 */
#include "error.h"
#include "log.h"
#include "outbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void say(const char *tag, unsigned long long v)
{
    char b[64];
    int n = snprintf(b, sizeof b, "%s%llu\n", tag, v);
    if (write(1, b, (size_t)n) != n)
        exit(3);
}

static int print_pending(void *ctx, const gw_outbox_event *ev)
{
    uint64_t *last = ctx;
    char want[300];
    snprintf(want, sizeof want, "{\"seq\":%llu,\"pad\":\"%0*d\"}", (unsigned long long)ev->seq,
             (int)(ev->seq % 200), 0);
    if (ev->payload_len != strlen(want) || memcmp(ev->payload, want, ev->payload_len) != 0) {
        printf("BAD payload for seq %llu\n", (unsigned long long)ev->seq);
        exit(4);
    }
    printf("P %llu\n", (unsigned long long)ev->seq);
    *last = ev->seq;
    return 0;
}

static int count_alarm(void *ctx, const char *id, const char *st, size_t len)
{
    (void)id, (void)st, (void)len;
    (*(int *)ctx)++;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    gw_log_set_level(GW_LOG_WARN);
    gw_outbox *ob;
    int rc = gw_outbox_open(argv[2], &ob);
    if (rc) {
        fprintf(stderr, "open: %s\n", gw_strerror(rc));
        return 1;
    }
    gw_outbox_stats st;
    gw_outbox_stats_get(ob, &st);
    if (strcmp(argv[1], "dump") == 0) {
        uint64_t after = 0;
        for (;;) {
            int n = gw_outbox_fetch(ob, after, 1000, print_pending, &after);
            if (n <= 0)
                break;
        }
        int alarms = 0;
        gw_outbox_foreach_alarm(ob, count_alarm, &alarms);
        printf("last_seq=%llu\nquarantined=%llu\nalarms=%d\n",
               (unsigned long long)gw_outbox_last_seq(ob), (unsigned long long)st.quarantined,
               alarms);
        gw_outbox_close(ob);
        return 0;
    }
    say("open last_seq=", st.last_seq);
    say("open pending=", st.depth);
    say("open quarantined=", st.quarantined);
    for (uint64_t seq = st.last_seq + 1;; seq++) {
        char id[48], payload[300], alarm[32], state[64];
        snprintf(id, sizeof id, "evt-%llu", (unsigned long long)seq);
        snprintf(payload, sizeof payload, "{\"seq\":%llu,\"pad\":\"%0*d\"}",
                 (unsigned long long)seq, (int)(seq % 200), 0);
        snprintf(alarm, sizeof alarm, "mh-%04llu/cover-tilt", (unsigned long long)(seq % 7));
        snprintf(state, sizeof state, "{\"state\":\"active\",\"seq\":%llu}",
                 (unsigned long long)seq);
        int with_alarm = seq % 5 == 0;
        gw_outbox_event ev = {.seq = seq, .event_id = id, .device_id = "mh-0001",
                              .payload = payload, .payload_len = strlen(payload),
                              .created_us = 1,
                              .alarm_id = with_alarm ? alarm : NULL,
                              .alarm_state = with_alarm && seq % 2 ? state : NULL,
                              .alarm_state_len = strlen(state)};
        rc = gw_outbox_commit(ob, &ev);
        if (rc) {
            fprintf(stderr, "commit %llu: %s\n", (unsigned long long)seq, gw_strerror(rc));
            return 1;
        }
        say("C ", seq);
        if (seq % 3 == 0) {
            say("a ", seq);
            if (gw_outbox_ack(ob, seq) != 0)
                return 1;
        }
    }
}
