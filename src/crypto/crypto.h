/*
 * Internal crypto layer: thin, constant-time wrappers over libsodium and
 * OpenSSL 3, shaped the way the SimpleX protocols use them.
 *
 * Every function returns 0 (SIMPLEX_OK) or a negative simplex_error.
 * Outputs are written only on success; on failure any partially written
 * secret output is wiped. Raw keys are plain byte arrays of the sizes
 * below; heap copies of secrets are released with sx_free_secret().
 */
#ifndef SX_CRYPTO_H
#define SX_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/sx.h"

/* ---- sizes ---- */
#define SX_X25519_BYTES 32     /* public and private */
#define SX_X448_BYTES 56       /* public and private */
#define SX_ED25519_PK_BYTES 32
#define SX_ED25519_SK_BYTES 32 /* the RFC 8032 seed, as the reference stores */
#define SX_ED25519_SIG_BYTES 64
#define SX_ED448_PK_BYTES 57
#define SX_ED448_SK_BYTES 57
#define SX_ED448_SIG_BYTES 114
#define SX_SHA256_BYTES 32
#define SX_SHA512_BYTES 64
#define SX_BOX_KEY_BYTES 32    /* crypto_box / secret box key */
#define SX_BOX_NONCE_BYTES 24
#define SX_BOX_TAG_BYTES 16    /* Poly1305 tag, placed before the ciphertext */
#define SX_AES_KEY_BYTES 32
#define SX_AES_TAG_BYTES 16
#define SX_CB_AUTH_BYTES 80    /* cbAuthenticate output: tag + sha512 */
#define SX_PAD_MAX_MSG 65533   /* largest message pad() accepts (2^16 - 3) */
/* Largest SubjectPublicKeyInfo / PKCS#8 DER any supported key produces
 * (the Ed448 PKCS#8: 16-byte header + 57-byte key). */
#define SX_KEY_DER_MAX 73

/* Seeds libsodium and checks OpenSSL; called by simplex_global_init(). */
int sx_crypto_init(void);

/* Cryptographically secure random bytes (libsodium). */
void sx_random(void *out, size_t n);

/* ---- hashes ---- */
int sx_sha256(uint8_t out[SX_SHA256_BYTES], const void *msg, size_t n);
int sx_sha512(uint8_t out[SX_SHA512_BYTES], const void *msg, size_t n);
int sx_sha3_256(uint8_t out[32], const void *msg, size_t n);
/* SipHash-2-4 of msg with a 16-byte secret key: hash-table indexes
 * derived from secret or attacker-chosen data. */
uint64_t sx_siphash(const uint8_t key[16], const void *msg, size_t n);

/* HKDF with SHA-512: extract(salt, ikm) then expand(info, out_len).
 * salt may be empty (salt_len 0, NULL allowed); out_len <= 255 * 64. */
int sx_hkdf_sha512(uint8_t *out, size_t out_len, const uint8_t *salt,
                   size_t salt_len, const uint8_t *ikm, size_t ikm_len,
                   const uint8_t *info, size_t info_len);

/* ---- X25519 (libsodium) ---- */
int sx_x25519_keypair(uint8_t pk[SX_X25519_BYTES], uint8_t sk[SX_X25519_BYTES]);
int sx_x25519_public(uint8_t pk[SX_X25519_BYTES],
                     const uint8_t sk[SX_X25519_BYTES]);
/* Raw shared secret (dh'). Fails with SIMPLEX_ERR_KEY on an all-zero
 * result (a low-order public key). */
int sx_x25519_dh(uint8_t out[SX_X25519_BYTES], const uint8_t pk[SX_X25519_BYTES],
                 const uint8_t sk[SX_X25519_BYTES]);

/* ---- X448 (OpenSSL) ---- */
int sx_x448_keypair(uint8_t pk[SX_X448_BYTES], uint8_t sk[SX_X448_BYTES]);
int sx_x448_public(uint8_t pk[SX_X448_BYTES], const uint8_t sk[SX_X448_BYTES]);
int sx_x448_dh(uint8_t out[SX_X448_BYTES], const uint8_t pk[SX_X448_BYTES],
               const uint8_t sk[SX_X448_BYTES]);

/* ---- Ed25519 (libsodium); sk is the 32-byte seed ---- */
int sx_ed25519_keypair(uint8_t pk[SX_ED25519_PK_BYTES],
                       uint8_t sk[SX_ED25519_SK_BYTES]);
int sx_ed25519_public(uint8_t pk[SX_ED25519_PK_BYTES],
                      const uint8_t sk[SX_ED25519_SK_BYTES]);
int sx_ed25519_sign(uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                    size_t n, const uint8_t sk[SX_ED25519_SK_BYTES]);
/* 0 when valid, SIMPLEX_ERR_SIGNATURE otherwise. */
int sx_ed25519_verify(const uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                      size_t n, const uint8_t pk[SX_ED25519_PK_BYTES]);

/* ---- Ed448 (OpenSSL), pure EdDSA with empty context ---- */
int sx_ed448_keypair(uint8_t pk[SX_ED448_PK_BYTES], uint8_t sk[SX_ED448_SK_BYTES]);
int sx_ed448_public(uint8_t pk[SX_ED448_PK_BYTES],
                    const uint8_t sk[SX_ED448_SK_BYTES]);
int sx_ed448_sign(uint8_t sig[SX_ED448_SIG_BYTES], const void *msg, size_t n,
                  const uint8_t sk[SX_ED448_SK_BYTES]);
int sx_ed448_verify(const uint8_t sig[SX_ED448_SIG_BYTES], const void *msg,
                    size_t n, const uint8_t pk[SX_ED448_PK_BYTES]);

/* ---- padding: 2-byte big-endian length || msg || '#' fill ---- */
/* Writes exactly padded_len bytes. SIMPLEX_ERR_TOO_LARGE when
 * n > SX_PAD_MAX_MSG or n + 2 > padded_len. */
int sx_pad(uint8_t *out, size_t padded_len, const uint8_t *msg, size_t n);
/* Points *msg into in. As the reference: the fill's content is not
 * checked; SIMPLEX_ERR_PARSE when in is shorter than 2 bytes or the
 * length exceeds what follows. */
int sx_unpad(const uint8_t *in, size_t n, const uint8_t **msg, size_t *msg_len);

/* ---- crypto_box / secret box exactly as the reference calls them ----
 * Output layout: 16-byte Poly1305 tag || XSalsa20 ciphertext.
 * A "box key" is the 32-byte key after HSalsa20 mixing; both constructions
 * then run XSalsa20-Poly1305 with it. */

/* crypto_box precomputation: HSalsa20(X25519(pk, sk), 0). */
int sx_cb_key(uint8_t key[SX_BOX_KEY_BYTES], const uint8_t pk[SX_X25519_BYTES],
              const uint8_t sk[SX_X25519_BYTES]);
/* The same from an already computed raw X25519 shared secret. */
int sx_cb_key_from_dh(uint8_t key[SX_BOX_KEY_BYTES],
                      const uint8_t dh[SX_X25519_BYTES]);
/* The reference's secret box key: HSalsa20(key, 0). */
int sx_sb_key(uint8_t key[SX_BOX_KEY_BYTES], const uint8_t secret[SX_BOX_KEY_BYTES]);

/* out must hold n + SX_BOX_TAG_BYTES; out may not overlap msg. */
int sx_box_seal(uint8_t *out, const uint8_t *msg, size_t n,
                const uint8_t nonce[SX_BOX_NONCE_BYTES],
                const uint8_t key[SX_BOX_KEY_BYTES]);
/* in is tag || ciphertext (n >= 16); out receives n - 16 bytes.
 * SIMPLEX_ERR_DECRYPT on a bad tag, SIMPLEX_ERR_TRUNCATED when n < 16. */
int sx_box_open(uint8_t *out, const uint8_t *in, size_t n,
                const uint8_t nonce[SX_BOX_NONCE_BYTES],
                const uint8_t key[SX_BOX_KEY_BYTES]);
/* pad(msg, padded_len) then seal: out holds padded_len + 16 bytes. */
int sx_box_seal_padded(uint8_t *out, size_t padded_len, const uint8_t *msg,
                       size_t n, const uint8_t nonce[SX_BOX_NONCE_BYTES],
                       const uint8_t key[SX_BOX_KEY_BYTES]);
/* open then unpad: out holds n - 16 bytes; *msg points into out. */
int sx_box_open_padded(uint8_t *out, const uint8_t **msg, size_t *msg_len,
                       const uint8_t *in, size_t n,
                       const uint8_t nonce[SX_BOX_NONCE_BYTES],
                       const uint8_t key[SX_BOX_KEY_BYTES]);

/* The deniable command authenticator:
 * box_seal(cb_key(server_pk, client_sk), nonce, sha512(msg)), 80 bytes. */
int sx_cb_authenticate(uint8_t out[SX_CB_AUTH_BYTES],
                       const uint8_t peer_pk[SX_X25519_BYTES],
                       const uint8_t own_sk[SX_X25519_BYTES],
                       const uint8_t nonce[SX_BOX_NONCE_BYTES],
                       const void *msg, size_t n);
/* 0 when auth matches, SIMPLEX_ERR_SIGNATURE otherwise. */
int sx_cb_verify(const uint8_t auth[SX_CB_AUTH_BYTES],
                 const uint8_t peer_pk[SX_X25519_BYTES],
                 const uint8_t own_sk[SX_X25519_BYTES],
                 const uint8_t nonce[SX_BOX_NONCE_BYTES], const void *msg,
                 size_t n);

/* cbNonce: first 24 bytes of s, zero-filled when shorter. */
void sx_cb_nonce(uint8_t nonce[SX_BOX_NONCE_BYTES], const uint8_t *s, size_t n);
void sx_reverse_nonce(uint8_t out[SX_BOX_NONCE_BYTES],
                      const uint8_t in[SX_BOX_NONCE_BYTES]);

/* Secret-box chains (sbcInit / sbcHkdf). */
int sx_sbchain_init(uint8_t ck1[32], uint8_t ck2[32], const uint8_t *salt,
                    size_t salt_len, const uint8_t *secret, size_t secret_len);
/* Advances ck in place; yields the secret box key and nonce for one use. */
int sx_sbchain_next(uint8_t ck[32], uint8_t key[SX_BOX_KEY_BYTES],
                    uint8_t nonce[SX_BOX_NONCE_BYTES]);

/* ---- AES-256-GCM (OpenSSL) with an arbitrary-length IV ----
 * The reference uses 16-byte IVs (processed by GHASH as any non-96-bit IV)
 * for the ratchet and 12-byte IVs elsewhere. ad may be empty. */
int sx_aes_gcm_encrypt(uint8_t *ct, uint8_t tag[SX_AES_TAG_BYTES],
                       const uint8_t key[SX_AES_KEY_BYTES], const uint8_t *iv,
                       size_t iv_len, const uint8_t *ad, size_t ad_len,
                       const uint8_t *pt, size_t n);
/* SIMPLEX_ERR_DECRYPT on a bad tag; pt is wiped then. */
int sx_aes_gcm_decrypt(uint8_t *pt, const uint8_t key[SX_AES_KEY_BYTES],
                       const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                       size_t ad_len, const uint8_t *ct, size_t n,
                       const uint8_t tag[SX_AES_TAG_BYTES]);
/* encryptAEAD: pad(pt, padded_len) then encrypt; ct holds padded_len. */
int sx_aead_encrypt_padded(uint8_t *ct, uint8_t tag[SX_AES_TAG_BYTES],
                           const uint8_t key[SX_AES_KEY_BYTES],
                           const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                           size_t ad_len, size_t padded_len, const uint8_t *pt,
                           size_t n);
/* decrypt then unpad: pt holds n bytes; *msg points into pt. */
int sx_aead_decrypt_padded(uint8_t *pt, const uint8_t **msg, size_t *msg_len,
                           const uint8_t key[SX_AES_KEY_BYTES],
                           const uint8_t *iv, size_t iv_len, const uint8_t *ad,
                           size_t ad_len, const uint8_t *ct, size_t n,
                           const uint8_t tag[SX_AES_TAG_BYTES]);

/* ---- key encodings exactly as the reference ----
 * Public keys: X.509 SubjectPublicKeyInfo DER. Private keys: PKCS#8
 * OneAsymmetricKey DER (version 0, no attributes, no public key).
 * Decoders are strict: exact DER, no trailing bytes, the expected OID. */
typedef enum sx_key_alg {
    SX_KEY_NONE = 0,
    SX_KEY_ED25519 = 1,
    SX_KEY_X25519 = 2,
    SX_KEY_ED448 = 3,
    SX_KEY_X448 = 4
} sx_key_alg;

/* Raw length of a public (or private) key of alg, 0 for an unknown alg. */
size_t sx_key_public_len(sx_key_alg alg);
size_t sx_key_private_len(sx_key_alg alg);

int sx_key_public_encode(uint8_t *out, size_t cap, size_t *out_len,
                         sx_key_alg alg, const uint8_t *raw);
/* want == SX_KEY_NONE accepts any supported algorithm; otherwise a key of
 * another algorithm is SIMPLEX_ERR_KEY. raw must hold 57 bytes. */
int sx_key_public_decode(sx_key_alg *alg, uint8_t *raw, size_t *raw_len,
                         sx_key_alg want, const uint8_t *der, size_t n);
int sx_key_private_encode(uint8_t *out, size_t cap, size_t *out_len,
                          sx_key_alg alg, const uint8_t *raw);
int sx_key_private_decode(sx_key_alg *alg, uint8_t *raw, size_t *raw_len,
                          sx_key_alg want, const uint8_t *der, size_t n);

/* Known-answer self-test of the primitives above (simplex_selftest). */
int sx_crypto_selftest(void);

/* Ed25519 with the key expanded once (seed || public key, libsodium's
 * 64-byte secret key): sx_ed25519_sign derives the public key on every
 * call, a scalar multiplication as costly as the signature's own; a
 * caller signing often with one key expands it once. Wipe x after use. */
#define SX_ED25519_EXPANDED_BYTES 64
int sx_ed25519_expand(uint8_t x[SX_ED25519_EXPANDED_BYTES],
                      const uint8_t sk[SX_ED25519_SK_BYTES]);
int sx_ed25519_sign_expanded(uint8_t sig[SX_ED25519_SIG_BYTES], const void *msg,
                             size_t n, const uint8_t x[SX_ED25519_EXPANDED_BYTES]);

#endif /* SX_CRYPTO_H */
