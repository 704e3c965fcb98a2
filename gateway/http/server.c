#include "http/server.h"

#include "alloc.h"
#include "error.h"
#include "http/assets.h"
#include "log.h"
#include "timeutil.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX (16 * 1024)
#define DYGRAPH_DIR "/usr/share/javascript/dygraphs"

typedef struct asset {
    const char *name;
    const char *type;
    unsigned char *data; /* owned when loaded from disk */
    size_t size;
} asset;

struct gw_http {
    struct MHD_Daemon *mhd;
    const gw_config *cfg;
    gw_store *store;
    gw_http_hooks hooks;
    asset dygraph_js, dygraph_css;
    int port;
    atomic_ullong requests, errors, unauthorized;
    gw_complaint body_complaint;
};

typedef struct post_body {
    char *data;
    size_t len;
    int too_big;
} post_body;

static const char *content_type(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot)
        return "application/octet-stream";
    if (strcmp(dot, ".html") == 0)
        return "text/html; charset=utf-8";
    if (strcmp(dot, ".js") == 0)
        return "text/javascript; charset=utf-8";
    if (strcmp(dot, ".css") == 0)
        return "text/css; charset=utf-8";
    if (strcmp(dot, ".json") == 0)
        return "application/json";
    return "application/octet-stream";
}

static void load_asset(asset *a, const char *path, const char *name)
{
    a->name = name;
    a->type = content_type(name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        gw_warn("http", "%s not found: the dashboard chart needs Debian's libjs-dygraphs", path);
        return;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (n > 0 && n < 8 * 1024 * 1024 && (a->data = gw_malloc((size_t)n))) {
        a->size = fread(a->data, 1, (size_t)n, f);
    }
    fclose(f);
}

static enum MHD_Result reply_mode(struct MHD_Connection *c, unsigned status, const char *type,
                                  const void *data, size_t len, enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)data, mode);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type,
                             const void *data, size_t len)
{
    return reply_mode(c, status, type, data, len, MHD_RESPMEM_MUST_COPY);
}

/* Page assets live as long as the server: served without a copy per request. */
static enum MHD_Result reply_static(struct MHD_Connection *c, const char *type,
                                    const void *data, size_t len)
{
    return reply_mode(c, 200, type, data, len, MHD_RESPMEM_PERSISTENT);
}

/* Reply with a gw_malloc'd string, freeing it; NULL answers 500. */
static enum MHD_Result reply_owned(gw_http *h, struct MHD_Connection *c, unsigned status,
                                   const char *type, char *text)
{
    if (!text) {
        atomic_fetch_add(&h->errors, 1);
        return reply(c, 500, "application/json", "{\"error\":\"internal\"}", 20);
    }
    enum MHD_Result r = reply(c, status, type, text, strlen(text));
    gw_free(text);
    return r;
}

static enum MHD_Result reply_error(gw_http *h, struct MHD_Connection *c, unsigned status,
                                   const char *msg)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "{\"ok\":false,\"error\":\"%s\"}", msg);
    if (status >= 500)
        atomic_fetch_add(&h->errors, 1);
    return reply(c, status, "application/json", buf, (size_t)n);
}

/* Constant-time comparison, so the token cannot be guessed byte by byte. */
static int token_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la; i++)
        diff |= (unsigned char)(a[i] ^ b[i % (lb ? lb : 1)]);
    return diff == 0;
}

static int authorized(gw_http *h, struct MHD_Connection *c)
{
    const char *token = h->cfg->http.token;
    if (!token || !token[0])
        return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (auth && strncmp(auth, "Bearer ", 7) == 0 && token_equal(auth + 7, token))
        return 1;
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "token");
    return q && token_equal(q, token);
}

static enum MHD_Result serve_static(gw_http *h, struct MHD_Connection *c, const char *name)
{
    if (strcmp(name, "dygraph.min.js") == 0 || strcmp(name, "dygraph.min.css") == 0) {
        const asset *a = strcmp(name, "dygraph.min.js") == 0 ? &h->dygraph_js : &h->dygraph_css;
        if (!a->data)
            return reply_error(h, c, 404, "chart library not installed");
        return reply_static(c, a->type, a->data, a->size);
    }
    for (const gw_embedded_file *f = gw_embedded_files; f->name; f++)
        if (strcmp(f->name, name) == 0)
            return reply_static(c, content_type(f->name), f->data, f->size);
    return reply_error(h, c, 404, "not found");
}

static int is_page(const char *url)
{
    return strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0 ||
           strncmp(url, "/static/", 8) == 0;
}

static int is_get_route(const char *url)
{
    static const char *const routes[] = {"/api/devices", "/api/alarms", "/api/events",
                                         "/api/history", "/metrics", "/healthz", NULL};
    for (const char *const *r = routes; *r; r++)
        if (strcmp(url, *r) == 0)
            return 1;
    return is_page(url);
}

static enum MHD_Result serve_page(gw_http *h, struct MHD_Connection *c, const char *method,
                                  const char *url)
{
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return reply_error(h, c, 405, "method not allowed");
    if (strncmp(url, "/static/", 8) == 0)
        return serve_static(h, c, url + 8);
    return serve_static(h, c, "index.html");
}

static enum MHD_Result handle_get(gw_http *h, struct MHD_Connection *c, const char *url)
{
    int64_t now = gw_now_us();
    if (strcmp(url, "/api/devices") == 0)
        return reply_owned(h, c, 200, "application/json", gw_store_devices_json(h->store, now));
    if (strcmp(url, "/api/alarms") == 0)
        return reply_owned(h, c, 200, "application/json", gw_store_alarms_json(h->store));
    if (strcmp(url, "/api/events") == 0) {
        const char *l = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "limit");
        long limit = l ? strtol(l, NULL, 10) : 50;
        if (limit <= 0 || limit > 1000)
            limit = 50;
        return reply_owned(h, c, 200, "application/json",
                           gw_store_events_json(h->store, (size_t)limit));
    }
    if (strcmp(url, "/api/history") == 0) {
        const char *dev = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "device");
        const char *field = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "field");
        const char *m = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "minutes");
        long minutes = m ? strtol(m, NULL, 10) : 60;
        if (!dev || !field)
            return reply_error(h, c, 400, "device and field are required");
        if (minutes <= 0 || minutes > 7 * 24 * 60)
            minutes = 60;
        int not_found = 0;
        char *js = gw_store_history_json(h->store, dev, field, (int)minutes, now, &not_found);
        if (not_found)
            return reply_error(h, c, 404, "no such point");
        return reply_owned(h, c, 200, "application/json", js);
    }
    if (strcmp(url, "/metrics") == 0 && h->hooks.metrics)
        return reply_owned(h, c, 200, "text/plain; version=0.0.4; charset=utf-8",
                           h->hooks.metrics(h->hooks.ctx));
    if (strncmp(url, "/api/cmd/", 9) == 0)
        return reply_error(h, c, 405, "method not allowed");
    return reply_error(h, c, 404, "not found");
}

static enum MHD_Result handler(void *cls, struct MHD_Connection *c, const char *url,
                               const char *method, const char *version, const char *upload,
                               size_t *upload_size, void **con_cls)
{
    (void)version;
    gw_http *h = cls;
    int is_post = strcmp(method, "POST") == 0;

    if (is_post) {
        /* First call: set up the body; middle calls: append; last call: handle. */
        post_body *b = *con_cls;
        if (!b) {
            b = gw_calloc(1, sizeof *b);
            if (!b)
                return MHD_NO;
            *con_cls = b;
            /* A declared length over the limit is refused before the body is read
             * (with "Expect: 100-continue" the client does not even send it). */
            const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (!cl || strtoull(cl, NULL, 10) <= BODY_MAX)
                return MHD_YES;
            b->too_big = 1;
        } else if (*upload_size) {
            if (b->len + *upload_size > BODY_MAX) {
                b->too_big = 1;
            } else {
                char *d = gw_realloc(b->data, b->len + *upload_size + 1);
                if (!d)
                    return MHD_NO;
                memcpy(d + b->len, upload, *upload_size);
                b->len += *upload_size;
                d[b->len] = '\0';
                b->data = d;
            }
            *upload_size = 0;
            return MHD_YES;
        }
    }

    atomic_fetch_add(&h->requests, 1);
    if (strcmp(url, "/healthz") == 0) {
        const char *why = h->hooks.unhealthy ? h->hooks.unhealthy(h->hooks.ctx) : NULL;
        return why ? reply(c, 503, "text/plain", why, strlen(why)) : reply(c, 200, "text/plain", "ok\n", 3);
    }
    /* The page and its assets hold no data and cannot carry a header when the browser
     * loads them; the data behind /api and /metrics is what the token protects. */
    if (!is_post && is_page(url))
        return serve_page(h, c, method, url);
    if (!authorized(h, c)) {
        atomic_fetch_add(&h->unauthorized, 1);
        return reply_error(h, c, 401, "unauthorized");
    }
    if (is_post) {
        post_body *b = *con_cls;
        if (strncmp(url, "/api/cmd/", 9) != 0)
            return is_get_route(url) ? reply_error(h, c, 405, "method not allowed")
                                     : reply_error(h, c, 404, "not found");
        if (b->too_big) {
            gw_complain(&h->body_complaint, 0, 10000, 600000, GW_LOG_WARN, "http",
                        "command body over %d bytes refused", BODY_MAX);
            return reply_error(h, c, 413, "body too large");
        }
        if (!h->hooks.command)
            return reply_error(h, c, 503, "commands unavailable");
        char *r = h->hooks.command(h->hooks.ctx, url + 9, b->data ? b->data : "", b->len);
        return reply_owned(h, c, 200, "application/json", r);
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return is_get_route(url) || strncmp(url, "/api/cmd/", 9) == 0
                   ? reply_error(h, c, 405, "method not allowed")
                   : reply_error(h, c, 404, "not found");
    return handle_get(h, c, url);
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)c;
    (void)toe;
    post_body *b = *con_cls;
    if (b) {
        gw_free(b->data);
        gw_free(b);
        *con_cls = NULL;
    }
}

int gw_http_start(const gw_config *cfg, gw_store *store, const gw_http_hooks *hooks,
                  gw_http **out)
{
    gw_http *h = gw_calloc(1, sizeof *h);
    if (!h)
        return GW_ENOMEM;
    h->cfg = cfg;
    h->store = store;
    if (hooks)
        h->hooks = *hooks;
    load_asset(&h->dygraph_js, DYGRAPH_DIR "/dygraph.min.js", "dygraph.min.js");
    load_asset(&h->dygraph_css, DYGRAPH_DIR "/dygraph.min.css", "dygraph.min.css");

    /* The config accepts "localhost" for the loopback address; no resolver here. */
    const char *listen = cfg->http.listen && strcmp(cfg->http.listen, "localhost") != 0
                             ? cfg->http.listen : "127.0.0.1";
    struct sockaddr_in sa4 = {0};
    struct sockaddr_in6 sa6 = {0};
    struct sockaddr *sa;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
    if (inet_pton(AF_INET, listen, &sa4.sin_addr) == 1) {
        sa4.sin_family = AF_INET;
        sa4.sin_port = htons((uint16_t)cfg->http.port);
        sa = (struct sockaddr *)&sa4;
    } else if (inet_pton(AF_INET6, listen, &sa6.sin6_addr) == 1) {
        sa6.sin6_family = AF_INET6;
        sa6.sin6_port = htons((uint16_t)cfg->http.port);
        sa = (struct sockaddr *)&sa6;
        flags |= MHD_USE_IPv6;
    } else {
        gw_error("http", "listen address '%s' is not an IP address", listen);
        goto fail;
    }
    h->mhd = MHD_start_daemon(flags, (uint16_t)cfg->http.port, NULL, NULL, handler, h,
                              MHD_OPTION_SOCK_ADDR, sa,
                              MHD_OPTION_NOTIFY_COMPLETED, request_done, h,
                              MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                              /* A command waits for the engine thread (up to 5 s): a
                               * small pool keeps the page and /metrics answering. */
                              MHD_OPTION_THREAD_POOL_SIZE, (unsigned)4,
                              MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)30,
                              MHD_OPTION_END);
    if (!h->mhd) {
        gw_error("http", "cannot listen on %s:%d", listen, cfg->http.port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : cfg->http.port;
    gw_notice("http", "dashboard on http://%s%s%s:%d/", strchr(listen, ':') ? "[" : "", listen,
              strchr(listen, ':') ? "]" : "", h->port);
    *out = h;
    return 0;

fail:
    gw_free(h->dygraph_js.data);
    gw_free(h->dygraph_css.data);
    gw_free(h);
    return GW_EIO;
}

void gw_http_stop(gw_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->mhd);
    gw_free(h->dygraph_js.data);
    gw_free(h->dygraph_css.data);
    gw_free(h);
}

int gw_http_port(const gw_http *h) { return h->port; }

void gw_http_stats_get(gw_http *h, gw_http_stats *out)
{
    out->requests = atomic_load(&h->requests);
    out->errors = atomic_load(&h->errors);
    out->unauthorized = atomic_load(&h->unauthorized);
}
