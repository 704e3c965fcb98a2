/* The simulated field: one sim_device per configured device, each with its fields
 * (one per profile point, or per field of the kind's generic profile for MQTT devices),
 * their current values, and for Modbus devices the register image the server answers
 * from. Values start at a plausible level for the field's kind and unit and follow a
 * gentle mean-reverting random walk, deterministic for a given seed; lamps follow their
 * schedule (on 18:00-06:00 local time), power follows the relay, current follows power,
 * energy counters integrate power. Scenario steps pin, ramp and release fields and set
 * the device's faults (silent, exception, drip, delay, corrupt CRC, malformed answer).
 *
 * Time: every function that takes scn_ms takes the scenario clock (milliseconds since
 * start, already multiplied by --speed). Ownership: the model borrows cfg (which must
 * outlive it) and owns everything else; sim_model_free releases it. Thread: the
 * simulator's main loop only. */
#ifndef CITYGATE_SIM_MODEL_H
#define CITYGATE_SIM_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "modbus/profile.h"

typedef enum {
    SIM_ROLE_WALK = 0,  /* random walk inside [lo, hi] */
    SIM_ROLE_CONST,     /* stays where it starts (states, alarms, settings, texts) */
    SIM_ROLE_RELAY,     /* lamp schedule */
    SIM_ROLE_DIM,       /* dimming level, constant 100 % */
    SIM_ROLE_POWER,     /* follows the relay and dimming for lamps, walks otherwise */
    SIM_ROLE_CURRENT,   /* power / (voltage * pf) when the device has power */
    SIM_ROLE_ENERGY,    /* integrates power (or grows slowly) */
    SIM_ROLE_VOLTAGE,
    SIM_ROLE_PF,
    SIM_ROLE_APPARENT,  /* power / pf */
    SIM_ROLE_REACTIVE,  /* power * tan(acos pf) */
    SIM_ROLE_PHASE,     /* acos pf in degrees */
    SIM_ROLE_DP,        /* the point is a decimal-point register: the encoder writes it */
} sim_role;

/* How a request is answered wrongly (scenario "malform"). */
typedef enum {
    SIM_MALFORM_NONE = 0,
    SIM_MALFORM_SHORT,    /* byte count says more than the frame carries */
    SIM_MALFORM_LENGTH,   /* MBAP length field off by +3 (TCP) */
    SIM_MALFORM_TID,      /* wrong transaction id (TCP) */
    SIM_MALFORM_FUNCTION, /* another function code in the answer */
    SIM_MALFORM_UNIT,     /* another unit id in the answer */
} sim_malform;

typedef struct sim_field {
    char name[GW_FIELD_MAX];
    char unit[GW_UNIT_MAX];
    const gw_profile_point *pt;   /* NULL for MQTT devices */
    sim_role role;
    int is_bool, is_text;
    double value;                 /* in the field's unit; enums: the raw code */
    char text[GW_TEXT_MAX];       /* strings; enums set by label */
    double lo, hi, step;          /* normal band and walk step (field's unit) */
    double factor;                /* field unit per base unit (W, A, V, kWh, MPa, m) */
    int pinned;                   /* set by a scenario or a Modbus write: no walk */
    int warned;                   /* "does not fit its register" logged */
    int ramping;
    double r_from, r_to;
    int64_t r_t0, r_t1;
} sim_field;

typedef struct sim_image {
    uint32_t base, len;           /* addresses [base, base + len) */
    uint16_t *val;
    uint8_t *def;                 /* 1 where a point (or decimal register) lives */
} sim_image;

#define SIM_MAX_EXC 16
typedef struct sim_exc {
    int table;                    /* gw_mb_table, or -1 for every table */
    int address;                  /* -1: every request */
    int code;
} sim_exc;

typedef struct sim_device {
    const gw_device *cfg;
    const gw_bus *bus;            /* NULL for MQTT devices */
    gw_profile *profile;          /* Modbus: its profile; MQTT: generic-<kind> or NULL */
    sim_field *fields;
    size_t n_fields;
    sim_image img[GW_MB__TABLES];
    uint64_t rng;
    /* faults set by the scenario */
    int hold, silent, drip_ms, delay_ms, corrupt_crc;
    sim_malform malform;
    sim_exc exc[SIM_MAX_EXC];
    size_t n_exc;
    /* counters */
    uint64_t requests, exceptions, dropped;
    int encode_warned;
    /* MQTT publishing */
    int64_t next_publish_ms;
    uint32_t fcnt;
} sim_device;

typedef struct sim_model {
    const gw_config *cfg;
    sim_device *devs;
    size_t n_devs;
    int64_t last_walk_ms;         /* scenario time of the last walk step */
} sim_model;

/* Build the model from a loaded config. Profiles come from cfg->profiles (parsed with
 * gw_profile_parse); a Modbus device whose profile fails to parse is an error in errs.
 * Returns 0, GW_ECONFIG or GW_ENOMEM. */
int sim_model_init(sim_model *m, const gw_config *cfg, uint64_t seed, gw_cfgerr *errs);
void sim_model_free(sim_model *m);

sim_device *sim_model_device(sim_model *m, const char *id);
sim_field *sim_model_field(sim_device *d, const char *name);

/* Advance to scn_ms: ramps, derived values, one random-walk step per elapsed second
 * (unless the device holds), then re-encode the register images. */
void sim_model_tick(sim_model *m, int64_t scn_ms);

/* Pin f at v (number, bool, or string for enums and texts). Returns 0 or GW_EINVAL
 * with a reason in err. */
int sim_model_set(sim_device *d, sim_field *f, const cJSON *v, char *err, size_t errn);
/* Move f linearly from its current value to `to` over [t0, t1] (scenario ms), then
 * pin it there. */
void sim_model_ramp(sim_device *d, sim_field *f, double to, int64_t t0, int64_t t1);
/* Let f walk again (from where it is, drifting back to its band). */
void sim_model_release(sim_device *d, sim_field *f);
/* Re-encode d's register image now (after a scenario step changed values). */
void sim_model_encode(sim_device *d);

/* The register-space callbacks of sim_frame (ctx = sim_device *): answer scripted
 * exceptions first, then exception 02 for any address no point occupies. A write
 * updates the image and pins the fields it touched at their decoded values. */
int sim_model_read(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, uint16_t *out);
int sim_model_write(void *ctx, gw_mb_table t, uint16_t addr, uint16_t n, const uint16_t *in);

/* The device's fields as a JSON object {"field": number|bool|string} (caller frees
 * with cJSON_Delete), or NULL on allocation failure. */
cJSON *sim_model_object(const sim_device *d);

#endif
