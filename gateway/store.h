/* The local store: latest value of every point, a short history per point, the
 * current state of every active alarm and the most recent events. It feeds the HTTP
 * API and the dashboard; it is memory only (the durable stores are outbox/spool).
 *
 * Thread: gw_store_put / gw_store_alarm / gw_store_event are called by the engine
 * thread (and pollers for health); the *_json readers by the HTTP thread. One rwlock
 * guards everything. Returned strings are the caller's (gw_free). */
#ifndef CITYGATE_STORE_H
#define CITYGATE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sample.h"

typedef struct gw_store gw_store;

typedef enum {
    GW_HEALTH_UNKNOWN = 0, GW_HEALTH_ONLINE, GW_HEALTH_DEGRADED, GW_HEALTH_OFFLINE,
    GW_HEALTH_PROBING, GW_HEALTH__COUNT
} gw_health;

const char *gw_health_name(gw_health h);

/* cfg is borrowed and must outlive the store. */
int gw_store_new(const gw_config *cfg, gw_store **out);
void gw_store_free(gw_store *st);

/* Record one sample (copied): latest value and history of (device, field). */
void gw_store_put(gw_store *st, const gw_sample *s);
/* The same for n samples in order, under one lock (the engine's batches). */
void gw_store_put_many(gw_store *st, const gw_sample *s, size_t n);
/* Wall time (epoch µs) of the device's last good sample, 0 if none. */
int64_t gw_store_last_good_us(gw_store *st, size_t device_idx);
/* Device health as seen by its source (poller or ingest). */
void gw_store_set_health(gw_store *st, size_t device_idx, gw_health h);
/* Modbus detail of a device for /api/devices: the last Modbus exception code it answered
 * (0 = none) and its current error text ("" or NULL = none; copied, truncated to 127
 * bytes). Shown as "last_exception" / "last_error" on Modbus devices only. */
void gw_store_set_modbus_detail(gw_store *st, size_t device_idx, int last_exception,
                                const char *last_error);
/* Alarm state: state_json (copied) is the retained alarm-state JSON; NULL removes. */
void gw_store_alarm(gw_store *st, const char *alarm_id, const char *state_json);
/* Append one event JSON (copied) to the recent-events ring. */
void gw_store_event(gw_store *st, const char *event_json);

typedef struct gw_store_counts {
    size_t devices, online, degraded, offline, unknown, points, alarms;
} gw_store_counts;
void gw_store_counts_get(gw_store *st, gw_store_counts *out);

/* JSON documents for the HTTP API; NULL on allocation failure. */
char *gw_store_devices_json(gw_store *st, int64_t now_us);
char *gw_store_alarms_json(gw_store *st);
char *gw_store_events_json(gw_store *st, size_t limit);
/* History of one point over the last minutes: {"device","field","unit","points":[[ts_ms,v],...]}.
 * Returns NULL with *not_found = 1 when the point is unknown. */
char *gw_store_history_json(gw_store *st, const char *device, const char *field, int minutes,
                            int64_t now_us, int *not_found);

#endif
