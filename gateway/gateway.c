/* citygate run: wire the pipeline (sources → sample queue → engine → outbox → upstream,
 * samples → store / InfluxDB spool), run until SIGTERM / SIGINT, stop cleanly. */
#include "check.h"
#include "cli.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "queue.h"
#include "sample.h"
#include "timeutil.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <time.h>

static const char run_usage[] =
    "usage: citygate run -c FILE [--log-level LEVEL]\n"
    "\n"
    "Run the gateway in the foreground until SIGTERM or SIGINT. Under systemd it\n"
    "reports readiness and feeds the watchdog (Type=notify).\n";

#define SAMPLE_QUEUE_CAPACITY 65536

typedef struct gw_gateway {
    gw_config *cfg;
    gw_queue *samples;
} gw_gateway;

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

static int gateway_start(gw_gateway *gw)
{
    int rc = make_data_dir(gw->cfg->gateway.data_dir);
    if (rc)
        return rc;
    rc = gw_queue_new(SAMPLE_QUEUE_CAPACITY, sizeof(gw_sample), GW_QUEUE_BLOCK, &gw->samples);
    if (rc)
        return rc;
    return 0;
}

static void gateway_stop(gw_gateway *gw)
{
    if (gw->samples) {
        gw_queue_shutdown(gw->samples);
        gw_queue_free(gw->samples);
        gw->samples = NULL;
    }
}

/* Wait for SIGTERM / SIGINT, feeding the systemd watchdog meanwhile. */
static int wait_for_stop(const sigset_t *set)
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
        if (watchdog)
            sd_notify(0, "WATCHDOG=1");
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

    int sig = wait_for_stop(&set);
    gw_notice("gateway", "%s received, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    sd_notify(0, "STOPPING=1");

stop:
    gateway_stop(&gw);
    gw_config_free(gw.cfg);
    gw_notice("gateway", "stopped");
    return exit_code;
}
