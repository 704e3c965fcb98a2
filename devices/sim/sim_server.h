/* The simulator's Modbus server: one single-threaded epoll loop serving every TCP
 * endpoint of the config (one listening socket per distinct host:port, all unit ids of
 * the devices on the buses there) and the slave side of every RTU bus given a pty.
 * Thousands of connections cost one fd and one small buffer each, no thread.
 *
 * Faults come from each device's state in the model (silent, delay, drip, malformed
 * answers, corrupt CRC, scripted exceptions); drip and delay are wall-clock wire
 * timings, independent of --speed.
 *
 * Ownership: the server borrows the model (which must outlive it). Thread: the
 * simulator's main loop only. */
#ifndef CITYGATE_SIM_SERVER_H
#define CITYGATE_SIM_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sim_model.h"

typedef struct sim_server sim_server;

typedef struct sim_server_rtu {
    const char *bus;          /* RTU bus id */
    const char *path;         /* pty (or serial device) to open as the slave side */
} sim_server_rtu;

typedef struct sim_server_override {
    const char *bus;          /* TCP bus id */
    int port;                 /* listen here instead of the configured port */
} sim_server_override;

typedef struct sim_server_opts {
    int unknown_unit_silent;  /* TCP: 1 = no answer to an unknown unit, 0 = exception 0x0B */
    const sim_server_rtu *rtu;
    size_t n_rtu;
    const sim_server_override *ovr;
    size_t n_ovr;
} sim_server_opts;

/* Bind every TCP endpoint and open every RTU line. Problems (unknown bus ids, a TCP
 * bus given as --rtu, a unit id served twice on one endpoint) go to errs and return
 * GW_ECONFIG; a bind or open failure returns GW_EIO (logged). */
int sim_server_open(sim_model *m, const sim_server_opts *o, gw_cfgerr *errs,
                    sim_server **out);

/* Wait up to timeout_ms for I/O, answer requests, send due output. Returns 0 (also
 * when interrupted by a signal) or GW_EIO on a failing epoll. */
int sim_server_poll(sim_server *s, int timeout_ms);

/* Monotonic ms of the next timed event (delayed or dripped output, RTU inter-frame
 * gap, pty reopen), or -1 when none is pending. */
int64_t sim_server_next_due(const sim_server *s);

/* Log totals (connections, requests, answers, exceptions, dropped) at notice level. */
void sim_server_stats(const sim_server *s);

void sim_server_close(sim_server *s);

#endif
