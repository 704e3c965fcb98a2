/* The simulated devices: plausible values, random walks, register images (see
 * sim_model.h). */
#include "sim_model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "timeutil.h"

#define AREA "sim"

/* ---- deterministic randomness ------------------------------------------------------ */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double urand(uint64_t *s)
{
    return (double)(splitmix(s) >> 11) / 9007199254740992.0;
}

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* ---- what a field is ---------------------------------------------------------------- */

enum { FAM_NONE = 0, FAM_V, FAM_A, FAM_W, FAM_E, FAM_P, FAM_L };

static const struct {
    const char *unit;
    int fam;
    double factor; /* field unit per base unit */
} UNITS[] = {
    {"V", FAM_V, 1},       {"kV", FAM_V, 0.001},   {"mV", FAM_V, 1000},
    {"A", FAM_A, 1},       {"mA", FAM_A, 1000},
    {"W", FAM_W, 1},       {"kW", FAM_W, 0.001},   {"VA", FAM_W, 1},
    {"kVA", FAM_W, 0.001}, {"var", FAM_W, 1},      {"kvar", FAM_W, 0.001},
    {"kWh", FAM_E, 1},     {"Wh", FAM_E, 1000},    {"MWh", FAM_E, 0.001},
    {"kvarh", FAM_E, 1},
    {"MPa", FAM_P, 1},     {"kPa", FAM_P, 1000},   {"Pa", FAM_P, 1e6},
    {"bar", FAM_P, 10},    {"mbar", FAM_P, 1e4},   {"psi", FAM_P, 145.038},
    {"mH2O", FAM_P, 101.97},
    {"m", FAM_L, 1},       {"cm", FAM_L, 100},     {"mm", FAM_L, 1000},
};

static int unit_family(const char *unit, double *factor)
{
    for (size_t i = 0; i < sizeof UNITS / sizeof UNITS[0]; i++)
        if (strcmp(UNITS[i].unit, unit) == 0) {
            *factor = UNITS[i].factor;
            return UNITS[i].fam;
        }
    *factor = 1;
    return FAM_NONE;
}

static int has(const char *name, const char *part)
{
    return strstr(name, part) != NULL;
}

static int starts(const char *name, const char *prefix)
{
    return strncmp(name, prefix, strlen(prefix)) == 0;
}

static double param_num(const gw_device *dev, const char *key, double dflt)
{
    const cJSON *v = dev->params ? cJSON_GetObjectItemCaseSensitive(dev->params, key) : NULL;
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static double rated_power_w(const gw_device *dev)
{
    int lamp = dev->kind && strcmp(dev->kind, "lamp") == 0;
    return param_num(dev, "rated_power_w", lamp ? 100 : 1000);
}

/* Choose the enum code a healthy device reports: a "normal"-looking label, else the
 * first. */
static double enum_normal(const gw_profile_point *pt)
{
    static const char *const good[] = {"normal", "ok", "full", "open", "idle", "none", "on"};
    for (size_t g = 0; g < sizeof good / sizeof good[0]; g++)
        for (size_t i = 0; i < pt->n_enums; i++)
            if (strcmp(pt->enums[i].label, good[g]) == 0)
                return pt->enums[i].raw;
    return pt->n_enums ? pt->enums[0].raw : 0;
}

/* Name heuristics for booleans of a healthy device: 1 for "valve_open", 0 for alarms. */
static double bool_normal(const char *name)
{
    static const char *const ones[] = {"valve", "closed", "ok", "normal", "online",
                                       "present", "full", "healthy"};
    for (size_t i = 0; i < sizeof ones / sizeof ones[0]; i++)
        if (has(name, ones[i]))
            return 1;
    return 0;
}

static int is_relay(const char *name)
{
    return has(name, "relay") || has(name, "lamp_on") || strcmp(name, "on") == 0 ||
           has(name, "switch");
}

/* Set role, band and start value of f for device dev. Bands are chosen in base units
 * (V, A, W, kWh, MPa, m) and converted with the field's unit. */
static void classify(sim_device *d, sim_field *f)
{
    const gw_device *dev = d->cfg;
    const char *n = f->name;
    const char *kind = dev->kind ? dev->kind : "";
    const gw_profile_point *pt = f->pt;
    int fam = unit_family(f->unit, &f->factor);
    double lo = 10, hi = 12;
    int scaled = 1; /* band is in base units: multiply by factor */
    double step_frac = 0.08; /* walk step as a share of the band */
    f->role = SIM_ROLE_WALK;

    if (pt && pt->type == GW_PT_STRING) {
        f->is_text = 1;
        f->role = SIM_ROLE_CONST;
        snprintf(f->text, sizeof f->text, "SIM-%s", dev->id);
        return;
    }
    if (pt && pt->type == GW_PT_ENUM) {
        f->role = SIM_ROLE_CONST;
        f->value = enum_normal(pt);
        return;
    }
    if (f->is_bool) {
        f->role = is_relay(n) ? SIM_ROLE_RELAY : SIM_ROLE_CONST;
        f->value = bool_normal(n);
        return;
    }

    if (has(n, "battery")) {
        if (fam == FAM_V)
            lo = 3.55, hi = 3.65;
        else
            lo = 85, hi = 95, scaled = 0;
    } else if (has(n, "status") || has(n, "state") || has(n, "mode") || has(n, "alarm") ||
               has(n, "fault") || has(n, "error") || has(n, "code") || has(n, "address") ||
               has(n, "baud") || has(n, "decimal") || has(n, "config")) {
        f->role = SIM_ROLE_CONST;
        lo = hi = (pt && pt->has_min) ? pt->min : 0;
        scaled = 0;
    } else if (has(n, "export")) {
        f->role = SIM_ROLE_CONST; /* street lighting exports nothing */
        lo = hi = 0;
    } else if (has(n, "apparent")) {
        f->role = SIM_ROLE_APPARENT;
    } else if (has(n, "reactive") && fam == FAM_W) {
        f->role = SIM_ROLE_REACTIVE;
    } else if (has(n, "phase")) {
        f->role = SIM_ROLE_PHASE;
        lo = 14, hi = 23, scaled = 0;
    } else if (has(n, "factor") || strcmp(n, "pf") == 0 || starts(n, "pf_")) {
        f->role = SIM_ROLE_PF;
        lo = 0.92, hi = 0.97, scaled = 0;
    } else if (has(n, "dim")) {
        f->role = SIM_ROLE_DIM;
        lo = hi = 100, scaled = 0;
    } else if (has(n, "energy") || fam == FAM_E) {
        f->role = SIM_ROLE_ENERGY;
        lo = 100, hi = 5000;
    } else if (has(n, "power") || (fam == FAM_W && !has(n, "apparent"))) {
        f->role = SIM_ROLE_POWER;
        double r = rated_power_w(dev);
        lo = r * 0.9, hi = r * 1.05;
    } else if (has(n, "leak")) {
        lo = 0.002, hi = 0.005;
    } else if (has(n, "current") || fam == FAM_A) {
        f->role = SIM_ROLE_CURRENT;
        lo = 0.4, hi = 0.5;
    } else if (has(n, "volt") || fam == FAM_V) {
        f->role = SIM_ROLE_VOLTAGE;
        lo = 220, hi = 230;
    } else if (has(n, "freq") || strcmp(f->unit, "Hz") == 0) {
        lo = 49.95, hi = 50.05, scaled = 0;
    } else if (has(n, "tilt") || has(n, "angle") || has(n, "incl")) {
        lo = 0, hi = 2, scaled = 0;
    } else if (has(n, "ch4") || has(n, "lel") || has(n, "combust") || has(f->unit, "LEL")) {
        lo = 0, hi = strcmp(kind, "gas") == 0 ? 5 : 3, scaled = 0;
    } else if (has(n, "h2s")) {
        lo = 0, hi = 2, scaled = 0;
    } else if (strcmp(n, "co") == 0 || starts(n, "co_")) {
        lo = 0, hi = 5, scaled = 0;
    } else if (starts(n, "o2") || has(n, "_o2") || has(n, "oxygen")) {
        lo = 20.6, hi = 20.9, scaled = 0;
    } else if (has(n, "pressure") || fam == FAM_P) {
        if (strcmp(kind, "gas") == 0 && strcmp(f->unit, "kPa") == 0)
            lo = 2.0, hi = 2.6, scaled = 0; /* street-level low-pressure distribution */
        else if (strcmp(kind, "gas") == 0)
            lo = 0.2, hi = 0.3;
        else {
            /* A water main at rest moves by a few kPa: the default 8 % step (0.008 MPa a
             * second) would walk at 0.02-0.03 MPa/min, beyond the clear limit of the
             * burst rule (rules/water.json), and a repaired pipe would never clear. */
            lo = 0.25, hi = 0.35;
            step_frac = 0.01;
        }
    } else if (has(n, "distance")) {
        lo = 1.8, hi = 2.2;
    } else if (has(n, "level") && !has(n, "alarm")) {
        lo = 0.2, hi = 0.5;
    } else if (has(n, "depth") || fam == FAM_L) {
        lo = 0.2, hi = 0.5;
    } else if (has(n, "reverse")) {
        f->role = SIM_ROLE_CONST;
        lo = hi = 0;
    } else if (has(n, "total") || has(n, "cumul") || has(n, "forward") || has(n, "volume") ||
               has(n, "hours") || has(n, "count")) {
        f->role = SIM_ROLE_ENERGY;
        lo = 10, hi = 1000, scaled = 0;
    } else if (has(n, "flow")) {
        lo = 0.5, hi = 3, scaled = 0;
    } else if (has(n, "temp")) {
        lo = 18, hi = 26, scaled = 0;
    } else if (has(n, "humid")) {
        lo = 50, hi = 70, scaled = 0;
    } else if (has(n, "turbid")) {
        lo = 0.2, hi = 0.5, scaled = 0;
    } else if (has(n, "chlorine")) {
        lo = 0.2, hi = 0.4, scaled = 0;
    } else if (strcmp(n, "ph") == 0 || starts(n, "ph_")) {
        lo = 7.0, hi = 7.6, scaled = 0;
    } else if (has(n, "rssi")) {
        if (dev->source == GW_SRC_MODBUS)
            f->role = SIM_ROLE_CONST, lo = hi = 0;
        else
            lo = -85, hi = -70;
        scaled = 0;
    } else if (has(n, "snr")) {
        lo = 5, hi = 10, scaled = 0;
    } else if (has(n, "csq")) {
        lo = 18, hi = 25, scaled = 0;
    } else if (pt && pt->has_min && pt->has_max) {
        lo = pt->min + 0.2 * (pt->max - pt->min);
        hi = pt->min + 0.4 * (pt->max - pt->min);
        scaled = 0;
    } else {
        scaled = 0;
    }

    if (scaled) {
        lo *= f->factor;
        hi *= f->factor;
    }
    if (pt && pt->has_min && lo < pt->min)
        lo = pt->min;
    if (pt && pt->has_max && hi > pt->max)
        hi = pt->max;
    if (hi < lo)
        hi = lo;
    f->lo = lo;
    f->hi = hi;
    f->step = (hi - lo) * step_frac;
    f->value = lo + (hi - lo) * urand(&d->rng);
}

/* ---- construction -------------------------------------------------------------------- */

static int image_alloc(sim_device *d)
{
    uint32_t lo[GW_MB__TABLES], hi[GW_MB__TABLES];
    for (int t = 0; t < GW_MB__TABLES; t++)
        lo[t] = UINT32_MAX, hi[t] = 0;
    for (size_t i = 0; i < d->profile->n_points; i++) {
        const gw_profile_point *pt = &d->profile->points[i];
        uint32_t a = pt->address, e = a + (pt->count ? pt->count : 1);
        if (a < lo[pt->table]) lo[pt->table] = a;
        if (e > hi[pt->table]) hi[pt->table] = e;
        if (pt->has_dp) {
            if (pt->dp_address < lo[pt->dp_table]) lo[pt->dp_table] = pt->dp_address;
            if ((uint32_t)pt->dp_address + 1 > hi[pt->dp_table]) hi[pt->dp_table] = pt->dp_address + 1u;
        }
    }
    for (int t = 0; t < GW_MB__TABLES; t++) {
        if (hi[t] <= lo[t])
            continue;
        sim_image *im = &d->img[t];
        im->base = lo[t];
        im->len = hi[t] - lo[t];
        im->val = gw_calloc(im->len, sizeof *im->val);
        im->def = gw_calloc(im->len, 1);
        if (!im->val || !im->def)
            return GW_ENOMEM;
    }
    for (size_t i = 0; i < d->profile->n_points; i++) {
        const gw_profile_point *pt = &d->profile->points[i];
        sim_image *im = &d->img[pt->table];
        memset(im->def + (pt->address - im->base), 1, pt->count ? pt->count : 1);
        if (pt->has_dp)
            d->img[pt->dp_table].def[pt->dp_address - d->img[pt->dp_table].base] = 1;
    }
    return 0;
}

static int is_dp_register(const gw_profile *p, const gw_profile_point *pt)
{
    for (size_t i = 0; i < p->n_points; i++)
        if (p->points[i].has_dp && p->points[i].dp_table == pt->table &&
            p->points[i].dp_address == pt->address)
            return 1;
    return 0;
}

static int fields_from_profile(sim_device *d)
{
    const gw_profile *p = d->profile;
    d->fields = gw_calloc(p->n_points + 1, sizeof *d->fields);
    if (!d->fields)
        return GW_ENOMEM;
    for (size_t i = 0; i < p->n_points; i++) {
        const gw_profile_point *pt = &p->points[i];
        sim_field *f = &d->fields[d->n_fields++];
        snprintf(f->name, sizeof f->name, "%s", pt->field);
        snprintf(f->unit, sizeof f->unit, "%s", pt->unit);
        f->pt = pt;
        f->is_bool = pt->type == GW_PT_BOOL || pt->type == GW_PT_BIT;
        if (is_dp_register(p, pt)) {
            f->role = SIM_ROLE_DP;
            continue;
        }
        classify(d, f);
    }
    return 0;
}

/* MQTT devices without a generic profile of their kind: a minimal field set. */
static const struct {
    const char *kind, *field, *unit;
    int is_bool;
} FALLBACK[] = {
    {"manhole", "tilt_deg", "deg", 0},    {"manhole", "cover_open", "", 1},
    {"manhole", "water_level_m", "m", 0}, {"manhole", "ch4_lel", "%LEL", 0},
    {"lamp", "voltage_v", "V", 0},        {"lamp", "current_a", "A", 0},
    {"lamp", "power_w", "W", 0},          {"lamp", "power_factor", "", 0},
    {"lamp", "relay_on", "", 1},
    {"water", "pressure_mpa", "MPa", 0},  {"water", "flow_m3h", "m3/h", 0},
    {"gas", "ch4_lel", "%LEL", 0},        {"gas", "pressure_kpa", "kPa", 0},
};

static int fields_for_mqtt(sim_device *d)
{
    size_t cap = 16 + (d->profile ? d->profile->n_points : 0);
    d->fields = gw_calloc(cap, sizeof *d->fields);
    if (!d->fields)
        return GW_ENOMEM;
    if (d->profile) {
        for (size_t i = 0; i < d->profile->n_points; i++) {
            const gw_profile_point *pt = &d->profile->points[i];
            if (pt->type == GW_PT_STRING || is_dp_register(d->profile, pt))
                continue;
            sim_field *f = &d->fields[d->n_fields++];
            snprintf(f->name, sizeof f->name, "%s", pt->field);
            snprintf(f->unit, sizeof f->unit, "%s", pt->unit);
            f->is_bool = pt->type == GW_PT_BOOL || pt->type == GW_PT_BIT;
        }
    } else {
        for (size_t i = 0; i < sizeof FALLBACK / sizeof FALLBACK[0]; i++) {
            if (!d->cfg->kind || strcmp(FALLBACK[i].kind, d->cfg->kind) != 0)
                continue;
            sim_field *f = &d->fields[d->n_fields++];
            snprintf(f->name, sizeof f->name, "%s", FALLBACK[i].field);
            snprintf(f->unit, sizeof f->unit, "%s", FALLBACK[i].unit);
            f->is_bool = FALLBACK[i].is_bool;
        }
    }
    /* Battery-powered radio sensors report their battery; the rules watch it. */
    if (!sim_model_field(d, "battery_pct") && !sim_model_field(d, "battery_v")) {
        sim_field *f = &d->fields[d->n_fields++];
        snprintf(f->name, sizeof f->name, "battery_pct");
        snprintf(f->unit, sizeof f->unit, "%%");
    }
    /* Fields are classified without a point, so the profile's point is not used for
     * encoding (there are no registers). */
    for (size_t i = 0; i < d->n_fields; i++)
        classify(d, &d->fields[i]);
    return 0;
}

/* Apply a point's "sim" hints from the profile file (docs/simulator.md):
 * {"range": [lo, hi]} walk band, {"value": v} constant, {"step": s} walk step. */
static void apply_hints(sim_device *d, const cJSON *points)
{
    const cJSON *pj = points ? points->child : NULL;
    for (size_t i = 0; pj && i < d->profile->n_points; i++, pj = pj->next) {
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(pj, "sim");
        sim_field *f = cJSON_IsObject(h) ? sim_model_field(d, d->profile->points[i].field) : NULL;
        if (!f || f->role == SIM_ROLE_DP)
            continue;
        for (const cJSON *k = h->child; k; k = k->next) {
            if (strcmp(k->string, "range") == 0 && cJSON_GetArraySize(k) == 2 &&
                cJSON_IsNumber(k->child) && cJSON_IsNumber(k->child->next) &&
                k->child->valuedouble <= k->child->next->valuedouble) {
                f->lo = k->child->valuedouble;
                f->hi = k->child->next->valuedouble;
                f->step = (f->hi - f->lo) * 0.08;
                f->value = f->lo + (f->hi - f->lo) * urand(&d->rng);
                if (f->role == SIM_ROLE_CONST)
                    f->role = SIM_ROLE_WALK;
            } else if (strcmp(k->string, "value") == 0 && (cJSON_IsNumber(k) || cJSON_IsBool(k))) {
                f->value = cJSON_IsNumber(k) ? k->valuedouble : cJSON_IsTrue(k);
                f->lo = f->hi = f->value;
                f->role = SIM_ROLE_CONST;
            } else if (strcmp(k->string, "value") == 0 && cJSON_IsString(k) && f->is_text) {
                snprintf(f->text, sizeof f->text, "%s", k->valuestring);
            } else if (strcmp(k->string, "step") == 0 && cJSON_IsNumber(k) && k->valuedouble >= 0) {
                f->step = k->valuedouble;
            } else {
                gw_warn(AREA, "%s: points[%zu].sim.%s: unknown or malformed hint (known: range "
                        "[lo, hi], value, step); ignored", d->profile->file, i, k->string);
            }
        }
    }
}

/* Parse profile `name` (from the config's documents, else from the profiles
 * directory) into d->profile; *json_out is the document (borrowed or, when *owned,
 * the caller's to delete). */
static int profile_for(const gw_config *cfg, const char *name, gw_cfgerr *errs, int required,
                       gw_profile **out, cJSON **json_out, int *owned)
{
    *out = NULL;
    *json_out = NULL;
    *owned = 0;
    const gw_cfg_doc *doc = gw_config_profile(cfg, name);
    if (doc && doc->json) {
        *json_out = doc->json;
        return gw_profile_parse(doc->path, doc->json, errs, out);
    }
    if (!cfg->profiles_dir)
        return required ? GW_ENOTFOUND : 0;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.json", cfg->profiles_dir, name);
    FILE *fp = fopen(path, "r");
    if (!fp)
        return required ? GW_ENOTFOUND : 0;
    fclose(fp);
    cJSON *j = gw_cfg_read_json(path, errs);
    if (!j)
        return GW_ECONFIG;
    *json_out = j;
    *owned = 1;
    return gw_profile_parse(path, j, errs, out);
}

int sim_model_init(sim_model *m, const gw_config *cfg, uint64_t seed, gw_cfgerr *errs)
{
    memset(m, 0, sizeof *m);
    m->cfg = cfg;
    m->devs = gw_calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof *m->devs);
    if (!m->devs)
        return GW_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < cfg->n_devices; i++) {
        const gw_device *dev = &cfg->devices[i];
        sim_device *d = &m->devs[m->n_devs++];
        d->cfg = dev;
        d->rng = seed ^ hash_str(dev->id);
        splitmix(&d->rng);
        int r, owned;
        cJSON *json;
        if (dev->source == GW_SRC_MODBUS) {
            d->bus = gw_config_bus(cfg, dev->bus);
            r = profile_for(cfg, dev->profile, errs, 1, &d->profile, &json, &owned);
            if (r == GW_ENOTFOUND)
                gw_cfgerr_add(errs, cfg->file, "devices", "%s: profile '%s' not found",
                              dev->id, dev->profile);
            if (r == 0)
                r = fields_from_profile(d);
            if (r == 0)
                r = image_alloc(d);
        } else {
            char name[GW_ID_MAX + 16];
            snprintf(name, sizeof name, "generic-%s", dev->kind ? dev->kind : "");
            r = profile_for(cfg, name, errs, 0, &d->profile, &json, &owned);
            if (r == 0)
                r = fields_for_mqtt(d);
        }
        if (r == 0 && d->profile && json)
            apply_hints(d, cJSON_GetObjectItemCaseSensitive(json, "points"));
        if (owned)
            cJSON_Delete(json);
        if (r == GW_ENOMEM)
            return GW_ENOMEM;
        if (r != 0)
            rc = GW_ECONFIG;
    }
    if (rc == 0)
        sim_model_tick(m, 0);
    return rc;
}

void sim_model_free(sim_model *m)
{
    for (size_t i = 0; i < m->n_devs; i++) {
        sim_device *d = &m->devs[i];
        for (int t = 0; t < GW_MB__TABLES; t++) {
            gw_free(d->img[t].val);
            gw_free(d->img[t].def);
        }
        gw_free(d->fields);
        gw_profile_free(d->profile);
    }
    gw_free(m->devs);
    memset(m, 0, sizeof *m);
}

sim_device *sim_model_device(sim_model *m, const char *id)
{
    for (size_t i = 0; i < m->n_devs; i++)
        if (strcmp(m->devs[i].cfg->id, id) == 0)
            return &m->devs[i];
    return NULL;
}

sim_field *sim_model_field(sim_device *d, const char *name)
{
    for (size_t i = 0; i < d->n_fields; i++)
        if (strcmp(d->fields[i].name, name) == 0)
            return &d->fields[i];
    return NULL;
}

static sim_field *by_role(sim_device *d, sim_role r)
{
    for (size_t i = 0; i < d->n_fields; i++)
        if (d->fields[i].role == r)
            return &d->fields[i];
    return NULL;
}

/* ---- time ----------------------------------------------------------------------------- */

static int free_to_move(const sim_field *f)
{
    return !f->pinned && !f->ramping;
}

static void walk_field(sim_device *d, sim_field *f)
{
    if (!free_to_move(f) || f->role == SIM_ROLE_CONST || f->role == SIM_ROLE_DP ||
        f->role == SIM_ROLE_DIM || f->role == SIM_ROLE_RELAY || f->role == SIM_ROLE_ENERGY ||
        f->is_bool || f->is_text)
        return;
    double center = (f->lo + f->hi) / 2;
    int inside = f->value >= f->lo && f->value <= f->hi;
    /* Mean reversion pulls a released value back into its band within ~10 steps. */
    double v = f->value + f->step * (2 * urand(&d->rng) - 1) + 0.2 * (center - f->value);
    if (inside) {
        if (v < f->lo) v = f->lo;
        if (v > f->hi) v = f->hi;
    }
    f->value = v;
}

static int hhmm(const cJSON *v)
{
    int h, m;
    char extra;
    if (!cJSON_IsString(v) || sscanf(v->valuestring, "%d:%d%c", &h, &m, &extra) != 2 ||
        h < 0 || h > 24 || m < 0 || m > 59)
        return -1;
    return h * 60 + m;
}

/* Is the sun below the civil lamp threshold (-0.833 deg: refraction and the disc) at
 * lat/lon now? Low-precision solar position (Astronomical Almanac, accurate to about a
 * minute in sunset time). */
static int sun_down(double lat, double lon, int64_t now_ms)
{
    const double d2r = M_PI / 180.0;
    double days = (double)now_ms / 86400000.0 - 10957.5;        /* since J2000.0 */
    double mean_lon = fmod(280.460 + 0.9856474 * days, 360.0);
    double anomaly = fmod(357.528 + 0.9856003 * days, 360.0) * d2r;
    double ecl_lon = (mean_lon + 1.915 * sin(anomaly) + 0.020 * sin(2 * anomaly)) * d2r;
    double obliq = (23.439 - 4e-7 * days) * d2r;
    double decl = asin(sin(obliq) * sin(ecl_lon));
    double right_asc = atan2(cos(obliq) * sin(ecl_lon), cos(ecl_lon));
    double sidereal_h = fmod(18.697374558 + 24.06570982441908 * days, 24.0);
    double hour_angle = (sidereal_h * 15.0 + lon) * d2r - right_asc;
    double elev = asin(sin(lat * d2r) * sin(decl) + cos(lat * d2r) * cos(decl) * cos(hour_angle));
    return elev / d2r < -0.833;
}

/* When the lamp's controller switches on: as the gateway decides "should be on" —
 * params.schedule {"on": "HH:MM", "off": "HH:MM"} in gateway local time, else the sun at
 * the component's location, else 18:00-06:00. */
static int schedule_on(const gw_config *cfg, const gw_device *dev)
{
    int64_t now = gw_now_ms();
    int64_t local_s = now / 1000 + (int64_t)cfg->gateway.utc_offset_min * 60;
    int min = (int)((local_s % 86400 + 86400) % 86400 / 60);
    const cJSON *sch = dev->params ? cJSON_GetObjectItemCaseSensitive(dev->params, "schedule") : NULL;
    int on = hhmm(cJSON_GetObjectItemCaseSensitive(sch, "on"));
    int off = hhmm(cJSON_GetObjectItemCaseSensitive(sch, "off"));
    if (on >= 0 && off >= 0)
        return on <= off ? (min >= on && min < off) : (min >= on || min < off);
    if (dev->component.location.has)
        return sun_down(dev->component.location.lat, dev->component.location.lon, now);
    return min >= 18 * 60 || min < 6 * 60;
}

/* Relations between fields: lamps follow the relay, current follows power, energy
 * integrates power over dt_s. */
static void derive(sim_model *m, sim_device *d, double dt_s)
{
    sim_field *relay = by_role(d, SIM_ROLE_RELAY), *dim = by_role(d, SIM_ROLE_DIM);
    sim_field *power = by_role(d, SIM_ROLE_POWER), *cur = by_role(d, SIM_ROLE_CURRENT);
    sim_field *volt = by_role(d, SIM_ROLE_VOLTAGE), *pf = by_role(d, SIM_ROLE_PF);

    /* Lamps, and meters of lamp circuits (kind lamp without a relay of their own), draw
     * power on the lamps' schedule. */
    int lamp = relay || (d->cfg->kind && strcmp(d->cfg->kind, "lamp") == 0);
    if (relay && free_to_move(relay))
        relay->value = schedule_on(m->cfg, d->cfg);
    if (power && lamp && free_to_move(power)) {
        int on = relay ? relay->value != 0 : schedule_on(m->cfg, d->cfg);
        double level = dim ? dim->value / 100.0 : 1.0;
        double w = on ? rated_power_w(d->cfg) * level * (0.98 + 0.04 * urand(&d->rng))
                      : 0.3 + 0.2 * urand(&d->rng); /* controller standby */
        power->value = w * power->factor;
    }
    double watts = power ? power->value / power->factor : 0;
    double k_pf = pf && pf->value > 0.1 && pf->value <= 1 ? pf->value : 0.95;
    for (size_t i = 0; i < d->n_fields; i++) {
        sim_field *f = &d->fields[i];
        if (!power || !free_to_move(f))
            continue;
        if (f->role == SIM_ROLE_APPARENT)
            f->value = watts / k_pf * f->factor;
        else if (f->role == SIM_ROLE_REACTIVE)
            f->value = watts * tan(acos(k_pf)) * f->factor;
        else if (f->role == SIM_ROLE_PHASE)
            f->value = acos(k_pf) * 180.0 / M_PI;
    }
    if (cur && power && free_to_move(cur)) {
        double v = volt ? volt->value / volt->factor : 225;
        cur->value = watts / (v * k_pf) * cur->factor;
    }
    for (size_t i = 0; i < d->n_fields; i++) {
        sim_field *f = &d->fields[i];
        if (f->role != SIM_ROLE_ENERGY || !free_to_move(f))
            continue;
        double fac;
        if (power && unit_family(f->unit, &fac) == FAM_E)
            f->value += watts * dt_s / 3.6e6 * fac;
        else if (has(f->name, "hours"))
            f->value += (relay && relay->value ? dt_s : 0) / 3600.0;
        else
            f->value += (0.0005 + 0.001 * urand(&d->rng)) * dt_s;
    }
}

static void ramp_field(sim_field *f, int64_t scn_ms)
{
    if (!f->ramping)
        return;
    if (scn_ms >= f->r_t1 || f->r_t1 <= f->r_t0) {
        f->value = f->r_to;
        f->ramping = 0;
        f->pinned = 1;
        return;
    }
    double x = (double)(scn_ms - f->r_t0) / (double)(f->r_t1 - f->r_t0);
    if (x < 0)
        x = 0;
    f->value = f->r_from + (f->r_to - f->r_from) * x;
}

void sim_model_tick(sim_model *m, int64_t scn_ms)
{
    int steps = 0;
    while (m->last_walk_ms + 1000 <= scn_ms && steps < 10) {
        m->last_walk_ms += 1000;
        steps++;
    }
    if (m->last_walk_ms + 1000 <= scn_ms) /* far behind (huge --speed): skip ahead */
        m->last_walk_ms = scn_ms - scn_ms % 1000;
    for (size_t i = 0; i < m->n_devs; i++) {
        sim_device *d = &m->devs[i];
        int changed = scn_ms == 0;
        for (size_t k = 0; k < d->n_fields; k++)
            if (d->fields[k].ramping) {
                ramp_field(&d->fields[k], scn_ms);
                changed = 1;
            }
        if (!d->hold) {
            if (scn_ms == 0)
                derive(m, d, 0);
            for (int s = 0; s < steps; s++) {
                for (size_t k = 0; k < d->n_fields; k++)
                    walk_field(d, &d->fields[k]);
                derive(m, d, 1.0);
                changed = 1;
            }
        }
        /* Only what changed is re-encoded: a thousand devices stay cheap. */
        if (changed && d->profile && d->bus)
            sim_model_encode(d);
    }
}

/* ---- scenario operations --------------------------------------------------------------- */

int sim_model_set(sim_device *d, sim_field *f, const cJSON *v, char *err, size_t errn)
{
    const gw_profile_point *pt = f->pt;
    if (f->is_text || (pt && pt->type == GW_PT_ENUM && cJSON_IsString(v))) {
        if (!cJSON_IsString(v)) {
            snprintf(err, errn, "field '%s' takes a string", f->name);
            return GW_EINVAL;
        }
        if (pt && pt->type == GW_PT_ENUM) {
            size_t i;
            for (i = 0; i < pt->n_enums; i++)
                if (strcmp(pt->enums[i].label, v->valuestring) == 0)
                    break;
            if (i == pt->n_enums) {
                snprintf(err, errn, "field '%s' has no label \"%s\"", f->name, v->valuestring);
                return GW_EINVAL;
            }
            f->value = pt->enums[i].raw;
        } else {
            snprintf(f->text, sizeof f->text, "%s", v->valuestring);
        }
    } else if (f->is_bool) {
        if (cJSON_IsBool(v))
            f->value = cJSON_IsTrue(v);
        else if (cJSON_IsNumber(v))
            f->value = v->valuedouble != 0;
        else {
            snprintf(err, errn, "field '%s' takes true or false", f->name);
            return GW_EINVAL;
        }
    } else if (cJSON_IsNumber(v)) {
        f->value = v->valuedouble;
    } else {
        snprintf(err, errn, "field '%s' takes a number", f->name);
        return GW_EINVAL;
    }
    f->pinned = 1;
    f->ramping = 0;
    f->warned = 0;
    (void)d;
    return 0;
}

void sim_model_ramp(sim_device *d, sim_field *f, double to, int64_t t0, int64_t t1)
{
    (void)d;
    f->r_from = f->value;
    f->r_to = to;
    f->r_t0 = t0;
    f->r_t1 = t1;
    f->ramping = 1;
    f->pinned = 0;
    f->warned = 0;
}

void sim_model_release(sim_device *d, sim_field *f)
{
    (void)d;
    f->pinned = 0;
    f->ramping = 0;
}

/* ---- registers ---------------------------------------------------------------------- */

static int field_value(const sim_field *f, gw_point_value *in)
{
    memset(in, 0, sizeof *in);
    if (f->is_text) {
        in->type = GW_V_TEXT;
        snprintf(in->text, sizeof in->text, "%s", f->text);
    } else if (f->is_bool) {
        in->type = GW_V_BOOL;
        in->value = f->value != 0;
    } else {
        in->type = GW_V_NUMBER;
        in->value = f->value;
    }
    in->quality = GW_Q_GOOD;
    return 0;
}

static uint16_t *image_at(sim_device *d, gw_mb_table t, uint16_t addr, size_t *avail)
{
    sim_image *im = &d->img[t];
    if (!im->val || addr < im->base || addr >= im->base + im->len) {
        *avail = 0;
        return NULL;
    }
    *avail = im->base + im->len - addr;
    return im->val + (addr - im->base);
}

/* The decimal exponent for f: the largest of 3..0 its value encodes with. */
static int fit_dp(sim_field *f)
{
    gw_point_value in;
    uint16_t scratch[GW_PROFILE_MAX_STRING_REGS + 4] = {0};
    field_value(f, &in);
    for (int dp = 3; dp >= 0; dp--)
        if (gw_profile_encode_point(f->pt, &in, dp, scratch, f->pt->count) == 0)
            return dp;
    return 0;
}

void sim_model_encode(sim_device *d)
{
    int dps[256];
    size_t nf = d->n_fields < 256 ? d->n_fields : 256;
    for (size_t i = 0; i < nf; i++)
        dps[i] = (d->fields[i].pt && d->fields[i].pt->has_dp && d->fields[i].role != SIM_ROLE_DP)
                     ? fit_dp(&d->fields[i]) : -1;
    /* Points sharing a decimal register share its exponent: the smallest fits all. */
    for (size_t i = 0; i < nf; i++) {
        if (dps[i] < 0)
            continue;
        const gw_profile_point *a = d->fields[i].pt;
        for (size_t j = 0; j < nf; j++)
            if (dps[j] >= 0 && dps[j] < dps[i] && d->fields[j].pt->dp_table == a->dp_table &&
                d->fields[j].pt->dp_address == a->dp_address)
                dps[i] = dps[j];
    }
    for (size_t i = 0; i < d->n_fields; i++) {
        sim_field *f = &d->fields[i];
        if (!f->pt || f->role == SIM_ROLE_DP)
            continue;
        size_t avail;
        uint16_t *raw = image_at(d, f->pt->table, f->pt->address, &avail);
        if (!raw)
            continue;
        int dp = (i < nf && dps[i] >= 0) ? dps[i] : 0;
        gw_point_value in;
        field_value(f, &in);
        uint16_t tmp[GW_PROFILE_MAX_STRING_REGS + 4];
        size_t cnt = f->pt->count;
        if (cnt > sizeof tmp / sizeof tmp[0] || cnt > avail)
            continue;
        memcpy(tmp, raw, cnt * sizeof *tmp);
        int rc = gw_profile_encode_point(f->pt, &in, dp, tmp, cnt);
        if (rc != 0) {
            if (!f->warned)
                gw_warn(AREA, "%s: %s = %g does not fit its register type (%s); keeping the "
                        "previous raw value", d->cfg->id, f->name, f->value, gw_strerror(rc));
            f->warned = 1;
            continue;
        }
        if (gw_mb_table_is_bits(f->pt->table))
            tmp[0] = tmp[0] ? 1 : 0;
        memcpy(raw, tmp, cnt * sizeof *tmp);
        if (f->pt->has_dp) {
            size_t a2;
            uint16_t *dpr = image_at(d, f->pt->dp_table, f->pt->dp_address, &a2);
            if (dpr)
                *dpr = (uint16_t)dp;
        }
    }
}

static int scripted_exception(const sim_device *d, gw_mb_table t, uint16_t addr, uint16_t n)
{
    for (size_t i = 0; i < d->n_exc; i++) {
        const sim_exc *e = &d->exc[i];
        if (e->table >= 0 && e->table != (int)t)
            continue;
        if (e->address < 0 || (e->address >= addr && e->address < (int)addr + n))
            return e->code;
    }
    return 0;
}

static int all_defined(sim_device *d, gw_mb_table t, uint16_t addr, uint16_t n)
{
    const sim_image *im = &d->img[t];
    if (!im->def || addr < im->base || (uint32_t)addr + n > im->base + im->len)
        return 0;
    for (uint32_t i = 0; i < n; i++)
        if (!im->def[addr - im->base + i])
            return 0;
    return 1;
}

/* The exception code a request for n registers at addr answers, 0 if none: a scripted
 * one first, else 02 (illegal data address) when a register is not in the image. */
static int access_exception(sim_device *d, gw_mb_table t, uint16_t addr, uint16_t n)
{
    int code = scripted_exception(d, t, addr, n);
    if (code)
        return code;
    return all_defined(d, t, addr, n) ? 0 : 0x02;
}

int sim_model_read(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, uint16_t *out)
{
    sim_device *d = ctx;
    int code = access_exception(d, t, addr, n);
    if (code)
        return code;
    memcpy(out, d->img[t].val + (addr - d->img[t].base), n * sizeof *out);
    return 0;
}

int sim_model_write(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, const uint16_t *in)
{
    sim_device *d = ctx;
    int code = access_exception(d, t, addr, n);
    if (code)
        return code;
    sim_image *im = &d->img[t];
    for (uint32_t i = 0; i < n; i++)
        im->val[addr - im->base + i] = gw_mb_table_is_bits(t) ? (in[i] ? 1 : 0) : in[i];
    /* A written point takes the written value and keeps it (a relay commanded on). */
    for (size_t i = 0; i < d->n_fields; i++) {
        sim_field *f = &d->fields[i];
        const gw_profile_point *pt = f->pt;
        if (!pt || pt->table != t || f->role == SIM_ROLE_DP)
            continue;
        if (pt->address + pt->count <= addr || pt->address >= (uint32_t)addr + n)
            continue;
        size_t avail;
        const uint16_t *raw = image_at(d, t, pt->address, &avail);
        int dp = 0;
        if (pt->has_dp) {
            size_t a2;
            const uint16_t *dpr = image_at(d, pt->dp_table, pt->dp_address, &a2);
            dp = dpr ? *dpr : 0;
        }
        gw_point_value v;
        if (raw && gw_profile_decode_point(pt, raw, avail, dp, &v) == 0 &&
            v.quality == GW_Q_GOOD) {
            if (v.type == GW_V_TEXT && f->is_text)
                snprintf(f->text, sizeof f->text, "%s", v.text);
            else
                f->value = v.value;
            f->pinned = 1;
            f->ramping = 0;
            gw_info(AREA, "%s: written %s = %g", d->cfg->id, f->name, f->value);
        }
    }
    return 0;
}

cJSON *sim_model_object(const sim_device *d)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    for (size_t i = 0; i < d->n_fields; i++) {
        const sim_field *f = &d->fields[i];
        cJSON *v;
        if (f->is_text)
            v = cJSON_CreateString(f->text);
        else if (f->is_bool)
            v = cJSON_CreateBool(f->value != 0);
        else
            v = cJSON_CreateNumber(round(f->value * 1e4) / 1e4);
        if (!v || !cJSON_AddItemToObject(o, f->name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}
