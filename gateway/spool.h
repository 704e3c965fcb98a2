/* The telemetry spool: <data_dir>/spool.db, a FIFO of line-protocol batches kept while
 * InfluxDB cannot take them. A separate file from the outbox, so telemetry never
 * competes with events for space or fsyncs (events are never evicted for telemetry).
 *
 * Bounded in bytes (the sum of the stored batch bodies, not the file size; the file
 * stays near that plus SQLite's page overhead as freed pages are reused): an append
 * that does not fit drops the oldest batches first, and every dropped line is counted
 * exactly. A batch larger than the whole bound is itself dropped (GW_EFULL).
 *
 * Durability: WAL with synchronous=NORMAL: a process crash (kill -9) loses nothing
 * appended; a power cut may lose the last few appends but never corrupts the store.
 * A store that fails its integrity check at open is quarantined (spool.db.corrupt-<time>)
 * and a fresh one created, as the outbox does.
 *
 * Thread: any; an internal mutex serialises calls (the InfluxDB writer thread appends,
 * peeks and deletes; the metrics thread reads stats). */
#ifndef CITYGATE_SPOOL_H
#define CITYGATE_SPOOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_spool gw_spool;

typedef struct gw_spool_batch {
    int64_t id;          /* for gw_spool_delete */
    char *data;          /* owned by the batch: gw_spool_batch_release frees it */
    size_t len;
    uint32_t lines;
} gw_spool_batch;

typedef struct gw_spool_stats {
    uint64_t bytes, max_bytes;       /* stored body bytes, the bound */
    uint64_t batches, lines;         /* stored */
    uint64_t appended_batches, appended_lines;
    uint64_t deleted_lines;          /* delivered (deleted after a write) */
    uint64_t dropped_batches, dropped_lines; /* evicted to stay in the bound */
    uint64_t errors;                 /* failed SQLite operations */
    uint64_t quarantined;            /* stores quarantined at open */
} gw_spool_stats;

/* Open or create <data_dir>/spool.db bounded to max_bytes (> 0). Returns 0 and *out,
 * GW_EINVAL, GW_ENOMEM or GW_EIO. */
int gw_spool_open(const char *data_dir, int64_t max_bytes, gw_spool **out);
void gw_spool_close(gw_spool *sp);

/* Append one batch of len bytes holding `lines` lines (copied). Evicts oldest batches
 * as needed. Returns 0, GW_EFULL (batch larger than the bound: dropped and counted),
 * GW_EIO / GW_ENOMEM (not stored). */
int gw_spool_append(gw_spool *sp, const char *data, size_t len, uint32_t lines);

/* Copy out the oldest batch. Returns 0, GW_ENOTFOUND when empty, GW_ENOMEM / GW_EIO. */
int gw_spool_peek(gw_spool *sp, gw_spool_batch *out);
void gw_spool_batch_release(gw_spool_batch *b);

/* Delete a batch after a successful write (idempotent: an evicted id is fine). */
int gw_spool_delete(gw_spool *sp, int64_t id);

/* Replace a batch's body in place (keeping its position), e.g. with what is left of
 * it after part was written. Returns 0 (also when the id is gone) or GW_EIO. */
int gw_spool_replace(gw_spool *sp, int64_t id, const char *data, size_t len, uint32_t lines);

/* Batches stored (0 = empty). */
size_t gw_spool_count(gw_spool *sp);
void gw_spool_stats_get(gw_spool *sp, gw_spool_stats *out);

#endif
