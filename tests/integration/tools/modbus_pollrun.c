/* Drive the Modbus poller for the integration tests: run every Modbus device of a config
 * for S seconds and report what arrived.
 *
 *   modbus_pollrun -c FILE --seconds S
 *
 * Prints one line per health change ("event <ms> <device> <state>") as it happens, then
 * one JSON line per device: {"device", "cycles", "good", "bad", "max_gap_ms",
 * "mean_gap_ms", "state", "first_ms", "last_good_ms"}, then the poller counters. A
 * cycle is counted on each sample of the device's first field; gaps are between the
 * acquisition timestamps of consecutive cycles. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "error.h"
#include "log.h"
#include "modbus/poller.h"
#include "queue.h"
#include "timeutil.h"

typedef struct dev_acc {
    char first_field[GW_FIELD_MAX];
    long cycles, good, bad;
    int64_t last_ts, max_gap, sum_gap, first_ms, last_good_ms;
    long gaps;
    gw_mb_health_state state;
} dev_acc;

int main(int argc, char **argv)
{
    const char *file = NULL;
    double seconds = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: modbus_pollrun -c FILE --seconds S\n");
            return 2;
        }
    }
    if (!file)
        return 2;
    gw_cfgerr errs = {0};
    gw_config *cfg = NULL;
    if (gw_config_load_checked(file, &errs, &cfg) != 0) {
        gw_cfgerr_print(&errs, 2);
        return 2;
    }
    gw_log_set_level(cfg->gateway.log_level);
    gw_queue *q = NULL;
    gw_poller *p = NULL;
    if (gw_queue_new(65536, sizeof(gw_sample), GW_QUEUE_BLOCK, &q) != 0 ||
        gw_poller_new(cfg, q, &p) != 0) {
        fprintf(stderr, "modbus_pollrun: cannot create the poller\n");
        return 1;
    }
    dev_acc *acc = calloc(cfg->n_devices, sizeof *acc);
    for (size_t i = 0; i < cfg->n_devices; i++)
        acc[i].state = GW_MB_UNKNOWN;
    int64_t t0 = gw_mono_ms();
    if (gw_poller_start(p) != 0)
        return 1;
    gw_sample s[256];
    while (gw_mono_ms() - t0 < (int64_t)(seconds * 1000)) {
        int n = gw_queue_pop_many(q, s, 256, 50);
        int64_t now = gw_mono_ms() - t0;
        for (int i = 0; i < n; i++) {
            if (s[i].device_idx >= cfg->n_devices)
                continue;
            dev_acc *a = &acc[s[i].device_idx];
            if (!a->first_field[0])
                snprintf(a->first_field, sizeof a->first_field, "%s", s[i].field);
            if (s[i].quality == GW_Q_GOOD) {
                a->good++;
                a->last_good_ms = now;
            } else {
                a->bad++;
            }
            if (strcmp(a->first_field, s[i].field) == 0) {
                if (a->cycles == 0)
                    a->first_ms = now;
                else {
                    int64_t gap = (s[i].ts_us - a->last_ts) / 1000;
                    if (gap > a->max_gap)
                        a->max_gap = gap;
                    a->sum_gap += gap;
                    a->gaps++;
                }
                a->cycles++;
                a->last_ts = s[i].ts_us;
            }
        }
        for (size_t d = 0; d < cfg->n_devices; d++) {
            gw_mb_health h;
            if (gw_poller_device_health(p, d, &h) != 0 || h.state == acc[d].state)
                continue;
            acc[d].state = h.state;
            printf("event %lld %s %s %s\n", (long long)now, cfg->devices[d].id,
                   gw_mb_health_name(h.state), h.last_error);
            fflush(stdout);
        }
    }
    gw_poller_stop(p);
    for (size_t d = 0; d < cfg->n_devices; d++) {
        dev_acc *a = &acc[d];
        printf("{\"device\":\"%s\",\"cycles\":%ld,\"good\":%ld,\"bad\":%ld,\"max_gap_ms\":%lld,"
               "\"mean_gap_ms\":%lld,\"state\":\"%s\",\"first_ms\":%lld,\"last_good_ms\":%lld}\n",
               cfg->devices[d].id, a->cycles, a->good, a->bad, (long long)a->max_gap,
               (long long)(a->gaps ? a->sum_gap / a->gaps : 0), gw_mb_health_name(a->state),
               (long long)a->first_ms, (long long)a->last_good_ms);
    }
    gw_poller_stats st;
    gw_poller_stats_get(p, &st);
    printf("{\"stats\":{\"requests\":%llu,\"responses\":%llu,\"timeouts\":%llu,\"exceptions\":%llu,"
           "\"exception_02\":%llu,\"splits\":%llu,\"connects\":%llu,\"connect_failures\":%llu,"
           "\"bad_frames\":%llu,\"crc_errors\":%llu,\"samples\":%llu,\"dropped\":%llu,\"workers\":%u}}\n",
           (unsigned long long)st.requests, (unsigned long long)st.responses,
           (unsigned long long)st.timeouts, (unsigned long long)st.exceptions,
           (unsigned long long)st.exception_code[2], (unsigned long long)st.splits,
           (unsigned long long)st.connects, (unsigned long long)st.connect_failures,
           (unsigned long long)st.bad_frames, (unsigned long long)st.crc_errors,
           (unsigned long long)st.samples, (unsigned long long)st.samples_dropped, st.workers);
    gw_poller_free(p);
    gw_queue_free(q);
    free(acc);
    gw_config_free(cfg);
    gw_cfgerr_free(&errs);
    return 0;
}
