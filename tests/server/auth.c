/*
 * smp-test-server transmission checks: parsing errors, credentials and
 * authorization exactly as the reference (tDecodeServer, checkCredentials,
 * verifyTransmission with the dummy verification for AUTH timing).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cmd.h"

/* Dummy keys for the verification the reference runs when the queue or
 * the party key does not exist or has another type, so that the time of
 * an AUTH failure depends only on the kind of the authorization given. */
static sx_smp_key g_dummy_ed25519, g_dummy_ed448, g_dummy_x25519;

extern srv_conn *g_conns;

void srv_cmd_init(void)
{
    uint8_t sk[SX_ED448_SK_BYTES];
    g_dummy_ed25519.alg = SX_KEY_ED25519;
    g_dummy_ed25519.len = SX_ED25519_PK_BYTES;
    sx_ed25519_keypair(g_dummy_ed25519.raw, sk);
    g_dummy_ed448.alg = SX_KEY_ED448;
    g_dummy_ed448.len = SX_ED448_PK_BYTES;
    sx_ed448_keypair(g_dummy_ed448.raw, sk);
    g_dummy_x25519.alg = SX_KEY_X25519;
    g_dummy_x25519.len = SX_X25519_BYTES;
    sx_x25519_keypair(g_dummy_x25519.raw, sk);
    sx_memzero(sk, sizeof sk);
}

/* ---- authorization (verifyTransmission) ---- */


party sc_cmd_party(sx_smp_cmd_tag t)
{
    switch (t) {
    case SX_SMP_CMD_NEW: return P_CREATOR;
    case SX_SMP_CMD_SKEY:
    case SX_SMP_CMD_SEND: return P_SENDER;
    case SX_SMP_CMD_PING: return P_IDLE;
    case SX_SMP_CMD_LKEY:
    case SX_SMP_CMD_LGET: return P_SENDER_LINK;
    case SX_SMP_CMD_NSUB: return P_NOTIFIER;
    case SX_SMP_CMD_PRXY:
    case SX_SMP_CMD_PFWD: return P_PROXIED;
    case SX_SMP_CMD_RFWD: return P_PROXY_SERVICE;
    case SX_SMP_CMD_SUBS:
    case SX_SMP_CMD_NSUBS: return P_SERVICE;
    default: return P_RECIPIENT;
    }
}


/* verifyCmdAuthorization: a matching key type verifies for real, any
 * other runs the verification with a dummy key of the authorization's
 * type and fails. */
int sc_verify_key(const vctx *v, const sx_smp_key *k)
{
    const sx_smp_key *use = k;
    int real = 1;
    if (v->t->auth_kind == SX_SMP_AUTH_NONE)
        return 0;
    switch (v->t->auth_kind) {
    case SX_SMP_AUTH_ED25519:
        if (k->alg != SX_KEY_ED25519)
            use = &g_dummy_ed25519, real = 0;
        break;
    case SX_SMP_AUTH_ED448:
        if (k->alg != SX_KEY_ED448)
            use = &g_dummy_ed448, real = 0;
        break;
    default:
        if (k->alg != SX_KEY_X25519)
            use = &g_dummy_x25519, real = 0;
        break;
    }
    int ok = sx_smp_verify(&v->t->auth, v->t->auth_kind, use, v->c->dh_priv,
                           v->t->corr_id, v->authorized,
                           v->authorized_len) == 0;
    return real && ok;
}

/* dummyVerifyCmd: always fails, after the same work. */
int sc_dummy_verify(const vctx *v)
{
    const sx_smp_key *k = v->t->auth_kind == SX_SMP_AUTH_ED25519 ? &g_dummy_ed25519
                        : v->t->auth_kind == SX_SMP_AUTH_ED448   ? &g_dummy_ed448
                                                                 : &g_dummy_x25519;
    if (v->t->auth_kind != SX_SMP_AUTH_NONE)
        (void)sx_smp_verify(&v->t->auth, v->t->auth_kind, k, v->c->dh_priv,
                            v->t->corr_id, v->authorized, v->authorized_len);
    return 0;
}

srv_queue *sc_lookup(party p, sx_smp_bytes id)
{
    switch (p) {
    case P_RECIPIENT: return srv_q_by_rid(id.p, id.n);
    case P_SENDER: return srv_q_by_sid(id.p, id.n);
    case P_NOTIFIER: return srv_q_by_nid(id.p, id.n);
    case P_SENDER_LINK: return srv_q_by_link(id.p, id.n);
    default: return NULL;
    }
}

/* isContactQueue / isSecuredMsgQueue of the reference */
int sc_is_contact(const srv_queue *q)
{
    return q->mode == 'C' || (q->mode == 0 && !q->has_snd_key);
}

int sc_is_secured_msg(const srv_queue *q)
{
    return q->mode != 'C' && q->has_snd_key;
}

int sc_key_eq(const sx_smp_key *a, const sx_smp_key *b)
{
    return a->alg == b->alg && a->len == b->len &&
           memcmp(a->raw, b->raw, a->len) == 0;
}

/* allowedKey: a messaging queue, unsecured or secured with this key */
int sc_allowed_key(const srv_queue *q, const sx_smp_key *k)
{
    return q->mode == 'M' && (!q->has_snd_key || sc_key_eq(&q->snd_key, k));
}

/* 0 verified, else the ErrorType (AUTH, SERVICE, INTERNAL). */
sx_smp_err_type sc_verify(const vctx *v, const sx_smp_cmd *cmd)
{
    party p = sc_cmd_party(cmd->tag);
    srv_queue *q = NULL;
    const sx_smp_trans *t = v->t;

    if (p == P_RECIPIENT || p == P_SENDER || p == P_NOTIFIER ||
        p == P_SENDER_LINK) {
        q = sc_lookup(p, t->entity_id);
        if (!q) {
            sc_dummy_verify(v);
            return SX_SMP_ERR_AUTH;
        }
    }
    /* no client services: a service signature is never valid */
    if (t->has_service_sig)
        return SX_SMP_ERR_SERVICE;
    switch (p) {
    case P_CREATOR:
        return sc_verify_key(v, &cmd->new_q.rcv_auth_key) ? 0 : SX_SMP_ERR_AUTH;
    case P_RECIPIENT:
    {
        /* verifiedWithKeys: any of the keys (each one tried in turn) */
        int ok = 0;
        for (size_t i = 0; i < q->n_rcv_keys && !ok; i++)
            ok = sc_verify_key(v, &q->rcv_keys[i]);
        return ok ? 0 : SX_SMP_ERR_AUTH;
    }
    case P_SENDER:
        if (cmd->tag == SX_SMP_CMD_SKEY) {
            if (!sc_allowed_key(q, &cmd->key))
                return sc_dummy_verify(v), SX_SMP_ERR_AUTH;
            return sc_verify_key(v, &cmd->key) ? 0 : SX_SMP_ERR_AUTH;
        }
        if (q->has_snd_key)
            return sc_verify_key(v, &q->snd_key) ? 0 : SX_SMP_ERR_AUTH;
        return t->auth_kind == SX_SMP_AUTH_NONE ? 0 : SX_SMP_ERR_AUTH;
    case P_SENDER_LINK:
        if (cmd->tag == SX_SMP_CMD_LGET)
            return sc_is_contact(q) ? 0 : SX_SMP_ERR_AUTH;
        if (!sc_allowed_key(q, &cmd->key))
            return sc_dummy_verify(v), SX_SMP_ERR_AUTH;
        return sc_verify_key(v, &cmd->key) ? 0 : SX_SMP_ERR_AUTH;
    case P_NOTIFIER:
        if (!q->has_ntf)
            return sc_dummy_verify(v), SX_SMP_ERR_AUTH;
        return sc_verify_key(v, &q->ntf_key) ? 0 : SX_SMP_ERR_AUTH;
    case P_SERVICE:
        return SX_SMP_ERR_SERVICE;
    default:
        return 0;
    }
}

/* Is the first word of the command a known tag? (UNKNOWN vs SYNTAX) */
int sc_known_tag(sx_smp_bytes cmd)
{
    size_t n = 0;
    while (n < cmd.n && cmd.p[n] != ' ')
        n++;
    for (int t = SX_SMP_CMD_NEW; t <= SX_SMP_CMD_RFWD; t++) {
        const char *name = sx_smp_cmd_name((sx_smp_cmd_tag)t);
        if (name && strlen(name) == n && memcmp(name, cmd.p, n) == 0)
            return 1;
    }
    return 0;
}

/* When a transmission does not decode: the reference answers BLOCK with
 * the corrId when only the authorization's length is wrong (the raw
 * transmission parsed), with an empty corrId otherwise. */
static sx_smp_bytes raw_corr_id(const sx_smp_params *prm, sx_smp_bytes tb)
{
    sx_rd r;
    const uint8_t *p;
    size_t n, auth_n;
    int has;
    sx_rd_init(&r, tb.p, tb.n);
    if (sx_rd_short(&r, &p, &auth_n) < 0)
        return SC_NO_BYTES;
    if (sx_smp_service_auth(prm->version) && auth_n > 0) {
        if (sx_rd_maybe(&r, &has) < 0)
            return SC_NO_BYTES;
        if (has && (sx_rd_short(&r, &p, &n) < 0 || n != SX_ED25519_SIG_BYTES))
            return SC_NO_BYTES;
    }
    if (!sx_smp_implied_session(prm->version) && sx_rd_short(&r, &p, &n) < 0)
        return SC_NO_BYTES;
    if (sx_rd_short(&r, &p, &n) < 0)
        return SC_NO_BYTES;
    {
        sx_smp_bytes corr = {p, n};
        if (sx_rd_short(&r, &p, &n) < 0)
            return SC_NO_BYTES;
        return corr;
    }
}

/* Parses and verifies one transmission (tDecodeServer, then
 * verifyTransmission); 1 when verified, else the error is added to errs.
 * forwarded: inside RFWD, where only sender commands are allowed. */
int sc_decode_verify(const srv_conn *c, sx_smp_bytes tb, item *it,
                         srv_resps *errs, int forwarded)
{
    sx_smp_params prm = {c->version, {c->session_id, c->session_len}};
    sx_smp_trans *t = &it->t;
    sx_wr signed_bytes;
    int rc, ok = 0;

    if (sx_smp_trans_decode(t, &prm, tb.p, tb.n) < 0) {
        sc_resp_err(errs, c, raw_corr_id(&prm, tb), SC_NO_BYTES,
                    SX_SMP_ERR_BLOCK, 0);
        return 0;
    }
    if (!sx_smp_implied_session(c->version) &&
        (t->session_id.n != c->session_len ||
         memcmp(t->session_id.p, c->session_id, c->session_len) != 0)) {
        sc_resp_err(errs, c, t->corr_id, SC_NO_BYTES, SX_SMP_ERR_SESSION, 0);
        return 0;
    }
    rc = sx_smp_cmd_decode(&it->cmd, c->version, t->command.p, t->command.n);
    if (rc < 0) {
        sc_resp_err(errs, c, t->corr_id, t->entity_id, SX_SMP_ERR_CMD,
                 sc_known_tag(t->command) ? SX_SMP_CMDERR_SYNTAX
                                       : SX_SMP_CMDERR_UNKNOWN);
        return 0;
    }
    sx_smp_cmd_err ce = sx_smp_cmd_check(
        it->cmd.tag, t->auth_kind != SX_SMP_AUTH_NONE, t->entity_id.n);
    if (ce) {
        sc_resp_err(errs, c, t->corr_id, t->entity_id, SX_SMP_ERR_CMD, ce);
        return 0;
    }
    if (forwarded && it->cmd.tag != SX_SMP_CMD_SEND &&
        it->cmd.tag != SX_SMP_CMD_SKEY && it->cmd.tag != SX_SMP_CMD_LKEY &&
        it->cmd.tag != SX_SMP_CMD_LGET) {
        sc_resp_err(errs, c, t->corr_id, t->entity_id, SX_SMP_ERR_CMD,
                 SX_SMP_CMDERR_PROHIBITED);
        return 0;
    }
    sx_wr_init(&signed_bytes);
    rc = sx_smp_trans_signed(&signed_bytes, &prm, t);
    if (rc == 0) {
        vctx v = {c, t, signed_bytes.p, signed_bytes.len};
        sx_smp_err_type e = sc_verify(&v, &it->cmd);
        if (e)
            sc_resp_err(errs, c, t->corr_id, t->entity_id, e, 0);
        else
            ok = 1;
    } else {
        sc_resp_err(errs, c, t->corr_id, t->entity_id, SX_SMP_ERR_INTERNAL, 0);
    }
    sx_wr_free(&signed_bytes);
    return ok;
}
