/* InfluxDB write throughput of the gateway's writer against the baseline of libcurl
 * posting pre-built batches over one keep-alive connection, in the same run against the
 * same private influxd; plus outbox commits/s with fsync.
 *
 *   bench_influx [--points N] [--url URL] [--gzip 0|1] [--rounds R]
 *
 * Fairness: both clients write the same points (same lines, same batches of BATCH, same
 * timestamps) into fresh databases of the same influxd, with the same gzip setting (the
 * baseline's batches are pre-gzipped when gzip is on; the writer then gzips its own).
 * Each round runs curl, writer, writer, curl (R rounds, default 2; n/(2R) points per
 * phase), so a drift of influxd over the run (a growing WAL) or of the machine's load
 * weighs on both alike; the table gives the totals and the range of per-round ratios.
 * Each phase starts
 * when influxd has gone quiet (no compaction of the previous phase's data). Both gzip
 * settings are measured unless --gzip picks one. The CPU seconds of the bench process
 * (the client) and of influxd are reported per phase: on a small box the client's CPU
 * is taken from influxd.
 *
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
#include <sys/resource.h>
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

static void make_config(const char *dir)
{
    static gw_device devs[NDEV];
    static char ids[NDEV][32], codes[NDEV][32];
    memset(&cfg, 0, sizeof cfg);
    cfg.gateway.id = "GW-500103-0001";
    cfg.gateway.data_dir = (char *)dir;
    cfg.influx = (gw_influx_cfg){.enabled = 1, .url = url, .version = 1,
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

/* CPU seconds (user + system) of this process, all threads. */
static double self_cpu(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* CPU seconds of the influxd this bench started (0 when it did not start one). */
static double influxd_cpu(void)
{
    if (influxd_pid <= 0)
        return 0;
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)influxd_pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *s = strrchr(buf, ')'); /* fields after the command name */
    unsigned long ut = 0, stt = 0;
    if (!s || sscanf(s + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &stt) != 2)
        return 0;
    return (double)(ut + stt) / (double)sysconf(_SC_CLK_TCK);
}

/* Wait (at most 10 s) until influxd is quiet, under 5 % of a core over 200 ms, so a
 * compaction left over from the previous phase is not charged to the next client. */
static void settle(void)
{
    for (int i = 0; i < 50 && influxd_pid > 0; i++) {
        double a = influxd_cpu();
        usleep(200000);
        if (influxd_cpu() - a <= 0.01)
            return;
    }
}

typedef struct phase {
    double wall_s, client_cpu_s, influxd_cpu_s;
    uint64_t points, requests, retries, bytes_raw;
} phase;

static void phase_begin(phase *ph, double *c0, double *i0, int64_t *t0)
{
    *c0 = self_cpu();
    *i0 = influxd_cpu();
    *t0 = gw_mono_us();
    (void)ph;
}

static void phase_end(phase *ph, double c0, double i0, int64_t t0)
{
    ph->wall_s += (double)(gw_mono_us() - t0) / 1e6;
    ph->client_cpu_s += self_cpu() - c0;
    ph->influxd_cpu_s += influxd_cpu() - i0;
}

/* The points [from, to) as line protocol, cut in batches of BATCH, gzipped when gz. */
typedef struct batches {
    size_t n;
    char **body;
    size_t *len;
    uint64_t raw;
} batches;

static const int64_t base_ts = 1700000000000000LL;

static void build_batches(long from, long to, int gz, batches *out)
{
    size_t nb = (size_t)((to - from + BATCH - 1) / BATCH);
    out->n = nb;
    out->body = calloc(nb, sizeof *out->body);
    out->len = calloc(nb, sizeof *out->len);
    out->raw = 0;
    char *line = malloc(1 << 20);
    for (size_t b = 0; b < nb; b++) {
        size_t len = 0;
        for (long i = from + (long)b * BATCH; i < to && i < from + (long)(b + 1) * BATCH; i++) {
            int d = (int)(i % NDEV);
            gw_lp_tag t[4] = {{"device", cfg.devices[d].id},
                              {"component", cfg.devices[d].component.code},
                              {"grid", "500103001002003"}, {"gateway", cfg.gateway.id}};
            gw_lp_field f[3] = {{.key = "tilt_deg", .f = (double)(i % 90) + 0.5},
                                {.key = "level_m", .f = (double)i / 1000.0},
                                {.key = "battery_v", .f = 3.6}};
            gw_lp_point p = {"manhole", t, 4, f, 3, base_ts + i};
            len += (size_t)gw_lp_format(line + len, (1 << 20) - len, &p, GW_LP_US, NULL);
        }
        out->raw += len;
        if (!gz) {
            out->body[b] = malloc(len);
            memcpy(out->body[b], line, len);
            out->len[b] = len;
            continue;
        }
        uLongf zl = compressBound(len) + 64;
        out->body[b] = malloc(zl);
        z_stream z = {0};
        deflateInit2(&z, 1, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY);
        z.next_in = (Bytef *)line;
        z.avail_in = (uInt)len;
        z.next_out = (Bytef *)out->body[b];
        z.avail_out = (uInt)zl;
        deflate(&z, Z_FINISH);
        out->len[b] = zl - z.avail_out;
        deflateEnd(&z);
    }
    free(line);
}

static void free_batches(batches *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->body[i]);
    free(b->body);
    free(b->len);
}

/* Baseline: the same lines, formatted (and gzipped) before the clock starts. */
static void run_curl(const char *db, long from, long to, int gz, phase *ph)
{
    batches bt;
    build_batches(from, to, gz, &bt);
    char wurl[256];
    snprintf(wurl, sizeof wurl, "%s/write?db=%s&precision=u", url, db);
    CURL *c = curl_easy_init();
    double c0, i0;
    int64_t t0;
    phase_begin(ph, &c0, &i0, &t0);
    for (size_t b = 0; b < bt.n; b++) {
        ph->requests++;
        if (post(c, wurl, bt.body[b], bt.len[b], gz) != 204)
            fprintf(stderr, "baseline batch %zu failed\n", b);
        else
            ph->points += (uint64_t)(b + 1 < bt.n ? BATCH : (to - from) - (long)b * BATCH);
    }
    phase_end(ph, c0, i0, t0);
    ph->bytes_raw += bt.raw;
    curl_easy_cleanup(c);
    free_batches(&bt);
}

/* The writer: samples in, points out (formatting, batching, gzip, HTTP included). */
static int run_writer(const char *db, long from, long to, int gz, gw_spool *sp, phase *ph)
{
    gw_influx_writer *w;
    cfg.influx.database = (char *)db;
    cfg.influx.gzip = gz;
    if (gw_influx_writer_new(&cfg, sp, &w))
        return -1;
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
    double c0, i0;
    int64_t t0;
    phase_begin(ph, &c0, &i0, &t0);
    for (long i = from; i < to; i++) {
        gw_sample s[3];
        int d = (int)(i % NDEV);
        memcpy(s, tmpl[d], sizeof s);
        s[0].value = (double)(i % 90) + 0.5;
        s[1].value = (double)i / 1000.0;
        s[0].ts_us = s[1].ts_us = s[2].ts_us = base_ts + i;
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
        if (st.points_written >= (uint64_t)(to - from) || gw_mono_us() - t0 > 120000000)
            break;
        usleep(1000);
    }
    phase_end(ph, c0, i0, t0);
    gw_influx_writer_stop(w);
    gw_influx_writer_stats(w, &st);
    gw_influx_writer_free(w);
    ph->points += st.points_written;
    ph->requests += st.requests;
    ph->retries += st.retries;
    ph->bytes_raw += st.bytes_raw;
    return 0;
}

static void print_row(const char *gz, const char *client, const phase *ph, double ratio)
{
    double rate = (double)ph->points / ph->wall_s;
    printf("| %s | %s | %.0f | %.1f | %.2f | %.2f | %.2f |\n", gz, client, rate,
           (double)ph->bytes_raw / ph->wall_s / 1e6, ph->client_cpu_s * 1e6 / (double)ph->points,
           ph->influxd_cpu_s * 1e6 / (double)ph->points, ratio);
}

int main(int argc, char **argv)
{
    long n = 500000;
    int gz_only = -1, rounds = 2;
    for (int i = 1; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "--points"))
            n = atol(argv[i + 1]);
        if (!strcmp(argv[i], "--url"))
            snprintf(url, sizeof url, "%s", argv[i + 1]);
        if (!strcmp(argv[i], "--gzip"))
            gz_only = atoi(argv[i + 1]) != 0;
        if (!strcmp(argv[i], "--rounds"))
            rounds = atoi(argv[i + 1]);
    }
    if (rounds < 1 || rounds > 50)
        rounds = 2;
    /* Whole batches per phase: a partial last batch would wait flush_ms in the writer
     * (its contract: batches close by size or by time) but not in the baseline. */
    n = (n / BATCH < 2L * rounds ? 2L * rounds : n / BATCH) * BATCH;
    if (!url[0] && getenv("INFLUX_URL"))
        snprintf(url, sizeof url, "%s", getenv("INFLUX_URL"));
    gw_log_set_level(GW_LOG_WARN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (!url[0] && start_influxd() != 0) {
        fprintf(stderr, "cannot start influxd\n");
        stop_influxd();
        return 1;
    }
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/bench_influx_data.XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    make_config(dir);
    gw_spool *sp;
    if (gw_spool_open(dir, 256LL << 20, &sp))
        return 1;

    /* Each client writes the n points once per gzip setting, cut in 2 * rounds slices;
     * round r runs curl, writer on slice 2r, then writer, curl on slice 2r + 1. */
    phase res[2][2]; /* [gzip][0 curl, 1 writer] */
    memset(res, 0, sizeof res);
    double rmin[2] = {1e9, 1e9}, rmax[2] = {0, 0}; /* per-round ratios */
    long slices = 2L * rounds;
    int stamp = (int)(gw_mono_us() % 100000);
    for (int gz = 1; gz >= 0; gz--) {
        if (gz_only >= 0 && gz != gz_only)
            continue;
        for (int r = 0; r < rounds; r++) {
            phase rp[2];
            memset(rp, 0, sizeof rp);
            static const int order[4] = {0, 1, 1, 0};
            for (int k = 0; k < 4; k++) {
                char db[64], q[96];
                snprintf(db, sizeof db, "bench_%d_%s_%d_%d_%d", stamp,
                         order[k] ? "writer" : "curl", gz, r, k);
                snprintf(q, sizeof q, "CREATE DATABASE %s", db);
                query(q);
                long slice = 2L * r + (k >= 2);
                long nb = n / BATCH;
                long from = nb * slice / slices * BATCH, to = nb * (slice + 1) / slices * BATCH;
                settle();
                if (order[k] == 0)
                    run_curl(db, from, to, gz, &rp[0]);
                else if (run_writer(db, from, to, gz, sp, &rp[1]) != 0)
                    return 1;
            }
            double ratio = ((double)rp[1].points / rp[1].wall_s) / ((double)rp[0].points / rp[0].wall_s);
            rmin[gz] = ratio < rmin[gz] ? ratio : rmin[gz];
            rmax[gz] = ratio > rmax[gz] ? ratio : rmax[gz];
            for (int c = 0; c < 2; c++) {
                res[gz][c].wall_s += rp[c].wall_s;
                res[gz][c].client_cpu_s += rp[c].client_cpu_s;
                res[gz][c].influxd_cpu_s += rp[c].influxd_cpu_s;
                res[gz][c].points += rp[c].points;
                res[gz][c].requests += rp[c].requests;
                res[gz][c].retries += rp[c].retries;
                res[gz][c].bytes_raw += rp[c].bytes_raw;
            }
        }
    }
    gw_spool_close(sp);

    /* Outbox: durable commits (fsync per event), then acks. */
    gw_outbox *ob;
    gw_outbox_open(dir, &ob);
    int ne = 3000;
    char payload[600];
    memset(payload, 'x', sizeof payload);
    int64_t t0 = gw_mono_us();
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

    printf("InfluxDB 1.x /write, %ld points per client and setting (3 float fields, 4 tags), "
           "batches of %d, %d rounds of curl/writer/writer/curl\n", n, BATCH, rounds);
    printf("| gzip | client | points/s | MB/s raw | client CPU µs/pt | influxd CPU µs/pt | ratio |\n"
           "|---|---|---|---|---|---|---|\n");
    const char *verdict = "not measured";
    for (int gz = 1; gz >= 0; gz--) {
        if (gz_only >= 0 && gz != gz_only)
            continue;
        const phase *c = &res[gz][0], *wr = &res[gz][1];
        double ratio = ((double)wr->points / wr->wall_s) / ((double)c->points / c->wall_s);
        print_row(gz ? "on" : "off", gz ? "libcurl, pre-built pre-gzipped batches" :
                                          "libcurl, pre-built batches", c, 1.0);
        print_row(gz ? "on" : "off", gz ? "citygate writer (samples -> lines -> gzip -> HTTP)" :
                                          "citygate writer (samples -> lines -> HTTP)", wr, ratio);
        printf("| | writer: %llu points, %llu requests, %llu retries; ratio per round %.2f to %.2f "
               "| | | | | |\n", (unsigned long long)wr->points, (unsigned long long)wr->requests,
               (unsigned long long)wr->retries, rmin[gz], rmax[gz]);
        if (gz == 1 || gz_only == 0)
            verdict = ratio >= 0.8 ? "met" : "NOT met";
    }
    printf("goal (writer >= 0.80 x curl, %s): %s\n", gz_only == 0 ? "gzip off" : "gzip on", verdict);
    printf("\n| outbox (SQLite WAL, synchronous=FULL) | ops/s | µs/op |\n|---|---|---|\n");
    printf("| commit (fsync'd event, 600 B) | %.0f | %.0f |\n", ne / commit_s, commit_s * 1e6 / ne);
    printf("| ack (delete after PUBACK) | %.0f | %.0f |\n", ne / ack_s, ack_s * 1e6 / ne);
    stop_influxd();
    curl_global_cleanup();
    return 0;
}
