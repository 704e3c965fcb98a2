/* Rule engine benchmark: the shipped rule sets (manhole, lamp, water, gas, common) over
 * 1,000 synthetic devices (250 of each kind), a stream of samples whose values wander
 * inside their normal bands and now and then cross a limit.
 *
 * Prints: rule evaluations per second on one core (goal >= 10 million/s), samples per
 * second, and the latency from a sample entering gw_engine_on_sample() to its event
 * reaching the commit hook (p50 / p99 / max), next to a baseline measured in the same
 * run: a bare loop doing one threshold comparison per evaluation, the floor any engine
 * pays. Usage: bench_rules [ROUNDS] (default 200; one round = every field of every
 * device once). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "alloc.h"
#include "config.h"
#include "rules/engine.h"
#include "timeutil.h"

#ifndef BENCH_SRC
#define BENCH_SRC "."
#endif

typedef struct fdef { const char *name; double lo, hi, bad; } fdef;

static const fdef manhole_f[] = {{"tilt_deg", 0, 3, 25}, {"cover_open", 0, 0, 1}, {"water_level_m", 0.2, 0.8, 2.8},
                                 {"ch4_lel", 0, 5, 30}, {"h2s_ppm", 0, 2, 12}, {"co_ppm", 0, 5, 40},
                                 {"o2_pct", 20.5, 21, 18}, {"battery_pct", 60, 100, 10}, {NULL, 0, 0, 0}};
static const fdef lamp_f[] = {{"voltage_v", 215, 228, 250}, {"current_a", 0.4, 0.5, 0}, {"power_w", 90, 110, 1},
                              {"power_factor", 0.93, 0.98, 0.7}, {"leakage_ma", 0, 5, 40}, {"relay_on", 1, 1, 1},
                              {"lamp_fault", 0, 0, 1}, {NULL, 0, 0, 0}};
static const fdef water_f[] = {{"pressure_mpa", 0.25, 0.35, 0.1}, {"flow_m3h", 5, 20, 40},
                               {"level_m", 0.5, 1, 3}, {"turbidity_ntu", 0.1, 0.5, 4},
                               {"sensor_fault", 0, 0, 1}, {NULL, 0, 0, 0}};
static const fdef gas_f[] = {{"ch4_lel", 0, 5, 60}, {"pressure_kpa", 190, 210, 100}, {"co_ppm", 0, 5, 30},
                             {"detector_fault", 0, 0, 1}, {"battery_pct", 60, 100, 10}, {NULL, 0, 0, 0}};

static const char *const kinds[4] = {"manhole", "lamp", "water", "gas"};
static const fdef *const kind_fields[4] = {manhole_f, lamp_f, water_f, gas_f};

static int64_t entered_us;
static int64_t *lat;
static size_t n_lat, cap_lat;
static uint64_t n_events;

static int commit(void *ctx, const gw_event_out *ev)
{
    (void)ctx;
    (void)ev;
    n_events++;
    if (n_lat == cap_lat) {
        cap_lat = cap_lat ? cap_lat * 2 : 4096;
        lat = realloc(lat, cap_lat * sizeof *lat);
    }
    lat[n_lat++] = gw_mono_us() - entered_us;
    return 0;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t rng = 0x9e3779b97f4a7c15ULL;
static double frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0;
}

static cJSON *load(const char *name)
{
    char path[1024];
    const char *src = getenv("CITYGATE_SRC");
    snprintf(path, sizeof path, "%s/rules/%s.json", src ? src : BENCH_SRC, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "bench_rules: cannot open %s (set CITYGATE_SRC)\n", path);
        exit(1);
    }
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return cJSON_Parse(buf);
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 200;
    gw_log_set_level(GW_LOG_ERROR);
    gw_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.file = "bench.json";
    cfg.gateway.id = "GW-BENCH";
    cfg.gateway.utc_offset_min = 480;
    static const char *const sets[5] = {"manhole", "lamp", "water", "gas", "common"};
    gw_cfg_doc docs[5];
    for (int i = 0; i < 5; i++) {
        docs[i].name = (char *)sets[i];
        docs[i].path = (char *)sets[i];
        docs[i].json = load(sets[i]);
    }
    cfg.rulesets = docs;
    cfg.n_rulesets = 5;
    enum { N = 1000 };
    static gw_device devs[N];
    static char ids[N][16];
    cJSON *params = cJSON_Parse("{\"well_depth_m\": 3, \"rated_power_w\": 100, \"high_level_m\": 2,"
                                " \"pressure_low_kpa\": 150, \"pressure_high_kpa\": 250,"
                                " \"schedule\": {\"on\": \"00:00\", \"off\": \"23:59\"}}");
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof ids[i], "%s-%04d", kinds[i % 4], i);
        devs[i].id = ids[i];
        devs[i].kind = (char *)kinds[i % 4];
        devs[i].enabled = 1;
        devs[i].interval_ms = 1000;
        devs[i].params = params;
        devs[i].component.code = "5001030102000001";
        devs[i].component.grid = "500103001002003";
    }
    cfg.devices = devs;
    cfg.n_devices = N;

    gw_engine_hooks hooks = {commit, NULL};
    gw_engine *e;
    if (gw_engine_new(&cfg, &hooks, NULL, &e) != 0) {
        fprintf(stderr, "bench_rules: engine failed\n");
        return 1;
    }
    gw_engine_stats st0;
    gw_engine_stats_get(e, &st0);

    /* Pre-build the stream so the loop measures the engine, not the generator. */
    size_t per_round = 0;
    for (int i = 0; i < N; i++)
        for (const fdef *f = kind_fields[i % 4]; f->name; f++)
            per_round++;
    size_t total = per_round * (size_t)rounds;
    gw_sample *stream = malloc(total * sizeof *stream);
    if (!stream)
        return 1;
    int64_t t = 1780272000000000LL;
    size_t k = 0;
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < N; i++) {
            for (const fdef *f = kind_fields[i % 4]; f->name; f++) {
                /* one sample in ~2000 is bad, held for a few rounds by its device */
                int bad = ((unsigned)(i * 31 + r / 8) % 2000u) == 7;
                double v = bad ? f->bad : f->lo + (f->hi - f->lo) * frand();
                gw_sample_set(&stream[k], ids[i], f->name, v, "", GW_Q_GOOD, t + (int64_t)r * 1000000);
                stream[k].device_idx = (uint32_t)i;
                k++;
            }
        }
    }

    int64_t t_start = gw_mono_us();
    for (size_t i = 0; i < total; i++) {
        entered_us = gw_mono_us();
        gw_engine_on_sample(e, &stream[i]);
        if (i % per_round == per_round - 1)
            gw_engine_tick(e, stream[i].ts_us + 500000);
    }
    int64_t elapsed = gw_mono_us() - t_start;

    /* The timing calls inside the loop are part of the measured time; measure them
     * alone to report the engine's own rate too. */
    int64_t t_clk = gw_mono_us();
    volatile int64_t sink = 0;
    for (size_t i = 0; i < total; i++)
        sink += gw_mono_us();
    int64_t clock_cost = gw_mono_us() - t_clk;

    gw_engine_stats st;
    gw_engine_stats_get(e, &st);
    uint64_t evals = st.evaluations - st0.evaluations;

    /* Baseline: one comparison per evaluation over a stream of doubles. */
    double *vals = malloc(total * sizeof *vals);
    for (size_t i = 0; i < total; i++)
        vals[i] = stream[i].value;
    size_t per_sample = total ? (size_t)(evals / total) + 1 : 1;
    int64_t t_base = gw_mono_us();
    volatile uint64_t hits = 0;
    for (size_t i = 0; i < total; i++)
        for (size_t j = 0; j < per_sample; j++)
            hits += vals[i] > 10.0 + (double)j;
    int64_t base_elapsed = gw_mono_us() - t_base;

    qsort(lat, n_lat, sizeof *lat, cmp64);
    double secs = elapsed / 1e6, engine_secs = (elapsed - clock_cost) / 1e6;
    printf("rule engine benchmark: %d devices, %zu rule instances, %d rounds, %zu samples\n", N,
           st.rules, rounds, total);
    printf("%-44s %16s\n", "measure", "value");
    printf("%-44s %16.2f\n", "rule evaluations / s (one core)", evals / secs);
    printf("%-44s %16.2f\n", "rule evaluations / s (less clock reads)", evals / engine_secs);
    printf("%-44s %16.2f\n", "samples / s", total / secs);
    printf("%-44s %16.2f\n", "evaluations per sample", (double)evals / (double)total);
    printf("%-44s %16.2f\n", "baseline: bare compares / s (same run)",
           (double)(total * per_sample) / (base_elapsed / 1e6));
    printf("%-44s %16llu\n", "events committed", (unsigned long long)n_events);
    if (n_lat) {
        printf("%-44s %16.1f\n", "sample -> commit latency p50 (us)", (double)lat[n_lat / 2]);
        printf("%-44s %16.1f\n", "sample -> commit latency p99 (us)", (double)lat[(n_lat * 99) / 100]);
        printf("%-44s %16.1f\n", "sample -> commit latency max (us)", (double)lat[n_lat - 1]);
    }
    printf("goal >= 10,000,000 evaluations/s: %s\n", evals / secs >= 1e7 ? "met" : "NOT met");
    (void)sink;
    (void)hits;
    gw_engine_free(e);
    free(stream);
    free(vals);
    free(lat);
    for (int i = 0; i < 5; i++)
        cJSON_Delete(docs[i].json);
    cJSON_Delete(params);
    return 0;
}
