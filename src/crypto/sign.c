/*
 * Signatures: Ed25519 with libsodium (the private key is the 32-byte
 * RFC 8032 seed; libsodium's 64-byte expanded form exists only on the
 * stack during a call) and Ed448 with OpenSSL 3 (pure EdDSA, empty
 * context, as EVP_DigestSign does for a NULL digest).
 */
#include <string.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "crypto/crypto.h"

/* A non-NULL address for empty messages. */
static const uint8_t no_bytes[1] = {0};

/* ---- Ed25519 ---- */

int sx_ed25519_public(uint8_t pk[SX_ED25519_PK_BYTES],
                      const uint8_t sk[SX_ED25519_SK_BYTES])
{
    uint8_t p[crypto_sign_ed25519_PUBLICKEYBYTES];
    uint8_t x[crypto_sign_ed25519_SECRETKEYBYTES];
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    if (crypto_sign_ed25519_seed_keypair(p, x, sk) == 0) {
        memcpy(pk, p, sizeof p);
        rc = SIMPLEX_OK;
    }
    sx_memzero(x, sizeof x);
    return rc;
}

int sx_ed25519_keypair(uint8_t pk[SX_ED25519_PK_BYTES],
                       uint8_t sk[SX_ED25519_SK_BYTES])
{
    uint8_t seed[SX_ED25519_SK_BYTES];
    int rc;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_random(seed, sizeof seed);
    rc = sx_ed25519_public(pk, seed);
    if (rc == SIMPLEX_OK)
        memcpy(sk, seed, sizeof seed);
    sx_memzero(seed, sizeof seed);
    return rc;
}

int sx_ed25519_sign(uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                    size_t n, const uint8_t sk[SX_ED25519_SK_BYTES])
{
    uint8_t p[crypto_sign_ed25519_PUBLICKEYBYTES];
    uint8_t x[crypto_sign_ed25519_SECRETKEYBYTES];
    uint8_t s[SX_ED25519_SIG_BYTES];
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!sig || !sk || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (crypto_sign_ed25519_seed_keypair(p, x, sk) == 0 &&
        crypto_sign_ed25519_detached(s, NULL, n ? msg : no_bytes,
                                     (unsigned long long)n, x) == 0) {
        memcpy(sig, s, sizeof s);
        rc = SIMPLEX_OK;
    }
    sx_memzero(x, sizeof x);
    return rc;
}

int sx_ed25519_verify(const uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                      size_t n, const uint8_t pk[SX_ED25519_PK_BYTES])
{
    if (!sig || !pk || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (crypto_sign_ed25519_verify_detached(sig, n ? msg : no_bytes,
                                            (unsigned long long)n, pk) != 0)
        return SIMPLEX_ERR_SIGNATURE;
    return SIMPLEX_OK;
}

/* ---- Ed448 ---- */

int sx_ed448_public(uint8_t pk[SX_ED448_PK_BYTES],
                    const uint8_t sk[SX_ED448_SK_BYTES])
{
    EVP_PKEY *key;
    uint8_t tmp[SX_ED448_PK_BYTES];
    size_t len = sizeof tmp;
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED448, NULL, sk,
                                       SX_ED448_SK_BYTES);
    if (!key)
        return SIMPLEX_ERR_KEY;
    if (EVP_PKEY_get_raw_public_key(key, tmp, &len) == 1 &&
        len == SX_ED448_PK_BYTES) {
        memcpy(pk, tmp, sizeof tmp);
        rc = SIMPLEX_OK;
    }
    EVP_PKEY_free(key);
    return rc;
}

int sx_ed448_keypair(uint8_t pk[SX_ED448_PK_BYTES], uint8_t sk[SX_ED448_SK_BYTES])
{
    uint8_t s[SX_ED448_SK_BYTES];
    int rc;

    if (!pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_random(s, sizeof s);
    rc = sx_ed448_public(pk, s);
    if (rc == SIMPLEX_OK)
        memcpy(sk, s, sizeof s);
    sx_memzero(s, sizeof s);
    return rc;
}

int sx_ed448_sign(uint8_t sig[SX_ED448_SIG_BYTES], const void *msg, size_t n,
                  const uint8_t sk[SX_ED448_SK_BYTES])
{
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *ctx = NULL;
    uint8_t s[SX_ED448_SIG_BYTES];
    size_t len = sizeof s;
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!sig || !sk || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED448, NULL, sk,
                                       SX_ED448_SK_BYTES);
    if (!key) {
        rc = SIMPLEX_ERR_KEY;
        goto done;
    }
    ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1)
        goto done;
    if (EVP_DigestSign(ctx, s, &len, n ? msg : no_bytes, n) != 1 ||
        len != SX_ED448_SIG_BYTES)
        goto done;
    memcpy(sig, s, sizeof s);
    rc = SIMPLEX_OK;
done:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return rc;
}

int sx_ed448_verify(const uint8_t sig[SX_ED448_SIG_BYTES], const void *msg,
                    size_t n, const uint8_t pk[SX_ED448_PK_BYTES])
{
    EVP_PKEY *key = NULL;
    EVP_MD_CTX *ctx = NULL;
    int rc = SIMPLEX_ERR_SIGNATURE;

    if (!sig || !pk || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    /* a public key OpenSSL cannot use verifies nothing */
    key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED448, NULL, pk,
                                      SX_ED448_PK_BYTES);
    if (!key)
        goto done;
    ctx = EVP_MD_CTX_new();
    if (!ctx) {
        rc = SIMPLEX_ERR_CRYPTO;
        goto done;
    }
    if (EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) != 1)
        goto done;
    if (EVP_DigestVerify(ctx, sig, SX_ED448_SIG_BYTES, n ? msg : no_bytes,
                         n) == 1)
        rc = SIMPLEX_OK;
done:
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(key);
    return rc;
}
