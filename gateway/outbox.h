/* The durable event outbox: <data_dir>/outbox.db, SQLite in WAL mode with
 * synchronous=FULL, so an event counts as raised only once its transaction is fsync'd.
 *
 * Contents: the pending events (seq PRIMARY KEY, assigned by the rules engine,
 * monotonic per gateway across restarts), the state of every active alarm (deleted when
 * the alarm returns to normal: the engine restores from it after a restart), the
 * retained alarm-state publications still to be made, and meta (last seq, acked
 * high-water mark). One gw_outbox_commit() is one transaction covering all of them.
 *
 * A store that fails to open, fails PRAGMA quick_check or has a foreign schema is
 * quarantined (renamed to outbox.db.corrupt-<UTC time>, with its -wal / -shm), logged
 * and counted, and a fresh store is created: never a crash loop.
 *
 * Thread: every function may be called from any thread; one internal mutex serialises
 * them over one SQLite connection (the engine thread commits, the MQTT thread fetches
 * and acks). Callbacks run on the calling thread with the mutex released, so they may
 * call gw_outbox_* themselves.
 *
 * Ownership: strings passed in are copied into the store; strings handed to callbacks
 * are valid only during the call. */
#ifndef CITYGATE_OUTBOX_H
#define CITYGATE_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

typedef struct gw_outbox gw_outbox;

typedef struct gw_outbox_event {
    uint64_t seq;              /* must be greater than gw_outbox_last_seq() */
    const char *event_id;      /* unique id (UUID), NUL-terminated */
    const char *device_id;     /* topic suffix: …/event/{device_id} */
    const char *payload;       /* event JSON, payload_len bytes */
    size_t payload_len;
    int64_t created_us;        /* epoch µs */
    /* Alarm-state change carried by this event, or alarm_id NULL for none.
     * alarm_state NULL means the alarm returned to normal: its state is deleted and an
     * empty retained publication is queued; otherwise the state is upserted and a
     * retained publication of it is queued (replacing one still pending). */
    const char *alarm_id;      /* "device/rule": topic suffix …/alarm/{alarm_id} */
    const char *alarm_state;   /* JSON, alarm_state_len bytes */
    size_t alarm_state_len;
    /* The retained publication, when it differs from the stored state (the engine keeps
     * an internal state for restore and publishes a document for upstream). With
     * retained_given 0 the alarm_state is published (as before); with 1, retained
     * (retained_len bytes; NULL: an empty retained message) whatever alarm_state is. */
    int retained_given;
    const char *retained;
    size_t retained_len;
} gw_outbox_event;

/* A retained alarm-state publication waiting for its PUBACK. */
typedef struct gw_outbox_alarm_pub {
    const char *alarm_id;
    const char *state;         /* NULL: publish an empty retained message (cleared) */
    size_t state_len;
    uint64_t seq;              /* seq of the event that queued it (for the ack) */
} gw_outbox_alarm_pub;

typedef struct gw_outbox_stats {
    uint64_t depth;            /* events pending (not acked) */
    uint64_t bytes;            /* payload bytes pending */
    uint64_t alarms;           /* active alarm states */
    uint64_t alarm_pubs;       /* retained publications pending */
    uint64_t commits, commit_errors, acks;
    uint64_t commit_us_total, commit_us_max; /* wall time of commits (fsync included) */
    uint64_t last_seq, acked_seq;            /* highest committed / highest acked seq */
    uint64_t quarantined;      /* stores quarantined by this process at open */
} gw_outbox_stats;

/* Return non-zero to stop the iteration. */
typedef int (*gw_outbox_cb)(void *ctx, const gw_outbox_event *ev);
typedef int (*gw_outbox_alarm_cb)(void *ctx, const char *alarm_id, const char *state,
                                  size_t state_len);
typedef int (*gw_outbox_pub_cb)(void *ctx, const gw_outbox_alarm_pub *pub);

/* Open (creating, or quarantining and recreating) <data_dir>/outbox.db. The directory
 * must exist. Returns 0 and *out, GW_ENOMEM, or GW_EIO if even a fresh store cannot be
 * created. */
int gw_outbox_open(const char *data_dir, gw_outbox **out);
void gw_outbox_close(gw_outbox *ob);

/* One durable transaction: insert the event, apply its alarm-state change, queue the
 * retained publication, advance last seq. Returns 0 only once durable; GW_EINVAL (seq
 * not above last seq, missing fields), GW_EIO (disk; nothing committed), GW_ENOMEM. */
int gw_outbox_commit(gw_outbox *ob, const gw_outbox_event *ev);
/* Highest seq ever committed (persisted across restarts; 0 for a new store). */
uint64_t gw_outbox_last_seq(gw_outbox *ob);

/* Every stored alarm state (for restoring the engine at start). Returns 0 or GW_E*. */
int gw_outbox_foreach_alarm(gw_outbox *ob, gw_outbox_alarm_cb cb, void *ctx);

/* Up to max pending events with seq > after_seq, in seq order. Returns the number
 * passed to cb (>= 0) or a negative GW_E*. */
int gw_outbox_fetch(gw_outbox *ob, uint64_t after_seq, size_t max, gw_outbox_cb cb, void *ctx);
/* Delete an event after its PUBACK. Idempotent (an unknown seq is 0). */
int gw_outbox_ack(gw_outbox *ob, uint64_t seq);

/* Pending retained publications, oldest first (at most max); returns count or GW_E*. */
int gw_outbox_fetch_alarm_pubs(gw_outbox *ob, size_t max, gw_outbox_pub_cb cb, void *ctx);
/* Delete a pending publication after its PUBACK, only if it is still the one queued by
 * seq (a newer state for the same alarm stays pending). Idempotent. */
int gw_outbox_ack_alarm_pub(gw_outbox *ob, const char *alarm_id, uint64_t seq);

size_t gw_outbox_pending_count(gw_outbox *ob);
void gw_outbox_stats_get(gw_outbox *ob, gw_outbox_stats *out);

/* Internal, shared with spool.c: open path as a SQLite store in WAL mode, run
 * quick_check and schema (which must end by setting PRAGMA user_version = version),
 * quarantine and recreate once on failure. *quarantined is incremented per quarantine.
 * sync_full selects synchronous=FULL (else NORMAL). */
struct sqlite3;
int gw__outbox_open_db(const char *path, const char *schema, int version, int sync_full,
                       struct sqlite3 **out, uint64_t *quarantined);

#endif
