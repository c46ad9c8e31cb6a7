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

int sx_ed25519_expand(uint8_t x[SX_ED25519_EXPANDED_BYTES],
                      const uint8_t sk[SX_ED25519_SK_BYTES])
{
    uint8_t p[crypto_sign_ed25519_PUBLICKEYBYTES];

    if (!x || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    /* libsodium's secret key is exactly seed || public key */
    if (crypto_sign_ed25519_seed_keypair(p, x, sk) != 0) {
        sx_memzero(x, SX_ED25519_EXPANDED_BYTES);
        return SIMPLEX_ERR_CRYPTO;
    }
    return SIMPLEX_OK;
}

/* SHA-512 of a || b. OpenSSL's SHA-512 (assembly) rather than libsodium's
 * portable one: a command's authorization covers the whole transmission,
 * up to 16 KB, and the two hashes over it are most of a signature's cost. */
static int sha512_2(uint8_t out[64], EVP_MD_CTX *ctx, const void *a, size_t an,
                    const void *b, size_t bn)
{
    unsigned int len = 0;
    return EVP_DigestInit_ex(ctx, EVP_sha512(), NULL) == 1 &&
           EVP_DigestUpdate(ctx, a, an) == 1 &&
           (bn == 0 || EVP_DigestUpdate(ctx, b, bn) == 1) &&
           EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == 64;
}

int sx_ed25519_sign_expanded(uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                             size_t n, const uint8_t x[SX_ED25519_EXPANDED_BYTES])
{
    /* RFC 8032 section 5.1.6, deterministic: the same signature as
     * crypto_sign_ed25519_detached with x as its secret key. */
    EVP_MD_CTX *ctx;
    uint8_t az[64], nonce[64], hram[64], wide[64];
    uint8_t r[32], a[32], s[32], R[32], ha[32];
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!sig || !x || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    ctx = EVP_MD_CTX_new();
    if (!ctx)
        return SIMPLEX_ERR_NOMEM;
    if (!sha512_2(az, ctx, x, 32, NULL, 0))
        goto done;
    az[0] &= 248;
    az[31] &= 127;
    az[31] |= 64;
    /* r = SHA-512(prefix || M) mod L, R = rB */
    if (!sha512_2(nonce, ctx, az + 32, 32, msg, n))
        goto done;
    crypto_core_ed25519_scalar_reduce(r, nonce);
    if (crypto_scalarmult_ed25519_base_noclamp(R, r) != 0)
        goto done; /* r == 0: probability 2^-252 */
    /* k = SHA-512(R || A || M) mod L */
    memcpy(wide, R, 32);
    memcpy(wide + 32, x + 32, 32);
    if (!sha512_2(hram, ctx, wide, 64, msg, n))
        goto done;
    crypto_core_ed25519_scalar_reduce(ha, hram);
    /* S = (k * a + r) mod L, a reduced first (the clamped scalar is >= L) */
    memset(wide, 0, sizeof wide);
    memcpy(wide, az, 32);
    crypto_core_ed25519_scalar_reduce(a, wide);
    crypto_core_ed25519_scalar_mul(s, ha, a);
    crypto_core_ed25519_scalar_add(s, s, r);
    memcpy(sig, R, 32);
    memcpy(sig + 32, s, 32);
    rc = SIMPLEX_OK;
done:
    EVP_MD_CTX_free(ctx);
    sx_memzero(az, sizeof az);
    sx_memzero(nonce, sizeof nonce);
    sx_memzero(wide, sizeof wide);
    sx_memzero(r, sizeof r);
    sx_memzero(a, sizeof a);
    sx_memzero(s, sizeof s);
    return rc;
}

int sx_ed25519_sign(uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                    size_t n, const uint8_t sk[SX_ED25519_SK_BYTES])
{
    uint8_t x[SX_ED25519_EXPANDED_BYTES];
    int rc;

    if (!sig || !sk || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_ed25519_expand(x, sk);
    if (rc == SIMPLEX_OK)
        rc = sx_ed25519_sign_expanded(sig, msg, n, x);
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
