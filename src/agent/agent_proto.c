/*
 * SMP agent protocol envelopes and messages (see agent_proto.h).
 */
#include "agent/agent_proto.h"

#include <string.h>

#include "agent/links.h"

/* ---- small helpers ---- */

static int rd_qaddr(sx_rd *r, sx_agent_qaddr *a)
{
    const uint8_t *p;
    size_t n;
    int rc = sx_server_addr_decode(r, &a->server);
    if (rc)
        return rc;
    rc = sx_rd_short(r, &p, &n);
    if (rc)
        return rc;
    memcpy(a->sender_id, p, n);
    a->sender_id_len = n;
    return 0;
}

static void wr_qaddr(sx_wr *w, const sx_agent_qaddr *a)
{
    sx_server_addr_encode(w, &a->server);
    sx_wr_short(w, a->sender_id, a->sender_id_len);
}

static int rd_list(sx_rd *r, size_t *n)
{
    int rc = sx_rd_count_nonempty(r, n);
    if (rc)
        return rc;
    if (*n > SX_AGENT_MAX_LIST)
        return SIMPLEX_ERR_TOO_LARGE;
    return 0;
}

static int check_list(sx_wr *w, size_t n)
{
    if (n == 0 || n > SX_AGENT_MAX_LIST) {
        if (!w->err)
            w->err = SIMPLEX_ERR_INVALID_ARG;
        return -1;
    }
    sx_wr_count(w, n);
    return 0;
}

static void wr_auth_key(sx_wr *w, sx_key_alg alg, const uint8_t *raw)
{
    uint8_t der[SX_KEY_DER_MAX];
    size_t len = 0;
    int rc = sx_key_public_encode(der, sizeof der, &len, alg, raw);
    if (rc) {
        if (!w->err)
            w->err = rc;
        return;
    }
    sx_wr_short(w, der, len);
}

static int rd_auth_key(sx_rd *r, sx_key_alg *alg, uint8_t *raw)
{
    const uint8_t *p;
    size_t n, raw_len = 0;
    int rc = sx_rd_short(r, &p, &n);
    if (rc)
        return rc;
    return sx_key_public_decode(alg, raw, &raw_len, SX_KEY_NONE, p, n);
}

/* ---- AgentMsgEnvelope ---- */

int sx_agent_envelope_encode(sx_wr *w, const sx_agent_envelope *e)
{
    if (!w || !e)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_u16(w, e->agent_version);
    sx_wr_u8(w, (uint8_t)e->type);
    switch (e->type) {
    case SX_AGENT_ENV_CONFIRMATION:
        sx_wr_maybe(w, e->has_e2e != 0);
        if (e->has_e2e)
            sx_e2e_params_write(w, &e->e2e);
        break;
    case SX_AGENT_ENV_MSG:
        break;
    case SX_AGENT_ENV_INVITATION:
        sx_wr_large(w, e->conn_req.p, e->conn_req.n);
        break;
    case SX_AGENT_ENV_RATCHET_KEY:
        sx_e2e_params_write(w, &e->e2e);
        break;
    default:
        return SIMPLEX_ERR_INVALID_ARG;
    }
    sx_wr_raw(w, e->body.p, e->body.n);
    return sx_wr_error(w);
}

static int check_invitation_link(const uint8_t *p, size_t n)
{
    sx_conn_link *l = sx_malloc(sizeof *l);
    int rc;
    if (!l)
        return SIMPLEX_ERR_NOMEM;
    rc = sx_link_parse(l, (const char *)p, n);
    if (rc == 0) {
        if (l->mode != SX_LINK_INVITATION)
            rc = SIMPLEX_ERR_PARSE;
        sx_link_clear(l);
    }
    sx_free(l);
    return rc;
}

int sx_agent_envelope_decode(sx_agent_envelope *out, const uint8_t *p,
                             size_t n)
{
    sx_rd r;
    uint8_t tag;
    int present, rc;

    if (!out || (!p && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    rc = sx_rd_u16(&r, &out->agent_version);
    if (rc == 0)
        rc = sx_rd_u8(&r, &tag);
    if (rc)
        return rc;
    switch (tag) {
    case 'C':
        rc = sx_rd_maybe(&r, &present);
        if (rc == 0 && present) {
            out->has_e2e = 1;
            rc = sx_e2e_params_read(&r, &out->e2e);
        }
        break;
    case 'M':
        break;
    case 'I':
        rc = sx_rd_large(&r, &out->conn_req.p, &out->conn_req.n);
        if (rc == 0)
            rc = check_invitation_link(out->conn_req.p, out->conn_req.n);
        break;
    case 'R':
        out->has_e2e = 1;
        rc = sx_e2e_params_read(&r, &out->e2e);
        break;
    default:
        return SIMPLEX_ERR_PARSE;
    }
    if (rc)
        return rc;
    out->type = (sx_agent_env_type)tag;
    sx_rd_tail(&r, &out->body.p, &out->body.n);
    return 0;
}

/* ---- AMessage ---- */

int sx_amessage_encode(sx_wr *w, const sx_amessage *m)
{
    size_t i;

    if (!w || !m)
        return SIMPLEX_ERR_INVALID_ARG;
    switch (m->type) {
    case SX_AMSG_HELLO:
        sx_wr_u8(w, 'H');
        break;
    case SX_AMSG_A_MSG:
        sx_wr_u8(w, 'M');
        sx_wr_raw(w, m->body.p, m->body.n);
        break;
    case SX_AMSG_A_RCVD:
        sx_wr_u8(w, 'V');
        if (check_list(w, m->n))
            break;
        for (i = 0; i < m->n; i++) {
            const sx_agent_receipt *rc = &m->u.rcvd[i];
            sx_wr_i64(w, rc->agent_msg_id);
            sx_wr_short(w, rc->msg_hash.p, rc->msg_hash.n);
            sx_wr_large(w, rc->rcpt_info.p, rc->rcpt_info.n);
        }
        break;
    case SX_AMSG_A_QCONT:
        sx_wr_str(w, "QC");
        wr_qaddr(w, &m->u.qaddr[0]);
        break;
    case SX_AMSG_QADD:
        sx_wr_str(w, "QA");
        if (check_list(w, m->n))
            break;
        for (i = 0; i < m->n; i++) {
            sx_queue_uri_encode(w, &m->u.qadd[i].uri);
            sx_wr_maybe(w, m->u.qadd[i].has_replaced != 0);
            if (m->u.qadd[i].has_replaced)
                wr_qaddr(w, &m->u.qadd[i].replaced);
        }
        break;
    case SX_AMSG_QKEY:
        sx_wr_str(w, "QK");
        if (check_list(w, m->n))
            break;
        for (i = 0; i < m->n; i++) {
            sx_queue_info_encode(w, &m->u.qkey[i].info);
            wr_auth_key(w, m->u.qkey[i].key_alg, m->u.qkey[i].key);
        }
        break;
    case SX_AMSG_QUSE:
        sx_wr_str(w, "QU");
        if (check_list(w, m->n))
            break;
        for (i = 0; i < m->n; i++) {
            wr_qaddr(w, &m->u.quse[i].addr);
            sx_wr_bool(w, m->u.quse[i].primary);
        }
        break;
    case SX_AMSG_QTEST:
        sx_wr_str(w, "QT");
        if (check_list(w, m->n))
            break;
        for (i = 0; i < m->n; i++)
            wr_qaddr(w, &m->u.qaddr[i]);
        break;
    case SX_AMSG_EREADY:
        sx_wr_u8(w, 'E');
        sx_wr_i64(w, m->last_msg_id);
        break;
    default:
        return SIMPLEX_ERR_INVALID_ARG;
    }
    return sx_wr_error(w);
}

static int rd_amessage(sx_rd *r, sx_amessage *m)
{
    uint8_t t, t2;
    size_t i;
    int rc, present;

    rc = sx_rd_u8(r, &t);
    if (rc)
        return rc;
    switch (t) {
    case 'H':
        m->type = SX_AMSG_HELLO;
        return 0;
    case 'M':
        m->type = SX_AMSG_A_MSG;
        sx_rd_tail(r, &m->body.p, &m->body.n);
        return 0;
    case 'V':
        m->type = SX_AMSG_A_RCVD;
        rc = rd_list(r, &m->n);
        for (i = 0; rc == 0 && i < m->n; i++) {
            sx_agent_receipt *rc_ = &m->u.rcvd[i];
            rc = sx_rd_i64(r, &rc_->agent_msg_id);
            if (rc == 0)
                rc = sx_rd_short(r, &rc_->msg_hash.p, &rc_->msg_hash.n);
            if (rc == 0)
                rc = sx_rd_large(r, &rc_->rcpt_info.p, &rc_->rcpt_info.n);
        }
        return rc;
    case 'E':
        m->type = SX_AMSG_EREADY;
        return sx_rd_i64(r, &m->last_msg_id);
    case 'Q':
        break;
    default:
        return SIMPLEX_ERR_PARSE;
    }
    rc = sx_rd_u8(r, &t2);
    if (rc)
        return rc;
    switch (t2) {
    case 'C':
        m->type = SX_AMSG_A_QCONT;
        m->n = 1;
        return rd_qaddr(r, &m->u.qaddr[0]);
    case 'A':
        m->type = SX_AMSG_QADD;
        rc = rd_list(r, &m->n);
        for (i = 0; rc == 0 && i < m->n; i++) {
            rc = sx_queue_uri_decode(r, &m->u.qadd[i].uri);
            if (rc == 0)
                rc = sx_rd_maybe(r, &present);
            if (rc == 0 && present) {
                m->u.qadd[i].has_replaced = 1;
                rc = rd_qaddr(r, &m->u.qadd[i].replaced);
            }
        }
        return rc;
    case 'K':
        m->type = SX_AMSG_QKEY;
        rc = rd_list(r, &m->n);
        for (i = 0; rc == 0 && i < m->n; i++) {
            rc = sx_queue_info_decode(r, &m->u.qkey[i].info);
            if (rc == 0)
                rc = rd_auth_key(r, &m->u.qkey[i].key_alg, m->u.qkey[i].key);
        }
        return rc;
    case 'U':
        m->type = SX_AMSG_QUSE;
        rc = rd_list(r, &m->n);
        for (i = 0; rc == 0 && i < m->n; i++) {
            rc = rd_qaddr(r, &m->u.quse[i].addr);
            if (rc == 0)
                rc = sx_rd_bool(r, &m->u.quse[i].primary);
        }
        return rc;
    case 'T':
        m->type = SX_AMSG_QTEST;
        rc = rd_list(r, &m->n);
        for (i = 0; rc == 0 && i < m->n; i++)
            rc = rd_qaddr(r, &m->u.qaddr[i]);
        return rc;
    default:
        return SIMPLEX_ERR_PARSE;
    }
}

int sx_amessage_read(sx_rd *r, sx_amessage *out)
{
    size_t start;
    int rc;

    if (!r || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    start = r->pos;
    memset(out, 0, sizeof *out);
    rc = rd_amessage(r, out);
    if (rc)
        r->pos = start;
    return rc;
}

/* ---- AgentMessage ---- */

int sx_agent_message_encode(sx_wr *w, const sx_agent_message *m)
{
    size_t i;

    if (!w || !m)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_u8(w, (uint8_t)m->type);
    switch (m->type) {
    case SX_AGENT_MSG_CONN_INFO:
    case SX_AGENT_MSG_RATCHET_INFO:
        sx_wr_raw(w, m->info.p, m->info.n);
        break;
    case SX_AGENT_MSG_CONN_INFO_REPLY:
        if (check_list(w, m->n_queues))
            break;
        for (i = 0; i < m->n_queues; i++)
            sx_queue_info_encode(w, &m->queues[i]);
        sx_wr_raw(w, m->info.p, m->info.n);
        break;
    case SX_AGENT_MSG_MESSAGE:
        sx_wr_i64(w, m->snd_msg_id);
        sx_wr_short(w, m->prev_msg_hash.p, m->prev_msg_hash.n);
        return sx_amessage_encode(w, &m->msg);
    default:
        return SIMPLEX_ERR_INVALID_ARG;
    }
    return sx_wr_error(w);
}

int sx_agent_message_decode(sx_agent_message *out, const uint8_t *p,
                            size_t n)
{
    sx_rd r;
    uint8_t t;
    size_t i;
    int rc;

    if (!out || (!p && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    rc = sx_rd_u8(&r, &t);
    if (rc)
        return rc;
    switch (t) {
    case 'I':
    case 'R':
        sx_rd_tail(&r, &out->info.p, &out->info.n);
        break;
    case 'D':
        rc = rd_list(&r, &out->n_queues);
        for (i = 0; rc == 0 && i < out->n_queues; i++)
            rc = sx_queue_info_decode(&r, &out->queues[i]);
        if (rc)
            return rc;
        sx_rd_tail(&r, &out->info.p, &out->info.n);
        break;
    case 'M':
        rc = sx_rd_i64(&r, &out->snd_msg_id);
        if (rc == 0)
            rc = sx_rd_short(&r, &out->prev_msg_hash.p,
                             &out->prev_msg_hash.n);
        if (rc == 0)
            rc = sx_amessage_read(&r, &out->msg);
        if (rc == 0)
            rc = sx_rd_end(&r);
        if (rc)
            return rc;
        break;
    default:
        return SIMPLEX_ERR_PARSE;
    }
    out->type = (sx_agent_msg_type)t;
    return 0;
}

/* ---- hash chain ---- */

int sx_agent_msg_hash(uint8_t out[SX_SHA256_BYTES], const uint8_t *agent_msg,
                      size_t n)
{
    if (!out || (!agent_msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    return sx_sha256(out, agent_msg, n);
}

int sx_agent_msg_encode_chained(sx_wr *w, uint8_t hash_out[SX_SHA256_BYTES],
                                int64_t snd_msg_id, const uint8_t *prev,
                                size_t prev_len, const sx_amessage *msg)
{
    sx_agent_message *m;
    size_t start;
    int rc;

    if (!w || !msg || (prev_len && !prev) ||
        (prev_len != 0 && prev_len != SX_SHA256_BYTES))
        return SIMPLEX_ERR_INVALID_ARG;
    m = sx_malloc(sizeof *m);
    if (!m)
        return SIMPLEX_ERR_NOMEM;
    memset(m, 0, sizeof *m);
    m->type = SX_AGENT_MSG_MESSAGE;
    m->snd_msg_id = snd_msg_id;
    m->prev_msg_hash.p = prev;
    m->prev_msg_hash.n = prev_len;
    m->msg = *msg;
    start = w->len;
    rc = sx_agent_message_encode(w, m);
    sx_free(m);
    if (rc == 0 && hash_out)
        rc = sx_agent_msg_hash(hash_out, w->p + start, w->len - start);
    return rc;
}
