/* Scenarios: timed steps that change simulated devices (docs/simulator.md).
 *
 *   {"description": "...", "steps": [
 *     {"at": "10s", "device": "mh-0001", "set": {"tilt_deg": 35}},
 *     {"at": "30s", "device": "lamp-0007", "silent": true},
 *     {"at": "5s",  "device": "water-0001", "ramp": {"pressure_mpa": {"to": 0.05, "over": "60s"}}},
 *     {"at": "0s",  "device": "gas-0001", "exception": {"address": 12, "code": 2}},
 *     {"at": "20s", "stop": true}]}
 *
 * (a bare array of steps is accepted too). Every problem is reported as
 * "FILE: json.path: message" through gw_cfgerr, all of them, not just the first.
 *
 * Ownership: the scenario owns its steps and keeps pointers into the model's devices,
 * so the model must outlive it. Thread: the simulator's main loop only. */
#ifndef CITYGATE_SIM_SCENARIO_H
#define CITYGATE_SIM_SCENARIO_H

#include <stdint.h>

#include "config.h"
#include "sim_model.h"

typedef struct sim_scenario sim_scenario;

/* Parse and validate file against the model (devices and fields must exist). Returns
 * 0 with *out, GW_ECONFIG with errs filled, or GW_ENOMEM. */
int sim_scenario_load(const char *file, sim_model *m, gw_cfgerr *errs, sim_scenario **out);
void sim_scenario_free(sim_scenario *s);

/* Scenario time of the next step not yet run, or -1 when all have run. */
int64_t sim_scenario_next_ms(const sim_scenario *s);

/* Run every step due at scn_ms, in order, logging each. Returns 1 when a "stop" step
 * ran (the simulator should exit), else 0. */
int sim_scenario_run(sim_scenario *s, sim_model *m, int64_t scn_ms);

/* Parse a duration: "250ms", "10s", "1.5s", "2m", "1h", or a JSON number of seconds.
 * Returns 0 or GW_EINVAL. */
int sim_scenario_duration(const cJSON *v, int64_t *ms);

#endif
