/* The inbox: a bounded byte ring of whole messages between producer threads (the
 * ingest: Paho's receive thread), which copy each message in and return at once, and
 * one consumer thread (the ingest's "mqtt-decode"), which reads the messages in place,
 * in order, without holding the lock, and gives their space back as it goes.
 *
 * A message (topic, payload and a few header fields) goes in whole or not at all; a
 * producer that finds no room waits up to its wait_ms for the consumer, then gives up
 * (GW_EFULL) and keeps the message. One short lock and two memcpy per message, a
 * wake-up only when the consumer sleeps, no allocation after gw_inbox_new().
 *
 * The consumer walks a batch (what was in the ring when it began):
 *
 *     gw_inbox_batch it;
 *     gw_inbox_msg m;
 *     while (gw_inbox_begin(box, &it)) {       // waits; 0 once stopped and drained
 *         while (gw_inbox_next(box, &it, &m))
 *             use(&m);                          // m's bytes valid until the next call
 *         gw_inbox_end(box, &it);
 *     }
 *
 * gw_inbox_next gives the space of the records before m back every GW_INBOX_RELEASE
 * records, so producers need not wait for a slow batch to end; gw_inbox_end gives back
 * the rest and, after a batch of fewer than GW_INBOX_RELEASE records, naps 1 ms so
 * that a burst gathers into one batch instead of one wake-up per message.
 *
 * gw_inbox_stop() closes the inbox: later puts fail with GW_ECLOSED, waiting producers
 * return GW_ECLOSED, and the consumer still gets everything put before, then
 * gw_inbox_begin returns 0.
 *
 * Threads: gw_inbox_put from any number of producer threads; begin/next/end from one
 * consumer thread; stop, stopping, nap and stats from any thread; new/free/reopen
 * while no other thread uses the inbox. */
#ifndef CITYGATE_MQTT_INBOX_H
#define CITYGATE_MQTT_INBOX_H

#include <stddef.h>
#include <stdint.h>

#define GW_INBOX_RELEASE 32 /* records between give-backs; smaller batches nap */

typedef struct gw_inbox gw_inbox;

/* One message. To gw_inbox_put the producer fills every field; topic (topic_len
 * bytes) and payload (len bytes) are borrowed for the call and copied. From
 * gw_inbox_next, topic and payload point into the ring, each followed by a NUL, valid
 * until the consumer's next call to gw_inbox_next or gw_inbox_end. */
typedef struct gw_inbox_msg {
    void *owner;            /* the producer's context (ingest: the source); not touched */
    int64_t recv_us;        /* receive time */
    uint32_t tag;           /* the producer's number (ingest: the subscription index) */
    int has_key;            /* key_off/key_len mark a part of the topic */
    uint32_t key_off, key_len; /* (ingest: the named topic level) */
    const char *topic;
    size_t topic_len;
    const void *payload;
    size_t len;
} gw_inbox_msg;

/* The consumer's place in a batch; fields are the inbox's. */
typedef struct gw_inbox_batch {
    size_t at;      /* offset of the next record */
    size_t avail;   /* bytes of the batch not given back yet (records and skipped ends) */
    size_t done;    /* of those, bytes already read */
    size_t n;       /* records handed out */
} gw_inbox_batch;

typedef struct gw_inbox_stats {
    size_t cap, used;
    uint64_t put, full, closed; /* puts taken; refused for no room; refused after stop */
    uint64_t waits;             /* puts that had to wait for room */
} gw_inbox_stats;

/* Bytes one message takes in the ring (header, topic, payload, two NULs, 8-aligned);
 * SIZE_MAX on overflow. A message fits only if this is at most cap / 2, so size the
 * ring at twice the largest message. Thread: any. */
size_t gw_inbox_record_size(size_t topic_len, size_t len);

/* Create an inbox of cap bytes (rounded down to a multiple of 8; at least 256).
 * Returns 0 and *out, GW_EINVAL, GW_ENOMEM. */
int gw_inbox_new(size_t cap, gw_inbox **out);
/* Free the ring; no thread may use it any more. NULL is fine. */
void gw_inbox_free(gw_inbox *box);

/* Copy one message in (producer thread), waiting up to wait_ms (0: not at all) for
 * room. Returns 0, GW_EFULL (no room in time: the caller keeps the message),
 * GW_ECLOSED (stopped: likewise), GW_EINVAL (larger than cap / 2: never fits). */
int gw_inbox_put(gw_inbox *box, const gw_inbox_msg *m, int wait_ms);

/* Consumer thread. Wait until there are records or the inbox is stopped; returns 1
 * with a batch in *it, or 0 when stopped and everything put before was handed out. */
int gw_inbox_begin(gw_inbox *box, gw_inbox_batch *it);
/* The next record of the batch into *m (the previous one is done with). Returns 1, or
 * 0 at the end of the batch. */
int gw_inbox_next(gw_inbox *box, gw_inbox_batch *it, gw_inbox_msg *m);
/* Give the rest of the batch back (every record handed out is done with), and after a
 * small batch nap 1 ms unless stopped. */
void gw_inbox_end(gw_inbox *box, gw_inbox_batch *it);

/* Close the inbox and wake every waiter (see above). Idempotent. Thread: any. */
void gw_inbox_stop(gw_inbox *box);
/* 1 once gw_inbox_stop was called. Thread: any. */
int gw_inbox_stopping(gw_inbox *box);
/* Sleep ms, or less once the inbox is stopped (a consumer backing off). Thread: any. */
void gw_inbox_nap(gw_inbox *box, int ms);
/* Open a stopped, drained inbox again (a restart). Returns 0 or GW_EINVAL while
 * records are left. */
int gw_inbox_reopen(gw_inbox *box);

void gw_inbox_stats_get(gw_inbox *box, gw_inbox_stats *out);

#endif
