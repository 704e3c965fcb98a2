/* The gateway configuration: one JSON file (plus the device profiles and rule sets it
 * names, loaded from their directories), parsed and validated into gw_config.
 *
 * Every error is collected, never just the first, as "FILE: json.path: message"
 * (e.g. "site.json: devices[3].unit_id: must be 1..247, got 300"). Unknown keys are
 * errors (with a suggestion when close to a known key). docs/config.md documents
 * every key; this header mirrors it.
 *
 * Ownership: gw_config owns every string and cJSON tree in it; gw_config_free frees
 * all. Thread: loaded once on the main thread, then read-only and shared by all. */
#ifndef CITYGATE_CONFIG_H
#define CITYGATE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "log.h"

/* ---- error collection ------------------------------------------------------------ */

typedef struct gw_cfgerr {
    char **lines;   /* "file: path: message", in the order found */
    size_t n, cap;
} gw_cfgerr;

/* Append one error. file is shown as given (the path the user passed, or the profile /
 * rule file path); path is the JSON path ("devices[3].unit_id", "" for the document).
 * Thread: caller's. */
void gw_cfgerr_add(gw_cfgerr *e, const char *file, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gw_cfgerr_print(const gw_cfgerr *e, int fd);
void gw_cfgerr_free(gw_cfgerr *e);

/* Parse a JSON file; on failure add "file: line L, column C: invalid JSON (reason)"
 * and return NULL. Size-capped (16 MiB). Returned tree is the caller's (cJSON_Delete). */
cJSON *gw_cfg_read_json(const char *file, gw_cfgerr *e);

/* ---- the model --------------------------------------------------------------------- */

typedef enum { GW_SCHEME_CJT214 = 0, GW_SCHEME_GBT47678 } gw_component_scheme;

typedef struct gw_location {
    int has;            /* lon/lat given */
    double lon, lat;
    char *address;      /* may be NULL */
} gw_location;

/* The urban-management component a device watches (DESIGN.md §3). */
typedef struct gw_component {
    char *code;         /* 16 digits (CJ/T 214) or 17 (GB/T 47678), county prefix = admin code */
    char *name;         /* e.g. "污水井盖"; defaults from the minor class */
    char *grid;         /* unit grid code, 15 digits, county prefix = admin code */
    char *owner, *manager, *maintainer; /* responsible units (may be NULL) */
    gw_location location;
} gw_component;

typedef struct gw_mqtt_conn {
    char *url;          /* tcp://host:port, ssl://host:port (mqtts:// accepted) */
    char *client_id;    /* default "citygate-<gateway id>[-suffix]" */
    char *username;
    char *password;     /* resolved from "password" or "password_file"; registered as a log secret */
    int mqtt_version;   /* 3 (=3.1.1, default) or 5 */
    int keepalive_s;    /* default 30 */
    char *ca_file;      /* TLS: CA bundle; verification is always on for ssl:// */
    char *cert_file, *key_file; /* TLS client auth (optional) */
} gw_mqtt_conn;

typedef enum { GW_BUS_TCP = 0, GW_BUS_RTU } gw_bus_type;

/* A Modbus connection: one TCP endpoint or one serial line, shared by many unit ids. */
typedef struct gw_bus {
    char *id;
    gw_bus_type type;
    char *host;         /* TCP: name, IPv4 or IPv6 literal */
    int port;           /* TCP: default 502 */
    char *device;       /* RTU: /dev/ttyUSB0 */
    int baud;           /* RTU: default 9600 */
    char parity;        /* RTU: 'N', 'E', 'O' (default 'N') */
    int data_bits;      /* RTU: 7 or 8 (default 8) */
    int stop_bits;      /* RTU: 1 or 2 (default 1) */
    int response_timeout_ms; /* default 500 */
    int byte_timeout_ms;     /* default 0 = bounded by the response timeout */
    int retries;             /* per request, default 1 */
    int max_gap;             /* registers merged across a gap when coalescing, default 8 */
    int reconnect_min_ms, reconnect_max_ms; /* default 500, 30000 */
    int any_unit_id;    /* TCP: take answers whatever unit id they carry (devices that
                         * answer 0 or 255 instead of echoing it); default 0: refused */
} gw_bus;

typedef struct gw_mqtt_sub {
    char *topic;        /* pattern with + / # and named segments "{dev_eui}" */
    char *decoder;      /* "json" or a plugin name */
    char *device_key;   /* JSON path of the device key in the payload, or NULL */
    int qos;            /* default 1 */
} gw_mqtt_sub;

/* A broker the gateway subscribes to for sensor uplinks. */
typedef struct gw_mqtt_source {
    char *id;
    gw_mqtt_conn conn;
    gw_mqtt_sub *subs;
    size_t n_subs;
    size_t max_payload;  /* bytes, default 65536 */
} gw_mqtt_source;

typedef enum { GW_SRC_MODBUS = 0, GW_SRC_MQTT } gw_source_type;

typedef struct gw_device {
    char *id;
    char *kind;          /* manhole, lamp, water, gas, or any lower-case word */
    char *name;
    gw_source_type source;
    /* Modbus */
    char *bus;           /* gw_bus.id */
    int unit_id;         /* 1..247 (0 accepted on TCP) */
    char *profile;       /* gw_cfg_doc name in profiles */
    /* MQTT */
    char *mqtt_source;   /* gw_mqtt_source.id */
    char *key;           /* device key matched against topic segment / payload key */
    char *decoder;       /* overrides the subscription's decoder, or NULL */
    cJSON *decoder_options; /* options for the plugin, validated by the plugin loader */
    int interval_ms;     /* poll interval (Modbus) or expected report interval (MQTT), default 10000 */
    int enabled;         /* default 1 */
    gw_component component;
    char **rule_sets;    /* names of gw_cfg_doc in rulesets; default: the kind's set + "common" */
    size_t n_rule_sets;
    cJSON *overrides;    /* {"rule-id": {"raise": .., "clear": .., "severity": .., "enabled": ..}} */
    cJSON *params;       /* device parameters used by rules/plugins: rated_power_w, well_depth_m, ... */
    cJSON *tags;         /* extra {"key": "string"} tags for InfluxDB and rule selectors */
} gw_device;

/* A JSON document referenced by name: a device profile or a rule set. */
typedef struct gw_cfg_doc {
    char *name;          /* file name without .json */
    char *path;          /* path as opened (for error messages) */
    cJSON *json;
} gw_cfg_doc;

typedef struct gw_influx_cfg {
    int enabled;
    char *url;           /* http(s)://host:port base URL */
    int version;         /* 1 (default) or 2 */
    char *database, *retention_policy, *username, *password; /* 1.x */
    char *org, *bucket, *token;                              /* 2.x */
    char *precision;     /* "ns", "us" (default), "ms", "s" */
    int batch_lines;     /* default 5000 */
    int batch_bytes;     /* default 1 MiB */
    int flush_ms;        /* default 1000 */
    int timeout_ms;      /* default 10000 */
    int gzip;            /* default 1 */
    char *ca_file;
    int64_t spool_max_bytes; /* default 256 MiB */
} gw_influx_cfg;

typedef struct gw_upstream_cfg {
    int enabled;
    gw_mqtt_conn conn;
    char *topic_prefix;  /* default "citygate"; topics are <prefix>/<gateway id>/... */
    int report_interval_s; /* default 60 */
    int max_inflight;    /* default 10 */
    int renotify_s;      /* default re-notify interval for active alarms, 0 = off */
    cJSON *problem_types; /* {"0401": "site-type-id", ...} upstream type mapping */
} gw_upstream_cfg;

typedef struct gw_http_cfg {
    int enabled;         /* default 1 */
    char *listen;        /* address, default "127.0.0.1" */
    int port;            /* default 8080 */
    char *token;         /* required when listen is not loopback */
    int history_minutes; /* local history kept per point, default 180 */
} gw_http_cfg;

typedef struct gw_gateway_cfg {
    char *id;            /* e.g. "GW-500103-0001": [A-Za-z0-9_.-], used in topics */
    char *name;
    char *admin_code;    /* 6-digit county admin code; prefix of component and grid codes */
    gw_component_scheme scheme;
    char *data_dir;      /* outbox, spool, alarm state; default /var/lib/citygate */
    int utc_offset_min;  /* for event timestamps; from "timezone": "+08:00" (default) */
    gw_log_level log_level;
} gw_gateway_cfg;

typedef struct gw_config {
    char *file;          /* the main config path as given */
    char *base_dir;      /* directory of the main config; relative paths resolve here */
    char *profiles_dir, *rules_dir, *plugins_dir; /* resolved */
    gw_gateway_cfg gateway;
    gw_bus *buses;                 size_t n_buses;
    gw_mqtt_source *mqtt_sources;  size_t n_mqtt_sources;
    gw_device *devices;            size_t n_devices;
    gw_cfg_doc *profiles;          size_t n_profiles;  /* only those referenced */
    gw_cfg_doc *rulesets;          size_t n_rulesets;  /* only those referenced */
    gw_influx_cfg influx;
    gw_upstream_cfg upstream;
    gw_http_cfg http;
} gw_config;

/* Load and validate file. Returns 0 with *out set, or GW_ECONFIG with every error in
 * errs (and *out NULL). Other checks that need a module (profile contents, rule
 * semantics, plugins) are done by gw_check_deep() in check.c on the loaded config. */
int gw_config_load(const char *file, gw_cfgerr *errs, gw_config **out);
/* gw_config_load from a buffer (fuzzing, tests): data need not be NUL-terminated;
 * name is shown in errors and its directory is the base for relative paths. */
int gw_config_load_mem(const char *name, const char *data, size_t len, gw_cfgerr *errs,
                       gw_config **out);
void gw_config_free(gw_config *cfg);

/* Lookups; NULL / -1 when absent. */
const gw_device *gw_config_device(const gw_config *cfg, const char *id);
const gw_bus *gw_config_bus(const gw_config *cfg, const char *id);
const gw_cfg_doc *gw_config_profile(const gw_config *cfg, const char *name);
const gw_cfg_doc *gw_config_ruleset(const gw_config *cfg, const char *name);

#endif
