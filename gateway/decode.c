/* The decoder chains of MQTT devices, the built-in "json" decoder, and the message
 * side of the plugin host table (emit, reject, JSON access, chaining). */
#include "decode.h"

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "plugin.h"
#include "timeutil.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ENTRIES 6       /* decoders prepared per device (subscriptions + own) */
#define MAX_COLLECT 64      /* samples of one message kept for derive() */
#define MAX_AUTO_FIELDS 64  /* json decoder without a field list */
#define MAX_FIELDS 128

/* ---- the json decoder ------------------------------------------------------------------ */

typedef enum { TS_NONE = 0, TS_RFC3339, TS_EPOCH_S, TS_EPOCH_MS, TS_AUTO } ts_format;

typedef struct map_field {
    char *name, *path, *unit;
    double scale, offset;
    int scale_dp, offset_dp; /* their decimals (gw_decimals), -1 when more than 9 */
    int type;                /* CG_NUMBER, CG_BOOL, CG_TEXT */
} map_field;

typedef struct jsonmap {
    map_field *fields;
    size_t n;
    char *ts_path;
    ts_format ts_format;
} jsonmap;

/* x * scale + offset, rounded to the decimals of x, scale and offset together (21.7 x
 * 0.1 gives 2.17, not 2.1700000000000004); as computed when one has more than 9. */
static double map_number(const map_field *f, double x)
{
    if (f->scale == 1 && f->offset == 0)
        return x;
    double v = x * f->scale + f->offset;
    int dx = gw_decimals(x);
    if (dx < 0 || f->scale_dp < 0 || f->offset_dp < 0)
        return v;
    int d = dx + f->scale_dp > f->offset_dp ? dx + f->scale_dp : f->offset_dp;
    return gw_round_decimals(v, d);
}

static void jsonmap_free(jsonmap *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++) {
        gw_free(m->fields[i].name);
        gw_free(m->fields[i].path);
        gw_free(m->fields[i].unit);
    }
    gw_free(m->fields);
    gw_free(m->ts_path);
    gw_free(m);
}

static int field_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= GW_FIELD_MAX)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

static int path_ok(const char *p)
{
    /* Syntax only: keys separated by '.', [N] indexes; no empty key. */
    if (!p || strlen(p) > 255)
        return 0;
    const char *s = p;
    while (*s) {
        if (*s == '.' && (s == p || s[1] == '.' || s[1] == '\0'))
            return 0;
        if (*s == '[') {
            const char *e = s + 1;
            while (*e >= '0' && *e <= '9')
                e++;
            if (e == s + 1 || *e != ']')
                return 0;
            s = e;
        }
        s++;
    }
    return 1;
}

/* path + "." + key into buf, truncated to fit (error messages only). */
static char *sub_path(char *buf, size_t n, const char *path, const char *key)
{
    size_t a = strlen(path), b = strlen(key), o = 0;
    if (n == 0)
        return buf;
    a = a < n - 1 ? a : n - 1;
    memmove(buf, path, a);
    o = a;
    if (a && o < n - 1)
        buf[o++] = '.';
    b = b < n - 1 - o ? b : n - 1 - o;
    memcpy(buf + o, key, b);
    buf[o + b] = '\0';
    return buf;
}

static int jsonmap_build(const cJSON *o, gw_cfgerr *errs, const char *file, const char *path,
                         jsonmap **out)
{
    char p1[300], p2[300];
    size_t before = errs->n;
    jsonmap *m = gw_calloc(1, sizeof *m);
    if (!m)
        return GW_ENOMEM;
    if (o && !cJSON_IsObject(o)) {
        gw_cfgerr_add(errs, file, path, "must be an object");
        goto done;
    }
    for (const cJSON *it = o ? o->child : NULL; it; it = it->next)
        if (strcmp(it->string, "fields") != 0 && strcmp(it->string, "timestamp") != 0)
            gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, path, it->string),
                          "unknown option for decoder 'json' (it knows: fields, timestamp)");
    const cJSON *fields = cJSON_GetObjectItemCaseSensitive(o, "fields");
    if (fields && !cJSON_IsObject(fields)) {
        gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, path, "fields"),
                      "must be an object {\"field\": {\"path\": ...}}");
    } else if (fields) {
        size_t n = (size_t)cJSON_GetArraySize(fields);
        if (n > MAX_FIELDS) {
            gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, path, "fields"),
                          "at most %d fields", MAX_FIELDS);
            goto done;
        }
        if (n && !(m->fields = gw_calloc(n, sizeof *m->fields)))
            goto nomem;
        for (const cJSON *f = fields->child; f; f = f->next) {
            sub_path(p1, sizeof p1, path, "fields");
            sub_path(p2, sizeof p2, p1, f->string);
            map_field *mf = &m->fields[m->n];
            mf->scale = 1.0;
            mf->type = CG_NUMBER;
            if (!field_name_ok(f->string)) {
                gw_cfgerr_add(errs, file, p2, "field names are [A-Za-z0-9_], 1..%d bytes",
                              GW_FIELD_MAX - 1);
                continue;
            }
            const char *fpath = NULL, *unit = NULL;
            if (cJSON_IsString(f)) {
                fpath = f->valuestring;
            } else if (cJSON_IsObject(f)) {
                for (const cJSON *k = f->child; k; k = k->next) {
                    if (strcmp(k->string, "path") && strcmp(k->string, "unit") &&
                        strcmp(k->string, "scale") && strcmp(k->string, "offset") &&
                        strcmp(k->string, "type"))
                        gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, p2, k->string),
                                      "unknown key (path, unit, scale, offset, type)");
                }
                const cJSON *jp = cJSON_GetObjectItemCaseSensitive(f, "path");
                const cJSON *ju = cJSON_GetObjectItemCaseSensitive(f, "unit");
                const cJSON *js = cJSON_GetObjectItemCaseSensitive(f, "scale");
                const cJSON *jo = cJSON_GetObjectItemCaseSensitive(f, "offset");
                const cJSON *jt = cJSON_GetObjectItemCaseSensitive(f, "type");
                fpath = cJSON_IsString(jp) ? jp->valuestring : NULL;
                if (ju && (!cJSON_IsString(ju) || strlen(ju->valuestring) >= GW_UNIT_MAX))
                    gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, p2, "unit"),
                                  "must be a string of at most %d bytes", GW_UNIT_MAX - 1);
                else if (ju)
                    unit = ju->valuestring;
                if (js && (!cJSON_IsNumber(js) || !isfinite(js->valuedouble) || js->valuedouble == 0))
                    gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, p2, "scale"),
                                  "must be a finite non-zero number");
                else if (js)
                    mf->scale = js->valuedouble;
                if (jo && (!cJSON_IsNumber(jo) || !isfinite(jo->valuedouble)))
                    gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, p2, "offset"),
                                  "must be a finite number");
                else if (jo)
                    mf->offset = jo->valuedouble;
                if (jt) {
                    const char *t = cJSON_IsString(jt) ? jt->valuestring : "";
                    if (strcmp(t, "number") == 0)
                        mf->type = CG_NUMBER;
                    else if (strcmp(t, "bool") == 0)
                        mf->type = CG_BOOL;
                    else if (strcmp(t, "text") == 0)
                        mf->type = CG_TEXT;
                    else
                        gw_cfgerr_add(errs, file, sub_path(p1, sizeof p1, p2, "type"),
                                      "must be number, bool or text");
                }
            }
            if (!fpath || !path_ok(fpath)) {
                gw_cfgerr_add(errs, file, cJSON_IsObject(f) ? sub_path(p1, sizeof p1, p2, "path") : p2,
                              "must be a JSON path such as \"object.angle\" or \"rxInfo[0].rssi\"");
                continue;
            }
            mf->scale_dp = gw_decimals(mf->scale);
            mf->offset_dp = gw_decimals(mf->offset);
            if (!(mf->name = gw_strdup(f->string)) || !(mf->path = gw_strdup(fpath)) ||
                (unit && !(mf->unit = gw_strdup(unit)))) {
                m->n++;
                goto nomem;
            }
            m->n++;
        }
    }
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(o, "timestamp");
    if (ts) {
        sub_path(p1, sizeof p1, path, "timestamp");
        const cJSON *jp = cJSON_GetObjectItemCaseSensitive(ts, "path");
        const cJSON *jf = cJSON_GetObjectItemCaseSensitive(ts, "format");
        for (const cJSON *k = cJSON_IsObject(ts) ? ts->child : NULL; k; k = k->next)
            if (strcmp(k->string, "path") && strcmp(k->string, "format"))
                gw_cfgerr_add(errs, file, sub_path(p2, sizeof p2, p1, k->string),
                              "unknown key (path, format)");
        if (!cJSON_IsObject(ts) || !cJSON_IsString(jp) || !path_ok(jp->valuestring)) {
            gw_cfgerr_add(errs, file, p1, "must be {\"path\": \"...\", \"format\": \"rfc3339|epoch_s|epoch_ms|auto\"}");
        } else {
            const char *f = cJSON_IsString(jf) ? jf->valuestring : jf ? "" : "auto";
            if (strcmp(f, "rfc3339") == 0)
                m->ts_format = TS_RFC3339;
            else if (strcmp(f, "epoch_s") == 0)
                m->ts_format = TS_EPOCH_S;
            else if (strcmp(f, "epoch_ms") == 0)
                m->ts_format = TS_EPOCH_MS;
            else if (strcmp(f, "auto") == 0)
                m->ts_format = TS_AUTO;
            else
                gw_cfgerr_add(errs, file, sub_path(p2, sizeof p2, p1, "format"),
                              "must be rfc3339, epoch_s, epoch_ms or auto");
            if (!(m->ts_path = gw_strdup(jp->valuestring)))
                goto nomem;
        }
    }
done:
    if (errs->n > before) {
        jsonmap_free(m);
        return GW_ECONFIG;
    }
    *out = m;
    return 0;
nomem:
    jsonmap_free(m);
    return GW_ENOMEM;
}

int gw_decode_json_check_options(const cJSON *options, gw_cfgerr *errs, const char *file,
                                 const char *path)
{
    jsonmap *m = NULL;
    int rc = jsonmap_build(options, errs, file, path, &m);
    jsonmap_free(m);
    return rc == GW_ENOMEM ? rc : rc ? GW_ECONFIG : 0;
}

/* ---- JSON helpers --------------------------------------------------------------------------- */

/* Nesting depth outside strings; libcjson's own limit (1000) is compiled into the
 * shared library, so the tighter bound has to be checked before parsing. */
static int depth_ok(const char *s, size_t len)
{
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '"') {
            /* skip the string: to the next quote not escaped by an odd run of
             * backslashes (memchr: most of a payload's bytes are in strings) */
            for (;;) {
                const char *q = memchr(s + i + 1, '"', len - i - 1);
                if (!q)
                    return 1; /* unterminated: the parser says so */
                size_t k = (size_t)(q - s), bs = 0;
                while (s[k - 1 - bs] == '\\')
                    bs++;
                i = k;
                if (bs % 2 == 0)
                    break;
            }
        } else if (c == '{' || c == '[') {
            if (++depth > GW_DECODE_JSON_DEPTH)
                return 0;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return 1;
}

const cJSON *gw_decode_json_path(const cJSON *root, const char *path)
{
    if (!root)
        return NULL;
    if (!path || !*path)
        return root;
    const cJSON *cur = root;
    const char *s = path;
    char key[256];
    while (*s && cur) {
        if (*s == '[') {
            char *e;
            long idx = strtol(s + 1, &e, 10);
            if (e == s + 1 || *e != ']' || idx < 0 || !cJSON_IsArray(cur))
                return NULL;
            cur = cJSON_GetArrayItem(cur, (int)idx);
            s = e + 1;
            if (*s == '.')
                s++;
            continue;
        }
        size_t n = strcspn(s, ".[");
        if (n == 0 || n >= sizeof key || !cJSON_IsObject(cur))
            return NULL;
        memcpy(key, s, n);
        key[n] = '\0';
        cur = cJSON_GetObjectItemCaseSensitive(cur, key);
        s += n;
        if (*s == '.') {
            s++;
            if (!*s)
                return NULL;
        }
    }
    return cur;
}

/* cJSON's hooks for the per-thread parse arena ("per-thread scratch" below). */
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_init(void);

/* ---- decoder chains ------------------------------------------------------------------------- */

typedef enum { E_JSON = 0, E_PLUGIN, E_ENVELOPE } entry_kind;

typedef struct entry {
    const char *name;   /* borrowed from cfg or the plugin */
    entry_kind kind;
    cg_ctx *ctx;        /* plugins */
    jsonmap *map;       /* json */
} entry;

typedef struct dev_dec {
    entry e[MAX_ENTRIES];
    size_t n;
    gw_complaint complain[CG_BAD__COUNT]; /* one per reason: a new reason is always logged */
    _Atomic uint64_t bad[CG_BAD__COUNT];
} dev_dec;

struct gw_decoders {
    const gw_config *cfg;
    gw_plugins *plugins;
    dev_dec *devs;       /* cfg->n_devices */
    size_t n_devs;
    size_t *max_payload; /* per device */
};

static int is_envelope(gw_decoders *d, const char *name)
{
    const gw_plugin *p;
    char err[256];
    if (!name || strcmp(name, "json") == 0)
        return 0;
    return gw_plugins_get(d->plugins, name, &p, err, sizeof err) == 0 &&
           (p->desc.flags & CG_PLUGIN_ENVELOPE);
}

static entry *find_entry(dev_dec *dd, const char *name)
{
    for (size_t i = 0; i < dd->n; i++)
        if (strcmp(dd->e[i].name, name) == 0)
            return &dd->e[i];
    return NULL;
}

/* Prepare decoder `name` for device i (no-op when present). where: the config path
 * that named it, for errors. with_options: the device's options go to this one. */
static int prepare(gw_decoders *d, size_t i, const char *name, const char *where, int with_options,
                   gw_cfgerr *errs)
{
    const gw_config *cfg = d->cfg;
    const gw_device *dev = &cfg->devices[i];
    dev_dec *dd = &d->devs[i];
    if (find_entry(dd, name))
        return 0;
    if (dd->n == MAX_ENTRIES) {
        gw_cfgerr_add(errs, cfg->file, where, "more than %d decoders for device '%s'",
                      MAX_ENTRIES, dev->id);
        return GW_ECONFIG;
    }
    char opath[128];
    snprintf(opath, sizeof opath, "devices[%zu].mqtt.options", i);
    entry *e = &dd->e[dd->n];
    memset(e, 0, sizeof *e);
    const cJSON *options = with_options ? dev->decoder_options : NULL;
    int rc;
    if (strcmp(name, "json") == 0) {
        e->name = "json";
        e->kind = E_JSON;
        rc = jsonmap_build(options, errs, cfg->file, opath, &e->map);
    } else {
        const gw_plugin *p;
        char err[512];
        rc = gw_plugins_get(d->plugins, name, &p, err, sizeof err);
        if (rc == GW_ENOMEM)
            return rc;
        if (rc != 0) {
            gw_cfgerr_add(errs, cfg->file, where, "%s", err);
            return GW_ECONFIG;
        }
        e->name = p->name;
        e->kind = (p->desc.flags & CG_PLUGIN_ENVELOPE) ? E_ENVELOPE : E_PLUGIN;
        rc = gw_plugin_instance_create(p, dev, i, options, errs, cfg->file, opath, &e->ctx);
    }
    if (rc == 0)
        dd->n++;
    return rc;
}

/* Work out the chain for (device, subscription decoder) as decode.h describes. */
static void resolve(gw_decoders *d, const gw_device *dev, const char *sub, const char **first,
                    const char **inner)
{
    const char *D = dev->decoder;
    const char *f = sub ? sub : D ? D : "json";
    if (D && !is_envelope(d, f))
        f = D;
    *first = f;
    *inner = NULL;
    if (is_envelope(d, f))
        *inner = D && !is_envelope(d, D) ? D : "json";
}

static int prepare_chain(gw_decoders *d, size_t i, const char *sub, const char *sub_where,
                         gw_cfgerr *errs)
{
    const gw_device *dev = &d->cfg->devices[i];
    char dwhere[96];
    snprintf(dwhere, sizeof dwhere, "devices[%zu].mqtt.decoder", i);
    /* Surface load errors of both names where they were written, first. */
    int rc = 0, r;
    const gw_plugin *p;
    char err[512];
    if (sub && strcmp(sub, "json") != 0 &&
        (r = gw_plugins_get(d->plugins, sub, &p, err, sizeof err)) != 0) {
        if (r == GW_ENOMEM)
            return r;
        gw_cfgerr_add(errs, d->cfg->file, sub_where, "%s", err);
        rc = GW_ECONFIG;
    }
    if (dev->decoder && strcmp(dev->decoder, "json") != 0 &&
        (r = gw_plugins_get(d->plugins, dev->decoder, &p, err, sizeof err)) != 0) {
        if (r == GW_ENOMEM)
            return r;
        gw_cfgerr_add(errs, d->cfg->file, dwhere, "%s", err);
        rc = GW_ECONFIG;
    }
    if (rc)
        return rc;
    const char *first, *inner;
    resolve(d, dev, sub, &first, &inner);
    const char *fw = dev->decoder && strcmp(first, dev->decoder) == 0 ? dwhere : sub_where;
    /* Options go to the device's own decoder, or to whatever decodes the payload. */
    int f_opts = dev->decoder ? strcmp(first, dev->decoder) == 0 : inner == NULL;
    if ((r = prepare(d, i, first, fw, f_opts, errs)) != 0)
        rc = r;
    if (inner && rc != GW_ENOMEM) {
        int i_opts = dev->decoder ? strcmp(inner, dev->decoder) == 0 : 1;
        if ((r = prepare(d, i, inner, dev->decoder ? dwhere : sub_where, i_opts, errs)) != 0)
            rc = r;
    }
    return rc;
}

int gw_decoders_create(const gw_config *cfg, const gw_decoders_opts *opts, gw_cfgerr *errs,
                       gw_decoders **out)
{
    pthread_once(&scratch_once, scratch_init);
    size_t before = errs->n;
    int rc = GW_ENOMEM;
    gw_decoders *d = gw_calloc(1, sizeof *d);
    if (!d)
        return GW_ENOMEM;
    d->cfg = cfg;
    d->n_devs = cfg->n_devices;
    if (d->n_devs && (!(d->devs = gw_calloc(d->n_devs, sizeof *d->devs)) ||
                      !(d->max_payload = gw_calloc(d->n_devs, sizeof *d->max_payload))))
        goto fail;
    const char *dir = opts && opts->plugin_dir ? opts->plugin_dir : cfg->plugins_dir;
    if ((rc = gw_plugins_create(dir, &d->plugins)) != 0)
        goto fail;
    gw_plugins_set_quiet(d->plugins, opts && opts->quiet);
    rc = 0;
    for (size_t i = 0; i < cfg->n_devices && rc != GW_ENOMEM; i++) {
        const gw_device *dev = &cfg->devices[i];
        d->max_payload[i] = GW_DECODE_MAX_PAYLOAD_DEFAULT;
        if (dev->source != GW_SRC_MQTT)
            continue;
        int any = 0, r;
        for (size_t s = 0; s < cfg->n_mqtt_sources; s++) {
            const gw_mqtt_source *src = &cfg->mqtt_sources[s];
            if (!dev->mqtt_source || strcmp(src->id, dev->mqtt_source) != 0)
                continue;
            if (src->max_payload)
                d->max_payload[i] = src->max_payload;
            for (size_t k = 0; k < src->n_subs; k++) {
                char where[128];
                snprintf(where, sizeof where, "mqtt_sources[%zu].subscriptions[%zu].decoder", s, k);
                if ((r = prepare_chain(d, i, src->subs[k].decoder, where, errs)) == GW_ENOMEM)
                    rc = r;
                any = 1;
            }
        }
        if (opts && opts->extra_decoder) {
            if ((r = prepare_chain(d, i, opts->extra_decoder, "--plugin", errs)) == GW_ENOMEM)
                rc = r;
            any = 1;
        }
        if (!any && (r = prepare_chain(d, i, NULL, "", errs)) == GW_ENOMEM)
            rc = r;
    }
    if (rc == GW_ENOMEM)
        goto fail;
    if (errs->n > before) {
        rc = GW_ECONFIG;
        goto fail;
    }
    *out = d;
    return 0;
fail:
    gw_decoders_free(d);
    return rc;
}

void gw_decoders_free(gw_decoders *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_devs && d->devs; i++)
        for (size_t k = 0; k < d->devs[i].n; k++) {
            gw_plugin_instance_free(d->devs[i].e[k].ctx);
            jsonmap_free(d->devs[i].e[k].map);
        }
    gw_free(d->devs);
    gw_free(d->max_payload);
    gw_plugins_free(d->plugins);
    gw_free(d);
}

uint64_t gw_decode_bad_count(const gw_decoders *d, size_t device_idx, int reason)
{
    if (!d || device_idx >= d->n_devs || reason < 0 || reason >= CG_BAD__COUNT)
        return 0;
    return atomic_load_explicit(&d->devs[device_idx].bad[reason], memory_order_relaxed);
}

uint64_t gw_decode_bad_total(const gw_decoders *d)
{
    uint64_t t = 0;
    for (size_t i = 0; d && i < d->n_devs; i++)
        for (int r = 0; r < CG_BAD__COUNT; r++)
            t += gw_decode_bad_count(d, i, r);
    return t;
}

const char *gw_decode_reason_name(int reason)
{
    static const char *const names[CG_BAD__COUNT] = {
        "size", "json", "type", "missing", "encoding", "frame", "range", "no_decoder",
    };
    return reason >= 0 && reason < CG_BAD__COUNT ? names[reason] : "unknown";
}

/* ---- one message ------------------------------------------------------------------------- */

typedef struct sink {
    gw_decoders *d;
    size_t dev_idx;
    const gw_device *dev;
    dev_dec *dd;
    gw_decode_emit_fn emit;
    void *emit_ctx;
    int64_t ts_us;
    int rejected;      /* counted once per message */
    int consumer_rc;   /* the consumer's negative code, returned as is */
    int collecting;
    int in_use;        /* the thread's kept sink is taken */
    int kept;          /* this is the thread's kept sink */
    size_t n_collected;
    gw_sample collected[MAX_COLLECT];
} sink;

/* ---- per-thread scratch ---------------------------------------------------------------
 *
 * Each decoding thread keeps one scratch, freed when the thread exits (perf showed
 * both costs on the MQTT decode thread):
 *   - the message sink: large (the samples collected for derive), too large for small
 *     thread stacks, and a malloc of that size per message made glibc consolidate its
 *     fast bins, full of the parse tree just freed, every time;
 *   - the parse arena: cJSON allocates every node and string separately, a third of a
 *     ChirpStack uplink's decode went to malloc and free. While gw_decode_json_parse
 *     parses, cJSON's allocations come from the thread's arena (falling back to malloc
 *     when it is full), frees of arena memory are no-ops, and the arena starts over
 *     when no tree parsed into it is alive. So a tree from gw_decode_json_parse must be
 *     freed with gw_decode_json_free on the thread that parsed it.
 * A nested decode on the same thread (a consumer decoding from its emit callback) gets
 * a sink of its own and parses into the same arena. */
#define ARENA_SIZE (48 * 1024)

/* Under AddressSanitizer the arena is poisoned except for the bytes handed out, so a
 * read past a node or string is still caught, and a tree used after the arena started
 * over reads poisoned memory until the bytes are handed out again. */
#if defined(__SANITIZE_ADDRESS__)
#define CG_ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CG_ARENA_ASAN 1
#endif
#endif
#ifdef CG_ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define ARENA_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define ARENA_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define ARENA_POISON(p, n) ((void)(p), (void)(n))
#define ARENA_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

typedef struct scratch {
    sink sk;
    size_t arena_used;
    unsigned arena_live; /* trees whose root is in the arena, not yet freed */
    _Alignas(max_align_t) unsigned char arena[ARENA_SIZE];
} scratch;

static pthread_key_t scratch_key;
static int scratch_key_ok;
static _Thread_local scratch *tl_scratch;
static _Thread_local int tl_parsing;

static int in_arena(const scratch *t, const void *p)
{
    if (!t)
        return 0;
    uintptr_t a = (uintptr_t)t->arena, q = (uintptr_t)p;
    return q >= a && q < a + ARENA_SIZE;
}

/* Once one allocation of a parse does not fit, the rest of that parse goes to malloc:
 * a tree whose root is on the heap must have nothing in the arena, which starts over
 * when the trees rooted in it are freed. */
static void *json_malloc(size_t n)
{
    scratch *t = tl_scratch;
    if (tl_parsing && t) {
        size_t need = (n + 15) & ~(size_t)15;
        if (need >= n && need <= ARENA_SIZE - t->arena_used) {
            void *p = t->arena + t->arena_used;
            t->arena_used += need;
            ARENA_UNPOISON(p, n);
            return p;
        }
        tl_parsing = 0;
    }
    return malloc(n);
}

static void json_free(void *p)
{
    scratch *t = tl_scratch;
    if (in_arena(t, p))
        return;
    free(p);
}

static void scratch_free(void *p)
{
    tl_scratch = NULL;
    ARENA_UNPOISON(((scratch *)p)->arena, ARENA_SIZE);
    gw_free(p);
}

/* Once, from gw_decoders_create, before the threads that parse start: cJSON's hooks
 * are process-wide. Outside a parse they are malloc and free. */
static void scratch_init(void)
{
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0;
    if (scratch_key_ok) {
        cJSON_Hooks h = {.malloc_fn = json_malloc, .free_fn = json_free};
        cJSON_InitHooks(&h);
    }
}

/* This thread's scratch, made on first use; NULL without memory (or before any
 * gw_decoders_create): then sinks are allocated per message and cJSON uses malloc. */
static scratch *scratch_get(void)
{
    scratch *t = tl_scratch;
    if (t || !scratch_key_ok)
        return t;
    if (!(t = gw_malloc(sizeof *t)))
        return NULL;
    if (pthread_setspecific(scratch_key, t) != 0) {
        gw_free(t);
        return NULL;
    }
    t->sk.in_use = 0;
    t->arena_used = 0;
    t->arena_live = 0;
    ARENA_POISON(t->arena, ARENA_SIZE);
    tl_scratch = t;
    return t;
}

/* A sink cleared up to its samples, or NULL (no memory). */
static sink *sink_take(void)
{
    scratch *t = scratch_get();
    int keep = t && !t->sk.in_use;
    sink *sk = keep ? &t->sk : gw_malloc(sizeof *sk);
    if (!sk)
        return NULL;
    memset(sk, 0, offsetof(sink, collected));
    sk->kept = keep;
    sk->in_use = 1;
    return sk;
}

static void sink_give(sink *sk)
{
    if (sk->kept)
        sk->in_use = 0;
    else
        gw_free(sk);
}

int gw_decode_json_parse(const void *buf, size_t len, size_t max, cJSON **out, int *reason)
{
    *out = NULL;
    if (len == 0 || len > max) {
        *reason = CG_BAD_SIZE;
        return GW_EDECODE;
    }
    if (!depth_ok(buf, len)) {
        *reason = CG_BAD_JSON;
        return GW_EDECODE;
    }
    /* MQTT payloads are not NUL-terminated: copy and terminate (delivery.md §3). An
     * embedded NUL ends the string early and require_null_terminated rejects it. */
    char stackbuf[2048];
    char *copy = len < sizeof stackbuf ? stackbuf : gw_malloc(len + 1);
    if (!copy)
        return GW_ENOMEM;
    memcpy(copy, buf, len);
    copy[len] = '\0';
    const char *end = NULL;
    scratch *t = scratch_get();
    if (t && t->arena_live == 0 && t->arena_used) {
        ARENA_POISON(t->arena, t->arena_used);
        t->arena_used = 0;
    }
    tl_parsing = t != NULL;
    cJSON *j = cJSON_ParseWithOpts(copy, &end, 1);
    tl_parsing = 0;
    int rc = 0;
    if (!j || !end || end != copy + len) {
        cJSON_Delete(j);
        *reason = CG_BAD_JSON;
        rc = GW_EDECODE;
    } else {
        if (in_arena(t, j))
            t->arena_live++;
        *out = j;
    }
    if (copy != stackbuf)
        gw_free(copy);
    return rc;
}

void gw_decode_json_free(cJSON *doc)
{
    scratch *t = tl_scratch;
    if (doc && in_arena(t, doc) && t->arena_live > 0)
        t->arena_live--;
    cJSON_Delete(doc);
}

typedef struct msg {
    sink *sk;
    entry *inner;      /* where chain() goes (envelopes) */
    int kind;          /* CG_PAYLOAD_* */
    const uint8_t *p;
    size_t len;
    const cJSON *root; /* JSON payloads */
    const char *decoder;
} msg;

static int count_bad(sink *sk, int reason, const char *decoder, const char *detail)
{
    if (sk->rejected)
        return GW_EDECODE;
    sk->rejected = 1;
    if (reason < 0 || reason >= CG_BAD__COUNT)
        reason = CG_BAD_FRAME;
    atomic_fetch_add_explicit(&sk->dd->bad[reason], 1, memory_order_relaxed);
    gw_complain(&sk->dd->complain[reason], 0, 10000, 3600000, GW_LOG_WARN, "decode",
                "device %s: bad payload (%s, decoder %s): %s", sk->dev->id,
                gw_decode_reason_name(reason), decoder ? decoder : "?",
                detail && *detail ? detail : "-");
    return GW_EDECODE;
}

static int ops_emit(cg_ctx *ctx, const cg_sample *s)
{
    msg *m = ctx ? ctx->msg : NULL;
    if (!m || !s)
        return CG_EINVAL;
    sink *sk = m->sk;
    if (!s->field || !field_name_ok(s->field))
        return CG_EINVAL;
    if (s->type != CG_TEXT && !isfinite(s->value))
        return CG_EINVAL;
    gw_sample g;
    gw_sample_set(&g, sk->dev->id, s->field, s->type == CG_BOOL ? (s->value != 0) : s->value,
                  s->unit, (unsigned)s->quality < GW_Q__COUNT ? (gw_quality)s->quality
                                                              : GW_Q_DECODE_ERROR,
                  s->ts_us > 0 ? s->ts_us : sk->ts_us);
    g.device_idx = (uint32_t)sk->dev_idx;
    g.type = s->type == CG_BOOL ? GW_V_BOOL : s->type == CG_TEXT ? GW_V_TEXT : GW_V_NUMBER;
    if (s->type == CG_TEXT) {
        g.value = 0;
        gw_strlcpy(g.text, s->text, sizeof g.text);
    }
    if (sk->collecting && sk->n_collected < MAX_COLLECT)
        sk->collected[sk->n_collected++] = g;
    int rc = sk->emit(sk->emit_ctx, &g);
    if (rc < 0) {
        sk->consumer_rc = rc;
        return rc;
    }
    return 0;
}

static int ops_reject(cg_ctx *ctx, int reason, const char *detail)
{
    msg *m = ctx ? ctx->msg : NULL;
    if (!m)
        return CG_EDECODE;
    return count_bad(m->sk, reason, ctx->plugin->name, detail);
}

static int64_t ops_message_time(const cg_ctx *ctx)
{
    const msg *m = ctx->msg;
    return m ? m->sk->ts_us : 0;
}

static void ops_set_message_time(cg_ctx *ctx, int64_t ts_us)
{
    msg *m = ctx->msg;
    /* Years 2000..2200: anything else is a device clock that was never set. */
    if (m && ts_us > 946684800000000LL && ts_us < 7258118400000000LL)
        m->sk->ts_us = ts_us;
}

static int ops_payload_kind(const cg_ctx *ctx)
{
    const msg *m = ctx->msg;
    return m ? m->kind : CG_PAYLOAD_BYTES;
}

static int ops_json_get(cg_ctx *ctx, const char *path, int type, double *num, char *buf, size_t n)
{
    msg *m = ctx->msg;
    if (!m)
        return CG_EINVAL;
    if (m->kind != CG_PAYLOAD_JSON || !m->root)
        return CG_EDECODE;
    const cJSON *j = gw_decode_json_path(m->root, path);
    if (!j || cJSON_IsNull(j))
        return CG_ENOTFOUND;
    switch (type) {
    case 0:
        if (cJSON_IsBool(j)) {
            *num = cJSON_IsTrue(j);
            return 0;
        }
        if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
            return CG_EINVAL;
        *num = j->valuedouble;
        return 0;
    case 1:
        if (!cJSON_IsString(j) || !j->valuestring || strlen(j->valuestring) >= n)
            return CG_EINVAL;
        memcpy(buf, j->valuestring, strlen(j->valuestring) + 1);
        return 0;
    case 2:
        return 0;
    case 3:
        *num = (cJSON_IsObject(j) || cJSON_IsArray(j)) ? cJSON_GetArraySize(j) : 0;
        return 0;
    }
    return CG_EINVAL;
}

static int run_entry(entry *e, msg *m);

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Standard or URL-safe base64, padding optional; returns the length or -1. */
static long base64_decode(const char *in, uint8_t *out)
{
    size_t len = strlen(in);
    while (len && in[len - 1] == '=')
        len--;
    if (len % 4 == 1)
        return -1;
    uint32_t acc = 0;
    int bits = 0;
    long o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64val((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (uint8_t)(acc >> bits);
        }
    }
    return o;
}

static long hex_decode(const char *in, uint8_t *out)
{
    size_t len = strlen(in);
    if (len % 2)
        return -1;
    for (size_t i = 0; i < len; i += 2) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char c = in[i + k];
            int x = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                         : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
            if (x < 0)
                return -1;
            v = v * 16 + x;
        }
        out[i / 2] = (uint8_t)v;
    }
    return (long)(len / 2);
}

static int chain_to(cg_ctx *ctx, msg *m, int kind, const uint8_t *p, size_t len,
                    const cJSON *root)
{
    if (!m->inner)
        return count_bad(m->sk, CG_BAD_NO_DECODER, ctx->plugin->name,
                         "chained from a decoder that is not an envelope");
    if (m->inner->kind == E_JSON && kind == CG_PAYLOAD_BYTES)
        return count_bad(m->sk, CG_BAD_NO_DECODER, ctx->plugin->name,
                         "raw bytes need a device decoder (devices[].mqtt.decoder)");
    msg sub = {.sk = m->sk, .inner = NULL, .kind = kind, .p = p, .len = len, .root = root,
               .decoder = m->inner->name};
    return run_entry(m->inner, &sub);
}

static int ops_chain(cg_ctx *ctx, const char *path, int how)
{
    msg *m = ctx->msg;
    if (!m)
        return CG_EINVAL;
    if (m->kind != CG_PAYLOAD_JSON || !m->root)
        return CG_EDECODE;
    const cJSON *j = gw_decode_json_path(m->root, path);
    if (!j || cJSON_IsNull(j))
        return CG_ENOTFOUND;
    char detail[96];
    if (how == CG_CHAIN_OBJECT) {
        if (!cJSON_IsObject(j)) {
            snprintf(detail, sizeof detail, "%.40s is not an object", path);
            return count_bad(m->sk, CG_BAD_TYPE, ctx->plugin->name, detail);
        }
        return chain_to(ctx, m, CG_PAYLOAD_JSON, NULL, 0, j);
    }
    if (!cJSON_IsString(j) || !j->valuestring) {
        snprintf(detail, sizeof detail, "%.40s is not a string", path);
        return count_bad(m->sk, CG_BAD_TYPE, ctx->plugin->name, detail);
    }
    const char *s = j->valuestring;
    size_t slen = strlen(s);
    if (how == CG_CHAIN_JSON_TEXT) {
        cJSON *inner = NULL;
        int reason = CG_BAD_JSON;
        int rc = gw_decode_json_parse(s, slen, m->sk->d->max_payload[m->sk->dev_idx], &inner, &reason);
        if (rc == GW_ENOMEM)
            return rc;
        if (rc != 0) {
            snprintf(detail, sizeof detail, "%.40s does not hold valid JSON", path);
            return count_bad(m->sk, reason, ctx->plugin->name, detail);
        }
        rc = chain_to(ctx, m, CG_PAYLOAD_JSON, NULL, 0, inner);
        gw_decode_json_free(inner);
        return rc;
    }
    if (how != CG_CHAIN_BASE64 && how != CG_CHAIN_HEX)
        return CG_EINVAL;
    uint8_t stackbuf[1024];
    uint8_t *buf = slen / 2 + 4 <= sizeof stackbuf ? stackbuf : gw_malloc(slen / 2 + 4);
    if (!buf)
        return GW_ENOMEM;
    long n = how == CG_CHAIN_BASE64 ? base64_decode(s, buf) : hex_decode(s, buf);
    int rc;
    if (n < 0) {
        snprintf(detail, sizeof detail, "%.40s is not valid %s", path,
                 how == CG_CHAIN_BASE64 ? "base64" : "hex");
        rc = count_bad(m->sk, CG_BAD_ENCODING, ctx->plugin->name, detail);
    } else {
        rc = chain_to(ctx, m, CG_PAYLOAD_BYTES, buf, (size_t)n, NULL);
    }
    if (buf != stackbuf)
        gw_free(buf);
    return rc;
}

static int ops_chain_bytes(cg_ctx *ctx, const uint8_t *bytes, size_t len)
{
    msg *m = ctx->msg;
    if (!m || (!bytes && len))
        return CG_EINVAL;
    return chain_to(ctx, m, CG_PAYLOAD_BYTES, bytes, len, NULL);
}

static const gw_plugin_msg_ops msg_ops = {
    .emit = ops_emit,
    .reject = ops_reject,
    .message_time = ops_message_time,
    .set_message_time = ops_set_message_time,
    .payload_kind = ops_payload_kind,
    .json_get = ops_json_get,
    .chain = ops_chain,
    .chain_bytes = ops_chain_bytes,
};

/* Timestamps: RFC 3339 strings, epoch s or ms (auto: > 10^12 means ms). */
static int parse_ts(const cJSON *j, ts_format f, int64_t *ts_us)
{
    if (cJSON_IsString(j)) {
        if (f != TS_RFC3339 && f != TS_AUTO)
            return GW_EINVAL;
        return gw_parse_rfc3339(j->valuestring, ts_us);
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble) || j->valuedouble <= 0 ||
        j->valuedouble > 1e16)
        return GW_EINVAL;
    double v = j->valuedouble;
    if (f == TS_EPOCH_MS || (f == TS_AUTO && v > 1e12))
        *ts_us = (int64_t)(v * 1000.0);
    else if (f == TS_EPOCH_S || f == TS_AUTO)
        *ts_us = (int64_t)(v * 1e6);
    else
        return GW_EINVAL;
    return 0;
}

static int run_json(entry *e, msg *m)
{
    sink *sk = m->sk;
    const jsonmap *map = e->map;
    char detail[128];
    if (m->kind != CG_PAYLOAD_JSON || !m->root)
        return count_bad(sk, CG_BAD_JSON, "json", "payload is not JSON");
    cg_ctx fake = {0};
    static const gw_plugin json_plugin = {.name = "json"};
    fake.plugin = &json_plugin;
    fake.msg = m;
    if (map->ts_path) {
        const cJSON *t = gw_decode_json_path(m->root, map->ts_path);
        int64_t ts;
        if (!t) {
            snprintf(detail, sizeof detail, "timestamp %.60s missing", map->ts_path);
            return count_bad(sk, CG_BAD_MISSING, "json", detail);
        }
        if (parse_ts(t, map->ts_format, &ts) != 0) {
            snprintf(detail, sizeof detail, "timestamp %.60s is not a valid time", map->ts_path);
            return count_bad(sk, CG_BAD_TYPE, "json", detail);
        }
        ops_set_message_time(&fake, ts);
    }
    int got = 0, rc;
    if (map->n == 0) {
        /* No field list: every top-level number or boolean under its own key. */
        if (!cJSON_IsObject(m->root))
            return count_bad(sk, CG_BAD_TYPE, "json", "payload is not a JSON object");
        int n = 0;
        for (const cJSON *it = m->root->child; it && n < MAX_AUTO_FIELDS; it = it->next) {
            if (!it->string || !field_name_ok(it->string))
                continue;
            cg_sample s = {.field = it->string};
            if (cJSON_IsBool(it)) {
                s.type = CG_BOOL;
                s.value = cJSON_IsTrue(it);
            } else if (cJSON_IsNumber(it) && isfinite(it->valuedouble)) {
                s.value = it->valuedouble;
            } else {
                continue;
            }
            n++;
            if ((rc = ops_emit(&fake, &s)) < 0 && sk->consumer_rc)
                return rc;
            got++;
        }
        return 0;
    }
    for (size_t i = 0; i < map->n; i++) {
        const map_field *f = &map->fields[i];
        const cJSON *j = gw_decode_json_path(m->root, f->path);
        if (!j || cJSON_IsNull(j))
            continue; /* sensors omit fields they did not measure (TTS omits zeros) */
        cg_sample s = {.field = f->name, .unit = f->unit, .type = f->type};
        if (f->type == CG_TEXT) {
            if (!cJSON_IsString(j))
                goto wrong_type;
            s.text = j->valuestring;
        } else if (cJSON_IsBool(j)) {
            s.value = cJSON_IsTrue(j);
        } else if (cJSON_IsNumber(j) && isfinite(j->valuedouble)) {
            s.value = f->type == CG_BOOL ? (j->valuedouble != 0) : map_number(f, j->valuedouble);
            if (!isfinite(s.value))
                goto wrong_type;
        } else {
            goto wrong_type;
        }
        if ((rc = ops_emit(&fake, &s)) < 0 && sk->consumer_rc)
            return rc;
        got++;
        continue;
wrong_type:
        snprintf(detail, sizeof detail, "%.60s has the wrong type for field %s", f->path, f->name);
        return count_bad(sk, CG_BAD_TYPE, "json", detail);
    }
    if (!got)
        return count_bad(sk, CG_BAD_MISSING, "json", "none of the configured fields is present");
    return 0;
}

static int run_plugin(entry *e, msg *m)
{
    cg_ctx *ctx = e->ctx;
    const gw_plugin *p = ctx->plugin;
    void *saved = ctx->msg;
    ctx->ops = &msg_ops;
    ctx->msg = m;
    int rc = p->desc.decode(ctx, m->p ? m->p : (const uint8_t *)"", m->len, ops_emit);
    ctx->msg = saved;
    if (m->sk->consumer_rc)
        return m->sk->consumer_rc;
    if (rc >= 0)
        return 0;
    if (rc == GW_ENOMEM)
        return rc;
    if (!m->sk->rejected) {
        char detail[96];
        snprintf(detail, sizeof detail, "decode returned %s", gw_strerror(rc));
        count_bad(m->sk, CG_BAD_FRAME, p->name, detail);
    }
    return GW_EDECODE;
}

static int run_entry(entry *e, msg *m)
{
    if (e->kind == E_JSON)
        return run_json(e, m);
    if (e->kind == E_ENVELOPE && m->kind != CG_PAYLOAD_JSON)
        return count_bad(m->sk, CG_BAD_JSON, e->name, "an envelope must be a JSON object");
    return run_plugin(e, m);
}

static int starts_json(const uint8_t *p, size_t len)
{
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    return i < len && (p[i] == '{' || p[i] == '[');
}

static int decode(gw_decoders *d, size_t device_idx, const char *decoder, const void *payload,
                  size_t len, gw_payload_kind kind, const cJSON *doc, int64_t recv_ts_us,
                  gw_decode_emit_fn emit, void *ctx)
{
    if (!d || device_idx >= d->n_devs || d->cfg->devices[device_idx].source != GW_SRC_MQTT ||
        !emit || (!payload && len))
        return GW_ENOTFOUND;
    const gw_device *dev = &d->cfg->devices[device_idx];
    dev_dec *dd = &d->devs[device_idx];
    sink *sk = sink_take();
    if (!sk)
        return GW_ENOMEM;
    sk->d = d;
    sk->dev_idx = device_idx;
    sk->dev = dev;
    sk->dd = dd;
    sk->emit = emit;
    sk->emit_ctx = ctx;
    sk->ts_us = recv_ts_us > 0 ? recv_ts_us : gw_now_us();

    const char *first_name, *inner_name;
    resolve(d, dev, decoder, &first_name, &inner_name);
    entry *first = find_entry(dd, first_name);
    entry *inner = inner_name ? find_entry(dd, inner_name) : NULL;
    cJSON *json = NULL;
    int rc;
    char detail[128];
    if (!first || (inner_name && !inner)) {
        snprintf(detail, sizeof detail, "decoder '%.40s' is not configured for this device",
                 !first ? first_name : inner_name);
        rc = count_bad(sk, CG_BAD_NO_DECODER, first_name, detail);
        goto done;
    }
    if (len > d->max_payload[device_idx]) {
        snprintf(detail, sizeof detail, "%zu bytes, more than the %zu allowed", len,
                 d->max_payload[device_idx]);
        rc = count_bad(sk, CG_BAD_SIZE, first_name, detail);
        goto done;
    }
    int wants_json = first->kind != E_PLUGIN;
    int is_json = doc != NULL;
    if (doc) {
        /* parsed by the caller with gw_decode_json_parse; the decoders only read it */
    } else if (kind == GW_PAYLOAD_JSON ||
               (kind == GW_PAYLOAD_AUTO && (wants_json || starts_json(payload, len)))) {
        int reason = CG_BAD_JSON;
        rc = gw_decode_json_parse(payload, len, d->max_payload[device_idx], &json, &reason);
        if (rc == GW_ENOMEM)
            goto done;
        if (rc == 0) {
            is_json = 1;
        } else if (wants_json || kind == GW_PAYLOAD_JSON) {
            rc = count_bad(sk, reason, first_name,
                           reason == CG_BAD_SIZE ? "empty payload" : "invalid JSON or nested too deep");
            goto done;
        }
        /* A domain plugin gets bytes that only looked like JSON as bytes. */
    }
    msg m = {.sk = sk, .inner = inner, .kind = is_json ? CG_PAYLOAD_JSON : CG_PAYLOAD_BYTES,
             .p = payload, .len = len, .root = doc ? (cJSON *)doc : json, .decoder = first_name};
    entry *domain = inner ? inner : first;
    int derive = domain->kind == E_PLUGIN && domain->ctx->plugin->desc.derive;
    sk->collecting = derive;
    rc = run_entry(first, &m);
    if (rc == 0 && derive && sk->n_collected) {
        cg_sample cs[MAX_COLLECT];
        for (size_t i = 0; i < sk->n_collected; i++) {
            const gw_sample *g = &sk->collected[i];
            cs[i] = (cg_sample){.field = g->field, .unit = g->unit, .text = g->text,
                                .value = g->value, .ts_us = g->ts_us, .quality = (int)g->quality,
                                .type = g->type == GW_V_BOOL ? CG_BOOL
                                        : g->type == GW_V_TEXT ? CG_TEXT : CG_NUMBER};
        }
        sk->collecting = 0;
        msg dm = {.sk = sk, .kind = CG_PAYLOAD_BYTES, .p = NULL, .len = 0, .decoder = domain->name};
        cg_ctx *c = domain->ctx;
        c->ops = &msg_ops;
        c->msg = &dm;
        int r = c->plugin->desc.derive(c, cs, sk->n_collected, ops_emit);
        c->msg = NULL;
        if (r < 0)
            rc = sk->consumer_rc ? sk->consumer_rc : r == GW_ENOMEM ? r : sk->rejected ? GW_EDECODE : 0;
    }
    /* A good payload does not end the complaint: bad payloads are per message, and a
     * device that alternates good and bad ones must not log every bad one. */
done:
    gw_decode_json_free(json);
    sink_give(sk);
    return rc;
}

int gw_decode_payload(gw_decoders *d, size_t device_idx, const char *decoder,
                      const void *payload, size_t len, gw_payload_kind kind,
                      int64_t recv_ts_us, gw_decode_emit_fn emit, void *ctx)
{
    return decode(d, device_idx, decoder, payload, len, kind, NULL, recv_ts_us, emit, ctx);
}

int gw_decode_message(gw_decoders *d, size_t device_idx, const char *decoder,
                      const void *payload, size_t len, int64_t recv_ts_us,
                      gw_decode_emit_fn emit, void *ctx)
{
    return decode(d, device_idx, decoder, payload, len, GW_PAYLOAD_AUTO, NULL, recv_ts_us, emit,
                  ctx);
}

int gw_decode_parsed(gw_decoders *d, size_t device_idx, const char *decoder,
                     const void *payload, size_t len, const cJSON *doc, int64_t recv_ts_us,
                     gw_decode_emit_fn emit, void *ctx)
{
    return decode(d, device_idx, decoder, payload, len, GW_PAYLOAD_AUTO, doc, recv_ts_us, emit,
                  ctx);
}
