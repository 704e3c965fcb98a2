/* MQTT topic patterns with a named segment: compile and match (see topic.h). */
#include "mqtt/topic.h"

#include "alloc.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define PATTERN_MAX 1024

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return GW_EINVAL;
}

static int is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_';
}

/* Classify one level [s, s+len) of the pattern; fills lv, or returns GW_EINVAL. */
static int classify_level(const char *s, size_t len, size_t idx, gw_topic_level *lv,
                          char *err, size_t errlen)
{
    lv->text = s;
    lv->len = len;
    if (len == 1 && s[0] == '+') {
        lv->kind = GW_TL_PLUS;
        return 0;
    }
    if (len == 1 && s[0] == '#') {
        lv->kind = GW_TL_HASH;
        return 0;
    }
    if (len >= 2 && s[0] == '{' && s[len - 1] == '}') {
        size_t n = len - 2;
        if (n == 0 || n >= GW_TOPIC_NAME_MAX)
            return fail(err, errlen, "level %zu: a named segment needs a name of 1..%d characters",
                        idx + 1, GW_TOPIC_NAME_MAX - 1);
        for (size_t i = 1; i + 1 < len; i++)
            if (!is_name_char(s[i]))
                return fail(err, errlen,
                            "level %zu: a segment name may use only letters, digits and '_'",
                            idx + 1);
        lv->kind = GW_TL_NAMED;
        return 0;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '+' || c == '#')
            return fail(err, errlen, "level %zu: '%c' must be a whole level", idx + 1, c);
        if (c == '{' || c == '}')
            return fail(err, errlen, "level %zu: a named segment must be a whole level \"{name}\"",
                        idx + 1);
        if (c < 0x20 || c == 0x7f)
            return fail(err, errlen, "level %zu: control character in topic", idx + 1);
    }
    lv->kind = GW_TL_LITERAL;
    return 0;
}

int gw_topic_pattern_compile(const char *pattern, gw_topic_pattern *out, char *err,
                             size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->named_level = -1;
    if (err && errlen)
        err[0] = '\0';
    if (!pattern || !pattern[0])
        return fail(err, errlen, "empty topic pattern");
    size_t plen = strlen(pattern);
    if (plen > PATTERN_MAX)
        return fail(err, errlen, "topic pattern longer than %d bytes", PATTERN_MAX);

    int rc = GW_ENOMEM;
    out->pattern = gw_strdup(pattern);
    out->filter = gw_malloc(plen + 1);
    if (!out->pattern || !out->filter)
        goto fail_alloc;

    const char *s = out->pattern;
    char *f = out->filter;
    size_t idx = 0;
    for (;;) {
        const char *slash = strchr(s, '/');
        size_t len = slash ? (size_t)(slash - s) : strlen(s);
        if (idx >= GW_TOPIC_LEVELS_MAX) {
            rc = fail(err, errlen, "more than %d levels", GW_TOPIC_LEVELS_MAX);
            goto fail_alloc;
        }
        gw_topic_level *lv = &out->levels[idx];
        rc = classify_level(s, len, idx, lv, err, errlen);
        if (rc)
            goto fail_alloc;
        if (lv->kind == GW_TL_HASH && slash) {
            rc = fail(err, errlen, "level %zu: '#' must be the last level", idx + 1);
            goto fail_alloc;
        }
        if (lv->kind == GW_TL_NAMED) {
            if (out->named_level >= 0) {
                rc = fail(err, errlen, "level %zu: only one named segment is allowed", idx + 1);
                goto fail_alloc;
            }
            out->named_level = (int)idx;
            memcpy(out->name, s + 1, len - 2);
            out->name[len - 2] = '\0';
            *f++ = '+';
        } else {
            memcpy(f, s, len);
            f += len;
        }
        idx++;
        if (!slash)
            break;
        *f++ = '/';
        s = slash + 1;
    }
    *f = '\0';
    out->n_levels = idx;
    return 0;

fail_alloc:
    gw_topic_pattern_free(out);
    return rc;
}

void gw_topic_pattern_free(gw_topic_pattern *p)
{
    if (!p)
        return;
    gw_free(p->pattern);
    gw_free(p->filter);
    memset(p, 0, sizeof *p);
    p->named_level = -1;
}

int gw_topic_pattern_match(const gw_topic_pattern *p, const char *topic, size_t topic_len,
                           gw_topic_capture *cap)
{
    if (cap) {
        cap->value = NULL;
        cap->len = 0;
    }
    if (!p || !p->filter || !topic)
        return 0;
    /* "$SYS/..." and other "$" topics are never matched by a leading wildcard. */
    if (topic_len > 0 && topic[0] == '$' && p->n_levels > 0 &&
        p->levels[0].kind != GW_TL_LITERAL)
        return 0;

    const char *t = topic, *end = topic + topic_len;
    gw_topic_capture got = {NULL, 0};
    for (size_t i = 0; i < p->n_levels; i++) {
        const gw_topic_level *lv = &p->levels[i];
        if (lv->kind == GW_TL_HASH)
            goto matched; /* rest of the topic, including nothing ("a/#" matches "a") */
        if (!t) /* topic ran out of levels */
            return 0;
        const char *slash = memchr(t, '/', (size_t)(end - t));
        size_t len = slash ? (size_t)(slash - t) : (size_t)(end - t);
        if (lv->kind == GW_TL_LITERAL) {
            if (len != lv->len || memcmp(t, lv->text, len) != 0)
                return 0;
        } else if (lv->kind == GW_TL_NAMED) {
            got.value = t;
            got.len = len;
        }
        t = slash ? slash + 1 : NULL;
        /* "a/#" also matches "a": handled above when the next level is "#" and t is NULL. */
        if (!t && i + 1 < p->n_levels && p->levels[i + 1].kind == GW_TL_HASH)
            goto matched;
    }
    if (t) /* topic has more levels than the pattern */
        return 0;
matched:
    if (cap)
        *cap = got;
    return 1;
}

int gw_topic_level_is_safe(const char *s, size_t len)
{
    if (!s || len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!(is_name_char(c) || c == '.' || c == ':' || c == '-'))
            return 0;
    }
    return 1;
}
