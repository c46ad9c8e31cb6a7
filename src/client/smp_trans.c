/*
 * SMP codecs, part 3: transmissions and their authorization, transport
 * blocks (batching, padding, chain encryption) and message bodies.
 */
#include <string.h>

#include "client/smp_internal.h"

/* ---- transmissions ---- */

int sx_smp_implied_session(uint16_t v)
{
    return v >= SX_SMP_V_AUTH_CMDS;
}

int sx_smp_service_auth(uint16_t v)
{
    return v >= SX_SMP_V_SERVICE_CERTS;
}

static sx_smp_auth_kind auth_kind_of_len(size_t n)
{
    switch (n) {
    case 0:
        return SX_SMP_AUTH_NONE;
    case SX_ED25519_SIG_BYTES:
        return SX_SMP_AUTH_ED25519;
    case SX_ED448_SIG_BYTES:
        return SX_SMP_AUTH_ED448;
    case SX_CB_AUTH_BYTES:
        return SX_SMP_AUTH_X25519;
    default:
        return (sx_smp_auth_kind)-1;
    }
}

int sx_smp_trans_decode(sx_smp_trans *out, const sx_smp_params *prm,
                        const uint8_t *p, size_t n)
{
    sx_rd r;
    sx_smp_auth_kind kind;

    if (!out || !prm)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(smp_rd_short(&r, &out->auth));
    kind = auth_kind_of_len(out->auth.n);
    if ((int)kind < 0)
        return SIMPLEX_ERR_PARSE;
    out->auth_kind = kind;
    if (sx_smp_service_auth(prm->version) && out->auth.n > 0) {
        SMP_TRY(sx_rd_maybe(&r, &out->has_service_sig));
        if (out->has_service_sig) {
            SMP_TRY(smp_rd_short(&r, &out->service_sig));
            if (out->service_sig.n != SX_ED25519_SIG_BYTES)
                return SIMPLEX_ERR_PARSE;
        }
    }
    out->authorized.p = r.p + r.pos;
    out->authorized.n = r.len - r.pos;
    if (!sx_smp_implied_session(prm->version))
        SMP_TRY(smp_rd_short(&r, &out->session_id));
    SMP_TRY(smp_rd_short(&r, &out->corr_id));
    SMP_TRY(smp_rd_short(&r, &out->entity_id));
    smp_rd_tail(&r, &out->command);
    return 0;
}

int sx_smp_trans_signed(sx_wr *w, const sx_smp_params *prm,
                        const sx_smp_trans *t)
{
    if (sx_smp_implied_session(prm->version))
        smp_wr_short(w, prm->session_id);
    sx_wr_raw(w, t->authorized.p, t->authorized.n);
    return sx_wr_error(w);
}

int sx_smp_trans_body_encode(sx_wr *w, const sx_smp_params *prm,
                             sx_smp_bytes corr_id, sx_smp_bytes entity_id,
                             const uint8_t *command, size_t command_len)
{
    if (!sx_smp_implied_session(prm->version))
        smp_wr_short(w, prm->session_id);
    smp_wr_short(w, corr_id);
    smp_wr_short(w, entity_id);
    sx_wr_raw(w, command, command_len);
    return sx_wr_error(w);
}

int sx_smp_authorized_encode(sx_wr *w, const sx_smp_params *prm,
                             sx_smp_bytes corr_id, sx_smp_bytes entity_id,
                             const uint8_t *command, size_t command_len)
{
    smp_wr_short(w, prm->session_id);
    smp_wr_short(w, corr_id);
    smp_wr_short(w, entity_id);
    sx_wr_raw(w, command, command_len);
    return sx_wr_error(w);
}

int sx_smp_authorize(sx_smp_auth *out, sx_key_alg alg, const uint8_t *priv,
                     const uint8_t server_dh_pub[SX_X25519_BYTES],
                     sx_smp_bytes corr_id, const uint8_t *authorized,
                     size_t authorized_len)
{
    uint8_t nonce[SX_BOX_NONCE_BYTES];
    if (!out || !priv)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    switch (alg) {
    case SX_KEY_ED25519:
        SMP_TRY(sx_ed25519_sign(out->bytes, authorized, authorized_len, priv));
        out->kind = SX_SMP_AUTH_ED25519;
        out->len = SX_ED25519_SIG_BYTES;
        return 0;
    case SX_KEY_ED448:
        SMP_TRY(sx_ed448_sign(out->bytes, authorized, authorized_len, priv));
        out->kind = SX_SMP_AUTH_ED448;
        out->len = SX_ED448_SIG_BYTES;
        return 0;
    case SX_KEY_X25519:
        if (!server_dh_pub)
            return SIMPLEX_ERR_KEY; /* reference: TENoServerAuth */
        sx_cb_nonce(nonce, corr_id.p, corr_id.n);
        SMP_TRY(sx_cb_authenticate(out->bytes, server_dh_pub, priv, nonce,
                                   authorized, authorized_len));
        out->kind = SX_SMP_AUTH_X25519;
        out->len = SX_CB_AUTH_BYTES;
        return 0;
    default:
        return SIMPLEX_ERR_KEY;
    }
}

int sx_smp_authorize_ed25519_expanded(
    sx_smp_auth *out, const uint8_t x[SX_ED25519_EXPANDED_BYTES],
    const uint8_t *authorized, size_t authorized_len)
{
    if (!out || !x)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    SMP_TRY(sx_ed25519_sign_expanded(out->bytes, authorized, authorized_len,
                                     x));
    out->kind = SX_SMP_AUTH_ED25519;
    out->len = SX_ED25519_SIG_BYTES;
    return 0;
}

int sx_smp_verify(const sx_smp_bytes *auth, sx_smp_auth_kind kind,
                  const sx_smp_key *pub,
                  const uint8_t server_dh_priv[SX_X25519_BYTES],
                  sx_smp_bytes corr_id, const uint8_t *authorized,
                  size_t authorized_len)
{
    uint8_t nonce[SX_BOX_NONCE_BYTES];
    if (!auth || !pub)
        return SIMPLEX_ERR_INVALID_ARG;
    switch (kind) {
    case SX_SMP_AUTH_ED25519:
        if (pub->alg != SX_KEY_ED25519 || auth->n != SX_ED25519_SIG_BYTES)
            return SIMPLEX_ERR_SIGNATURE;
        return sx_ed25519_verify(auth->p, authorized, authorized_len,
                                 pub->raw);
    case SX_SMP_AUTH_ED448:
        if (pub->alg != SX_KEY_ED448 || auth->n != SX_ED448_SIG_BYTES)
            return SIMPLEX_ERR_SIGNATURE;
        return sx_ed448_verify(auth->p, authorized, authorized_len, pub->raw);
    case SX_SMP_AUTH_X25519:
        if (pub->alg != SX_KEY_X25519 || auth->n != SX_CB_AUTH_BYTES ||
            !server_dh_priv)
            return SIMPLEX_ERR_SIGNATURE;
        sx_cb_nonce(nonce, corr_id.p, corr_id.n);
        return sx_cb_verify(auth->p, pub->raw, server_dh_priv, nonce,
                            authorized, authorized_len);
    default:
        return SIMPLEX_ERR_SIGNATURE;
    }
}

int sx_smp_trans_encode(sx_wr *w, uint16_t v, const sx_smp_auth *auth,
                        const sx_smp_bytes *service_sig, const uint8_t *body,
                        size_t body_len)
{
    size_t alen = auth ? auth->len : 0;
    if (alen > SX_SMP_AUTH_MAX)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_short(w, auth ? auth->bytes : NULL, alen);
    if (alen > 0 && sx_smp_service_auth(v)) {
        sx_wr_maybe(w, service_sig != NULL);
        if (service_sig)
            smp_wr_short(w, *service_sig);
    }
    sx_wr_raw(w, body, body_len);
    return sx_wr_error(w);
}

/* ---- batches and blocks ---- */

int sx_smp_batch_encode(sx_wr *w, const sx_smp_bytes *ts, size_t n)
{
    if (n == 0 || n > SX_SMP_MAX_BATCH)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_count(w, n);
    for (size_t i = 0; i < n; i++)
        smp_wr_large(w, ts[i]);
    return sx_wr_error(w);
}

int sx_smp_batch_decode(sx_smp_batch *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    size_t k;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->n = 0;
    sx_rd_init(&r, p, n);
    SMP_TRY(sx_rd_count_nonempty(&r, &k));
    for (size_t i = 0; i < k; i++)
        SMP_TRY(smp_rd_large(&r, &out->t[i]));
    SMP_TRY(sx_rd_end(&r));
    out->n = k;
    return 0;
}

size_t sx_smp_batch_fit(const sx_smp_bytes *ts, size_t n)
{
    /* The reference folds from the right: later blocks are filled first
     * and the first block takes what is left. */
    size_t len = 0, cnt = 0;
    for (size_t i = n; i-- > 0;) {
        size_t s = ts[i].n + 2;
        if (len + s <= SX_SMP_BATCH_ROOM && cnt < SX_SMP_MAX_BATCH) {
            len += s;
            cnt++;
        } else if (s <= SX_SMP_BATCH_ROOM) {
            len = s;
            cnt = 1;
        } else {
            len = 0;
            cnt = 0;
        }
    }
    return cnt;
}

int sx_smp_block_pad(uint8_t block[SX_SMP_BLOCK_SIZE], const uint8_t *content,
                     size_t n)
{
    return sx_pad(block, SX_SMP_BLOCK_SIZE, content, n);
}

int sx_smp_block_unpad(const uint8_t block[SX_SMP_BLOCK_SIZE],
                       const uint8_t **content, size_t *n)
{
    return sx_unpad(block, SX_SMP_BLOCK_SIZE, content, n);
}

int sx_smp_chain_init(sx_smp_chain *c, int is_server,
                      const uint8_t *session_id, size_t session_id_len,
                      const uint8_t dh_secret[SX_X25519_BYTES])
{
    uint8_t ck1[32], ck2[32];
    int rc = sx_sbchain_init(ck1, ck2, session_id, session_id_len, dh_secret,
                             SX_X25519_BYTES);
    if (rc == 0) {
        memcpy(c->snd_ck, is_server ? ck1 : ck2, 32);
        memcpy(c->rcv_ck, is_server ? ck2 : ck1, 32);
    }
    sx_memzero(ck1, sizeof ck1);
    sx_memzero(ck2, sizeof ck2);
    return rc;
}

void sx_smp_chain_wipe(sx_smp_chain *c)
{
    sx_memzero(c, sizeof *c);
}

static int chain_step(uint8_t ck[32], uint8_t box_key[SX_BOX_KEY_BYTES],
                      uint8_t nonce[SX_BOX_NONCE_BYTES])
{
    uint8_t sk[SX_BOX_KEY_BYTES];
    int rc = sx_sbchain_next(ck, sk, nonce);
    if (rc == 0)
        rc = sx_sb_key(box_key, sk);
    sx_memzero(sk, sizeof sk);
    return rc;
}

int sx_smp_block_encrypt(sx_smp_chain *c, uint8_t block[SX_SMP_BLOCK_SIZE],
                         const uint8_t *content, size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES], nonce[SX_BOX_NONCE_BYTES];
    int rc;
    if (n + 2 > SX_SMP_BLOCK_SIZE - SX_SMP_BLOCK_TAG)
        return SIMPLEX_ERR_TOO_LARGE; /* checked before advancing */
    rc = chain_step(c->snd_ck, key, nonce);
    if (rc == 0)
        rc = sx_box_seal_padded(block, SX_SMP_BLOCK_SIZE - SX_SMP_BLOCK_TAG,
                                content, n, nonce, key);
    sx_memzero(key, sizeof key);
    return rc;
}

int sx_smp_block_decrypt(sx_smp_chain *c,
                         uint8_t plain[SX_SMP_BLOCK_SIZE - SX_SMP_BLOCK_TAG],
                         const uint8_t block[SX_SMP_BLOCK_SIZE],
                         const uint8_t **content, size_t *n)
{
    uint8_t key[SX_BOX_KEY_BYTES], nonce[SX_BOX_NONCE_BYTES];
    int rc = chain_step(c->rcv_ck, key, nonce);
    if (rc == 0)
        rc = sx_box_open_padded(plain, content, n, block, SX_SMP_BLOCK_SIZE,
                                nonce, key);
    sx_memzero(key, sizeof key);
    return rc;
}

/* ---- message bodies ---- */

int sx_smp_cb_encrypt(uint8_t *out, size_t padded_len,
                      const uint8_t dh_secret[32],
                      const uint8_t nonce[SX_BOX_NONCE_BYTES],
                      const uint8_t *plain, size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES];
    int rc = sx_cb_key_from_dh(key, dh_secret);
    if (rc == 0)
        rc = sx_box_seal_padded(out, padded_len, plain, n, nonce, key);
    sx_memzero(key, sizeof key);
    return rc;
}

int sx_smp_cb_decrypt(uint8_t *out, const uint8_t **plain, size_t *plain_len,
                      const uint8_t dh_secret[32],
                      const uint8_t nonce[SX_BOX_NONCE_BYTES],
                      const uint8_t *enc, size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES];
    int rc = sx_cb_key_from_dh(key, dh_secret);
    if (rc == 0)
        rc = sx_box_open_padded(out, plain, plain_len, enc, n, nonce, key);
    sx_memzero(key, sizeof key);
    return rc;
}

int sx_smp_msg_body_encrypt(uint8_t *out, const uint8_t dh_secret[32],
                            sx_smp_bytes msg_id, const uint8_t *plain,
                            size_t n)
{
    uint8_t nonce[SX_BOX_NONCE_BYTES];
    if (n + 2 > SX_SMP_RCV_MSG_PADDED)
        return SIMPLEX_ERR_TOO_LARGE;
    sx_cb_nonce(nonce, msg_id.p, msg_id.n);
    return sx_smp_cb_encrypt(out, SX_SMP_RCV_MSG_PADDED, dh_secret, nonce,
                             plain, n);
}

int sx_smp_msg_body_decrypt(uint8_t *out, const uint8_t **plain,
                            size_t *plain_len, const uint8_t dh_secret[32],
                            sx_smp_bytes msg_id, const uint8_t *enc, size_t n)
{
    uint8_t nonce[SX_BOX_NONCE_BYTES];
    sx_cb_nonce(nonce, msg_id.p, msg_id.n);
    return sx_smp_cb_decrypt(out, plain, plain_len, dh_secret, nonce, enc, n);
}

static const char quota_tag[] = "QUOTA";

int sx_smp_rcv_body_encode(sx_wr *w, const sx_smp_rcv_body *b)
{
    if (b->quota) {
        sx_wr_str(w, quota_tag);
        sx_wr_u8(w, ' ');
        sx_wr_i64(w, b->ts);
    } else {
        sx_wr_i64(w, b->ts);
        sx_wr_bool(w, b->notification);
        sx_wr_u8(w, ' ');
        sx_wr_raw(w, b->body.p, b->body.n);
    }
    return sx_wr_error(w);
}

int sx_smp_rcv_body_decode(sx_smp_rcv_body *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    sx_smp_bytes extra;
    memset(out, 0, sizeof *out);
    /* The quota marker is tried first ("QUOTA", one white-space character
     * as attoparsec's space accepts, the timestamp). Only when that fails
     * are the same bytes parsed as a message; once it succeeded, bytes
     * after it are an error (the reference's alternative commits). */
    if (n >= sizeof quota_tag - 1 + 1 + 8 &&
        memcmp(p, quota_tag, sizeof quota_tag - 1) == 0) {
        uint8_t sp = p[sizeof quota_tag - 1];
        if (sp == ' ' || (sp >= '\t' && sp <= '\r')) {
            if (n != sizeof quota_tag - 1 + 1 + 8)
                return SIMPLEX_ERR_TRAILING;
            sx_rd_init(&r, p + sizeof quota_tag, 8);
            SMP_TRY(sx_rd_i64(&r, &out->ts));
            out->quota = 1;
            return 0;
        }
    }
    sx_rd_init(&r, p, n);
    SMP_TRY(sx_rd_i64(&r, &out->ts));
    SMP_TRY(sx_rd_bool(&r, &out->notification));
    smp_rd_word(&r, &extra);
    SMP_TRY(smp_rd_space(&r));
    smp_rd_tail(&r, &out->body);
    return 0;
}

int sx_smp_envelope_encode(sx_wr *w, const sx_smp_envelope *e)
{
    sx_wr_u16(w, e->client_version);
    sx_wr_maybe(w, e->e2e_key.alg != SX_KEY_NONE);
    if (e->e2e_key.alg != SX_KEY_NONE)
        sx_smp_key_encode(w, &e->e2e_key);
    sx_wr_raw(w, e->nonce, sizeof e->nonce);
    sx_wr_raw(w, e->enc_body.p, e->enc_body.n);
    return sx_wr_error(w);
}

int sx_smp_envelope_decode(sx_smp_envelope *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    int present;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(sx_rd_u16(&r, &out->client_version));
    SMP_TRY(sx_rd_maybe(&r, &present));
    if (present)
        SMP_TRY(sx_smp_key_decode(&r, &out->e2e_key, SX_KEY_X25519));
    SMP_TRY(sx_rd_copy(&r, out->nonce, sizeof out->nonce));
    smp_rd_tail(&r, &out->enc_body);
    return 0;
}

int sx_smp_client_msg_encode(sx_wr *w, const sx_smp_client_msg *m)
{
    if (m->sender_key.alg != SX_KEY_NONE) {
        sx_wr_u8(w, 'K');
        sx_smp_key_encode(w, &m->sender_key);
    } else {
        sx_wr_u8(w, '_');
    }
    sx_wr_raw(w, m->body.p, m->body.n);
    return sx_wr_error(w);
}

int sx_smp_client_msg_decode(sx_smp_client_msg *out, const uint8_t *p,
                             size_t n)
{
    sx_rd r;
    uint8_t h;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(sx_rd_u8(&r, &h));
    if (h == 'K')
        SMP_TRY(sx_smp_key_decode(&r, &out->sender_key, SX_KEY_NONE));
    else if (h != '_')
        return SIMPLEX_ERR_PARSE;
    smp_rd_tail(&r, &out->body);
    return 0;
}

/* ---- proxy forwarding ---- */

int sx_smp_fwd_trans_encode(sx_wr *w, const sx_smp_fwd_trans *f)
{
    smp_wr_short(w, f->corr_id);
    sx_wr_u16(w, f->version);
    sx_smp_key_encode(w, &f->key);
    sx_wr_raw(w, f->enc.p, f->enc.n);
    return sx_wr_error(w);
}

int sx_smp_fwd_trans_decode(sx_smp_fwd_trans *out, const uint8_t *p,
                            size_t n)
{
    sx_rd r;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(smp_rd_short(&r, &out->corr_id));
    SMP_TRY(sx_rd_u16(&r, &out->version));
    SMP_TRY(sx_smp_key_decode(&r, &out->key, SX_KEY_X25519));
    smp_rd_tail(&r, &out->enc);
    return 0;
}

int sx_smp_fwd_resp_encode(sx_wr *w, const sx_smp_fwd_resp *f)
{
    smp_wr_short(w, f->corr_id);
    sx_wr_raw(w, f->enc.p, f->enc.n);
    return sx_wr_error(w);
}

int sx_smp_fwd_resp_decode(sx_smp_fwd_resp *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    SMP_TRY(smp_rd_short(&r, &out->corr_id));
    smp_rd_tail(&r, &out->enc);
    return 0;
}

int sx_smp_cb_seal_nopad(uint8_t *out, const uint8_t dh_secret[32],
                         const uint8_t nonce[SX_BOX_NONCE_BYTES],
                         const uint8_t *plain, size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES];
    int rc = sx_cb_key_from_dh(key, dh_secret);
    if (rc == 0)
        rc = sx_box_seal(out, plain, n, nonce, key);
    sx_memzero(key, sizeof key);
    return rc;
}

int sx_smp_cb_open_nopad(uint8_t *out, const uint8_t dh_secret[32],
                         const uint8_t nonce[SX_BOX_NONCE_BYTES],
                         const uint8_t *enc, size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES];
    int rc = sx_cb_key_from_dh(key, dh_secret);
    if (rc == 0)
        rc = sx_box_open(out, enc, n, nonce, key);
    sx_memzero(key, sizeof key);
    return rc;
}

/* ---- the per-queue e2e layer ---- */

int sx_smp_e2e_seal(sx_wr *w, const sx_smp_envelope *env,
                    const uint8_t dh_secret[32], const sx_smp_client_msg *m,
                    size_t padded_len)
{
    sx_wr plain;
    sx_smp_envelope e;
    uint8_t *enc;
    int rc;

    if (!w || !env || !dh_secret || !m || padded_len < 2)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_init(&plain);
    rc = sx_smp_client_msg_encode(&plain, m);
    if (rc == 0 && plain.len + 2 > padded_len)
        rc = SIMPLEX_ERR_TOO_LARGE;
    if (rc < 0) {
        sx_wr_free(&plain);
        return rc;
    }
    enc = sx_malloc(padded_len + SX_BOX_TAG_BYTES);
    if (!enc) {
        sx_wr_free(&plain);
        return SIMPLEX_ERR_NOMEM;
    }
    rc = sx_smp_cb_encrypt(enc, padded_len, dh_secret, env->nonce, plain.p,
                           plain.len);
    sx_wr_free(&plain);
    if (rc == 0) {
        e = *env;
        e.enc_body.p = enc;
        e.enc_body.n = padded_len + SX_BOX_TAG_BYTES;
        rc = sx_smp_envelope_encode(w, &e);
    }
    sx_free(enc);
    return rc;
}

int sx_smp_e2e_open(sx_smp_client_msg *m, uint8_t *out,
                    const sx_smp_envelope *env, const uint8_t dh_secret[32])
{
    const uint8_t *plain;
    size_t n;
    if (!m || !out || !env || !dh_secret)
        return SIMPLEX_ERR_INVALID_ARG;
    SMP_TRY(sx_smp_cb_decrypt(out, &plain, &n, dh_secret, env->nonce,
                              env->enc_body.p, env->enc_body.n));
    return sx_smp_client_msg_decode(m, plain, n);
}
