/* citygate-sim: a simulated field for the demo, the tests and the benchmarks.
 * Serves the Modbus devices of a citygate config (TCP, and RTU on ptys), publishes its
 * MQTT devices, and plays a scenario of faults over time (docs/simulator.md). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "alloc.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "sample.h"
#include "sim_model.h"
#include "sim_mqtt.h"
#include "sim_scenario.h"
#include "sim_server.h"
#include "timeutil.h"

#define AREA "sim"
#define TICK_MS 100
#define MAX_OPTS 64

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: citygate-sim -c FILE [--scenario FILE] [--rtu BUS_ID=PTY_PATH ...]\n"
        "                    [--speed X] [--seed N] [--listen-override BUS_ID=PORT ...]\n"
        "                    [--unknown-unit exception|silent] [--log-level LEVEL]\n"
        "\n"
        "Serves every Modbus device of the citygate config FILE (each TCP bus on its\n"
        "host:port, each RTU bus given with --rtu on that pty), publishes its MQTT devices\n"
        "as ChirpStack v4 uplinks, and plays the scenario's timed faults.\n"
        "\n"
        "  -c, --config FILE          citygate config (buses, devices, profiles)\n"
        "  -s, --scenario FILE        scenario JSON (docs/simulator.md)\n"
        "  --rtu BUS_ID=PATH          serve RTU bus BUS_ID as the slave on PATH (repeatable)\n"
        "  --speed X                  scenario time runs X times faster (default 1)\n"
        "  --seed N                   random-walk seed (default 1): same seed, same values\n"
        "  --listen-override ID=PORT  listen on PORT instead of TCP bus ID's port (repeatable)\n"
        "  --unknown-unit MODE        TCP request for an unknown unit: exception (0x0B, default)\n"
        "                             or silent\n"
        "  --log-level LEVEL          error, warn, notice, info (default), debug\n"
        "\n"
        "Prints \"citygate-sim: ready\" on stdout once every listener is up. SIGINT/SIGTERM\n"
        "stop it cleanly. Exit 0, 1 on a runtime failure, 2 on a config or scenario error.\n");
}

/* "ID=VALUE": the id is copied into idbuf (argv stays intact for ps). */
static int split_eq(const char *arg, char *idbuf, size_t n, const char **val)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg || !eq[1] || (size_t)(eq - arg) >= n)
        return GW_EINVAL;
    memcpy(idbuf, arg, (size_t)(eq - arg));
    idbuf[eq - arg] = '\0';
    *val = eq + 1;
    return 0;
}

static void raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static int64_t min_due(int64_t a, int64_t b)
{
    if (a < 0) return b;
    if (b < 0) return a;
    return a < b ? a : b;
}

int main(int argc, char **argv)
{
    const char *config = NULL, *scenario = NULL;
    double speed = 1.0;
    uint64_t seed = 1;
    int unknown_silent = 0;
    sim_server_rtu rtu[MAX_OPTS];
    sim_server_override ovr[MAX_OPTS];
    size_t n_rtu = 0, n_ovr = 0;
    static char ids[2 * MAX_OPTS][GW_ID_MAX];
    gw_log_level level = GW_LOG_INFO;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return GW_EXIT_OK;
        } else if (strcmp(a, "--version") == 0) {
            printf("citygate-sim %s\n", CITYGATE_VERSION);
            return GW_EXIT_OK;
        }
        if (!v) {
            fprintf(stderr, "citygate-sim: %s: missing value (or unknown option)\n", a);
            usage(stderr);
            return GW_EXIT_CONFIG;
        }
        i++;
        const char *val;
        char *end;
        if (strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) {
            config = v;
        } else if (strcmp(a, "-s") == 0 || strcmp(a, "--scenario") == 0) {
            scenario = v;
        } else if (strcmp(a, "--speed") == 0) {
            speed = strtod(v, &end);
            if (*end || !(speed > 0) || speed > 1e6) {
                fprintf(stderr, "citygate-sim: --speed: must be a number > 0, got '%s'\n", v);
                return GW_EXIT_CONFIG;
            }
        } else if (strcmp(a, "--seed") == 0) {
            errno = 0;
            seed = strtoull(v, &end, 0);
            if (*end || errno) {
                fprintf(stderr, "citygate-sim: --seed: must be an integer, got '%s'\n", v);
                return GW_EXIT_CONFIG;
            }
        } else if (strcmp(a, "--rtu") == 0 || strcmp(a, "--listen-override") == 0) {
            int is_rtu = a[2] == 'r';
            char *id = ids[n_rtu + n_ovr < 2 * MAX_OPTS ? n_rtu + n_ovr : 0];
            if ((is_rtu ? n_rtu : n_ovr) == MAX_OPTS || split_eq(v, id, GW_ID_MAX, &val) != 0) {
                fprintf(stderr, "citygate-sim: %s: expected BUS_ID=%s, got '%s'\n", a,
                        is_rtu ? "PTY_PATH" : "PORT", v);
                return GW_EXIT_CONFIG;
            }
            if (is_rtu) {
                rtu[n_rtu++] = (sim_server_rtu){.bus = id, .path = val};
            } else {
                long port = strtol(val, &end, 10);
                if (*end || port < 0 || port > 65535) {
                    fprintf(stderr, "citygate-sim: %s: port must be 0..65535, got '%s'\n", a, val);
                    return GW_EXIT_CONFIG;
                }
                ovr[n_ovr++] = (sim_server_override){.bus = id, .port = (int)port};
            }
        } else if (strcmp(a, "--unknown-unit") == 0) {
            if (strcmp(v, "silent") == 0)
                unknown_silent = 1;
            else if (strcmp(v, "exception") != 0) {
                fprintf(stderr, "citygate-sim: --unknown-unit: exception or silent, got '%s'\n", v);
                return GW_EXIT_CONFIG;
            }
        } else if (strcmp(a, "--log-level") == 0) {
            if (gw_log_parse_level(v, &level) != 0) {
                fprintf(stderr, "citygate-sim: --log-level: unknown level '%s'\n", v);
                return GW_EXIT_CONFIG;
            }
        } else {
            fprintf(stderr, "citygate-sim: unknown option '%s'\n", a);
            usage(stderr);
            return GW_EXIT_CONFIG;
        }
    }
    if (!config) {
        fprintf(stderr, "citygate-sim: -c FILE is required\n");
        usage(stderr);
        return GW_EXIT_CONFIG;
    }
    gw_log_set_level(level);

    int ret = GW_EXIT_CONFIG, rc;
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    sim_model model = {0};
    int model_ok = 0;
    sim_scenario *sc = NULL;
    sim_server *srv = NULL;
    sim_mqtt *mq = NULL;

    rc = gw_config_load(config, &errs, &cfg);
    if (rc != 0)
        goto errors;
    gw_log_set_level(level); /* the sim's level, not the gateway's */
    rc = sim_model_init(&model, cfg, seed, &errs);
    model_ok = 1;
    if (rc != 0)
        goto errors;
    if (scenario && (rc = sim_scenario_load(scenario, &model, &errs, &sc)) != 0)
        goto errors;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);  /* no SA_RESTART: epoll_wait returns at once */
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    rc = sim_server_open(&model, &(sim_server_opts){.unknown_unit_silent = unknown_silent,
                                                     .rtu = rtu, .n_rtu = n_rtu,
                                                     .ovr = ovr, .n_ovr = n_ovr},
                         &errs, &srv);
    if (rc == GW_ECONFIG)
        goto errors;
    if (rc != 0) {
        ret = GW_EXIT_RUNTIME;
        goto cleanup;
    }
    if (sim_mqtt_start(&model, &mq) != 0) {
        ret = GW_EXIT_RUNTIME;
        goto cleanup;
    }

    size_t n_modbus = 0, n_mqtt = 0;
    for (size_t i = 0; i < model.n_devs; i++)
        model.devs[i].cfg->source == GW_SRC_MODBUS ? n_modbus++ : n_mqtt++;
    gw_notice(AREA, "%zu Modbus and %zu MQTT devices, seed %" PRIu64 ", speed %g%s%s", n_modbus,
              n_mqtt, seed, speed, scenario ? ", scenario " : "", scenario ? scenario : "");
    printf("citygate-sim: ready\n");
    fflush(stdout);

    /* The scenario clock: (monotonic now - t0) * speed. */
    int64_t t0 = gw_mono_ms(), next_tick = t0;
    ret = GW_EXIT_OK;
    while (!stop_signal) {
        int64_t now = gw_mono_ms();
        int64_t scn = (int64_t)((double)(now - t0) * speed);
        if (sim_scenario_run(sc, &model, scn)) {
            gw_notice(AREA, "scenario says stop");
            break;
        }
        if (now >= next_tick) {
            sim_model_tick(&model, scn);
            next_tick = now + TICK_MS;
        }
        int64_t due = next_tick;
        int64_t step = sim_scenario_next_ms(sc);
        if (step >= 0)
            due = min_due(due, t0 + (int64_t)((double)step / speed));
        due = min_due(due, sim_server_next_due(srv));
        due = min_due(due, sim_mqtt_publish_due(mq, now));
        int timeout = due <= now ? 0 : (int)(due - now);
        if (sim_server_poll(srv, timeout) != 0) {
            gw_error(AREA, "event loop failed: %s", strerror(errno));
            ret = GW_EXIT_RUNTIME;
            break;
        }
    }
    if (stop_signal)
        gw_notice(AREA, "stopping on signal %d", (int)stop_signal);
    sim_server_stats(srv);
    goto cleanup;

errors:
    if (rc == GW_ENOMEM) {
        fprintf(stderr, "citygate-sim: out of memory\n");
        ret = GW_EXIT_RUNTIME;
    } else {
        gw_cfgerr_print(&errs, 2);
        ret = GW_EXIT_CONFIG;
    }
cleanup:
    sim_mqtt_stop(mq);
    sim_server_close(srv);
    sim_scenario_free(sc);
    if (model_ok)
        sim_model_free(&model);
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    return ret;
}
