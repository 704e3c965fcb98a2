/* Whole-configuration validation shared by `check`, `run`, `poll` and `decode`. */
#ifndef CITYGATE_CHECK_H
#define CITYGATE_CHECK_H

#include "config.h"

/* Module-level checks on a loaded config: profile contents, rule semantics and
 * per-device overrides, plugin loading and options. Appends to errs; returns 0 or
 * GW_ECONFIG. Thread: main. */
int gw_check_deep(const gw_config *cfg, gw_cfgerr *errs);

/* gw_config_load + gw_check_deep: 0 with *out, or GW_ECONFIG with errs filled. */
int gw_config_load_checked(const char *file, gw_cfgerr *errs, gw_config **out);

#endif
