/* Shared helpers of the rule-engine unit tests (header-only: each test is one program).
 *
 *  - a gw_config built by hand (the loader is tested on its own), with rule sets given as
 *    JSON text or read from the repository's rules/ directory;
 *  - a commit hook that records events, can be told to fail, and validates every event
 *    against docs/event.schema.json;
 *  - a validator for the JSON Schema subset that schema uses (type, enum, const, pattern,
 *    required, properties, additionalProperties, items, prefixItems, minItems,
 *    maxItems, minimum, maximum, anyOf, local $ref). No C JSON-Schema library is in
 *    Debian; this covers exactly what docs/event.schema.json needs, and fails on any
 *    keyword it does not know, so the schema cannot silently outgrow it. */
#ifndef TEST_RULES_UTIL_H
#define TEST_RULES_UTIL_H

/* Each test program uses a different subset of these helpers. */
#pragma GCC diagnostic ignored "-Wunused-function"

#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "config.h"
#include "error.h"
#include "rules/engine.h"
#include "rules/rule.h"
#include "timeutil.h"

/* ---- files ------------------------------------------------------------------------------ */

static char *tu_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    return buf;
}

/* The source tree: $CITYGATE_SRC (ctest sets it), else derived from this file's path. */
static const char *tu_src(void)
{
    static char buf[900];
    const char *s = getenv("CITYGATE_SRC");
    if (s)
        return s;
    snprintf(buf, sizeof buf, "%s", __FILE__);
    char *p = strstr(buf, "/tests/unit/");
    if (p)
        *p = '\0';
    else
        snprintf(buf, sizeof buf, ".");
    return buf;
}

/* ---- schema subset validator ------------------------------------------------------------- */

static const cJSON *tu_schema_root;

static int tu_fail(char *err, size_t n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int tu_fail(char *err, size_t n, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(err, n, "%s: %s", path[0] ? path : "$", msg);
    return -1;
}

static int tu_is_type(const cJSON *v, const char *t)
{
    if (!strcmp(t, "object")) return cJSON_IsObject(v);
    if (!strcmp(t, "array")) return cJSON_IsArray(v);
    if (!strcmp(t, "string")) return cJSON_IsString(v);
    if (!strcmp(t, "number")) return cJSON_IsNumber(v);
    if (!strcmp(t, "integer")) return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble);
    if (!strcmp(t, "boolean")) return cJSON_IsBool(v);
    if (!strcmp(t, "null")) return cJSON_IsNull(v);
    return 0;
}

static int tu_validate(const cJSON *v, const cJSON *s, const char *path, char *err, size_t n)
{
    static const char *const known[] = {"$schema", "$id", "title", "description", "type", "enum",
                                        "const", "pattern", "required", "properties",
                                        "additionalProperties", "items", "prefixItems", "minItems",
                                        "maxItems", "minimum", "maximum", "anyOf", "$ref", "$defs", NULL};
    const cJSON *kw;
    cJSON_ArrayForEach(kw, s) {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            ok |= !strcmp(kw->string, *k);
        if (!ok)
            return tu_fail(err, n, path, "schema keyword %s not supported by the test validator", kw->string);
    }
    const cJSON *ref = cJSON_GetObjectItem(s, "$ref");
    if (ref) {
        const char *p = ref->valuestring;
        if (strncmp(p, "#/$defs/", 8) != 0)
            return tu_fail(err, n, path, "unsupported $ref %s", p);
        const cJSON *target = cJSON_GetObjectItem(cJSON_GetObjectItem(tu_schema_root, "$defs"), p + 8);
        if (!target || tu_validate(v, target, path, err, n))
            return target ? -1 : tu_fail(err, n, path, "dangling $ref %s", p);
    }
    const cJSON *any = cJSON_GetObjectItem(s, "anyOf");
    if (any) {
        const cJSON *alt;
        int hit = 0;
        cJSON_ArrayForEach(alt, any) {
            char e2[256];
            if (!tu_validate(v, alt, path, e2, sizeof e2))
                hit = 1;
        }
        if (!hit)
            return tu_fail(err, n, path, "matches no anyOf alternative");
    }
    const cJSON *type = cJSON_GetObjectItem(s, "type");
    if (type) {
        int ok = 0;
        if (cJSON_IsString(type))
            ok = tu_is_type(v, type->valuestring);
        const cJSON *t, *types = cJSON_IsArray(type) ? type : NULL;
        cJSON_ArrayForEach(t, types) ok |= tu_is_type(v, t->valuestring);
        if (!ok)
            return tu_fail(err, n, path, "wrong type");
    }
    const cJSON *en = cJSON_GetObjectItem(s, "enum");
    if (en) {
        const cJSON *e;
        int ok = 0;
        cJSON_ArrayForEach(e, en) ok |= cJSON_Compare(v, e, 1);
        if (!ok)
            return tu_fail(err, n, path, "not in enum");
    }
    const cJSON *cn = cJSON_GetObjectItem(s, "const");
    if (cn && !cJSON_Compare(v, cn, 1))
        return tu_fail(err, n, path, "not the const value");
    const cJSON *pat = cJSON_GetObjectItem(s, "pattern");
    if (pat && cJSON_IsString(v)) {
        regex_t re;
        if (regcomp(&re, pat->valuestring, REG_EXTENDED | REG_NOSUB) != 0)
            return tu_fail(err, n, path, "bad pattern %s", pat->valuestring);
        int m = regexec(&re, v->valuestring, 0, NULL, 0);
        regfree(&re);
        if (m != 0)
            return tu_fail(err, n, path, "\"%s\" does not match %s", v->valuestring, pat->valuestring);
    }
    const cJSON *mn = cJSON_GetObjectItem(s, "minimum"), *mx = cJSON_GetObjectItem(s, "maximum");
    if (mn && cJSON_IsNumber(v) && v->valuedouble < mn->valuedouble)
        return tu_fail(err, n, path, "below minimum");
    if (mx && cJSON_IsNumber(v) && v->valuedouble > mx->valuedouble)
        return tu_fail(err, n, path, "above maximum");
    if (cJSON_IsObject(v)) {
        const cJSON *req = cJSON_GetObjectItem(s, "required"), *r;
        cJSON_ArrayForEach(r, req) {
            if (!cJSON_GetObjectItemCaseSensitive(v, r->valuestring))
                return tu_fail(err, n, path, "missing required key %s", r->valuestring);
        }
        const cJSON *props = cJSON_GetObjectItem(s, "properties");
        const cJSON *addl = cJSON_GetObjectItem(s, "additionalProperties");
        const cJSON *m;
        cJSON_ArrayForEach(m, v) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", path, m->string);
            const cJSON *ps = cJSON_GetObjectItemCaseSensitive(props, m->string);
            if (ps) {
                if (tu_validate(m, ps, sub, err, n))
                    return -1;
            } else if (cJSON_IsFalse(addl)) {
                return tu_fail(err, n, sub, "key not allowed");
            }
        }
    }
    if (cJSON_IsArray(v)) {
        int len = cJSON_GetArraySize(v);
        const cJSON *mi = cJSON_GetObjectItem(s, "minItems"), *ma = cJSON_GetObjectItem(s, "maxItems");
        if (mi && len < mi->valueint)
            return tu_fail(err, n, path, "too few items");
        if (ma && len > ma->valueint)
            return tu_fail(err, n, path, "too many items");
        const cJSON *items = cJSON_GetObjectItem(s, "items");
        const cJSON *prefix = cJSON_GetObjectItem(s, "prefixItems");
        for (int i = 0; i < len; i++) {
            char sub[256];
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
            const cJSON *is = i < cJSON_GetArraySize(prefix) ? cJSON_GetArrayItem(prefix, i) : items;
            if (is && tu_validate(cJSON_GetArrayItem(v, i), is, sub, err, n))
                return -1;
        }
    }
    return 0;
}

static cJSON *tu_event_schema;

/* Validate event text against docs/event.schema.json; 0 or -1 with err. */
static int tu_validate_event(const char *json, char *err, size_t n)
{
    if (!tu_event_schema) {
        char path[2048];
        snprintf(path, sizeof path, "%s/docs/event.schema.json", tu_src());
        char *txt = tu_read_file(path);
        tu_event_schema = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        if (!tu_event_schema) {
            snprintf(err, n, "cannot read %.200s", path);
            return -1;
        }
    }
    tu_schema_root = tu_event_schema;
    cJSON *v = cJSON_Parse(json);
    if (!v) {
        snprintf(err, n, "event is not JSON");
        return -1;
    }
    int rc = tu_validate(v, tu_event_schema, "", err, n);
    cJSON_Delete(v);
    return rc;
}

/* ---- configuration by hand ---------------------------------------------------------------- */

static gw_config *tu_cfg_new(void)
{
    gw_config *c = gw_calloc(1, sizeof *c);
    c->file = gw_strdup("test.json");
    c->gateway.id = gw_strdup("GW-500103-0001");
    c->gateway.admin_code = gw_strdup("500103");
    c->gateway.utc_offset_min = 480;
    c->upstream.problem_types = cJSON_Parse("{\"0403\": \"SITE-GAS\"}");
    return c;
}

/* Add a rule set from JSON text (name, path "rules/<name>.json"). */
static void tu_cfg_ruleset(gw_config *c, const char *name, const char *json)
{
    c->rulesets = gw_realloc(c->rulesets, (c->n_rulesets + 1) * sizeof *c->rulesets);
    gw_cfg_doc *d = &c->rulesets[c->n_rulesets++];
    char path[256];
    snprintf(path, sizeof path, "rules/%s.json", name);
    d->name = gw_strdup(name);
    d->path = gw_strdup(path);
    d->json = cJSON_Parse(json);
    if (!d->json) {
        fprintf(stderr, "test rule set %s is not JSON\n", name);
        abort();
    }
}

/* Add a rule set from the repository's rules/<name>.json. */
static void tu_cfg_ruleset_file(gw_config *c, const char *name)
{
    char path[2048];
    snprintf(path, sizeof path, "%s/rules/%s.json", tu_src(), name);
    char *txt = tu_read_file(path);
    if (!txt) {
        fprintf(stderr, "cannot read %s\n", path);
        abort();
    }
    tu_cfg_ruleset(c, name, txt);
    free(txt);
}

/* Add a device; sets is a comma-separated list of rule set names ("" = default). params,
 * overrides and tags are JSON text or NULL. Returns its index. */
static size_t tu_cfg_device(gw_config *c, const char *id, const char *kind, const char *sets,
                            const char *params, const char *overrides, const char *tags)
{
    c->devices = gw_realloc(c->devices, (c->n_devices + 1) * sizeof *c->devices);
    gw_device *d = &c->devices[c->n_devices];
    memset(d, 0, sizeof *d);
    d->id = gw_strdup(id);
    d->kind = gw_strdup(kind);
    d->enabled = 1;
    d->interval_ms = 10000;
    d->profile = gw_strdup("generic-manhole");
    char code[32];
    snprintf(code, sizeof code, "500103%s%06zu",
             !strcmp(kind, "lamp") ? "0118" : !strcmp(kind, "gas") ? "0111" : "0102", c->n_devices + 1);
    d->component.code = gw_strdup(code);
    d->component.name = gw_strdup("污水井盖");
    d->component.grid = gw_strdup("500103001002003");
    d->component.owner = gw_strdup("Yuzhong water");
    d->component.maintainer = gw_strdup("Yuzhong maintenance");
    d->component.location.has = 1;
    d->component.location.lon = 106.577;
    d->component.location.lat = 29.557;
    d->component.location.address = gw_strdup("Jiefangbei \"square\" 1");
    if (sets && *sets) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", sets);
        for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            d->rule_sets = gw_realloc(d->rule_sets, (d->n_rule_sets + 1) * sizeof *d->rule_sets);
            d->rule_sets[d->n_rule_sets++] = gw_strdup(tok);
        }
    }
    d->params = params ? cJSON_Parse(params) : NULL;
    d->overrides = overrides ? cJSON_Parse(overrides) : NULL;
    d->tags = tags ? cJSON_Parse(tags) : NULL;
    return c->n_devices++;
}

static void tu_cfg_free(gw_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_devices; i++) {
        gw_device *d = &c->devices[i];
        gw_free(d->id);
        gw_free(d->kind);
        gw_free(d->profile);
        gw_free(d->component.code);
        gw_free(d->component.name);
        gw_free(d->component.grid);
        gw_free(d->component.owner);
        gw_free(d->component.maintainer);
        gw_free(d->component.location.address);
        for (size_t k = 0; k < d->n_rule_sets; k++)
            gw_free(d->rule_sets[k]);
        gw_free(d->rule_sets);
        cJSON_Delete(d->params);
        cJSON_Delete(d->overrides);
        cJSON_Delete(d->tags);
    }
    gw_free(c->devices);
    for (size_t i = 0; i < c->n_rulesets; i++) {
        gw_free(c->rulesets[i].name);
        gw_free(c->rulesets[i].path);
        cJSON_Delete(c->rulesets[i].json);
    }
    gw_free(c->rulesets);
    cJSON_Delete(c->upstream.problem_types);
    gw_free(c->gateway.id);
    gw_free(c->gateway.admin_code);
    gw_free(c->file);
    gw_free(c);
}

/* ---- captured events ------------------------------------------------------------------------ */

#define TU_MAX_EVENTS 256

typedef struct tu_event {
    char type[24], alarm[160], severity[16], state[24], reason[16];
    uint64_t seq;
    char *json, *state_json, *retained;
} tu_event;

typedef struct tu_cap {
    tu_event ev[TU_MAX_EVENTS];
    int n;
    int fail;            /* commit answers failure while set */
    int attempts;
    int schema_errors;
    char last_schema_error[4096];
    int64_t now;         /* clock for commands */
} tu_cap;

static int tu_commit(void *ctx, const gw_event_out *o)
{
    tu_cap *c = ctx;
    c->attempts++;
    char err[512];
    if (tu_validate_event(o->json, err, sizeof err) != 0) {
        c->schema_errors++;
        snprintf(c->last_schema_error, sizeof c->last_schema_error, "%s in %.3000s", err, o->json);
        fprintf(stderr, "schema: %s\n", c->last_schema_error);
    }
    if (c->fail)
        return -1;
    if (c->n == TU_MAX_EVENTS)
        return 0;
    tu_event *e = &c->ev[c->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->type, sizeof e->type, "%s", o->type_name);
    snprintf(e->alarm, sizeof e->alarm, "%s", o->alarm_id);
    e->seq = o->seq;
    e->json = strdup(o->json);
    e->state_json = o->state_json ? strdup(o->state_json) : NULL;
    e->retained = o->retained_json ? strdup(o->retained_json) : NULL;
    cJSON *j = cJSON_Parse(o->json);
    const cJSON *al = cJSON_GetObjectItem(j, "alarm");
    snprintf(e->severity, sizeof e->severity, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(al, "severity")));
    snprintf(e->state, sizeof e->state, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(al, "state")));
    const char *r = cJSON_GetStringValue(cJSON_GetObjectItem(j, "reason"));
    snprintf(e->reason, sizeof e->reason, "%s", r ? r : "");
    cJSON_Delete(j);
    return 0;
}

static int64_t tu_now(void *ctx) { return ((tu_cap *)ctx)->now; }

static void tu_cap_reset(tu_cap *c)
{
    for (int i = 0; i < c->n; i++) {
        free(c->ev[i].json);
        free(c->ev[i].state_json);
        free(c->ev[i].retained);
    }
    c->n = 0;
}

/* "raised:warning,updated:major,cleared" style summary of the captured events. */
static const char *tu_summary(const tu_cap *c, char *buf, size_t n)
{
    buf[0] = '\0';
    for (int i = 0; i < c->n; i++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", i ? "," : "", c->ev[i].type);
        if (!strcmp(c->ev[i].type, "raised") || !strcmp(c->ev[i].type, "updated")) {
            l = strlen(buf);
            snprintf(buf + l, n - l, ":%s", c->ev[i].severity);
        }
    }
    return buf;
}

/* T0: 2026-06-01T00:00:00Z; times in tests are offsets from it. */
#define TU_T0 1780272000000000LL
#define TU_S(x) ((int64_t)((x) * 1000000.0))

static void tu_sample(gw_engine *e, const char *dev, const char *field, double v, int64_t t)
{
    gw_sample s;
    gw_sample_set(&s, dev, field, v, "", GW_Q_GOOD, TU_T0 + t);
    s.device_idx = UINT32_MAX;
    gw_engine_on_sample(e, &s);
}

static void tu_sample_q(gw_engine *e, const char *dev, const char *field, gw_quality q, int64_t t)
{
    gw_sample s;
    gw_sample_set(&s, dev, field, 0, "", q, TU_T0 + t);
    s.device_idx = UINT32_MAX;
    gw_engine_on_sample(e, &s);
}

#endif
