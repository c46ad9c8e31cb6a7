/*
 * smp-test-server responses, subscriptions and message delivery (END,
 * MSG, NMSG) as the reference server's subscriber bookkeeping does them.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cmd.h"

/* ---- responses ---- */

void srv_resps_free(srv_resps *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].p);
    free(r->v);
    memset(r, 0, sizeof *r);
}

void sc_resps_push(srv_resps *r, uint8_t *p, size_t n)
{
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 8;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
    }
    r->v[r->n].p = p;
    r->v[r->n].n = n;
    r->n++;
}

void srv_resp_add(srv_resps *r, const srv_conn *c, sx_smp_bytes corr_id,
                  sx_smp_bytes entity, const sx_smp_msg *m)
{
    sx_wr cmd, body, t;
    sx_smp_params prm = {c->version, {c->session_id, c->session_len}};
    uint8_t *taken;
    size_t n;

    sx_wr_init(&cmd);
    sx_wr_init(&body);
    sx_wr_init(&t);
    if (sx_smp_msg_encode(&cmd, c->version, m) == 0 &&
        sx_smp_trans_body_encode(&body, &prm, corr_id, entity, cmd.p,
                                 cmd.len) == 0 &&
        sx_smp_trans_encode(&t, c->version, NULL, NULL, body.p, body.len) == 0 &&
        sx_wr_take(&t, &taken, &n) == 0) {
        /* moved to plain malloc memory for the response list */
        uint8_t *p = malloc(n ? n : 1);
        if (!p)
            abort();
        memcpy(p, taken, n);
        sx_free_secret(taken, n);
        sc_resps_push(r, p, n);
    }
    sx_wr_free(&cmd);
    sx_wr_free(&body);
    sx_wr_free(&t);
}


void sc_resp_err(srv_resps *r, const srv_conn *c, sx_smp_bytes corr,
                     sx_smp_bytes ent, sx_smp_err_type type, int sub)
{
    sx_smp_msg m;
    sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
    m.err.type = type;
    if (type == SX_SMP_ERR_CMD)
        m.err.cmd = (sx_smp_cmd_err)sub;
    else if (type == SX_SMP_ERR_PROXY)
        m.err.proxy = (sx_smp_proxy_err)sub;
    srv_resp_add(r, c, corr, ent, &m);
}

void sc_resp_simple(srv_resps *r, const srv_conn *c, sx_smp_bytes corr,
                        sx_smp_bytes ent, sx_smp_msg_tag tag)
{
    sx_smp_msg m;
    sx_smp_msg_init(&m, tag);
    srv_resp_add(r, c, corr, ent, &m);
}

/* An event (END, DELD) or a delivered MSG for another connection. */
void sc_send_one(srv_conn *c, sx_smp_bytes ent, const sx_smp_msg *m)
{
    srv_resps r = {0};
    srv_resp_add(&r, c, SC_NO_BYTES, ent, m);
    srv_conn_send(c, &r);
    srv_resps_free(&r);
}

sx_smp_bytes sc_bytes(const uint8_t *p, size_t n)
{
    sx_smp_bytes b = {p, n};
    return b;
}

/* ---- subscriptions ----
 * Each connection has one chained hash table per kind (SUB/GET and NSUB),
 * keyed by the queue's creation seq (unique while the queue lives), in
 * store.c's style: a power-of-two bucket array grown at half load. Each
 * subscription is also in its queue's list of that kind, so a deleted
 * queue drops every connection's subscription without a scan of the
 * connections. */

static uint64_t sub_hash(const srv_queue *q)
{
    uint64_t h = q->seq; /* the final mix of store.c's id_hash */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h;
}

static srv_subs *subs_of(srv_conn *c, int kind)
{
    return kind == SRV_SUB_NTF ? &c->ntf_subs : &c->subs;
}

static void subs_grow(srv_subs *t)
{
    size_t cap = t->cap ? t->cap * 2 : 16;
    srv_sub **b = calloc(cap, sizeof *b);
    if (!b)
        abort();
    for (size_t i = 0; i < t->cap; i++)
        while (t->b[i]) {
            srv_sub *s = t->b[i];
            size_t j = sub_hash(s->q) & (cap - 1);
            t->b[i] = s->h_next;
            s->h_next = b[j];
            b[j] = s;
        }
    free(t->b);
    t->b = b;
    t->cap = cap;
}

static srv_sub *subs_find(const srv_subs *t, const srv_queue *q)
{
    if (t->n == 0)
        return NULL;
    for (srv_sub *s = t->b[sub_hash(q) & (t->cap - 1)]; s; s = s->h_next)
        if (s->q == q)
            return s;
    return NULL;
}

static srv_sub *subs_add(srv_conn *c, int kind, srv_queue *q)
{
    srv_subs *t = subs_of(c, kind);
    srv_sub *s = calloc(1, sizeof *s);
    size_t i;
    if (!s)
        abort();
    if (t->n >= t->cap / 2)
        subs_grow(t);
    s->c = c;
    s->q = q;
    i = sub_hash(q) & (t->cap - 1);
    s->h_next = t->b[i];
    t->b[i] = s;
    t->n++;
    s->q_next = q->subs[kind];
    if (q->subs[kind])
        q->subs[kind]->q_prev = s;
    q->subs[kind] = s;
    return s;
}

/* Unlinks s from its connection's table and its queue's list; frees it. */
static void sub_drop(int kind, srv_sub *s)
{
    srv_subs *t = subs_of(s->c, kind);
    srv_queue *q = s->q;
    for (srv_sub **pp = &t->b[sub_hash(q) & (t->cap - 1)]; *pp;
         pp = &(*pp)->h_next)
        if (*pp == s) {
            *pp = s->h_next;
            t->n--;
            break;
        }
    if (s->q_prev)
        s->q_prev->q_next = s->q_next;
    else
        q->subs[kind] = s->q_next;
    if (s->q_next)
        s->q_next->q_prev = s->q_prev;
    free(s);
}

srv_sub *sc_sub_find(srv_conn *c, const srv_queue *q)
{
    return subs_find(&c->subs, q);
}

srv_sub *sc_sub_add(srv_conn *c, srv_queue *q, int prohibit)
{
    srv_sub *s = subs_add(c, SRV_SUB_RCV, q);
    s->prohibit = prohibit;
    return s;
}

void sc_sub_remove(srv_conn *c, const srv_queue *q)
{
    srv_sub *s = subs_find(&c->subs, q);
    if (s)
        sub_drop(SRV_SUB_RCV, s);
}

void sc_ntf_sub_add(srv_conn *c, srv_queue *q)
{
    if (!subs_find(&c->ntf_subs, q))
        subs_add(c, SRV_SUB_NTF, q);
}

void sc_ntf_sub_remove(srv_conn *c, const srv_queue *q)
{
    srv_sub *s = subs_find(&c->ntf_subs, q);
    if (s)
        sub_drop(SRV_SUB_NTF, s);
}

void sc_q_unsubscribe_all(srv_queue *q)
{
    for (int k = SRV_SUB_RCV; k <= SRV_SUB_NTF; k++)
        while (q->subs[k])
            sub_drop(k, q->subs[k]);
}

/* A queue's subscriber (ntf_subscriber) is always a connection with a
 * subscription of that kind to it: SUB and NEW add the subscription before
 * setting the subscriber, NSUB likewise, and a subscription is dropped only
 * with the subscriber changed or cleared (END, DELD, NKEY, NDEL, DEL). So
 * the connection's own subscriptions cover every queue pointing at it. */
void srv_conn_unsubscribe(srv_conn *c)
{
    for (int k = SRV_SUB_RCV; k <= SRV_SUB_NTF; k++) {
        srv_subs *t = subs_of(c, k);
        for (size_t i = 0; i < t->cap; i++)
            while (t->b[i]) {
                srv_queue *q = t->b[i]->q;
                if (k == SRV_SUB_RCV && q->subscriber == c)
                    q->subscriber = NULL;
                if (k == SRV_SUB_NTF && q->ntf_subscriber == c)
                    q->ntf_subscriber = NULL;
                sub_drop(k, t->b[i]);
            }
        free(t->b);
        *t = (srv_subs){0};
    }
}

/* The queue's subscriber becomes c; another connected subscriber gets
 * END and loses its subscription (endSub). */
void sc_set_subscriber(srv_queue *q, srv_conn *c)
{
    srv_conn *prev = q->subscriber;
    q->subscriber = c;
    if (prev && prev != c && !prev->closing) {
        sx_smp_msg m;
        sc_sub_remove(prev, q);
        sx_smp_msg_init(&m, SX_SMP_MSG_END);
        sc_send_one(prev, sc_bytes(q->rid, SRV_ID_BYTES), &m);
    }
}

/* ---- messages ---- */

/* MSG with the body encrypted to the recipient (encryptMsg). */
int sc_make_msg(sx_smp_msg *m, uint8_t *enc, const srv_queue *q,
                    const srv_msg *msg)
{
    sx_smp_rcv_body b;
    sx_wr w;
    int rc;
    memset(&b, 0, sizeof b);
    b.quota = msg->quota;
    b.ts = msg->ts;
    b.notification = msg->notification;
    b.body = sc_bytes(msg->body, msg->len);
    sx_wr_init(&w);
    rc = sx_smp_rcv_body_encode(&w, &b);
    if (rc == 0)
        rc = sx_smp_msg_body_encrypt(enc, q->rcv_dh_secret,
                                     sc_bytes(msg->id, SRV_ID_BYTES), w.p, w.len);
    sx_wr_free(&w);
    sx_smp_msg_init(m, SX_SMP_MSG_MSG);
    m->id = sc_bytes(msg->id, SRV_ID_BYTES);
    m->body = sc_bytes(enc, SX_SMP_RCV_MSG_PADDED + SX_BOX_TAG_BYTES);
    return rc;
}


void sc_set_delivered(srv_sub *s, const srv_msg *msg)
{
    s->has_delivered = 1;
    memcpy(s->delivered, msg->id, SRV_ID_BYTES);
}

/* tryDeliverMessage: to the subscriber, when nothing is delivered and
 * unacknowledged on its subscription. */
void sc_try_deliver(srv_queue *q, const srv_msg *msg)
{
    srv_conn *c = q->subscriber;
    srv_sub *s;
    sx_smp_msg m;
    uint8_t *enc;
    if (!c || c->closing || !(s = sc_sub_find(c, q)) || s->prohibit ||
        s->has_delivered)
        return;
    enc = malloc(ENC_MSG_LEN);
    if (!enc)
        abort();
    if (sc_make_msg(&m, enc, q, msg) == 0) {
        sc_send_one(c, sc_bytes(q->rid, SRV_ID_BYTES), &m);
        sc_set_delivered(s, msg);
    }
    free(enc);
}

/* The message notification (NMSG) to the notifier subscriber. The
 * reference stores notifications and delivers them from a separate thread;
 * here they are sent at once. */
void sc_notify(srv_queue *q, const srv_msg *msg)
{
    srv_ntf *n;
    sx_wr meta;
    int rc;
    if (!q->has_ntf)
        return;
    n = calloc(1, sizeof *n);
    if (!n)
        abort();
    sx_random(n->nonce, sizeof n->nonce);
    sx_wr_init(&meta);
    sx_wr_short(&meta, msg->id, SRV_ID_BYTES);
    sx_wr_time(&meta, msg->ts);
    rc = sx_wr_error(&meta);
    if (rc == 0)
        rc = sx_smp_cb_encrypt(n->enc, SX_SMP_NMSG_META_PADDED,
                               q->ntf_dh_secret, n->nonce, meta.p, meta.len);
    sx_wr_free(&meta);
    if (rc < 0) {
        free(n);
        return;
    }
    if (q->ntfs_tail)
        q->ntfs_tail->next = n;
    else
        q->ntfs_head = n;
    q->ntfs_tail = n;
    if (q->ntf_subscriber && !q->ntf_subscriber->closing) {
        srv_resps r = {0};
        sc_ntfs_flush(q, &r);
        srv_conn_send(q->ntf_subscriber, &r);
        srv_resps_free(&r);
    }
}

void sc_ntfs_flush(srv_queue *q, srv_resps *r)
{
    srv_conn *c = q->ntf_subscriber;
    while (c && q->ntfs_head) {
        srv_ntf *n = q->ntfs_head;
        sx_smp_msg m;
        sx_smp_msg_init(&m, SX_SMP_MSG_NMSG);
        memcpy(m.nonce, n->nonce, sizeof m.nonce);
        m.body = sc_bytes(n->enc, sizeof n->enc);
        srv_resp_add(r, c, SC_NO_BYTES, sc_bytes(q->nid, SRV_ID_BYTES), &m);
        q->ntfs_head = n->next;
        free(n);
    }
    if (!q->ntfs_head)
        q->ntfs_tail = NULL;
}
