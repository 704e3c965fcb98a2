/* gw_inbox: the MQTT ingest's byte ring of whole messages. Golden wrap cases on a
 * small ring (a record ending exactly at cap, a record that fits only at the start with
 * and without a skip header, head == tail full vs empty, the start-over of an empty
 * ring, give-back in the middle of a batch), stop semantics (drain, put after stop,
 * waking waiting producers and consumer), and a two-producer stress run with a
 * consumer that checks every byte and the per-producer order while pausing so
 * producers wait and time out. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"
#include "mqtt/inbox.h"
#include "timeutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOPIC_LEN 8 /* "p0/12345": every message below has an 8-byte topic */

static gw_inbox *make(size_t cap)
{
    gw_inbox *b = NULL;
    assert_int_equal(gw_inbox_new(cap, &b), 0);
    assert_non_null(b);
    return b;
}

/* Payload byte i of message (p, seq): cheap, different per message and position. */
static unsigned char pbyte(int p, uint32_t seq, size_t i)
{
    return (unsigned char)(seq * 131u + (uint32_t)p * 71u + i * 7u + (i >> 8));
}

static int owner_tag[2]; /* message owners: &owner_tag[p] */

static void make_topic(char *topic, int p, uint32_t seq)
{
    unsigned v = (unsigned)(seq % 100000);
    topic[0] = 'p';
    topic[1] = (char)('0' + p);
    topic[2] = '/';
    for (int i = TOPIC_LEN - 1; i >= 3; i--, v /= 10)
        topic[i] = (char)('0' + v % 10);
    topic[TOPIC_LEN] = '\0';
}

/* The largest payload giving a record of exactly rsize bytes (a multiple of 8). */
static size_t len_for(size_t rsize)
{
    size_t len = 0;
    while (gw_inbox_record_size(TOPIC_LEN, len + 1) <= rsize)
        len++;
    assert_int_equal(gw_inbox_record_size(TOPIC_LEN, len), rsize);
    return len;
}

static int put_msg(gw_inbox *b, int p, uint32_t seq, size_t len, int wait_ms)
{
    static unsigned char payload[1 << 16];
    char topic[TOPIC_LEN + 1];
    make_topic(topic, p, seq);
    for (size_t i = 0; i < len; i++)
        payload[i] = pbyte(p, seq, i);
    gw_inbox_msg m = {
        .owner = &owner_tag[p], .recv_us = (int64_t)seq * 10, .tag = seq, .has_key = 1,
        .key_off = 3, .key_len = 5, .topic = topic, .topic_len = TOPIC_LEN,
        .payload = payload, .len = len,
    };
    return gw_inbox_put(b, &m, wait_ms);
}

/* Check a message handed out against what put_msg(p, seq, len) put; returns a reason
 * or NULL (threads cannot use cmocka's asserts). */
static const char *check_msg(const gw_inbox_msg *m, int p, uint32_t seq, size_t len)
{
    char topic[TOPIC_LEN + 1];
    make_topic(topic, p, seq);
    if (m->owner != &owner_tag[p] || m->tag != seq || m->recv_us != (int64_t)seq * 10)
        return "header";
    if (!m->has_key || m->key_off != 3 || m->key_len != 5)
        return "key";
    if (m->topic_len != TOPIC_LEN || memcmp(m->topic, topic, TOPIC_LEN + 1) != 0)
        return "topic";
    if (m->len != len)
        return "payload length";
    const unsigned char *pl = m->payload;
    for (size_t i = 0; i < len; i++)
        if (pl[i] != pbyte(p, seq, i))
            return "payload bytes";
    if (pl[len] != '\0')
        return "payload NUL";
    return NULL;
}

static void expect_next(gw_inbox *b, gw_inbox_batch *it, uint32_t seq, size_t len)
{
    gw_inbox_msg m;
    assert_int_equal(gw_inbox_next(b, it, &m), 1);
    const char *why = check_msg(&m, 0, seq, len);
    if (why)
        fail_msg("message %u: bad %s", (unsigned)seq, why);
}

static size_t used(gw_inbox *b)
{
    gw_inbox_stats st;
    gw_inbox_stats_get(b, &st);
    return st.used;
}

/* The batch has nothing more; end it, after which used(b) is want_used. */
static void expect_batch_end(gw_inbox *b, gw_inbox_batch *it, size_t want_used)
{
    gw_inbox_msg m;
    assert_int_equal(gw_inbox_next(b, it, &m), 0);
    gw_inbox_end(b, it);
    assert_int_equal(used(b), want_used);
}

/* ---- golden cases (ring of 512 bytes, records of 128 / 192 / 256 ...) ------------- */

static void test_sizes_and_limits(void **state)
{
    (void)state;
    gw_inbox *b = NULL;
    assert_int_equal(gw_inbox_new(100, &b), GW_EINVAL);
    assert_null(b);
    assert_int_equal(gw_inbox_record_size(0, 0) % 8, 0);
    assert_true(gw_inbox_record_size(0, 0) > 0);
    assert_int_equal(gw_inbox_record_size(SIZE_MAX, 1), SIZE_MAX);
    assert_int_equal(gw_inbox_record_size(1, SIZE_MAX - 1), SIZE_MAX);
    b = make(512);
    /* exactly cap / 2 fits (twice); one byte more never does */
    size_t half = len_for(256);
    assert_int_equal(put_msg(b, 0, 1, half + 1, 0), GW_EINVAL);
    assert_int_equal(put_msg(b, 0, 1, half, 0), 0);
    assert_int_equal(put_msg(b, 0, 2, half, 0), 0);
    assert_int_equal(used(b), 512);
    assert_int_equal(put_msg(b, 0, 3, 0, 0), GW_EFULL);
    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 1, half);
    expect_next(b, &it, 2, half);
    expect_batch_end(b, &it, 0);
    gw_inbox_free(b);
}

/* Records fill the ring to exactly cap (head == cap, tail == 0: full); after the first
 * is taken the next goes to offset 0 with nothing skipped, head == tail with used ==
 * cap is full, not empty, and the consumer finds the records in order across the wrap. */
static void test_wrap_exactly_at_cap(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    size_t l = len_for(128);
    for (uint32_t i = 1; i <= 4; i++)
        assert_int_equal(put_msg(b, 0, i, l, 0), 0);
    assert_int_equal(used(b), 512);
    assert_int_equal(put_msg(b, 0, 99, 0, 0), GW_EFULL);

    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 1, l);
    gw_inbox_end(b, &it); /* gives back record 1 only */
    assert_int_equal(used(b), 384);

    assert_int_equal(put_msg(b, 0, 5, l, 0), 0); /* at 0, ends where tail is */
    assert_int_equal(used(b), 512);                 /* head == tail: full */
    assert_int_equal(put_msg(b, 0, 99, 0, 0), GW_EFULL);

    assert_int_equal(gw_inbox_begin(b, &it), 1);
    for (uint32_t i = 2; i <= 5; i++)
        expect_next(b, &it, i, l);
    expect_batch_end(b, &it, 0);

    /* empty after the wrap: starts over at 0, so two halves fit again */
    size_t half = len_for(256);
    assert_int_equal(put_msg(b, 0, 6, l, 0), 0);
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 6, l);
    gw_inbox_end(b, &it);
    assert_int_equal(put_msg(b, 0, 7, half, 0), 0);
    assert_int_equal(put_msg(b, 0, 8, half, 0), 0);
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 7, half);
    expect_next(b, &it, 8, half);
    gw_inbox_end(b, &it);
    assert_int_equal(used(b), 0);
    gw_inbox_free(b);
}

/* A record that does not fit in the 128 bytes before the end goes to offset 0; the
 * skipped end gets a skip header, counts as used, and the ring is then exactly full. */
static void test_wrap_with_skip_header(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    size_t l = len_for(192);
    assert_int_equal(put_msg(b, 0, 1, l, 0), 0);
    assert_int_equal(put_msg(b, 0, 2, l, 0), 0);
    /* tail 0: 128 bytes at the end, none at the start */
    assert_int_equal(put_msg(b, 0, 3, l, 0), GW_EFULL);
    assert_int_equal(used(b), 384);

    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 1, l);
    gw_inbox_end(b, &it);
    assert_int_equal(put_msg(b, 0, 3, l, 0), 0);
    assert_int_equal(used(b), 512); /* 192 + 128 skipped + 192 */
    assert_int_equal(put_msg(b, 0, 99, 0, 0), GW_EFULL);

    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 2, l);
    expect_next(b, &it, 3, l);
    expect_batch_end(b, &it, 0);
    gw_inbox_free(b);
}

/* Fewer bytes before the end than a record header: skipped without a header (the
 * consumer must not read them), and a record that fits neither at the end nor at the
 * start is refused without changing anything. */
static void test_wrap_short_tail_and_no_fit(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    size_t l240 = len_for(240), l232 = len_for(232), l200 = len_for(200);
    assert_int_equal(put_msg(b, 0, 1, l240, 0), 0);
    assert_int_equal(put_msg(b, 0, 2, l232, 0), 0); /* head 472: 40 bytes left */
    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 1, l240);
    gw_inbox_end(b, &it); /* tail 240 */
    /* 248 bytes: not in the 40 at the end, not in the 240 at the start */
    assert_int_equal(put_msg(b, 0, 99, len_for(248), 0), GW_EFULL);
    assert_int_equal(used(b), 232);
    assert_int_equal(put_msg(b, 0, 3, l200, 0), 0); /* 40 skipped, at 0 */
    assert_int_equal(used(b), 232 + 40 + 200);
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 2, l232);
    expect_next(b, &it, 3, l200);
    expect_batch_end(b, &it, 0);
    gw_inbox_free(b);
}

/* A long batch gives its space back every GW_INBOX_RELEASE records while the consumer
 * still reads it; a producer fills that space meanwhile without touching the records
 * the consumer has yet to read. Also: a record ending exactly at cap. */
static void test_give_back_during_batch(void **state)
{
    (void)state;
    gw_inbox *b = make(4096);
    size_t small = len_for(64), big = len_for(1536), half = len_for(2048);
    uint32_t n = 40;
    for (uint32_t i = 1; i <= n; i++)
        assert_int_equal(put_msg(b, 0, i, small, 0), 0);
    assert_int_equal(put_msg(b, 0, n + 1, big, 0), 0); /* 2560 + 1536: ends at cap */
    assert_int_equal(used(b), 4096);
    assert_int_equal(put_msg(b, 0, 99, 0, 0), GW_EFULL);

    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    for (uint32_t i = 1; i <= GW_INBOX_RELEASE; i++)
        expect_next(b, &it, i, small);
    assert_int_equal(used(b), 4096);          /* nothing given back yet */
    expect_next(b, &it, GW_INBOX_RELEASE + 1, small);
    assert_int_equal(used(b), 4096 - 32 * 64); /* the first 32 are */
    assert_int_equal(put_msg(b, 0, n + 2, half, 0), 0); /* exactly the freed 2048 */
    assert_int_equal(used(b), 4096);
    for (uint32_t i = GW_INBOX_RELEASE + 2; i <= n; i++)
        expect_next(b, &it, i, small);
    expect_next(b, &it, n + 1, big);
    expect_batch_end(b, &it, 2048); /* the new one is not in this batch */
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, n + 2, half);
    expect_batch_end(b, &it, 0);
    gw_inbox_free(b);
}

/* Wrapping many times with mixed sizes, one record at a time, keeps order and bytes. */
static void test_wrap_many_rounds(void **state)
{
    (void)state;
    gw_inbox *b = make(1024);
    uint32_t in = 0, out = 0;
    size_t lens[64];
    unsigned seed = 7;
    for (int round = 0; round < 400; round++) {
        int k = 1 + rand_r(&seed) % 3;
        for (int j = 0; j < k; j++) {
            size_t len = (size_t)rand_r(&seed) % (len_for(512) + 1);
            int rc = put_msg(b, 0, in, len, 0);
            if (rc == GW_EFULL)
                break;
            assert_int_equal(rc, 0);
            lens[in % 64] = len;
            in++;
        }
        gw_inbox_batch it;
        assert_int_equal(gw_inbox_begin(b, &it), 1);
        gw_inbox_msg m;
        int take = 1 + rand_r(&seed) % 2;
        for (int j = 0; j < take && gw_inbox_next(b, &it, &m); j++) {
            const char *why = check_msg(&m, 0, out, lens[out % 64]);
            if (why)
                fail_msg("message %u: bad %s", (unsigned)out, why);
            out++;
        }
        gw_inbox_end(b, &it);
    }
    assert_true(in - out < 64);
    gw_inbox_free(b);
}

/* ---- stop --------------------------------------------------------------------------- */

/* What was put before stop is handed out; a put after stop fails (before the fix it
 * succeeded into a ring nobody would read again: a message silently lost). */
static void test_stop_drains_then_refuses(void **state)
{
    (void)state;
    gw_inbox *b = make(1024);
    for (uint32_t i = 1; i <= 3; i++)
        assert_int_equal(put_msg(b, 0, i, 10 * i, 0), 0);
    gw_inbox_stop(b);
    assert_true(gw_inbox_stopping(b));
    assert_int_equal(put_msg(b, 0, 4, 1, 1000), GW_ECLOSED);
    assert_int_equal(gw_inbox_reopen(b), GW_EINVAL); /* records left */
    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    for (uint32_t i = 1; i <= 3; i++)
        expect_next(b, &it, i, 10 * i);
    gw_inbox_msg m;
    assert_int_equal(gw_inbox_next(b, &it, &m), 0);
    int64_t t0 = gw_mono_ms();
    gw_inbox_end(b, &it);
    assert_int_equal(gw_inbox_begin(b, &it), 0); /* does not block */
    /* the consumer is done: a put now must not be taken */
    assert_int_equal(put_msg(b, 0, 5, 1, 0), GW_ECLOSED);
    assert_int_equal(used(b), 0);
    assert_true(gw_mono_ms() - t0 < 500);
    gw_inbox_stats st;
    gw_inbox_stats_get(b, &st);
    assert_int_equal(st.put, 3);
    assert_int_equal(st.closed, 2);
    /* a restart */
    assert_int_equal(gw_inbox_reopen(b), 0);
    assert_int_equal(put_msg(b, 0, 6, 5, 0), 0);
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 6, 5);
    gw_inbox_end(b, &it);
    gw_inbox_free(b);
}

typedef struct waiter {
    gw_inbox *b;
    int rc;
    int64_t took_ms;
} waiter;

static void *wait_put(void *arg)
{
    waiter *w = arg;
    int64_t t0 = gw_mono_ms();
    w->rc = put_msg(w->b, 1, 1, 100, 10000);
    w->took_ms = gw_mono_ms() - t0;
    return NULL;
}

static void *wait_begin(void *arg)
{
    waiter *w = arg;
    gw_inbox_batch it;
    int64_t t0 = gw_mono_ms();
    w->rc = gw_inbox_begin(w->b, &it);
    w->took_ms = gw_mono_ms() - t0;
    return NULL;
}

static void *wait_nap(void *arg)
{
    waiter *w = arg;
    int64_t t0 = gw_mono_ms();
    gw_inbox_nap(w->b, 10000);
    w->took_ms = gw_mono_ms() - t0;
    return NULL;
}

/* A producer waiting for room returns GW_ECLOSED at stop (it keeps its message), and
 * does not take room the consumer frees after stop; the records already in are still
 * handed out. */
static void test_stop_wakes_waiting_producer(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    size_t half = len_for(256);
    assert_int_equal(put_msg(b, 0, 1, half, 0), 0);
    assert_int_equal(put_msg(b, 0, 2, half, 0), 0);
    waiter w = {b, 1, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_put, &w), 0);
    gw_inbox_stats st;
    for (int i = 0; i < 1000; i++) { /* until it waits */
        gw_inbox_stats_get(b, &st);
        if (st.waits)
            break;
        gw_sleep_ms(1);
    }
    assert_int_equal(st.waits, 1);
    gw_sleep_ms(20);
    gw_inbox_stop(b);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, GW_ECLOSED);
    assert_true(w.took_ms < 2000);
    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 1, half);
    expect_next(b, &it, 2, half);
    gw_inbox_end(b, &it);
    assert_int_equal(gw_inbox_begin(b, &it), 0);
    assert_int_equal(used(b), 0);
    gw_inbox_free(b);
}

/* A consumer waiting on an empty inbox, and one napping, wake at stop. */
static void test_stop_wakes_consumer(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    waiter wb = {b, 1, 0}, wn = {b, 1, 0};
    pthread_t tb, tn;
    assert_int_equal(pthread_create(&tb, NULL, wait_begin, &wb), 0);
    assert_int_equal(pthread_create(&tn, NULL, wait_nap, &wn), 0);
    gw_sleep_ms(50);
    gw_inbox_stop(b);
    pthread_join(tb, NULL);
    pthread_join(tn, NULL);
    assert_int_equal(wb.rc, 0);
    assert_true(wb.took_ms < 2000);
    assert_true(wn.took_ms < 2000);
    gw_inbox_free(b);
}

typedef struct begin_waiter {
    gw_inbox *b;
    atomic_int done;
    int rc;
    gw_inbox_msg m;
} begin_waiter;

static void *begin_and_take(void *arg)
{
    begin_waiter *w = arg;
    gw_inbox_batch it;
    w->rc = gw_inbox_begin(w->b, &it);
    if (w->rc == 1 && gw_inbox_next(w->b, &it, &w->m) == 1) {
        const char *why = check_msg(&w->m, 0, 7, 33);
        w->rc = why ? -1 : 2;
        gw_inbox_end(w->b, &it);
    }
    atomic_store(&w->done, 1);
    return NULL;
}

/* A put wakes a consumer asleep on an empty inbox (producers signal only while it
 * sleeps there: a lost wake-up leaves the message until the next one). */
static void test_put_wakes_waiting_consumer(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    begin_waiter w = {.b = b};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, begin_and_take, &w), 0);
    gw_sleep_ms(30); /* let it sleep */
    assert_int_equal(put_msg(b, 0, 7, 33, 0), 0);
    int64_t t0 = gw_mono_ms();
    while (!atomic_load(&w.done) && gw_mono_ms() - t0 < 2000)
        gw_sleep_ms(1);
    int woke = atomic_load(&w.done);
    gw_inbox_stop(b); /* frees the thread either way */
    pthread_join(t, NULL);
    assert_true(woke);
    assert_int_equal(w.rc, 2);
    gw_inbox_free(b);
}

/* A producer waiting for room gets it as soon as the consumer gives space back, not
 * at the end of its wait. */
static void test_room_wakes_waiting_producer(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    size_t half = len_for(256);
    assert_int_equal(put_msg(b, 0, 1, half, 0), 0);
    assert_int_equal(put_msg(b, 0, 2, half, 0), 0);
    waiter w = {b, 1, 0};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, wait_put, &w), 0); /* waits up to 10 s */
    gw_inbox_stats st;
    for (int i = 0; i < 1000; i++) {
        gw_inbox_stats_get(b, &st);
        if (st.waits)
            break;
        gw_sleep_ms(1);
    }
    assert_int_equal(st.waits, 1);
    gw_inbox_batch it;
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 1, half);
    gw_inbox_end(b, &it);
    pthread_join(t, NULL);
    assert_int_equal(w.rc, 0);
    assert_true(w.took_ms < 3000);
    assert_int_equal(gw_inbox_begin(b, &it), 1);
    expect_next(b, &it, 2, half);
    gw_inbox_msg m;
    assert_int_equal(gw_inbox_next(b, &it, &m), 1);
    if (check_msg(&m, 1, 1, 100))
        fail_msg("the waiting producer's message is wrong: %s", check_msg(&m, 1, 1, 100));
    gw_inbox_end(b, &it);
    gw_inbox_free(b);
}

/* A full inbox makes a producer wait its wait_ms, then GW_EFULL. */
static void test_full_put_times_out(void **state)
{
    (void)state;
    gw_inbox *b = make(512);
    size_t half = len_for(256);
    assert_int_equal(put_msg(b, 0, 1, half, 0), 0);
    assert_int_equal(put_msg(b, 0, 2, half, 0), 0);
    int64_t t0 = gw_mono_ms();
    assert_int_equal(put_msg(b, 0, 3, 0, 100), GW_EFULL);
    int64_t took = gw_mono_ms() - t0;
    assert_true(took >= 95 && took < 1000);
    gw_inbox_stats st;
    gw_inbox_stats_get(b, &st);
    assert_int_equal(st.full, 1);
    assert_int_equal(st.waits, 1);
    gw_inbox_free(b);
}

/* ---- stress ----------------------------------------------------------------------------- */

#define STRESS_CAP 16384
#define STRESS_N 6000 /* per producer */

typedef struct stress {
    gw_inbox *b;
    unsigned char refused[2][STRESS_N];   /* producer p was told GW_EFULL for seq */
    unsigned char delivered[2][STRESS_N]; /* the consumer saw (p, seq) */
    size_t lens[2][STRESS_N];
    uint32_t next[2];                     /* consumer: lowest seq still allowed */
    atomic_int errors;
    char first_error[160];
    uint64_t n_full[2], records, batches, pauses;
} stress;

typedef struct producer {
    stress *st;
    int p;
    int wait_ms;
} producer;

static void *produce(void *arg)
{
    producer *pr = arg;
    stress *st = pr->st;
    unsigned seed = 1234u + (unsigned)pr->p;
    size_t maxlen = len_for(STRESS_CAP / 2);
    static unsigned char payloads[2][STRESS_CAP / 2];
    unsigned char *payload = payloads[pr->p];
    for (uint32_t seq = 0; seq < STRESS_N; seq++) {
        int pick = rand_r(&seed) % 100;
        size_t len;
        if (pick < 50)
            len = (size_t)rand_r(&seed) % 65;
        else if (pick < 80)
            len = (size_t)rand_r(&seed) % 1025;
        else if (pick < 95)
            len = (size_t)rand_r(&seed) % (maxlen + 1);
        else
            len = maxlen - (size_t)rand_r(&seed) % 17; /* near cap / 2 */
        st->lens[pr->p][seq] = len;
        char topic[TOPIC_LEN + 1];
        make_topic(topic, pr->p, seq);
        for (size_t i = 0; i < len; i++)
            payload[i] = pbyte(pr->p, seq, i);
        gw_inbox_msg m = {
            .owner = &owner_tag[pr->p], .recv_us = (int64_t)seq * 10, .tag = seq,
            .has_key = 1, .key_off = 3, .key_len = 5, .topic = topic,
            .topic_len = TOPIC_LEN, .payload = payload, .len = len,
        };
        int rc = gw_inbox_put(st->b, &m, pr->wait_ms);
        if (rc == GW_EFULL) {
            st->refused[pr->p][seq] = 1;
            st->n_full[pr->p]++;
        } else if (rc != 0) {
            if (atomic_fetch_add(&st->errors, 1) == 0)
                snprintf(st->first_error, sizeof st->first_error, "put %d/%u: rc %d", pr->p,
                         (unsigned)seq, rc);
        }
    }
    return NULL;
}

static void stress_error(stress *st, int p, uint32_t seq, const char *why)
{
    if (atomic_fetch_add(&st->errors, 1) == 0)
        snprintf(st->first_error, sizeof st->first_error, "record %d/%u: %s", p,
                 (unsigned)seq, why);
}

static void *consume(void *arg)
{
    stress *st = arg;
    gw_inbox_batch it;
    gw_inbox_msg m;
    unsigned seed = 99;
    while (gw_inbox_begin(st->b, &it)) {
        st->batches++;
        while (gw_inbox_next(st->b, &it, &m)) {
            st->records++;
            int p = m.owner == &owner_tag[0] ? 0 : m.owner == &owner_tag[1] ? 1 : -1;
            uint32_t seq = m.tag;
            if (p < 0 || seq >= STRESS_N) {
                stress_error(st, p, seq, "bad owner or tag");
                continue;
            }
            if (st->delivered[p][seq])
                stress_error(st, p, seq, "duplicate");
            if (seq < st->next[p])
                stress_error(st, p, seq, "out of order");
            st->delivered[p][seq] = 1;
            st->next[p] = seq + 1;
            /* lens[p][seq] was written before the put: the inbox's lock orders it */
            const char *why = check_msg(&m, p, seq, st->lens[p][seq]);
            if (why)
                stress_error(st, p, seq, why);
            /* a slow consumer now and then: producers wait, and time out */
            if (rand_r(&seed) % 400 == 0) {
                st->pauses++;
                gw_sleep_ms(3 + rand_r(&seed) % 12);
            }
        }
        gw_inbox_end(st->b, &it);
    }
    return NULL;
}

static void test_stress_two_producers(void **state)
{
    (void)state;
    stress *st = calloc(1, sizeof *st);
    assert_non_null(st);
    st->b = make(STRESS_CAP);
    producer pr[2] = {{st, 0, 2}, {st, 1, 1000}}; /* one gives up soon, one waits long */
    pthread_t tc, tp[2];
    int64_t t0 = gw_mono_ms();
    assert_int_equal(pthread_create(&tc, NULL, consume, st), 0);
    for (int p = 0; p < 2; p++)
        assert_int_equal(pthread_create(&tp[p], NULL, produce, &pr[p]), 0);
    for (int p = 0; p < 2; p++)
        pthread_join(tp[p], NULL);
    gw_inbox_stop(st->b);
    pthread_join(tc, NULL);
    int64_t took = gw_mono_ms() - t0;

    if (atomic_load(&st->errors))
        fail_msg("%d errors, first: %s", atomic_load(&st->errors), st->first_error);
    uint64_t delivered = 0;
    for (int p = 0; p < 2; p++)
        for (uint32_t seq = 0; seq < STRESS_N; seq++) {
            if (st->delivered[p][seq] == st->refused[p][seq])
                fail_msg("message %d/%u: delivered %d, refused %d", p, (unsigned)seq,
                         st->delivered[p][seq], st->refused[p][seq]);
            delivered += st->delivered[p][seq];
        }
    gw_inbox_stats bs;
    gw_inbox_stats_get(st->b, &bs);
    assert_int_equal(bs.used, 0);
    assert_int_equal(bs.put, delivered);
    assert_int_equal(bs.full, st->n_full[0] + st->n_full[1]);
    assert_int_equal(st->records, delivered);
    /* the paths under test were taken */
    assert_true(bs.waits > 0);
    assert_true(st->n_full[0] > 0);
    assert_int_equal(st->n_full[1], 0); /* waits 1 s: a pause is 15 ms at most */
    assert_true(st->pauses > 0);
    print_message("stress: %" PRIu64 " delivered, %" PRIu64 "+%" PRIu64 " refused, %" PRIu64
                  " waits, %" PRIu64 " batches, %" PRIu64 " pauses, %lld ms\n",
                  delivered, st->n_full[0], st->n_full[1], bs.waits, st->batches, st->pauses,
                  (long long)took);
    gw_inbox_free(st->b);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_and_limits),
        cmocka_unit_test(test_wrap_exactly_at_cap),
        cmocka_unit_test(test_wrap_with_skip_header),
        cmocka_unit_test(test_wrap_short_tail_and_no_fit),
        cmocka_unit_test(test_give_back_during_batch),
        cmocka_unit_test(test_wrap_many_rounds),
        cmocka_unit_test(test_stop_drains_then_refuses),
        cmocka_unit_test(test_stop_wakes_waiting_producer),
        cmocka_unit_test(test_stop_wakes_consumer),
        cmocka_unit_test(test_put_wakes_waiting_consumer),
        cmocka_unit_test(test_room_wakes_waiting_producer),
        cmocka_unit_test(test_full_put_times_out),
        cmocka_unit_test(test_stress_two_producers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
