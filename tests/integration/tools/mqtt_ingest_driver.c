/* Test driver for gateway/mqtt/ingest.c: one source with a named-segment subscription
 * and a JSON-path subscription, a few devices, and an on_message hook that prints what
 * it got.
 *
 *   mqtt_ingest_driver --url URL [--client-id ID] [--max-payload N] [--version 3|5]
 *                      [--full-first K] [--stats FILE] [--quiet] [--check]
 *                      [--slow-first N]
 *
 * Source "lora": "application/+/device/{dev_eui}/event/up" (decoder chirpstack) and
 * "city/sensors/json" (decoder json, device_key "meta.id"). Devices: mh-0101 (key
 * 24e124713b100001), mh-0102 (key 24E124713B100002, decoder override "manhole"),
 * wm-7 (key sensor-7), lamp-9 (key 9, numeric in payloads), and mh-0900 on another
 * source (key 24e1247100000900: must count as unknown here).
 * Each taken message prints "MSG device=<id> decoder=<d> topic=<t> len=<n> doc=<1 when
 * the hook got the payload parsed, else 0> body=<payload, up to 80 bytes, non-printables
 * as '.'>". --full-first K makes the
 * first K hand-overs answer GW_EFULL (queue full). --check: payloads are "seq=N;" and
 * then byte i is 'a' + (N + i) % 26; each prints "SEQ N LEN ok" (or what is wrong)
 * instead. --slow-first N: the first N hand-overs take 50 ms each, so the inbox fills
 * and Paho's thread defers. Stats go to FILE every 200 ms as
 * "key=value ...". SIGTERM / SIGINT: stop, exit 0. */
#include "alloc.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "mqtt/ingest.h"
#include "timeutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct drv {
    const gw_config *cfg;
    atomic_long full_left;
    int quiet;
    int check;        /* --check: payloads are "seq=N;" + filler, verified and reported */
    long slow_first;  /* --slow-first N: the first N messages take 50 ms each */
    long seen;
    atomic_ulong taken;
} drv;

/* --check payloads: "seq=N;" then byte i is 'a' + (N + i) % 26. */
static void check_payload(const void *payload, size_t len)
{
    const char *p = payload;
    long seq = -1;
    int hl = 0;
    char head[24];
    size_t n = len < sizeof head - 1 ? len : sizeof head - 1;
    memcpy(head, p, n);
    head[n] = '\0';
    if (sscanf(head, "seq=%ld;%n", &seq, &hl) != 1 || hl == 0) {
        printf("SEQ bad-header %zu\n", len);
        return;
    }
    for (size_t i = (size_t)hl; i < len; i++)
        if (p[i] != (char)('a' + (size_t)(seq + (long)i) % 26)) {
            printf("SEQ %ld %zu bad-at-%zu\n", seq, len, i);
            return;
        }
    printf("SEQ %ld %zu ok\n", seq, len);
}

static int on_message(void *ctx, size_t device_idx, const char *decoder, const char *topic,
                      const void *payload, size_t len, const struct cJSON *doc,
                      int64_t recv_ts_us)
{
    drv *d = ctx;
    (void)recv_ts_us;
    if (atomic_load(&d->full_left) > 0 && atomic_fetch_sub(&d->full_left, 1) > 0)
        return GW_EFULL;
    atomic_fetch_add(&d->taken, 1);
    if (d->slow_first > 0 && d->seen++ < d->slow_first)
        usleep(50000);
    if (d->check) {
        check_payload(payload, len);
        return 0;
    }
    if (d->quiet)
        return 0;
    char body[81];
    size_t n = len < 80 ? len : 80;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = ((const unsigned char *)payload)[i];
        body[i] = c >= 0x20 && c < 0x7f ? (char)c : '.';
    }
    body[n] = '\0';
    printf("MSG device=%s decoder=%s topic=%s len=%zu doc=%d body=%s\n",
           d->cfg->devices[device_idx].id, decoder, topic, len, doc != NULL, body);
    return 0;
}

static void write_stats(const char *file, gw_ingest *ing, drv *d)
{
    if (!file)
        return;
    gw_ingest_stats st;
    if (gw_ingest_stats_get(ing, 0, &st))
        return;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    fprintf(f,
            "connected=%d received=%" PRIu64 " matched=%" PRIu64 " unknown=%" PRIu64
            " oversize=%" PRIu64 " bad_json=%" PRIu64 " no_key=%" PRIu64 " no_match=%" PRIu64
            " deferred=%" PRIu64 " rejected=%" PRIu64 " connects=%" PRIu64 " losses=%" PRIu64
            " taken=%lu\n",
            st.connected, st.received, st.matched, st.unknown_device, st.oversize, st.bad_json,
            st.no_key, st.no_match, st.deferred, st.rejected, st.connects, st.connection_losses,
            (unsigned long)atomic_load(&d->taken));
    fclose(f);
    rename(tmp, file);
}

int main(int argc, char **argv)
{
    const char *url = NULL, *client_id = "citygate-test-ingest", *stats = NULL;
    size_t max_payload = 4096;
    int version = 3;
    drv d = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quiet")) {
            d.quiet = 1;
            continue;
        }
        if (!strcmp(a, "--check")) {
            d.check = 1;
            continue;
        }
        const char *v = i + 1 < argc ? argv[++i] : NULL;
        if (!v) {
            fprintf(stderr, "missing value for %s\n", a);
            return 2;
        }
        if (!strcmp(a, "--url")) url = v;
        else if (!strcmp(a, "--client-id")) client_id = v;
        else if (!strcmp(a, "--max-payload")) max_payload = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--version")) version = atoi(v);
        else if (!strcmp(a, "--full-first")) atomic_store(&d.full_left, atol(v));
        else if (!strcmp(a, "--stats")) stats = v;
        else if (!strcmp(a, "--slow-first")) d.slow_first = atol(v);
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (!url) {
        fprintf(stderr, "--url is required\n");
        return 2;
    }

    gw_mqtt_sub subs[2] = {
        {.topic = "application/+/device/{dev_eui}/event/up", .decoder = "chirpstack", .qos = 1},
        {.topic = "city/sensors/json", .decoder = "json", .device_key = "meta.id", .qos = 1},
    };
    gw_mqtt_source src = {.id = "lora", .subs = subs, .n_subs = 2, .max_payload = max_payload};
    src.conn.url = (char *)url;
    src.conn.client_id = (char *)client_id;
    src.conn.mqtt_version = version;
    src.conn.keepalive_s = 5;
    gw_device devs[5];
    memset(devs, 0, sizeof devs);
    static const struct { const char *id, *key, *source, *decoder; } dd[] = {
        {"mh-0101", "24e124713b100001", "lora", NULL},
        {"mh-0102", "24E124713B100002", "lora", "manhole"},
        {"wm-7", "sensor-7", "lora", NULL},
        {"lamp-9", "9", "lora", NULL},
        {"mh-0900", "24e1247100000900", "other", NULL},
    };
    for (size_t i = 0; i < 5; i++) {
        devs[i].id = (char *)dd[i].id;
        devs[i].kind = "manhole";
        devs[i].source = GW_SRC_MQTT;
        devs[i].mqtt_source = (char *)dd[i].source;
        devs[i].key = (char *)dd[i].key;
        devs[i].decoder = (char *)dd[i].decoder;
        devs[i].enabled = 1;
    }
    gw_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.file = "driver";
    cfg.gateway.id = "GW-TEST";
    cfg.mqtt_sources = &src;
    cfg.n_mqtt_sources = 1;
    cfg.devices = devs;
    cfg.n_devices = 5;
    d.cfg = &cfg;

    gw_cfgerr errs = {0};
    if (gw_ingest_check(&cfg, &errs)) {
        gw_cfgerr_print(&errs, 2);
        return 2;
    }
    gw_cfgerr_free(&errs);

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    gw_ingest_hooks hooks = {&d, on_message};
    gw_ingest *ing = NULL;
    int rc = gw_ingest_new(&cfg, &hooks, &ing);
    if (rc) {
        fprintf(stderr, "gw_ingest_new: %s\n", gw_strerror(rc));
        return 2;
    }
    if (gw_ingest_start(ing))
        return 2;
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        write_stats(stats, ing, &d);
    }
    gw_ingest_stop(ing);
    write_stats(stats, ing, &d);
    gw_ingest_free(ing);
    printf("STOPPED\n");
    return 0;
}
