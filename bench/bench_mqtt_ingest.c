/* MQTT ingest throughput: gw_ingest (topic match, device lookup, hand-over, one cJSON
 * parse in the hook as a decoder would) against a bare Paho MQTTAsync subscriber doing
 * the same parse, in the same run, through a private mosquitto on 127.0.0.1.
 *
 *   bench_mqtt_ingest [N]        (default 200000 messages per run)
 *
 * The load generator is a raw-socket MQTT 3.1.1 publisher (Paho is a slow publisher:
 * reference/measured-here.md). Rates are messages received per second between the
 * first and the last message at the consumer. Needs mosquitto in PATH. */
#include "alloc.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "mqtt/ingest.h"
#include "timeutil.h"

#include <MQTTAsync.h>
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct counter {
    atomic_ulong n;
    atomic_llong first_us, last_us;
    atomic_ulong parse_errors;
} counter;

static void count_one(counter *c)
{
    int64_t now = gw_mono_us();
    long long zero = 0;
    atomic_compare_exchange_strong(&c->first_us, &zero, now);
    atomic_store(&c->last_us, now);
    atomic_fetch_add(&c->n, 1);
}

/* The work both consumers do per message: copy, NUL-terminate, parse, read a field. */
static void parse_one(counter *c, const void *payload, size_t len)
{
    char stackbuf[512];
    char *buf = len < sizeof stackbuf ? stackbuf : malloc(len + 1);
    memcpy(buf, payload, len);
    buf[len] = '\0';
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithOpts(buf, &end, 1);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "v");
    if (!cJSON_IsNumber(v))
        atomic_fetch_add(&c->parse_errors, 1);
    cJSON_Delete(j);
    if (buf != stackbuf)
        free(buf);
}

/* ---- broker ----------------------------------------------------------------------------- */

static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t l = sizeof a;
    bind(s, (struct sockaddr *)&a, sizeof a);
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static int tcp_connect(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        close(s);
        return -1;
    }
    return s;
}

static pid_t start_broker(int port, char *dir)
{
    char conf[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f, "listener %d 127.0.0.1\nallow_anonymous true\npersistence false\n"
               "user %s\nmax_queued_messages 1000000\nlog_dest none\n",
            port, getenv("USER") && getuid() != 0 ? getenv("USER") : "root");
    fclose(f);
    pid_t pid = fork();
    if (pid == 0) {
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 200; i++) {
        int s = tcp_connect(port);
        if (s >= 0) {
            close(s);
            return pid;
        }
        usleep(20000);
    }
    kill(pid, SIGTERM);
    return -1;
}

/* ---- raw publisher ---------------------------------------------------------------------- */

static size_t put_len(unsigned char *p, size_t n)
{
    size_t i = 0;
    do {
        unsigned char b = n % 128;
        n /= 128;
        p[i++] = (unsigned char)(b | (n ? 0x80 : 0));
    } while (n);
    return i;
}

static int write_all(int s, const unsigned char *b, size_t n)
{
    while (n) {
        ssize_t w = write(s, b, n);
        if (w <= 0)
            return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *drain(void *arg)
{
    int s = *(int *)arg;
    unsigned char buf[65536];
    while (read(s, buf, sizeof buf) > 0) {
    }
    return NULL;
}

static int publish_raw(int port, const char *topic, unsigned long n, int qos)
{
    int s = tcp_connect(port);
    if (s < 0)
        return -1;
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    static const unsigned char connect_pkt[] = {0x10, 21, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60,
                                                0, 9, 'b', 'e', 'n', 'c', 'h', '-', 'p', 'u', 'b'};
    unsigned char ack[4];
    if (write_all(s, connect_pkt, sizeof connect_pkt) || read(s, ack, 4) != 4 || ack[3] != 0) {
        close(s);
        return -1;
    }
    pthread_t th;
    pthread_create(&th, NULL, drain, &s);
    size_t tl = strlen(topic);
    unsigned char *batch = malloc(1 << 20);
    size_t used = 0;
    uint16_t pid = 0;
    for (unsigned long i = 0; i < n; i++) {
        char payload[128];
        int pl = snprintf(payload, sizeof payload,
                          "{\"dev\":\"dev-1\",\"seq\":%lu,\"v\":%.2f,\"battery\":3.61}", i,
                          (double)(i % 1000) / 10.0);
        size_t rem = 2 + tl + (qos ? 2 : 0) + (size_t)pl;
        unsigned char *p = batch + used;
        *p++ = (unsigned char)(0x30 | (qos << 1));
        p += put_len(p, rem);
        *p++ = (unsigned char)(tl >> 8);
        *p++ = (unsigned char)tl;
        memcpy(p, topic, tl);
        p += tl;
        if (qos) {
            if (++pid == 0)
                pid = 1;
            *p++ = (unsigned char)(pid >> 8);
            *p++ = (unsigned char)pid;
        }
        memcpy(p, payload, (size_t)pl);
        p += pl;
        used = (size_t)(p - batch);
        if (used > (1 << 20) - 512) {
            write_all(s, batch, used);
            used = 0;
        }
    }
    if (used)
        write_all(s, batch, used);
    free(batch);
    /* DISCONNECT, then read until the broker closes: closing with unread PUBACKs in
     * our receive buffer would reset the connection and lose what the broker has not
     * read yet. */
    static const unsigned char disc[] = {0xe0, 0};
    write_all(s, disc, 2);
    pthread_join(th, NULL);
    close(s);
    return 0;
}

/* ---- consumers --------------------------------------------------------------------------- */

static int bare_arrived(void *ctx, char *topic, int tl, MQTTAsync_message *m)
{
    (void)tl;
    counter *c = ctx;
    parse_one(c, m->payload, (size_t)m->payloadlen);
    count_one(c);
    MQTTAsync_freeMessage(&m);
    MQTTAsync_free(topic);
    return 1;
}

static atomic_int bare_ready;
static void bare_subscribed(void *ctx, MQTTAsync_successData *r)
{
    (void)ctx;
    (void)r;
    atomic_store(&bare_ready, 1);
}

static void bare_connected(void *ctx, MQTTAsync_successData *r)
{
    (void)r;
    MQTTAsync client = *(MQTTAsync *)ctx;
    MQTTAsync_responseOptions ro = MQTTAsync_responseOptions_initializer;
    ro.onSuccess = bare_subscribed;
    MQTTAsync_subscribe(client, "bench/+/up", atomic_load(&bare_ready) == -1 ? 0 : 1, &ro);
}

static int bare_qos;

static int run_bare(int port, unsigned long n, int qos, counter *c)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    MQTTAsync client;
    MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
    co.MQTTVersion = MQTTVERSION_3_1_1;
    if (MQTTAsync_createWithOptions(&client, url, "bench-bare", MQTTCLIENT_PERSISTENCE_NONE, NULL, &co))
        return -1;
    MQTTAsync_setCallbacks(client, c, NULL, bare_arrived, NULL);
    MQTTAsync_connectOptions opt = MQTTAsync_connectOptions_initializer;
    opt.MQTTVersion = MQTTVERSION_3_1_1;
    opt.cleansession = 1;
    opt.onSuccess = bare_connected;
    opt.context = &client;
    bare_qos = qos;
    atomic_store(&bare_ready, qos ? 0 : -1);
    MQTTAsync_connect(client, &opt);
    for (int i = 0; i < 500 && atomic_load(&bare_ready) != 1; i++)
        usleep(10000);
    publish_raw(port, "bench/dev-1/up", n, qos);
    for (int i = 0; i < 3000 && atomic_load(&c->n) < n; i++)
        usleep(10000);
    MQTTAsync_disconnectOptions d = MQTTAsync_disconnectOptions_initializer;
    MQTTAsync_disconnect(client, &d);
    usleep(100000);
    MQTTAsync_destroy(&client);
    return 0;
}

static int ingest_hook(void *ctx, size_t dev, const char *decoder, const char *topic,
                       const void *payload, size_t len, const struct cJSON *doc, int64_t ts)
{
    (void)doc; /* NULL: the device is named in the topic */
    (void)dev;
    (void)decoder;
    (void)topic;
    (void)ts;
    counter *c = ctx;
    parse_one(c, payload, len);
    count_one(c);
    return 0;
}

static int run_ingest(int port, unsigned long n, int qos, counter *c)
{
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    gw_mqtt_sub sub = {.topic = "bench/{dev}/up", .decoder = "json", .qos = qos};
    gw_mqtt_source src = {.id = "bench", .subs = &sub, .n_subs = 1, .max_payload = 65536};
    src.conn.url = url;
    src.conn.client_id = qos ? "bench-ingest-q1" : "bench-ingest-q0";
    src.conn.mqtt_version = 3;
    src.conn.keepalive_s = 30;
    gw_device devs[64];
    char keys[64][16], ids[64][16];
    memset(devs, 0, sizeof devs);
    for (int i = 0; i < 64; i++) {
        snprintf(keys[i], sizeof keys[i], "dev-%d", i);
        snprintf(ids[i], sizeof ids[i], "d%d", i);
        devs[i].id = ids[i];
        devs[i].kind = "manhole";
        devs[i].source = GW_SRC_MQTT;
        devs[i].mqtt_source = "bench";
        devs[i].key = keys[i];
        devs[i].enabled = 1;
    }
    gw_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.gateway.id = "BENCH";
    cfg.mqtt_sources = &src;
    cfg.n_mqtt_sources = 1;
    cfg.devices = devs;
    cfg.n_devices = 64;
    gw_ingest_hooks hooks = {c, ingest_hook};
    gw_ingest *ing = NULL;
    if (gw_ingest_new(&cfg, &hooks, &ing) || gw_ingest_start(ing))
        return -1;
    gw_ingest_stats st;
    for (int i = 0; i < 500; i++) {
        gw_ingest_stats_get(ing, 0, &st);
        if (st.connected)
            break;
        usleep(10000);
    }
    usleep(300000); /* SUBACK */
    publish_raw(port, "bench/dev-1/up", n, qos);
    for (int i = 0; i < 3000 && atomic_load(&c->n) < n; i++)
        usleep(10000);
    gw_ingest_free(ing);
    return 0;
}

static double rate(counter *c)
{
    double secs = (double)(atomic_load(&c->last_us) - atomic_load(&c->first_us)) / 1e6;
    return secs > 0 ? (double)atomic_load(&c->n) / secs : 0;
}

int main(int argc, char **argv)
{
    unsigned long n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    gw_log_set_level(GW_LOG_WARN);
    signal(SIGPIPE, SIG_IGN);
    char dir[] = "/tmp/bench-mqtt-ingest.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    int port = free_port();
    pid_t broker = start_broker(port, dir);
    if (broker < 0) {
        fprintf(stderr, "cannot start mosquitto\n");
        return 1;
    }
    printf("MQTT ingest, %lu JSON messages per run, private mosquitto on 127.0.0.1:%d\n\n", n, port);
    printf("| consumer | QoS | received | msgs/s | vs bare Paho |\n|---|---|---|---|---|\n");
    for (int qos = 0; qos <= 1; qos++) {
        counter bare = {0}, ing = {0};
        run_bare(port, n, qos, &bare);
        run_ingest(port, n, qos, &ing);
        double rb = rate(&bare), ri = rate(&ing);
        printf("| bare Paho MQTTAsync + cJSON parse | %d | %lu | %.0f | 100 %% |\n", qos,
               (unsigned long)atomic_load(&bare.n), rb);
        printf("| gw_ingest (match, lookup, hand-over) + same parse | %d | %lu | %.0f | %.0f %% |\n",
               qos, (unsigned long)atomic_load(&ing.n), ri, rb > 0 ? 100.0 * ri / rb : 0);
        if (atomic_load(&bare.parse_errors) || atomic_load(&ing.parse_errors))
            printf("(parse errors: bare %lu, ingest %lu)\n", (unsigned long)atomic_load(&bare.parse_errors),
                   (unsigned long)atomic_load(&ing.parse_errors));
    }
    kill(broker, SIGTERM);
    waitpid(broker, NULL, 0);
    char conf[300];
    snprintf(conf, sizeof conf, "%s/mosquitto.conf", dir);
    unlink(conf);
    rmdir(dir);
    return 0;
}
