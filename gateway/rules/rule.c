/* Rule sets: parse, validate and compile (see rule.h and docs/rules.md).
 *
 * One parser serves three callers: gw_rules_check_doc (a rule set alone: parameter
 * references cannot be resolved, limits stay NaN and order checks are skipped),
 * gw_rules_check (every device: selectors, params, overrides) and gw_rule_compile (the
 * engine's per-device instances). Keeping one parser means `citygate check` accepts
 * exactly what the engine runs. */
#include "rules/rule.h"

#include "alloc.h"
#include "error.h"
#include "log.h"

#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 8
#define MAX_VALUES 64

static const char *const severity_names[GW_SEV__COUNT] = {
    "none", "warning", "minor", "major", "critical",
};

const char *gw_rule_severity_name(gw_severity s)
{
    return (unsigned)s < GW_SEV__COUNT ? severity_names[s] : "none";
}

int gw_rule_severity_parse(const char *name, gw_severity *out)
{
    for (int i = 1; name && i < GW_SEV__COUNT; i++) {
        if (strcmp(name, severity_names[i]) == 0) {
            *out = (gw_severity)i;
            return 0;
        }
    }
    return GW_EINVAL;
}

const char *gw_rule_problem_class_name(gw_problem_class c)
{
    switch (c) {
    case GW_PROB_COMPONENT: return "component";
    case GW_PROB_EVENT: return "event";
    case GW_PROB_DEVICE: return "device";
    case GW_PROB_GATEWAY: return "gateway";
    }
    return "device";
}

static const struct { const char *name; gw_rule_op op; } op_names[] = {
    {">", GW_OP_GT}, {">=", GW_OP_GE}, {"<", GW_OP_LT}, {"<=", GW_OP_LE},
    {"==", GW_OP_EQ}, {"!=", GW_OP_NE}, {"between", GW_OP_BETWEEN},
    {"outside", GW_OP_OUTSIDE}, {"in", GW_OP_IN}, {"not_in", GW_OP_NOT_IN},
    {"stuck", GW_OP_STUCK}, {"stale", GW_OP_STALE}, {"quality", GW_OP_QUALITY},
};

static const char *op_name(gw_rule_op op)
{
    for (size_t i = 0; i < sizeof op_names / sizeof op_names[0]; i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return op == GW_OP_ALL ? "all" : "any";
}

static int is_threshold(gw_rule_op op) { return op <= GW_OP_LE; }

/* snprintf for JSON paths in messages: truncation is harmless there (a long path is
 * cut, never overflowed), so it goes through a function gcc does not second-guess. */
static void sp(char *dst, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void sp(char *dst, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, n, fmt, ap);
    va_end(ap);
}

/* ---- durations ------------------------------------------------------------------------ */

int gw_rule_parse_duration(const cJSON *v, int64_t *us)
{
    double secs;
    if (cJSON_IsNumber(v)) {
        secs = v->valuedouble;
    } else if (cJSON_IsString(v)) {
        char *end;
        double n = strtod(v->valuestring, &end);
        if (end == v->valuestring)
            return GW_EINVAL;
        if (strcmp(end, "ms") == 0)
            secs = n / 1000.0;
        else if (strcmp(end, "s") == 0 || *end == '\0')
            secs = n;
        else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
            secs = n * 60;
        else if (strcmp(end, "h") == 0)
            secs = n * 3600;
        else if (strcmp(end, "d") == 0)
            secs = n * 86400;
        else
            return GW_EINVAL;
    } else {
        return GW_EINVAL;
    }
    /* Ten years is more than any delay an operator means; it also keeps µs in range. */
    if (!(secs >= 0) || secs > 10.0 * 366 * 86400)
        return GW_EINVAL;
    *us = (int64_t)llround(secs * 1e6);
    return 0;
}

static void fmt_duration(char *buf, size_t n, int64_t us)
{
    if (us % 1000000 != 0)
        snprintf(buf, n, "%lldms", (long long)(us / 1000));
    else if (us % 86400000000LL == 0)
        snprintf(buf, n, "%lldd", (long long)(us / 86400000000LL));
    else if (us % 3600000000LL == 0)
        snprintf(buf, n, "%lldh", (long long)(us / 3600000000LL));
    else if (us % 60000000LL == 0)
        snprintf(buf, n, "%lldm", (long long)(us / 60000000LL));
    else
        snprintf(buf, n, "%llds", (long long)(us / 1000000));
}

/* ---- parse context --------------------------------------------------------------------- */

typedef struct pctx {
    const gw_config *cfg;
    const gw_device *dev;   /* NULL: checking a rule set alone */
    gw_cfgerr *errs;        /* rule-file errors (NULL: suppressed) */
    const char *file;
    gw_rule_inst *ri;
    int missing_param;      /* a param the device lacks: skip the rule */
    char missing_name[64];
    int skipped_param;      /* parse_rule skipped the rule for missing_name */
    int n_errs;
    int n_stuck;
    int esc_ok;             /* the rule has a leaf value escalation can watch */
} pctx;

static void perr(pctx *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void perr(pctx *c, const char *path, const char *fmt, ...)
{
    c->n_errs++;
    if (!c->errs)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_cfgerr_add(c->errs, c->file, path, "%s", msg);
}

/* Unknown keys are errors, as everywhere in the configuration. */
static void check_keys(pctx *c, const cJSON *obj, const char *path, const char *const *allowed)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (it->string && strcmp(it->string, *a) == 0)
                ok = 1;
        if (!ok)
            perr(c, path, "unknown key \"%s\"", it->string ? it->string : "");
    }
}

static int valid_id(const char *s)
{
    if (!s || !*s || strlen(s) >= GW_ID_MAX)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '_'))
            return 0;
    return 1;
}

static int valid_field(const char *s)
{
    if (!s || !*s || strlen(s) >= GW_FIELD_MAX)
        return 0;
    for (const char *p = s; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-'))
            return 0;
    return 1;
}

static int add_field(pctx *c, const char *path, const char *name)
{
    gw_rule_inst *ri = c->ri;
    if (!valid_field(name)) {
        perr(c, path, "field must be a name of letters, digits, '_', '.', '-' (< %d bytes)",
             GW_FIELD_MAX);
        return -1;
    }
    for (int i = 0; i < ri->n_fields; i++)
        if (strcmp(ri->fields[i], name) == 0)
            return i;
    if (ri->n_fields == GW_RULE_FIELDS_MAX) {
        perr(c, path, "a rule may read at most %d fields", GW_RULE_FIELDS_MAX);
        return -1;
    }
    ri->fields[ri->n_fields] = gw_strdup(name);
    if (!ri->fields[ri->n_fields])
        return -2;
    return ri->n_fields++;
}

/* A limit: a number, or {"param": NAME, "factor": F, "offset": O, "default": D} read from
 * the device's params. Without a device the value is NaN (unknown until compiled). */
static int parse_limit(pctx *c, const cJSON *v, const char *path, double *out)
{
    if (cJSON_IsNumber(v)) {
        if (!isfinite(v->valuedouble)) {
            perr(c, path, "must be a finite number");
            return -1;
        }
        *out = v->valuedouble;
        return 0;
    }
    if (!cJSON_IsObject(v)) {
        perr(c, path, "must be a number or {\"param\": NAME, \"factor\": F}");
        return -1;
    }
    static const char *const keys[] = {"param", "factor", "offset", "default", NULL};
    check_keys(c, v, path, keys);
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(v, "param");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(v, "factor");
    const cJSON *o = cJSON_GetObjectItemCaseSensitive(v, "offset");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "default");
    char sub[300];
    if (!cJSON_IsString(p) || !valid_field(p->valuestring)) {
        sp(sub, sizeof sub, "%s.param", path);
        perr(c, sub, "must name a device parameter");
        return -1;
    }
    if ((f && !cJSON_IsNumber(f)) || (o && !cJSON_IsNumber(o)) || (d && !cJSON_IsNumber(d))) {
        perr(c, path, "factor, offset and default must be numbers");
        return -1;
    }
    double factor = f ? f->valuedouble : 1.0, offset = o ? o->valuedouble : 0.0;
    if (!c->dev) {
        *out = NAN;
        return 0;
    }
    const cJSON *pv = cJSON_GetObjectItemCaseSensitive(c->dev->params, p->valuestring);
    double base;
    if (cJSON_IsNumber(pv))
        base = pv->valuedouble;
    else if (d)
        base = d->valuedouble;
    else {
        if (!c->missing_param) /* name the first one missing */
            snprintf(c->missing_name, sizeof c->missing_name, "%s", p->valuestring);
        c->missing_param = 1;
        *out = NAN;
        return 0;
    }
    *out = base * factor + offset;
    if (!isfinite(*out)) {
        perr(c, path, "parameter %s gives a non-finite limit", p->valuestring);
        return -1;
    }
    return 0;
}

static void cond_clear(gw_cond *k)
{
    gw_free(k->nums);
    for (size_t i = 0; k->texts && i < k->n_vals; i++)
        gw_free(k->texts[i]);
    gw_free(k->texts);
    for (size_t i = 0; i < k->n_kids; i++)
        cond_clear(&k->kids[i]);
    gw_free(k->kids);
    memset(k, 0, sizeof *k);
}

void gw_rule_inst_clear(gw_rule_inst *ri)
{
    if (!ri)
        return;
    gw_free(ri->rule_id);
    gw_free(ri->alarm_id);
    gw_free(ri->name);
    cond_clear(&ri->root);
    for (int i = 0; i < GW_LEVELS_MAX; i++)
        gw_free(ri->levels[i].condition);
    gw_free(ri->pcode);
    gw_free(ri->pname);
    for (int i = 0; i < ri->n_fields; i++)
        gw_free(ri->fields[i]);
    memset(ri, 0, sizeof *ri);
}

/* Values for == != in not_in: numbers and booleans compare as numbers, strings as text. */
static int parse_values(pctx *c, gw_cond *k, const cJSON *vals, const char *path)
{
    size_t n = (size_t)cJSON_GetArraySize(vals);
    if (n == 0 || n > MAX_VALUES) {
        perr(c, path, "must list 1..%d values", MAX_VALUES);
        return -1;
    }
    const cJSON *first = cJSON_GetArrayItem(vals, 0);
    k->text = cJSON_IsString(first);
    k->n_vals = n;
    if (k->text)
        k->texts = gw_calloc(n, sizeof *k->texts);
    else
        k->nums = gw_calloc(n, sizeof *k->nums);
    if (!k->texts && !k->nums)
        return -2;
    size_t i = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, vals) {
        if (k->text && cJSON_IsString(v)) {
            if (!(k->texts[i] = gw_strdup(v->valuestring)))
                return -2;
        } else if (!k->text && cJSON_IsNumber(v)) {
            k->nums[i] = v->valuedouble;
        } else if (!k->text && cJSON_IsBool(v)) {
            k->nums[i] = cJSON_IsTrue(v) ? 1.0 : 0.0;
        } else {
            char sub[300];
            sp(sub, sizeof sub, "%s[%zu]", path, i);
            perr(c, sub, "values must all be numbers / booleans, or all strings");
            return -1;
        }
        i++;
    }
    return 0;
}

static int parse_cond(pctx *c, const cJSON *j, const char *path, gw_cond *k, int depth);

static int parse_combo(pctx *c, const cJSON *arr, const char *path, gw_cond *k, int depth)
{
    int n = cJSON_GetArraySize(arr);
    if (!cJSON_IsArray(arr) || n < 1 || n > 16) {
        perr(c, path, "must be an array of 1..16 conditions");
        return -1;
    }
    k->kids = gw_calloc((size_t)n, sizeof *k->kids);
    if (!k->kids)
        return -2;
    k->n_kids = (size_t)n;
    int rc = 0, i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        char sub[300];
        sp(sub, sizeof sub, "%s[%d]", path, i);
        int r = parse_cond(c, it, sub, &k->kids[i], depth + 1);
        if (r == -2)
            return -2;
        if (r < 0)
            rc = -1;
        i++;
    }
    return rc;
}

static int parse_cond(pctx *c, const cJSON *j, const char *path, gw_cond *k, int depth)
{
    char sub[300];
    if (depth > MAX_DEPTH) {
        perr(c, path, "conditions nest deeper than %d", MAX_DEPTH);
        return -1;
    }
    if (!cJSON_IsObject(j)) {
        perr(c, path, "must be an object (a condition)");
        return -1;
    }
    k->raise = k->clear = k->low = k->high = NAN;
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(j, "all");
    const cJSON *any = cJSON_GetObjectItemCaseSensitive(j, "any");
    if (all || any) {
        static const char *const keys[] = {"all", "any", NULL};
        check_keys(c, j, path, keys);
        if (all && any) {
            perr(c, path, "use either \"all\" or \"any\" in one object");
            return -1;
        }
        k->op = all ? GW_OP_ALL : GW_OP_ANY;
        sp(sub, sizeof sub, "%s.%s", path, all ? "all" : "any");
        return parse_combo(c, all ? all : any, sub, k, depth);
    }
    static const char *const keys[] = {"field", "fields", "op", "of", "window", "value", "values",
                                       "raise", "clear", "low", "high", "deadband", "for",
                                       "intervals", "tolerance", "in", NULL};
    check_keys(c, j, path, keys);
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(j, "op");
    size_t o = 0;
    for (; cJSON_IsString(op) && o < sizeof op_names / sizeof op_names[0]; o++)
        if (strcmp(op->valuestring, op_names[o].name) == 0)
            break;
    if (!cJSON_IsString(op) || o == sizeof op_names / sizeof op_names[0]) {
        sp(sub, sizeof sub, "%s.op", path);
        perr(c, sub, "must be one of > >= < <= == != between outside in not_in stuck stale quality");
        return -1;
    }
    k->op = op_names[o].op;

    /* Fields: one "field" (optional for stale / quality: the device as a whole), or a
     * "fields" list for stuck. */
    const cJSON *field = cJSON_GetObjectItemCaseSensitive(j, "field");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(j, "fields");
    if (field && fields) {
        perr(c, path, "use either \"field\" or \"fields\"");
        return -1;
    }
    if (fields && k->op != GW_OP_STUCK) {
        sp(sub, sizeof sub, "%s.fields", path);
        perr(c, sub, "only op \"stuck\" watches several fields; use \"field\"");
        return -1;
    }
    if (field) {
        sp(sub, sizeof sub, "%s.field", path);
        if (!cJSON_IsString(field)) {
            perr(c, sub, "must be a string");
            return -1;
        }
        int idx = add_field(c, sub, field->valuestring);
        if (idx < 0)
            return idx;
        k->fields[k->n_fields++] = (int16_t)idx;
    } else if (fields) {
        sp(sub, sizeof sub, "%s.fields", path);
        int n = cJSON_GetArraySize(fields);
        if (!cJSON_IsArray(fields) || n < 1 || n > GW_RULE_FIELDS_MAX) {
            perr(c, sub, "must be an array of 1..%d field names", GW_RULE_FIELDS_MAX);
            return -1;
        }
        const cJSON *f;
        int i = 0;
        cJSON_ArrayForEach(f, fields) {
            char s2[320];
            sp(s2, sizeof s2, "%s[%d]", sub, i++);
            if (!cJSON_IsString(f)) {
                perr(c, s2, "must be a string");
                return -1;
            }
            int idx = add_field(c, s2, f->valuestring);
            if (idx < 0)
                return idx;
            k->fields[k->n_fields++] = (int16_t)idx;
        }
    } else if (k->op != GW_OP_STALE && k->op != GW_OP_QUALITY) {
        perr(c, path, "op \"%s\" needs a \"field\"", op_names[o].name);
        return -1;
    }

    const cJSON *of = cJSON_GetObjectItemCaseSensitive(j, "of");
    const cJSON *window = cJSON_GetObjectItemCaseSensitive(j, "window");
    if (of) {
        sp(sub, sizeof sub, "%s.of", path);
        if (!cJSON_IsString(of) || (strcmp(of->valuestring, "value") && strcmp(of->valuestring, "rate"))) {
            perr(c, sub, "must be \"value\" or \"rate\" (change per minute)");
            return -1;
        }
        k->rate = strcmp(of->valuestring, "rate") == 0;
        if (k->rate && !is_threshold(k->op) && k->op != GW_OP_BETWEEN && k->op != GW_OP_OUTSIDE) {
            perr(c, sub, "a rate is compared with > >= < <= between or outside");
            return -1;
        }
    }
    k->window_us = 60000000;
    if (window) {
        sp(sub, sizeof sub, "%s.window", path);
        if (!k->rate) {
            perr(c, sub, "only a rate (\"of\": \"rate\") has a window");
            return -1;
        }
        if (gw_rule_parse_duration(window, &k->window_us) != 0 || k->window_us < 1000000) {
            perr(c, sub, "must be a duration of at least 1s (\"60s\", \"5m\")");
            return -1;
        }
    }

    const cJSON *value = cJSON_GetObjectItemCaseSensitive(j, "value");
    const cJSON *values = cJSON_GetObjectItemCaseSensitive(j, "values");
    const cJSON *raise = cJSON_GetObjectItemCaseSensitive(j, "raise");
    const cJSON *clear = cJSON_GetObjectItemCaseSensitive(j, "clear");
    const cJSON *low = cJSON_GetObjectItemCaseSensitive(j, "low");
    const cJSON *high = cJSON_GetObjectItemCaseSensitive(j, "high");
    const cJSON *db = cJSON_GetObjectItemCaseSensitive(j, "deadband");
    const cJSON *dur = cJSON_GetObjectItemCaseSensitive(j, "for");
    const cJSON *intervals = cJSON_GetObjectItemCaseSensitive(j, "intervals");
    const cJSON *tol = cJSON_GetObjectItemCaseSensitive(j, "tolerance");
    const cJSON *qin = cJSON_GetObjectItemCaseSensitive(j, "in");
    int rc = 0;
#define ONLY(key, var, ok)                                                                   \
    do {                                                                                     \
        if ((var) && !(ok)) {                                                                \
            sp(sub, sizeof sub, "%s." key, path);                                      \
            perr(c, sub, "not used by op \"%s\"", op_names[o].name);                         \
            rc = -1;                                                                         \
        }                                                                                    \
    } while (0)
    int thr = is_threshold(k->op), rng = k->op == GW_OP_BETWEEN || k->op == GW_OP_OUTSIDE;
    int eq = k->op == GW_OP_EQ || k->op == GW_OP_NE, set = k->op == GW_OP_IN || k->op == GW_OP_NOT_IN;
    ONLY("value", value, thr || eq);
    ONLY("values", values, set);
    ONLY("raise", raise, thr);
    ONLY("clear", clear, thr);
    ONLY("low", low, rng);
    ONLY("high", high, rng);
    ONLY("deadband", db, rng);
    ONLY("for", dur, k->op == GW_OP_STUCK || k->op == GW_OP_STALE);
    ONLY("intervals", intervals, k->op == GW_OP_STALE);
    ONLY("tolerance", tol, k->op == GW_OP_STUCK);
    ONLY("in", qin, k->op == GW_OP_QUALITY);
#undef ONLY
    if (rc)
        return rc;

    if (thr) {
        if (value && raise) {
            perr(c, path, "\"value\" and \"raise\" mean the same; give one");
            return -1;
        }
        const cJSON *r = raise ? raise : value;
        sp(sub, sizeof sub, "%s.raise", path);
        if (!r) {
            perr(c, sub, "a threshold needs \"raise\" (or \"value\")");
            return -1;
        }
        if (parse_limit(c, r, sub, &k->raise) != 0)
            return -1;
        k->clear = k->raise;
        if (clear) {
            sp(sub, sizeof sub, "%s.clear", path);
            if (parse_limit(c, clear, sub, &k->clear) != 0)
                return -1;
        }
    } else if (rng) {
        sp(sub, sizeof sub, "%s.low", path);
        if (!low || parse_limit(c, low, sub, &k->low) != 0) {
            if (!low)
                perr(c, sub, "required");
            return -1;
        }
        sp(sub, sizeof sub, "%s.high", path);
        if (!high || parse_limit(c, high, sub, &k->high) != 0) {
            if (!high)
                perr(c, sub, "required");
            return -1;
        }
        if (isfinite(k->low) && isfinite(k->high) && k->low > k->high) {
            perr(c, path, "low (%g) must not exceed high (%g)", k->low, k->high);
            return -1;
        }
        if (db) {
            sp(sub, sizeof sub, "%s.deadband", path);
            if (!cJSON_IsNumber(db) || !(db->valuedouble >= 0) || !isfinite(db->valuedouble)) {
                perr(c, sub, "must be a number >= 0");
                return -1;
            }
            k->deadband = db->valuedouble;
        }
    } else if (eq) {
        sp(sub, sizeof sub, "%s.value", path);
        if (!value || !(cJSON_IsNumber(value) || cJSON_IsBool(value) || cJSON_IsString(value))) {
            perr(c, sub, "needs a number, boolean or string");
            return -1;
        }
        cJSON *tmp = cJSON_CreateArray();
        if (!tmp)
            return -2;
        cJSON_AddItemToArray(tmp, cJSON_Duplicate(value, 0));
        int r = parse_values(c, k, tmp, sub);
        cJSON_Delete(tmp);
        if (r)
            return r;
    } else if (set) {
        sp(sub, sizeof sub, "%s.values", path);
        if (!cJSON_IsArray(values)) {
            perr(c, sub, "must be an array of the states that raise the alarm");
            return -1;
        }
        int r = parse_values(c, k, values, sub);
        if (r)
            return r;
    } else if (k->op == GW_OP_STUCK) {
        sp(sub, sizeof sub, "%s.for", path);
        if (!dur || gw_rule_parse_duration(dur, &k->for_us) != 0 || k->for_us <= 0) {
            perr(c, sub, "stuck needs a duration > 0 (\"6h\")");
            return -1;
        }
        if (tol) {
            sp(sub, sizeof sub, "%s.tolerance", path);
            if (!cJSON_IsNumber(tol) || !(tol->valuedouble >= 0) || !isfinite(tol->valuedouble)) {
                perr(c, sub, "must be a number >= 0");
                return -1;
            }
            k->tolerance = tol->valuedouble;
        }
        if (++c->n_stuck > 1) {
            perr(c, path, "one stuck condition per rule");
            return -1;
        }
    } else if (k->op == GW_OP_STALE) {
        if (!!dur == !!intervals) {
            perr(c, path, "stale needs one of \"for\" (a duration) or \"intervals\" (N × device interval)");
            return -1;
        }
        if (dur) {
            sp(sub, sizeof sub, "%s.for", path);
            if (gw_rule_parse_duration(dur, &k->for_us) != 0 || k->for_us <= 0) {
                perr(c, sub, "must be a duration > 0");
                return -1;
            }
        } else {
            sp(sub, sizeof sub, "%s.intervals", path);
            if (!cJSON_IsNumber(intervals) || intervals->valuedouble < 1 || intervals->valuedouble > 1000) {
                perr(c, sub, "must be a number 1..1000");
                return -1;
            }
            k->intervals = (int)intervals->valuedouble;
            int ms = c->dev && c->dev->interval_ms > 0 ? c->dev->interval_ms : 10000;
            k->for_us = (int64_t)k->intervals * ms * 1000;
        }
    } else if (k->op == GW_OP_QUALITY) {
        sp(sub, sizeof sub, "%s.in", path);
        int n = cJSON_GetArraySize(qin);
        if (!cJSON_IsArray(qin) || n < 1) {
            perr(c, sub, "must list qualities: comm_error, decode_error, out_of_range, stale");
            return -1;
        }
        const cJSON *q;
        int i = 0;
        cJSON_ArrayForEach(q, qin) {
            gw_quality qv;
            if (!cJSON_IsString(q) || gw_quality_parse(q->valuestring, &qv) != 0 || qv == GW_Q_GOOD) {
                char s2[320];
                sp(s2, sizeof s2, "%s[%d]", sub, i);
                perr(c, s2, "must be one of comm_error, decode_error, out_of_range, stale");
                return -1;
            }
            k->quality_mask |= 1u << qv;
            i++;
        }
    }
    return 0;
}

static int tree_has_primary(const gw_cond *k)
{
    if (k->primary)
        return 1;
    for (size_t i = 0; i < k->n_kids; i++)
        if (tree_has_primary(&k->kids[i]))
            return 1;
    return 0;
}

/* The leaf levels and "raise"/"clear" overrides act on: the condition itself if it is a
 * threshold, else the first threshold leaf of an all / any (depth first). */
static gw_cond *find_primary(gw_cond *k)
{
    if (is_threshold(k->op) || k->op == GW_OP_BETWEEN || k->op == GW_OP_OUTSIDE)
        return is_threshold(k->op) ? k : NULL;
    for (size_t i = 0; i < k->n_kids; i++) {
        gw_cond *p = find_primary(&k->kids[i]);
        if (p)
            return p;
    }
    return NULL;
}

/* Without a threshold leaf, value escalation watches the first outside leaf. */
static const gw_cond *find_outside(const gw_cond *k)
{
    if (k->op == GW_OP_OUTSIDE)
        return k;
    for (size_t i = 0; i < k->n_kids; i++) {
        const gw_cond *p = find_outside(&k->kids[i]);
        if (p)
            return p;
    }
    return NULL;
}

double gw_rule_excursion(const gw_rule_inst *ri, double x)
{
    if (ri->esc_field < 0)
        return NAN;
    switch (ri->esc_op) {
    case GW_OP_GT: case GW_OP_GE: return x;
    case GW_OP_LT: case GW_OP_LE: return -x;
    case GW_OP_OUTSIDE: return fmax(ri->esc_low - x, x - ri->esc_high);
    default: return NAN;
    }
}

const gw_cond *gw_rule_primary(const gw_rule_inst *ri)
{
    const gw_cond *k = &ri->root;
    /* The flag sits on the root or on a leaf of the all / any tree (depth first). */
    while (k && !k->primary) {
        const gw_cond *next = NULL;
        for (size_t i = 0; i < k->n_kids && !next; i++)
            if (tree_has_primary(&k->kids[i]))
                next = &k->kids[i];
        k = next;
    }
    return k;
}

/* First field of a condition tree usable as evidence. */
static int first_field(const gw_cond *k)
{
    if (k->n_fields)
        return k->fields[0];
    for (size_t i = 0; i < k->n_kids; i++) {
        int f = first_field(&k->kids[i]);
        if (f >= 0)
            return f;
    }
    return -1;
}

static int has_op(const gw_cond *k, gw_rule_op op, int need_devlevel)
{
    if (k->op == op && (!need_devlevel || k->n_fields == 0))
        return 1;
    for (size_t i = 0; i < k->n_kids; i++)
        if (has_op(&k->kids[i], op, need_devlevel))
            return 1;
    return 0;
}

/* ---- condition text ------------------------------------------------------------------- */

typedef struct sbuf { char *p; size_t n, len; } sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...)
{
    if (b->len >= b->n)
        return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(b->p + b->len, b->n - b->len, fmt, ap);
    va_end(ap);
    if (w > 0)
        b->len += (size_t)w;
    if (b->len >= b->n)
        b->len = b->n - 1;
}

static void cond_text(sbuf *b, const gw_rule_inst *ri, const gw_cond *k, const gw_level *lv)
{
    const char *f = k->n_fields ? ri->fields[k->fields[0]] : NULL;
    char d[32];
    switch (k->op) {
    case GW_OP_ALL:
    case GW_OP_ANY:
        for (size_t i = 0; i < k->n_kids; i++) {
            int paren = k->kids[i].op == GW_OP_ALL || k->kids[i].op == GW_OP_ANY;
            if (i)
                sb_add(b, k->op == GW_OP_ALL ? " and " : " or ");
            sb_add(b, "%s", paren ? "(" : "");
            cond_text(b, ri, &k->kids[i], lv);
            sb_add(b, "%s", paren ? ")" : "");
        }
        return;
    case GW_OP_GT: case GW_OP_GE: case GW_OP_LT: case GW_OP_LE: {
        double r = (k->primary && lv) ? lv->raise : k->raise;
        if (k->rate)
            sb_add(b, "rate(%s) %s %g/min", f, op_name(k->op), r);
        else
            sb_add(b, "%s %s %g", f, op_name(k->op), r);
        return;
    }
    case GW_OP_BETWEEN: case GW_OP_OUTSIDE:
        sb_add(b, "%s%s%s %s %g..%g", k->rate ? "rate(" : "", f, k->rate ? ")" : "",
               op_name(k->op), k->low, k->high);
        return;
    case GW_OP_EQ: case GW_OP_NE:
        if (k->text)
            sb_add(b, "%s %s \"%s\"", f, op_name(k->op), k->texts[0]);
        else
            sb_add(b, "%s %s %g", f, op_name(k->op), k->nums[0]);
        return;
    case GW_OP_IN: case GW_OP_NOT_IN:
        sb_add(b, "%s %s [", f, op_name(k->op));
        for (size_t i = 0; i < k->n_vals; i++) {
            if (k->text)
                sb_add(b, "%s\"%s\"", i ? ", " : "", k->texts[i]);
            else
                sb_add(b, "%s%g", i ? ", " : "", k->nums[i]);
        }
        sb_add(b, "]");
        return;
    case GW_OP_STUCK:
        fmt_duration(d, sizeof d, k->for_us);
        for (int i = 0; i < k->n_fields; i++)
            sb_add(b, "%s%s", i ? "|" : "", ri->fields[k->fields[i]]);
        sb_add(b, " unchanged for %s", d);
        return;
    case GW_OP_STALE:
        fmt_duration(d, sizeof d, k->for_us);
        if (k->intervals)
            sb_add(b, "no good sample%s%s for %d intervals (%s)", f ? " of " : "", f ? f : "",
                   k->intervals, d);
        else
            sb_add(b, "no good sample%s%s for %s", f ? " of " : "", f ? f : "", d);
        return;
    case GW_OP_QUALITY:
        sb_add(b, "quality%s%s in [", f ? " of " : "", f ? f : "");
        for (int q = 0, first = 1; q < GW_Q__COUNT; q++)
            if (k->quality_mask & (1u << q)) {
                sb_add(b, "%s%s", first ? "" : ", ", gw_quality_name((gw_quality)q));
                first = 0;
            }
        sb_add(b, "]");
        return;
    default:
        return;
    }
}

static int make_texts(gw_rule_inst *ri)
{
    for (int i = 0; i < ri->n_levels; i++) {
        gw_level *lv = &ri->levels[i];
        char buf[512];
        sbuf b = {buf, sizeof buf, 0};
        buf[0] = '\0';
        cond_text(&b, ri, &ri->root, lv);
        char d[32];
        if (lv->n)
            sb_add(&b, " (%d of %d samples)", lv->n, lv->m);
        else if (lv->on_delay_us) {
            fmt_duration(d, sizeof d, lv->on_delay_us);
            sb_add(&b, " for %s", d);
        }
        gw_free(lv->condition);
        if (!(lv->condition = gw_strdup(buf)))
            return -2;
    }
    return 0;
}

/* ---- levels, delays and overrides ------------------------------------------------------ */

static int parse_nofm(pctx *c, const cJSON *v, const char *path, int *n, int *m)
{
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 2 ||
        !cJSON_IsNumber(cJSON_GetArrayItem(v, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(v, 1))) {
        perr(c, path, "must be [N, M] (N of the last M samples)");
        return -1;
    }
    double a = cJSON_GetArrayItem(v, 0)->valuedouble, b = cJSON_GetArrayItem(v, 1)->valuedouble;
    if (a != floor(a) || b != floor(b) || a < 1 || b > 32 || a > b) {
        perr(c, path, "needs 1 <= N <= M <= 32");
        return -1;
    }
    *n = (int)a;
    *m = (int)b;
    return 0;
}

/* Apply the debounce / severity / limit keys of obj (a rule, a level or an override) to
 * lv. allow_limits: obj may carry "raise"/"clear" for the primary leaf. */
static int apply_level_keys(pctx *c, const cJSON *obj, const char *path, gw_level *lv, int allow_limits)
{
    char sub[300];
    int rc = 0;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "severity"))) {
        sp(sub, sizeof sub, "%s.severity", path);
        if (!cJSON_IsString(v) || gw_rule_severity_parse(v->valuestring, &lv->severity) != 0) {
            perr(c, sub, "must be one of warning, minor, major, critical");
            rc = -1;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "on_delay"))) {
        sp(sub, sizeof sub, "%s.on_delay", path);
        if (gw_rule_parse_duration(v, &lv->on_delay_us) != 0) {
            perr(c, sub, "must be a duration (seconds, or \"30s\", \"5m\", \"1h\")");
            rc = -1;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "off_delay"))) {
        sp(sub, sizeof sub, "%s.off_delay", path);
        if (gw_rule_parse_duration(v, &lv->off_delay_us) != 0) {
            perr(c, sub, "must be a duration (seconds, or \"30s\", \"5m\", \"1h\")");
            rc = -1;
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "n_of_m"))) {
        sp(sub, sizeof sub, "%s.n_of_m", path);
        if (parse_nofm(c, v, sub, &lv->n, &lv->m) != 0)
            rc = -1;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(obj, "escalate_step"))) {
        sp(sub, sizeof sub, "%s.escalate_step", path);
        if (!c->esc_ok) {
            perr(c, sub, "not applicable: value escalation needs a value threshold (> >= < <=) "
                 "or outside in the condition (not == != in not_in between stuck stale quality "
                 "or a rate)");
            rc = -1;
        } else if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || !isfinite(v->valuedouble)) {
            perr(c, sub, "must be a number >= 0 in the field's unit (0 = off)");
            rc = -1;
        } else {
            lv->escalate_step = v->valuedouble;
        }
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(obj, "raise");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(obj, "clear");
    if ((r || cl) && !allow_limits) {
        perr(c, path, "\"raise\"/\"clear\" need a rule whose condition has a threshold (> >= < <=)");
        return -1;
    }
    if (r) {
        /* A new raise limit alone keeps the deadband: clear moves by the same amount. */
        double old_raise = lv->raise, old_clear = lv->clear;
        sp(sub, sizeof sub, "%s.raise", path);
        if (parse_limit(c, r, sub, &lv->raise) != 0)
            rc = -1;
        else if (!cl)
            lv->clear = isfinite(old_raise) && isfinite(old_clear) ? lv->raise - (old_raise - old_clear)
                                                                   : lv->raise;
    }
    if (cl) {
        sp(sub, sizeof sub, "%s.clear", path);
        if (parse_limit(c, cl, sub, &lv->clear) != 0)
            rc = -1;
    }
    if ((lv->on_delay_us || lv->off_delay_us) && lv->n) {
        perr(c, path, "use either on_delay / off_delay or n_of_m");
        rc = -1;
    }
    return rc;
}

/* Deadband and level order: for > / >= the clear limit is at or below raise and levels
 * rise; for < / <= the mirror image. Unknown (NaN) limits are not checked. */
static int check_levels(pctx *c, const gw_rule_inst *ri, const char *path)
{
    const gw_cond *p = gw_rule_primary(ri);
    int rc = 0;
    for (int i = 0; i < ri->n_levels; i++) {
        const gw_level *lv = &ri->levels[i];
        if (i > 0 && lv->severity <= ri->levels[i - 1].severity) {
            perr(c, path, "levels must rise in severity (level %d: %s after %s)", i,
                 gw_rule_severity_name(lv->severity),
                 gw_rule_severity_name(ri->levels[i - 1].severity));
            rc = -1;
        }
        if (!p || !isfinite(lv->raise) || !isfinite(lv->clear))
            continue;
        int up = p->op == GW_OP_GT || p->op == GW_OP_GE;
        if (up ? lv->clear > lv->raise : lv->clear < lv->raise) {
            perr(c, path, "clear (%g) must be %s raise (%g) for op %s (deadband)", lv->clear,
                 up ? "<=" : ">=", lv->raise, op_name(p->op));
            rc = -1;
        }
        if (i > 0 && isfinite(ri->levels[i - 1].raise) &&
            (up ? lv->raise <= ri->levels[i - 1].raise : lv->raise >= ri->levels[i - 1].raise)) {
            perr(c, path, "level %d raise (%g) must be %s than level %d (%g)", i, lv->raise,
                 up ? "higher" : "lower", i - 1, ri->levels[i - 1].raise);
            rc = -1;
        }
    }
    return rc;
}

static int apply_override(pctx *c, const cJSON *ov, const char *path, gw_rule_inst *ri, int *enabled)
{
    static const char *const keys[] = {"enabled", "raise", "clear", "on_delay", "off_delay",
                                       "n_of_m", "severity", "renotify", "escalate_step",
                                       "levels", NULL};
    if (!cJSON_IsObject(ov)) {
        perr(c, path, "must be an object of rule settings");
        return -1;
    }
    check_keys(c, ov, path, keys);
    int rc = 0;
    char sub[300];
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(ov, "enabled"))) {
        if (!cJSON_IsBool(v)) {
            sp(sub, sizeof sub, "%s.enabled", path);
            perr(c, sub, "must be true or false");
            rc = -1;
        } else {
            *enabled = cJSON_IsTrue(v);
        }
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(ov, "renotify"))) {
        sp(sub, sizeof sub, "%s.renotify", path);
        if (gw_rule_parse_duration(v, &ri->renotify_us) != 0) {
            perr(c, sub, "must be a duration");
            rc = -1;
        }
    }
    /* Debounce keys apply to every level; raise / clear / severity to the lowest. */
    for (int i = 0; i < ri->n_levels; i++) {
        cJSON *copy = cJSON_Duplicate(ov, 1);
        if (!copy)
            return -2;
        if (i > 0) {
            cJSON_DeleteItemFromObjectCaseSensitive(copy, "raise");
            cJSON_DeleteItemFromObjectCaseSensitive(copy, "clear");
            cJSON_DeleteItemFromObjectCaseSensitive(copy, "severity");
        }
        /* A rule with a delay in its own JSON switched to N-of-M by the override (or the
         * other way round): the override wins, so drop the other kind first. */
        if (cJSON_GetObjectItemCaseSensitive(copy, "n_of_m"))
            ri->levels[i].on_delay_us = ri->levels[i].off_delay_us = 0;
        else if (cJSON_GetObjectItemCaseSensitive(copy, "on_delay") ||
                 cJSON_GetObjectItemCaseSensitive(copy, "off_delay"))
            ri->levels[i].n = ri->levels[i].m = 0;
        if (apply_level_keys(c, copy, path, &ri->levels[i], gw_rule_primary(ri) != NULL) != 0)
            rc = -1;
        cJSON_Delete(copy);
        if (rc)
            break;
    }
    const cJSON *lvls = cJSON_GetObjectItemCaseSensitive(ov, "levels");
    if (lvls) {
        sp(sub, sizeof sub, "%s.levels", path);
        if (!cJSON_IsArray(lvls) || cJSON_GetArraySize(lvls) > ri->n_levels) {
            perr(c, sub, "must be an array of at most %d objects (one per level of the rule)",
                 ri->n_levels);
            return -1;
        }
        int i = 0;
        cJSON_ArrayForEach(v, lvls) {
            char s2[320];
            sp(s2, sizeof s2, "%s[%d]", sub, i);
            static const char *const lkeys[] = {"severity", "raise", "clear", "on_delay",
                                                "off_delay", "n_of_m", "escalate_step", NULL};
            if (!cJSON_IsObject(v)) {
                perr(c, s2, "must be an object");
                rc = -1;
            } else {
                check_keys(c, v, s2, lkeys);
                if (apply_level_keys(c, v, s2, &ri->levels[i], gw_rule_primary(ri) != NULL) != 0)
                    rc = -1;
            }
            i++;
        }
    }
    return rc;
}

/* ---- selectors ------------------------------------------------------------------------- */

static int check_selector(pctx *c, const cJSON *sel, const char *path)
{
    static const char *const keys[] = {"kind", "devices", "tags", NULL};
    if (!cJSON_IsObject(sel)) {
        perr(c, path, "must be an object {\"kind\", \"devices\", \"tags\"}");
        return -1;
    }
    check_keys(c, sel, path, keys);
    char sub[300];
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(sel, "kind");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(sel, "devices");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(sel, "tags");
    const cJSON *it;
    int rc = 0;
    if (k && !cJSON_IsString(k)) {
        int ok = cJSON_IsArray(k);
        cJSON_ArrayForEach(it, k) ok = ok && cJSON_IsString(it);
        if (!ok) {
            sp(sub, sizeof sub, "%s.kind", path);
            perr(c, sub, "must be a string or an array of strings");
            rc = -1;
        }
    }
    if (d) {
        int ok = cJSON_IsArray(d);
        cJSON_ArrayForEach(it, d) ok = ok && cJSON_IsString(it);
        if (!ok) {
            sp(sub, sizeof sub, "%s.devices", path);
            perr(c, sub, "must be an array of device ids (shell patterns allowed)");
            rc = -1;
        }
    }
    if (t) {
        int ok = cJSON_IsObject(t);
        cJSON_ArrayForEach(it, t) ok = ok && cJSON_IsString(it);
        if (!ok) {
            sp(sub, sizeof sub, "%s.tags", path);
            perr(c, sub, "must be an object of string values");
            rc = -1;
        }
    }
    return rc;
}

static int selector_matches(const cJSON *sel, const gw_device *dev)
{
    if (!sel)
        return 1;
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(sel, "kind");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(sel, "devices");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(sel, "tags");
    const cJSON *it;
    if (cJSON_IsString(k) && strcmp(k->valuestring, dev->kind ? dev->kind : "") != 0)
        return 0;
    if (cJSON_IsArray(k)) {
        int hit = 0;
        cJSON_ArrayForEach(it, k) hit |= cJSON_IsString(it) && dev->kind && strcmp(it->valuestring, dev->kind) == 0;
        if (!hit)
            return 0;
    }
    if (cJSON_IsArray(d)) {
        int hit = 0;
        cJSON_ArrayForEach(it, d) hit |= cJSON_IsString(it) && fnmatch(it->valuestring, dev->id, 0) == 0;
        if (!hit)
            return 0;
    }
    if (cJSON_IsObject(t)) {
        cJSON_ArrayForEach(it, t) {
            const cJSON *dv = cJSON_GetObjectItemCaseSensitive(dev->tags, it->string);
            if (!cJSON_IsString(it) || !cJSON_IsString(dv) || strcmp(dv->valuestring, it->valuestring) != 0)
                return 0;
        }
    }
    return 1;
}

/* ---- one rule ---------------------------------------------------------------------------- */

static int check_problem(pctx *c, const cJSON *p, const char *path, gw_rule_inst *ri)
{
    static const char *const keys[] = {"class", "code", "name", NULL};
    char sub[300];
    if (!cJSON_IsObject(p)) {
        perr(c, path, "required: {\"class\": component|event|device, \"code\", \"name\"}");
        return -1;
    }
    check_keys(c, p, path, keys);
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(p, "class");
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(p, "code");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(p, "name");
    sp(sub, sizeof sub, "%s.class", path);
    if (!cJSON_IsString(cl)) {
        perr(c, sub, "must be component, event or device");
        return -1;
    }
    if (strcmp(cl->valuestring, "component") == 0)
        ri->pclass = GW_PROB_COMPONENT;
    else if (strcmp(cl->valuestring, "event") == 0)
        ri->pclass = GW_PROB_EVENT;
    else if (strcmp(cl->valuestring, "device") == 0)
        ri->pclass = GW_PROB_DEVICE;
    else {
        perr(c, sub, "must be component, event or device");
        return -1;
    }
    sp(sub, sizeof sub, "%s.code", path);
    if (code) {
        int ok = cJSON_IsString(code) && code->valuestring[0] && strlen(code->valuestring) <= 16;
        for (const char *s = ok ? code->valuestring : ""; *s; s++)
            ok = ok && (isalnum((unsigned char)*s) || *s == '_' || *s == '-');
        if (!ok) {
            perr(c, sub, "must be 1..16 letters, digits, '_' or '-' (\"0403\", \"D01\")");
            return -1;
        }
        if (ri->pclass == GW_PROB_EVENT &&
            (strlen(code->valuestring) < 4 || strspn(code->valuestring, "0123456789") != strlen(code->valuestring))) {
            perr(c, sub, "an event class code is 4 or 5 digits (\"0403\")");
            return -1;
        }
    } else if (ri->pclass != GW_PROB_COMPONENT) {
        perr(c, sub, "required (a component problem may omit it: the device's minor class is used)");
        return -1;
    }
    sp(sub, sizeof sub, "%s.name", path);
    if (!cJSON_IsString(name) || !name->valuestring[0]) {
        perr(c, sub, "required: a short name of the fault");
        return -1;
    }
    /* A component problem without a code takes the minor class from the component code:
     * digits 7..10 (CJ/T 214, 16 digits) or 7..11 (GB/T 47678, 17 digits). */
    char derived[8] = "";
    if (!code && c->dev && c->dev->component.code) {
        size_t len = strlen(c->dev->component.code);
        size_t w = len >= 17 ? 5 : 4;
        if (len >= 6 + w)
            snprintf(derived, sizeof derived, "%.*s", (int)w, c->dev->component.code + 6);
    }
    ri->pcode = gw_strdup(code ? code->valuestring : derived);
    ri->pname = gw_strdup(name->valuestring);
    return ri->pcode && ri->pname ? 0 : -2;
}

/* Parse rule j (at path in file) into ri for device dev (NULL: syntax only). set_sel is
 * the rule set's selector. Returns 0, 1 (the device does not take this rule: selector,
 * disabled, missing param), -1 (errors reported) or -2 (no memory). */
static int parse_rule(pctx *c, const cJSON *j, const char *path, const cJSON *set_sel,
                      const char *set_name, const cJSON *ovr, const char *ovr_path, gw_rule_inst *ri)
{
    static const char *const keys[] = {"id", "name", "description", "select", "when", "severity",
                                       "levels", "on_delay", "off_delay", "n_of_m", "renotify",
                                       "escalate_step", "problem", "evidence", "enabled", NULL};
    char sub[300];
    memset(ri, 0, sizeof *ri);
    ri->set_name = set_name;
    ri->esc_field = -1;
    c->esc_ok = 0;
    c->ri = ri;
    c->n_stuck = 0;
    c->missing_param = 0;
    c->skipped_param = 0;
    if (!cJSON_IsObject(j)) {
        perr(c, path, "must be an object (a rule)");
        return -1;
    }
    check_keys(c, j, path, keys);
    int errs0 = c->n_errs;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "id");
    sp(sub, sizeof sub, "%s.id", path);
    if (!cJSON_IsString(id) || !valid_id(id->valuestring)) {
        perr(c, sub, "required: lower-case letters, digits, '-' or '_' (< %d bytes)", GW_ID_MAX);
        return -1;
    }
    if (!(ri->rule_id = gw_strdup(id->valuestring)))
        return -2;
    const cJSON *sel = cJSON_GetObjectItemCaseSensitive(j, "select");
    if (sel) {
        sp(sub, sizeof sub, "%s.select", path);
        check_selector(c, sel, sub);
    }
    const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "enabled");
    if (en && !cJSON_IsBool(en)) {
        sp(sub, sizeof sub, "%s.enabled", path);
        perr(c, sub, "must be true or false");
    }
    int enabled = en ? cJSON_IsTrue(en) : 1;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (name && !cJSON_IsString(name)) {
        sp(sub, sizeof sub, "%s.name", path);
        perr(c, sub, "must be a string");
    } else if (name && !(ri->name = gw_strdup(name->valuestring)))
        return -2;
    const cJSON *desc = cJSON_GetObjectItemCaseSensitive(j, "description");
    if (desc && !cJSON_IsString(desc)) {
        sp(sub, sizeof sub, "%s.description", path);
        perr(c, sub, "must be a string");
    }

    const cJSON *when = cJSON_GetObjectItemCaseSensitive(j, "when");
    sp(sub, sizeof sub, "%s.when", path);
    if (!when) {
        perr(c, sub, "required: the condition");
        return -1;
    }
    int r = parse_cond(c, when, sub, &ri->root, 0);
    if (r == -2)
        return -2;
    gw_cond *primary = find_primary(&ri->root);
    if (primary)
        primary->primary = 1;
    const gw_cond *esc = primary ? primary : find_outside(&ri->root);
    if (r == 0 && esc && !esc->rate && esc->n_fields) {
        ri->esc_field = esc->fields[0];
        ri->esc_op = esc->op;
        ri->esc_low = esc->low;
        ri->esc_high = esc->high;
        c->esc_ok = 1;
    }
    ri->device_level = has_op(&ri->root, GW_OP_STALE, 1) || has_op(&ri->root, GW_OP_QUALITY, 1);
    ri->timed = has_op(&ri->root, GW_OP_STALE, 0);

    sp(sub, sizeof sub, "%s.problem", path);
    r = check_problem(c, cJSON_GetObjectItemCaseSensitive(j, "problem"), sub, ri);
    if (r == -2)
        return -2;

    const cJSON *rn = cJSON_GetObjectItemCaseSensitive(j, "renotify");
    if (rn && gw_rule_parse_duration(rn, &ri->renotify_us) != 0) {
        sp(sub, sizeof sub, "%s.renotify", path);
        perr(c, sub, "must be a duration");
    }
    if (!rn && c->cfg && c->cfg->upstream.renotify_s > 0)
        ri->renotify_us = (int64_t)c->cfg->upstream.renotify_s * 1000000;

    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(j, "evidence");
    ri->evidence = first_field(&ri->root);
    if (ev) {
        sp(sub, sizeof sub, "%s.evidence", path);
        if (!cJSON_IsString(ev)) {
            perr(c, sub, "must name a field of the condition");
        } else {
            int k = -1;
            for (int i = 0; i < ri->n_fields; i++)
                if (strcmp(ri->fields[i], ev->valuestring) == 0)
                    k = i;
            if (k < 0)
                perr(c, sub, "\"%s\" is not a field of the condition", ev->valuestring);
            ri->evidence = k;
        }
    }
    if (c->n_errs > errs0)
        return -1;

    /* Base level from the rule's own keys, then "levels" (each inherits the base). */
    gw_level base = {.severity = GW_SEV_MAJOR, .raise = NAN, .clear = NAN};
    if (primary) {
        base.raise = primary->raise;
        base.clear = primary->clear;
    }
    if (apply_level_keys(c, j, path, &base, 1) != 0)
        return -1;
    const cJSON *lvls = cJSON_GetObjectItemCaseSensitive(j, "levels");
    if (lvls) {
        sp(sub, sizeof sub, "%s.levels", path);
        int n = cJSON_GetArraySize(lvls);
        if (!cJSON_IsArray(lvls) || n < 1 || n > GW_LEVELS_MAX) {
            perr(c, sub, "must be an array of 1..%d levels", GW_LEVELS_MAX);
            return -1;
        }
        if (!primary) {
            perr(c, sub, "levels need a threshold (> >= < <=) in the condition");
            return -1;
        }
        const cJSON *lv;
        int i = 0;
        cJSON_ArrayForEach(lv, lvls) {
            char s2[320];
            sp(s2, sizeof s2, "%s[%d]", sub, i);
            static const char *const lkeys[] = {"severity", "raise", "clear", "on_delay",
                                                "off_delay", "n_of_m", "escalate_step", NULL};
            ri->levels[i] = base;
            if (!cJSON_IsObject(lv)) {
                perr(c, s2, "must be an object {severity, raise, clear, ...}");
                return -1;
            }
            check_keys(c, lv, s2, lkeys);
            if (!cJSON_GetObjectItemCaseSensitive(lv, "severity") ||
                !cJSON_GetObjectItemCaseSensitive(lv, "raise")) {
                perr(c, s2, "a level needs \"severity\" and \"raise\"");
                return -1;
            }
            if (apply_level_keys(c, lv, s2, &ri->levels[i], 1) != 0)
                return -1;
            i++;
        }
        ri->n_levels = n;
    } else {
        ri->levels[0] = base;
        ri->n_levels = 1;
    }
    if (ovr && apply_override(c, ovr, ovr_path, ri, &enabled) != 0)
        return -1;
    if (check_levels(c, ri, ovr ? ovr_path : path) != 0)
        return -1;
    if (make_texts(ri) != 0)
        return -2;
    if (c->dev) {
        if (!selector_matches(set_sel, c->dev) || !selector_matches(sel, c->dev) || !enabled)
            return 1;
        if (c->missing_param) {
            c->skipped_param = 1; /* the caller reports it (log or check warning) */
            return 1;
        }
        char aid[2 * GW_ID_MAX + 2];
        sp(aid, sizeof aid, "%s/%s", c->dev->id, ri->rule_id);
        if (!(ri->alarm_id = gw_strdup(aid)))
            return -2;
    }
    return 0;
}

static int check_set_header(pctx *c, const cJSON *doc, const cJSON **rules, const cJSON **sel)
{
    static const char *const keys[] = {"schema", "description", "select", "rules", NULL};
    if (!cJSON_IsObject(doc)) {
        perr(c, "", "a rule set must be an object with \"rules\"");
        return -1;
    }
    check_keys(c, doc, "", keys);
    const cJSON *schema = cJSON_GetObjectItemCaseSensitive(doc, "schema");
    if (schema && !(cJSON_IsString(schema) && strcmp(schema->valuestring, "citygate.rules/1") == 0))
        perr(c, "schema", "must be \"citygate.rules/1\"");
    *sel = cJSON_GetObjectItemCaseSensitive(doc, "select");
    if (*sel)
        check_selector(c, *sel, "select");
    *rules = cJSON_GetObjectItemCaseSensitive(doc, "rules");
    if (!cJSON_IsArray(*rules)) {
        perr(c, "rules", "required: an array of rules");
        return -1;
    }
    return 0;
}

int gw_rules_check_doc(const cJSON *doc, const char *file, gw_cfgerr *errs)
{
    pctx c = {.errs = errs, .file = file};
    const cJSON *rules, *sel;
    if (check_set_header(&c, doc, &rules, &sel) != 0)
        return GW_ECONFIG;
    const cJSON *r;
    int i = 0;
    cJSON_ArrayForEach(r, rules) {
        char path[64];
        sp(path, sizeof path, "rules[%d]", i);
        gw_rule_inst ri;
        int rc = parse_rule(&c, r, path, sel, NULL, NULL, NULL, &ri);
        if (rc == 0) {
            const cJSON *r2;
            int j = 0;
            cJSON_ArrayForEach(r2, rules) {
                if (j >= i)
                    break;
                const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(r2, "id");
                if (cJSON_IsString(id2) && strcmp(id2->valuestring, ri.rule_id) == 0) {
                    char p2[80];
                    sp(p2, sizeof p2, "%s.id", path);
                    perr(&c, p2, "duplicate rule id \"%s\" (also rules[%d])", ri.rule_id, j);
                }
                j++;
            }
        }
        gw_rule_inst_clear(&ri);
        if (rc == -2)
            return GW_ENOMEM;
        i++;
    }
    return c.n_errs ? GW_ECONFIG : 0;
}

/* The rule sets a device gets: its rule_sets, or [kind, "common"] of those loaded. */
static size_t device_sets(const gw_config *cfg, const gw_device *dev, const gw_cfg_doc **out, size_t max)
{
    size_t n = 0;
    if (dev->n_rule_sets) {
        for (size_t i = 0; i < dev->n_rule_sets && n < max; i++) {
            const gw_cfg_doc *d = NULL;
            for (size_t k = 0; k < cfg->n_rulesets; k++)
                if (cfg->rulesets[k].name && strcmp(cfg->rulesets[k].name, dev->rule_sets[i]) == 0)
                    d = &cfg->rulesets[k];
            if (d)
                out[n++] = d;
        }
        return n;
    }
    const char *names[2] = {dev->kind, "common"};
    for (int i = 0; i < 2; i++)
        for (size_t k = 0; names[i] && k < cfg->n_rulesets && n < max; k++)
            if (cfg->rulesets[k].name && strcmp(cfg->rulesets[k].name, names[i]) == 0)
                out[n++] = &cfg->rulesets[k];
    return n;
}

/* Rule r failed to compile for dev. If it compiles without a device, the device's params
 * broke it (a limit on the wrong side of the deadband, a non-finite limit): report that
 * as the device's error at devices[i].params; otherwise it is the rule file's error,
 * reported once for the file. Returns 0, or -2 (out of memory). */
static int device_made_error(const gw_config *cfg, const gw_device *dev, const cJSON *r,
                             const char *path, const gw_cfg_doc *set, const cJSON *sel,
                             const char *dpath, gw_cfgerr *dev_errs)
{
    if (!dev_errs)
        return 0;
    gw_rule_inst ri;
    pctx plain = {.cfg = cfg, .file = set->path};
    int rc = parse_rule(&plain, r, path, sel, set->name, NULL, NULL, &ri);
    gw_rule_inst_clear(&ri);
    if (rc < 0)
        return rc == -2 ? -2 : 0;
    gw_cfgerr tmp = {0};
    pctx withdev = {.cfg = cfg, .dev = dev, .errs = &tmp, .file = set->path};
    rc = parse_rule(&withdev, r, path, sel, set->name, NULL, NULL, &ri);
    gw_rule_inst_clear(&ri);
    char pp[80];
    sp(pp, sizeof pp, "%s.params", dpath);
    for (size_t i = 0; i < tmp.n; i++)
        gw_cfgerr_add(dev_errs, cfg->file, pp, "with these params: %s", tmp.lines[i]);
    gw_cfgerr_free(&tmp);
    return rc == -2 ? -2 : 0;
}

/* Compile (or, with out NULL, only check) the rules of device number di. Rule-file errors
 * go to file_errs (NULL: suppressed, they were reported once per file); device errors
 * (overrides) go to dev_errs. A rule skipped for a missing parameter goes to warns when
 * given, else is logged when compiling for the engine (out set), else is silent. */
static int compile_device(const gw_config *cfg, size_t di, gw_cfgerr *file_errs, gw_cfgerr *dev_errs,
                          gw_cfgerr *warns, gw_rule_inst **out, size_t *n_out)
{
    const gw_device *dev = &cfg->devices[di];
    const gw_cfg_doc *sets[32];
    size_t n_sets = device_sets(cfg, dev, sets, 32);
    gw_rule_inst *arr = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, n_dev_errs = 0;
    char dpath[64];
    sp(dpath, sizeof dpath, "devices[%zu]", di);

    /* Every override must name a rule of the device's sets. */
    const cJSON *ov;
    cJSON_ArrayForEach(ov, dev->overrides) {
        int found = 0;
        for (size_t s = 0; s < n_sets && !found; s++) {
            const cJSON *r;
            cJSON_ArrayForEach(r, cJSON_GetObjectItemCaseSensitive(sets[s]->json, "rules")) {
                const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
                if (cJSON_IsString(id) && ov->string && strcmp(id->valuestring, ov->string) == 0)
                    found = 1;
            }
        }
        if (!found) {
            char p[GW_ID_MAX + 96];
            sp(p, sizeof p, "%s.overrides.%s", dpath, ov->string ? ov->string : "");
            char names[256] = "";
            for (size_t s = 0; s < n_sets; s++)
                snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s",
                         s ? ", " : "", sets[s]->name);
            if (dev_errs)
                gw_cfgerr_add(dev_errs, cfg->file, p, "no rule \"%s\" in the device's rule sets (%s)",
                              ov->string ? ov->string : "", n_sets ? names : "none");
            n_dev_errs++;
        }
    }

    for (size_t s = 0; s < n_sets; s++) {
        pctx fc = {.cfg = cfg, .dev = dev, .errs = file_errs, .file = sets[s]->path};
        const cJSON *rules, *sel;
        if (check_set_header(&fc, sets[s]->json, &rules, &sel) != 0) {
            rc = GW_ECONFIG;
            continue;
        }
        const cJSON *r;
        int i = 0;
        cJSON_ArrayForEach(r, rules) {
            char path[64];
            sp(path, sizeof path, "rules[%d]", i++);
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
            const cJSON *o = cJSON_IsString(id) ? cJSON_GetObjectItemCaseSensitive(dev->overrides, id->valuestring) : NULL;
            char opath[GW_ID_MAX + 96];
            sp(opath, sizeof opath, "%s.overrides.%s", dpath, o && o->string ? o->string : "");
            gw_rule_inst ri;
            /* Errors in an override are the device's; those in the rule file are the
             * file's. Parse once without the override to separate them. */
            int base = parse_rule(&fc, r, path, sel, sets[s]->name, NULL, NULL, &ri);
            gw_rule_inst_clear(&ri);
            if (base == -2) {
                rc = GW_ENOMEM;
                goto fail;
            }
            if (base == -1) {
                rc = GW_ECONFIG;
                if (device_made_error(cfg, dev, r, path, sets[s], sel, dpath, dev_errs) == -2) {
                    rc = GW_ENOMEM;
                    goto fail;
                }
                n_dev_errs++;
                continue;
            }
            int rr = 0;
            pctx c2 = {.cfg = cfg, .dev = dev, .errs = o ? dev_errs : NULL,
                       .file = o ? cfg->file : sets[s]->path};
            rr = parse_rule(&c2, r, path, sel, sets[s]->name, o, o ? opath : NULL, &ri);
            if (o)
                n_dev_errs += c2.n_errs;
            if (rr == 1 && c2.skipped_param) {
                char pp[80];
                sp(pp, sizeof pp, "%s.params", dpath);
                if (warns)
                    gw_cfgerr_add(warns, cfg->file, pp, "rule %s (%s) skipped for device %s: params.%s not set",
                                  cJSON_GetStringValue(id), sets[s]->path, dev->id, c2.missing_name);
                else if (out)
                    gw_warn("rules", "%s: rule %s skipped for device %s: params.%s not set",
                            sets[s]->path, cJSON_GetStringValue(id), dev->id, c2.missing_name);
            }
            if (rr == -2) {
                gw_rule_inst_clear(&ri);
                rc = GW_ENOMEM;
                goto fail;
            }
            if (rr != 0 || !out) {
                gw_rule_inst_clear(&ri);
                if (rr < 0)
                    rc = GW_ECONFIG;
                continue;
            }
            int dup = 0;
            for (size_t k = 0; k < n; k++)
                if (strcmp(arr[k].rule_id, ri.rule_id) == 0)
                    dup = 1;
            if (dup) {
                if (dev_errs)
                    gw_cfgerr_add(dev_errs, cfg->file, dpath,
                                  "rule id \"%s\" appears in two of the device's rule sets (%s)",
                                  ri.rule_id, sets[s]->name);
                n_dev_errs++;
                gw_rule_inst_clear(&ri);
                continue;
            }
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 8;
                gw_rule_inst *na = gw_realloc(arr, nc * sizeof *na);
                if (!na) {
                    gw_rule_inst_clear(&ri);
                    rc = GW_ENOMEM;
                    goto fail;
                }
                arr = na;
                cap = nc;
            }
            arr[n++] = ri;
        }
    }
    if (n_dev_errs)
        rc = GW_ECONFIG;
    if (out) {
        *out = arr;
        *n_out = n;
    }
    return rc;
fail:
    for (size_t k = 0; k < n; k++)
        gw_rule_inst_clear(&arr[k]);
    gw_free(arr);
    return rc;
}

int gw_rule_compile(const gw_config *cfg, const gw_device *dev, gw_cfgerr *errs,
                    gw_rule_inst **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    size_t di = (size_t)(dev - cfg->devices);
    if (di >= cfg->n_devices)
        return GW_EINVAL;
    gw_rule_inst *arr = NULL;
    size_t n = 0;
    int rc = compile_device(cfg, di, errs, errs, NULL, &arr, &n);
    if (rc == GW_ENOMEM)
        return rc;
    /* Compile errors are for `check` to report; the engine runs the rules that parsed. */
    *out = arr;
    *n_out = n;
    return rc;
}

int gw_rules_check(const gw_config *cfg, gw_cfgerr *errs)
{
    int rc = 0;
    for (size_t i = 0; i < cfg->n_rulesets; i++) {
        int r = gw_rules_check_doc(cfg->rulesets[i].json, cfg->rulesets[i].path, errs);
        if (r == GW_ENOMEM)
            return r;
        if (r)
            rc = GW_ECONFIG;
    }
    for (size_t d = 0; d < cfg->n_devices; d++) {
        const gw_device *dev = &cfg->devices[d];
        /* Missing rule-set files are the config loader's errors (devices[i].rule_sets). */
        if (dev->overrides && !cJSON_IsObject(dev->overrides)) {
            char p[64];
            sp(p, sizeof p, "devices[%zu].overrides", d);
            gw_cfgerr_add(errs, cfg->file, p, "must be an object {\"rule-id\": {...}}");
            rc = GW_ECONFIG;
            continue;
        }
        int r = compile_device(cfg, d, NULL, errs, NULL, NULL, NULL);
        if (r == GW_ENOMEM)
            return r;
        if (r)
            rc = GW_ECONFIG;
    }
    return rc;
}

int gw_rules_warnings(const gw_config *cfg, gw_cfgerr *warns)
{
    size_t n0 = warns->n;
    for (size_t d = 0; d < cfg->n_devices; d++) {
        const gw_device *dev = &cfg->devices[d];
        if (!dev->enabled || (dev->overrides && !cJSON_IsObject(dev->overrides)))
            continue;
        if (compile_device(cfg, d, NULL, NULL, warns, NULL, NULL) == GW_ENOMEM)
            return GW_ENOMEM;
    }
    return (int)(warns->n - n0);
}
