#include "influx/writer.h"

#include "alloc.h"
#include "error.h"
#include "influx/lineproto.h"
#include "log.h"
#include "queue.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define QUEUE_CAPACITY 32768
#define POP_CHUNK 1024
#define MAX_FIELDS 64
#define MAX_LINE (64 * 1024)
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 60000
#define RETRY_AFTER_MAX_S 600
#define DRAIN_BUDGET_MS 250
#define RESPONSE_MAX 2048
#define DEADLETTER_MAX (64LL * 1024 * 1024)
/* A pop that brings fewer samples than this means submitters are trickling in a few at
 * a time; the formatter then lingers LINGER_US before the next pop so they collect.
 * Without it every small submit wakes the formatter: a futex call for the submitter and
 * a context switch here, per submit, which on a small box is CPU taken from influxd.
 * The delay is far below any flush interval. */
#define LINGER_BELOW 256
#define LINGER_US 1000
#define PEND_QUIET_MS 5
/* gzip level 1: line protocol is repetitive (series keys recur), so level 1 already
 * shrinks it about 6 to 8 times; higher levels cost several times the CPU for a few
 * percent on loopback or LAN links. A constant, not a config key, until a slow uplink
 * asks for one. */
#define GZIP_LEVEL 1

typedef struct dev_meta {
    const char *id;
    const char *kind;
    gw_lp_tag *tags;
    size_t n_tags;
    char *series;            /* escaped "kind,tag=value,... " made once (NULL: too long) */
    size_t series_len;
    uint64_t series_skips;   /* tags the series leaves out, counted per line as before */
} dev_meta;

/* One batch buffer: raw line protocol and, when gzip is on, its compressed form made
 * on the formatting thread (gz_len 0: not compressed, the sender compresses). */
typedef struct batch_buf {
    char *buf;
    size_t len;
    uint32_t lines;
    unsigned char *gz;
    size_t gz_len, gz_cap;
} batch_buf;

typedef enum { SEND_OK = 0, SEND_RETRY, SEND_CONFIG } send_rc;

struct gw_influx_writer {
    const gw_config *cfg;
    const gw_influx_cfg *ic;
    gw_spool *spool;
    gw_queue *queue;
    gw_lp_precision prec;

    dev_meta *devs;          /* indexed like cfg->devices */
    size_t n_devs;
    size_t *by_id;           /* indices sorted by id, for samples without a valid index */

    char *url;
    char *auth_header;       /* "Authorization: Token …" (2.x), a secret */
    CURL *curl;
    struct curl_slist *headers;
    z_stream z;
    int z_ready;
    unsigned char *zbuf;
    size_t zcap;
    char resp[RESPONSE_MAX];
    size_t resp_len;
    long retry_after_s;

    const gw_sample *pend[MAX_FIELDS]; /* the line being grouped: into the pop buffer, */
    gw_sample pend_keep[MAX_FIELDS];   /* or, across pops, into these copies */
    size_t n_pend;
    const dev_meta *pend_dev;

    char *batch;             /* live batch being filled (cur.buf) */
    size_t batch_len, batch_cap;
    uint32_t batch_lines;
    int64_t batch_deadline;  /* mono ms */
    batch_buf cur;           /* the live batch's buffers (formatting thread) */
    z_stream fz;             /* the formatting thread's deflate stream, reset per batch */
    int fz_ready;

    int64_t next_attempt;    /* mono ms; no request before */
    int backoff_ms;
    int attempts;

    char *deadletter_path;
    int deadletter_fd;

    /* Full batches handed from the formatting thread to the sending thread: while one
     * batch is on the wire the next is being formatted and compressed. */
    pthread_mutex_t hand_lock;
    pthread_cond_t hand_cond;
    batch_buf spare[2];
    int n_spare;
    batch_buf ready[2];
    int n_ready;
    int fmt_done;

    pthread_t thread, sender;
    int started;
    atomic_int stopping;

    gw_influx_fault_cb fault_cb;
    void *fault_ctx;

    pthread_mutex_t stats_lock;
    gw_influx_stats st;
    gw_complaint complaint;
    unsigned int rng;
};

const char *gw_influx_state_name(gw_influx_state s)
{
    switch (s) {
    case GW_INFLUX_OK: return "ok";
    case GW_INFLUX_RETRYING: return "retrying";
    case GW_INFLUX_CONFIG_FAULT: return "config_fault";
    case GW_INFLUX_IDLE:
    default: return "idle";
    }
}

/* ---- setup ---------------------------------------------------------------------------- */

static const gw_config *sort_cfg; /* qsort has no context argument; used only in new() */
static int cmp_dev_idx(const void *a, const void *b)
{
    return strcmp(sort_cfg->devices[*(const size_t *)a].id,
                  sort_cfg->devices[*(const size_t *)b].id);
}
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

static int build_devices(gw_influx_writer *w)
{
    const gw_config *cfg = w->cfg;
    w->n_devs = cfg->n_devices;
    if (w->n_devs == 0)
        return 0;
    w->devs = gw_calloc(w->n_devs, sizeof *w->devs);
    w->by_id = gw_calloc(w->n_devs, sizeof *w->by_id);
    if (!w->devs || !w->by_id)
        return GW_ENOMEM;
    for (size_t i = 0; i < w->n_devs; i++) {
        const gw_device *d = &cfg->devices[i];
        dev_meta *m = &w->devs[i];
        m->id = d->id;
        m->kind = d->kind && d->kind[0] ? d->kind : "device";
        size_t extra = d->tags ? (size_t)cJSON_GetArraySize(d->tags) : 0;
        m->tags = gw_calloc(4 + extra, sizeof *m->tags);
        if (!m->tags)
            return GW_ENOMEM;
        size_t n = 0;
        m->tags[n++] = (gw_lp_tag){"device", d->id};
        if (d->component.code)
            m->tags[n++] = (gw_lp_tag){"component", d->component.code};
        if (d->component.grid)
            m->tags[n++] = (gw_lp_tag){"grid", d->component.grid};
        if (cfg->gateway.id)
            m->tags[n++] = (gw_lp_tag){"gateway", cfg->gateway.id};
        const cJSON *t;
        cJSON_ArrayForEach(t, d->tags)
        {
            if (!cJSON_IsString(t) || !t->string)
                continue;
            if (!strcmp(t->string, "device") || !strcmp(t->string, "component") ||
                !strcmp(t->string, "grid") || !strcmp(t->string, "gateway"))
                continue;
            m->tags[n++] = (gw_lp_tag){t->string, t->valuestring};
        }
        m->n_tags = n;
        w->by_id[i] = i;
        char tmp[MAX_LINE];
        gw_lp_skips sk = {0};
        int sl = gw_lp_format_series(tmp, sizeof tmp, m->kind, m->tags, m->n_tags, &sk);
        if (sl > 0) {
            if (!(m->series = gw_malloc((size_t)sl)))
                return GW_ENOMEM;
            memcpy(m->series, tmp, (size_t)sl);
            m->series_len = (size_t)sl;
        }
        m->series_skips = sk.bad_key;
    }
    pthread_mutex_lock(&sort_lock);
    sort_cfg = cfg;
    qsort(w->by_id, w->n_devs, sizeof *w->by_id, cmp_dev_idx);
    pthread_mutex_unlock(&sort_lock);
    return 0;
}

static const dev_meta *find_device(gw_influx_writer *w, const gw_sample *s)
{
    if (s->device_idx < w->n_devs && strcmp(w->devs[s->device_idx].id, s->device) == 0)
        return &w->devs[s->device_idx];
    size_t lo = 0, hi = w->n_devs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(s->device, w->devs[w->by_id[mid]].id);
        if (c == 0)
            return &w->devs[w->by_id[mid]];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

/* Append "&key=escaped(value)" to url. */
static int url_param(CURL *c, char **url, const char *key, const char *value)
{
    if (!value || !value[0])
        return 0;
    char *esc = curl_easy_escape(c, value, 0);
    if (!esc)
        return GW_ENOMEM;
    size_t n = strlen(*url) + strlen(key) + strlen(esc) + 3;
    char *u = gw_malloc(n);
    if (!u) {
        curl_free(esc);
        return GW_ENOMEM;
    }
    snprintf(u, n, "%s%c%s=%s", *url, strchr(*url, '?') ? '&' : '?', key, esc);
    curl_free(esc);
    gw_free(*url);
    *url = u;
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t nm, void *ctx)
{
    gw_influx_writer *w = ctx;
    size_t n = sz * nm, room = RESPONSE_MAX - 1 - w->resp_len;
    size_t k = n < room ? n : room;
    memcpy(w->resp + w->resp_len, p, k);
    w->resp_len += k;
    w->resp[w->resp_len] = '\0';
    return n;
}

static size_t on_header(char *p, size_t sz, size_t nm, void *ctx)
{
    gw_influx_writer *w = ctx;
    size_t n = sz * nm;
    if (n > 12 && strncasecmp(p, "Retry-After:", 12) == 0) {
        char v[64];
        size_t k = n - 12 < sizeof v - 1 ? n - 12 : sizeof v - 1;
        memcpy(v, p + 12, k);
        v[k] = '\0';
        char *end;
        long s = strtol(v, &end, 10);
        if (end != v && s >= 0)
            w->retry_after_s = s;
        else {
            time_t t = curl_getdate(v, NULL); /* an HTTP date */
            if (t > 0) {
                long d = (long)(t - time(NULL));
                w->retry_after_s = d > 0 ? d : 0;
            }
        }
        if (w->retry_after_s > RETRY_AFTER_MAX_S)
            w->retry_after_s = RETRY_AFTER_MAX_S;
    }
    return n;
}

static int setup_curl(gw_influx_writer *w)
{
    const gw_influx_cfg *ic = w->ic;
    w->curl = curl_easy_init();
    if (!w->curl)
        return GW_ENOMEM;
    const char *base = ic->url;
    size_t bl = strlen(base);
    while (bl > 0 && base[bl - 1] == '/')
        bl--;
    const char *path = ic->version == 2 ? "/api/v2/write" : "/write";
    size_t n = bl + strlen(path) + 1;
    w->url = gw_malloc(n);
    if (!w->url)
        return GW_ENOMEM;
    snprintf(w->url, n, "%.*s%s", (int)bl, base, path);
    int rc;
    if (ic->version == 2) {
        if ((rc = url_param(w->curl, &w->url, "org", ic->org)) ||
            (rc = url_param(w->curl, &w->url, "bucket", ic->bucket)))
            return rc;
    } else {
        if ((rc = url_param(w->curl, &w->url, "db", ic->database)) ||
            (rc = url_param(w->curl, &w->url, "rp", ic->retention_policy)))
            return rc;
    }
    if ((rc = url_param(w->curl, &w->url, "precision",
                        gw_lp_precision_param(w->prec, ic->version))))
        return rc;

    struct curl_slist *h = NULL, *t;
    const char *fixed[] = {"Content-Type: text/plain; charset=utf-8", "Expect:",
                           ic->gzip ? "Content-Encoding: gzip" : NULL};
    for (size_t i = 0; i < 3; i++) {
        if (!fixed[i])
            continue;
        if (!(t = curl_slist_append(h, fixed[i])))
            goto nomem;
        h = t;
    }
    if (ic->version == 2 && ic->token && ic->token[0]) {
        size_t an = strlen(ic->token) + 32;
        w->auth_header = gw_malloc(an);
        if (!w->auth_header)
            goto nomem;
        snprintf(w->auth_header, an, "Authorization: Token %s", ic->token);
        if (!(t = curl_slist_append(h, w->auth_header)))
            goto nomem;
        h = t;
    }
    w->headers = h;

    CURL *c = w->curl;
    curl_easy_setopt(c, CURLOPT_URL, w->url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, w->headers);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_VERBOSE, 0L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(ic->timeout_ms > 0 ? ic->timeout_ms : 10000));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(ic->timeout_ms > 0 && ic->timeout_ms < 5000 ? ic->timeout_ms : 5000));
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (ic->ca_file && ic->ca_file[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, ic->ca_file);
    if (ic->version != 2 && ic->username && ic->username[0]) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, ic->username);
        curl_easy_setopt(c, CURLOPT_PASSWORD, ic->password ? ic->password : "");
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, w);
    return 0;
nomem:
    curl_slist_free_all(h);
    return GW_ENOMEM;
}

int gw_influx_writer_new(const gw_config *cfg, gw_spool *spool, gw_influx_writer **out)
{
    *out = NULL;
    if (!cfg || !cfg->influx.url || !cfg->influx.url[0])
        return GW_EINVAL;
    gw_influx_writer *w = gw_calloc(1, sizeof *w);
    if (!w)
        return GW_ENOMEM;
    w->cfg = cfg;
    w->ic = &cfg->influx;
    w->spool = spool;
    w->deadletter_fd = -1;
    w->rng = (unsigned)gw_mono_us() ^ (unsigned)getpid();
    pthread_mutex_init(&w->stats_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&w->hand_lock, NULL);
    pthread_cond_init(&w->hand_cond, &ca);
    pthread_condattr_destroy(&ca);
    int rc = GW_ECONFIG;
    if (gw_lp_precision_parse(w->ic->precision ? w->ic->precision : "us", &w->prec) != 0)
        goto fail;
    rc = build_devices(w);
    if (rc)
        goto fail;
    rc = gw_queue_new(QUEUE_CAPACITY, sizeof(gw_sample), GW_QUEUE_DROP_OLDEST, &w->queue);
    if (rc)
        goto fail;
    size_t bb = w->ic->batch_bytes > 0 ? (size_t)w->ic->batch_bytes : 1048576;
    w->batch_cap = bb + MAX_LINE;
    w->cur.buf = w->batch = gw_malloc(w->batch_cap);
    w->spare[0].buf = gw_malloc(w->batch_cap);
    w->spare[1].buf = gw_malloc(w->batch_cap);
    w->n_spare = 2;
    rc = GW_ENOMEM;
    if (!w->batch || !w->spare[0].buf || !w->spare[1].buf)
        goto fail;
    if (w->ic->gzip) {
        if (deflateInit2(&w->z, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            goto fail;
        w->z_ready = 1;
        if (deflateInit2(&w->fz, GZIP_LEVEL, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
            goto fail;
        w->fz_ready = 1;
    }
    rc = setup_curl(w);
    if (rc)
        goto fail;
    const char *dd = cfg->gateway.data_dir ? cfg->gateway.data_dir : ".";
    size_t n = strlen(dd) + sizeof "/influx-deadletter.lp";
    w->deadletter_path = gw_malloc(n);
    if (!w->deadletter_path)
        goto fail;
    snprintf(w->deadletter_path, n, "%s/influx-deadletter.lp", dd);
    *out = w;
    return 0;
fail:
    gw_influx_writer_free(w);
    return rc;
}

void gw_influx_writer_on_fault(gw_influx_writer *w, gw_influx_fault_cb cb, void *ctx)
{
    w->fault_cb = cb;
    w->fault_ctx = ctx;
}

void gw_influx_writer_free(gw_influx_writer *w)
{
    if (!w)
        return;
    gw_influx_writer_stop(w);
    if (w->curl)
        curl_easy_cleanup(w->curl);
    curl_slist_free_all(w->headers);
    if (w->auth_header) {
        memset(w->auth_header, 0, strlen(w->auth_header));
        gw_free(w->auth_header);
    }
    gw_free(w->url);
    if (w->z_ready)
        deflateEnd(&w->z);
    if (w->fz_ready)
        deflateEnd(&w->fz);
    gw_free(w->zbuf);
    gw_free(w->cur.buf);
    gw_free(w->cur.gz);
    for (int i = 0; i < w->n_spare; i++) {
        gw_free(w->spare[i].buf);
        gw_free(w->spare[i].gz);
    }
    for (int i = 0; i < w->n_ready; i++) {
        gw_free(w->ready[i].buf);
        gw_free(w->ready[i].gz);
    }
    pthread_mutex_destroy(&w->hand_lock);
    pthread_cond_destroy(&w->hand_cond);
    gw_queue_free(w->queue);
    for (size_t i = 0; w->devs && i < w->n_devs; i++) {
        gw_free(w->devs[i].tags);
        gw_free(w->devs[i].series);
    }
    gw_free(w->devs);
    gw_free(w->by_id);
    if (w->deadletter_fd >= 0)
        close(w->deadletter_fd);
    gw_free(w->deadletter_path);
    pthread_mutex_destroy(&w->stats_lock);
    gw_free(w);
}

/* ---- stats helpers -------------------------------------------------------------------- */

#define STAT_ADD(w, field, n)                                                                 \
    do {                                                                                      \
        pthread_mutex_lock(&(w)->stats_lock);                                                 \
        (w)->st.field += (n);                                                                 \
        pthread_mutex_unlock(&(w)->stats_lock);                                               \
    } while (0)

static void set_state(gw_influx_writer *w, gw_influx_state s, int status, const char *err)
{
    pthread_mutex_lock(&w->stats_lock);
    gw_influx_state old = w->st.state;
    w->st.state = s;
    w->st.last_status = status;
    if (err)
        snprintf(w->st.last_error, sizeof w->st.last_error, "%s", err);
    pthread_mutex_unlock(&w->stats_lock);
    if (old == s)
        return;
    if (s == GW_INFLUX_CONFIG_FAULT) {
        gw_error("influx", "configuration fault: %s (data kept in the spool)", err ? err : "");
        if (w->fault_cb)
            w->fault_cb(w->fault_ctx, 1, status, err ? err : "");
    } else if (old == GW_INFLUX_CONFIG_FAULT && s == GW_INFLUX_OK) {
        gw_notice("influx", "writes accepted again: configuration fault cleared");
        if (w->fault_cb)
            w->fault_cb(w->fault_ctx, 0, status, "recovered");
    }
}

/* ---- HTTP ----------------------------------------------------------------------------- */

/* Compress buf into *out (grown as needed) with the stream z, reset first so the
 * stream and its window are reused rather than set up per batch. */
static int gzip_into(z_stream *z, const char *buf, size_t len, unsigned char **out,
                     size_t *cap, size_t *out_len)
{
    size_t need = deflateBound(z, (uLong)len) + 32;
    if (need > *cap) {
        unsigned char *nb = gw_realloc(*out, need);
        if (!nb)
            return GW_ENOMEM;
        *out = nb;
        *cap = need;
    }
    deflateReset(z);
    z->next_in = (Bytef *)(uintptr_t)buf;
    z->avail_in = (uInt)len;
    z->next_out = *out;
    z->avail_out = (uInt)*cap;
    if (deflate(z, Z_FINISH) != Z_STREAM_END)
        return GW_EIO;
    *out_len = *cap - z->avail_out;
    return 0;
}

/* POST one body: buf, gzipped here when gzip is on unless pre (its gzip made on the
 * formatting thread, pre_len > 0) is given. Returns the HTTP status, or 0 on a network
 * error (err filled). */
static long http_post(gw_influx_writer *w, const char *buf, size_t len, const void *pre,
                      size_t pre_len, char *err, size_t errn)
{
    const void *body = buf;
    size_t blen = len;
    if (w->z_ready && pre && pre_len > 0) {
        body = pre;
        blen = pre_len;
    } else if (w->z_ready) {
        if (gzip_into(&w->z, buf, len, &w->zbuf, &w->zcap, &blen) != 0) {
            snprintf(err, errn, "gzip failed");
            return 0;
        }
        body = w->zbuf;
    }
    w->resp_len = 0;
    w->resp[0] = '\0';
    w->retry_after_s = -1;
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(w->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    CURLcode cc = curl_easy_perform(w->curl);
    pthread_mutex_lock(&w->stats_lock);
    w->st.requests++;
    w->st.bytes_sent += blen;
    pthread_mutex_unlock(&w->stats_lock);
    if (cc != CURLE_OK) {
        /* curl_easy_strerror names the failure class; the URL carries no secret
         * (credentials go in headers), but it is not logged anyway. */
        snprintf(err, errn, "network: %s", curl_easy_strerror(cc));
        STAT_ADD(w, net_errors, 1);
        return 0;
    }
    long code = 0;
    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &code);
    if (code < 200 || code > 299) {
        /* The body is InfluxDB's JSON error; it may echo a line but never a secret. */
        size_t k = w->resp_len;
        while (k > 0 && (w->resp[k - 1] == '\n' || w->resp[k - 1] == '\r'))
            w->resp[--k] = '\0';
        snprintf(err, errn, "HTTP %ld: %.120s", code, w->resp);
        for (char *p = err; *p; p++)
            if (*p == '\n' || *p == '\r')
                *p = ' ';
        STAT_ADD(w, http_errors, 1);
    }
    return code;
}

static void dead_letter(gw_influx_writer *w, const char *line, size_t len, int too_large)
{
    uint32_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += line[i] == '\n';
    if (too_large)
        STAT_ADD(w, dropped_too_large, n);
    else
        STAT_ADD(w, dropped_rejected, n);
    if (w->deadletter_fd < 0)
        w->deadletter_fd = open(w->deadletter_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
                                0640);
    struct stat sb;
    if (w->deadletter_fd < 0 || fstat(w->deadletter_fd, &sb) != 0 ||
        sb.st_size + (off_t)len > DEADLETTER_MAX || write(w->deadletter_fd, line, len) != (ssize_t)len) {
        STAT_ADD(w, dropped_deadletter, n);
        gw_complain(&w->complaint, 0, 10000, 600000, GW_LOG_WARN, "influx",
                    "dead-letter file %s not written (%s)", w->deadletter_path,
                    w->deadletter_fd < 0 ? strerror(errno) : "full or write error");
        return;
    }
    gw_warn("influx", "%u line%s refused by the server (%s): kept in %s", n, n == 1 ? "" : "s",
            too_large ? "too large" : "rejected", w->deadletter_path);
}

static uint32_t count_lines(const char *buf, size_t len)
{
    uint32_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += buf[i] == '\n';
    return n;
}

/* Send buf (whole lines; pre / pre_len: its gzip, or NULL). 400/413 are resolved here
 * by halving. On RETRY / CONFIG, *done holds how many leading bytes were written or
 * dead-lettered already (halves go in order), so only the rest is kept: no line is
 * counted twice. */
static send_rc send_range(gw_influx_writer *w, const char *buf, size_t len, uint32_t lines,
                          const void *pre, size_t pre_len, char *err, size_t errn, long *status,
                          size_t *done)
{
    long code = http_post(w, buf, len, pre, pre_len, err, errn);
    *status = code;
    if (code >= 200 && code <= 299) {
        pthread_mutex_lock(&w->stats_lock);
        w->st.points_written += lines;
        w->st.batches_written++;
        w->st.bytes_raw += len;
        pthread_mutex_unlock(&w->stats_lock);
        *done += len;
        return SEND_OK;
    }
    if (code == 0 || code == 429 || code >= 500 || code == 408)
        return SEND_RETRY;
    if (code == 400 || code == 413 || code == 422) {
        if (lines <= 1) {
            gw_warn("influx", "line refused: %s", err);
            dead_letter(w, buf, len, code == 413);
            *done += len;
            return SEND_OK;
        }
        /* Split at the newline nearest the middle line. */
        uint32_t half = lines / 2, seen = 0;
        size_t cut = 0;
        for (size_t i = 0; i < len; i++)
            if (buf[i] == '\n' && ++seen == half) {
                cut = i + 1;
                break;
            }
        STAT_ADD(w, splits, 1);
        send_rc r = send_range(w, buf, cut, half, NULL, 0, err, errn, status, done);
        if (r != SEND_OK)
            return r;
        return send_range(w, buf + cut, len - cut, count_lines(buf + cut, len - cut), NULL, 0,
                          err, errn, status, done);
    }
    return SEND_CONFIG; /* 401, 403, 404, other 3xx / 4xx: needs an operator */
}

static int jitter(gw_influx_writer *w, int ms)
{
    return ms / 2 + (int)(rand_r(&w->rng) % (unsigned)(ms / 2 + 1));
}

/* Try to write one batch now. Updates state and the back-off; *done as in send_range. */
static send_rc send_batch(gw_influx_writer *w, const char *buf, size_t len, uint32_t lines,
                          const void *pre, size_t pre_len, size_t *done)
{
    char err[200] = "";
    long status = 0;
    *done = 0;
    send_rc r = send_range(w, buf, len, lines, pre, pre_len, err, sizeof err, &status, done);
    if (r == SEND_OK) {
        w->attempts = 0;
        w->backoff_ms = 0;
        w->next_attempt = 0;
        set_state(w, GW_INFLUX_OK, (int)status, NULL);
        gw_complain_clear(&w->complaint, "influx", "InfluxDB writes succeed again");
        return r;
    }
    w->attempts++;
    w->backoff_ms = w->backoff_ms ? w->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (w->backoff_ms > BACKOFF_MAX_MS)
        w->backoff_ms = BACKOFF_MAX_MS;
    int64_t delay = jitter(w, w->backoff_ms);
    if (w->retry_after_s >= 0 && (status == 429 || status == 503))
        delay = w->retry_after_s * 1000 > delay ? w->retry_after_s * 1000 : delay;
    w->next_attempt = gw_mono_ms() + delay;
    STAT_ADD(w, retries, 1);
    if (r == SEND_CONFIG)
        set_state(w, GW_INFLUX_CONFIG_FAULT, (int)status, err);
    else {
        set_state(w, GW_INFLUX_RETRYING, (int)status, err);
        gw_complain(&w->complaint, 0, 1000, 300000, GW_LOG_WARN, "influx",
                    "write failed (%s): retrying in %lld ms, data spooled", err,
                    (long long)delay);
    }
    return r;
}

/* ---- the batch pipeline --------------------------------------------------------------- */

static void spool_batch(gw_influx_writer *w, const char *buf, size_t len, uint32_t lines)
{
    if (!w->spool) {
        STAT_ADD(w, dropped_spool, lines);
        return;
    }
    int rc = gw_spool_append(w->spool, buf, len, lines);
    if (rc != 0 && rc != GW_EFULL)
        gw_complain(&w->complaint, 0, 1000, 300000, GW_LOG_ERROR, "influx",
                    "spool append failed (%s): %u lines lost", gw_strerror(rc), lines);
}

static size_t spool_count(gw_influx_writer *w) { return w->spool ? gw_spool_count(w->spool) : 0; }

/* Replay spooled batches oldest first for at most DRAIN_BUDGET_MS. */
static void drain_spool(gw_influx_writer *w)
{
    int64_t until = gw_mono_ms() + DRAIN_BUDGET_MS;
    while (!atomic_load(&w->stopping) && spool_count(w) > 0 && gw_mono_ms() >= w->next_attempt &&
           gw_mono_ms() < until) {
        gw_spool_batch b;
        int rc = gw_spool_peek(w->spool, &b);
        if (rc != 0)
            break;
        size_t done = 0;
        send_rc r = send_batch(w, b.data, b.len, b.lines, NULL, 0, &done);
        if (r == SEND_OK)
            gw_spool_delete(w->spool, b.id);
        else if (done > 0 && done < b.len)
            gw_spool_replace(w->spool, b.id, b.data + done, b.len - done,
                             count_lines(b.data + done, b.len - done));
        gw_spool_batch_release(&b);
        if (r != SEND_OK)
            break;
    }
}

/* Sender thread: a full batch goes straight to the server when nothing is spooled,
 * else behind the spooled ones; at stop, always to the spool. */
static void deliver(gw_influx_writer *w, const batch_buf *b)
{
    if (!atomic_load(&w->stopping) && spool_count(w) == 0 && gw_mono_ms() >= w->next_attempt) {
        size_t done = 0;
        if (send_batch(w, b->buf, b->len, b->lines, b->gz, b->gz_len, &done) != SEND_OK &&
            done < b->len)
            spool_batch(w, b->buf + done, b->len - done,
                        count_lines(b->buf + done, b->len - done));
    } else
        spool_batch(w, b->buf, b->len, b->lines);
}

/* Formatting thread: hand the live batch to the sender. Three buffers circulate (one
 * being filled, one on the wire, one ready), so this waits only while the sender is
 * busy with one batch and holds another. */
static void flush_batch(gw_influx_writer *w)
{
    if (w->batch_lines == 0)
        return;
    w->cur.len = w->batch_len;
    w->cur.lines = w->batch_lines;
    w->cur.gz_len = 0;
    /* Compress here, while the sender has the previous batch on the wire, so the
     * sender goes from one request to the next without stopping to compress. A batch
     * bound for the spool (stopping, or behind spooled ones) is compressed for nothing,
     * which only happens while the server is away. On failure the sender compresses. */
    if (w->fz_ready && !atomic_load(&w->stopping) &&
        gzip_into(&w->fz, w->cur.buf, w->cur.len, &w->cur.gz, &w->cur.gz_cap, &w->cur.gz_len))
        w->cur.gz_len = 0;
    pthread_mutex_lock(&w->hand_lock);
    while (w->n_spare == 0)
        pthread_cond_wait(&w->hand_cond, &w->hand_lock);
    w->ready[w->n_ready++] = w->cur;
    w->cur = w->spare[--w->n_spare];
    w->spare[w->n_spare] = (batch_buf){0};
    pthread_cond_broadcast(&w->hand_cond);
    pthread_mutex_unlock(&w->hand_lock);
    w->batch = w->cur.buf;
    w->batch_len = 0;
    w->batch_lines = 0;
}

static void *sender_main(void *arg)
{
    gw_influx_writer *w = arg;
    for (;;) {
        pthread_mutex_lock(&w->hand_lock);
        if (w->n_ready == 0 && !w->fmt_done) {
            int64_t wait = 1000;
            if (spool_count(w) > 0) {
                int64_t t = w->next_attempt - gw_mono_ms();
                wait = t < 0 ? 0 : (t < wait ? t : wait);
            }
            if (wait > 0) {
                struct timespec ts;
                gw_mono_deadline(&ts, wait);
                pthread_cond_timedwait(&w->hand_cond, &w->hand_lock, &ts);
            }
        }
        int have = w->n_ready > 0;
        batch_buf b = {0};
        if (have) {
            b = w->ready[0];
            w->ready[0] = w->ready[1];
            w->n_ready--;
        }
        int done = !have && w->fmt_done;
        pthread_mutex_unlock(&w->hand_lock);
        if (have) {
            deliver(w, &b);
            pthread_mutex_lock(&w->hand_lock);
            w->spare[w->n_spare++] = b;
            pthread_cond_broadcast(&w->hand_cond);
            pthread_mutex_unlock(&w->hand_lock);
        }
        if (done)
            break;
        drain_spool(w);
    }
    return NULL;
}

static void add_line(gw_influx_writer *w, const dev_meta *m, const gw_lp_field *f, size_t nf,
                     int64_t ts_us)
{
    gw_lp_skips sk = {0};
    for (int attempt = 0; attempt < 2; attempt++) {
        int n = m->series ? gw_lp_format_line(w->batch + w->batch_len, w->batch_cap - w->batch_len,
                                              m->series, m->series_len, f, nf, ts_us, w->prec, &sk)
                          : GW_EFULL;
        if (n > 0)
            sk.bad_key += m->series_skips;
        if (n > 0) {
            if (w->batch_lines == 0)
                w->batch_deadline = gw_mono_ms() + (w->ic->flush_ms > 0 ? w->ic->flush_ms : 1000);
            w->batch_len += (size_t)n;
            w->batch_lines++;
            break;
        }
        if (n != GW_EFULL || attempt == 1 || w->batch_lines == 0 || !m->series) {
            if (n == GW_EFULL)
                STAT_ADD(w, dropped_too_large, 1);
            break;
        }
        flush_batch(w);
        sk = (gw_lp_skips){0};
    }
    if (sk.nonfinite || sk.bad_key)
        STAT_ADD(w, dropped_nonfinite, sk.nonfinite + sk.bad_key);
    size_t bl = w->ic->batch_lines > 0 ? (size_t)w->ic->batch_lines : 5000;
    size_t bb = w->ic->batch_bytes > 0 ? (size_t)w->ic->batch_bytes : 1048576;
    if (w->batch_lines >= bl || w->batch_len >= bb)
        flush_batch(w);
}

/* Emit the pending line (the samples of one device at one timestamp), if any. */
static void emit_pending(gw_influx_writer *w)
{
    if (w->n_pend == 0)
        return;
    gw_lp_field f[MAX_FIELDS];
    for (size_t i = 0; i < w->n_pend; i++) {
        const gw_sample *s = w->pend[i];
        gw_lp_field *x = &f[i];
        memset(x, 0, sizeof *x);
        x->key = s->field;
        if (s->type == GW_V_BOOL) {
            x->type = GW_LP_BOOL;
            x->b = s->value != 0;
        } else if (s->type == GW_V_TEXT) {
            x->type = GW_LP_STRING;
            x->s = s->text;
        } else {
            x->type = GW_LP_FLOAT;
            x->f = s->value;
        }
    }
    size_t nf = w->n_pend;
    w->n_pend = 0;
    add_line(w, w->pend_dev, f, nf, w->pend[0]->ts_us);
}

/* Group samples into lines: consecutive samples of one device with one timestamp
 * (across pops) make one line, so a point is never split into two lines. */
static void consume(gw_influx_writer *w, const gw_sample *s, size_t n)
{
    uint64_t bad_q = 0, unknown = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i].quality != GW_Q_GOOD) {
            bad_q++;
            continue;
        }
        const dev_meta *m = find_device(w, &s[i]);
        if (!m) {
            unknown++;
            continue;
        }
        if (w->n_pend && (m != w->pend_dev || s[i].ts_us != w->pend[0]->ts_us ||
                          w->n_pend == MAX_FIELDS))
            emit_pending(w);
        w->pend_dev = m;
        w->pend[w->n_pend++] = &s[i];
    }
    /* The next pop overwrites s: a line still open keeps copies of its samples. */
    for (size_t i = 0; i < w->n_pend; i++)
        if (w->pend[i] != &w->pend_keep[i]) {
            w->pend_keep[i] = *w->pend[i];
            w->pend[i] = &w->pend_keep[i];
        }
    pthread_mutex_lock(&w->stats_lock);
    w->st.samples_in += n;
    w->st.dropped_quality += bad_q;
    w->st.dropped_unknown_device += unknown;
    pthread_mutex_unlock(&w->stats_lock);
}

static void *writer_main(void *arg)
{
    gw_influx_writer *w = arg;
    gw_sample *buf = gw_malloc(POP_CHUNK * sizeof *buf);
    if (!buf) {
        gw_error("influx", "writer thread out of memory");
        return NULL;
    }
    for (;;) {
        int64_t now = gw_mono_ms();
        int64_t wait = 1000;
        if (w->batch_lines)
            wait = w->batch_deadline - now;
        if (wait < 0)
            wait = 0;
        /* A line still collecting fields is complete once the queue has been quiet for
         * PEND_QUIET_MS: not sooner (emitting it on an instant timeout would split one
         * point into two lines), and not later (waiting for the batch deadline held the
         * last line of every burst, and a batch it would have filled, for flush_ms). */
        if (w->n_pend)
            wait = PEND_QUIET_MS;
        int n = gw_queue_pop_many(w->queue, buf, POP_CHUNK, (int)wait);
        if (n > 0) {
            consume(w, buf, (size_t)n);
            if (n < LINGER_BELOW && !atomic_load(&w->stopping))
                usleep(LINGER_US);
        } else if (n == GW_ECLOSED)
            break;
        else
            emit_pending(w); /* the queue went quiet: the line is complete */
        if (w->batch_lines && gw_mono_ms() >= w->batch_deadline)
            flush_batch(w); /* the pending line goes into the next batch */
    }
    emit_pending(w);
    flush_batch(w);
    pthread_mutex_lock(&w->hand_lock);
    w->fmt_done = 1;
    pthread_cond_broadcast(&w->hand_cond);
    pthread_mutex_unlock(&w->hand_lock);
    gw_free(buf);
    return NULL;
}

int gw_influx_writer_start(gw_influx_writer *w)
{
    if (w->started)
        return 0;
    set_state(w, GW_INFLUX_OK, 0, NULL);
    if (pthread_create(&w->sender, NULL, sender_main, w) != 0) {
        set_state(w, GW_INFLUX_IDLE, 0, NULL);
        return GW_EIO;
    }
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        pthread_mutex_lock(&w->hand_lock);
        w->fmt_done = 1;
        pthread_cond_broadcast(&w->hand_cond);
        pthread_mutex_unlock(&w->hand_lock);
        pthread_join(w->sender, NULL);
        set_state(w, GW_INFLUX_IDLE, 0, NULL);
        return GW_EIO;
    }
    pthread_setname_np(w->thread, "cg-influx-fmt");
    pthread_setname_np(w->sender, "cg-influx-send");
    w->started = 1;
    return 0;
}

void gw_influx_writer_stop(gw_influx_writer *w)
{
    if (!w || !w->queue)
        return;
    atomic_store(&w->stopping, 1);
    gw_queue_shutdown(w->queue);
    if (w->started) {
        pthread_join(w->thread, NULL);
        pthread_join(w->sender, NULL);
        w->started = 0;
        pthread_mutex_lock(&w->stats_lock);
        w->st.state = GW_INFLUX_IDLE;
        pthread_mutex_unlock(&w->stats_lock);
    }
}

int gw_influx_writer_submit(gw_influx_writer *w, const gw_sample *samples, size_t n)
{
    if (n == 0)
        return 0;
    int rc = gw_queue_push_many(w->queue, samples, n, 0);
    return rc == GW_ECLOSED ? rc : 0;
}

void gw_influx_writer_stats(gw_influx_writer *w, gw_influx_stats *out)
{
    gw_queue_stats qs;
    gw_queue_stats_get(w->queue, &qs);
    pthread_mutex_lock(&w->stats_lock);
    *out = w->st;
    pthread_mutex_unlock(&w->stats_lock);
    out->dropped_queue = qs.dropped;
    out->queue_depth = qs.depth;
    if (w->spool) {
        gw_spool_stats ss;
        gw_spool_stats_get(w->spool, &ss);
        out->spool_bytes = ss.bytes;
        out->spool_batches = ss.batches;
        out->spool_lines = ss.lines;
        out->dropped_spool += ss.dropped_lines;
    }
}
