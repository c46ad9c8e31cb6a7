/*
 * smp-test-server command processing, following the reference server
 * (simplexmq 6.5.5.0 Server.hs): queue creation, securing, subscriptions,
 * GET/ACK, SEND, deletion, notifier credentials, links, queue info.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cmd.h"

int g_ignore_sub;

/* ---- processing ---- */



int sc_max_msg_len(uint16_t v)
{
    return v >= SX_SMP_V_ENCRYPTED_BLOCK ? 16048
         : v >= SX_SMP_V_SENDING_PROXY   ? 16064
                                         : 16088;
}


static void do_new(srv_conn *c, const item *it, srv_resps *r)
{
    const sx_smp_new *nq = &it->cmd.new_q;
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    uint8_t pub[32], priv[32], npub[32], npriv[32], nid[SRV_ID_BYTES];
    sx_smp_msg m;
    srv_queue *q;

    uint8_t link_id[SRV_ID_BYTES];
    sx_smp_bytes lid = {NULL, 0};

    if (nq->qr_has_data) {
        /* the client's sender id must be the first 24 bytes of
         * SHA3-384(corrId) (against an id oracle); collisions are not
         * retried: AUTH */
        uint8_t h[48];
        unsigned int hl = 0;
        if (EVP_Digest(corr.p, corr.n, h, &hl, EVP_sha3_384(), NULL) != 1 ||
            nq->sender_id.n != SRV_ID_BYTES ||
            memcmp(nq->sender_id.p, h, SRV_ID_BYTES) != 0) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_CMD, SX_SMP_CMDERR_PROHIBITED);
            return;
        }
        if (nq->qr_mode == SX_SMP_QM_CONTACT) {
            lid = nq->link_id;
        } else {
            sx_random(link_id, sizeof link_id);
            lid = sc_bytes(link_id, sizeof link_id);
        }
        q = lid.n && lid.n <= 255 && !srv_q_by_link(lid.p, lid.n)
                ? srv_q_new_with(nq->sender_id.p)
                : NULL;
        if (!q) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
            return;
        }
    } else {
        q = srv_q_new();
        if (!q) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_INTERNAL, 0);
            return;
        }
    }
    sx_x25519_keypair(pub, priv);
    if (sx_x25519_dh(q->rcv_dh_secret, nq->rcv_dh_key.raw, priv) < 0) {
        srv_q_delete(q);
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_INTERNAL, 0);
        return;
    }
    q->rcv_keys[0] = nq->rcv_auth_key;
    q->n_rcv_keys = 1;
    q->mode = (char)nq->qr_mode;
    srv_q_log_new(q);
    if (lid.n)
        srv_q_set_link(q, lid.p, lid.n, nq->link_data.fixed_data.p,
                       nq->link_data.fixed_data.n, nq->link_data.user_data.p,
                       nq->link_data.user_data.n);
    sx_smp_msg_init(&m, SX_SMP_MSG_IDS);
    if (nq->has_ntf) {
        int tries = 0;
        do
            sx_random(nid, sizeof nid);
        while ((srv_q_by_rid(nid, sizeof nid) || srv_q_by_sid(nid, sizeof nid) ||
                srv_q_by_nid(nid, sizeof nid)) && ++tries < 3);
        uint8_t secret[32];
        sx_x25519_keypair(npub, npriv);
        if (sx_x25519_dh(secret, nq->ntf_dh_key.raw, npriv) == 0) {
            srv_q_set_ntf(q, nid, &nq->ntf_auth_key, secret);
            m.ids.has_ntf = 1;
            m.ids.ntf_id = sc_bytes(q->nid, SRV_ID_BYTES);
            sx_smp_key_set(&m.ids.ntf_dh_key, SX_KEY_X25519, npub);
        }
        sx_memzero(secret, sizeof secret);
    }
    if (nq->sub_mode == 'S') {
        sc_sub_add(c, q, 0);
        sc_set_subscriber(q, c);
    }
    m.ids.rcv_id = sc_bytes(q->rid, SRV_ID_BYTES);
    m.ids.snd_id = sc_bytes(q->sid, SRV_ID_BYTES);
    sx_smp_key_set(&m.ids.srv_dh_key, SX_KEY_X25519, pub);
    m.ids.queue_mode = nq->qr_mode;
    if (q->has_link) {
        m.ids.has_link_id = 1;
        m.ids.link_id = sc_bytes(q->link_id, q->link_len);
    }
    srv_resp_add(r, c, corr, ent, &m);
    sx_memzero(priv, sizeof priv);
    sx_memzero(npriv, sizeof npriv);
}

/* SUB: subscribeQueueAndDeliver. */
static void do_sub(srv_conn *c, srv_queue *q, const item *it, out *o)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    srv_sub *s = sc_sub_find(c, q);
    sx_smp_msg m;
    if (s && s->prohibit) {
        sc_resp_err(&o->resps, c, corr, ent, SX_SMP_ERR_CMD,
                 SX_SMP_CMDERR_PROHIBITED);
        return;
    }
    if (s) {
        s->has_delivered = 0;
    } else {
        s = sc_sub_add(c, q, 0);
        sc_set_subscriber(q, c);
    }
    sc_resp_simple(&o->resps, c, corr, ent, SX_SMP_MSG_SOK);
    if (q->head && sc_make_msg(&m, o->enc, q, q->head) == 0) {
        srv_resp_add(&o->msgs, c, SC_NO_BYTES, ent, &m);
        sc_set_delivered(s, q->head);
    }
}

static void do_get(srv_conn *c, srv_queue *q, const item *it, srv_resps *r,
                   uint8_t *enc)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    srv_sub *s = sc_sub_find(c, q);
    sx_smp_msg m;
    if (s && !s->prohibit) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_CMD, SX_SMP_CMDERR_PROHIBITED);
        return;
    }
    if (!s)
        s = sc_sub_add(c, q, 1);
    s->has_delivered = 0;
    if (q->head && sc_make_msg(&m, enc, q, q->head) == 0) {
        sc_set_delivered(s, q->head);
        srv_resp_add(r, c, corr, ent, &m);
    } else {
        sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
    }
}

static void do_ack(srv_conn *c, srv_queue *q, const item *it, srv_resps *r,
                   uint8_t *enc)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    sx_smp_bytes id = it->cmd.id;
    srv_sub *s = sc_sub_find(c, q);
    sx_smp_msg m;
    if (!s || !s->has_delivered ||
        (id.n != 0 && (id.n != SRV_ID_BYTES ||
                       memcmp(id.p, s->delivered, SRV_ID_BYTES) != 0))) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_NO_MSG, 0);
        return;
    }
    s->has_delivered = 0;
    srv_q_del_head(q, id.p, id.n);
    if (!s->prohibit && q->head && sc_make_msg(&m, enc, q, q->head) == 0) {
        sc_set_delivered(s, q->head);
        srv_resp_add(r, c, corr, ent, &m);
        return;
    }
    sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
}

static void do_send(srv_conn *c, srv_queue *q, const item *it, srv_resps *r)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    const sx_smp_cmd *cmd = &it->cmd;
    srv_msg *msg;
    int was_empty;

    if (cmd->body.n > (size_t)sc_max_msg_len(c->version)) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_LARGE_MSG, 0);
        return;
    }
    if (q->off) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
        return;
    }
    if (q->has_link && sc_is_secured_msg(q))
        srv_q_del_link(q);
    srv_q_expire(q, srv_now() - SRV_MSG_TTL);
    if (!srv_q_write(q, cmd->body.p, cmd->body.n, cmd->notification,
                     &was_empty, &msg)) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_QUOTA, 0);
        return;
    }
    if (was_empty)
        sc_try_deliver(q, msg);
    if (cmd->notification)
        sc_notify(q, msg);
    sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
}

static void do_del(srv_conn *c, srv_queue *q, const item *it, srv_resps *r)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    srv_conn *other = q->subscriber, *nsub = q->ntf_subscriber;
    sx_smp_msg m;
    sx_smp_msg_init(&m, SX_SMP_MSG_DELD);
    sc_sub_remove(c, q);
    if (other && other != c && !other->closing) {
        sc_sub_remove(other, q);
        sc_send_one(other, sc_bytes(q->rid, SRV_ID_BYTES), &m);
    }
    if (q->has_ntf && nsub && nsub != c && !nsub->closing)
        sc_send_one(nsub, sc_bytes(q->nid, SRV_ID_BYTES), &m);
    /* GET-mode subscriptions of other connections point at q too */
    sc_q_unsubscribe_all(q);
    srv_q_delete(q);
    sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
}

static void do_nkey(srv_conn *c, srv_queue *q, const item *it, srv_resps *r)
{
    uint8_t pub[32], priv[32], secret[32], nid[SRV_ID_BYTES];
    sx_smp_msg m;
    int tries = 0;
    srv_conn *prev = q->has_ntf ? q->ntf_subscriber : NULL;
    do
        sx_random(nid, sizeof nid);
    while ((srv_q_by_rid(nid, sizeof nid) || srv_q_by_sid(nid, sizeof nid) ||
            srv_q_by_nid(nid, sizeof nid)) && ++tries < 3);
    sx_x25519_keypair(pub, priv);
    if (sx_x25519_dh(secret, it->cmd.dh_key.raw, priv) < 0) {
        sc_resp_err(r, c, it->t.corr_id, it->t.entity_id, SX_SMP_ERR_INTERNAL, 0);
        return;
    }
    /* the replaced notifier id is deleted: its subscriber gets DELD */
    if (prev) {
        /* DELD goes only to another connection (checkAnotherClient) */
        sx_smp_msg d;
        sx_smp_msg_init(&d, SX_SMP_MSG_DELD);
        sc_ntf_sub_remove(prev, q);
        if (prev != c && !prev->closing)
            sc_send_one(prev, sc_bytes(q->nid, SRV_ID_BYTES), &d);
    }
    q->ntf_subscriber = NULL;
    srv_q_set_ntf(q, nid, &it->cmd.key, secret);
    sx_smp_msg_init(&m, SX_SMP_MSG_NID);
    m.id = sc_bytes(q->nid, SRV_ID_BYTES);
    sx_smp_key_set(&m.dh_key, SX_KEY_X25519, pub);
    srv_resp_add(r, c, it->t.corr_id, it->t.entity_id, &m);
    sx_memzero(priv, sizeof priv);
    sx_memzero(secret, sizeof secret);
}

static void do_ndel(srv_conn *c, srv_queue *q, const item *it, srv_resps *r)
{
    if (q->has_ntf) {
        srv_conn *prev = q->ntf_subscriber;
        if (prev) {
            sx_smp_msg d;
            sx_smp_msg_init(&d, SX_SMP_MSG_DELD);
            sc_ntf_sub_remove(prev, q);
            if (prev != c && !prev->closing)
                sc_send_one(prev, sc_bytes(q->nid, SRV_ID_BYTES), &d);
        }
        srv_q_del_ntf(q);
    }
    sc_resp_simple(r, c, it->t.corr_id, it->t.entity_id, SX_SMP_MSG_OK);
}

static void do_nsub(srv_conn *c, srv_queue *q, const item *it, out *o)
{
    srv_resps *r = &o->resps;
    srv_conn *prev = q->ntf_subscriber;
    sc_ntf_sub_add(c, q);
    q->ntf_subscriber = c;
    if (prev && prev != c && !prev->closing) {
        sx_smp_msg m;
        sx_smp_msg_init(&m, SX_SMP_MSG_END);
        sc_ntf_sub_remove(prev, q);
        sc_send_one(prev, sc_bytes(q->nid, SRV_ID_BYTES), &m);
    }
    sc_resp_simple(r, c, it->t.corr_id, it->t.entity_id, SX_SMP_MSG_SOK);
    /* notifications stored while nobody was subscribed follow the SOK */
    sc_ntfs_flush(q, &o->ntfs);
}

/* QUE: INFO with the reference's QueueInfo JSON (aeson field order,
 * Nothing fields omitted, ids in standard base64). Message timestamps are
 * whole seconds here. */
static void json_b64(sx_wr *w, const uint8_t *p, size_t n)
{
    unsigned char b64[4 * ((SRV_ID_BYTES + 2) / 3) + 1];
    int len = EVP_EncodeBlock(b64, p, (int)n);
    sx_wr_u8(w, '"');
    sx_wr_raw(w, b64, len > 0 ? (size_t)len : 0);
    sx_wr_u8(w, '"');
}

static void do_que(srv_conn *c, srv_queue *q, const item *it, srv_resps *r)
{
    srv_sub *s = sc_sub_find(c, q);
    sx_wr w;
    sx_smp_msg m;
    char buf[96];
    sx_wr_init(&w);
    sx_wr_str(&w, q->has_snd_key ? "{\"qiSnd\":true" : "{\"qiSnd\":false");
    sx_wr_str(&w, q->has_ntf ? ",\"qiNtf\":true" : ",\"qiNtf\":false");
    if (s) {
        sx_wr_str(&w, s->prohibit ? ",\"qiSub\":{\"qSubThread\":\"prohibitSub\""
                                  : ",\"qiSub\":{\"qSubThread\":\"noSub\"");
        if (s->has_delivered) {
            sx_wr_str(&w, ",\"qDelivered\":");
            json_b64(&w, s->delivered, SRV_ID_BYTES);
        }
        sx_wr_u8(&w, '}');
    }
    snprintf(buf, sizeof buf, ",\"qiSize\":%zu", q->size);
    sx_wr_str(&w, buf);
    if (q->head) {
        struct tm tm;
        time_t ts = (time_t)q->head->ts;
        sx_wr_str(&w, ",\"qiMsg\":{\"msgId\":");
        json_b64(&w, q->head->id, SRV_ID_BYTES);
        gmtime_r(&ts, &tm);
        strftime(buf, sizeof buf, ",\"msgTs\":\"%Y-%m-%dT%H:%M:%SZ\"", &tm);
        sx_wr_str(&w, buf);
        sx_wr_str(&w, q->head->quota ? ",\"msgType\":\"quota\"}"
                                     : ",\"msgType\":\"message\"}");
    }
    sx_wr_u8(&w, '}');
    sx_smp_msg_init(&m, SX_SMP_MSG_INFO);
    m.body.p = w.p;
    m.body.n = w.len;
    if (sx_wr_error(&w) == 0)
        srv_resp_add(r, c, it->t.corr_id, it->t.entity_id, &m);
    else
        sc_resp_err(r, c, it->t.corr_id, it->t.entity_id, SX_SMP_ERR_INTERNAL, 0);
    sx_wr_free(&w);
}


void sc_process(srv_conn *c, const item *it, out *o)
{
    const sx_smp_cmd *cmd = &it->cmd;
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    srv_resps *r = &o->resps;
    party p = sc_cmd_party(cmd->tag);
    srv_queue *q = NULL;

    if (p == P_RECIPIENT || p == P_SENDER || p == P_NOTIFIER ||
        p == P_SENDER_LINK) {
        /* looked up again: an earlier command of the batch may have
         * deleted it (the reference then finds no queue record: AUTH) */
        q = sc_lookup(p, ent);
        if (!q) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
            return;
        }
    }
    switch (cmd->tag) {
    case SX_SMP_CMD_NEW:
        do_new(c, it, r);
        break;
    case SX_SMP_CMD_PING:
        sc_resp_simple(r, c, corr, SC_NO_BYTES, SX_SMP_MSG_PONG);
        break;
    case SX_SMP_CMD_SUB:
        if (!g_ignore_sub) /* else: no answer, no subscription */
            do_sub(c, q, it, o);
        break;
    case SX_SMP_CMD_GET:
        do_get(c, q, it, r, o->enc);
        break;
    case SX_SMP_CMD_ACK:
        do_ack(c, q, it, r, o->enc);
        break;
    case SX_SMP_CMD_KEY:
        if (q->has_snd_key && !sc_key_eq(&q->snd_key, &cmd->key)) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
        } else {
            if (!q->has_snd_key)
                srv_q_secure(q, &cmd->key);
            sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
        }
        break;
    case SX_SMP_CMD_SKEY:
        if (q->mode != 'M' ||
            (q->has_snd_key && !sc_key_eq(&q->snd_key, &cmd->key))) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
        } else {
            if (!q->has_snd_key)
                srv_q_secure(q, &cmd->key);
            sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
        }
        break;
    case SX_SMP_CMD_SEND:
        do_send(c, q, it, r);
        break;
    case SX_SMP_CMD_OFF:
        srv_q_suspend(q);
        sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
        break;
    case SX_SMP_CMD_DEL:
        do_del(c, q, it, r);
        break;
    case SX_SMP_CMD_NKEY:
        do_nkey(c, q, it, r);
        break;
    case SX_SMP_CMD_NDEL:
        do_ndel(c, q, it, r);
        break;
    case SX_SMP_CMD_NSUB:
        do_nsub(c, q, it, o);
        break;
    case SX_SMP_CMD_QUE:
        do_que(c, q, it, r);
        break;
    case SX_SMP_CMD_LDEL:
        if (q->has_link)
            srv_q_del_link(q);
        sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
        break;
    case SX_SMP_CMD_LSET: {
        const sx_smp_link_data *d = &cmd->link_data;
        int same_id = q->has_link && q->link_len == cmd->id.n &&
                      memcmp(q->link_id, cmd->id.p, cmd->id.n) == 0;
        if (sc_is_secured_msg(q) || (q->has_link && !same_id) ||
            (q->has_link && (q->fixed_len != d->fixed_data.n ||
                             memcmp(q->fixed_data, d->fixed_data.p,
                                    q->fixed_len) != 0)) ||
            cmd->id.n == 0) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
            break;
        }
        srv_q_set_link(q, cmd->id.p, cmd->id.n, d->fixed_data.p,
                       d->fixed_data.n, d->user_data.p, d->user_data.n);
        sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
        break;
    }
    case SX_SMP_CMD_LKEY:
    case SX_SMP_CMD_LGET: {
        sx_smp_msg m;
        if (cmd->tag == SX_SMP_CMD_LKEY) {
            if (q->mode != 'M' ||
                (q->has_snd_key && !sc_key_eq(&q->snd_key, &cmd->key))) {
                sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
                break;
            }
            if (!q->has_snd_key)
                srv_q_secure(q, &cmd->key);
        } else if (!sc_is_contact(q)) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
            break;
        }
        sx_smp_msg_init(&m, SX_SMP_MSG_LNK);
        m.id = sc_bytes(q->sid, SRV_ID_BYTES);
        m.link_data.fixed_data = sc_bytes(q->fixed_data, q->fixed_len);
        m.link_data.user_data = sc_bytes(q->user_data, q->user_len);
        srv_resp_add(r, c, corr, ent, &m);
        break;
    }
    case SX_SMP_CMD_RKEY:
        if (q->mode != 'C') {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_AUTH, 0);
        } else {
            srv_q_rkey(q, cmd->keys, cmd->n_keys);
            sc_resp_simple(r, c, corr, ent, SX_SMP_MSG_OK);
        }
        break;
    case SX_SMP_CMD_PRXY:
        /* without --proxy: PROXY BASIC_AUTH (proxy.c) */
        sc_do_prxy(c, it, r);
        break;
    case SX_SMP_CMD_PFWD:
        /* without --proxy or a relay session: PROXY NO_SESSION */
        sc_do_pfwd(c, it, r);
        break;
    case SX_SMP_CMD_RFWD:
        sc_do_rfwd(c, it, r);
        break;
    default:
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_CMD, SX_SMP_CMDERR_PROHIBITED);
        break;
    }
}
