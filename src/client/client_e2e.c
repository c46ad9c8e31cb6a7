/*
 * SMP client: helpers for the per-queue end-to-end envelope, over the
 * codecs of smp_proto.h.
 */
#include <string.h>

#include "client/smp_proto.h"
#include "common/bytes.h"
#include "crypto/crypto.h"
#include "simplex/client.h"

int simplex_client_e2e_keypair(uint8_t public_key[32], uint8_t private_key[32])
{
    if (!public_key || !private_key)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!sx_initialized())
        return SIMPLEX_ERR_NOT_INITIALIZED;
    return sx_x25519_keypair(public_key, private_key);
}

int simplex_client_e2e_secret(uint8_t secret[32], const uint8_t peer_public[32],
                              const uint8_t own_private[32])
{
    if (!secret || !peer_public || !own_private)
        return SIMPLEX_ERR_INVALID_ARG;
    return sx_x25519_dh(secret, peer_public, own_private);
}

int simplex_client_e2e_seal(simplex_buf *out, const uint8_t secret[32],
                            uint16_t client_version, const uint8_t *e2e_public,
                            const uint8_t *sender_auth_key, const uint8_t *msg,
                            size_t msg_len)
{
    sx_smp_envelope env;
    sx_smp_client_msg m;
    sx_wr w;
    int rc;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->data = NULL;
    out->len = 0;
    if (!secret || (!msg && msg_len))
        return SIMPLEX_ERR_INVALID_ARG;
    if (!sx_initialized())
        return SIMPLEX_ERR_NOT_INITIALIZED;
    memset(&env, 0, sizeof env);
    memset(&m, 0, sizeof m);
    env.client_version = client_version;
    if (e2e_public)
        sx_smp_key_set(&env.e2e_key, SX_KEY_X25519, e2e_public);
    sx_random(env.nonce, sizeof env.nonce);
    if (sender_auth_key)
        sx_smp_key_set(&m.sender_key, SX_KEY_ED25519, sender_auth_key);
    m.body.p = msg;
    m.body.n = msg_len;
    sx_wr_init(&w);
    rc = sx_smp_e2e_seal(&w, &env, secret, &m,
                         e2e_public ? SX_SMP_E2E_CONF_PADDED
                                    : SX_SMP_E2E_MSG_PADDED);
    if (rc == 0)
        rc = sx_wr_take(&w, &out->data, &out->len);
    sx_wr_free(&w);
    return rc;
}

int simplex_client_e2e_peek(const uint8_t *envelope, size_t len,
                            uint16_t *client_version, uint8_t *e2e_public,
                            int *has_e2e_public)
{
    sx_smp_envelope env;
    int rc;
    if (!envelope)
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_smp_envelope_decode(&env, envelope, len);
    if (rc)
        return rc;
    if (client_version)
        *client_version = env.client_version;
    if (has_e2e_public)
        *has_e2e_public = env.e2e_key.alg == SX_KEY_X25519;
    if (e2e_public && env.e2e_key.alg == SX_KEY_X25519)
        memcpy(e2e_public, env.e2e_key.raw, 32);
    return 0;
}

int simplex_client_e2e_open(simplex_buf *out, const uint8_t secret[32],
                            const uint8_t *envelope, size_t len,
                            uint8_t *sender_auth_key, int *has_sender_auth_key)
{
    sx_smp_envelope env;
    sx_smp_client_msg m;
    uint8_t *plain;
    size_t cap;
    int rc;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    out->data = NULL;
    out->len = 0;
    if (!secret || !envelope)
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_smp_envelope_decode(&env, envelope, len);
    if (rc)
        return rc;
    if (env.enc_body.n < SX_BOX_TAG_BYTES)
        return SIMPLEX_ERR_TRUNCATED;
    cap = env.enc_body.n;
    plain = sx_malloc(cap);
    if (!plain)
        return SIMPLEX_ERR_NOMEM;
    rc = sx_smp_e2e_open(&m, plain, &env, secret);
    if (rc == 0 && m.sender_key.alg != SX_KEY_NONE &&
        m.sender_key.alg != SX_KEY_ED25519)
        rc = SIMPLEX_ERR_KEY;
    if (rc == 0) {
        out->data = sx_malloc(m.body.n ? m.body.n : 1);
        if (!out->data)
            rc = SIMPLEX_ERR_NOMEM;
    }
    if (rc == 0) {
        if (m.body.n)
            memcpy(out->data, m.body.p, m.body.n);
        out->len = m.body.n;
        if (has_sender_auth_key)
            *has_sender_auth_key = m.sender_key.alg == SX_KEY_ED25519;
        if (sender_auth_key && m.sender_key.alg == SX_KEY_ED25519)
            memcpy(sender_auth_key, m.sender_key.raw, 32);
    }
    sx_free_secret(plain, cap);
    return rc;
}
