/* Decoding MQTT uplinks into samples: the built-in "json" decoder (fields by JSON path)
 * and the dispatcher that runs a device's decoder chain on one payload.
 *
 * CHAINING. A message arrives with the decoder of the subscription that matched it
 * (S) and belongs to a device that may name its own decoder (D, "mqtt.decoder"):
 *   - S is an envelope plugin (chirpstack, ttn): S unwraps the uplink and hands the
 *     inner bytes / decoded object to D, or to "json" when D is not set;
 *   - otherwise D, when set, replaces S (config.h: "overrides the subscription's
 *     decoder"), and if D is an envelope the same rule applies with D as the envelope;
 *   - the device's "mqtt.options" belong to D when D is set, else to the decoder(s)
 *     that run on the inner payload; envelopes otherwise run with their defaults.
 * So {"topic": ".../event/up", "decoder": "chirpstack"} + {"decoder": "manhole"} on a
 * device decodes ChirpStack's base64 `data` with the manhole TLV decoder, or hands it
 * ChirpStack's decoded `object`.
 *
 * BAD PAYLOADS are never fatal: too large, invalid JSON, wrong types, invalid base64,
 * malformed frames are counted per device and reason (gw_decode_bad_count), logged
 * rate-limited per device and reason (gw_complain: once, then at doubling intervals),
 * and the message is dropped (samples emitted before the fault are kept).
 *
 * JSON SAFETY: every payload is size-capped, copied to len+1 and NUL-terminated, its
 * nesting depth pre-scanned (at most GW_DECODE_JSON_DEPTH: Debian's libcjson has the
 * compile-time limit 1000) and parsed with cJSON_ParseWithOpts(require_null_terminated).
 *
 * Thread: create/free on the main thread. gw_decode_message may run on any thread, but
 * calls for the same device must not overlap (the ingest decodes every source on its one
 * "mqtt-decode" thread). Counters are atomics and may be read from any thread. */
#ifndef CITYGATE_DECODE_H
#define CITYGATE_DECODE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "config.h"
#include "sample.h"

#define GW_DECODE_JSON_DEPTH 32
#define GW_DECODE_MAX_PAYLOAD_DEFAULT 65536

typedef struct gw_decoders gw_decoders;

typedef struct gw_decoders_opts {
    const char *plugin_dir;    /* overrides cfg->plugins_dir when non-NULL */
    const char *extra_decoder; /* also prepare this decoder for every MQTT device (CLI) */
    int quiet;                 /* plugin loads logged at debug (a check before the run) */
} gw_decoders_opts;

/* Build the decoder chains of every MQTT device of cfg (cfg must outlive the result):
 * load the plugins named by subscriptions and devices, validate each device's options,
 * run plugin init. Every problem is added to errs ("FILE: devices[2].mqtt.options.x:
 * ..."); returns 0 with *out, GW_ECONFIG, or GW_ENOMEM. opts may be NULL. */
int gw_decoders_create(const gw_config *cfg, const gw_decoders_opts *opts, gw_cfgerr *errs,
                       gw_decoders **out);
void gw_decoders_free(gw_decoders *d);

/* Consumer of decoded samples; called on the decoding thread, once per sample, before
 * gw_decode_message returns. The sample is borrowed (copy it). A negative return stops
 * decoding and is returned by gw_decode_message (it is not counted as a bad payload). */
typedef int (*gw_decode_emit_fn)(void *ctx, const gw_sample *s);

typedef enum { GW_PAYLOAD_AUTO = -1, GW_PAYLOAD_BYTES = 0, GW_PAYLOAD_JSON = 1 } gw_payload_kind;

/* Decode one payload of device device_idx (an index into cfg->devices) that arrived on
 * a subscription with decoder `decoder` (NULL: the device's own). recv_ts_us (0: now)
 * is the sample time unless the payload carries one. Samples get the device's id and
 * index. Returns 0, GW_EDECODE (bad payload: counted and logged), GW_ENOTFOUND (not an
 * MQTT device of cfg), or the consumer's negative code. */
int gw_decode_message(gw_decoders *d, size_t device_idx, const char *decoder,
                      const void *payload, size_t len, int64_t recv_ts_us,
                      gw_decode_emit_fn emit, void *ctx);
/* The same with the payload kind forced (AUTO: JSON when it starts with '{' or '[' and
 * parses; the CLI passes BYTES for --hex, JSON for --json). */
int gw_decode_payload(gw_decoders *d, size_t device_idx, const char *decoder,
                      const void *payload, size_t len, gw_payload_kind kind,
                      int64_t recv_ts_us, gw_decode_emit_fn emit, void *ctx);

/* gw_decode_message for a payload the caller has already parsed with
 * gw_decode_json_parse into doc (borrowed, not modified): JSON is not parsed again. doc
 * NULL: exactly gw_decode_message. */
int gw_decode_parsed(gw_decoders *d, size_t device_idx, const char *decoder,
                     const void *payload, size_t len, const cJSON *doc, int64_t recv_ts_us,
                     gw_decode_emit_fn emit, void *ctx);

/* Bad payloads of one device by reason (cg_bad), and in total over all devices. */
uint64_t gw_decode_bad_count(const gw_decoders *d, size_t device_idx, int reason);
uint64_t gw_decode_bad_total(const gw_decoders *d);
/* "size", "json", "type", "missing", "encoding", "frame", "range", "no_decoder". */
const char *gw_decode_reason_name(int reason);

/* ---- JSON helpers (also for the ingest's device_key lookup) ---------------------------- */

/* Safe parse of an untrusted buffer (see JSON SAFETY). Returns 0 with *out or
 * GW_EDECODE with *reason (CG_BAD_SIZE / CG_BAD_JSON). The tree may live in this
 * thread's parse arena: read it, and free it with gw_decode_json_free on this thread;
 * do not detach its nodes or move them into another tree. The arena's cJSON hooks are
 * process-wide and installed by the first gw_decoders_create: make that call before
 * other threads use cJSON (the gateway does, at start). */
int gw_decode_json_parse(const void *buf, size_t len, size_t max, cJSON **out, int *reason);
/* Free a tree from gw_decode_json_parse (NULL: nothing), on the thread that parsed it. */
void gw_decode_json_free(cJSON *doc);
/* Node at a path such as "deviceInfo.devEui", "rxInfo[0].rssi", "a.b[2]"; "" or NULL
 * gives root. Keys match case-sensitively. NULL when absent or the path is malformed. */
const cJSON *gw_decode_json_path(const cJSON *root, const char *path);

/* Validate options of the "json" decoder; errors at "file: path...". 0 or GW_ECONFIG. */
int gw_decode_json_check_options(const cJSON *options, gw_cfgerr *errs, const char *file,
                                 const char *path);

#endif
