/*
 * AES-256-GCM with OpenSSL 3 EVP. The IV may have any non-zero length:
 * a 12-byte IV is used directly, any other length goes through GHASH as
 * the GCM specification says (the reference's 16-byte ratchet IVs).
 */
#include <limits.h>
#include <string.h>

#include <openssl/evp.h>

#include "crypto/crypto.h"

/* EVP takes int lengths: feed long inputs in pieces. */
#define CHUNK ((size_t)1 << 30)

static int gcm_init(EVP_CIPHER_CTX *ctx, int enc, const uint8_t *key,
                    const uint8_t *iv, size_t iv_len)
{
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1)
        return 0;
    if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, (int)iv_len, NULL) !=
        1)
        return 0;
    return EVP_CipherInit_ex(ctx, NULL, NULL, key, iv, enc) == 1;
}

static int gcm_aad(EVP_CIPHER_CTX *ctx, const uint8_t *ad, size_t ad_len)
{
    while (ad_len) {
        size_t k = ad_len < CHUNK ? ad_len : CHUNK;
        int outl = 0;
        if (EVP_CipherUpdate(ctx, NULL, &outl, ad, (int)k) != 1)
            return 0;
        ad += k;
        ad_len -= k;
    }
    return 1;
}

static int gcm_data(EVP_CIPHER_CTX *ctx, uint8_t *out, const uint8_t *in,
                    size_t n)
{
    while (n) {
        size_t k = n < CHUNK ? n : CHUNK;
        int outl = 0;
        if (EVP_CipherUpdate(ctx, out, &outl, in, (int)k) != 1 ||
            (size_t)outl != k)
            return 0;
        out += k;
        in += k;
        n -= k;
    }
    return 1;
}

static int check_args(const uint8_t *key, const uint8_t *iv, size_t iv_len,
                      const uint8_t *ad, size_t ad_len)
{
    if (!key || !iv || (!ad && ad_len))
        return SIMPLEX_ERR_INVALID_ARG;
    if (iv_len == 0 || iv_len > INT_MAX)
        return SIMPLEX_ERR_INVALID_ARG;
    return SIMPLEX_OK;
}

int sx_aes_gcm_encrypt(uint8_t *ct, uint8_t tag[SX_AES_TAG_BYTES],
                       const uint8_t key[SX_AES_KEY_BYTES], const uint8_t *iv,
                       size_t iv_len, const uint8_t *ad, size_t ad_len,
                       const uint8_t *pt, size_t n)
{
    EVP_CIPHER_CTX *ctx;
    uint8_t fin[16];
    int finl = 0;
    int rc = check_args(key, iv, iv_len, ad, ad_len);

    if (rc != SIMPLEX_OK)
        return rc;
    if (!tag || (!ct && n) || (!pt && n))
        return SIMPLEX_ERR_INVALID_ARG;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return SIMPLEX_ERR_CRYPTO;
    rc = SIMPLEX_ERR_CRYPTO;
    if (!gcm_init(ctx, 1, key, iv, iv_len) || !gcm_aad(ctx, ad, ad_len) ||
        !gcm_data(ctx, ct, pt, n) || EVP_EncryptFinal_ex(ctx, fin, &finl) != 1 ||
        finl != 0 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SX_AES_TAG_BYTES, tag) !=
            1) {
        /* ct may hold plaintext if encryption ran in place */
        if (n)
            sx_memzero(ct, n);
        sx_memzero(tag, SX_AES_TAG_BYTES);
        goto done;
    }
    rc = SIMPLEX_OK;
done:
    EVP_CIPHER_CTX_free(ctx); /* wipes the key schedule */
    return rc;
}

int sx_aes_gcm_decrypt(uint8_t *pt, const uint8_t key[SX_AES_KEY_BYTES],
                       const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *ct, size_t n,
                       const uint8_t tag[SX_AES_TAG_BYTES])
{
    EVP_CIPHER_CTX *ctx;
    uint8_t t[SX_AES_TAG_BYTES];
    uint8_t fin[16];
    int finl = 0;
    int rc = check_args(key, iv, iv_len, ad, ad_len);

    if (rc != SIMPLEX_OK)
        return rc;
    if (!tag || (!ct && n) || (!pt && n))
        return SIMPLEX_ERR_INVALID_ARG;
    ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return SIMPLEX_ERR_CRYPTO;
    memcpy(t, tag, sizeof t); /* the ctrl takes a non-const pointer */
    rc = SIMPLEX_ERR_CRYPTO;
    if (!gcm_init(ctx, 0, key, iv, iv_len) || !gcm_aad(ctx, ad, ad_len) ||
        !gcm_data(ctx, pt, ct, n) ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SX_AES_TAG_BYTES, t) !=
            1)
        goto fail;
    /* OpenSSL compares the tag in constant time */
    if (EVP_DecryptFinal_ex(ctx, fin, &finl) != 1 || finl != 0) {
        rc = SIMPLEX_ERR_DECRYPT;
        goto fail;
    }
    rc = SIMPLEX_OK;
    goto done;
fail:
    if (n)
        sx_memzero(pt, n);
done:
    EVP_CIPHER_CTX_free(ctx);
    return rc;
}

int sx_aead_encrypt_padded(uint8_t *ct, uint8_t tag[SX_AES_TAG_BYTES],
                           const uint8_t key[SX_AES_KEY_BYTES],
                           const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                           size_t ad_len, size_t padded_len, const uint8_t *pt,
                           size_t n)
{
    int rc = check_args(key, iv, iv_len, ad, ad_len);

    if (rc != SIMPLEX_OK)
        return rc;
    if (!ct || !tag || (!pt && n))
        return SIMPLEX_ERR_INVALID_ARG;
    /* pad into ct, then encrypt in place (EVP allows in == out) */
    rc = sx_pad(ct, padded_len, pt, n);
    if (rc != SIMPLEX_OK)
        return rc;
    rc = sx_aes_gcm_encrypt(ct, tag, key, iv, iv_len, ad, ad_len, ct,
                            padded_len);
    return rc;
}

int sx_aead_decrypt_padded(uint8_t *pt, const uint8_t **msg, size_t *msg_len,
                           const uint8_t key[SX_AES_KEY_BYTES],
                           const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                           size_t ad_len, const uint8_t *ct, size_t n,
                           const uint8_t tag[SX_AES_TAG_BYTES])
{
    const uint8_t *m;
    size_t ml;
    int rc = check_args(key, iv, iv_len, ad, ad_len);

    if (rc != SIMPLEX_OK)
        return rc;
    if (!msg || !msg_len || !tag || (!pt && n) || (!ct && n))
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_aes_gcm_decrypt(pt, key, iv, iv_len, ad, ad_len, ct, n, tag);
    if (rc != SIMPLEX_OK)
        return rc;
    rc = sx_unpad(pt, n, &m, &ml);
    if (rc != SIMPLEX_OK) {
        if (n)
            sx_memzero(pt, n);
        return rc;
    }
    *msg = m;
    *msg_len = ml;
    return SIMPLEX_OK;
}
