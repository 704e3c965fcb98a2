/* Rule sets: parse, validate and compile rules/NAME.json into per-device rule instances.
 *
 * A rule set (docs/rules.md, rules/rules.schema.json) is a list of rules; a rule names a
 * condition over one device's fields, severity levels with raise / clear limits
 * (deadband), on-delay / off-delay or N-of-M debounce, an optional re-notify interval and
 * the problem (class, code, name) it reports. gw_rule_compile() resolves a rule for one
 * device: selectors, parameter references ({"param": "rated_power_w", "factor": 0.1}) and
 * the device's overrides, producing a gw_rule_inst the engine evaluates.
 *
 * Errors are collected as "FILE: json.path: message" (config.h gw_cfgerr).
 *
 * Thread: parsing and compiling run on the main thread at start; compiled instances are
 * then owned by the engine thread. Ownership: gw_rule_inst owns every string and array
 * in it; gw_rule_inst_clear frees them. Borrowed pointers into gw_config are noted. */
#ifndef CITYGATE_RULES_RULE_H
#define CITYGATE_RULES_RULE_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sample.h"

#define GW_LEVELS_MAX 4       /* severity levels per rule (warning, minor, major, critical) */
#define GW_RULE_FIELDS_MAX 16 /* distinct fields one rule may reference */

typedef enum {
    GW_SEV_NONE = 0,
    GW_SEV_WARNING,
    GW_SEV_MINOR,
    GW_SEV_MAJOR,
    GW_SEV_CRITICAL,
    GW_SEV__COUNT
} gw_severity;

const char *gw_rule_severity_name(gw_severity s);      /* "none", "warning", ... */
int gw_rule_severity_parse(const char *name, gw_severity *out); /* 0 or GW_EINVAL */

typedef enum {
    GW_OP_GT = 0, GW_OP_GE, GW_OP_LT, GW_OP_LE, /* thresholds with raise / clear */
    GW_OP_EQ, GW_OP_NE,                          /* number, boolean or text */
    GW_OP_BETWEEN, GW_OP_OUTSIDE,                /* low / high with deadband */
    GW_OP_IN, GW_OP_NOT_IN,                      /* enum states */
    GW_OP_STUCK,                                 /* no change for T */
    GW_OP_STALE,                                 /* no good sample for T or N intervals */
    GW_OP_QUALITY,                               /* latest sample quality in a set */
    GW_OP_ALL, GW_OP_ANY,                        /* combinations */
    GW_OP__COUNT
} gw_rule_op;

/* A compiled condition node. Field references are indexes into the instance's field
 * list (fields[]); -1 means the device as a whole (stale / quality of any sample). */
typedef struct gw_cond {
    gw_rule_op op;
    int rate;              /* compare the rate of change per minute, not the value */
    int64_t window_us;     /* rate window (default 60 s) */
    int n_fields;          /* stuck may watch several fields (any stuck) */
    int16_t fields[GW_RULE_FIELDS_MAX];
    double raise, clear;   /* GT..LE: raise limit and clear limit (deadband) */
    double low, high, deadband; /* BETWEEN / OUTSIDE */
    double tolerance;      /* STUCK: changes up to this are "no change" */
    int64_t for_us;        /* STUCK / STALE duration */
    int intervals;         /* STALE: N × device interval (resolved into for_us) */
    uint32_t quality_mask; /* QUALITY: bit per gw_quality */
    /* EQ / NE / IN / NOT_IN */
    int text;              /* compare as text (values are strings) */
    double *nums;
    char **texts;
    size_t n_vals;
    struct gw_cond *kids;  /* ALL / ANY */
    size_t n_kids;
    /* The rule's primary threshold leaf: the levels' raise / clear limits replace this
     * leaf's own. A flag, not a pointer in the instance, so it survives copies. */
    uint8_t primary;
} gw_cond;

/* One severity level of a rule: the limits of the primary threshold and its debounce. */
typedef struct gw_level {
    gw_severity severity;
    double raise, clear;     /* limits of the primary leaf (NaN when it has none) */
    int64_t on_delay_us, off_delay_us;
    int n, m;                /* N-of-M debounce (0 = off; then delays apply) */
    double escalate_step;    /* value escalation: an `updated` (reason "value") each time
                              * the value moves this far further into the alarm direction
                              * since it was last reported; 0 = off. In the field's unit */
    char *condition;         /* human text, e.g. "tilt_deg > 15 for 30s" */
} gw_level;

/* GW_PROB_GATEWAY: the gateway's own alarms (gw_engine_system_alarm); never from a rule file. */
typedef enum { GW_PROB_COMPONENT = 0, GW_PROB_EVENT, GW_PROB_DEVICE, GW_PROB_GATEWAY } gw_problem_class;
const char *gw_rule_problem_class_name(gw_problem_class c);

/* A rule compiled for one device. */
typedef struct gw_rule_inst {
    char *rule_id;           /* "cover-tilt" */
    char *alarm_id;          /* "mh-0001/cover-tilt" (stable alarm id) */
    char *name;              /* rule name, may be NULL */
    const char *set_name;    /* borrowed: rule-set name (gw_cfg_doc.name) */
    gw_cond root;            /* its primary leaf (if any) is flagged: gw_rule_primary() */
    gw_level levels[GW_LEVELS_MAX]; /* ascending severity */
    int n_levels;
    int64_t renotify_us;     /* 0 = off; re-announce while active and unacknowledged */
    /* Value escalation (levels[].escalate_step): the leaf whose value it watches, as
     * plain values (instances are copied). esc_field: index into fields, -1 = the rule
     * has no such leaf (escalate_step is then rejected). */
    int esc_field;
    gw_rule_op esc_op;       /* GT / GE (worse upward), LT / LE (downward), OUTSIDE */
    double esc_low, esc_high; /* OUTSIDE: the band the value moves away from */
    gw_problem_class pclass;
    char *pcode, *pname;
    int n_fields;
    char *fields[GW_RULE_FIELDS_MAX]; /* field names this rule reads */
    int evidence;            /* index into fields for the event evidence, -1 = none */
    int device_level;        /* evaluated on every sample of the device (stale/quality) */
    int timed;               /* needs evaluation on ticks (stale) */
} gw_rule_inst;

void gw_rule_inst_clear(gw_rule_inst *ri);

/* The threshold leaf the levels and the "raise"/"clear" overrides act on (the condition
 * itself, or the first > >= < <= leaf of an all / any), or NULL. Points into ri. */
const gw_cond *gw_rule_primary(const gw_rule_inst *ri);

/* How far x lies in the alarm direction of the rule's value-escalation leaf: x for
 * > >=, -x for < <=, the distance outside [low, high] for outside (negative inside).
 * NaN when the rule has no such leaf or x is NaN. A value is worse than a reference r
 * by gw_rule_excursion(ri, x) - gw_rule_excursion(ri, r). */
double gw_rule_excursion(const gw_rule_inst *ri, double x);

/* Validate every rule set of cfg (cfg->rulesets) and every device's overrides against
 * the rules it gets; add every error to errs. Returns 0 or GW_ECONFIG. Called by
 * gw_check_deep() for `citygate check` and before the engine starts. Thread: main. */
int gw_rules_check(const gw_config *cfg, gw_cfgerr *errs);

/* Rules that enabled devices do not get because a parameter they reference is missing
 * (params.NAME, no default): one line per device and rule added to warns, as
 * "CONFIG: devices[i].params: rule R (RULEFILE) skipped for device D: params.P not set".
 * Not errors: `citygate check` prints them in its summary. Returns the number of lines
 * added, or GW_ENOMEM. Thread: main. */
int gw_rules_warnings(const gw_config *cfg, gw_cfgerr *warns);

/* Validate one rule set document alone (no devices): for the fuzz target and tests.
 * file names the document in error lines. Returns 0 or GW_ECONFIG. */
int gw_rules_check_doc(const cJSON *doc, const char *file, gw_cfgerr *errs);

/* Compile the rules of device dev (its rule_sets, selectors, params, overrides) into a
 * new array *out of *n_out instances (gw_free each with gw_rule_inst_clear, then the
 * array). Rules a device cannot take (a missing parameter) are skipped with a warning.
 * Errors go to errs (may be NULL). Returns 0, GW_ECONFIG or GW_ENOMEM. */
int gw_rule_compile(const gw_config *cfg, const gw_device *dev, gw_cfgerr *errs,
                    gw_rule_inst **out, size_t *n_out);

/* Parse a duration: a number of seconds or a string "250ms", "30s", "5m", "6h", "1d".
 * Returns 0 or GW_EINVAL. */
int gw_rule_parse_duration(const cJSON *v, int64_t *us);

#endif
