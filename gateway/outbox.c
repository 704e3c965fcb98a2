#include "outbox.h"

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define OUTBOX_VERSION 1

static const char outbox_schema[] =
    "CREATE TABLE IF NOT EXISTS events(seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL,"
    " device TEXT NOT NULL, payload BLOB NOT NULL, created_us INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS alarms(alarm_id TEXT PRIMARY KEY, state BLOB NOT NULL,"
    " seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS alarm_pubs(alarm_id TEXT PRIMARY KEY, state BLOB,"
    " seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    "INSERT OR IGNORE INTO meta VALUES('last_seq', 0), ('acked_seq', 0);"
    /* Selecting every column proves a pre-existing store has our schema. */
    "SELECT seq, event_id, device, payload, created_us FROM events LIMIT 0;"
    "SELECT alarm_id, state, seq FROM alarms LIMIT 0;"
    "SELECT alarm_id, state, seq FROM alarm_pubs LIMIT 0;"
    "PRAGMA user_version = 1;";

enum {
    ST_INSERT, ST_UPSERT_ALARM, ST_DELETE_ALARM, ST_UPSERT_PUB, ST_SET_META, ST_FETCH,
    ST_ACK, ST_ACK_PUB, ST_FETCH_PUBS, ST_ALARMS, ST__COUNT
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_INSERT] = "INSERT INTO events(seq, event_id, device, payload, created_us)"
                  " VALUES(?1, ?2, ?3, ?4, ?5)",
    [ST_UPSERT_ALARM] = "INSERT INTO alarms(alarm_id, state, seq) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT(alarm_id) DO UPDATE SET state = ?2, seq = ?3",
    [ST_DELETE_ALARM] = "DELETE FROM alarms WHERE alarm_id = ?1",
    [ST_UPSERT_PUB] = "INSERT INTO alarm_pubs(alarm_id, state, seq) VALUES(?1, ?2, ?3)"
                      " ON CONFLICT(alarm_id) DO UPDATE SET state = ?2, seq = ?3",
    [ST_SET_META] = "UPDATE meta SET value = max(value, ?2) WHERE key = ?1",
    [ST_FETCH] = "SELECT seq, event_id, device, payload, created_us FROM events"
                 " WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [ST_ACK] = "DELETE FROM events WHERE seq = ?1 RETURNING length(payload)",
    [ST_ACK_PUB] = "DELETE FROM alarm_pubs WHERE alarm_id = ?1 AND seq = ?2",
    [ST_FETCH_PUBS] = "SELECT alarm_id, state, seq FROM alarm_pubs ORDER BY seq LIMIT ?1",
    [ST_ALARMS] = "SELECT alarm_id, state FROM alarms ORDER BY alarm_id",
};

struct gw_outbox {
    pthread_mutex_t lock;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    gw_outbox_stats stats;
    gw_complaint io_complaint;
};

/* ---- shared store opening (outbox and spool) ----------------------------------------- */

static void fsync_dir_of(const char *path)
{
    char *copy = gw_strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    gw_free(copy);
}

/* Rename path (and its -wal / -shm) aside to path.corrupt-<UTC time>[-N]. */
static int quarantine(const char *path)
{
    char stamp[32], dst[4096], src[4096];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    struct stat sb;
    int n = 0;
    do {
        if (n == 0)
            snprintf(dst, sizeof dst, "%s.corrupt-%s", path, stamp);
        else
            snprintf(dst, sizeof dst, "%s.corrupt-%s-%d", path, stamp, n);
        n++;
    } while (stat(dst, &sb) == 0 && n < 1000);
    if (rename(path, dst) != 0 && errno != ENOENT) {
        gw_error("store", "cannot quarantine %s: %s", path, strerror(errno));
        return GW_EIO;
    }
    static const char *const sfx[] = {"-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 3; i++) {
        char d2[4200];
        snprintf(src, sizeof src, "%s%s", path, sfx[i]);
        snprintf(d2, sizeof d2, "%s%s", dst, sfx[i]);
        if (rename(src, d2) != 0 && errno != ENOENT)
            unlink(src);
    }
    fsync_dir_of(path);
    gw_error("store", "%s failed its integrity check: quarantined as %s, starting empty",
             path, dst);
    return 0;
}

/* One attempt; returns 0, GW_ECORRUPT (quarantine and retry) or GW_EIO. */
static int try_open(const char *path, const char *schema, int version, int sync_full,
                    sqlite3 **out)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        gw_error("store", "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : "no memory");
        sqlite3_close(db);
        return rc == SQLITE_NOMEM ? GW_ENOMEM : (rc == SQLITE_CANTOPEN ? GW_EIO : GW_ECORRUPT);
    }
    sqlite3_busy_timeout(db, 5000);
    sqlite3_extended_result_codes(db, 1);
    int err = GW_ECORRUPT;
    sqlite3_stmt *st = NULL;
    const char *why = "";

    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW ||
        strcmp((const char *)sqlite3_column_text(st, 0), "wal") != 0) {
        why = sqlite3_errmsg(db);
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        why = sqlite3_errmsg(db);
        goto fail;
    }
    const char *qc = (const char *)sqlite3_column_text(st, 0);
    if (!qc || strcmp(qc, "ok") != 0) {
        gw_error("store", "%s: quick_check: %s", path, qc ? qc : "?");
        why = "quick_check failed";
        goto fail;
    }
    sqlite3_finalize(st);
    st = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        why = sqlite3_errmsg(db);
        goto fail;
    }
    int have = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (have != 0 && have != version) {
        why = "unknown schema version";
        goto fail;
    }
    char *msg = NULL;
    if (sqlite3_exec(db, sync_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                     NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(db, schema, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        int code = sqlite3_errcode(db) & 0xff;
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        gw_error("store", "%s: schema: %s", path, msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        if (code == SQLITE_FULL || code == SQLITE_IOERR || code == SQLITE_READONLY ||
            code == SQLITE_CANTOPEN || code == SQLITE_NOMEM) {
            err = code == SQLITE_NOMEM ? GW_ENOMEM : GW_EIO;
            goto close;
        }
        why = "foreign schema";
        goto fail;
    }
    *out = db;
    return 0;

fail:
    gw_error("store", "%s: %s", path, why);
close:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return err;
}

int gw__outbox_open_db(const char *path, const char *schema, int version, int sync_full,
                       sqlite3 **out, uint64_t *quarantined)
{
    struct stat sb;
    int existed = stat(path, &sb) == 0;
    int rc = try_open(path, schema, version, sync_full, out);
    if (rc != GW_ECORRUPT)
        goto done;
    if (quarantine(path) != 0)
        return GW_EIO;
    if (quarantined)
        (*quarantined)++;
    rc = try_open(path, schema, version, sync_full, out);
    if (rc == GW_ECORRUPT)
        rc = GW_EIO; /* a fresh file failing is a disk problem: no loop */
done:
    if (rc == 0 && !existed)
        fsync_dir_of(path);
    return rc;
}

/* ---- the outbox ----------------------------------------------------------------------- */

static char *join_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = gw_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int query_u64(sqlite3 *db, const char *sql, uint64_t *a, uint64_t *b)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return GW_EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *a = (uint64_t)sqlite3_column_int64(st, 0);
        if (b)
            *b = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : GW_EIO;
}

int gw_outbox_open(const char *data_dir, gw_outbox **out)
{
    *out = NULL;
    gw_outbox *ob = gw_calloc(1, sizeof *ob);
    if (!ob)
        return GW_ENOMEM;
    int rc = GW_ENOMEM;
    char *path = join_path(data_dir, "outbox.db");
    if (!path)
        goto fail_path;
    rc = gw__outbox_open_db(path, outbox_schema, OUTBOX_VERSION, 1, &ob->db,
                            &ob->stats.quarantined);
    if (rc)
        goto fail_db;
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(ob->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &ob->st[i], NULL) != SQLITE_OK) {
            gw_error("outbox", "prepare: %s", sqlite3_errmsg(ob->db));
            rc = GW_EIO;
            goto fail_stmt;
        }
    gw_outbox_stats *s = &ob->stats;
    if (query_u64(ob->db, "SELECT count(*), coalesce(sum(length(payload)), 0) FROM events",
                  &s->depth, &s->bytes) ||
        query_u64(ob->db, "SELECT value FROM meta WHERE key = 'last_seq'", &s->last_seq, NULL) ||
        query_u64(ob->db, "SELECT value FROM meta WHERE key = 'acked_seq'", &s->acked_seq,
                  NULL) ||
        query_u64(ob->db, "SELECT count(*) FROM alarms", &s->alarms, NULL) ||
        query_u64(ob->db, "SELECT count(*) FROM alarm_pubs", &s->alarm_pubs, NULL)) {
        rc = GW_EIO;
        goto fail_stmt;
    }
    pthread_mutex_init(&ob->lock, NULL);
    gw_info("outbox", "%s: %llu events pending, %llu active alarms, last seq %llu", path,
            (unsigned long long)s->depth, (unsigned long long)s->alarms,
            (unsigned long long)s->last_seq);
    gw_free(path);
    *out = ob;
    return 0;

fail_stmt:
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(ob->st[i]);
    sqlite3_close(ob->db);
fail_db:
    gw_free(path);
fail_path:
    gw_free(ob);
    return rc;
}

void gw_outbox_close(gw_outbox *ob)
{
    if (!ob)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(ob->st[i]);
    sqlite3_close(ob->db);
    pthread_mutex_destroy(&ob->lock);
    gw_free(ob);
}

static int step_done(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : rc;
}

static int map_sqlite(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_NOMEM: return GW_ENOMEM;
    case SQLITE_CONSTRAINT: return GW_EINVAL;
    case SQLITE_FULL: return GW_EFULL;
    case SQLITE_CORRUPT: case SQLITE_NOTADB: return GW_ECORRUPT;
    default: return GW_EIO;
    }
}

static int set_meta(gw_outbox *ob, const char *key, uint64_t v)
{
    sqlite3_stmt *st = ob->st[ST_SET_META];
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)v);
    return step_done(st);
}

static int commit_locked(gw_outbox *ob, const gw_outbox_event *ev)
{
    int rc;
    if ((rc = sqlite3_exec(ob->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
        return rc;
    sqlite3_stmt *st = ob->st[ST_INSERT];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)ev->seq);
    sqlite3_bind_text(st, 2, ev->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ev->device_id, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 4, ev->payload, (int)ev->payload_len, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, ev->created_us);
    if ((rc = step_done(st)))
        goto rollback;
    if (ev->alarm_id) {
        if (ev->alarm_state) {
            st = ob->st[ST_UPSERT_ALARM];
            sqlite3_bind_text(st, 1, ev->alarm_id, -1, SQLITE_STATIC);
            sqlite3_bind_blob(st, 2, ev->alarm_state, (int)ev->alarm_state_len, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)ev->seq);
        } else {
            st = ob->st[ST_DELETE_ALARM];
            sqlite3_bind_text(st, 1, ev->alarm_id, -1, SQLITE_STATIC);
        }
        if ((rc = step_done(st)))
            goto rollback;
        st = ob->st[ST_UPSERT_PUB];
        sqlite3_bind_text(st, 1, ev->alarm_id, -1, SQLITE_STATIC);
        const char *pub = ev->retained_given ? ev->retained : ev->alarm_state;
        size_t pub_len = ev->retained_given ? ev->retained_len : ev->alarm_state_len;
        if (pub)
            sqlite3_bind_blob(st, 2, pub, (int)pub_len, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)ev->seq);
        if ((rc = step_done(st)))
            goto rollback;
    }
    if ((rc = set_meta(ob, "last_seq", ev->seq)))
        goto rollback;
    if ((rc = sqlite3_exec(ob->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto rollback;
    return 0;
rollback:
    sqlite3_exec(ob->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static int count_rows(sqlite3 *db, const char *sql)
{
    uint64_t n = 0;
    query_u64(db, sql, &n, NULL);
    return (int)n;
}

int gw_outbox_commit(gw_outbox *ob, const gw_outbox_event *ev)
{
    if (!ob || !ev || !ev->event_id || !ev->device_id || (!ev->payload && ev->payload_len) ||
        ev->payload_len > INT32_MAX || ev->alarm_state_len > INT32_MAX || ev->retained_len > INT32_MAX || ev->seq == 0 ||
        ev->seq > INT64_MAX)
        return GW_EINVAL;
    pthread_mutex_lock(&ob->lock);
    if (ev->seq <= ob->stats.last_seq) {
        pthread_mutex_unlock(&ob->lock);
        return GW_EINVAL;
    }
    int64_t t0 = gw_mono_us();
    int rc = commit_locked(ob, ev);
    uint64_t dt = (uint64_t)(gw_mono_us() - t0);
    gw_outbox_stats *s = &ob->stats;
    if (rc == 0) {
        s->commits++;
        s->commit_us_total += dt;
        if (dt > s->commit_us_max)
            s->commit_us_max = dt;
        s->depth++;
        s->bytes += ev->payload_len;
        s->last_seq = ev->seq;
        if (ev->alarm_id) {
            s->alarms = (uint64_t)count_rows(ob->db, "SELECT count(*) FROM alarms");
            s->alarm_pubs = (uint64_t)count_rows(ob->db, "SELECT count(*) FROM alarm_pubs");
        }
        gw_complain_clear(&ob->io_complaint, "outbox", "commits succeed again");
    } else {
        s->commit_errors++;
        gw_complain(&ob->io_complaint, 0, 1000, 60000, GW_LOG_ERROR, "outbox",
                    "commit of event seq %llu failed: %s", (unsigned long long)ev->seq,
                    sqlite3_errstr(rc));
        rc = map_sqlite(rc);
    }
    pthread_mutex_unlock(&ob->lock);
    return rc;
}

uint64_t gw_outbox_last_seq(gw_outbox *ob)
{
    pthread_mutex_lock(&ob->lock);
    uint64_t v = ob->stats.last_seq;
    pthread_mutex_unlock(&ob->lock);
    return v;
}

/* Rows copied out under the lock, handed to callbacks after it is released. */
typedef struct row {
    uint64_t seq;
    int64_t created_us;
    char *a, *b;      /* event_id / device, or alarm_id */
    char *blob;       /* payload / state (NUL-terminated copy), may be NULL */
    size_t blob_len;
} row;

static void free_rows(row *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        gw_free(r[i].a);
        gw_free(r[i].b);
        gw_free(r[i].blob);
    }
    gw_free(r);
}

static char *copy_blob(sqlite3_stmt *st, int col, size_t *len)
{
    const void *p = sqlite3_column_blob(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);
    *len = n;
    char *c = gw_malloc(n + 1);
    if (c) {
        if (n)
            memcpy(c, p, n);
        c[n] = '\0';
    }
    return c;
}

/* Step st collecting up to max rows; shape: 0 = event, 1 = alarm, 2 = alarm pub. */
static int collect(sqlite3_stmt *st, size_t max, int shape, row **out, size_t *n_out)
{
    size_t cap = max < 64 ? max : 64, n = 0;
    row *r = gw_calloc(cap ? cap : 1, sizeof *r);
    int rc = 0, s;
    if (!r) {
        sqlite3_reset(st);
        return GW_ENOMEM;
    }
    while (n < max && (s = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            row *nr = gw_realloc(r, cap * 2 * sizeof *r);
            if (!nr) {
                rc = GW_ENOMEM;
                break;
            }
            memset(nr + cap, 0, cap * sizeof *r);
            r = nr;
            cap *= 2;
        }
        row *w = &r[n++];
        if (shape == 0) {
            w->seq = (uint64_t)sqlite3_column_int64(st, 0);
            w->a = gw_strdup((const char *)sqlite3_column_text(st, 1));
            w->b = gw_strdup((const char *)sqlite3_column_text(st, 2));
            w->blob = copy_blob(st, 3, &w->blob_len);
            w->created_us = sqlite3_column_int64(st, 4);
            if (!w->a || !w->b || !w->blob)
                rc = GW_ENOMEM;
        } else {
            w->a = gw_strdup((const char *)sqlite3_column_text(st, 0));
            if (sqlite3_column_type(st, 1) != SQLITE_NULL) {
                w->blob = copy_blob(st, 1, &w->blob_len);
                if (!w->blob)
                    rc = GW_ENOMEM;
            }
            if (shape == 2)
                w->seq = (uint64_t)sqlite3_column_int64(st, 2);
            if (!w->a)
                rc = GW_ENOMEM;
        }
        if (rc)
            break;
    }
    if (rc == 0 && n < max && s != SQLITE_DONE)
        rc = map_sqlite(s);
    sqlite3_reset(st);
    if (rc) {
        free_rows(r, n);
        return rc;
    }
    *out = r;
    *n_out = n;
    return 0;
}

int gw_outbox_fetch(gw_outbox *ob, uint64_t after_seq, size_t max, gw_outbox_cb cb, void *ctx)
{
    if (!ob || !cb || after_seq > INT64_MAX)
        return GW_EINVAL;
    if (max == 0)
        return 0;
    row *r = NULL;
    size_t n = 0;
    pthread_mutex_lock(&ob->lock);
    sqlite3_stmt *st = ob->st[ST_FETCH];
    sqlite3_bind_int64(st, 1, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(st, 2, max > INT32_MAX ? INT32_MAX : (sqlite3_int64)max);
    int rc = collect(st, max, 0, &r, &n);
    pthread_mutex_unlock(&ob->lock);
    if (rc)
        return rc;
    size_t given = 0;
    for (; given < n; given++) {
        gw_outbox_event ev = {.seq = r[given].seq, .event_id = r[given].a,
                              .device_id = r[given].b, .payload = r[given].blob,
                              .payload_len = r[given].blob_len,
                              .created_us = r[given].created_us};
        if (cb(ctx, &ev)) {
            given++;
            break;
        }
    }
    free_rows(r, n);
    return (int)given;
}

int gw_outbox_ack(gw_outbox *ob, uint64_t seq)
{
    if (!ob || seq > INT64_MAX)
        return GW_EINVAL;
    pthread_mutex_lock(&ob->lock);
    /* An ack lost to a power cut only means one duplicate delivery: no fsync needed. */
    sqlite3_exec(ob->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    int rc = sqlite3_exec(ob->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    int64_t len = -1;
    if (rc == SQLITE_OK) {
        sqlite3_stmt *st = ob->st[ST_ACK];
        sqlite3_bind_int64(st, 1, (sqlite3_int64)seq);
        int s = sqlite3_step(st);
        if (s == SQLITE_ROW) {
            len = sqlite3_column_int64(st, 0);
            s = sqlite3_step(st);
        }
        sqlite3_reset(st);
        rc = s == SQLITE_DONE ? SQLITE_OK : s;
        if (rc == SQLITE_OK && len >= 0)
            rc = set_meta(ob, "acked_seq", seq);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(ob->db, "COMMIT", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            sqlite3_exec(ob->db, "ROLLBACK", NULL, NULL, NULL);
    }
    sqlite3_exec(ob->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (rc == SQLITE_OK && len >= 0) {
        ob->stats.depth--;
        ob->stats.bytes -= (uint64_t)len;
        ob->stats.acks++;
        if (seq > ob->stats.acked_seq)
            ob->stats.acked_seq = seq;
    }
    pthread_mutex_unlock(&ob->lock);
    if (rc != SQLITE_OK) {
        gw_warn("outbox", "ack of seq %llu failed: %s", (unsigned long long)seq,
                sqlite3_errstr(rc));
        return map_sqlite(rc);
    }
    return 0;
}

int gw_outbox_foreach_alarm(gw_outbox *ob, gw_outbox_alarm_cb cb, void *ctx)
{
    if (!ob || !cb)
        return GW_EINVAL;
    row *r = NULL;
    size_t n = 0;
    pthread_mutex_lock(&ob->lock);
    int rc = collect(ob->st[ST_ALARMS], SIZE_MAX, 1, &r, &n);
    pthread_mutex_unlock(&ob->lock);
    if (rc)
        return rc;
    for (size_t i = 0; i < n; i++)
        if (cb(ctx, r[i].a, r[i].blob, r[i].blob_len))
            break;
    free_rows(r, n);
    return 0;
}

int gw_outbox_fetch_alarm_pubs(gw_outbox *ob, size_t max, gw_outbox_pub_cb cb, void *ctx)
{
    if (!ob || !cb)
        return GW_EINVAL;
    if (max == 0)
        return 0;
    row *r = NULL;
    size_t n = 0;
    pthread_mutex_lock(&ob->lock);
    sqlite3_stmt *st = ob->st[ST_FETCH_PUBS];
    sqlite3_bind_int64(st, 1, max > INT32_MAX ? INT32_MAX : (sqlite3_int64)max);
    int rc = collect(st, max, 2, &r, &n);
    pthread_mutex_unlock(&ob->lock);
    if (rc)
        return rc;
    size_t given = 0;
    for (; given < n; given++) {
        gw_outbox_alarm_pub p = {.alarm_id = r[given].a, .state = r[given].blob,
                                 .state_len = r[given].blob_len, .seq = r[given].seq};
        if (cb(ctx, &p)) {
            given++;
            break;
        }
    }
    free_rows(r, n);
    return (int)given;
}

int gw_outbox_ack_alarm_pub(gw_outbox *ob, const char *alarm_id, uint64_t seq)
{
    if (!ob || !alarm_id || seq > INT64_MAX)
        return GW_EINVAL;
    pthread_mutex_lock(&ob->lock);
    sqlite3_exec(ob->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    sqlite3_stmt *st = ob->st[ST_ACK_PUB];
    sqlite3_bind_text(st, 1, alarm_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
    int rc = step_done(st);
    int changed = sqlite3_changes(ob->db);
    sqlite3_exec(ob->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    if (rc == 0 && changed > 0 && ob->stats.alarm_pubs > 0)
        ob->stats.alarm_pubs--;
    pthread_mutex_unlock(&ob->lock);
    return rc ? map_sqlite(rc) : 0;
}

size_t gw_outbox_pending_count(gw_outbox *ob)
{
    pthread_mutex_lock(&ob->lock);
    size_t n = (size_t)ob->stats.depth;
    pthread_mutex_unlock(&ob->lock);
    return n;
}

void gw_outbox_stats_get(gw_outbox *ob, gw_outbox_stats *out)
{
    pthread_mutex_lock(&ob->lock);
    *out = ob->stats;
    pthread_mutex_unlock(&ob->lock);
}
