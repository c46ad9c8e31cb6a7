/*
 * Connection procedures (create, join, allow), sending, acknowledging and
 * the processing of received messages.
 *
 * The procedure follows the reference agent (Agent.hs):
 *
 *   creator                               joiner
 *   NEW (queue A) -> invitation link
 *                                         [SKEY on A when A allows it]
 *                                         NEW (queue B)
 *                                         A <- confirmation: X3DH params,
 *                                              ratchet(B's address, info)
 *   CONF; allow:
 *   [KEY on A with the joiner's key
 *    when the joiner could not SKEY]
 *   [SKEY on B when B allows it]
 *   B <- confirmation: ratchet(info)
 *                                         INFO
 *   fast (both SKEY): CON after sending   CON on receipt
 *   standard: the joiner KEYs B and sends HELLO; the creator answers with
 *   HELLO; each side has CON once it has sent and received HELLO.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/agent_int.h"
#include "agent/agent_proto.h"
#include "agent/links.h"
#include "agent/ratchet.h"
#include "client/smp_proto.h"
#include "common/sx.h"
#include "crypto/crypto.h"

/* ---- stored rows ---- */

typedef struct ag_conn {
    int64_t id;
    char ext[SIMPLEX_AGENT_ID_MAX];
    int status, initiator;
    uint16_t agent_v, e2e_v;
    int64_t last_internal_id, last_snd_id, last_rcv_id, last_ext_snd_id;
    uint8_t last_snd_hash[32], last_rcv_hash[32];
    size_t last_snd_hash_len, last_rcv_hash_len;
} ag_conn;

typedef struct ag_rq {
    int64_t id, conn_id;
    char server[512];
    uint8_t rcv_id[SX_QUEUE_ID_MAX], snd_id[SX_QUEUE_ID_MAX];
    size_t rcv_id_len, snd_id_len;
    uint8_t *queue;
    size_t queue_len;
    uint8_t e2e_priv[32], e2e_pub[32], e2e_secret[32];
    int has_secret;
    int mode, client_version, status;
} ag_rq;


static void rq_clear(ag_rq *q)
{
    if (q->queue)
        sx_free_secret(q->queue, q->queue_len);
    sx_memzero(q, sizeof *q);
}

static int st_fail(simplex_agent *a, int rc)
{
    if (rc == SIMPLEX_ERR_STORE)
        return ag_fail(rc, "database: %s", a->st.err);
    return rc;
}

static int step_done(simplex_agent *a, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    sx_store_done(&a->st, st);
    if (rc != SQLITE_DONE)
        return sx_store_fail(&a->st, rc, what);
    return 0;
}

/* Steps a query expected to give at most one row and reads it with rd:
 * 0, SIMPLEX_ERR_NOT_FOUND or a store error. Releases st. */
static int step_row(simplex_agent *a, sqlite3_stmt *st,
                    int (*rd)(sqlite3_stmt *, void *), void *out,
                    const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        rc = rd(st, out);
    else if (rc == SQLITE_DONE)
        rc = SIMPLEX_ERR_NOT_FOUND;
    else
        rc = sx_store_fail(&a->st, rc, what);
    sx_store_done(&a->st, st);
    return rc;
}

#define CONN_COLS                                                           \
    "conn_id, ext_id, status, initiator, agent_version, e2e_version, "     \
    "last_internal_id, last_snd_id, last_snd_hash, last_rcv_id, "          \
    "last_ext_snd_id, last_rcv_hash"

static int read_conn(sqlite3_stmt *st, void *out)
{
    ag_conn *c = out;
    const unsigned char *ext = sqlite3_column_text(st, 1);
    memset(c, 0, sizeof *c);
    c->id = sqlite3_column_int64(st, 0);
    snprintf(c->ext, sizeof c->ext, "%s", ext ? (const char *)ext : "");
    c->status = sqlite3_column_int(st, 2);
    c->initiator = sqlite3_column_int(st, 3);
    c->agent_v = (uint16_t)sqlite3_column_int(st, 4);
    c->e2e_v = (uint16_t)sqlite3_column_int(st, 5);
    c->last_internal_id = sqlite3_column_int64(st, 6);
    c->last_snd_id = sqlite3_column_int64(st, 7);
    if (sx_col_blob(st, 8, c->last_snd_hash, 32, &c->last_snd_hash_len))
        return SIMPLEX_ERR_STORE;
    c->last_rcv_id = sqlite3_column_int64(st, 9);
    c->last_ext_snd_id = sqlite3_column_int64(st, 10);
    if (sx_col_blob(st, 11, c->last_rcv_hash, 32, &c->last_rcv_hash_len))
        return SIMPLEX_ERR_STORE;
    return 0;
}

/* 0, SIMPLEX_ERR_NOT_FOUND or a store error */
static int load_conn(simplex_agent *a, ag_conn *c, const char *ext,
                     int64_t id)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        ext ? "SELECT " CONN_COLS " FROM connections WHERE ext_id = ?"
            : "SELECT " CONN_COLS " FROM connections WHERE conn_id = ?");
    if (rc)
        return rc;
    if (ext)
        sx_bind_text(st, 1, ext);
    else
        sx_bind_i64(st, 1, id);
    return step_row(a, st, read_conn, c, "load connection");
}

static int save_conn_counters(simplex_agent *a, const ag_conn *c)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        "UPDATE connections SET status = ?, agent_version = ?, "
        "last_internal_id = ?, last_snd_id = ?, last_snd_hash = ?, "
        "last_rcv_id = ?, last_ext_snd_id = ?, last_rcv_hash = ? "
        "WHERE conn_id = ?");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, c->status);
    sx_bind_i64(st, 2, c->agent_v);
    sx_bind_i64(st, 3, c->last_internal_id);
    sx_bind_i64(st, 4, c->last_snd_id);
    sx_bind_blob(st, 5, c->last_snd_hash_len ? c->last_snd_hash : NULL,
                 c->last_snd_hash_len);
    sx_bind_i64(st, 6, c->last_rcv_id);
    sx_bind_i64(st, 7, c->last_ext_snd_id);
    sx_bind_blob(st, 8, c->last_rcv_hash_len ? c->last_rcv_hash : NULL,
                 c->last_rcv_hash_len);
    sx_bind_i64(st, 9, c->id);
    return step_done(a, st, "save connection");
}

static int load_ratchet(simplex_agent *a, int64_t conn_id, sx_ratchet **rc_out)
{
    sqlite3_stmt *st;
    int rc;
    *rc_out = NULL;
    rc = sx_store_prepare(&a->st, &st,
                          "SELECT ratchet FROM connections WHERE conn_id = ?");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, conn_id);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) > 0)
        rc = sx_ratchet_deserialize(rc_out, sqlite3_column_blob(st, 0),
                                    (size_t)sqlite3_column_bytes(st, 0));
    else if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = ag_fail(SIMPLEX_ERR_STATE, "the connection has no ratchet yet");
    else
        rc = sx_store_fail(&a->st, rc, "load ratchet");
    sx_store_done(&a->st, st);
    return rc;
}

static int save_ratchet(simplex_agent *a, int64_t conn_id,
                        const sx_ratchet *r)
{
    sqlite3_stmt *st;
    uint8_t *buf = NULL;
    size_t n = 0;
    int rc = sx_ratchet_serialize(r, &buf, &n);
    if (rc)
        return rc;
    rc = sx_store_prepare(&a->st, &st,
                          "UPDATE connections SET ratchet = ? "
                          "WHERE conn_id = ?");
    if (rc == 0) {
        sx_bind_blob(st, 1, buf, n);
        sx_bind_i64(st, 2, conn_id);
        rc = step_done(a, st, "save ratchet");
    }
    sx_free_secret(buf, n);
    return rc;
}

#define RQ_COLS                                                             \
    "rq_id, conn_id, server, rcv_id, snd_id, queue, e2e_priv, e2e_pub, "   \
    "e2e_secret, mode, client_version, status"

static int read_rq(sqlite3_stmt *st, void *out)
{
    ag_rq *q = out;
    const unsigned char *srv = sqlite3_column_text(st, 2);
    size_t n = 0;
    memset(q, 0, sizeof *q);
    q->id = sqlite3_column_int64(st, 0);
    q->conn_id = sqlite3_column_int64(st, 1);
    snprintf(q->server, sizeof q->server, "%s",
             srv ? (const char *)srv : "");
    if (sx_col_blob(st, 3, q->rcv_id, sizeof q->rcv_id, &q->rcv_id_len) ||
        sx_col_blob(st, 4, q->snd_id, sizeof q->snd_id, &q->snd_id_len) ||
        sx_col_dup(st, 5, &q->queue, &q->queue_len) ||
        sx_col_fixed(st, 6, q->e2e_priv, 32) ||
        sx_col_fixed(st, 7, q->e2e_pub, 32) ||
        sx_col_blob(st, 8, q->e2e_secret, 32, &n))
        return SIMPLEX_ERR_STORE;
    q->has_secret = n == 32;
    q->mode = sqlite3_column_int(st, 9);
    q->client_version = sqlite3_column_int(st, 10);
    q->status = sqlite3_column_int(st, 11);
    return 0;
}

/* by rcv_id (rcv_id != NULL) or by connection */
static int load_rq(simplex_agent *a, ag_rq *q, const uint8_t *rcv_id,
                   size_t rcv_id_len, int64_t conn_id)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        rcv_id ? "SELECT " RQ_COLS " FROM rcv_queues WHERE rcv_id = ?"
               : "SELECT " RQ_COLS " FROM rcv_queues WHERE conn_id = ? "
                 "ORDER BY is_primary DESC, rq_id LIMIT 1");
    if (rc)
        return rc;
    if (rcv_id)
        sx_bind_blob(st, 1, rcv_id, rcv_id_len);
    else
        sx_bind_i64(st, 1, conn_id);
    return step_row(a, st, read_rq, q, "load receive queue");
}

static int insert_rq(simplex_agent *a, const ag_rq *q, int64_t *id)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        "INSERT INTO rcv_queues(conn_id, server, rcv_id, snd_id, queue, "
        "e2e_priv, e2e_pub, e2e_secret, mode, client_version, status) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?)");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, q->conn_id);
    sx_bind_text(st, 2, q->server);
    sx_bind_blob(st, 3, q->rcv_id, q->rcv_id_len);
    sx_bind_blob(st, 4, q->snd_id, q->snd_id_len);
    sx_bind_blob(st, 5, q->queue, q->queue_len);
    sx_bind_blob(st, 6, q->e2e_priv, 32);
    sx_bind_blob(st, 7, q->e2e_pub, 32);
    sx_bind_blob(st, 8, q->has_secret ? q->e2e_secret : NULL, 32);
    sx_bind_i64(st, 9, q->mode);
    sx_bind_i64(st, 10, q->client_version);
    sx_bind_i64(st, 11, q->status);
    rc = step_done(a, st, "insert receive queue");
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(a->st.db);
    return rc;
}

static int update_rq(simplex_agent *a, const ag_rq *q)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "UPDATE rcv_queues SET e2e_secret = ?, "
                              "client_version = ?, status = ? "
                              "WHERE rq_id = ?");
    if (rc)
        return rc;
    sx_bind_blob(st, 1, q->has_secret ? q->e2e_secret : NULL, 32);
    sx_bind_i64(st, 2, q->client_version);
    sx_bind_i64(st, 3, q->status);
    sx_bind_i64(st, 4, q->id);
    return step_done(a, st, "update receive queue");
}

#define SQ_COLS                                                             \
    "sq_id, conn_id, server, snd_id, snd_priv, e2e_pub, e2e_secret, mode, " \
    "client_version, status"

static int read_sq(sqlite3_stmt *st, void *out)
{
    ag_sq *q = out;
    const unsigned char *srv = sqlite3_column_text(st, 2);
    memset(q, 0, sizeof *q);
    q->id = sqlite3_column_int64(st, 0);
    q->conn_id = sqlite3_column_int64(st, 1);
    snprintf(q->server, sizeof q->server, "%s",
             srv ? (const char *)srv : "");
    if (sx_col_blob(st, 3, q->snd_id, sizeof q->snd_id, &q->snd_id_len) ||
        sx_col_fixed(st, 4, q->snd_priv, 32) ||
        sx_col_fixed(st, 5, q->e2e_pub, 32) ||
        sx_col_fixed(st, 6, q->e2e_secret, 32))
        return SIMPLEX_ERR_STORE;
    q->mode = sqlite3_column_int(st, 7);
    q->client_version = sqlite3_column_int(st, 8);
    q->status = sqlite3_column_int(st, 9);
    return 0;
}

/* by sq_id (> 0) or the connection's primary send queue */
int ag_load_sq(simplex_agent *a, ag_sq *q, int64_t sq_id, int64_t conn_id)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        sq_id > 0 ? "SELECT " SQ_COLS " FROM snd_queues WHERE sq_id = ?"
                  : "SELECT " SQ_COLS " FROM snd_queues WHERE conn_id = ? "
                    "ORDER BY is_primary DESC, sq_id LIMIT 1");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, sq_id > 0 ? sq_id : conn_id);
    return step_row(a, st, read_sq, q, "load send queue");
}

static int insert_sq(simplex_agent *a, const ag_sq *q, int64_t *id)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        "INSERT INTO snd_queues(conn_id, server, snd_id, snd_priv, e2e_pub, "
        "e2e_secret, mode, client_version, status) "
        "VALUES(?,?,?,?,?,?,?,?,?)");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, q->conn_id);
    sx_bind_text(st, 2, q->server);
    sx_bind_blob(st, 3, q->snd_id, q->snd_id_len);
    sx_bind_blob(st, 4, q->snd_priv, 32);
    sx_bind_blob(st, 5, q->e2e_pub, 32);
    sx_bind_blob(st, 6, q->e2e_secret, 32);
    sx_bind_i64(st, 7, q->mode);
    sx_bind_i64(st, 8, q->client_version);
    sx_bind_i64(st, 9, q->status);
    rc = step_done(a, st, "insert send queue");
    if (rc == 0 && id)
        *id = sqlite3_last_insert_rowid(a->st.db);
    return rc;
}

int ag_set_sq_status(simplex_agent *a, int64_t sq_id, int status)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "UPDATE snd_queues SET status = ? "
                              "WHERE sq_id = ?");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, status);
    sx_bind_i64(st, 2, sq_id);
    return step_done(a, st, "update send queue");
}

int ag_set_conn_status(simplex_agent *a, int64_t conn_id, int status)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "UPDATE connections SET status = ? "
                              "WHERE conn_id = ?");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, status);
    sx_bind_i64(st, 2, conn_id);
    return step_done(a, st, "update connection");
}

/* ---- outgoing messages ---- */

/* Stores a message (its agent envelope) and its delivery to sq. */
static int store_snd(simplex_agent *a, ag_conn *c, int64_t sq_id, int type,
                     const uint8_t hash[32], const uint8_t *env,
                     size_t env_len, int64_t *internal_id)
{
    sqlite3_stmt *st;
    int rc;
    c->last_internal_id++;
    rc = sx_store_prepare(&a->st, &st,
                          "INSERT INTO snd_messages(conn_id, internal_id, "
                          "snd_id, msg_type, hash, body, created_at) "
                          "VALUES(?,?,?,?,?,?,?)");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, c->id);
    sx_bind_i64(st, 2, c->last_internal_id);
    sx_bind_i64(st, 3, c->last_snd_id);
    sx_bind_i64(st, 4, type);
    sx_bind_blob(st, 5, hash, 32);
    sx_bind_blob(st, 6, env, env_len);
    sx_bind_i64(st, 7, ag_wall_s());
    if ((rc = step_done(a, st, "insert message")) != 0)
        return rc;
    rc = sx_store_prepare(&a->st, &st,
                          "INSERT INTO deliveries(sq_id, conn_id, "
                          "internal_id) VALUES(?,?,?)");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, sq_id);
    sx_bind_i64(st, 2, c->id);
    sx_bind_i64(st, 3, c->last_internal_id);
    if ((rc = step_done(a, st, "insert delivery")) != 0)
        return rc;
    if (internal_id)
        *internal_id = c->last_internal_id;
    return save_conn_counters(a, c);
}

/* Ratchet-encrypts agent_msg (padded to pad) into an agent envelope. */
static int seal_agent(simplex_agent *a, int64_t conn_id,
                      sx_agent_env_type type, uint16_t agent_v,
                      const sx_e2e_params *e2e, const uint8_t *agent_msg,
                      size_t n, size_t pad, sx_wr *env_out)
{
    sx_ratchet *r = NULL;
    uint8_t *enc = NULL;
    size_t enc_len = 0;
    sx_ratchet_err err = {0, 0};
    sx_agent_envelope *e;
    int rc = load_ratchet(a, conn_id, &r);
    if (rc)
        return rc;
    rc = sx_ratchet_encrypt(r, agent_msg, n, pad, &enc, &enc_len, &err);
    if (rc) {
        sx_ratchet_free(r);
        if (err.code == SX_RATCHET_E_LARGE_MSG)
            return ag_fail(SIMPLEX_ERR_TOO_LARGE, "message too large");
        return ag_fail(rc, "ratchet encryption failed (%d)", (int)err.code);
    }
    rc = save_ratchet(a, conn_id, r);
    sx_ratchet_free(r);
    if (rc) {
        sx_free(enc);
        return rc;
    }
    e = sx_calloc(1, sizeof *e);
    if (!e) {
        sx_free(enc);
        return SIMPLEX_ERR_NOMEM;
    }
    e->agent_version = agent_v;
    e->type = type;
    if (e2e) {
        e->has_e2e = 1;
        e->e2e = *e2e;
    }
    e->body.p = enc;
    e->body.n = enc_len;
    rc = sx_agent_envelope_encode(env_out, e);
    if (rc == 0 && sx_wr_error(env_out))
        rc = sx_wr_error(env_out);
    sx_free(e);
    sx_free(enc);
    return rc;
}

/* Queues an AMessage (HELLO, A_MSG, A_RCVD, ...) to sq (inside a
 * transaction). */
static int enqueue_amsg(simplex_agent *a, ag_conn *c, int64_t sq_id,
                        int type, const sx_amessage *m, int64_t *internal_id)
{
    sx_wr msg, env;
    uint8_t hash[32];
    int rc;
    sx_wr_init(&msg);
    sx_wr_init(&env);
    c->last_snd_id++;
    rc = sx_agent_msg_encode_chained(&msg, hash, c->last_snd_id,
                                     c->last_snd_hash_len ? c->last_snd_hash
                                                          : NULL,
                                     c->last_snd_hash_len, m);
    if (rc == 0 && sx_wr_error(&msg))
        rc = sx_wr_error(&msg);
    if (rc == 0 && msg.len + 2 > AG_AGENT_MSG_PAD)
        rc = ag_fail(SIMPLEX_ERR_TOO_LARGE, "message too large");
    if (rc == 0)
        rc = seal_agent(a, c->id, SX_AGENT_ENV_MSG, AG_AGENT_V_MAX, NULL,
                        msg.p, msg.len, AG_AGENT_MSG_PAD, &env);
    if (rc == 0) {
        memcpy(c->last_snd_hash, hash, 32);
        c->last_snd_hash_len = 32;
        rc = store_snd(a, c, sq_id, type, hash, env.p, env.len,
                       internal_id);
    }
    sx_wr_free(&msg);
    sx_wr_free(&env);
    return rc;
}

/* A confirmation: AgentMessage msg ratchet-encrypted into AgentConfirmation
 * (inside a transaction). */
static int enqueue_confirmation(simplex_agent *a, ag_conn *c, int64_t sq_id,
                                int type, const sx_agent_message *m,
                                const sx_e2e_params *e2e)
{
    sx_wr msg, env;
    uint8_t hash[32];
    int rc;
    sx_wr_init(&msg);
    sx_wr_init(&env);
    rc = sx_agent_message_encode(&msg, m);
    if (rc == 0 && sx_wr_error(&msg))
        rc = sx_wr_error(&msg);
    if (rc == 0 && msg.len + 2 > AG_CONN_INFO_PAD)
        rc = ag_fail(SIMPLEX_ERR_TOO_LARGE, "connection info too large");
    if (rc == 0)
        rc = sx_sha256(hash, msg.p, msg.len);
    if (rc == 0)
        rc = seal_agent(a, c->id, SX_AGENT_ENV_CONFIRMATION, c->agent_v, e2e,
                        msg.p, msg.len, AG_CONN_INFO_PAD, &env);
    if (rc == 0) {
        c->last_snd_id++;
        memcpy(c->last_snd_hash, hash, 32);
        c->last_snd_hash_len = 32;
        rc = store_snd(a, c, sq_id, type, hash, env.p, env.len, NULL);
    }
    sx_wr_free(&msg);
    sx_wr_free(&env);
    return rc;
}

/* ---- helpers ---- */

static int tx_begin(simplex_agent *a)
{
    return sx_store_begin(&a->st);
}

static int tx_end(simplex_agent *a, int rc)
{
    if (rc == 0)
        return sx_store_commit(&a->st);
    sx_store_rollback(&a->st);
    return rc;
}

static int server_text(char *out, size_t n, const sx_server_addr *srv)
{
    sx_wr w;
    sx_wr_init_fixed(&w, out, n - 1);
    sx_server_addr_print(&w, srv);
    if (sx_wr_error(&w))
        return SIMPLEX_ERR_TOO_LARGE;
    out[w.len] = 0;
    return 0;
}

static int parse_server(sx_server_addr *out, const char *s)
{
    return sx_server_addr_parse(out, s, strlen(s));
}

static int queue_mode_of(const simplex_queue *q)
{
    return simplex_queue_sender_can_secure(q) ? SX_QUEUE_MODE_MESSAGING
                                              : SX_QUEUE_MODE_NONE;
}

/* A new receiving queue on server (network; no lock held). */
static int new_rcv_queue(simplex_agent *a, const char *server, ag_rq *q,
                         int contact)
{
    simplex_queue *sq = NULL;
    simplex_buf exp = {NULL, 0};
    const uint8_t *p;
    size_t n;
    unsigned flags = SIMPLEX_QUEUE_SUBSCRIBE;
    uint16_t smp_v = 0;
    int rc;
    char msg[AG_ERR_MAX];
    memset(q, 0, sizeof *q);
    if (contact)
        flags |= SIMPLEX_QUEUE_CONTACT;
    else if (!(a->flags & SIMPLEX_AGENT_NO_SENDER_SECURE))
        flags |= SIMPLEX_QUEUE_SENDER_SECURE;
    rc = simplex_client_create_queue(a->client, &sq, server, flags);
    if (rc) {
        ag_client_error(a, msg, sizeof msg);
        return ag_fail(rc, "creating a queue on %s: %s", server, msg);
    }
    snprintf(q->server, sizeof q->server, "%s", simplex_queue_server(sq));
    p = simplex_queue_recipient_id(sq, &n);
    memcpy(q->rcv_id, p, n);
    q->rcv_id_len = n;
    p = simplex_queue_sender_id(sq, &n);
    memcpy(q->snd_id, p, n);
    q->snd_id_len = n;
    q->mode = queue_mode_of(sq);
    /* a contact queue says so from SMP v15 (short links), as the
     * reference's server answers */
    if (contact && simplex_client_connect(a->client, q->server, &smp_v) == 0 &&
        smp_v >= 15)
        q->mode = SX_QUEUE_MODE_CONTACT;
    rc = simplex_queue_export(sq, &exp);
    simplex_queue_free(sq);
    if (rc)
        return ag_fail(rc, "exporting the queue");
    q->queue = exp.data;
    q->queue_len = exp.len;
    rc = sx_x25519_keypair(q->e2e_pub, q->e2e_priv);
    if (rc) {
        rq_clear(q);
        return ag_fail(rc, "key generation failed");
    }
    q->client_version = AG_SMPC_V_MAX;
    q->status = RQ_NEW;
    return 0;
}

/* The queue address of rq as the peer sees it. */
static int rq_address(const ag_rq *q, sx_queue_address *addr)
{
    int rc = parse_server(&addr->server, q->server);
    if (rc)
        return rc;
    memcpy(addr->sender_id, q->snd_id, q->snd_id_len);
    addr->sender_id_len = q->snd_id_len;
    memcpy(addr->dh_public, q->e2e_pub, 32);
    addr->mode = (sx_queue_mode)q->mode;
    return 0;
}

/* A send queue for the peer's queue address (keys only, no network). */
static int new_snd_queue(const sx_queue_address *addr, uint16_t cv,
                         ag_sq *q)
{
    uint8_t pk[32], e2e_priv[32];
    int rc;
    memset(q, 0, sizeof *q);
    rc = server_text(q->server, sizeof q->server, &addr->server);
    if (rc)
        return ag_fail(rc, "server address too long");
    memcpy(q->snd_id, addr->sender_id, addr->sender_id_len);
    q->snd_id_len = addr->sender_id_len;
    q->mode = (int)addr->mode;
    q->client_version = cv;
    q->status = SQ_NEW;
    if ((rc = simplex_client_generate_auth_key(pk, q->snd_priv)) != 0 ||
        (rc = sx_x25519_keypair(q->e2e_pub, e2e_priv)) != 0 ||
        (rc = sx_x25519_dh(q->e2e_secret, addr->dh_public, e2e_priv)) != 0) {
        sx_memzero(e2e_priv, sizeof e2e_priv);
        return ag_fail(rc, "bad queue key in the link");
    }
    sx_memzero(e2e_priv, sizeof e2e_priv);
    return 0;
}

static int vr_pick(uint16_t lo, uint16_t hi, uint16_t our_lo, uint16_t our_hi,
                   uint16_t *out)
{
    uint16_t mx = hi < our_hi ? hi : our_hi;
    uint16_t mn = lo > our_lo ? lo : our_lo;
    if (mn > mx)
        return SIMPLEX_ERR_VERSION;
    *out = mx;
    return 0;
}

static int insert_conn(simplex_agent *a, ag_conn *c, const uint8_t *x3dh,
                       size_t x3dh_len, const uint8_t *snd_params,
                       size_t snd_params_len)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(
        &a->st, &st,
        "INSERT INTO connections(ext_id, status, initiator, agent_version, "
        "e2e_version, x3dh_keys, snd_params, created_at) "
        "VALUES(?,?,?,?,?,?,?,?)");
    if (rc)
        return rc;
    sx_bind_text(st, 1, c->ext);
    sx_bind_i64(st, 2, c->status);
    sx_bind_i64(st, 3, c->initiator);
    sx_bind_i64(st, 4, c->agent_v);
    sx_bind_i64(st, 5, c->e2e_v);
    sx_bind_blob(st, 6, x3dh, x3dh_len);
    sx_bind_blob(st, 7, snd_params, snd_params_len);
    sx_bind_i64(st, 8, ag_wall_s());
    rc = step_done(a, st, "insert connection");
    if (rc == 0)
        c->id = sqlite3_last_insert_rowid(a->st.db);
    return rc;
}

static int check_id(const char *id)
{
    return id && *id && strlen(id) < SIMPLEX_AGENT_ID_MAX;
}

/* ---- create ---- */

/* A receiving queue and X3DH keys for a new invitation; *link gets the
 * NUL-terminated invitation text (network; no lock held). */
static int new_invitation(simplex_agent *a, ag_rq *q,
                          uint8_t keys[2 * SX_X448_BYTES], sx_wr *link)
{
    sx_conn_link *l;
    uint8_t k1_pk[SX_X448_BYTES], k2_pk[SX_X448_BYTES];
    const char *server;
    int rc;

    pthread_mutex_lock(&a->mu);
    server = ag_next_server(a, NULL);
    pthread_mutex_unlock(&a->mu);
    if (!server)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG,
                       "no SMP server configured (options.servers)");
    if ((rc = new_rcv_queue(a, server, q, 0)) != 0)
        return rc;
    if ((rc = sx_x448_keypair(k1_pk, keys)) != 0 ||
        (rc = sx_x448_keypair(k2_pk, keys + SX_X448_BYTES)) != 0) {
        rq_clear(q);
        return ag_fail(rc, "key generation failed");
    }
    l = sx_calloc(1, sizeof *l);
    if (!l) {
        rq_clear(q);
        return ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    }
    l->mode = SX_LINK_INVITATION;
    l->agent_vrange.min = AG_AGENT_V_MIN;
    l->agent_vrange.max = AG_AGENT_V_MAX;
    l->n_queues = 1;
    l->queues[0].vrange.min = AG_SMPC_V_MIN;
    l->queues[0].vrange.max = AG_SMPC_V_MAX;
    rc = rq_address(q, &l->queues[0].addr);
    l->e2e.vrange.min = AG_E2E_V_MIN;
    l->e2e.vrange.max = AG_E2E_V_MAX;
    memcpy(l->e2e.k1, k1_pk, sizeof k1_pk);
    memcpy(l->e2e.k2, k2_pk, sizeof k2_pk);
    l->e2e.kem = SX_KEM_NONE;
    if (rc == 0)
        rc = sx_link_print(link, l);
    sx_link_clear(l);
    sx_free(l);
    if (rc == 0) {
        sx_wr_u8(link, 0);
        rc = sx_wr_error(link);
    }
    if (rc) {
        sx_memzero(keys, 2 * SX_X448_BYTES);
        rq_clear(q);
        return ag_fail(rc, "encoding the link failed");
    }
    return 0;
}

static int take_link(sx_wr *w, simplex_buf *link)
{
    if (sx_wr_take(w, &link->data, &link->len) != 0) {
        sx_wr_free(w);
        return ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    }
    link->len--; /* the NUL */
    return 0;
}

int simplex_agent_create_connection(simplex_agent *a,
                                    char conn_id[SIMPLEX_AGENT_ID_MAX],
                                    simplex_buf *link)
{
    ag_rq q;
    ag_conn c;
    uint8_t keys[2 * SX_X448_BYTES];
    sx_wr w;
    int rc;

    if (!a || !conn_id || !link)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "NULL argument");
    conn_id[0] = 0;
    link->data = NULL;
    link->len = 0;
    sx_wr_init(&w);
    if ((rc = new_invitation(a, &q, keys, &w)) != 0) {
        sx_wr_free(&w);
        return rc;
    }
    memset(&c, 0, sizeof c);
    ag_random_id(c.ext);
    c.status = SIMPLEX_AGENT_CONN_NEW;
    c.initiator = 1;
    c.agent_v = AG_AGENT_V_MAX;
    c.e2e_v = AG_E2E_V_MAX;
    pthread_mutex_lock(&a->mu);
    rc = tx_begin(a);
    if (rc == 0) {
        rc = insert_conn(a, &c, keys, sizeof keys, NULL, 0);
        q.conn_id = c.id;
        if (rc == 0)
            rc = insert_rq(a, &q, NULL);
        rc = tx_end(a, rc);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    sx_memzero(keys, sizeof keys);
    rq_clear(&q);
    if (rc) {
        sx_wr_free(&w);
        return rc;
    }
    snprintf(conn_id, SIMPLEX_AGENT_ID_MAX, "%s", c.ext);
    if ((rc = take_link(&w, link)) != 0)
        return rc;
    return ag_fail(0, "%s", "");
}

int simplex_agent_create_address(simplex_agent *a,
                                 char conn_id[SIMPLEX_AGENT_ID_MAX],
                                 simplex_buf *link)
{
    ag_rq q;
    ag_conn c;
    sx_conn_link *l = NULL;
    const char *server;
    sx_wr w;
    int rc;

    if (!a || !conn_id || !link)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "NULL argument");
    conn_id[0] = 0;
    link->data = NULL;
    link->len = 0;
    pthread_mutex_lock(&a->mu);
    server = ag_next_server(a, NULL);
    pthread_mutex_unlock(&a->mu);
    if (!server)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG,
                       "no SMP server configured (options.servers)");
    if ((rc = new_rcv_queue(a, server, &q, 1)) != 0)
        return rc;
    sx_wr_init(&w);
    l = sx_calloc(1, sizeof *l);
    if (!l)
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        l->mode = SX_LINK_CONTACT;
        l->agent_vrange.min = AG_AGENT_V_MIN;
        l->agent_vrange.max = AG_AGENT_V_MAX;
        l->n_queues = 1;
        l->queues[0].vrange.min = AG_SMPC_V_MIN;
        l->queues[0].vrange.max = AG_SMPC_V_MAX;
        rc = rq_address(&q, &l->queues[0].addr);
    }
    if (rc == 0)
        rc = sx_link_print(&w, l);
    if (l) {
        sx_link_clear(l);
        sx_free(l);
    }
    if (rc == 0) {
        sx_wr_u8(&w, 0);
        rc = sx_wr_error(&w);
    }
    if (rc) {
        rq_clear(&q);
        sx_wr_free(&w);
        return ag_fail(rc, "encoding the address failed");
    }
    memset(&c, 0, sizeof c);
    ag_random_id(c.ext);
    c.status = SIMPLEX_AGENT_CONN_CONTACT;
    c.initiator = 1;
    c.agent_v = AG_AGENT_V_MAX;
    c.e2e_v = AG_E2E_V_MAX;
    pthread_mutex_lock(&a->mu);
    rc = tx_begin(a);
    if (rc == 0) {
        rc = insert_conn(a, &c, NULL, 0, NULL, 0);
        q.conn_id = c.id;
        if (rc == 0)
            rc = insert_rq(a, &q, NULL);
        rc = tx_end(a, rc);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    rq_clear(&q);
    if (rc) {
        sx_wr_free(&w);
        return rc;
    }
    snprintf(conn_id, SIMPLEX_AGENT_ID_MAX, "%s", c.ext);
    if ((rc = take_link(&w, link)) != 0)
        return rc;
    return ag_fail(0, "%s", "");
}

/* Joining a contact address: a new invitation of ours goes to the
 * address's queue inside AgentInvitation, encrypted once with a fresh key
 * and sent without authorization (Agent.hs sendInvitation). */
static int join_contact(simplex_agent *a, char conn_id[SIMPLEX_AGENT_ID_MAX],
                        const sx_conn_link *l, const uint8_t *info,
                        size_t info_len)
{
    ag_rq q;
    ag_sq sq;
    ag_conn c;
    uint8_t keys[2 * SX_X448_BYTES], priv[32], hash[32];
    uint16_t agent_v, client_v;
    sx_agent_envelope *e = NULL;
    sx_wr link, env;
    int64_t sq_id = 0;
    int rc;

    if (vr_pick(l->agent_vrange.min, l->agent_vrange.max, AG_AGENT_V_MIN,
                AG_AGENT_V_MAX, &agent_v) ||
        vr_pick(l->queues[0].vrange.min, l->queues[0].vrange.max,
                AG_SMPC_V_MIN, AG_SMPC_V_MAX, &client_v))
        return ag_fail(SIMPLEX_ERR_VERSION,
                       "the address's versions are not compatible");
    memset(&sq, 0, sizeof sq);
    if ((rc = server_text(sq.server, sizeof sq.server,
                          &l->queues[0].addr.server)) != 0)
        return ag_fail(rc, "server address too long");
    memcpy(sq.snd_id, l->queues[0].addr.sender_id,
           l->queues[0].addr.sender_id_len);
    sq.snd_id_len = l->queues[0].addr.sender_id_len;
    sq.mode = (int)l->queues[0].addr.mode;
    sq.client_version = client_v;
    sq.status = SQ_NEW;
    sx_random(sq.snd_priv, sizeof sq.snd_priv); /* never used */
    if ((rc = sx_x25519_keypair(sq.e2e_pub, priv)) != 0 ||
        (rc = sx_x25519_dh(sq.e2e_secret, l->queues[0].addr.dh_public,
                           priv)) != 0) {
        sx_memzero(priv, sizeof priv);
        return ag_fail(rc, "bad queue key in the address");
    }
    sx_memzero(priv, sizeof priv);
    sx_wr_init(&link);
    sx_wr_init(&env);
    if ((rc = new_invitation(a, &q, keys, &link)) != 0) {
        sx_wr_free(&link);
        sx_memzero(&sq, sizeof sq);
        return rc;
    }
    e = sx_calloc(1, sizeof *e);
    if (!e)
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        e->agent_version = agent_v;
        e->type = SX_AGENT_ENV_INVITATION;
        e->conn_req.p = link.p;
        e->conn_req.n = link.len - 1; /* without the NUL */
        e->body.p = info ? info : (const uint8_t *)"";
        e->body.n = info_len;
        rc = sx_agent_envelope_encode(&env, e);
        if (rc == 0 && sx_wr_error(&env))
            rc = sx_wr_error(&env);
        if (rc == 0 && env.len + 2 > SX_SMP_E2E_CONF_PADDED - 64)
            rc = ag_fail(SIMPLEX_ERR_TOO_LARGE, "connection info too large");
        if (rc == 0)
            rc = sx_sha256(hash, env.p, env.len);
    }
    sx_free(e);
    memset(&c, 0, sizeof c);
    ag_random_id(c.ext);
    c.status = SIMPLEX_AGENT_CONN_NEW;
    c.initiator = 1;
    c.agent_v = AG_AGENT_V_MAX;
    c.e2e_v = AG_E2E_V_MAX;
    if (rc == 0) {
        pthread_mutex_lock(&a->mu);
        rc = tx_begin(a);
        if (rc == 0) {
            rc = insert_conn(a, &c, keys, sizeof keys, NULL, 0);
            q.conn_id = sq.conn_id = c.id;
            if (rc == 0)
                rc = insert_rq(a, &q, NULL);
            if (rc == 0)
                rc = insert_sq(a, &sq, &sq_id);
            if (rc == 0) {
                sqlite3_stmt *st;
                rc = sx_store_prepare(&a->st, &st,
                                      "UPDATE snd_queues SET is_primary = 0 "
                                      "WHERE sq_id = ?");
                if (rc == 0) {
                    sx_bind_i64(st, 1, sq_id);
                    rc = step_done(a, st, "contact request queue");
                }
            }
            if (rc == 0)
                rc = store_snd(a, &c, sq_id, MT_INVITATION, hash, env.p,
                               env.len, NULL);
            rc = tx_end(a, rc);
        }
        rc = st_fail(a, rc);
        pthread_mutex_unlock(&a->mu);
    }
    sx_memzero(keys, sizeof keys);
    sx_memzero(&sq, sizeof sq);
    rq_clear(&q);
    sx_wr_free(&link);
    sx_wr_free(&env);
    if (rc)
        return rc;
    snprintf(conn_id, SIMPLEX_AGENT_ID_MAX, "%s", c.ext);
    ag_kick(a, sq_id);
    return ag_fail(0, "%s", "");
}

/* ---- join ---- */

int simplex_agent_join_connection(simplex_agent *a,
                                  char conn_id[SIMPLEX_AGENT_ID_MAX],
                                  const char *link, const uint8_t *info,
                                  size_t info_len)
{
    sx_conn_link *l = NULL;
    sx_agent_message *m = NULL;
    sx_e2e_params peer, own;
    sx_x3dh_init *x3 = NULL;
    sx_ratchet *r = NULL;
    uint8_t k1_sk[SX_X448_BYTES], k2_sk[SX_X448_BYTES];
    uint8_t dhrs_pk[SX_X448_BYTES], dhrs_sk[SX_X448_BYTES];
    uint16_t agent_v, e2e_v, client_v;
    ag_sq sq;
    ag_rq rq;
    ag_conn c;
    const char *server;
    sx_wr params;
    int64_t sq_id = 0;
    int rc;

    if (!a || !conn_id || !link || (info_len && !info))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "NULL argument");
    conn_id[0] = 0;
    memset(&rq, 0, sizeof rq);
    memset(&sq, 0, sizeof sq);
    sx_wr_init(&params);
    l = sx_calloc(1, sizeof *l);
    m = sx_calloc(1, sizeof *m);
    x3 = sx_calloc(1, sizeof *x3);
    if (!l || !m || !x3) {
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
        goto out;
    }
    rc = sx_link_parse(l, link, strlen(link));
    if (rc) {
        rc = ag_fail(rc, "the link does not parse: %s", simplex_strerror(rc));
        goto out;
    }
    if (l->mode == SX_LINK_CONTACT) {
        rc = join_contact(a, conn_id, l, info, info_len);
        goto out;
    }
    if (vr_pick(l->agent_vrange.min, l->agent_vrange.max, AG_AGENT_V_MIN,
                AG_AGENT_V_MAX, &agent_v) ||
        vr_pick(l->e2e.vrange.min, l->e2e.vrange.max, AG_E2E_V_MIN,
                AG_E2E_V_MAX, &e2e_v) ||
        vr_pick(l->queues[0].vrange.min, l->queues[0].vrange.max,
                AG_SMPC_V_MIN, AG_SMPC_V_MAX, &client_v)) {
        rc = ag_fail(SIMPLEX_ERR_VERSION,
                     "the link's versions are not compatible");
        goto out;
    }
    /* the send queue and the ratchet (the link's KEM key is ignored: the
     * e2e version agreed is below the post-quantum one) */
    if ((rc = new_snd_queue(&l->queues[0].addr, client_v, &sq)) != 0)
        goto out;
    memset(&peer, 0, sizeof peer);
    peer.version = e2e_v;
    memcpy(peer.k1, l->e2e.k1, SX_X448_BYTES);
    memcpy(peer.k2, l->e2e.k2, SX_X448_BYTES);
    memset(&own, 0, sizeof own);
    own.version = e2e_v;
    if ((rc = sx_x448_keypair(own.k1, k1_sk)) != 0 ||
        (rc = sx_x448_keypair(own.k2, k2_sk)) != 0 ||
        (rc = sx_x448_keypair(dhrs_pk, dhrs_sk)) != 0 ||
        (rc = sx_x3dh_snd(x3, k1_sk, k2_sk, NULL, &peer)) != 0 ||
        (rc = sx_ratchet_init_snd(&r, e2e_v, AG_E2E_V_MAX, peer.k2, dhrs_sk,
                                  x3)) != 0) {
        rc = ag_fail(rc, "key agreement failed");
        goto out;
    }
    sx_e2e_params_write(&params, &own);
    if ((rc = sx_wr_error(&params)) != 0)
        goto out;

    /* network: our queue. The peer's queue is secured (SKEY) by the
     * delivery of the confirmation, after everything is stored, so that a
     * crash cannot lose the key it was secured with. */
    pthread_mutex_lock(&a->mu);
    server = ag_next_server(a, sq.server);
    pthread_mutex_unlock(&a->mu);
    if (!server) {
        rc = ag_fail(SIMPLEX_ERR_INVALID_ARG,
                     "no SMP server configured (options.servers)");
        goto out;
    }
    if ((rc = new_rcv_queue(a, server, &rq, 0)) != 0)
        goto out;
    rq.client_version = client_v;

    /* the confirmation: our reply queue and info */
    m->type = SX_AGENT_MSG_CONN_INFO_REPLY;
    m->n_queues = 1;
    m->queues[0].version = client_v;
    if ((rc = rq_address(&rq, &m->queues[0].addr)) != 0)
        goto out;
    m->info.p = info ? info : (const uint8_t *)"";
    m->info.n = info_len;

    memset(&c, 0, sizeof c);
    ag_random_id(c.ext);
    c.status = SIMPLEX_AGENT_CONN_JOINED;
    c.initiator = 0;
    c.agent_v = agent_v;
    c.e2e_v = e2e_v;
    pthread_mutex_lock(&a->mu);
    rc = tx_begin(a);
    if (rc == 0) {
        rc = insert_conn(a, &c, NULL, 0, params.p, params.len);
        if (rc == 0)
            rc = save_ratchet(a, c.id, r);
        sq.conn_id = rq.conn_id = c.id;
        if (rc == 0)
            rc = insert_sq(a, &sq, &sq_id);
        if (rc == 0)
            rc = insert_rq(a, &rq, NULL);
        if (rc == 0)
            rc = enqueue_confirmation(a, &c, sq_id, MT_CONN_INFO_REPLY, m,
                                      &own);
        rc = tx_end(a, rc);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == 0) {
        snprintf(conn_id, SIMPLEX_AGENT_ID_MAX, "%s", c.ext);
        ag_kick(a, sq_id);
        rc = ag_fail(0, "%s", "");
    }
out:
    sx_memzero(k1_sk, sizeof k1_sk);
    sx_memzero(k2_sk, sizeof k2_sk);
    sx_memzero(dhrs_sk, sizeof dhrs_sk);
    sx_memzero(&sq, sizeof sq);
    rq_clear(&rq);
    sx_ratchet_free(r);
    if (x3)
        sx_free_secret(x3, sizeof *x3);
    sx_free(m);
    if (l) {
        sx_link_clear(l);
        sx_free(l);
    }
    sx_wr_free(&params);
    return rc;
}

/* ---- allow ---- */

int simplex_agent_allow_connection(simplex_agent *a, const char *conn_id,
                                   const char *conf_id, const uint8_t *info,
                                   size_t info_len)
{
    ag_conn c;
    ag_rq rq;
    ag_sq sq;
    sx_queue_info qi;
    sx_agent_message *m = NULL;
    uint8_t sender_key[32];
    int has_key = 0;
    int64_t sq_id = 0;
    simplex_queue *q = NULL;
    sqlite3_stmt *st;
    char msg[AG_ERR_MAX];
    int rc;

    if (!a || !check_id(conn_id) || !check_id(conf_id) ||
        (info_len && !info))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    memset(&rq, 0, sizeof rq);
    memset(&sq, 0, sizeof sq);
    pthread_mutex_lock(&a->mu);
    rc = load_conn(a, &c, conn_id, 0);
    if (rc == 0 && c.status != SIMPLEX_AGENT_CONN_CONFIRMED)
        rc = ag_fail(SIMPLEX_ERR_STATE, "connection %s is %s, not confirmed",
                     conn_id, simplex_agent_conn_status_name(c.status));
    if (rc == 0)
        rc = sx_store_prepare(&a->st, &st,
                              "SELECT conf_id, conf_sender_key, conf_reply "
                              "FROM connections WHERE conn_id = ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, c.id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const unsigned char *cid = sqlite3_column_text(st, 0);
            size_t n = 0;
            sx_rd rd;
            if (!cid || strcmp((const char *)cid, conf_id) != 0)
                rc = ag_fail(SIMPLEX_ERR_NOT_FOUND,
                             "no confirmation %s on connection %s", conf_id,
                             conn_id);
            else if (sx_col_blob(st, 1, sender_key, 32, &n) != 0)
                rc = SIMPLEX_ERR_STORE;
            has_key = n == 32;
            if (rc == 0) {
                sx_rd_init(&rd, sqlite3_column_blob(st, 2),
                           (size_t)sqlite3_column_bytes(st, 2));
                if (sx_queue_info_decode(&rd, &qi) != 0)
                    rc = ag_fail(SIMPLEX_ERR_STORE,
                                 "stored reply queue does not decode");
            }
        } else {
            rc = SIMPLEX_ERR_NOT_FOUND;
        }
        sx_store_done(&a->st, st);
    }
    if (rc == 0)
        rc = load_rq(a, &rq, NULL, 0, c.id);
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no connection %s or confirmation %s", conn_id,
                       conf_id);
    if (rc)
        goto out;

    /* network: KEY (standard procedure), then SKEY on the reply queue */
    if (has_key) {
        rc = simplex_queue_import(&q, rq.queue, rq.queue_len);
        if (rc == 0)
            rc = simplex_client_secure_queue(a->client, q, sender_key);
        if (rc) {
            ag_client_error(a, msg, sizeof msg);
            rc = ag_fail(rc, "securing our queue: %s", msg);
            goto out;
        }
        rq.status = RQ_SECURED;
    }
    if (qi.version < AG_SMPC_V_MIN || qi.version > AG_SMPC_V_MAX) {
        rc = ag_fail(SIMPLEX_ERR_VERSION, "reply queue version %u",
                     (unsigned)qi.version);
        goto out;
    }
    /* SKEY, when the reply queue allows it, is done by the delivery of
     * our confirmation (agent_dlv.c), after it is stored */
    if ((rc = new_snd_queue(&qi.addr, qi.version, &sq)) != 0)
        goto out;

    m = sx_calloc(1, sizeof *m);
    if (!m) {
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
        goto out;
    }
    m->type = SX_AGENT_MSG_CONN_INFO;
    m->info.p = info ? info : (const uint8_t *)"";
    m->info.n = info_len;
    pthread_mutex_lock(&a->mu);
    rc = tx_begin(a);
    if (rc == 0) {
        rc = load_conn(a, &c, conn_id, 0);
        if (rc == 0 && c.status != SIMPLEX_AGENT_CONN_CONFIRMED)
            rc = ag_fail(SIMPLEX_ERR_STATE, "connection %s was allowed "
                         "already", conn_id);
        sq.conn_id = c.id;
        if (rc == 0 && has_key)
            rc = update_rq(a, &rq);
        if (rc == 0)
            rc = insert_sq(a, &sq, &sq_id);
        if (rc == 0) {
            c.status = SIMPLEX_AGENT_CONN_ALLOWED;
            rc = enqueue_confirmation(a, &c, sq_id, MT_CONN_INFO, m, NULL);
        }
        rc = tx_end(a, rc);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == 0) {
        ag_kick(a, sq_id);
        rc = ag_fail(0, "%s", "");
    }
out:
    simplex_queue_free(q);
    sx_memzero(sender_key, sizeof sender_key);
    sx_memzero(&sq, sizeof sq);
    rq_clear(&rq);
    sx_free(m);
    return rc;
}

/* ---- send ---- */

int simplex_agent_send(simplex_agent *a, const char *conn_id,
                       const uint8_t *body, size_t len, int64_t *msg_id)
{
    ag_conn c;
    ag_sq sq;
    sx_amessage *m;
    int64_t id = 0;
    int rc;

    if (msg_id)
        *msg_id = 0;
    if (!a || !check_id(conn_id) || (len && !body))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    if (len > SIMPLEX_AGENT_MAX_MSG_BYTES)
        return ag_fail(SIMPLEX_ERR_TOO_LARGE, "message of %zu bytes (at most "
                       "%d)", len, SIMPLEX_AGENT_MAX_MSG_BYTES);
    m = sx_calloc(1, sizeof *m);
    if (!m)
        return ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    m->type = SX_AMSG_A_MSG;
    m->body.p = body ? body : (const uint8_t *)"";
    m->body.n = len;
    pthread_mutex_lock(&a->mu);
    rc = tx_begin(a);
    if (rc == 0) {
        rc = load_conn(a, &c, conn_id, 0);
        if (rc == 0 && c.status != SIMPLEX_AGENT_CONN_READY)
            rc = ag_fail(SIMPLEX_ERR_STATE, "connection %s is %s, not ready",
                         conn_id, simplex_agent_conn_status_name(c.status));
        if (rc == 0)
            rc = ag_load_sq(a, &sq, 0, c.id);
        if (rc == 0)
            rc = enqueue_amsg(a, &c, sq.id, MT_A_MSG, m, &id);
        rc = tx_end(a, rc);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    sx_free(m);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no connection %s", conn_id);
    if (rc)
        return rc;
    ag_kick(a, sq.id);
    sx_memzero(&sq, sizeof sq);
    if (msg_id)
        *msg_id = id;
    return ag_fail(0, "%s", "");
}

/* ---- ack ---- */

/* SMP ACK of srv_msg_id on rq (network); a message the server no longer
 * has counts as acknowledged. */
static int smp_ack(simplex_agent *a, const uint8_t *queue, size_t queue_len,
                   const uint8_t *srv_msg_id, size_t srv_msg_id_len)
{
    simplex_queue *q = NULL;
    char msg[AG_ERR_MAX];
    int rc = simplex_queue_import(&q, queue, queue_len);
    if (rc)
        return rc;
    rc = simplex_client_ack(a->client, q, srv_msg_id, srv_msg_id_len);
    simplex_queue_free(q);
    if (rc == SIMPLEX_ERR_SERVER) {
        ag_client_error(a, msg, sizeof msg);
        if (strstr(msg, "NO_MSG"))
            return 0;
    }
    return rc;
}

static int delete_rcv_msg(simplex_agent *a, int64_t conn_id,
                          int64_t internal_id)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "DELETE FROM rcv_messages WHERE conn_id = ? "
                              "AND internal_id = ?");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, conn_id);
    sx_bind_i64(st, 2, internal_id);
    return step_done(a, st, "delete received message");
}

int simplex_agent_ack(simplex_agent *a, const char *conn_id, int64_t msg_id,
                      const uint8_t *rcpt_info, size_t rcpt_info_len)
{
    ag_conn c;
    ag_rq rq;
    sqlite3_stmt *st;
    uint8_t srv_id[SX_QUEUE_ID_MAX], hash[32];
    size_t srv_id_len = 0;
    int64_t ext_snd_id = 0, sq_id = 0;
    int type = 0, rc;

    if (!a || !check_id(conn_id) || (rcpt_info_len && !rcpt_info))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    memset(&rq, 0, sizeof rq);
    /*
     * One transaction: the receipt is queued and the message forgotten;
     * then the server is acknowledged. Should the process die in between,
     * the server delivers the message again and its hash (kept in
     * rcv_hashes) makes the agent acknowledge it silently. The commit
     * need not wait for the disk: a power failure could only lose the
     * receipt (and leave the row, forgotten by housekeeping).
     */
    pthread_mutex_lock(&a->mu);
    rc = sx_store_begin_lazy(&a->st);
    if (rc == 0)
        rc = load_conn(a, &c, conn_id, 0);
    if (rc == 0)
        rc = sx_store_prepare(&a->st, &st,
                              "SELECT srv_msg_id, msg_type, hash, "
                              "ext_snd_id, rq_id FROM rcv_messages "
                              "WHERE conn_id = ? AND internal_id = ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, c.id);
        sx_bind_i64(st, 2, msg_id);
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            rc = 0;
            if (sx_col_blob(st, 0, srv_id, sizeof srv_id, &srv_id_len) ||
                sx_col_fixed(st, 2, hash, 32))
                rc = SIMPLEX_ERR_STORE;
            type = sqlite3_column_int(st, 1);
            ext_snd_id = sqlite3_column_int64(st, 3);
            rq.id = sqlite3_column_int64(st, 4);
        } else if (rc == SQLITE_DONE) {
            rc = SIMPLEX_ERR_NOT_FOUND;
        } else {
            rc = sx_store_fail(&a->st, rc, "load received message");
        }
        sx_store_done(&a->st, st);
    }
    if (rc == 0 && type != MT_A_MSG)
        rc = ag_fail(SIMPLEX_ERR_STATE, "message %lld is not an A_MSG",
                     (long long)msg_id);
    if (rc == 0 && rcpt_info && c.agent_v < 4)
        rc = ag_fail(SIMPLEX_ERR_UNSUPPORTED,
                     "the peer's agent version has no delivery receipts");
    if (rc == 0)
        rc = sx_store_prepare(&a->st, &st, "SELECT " RQ_COLS
                              " FROM rcv_queues WHERE rq_id = ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, rq.id);
        rc = sqlite3_step(st) == SQLITE_ROW ? read_rq(st, &rq)
                                            : SIMPLEX_ERR_NOT_FOUND;
        sx_store_done(&a->st, st);
    }
    if (rc == 0 && rcpt_info) {
        ag_sq sq;
        sx_amessage *m = sx_calloc(1, sizeof *m);
        if (!m)
            rc = SIMPLEX_ERR_NOMEM;
        if (rc == 0)
            rc = ag_load_sq(a, &sq, 0, c.id);
        if (rc == 0) {
            m->type = SX_AMSG_A_RCVD;
            m->n = 1;
            m->u.rcvd[0].agent_msg_id = ext_snd_id;
            m->u.rcvd[0].msg_hash.p = hash;
            m->u.rcvd[0].msg_hash.n = 32;
            m->u.rcvd[0].rcpt_info.p = rcpt_info;
            m->u.rcvd[0].rcpt_info.n = rcpt_info_len;
            sq_id = sq.id;
            rc = enqueue_amsg(a, &c, sq.id, MT_A_RCVD, m, NULL);
            sx_memzero(&sq, sizeof sq);
        }
        sx_free(m);
    }
    if (rc == 0)
        rc = delete_rcv_msg(a, c.id, msg_id);
    rc = tx_end(a, rc);
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        rc = ag_fail(rc, "no message %lld on connection %s",
                     (long long)msg_id, conn_id);
    if (rc) {
        rq_clear(&rq);
        return rc;
    }
    /* network; a failure here is recovered by the server's redelivery */
    (void)smp_ack(a, rq.queue, rq.queue_len, srv_id, srv_id_len);
    rq_clear(&rq);
    if (sq_id)
        ag_kick(a, sq_id);
    return ag_fail(0, "%s", "");
}

/* Announces again what waits for the application after a restart: the
 * confirmations not allowed yet (CONF) and the contact requests not
 * answered (REQ), flagged SIMPLEX_AGENT_MSG_REDELIVERED. Under a->mu. */
/* Emits one event of type t per row of st (connection id, CONF/REQ id,
 * info), flagged as announced again. Releases st. */
static void announce_rows(simplex_agent *a, sqlite3_stmt *st,
                          simplex_agent_event_type t)
{
    while (sqlite3_step(st) == SQLITE_ROW) {
        struct simplex_agent_event *ev =
            ag_event_new(t, (const char *)sqlite3_column_text(st, 0));
        if (!ev)
            continue;
        snprintf(ev->conf_id, sizeof ev->conf_id, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        ev->flags = SIMPLEX_AGENT_MSG_REDELIVERED;
        if (ag_event_set_body(ev, sqlite3_column_blob(st, 2),
                              (size_t)sqlite3_column_bytes(st, 2)) != 0) {
            simplex_agent_event_free(ev);
            continue;
        }
        ag_emit(a, ev);
    }
    sx_store_done(&a->st, st);
}

int ag_announce_pending(simplex_agent *a)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "SELECT ext_id, conf_id, conf_info FROM "
                              "connections WHERE status = ? AND conf_id IS "
                              "NOT NULL ORDER BY conn_id");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, SIMPLEX_AGENT_CONN_CONFIRMED);
    announce_rows(a, st, SIMPLEX_AGENT_EVENT_CONF);
    rc = sx_store_prepare(&a->st, &st,
                          "SELECT c.ext_id, i.inv_id, i.info FROM "
                          "invitations i JOIN connections c ON "
                          "c.conn_id = i.conn_id ORDER BY i.created_at");
    if (rc)
        return rc;
    announce_rows(a, st, SIMPLEX_AGENT_EVENT_REQ);
    return 0;
}

int simplex_agent_get_link(simplex_agent *a, const char *conn_id,
                           simplex_buf *link)
{
    ag_conn c;
    ag_rq q;
    sx_conn_link *l = NULL;
    uint8_t keys[2 * SX_X448_BYTES];
    size_t n = 0;
    sqlite3_stmt *st;
    sx_wr w;
    int rc;

    if (!a || !check_id(conn_id) || !link)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    link->data = NULL;
    link->len = 0;
    memset(&q, 0, sizeof q);
    sx_wr_init(&w);
    pthread_mutex_lock(&a->mu);
    rc = load_conn(a, &c, conn_id, 0);
    if (rc == 0 && c.status != SIMPLEX_AGENT_CONN_CONTACT &&
        !(c.status == SIMPLEX_AGENT_CONN_NEW && c.initiator))
        rc = ag_fail(SIMPLEX_ERR_STATE, "connection %s has no link to share "
                     "(it is %s)", conn_id,
                     simplex_agent_conn_status_name(c.status));
    if (rc == 0)
        rc = load_rq(a, &q, NULL, 0, c.id);
    if (rc == 0 && c.status == SIMPLEX_AGENT_CONN_NEW) {
        rc = sx_store_prepare(&a->st, &st, "SELECT x3dh_keys FROM "
                                           "connections WHERE conn_id = ?");
        if (rc == 0) {
            sx_bind_i64(st, 1, c.id);
            if (sqlite3_step(st) != SQLITE_ROW ||
                sx_col_blob(st, 0, keys, sizeof keys, &n) != 0 ||
                n != sizeof keys)
                rc = ag_fail(SIMPLEX_ERR_STATE,
                             "the invitation was answered already");
            sx_store_done(&a->st, st);
        }
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        rc = ag_fail(rc, "no connection %s", conn_id);
    if (rc == 0 && !(l = sx_calloc(1, sizeof *l)))
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    if (rc == 0) {
        l->agent_vrange.min = AG_AGENT_V_MIN;
        l->agent_vrange.max = AG_AGENT_V_MAX;
        l->n_queues = 1;
        l->queues[0].vrange.min = AG_SMPC_V_MIN;
        l->queues[0].vrange.max = AG_SMPC_V_MAX;
        rc = rq_address(&q, &l->queues[0].addr);
        if (c.status == SIMPLEX_AGENT_CONN_CONTACT) {
            l->mode = SX_LINK_CONTACT;
        } else {
            l->mode = SX_LINK_INVITATION;
            l->e2e.vrange.min = AG_E2E_V_MIN;
            l->e2e.vrange.max = AG_E2E_V_MAX;
            l->e2e.kem = SX_KEM_NONE;
            if (rc == 0 &&
                (sx_x448_public(l->e2e.k1, keys) != 0 ||
                 sx_x448_public(l->e2e.k2, keys + SX_X448_BYTES) != 0))
                rc = ag_fail(SIMPLEX_ERR_KEY, "stored keys are invalid");
        }
        if (rc == 0)
            rc = sx_link_print(&w, l);
        if (rc == 0) {
            sx_wr_u8(&w, 0);
            rc = sx_wr_error(&w);
        }
        sx_link_clear(l);
    }
    sx_free(l);
    sx_memzero(keys, sizeof keys);
    rq_clear(&q);
    if (rc) {
        sx_wr_free(&w);
        return rc;
    }
    if ((rc = take_link(&w, link)) != 0)
        return rc;
    return ag_fail(0, "%s", "");
}

/* ---- contact requests ---- */

int simplex_agent_accept_contact(simplex_agent *a,
                                 char conn_id[SIMPLEX_AGENT_ID_MAX],
                                 const char *req_id, const uint8_t *info,
                                 size_t info_len)
{
    sqlite3_stmt *st;
    char *conn_req = NULL;
    int rc;
    if (!a || !conn_id || !check_id(req_id) || (info_len && !info))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    conn_id[0] = 0;
    pthread_mutex_lock(&a->mu);
    rc = sx_store_prepare(&a->st, &st,
                          "SELECT conn_req FROM invitations WHERE inv_id = ?");
    if (rc == 0) {
        sx_bind_text(st, 1, req_id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            const char *t = (const char *)sqlite3_column_text(st, 0);
            size_t n = t ? strlen(t) : 0;
            conn_req = sx_malloc(n + 1);
            if (conn_req)
                memcpy(conn_req, t ? t : "", n + 1);
            else
                rc = SIMPLEX_ERR_NOMEM;
        } else {
            rc = SIMPLEX_ERR_NOT_FOUND;
        }
        sx_store_done(&a->st, st);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no contact request %s", req_id);
    if (rc)
        return rc;
    rc = simplex_agent_join_connection(a, conn_id, conn_req, info, info_len);
    sx_free(conn_req);
    if (rc)
        return rc;
    pthread_mutex_lock(&a->mu);
    if (sx_store_prepare(&a->st, &st,
                         "DELETE FROM invitations WHERE inv_id = ?") == 0) {
        sx_bind_text(st, 1, req_id);
        (void)step_done(a, st, "delete contact request");
    }
    pthread_mutex_unlock(&a->mu);
    return ag_fail(0, "%s", "");
}

int simplex_agent_reject_contact(simplex_agent *a, const char *req_id)
{
    sqlite3_stmt *st;
    int rc;
    if (!a || !check_id(req_id))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    pthread_mutex_lock(&a->mu);
    rc = sx_store_prepare(&a->st, &st,
                          "DELETE FROM invitations WHERE inv_id = ?");
    if (rc == 0) {
        sx_bind_text(st, 1, req_id);
        rc = step_done(a, st, "delete contact request");
        if (rc == 0 && sqlite3_changes(a->st.db) == 0)
            rc = SIMPLEX_ERR_NOT_FOUND;
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no contact request %s", req_id);
    return rc ? rc : ag_fail(0, "%s", "");
}

/* ---- suspend, delete, inspection ---- */

int simplex_agent_suspend_connection(simplex_agent *a, const char *conn_id)
{
    ag_conn c;
    ag_rq rq;
    simplex_queue *q = NULL;
    char msg[AG_ERR_MAX];
    int rc;
    if (!a || !check_id(conn_id))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    memset(&rq, 0, sizeof rq);
    pthread_mutex_lock(&a->mu);
    rc = load_conn(a, &c, conn_id, 0);
    if (rc == 0)
        rc = load_rq(a, &rq, NULL, 0, c.id);
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no connection %s", conn_id);
    if (rc)
        return rc;
    rc = simplex_queue_import(&q, rq.queue, rq.queue_len);
    if (rc == 0)
        rc = simplex_client_suspend(a->client, q);
    simplex_queue_free(q);
    rq_clear(&rq);
    if (rc) {
        ag_client_error(a, msg, sizeof msg);
        return ag_fail(rc, "suspending the queue: %s", msg);
    }
    pthread_mutex_lock(&a->mu);
    rc = st_fail(a, ag_set_conn_status(a, c.id, SIMPLEX_AGENT_CONN_SUSPENDED));
    pthread_mutex_unlock(&a->mu);
    return rc ? rc : ag_fail(0, "%s", "");
}

int simplex_agent_delete_connection(simplex_agent *a, const char *conn_id)
{
    ag_conn c;
    ag_rq rq;
    simplex_queue *q = NULL;
    sqlite3_stmt *st;
    int rc, have_rq;
    if (!a || !check_id(conn_id))
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    memset(&rq, 0, sizeof rq);
    pthread_mutex_lock(&a->mu);
    rc = load_conn(a, &c, conn_id, 0);
    have_rq = rc == 0 && load_rq(a, &rq, NULL, 0, c.id) == 0;
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no connection %s", conn_id);
    if (rc)
        return rc;
    if (have_rq && simplex_queue_import(&q, rq.queue, rq.queue_len) == 0 &&
        simplex_client_delete(a->client, q) != 0) {
        /* best effort: the queue expires on the server if it is gone */
    }
    simplex_queue_free(q);
    rq_clear(&rq);
    pthread_mutex_lock(&a->mu);
    rc = sx_store_prepare(&a->st, &st,
                          "DELETE FROM connections WHERE conn_id = ?");
    if (rc == 0) {
        sx_bind_i64(st, 1, c.id);
        rc = step_done(a, st, "delete connection");
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    if (rc)
        return rc;
    ag_emit(a, ag_event_new(SIMPLEX_AGENT_EVENT_DEL, conn_id));
    return ag_fail(0, "%s", "");
}

int simplex_agent_connection_status(simplex_agent *a, const char *conn_id,
                                    simplex_agent_conn_status *status)
{
    ag_conn c;
    int rc;
    if (!a || !check_id(conn_id) || !status)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    pthread_mutex_lock(&a->mu);
    rc = st_fail(a, load_conn(a, &c, conn_id, 0));
    pthread_mutex_unlock(&a->mu);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return ag_fail(rc, "no connection %s", conn_id);
    if (rc)
        return rc;
    *status = (simplex_agent_conn_status)c.status;
    return ag_fail(0, "%s", "");
}

static int64_t pragma_value(simplex_agent *a, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sx_store_prepare(&a->st, &st, sql) == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            v = sqlite3_column_int64(st, 0);
        sx_store_done(&a->st, st);
    }
    return v;
}

int simplex_agent_storage_bytes(simplex_agent *a, uint64_t *bytes)
{
    int64_t pc, fl, ps;
    if (!a || !bytes)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    pthread_mutex_lock(&a->mu);
    pc = pragma_value(a, "PRAGMA page_count");
    fl = pragma_value(a, "PRAGMA freelist_count");
    ps = pragma_value(a, "PRAGMA page_size");
    pthread_mutex_unlock(&a->mu);
    if (pc < 0 || fl < 0 || ps <= 0 || fl > pc)
        return ag_fail(SIMPLEX_ERR_STORE, "database: %s", a->st.err);
    *bytes = (uint64_t)(pc - fl) * (uint64_t)ps;
    return ag_fail(0, "%s", "");
}

int simplex_agent_list_connections(simplex_agent *a, simplex_buf *out,
                                   size_t *count)
{
    sqlite3_stmt *st;
    sx_wr w;
    size_t n = 0;
    int rc;
    if (!a || !out)
        return ag_fail(SIMPLEX_ERR_INVALID_ARG, "bad argument");
    out->data = NULL;
    out->len = 0;
    if (count)
        *count = 0;
    sx_wr_init(&w);
    pthread_mutex_lock(&a->mu);
    rc = sx_store_prepare(&a->st, &st,
                          "SELECT ext_id FROM connections ORDER BY conn_id");
    if (rc == 0) {
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            sx_wr_str(&w, (const char *)sqlite3_column_text(st, 0));
            sx_wr_u8(&w, '\n');
            n++;
        }
        rc = rc == SQLITE_DONE ? 0 : sx_store_fail(&a->st, rc, "list");
        sx_store_done(&a->st, st);
    }
    rc = st_fail(a, rc);
    pthread_mutex_unlock(&a->mu);
    sx_wr_u8(&w, 0);
    if (rc == 0 && sx_wr_error(&w))
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    if (rc == 0 && sx_wr_take(&w, &out->data, &out->len) != 0)
        rc = ag_fail(SIMPLEX_ERR_NOMEM, "out of memory");
    if (rc) {
        sx_wr_free(&w);
        return rc;
    }
    out->len--;
    if (count)
        *count = n;
    return ag_fail(0, "%s", "");
}

/* ---- receiving ---- */

/* What to do after the lock is released. */
typedef struct ag_post {
    int ack;               /* SMP ACK of the message */
    int64_t del_conn, del_id; /* then delete this received row */
    int64_t kick_sq;
} ag_post;

static void prohibited(simplex_agent *a, const ag_conn *c, const char *what)
{
    ag_emit_err(a, c->ext, SIMPLEX_ERR_STATE, "AGENT A_PROHIBITED %s", what);
}

static int insert_rcv_hash(simplex_agent *a, int64_t conn_id,
                           const uint8_t hash[32])
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "INSERT OR IGNORE INTO rcv_hashes(conn_id, "
                              "hash, created_at) VALUES(?,?,?)");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, conn_id);
    sx_bind_blob(st, 2, hash, 32);
    sx_bind_i64(st, 3, ag_wall_s());
    return step_done(a, st, "insert message hash");
}

static int rcv_hash_exists(simplex_agent *a, int64_t conn_id,
                           const uint8_t hash[32])
{
    sqlite3_stmt *st;
    int found = 0;
    if (sx_store_prepare(&a->st, &st,
                         "SELECT 1 FROM rcv_hashes WHERE conn_id = ? AND "
                         "hash = ?") != 0)
        return 0;
    sx_bind_i64(st, 1, conn_id);
    sx_bind_blob(st, 2, hash, 32);
    found = sqlite3_step(st) == SQLITE_ROW;
    sx_store_done(&a->st, st);
    return found;
}

/* The creator receives the joiner's confirmation. */
static int conf_initiator(simplex_agent *a, ag_conn *c, ag_rq *rq,
                          const sx_agent_envelope *ae,
                          const sx_smp_key *sender_key)
{
    uint8_t keys[2 * SX_X448_BYTES], hash[32];
    size_t n = 0;
    sx_x3dh_init *x3 = NULL;
    sx_ratchet *r = NULL;
    sx_agent_message *m = NULL;
    uint8_t *pt = NULL;
    size_t pt_len = 0;
    sx_ratchet_err err = {0, 0};
    sqlite3_stmt *st;
    sx_wr reply;
    char conf_id[SIMPLEX_AGENT_ID_MAX];
    struct simplex_agent_event *ev;
    int rc;

    if (!ae->has_e2e) {
        prohibited(a, c, "conf: no e2e parameters");
        return 0;
    }
    if (ae->e2e.version < AG_E2E_V_MIN || ae->e2e.version > AG_E2E_V_MAX ||
        ae->agent_version < AG_AGENT_V_MIN ||
        ae->agent_version > AG_AGENT_V_MAX) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_VERSION, "AGENT A_VERSION");
        return 0;
    }
    if (sender_key->alg != SX_KEY_NONE &&
        (sender_key->alg != SX_KEY_ED25519 || sender_key->len != 32)) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_UNSUPPORTED,
                    "sender key algorithm not supported");
        return 0;
    }
    rc = sx_store_prepare(&a->st, &st, "SELECT x3dh_keys FROM connections "
                                       "WHERE conn_id = ?");
    if (rc)
        return rc;
    sx_bind_i64(st, 1, c->id);
    if (sqlite3_step(st) != SQLITE_ROW ||
        sx_col_blob(st, 0, keys, sizeof keys, &n) != 0 || n != sizeof keys)
        rc = ag_fail(SIMPLEX_ERR_STORE, "the connection's keys are missing");
    sx_store_done(&a->st, st);
    if (rc)
        return rc;
    sx_wr_init(&reply);
    x3 = sx_calloc(1, sizeof *x3);
    m = sx_calloc(1, sizeof *m);
    if (!x3 || !m) {
        rc = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    if (sx_x3dh_rcv(x3, keys, keys + SX_X448_BYTES, NULL, &ae->e2e, NULL) !=
            0 ||
        sx_ratchet_init_rcv(&r, ae->e2e.version, AG_E2E_V_MAX,
                            keys + SX_X448_BYTES, x3, 0) != 0 ||
        sx_ratchet_decrypt(r, ae->body.p, ae->body.n, &pt, &pt_len, &err) !=
            0) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_DECRYPT,
                    "AGENT A_CRYPTO: confirmation does not decrypt (%d)",
                    (int)err.code);
        goto out;
    }
    if (sx_agent_message_decode(m, pt, pt_len) != 0 ||
        m->type != SX_AGENT_MSG_CONN_INFO_REPLY || m->n_queues < 1) {
        prohibited(a, c, "conf: not AgentConnInfoReply");
        goto out;
    }
    sx_queue_info_encode(&reply, &m->queues[0]);
    if ((rc = sx_wr_error(&reply)) != 0 ||
        (rc = sx_sha256(hash, pt, pt_len)) != 0)
        goto out;
    ag_random_id(conf_id);
    rc = tx_begin(a);
    if (rc)
        goto out;
    rc = save_ratchet(a, c->id, r);
    if (rc == 0)
        rc = sx_store_prepare(&a->st, &st,
                              "UPDATE connections SET x3dh_keys = NULL, "
                              "conf_id = ?, conf_info = ?, "
                              "conf_sender_key = ?, conf_reply = ? "
                              "WHERE conn_id = ?");
    if (rc == 0) {
        sx_bind_text(st, 1, conf_id);
        sx_bind_blob(st, 2, m->info.p ? m->info.p : (const uint8_t *)"",
                     m->info.n);
        sx_bind_blob(st, 3,
                     sender_key->alg != SX_KEY_NONE ? sender_key->raw : NULL,
                     32);
        sx_bind_blob(st, 4, reply.p, reply.len);
        sx_bind_i64(st, 5, c->id);
        rc = step_done(a, st, "store confirmation");
    }
    if (rc == 0) {
        rq->status = RQ_CONFIRMED;
        rc = update_rq(a, rq);
    }
    if (rc == 0) {
        c->agent_v = ae->agent_version;
        c->status = SIMPLEX_AGENT_CONN_CONFIRMED;
        c->last_ext_snd_id = 1;
        memcpy(c->last_rcv_hash, hash, 32);
        c->last_rcv_hash_len = 32;
        rc = save_conn_counters(a, c);
    }
    rc = tx_end(a, rc);
    if (rc)
        goto out;
    ev = ag_event_new(SIMPLEX_AGENT_EVENT_CONF, c->ext);
    if (ev) {
        snprintf(ev->conf_id, sizeof ev->conf_id, "%s", conf_id);
        if (ag_event_set_body(ev, m->info.p, m->info.n) != 0) {
            simplex_agent_event_free(ev);
            ev = NULL;
        }
    }
    ag_emit(a, ev);
out:
    sx_memzero(keys, sizeof keys);
    if (pt)
        sx_free_secret(pt, pt_len);
    sx_ratchet_free(r);
    if (x3)
        sx_free_secret(x3, sizeof *x3);
    sx_free(m);
    sx_wr_free(&reply);
    return rc;
}

/* The joiner receives the creator's confirmation. */
static int conf_joiner(simplex_agent *a, ag_conn *c, ag_rq *rq,
                       const sx_agent_envelope *ae,
                       const sx_smp_key *sender_key, ag_post *post)
{
    sx_ratchet *r = NULL;
    sx_agent_message *m = NULL;
    uint8_t *pt = NULL, hash[32];
    size_t pt_len = 0;
    sx_ratchet_err err = {0, 0};
    struct simplex_agent_event *ev;
    int rc, standard = 0;

    if (sender_key->alg != SX_KEY_NONE &&
        (sender_key->alg != SX_KEY_ED25519 || sender_key->len != 32)) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_UNSUPPORTED,
                    "sender key algorithm not supported");
        return 0;
    }
    if ((rc = load_ratchet(a, c->id, &r)) != 0)
        return rc;
    m = sx_calloc(1, sizeof *m);
    if (!m) {
        rc = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    if (sx_ratchet_decrypt(r, ae->body.p, ae->body.n, &pt, &pt_len, &err) !=
        0) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_DECRYPT,
                    "AGENT A_CRYPTO: confirmation does not decrypt (%d)",
                    (int)err.code);
        goto out;
    }
    if (sx_agent_message_decode(m, pt, pt_len) != 0 ||
        m->type != SX_AGENT_MSG_CONN_INFO) {
        prohibited(a, c, "conf: not AgentConnInfo");
        goto out;
    }
    if ((rc = sx_sha256(hash, pt, pt_len)) != 0)
        goto out;
    rc = tx_begin(a);
    if (rc)
        goto out;
    rc = save_ratchet(a, c->id, r);
    c->last_ext_snd_id = 1;
    memcpy(c->last_rcv_hash, hash, 32);
    c->last_rcv_hash_len = 32;
    standard = sender_key->alg != SX_KEY_NONE;
    if (standard) {
        /* the standard procedure: KEY our queue with the creator's key,
         * then HELLO. Both are stored here and done by the delivery of
         * the HELLO (agent_dlv.c), so a crash cannot skip them. */
        sqlite3_stmt *st;
        sx_amessage *h = sx_calloc(1, sizeof *h);
        ag_sq sq;
        rq->status = RQ_CONFIRMED;
        if (!h)
            rc = SIMPLEX_ERR_NOMEM;
        if (rc == 0)
            rc = sx_store_prepare(&a->st, &st,
                                  "UPDATE connections SET conf_sender_key = ? "
                                  "WHERE conn_id = ?");
        if (rc == 0) {
            sx_bind_blob(st, 1, sender_key->raw, 32);
            sx_bind_i64(st, 2, c->id);
            rc = step_done(a, st, "store the sender key");
        }
        if (rc == 0)
            rc = ag_load_sq(a, &sq, 0, c->id);
        if (rc == 0) {
            h->type = SX_AMSG_HELLO;
            rc = enqueue_amsg(a, c, sq.id, MT_HELLO, h, NULL);
            post->kick_sq = sq.id;
            sx_memzero(&sq, sizeof sq);
        }
        sx_free(h);
    } else {
        rq->status = RQ_ACTIVE;
        c->status = SIMPLEX_AGENT_CONN_READY;
    }
    if (rc == 0)
        rc = update_rq(a, rq);
    if (rc == 0)
        rc = save_conn_counters(a, c);
    rc = tx_end(a, rc);
    if (rc) {
        post->kick_sq = 0;
        goto out;
    }
    ev = ag_event_new(SIMPLEX_AGENT_EVENT_INFO, c->ext);
    if (ev && ag_event_set_body(ev, m->info.p, m->info.n) != 0) {
        simplex_agent_event_free(ev);
        ev = NULL;
    }
    ag_emit(a, ev);
    if (!standard)
        ag_emit(a, ag_event_new(SIMPLEX_AGENT_EVENT_CON, c->ext));
out:
    if (pt)
        sx_free_secret(pt, pt_len);
    sx_ratchet_free(r);
    sx_free(m);
    return rc;
}

static int integrity(const ag_conn *c, int64_t ext_id, const uint8_t *prev,
                     size_t prev_len, int64_t *ia, int64_t *ib)
{
    int hash_ok = prev_len == c->last_rcv_hash_len &&
                  (prev_len == 0 || memcmp(prev, c->last_rcv_hash,
                                           prev_len) == 0);
    *ia = *ib = 0;
    if (ext_id == c->last_ext_snd_id + 1 && hash_ok)
        return SIMPLEX_AGENT_INTEGRITY_OK;
    if (ext_id < c->last_ext_snd_id) {
        *ia = ext_id;
        return SIMPLEX_AGENT_INTEGRITY_BAD_ID;
    }
    if (ext_id == c->last_ext_snd_id)
        return SIMPLEX_AGENT_INTEGRITY_DUPLICATE;
    if (ext_id > c->last_ext_snd_id + 1) {
        *ia = c->last_ext_snd_id + 1;
        *ib = ext_id - 1;
        return SIMPLEX_AGENT_INTEGRITY_SKIPPED;
    }
    return SIMPLEX_AGENT_INTEGRITY_BAD_HASH;
}

static void receipts(simplex_agent *a, const ag_conn *c, const sx_amessage *m)
{
    size_t i;
    for (i = 0; i < m->n; i++) {
        const sx_agent_receipt *r = &m->u.rcvd[i];
        sqlite3_stmt *st;
        int64_t internal_id;
        int type, status, ok;
        uint8_t hash[32];
        struct simplex_agent_event *ev;
        if (sx_store_prepare(&a->st, &st,
                             "SELECT internal_id, msg_type, hash, "
                             "rcpt_status FROM snd_messages WHERE "
                             "conn_id = ? AND snd_id = ?") != 0)
            return;
        sx_bind_i64(st, 1, c->id);
        sx_bind_i64(st, 2, r->agent_msg_id);
        if (sqlite3_step(st) != SQLITE_ROW ||
            sx_col_fixed(st, 2, hash, 32) != 0) {
            sx_store_done(&a->st, st);
            continue; /* not kept (or already confirmed and removed) */
        }
        internal_id = sqlite3_column_int64(st, 0);
        type = sqlite3_column_int(st, 1);
        status = sqlite3_column_int(st, 3);
        sx_store_done(&a->st, st);
        if (type != MT_A_MSG) {
            prohibited(a, c, "receipt: not a msg");
            continue;
        }
        if (status == 1)
            continue;
        ok = r->msg_hash.n == 32 && memcmp(r->msg_hash.p, hash, 32) == 0;
        if (sx_store_prepare(&a->st, &st,
                             ok ? "DELETE FROM snd_messages WHERE conn_id = ? "
                                  "AND internal_id = ? AND body IS NULL"
                                : "UPDATE snd_messages SET rcpt_status = 2 "
                                  "WHERE conn_id = ? AND internal_id = ?") ==
            0) {
            sx_bind_i64(st, 1, c->id);
            sx_bind_i64(st, 2, internal_id);
            (void)step_done(a, st, "receipt");
        }
        if (ok && sx_store_prepare(&a->st, &st,
                                   "UPDATE snd_messages SET rcpt_status = 1 "
                                   "WHERE conn_id = ? AND internal_id = ?") ==
                      0) {
            sx_bind_i64(st, 1, c->id);
            sx_bind_i64(st, 2, internal_id);
            (void)step_done(a, st, "receipt");
        }
        ev = ag_event_new(SIMPLEX_AGENT_EVENT_RCVD, c->ext);
        if (!ev)
            continue;
        ev->msg_id = internal_id;
        ev->flags = ok ? SIMPLEX_AGENT_RCPT_OK : SIMPLEX_AGENT_RCPT_BAD_HASH;
        if (ag_event_set_body(ev, r->rcpt_info.p, r->rcpt_info.n) != 0) {
            simplex_agent_event_free(ev);
            continue;
        }
        ag_emit(a, ev);
    }
}

/* A message the ratchet did not open: a redelivery or an error. */
static void undecryptable(simplex_agent *a, ag_conn *c,
                          const uint8_t *srv_id, size_t srv_id_len,
                          const uint8_t enc_hash[32],
                          const sx_ratchet_err *err, ag_post *post)
{
    sqlite3_stmt *st;
    if (sx_store_prepare(&a->st, &st,
                         "SELECT internal_id, msg_type, user_ack, body, "
                         "broker_ts, ext_snd_id, integrity, integ_a, "
                         "integ_b FROM rcv_messages WHERE conn_id = ? AND "
                         "srv_msg_id = ?") == 0) {
        sx_bind_i64(st, 1, c->id);
        sx_bind_blob(st, 2, srv_id, srv_id_len);
        if (sqlite3_step(st) == SQLITE_ROW) {
            int64_t internal_id = sqlite3_column_int64(st, 0);
            int type = sqlite3_column_int(st, 1);
            if (sqlite3_column_int(st, 2)) {
                post->del_conn = c->id;
                post->del_id = internal_id;
            } else if (type == MT_A_MSG) {
                struct simplex_agent_event *ev =
                    ag_event_new(SIMPLEX_AGENT_EVENT_MSG, c->ext);
                post->ack = 0;
                if (ev) {
                    ev->msg_id = internal_id;
                    ev->ts = sqlite3_column_int64(st, 4);
                    ev->snd_msg_id = sqlite3_column_int64(st, 5);
                    ev->integrity = sqlite3_column_int(st, 6);
                    ev->integ_a = sqlite3_column_int64(st, 7);
                    ev->integ_b = sqlite3_column_int64(st, 8);
                    ev->flags = SIMPLEX_AGENT_MSG_REDELIVERED;
                    if (ev->integrity)
                        ev->flags |= SIMPLEX_AGENT_MSG_INTEGRITY_ERR;
                    if (ag_event_set_body(
                            ev, sqlite3_column_blob(st, 3),
                            (size_t)sqlite3_column_bytes(st, 3)) != 0) {
                        simplex_agent_event_free(ev);
                        ev = NULL;
                    }
                    ag_emit(a, ev);
                }
            }
            sx_store_done(&a->st, st);
            return;
        }
        sx_store_done(&a->st, st);
    }
    if (rcv_hash_exists(a, c->id, enc_hash))
        return; /* sent twice: acknowledged silently */
    ag_emit_err(a, c->ext, SIMPLEX_ERR_DECRYPT,
                "AGENT A_CRYPTO %s",
                err->code == SX_RATCHET_E_DUPLICATE ? "duplicate message"
                : err->code == SX_RATCHET_E_HEADER  ? "RATCHET_HEADER"
                : err->code == SX_RATCHET_E_EARLIER ? "RATCHET_EARLIER"
                : err->code == SX_RATCHET_E_TOO_MANY_SKIPPED
                    ? "RATCHET_SKIPPED"
                    : "DECRYPT_AES");
}

/* An agent message ('M' envelope) on an established queue. */
static int agent_msg(simplex_agent *a, ag_conn *c, ag_rq *rq,
                     const sx_agent_envelope *ae, const uint8_t *srv_id,
                     size_t srv_id_len, int64_t ts, ag_post *post)
{
    sx_ratchet *r = NULL;
    sx_agent_message *m = NULL;
    uint8_t *pt = NULL, enc_hash[32], hash[32];
    size_t pt_len = 0;
    sx_ratchet_err err = {0, 0};
    sqlite3_stmt *st;
    int old_status = rq->status, type, integ = 0, rc;
    int64_t ia = 0, ib = 0, internal_id;
    ag_sq sq;
    struct simplex_agent_event *ev = NULL;

    memset(&sq, 0, sizeof sq);
    if (ae->agent_version > c->agent_v && ae->agent_version <= AG_AGENT_V_MAX)
        c->agent_v = ae->agent_version;
    if ((rc = sx_sha256(enc_hash, ae->body.p, ae->body.n)) != 0)
        return rc;
    if ((rc = load_ratchet(a, c->id, &r)) != 0)
        return rc;
    if (sx_ratchet_decrypt(r, ae->body.p, ae->body.n, &pt, &pt_len, &err) !=
        0) {
        undecryptable(a, c, srv_id, srv_id_len, enc_hash, &err, post);
        sx_ratchet_free(r);
        return 0;
    }
    m = sx_calloc(1, sizeof *m);
    if (!m) {
        rc = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    rc = tx_begin(a);
    if (rc)
        goto out;
    rc = save_ratchet(a, c->id, r);
    if (rc == 0 && rq->status != RQ_ACTIVE) {
        rq->status = RQ_ACTIVE;
        rc = update_rq(a, rq);
    }
    if (rc == 0 && (sx_agent_message_decode(m, pt, pt_len) != 0 ||
                    m->type != SX_AGENT_MSG_MESSAGE)) {
        rc = save_conn_counters(a, c);
        rc = tx_end(a, rc);
        if (rc == 0)
            prohibited(a, c, "msg: bad agent msg");
        else
            post->ack = 0;
        goto out;
    }
    if (rc == 0)
        rc = sx_sha256(hash, pt, pt_len);
    if (rc) {
        tx_end(a, rc);
        goto out;
    }
    switch (m->msg.type) {
    case SX_AMSG_HELLO: type = MT_HELLO; break;
    case SX_AMSG_A_MSG: type = MT_A_MSG; break;
    case SX_AMSG_A_RCVD: type = MT_A_RCVD; break;
    case SX_AMSG_A_QCONT: type = MT_A_QCONT; break;
    case SX_AMSG_EREADY: type = MT_EREADY; break;
    default: type = MT_OTHER; break;
    }
    integ = integrity(c, m->snd_msg_id, m->prev_msg_hash.p,
                      m->prev_msg_hash.n, &ia, &ib);
    internal_id = ++c->last_internal_id;
    c->last_rcv_id++;
    rc = sx_store_prepare(&a->st, &st,
                          "INSERT INTO rcv_messages(conn_id, internal_id, "
                          "rcv_id, ext_snd_id, rq_id, srv_msg_id, msg_type, "
                          "body, hash, broker_ts, integrity, integ_a, "
                          "integ_b, user_ack) "
                          "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
    if (rc == 0) {
        sx_bind_i64(st, 1, c->id);
        sx_bind_i64(st, 2, internal_id);
        sx_bind_i64(st, 3, c->last_rcv_id);
        sx_bind_i64(st, 4, m->snd_msg_id);
        sx_bind_i64(st, 5, rq->id);
        sx_bind_blob(st, 6, srv_id, srv_id_len);
        sx_bind_i64(st, 7, type);
        sx_bind_blob(st, 8,
                     type == MT_A_MSG ? (m->msg.body.p ? m->msg.body.p
                                                       : (const uint8_t *)"")
                                      : NULL,
                     m->msg.body.n);
        sx_bind_blob(st, 9, hash, 32);
        sx_bind_i64(st, 10, ts);
        sx_bind_i64(st, 11, integ);
        sx_bind_i64(st, 12, ia);
        sx_bind_i64(st, 13, ib);
        sx_bind_i64(st, 14, type != MT_A_MSG);
        rc = step_done(a, st, "insert received message");
    }
    if (rc == 0)
        rc = insert_rcv_hash(a, c->id, enc_hash);
    c->last_ext_snd_id = m->snd_msg_id;
    memcpy(c->last_rcv_hash, hash, 32);
    c->last_rcv_hash_len = 32;
    if (rc == 0 && type != MT_A_MSG) {
        post->del_conn = c->id;
        post->del_id = internal_id;
    }
    if (rc == 0) {
        switch (type) {
        case MT_HELLO:
            if (old_status == RQ_ACTIVE)
                break;
            if (ag_load_sq(a, &sq, 0, c->id) != 0)
                break;
            if (sq.status == SQ_ACTIVE) {
                c->status = SIMPLEX_AGENT_CONN_READY;
                ev = ag_event_new(SIMPLEX_AGENT_EVENT_CON, c->ext);
            } else {
                sx_amessage *h = sx_calloc(1, sizeof *h);
                if (!h) {
                    rc = SIMPLEX_ERR_NOMEM;
                    break;
                }
                h->type = SX_AMSG_HELLO;
                rc = enqueue_amsg(a, c, sq.id, MT_HELLO, h, NULL);
                post->kick_sq = sq.id;
                sx_free(h);
            }
            break;
        case MT_A_MSG:
            post->ack = 0;
            ev = ag_event_new(SIMPLEX_AGENT_EVENT_MSG, c->ext);
            if (ev) {
                ev->msg_id = internal_id;
                ev->ts = ts;
                ev->snd_msg_id = m->snd_msg_id;
                ev->integrity = integ;
                ev->integ_a = ia;
                ev->integ_b = ib;
                if (integ)
                    ev->flags |= SIMPLEX_AGENT_MSG_INTEGRITY_ERR;
                if (ag_event_set_body(ev, m->msg.body.p, m->msg.body.n) !=
                    0) {
                    simplex_agent_event_free(ev);
                    ev = NULL;
                }
            }
            break;
        case MT_A_RCVD:
            receipts(a, c, &m->msg);
            break;
        case MT_A_QCONT:
            if (ag_load_sq(a, &sq, 0, c->id) == 0)
                post->kick_sq = sq.id;
            break;
        default:
            break;
        }
    }
    if (rc == 0)
        rc = save_conn_counters(a, c);
    rc = tx_end(a, rc);
    if (rc) {
        simplex_agent_event_free(ev);
        post->del_id = 0;
        post->kick_sq = 0;
        goto out;
    }
    if (type == MT_HELLO && old_status == RQ_ACTIVE)
        prohibited(a, c, "hello: active");
    if (type == MT_OTHER)
        ag_emit_err(a, c->ext, SIMPLEX_ERR_UNSUPPORTED,
                    "queue rotation messages are not supported yet");
    ag_emit(a, ev);
out:
    sx_memzero(&sq, sizeof sq);
    if (pt)
        sx_free_secret(pt, pt_len);
    sx_ratchet_free(r);
    sx_free(m);
    return rc;
}

/* AgentInvitation on a contact address: a request to connect. */
static int contact_request(simplex_agent *a, const ag_conn *c,
                           const sx_agent_envelope *ae)
{
    sqlite3_stmt *st;
    char req_id[SIMPLEX_AGENT_ID_MAX];
    struct simplex_agent_event *ev;
    int rc;
    ag_random_id(req_id);
    rc = sx_store_prepare(&a->st, &st,
                          "INSERT INTO invitations(inv_id, conn_id, "
                          "conn_req, info, created_at) VALUES(?,?,?,?,?)");
    if (rc)
        return rc;
    sx_bind_text(st, 1, req_id);
    sx_bind_i64(st, 2, c->id);
    if (sqlite3_bind_text(st, 3, (const char *)ae->conn_req.p,
                          (int)ae->conn_req.n, SQLITE_TRANSIENT) != SQLITE_OK) {
        sx_store_done(&a->st, st);
        return SIMPLEX_ERR_STORE;
    }
    sx_bind_blob(st, 4, ae->body.p ? ae->body.p : (const uint8_t *)"",
                 ae->body.n);
    sx_bind_i64(st, 5, ag_wall_s());
    if ((rc = step_done(a, st, "store contact request")) != 0)
        return rc;
    ev = ag_event_new(SIMPLEX_AGENT_EVENT_REQ, c->ext);
    if (ev) {
        snprintf(ev->conf_id, sizeof ev->conf_id, "%s", req_id);
        if (ag_event_set_body(ev, ae->body.p, ae->body.n) != 0) {
            simplex_agent_event_free(ev);
            ev = NULL;
        }
    }
    ag_emit(a, ev);
    return 0;
}

/* The per-queue e2e layer and dispatch by envelope (under a->mu). */
static int handle_body(simplex_agent *a, ag_conn *c, ag_rq *rq,
                       const uint8_t *srv_id, size_t srv_id_len, int64_t ts,
                       const uint8_t *body, size_t n, ag_post *post)
{
    sx_smp_envelope env;
    sx_smp_client_msg cm;
    sx_agent_envelope *ae = NULL;
    uint8_t secret[32], *buf = NULL;
    int has_key, rc = 0;

    if (sx_smp_envelope_decode(&env, body, n) != 0) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_PARSE, "AGENT A_MESSAGE");
        return 0;
    }
    has_key = env.e2e_key.alg != SX_KEY_NONE;
    if (env.client_version < AG_SMPC_V_MIN) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_VERSION, "AGENT A_VERSION");
        return 0;
    }
    if (!has_key && !rq->has_secret) {
        prohibited(a, c, "msg: no keys");
        return 0;
    }
    if (has_key && !rq->has_secret) {
        if (env.e2e_key.alg != SX_KEY_X25519 ||
            sx_x25519_dh(secret, env.e2e_key.raw, rq->e2e_priv) != 0) {
            ag_emit_err(a, c->ext, SIMPLEX_ERR_KEY, "AGENT A_CRYPTO bad key");
            return 0;
        }
    } else {
        memcpy(secret, rq->e2e_secret, 32);
    }
    buf = sx_malloc(env.enc_body.n ? env.enc_body.n : 1);
    ae = sx_calloc(1, sizeof *ae);
    if (!buf || !ae) {
        rc = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    if (sx_smp_e2e_open(&cm, buf, &env, secret) != 0) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_DECRYPT, "AGENT A_CRYPTO DECRYPT_CB");
        goto out;
    }
    if (sx_agent_envelope_decode(ae, cm.body.p, cm.body.n) != 0) {
        ag_emit_err(a, c->ext, SIMPLEX_ERR_PARSE, "AGENT A_MESSAGE");
        goto out;
    }
    if (has_key && rq->has_secret) {
        /* a confirmation sent again because its ACK was lost */
        if (ae->type != SX_AGENT_ENV_CONFIRMATION)
            prohibited(a, c, "msg: public header");
        goto out;
    }
    if (has_key) {
        if (ae->type == SX_AGENT_ENV_INVITATION) {
            if (cm.sender_key.alg != SX_KEY_NONE ||
                c->status != SIMPLEX_AGENT_CONN_CONTACT)
                prohibited(a, c, "inv: sent to message conn");
            else
                rc = contact_request(a, c, ae);
            goto out;
        }
        if (c->status == SIMPLEX_AGENT_CONN_CONTACT) {
            prohibited(a, c, "conf: sent to a contact address");
            goto out;
        }
        if (ae->type != SX_AGENT_ENV_CONFIRMATION) {
            prohibited(a, c, "handshake: incorrect state");
            goto out;
        }
        if (cm.sender_key.alg == SX_KEY_NONE &&
            !sx_queue_mode_sender_can_secure((sx_queue_mode)rq->mode)) {
            prohibited(a, c, "handshake: missing sender key");
            goto out;
        }
        if (rq->status != RQ_NEW) {
            prohibited(a, c, "conf: status /= new");
            goto out;
        }
        memcpy(rq->e2e_secret, secret, 32);
        rq->has_secret = 1;
        if (env.client_version < rq->client_version)
            rq->client_version = env.client_version;
        if (c->initiator && c->status == SIMPLEX_AGENT_CONN_NEW)
            rc = conf_initiator(a, c, rq, ae, &cm.sender_key);
        else if (!c->initiator && c->status == SIMPLEX_AGENT_CONN_JOINED &&
                 !ae->has_e2e)
            rc = conf_joiner(a, c, rq, ae, &cm.sender_key, post);
        else
            prohibited(a, c, "conf: incorrect state");
        goto out;
    }
    if (cm.sender_key.alg != SX_KEY_NONE) {
        prohibited(a, c, "msg: bad client msg");
        goto out;
    }
    if (ae->type == SX_AGENT_ENV_MSG)
        rc = agent_msg(a, c, rq, ae, srv_id, srv_id_len, ts, post);
    else if (ae->type == SX_AGENT_ENV_RATCHET_KEY)
        ag_emit_err(a, c->ext, SIMPLEX_ERR_UNSUPPORTED,
                    "ratchet re-synchronisation is not supported yet");
    else
        prohibited(a, c, "msg: bad client msg");
out:
    sx_memzero(secret, sizeof secret);
    if (buf)
        sx_free_secret(buf, env.enc_body.n ? env.enc_body.n : 1);
    sx_free(ae);
    return rc;
}

/* The server's "queue was full" marker: everything before it has been
 * read, so the sender may go on: A_QCONT tells it which of its queues
 * (ours) has room again (Agent.hs queueDrained). Under a->mu. */
static int queue_drained(simplex_agent *a, ag_conn *c, const ag_rq *rq,
                         ag_post *post)
{
    ag_sq sq;
    sx_amessage *m;
    int rc = ag_load_sq(a, &sq, 0, c->id);
    if (rc == SIMPLEX_ERR_NOT_FOUND)
        return 0; /* not duplex yet: nobody to tell */
    if (rc)
        return rc;
    m = sx_calloc(1, sizeof *m);
    if (!m) {
        sx_memzero(&sq, sizeof sq);
        return SIMPLEX_ERR_NOMEM;
    }
    m->type = SX_AMSG_A_QCONT;
    m->n = 1;
    rc = parse_server(&m->u.qaddr[0].server, rq->server);
    memcpy(m->u.qaddr[0].sender_id, rq->snd_id, rq->snd_id_len);
    m->u.qaddr[0].sender_id_len = rq->snd_id_len;
    if (rc == 0)
        rc = tx_begin(a);
    if (rc == 0) {
        rc = enqueue_amsg(a, c, sq.id, MT_A_QCONT, m, NULL);
        rc = tx_end(a, rc);
    }
    if (rc == 0)
        post->kick_sq = sq.id;
    sx_memzero(&sq, sizeof sq);
    sx_free(m);
    return rc;
}

static void process_msg(simplex_agent *a, const simplex_client_event *ev)
{
    const uint8_t *rcv_id, *srv_id, *body;
    size_t rcv_id_len, srv_id_len, body_len;
    ag_rq rq;
    ag_conn c;
    ag_post post;
    uint8_t srv_copy[SX_QUEUE_ID_MAX];
    int rc;

    rcv_id = simplex_client_event_queue_id(ev, &rcv_id_len);
    srv_id = simplex_client_event_msg_id(ev, &srv_id_len);
    body = simplex_client_event_body(ev, &body_len);
    if (!rcv_id || !srv_id || srv_id_len > sizeof srv_copy)
        return;
    memcpy(srv_copy, srv_id, srv_id_len);
    memset(&post, 0, sizeof post);
    memset(&rq, 0, sizeof rq);
    post.ack = 1;
    ag_defer_begin(a);
    pthread_mutex_lock(&a->mu);
    rc = load_rq(a, &rq, rcv_id, rcv_id_len, 0);
    if (rc == 0)
        rc = load_conn(a, &c, NULL, rq.conn_id);
    if (rc) {
        pthread_mutex_unlock(&a->mu);
        ag_defer_flush(a);
        rq_clear(&rq);
        ag_emit_err(a, "", rc, "a message for an unknown queue on %s",
                    simplex_client_event_server(ev));
        return;
    }
    if (simplex_client_event_flags(ev) & SIMPLEX_CLIENT_MSG_QUOTA)
        rc = queue_drained(a, &c, &rq, &post);
    else if (body)
        rc = handle_body(a, &c, &rq, srv_copy, srv_id_len,
                         simplex_client_event_timestamp(ev), body, body_len,
                         &post);
    pthread_mutex_unlock(&a->mu);
    ag_defer_flush(a);
    if (rc) {
        /* a store failure: do not acknowledge, the server redelivers */
        ag_emit_err(a, c.ext, rc, "processing a message failed: %s",
                    a->st.err);
        rq_clear(&rq);
        return;
    }
    if (post.ack)
        (void)smp_ack(a, rq.queue, rq.queue_len, srv_copy, srv_id_len);
    if (post.del_id) {
        /* bookkeeping after the ACK: no need to wait for the disk (a
         * lost delete leaves a row marked acknowledged, removed when the
         * message comes again or by housekeeping) */
        pthread_mutex_lock(&a->mu);
        if (sx_store_begin_lazy(&a->st) == 0) {
            if (delete_rcv_msg(a, post.del_conn, post.del_id) == 0)
                (void)sx_store_commit(&a->st);
            else
                sx_store_rollback(&a->st);
        }
        pthread_mutex_unlock(&a->mu);
    }
    rq_clear(&rq);
    if (post.kick_sq)
        ag_kick(a, post.kick_sq);
    sx_memzero(&post, sizeof post);
}

static void queue_event(simplex_agent *a, const simplex_client_event *ev,
                        simplex_agent_event_type t)
{
    const uint8_t *rcv_id;
    size_t n;
    ag_rq rq;
    ag_conn c;
    int rc;
    memset(&rq, 0, sizeof rq);
    rcv_id = simplex_client_event_queue_id(ev, &n);
    if (!rcv_id)
        return;
    pthread_mutex_lock(&a->mu);
    rc = load_rq(a, &rq, rcv_id, n, 0);
    if (rc == 0)
        rc = load_conn(a, &c, NULL, rq.conn_id);
    pthread_mutex_unlock(&a->mu);
    rq_clear(&rq);
    if (rc == 0)
        ag_emit(a, ag_event_new(t, c.ext));
}

void ag_process_client_event(simplex_agent *a, const simplex_client_event *ev)
{
    struct simplex_agent_event *e;
    switch (simplex_client_event_get_type(ev)) {
    case SIMPLEX_CLIENT_EVENT_MSG:
        process_msg(a, ev);
        break;
    case SIMPLEX_CLIENT_EVENT_END:
        queue_event(a, ev, SIMPLEX_AGENT_EVENT_END);
        break;
    case SIMPLEX_CLIENT_EVENT_DELD:
        queue_event(a, ev, SIMPLEX_AGENT_EVENT_DEL);
        break;
    case SIMPLEX_CLIENT_EVENT_DOWN:
    case SIMPLEX_CLIENT_EVENT_UP:
        e = ag_event_new(simplex_client_event_get_type(ev) ==
                                 SIMPLEX_CLIENT_EVENT_DOWN
                             ? SIMPLEX_AGENT_EVENT_DOWN
                             : SIMPLEX_AGENT_EVENT_UP,
                         "");
        if (e) {
            const char *s = simplex_client_event_server(ev);
            size_t n = strlen(s);
            e->server = sx_malloc(n + 1);
            if (e->server)
                memcpy(e->server, s, n + 1);
            if (simplex_client_event_get_type(ev) ==
                SIMPLEX_CLIENT_EVENT_DOWN)
                ag_event_set_error(e, simplex_client_event_error(ev),
                                   simplex_client_event_message(ev));
        }
        ag_emit(a, e);
        break;
    case SIMPLEX_CLIENT_EVENT_ERROR:
        ag_emit_err(a, "", simplex_client_event_error(ev), "%s",
                    simplex_client_event_message(ev));
        break;
    default:
        break;
    }
}

static int cmp_i64(const void *x, const void *y)
{
    int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return a < b ? -1 : a > b;
}

int ag_subscribe(simplex_agent *a, const int64_t *only, size_t n_only)
{
    sqlite3_stmt *st;
    simplex_queue **qs = NULL;
    char (*ids)[SIMPLEX_AGENT_ID_MAX] = NULL;
    int64_t *rq_ids = NULL, *retry = NULL;
    int *res = NULL;
    size_t n = 0, cap = 0, i, n_retry = 0;
    int rc;

    pthread_mutex_lock(&a->mu);
    rc = sx_store_prepare(&a->st, &st,
                          "SELECT q.queue, c.ext_id, q.rq_id FROM "
                          "rcv_queues q JOIN connections c ON "
                          "c.conn_id = q.conn_id ORDER BY q.rq_id");
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        simplex_queue *q = NULL;
        int64_t rq_id = sqlite3_column_int64(st, 2);
        if (only && !bsearch(&rq_id, only, n_only, sizeof *only, cmp_i64))
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            void *p1 = sx_realloc(qs, nc * sizeof *qs);
            void *p2, *p3;
            if (!p1) {
                rc = SIMPLEX_ERR_NOMEM;
                break;
            }
            qs = p1;
            p2 = sx_realloc(ids, nc * sizeof *ids);
            if (!p2) {
                rc = SIMPLEX_ERR_NOMEM;
                break;
            }
            ids = p2;
            p3 = sx_realloc(rq_ids, nc * sizeof *rq_ids);
            if (!p3) {
                rc = SIMPLEX_ERR_NOMEM;
                break;
            }
            rq_ids = p3;
            cap = nc;
        }
        if (simplex_queue_import(&q, sqlite3_column_blob(st, 0),
                                 (size_t)sqlite3_column_bytes(st, 0)) != 0)
            continue;
        qs[n] = q;
        rq_ids[n] = rq_id;
        snprintf(ids[n], SIMPLEX_AGENT_ID_MAX, "%s",
                 (const char *)sqlite3_column_text(st, 1));
        n++;
    }
    if (st)
        sx_store_done(&a->st, st);
    pthread_mutex_unlock(&a->mu);
    if (rc == 0 && n) {
        res = sx_calloc(n, sizeof *res);
        retry = sx_calloc(n, sizeof *retry);
        if (!res || !retry)
            rc = SIMPLEX_ERR_NOMEM;
    }
    if (rc == 0 && n) {
        if (simplex_client_subscribe(a->client,
                                     (const simplex_queue *const *)qs, n,
                                     res) != 0) {
            /* the per-queue results say which */
        }
        for (i = 0; i < n; i++) {
            if (res[i] == 0)
                continue;
            if (ag_temporary(res[i]))
                retry[n_retry++] = rq_ids[i];
            else
                ag_emit_err(a, ids[i], res[i], "subscribing on %s failed: %s",
                            simplex_queue_server(qs[i]),
                            simplex_strerror(res[i]));
            if (rc == 0)
                rc = res[i];
        }
    }
    pthread_mutex_lock(&a->qmu);
    sx_free(a->resub);
    a->resub = n_retry ? retry : NULL;
    a->n_resub = n_retry;
    if (n_retry) {
        retry = NULL;
        a->resub_delay_ms = a->resub_delay_ms
                                ? (a->resub_delay_ms * 3 / 2 > 60000
                                       ? 60000
                                       : a->resub_delay_ms * 3 / 2)
                                : 1000;
        a->resub_at_ms = ag_now_ms() + a->resub_delay_ms;
    } else {
        a->resub_delay_ms = 0;
    }
    pthread_cond_signal(&a->qcv);
    pthread_mutex_unlock(&a->qmu);
    for (i = 0; i < n; i++)
        simplex_queue_free(qs[i]);
    sx_free(qs);
    sx_free(ids);
    sx_free(rq_ids);
    sx_free(retry);
    sx_free(res);
    if (rc)
        return ag_fail(rc, "subscribing the stored connections failed%s",
                       n_retry ? " (retrying)" : "");
    return ag_fail(0, "%s", "");
}
