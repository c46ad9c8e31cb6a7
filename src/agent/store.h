/*
 * The agent's SQLite store: opening with numbered migrations, WAL,
 * transactions and small statement helpers. The schema itself lives in
 * store.c (migrations) and the queries next to the code that uses them.
 *
 * Every function returns 0 or a negative simplex_error (SIMPLEX_ERR_STORE
 * for SQLite failures, with the message in the store's err buffer).
 */
#ifndef SX_AGENT_STORE_H
#define SX_AGENT_STORE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#define SX_STORE_SCHEMA_VERSION 2

#define SX_STORE_CACHE 128

/* a prepared statement kept for reuse, keyed by its SQL text's address */
typedef struct sx_store_stmt {
    const char *sql;
    sqlite3_stmt *st;
    int busy;
} sx_store_stmt;

typedef struct sx_store {
    sqlite3 *db;
    sx_store_stmt cache[SX_STORE_CACHE];
    size_t n_cache;
    int in_tx;
    int full;   /* synchronous=FULL between transactions */
    int lazy;   /* the current transaction runs with synchronous=NORMAL */
    char err[256];
} sx_store;

/* Opens or creates path, applies pending migrations in one transaction
 * each, sets WAL and synchronous=FULL. A database from a newer library
 * (higher user_version) is refused with SIMPLEX_ERR_UNSUPPORTED. */
int sx_store_open(sx_store *s, const char *path);
void sx_store_close(sx_store *s);

int sx_store_begin(sx_store *s);   /* BEGIN IMMEDIATE */
/* A transaction whose commit need not reach the disk before returning
 * (synchronous=NORMAL for it): for bookkeeping that is safe to lose on a
 * power failure because it is redone. Later durable commits still carry
 * it to disk in order. */
int sx_store_begin_lazy(sx_store *s);
/* full != 0: synchronous=FULL (the default; commits survive power loss);
 * 0: NORMAL (commits survive process crashes, not the machine's). */
int sx_store_set_sync(sx_store *s, int full);
int sx_store_commit(sx_store *s);
void sx_store_rollback(sx_store *s);

/* Runs SQL without results. */
int sx_store_exec(sx_store *s, const char *sql);

/* A prepared statement for sql, which must be a string that lives as
 * long as the store (a literal): statements are kept and reused by the
 * address of their text. Release it with sx_store_done(), never
 * sqlite3_finalize(). On failure records the error. */
int sx_store_prepare(sx_store *s, sqlite3_stmt **st, const char *sql);
/* Resets and releases a statement from sx_store_prepare (NULL accepted). */
void sx_store_done(sx_store *s, sqlite3_stmt *st);
/* Records an SQLite failure rc in s->err and returns SIMPLEX_ERR_STORE. */
int sx_store_fail(sx_store *s, int rc, const char *what);

/* Bind helpers: index from 1; a NULL pointer binds NULL. */
int sx_bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n);
int sx_bind_text(sqlite3_stmt *st, int i, const char *s);
int sx_bind_i64(sqlite3_stmt *st, int i, int64_t v);

/* Copies column i (a blob) into out (cap bytes); *n gets its length.
 * SIMPLEX_ERR_STORE when it does not fit. */
int sx_col_blob(sqlite3_stmt *st, int i, void *out, size_t cap, size_t *n);
/* A blob column that must be exactly n bytes. */
int sx_col_fixed(sqlite3_stmt *st, int i, void *out, size_t n);
/* sx_malloc'ed copy of a blob column (NULL/empty gives NULL, *n 0). */
int sx_col_dup(sqlite3_stmt *st, int i, uint8_t **out, size_t *n);

#endif /* SX_AGENT_STORE_H */
