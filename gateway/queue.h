/* A bounded, thread-safe FIFO of fixed-size items: the one hand-over between threads
 * (sources → engine, engine → outputs). Many producers, one or more consumers.
 *
 * Overflow policy is chosen at creation and every overflow is counted:
 *   GW_QUEUE_BLOCK       push waits for room (with a timeout), never drops;
 *   GW_QUEUE_DROP_NEWEST a push into a full queue fails with GW_EFULL, item dropped;
 *   GW_QUEUE_DROP_OLDEST a push into a full queue evicts the oldest item.
 * After gw_queue_shutdown() pushes fail with GW_ECLOSED and pops drain what is left,
 * then fail with GW_ECLOSED.
 *
 * Ownership: items are copied in and out (item_size bytes); the queue owns its buffer. */
#ifndef CITYGATE_QUEUE_H
#define CITYGATE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef enum { GW_QUEUE_BLOCK = 0, GW_QUEUE_DROP_NEWEST, GW_QUEUE_DROP_OLDEST } gw_queue_policy;

typedef struct gw_queue gw_queue;

typedef struct gw_queue_stats {
    size_t depth, capacity, high_water;
    uint64_t pushed, popped, dropped, blocked;
} gw_queue_stats;

/* Create a queue of capacity items of item_size bytes. Returns 0 and *out, or GW_ENOMEM
 * / GW_EINVAL. Free with gw_queue_free (after every thread has stopped using it). */
int gw_queue_new(size_t capacity, size_t item_size, gw_queue_policy policy, gw_queue **out);
void gw_queue_free(gw_queue *q);

/* Copy item in. timeout_ms applies to GW_QUEUE_BLOCK only (<0 waits forever).
 * Returns 0, GW_EFULL (dropped, counted), GW_ETIMEDOUT (blocking push timed out,
 * counted as dropped) or GW_ECLOSED. */
int gw_queue_push(gw_queue *q, const void *item, int timeout_ms);
/* Copy n items in under one lock and one wake-up of the consumers (a source handing
 * over a whole poll cycle). Same policies as gw_queue_push; timeout_ms bounds the whole
 * call. Returns the number pushed (n when all fit; the others were dropped and
 * counted), or GW_ECLOSED if the queue was shut down before any was pushed. */
int gw_queue_push_many(gw_queue *q, const void *items, size_t n, int timeout_ms);
/* Copy the oldest item out. timeout_ms: 0 polls, <0 waits forever. Returns 0,
 * GW_ETIMEDOUT (empty) or GW_ECLOSED (shut down and drained). */
int gw_queue_pop(gw_queue *q, void *item, int timeout_ms);
/* Pop up to max items at once (waits like gw_queue_pop for the first). Returns the
 * number popped (>0), or GW_ETIMEDOUT / GW_ECLOSED. */
int gw_queue_pop_many(gw_queue *q, void *items, size_t max, int timeout_ms);

/* Wake every waiter; later pushes fail, pops drain. Thread: any. */
void gw_queue_shutdown(gw_queue *q);
void gw_queue_stats_get(gw_queue *q, gw_queue_stats *out);

#endif
