/* Test driver for gateway/mqtt/upstream.c: an in-memory outbox behind the publisher.
 *
 *   mqtt_upstream_driver --url URL --gw ID [--prefix P] [--events N] [--rate R]
 *                        [--inflight K] [--version 3|5] [--report S] [--stats FILE] [--debug]
 *
 * A producer thread commits N events at R per second (seq 1..N; every 25th is a
 * retained alarm-state message, every 50th an empty retained one = cleared) and calls
 * gw_upstream_notify(). acked(seq) must come in strictly increasing order and only for
 * committed seqs, else the driver exits 3. Commands: "ack" answers {"acked": alarm_id},
 * "fail" answers an error; others GW_ENOTFOUND. Every 200 ms (and at exit) the stats
 * go to FILE as one line "key=value ..."; "ALL ACKED n" is printed once every event
 * is acked. SIGTERM / SIGINT: clean stop (status "offline"), exit 0. */
#include "alloc.h"
#include "error.h"
#include "log.h"
#include "mqtt/upstream.h"
#include "timeutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct outbox {
    pthread_mutex_t mu;
    uint64_t n, committed, last_acked;
    int order_error;
    gw_upstream *up;
    double rate;
} outbox;

static void make_msg(uint64_t seq, char *topic, size_t tn, char *payload, size_t pn, int *retained)
{
    *retained = 0;
    if (seq % 50 == 0) {
        snprintf(topic, tn, "alarm/mh-%04u/cover-tilt", (unsigned)(seq % 7));
        payload[0] = '\0';
        *retained = 1;
    } else if (seq % 25 == 0) {
        snprintf(topic, tn, "alarm/mh-%04u/cover-tilt", (unsigned)(seq % 7));
        snprintf(payload, pn, "{\"state\":\"active_unacked\",\"seq\":%" PRIu64 "}", seq);
        *retained = 1;
    } else {
        snprintf(topic, tn, "event/mh-%04u", (unsigned)(seq % 7));
        snprintf(payload, pn,
                 "{\"schema\":\"citygate.event/1\",\"event_id\":\"ev-%06" PRIu64
                 "\",\"seq\":%" PRIu64 ",\"type\":\"raised\"}",
                 seq, seq);
    }
}

static int fetch(void *ctx, uint64_t after, size_t max, gw_upstream_emit_fn emit, void *ectx)
{
    outbox *o = ctx;
    pthread_mutex_lock(&o->mu);
    uint64_t committed = o->committed;
    pthread_mutex_unlock(&o->mu);
    int n = 0;
    for (uint64_t seq = after + 1; seq <= committed && (size_t)n < max; seq++) {
        char topic[96], payload[256];
        int retained;
        make_msg(seq, topic, sizeof topic, payload, sizeof payload, &retained);
        gw_upstream_msg m = {seq, topic, payload, strlen(payload), retained};
        emit(ectx, &m);
        n++;
    }
    return n;
}

static void acked(void *ctx, uint64_t seq)
{
    outbox *o = ctx;
    pthread_mutex_lock(&o->mu);
    if (seq <= o->last_acked || seq > o->committed) {
        fprintf(stderr, "ORDER ERROR: acked %" PRIu64 " after %" PRIu64 " (committed %" PRIu64 ")\n",
                seq, o->last_acked, o->committed);
        o->order_error = 1;
    }
    o->last_acked = seq;
    pthread_mutex_unlock(&o->mu);
}

static int command(void *ctx, const char *verb, const char *payload, size_t len, char **reply)
{
    (void)ctx;
    (void)len;
    printf("COMMAND %s %s\n", verb, payload);
    fflush(stdout);
    if (strcmp(verb, "fail") == 0)
        return GW_EINVAL;
    if (strcmp(verb, "ack") != 0)
        return GW_ENOTFOUND;
    cJSON *req = cJSON_Parse(payload);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(req, "alarm_id");
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "acked", cJSON_IsString(id) ? id->valuestring : "");
    char *text = cJSON_PrintUnformatted(r);
    *reply = gw_strdup(text);
    cJSON_free(text);
    cJSON_Delete(r);
    cJSON_Delete(req);
    return 0;
}

static char *report(void *ctx)
{
    outbox *o = ctx;
    char buf[128];
    pthread_mutex_lock(&o->mu);
    snprintf(buf, sizeof buf, "{\"committed\":%" PRIu64 ",\"acked\":%" PRIu64 "}", o->committed,
             o->last_acked);
    pthread_mutex_unlock(&o->mu);
    return gw_strdup(buf);
}

static void *producer(void *arg)
{
    outbox *o = arg;
    int64_t t0 = gw_mono_us();
    for (uint64_t i = 1; i <= o->n; i++) {
        if (o->rate > 0) {
            int64_t due = t0 + (int64_t)((double)i * 1e6 / o->rate);
            int64_t now = gw_mono_us();
            if (due > now)
                usleep((useconds_t)(due - now));
        }
        pthread_mutex_lock(&o->mu);
        o->committed = i;
        pthread_mutex_unlock(&o->mu);
        gw_upstream_notify(o->up);
    }
    return NULL;
}

static void write_stats(const char *file, gw_upstream *up, outbox *o)
{
    if (!file)
        return;
    gw_upstream_stats st;
    gw_upstream_stats_get(up, &st);
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s.tmp", file);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return;
    pthread_mutex_lock(&o->mu);
    fprintf(f,
            "connected=%d published=%" PRIu64 " republished=%" PRIu64 " acked=%" PRIu64
            " failed=%" PRIu64 " inflight=%" PRIu64 " connects=%" PRIu64
            " connect_failures=%" PRIu64 " losses=%" PRIu64 " commands=%" PRIu64
            " malformed=%" PRIu64 " reports=%" PRIu64 " committed=%" PRIu64
            " last_acked=%" PRIu64 " order_error=%d\n",
            st.connected, st.published, st.republished, st.acked, st.failed, st.inflight,
            st.connects, st.connect_failures, st.connection_losses, st.commands,
            st.commands_malformed, st.reports, o->committed, o->last_acked, o->order_error);
    pthread_mutex_unlock(&o->mu);
    fclose(f);
    rename(tmp, file);
}

int main(int argc, char **argv)
{
    gw_upstream_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.enabled = 1;
    cfg.conn.mqtt_version = 3;
    cfg.conn.keepalive_s = 5;
    cfg.topic_prefix = "citygate";
    cfg.max_inflight = 10;
    cfg.report_interval_s = 0;
    const char *gw = "GW-TEST", *stats = NULL;
    outbox o = {.n = 1000, .rate = 500};
    pthread_mutex_init(&o.mu, NULL);

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--debug")) {
            gw_log_set_level(GW_LOG_DEBUG);
            continue;
        }
        if (!v) {
            fprintf(stderr, "missing value for %s\n", a);
            return 2;
        }
        i++;
        if (!strcmp(a, "--url")) cfg.conn.url = (char *)v;
        else if (!strcmp(a, "--gw")) gw = v;
        else if (!strcmp(a, "--prefix")) cfg.topic_prefix = (char *)v;
        else if (!strcmp(a, "--client-id")) cfg.conn.client_id = (char *)v;
        else if (!strcmp(a, "--events")) o.n = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--rate")) o.rate = atof(v);
        else if (!strcmp(a, "--inflight")) cfg.max_inflight = atoi(v);
        else if (!strcmp(a, "--version")) cfg.conn.mqtt_version = atoi(v);
        else if (!strcmp(a, "--report")) cfg.report_interval_s = atoi(v);
        else if (!strcmp(a, "--stats")) stats = v;
        else {
            fprintf(stderr, "unknown option %s\n", a);
            return 2;
        }
    }
    if (!cfg.conn.url) {
        fprintf(stderr, "--url is required\n");
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    gw_upstream_hooks hooks = {&o, fetch, acked, command, report};
    int rc = gw_upstream_new(&cfg, gw, &hooks, &o.up);
    if (rc) {
        fprintf(stderr, "gw_upstream_new: %s\n", gw_strerror(rc));
        return 2;
    }
    if (gw_upstream_start(o.up))
        return 2;
    pthread_t prod;
    pthread_create(&prod, NULL, producer, &o);

    int all_printed = 0;
    for (;;) {
        struct timespec ts = {0, 200 * 1000000L};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            break;
        write_stats(stats, o.up, &o);
        pthread_mutex_lock(&o.mu);
        int all = o.committed == o.n && o.last_acked == o.n;
        pthread_mutex_unlock(&o.mu);
        if (all && !all_printed) {
            printf("ALL ACKED %" PRIu64 "\n", o.n);
            all_printed = 1;
        }
    }
    pthread_join(prod, NULL);
    gw_upstream_stop(o.up, 2000);
    write_stats(stats, o.up, &o);
    gw_upstream_free(o.up);
    printf("STOPPED\n");
    return o.order_error ? 3 : 0;
}
