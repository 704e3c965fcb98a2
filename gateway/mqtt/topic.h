/* MQTT topic patterns with one optional named segment, e.g.
 * "application/+/device/{dev_eui}/event/up".
 *
 * A pattern is an MQTT topic filter in which one whole level may be written "{name}"
 * (name: [A-Za-z0-9_], 1..31 bytes). It compiles to the filter the client subscribes
 * with ("{name}" becomes "+") and matches received topics the way a broker would
 * (3.1.1 §4.7: "+" is one level, possibly empty; "#" is the rest, last level only, and
 * also matches the parent; wildcards in the first level never match "$..." topics);
 * on a match it reports where the named level's value lies in the topic.
 *
 * Pure functions, no I/O. Thread: any; a compiled pattern is read-only after compile
 * and may be shared. Ownership: gw_topic_pattern owns its strings; gw_topic_pattern_free
 * releases them. */
#ifndef CITYGATE_MQTT_TOPIC_H
#define CITYGATE_MQTT_TOPIC_H

#include <stddef.h>

#define GW_TOPIC_NAME_MAX 32   /* named segment name, including the NUL */
#define GW_TOPIC_LEVELS_MAX 32 /* levels in a pattern */

typedef enum { GW_TL_LITERAL = 0, GW_TL_PLUS, GW_TL_HASH, GW_TL_NAMED } gw_topic_level_kind;

typedef struct gw_topic_level {
    gw_topic_level_kind kind;
    const char *text;     /* GW_TL_LITERAL: the level (points into pattern copy) */
    size_t len;
} gw_topic_level;

typedef struct gw_topic_pattern {
    char *pattern;        /* copy of the pattern as written; levels point into it */
    char *filter;         /* subscription filter: "{name}" replaced by "+" */
    char name[GW_TOPIC_NAME_MAX]; /* the named segment's name, "" when there is none */
    int named_level;      /* level index of the named segment, -1 when none */
    size_t n_levels;
    gw_topic_level levels[GW_TOPIC_LEVELS_MAX];
} gw_topic_pattern;

/* Where the named segment's value lies in a matched topic (not NUL-terminated). */
typedef struct gw_topic_capture {
    const char *value;    /* NULL when the pattern has no named segment */
    size_t len;
} gw_topic_capture;

/* Compile pattern into *out (zeroed first). Returns 0, GW_EINVAL with a one-line reason
 * in err (if errlen > 0) for a malformed pattern, or GW_ENOMEM. Malformed: empty,
 * longer than 1024 bytes, more than GW_TOPIC_LEVELS_MAX levels, "#" not alone as the
 * last level, "+" mixed with other characters in a level, "{" or "}" anywhere but a
 * whole "{name}" level, a bad name, more than one named segment, NUL/control bytes. */
int gw_topic_pattern_compile(const char *pattern, gw_topic_pattern *out, char *err,
                             size_t errlen);
void gw_topic_pattern_free(gw_topic_pattern *p);

/* Match topic (topic_len bytes, not necessarily NUL-terminated) against p. Returns 1 on
 * a match (cap, if not NULL, filled), 0 otherwise. A named segment matches exactly one
 * level, like "+" (its value may be empty). */
int gw_topic_pattern_match(const gw_topic_pattern *p, const char *topic, size_t topic_len,
                           gw_topic_capture *cap);

/* 1 if s (len bytes) is a safe single topic level for topics the gateway builds
 * (device ids, verbs, request ids): 1..64 bytes of [A-Za-z0-9_.:-]. */
int gw_topic_level_is_safe(const char *s, size_t len);

#endif
