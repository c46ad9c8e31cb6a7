/*
 * Built-in known-answer tests of the primitives, run against the libsodium
 * and OpenSSL actually linked. Answers come from RFC 7748 (X25519, X448),
 * RFC 8032 (Ed25519, Ed448), FIPS 180 (SHA-256) and the reference
 * implementation's outputs (crypto_box, 16-byte-IV AES-GCM, HKDF-SHA512).
 */
#include <string.h>

#include "crypto/crypto.h"

static int unhex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes exactly n bytes of lowercase hex; 0 on success. */
static int unhex(uint8_t *out, size_t n, const char *hex)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = unhex_nibble(hex[2 * i]), lo = unhex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

#define UNHEX(buf, hex)                                                        \
    do {                                                                       \
        if (unhex((buf), sizeof(buf), (hex)) != 0)                             \
            goto fail;                                                         \
    } while (0)
#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            goto fail;                                                         \
    } while (0)

static int kat_sha256(void)
{
    uint8_t want[32], got[32];
    UNHEX(want,
          "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sx_sha256(got, "abc", 3) == SIMPLEX_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    return SIMPLEX_OK;
fail:
    return SIMPLEX_ERR_CRYPTO;
}

/* RFC 7748 section 6.1 */
static int kat_x25519(void)
{
    uint8_t sk[32], pk[32], want[32], got[32];
    int rc = SIMPLEX_ERR_CRYPTO;
    UNHEX(sk,
          "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    UNHEX(pk,
          "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    UNHEX(want,
          "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    CHECK(sx_x25519_dh(got, pk, sk) == SIMPLEX_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    rc = SIMPLEX_OK;
fail:
    sx_memzero(sk, sizeof sk);
    sx_memzero(got, sizeof got);
    return rc;
}

/* the reference's cbEncrypt of "hello" padded to 7 bytes */
static int kat_box(void)
{
    uint8_t dh[32], nonce[24], pt[7], want[23], key[32], got[23], back[7];
    int rc = SIMPLEX_ERR_CRYPTO;
    UNHEX(dh,
          "eba219dbf75878fb70f71404907d562831002fed9ce65db96f12adef7851b36a");
    UNHEX(nonce, "e4d260afe065afffe95796a89a8ee44ad6176282ed338c28");
    UNHEX(pt, "000568656c6c6f");
    UNHEX(want, "2af8a8ea25a89c3040139a3d06f84bd0fd47be8bae2d5c");
    CHECK(sx_cb_key_from_dh(key, dh) == SIMPLEX_OK);
    CHECK(sx_box_seal(got, pt, sizeof pt, nonce, key) == SIMPLEX_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    CHECK(sx_box_open(back, got, sizeof got, nonce, key) == SIMPLEX_OK);
    CHECK(memcmp(back, pt, sizeof pt) == 0);
    got[0] ^= 1;
    CHECK(sx_box_open(back, got, sizeof got, nonce, key) ==
          SIMPLEX_ERR_DECRYPT);
    rc = SIMPLEX_OK;
fail:
    sx_memzero(key, sizeof key);
    return rc;
}

/* RFC 8032 section 7.1, TEST 1 */
static int kat_ed25519(void)
{
    uint8_t sk[32], pk[32], want[64], got[64], gpk[32];
    int rc = SIMPLEX_ERR_CRYPTO;
    UNHEX(sk,
          "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
    UNHEX(pk,
          "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
    UNHEX(want, "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
    CHECK(sx_ed25519_public(gpk, sk) == SIMPLEX_OK);
    CHECK(memcmp(gpk, pk, sizeof pk) == 0);
    CHECK(sx_ed25519_sign(got, NULL, 0, sk) == SIMPLEX_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    CHECK(sx_ed25519_verify(got, NULL, 0, pk) == SIMPLEX_OK);
    got[10] ^= 0x40;
    CHECK(sx_ed25519_verify(got, NULL, 0, pk) == SIMPLEX_ERR_SIGNATURE);
    rc = SIMPLEX_OK;
fail:
    sx_memzero(sk, sizeof sk);
    return rc;
}

/* RFC 7748 section 6.2 */
static int kat_x448(void)
{
    uint8_t sk[56], pk[56], want[56], got[56];
    int rc = SIMPLEX_ERR_CRYPTO;
    UNHEX(sk, "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28d"
              "d9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b");
    UNHEX(pk, "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b430"
              "27d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609");
    UNHEX(want, "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282b"
                "b60c0b56fd2464c335543936521c24403085d59a449a5037514a879d");
    CHECK(sx_x448_dh(got, pk, sk) == SIMPLEX_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    rc = SIMPLEX_OK;
fail:
    sx_memzero(sk, sizeof sk);
    sx_memzero(got, sizeof got);
    return rc;
}

/* RFC 8032 section 7.4, "-----Blank" */
static int kat_ed448(void)
{
    uint8_t pk[57], sig[114];
    UNHEX(pk, "5fd7449b59b461fd2ce787ec616ad46a1da1342485a70e1f8a0ea75d80e96778"
              "edf124769b46c7061bd6783df1e50f6cd1fa1abeafe8256180");
    UNHEX(sig, "533a37f6bbe457251f023c0d88f976ae2dfb504a843e34d2074fd823d41a591f"
               "2b233f034f628281f2fd7a22ddd47d7828c59bd0a21bfd3980ff0d2028d4b18a"
               "9df63e006c5d1c2d345b925d8dc00b4104852db99ac5c7cdda8530a113a0f4db"
               "b61149f05a7363268c71d95808ff2e652600");
    CHECK(sx_ed448_verify(sig, NULL, 0, pk) == SIMPLEX_OK);
    sig[3] ^= 0x01;
    CHECK(sx_ed448_verify(sig, NULL, 0, pk) == SIMPLEX_ERR_SIGNATURE);
    return SIMPLEX_OK;
fail:
    return SIMPLEX_ERR_CRYPTO;
}

/* the reference's encryptAEAD of "" padded to 16 bytes, 16-byte IV */
static int kat_aes_gcm(void)
{
    uint8_t key[32], iv[16], want_ct[16], want_tag[16], ct[16], tag[16];
    uint8_t pt[16];
    const uint8_t *m = NULL;
    size_t ml = 1;
    int rc = SIMPLEX_ERR_CRYPTO;
    UNHEX(key,
          "f486b2ae3d2e5e5741536e94981be25b2938b6ed2afc9d5369ab69bcac6ed40b");
    UNHEX(iv, "4ae54b6b05a7cef494031d56ecc944b9");
    UNHEX(want_ct, "a8c3a87c78e59b74b815f8cbf7e173c2");
    UNHEX(want_tag, "433bd42bf64ff002b0af86d4b49b4d0e");
    CHECK(sx_aead_encrypt_padded(ct, tag, key, iv, sizeof iv, NULL, 0,
                                 sizeof ct, NULL, 0) == SIMPLEX_OK);
    CHECK(memcmp(ct, want_ct, sizeof ct) == 0);
    CHECK(memcmp(tag, want_tag, sizeof tag) == 0);
    CHECK(sx_aead_decrypt_padded(pt, &m, &ml, key, iv, sizeof iv, NULL, 0, ct,
                                 sizeof ct, tag) == SIMPLEX_OK);
    CHECK(ml == 0 && m == pt + 2);
    tag[15] ^= 0x80;
    CHECK(sx_aead_decrypt_padded(pt, &m, &ml, key, iv, sizeof iv, NULL, 0, ct,
                                 sizeof ct, tag) == SIMPLEX_ERR_DECRYPT);
    rc = SIMPLEX_OK;
fail:
    sx_memzero(key, sizeof key);
    return rc;
}

/* the reference's hkdf "salt" "input key material" "info" 16 */
static int kat_hkdf(void)
{
    static const char salt[] = "salt", ikm[] = "input key material",
                      info[] = "info";
    uint8_t want[16], got[16];
    UNHEX(want, "57026b6a13014b870f39e8b46105c12f");
    CHECK(sx_hkdf_sha512(got, sizeof got, (const uint8_t *)salt,
                         sizeof salt - 1, (const uint8_t *)ikm, sizeof ikm - 1,
                         (const uint8_t *)info, sizeof info - 1) == SIMPLEX_OK);
    CHECK(memcmp(got, want, sizeof want) == 0);
    return SIMPLEX_OK;
fail:
    return SIMPLEX_ERR_CRYPTO;
}

int sx_crypto_selftest(void)
{
    static int (*const kats[])(void) = {
        kat_sha256, kat_x25519, kat_box,     kat_ed25519,
        kat_x448,   kat_ed448,  kat_aes_gcm, kat_hkdf,
    };
    for (size_t i = 0; i < SX_ARRAY_LEN(kats); i++) {
        int rc = kats[i]();
        if (rc != SIMPLEX_OK)
            return rc;
    }
    return SIMPLEX_OK;
}

int simplex_selftest(void)
{
    if (!sx_initialized())
        return SIMPLEX_ERR_NOT_INITIALIZED;
    return sx_crypto_selftest();
}
