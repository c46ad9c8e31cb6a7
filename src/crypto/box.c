/*
 * Padding, crypto_box / secret box as the reference builds them, the
 * crypto_box command authenticator, nonces and secret-box chains.
 *
 * Both the reference's crypto_box and its secret box run XSalsa20-Poly1305
 * (NaCl secretbox, tag first) with a key that has been through one
 * HSalsa20 round with a zero input: for crypto_box the key is the X25519
 * shared secret (exactly crypto_box_beforenm), for the secret box it is the
 * 32-byte SbKey itself. After that mixing the two are the same operation.
 */
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"

/* ---- padding ---- */

int sx_pad(uint8_t *out, size_t padded_len, const uint8_t *msg, size_t n)
{
    if (!out || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (n > SX_PAD_MAX_MSG || padded_len < 2 || n > padded_len - 2)
        return SIMPLEX_ERR_TOO_LARGE;
    out[0] = (uint8_t)(n >> 8);
    out[1] = (uint8_t)n;
    if (n)
        memmove(out + 2, msg, n);
    memset(out + 2 + n, '#', padded_len - 2 - n);
    return SIMPLEX_OK;
}

int sx_unpad(const uint8_t *in, size_t n, const uint8_t **msg, size_t *msg_len)
{
    size_t len;

    if (!msg || !msg_len || (!in && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (n < 2)
        return SIMPLEX_ERR_PARSE;
    len = ((size_t)in[0] << 8) | in[1];
    if (len > n - 2)
        return SIMPLEX_ERR_PARSE;
    *msg = in + 2;
    *msg_len = len;
    return SIMPLEX_OK;
}

/* ---- keys ---- */

static const uint8_t zero16[16] = {0};

int sx_cb_key_from_dh(uint8_t key[SX_BOX_KEY_BYTES],
                      const uint8_t dh[SX_X25519_BYTES])
{
    uint8_t k[SX_BOX_KEY_BYTES];

    if (!key || !dh)
        return SIMPLEX_ERR_INVALID_ARG;
    if (crypto_core_hsalsa20(k, zero16, dh, NULL) != 0) {
        sx_memzero(k, sizeof k);
        return SIMPLEX_ERR_CRYPTO;
    }
    memcpy(key, k, sizeof k);
    sx_memzero(k, sizeof k);
    return SIMPLEX_OK;
}

int sx_sb_key(uint8_t key[SX_BOX_KEY_BYTES], const uint8_t secret[SX_BOX_KEY_BYTES])
{
    /* the same mixing, applied to the symmetric key */
    return sx_cb_key_from_dh(key, secret);
}

int sx_cb_key(uint8_t key[SX_BOX_KEY_BYTES], const uint8_t pk[SX_X25519_BYTES],
              const uint8_t sk[SX_X25519_BYTES])
{
    uint8_t ss[SX_X25519_BYTES];
    int rc;

    if (!key || !pk || !sk)
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_x25519_dh(ss, pk, sk);
    if (rc == SIMPLEX_OK)
        rc = sx_cb_key_from_dh(key, ss);
    sx_memzero(ss, sizeof ss);
    return rc;
}

/* ---- seal / open ---- */

int sx_box_seal(uint8_t *out, const uint8_t *msg, size_t n,
                const uint8_t nonce[SX_BOX_NONCE_BYTES],
                const uint8_t key[SX_BOX_KEY_BYTES])
{
    if (!out || !nonce || !key || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (n > crypto_secretbox_MESSAGEBYTES_MAX)
        return SIMPLEX_ERR_TOO_LARGE;
    /* tag at out[0..16), ciphertext after it */
    if (crypto_secretbox_detached(out + SX_BOX_TAG_BYTES, out,
                                  n ? msg : zero16, (unsigned long long)n,
                                  nonce, key) != 0) {
        sx_memzero(out, n + SX_BOX_TAG_BYTES);
        return SIMPLEX_ERR_CRYPTO;
    }
    return SIMPLEX_OK;
}

int sx_box_open(uint8_t *out, const uint8_t *in, size_t n,
                const uint8_t nonce[SX_BOX_NONCE_BYTES],
                const uint8_t key[SX_BOX_KEY_BYTES])
{
    if (!out || !nonce || !key || (!in && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (n < SX_BOX_TAG_BYTES)
        return SIMPLEX_ERR_TRUNCATED;
    /* the tag is checked (in constant time) before anything is written */
    if (crypto_secretbox_open_detached(out, in + SX_BOX_TAG_BYTES, in,
                                       (unsigned long long)(n - SX_BOX_TAG_BYTES),
                                       nonce, key) != 0)
        return SIMPLEX_ERR_DECRYPT;
    return SIMPLEX_OK;
}

int sx_box_seal_padded(uint8_t *out, size_t padded_len, const uint8_t *msg,
                       size_t n, const uint8_t nonce[SX_BOX_NONCE_BYTES],
                       const uint8_t key[SX_BOX_KEY_BYTES])
{
    uint8_t *body;
    int rc;

    if (!out || !nonce || !key || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (padded_len > crypto_secretbox_MESSAGEBYTES_MAX)
        return SIMPLEX_ERR_TOO_LARGE;
    /* pad in place after the tag, then encrypt in place (libsodium
     * allows the message and ciphertext to coincide) */
    body = out + SX_BOX_TAG_BYTES;
    rc = sx_pad(body, padded_len, msg, n);
    if (rc != SIMPLEX_OK)
        return rc;
    if (crypto_secretbox_detached(body, out, body,
                                  (unsigned long long)padded_len, nonce,
                                  key) != 0) {
        sx_memzero(out, padded_len + SX_BOX_TAG_BYTES);
        return SIMPLEX_ERR_CRYPTO;
    }
    return SIMPLEX_OK;
}

int sx_box_open_padded(uint8_t *out, const uint8_t **msg, size_t *msg_len,
                       const uint8_t *in, size_t n,
                       const uint8_t nonce[SX_BOX_NONCE_BYTES],
                       const uint8_t key[SX_BOX_KEY_BYTES])
{
    /* crypto_secretbox_open_detached taken apart, so that only the
     * length prefix and the message are decrypted: the tag still covers
     * every byte, but a short message in a 16 KB padded block (an OK, a
     * batch of ACKs) skips most of the stream cipher. The steps and the
     * result are libsodium's: subkey = HSalsa20(key, nonce[0..16]); the
     * first Salsa20 block gives the Poly1305 key and the keystream for
     * the first 32 bytes; the rest continues from block counter 1. */
    uint8_t subkey[32], block0[64];
    const uint8_t *c;
    size_t clen, len, head, i;
    int rc = SIMPLEX_ERR_DECRYPT;

    if (!out || !msg || !msg_len || !nonce || !key || (!in && n))
        return SIMPLEX_ERR_INVALID_ARG;
    if (n < SX_BOX_TAG_BYTES)
        return SIMPLEX_ERR_TRUNCATED;
    c = in + SX_BOX_TAG_BYTES;
    clen = n - SX_BOX_TAG_BYTES;
    if (crypto_core_hsalsa20(subkey, nonce, key, NULL) != 0 ||
        crypto_stream_salsa20(block0, sizeof block0, nonce + 16, subkey) != 0)
        goto done;
    if (crypto_onetimeauth_poly1305_verify(in, c, (unsigned long long)clen,
                                           block0) != 0)
        goto done;
    head = clen < 32 ? clen : 32;
    for (i = 0; i < head; i++)
        out[i] = c[i] ^ block0[32 + i];
    if (clen < 2) {
        rc = SIMPLEX_ERR_PARSE;
        goto done;
    }
    len = ((size_t)out[0] << 8) | out[1];
    if (len > clen - 2) {
        rc = SIMPLEX_ERR_PARSE;
        sx_memzero(out, head);
        goto done;
    }
    if (2 + len > 32 &&
        crypto_stream_salsa20_xor_ic(out + 32, c + 32,
                                     (unsigned long long)(2 + len - 32),
                                     nonce + 16, 1, subkey) != 0) {
        sx_memzero(out, 2 + len);
        goto done;
    }
    *msg = out + 2;
    *msg_len = len;
    rc = SIMPLEX_OK;
done:
    sx_memzero(subkey, sizeof subkey);
    sx_memzero(block0, sizeof block0);
    return rc;
}

/* ---- the crypto_box authenticator ---- */

int sx_cb_authenticate(uint8_t out[SX_CB_AUTH_BYTES],
                       const uint8_t peer_pk[SX_X25519_BYTES],
                       const uint8_t own_sk[SX_X25519_BYTES],
                       const uint8_t nonce[SX_BOX_NONCE_BYTES],
                       const void *msg, size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES];
    uint8_t digest[SX_SHA512_BYTES];
    uint8_t auth[SX_CB_AUTH_BYTES];
    int rc;

    if (!out || !peer_pk || !own_sk || !nonce || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_cb_key(key, peer_pk, own_sk);
    if (rc == SIMPLEX_OK)
        rc = sx_sha512(digest, msg, n);
    if (rc == SIMPLEX_OK)
        rc = sx_box_seal(auth, digest, sizeof digest, nonce, key);
    if (rc == SIMPLEX_OK)
        memcpy(out, auth, sizeof auth);
    sx_memzero(key, sizeof key);
    sx_memzero(digest, sizeof digest);
    sx_memzero(auth, sizeof auth);
    return rc;
}

int sx_cb_verify(const uint8_t auth[SX_CB_AUTH_BYTES],
                 const uint8_t peer_pk[SX_X25519_BYTES],
                 const uint8_t own_sk[SX_X25519_BYTES],
                 const uint8_t nonce[SX_BOX_NONCE_BYTES], const void *msg,
                 size_t n)
{
    uint8_t key[SX_BOX_KEY_BYTES];
    uint8_t want[SX_SHA512_BYTES];
    uint8_t got[SX_SHA512_BYTES];
    int rc;

    if (!auth || !peer_pk || !own_sk || !nonce || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    /* as the reference: open the box, compare with the message digest;
     * a key that yields no shared secret verifies nothing */
    rc = sx_cb_key(key, peer_pk, own_sk);
    if (rc == SIMPLEX_OK)
        rc = sx_sha512(want, msg, n);
    if (rc == SIMPLEX_OK)
        rc = sx_box_open(got, auth, SX_CB_AUTH_BYTES, nonce, key);
    if (rc == SIMPLEX_OK && sx_memeq_ct(got, want, sizeof want) != 0)
        rc = SIMPLEX_ERR_SIGNATURE;
    if (rc == SIMPLEX_ERR_KEY || rc == SIMPLEX_ERR_DECRYPT)
        rc = SIMPLEX_ERR_SIGNATURE;
    sx_memzero(key, sizeof key);
    sx_memzero(want, sizeof want);
    sx_memzero(got, sizeof got);
    return rc;
}

/* ---- nonces ---- */

void sx_cb_nonce(uint8_t nonce[SX_BOX_NONCE_BYTES], const uint8_t *s, size_t n)
{
    size_t k;

    if (!nonce)
        return;
    k = (s && n) ? (n < SX_BOX_NONCE_BYTES ? n : SX_BOX_NONCE_BYTES) : 0;
    if (k)
        memmove(nonce, s, k);
    memset(nonce + k, 0, SX_BOX_NONCE_BYTES - k);
}

void sx_reverse_nonce(uint8_t out[SX_BOX_NONCE_BYTES],
                      const uint8_t in[SX_BOX_NONCE_BYTES])
{
    uint8_t tmp[SX_BOX_NONCE_BYTES];

    if (!out || !in)
        return;
    for (size_t i = 0; i < SX_BOX_NONCE_BYTES; i++)
        tmp[i] = in[SX_BOX_NONCE_BYTES - 1 - i];
    memcpy(out, tmp, sizeof tmp);
}

/* ---- secret-box chains ---- */

static const uint8_t sbc_init_info[] = "SimpleXSbChainInit";
static const uint8_t sbc_step_info[] = "SimpleXSbChain";

int sx_sbchain_init(uint8_t ck1[32], uint8_t ck2[32], const uint8_t *salt,
                    size_t salt_len, const uint8_t *secret, size_t secret_len)
{
    uint8_t okm[64];
    int rc;

    if (!ck1 || !ck2 || (!salt && salt_len) || (!secret && secret_len))
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_hkdf_sha512(okm, sizeof okm, salt, salt_len, secret, secret_len,
                        sbc_init_info, sizeof sbc_init_info - 1);
    if (rc == SIMPLEX_OK) {
        memcpy(ck1, okm, 32);
        memcpy(ck2, okm + 32, 32);
    }
    sx_memzero(okm, sizeof okm);
    return rc;
}

int sx_sbchain_next(uint8_t ck[32], uint8_t key[SX_BOX_KEY_BYTES],
                    uint8_t nonce[SX_BOX_NONCE_BYTES])
{
    uint8_t okm[32 + SX_BOX_KEY_BYTES + SX_BOX_NONCE_BYTES];
    int rc;

    if (!ck || !key || !nonce)
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_hkdf_sha512(okm, sizeof okm, NULL, 0, ck, 32, sbc_step_info,
                        sizeof sbc_step_info - 1);
    if (rc == SIMPLEX_OK) {
        memcpy(ck, okm, 32);
        memcpy(key, okm + 32, SX_BOX_KEY_BYTES);
        memcpy(nonce, okm + 32 + SX_BOX_KEY_BYTES, SX_BOX_NONCE_BYTES);
    }
    sx_memzero(okm, sizeof okm);
    return rc;
}
