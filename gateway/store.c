#include "store.h"

#include "alloc.h"
#include "error.h"
#include "timeutil.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#define EVENTS_KEPT 200
#define HISTORY_MIN_POINTS 16
#define HISTORY_MAX_POINTS 2048

typedef struct hist_entry { int64_t ts_us; double v; } hist_entry;

typedef struct point {
    char field[GW_FIELD_MAX];
    char unit[GW_UNIT_MAX];
    gw_sample last;
    hist_entry *ring;       /* grows by doubling up to cap */
    size_t ring_alloc, cap, head, count;
} point;

typedef struct device_state {
    point *points;
    size_t n_points, alloc_points;
    gw_health health;
    int64_t last_good_us, last_us;
    uint64_t samples, bad_samples;
    int last_exception;     /* Modbus only */
    char last_error[128];   /* Modbus only */
} device_state;

typedef struct alarm_entry { char *id; char *json; } alarm_entry;

struct gw_store {
    pthread_rwlock_t lock;
    const gw_config *cfg;
    device_state *dev;        /* cfg->n_devices */
    alarm_entry *alarms;
    size_t n_alarms, alloc_alarms;
    char *events[EVENTS_KEPT];
    size_t ev_head, ev_count;
};

static const char *const health_names[GW_HEALTH__COUNT] = {
    "unknown", "online", "degraded", "offline", "probing",
};

const char *gw_health_name(gw_health h)
{
    return (unsigned)h < GW_HEALTH__COUNT ? health_names[h] : "unknown";
}

int gw_store_new(const gw_config *cfg, gw_store **out)
{
    gw_store *st = gw_calloc(1, sizeof *st);
    if (!st)
        return GW_ENOMEM;
    st->dev = gw_calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof *st->dev);
    if (!st->dev) {
        gw_free(st);
        return GW_ENOMEM;
    }
    st->cfg = cfg;
    pthread_rwlock_init(&st->lock, NULL);
    *out = st;
    return 0;
}

void gw_store_free(gw_store *st)
{
    if (!st)
        return;
    for (size_t d = 0; d < st->cfg->n_devices; d++) {
        for (size_t i = 0; i < st->dev[d].n_points; i++)
            gw_free(st->dev[d].points[i].ring);
        gw_free(st->dev[d].points);
    }
    for (size_t i = 0; i < st->n_alarms; i++) {
        gw_free(st->alarms[i].id);
        gw_free(st->alarms[i].json);
    }
    for (size_t i = 0; i < EVENTS_KEPT; i++)
        gw_free(st->events[i]);
    gw_free(st->alarms);
    gw_free(st->dev);
    pthread_rwlock_destroy(&st->lock);
    gw_free(st);
}

/* The sample's device index if it matches its name, else a lookup by name. */
static long device_index(const gw_store *st, const gw_sample *s)
{
    const gw_config *cfg = st->cfg;
    if (s->device_idx < cfg->n_devices && strcmp(cfg->devices[s->device_idx].id, s->device) == 0)
        return (long)s->device_idx;
    const gw_device *d = gw_config_device(cfg, s->device);
    return d ? (long)(d - cfg->devices) : -1;
}

static size_t history_cap(const gw_store *st, size_t d)
{
    int interval_ms = st->cfg->devices[d].interval_ms > 0 ? st->cfg->devices[d].interval_ms : 10000;
    int minutes = st->cfg->http.history_minutes > 0 ? st->cfg->http.history_minutes : 180;
    size_t cap = (size_t)minutes * 60000u / (size_t)interval_ms;
    if (cap < HISTORY_MIN_POINTS)
        cap = HISTORY_MIN_POINTS;
    if (cap > HISTORY_MAX_POINTS)
        cap = HISTORY_MAX_POINTS;
    return cap;
}

static point *find_point(device_state *ds, const char *field)
{
    for (size_t i = 0; i < ds->n_points; i++)
        if (strcmp(ds->points[i].field, field) == 0)
            return &ds->points[i];
    return NULL;
}

static point *add_point(gw_store *st, size_t d, const gw_sample *s)
{
    device_state *ds = &st->dev[d];
    if (ds->n_points == ds->alloc_points) {
        size_t n = ds->alloc_points ? ds->alloc_points * 2 : 8;
        point *p = gw_realloc(ds->points, n * sizeof *p);
        if (!p)
            return NULL;
        ds->points = p;
        ds->alloc_points = n;
    }
    point *p = &ds->points[ds->n_points++];
    memset(p, 0, sizeof *p);
    gw_strlcpy(p->field, s->field, sizeof p->field);
    p->cap = history_cap(st, d);
    return p;
}

static void ring_push(point *p, int64_t ts_us, double v)
{
    if (p->count == p->ring_alloc && p->ring_alloc < p->cap) {
        /* Grow only while not yet wrapped: head is 0 until the ring is full. */
        size_t n = p->ring_alloc ? p->ring_alloc * 2 : 16;
        if (n > p->cap)
            n = p->cap;
        hist_entry *r = gw_realloc(p->ring, n * sizeof *r);
        if (!r)
            return;
        p->ring = r;
        p->ring_alloc = n;
    }
    if (p->ring_alloc == 0)
        return;
    size_t at = (p->head + p->count) % p->ring_alloc;
    p->ring[at] = (hist_entry){ts_us, v};
    if (p->count < p->ring_alloc)
        p->count++;
    else
        p->head = (p->head + 1) % p->ring_alloc;
}

/* One sample, under the write lock. */
static void put_locked(gw_store *st, const gw_sample *s)
{
    long d = device_index(st, s);
    if (d < 0)
        return;
    device_state *ds = &st->dev[d];
    point *p = find_point(ds, s->field);
    if (!p && !(p = add_point(st, (size_t)d, s)))
        return;
    p->last = *s;
    if (s->unit[0])
        gw_strlcpy(p->unit, s->unit, sizeof p->unit);
    ds->samples++;
    ds->last_us = s->ts_us;
    if (s->quality == GW_Q_GOOD) {
        ds->last_good_us = s->ts_us;
        if (s->type != GW_V_TEXT && isfinite(s->value))
            ring_push(p, s->ts_us, s->value);
    } else {
        ds->bad_samples++;
    }
}

void gw_store_put(gw_store *st, const gw_sample *s) { gw_store_put_many(st, s, 1); }

void gw_store_put_many(gw_store *st, const gw_sample *s, size_t n)
{
    pthread_rwlock_wrlock(&st->lock);
    for (size_t i = 0; i < n; i++)
        put_locked(st, &s[i]);
    pthread_rwlock_unlock(&st->lock);
}

int64_t gw_store_last_good_us(gw_store *st, size_t device_idx)
{
    pthread_rwlock_rdlock(&st->lock);
    int64_t t = device_idx < st->cfg->n_devices ? st->dev[device_idx].last_good_us : 0;
    pthread_rwlock_unlock(&st->lock);
    return t;
}

void gw_store_set_health(gw_store *st, size_t device_idx, gw_health h)
{
    pthread_rwlock_wrlock(&st->lock);
    if (device_idx < st->cfg->n_devices)
        st->dev[device_idx].health = h;
    pthread_rwlock_unlock(&st->lock);
}

void gw_store_set_modbus_detail(gw_store *st, size_t device_idx, int last_exception,
                                const char *last_error)
{
    pthread_rwlock_wrlock(&st->lock);
    if (device_idx < st->cfg->n_devices) {
        device_state *ds = &st->dev[device_idx];
        ds->last_exception = last_exception;
        snprintf(ds->last_error, sizeof ds->last_error, "%s", last_error ? last_error : "");
    }
    pthread_rwlock_unlock(&st->lock);
}

void gw_store_alarm(gw_store *st, const char *alarm_id, const char *state_json)
{
    pthread_rwlock_wrlock(&st->lock);
    size_t i = 0;
    while (i < st->n_alarms && strcmp(st->alarms[i].id, alarm_id) != 0)
        i++;
    if (!state_json) {
        if (i < st->n_alarms) {
            gw_free(st->alarms[i].id);
            gw_free(st->alarms[i].json);
            st->alarms[i] = st->alarms[--st->n_alarms];
        }
        goto out;
    }
    char *copy = gw_strdup(state_json);
    if (!copy)
        goto out;
    if (i < st->n_alarms) {
        gw_free(st->alarms[i].json);
        st->alarms[i].json = copy;
        goto out;
    }
    if (st->n_alarms == st->alloc_alarms) {
        size_t n = st->alloc_alarms ? st->alloc_alarms * 2 : 16;
        alarm_entry *a = gw_realloc(st->alarms, n * sizeof *a);
        if (!a) {
            gw_free(copy);
            goto out;
        }
        st->alarms = a;
        st->alloc_alarms = n;
    }
    st->alarms[st->n_alarms].id = gw_strdup(alarm_id);
    if (!st->alarms[st->n_alarms].id) {
        gw_free(copy);
        goto out;
    }
    st->alarms[st->n_alarms++].json = copy;
out:
    pthread_rwlock_unlock(&st->lock);
}

void gw_store_event(gw_store *st, const char *event_json)
{
    char *copy = gw_strdup(event_json);
    if (!copy)
        return;
    pthread_rwlock_wrlock(&st->lock);
    size_t at = (st->ev_head + st->ev_count) % EVENTS_KEPT;
    if (st->ev_count == EVENTS_KEPT) {
        gw_free(st->events[st->ev_head]);
        at = st->ev_head;
        st->ev_head = (st->ev_head + 1) % EVENTS_KEPT;
    } else {
        st->ev_count++;
    }
    st->events[at] = copy;
    pthread_rwlock_unlock(&st->lock);
}

void gw_store_counts_get(gw_store *st, gw_store_counts *out)
{
    memset(out, 0, sizeof *out);
    pthread_rwlock_rdlock(&st->lock);
    out->devices = st->cfg->n_devices;
    for (size_t d = 0; d < st->cfg->n_devices; d++) {
        switch (st->dev[d].health) {
        case GW_HEALTH_ONLINE: out->online++; break;
        case GW_HEALTH_DEGRADED: out->degraded++; break;
        case GW_HEALTH_OFFLINE: case GW_HEALTH_PROBING: out->offline++; break;
        default: out->unknown++; break;
        }
        out->points += st->dev[d].n_points;
    }
    out->alarms = st->n_alarms;
    pthread_rwlock_unlock(&st->lock);
}

static char *print_and_free(cJSON *root)
{
    if (!root)
        return NULL;
    char *txt = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!txt)
        return NULL;
    /* cJSON allocates with malloc; hand out a gw_malloc copy (one allocator seam). */
    char *out = gw_strdup(txt);
    cJSON_free(txt);
    return out;
}

static void add_number_or_null(cJSON *obj, const char *key, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(obj, key, v);
    else
        cJSON_AddNullToObject(obj, key);
}

char *gw_store_devices_json(gw_store *st, int64_t now_us)
{
    cJSON *root = cJSON_CreateArray();
    if (!root)
        return NULL;
    pthread_rwlock_rdlock(&st->lock);
    for (size_t d = 0; d < st->cfg->n_devices; d++) {
        const gw_device *dev = &st->cfg->devices[d];
        const device_state *ds = &st->dev[d];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddItemToArray(root, o);
        cJSON_AddStringToObject(o, "id", dev->id);
        cJSON_AddStringToObject(o, "kind", dev->kind);
        if (dev->name)
            cJSON_AddStringToObject(o, "name", dev->name);
        cJSON_AddStringToObject(o, "source", dev->source == GW_SRC_MODBUS ? "modbus" : "mqtt");
        cJSON_AddStringToObject(o, "health", gw_health_name(ds->health));
        if (dev->component.code)
            cJSON_AddStringToObject(o, "component", dev->component.code);
        if (dev->component.grid)
            cJSON_AddStringToObject(o, "grid", dev->component.grid);
        if (ds->last_good_us)
            cJSON_AddNumberToObject(o, "age_s", (double)(now_us - ds->last_good_us) / 1e6);
        else
            cJSON_AddNullToObject(o, "age_s");
        cJSON_AddNumberToObject(o, "samples", (double)ds->samples);
        cJSON_AddNumberToObject(o, "bad_samples", (double)ds->bad_samples);
        if (dev->source == GW_SRC_MODBUS) {
            cJSON_AddNumberToObject(o, "last_exception", ds->last_exception);
            cJSON_AddStringToObject(o, "last_error", ds->last_error);
        }
        cJSON *vals = cJSON_AddObjectToObject(o, "values");
        for (size_t i = 0; vals && i < ds->n_points; i++) {
            const point *p = &ds->points[i];
            cJSON *v = cJSON_AddObjectToObject(vals, p->field);
            if (!v)
                continue;
            if (p->last.type == GW_V_TEXT)
                cJSON_AddStringToObject(v, "value", p->last.text);
            else if (p->last.type == GW_V_BOOL)
                cJSON_AddBoolToObject(v, "value", p->last.value != 0);
            else
                add_number_or_null(v, "value", p->last.value);
            cJSON_AddStringToObject(v, "unit", p->unit);
            cJSON_AddStringToObject(v, "quality", gw_quality_name(p->last.quality));
            cJSON_AddNumberToObject(v, "age_s", (double)(now_us - p->last.ts_us) / 1e6);
        }
    }
    pthread_rwlock_unlock(&st->lock);
    return print_and_free(root);
}

char *gw_store_alarms_json(gw_store *st)
{
    cJSON *root = cJSON_CreateArray();
    if (!root)
        return NULL;
    pthread_rwlock_rdlock(&st->lock);
    for (size_t i = 0; i < st->n_alarms; i++) {
        cJSON *a = cJSON_Parse(st->alarms[i].json);
        if (a)
            cJSON_AddItemToArray(root, a);
    }
    pthread_rwlock_unlock(&st->lock);
    return print_and_free(root);
}

char *gw_store_events_json(gw_store *st, size_t limit)
{
    cJSON *root = cJSON_CreateArray();
    if (!root)
        return NULL;
    pthread_rwlock_rdlock(&st->lock);
    size_t n = st->ev_count < limit ? st->ev_count : limit;
    /* Newest first. */
    for (size_t k = 0; k < n; k++) {
        size_t at = (st->ev_head + st->ev_count - 1 - k) % EVENTS_KEPT;
        cJSON *e = cJSON_Parse(st->events[at]);
        if (e)
            cJSON_AddItemToArray(root, e);
    }
    pthread_rwlock_unlock(&st->lock);
    return print_and_free(root);
}

char *gw_store_history_json(gw_store *st, const char *device, const char *field, int minutes,
                            int64_t now_us, int *not_found)
{
    *not_found = 0;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    pthread_rwlock_rdlock(&st->lock);
    const gw_device *dev = gw_config_device(st->cfg, device);
    const point *p = dev ? find_point(&st->dev[dev - st->cfg->devices], field) : NULL;
    if (!p) {
        pthread_rwlock_unlock(&st->lock);
        cJSON_Delete(root);
        *not_found = 1;
        return NULL;
    }
    cJSON_AddStringToObject(root, "device", device);
    cJSON_AddStringToObject(root, "field", field);
    cJSON_AddStringToObject(root, "unit", p->unit);
    cJSON *pts = cJSON_AddArrayToObject(root, "points");
    int64_t since = now_us - (int64_t)minutes * 60 * 1000000;
    for (size_t k = 0; pts && k < p->count; k++) {
        const hist_entry *h = &p->ring[(p->head + k) % p->ring_alloc];
        if (h->ts_us < since)
            continue;
        cJSON *pair = cJSON_CreateArray();
        if (!pair)
            break;
        cJSON_AddItemToArray(pair, cJSON_CreateNumber((double)(h->ts_us / 1000)));
        cJSON_AddItemToArray(pair, cJSON_CreateNumber(h->v));
        cJSON_AddItemToArray(pts, pair);
    }
    pthread_rwlock_unlock(&st->lock);
    return print_and_free(root);
}
