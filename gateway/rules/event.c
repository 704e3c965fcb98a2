/* Event JSON formatter (see event.h). cJSON does the escaping; key order follows
 * DESIGN.md §5 so a human reading the stream sees the same layout as the docs. */
#include "rules/event.h"

#include "alloc.h"
#include "error.h"
#include "timeutil.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static const char *const type_names[GW_EV__COUNT] = {
    "raised", "updated", "cleared", "acked", "shelved", "unshelved", "out_of_service", "in_service",
};

const char *gw_event_type_name(gw_event_type t)
{
    return (unsigned)t < GW_EV__COUNT ? type_names[t] : "updated";
}

void gw_event_make_id(char out[GW_EVENT_ID_LEN + 1], int64_t ts_us)
{
    uint8_t b[16];
    uint64_t ms = (uint64_t)(ts_us / 1000);
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    ssize_t got = getrandom(b + 6, 10, GRND_NONBLOCK);
    if (got != 10) {
        /* No entropy yet (very early boot): the time and a counter keep ids unique on
         * this gateway, which is all de-duplication upstream needs. */
        static _Thread_local uint64_t ctr;
        uint64_t x = ++ctr ^ (uint64_t)ts_us * 0x9e3779b97f4a7c15ULL;
        for (int i = 0; i < 8; i++)
            b[6 + i] = (uint8_t)(x >> (8 * i));
        b[14] = (uint8_t)ctr;
        b[15] = (uint8_t)(ctr >> 8);
    }
    b[6] = (uint8_t)(0x70 | (b[6] & 0x0f));
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

static int add_ts(cJSON *o, const char *key, int64_t ts_us, int off)
{
    char buf[40];
    if (gw_format_rfc3339(buf, sizeof buf, ts_us, off) < 0)
        return 0;
    return cJSON_AddStringToObject(o, key, buf) != NULL;
}

static int add_str_or_null(cJSON *o, const char *key, const char *v)
{
    return v ? cJSON_AddStringToObject(o, key, v) != NULL : cJSON_AddNullToObject(o, key) != NULL;
}

static int add_num(cJSON *o, const char *key, double v)
{
    return isfinite(v) ? cJSON_AddNumberToObject(o, key, v) != NULL : cJSON_AddNullToObject(o, key) != NULL;
}

static const char *scheme_name(gw_component_scheme s)
{
    return s == GW_SCHEME_GBT47678 ? "GB/T 47678" : "CJ/T 214";
}

/* The parts shared by the event and the retained state. */
static int add_common(cJSON *o, const gw_event_info *ev)
{
    const gw_config *cfg = ev->cfg;
    const gw_rule_inst *ri = ev->rule;
    const gw_alarm *a = ev->alarm;
    const gw_device *d = ev->dev;
    int off = cfg->gateway.utc_offset_min;
    /* The level the event speaks of: the reported one, or the lowest when none is. */
    int shown = ev->level > 0 ? ev->level : a->rep_level;
    int li = shown > 0 ? shown - 1 : 0;
    if (li >= ri->n_levels)
        li = ri->n_levels - 1;
    const gw_level *lv = &ri->levels[li];

    cJSON *al = cJSON_AddObjectToObject(o, "alarm");
    int ok = al && cJSON_AddStringToObject(al, "id", ri->alarm_id ? ri->alarm_id : "") &&
             cJSON_AddStringToObject(al, "state", gw_alarm_display_state(a)) &&
             cJSON_AddStringToObject(al, "severity",
                                     gw_rule_severity_name(shown ? lv->severity : GW_SEV_NONE)) &&
             cJSON_AddBoolToObject(al, "active", a->rep_level > 0);
    if (ok && a->active_since && (a->state != GW_ALARM_NORMAL || ev->type == GW_EV_CLEARED))
        ok = add_ts(al, "active_since", a->active_since, off);
    else if (ok)
        ok = cJSON_AddNullToObject(al, "active_since") != NULL;
    ok = ok && cJSON_AddNumberToObject(al, "count", a->count);
    if (ok && a->sup == GW_SUP_SHELVED)
        ok = add_ts(al, "shelved_until", a->shelved_until, off);

    cJSON *ru = ok ? cJSON_AddObjectToObject(o, "rule") : NULL;
    ok = ru && cJSON_AddStringToObject(ru, "id", ri->rule_id) &&
         cJSON_AddStringToObject(ru, "condition", lv->condition ? lv->condition : "");
    if (ok && gw_rule_primary(ri))
        ok = add_num(ru, "raise", lv->raise) && add_num(ru, "clear", lv->clear);
    if (ok && ri->set_name)
        ok = cJSON_AddStringToObject(ru, "set", ri->set_name) != NULL;

    cJSON *pr = ok ? cJSON_AddObjectToObject(o, "problem") : NULL;
    ok = pr && cJSON_AddStringToObject(pr, "class", gw_rule_problem_class_name(ri->pclass)) &&
         cJSON_AddStringToObject(pr, "code", ri->pcode ? ri->pcode : "") &&
         cJSON_AddStringToObject(pr, "name", ri->pname ? ri->pname : "");
    const cJSON *ut = ri->pcode ? cJSON_GetObjectItemCaseSensitive(cfg->upstream.problem_types, ri->pcode) : NULL;
    if (ok && cJSON_IsString(ut))
        ok = cJSON_AddStringToObject(pr, "upstream_type", ut->valuestring) != NULL;

    cJSON *dv = ok ? cJSON_AddObjectToObject(o, "device") : NULL;
    const char *profile = d->profile ? d->profile : d->decoder;
    ok = dv && cJSON_AddStringToObject(dv, "id", d->id) &&
         cJSON_AddStringToObject(dv, "kind", d->kind ? d->kind : "") && add_str_or_null(dv, "profile", profile);
    if (ok && d->name)
        ok = cJSON_AddStringToObject(dv, "name", d->name) != NULL;

    const gw_component *c = &d->component;
    cJSON *co = ok ? cJSON_AddObjectToObject(o, "component") : NULL;
    ok = co && add_str_or_null(co, "code", c->code) &&
         cJSON_AddStringToObject(co, "scheme", scheme_name(cfg->gateway.scheme)) &&
         add_str_or_null(co, "name", c->name) && add_str_or_null(co, "grid", c->grid) &&
         add_str_or_null(co, "owner", c->owner) && add_str_or_null(co, "manager", c->manager) &&
         add_str_or_null(co, "maintainer", c->maintainer);
    if (ok && (c->location.has || c->location.address)) {
        cJSON *lo = cJSON_AddObjectToObject(co, "location");
        ok = lo != NULL;
        if (ok && c->location.has)
            ok = cJSON_AddNumberToObject(lo, "lon", c->location.lon) &&
                 cJSON_AddNumberToObject(lo, "lat", c->location.lat);
        if (ok && c->location.address)
            ok = cJSON_AddStringToObject(lo, "address", c->location.address) != NULL;
    } else if (ok) {
        ok = cJSON_AddNullToObject(co, "location") != NULL;
    }
    return ok;
}

static cJSON *head(const gw_event_info *ev)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    int off = ev->cfg->gateway.utc_offset_min;
    int ok = cJSON_AddStringToObject(o, "schema", "citygate.event/1") &&
             cJSON_AddStringToObject(o, "event_id", ev->event_id) &&
             cJSON_AddNumberToObject(o, "seq", (double)ev->seq) &&
             cJSON_AddStringToObject(o, "type", gw_event_type_name(ev->type)) &&
             add_ts(o, "ts", ev->ts_us, off) &&
             cJSON_AddStringToObject(o, "gateway", ev->cfg->gateway.id ? ev->cfg->gateway.id : "") &&
             cJSON_AddStringToObject(o, "source", "system-monitoring");
    if (ok && ev->reason)
        ok = cJSON_AddStringToObject(o, "reason", ev->reason) != NULL;
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static char *finish(cJSON *o)
{
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt)
        return NULL;
    char *out = gw_strdup(txt);
    cJSON_free(txt);
    return out;
}

int gw_event_format(const gw_event_info *ev, char **out)
{
    *out = NULL;
    if (!ev || !ev->cfg || !ev->dev || !ev->rule || !ev->alarm || !ev->rule->n_levels)
        return GW_EINVAL;
    cJSON *o = head(ev);
    if (!o)
        return GW_ENOMEM;
    int off = ev->cfg->gateway.utc_offset_min;
    int ok = add_common(o, ev);
    const gw_evidence *e = ev->evidence;
    cJSON *evd = ok ? cJSON_AddObjectToObject(o, "evidence") : NULL;
    ok = evd != NULL;
    if (ok && e) {
        ok = add_str_or_null(evd, "field", e->field);
        if (ok && e->text)
            ok = cJSON_AddStringToObject(evd, "value", e->text) != NULL;
        else if (ok)
            ok = e->has_value ? add_num(evd, "value", e->value) : cJSON_AddNullToObject(evd, "value") != NULL;
        ok = ok && cJSON_AddStringToObject(evd, "unit", e->unit ? e->unit : "") &&
             cJSON_AddStringToObject(evd, "quality", gw_quality_name(e->quality));
        cJSON *arr = ok ? cJSON_AddArrayToObject(evd, "samples") : NULL;
        ok = arr != NULL;
        for (int i = 0; ok && i < e->n && i < GW_EVIDENCE_MAX; i++) {
            char ts[40];
            cJSON *pair = cJSON_CreateArray();
            ok = pair && gw_format_rfc3339(ts, sizeof ts, e->ts[i], off) > 0;
            if (pair)
                cJSON_AddItemToArray(arr, pair);
            ok = ok && cJSON_AddItemToArray(pair, cJSON_CreateString(ts)) &&
                 cJSON_AddItemToArray(pair, isfinite(e->v[i]) ? cJSON_CreateNumber(e->v[i]) : cJSON_CreateNull());
        }
    } else if (ok) {
        ok = cJSON_AddNullToObject(evd, "field") && cJSON_AddNullToObject(evd, "value") &&
             cJSON_AddStringToObject(evd, "unit", "") && cJSON_AddStringToObject(evd, "quality", "good") &&
             cJSON_AddArrayToObject(evd, "samples");
    }
    if (ok && ev->cmd) {
        cJSON *cm = cJSON_AddObjectToObject(o, "command");
        ok = cm && add_str_or_null(cm, "request_id", ev->cmd->request_id) &&
             add_str_or_null(cm, "user", ev->cmd->user) && add_str_or_null(cm, "comment", ev->cmd->comment);
    }
    if (!ok) {
        cJSON_Delete(o);
        return GW_ENOMEM;
    }
    *out = finish(o);
    return *out ? 0 : GW_ENOMEM;
}

int gw_event_format_retained(const gw_event_info *ev, char **out)
{
    *out = NULL;
    if (!ev || !ev->cfg || !ev->dev || !ev->rule || !ev->alarm || !ev->rule->n_levels)
        return GW_EINVAL;
    /* DESIGN.md §5: empty once cleared, acknowledged or not (the cleared event told
     * upstream; an unacknowledged clear is the operator's business, not a current
     * fault). A suppression is still shown: it is state an operator set. */
    if (ev->alarm->rep_level == 0 && ev->alarm->sup == GW_SUP_NONE)
        return 0;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ENOMEM;
    int ok = cJSON_AddStringToObject(o, "schema", "citygate.alarm/1") &&
             cJSON_AddStringToObject(o, "gateway", ev->cfg->gateway.id ? ev->cfg->gateway.id : "") &&
             cJSON_AddNumberToObject(o, "seq", (double)ev->seq) &&
             add_ts(o, "ts", ev->ts_us, ev->cfg->gateway.utc_offset_min) &&
             cJSON_AddStringToObject(o, "last_event", gw_event_type_name(ev->type)) &&
             add_common(o, ev);
    if (ok && ev->evidence && (ev->evidence->has_value || ev->evidence->text)) {
        if (ev->evidence->text)
            ok = cJSON_AddStringToObject(o, "value", ev->evidence->text) != NULL;
        else
            ok = add_num(o, "value", ev->evidence->value);
    }
    if (!ok) {
        cJSON_Delete(o);
        return GW_ENOMEM;
    }
    *out = finish(o);
    return *out ? 0 : GW_ENOMEM;
}
