/* The rule engine (see engine.h).
 *
 * Layout for speed: per device a small table of the fields its rules read (latest
 * value, quality, a ring of recent samples for evidence and rates, change tracking for
 * stuck), and per field the rule instances it triggers; a sample costs one hash lookup,
 * one short field scan and the evaluation of the rules that read that field. */
#include "rules/engine.h"

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "timeutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RING 8
#define ARING 16 /* rate anchors: samples kept every window / 8, two windows deep */
#define SYS_DETAIL_MAX 160

typedef struct field_rt {
    char name[GW_FIELD_MAX];
    char unit[GW_UNIT_MAX];
    char text[GW_TEXT_MAX];
    double value;
    int is_text;
    int seen;                /* a good sample arrived */
    int derived;             /* should_be_on computed from schedule / sun (never sampled) */
    gw_quality quality;      /* of the latest sample */
    int64_t ts, last_good;
    double ref, tolerance;   /* stuck: value last changed to, and what counts as change */
    int64_t changed_ts;
    int64_t rts[RING];
    double rv[RING];
    uint8_t rn, rhead;       /* ring count and next slot */
    /* Rate anchors: good samples at least astep apart (the smallest rate window on
     * this field / 8), so a rate spans most of its window whatever the polling rate. */
    int64_t ats[ARING];
    double av[ARING];
    uint8_t an, ahead;
    int64_t astep;           /* 0: no rate condition reads this field */
    uint32_t *trig;          /* instance indexes evaluated on a sample of this field */
    size_t n_trig;
} field_rt;

typedef struct dev_rt {
    const gw_device *dev;
    field_rt *fields;
    size_t n_fields;
    gw_rule_inst *inst;
    gw_alarm *alarms;
    uint8_t *pending;        /* a transition waits for a commit retry */
    int16_t (*fmap)[GW_RULE_FIELDS_MAX]; /* per instance: rule field -> device field */
    uint32_t *devlevel;      /* instances evaluated on every sample */
    size_t n_inst, n_devlevel;
    int64_t last_good;       /* any field */
    gw_quality last_quality;
    int has_sample;
    /* should_be_on: schedule minutes of the local day, or the sun at the location */
    int sched_on, sched_off; /* -1 when no schedule */
    /* The gateway itself (system alarms): no fields, instances added on demand, a
     * detail text per instance for the evidence. */
    int is_sys;
    char (*detail)[SYS_DETAIL_MAX];
} dev_rt;

struct gw_engine {
    const gw_config *cfg;
    gw_engine_hooks hooks;
    void *ctx;
    dev_rt *devs;
    size_t n_devs;
    uint32_t *hash;          /* open addressing: 1 + device index, 0 = empty */
    size_t hash_mask;
    uint64_t next_seq;
    int64_t t0;              /* first time seen: staleness counts from here after start */
    int64_t clock;           /* latest time seen (samples may carry older payload times) */
    gw_engine_stats st;
    dev_rt sys;              /* the gateway's own alarms (gw_engine_system_alarm) */
    gw_device sys_dev;       /* its pseudo-device (strings owned here) */
};

/* Every device runtime, the gateway's own last; NULL past the end. */
static dev_rt *dev_at(gw_engine *e, size_t i)
{
    return i < e->n_devs ? &e->devs[i] : i == e->n_devs ? &e->sys : NULL;
}

/* ---- device lookup --------------------------------------------------------------------- */

static uint32_t hash_str(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static dev_rt *find_dev(gw_engine *e, const char *id, uint32_t hint)
{
    if (hint < e->n_devs && strcmp(e->devs[hint].dev->id, id) == 0)
        return &e->devs[hint];
    if (!e->hash)
        return NULL;
    for (size_t i = hash_str(id) & e->hash_mask;; i = (i + 1) & e->hash_mask) {
        uint32_t v = e->hash[i];
        if (!v)
            return NULL;
        if (strcmp(e->devs[v - 1].dev->id, id) == 0)
            return &e->devs[v - 1];
    }
}

static field_rt *find_field(dev_rt *d, const char *name)
{
    for (size_t i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i].name, name) == 0)
            return &d->fields[i];
    return NULL;
}

/* ---- should_be_on ---------------------------------------------------------------------- */

static int parse_hhmm(const cJSON *v)
{
    int h, m;
    char tail;
    if (!cJSON_IsString(v) || sscanf(v->valuestring, "%d:%d%c", &h, &m, &tail) != 2 || h < 0 ||
        h > 24 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

/* Solar elevation in degrees (low-precision almanac formulas, well under a minute of
 * error in sunset time, which is all a lamp schedule needs). */
static double sun_elevation(double lat, double lon, int64_t ts_us)
{
    const double rad = M_PI / 180.0;
    double n = ((double)ts_us / 1e6 - 946728000.0) / 86400.0; /* days since J2000.0 */
    double L = fmod(280.460 + 0.9856474 * n, 360.0);
    double g = fmod(357.528 + 0.9856003 * n, 360.0) * rad;
    double lam = (L + 1.915 * sin(g) + 0.020 * sin(2 * g)) * rad;
    double eps = (23.439 - 0.0000004 * n) * rad;
    double ra = atan2(cos(eps) * sin(lam), cos(lam));
    double dec = asin(sin(eps) * sin(lam));
    double gmst = fmod(18.697374558 + 24.06570982441908 * n, 24.0);
    double ha = (gmst * 15.0 + lon) * rad - ra;
    return asin(sin(lat * rad) * sin(dec) + cos(lat * rad) * cos(dec) * cos(ha)) / rad;
}

/* 1 / 0, or -1 when unknown (no schedule, no location, no relay state). */
static int derived_should_be_on(const gw_engine *e, const dev_rt *d, int64_t t)
{
    if (d->sched_on >= 0) {
        int64_t local_s = t / 1000000 + (int64_t)e->cfg->gateway.utc_offset_min * 60;
        int min = (int)(((local_s % 86400) + 86400) % 86400 / 60);
        if (d->sched_on <= d->sched_off)
            return min >= d->sched_on && min < d->sched_off;
        return min >= d->sched_on || min < d->sched_off; /* over midnight */
    }
    const gw_location *loc = &d->dev->component.location;
    /* Civil lamps switch near sunset / sunrise: sun below -0.833° (refraction + disc). */
    if (loc->has)
        return sun_elevation(loc->lat, loc->lon, t) < -0.833;
    /* Neither: the controller's own relay command is the best statement of intent. */
    for (size_t i = 0; i < d->n_fields; i++) {
        const field_rt *f = &d->fields[i];
        if (strcmp(f->name, "relay_on") == 0)
            return f->seen && f->quality == GW_Q_GOOD && !f->is_text ? f->value != 0 : -1;
    }
    return -1;
}

/* ---- evaluation -------------------------------------------------------------------------- */

/* Rate of change per minute of field f at its latest good sample, against the oldest
 * anchor within the window (else, for a slow reporter, the newest one not older than
 * two windows). The span must cover at least half the window: over a few seconds, the
 * noise of a healthy reading extrapolated to a minute looks like a burst. Returns 1 with
 * *out, or 0 when there is not yet enough history (unknown). */
static int field_rate(const field_rt *f, int64_t window_us, double *out)
{
    if (f->rn < 1 || f->an < 1)
        return 0;
    int newest = (f->rhead + RING - 1) % RING;
    int64_t t = f->rts[newest];
    int best = -1;
    for (int k = 0; k < f->an; k++) { /* newest anchor first */
        int i = (f->ahead + ARING - 1 - k) % ARING;
        int64_t age = t - f->ats[i];
        if (age <= 0)
            continue;
        if (age <= window_us || (best < 0 && age <= 2 * window_us))
            best = i;
        if (age > window_us)
            break;
    }
    if (best < 0 || t - f->ats[best] < window_us / 2)
        return 0;
    double dt_min = (double)(t - f->ats[best]) / 60e6;
    *out = (f->rv[newest] - f->av[best]) / dt_min;
    return 1;
}

static int match_value(const gw_cond *k, const field_rt *f)
{
    for (size_t i = 0; i < k->n_vals; i++) {
        if (k->text ? (f->is_text && strcmp(f->text, k->texts[i]) == 0)
                    : (!f->is_text && f->value == k->nums[i]))
            return 1;
    }
    return 0;
}

/* 1 met, 0 not met, -1 unknown: the latest sample is of bad quality, or (a rate) has
 * too little history. Unknown holds a level where it was: a comm error or an
 * out-of-range reading neither raises nor clears an alarm (the stale and quality rules
 * speak for bad data). all / any combine unknowns as three-valued logic. */
static int eval_cond(const gw_engine *e, const dev_rt *d, const int16_t *fmap, const gw_rule_inst *ri,
                     const gw_cond *k, const gw_level *lv, int on, int64_t t)
{
    const field_rt *f = k->n_fields ? &d->fields[fmap[k->fields[0]]] : NULL;
    int res;
    switch (k->op) {
    case GW_OP_ALL:
        res = 1;
        for (size_t i = 0; i < k->n_kids; i++) {
            int r = eval_cond(e, d, fmap, ri, &k->kids[i], lv, on, t);
            if (r == 0)
                return 0;
            if (r < 0)
                res = -1;
        }
        return res;
    case GW_OP_ANY:
        res = 0;
        for (size_t i = 0; i < k->n_kids; i++) {
            int r = eval_cond(e, d, fmap, ri, &k->kids[i], lv, on, t);
            if (r > 0)
                return 1;
            if (r < 0)
                res = -1;
        }
        return res;
    case GW_OP_STALE: {
        /* Against the latest time seen, so a late-stamped sample cannot make a silent
         * device look fresh or a fresh one stale. */
        int64_t last = f ? f->last_good : d->last_good;
        if (!last) {
            /* Nothing good since the start. A stale alarm restored active stays active
             * until the device proves itself alive (no clear-and-raise-again after a
             * restart); otherwise staleness counts from the start. */
            if (on)
                return 1;
            last = e->t0;
        }
        return (t > e->clock ? t : e->clock) - last >= k->for_us;
    }
    case GW_OP_QUALITY: {
        if (f ? !f->ts : !d->has_sample)
            return 0;
        gw_quality q = f ? f->quality : d->last_quality;
        return (k->quality_mask >> q) & 1u;
    }
    case GW_OP_STUCK:
        for (int i = 0; i < k->n_fields; i++) {
            const field_rt *g = &d->fields[fmap[k->fields[i]]];
            if (g->seen && g->quality == GW_Q_GOOD && !g->is_text && t - g->changed_ts >= k->for_us)
                return 1;
        }
        return 0;
    default:
        break;
    }
    /* Value conditions: unknown (never seen, or latest sample bad) is "not met"; the
     * quality and stale rules speak for bad data. */
    double x;
    if (f->derived) {
        int sbo = derived_should_be_on(e, d, t);
        if (sbo < 0)
            return -1;
        x = sbo;
    } else {
        /* Never sampled: a field this device does not report (an "any" over optional
         * fields must still clear). Sampled, but bad or never good: unknown. */
        if (!f->ts)
            return 0;
        if (!f->seen || f->quality != GW_Q_GOOD)
            return -1;
        x = f->value;
    }
    if (k->op == GW_OP_EQ || k->op == GW_OP_NE || k->op == GW_OP_IN || k->op == GW_OP_NOT_IN) {
        int m;
        if (f->derived)
            m = !k->text && k->nums[0] == x;
        else
            m = match_value(k, f);
        return (k->op == GW_OP_EQ || k->op == GW_OP_IN) ? m : !m;
    }
    if (f->is_text)
        return 0;
    if (k->rate && !field_rate(f, k->window_us, &x))
        return -1;
    if (k->op == GW_OP_BETWEEN) {
        double db = on ? k->deadband : 0;
        return x >= k->low - db && x <= k->high + db;
    }
    if (k->op == GW_OP_OUTSIDE) {
        double db = on ? k->deadband : 0;
        return x < k->low + db || x > k->high - db;
    }
    double lim;
    if (k->primary)
        lim = on ? lv->clear : lv->raise;
    else
        lim = on ? k->clear : k->raise;
    switch (k->op) {
    case GW_OP_GT: return x > lim;
    case GW_OP_GE: return x >= lim;
    case GW_OP_LT: return x < lim;
    case GW_OP_LE: return x <= lim;
    default: return 0;
    }
}

static void fill_evidence(const dev_rt *d, size_t ii, gw_evidence *ev)
{
    const gw_rule_inst *ri = &d->inst[ii];
    memset(ev, 0, sizeof *ev);
    if (d->is_sys) {
        ev->quality = GW_Q_GOOD;
        ev->text = d->detail[ii][0] ? d->detail[ii] : NULL;
        return;
    }
    if (ri->evidence < 0) {
        ev->quality = d->has_sample ? d->last_quality : GW_Q_STALE;
        return;
    }
    const field_rt *f = &d->fields[d->fmap[ii][ri->evidence]];
    ev->field = f->name;
    ev->unit = f->unit;
    ev->quality = f->ts ? f->quality : GW_Q_STALE;
    if (f->is_text && f->seen)
        ev->text = f->text;
    ev->has_value = f->seen && !f->is_text;
    ev->value = f->value;
    int n = f->rn;
    for (int k = 0; k < n; k++) {
        int i = (f->rhead + RING - n + k) % RING;
        ev->ts[k] = f->rts[i];
        ev->v[k] = f->rv[i];
    }
    ev->n = n;
}

/* The gateway's alarms have no rule file to recompile at start: their saved state also
 * carries the severity and problem name they were raised with. */
static int sys_state_add(const gw_rule_inst *ri, char **state)
{
    cJSON *o = cJSON_Parse(*state);
    int ok = o && cJSON_AddStringToObject(o, "sys_severity", gw_rule_severity_name(ri->levels[0].severity)) &&
             cJSON_AddStringToObject(o, "sys_name", ri->pname ? ri->pname : "");
    char *txt = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!txt)
        return GW_ENOMEM;
    gw_free(*state);
    *state = gw_strdup(txt);
    cJSON_free(txt);
    return *state ? 0 : GW_ENOMEM;
}

static void sys_state_apply(gw_rule_inst *ri, const char *state)
{
    cJSON *o = cJSON_Parse(state);
    const cJSON *sv = cJSON_GetObjectItemCaseSensitive(o, "sys_severity");
    const cJSON *nm = cJSON_GetObjectItemCaseSensitive(o, "sys_name");
    gw_severity sev;
    if (cJSON_IsString(sv) && gw_rule_severity_parse(sv->valuestring, &sev) == 0 && sev != GW_SEV_NONE)
        ri->levels[0].severity = sev;
    if (cJSON_IsString(nm) && nm->valuestring[0]) {
        char *n = gw_strdup(nm->valuestring);
        if (n) {
            gw_free(ri->pname);
            ri->pname = n;
        }
    }
    cJSON_Delete(o);
}

/* Format and commit one event for instance ii of d with the alarm value next. */
static int emit(gw_engine *e, dev_rt *d, size_t ii, const gw_alarm *next, gw_event_type type,
                const char *reason, int64_t t, const gw_event_cmd *cmd, char *id_out)
{
    const gw_rule_inst *ri = &d->inst[ii];
    gw_evidence evd;
    fill_evidence(d, ii, &evd);
    gw_alarm a = *next;
    if (evd.has_value && (type == GW_EV_RAISED || type == GW_EV_UPDATED || type == GW_EV_CLEARED))
        a.value = evd.value;
    gw_event_info info = {
        .type = type, .reason = reason, .seq = e->next_seq, .ts_us = t, .cfg = e->cfg,
        .dev = d->dev, .rule = ri, .alarm = &a, .evidence = &evd, .cmd = cmd,
        .level = type == GW_EV_CLEARED ? d->alarms[ii].rep_level : 0,
    };
    gw_event_make_id(info.event_id, t);
    char *json = NULL, *state = NULL, *retained = NULL;
    int rc = gw_event_format(&info, &json);
    if (rc == 0 && !gw_alarm_is_normal(&a))
        rc = gw_alarm_to_json(&a, &state);
    if (rc == 0 && state && d->is_sys)
        rc = sys_state_add(ri, &state);
    if (rc == 0)
        rc = gw_event_format_retained(&info, &retained);
    if (rc == 0) {
        gw_event_out out = {
            .seq = info.seq, .event_id = info.event_id, .type = type,
            .type_name = gw_event_type_name(type), .device_id = d->dev->id,
            .rule_id = ri->rule_id, .alarm_id = ri->alarm_id, .ts_us = t, .json = json,
            .json_len = strlen(json), .state_json = state, .retained_json = retained,
        };
        if (e->hooks.commit(e->ctx, &out) != 0) {
            e->st.commit_failures++;
            rc = GW_EAGAIN;
        } else {
            e->next_seq++;
            e->st.events[type]++;
            d->alarms[ii] = a;
            if (id_out)
                memcpy(id_out, info.event_id, GW_EVENT_ID_LEN + 1);
        }
    }
    gw_free(json);
    gw_free(state);
    gw_free(retained);
    return rc;
}

/* The current good value of instance ii's value-escalation leaf, or NaN (none, never
 * good, latest sample bad, text). */
static double esc_value(const dev_rt *d, size_t ii)
{
    const gw_rule_inst *ri = &d->inst[ii];
    if (d->is_sys || ri->esc_field < 0)
        return NAN;
    const field_rt *f = &d->fields[d->fmap[ii][ri->esc_field]];
    if (!f->seen || f->quality != GW_Q_GOOD || f->is_text || f->derived)
        return NAN;
    return f->value;
}

/* Bring the report of instance ii in line with its condition (several events may be
 * due: unshelved, then cleared). */
static int reconcile(gw_engine *e, dev_rt *d, size_t ii, int64_t t)
{
    double x = esc_value(d, ii);
    for (int guard = 0; guard < 4; guard++) {
        gw_alarm next;
        gw_event_type type;
        const char *reason;
        if (!gw_alarm_next(&d->alarms[ii], &d->inst[ii], t, x, &next, &type, &reason)) {
            d->pending[ii] = 0;
            return 0;
        }
        int rc = emit(e, d, ii, &next, type, reason, t, NULL, NULL);
        if (rc != 0) {
            d->pending[ii] = 1;
            return rc == GW_EAGAIN ? GW_EAGAIN : rc;
        }
    }
    return 0;
}

static uint32_t eval_levels(const gw_engine *e, const dev_rt *d, size_t ii, int64_t t)
{
    const gw_rule_inst *ri = &d->inst[ii];
    const gw_alarm *a = &d->alarms[ii];
    uint32_t mask = 0;
    for (int l = 0; l < ri->n_levels; l++) {
        int r = eval_cond(e, d, d->fmap[ii], ri, &ri->root, &ri->levels[l], a->lv[l].on, t);
        if (r > 0 || (r < 0 && a->lv[l].raw))
            mask |= 1u << l;
    }
    return mask;
}

static int eval_inst(gw_engine *e, dev_rt *d, size_t ii, int64_t t, int sample)
{
    e->st.evaluations++;
    uint32_t mask = eval_levels(e, d, ii, t);
    gw_alarm_debounce(&d->alarms[ii], &d->inst[ii], mask, t, sample);
    gw_alarm *a = &d->alarms[ii];
    if (a->cond_level != a->rep_level || d->pending[ii])
        return reconcile(e, d, ii, t);
    if (a->rep_level > 0 && d->inst[ii].esc_field >= 0) {
        double x = esc_value(d, ii);
        /* Active without a reference (raised while the value was unknown, or a state
         * saved before value escalation existed): this value becomes the reference,
         * silently; only a worsening from here is news. */
        if (!a->esc_has && isfinite(x)) {
            a->esc_ref = x;
            a->esc_has = 1;
        } else if (gw_alarm_value_due(a, &d->inst[ii], x)) {
            return reconcile(e, d, ii, t);
        }
    }
    return 0;
}

int gw_engine_on_sample(gw_engine *e, const gw_sample *s)
{
    e->st.samples++;
    dev_rt *d = find_dev(e, s->device, s->device_idx);
    if (!d) {
        e->st.unknown_device++;
        return GW_ENOTFOUND;
    }
    int64_t t = s->ts_us;
    if (!e->t0)
        e->t0 = t;
    if (t > e->clock)
        e->clock = t;
    int good = s->quality == GW_Q_GOOD;
    d->has_sample = 1;
    d->last_quality = s->quality;
    if (good && t > d->last_good)
        d->last_good = t;
    field_rt *f = find_field(d, s->field);
    if (f) {
        f->quality = s->quality;
        f->ts = t;
        if (good) {
            int txt = s->type == GW_V_TEXT;
            double v = s->type == GW_V_BOOL ? (s->value != 0) : s->value;
            if (txt) {
                memcpy(f->text, s->text, sizeof f->text);
                f->text[sizeof f->text - 1] = '\0';
            } else {
                if (!f->seen || f->is_text || fabs(v - f->ref) > f->tolerance) {
                    f->ref = v;
                    f->changed_ts = t;
                }
                f->rts[f->rhead] = t;
                f->rv[f->rhead] = v;
                f->rhead = (uint8_t)((f->rhead + 1) % RING);
                if (f->rn < RING)
                    f->rn++;
                if (f->astep && (!f->an || t - f->ats[(f->ahead + ARING - 1) % ARING] >= f->astep)) {
                    f->ats[f->ahead] = t;
                    f->av[f->ahead] = v;
                    f->ahead = (uint8_t)((f->ahead + 1) % ARING);
                    if (f->an < ARING)
                        f->an++;
                }
            }
            f->value = v;
            f->is_text = txt;
            f->seen = 1;
            f->derived = 0;
            f->last_good = t;
            if (s->unit[0])
                memcpy(f->unit, s->unit, sizeof f->unit);
        }
    }
    int rc = 0;
    for (size_t i = 0; f && i < f->n_trig; i++)
        if (eval_inst(e, d, f->trig[i], t, 1) == GW_EAGAIN)
            rc = GW_EAGAIN;
    for (size_t i = 0; i < d->n_devlevel; i++)
        if (eval_inst(e, d, d->devlevel[i], t, 1) == GW_EAGAIN)
            rc = GW_EAGAIN;
    return rc;
}

int gw_engine_tick(gw_engine *e, int64_t now)
{
    if (!e->t0)
        e->t0 = now;
    if (now > e->clock)
        e->clock = now;
    int rc = 0;
    dev_rt *d;
    for (size_t di = 0; (d = dev_at(e, di)); di++) {
        for (size_t ii = 0; ii < d->n_inst; ii++) {
            const gw_rule_inst *ri = &d->inst[ii];
            gw_alarm *a = &d->alarms[ii];
            if (ri->timed) {
                e->st.evaluations++;
                gw_alarm_debounce(a, ri, eval_levels(e, d, ii, now), now, 0);
            } else if (gw_alarm_waiting(a, ri)) {
                uint32_t mask = 0;
                for (int l = 0; l < ri->n_levels; l++)
                    mask |= (uint32_t)a->lv[l].raw << l;
                gw_alarm_debounce(a, ri, mask, now, 0);
            }
            if (a->cond_level != a->rep_level || d->pending[ii] || a->sup == GW_SUP_SHELVED ||
                (ri->renotify_us && a->rep_level && a->state == GW_ALARM_ACTIVE_UNACKED))
                if (reconcile(e, d, ii, now) == GW_EAGAIN)
                    rc = GW_EAGAIN;
        }
    }
    return rc;
}

/* ---- the gateway's own alarms ------------------------------------------------------------ */

typedef struct sys_def {
    const char *rule_id, *code, *name, *condition;
    gw_severity sev;
} sys_def;

/* Known system alarms: created at start, so commands (out_of_service before planned
 * work) reach them before they are ever raised. */
static const sys_def sys_defs[] = {
    {GW_SYSALARM_INFLUX_CONFIG, "G01", "InfluxDB configuration fault",
     "InfluxDB refuses writes with 401, 403 or 404 (credentials, database or bucket)", GW_SEV_MAJOR},
    {GW_SYSALARM_TELEMETRY_DROP, "G02", "telemetry dropped",
     "telemetry spool full: the oldest telemetry is dropped", GW_SEV_WARNING},
    {GW_SYSALARM_EVENT_STORE, "G03", "event store failing",
     "event commits to the outbox keep failing", GW_SEV_MAJOR},
};

static int valid_rule_id(const char *id)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n >= GW_ID_MAX)
        return 0;
    return strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static const sys_def *sys_def_of(const char *rule_id)
{
    for (size_t i = 0; i < sizeof sys_defs / sizeof *sys_defs; i++)
        if (strcmp(sys_defs[i].rule_id, rule_id) == 0)
            return &sys_defs[i];
    return NULL;
}

/* Grow the gateway's instance arrays by one (zeroed). */
static int sys_grow(dev_rt *d)
{
    size_t n = d->n_inst + 1;
    gw_rule_inst *inst = gw_realloc(d->inst, n * sizeof *inst);
    if (inst)
        d->inst = inst;
    gw_alarm *al = gw_realloc(d->alarms, n * sizeof *al);
    if (al)
        d->alarms = al;
    uint8_t *pe = gw_realloc(d->pending, n);
    if (pe)
        d->pending = pe;
    char (*dt)[SYS_DETAIL_MAX] = gw_realloc(d->detail, n * sizeof *dt);
    if (dt)
        d->detail = dt;
    if (!inst || !al || !pe || !dt)
        return GW_ENOMEM;
    memset(&d->inst[n - 1], 0, sizeof *inst);
    memset(&d->alarms[n - 1], 0, sizeof *al);
    d->pending[n - 1] = 0;
    d->detail[n - 1][0] = '\0';
    return 0;
}

/* Find the gateway's alarm rule_id, or add it (catalogue defaults, else sev / name /
 * code "G00"). Returns 0 with *idx, GW_EINVAL (bad id, no gateway id) or GW_ENOMEM. */
static int sys_find_or_add(gw_engine *e, const char *rule_id, gw_severity sev, const char *name,
                           size_t *idx)
{
    if (!e->sys_dev.id || !valid_rule_id(rule_id))
        return GW_EINVAL;
    dev_rt *d = &e->sys;
    for (size_t i = 0; i < d->n_inst; i++)
        if (strcmp(d->inst[i].rule_id, rule_id) == 0) {
            *idx = i;
            return 0;
        }
    const sys_def *def = sys_def_of(rule_id);
    if (sev == GW_SEV_NONE)
        sev = def ? def->sev : GW_SEV_MAJOR;
    if (!name)
        name = def ? def->name : rule_id;
    if (sys_grow(d) != 0)
        return GW_ENOMEM;
    gw_rule_inst *ri = &d->inst[d->n_inst];
    size_t alen = strlen(e->sys_dev.id) + strlen(rule_id) + 2;
    ri->rule_id = gw_strdup(rule_id);
    ri->alarm_id = gw_malloc(alen);
    ri->name = gw_strdup(name);
    ri->pcode = gw_strdup(def ? def->code : "G00");
    ri->pname = gw_strdup(name);
    ri->levels[0].condition = gw_strdup(def ? def->condition : name);
    if (!ri->rule_id || !ri->alarm_id || !ri->name || !ri->pcode || !ri->pname ||
        !ri->levels[0].condition) {
        gw_rule_inst_clear(ri);
        return GW_ENOMEM;
    }
    snprintf(ri->alarm_id, alen, "%s/%s", e->sys_dev.id, rule_id);
    ri->esc_field = -1; /* no value escalation */
    /* No condition tree: the caller states the condition. One level, no delays. */
    ri->root.op = GW_OP_QUALITY;
    ri->levels[0].severity = sev;
    ri->levels[0].raise = ri->levels[0].clear = NAN;
    ri->n_levels = 1;
    ri->pclass = GW_PROB_GATEWAY;
    ri->evidence = -1;
    if (e->cfg->upstream.renotify_s > 0)
        ri->renotify_us = (int64_t)e->cfg->upstream.renotify_s * 1000000;
    *idx = d->n_inst++;
    return 0;
}

static int sys_build(gw_engine *e)
{
    const gw_gateway_cfg *g = &e->cfg->gateway;
    e->sys.is_sys = 1;
    e->sys.sched_on = e->sys.sched_off = -1;
    e->sys.dev = &e->sys_dev;
    if (!g->id || !g->id[0])
        return 0; /* no gateway id: no system alarms (gw_engine_system_alarm refuses) */
    e->sys_dev.id = gw_strdup(g->id);
    e->sys_dev.kind = gw_strdup("gateway");
    e->sys_dev.name = g->name ? gw_strdup(g->name) : NULL;
    e->sys_dev.enabled = 1;
    if (!e->sys_dev.id || !e->sys_dev.kind || (g->name && !e->sys_dev.name))
        return GW_ENOMEM;
    if (find_dev(e, g->id, UINT32_MAX))
        gw_warn("rules", "device id %s is also the gateway id: the gateway's own alarms use "
                "\"%s/<rule>\" too", g->id, g->id);
    for (size_t i = 0; i < sizeof sys_defs / sizeof *sys_defs; i++) {
        size_t idx;
        int rc = sys_find_or_add(e, sys_defs[i].rule_id, GW_SEV_NONE, NULL, &idx);
        if (rc)
            return rc;
    }
    return 0;
}

int gw_engine_system_alarm(gw_engine *e, const char *rule_id, gw_severity sev, int active,
                           const char *problem_name, const char *detail, int64_t now)
{
    if (sev < GW_SEV_NONE || sev >= GW_SEV__COUNT)
        return GW_EINVAL;
    size_t ii;
    int rc = sys_find_or_add(e, rule_id, sev, problem_name, &ii);
    if (rc)
        return rc;
    dev_rt *d = &e->sys;
    gw_rule_inst *ri = &d->inst[ii];
    gw_alarm *a = &d->alarms[ii];
    if (now > e->clock)
        e->clock = now;
    if (problem_name && strcmp(problem_name, ri->pname) != 0) {
        char *n = gw_strdup(problem_name);
        if (!n)
            return GW_ENOMEM;
        gw_free(ri->pname);
        ri->pname = n;
    }
    if (detail)
        snprintf(d->detail[ii], SYS_DETAIL_MAX, "%s", detail);
    gw_severity cur = ri->levels[0].severity;
    if (active && sev != GW_SEV_NONE && sev != cur) {
        ri->levels[0].severity = sev;
        if (a->rep_level > 0 && a->sup == GW_SUP_NONE) {
            /* Reported active: the new severity is news of its own; a worse one needs
             * a fresh acknowledgement (as for rule levels). */
            gw_alarm next = *a;
            next.last_notify = next.last_change = now;
            if (sev > cur)
                next.state = GW_ALARM_ACTIVE_UNACKED;
            rc = emit(e, d, ii, &next, GW_EV_UPDATED, sev > cur ? "escalated" : "deescalated",
                      now, NULL, NULL);
            if (rc) {
                ri->levels[0].severity = cur;
                return rc;
            }
        }
    }
    gw_alarm_debounce(a, ri, active ? 1u : 0u, now, 1);
    if (a->cond_level != a->rep_level || d->pending[ii])
        return reconcile(e, d, ii, now);
    return 0;
}

/* ---- commands ---------------------------------------------------------------------------- */

static int find_alarm(gw_engine *e, const char *alarm_id, dev_rt **dout, size_t *iout)
{
    const char *slash = alarm_id ? strrchr(alarm_id, '/') : NULL;
    if (!slash || slash == alarm_id || (size_t)(slash - alarm_id) >= GW_ID_MAX)
        return GW_ENOTFOUND;
    char dev[GW_ID_MAX];
    memcpy(dev, alarm_id, (size_t)(slash - alarm_id));
    dev[slash - alarm_id] = '\0';
    /* The gateway's own alarms first (a device named like the gateway keeps its other
     * rules). */
    if (e->sys_dev.id && strcmp(dev, e->sys_dev.id) == 0)
        for (size_t i = 0; i < e->sys.n_inst; i++)
            if (strcmp(e->sys.inst[i].rule_id, slash + 1) == 0) {
                *dout = &e->sys;
                *iout = i;
                return 0;
            }
    dev_rt *d = find_dev(e, dev, UINT32_MAX);
    if (!d)
        return GW_ENOTFOUND;
    for (size_t i = 0; i < d->n_inst; i++) {
        if (strcmp(d->inst[i].rule_id, slash + 1) == 0) {
            *dout = d;
            *iout = i;
            return 0;
        }
    }
    return GW_ENOTFOUND;
}

static int reply(char **out, const char *request_id, int ok, const char *alarm, const char *state,
                 const char *event_id, uint64_t seq, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ENOMEM;
    if (request_id)
        cJSON_AddStringToObject(o, "request_id", request_id);
    else
        cJSON_AddNullToObject(o, "request_id");
    cJSON_AddBoolToObject(o, "ok", ok);
    if (alarm)
        cJSON_AddStringToObject(o, "alarm", alarm);
    if (state)
        cJSON_AddStringToObject(o, "state", state);
    if (event_id) {
        cJSON_AddStringToObject(o, "event_id", event_id);
        cJSON_AddNumberToObject(o, "seq", (double)seq);
    }
    if (error)
        cJSON_AddStringToObject(o, "error", error);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt)
        return GW_ENOMEM;
    *out = gw_strdup(txt);
    cJSON_free(txt);
    return *out ? 0 : GW_ENOMEM;
}

static const char *opt_str(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int gw_engine_command(gw_engine *e, const char *verb, const char *request_json, char **reply_json)
{
    *reply_json = NULL;
    e->st.commands++;
    cJSON *req = request_json ? cJSON_Parse(request_json) : NULL;
    const char *rid = opt_str(req, "request_id");
    const char *aid = opt_str(req, "alarm");
    int rc;
    if (!cJSON_IsObject(req)) {
        e->st.commands_rejected++;
        rc = reply(reply_json, NULL, 0, NULL, NULL, NULL, 0, "request must be a JSON object");
        cJSON_Delete(req);
        return rc ? rc : GW_EINVAL;
    }
    dev_rt *d;
    size_t ii;
    if (find_alarm(e, aid, &d, &ii) != 0) {
        e->st.commands_rejected++;
        rc = reply(reply_json, rid, 0, aid, NULL, NULL, 0, "no such alarm (\"alarm\": \"<device>/<rule>\")");
        cJSON_Delete(req);
        return rc ? rc : GW_ENOTFOUND;
    }
    int64_t now = e->hooks.now_us ? e->hooks.now_us(e->ctx) : gw_now_us();
    int64_t until = 0;
    const char *why = NULL;
    if (strcmp(verb, "shelve") == 0) {
        const char *u = opt_str(req, "until");
        const cJSON *dur = cJSON_GetObjectItemCaseSensitive(req, "duration_s");
        if (u && gw_parse_rfc3339(u, &until) != 0)
            why = "\"until\" must be an RFC 3339 time";
        else if (!u && cJSON_IsNumber(dur) && dur->valuedouble > 0 && dur->valuedouble < 1e9)
            until = now + (int64_t)(dur->valuedouble * 1e6);
        else if (!u)
            why = "shelve needs \"until\" (RFC 3339) or \"duration_s\"";
    }
    gw_alarm next;
    gw_event_type type = GW_EV_ACKED;
    if (!why && gw_alarm_command(&d->alarms[ii], verb, until, now, &next, &type, &why) == 0) {
        gw_event_cmd cmd = {rid, opt_str(req, "user"), opt_str(req, "comment")};
        char id[GW_EVENT_ID_LEN + 1];
        uint64_t seq = e->next_seq;
        rc = emit(e, d, ii, &next, type, "command", now, &cmd, id);
        if (rc == 0) {
            rc = reply(reply_json, rid, 1, aid, gw_alarm_display_state(&d->alarms[ii]), id, seq, NULL);
            cJSON_Delete(req);
            /* Lifting a suppression may make condition events due at once. */
            reconcile(e, d, ii, now);
            return rc;
        }
        e->st.commands_rejected++;
        int r2 = reply(reply_json, rid, 0, aid, gw_alarm_display_state(&d->alarms[ii]), NULL, 0,
                       rc == GW_EAGAIN ? "event store unavailable; try again" : gw_strerror(rc));
        cJSON_Delete(req);
        return r2 ? r2 : rc;
    }
    e->st.commands_rejected++;
    rc = reply(reply_json, rid, 0, aid, gw_alarm_display_state(&d->alarms[ii]), NULL, 0, why);
    cJSON_Delete(req);
    return rc ? rc : GW_EINVAL;
}

/* ---- restore, iteration, stats ------------------------------------------------------------- */

void gw_engine_restore(gw_engine *e, uint64_t last_seq)
{
    if (last_seq + 1 > e->next_seq)
        e->next_seq = last_seq + 1;
}

uint64_t gw_engine_last_seq(const gw_engine *e) { return e->next_seq - 1; }

int gw_engine_restore_alarm(gw_engine *e, const char *alarm_id, const char *state_json)
{
    dev_rt *d;
    size_t ii;
    if (find_alarm(e, alarm_id, &d, &ii) != 0) {
        /* A system alarm this run has not met yet (one from a newer or older version,
         * or raised on demand): it stays known, so its clear can still be reported. */
        const char *slash = alarm_id ? strrchr(alarm_id, '/') : NULL;
        size_t n = slash ? (size_t)(slash - alarm_id) : 0;
        if (!slash || !e->sys_dev.id || strlen(e->sys_dev.id) != n ||
            strncmp(alarm_id, e->sys_dev.id, n) != 0)
            return GW_ENOTFOUND;
        int rc = sys_find_or_add(e, slash + 1, GW_SEV_NONE, NULL, &ii);
        if (rc != 0)
            return rc == GW_EINVAL ? GW_ENOTFOUND : rc;
        d = &e->sys;
    }
    gw_alarm a;
    int rc = gw_alarm_from_json(&a, &d->inst[ii], state_json);
    if (rc != 0)
        return rc;
    if (d->is_sys)
        sys_state_apply(&d->inst[ii], state_json);
    d->alarms[ii] = a;
    return 0;
}

int gw_engine_foreach_alarm(gw_engine *e, gw_engine_alarm_fn fn, void *ctx)
{
    dev_rt *d;
    for (size_t di = 0; (d = dev_at(e, di)); di++) {
        for (size_t ii = 0; ii < d->n_inst; ii++) {
            if (gw_alarm_is_normal(&d->alarms[ii]))
                continue;
            int r = fn(ctx, d->inst[ii].alarm_id, &d->inst[ii], &d->alarms[ii]);
            if (r)
                return r;
        }
    }
    return 0;
}

int gw_engine_alarms_json(gw_engine *e, char **out)
{
    size_t cap = 256, len = 0;
    char *buf = gw_malloc(cap);
    if (!buf)
        return GW_ENOMEM;
    buf[len++] = '[';
    dev_rt *d;
    for (size_t di = 0; (d = dev_at(e, di)); di++) {
        for (size_t ii = 0; ii < d->n_inst; ii++) {
            if (gw_alarm_is_normal(&d->alarms[ii]))
                continue;
            gw_evidence evd;
            fill_evidence(d, ii, &evd);
            gw_event_info info = {.type = GW_EV_UPDATED, .seq = e->next_seq - 1,
                                  .ts_us = d->alarms[ii].last_change, .cfg = e->cfg, .dev = d->dev,
                                  .rule = &d->inst[ii], .alarm = &d->alarms[ii], .evidence = &evd};
            char *one = NULL;
            if (gw_event_format_retained(&info, &one) != 0) {
                gw_free(buf);
                return GW_ENOMEM;
            }
            if (!one)
                continue;
            size_t n = strlen(one);
            if (len + n + 3 > cap) {
                size_t nc = (len + n + 3) * 2;
                char *nb = gw_realloc(buf, nc);
                if (!nb) {
                    gw_free(one);
                    gw_free(buf);
                    return GW_ENOMEM;
                }
                buf = nb;
                cap = nc;
            }
            if (len > 1)
                buf[len++] = ',';
            memcpy(buf + len, one, n);
            len += n;
            gw_free(one);
        }
    }
    buf[len++] = ']';
    buf[len] = '\0';
    *out = buf;
    return 0;
}

void gw_engine_stats_get(gw_engine *e, gw_engine_stats *out)
{
    gw_engine_stats s = e->st;
    s.rules = s.active = s.suppressed = s.pending = 0;
    memset(s.active_by_severity, 0, sizeof s.active_by_severity);
    dev_rt *d;
    for (size_t di = 0; (d = dev_at(e, di)); di++) {
        if (!d->is_sys) /* compiled rules only */
            s.rules += d->n_inst;
        for (size_t ii = 0; ii < d->n_inst; ii++) {
            const gw_alarm *a = &d->alarms[ii];
            if (a->rep_level > 0) {
                s.active++;
                s.active_by_severity[d->inst[ii].levels[a->rep_level - 1].severity]++;
            }
            s.suppressed += a->sup != GW_SUP_NONE;
            s.pending += d->pending[ii];
        }
    }
    *out = s;
}

/* ---- construction -------------------------------------------------------------------------- */

static void dev_free(dev_rt *d)
{
    for (size_t i = 0; i < d->n_fields; i++)
        gw_free(d->fields[i].trig);
    gw_free(d->fields);
    for (size_t i = 0; i < d->n_inst; i++)
        gw_rule_inst_clear(&d->inst[i]);
    gw_free(d->inst);
    gw_free(d->alarms);
    gw_free(d->pending);
    gw_free(d->fmap);
    gw_free(d->devlevel);
    gw_free(d->detail);
}

void gw_engine_free(gw_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_devs; i++)
        dev_free(&e->devs[i]);
    dev_free(&e->sys);
    gw_free(e->sys_dev.id);
    gw_free(e->sys_dev.kind);
    gw_free(e->sys_dev.name);
    gw_free(e->devs);
    gw_free(e->hash);
    gw_free(e);
}

static int push_idx(uint32_t **arr, size_t *n, uint32_t v)
{
    uint32_t *na = gw_realloc(*arr, (*n + 1) * sizeof **arr);
    if (!na)
        return GW_ENOMEM;
    na[(*n)++] = v;
    *arr = na;
    return 0;
}

/* Stuck tolerance of a field: the smallest any stuck condition on it asks for; rate
 * anchor spacing: an eighth of the smallest rate window on it. */
static void set_tolerance(dev_rt *d, const int16_t *fmap, const gw_cond *k)
{
    if (k->rate && k->n_fields) {
        field_rt *f = &d->fields[fmap[k->fields[0]]];
        int64_t step = k->window_us / 8;
        if (!f->astep || step < f->astep)
            f->astep = step;
    }
    if (k->op == GW_OP_STUCK)
        for (int i = 0; i < k->n_fields; i++) {
            field_rt *f = &d->fields[fmap[k->fields[i]]];
            if (f->tolerance < 0 || k->tolerance < f->tolerance)
                f->tolerance = k->tolerance;
        }
    for (size_t i = 0; i < k->n_kids; i++)
        set_tolerance(d, fmap, &k->kids[i]);
}

static int dev_build(gw_engine *e, dev_rt *d, const gw_device *dev)
{
    d->dev = dev;
    d->sched_on = d->sched_off = -1;
    const cJSON *sched = cJSON_GetObjectItemCaseSensitive(dev->params, "schedule");
    if (sched) {
        d->sched_on = parse_hhmm(cJSON_GetObjectItemCaseSensitive(sched, "on"));
        d->sched_off = parse_hhmm(cJSON_GetObjectItemCaseSensitive(sched, "off"));
        if (d->sched_on < 0 || d->sched_off < 0) {
            gw_warn("rules", "device %s: params.schedule needs {\"on\": \"HH:MM\", \"off\": \"HH:MM\"}",
                    dev->id);
            d->sched_on = d->sched_off = -1;
        }
    }
    int rc = gw_rule_compile(e->cfg, dev, NULL, &d->inst, &d->n_inst);
    if (rc == GW_ENOMEM)
        return rc;
    if (d->n_inst == 0)
        return 0;
    d->alarms = gw_calloc(d->n_inst, sizeof *d->alarms);
    d->pending = gw_calloc(d->n_inst, 1);
    d->fmap = gw_calloc(d->n_inst, sizeof *d->fmap);
    if (!d->alarms || !d->pending || !d->fmap)
        return GW_ENOMEM;
    for (size_t ii = 0; ii < d->n_inst; ii++) {
        gw_rule_inst *ri = &d->inst[ii];
        for (int k = 0; k < ri->n_fields; k++) {
            field_rt *f = find_field(d, ri->fields[k]);
            if (!f) {
                field_rt *nf = gw_realloc(d->fields, (d->n_fields + 1) * sizeof *nf);
                if (!nf)
                    return GW_ENOMEM;
                d->fields = nf;
                f = &d->fields[d->n_fields++];
                memset(f, 0, sizeof *f);
                snprintf(f->name, sizeof f->name, "%s", ri->fields[k]);
                f->tolerance = -1;
                f->derived = strcmp(f->name, "should_be_on") == 0;
            }
            d->fmap[ii][k] = (int16_t)(f - d->fields);
        }
    }
    /* A derived should_be_on may fall back on the relay state: keep that field too. */
    if (find_field(d, "should_be_on") && !find_field(d, "relay_on")) {
        field_rt *nf = gw_realloc(d->fields, (d->n_fields + 1) * sizeof *nf);
        if (!nf)
            return GW_ENOMEM;
        d->fields = nf;
        memset(&nf[d->n_fields], 0, sizeof *nf);
        snprintf(nf[d->n_fields].name, sizeof nf->name, "relay_on");
        d->n_fields++;
    }
    for (size_t ii = 0; ii < d->n_inst; ii++) {
        gw_rule_inst *ri = &d->inst[ii];
        set_tolerance(d, d->fmap[ii], &ri->root);
        if (ri->device_level) {
            if (push_idx(&d->devlevel, &d->n_devlevel, (uint32_t)ii))
                return GW_ENOMEM;
            continue;
        }
        for (int k = 0; k < ri->n_fields; k++) {
            field_rt *f = &d->fields[d->fmap[ii][k]];
            if (push_idx(&f->trig, &f->n_trig, (uint32_t)ii))
                return GW_ENOMEM;
        }
    }
    for (size_t i = 0; i < d->n_fields; i++)
        if (d->fields[i].tolerance < 0)
            d->fields[i].tolerance = 0;
    return 0;
}

int gw_engine_new(const gw_config *cfg, const gw_engine_hooks *hooks, void *ctx, gw_engine **out)
{
    *out = NULL;
    if (!cfg || !hooks || !hooks->commit)
        return GW_EINVAL;
    gw_engine *e = gw_calloc(1, sizeof *e);
    if (!e)
        return GW_ENOMEM;
    e->cfg = cfg;
    e->hooks = *hooks;
    e->ctx = ctx;
    e->next_seq = 1;
    int rc = GW_ENOMEM;
    if (cfg->n_devices) {
        e->devs = gw_calloc(cfg->n_devices, sizeof *e->devs);
        size_t hs = 16;
        while (hs < cfg->n_devices * 2)
            hs *= 2;
        e->hash = gw_calloc(hs, sizeof *e->hash);
        e->hash_mask = hs - 1;
        if (!e->devs || !e->hash)
            goto fail;
    }
    /* Disabled devices keep their slot (device_idx stays an index into cfg->devices)
     * but get no rules. */
    for (size_t i = 0; i < cfg->n_devices; i++) {
        const gw_device *dev = &cfg->devices[i];
        dev_rt *d = &e->devs[e->n_devs++];
        d->dev = dev;
        d->sched_on = d->sched_off = -1;
        if (dev->enabled && (rc = dev_build(e, d, dev)) != 0)
            goto fail;
        size_t h = hash_str(dev->id) & e->hash_mask;
        while (e->hash[h])
            h = (h + 1) & e->hash_mask;
        e->hash[h] = (uint32_t)i + 1;
    }
    if ((rc = sys_build(e)) != 0)
        goto fail;
    *out = e;
    return 0;
fail:
    gw_engine_free(e);
    return rc == 0 ? GW_ENOMEM : rc;
}
