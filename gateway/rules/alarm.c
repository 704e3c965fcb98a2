/* The alarm state machine (see alarm.h). Deliberately free of I/O and clocks: every
 * function takes the time, so tests drive it with any timeline. */
#include "rules/alarm.h"

#include "alloc.h"
#include "error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <string.h>

static const char *const state_names[] = {"normal", "active_unacked", "active_acked",
                                          "cleared_unacked"};

const char *gw_alarm_state_name(gw_alarm_state s)
{
    return (unsigned)s < 4 ? state_names[s] : "normal";
}

const char *gw_alarm_display_state(const gw_alarm *a)
{
    if (a->sup == GW_SUP_SHELVED)
        return "shelved";
    if (a->sup == GW_SUP_OUT_OF_SERVICE)
        return "out_of_service";
    return gw_alarm_state_name(a->state);
}

static int popcount_window(uint32_t hist, int n)
{
    uint32_t mask = n >= 32 ? 0xffffffffu : ((1u << n) - 1);
    return __builtin_popcount(hist & mask);
}

int gw_alarm_debounce(gw_alarm *a, const gw_rule_inst *ri, uint32_t raw_mask, int64_t t, int sample)
{
    int old = a->cond_level, top = 0;
    int64_t since = 0;
    for (int i = 0; i < ri->n_levels; i++) {
        const gw_level *lv = &ri->levels[i];
        gw_alarm_level *L = &a->lv[i];
        uint8_t raw = (raw_mask >> i) & 1u;
        if (raw != L->raw) {
            if (raw)
                L->true_since = t;
            else
                L->false_since = t;
            L->raw = raw;
        }
        if (lv->n) {
            if (sample) {
                L->hist = (L->hist << 1) | raw;
                if (L->hist_n < lv->m)
                    L->hist_n++;
                int win = L->hist_n, ones = popcount_window(L->hist, win);
                /* Symmetric debounce: N true of the last M raise, N false of the last M clear. */
                if ((!L->on && ones >= lv->n) || (L->on && win - ones >= lv->n)) {
                    /* Count afresh after a transition: the samples that raised the
                     * alarm must not also count towards clearing it (hysteresis). */
                    L->on = !L->on;
                    L->hist = 0;
                    L->hist_n = 0;
                }
            }
        } else if (!L->on && raw && t - L->true_since >= lv->on_delay_us) {
            L->on = 1;
        } else if (L->on && !raw && t - L->false_since >= lv->off_delay_us) {
            L->on = 0;
        }
        if (L->on) {
            top = i + 1;
            /* A confirmed higher level confirms the lower ones whose condition holds:
             * falling back from critical to major is an update, not a clear and a new
             * on-delay. */
            for (int k = 0; k < i; k++)
                if (a->lv[k].raw && !a->lv[k].on && !ri->levels[k].n)
                    a->lv[k].on = 1;
            if (!since || (L->raw && L->true_since < since))
                since = L->raw ? L->true_since : t;
        }
    }
    a->cond_level = top;
    if (top && !old)
        a->cond_since = since ? since : t;
    return top != old;
}

int gw_alarm_waiting(const gw_alarm *a, const gw_rule_inst *ri)
{
    for (int i = 0; i < ri->n_levels; i++)
        if (!ri->levels[i].n && a->lv[i].raw != a->lv[i].on)
            return 1;
    return 0;
}

/* Floating-point slack: a step of 0.1 from 0.2 to 0.3 is a step, though 0.3 - 0.2 is
 * 0.09999999999999998. */
#define STEP_SLACK 1e-9

int gw_alarm_value_due(const gw_alarm *a, const gw_rule_inst *ri, double x)
{
    if (a->sup != GW_SUP_NONE || a->rep_level <= 0 || a->rep_level > ri->n_levels ||
        a->cond_level != a->rep_level || !a->esc_has || !isfinite(x))
        return 0;
    double step = ri->levels[a->rep_level - 1].escalate_step;
    if (!(step > 0))
        return 0;
    /* A higher level on its way (delay or N-of-M running): its escalation will carry
     * the value; a "value" update just before it would be noise. */
    for (int i = a->rep_level; i < ri->n_levels; i++)
        if (a->lv[i].raw && !a->lv[i].on)
            return 0;
    double worse = gw_rule_excursion(ri, x) - gw_rule_excursion(ri, a->esc_ref);
    return worse >= step * (1 - STEP_SLACK);
}

/* A raised / updated event reports x: the reference for the next value escalation. */
static void take_ref(gw_alarm *next, double x)
{
    next->esc_has = isfinite(x) ? 1 : 0;
    next->esc_ref = isfinite(x) ? x : 0;
}

int gw_alarm_next(const gw_alarm *a, const gw_rule_inst *ri, int64_t now, double x,
                  gw_alarm *next, gw_event_type *type, const char **reason)
{
    *next = *a;
    if (a->sup == GW_SUP_SHELVED && now >= a->shelved_until) {
        next->sup = GW_SUP_NONE;
        next->shelved_until = 0;
        next->last_change = now;
        *type = GW_EV_UNSHELVED;
        *reason = "expired";
        return 1;
    }
    if (a->sup != GW_SUP_NONE)
        return 0;
    if (a->cond_level != a->rep_level) {
        next->rep_level = a->cond_level;
        next->last_notify = next->last_change = now;
        if (a->rep_level == 0) {
            next->count = a->state == GW_ALARM_NORMAL ? 1 : a->count + 1;
            next->active_since = a->cond_since ? a->cond_since : now;
            next->state = GW_ALARM_ACTIVE_UNACKED;
            take_ref(next, x);
            *type = GW_EV_RAISED;
            *reason = "condition";
        } else if (a->cond_level == 0) {
            next->state = a->state == GW_ALARM_ACTIVE_ACKED ? GW_ALARM_NORMAL : GW_ALARM_CLEARED_UNACKED;
            next->esc_has = 0;
            next->esc_ref = 0;
            *type = GW_EV_CLEARED;
            *reason = "condition";
        } else {
            int up = a->cond_level > a->rep_level;
            /* A worse severity needs a fresh acknowledgement; a milder one does not. */
            if (up)
                next->state = GW_ALARM_ACTIVE_UNACKED;
            take_ref(next, x);
            *type = GW_EV_UPDATED;
            *reason = up ? "escalated" : "deescalated";
        }
        return 1;
    }
    if (gw_alarm_value_due(a, ri, x)) {
        /* Same severity: news for the case, not a new alarm. An acknowledgement
         * stands (ISA-18.2 asks for a fresh one on a worse priority, not a worse value). */
        next->last_notify = next->last_change = now;
        take_ref(next, x);
        *type = GW_EV_UPDATED;
        *reason = "value";
        return 1;
    }
    /* ISA-18.2 re-announces what nobody has acknowledged; an acknowledged alarm is in
     * someone's hands, repeating it is noise. */
    if (a->rep_level > 0 && a->state == GW_ALARM_ACTIVE_UNACKED && ri->renotify_us > 0 &&
        now - a->last_notify >= ri->renotify_us) {
        next->last_notify = next->last_change = now;
        if (isfinite(x))
            take_ref(next, x);
        *type = GW_EV_UPDATED;
        *reason = "renotify";
        return 1;
    }
    return 0;
}

int gw_alarm_command(const gw_alarm *a, const char *verb, int64_t until, int64_t now,
                     gw_alarm *next, gw_event_type *type, const char **why)
{
    *next = *a;
    next->last_change = now;
    *why = NULL;
    if (strcmp(verb, "ack") == 0) {
        if (a->state == GW_ALARM_ACTIVE_UNACKED) {
            next->state = GW_ALARM_ACTIVE_ACKED;
        } else if (a->state == GW_ALARM_CLEARED_UNACKED) {
            next->state = GW_ALARM_NORMAL;
        } else {
            *why = "nothing to acknowledge";
            return GW_EINVAL;
        }
        *type = GW_EV_ACKED;
        return 0;
    }
    if (strcmp(verb, "shelve") == 0) {
        if (a->sup == GW_SUP_OUT_OF_SERVICE) {
            *why = "the alarm is out of service";
            return GW_EINVAL;
        }
        if (until <= now) {
            *why = "\"until\" (or \"duration_s\") must lie in the future";
            return GW_EINVAL;
        }
        next->sup = GW_SUP_SHELVED;
        next->shelved_until = until;
        *type = GW_EV_SHELVED;
        return 0;
    }
    if (strcmp(verb, "unshelve") == 0) {
        if (a->sup != GW_SUP_SHELVED) {
            *why = "the alarm is not shelved";
            return GW_EINVAL;
        }
        next->sup = GW_SUP_NONE;
        next->shelved_until = 0;
        *type = GW_EV_UNSHELVED;
        return 0;
    }
    if (strcmp(verb, "out_of_service") == 0) {
        if (a->sup == GW_SUP_OUT_OF_SERVICE) {
            *why = "the alarm is already out of service";
            return GW_EINVAL;
        }
        next->sup = GW_SUP_OUT_OF_SERVICE;
        next->shelved_until = 0;
        *type = GW_EV_OUT_OF_SERVICE;
        return 0;
    }
    if (strcmp(verb, "in_service") == 0) {
        if (a->sup != GW_SUP_OUT_OF_SERVICE) {
            *why = "the alarm is not out of service";
            return GW_EINVAL;
        }
        next->sup = GW_SUP_NONE;
        *type = GW_EV_IN_SERVICE;
        return 0;
    }
    *why = "unknown command (ack, shelve, unshelve, out_of_service, in_service)";
    return GW_EINVAL;
}

int gw_alarm_is_normal(const gw_alarm *a)
{
    return a->state == GW_ALARM_NORMAL && a->sup == GW_SUP_NONE && a->rep_level == 0;
}

/* Persistent form. Times are epoch µs as numbers (exact in a double up to 2^53 µs,
 * i.e. year 2255). Debounce timers are not kept: a delay restarts after a restart. */
int gw_alarm_to_json(const gw_alarm *a, char **out)
{
    static const char *const sup_names[] = {"none", "shelved", "out_of_service"};
    *out = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ENOMEM;
    int on = 0;
    for (int i = 0; i < GW_LEVELS_MAX; i++)
        on |= a->lv[i].on ? 1 << i : 0;
    int ok = cJSON_AddStringToObject(o, "schema", "citygate.alarmstate/1") &&
             cJSON_AddStringToObject(o, "state", gw_alarm_state_name(a->state)) &&
             cJSON_AddStringToObject(o, "sup", sup_names[a->sup]) &&
             cJSON_AddNumberToObject(o, "shelved_until", (double)a->shelved_until) &&
             cJSON_AddNumberToObject(o, "rep_level", a->rep_level) &&
             cJSON_AddNumberToObject(o, "levels_on", on) &&
             cJSON_AddNumberToObject(o, "cond_since", (double)a->cond_since) &&
             cJSON_AddNumberToObject(o, "active_since", (double)a->active_since) &&
             cJSON_AddNumberToObject(o, "count", a->count) &&
             cJSON_AddNumberToObject(o, "last_notify", (double)a->last_notify) &&
             cJSON_AddNumberToObject(o, "last_change", (double)a->last_change) &&
             cJSON_AddNumberToObject(o, "value", isfinite(a->value) ? a->value : 0);
    if (ok && a->esc_has && isfinite(a->esc_ref))
        ok = cJSON_AddNumberToObject(o, "esc_ref", a->esc_ref) != NULL;
    char *txt = ok ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!txt)
        return GW_ENOMEM;
    *out = gw_strdup(txt);
    cJSON_free(txt);
    return *out ? 0 : GW_ENOMEM;
}

static int get_num(const cJSON *o, const char *k, double lo, double hi, double *v)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo) || !(it->valuedouble <= hi))
        return -1;
    *v = it->valuedouble;
    return 0;
}

int gw_alarm_from_json(gw_alarm *a, const gw_rule_inst *ri, const char *json)
{
    cJSON *o = cJSON_Parse(json);
    if (!o)
        return GW_EINVAL;
    int rc = GW_EINVAL;
    gw_alarm n;
    memset(&n, 0, sizeof n);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "state");
    const cJSON *sup = cJSON_GetObjectItemCaseSensitive(o, "sup");
    if (!cJSON_IsString(st) || !cJSON_IsString(sup))
        goto done;
    int s = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(st->valuestring, state_names[i]) == 0)
            s = i;
    if (s < 0)
        goto done;
    n.state = (gw_alarm_state)s;
    if (strcmp(sup->valuestring, "none") == 0)
        n.sup = GW_SUP_NONE;
    else if (strcmp(sup->valuestring, "shelved") == 0)
        n.sup = GW_SUP_SHELVED;
    else if (strcmp(sup->valuestring, "out_of_service") == 0)
        n.sup = GW_SUP_OUT_OF_SERVICE;
    else
        goto done;
    double v[9];
    const double big = 9e15;
    if (get_num(o, "shelved_until", 0, big, &v[0]) || get_num(o, "rep_level", 0, GW_LEVELS_MAX, &v[1]) ||
        get_num(o, "levels_on", 0, 15, &v[2]) || get_num(o, "cond_since", -big, big, &v[3]) ||
        get_num(o, "active_since", -big, big, &v[4]) || get_num(o, "count", 0, 4e9, &v[5]) ||
        get_num(o, "last_notify", -big, big, &v[6]) || get_num(o, "last_change", -big, big, &v[7]) ||
        get_num(o, "value", -1e308, 1e308, &v[8]))
        goto done;
    n.shelved_until = (int64_t)v[0];
    /* The rule may have lost levels since the state was written: clamp to what it has. */
    n.rep_level = (int)v[1] > ri->n_levels ? ri->n_levels : (int)v[1];
    int on = (int)v[2];
    for (int i = 0; i < ri->n_levels; i++) {
        n.lv[i].on = n.lv[i].raw = (on >> i) & 1;
        if (n.lv[i].on)
            n.cond_level = i + 1;
    }
    n.cond_since = (int64_t)v[3];
    n.active_since = (int64_t)v[4];
    n.count = (uint32_t)v[5];
    n.last_notify = (int64_t)v[6];
    n.last_change = (int64_t)v[7];
    n.value = v[8];
    /* Optional: states written before value escalation have none (the engine then
     * takes the next good value as the reference, without an event). */
    double ref;
    if (cJSON_GetObjectItemCaseSensitive(o, "esc_ref")) {
        if (get_num(o, "esc_ref", -1e308, 1e308, &ref))
            goto done;
        n.esc_ref = ref;
        n.esc_has = 1;
    }
    *a = n;
    rc = 0;
done:
    cJSON_Delete(o);
    return rc;
}
