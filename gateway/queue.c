#include "queue.h"

#include "alloc.h"
#include "error.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

struct gw_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    unsigned char *buf;
    size_t item_size, capacity, head, count;
    gw_queue_policy policy;
    int closed;
    gw_queue_stats st;
};

int gw_queue_new(size_t capacity, size_t item_size, gw_queue_policy policy, gw_queue **out)
{
    if (capacity == 0 || item_size == 0 || capacity > SIZE_MAX / item_size)
        return GW_EINVAL;
    gw_queue *q = gw_calloc(1, sizeof *q);
    if (!q)
        return GW_ENOMEM;
    q->buf = gw_malloc(capacity * item_size);
    if (!q->buf)
        goto fail_buf;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, &ca);
    pthread_cond_init(&q->not_full, &ca);
    pthread_condattr_destroy(&ca);
    q->item_size = item_size;
    q->capacity = capacity;
    q->policy = policy;
    q->st.capacity = capacity;
    *out = q;
    return 0;

fail_buf:
    gw_free(q);
    return GW_ENOMEM;
}

void gw_queue_free(gw_queue *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    gw_free(q->buf);
    gw_free(q);
}

/* Wait on cond until pred holds, the queue closes, or the deadline passes. */
static int wait_on(gw_queue *q, pthread_cond_t *cond, int timeout_ms, const struct timespec *dl)
{
    if (timeout_ms == 0)
        return GW_ETIMEDOUT;
    if (timeout_ms < 0)
        return pthread_cond_wait(cond, &q->lock) ? GW_EIO : 0;
    int rc = pthread_cond_timedwait(cond, &q->lock, dl);
    return rc == ETIMEDOUT ? GW_ETIMEDOUT : 0;
}

int gw_queue_push(gw_queue *q, const void *item, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms > 0)
        gw_mono_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&q->lock);
    int rc = 0;
    if (q->count == q->capacity && !q->closed) {
        switch (q->policy) {
        case GW_QUEUE_DROP_NEWEST:
            q->st.dropped++;
            rc = GW_EFULL;
            goto out;
        case GW_QUEUE_DROP_OLDEST:
            q->head = (q->head + 1) % q->capacity;
            q->count--;
            q->st.dropped++;
            break;
        case GW_QUEUE_BLOCK:
            q->st.blocked++;
            while (q->count == q->capacity && !q->closed) {
                if (wait_on(q, &q->not_full, timeout_ms, &dl) == GW_ETIMEDOUT &&
                    q->count == q->capacity) {
                    q->st.dropped++;
                    rc = GW_ETIMEDOUT;
                    goto out;
                }
            }
            break;
        }
    }
    if (q->closed) {
        rc = GW_ECLOSED;
        goto out;
    }
    size_t tail = (q->head + q->count) % q->capacity;
    memcpy(q->buf + tail * q->item_size, item, q->item_size);
    q->count++;
    q->st.pushed++;
    if (q->count > q->st.high_water)
        q->st.high_water = q->count;
    pthread_cond_signal(&q->not_empty);
out:
    pthread_mutex_unlock(&q->lock);
    return rc;
}

int gw_queue_push_many(gw_queue *q, const void *items, size_t n, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms > 0)
        gw_mono_deadline(&dl, timeout_ms);
    const unsigned char *src = items;
    size_t done = 0;
    int closed = 0;
    pthread_mutex_lock(&q->lock);
    while (done < n) {
        if (q->closed) {
            closed = 1;
            break;
        }
        if (q->count == q->capacity) {
            if (q->policy == GW_QUEUE_DROP_NEWEST) {
                q->st.dropped += n - done;
                break;
            }
            if (q->policy == GW_QUEUE_DROP_OLDEST) {
                q->head = (q->head + 1) % q->capacity;
                q->count--;
                q->st.dropped++;
            } else {
                q->st.blocked++;
                if (done)
                    pthread_cond_broadcast(&q->not_empty); /* let consumers make room */
                if (wait_on(q, &q->not_full, timeout_ms, &dl) == GW_ETIMEDOUT &&
                    q->count == q->capacity) {
                    q->st.dropped += n - done;
                    break;
                }
                continue;
            }
        }
        size_t tail = (q->head + q->count) % q->capacity;
        memcpy(q->buf + tail * q->item_size, src + done * q->item_size, q->item_size);
        q->count++;
        q->st.pushed++;
        if (q->count > q->st.high_water)
            q->st.high_water = q->count;
        done++;
    }
    if (done == 1)
        pthread_cond_signal(&q->not_empty);
    else if (done > 1)
        pthread_cond_broadcast(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    if (closed && done == 0)
        return GW_ECLOSED;
    return (int)done;
}

int gw_queue_pop_many(gw_queue *q, void *items, size_t max, int timeout_ms)
{
    if (max == 0)
        return GW_EINVAL;
    struct timespec dl;
    if (timeout_ms > 0)
        gw_mono_deadline(&dl, timeout_ms);
    pthread_mutex_lock(&q->lock);
    while (q->count == 0) {
        if (q->closed) {
            pthread_mutex_unlock(&q->lock);
            return GW_ECLOSED;
        }
        if (wait_on(q, &q->not_empty, timeout_ms, &dl) == GW_ETIMEDOUT && q->count == 0) {
            int closed = q->closed;
            pthread_mutex_unlock(&q->lock);
            return closed ? GW_ECLOSED : GW_ETIMEDOUT;
        }
    }
    size_t n = q->count < max ? q->count : max;
    unsigned char *dst = items;
    for (size_t i = 0; i < n; i++) {
        memcpy(dst + i * q->item_size, q->buf + q->head * q->item_size, q->item_size);
        q->head = (q->head + 1) % q->capacity;
    }
    q->count -= n;
    if (q->count == 0)
        q->head = 0; /* drained: the next items reuse the slots still in cache */
    q->st.popped += n;
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
    return (int)n;
}

int gw_queue_pop(gw_queue *q, void *item, int timeout_ms)
{
    int n = gw_queue_pop_many(q, item, 1, timeout_ms);
    return n > 0 ? 0 : n;
}

void gw_queue_shutdown(gw_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

void gw_queue_stats_get(gw_queue *q, gw_queue_stats *out)
{
    pthread_mutex_lock(&q->lock);
    *out = q->st;
    out->depth = q->count;
    pthread_mutex_unlock(&q->lock);
}
