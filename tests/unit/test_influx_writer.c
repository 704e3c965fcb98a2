/* The InfluxDB writer against an in-process HTTP responder on loopback (a thread, no
 * process): a complete line is sent without waiting for the flush deadline, batches
 * gzipped on the formatting thread decode to exactly the lines the formatter makes,
 * and one point's samples make one line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "config.h"
#include "error.h"
#include "influx/lineproto.h"
#include "influx/writer.h"
#include "log.h"
#include "sample.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

/* ---- a minimal HTTP/1.1 responder: 204 to every request, bodies kept ------------------ */

typedef struct responder {
    int lfd;
    int port;
    pthread_t thread;
    atomic_int stop;
    pthread_mutex_t lock;
    char *bodies;        /* every request body, decoded, concatenated */
    size_t len, cap;
    int requests;
    int gzip_seen;
} responder;

static void keep(responder *r, const char *p, size_t n)
{
    pthread_mutex_lock(&r->lock);
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2;
        r->bodies = realloc(r->bodies, r->cap);
    }
    memcpy(r->bodies + r->len, p, n);
    r->len += n;
    pthread_mutex_unlock(&r->lock);
}

static void keep_gunzip(responder *r, const unsigned char *p, size_t n)
{
    z_stream z = {0};
    inflateInit2(&z, 15 + 16);
    unsigned char out[65536];
    z.next_in = (unsigned char *)p;
    z.avail_in = (uInt)n;
    int rc;
    do {
        z.next_out = out;
        z.avail_out = sizeof out;
        rc = inflate(&z, Z_NO_FLUSH);
        keep(r, (const char *)out, sizeof out - z.avail_out);
    } while (rc == Z_OK);
    inflateEnd(&z);
}

/* Read until buf holds a full request (headers + Content-Length body); returns its
 * length, 0 on close / stop. */
static size_t read_request(responder *r, int fd, char *buf, size_t cap, size_t *have,
                           size_t *body_at, size_t *body_len, int *gz)
{
    for (;;) {
        char *end = memmem(buf, *have, "\r\n\r\n", 4);
        if (end) {
            *body_at = (size_t)(end - buf) + 4;
            *body_len = 0;
            *gz = 0;
            for (char *h = buf; h < end; h = strstr(h, "\r\n") + 2) {
                if (!strncasecmp(h, "Content-Length:", 15))
                    *body_len = strtoul(h + 15, NULL, 10);
                if (!strncasecmp(h, "Content-Encoding: gzip", 22))
                    *gz = 1;
            }
            if (*have >= *body_at + *body_len)
                return *body_at + *body_len;
        }
        struct pollfd pf = {fd, POLLIN, 0};
        if (atomic_load(&r->stop) || *have == cap)
            return 0;
        if (poll(&pf, 1, 50) <= 0)
            continue;
        ssize_t k = read(fd, buf + *have, cap - *have);
        if (k <= 0)
            return 0;
        *have += (size_t)k;
    }
}

static void *responder_main(void *arg)
{
    responder *r = arg;
    size_t cap = 8 << 20;
    char *buf = malloc(cap);
    while (!atomic_load(&r->stop)) {
        struct pollfd pf = {r->lfd, POLLIN, 0};
        if (poll(&pf, 1, 50) <= 0)
            continue;
        int fd = accept(r->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        size_t have = 0, at, blen, n;
        int gz;
        while ((n = read_request(r, fd, buf, cap, &have, &at, &blen, &gz)) > 0) {
            if (gz)
                keep_gunzip(r, (unsigned char *)buf + at, blen);
            else
                keep(r, buf + at, blen);
            pthread_mutex_lock(&r->lock);
            r->requests++;
            r->gzip_seen |= gz;
            pthread_mutex_unlock(&r->lock);
            static const char ok[] = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
            if (write(fd, ok, sizeof ok - 1) != (ssize_t)(sizeof ok - 1))
                break;
            memmove(buf, buf + n, have - n);
            have -= n;
        }
        close(fd);
    }
    free(buf);
    return NULL;
}

static void responder_start(responder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->lock, NULL);
    r->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    assert_int_equal(bind(r->lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(r->lfd, 4), 0);
    getsockname(r->lfd, (struct sockaddr *)&a, &l);
    r->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&r->thread, NULL, responder_main, r), 0);
}

static void responder_stop(responder *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    close(r->lfd);
    free(r->bodies);
    pthread_mutex_destroy(&r->lock);
}

/* ---- fixtures ------------------------------------------------------------------------- */

#define NDEV 3
static gw_config cfg;
static gw_device devs[NDEV];
static char url[64];

static void make_config(int port, int batch_lines, int flush_ms, int gzip)
{
    static char ids[NDEV][16];
    memset(&cfg, 0, sizeof cfg);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    cfg.gateway.id = "GW-1";
    cfg.gateway.data_dir = "/tmp";
    cfg.influx = (gw_influx_cfg){.enabled = 1, .url = url, .version = 1, .database = "t",
                                 .precision = "us", .batch_lines = batch_lines,
                                 .batch_bytes = 1 << 20, .flush_ms = flush_ms,
                                 .timeout_ms = 5000, .gzip = gzip};
    for (int i = 0; i < NDEV; i++) {
        snprintf(ids[i], sizeof ids[i], "mh %d", i); /* a space: escaped in the series */
        devs[i] = (gw_device){.id = ids[i], .kind = "manhole"};
        devs[i].component.code = "500103";
    }
    cfg.devices = devs;
    cfg.n_devices = NDEV;
}

/* Point i: 3 samples of device i % NDEV at one timestamp. */
static void point_samples(long i, gw_sample s[3])
{
    int d = (int)(i % NDEV);
    int64_t ts = 1700000000000000LL + i;
    gw_sample_set(&s[0], devs[d].id, "tilt", (double)(i % 90) + 0.5, "", GW_Q_GOOD, ts);
    gw_sample_set(&s[1], devs[d].id, "level", (double)i / 1000.0, "", GW_Q_GOOD, ts);
    gw_sample_set(&s[2], devs[d].id, "batt", 3.6, "", GW_Q_GOOD, ts);
    for (int k = 0; k < 3; k++)
        s[k].device_idx = (uint32_t)d;
}

/* The line the formatter makes for point i. */
static int point_line(long i, char *buf, size_t cap)
{
    int d = (int)(i % NDEV);
    gw_lp_tag t[3] = {{"device", devs[d].id}, {"component", "500103"}, {"gateway", "GW-1"}};
    gw_lp_field f[3] = {{.key = "tilt", .f = (double)(i % 90) + 0.5},
                        {.key = "level", .f = (double)i / 1000.0},
                        {.key = "batt", .f = 3.6}};
    gw_lp_point p = {"manhole", t, 3, f, 3, 1700000000000000LL + i};
    return gw_lp_format(buf, cap, &p, GW_LP_US, NULL);
}

/* Wait up to ms for n points written; returns the elapsed ms. */
static int64_t wait_written(gw_influx_writer *w, uint64_t n, int ms)
{
    int64_t t0 = gw_mono_ms();
    gw_influx_stats st;
    for (;;) {
        gw_influx_writer_stats(w, &st);
        if (st.points_written >= n || gw_mono_ms() - t0 > ms)
            return gw_mono_ms() - t0;
        usleep(2000);
    }
}

/* Submit n points, wait for them, check the server got exactly the formatter's lines. */
static void run(int gzip, long n, int batch_lines, int max_ms)
{
    responder r;
    responder_start(&r);
    make_config(r.port, batch_lines, 60000, gzip);
    gw_influx_writer *w;
    assert_int_equal(gw_influx_writer_new(&cfg, NULL, &w), 0);
    assert_int_equal(gw_influx_writer_start(w), 0);
    for (long i = 0; i < n; i++) {
        gw_sample s[3];
        point_samples(i, s);
        assert_int_equal(gw_influx_writer_submit(w, s, 3), 0);
    }
    /* n is a multiple of batch_lines: every batch fills, none may wait for the 60 s
     * flush deadline (the last line of the burst used to, and its batch with it). */
    int64_t took = wait_written(w, (uint64_t)n, 10000);
    gw_influx_stats st;
    gw_influx_writer_stats(w, &st);
    assert_int_equal(st.points_written, (uint64_t)n);
    if (took >= max_ms)
        fail_msg("%ld points took %lld ms (at most %d expected)", n, (long long)took, max_ms);
    gw_influx_writer_stop(w);
    gw_influx_writer_free(w);

    pthread_mutex_lock(&r.lock);
    assert_int_equal(r.requests, (int)(n / batch_lines));
    assert_int_equal(r.gzip_seen, gzip);
    size_t at = 0;
    char line[512];
    for (long i = 0; i < n; i++) {
        int k = point_line(i, line, sizeof line);
        assert_true(k > 0 && at + (size_t)k <= r.len);
        assert_memory_equal(r.bodies + at, line, (size_t)k);
        at += (size_t)k;
    }
    assert_int_equal(at, r.len);
    pthread_mutex_unlock(&r.lock);
    responder_stop(&r);
}

static void test_last_line_not_held(void **st)
{
    (void)st;
    run(0, 10, 10, 800);
    run(0, 1, 1, 800);
}

static void test_gzip_batches(void **st)
{
    (void)st;
    run(1, 6000, 1000, 5000);
}

static void test_plain_batches(void **st)
{
    (void)st;
    run(0, 6000, 1500, 5000);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_line_not_held),
        cmocka_unit_test(test_gzip_batches),
        cmocka_unit_test(test_plain_batches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
