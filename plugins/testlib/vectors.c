#include "vectors.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "config.h"
#include <citygate/plugin.h>
#include "decode.h"
#include "error.h"
#include "sample.h"
#include "timeutil.h"

#define MAX_GOT 128

typedef struct got {
    gw_sample s[MAX_GOT];
    size_t n;
} got;

static int collect(void *ctx, const gw_sample *s)
{
    got *g = ctx;
    if (g->n < MAX_GOT)
        g->s[g->n++] = *s;
    return 0;
}

static long hex_bytes(const char *h, unsigned char *out, size_t cap)
{
    size_t n = 0;
    int half = -1;
    for (; *h; h++) {
        int c = *h, v;
        if (c == ' ')
            continue;
        v = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (v < 0 || n >= cap)
            return -1;
        if (half < 0)
            half = v;
        else {
            out[n++] = (unsigned char)(half * 16 + v);
            half = -1;
        }
    }
    return half < 0 ? (long)n : -1;
}

static void check_message(const char *path, int mi, gw_decoders *d, const char *decoder,
                          const cJSON *m)
{
    unsigned char bytes[4096];
    const void *payload = NULL;
    size_t len = 0;
    char *text = NULL;
    gw_payload_kind kind = GW_PAYLOAD_AUTO;
    const cJSON *hex = cJSON_GetObjectItemCaseSensitive(m, "hex");
    const cJSON *json = cJSON_GetObjectItemCaseSensitive(m, "json");
    const cJSON *raw = cJSON_GetObjectItemCaseSensitive(m, "text");
    if (cJSON_IsString(hex)) {
        long n = hex_bytes(hex->valuestring, bytes, sizeof bytes);
        if (n < 0)
            fail_msg("%s[%d]: bad hex", path, mi);
        payload = bytes;
        len = (size_t)n;
        kind = GW_PAYLOAD_BYTES;
    } else if (json) {
        text = cJSON_PrintUnformatted(json);
        payload = text;
        len = strlen(text);
        kind = GW_PAYLOAD_JSON;
    } else if (cJSON_IsString(raw)) {
        payload = raw->valuestring;
        len = strlen(raw->valuestring);
    } else {
        fail_msg("%s[%d]: no hex / json / text", path, mi);
    }
    int64_t recv = 1780300800000000LL; /* 2026-06-01T08:00:00Z */
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(m, "recv_time");
    if (cJSON_IsString(rt) && gw_parse_rfc3339(rt->valuestring, &recv) != 0)
        fail_msg("%s[%d]: bad recv_time", path, mi);

    uint64_t bad_before[CG_BAD__COUNT];
    for (int r = 0; r < CG_BAD__COUNT; r++)
        bad_before[r] = gw_decode_bad_count(d, 0, r);
    got *g = calloc(1, sizeof *g);
    assert_non_null(g);
    int rc = gw_decode_payload(d, 0, decoder, payload, len, kind, recv, collect, g);

    const cJSON *reject = cJSON_GetObjectItemCaseSensitive(m, "reject");
    if (cJSON_IsString(reject)) {
        if (rc != GW_EDECODE)
            fail_msg("%s[%d]: expected rejection '%s', got rc %d", path, mi, reject->valuestring, rc);
        int found = 0;
        for (int r = 0; r < CG_BAD__COUNT; r++)
            if (gw_decode_bad_count(d, 0, r) != bad_before[r]) {
                if (strcmp(gw_decode_reason_name(r), reject->valuestring) != 0)
                    fail_msg("%s[%d]: rejected as '%s', expected '%s'", path, mi,
                             gw_decode_reason_name(r), reject->valuestring);
                found = 1;
            }
        if (!found)
            fail_msg("%s[%d]: rejection not counted", path, mi);
    } else if (rc != 0) {
        fail_msg("%s[%d]: decode failed: %s", path, mi, gw_strerror(rc));
    }

    const cJSON *expect = cJSON_GetObjectItemCaseSensitive(m, "expect");
    if (expect) {
        int n_exp = cJSON_GetArraySize(expect);
        if ((size_t)n_exp != g->n) {
            for (size_t i = 0; i < g->n; i++)
                print_message("  got %s = %g %s\n", g->s[i].field, g->s[i].value, g->s[i].unit);
            fail_msg("%s[%d]: %zu samples, expected %d", path, mi, g->n, n_exp);
        }
        const cJSON *e;
        cJSON_ArrayForEach(e, expect) {
            const char *field = cJSON_GetObjectItemCaseSensitive(e, "field")->valuestring;
            size_t i = 0;
            while (i < g->n && strcmp(g->s[i].field, field) != 0)
                i++;
            if (i == g->n)
                fail_msg("%s[%d]: no sample %s", path, mi, field);
            const gw_sample *s = &g->s[i];
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(e, "value");
            const cJSON *tol = cJSON_GetObjectItemCaseSensitive(e, "tol");
            const cJSON *unit = cJSON_GetObjectItemCaseSensitive(e, "unit");
            const cJSON *q = cJSON_GetObjectItemCaseSensitive(e, "quality");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "time");
            const cJSON *txt = cJSON_GetObjectItemCaseSensitive(e, "text");
            double want = cJSON_IsBool(v) ? cJSON_IsTrue(v) : v ? v->valuedouble : 0;
            double eps = tol ? tol->valuedouble : 1e-9;
            if (v && fabs(s->value - want) > eps)
                fail_msg("%s[%d]: %s = %.9g, expected %.9g (tol %g)", path, mi, field, s->value,
                         want, eps);
            if (cJSON_IsString(unit) && strcmp(s->unit, unit->valuestring) != 0)
                fail_msg("%s[%d]: %s unit '%s', expected '%s'", path, mi, field, s->unit,
                         unit->valuestring);
            if (cJSON_IsString(q) && strcmp(gw_quality_name(s->quality), q->valuestring) != 0)
                fail_msg("%s[%d]: %s quality %s, expected %s", path, mi, field,
                         gw_quality_name(s->quality), q->valuestring);
            if (!q && s->quality != GW_Q_GOOD)
                fail_msg("%s[%d]: %s quality %s", path, mi, field, gw_quality_name(s->quality));
            if (cJSON_IsString(txt) && strcmp(s->text, txt->valuestring) != 0)
                fail_msg("%s[%d]: %s text '%s', expected '%s'", path, mi, field, s->text,
                         txt->valuestring);
            int64_t ts;
            if (cJSON_IsString(t) && (gw_parse_rfc3339(t->valuestring, &ts) != 0 || ts != s->ts_us))
                fail_msg("%s[%d]: %s time %lld, expected %s", path, mi, field,
                         (long long)s->ts_us, t->valuestring);
            if (strcmp(s->device, "vec-0001") != 0 || s->device_idx != 0)
                fail_msg("%s[%d]: sample device '%s' idx %u", path, mi, s->device, s->device_idx);
        }
    }
    free(g);
    cJSON_free(text);
}

void cgt_run_vector_file(const char *path, const char *decoder)
{
    gw_cfgerr errs = {0};
    cJSON *v = gw_cfg_read_json(path, &errs);
    if (!v) {
        gw_cfgerr_print(&errs, 2);
        fail_msg("%s: unreadable", path);
    }
    const cJSON *dec = cJSON_GetObjectItemCaseSensitive(v, "decoder");
    const cJSON *ddec = cJSON_GetObjectItemCaseSensitive(v, "device_decoder");
    const char *sub = cJSON_IsString(dec) ? dec->valuestring : decoder;

    gw_device dev = {0};
    dev.id = (char *)"vec-0001";
    dev.kind = (char *)"test";
    dev.source = GW_SRC_MQTT;
    dev.enabled = 1;
    dev.decoder = cJSON_IsString(ddec) ? ddec->valuestring : NULL;
    dev.decoder_options = cJSON_GetObjectItemCaseSensitive(v, "options");
    dev.params = cJSON_GetObjectItemCaseSensitive(v, "params");
    const cJSON *loc = cJSON_GetObjectItemCaseSensitive(v, "location");
    if (loc) {
        dev.component.location.has = 1;
        dev.component.location.lon = cJSON_GetObjectItemCaseSensitive(loc, "lon")->valuedouble;
        dev.component.location.lat = cJSON_GetObjectItemCaseSensitive(loc, "lat")->valuedouble;
    }
    gw_config cfg = {0};
    cfg.file = (char *)path;
    cfg.devices = &dev;
    cfg.n_devices = 1;
    gw_decoders_opts o = {.extra_decoder = sub};
    gw_decoders *d = NULL;
    const cJSON *cfg_err = cJSON_GetObjectItemCaseSensitive(v, "config_error");
    int rc = gw_decoders_create(&cfg, &o, &errs, &d);
    if (cJSON_IsString(cfg_err)) {
        /* A vector about a bad option: the error line must name the place. */
        int found = 0;
        for (size_t i = 0; i < errs.n; i++)
            if (strstr(errs.lines[i], cfg_err->valuestring))
                found = 1;
        if (rc == 0 || !found) {
            gw_cfgerr_print(&errs, 2);
            fail_msg("%s: expected a config error containing '%s'", path, cfg_err->valuestring);
        }
        gw_cfgerr_free(&errs);
        cJSON_Delete(v);
        return;
    }
    if (rc != 0) {
        gw_cfgerr_print(&errs, 2);
        fail_msg("%s: decoders: %s", path, gw_strerror(rc));
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(v, "messages");
    if (msgs) {
        int i = 0;
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs) check_message(path, i++, d, sub, m);
    } else {
        check_message(path, 0, d, sub, v);
    }
    gw_decoders_free(d);
    gw_cfgerr_free(&errs);
    cJSON_Delete(v);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cgt_run_vectors(const char *dir, const char *decoder)
{
    DIR *dp = opendir(dir);
    assert_non_null(dp);
    char *names[256];
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(dp)) && n < 256) {
        size_t l = strlen(de->d_name);
        if (l > 5 && strcmp(de->d_name + l - 5, ".json") == 0)
            names[n++] = strdup(de->d_name);
    }
    closedir(dp);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        print_message("vector %s\n", names[i]);
        cgt_run_vector_file(path, decoder);
        free(names[i]);
    }
    assert_true(n > 0);
    return (int)n;
}
