/* citygate decoder plugin ABI — the only header a plugin includes.
 *
 * A plugin turns one uplink payload of one device into samples ({field, value, unit,
 * quality, ts}). It is a shared object (dlopen'ed from the configured plugins
 * directory) or linked into the daemon ("built-in"); both go through this interface.
 *
 * VERSIONING
 *   The ABI has a major and a minor number (CG_ABI_MAJOR / CG_ABI_MINOR below).
 *   - A new minor only APPENDS members to cg_host and cg_plugin_desc. Each carries its
 *     own size: the host reads a descriptor member only if the plugin's desc->size
 *     covers it (missing ones count as NULL), and a plugin must check CG_HOST_HAS()
 *     before calling a host function newer than minor 0. So plugins built against an
 *     older minor keep loading, and a newer plugin runs on an older host if it checks.
 *   - A new major breaks layouts; the host refuses a plugin whose major differs, with
 *     "plugin 'foo': ABI major 2, this citygate speaks 1", at `citygate check` time.
 *   - cg_sample and cg_option are frozen for major 1 (new data = new host functions).
 *
 * ENTRY POINT
 *   A shared-object plugin exports exactly one symbol, CG_PLUGIN_ENTRY_SYMBOL:
 *
 *       const cg_plugin_desc *citygate_plugin_entry(const cg_host *host, uint32_t host_abi);
 *
 *   Write it with the CG_PLUGIN_ENTRY(name) macro. The host calls it once, right after
 *   loading, on the main thread. host (and everything it points to) stays valid until
 *   the plugin is unloaded: keep the pointer in a static. host_abi is CG_ABI_VERSION of
 *   the host. Return the plugin's descriptor (static storage), or NULL to refuse (e.g.
 *   the host is too old for what the plugin needs).
 *   When built into the daemon (CG_PLUGIN_BUILTIN defined), the macro names the entry
 *   citygate_plugin_entry_<name> instead, so several plugins link into one binary.
 *
 * OPTIONS
 *   The descriptor declares an option table. The host parses the device's
 *   "mqtt.options" object against it when the configuration is checked: unknown keys,
 *   wrong types, values out of [min, max] and unknown enum words are configuration
 *   errors naming the place ("site.json: devices[3].mqtt.options.range_mpa: ..."),
 *   so a plugin never sees an invalid option. Read values with host->opt_*().
 *
 * CHAINING (envelopes)
 *   A plugin flagged CG_PLUGIN_ENVELOPE unwraps a network server's uplink (ChirpStack,
 *   The Things Stack): it reads the envelope with host->json_*(), may emit radio
 *   metrics (rssi_dbm, snr_db), sets the message time, and hands the inner payload to
 *   the device's own decoder with host->chain() — raw bytes (base64/hex decoded) or a
 *   decoded JSON object. The device decoder then sees payload_kind() == CG_PAYLOAD_BYTES
 *   or CG_PAYLOAD_JSON. See docs/plugins.md.
 *
 * THREADS
 *   init/fini run on the main thread. decode/derive for one device are never called
 *   concurrently, but different devices may be decoded on different threads at the
 *   same time: keep per-device data in the state init returns, never in globals.
 *   Host functions taking a ctx may only be called during the callback that got ctx.
 *
 * OWNERSHIP
 *   Everything the host passes (payload, samples, strings returned by host functions)
 *   is borrowed for the duration of the call. Everything the plugin passes to the host
 *   (samples, strings) is borrowed by the host for the duration of the host call: the
 *   host copies what it keeps. Memory the plugin allocates with host->alloc is freed
 *   with host->free (it comes from the core's allocator, so fault-injection tests see it).
 */
#ifndef CITYGATE_SDK_PLUGIN_H
#define CITYGATE_SDK_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CG_ABI_MAJOR 1
#define CG_ABI_MINOR 1
#define CG_ABI_VERSION(major, minor) ((((uint32_t)(major)) << 16) | ((uint32_t)(minor) & 0xffffu))
#define CG_ABI_CURRENT CG_ABI_VERSION(CG_ABI_MAJOR, CG_ABI_MINOR)
#define CG_ABI_MAJOR_OF(v) ((uint32_t)(v) >> 16)
#define CG_ABI_MINOR_OF(v) ((uint32_t)(v) & 0xffffu)

#define CG_PLUGIN_ENTRY_SYMBOL "citygate_plugin_entry"

/* Return codes (the same numbers as the core's GW_E* codes). */
enum {
    CG_OK = 0,
    CG_ENOMEM = -1,
    CG_EINVAL = -2,
    CG_ENOTFOUND = -8,  /* no such option, parameter, JSON path */
    CG_EDECODE = -9,    /* the payload could not be decoded (after host->reject) */
};

/* Why a payload was rejected; the host counts bad payloads per device and reason. */
typedef enum {
    CG_BAD_SIZE = 0,    /* too large, empty or truncated */
    CG_BAD_JSON,        /* not valid JSON, or nested too deep */
    CG_BAD_TYPE,        /* a value of the wrong JSON type or not a finite number */
    CG_BAD_MISSING,     /* a required field is absent */
    CG_BAD_ENCODING,    /* invalid base64 / hex */
    CG_BAD_FRAME,       /* a binary frame is malformed (unknown channel, short value) */
    CG_BAD_RANGE,       /* a value outside what the sensor can report */
    CG_BAD_NO_DECODER,  /* the payload needs a device decoder that is not configured */
    CG_BAD__COUNT
} cg_bad;

/* Sample quality (same numbers as the core's gw_quality). */
typedef enum {
    CG_Q_GOOD = 0,
    CG_Q_STALE = 1,
    CG_Q_COMM_ERROR = 2,
    CG_Q_DECODE_ERROR = 3,
    CG_Q_OUT_OF_RANGE = 4,
} cg_quality;

typedef enum { CG_NUMBER = 0, CG_BOOL = 1, CG_TEXT = 2 } cg_value_type;

/* One sample a plugin emits. Frozen for ABI major 1. Zero-initialise it:
 * ts_us 0 = the message time; quality 0 = good; type 0 = number. */
typedef struct cg_sample {
    const char *field;    /* profile field name, e.g. "tilt_deg" (required, <= 47 bytes) */
    const char *unit;     /* e.g. "deg", "%", "MPa"; NULL or "" = none */
    const char *text;     /* CG_TEXT only */
    double value;         /* CG_NUMBER, CG_BOOL (0/1); must be finite */
    int64_t ts_us;        /* epoch µs; 0 = message time */
    int quality;          /* cg_quality */
    int type;             /* cg_value_type */
} cg_sample;

/* Opaque per-(device, plugin) context; valid during the callback that received it. */
typedef struct cg_ctx cg_ctx;

typedef int (*cg_emit_fn)(cg_ctx *ctx, const cg_sample *s);

typedef enum { CG_PAYLOAD_BYTES = 0, CG_PAYLOAD_JSON = 1 } cg_payload_kind;

/* How host->chain() takes the inner payload from a JSON path of the current payload. */
typedef enum {
    CG_CHAIN_BASE64 = 0,   /* a string, base64 → bytes */
    CG_CHAIN_HEX = 1,      /* a string of hex digits → bytes */
    CG_CHAIN_OBJECT = 2,   /* a JSON object, handed over as decoded JSON */
    CG_CHAIN_JSON_TEXT = 3 /* a string that itself holds JSON (ChirpStack v3 objectJSON) */
} cg_chain_how;

typedef enum { CG_LOG_ERROR = 3, CG_LOG_WARN = 4, CG_LOG_NOTICE = 5, CG_LOG_INFO = 6, CG_LOG_DEBUG = 7 } cg_log_level;

/* The host function table. Members are only appended (see VERSIONING). */
typedef struct cg_host {
    uint32_t abi;    /* CG_ABI_VERSION of the host */
    uint32_t size;   /* sizeof(cg_host) in the host */

    /* --- minor 0 ------------------------------------------------------------------ */
    /* Log one line under "plugin <name>" (ctx may be NULL outside a callback). Recurring
     * per-message complaints should use reject() instead, which the host rate-limits. */
    void (*log)(const cg_ctx *ctx, int level, const char *msg);
    /* The core's allocator. free(NULL) is a no-op. */
    void *(*alloc)(size_t n);
    void (*free)(void *p);
    /* Emit one sample (the same function decode() receives). Returns 0, CG_EINVAL for
     * a missing field name or a non-finite number (the sample is dropped), or a negative
     * code from the consumer (stop decoding and return it). */
    int (*emit)(cg_ctx *ctx, const cg_sample *s);
    /* Reject the payload: counts it for the device under reason, logs detail rate-limited.
     * Returns CG_EDECODE, so `return host->reject(ctx, CG_BAD_FRAME, "short TLV");`. */
    int (*reject)(cg_ctx *ctx, int reason, const char *detail);
    /* The device being decoded: its configured id, a numeric parameter from its
     * "params" object (0 or CG_ENOTFOUND), its location (0 or CG_ENOTFOUND). */
    const char *(*device_id)(const cg_ctx *ctx);
    int (*device_param)(const cg_ctx *ctx, const char *key, double *out);
    int (*device_location)(const cg_ctx *ctx, double *lon, double *lat);
    /* Option values (validated; defaults applied). Asking for an undeclared key or the
     * wrong type returns 0 / 0.0 / 0 / "" . Enums: opt_string gives the word, opt_int
     * its index in the choices. Strings live as long as the ctx. */
    int64_t (*opt_int)(const cg_ctx *ctx, const char *key);
    double (*opt_double)(const cg_ctx *ctx, const char *key);
    int (*opt_bool)(const cg_ctx *ctx, const char *key);
    const char *(*opt_string)(const cg_ctx *ctx, const char *key);
    /* The per-device state init() returned (NULL without init). */
    void *(*state)(const cg_ctx *ctx);
    /* The message time (epoch µs): the receive time unless set from the payload. */
    int64_t (*message_time)(const cg_ctx *ctx);
    void (*set_message_time)(cg_ctx *ctx, int64_t ts_us);
    /* What decode() was given: raw bytes or JSON text (already validated and parsed by
     * the host — read it with json_*). */
    int (*payload_kind)(const cg_ctx *ctx);
    /* Read the current JSON payload by path ("deviceInfo.devEui", "rxInfo[0].rssi",
     * "" = the root). Return 0, CG_ENOTFOUND (absent or null), CG_EINVAL (wrong type,
     * not finite; a string that does not fit n bytes), or CG_EDECODE when the payload
     * is not JSON (already rejected). json_number accepts booleans as 0/1. */
    int (*json_number)(cg_ctx *ctx, const char *path, double *out);
    int (*json_string)(cg_ctx *ctx, const char *path, char *buf, size_t n);
    int (*json_has)(cg_ctx *ctx, const char *path);
    /* Hand an inner payload to the device's decoder (envelopes). The inner decoder's
     * samples go to the same consumer. Returns its result, CG_ENOTFOUND (no such path),
     * or CG_EDECODE (bad encoding or inner decode error, already counted). */
    int (*chain)(cg_ctx *ctx, const char *path, int how);
    int (*chain_bytes)(cg_ctx *ctx, const uint8_t *bytes, size_t len);

    /* --- minor 1 ------------------------------------------------------------------ */
    /* Number of keys / elements at path (0 if absent or a scalar). */
    int (*json_count)(cg_ctx *ctx, const char *path);
    /* A time at path: an RFC 3339 string, or epoch seconds / milliseconds (a number
     * above 10^12 is taken as ms). Returns 0 with *ts_us, CG_ENOTFOUND or CG_EINVAL. */
    int (*json_time)(cg_ctx *ctx, const char *path, int64_t *ts_us);
} cg_host;

/* 1 if the host table has member m (compare against the host's own size). */
#define CG_HOST_HAS(host, m) \
    ((host)->size >= offsetof(cg_host, m) + sizeof(((cg_host *)0)->m) && (host)->m != NULL)

typedef enum {
    CG_OPT_INT = 1,    /* JSON integer; min/max apply */
    CG_OPT_DOUBLE = 2, /* JSON number, finite; min/max apply */
    CG_OPT_BOOL = 3,   /* true / false */
    CG_OPT_STRING = 4, /* at most max bytes when max > 0 */
    CG_OPT_ENUM = 5,   /* one word of choices "a|b|c" */
} cg_opt_type;

/* One declared option. The table ends with an entry whose key is NULL. Frozen for
 * ABI major 1. def is the default as JSON text ("0", "1.5", "true", "\"text\"" or,
 * for strings and enums, the bare word); NULL makes the option required. When
 * min < max, numbers outside [min, max] are refused. */
typedef struct cg_option {
    const char *key;
    int type;            /* cg_opt_type */
    const char *def;
    double min, max;
    const char *choices; /* CG_OPT_ENUM */
    const char *help;    /* one line for docs and `citygate decode --plugin X --help` */
} cg_option;

#define CG_PLUGIN_ENVELOPE 0x1u /* unwraps an envelope and chains to the device decoder */

/* What a plugin is. Static storage. Members are only appended (see VERSIONING). */
typedef struct cg_plugin_desc {
    uint32_t abi;        /* CG_ABI_CURRENT as the plugin was compiled */
    uint32_t size;       /* sizeof(cg_plugin_desc) as the plugin was compiled */

    /* --- minor 0 ------------------------------------------------------------------ */
    const char *name;    /* [a-z0-9_-]+, equal to the file name without .so */
    const char *version; /* the plugin's own version, free text */
    const char *description;
    uint32_t flags;      /* CG_PLUGIN_* */
    const cg_option *options; /* may be NULL */
    /* Optional: create per-device state (main thread, after options are validated).
     * Return 0 with *state set (may stay NULL) or a negative code: the device's
     * decoder then fails to start and the configuration is refused. */
    int (*init)(cg_ctx *ctx, void **state);
    /* Optional: free the state init made. */
    void (*fini)(cg_ctx *ctx, void *state);
    /* Required: decode one payload (len bytes; not NUL-terminated; may be 0 long) and
     * emit its samples. Return 0, or host->reject(...) (a negative code) when the
     * payload is bad; samples emitted before a rejection are kept. */
    int (*decode)(cg_ctx *ctx, const uint8_t *payload, size_t len, cg_emit_fn emit);

    /* --- minor 1 ------------------------------------------------------------------ */
    /* Optional: after decode (and any chain) of one message, called with every sample
     * that message produced for the device; emit derived samples (energy delta, should
     * be on). Derived samples are not fed back into derive. */
    int (*derive)(cg_ctx *ctx, const cg_sample *samples, size_t n, cg_emit_fn emit);
} cg_plugin_desc;

typedef const cg_plugin_desc *(*cg_plugin_entry_fn)(const cg_host *host, uint32_t host_abi);

/* CG_PLUGIN_ENTRY(name) { ... } defines the entry with the parameters
 * `const cg_host *host_table` and `uint32_t host_abi`. */
#ifdef CG_PLUGIN_BUILTIN
#define CG__ENTRY_NAME(name) citygate_plugin_entry_##name
#define CG_PLUGIN_ENTRY(name)                                                                   \
    const cg_plugin_desc *CG__ENTRY_NAME(name)(const cg_host *host_table, uint32_t host_abi);   \
    const cg_plugin_desc *CG__ENTRY_NAME(name)(const cg_host *host_table, uint32_t host_abi)
#else
#define CG_PLUGIN_ENTRY(name)                                                                   \
    __attribute__((visibility("default"))) const cg_plugin_desc *citygate_plugin_entry(        \
        const cg_host *host_table, uint32_t host_abi);                                          \
    __attribute__((visibility("default"))) const cg_plugin_desc *citygate_plugin_entry(        \
        const cg_host *host_table, uint32_t host_abi)
#endif

#ifdef __cplusplus
}
#endif

#endif
