/* Plugin loading, ABI negotiation, option tables and per-device instances. */
#include "plugin.h"

#include "alloc.h"
#include "decode.h"
#include "error.h"
#include "log.h"
#include "timeutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the built-in table ------------------------------------------------------------------
 * Each plugins/<name>/CMakeLists.txt that builds its plugin into the core adds the source
 * to citygate_core with CG_PLUGIN_BUILTIN and defines CITYGATE_BUILTIN_<NAME> here, so the
 * entry is referenced (and linked) only when the plugin is enabled. */
#define BUILTIN_DECL(name) const cg_plugin_desc *citygate_plugin_entry_##name(const cg_host *, uint32_t);
#ifdef CITYGATE_BUILTIN_CHIRPSTACK
BUILTIN_DECL(chirpstack)
#endif
#ifdef CITYGATE_BUILTIN_TTN
BUILTIN_DECL(ttn)
#endif
#ifdef CITYGATE_BUILTIN_MANHOLE
BUILTIN_DECL(manhole)
#endif
#ifdef CITYGATE_BUILTIN_LAMP
BUILTIN_DECL(lamp)
#endif
#ifdef CITYGATE_BUILTIN_WATER
BUILTIN_DECL(water)
#endif
#ifdef CITYGATE_BUILTIN_GAS
BUILTIN_DECL(gas)
#endif

static const struct builtin {
    const char *name;
    cg_plugin_entry_fn entry;
} builtins[] = {
#ifdef CITYGATE_BUILTIN_CHIRPSTACK
    {"chirpstack", citygate_plugin_entry_chirpstack},
#endif
#ifdef CITYGATE_BUILTIN_TTN
    {"ttn", citygate_plugin_entry_ttn},
#endif
#ifdef CITYGATE_BUILTIN_MANHOLE
    {"manhole", citygate_plugin_entry_manhole},
#endif
#ifdef CITYGATE_BUILTIN_LAMP
    {"lamp", citygate_plugin_entry_lamp},
#endif
#ifdef CITYGATE_BUILTIN_WATER
    {"water", citygate_plugin_entry_water},
#endif
#ifdef CITYGATE_BUILTIN_GAS
    {"gas", citygate_plugin_entry_gas},
#endif
    {NULL, NULL},
};

const char *const *gw_plugins_builtin_names(void)
{
    static const char *names[sizeof builtins / sizeof builtins[0]];
    for (size_t i = 0; builtins[i].name; i++)
        names[i] = builtins[i].name;
    return names;
}

/* ---- the registry --------------------------------------------------------------------- */

typedef struct slot {
    char *name;
    gw_plugin *plugin;  /* NULL when loading failed */
    char *error;        /* the reason, answered again on every lookup */
} slot;

struct gw_plugins {
    char *dir;
    int quiet; /* loads logged at debug */
    slot *slots;
    size_t n, cap;
};

int gw_plugins_create(const char *dir, gw_plugins **out)
{
    gw_plugins *r = gw_calloc(1, sizeof *r);
    if (!r)
        return GW_ENOMEM;
    if (dir && *dir && !(r->dir = gw_strdup(dir))) {
        gw_free(r);
        return GW_ENOMEM;
    }
    *out = r;
    return 0;
}

void gw_plugins_set_quiet(gw_plugins *r, int quiet)
{
    if (r)
        r->quiet = quiet;
}

static void plugin_free(gw_plugin *p)
{
    if (!p)
        return;
    if (p->handle)
        dlclose(p->handle);
    gw_free(p->name);
    gw_free(p->origin);
    gw_free(p);
}

void gw_plugins_free(gw_plugins *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        plugin_free(r->slots[i].plugin);
        gw_free(r->slots[i].name);
        gw_free(r->slots[i].error);
    }
    gw_free(r->slots);
    gw_free(r->dir);
    gw_free(r);
}

static int valid_name(const char *s)
{
    if (!s || !*s || strlen(s) > 63)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static int opt_default_ok(const cg_option *o, char *why, size_t n);

/* Check one option table entry as declared by the plugin. */
static int option_decl_ok(const cg_option *o, char *why, size_t n)
{
    if (!valid_name(o->key)) {
        snprintf(why, n, "option key '%s' is not [a-z0-9_-]+", o->key);
        return 0;
    }
    if (o->type < CG_OPT_INT || o->type > CG_OPT_ENUM) {
        snprintf(why, n, "option '%s' has unknown type %d", o->key, o->type);
        return 0;
    }
    if (o->type == CG_OPT_ENUM && (!o->choices || !*o->choices)) {
        snprintf(why, n, "enum option '%s' declares no choices", o->key);
        return 0;
    }
    return o->def ? opt_default_ok(o, why, n) : 1;
}

/* The size-checked copy of a descriptor: only the bytes the plugin declared are read,
 * everything newer stays zero. Then the negotiation rules of <citygate/plugin.h>. */
static int adopt(const char *name, const char *origin, void *handle, cg_plugin_entry_fn entry,
                 gw_plugin **out, char *err, size_t errlen)
{
    const cg_plugin_desc *d = entry(gw_plugin_host(), CG_ABI_CURRENT);
    if (!d) {
        snprintf(err, errlen, "plugin '%s' (%s): entry returned no descriptor (refused this citygate)",
                 name, origin);
        return GW_EABI;
    }
    if (CG_ABI_MAJOR_OF(d->abi) != CG_ABI_MAJOR) {
        snprintf(err, errlen, "plugin '%s' (%s): ABI major %u, this citygate speaks %u", name,
                 origin, (unsigned)CG_ABI_MAJOR_OF(d->abi), (unsigned)CG_ABI_MAJOR);
        return GW_EABI;
    }
    size_t min_size = offsetof(cg_plugin_desc, decode) + sizeof d->decode;
    if (d->size < min_size) {
        snprintf(err, errlen, "plugin '%s' (%s): descriptor of %u bytes is smaller than ABI %u.0's %zu",
                 name, origin, (unsigned)d->size, (unsigned)CG_ABI_MAJOR, min_size);
        return GW_EABI;
    }
    gw_plugin *p = gw_calloc(1, sizeof *p);
    if (!p)
        return GW_ENOMEM;
    memcpy(&p->desc, d, d->size < sizeof p->desc ? d->size : sizeof p->desc);
    p->handle = handle;
    if (!(p->name = gw_strdup(name)) || !(p->origin = gw_strdup(origin))) {
        p->handle = NULL;
        plugin_free(p);
        return GW_ENOMEM;
    }
    int rc = GW_EABI;
    if (!p->desc.name || strcmp(p->desc.name, name) != 0) {
        snprintf(err, errlen, "plugin '%s' (%s): descriptor names itself '%s'", name, origin,
                 p->desc.name ? p->desc.name : "(null)");
        goto fail;
    }
    if (!p->desc.decode) {
        snprintf(err, errlen, "plugin '%s' (%s): descriptor has no decode function", name, origin);
        goto fail;
    }
    for (const cg_option *o = p->desc.options; o && o->key; o++) {
        char why[160];
        if (!option_decl_ok(o, why, sizeof why)) {
            snprintf(err, errlen, "plugin '%s' (%s): %s", name, origin, why);
            goto fail;
        }
        p->n_options++;
        if (p->n_options > 256) {
            snprintf(err, errlen, "plugin '%s' (%s): option table not terminated", name, origin);
            goto fail;
        }
    }
    *out = p;
    return 0;
fail:
    p->handle = NULL; /* the caller closes it */
    plugin_free(p);
    return rc;
}

static int load_so(gw_plugins *r, const char *name, const char *path, gw_plugin **out, char *err,
                   size_t errlen)
{
    /* RTLD_LOCAL: plugins never see each other's symbols; RTLD_NOW: an unresolved
     * symbol is a load error now, at check time, not a crash at the first message. */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        const char *e = dlerror();
        snprintf(err, errlen, "plugin '%s': cannot load %s: %s", name, path, e ? e : "?");
        return GW_ENOTFOUND;
    }
    dlerror();
    void *sym = dlsym(h, CG_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        snprintf(err, errlen,
                 "plugin '%s' (%s): no symbol %s (not a citygate plugin? build it with CG_PLUGIN_ENTRY)",
                 name, path, CG_PLUGIN_ENTRY_SYMBOL);
        dlclose(h);
        return GW_ENOTFOUND;
    }
    cg_plugin_entry_fn entry;
    memcpy(&entry, &sym, sizeof entry); /* object → function pointer, as POSIX allows */
    int rc = adopt(name, path, h, entry, out, err, errlen);
    if (rc != 0)
        dlclose(h);
    (void)r;
    return rc;
}

static int remember(gw_plugins *r, const char *name, gw_plugin *p, const char *error)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 8;
        slot *s = gw_realloc(r->slots, cap * sizeof *s);
        if (!s)
            return GW_ENOMEM;
        r->slots = s;
        r->cap = cap;
    }
    slot *s = &r->slots[r->n];
    memset(s, 0, sizeof *s);
    s->name = gw_strdup(name);
    s->error = error ? gw_strdup(error) : NULL;
    if (!s->name || (error && !s->error)) {
        gw_free(s->name);
        gw_free(s->error);
        return GW_ENOMEM;
    }
    s->plugin = p;
    r->n++;
    return 0;
}

static int find_and_load(gw_plugins *r, const char *name, cg_plugin_entry_fn entry,
                         const char *origin, const gw_plugin **out, char *err, size_t errlen)
{
    for (size_t i = 0; i < r->n; i++) {
        if (strcmp(r->slots[i].name, name) != 0)
            continue;
        if (r->slots[i].plugin) {
            *out = r->slots[i].plugin;
            return 0;
        }
        snprintf(err, errlen, "%s", r->slots[i].error);
        return strstr(r->slots[i].error, "ABI") || strstr(r->slots[i].error, "descriptor")
                   ? GW_EABI
                   : GW_ENOTFOUND;
    }
    gw_plugin *p = NULL;
    int rc;
    if (entry) {
        rc = adopt(name, origin, NULL, entry, &p, err, errlen);
    } else {
        rc = GW_ENOTFOUND;
        char path[4096];
        struct stat st;
        if (r->dir && snprintf(path, sizeof path, "%s/%s.so", r->dir, name) < (int)sizeof path &&
            stat(path, &st) == 0) {
            rc = load_so(r, name, path, &p, err, errlen);
            if (rc == 0)
                gw_log(r->quiet ? GW_LOG_DEBUG : GW_LOG_INFO, "plugin", "loaded plugin '%s' %s from %s",
                       name, p->desc.version ? p->desc.version : "", path);
        } else {
            for (size_t i = 0; builtins[i].name; i++)
                if (strcmp(builtins[i].name, name) == 0) {
                    rc = adopt(name, "built-in", NULL, builtins[i].entry, &p, err, errlen);
                    break;
                }
            if (rc == GW_ENOTFOUND && !p)
                snprintf(err, errlen, "plugin '%s': not built in and no %s/%s.so", name,
                         r->dir ? r->dir : "(no plugins directory)", name);
        }
    }
    if (rc == GW_ENOMEM)
        return rc;
    int mrc = remember(r, name, p, rc == 0 ? NULL : err);
    if (mrc != 0) {
        plugin_free(p);
        return mrc;
    }
    if (rc == 0)
        *out = p;
    return rc;
}

int gw_plugins_get(gw_plugins *r, const char *name, const gw_plugin **out, char *err,
                   size_t errlen)
{
    if (!valid_name(name)) {
        snprintf(err, errlen, "plugin '%s': a plugin name is [a-z0-9_-]+", name ? name : "");
        return GW_EINVAL;
    }
    return find_and_load(r, name, NULL, NULL, out, err, errlen);
}

int gw_plugins_add(gw_plugins *r, const char *name, cg_plugin_entry_fn entry,
                   const char *origin, char *err, size_t errlen)
{
    const gw_plugin *p;
    if (!valid_name(name) || !entry) {
        snprintf(err, errlen, "plugin '%s': bad name or entry", name ? name : "");
        return GW_EINVAL;
    }
    return find_and_load(r, name, entry, origin ? origin : "added", &p, err, errlen);
}

/* ---- options ---------------------------------------------------------------------------- */

static int enum_index(const char *choices, const char *word, size_t wlen)
{
    int idx = 0;
    const char *s = choices;
    for (;;) {
        const char *bar = strchr(s, '|');
        size_t n = bar ? (size_t)(bar - s) : strlen(s);
        if (n == wlen && strncmp(s, word, n) == 0)
            return idx;
        if (!bar)
            return -1;
        s = bar + 1;
        idx++;
    }
}

static int bounded(const cg_option *o)
{
    return o->min < o->max;
}

/* Parse one value (a cJSON node) for option o; on success fill v (v->s allocated). */
static int parse_value(const cg_option *o, const cJSON *j, gw_optval *v, char *why, size_t n)
{
    switch (o->type) {
    case CG_OPT_INT:
    case CG_OPT_DOUBLE: {
        if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble)) {
            snprintf(why, n, "must be a number");
            return GW_EINVAL;
        }
        double x = j->valuedouble;
        if (o->type == CG_OPT_INT && (x != floor(x) || fabs(x) > 9007199254740992.0)) {
            snprintf(why, n, "must be an integer, got %g", x);
            return GW_EINVAL;
        }
        if (bounded(o) && (x < o->min || x > o->max)) {
            snprintf(why, n, "must be %g..%g, got %g", o->min, o->max, x);
            return GW_EINVAL;
        }
        v->d = x;
        v->i = (int64_t)x;
        return 0;
    }
    case CG_OPT_BOOL:
        if (!cJSON_IsBool(j)) {
            snprintf(why, n, "must be true or false");
            return GW_EINVAL;
        }
        v->i = cJSON_IsTrue(j);
        v->d = (double)v->i;
        return 0;
    case CG_OPT_STRING:
    case CG_OPT_ENUM: {
        if (!cJSON_IsString(j) || !j->valuestring) {
            snprintf(why, n, "must be a string");
            return GW_EINVAL;
        }
        const char *s = j->valuestring;
        if (o->type == CG_OPT_ENUM) {
            int idx = enum_index(o->choices, s, strlen(s));
            if (idx < 0) {
                snprintf(why, n, "must be one of %s, got '%.40s'", o->choices, s);
                return GW_EINVAL;
            }
            v->i = idx;
        } else if (o->max > 0 && strlen(s) > (size_t)o->max) {
            snprintf(why, n, "at most %g bytes", o->max);
            return GW_EINVAL;
        }
        if (!(v->s = gw_strdup(s)))
            return GW_ENOMEM;
        return 0;
    }
    }
    snprintf(why, n, "unknown option type");
    return GW_EINVAL;
}

/* Defaults are JSON text, except strings and enums which may be bare words. */
static int parse_default(const cg_option *o, gw_optval *v, char *why, size_t n)
{
    cJSON *j = NULL;
    if ((o->type == CG_OPT_STRING || o->type == CG_OPT_ENUM) && o->def[0] != '"')
        j = cJSON_CreateString(o->def);
    else
        j = cJSON_Parse(o->def);
    if (!j) {
        snprintf(why, n, "default '%s' is not valid", o->def);
        return GW_EINVAL;
    }
    int rc = parse_value(o, j, v, why, n);
    cJSON_Delete(j);
    return rc;
}

static int opt_default_ok(const cg_option *o, char *why, size_t n)
{
    gw_optval v = {0};
    char inner[120];
    int rc = parse_default(o, &v, inner, sizeof inner);
    gw_free(v.s);
    if (rc != 0)
        snprintf(why, n, "option '%s': default: %s", o->key, inner);
    return rc == 0;
}

/* Edit distance (insert, delete, substitute, swap of neighbours), for suggestions. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t n = strlen(a), m = strlen(b);
    if (n > 63 || m > 63)
        return 99;
    size_t d[64][64];
    for (size_t i = 0; i <= n; i++)
        d[i][0] = i;
    for (size_t j = 0; j <= m; j++)
        d[0][j] = j;
    for (size_t i = 1; i <= n; i++)
        for (size_t j = 1; j <= m; j++) {
            size_t c = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < c)
                c = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < c)
                c = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < c)
                c = d[i - 2][j - 2] + 1;
            d[i][j] = c;
        }
    return d[n][m];
}

static const char *closest_key(const gw_plugin *p, const char *key)
{
    /* A declared key within two edits, or one the typed key is a prefix of. */
    const char *best = NULL;
    size_t best_d = 3;
    for (size_t i = 0; i < p->n_options; i++) {
        const char *k = p->desc.options[i].key;
        size_t d = edit_distance(k, key);
        if (d < best_d || (!best && strlen(key) >= 3 && strncmp(k, key, strlen(key)) == 0)) {
            best = k;
            best_d = d < best_d ? d : best_d;
        }
    }
    return best;
}

int gw_plugin_options_parse(const gw_plugin *p, const cJSON *options, gw_optval *vals,
                            gw_cfgerr *errs, const char *file, const char *path)
{
    int bad = 0;
    char why[200];
    if (options && !cJSON_IsObject(options)) {
        gw_cfgerr_add(errs, file, path, "must be an object");
        return GW_ECONFIG;
    }
    /* Unknown keys first: a typo is the commonest mistake. */
    for (const cJSON *it = options ? options->child : NULL; it; it = it->next) {
        size_t i = 0;
        while (i < p->n_options && strcmp(p->desc.options[i].key, it->string) != 0)
            i++;
        if (i == p->n_options) {
            const char *s = closest_key(p, it->string);
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%s", path, it->string);
            if (s)
                gw_cfgerr_add(errs, file, sub, "unknown option for plugin '%s' (did you mean '%s'?)",
                              p->name, s);
            else if (p->n_options)
                gw_cfgerr_add(errs, file, sub, "unknown option for plugin '%s' (it knows: %s%s)",
                              p->name, p->desc.options[0].key, p->n_options > 1 ? ", ..." : "");
            else
                gw_cfgerr_add(errs, file, sub, "unknown option: plugin '%s' takes no options",
                              p->name);
            bad = 1;
        }
    }
    for (size_t i = 0; i < p->n_options; i++) {
        const cg_option *o = &p->desc.options[i];
        const cJSON *j = options ? cJSON_GetObjectItemCaseSensitive(options, o->key) : NULL;
        char sub[256];
        snprintf(sub, sizeof sub, "%s.%s", path, o->key);
        int rc;
        if (j) {
            rc = parse_value(o, j, &vals[i], why, sizeof why);
        } else if (o->def) {
            rc = parse_default(o, &vals[i], why, sizeof why);
        } else {
            snprintf(why, sizeof why, "required by plugin '%s' (%s)", p->name,
                     o->help ? o->help : "no help");
            rc = GW_EINVAL;
        }
        if (rc == GW_ENOMEM)
            return rc;
        if (rc != 0) {
            gw_cfgerr_add(errs, file, sub, "%s", why);
            bad = 1;
        }
    }
    return bad ? GW_ECONFIG : 0;
}

void gw_plugin_options_free(const gw_plugin *p, gw_optval *vals)
{
    if (!vals)
        return;
    for (size_t i = 0; i < p->n_options; i++)
        gw_free(vals[i].s);
}

/* ---- instances -------------------------------------------------------------------------- */

int gw_plugin_instance_create(const gw_plugin *p, const gw_device *device, size_t device_idx,
                              const cJSON *options, gw_cfgerr *errs, const char *file,
                              const char *path, cg_ctx **out)
{
    cg_ctx *c = gw_calloc(1, sizeof *c);
    if (!c)
        return GW_ENOMEM;
    c->plugin = p;
    c->device = device;
    c->device_idx = device_idx;
    int rc = GW_ENOMEM;
    if (p->n_options && !(c->opts = gw_calloc(p->n_options, sizeof *c->opts)))
        goto fail_opts;
    rc = gw_plugin_options_parse(p, options, c->opts, errs, file, path);
    if (rc != 0)
        goto fail_parse;
    if (p->desc.init) {
        rc = p->desc.init(c, &c->state);
        if (rc != 0) {
            gw_cfgerr_add(errs, file, path, "plugin '%s': init for device '%s' failed: %s",
                          p->name, device && device->id ? device->id : "?", gw_strerror(rc));
            rc = rc == GW_ENOMEM ? rc : GW_ECONFIG;
            goto fail_parse;
        }
    }
    *out = c;
    return 0;
fail_parse:
    gw_plugin_options_free(p, c->opts);
    gw_free(c->opts);
fail_opts:
    gw_free(c);
    return rc;
}

void gw_plugin_instance_free(cg_ctx *c)
{
    if (!c)
        return;
    if (c->plugin->desc.fini)
        c->plugin->desc.fini(c, c->state);
    gw_plugin_options_free(c->plugin, c->opts);
    gw_free(c->opts);
    gw_free(c);
}

/* ---- the host table ------------------------------------------------------------------- */

static void host_log(const cg_ctx *ctx, int level, const char *msg)
{
    if (level < CG_LOG_ERROR || level > CG_LOG_DEBUG)
        level = CG_LOG_INFO;
    if (ctx)
        gw_log((gw_log_level)level, "plugin", "%s: device %s: %s", ctx->plugin->name,
               ctx->device && ctx->device->id ? ctx->device->id : "?", msg ? msg : "");
    else
        gw_log((gw_log_level)level, "plugin", "%s", msg ? msg : "");
}

static int host_emit(cg_ctx *ctx, const cg_sample *s)
{
    return ctx && ctx->ops ? ctx->ops->emit(ctx, s) : CG_EINVAL;
}

static int host_reject(cg_ctx *ctx, int reason, const char *detail)
{
    return ctx && ctx->ops ? ctx->ops->reject(ctx, reason, detail) : CG_EDECODE;
}

static const char *host_device_id(const cg_ctx *ctx)
{
    return ctx && ctx->device && ctx->device->id ? ctx->device->id : "";
}

static int host_device_param(const cg_ctx *ctx, const char *key, double *out)
{
    if (!ctx || !ctx->device || !key)
        return CG_ENOTFOUND;
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(ctx->device->params, key);
    if (cJSON_IsBool(j)) {
        *out = cJSON_IsTrue(j);
        return 0;
    }
    if (!cJSON_IsNumber(j) || !isfinite(j->valuedouble))
        return CG_ENOTFOUND;
    *out = j->valuedouble;
    return 0;
}

static int host_device_location(const cg_ctx *ctx, double *lon, double *lat)
{
    if (!ctx || !ctx->device || !ctx->device->component.location.has)
        return CG_ENOTFOUND;
    *lon = ctx->device->component.location.lon;
    *lat = ctx->device->component.location.lat;
    return 0;
}

static const gw_optval *opt_find(const cg_ctx *ctx, const char *key, int *type)
{
    if (!ctx || !key)
        return NULL;
    for (size_t i = 0; i < ctx->plugin->n_options; i++)
        if (strcmp(ctx->plugin->desc.options[i].key, key) == 0) {
            *type = ctx->plugin->desc.options[i].type;
            return &ctx->opts[i];
        }
    return NULL;
}

static int64_t host_opt_int(const cg_ctx *ctx, const char *key)
{
    int t = 0;
    const gw_optval *v = opt_find(ctx, key, &t);
    return v && t != CG_OPT_STRING ? v->i : 0;
}

static double host_opt_double(const cg_ctx *ctx, const char *key)
{
    int t = 0;
    const gw_optval *v = opt_find(ctx, key, &t);
    return v && (t == CG_OPT_DOUBLE || t == CG_OPT_INT) ? v->d : 0.0;
}

static int host_opt_bool(const cg_ctx *ctx, const char *key)
{
    int t = 0;
    const gw_optval *v = opt_find(ctx, key, &t);
    return v && t == CG_OPT_BOOL ? (int)v->i : 0;
}

static const char *host_opt_string(const cg_ctx *ctx, const char *key)
{
    int t = 0;
    const gw_optval *v = opt_find(ctx, key, &t);
    return v && v->s && (t == CG_OPT_STRING || t == CG_OPT_ENUM) ? v->s : "";
}

static void *host_state(const cg_ctx *ctx)
{
    return ctx ? ctx->state : NULL;
}

static int64_t host_message_time(const cg_ctx *ctx)
{
    return ctx && ctx->ops ? ctx->ops->message_time(ctx) : 0;
}

static void host_set_message_time(cg_ctx *ctx, int64_t ts_us)
{
    if (ctx && ctx->ops)
        ctx->ops->set_message_time(ctx, ts_us);
}

static int host_payload_kind(const cg_ctx *ctx)
{
    return ctx && ctx->ops ? ctx->ops->payload_kind(ctx) : CG_PAYLOAD_BYTES;
}

static int host_json_number(cg_ctx *ctx, const char *path, double *out)
{
    return ctx && ctx->ops && out ? ctx->ops->json_get(ctx, path, 0, out, NULL, 0) : CG_EINVAL;
}

static int host_json_string(cg_ctx *ctx, const char *path, char *buf, size_t n)
{
    return ctx && ctx->ops && buf && n ? ctx->ops->json_get(ctx, path, 1, NULL, buf, n) : CG_EINVAL;
}

static int host_json_has(cg_ctx *ctx, const char *path)
{
    return ctx && ctx->ops ? ctx->ops->json_get(ctx, path, 2, NULL, NULL, 0) == 0 : 0;
}

static int host_json_count(cg_ctx *ctx, const char *path)
{
    double n = 0;
    if (!ctx || !ctx->ops || ctx->ops->json_get(ctx, path, 3, &n, NULL, 0) != 0)
        return 0;
    return (int)n;
}

static int host_json_time(cg_ctx *ctx, const char *path, int64_t *ts_us)
{
    char buf[64];
    double x;
    if (!ctx || !ctx->ops || !ts_us)
        return CG_EINVAL;
    int rc = ctx->ops->json_get(ctx, path, 1, NULL, buf, sizeof buf);
    if (rc == 0)
        return gw_parse_rfc3339(buf, ts_us) == 0 ? 0 : CG_EINVAL;
    if (rc != CG_EINVAL)
        return rc;
    if (ctx->ops->json_get(ctx, path, 0, &x, NULL, 0) != 0 || x <= 0 || x > 1e16)
        return CG_EINVAL;
    *ts_us = x > 1e12 ? (int64_t)(x * 1000.0) : (int64_t)(x * 1e6);
    return 0;
}

static int host_chain(cg_ctx *ctx, const char *path, int how)
{
    return ctx && ctx->ops ? ctx->ops->chain(ctx, path, how) : CG_EINVAL;
}

static int host_chain_bytes(cg_ctx *ctx, const uint8_t *bytes, size_t len)
{
    return ctx && ctx->ops ? ctx->ops->chain_bytes(ctx, bytes, len) : CG_EINVAL;
}

static const cg_host host_table = {
    .abi = CG_ABI_CURRENT,
    .size = sizeof(cg_host),
    .log = host_log,
    .alloc = gw_malloc,
    .free = gw_free,
    .emit = host_emit,
    .reject = host_reject,
    .device_id = host_device_id,
    .device_param = host_device_param,
    .device_location = host_device_location,
    .opt_int = host_opt_int,
    .opt_double = host_opt_double,
    .opt_bool = host_opt_bool,
    .opt_string = host_opt_string,
    .state = host_state,
    .message_time = host_message_time,
    .set_message_time = host_set_message_time,
    .payload_kind = host_payload_kind,
    .json_number = host_json_number,
    .json_string = host_json_string,
    .json_has = host_json_has,
    .chain = host_chain,
    .chain_bytes = host_chain_bytes,
    .json_count = host_json_count,
    .json_time = host_json_time,
};

const cg_host *gw_plugin_host(void)
{
    return &host_table;
}

/* ---- check -------------------------------------------------------------------------------- */

int gw_plugins_check(const gw_config *cfg, gw_cfgerr *errs)
{
    size_t before = errs->n;
    gw_decoders *d = NULL;
    gw_decoders_opts opts = {.quiet = 1};
    int rc = gw_decoders_create(cfg, &opts, errs, &d);
    gw_decoders_free(d);
    if (rc == GW_ENOMEM) {
        gw_cfgerr_add(errs, cfg->file, "", "out of memory while checking plugins");
        return GW_ECONFIG;
    }
    return errs->n > before || rc != 0 ? GW_ECONFIG : 0;
}
