/* Paho MQTTAsync plumbing shared by upstream.c and ingest.c (see client.h). */
#include "mqtt/client.h"

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int gw_mqtt_client_url(const char *url, char **out, int *tls)
{
    static const struct {
        const char *prefix;
        const char *scheme;
        int tls;
        const char *port;
    } schemes[] = {
        {"tcp://", "tcp://", 0, "1883"},
        {"mqtt://", "tcp://", 0, "1883"},
        {"ssl://", "ssl://", 1, "8883"},
        {"mqtts://", "ssl://", 1, "8883"},
    };
    *out = NULL;
    *tls = 0;
    if (!url)
        return GW_EINVAL;
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t pl = strlen(schemes[i].prefix);
        if (strncasecmp(url, schemes[i].prefix, pl) != 0)
            continue;
        const char *host = url + pl;
        size_t hl = strcspn(host, "/?#");
        if (hl == 0 || host[hl] != '\0' || host[0] == ':')
            return GW_EINVAL;
        /* a port is present if the last ':' comes after any IPv6 literal's ']' */
        const char *colon = strrchr(host, ':');
        const char *bracket = strrchr(host, ']');
        int has_port = colon && (!bracket || colon > bracket);
        size_t n = strlen(schemes[i].scheme) + hl + 1 + 5 + 1;
        char *s = gw_malloc(n);
        if (!s)
            return GW_ENOMEM;
        snprintf(s, n, "%s%s%s%s", schemes[i].scheme, host, has_port ? "" : ":",
                 has_port ? "" : schemes[i].port);
        *out = s;
        *tls = schemes[i].tls;
        return 0;
    }
    return GW_EINVAL;
}

int gw_mqtt_client_version(const gw_mqtt_conn *c)
{
    return c->mqtt_version == 5 ? MQTTVERSION_5 : MQTTVERSION_3_1_1;
}

int gw_mqtt_client_create(const gw_mqtt_conn *c, const char *client_id, const char *area,
                          MQTTAsync *out, int *tls)
{
    char *url = NULL;
    int rc = gw_mqtt_client_url(c->url, &url, tls);
    if (rc) {
        if (rc == GW_EINVAL)
            gw_error(area, "bad broker URL \"%s\" (tcp://, mqtt://, ssl:// or mqtts://)",
                     c->url ? c->url : "");
        return rc;
    }
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = gw_mqtt_client_version(c);
    co.sendWhileDisconnected = 0;
    co.maxBufferedMessages = 1000; /* bounds Paho's command queue, also when connected */
    co.persistQoS0 = 0;
    co.restoreMessages = 0;
    int prc = MQTTAsync_createWithOptions(out, url, client_id, MQTTCLIENT_PERSISTENCE_NONE,
                                          NULL, &co);
    if (prc != MQTTASYNC_SUCCESS) {
        gw_error(area, "cannot create MQTT client for %s: %s", url, MQTTAsync_strerror(prc));
        gw_free(url);
        return GW_EIO;
    }
    gw_free(url);
    return 0;
}

void gw_mqtt_client_tls(const gw_mqtt_conn *c, MQTTAsync_SSLOptions *ssl)
{
    MQTTAsync_SSLOptions init = MQTTAsync_SSLOptions_initializer;
    *ssl = init;
    ssl->enableServerCertAuth = 1;
    ssl->verify = 1; /* host name check: Paho's default is off (paho.mqtt.c #420) */
    ssl->trustStore = c->ca_file && c->ca_file[0] ? c->ca_file : NULL;
    ssl->keyStore = c->cert_file && c->cert_file[0] ? c->cert_file : NULL;
    ssl->privateKey = c->key_file && c->key_file[0] ? c->key_file : NULL;
    ssl->sslVersion = MQTT_SSL_VERSION_DEFAULT; /* negotiate the best the peer offers */
}

void gw_mqtt_client_connect_options(const gw_mqtt_conn *c, MQTTAsync_SSLOptions *ssl,
                                    void *context, MQTTAsync_connectOptions *co)
{
    MQTTAsync_connectOptions init3 = MQTTAsync_connectOptions_initializer;
    MQTTAsync_connectOptions init5 = MQTTAsync_connectOptions_initializer5;
    *co = c->mqtt_version == 5 ? init5 : init3;
    co->MQTTVersion = gw_mqtt_client_version(c);
    co->keepAliveInterval = c->keepalive_s > 0 ? c->keepalive_s : 30;
    co->connectTimeout = 10;
    co->automaticReconnect = 0;
    co->username = c->username && c->username[0] ? c->username : NULL;
    co->password = c->password && c->password[0] ? c->password : NULL;
    co->ssl = ssl;
    co->context = context;
}

void gw_mqtt_client_disconnect(MQTTAsync client, int v5)
{
    MQTTAsync_disconnectOptions d3 = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnectOptions d5 = MQTTAsync_disconnectOptions_initializer5;
    MQTTAsync_disconnectOptions d = v5 ? d5 : d3;
    d.timeout = 200;
    if (MQTTAsync_disconnect(client, &d) == MQTTASYNC_SUCCESS)
        for (int i = 0; i < 50 && MQTTAsync_isConnected(client); i++)
            gw_sleep_ms(20);
}

void gw_mqtt_client_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_mono_ms)
{
    int64_t wait = deadline_mono_ms - gw_mono_ms();
    if (wait <= 0)
        return;
    if (wait > 1000)
        wait = 1000;
    /* The condition variables use the default (realtime) clock. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += wait / 1000;
    ts.tv_nsec += (long)(wait % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

int64_t gw_mqtt_client_backoff(int64_t *cur_ms, int64_t max_ms)
{
    int64_t base = *cur_ms > 0 ? *cur_ms : 500;
    int64_t jitter = base / 4;
    int64_t delay = base;
    if (jitter > 0)
        delay += (int64_t)(random() % (2 * jitter + 1)) - jitter;
    *cur_ms = base * 2 > max_ms ? max_ms : base * 2;
    return delay;
}
