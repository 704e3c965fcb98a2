#include "log.h"

#include "alloc.h"
#include "error.h"
#include "timeutil.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GW_LOG_LINE_MAX 2048
#define GW_LOG_MAX_SECRETS 32

static atomic_int log_level = GW_LOG_INFO;
static atomic_int log_journal = -1;
static atomic_int log_fd = 2;

static pthread_mutex_t secret_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[GW_LOG_MAX_SECRETS];
static int n_secrets;

static const char *const level_names[8] = {
    [GW_LOG_ERROR] = "error", [GW_LOG_WARN] = "warn", [GW_LOG_NOTICE] = "notice",
    [GW_LOG_INFO] = "info", [GW_LOG_DEBUG] = "debug",
};

void gw_log_set_level(gw_log_level level) { atomic_store(&log_level, (int)level); }
gw_log_level gw_log_get_level(void) { return (gw_log_level)atomic_load(&log_level); }
void gw_log_set_journal(int mode) { atomic_store(&log_journal, mode); }
void gw_log_set_fd(int fd) { atomic_store(&log_fd, fd); }

int gw_log_parse_level(const char *name, gw_log_level *out)
{
    for (int i = 0; i < 8; i++) {
        if (level_names[i] && name && strcmp(name, level_names[i]) == 0) {
            *out = (gw_log_level)i;
            return 0;
        }
    }
    return GW_EINVAL;
}

void gw_log_add_secret(const char *secret)
{
    if (!secret || strlen(secret) < 3)
        return;
    pthread_mutex_lock(&secret_lock);
    int known = 0;
    for (int i = 0; i < n_secrets; i++)
        known |= strcmp(secrets[i], secret) == 0;
    if (!known && n_secrets < GW_LOG_MAX_SECRETS) {
        char *copy = gw_strdup(secret);
        if (copy)
            secrets[n_secrets++] = copy;
    }
    pthread_mutex_unlock(&secret_lock);
}

void gw_log_clear_secrets(void)
{
    pthread_mutex_lock(&secret_lock);
    for (int i = 0; i < n_secrets; i++)
        gw_free(secrets[i]);
    n_secrets = 0;
    pthread_mutex_unlock(&secret_lock);
}

/* Replace every registered secret in line (in place; "***" is never longer). A line
 * cut at the length limit may end in the first bytes of a secret: those become '*'. */
static void mask_secrets(char *line, int truncated)
{
    pthread_mutex_lock(&secret_lock);
    for (int i = 0; i < n_secrets; i++) {
        size_t sl = strlen(secrets[i]);
        char *from = line, *hit;
        while ((hit = strstr(from, secrets[i])) != NULL) {
            memcpy(hit, "***", 3);
            memmove(hit + 3, hit + sl, strlen(hit + sl) + 1);
            from = hit + 3; /* a secret such as "***" would match its own mask forever */
        }
        if (truncated) {
            size_t len = strlen(line);
            for (size_t k = sl - 1; k > 0; k--) {
                if (k <= len && memcmp(line + len - k, secrets[i], k) == 0) {
                    memset(line + len - k, '*', k);
                    break;
                }
            }
        }
    }
    pthread_mutex_unlock(&secret_lock);
}

static int use_journal(void)
{
    int mode = atomic_load(&log_journal);
    if (mode < 0) {
        mode = getenv("JOURNAL_STREAM") != NULL;
        atomic_store(&log_journal, mode);
    }
    return mode;
}

static void vlog(gw_log_level level, const char *area, const char *fmt, va_list ap)
{
    char line[GW_LOG_LINE_MAX];
    int off;
    if (use_journal()) {
        off = snprintf(line, sizeof line, "<%d>%s: ", (int)level, area);
    } else {
        char ts[40];
        if (gw_format_rfc3339(ts, sizeof ts, gw_now_us(), 0) < 0)
            strcpy(ts, "-");
        off = snprintf(line, sizeof line, "%s %-6s %s: ", ts,
                       level_names[level & 7] ? level_names[level & 7] : "?", area);
    }
    if (off < 0 || off >= (int)sizeof line)
        off = 0;
    int n = vsnprintf(line + off, sizeof line - (size_t)off, fmt, ap);
    size_t len = n < 0 ? (size_t)off : strnlen(line, sizeof line - 2);
    int truncated = n >= 0 && (size_t)off + (size_t)n > len;
    line[len] = '\0';
    /* One event, one line: a stray newline from a payload (or an area built from one)
     * must not forge a record. */
    for (size_t i = 0; i < len; i++)
        if (line[i] == '\n' || line[i] == '\r')
            line[i] = ' ';
    mask_secrets(line, truncated);
    len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(atomic_load(&log_fd), line, len);
    (void)w;
}

void gw_log(gw_log_level level, const char *area, const char *fmt, ...)
{
    if ((int)level > atomic_load(&log_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, area, fmt, ap);
    va_end(ap);
}

int gw_complain(gw_complaint *c, int64_t now_ms, int64_t base_ms, int64_t max_ms,
                gw_log_level level, const char *area, const char *fmt, ...)
{
    if (now_ms == 0)
        now_ms = gw_mono_ms();
    c->total++;
    if (c->interval_ms != 0 && now_ms < c->next_ms) {
        c->suppressed++;
        return 0;
    }
    c->interval_ms = c->interval_ms == 0 ? base_ms : c->interval_ms * 2;
    if (c->interval_ms > max_ms)
        c->interval_ms = max_ms;
    if (c->interval_ms <= 0)
        c->interval_ms = 1;
    c->next_ms = now_ms + c->interval_ms;
    if ((int)level <= atomic_load(&log_level)) {
        char msg[GW_LOG_LINE_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (c->suppressed)
            gw_log(level, area, "%s (repeated %llu times since last report)", msg,
                   (unsigned long long)c->suppressed);
        else
            gw_log(level, area, "%s", msg);
    }
    c->suppressed = 0;
    return 1;
}

int gw_complain_clear(gw_complaint *c, const char *area, const char *fmt, ...)
{
    if (c->interval_ms == 0)
        return 0;
    char msg[GW_LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    gw_log(GW_LOG_NOTICE, area, "%s (recovered after %llu complaints)", msg,
           (unsigned long long)c->total);
    memset(c, 0, sizeof *c);
    return 1;
}
