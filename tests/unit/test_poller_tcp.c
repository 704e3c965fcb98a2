/* The poller's own Modbus TCP request / answer path (gateway/modbus/poller.c tcp_read,
 * do_read) against a scripted fake server on 127.0.0.1: a late answer to an earlier
 * request, answers split byte by byte or two in one segment, a peer closing mid-answer,
 * exceptions, unit ids 0 / 255, a huge MBAP length, coils whose count is not a multiple
 * of 8, and the connection after a reconnect.
 *
 * The device's profile has two reads: holding 0..1 (FC03) and coils 0..9 (FC01). The
 * server answers holding 0 with the number of the request it answers (so a sample shows
 * which request's answer was taken), holding 1 with 0xBEEF, coil i with (i % 3 == 0). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "modbus/poller.h"
#include "queue.h"
#include "sample.h"
#include "timeutil.h"

#define RT_MS 150 /* the bus's response timeout */

typedef enum {
    A_OK = 0,    /* answer at once */
    A_LATE,      /* answer after RT_MS + 60 ms (after the poller gave up) */
    A_HOLD,      /* answer with the next request's answer, in the same segment */
    A_DRIP,      /* one byte per segment, 3 ms apart */
    A_DRIP_SLOW, /* one byte per segment, 30 ms apart: each gap within a 40 ms byte
                  * timeout, the whole answer (>= 300 ms) past RT_MS + 40 */
    A_CLOSE_MID, /* half the answer, then close */
    A_EXC4,      /* exception 04 */
    A_UNIT0,     /* answer with unit id 0 */
    A_UNIT255,   /* answer with unit id 255 */
    A_STALE_HUGE, /* an earlier transaction id with MBAP length 0xFFFF, then the answer */
    A_STALE_EXC, /* an earlier transaction's exception answer, then the answer */
    A_SHORT_EXC, /* exception answer with MBAP length 2 and no exception code */
    A_SILENT,
} action;

typedef struct fake {
    int lfd, port;
    pthread_t th;
    volatile int stop;
    action script[64];
    int n_script;
    int n_req;         /* requests received (server thread; read after joins / sleeps) */
    int n_accepts;
    uint8_t held[300]; /* A_HOLD */
    size_t held_n;
} fake;

static fake F;

static size_t build_answer(const uint8_t *req, int k, uint8_t unit, uint8_t *out)
{
    uint8_t fc = req[7];
    unsigned addr = (unsigned)req[8] << 8 | req[9], cnt = (unsigned)req[10] << 8 | req[11];
    size_t pdu = 0;
    uint8_t *p = out + 7;
    p[pdu++] = fc;
    if (fc == 3 || fc == 4) {
        p[pdu++] = (uint8_t)(2 * cnt);
        for (unsigned i = 0; i < cnt; i++) {
            unsigned v = addr + i == 0 ? (unsigned)k : addr + i == 1 ? 0xBEEF : addr + i;
            p[pdu++] = (uint8_t)(v >> 8);
            p[pdu++] = (uint8_t)v;
        }
    } else {
        unsigned nb = (cnt + 7) / 8;
        p[pdu++] = (uint8_t)nb;
        memset(p + pdu, 0, nb);
        for (unsigned i = 0; i < cnt; i++)
            if ((addr + i) % 3 == 0)
                p[pdu + i / 8] |= (uint8_t)(1u << (i % 8));
        /* padding bits set: a reader must ignore them */
        for (unsigned i = cnt; i < nb * 8; i++)
            p[pdu + i / 8] |= (uint8_t)(1u << (i % 8));
        pdu += nb;
    }
    out[0] = req[0];
    out[1] = req[1];
    out[2] = out[3] = 0;
    out[4] = (uint8_t)((pdu + 1) >> 8);
    out[5] = (uint8_t)(pdu + 1);
    out[6] = unit;
    return 7 + pdu;
}

static void send_all(int fd, const uint8_t *b, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

/* 12 request bytes, or -1 on close / stop. */
static int read_req(int fd, uint8_t *req)
{
    size_t got = 0;
    while (got < 12) {
        if (F.stop)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        ssize_t n = recv(fd, req + got, 12 - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static void serve(int fd)
{
    uint8_t req[12], a[300];
    while (!F.stop && read_req(fd, req) == 0) {
        int k = F.n_req++;
        action act = k < F.n_script ? F.script[k] : A_OK;
        size_t n = build_answer(req, k, req[6], a);
        switch (act) {
        case A_OK:
            if (F.held_n) { /* two answers in one segment */
                memcpy(F.held + F.held_n, a, n);
                send_all(fd, F.held, F.held_n + n);
                F.held_n = 0;
            } else {
                send_all(fd, a, n);
            }
            break;
        case A_LATE:
            usleep((RT_MS + 60) * 1000);
            send_all(fd, a, n);
            break;
        case A_HOLD:
            memcpy(F.held, a, n);
            F.held_n = n;
            break;
        case A_DRIP:
        case A_DRIP_SLOW:
            for (size_t i = 0; i < n; i++) {
                send_all(fd, a + i, 1);
                usleep(act == A_DRIP ? 3000 : 30000);
            }
            break;
        case A_CLOSE_MID:
            send_all(fd, a, n / 2);
            usleep(10000);
            return;
        case A_EXC4:
            a[7] |= 0x80;
            a[8] = 4;
            a[5] = 3;
            send_all(fd, a, 9);
            break;
        case A_UNIT0:
        case A_UNIT255:
            a[6] = act == A_UNIT0 ? 0 : 255;
            send_all(fd, a, n);
            break;
        case A_STALE_HUGE:
        case A_STALE_EXC: {
            /* two requests back (the first request has tid 1: this is 0xFFFF, across
             * the wrap; 0 is never sent) */
            uint16_t old = (uint16_t)(((unsigned)req[0] << 8 | req[1]) - 2);
            uint8_t s[9] = {(uint8_t)(old >> 8), (uint8_t)old, 0, 0, 0xFF, 0xFF, req[6], 0x83, 4};
            if (act == A_STALE_EXC) {
                s[4] = 0;
                s[5] = 3;
            }
            memcpy(F.held, s, 9);
            memcpy(F.held + 9, a, n);
            send_all(fd, F.held, 9 + n);
            break;
        }
        case A_SHORT_EXC:
            a[7] |= 0x80;
            a[5] = 2;
            send_all(fd, a, 8);
            break;
        case A_SILENT:
            break;
        }
    }
}

static void *server_main(void *arg)
{
    (void)arg;
    while (!F.stop) {
        struct pollfd pfd = {.fd = F.lfd, .events = POLLIN};
        if (poll(&pfd, 1, 20) <= 0)
            continue;
        int fd = accept(F.lfd, NULL, NULL);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        F.n_accepts++;
        serve(fd);
        close(fd);
    }
    return NULL;
}

/* ---- gateway side ---------------------------------------------------------------------- */

typedef struct rig {
    char dir[64];
    gw_config *cfg;
    gw_queue *q;
    gw_poller *p;
} rig;

static void rig_open(rig *r, int any_unit, int unit_id, int retries, int byte_timeout_ms)
{
    memset(&F, 0, sizeof F);
    F.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(F.lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(F.lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(F.lfd, 4), 0);
    socklen_t sl = sizeof sa;
    assert_int_equal(getsockname(F.lfd, (struct sockaddr *)&sa, &sl), 0);
    F.port = ntohs(sa.sin_port);

    snprintf(r->dir, sizeof r->dir, "/tmp/test_poller_tcp.XXXXXX");
    assert_non_null(mkdtemp(r->dir));
    char path[128], cfg[2048];
    snprintf(path, sizeof path, "%s/t.json", r->dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"name\": \"t\", \"points\": ["
          "{\"field\": \"k\", \"table\": \"holding\", \"address\": 0, \"type\": \"u16\"},"
          "{\"field\": \"b\", \"table\": \"holding\", \"address\": 1, \"type\": \"u16\"},"
          "{\"field\": \"c0\", \"table\": \"coil\", \"address\": 0, \"type\": \"bool\"},"
          "{\"field\": \"c8\", \"table\": \"coil\", \"address\": 8, \"type\": \"bool\"},"
          "{\"field\": \"c9\", \"table\": \"coil\", \"address\": 9, \"type\": \"bool\"}]}\n", f);
    fclose(f);
    int n = snprintf(cfg, sizeof cfg,
        "{\"gateway\": {\"id\": \"GW-T\", \"admin_code\": \"500103\", \"data_dir\": \"%s\"},"
        " \"paths\": {\"profiles\": \"%s\", \"rules\": \"%s/none\"},"
        " \"buses\": [{\"id\": \"b\", \"type\": \"tcp\", \"host\": \"127.0.0.1\", \"port\": %d,"
        "   \"response_timeout_ms\": %d, \"byte_timeout_ms\": %d, \"retries\": %d,"
        "   \"reconnect_min_ms\": 10, \"reconnect_max_ms\": 20, \"accept_any_unit_id\": %s}],"
        " \"devices\": [{\"id\": \"d\", \"kind\": \"lamp\", \"interval_ms\": 5000, \"rule_sets\": [],"
        "   \"modbus\": {\"bus\": \"b\", \"unit_id\": %d, \"profile\": \"t\"},"
        "   \"component\": {\"code\": \"5001030118000001\", \"grid\": \"500103001002003\"}}],"
        " \"outputs\": {\"mqtt\": {\"enabled\": false}, \"influxdb\": {\"enabled\": false}},"
        " \"http\": {\"enabled\": false}}",
        r->dir, r->dir, r->dir, F.port, RT_MS, byte_timeout_ms, retries,
        any_unit ? "true" : "false", unit_id);
    assert_true(n > 0 && (size_t)n < sizeof cfg);
    gw_cfgerr e = {0};
    int rc = gw_config_load_mem("t.json", cfg, (size_t)n, &e, &r->cfg);
    if (rc != 0)
        gw_cfgerr_print(&e, 2);
    assert_int_equal(rc, 0);
    gw_cfgerr_free(&e);
    assert_int_equal(gw_queue_new(4096, sizeof(gw_sample), GW_QUEUE_DROP_OLDEST, &r->q), 0);
    assert_int_equal(gw_poller_new(r->cfg, r->q, &r->p), 0);
    assert_int_equal(pthread_create(&F.th, NULL, server_main, NULL), 0);
}

static void rig_close(rig *r)
{
    gw_poller_stop(r->p);
    gw_poller_free(r->p);
    F.stop = 1;
    pthread_join(F.th, NULL);
    close(F.lfd);
    gw_queue_free(r->q);
    gw_config_free(r->cfg);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", r->dir);
    assert_int_equal(system(cmd), 0);
}

/* The samples of the last poll: value of field, and its quality. */
typedef struct got {
    double k, b, c0, c8, c9;
    gw_quality qk, qc;
} got;

static got drain(rig *r)
{
    got g = {-1, -1, -1, -1, -1, GW_Q__COUNT, GW_Q__COUNT};
    gw_sample s;
    while (gw_queue_pop(r->q, &s, 0) == 0) {
        if (!strcmp(s.field, "k")) {
            g.k = s.value;
            g.qk = s.quality;
        } else if (!strcmp(s.field, "b")) {
            g.b = s.value;
        } else if (!strcmp(s.field, "c0")) {
            g.c0 = s.value;
            g.qc = s.quality;
        } else if (!strcmp(s.field, "c8")) {
            g.c8 = s.value;
        } else if (!strcmp(s.field, "c9")) {
            g.c9 = s.value;
        }
    }
    return g;
}

/* rc of the read of table t in rep (-999: not made). */
static int read_rc(const gw_poll_report *rep, gw_mb_table t)
{
    for (size_t i = 0; i < rep->n_reads; i++)
        if (rep->reads[i].table == t)
            return rep->reads[i].rc;
    return -999;
}

static gw_poll_report rep;

static void assert_good(rig *r, int k)
{
    got g = drain(r);
    assert_int_equal(read_rc(&rep, GW_MB_HOLDING), 0);
    assert_int_equal(read_rc(&rep, GW_MB_COIL), 0);
    assert_int_equal(g.qk, GW_Q_GOOD);
    if (k >= 0)
        assert_int_equal((int)g.k, k);
    assert_int_equal((int)g.b, 0xBEEF);
    assert_int_equal(g.qc, GW_Q_GOOD);
    assert_int_equal((int)g.c0, 1);
    assert_int_equal((int)g.c8, 0);
    assert_int_equal((int)g.c9, 1);
}

/* Request k of the script answers read 0 or 1 of cycle k / 2 when every read answers;
 * which read comes first is the plan's business: find out. */
static int first_is_holding(void)
{
    return rep.n_reads > 0 && rep.reads[0].table == GW_MB_HOLDING;
}

static void test_good_and_bits(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0);
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_int_equal(rep.n_reads, 2);
    assert_good(&r, first_is_holding() ? 0 : 1);
    rig_close(&r);
}

/* A late answer to the previous request, in the socket before the next request is sent:
 * discarded by its transaction id, and the next answer is taken (not a bad frame, and
 * the stream stays in step for the reads after it). */
static void test_late_answer_discarded(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0);
    F.script[0] = A_LATE;
    F.n_script = 1;
    gw_poller_poll_once(r.p, 0, &rep);
    assert_int_equal(rep.n_reads, 1);
    assert_int_equal(rep.reads[0].rc, GW_ETIMEDOUT);
    drain(&r);
    usleep(150 * 1000); /* the late answer is now in the gateway's socket */
    gw_poller_stats s0, s1;
    gw_poller_stats_get(r.p, &s0);
    for (int cyc = 0; cyc < 3; cyc++) {
        assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
        assert_int_equal(rep.n_reads, 2);
        int k = 1 + 2 * cyc + (first_is_holding() ? 0 : 1);
        assert_good(&r, k);
        assert_int_equal(rep.reads[0].attempts, 1);
        assert_int_equal(rep.reads[1].attempts, 1);
    }
    gw_poller_stats_get(r.p, &s1);
    assert_int_equal(s1.bad_frames, s0.bad_frames);
    assert_int_equal(s1.responses - s0.responses, 6);
    assert_int_equal(s1.late_answers - s0.late_answers, 1);
    rig_close(&r);
}

/* The late answer and the next answer in one segment. */
static void test_two_answers_one_segment(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0);
    F.script[0] = A_HOLD; /* request 0 unanswered: timeout */
    F.n_script = 1;
    gw_poller_poll_once(r.p, 0, &rep);
    assert_int_equal(rep.reads[0].rc, GW_ETIMEDOUT);
    drain(&r);
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_good(&r, first_is_holding() ? 1 : 2);
    rig_close(&r);
}

/* An earlier transaction's exception (9 bytes) then the answer, in one segment. */
static void test_stale_exception_then_answer(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0);
    F.script[0] = A_STALE_EXC;
    F.n_script = 1;
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_good(&r, first_is_holding() ? 0 : 1);
    rig_close(&r);
}

/* A frame with an earlier transaction id and an MBAP length of 0xFFFF: refused at once
 * (a bad frame, not a wait for 64 KiB), and the stream is usable on the next cycle. */
static void test_huge_mbap_length(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0);
    F.script[0] = A_STALE_HUGE;
    F.n_script = 1;
    int64_t t0 = gw_mono_ms();
    gw_poller_poll_once(r.p, 0, &rep);
    assert_true(gw_mono_ms() - t0 < RT_MS);
    assert_int_equal(rep.reads[0].rc, GW_EDECODE);
    drain(&r);
    usleep(20 * 1000);
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_good(&r, -1);
    rig_close(&r);
}

/* Byte by byte, with byte timeout 0 and with a byte timeout. */
static void test_drip(void **st)
{
    (void)st;
    for (int bt = 0; bt <= 20; bt += 20) {
        rig r;
        rig_open(&r, 0, 7, 0, bt);
        F.script[0] = A_DRIP;
        F.script[1] = A_DRIP;
        F.n_script = 2;
        assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
        assert_good(&r, first_is_holding() ? 0 : 1);
        rig_close(&r);
    }
}

/* A device that keeps each gap within the byte timeout but drips the answer: the whole
 * answer must still end by the response deadline plus one byte timeout. */
static void test_drip_capped(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 40);
    F.script[0] = A_DRIP_SLOW;
    F.n_script = 1;
    int64_t t0 = gw_mono_ms();
    gw_poller_poll_once(r.p, 0, &rep);
    int64_t dt = gw_mono_ms() - t0;
    assert_int_equal(rep.reads[0].rc, GW_ETIMEDOUT); /* the script's first request */
    assert_true(dt < RT_MS + 40 + 60 + RT_MS); /* this read, plus at most the next one */
    rig_close(&r);
}

/* Half an answer, then the peer closes: a lost link (GW_EIO, comm_error), and the next
 * cycle reconnects and reads on the new socket. */
static void test_close_mid_answer(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 1, 0);
    F.script[0] = A_CLOSE_MID;
    F.n_script = 1;
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), GW_EIO);
    assert_int_equal(rep.reads[0].rc, GW_EIO);
    got g = drain(&r);
    assert_int_equal(g.qk, GW_Q_COMM_ERROR);
    usleep(40 * 1000); /* past reconnect_max_ms */
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_true(rep.connected);
    assert_good(&r, -1);
    assert_int_equal(F.n_accepts, 2);
    rig_close(&r);
}

static void test_exception_and_short_exception(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0);
    F.script[0] = A_EXC4;
    F.script[1] = A_OK;
    F.script[2] = A_SHORT_EXC;
    F.n_script = 3;
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_int_equal(rep.reads[0].rc, GW_EPROTO);
    assert_int_equal(rep.reads[0].exception, 4);
    assert_int_equal(rep.reads[1].rc, 0);
    drain(&r);
    /* an exception answer without its code: malformed, and known at once */
    int64_t t0 = gw_mono_ms();
    gw_poller_poll_once(r.p, 0, &rep);
    assert_int_equal(rep.reads[0].rc, GW_EDECODE);
    assert_true(gw_mono_ms() - t0 < RT_MS);
    drain(&r);
    rig_close(&r);
}

static void test_unit_ids(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 0, 0); /* strict */
    F.script[0] = A_UNIT0;
    F.script[1] = A_UNIT255;
    F.n_script = 2;
    gw_poller_poll_once(r.p, 0, &rep);
    assert_int_equal(rep.reads[0].rc, GW_EDECODE);
    assert_int_equal(rep.reads[1].rc, GW_EDECODE);
    got g = drain(&r);
    assert_int_equal(g.qk, GW_Q_DECODE_ERROR);
    rig_close(&r);

    rig_open(&r, 1, 7, 0, 0); /* accept_any_unit_id */
    F.script[0] = A_UNIT0;
    F.script[1] = A_UNIT255;
    F.n_script = 2;
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_good(&r, first_is_holding() ? 0 : 1);
    rig_close(&r);

    rig_open(&r, 0, 247, 0, 0); /* the highest unit id, strict */
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), 0);
    assert_good(&r, first_is_holding() ? 0 : 1);
    rig_close(&r);
}

/* A silent device with retries: each attempt costs one response timeout, no more. */
static void test_silent_costs_its_deadline(void **st)
{
    (void)st;
    rig r;
    rig_open(&r, 0, 7, 1, 0);
    for (int i = 0; i < 4; i++)
        F.script[i] = A_SILENT;
    F.n_script = 4;
    int64_t t0 = gw_mono_ms();
    assert_int_equal(gw_poller_poll_once(r.p, 0, &rep), GW_ETIMEDOUT);
    int64_t dt = gw_mono_ms() - t0;
    assert_int_equal(rep.n_reads, 1);
    assert_int_equal(rep.reads[0].attempts, 2);
    assert_true(dt >= 2 * RT_MS - 5 && dt < 2 * RT_MS + 100);
    drain(&r);
    rig_close(&r);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_and_bits),
        cmocka_unit_test(test_late_answer_discarded),
        cmocka_unit_test(test_two_answers_one_segment),
        cmocka_unit_test(test_stale_exception_then_answer),
        cmocka_unit_test(test_huge_mbap_length),
        cmocka_unit_test(test_drip),
        cmocka_unit_test(test_drip_capped),
        cmocka_unit_test(test_close_mid_answer),
        cmocka_unit_test(test_exception_and_short_exception),
        cmocka_unit_test(test_unit_ids),
        cmocka_unit_test(test_silent_costs_its_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
