/* The local HTTP server on a real loopback socket, driven by libcurl: every route with its
 * status and JSON, token auth (the data needs the token; /healthz and the page do not),
 * commands reaching the hook with their body, body limits, unknown routes and methods. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "alloc.h"
#include "config.h"
#include "http/server.h"
#include "log.h"
#include "sample.h"
#include "store.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>

#define TOKEN "t0ken-with-some-length"

/* ---- hooks ------------------------------------------------------------------------- */

static pthread_mutex_t hook_mu = PTHREAD_MUTEX_INITIALIZER;
static int cmd_calls;
static char cmd_verb[64];
static char *cmd_body;
static size_t cmd_len;
static const char *unhealthy_reason;

static char *metrics_hook(void *ctx)
{
    (void)ctx;
    return gw_strdup("# TYPE citygate_test_up gauge\ncitygate_test_up 1\n");
}

static char *command_hook(void *ctx, const char *verb, const char *body, size_t len)
{
    (void)ctx;
    pthread_mutex_lock(&hook_mu);
    cmd_calls++;
    snprintf(cmd_verb, sizeof cmd_verb, "%s", verb);
    free(cmd_body);
    cmd_body = malloc(len + 1);
    memcpy(cmd_body, body, len);
    cmd_body[len] = '\0';
    cmd_len = len;
    pthread_mutex_unlock(&hook_mu);
    char reply[128];
    snprintf(reply, sizeof reply, "{\"ok\":true,\"verb\":\"%s\",\"len\":%zu}", verb, len);
    return gw_strdup(reply);
}

static const char *unhealthy_hook(void *ctx)
{
    (void)ctx;
    return unhealthy_reason;
}

/* ---- fixture ------------------------------------------------------------------------ */

typedef struct fixture {
    gw_config cfg;
    gw_device dev[2];
    gw_store *st;
    gw_http *http;
    int port;
} fixture;

static void fill_store(gw_store *st)
{
    int64_t now = gw_now_us();
    for (int k = 0; k < 5; k++) {
        gw_sample s;
        memset(&s, 0, sizeof s);
        gw_sample_set(&s, "mh-0001", "tilt_deg", 2.0 + k, "deg", GW_Q_GOOD, now - (5 - k) * 1000000LL);
        gw_store_put(st, &s);
    }
    gw_sample s;
    memset(&s, 0, sizeof s);
    gw_sample_set(&s, "lamp-0001", "power_w", 148, "W", GW_Q_GOOD, now);
    s.device_idx = 1;
    gw_store_put(st, &s);
    gw_store_set_health(st, 0, GW_HEALTH_ONLINE);
    gw_store_set_health(st, 1, GW_HEALTH_OFFLINE);
    gw_store_alarm(st, "mh-0001/cover-tilt",
                   "{\"id\":\"mh-0001/cover-tilt\",\"state\":\"active_unacked\",\"severity\":\"major\"}");
    gw_store_event(st, "{\"seq\":1,\"type\":\"raised\"}");
    gw_store_event(st, "{\"seq\":2,\"type\":\"updated\"}");
}

static int start_with(fixture *f, const char *token, const gw_http_hooks *hooks)
{
    static char *ids[] = {"mh-0001", "lamp-0001"};
    static char *kinds[] = {"manhole", "lamp"};
    for (int i = 0; i < 2; i++) {
        f->dev[i].id = ids[i];
        f->dev[i].kind = kinds[i];
        f->dev[i].interval_ms = 5000;
    }
    f->cfg.devices = f->dev;
    f->cfg.n_devices = 2;
    f->cfg.http.enabled = 1;
    f->cfg.http.listen = "127.0.0.1";
    f->cfg.http.port = 0;
    f->cfg.http.token = (char *)token;
    f->cfg.http.history_minutes = 60;
    assert_int_equal(gw_store_new(&f->cfg, &f->st), 0);
    fill_store(f->st);
    assert_int_equal(gw_http_start(&f->cfg, f->st, hooks, &f->http), 0);
    f->port = gw_http_port(f->http);
    assert_true(f->port > 0);
    return 0;
}

static const gw_http_hooks all_hooks = {metrics_hook, command_hook, unhealthy_hook, NULL};

static int setup_open(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return start_with(f, NULL, &all_hooks);
}

static int setup_token(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return start_with(f, TOKEN, &all_hooks);
}

static int setup_no_hooks(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    *state = f;
    return start_with(f, NULL, NULL);
}

static int teardown(void **state)
{
    fixture *f = *state;
    gw_http_stop(f->http);
    gw_store_free(f->st);
    free(f);
    pthread_mutex_lock(&hook_mu);
    cmd_calls = 0;
    cmd_verb[0] = '\0';
    free(cmd_body);
    cmd_body = NULL;
    cmd_len = 0;
    unhealthy_reason = NULL;
    pthread_mutex_unlock(&hook_mu);
    return 0;
}

/* ---- client ------------------------------------------------------------------------- */

typedef struct response {
    long status;
    char *body;
    size_t len;
    char type[128];
} response;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    response *r = ud;
    size_t add = size * n;
    char *b = realloc(r->body, r->len + add + 1);
    assert_non_null(b);
    memcpy(b + r->len, p, add);
    r->len += add;
    b[r->len] = '\0';
    r->body = b;
    return add;
}

/* A body sent chunked (no Content-Length): the server learns the size only as it reads. */
typedef struct chunked_src { size_t left; } chunked_src;

static size_t on_read(char *buf, size_t size, size_t n, void *ud)
{
    chunked_src *src = ud;
    size_t give = size * n < src->left ? size * n : src->left;
    if (give > 1000)
        give = 1000;
    memset(buf, 'x', give);
    src->left -= give;
    return give;
}

/* method "GET", "POST", ...; body NULL for none; auth: a full Authorization header or NULL.
 * chunked > 0 sends that many bytes with chunked transfer encoding instead of body. */
static response request(fixture *f, const char *method, const char *path, const char *body,
                        const char *auth, size_t chunked)
{
    response r = {0};
    CURL *c = curl_easy_init();
    assert_non_null(c);
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", f->port, path);
    struct curl_slist *hdr = NULL;
    if (auth)
        hdr = curl_slist_append(hdr, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    chunked_src src = {chunked};
    if (chunked) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(c, CURLOPT_READDATA, &src);
        hdr = curl_slist_append(hdr, "Transfer-Encoding: chunked");
        hdr = curl_slist_append(hdr, "Expect:");
    } else if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        hdr = curl_slist_append(hdr, "Content-Type: application/json");
    }
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    else if (strcmp(method, "GET") != 0 && !(strcmp(method, "POST") == 0 && (body || chunked)))
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK)
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r.type, sizeof r.type, "%s", ct ? ct : "");
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    if (!r.body)
        r.body = calloc(1, 1);
    return r;
}

static response get(fixture *f, const char *path) { return request(f, "GET", path, NULL, NULL, 0); }

/* Parse the body as JSON; fails the test when it is not. */
static cJSON *json_of(const response *r)
{
    if (strncmp(r->type, "application/json", 16) != 0)
        fail_msg("content type '%s' for body %s", r->type, r->body);
    cJSON *j = cJSON_Parse(r->body);
    if (!j)
        fail_msg("not JSON: %s", r->body);
    return j;
}

static void expect_error(fixture *f, const char *method, const char *path, const char *body,
                         long status)
{
    response r = request(f, method, path, body, NULL, 0);
    if (r.status != status)
        fail_msg("%s %s: status %ld, expected %ld (%s)", method, path, r.status, status, r.body);
    if (strcmp(method, "HEAD") != 0) {
        cJSON *j = json_of(&r);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
        assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "error")));
        cJSON_Delete(j);
    }
    free(r.body);
}

/* ---- tests -------------------------------------------------------------------------- */

static void test_page_and_assets(void **state)
{
    fixture *f = *state;
    response r = get(f, "/");
    assert_int_equal(r.status, 200);
    assert_true(strncmp(r.type, "text/html", 9) == 0);
    assert_non_null(strstr(r.body, "/static/app.js"));
    assert_non_null(strstr(r.body, "id=\"alarms\""));
    free(r.body);

    const char *assets[][2] = {{"/static/app.js", "text/javascript"},
                               {"/static/style.css", "text/css"},
                               {"/index.html", "text/html"}};
    for (size_t i = 0; i < sizeof assets / sizeof assets[0]; i++) {
        r = get(f, assets[i][0]);
        assert_int_equal(r.status, 200);
        assert_true(r.len > 0);
        assert_true(strncmp(r.type, assets[i][1], strlen(assets[i][1])) == 0);
        free(r.body);
    }
    /* The chart library comes from Debian's libjs-dygraphs when installed. */
    r = get(f, "/static/dygraph.min.js");
    if (access("/usr/share/javascript/dygraphs/dygraph.min.js", R_OK) == 0) {
        assert_int_equal(r.status, 200);
        assert_non_null(strstr(r.body, "Dygraph"));
    } else {
        assert_int_equal(r.status, 404);
    }
    free(r.body);
    expect_error(f, "GET", "/static/nope.js", NULL, 404);
    expect_error(f, "GET", "/static/../../etc/passwd", NULL, 404);
}

static void test_api_devices(void **state)
{
    fixture *f = *state;
    response r = get(f, "/api/devices");
    assert_int_equal(r.status, 200);
    cJSON *j = json_of(&r);
    assert_true(cJSON_IsArray(j));
    assert_int_equal(cJSON_GetArraySize(j), 2);
    cJSON *mh = cJSON_GetArrayItem(j, 0);
    assert_string_equal(cJSON_GetObjectItem(mh, "id")->valuestring, "mh-0001");
    assert_string_equal(cJSON_GetObjectItem(mh, "health")->valuestring, "online");
    cJSON *tilt = cJSON_GetObjectItem(cJSON_GetObjectItem(mh, "values"), "tilt_deg");
    assert_float_equal(cJSON_GetObjectItem(tilt, "value")->valuedouble, 6.0, 1e-9);
    assert_string_equal(cJSON_GetObjectItem(tilt, "quality")->valuestring, "good");
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "health")->valuestring,
                        "offline");
    cJSON_Delete(j);
    free(r.body);
}

static void test_api_alarms_events(void **state)
{
    fixture *f = *state;
    response r = get(f, "/api/alarms");
    assert_int_equal(r.status, 200);
    cJSON *j = json_of(&r);
    assert_int_equal(cJSON_GetArraySize(j), 1);
    assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "state")->valuestring,
                        "active_unacked");
    cJSON_Delete(j);
    free(r.body);

    r = get(f, "/api/events");
    j = json_of(&r);
    assert_int_equal(r.status, 200);
    assert_int_equal(cJSON_GetArraySize(j), 2);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "seq")->valueint, 2);
    cJSON_Delete(j);
    free(r.body);

    r = get(f, "/api/events?limit=1");
    j = json_of(&r);
    assert_int_equal(cJSON_GetArraySize(j), 1);
    cJSON_Delete(j);
    free(r.body);

    /* A nonsense limit falls back to the default, never an error. */
    r = get(f, "/api/events?limit=-5");
    assert_int_equal(r.status, 200);
    j = json_of(&r);
    assert_int_equal(cJSON_GetArraySize(j), 2);
    cJSON_Delete(j);
    free(r.body);
}

static void test_api_history(void **state)
{
    fixture *f = *state;
    response r = get(f, "/api/history?device=mh-0001&field=tilt_deg&minutes=10");
    assert_int_equal(r.status, 200);
    cJSON *j = json_of(&r);
    assert_string_equal(cJSON_GetObjectItem(j, "unit")->valuestring, "deg");
    cJSON *pts = cJSON_GetObjectItem(j, "points");
    assert_int_equal(cJSON_GetArraySize(pts), 5);
    assert_float_equal(cJSON_GetArrayItem(cJSON_GetArrayItem(pts, 4), 1)->valuedouble, 6.0, 0);
    cJSON_Delete(j);
    free(r.body);

    r = get(f, "/api/history?device=mh-0001&field=tilt_deg");
    assert_int_equal(r.status, 200);
    free(r.body);

    expect_error(f, "GET", "/api/history?device=mh-0001", NULL, 400);
    expect_error(f, "GET", "/api/history", NULL, 400);
    expect_error(f, "GET", "/api/history?device=mh-0001&field=nope", NULL, 404);
    expect_error(f, "GET", "/api/history?device=nope&field=tilt_deg", NULL, 404);
}

static void test_healthz_metrics(void **state)
{
    fixture *f = *state;
    response r = get(f, "/healthz");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "ok\n");
    free(r.body);

    pthread_mutex_lock(&hook_mu);
    unhealthy_reason = "store not ready";
    pthread_mutex_unlock(&hook_mu);
    r = get(f, "/healthz");
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body, "store not ready"));
    free(r.body);

    r = get(f, "/metrics");
    assert_int_equal(r.status, 200);
    assert_true(strncmp(r.type, "text/plain", 10) == 0);
    assert_non_null(strstr(r.type, "version=0.0.4"));
    assert_non_null(strstr(r.body, "citygate_test_up 1\n"));
    free(r.body);

    gw_http_stats st;
    gw_http_stats_get(f->http, &st);
    assert_true(st.requests >= 3);
}

static void test_command(void **state)
{
    fixture *f = *state;
    const char *body = "{\"request_id\":\"r-1\",\"alarm\":\"mh-0001/cover-tilt\",\"user\":\"op\"}";
    response r = request(f, "POST", "/api/cmd/ack", body, NULL, 0);
    assert_int_equal(r.status, 200);
    cJSON *j = json_of(&r);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    assert_string_equal(cJSON_GetObjectItem(j, "verb")->valuestring, "ack");
    cJSON_Delete(j);
    free(r.body);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 1);
    assert_string_equal(cmd_verb, "ack");
    assert_int_equal(cmd_len, strlen(body));
    assert_string_equal(cmd_body, body);
    pthread_mutex_unlock(&hook_mu);

    /* No body at all: the hook gets an empty one and answers (e.g. with a parse error). */
    r = request(f, "POST", "/api/cmd/shelve", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    free(r.body);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 2);
    assert_string_equal(cmd_verb, "shelve");
    assert_int_equal(cmd_len, 0);
    pthread_mutex_unlock(&hook_mu);

    /* A body in many chunks, under the limit, arrives whole. */
    r = request(f, "POST", "/api/cmd/ack", NULL, NULL, 12000);
    assert_int_equal(r.status, 200);
    free(r.body);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 3);
    assert_int_equal(cmd_len, 12000);
    pthread_mutex_unlock(&hook_mu);
}

static void test_body_too_large(void **state)
{
    fixture *f = *state;
    size_t n = 20000;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    memcpy(big, "{\"a\":1}", 7);
    big[n] = '\0';
    expect_error(f, "POST", "/api/cmd/ack", big, 413);
    free(big);
    /* Chunked: no length announced, the limit still holds. */
    response r = request(f, "POST", "/api/cmd/ack", NULL, NULL, 50000);
    assert_int_equal(r.status, 413);
    free(r.body);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 0);
    pthread_mutex_unlock(&hook_mu);
    /* The server is still fine afterwards. */
    r = get(f, "/api/alarms");
    assert_int_equal(r.status, 200);
    free(r.body);
}

static void test_unknown_and_methods(void **state)
{
    fixture *f = *state;
    expect_error(f, "GET", "/api/nope", NULL, 404);
    expect_error(f, "GET", "/nope", NULL, 404);
    expect_error(f, "GET", "/api/devices/extra", NULL, 404);
    expect_error(f, "DELETE", "/api/devices", NULL, 405);
    expect_error(f, "PUT", "/api/alarms", NULL, 405);
    expect_error(f, "POST", "/api/devices", "{}", 405);
    expect_error(f, "GET", "/api/cmd/ack", NULL, 405);
    expect_error(f, "DELETE", "/", NULL, 405);
    expect_error(f, "POST", "/api/nope", "{}", 404);
    /* HEAD is a GET without a body. */
    response r = request(f, "HEAD", "/api/devices", NULL, NULL, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.len, 0);
    free(r.body);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 0);
    pthread_mutex_unlock(&hook_mu);
}

static void test_token(void **state)
{
    fixture *f = *state;
    const char *data_routes[] = {"/api/devices", "/api/alarms", "/api/events",
                                 "/api/history?device=mh-0001&field=tilt_deg", "/metrics"};
    for (size_t i = 0; i < sizeof data_routes / sizeof data_routes[0]; i++) {
        expect_error(f, "GET", data_routes[i], NULL, 401);
        response r = request(f, "GET", data_routes[i], NULL, "Authorization: Bearer wrong", 0);
        assert_int_equal(r.status, 401);
        free(r.body);
        /* Same length, one byte off. */
        r = request(f, "GET", data_routes[i], NULL, "Authorization: Bearer t0ken-with-some-lengtX", 0);
        assert_int_equal(r.status, 401);
        free(r.body);
        r = request(f, "GET", data_routes[i], NULL, "Authorization: Basic " TOKEN, 0);
        assert_int_equal(r.status, 401);
        free(r.body);
        r = request(f, "GET", data_routes[i], NULL, "Authorization: Bearer " TOKEN, 0);
        if (r.status != 200)
            fail_msg("%s with the token: %ld %s", data_routes[i], r.status, r.body);
        free(r.body);
    }
    /* The page opened as /?token=...: the query parameter works for the API as well. */
    response r = get(f, "/api/devices?token=" TOKEN);
    assert_int_equal(r.status, 200);
    free(r.body);
    /* Open: health, and the page with its assets (they hold no data). */
    r = get(f, "/healthz");
    assert_int_equal(r.status, 200);
    free(r.body);
    r = get(f, "/");
    assert_int_equal(r.status, 200);
    free(r.body);
    r = get(f, "/static/app.js");
    assert_int_equal(r.status, 200);
    free(r.body);

    /* Commands need the token, and only reach the hook with it. */
    expect_error(f, "POST", "/api/cmd/ack", "{\"alarm\":\"x\"}", 401);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 0);
    pthread_mutex_unlock(&hook_mu);
    r = request(f, "POST", "/api/cmd/ack", "{\"alarm\":\"x\"}", "Authorization: Bearer " TOKEN, 0);
    assert_int_equal(r.status, 200);
    free(r.body);
    pthread_mutex_lock(&hook_mu);
    assert_int_equal(cmd_calls, 1);
    pthread_mutex_unlock(&hook_mu);
    /* An oversized body without the token is refused as unauthorized, not read. */
    char big[20001];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    expect_error(f, "POST", "/api/cmd/ack", big, 401);

    gw_http_stats st;
    gw_http_stats_get(f->http, &st);
    assert_true(st.unauthorized >= 5 * 4 + 2);
}

static void test_no_hooks(void **state)
{
    fixture *f = *state;
    response r = get(f, "/healthz");
    assert_int_equal(r.status, 200);
    free(r.body);
    expect_error(f, "GET", "/metrics", NULL, 404);
    expect_error(f, "POST", "/api/cmd/ack", "{}", 503);
}

static void test_bind_errors(void **state)
{
    fixture *f = *state;
    gw_config cfg = f->cfg;
    gw_http *h = NULL;
    /* The port is taken by the fixture's server. */
    cfg.http.port = f->port;
    assert_int_not_equal(gw_http_start(&cfg, f->st, NULL, &h), 0);
    /* Not an address (names are not resolved). */
    cfg.http.port = 0;
    cfg.http.listen = "gateway.example";
    assert_int_not_equal(gw_http_start(&cfg, f->st, NULL, &h), 0);
    /* "localhost", which the config accepts, is the IPv4 loopback. */
    cfg.http.listen = "localhost";
    assert_int_equal(gw_http_start(&cfg, f->st, NULL, &h), 0);
    assert_true(gw_http_port(h) > 0);
    gw_http_stop(h);
    h = NULL;
    /* IPv6 loopback works when the host has it. */
    cfg.http.listen = "::1";
    if (gw_http_start(&cfg, f->st, NULL, &h) == 0) {
        assert_true(gw_http_port(h) > 0);
        gw_http_stop(h);
    }
    /* The fixture's server is unharmed. */
    response r = get(f, "/healthz");
    assert_int_equal(r.status, 200);
    free(r.body);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_page_and_assets, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_api_devices, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_api_alarms_events, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_api_history, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_healthz_metrics, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_command, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_body_too_large, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_and_methods, setup_open, teardown),
        cmocka_unit_test_setup_teardown(test_token, setup_token, teardown),
        cmocka_unit_test_setup_teardown(test_no_hooks, setup_no_hooks, teardown),
        cmocka_unit_test_setup_teardown(test_bind_errors, setup_open, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
