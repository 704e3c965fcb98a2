/* The alarm state machine of one rule instance (ISA-18.2 / IEC 62682 style).
 *
 * Two halves:
 *  - the condition: per severity level a debounced on/off (raise / clear limits are
 *    applied by the caller when it computes the raw condition; on-delay, off-delay and
 *    N-of-M are applied here) giving cond_level, the highest level that is on;
 *  - the report: what upstream was told (rep_level, state, suppression). gw_alarm_next()
 *    proposes the next event that brings the report in line with the condition (raised,
 *    updated, cleared, unshelved on expiry, re-notify) as a new alarm value; the caller
 *    commits the event durably and only then stores the new value. A failed commit
 *    leaves the alarm as it was, so the transition is proposed again on the next tick:
 *    nothing is lost, nothing is applied twice.
 *
 * States: normal, active_unacked, active_acked, cleared_unacked; suppression: shelved
 * (until a time) or out_of_service, during which condition changes produce no event
 * (the report catches up when the suppression ends).
 *
 * Thread: owned by the engine thread. Plain value type (no pointers): copy freely. */
#ifndef CITYGATE_RULES_ALARM_H
#define CITYGATE_RULES_ALARM_H

#include <stdint.h>

#include "rules/rule.h"

typedef enum {
    GW_ALARM_NORMAL = 0,
    GW_ALARM_ACTIVE_UNACKED,
    GW_ALARM_ACTIVE_ACKED,
    GW_ALARM_CLEARED_UNACKED,
} gw_alarm_state;

typedef enum { GW_SUP_NONE = 0, GW_SUP_SHELVED, GW_SUP_OUT_OF_SERVICE } gw_alarm_sup;

typedef enum {
    GW_EV_RAISED = 0,
    GW_EV_UPDATED,
    GW_EV_CLEARED,
    GW_EV_ACKED,
    GW_EV_SHELVED,
    GW_EV_UNSHELVED,
    GW_EV_OUT_OF_SERVICE,
    GW_EV_IN_SERVICE,
    GW_EV__COUNT
} gw_event_type;

typedef struct gw_alarm_level {
    uint8_t raw;            /* last raw condition */
    uint8_t on;             /* debounced */
    uint8_t hist_n;         /* N-of-M: samples in hist (<= 32) */
    uint32_t hist;          /* N-of-M: bit 0 = latest sample */
    int64_t true_since;     /* raw became true (valid while raw) */
    int64_t false_since;    /* raw became false (valid while !raw) */
} gw_alarm_level;

typedef struct gw_alarm {
    gw_alarm_level lv[GW_LEVELS_MAX];
    int cond_level;         /* 0 = normal, else 1 + index of the highest level on */
    int64_t cond_since;     /* when the raw condition of this episode began */
    /* what upstream knows */
    int rep_level;
    gw_alarm_state state;
    gw_alarm_sup sup;
    int64_t shelved_until;  /* GW_SUP_SHELVED: epoch µs */
    int64_t active_since;
    uint32_t count;         /* raises since the alarm was last normal */
    int64_t last_notify;    /* last raised / updated / cleared event */
    int64_t last_change;    /* last event of any type */
    double value;           /* evidence value at the last event */
    /* Value escalation: the escalation leaf's value when last reported (raised /
     * updated); persisted, so a restart does not report the same worsening again. */
    double esc_ref;
    uint8_t esc_has;        /* esc_ref holds a value */
} gw_alarm;

const char *gw_alarm_state_name(gw_alarm_state s);  /* "normal", "active_unacked", ... */
/* The state as reported: "shelved" / "out_of_service" while suppressed, else the above. */
const char *gw_alarm_display_state(const gw_alarm *a);

/* Feed the raw condition of every level (bit i = level i) at time t. sample: this comes
 * from a sample (counts for N-of-M); ticks pass 0 and only advance delays. Returns 1 if
 * cond_level changed. */
int gw_alarm_debounce(gw_alarm *a, const gw_rule_inst *ri, uint32_t raw_mask, int64_t t, int sample);

/* Is a level's debounce waiting for time to pass (a delay running)? Ticks need only
 * visit alarms for which this, a suppression expiry or a re-notify is due. */
int gw_alarm_waiting(const gw_alarm *a, const gw_rule_inst *ri);

/* Propose the next event that brings the report in line with the condition at now.
 * x is the current good value of the rule's escalation leaf (ri->esc_field), NaN when
 * unknown or the rule has none. In order of precedence:
 *  - unshelved (reason "expired") when a shelve has run out; nothing else while
 *    suppressed (shelved, out of service);
 *  - raised / cleared / updated ("escalated", "deescalated") when the debounced level
 *    differs from the reported one;
 *  - updated ("value"), same severity, when x lies at least the reported level's
 *    escalate_step further into the alarm direction than the value last reported, and
 *    no higher level is waiting for its delay (the escalation will report it);
 *  - updated ("renotify") every ri->renotify_us while active and unacknowledged.
 * Raised and updated events take x as the new reference. Returns 1 with *next (the
 * alarm after the event), *type and *reason set, or 0 if nothing is due. */
int gw_alarm_next(const gw_alarm *a, const gw_rule_inst *ri, int64_t now, double x,
                  gw_alarm *next, gw_event_type *type, const char **reason);

/* Is a value escalation due for value x (the "value" case of gw_alarm_next)? */
int gw_alarm_value_due(const gw_alarm *a, const gw_rule_inst *ri, double x);

/* Propose the result of an operator command at now: verb "ack", "shelve" (until > now),
 * "unshelve", "out_of_service", "in_service". Returns 0 with *next and *type, or
 * GW_EINVAL with *why naming the reason the command does not apply. */
int gw_alarm_command(const gw_alarm *a, const char *verb, int64_t until, int64_t now,
                     gw_alarm *next, gw_event_type *type, const char **why);

/* Nothing to remember: normal, not suppressed, nothing reported. */
int gw_alarm_is_normal(const gw_alarm *a);

/* Serialise the persistent part (JSON text, gw_free) / restore it into a fresh alarm
 * for rule ri. Returns 0, GW_ENOMEM or GW_EINVAL (bad text). */
int gw_alarm_to_json(const gw_alarm *a, char **out);
int gw_alarm_from_json(gw_alarm *a, const gw_rule_inst *ri, const char *json);

#endif
