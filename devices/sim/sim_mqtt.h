/* MQTT side of the simulator: every enabled device with "mqtt" in the config publishes
 * an uplink every interval_ms to its source's broker, as a ChirpStack v4 uplink event
 * (deviceInfo.devEui = the device key, object = the device's fields, data = base64 of a
 * small binary frame, time RFC 3339) on the topic its subscription expects
 * (application/<app id>/device/<key>/event/up for the usual pattern); a device whose
 * subscription uses the plain "json" decoder gets the bare fields object with its key
 * at the subscription's device_key path instead.
 *
 * One Paho MQTTAsync client per source (MQTT 3.1.1, clean session, automatic
 * reconnect, QoS 1). While a client is disconnected its devices' uplinks are skipped
 * and counted, like a radio network that loses frames.
 *
 * Thread: start / publish / stop on the main loop; Paho's callbacks run on Paho's
 * thread and only touch an atomic flag and the log. Ownership: borrows the model. */
#ifndef CITYGATE_SIM_MQTT_H
#define CITYGATE_SIM_MQTT_H

#include <stdint.h>

#include "sim_model.h"

typedef struct sim_mqtt sim_mqtt;

/* Create and connect (asynchronously) a client per source that has devices. Returns 0
 * (also with no MQTT device: *out is then an idle object), GW_ENOMEM or GW_EIO. */
int sim_mqtt_start(sim_model *m, sim_mqtt **out);

/* Publish every uplink due at now_ms (monotonic). Returns the monotonic ms of the next
 * one, or -1 when there is none. */
int64_t sim_mqtt_publish_due(sim_mqtt *q, int64_t now_ms);

/* 1 when every client is connected (or there is none). */
int sim_mqtt_connected(const sim_mqtt *q);

/* Disconnect (up to 1 s) and free. NULL is ignored. */
void sim_mqtt_stop(sim_mqtt *q);

#endif
