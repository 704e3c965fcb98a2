/* The event JSON of DESIGN.md §5 ("citygate.event/1", docs/events.md,
 * docs/event.schema.json) and the retained alarm-state JSON of topic
 * …/alarm/{device}/{rule}. A pure formatter: no clock, no I/O (the event id's random
 * bits come from getrandom(2), the only system call).
 *
 * Thread: any (no shared state). Ownership: inputs are borrowed; the returned text is
 * the caller's (gw_free). */
#ifndef CITYGATE_RULES_EVENT_H
#define CITYGATE_RULES_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "rules/alarm.h"
#include "rules/rule.h"
#include "sample.h"

#define GW_EVENT_ID_LEN 36 /* "0190f0b4-3c1e-7abc-8def-0123456789ab" */
#define GW_EVIDENCE_MAX 8  /* samples carried as evidence */

const char *gw_event_type_name(gw_event_type t); /* "raised", "updated", ... */

/* The recent samples of one field that led to an event. */
typedef struct gw_evidence {
    const char *field;       /* NULL: the device as a whole (stale / quality rules) */
    double value;
    const char *text;        /* text-valued field, or NULL */
    const char *unit;        /* may be NULL or "" */
    gw_quality quality;
    int has_value;           /* 0: no sample yet (value omitted) */
    int n;                   /* samples, oldest first */
    int64_t ts[GW_EVIDENCE_MAX];
    double v[GW_EVIDENCE_MAX];
} gw_evidence;

/* An operator command carried by acked / shelved / ... events. */
typedef struct gw_event_cmd {
    const char *request_id, *user, *comment; /* each may be NULL */
} gw_event_cmd;

typedef struct gw_event_info {
    gw_event_type type;
    const char *reason;      /* "condition", "escalated", "renotify", "command", ... or NULL */
    uint64_t seq;
    int64_t ts_us;
    char event_id[GW_EVENT_ID_LEN + 1];
    const gw_config *cfg;    /* gateway id, timezone, scheme, problem_types */
    const gw_device *dev;
    const gw_rule_inst *rule;
    const gw_alarm *alarm;   /* the alarm after the event */
    int level;               /* 1-based level the event speaks of (a cleared event: the
                              * level that cleared); 0: the alarm's reported level */
    const gw_evidence *evidence; /* may be NULL */
    const gw_event_cmd *cmd;     /* may be NULL */
} gw_event_info;

/* A fresh UUID-v7-like id: 48 bits of ts_us / 1000 (ms), version 7, variant 10, random
 * bits from getrandom(2). Writes GW_EVENT_ID_LEN + 1 bytes. */
void gw_event_make_id(char out[GW_EVENT_ID_LEN + 1], int64_t ts_us);

/* Format the event. Returns 0 with *out (gw_free) or GW_ENOMEM / GW_EINVAL. */
int gw_event_format(const gw_event_info *ev, char **out);

/* The retained alarm state for …/alarm/{device}/{rule}: the alarm, rule, problem,
 * device and component parts of the event plus "seq" and "ts" of the last event.
 * Returns 0 with *out (gw_free), or 0 with *out NULL when the alarm is not active and
 * not suppressed (cleared, acknowledged or not: publish an empty retained message). */
int gw_event_format_retained(const gw_event_info *ev, char **out);

#endif
