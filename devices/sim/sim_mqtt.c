/* Simulated LoRaWAN / MQTT sensors (see sim_mqtt.h). */
#include "sim_mqtt.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "timeutil.h"

#define AREA "sim-mqtt"
#define APP_ID "3f1c2a9e-5d1b-4c7e-9a2f-000000000001" /* ChirpStack application ids are UUIDs */

typedef struct sim_client {
    const gw_mqtt_source *src;
    MQTTAsync handle;
    atomic_int connected;
    gw_complaint down;        /* publishes skipped while disconnected */
    uint64_t published, skipped, failed;
} sim_client;

typedef struct sim_pub {
    sim_device *dev;
    sim_client *client;
    char topic[512];
    int plain;                /* 1: bare JSON with the key at key_path */
    const char *key_path;
} sim_pub;

struct sim_mqtt {
    sim_model *model;
    sim_client *clients;
    size_t n_clients;
    sim_pub *pubs;
    size_t n_pubs;
};

/* ---- Paho callbacks (Paho's thread) ---------------------------------------------------- */

static void on_connected(void *ctx, char *cause)
{
    sim_client *c = ctx;
    (void)cause;
    atomic_store(&c->connected, 1);
    gw_notice(AREA, "connected to %s (source %s)", c->src->conn.url, c->src->id);
}

static void on_lost(void *ctx, char *cause)
{
    sim_client *c = ctx;
    atomic_store(&c->connected, 0);
    gw_warn(AREA, "connection to %s lost (%s); reconnecting", c->src->conn.url,
            cause ? cause : "no reason given");
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *msg)
{
    (void)ctx;
    (void)topic_len;
    MQTTAsync_freeMessage(&msg);
    MQTTAsync_free(topic);
    return 1;
}

static void on_connect_failure(void *ctx, MQTTAsync_failureData *resp)
{
    sim_client *c = ctx;
    gw_warn(AREA, "cannot connect to %s: %s (code %d); retrying", c->src->conn.url,
            resp && resp->message ? resp->message : "no message", resp ? resp->code : 0);
}

/* ---- topics and payloads ------------------------------------------------------------------ */

/* Fill a subscription pattern: "+" -> the application id, "{name}" -> the key,
 * "#" -> the key. */
static void fill_topic(char *out, size_t n, const char *pattern, const char *key)
{
    size_t o = 0;
    const char *p = pattern;
    while (*p && o + 1 < n) {
        const char *seg_end = strchr(p, '/');
        size_t len = seg_end ? (size_t)(seg_end - p) : strlen(p);
        const char *rep = NULL;
        if (len == 1 && *p == '+')
            rep = APP_ID;
        else if ((len == 1 && *p == '#') || (len >= 2 && p[0] == '{' && p[len - 1] == '}'))
            rep = key;
        int w = rep ? snprintf(out + o, n - o, "%s", rep)
                    : snprintf(out + o, n - o, "%.*s", (int)len, p);
        if (w < 0)
            break;
        o += (size_t)w;
        if (o >= n) {
            o = n - 1;
            break;
        }
        if (!seg_end)
            break;
        out[o++] = '/';
        p = seg_end + 1;
    }
    out[o < n ? o : n - 1] = '\0';
}

static const gw_mqtt_sub *pick_sub(const gw_mqtt_source *src, const gw_device *dev)
{
    const gw_mqtt_sub *best = NULL;
    for (size_t i = 0; i < src->n_subs; i++) {
        const gw_mqtt_sub *s = &src->subs[i];
        const char *dec = s->decoder ? s->decoder : "";
        if (strcmp(dec, "chirpstack") == 0 || strchr(s->topic, '{'))
            return s;
        /* A plain-JSON subscription serves the device when it carries the key. */
        if (!best && strcmp(dec, "json") == 0 && s->device_key)
            best = s;
    }
    (void)dev;
    return best;
}

static int set_path(cJSON *o, const char *path, const char *value)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL, *tok = strtok_r(buf, ".", &save);
    while (tok) {
        char *next = strtok_r(NULL, ".", &save);
        cJSON_DeleteItemFromObjectCaseSensitive(o, tok);
        if (!next)
            return cJSON_AddStringToObject(o, tok, value) ? 0 : GW_ENOMEM;
        cJSON *child = cJSON_AddObjectToObject(o, tok);
        if (!child)
            return GW_ENOMEM;
        o = child;
        tok = next;
    }
    return 0;
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char T[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = T[v >> 18 & 63];
        out[o++] = T[v >> 12 & 63];
        out[o++] = i + 1 < n ? T[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? T[v & 63] : '=';
    }
    out[o] = '\0';
}

static void uuid_from(uint64_t a, uint64_t b, char *out, size_t n)
{
    snprintf(out, n, "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)(a >> 32), (unsigned)(a >> 16 & 0xFFFF),
             (unsigned)(a & 0xFFF), (unsigned)(b >> 48 & 0xFFF),
             (unsigned long long)(b & 0xFFFFFFFFFFFFull));
}

static double field_or(const sim_device *d, const char *name, double dflt)
{
    for (size_t i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i].name, name) == 0)
            return d->fields[i].value;
    return dflt;
}

static void put_le16(uint8_t *p, long v)
{
    if (v > 32767) v = 32767;
    if (v < -32768) v = -32768;
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)((uint16_t)v >> 8);
}

/* The raw LoRaWAN payload ("data"). Manholes send a Milesight-style TLV frame
 * (domain.md 4.3: 01/75 battery %, 03/CF angles x/y/z int16 LE 0.01 deg + threshold
 * byte, 05/00 position, 04/82 distance mm) that the manhole plugin decodes to the same
 * values as "object"; other kinds send field index + int16 BE value x 10. Returns the
 * length (raw holds >= 60 bytes). */
static size_t frame(const sim_device *d, uint8_t *raw)
{
    size_t n = 0;
    if (d->cfg->kind && strcmp(d->cfg->kind, "manhole") == 0) {
        double tilt = field_or(d, "tilt_deg", 0);
        raw[n++] = 0x01, raw[n++] = 0x75;
        raw[n++] = (uint8_t)lround(fmin(100, fmax(0, field_or(d, "battery_pct", 90))));
        raw[n++] = 0x03, raw[n++] = 0xCF;
        put_le16(raw + n, 0), n += 2;                               /* angle_x */
        put_le16(raw + n, lround(tilt * 100)), n += 2;              /* angle_y */
        put_le16(raw + n, lround((90 - tilt) * 100)), n += 2;       /* angle_z */
        raw[n++] = 0;                                               /* threshold bits */
        raw[n++] = 0x05, raw[n++] = 0x00;
        raw[n++] = field_or(d, "cover_open", 0) != 0;
        const cJSON *depth = d->cfg->params ? cJSON_GetObjectItemCaseSensitive(d->cfg->params, "well_depth_m") : NULL;
        if (cJSON_IsNumber(depth)) {
            double mm = (depth->valuedouble - field_or(d, "water_level_m", 0.3)) * 1000;
            raw[n++] = 0x04, raw[n++] = 0x82;
            long v = lround(fmax(0, fmin(65535, mm)));
            raw[n++] = (uint8_t)v, raw[n++] = (uint8_t)(v >> 8);
        }
        return n;
    }
    for (size_t i = 0; i < d->n_fields && n + 3 <= 60; i++) {
        long v = lround(d->fields[i].value * 10);
        if (v > 32767) v = 32767;
        if (v < -32768) v = -32768;
        raw[n++] = (uint8_t)i;
        raw[n++] = (uint8_t)((uint16_t)v >> 8);
        raw[n++] = (uint8_t)v;
    }
    return n;
}

/* The ChirpStack v4 "up" event (integration.UplinkEvent in protobuf JSON form). */
static char *chirpstack_uplink(sim_pub *p, cJSON *object)
{
    const sim_device *d = p->dev;
    const gw_device *dev = d->cfg;
    char ts[48], id[40], b64[128];
    gw_format_rfc3339(ts, sizeof ts, gw_now_us(), 0);
    uuid_from((uint64_t)gw_now_us(), (uint64_t)d->fcnt * 2654435761u + (uintptr_t)d, id, sizeof id);

    uint8_t raw[60];
    size_t n = frame(d, raw);
    base64(raw, n, b64);

    cJSON *j = cJSON_CreateObject();
    cJSON *info = cJSON_AddObjectToObject(j, "deviceInfo");
    cJSON *rx = cJSON_AddArrayToObject(j, "rxInfo");
    cJSON *rx0 = cJSON_CreateObject();
    cJSON_AddItemToArray(rx, rx0);
    cJSON *tx = cJSON_AddObjectToObject(j, "txInfo");
    cJSON *mod = cJSON_AddObjectToObject(cJSON_AddObjectToObject(tx, "modulation"), "lora");
    if (!info || !rx0 || !mod) {
        cJSON_Delete(j);
        cJSON_Delete(object);
        return NULL;
    }
    cJSON_AddStringToObject(j, "deduplicationId", id);
    cJSON_AddStringToObject(j, "time", ts);
    cJSON_AddStringToObject(info, "tenantId", "52f14cd4-c6f1-4fbd-8f87-4025e1d49242");
    cJSON_AddStringToObject(info, "tenantName", "citygate-sim");
    cJSON_AddStringToObject(info, "applicationId", APP_ID);
    cJSON_AddStringToObject(info, "applicationName", "citygate-sim");
    cJSON_AddStringToObject(info, "deviceProfileId", "0b3e7a10-1c2d-4e5f-8a9b-000000000002");
    cJSON_AddStringToObject(info, "deviceProfileName", dev->kind ? dev->kind : "sensor");
    cJSON_AddStringToObject(info, "deviceName", dev->id);
    cJSON_AddStringToObject(info, "devEui", dev->key ? dev->key : dev->id);
    cJSON_AddStringToObject(info, "deviceClassEnabled", "CLASS_A");
    cJSON_AddObjectToObject(info, "tags");
    char addr[16];
    snprintf(addr, sizeof addr, "%08x", (unsigned)(d->rng & 0xFFFFFFFF));
    cJSON_AddStringToObject(j, "devAddr", addr);
    cJSON_AddBoolToObject(j, "adr", 1);
    cJSON_AddNumberToObject(j, "dr", 5);
    cJSON_AddNumberToObject(j, "fCnt", d->fcnt);
    cJSON_AddNumberToObject(j, "fPort", 85);
    cJSON_AddBoolToObject(j, "confirmed", 0);
    cJSON_AddStringToObject(j, "data", b64);
    cJSON_AddItemToObject(j, "object", object);
    cJSON_AddStringToObject(rx0, "gatewayId", "0016c001ff10a235");
    cJSON_AddNumberToObject(rx0, "uplinkId", d->fcnt + 1);
    cJSON_AddStringToObject(rx0, "nsTime", ts);
    cJSON_AddNumberToObject(rx0, "rssi", round(field_or(d, "rssi_dbm", -78)));
    cJSON_AddNumberToObject(rx0, "snr", 7.5);
    cJSON_AddNumberToObject(rx0, "channel", 2);
    cJSON_AddStringToObject(rx0, "context", "AAAAAA==");
    cJSON_AddStringToObject(rx0, "crcStatus", "CRC_OK");
    cJSON_AddNumberToObject(tx, "frequency", 486300000);
    cJSON_AddNumberToObject(mod, "bandwidth", 125000);
    cJSON_AddNumberToObject(mod, "spreadingFactor", 7);
    cJSON_AddStringToObject(mod, "codeRate", "CR_4_5");
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static void publish(sim_pub *p)
{
    sim_client *c = p->client;
    sim_device *d = p->dev;
    if (!atomic_load(&c->connected)) {
        c->skipped++;
        gw_complain(&c->down, 0, 5000, 300000, GW_LOG_WARN, AREA,
                    "not connected to %s: uplinks skipped (%llu so far)", c->src->conn.url,
                    (unsigned long long)c->skipped);
        return;
    }
    if (c->down.interval_ms)
        gw_complain_clear(&c->down, AREA, "publishing to %s again", c->src->conn.url);
    cJSON *obj = sim_model_object(d);
    if (!obj)
        return;
    /* Ultrasonic manhole codecs report the distance to the water, not the level. */
    const cJSON *depth = d->cfg->params ? cJSON_GetObjectItemCaseSensitive(d->cfg->params, "well_depth_m") : NULL;
    if (d->cfg->kind && strcmp(d->cfg->kind, "manhole") == 0 && cJSON_IsNumber(depth) &&
        cJSON_GetObjectItemCaseSensitive(obj, "water_level_m"))
        cJSON_AddNumberToObject(obj, "distance",
                                round((depth->valuedouble - field_or(d, "water_level_m", 0)) * 1000));
    char *payload;
    if (p->plain) {
        if (set_path(obj, p->key_path, d->cfg->key ? d->cfg->key : d->cfg->id) != 0) {
            cJSON_Delete(obj);
            return;
        }
        char ts[48];
        gw_format_rfc3339(ts, sizeof ts, gw_now_us(), 0);
        cJSON_AddStringToObject(obj, "ts", ts);
        payload = cJSON_PrintUnformatted(obj);
        cJSON_Delete(obj);
    } else {
        payload = chirpstack_uplink(p, obj); /* takes obj */
    }
    if (!payload)
        return;
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = payload;
    msg.payloadlen = (int)strlen(payload);
    msg.qos = 1;
    int rc = MQTTAsync_sendMessage(c->handle, p->topic, &msg, NULL);
    if (rc == MQTTASYNC_SUCCESS) {
        c->published++;
        d->fcnt++;
        gw_debug(AREA, "%s -> %s (%d bytes)", d->cfg->id, p->topic, msg.payloadlen);
    } else {
        c->failed++;
        static gw_complaint fc = GW_COMPLAINT_INIT;
        gw_complain(&fc, 0, 5000, 300000, GW_LOG_WARN, AREA, "publish to %s failed: code %d",
                    p->topic, rc);
    }
    cJSON_free(payload);
}

/* ---- life cycle ---------------------------------------------------------------------------- */

static int client_start(sim_client *c)
{
    const gw_mqtt_conn *cn = &c->src->conn;
    char client_id[128];
    snprintf(client_id, sizeof client_id, "citygate-sim-%s-%ld", c->src->id, (long)getpid());
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    co.maxBufferedMessages = 10000;
    if (MQTTAsync_createWithOptions(&c->handle, cn->url, client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                    NULL, &co) != MQTTASYNC_SUCCESS) {
        gw_error(AREA, "cannot create an MQTT client for %s", cn->url);
        c->handle = NULL;
        return GW_EIO;
    }
    MQTTAsync_setCallbacks(c->handle, c, on_lost, on_message, NULL);
    MQTTAsync_setConnected(c->handle, c, on_connected);
    MQTTAsync_connectOptions o = MQTTAsync_connectOptions_initializer;
    o.MQTTVersion = MQTTVERSION_3_1_1;
    o.cleansession = 1;
    o.keepAliveInterval = cn->keepalive_s > 0 ? cn->keepalive_s : 30;
    o.automaticReconnect = 1;
    o.minRetryInterval = 1;
    o.maxRetryInterval = 5;
    o.maxInflight = 1000;
    o.username = cn->username;
    o.password = cn->password;
    o.context = c;
    o.onFailure = on_connect_failure;
    MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
    if (strncmp(cn->url, "ssl://", 6) == 0 || strncmp(cn->url, "mqtts://", 8) == 0) {
        ssl.trustStore = cn->ca_file;
        ssl.keyStore = cn->cert_file;
        ssl.privateKey = cn->key_file;
        ssl.enableServerCertAuth = 1;
        ssl.verify = 1;
        o.ssl = &ssl;
    }
    int rc = MQTTAsync_connect(c->handle, &o);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_error(AREA, "cannot start connecting to %s: code %d", cn->url, rc);
        return GW_EIO;
    }
    return 0;
}

int sim_mqtt_start(sim_model *m, sim_mqtt **out)
{
    const gw_config *cfg = m->cfg;
    *out = NULL;
    sim_mqtt *q = gw_calloc(1, sizeof *q);
    if (!q)
        return GW_ENOMEM;
    q->model = m;
    q->clients = gw_calloc(cfg->n_mqtt_sources ? cfg->n_mqtt_sources : 1, sizeof *q->clients);
    q->pubs = gw_calloc(m->n_devs ? m->n_devs : 1, sizeof *q->pubs);
    if (!q->clients || !q->pubs) {
        sim_mqtt_stop(q);
        return GW_ENOMEM;
    }
    int64_t now = gw_mono_ms();
    for (size_t i = 0; i < m->n_devs; i++) {
        sim_device *d = &m->devs[i];
        const gw_device *dev = d->cfg;
        if (dev->source != GW_SRC_MQTT || !dev->enabled)
            continue;
        size_t si;
        for (si = 0; si < cfg->n_mqtt_sources; si++)
            if (strcmp(cfg->mqtt_sources[si].id, dev->mqtt_source) == 0)
                break;
        if (si == cfg->n_mqtt_sources)
            continue; /* the config loader rejects this; be safe anyway */
        const gw_mqtt_source *src = &cfg->mqtt_sources[si];
        sim_client *c = NULL;
        for (size_t k = 0; k < q->n_clients; k++)
            if (q->clients[k].src == src)
                c = &q->clients[k];
        if (!c) {
            c = &q->clients[q->n_clients++];
            c->src = src;
        }
        sim_pub *p = &q->pubs[q->n_pubs++];
        p->dev = d;
        p->client = c;
        const char *key = dev->key ? dev->key : dev->id;
        const gw_mqtt_sub *sub = pick_sub(src, dev);
        const char *dec = sub && sub->decoder ? sub->decoder : "";
        if (sub && strcmp(dec, "json") == 0 && sub->device_key && !strchr(sub->topic, '{')) {
            p->plain = 1;
            p->key_path = sub->device_key;
        }
        fill_topic(p->topic, sizeof p->topic,
                   sub ? sub->topic : "application/+/device/{dev_eui}/event/up", key);
        /* First uplinks soon and spread out, then every interval. */
        d->next_publish_ms = now + 300 + (int64_t)(i * 97 % 1000);
        gw_info(AREA, "%s publishes every %d ms on %s (%s)", dev->id, dev->interval_ms,
                p->topic, p->plain ? "plain JSON" : "ChirpStack v4 uplink");
    }
    for (size_t k = 0; k < q->n_clients; k++)
        if (client_start(&q->clients[k]) != 0) {
            sim_mqtt_stop(q);
            return GW_EIO;
        }
    *out = q;
    return 0;
}

int64_t sim_mqtt_publish_due(sim_mqtt *q, int64_t now_ms)
{
    int64_t next = -1;
    for (size_t i = 0; q && i < q->n_pubs; i++) {
        sim_pub *p = &q->pubs[i];
        sim_device *d = p->dev;
        if (d->next_publish_ms <= now_ms) {
            if (d->silent)
                d->dropped++;
            else
                publish(p);
            int iv = d->cfg->interval_ms > 0 ? d->cfg->interval_ms : 10000;
            d->next_publish_ms += iv;
            if (d->next_publish_ms <= now_ms) /* fell behind: no burst of catch-up uplinks */
                d->next_publish_ms = now_ms + iv;
        }
        if (next < 0 || d->next_publish_ms < next)
            next = d->next_publish_ms;
    }
    return next;
}

int sim_mqtt_connected(const sim_mqtt *q)
{
    for (size_t i = 0; q && i < q->n_clients; i++)
        if (!atomic_load(&q->clients[i].connected))
            return 0;
    return 1;
}

void sim_mqtt_stop(sim_mqtt *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->n_clients; i++) {
        sim_client *c = &q->clients[i];
        if (!c->handle)
            continue;
        gw_notice(AREA, "source %s: %llu uplinks published, %llu skipped, %llu failed",
                  c->src->id, (unsigned long long)c->published, (unsigned long long)c->skipped,
                  (unsigned long long)c->failed);
        if (MQTTAsync_isConnected(c->handle)) {
            MQTTAsync_disconnectOptions dc = MQTTAsync_disconnectOptions_initializer;
            dc.timeout = 1000;
            MQTTAsync_disconnect(c->handle, &dc);
            for (int w = 0; w < 50 && MQTTAsync_isConnected(c->handle); w++)
                gw_sleep_ms(20);
        }
        MQTTAsync_destroy(&c->handle);
    }
    gw_free(q->clients);
    gw_free(q->pubs);
    gw_free(q);
}
