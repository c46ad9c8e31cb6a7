/*
 * Hashes and key derivation: SHA-256 / SHA-512, SHA3-256 (OpenSSL 3 EVP),
 * HKDF-SHA512 (libsodium's HMAC) and the secure random source.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/sha.h>
#include <sodium.h>

#include "crypto/crypto.h"

void sx_random(void *out, size_t n)
{
    if (out && n)
        randombytes_buf(out, n);
}

uint64_t sx_siphash(const uint8_t key[16], const void *msg, size_t n)
{
    uint8_t h[crypto_shorthash_siphash24_BYTES];
    uint64_t v = 0;
    static const uint8_t none[1] = {0};
    crypto_shorthash_siphash24(h, n ? msg : none, (unsigned long long)n, key);
    for (size_t i = 0; i < sizeof h; i++)
        v |= (uint64_t)h[i] << (8 * i);
    return v;
}

int sx_sha256(uint8_t out[SX_SHA256_BYTES], const void *msg, size_t n)
{
    if (!out || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    /* OpenSSL's SHA-256 uses the CPU's SHA extensions where present
     * (about 4x libsodium's portable code for a 16 KB message) */
    if (!SHA256(n ? msg : (const void *)"", n, out))
        return SIMPLEX_ERR_CRYPTO;
    return SIMPLEX_OK;
}

int sx_sha512(uint8_t out[SX_SHA512_BYTES], const void *msg, size_t n)
{
    if (!out || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (crypto_hash_sha512(out, msg, (unsigned long long)n) != 0)
        return SIMPLEX_ERR_CRYPTO;
    return SIMPLEX_OK;
}

int sx_sha3_256(uint8_t out[32], const void *msg, size_t n)
{
    static const uint8_t none = 0;
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int ok;

    if (!out || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    ok = EVP_Digest(n ? msg : &none, n, md, &md_len, EVP_sha3_256(), NULL);
    if (ok != 1 || md_len != 32)
        return SIMPLEX_ERR_CRYPTO;
    memcpy(out, md, 32);
    return SIMPLEX_OK;
}

/* Largest output RFC 5869 allows with a 64-byte hash. */
#define HKDF_MAX_OUT (255u * 64u)

int sx_hkdf_sha512(uint8_t *out, size_t out_len, const uint8_t *salt,
                   size_t salt_len, const uint8_t *ikm, size_t ikm_len,
                   const uint8_t *info, size_t info_len)
{
    /* RFC 5869 with libsodium's HMAC-SHA-512: the block chain derives a
     * key for every 16 KB block, and OpenSSL's EVP_KDF (a provider fetch
     * and a context per call) cost several times the hashing itself. An
     * absent salt is HashLen zero bytes, which HMAC pads the same way as
     * an empty key. */
    static const uint8_t none[1] = {0};
    crypto_auth_hmacsha512_state st;
    uint8_t prk[64], t[64];
    size_t done = 0;
    uint8_t ctr = 0;

    if (!out || (!salt && salt_len) || (!ikm && ikm_len) ||
        (!info && info_len))
        return SIMPLEX_ERR_INVALID_ARG;
    if (out_len > HKDF_MAX_OUT)
        return SIMPLEX_ERR_INVALID_ARG;
    if (out_len == 0)
        return SIMPLEX_OK; /* as the reference: an empty output */

    crypto_auth_hmacsha512_init(&st, salt_len ? salt : none, salt_len);
    crypto_auth_hmacsha512_update(&st, ikm_len ? ikm : none, ikm_len);
    crypto_auth_hmacsha512_final(&st, prk);
    while (done < out_len) {
        size_t take = out_len - done < sizeof t ? out_len - done : sizeof t;
        ctr++;
        crypto_auth_hmacsha512_init(&st, prk, sizeof prk);
        if (ctr > 1)
            crypto_auth_hmacsha512_update(&st, t, sizeof t);
        if (info_len)
            crypto_auth_hmacsha512_update(&st, info, info_len);
        crypto_auth_hmacsha512_update(&st, &ctr, 1);
        crypto_auth_hmacsha512_final(&st, t);
        memcpy(out + done, t, take);
        done += take;
    }
    sx_memzero(&st, sizeof st);
    sx_memzero(prk, sizeof prk);
    sx_memzero(t, sizeof t);
    return SIMPLEX_OK;
}
