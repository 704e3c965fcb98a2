/* Test driver for the InfluxDB writer (tests/integration/4x-*.sh): runs the real
 * gw_influx_writer with a spool in a data dir, feeds it known samples, waits until
 * every point is accounted for, prints the writer's counters as key=value lines.
 *
 *   influx_feed feed   --url URL --dir DIR --points N [--rate R] [--devices K]
 *                      [--poison P] [--batch-lines L] [--flush-ms F] [--timeout-ms T]
 *                      [--gzip 0|1] [--wait-s S] [--version 1|2]
 *       N points (lines) of kind "manhole" with 3 float fields each, unique timestamps;
 *       P more of kind "poison" (the test makes their field type conflict on the server).
 *   influx_feed escape --url URL --dir DIR --cases FILE
 *       one point per case: FILE holds one hex-encoded string per line, used as the
 *       value of tag "label" and of string field "s" of device esc-<i> (kind "esc").
 *
 * Exit 0 when every point was written or dead-lettered before --wait-s ran out. */
#include "config.h"
#include "error.h"
#include "influx/writer.h"
#include "log.h"
#include "sample.h"
#include "spool.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *arg(int argc, char **argv, const char *name, const char *def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return def;
}

static void on_fault(void *ctx, int fault, int status, const char *msg)
{
    (void)ctx;
    printf("fault_event=%d status=%d msg=%s\n", fault, status, msg);
    fflush(stdout);
}

static void print_stats(const gw_influx_stats *s)
{
    printf("state=%s\nlast_status=%d\npoints_written=%llu\nbatches_written=%llu\n"
           "requests=%llu\nretries=%llu\nsplits=%llu\nbytes_raw=%llu\nbytes_sent=%llu\n"
           "net_errors=%llu\nhttp_errors=%llu\ndropped_queue=%llu\ndropped_quality=%llu\n"
           "dropped_unknown_device=%llu\ndropped_nonfinite=%llu\ndropped_rejected=%llu\n"
           "dropped_too_large=%llu\ndropped_spool=%llu\ndropped_deadletter=%llu\n"
           "spool_batches=%llu\nspool_lines=%llu\n",
           gw_influx_state_name(s->state), s->last_status,
           (unsigned long long)s->points_written, (unsigned long long)s->batches_written,
           (unsigned long long)s->requests, (unsigned long long)s->retries,
           (unsigned long long)s->splits, (unsigned long long)s->bytes_raw,
           (unsigned long long)s->bytes_sent, (unsigned long long)s->net_errors,
           (unsigned long long)s->http_errors, (unsigned long long)s->dropped_queue,
           (unsigned long long)s->dropped_quality, (unsigned long long)s->dropped_unknown_device,
           (unsigned long long)s->dropped_nonfinite, (unsigned long long)s->dropped_rejected,
           (unsigned long long)s->dropped_too_large, (unsigned long long)s->dropped_spool,
           (unsigned long long)s->dropped_deadletter, (unsigned long long)s->spool_batches,
           (unsigned long long)s->spool_lines);
}

static int unhex(const char *h, char *out, size_t cap)
{
    size_t n = 0;
    while (h[0] && h[1] && h[0] != '\n' && n + 1 < cap) {
        unsigned v;
        if (sscanf(h, "%2x", &v) != 1)
            return -1;
        out[n++] = (char)v;
        h += 2;
    }
    out[n] = '\0';
    return (int)n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: influx_feed feed|escape --url URL --dir DIR ...\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    gw_log_set_level(GW_LOG_NOTICE);
    const char *mode = argv[1];
    const char *dir = arg(argc, argv, "--dir", ".");
    long points = atol(arg(argc, argv, "--points", "1000"));
    long poison = atol(arg(argc, argv, "--poison", "0"));
    long rate = atol(arg(argc, argv, "--rate", "0"));
    long ndev = atol(arg(argc, argv, "--devices", "10"));
    long wait_s = atol(arg(argc, argv, "--wait-s", "60"));

    gw_config cfg = {0};
    cfg.gateway.id = "GW-500103-0001";
    cfg.gateway.data_dir = (char *)dir;
    gw_influx_cfg *ic = &cfg.influx;
    ic->enabled = 1;
    ic->url = (char *)arg(argc, argv, "--url", "http://127.0.0.1:8086");
    ic->version = atoi(arg(argc, argv, "--version", "1"));
    ic->database = "citygate";
    ic->org = "org";
    ic->bucket = "citygate";
    ic->precision = (char *)arg(argc, argv, "--precision", "us");
    ic->batch_lines = atoi(arg(argc, argv, "--batch-lines", "5000"));
    ic->batch_bytes = atoi(arg(argc, argv, "--batch-bytes", "1048576"));
    ic->flush_ms = atoi(arg(argc, argv, "--flush-ms", "200"));
    ic->timeout_ms = atoi(arg(argc, argv, "--timeout-ms", "2000"));
    ic->gzip = atoi(arg(argc, argv, "--gzip", "1"));
    ic->spool_max_bytes = 256LL << 20;

    /* Cases for escape mode: devices esc-<i> with tag label = case. */
    char **cases = NULL;
    long ncases = 0;
    if (strcmp(mode, "escape") == 0) {
        FILE *f = fopen(arg(argc, argv, "--cases", ""), "r");
        if (!f) {
            perror("cases");
            return 2;
        }
        char line[1024];
        while (fgets(line, sizeof line, f)) {
            cases = realloc(cases, (size_t)(ncases + 1) * sizeof *cases);
            cases[ncases] = malloc(512);
            if (unhex(line, cases[ncases], 512) < 0)
                return 2;
            ncases++;
        }
        fclose(f);
        ndev = ncases;
        points = ncases;
        poison = 0;
    }
    long total_dev = ndev + (poison ? 1 : 0);
    cfg.devices = calloc((size_t)total_dev, sizeof *cfg.devices);
    cfg.n_devices = (size_t)total_dev;
    for (long i = 0; i < total_dev; i++) {
        gw_device *d = &cfg.devices[i];
        char buf[64];
        snprintf(buf, sizeof buf, cases ? "esc-%04ld" : (i < ndev ? "dev-%04ld" : "poison-%ld"), i);
        d->id = strdup(buf);
        d->kind = cases ? "esc" : (i < ndev ? "manhole" : "poison");
        snprintf(buf, sizeof buf, "5001030102%06ld", i);
        d->component.code = strdup(buf);
        d->component.grid = "500103001002003";
        if (cases) {
            d->tags = cJSON_CreateObject();
            cJSON_AddStringToObject(d->tags, "label", cases[i]);
        }
    }

    gw_spool *sp;
    if (gw_spool_open(dir, ic->spool_max_bytes, &sp) != 0)
        return 1;
    gw_influx_writer *w;
    int rc = gw_influx_writer_new(&cfg, sp, &w);
    if (rc) {
        fprintf(stderr, "writer: %s\n", gw_strerror(rc));
        return 1;
    }
    gw_influx_writer_on_fault(w, on_fault, NULL);
    gw_influx_writer_start(w);

    int64_t base = 1700000000000000LL + (gw_now_us() % 1000000) * 1000;
    long total = points + poison;
    int64_t t0 = gw_mono_us();
    for (long i = 0; i < total; i++) {
        gw_sample s[3];
        long dev = i < points ? i % ndev : ndev;
        int64_t ts = base + i * 1000; /* unique per point: 1 ms apart */
        const char *id = cfg.devices[dev].id;
        if (cases) {
            gw_sample_set(&s[0], id, "v", (double)i, "", GW_Q_GOOD, ts);
            gw_sample_set(&s[1], id, "s", 0, "", GW_Q_GOOD, ts);
            s[1].type = GW_V_TEXT;
            snprintf(s[1].text, sizeof s[1].text, "%s", cases[i]);
            s[0].device_idx = s[1].device_idx = (uint32_t)dev;
            gw_influx_writer_submit(w, s, 2);
        } else {
            gw_sample_set(&s[0], id, "tilt_deg", (double)(i % 90) + 0.5, "deg", GW_Q_GOOD, ts);
            gw_sample_set(&s[1], id, "level_m", (double)i / 1000.0, "m", GW_Q_GOOD, ts);
            gw_sample_set(&s[2], id, "battery_v", 3.6, "V", GW_Q_GOOD, ts);
            for (int k = 0; k < 3; k++)
                s[k].device_idx = (uint32_t)dev;
            gw_influx_writer_submit(w, s, 3);
        }
        /* Back-pressure: the writer's queue drops the oldest when full (the daemon
         * must never block its sources); a test feeding at full speed waits instead. */
        for (;;) {
            gw_influx_stats q;
            gw_influx_writer_stats(w, &q);
            if (q.queue_depth < 16384)
                break;
            usleep(500);
        }
        if (rate > 0) {
            int64_t due = t0 + (int64_t)((double)(i + 1) * 1e6 / (double)rate);
            int64_t now = gw_mono_us();
            if (due > now)
                usleep((useconds_t)(due - now));
        }
    }
    int64_t fed_us = gw_mono_us() - t0;

    gw_influx_stats st;
    int64_t deadline = gw_mono_ms() + wait_s * 1000;
    int done = 0;
    while (gw_mono_ms() < deadline) {
        gw_influx_writer_stats(w, &st);
        uint64_t acc = st.points_written + st.dropped_rejected + st.dropped_too_large;
        if (acc >= (uint64_t)total && st.spool_batches == 0) {
            done = 1;
            break;
        }
        usleep(50000);
    }
    int64_t all_us = gw_mono_us() - t0;
    gw_influx_writer_stop(w);
    gw_influx_writer_stats(w, &st);
    printf("generated=%ld\nfeed_ms=%lld\ntotal_ms=%lld\n", total, (long long)(fed_us / 1000),
           (long long)(all_us / 1000));
    print_stats(&st);
    printf("complete=%d\n", done);
    gw_influx_writer_free(w);
    gw_spool_close(sp);
    for (size_t i = 0; i < cfg.n_devices; i++) {
        free(cfg.devices[i].id);
        free(cfg.devices[i].component.code);
        cJSON_Delete(cfg.devices[i].tags);
    }
    free(cfg.devices);
    for (long i = 0; i < ncases; i++)
        free(cases[i]);
    free(cases);
    return done ? 0 : 1;
}
