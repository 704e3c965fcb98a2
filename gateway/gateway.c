/* citygate run: wire the pipeline and run it until SIGTERM / SIGINT.
 *
 *   poller (modbus workers) ─┐
 *                            ├─► samples queue ─► engine thread ─┬─► store (page, API)
 *   ingest (Paho) ─► decode ─┘                                  ├─► InfluxDB writer (spool)
 *                                                               └─► rules engine ─► outbox ─► upstream (Paho)
 *
 * The engine thread owns the rules engine: samples, timer ticks and operator commands
 * (from MQTT and from the page) all reach it through queues. An event is committed to
 * the outbox (one fsync'd transaction with its alarm state) before the store shows it
 * and the publisher is woken; the publisher deletes it from the outbox after PUBACK. */
#include "check.h"
#include "cli.h"
#include "config.h"
#include "decode.h"
#include "error.h"
#include "http/server.h"
#include "influx/writer.h"
#include "log.h"
#include "modbus/poller.h"
#include "mqtt/ingest.h"
#include "mqtt/upstream.h"
#include "alloc.h"
#include "outbox.h"
#include "queue.h"
#include "rules/engine.h"
#include "sample.h"
#include "spool.h"
#include "store.h"
#include "timeutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <cjson/cJSON.h>

static const char run_usage[] =
    "usage: citygate run -c FILE [--log-level LEVEL]\n"
    "\n"
    "Run the gateway in the foreground until SIGTERM or SIGINT. Under systemd it\n"
    "reports readiness and feeds the watchdog (Type=notify).\n";

#define SAMPLE_QUEUE_CAPACITY 65536
#define ENGINE_BATCH 512
#define COMMAND_QUEUE_CAPACITY 64
#define COMMAND_WAIT_MS 5000
#define TICK_INTERVAL_MS 250
#define INGEST_SLOW_PUSH_MS 1000 /* a longer wait for the sample queue is logged */

/* One operator command on its way to the engine thread. Two owners (the asking thread
 * and the engine thread) share it; the last to let go frees it. */
typedef struct gw_cmd {
    pthread_mutex_t lock;
    pthread_cond_t done_cond;
    int refs, done, rc;
    char verb[32];
    char *body;
    char *reply;
} gw_cmd;

/* Items of the upstream window: what was fetched from the outbox and not yet acked. */
typedef struct fetched {
    uint64_t useq;       /* upstream sequence: 2*seq for the event, 2*seq+1 for its alarm state */
    uint64_t seq;
    char alarm_id[2 * GW_ID_MAX + 2];
    int is_alarm;
} fetched;

typedef struct gw_gateway {
    gw_config *cfg;
    int64_t started_us;
    gw_queue *samples;
    gw_queue *commands;        /* gw_cmd * */
    gw_store *store;
    gw_outbox *outbox;
    gw_engine *engine;
    gw_spool *spool;
    gw_influx_writer *influx;
    gw_poller *poller;
    gw_decoders *decoders;
    gw_ingest *ingest;
    gw_upstream *upstream;
    gw_http *http;
    pthread_t engine_thread;
    int engine_running;
    atomic_int stop;
    /* upstream window, touched only by the upstream thread (fetch and acked hooks) */
    fetched *win;
    size_t n_win, cap_win;
    /* counters */
    atomic_ullong ingest_deferred, commit_errors;
    struct ingest_batch *ingest_batch; /* "mqtt-decode" thread only */
    /* The engine's counters as of its last tick: other threads (report, metrics) read
     * this copy, never the engine, whose alarm tables only its own thread may walk. */
    pthread_mutex_t engine_stats_lock;
    gw_engine_stats engine_stats;
    atomic_int influx_fault;   /* 1 while InfluxDB answers 401/403/404 */
    atomic_int influx_fault_status; /* its HTTP status */
    /* the gateway's own alarms as last told to the engine (engine thread only) */
    int sys_influx_told;       /* -1 not yet, 0 cleared, 1 raised */
    int sys_drop_told;
    uint64_t sys_drops_seen;
    int64_t sys_drop_last_ms, sys_next_ms;
    atomic_llong engine_beat_ms; /* monotonic time of the engine loop's last turn */
    pthread_mutex_t complaint_lock; /* queue_complaint is shared by every ingest thread */
    gw_complaint queue_complaint;
} gw_gateway;

/* ---- commands ------------------------------------------------------------------------ */

static void cmd_release(gw_cmd *c)
{
    pthread_mutex_lock(&c->lock);
    int last = --c->refs == 0;
    pthread_mutex_unlock(&c->lock);
    if (!last)
        return;
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->done_cond);
    gw_free(c->body);
    gw_free(c->reply);
    gw_free(c);
}

static char *error_reply(const char *body, const char *msg)
{
    cJSON *req = cJSON_Parse(body ? body : "");
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(req, "request_id");
    cJSON *r = cJSON_CreateObject();
    if (cJSON_IsString(rid))
        cJSON_AddStringToObject(r, "request_id", rid->valuestring);
    cJSON_AddBoolToObject(r, "ok", 0);
    cJSON_AddStringToObject(r, "error", msg);
    char *txt = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    cJSON_Delete(req);
    char *out = gw_strdup(txt ? txt : "{\"ok\":false}");
    cJSON_free(txt);
    return out;
}

/* Run a command on the engine thread and wait for its reply (any thread but the
 * engine's). Returns the reply JSON (gw_free) — never NULL unless out of memory. */
static char *run_command(gw_gateway *gw, const char *verb, const char *body, size_t len, int *rc)
{
    *rc = GW_ETIMEDOUT;
    if (strlen(verb) >= sizeof ((gw_cmd *)0)->verb) {
        *rc = GW_EINVAL;
        return error_reply(body, "unknown command");
    }
    gw_cmd *c = gw_calloc(1, sizeof *c);
    if (!c)
        return NULL;
    /* The wait runs on the monotonic clock: a gateway without an RTC steps its wall
     * clock by years at the first NTP sync, which must not end (or stretch) the wait
     * of a command the engine is still applying. */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->done_cond, &ca);
    pthread_condattr_destroy(&ca);
    c->refs = 2;
    snprintf(c->verb, sizeof c->verb, "%s", verb);
    c->body = gw_strndup(body ? body : "", len);
    if (!c->body || gw_queue_push(gw->commands, &c, 0) != 0) {
        c->refs = 1;
        cmd_release(c);
        return error_reply(body, "gateway busy");
    }
    struct timespec dl;
    gw_mono_deadline(&dl, COMMAND_WAIT_MS);
    pthread_mutex_lock(&c->lock);
    while (!c->done)
        if (pthread_cond_timedwait(&c->done_cond, &c->lock, &dl) == ETIMEDOUT)
            break;
    char *reply = NULL;
    if (c->done) {
        reply = c->reply;
        c->reply = NULL;
        *rc = c->rc;
    }
    pthread_mutex_unlock(&c->lock);
    cmd_release(c);
    return reply ? reply : error_reply(body, "timed out");
}

static void engine_do_commands(gw_gateway *gw)
{
    gw_cmd *c;
    while (gw_queue_pop(gw->commands, &c, 0) == 0) {
        char *reply = NULL;
        int rc = gw_engine_command(gw->engine, c->verb, c->body, &reply);
        pthread_mutex_lock(&c->lock);
        c->reply = reply;
        c->rc = rc;
        c->done = 1;
        pthread_cond_signal(&c->done_cond);
        pthread_mutex_unlock(&c->lock);
        cmd_release(c);
    }
}

static int upstream_command(void *ctx, const char *verb, const char *payload, size_t len,
                            char **reply_json)
{
    int rc;
    *reply_json = run_command(ctx, verb, payload, len, &rc);
    /* The engine's verdict: a refused command is not answered "ok": true. */
    return rc;
}

static char *http_command(void *ctx, const char *verb, const char *body, size_t len)
{
    int rc;
    return run_command(ctx, verb, body, len, &rc);
}

/* ---- engine thread ------------------------------------------------------------------- */

/* Commit hook: the event and its alarm state in one durable transaction, then the
 * page and the publisher learn of it. */
static int engine_commit(void *ctx, const gw_event_out *ev)
{
    gw_gateway *gw = ctx;
    gw_outbox_event oe = {
        .seq = ev->seq,
        .event_id = ev->event_id,
        .device_id = ev->device_id,
        .payload = ev->json,
        .payload_len = ev->json_len,
        .created_us = ev->ts_us,
        .alarm_id = ev->alarm_id,
        .alarm_state = ev->state_json,
        .alarm_state_len = ev->state_json ? strlen(ev->state_json) : 0,
        /* …/alarm/{device}/{rule} carries the citygate.alarm/1 document (DESIGN.md §5),
         * not the internal state kept for restore. */
        .retained_given = 1,
        .retained = ev->retained_json,
        .retained_len = ev->retained_json ? strlen(ev->retained_json) : 0,
    };
    int rc = gw_outbox_commit(gw->outbox, &oe);
    if (rc) {
        atomic_fetch_add(&gw->commit_errors, 1);
        return rc;
    }
    gw_store_event(gw->store, ev->json);
    gw_store_alarm(gw->store, ev->alarm_id, ev->retained_json);
    gw_info("engine", "event #%llu %s %s", (unsigned long long)ev->seq, ev->type_name, ev->alarm_id);
    if (gw->upstream) {
        gw_upstream_notify(gw->upstream);
    } else {
        /* No upstream: the outbox keeps alarm state for restarts, not a backlog. */
        gw_outbox_ack(gw->outbox, ev->seq);
        gw_outbox_ack_alarm_pub(gw->outbox, ev->alarm_id, ev->seq);
    }
    return 0;
}

/* Device health for the page: Modbus devices as the poller sees them; MQTT devices
 * online while their last good sample is younger than three report intervals. */
static void refresh_health(gw_gateway *gw, int64_t now_us)
{
    const gw_config *cfg = gw->cfg;
    for (size_t i = 0; i < cfg->n_devices; i++) {
        const gw_device *d = &cfg->devices[i];
        gw_health h = GW_HEALTH_UNKNOWN;
        if (d->source == GW_SRC_MODBUS) {
            gw_mb_health mh;
            if (gw->poller && gw_poller_device_health(gw->poller, i, &mh) == 0) {
                switch (mh.state) {
                case GW_MB_ONLINE: h = GW_HEALTH_ONLINE; break;
                case GW_MB_DEGRADED: h = GW_HEALTH_DEGRADED; break;
                case GW_MB_OFFLINE: h = GW_HEALTH_OFFLINE; break;
                case GW_MB_PROBING: h = GW_HEALTH_PROBING; break;
                default: break;
                }
                gw_store_set_modbus_detail(gw->store, i, mh.last_exception, mh.last_error);
            }
        } else {
            int64_t last = gw_store_last_good_us(gw->store, i);
            int64_t limit = 3 * (int64_t)(d->interval_ms > 0 ? d->interval_ms : 10000) * 1000;
            if (last)
                h = now_us - last <= limit ? GW_HEALTH_ONLINE : GW_HEALTH_OFFLINE;
        }
        gw_store_set_health(gw->store, i, h);
    }
}

#define TELEMETRY_DROP_QUIET_MS 60000

/* The gateway's own alarms (DESIGN.md §6), told to the engine on its thread; the
 * writer thread only sets atomics. A restored influx-config alarm is cleared only once
 * a write has succeeded in this run, never just because no fault was seen yet. */
static void engine_system_alarms(gw_gateway *gw, int64_t now_ms, int64_t wall_us)
{
    if (!gw->influx || now_ms < gw->sys_next_ms)
        return;
    gw->sys_next_ms = now_ms + 1000;
    gw_influx_stats is;
    gw_influx_writer_stats(gw->influx, &is);
    int fault = atomic_load(&gw->influx_fault), rc = -1;
    char detail[128];
    if (fault && gw->sys_influx_told != 1) {
        snprintf(detail, sizeof detail, "InfluxDB answered HTTP %d: telemetry is kept in the spool",
                 atomic_load(&gw->influx_fault_status));
        rc = gw_engine_system_alarm(gw->engine, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_MAJOR, 1, NULL,
                                    detail, wall_us);
    } else if (!fault && gw->sys_influx_told != 0 && (gw->sys_influx_told == 1 || is.points_written)) {
        rc = gw_engine_system_alarm(gw->engine, GW_SYSALARM_INFLUX_CONFIG, GW_SEV_MAJOR, 0, NULL,
                                    "writes accepted again", wall_us);
    }
    /* GW_EAGAIN: the engine holds the condition and retries the commit on its ticks. */
    if (rc == 0 || rc == GW_EAGAIN)
        gw->sys_influx_told = fault;
    if (is.dropped_spool > gw->sys_drops_seen) {
        gw->sys_drops_seen = is.dropped_spool;
        gw->sys_drop_last_ms = now_ms;
        snprintf(detail, sizeof detail, "%llu telemetry lines dropped: spool full",
                 (unsigned long long)is.dropped_spool);
        rc = gw_engine_system_alarm(gw->engine, GW_SYSALARM_TELEMETRY_DROP, GW_SEV_WARNING, 1, NULL,
                                    detail, wall_us);
        if (rc == 0 || rc == GW_EAGAIN)
            gw->sys_drop_told = 1;
    } else if (gw->sys_drop_told != 0 && now_ms - gw->sys_drop_last_ms >= TELEMETRY_DROP_QUIET_MS) {
        /* Quiet for a while (or restored active and quiet since the start). */
        rc = gw_engine_system_alarm(gw->engine, GW_SYSALARM_TELEMETRY_DROP, GW_SEV_WARNING, 0, NULL,
                                    "no telemetry dropped for 60 s", wall_us);
        if (rc == 0 || rc == GW_EAGAIN)
            gw->sys_drop_told = 0;
    }
}

static void engine_stats_publish(gw_gateway *gw)
{
    gw_engine_stats es;
    gw_engine_stats_get(gw->engine, &es);
    pthread_mutex_lock(&gw->engine_stats_lock);
    gw->engine_stats = es;
    pthread_mutex_unlock(&gw->engine_stats_lock);
}

/* Any thread: the engine's counters as of its last tick. */
static void engine_stats_read(gw_gateway *gw, gw_engine_stats *out)
{
    pthread_mutex_lock(&gw->engine_stats_lock);
    *out = gw->engine_stats;
    pthread_mutex_unlock(&gw->engine_stats_lock);
}

static void *engine_main(void *arg)
{
    gw_gateway *gw = arg;
    gw_sample *batch = gw_malloc(ENGINE_BATCH * sizeof *batch);
    if (!batch) {
        gw_error("engine", "out of memory");
        return NULL;
    }
    int64_t next_tick = 0;
    for (;;) {
        int n = gw_queue_pop_many(gw->samples, batch, ENGINE_BATCH, TICK_INTERVAL_MS);
        if (n == GW_ECLOSED)
            break;
        if (n > 0)
            gw_store_put_many(gw->store, batch, (size_t)n);
        for (int i = 0; i < n; i++)
            gw_engine_on_sample(gw->engine, &batch[i]);
        if (n > 0 && gw->influx)
            gw_influx_writer_submit(gw->influx, batch, (size_t)n);
        /* A small batch means the producers wake us per message: a 1 ms nap lets a
         * burst gather, so a busy ingest costs one wake-up per batch, not per sample. */
        if (n > 0 && n < ENGINE_BATCH / 8)
            gw_sleep_ms(1);
        engine_do_commands(gw);
        int64_t now = gw_mono_ms();
        atomic_store(&gw->engine_beat_ms, now);
        if (now >= next_tick) {
            int64_t wall = gw_now_us();
            engine_system_alarms(gw, now, wall);
            gw_engine_tick(gw->engine, wall);
            refresh_health(gw, wall);
            engine_stats_publish(gw);
            next_tick = now + TICK_INTERVAL_MS;
        }
    }
    engine_do_commands(gw);
    gw_free(batch);
    return NULL;
}

/* ---- sources ------------------------------------------------------------------------- */

/* MQTT samples, gathered across the messages of one inbox batch so they reach the
 * engine queue under one lock and one wake-up (a wake-up per message was the ingest's
 * largest cost). Only the ingest's "mqtt-decode" thread touches it. */
#define INGEST_BATCH 256
typedef struct ingest_batch {
    size_t n;
    gw_sample s[INGEST_BATCH];
} ingest_batch;

/* Hand the gathered samples over, waiting for room as long as it takes: the wait
 * backs up into the ingest's inbox and then into Paho, never into a loss. A hand-over
 * that had to wait counts its samples as deferred (the report's drops.samples_deferred:
 * backpressure, nothing lost). Only a queue shut down at stop drops samples. */
#define INGEST_WAITED_MS 5
static void ingest_flush(void *ctx)
{
    gw_gateway *gw = ctx;
    ingest_batch *b = gw->ingest_batch;
    if (b->n == 0)
        return;
    int64_t t0 = gw_mono_ms();
    int n = gw_queue_push_many(gw->samples, b->s, b->n, -1);
    size_t pushed = n > 0 ? (size_t)n : 0;
    int64_t waited = gw_mono_ms() - t0;
    if (pushed < b->n)
        gw_warn("ingest", "stopping: %zu MQTT samples could not reach the engine", b->n - pushed);
    if (waited > INGEST_WAITED_MS)
        atomic_fetch_add(&gw->ingest_deferred, (unsigned long long)b->n);
    if (waited > INGEST_SLOW_PUSH_MS) {
        pthread_mutex_lock(&gw->complaint_lock);
        gw_complain(&gw->queue_complaint, 0, 5000, 300000, GW_LOG_WARN, "ingest",
                    "sample queue full: MQTT messages wait for the engine");
        pthread_mutex_unlock(&gw->complaint_lock);
    }
    b->n = 0;
}

static int batch_sample(void *ctx, const gw_sample *s)
{
    gw_gateway *gw = ctx;
    ingest_batch *b = gw->ingest_batch;
    if (b->n == INGEST_BATCH)
        ingest_flush(gw);
    b->s[b->n++] = *s;
    return 0;
}

/* Ingest hook ("mqtt-decode" thread): decode, gather the samples. */
static int ingest_message(void *ctx, size_t device_idx, const char *decoder, const char *topic,
                          const void *payload, size_t len, const cJSON *doc, int64_t recv_ts_us)
{
    gw_gateway *gw = ctx;
    (void)topic;
    gw_decode_parsed(gw->decoders, device_idx, decoder, payload, len, doc, recv_ts_us,
                     batch_sample, gw);
    return 0; /* a decode error is counted by the decoder; the message is consumed */
}

/* ---- upstream hooks (upstream thread) ------------------------------------------------ */

typedef struct fetch_ctx {
    gw_gateway *gw;
    uint64_t after;
    uint64_t upto;       /* last seq committed before the events were read */
    size_t max;
    fetched *items;
    gw_upstream_msg *msgs;
    char **bufs;
    size_t n;
} fetch_ctx;

static int add_fetched(fetch_ctx *f, uint64_t useq, uint64_t seq, const char *alarm_id,
                       const char *topic_fmt_arg, const void *payload, size_t len, int retained)
{
    if (useq <= f->after || seq > f->upto || f->n >= f->max * 2)
        return 0;
    char *topic = gw_malloc(strlen(topic_fmt_arg) + 8);
    char *copy = gw_malloc(len + 1);
    if (!topic || !copy) {
        gw_free(topic);
        gw_free(copy);
        return 1;
    }
    sprintf(topic, "%s/%s", retained ? "alarm" : "event", topic_fmt_arg);
    if (len)
        memcpy(copy, payload, len);
    copy[len] = '\0';
    fetched *it = &f->items[f->n];
    memset(it, 0, sizeof *it);
    it->useq = useq;
    it->seq = seq;
    it->is_alarm = retained;
    if (alarm_id)
        snprintf(it->alarm_id, sizeof it->alarm_id, "%s", alarm_id);
    f->msgs[f->n] = (gw_upstream_msg){useq, topic, copy, len, retained};
    f->bufs[2 * f->n] = topic;
    f->bufs[2 * f->n + 1] = copy;
    f->n++;
    return 0;
}

static int fetch_event_cb(void *ctx, const gw_outbox_event *ev)
{
    fetch_ctx *f = ctx;
    return add_fetched(f, ev->seq * 2, ev->seq, NULL, ev->device_id, ev->payload,
                       ev->payload_len, 0);
}

static int fetch_pub_cb(void *ctx, const gw_outbox_alarm_pub *p)
{
    fetch_ctx *f = ctx;
    return add_fetched(f, p->seq * 2 + 1, p->seq, p->alarm_id, p->alarm_id, p->state,
                       p->state ? p->state_len : 0, 1);
}

static int cmp_msg(const void *a, const void *b)
{
    uint64_t x = ((const gw_upstream_msg *)a)->seq, y = ((const gw_upstream_msg *)b)->seq;
    return x < y ? -1 : x > y;
}

/* Events and retained alarm states share one upstream sequence: event seq n is 2n and
 * the alarm state it queued is 2n+1, so both go out in commit order. The two outbox
 * reads are not one snapshot: an event committed between them would show only its
 * alarm state, which would go out first and carry the publisher's cursor past the
 * event for good. So both reads stop at the last seq committed before the first. */
static int upstream_fetch(void *ctx, uint64_t after, size_t max, gw_upstream_emit_fn emit,
                          void *ectx)
{
    gw_gateway *gw = ctx;
    fetch_ctx f = {.gw = gw, .after = after, .upto = gw_outbox_last_seq(gw->outbox), .max = max};
    f.items = gw_calloc(max * 2, sizeof *f.items);
    f.msgs = gw_calloc(max * 2, sizeof *f.msgs);
    f.bufs = gw_calloc(max * 4, sizeof *f.bufs);
    int rc = GW_ENOMEM;
    if (!f.items || !f.msgs || !f.bufs)
        goto out;
    rc = gw_outbox_fetch(gw->outbox, after / 2, max, fetch_event_cb, &f);
    if (rc >= 0)
        /* Pending states come oldest first; those already in the window (at most
         * n_win) are skipped, so max more beyond them are all a fetch can use. */
        rc = gw_outbox_fetch_alarm_pubs(gw->outbox, max + gw->n_win, fetch_pub_cb, &f);
    if (rc < 0)
        goto out;
    /* Sort by upstream seq (items and msgs in step) and keep the first max. */
    for (size_t i = 0; i < f.n; i++)
        f.msgs[i].retained = (int)i; /* remember the item index through the sort */
    qsort(f.msgs, f.n, sizeof *f.msgs, cmp_msg);
    size_t n = f.n < max ? f.n : max;
    for (size_t i = 0; i < n; i++) {
        fetched *it = &f.items[f.msgs[i].retained];
        f.msgs[i].retained = it->is_alarm;
        if (gw->n_win == gw->cap_win) {
            size_t cap = gw->cap_win ? gw->cap_win * 2 : 64;
            fetched *w = gw_realloc(gw->win, cap * sizeof *w);
            if (!w) {
                n = i;
                break;
            }
            gw->win = w;
            gw->cap_win = cap;
        }
        gw->win[gw->n_win++] = *it;
        emit(ectx, &f.msgs[i]);
    }
    rc = (int)n;
out:
    for (size_t i = 0; f.bufs && i < 2 * f.n; i++)
        gw_free(f.bufs[i]);
    gw_free(f.items);
    gw_free(f.msgs);
    gw_free(f.bufs);
    return rc;
}

static void upstream_acked(void *ctx, uint64_t useq)
{
    gw_gateway *gw = ctx;
    size_t k = 0;
    while (k < gw->n_win && gw->win[k].useq <= useq) {
        const fetched *it = &gw->win[k];
        if (it->is_alarm)
            gw_outbox_ack_alarm_pub(gw->outbox, it->alarm_id, it->seq);
        else
            gw_outbox_ack(gw->outbox, it->seq);
        k++;
    }
    memmove(gw->win, gw->win + k, (gw->n_win - k) * sizeof *gw->win);
    gw->n_win -= k;
}

/* ---- report and metrics -------------------------------------------------------------- */

static char *upstream_report(void *ctx)
{
    gw_gateway *gw = ctx;
    gw_store_counts sc;
    gw_store_counts_get(gw->store, &sc);
    gw_engine_stats es;
    engine_stats_read(gw, &es);
    gw_queue_stats qs;
    gw_queue_stats_get(gw->samples, &qs);
    gw_outbox_stats os;
    gw_outbox_stats_get(gw->outbox, &os);

    cJSON *r = cJSON_CreateObject();
    char ts[40];
    gw_format_rfc3339(ts, sizeof ts, gw_now_us(), gw->cfg->gateway.utc_offset_min);
    cJSON_AddStringToObject(r, "schema", "citygate.report/1");
    cJSON_AddStringToObject(r, "gateway", gw->cfg->gateway.id);
    cJSON_AddStringToObject(r, "source", "system-monitoring");
    cJSON_AddStringToObject(r, "ts", ts);
    cJSON_AddNumberToObject(r, "uptime_s", (double)(gw_now_us() - gw->started_us) / 1e6);
    cJSON_AddStringToObject(r, "version", CITYGATE_VERSION);
    cJSON *d = cJSON_AddObjectToObject(r, "devices");
    cJSON_AddNumberToObject(d, "total", (double)sc.devices);
    cJSON_AddNumberToObject(d, "online", (double)sc.online);
    cJSON_AddNumberToObject(d, "degraded", (double)sc.degraded);
    cJSON_AddNumberToObject(d, "offline", (double)sc.offline);
    cJSON_AddNumberToObject(d, "unknown", (double)sc.unknown);
    cJSON *a = cJSON_AddObjectToObject(r, "alarms");
    cJSON_AddNumberToObject(a, "active", (double)es.active);
    cJSON_AddNumberToObject(a, "suppressed", (double)es.suppressed);
    cJSON *bs = cJSON_AddObjectToObject(a, "by_severity");
    for (int s = 1; s < GW_SEV__COUNT; s++)
        cJSON_AddNumberToObject(bs, gw_rule_severity_name((gw_severity)s),
                                (double)es.active_by_severity[s]);
    cJSON *q = cJSON_AddObjectToObject(r, "queues");
    cJSON_AddNumberToObject(q, "samples", (double)qs.depth);
    cJSON_AddNumberToObject(q, "outbox", (double)os.depth);
    /* Every member is always present (0 when the part is off): a case system's
     * dashboard must not have to tell "none" from "not reported". */
    gw_influx_stats is;
    memset(&is, 0, sizeof is);
    if (gw->influx)
        gw_influx_writer_stats(gw->influx, &is);
    cJSON_AddNumberToObject(q, "spool_bytes", (double)is.spool_bytes);
    cJSON_AddStringToObject(r, "influxdb", gw->influx ? gw_influx_state_name(is.state) : "off");
    cJSON *dr = cJSON_AddObjectToObject(r, "drops");
    cJSON_AddNumberToObject(dr, "samples_queue", (double)qs.dropped);
    cJSON_AddNumberToObject(dr, "samples_deferred", (double)atomic_load(&gw->ingest_deferred));
    cJSON_AddNumberToObject(dr, "telemetry_spool", (double)is.dropped_spool);
    cJSON_AddNumberToObject(dr, "telemetry_rejected", (double)is.dropped_rejected);
    gw_upstream_stats us;
    memset(&us, 0, sizeof us);
    if (gw->upstream) { /* set before the publisher's thread calls this hook */
        gw_upstream_stats_get(gw->upstream, &us);
        cJSON *u = cJSON_AddObjectToObject(r, "upstream");
        cJSON_AddNumberToObject(u, "published", (double)us.published);
        cJSON_AddNumberToObject(u, "republished", (double)us.republished);
        cJSON_AddNumberToObject(u, "acked", (double)us.acked);
        cJSON_AddNumberToObject(u, "inflight", (double)us.inflight);
        cJSON_AddNumberToObject(u, "connection_losses", (double)us.connection_losses);
        cJSON_AddNumberToObject(u, "commands", (double)us.commands);
        cJSON_AddNumberToObject(u, "commands_malformed", (double)us.commands_malformed);
    }
    cJSON *e = cJSON_AddObjectToObject(r, "errors");
    cJSON_AddNumberToObject(e, "commit", (double)atomic_load(&gw->commit_errors));
    cJSON_AddNumberToObject(e, "events_pending", (double)es.pending);
    cJSON_AddNumberToObject(e, "commands_rejected", (double)es.commands_rejected);
    cJSON_AddNumberToObject(e, "publish_failures", (double)us.failed);
    if (gw->poller) {
        gw_poller_stats ps;
        gw_poller_stats_get(gw->poller, &ps);
        cJSON_AddNumberToObject(e, "modbus_timeouts", (double)ps.timeouts);
        cJSON_AddNumberToObject(e, "modbus_exceptions", (double)ps.exceptions);
        cJSON_AddNumberToObject(e, "modbus_crc", (double)ps.crc_errors);
    }
    if (gw->decoders)
        cJSON_AddNumberToObject(e, "bad_payloads", (double)gw_decode_bad_total(gw->decoders));
    char *txt = cJSON_PrintUnformatted(r);
    cJSON_Delete(r);
    char *out = txt ? gw_strdup(txt) : NULL; /* NULL: skip this period */
    cJSON_free(txt);
    return out;
}

typedef struct mbuf { char *p; size_t len, cap; int failed; } mbuf;

static void mprintf(mbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void mprintf(mbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = 1;
            return;
        }
        if (b->p && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = (b->cap ? b->cap : 4096) * 2 + (size_t)n;
        char *p = gw_realloc(b->p, cap);
        if (!p) {
            b->failed = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
}

/* One metric with HELP and TYPE, and a value. */
static void metric(mbuf *b, const char *name, const char *type, const char *help, double v)
{
    mprintf(b, "# HELP citygate_%s %s\n# TYPE citygate_%s %s\ncitygate_%s %.15g\n", name, help,
            name, type, name, v);
}

static char *http_metrics(void *ctx)
{
    gw_gateway *gw = ctx;
    mbuf b = {0};
    metric(&b, "uptime_seconds", "gauge", "Seconds since the gateway started.",
           (double)(gw_now_us() - gw->started_us) / 1e6);

    gw_store_counts sc;
    gw_store_counts_get(gw->store, &sc);
    mprintf(&b, "# HELP citygate_devices Devices by health.\n# TYPE citygate_devices gauge\n");
    mprintf(&b, "citygate_devices{health=\"online\"} %zu\ncitygate_devices{health=\"degraded\"} %zu\n"
                "citygate_devices{health=\"offline\"} %zu\ncitygate_devices{health=\"unknown\"} %zu\n",
            sc.online, sc.degraded, sc.offline, sc.unknown);

    gw_queue_stats qs;
    gw_queue_stats_get(gw->samples, &qs);
    metric(&b, "sample_queue_depth", "gauge", "Samples waiting for the engine.", (double)qs.depth);
    metric(&b, "sample_queue_dropped_total", "counter", "Samples dropped at the engine queue.",
           (double)qs.dropped);

    gw_engine_stats es;
    engine_stats_read(gw, &es);
    metric(&b, "engine_samples_total", "counter", "Samples evaluated by the rules engine.",
           (double)es.samples);
    metric(&b, "engine_evaluations_total", "counter", "Rule evaluations.", (double)es.evaluations);
    metric(&b, "engine_rules", "gauge", "Compiled rule instances.", (double)es.rules);
    metric(&b, "alarms_active", "gauge", "Alarms not normal.", (double)es.active);
    metric(&b, "alarms_suppressed", "gauge", "Alarms shelved or out of service.",
           (double)es.suppressed);
    mprintf(&b, "# HELP citygate_events_total Events committed, by type.\n"
                "# TYPE citygate_events_total counter\n");
    for (int t = 0; t < GW_EV__COUNT; t++)
        mprintf(&b, "citygate_events_total{type=\"%s\"} %llu\n",
                gw_event_type_name((gw_event_type)t), (unsigned long long)es.events[t]);
    metric(&b, "engine_commit_failures_total", "counter", "Event commits that failed (retried).",
           (double)es.commit_failures);
    metric(&b, "commands_total", "counter", "Operator commands handled.", (double)es.commands);

    gw_outbox_stats os;
    gw_outbox_stats_get(gw->outbox, &os);
    metric(&b, "outbox_depth", "gauge", "Events waiting for the broker's PUBACK.", (double)os.depth);
    metric(&b, "outbox_bytes", "gauge", "Bytes of events waiting.", (double)os.bytes);
    metric(&b, "outbox_commit_seconds_max", "gauge", "Longest event commit (fsync included).",
           (double)os.commit_us_max / 1e6);
    metric(&b, "outbox_last_seq", "gauge", "Highest committed event seq.", (double)os.last_seq);

    if (gw->poller) {
        gw_poller_stats ps;
        gw_poller_stats_get(gw->poller, &ps);
        metric(&b, "modbus_requests_total", "counter", "Modbus requests sent.", (double)ps.requests);
        metric(&b, "modbus_responses_total", "counter", "Good Modbus answers.", (double)ps.responses);
        metric(&b, "modbus_registers_total", "counter", "Registers and bits read.", (double)ps.registers);
        mprintf(&b, "# HELP citygate_modbus_errors_total Modbus errors by kind.\n"
                    "# TYPE citygate_modbus_errors_total counter\n"
                    "citygate_modbus_errors_total{kind=\"timeout\"} %llu\n"
                    "citygate_modbus_errors_total{kind=\"crc\"} %llu\n"
                    "citygate_modbus_errors_total{kind=\"bad_frame\"} %llu\n"
                    "citygate_modbus_errors_total{kind=\"late_answer\"} %llu\n"
                    "citygate_modbus_errors_total{kind=\"exception\"} %llu\n"
                    "citygate_modbus_errors_total{kind=\"connect\"} %llu\n",
                (unsigned long long)ps.timeouts, (unsigned long long)ps.crc_errors,
                (unsigned long long)ps.bad_frames, (unsigned long long)ps.late_answers,
                (unsigned long long)ps.exceptions, (unsigned long long)ps.connect_failures);
        mprintf(&b, "# HELP citygate_modbus_exceptions_total Modbus exception answers by code.\n"
                    "# TYPE citygate_modbus_exceptions_total counter\n");
        for (int code = 1; code < 12; code++)
            mprintf(&b, "citygate_modbus_exceptions_total{code=\"%d\"} %llu\n", code,
                    (unsigned long long)ps.exception_code[code]);
        metric(&b, "modbus_cycles_late_total", "counter", "Poll cycles that started late.",
               (double)ps.cycles_late);
        metric(&b, "modbus_read_splits_total", "counter", "Merged reads split after exceptions.",
               (double)ps.splits);
        metric(&b, "modbus_open_connections", "gauge", "Open Modbus connections.",
               (double)ps.open_connections);
    }
    if (gw->ingest) {
        mprintf(&b, "# HELP citygate_mqtt_ingest_messages_total MQTT uplinks by outcome.\n"
                    "# TYPE citygate_mqtt_ingest_messages_total counter\n");
        for (size_t i = 0; i < gw_ingest_n_sources(gw->ingest); i++) {
            gw_ingest_stats is;
            if (gw_ingest_stats_get(gw->ingest, i, &is))
                continue;
            const char *id = gw->cfg->mqtt_sources[i].id;
            mprintf(&b,
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"matched\"} %llu\n"
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"unknown_device\"} %llu\n"
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"oversize\"} %llu\n"
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"deferred\"} %llu\n",
                    id, (unsigned long long)is.matched, id, (unsigned long long)is.unknown_device,
                    id, (unsigned long long)is.oversize, id, (unsigned long long)is.deferred);
            mprintf(&b,
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"bad_json\"} %llu\n"
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"no_key\"} %llu\n"
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"no_match\"} %llu\n"
                    "citygate_mqtt_ingest_messages_total{source=\"%s\",outcome=\"rejected\"} %llu\n",
                    id, (unsigned long long)is.bad_json, id, (unsigned long long)is.no_key,
                    id, (unsigned long long)is.no_match, id, (unsigned long long)is.rejected);
        }
        mprintf(&b, "# HELP citygate_mqtt_ingest_connected 1 while the source's broker connection is up.\n"
                    "# TYPE citygate_mqtt_ingest_connected gauge\n");
        for (size_t i = 0; i < gw_ingest_n_sources(gw->ingest); i++) {
            gw_ingest_stats is;
            if (gw_ingest_stats_get(gw->ingest, i, &is) == 0)
                mprintf(&b, "citygate_mqtt_ingest_connected{source=\"%s\"} %d\n",
                        gw->cfg->mqtt_sources[i].id, is.connected);
        }
        metric(&b, "decode_bad_payloads_total", "counter", "Payloads that failed to decode.",
               (double)gw_decode_bad_total(gw->decoders));
        /* By reason (every reason, summed over devices), and by device and reason (only
         * the devices that sent a bad payload). */
        mprintf(&b, "# HELP citygate_decode_bad_payloads_by_reason_total Payloads that failed to decode, by reason.\n"
                    "# TYPE citygate_decode_bad_payloads_by_reason_total counter\n");
        for (int r = 0; strcmp(gw_decode_reason_name(r), "unknown") != 0; r++) {
            uint64_t n = 0;
            for (size_t d = 0; d < gw->cfg->n_devices; d++)
                n += gw_decode_bad_count(gw->decoders, d, r);
            mprintf(&b, "citygate_decode_bad_payloads_by_reason_total{reason=\"%s\"} %llu\n",
                    gw_decode_reason_name(r), (unsigned long long)n);
        }
        mprintf(&b, "# HELP citygate_decode_bad_payloads_device_total Payloads that failed to decode, by device and reason (non-zero only).\n"
                    "# TYPE citygate_decode_bad_payloads_device_total counter\n");
        for (size_t d = 0; d < gw->cfg->n_devices; d++)
            for (int r = 0; strcmp(gw_decode_reason_name(r), "unknown") != 0; r++) {
                uint64_t n = gw_decode_bad_count(gw->decoders, d, r);
                if (n)
                    mprintf(&b, "citygate_decode_bad_payloads_device_total{device=\"%s\",reason=\"%s\"} %llu\n",
                            gw->cfg->devices[d].id, gw_decode_reason_name(r), (unsigned long long)n);
            }
    }
    if (gw->upstream) {
        gw_upstream_stats us;
        gw_upstream_stats_get(gw->upstream, &us);
        metric(&b, "upstream_connected", "gauge", "1 while connected to the upstream broker.",
               (double)us.connected);
        metric(&b, "upstream_published_total", "counter", "Messages published upstream.",
               (double)us.published);
        metric(&b, "upstream_republished_total", "counter", "Messages published again after a failure.",
               (double)us.republished);
        metric(&b, "upstream_acked_total", "counter", "Messages acknowledged by the broker.",
               (double)us.acked);
        metric(&b, "upstream_inflight", "gauge", "Messages waiting for PUBACK.", (double)us.inflight);
        metric(&b, "upstream_connection_losses_total", "counter", "Upstream connections lost.",
               (double)us.connection_losses);
    }
    if (gw->influx) {
        gw_influx_stats is;
        gw_influx_writer_stats(gw->influx, &is);
        mprintf(&b, "# HELP citygate_influx_state InfluxDB writer state (1 = current).\n"
                    "# TYPE citygate_influx_state gauge\n");
        for (int s = GW_INFLUX_IDLE; s <= GW_INFLUX_CONFIG_FAULT; s++)
            mprintf(&b, "citygate_influx_state{state=\"%s\"} %d\n",
                    gw_influx_state_name((gw_influx_state)s), is.state == (gw_influx_state)s);
        metric(&b, "influx_points_written_total", "counter", "Points InfluxDB accepted.",
               (double)is.points_written);
        metric(&b, "influx_retries_total", "counter", "InfluxDB write retries.", (double)is.retries);
        metric(&b, "influx_spool_bytes", "gauge", "Telemetry bytes spooled on disk.",
               (double)is.spool_bytes);
        mprintf(&b, "# HELP citygate_influx_dropped_total Telemetry dropped, by reason.\n"
                    "# TYPE citygate_influx_dropped_total counter\n"
                    "citygate_influx_dropped_total{reason=\"queue\"} %llu\n"
                    "citygate_influx_dropped_total{reason=\"spool_full\"} %llu\n"
                    "citygate_influx_dropped_total{reason=\"rejected\"} %llu\n"
                    "citygate_influx_dropped_total{reason=\"nonfinite\"} %llu\n",
                (unsigned long long)is.dropped_queue, (unsigned long long)is.dropped_spool,
                (unsigned long long)is.dropped_rejected, (unsigned long long)is.dropped_nonfinite);
    }
    if (gw->http) {
        gw_http_stats hs;
        gw_http_stats_get(gw->http, &hs);
        metric(&b, "http_requests_total", "counter", "HTTP requests served.", (double)hs.requests);
    }
    if (b.failed) {
        gw_free(b.p);
        return NULL;
    }
    return b.p;
}

static const char *http_unhealthy(void *ctx)
{
    gw_gateway *gw = ctx;
    if (atomic_load(&gw->stop))
        return "stopping\n";
    if (atomic_load(&gw->influx_fault))
        return "influxdb configuration fault (see logs)\n";
    return NULL;
}

static void influx_fault(void *ctx, int fault, int http_status, const char *msg)
{
    gw_gateway *gw = ctx;
    atomic_store(&gw->influx_fault_status, http_status);
    atomic_store(&gw->influx_fault, fault);
    if (fault)
        gw_error("influx", "configuration fault (HTTP %d): %s; telemetry is kept in the spool",
                 http_status, msg ? msg : "");
    else
        gw_notice("influx", "writes accepted again");
}

/* ---- start and stop ------------------------------------------------------------------ */

static void register_secrets(const gw_config *cfg)
{
    gw_log_add_secret(cfg->upstream.conn.password);
    gw_log_add_secret(cfg->influx.password);
    gw_log_add_secret(cfg->influx.token);
    gw_log_add_secret(cfg->http.token);
    for (size_t i = 0; i < cfg->n_mqtt_sources; i++)
        gw_log_add_secret(cfg->mqtt_sources[i].conn.password);
}

static int make_data_dir(const char *dir)
{
    if (mkdir(dir, 0750) == 0 || errno == EEXIST)
        return 0;
    gw_error("gateway", "cannot create data dir %s: %s", dir, strerror(errno));
    return GW_EIO;
}

static int restore_alarm(void *ctx, const char *alarm_id, const char *state, size_t len)
{
    gw_gateway *gw = ctx;
    (void)len;
    int rc = gw_engine_restore_alarm(gw->engine, alarm_id, state);
    if (rc == GW_ENOTFOUND)
        gw_notice("engine", "alarm %s no longer configured: its saved state is ignored", alarm_id);
    else if (rc)
        gw_warn("engine", "alarm %s: saved state unreadable, starting normal", alarm_id);
    return 0;
}

static void restore_store_alarms(gw_gateway *gw)
{
    char *js = NULL;
    if (gw_engine_alarms_json(gw->engine, &js) != 0 || !js)
        return;
    cJSON *arr = cJSON_Parse(js);
    const cJSON *a;
    cJSON_ArrayForEach(a, arr) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        if (!cJSON_IsString(id)) {
            const cJSON *al = cJSON_GetObjectItemCaseSensitive(a, "alarm");
            id = cJSON_GetObjectItemCaseSensitive(al, "id");
        }
        char *txt = cJSON_PrintUnformatted(a);
        if (cJSON_IsString(id) && txt)
            gw_store_alarm(gw->store, id->valuestring, txt);
        cJSON_free(txt);
    }
    cJSON_Delete(arr);
    gw_free(js);
}

static int gateway_start(gw_gateway *gw)
{
    const gw_config *cfg = gw->cfg;
    gw->started_us = gw_now_us();
    pthread_mutex_init(&gw->engine_stats_lock, NULL);
    pthread_mutex_init(&gw->complaint_lock, NULL);
    gw->sys_influx_told = gw->sys_drop_told = -1;
    gw->sys_drop_last_ms = gw_mono_ms();
    int rc = make_data_dir(cfg->gateway.data_dir);
    if (rc)
        return rc;
    if ((rc = gw_queue_new(SAMPLE_QUEUE_CAPACITY, sizeof(gw_sample), GW_QUEUE_BLOCK, &gw->samples)) ||
        (rc = gw_queue_new(COMMAND_QUEUE_CAPACITY, sizeof(gw_cmd *), GW_QUEUE_DROP_NEWEST,
                           &gw->commands)) ||
        (rc = gw_store_new(cfg, &gw->store)))
        return rc;
    if ((rc = gw_outbox_open(cfg->gateway.data_dir, &gw->outbox))) {
        gw_error("gateway", "cannot open the outbox in %s: %s", cfg->gateway.data_dir, gw_strerror(rc));
        return rc;
    }
    gw_engine_hooks eh = {.commit = engine_commit};
    if ((rc = gw_engine_new(cfg, &eh, gw, &gw->engine)))
        return rc;
    gw_engine_restore(gw->engine, gw_outbox_last_seq(gw->outbox));
    gw_outbox_foreach_alarm(gw->outbox, restore_alarm, gw);
    restore_store_alarms(gw);
    engine_stats_publish(gw); /* before the engine thread: no other thread yet */

    /* Every object other threads look at is built before the first thread starts, so
     * no thread ever sees a pointer to something still under construction; the
     * sources are started last, once everything downstream runs. */
    if (cfg->n_mqtt_sources) {
        gw_cfgerr errs = {0};
        rc = gw_decoders_create(cfg, NULL, &errs, &gw->decoders);
        for (size_t i = 0; rc && i < errs.n; i++)
            gw_error("decode", "%s", errs.lines[i]);
        gw_cfgerr_free(&errs);
        if (rc)
            return rc;
        gw->ingest_batch = gw_calloc(1, sizeof *gw->ingest_batch);
        if (!gw->ingest_batch)
            return GW_ENOMEM;
        gw_ingest_hooks ih = {.ctx = gw, .on_message = ingest_message, .flush = ingest_flush};
        if ((rc = gw_ingest_new(cfg, &ih, &gw->ingest)))
            return rc;
    }
    for (size_t i = 0; i < cfg->n_devices; i++) {
        if (cfg->devices[i].source == GW_SRC_MODBUS && cfg->devices[i].enabled) {
            if ((rc = gw_poller_new(cfg, gw->samples, &gw->poller)))
                return rc;
            break;
        }
    }

    if (cfg->influx.enabled) {
        if ((rc = gw_spool_open(cfg->gateway.data_dir, cfg->influx.spool_max_bytes, &gw->spool)) ||
            (rc = gw_influx_writer_new(cfg, gw->spool, &gw->influx)))
            return rc;
        gw_influx_writer_on_fault(gw->influx, influx_fault, gw);
        if ((rc = gw_influx_writer_start(gw->influx)))
            return rc;
    }
    if (cfg->upstream.enabled) {
        gw_upstream_hooks uh = {.ctx = gw, .fetch = upstream_fetch, .acked = upstream_acked,
                                .command = upstream_command, .report = upstream_report};
        if ((rc = gw_upstream_new(&cfg->upstream, cfg->gateway.id, &uh, &gw->upstream)) ||
            (rc = gw_upstream_start(gw->upstream)))
            return rc;
    }
    if (pthread_create(&gw->engine_thread, NULL, engine_main, gw) != 0)
        return GW_EIO;
    pthread_setname_np(gw->engine_thread, "engine");
    gw->engine_running = 1;
    atomic_store(&gw->engine_beat_ms, gw_mono_ms());

    if (cfg->http.enabled) {
        gw_http_hooks hh = {.metrics = http_metrics, .command = http_command,
                            .unhealthy = http_unhealthy, .ctx = gw};
        if ((rc = gw_http_start(cfg, gw->store, &hh, &gw->http)))
            return rc;
    }
    if (gw->ingest && (rc = gw_ingest_start(gw->ingest)))
        return rc;
    if (gw->poller && (rc = gw_poller_start(gw->poller)))
        return rc;
    return 0;
}

/* Stop in data-flow order: sources, then the engine (drains the queue), then outputs. */
static void gateway_stop(gw_gateway *gw)
{
    atomic_store(&gw->stop, 1);
    if (gw->poller)
        gw_poller_stop(gw->poller);
    if (gw->ingest)
        gw_ingest_stop(gw->ingest);
    if (gw->samples)
        gw_queue_shutdown(gw->samples);
    if (gw->engine_running)
        pthread_join(gw->engine_thread, NULL);
    /* No engine any more: commands from the page or the broker are refused at once
     * instead of waiting out their reply timeout. */
    if (gw->commands)
        gw_queue_shutdown(gw->commands);
    if (gw->http)
        gw_http_stop(gw->http);
    if (gw->upstream)
        gw_upstream_stop(gw->upstream, 2000);
    if (gw->influx)
        gw_influx_writer_stop(gw->influx);

    gw_upstream_free(gw->upstream);
    gw_ingest_free(gw->ingest);
    gw_decoders_free(gw->decoders);
    gw_poller_free(gw->poller);
    if (gw->influx)
        gw_influx_writer_free(gw->influx);
    if (gw->spool)
        gw_spool_close(gw->spool);
    gw_engine_free(gw->engine);
    if (gw->outbox)
        gw_outbox_close(gw->outbox);
    gw_store_free(gw->store);
    if (gw->commands) {
        gw_queue_shutdown(gw->commands);
        gw_cmd *c;
        while (gw_queue_pop(gw->commands, &c, 0) == 0)
            cmd_release(c);
        gw_queue_free(gw->commands);
    }
    gw_queue_free(gw->samples);
    gw_free(gw->win);
    gw_free(gw->ingest_batch);
    pthread_mutex_destroy(&gw->engine_stats_lock);
    pthread_mutex_destroy(&gw->complaint_lock);
}

#define ENGINE_STALL_MS 10000

/* Wait for SIGTERM / SIGINT, feeding the systemd watchdog meanwhile — only while the
 * engine thread keeps turning, so a stuck engine gets the service restarted. */
static int wait_for_stop(gw_gateway *gw, const sigset_t *set)
{
    uint64_t wd_usec = 0;
    int watchdog = sd_watchdog_enabled(0, &wd_usec) > 0;
    for (;;) {
        struct timespec ts = {.tv_sec = 1, .tv_nsec = 0};
        if (watchdog && wd_usec / 2 < 1000000) {
            ts.tv_sec = 0;
            ts.tv_nsec = (long)(wd_usec / 2) * 1000;
        }
        int sig = sigtimedwait(set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        int64_t beat = atomic_load(&gw->engine_beat_ms);
        if (watchdog && gw_mono_ms() - beat < ENGINE_STALL_MS)
            sd_notify(0, "WATCHDOG=1");
        else if (watchdog)
            gw_error("gateway", "engine thread stalled for %lld ms: not feeding the watchdog",
                     (long long)(gw_mono_ms() - beat));
    }
}

int gw_cmd_run(int argc, char **argv)
{
    if (gw_cli_wants_help(argc, argv)) {
        fputs(run_usage, stdout);
        return GW_EXIT_OK;
    }
    const char *file = gw_cli_config_arg(argc, argv, run_usage);
    if (!file)
        return GW_EXIT_CONFIG;

    gw_cfgerr errs = {0};
    gw_gateway gw = {0};
    if (gw_config_load_checked(file, &errs, &gw.cfg) != 0) {
        gw_cfgerr_print(&errs, 2);
        gw_cfgerr_free(&errs);
        return GW_EXIT_CONFIG;
    }
    gw_cfgerr_free(&errs);
    gw_log_set_level(gw.cfg->gateway.log_level);
    for (int i = 1; i + 1 < argc; i++) {
        gw_log_level lvl;
        if (strcmp(argv[i], "--log-level") == 0 && gw_log_parse_level(argv[i + 1], &lvl) == 0)
            gw_log_set_level(lvl);
    }
    register_secrets(gw.cfg);

    /* Signals are taken synchronously by the main thread; every thread started below
     * inherits the blocked mask, so no worker is interrupted by them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    int exit_code = GW_EXIT_OK;
    int rc = gateway_start(&gw);
    if (rc) {
        gw_error("gateway", "start failed: %s", gw_strerror(rc));
        exit_code = GW_EXIT_RUNTIME;
        goto stop;
    }
    gw_notice("gateway", "citygate %s started: gateway %s, %zu devices", CITYGATE_VERSION,
              gw.cfg->gateway.id, gw.cfg->n_devices);
    sd_notify(0, "READY=1\nSTATUS=running");

    int sig = wait_for_stop(&gw, &set);
    gw_notice("gateway", "%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");

stop:
    gateway_stop(&gw);
    gw_config_free(gw.cfg);
    gw_notice("gateway", "stopped");
    return exit_code;
}
