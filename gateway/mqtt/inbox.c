/* The inbox ring (see inbox.h for the contract).
 *
 * Layout: records of rec_size() bytes, 8-aligned, one after another from tail to head;
 * used counts the bytes from tail to head, including the end of the buffer a producer
 * skipped when a record did not fit there. At the skip point a record header with size
 * 0 says "continue at offset 0"; if fewer than sizeof(rec) bytes are left before cap
 * there is no header and the consumer skips them by the same rule. head may equal cap
 * (the last record ends exactly at the end); tail never does (it becomes 0). head ==
 * tail means empty when used == 0 and full otherwise; an empty ring starts over at 0.
 *
 * Locking: head, tail, used, the waiter flags and the counters are under mu. The
 * consumer reads the records of its batch without the lock: a producer writes only
 * outside [tail, head), and tail moves past a record only when the consumer gives its
 * space back (under mu), after it is done with it. */
#include "mqtt/inbox.h"

#include "alloc.h"
#include "error.h"
#include "timeutil.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

#define CAP_MIN 256
#define CAP_MAX ((size_t)1 << 31) /* record sizes are uint32_t */
#define NAP_MS 1

typedef struct rec {
    void *owner;
    int64_t recv_us;
    uint32_t size; /* whole record, aligned; 0 = continue at offset 0 */
    uint32_t tag;
    uint32_t topic_len, payload_len;
    uint32_t key_off, key_len;
    int32_t has_key;
    char data[];   /* topic NUL payload NUL */
} rec;

struct gw_inbox {
    pthread_mutex_t mu;
    pthread_cond_t data_cv; /* the consumer waits (and naps) here */
    pthread_cond_t room_cv; /* producers wait for room here */
    char *buf;
    size_t cap, head, tail, used;
    int consumer_waits, room_waiters, stop;
    uint64_t n_put, n_full, n_closed, n_waits;
};

size_t gw_inbox_record_size(size_t topic_len, size_t len)
{
    if (topic_len > UINT32_MAX || len > UINT32_MAX || topic_len + len > CAP_MAX)
        return SIZE_MAX;
    return (sizeof(rec) + topic_len + len + 2 + 7) & ~(size_t)7;
}

static rec *rec_at(gw_inbox *b, size_t off)
{
    return (rec *)(void *)(b->buf + off);
}

static int passed(const struct timespec *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return now.tv_sec > ts->tv_sec || (now.tv_sec == ts->tv_sec && now.tv_nsec >= ts->tv_nsec);
}

int gw_inbox_new(size_t cap, gw_inbox **out)
{
    *out = NULL;
    cap &= ~(size_t)7;
    if (cap < CAP_MIN || cap > CAP_MAX)
        return GW_EINVAL;
    gw_inbox *b = gw_calloc(1, sizeof *b);
    if (!b)
        return GW_ENOMEM;
    b->buf = gw_malloc(cap);
    if (!b->buf)
        goto fail_buf;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca))
        goto fail_attr;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (pthread_cond_init(&b->data_cv, &ca))
        goto fail_data;
    if (pthread_cond_init(&b->room_cv, &ca))
        goto fail_room;
    if (pthread_mutex_init(&b->mu, NULL))
        goto fail_mu;
    pthread_condattr_destroy(&ca);
    b->cap = cap;
    *out = b;
    return 0;
fail_mu:
    pthread_cond_destroy(&b->room_cv);
fail_room:
    pthread_cond_destroy(&b->data_cv);
fail_data:
    pthread_condattr_destroy(&ca);
fail_attr:
    gw_free(b->buf);
fail_buf:
    gw_free(b);
    return GW_ENOMEM;
}

void gw_inbox_free(gw_inbox *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->room_cv);
    pthread_cond_destroy(&b->data_cv);
    gw_free(b->buf);
    gw_free(b);
}

/* Room for r bytes (under mu): the offset, or SIZE_MAX when there is none now. */
static size_t reserve(gw_inbox *b, size_t r)
{
    if (b->used == 0)
        b->head = b->tail = 0;
    else if (b->head == b->tail)
        return SIZE_MAX; /* wrapped and full */
    if (b->head >= b->tail) { /* free: [head, cap) and [0, tail) */
        if (b->cap - b->head >= r)
            return b->head;
        if (b->tail < r)
            return SIZE_MAX;
        size_t skip = b->cap - b->head;
        if (skip >= sizeof(rec))
            rec_at(b, b->head)->size = 0;
        b->used += skip;
        b->head = 0;
        return 0;
    }
    return b->tail - b->head >= r ? b->head : SIZE_MAX; /* free: [head, tail) */
}

int gw_inbox_put(gw_inbox *b, const gw_inbox_msg *m, int wait_ms)
{
    size_t r = gw_inbox_record_size(m->topic_len, m->len);
    if (r > b->cap / 2)
        return GW_EINVAL;
    struct timespec deadline;
    int waited = 0;
    size_t at;
    pthread_mutex_lock(&b->mu);
    /* Checked before room: a message taken after the consumer finished would be lost
     * (its producer was told it is delivered). */
    if (b->stop)
        goto closed;
    while ((at = reserve(b, r)) == SIZE_MAX) {
        if (!waited) {
            if (wait_ms <= 0)
                goto full;
            waited = 1;
            b->n_waits++;
            gw_mono_deadline(&deadline, wait_ms);
        } else if (passed(&deadline)) {
            goto full;
        }
        b->room_waiters++;
        pthread_cond_timedwait(&b->room_cv, &b->mu, &deadline);
        b->room_waiters--;
        if (b->stop)
            goto closed;
    }
    rec *e = rec_at(b, at);
    e->owner = m->owner;
    e->recv_us = m->recv_us;
    e->size = (uint32_t)r;
    e->tag = m->tag;
    e->topic_len = (uint32_t)m->topic_len;
    e->payload_len = (uint32_t)m->len;
    e->has_key = m->has_key != 0;
    e->key_off = m->key_off;
    e->key_len = m->key_len;
    if (m->topic_len)
        memcpy(e->data, m->topic, m->topic_len);
    e->data[m->topic_len] = '\0';
    if (m->len)
        memcpy(e->data + m->topic_len + 1, m->payload, m->len);
    e->data[m->topic_len + 1 + m->len] = '\0';
    b->head = at + r;
    b->used += r;
    b->n_put++;
    if (b->consumer_waits)
        pthread_cond_signal(&b->data_cv);
    pthread_mutex_unlock(&b->mu);
    return 0;
full:
    b->n_full++;
    pthread_mutex_unlock(&b->mu);
    return GW_EFULL;
closed:
    b->n_closed++;
    pthread_mutex_unlock(&b->mu);
    return GW_ECLOSED;
}

/* Give back the done bytes of the batch, up to offset at (under mu). */
static void give_back(gw_inbox *b, gw_inbox_batch *it)
{
    b->tail = it->at == b->cap ? 0 : it->at;
    b->used -= it->done;
    if (b->used == 0)
        b->head = b->tail = 0;
    if (b->room_waiters)
        pthread_cond_broadcast(&b->room_cv);
    it->avail -= it->done;
    it->done = 0;
}

int gw_inbox_begin(gw_inbox *b, gw_inbox_batch *it)
{
    pthread_mutex_lock(&b->mu);
    while (b->used == 0 && !b->stop) {
        b->consumer_waits = 1;
        pthread_cond_wait(&b->data_cv, &b->mu);
        b->consumer_waits = 0;
    }
    it->at = b->tail;
    it->avail = b->used;
    it->done = 0;
    it->n = 0;
    pthread_mutex_unlock(&b->mu);
    return it->avail != 0; /* 0: stopped, and everything put is handed out */
}

int gw_inbox_next(gw_inbox *b, gw_inbox_batch *it, gw_inbox_msg *m)
{
    /* a slow consumer: give the space back as it goes, for the producers */
    if (it->n && it->n % GW_INBOX_RELEASE == 0 && it->done && it->done < it->avail) {
        pthread_mutex_lock(&b->mu);
        give_back(b, it);
        pthread_mutex_unlock(&b->mu);
    }
    while (it->done < it->avail) {
        if (b->cap - it->at < sizeof(rec) || rec_at(b, it->at)->size == 0) {
            it->done += b->cap - it->at;
            it->at = 0;
            continue;
        }
        const rec *e = rec_at(b, it->at);
        m->owner = e->owner;
        m->recv_us = e->recv_us;
        m->tag = e->tag;
        m->has_key = e->has_key;
        m->key_off = e->key_off;
        m->key_len = e->key_len;
        m->topic = e->data;
        m->topic_len = e->topic_len;
        m->payload = e->data + e->topic_len + 1;
        m->len = e->payload_len;
        it->at += e->size;
        it->done += e->size;
        it->n++;
        return 1;
    }
    return 0;
}

void gw_inbox_end(gw_inbox *b, gw_inbox_batch *it)
{
    pthread_mutex_lock(&b->mu);
    give_back(b, it);
    /* A small batch means a wake-up per message or two: a short nap lets a burst
     * gather, so a busy producer costs one wake-up per batch. Producers do not cut it
     * short (consumer_waits is 0); stop does. */
    if (it->n < GW_INBOX_RELEASE && !b->stop) {
        struct timespec ts;
        gw_mono_deadline(&ts, NAP_MS);
        pthread_cond_timedwait(&b->data_cv, &b->mu, &ts);
    }
    pthread_mutex_unlock(&b->mu);
}

void gw_inbox_stop(gw_inbox *b)
{
    pthread_mutex_lock(&b->mu);
    b->stop = 1;
    pthread_cond_broadcast(&b->data_cv);
    pthread_cond_broadcast(&b->room_cv);
    pthread_mutex_unlock(&b->mu);
}

int gw_inbox_stopping(gw_inbox *b)
{
    pthread_mutex_lock(&b->mu);
    int s = b->stop;
    pthread_mutex_unlock(&b->mu);
    return s;
}

void gw_inbox_nap(gw_inbox *b, int ms)
{
    struct timespec ts;
    gw_mono_deadline(&ts, ms);
    pthread_mutex_lock(&b->mu);
    while (!b->stop && !passed(&ts))
        pthread_cond_timedwait(&b->data_cv, &b->mu, &ts);
    pthread_mutex_unlock(&b->mu);
}

int gw_inbox_reopen(gw_inbox *b)
{
    pthread_mutex_lock(&b->mu);
    int rc = b->used ? GW_EINVAL : 0;
    if (!rc)
        b->stop = 0;
    pthread_mutex_unlock(&b->mu);
    return rc;
}

void gw_inbox_stats_get(gw_inbox *b, gw_inbox_stats *out)
{
    pthread_mutex_lock(&b->mu);
    out->cap = b->cap;
    out->used = b->used;
    out->put = b->n_put;
    out->full = b->n_full;
    out->closed = b->n_closed;
    out->waits = b->n_waits;
    pthread_mutex_unlock(&b->mu);
}
