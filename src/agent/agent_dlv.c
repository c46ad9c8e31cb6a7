/*
 * Delivery workers: each send queue with pending messages belongs to one
 * worker (by its id), which sends its messages in order, one at a time,
 * retrying with back-off while the server cannot be reached.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "agent/agent_int.h"
#include "agent/queue_uri.h"
#include "client/smp_proto.h"
#include "common/sx.h"
#include "crypto/crypto.h"


enum { DL_EMPTY, DL_NEXT, DL_RETRY };

static ag_worker *worker_of(simplex_agent *a, int64_t sq_id)
{
    return &a->workers[(uint64_t)sq_id % AG_WORKERS];
}

void ag_kick(simplex_agent *a, int64_t sq_id)
{
    ag_worker *w = worker_of(a, sq_id);
    ag_dq *d;
    pthread_mutex_lock(&w->mu);
    for (d = w->list; d; d = d->next)
        if (d->sq_id == sq_id)
            break;
    if (!d) {
        d = sx_calloc(1, sizeof *d);
        if (d) {
            d->sq_id = sq_id;
            d->next = w->list;
            w->list = d;
        }
    }
    if (d)
        d->next_ms = 0;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

int ag_kick_all(simplex_agent *a)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st,
                              "SELECT DISTINCT sq_id FROM deliveries");
    if (rc)
        return rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ag_kick(a, sqlite3_column_int64(st, 0));
    sx_store_done(&a->st, st);
    return rc == SQLITE_DONE ? 0 : SIMPLEX_ERR_STORE;
}

static int exec_ids(simplex_agent *a, const char *sql, int64_t x, int64_t y)
{
    sqlite3_stmt *st;
    int rc = sx_store_prepare(&a->st, &st, sql);
    if (rc)
        return rc;
    sx_bind_i64(st, 1, x);
    sx_bind_i64(st, 2, y);
    rc = sqlite3_step(st);
    sx_store_done(&a->st, st);
    return rc == SQLITE_DONE ? 0 : sx_store_fail(&a->st, rc, "delivery");
}

static const char *type_name(int t)
{
    switch (t) {
    case MT_CONN_INFO:
    case MT_CONN_INFO_REPLY:
        return "confirmation";
    case MT_HELLO:
        return "HELLO";
    case MT_A_MSG:
        return "message";
    case MT_A_RCVD:
        return "receipt";
    case MT_INVITATION:
        return "contact request";
    default:
        return "agent message";
    }
}

/* After the server accepted message (conn_id, internal_id) of type t. */
static int sent(simplex_agent *a, const ag_sq *sq, const char *ext,
                int64_t internal_id, int t, int rcpt_status,
                struct simplex_agent_event **ev)
{
    int rc = exec_ids(a,
                      "DELETE FROM deliveries WHERE sq_id = ? AND "
                      "internal_id = ?",
                      sq->id, internal_id);
    if (rc)
        return rc;
    switch (t) {
    case MT_CONN_INFO:
        if (sx_queue_mode_sender_can_secure((sx_queue_mode)sq->mode)) {
            rc = ag_set_sq_status(a, sq->id, SQ_ACTIVE);
            if (rc == 0)
                rc = ag_set_conn_status(a, sq->conn_id,
                                        SIMPLEX_AGENT_CONN_READY);
            *ev = ag_event_new(SIMPLEX_AGENT_EVENT_CON, ext);
        } else {
            rc = ag_set_sq_status(a, sq->id, SQ_CONFIRMED);
        }
        break;
    case MT_CONN_INFO_REPLY:
        rc = ag_set_sq_status(a, sq->id, SQ_CONFIRMED);
        break;
    case MT_INVITATION:
        /* the address's queue was only for the request */
        rc = exec_ids(a,
                      "DELETE FROM snd_messages WHERE conn_id = ? AND "
                      "internal_id = ?",
                      sq->conn_id, internal_id);
        if (rc == 0)
            rc = exec_ids(a, "DELETE FROM snd_queues WHERE sq_id = ? AND "
                             "conn_id = ?",
                          sq->id, sq->conn_id);
        return rc;
    case MT_HELLO: {
        sqlite3_stmt *st;
        int rq_active = 0;
        rc = ag_set_sq_status(a, sq->id, SQ_ACTIVE);
        if (rc == 0)
            rc = sx_store_prepare(&a->st, &st,
                                  "SELECT status FROM rcv_queues WHERE "
                                  "conn_id = ? ORDER BY is_primary DESC, "
                                  "rq_id LIMIT 1");
        if (rc == 0) {
            sx_bind_i64(st, 1, sq->conn_id);
            rq_active = sqlite3_step(st) == SQLITE_ROW &&
                        sqlite3_column_int(st, 0) == RQ_ACTIVE;
            sx_store_done(&a->st, st);
        }
        if (rc == 0 && rq_active) {
            rc = ag_set_conn_status(a, sq->conn_id, SIMPLEX_AGENT_CONN_READY);
            *ev = ag_event_new(SIMPLEX_AGENT_EVENT_CON, ext);
        }
        break;
    }
    case MT_A_MSG:
        *ev = ag_event_new(SIMPLEX_AGENT_EVENT_SENT, ext);
        if (*ev)
            (*ev)->msg_id = internal_id;
        /* kept (without its body) until the delivery receipt */
        rc = exec_ids(a,
                      rcpt_status == 1
                          ? "DELETE FROM snd_messages WHERE conn_id = ? AND "
                            "internal_id = ?"
                          : "UPDATE snd_messages SET body = NULL WHERE "
                            "conn_id = ? AND internal_id = ?",
                      sq->conn_id, internal_id);
        return rc;
    default:
        break;
    }
    if (rc == 0)
        rc = exec_ids(a,
                      "DELETE FROM snd_messages WHERE conn_id = ? AND "
                      "internal_id = ?",
                      sq->conn_id, internal_id);
    return rc;
}

static int dropped(simplex_agent *a, const ag_sq *sq, const char *ext,
                   int64_t internal_id, int t, int code, const char *msg,
                   struct simplex_agent_event **ev)
{
    int rc = exec_ids(a,
                      "DELETE FROM deliveries WHERE sq_id = ? AND "
                      "internal_id = ?",
                      sq->id, internal_id);
    if (rc == 0)
        rc = exec_ids(a,
                      "DELETE FROM snd_messages WHERE conn_id = ? AND "
                      "internal_id = ?",
                      sq->conn_id, internal_id);
    *ev = ag_event_new(t == MT_A_MSG ? SIMPLEX_AGENT_EVENT_MERR
                                     : SIMPLEX_AGENT_EVENT_ERR,
                       ext);
    if (*ev) {
        char text[AG_ERR_MAX + 64];
        (*ev)->msg_id = t == MT_A_MSG ? internal_id : 0;
        snprintf(text, sizeof text, "sending the %s failed: %s",
                 type_name(t), msg);
        ag_event_set_error(*ev, code, text);
    }
    return rc;
}

/* The first pending message of a send queue, as read from the store. */
typedef struct dl_msg {
    int64_t sq_id; /* 0: nothing read */
    ag_sq sq;
    char ext[SIMPLEX_AGENT_ID_MAX];
    uint8_t *env;
    size_t env_len;
    int64_t internal_id, created;
    int t;
} dl_msg;

static void dl_msg_clear(dl_msg *m)
{
    if (m->env)
        sx_free_secret(m->env, m->env_len);
    sx_memzero(m, sizeof *m);
}

/* Reads the first pending message of sq_id (under a->mu): 0,
 * SIMPLEX_ERR_NOT_FOUND or an error (m->ext set when known). */
static int dl_load(simplex_agent *a, int64_t sq_id, dl_msg *m)
{
    sqlite3_stmt *st;
    int rc;
    memset(m, 0, sizeof *m);
    rc = ag_load_sq(a, &m->sq, sq_id, 0);
    if (rc == 0)
        rc = sx_store_prepare(
            &a->st, &st,
            "SELECT d.internal_id, m.msg_type, m.body, m.created_at, "
            "c.ext_id FROM deliveries d JOIN snd_messages m ON "
            "m.conn_id = d.conn_id AND m.internal_id = d.internal_id "
            "JOIN connections c ON c.conn_id = d.conn_id "
            "WHERE d.sq_id = ? ORDER BY d.internal_id LIMIT 1");
    if (rc == 0) {
        sx_bind_i64(st, 1, sq_id);
        if (sqlite3_step(st) == SQLITE_ROW) {
            m->internal_id = sqlite3_column_int64(st, 0);
            m->t = sqlite3_column_int(st, 1);
            rc = sx_col_dup(st, 2, &m->env, &m->env_len);
            m->created = sqlite3_column_int64(st, 3);
            snprintf(m->ext, sizeof m->ext, "%s",
                     (const char *)sqlite3_column_text(st, 4));
        } else {
            rc = SIMPLEX_ERR_NOT_FOUND;
        }
        sx_store_done(&a->st, st);
    }
    if (rc == 0 && !m->env)
        rc = SIMPLEX_ERR_STORE; /* a pending message without its body */
    if (rc == 0)
        m->sq_id = sq_id;
    return rc;
}

/* Whether sq_id is the only queue of its worker, so that the worker will
 * go on with it next (a->mu held; a->mu before w->mu is the lock order). */
static int dl_alone(simplex_agent *a, int64_t sq_id)
{
    ag_worker *w = worker_of(a, sq_id);
    int alone;
    pthread_mutex_lock(&w->mu);
    alone = w->list && !w->list->next && w->list->sq_id == sq_id;
    pthread_mutex_unlock(&w->mu);
    return alone;
}

/* One attempt on the first pending message of sq_id. *next: that message
 * when read beforehand (taken), and on return the following one when it
 * was read while the store was at hand anyway (cleared otherwise). */
/*
 * Securing that the procedures leave to the delivery, so that it happens
 * after everything is stored and is retried like the message itself:
 * SKEY of the peer's queue before our confirmation, when the queue allows
 * it (fast procedure); KEY of our own queue with the creator's key before
 * the joiner's HELLO (standard procedure). Both are idempotent on the
 * server with the same key, so a repeat after a crash is harmless.
 */
static int secure_first(simplex_agent *a, const ag_sq *sq, int t, char *err,
                        size_t err_len)
{
    int rc = 0;
    if ((t == MT_CONN_INFO || t == MT_CONN_INFO_REPLY) &&
        sq->status == SQ_NEW &&
        sx_queue_mode_sender_can_secure((sx_queue_mode)sq->mode)) {
        rc = simplex_client_secure_sender(a->client, sq->server, sq->snd_id,
                                          sq->snd_id_len, sq->snd_priv);
        if (rc) {
            ag_client_error(a, err, err_len);
            return rc;
        }
        pthread_mutex_lock(&a->mu);
        (void)ag_set_sq_status(a, sq->id, SQ_SECURED);
        pthread_mutex_unlock(&a->mu);
    } else if (t == MT_HELLO) {
        sqlite3_stmt *st;
        uint8_t key[32], *queue = NULL;
        size_t kn = 0, qn = 0;
        int64_t rq_id = 0;
        int need = 0;
        pthread_mutex_lock(&a->mu);
        if (sx_store_prepare(&a->st, &st,
                             "SELECT c.initiator, c.conf_sender_key, "
                             "q.queue, q.rq_id, q.status FROM connections c "
                             "JOIN rcv_queues q ON q.conn_id = c.conn_id "
                             "WHERE c.conn_id = ? ORDER BY q.is_primary "
                             "DESC, q.rq_id LIMIT 1") == 0) {
            sx_bind_i64(st, 1, sq->conn_id);
            if (sqlite3_step(st) == SQLITE_ROW &&
                sqlite3_column_int(st, 0) == 0 &&
                sqlite3_column_int(st, 4) == RQ_CONFIRMED &&
                sx_col_blob(st, 1, key, sizeof key, &kn) == 0 && kn == 32 &&
                sx_col_dup(st, 2, &queue, &qn) == 0 && queue) {
                rq_id = sqlite3_column_int64(st, 3);
                need = 1;
            }
            sx_store_done(&a->st, st);
        }
        pthread_mutex_unlock(&a->mu);
        if (need) {
            simplex_queue *q = NULL;
            rc = simplex_queue_import(&q, queue, qn);
            if (rc == 0)
                rc = simplex_client_secure_queue(a->client, q, key);
            if (rc)
                ag_client_error(a, err, err_len);
            simplex_queue_free(q);
            if (rc == 0) {
                pthread_mutex_lock(&a->mu);
                if (sx_store_prepare(&a->st, &st,
                                     "UPDATE rcv_queues SET status = ? "
                                     "WHERE rq_id = ? AND status = ?") == 0) {
                    sx_bind_i64(st, 1, RQ_SECURED);
                    sx_bind_i64(st, 2, rq_id);
                    sx_bind_i64(st, 3, RQ_CONFIRMED);
                    (void)sqlite3_step(st);
                    sx_store_done(&a->st, st);
                }
                pthread_mutex_unlock(&a->mu);
            }
        }
        if (queue)
            sx_free_secret(queue, qn);
        sx_memzero(key, sizeof key);
    }
    return rc;
}

static int deliver_one(simplex_agent *a, ag_dq *state_copy, int64_t sq_id,
                       unsigned *delay_ms, dl_msg *next)
{
    dl_msg cur;
    ag_sq sq;
    sqlite3_stmt *st;
    char ext[SIMPLEX_AGENT_ID_MAX] = "";
    uint8_t *env = NULL;
    size_t env_len = 0;
    int64_t internal_id = 0, created = 0;
    int t = 0, rcpt = 0, rc, conf, scs, result;
    sx_smp_envelope eh;
    sx_smp_client_msg cm;
    sx_wr w;
    char err[AG_ERR_MAX] = "";
    struct simplex_agent_event *ev = NULL;

    if (next->sq_id == sq_id) {
        cur = *next; /* read at the end of the previous attempt */
        memset(next, 0, sizeof *next);
        rc = 0;
    } else {
        dl_msg_clear(next);
        pthread_mutex_lock(&a->mu);
        rc = dl_load(a, sq_id, &cur);
        pthread_mutex_unlock(&a->mu);
    }
    sq = cur.sq;
    memcpy(ext, cur.ext, sizeof ext);
    env = cur.env;
    env_len = cur.env_len;
    internal_id = cur.internal_id;
    created = cur.created;
    t = cur.t;
    cur.env = NULL;
    dl_msg_clear(&cur);
    if (rc) {
        sx_memzero(&sq, sizeof sq);
        if (env)
            sx_free_secret(env, env_len);
        if (rc != SIMPLEX_ERR_NOT_FOUND)
            ag_emit_err(a, ext, rc, "reading a pending message failed");
        return DL_EMPTY;
    }

    conf = t == MT_CONN_INFO || t == MT_CONN_INFO_REPLY || t == MT_INVITATION;
    scs = sx_queue_mode_sender_can_secure((sx_queue_mode)sq.mode);
    memset(&eh, 0, sizeof eh);
    memset(&cm, 0, sizeof cm);
    eh.client_version = (uint16_t)sq.client_version;
    if (conf)
        sx_smp_key_set(&eh.e2e_key, SX_KEY_X25519, sq.e2e_pub);
    sx_random(eh.nonce, sizeof eh.nonce);
    if (conf && !scs && t != MT_INVITATION) {
        uint8_t pk[32];
        rc = sx_ed25519_public(pk, sq.snd_priv);
        sx_smp_key_set(&cm.sender_key, SX_KEY_ED25519, pk);
    }
    cm.body.p = env;
    cm.body.n = env_len;
    sx_wr_init(&w);
    if (rc == 0)
        rc = secure_first(a, &sq, t, err, sizeof err);
    if (rc == 0)
        rc = sx_smp_e2e_seal(&w, &eh, sq.e2e_secret, &cm,
                             conf ? SX_SMP_E2E_CONF_PADDED
                                  : SX_SMP_E2E_MSG_PADDED);
    if (rc == 0 && sx_wr_error(&w))
        rc = sx_wr_error(&w);
    if (rc == 0) {
        rc = simplex_client_send(a->client, sq.server, sq.snd_id,
                                 sq.snd_id_len,
                                 (conf && !scs) || t == MT_INVITATION
                                     ? NULL
                                     : sq.snd_priv,
                                 t == MT_A_RCVD || t == MT_A_QCONT
                                     ? 0
                                     : SIMPLEX_SEND_NOTIFICATION,
                                 w.p, w.len);
        if (rc)
            ag_client_error(a, err, sizeof err);
    } else if (!err[0]) {
        snprintf(err, sizeof err, "encryption failed");
    }
    sx_wr_free(&w);
    sx_free_secret(env, env_len);

    pthread_mutex_lock(&a->mu);
    /* the connection may have been deleted meanwhile */
    if (sx_store_prepare(&a->st, &st,
                         "SELECT m.rcpt_status FROM deliveries d JOIN "
                         "snd_messages m ON m.conn_id = d.conn_id AND "
                         "m.internal_id = d.internal_id WHERE d.sq_id = ? "
                         "AND d.internal_id = ?") != 0) {
        pthread_mutex_unlock(&a->mu);
        sx_memzero(&sq, sizeof sq);
        return DL_RETRY;
    }
    sx_bind_i64(st, 1, sq_id);
    sx_bind_i64(st, 2, internal_id);
    if (sqlite3_step(st) != SQLITE_ROW) {
        sx_store_done(&a->st, st);
        pthread_mutex_unlock(&a->mu);
        sx_memzero(&sq, sizeof sq);
        return DL_NEXT;
    }
    rcpt = sqlite3_column_int(st, 0);
    sx_store_done(&a->st, st);
    if (rc == 0) {
        int src = sx_store_begin_lazy(&a->st);
        if (src == 0)
            src = sent(a, &sq, ext, internal_id, t, rcpt, &ev);
        if (src == 0)
            src = sx_store_commit(&a->st);
        else
            sx_store_rollback(&a->st);
        result = src == 0 ? DL_NEXT : DL_RETRY;
        if (src) {
            simplex_agent_event_free(ev);
            ev = NULL;
            *delay_ms = a->retry_initial_ms;
        } else {
            state_copy->warned = 0;
        }
    } else {
        int temp = ag_temporary(rc);
        int quota = rc == SIMPLEX_ERR_SERVER && strstr(err, "QUOTA");
        int expired = ag_wall_s() - created > (int64_t)a->message_timeout_s;
        if ((temp || quota) && !expired) {
            if (t == MT_A_MSG && !state_copy->warned) {
                ev = ag_event_new(SIMPLEX_AGENT_EVENT_MWARN, ext);
                if (ev) {
                    ev->msg_id = internal_id;
                    ag_event_set_error(ev, rc, err);
                }
                state_copy->warned = 1;
            }
            if (quota)
                *delay_ms = a->retry_max_ms;
            else if (*delay_ms == 0)
                *delay_ms = a->retry_initial_ms;
            else
                *delay_ms = *delay_ms * 3 / 2 > a->retry_max_ms
                                ? a->retry_max_ms
                                : *delay_ms * 3 / 2;
            result = DL_RETRY;
        } else {
            int src = sx_store_begin_lazy(&a->st);
            if (src == 0)
                src = dropped(a, &sq, ext, internal_id, t, rc,
                              err[0] ? err : simplex_strerror(rc), &ev);
            if (src == 0)
                src = sx_store_commit(&a->st);
            else
                sx_store_rollback(&a->st);
            state_copy->warned = 0;
            result = DL_NEXT;
        }
    }
    /* the next message while the store is at hand: one lock round fewer
     * per message (not when other queues of this worker come first) */
    if (result == DL_NEXT && dl_alone(a, sq_id) &&
        dl_load(a, sq_id, next) != 0)
        dl_msg_clear(next);
    pthread_mutex_unlock(&a->mu);
    sx_memzero(&sq, sizeof sq);
    ag_emit(a, ev);
    if (result == DL_NEXT)
        *delay_ms = 0;
    return result;
}

static void *worker_main(void *arg)
{
    ag_worker *w = arg;
    simplex_agent *a = w->a;
    dl_msg next;
    memset(&next, 0, sizeof next);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        ag_dq *d, *best = NULL;
        int64_t now;
        int stop;
        pthread_mutex_lock(&a->qmu);
        stop = a->stop;
        pthread_mutex_unlock(&a->qmu);
        if (stop)
            break;
        for (d = w->list; d; d = d->next)
            if (!best || d->next_ms < best->next_ms)
                best = d;
        now = ag_now_ms();
        if (!best) {
            pthread_cond_wait(&w->cv, &w->mu);
            continue;
        }
        if (best->next_ms > now) {
            struct timespec ts;
            int64_t wait = best->next_ms - now;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (long)(wait % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&w->cv, &w->mu, &ts);
            continue;
        }
        {
            int64_t sq_id = best->sq_id;
            unsigned delay = best->delay_ms;
            ag_dq state = *best;
            int r;
            pthread_mutex_unlock(&w->mu);
            r = deliver_one(a, &state, sq_id, &delay, &next);
            pthread_mutex_lock(&w->mu);
            for (d = w->list; d; d = d->next)
                if (d->sq_id == sq_id)
                    break;
            if (!d)
                continue;
            d->warned = state.warned;
            d->delay_ms = delay;
            if (r == DL_EMPTY && d->next_ms <= now) {
                ag_dq **pp = &w->list;
                while (*pp != d)
                    pp = &(*pp)->next;
                *pp = d->next;
                sx_free(d);
            } else if (r == DL_RETRY && d->next_ms <= now) {
                unsigned jitter = delay / 4;
                uint32_t rnd = 0;
                if (jitter) {
                    sx_random(&rnd, sizeof rnd);
                    jitter = rnd % jitter;
                }
                d->next_ms = ag_now_ms() + delay + jitter;
            }
        }
    }
    pthread_mutex_unlock(&w->mu);
    dl_msg_clear(&next);
    return NULL;
}

int ag_workers_start(simplex_agent *a)
{
    size_t i;
    for (i = 0; i < AG_WORKERS; i++) {
        ag_worker *w = &a->workers[i];
        w->a = a;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        w->list = NULL;
    }
    for (i = 0; i < AG_WORKERS; i++) {
        ag_worker *w = &a->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return SIMPLEX_ERR_IO;
        w->started = 1;
    }
    return 0;
}

void ag_workers_stop(simplex_agent *a)
{
    size_t i;
    for (i = 0; i < AG_WORKERS; i++) {
        ag_worker *w = &a->workers[i];
        if (!w->a)
            continue;
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->cv);
        pthread_mutex_unlock(&w->mu);
        if (w->started)
            pthread_join(w->thread, NULL);
        w->started = 0;
        while (w->list) {
            ag_dq *d = w->list;
            w->list = d->next;
            sx_free(d);
        }
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        w->a = NULL;
    }
}
