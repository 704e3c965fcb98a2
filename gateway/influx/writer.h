/* The InfluxDB writer: one thread that turns samples into line protocol, batches them
 * and POSTs them over one keep-alive libcurl handle to 1.x /write (db, rp, precision,
 * Basic auth) or 2.x /api/v2/write (org, bucket, precision, "Authorization: Token").
 *
 * Input: gw_influx_writer_submit() copies samples into the writer's own bounded queue
 * (drop-oldest when full, counted). Consecutive samples of one device with one
 * timestamp become one line (closed by the next sample of another device or time, or
 * by 5 ms without samples): measurement = device kind; tags device, component, grid,
 * gateway and the device's own "tags"; fields = the sample values (numbers as floats,
 * booleans, text as strings); the timestamp is the sample's, at the configured
 * precision, so a retried batch overwrites instead of duplicating. Samples of bad
 * quality, of unknown devices or with non-finite values are not written (counted).
 *
 * Batching: a batch is sent when it reaches batch_lines or batch_bytes, or flush_ms
 * after its first line. Bodies are gzip-compressed (zlib, level 1) when cfg gzip is
 * on. Two threads: one formats (the series key of each device is escaped once, at
 * new) and compresses a full batch while the other has the previous one on the wire.
 *
 * Delivery and the spool: while the spool is empty and the server healthy, batches go
 * straight to the server. A batch that cannot be written (network error, timeout, 5xx,
 * 429, configuration fault) is appended to the spool, and from then on every live
 * batch is appended behind it, so replay is strictly in order and interleaves with
 * live data; the thread drains the spool oldest-first between rounds of sample
 * consumption. Retries back off exponentially (0.5 s doubling to 60 s) with jitter;
 * a 429 / 503 Retry-After is honoured. 413: the batch is split in halves (a single line
 * too large is dead-lettered). 400 (and 422): the batch is bisected until the offending
 * lines are isolated; those alone are dropped, counted and appended to
 * <data_dir>/influx-deadletter.lp (bounded at 64 MiB); the rest is written (1.x wrote
 * the valid lines of a partial write already; rewriting them is idempotent).
 * 401 / 403 / 404 (and other 3xx/4xx) are configuration faults: data stays in the
 * spool, the state becomes GW_INFLUX_CONFIG_FAULT and the fault callback fires, so the
 * gateway raises an alarm of its own; the writer keeps probing (with back-off) and
 * reports recovery through the same callback. At stop, what is still in memory is
 * spooled (not sent), so stopping is quick and loses nothing.
 *
 * TLS: certificate and host verification always on; cfg ca_file sets the CA bundle.
 * Secrets (password, token) are never logged, and libcurl's verbose mode is never on.
 *
 * Thread: new / on_fault / start / stop / free from the owning (main) thread; submit
 * and stats from any thread; the fault callback runs on the writer thread.
 * Ownership: cfg and spool are borrowed and must outlive the writer. */
#ifndef CITYGATE_INFLUX_WRITER_H
#define CITYGATE_INFLUX_WRITER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sample.h"
#include "spool.h"

typedef struct gw_influx_writer gw_influx_writer;

typedef enum {
    GW_INFLUX_IDLE = 0,         /* not started / stopped */
    GW_INFLUX_OK,               /* last write succeeded (or none needed yet) */
    GW_INFLUX_RETRYING,         /* transient failure: backing off, data spooled */
    GW_INFLUX_CONFIG_FAULT,     /* 401/403/404...: needs an operator, data spooled */
} gw_influx_state;

typedef struct gw_influx_stats {
    gw_influx_state state;
    int last_status;            /* last HTTP status (0: no response) */
    char last_error[160];       /* last failure, secrets never included */
    uint64_t samples_in;        /* samples taken from the queue */
    uint64_t points_written;    /* lines the server accepted */
    uint64_t batches_written, requests, retries;
    uint64_t bytes_raw, bytes_sent;           /* line protocol / on the wire (gzip) */
    uint64_t http_errors, net_errors;
    uint64_t splits;                          /* halvings on 413 / 400 */
    /* Dropped, by reason. */
    uint64_t dropped_queue;                   /* writer queue overflow (samples) */
    uint64_t dropped_quality;                 /* samples of bad quality (not written) */
    uint64_t dropped_unknown_device;          /* samples of devices not in the config */
    uint64_t dropped_nonfinite;               /* NaN / Inf values */
    uint64_t dropped_rejected;                /* lines the server refused (400), dead-lettered */
    uint64_t dropped_too_large;               /* single lines refused with 413 */
    uint64_t dropped_spool;                   /* lines evicted from the full spool */
    uint64_t dropped_deadletter;              /* dead lines not kept: dead-letter file full */
    uint64_t spool_bytes, spool_batches, spool_lines;
    uint64_t queue_depth;                     /* samples waiting in the writer's queue */
} gw_influx_stats;

/* Called on the writer thread when a configuration fault begins (fault = 1, with the
 * HTTP status and a message) and when writes succeed again (fault = 0). */
typedef void (*gw_influx_fault_cb)(void *ctx, int fault, int http_status, const char *msg);

/* Create a writer for cfg->influx (which must be enabled) writing through spool (may
 * be NULL: then a batch that cannot be written is dropped and counted as spool drops).
 * Returns 0 and *out, GW_EINVAL / GW_ECONFIG (bad url / precision) or GW_ENOMEM. */
int gw_influx_writer_new(const gw_config *cfg, gw_spool *spool, gw_influx_writer **out);
/* Set before start. */
void gw_influx_writer_on_fault(gw_influx_writer *w, gw_influx_fault_cb cb, void *ctx);
int gw_influx_writer_start(gw_influx_writer *w);
/* Stop the thread: samples still queued are formatted and spooled. Idempotent. */
void gw_influx_writer_stop(gw_influx_writer *w);
void gw_influx_writer_free(gw_influx_writer *w);

/* Copy n samples into the writer's queue. Never blocks; when full the oldest queued
 * samples are dropped and counted. Returns 0 or GW_ECLOSED after stop. */
int gw_influx_writer_submit(gw_influx_writer *w, const gw_sample *samples, size_t n);

void gw_influx_writer_stats(gw_influx_writer *w, gw_influx_stats *out);
const char *gw_influx_state_name(gw_influx_state s);

#endif
