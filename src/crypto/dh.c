/*
 * Diffie-Hellman: X25519 with libsodium, X448 with OpenSSL 3 raw keys.
 * Private keys are the raw RFC 7748 scalars (clamped by the primitives).
 */
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "crypto/crypto.h"

/* ---- X25519 ---- */

int sx_x25519_public(uint8_t pk[SX_X25519_BYTES],
                     const uint8_t sk[SX_X25519_BYTES])
{
    uint8_t tmp[SX_X25519_BYTES];

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    if (crypto_scalarmult_curve25519_base(tmp, sk) != 0) {
        sx_memzero(tmp, sizeof tmp);
        return SIMPLEX_ERR_KEY;
    }
    memcpy(pk, tmp, sizeof tmp);
    return SIMPLEX_OK;
}

int sx_x25519_keypair(uint8_t pk[SX_X25519_BYTES], uint8_t sk[SX_X25519_BYTES])
{
    uint8_t s[SX_X25519_BYTES];
    int rc;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_random(s, sizeof s);
    rc = sx_x25519_public(pk, s);
    if (rc == SIMPLEX_OK)
        memcpy(sk, s, sizeof s);
    sx_memzero(s, sizeof s);
    return rc;
}

int sx_x25519_dh(uint8_t out[SX_X25519_BYTES], const uint8_t pk[SX_X25519_BYTES],
                 const uint8_t sk[SX_X25519_BYTES])
{
    uint8_t ss[SX_X25519_BYTES];

    if (!out || !pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    /* libsodium fails on low-order points and on an all-zero result */
    if (crypto_scalarmult_curve25519(ss, sk, pk) != 0) {
        sx_memzero(ss, sizeof ss);
        return SIMPLEX_ERR_KEY;
    }
    memcpy(out, ss, sizeof ss);
    sx_memzero(ss, sizeof ss);
    return SIMPLEX_OK;
}

/* ---- X448 ---- */

int sx_x448_public(uint8_t pk[SX_X448_BYTES], const uint8_t sk[SX_X448_BYTES])
{
    EVP_PKEY *key;
    size_t len = SX_X448_BYTES;
    uint8_t tmp[SX_X448_BYTES];
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    key = EVP_PKEY_new_raw_private_key(EVP_PKEY_X448, NULL, sk, SX_X448_BYTES);
    if (!key)
        return SIMPLEX_ERR_KEY;
    if (EVP_PKEY_get_raw_public_key(key, tmp, &len) == 1 &&
        len == SX_X448_BYTES) {
        memcpy(pk, tmp, sizeof tmp);
        rc = SIMPLEX_OK;
    }
    EVP_PKEY_free(key);
    return rc;
}

int sx_x448_keypair(uint8_t pk[SX_X448_BYTES], uint8_t sk[SX_X448_BYTES])
{
    uint8_t s[SX_X448_BYTES];
    int rc;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_random(s, sizeof s);
    rc = sx_x448_public(pk, s);
    if (rc == SIMPLEX_OK)
        memcpy(sk, s, sizeof s);
    sx_memzero(s, sizeof s);
    return rc;
}

int sx_x448_dh(uint8_t out[SX_X448_BYTES], const uint8_t pk[SX_X448_BYTES],
               const uint8_t sk[SX_X448_BYTES])
{
    EVP_PKEY *priv = NULL, *peer = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    uint8_t ss[SX_X448_BYTES];
    size_t len = sizeof ss;
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!out || !pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    priv = EVP_PKEY_new_raw_private_key(EVP_PKEY_X448, NULL, sk, SX_X448_BYTES);
    peer = EVP_PKEY_new_raw_public_key(EVP_PKEY_X448, NULL, pk, SX_X448_BYTES);
    if (!priv || !peer) {
        rc = SIMPLEX_ERR_KEY;
        goto done;
    }
    ctx = EVP_PKEY_CTX_new(priv, NULL);
    if (!ctx || EVP_PKEY_derive_init(ctx) != 1)
        goto done;
    if (EVP_PKEY_derive_set_peer(ctx, peer) != 1) {
        rc = SIMPLEX_ERR_KEY;
        goto done;
    }
    /* OpenSSL refuses an all-zero shared secret (a low-order point) */
    if (EVP_PKEY_derive(ctx, ss, &len) != 1 || len != SX_X448_BYTES) {
        rc = SIMPLEX_ERR_KEY;
        goto done;
    }
    memcpy(out, ss, sizeof ss);
    rc = SIMPLEX_OK;
done:
    sx_memzero(ss, sizeof ss);
    EVP_PKEY_CTX_free(ctx);
    EVP_PKEY_free(peer);
    EVP_PKEY_free(priv); /* OpenSSL clears private key material on free */
    return rc;
}
