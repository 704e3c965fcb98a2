/* MQTT sensor ingest: one Paho MQTTAsync subscriber per configured source
 * (cfg->mqtt_sources), mapping each message to a configured device and handing it to
 * the core (reference/delivery.md §1.1, §1.6 item 3, §3).
 *
 * Connection: explicit MQTT version (3.1.1 or 5), a persistent session so that QoS 1
 * messages published while the gateway is down are delivered when it comes back:
 * fixed client id and cleansession=0 (MQTT 5: clean start off, session expiry one
 * week). This client only subscribes, so Paho 1.3.12's corrupt resend of outbound
 * messages with cleansession=0 does not apply. Reconnects with exponential backoff and
 * jitter (0.5 s .. 30 s) and subscribes again on every connect (in the connect
 * callback). TLS with verification for ssl:// and mqtts://.
 *
 * Mapping: each subscription's topic pattern may name one level ("{dev_eui}"); its
 * value is the device key. Otherwise the subscription's device_key is a JSON path
 * ("deviceInfo.devEui", "meta.id", "a.b[0].c") into the payload: the payload is
 * size-capped, copied, NUL-terminated and parsed strictly; a string value (or an
 * integral number) is the key. Keys match devices[i].key of the devices whose
 * mqtt.source is this source, case-insensitively (DevEUIs come in either case).
 * The first subscription whose pattern matches a topic handles it. The decoder is the
 * device's, else the subscription's, else "json".
 *
 * Bad input is counted per source and reason and dropped alone: payloads over
 * max_payload, invalid JSON or a missing key on a JSON-path subscription, unknown
 * devices (each unknown key logged once, up to 256 keys; after that rate-limited).
 *
 * Hand-over: Paho's receive thread only matches the topic, checks the size and copies
 * the whole message into a bounded inbox (4 MiB, or more for two of the largest messages),
 * so it goes back to the socket at once. The "mqtt-decode" thread takes the messages in
 * order, finds the device (topic level or JSON path) and calls hooks->on_message. The
 * hook returns 0 when the message is taken (or deliberately dropped: decode errors are
 * the hook's to count), or GW_EFULL / GW_ETIMEDOUT / GW_EAGAIN when the core is full:
 * then the same message is offered again (after 10 ms, doubling to 0.5 s), counted as
 * "deferred" each time. The hook may block (backpressure): the inbox fills, and then
 * Paho's thread waits up to 1 s per message and leaves it to Paho, which calls again
 * later (also counted as "deferred"), so a slow core never loses a message silently.
 * Paho acknowledges a QoS 1 message to the broker before its callback runs (Paho
 * 1.3.x), so what sits in the inbox is lost on a crash, as what sits in Paho is.
 * gw_ingest_stop() delivers everything in the inbox before it returns.
 *
 * Threads: gw_ingest_start() starts "mqtt-ingest", which connects and reconnects, and
 * "mqtt-decode", which runs the hooks; Paho's threads run its callbacks. gw_ingest_stats_get() may be called from any thread. */
#ifndef CITYGATE_MQTT_INGEST_H
#define CITYGATE_MQTT_INGEST_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct cJSON;

typedef struct gw_ingest_hooks {
    void *ctx;
    /* device_idx indexes cfg->devices; decoder, topic (NUL-terminated) and payload
     * (len bytes, NOT NUL-terminated) are borrowed for the call only. doc: on a
     * device_key subscription the payload as parsed (gw_decode_json_parse) to find the
     * device, for gw_decode_parsed, so it is not parsed twice; else NULL. Borrowed,
     * read only. recv_ts_us is the wall-clock receive time. Required. */
    int (*on_message)(void *ctx, size_t device_idx, const char *decoder, const char *topic,
                      const void *payload, size_t len, const struct cJSON *doc,
                      int64_t recv_ts_us);
    /* Optional: called after each batch of on_message calls (a hook that gathers
     * samples across messages hands them over here). Same thread. */
    void (*flush)(void *ctx);
} gw_ingest_hooks;

typedef struct gw_ingest_stats {
    int connected;
    uint64_t received;          /* messages that arrived (each delivery attempt once) */
    uint64_t matched;           /* handed to on_message and taken */
    uint64_t unknown_device;    /* key not configured for this source */
    uint64_t oversize;          /* payload over max_payload */
    uint64_t bad_json;          /* JSON-path subscription: payload not valid JSON */
    uint64_t no_key;            /* JSON-path subscription: no string key at the path */
    uint64_t no_match;          /* topic matched no subscription pattern */
    uint64_t deferred;          /* on_message said full: Paho delivers again later */
    uint64_t rejected;          /* on_message failed otherwise (message dropped) */
    uint64_t connects, connect_failures, connection_losses;
    char last_error[128];
} gw_ingest_stats;

typedef struct gw_ingest gw_ingest;

/* Check the MQTT sources of cfg without connecting: URLs, topic patterns, JSON paths,
 * subscriptions without a way to find the device, duplicate device keys. Each problem
 * is added to errs as "file: mqtt_sources[i]....: message". Returns 0 or GW_ECONFIG. */
int gw_ingest_check(const gw_config *cfg, gw_cfgerr *errs);

/* Create the subscribers (not connected yet). cfg is borrowed and must outlive the
 * ingest; hooks is copied. Returns 0 and *out (also with no sources: then it does
 * nothing), GW_EINVAL for a bad pattern or URL, GW_ENOMEM, GW_EIO. */
int gw_ingest_new(const gw_config *cfg, const gw_ingest_hooks *hooks, gw_ingest **out);
/* Start connecting (thread "mqtt-ingest"). Returns 0 or GW_EIO. */
int gw_ingest_start(gw_ingest *ing);
/* Disconnect every source (the broker keeps the sessions) and join the thread; no
 * on_message call is running or will run once it returns. Idempotent. */
void gw_ingest_stop(gw_ingest *ing);
void gw_ingest_free(gw_ingest *ing);

size_t gw_ingest_n_sources(const gw_ingest *ing);
/* Counters of source i (index into cfg->mqtt_sources). Returns 0 or GW_EINVAL. */
int gw_ingest_stats_get(gw_ingest *ing, size_t i, gw_ingest_stats *out);

#endif
