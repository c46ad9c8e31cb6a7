/*
 * Hashes and key derivation: SHA-256 / SHA-512 (libsodium), SHA3-256 and
 * HKDF-SHA512 (OpenSSL 3 EVP), and the secure random source.
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
    /* OpenSSL treats an absent salt as HashLen zero bytes, which HMAC
     * makes equivalent to an empty salt; parameters must not point at
     * NULL, so empty inputs point here. */
    static uint8_t empty[1] = {0};
    char digest[] = "SHA512";
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_AND_EXPAND;
    OSSL_PARAM params[6];
    size_t np = 0;
    EVP_KDF *kdf = NULL;
    EVP_KDF_CTX *kctx = NULL;
    int rc = SIMPLEX_ERR_CRYPTO;

    if (!out || (!salt && salt_len) || (!ikm && ikm_len) ||
        (!info && info_len))
        return SIMPLEX_ERR_INVALID_ARG;
    if (out_len > HKDF_MAX_OUT)
        return SIMPLEX_ERR_INVALID_ARG;
    if (out_len == 0)
        return SIMPLEX_OK; /* as the reference: an empty output */

    params[np++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
                                                    digest, 0);
    params[np++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[np++] = OSSL_PARAM_construct_octet_string(
        OSSL_KDF_PARAM_KEY, ikm_len ? (void *)(uintptr_t)ikm : empty,
        ikm_len);
    if (salt_len)
        params[np++] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt, salt_len);
    if (info_len)
        params[np++] = OSSL_PARAM_construct_octet_string(
            OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)info, info_len);
    params[np] = OSSL_PARAM_construct_end();

    kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    if (!kdf)
        goto done;
    kctx = EVP_KDF_CTX_new(kdf);
    if (!kctx)
        goto done;
    if (EVP_KDF_derive(kctx, out, out_len, params) != 1) {
        sx_memzero(out, out_len);
        goto done;
    }
    rc = SIMPLEX_OK;
done:
    EVP_KDF_CTX_free(kctx); /* clears the copied key material */
    EVP_KDF_free(kdf);
    return rc;
}
