/*
 * SMP client: private message routing (proxied sending, SMP v8+).
 *
 * The sender asks a proxy server of its choice to connect to the
 * destination relay (PRXY); the proxy answers PKEY with the relay's
 * session id, version range, certificate chain and signed session key.
 * The client checks the chain against the destination's key hash and the
 * signature of the session key with the leaf certificate, then sends each
 * command encrypted to the relay (a fresh X25519 key per command, the
 * relay's session key, nonce = the PFWD correlation id) in PFWD. The
 * relay's answer comes back in PRES, encrypted with the reversed nonce.
 *
 * The API thread does the cryptography and the checks; the I/O thread only
 * submits PRXY / PFWD on the proxy connection and copies the answers
 * (cl_proxy_cmd, cl_proxy_response). Relay sessions are kept per (proxy,
 * destination) on the client, under its mutex.
 */
#define _DEFAULT_SOURCE 1

#include <stdio.h>
#include <string.h>

#include "client/client_int.h"
#include "client/smp_proto.h"
#include "crypto/crypto.h"

#define CL_PRX_SID_MAX 255

_Static_assert(SX_BOX_NONCE_BYTES == SX_SMP_SESSION_CORR_ID_BYTES,
               "the PFWD nonce is its correlation id");

/* A relay session obtained through a proxy (ProxiedRelay). */
struct cl_relay {
    struct cl_relay *next;
    sx_server_addr proxy, dest;
    uint8_t sid[CL_PRX_SID_MAX];
    size_t sid_len;
    uint16_t version;
    uint8_t key[SX_X25519_BYTES];       /* the relay's session DH key */
};

/* What a PRXY / PFWD request carries between the two threads. */
typedef struct cl_proxy_ext {
    /* PRXY in */
    const sx_server_addr *dest;
    const sx_server_addr *proxy;
    /* PKEY out */
    uint8_t sid[CL_PRX_SID_MAX];
    size_t sid_len;
    uint16_t vmin, vmax;
    size_t n_certs;
    uint8_t *certs[SX_SMP_MAX_CERTS];
    size_t cert_len[SX_SMP_MAX_CERTS];
    uint8_t *signed_key;
    size_t signed_key_len;
    /* PFWD in */
    const struct cl_relay *relay;
    uint8_t nonce[SX_BOX_NONCE_BYTES];  /* also the corrId */
    uint8_t cmd_pub[SX_X25519_BYTES];
    const uint8_t *et;
    size_t et_len;
    /* PRES out */
    uint8_t *resp;
    size_t resp_len;
    /* ERR out: PROXY sub-error, 0 when none */
    int proxy_err;
} cl_proxy_ext;

static void ext_free(cl_proxy_ext *x)
{
    for (size_t i = 0; i < x->n_certs; i++)
        sx_free(x->certs[i]);
    sx_free(x->signed_key);
    sx_free(x->resp);
    x->n_certs = 0;
    x->signed_key = x->resp = NULL;
}

static uint8_t *dup_bytes(sx_smp_bytes b)
{
    uint8_t *p = sx_malloc(b.n ? b.n : 1);
    if (p && b.n)
        memcpy(p, b.p, b.n);
    return p;
}

/* "ERR <the error as the reference encodes it>", printable bytes only. */
static void err_text(char *out, size_t cap, const sx_smp_err *e)
{
    sx_wr w;
    size_t o;
    sx_wr_init(&w);
    sx_smp_err_encode(&w, SX_SMP_VERSION_MAX, e);
    o = (size_t)snprintf(out, cap, "ERR ");
    for (size_t i = 0; i < w.len && o + 1 < cap; i++)
        if (w.p[i] >= 0x20 && w.p[i] < 0x7f)
            out[o++] = (char)w.p[i];
    if (o < cap)
        out[o] = 0;
    sx_wr_free(&w);
}

/* ---- the I/O thread's part ---- */

int cl_proxy_cmd(cl_conn *k, cl_req *r, sx_smp_cmd *cmd,
                 const uint8_t **ent, size_t *ent_len, const uint8_t **corr)
{
    cl_proxy_ext *x = r->ext;
    if (!x)
        return SIMPLEX_ERR_INTERNAL;
    if (sx_smp_session_version(k->sess) < SX_SMP_V_SENDING_PROXY)
        return SIMPLEX_ERR_UNSUPPORTED;
    if (r->op == CL_OP_PRXY) {
        const sx_server_addr *d = x->dest;
        sx_smp_cmd_init(cmd, SX_SMP_CMD_PRXY);
        cmd->server.n_hosts = d->n_hosts < SX_SMP_MAX_HOSTS ? d->n_hosts
                                                            : SX_SMP_MAX_HOSTS;
        for (size_t i = 0; i < cmd->server.n_hosts; i++) {
            cmd->server.hosts[i].p = (const uint8_t *)d->hosts[i].name;
            cmd->server.hosts[i].n = strlen(d->hosts[i].name);
        }
        cmd->server.port.p = (const uint8_t *)d->port;
        cmd->server.port.n = strlen(d->port);
        cmd->server.key_hash.p = d->key_hash;
        cmd->server.key_hash.n = sizeof d->key_hash;
        /* the proxy's own basic auth (its newQueueBasicAuth) */
        if (k->addr.has_auth) {
            cmd->has_basic_auth = 1;
            cmd->basic_auth.p = (const uint8_t *)k->addr.auth;
            cmd->basic_auth.n = strlen(k->addr.auth);
        }
        *ent = NULL;
        *ent_len = 0;
        *corr = NULL;
        return 0;
    }
    sx_smp_cmd_init(cmd, SX_SMP_CMD_PFWD);
    cmd->fwd_version = x->relay->version;
    sx_smp_key_set(&cmd->dh_key, SX_KEY_X25519, x->cmd_pub);
    cmd->body.p = x->et;
    cmd->body.n = x->et_len;
    *ent = x->relay->sid;
    *ent_len = x->relay->sid_len;
    /* the PFWD corrId is the nonce the transmission was encrypted with */
    *corr = x->nonce;
    return 0;
}

int cl_proxy_response(cl_req *r, const sx_smp_msg *m, char *err, size_t cap)
{
    cl_proxy_ext *x = r->ext;
    err[0] = 0;
    if (m->tag == SX_SMP_MSG_ERR) {
        if (m->err.type == SX_SMP_ERR_PROXY)
            x->proxy_err = (int)m->err.proxy;
        err_text(err, cap, &m->err);
        return SIMPLEX_ERR_SERVER;
    }
    if (r->op == CL_OP_PRXY && m->tag == SX_SMP_MSG_PKEY) {
        if (m->id.n == 0 || m->id.n > sizeof x->sid ||
            m->n_certs > SX_SMP_MAX_CERTS)
            return SIMPLEX_ERR_PARSE;
        memcpy(x->sid, m->id.p, m->id.n);
        x->sid_len = m->id.n;
        x->vmin = m->vmin;
        x->vmax = m->vmax;
        for (size_t i = 0; i < m->n_certs; i++) {
            if (!(x->certs[i] = dup_bytes(m->certs[i])))
                return SIMPLEX_ERR_NOMEM;
            x->cert_len[i] = m->certs[i].n;
            x->n_certs = i + 1;
        }
        if (!(x->signed_key = dup_bytes(m->signed_key)))
            return SIMPLEX_ERR_NOMEM;
        x->signed_key_len = m->signed_key.n;
        return 0;
    }
    if (r->op == CL_OP_PFWD && m->tag == SX_SMP_MSG_PRES) {
        if (!(x->resp = dup_bytes(m->body)))
            return SIMPLEX_ERR_NOMEM;
        x->resp_len = m->body.n;
        return 0;
    }
    snprintf(err, cap, "unexpected response %s from the proxy",
             sx_smp_msg_name(m->tag));
    return SIMPLEX_ERR_PARSE;
}

/* ---- relay sessions (under c->mu) ---- */

void cl_relays_free(struct simplex_client *c)
{
    while (c->relays) {
        struct cl_relay *p = c->relays;
        c->relays = p->next;
        sx_memzero(p, sizeof *p);
        sx_free(p);
    }
}

static int relay_lookup(simplex_client *c, const sx_server_addr *pa,
                        const sx_server_addr *da, struct cl_relay *out)
{
    int found = 0;
    pthread_mutex_lock(&c->mu);
    for (struct cl_relay *p = c->relays; p; p = p->next)
        if (sx_server_addr_equal(&p->proxy, pa) &&
            sx_server_addr_equal(&p->dest, da)) {
            *out = *p;
            found = 1;
            break;
        }
    pthread_mutex_unlock(&c->mu);
    return found;
}

static void relay_forget(simplex_client *c, const struct cl_relay *rel)
{
    pthread_mutex_lock(&c->mu);
    for (struct cl_relay **pp = &c->relays; *pp; pp = &(*pp)->next) {
        struct cl_relay *p = *pp;
        if (sx_server_addr_equal(&p->proxy, &rel->proxy) &&
            sx_server_addr_equal(&p->dest, &rel->dest)) {
            *pp = p->next;
            sx_memzero(p, sizeof *p);
            sx_free(p);
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
}

static void relay_store(simplex_client *c, const struct cl_relay *rel)
{
    struct cl_relay *p = sx_malloc(sizeof *p);
    if (!p)
        return; /* not cached: the next send asks again */
    relay_forget(c, rel);
    *p = *rel;
    pthread_mutex_lock(&c->mu);
    p->next = c->relays;
    c->relays = p;
    pthread_mutex_unlock(&c->mu);
}

/* ---- the API thread's part ---- */

/* connectSMPProxiedRelay: PRXY, then the checks of PKEY. */
static int relay_connect(simplex_client *c, const char *proxy,
                         const sx_server_addr *pa, const sx_server_addr *da,
                         struct cl_relay *rel)
{
    cl_req r;
    cl_proxy_ext x;
    const uint8_t *der[SX_SMP_MAX_CERTS];
    sx_smp_key key;
    sx_tls_reason why;
    int rc;

    memset(&x, 0, sizeof x);
    x.dest = da;
    x.proxy = pa;
    cl_api_req_init(&r, CL_OP_PRXY);
    if ((rc = cl_api_req_server(c, &r, proxy)) != 0)
        return rc;
    r.ext = &x;
    rc = cl_api_run(c, &r);
    if (rc) {
        ext_free(&x);
        return rc;
    }
    /* the version: the highest in both our range and the relay's */
    if (x.vmax < SX_SMP_VERSION_MIN || x.vmin > SX_SMP_VERSION_MAX ||
        x.vmin > x.vmax) {
        ext_free(&x);
        return cl_api_fail(c, SIMPLEX_ERR_SERVER,
                           "ERR PROXY BROKER TRANSPORT VERSION");
    }
    memset(rel, 0, sizeof *rel);
    rel->proxy = *pa;
    rel->dest = *da;
    rel->version = x.vmax < SX_SMP_VERSION_MAX ? x.vmax : SX_SMP_VERSION_MAX;
    memcpy(rel->sid, x.sid, x.sid_len);
    rel->sid_len = x.sid_len;
    /* the chain must be the destination's (identity certificate hash) and
     * valid, and the session key signed by its leaf */
    for (size_t i = 0; i < x.n_certs; i++)
        der[i] = x.certs[i];
    why = x.n_certs ? sx_tls_check_chain_der(der, x.cert_len, x.n_certs,
                                              da->key_hash)
                    : SX_TLS_R_CHAIN_LENGTH;
    rc = SIMPLEX_ERR_SERVER;
    if (why == SX_TLS_R_NONE) {
        sx_smp_bytes sk = {x.signed_key, x.signed_key_len};
        sx_smp_bytes leaf = {x.certs[0], x.cert_len[0]};
        if (sx_smp_signed_key_verify(&key, sk, leaf) == 0 &&
            key.alg == SX_KEY_X25519) {
            memcpy(rel->key, key.raw, sizeof rel->key);
            rc = 0;
        }
    }
    ext_free(&x);
    if (rc)
        return cl_api_fail(c, rc,
                           "ERR PROXY BROKER TRANSPORT HANDSHAKE IDENTITY");
    relay_store(c, rel);
    return 0;
}

/* proxySMPCommand for SEND. *no_session set on ERR PROXY NO_SESSION. */
static int proxied_send(simplex_client *c, const char *proxy,
                        const struct cl_relay *rel, const uint8_t *sender_id,
                        size_t sender_id_len, const uint8_t *sk,
                        unsigned flags, const uint8_t *body, size_t body_len,
                        int *no_session)
{
    sx_smp_params prm;
    sx_smp_cmd cmd;
    sx_smp_auth a;
    sx_smp_bytes corr, ent, tb;
    sx_wr cw, aw, bw, tw, batch;
    uint8_t cmd_sk[SX_X25519_BYTES], secret[32], rnonce[SX_BOX_NONCE_BYTES];
    uint8_t *et = NULL, *plain_buf = NULL;
    const uint8_t *plain;
    size_t plain_len;
    cl_proxy_ext x;
    cl_req r;
    int rc;
    char msg[200];

    memset(&x, 0, sizeof x);
    memset(&a, 0, sizeof a);
    sx_wr_init(&cw);
    sx_wr_init(&aw);
    sx_wr_init(&bw);
    sx_wr_init(&tw);
    sx_wr_init(&batch);
    *no_session = 0;

    prm.version = rel->version;
    prm.session_id.p = rel->sid;
    prm.session_id.n = rel->sid_len;
    if ((rc = sx_x25519_keypair(x.cmd_pub, cmd_sk)) < 0 ||
        (rc = sx_x25519_dh(secret, rel->key, cmd_sk)) < 0)
        goto done;
    sx_random(x.nonce, sizeof x.nonce);
    corr.p = x.nonce;
    corr.n = sizeof x.nonce;
    ent.p = sender_id;
    ent.n = sender_id_len;
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.notification = (flags & SIMPLEX_SEND_NOTIFICATION) != 0;
    cmd.body.p = body;
    cmd.body.n = body_len;
    rc = sx_smp_cmd_encode(&cw, rel->version, &cmd);
    if (rc >= 0)
        rc = sx_smp_authorized_encode(&aw, &prm, corr, ent, cw.p, cw.len);
    if (rc >= 0 && sk)
        rc = sx_smp_authorize(&a, SX_KEY_ED25519, sk, rel->key, corr, aw.p,
                              aw.len);
    if (rc >= 0)
        rc = sx_smp_trans_body_encode(&bw, &prm, corr, ent, cw.p, cw.len);
    if (rc >= 0)
        rc = sx_smp_trans_encode(&tw, rel->version, sk ? &a : NULL, NULL,
                                 bw.p, bw.len);
    if (rc >= 0) {
        tb.p = tw.p;
        tb.n = tw.len;
        rc = sx_smp_batch_encode(&batch, &tb, 1);
    }
    if (rc >= 0)
        rc = sx_wr_error(&batch);
    if (rc < 0)
        goto done;
    if (batch.len + 2 > SX_SMP_PROXIED_T_PADDED) {
        rc = SIMPLEX_ERR_TOO_LARGE;
        goto done;
    }
    x.et_len = SX_SMP_PROXIED_T_PADDED + SX_BOX_TAG_BYTES;
    et = sx_malloc(x.et_len);
    if (!et) {
        rc = SIMPLEX_ERR_NOMEM;
        goto done;
    }
    if ((rc = sx_smp_cb_encrypt(et, SX_SMP_PROXIED_T_PADDED, secret, x.nonce,
                                batch.p, batch.len)) < 0)
        goto done;
    x.et = et;
    x.relay = rel;

    cl_api_req_init(&r, CL_OP_PFWD);
    if ((rc = cl_api_req_server(c, &r, proxy)) != 0)
        goto done;
    r.ext = &x;
    rc = cl_api_run(c, &r);
    if (rc) {
        *no_session = x.proxy_err == SX_SMP_PROXYERR_NO_SESSION;
        goto out; /* last_error already set */
    }
    /* the relay's response: errors from it are returned as they are */
    sx_reverse_nonce(rnonce, x.nonce);
    plain_buf = sx_malloc(x.resp_len ? x.resp_len : 1);
    if (!plain_buf) {
        rc = SIMPLEX_ERR_NOMEM;
        goto done;
    }
    if (x.resp_len < SX_BOX_TAG_BYTES ||
        sx_smp_cb_decrypt(plain_buf, &plain, &plain_len, secret, rnonce,
                          x.resp, x.resp_len) < 0) {
        rc = cl_api_fail(c, SIMPLEX_ERR_DECRYPT,
                         "the relay's response did not decrypt");
        goto out;
    } else {
        sx_smp_batch *bt = sx_calloc(1, sizeof *bt);
        sx_smp_trans t;
        sx_smp_msg m;
        if (!bt) {
            rc = SIMPLEX_ERR_NOMEM;
            goto done;
        }
        if (sx_smp_batch_decode(bt, plain, plain_len) < 0 || bt->n != 1 ||
            sx_smp_trans_decode(&t, &prm, bt->t[0].p, bt->t[0].n) < 0 ||
            sx_smp_msg_decode(&m, rel->version, t.command.p,
                              t.command.n) < 0) {
            sx_free(bt);
            rc = cl_api_fail(c, SIMPLEX_ERR_PARSE,
                             "bad response from the relay");
            goto out;
        }
        sx_free(bt);
        if (m.tag == SX_SMP_MSG_OK) {
            rc = 0;
        } else if (m.tag == SX_SMP_MSG_ERR) {
            err_text(msg, sizeof msg, &m.err);
            rc = cl_api_fail(c, SIMPLEX_ERR_SERVER, msg);
            goto out;
        } else {
            snprintf(msg, sizeof msg, "unexpected response %s from the relay",
                     sx_smp_msg_name(m.tag));
            rc = cl_api_fail(c, SIMPLEX_ERR_PARSE, msg);
            goto out;
        }
    }
done:
    if (rc < 0)
        cl_api_fail(c, rc, NULL);
out:
    ext_free(&x);
    sx_free(plain_buf);
    sx_free(et);
    sx_memzero(cmd_sk, sizeof cmd_sk);
    sx_memzero(secret, sizeof secret);
    sx_memzero(&a, sizeof a);
    sx_wr_free(&cw);
    sx_wr_free(&aw);
    sx_wr_free(&bw);
    sx_wr_free(&tw);
    sx_wr_free(&batch);
    return rc;
}

int simplex_client_send_via(simplex_client *c, const char *proxy_server,
                            const char *server, const uint8_t *sender_id,
                            size_t sender_id_len,
                            const uint8_t *sender_private_key, unsigned flags,
                            const uint8_t *body, size_t body_len)
{
    sx_server_addr pa, da;
    struct cl_relay rel;
    int rc = cl_api_enter(c);
    if (rc)
        return rc;
    if (!proxy_server || !server || !sender_id || sender_id_len == 0 ||
        sender_id_len > CL_ID_MAX || (!body && body_len))
        return SIMPLEX_ERR_INVALID_ARG;
    if (sx_server_addr_parse(&pa, proxy_server, strlen(proxy_server)) != 0 ||
        sx_server_addr_parse(&da, server, strlen(server)) != 0)
        return cl_api_fail(c, SIMPLEX_ERR_INVALID_ARG,
                           "not an SMP server address");
    /* a session the proxy forgot (NO_SESSION) is asked for once more */
    for (int attempt = 0;; attempt++) {
        int no_session = 0;
        if (!relay_lookup(c, &pa, &da, &rel) &&
            (rc = relay_connect(c, proxy_server, &pa, &da, &rel)) != 0)
            break;
        rc = proxied_send(c, proxy_server, &rel, sender_id, sender_id_len,
                          sender_private_key, flags, body, body_len,
                          &no_session);
        if (!no_session)
            break;
        relay_forget(c, &rel);
        if (attempt == 1)
            break;
    }
    sx_memzero(&rel, sizeof rel);
    return rc;
}
