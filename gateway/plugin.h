/* Decoder plugins inside the core: loading (dlopen from the plugins directory, or the
 * built-in table linked into the binary — both through the same entry function and
 * descriptor), ABI negotiation, the registry by name, option tables and per-device
 * instances (struct cg_ctx). The plugin-facing ABI is <citygate/plugin.h>.
 *
 * Thread: the registry and instances are created and freed on the main thread. After
 * that the registry is read-only; an instance (cg_ctx) is used by one thread at a time
 * (the thread decoding its device). */
#ifndef CITYGATE_GW_PLUGIN_H
#define CITYGATE_GW_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <citygate/plugin.h>
#include <cjson/cJSON.h>

#include "config.h"

/* A loaded plugin. desc is a size-checked copy: members beyond the plugin's own
 * desc->size are NULL / 0, so the core reads every member without further checks. */
typedef struct gw_plugin {
    char *name;
    char *origin;          /* "built-in" or the .so path */
    void *handle;          /* dlopen handle; NULL for built-ins */
    cg_plugin_desc desc;
    size_t n_options;
} gw_plugin;

typedef struct gw_plugins gw_plugins;

/* Create a registry over the built-in table and dir (NULL or "" = built-ins only).
 * Returns 0 or GW_ENOMEM. */
int gw_plugins_create(const char *dir, gw_plugins **out);
/* Log plugin loads at debug instead of info (a check that loads them only to validate,
 * before the run loads them again). */
void gw_plugins_set_quiet(gw_plugins *r, int quiet);
/* Unload everything. Instances made from it must be freed first. */
void gw_plugins_free(gw_plugins *r);

/* Find the plugin called name, loading <dir>/<name>.so on first use (a .so in the
 * directory overrides a built-in of the same name). Returns 0 with *out (owned by the
 * registry), or GW_EINVAL (bad name), GW_ENOTFOUND (no such plugin, or the .so lacks
 * the entry symbol), GW_EABI (wrong ABI major, bad descriptor, bad option table), with
 * a one-line reason in err such as "plugin 'foo': ABI major 2, this citygate speaks 1".
 * A failed load is remembered and answered the same way. */
int gw_plugins_get(gw_plugins *r, const char *name, const gw_plugin **out, char *err,
                   size_t errlen);

/* Names of the built-in plugins, NULL-terminated (static). */
const char *const *gw_plugins_builtin_names(void);

/* Register an entry function by hand (tests: descriptors of older minors). Same
 * checks as loading; returns like gw_plugins_get. */
int gw_plugins_add(gw_plugins *r, const char *name, cg_plugin_entry_fn entry,
                   const char *origin, char *err, size_t errlen);

/* ---- options ---------------------------------------------------------------------- */

typedef struct gw_optval {
    int64_t i;     /* int, bool, enum index */
    double d;      /* double (and int as double) */
    char *s;       /* string, enum word (owned) */
} gw_optval;

/* Validate options (a JSON object or NULL) against p's table and fill vals (an array
 * of p->n_options, zeroed by the caller). Every error is added to errs as
 * "file: path.key: message". Returns 0 or GW_ECONFIG (vals partially filled: free
 * with gw_plugin_options_free). */
int gw_plugin_options_parse(const gw_plugin *p, const cJSON *options, gw_optval *vals,
                            gw_cfgerr *errs, const char *file, const char *path);
void gw_plugin_options_free(const gw_plugin *p, gw_optval *vals);

/* ---- per-device instances ------------------------------------------------------------ */

/* What decode.c plugs into an instance while one message is decoded. */
typedef struct gw_plugin_msg_ops {
    int (*emit)(cg_ctx *ctx, const cg_sample *s);
    int (*reject)(cg_ctx *ctx, int reason, const char *detail);
    int64_t (*message_time)(const cg_ctx *ctx);
    void (*set_message_time)(cg_ctx *ctx, int64_t ts_us);
    int (*payload_kind)(const cg_ctx *ctx);
    /* type: 0 number, 1 string, 2 has, 3 count */
    int (*json_get)(cg_ctx *ctx, const char *path, int type, double *num, char *buf, size_t n);
    int (*chain)(cg_ctx *ctx, const char *path, int how);
    int (*chain_bytes)(cg_ctx *ctx, const uint8_t *bytes, size_t len);
} gw_plugin_msg_ops;

struct cg_ctx {
    const gw_plugin *plugin;
    const gw_device *device;   /* borrowed from the config */
    size_t device_idx;
    gw_optval *opts;           /* p->n_options values, owned */
    void *state;               /* from desc.init */
    /* Set by decode.c for the duration of one decode/derive call. */
    const gw_plugin_msg_ops *ops;
    void *msg;
};

/* Create the instance of p for device (options validated as above, errors at
 * "file: path..."; then desc.init). Returns 0 with *out, GW_ECONFIG, or GW_ENOMEM. */
int gw_plugin_instance_create(const gw_plugin *p, const gw_device *device, size_t device_idx,
                              const cJSON *options, gw_cfgerr *errs, const char *file,
                              const char *path, cg_ctx **out);
void gw_plugin_instance_free(cg_ctx *ctx);

/* The host function table every plugin receives (static). */
const cg_host *gw_plugin_host(void);

/* `citygate check`: every decoder named by subscriptions and devices exists and loads,
 * every device's options are valid for its decoder (and init succeeds). Errors go to
 * errs as "FILE: devices[i].mqtt.decoder: plugin 'foo': ..." / "...mqtt.options.x: ...".
 * Returns 0 or GW_ECONFIG. Thread: main. */
int gw_plugins_check(const gw_config *cfg, gw_cfgerr *errs);

#endif
