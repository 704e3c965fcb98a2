/* The Modbus poller: polls every enabled Modbus device of a config on its interval and
 * pushes one gw_sample per point per cycle into the sample queue.
 *
 * Connections: one per bus (a TCP endpoint, by name / IPv4 / IPv6 through
 * modbus_new_tcp_pi, or a serial line), shared by every unit id on it. Requests on one
 * connection are strictly serialized: a connection (with all its devices) is handed to
 * one worker at a time, so a libmodbus context is only ever used by one thread.
 *
 * Threads: a bounded pool of workers (min(connections, GW_POLLER_MAX_WORKERS)) takes
 * whichever connection has the earliest due device. 1,000 TCP devices run on 32
 * threads, not 1,000. A worker keeps taking due connections itself while they answer
 * fast (no hand-over between threads); it wakes a helper when the next connection is
 * late or the one it takes is suspect (not online, not connected, or slow last time).
 *
 * Schedule: device due times advance by exactly interval_ms from the first (drift-free);
 * first polls are spread over up to 8 phases of the interval (at least 128 devices
 * per phase: a few devices share one wake-up per interval); a cycle may start up to
 * min(interval / 50, 20 ms) after its slot so that devices due together share a wake-up;
 * missed slots are skipped (counted in cycles_late), never bunched.
 *
 * Failure handling (libmodbus error recovery stays NONE; our own policy):
 *  - per request: response_timeout_ms bounds a whole answer (byte_timeout_ms 0) or the
 *    first byte (then byte_timeout_ms bounds each gap, and on TCP the whole answer ends
 *    by the response timeout plus one byte timeout); a timeout, CRC error or malformed
 *    answer is retried up to `retries` times after modbus_flush() so a late answer is
 *    never taken for the next one. TCP reads are framed by the poller (frame.h) on the
 *    context's socket: an answer counts only when its transaction id, protocol id,
 *    MBAP length, unit id, function code and byte count all match the request (libmodbus
 *    3.1.6 checks neither unit id nor MBAP length); RTU reads go through libmodbus
 *    (CRC, unit id);
 *  - the first read that gets no answer ends the device's cycle (the others' reads are
 *    not attempted): a silent device costs at most response_timeout x (retries + 1)
 *    per cycle, and response_timeout x 1 once offline;
 *  - exception 02/03 on a merged read splits it (plan.h) and the split is remembered;
 *    other exceptions are counted per code;
 *  - connection errors close the context; reconnects back off exponentially from
 *    reconnect_min_ms to reconnect_max_ms with +-20 % jitter;
 *  - health per device (= per connection and unit id): online (last cycle good),
 *    degraded (something failed), offline (GW_POLLER_OFFLINE_AFTER consecutive cycles
 *    without an answer; then attempted only on a backoff of interval x 2^k up to
 *    reconnect_max_ms), probing (an offline device being tried again). Logged
 *    rate-limited (gw_complain) and once on recovery.
 *  - a device that could not be read still produces its samples on time, with quality
 *    comm_error (no answer, connection down) or decode_error (malformed answer), so
 *    rules see comm loss.
 *  - libmodbus 3.1.6 select()s on its descriptor and aborts when it is >= FD_SETSIZE
 *    (1024): before connecting, the poller checks that the next descriptor would stay
 *    under GW_POLLER_FD_LIMIT; if not it closes the least recently used idle
 *    connection, or refuses the connect (counted as fd_refused, logged) and retries on
 *    its backoff.
 *
 * Ownership: the poller borrows cfg and samples (both must outlive it) and owns its
 * profiles, plans and contexts. */
#ifndef CITYGATE_MODBUS_POLLER_H
#define CITYGATE_MODBUS_POLLER_H

#include <stddef.h>
#include <stdint.h>

#include "../config.h"
#include "../queue.h"
#include "plan.h"

#define GW_POLLER_MAX_WORKERS 32
#define GW_POLLER_OFFLINE_AFTER 3     /* consecutive unanswered cycles */
#define GW_POLLER_FD_LIMIT 1008       /* descriptors + connects in flight stay below this:
                                         16 spare under 1024 for other threads */
#define GW_POLLER_PUSH_TIMEOUT_MS 200 /* bounded wait on a full sample queue, then drop */

typedef enum {
    GW_MB_ONLINE = 0,
    GW_MB_DEGRADED,
    GW_MB_OFFLINE,
    GW_MB_PROBING,
    GW_MB_UNKNOWN /* not polled yet */
} gw_mb_health_state;

const char *gw_mb_health_name(gw_mb_health_state s); /* "online", ... "unknown" */

typedef struct gw_poller gw_poller;

typedef struct gw_poller_stats {
    uint64_t cycles;          /* device poll cycles run (incl. failed ones) */
    uint64_t cycles_late;     /* slots skipped because the previous cycle overran */
    uint64_t requests;        /* Modbus requests sent (incl. retries) */
    uint64_t responses;       /* good answers */
    uint64_t registers;       /* registers + bits received in good answers */
    uint64_t timeouts;
    uint64_t crc_errors;
    uint64_t bad_frames;      /* malformed: short, wrong unit / transaction id / MBAP length */
    uint64_t late_answers;    /* TCP: answers to an earlier request that timed out, dropped */
    uint64_t exceptions;      /* all codes */
    uint64_t exception_code[12]; /* per Modbus exception code 1..11 */
    uint64_t splits;          /* merged reads split after exception 02/03 */
    uint64_t connects, connect_failures, disconnects;
    uint64_t fd_refused;      /* connects refused to keep descriptors < 1024 */
    uint64_t samples, samples_dropped;
    uint32_t devices, connections, open_connections, workers;
    uint32_t online, degraded, offline, probing;
} gw_poller_stats;

typedef struct gw_mb_health {
    gw_mb_health_state state;
    int consecutive_failures;
    int64_t last_ok_us;        /* wall time of the last good answer, 0 = never */
    int64_t last_cycle_us;     /* wall time of the last cycle */
    int64_t last_duration_us;  /* how long the last cycle took */
    uint64_t cycles, failures, timeouts, exceptions;
    int last_exception;        /* last Modbus exception code, 0 = none */
    char last_error[128];      /* "", or e.g. "timeout (read holding 0..9)" */
    size_t reads_per_cycle;    /* current plan size (after any split) */
} gw_mb_health;

/* One read made by gw_poller_poll_once, for `citygate poll`. */
typedef struct gw_poll_read_report {
    gw_mb_table table;
    uint16_t address, count;
    int rc;            /* 0, or GW_ETIMEDOUT / GW_EPROTO / GW_EIO / GW_EDECODE */
    int exception;     /* Modbus exception code, 0 = none */
    int attempts;
    int split;         /* 1 if this read was split after it (exception 02/03) */
    int64_t duration_us;
} gw_poll_read_report;

#define GW_POLL_REPORT_MAX 256
typedef struct gw_poll_report {
    int connected;          /* the connection was (or could be) opened */
    int answered;           /* at least one read got a good answer */
    int64_t connect_us;     /* time spent connecting (0 if already open) */
    int64_t total_us;
    char error[128];        /* first error, "" if none */
    size_t n_reads;
    gw_poll_read_report reads[GW_POLL_REPORT_MAX];
} gw_poll_report;

/* Build the poller for every enabled Modbus device of cfg: parses the profiles, plans
 * the reads; no I/O and no threads yet. samples receives every sample (a worker hands
 * over the cycles it ran back to back with one gw_queue_push_many: up to 1,024 samples,
 * at most 20 ms after the first, and always before it waits; GW_POLLER_PUSH_TIMEOUT_MS
 * bound; what a push could not place is counted in samples_dropped). Returns 0 with *out, GW_ECONFIG (a profile is invalid: logged),
 * or GW_ENOMEM. Thread: main. */
int gw_poller_new(const gw_config *cfg, gw_queue *samples, gw_poller **out);
/* Start the worker pool. Returns 0, GW_ENOMEM or GW_EIO. Thread: main. */
int gw_poller_start(gw_poller *p);
/* Stop and join the workers (each finishes at most its current request) and close
 * every connection. Idempotent. Thread: main. */
void gw_poller_stop(gw_poller *p);
void gw_poller_free(gw_poller *p);

/* Counters and current health totals. Thread: any. */
void gw_poller_stats_get(gw_poller *p, gw_poller_stats *out);
/* Health of cfg->devices[device_idx]. Returns 0, or GW_ENOTFOUND when that device is
 * not polled by Modbus (MQTT or disabled). Thread: any. */
int gw_poller_device_health(gw_poller *p, size_t device_idx, gw_mb_health *out);

/* Poll cfg->devices[device_idx] once, now, on the calling thread (the poller must not
 * be started), pushing its samples like a cycle would; rep (may be NULL) receives the
 * reads made and their timings. Returns 0 when the device answered at least one read,
 * GW_ENOTFOUND (not a Modbus device), or the failure (GW_ETIMEDOUT, GW_EIO, ...). */
int gw_poller_poll_once(gw_poller *p, size_t device_idx, gw_poll_report *rep);

/* Deep validation for `citygate check` (called from gw_check_deep): parses every
 * referenced profile (cfg->profiles[i].json, errors under cfg->profiles[i].path) and
 * checks each Modbus device against its bus and profile (unit id 0 on RTU, interval
 * shorter than the worst-case request time, coil / discrete reads on ...). Appends to
 * errs; returns 0 or GW_ECONFIG. Thread: main. */
int gw_modbus_check(const gw_config *cfg, gw_cfgerr *errs);

#endif
