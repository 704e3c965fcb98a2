/* InfluxDB write throughput of the gateway's writer against the baseline of libcurl
 * posting pre-built (pre-gzipped) batches over one keep-alive connection, in the same
 * run against the same private influxd; plus outbox commits/s with fsync.
 *
 *   bench_influx [--points N] [--url URL]
 * Without --url (or $INFLUX_URL) it starts its own influxd on free loopback ports in a
 * temp dir and stops exactly that process at the end. Goal: writer >= 80 % of curl. */
#include "config.h"
#include "influx/lineproto.h"
#include "influx/writer.h"
#include "log.h"
#include "outbox.h"
#include "sample.h"
#include "spool.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define NDEV 100
#define BATCH 5000

static char tmpdir[] = "/tmp/bench_influx.XXXXXX";
static pid_t influxd_pid;
static char url[128];

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static size_t sink(char *p, size_t s, size_t n, void *c)
{
    (void)p, (void)c;
    return s * n;
}

static long post(CURL *c, const char *u, const void *body, size_t len, int gz)
{
    struct curl_slist *h = curl_slist_append(NULL, "Expect:");
    if (gz)
        h = curl_slist_append(h, "Content-Encoding: gzip");
    curl_easy_setopt(c, CURLOPT_URL, u);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(h);
    return code;
}

static void query(const char *q)
{
    CURL *c = curl_easy_init();
    char *e = curl_easy_escape(c, q, 0);
    char u[512];
    snprintf(u, sizeof u, "%s/query?q=%s", url, e);
    post(c, u, "", 0, 0);
    curl_free(e);
    curl_easy_cleanup(c);
}

static int start_influxd(void)
{
    if (!mkdtemp(tmpdir))
        return -1;
    int http = free_port(), rpc = free_port();
    char conf[256];
    snprintf(conf, sizeof conf, "%s/influxdb.conf", tmpdir);
    FILE *f = fopen(conf, "w");
    fprintf(f, "reporting-disabled = true\nbind-address = \"127.0.0.1:%d\"\n[meta]\n dir = \"%s/meta\"\n"
               "[data]\n dir = \"%s/data\"\n wal-dir = \"%s/wal\"\n query-log-enabled = false\n"
               "[http]\n bind-address = \"127.0.0.1:%d\"\n log-enabled = false\n"
               "[monitor]\n store-enabled = false\n[logging]\n level = \"warn\"\n",
            rpc, tmpdir, tmpdir, tmpdir, http);
    fclose(f);
    influxd_pid = fork();
    if (influxd_pid == 0) {
        freopen("/dev/null", "w", stdout);
        freopen("/dev/null", "w", stderr);
        execlp("influxd", "influxd", "run", "-config", conf, (char *)NULL);
        _exit(127);
    }
    snprintf(url, sizeof url, "http://127.0.0.1:%d", http);
    CURL *c = curl_easy_init();
    char p[160];
    snprintf(p, sizeof p, "%s/ping", url);
    for (int i = 0; i < 150; i++) {
        long code = 0;
        curl_easy_setopt(c, CURLOPT_URL, p);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
        if (curl_easy_perform(c) == CURLE_OK)
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (code == 204) {
            curl_easy_cleanup(c);
            return 0;
        }
        usleep(100000);
    }
    curl_easy_cleanup(c);
    return -1;
}

static void stop_influxd(void)
{
    if (influxd_pid > 0) {
        kill(influxd_pid, SIGTERM);
        waitpid(influxd_pid, NULL, 0);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", tmpdir);
    }
}

static gw_config cfg;

static void make_config(const char *db, const char *dir)
{
    static gw_device devs[NDEV];
    static char ids[NDEV][32], codes[NDEV][32];
    memset(&cfg, 0, sizeof cfg);
    cfg.gateway.id = "GW-500103-0001";
    cfg.gateway.data_dir = (char *)dir;
    cfg.influx = (gw_influx_cfg){.enabled = 1, .url = url, .version = 1, .database = (char *)db,
                                 .precision = "us", .batch_lines = BATCH, .batch_bytes = 4 << 20,
                                 .flush_ms = 1000, .timeout_ms = 10000, .gzip = 1,
                                 .spool_max_bytes = 256LL << 20};
    for (int i = 0; i < NDEV; i++) {
        snprintf(ids[i], 32, "mh-%04d", i);
        snprintf(codes[i], 32, "5001030102%06d", i);
        devs[i] = (gw_device){.id = ids[i], .kind = "manhole"};
        devs[i].component.code = codes[i];
        devs[i].component.grid = "500103001002003";
    }
    cfg.devices = devs;
    cfg.n_devices = NDEV;
}

int main(int argc, char **argv)
{
    long n = 500000;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--points"))
            n = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--url"))
            snprintf(url, sizeof url, "%s", argv[i + 1]);
    }
    if (!url[0] && getenv("INFLUX_URL"))
        snprintf(url, sizeof url, "%s", getenv("INFLUX_URL"));
    gw_log_set_level(GW_LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!url[0] && start_influxd() != 0) {
        fprintf(stderr, "cannot start influxd\n");
        stop_influxd();
        return 1;
    }
    query("CREATE DATABASE bench_curl");
    query("CREATE DATABASE bench_writer");
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/bench_influx_data.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    make_config("bench_writer", dir);
    int64_t base = 1700000000000000LL;

    /* Baseline: the same lines, formatted and gzipped before the clock starts. */
    size_t nb = (size_t)((n + BATCH - 1) / BATCH);
    char **bodies = calloc(nb, sizeof *bodies);
    size_t *lens = calloc(nb, sizeof *lens);
    char *line = malloc(1 << 20);
    uLong raw_total = 0;
    for (size_t b = 0; b < nb; b++) {
        size_t len = 0;
        for (long i = (long)b * BATCH; i < n && i < (long)(b + 1) * BATCH; i++) {
            int d = (int)(i % NDEV);
            gw_lp_tag t[4] = {{"device", cfg.devices[d].id},
                              {"component", cfg.devices[d].component.code},
                              {"grid", "500103001002003"}, {"gateway", cfg.gateway.id}};
            gw_lp_field f[3] = {{.key = "tilt_deg", .f = (double)(i % 90) + 0.5},
                                {.key = "level_m", .f = (double)i / 1000.0},
                                {.key = "battery_v", .f = 3.6}};
            gw_lp_point p = {"manhole", t, 4, f, 3, base + i};
            len += (size_t)gw_lp_format(line + len, (1 << 20) - len, &p, GW_LP_US, NULL);
        }
        raw_total += len;
        uLongf zl = compressBound(len) + 64;
        bodies[b] = malloc(zl);
        z_stream z = {0};
        deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
        z.next_in = (Bytef *)line;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)bodies[b];
        z.avail_out = (uInt)zl;
        deflate(&z, Z_FINISH);
        lens[b] = zl - z.avail_out;
        deflateEnd(&z);
    }
    char wurl[256];
    snprintf(wurl, sizeof wurl, "%s/write?db=bench_curl&precision=u", url);
    CURL *c = curl_easy_init();
    int64_t t0 = gw_mono_us();
    for (size_t b = 0; b < nb; b++)
        if (post(c, wurl, bodies[b], lens[b], 1) != 204)
            fprintf(stderr, "baseline batch %zu failed\n", b);
    double curl_s = (double)(gw_mono_us() - t0) / 1e6;
    curl_easy_cleanup(c);

    /* The writer: samples in, points out (formatting, batching, gzip, HTTP included). */
    gw_spool *sp;
    gw_influx_writer *w;
    if (gw_spool_open(dir, 256LL << 20, &sp) || gw_influx_writer_new(&cfg, sp, &w))
        return 1;
    gw_influx_writer_start(w);
    /* Sample templates made before the clock starts (sources build samples, not the
     * writer); the loop only sets values and timestamps. */
    static gw_sample tmpl[NDEV][3];
    for (int d = 0; d < NDEV; d++) {
        gw_sample_set(&tmpl[d][0], cfg.devices[d].id, "tilt_deg", 0, "", GW_Q_GOOD, 1);
        gw_sample_set(&tmpl[d][1], cfg.devices[d].id, "level_m", 0, "", GW_Q_GOOD, 1);
        gw_sample_set(&tmpl[d][2], cfg.devices[d].id, "battery_v", 3.6, "", GW_Q_GOOD, 1);
        for (int k = 0; k < 3; k++)
            tmpl[d][k].device_idx = (uint32_t)d;
    }
    t0 = gw_mono_us();
    for (long i = 0; i < n; i++) {
        gw_sample s[3];
        int d = (int)(i % NDEV);
        memcpy(s, tmpl[d], sizeof s);
        s[0].value = (double)(i % 90) + 0.5;
        s[1].value = (double)i / 1000.0;
        s[0].ts_us = s[1].ts_us = s[2].ts_us = base + i;
        if (i % 1024 == 0)
            for (;;) {
                gw_influx_stats q;
                gw_influx_writer_stats(w, &q);
                if (q.queue_depth < 24000)
                    break;
                usleep(200);
            }
        gw_influx_writer_submit(w, s, 3);
    }
    gw_influx_stats st;
    for (;;) {
        gw_influx_writer_stats(w, &st);
        if (st.points_written >= (uint64_t)n || gw_mono_us() - t0 > 120000000)
            break;
        usleep(1000);
    }
    double writer_s = (double)(gw_mono_us() - t0) / 1e6;
    gw_influx_writer_stop(w);
    gw_influx_writer_stats(w, &st);
    gw_influx_writer_free(w);
    gw_spool_close(sp);

    /* Outbox: durable commits (fsync per event), then acks. */
    gw_outbox *ob;
    gw_outbox_open(dir, &ob);
    int ne = 3000;
    char payload[600];
    memset(payload, 'x', sizeof payload);
    t0 = gw_mono_us();
    for (int i = 1; i <= ne; i++) {
        char id[32];
        snprintf(id, sizeof id, "evt-%d", i);
        gw_outbox_event ev = {.seq = (uint64_t)i, .event_id = id, .device_id = "mh-0001",
                              .payload = payload, .payload_len = sizeof payload, .created_us = 1};
        gw_outbox_commit(ob, &ev);
    }
    double commit_s = (double)(gw_mono_us() - t0) / 1e6;
    t0 = gw_mono_us();
    for (int i = 1; i <= ne; i++)
        gw_outbox_ack(ob, (uint64_t)i);
    double ack_s = (double)(gw_mono_us() - t0) / 1e6;
    gw_outbox_close(ob);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);

    double curl_rate = (double)n / curl_s, writer_rate = (double)st.points_written / writer_s;
    printf("InfluxDB 1.x /write, %ld points (3 float fields, 4 tags), batches of %d, gzip\n", n, BATCH);
    printf("| client | points/s | MB/s raw | ratio |\n|---|---|---|---|\n");
    printf("| libcurl, pre-built pre-gzipped batches, keep-alive | %.0f | %.1f | 1.00 |\n",
           curl_rate, (double)raw_total / curl_s / 1e6);
    printf("| citygate writer (samples -> lines -> gzip -> HTTP) | %.0f | %.1f | %.2f |\n",
           writer_rate, (double)st.bytes_raw / writer_s / 1e6, writer_rate / curl_rate);
    printf("writer: %llu points, %llu requests, %llu retries, goal >= 0.80: %s\n",
           (unsigned long long)st.points_written, (unsigned long long)st.requests,
           (unsigned long long)st.retries, writer_rate / curl_rate >= 0.8 ? "met" : "NOT met");
    printf("\n| outbox (SQLite WAL, synchronous=FULL) | ops/s | µs/op |\n|---|---|---|\n");
    printf("| commit (fsync'd event, 600 B) | %.0f | %.0f |\n", ne / commit_s, commit_s * 1e6 / ne);
    printf("| ack (delete after PUBACK) | %.0f | %.0f |\n", ne / ack_s, ack_s * 1e6 / ne);
    for (size_t b = 0; b < nb; b++)
        free(bodies[b]);
    free(bodies);
    free(lens);
    free(line);
    stop_influxd();
    curl_global_cleanup();
    return 0;
}
