/*
 * SQLite store: migrations, transactions, helpers.
 */
#include "agent/store.h"

#include <stdio.h>
#include <string.h>

#include "common/sx.h"

/*
 * Migrations: migrations[i] brings the schema from version i to i + 1.
 * Never edit a released migration; append a new one.
 *
 * Ids: connections.ext_id is the public id; rows refer to each other by
 * integer keys. Statuses are small integers defined in agent_int.h.
 */
static const char *const migrations[] = {
    /* 1: connections, queues, messages, deliveries */
    "CREATE TABLE connections("
    "  conn_id INTEGER PRIMARY KEY,"
    "  ext_id TEXT NOT NULL UNIQUE,"
    "  status INTEGER NOT NULL,"
    "  initiator INTEGER NOT NULL,"
    "  agent_version INTEGER NOT NULL,"
    "  e2e_version INTEGER NOT NULL,"
    "  ratchet BLOB,"
    "  x3dh_keys BLOB,"
    "  snd_params BLOB,"
    "  conf_id TEXT,"
    "  conf_info BLOB,"
    "  conf_sender_key BLOB,"
    "  conf_reply BLOB,"
    "  own_info BLOB,"
    "  last_internal_id INTEGER NOT NULL DEFAULT 0,"
    "  last_snd_id INTEGER NOT NULL DEFAULT 0,"
    "  last_snd_hash BLOB,"
    "  last_rcv_id INTEGER NOT NULL DEFAULT 0,"
    "  last_ext_snd_id INTEGER NOT NULL DEFAULT 0,"
    "  last_rcv_hash BLOB,"
    "  created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE rcv_queues("
    "  rq_id INTEGER PRIMARY KEY,"
    "  conn_id INTEGER NOT NULL REFERENCES connections ON DELETE CASCADE,"
    "  server TEXT NOT NULL,"
    "  rcv_id BLOB NOT NULL UNIQUE,"
    "  snd_id BLOB NOT NULL,"
    "  queue BLOB NOT NULL,"
    "  e2e_priv BLOB NOT NULL,"
    "  e2e_pub BLOB NOT NULL,"
    "  e2e_secret BLOB,"
    "  mode INTEGER NOT NULL,"
    "  client_version INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  is_primary INTEGER NOT NULL DEFAULT 1"
    ") STRICT;"
    "CREATE INDEX rcv_queues_conn ON rcv_queues(conn_id);"
    "CREATE TABLE snd_queues("
    "  sq_id INTEGER PRIMARY KEY,"
    "  conn_id INTEGER NOT NULL REFERENCES connections ON DELETE CASCADE,"
    "  server TEXT NOT NULL,"
    "  snd_id BLOB NOT NULL,"
    "  snd_priv BLOB NOT NULL,"
    "  e2e_pub BLOB NOT NULL,"
    "  e2e_secret BLOB NOT NULL,"
    "  mode INTEGER NOT NULL,"
    "  client_version INTEGER NOT NULL,"
    "  status INTEGER NOT NULL,"
    "  is_primary INTEGER NOT NULL DEFAULT 1"
    ") STRICT;"
    "CREATE INDEX snd_queues_conn ON snd_queues(conn_id);"
    "CREATE TABLE snd_messages("
    "  conn_id INTEGER NOT NULL REFERENCES connections ON DELETE CASCADE,"
    "  internal_id INTEGER NOT NULL,"
    "  snd_id INTEGER NOT NULL,"
    "  msg_type INTEGER NOT NULL,"
    "  hash BLOB NOT NULL,"
    "  body BLOB,"
    "  created_at INTEGER NOT NULL,"
    "  rcpt_status INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(conn_id, internal_id)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX snd_messages_snd_id ON snd_messages(conn_id, snd_id);"
    "CREATE TABLE deliveries("
    "  sq_id INTEGER NOT NULL REFERENCES snd_queues ON DELETE CASCADE,"
    "  conn_id INTEGER NOT NULL,"
    "  internal_id INTEGER NOT NULL,"
    "  PRIMARY KEY(sq_id, internal_id)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE rcv_messages("
    "  conn_id INTEGER NOT NULL REFERENCES connections ON DELETE CASCADE,"
    "  internal_id INTEGER NOT NULL,"
    "  rcv_id INTEGER NOT NULL,"
    "  ext_snd_id INTEGER NOT NULL,"
    "  rq_id INTEGER NOT NULL,"
    "  srv_msg_id BLOB NOT NULL,"
    "  msg_type INTEGER NOT NULL,"
    "  body BLOB,"
    "  hash BLOB NOT NULL,"
    "  broker_ts INTEGER NOT NULL,"
    "  integrity INTEGER NOT NULL,"
    "  integ_a INTEGER NOT NULL DEFAULT 0,"
    "  integ_b INTEGER NOT NULL DEFAULT 0,"
    "  user_ack INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(conn_id, internal_id)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX rcv_messages_srv ON rcv_messages(conn_id, srv_msg_id);"
    "CREATE TABLE rcv_hashes("
    "  conn_id INTEGER NOT NULL REFERENCES connections ON DELETE CASCADE,"
    "  hash BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(conn_id, hash)"
    ") STRICT, WITHOUT ROWID;",
    /* 2: contact requests received on contact addresses */
    "CREATE TABLE invitations("
    "  inv_id TEXT PRIMARY KEY,"
    "  conn_id INTEGER NOT NULL REFERENCES connections ON DELETE CASCADE,"
    "  conn_req TEXT NOT NULL,"
    "  info BLOB NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX invitations_conn ON invitations(conn_id);",
};

int sx_store_fail(sx_store *s, int rc, const char *what)
{
    snprintf(s->err, sizeof s->err, "%s: %s (%d)", what,
             s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc), rc);
    return SIMPLEX_ERR_STORE;
}

int sx_store_exec(sx_store *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        snprintf(s->err, sizeof s->err, "%s (%d)", msg ? msg : "exec", rc);
        sqlite3_free(msg);
        return SIMPLEX_ERR_STORE;
    }
    return 0;
}

int sx_store_prepare(sx_store *s, sqlite3_stmt **st, const char *sql)
{
    size_t i;
    int rc, busy = 0;
    for (i = 0; i < s->n_cache; i++) {
        if (s->cache[i].sql != sql)
            continue;
        if (!s->cache[i].busy) {
            s->cache[i].busy = 1;
            *st = s->cache[i].st;
            return 0;
        }
        busy = 1; /* in use further up the stack: a fresh one */
    }
    rc = sqlite3_prepare_v3(s->db, sql, -1,
                            busy ? 0 : SQLITE_PREPARE_PERSISTENT, st, NULL);
    if (rc != SQLITE_OK) {
        *st = NULL;
        return sx_store_fail(s, rc, "prepare");
    }
    if (!busy && s->n_cache < SX_STORE_CACHE) {
        s->cache[s->n_cache].sql = sql;
        s->cache[s->n_cache].st = *st;
        s->cache[s->n_cache].busy = 1;
        s->n_cache++;
    }
    return 0;
}

void sx_store_done(sx_store *s, sqlite3_stmt *st)
{
    size_t i;
    if (!st)
        return;
    for (i = 0; i < s->n_cache; i++)
        if (s->cache[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            s->cache[i].busy = 0;
            return;
        }
    sqlite3_finalize(st);
}

static int user_version(sx_store *s, int *v)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(s, &st, "PRAGMA user_version");
    if (rc)
        return rc;
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = sx_store_fail(s, sqlite3_errcode(s->db), "user_version");
        sx_store_done(s, st);
        return rc;
    }
    *v = sqlite3_column_int(st, 0);
    sx_store_done(s, st);
    return 0;
}

int sx_store_open(sx_store *s, const char *path)
{
    int rc, v = 0;
    char sql[64];
    memset(s, 0, sizeof *s);
    rc = sqlite3_open_v2(path, &s->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                             SQLITE_OPEN_FULLMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        rc = sx_store_fail(s, rc, "open");
        sx_store_close(s);
        return rc;
    }
    sqlite3_busy_timeout(s->db, 1000);
    /* One agent owns its database: exclusive locking keeps other
     * processes out and spares lock system calls per transaction. */
    if ((rc = sx_store_exec(s, "PRAGMA locking_mode=EXCLUSIVE;")) != 0)
        goto fail;
    if ((rc = sx_store_exec(s, "PRAGMA journal_mode=WAL;"
                               "PRAGMA synchronous=FULL;"
                               "PRAGMA foreign_keys=ON;")) != 0)
        goto fail;
    s->full = 1;
    if ((rc = user_version(s, &v)) != 0)
        goto fail;
    if (v > (int)SX_ARRAY_LEN(migrations)) {
        snprintf(s->err, sizeof s->err,
                 "database schema version %d is newer than this library's "
                 "%d",
                 v, (int)SX_ARRAY_LEN(migrations));
        rc = SIMPLEX_ERR_UNSUPPORTED;
        goto fail;
    }
    for (; v < (int)SX_ARRAY_LEN(migrations); v++) {
        if ((rc = sx_store_begin(s)) != 0)
            goto fail;
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d", v + 1);
        if ((rc = sx_store_exec(s, migrations[v])) != 0 ||
            (rc = sx_store_exec(s, sql)) != 0) {
            sx_store_rollback(s);
            goto fail;
        }
        if ((rc = sx_store_commit(s)) != 0)
            goto fail;
    }
    return 0;
fail:
    {
        char keep[sizeof s->err];
        memcpy(keep, s->err, sizeof keep);
        sx_store_close(s);
        memcpy(s->err, keep, sizeof keep);
    }
    return rc;
}

void sx_store_close(sx_store *s)
{
    size_t i;
    for (i = 0; i < s->n_cache; i++)
        sqlite3_finalize(s->cache[i].st);
    s->n_cache = 0;
    if (s->db)
        sqlite3_close_v2(s->db);
    s->db = NULL;
    s->in_tx = 0;
}

/* Runs a statement without results through the statement cache: the
 * transaction and pragma statements run for every message, and parsing
 * them each time (sqlite3_exec) is wasted work. */
static int run_cached(sx_store *s, const char *sql, const char *what)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(s, &st, sql);
    if (rc)
        return rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        sx_store_done(s, st);
        return 0;
    }
    rc = sx_store_fail(s, rc, what);
    sx_store_done(s, st);
    return rc;
}

static const char sql_sync_full[] = "PRAGMA synchronous=FULL";
static const char sql_sync_normal[] = "PRAGMA synchronous=NORMAL";
static const char sql_begin[] = "BEGIN IMMEDIATE";
static const char sql_commit[] = "COMMIT";
static const char sql_rollback[] = "ROLLBACK";

int sx_store_set_sync(sx_store *s, int full)
{
    int rc = run_cached(s, full ? sql_sync_full : sql_sync_normal,
                        "synchronous");
    if (rc == 0)
        s->full = full != 0;
    return rc;
}

int sx_store_begin_lazy(sx_store *s)
{
    int rc;
    if (s->full) {
        if ((rc = run_cached(s, sql_sync_normal, "synchronous")) != 0)
            return rc;
        s->lazy = 1;
    }
    rc = sx_store_begin(s);
    if (rc && s->lazy) {
        s->lazy = 0;
        (void)run_cached(s, sql_sync_full, "synchronous");
    }
    return rc;
}

static void end_lazy(sx_store *s)
{
    if (s->lazy) {
        s->lazy = 0;
        (void)run_cached(s, sql_sync_full, "synchronous");
    }
}

int sx_store_begin(sx_store *s)
{
    int rc = run_cached(s, sql_begin, "begin");
    if (rc == 0)
        s->in_tx = 1;
    return rc;
}

int sx_store_commit(sx_store *s)
{
    int rc = run_cached(s, sql_commit, "commit");
    if (rc != 0)
        sx_store_rollback(s);
    s->in_tx = 0;
    end_lazy(s);
    return rc;
}

void sx_store_rollback(sx_store *s)
{
    if (s->db) {
        char keep[sizeof s->err];
        memcpy(keep, s->err, sizeof keep); /* the failure that led here */
        (void)run_cached(s, sql_rollback, "rollback");
        memcpy(s->err, keep, sizeof keep);
    }
    s->in_tx = 0;
    end_lazy(s);
}

int sx_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n)
{
    if (!p)
        return sqlite3_bind_null(st, i) == SQLITE_OK ? 0 : SIMPLEX_ERR_STORE;
    return sqlite3_bind_blob(st, i, n ? p : "", (int)n, SQLITE_TRANSIENT) ==
                   SQLITE_OK
               ? 0
               : SIMPLEX_ERR_STORE;
}

int sx_bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (!s)
        return sqlite3_bind_null(st, i) == SQLITE_OK ? 0 : SIMPLEX_ERR_STORE;
    return sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT) == SQLITE_OK
               ? 0
               : SIMPLEX_ERR_STORE;
}

int sx_bind_i64(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, v) == SQLITE_OK ? 0 : SIMPLEX_ERR_STORE;
}

int sx_col_blob(sqlite3_stmt *st, int i, void *out, size_t cap, size_t *n)
{
    const void *p = sqlite3_column_blob(st, i);
    int len = sqlite3_column_bytes(st, i);
    if (len < 0 || (size_t)len > cap)
        return SIMPLEX_ERR_STORE;
    if (len)
        memcpy(out, p, (size_t)len);
    *n = (size_t)len;
    return 0;
}

int sx_col_fixed(sqlite3_stmt *st, int i, void *out, size_t n)
{
    size_t got = 0;
    int rc = sx_col_blob(st, i, out, n, &got);
    if (rc)
        return rc;
    return got == n ? 0 : SIMPLEX_ERR_STORE;
}

int sx_col_dup(sqlite3_stmt *st, int i, uint8_t **out, size_t *n)
{
    const void *p = sqlite3_column_blob(st, i);
    int len = sqlite3_column_bytes(st, i);
    *out = NULL;
    *n = 0;
    if (!p || len <= 0)
        return 0;
    *out = sx_malloc((size_t)len);
    if (!*out)
        return SIMPLEX_ERR_NOMEM;
    memcpy(*out, p, (size_t)len);
    *n = (size_t)len;
    return 0;
}
