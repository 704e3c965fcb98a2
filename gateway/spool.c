#include "spool.h"

#include "alloc.h"
#include "error.h"
#include "log.h"
#include "outbox.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

static const char spool_schema[] =
    "CREATE TABLE IF NOT EXISTS batches(id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " lines INTEGER NOT NULL, body BLOB NOT NULL);"
    "SELECT id, lines, body FROM batches LIMIT 0;"
    "PRAGMA user_version = 1;";

enum { ST_INSERT, ST_OLDEST, ST_DELETE, ST_PEEK, ST_REPLACE, ST__COUNT };

static const char *const stmt_sql[ST__COUNT] = {
    [ST_INSERT] = "INSERT INTO batches(lines, body) VALUES(?1, ?2)",
    [ST_OLDEST] = "DELETE FROM batches WHERE id = (SELECT min(id) FROM batches)"
                  " RETURNING lines, length(body)",
    [ST_DELETE] = "DELETE FROM batches WHERE id = ?1 RETURNING lines, length(body)",
    [ST_PEEK] = "SELECT id, lines, body FROM batches ORDER BY id LIMIT 1",
    [ST_REPLACE] = "UPDATE batches SET lines = ?2, body = ?3 WHERE id = ?1",
};

struct gw_spool {
    pthread_mutex_t lock;
    sqlite3 *db;
    sqlite3_stmt *st[ST__COUNT];
    gw_spool_stats stats;
    gw_complaint drop_complaint, io_complaint;
};

int gw_spool_open(const char *data_dir, int64_t max_bytes, gw_spool **out)
{
    *out = NULL;
    if (!data_dir || max_bytes <= 0)
        return GW_EINVAL;
    gw_spool *sp = gw_calloc(1, sizeof *sp);
    if (!sp)
        return GW_ENOMEM;
    int rc = GW_ENOMEM;
    size_t n = strlen(data_dir) + sizeof "/spool.db";
    char *path = gw_malloc(n);
    if (!path)
        goto fail_path;
    snprintf(path, n, "%s/spool.db", data_dir);
    rc = gw__outbox_open_db(path, spool_schema, 1, 0, &sp->db, &sp->stats.quarantined);
    if (rc)
        goto fail_db;
    for (int i = 0; i < ST__COUNT; i++)
        if (sqlite3_prepare_v3(sp->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &sp->st[i],
                               NULL) != SQLITE_OK) {
            rc = GW_EIO;
            goto fail_stmt;
        }
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(sp->db, "SELECT count(*), coalesce(sum(lines), 0),"
                           " coalesce(sum(length(body)), 0) FROM batches", -1, &q, NULL) !=
        SQLITE_OK) {
        rc = GW_EIO;
        goto fail_stmt;
    }
    if (sqlite3_step(q) == SQLITE_ROW) {
        sp->stats.batches = (uint64_t)sqlite3_column_int64(q, 0);
        sp->stats.lines = (uint64_t)sqlite3_column_int64(q, 1);
        sp->stats.bytes = (uint64_t)sqlite3_column_int64(q, 2);
    }
    sqlite3_finalize(q);
    sp->stats.max_bytes = (uint64_t)max_bytes;
    pthread_mutex_init(&sp->lock, NULL);
    if (sp->stats.batches)
        gw_notice("spool", "%s: %llu lines in %llu batches to replay", path,
                  (unsigned long long)sp->stats.lines, (unsigned long long)sp->stats.batches);
    gw_free(path);
    *out = sp;
    return 0;

fail_stmt:
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(sp->st[i]);
    sqlite3_close(sp->db);
fail_db:
    gw_free(path);
fail_path:
    gw_free(sp);
    return rc;
}

void gw_spool_close(gw_spool *sp)
{
    if (!sp)
        return;
    for (int i = 0; i < ST__COUNT; i++)
        sqlite3_finalize(sp->st[i]);
    sqlite3_close(sp->db);
    pthread_mutex_destroy(&sp->lock);
    gw_free(sp);
}

/* Run a DELETE … RETURNING lines, length(body); *lines / *bytes stay 0 if no row. */
static int delete_returning(sqlite3_stmt *st, uint64_t *lines, uint64_t *bytes)
{
    *lines = *bytes = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *lines = (uint64_t)sqlite3_column_int64(st, 0);
        *bytes = (uint64_t)sqlite3_column_int64(st, 1);
        rc = sqlite3_step(st);
    }
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : rc;
}

int gw_spool_append(gw_spool *sp, const char *data, size_t len, uint32_t lines)
{
    if (!sp || (!data && len) || len > INT32_MAX)
        return GW_EINVAL;
    pthread_mutex_lock(&sp->lock);
    gw_spool_stats *s = &sp->stats;
    int rc = 0;
    if (len > s->max_bytes) {
        s->dropped_batches++;
        s->dropped_lines += lines;
        gw_complain(&sp->drop_complaint, 0, 10000, 600000, GW_LOG_WARN, "spool",
                    "batch of %zu bytes exceeds the spool bound: %u lines dropped", len, lines);
        pthread_mutex_unlock(&sp->lock);
        return GW_EFULL;
    }
    if ((rc = sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL)) != SQLITE_OK)
        goto fail;
    uint64_t ev_lines = 0, ev_bytes = 0, ev_batches = 0, bytes = s->bytes;
    while (bytes + len > s->max_bytes) {
        uint64_t l, b;
        if ((rc = delete_returning(sp->st[ST_OLDEST], &l, &b)))
            goto rollback;
        if (l == 0 && b == 0)
            break; /* empty: cannot happen unless stats drifted */
        ev_lines += l;
        ev_bytes += b;
        ev_batches++;
        bytes -= b < bytes ? b : bytes;
    }
    sqlite3_stmt *st = sp->st[ST_INSERT];
    sqlite3_bind_int64(st, 1, lines);
    sqlite3_bind_blob(st, 2, data ? data : "", (int)len, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_reset(st);
    if (rc != SQLITE_DONE)
        goto rollback;
    if ((rc = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL)) != SQLITE_OK)
        goto rollback;
    s->bytes = bytes + len;
    s->batches = s->batches - ev_batches + 1;
    s->lines = s->lines - ev_lines + lines;
    s->appended_batches++;
    s->appended_lines += lines;
    if (ev_batches) {
        s->dropped_batches += ev_batches;
        s->dropped_lines += ev_lines;
        gw_complain(&sp->drop_complaint, 0, 10000, 600000, GW_LOG_WARN, "spool",
                    "spool full (%llu bytes): oldest %llu lines dropped, %llu in total",
                    (unsigned long long)s->max_bytes, (unsigned long long)ev_lines,
                    (unsigned long long)s->dropped_lines);
    }
    gw_complain_clear(&sp->io_complaint, "spool", "spool writes succeed again");
    pthread_mutex_unlock(&sp->lock);
    return 0;

rollback:
    sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
fail:
    s->errors++;
    gw_complain(&sp->io_complaint, 0, 1000, 60000, GW_LOG_ERROR, "spool", "append failed: %s",
                sqlite3_errstr(rc));
    pthread_mutex_unlock(&sp->lock);
    return (rc & 0xff) == SQLITE_NOMEM ? GW_ENOMEM : GW_EIO;
}

int gw_spool_peek(gw_spool *sp, gw_spool_batch *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&sp->lock);
    sqlite3_stmt *st = sp->st[ST_PEEK];
    int rc = sqlite3_step(st);
    int ret = 0;
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(st, 0);
        out->lines = (uint32_t)sqlite3_column_int64(st, 1);
        out->len = (size_t)sqlite3_column_bytes(st, 2);
        out->data = gw_malloc(out->len + 1);
        if (out->data) {
            if (out->len)
                memcpy(out->data, sqlite3_column_blob(st, 2), out->len);
            out->data[out->len] = '\0';
        } else
            ret = GW_ENOMEM;
    } else if (rc == SQLITE_DONE)
        ret = GW_ENOTFOUND;
    else {
        sp->stats.errors++;
        ret = GW_EIO;
    }
    sqlite3_reset(st);
    pthread_mutex_unlock(&sp->lock);
    if (ret)
        memset(out, 0, sizeof *out);
    return ret;
}

void gw_spool_batch_release(gw_spool_batch *b)
{
    if (!b)
        return;
    gw_free(b->data);
    memset(b, 0, sizeof *b);
}

int gw_spool_delete(gw_spool *sp, int64_t id)
{
    pthread_mutex_lock(&sp->lock);
    sqlite3_stmt *st = sp->st[ST_DELETE];
    sqlite3_bind_int64(st, 1, id);
    uint64_t l, b;
    int rc = delete_returning(st, &l, &b);
    if (rc == 0 && (l || b)) {
        sp->stats.batches--;
        sp->stats.lines -= l;
        sp->stats.bytes -= b;
        sp->stats.deleted_lines += l;
    } else if (rc)
        sp->stats.errors++;
    pthread_mutex_unlock(&sp->lock);
    return rc ? GW_EIO : 0;
}

int gw_spool_replace(gw_spool *sp, int64_t id, const char *data, size_t len, uint32_t lines)
{
    if (!sp || (!data && len) || len > INT32_MAX)
        return GW_EINVAL;
    pthread_mutex_lock(&sp->lock);
    int rc = sqlite3_exec(sp->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
    uint64_t old_l = 0, old_b = 0;
    int found = 0;
    if (rc == SQLITE_OK) {
        sqlite3_stmt *q;
        if ((rc = sqlite3_prepare_v2(sp->db, "SELECT lines, length(body) FROM batches WHERE id = ?1",
                                     -1, &q, NULL)) == SQLITE_OK) {
            sqlite3_bind_int64(q, 1, id);
            if (sqlite3_step(q) == SQLITE_ROW) {
                found = 1;
                old_l = (uint64_t)sqlite3_column_int64(q, 0);
                old_b = (uint64_t)sqlite3_column_int64(q, 1);
            }
            sqlite3_finalize(q);
        }
    }
    if (rc == SQLITE_OK && found) {
        sqlite3_stmt *st = sp->st[ST_REPLACE];
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, lines);
        sqlite3_bind_blob(st, 3, data ? data : "", (int)len, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(sp->db);
        sqlite3_reset(st);
    }
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(sp->db, "COMMIT", NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        sqlite3_exec(sp->db, "ROLLBACK", NULL, NULL, NULL);
        sp->stats.errors++;
    } else if (found) {
        sp->stats.lines = sp->stats.lines - old_l + lines;
        sp->stats.bytes = sp->stats.bytes - old_b + len;
        sp->stats.deleted_lines += old_l > lines ? old_l - lines : 0;
    }
    pthread_mutex_unlock(&sp->lock);
    return rc == SQLITE_OK ? 0 : GW_EIO;
}

size_t gw_spool_count(gw_spool *sp)
{
    pthread_mutex_lock(&sp->lock);
    size_t n = (size_t)sp->stats.batches;
    pthread_mutex_unlock(&sp->lock);
    return n;
}

void gw_spool_stats_get(gw_spool *sp, gw_spool_stats *out)
{
    pthread_mutex_lock(&sp->lock);
    *out = sp->stats;
    pthread_mutex_unlock(&sp->lock);
}
