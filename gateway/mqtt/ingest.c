/* MQTT sensor ingest (see ingest.h for the contract).
 *
 * Per source: one MQTTAsync client, its compiled subscriptions, a sorted table of its
 * device keys, counters under a small mutex, and a bounded set of unknown keys already
 * logged. Paho runs every client's callbacks on its one receive thread, which matches
 * the topic and copies the message into the inbox (mqtt/inbox.h: one short lock); the
 * "mqtt-decode" thread reads the inbox in place, finds the device and calls the hook.
 * Complaints: BAD_NO_MATCH, BAD_OVERSIZE and full_complaint belong to Paho's thread;
 * BAD_JSON, BAD_NO_KEY, the unknown-key set, hook_full_complaint and stop_complaint to
 * "mqtt-decode". The "mqtt-ingest" thread only (re)connects; connect results and
 * connection losses arrive in callbacks that set the state under the ingest mutex and
 * wake it. */
#include "mqtt/ingest.h"

#include "alloc.h"
#include "decode.h"
#include "error.h"
#include "log.h"
#include "mqtt/client.h"
#include "mqtt/inbox.h"
#include "mqtt/topic.h"
#include "sample.h"
#include "timeutil.h"

#include <MQTTAsync.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define AREA "mqtt-ingest"
#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 30000
#define SESSION_EXPIRY_S 604800 /* MQTT 5: keep the session a week */
#define UNKNOWN_SET 256
#define KEY_MAX 128
/* Per-message counters are relaxed atomics (no lock on the message path); the rest of
 * the stats (connected, last_error, connection counters) is under stats_mu. */
#define COUNT(s, field) __atomic_add_fetch(&(s)->st.field, 1, __ATOMIC_RELAXED)
#define LOAD(s, field) __atomic_load_n(&(s)->st.field, __ATOMIC_RELAXED)

typedef struct devkey {
    const char *key;
    size_t device_idx;
    const char *decoder;   /* device override or NULL */
} devkey;

typedef struct sub {
    gw_topic_pattern pat;
    const gw_mqtt_sub *cfg;
} isub;

typedef enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP } conn_state;

typedef struct source {
    struct gw_ingest *ing;
    const gw_mqtt_source *cfg;
    size_t idx;
    MQTTAsync client;
    int tls, v5;
    MQTTAsync_SSLOptions ssl;
    isub *subs;
    size_t n_subs;
    char **filters;
    int *qos;
    devkey *keys;
    size_t n_keys;
    size_t max_payload;
    /* one thread each, as the file comment says */
    uint32_t unknown_hash[UNKNOWN_SET];
    size_t n_unknown;
    gw_complaint unknown_complaint;
    gw_complaint bad_complaint[5]; /* per reason (BAD_*): a new reason is always logged */
    gw_complaint full_complaint;      /* inbox full (Paho's thread) */
    gw_complaint hook_full_complaint; /* core full ("mqtt-decode") */
    gw_complaint stop_complaint;      /* stopping with the core full ("mqtt-decode") */
    /* under ing->mu */
    conn_state conn;
    int64_t next_connect_ms;
    int64_t backoff_ms;
    gw_complaint conn_complaint;
    /* under stats_mu */
    pthread_mutex_t stats_mu;
    gw_ingest_stats st;
} source;

struct gw_ingest {
    const gw_config *cfg;
    gw_ingest_hooks hooks;
    source *src;
    size_t n_src;
    pthread_t thread, decode_thread;
    int started, decode_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    gw_inbox *box; /* NULL without sources */
};

/* ---- JSON path ----------------------------------------------------------------------- */

/* Syntax of a device_key path: name ( "[" digits "]" )* ( "." name ... )*, where a
 * name is 1+ bytes other than ".", "[", "]" and control characters. */
static int path_ok(const char *p)
{
    if (!p || !*p)
        return 0;
    for (;;) {
        size_t n = 0;
        while (p[n] && p[n] != '.' && p[n] != '[' && p[n] != ']' && (unsigned char)p[n] >= 0x20)
            n++;
        if (n == 0 || n >= KEY_MAX)
            return 0;
        p += n;
        while (*p == '[') {
            p++;
            if (!(*p >= '0' && *p <= '9'))
                return 0;
            while (*p >= '0' && *p <= '9')
                p++;
            if (*p++ != ']')
                return 0;
        }
        if (*p == '\0')
            return 1;
        if (*p++ != '.')
            return 0;
    }
}

/* ---- device keys ------------------------------------------------------------------------ */

static int devkey_cmp(const void *a, const void *b)
{
    return strcasecmp(((const devkey *)a)->key, ((const devkey *)b)->key);
}

static const devkey *find_key(const source *s, const char *key)
{
    devkey probe = {key, 0, NULL};
    return bsearch(&probe, s->keys, s->n_keys, sizeof *s->keys, devkey_cmp);
}

static uint32_t hash_key(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)tolower((unsigned char)s[i]);
        h *= 16777619u;
    }
    return h ? h : 1;
}

/* Log an unknown key once (by hash; a collision only costs a log line). */
static void unknown_device(source *s, const char *key, const char *topic)
{
    COUNT(s, unknown_device);
    uint32_t h = hash_key(key, strlen(key));
    for (size_t i = 0; i < s->n_unknown; i++)
        if (s->unknown_hash[i] == h)
            return;
    if (s->n_unknown < UNKNOWN_SET) {
        s->unknown_hash[s->n_unknown++] = h;
        gw_warn(AREA, "%s: unknown device key \"%.64s\" (topic %.128s); counted and dropped",
                s->cfg->id, key, topic);
        return;
    }
    gw_complain(&s->unknown_complaint, 0, 60000, 3600000, GW_LOG_WARN, AREA,
                "%s: more unknown device keys, e.g. \"%.64s\"", s->cfg->id, key);
}

/* ---- message path (Paho's receive thread) ------------------------------------------------ */

enum { BAD_OVERSIZE = 1, BAD_JSON, BAD_NO_KEY, BAD_NO_MATCH };
_Static_assert(BAD_NO_MATCH < sizeof ((source *)0)->bad_complaint / sizeof(gw_complaint),
               "one complaint per reason");

static void count_bad(source *s, int why, const char *topic, size_t len)
{
    static const char *const names[] = {"", "payload over max_payload", "invalid JSON",
                                        "no device key at the JSON path",
                                        "topic matches no subscription"};
    switch (why) {
    case BAD_OVERSIZE: COUNT(s, oversize); break;
    case BAD_JSON: COUNT(s, bad_json); break;
    case BAD_NO_KEY: COUNT(s, no_key); break;
    default: COUNT(s, no_match); break;
    }
    gw_complain(&s->bad_complaint[why], 0, 10000, 600000, GW_LOG_WARN, AREA,
                "%s: message on %.128s (%zu bytes) dropped: %s", s->cfg->id, topic, len,
                names[why]);
}

/* Device key from the payload by JSON path, into key[KEY_MAX]. The payload is parsed
 * as the decoders parse it (gw_decode_json_parse: size, depth, whole buffer); *doc
 * gets the tree (the caller frees it with gw_decode_json_free) so that the decoder need not
 * parse it again. Returns 0 or BAD_*. */
static int key_from_payload(const char *path, const char *payload, size_t len, size_t max,
                            char *key, cJSON **doc)
{
    int reason;
    if (gw_decode_json_parse(payload, len, max, doc, &reason))
        return BAD_JSON;
    const cJSON *v = gw_decode_json_path(*doc, path);
    if (cJSON_IsString(v) && v->valuestring[0] && strlen(v->valuestring) < KEY_MAX) {
        strcpy(key, v->valuestring);
        return 0;
    }
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble == floor(v->valuedouble) &&
        fabs(v->valuedouble) < 1e15) {
        snprintf(key, KEY_MAX, "%.0f", v->valuedouble);
        return 0;
    }
    return BAD_NO_KEY;
}

/* ---- the inbox (mqtt/inbox.h): owner = the source, tag = the subscription index, key =
 * the named topic level ------------------------------------------------------------------ */

#define INBOX_MIN (4u << 20)
#define INBOX_WAIT_MS 1000    /* Paho's thread waits this long for room, then defers */
#define RETRY_MAX_MS 500      /* the hook said full: retry after 10, 20, .. 500 ms */

/* ---- message path, part 1: Paho's receive thread ------------------------------------------- */

static int put(gw_inbox *box, source *s, uint32_t sub, const char *topic, size_t tl,
               const void *payload, size_t len, const gw_topic_capture *cap, int64_t now)
{
    gw_inbox_msg m = {
        .owner = s,
        .recv_us = now,
        .tag = sub,
        .has_key = cap->value != NULL,
        .key_off = cap->value ? (uint32_t)(cap->value - topic) : 0,
        .key_len = (uint32_t)cap->len,
        .topic = topic,
        .topic_len = tl,
        .payload = payload,
        .len = len,
    };
    /* GW_EFULL (no room within the wait), GW_ECLOSED (stopping) and GW_EINVAL (cannot
     * happen: the inbox holds two of the largest) all leave the message to Paho. */
    return gw_inbox_put(box, &m, INBOX_WAIT_MS);
}

/* Match the topic, check the size, copy the message into the inbox. Paho has already
 * acknowledged a QoS 1 message when it calls this (MQTTProtocol_handlePublishes sends
 * the PUBACK first), so nothing slow happens here: a full inbox is waited on for at
 * most INBOX_WAIT_MS, then the message is left to Paho, which calls again later. */
static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    source *s = ctx;
    gw_ingest *ing = s->ing;
    int64_t now = gw_now_us();
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    size_t len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0;

    COUNT(s, received);

    /* A topic with an embedded NUL cannot name a device safely (the hook gets a C
     * string): treat it as matching nothing. */
    size_t hit = s->n_subs;
    gw_topic_capture cap = {NULL, 0};
    if (strlen(topic) == tl) {
        for (size_t i = 0; i < s->n_subs && hit == s->n_subs; i++)
            if (gw_topic_pattern_match(&s->subs[i].pat, topic, tl, &cap))
                hit = i;
    }
    if (hit == s->n_subs) {
        count_bad(s, BAD_NO_MATCH, topic, len);
    } else if (len > s->max_payload) {
        count_bad(s, BAD_OVERSIZE, topic, len);
    } else if (put(ing->box, s, (uint32_t)hit, topic, tl, m->payload, len, &cap, now)) {
        COUNT(s, deferred);
        gw_complain(&s->full_complaint, 0, 10000, 600000, GW_LOG_WARN, AREA,
                    "%s: core busy; messages are held by the MQTT client", s->cfg->id);
        return 0; /* Paho keeps it and calls again later */
    }
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

/* ---- message path, part 2: the "mqtt-decode" thread ------------------------------------------ */

/* Hand one message to the core. A hook that says "full" is called again (10 ms,
 * doubling to 500 ms) until it takes the message or the ingest stops: messages stay in
 * order and none is taken twice. doc: the payload already parsed, or NULL. */
static void hand_over(gw_ingest *ing, source *s, const devkey *dk, const isub *sub,
                      const gw_inbox_msg *r, const cJSON *doc)
{
    /* The subscription's decoder: gw_decode_message applies the device's own decoder
     * itself (after unwrapping an envelope such as chirpstack), see decode.h. */
    const char *decoder = sub->cfg->decoder ? sub->cfg->decoder : "json";
    for (int wait = 10;; wait = wait * 2 < RETRY_MAX_MS ? wait * 2 : RETRY_MAX_MS) {
        int rc = ing->hooks.on_message(ing->hooks.ctx, dk->device_idx, decoder, r->topic,
                                       r->payload, r->len, doc, r->recv_us);
        if (rc == 0) {
            COUNT(s, matched);
            return;
        }
        if (rc != GW_EFULL && rc != GW_ETIMEDOUT && rc != GW_EAGAIN) {
            COUNT(s, rejected);
            return;
        }
        COUNT(s, deferred);
        gw_complain(&s->hook_full_complaint, 0, 10000, 600000, GW_LOG_WARN, AREA,
                    "%s: core queue full; MQTT messages wait in the inbox", s->cfg->id);
        if (gw_inbox_stopping(ing->box)) {
            /* every message left gets one try: rate-limited, a full inbox is thousands */
            COUNT(s, rejected);
            gw_complain(&s->stop_complaint, 0, 10000, 600000, GW_LOG_WARN, AREA,
                        "%s: stopping with the core queue full: messages dropped (e.g. on %.128s; "
                        "see the rejected count)", s->cfg->id, r->topic);
            return;
        }
        gw_inbox_nap(ing->box, wait);
    }
}

/* Find the device of one message (a named topic level, or a JSON path into the
 * payload, which is then parsed once for the key and the decoder) and hand it over. */
static void deliver(gw_ingest *ing, const gw_inbox_msg *r)
{
    source *s = r->owner;
    const isub *sub = &s->subs[r->tag];
    const char *topic = r->topic;
    const char *payload = r->payload;
    char key[KEY_MAX];
    cJSON *doc = NULL;
    int bad = 0;
    if (r->has_key) {
        size_t n = r->key_len < sizeof key ? r->key_len : sizeof key - 1;
        memcpy(key, topic + r->key_off, n); /* too long: cannot match, logged as unknown */
        key[n] = '\0';
    } else if (sub->cfg->device_key) {
        bad = key_from_payload(sub->cfg->device_key, payload, r->len, s->max_payload, key, &doc);
    } else {
        bad = BAD_NO_KEY;
    }
    const devkey *dk = bad ? NULL : find_key(s, key);
    if (bad)
        count_bad(s, bad, topic, r->len);
    else if (!dk)
        unknown_device(s, key, topic);
    if (dk)
        hand_over(ing, s, dk, sub, r, doc);
    gw_decode_json_free(doc);
}

static void *decode_main(void *arg)
{
    gw_ingest *ing = arg;
    gw_inbox_batch it;
    gw_inbox_msg m;
    while (gw_inbox_begin(ing->box, &it)) {
        while (gw_inbox_next(ing->box, &it, &m))
            deliver(ing, &m);
        if (ing->hooks.flush)
            ing->hooks.flush(ing->hooks.ctx);
        gw_inbox_end(ing->box, &it);
    }
    return NULL; /* stopping, and everything put is delivered */
}

/* ---- connection (Paho threads, and the ingest thread) ------------------------------------ */

static void set_error(source *s, const char *what, const char *detail)
{
    pthread_mutex_lock(&s->stats_mu);
    snprintf(s->st.last_error, sizeof s->st.last_error, "%.24s%s%.96s", what,
             detail && detail[0] ? ": " : "", detail ? detail : "");
    pthread_mutex_unlock(&s->stats_mu);
}

static void on_sub_ok(void *ctx, MQTTAsync_successData *r)
{
    source *s = ctx;
    if (s->n_subs == 1 && r && r->alt.qos == 0x80)
        gw_error(AREA, "%s: broker refused the subscription %s", s->cfg->id, s->filters[0]);
    else if (s->n_subs > 1 && r && r->alt.qosList)
        for (size_t i = 0; i < s->n_subs; i++)
            if (r->alt.qosList[i] == 0x80)
                gw_error(AREA, "%s: broker refused the subscription %s", s->cfg->id,
                         s->filters[i]);
}

static void on_sub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    source *s = ctx;
    if (!r)
        return;
    if (r->alt.sub.reasonCodeCount <= 0 && r->reasonCode >= 0x80)
        gw_error(AREA, "%s: broker refused the subscriptions (reason %d)", s->cfg->id,
                 (int)r->reasonCode);
    for (int i = 0; i < r->alt.sub.reasonCodeCount && (size_t)i < s->n_subs; i++)
        if (r->alt.sub.reasonCodes[i] >= 0x80)
            gw_error(AREA, "%s: broker refused the subscription %s (reason %d)", s->cfg->id,
                     s->filters[i], (int)r->alt.sub.reasonCodes[i]);
}

static void on_sub_fail(void *ctx, MQTTAsync_failureData *r)
{
    source *s = ctx;
    gw_error(AREA, "%s: subscribing failed (%d)", s->cfg->id, r ? r->code : -1);
    set_error(s, "subscribe failed", r && r->message ? r->message : NULL);
}

static void on_sub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
    source *s = ctx;
    gw_error(AREA, "%s: subscribing failed (%d)", s->cfg->id, r ? r->code : -1);
    set_error(s, "subscribe failed", r && r->message ? r->message : NULL);
}

static void subscribe_all(source *s)
{
    if (!s->n_subs)
        return;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = s;
    if (s->v5) {
        ro.onSuccess5 = on_sub_ok5;
        ro.onFailure5 = on_sub_fail5;
    } else {
        ro.onSuccess = on_sub_ok;
        ro.onFailure = on_sub_fail;
    }
    int rc = MQTTAsync_subscribeMany(s->client, (int)s->n_subs, s->filters, s->qos, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(AREA, "%s: cannot subscribe: %s", s->cfg->id, MQTTAsync_strerror(rc));
        set_error(s, "subscribe refused", MQTTAsync_strerror(rc));
    }
}

static void connected(source *s, int session_present)
{
    gw_ingest *ing = s->ing;
    pthread_mutex_lock(&ing->mu);
    s->conn = CONN_UP;
    s->backoff_ms = RECONNECT_MIN_MS;
    gw_complain_clear(&s->conn_complaint, AREA, "%s: connected to %s", s->cfg->id,
                      s->cfg->conn.url);
    pthread_mutex_unlock(&ing->mu);
    pthread_mutex_lock(&s->stats_mu);
    s->st.connected = 1;
    s->st.connects++;
    s->st.last_error[0] = '\0';
    uint64_t n = s->st.connects;
    pthread_mutex_unlock(&s->stats_mu);
    if (n == 1)
        gw_info(AREA, "%s: connected to %s (session %s)", s->cfg->id, s->cfg->conn.url,
                session_present ? "resumed" : "new");
    /* Subscribe on every connect, in the connect callback (never in connectionLost,
     * paho.mqtt.c #1311): a broker that lost our session has no subscriptions. */
    subscribe_all(s);
}

static void connect_failed(source *s, int code, const char *msg)
{
    gw_ingest *ing = s->ing;
    char detail[128];
    snprintf(detail, sizeof detail, "%s (%d)", msg ? msg : MQTTAsync_strerror(code), code);
    pthread_mutex_lock(&ing->mu);
    s->conn = CONN_DOWN;
    s->next_connect_ms = gw_mono_ms() + gw_mqtt_client_backoff(&s->backoff_ms, RECONNECT_MAX_MS);
    gw_complain(&s->conn_complaint, 0, 10000, 600000, GW_LOG_WARN, AREA,
                "%s: cannot connect to %s: %s; retrying", s->cfg->id, s->cfg->conn.url, detail);
    pthread_cond_signal(&ing->cv);
    pthread_mutex_unlock(&ing->mu);
    pthread_mutex_lock(&s->stats_mu);
    s->st.connected = 0;
    s->st.connect_failures++;
    pthread_mutex_unlock(&s->stats_mu);
    set_error(s, "connect failed", detail);
}

static void on_conn_ok(void *ctx, MQTTAsync_successData *r)
{
    connected(ctx, r ? r->alt.connect.sessionPresent : 0);
}

static void on_conn_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    connected(ctx, r ? r->alt.connect.sessionPresent : 0);
}

static void on_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
    connect_failed(ctx, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL);
}

static void on_conn_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
    connect_failed(ctx, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL);
}

static void on_connection_lost(void *ctx, char *cause)
{
    source *s = ctx;
    gw_ingest *ing = s->ing;
    pthread_mutex_lock(&ing->mu);
    if (s->conn == CONN_UP)
        gw_complain(&s->conn_complaint, 0, 10000, 600000, GW_LOG_WARN, AREA,
                    "%s: connection to %s lost%s%s; reconnecting", s->cfg->id,
                    s->cfg->conn.url, cause ? ": " : "", cause ? cause : "");
    s->conn = CONN_DOWN;
    s->next_connect_ms = gw_mono_ms() + gw_mqtt_client_backoff(&s->backoff_ms, RECONNECT_MAX_MS);
    pthread_cond_signal(&ing->cv);
    pthread_mutex_unlock(&ing->mu);
    pthread_mutex_lock(&s->stats_mu);
    s->st.connected = 0;
    s->st.connection_losses++;
    pthread_mutex_unlock(&s->stats_mu);
    set_error(s, "connection lost", cause);
}

static void start_connect(source *s)
{
    MQTTAsync_connectOptions co;
    MQTTProperties props = MQTTProperties_initializer;

    /* The ingest thread reconnects with its own backoff (Paho's automatic reconnect off). */
    gw_mqtt_client_connect_options(&s->cfg->conn, s->tls ? &s->ssl : NULL, s, &co);
    co.cleansession = 0; /* persistent session (3.1.1) */
    co.cleanstart = 0;   /* persistent session (5), with an expiry below */
    if (s->v5) {
        MQTTProperty p;
        memset(&p, 0, sizeof p);
        p.identifier = MQTTPROPERTY_CODE_SESSION_EXPIRY_INTERVAL;
        p.value.integer4 = SESSION_EXPIRY_S;
        MQTTProperties_add(&props, &p);
        co.connectProperties = &props;
        co.onSuccess5 = on_conn_ok5;
        co.onFailure5 = on_conn_fail5;
    } else {
        co.onSuccess = on_conn_ok;
        co.onFailure = on_conn_fail;
    }
    int rc = MQTTAsync_connect(s->client, &co);
    MQTTProperties_free(&props);
    if (rc != MQTTASYNC_SUCCESS)
        connect_failed(s, rc, MQTTAsync_strerror(rc));
}

static void *run(void *arg)
{
    gw_ingest *ing = arg;
    pthread_mutex_lock(&ing->mu);
    while (!ing->stop) {
        int64_t now = gw_mono_ms();
        int64_t deadline = now + 1000;
        for (size_t i = 0; i < ing->n_src && !ing->stop; i++) {
            source *s = &ing->src[i];
            if (s->conn == CONN_DOWN && now >= s->next_connect_ms) {
                s->conn = CONN_CONNECTING;
                pthread_mutex_unlock(&ing->mu);
                start_connect(s);
                pthread_mutex_lock(&ing->mu);
            }
            if (s->conn == CONN_DOWN && s->next_connect_ms < deadline)
                deadline = s->next_connect_ms;
        }
        if (!ing->stop)
            gw_mqtt_client_wait_until(&ing->cv, &ing->mu, deadline);
    }
    pthread_mutex_unlock(&ing->mu);
    return NULL;
}

/* ---- setup ----------------------------------------------------------------------------------- */

static void source_free(source *s)
{
    if (s->client)
        MQTTAsync_destroy(&s->client);
    for (size_t i = 0; i < s->n_subs; i++)
        gw_topic_pattern_free(&s->subs[i].pat);
    gw_free(s->subs);
    gw_free(s->filters);
    gw_free(s->qos);
    gw_free(s->keys);
    pthread_mutex_destroy(&s->stats_mu);
}

static int source_init(gw_ingest *ing, size_t idx)
{
    const gw_config *cfg = ing->cfg;
    source *s = &ing->src[idx];
    s->ing = ing;
    s->cfg = &cfg->mqtt_sources[idx];
    s->idx = idx;
    s->v5 = s->cfg->conn.mqtt_version == 5;
    s->backoff_ms = RECONNECT_MIN_MS;
    s->max_payload = s->cfg->max_payload ? s->cfg->max_payload : 65536;
    pthread_mutex_init(&s->stats_mu, NULL);

    s->n_subs = s->cfg->n_subs;
    if (s->n_subs) {
        s->subs = gw_calloc(s->n_subs, sizeof *s->subs);
        s->filters = gw_calloc(s->n_subs, sizeof *s->filters);
        s->qos = gw_calloc(s->n_subs, sizeof *s->qos);
        if (!s->subs || !s->filters || !s->qos)
            return GW_ENOMEM;
    }
    for (size_t i = 0; i < s->n_subs; i++) {
        char err[160];
        s->subs[i].cfg = &s->cfg->subs[i];
        int rc = gw_topic_pattern_compile(s->cfg->subs[i].topic, &s->subs[i].pat, err, sizeof err);
        if (rc) {
            if (rc == GW_EINVAL)
                gw_error(AREA, "%s: subscription %zu: %s", s->cfg->id, i, err);
            return rc;
        }
        s->filters[i] = s->subs[i].pat.filter;
        s->qos[i] = s->cfg->subs[i].qos >= 0 && s->cfg->subs[i].qos <= 2 ? s->cfg->subs[i].qos : 1;
    }

    size_t n = 0;
    for (size_t d = 0; d < cfg->n_devices; d++) {
        const gw_device *dev = &cfg->devices[d];
        if (dev->source == GW_SRC_MQTT && dev->enabled && dev->mqtt_source && dev->key &&
            strcmp(dev->mqtt_source, s->cfg->id) == 0)
            n++;
    }
    if (n) {
        s->keys = gw_calloc(n, sizeof *s->keys);
        if (!s->keys)
            return GW_ENOMEM;
    }
    for (size_t d = 0; d < cfg->n_devices; d++) {
        const gw_device *dev = &cfg->devices[d];
        if (dev->source == GW_SRC_MQTT && dev->enabled && dev->mqtt_source && dev->key &&
            strcmp(dev->mqtt_source, s->cfg->id) == 0)
            s->keys[s->n_keys++] = (devkey){dev->key, d, dev->decoder};
    }
    qsort(s->keys, s->n_keys, sizeof *s->keys, devkey_cmp);

    char *client_id = NULL;
    const char *cid = s->cfg->conn.client_id;
    if (!cid || !cid[0]) {
        /* A persistent session needs a stable id: derive it from gateway and source. */
        size_t l = strlen(cfg->gateway.id ? cfg->gateway.id : "gw") + strlen(s->cfg->id) + 16;
        client_id = gw_malloc(l);
        if (!client_id)
            return GW_ENOMEM;
        snprintf(client_id, l, "citygate-%s-%s", cfg->gateway.id ? cfg->gateway.id : "gw",
                 s->cfg->id);
        cid = client_id;
    }
    int rc = gw_mqtt_client_create(&s->cfg->conn, cid, AREA, &s->client, &s->tls);
    gw_free(client_id);
    if (rc)
        return rc;
    if (s->tls)
        gw_mqtt_client_tls(&s->cfg->conn, &s->ssl);
    if (MQTTAsync_setCallbacks(s->client, s, on_connection_lost, on_message, NULL) !=
        MQTTASYNC_SUCCESS)
        return GW_EIO;
    return 0;
}

int gw_ingest_new(const gw_config *cfg, const gw_ingest_hooks *hooks, gw_ingest **out)
{
    *out = NULL;
    if (!cfg || !hooks || !hooks->on_message)
        return GW_EINVAL;
    gw_ingest *ing = gw_calloc(1, sizeof *ing);
    if (!ing)
        return GW_ENOMEM;
    ing->cfg = cfg;
    ing->hooks = *hooks;
    pthread_mutex_init(&ing->mu, NULL);
    pthread_cond_init(&ing->cv, NULL);
    int rc = 0;
    if (cfg->n_mqtt_sources) {
        ing->src = gw_calloc(cfg->n_mqtt_sources, sizeof *ing->src);
        if (!ing->src) {
            rc = GW_ENOMEM;
            goto fail;
        }
    }
    for (size_t i = 0; i < cfg->n_mqtt_sources; i++) {
        ing->n_src = i + 1;
        rc = source_init(ing, i);
        if (rc)
            goto fail;
    }
    if (ing->n_src) {
        /* room for at least two of the largest messages any source accepts */
        size_t cap = INBOX_MIN;
        for (size_t i = 0; i < ing->n_src; i++)
            while (cap / 2 < gw_inbox_record_size(65535, ing->src[i].max_payload))
                cap *= 2;
        rc = gw_inbox_new(cap, &ing->box);
        if (rc)
            goto fail;
    }
    *out = ing;
    return 0;
fail:
    gw_ingest_free(ing);
    return rc;
}

static int start_thread(pthread_t *t, void *(*fn)(void *), void *arg, const char *name)
{
    int err = pthread_create(t, NULL, fn, arg);
    if (err) {
        gw_error(AREA, "cannot start thread %s: %s", name, strerror(err));
        return GW_EIO;
    }
#ifdef __GLIBC__
    pthread_setname_np(*t, name);
#endif
    return 0;
}

int gw_ingest_start(gw_ingest *ing)
{
    if (ing->started || ing->n_src == 0)
        return 0;
    ing->stop = 0;
    if (gw_inbox_reopen(ing->box)) /* cannot happen: stop delivers everything */
        return GW_EIO;
    if (start_thread(&ing->decode_thread, decode_main, ing, "mqtt-decode"))
        return GW_EIO;
    ing->decode_started = 1;
    if (start_thread(&ing->thread, run, ing, "mqtt-ingest"))
        return GW_EIO;
    ing->started = 1;
    return 0;
}

/* No more messages come in: deliver what the inbox holds, then end the thread. */
static void stop_decode(gw_ingest *ing)
{
    if (!ing->decode_started)
        return;
    gw_inbox_stop(ing->box);
    pthread_join(ing->decode_thread, NULL);
    ing->decode_started = 0;
}

void gw_ingest_stop(gw_ingest *ing)
{
    if (!ing)
        return;
    if (!ing->started) {
        stop_decode(ing); /* the run thread failed to start */
        return;
    }
    pthread_mutex_lock(&ing->mu);
    ing->stop = 1;
    pthread_cond_signal(&ing->cv);
    pthread_mutex_unlock(&ing->mu);
    pthread_join(ing->thread, NULL);
    ing->started = 0;
    for (size_t i = 0; i < ing->n_src; i++) {
        source *s = &ing->src[i];
        if (!MQTTAsync_isConnected(s->client))
            continue;
        gw_mqtt_client_disconnect(s->client, s->v5);
        pthread_mutex_lock(&ing->mu);
        s->conn = CONN_DOWN;
        pthread_mutex_unlock(&ing->mu);
        pthread_mutex_lock(&s->stats_mu);
        s->st.connected = 0;
        pthread_mutex_unlock(&s->stats_mu);
    }
    stop_decode(ing);
}

void gw_ingest_free(gw_ingest *ing)
{
    if (!ing)
        return;
    gw_ingest_stop(ing);
    for (size_t i = 0; i < ing->n_src; i++)
        source_free(&ing->src[i]);
    gw_free(ing->src);
    gw_inbox_free(ing->box);
    pthread_cond_destroy(&ing->cv);
    pthread_mutex_destroy(&ing->mu);
    gw_free(ing);
}

size_t gw_ingest_n_sources(const gw_ingest *ing)
{
    return ing ? ing->n_src : 0;
}

int gw_ingest_stats_get(gw_ingest *ing, size_t i, gw_ingest_stats *out)
{
    if (!ing || i >= ing->n_src)
        return GW_EINVAL;
    source *s = &ing->src[i];
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&s->stats_mu);
    out->connected = s->st.connected;
    out->connects = s->st.connects;
    out->connect_failures = s->st.connect_failures;
    out->connection_losses = s->st.connection_losses;
    memcpy(out->last_error, s->st.last_error, sizeof out->last_error);
    pthread_mutex_unlock(&s->stats_mu);
    out->received = LOAD(s, received);
    out->matched = LOAD(s, matched);
    out->unknown_device = LOAD(s, unknown_device);
    out->oversize = LOAD(s, oversize);
    out->bad_json = LOAD(s, bad_json);
    out->no_key = LOAD(s, no_key);
    out->no_match = LOAD(s, no_match);
    out->deferred = LOAD(s, deferred);
    out->rejected = LOAD(s, rejected);
    return 0;
}

/* ---- check ------------------------------------------------------------------------------------ */

int gw_ingest_check(const gw_config *cfg, gw_cfgerr *errs)
{
    int bad = 0;
    const char *file = cfg->file ? cfg->file : "config";
    for (size_t i = 0; i < cfg->n_mqtt_sources; i++) {
        const gw_mqtt_source *src = &cfg->mqtt_sources[i];
        char path[96];
        char *url = NULL;
        int tls = 0;
        if (gw_mqtt_client_url(src->conn.url, &url, &tls) == GW_EINVAL) {
            snprintf(path, sizeof path, "mqtt_sources[%zu].url", i);
            gw_cfgerr_add(errs, file, path, "must be tcp://, mqtt://, ssl:// or mqtts://HOST[:PORT]");
            bad = 1;
        }
        gw_free(url);
        for (size_t j = 0; j < src->n_subs; j++) {
            const gw_mqtt_sub *sub = &src->subs[j];
            gw_topic_pattern p;
            char err[160];
            snprintf(path, sizeof path, "mqtt_sources[%zu].subscriptions[%zu].topic", i, j);
            if (gw_topic_pattern_compile(sub->topic, &p, err, sizeof err) == GW_EINVAL) {
                gw_cfgerr_add(errs, file, path, "%s", err);
                bad = 1;
                continue;
            }
            snprintf(path, sizeof path, "mqtt_sources[%zu].subscriptions[%zu]", i, j);
            if (p.named_level >= 0 && sub->device_key) {
                gw_cfgerr_add(errs, file, path,
                              "give the device either by a named topic segment or by device_key, not both");
                bad = 1;
            } else if (p.named_level < 0 && !sub->device_key) {
                gw_cfgerr_add(errs, file, path,
                              "no way to find the device: name a topic level (\"{dev_eui}\") or set device_key");
                bad = 1;
            } else if (sub->device_key && !path_ok(sub->device_key)) {
                snprintf(path, sizeof path, "mqtt_sources[%zu].subscriptions[%zu].device_key", i, j);
                gw_cfgerr_add(errs, file, path, "bad JSON path \"%.64s\" (like \"meta.id\" or \"a.b[0].c\")",
                              sub->device_key);
                bad = 1;
            }
            gw_topic_pattern_free(&p);
        }
        /* duplicate keys within a source make the mapping ambiguous */
        for (size_t a = 0; a < cfg->n_devices; a++) {
            const gw_device *da = &cfg->devices[a];
            if (da->source != GW_SRC_MQTT || !da->key || !da->mqtt_source ||
                strcmp(da->mqtt_source, src->id) != 0)
                continue;
            for (size_t b = a + 1; b < cfg->n_devices; b++) {
                const gw_device *db = &cfg->devices[b];
                if (db->source == GW_SRC_MQTT && db->key && db->mqtt_source &&
                    strcmp(db->mqtt_source, src->id) == 0 && strcasecmp(da->key, db->key) == 0) {
                    snprintf(path, sizeof path, "devices[%zu].mqtt.key", b);
                    gw_cfgerr_add(errs, file, path, "key \"%.64s\" is also used by device %s on source %s",
                                  db->key, da->id, src->id);
                    bad = 1;
                }
            }
        }
    }
    return bad ? GW_ECONFIG : 0;
}
