/*
 * SMP client: one connection to one server, driven by the I/O thread:
 * commands, responses, server events, resubscription, polling.
 *
 * Requests wait on the connection until its session is ready (opening it
 * is client_connect.c's part), then their commands are submitted and the
 * responses matched by the session's request ids.
 */
#define _DEFAULT_SOURCE 1

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client/client_int.h"
#include "client/smp_proto.h"
#include "crypto/crypto.h"


static const char *err_type_name(const sx_smp_err *e)
{
    static const char *const names[] = {
        "?", "BLOCK", "SESSION", "CMD", "PROXY", "AUTH", "BLOCKED",
        "SERVICE", "CRYPTO", "QUOTA", "STORE", "EXPIRED", "NO_MSG",
        "LARGE_MSG", "INTERNAL", "DUPLICATE"};
    if ((size_t)e->type < SX_ARRAY_LEN(names))
        return names[e->type];
    return "?";
}

static const char *cmd_err_name(sx_smp_cmd_err e)
{
    static const char *const names[] = {"", " UNKNOWN", " SYNTAX",
                                        " PROHIBITED", " NO_AUTH",
                                        " HAS_AUTH", " NO_ENTITY"};
    if ((size_t)e < SX_ARRAY_LEN(names))
        return names[e];
    return "";
}

/* ---- lookup and life cycle ---- */

cl_conn *cl_conn_find(struct simplex_client *c, const sx_server_addr *a,
                      int create)
{
    cl_conn *k;
    sx_wr w;
    for (k = c->conns; k; k = k->next)
        if (k->state != CL_C_DEAD && sx_server_addr_equal(&k->addr, a))
            return k;
    if (!create)
        return NULL;
    k = sx_calloc(1, sizeof *k);
    if (!k)
        return NULL;
    k->client = c;
    k->addr = *a;
    k->fd = -1;
    sx_wr_init(&w);
    sx_server_addr_print_ex(&w, a, 0, 0);
    sx_wr_u8(&w, 0);
    if (sx_wr_error(&w)) {
        sx_wr_free(&w);
        sx_free(k);
        return NULL;
    }
    k->server = cl_strdup((const char *)w.p);
    sx_wr_free(&w);
    if (!k->server) {
        sx_free(k);
        return NULL;
    }
    k->state = CL_C_IDLE;
    k->reconnect_at = -1;
    k->next = c->conns;
    c->conns = k;
    return k;
}

void cl_close_transport(cl_conn *k)
{
    sx_net_connector_free(k->tcp);
    k->tcp = NULL;
    if (k->fd >= 0)
        sx_net_close(k->fd);
    k->fd = -1;
    sx_socks5_clear(&k->socks);
    sx_tls_free(k->tls);
    k->tls = NULL;
    sx_smp_session_free(k->sess);
    k->sess = NULL;
}

static void fail_reqs(cl_conn *k, int rc, const char *why)
{
    struct simplex_client *c = k->client;
    while (k->pending) {
        cl_pending *p = k->pending;
        k->pending = p->next;
        if (p->req && !p->item->done) {
            p->item->done = 1;
            p->item->rc = rc;
            if (--p->req->n_left == 0)
                cl_req_finish(c, p->req, rc, "%s", why);
        }
        sx_free(p);
    }
    k->pending_tail = NULL;
    while (k->waiting) {
        cl_req *r = k->waiting;
        k->waiting = r->next;
        r->next = NULL;
        cl_req_finish(c, r, rc, "%s", why);
    }
    k->waiting_tail = NULL;
}

void cl_conn_free(cl_conn *k)
{
    if (!k)
        return;
    fail_reqs(k, SIMPLEX_ERR_CLOSED, "the client was closed");
    cl_close_transport(k);
    while (k->subs) {
        cl_sub *s = k->subs;
        k->subs = s->next;
        sx_free_secret(s, sizeof *s);
    }
    sx_free(k->sub_tab);
    if (k->signers)
        sx_free_secret(k->signers, k->signer_cap * sizeof *k->signers);
    sx_free(k->server);
    sx_free_secret(k, sizeof *k);
}

void cl_conn_fail(cl_conn *k, int rc, const char *why, int64_t now)
{
    struct simplex_client *c = k->client;
    cl_sub *s;
    int had_ready = k->was_ready;
    cl_close_transport(k);
    k->was_ready = 0;
    fail_reqs(k, rc, why);
    for (s = k->subs; s; s = s->next) {
        s->active = 0;
        s->request_id = 0;
        s->resub = 0;
    }
    k->resub_left = 0;
    if (!k->subs) {
        k->state = CL_C_DEAD;
        return;
    }
    if (had_ready && k->reported_up) {
        simplex_client_event *ev = cl_event_new(SIMPLEX_CLIENT_EVENT_DOWN,
                                                k->server);
        if (ev) {
            ev->error = rc;
            ev->message = cl_strdup(why);
            cl_emit(c, ev);
        }
    }
    {
        double d = c->opts.reconnect_initial_ms;
        uint32_t rnd;
        unsigned i;
        for (i = 0; i < k->attempts && d < c->opts.reconnect_max_ms; i++)
            d *= 1.5;
        if (d > c->opts.reconnect_max_ms)
            d = c->opts.reconnect_max_ms;
        sx_random(&rnd, sizeof rnd);
        d += d * 0.25 * ((double)rnd / 4294967296.0);
        k->attempts++;
        k->reconnect_at = now + (int64_t)d;
    }
    k->state = CL_C_IDLE;
}

/* ---- commands ---- */

static int add_pending(cl_conn *k, uint64_t id, cl_req *r, cl_item *it)
{
    cl_pending *p = sx_calloc(1, sizeof *p);
    if (!p)
        return SIMPLEX_ERR_NOMEM;
    p->request_id = id;
    p->req = r;
    p->item = it;
    if (k->pending_tail)
        k->pending_tail->next = p;
    else
        k->pending = p;
    k->pending_tail = p;
    return 0;
}

static void item_done(cl_conn *k, cl_req *r, cl_item *it, int rc,
                      const char *err)
{
    if (it->done)
        return;
    it->done = 1;
    it->rc = rc;
    if (rc && !r->err[0] && err)
        snprintf(r->err, sizeof r->err, "%s", err);
    if (rc && !r->rc)
        r->rc = rc;
    if (--r->n_left == 0)
        cl_req_finish(k->client, r, r->rc, "%s", r->err);
}

/* ---- subscriptions: a list (for resubscription) and a hash table by
 * recipient id (a MSG finds its queue's secrets in O(1)) ---- */

static size_t sub_bucket(const cl_conn *k, const uint8_t *id, size_t n)
{
    /* FNV-1a, seeded per connection: ids are the server's choice */
    uint64_t h = 14695981039346656037u ^ k->sub_seed;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= id[i];
        h *= 1099511628211u;
    }
    h ^= h >> 29;
    return (size_t)h & (k->sub_cap - 1);
}

static cl_sub *sub_find(cl_conn *k, const uint8_t *id, size_t n)
{
    cl_sub *s;
    if (!k->sub_cap)
        return NULL;
    for (s = k->sub_tab[sub_bucket(k, id, n)]; s; s = s->hnext)
        if (s->rcv_id_len == n && memcmp(s->rcv_id, id, n) == 0)
            return s;
    return NULL;
}

/* Doubles the table (load factor <= 1); 0 when there is room. */
static int sub_tab_reserve(cl_conn *k)
{
    size_t ncap, i;
    cl_sub **nt, *s;
    if (k->n_subs < k->sub_cap)
        return 0;
    ncap = k->sub_cap ? k->sub_cap * 2 : 64;
    nt = sx_calloc(ncap, sizeof *nt);
    if (!nt)
        return k->sub_cap ? 0 : SIMPLEX_ERR_NOMEM; /* longer chains */
    if (!k->sub_cap)
        sx_random(&k->sub_seed, sizeof k->sub_seed);
    sx_free(k->sub_tab);
    k->sub_tab = nt;
    k->sub_cap = ncap;
    for (i = 0; i < ncap; i++)
        nt[i] = NULL;
    for (s = k->subs; s; s = s->next) {
        size_t b = sub_bucket(k, s->rcv_id, s->rcv_id_len);
        s->hnext = nt[b];
        nt[b] = s;
    }
    return 0;
}

cl_sub *cl_sub_add(cl_conn *k, const simplex_queue *q, int active)
{
    cl_sub *s = sub_find(k, q->rcv_id, q->rcv_id_len);
    if (!s) {
        size_t b;
        if (sub_tab_reserve(k) < 0)
            return NULL;
        s = sx_calloc(1, sizeof *s);
        if (!s)
            return NULL;
        memcpy(s->rcv_id, q->rcv_id, q->rcv_id_len);
        s->rcv_id_len = q->rcv_id_len;
        s->next = k->subs;
        if (k->subs)
            k->subs->prev = s;
        k->subs = s;
        b = sub_bucket(k, s->rcv_id, s->rcv_id_len);
        s->hnext = k->sub_tab[b];
        k->sub_tab[b] = s;
        k->n_subs++;
    }
    memcpy(s->rcv_auth_sk, q->rcv_auth_sk, CL_KEY);
    memcpy(s->dh_secret, q->dh_secret, CL_KEY);
    s->active = active;
    s->ntf = 0;
    return s;
}

/* One resubscription was answered (or failed, or timed out, or its queue
 * went): UP once none is left. */
static void resub_done(cl_conn *k, cl_sub *s)
{
    if (!s->resub)
        return;
    s->resub = 0;
    if (k->resub_left && --k->resub_left == 0) {
        simplex_client_event *ev = cl_event_new(SIMPLEX_CLIENT_EVENT_UP,
                                                k->server);
        k->reported_up = 1;
        if (ev)
            cl_emit(k->client, ev);
    }
}

void cl_sub_remove(cl_conn *k, const uint8_t *id, size_t n)
{
    cl_sub **pp, *s;
    if (!k->sub_cap)
        return;
    for (pp = &k->sub_tab[sub_bucket(k, id, n)]; *pp; pp = &(*pp)->hnext)
        if ((*pp)->rcv_id_len == n && memcmp((*pp)->rcv_id, id, n) == 0)
            break;
    s = *pp;
    if (!s)
        return;
    *pp = s->hnext;
    if (s->prev)
        s->prev->next = s->next;
    else
        k->subs = s->next;
    if (s->next)
        s->next->prev = s->prev;
    k->n_subs--;
    resub_done(k, s);
    sx_free_secret(s, sizeof *s);
}

/* The slot of sk in a table of cap entries: its entry, else the first
 * free slot within CL_SIGNERS_PROBE, else NULL. */
static cl_signer *signer_slot(cl_signer *t, size_t cap, const uint8_t *key,
                              const uint8_t sk[CL_KEY])
{
    size_t h = (size_t)sx_siphash(key, sk, CL_KEY);
    cl_signer *free_slot = NULL;
    for (size_t i = 0; i < CL_SIGNERS_PROBE; i++) {
        cl_signer *e = &t[(h + i) & (cap - 1)];
        if (!e->used) {
            if (!free_slot)
                free_slot = e;
        } else if (sx_memeq_ct(e->sk, sk, CL_KEY) == 0) {
            return e;
        }
    }
    return free_slot;
}

/* A table of cap entries holding the current ones (a new hash key); 0 or
 * SIMPLEX_ERR_NOMEM (the old table is kept). */
static int signers_rebuild(cl_conn *k, size_t cap)
{
    cl_signer *t = sx_calloc(cap, sizeof *t);
    uint8_t key[sizeof k->signer_key];
    size_t n = 0;
    if (!t)
        return SIMPLEX_ERR_NOMEM;
    sx_random(key, sizeof key);
    for (size_t i = 0; i < k->signer_cap; i++) {
        cl_signer *e;
        if (!k->signers[i].used)
            continue;
        e = signer_slot(t, cap, key, k->signers[i].sk);
        if (e && !e->used) { /* else dropped: it is expanded again later */
            *e = k->signers[i];
            n++;
        }
    }
    if (k->signers)
        sx_free_secret(k->signers, k->signer_cap * sizeof *k->signers);
    k->signers = t;
    k->signer_cap = cap;
    k->n_signers = n;
    memcpy(k->signer_key, key, sizeof key);
    sx_memzero(key, sizeof key);
    return 0;
}

const uint8_t *cl_signer_get(cl_conn *k, const uint8_t sk[CL_KEY])
{
    cl_signer *e;
    if (!k->signers && signers_rebuild(k, CL_SIGNERS_MIN) != 0)
        return NULL;
    e = signer_slot(k->signers, k->signer_cap, k->signer_key, sk);
    if (e && e->used)
        return e->x;
    if ((!e || 2 * (k->n_signers + 1) > k->signer_cap) &&
        k->signer_cap < CL_SIGNERS_MAX &&
        signers_rebuild(k, 2 * k->signer_cap) == 0)
        e = signer_slot(k->signers, k->signer_cap, k->signer_key, sk);
    if (!e) {
        /* full around its place at the largest size: replace one */
        e = &k->signers[(size_t)sx_siphash(k->signer_key, sk, CL_KEY) &
                        (k->signer_cap - 1)];
        e->used = 0;
        k->n_signers--;
    }
    if (sx_ed25519_expand(e->x, sk) != 0)
        return NULL;
    memcpy(e->sk, sk, CL_KEY);
    e->used = 1;
    k->n_signers++;
    return e->x;
}

static int submit_item(cl_conn *k, cl_req *r, cl_item *it, int64_t now)
{
    sx_smp_cmd cmd;
    sx_smp_session_auth auth = {.alg = SX_KEY_ED25519};
    const uint8_t *ent = r->entity;
    size_t ent_len = r->entity_len;
    const uint8_t *corr = NULL; /* the command's own corrId (PFWD) */
    uint8_t pk[CL_KEY];
    uint64_t id = 0;
    int rc;

    switch (r->op) {
    case CL_OP_PING:
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_PING);
        auth.alg = SX_KEY_NONE;
        break;
    case CL_OP_NEW: {
        simplex_queue *q = r->new_q;
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_NEW);
        sx_smp_key_set(&cmd.new_q.rcv_auth_key, SX_KEY_ED25519,
                       q->rcv_auth_pk);
        sx_smp_key_set(&cmd.new_q.rcv_dh_key, SX_KEY_X25519, q->rcv_dh_pk);
        if (k->addr.has_auth) {
            cmd.new_q.has_basic_auth = 1;
            cmd.new_q.basic_auth.p = (const uint8_t *)k->addr.auth;
            cmd.new_q.basic_auth.n = strlen(k->addr.auth);
        }
        cmd.new_q.sub_mode = (r->flags & SIMPLEX_QUEUE_SUBSCRIBE) ? 'S' : 'C';
        if (sx_smp_session_version(k->sess) >= SX_SMP_V_SND_AUTH_KEY)
            cmd.new_q.qr_mode = (r->flags & SIMPLEX_QUEUE_CONTACT)
                                    ? SX_SMP_QM_CONTACT
                                : (r->flags & SIMPLEX_QUEUE_SENDER_SECURE)
                                    ? SX_SMP_QM_MESSAGING
                                    : SX_SMP_QM_NONE;
        auth.priv = q->rcv_auth_sk;
        if (q->has_rcv_auth_x)
            auth.ed25519_expanded = q->rcv_auth_x;
        ent = NULL;
        ent_len = 0;
        break;
    }
    case CL_OP_SKEY:
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_SKEY);
        if ((rc = sx_ed25519_public(pk, r->key)) != 0)
            return rc;
        sx_smp_key_set(&cmd.key, SX_KEY_ED25519, pk);
        auth.priv = r->key;
        auth.ed25519_expanded = cl_signer_get(k, r->key);
        break;
    case CL_OP_SEND:
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
        cmd.notification = (r->flags & SIMPLEX_SEND_NOTIFICATION) != 0;
        cmd.body.p = r->body;
        cmd.body.n = r->body_len;
        if (r->key) {
            auth.priv = r->key;
            auth.ed25519_expanded = cl_signer_get(k, r->key);
        } else {
            auth.alg = SX_KEY_NONE;
        }
        break;
    case CL_OP_NKEY:
        cl_ntf_nkey_cmd(r, &cmd);
        auth.priv = it->q->rcv_auth_sk;
        if (it->q->has_rcv_auth_x)
            auth.ed25519_expanded = it->q->rcv_auth_x;
        ent = it->q->rcv_id;
        ent_len = it->q->rcv_id_len;
        break;
    case CL_OP_PRXY:
    case CL_OP_PFWD:
        if ((rc = cl_proxy_cmd(k, r, &cmd, &ent, &ent_len, &corr)) != 0)
            return rc;
        auth.alg = SX_KEY_NONE;
        break;
    default: {
        /* recipient commands on it->q */
        static const sx_smp_cmd_tag tags[] = {
            [CL_OP_KEY] = SX_SMP_CMD_KEY, [CL_OP_SUB] = SX_SMP_CMD_SUB,
            [CL_OP_GET] = SX_SMP_CMD_GET, [CL_OP_ACK] = SX_SMP_CMD_ACK,
            [CL_OP_OFF] = SX_SMP_CMD_OFF, [CL_OP_DEL] = SX_SMP_CMD_DEL,
            [CL_OP_QUE] = SX_SMP_CMD_QUE, [CL_OP_NDEL] = SX_SMP_CMD_NDEL,
            [CL_OP_NSUB] = SX_SMP_CMD_NSUB};
        if ((size_t)r->op >= SX_ARRAY_LEN(tags) || !tags[r->op] || !it->q)
            return SIMPLEX_ERR_INTERNAL;
        sx_smp_cmd_init(&cmd, tags[r->op]);
        if (r->op == CL_OP_KEY)
            sx_smp_key_set(&cmd.key, SX_KEY_ED25519, r->key);
        if (r->op == CL_OP_ACK) {
            cmd.id.p = r->msg_id;
            cmd.id.n = r->msg_id_len;
        }
        auth.priv = it->q->rcv_auth_sk;
        if (it->q->has_rcv_auth_x)
            auth.ed25519_expanded = it->q->rcv_auth_x;
        ent = it->q->rcv_id;
        ent_len = it->q->rcv_id_len;
        if (r->op == CL_OP_SUB || r->op == CL_OP_NSUB) {
            cl_sub *s = cl_sub_add(k, it->q, 0);
            if (s)
                s->ntf = r->op == CL_OP_NSUB;
        }
        break;
    }
    }
    if (corr)
        rc = sx_smp_session_submit_corr(k->sess, corr, ent, ent_len, &cmd,
                                        &auth, (uint64_t)now,
                                        SX_SMP_SESSION_TIMEOUT_DEFAULT, &id);
    else
        rc = sx_smp_session_submit(k->sess, ent, ent_len, &cmd, &auth,
                                   (uint64_t)now,
                                   SX_SMP_SESSION_TIMEOUT_DEFAULT, &id);
    sx_memzero(pk, sizeof pk);
    if (rc < 0)
        return rc;
    it->request_id = id;
    it->submitted = 1;
    return add_pending(k, id, r, it);
}

static void submit_req(cl_conn *k, cl_req *r, int64_t now)
{
    size_t i;
    if (r->op == CL_OP_CONNECT) {
        r->version = sx_smp_session_version(k->sess);
        cl_req_finish(k->client, r, 0, "%s", "");
        return;
    }
    /* r is finished (and, when asynchronous, freed) by the failure of
     * its last item if every one failed: nothing of it is read after
     * that, hence the count kept here */
    size_t n = r->n_items;
    r->n_left = n;
    for (i = 0; i < n; i++) {
        int rc = submit_item(k, r, &r->items[i], now);
        if (rc < 0) {
            char why[96];
            snprintf(why, sizeof why, "cannot send the command: %s",
                     simplex_strerror(rc));
            item_done(k, r, &r->items[i], rc, why);
        }
    }
}

void cl_conn_add_req(cl_conn *k, cl_req *r, int64_t now)
{
    if (k->state == CL_C_READY && !k->waiting) {
        submit_req(k, r, now);
        return;
    }
    r->next = NULL;
    if (k->waiting_tail)
        k->waiting_tail->next = r;
    else
        k->waiting = r;
    k->waiting_tail = r;
    if (k->state == CL_C_IDLE)
        cl_conn_start(k, now);
}

void cl_conn_submit_waiting(cl_conn *k, int64_t now)
{
    while (k->waiting && k->state == CL_C_READY) {
        cl_req *r = k->waiting;
        k->waiting = r->next;
        if (!k->waiting)
            k->waiting_tail = NULL;
        r->next = NULL;
        submit_req(k, r, now);
    }
}

/* ---- responses and server events ---- */

static void deliver_msg(cl_conn *k, const uint8_t *rid, size_t rid_len,
                        const uint8_t dh_secret[CL_KEY], const sx_smp_msg *m)
{
    simplex_client_event *ev = NULL;
    int rc = cl_event_from_msg(&ev, k->server, rid, rid_len, dh_secret, m);
    if (rc < 0) {
        ev = cl_event_new(SIMPLEX_CLIENT_EVENT_ERROR, k->server);
        if (!ev)
            return;
        ev->error = rc;
        ev->message = cl_strdup("a message could not be decrypted");
        if (rid_len <= CL_ID_MAX) {
            memcpy(ev->queue_id, rid, rid_len);
            ev->queue_id_len = rid_len;
        }
    }
    cl_emit(k->client, ev);
}

static void queue_error_event(cl_conn *k, const uint8_t *id, size_t n, int rc,
                              const char *msg)
{
    simplex_client_event *ev = cl_event_new(SIMPLEX_CLIENT_EVENT_ERROR,
                                            k->server);
    if (!ev)
        return;
    ev->error = rc;
    ev->message = cl_strdup(msg);
    if (n <= CL_ID_MAX) {
        memcpy(ev->queue_id, id, n);
        ev->queue_id_len = n;
    }
    cl_emit(k->client, ev);
}

static void on_response(cl_conn *k, cl_req *r, cl_item *it,
                        const sx_smp_session_event *e)
{
    const sx_smp_msg *m = &e->msg;
    char err[96];
    int rc = 0;

    if (!e->has_msg) {
        snprintf(err, sizeof err, "bad response from the server: %s",
                 simplex_strerror(e->code ? e->code : SIMPLEX_ERR_PARSE));
        item_done(k, r, it, e->code ? e->code : SIMPLEX_ERR_PARSE, err);
        return;
    }
    if (r->op == CL_OP_PRXY || r->op == CL_OP_PFWD) {
        rc = cl_proxy_response(r, m, err, sizeof err);
        item_done(k, r, it, rc, err);
        return;
    }
    if (m->tag == SX_SMP_MSG_ERR) {
        if (r->op == CL_OP_GET && m->err.type == SX_SMP_ERR_NO_MSG) {
            item_done(k, r, it, 0, NULL);
            return;
        }
        if (r->op == CL_OP_SUB || r->op == CL_OP_NSUB)
            cl_sub_remove(k, it->q->rcv_id, it->q->rcv_id_len);
        snprintf(err, sizeof err, "ERR %s%s", err_type_name(&m->err),
                 m->err.type == SX_SMP_ERR_CMD ? cmd_err_name(m->err.cmd)
                                               : "");
        item_done(k, r, it, SIMPLEX_ERR_SERVER, err);
        return;
    }
    switch (r->op) {
    case CL_OP_PING:
        rc = m->tag == SX_SMP_MSG_PONG ? 0 : SIMPLEX_ERR_PARSE;
        break;
    case CL_OP_NEW: {
        simplex_queue *q = r->new_q;
        const sx_smp_ids *ids = &m->ids;
        if (m->tag != SX_SMP_MSG_IDS || ids->rcv_id.n == 0 ||
            ids->rcv_id.n > CL_ID_MAX || ids->snd_id.n > CL_ID_MAX ||
            ids->srv_dh_key.alg != SX_KEY_X25519) {
            rc = SIMPLEX_ERR_PARSE;
            break;
        }
        memcpy(q->rcv_id, ids->rcv_id.p, ids->rcv_id.n);
        q->rcv_id_len = ids->rcv_id.n;
        memcpy(q->snd_id, ids->snd_id.p, ids->snd_id.n);
        q->snd_id_len = ids->snd_id.n;
        memcpy(q->srv_dh_pk, ids->srv_dh_key.raw, CL_KEY);
        q->sender_can_secure = ids->queue_mode == SX_SMP_QM_MESSAGING;
        rc = sx_x25519_dh(q->dh_secret, q->srv_dh_pk, q->rcv_dh_sk);
        if (rc == 0 && (r->flags & SIMPLEX_QUEUE_SUBSCRIBE))
            cl_sub_add(k, q, 1);
        break;
    }
    case CL_OP_SUB:
        if (m->tag == SX_SMP_MSG_OK || m->tag == SX_SMP_MSG_SOK ||
            m->tag == SX_SMP_MSG_MSG) {
            cl_sub *s = sub_find(k, it->q->rcv_id, it->q->rcv_id_len);
            if (s)
                s->active = 1;
            if (m->tag == SX_SMP_MSG_MSG)
                deliver_msg(k, it->q->rcv_id, it->q->rcv_id_len,
                            it->q->dh_secret, m);
        } else {
            rc = SIMPLEX_ERR_PARSE;
        }
        break;
    case CL_OP_NSUB:
        if (m->tag == SX_SMP_MSG_OK || m->tag == SX_SMP_MSG_SOK) {
            cl_sub *s = sub_find(k, it->q->rcv_id, it->q->rcv_id_len);
            if (s)
                s->active = 1;
        } else {
            rc = SIMPLEX_ERR_PARSE;
        }
        break;
    case CL_OP_NKEY:
        rc = cl_ntf_on_nid(r, m);
        break;
    case CL_OP_GET:
        /* the server answers OK when the queue is empty */
        if (m->tag == SX_SMP_MSG_OK)
            break;
        if (m->tag != SX_SMP_MSG_MSG)
            rc = SIMPLEX_ERR_PARSE;
        else
            rc = cl_event_from_msg(&r->ev, k->server, it->q->rcv_id,
                                   it->q->rcv_id_len, it->q->dh_secret, m);
        break;
    case CL_OP_ACK:
        if (m->tag == SX_SMP_MSG_MSG)
            deliver_msg(k, it->q->rcv_id, it->q->rcv_id_len, it->q->dh_secret,
                        m);
        else if (m->tag != SX_SMP_MSG_OK)
            rc = SIMPLEX_ERR_PARSE;
        break;
    case CL_OP_QUE:
        if (m->tag != SX_SMP_MSG_INFO) {
            rc = SIMPLEX_ERR_PARSE;
            break;
        }
        r->info.data = sx_malloc(m->body.n + 1);
        if (!r->info.data) {
            rc = SIMPLEX_ERR_NOMEM;
            break;
        }
        memcpy(r->info.data, m->body.p, m->body.n);
        r->info.data[m->body.n] = 0;
        r->info.len = m->body.n;
        break;
    case CL_OP_DEL:
        if (m->tag != SX_SMP_MSG_OK)
            rc = SIMPLEX_ERR_PARSE;
        else
            cl_sub_remove(k, it->q->rcv_id, it->q->rcv_id_len);
        break;
    default:
        rc = m->tag == SX_SMP_MSG_OK ? 0 : SIMPLEX_ERR_PARSE;
        break;
    }
    if (rc == SIMPLEX_ERR_PARSE)
        snprintf(err, sizeof err, "unexpected response %s",
                 sx_smp_msg_name(m->tag));
    else
        snprintf(err, sizeof err, "%s", rc ? simplex_strerror(rc) : "");
    item_done(k, r, it, rc, err);
}

/* A response to a resubscription (no request waits for it). */
static void on_resub(cl_conn *k, const sx_smp_session_event *e)
{
    cl_sub *s = sub_find(k, e->entity_id.p, e->entity_id.n);
    if (!s || s->request_id != e->request_id)
        return;
    s->request_id = 0;
    if (e->has_msg &&
        (e->msg.tag == SX_SMP_MSG_OK || e->msg.tag == SX_SMP_MSG_SOK ||
         e->msg.tag == SX_SMP_MSG_MSG)) {
        s->active = 1;
        if (e->msg.tag == SX_SMP_MSG_MSG && !s->ntf)
            deliver_msg(k, s->rcv_id, s->rcv_id_len, s->dh_secret, &e->msg);
        resub_done(k, s);
        return;
    }
    queue_error_event(k, s->rcv_id, s->rcv_id_len,
                      e->has_msg ? SIMPLEX_ERR_SERVER : SIMPLEX_ERR_PARSE,
                      "resubscription failed");
    cl_sub_remove(k, s->rcv_id, s->rcv_id_len);
}

static void resubscribe(cl_conn *k, int64_t now)
{
    cl_sub *s, *nx;
    for (s = k->subs; s; s = nx) {
        sx_smp_cmd cmd;
        sx_smp_session_auth auth = {.alg = SX_KEY_ED25519,
                                    .priv = s->rcv_auth_sk};
        uint64_t id = 0;
        int rc;
        nx = s->next;
        sx_smp_cmd_init(&cmd, s->ntf ? SX_SMP_CMD_NSUB : SX_SMP_CMD_SUB);
        rc = sx_smp_session_submit(k->sess, s->rcv_id, s->rcv_id_len, &cmd,
                                   &auth, (uint64_t)now,
                                   SX_SMP_SESSION_TIMEOUT_DEFAULT, &id);
        if (rc < 0 || add_pending(k, id, NULL, NULL) < 0) {
            queue_error_event(k, s->rcv_id, s->rcv_id_len,
                              rc < 0 ? rc : SIMPLEX_ERR_NOMEM,
                              "resubscription failed");
            cl_sub_remove(k, s->rcv_id, s->rcv_id_len);
            continue;
        }
        /* the entry just added: its queue, for a timeout */
        memcpy(k->pending_tail->rcv_id, s->rcv_id, s->rcv_id_len);
        k->pending_tail->rcv_id_len = s->rcv_id_len;
        s->request_id = id;
        s->resub = 1;
        k->resub_left++;
    }
}

static cl_pending *take_pending(cl_conn *k, uint64_t id)
{
    cl_pending *p, *prev = NULL;
    for (p = k->pending; p; prev = p, p = p->next)
        if (p->request_id == id) {
            if (prev)
                prev->next = p->next;
            else
                k->pending = p->next;
            if (k->pending_tail == p)
                k->pending_tail = prev;
            return p;
        }
    return NULL;
}

static void on_server_event(cl_conn *k, const sx_smp_session_event *e)
{
    cl_sub *s;
    simplex_client_event *ev;
    if (!e->has_msg)
        return;
    s = sub_find(k, e->entity_id.p, e->entity_id.n);
    if (!s)
        return;
    switch (e->msg.tag) {
    case SX_SMP_MSG_MSG:
        if (!s->ntf)
            deliver_msg(k, s->rcv_id, s->rcv_id_len, s->dh_secret, &e->msg);
        return;
    case SX_SMP_MSG_NMSG:
        if (s->ntf)
            cl_ntf_deliver(k, s, &e->msg);
        return;
    case SX_SMP_MSG_END:
    case SX_SMP_MSG_DELD:
        ev = cl_event_new(e->msg.tag == SX_SMP_MSG_END
                              ? SIMPLEX_CLIENT_EVENT_END
                              : SIMPLEX_CLIENT_EVENT_DELD,
                          k->server);
        if (ev) {
            memcpy(ev->queue_id, s->rcv_id, s->rcv_id_len);
            ev->queue_id_len = s->rcv_id_len;
        }
        cl_sub_remove(k, s->rcv_id, s->rcv_id_len);
        if (ev)
            cl_emit(k->client, ev);
        return;
    default:
        return;
    }
}

int cl_conn_drain(cl_conn *k, int64_t now)
{
    sx_smp_session_event e;
    int failed = 0;
    while (!failed && k->sess && sx_smp_session_next_event(k->sess, &e) == 1) {
        cl_pending *p;
        switch (e.type) {
        case SX_SMP_SESSION_EV_HANDSHAKE:
            k->state = CL_C_READY;
            k->was_ready = 1;
            k->attempts = 0;
            if (k->ever_up && k->subs) {
                /* UP once every queue was resubscribed (resub_done) */
                resubscribe(k, now);
                if (k->resub_left == 0) {
                    simplex_client_event *ev =
                        cl_event_new(SIMPLEX_CLIENT_EVENT_UP, k->server);
                    k->reported_up = 1;
                    if (ev)
                        cl_emit(k->client, ev);
                }
            } else if (!k->ever_up) {
                k->reported_up = 1; /* the first session: no event */
            }
            k->ever_up = 1;
            cl_conn_submit_waiting(k, now);
            break;
        case SX_SMP_SESSION_EV_RESPONSE:
            p = take_pending(k, e.request_id);
            if (p && p->req)
                on_response(k, p->req, p->item, &e);
            else if (p || e.late)
                on_resub(k, &e);
            sx_free(p);
            break;
        case SX_SMP_SESSION_EV_TIMEOUT:
            p = take_pending(k, e.request_id);
            if (p && p->req) {
                item_done(k, p->req, p->item, SIMPLEX_ERR_TIMEOUT,
                          "the server did not answer in time");
            } else if (p) {
                /* a resubscription: still matched if it comes late, but
                 * UP need not wait for it */
                cl_sub *s = sub_find(k, p->rcv_id, p->rcv_id_len);
                if (s && s->request_id == e.request_id)
                    resub_done(k, s);
            }
            sx_free(p);
            break;
        case SX_SMP_SESSION_EV_SERVER_EVENT:
            on_server_event(k, &e);
            break;
        case SX_SMP_SESSION_EV_ERROR:
            sx_log(sx_default_logger(), SIMPLEX_LOG_WARN,
                   "smp client: %s: problem %d with received data",
                   k->server, (int)e.problem);
            break;
        case SX_SMP_SESSION_EV_FATAL: {
            int rc = e.code ? e.code : SIMPLEX_ERR_CLOSED;
            const char *why = e.timed_out ? "the server stopped answering"
                                          : "SMP session failed";
            if (e.transport == SX_SMP_TE_HANDSHAKE &&
                e.handshake == SX_SMP_HS_IDENTITY)
                rc = SIMPLEX_ERR_SERVER_IDENTITY;
            if (k->state == CL_C_HELLO)
                cl_host_next(k, rc, "SMP handshake failed", now);
            else
                cl_conn_fail(k, rc, why, now);
            failed = 1;
            break;
        }
        default:
            break;
        }
        sx_smp_session_event_dispose(&e);
    }
    return failed;
}
