/* The local HTTP server (libmicrohttpd): JSON API, dashboard page, Prometheus metrics.
 *
 * Routes:
 *   GET  /                    dashboard page (embedded)
 *   GET  /static/<file>       page assets; /static/dygraph.min.js(.css) from Debian's libjs-dygraphs
 *   GET  /api/devices         devices with health, last values, quality and age
 *   GET  /api/alarms          active alarms with state
 *   GET  /api/events?limit=N  recent events, newest first
 *   GET  /api/history?device=ID&field=F&minutes=M   one point's recent history
 *   POST /api/cmd/<verb>      alarm command (ack, shelve, unshelve, out_of_service,
 *                             in_service), JSON body as on MQTT; answers the reply JSON
 *   GET  /healthz             "ok" (200) or the reason (503)
 *   GET  /metrics             Prometheus text format
 * Bound to 127.0.0.1 by default; when a token is configured every route but /healthz
 * requires "Authorization: Bearer <token>" (config refuses a non-loopback address
 * without a token).
 *
 * Thread: handlers run on libmicrohttpd's internal thread; every hook must be safe to
 * call from it. Strings returned by hooks are transferred (freed with gw_free). */
#ifndef CITYGATE_HTTP_SERVER_H
#define CITYGATE_HTTP_SERVER_H

#include "config.h"
#include "store.h"

typedef struct gw_http_hooks {
    /* Prometheus text for /metrics. */
    char *(*metrics)(void *ctx);
    /* Run an alarm command through the same path as MQTT; returns the reply JSON. */
    char *(*command)(void *ctx, const char *verb, const char *body, size_t len);
    /* NULL when healthy, else a static reason string. */
    const char *(*unhealthy)(void *ctx);
    void *ctx;
} gw_http_hooks;

typedef struct gw_http gw_http;

/* Start serving cfg->http (cfg and store borrowed; must outlive the server). */
int gw_http_start(const gw_config *cfg, gw_store *store, const gw_http_hooks *hooks,
                  gw_http **out);
void gw_http_stop(gw_http *h);
/* The port actually bound (useful with port 0). */
int gw_http_port(const gw_http *h);

typedef struct gw_http_stats { uint64_t requests, errors, unauthorized; } gw_http_stats;
void gw_http_stats_get(gw_http *h, gw_http_stats *out);

#endif
