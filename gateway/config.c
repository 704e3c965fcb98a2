/* Configuration: read the JSON file, validate every key against the schema that
 * docs/config.md documents, and build gw_config. Validation never stops at the first
 * problem: each one becomes a "file: json.path: message" line in a gw_cfgerr.
 *
 * The loader keeps one context (cfg_ld) through the walk. Allocation failures set
 * ld->oom instead of unwinding from every call site; the walk then stops at the next
 * section boundary, the partial config is freed and GW_ENOMEM returned. */
#include "config.h"

#include "alloc.h"
#include "error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_MAX_FILE (16u * 1024 * 1024) /* config, profile and rule files */
#define CFG_MAX_SECRET (64u * 1024)      /* password_file / token_file */
#define CFG_MAX_ERRORS 500               /* stored lines; the rest are only counted */
#define JP 512                           /* JSON path buffer */

#ifndef CITYGATE_PLUGIN_DIR
#define CITYGATE_PLUGIN_DIR "/usr/lib/citygate/plugins"
#endif

/* ---- error collection ------------------------------------------------------------ */

void gw_cfgerr_add(gw_cfgerr *e, const char *file, const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char *line = NULL;
    size_t len;
    const char *f = file ? file : "";
    if (path && *path)
        len = (size_t)snprintf(NULL, 0, "%s: %s: %s", f, path, msg);
    else
        len = (size_t)snprintf(NULL, 0, "%s: %s", f, msg);
    line = gw_malloc(len + 1);
    if (!line)
        return;
    if (path && *path)
        snprintf(line, len + 1, "%s: %s: %s", f, path, msg);
    else
        snprintf(line, len + 1, "%s: %s", f, msg);
    /* One error is one line: keys and values from the file may hold control bytes. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 16;
        char **lines = gw_realloc(e->lines, cap * sizeof *lines);
        if (!lines) {
            gw_free(line);
            return;
        }
        e->lines = lines;
        e->cap = cap;
    }
    e->lines[e->n++] = line;
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return GW_EIO;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

void gw_cfgerr_print(const gw_cfgerr *e, int fd)
{
    for (size_t i = 0; i < e->n; i++) {
        if (write_all(fd, e->lines[i], strlen(e->lines[i])) || write_all(fd, "\n", 1))
            return;
    }
}

void gw_cfgerr_free(gw_cfgerr *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        gw_free(e->lines[i]);
    gw_free(e->lines);
    e->lines = NULL;
    e->n = e->cap = 0;
}

/* ---- reading JSON ------------------------------------------------------------------ */

/* Line and column (1-based; columns count UTF-8 characters) of offset in buf. */
static void line_col(const char *buf, size_t off, unsigned long *line, unsigned long *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off; i++) {
        unsigned char c = (unsigned char)buf[i];
        if (c == '\n') {
            (*line)++;
            *col = 1;
        } else if ((c & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Whether the bracket at or enclosing pos (a '{' or ',') belongs to an object. */
static int in_object(const char *buf, size_t start, size_t pos)
{
    char stack[1100];
    size_t depth = 0;
    int in_str = 0;
    for (size_t i = start; i < pos; i++) {
        char c = buf[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (depth == sizeof stack)
                return 0;
            stack[depth++] = c;
        } else if ((c == '}' || c == ']') && depth) {
            depth--;
        }
    }
    if (in_str)
        return 0;
    if (buf[pos] == '{')
        return 1;
    return depth && stack[depth - 1] == '{';
}

/* Parse len bytes of buf (buf[len] must be NUL). Reports with file's name. */
static cJSON *parse_json(const char *file, const char *buf, size_t len, gw_cfgerr *e)
{
    size_t start = 0;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        start = 3; /* a UTF-8 byte order mark, as some editors write */
    const char *nul = memchr(buf + start, '\0', len - start);
    const char *end = NULL;
    cJSON *root = NULL;
    size_t at;
    if (nul) {
        at = (size_t)(nul - buf);
    } else {
        root = cJSON_ParseWithOpts(buf + start, &end, 1);
        if (root)
            return root;
        at = end ? (size_t)(end - buf) : len;
        if (at > len)
            at = len;
        /* cJSON reports a bad object key one byte past its start ({"a": 1,} stops
         * after the '}'): when the byte before the stop follows a '{' or ',' of an
         * object, that byte is the culprit. */
        if (at > start) {
            size_t q = at - 1, r = q;
            while (r > start && strchr(" \t\r\n", buf[r - 1]))
                r--;
            if (!strchr(" \t\r\n\"", buf[q]) && r > start &&
                (buf[r - 1] == '{' || buf[r - 1] == ',') && in_object(buf, start, r - 1))
                at = q;
        }
    }
    unsigned long line, col;
    line_col(buf, at, &line, &col);
    char why[64];
    unsigned char c = at < len ? (unsigned char)buf[at] : 0;
    if (nul)
        snprintf(why, sizeof why, "NUL byte");
    else if (at >= len)
        snprintf(why, sizeof why, "unexpected end of input");
    else if (c >= 0x21 && c < 0x7f)
        snprintf(why, sizeof why, "unexpected '%c'", c);
    else
        snprintf(why, sizeof why, "unexpected byte 0x%02X", c);
    gw_cfgerr_add(e, file, "", "line %lu, column %lu: invalid JSON (%s)", line, col, why);
    return NULL;
}

/* Read a whole file (at most max bytes) into a NUL-terminated buffer. Returns 0,
 * GW_EIO with errno set, GW_EFULL when larger than max, or GW_ENOMEM. */
static int read_file(const char *file, size_t max, char **out, size_t *out_len)
{
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return GW_EIO;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return GW_EIO;
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        errno = EISDIR;
        return GW_EIO;
    }
    size_t cap = S_ISREG(st.st_mode) && (uint64_t)st.st_size <= max ? (size_t)st.st_size + 1 : 4096;
    size_t len = 0;
    char *buf = gw_malloc(cap);
    if (!buf) {
        close(fd);
        return GW_ENOMEM;
    }
    for (;;) {
        if (len + 1 == cap) {
            /* Full: probe for one more byte before growing, so a file read to its
             * stat size is not copied into a buffer twice its size. */
            char probe;
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                int err = errno;
                gw_free(buf);
                close(fd);
                errno = err;
                return GW_EIO;
            }
            if (r == 0)
                break;
            if (len >= max) {
                gw_free(buf);
                close(fd);
                return GW_EFULL;
            }
            size_t ncap = cap * 2 > max + 2 ? max + 2 : cap * 2;
            char *nb = gw_realloc(buf, ncap);
            if (!nb) {
                gw_free(buf);
                close(fd);
                return GW_ENOMEM;
            }
            buf = nb;
            cap = ncap;
            buf[len++] = probe;
            continue;
        }
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int err = errno;
            gw_free(buf);
            close(fd);
            errno = err;
            return GW_EIO;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > max) {
            gw_free(buf);
            close(fd);
            return GW_EFULL;
        }
    }
    close(fd);
    buf[len] = '\0';
    *out = buf;
    *out_len = len;
    return 0;
}

/* gw_cfg_read_json with the out-of-memory case told apart from bad content. */
static cJSON *read_json(const char *file, gw_cfgerr *e, int *oom)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(file, CFG_MAX_FILE, &buf, &len);
    if (rc == GW_ENOMEM) {
        *oom = 1;
        return NULL;
    }
    if (rc == GW_EFULL) {
        gw_cfgerr_add(e, file, "", "larger than 16 MiB");
        return NULL;
    }
    if (rc) {
        gw_cfgerr_add(e, file, "", "cannot read: %s", strerror(errno));
        return NULL;
    }
    size_t before = e->n;
    cJSON *root = parse_json(file, buf, len, e);
    gw_free(buf);
    /* cJSON allocates with malloc: a NULL without a syntax error is out of memory. */
    if (!root && e->n == before)
        *oom = 1;
    return root;
}

cJSON *gw_cfg_read_json(const char *file, gw_cfgerr *e)
{
    int oom = 0;
    return read_json(file, e, &oom);
}

/* ---- the loader context ------------------------------------------------------------- */

typedef struct cfg_ld {
    gw_config *cfg;
    gw_cfgerr *e;
    const char *file;     /* main config file as given */
    size_t nerr;          /* errors found (stored or not) */
    int oom;
    char **prof_dirs, **rule_dirs; /* candidates as written, for messages */
    size_t n_prof_dirs, n_rule_dirs;
} cfg_ld;

__attribute__((format(printf, 4, 5)))
static void err(cfg_ld *L, const char *file, const char *path, const char *fmt, ...)
{
    L->nerr++;
    if (L->nerr > CFG_MAX_ERRORS)
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t before = L->e->n;
    gw_cfgerr_add(L->e, file ? file : L->file, path, "%s", msg);
    if (L->e->n == before)
        L->oom = 1;
}

static char *dup_s(cfg_ld *L, const char *s)
{
    if (!s)
        return NULL;
    char *d = gw_strdup(s);
    if (!d)
        L->oom = 1;
    return d;
}

static void *calloc_n(cfg_ld *L, size_t n, size_t size)
{
    void *p = gw_calloc(n ? n : 1, size);
    if (!p)
        L->oom = 1;
    return p;
}

/* printf into a fresh gw_malloc string. */
__attribute__((format(printf, 2, 3)))
static char *fmt_s(cfg_ld *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = gw_malloc((size_t)n + 1);
    if (!s) {
        L->oom = 1;
        return NULL;
    }
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* JSON paths are built by bounded copies: a path longer than JP is cut, not lost. */
static size_t jp_put(char *buf, size_t at, const char *s)
{
    while (*s && at < JP - 1)
        buf[at++] = *s++;
    buf[at] = '\0';
    return at;
}

static const char *jp_key(char *buf, const char *base, const char *key)
{
    size_t n = 0;
    if (base && *base)
        n = jp_put(buf, jp_put(buf, 0, base), ".");
    jp_put(buf, n, key);
    return buf;
}

static const char *jp_idx(char *buf, const char *base, size_t i)
{
    char idx[32];
    snprintf(idx, sizeof idx, "[%zu]", i);
    jp_put(buf, jp_put(buf, 0, base), idx);
    return buf;
}

/* Relative paths resolve against the config file's directory. */
static char *resolve(cfg_ld *L, const char *p)
{
    const char *base = L->cfg->base_dir;
    if (!p || p[0] == '/' || !base || strcmp(base, ".") == 0)
        return dup_s(L, p);
    return fmt_s(L, "%s/%s", base, p);
}

static int is_dir(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *p)
{
    struct stat st;
    return p && stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* ---- small validators -------------------------------------------------------------- */

static const char *jtype(const cJSON *j)
{
    if (cJSON_IsString(j))
        return "string";
    if (cJSON_IsNumber(j))
        return "number";
    if (cJSON_IsBool(j))
        return "boolean";
    if (cJSON_IsNull(j))
        return "null";
    if (cJSON_IsArray(j))
        return "array";
    if (cJSON_IsObject(j))
        return "object";
    return "invalid";
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t prev[65], cur[65];
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            cur[j] = del < ins ? del : ins;
            if (sub < cur[j])
                cur[j] = sub;
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

/* The closest of names to s when close enough to be a likely typo, else NULL. */
static const char *suggest(const char *s, const char *const *names, size_t n)
{
    const char *best = NULL;
    size_t best_d = 99, len = strlen(s);
    size_t limit = len >= 5 ? 2 : 1;
    for (size_t i = 0; i < n; i++) {
        size_t d = edit_distance(s, names[i]);
        if (d < best_d) {
            best_d = d;
            best = names[i];
        }
    }
    return best && best_d <= limit && best_d < strlen(best) ? best : NULL;
}

static size_t count_names(const char *const *names)
{
    size_t n = 0;
    while (names[n])
        n++;
    return n;
}

/* Report keys of obj not in known (NULL-terminated) and known keys given twice. */
static void check_keys(cfg_ld *L, const char *file, const cJSON *obj, const char *path,
                       const char *const *known)
{
    size_t nk = count_names(known);
    unsigned char seen[64] = {0};
    char p[JP];
    for (const cJSON *c = obj->child; c; c = c->next) {
        const char *k = c->string ? c->string : "";
        size_t i = 0;
        while (i < nk && strcmp(known[i], k) != 0)
            i++;
        if (i < nk) {
            if (i < sizeof seen && seen[i]++)
                err(L, file, jp_key(p, path, k), "duplicate key");
            continue;
        }
        const char *s = suggest(k, known, nk);
        if (s)
            err(L, file, jp_key(p, path, k), "unknown key (did you mean '%s'?)", s);
        else
            err(L, file, jp_key(p, path, k), "unknown key");
    }
}

enum { T_STR = 1, T_NUM = 2, T_BOOL = 4, T_OBJ = 8, T_ARR = 16 };
enum { F_REQ = 1, F_NONEMPTY = 2 };

/* obj[key] when present and of the wanted type; reports wrong types and (F_REQ)
 * missing keys. */
static const cJSON *want(cfg_ld *L, const char *file, const cJSON *obj, const char *path,
                         const char *key, int types, int flags)
{
    char p[JP];
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!j) {
        if (flags & F_REQ)
            err(L, file, jp_key(p, path, key), "missing (required)");
        return NULL;
    }
    int ok = ((types & T_STR) && cJSON_IsString(j) && j->valuestring) ||
             ((types & T_NUM) && cJSON_IsNumber(j)) || ((types & T_BOOL) && cJSON_IsBool(j)) ||
             ((types & T_OBJ) && cJSON_IsObject(j)) || ((types & T_ARR) && cJSON_IsArray(j));
    if (ok)
        return j;
    const char *what = "a string";
    switch (types) {
    case T_STR: what = "a string"; break;
    case T_NUM: what = "a number"; break;
    case T_BOOL: what = "true or false"; break;
    case T_OBJ: what = "an object"; break;
    case T_ARR: what = "an array"; break;
    case T_STR | T_ARR: what = "a string or an array of strings"; break;
    default: what = "of another type"; break;
    }
    err(L, file, jp_key(p, path, key), "must be %s, got %s", what, jtype(j));
    return NULL;
}

/* String value (borrowed from the tree) or NULL. */
static const char *get_str(cfg_ld *L, const char *file, const cJSON *obj, const char *path,
                           const char *key, int flags)
{
    const cJSON *j = want(L, file, obj, path, key, T_STR, flags);
    if (!j)
        return NULL;
    if ((flags & (F_NONEMPTY | F_REQ)) && !*j->valuestring) {
        char p[JP];
        err(L, file, jp_key(p, path, key), "must not be empty");
        return NULL;
    }
    return j->valuestring;
}

/* Copy of a string value into *out (left NULL when absent or invalid). */
static void take_str(cfg_ld *L, const cJSON *obj, const char *path, const char *key, int flags,
                     char **out)
{
    const char *s = get_str(L, NULL, obj, path, key, flags);
    if (s && *s) /* "" means unset, as in the shape file's optional strings */
        *out = dup_s(L, s);
}

static void fmt_num(char *buf, size_t n, double v)
{
    if (isnan(v))
        snprintf(buf, n, "nan");
    else if (isinf(v))
        snprintf(buf, n, v > 0 ? "inf" : "-inf");
    else
        snprintf(buf, n, "%.15g", v);
}

/* An integer in min..max into *out (def when absent or invalid). Returns 1 when given
 * and valid, 0 when absent, -1 when invalid. */
static int get_i64(cfg_ld *L, const cJSON *obj, const char *path, const char *key, int64_t min,
                   int64_t max, int64_t def, int64_t *out)
{
    *out = def;
    const cJSON *j = want(L, NULL, obj, path, key, T_NUM, 0);
    if (!j)
        return cJSON_GetObjectItemCaseSensitive(obj, key) ? -1 : 0;
    double v = j->valuedouble;
    char p[JP], got[64];
    fmt_num(got, sizeof got, v);
    if (!isfinite(v) || v != floor(v)) {
        err(L, NULL, jp_key(p, path, key), "must be an integer, got %s", got);
        return -1;
    }
    if (v < (double)min || v > (double)max) {
        err(L, NULL, jp_key(p, path, key), "must be %lld..%lld, got %s", (long long)min,
            (long long)max, got);
        return -1;
    }
    *out = (int64_t)v;
    return 1;
}

static int get_int(cfg_ld *L, const cJSON *obj, const char *path, const char *key, int min,
                   int max, int def, int *out)
{
    int64_t v;
    int rc = get_i64(L, obj, path, key, min, max, def, &v);
    *out = (int)v;
    return rc;
}

static int get_dbl(cfg_ld *L, const cJSON *obj, const char *path, const char *key, double min,
                   double max, double *out)
{
    const cJSON *j = want(L, NULL, obj, path, key, T_NUM, 0);
    if (!j)
        return cJSON_GetObjectItemCaseSensitive(obj, key) ? -1 : 0;
    double v = j->valuedouble;
    if (!isfinite(v) || v < min || v > max) {
        char p[JP], got[64], lo[64], hi[64];
        fmt_num(got, sizeof got, v);
        fmt_num(lo, sizeof lo, min);
        fmt_num(hi, sizeof hi, max);
        err(L, NULL, jp_key(p, path, key), "must be %s..%s, got %s", lo, hi, got);
        return -1;
    }
    *out = v;
    return 1;
}

static void get_bool(cfg_ld *L, const cJSON *obj, const char *path, const char *key, int def,
                     int *out)
{
    const cJSON *j = want(L, NULL, obj, path, key, T_BOOL, 0);
    *out = j ? cJSON_IsTrue(j) : def;
}

/* Index of the value of key among names (NULL-terminated); def when absent, -1 when
 * invalid (reported). */
static int get_enum(cfg_ld *L, const cJSON *obj, const char *path, const char *key,
                    const char *const *names, int def)
{
    const char *s = get_str(L, NULL, obj, path, key, 0);
    if (!s)
        return cJSON_GetObjectItemCaseSensitive(obj, key) ? -1 : def;
    size_t n = count_names(names);
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0)
            return (int)i;
    char list[256] = "", p[JP];
    size_t off = 0;
    for (size_t i = 0; i < n && off < sizeof list; i++)
        off += (size_t)snprintf(list + off, sizeof list - off, "%s'%s'", i ? ", " : "", names[i]);
    const char *sug = suggest(s, names, n);
    if (sug)
        err(L, NULL, jp_key(p, path, key), "must be one of %s, got '%.64s' (did you mean '%s'?)",
            list, s, sug);
    else
        err(L, NULL, jp_key(p, path, key), "must be one of %s, got '%.64s'", list, s);
    return -1;
}

static int all_digits(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Ids name MQTT topic levels and file names: [A-Za-z0-9_.-], 1..64, not "." / "..". */
static int valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* A name used to find a file (profile, rule set, plugin): an id not starting with '.'. */
static int valid_name(const char *s)
{
    return valid_id(s) && s[0] != '.';
}

/* Lower-case words: device kinds (InfluxDB measurements) and decoder names. */
static int valid_word(const char *s, int allow_dash)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32 || !(s[0] >= 'a' && s[0] <= 'z'))
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              (allow_dash && *s == '-')))
            return 0;
    return 1;
}

static const char *get_id(cfg_ld *L, const cJSON *obj, const char *path, const char *key)
{
    const char *s = get_str(L, NULL, obj, path, key, F_REQ);
    if (s && !valid_id(s)) {
        char p[JP];
        err(L, NULL, jp_key(p, path, key),
            "must be 1..64 characters of A-Z a-z 0-9 _ . - (it is used in MQTT topics), got '%.64s'",
            s);
        return NULL;
    }
    return s;
}

/* host[:port] or [v6]:port after a URL scheme; path_ok allows a path after it. */
static const char *check_authority(const char *s, int path_ok)
{
    const char *h = s, *end;
    if (*h == '[') {
        end = strchr(h, ']');
        if (!end || end == h + 1)
            return "has a malformed IPv6 host";
        end++;
    } else {
        end = h;
        while (*end && *end != ':' && *end != '/' && *end != '?' && *end != '#')
            end++;
        if (end == h)
            return "has no host";
        for (const char *c = h; c < end; c++)
            if (*c == '@' || *c == ' ')
                return "has an invalid host (credentials belong in username / password)";
    }
    if (*end == ':') {
        const char *pt = end + 1;
        char *stop;
        errno = 0;
        long port = strtol(pt, &stop, 10);
        if (stop == pt || *pt == '-' || *pt == '+' || port < 1 || port > 65535 || errno)
            return "has an invalid port (1..65535)";
        end = stop;
    }
    if (*end == '\0')
        return NULL;
    if (path_ok && *end == '/' && !strpbrk(end, "?# "))
        return NULL;
    return path_ok ? "must be scheme://host[:port][/path] without query"
                   : "must be scheme://host[:port] with nothing after the port";
}

/* ---- names of component classes ---------------------------------------------------- */

/* CJ/T 214 major class 01 (公用设施) minors, reference/domain.md §1.4. */
static const struct {
    const char *code, *name;
} minor_names[] = {
    {"0101", "上水井盖"}, {"0102", "污水井盖"},     {"0103", "雨水井盖"}, {"0104", "雨水箅子"},
    {"0105", "电力井盖"}, {"0106", "路灯井盖"},     {"0107", "通讯井盖"}, {"0108", "电视井盖"},
    {"0109", "网络井盖"}, {"0110", "热力井盖"},     {"0111", "燃气井盖"}, {"0112", "公安井盖"},
    {"0113", "消防设施"}, {"0114", "无主井盖"},     {"0115", "通讯交接箱"}, {"0116", "电力设施"},
    {"0117", "立杆"},     {"0118", "路灯"},         {"0119", "地灯"},     {"0120", "景观灯"},
    {"0127", "中水井盖"}, {"0128", "公交井盖"},     {"0129", "输油(气)井盖"},
    {"0130", "特殊井盖"}, {"0131", "民用水井"},     {"0132", "供水器"},   {"0133", "高压线铁塔"},
    {"0134", "变压器(箱)"}, {"0135", "燃气调压站"},
};

static const char *minor_class_name(const char *class4)
{
    for (size_t i = 0; i < sizeof minor_names / sizeof minor_names[0]; i++)
        if (strncmp(minor_names[i].code, class4, 4) == 0)
            return minor_names[i].name;
    return NULL;
}

/* ---- documents: profiles and rule sets ---------------------------------------------- */

typedef enum { DOC_PROFILE, DOC_RULESET } doc_kind;

static gw_cfg_doc *doc_find(gw_cfg_doc *docs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (docs[i].name && strcmp(docs[i].name, name) == 0)
            return &docs[i];
    return NULL;
}

/* The loaded document name of kind, loading it on first use. Returns 1 when found
 * (json may be NULL if the file was bad: already reported), 0 when there is no such
 * file. */
/* Path of <dir>/<name>.json in the first candidate directory that has it (a site's own
 * directory listed first adds to the shipped ones instead of hiding them), or NULL. */
static char *doc_path(cfg_ld *L, doc_kind kind, const char *name)
{
    char **dirs = kind == DOC_PROFILE ? L->prof_dirs : L->rule_dirs;
    size_t n = kind == DOC_PROFILE ? L->n_prof_dirs : L->n_rule_dirs;
    for (size_t i = 0; i < n; i++) {
        if (!dirs[i] || !is_dir(dirs[i]))
            continue;
        char *path = fmt_s(L, "%s/%s.json", dirs[i], name);
        if (!path)
            return NULL;
        if (access(path, F_OK) == 0)
            return path;
        gw_free(path);
    }
    return NULL;
}

static int doc_use(cfg_ld *L, doc_kind kind, const char *name)
{
    gw_config *c = L->cfg;
    gw_cfg_doc **docs = kind == DOC_PROFILE ? &c->profiles : &c->rulesets;
    size_t *n = kind == DOC_PROFILE ? &c->n_profiles : &c->n_rulesets;
    if (doc_find(*docs, *n, name))
        return 1;
    char *path = doc_path(L, kind, name);
    if (!path)
        return 0;
    gw_cfg_doc *nd = gw_realloc(*docs, (*n + 1) * sizeof **docs);
    if (!nd) {
        L->oom = 1;
        gw_free(path);
        return 0;
    }
    *docs = nd;
    gw_cfg_doc *d = &nd[(*n)++];
    memset(d, 0, sizeof *d);
    d->path = path;
    d->name = dup_s(L, name);
    size_t before = L->e->n;
    d->json = read_json(path, L->e, &L->oom);
    L->nerr += L->e->n - before;
    if (d->json && !cJSON_IsObject(d->json)) {
        err(L, path, "", "must be a JSON object, got %s", jtype(d->json));
        cJSON_Delete(d->json);
        d->json = NULL;
    }
    return 1;
}

static int doc_exists(cfg_ld *L, doc_kind kind, const char *name)
{
    char *path = doc_path(L, kind, name);
    gw_free(path);
    return path != NULL;
}

static void dir_list(char *buf, size_t n, char **dirs, size_t nd)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < nd && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", dirs[i]);
}

/* ---- secrets ------------------------------------------------------------------------- */

/* Read a secret file: a relative name is looked up in $CREDENTIALS_DIRECTORY (systemd
 * LoadCredential) first, then beside the config. One trailing newline is stripped. */
static char *read_secret(cfg_ld *L, const char *path, const char *name)
{
    char *file = NULL;
    const char *cred = getenv("CREDENTIALS_DIRECTORY");
    if (name[0] != '/' && cred && *cred) {
        file = fmt_s(L, "%s/%s", cred, name);
        if (file && !is_file(file)) {
            gw_free(file);
            file = NULL;
        }
    }
    if (!file)
        file = resolve(L, name);
    if (!file)
        return NULL;
    char *buf = NULL;
    size_t len = 0;
    int rc = read_file(file, CFG_MAX_SECRET, &buf, &len);
    if (rc == GW_ENOMEM) {
        L->oom = 1;
    } else if (rc == GW_EFULL) {
        err(L, NULL, path, "'%s' is larger than 64 KiB", file);
    } else if (rc) {
        err(L, NULL, path, "cannot read '%s': %s", file, strerror(errno));
    } else {
        if (len && buf[len - 1] == '\n')
            buf[--len] = '\0';
        if (len && buf[len - 1] == '\r')
            buf[--len] = '\0';
        if (len == 0 || strlen(buf) != len) {
            err(L, NULL, path, "'%s' %s", file, len ? "contains a NUL byte" : "is empty");
            gw_free(buf);
            buf = NULL;
        }
    }
    gw_free(file);
    return rc ? NULL : buf;
}

/* "key" or "key_file" (not both) into *out. */
static void take_secret(cfg_ld *L, const cJSON *obj, const char *path, const char *key,
                        char **out)
{
    char fkey[64], p[JP];
    snprintf(fkey, sizeof fkey, "%s_file", key);
    const char *v = get_str(L, NULL, obj, path, key, 0);
    const char *f = get_str(L, NULL, obj, path, fkey, F_NONEMPTY);
    if (v && f) {
        err(L, NULL, jp_key(p, path, fkey), "give either '%s' or '%s', not both", key, fkey);
        return;
    }
    if (v && *v)
        *out = dup_s(L, v);
    else if (f)
        *out = read_secret(L, jp_key(p, path, fkey), f);
}

/* A TLS file option: must name a readable regular file. Stored resolved. */
static void take_file(cfg_ld *L, const cJSON *obj, const char *path, const char *key, char **out)
{
    const char *s = get_str(L, NULL, obj, path, key, 0);
    if (!s || !*s)
        return; /* "" means unset, as in the shape file */
    char *r = resolve(L, s);
    if (!r)
        return;
    char p[JP];
    struct stat st;
    if (stat(r, &st) != 0 || access(r, R_OK) != 0)
        err(L, NULL, jp_key(p, path, key), "cannot read '%s': %s", r, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        err(L, NULL, jp_key(p, path, key), "'%s' is not a regular file", r);
    else {
        *out = r;
        return;
    }
    gw_free(r);
}

/* ---- sections ---------------------------------------------------------------------- */

static void load_gateway(cfg_ld *L, const cJSON *root)
{
    static const char *const keys[] = {"id", "name", "admin_code", "component_scheme",
                                       "data_dir", "timezone", "log_level", NULL};
    static const char *const schemes[] = {"CJ/T 214", "GB/T 47678", NULL};
    static const char *const levels[] = {"error", "warn", "notice", "info", "debug", NULL};
    static const gw_log_level level_vals[] = {GW_LOG_ERROR, GW_LOG_WARN, GW_LOG_NOTICE,
                                              GW_LOG_INFO, GW_LOG_DEBUG};
    gw_gateway_cfg *g = &L->cfg->gateway;
    g->utc_offset_min = 8 * 60;
    g->log_level = GW_LOG_INFO;
    const cJSON *o = want(L, NULL, root, "", "gateway", T_OBJ, F_REQ);
    if (!o) {
        g->data_dir = dup_s(L, "/var/lib/citygate");
        return;
    }
    const char *P = "gateway";
    char p[JP];
    check_keys(L, NULL, o, P, keys);
    const char *id = get_id(L, o, P, "id");
    g->id = dup_s(L, id);
    take_str(L, o, P, "name", 0, &g->name);
    if (!g->name)
        g->name = dup_s(L, id);
    const char *ac = get_str(L, NULL, o, P, "admin_code", F_REQ);
    if (ac) {
        if (strlen(ac) != 6 || !all_digits(ac) || ac[0] == '0')
            err(L, NULL, jp_key(p, P, "admin_code"),
                "must be a 6-digit county code (GB/T 2260), got '%.64s'", ac);
        else
            g->admin_code = dup_s(L, ac);
    }
    int s = get_enum(L, o, P, "component_scheme", schemes, 0);
    g->scheme = s == 1 ? GW_SCHEME_GBT47678 : GW_SCHEME_CJT214;
    const char *dd = get_str(L, NULL, o, P, "data_dir", F_NONEMPTY);
    g->data_dir = resolve(L, dd ? dd : "/var/lib/citygate");
    const char *tz = get_str(L, NULL, o, P, "timezone", 0);
    if (tz) {
        int ok = strlen(tz) == 6 && (tz[0] == '+' || tz[0] == '-') && tz[3] == ':';
        int hh = 0, mm = 0;
        if (ok) {
            ok = tz[1] >= '0' && tz[1] <= '9' && tz[2] >= '0' && tz[2] <= '9' && tz[4] >= '0' &&
                 tz[4] <= '9' && tz[5] >= '0' && tz[5] <= '9';
            hh = (tz[1] - '0') * 10 + (tz[2] - '0');
            mm = (tz[4] - '0') * 10 + (tz[5] - '0');
            ok = ok && hh <= 14 && mm <= 59;
        }
        if (ok)
            g->utc_offset_min = (tz[0] == '-' ? -1 : 1) * (hh * 60 + mm);
        else
            err(L, NULL, jp_key(p, P, "timezone"),
                "must be a UTC offset like +08:00 (-14:00..+14:00), got '%.64s'", tz);
    }
    int lv = get_enum(L, o, P, "log_level", levels, 3);
    if (lv >= 0)
        g->log_level = level_vals[lv];
}

/* A string or array of strings of candidate directories. *out is the first existing one
 * (shown in messages); a profile or rule set is looked up in every candidate in order. */
static void load_dirs(cfg_ld *L, const cJSON *paths, const char *key, const char *def,
                      char ***cands, size_t *n_cands, char **out)
{
    char p[JP], q[JP];
    jp_key(p, "paths", key);
    const cJSON *j = paths ? want(L, NULL, paths, "paths", key, T_STR | T_ARR, 0) : NULL;
    size_t n = j && cJSON_IsArray(j) ? (size_t)cJSON_GetArraySize(j) : 1;
    if (j && cJSON_IsArray(j) && n == 0) {
        err(L, NULL, p, "must name at least one directory");
        n = 1;
        j = NULL;
    }
    *cands = calloc_n(L, n, sizeof **cands);
    if (!*cands)
        return;
    if (!j) {
        (*cands)[(*n_cands)++] = dup_s(L, def);
    } else if (cJSON_IsString(j)) {
        (*cands)[(*n_cands)++] = resolve(L, j->valuestring);
    } else {
        size_t i = 0;
        for (const cJSON *c = j->child; c; c = c->next, i++) {
            if (!cJSON_IsString(c) || !*c->valuestring) {
                err(L, NULL, jp_idx(q, p, i), "must be a non-empty string, got %s",
                    cJSON_IsString(c) ? "\"\"" : jtype(c));
                continue;
            }
            (*cands)[(*n_cands)++] = resolve(L, c->valuestring);
        }
    }
    for (size_t i = 0; i < *n_cands; i++) {
        if ((*cands)[i] && is_dir((*cands)[i])) {
            *out = dup_s(L, (*cands)[i]);
            return;
        }
    }
}

static void load_paths(cfg_ld *L, const cJSON *root)
{
    static const char *const keys[] = {"profiles", "rules", "plugins", NULL};
    gw_config *c = L->cfg;
    const cJSON *o = want(L, NULL, root, "", "paths", T_OBJ, 0);
    if (o)
        check_keys(L, NULL, o, "paths", keys);
    load_dirs(L, o, "profiles", "/usr/share/citygate/devices", &L->prof_dirs, &L->n_prof_dirs,
              &c->profiles_dir);
    load_dirs(L, o, "rules", "/usr/share/citygate/rules", &L->rule_dirs, &L->n_rule_dirs,
              &c->rules_dir);
    char **pl = NULL;
    size_t npl = 0;
    load_dirs(L, o, "plugins", CITYGATE_PLUGIN_DIR, &pl, &npl, &c->plugins_dir);
    for (size_t i = 0; i < npl; i++)
        gw_free(pl[i]);
    gw_free(pl);
}

static void load_bus(cfg_ld *L, const cJSON *o, const char *P, gw_bus *b)
{
    static const char *const keys[] = {
        "id", "type", "host", "port", "device", "baud", "parity", "data_bits", "stop_bits",
        "response_timeout_ms", "byte_timeout_ms", "retries", "max_gap", "reconnect_min_ms",
        "reconnect_max_ms", "accept_any_unit_id", NULL};
    static const char *const types[] = {"tcp", "rtu", NULL};
    static const char *const tcp_only[] = {"host", "port", "accept_any_unit_id", NULL};
    static const char *const rtu_only[] = {"device", "baud", "parity", "data_bits", "stop_bits",
                                           NULL};
    static const char *const parities[] = {"N", "E", "O", NULL};
    char p[JP];
    check_keys(L, NULL, o, P, keys);
    b->id = dup_s(L, get_id(L, o, P, "id"));
    int t = get_enum(L, o, P, "type", types, -2);
    if (t == -2)
        err(L, NULL, jp_key(p, P, "type"), "missing (required)");
    b->type = t == 1 ? GW_BUS_RTU : GW_BUS_TCP;
    if (t >= 0) {
        const char *const *other = t == 0 ? rtu_only : tcp_only;
        for (size_t i = 0; other[i]; i++)
            if (cJSON_GetObjectItemCaseSensitive(o, other[i]))
                err(L, NULL, jp_key(p, P, other[i]), "applies to %s buses only, this one is %s",
                    t == 0 ? "rtu" : "tcp", types[t]);
    }
    if (t == 0 || t < 0) {
        take_str(L, o, P, "host", t == 0 ? F_REQ : 0, &b->host);
        get_int(L, o, P, "port", 1, 65535, 502, &b->port);
        get_bool(L, o, P, "accept_any_unit_id", 0, &b->any_unit_id);
    }
    if (t == 1 || t < 0) {
        take_str(L, o, P, "device", t == 1 ? F_REQ : 0, &b->device);
        get_int(L, o, P, "baud", 300, 4000000, 9600, &b->baud);
        int par = get_enum(L, o, P, "parity", parities, 0);
        b->parity = par >= 0 ? parities[par][0] : 'N';
        get_int(L, o, P, "data_bits", 7, 8, 8, &b->data_bits);
        get_int(L, o, P, "stop_bits", 1, 2, 1, &b->stop_bits);
    }
    get_int(L, o, P, "response_timeout_ms", 10, 60000, 500, &b->response_timeout_ms);
    get_int(L, o, P, "byte_timeout_ms", 0, 60000, 0, &b->byte_timeout_ms);
    get_int(L, o, P, "retries", 0, 10, 1, &b->retries);
    get_int(L, o, P, "max_gap", 0, 125, 8, &b->max_gap);
    get_int(L, o, P, "reconnect_min_ms", 10, 3600000, 500, &b->reconnect_min_ms);
    if (get_int(L, o, P, "reconnect_max_ms", 10, 3600000, 30000, &b->reconnect_max_ms) >= 0 &&
        b->reconnect_max_ms < b->reconnect_min_ms) {
        err(L, NULL, jp_key(p, P, "reconnect_max_ms"), "must be >= reconnect_min_ms (%d), got %d",
            b->reconnect_min_ms, b->reconnect_max_ms);
    }
}

/* Report duplicate ids among n items; ids[i] may be NULL (invalid, already reported). */
static void check_dup_ids(cfg_ld *L, const char *list, char *const *ids, size_t stride, size_t n)
{
    char p[JP];
    for (size_t i = 1; i < n; i++) {
        const char *a = *(char *const *)((const char *)ids + i * stride);
        if (!a)
            continue;
        for (size_t k = 0; k < i; k++) {
            const char *b = *(char *const *)((const char *)ids + k * stride);
            if (b && strcmp(a, b) == 0) {
                char q[JP];
                jp_key(q, jp_idx(p, list, i), "id");
                err(L, NULL, q, "duplicate id '%s' (first at %s[%zu])", a, list, k);
                break;
            }
        }
    }
}

/* One element of a top-level array of objects: set the item's defaults (also for an
 * element that is not an object, which is reported), then load it. */
typedef void (*item_fn)(cfg_ld *L, cJSON *o, const char *P, void *item);

/* Load the top-level array key ("buses", "mqtt_sources", "devices"): one zeroed item of
 * size bytes per element, each counted in *count before item loads it (so freeing the
 * config frees what a half-loaded array holds). Returns the array, NULL when it is
 * absent, empty or out of memory. */
static void *load_items(cfg_ld *L, const cJSON *root, const char *key, size_t size,
                        size_t *count, item_fn item)
{
    /* Not const: a device's tags subtree is detached and kept (take_tree). */
    cJSON *a = (cJSON *)want(L, NULL, root, "", key, T_ARR, 0);
    if (!a || !a->child)
        return NULL;
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    char *items = calloc_n(L, n, size);
    if (!items)
        return NULL;
    char P[JP];
    for (cJSON *o = a->child; o && !L->oom; o = o->next, i++) {
        jp_idx(P, key, i);
        item(L, o, P, items + size * (*count)++);
    }
    return items;
}

/* 1 if o is an object; else reports it at P and returns 0. */
static int item_object(cfg_ld *L, const cJSON *o, const char *P)
{
    if (cJSON_IsObject(o))
        return 1;
    err(L, NULL, P, "must be an object, got %s", jtype(o));
    return 0;
}

static void bus_item(cfg_ld *L, cJSON *o, const char *P, void *item)
{
    gw_bus *b = item;
    b->port = 502;
    b->baud = 9600;
    b->parity = 'N';
    b->data_bits = 8;
    b->stop_bits = 1;
    if (item_object(L, o, P))
        load_bus(L, o, P, b);
}

static void load_buses(cfg_ld *L, const cJSON *root)
{
    gw_config *c = L->cfg;
    c->buses = load_items(L, root, "buses", sizeof *c->buses, &c->n_buses, bus_item);
    if (c->n_buses) /* &c->buses[0] of a NULL array is undefined */
        check_dup_ids(L, "buses", &c->buses[0].id, sizeof *c->buses, c->n_buses);
}

/* MQTT URL: tcp://, ssl:// or mqtts:// (stored as ssl://). */
static void take_mqtt_url(cfg_ld *L, const cJSON *o, const char *P, int required, char **out)
{
    const char *u = get_str(L, NULL, o, P, "url", required ? F_REQ : F_NONEMPTY);
    if (!u)
        return;
    char p[JP];
    const char *rest = NULL, *scheme = NULL;
    if (strncmp(u, "tcp://", 6) == 0)
        rest = u + 6, scheme = "tcp://";
    else if (strncmp(u, "ssl://", 6) == 0)
        rest = u + 6, scheme = "ssl://";
    else if (strncmp(u, "mqtts://", 8) == 0)
        rest = u + 8, scheme = "ssl://";
    if (!rest) {
        err(L, NULL, jp_key(p, P, "url"),
            "must start with tcp://, ssl:// or mqtts://, got '%.128s'", u);
        return;
    }
    const char *why = check_authority(rest, 0);
    if (why) {
        err(L, NULL, jp_key(p, P, "url"), "%s, got '%.128s'", why, u);
        return;
    }
    *out = fmt_s(L, "%s%s", scheme, rest);
}

static void load_conn(cfg_ld *L, const cJSON *o, const char *P, int required, const char *def_id,
                      gw_mqtt_conn *c)
{
    char p[JP];
    take_mqtt_url(L, o, P, required, &c->url);
    take_str(L, o, P, "client_id", F_NONEMPTY, &c->client_id);
    if (!c->client_id && def_id)
        c->client_id = dup_s(L, def_id);
    take_str(L, o, P, "username", 0, &c->username);
    take_secret(L, o, P, "password", &c->password);
    int v = 3;
    get_int(L, o, P, "mqtt_version", 3, 5, 3, &v);
    if (v == 4) {
        err(L, NULL, jp_key(p, P, "mqtt_version"), "must be 3 (MQTT 3.1.1) or 5, got 4");
        v = 3;
    }
    c->mqtt_version = v;
    get_int(L, o, P, "keepalive_s", 5, 65535, 30, &c->keepalive_s);
    take_file(L, o, P, "ca_file", &c->ca_file);
    take_file(L, o, P, "cert_file", &c->cert_file);
    take_file(L, o, P, "key_file", &c->key_file);
    int tls = c->url && strncmp(c->url, "ssl://", 6) == 0;
    static const char *const tls_keys[] = {"ca_file", "cert_file", "key_file"};
    for (size_t i = 0; i < 3 && c->url && !tls; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, tls_keys[i]);
        if (cJSON_IsString(j) && *j->valuestring)
            err(L, NULL, jp_key(p, P, tls_keys[i]),
                "is a TLS option but url is tcp:// (use ssl:// or mqtts://)");
    }
    int has_cert = cJSON_GetObjectItemCaseSensitive(o, "cert_file") != NULL;
    int has_key = cJSON_GetObjectItemCaseSensitive(o, "key_file") != NULL;
    if (has_cert != has_key)
        err(L, NULL, jp_key(p, P, has_cert ? "key_file" : "cert_file"),
            "missing: cert_file and key_file go together");
}

/* Topic filter with named segments: each level is literal, "+", "#" (last) or
 * "{name}". */
static const char *check_topic(const char *t)
{
    if (!*t)
        return "must not be empty";
    if (strlen(t) > 1024)
        return "is longer than 1024 bytes";
    const char *lv = t;
    for (;;) {
        const char *end = strchr(lv, '/');
        size_t n = end ? (size_t)(end - lv) : strlen(lv);
        if (n == 1 && lv[0] == '#') {
            if (end)
                return "'#' must be the last level";
        } else if (n >= 1 && lv[0] == '{') {
            if (n < 3 || lv[n - 1] != '}')
                return "a named level must be {name} with nothing else in the level";
            for (size_t i = 1; i + 1 < n; i++)
                if (!((lv[i] >= 'a' && lv[i] <= 'z') || (lv[i] >= '0' && lv[i] <= '9') ||
                      lv[i] == '_'))
                    return "a level name {name} may hold only a-z 0-9 _";
        } else if (!(n == 1 && lv[0] == '+')) {
            for (size_t i = 0; i < n; i++)
                if (lv[i] == '+' || lv[i] == '#' || lv[i] == '{' || lv[i] == '}')
                    return "'+', '#' and {name} must fill a whole level";
        }
        if (!end)
            return NULL;
        lv = end + 1;
    }
}

static void load_source(cfg_ld *L, const cJSON *o, const char *P, gw_mqtt_source *s)
{
    static const char *const keys[] = {"id", "url", "client_id", "username", "password",
                                       "password_file", "mqtt_version", "keepalive_s",
                                       "ca_file", "cert_file", "key_file", "max_payload",
                                       "subscriptions", NULL};
    static const char *const sub_keys[] = {"topic", "decoder", "device_key", "qos", NULL};
    char p[JP], q[JP];
    check_keys(L, NULL, o, P, keys);
    s->id = dup_s(L, get_id(L, o, P, "id"));
    char *def_id = NULL;
    if (L->cfg->gateway.id && s->id)
        def_id = fmt_s(L, "citygate-%s-ingest-%s", L->cfg->gateway.id, s->id);
    load_conn(L, o, P, 1, def_id, &s->conn);
    gw_free(def_id);
    int64_t mp;
    get_i64(L, o, P, "max_payload", 16, CFG_MAX_FILE, 65536, &mp);
    s->max_payload = (size_t)mp;
    const cJSON *subs = want(L, NULL, o, P, "subscriptions", T_ARR, F_REQ);
    if (!subs)
        return;
    jp_key(p, P, "subscriptions");
    size_t n = (size_t)cJSON_GetArraySize(subs), i = 0;
    if (n == 0) {
        err(L, NULL, p, "must hold at least one subscription");
        return;
    }
    s->subs = calloc_n(L, n, sizeof *s->subs);
    if (!s->subs)
        return;
    for (const cJSON *so = subs->child; so && !L->oom; so = so->next, i++) {
        gw_mqtt_sub *sub = &s->subs[s->n_subs++];
        sub->qos = 1;
        jp_idx(q, p, i);
        if (!item_object(L, so, q))
            continue;
        check_keys(L, NULL, so, q, sub_keys);
        const char *t = get_str(L, NULL, so, q, "topic", F_REQ);
        const char *why = t ? check_topic(t) : NULL;
        char r[JP];
        if (why)
            err(L, NULL, jp_key(r, q, "topic"), "%s, got '%.128s'", why, t);
        else if (t)
            sub->topic = dup_s(L, t);
        const char *d = get_str(L, NULL, so, q, "decoder", F_NONEMPTY);
        if (d && !valid_word(d, 1))
            err(L, NULL, jp_key(r, q, "decoder"),
                "must be a decoder name (a-z 0-9 _ -, starting with a letter), got '%.64s'", d);
        else
            sub->decoder = dup_s(L, d ? d : "json");
        take_str(L, so, q, "device_key", F_NONEMPTY, &sub->device_key);
        get_int(L, so, q, "qos", 0, 2, 1, &sub->qos);
    }
}

static void source_item(cfg_ld *L, cJSON *o, const char *P, void *item)
{
    gw_mqtt_source *s = item;
    s->max_payload = 65536;
    if (item_object(L, o, P))
        load_source(L, o, P, s);
}

static void load_sources(cfg_ld *L, const cJSON *root)
{
    gw_config *c = L->cfg;
    c->mqtt_sources = load_items(L, root, "mqtt_sources", sizeof *c->mqtt_sources,
                                 &c->n_mqtt_sources, source_item);
    if (c->n_mqtt_sources)
        check_dup_ids(L, "mqtt_sources", &c->mqtt_sources[0].id, sizeof *c->mqtt_sources,
                      c->n_mqtt_sources);
}

/* "... (did you mean 'x'?)" among the ids of a list, or "". */
static void id_hint(char *buf, size_t n, const char *s, char *const *ids, size_t stride,
                    size_t count)
{
    const char *names[64];
    size_t k = 0;
    for (size_t i = 0; i < count && k < 64; i++) {
        const char *id = *(char *const *)((const char *)ids + i * stride);
        if (id)
            names[k++] = id;
    }
    const char *sug = suggest(s, names, k);
    if (sug)
        snprintf(buf, n, " (did you mean '%s'?)", sug);
    else
        buf[0] = '\0';
}

static void check_code(cfg_ld *L, const char *p, const char *code, int *ok)
{
    const gw_gateway_cfg *g = &L->cfg->gateway;
    int gbt = g->scheme == GW_SCHEME_GBT47678;
    size_t want_len = gbt ? 17 : 16;
    size_t len = strlen(code);
    if (!all_digits(code)) {
        err(L, NULL, p, "must be digits only, got '%.64s'", code);
        return;
    }
    if (len != want_len) {
        err(L, NULL, p,
            "must be %zu digits for %s (county 6 + major class 2 + minor class %d + serial 6), got %zu",
            want_len, gbt ? "GB/T 47678" : "CJ/T 214", gbt ? 3 : 2, len);
        return;
    }
    if (g->admin_code && strncmp(code, g->admin_code, 6) != 0)
        err(L, NULL, p, "county prefix %.6s does not match gateway.admin_code %s", code,
            g->admin_code);
    if (code[6] == '0' && code[7] == '0')
        err(L, NULL, p, "major class %.2s must be 01..99", code + 6);
    if (gbt ? strncmp(code + 8, "000", 3) == 0 : strncmp(code + 8, "00", 2) == 0)
        err(L, NULL, p, "minor class %.*s must be %s", gbt ? 3 : 2, code + 8,
            gbt ? "001..999" : "01..99");
    *ok = 1;
}

static void load_component(cfg_ld *L, const cJSON *d, const char *DP, gw_component *c)
{
    static const char *const keys[] = {"code", "name", "grid", "owner", "manager",
                                       "maintainer", "location", NULL};
    static const char *const loc_keys[] = {"lon", "lat", "address", NULL};
    char P[JP], p[JP];
    const cJSON *o = want(L, NULL, d, DP, "component", T_OBJ, F_REQ);
    if (!o)
        return;
    jp_key(P, DP, "component");
    check_keys(L, NULL, o, P, keys);
    const char *code = get_str(L, NULL, o, P, "code", F_REQ);
    int ok = 0;
    if (code) {
        size_t before = L->nerr;
        check_code(L, jp_key(p, P, "code"), code, &ok);
        if (ok && L->nerr == before)
            c->code = dup_s(L, code);
    }
    take_str(L, o, P, "name", F_NONEMPTY, &c->name);
    if (!c->name && c->code && L->cfg->gateway.scheme == GW_SCHEME_CJT214) {
        const char *nm = minor_class_name(c->code + 6);
        if (nm)
            c->name = dup_s(L, nm);
    }
    const char *grid = get_str(L, NULL, o, P, "grid", F_NONEMPTY);
    if (grid) {
        const char *ac = L->cfg->gateway.admin_code;
        jp_key(p, P, "grid");
        if (!all_digits(grid) || strlen(grid) != 15)
            err(L, NULL, p,
                "must be a 15-digit unit grid code (county 6 + street 3 + community 3 + grid 3), got '%.64s'",
                grid);
        else if (ac && strncmp(grid, ac, 6) != 0)
            err(L, NULL, p, "county prefix %.6s does not match gateway.admin_code %s", grid, ac);
        else
            c->grid = dup_s(L, grid);
    }
    take_str(L, o, P, "owner", F_NONEMPTY, &c->owner);
    take_str(L, o, P, "manager", F_NONEMPTY, &c->manager);
    take_str(L, o, P, "maintainer", F_NONEMPTY, &c->maintainer);
    const cJSON *loc = want(L, NULL, o, P, "location", T_OBJ, 0);
    if (loc) {
        jp_key(p, P, "location");
        check_keys(L, NULL, loc, p, loc_keys);
        int a = get_dbl(L, loc, p, "lon", -180, 180, &c->location.lon);
        int b = get_dbl(L, loc, p, "lat", -90, 90, &c->location.lat);
        if (a == 0 && b == 1)
            want(L, NULL, loc, p, "lon", T_NUM, F_REQ);
        if (b == 0 && a == 1)
            want(L, NULL, loc, p, "lat", T_NUM, F_REQ);
        c->location.has = a == 1 && b == 1;
        take_str(L, loc, p, "address", F_NONEMPTY, &c->location.address);
    }
}

/* Detach obj[key] from the tree so the config owns it. */
static cJSON *take_tree(cJSON *obj, const char *key)
{
    cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return j ? cJSON_DetachItemViaPointer(obj, j) : NULL;
}

static void load_modbus(cfg_ld *L, cJSON *m, const char *P, gw_device *d)
{
    static const char *const keys[] = {"bus", "unit_id", "profile", NULL};
    gw_config *c = L->cfg;
    char p[JP], hint[128];
    check_keys(L, NULL, m, P, keys);
    const char *bus = get_str(L, NULL, m, P, "bus", F_REQ);
    const gw_bus *b = NULL;
    if (bus) {
        b = gw_config_bus(c, bus);
        if (!b) {
            id_hint(hint, sizeof hint, bus, c->n_buses ? &c->buses[0].id : NULL,
                    sizeof *c->buses, c->n_buses);
            err(L, NULL, jp_key(p, P, "bus"), "no bus '%.64s' in buses%s", bus, hint);
        }
        d->bus = dup_s(L, bus);
    }
    const cJSON *u = want(L, NULL, m, P, "unit_id", T_NUM, F_REQ);
    d->unit_id = -1; /* unknown: kept out of the duplicate check below */
    if (u) {
        double v = u->valuedouble;
        char got[64];
        fmt_num(got, sizeof got, v);
        jp_key(p, P, "unit_id");
        if (!isfinite(v) || v != floor(v))
            err(L, NULL, p, "must be an integer, got %s", got);
        else if (v < 0 || v > 247)
            err(L, NULL, p, "must be 1..247, got %s", got);
        else if (v == 0 && (!b || b->type != GW_BUS_TCP))
            err(L, NULL, p, "must be 1..247, got 0 (0 is accepted on tcp buses only)");
        else
            d->unit_id = (int)v;
    }
    const char *prof = get_str(L, NULL, m, P, "profile", F_REQ);
    if (prof) {
        jp_key(p, P, "profile");
        if (!valid_name(prof)) {
            err(L, NULL, p, "must be a profile name (A-Z a-z 0-9 _ . -), got '%.64s'", prof);
        } else {
            d->profile = dup_s(L, prof);
            if (c->profiles_dir && !doc_use(L, DOC_PROFILE, prof))
                err(L, NULL, p, "profile '%s' not found: no %s/%s.json", prof, c->profiles_dir,
                    prof);
        }
    }
}

static void load_mqtt_dev(cfg_ld *L, cJSON *m, const char *P, gw_device *d)
{
    static const char *const keys[] = {"source", "key", "decoder", "options", NULL};
    gw_config *c = L->cfg;
    char p[JP], hint[128];
    check_keys(L, NULL, m, P, keys);
    const char *src = get_str(L, NULL, m, P, "source", F_REQ);
    if (src) {
        int found = 0;
        for (size_t i = 0; i < c->n_mqtt_sources; i++)
            found |= c->mqtt_sources[i].id && strcmp(c->mqtt_sources[i].id, src) == 0;
        if (!found) {
            id_hint(hint, sizeof hint, src, c->n_mqtt_sources ? &c->mqtt_sources[0].id : NULL,
                    sizeof *c->mqtt_sources, c->n_mqtt_sources);
            err(L, NULL, jp_key(p, P, "source"), "no MQTT source '%.64s' in mqtt_sources%s",
                src, hint);
        }
        d->mqtt_source = dup_s(L, src);
    }
    take_str(L, m, P, "key", F_REQ, &d->key);
    const char *dec = get_str(L, NULL, m, P, "decoder", F_NONEMPTY);
    if (dec && !valid_word(dec, 1))
        err(L, NULL, jp_key(p, P, "decoder"),
            "must be a decoder name (a-z 0-9 _ -, starting with a letter), got '%.64s'", dec);
    else
        d->decoder = dup_s(L, dec);
    if (want(L, NULL, m, P, "options", T_OBJ, 0))
        d->decoder_options = take_tree(m, "options");
}

static void load_rule_sets(cfg_ld *L, const cJSON *o, const char *P, gw_device *d)
{
    gw_config *c = L->cfg;
    char p[JP], q[JP], dirs[512];
    const cJSON *a = want(L, NULL, o, P, "rule_sets", T_ARR, 0);
    if (!a) {
        if (cJSON_GetObjectItemCaseSensitive(o, "rule_sets") || !d->kind)
            return;
        /* Default: the kind's set and "common", those that exist. */
        const char *def[2] = {d->kind, "common"};
        d->rule_sets = calloc_n(L, 2, sizeof *d->rule_sets);
        if (!d->rule_sets)
            return;
        for (size_t i = 0; i < 2; i++)
            if (doc_exists(L, DOC_RULESET, def[i]) && doc_use(L, DOC_RULESET, def[i]))
                d->rule_sets[d->n_rule_sets++] = dup_s(L, def[i]);
        return;
    }
    jp_key(p, P, "rule_sets");
    size_t n = (size_t)cJSON_GetArraySize(a), i = 0;
    d->rule_sets = calloc_n(L, n, sizeof *d->rule_sets);
    if (!d->rule_sets)
        return;
    for (const cJSON *s = a->child; s && !L->oom; s = s->next, i++) {
        jp_idx(q, p, i);
        if (!cJSON_IsString(s)) {
            err(L, NULL, q, "must be a string, got %s", jtype(s));
            continue;
        }
        const char *name = s->valuestring;
        if (!valid_name(name)) {
            err(L, NULL, q, "must be a rule set name (A-Z a-z 0-9 _ . -), got '%.64s'", name);
            continue;
        }
        int dup = 0;
        for (const cJSON *t = a->child; t != s; t = t->next)
            dup |= cJSON_IsString(t) && strcmp(t->valuestring, name) == 0;
        if (dup) {
            err(L, NULL, q, "rule set '%s' is listed twice", name);
            continue;
        }
        if (!c->rules_dir) {
            dir_list(dirs, sizeof dirs, L->rule_dirs, L->n_rule_dirs);
            err(L, NULL, q, "rule set '%s' not found: no rules directory exists (paths.rules: %s)",
                name, dirs);
            continue;
        }
        if (!doc_use(L, DOC_RULESET, name)) {
            err(L, NULL, q, "rule set '%s' not found: no %s/%s.json", name, c->rules_dir, name);
            continue;
        }
        d->rule_sets[d->n_rule_sets++] = dup_s(L, name);
    }
}

static void load_device(cfg_ld *L, cJSON *o, const char *P, gw_device *d)
{
    static const char *const keys[] = {"id", "kind", "name", "interval_ms", "enabled",
                                       "modbus", "mqtt", "component", "rule_sets", "overrides",
                                       "params", "tags", NULL};
    static const char *const reserved_tags[] = {"device", "component", "grid", "gateway", NULL};
    char p[JP], q[JP];
    check_keys(L, NULL, o, P, keys);
    const char *id = get_id(L, o, P, "id");
    d->id = dup_s(L, id);
    const char *kind = get_str(L, NULL, o, P, "kind", F_REQ);
    if (kind && !valid_word(kind, 0))
        err(L, NULL, jp_key(p, P, "kind"),
            "must be a lower-case word (a-z 0-9 _, starting with a letter), got '%.64s'", kind);
    else
        d->kind = dup_s(L, kind);
    take_str(L, o, P, "name", F_NONEMPTY, &d->name);
    if (!d->name)
        d->name = dup_s(L, id);
    get_int(L, o, P, "interval_ms", 100, 86400000, 10000, &d->interval_ms);
    get_bool(L, o, P, "enabled", 1, &d->enabled);

    cJSON *mb = (cJSON *)want(L, NULL, o, P, "modbus", T_OBJ, 0);
    cJSON *mq = (cJSON *)want(L, NULL, o, P, "mqtt", T_OBJ, 0);
    int has_mb = cJSON_GetObjectItemCaseSensitive(o, "modbus") != NULL;
    int has_mq = cJSON_GetObjectItemCaseSensitive(o, "mqtt") != NULL;
    if (has_mb && has_mq)
        err(L, NULL, P, "has both \"modbus\" and \"mqtt\"; a device has exactly one source");
    else if (!has_mb && !has_mq)
        err(L, NULL, P, "needs a source: either \"modbus\" or \"mqtt\"");
    if (mb && !has_mq) {
        d->source = GW_SRC_MODBUS;
        load_modbus(L, mb, jp_key(p, P, "modbus"), d);
    } else if (mq && !has_mb) {
        d->source = GW_SRC_MQTT;
        load_mqtt_dev(L, mq, jp_key(p, P, "mqtt"), d);
    }
    load_component(L, o, P, &d->component);
    load_rule_sets(L, o, P, d);

    const cJSON *ov = want(L, NULL, o, P, "overrides", T_OBJ, 0);
    if (ov) {
        jp_key(p, P, "overrides");
        for (const cJSON *r = ov->child; r; r = r->next)
            if (!cJSON_IsObject(r))
                err(L, NULL, jp_key(q, p, r->string ? r->string : ""),
                    "must be an object of rule settings, got %s", jtype(r));
        d->overrides = take_tree(o, "overrides");
    }
    if (want(L, NULL, o, P, "params", T_OBJ, 0))
        d->params = take_tree(o, "params");
    const cJSON *tg = want(L, NULL, o, P, "tags", T_OBJ, 0);
    if (tg) {
        jp_key(p, P, "tags");
        for (const cJSON *t = tg->child; t; t = t->next) {
            const char *k = t->string ? t->string : "";
            jp_key(q, p, k);
            size_t r = 0;
            while (reserved_tags[r] && strcmp(reserved_tags[r], k) != 0)
                r++;
            if (reserved_tags[r])
                err(L, NULL, q, "is a reserved tag (set by the gateway)");
            else if (!valid_id(k))
                err(L, NULL, q, "tag names may hold only A-Z a-z 0-9 _ . -");
            else if (!cJSON_IsString(t))
                err(L, NULL, q, "must be a string, got %s", jtype(t));
        }
        d->tags = take_tree(o, "tags");
    }
}

static void device_item(cfg_ld *L, cJSON *o, const char *P, void *item)
{
    gw_device *d = item;
    d->interval_ms = 10000;
    d->enabled = 1;
    d->unit_id = 1;
    if (item_object(L, o, P))
        load_device(L, o, P, d);
}

static void load_devices(cfg_ld *L, cJSON *root)
{
    gw_config *c = L->cfg;
    c->devices = load_items(L, root, "devices", sizeof *c->devices, &c->n_devices, device_item);
    char P[JP], p[JP], q[JP];
    if (c->n_devices)
        check_dup_ids(L, "devices", &c->devices[0].id, sizeof *c->devices, c->n_devices);
    /* One physical device per (bus, unit id) and per (MQTT source, key). */
    for (size_t k = 1; k < c->n_devices && !L->oom; k++) {
        const gw_device *d = &c->devices[k];
        for (size_t j = 0; j < k; j++) {
            const gw_device *e = &c->devices[j];
            if (d->unit_id >= 0 && d->bus && e->bus && strcmp(d->bus, e->bus) == 0 &&
                d->unit_id == e->unit_id && d->source == GW_SRC_MODBUS &&
                e->source == GW_SRC_MODBUS) {
                jp_key(q, jp_key(p, jp_idx(P, "devices", k), "modbus"), "unit_id");
                err(L, NULL, q, "unit id %d on bus '%s' is already used by devices[%zu] ('%s')",
                    d->unit_id, d->bus, j, e->id ? e->id : "");
                break;
            }
            if (d->key && e->key && d->mqtt_source && e->mqtt_source &&
                strcmp(d->mqtt_source, e->mqtt_source) == 0 && strcmp(d->key, e->key) == 0) {
                jp_key(q, jp_key(p, jp_idx(P, "devices", k), "mqtt"), "key");
                err(L, NULL, q, "key '%s' on source '%s' is already used by devices[%zu] ('%s')",
                    d->key, d->mqtt_source, j, e->id ? e->id : "");
                break;
            }
        }
    }
}

static void take_http_url(cfg_ld *L, const cJSON *o, const char *P, int required, char **out)
{
    const char *u = get_str(L, NULL, o, P, "url", required ? F_REQ : F_NONEMPTY);
    if (!u)
        return;
    char p[JP];
    const char *rest = strncmp(u, "http://", 7) == 0    ? u + 7
                       : strncmp(u, "https://", 8) == 0 ? u + 8
                                                        : NULL;
    if (!rest) {
        err(L, NULL, jp_key(p, P, "url"), "must start with http:// or https://, got '%.128s'", u);
        return;
    }
    const char *why = check_authority(rest, 1);
    if (why) {
        err(L, NULL, jp_key(p, P, "url"), "%s, got '%.128s'", why, u);
        return;
    }
    size_t n = strlen(u);
    while (n > (size_t)(rest - u) && u[n - 1] == '/')
        n--;
    *out = gw_strndup(u, n);
    if (!*out)
        L->oom = 1;
}

static void load_influx(cfg_ld *L, const cJSON *outs)
{
    static const char *const keys[] = {
        "enabled", "url", "version", "database", "retention_policy", "username", "password",
        "password_file", "org", "bucket", "token", "token_file", "precision", "batch_lines",
        "batch_bytes", "flush_ms", "timeout_ms", "gzip", "ca_file", "spool_max_bytes", NULL};
    static const char *const precisions[] = {"ns", "us", "ms", "s", NULL};
    static const char *const v1_keys[] = {"database", "retention_policy", "username", "password",
                                          "password_file", NULL};
    static const char *const v2_keys[] = {"org", "bucket", "token", "token_file", NULL};
    gw_influx_cfg *f = &L->cfg->influx;
    f->version = 1;
    f->batch_lines = 5000;
    f->batch_bytes = 1 << 20;
    f->flush_ms = 1000;
    f->timeout_ms = 10000;
    f->gzip = 1;
    f->spool_max_bytes = 256LL << 20;
    f->precision = dup_s(L, "us");
    const cJSON *o = outs ? want(L, NULL, outs, "outputs", "influxdb", T_OBJ, 0) : NULL;
    if (!o)
        return;
    const char *P = "outputs.influxdb";
    char p[JP];
    check_keys(L, NULL, o, P, keys);
    get_bool(L, o, P, "enabled", 1, &f->enabled);
    take_http_url(L, o, P, f->enabled, &f->url);
    get_int(L, o, P, "version", 1, 2, 1, &f->version);
    const char *const *other = f->version == 1 ? v2_keys : v1_keys;
    for (size_t i = 0; other[i]; i++) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, other[i]);
        if (j && !(cJSON_IsString(j) && !*j->valuestring))
            err(L, NULL, jp_key(p, P, other[i]), "applies to InfluxDB %s only (version is %d)",
                f->version == 1 ? "2.x (version 2)" : "1.x (version 1)", f->version);
    }
    int req = f->enabled ? F_REQ : F_NONEMPTY;
    if (f->version == 1) {
        take_str(L, o, P, "database", req, &f->database);
        take_str(L, o, P, "retention_policy", 0, &f->retention_policy);
        take_str(L, o, P, "username", 0, &f->username);
        take_secret(L, o, P, "password", &f->password);
    } else {
        take_str(L, o, P, "org", req, &f->org);
        take_str(L, o, P, "bucket", req, &f->bucket);
        take_secret(L, o, P, "token", &f->token);
        if (f->enabled && !f->token && !cJSON_GetObjectItemCaseSensitive(o, "token") &&
            !cJSON_GetObjectItemCaseSensitive(o, "token_file"))
            err(L, NULL, jp_key(p, P, "token"), "missing: InfluxDB 2.x needs token or token_file");
        else if (f->enabled && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "token")) &&
                 !f->token)
            err(L, NULL, jp_key(p, P, "token"), "must not be empty");
    }
    int pr = get_enum(L, o, P, "precision", precisions, 1);
    if (pr >= 0 && strcmp(f->precision ? f->precision : "", precisions[pr]) != 0) {
        gw_free(f->precision);
        f->precision = dup_s(L, precisions[pr]);
    }
    get_int(L, o, P, "batch_lines", 1, 1000000, 5000, &f->batch_lines);
    get_int(L, o, P, "batch_bytes", 1024, 64 << 20, 1 << 20, &f->batch_bytes);
    get_int(L, o, P, "flush_ms", 10, 600000, 1000, &f->flush_ms);
    get_int(L, o, P, "timeout_ms", 100, 600000, 10000, &f->timeout_ms);
    get_bool(L, o, P, "gzip", 1, &f->gzip);
    take_file(L, o, P, "ca_file", &f->ca_file);
    if (f->ca_file && f->url && strncmp(f->url, "https://", 8) != 0)
        err(L, NULL, jp_key(p, P, "ca_file"), "is a TLS option but url is http:// (use https://)");
    get_i64(L, o, P, "spool_max_bytes", 0, 1LL << 40, 256LL << 20, &f->spool_max_bytes);
}

static void load_upstream(cfg_ld *L, const cJSON *outs)
{
    static const char *const keys[] = {
        "enabled", "url", "client_id", "username", "password", "password_file", "mqtt_version",
        "keepalive_s", "ca_file", "cert_file", "key_file", "topic_prefix", "report_interval_s",
        "max_inflight", "renotify_s", "problem_types", NULL};
    gw_upstream_cfg *u = &L->cfg->upstream;
    u->topic_prefix = dup_s(L, "citygate");
    u->report_interval_s = 60;
    u->max_inflight = 10;
    u->conn.mqtt_version = 3;
    u->conn.keepalive_s = 30;
    const cJSON *o = outs ? want(L, NULL, outs, "outputs", "mqtt", T_OBJ, 0) : NULL;
    if (!o)
        return;
    const char *P = "outputs.mqtt";
    char p[JP], q[JP];
    check_keys(L, NULL, o, P, keys);
    get_bool(L, o, P, "enabled", 1, &u->enabled);
    char *def_id = L->cfg->gateway.id ? fmt_s(L, "citygate-%s", L->cfg->gateway.id) : NULL;
    load_conn(L, o, P, u->enabled, def_id, &u->conn);
    gw_free(def_id);
    const char *tp = get_str(L, NULL, o, P, "topic_prefix", F_NONEMPTY);
    if (tp) {
        if (strpbrk(tp, "+#") || tp[0] == '/' || tp[strlen(tp) - 1] == '/' || strstr(tp, "//"))
            err(L, NULL, jp_key(p, P, "topic_prefix"),
                "must be topic levels without '+', '#', or leading, trailing or empty levels, got '%.64s'",
                tp);
        else {
            gw_free(u->topic_prefix);
            u->topic_prefix = dup_s(L, tp);
        }
    }
    get_int(L, o, P, "report_interval_s", 0, 86400, 60, &u->report_interval_s);
    get_int(L, o, P, "max_inflight", 1, 65535, 10, &u->max_inflight);
    get_int(L, o, P, "renotify_s", 0, 7 * 86400, 0, &u->renotify_s);
    const cJSON *pt = want(L, NULL, o, P, "problem_types", T_OBJ, 0);
    if (pt) {
        jp_key(p, P, "problem_types");
        for (const cJSON *t = pt->child; t; t = t->next) {
            const char *k = t->string ? t->string : "";
            jp_key(q, p, k);
            if (!all_digits(k) || (strlen(k) != 4 && strlen(k) != 5))
                err(L, NULL, q, "must be an event class code of 4 or 5 digits (e.g. \"0401\")");
            else if (!cJSON_IsString(t) || !*t->valuestring)
                err(L, NULL, q, "must be a non-empty string, got %s", jtype(t));
        }
        u->problem_types = take_tree((cJSON *)o, "problem_types");
    }
}

static int is_loopback(const char *addr)
{
    if (strcmp(addr, "localhost") == 0)
        return 1;
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, addr, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    return inet_pton(AF_INET6, addr, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

static void load_http(cfg_ld *L, const cJSON *root)
{
    static const char *const keys[] = {"enabled", "listen", "port", "token", "token_file",
                                       "history_minutes", NULL};
    gw_http_cfg *h = &L->cfg->http;
    h->enabled = 1;
    h->port = 8080;
    h->history_minutes = 180;
    const cJSON *o = want(L, NULL, root, "", "http", T_OBJ, 0);
    const char *P = "http";
    char p[JP];
    if (o) {
        check_keys(L, NULL, o, P, keys);
        get_bool(L, o, P, "enabled", 1, &h->enabled);
        const char *ls = get_str(L, NULL, o, P, "listen", F_NONEMPTY);
        if (ls) {
            unsigned char buf[16];
            if (strcmp(ls, "localhost") != 0 && inet_pton(AF_INET, ls, buf) != 1 &&
                inet_pton(AF_INET6, ls, buf) != 1)
                err(L, NULL, jp_key(p, P, "listen"),
                    "must be an IPv4 or IPv6 address or \"localhost\", got '%.64s'", ls);
            else
                h->listen = dup_s(L, ls);
        }
        get_int(L, o, P, "port", 1, 65535, 8080, &h->port);
        take_secret(L, o, P, "token", &h->token);
        if (h->token && strlen(h->token) < 16) {
            err(L, NULL, jp_key(p, P, "token"), "must be at least 16 characters");
        }
        get_int(L, o, P, "history_minutes", 1, 7 * 24 * 60, 180, &h->history_minutes);
    }
    int listen_given = h->listen != NULL;
    if (!h->listen)
        h->listen = dup_s(L, "127.0.0.1");
    if (h->enabled && listen_given && !is_loopback(h->listen) && !h->token &&
        !(o && cJSON_GetObjectItemCaseSensitive(o, "token_file")))
        err(L, NULL, jp_key(p, P, "token"),
            "missing: listen '%s' is not loopback, so a token (or token_file) is required",
            h->listen);
}

static void load_root(cfg_ld *L, cJSON *root)
{
    static const char *const keys[] = {"gateway", "paths", "buses", "mqtt_sources", "devices",
                                       "outputs", "http", NULL};
    static const char *const out_keys[] = {"mqtt", "influxdb", NULL};
    gw_config *c = L->cfg;
    if (!cJSON_IsObject(root)) {
        err(L, NULL, "", "the document must be a JSON object, got %s", jtype(root));
        return;
    }
    check_keys(L, NULL, root, "", keys);
    load_gateway(L, root);
    if (!L->oom)
        load_paths(L, root);
    if (!L->oom)
        load_buses(L, root);
    if (!L->oom)
        load_sources(L, root);
    if (!L->oom)
        load_devices(L, root);
    /* Profiles are needed as soon as a Modbus device exists; say once why none load. */
    int need_profiles = 0;
    for (size_t i = 0; i < c->n_devices; i++)
        need_profiles |= c->devices[i].profile != NULL;
    if (need_profiles && !c->profiles_dir && !L->oom) {
        char dirs[512];
        dir_list(dirs, sizeof dirs, L->prof_dirs, L->n_prof_dirs);
        err(L, NULL, "paths.profiles", "no such directory: %s", dirs);
    }
    const cJSON *outs = want(L, NULL, root, "", "outputs", T_OBJ, 0);
    if (outs)
        check_keys(L, NULL, outs, "outputs", out_keys);
    if (!L->oom)
        load_upstream(L, outs);
    if (!L->oom)
        load_influx(L, outs);
    if (!L->oom)
        load_http(L, root);
}

/* ---- public ------------------------------------------------------------------------ */

static void free_conn(gw_mqtt_conn *c)
{
    gw_free(c->url);
    gw_free(c->client_id);
    gw_free(c->username);
    gw_free(c->password);
    gw_free(c->ca_file);
    gw_free(c->cert_file);
    gw_free(c->key_file);
}

static void free_docs(gw_cfg_doc *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        gw_free(d[i].name);
        gw_free(d[i].path);
        cJSON_Delete(d[i].json);
    }
    gw_free(d);
}

void gw_config_free(gw_config *cfg)
{
    if (!cfg)
        return;
    gw_free(cfg->file);
    gw_free(cfg->base_dir);
    gw_free(cfg->profiles_dir);
    gw_free(cfg->rules_dir);
    gw_free(cfg->plugins_dir);
    gw_gateway_cfg *g = &cfg->gateway;
    gw_free(g->id);
    gw_free(g->name);
    gw_free(g->admin_code);
    gw_free(g->data_dir);
    for (size_t i = 0; i < cfg->n_buses; i++) {
        gw_free(cfg->buses[i].id);
        gw_free(cfg->buses[i].host);
        gw_free(cfg->buses[i].device);
    }
    gw_free(cfg->buses);
    for (size_t i = 0; i < cfg->n_mqtt_sources; i++) {
        gw_mqtt_source *s = &cfg->mqtt_sources[i];
        gw_free(s->id);
        free_conn(&s->conn);
        for (size_t k = 0; k < s->n_subs; k++) {
            gw_free(s->subs[k].topic);
            gw_free(s->subs[k].decoder);
            gw_free(s->subs[k].device_key);
        }
        gw_free(s->subs);
    }
    gw_free(cfg->mqtt_sources);
    for (size_t i = 0; i < cfg->n_devices; i++) {
        gw_device *d = &cfg->devices[i];
        gw_free(d->id);
        gw_free(d->kind);
        gw_free(d->name);
        gw_free(d->bus);
        gw_free(d->profile);
        gw_free(d->mqtt_source);
        gw_free(d->key);
        gw_free(d->decoder);
        cJSON_Delete(d->decoder_options);
        gw_component *c = &d->component;
        gw_free(c->code);
        gw_free(c->name);
        gw_free(c->grid);
        gw_free(c->owner);
        gw_free(c->manager);
        gw_free(c->maintainer);
        gw_free(c->location.address);
        for (size_t k = 0; k < d->n_rule_sets; k++)
            gw_free(d->rule_sets[k]);
        gw_free(d->rule_sets);
        cJSON_Delete(d->overrides);
        cJSON_Delete(d->params);
        cJSON_Delete(d->tags);
    }
    gw_free(cfg->devices);
    free_docs(cfg->profiles, cfg->n_profiles);
    free_docs(cfg->rulesets, cfg->n_rulesets);
    gw_influx_cfg *f = &cfg->influx;
    gw_free(f->url);
    gw_free(f->database);
    gw_free(f->retention_policy);
    gw_free(f->username);
    gw_free(f->password);
    gw_free(f->org);
    gw_free(f->bucket);
    gw_free(f->token);
    gw_free(f->precision);
    gw_free(f->ca_file);
    free_conn(&cfg->upstream.conn);
    gw_free(cfg->upstream.topic_prefix);
    cJSON_Delete(cfg->upstream.problem_types);
    gw_free(cfg->http.listen);
    gw_free(cfg->http.token);
    gw_free(cfg);
}

/* Shared by both entry points: root is consumed; errs->n was first before parsing. */
static int load_tree(const char *file, cJSON *root, int oom, size_t first, gw_cfgerr *errs,
                     gw_config **out)
{
    cfg_ld L = {.e = errs, .file = file, .oom = oom};
    int rc = 0;
    *out = NULL;
    L.cfg = gw_calloc(1, sizeof *L.cfg);
    if (!L.cfg) {
        rc = GW_ENOMEM;
        goto fail_cfg;
    }
    L.cfg->file = dup_s(&L, file);
    const char *slash = strrchr(file, '/');
    L.cfg->base_dir = slash ? (slash == file ? dup_s(&L, "/") : gw_strndup(file, (size_t)(slash - file)))
                            : dup_s(&L, ".");
    if (!L.cfg->base_dir)
        L.oom = 1;
    if (root && !L.oom)
        load_root(&L, root);
    if (L.nerr > CFG_MAX_ERRORS)
        gw_cfgerr_add(errs, file, "", "too many errors; %zu more not shown",
                      L.nerr - CFG_MAX_ERRORS);
    /* Out of memory wins: a failed allocation may have made a valid config look
     * wrong (a name that could not be copied is then "missing"). */
    if (L.oom)
        rc = GW_ENOMEM;
    else if (errs->n > first || L.nerr || !root)
        rc = GW_ECONFIG;
    for (size_t i = 0; i < L.n_prof_dirs; i++)
        gw_free(L.prof_dirs[i]);
    gw_free(L.prof_dirs);
    for (size_t i = 0; i < L.n_rule_dirs; i++)
        gw_free(L.rule_dirs[i]);
    gw_free(L.rule_dirs);
    if (rc)
        goto fail_load;
    cJSON_Delete(root);
    *out = L.cfg;
    return 0;

fail_load:
    gw_config_free(L.cfg);
fail_cfg:
    cJSON_Delete(root);
    return rc;
}

int gw_config_load(const char *file, gw_cfgerr *errs, gw_config **out)
{
    int oom = 0;
    size_t first = errs->n;
    cJSON *root = read_json(file, errs, &oom);
    return load_tree(file, root, oom, first, errs, out);
}

int gw_config_load_mem(const char *name, const char *data, size_t len, gw_cfgerr *errs,
                       gw_config **out)
{
    *out = NULL;
    if (len > CFG_MAX_FILE) {
        gw_cfgerr_add(errs, name, "", "larger than 16 MiB");
        return GW_ECONFIG;
    }
    char *buf = gw_malloc(len + 1);
    if (!buf)
        return GW_ENOMEM;
    memcpy(buf, data, len);
    buf[len] = '\0';
    size_t before = errs->n;
    cJSON *root = parse_json(name, buf, len, errs);
    gw_free(buf);
    return load_tree(name, root, !root && errs->n == before, before, errs, out);
}

const gw_device *gw_config_device(const gw_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->n_devices; i++)
        if (cfg->devices[i].id && strcmp(cfg->devices[i].id, id) == 0)
            return &cfg->devices[i];
    return NULL;
}

const gw_bus *gw_config_bus(const gw_config *cfg, const char *id)
{
    for (size_t i = 0; cfg && id && i < cfg->n_buses; i++)
        if (cfg->buses[i].id && strcmp(cfg->buses[i].id, id) == 0)
            return &cfg->buses[i];
    return NULL;
}

const gw_cfg_doc *gw_config_profile(const gw_config *cfg, const char *name)
{
    return cfg && name ? doc_find(cfg->profiles, cfg->n_profiles, name) : NULL;
}

const gw_cfg_doc *gw_config_ruleset(const gw_config *cfg, const char *name)
{
    return cfg && name ? doc_find(cfg->rulesets, cfg->n_rulesets, name) : NULL;
}
