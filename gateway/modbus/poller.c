/* The Modbus poller. See poller.h for the contract; the comments here say why. */
#include "poller.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include <modbus/modbus.h>

#include "../alloc.h"
#include "../error.h"
#include "../log.h"
#include "../timeutil.h"
#include "frame.h"

#define AREA "modbus"
#define RD_UNTRIED 1 /* read status: not attempted this cycle */

typedef struct mb_dev mb_dev;
typedef struct mb_worker mb_worker;
typedef struct mb_conn mb_conn;

/* Heap of idle connections, keyed by their earliest due device. */
typedef struct mb_heap_ent {
    int64_t key_ms;
    int64_t slack_ms;
    mb_conn *c;
} mb_heap_ent;

struct mb_conn {
    const gw_bus *bus;
    modbus_t *ctx;          /* created on first connect, kept for reconnects */
    unsigned late;          /* late answers discarded by the read in progress */
    int open;               /* ctx is connected */
    int busy;               /* taken by a worker (p->mu) */
    int queued;             /* in the heap (p->mu) */
    int64_t slack_ms;       /* how late a cycle may start to share a wake-up (fixed) */
    int attempts;           /* 1 + the bus's retries */
    int rt_ms, bt_ms;       /* response / byte timeout (TCP reads, poller's own framing) */
    uint16_t tid;           /* last transaction id sent */
    const char *why;        /* which field of the last malformed TCP answer was wrong */
    int64_t reconnect_at_ms, backoff_ms;
    int consec_timeouts;
    int suspect;            /* last service slow or a device not online (p->mu) */
    int64_t last_used_ms;
    mb_dev **devs;
    size_t n_devs;
    uint32_t seed;          /* jitter */
    gw_complaint complaint;
};

/* What one read of the current cycle gave. */
typedef struct mb_rd {
    int64_t ts;             /* acquisition time */
    int status;             /* 0, RD_UNTRIED or GW_E* */
    int exc;                /* exception code */
} mb_rd;

/* A cycle's fields first and together: with 1,000 devices each device's state is cold
 * when its turn comes, and every separate line costs a cache miss. */
struct mb_dev {
    gw_plan *plan;
    const gw_profile *prof;
    mb_conn *conn;
    mb_rd *rd;              /* plan->cap_reads entries, then data: one block */
    uint16_t *data;         /* plan->data_words at build; splits never grow it */
    int64_t due_ms, interval_ms;
    int64_t end_ms;         /* monotonic end of the last cycle's I/O */
    size_t cfg_idx;
    int unit_id;
    char id[GW_ID_MAX];     /* the device id as samples carry it, zero-padded */
    gw_mb_health health;    /* written by the polling thread under p->hmu */
    const gw_device *dev;
    int64_t probe_at_ms, probe_backoff_ms;
    gw_complaint complaint;
};

struct gw_poller {
    const gw_config *cfg;
    gw_queue *q;
    gw_profile **profiles;  /* parallel to cfg->profiles */
    mb_conn *conns;
    size_t n_conns;
    mb_dev *devs;
    size_t n_devs;
    mb_dev **dev_by_cfg;    /* cfg->n_devices entries, NULL for non-Modbus */
    mb_heap_ent *heap;      /* keys kept beside the pointers: a sift touches no mb_conn */
    size_t heap_n;
    pthread_mutex_t mu;     /* heap, busy flags, stop, has_leader */
    pthread_cond_t cv;      /* idle workers */
    pthread_cond_t cv_timer; /* the one worker sleeping until the earliest due time */
    int has_leader;
    int connecting;         /* connects in flight: each may take one descriptor (p->mu) */
    pthread_mutex_t hmu;    /* device health */
    pthread_t *threads;
    mb_worker *wk;          /* per thread: its batch buffer, allocated here by start */
    gw_sample *batch_mem;   /* n_threads x batch_cap, one block: no per-thread arena */
    size_t batch_cap;       /* GW_POLLER_BATCH, or the largest profile's point count */
    size_t n_threads;
    size_t n_workers;       /* started (kept after stop, for the stats) */
    int stop;
    gw_poller_stats st;     /* counters: atomics */
    uint32_t open_conns;    /* atomic */
};

static void cnt(uint64_t *c, uint64_t n)
{
    __atomic_fetch_add(c, n, __ATOMIC_RELAXED);
}

const char *gw_mb_health_name(gw_mb_health_state s)
{
    static const char *const n[] = {"online", "degraded", "offline", "probing", "unknown"};
    return (unsigned)s <= GW_MB_UNKNOWN ? n[s] : "unknown";
}

/* ±20 % jitter so a field of devices that failed together does not retry in lockstep. */
static int64_t jitter(mb_conn *c, int64_t ms)
{
    c->seed = c->seed * 1103515245u + 12345u;
    int64_t span = ms / 5;
    if (span <= 0)
        return ms;
    return ms - span + (int64_t)((c->seed >> 8) % (uint32_t)(2 * span + 1));
}

static int64_t next_backoff(int64_t cur, int64_t lo, int64_t hi)
{
    if (lo < 1)
        lo = 1;
    int64_t n = cur <= 0 ? lo : cur * 2;
    return n > hi ? hi : n;
}

/* ---- heap of idle connections, keyed by their earliest due device --------------- */

static int64_t conn_key(const mb_conn *c)
{
    int64_t k = INT64_MAX;
    for (size_t i = 0; i < c->n_devs; i++)
        if (c->devs[i]->due_ms < k)
            k = c->devs[i]->due_ms;
    return k;
}

/* Returns the position c landed at (0: it is now the earliest). */
static size_t heap_push(gw_poller *p, mb_conn *c)
{
    mb_heap_ent e = {conn_key(c), c->slack_ms, c};
    size_t i = p->heap_n++;
    while (i > 0 && p->heap[(i - 1) / 2].key_ms > e.key_ms) {
        p->heap[i] = p->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    p->heap[i] = e;
    c->queued = 1;
    return i;
}

static mb_conn *heap_pop(gw_poller *p)
{
    mb_conn *top = p->heap[0].c;
    mb_heap_ent last = p->heap[--p->heap_n];
    size_t i = 0, n = p->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, m = l;
        if (l >= n)
            break;
        if (l + 1 < n && p->heap[l + 1].key_ms < p->heap[l].key_ms)
            m = l + 1;
        if (p->heap[m].key_ms >= last.key_ms)
            break;
        p->heap[i] = p->heap[m];
        i = m;
    }
    if (n > 0)
        p->heap[i] = last;
    top->queued = 0;
    return top;
}

/* ---- connections -------------------------------------------------------------------- */

static void conn_close(gw_poller *p, mb_conn *c)
{
    if (c->open) {
        modbus_close(c->ctx);
        c->open = 0;
        __atomic_fetch_sub(&p->open_conns, 1, __ATOMIC_RELAXED);
        cnt(&p->st.disconnects, 1);
    }
}

/* The descriptor the next socket would get, without keeping it. */
static int next_fd(void)
{
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd >= 0)
        close(fd);
    return fd;
}

/* Close the least recently used idle connection to free a descriptor. */
static int evict_idle(gw_poller *p, mb_conn *self)
{
    mb_conn *victim = NULL;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->n_conns; i++) {
        mb_conn *c = &p->conns[i];
        if (c == self || !c->open || c->busy)
            continue;
        if (!victim || c->last_used_ms < victim->last_used_ms)
            victim = c;
    }
    if (victim) /* idle and in the heap: no worker touches it while we hold mu */
        conn_close(p, victim);
    pthread_mutex_unlock(&p->mu);
    return victim ? 0 : GW_ENOTFOUND;
}

static int conn_create(mb_conn *c)
{
    const gw_bus *b = c->bus;
    if (b->type == GW_BUS_TCP) {
        char port[16];
        snprintf(port, sizeof port, "%d", b->port > 0 ? b->port : 502);
        /* _pi: getaddrinfo, so host names and IPv6 work (modbus_new_tcp is IPv4 only). */
        c->ctx = modbus_new_tcp_pi(b->host ? b->host : "127.0.0.1", port);
    } else {
        c->ctx = modbus_new_rtu(b->device, b->baud > 0 ? b->baud : 9600,
                                b->parity ? b->parity : 'N', b->data_bits > 0 ? b->data_bits : 8,
                                b->stop_bits > 0 ? b->stop_bits : 1);
    }
    if (!c->ctx)
        return errno == ENOMEM ? GW_ENOMEM : GW_EINVAL;
    /* Never let libmodbus reconnect or sleep on its own (3.1.6 RECOVERY_LINK loops
     * forever on a dead peer): the poller owns recovery. */
    modbus_set_error_recovery(c->ctx, MODBUS_ERROR_RECOVERY_NONE);
    int rt = b->response_timeout_ms > 0 ? b->response_timeout_ms : 500;
    modbus_set_response_timeout(c->ctx, (uint32_t)(rt / 1000), (uint32_t)(rt % 1000) * 1000u);
    /* byte timeout 0: the response timeout bounds the whole answer, so a device that
     * drips bytes cannot hold a worker for frame_len x byte_timeout. */
    int bt = b->byte_timeout_ms > 0 ? b->byte_timeout_ms : 0;
    modbus_set_byte_timeout(c->ctx, (uint32_t)(bt / 1000), (uint32_t)(bt % 1000) * 1000u);
    return 0;
}

static int conn_open(gw_poller *p, mb_conn *c, char *err, size_t errn)
{
    const gw_bus *b = c->bus;
    int64_t now = gw_mono_ms();
    if (!c->ctx) {
        int rc = conn_create(c);
        if (rc != 0) {
            snprintf(err, errn, "cannot create context for bus %s: %s", b->id, gw_strerror(rc));
            c->backoff_ms = next_backoff(c->backoff_ms, b->reconnect_min_ms, b->reconnect_max_ms);
            c->reconnect_at_ms = now + jitter(c, c->backoff_ms);
            return rc;
        }
    }
    /* libmodbus 3.1.6 select()s on its descriptor (also inside modbus_connect): one
     * >= FD_SETSIZE aborts the process. The next descriptor plus the connects already
     * in flight on other workers must stay under the limit; make room by closing the
     * least recently used idle connection, else refuse and retry on the backoff. */
    pthread_mutex_lock(&p->mu);
    int inflight = p->connecting++;
    pthread_mutex_unlock(&p->mu);
    int fd = next_fd();
    while (fd + inflight >= GW_POLLER_FD_LIMIT && evict_idle(p, c) == 0)
        fd = next_fd();
    int rc = 0;
    if (fd < 0 || fd + inflight >= GW_POLLER_FD_LIMIT) {
        cnt(&p->st.fd_refused, 1);
        snprintf(err, errn, "connect refused: descriptors would reach %d (libmodbus 3.1.6 "
                 "aborts at 1024); queued for retry", GW_POLLER_FD_LIMIT);
        c->backoff_ms = next_backoff(c->backoff_ms, b->reconnect_min_ms, b->reconnect_max_ms);
        c->reconnect_at_ms = now + jitter(c, c->backoff_ms);
        gw_complain(&c->complaint, 0, 10000, 600000, GW_LOG_WARN, AREA, "bus %s: %s", b->id, err);
        rc = GW_EAGAIN;
    } else if (modbus_connect(c->ctx) != 0) {
        int e = errno;
        modbus_close(c->ctx); /* 3.1.6 may keep a half-made socket */
        cnt(&p->st.connect_failures, 1);
        c->backoff_ms = next_backoff(c->backoff_ms, b->reconnect_min_ms, b->reconnect_max_ms);
        c->reconnect_at_ms = now + jitter(c, c->backoff_ms);
        snprintf(err, errn, "connect to %s failed: %s", b->type == GW_BUS_TCP ? (b->host ? b->host : "?") : b->device,
                 modbus_strerror(e));
        gw_complain(&c->complaint, 0, 5000, 600000, GW_LOG_WARN, AREA,
                    "bus %s: %s (retry in %lld ms)", b->id, err, (long long)c->backoff_ms);
        rc = GW_EIO;
    }
    pthread_mutex_lock(&p->mu);
    p->connecting--;
    pthread_mutex_unlock(&p->mu);
    if (rc != 0)
        return rc;
    if (modbus_get_socket(c->ctx) >= GW_POLLER_FD_LIMIT) { /* raced with another thread */
        modbus_close(c->ctx);
        cnt(&p->st.fd_refused, 1);
        snprintf(err, errn, "connect refused: descriptor above %d", GW_POLLER_FD_LIMIT);
        c->reconnect_at_ms = now + jitter(c, b->reconnect_min_ms > 0 ? b->reconnect_min_ms : 500);
        return GW_EAGAIN;
    }
    c->open = 1;
    c->backoff_ms = 0;
    c->consec_timeouts = 0;
    __atomic_fetch_add(&p->open_conns, 1, __ATOMIC_RELAXED);
    cnt(&p->st.connects, 1);
    gw_complain_clear(&c->complaint, AREA, "bus %s: connected", b->id);
    return 0;
}

/* ---- one read ------------------------------------------------------------------------- */

/* One request and its answer on a TCP connection, framed by frame.c and every field of
 * the answer checked (libmodbus 3.1.6 takes an answer with another unit id or a wrong
 * MBAP length). One poll() and one greedy recv() in the usual case: the whole answer
 * arrives in one segment (libmodbus: a select() and a recv() per header / count / data
 * step). A late answer to one of the previous requests ahead of it is discarded (its
 * transaction id, gw_mbframe_tcp_stale). Bytes beyond the answer mean the stream is out
 * of step: malformed, and the caller flushes. Returns 0 or an errno as libmodbus sets them: MODBUS_ENOBASE + code
 * (exception), ETIMEDOUT, EMBBADDATA (malformed; c->why says which field), or the
 * link's error. */
static int tcp_read(mb_conn *c, const gw_plan_read *r, int unit, uint16_t *dst)
{
    uint8_t req[GW_MBF_TCP_REQ_LEN], rsp[GW_MBF_TCP_MAX_ADU];
    int fd = modbus_get_socket(c->ctx);
    uint16_t tid = ++c->tid;
    if (tid == 0) /* never sent: a device that answers 0 whatever it was asked is wrong,
                     not late (gw_mbframe_tcp_stale) */
        tid = ++c->tid;
    gw_mbframe_tcp_request(req, tid, (uint8_t)unit, r->table, r->address, r->count);
    for (size_t o = 0; o < sizeof req;) {
        ssize_t w = send(fd, req + o, sizeof req - o, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) /* EAGAIN on 12 bytes: the peer stopped reading long ago */
            return w < 0 && errno != EAGAIN && errno != EWOULDBLOCK ? errno : EPIPE;
        o += (size_t)w;
    }
    int64_t deadline = gw_mono_ms() + c->rt_ms;
    size_t got = 0;
    int total = 0; /* known once the head is in */
    for (int first = 1;; first = 0) {
        int wait;
        if (got > 0 && c->bt_ms > 0) {
            /* the byte timeout bounds each gap after the first byte, and the whole
             * answer ends by the response deadline plus one byte timeout: a device
             * that drips bytes costs the others no more than that */
            int64_t left = deadline + c->bt_ms - gw_mono_ms();
            if (left <= 0)
                return ETIMEDOUT;
            wait = left < c->bt_ms ? (int)left : c->bt_ms;
        } else if (first) {
            wait = c->rt_ms;
        } else {
            int64_t left = deadline - gw_mono_ms();
            if (left <= 0)
                return ETIMEDOUT;
            wait = (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int pr = poll(&pfd, 1, wait);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0)
            return errno;
        if (pr == 0)
            return ETIMEDOUT;
        ssize_t n = recv(fd, rsp + got, sizeof rsp - got, MSG_DONTWAIT);
        if (n == 0)
            return ECONNRESET;
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return errno;
        }
        got += (size_t)n;
        /* Late answers to earlier requests (their reader timed out, and the flush ran
         * before they came) go whole, by their MBAP length, without a bad frame or a
         * retry: taking them as this answer, or failing this read on them, would put
         * every later answer one request behind. */
        while (!total && got >= 7) {
            size_t stale = gw_mbframe_tcp_stale(rsp, tid);
            if (stale) {
                if (got < stale)
                    break; /* the rest of it first */
                gw_debug(AREA, "bus %s: late answer (transaction %u) discarded", c->bus->id,
                         (unsigned)(rsp[0] << 8 | rsp[1]));
                c->late++;
                memmove(rsp, rsp + stale, got - stale);
                got -= stale;
                continue;
            }
            if (((unsigned)rsp[4] << 8 | rsp[5]) < 3) { /* unit + function + 1 at least */
                c->why = "MBAP length mismatch";
                return EMBBADDATA;
            }
            if (got < GW_MBF_TCP_HEAD)
                break;
            total = gw_mbframe_tcp_expected(rsp, gw_mbframe_function(r->table));
            if (total < 0 || total > GW_MBF_TCP_MAX_ADU) {
                c->why = "function code mismatch";
                return EMBBADDATA;
            }
        }
        if (total && got >= (size_t)total)
            break;
        if (got == sizeof rsp) {
            c->why = "frame length out of range";
            return EMBBADDATA;
        }
    }
    if (got > (size_t)total) {
        c->why = "bytes after the answer";
        return EMBBADDATA;
    }
    int exc;
    int rc = gw_mbframe_tcp_parse(rsp, got, tid, c->bus->any_unit_id ? -1 : unit, r->table,
                                  r->count, dst, &exc,
                                  &c->why);
    if (rc == GW_EPROTO) { /* codes libmodbus has no errno for are malformed, as there */
        if (exc <= EMBXGTAR - MODBUS_ENOBASE)
            return MODBUS_ENOBASE + exc;
        c->why = "exception code out of range";
        return EMBBADEXC;
    }
    return rc == 0 ? 0 : EMBBADDATA;
}

/* Read r into dst (one uint16 per register or per bit). Returns 0; GW_EPROTO with *exc
 * (exception); GW_ETIMEDOUT (no answer); GW_ECORRUPT (CRC); GW_EDECODE (malformed);
 * GW_EIO (connection lost, now closed). */
static int do_read(gw_poller *p, mb_conn *c, const gw_plan_read *r, int unit, uint16_t *dst,
                   int attempts, int *exc, int *tries)
{
    uint8_t bits[GW_MB_MAX_BITS];
    int last = GW_ETIMEDOUT;
    *exc = 0;
    /* Never ask more than the caller's buffer holds (CVE-2023-26793 is a dest < nb). */
    if (r->count == 0 || r->count > (gw_mb_table_is_bits(r->table) ? GW_MB_MAX_BITS : GW_MB_MAX_REGS))
        return GW_EINVAL;
    for (int a = 0; a < attempts; a++) {
        *tries = a + 1;
        cnt(&p->st.requests, 1);
        int n;
        if (c->bus->type == GW_BUS_TCP) {
            int te = tcp_read(c, r, unit, dst);
            if (c->late) {
                cnt(&p->st.late_answers, c->late);
                c->late = 0;
            }
            n = te == 0 ? r->count : -1;
            errno = te;
        } else switch (r->table) {
        case GW_MB_COIL: n = modbus_read_bits(c->ctx, r->address, r->count, bits); break;
        case GW_MB_DISCRETE: n = modbus_read_input_bits(c->ctx, r->address, r->count, bits); break;
        case GW_MB_HOLDING: n = modbus_read_registers(c->ctx, r->address, r->count, dst); break;
        default: n = modbus_read_input_registers(c->ctx, r->address, r->count, dst); break;
        }
        int e = n < 0 ? errno : 0;
        if (n == r->count) {
            if (gw_mb_table_is_bits(r->table) && c->bus->type != GW_BUS_TCP) /* TCP: unpacked */
                for (unsigned i = 0; i < r->count; i++)
                    dst[i] = bits[i] ? 1 : 0;
            cnt(&p->st.responses, 1);
            cnt(&p->st.registers, r->count);
            c->consec_timeouts = 0;
            return 0;
        }
        if (n >= 0)
            e = EMBMDATA; /* short answer */
        if (e > MODBUS_ENOBASE && e <= EMBXGTAR) {
            int code = e - MODBUS_ENOBASE;
            *exc = code;
            cnt(&p->st.exceptions, 1);
            if (code < 12)
                cnt(&p->st.exception_code[code], 1);
            c->consec_timeouts = 0;
            /* 05 ACKNOWLEDGE / 06 BUSY: the device asks to be asked again. */
            if ((code == 5 || code == 6) && a + 1 < attempts) {
                gw_sleep_ms(20);
                continue;
            }
            return GW_EPROTO;
        }
        if (e == ETIMEDOUT) {
            cnt(&p->st.timeouts, 1);
            /* A late answer must not be taken for the next request's. */
            modbus_flush(c->ctx);
            c->consec_timeouts++;
            last = GW_ETIMEDOUT;
            /* A TCP peer that stays silent across cycles gets a fresh connection:
             * some gateways wedge a socket after a lost frame. */
            if (c->bus->type == GW_BUS_TCP && c->consec_timeouts >= 3 * (attempts > 0 ? attempts : 1)) {
                conn_close(p, c);
                c->reconnect_at_ms = gw_mono_ms();
                return GW_ETIMEDOUT;
            }
            continue;
        }
        if (e == EMBBADCRC) {
            cnt(&p->st.crc_errors, 1);
            modbus_flush(c->ctx);
            last = GW_ECORRUPT;
            continue;
        }
        if (e == EMBBADDATA || e == EMBMDATA || e == EMBBADEXC || e == EMBUNKEXC || e == EMBBADSLAVE) {
            cnt(&p->st.bad_frames, 1);
            modbus_flush(c->ctx);
            last = GW_EDECODE;
            continue;
        }
        /* Anything else is the link: EPIPE, ECONNRESET, EBADF, EIO on a serial line... */
        conn_close(p, c);
        c->backoff_ms = next_backoff(0, c->bus->reconnect_min_ms, c->bus->reconnect_max_ms);
        c->reconnect_at_ms = gw_mono_ms() + jitter(c, c->backoff_ms);
        return GW_EIO;
    }
    return last;
}

/* ---- samples ------------------------------------------------------------------------- */

static gw_value_type point_vtype(const gw_profile_point *pt)
{
    if (pt->type == GW_PT_BOOL || pt->type == GW_PT_BIT)
        return GW_V_BOOL;
    if (pt->type == GW_PT_STRING || pt->type == GW_PT_ENUM)
        return GW_V_TEXT;
    return GW_V_NUMBER;
}

_Static_assert(sizeof(((gw_sample *)0)->field) == sizeof(((gw_profile_point *)0)->field) &&
                   sizeof(((gw_sample *)0)->unit) == sizeof(((gw_profile_point *)0)->unit),
               "sample and profile names are copied whole");

/* Point k's sample, written in place in the worker's batch: fixed-size copies from the
 * device's padded id and the profile's point (shared by every device of that model, so
 * hot in cache), no strlen / snprintf / memset of the whole struct per sample. A device
 * keeps no sample array of its own: 1,000 devices' arrays (4 KB each) were cold on every
 * cycle and then copied once more into the batch. */
static void emit(const mb_dev *d, gw_sample *s, const gw_profile_point *pt,
                 const gw_point_value *v, gw_quality q, int64_t ts)
{
    memcpy(s->device, d->id, sizeof s->device);
    memcpy(s->field, pt->field, sizeof s->field);
    memcpy(s->unit, pt->unit, sizeof s->unit);
    s->device_idx = (uint32_t)d->cfg_idx;
    s->value = v && isfinite(v->value) ? v->value : 0; /* consumers see the quality; never a NaN */
    s->quality = q;
    s->ts_us = ts;
    s->type = v ? v->type : point_vtype(pt);
    if (v && v->type == GW_V_TEXT)
        memcpy(s->text, v->text, sizeof s->text);
    else
        memset(s->text, 0, sizeof s->text);
}

/* Samples of the cycles one worker runs back to back, handed over in one push: one lock
 * and one consumer wake-up per burst instead of one per device (the consumer woken per
 * device took the CPU the devices' answers needed). Flushed when the worker is about to
 * wait, when full, or GW_POLLER_BATCH_MS after its first sample. 1,024 samples (200 KB)
 * hold about 50 devices of 20 points: a burst of 140 devices is 3 pushes, not 12. */
#define GW_POLLER_BATCH 1024
#define GW_POLLER_BATCH_MS 20

typedef struct mb_batch {
    gw_sample *s;
    size_t n, cap; /* cap >= the largest profile's point count */
    int64_t first_ms;
} mb_batch;

static void push_samples(gw_poller *p, const gw_sample *s, size_t n)
{
    int done = n ? gw_queue_push_many(p->q, s, n, GW_POLLER_PUSH_TIMEOUT_MS) : 0;
    if (done < 0)
        done = 0;
    cnt(&p->st.samples, (uint64_t)done);
    cnt(&p->st.samples_dropped, n - (size_t)done);
}

static void batch_flush(gw_poller *p, mb_batch *b)
{
    push_samples(p, b->s, b->n);
    b->n = 0;
}

static void batch_maybe_flush(gw_poller *p, mb_batch *b, int64_t now_ms)
{
    if (b->n && now_ms - b->first_ms >= GW_POLLER_BATCH_MS)
        batch_flush(p, b);
}

static gw_quality quality_of(int rc)
{
    return rc == GW_EDECODE ? GW_Q_DECODE_ERROR : GW_Q_COMM_ERROR;
}

/* One sample per point into b (flushed first when it has no room). now_ms: the cycle's
 * start, the batch's age when it is the first. */
static void emit_all(gw_poller *p, mb_dev *d, int64_t fail_ts, int fail_rc, mb_batch *b,
                     int64_t now_ms)
{
    const gw_plan *plan = d->plan;
    const gw_profile *prof = d->prof;
    if (b->n + prof->n_points > b->cap)
        batch_flush(p, b);
    if (b->n == 0)
        b->first_ms = now_ms;
    gw_sample *out = b->s + b->n;
    for (size_t k = 0; k < prof->n_points; k++) {
        const gw_profile_point *pt = &prof->points[k];
        const gw_plan_loc *loc = &plan->point_loc[k];
        if (loc->read == GW_PLAN_NOLOC) {
            emit(d, &out[k], pt, NULL, GW_Q_DECODE_ERROR, fail_ts);
            continue;
        }
        int st = d->rd[loc->read].status;
        int64_t ts = d->rd[loc->read].ts;
        if (st != 0) {
            int rc = st == RD_UNTRIED ? fail_rc : st;
            emit(d, &out[k], pt, NULL, quality_of(rc), st == RD_UNTRIED ? fail_ts : ts);
            continue;
        }
        int dp = 0;
        if (pt->has_dp) {
            const gw_plan_loc *dl = &plan->dp_loc[k];
            int dst = dl->read == GW_PLAN_NOLOC ? GW_EDECODE : d->rd[dl->read].status;
            if (dst != 0) {
                emit(d, &out[k], pt, NULL, quality_of(dst == RD_UNTRIED ? fail_rc : dst), ts);
                continue;
            }
            dp = (int16_t)d->data[dl->word];
        }
        gw_point_value v;
        if (gw_profile_decode_point(pt, d->data + loc->word, loc->avail, dp, &v) != 0) {
            emit(d, &out[k], pt, NULL, GW_Q_DECODE_ERROR, ts);
            continue;
        }
        emit(d, &out[k], pt, &v, v.quality, ts);
    }
    b->n += prof->n_points;
}

/* ---- one device cycle ------------------------------------------------------------------ */

static const char *rc_text(int rc)
{
    switch (rc) {
    case GW_ETIMEDOUT: return "timeout";
    case GW_ECORRUPT: return "CRC error";
    case GW_EDECODE: return "malformed answer";
    case GW_EIO: return "connection lost";
    case GW_EPROTO: return "exception";
    default: return gw_strerror(rc);
    }
}

static int poll_cycle(gw_poller *p, mb_dev *d, gw_poll_report *rep, mb_batch *batch)
{
    mb_conn *c = d->conn;
    const gw_bus *b = c->bus;
    gw_plan *plan = d->plan;
    /* Two clock reads per cycle and one per read: acquisition times are the cycle's
     * wall-clock start plus monotonic time elapsed (a cycle is shorter than its
     * interval, so a wall-clock step inside one moves its times by at most that). */
    int64_t t0 = gw_mono_us(), wall0 = gw_now_us(), tm = t0;
    int64_t now_ms = t0 / 1000;
    char err[128] = "";
    int fail_rc = 0, io = 1, answered = 0, any_exc = 0, last_exc = 0;
    gw_mb_health_state st = d->health.state;

    cnt(&p->st.cycles, 1);
    for (size_t i = 0; i < plan->cap_reads; i++) {
        d->rd[i] = (mb_rd){0, RD_UNTRIED, 0};
    }
    if (rep)
        memset(rep, 0, sizeof *rep);

    if (st == GW_MB_OFFLINE) {
        if (now_ms < d->probe_at_ms && !rep) {
            io = 0;
            fail_rc = GW_ETIMEDOUT;
            snprintf(err, sizeof err, "offline, next probe in %lld ms",
                     (long long)(d->probe_at_ms - now_ms));
        } else {
            st = GW_MB_PROBING;
            pthread_mutex_lock(&p->hmu);
            d->health.state = GW_MB_PROBING;
            pthread_mutex_unlock(&p->hmu);
        }
    }
    if (io && !c->open) {
        if (now_ms < c->reconnect_at_ms && !rep) {
            io = 0;
            fail_rc = GW_EIO;
            snprintf(err, sizeof err, "bus %s down, reconnect in %lld ms", b->id,
                     (long long)(c->reconnect_at_ms - now_ms));
        } else {
            int rc = conn_open(p, c, err, sizeof err);
            tm = gw_mono_us();
            if (rep)
                rep->connect_us = tm - t0;
            if (rc != 0) {
                io = 0;
                fail_rc = rc == GW_EAGAIN ? GW_EIO : rc;
            }
        }
    }
    if (rep)
        rep->connected = c->open;

    /* Offline devices get one attempt, not retries: their cost to the bus is bounded
     * by one response timeout per probe. */
    int attempts = (st == GW_MB_PROBING) ? 1 : c->attempts;
    int64_t budget_us = (int64_t)d->interval_ms * 1000;
    if (io) {
        modbus_set_slave(c->ctx, d->unit_id);
        for (size_t i = 0; i < plan->n_reads; i++) {
            gw_plan_read *r = &plan->reads[i];
            if (i > 0 && tm - t0 > budget_us) {
                /* Slow answers: the cycle may not outlive its own interval. */
                fail_rc = GW_ETIMEDOUT;
                snprintf(err, sizeof err, "cycle exceeded its %lld ms interval after %zu reads",
                         (long long)d->interval_ms, i);
                break;
            }
            int exc = 0, tries = 0;
            int64_t rs = tm;
            int rc = do_read(p, c, r, d->unit_id, d->data + r->data_off, attempts, &exc, &tries);
            tm = gw_mono_us();
            d->rd[i] = (mb_rd){wall0 + (tm - t0), rc, exc};
            if (rep && rep->n_reads < GW_POLL_REPORT_MAX) {
                gw_poll_read_report *rr = &rep->reads[rep->n_reads++];
                rr->table = r->table;
                rr->address = r->address;
                rr->count = r->count;
                rr->rc = rc;
                rr->exception = exc;
                rr->attempts = tries;
                rr->duration_us = tm - rs;
            }
            if (rc == 0) {
                answered = 1;
                continue;
            }
            if (rc == GW_EPROTO) {
                answered = 1; /* the device is there; it refused this range */
                if ((exc == 2 || exc == 3) && gw_plan_split(plan, i) == 0) {
                    cnt(&p->st.splits, 1);
                    gw_info(AREA, "device %s: exception %d on %s %u..%u, read split in two "
                            "(now %zu reads per cycle)", d->dev->id, exc, gw_mb_table_name(r->table),
                            (unsigned)plan->reads[i].address,
                            (unsigned)(plan->reads[i + 1].address + plan->reads[i + 1].count - 1),
                            plan->n_reads);
                    if (rep && rep->n_reads)
                        rep->reads[rep->n_reads - 1].split = 1;
                    /* statuses of later reads shift with the plan; they are untried */
                    d->rd[i].status = RD_UNTRIED;
                    i--; /* read i is now the first half: ask it again */
                    continue;
                }
                any_exc = 1;
                last_exc = exc;
                if (!err[0])
                    snprintf(err, sizeof err, "exception %d on %s %u..%u", exc,
                             gw_mb_table_name(r->table), (unsigned)r->address,
                             (unsigned)(r->address + r->count - 1));
                continue;
            }
            if (!err[0] || rc == GW_ETIMEDOUT || rc == GW_EIO)
                snprintf(err, sizeof err, "%s%s%s (read %s %u..%u, %d attempt%s)", rc_text(rc),
                         rc == GW_EDECODE && c->why ? ": " : "", rc == GW_EDECODE && c->why ? c->why : "",
                         gw_mb_table_name(r->table), (unsigned)r->address,
                         (unsigned)(r->address + r->count - 1), tries, tries == 1 ? "" : "s");
            if (rc == GW_ETIMEDOUT || rc == GW_EIO) {
                fail_rc = rc; /* silent or gone: do not spend more time on it */
                break;
            }
            if (!fail_rc)
                fail_rc = rc;
        }
    }

    int64_t end_wall = wall0 + (tm - t0);
    emit_all(p, d, end_wall, fail_rc ? fail_rc : GW_ETIMEDOUT, batch, now_ms);

    /* Health. */
    int64_t t_end = tm;
    int64_t dur = t_end - t0;
    d->end_ms = t_end / 1000;
    if (io)
        c->last_used_ms = t_end / 1000;
    int clean = answered && !fail_rc && !any_exc;
    pthread_mutex_lock(&p->hmu);
    gw_mb_health *h = &d->health;
    h->cycles++;
    h->last_cycle_us = end_wall;
    h->last_duration_us = dur;
    h->reads_per_cycle = plan->n_reads;
    if (any_exc) {
        h->exceptions++;
        h->last_exception = last_exc;
    }
    if (err[0])
        snprintf(h->last_error, sizeof h->last_error, "%s", err);
    int newly_offline = 0, recovered = 0;
    if (!io && st == GW_MB_OFFLINE) {
        /* waiting for the next probe: nothing new learned */
    } else if (answered) {
        recovered = h->state == GW_MB_OFFLINE || h->state == GW_MB_PROBING || h->consecutive_failures > 0;
        h->state = clean ? GW_MB_ONLINE : GW_MB_DEGRADED;
        h->consecutive_failures = 0;
        h->last_ok_us = end_wall;
        if (clean)
            h->last_error[0] = '\0';
        d->probe_backoff_ms = 0;
    } else {
        h->failures++;
        h->consecutive_failures++;
        if (fail_rc == GW_ETIMEDOUT)
            h->timeouts++;
        if (st == GW_MB_PROBING || h->consecutive_failures >= GW_POLLER_OFFLINE_AFTER) {
            newly_offline = st != GW_MB_PROBING;
            h->state = GW_MB_OFFLINE;
            int64_t lo = d->interval_ms > b->reconnect_min_ms ? d->interval_ms : b->reconnect_min_ms;
            int64_t hi = b->reconnect_max_ms > lo ? b->reconnect_max_ms : lo;
            d->probe_backoff_ms = next_backoff(d->probe_backoff_ms, lo, hi);
            d->probe_at_ms = gw_mono_ms() + jitter(c, d->probe_backoff_ms);
        } else {
            h->state = GW_MB_DEGRADED;
        }
    }
    pthread_mutex_unlock(&p->hmu);

    if (newly_offline)
        gw_warn(AREA, "device %s (bus %s, unit %d) offline after %d unanswered cycles: %s",
                d->dev->id, b->id, d->dev->unit_id, GW_POLLER_OFFLINE_AFTER, err);
    else if (!answered && io)
        gw_complain(&d->complaint, 0, 10000, 600000, GW_LOG_WARN, AREA, "device %s: %s",
                    d->dev->id, err);
    if (recovered) {
        gw_complain_clear(&d->complaint, AREA, "device %s answers again", d->dev->id);
        gw_notice(AREA, "device %s online", d->dev->id);
    }
    if (rep) {
        rep->answered = answered;
        rep->total_us = dur;
        snprintf(rep->error, sizeof rep->error, "%s", err);
    }
    if (answered)
        return 0;
    return fail_rc ? fail_rc : GW_ETIMEDOUT;
}

/* Next slot: exactly one interval on; slots already past are skipped (counted). */
static void reschedule(gw_poller *p, mb_dev *d, int64_t now)
{
    int64_t next = d->due_ms + d->interval_ms;
    if (next <= now) {
        int64_t missed = (now - next) / d->interval_ms + 1;
        next += missed * d->interval_ms;
        cnt(&p->st.cycles_late, (uint64_t)missed);
    }
    d->due_ms = next;
}

/* Poll c's due devices back to back; returns the monotonic time at the end (the clock
 * reads of the cycles themselves, no extra one). */
static int64_t service_conn(gw_poller *p, mb_conn *c, mb_batch *b, int64_t now)
{
    for (size_t i = 0; i < c->n_devs; i++) {
        if (__atomic_load_n(&p->stop, __ATOMIC_RELAXED))
            break;
        mb_dev *d = c->devs[i];
        if (d->due_ms > now)
            continue;
        poll_cycle(p, d, NULL, b);
        now = d->end_ms;
        reschedule(p, d, now);
        batch_maybe_flush(p, b, now);
    }
    return now;
}

/* Scheduling without a thread per connection and without a futex storm:
 *  - one idle worker at a time (the leader) sleeps until the earliest due connection
 *    (plus a small slack so devices due within it share one wake-up); the others wait
 *    untimed;
 *  - the worker that takes a connection keeps going: when it is done it takes the next
 *    due one itself, like a plain polling loop, so healthy fast devices cost no
 *    hand-over between threads;
 *  - it wakes a helper only when parallelism pays: the next connection is already late
 *    by more than its slack + GW_POLLER_HELP_LATE_MS (a burst of healthy devices due
 *    together runs on alone for that long: a helper woken early only adds switches),
 *    or the one it takes is suspect (a device on it is not
 *    online, it is not connected, or its last service was slow). A device that turns
 *    silent without warning thus delays the others once by at most its own deadline;
 *    from its next cycle it is served in parallel. */
#define GW_POLLER_HELP_LATE_MS 25
#define GW_POLLER_PHASES 8
#define GW_POLLER_PHASE_MIN 128 /* devices per start phase at least */
#define GW_POLLER_SLOW_MS 20

static int64_t slack_ms(const mb_conn *c)
{
    int64_t iv = c->n_devs ? c->devs[0]->interval_ms : 1000;
    int64_t s = iv / 50;
    return s > 20 ? 20 : s;
}

struct mb_worker {
    gw_poller *p;
    gw_sample *buf; /* cap samples, from the poller's one block */
    size_t cap;
};

static void *worker_main(void *arg)
{
    mb_worker *w = arg;
    gw_poller *p = w->p;
    pthread_setname_np(pthread_self(), "cg-modbus");
    mb_batch b = {.s = w->buf, .cap = w->cap};
    /* now is refreshed after every wait and every service (from the cycle's own clock
     * reads): one clock read per wake-up, none per hand-over. */
    int64_t now = gw_mono_ms();
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        int due = p->heap_n > 0 && p->heap[0].key_ms <= now;
        if (!due && b.n) {
            /* about to wait: hand over what this burst collected first */
            pthread_mutex_unlock(&p->mu);
            batch_flush(p, &b);
            now = gw_mono_ms();
            pthread_mutex_lock(&p->mu);
            continue;
        }
        if (p->heap_n == 0 || (!due && p->has_leader)) {
            pthread_cond_wait(&p->cv, &p->mu);
            now = gw_mono_ms();
            continue;
        }
        if (!due) {
            /* the leader: sleep until the earliest key + its slack (absolute, on the
             * monotonic clock the condition variables use) */
            p->has_leader = 1;
            int64_t until = p->heap[0].key_ms + p->heap[0].slack_ms;
            struct timespec ts = {.tv_sec = until / 1000, .tv_nsec = (until % 1000) * 1000000L};
            pthread_cond_timedwait(&p->cv_timer, &p->mu, &ts);
            p->has_leader = 0;
            now = gw_mono_ms();
            continue;
        }
        mb_conn *c = heap_pop(p);
        c->busy = 1;
        if (p->heap_n > 0 && !p->has_leader &&
            (c->suspect || (!c->open && c->reconnect_at_ms <= now) ||
             p->heap[0].key_ms + p->heap[0].slack_ms + GW_POLLER_HELP_LATE_MS <= now))
            pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        int64_t end = service_conn(p, c, &b, now);
        int slow = end - now > GW_POLLER_SLOW_MS;
        now = end;
        pthread_mutex_lock(&p->mu);
        c->suspect = slow || !c->open;
        for (size_t i = 0; i < c->n_devs && !c->suspect; i++) {
            gw_mb_health_state st = c->devs[i]->health.state;
            c->suspect = st != GW_MB_ONLINE && st != GW_MB_UNKNOWN;
        }
        c->busy = 0;
        if (heap_push(p, c) == 0 && p->has_leader)
            pthread_cond_signal(&p->cv_timer); /* earlier than what the leader waits for */
    }
    pthread_mutex_unlock(&p->mu);
    batch_flush(p, &b);
    return NULL;
}

/* ---- life cycle ------------------------------------------------------------------------ */

static int profile_index(const gw_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_profiles; i++)
        if (cfg->profiles[i].name && name && strcmp(cfg->profiles[i].name, name) == 0)
            return (int)i;
    return -1;
}

int gw_poller_new(const gw_config *cfg, gw_queue *samples, gw_poller **out)
{
    int rc = GW_ENOMEM;
    *out = NULL;
    gw_poller *p = gw_calloc(1, sizeof *p);
    if (!p)
        return GW_ENOMEM;
    p->cfg = cfg;
    p->q = samples;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->hmu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cv, &ca);
    pthread_cond_init(&p->cv_timer, &ca);
    pthread_condattr_destroy(&ca);

    p->profiles = gw_calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof *p->profiles);
    p->dev_by_cfg = gw_calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof *p->dev_by_cfg);
    p->conns = gw_calloc(cfg->n_buses ? cfg->n_buses : 1, sizeof *p->conns);
    p->devs = gw_calloc(cfg->n_devices ? cfg->n_devices : 1, sizeof *p->devs);
    p->heap = gw_calloc(cfg->n_buses ? cfg->n_buses : 1, sizeof *p->heap);
    if (!p->profiles || !p->dev_by_cfg || !p->conns || !p->devs || !p->heap)
        goto fail;

    gw_cfgerr errs = {0};
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        int prc = gw_profile_parse(cfg->profiles[i].path, cfg->profiles[i].json, &errs,
                                   &p->profiles[i]);
        if (prc == GW_ENOMEM)
            goto fail_errs;
        if (prc != 0)
            rc = GW_ECONFIG;
    }
    if (errs.n) {
        for (size_t i = 0; i < errs.n; i++)
            gw_error(AREA, "%s", errs.lines[i]);
        rc = GW_ECONFIG;
        goto fail_errs;
    }
    gw_cfgerr_free(&errs);

    for (size_t i = 0; i < cfg->n_buses; i++) {
        mb_conn *c = &p->conns[i];
        c->bus = &cfg->buses[i];
        c->attempts = 1 + (c->bus->retries > 0 ? c->bus->retries : 0);
        c->rt_ms = c->bus->response_timeout_ms > 0 ? c->bus->response_timeout_ms : 500;
        c->bt_ms = c->bus->byte_timeout_ms > 0 ? c->bus->byte_timeout_ms : 0;
        c->seed = (uint32_t)(i * 2654435761u) ^ (uint32_t)gw_now_us();
    }
    p->n_conns = cfg->n_buses;

    int64_t start = gw_mono_ms();
    size_t nd = 0, bus_hint = 0;
    for (size_t i = 0; i < cfg->n_devices; i++) {
        const gw_device *dv = &cfg->devices[i];
        if (dv->source != GW_SRC_MODBUS || !dv->enabled)
            continue;
        int pi = profile_index(cfg, dv->profile);
        /* Configs list buses and their devices in order: search from the last match on
         * (1,000 devices on 1,000 buses: 1,000 compares, not 500,000). */
        size_t bi = cfg->n_buses;
        for (size_t k = 0; k < cfg->n_buses; k++) {
            size_t j = (bus_hint + k) % cfg->n_buses;
            if (cfg->buses[j].id && dv->bus && strcmp(cfg->buses[j].id, dv->bus) == 0) {
                bi = j;
                bus_hint = j;
                break;
            }
        }
        if (pi < 0 || bi == cfg->n_buses) {
            gw_error(AREA, "device %s: %s not found", dv->id, pi < 0 ? "profile" : "bus");
            rc = GW_ECONFIG;
            goto fail;
        }
        mb_dev *d = &p->devs[nd++];
        d->cfg_idx = i;
        d->dev = dv;
        d->prof = p->profiles[pi];
        d->conn = &p->conns[bi];
        d->interval_ms = dv->interval_ms > 0 ? dv->interval_ms : 10000;
        d->health.state = GW_MB_UNKNOWN;
        int prc = gw_plan_build(d->prof, cfg->buses[bi].max_gap, &d->plan);
        if (prc != 0) {
            rc = prc;
            goto fail;
        }
        size_t cap = d->plan->cap_reads;
        d->rd = gw_calloc(1, cap * sizeof *d->rd + (d->plan->data_words + 1) * sizeof *d->data);
        if (!d->rd)
            goto fail;
        d->data = (uint16_t *)(d->rd + cap);
        d->unit_id = dv->unit_id;
        snprintf(d->id, sizeof d->id, "%s", dv->id ? dv->id : "");
        if (d->prof->n_points > p->batch_cap)
            p->batch_cap = d->prof->n_points;
        p->dev_by_cfg[i] = d;
        d->conn->n_devs++;
    }
    p->n_devs = nd;

    for (size_t i = 0; i < p->n_conns; i++) {
        mb_conn *c = &p->conns[i];
        if (c->n_devs) {
            c->devs = gw_calloc(c->n_devs, sizeof *c->devs);
            if (!c->devs)
                goto fail;
        }
        c->n_devs = 0;
    }
    /* Spread first polls over up to GW_POLLER_PHASES phases of each device's interval,
     * at least GW_POLLER_PHASE_MIN devices per phase: the devices of one phase share
     * one wake-up of one worker (a wake-up costs more CPU than a device's requests, so
     * 50 devices start together: 1 wake-up per interval, not 8), while 1,000 devices
     * come in bursts short enough for one worker. Round-robin in config order:
     * reproducible, and the devices of one serial line land in different phases. */
    size_t phases = nd / GW_POLLER_PHASE_MIN;
    phases = phases < 1 ? 1 : phases > GW_POLLER_PHASES ? GW_POLLER_PHASES : phases;
    for (size_t i = 0; i < nd; i++) {
        mb_dev *d = &p->devs[i];
        d->conn->devs[d->conn->n_devs++] = d;
        d->due_ms = start + (int64_t)((i % phases) * (uint64_t)d->interval_ms / phases);
    }
    *out = p;
    return 0;

fail_errs:
    gw_cfgerr_free(&errs);
fail:
    gw_poller_free(p);
    return rc;
}

int gw_poller_start(gw_poller *p)
{
    size_t active = 0;
    for (size_t i = 0; i < p->n_conns; i++)
        if (p->conns[i].n_devs)
            active++;
    size_t nt = active < GW_POLLER_MAX_WORKERS ? active : GW_POLLER_MAX_WORKERS;
    if (nt == 0)
        return 0;
    p->threads = gw_calloc(nt, sizeof *p->threads);
    p->wk = gw_calloc(nt, sizeof *p->wk);
    if (!p->threads || !p->wk) {
        gw_free(p->threads);
        gw_free(p->wk);
        p->threads = NULL;
        p->wk = NULL;
        return GW_ENOMEM;
    }
    /* One block from this thread: a worker that mallocs its own buffer makes glibc
     * create an arena for it (mmap of 64 MiB, page faults); untouched pages cost no RSS. */
    size_t cap = p->batch_cap > GW_POLLER_BATCH ? p->batch_cap : GW_POLLER_BATCH;
    p->batch_mem = gw_calloc(nt * cap, sizeof(gw_sample));
    if (!p->batch_mem) {
        gw_free(p->threads);
        gw_free(p->wk);
        p->threads = NULL;
        p->wk = NULL;
        return GW_ENOMEM;
    }
    for (size_t i = 0; i < nt; i++) {
        p->wk[i].p = p;
        p->wk[i].buf = p->batch_mem + i * cap;
        p->wk[i].cap = cap;
    }
    pthread_mutex_lock(&p->mu);
    p->stop = 0;
    for (size_t i = 0; i < p->n_conns; i++) {
        mb_conn *c = &p->conns[i];
        if (c->n_devs && !c->queued) {
            c->slack_ms = slack_ms(c);
            heap_push(p, c);
        }
    }
    pthread_mutex_unlock(&p->mu);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    /* Workers need little stack: a 2000-bit buffer and libmodbus's frames. */
    pthread_attr_setstacksize(&attr, 256 * 1024);
    for (size_t i = 0; i < nt; i++) {
        if (pthread_create(&p->threads[i], &attr, worker_main, &p->wk[i]) != 0) {
            pthread_attr_destroy(&attr);
            p->n_threads = i;
            gw_poller_stop(p);
            return GW_EIO;
        }
        p->n_threads = i + 1;
    }
    p->n_workers = nt;
    pthread_attr_destroy(&attr);
    gw_info(AREA, "polling %zu devices on %zu connections with %zu workers", p->n_devs, active, nt);
    return 0;
}

void gw_poller_stop(gw_poller *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    __atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_broadcast(&p->cv);
    pthread_cond_broadcast(&p->cv_timer);
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
    gw_free(p->threads);
    p->threads = NULL;
    gw_free(p->wk);
    p->wk = NULL;
    gw_free(p->batch_mem);
    p->batch_mem = NULL;
    for (size_t i = 0; i < p->n_conns; i++)
        conn_close(p, &p->conns[i]);
    p->heap_n = 0;
    for (size_t i = 0; i < p->n_conns; i++)
        p->conns[i].queued = 0;
}

void gw_poller_free(gw_poller *p)
{
    if (!p)
        return;
    gw_poller_stop(p);
    for (size_t i = 0; i < p->n_conns; i++) {
        if (p->conns[i].ctx)
            modbus_free(p->conns[i].ctx);
        gw_free(p->conns[i].devs);
    }
    for (size_t i = 0; i < p->n_devs; i++) {
        mb_dev *d = &p->devs[i];
        gw_plan_free(d->plan);
        gw_free(d->rd); /* and data, in the same block */
    }
    for (size_t i = 0; p->profiles && i < p->cfg->n_profiles; i++)
        gw_profile_free(p->profiles[i]);
    gw_free(p->profiles);
    gw_free(p->dev_by_cfg);
    gw_free(p->conns);
    gw_free(p->devs);
    gw_free(p->heap);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->hmu);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->cv_timer);
    gw_free(p);
}

void gw_poller_stats_get(gw_poller *p, gw_poller_stats *out)
{
    memset(out, 0, sizeof *out);
    const uint64_t *src = (const uint64_t *)&p->st;
    uint64_t *dst = (uint64_t *)out;
    size_t n64 = offsetof(gw_poller_stats, devices) / sizeof(uint64_t);
    for (size_t i = 0; i < n64; i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    out->devices = (uint32_t)p->n_devs;
    out->open_connections = __atomic_load_n(&p->open_conns, __ATOMIC_RELAXED);
    out->workers = (uint32_t)p->n_workers;
    for (size_t i = 0; i < p->n_conns; i++)
        if (p->conns[i].n_devs)
            out->connections++;
    pthread_mutex_lock(&p->hmu);
    for (size_t i = 0; i < p->n_devs; i++)
        switch (p->devs[i].health.state) {
        case GW_MB_ONLINE: out->online++; break;
        case GW_MB_DEGRADED: out->degraded++; break;
        case GW_MB_OFFLINE: out->offline++; break;
        case GW_MB_PROBING: out->probing++; break;
        default: break;
        }
    pthread_mutex_unlock(&p->hmu);
}

int gw_poller_device_health(gw_poller *p, size_t device_idx, gw_mb_health *out)
{
    if (!p || device_idx >= p->cfg->n_devices || !p->dev_by_cfg[device_idx])
        return GW_ENOTFOUND;
    pthread_mutex_lock(&p->hmu);
    *out = p->dev_by_cfg[device_idx]->health;
    pthread_mutex_unlock(&p->hmu);
    return 0;
}

int gw_poller_poll_once(gw_poller *p, size_t device_idx, gw_poll_report *rep)
{
    if (!p || device_idx >= p->cfg->n_devices || !p->dev_by_cfg[device_idx])
        return GW_ENOTFOUND;
    if (p->n_threads)
        return GW_EINVAL;
    mb_dev *d = p->dev_by_cfg[device_idx];
    mb_batch b = {.s = gw_calloc(d->prof->n_points, sizeof(gw_sample)), .cap = d->prof->n_points};
    if (!b.s)
        return GW_ENOMEM;
    gw_poll_report local;
    int rc = poll_cycle(p, d, rep ? rep : &local, &b);
    batch_flush(p, &b);
    gw_free(b.s);
    return rc;
}

/* ---- deep check ------------------------------------------------------------------------ */

int gw_modbus_check(const gw_config *cfg, gw_cfgerr *errs)
{
    int bad = 0;
    gw_profile **parsed = gw_calloc(cfg->n_profiles ? cfg->n_profiles : 1, sizeof *parsed);
    if (!parsed)
        return GW_ENOMEM;
    for (size_t i = 0; i < cfg->n_profiles; i++) {
        int rc = gw_profile_parse(cfg->profiles[i].path, cfg->profiles[i].json, errs, &parsed[i]);
        if (rc == GW_ENOMEM) {
            bad = GW_ENOMEM;
            goto done;
        }
        if (rc != 0)
            bad = 1;
    }
    for (size_t i = 0; i < cfg->n_devices; i++) {
        const gw_device *d = &cfg->devices[i];
        if (d->source != GW_SRC_MODBUS)
            continue;
        char path[64];
        const gw_bus *b = gw_config_bus(cfg, d->bus);
        int pi = profile_index(cfg, d->profile);
        if (!b || pi < 0)
            continue; /* the config loader reports unknown names */
        if (b->type == GW_BUS_RTU && d->unit_id == 0) {
            snprintf(path, sizeof path, "devices[%zu].modbus.unit_id", i);
            gw_cfgerr_add(errs, cfg->file, path,
                          "unit id 0 is the RTU broadcast address: a device cannot answer it");
            bad = 1;
        }
        const gw_profile *prof = parsed[pi];
        if (!prof)
            continue;
        /* A silent device holds its connection for one response timeout per attempt:
         * an interval shorter than that cannot be kept even by the first attempt. */
        int rt = b->response_timeout_ms > 0 ? b->response_timeout_ms : 500;
        if (d->interval_ms > 0 && d->interval_ms < rt) {
            snprintf(path, sizeof path, "devices[%zu].interval_ms", i);
            gw_cfgerr_add(errs, cfg->file, path,
                          "%d ms is shorter than response_timeout_ms %d of bus \"%s\"",
                          d->interval_ms, rt, b->id);
            bad = 1;
        }
        gw_plan *plan = NULL;
        if (gw_plan_build(prof, b->max_gap, &plan) == 0) {
            long worst = (long)rt * (long)plan->n_reads * (1L + (b->retries > 0 ? b->retries : 0));
            if (d->interval_ms > 0 && worst > d->interval_ms)
                gw_notice(AREA, "device %s: %zu reads x %d ms timeout x %d attempts exceed its "
                          "%d ms interval when the device is slow; cycles are then cut at the interval",
                          d->id, plan->n_reads, rt, 1 + (b->retries > 0 ? b->retries : 0), d->interval_ms);
            gw_plan_free(plan);
        }
        if (b->type == GW_BUS_RTU && prof->default_baud && b->baud && prof->default_baud != b->baud)
            gw_notice(AREA, "device %s: profile %s documents %d baud, bus %s runs %d", d->id,
                      prof->name, prof->default_baud, b->id, b->baud);
    }
done:
    for (size_t i = 0; i < cfg->n_profiles; i++)
        gw_profile_free(parsed[i]);
    gw_free(parsed);
    if (bad == GW_ENOMEM)
        return GW_ENOMEM;
    return bad ? GW_ECONFIG : 0;
}
