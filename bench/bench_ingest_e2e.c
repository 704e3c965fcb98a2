/* Consumers for bench/ingest_e2e.sh (run that script; this program is one of its
 * parts). Each drains N QoS 1 messages that a private mosquitto holds for a persistent
 * session and prints "RECEIVED SECONDS" — the time from the first message to the last
 * one being done with:
 *
 *   bench_ingest_e2e paho URL CLIENT_ID N [FILTER...]
 *       bare Paho MQTTAsync subscriber (same library and session settings as the
 *       gateway's ingest), doing nothing with a message: the ceiling of any Paho-based
 *       consumer. With FILTERs it only subscribes (registers the session) and exits.
 *   bench_ingest_e2e core CONFIG N SAMPLES_PER_MESSAGE
 *       the gateway's ingest path linked from citygate_core, without the rest of the
 *       gateway: gw_ingest (topic match, inbox, device lookup) -> gw_decode_message
 *       (decoder chain) -> samples gathered per inbox batch and pushed at once (as
 *       gateway.c does) into the bounded sample queue, drained by a thread that naps
 *       1 ms after a small batch (as the engine thread). Done when N x SAMPLES samples
 *       are drained.
 *
 * Thread: main waits and polls; Paho's threads and the drain thread do the work. */
#include "check.h"
#include "config.h"
#include "decode.h"
#include "error.h"
#include "log.h"
#include "mqtt/ingest.h"
#include "queue.h"
#include "sample.h"
#include "timeutil.h"

#include <MQTTAsync.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_long n_done;
static atomic_llong first_us, last_us;

static void mark(long add)
{
    int64_t now = gw_mono_us();
    long long zero = 0;
    atomic_compare_exchange_strong(&first_us, &zero, now);
    atomic_fetch_add(&n_done, add);
    atomic_store(&last_us, now);
}

static void report(long received)
{
    printf("%ld %.6f\n", received, (double)(atomic_load(&last_us) - atomic_load(&first_us)) / 1e6);
}

/* ---- bare Paho -------------------------------------------------------------------------- */

static int paho_arrived(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    (void)ctx;
    (void)tl;
    mark(1);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static atomic_int paho_state; /* 1 connected, 2 subscribed, -1 failed */

static void paho_subscribed(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    atomic_store(&paho_state, 2);
}

static void paho_connected(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    atomic_store(&paho_state, 1);
}

static void paho_failed(void *ctx, MQTTAsync_failureData *r)
{
    (void)ctx;
    (void)r;
    atomic_store(&paho_state, -1);
}

static int run_paho(const char *url, const char *client_id, long n, char **filters, int n_filters)
{
    MQTTAsync c;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    if (MQTTAsync_createWithOptions(&c, url, client_id, MQTTCLIENT_PERSISTENCE_NONE, NULL, &co) !=
        MQTTASYNC_SUCCESS)
        return 1;
    MQTTAsync_setCallbacks(c, NULL, NULL, paho_arrived, NULL);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    o.cleansession = 0; /* as the ingest: the broker kept our backlog */
    o.keepAliveInterval = 30;
    o.onSuccess = paho_connected;
    o.onFailure = paho_failed;
    if (MQTTAsync_connect(c, &o) != MQTTASYNC_SUCCESS)
        return 1;
    int rc = 0;
    if (n_filters > 0) {
        for (int i = 0; i < 1000 && atomic_load(&paho_state) == 0; i++)
            usleep(10000);
        int *qos = calloc((size_t)n_filters, sizeof *qos);
        for (int i = 0; i < n_filters; i++)
            qos[i] = 1;
        MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
        ro.onSuccess = paho_subscribed;
        ro.onFailure = paho_failed;
        if (atomic_load(&paho_state) != 1 ||
            MQTTAsync_subscribeMany(c, n_filters, filters, qos, &ro) != MQTTASYNC_SUCCESS)
            rc = 1;
        for (int i = 0; !rc && i < 1000 && atomic_load(&paho_state) == 1; i++)
            usleep(10000);
        free(qos);
        rc = rc || atomic_load(&paho_state) != 2;
    } else {
        for (int i = 0; i < 600000 && atomic_load(&n_done) < n && atomic_load(&paho_state) >= 0; i++)
            usleep(1000);
        report(atomic_load(&n_done));
        rc = atomic_load(&n_done) < n;
    }
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    d.timeout = 1000;
    MQTTAsync_disconnect(c, &d);
    for (int i = 0; i < 100 && MQTTAsync_isConnected(c); i++)
        usleep(10000);
    MQTTAsync_destroy(&c);
    return rc;
}

/* ---- citygate core: ingest + decode + sample queue ---------------------------------------- */

/* As gateway.c: the "mqtt-decode" thread gathers the samples of an inbox batch and
 * hands them over at the flush hook (or when 256 are gathered), waiting for room. */
#define CORE_BATCH 256

typedef struct core {
    gw_decoders *dec;
    gw_queue *q;
    size_t n;
    gw_sample s[CORE_BATCH];
} core;

static void core_flush(void *ctx)
{
    core *c = ctx;
    if (c->n)
        gw_queue_push_many(c->q, c->s, c->n, -1);
    c->n = 0;
}

static int core_push(void *ctx, const gw_sample *s)
{
    core *c = ctx;
    if (c->n == CORE_BATCH)
        core_flush(c);
    c->s[c->n++] = *s;
    return 0;
}

static int core_message(void *ctx, size_t device_idx, const char *decoder, const char *topic,
                        const void *payload, size_t len, const cJSON *doc, int64_t recv_ts_us)
{
    (void)topic;
    gw_decode_parsed(((core *)ctx)->dec, device_idx, decoder, payload, len, doc, recv_ts_us,
                     core_push, ctx);
    return 0;
}

/* As the gateway's engine thread, without the engine: pop up to 512, nap 1 ms after a
 * small batch. */
static void *core_drain(void *arg)
{
    core *c = arg;
    enum { BATCH = 512 };
    gw_sample *b = malloc(BATCH * sizeof *b);
    for (;;) {
        int n = gw_queue_pop_many(c->q, b, BATCH, 250);
        if (n == GW_ECLOSED)
            break;
        if (n > 0)
            mark(n);
        if (n > 0 && n < BATCH / 8)
            usleep(1000);
    }
    free(b);
    return NULL;
}

static int run_core(const char *file, long n, long per_msg)
{
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    gw_ingest *ing = NULL;
    pthread_t th;
    int rc = 1, drain = 0;
    core *c = calloc(1, sizeof *c); /* the batch buffer is large: not on the stack */
    if (!c)
        return 1;
    if (gw_config_load_checked(file, &errs, &cfg) != 0 ||
        gw_decoders_create(cfg, NULL, &errs, &c->dec) != 0) {
        gw_cfgerr_print(&errs, 2);
        goto out;
    }
    if (gw_queue_new(65536, sizeof(gw_sample), GW_QUEUE_BLOCK, &c->q) != 0 ||
        pthread_create(&th, NULL, core_drain, c) != 0)
        goto out;
    drain = 1;
    gw_ingest_hooks hooks = {.ctx = c, .on_message = core_message, .flush = core_flush};
    if (gw_ingest_new(cfg, &hooks, &ing) != 0 || gw_ingest_start(ing) != 0)
        goto out;
    long want = n * per_msg;
    for (int i = 0; i < 600000 && atomic_load(&n_done) < want; i++)
        usleep(1000);
    gw_ingest_stats st;
    gw_ingest_stats_get(ing, 0, &st);
    report((long)st.matched);
    rc = atomic_load(&n_done) < want || gw_decode_bad_total(c->dec) != 0;
    if (rc)
        fprintf(stderr, "core: %ld of %ld samples, %llu bad payloads\n", atomic_load(&n_done), want,
                (unsigned long long)gw_decode_bad_total(c->dec));
out:
    gw_ingest_free(ing);
    if (drain) {
        gw_queue_shutdown(c->q);
        pthread_join(th, NULL);
    }
    gw_queue_free(c->q);
    gw_decoders_free(c->dec);
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    free(c);
    return rc;
}

int main(int argc, char **argv)
{
    gw_log_set_level(GW_LOG_WARN);
    if (argc >= 5 && strcmp(argv[1], "paho") == 0)
        return run_paho(argv[2], argv[3], atol(argv[4]), argv + 5, argc - 5);
    if (argc == 5 && strcmp(argv[1], "core") == 0)
        return run_core(argv[2], atol(argv[3]), atol(argv[4]));
    fprintf(stderr, "usage: bench_ingest_e2e paho URL CLIENT_ID N [FILTER...]\n"
                    "       bench_ingest_e2e core CONFIG N SAMPLES_PER_MESSAGE\n"
                    "(a part of bench/ingest_e2e.sh: run that)\n");
    return 2;
}
