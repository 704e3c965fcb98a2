/* The upstream MQTT publisher (see upstream.h for the contract).
 *
 * State lives in one struct under one mutex. Paho's threads only touch it inside its
 * callbacks (connect result, publish result, connection lost, message arrived) and
 * never call a hook; the upstream thread does everything else and never holds the
 * mutex while calling Paho or a hook (Paho may be inside a callback waiting for our
 * mutex while holding its own).
 *
 * The window is a ring of slots in seq order. A slot is PENDING (to publish), SENT
 * (an attempt is outstanding) or ACKED (PUBACK seen, waiting for the slots before it).
 * Every attempt gets a unique id and a heap ticket passed to Paho as the callback
 * context; the callback applies its result only if the slot's current attempt is
 * still that id, so late callbacks of an abandoned attempt (connection lost, then
 * onFailure -11 when Paho cleans the session at the next CONNACK) change nothing. */
#include "mqtt/upstream.h"

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "mqtt/client.h"
#include "mqtt/topic.h"
#include "timeutil.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define AREA "upstream"
#define CMD_QUEUE_MAX 16
#define CMD_PAYLOAD_MAX 65536
#define TOPIC_SUFFIX_MAX 512
#define RECONNECT_MIN_MS 500
#define RECONNECT_MAX_MS 30000
#define POLL_MS 1000          /* fetch from the outbox at least this often */
#define CONTROL_RESERVE 4     /* Paho in-flight room for status, report, replies */
#define ACK_BATCH 64
#define PAYLOAD_MAX (16u * 1024 * 1024)

typedef enum { SLOT_PENDING = 1, SLOT_SENT, SLOT_ACKED } slot_state;

typedef struct slot {
    uint64_t seq;
    uint64_t attempt;     /* current attempt id; 0 = never sent */
    slot_state state;
    int retained;
    int sent_before;
    char *topic;          /* full topic */
    void *payload;
    size_t len;
} slot;

typedef struct ticket {
    gw_upstream *up;
    uint64_t attempt;
    struct ticket *prev, *next;
} ticket;

typedef struct command {
    char verb[72];
    char *payload;        /* NUL-terminated copy */
    size_t len;
} command;

typedef enum { CONN_DOWN = 0, CONN_CONNECTING, CONN_UP } conn_state;

struct gw_upstream {
    const gw_upstream_cfg *cfg;
    gw_upstream_hooks hooks;
    char *gateway_id;
    char *client_id;
    char *topic_base;     /* "<prefix>/<gw>/" */
    char *status_topic, *report_topic, *cmd_filter, *cmd_prefix, *reply_prefix;
    size_t cmd_prefix_len;
    MQTTAsync client;
    int tls;
    int v5;
    MQTTAsync_SSLOptions ssl;

    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;

    /* ---- under mu ---- */
    int stop;
    int notified;
    conn_state conn;
    int need_birth;
    int64_t next_connect_ms;  /* monotonic */
    int64_t backoff_ms;
    slot *ring;
    size_t cap, head, count;
    uint64_t cursor;          /* highest seq fetched */
    uint64_t next_attempt;
    ticket *tickets;
    command cmds[CMD_QUEUE_MAX];
    size_t cmd_head, cmd_count;
    gw_upstream_stats st;
    gw_complaint conn_complain;
    gw_complaint cmd_complain;
};

/* ---- small helpers ------------------------------------------------------------------ */

static char *concat3(const char *a, const char *b, const char *c)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = gw_malloc(la + lb + lc + 1);
    if (!s)
        return NULL;
    memcpy(s, a, la);
    memcpy(s + la, b, lb);
    memcpy(s + la + lb, c, lc);
    s[la + lb + lc] = '\0';
    return s;
}

static void set_error(gw_upstream *up, const char *what, const char *detail)
{
    snprintf(up->st.last_error, sizeof up->st.last_error, "%.24s%s%.96s", what,
             detail && detail[0] ? ": " : "", detail ? detail : "");
}

static slot *ring_at(gw_upstream *up, size_t k)
{
    return &up->ring[(up->head + k) % up->cap];
}

static void slot_clear(slot *s)
{
    gw_free(s->topic);
    gw_free(s->payload);
    memset(s, 0, sizeof *s);
}

static slot *find_attempt(gw_upstream *up, uint64_t attempt)
{
    for (size_t k = 0; k < up->count; k++) {
        slot *s = ring_at(up, k);
        if (s->attempt == attempt)
            return s;
    }
    return NULL;
}

static void ticket_unlink(gw_upstream *up, ticket *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        up->tickets = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* ---- Paho callbacks (Paho's threads) --------------------------------------------------- */

static void pub_result(ticket *t, int ok, int code, const char *msg)
{
    gw_upstream *up = t->up;
    pthread_mutex_lock(&up->mu);
    ticket_unlink(up, t);
    slot *s = find_attempt(up, t->attempt);
    if (s) {
        if (ok && (s->state == SLOT_SENT || s->state == SLOT_PENDING)) {
            s->state = SLOT_ACKED; /* even if abandoned meanwhile: the broker has it */
        } else if (!ok && s->state == SLOT_SENT) {
            s->state = SLOT_PENDING;
            up->st.failed++;
            char detail[96];
            snprintf(detail, sizeof detail, "seq %llu: %s (%d)", (unsigned long long)s->seq,
                     msg ? msg : MQTTAsync_strerror(code), code);
            set_error(up, "publish failed", detail);
        }
    }
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
    gw_free(t);
}

static void on_pub_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    pub_result(ctx, 1, 0, NULL);
}

static void on_pub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    /* MQTT 5: a PUBACK may carry a failure reason code (e.g. 0x87 not authorised) */
    int ok = !r || r->reasonCode < 0x80;
    pub_result(ctx, ok, r ? (int)r->reasonCode : 0, ok ? NULL : "PUBACK reason code");
}

static void on_pub_fail(void *ctx, MQTTAsync_failureData *r)
{
    pub_result(ctx, 0, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL);
}

static void on_pub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
    pub_result(ctx, 0, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL);
}

static void subscribe_commands(gw_upstream *up);

static void connected(gw_upstream *up)
{
    pthread_mutex_lock(&up->mu);
    up->conn = CONN_UP;
    up->st.connected = 1;
    up->st.connects++;
    up->need_birth = 1;
    up->backoff_ms = RECONNECT_MIN_MS;
    up->st.last_error[0] = '\0';
    gw_complain_clear(&up->conn_complain, AREA, "connected to %s", up->cfg->conn.url);
    if (up->st.connects == 1)
        gw_info(AREA, "connected to %s", up->cfg->conn.url);
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
    /* Subscribing here, in the connect callback, is Paho's documented pattern; never in
     * connectionLost (paho.mqtt.c #1311). */
    subscribe_commands(up);
}

static void connect_failed(gw_upstream *up, int code, const char *msg)
{
    pthread_mutex_lock(&up->mu);
    up->conn = CONN_DOWN;
    up->st.connected = 0;
    up->st.connect_failures++;
    char detail[128];
    snprintf(detail, sizeof detail, "%s (%d)", msg ? msg : MQTTAsync_strerror(code), code);
    set_error(up, "connect failed", detail);
    int64_t delay = gw_mqtt_client_backoff(&up->backoff_ms, RECONNECT_MAX_MS);
    up->next_connect_ms = gw_mono_ms() + delay;
    gw_debug(AREA, "connect failed: %s; next attempt in %lld ms", detail, (long long)delay);
    gw_complain(&up->conn_complain, 0, 10000, 600000, GW_LOG_WARN, AREA,
                "cannot connect to %s: %s; retrying", up->cfg->conn.url, detail);
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
}

static void on_conn_ok(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    connected(ctx);
}

static void on_conn_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    (void)r;
    connected(ctx);
}

static void on_conn_fail(void *ctx, MQTTAsync_failureData *r)
{
    connect_failed(ctx, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL);
}

static void on_conn_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
    connect_failed(ctx, r ? r->code : MQTTASYNC_FAILURE, r ? r->message : NULL);
}

static void on_connection_lost(void *ctx, char *cause)
{
    gw_upstream *up = ctx;
    pthread_mutex_lock(&up->mu);
    if (up->conn == CONN_UP) {
        up->st.connection_losses++;
        set_error(up, "connection lost", cause);
        gw_complain(&up->conn_complain, 0, 10000, 600000, GW_LOG_WARN, AREA,
                    "connection to %s lost%s%s; reconnecting", up->cfg->conn.url,
                    cause ? ": " : "", cause ? cause : "");
    }
    up->conn = CONN_DOWN;
    up->st.connected = 0;
    /* Everything outstanding is "not delivered": publish it again after reconnecting. */
    for (size_t k = 0; k < up->count; k++) {
        slot *s = ring_at(up, k);
        if (s->state == SLOT_SENT)
            s->state = SLOT_PENDING;
    }
    up->next_connect_ms = gw_mono_ms() + gw_mqtt_client_backoff(&up->backoff_ms, RECONNECT_MAX_MS);
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
}

static int on_message(void *ctx, char *topic, int topic_len, MQTTAsync_message *m)
{
    gw_upstream *up = ctx;
    size_t tl = topic_len > 0 ? (size_t)topic_len : strlen(topic);
    int keep = 1; /* 1: consumed (Paho frees nothing of ours); 0: Paho retries later */
    pthread_mutex_lock(&up->mu);
    if (tl <= up->cmd_prefix_len || memcmp(topic, up->cmd_prefix, up->cmd_prefix_len) != 0) {
        /* not ours (a broker may deliver overlapping subscriptions): drop */
    } else if (m->payloadlen < 0 || (size_t)m->payloadlen > CMD_PAYLOAD_MAX ||
               tl - up->cmd_prefix_len >= sizeof up->cmds[0].verb) {
        up->st.commands_malformed++;
        gw_complain(&up->cmd_complain, 0, 10000, 600000, GW_LOG_WARN, AREA,
                    "command dropped: payload of %d bytes or verb too long", m->payloadlen);
    } else if (up->cmd_count == CMD_QUEUE_MAX) {
        keep = 0; /* Paho keeps the message and delivers it again: nothing is lost */
    } else {
        command *c = &up->cmds[(up->cmd_head + up->cmd_count) % CMD_QUEUE_MAX];
        size_t vl = tl - up->cmd_prefix_len;
        c->payload = gw_malloc((size_t)m->payloadlen + 1);
        if (!c->payload) {
            keep = 0;
        } else {
            memcpy(c->verb, topic + up->cmd_prefix_len, vl);
            c->verb[vl] = '\0';
            if (m->payloadlen > 0)
                memcpy(c->payload, m->payload, (size_t)m->payloadlen);
            c->payload[m->payloadlen] = '\0';
            c->len = (size_t)m->payloadlen;
            up->cmd_count++;
            pthread_cond_signal(&up->cv);
        }
    }
    pthread_mutex_unlock(&up->mu);
    if (keep) {
        MQTTAsync_freeMessage(&m);
        MQTTAsync_free(topic);
    }
    return keep;
}

static void on_sub_fail(void *ctx, MQTTAsync_failureData *r)
{
    gw_upstream *up = ctx;
    gw_warn(AREA, "subscribing %s failed (%d); commands will not arrive until reconnect",
            up->cmd_filter, r ? r->code : -1);
}

static void on_sub_fail5(void *ctx, MQTTAsync_failureData5 *r)
{
    gw_upstream *up = ctx;
    gw_warn(AREA, "subscribing %s failed (%d); commands will not arrive until reconnect",
            up->cmd_filter, r ? r->code : -1);
}

static void on_sub_ok(void *ctx, MQTTAsync_successData *r)
{
    gw_upstream *up = ctx;
    if (r && r->alt.qos == 0x80)
        gw_warn(AREA, "broker refused the subscription %s", up->cmd_filter);
}

static void on_sub_ok5(void *ctx, MQTTAsync_successData5 *r)
{
    gw_upstream *up = ctx;
    if (r && r->reasonCode >= 0x80)
        gw_warn(AREA, "broker refused the subscription %s (reason %d)", up->cmd_filter,
                (int)r->reasonCode);
}

static void subscribe_commands(gw_upstream *up)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = up;
    if (up->v5) {
        ro.onSuccess5 = on_sub_ok5;
        ro.onFailure5 = on_sub_fail5;
    } else {
        ro.onSuccess = on_sub_ok;
        ro.onFailure = on_sub_fail;
    }
    int rc = MQTTAsync_subscribe(up->client, up->cmd_filter, 1, &ro);
    if (rc != MQTTASYNC_SUCCESS)
        gw_warn(AREA, "cannot subscribe %s: %s", up->cmd_filter, MQTTAsync_strerror(rc));
}

/* ---- the upstream thread ---------------------------------------------------------------- */

static int start_connect(gw_upstream *up)
{
    MQTTAsync_connectOptions co;
    MQTTAsync_willOptions will = MQTTAsync_willOptions_initializer;
    const gw_mqtt_conn *c = &up->cfg->conn;

    /* The upstream thread reconnects, with its own backoff (Paho's automatic reconnect off). */
    gw_mqtt_client_connect_options(c, up->tls ? &up->ssl : NULL, up, &co);
    co.cleansession = up->v5 ? 0 : 1; /* v5 uses cleanstart; Paho rejects both set */
    co.cleanstart = up->v5 ? 1 : 0;
    co.maxInflight = (int)up->cap + CONTROL_RESERVE;
    co.retryInterval = 0;
    will.topicName = up->status_topic;
    will.message = "offline";
    will.retained = 1;
    will.qos = 1;
    co.will = &will;
    if (up->v5) {
        co.onSuccess5 = on_conn_ok5;
        co.onFailure5 = on_conn_fail5;
    } else {
        co.onSuccess = on_conn_ok;
        co.onFailure = on_conn_fail;
    }
    gw_debug(AREA, "connecting to %s", c->url);
    int rc = MQTTAsync_connect(up->client, &co);
    if (rc != MQTTASYNC_SUCCESS) {
        connect_failed(up, rc, MQTTAsync_strerror(rc));
        return GW_EIO;
    }
    return 0;
}

/* Publish without tracking (status, report, replies). Returns the Paho token or < 0. */
static int publish_control(gw_upstream *up, const char *topic, const void *payload, size_t len,
                           int retained)
{
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = (void *)(payload ? payload : "");
    msg.payloadlen = (int)len;
    msg.qos = 1;
    msg.retained = retained;
    int rc = MQTTAsync_sendMessage(up->client, topic, &msg, &ro);
    if (rc != MQTTASYNC_SUCCESS) {
        gw_debug(AREA, "publishing %s failed: %s", topic, MQTTAsync_strerror(rc));
        return -1;
    }
    return ro.token;
}

/* Publish the first PENDING slot, if any. Called and returns with mu held. */
static int publish_pending(gw_upstream *up)
{
    slot *s = NULL;
    for (size_t k = 0; k < up->count; k++) {
        slot *c = ring_at(up, k);
        if (c->state == SLOT_PENDING) {
            s = c;
            break;
        }
    }
    if (!s)
        return 0;
    ticket *t = gw_calloc(1, sizeof *t);
    if (!t)
        return 0; /* try again on the next wake-up */
    t->up = up;
    t->attempt = ++up->next_attempt;
    t->next = up->tickets;
    if (up->tickets)
        up->tickets->prev = t;
    up->tickets = t;
    s->attempt = t->attempt;
    s->state = SLOT_SENT;
    if (s->sent_before)
        up->st.republished++;
    else
        up->st.published++;
    s->sent_before = 1;
    /* The slot's buffers stay put while we publish unlocked: only this thread frees
     * slots, and the callbacks only change states. */
    const char *topic = s->topic;
    MQTTAsync_message msg = MQTTAsync_message_initializer;
    msg.payload = s->len ? s->payload : (void *)"";
    msg.payloadlen = (int)s->len;
    msg.qos = 1;
    msg.retained = s->retained;
    uint64_t attempt = t->attempt;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.context = t;
    if (up->v5) {
        ro.onSuccess5 = on_pub_ok5;
        ro.onFailure5 = on_pub_fail5;
    } else {
        ro.onSuccess = on_pub_ok;
        ro.onFailure = on_pub_fail;
    }
    pthread_mutex_unlock(&up->mu);
    int rc = MQTTAsync_sendMessage(up->client, topic, &msg, &ro);
    pthread_mutex_lock(&up->mu);
    if (rc != MQTTASYNC_SUCCESS) {
        /* No callback will come for a refused submit: the ticket is ours to free. */
        ticket_unlink(up, t);
        gw_free(t);
        slot *again = find_attempt(up, attempt);
        if (again && again->state == SLOT_SENT)
            again->state = SLOT_PENDING;
        up->st.failed++;
        set_error(up, "publish refused", MQTTAsync_strerror(rc));
        return rc == MQTTASYNC_MAX_MESSAGES_INFLIGHT || rc == MQTTASYNC_DISCONNECTED ? -1 : 1;
    }
    return 1;
}

typedef struct fetch_ctx {
    gw_upstream *up;
    uint64_t last;        /* last seq accepted */
    size_t max, n;
    slot *items;
} fetch_ctx;

static int suffix_ok(const char *t)
{
    size_t n = t ? strlen(t) : 0;
    if (n == 0 || n > TOPIC_SUFFIX_MAX || t[0] == '/')
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c == '+' || c == '#' || c < 0x20 || c == 0x7f)
            return 0;
    }
    return 1;
}

static void emit(void *ectx, const gw_upstream_msg *m)
{
    fetch_ctx *f = ectx;
    if (!m || f->n >= f->max || m->seq <= f->last)
        return; /* over the limit or out of order: fetched again later */
    slot *s = &f->items[f->n];
    memset(s, 0, sizeof *s);
    s->seq = m->seq;
    s->retained = m->retained ? 1 : 0;
    s->len = m->len;
    if (!suffix_ok(m->topic) || (m->len > 0 && !m->payload) || m->len > PAYLOAD_MAX) {
        /* A message that can never be published would block the window forever: it
         * is logged and reported acked (in order) so the outbox drops it. */
        gw_error(AREA, "outbox message seq %llu has an invalid topic or payload; dropped",
                 (unsigned long long)m->seq);
        s->state = SLOT_ACKED;
        s->len = 0;
        f->last = m->seq;
        f->n++;
        return;
    }
    s->topic = concat3(f->up->topic_base, m->topic, "");
    s->payload = gw_malloc(m->len ? m->len : 1);
    if (!s->topic || !s->payload) {
        slot_clear(s);
        f->max = f->n; /* stop here; the rest is fetched again */
        return;
    }
    if (m->len)
        memcpy(s->payload, m->payload, m->len);
    s->state = SLOT_PENDING;
    f->last = m->seq;
    f->n++;
}

/* Fetch into free window slots. Called and returns with mu held. Returns 1 if the
 * outbox may have more. */
static int fetch_more(gw_upstream *up)
{
    size_t room = up->cap - up->count;
    if (room == 0 || !up->hooks.fetch)
        return 0;
    fetch_ctx f = {.up = up, .last = up->cursor, .max = room, .n = 0};
    f.items = gw_calloc(room, sizeof *f.items);
    if (!f.items)
        return 0;
    uint64_t after = up->cursor;
    pthread_mutex_unlock(&up->mu);
    int rc = up->hooks.fetch(up->hooks.ctx, after, room, emit, &f);
    pthread_mutex_lock(&up->mu);
    if (rc < 0)
        gw_debug(AREA, "outbox fetch failed: %s", gw_strerror(rc));
    for (size_t i = 0; i < f.n; i++) {
        *ring_at(up, up->count) = f.items[i];
        up->count++;
    }
    if (f.n)
        up->cursor = f.last;
    gw_free(f.items);
    return rc > 0 && f.n == room;
}

/* Hand acked slots at the head of the window to the outbox, in seq order. Called and
 * returns with mu held. Returns the number handed over. */
static int release_acked(gw_upstream *up)
{
    uint64_t seqs[ACK_BATCH];
    size_t n = 0;
    while (up->count && n < ACK_BATCH && ring_at(up, 0)->state == SLOT_ACKED) {
        slot *s = ring_at(up, 0);
        seqs[n++] = s->seq;
        slot_clear(s);
        up->head = (up->head + 1) % up->cap;
        up->count--;
    }
    if (!n)
        return 0;
    pthread_mutex_unlock(&up->mu);
    for (size_t i = 0; i < n; i++)
        up->hooks.acked(up->hooks.ctx, seqs[i]);
    pthread_mutex_lock(&up->mu);
    up->st.acked += n;
    up->st.last_acked_seq = seqs[n - 1];
    return (int)n;
}

static void reply(gw_upstream *up, const char *request_id, const char *verb, int rc,
                  char *result, const char *error)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        goto done;
    cJSON_AddStringToObject(o, "request_id", request_id);
    cJSON_AddStringToObject(o, "verb", verb);
    cJSON_AddBoolToObject(o, "ok", rc == 0);
    cJSON *r = result ? cJSON_Parse(result) : NULL;
    if (rc) {
        /* The hook's own words ("no such alarm", "nothing to acknowledge") say more to
         * the operator than the error code. */
        const cJSON *why = cJSON_GetObjectItemCaseSensitive(r, "error");
        if (!error && cJSON_IsString(why))
            error = why->valuestring;
        cJSON_AddStringToObject(o, "error", error ? error : gw_strerror(rc));
    }
    if (r)
        cJSON_AddItemToObject(o, "result", r);
    else if (result)
        cJSON_AddStringToObject(o, "result", result);
    char *text = cJSON_PrintUnformatted(o);
    if (text) {
        char *topic = concat3(up->reply_prefix, request_id, "");
        if (topic)
            publish_control(up, topic, text, strlen(text), 0);
        gw_free(topic);
        cJSON_free(text);
    }
    cJSON_Delete(o);
done:
    gw_free(result);
}

static void malformed(gw_upstream *up, const char *verb, const char *why)
{
    pthread_mutex_lock(&up->mu);
    up->st.commands_malformed++;
    gw_complain(&up->cmd_complain, 0, 10000, 600000, GW_LOG_WARN, AREA,
                "malformed command on cmd/%s dropped: %s", verb, why);
    pthread_mutex_unlock(&up->mu);
}

/* Handle one command. Runs on the upstream thread without mu. */
static void handle_command(gw_upstream *up, command *c)
{
    /* The payload is a NUL-terminated copy; an embedded NUL is rejected, trailing
     * garbage too (require_null_terminated). Size was capped on arrival. */
    const char *end = NULL;
    cJSON *req = NULL;
    if (strlen(c->payload) == c->len)
        req = cJSON_ParseWithOpts(c->payload, &end, 1);
    if (!req || !cJSON_IsObject(req)) {
        malformed(up, c->verb, req ? "not a JSON object" : "invalid JSON");
        cJSON_Delete(req);
        return;
    }
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(req, "request_id");
    if (!cJSON_IsString(rid) || !gw_topic_level_is_safe(rid->valuestring, strlen(rid->valuestring))) {
        malformed(up, c->verb, "no usable request_id ([A-Za-z0-9_.:-], 1..64)");
        cJSON_Delete(req);
        return;
    }
    char *result = NULL;
    int rc;
    const char *error = NULL;
    if (!gw_topic_level_is_safe(c->verb, strlen(c->verb))) {
        rc = GW_EINVAL;
        error = "bad verb";
        malformed(up, "?", "bad verb");
    } else if (!up->hooks.command) {
        rc = GW_ENOTFOUND;
        error = "commands not supported";
    } else {
        rc = up->hooks.command(up->hooks.ctx, c->verb, c->payload, c->len, &result);
    }
    reply(up, rid->valuestring, c->verb, rc, result, error);
    pthread_mutex_lock(&up->mu);
    up->st.commands++;
    pthread_mutex_unlock(&up->mu);
    cJSON_Delete(req);
}

static void clean_stop(gw_upstream *up, int timeout_ms)
{
    pthread_mutex_lock(&up->mu);
    int was_up = up->conn == CONN_UP;
    pthread_mutex_unlock(&up->mu);
    if (!was_up)
        return;
    int token = publish_control(up, up->status_topic, "offline", 7, 1);
    if (token >= 0)
        MQTTAsync_waitForCompletion(up->client, token, (unsigned long)timeout_ms);
    gw_mqtt_client_disconnect(up->client, up->v5);
    pthread_mutex_lock(&up->mu);
    up->conn = CONN_DOWN;
    up->st.connected = 0;
    pthread_mutex_unlock(&up->mu);
}

static void *run(void *arg)
{
    gw_upstream *up = arg;
    int64_t report_ms = up->cfg->report_interval_s > 0 ? (int64_t)up->cfg->report_interval_s * 1000 : 0;
    int64_t next_report = gw_mono_ms() + report_ms;
    int64_t next_poll = 0;
    int more = 0;

    pthread_mutex_lock(&up->mu);
    while (!up->stop) {
        int64_t now = gw_mono_ms();
        int busy = 0;

        if (up->conn == CONN_DOWN && now >= up->next_connect_ms) {
            up->conn = CONN_CONNECTING;
            pthread_mutex_unlock(&up->mu);
            start_connect(up);
            pthread_mutex_lock(&up->mu);
            continue;
        }
        busy += release_acked(up);
        if (up->conn == CONN_UP) {
            if (up->need_birth) {
                up->need_birth = 0;
                pthread_mutex_unlock(&up->mu);
                publish_control(up, up->status_topic, "online", 6, 1);
                pthread_mutex_lock(&up->mu);
                busy++;
            }
            if (up->cmd_count) {
                command c = up->cmds[up->cmd_head];
                up->cmd_head = (up->cmd_head + 1) % CMD_QUEUE_MAX;
                up->cmd_count--;
                pthread_mutex_unlock(&up->mu);
                handle_command(up, &c);
                gw_free(c.payload);
                pthread_mutex_lock(&up->mu);
                busy++;
            }
            int p = publish_pending(up);
            if (p > 0)
                busy++;
            else if (p < 0) {
                /* Paho's window is full or the link just dropped: wait for a callback */
                gw_mqtt_client_wait_until(&up->cv, &up->mu, gw_mono_ms() + 50);
                continue;
            }
            if (up->count < up->cap && (up->notified || more || now >= next_poll)) {
                up->notified = 0;
                more = fetch_more(up);
                next_poll = gw_mono_ms() + POLL_MS;
                busy++;
            }
            if (report_ms && now >= next_report) {
                next_report = now + report_ms;
                if (up->hooks.report) {
                    pthread_mutex_unlock(&up->mu);
                    char *body = up->hooks.report(up->hooks.ctx);
                    int tok = body ? publish_control(up, up->report_topic, body, strlen(body), 0) : -1;
                    gw_free(body);
                    pthread_mutex_lock(&up->mu);
                    if (tok >= 0)
                        up->st.reports++;
                }
            }
        }
        if (busy)
            continue;
        int64_t deadline = now + 1000;
        if (up->conn == CONN_DOWN && up->next_connect_ms < deadline)
            deadline = up->next_connect_ms;
        /* The poll deadline only matters while the window has room: with every slot
         * waiting for a PUBACK it lies in the past and would make this loop spin while
         * holding the mutex the PUBACK callback needs. */
        if (up->conn == CONN_UP && up->count < up->cap && next_poll < deadline)
            deadline = next_poll;
        if (up->conn == CONN_UP && report_ms && next_report < deadline)
            deadline = next_report;
        /* Work that arrived while we were unlocked; anything else waits for a callback,
         * a notify or the deadline (never spin holding the mutex). */
        int ready = up->conn == CONN_UP &&
                    ((up->notified && up->count < up->cap) || up->cmd_count || up->need_birth);
        if (!ready)
            gw_mqtt_client_wait_until(&up->cv, &up->mu, deadline);
    }
    pthread_mutex_unlock(&up->mu);
    return NULL;
}

/* ---- public ------------------------------------------------------------------------------ */

int gw_upstream_new(const gw_upstream_cfg *cfg, const char *gateway_id,
                    const gw_upstream_hooks *hooks, gw_upstream **out)
{
    *out = NULL;
    if (!cfg || !gateway_id || !gw_topic_level_is_safe(gateway_id, strlen(gateway_id)) ||
        !hooks || !hooks->fetch || !hooks->acked || cfg->max_inflight < 1 ||
        cfg->max_inflight > 1000)
        return GW_EINVAL;
    const char *prefix = cfg->topic_prefix && cfg->topic_prefix[0] ? cfg->topic_prefix : "citygate";
    if (strpbrk(prefix, "+#") || !suffix_ok(prefix))
        return GW_EINVAL;

    int rc = GW_ENOMEM;
    gw_upstream *up = gw_calloc(1, sizeof *up);
    if (!up)
        return GW_ENOMEM;
    up->cfg = cfg;
    up->hooks = *hooks;
    up->v5 = cfg->conn.mqtt_version == 5;
    up->cap = (size_t)cfg->max_inflight;
    up->backoff_ms = RECONNECT_MIN_MS;
    up->gateway_id = gw_strdup(gateway_id);
    up->client_id = cfg->conn.client_id && cfg->conn.client_id[0]
                        ? gw_strdup(cfg->conn.client_id)
                        : concat3("citygate-", gateway_id, "");
    up->topic_base = concat3(prefix, "/", gateway_id);
    char *base = up->topic_base;
    up->topic_base = base ? concat3(base, "/", "") : NULL;
    gw_free(base);
    up->ring = gw_calloc(up->cap, sizeof *up->ring);
    if (!up->gateway_id || !up->client_id || !up->topic_base || !up->ring)
        goto fail_alloc;
    up->status_topic = concat3(up->topic_base, "status", "");
    up->report_topic = concat3(up->topic_base, "report", "");
    up->cmd_filter = concat3(up->topic_base, "cmd/+", "");
    up->cmd_prefix = concat3(up->topic_base, "cmd/", "");
    up->reply_prefix = concat3(up->topic_base, "cmd-reply/", "");
    if (!up->status_topic || !up->report_topic || !up->cmd_filter || !up->cmd_prefix ||
        !up->reply_prefix)
        goto fail_alloc;
    up->cmd_prefix_len = strlen(up->cmd_prefix);

    if (pthread_mutex_init(&up->mu, NULL) != 0) {
        rc = GW_EIO;
        goto fail_alloc;
    }
    if (pthread_cond_init(&up->cv, NULL) != 0) {
        rc = GW_EIO;
        goto fail_mutex;
    }
    rc = gw_mqtt_client_create(&cfg->conn, up->client_id, AREA, &up->client, &up->tls);
    if (rc)
        goto fail_cond;
    if (up->tls)
        gw_mqtt_client_tls(&cfg->conn, &up->ssl);
    if (MQTTAsync_setCallbacks(up->client, up, on_connection_lost, on_message, NULL) !=
        MQTTASYNC_SUCCESS) {
        rc = GW_EIO;
        goto fail_client;
    }
    *out = up;
    return 0;

fail_client:
    MQTTAsync_destroy(&up->client);
fail_cond:
    pthread_cond_destroy(&up->cv);
fail_mutex:
    pthread_mutex_destroy(&up->mu);
fail_alloc:
    gw_free(up->status_topic);
    gw_free(up->report_topic);
    gw_free(up->cmd_filter);
    gw_free(up->cmd_prefix);
    gw_free(up->reply_prefix);
    gw_free(up->ring);
    gw_free(up->topic_base);
    gw_free(up->client_id);
    gw_free(up->gateway_id);
    gw_free(up);
    return rc;
}

int gw_upstream_start(gw_upstream *up)
{
    if (up->started)
        return 0;
    int err = pthread_create(&up->thread, NULL, run, up);
    if (err) {
        gw_error(AREA, "cannot start thread: %s", strerror(err));
        return GW_EIO;
    }
#ifdef __GLIBC__
    pthread_setname_np(up->thread, "upstream");
#endif
    up->started = 1;
    return 0;
}

void gw_upstream_notify(gw_upstream *up)
{
    if (!up)
        return;
    pthread_mutex_lock(&up->mu);
    up->notified = 1;
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
}

void gw_upstream_stats_get(gw_upstream *up, gw_upstream_stats *out)
{
    pthread_mutex_lock(&up->mu);
    *out = up->st;
    out->inflight = up->count;
    pthread_mutex_unlock(&up->mu);
}

void gw_upstream_stop(gw_upstream *up, int timeout_ms)
{
    if (!up || !up->started)
        return;
    pthread_mutex_lock(&up->mu);
    up->stop = 1;
    pthread_cond_signal(&up->cv);
    pthread_mutex_unlock(&up->mu);
    pthread_join(up->thread, NULL);
    up->started = 0;
    clean_stop(up, timeout_ms > 0 ? timeout_ms : 2000);
}

void gw_upstream_free(gw_upstream *up)
{
    if (!up)
        return;
    gw_upstream_stop(up, 2000);
    MQTTAsync_destroy(&up->client); /* no callbacks after this */
    while (up->tickets) {
        ticket *t = up->tickets;
        up->tickets = t->next;
        gw_free(t);
    }
    for (size_t k = 0; k < up->count; k++)
        slot_clear(ring_at(up, k));
    for (size_t i = 0; i < up->cmd_count; i++)
        gw_free(up->cmds[(up->cmd_head + i) % CMD_QUEUE_MAX].payload);
    pthread_cond_destroy(&up->cv);
    pthread_mutex_destroy(&up->mu);
    gw_free(up->status_topic);
    gw_free(up->report_topic);
    gw_free(up->cmd_filter);
    gw_free(up->cmd_prefix);
    gw_free(up->reply_prefix);
    gw_free(up->ring);
    gw_free(up->topic_base);
    gw_free(up->client_id);
    gw_free(up->gateway_id);
    gw_free(up);
}
