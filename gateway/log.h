/* Logging to stderr in a journald-friendly form.
 *
 * Under systemd (JOURNAL_STREAM set) each line starts with the sd-daemon priority
 * prefix "<N>" and carries no timestamp (the journal adds one); elsewhere a line reads
 * "2026-06-01T08:30:05.120Z warn  modbus: message". Lines are written whole with one
 * write(2), so threads never interleave within a line.
 *
 * Secrets never reach the log: every string registered with gw_log_add_secret() is
 * replaced by "***" in each formatted line before it is written.
 *
 * Thread: every function may be called from any thread. */
#ifndef CITYGATE_LOG_H
#define CITYGATE_LOG_H

#include <stdint.h>

typedef enum {
    GW_LOG_ERROR = 3, /* syslog priorities, as sd-daemon(3) prefixes use them */
    GW_LOG_WARN = 4,
    GW_LOG_NOTICE = 5,
    GW_LOG_INFO = 6,
    GW_LOG_DEBUG = 7,
} gw_log_level;

void gw_log_set_level(gw_log_level level);
gw_log_level gw_log_get_level(void);
/* Parse "error", "warn", "notice", "info", "debug"; returns 0 or GW_EINVAL. */
int gw_log_parse_level(const char *name, gw_log_level *out);
/* Force the journald form on (1), off (0) or auto-detect (-1, the default). */
void gw_log_set_journal(int mode);
/* Redirect output to fd (tests); default 2. */
void gw_log_set_fd(int fd);

/* Register a secret (copied) to be masked in every later line. Empty strings and
 * strings shorter than 3 bytes are ignored (masking them would garble every line). */
void gw_log_add_secret(const char *secret);
void gw_log_clear_secrets(void);

void gw_log(gw_log_level level, const char *area, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define gw_error(area, ...) gw_log(GW_LOG_ERROR, area, __VA_ARGS__)
#define gw_warn(area, ...) gw_log(GW_LOG_WARN, area, __VA_ARGS__)
#define gw_notice(area, ...) gw_log(GW_LOG_NOTICE, area, __VA_ARGS__)
#define gw_info(area, ...) gw_log(GW_LOG_INFO, area, __VA_ARGS__)
#define gw_debug(area, ...) gw_log(GW_LOG_DEBUG, area, __VA_ARGS__)

/* A rate-limited complaint about one recurring condition (a device offline, a broker
 * unreachable). The first complaint is logged; repeats are logged with doubling
 * intervals (interval_ms, 2x, 4x ... capped at max_ms) and say how many were
 * suppressed; gw_complain_clear() logs "recovered" once, only if a complaint was made.
 * Initialise with GW_COMPLAINT_INIT or zero. One complaint object is owned by one
 * thread at a time (the caller's lock if shared). */
typedef struct gw_complaint {
    int64_t next_ms;       /* earliest time the next line may be logged */
    int64_t interval_ms;   /* current back-off interval; 0 = not complaining */
    uint64_t suppressed;   /* repeats since the last line */
    uint64_t total;        /* complaints since the condition began */
} gw_complaint;
#define GW_COMPLAINT_INIT {0, 0, 0, 0}

/* Log (or suppress) one complaint at now_ms (gw_mono_ms() when 0). Returns 1 if a line
 * was written, 0 if suppressed. base_ms / max_ms: first and longest repeat interval. */
int gw_complain(gw_complaint *c, int64_t now_ms, int64_t base_ms, int64_t max_ms,
                gw_log_level level, const char *area, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));
/* End the condition: logs a "recovered" line (at notice) if anything was complained. */
int gw_complain_clear(gw_complaint *c, const char *area, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
