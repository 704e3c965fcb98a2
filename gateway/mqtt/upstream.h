/* The upstream MQTT publisher: alarm events, retained alarm state, the gateway's
 * status, the periodic report and alarm commands, to the city's broker
 * (DESIGN.md §5, reference/delivery.md §1.1 and §1.6).
 *
 * Delivery: the gateway's durable outbox is the source of truth, reached through
 * hooks. The publisher fetches messages in sequence order into a window of at most
 * max_inflight, publishes them at QoS 1 and reports a message delivered (hooks->acked)
 * only after the broker's PUBACK. A publish that fails (onFailure, e.g. -11 when Paho
 * drops its session on reconnect) or is outstanding when the connection is lost is
 * published again, same payload, after reconnecting; so every fetched message is
 * either acked or still in the window, and a restart fetches the unacked ones again
 * from the outbox. Paho's own persistence is off and the session is clean
 * (Paho 1.3.12 corrupts resent payloads with cleansession=0).
 *
 * Connection: MQTT 3.1.1 or 5 (never the fallback default), clean session,
 * keepalive from the config, will "<prefix>/<gw>/status" = "offline" (QoS 1,
 * retained), birth "online" (retained) on every connect, "offline" on a clean stop;
 * reconnects with exponential backoff and jitter (0.5 s .. 30 s). ssl:// or mqtts://
 * turn on TLS with certificate and host name verification (CA file, client cert/key).
 * The password never reaches the log (the lead registers it as a log secret).
 * On every connect it subscribes "<prefix>/<gw>/cmd/+" at QoS 1.
 *
 * Threads: gw_upstream_start() starts one thread, "upstream", which calls every hook
 * (fetch, acked, command, report) and does all publishing and connecting. Paho's own
 * threads run its callbacks (connect result, publish results, connection lost, message
 * arrived); they only update state under the publisher's mutex, copy inbound commands
 * into a small bounded queue and wake the upstream thread. gw_upstream_notify() and
 * gw_upstream_stats() may be called from any thread. */
#ifndef CITYGATE_MQTT_UPSTREAM_H
#define CITYGATE_MQTT_UPSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One message of the outbox, lent to the emit callback (copied by the publisher). */
typedef struct gw_upstream_msg {
    uint64_t seq;         /* outbox sequence, > 0, strictly increasing */
    const char *topic;    /* suffix after "<prefix>/<gateway id>/": "event/mh-0001",
                             "alarm/mh-0001/cover-tilt"; NUL-terminated */
    const void *payload;  /* may be NULL when len is 0 (cleared retained alarm state) */
    size_t len;
    int retained;         /* 1 for alarm state */
} gw_upstream_msg;

typedef void (*gw_upstream_emit_fn)(void *ectx, const gw_upstream_msg *m);

typedef struct gw_upstream_hooks {
    void *ctx;            /* passed to every hook */
    /* Call emit(ectx, m) for up to max outbox messages with seq > after_seq, in
     * increasing seq order; return how many were emitted (0: none pending) or a
     * negative GW_E* (retried later). Must not block for long. Required. */
    int (*fetch)(void *ctx, uint64_t after_seq, size_t max, gw_upstream_emit_fn emit,
                 void *ectx);
    /* The broker acknowledged seq and every message fetched before it: the outbox may
     * delete them (or move its high-water mark). Called in strictly increasing seq
     * order. Required. */
    void (*acked)(void *ctx, uint64_t seq);
    /* An inbound command "<prefix>/<gw>/cmd/<verb>" (verb is a safe topic level);
     * payload is the request JSON (NUL-terminated copy, len bytes, already checked to
     * parse and to carry a "request_id" string). Return 0 or a negative GW_E*. The hook
     * may set *reply_json to a JSON text allocated with gw_malloc (the publisher frees
     * it); it becomes "result" in the reply. Optional: without it every command is
     * answered {"ok": false, "error": "commands not supported"}. */
    int (*command)(void *ctx, const char *verb, const char *payload, size_t len,
                   char **reply_json);
    /* The periodic report body (JSON, allocated with gw_malloc, freed by the
     * publisher) or NULL to skip this period. Optional. */
    char *(*report)(void *ctx);
} gw_upstream_hooks;

typedef struct gw_upstream_stats {
    int connected;              /* 1 while connected to the broker */
    uint64_t published;         /* outbox messages handed to Paho (first attempts) */
    uint64_t republished;       /* outbox messages published again after a failure */
    uint64_t acked;             /* outbox messages reported to hooks->acked */
    uint64_t failed;            /* publish attempts that failed (callback or submit) */
    uint64_t inflight;          /* messages in the window now */
    uint64_t connects;          /* successful connections */
    uint64_t connect_failures;  /* failed connection attempts */
    uint64_t connection_losses; /* connections lost after being established */
    uint64_t commands;          /* commands answered */
    uint64_t commands_malformed;/* commands dropped or answered with an error */
    uint64_t reports;           /* reports published */
    uint64_t last_acked_seq;
    char last_error[128];       /* last connection / publish error, "" if none */
} gw_upstream_stats;

typedef struct gw_upstream gw_upstream;

/* Create a publisher for cfg (borrowed; must outlive the publisher) and gateway_id
 * (copied). hooks is copied. Returns 0 and *out, GW_EINVAL for a bad configuration
 * (URL scheme, empty id, max_inflight < 1) or GW_ENOMEM / GW_EIO (Paho refused).
 * Nothing connects until gw_upstream_start(). Thread: the caller's. */
int gw_upstream_new(const gw_upstream_cfg *cfg, const char *gateway_id,
                    const gw_upstream_hooks *hooks, gw_upstream **out);
/* Start the upstream thread (it connects and keeps connecting). Returns 0 or GW_EIO. */
int gw_upstream_start(gw_upstream *up);
/* New messages were committed to the outbox: fetch soon. Thread: any; cheap. */
void gw_upstream_notify(gw_upstream *up);
/* Snapshot of the counters. Thread: any. */
void gw_upstream_stats_get(gw_upstream *up, gw_upstream_stats *out);
/* Clean stop: publish "offline" (waits up to timeout_ms for its PUBACK), disconnect,
 * join the thread. Unacked messages stay in the outbox. Idempotent. */
void gw_upstream_stop(gw_upstream *up, int timeout_ms);
/* Stop if needed and free everything. NULL is fine. */
void gw_upstream_free(gw_upstream *up);

#endif
