/* Paho MQTTAsync plumbing shared by the upstream publisher and the sensor ingest:
 * URL normalisation, client creation with an explicit MQTT version and no Paho
 * persistence, TLS options with verification, reconnect backoff.
 * (reference/delivery.md §1.1: never MQTTVERSION_DEFAULT, verify=1 for TLS.)
 * Thread: any; no shared state. */
#ifndef CITYGATE_MQTT_CLIENT_H
#define CITYGATE_MQTT_CLIENT_H

#include <pthread.h>
#include <stdint.h>

#include <MQTTAsync.h>

#include "config.h"

/* tcp:// and mqtt:// give "tcp://host:port", ssl:// and mqtts:// give "ssl://host:port"
 * (*tls = 1). A missing port gets 1883 / 8883. Result allocated with gw_malloc.
 * Returns 0, GW_EINVAL (other scheme, empty host) or GW_ENOMEM. */
int gw_mqtt_client_url(const char *url, char **out, int *tls);

/* The Paho MQTTVersion constant for a config's mqtt_version (3 → 3.1.1, 5 → 5). */
int gw_mqtt_client_version(const gw_mqtt_conn *c);

/* Create an MQTTAsync client for conn with client_id: explicit MQTT version, Paho
 * persistence NONE, no sending while disconnected. *tls tells whether TLS options must
 * be passed at connect. Returns 0, GW_EINVAL (bad URL) or GW_EIO (Paho refused; logged
 * under area). */
int gw_mqtt_client_create(const gw_mqtt_conn *c, const char *client_id, const char *area,
                          MQTTAsync *out, int *tls);

/* Fill ssl for conn: server certificate and host name verification on, CA file (or
 * the system store), client certificate and key when configured. ssl borrows conn's
 * strings. */
void gw_mqtt_client_tls(const gw_mqtt_conn *c, MQTTAsync_SSLOptions *ssl);

/* Fill *co for connecting to conn: the initializer of its MQTT version, the version, the
 * keepalive (30 s when unset), a 10 s connect timeout, Paho's automatic reconnect off (the
 * caller's thread reconnects with gw_mqtt_client_backoff), user name and password when
 * set, ssl (NULL = plain TCP) and context. Session flags, will and callbacks are left to
 * the caller. *co borrows conn's strings and ssl. */
void gw_mqtt_client_connect_options(const gw_mqtt_conn *c, MQTTAsync_SSLOptions *ssl,
                                    void *context, MQTTAsync_connectOptions *co);

/* Disconnect client (200 ms for in-flight work; v5 = the client speaks MQTT 5) and wait
 * up to 1 s until Paho no longer reports it connected. Thread: not a Paho callback. */
void gw_mqtt_client_disconnect(MQTTAsync client, int v5);

/* The connection threads' nap: wait on cv (mu held by the caller) until a signal, the
 * monotonic deadline_mono_ms, or 1 s at most, whichever is first. */
void gw_mqtt_client_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu,
                               int64_t deadline_mono_ms);

/* Next reconnect delay: returns *cur_ms with ±25 % jitter, then doubles *cur_ms up to
 * max_ms. Reset *cur_ms to the minimum after a successful connect. */
int64_t gw_mqtt_client_backoff(int64_t *cur_ms, int64_t max_ms);

#endif
