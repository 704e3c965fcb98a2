/* gw_queue: overflow policies count every drop, blocking pushes wait and time out,
 * shutdown wakes every waiter and pops drain, and many producers / consumers lose and
 * duplicate nothing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "error.h"
#include "queue.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static gw_queue *make(size_t cap, gw_queue_policy policy)
{
    gw_queue *q = NULL;
    assert_int_equal(gw_queue_new(cap, sizeof(int), policy, &q), 0);
    assert_non_null(q);
    return q;
}

static void test_new_rejects_bad_sizes(void **state)
{
    (void)state;
    gw_queue *q = NULL;
    assert_int_equal(gw_queue_new(0, 4, GW_QUEUE_BLOCK, &q), GW_EINVAL);
    assert_int_equal(gw_queue_new(4, 0, GW_QUEUE_BLOCK, &q), GW_EINVAL);
    assert_int_equal(gw_queue_new(SIZE_MAX / 2, 4, GW_QUEUE_BLOCK, &q), GW_EINVAL);
    assert_null(q);
}

static void test_fifo_order_and_stats(void **state)
{
    (void)state;
    gw_queue *q = make(8, GW_QUEUE_BLOCK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(gw_queue_push(q, &i, 0), 0);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.depth, 5);
    assert_int_equal(st.capacity, 8);
    assert_int_equal(st.high_water, 5);
    assert_int_equal(st.pushed, 5);
    for (int i = 0; i < 5; i++) {
        int v = -1;
        assert_int_equal(gw_queue_pop(q, &v, 0), 0);
        assert_int_equal(v, i);
    }
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.depth, 0);
    assert_int_equal(st.popped, 5);
    assert_int_equal(st.high_water, 5);
    assert_int_equal(st.dropped, 0);
    gw_queue_free(q);
}

static void test_wraparound(void **state)
{
    (void)state;
    gw_queue *q = make(3, GW_QUEUE_DROP_NEWEST);
    int next_in = 0, next_out = 0;
    for (int round = 0; round < 100; round++) {
        int n = 1 + round % 3;
        for (int i = 0; i < n; i++)
            assert_int_equal(gw_queue_push(q, &(int){next_in++}, 0), 0);
        for (int i = 0; i < n; i++) {
            int v;
            assert_int_equal(gw_queue_pop(q, &v, 0), 0);
            assert_int_equal(v, next_out++);
        }
    }
    gw_queue_free(q);
}

static void test_drop_newest_counts_exactly(void **state)
{
    (void)state;
    gw_queue *q = make(4, GW_QUEUE_DROP_NEWEST);
    int ok = 0, full = 0;
    for (int i = 0; i < 10; i++) {
        int rc = gw_queue_push(q, &i, 1000); /* timeout is irrelevant: never waits */
        if (rc == 0)
            ok++;
        else if (rc == GW_EFULL)
            full++;
        else
            fail_msg("unexpected rc %d", rc);
    }
    assert_int_equal(ok, 4);
    assert_int_equal(full, 6);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.pushed, 4);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.blocked, 0);
    /* The newest were dropped: the oldest four remain. */
    for (int i = 0; i < 4; i++) {
        int v;
        assert_int_equal(gw_queue_pop(q, &v, 0), 0);
        assert_int_equal(v, i);
    }
    assert_int_equal(gw_queue_pop(q, &(int){0}, 0), GW_ETIMEDOUT);
    gw_queue_free(q);
}

static void test_drop_oldest_counts_exactly(void **state)
{
    (void)state;
    gw_queue *q = make(4, GW_QUEUE_DROP_OLDEST);
    for (int i = 0; i < 10; i++)
        assert_int_equal(gw_queue_push(q, &i, 0), 0);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.pushed, 10);
    assert_int_equal(st.dropped, 6);
    assert_int_equal(st.depth, 4);
    assert_int_equal(st.high_water, 4);
    for (int i = 6; i < 10; i++) {
        int v;
        assert_int_equal(gw_queue_pop(q, &v, 0), 0);
        assert_int_equal(v, i);
    }
    gw_queue_free(q);
}

static void test_block_push_times_out_counted(void **state)
{
    (void)state;
    gw_queue *q = make(2, GW_QUEUE_BLOCK);
    assert_int_equal(gw_queue_push(q, &(int){1}, 0), 0);
    assert_int_equal(gw_queue_push(q, &(int){2}, 0), 0);
    int64_t t0 = gw_mono_ms();
    assert_int_equal(gw_queue_push(q, &(int){3}, 150), GW_ETIMEDOUT);
    int64_t took = gw_mono_ms() - t0;
    assert_true(took >= 140);
    assert_true(took < 2000);
    /* timeout 0 on a full blocking queue: no wait at all. */
    t0 = gw_mono_ms();
    assert_int_equal(gw_queue_push(q, &(int){4}, 0), GW_ETIMEDOUT);
    assert_true(gw_mono_ms() - t0 < 100);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.pushed, 2);
    assert_int_equal(st.dropped, 2);
    assert_int_equal(st.blocked, 2);
    assert_int_equal(st.depth, 2);
    gw_queue_free(q);
}

typedef struct {
    gw_queue *q;
    int delay_ms;
    int rc;
    int value;
    int timeout_ms;
} helper_arg;

static void *pop_later(void *p)
{
    helper_arg *a = p;
    gw_sleep_ms(a->delay_ms);
    a->rc = gw_queue_pop(a->q, &a->value, a->timeout_ms);
    return NULL;
}

static void test_block_push_waits_for_room(void **state)
{
    (void)state;
    gw_queue *q = make(1, GW_QUEUE_BLOCK);
    assert_int_equal(gw_queue_push(q, &(int){7}, 0), 0);
    helper_arg a = {.q = q, .delay_ms = 150, .rc = 99, .timeout_ms = 0};
    pthread_t th;
    /* t0 before the thread exists: the pop cannot come sooner than 150 ms after it. */
    int64_t t0 = gw_mono_ms();
    assert_int_equal(pthread_create(&th, NULL, pop_later, &a), 0);
    assert_int_equal(gw_queue_push(q, &(int){8}, 5000), 0);
    int64_t took = gw_mono_ms() - t0;
    pthread_join(th, NULL);
    assert_int_equal(a.rc, 0);
    assert_int_equal(a.value, 7);
    assert_true(took >= 149);
    assert_true(took < 4000);
    int v;
    assert_int_equal(gw_queue_pop(q, &v, 0), 0);
    assert_int_equal(v, 8);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.blocked, 1);
    assert_int_equal(st.dropped, 0);
    gw_queue_free(q);
}

static void test_pop_timeout(void **state)
{
    (void)state;
    gw_queue *q = make(4, GW_QUEUE_BLOCK);
    int v;
    int64_t t0 = gw_mono_ms();
    assert_int_equal(gw_queue_pop(q, &v, 0), GW_ETIMEDOUT);
    assert_true(gw_mono_ms() - t0 < 100);
    t0 = gw_mono_ms();
    assert_int_equal(gw_queue_pop(q, &v, 120), GW_ETIMEDOUT);
    int64_t took = gw_mono_ms() - t0;
    assert_true(took >= 110);
    assert_true(took < 2000);
    gw_queue_free(q);
}

static void *push_later(void *p)
{
    helper_arg *a = p;
    gw_sleep_ms(a->delay_ms);
    a->rc = gw_queue_push(a->q, &a->value, a->timeout_ms);
    return NULL;
}

static void test_pop_waits_for_item(void **state)
{
    (void)state;
    gw_queue *q = make(4, GW_QUEUE_BLOCK);
    helper_arg a = {.q = q, .delay_ms = 100, .value = 42, .timeout_ms = 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, push_later, &a), 0);
    int v = 0;
    assert_int_equal(gw_queue_pop(q, &v, -1), 0);
    assert_int_equal(v, 42);
    pthread_join(th, NULL);
    assert_int_equal(a.rc, 0);
    gw_queue_free(q);
}

static void test_pop_many(void **state)
{
    (void)state;
    gw_queue *q = make(8, GW_QUEUE_BLOCK);
    for (int i = 0; i < 5; i++)
        assert_int_equal(gw_queue_push(q, &i, 0), 0);
    int out[8] = {0};
    assert_int_equal(gw_queue_pop_many(q, out, 3, 0), 3);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[2], 2);
    assert_int_equal(gw_queue_pop_many(q, out, 8, 0), 2);
    assert_int_equal(out[0], 3);
    assert_int_equal(out[1], 4);
    assert_int_equal(gw_queue_pop_many(q, out, 8, 0), GW_ETIMEDOUT);
    assert_int_equal(gw_queue_pop_many(q, out, 0, 0), GW_EINVAL);
    gw_queue_free(q);
}

static void test_shutdown_drains_then_closes(void **state)
{
    (void)state;
    gw_queue *q = make(4, GW_QUEUE_BLOCK);
    for (int i = 0; i < 3; i++)
        assert_int_equal(gw_queue_push(q, &i, 0), 0);
    gw_queue_shutdown(q);
    assert_int_equal(gw_queue_push(q, &(int){9}, 0), GW_ECLOSED);
    assert_int_equal(gw_queue_push(q, &(int){9}, 100), GW_ECLOSED);
    for (int i = 0; i < 3; i++) {
        int v;
        assert_int_equal(gw_queue_pop(q, &v, -1), 0);
        assert_int_equal(v, i);
    }
    int64_t t0 = gw_mono_ms();
    assert_int_equal(gw_queue_pop(q, &(int){0}, -1), GW_ECLOSED);
    assert_int_equal(gw_queue_pop(q, &(int){0}, 1000), GW_ECLOSED);
    assert_true(gw_mono_ms() - t0 < 500);
    gw_queue_free(q);
}

static void test_shutdown_closes_full_drop_queues(void **state)
{
    (void)state;
    gw_queue_policy policies[] = {GW_QUEUE_DROP_NEWEST, GW_QUEUE_DROP_OLDEST};
    for (size_t p = 0; p < 2; p++) {
        gw_queue *q = make(2, policies[p]);
        assert_int_equal(gw_queue_push(q, &(int){1}, 0), 0);
        assert_int_equal(gw_queue_push(q, &(int){2}, 0), 0);
        gw_queue_shutdown(q);
        assert_int_equal(gw_queue_push(q, &(int){3}, 0), GW_ECLOSED);
        int v;
        /* A closed queue evicts nothing: both items are still there, in order. */
        assert_int_equal(gw_queue_pop(q, &v, 0), 0);
        assert_int_equal(v, 1);
        assert_int_equal(gw_queue_pop(q, &v, 0), 0);
        assert_int_equal(v, 2);
        gw_queue_free(q);
    }
}

static void test_shutdown_wakes_blocked_pusher_and_popper(void **state)
{
    (void)state;
    /* A pusher blocked forever on a full queue. */
    gw_queue *full = make(1, GW_QUEUE_BLOCK);
    assert_int_equal(gw_queue_push(full, &(int){1}, 0), 0);
    helper_arg pa[3];
    pthread_t pt[3];
    for (int i = 0; i < 3; i++) {
        pa[i] = (helper_arg){.q = full, .value = 100 + i, .rc = 99, .timeout_ms = -1};
        assert_int_equal(pthread_create(&pt[i], NULL, push_later, &pa[i]), 0);
    }
    /* Poppers blocked forever on an empty queue. */
    gw_queue *empty = make(4, GW_QUEUE_BLOCK);
    helper_arg ca[3];
    pthread_t ct[3];
    for (int i = 0; i < 3; i++) {
        ca[i] = (helper_arg){.q = empty, .rc = 99, .timeout_ms = -1};
        assert_int_equal(pthread_create(&ct[i], NULL, pop_later, &ca[i]), 0);
    }
    gw_sleep_ms(150); /* let them block */
    int64_t t0 = gw_mono_ms();
    gw_queue_shutdown(full);
    gw_queue_shutdown(empty);
    for (int i = 0; i < 3; i++) {
        pthread_join(pt[i], NULL);
        pthread_join(ct[i], NULL);
        assert_int_equal(pa[i].rc, GW_ECLOSED);
        assert_int_equal(ca[i].rc, GW_ECLOSED);
    }
    assert_true(gw_mono_ms() - t0 < 1000);
    /* The item pushed before shutdown is still delivered. */
    int v;
    assert_int_equal(gw_queue_pop(full, &v, 0), 0);
    assert_int_equal(v, 1);
    assert_int_equal(gw_queue_pop(full, &v, 0), GW_ECLOSED);
    gw_queue_free(full);
    gw_queue_free(empty);
}

/* ---- stress: P producers, C consumers, a small blocking queue -------------------- */

#define P 4
#define C 3
#define PER_PRODUCER 50000

typedef struct {
    uint32_t producer, seq;
} item;

typedef struct {
    gw_queue *q;
    uint32_t id;
    int rc;
} producer_arg;

typedef struct {
    gw_queue *q;
    atomic_uchar *seen;
    uint64_t count, sum;
    int order_ok;
    int batch;
} consumer_arg;

static void *producer(void *p)
{
    producer_arg *a = p;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        item it = {a->id, i};
        int rc = gw_queue_push(a->q, &it, -1);
        if (rc) {
            a->rc = rc;
            return NULL;
        }
    }
    return NULL;
}

static void *consumer(void *p)
{
    consumer_arg *a = p;
    int64_t last[P];
    for (int i = 0; i < P; i++)
        last[i] = -1;
    a->order_ok = 1;
    item buf[16];
    for (;;) {
        int n = gw_queue_pop_many(a->q, buf, (size_t)a->batch, -1);
        if (n == GW_ECLOSED)
            break;
        if (n <= 0) {
            a->order_ok = 0;
            break;
        }
        for (int i = 0; i < n; i++) {
            item it = buf[i];
            if (it.producer >= P || it.seq >= PER_PRODUCER) {
                a->order_ok = 0;
                continue;
            }
            /* One producer's items reach any one consumer in the order pushed. */
            if ((int64_t)it.seq <= last[it.producer])
                a->order_ok = 0;
            last[it.producer] = it.seq;
            atomic_fetch_add(&a->seen[it.producer * PER_PRODUCER + it.seq], 1);
            a->count++;
            a->sum += (uint64_t)it.producer * PER_PRODUCER + it.seq;
        }
    }
    return NULL;
}

static void test_stress_no_loss_no_duplicates(void **state)
{
    (void)state;
    gw_queue *q = NULL;
    assert_int_equal(gw_queue_new(64, sizeof(item), GW_QUEUE_BLOCK, &q), 0);
    atomic_uchar *seen = calloc((size_t)P * PER_PRODUCER, sizeof *seen);
    assert_non_null(seen);
    producer_arg pa[P];
    consumer_arg ca[C];
    pthread_t pt[P], ct[C];
    for (int i = 0; i < C; i++) {
        ca[i] = (consumer_arg){.q = q, .seen = seen, .batch = i == 0 ? 1 : 16};
        assert_int_equal(pthread_create(&ct[i], NULL, consumer, &ca[i]), 0);
    }
    for (int i = 0; i < P; i++) {
        pa[i] = (producer_arg){.q = q, .id = (uint32_t)i};
        assert_int_equal(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
    }
    for (int i = 0; i < P; i++) {
        pthread_join(pt[i], NULL);
        assert_int_equal(pa[i].rc, 0);
    }
    /* Shut down with items possibly still queued: consumers must drain them. */
    gw_queue_shutdown(q);
    uint64_t count = 0, sum = 0;
    for (int i = 0; i < C; i++) {
        pthread_join(ct[i], NULL);
        assert_true(ca[i].order_ok);
        count += ca[i].count;
        sum += ca[i].sum;
    }
    const uint64_t n = (uint64_t)P * PER_PRODUCER;
    assert_int_equal(count, n);
    assert_int_equal(sum, n * (n - 1) / 2);
    for (uint64_t i = 0; i < n; i++)
        if (seen[i] != 1)
            fail_msg("item %llu seen %u times", (unsigned long long)i, (unsigned)seen[i]);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    assert_int_equal(st.pushed, n);
    assert_int_equal(st.popped, n);
    assert_int_equal(st.dropped, 0);
    assert_int_equal(st.depth, 0);
    assert_true(st.high_water <= 64);
    free(seen);
    gw_queue_free(q);
}

/* Drop-oldest under concurrency: every push succeeds, and pushed = popped + dropped. */
static void test_stress_drop_oldest_accounting(void **state)
{
    (void)state;
    gw_queue *q = NULL;
    assert_int_equal(gw_queue_new(8, sizeof(item), GW_QUEUE_DROP_OLDEST, &q), 0);
    atomic_uchar *seen = calloc((size_t)P * PER_PRODUCER, sizeof *seen);
    assert_non_null(seen);
    producer_arg pa[P];
    consumer_arg ca = {.q = q, .seen = seen, .batch = 4};
    pthread_t pt[P], ct;
    assert_int_equal(pthread_create(&ct, NULL, consumer, &ca), 0);
    for (int i = 0; i < P; i++) {
        pa[i] = (producer_arg){.q = q, .id = (uint32_t)i};
        assert_int_equal(pthread_create(&pt[i], NULL, producer, &pa[i]), 0);
    }
    for (int i = 0; i < P; i++) {
        pthread_join(pt[i], NULL);
        assert_int_equal(pa[i].rc, 0);
    }
    gw_queue_shutdown(q);
    pthread_join(ct, NULL);
    assert_true(ca.order_ok);
    gw_queue_stats st;
    gw_queue_stats_get(q, &st);
    const uint64_t n = (uint64_t)P * PER_PRODUCER;
    assert_int_equal(st.pushed, n);
    assert_int_equal(st.popped, ca.count);
    assert_int_equal(st.popped + st.dropped, n);
    for (uint64_t i = 0; i < n; i++)
        assert_true(seen[i] <= 1);
    free(seen);
    gw_queue_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_rejects_bad_sizes),
        cmocka_unit_test(test_fifo_order_and_stats),
        cmocka_unit_test(test_wraparound),
        cmocka_unit_test(test_drop_newest_counts_exactly),
        cmocka_unit_test(test_drop_oldest_counts_exactly),
        cmocka_unit_test(test_block_push_times_out_counted),
        cmocka_unit_test(test_block_push_waits_for_room),
        cmocka_unit_test(test_pop_timeout),
        cmocka_unit_test(test_pop_waits_for_item),
        cmocka_unit_test(test_pop_many),
        cmocka_unit_test(test_shutdown_drains_then_closes),
        cmocka_unit_test(test_shutdown_closes_full_drop_queues),
        cmocka_unit_test(test_shutdown_wakes_blocked_pusher_and_popper),
        cmocka_unit_test(test_stress_no_loss_no_duplicates),
        cmocka_unit_test(test_stress_drop_oldest_accounting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
