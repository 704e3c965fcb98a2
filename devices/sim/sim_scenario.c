/* Scenario parsing, validation and execution (see sim_scenario.h). */
#include "sim_scenario.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "log.h"

#define AREA "scenario"

typedef struct ramp_op {
    sim_field *field;         /* resolved per device at run time by name */
    char name[GW_FIELD_MAX];
    double to;
    int64_t over_ms;
} ramp_op;

typedef struct sim_step {
    int64_t at_ms;
    int index;                /* position in the file, for logs */
    sim_device **devs;        /* targets (NULL when the step names no device) */
    size_t n_devs;
    const cJSON *set;         /* {"field": value} (borrowed from the tree) */
    ramp_op *ramps;
    size_t n_ramps;
    const cJSON *release;     /* true, or ["field", ...] */
    int silent, hold, corrupt_crc, drip_ms, delay_ms, malform; /* -1 = unchanged */
    int exc_op;               /* 0 none, 1 add/replace, 2 clear all */
    sim_exc exc;
    int stop;
    char *text;               /* the step as JSON, for the log */
} sim_step;

struct sim_scenario {
    cJSON *json;
    sim_step *steps;
    size_t n_steps, next;
};

static const char *const STEP_KEYS[] = {
    "at", "device", "note", "set", "ramp", "release", "silent", "hold", "exception",
    "drip_ms", "delay_ms", "corrupt_crc", "malform", "stop",
};

static const char *const MALFORMS[] = {"none", "short", "length", "tid", "function", "unit"};

int sim_scenario_duration(const cJSON *v, int64_t *ms)
{
    if (cJSON_IsNumber(v)) {
        if (!(v->valuedouble >= 0) || v->valuedouble > 1e9)
            return GW_EINVAL;
        *ms = (int64_t)llround(v->valuedouble * 1000);
        return 0;
    }
    if (!cJSON_IsString(v))
        return GW_EINVAL;
    const char *s = v->valuestring;
    char *end;
    double x = strtod(s, &end);
    if (end == s || !(x >= 0) || x > 1e9)
        return GW_EINVAL;
    double mult;
    if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0 || *end == '\0')
        mult = 1000;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return GW_EINVAL;
    *ms = (int64_t)llround(x * mult);
    return 0;
}

/* Flag: true/false (or 0/1). */
static int flag(const cJSON *v, int *out)
{
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 0;
    }
    if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
        *out = (int)v->valuedouble;
        return 0;
    }
    return GW_EINVAL;
}

static int add_target(sim_step *st, sim_device *d)
{
    sim_device **nd = gw_realloc(st->devs, (st->n_devs + 1) * sizeof *nd);
    if (!nd)
        return GW_ENOMEM;
    st->devs = nd;
    st->devs[st->n_devs++] = d;
    return 0;
}

/* Resolve "device": an id, "*" (every device) or an array of ids. */
static int parse_targets(const char *file, const char *path, const cJSON *v, sim_model *m,
                         sim_step *st, gw_cfgerr *errs)
{
    if (cJSON_IsString(v) && strcmp(v->valuestring, "*") == 0) {
        for (size_t i = 0; i < m->n_devs; i++)
            if (add_target(st, &m->devs[i]))
                return GW_ENOMEM;
        return 0;
    }
    const cJSON *ids = v;
    int single = cJSON_IsString(v);
    if (!single && !cJSON_IsArray(v)) {
        gw_cfgerr_add(errs, file, path, "must be a device id, \"*\" or an array of ids");
        return 0;
    }
    const cJSON *it = single ? v : ids->child;
    for (int i = 0; it; it = single ? NULL : it->next, i++) {
        char p[192];
        if (single)
            snprintf(p, sizeof p, "%s", path);
        else
            snprintf(p, sizeof p, "%s[%d]", path, i);
        if (!cJSON_IsString(it)) {
            gw_cfgerr_add(errs, file, p, "must be a device id");
            continue;
        }
        sim_device *d = sim_model_device(m, it->valuestring);
        if (!d) {
            gw_cfgerr_add(errs, file, p, "no device '%s' in the config", it->valuestring);
            continue;
        }
        if (add_target(st, d))
            return GW_ENOMEM;
    }
    return 0;
}

/* A field name must exist on at least one target (and on every target when only one
 * is named). */
static int field_known(const sim_step *st, const char *name)
{
    for (size_t i = 0; i < st->n_devs; i++)
        if (sim_model_field(st->devs[i], name))
            return 1;
    return 0;
}

static void check_set(const char *file, const char *path, sim_step *st, gw_cfgerr *errs)
{
    if (!cJSON_IsObject(st->set) || !st->set->child) {
        gw_cfgerr_add(errs, file, path, "must be an object {\"field\": value, ...}");
        st->set = NULL;
        return;
    }
    for (const cJSON *it = st->set->child; it; it = it->next) {
        char p[192];
        snprintf(p, sizeof p, "%s.%s", path, it->string);
        if (!field_known(st, it->string)) {
            gw_cfgerr_add(errs, file, p, "no field '%s' on %s", it->string,
                          st->n_devs == 1 ? st->devs[0]->cfg->id : "the named devices");
            continue;
        }
        /* Check the value's type against each target that has the field (on a copy:
         * loading must not change the model). */
        for (size_t i = 0; i < st->n_devs; i++) {
            sim_field *f = sim_model_field(st->devs[i], it->string);
            if (!f)
                continue;
            sim_field probe = *f;
            char why[160];
            if (sim_model_set(st->devs[i], &probe, it, why, sizeof why) != 0) {
                gw_cfgerr_add(errs, file, p, "%s", why);
                break;
            }
        }
    }
}

static int parse_ramp(const char *file, const char *path, const cJSON *v, sim_step *st,
                      gw_cfgerr *errs)
{
    if (!cJSON_IsObject(v) || !v->child) {
        gw_cfgerr_add(errs, file, path,
                      "must be an object {\"field\": {\"to\": number, \"over\": duration}}");
        return 0;
    }
    for (const cJSON *it = v->child; it; it = it->next) {
        char p[192];
        snprintf(p, sizeof p, "%s.%s", path, it->string);
        if (!field_known(st, it->string)) {
            gw_cfgerr_add(errs, file, p, "no field '%s' on %s", it->string,
                          st->n_devs == 1 ? st->devs[0]->cfg->id : "the named devices");
            continue;
        }
        if (!cJSON_IsObject(it)) {
            gw_cfgerr_add(errs, file, p, "must be {\"to\": number, \"over\": duration}");
            continue;
        }
        ramp_op op = {0};
        snprintf(op.name, sizeof op.name, "%s", it->string);
        int ok = 1;
        for (const cJSON *k = it->child; k; k = k->next) {
            char pk[224];
            snprintf(pk, sizeof pk, "%s.%s", p, k->string);
            if (strcmp(k->string, "to") == 0) {
                if (!cJSON_IsNumber(k)) {
                    gw_cfgerr_add(errs, file, pk, "must be a number");
                    ok = 0;
                }
                op.to = k->valuedouble;
            } else if (strcmp(k->string, "over") == 0) {
                if (sim_scenario_duration(k, &op.over_ms) != 0) {
                    gw_cfgerr_add(errs, file, pk, "must be a duration like \"60s\" or \"500ms\"");
                    ok = 0;
                }
            } else {
                gw_cfgerr_add(errs, file, pk, "unknown key '%s' (known: to, over)", k->string);
                ok = 0;
            }
        }
        if (!cJSON_GetObjectItemCaseSensitive(it, "to")) {
            gw_cfgerr_add(errs, file, p, "missing \"to\"");
            ok = 0;
        }
        for (size_t i = 0; ok && i < st->n_devs; i++) {
            sim_field *f = sim_model_field(st->devs[i], op.name);
            if (f && (f->is_bool || f->is_text)) {
                gw_cfgerr_add(errs, file, p, "field '%s' is not a number: use \"set\"", op.name);
                ok = 0;
            }
        }
        if (!ok)
            continue;
        ramp_op *nr = gw_realloc(st->ramps, (st->n_ramps + 1) * sizeof *nr);
        if (!nr)
            return GW_ENOMEM;
        st->ramps = nr;
        st->ramps[st->n_ramps++] = op;
    }
    return 0;
}

static void parse_exception(const char *file, const char *path, const cJSON *v, sim_step *st,
                            gw_cfgerr *errs)
{
    if (cJSON_IsNull(v) || cJSON_IsFalse(v)) {
        st->exc_op = 2;
        return;
    }
    if (!cJSON_IsObject(v)) {
        gw_cfgerr_add(errs, file, path,
                      "must be {\"code\": 1..255[, \"address\": n][, \"table\": name]}, or "
                      "false to clear");
        return;
    }
    st->exc_op = 1;
    st->exc.table = -1;
    st->exc.address = -1;
    st->exc.code = -1;
    for (const cJSON *k = v->child; k; k = k->next) {
        char p[192];
        snprintf(p, sizeof p, "%s.%s", path, k->string);
        if (strcmp(k->string, "code") == 0) {
            if (!cJSON_IsNumber(k) || k->valuedouble < 0 || k->valuedouble > 255 ||
                k->valuedouble != floor(k->valuedouble))
                gw_cfgerr_add(errs, file, p, "must be an exception code 1..255 (0 removes)");
            else
                st->exc.code = (int)k->valuedouble;
        } else if (strcmp(k->string, "address") == 0) {
            if (!cJSON_IsNumber(k) || k->valuedouble < 0 || k->valuedouble > 65535 ||
                k->valuedouble != floor(k->valuedouble))
                gw_cfgerr_add(errs, file, p, "must be a PDU address 0..65535");
            else
                st->exc.address = (int)k->valuedouble;
        } else if (strcmp(k->string, "table") == 0) {
            gw_mb_table t;
            if (!cJSON_IsString(k) || gw_mb_table_parse(k->valuestring, &t) != 0)
                gw_cfgerr_add(errs, file, p, "must be coil, discrete, holding or input");
            else
                st->exc.table = (int)t;
        } else {
            gw_cfgerr_add(errs, file, p, "unknown key '%s' (known: code, address, table)",
                          k->string);
        }
    }
    if (!cJSON_GetObjectItemCaseSensitive(v, "code"))
        gw_cfgerr_add(errs, file, path, "missing \"code\"");
}

static int parse_step(const char *file, const char *path, const cJSON *j, int index,
                      sim_model *m, sim_step *st, gw_cfgerr *errs)
{
    memset(st, 0, sizeof *st);
    st->index = index;
    st->silent = st->hold = st->corrupt_crc = st->drip_ms = st->delay_ms = st->malform = -1;
    if (!cJSON_IsObject(j)) {
        gw_cfgerr_add(errs, file, path, "a step must be an object");
        return 0;
    }
    st->text = cJSON_PrintUnformatted(j);
    if (!st->text)
        return GW_ENOMEM;

    int actions = 0, device_actions = 0;
    char p[160];
    for (const cJSON *k = j->child; k; k = k->next) {
        snprintf(p, sizeof p, "%s.%s", path, k->string);
        size_t ki;
        for (ki = 0; ki < sizeof STEP_KEYS / sizeof STEP_KEYS[0]; ki++)
            if (strcmp(STEP_KEYS[ki], k->string) == 0)
                break;
        if (ki == sizeof STEP_KEYS / sizeof STEP_KEYS[0]) {
            gw_cfgerr_add(errs, file, p, "unknown key '%s' (known: at, device, set, ramp, "
                          "release, silent, hold, exception, drip_ms, delay_ms, corrupt_crc, "
                          "malform, stop, note)", k->string);
            continue;
        }
    }

    const cJSON *at = cJSON_GetObjectItemCaseSensitive(j, "at");
    snprintf(p, sizeof p, "%s.at", path);
    if (!at)
        gw_cfgerr_add(errs, file, path, "missing \"at\"");
    else if (sim_scenario_duration(at, &st->at_ms) != 0)
        gw_cfgerr_add(errs, file, p, "must be a time like \"10s\", \"500ms\", \"2m\" or seconds");

    const cJSON *dev = cJSON_GetObjectItemCaseSensitive(j, "device");
    if (dev) {
        snprintf(p, sizeof p, "%s.device", path);
        if (parse_targets(file, p, dev, m, st, errs))
            return GW_ENOMEM;
    }

    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "note")) && !cJSON_IsString(v)) {
        snprintf(p, sizeof p, "%s.note", path);
        gw_cfgerr_add(errs, file, p, "must be a string");
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "stop"))) {
        snprintf(p, sizeof p, "%s.stop", path);
        if (flag(v, &st->stop) != 0)
            gw_cfgerr_add(errs, file, p, "must be true or false");
        actions++;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "set"))) {
        snprintf(p, sizeof p, "%s.set", path);
        st->set = v;
        if (st->n_devs)
            check_set(file, p, st, errs);
        device_actions++;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "ramp"))) {
        snprintf(p, sizeof p, "%s.ramp", path);
        if (st->n_devs && parse_ramp(file, p, v, st, errs))
            return GW_ENOMEM;
        device_actions++;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "release"))) {
        snprintf(p, sizeof p, "%s.release", path);
        st->release = v;
        if (cJSON_IsArray(v)) {
            int i = 0;
            for (const cJSON *it = v->child; it; it = it->next, i++) {
                char pi[192];
                snprintf(pi, sizeof pi, "%s[%d]", p, i);
                if (!cJSON_IsString(it))
                    gw_cfgerr_add(errs, file, pi, "must be a field name");
                else if (st->n_devs && !field_known(st, it->valuestring))
                    gw_cfgerr_add(errs, file, pi, "no field '%s' on the named devices",
                                  it->valuestring);
            }
        } else if (!cJSON_IsTrue(v)) {
            gw_cfgerr_add(errs, file, p, "must be true (every field) or an array of field names");
        }
        device_actions++;
    }
    static const struct {
        const char *key;
        size_t off;
    } FLAGS[] = {
        {"silent", offsetof(sim_step, silent)},
        {"hold", offsetof(sim_step, hold)},
        {"corrupt_crc", offsetof(sim_step, corrupt_crc)},
    };
    for (size_t i = 0; i < sizeof FLAGS / sizeof FLAGS[0]; i++) {
        if (!(v = cJSON_GetObjectItemCaseSensitive(j, FLAGS[i].key)))
            continue;
        snprintf(p, sizeof p, "%s.%s", path, FLAGS[i].key);
        if (flag(v, (int *)((char *)st + FLAGS[i].off)) != 0)
            gw_cfgerr_add(errs, file, p, "must be true or false");
        device_actions++;
    }
    static const struct {
        const char *key;
        size_t off;
    } MSS[] = {
        {"drip_ms", offsetof(sim_step, drip_ms)},
        {"delay_ms", offsetof(sim_step, delay_ms)},
    };
    for (size_t i = 0; i < sizeof MSS / sizeof MSS[0]; i++) {
        if (!(v = cJSON_GetObjectItemCaseSensitive(j, MSS[i].key)))
            continue;
        snprintf(p, sizeof p, "%s.%s", path, MSS[i].key);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 600000 ||
            v->valuedouble != floor(v->valuedouble))
            gw_cfgerr_add(errs, file, p, "must be milliseconds 0..600000 (0 turns it off)");
        else
            *(int *)((char *)st + MSS[i].off) = (int)v->valuedouble;
        device_actions++;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "malform"))) {
        snprintf(p, sizeof p, "%s.malform", path);
        if (cJSON_IsFalse(v)) {
            st->malform = SIM_MALFORM_NONE;
        } else {
            size_t mi = 0;
            if (cJSON_IsString(v))
                for (mi = 0; mi < sizeof MALFORMS / sizeof MALFORMS[0]; mi++)
                    if (strcmp(MALFORMS[mi], v->valuestring) == 0)
                        break;
            if (!cJSON_IsString(v) || mi == sizeof MALFORMS / sizeof MALFORMS[0])
                gw_cfgerr_add(errs, file, p, "must be one of short, length, tid, function, "
                              "unit, none (or false)");
            else
                st->malform = (int)mi;
        }
        device_actions++;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(j, "exception"))) {
        snprintf(p, sizeof p, "%s.exception", path);
        parse_exception(file, p, v, st, errs);
        device_actions++;
    }

    if (device_actions && !dev)
        gw_cfgerr_add(errs, file, path, "this step changes a device but names no \"device\"");
    if (!actions && !device_actions)
        gw_cfgerr_add(errs, file, path, "this step does nothing (no set, ramp, release, "
                      "silent, hold, exception, drip_ms, delay_ms, corrupt_crc, malform or stop)");
    if (st->corrupt_crc == 1)
        for (size_t i = 0; i < st->n_devs; i++)
            if (st->devs[i]->bus && st->devs[i]->bus->type == GW_BUS_TCP && st->n_devs == 1)
                gw_warn(AREA, "%s: %s: corrupt_crc has no effect on TCP device %s (use "
                        "\"malform\")", file, path, st->devs[i]->cfg->id);
    return 0;
}

static int cmp_step(const void *a, const void *b)
{
    const sim_step *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->index - y->index; /* stable: file order among equal times */
}

void sim_scenario_free(sim_scenario *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_steps; i++) {
        gw_free(s->steps[i].devs);
        gw_free(s->steps[i].ramps);
        cJSON_free(s->steps[i].text);
    }
    gw_free(s->steps);
    cJSON_Delete(s->json);
    gw_free(s);
}

int sim_scenario_load(const char *file, sim_model *m, gw_cfgerr *errs, sim_scenario **out)
{
    *out = NULL;
    size_t nerr0 = errs->n;
    sim_scenario *s = gw_calloc(1, sizeof *s);
    if (!s)
        return GW_ENOMEM;
    s->json = gw_cfg_read_json(file, errs);
    if (!s->json)
        goto fail;

    const cJSON *steps = s->json;
    const char *base = "";
    if (cJSON_IsObject(s->json)) {
        base = "steps";
        for (const cJSON *k = s->json->child; k; k = k->next)
            if (strcmp(k->string, "steps") != 0 && strcmp(k->string, "description") != 0)
                gw_cfgerr_add(errs, file, k->string,
                              "unknown key '%s' (known: description, steps)", k->string);
        steps = cJSON_GetObjectItemCaseSensitive(s->json, "steps");
        if (!steps) {
            gw_cfgerr_add(errs, file, "", "missing \"steps\"");
            goto fail;
        }
    }
    if (!cJSON_IsArray(steps)) {
        gw_cfgerr_add(errs, file, base, "must be an array of steps");
        goto fail;
    }
    size_t n = (size_t)cJSON_GetArraySize(steps);
    s->steps = gw_calloc(n ? n : 1, sizeof *s->steps);
    if (!s->steps)
        goto oom;
    int i = 0;
    for (const cJSON *it = steps->child; it; it = it->next, i++) {
        char path[64];
        snprintf(path, sizeof path, "%s[%d]", base, i);
        int rc = parse_step(file, path, it, i, m, &s->steps[s->n_steps++], errs);
        if (rc == GW_ENOMEM)
            goto oom;
    }
    if (errs->n > nerr0)
        goto fail;
    qsort(s->steps, s->n_steps, sizeof *s->steps, cmp_step);
    *out = s;
    return 0;

oom:
    sim_scenario_free(s);
    return GW_ENOMEM;
fail:
    sim_scenario_free(s);
    return GW_ECONFIG;
}

int64_t sim_scenario_next_ms(const sim_scenario *s)
{
    return (s && s->next < s->n_steps) ? s->steps[s->next].at_ms : -1;
}

static void add_exception(sim_device *d, const sim_exc *e)
{
    for (size_t i = 0; i < d->n_exc; i++)
        if (d->exc[i].table == e->table && d->exc[i].address == e->address) {
            if (e->code == 0) {
                d->exc[i] = d->exc[--d->n_exc];
            } else {
                d->exc[i].code = e->code;
            }
            return;
        }
    if (e->code == 0)
        return;
    if (d->n_exc == SIM_MAX_EXC) {
        gw_warn(AREA, "%s: more than %d scripted exceptions; the oldest is dropped",
                d->cfg->id, SIM_MAX_EXC);
        memmove(d->exc, d->exc + 1, (SIM_MAX_EXC - 1) * sizeof *d->exc);
        d->n_exc--;
    }
    d->exc[d->n_exc++] = *e;
}

static void apply_device(const sim_step *st, sim_device *d, int64_t scn_ms)
{
    char why[160];
    if (st->set)
        for (const cJSON *it = st->set->child; it; it = it->next) {
            sim_field *f = sim_model_field(d, it->string);
            if (f && sim_model_set(d, f, it, why, sizeof why) != 0)
                gw_warn(AREA, "%s: %s", d->cfg->id, why);
        }
    for (size_t i = 0; i < st->n_ramps; i++) {
        sim_field *f = sim_model_field(d, st->ramps[i].name);
        if (f)
            sim_model_ramp(d, f, st->ramps[i].to, scn_ms, scn_ms + st->ramps[i].over_ms);
    }
    if (st->release) {
        if (cJSON_IsTrue(st->release)) {
            for (size_t i = 0; i < d->n_fields; i++)
                sim_model_release(d, &d->fields[i]);
        } else {
            for (const cJSON *it = st->release->child; it; it = it->next) {
                sim_field *f = sim_model_field(d, it->valuestring);
                if (f)
                    sim_model_release(d, f);
            }
        }
    }
    if (st->silent >= 0) d->silent = st->silent;
    if (st->hold >= 0) d->hold = st->hold;
    if (st->corrupt_crc >= 0) d->corrupt_crc = st->corrupt_crc;
    if (st->drip_ms >= 0) d->drip_ms = st->drip_ms;
    if (st->delay_ms >= 0) d->delay_ms = st->delay_ms;
    if (st->malform >= 0) d->malform = (sim_malform)st->malform;
    if (st->exc_op == 2)
        d->n_exc = 0;
    else if (st->exc_op == 1)
        add_exception(d, &st->exc);
    if (d->profile && d->bus)
        sim_model_encode(d);
}

int sim_scenario_run(sim_scenario *s, sim_model *m, int64_t scn_ms)
{
    (void)m;
    int stop = 0;
    while (s && s->next < s->n_steps && s->steps[s->next].at_ms <= scn_ms) {
        const sim_step *st = &s->steps[s->next++];
        gw_notice(AREA, "t=%.3fs step %d: %s", (double)scn_ms / 1000.0, st->index, st->text);
        for (size_t i = 0; i < st->n_devs; i++)
            apply_device(st, st->devs[i], scn_ms);
        if (st->stop)
            stop = 1;
    }
    return stop;
}
