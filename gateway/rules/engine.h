/* The rule engine: evaluates every device's compiled rules on each sample and on timer
 * ticks, owns all alarm state, and hands each event to a commit hook (the durable
 * outbox) before it counts as raised.
 *
 * Thread: single-threaded. Every function, and the hooks, run on the engine thread that
 * owns the engine; other threads reach it through a queue (samples, commands) and get
 * snapshots back (gw_engine_alarms_json).
 *
 * Time: samples carry their acquisition time (ts_us) and ticks carry now_us; commands
 * use hooks->now_us when set (tests inject a clock), else the wall clock. The engine
 * itself never reads the clock otherwise.
 *
 * Durability: an event counts only when commit() returns 0. If it fails, the alarm
 * keeps its previous state, the transition stays due and is offered again on the next
 * tick (with the same seq: a failed commit consumes no number). At start, restore the
 * last committed seq and every saved alarm state before the first sample: alarms active
 * before the restart are not raised again, clears that happen while down are reported,
 * and normal points stay silent. */
#ifndef CITYGATE_RULES_ENGINE_H
#define CITYGATE_RULES_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rules/alarm.h"
#include "rules/event.h"
#include "sample.h"

/* One event handed to commit(); every pointer is borrowed for the call only. */
typedef struct gw_event_out {
    uint64_t seq;
    const char *event_id;
    gw_event_type type;
    const char *type_name;   /* "raised", ... */
    const char *device_id;
    const char *rule_id;
    const char *alarm_id;    /* "<device>/<rule>" */
    int64_t ts_us;
    const char *json;        /* the event ("citygate.event/1") for …/event/{device} */
    size_t json_len;
    const char *state_json;  /* persistent alarm state for restore; NULL: forget the alarm */
    const char *retained_json; /* for …/alarm/{device}/{rule} (retained); NULL: empty retained */
} gw_event_out;

typedef struct gw_engine_hooks {
    /* Store the event and the alarm state in one durable transaction; return 0 when
     * stored, non-zero to have the engine retry on the next tick. Required. */
    int (*commit)(void *ctx, const gw_event_out *ev);
    /* Wall clock for commands (epoch µs); NULL: gw_now_us(). */
    int64_t (*now_us)(void *ctx);
} gw_engine_hooks;

typedef struct gw_engine_stats {
    uint64_t samples;            /* samples seen */
    uint64_t evaluations;        /* rule evaluations (one rule instance, one sample or tick) */
    uint64_t unknown_device;     /* samples for devices not in the configuration */
    uint64_t events[GW_EV__COUNT]; /* committed events by type */
    uint64_t commit_failures;
    uint64_t commands, commands_rejected;
    size_t rules;                /* compiled rule instances */
    size_t active;               /* alarms reported active */
    size_t active_by_severity[GW_SEV__COUNT];
    size_t suppressed;           /* shelved or out of service */
    size_t pending;              /* transitions waiting for a commit retry */
} gw_engine_stats;

typedef struct gw_engine gw_engine;

/* Compile every enabled device's rules from cfg (borrowed: must outlive the engine).
 * Returns 0 with *out, GW_ENOMEM, or GW_EINVAL (no commit hook). Rules that do not
 * compile are logged and skipped (`citygate check` reports them as errors). */
int gw_engine_new(const gw_config *cfg, const gw_engine_hooks *hooks, void *ctx, gw_engine **out);
void gw_engine_free(gw_engine *e);

/* Start-up restore: the last committed seq (the next event gets last_seq + 1), then the
 * saved state of each alarm (the state_json of its last committed event).
 * restore_alarm returns 0, GW_ENOTFOUND (no such alarm any more: the rule or device was
 * removed; the caller may drop the record) or GW_EINVAL (unreadable state). */
void gw_engine_restore(gw_engine *e, uint64_t last_seq);
int gw_engine_restore_alarm(gw_engine *e, const char *alarm_id, const char *state_json);

/* Evaluate one sample. Returns 0, GW_ENOTFOUND (unknown device: counted, dropped) or
 * GW_EAGAIN (an event is waiting for a commit retry). */
int gw_engine_on_sample(gw_engine *e, const gw_sample *s);

/* Timers: staleness, on/off delays, shelve expiry, re-notify, commit retries. Call about
 * once a second. Returns 0, or GW_EAGAIN while a commit keeps failing. */
int gw_engine_tick(gw_engine *e, int64_t now_us);

/* An operator command: verb "ack", "shelve", "unshelve", "out_of_service",
 * "in_service"; request {"request_id", "alarm": "<device>/<rule>", "until" (RFC 3339) or
 * "duration_s" (shelve), "user", "comment"}. Always sets *reply_json (gw_free) to
 * {"request_id", "ok": true|false, "alarm", "state", "event_id"?, "seq"?, "error"?}.
 * Returns 0 when applied, GW_EINVAL / GW_ENOTFOUND when refused, GW_EAGAIN when the
 * commit failed (nothing applied; the sender may retry), GW_ENOMEM. */
int gw_engine_command(gw_engine *e, const char *verb, const char *request_json, char **reply_json);

/* Alarms that are not normal (active, unacknowledged, shelved, out of service): fn is
 * called with each alarm id, its rule instance and its state; stop early by returning
 * non-zero (that value is returned). */
typedef int (*gw_engine_alarm_fn)(void *ctx, const char *alarm_id, const gw_rule_inst *ri,
                                  const gw_alarm *a);
int gw_engine_foreach_alarm(gw_engine *e, gw_engine_alarm_fn fn, void *ctx);

/* Snapshot of the alarms that are not normal as a JSON array of retained-state objects
 * (for the HTTP page; hand the text to another thread). Returns 0 with *out (gw_free). */
int gw_engine_alarms_json(gw_engine *e, char **out);

/* Alarms of the gateway itself (DESIGN.md §6: "401/403/404 are configuration faults,
 * raised as an alarm of the gateway itself"). A system alarm is an ordinary alarm of a
 * pseudo-device, the gateway: alarm id "<gateway id>/<rule_id>", device {"id": gateway
 * id, "kind": "gateway", "profile": null, "name": gateway name}, problem class
 * "gateway", every component member null, evidence {"field": null, "value": detail}. It
 * goes through the same commit hook (seq, outbox, retained …/alarm/<gateway>/<rule_id>),
 * takes the same commands (ack, shelve, out_of_service, ...) and is saved and restored
 * like any other alarm (gw_engine_restore_alarm accepts any "<gateway id>/<rule>").
 *
 * active = 1: the condition holds (raised at once: no delays); 0: it no longer holds
 * (cleared). Calling again with the same value is cheap and emits nothing (detail is
 * kept for the next event). sev (GW_SEV_WARNING..GW_SEV_CRITICAL, or GW_SEV_NONE for
 * the rule's default) applies when raised; a different sev while active is reported as
 * an `updated` event (escalated / deescalated). problem_name may be NULL (known rule
 * ids have one; others default to the rule id); detail (may be NULL) is a short text
 * shown as the evidence value. Known rule ids (GW_SYSALARM_*) carry a problem code
 * G01.., a default severity and a condition text; any other id matching [a-z0-9_-]+
 * gets code "G00".
 *
 * A restored active system alarm stays active until the caller says otherwise: the
 * caller clears it once it has seen the fault gone (not merely not seen it yet).
 *
 * Returns 0, GW_EAGAIN (the commit failed: the transition stays due and is retried by
 * gw_engine_tick), GW_EINVAL (bad rule id or severity, or the config has no gateway
 * id) or GW_ENOMEM. Thread: the engine thread (like every other call). */
#define GW_SYSALARM_INFLUX_CONFIG "influx-config"     /* InfluxDB answers 401/403/404 */
#define GW_SYSALARM_TELEMETRY_DROP "telemetry-dropped" /* spool full: telemetry dropped */
#define GW_SYSALARM_EVENT_STORE "event-store"         /* outbox commits keep failing */
int gw_engine_system_alarm(gw_engine *e, const char *rule_id, gw_severity sev, int active,
                           const char *problem_name, const char *detail, int64_t now_us);

void gw_engine_stats_get(gw_engine *e, gw_engine_stats *out);
uint64_t gw_engine_last_seq(const gw_engine *e);

#endif
