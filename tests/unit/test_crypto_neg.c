/*
 * Crypto layer, the other side: tampered, truncated and malformed inputs,
 * low-order keys, bad arguments (each with the right error and no output
 * written), edge cases checked against independent computations, and
 * round trips with real random keys.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "crypto/crypto.h"
#include "simplex/simplex.h"

#define SENTINEL 0xa5

static int setup(void **state)
{
    (void)state;
    return simplex_global_init(NULL) == SIMPLEX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    simplex_global_cleanup();
    return 0;
}

static void assert_all(const uint8_t *p, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != v)
            fail_msg("byte %zu is 0x%02x, expected 0x%02x", i, p[i], v);
}

static size_t rnd_below(size_t n)
{
    return n ? (size_t)randombytes_uniform((uint32_t)n) : 0;
}

/* ---- crypto_box / secret box ---- */

static void test_box_tamper(void **state)
{
    uint8_t key[32], key2[32], nonce[24], msg[100], box[116], out[100];
    (void)state;

    sx_random(key, sizeof key);
    sx_random(msg, sizeof msg);
    sx_random(nonce, sizeof nonce);
    assert_int_equal(sx_box_seal(box, msg, sizeof msg, nonce, key), SIMPLEX_OK);
    assert_int_equal(sx_box_open(out, box, sizeof box, nonce, key), SIMPLEX_OK);
    assert_memory_equal(out, msg, sizeof msg);

    /* every single-bit change of tag or ciphertext is caught */
    for (size_t i = 0; i < sizeof box; i++) {
        box[i] ^= (uint8_t)(1u << (i % 8));
        memset(out, SENTINEL, sizeof out);
        assert_int_equal(sx_box_open(out, box, sizeof box, nonce, key),
                         SIMPLEX_ERR_DECRYPT);
        assert_all(out, sizeof out, SENTINEL); /* nothing written */
        box[i] ^= (uint8_t)(1u << (i % 8));
    }
    /* wrong key, wrong nonce, reversed nonce */
    memcpy(key2, key, 32);
    key2[31] ^= 0x80;
    assert_int_equal(sx_box_open(out, box, sizeof box, nonce, key2),
                     SIMPLEX_ERR_DECRYPT);
    nonce[23] ^= 1;
    assert_int_equal(sx_box_open(out, box, sizeof box, nonce, key),
                     SIMPLEX_ERR_DECRYPT);
    nonce[23] ^= 1;
    {
        uint8_t rn[24];
        sx_reverse_nonce(rn, nonce);
        assert_int_equal(sx_box_open(out, box, sizeof box, rn, key),
                         SIMPLEX_ERR_DECRYPT);
    }
    /* cut short or extended */
    assert_int_equal(sx_box_open(out, box, sizeof box - 1, nonce, key),
                     SIMPLEX_ERR_DECRYPT);
    for (size_t n = 0; n < SX_BOX_TAG_BYTES; n++) {
        memset(out, SENTINEL, sizeof out);
        assert_int_equal(sx_box_open(out, box, n, nonce, key),
                         SIMPLEX_ERR_TRUNCATED);
        assert_all(out, sizeof out, SENTINEL);
    }
    assert_int_equal(sx_box_open(out, NULL, 0, nonce, key),
                     SIMPLEX_ERR_TRUNCATED);
    /* a bare tag is a valid box of the empty message only if it is the
     * right tag */
    assert_int_equal(sx_box_open(out, box, SX_BOX_TAG_BYTES, nonce, key),
                     SIMPLEX_ERR_DECRYPT);
    assert_int_equal(sx_box_seal(box, NULL, 0, nonce, key), SIMPLEX_OK);
    assert_int_equal(sx_box_open(out, box, SX_BOX_TAG_BYTES, nonce, key),
                     SIMPLEX_OK);
}

static void test_box_padded_errors(void **state)
{
    uint8_t key[32], nonce[24], box[64 + 16], out[64], msg[70];
    const uint8_t *m = (const uint8_t *)"x";
    size_t ml = 7;
    (void)state;

    sx_random(key, sizeof key);
    sx_random(nonce, sizeof nonce);
    memset(msg, 'm', sizeof msg);

    /* a message that does not fit leaves the output alone */
    memset(box, SENTINEL, sizeof box);
    assert_int_equal(sx_box_seal_padded(box, 64, msg, 63, nonce, key),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_all(box, sizeof box, SENTINEL);
    assert_int_equal(sx_box_seal_padded(box, 64, msg, 62, nonce, key),
                     SIMPLEX_OK);
    assert_int_equal(sx_box_open_padded(out, &m, &ml, box, sizeof box, nonce,
                                        key),
                     SIMPLEX_OK);
    assert_int_equal(ml, 62);
    assert_memory_equal(m, msg, 62);

    /* authentic but not padded: declared length beyond the data */
    {
        uint8_t bad[4] = {0x00, 0x03, 'a', 'b'};
        uint8_t sealed[20], o[4];
        const uint8_t *m2 = NULL;
        size_t l2 = 99;
        assert_int_equal(sx_box_seal(sealed, bad, sizeof bad, nonce, key),
                         SIMPLEX_OK);
        assert_int_equal(sx_box_open_padded(o, &m2, &l2, sealed, sizeof sealed,
                                            nonce, key),
                         SIMPLEX_ERR_PARSE);
        assert_null(m2);
        assert_int_equal(l2, 99);
        assert_all(o, sizeof o, 0); /* decrypted bytes wiped */
        /* a one-byte plaintext cannot hold the length */
        assert_int_equal(sx_box_seal(sealed, bad, 1, nonce, key), SIMPLEX_OK);
        assert_int_equal(
            sx_box_open_padded(o, &m2, &l2, sealed, 17, nonce, key),
            SIMPLEX_ERR_PARSE);
        assert_int_equal(sx_box_seal(sealed, bad, 0, nonce, key), SIMPLEX_OK);
        assert_int_equal(
            sx_box_open_padded(o, &m2, &l2, sealed, 16, nonce, key),
            SIMPLEX_ERR_PARSE);
        assert_int_equal(
            sx_box_open_padded(o, &m2, &l2, sealed, 15, nonce, key),
            SIMPLEX_ERR_TRUNCATED);
    }
    box[20] ^= 4;
    assert_int_equal(sx_box_open_padded(out, &m, &ml, box, sizeof box, nonce,
                                        key),
                     SIMPLEX_ERR_DECRYPT);
}

/* low-order X25519 points (libsodium's list): all give an all-zero secret */
static const char *const low_order_25519[] = {
    "0000000000000000000000000000000000000000000000000000000000000000",
    "0100000000000000000000000000000000000000000000000000000000000000",
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
};

static void test_low_order_keys(void **state)
{
    uint8_t pk[32], sk[32], mypk[32], out[56], key[32], auth[80], nonce[24];
    (void)state;

    assert_int_equal(sx_x25519_keypair(mypk, sk), SIMPLEX_OK);
    sx_random(nonce, sizeof nonce);
    for (size_t i = 0; i < SX_ARRAY_LEN(low_order_25519); i++) {
        assert_int_equal(sodium_hex2bin(pk, 32, low_order_25519[i], 64, NULL,
                                        NULL, NULL),
                         0);
        memset(out, SENTINEL, sizeof out);
        assert_int_equal(sx_x25519_dh(out, pk, sk), SIMPLEX_ERR_KEY);
        assert_all(out, 32, SENTINEL);
        memset(key, SENTINEL, sizeof key);
        assert_int_equal(sx_cb_key(key, pk, sk), SIMPLEX_ERR_KEY);
        assert_all(key, 32, SENTINEL);
        memset(auth, SENTINEL, sizeof auth);
        assert_int_equal(sx_cb_authenticate(auth, pk, sk, nonce, "m", 1),
                         SIMPLEX_ERR_KEY);
        assert_all(auth, sizeof auth, SENTINEL);
        assert_int_equal(sx_cb_verify(auth, pk, sk, nonce, "m", 1),
                         SIMPLEX_ERR_SIGNATURE);
    }

    /* X448: the zero point and u = 1 (order 4) */
    {
        uint8_t pk4[56] = {0}, sk4[56], mypk4[56];
        assert_int_equal(sx_x448_keypair(mypk4, sk4), SIMPLEX_OK);
        memset(out, SENTINEL, sizeof out);
        assert_int_equal(sx_x448_dh(out, pk4, sk4), SIMPLEX_ERR_KEY);
        assert_all(out, sizeof out, SENTINEL);
        pk4[0] = 1;
        assert_int_equal(sx_x448_dh(out, pk4, sk4), SIMPLEX_ERR_KEY);
        assert_all(out, sizeof out, SENTINEL);
    }
}

/* ---- AES-GCM ---- */

static void test_aes_gcm_negative(void **state)
{
    uint8_t key[32], iv[16], ad[21], msg[77], ct[77], tag[16], pt[77];
    (void)state;

    sx_random(key, sizeof key);
    sx_random(iv, sizeof iv);
    sx_random(ad, sizeof ad);
    sx_random(msg, sizeof msg);
    assert_int_equal(sx_aes_gcm_encrypt(ct, tag, key, iv, sizeof iv, ad,
                                        sizeof ad, msg, sizeof msg),
                     SIMPLEX_OK);
    assert_int_equal(sx_aes_gcm_decrypt(pt, key, iv, sizeof iv, ad, sizeof ad,
                                        ct, sizeof ct, tag),
                     SIMPLEX_OK);
    assert_memory_equal(pt, msg, sizeof msg);

#define EXPECT_FAIL(k, i, il, a, al, c, cl, t)                                 \
    do {                                                                       \
        memset(pt, SENTINEL, sizeof pt);                                       \
        assert_int_equal(sx_aes_gcm_decrypt(pt, k, i, il, a, al, c, cl, t),    \
                         SIMPLEX_ERR_DECRYPT);                                 \
        assert_all(pt, cl, 0); /* wiped */                                     \
    } while (0)

    /* wrong associated data: changed, shorter, missing */
    ad[0] ^= 1;
    EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad, ct, sizeof ct, tag);
    ad[0] ^= 1;
    EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad - 1, ct, sizeof ct, tag);
    EXPECT_FAIL(key, iv, sizeof iv, NULL, 0, ct, sizeof ct, tag);
    /* tag, ciphertext, iv, iv length, key */
    for (size_t i = 0; i < 16; i++) {
        tag[i] ^= 0x20;
        EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad, ct, sizeof ct, tag);
        tag[i] ^= 0x20;
    }
    ct[40] ^= 1;
    EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad, ct, sizeof ct, tag);
    ct[40] ^= 1;
    EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad, ct, sizeof ct - 1, tag);
    EXPECT_FAIL(key, iv, 12, ad, sizeof ad, ct, sizeof ct, tag);
    iv[15] ^= 1;
    EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad, ct, sizeof ct, tag);
    iv[15] ^= 1;
    key[0] ^= 1;
    EXPECT_FAIL(key, iv, sizeof iv, ad, sizeof ad, ct, sizeof ct, tag);
    key[0] ^= 1;
#undef EXPECT_FAIL

    /* an empty IV is refused */
    assert_int_equal(sx_aes_gcm_encrypt(ct, tag, key, iv, 0, NULL, 0, msg, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_decrypt(pt, key, iv, 0, NULL, 0, ct, 4, tag),
                     SIMPLEX_ERR_INVALID_ARG);
}

static void test_aead_padded_errors(void **state)
{
    uint8_t key[32], iv[16], ct[32], tag[16], pt[32], msg[40];
    const uint8_t *m = NULL;
    size_t ml = 5;
    (void)state;

    sx_random(key, sizeof key);
    sx_random(iv, sizeof iv);
    memset(msg, 'q', sizeof msg);
    memset(ct, SENTINEL, sizeof ct);
    memset(tag, SENTINEL, sizeof tag);
    assert_int_equal(sx_aead_encrypt_padded(ct, tag, key, iv, sizeof iv, NULL,
                                            0, 32, msg, 31),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_all(ct, sizeof ct, SENTINEL);
    assert_all(tag, sizeof tag, SENTINEL);
    assert_int_equal(sx_aead_encrypt_padded(ct, tag, key, iv, sizeof iv, NULL,
                                            0, 32, msg, 30),
                     SIMPLEX_OK);
    assert_int_equal(sx_aead_decrypt_padded(pt, &m, &ml, key, iv, sizeof iv,
                                            NULL, 0, ct, sizeof ct, tag),
                     SIMPLEX_OK);
    assert_int_equal(ml, 30);
    assert_memory_equal(m, msg, 30);

    /* authentic, but the length prefix claims more than there is */
    {
        uint8_t bad[6] = {0x00, 0x05, 1, 2, 3, 4}, c[6], p[6];
        const uint8_t *m2 = NULL;
        size_t l2 = 42;
        assert_int_equal(sx_aes_gcm_encrypt(c, tag, key, iv, sizeof iv, NULL,
                                            0, bad, sizeof bad),
                         SIMPLEX_OK);
        assert_int_equal(sx_aead_decrypt_padded(p, &m2, &l2, key, iv, sizeof iv,
                                                NULL, 0, c, sizeof c, tag),
                         SIMPLEX_ERR_PARSE);
        assert_null(m2);
        assert_int_equal(l2, 42);
        assert_all(p, sizeof p, 0);
        /* one byte: no room for the length */
        assert_int_equal(
            sx_aes_gcm_encrypt(c, tag, key, iv, sizeof iv, NULL, 0, bad, 1),
            SIMPLEX_OK);
        assert_int_equal(sx_aead_decrypt_padded(p, &m2, &l2, key, iv, sizeof iv,
                                                NULL, 0, c, 1, tag),
                         SIMPLEX_ERR_PARSE);
    }
}

/* IVs of several lengths round-trip; in place equals out of place */
static void test_aes_gcm_iv_lengths(void **state)
{
    static const size_t ivls[] = {1, 8, 12, 13, 16, 32, 64};
    uint8_t key[32], iv[64], msg[300], ct[300], ct2[300], tag[16], tag2[16];
    (void)state;

    for (size_t k = 0; k < SX_ARRAY_LEN(ivls); k++) {
        size_t n = rnd_below(sizeof msg + 1);
        sx_random(key, sizeof key);
        sx_random(iv, sizeof iv);
        sx_random(msg, sizeof msg);
        assert_int_equal(sx_aes_gcm_encrypt(ct, tag, key, iv, ivls[k], iv, 7,
                                            msg, n),
                         SIMPLEX_OK);
        memcpy(ct2, msg, n);
        assert_int_equal(sx_aes_gcm_encrypt(ct2, tag2, key, iv, ivls[k], iv, 7,
                                            ct2, n),
                         SIMPLEX_OK);
        assert_memory_equal(tag, tag2, 16);
        if (n)
            assert_memory_equal(ct, ct2, n);
        assert_int_equal(
            sx_aes_gcm_decrypt(ct2, key, iv, ivls[k], iv, 7, ct, n, tag),
            SIMPLEX_OK);
        if (n)
            assert_memory_equal(ct2, msg, n);
    }
}

/* ---- signatures ---- */

static void test_sign_negative(void **state)
{
    uint8_t pk[57], sk[57], pk2[57], sk2[57], sig[114], msg[200];
    (void)state;

    sx_random(msg, sizeof msg);

    /* Ed25519 */
    assert_int_equal(sx_ed25519_keypair(pk, sk), SIMPLEX_OK);
    assert_int_equal(sx_ed25519_keypair(pk2, sk2), SIMPLEX_OK);
    assert_int_equal(sx_ed25519_sign(sig, msg, sizeof msg, sk), SIMPLEX_OK);
    assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg, pk), SIMPLEX_OK);
    for (size_t bit = 0; bit < 64 * 8; bit += 7) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg, pk),
                         SIMPLEX_ERR_SIGNATURE);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg, pk2),
                     SIMPLEX_ERR_SIGNATURE);
    assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg - 1, pk),
                     SIMPLEX_ERR_SIGNATURE);
    assert_int_equal(sx_ed25519_verify(sig, msg + 1, sizeof msg - 1, pk),
                     SIMPLEX_ERR_SIGNATURE);
    assert_int_equal(sx_ed25519_verify(sig, NULL, 0, pk),
                     SIMPLEX_ERR_SIGNATURE);
    msg[100] ^= 1;
    assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg, pk),
                     SIMPLEX_ERR_SIGNATURE);
    msg[100] ^= 1;
    memset(pk2, 0, 32); /* a low-order public key */
    assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg, pk2),
                     SIMPLEX_ERR_SIGNATURE);
    memset(pk2, 0xff, 32); /* not a point */
    assert_int_equal(sx_ed25519_verify(sig, msg, sizeof msg, pk2),
                     SIMPLEX_ERR_SIGNATURE);

    /* Ed448 */
    assert_int_equal(sx_ed448_keypair(pk, sk), SIMPLEX_OK);
    assert_int_equal(sx_ed448_keypair(pk2, sk2), SIMPLEX_OK);
    assert_int_equal(sx_ed448_sign(sig, msg, sizeof msg, sk), SIMPLEX_OK);
    assert_int_equal(sx_ed448_verify(sig, msg, sizeof msg, pk), SIMPLEX_OK);
    for (size_t bit = 0; bit < 114 * 8; bit += 11) {
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        assert_int_equal(sx_ed448_verify(sig, msg, sizeof msg, pk),
                         SIMPLEX_ERR_SIGNATURE);
        sig[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    assert_int_equal(sx_ed448_verify(sig, msg, sizeof msg, pk2),
                     SIMPLEX_ERR_SIGNATURE);
    assert_int_equal(sx_ed448_verify(sig, msg, sizeof msg - 1, pk),
                     SIMPLEX_ERR_SIGNATURE);
    assert_int_equal(sx_ed448_verify(sig, NULL, 0, pk), SIMPLEX_ERR_SIGNATURE);
    memset(pk2, 0xff, 57);
    assert_int_equal(sx_ed448_verify(sig, msg, sizeof msg, pk2),
                     SIMPLEX_ERR_SIGNATURE);
    memset(pk2, 0, 57);
    assert_int_equal(sx_ed448_verify(sig, msg, sizeof msg, pk2),
                     SIMPLEX_ERR_SIGNATURE);
}

/* ---- padding ---- */

static void test_pad_limits(void **state)
{
    uint8_t *big = malloc(70000), *out = malloc(70000);
    const uint8_t *m = (const uint8_t *)"unchanged";
    size_t ml = 12345;
    (void)state;

    assert_non_null(big);
    assert_non_null(out);
    memset(big, 'z', 70000);
    memset(out, SENTINEL, 70000);
    assert_int_equal(sx_pad(out, 70000, big, SX_PAD_MAX_MSG + 1),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_all(out, 70000, SENTINEL);
    assert_int_equal(sx_pad(out, 70000, big, SX_PAD_MAX_MSG), SIMPLEX_OK);
    assert_int_equal(out[0], 0xff);
    assert_int_equal(out[1], 0xfd);
    assert_int_equal(out[2 + SX_PAD_MAX_MSG], '#');
    assert_int_equal(out[69999], '#');
    assert_int_equal(sx_unpad(out, 70000, &m, &ml), SIMPLEX_OK);
    assert_int_equal(ml, SX_PAD_MAX_MSG);
    /* no room for the length */
    assert_int_equal(sx_pad(out, 0, NULL, 0), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_pad(out, 1, NULL, 0), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_pad(out, 2, big, 1), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_pad(out, 2, NULL, 0), SIMPLEX_OK);

    /* unpad */
    m = (const uint8_t *)"unchanged";
    ml = 12345;
    assert_int_equal(sx_unpad(NULL, 0, &m, &ml), SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_unpad(big, 0, &m, &ml), SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_unpad((const uint8_t *)"\x00", 1, &m, &ml),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_unpad((const uint8_t *)"\x00\x05" "abcd", 6, &m, &ml),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_unpad((const uint8_t *)"\xff\xff" "ab", 4, &m, &ml),
                     SIMPLEX_ERR_PARSE);
    assert_string_equal((const char *)m, "unchanged");
    assert_int_equal(ml, 12345);
    assert_int_equal(sx_unpad((const uint8_t *)"\x00\x04" "abcd", 6, &m, &ml),
                     SIMPLEX_OK);
    assert_int_equal(ml, 4);
    assert_int_equal(sx_unpad((const uint8_t *)"\x00\x00", 2, &m, &ml),
                     SIMPLEX_OK);
    assert_int_equal(ml, 0);
    free(big);
    free(out);
}

/* ---- key encodings ---- */

static void gen_key(sx_key_alg alg, uint8_t *pub, uint8_t *priv)
{
    switch (alg) {
    case SX_KEY_ED25519:
        assert_int_equal(sx_ed25519_keypair(pub, priv), SIMPLEX_OK);
        break;
    case SX_KEY_X25519:
        assert_int_equal(sx_x25519_keypair(pub, priv), SIMPLEX_OK);
        break;
    case SX_KEY_ED448:
        assert_int_equal(sx_ed448_keypair(pub, priv), SIMPLEX_OK);
        break;
    case SX_KEY_X448:
        assert_int_equal(sx_x448_keypair(pub, priv), SIMPLEX_OK);
        break;
    default:
        fail();
    }
}

typedef int (*decode_fn)(sx_key_alg *, uint8_t *, size_t *, sx_key_alg,
                         const uint8_t *, size_t);

/* decodes and expects rc, with every output untouched */
static void expect_decode_fail(decode_fn dec, sx_key_alg want,
                               const uint8_t *der, size_t n, int rc)
{
    uint8_t raw[60];
    sx_key_alg alg = (sx_key_alg)77;
    size_t len = 777;
    memset(raw, SENTINEL, sizeof raw);
    assert_int_equal(dec(&alg, raw, &len, want, der, n), rc);
    assert_int_equal(alg, 77);
    assert_int_equal(len, 777);
    assert_all(raw, sizeof raw, SENTINEL);
}

static void test_key_decode_negative(void **state)
{
    static const sx_key_alg algs[] = {SX_KEY_ED25519, SX_KEY_X25519,
                                      SX_KEY_ED448, SX_KEY_X448};
    (void)state;

    for (size_t a = 0; a < SX_ARRAY_LEN(algs); a++) {
        sx_key_alg alg = algs[a];
        for (int priv = 0; priv < 2; priv++) {
            uint8_t pub[57], sec[57], der[SX_KEY_DER_MAX + 4], bad[80],
                raw[57];
            size_t n = 0, rl = 0;
            sx_key_alg got = SX_KEY_NONE;
            decode_fn dec = priv ? sx_key_private_decode : sx_key_public_decode;
            decode_fn other =
                priv ? sx_key_public_decode : sx_key_private_decode;
            const uint8_t *key;

            gen_key(alg, pub, sec);
            key = priv ? sec : pub;
            if (priv)
                assert_int_equal(sx_key_private_encode(der, SX_KEY_DER_MAX, &n,
                                                       alg, sec),
                                 SIMPLEX_OK);
            else
                assert_int_equal(sx_key_public_encode(der, SX_KEY_DER_MAX, &n,
                                                      alg, pub),
                                 SIMPLEX_OK);
            assert_int_equal(dec(&got, raw, &rl, alg, der, n), SIMPLEX_OK);
            assert_int_equal(got, alg);
            assert_int_equal(rl, sx_key_public_len(alg));
            assert_memory_equal(raw, key, rl);

            /* every truncation */
            for (size_t k = 0; k < n; k++)
                expect_decode_fail(dec, SX_KEY_NONE, der, k,
                                   SIMPLEX_ERR_TRUNCATED);
            expect_decode_fail(dec, SX_KEY_NONE, NULL, 0,
                               SIMPLEX_ERR_TRUNCATED);
            /* a trailing byte */
            memcpy(bad, der, n);
            bad[n] = 0;
            expect_decode_fail(dec, SX_KEY_NONE, bad, n + 1,
                               SIMPLEX_ERR_TRAILING);
            expect_decode_fail(dec, alg, bad, n + 1, SIMPLEX_ERR_TRAILING);
            /* overlong outer length (non-minimal DER, one byte longer) */
            bad[0] = 0x30;
            bad[1] = 0x81;
            memcpy(bad + 2, der + 1, n - 1);
            expect_decode_fail(dec, SX_KEY_NONE, bad, n + 1, SIMPLEX_ERR_KEY);
            /* an outer length that disagrees with the content */
            memcpy(bad, der, n);
            bad[1]++;
            expect_decode_fail(dec, SX_KEY_NONE, bad, n, SIMPLEX_ERR_KEY);
            /* an unknown OID (1.3.101.114 is no key of ours) */
            memcpy(bad, der, n);
            bad[priv ? 11 : 8] = 0x72;
            expect_decode_fail(dec, SX_KEY_NONE, bad, n, SIMPLEX_ERR_KEY);
            /* public: unused bits in the BIT STRING */
            if (!priv) {
                memcpy(bad, der, n);
                bad[11] = 1;
                expect_decode_fail(dec, SX_KEY_NONE, bad, n, SIMPLEX_ERR_KEY);
            } else {
                /* private: version 1 */
                memcpy(bad, der, n);
                bad[4] = 1;
                expect_decode_fail(dec, SX_KEY_NONE, bad, n, SIMPLEX_ERR_KEY);
            }
            /* another algorithm requested */
            for (size_t w = 0; w < SX_ARRAY_LEN(algs); w++)
                if (algs[w] != alg)
                    expect_decode_fail(dec, algs[w], der, n, SIMPLEX_ERR_KEY);
            /* the other kind of encoding */
            expect_decode_fail(other, SX_KEY_NONE, der, n, SIMPLEX_ERR_KEY);
            /* garbage */
            sx_random(bad, sizeof bad);
            bad[0] = 0x04;
            expect_decode_fail(dec, SX_KEY_NONE, bad, sizeof bad,
                               SIMPLEX_ERR_KEY);

            /* encoders: too small a buffer, unknown algorithm */
            memset(bad, SENTINEL, sizeof bad);
            n = 5;
            assert_int_equal(priv ? sx_key_private_encode(bad, n - 1 + 0, &n,
                                                          alg, key)
                                  : sx_key_public_encode(bad, n - 1, &n, alg,
                                                         key),
                             SIMPLEX_ERR_BUFFER_TOO_SMALL);
            assert_int_equal(n, 5);
            assert_all(bad, sizeof bad, SENTINEL);
        }
    }
    {
        uint8_t out[80], raw[57];
        size_t n = 0;
        assert_int_equal(sx_key_public_len(SX_KEY_NONE), 0);
        assert_int_equal(sx_key_private_len((sx_key_alg)9), 0);
        assert_int_equal(sx_key_public_len(SX_KEY_ED448), 57);
        assert_int_equal(sx_key_private_len(SX_KEY_X448), 56);
        memset(raw, 1, sizeof raw);
        assert_int_equal(
            sx_key_public_encode(out, sizeof out, &n, SX_KEY_NONE, raw),
            SIMPLEX_ERR_KEY);
        assert_int_equal(
            sx_key_private_encode(out, sizeof out, &n, (sx_key_alg)9, raw),
            SIMPLEX_ERR_KEY);
        assert_int_equal(
            sx_key_public_encode(NULL, sizeof out, &n, SX_KEY_X25519, raw),
            SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(
            sx_key_public_encode(out, sizeof out, NULL, SX_KEY_X25519, raw),
            SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(
            sx_key_private_encode(out, sizeof out, &n, SX_KEY_X25519, NULL),
            SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(sx_key_public_decode(NULL, NULL, NULL, SX_KEY_NONE,
                                              out, 44),
                         SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(sx_key_private_decode(NULL, raw, NULL, SX_KEY_NONE,
                                               NULL, 44),
                         SIMPLEX_ERR_INVALID_ARG);
    }
}

/* ---- NULL arguments ---- */

static void test_null_args(void **state)
{
    uint8_t b[128], k[57], n24[24], out[128], tag[16];
    const uint8_t *m = NULL;
    size_t ml = 0;
    (void)state;

    memset(b, 1, sizeof b);
    memset(k, 2, sizeof k);
    memset(n24, 3, sizeof n24);
    assert_int_equal(sx_sha256(NULL, b, 1), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sha256(out, NULL, 1), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sha256(out, NULL, 0), SIMPLEX_OK);
    assert_int_equal(sx_sha512(NULL, b, 1), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sha512(out, NULL, 3), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sha3_256(NULL, b, 1), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sha3_256(out, NULL, 3), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sha3_256(out, NULL, 0), SIMPLEX_OK);
    assert_int_equal(sx_hkdf_sha512(NULL, 10, NULL, 0, b, 1, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_hkdf_sha512(out, 10, NULL, 1, b, 1, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_hkdf_sha512(out, 10, NULL, 0, NULL, 1, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_hkdf_sha512(out, 10, NULL, 0, b, 1, NULL, 1),
                     SIMPLEX_ERR_INVALID_ARG);

    assert_int_equal(sx_x25519_keypair(NULL, out), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x25519_keypair(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x25519_public(NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x25519_public(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x25519_dh(NULL, k, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x25519_dh(out, NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x25519_dh(out, k, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x448_keypair(NULL, out), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x448_public(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x448_dh(out, NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x448_dh(out, k, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_x448_dh(NULL, k, k), SIMPLEX_ERR_INVALID_ARG);

    assert_int_equal(sx_ed25519_keypair(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_public(NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_sign(NULL, b, 1, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_sign(out, NULL, 1, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_sign(out, b, 1, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_verify(NULL, b, 1, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_verify(out, NULL, 1, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed25519_verify(out, b, 1, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed448_keypair(NULL, out), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed448_public(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed448_sign(out, b, 1, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed448_sign(out, NULL, 2, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed448_verify(out, b, 1, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_ed448_verify(NULL, b, 1, k), SIMPLEX_ERR_INVALID_ARG);

    assert_int_equal(sx_pad(NULL, 10, b, 1), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_pad(out, 10, NULL, 1), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_unpad(NULL, 4, &m, &ml), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_unpad(b, 4, NULL, &ml), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_unpad(b, 4, &m, NULL), SIMPLEX_ERR_INVALID_ARG);

    assert_int_equal(sx_cb_key(NULL, k, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_key(out, NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_key(out, k, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_key_from_dh(NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_key_from_dh(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sb_key(NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sb_key(out, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal(NULL, b, 4, n24, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal(out, NULL, 4, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal(out, b, 4, NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal(out, b, 4, n24, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open(NULL, b, 20, n24, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open(out, NULL, 20, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open(out, b, 20, NULL, k), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open(out, b, 20, n24, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal_padded(NULL, 10, b, 1, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal_padded(out, 10, NULL, 1, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_seal_padded(out, 10, b, 1, NULL, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open_padded(out, NULL, &ml, b, 20, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open_padded(out, &m, NULL, b, 20, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open_padded(NULL, &m, &ml, b, 20, n24, k),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_box_open_padded(out, &m, &ml, b, 20, n24, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_authenticate(NULL, k, k, n24, b, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_authenticate(out, k, k, NULL, b, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_authenticate(out, k, k, n24, NULL, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_verify(NULL, k, k, n24, b, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_verify(out, NULL, k, n24, b, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_cb_verify(out, k, k, n24, NULL, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sbchain_init(NULL, out, b, 1, b, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sbchain_init(out, out + 32, NULL, 1, b, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sbchain_init(out, out + 32, b, 1, NULL, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sbchain_next(NULL, out, n24), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sbchain_next(out, NULL, n24), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_sbchain_next(out, out + 32, NULL),
                     SIMPLEX_ERR_INVALID_ARG);

    assert_int_equal(sx_aes_gcm_encrypt(out, NULL, k, n24, 16, NULL, 0, b, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_encrypt(out, tag, NULL, n24, 16, NULL, 0, b, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_encrypt(out, tag, k, NULL, 16, NULL, 0, b, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_encrypt(out, tag, k, n24, 16, NULL, 3, b, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_encrypt(NULL, tag, k, n24, 16, NULL, 0, b, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(
        sx_aes_gcm_encrypt(out, tag, k, n24, 16, NULL, 0, NULL, 4),
        SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_decrypt(out, k, n24, 16, NULL, 0, b, 4, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aes_gcm_decrypt(NULL, k, n24, 16, NULL, 0, b, 4, tag),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(
        sx_aes_gcm_decrypt(out, k, n24, 16, NULL, 0, NULL, 4, tag),
        SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aead_encrypt_padded(NULL, tag, k, n24, 16, NULL, 0, 32,
                                            b, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aead_encrypt_padded(out, tag, k, n24, 16, NULL, 0, 32,
                                            NULL, 4),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aead_decrypt_padded(out, NULL, &ml, k, n24, 16, NULL, 0,
                                            b, 32, tag),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_aead_decrypt_padded(out, &m, &ml, k, n24, 16, NULL, 0,
                                            b, 32, NULL),
                     SIMPLEX_ERR_INVALID_ARG);

    /* void functions tolerate NULL */
    sx_cb_nonce(NULL, b, 4);
    sx_reverse_nonce(NULL, n24);
    sx_reverse_nonce(out, NULL);
    sx_random(NULL, 10);
    sx_cb_nonce(out, NULL, 0);
    assert_all(out, 24, 0);
}

/* ---- HKDF edge cases against an independent HMAC-SHA512 HKDF ---- */

static void ref_hkdf(uint8_t *out, size_t len, const uint8_t *salt, size_t sl,
                     const uint8_t *ikm, size_t il, const uint8_t *info,
                     size_t nl)
{
    crypto_auth_hmacsha512_state st;
    uint8_t prk[64], t[64];
    size_t done = 0;
    uint8_t ctr = 0;

    crypto_auth_hmacsha512_init(&st, salt, sl);
    crypto_auth_hmacsha512_update(&st, ikm, il);
    crypto_auth_hmacsha512_final(&st, prk);
    while (done < len) {
        size_t k;
        ctr++;
        crypto_auth_hmacsha512_init(&st, prk, sizeof prk);
        if (ctr > 1)
            crypto_auth_hmacsha512_update(&st, t, sizeof t);
        crypto_auth_hmacsha512_update(&st, info, nl);
        crypto_auth_hmacsha512_update(&st, &ctr, 1);
        crypto_auth_hmacsha512_final(&st, t);
        k = len - done < 64 ? len - done : 64;
        memcpy(out + done, t, k);
        done += k;
    }
}

static void test_hkdf_edges(void **state)
{
    static const size_t lens[] = {1, 32, 63, 64, 65, 88, 200, 255 * 64};
    uint8_t *a = malloc(255 * 64 + 1), *b = malloc(255 * 64);
    uint8_t salt[200], ikm[300], info[3000];
    uint8_t zero_salt[64] = {0};
    (void)state;

    assert_non_null(a);
    assert_non_null(b);
    sx_random(salt, sizeof salt);
    sx_random(ikm, sizeof ikm);
    sx_random(info, sizeof info);
    for (size_t i = 0; i < SX_ARRAY_LEN(lens); i++) {
        size_t sl = rnd_below(sizeof salt), il = rnd_below(sizeof ikm),
               nl = rnd_below(sizeof info);
        assert_int_equal(
            sx_hkdf_sha512(a, lens[i], salt, sl, ikm, il, info, nl),
            SIMPLEX_OK);
        ref_hkdf(b, lens[i], salt, sl, ikm, il, info, nl);
        assert_memory_equal(a, b, lens[i]);
    }
    /* empty ikm, empty info, long info, long salt */
    assert_int_equal(sx_hkdf_sha512(a, 100, salt, 5, NULL, 0, NULL, 0),
                     SIMPLEX_OK);
    ref_hkdf(b, 100, salt, 5, ikm, 0, info, 0);
    assert_memory_equal(a, b, 100);
    assert_int_equal(sx_hkdf_sha512(a, 100, NULL, 0, NULL, 0, info,
                                    sizeof info),
                     SIMPLEX_OK);
    ref_hkdf(b, 100, salt, 0, ikm, 0, info, sizeof info);
    assert_memory_equal(a, b, 100);
    assert_int_equal(sx_hkdf_sha512(a, 100, salt, sizeof salt, ikm, sizeof ikm,
                                    info, sizeof info),
                     SIMPLEX_OK);
    ref_hkdf(b, 100, salt, sizeof salt, ikm, sizeof ikm, info, sizeof info);
    assert_memory_equal(a, b, 100);
    /* an empty salt is the same as HashLen zero bytes */
    assert_int_equal(sx_hkdf_sha512(b, 64, zero_salt, 64, ikm, 32, info, 4),
                     SIMPLEX_OK);
    assert_int_equal(sx_hkdf_sha512(a, 64, NULL, 0, ikm, 32, info, 4),
                     SIMPLEX_OK);
    assert_memory_equal(a, b, 64);
    /* limits */
    memset(a, SENTINEL, 10);
    assert_int_equal(sx_hkdf_sha512(a, 0, NULL, 0, ikm, 4, NULL, 0),
                     SIMPLEX_OK);
    assert_all(a, 10, SENTINEL);
    assert_int_equal(sx_hkdf_sha512(a, 255 * 64 + 1, NULL, 0, ikm, 4, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    free(a);
    free(b);
}

/* ---- hashes over pieces, SHA3 against a second path ---- */

static void test_hash_misc(void **state)
{
    uint8_t msg[1000], d1[64], d2[64];
    crypto_hash_sha512_state st;
    (void)state;

    sx_random(msg, sizeof msg);
    assert_int_equal(sx_sha512(d1, msg, sizeof msg), SIMPLEX_OK);
    crypto_hash_sha512_init(&st);
    crypto_hash_sha512_update(&st, msg, 500);
    crypto_hash_sha512_update(&st, msg + 500, 500);
    crypto_hash_sha512_final(&st, d2);
    assert_memory_equal(d1, d2, 64);
    assert_int_equal(sx_sha3_256(d1, msg, sizeof msg), SIMPLEX_OK);
    assert_int_equal(sx_sha3_256(d2, msg, sizeof msg - 1), SIMPLEX_OK);
    assert_memory_not_equal(d1, d2, 32);
}

/* ---- random round trips ---- */

static void test_roundtrip_dh_box(void **state)
{
    (void)state;
    for (int it = 0; it < 25; it++) {
        uint8_t apk[32], ask[32], bpk[32], bsk[32], s1[32], s2[32], k1[32],
            k2[32], t[32];
        uint8_t nonce[24], msg[600], box[600 + 16], back[600 + 16];
        uint8_t xa[56], xas[56], xb[56], xbs[56], x1[56], x2[56];
        uint8_t auth[80];
        const uint8_t *m = NULL;
        size_t ml = 0, n = rnd_below(sizeof msg + 1), pl;

        assert_int_equal(sx_x25519_keypair(apk, ask), SIMPLEX_OK);
        assert_int_equal(sx_x25519_keypair(bpk, bsk), SIMPLEX_OK);
        assert_int_equal(sx_x25519_public(t, ask), SIMPLEX_OK);
        assert_memory_equal(t, apk, 32);
        assert_int_equal(sx_x25519_dh(s1, bpk, ask), SIMPLEX_OK);
        assert_int_equal(sx_x25519_dh(s2, apk, bsk), SIMPLEX_OK);
        assert_memory_equal(s1, s2, 32);
        assert_int_equal(sx_cb_key(k1, bpk, ask), SIMPLEX_OK);
        assert_int_equal(sx_cb_key(k2, apk, bsk), SIMPLEX_OK);
        assert_memory_equal(k1, k2, 32);
        /* the same as libsodium's crypto_box_beforenm */
        assert_int_equal(crypto_box_beforenm(t, bpk, ask), 0);
        assert_memory_equal(t, k1, 32);

        sx_random(nonce, sizeof nonce);
        sx_random(msg, n);
        assert_int_equal(sx_box_seal(box, msg, n, nonce, k1), SIMPLEX_OK);
        /* and the same bytes as crypto_box_easy */
        assert_int_equal(crypto_box_easy(back, msg, n, nonce, bpk, ask), 0);
        assert_memory_equal(back, box, n + 16);
        assert_int_equal(sx_box_open(back, box, n + 16, nonce, k2), SIMPLEX_OK);
        if (n)
            assert_memory_equal(back, msg, n);

        pl = n + 2 + rnd_below(20);
        if (n <= sizeof msg - 2 && pl <= sizeof msg) {
            assert_int_equal(sx_box_seal_padded(box, pl, msg, n, nonce, k1),
                             SIMPLEX_OK);
            assert_int_equal(
                sx_box_open_padded(back, &m, &ml, box, pl + 16, nonce, k2),
                SIMPLEX_OK);
            assert_int_equal(ml, n);
            if (n)
                assert_memory_equal(m, msg, n);
        }

        /* secret box from a random SbKey */
        sx_random(s1, 32);
        assert_int_equal(sx_sb_key(k1, s1), SIMPLEX_OK);
        assert_memory_not_equal(k1, s1, 32);
        assert_int_equal(sx_box_seal(box, msg, n, nonce, k1), SIMPLEX_OK);
        assert_int_equal(sx_box_open(back, box, n + 16, nonce, k1), SIMPLEX_OK);

        /* the authenticator */
        assert_int_equal(sx_cb_authenticate(auth, bpk, ask, nonce, msg, n),
                         SIMPLEX_OK);
        assert_int_equal(sx_cb_verify(auth, apk, bsk, nonce, msg, n),
                         SIMPLEX_OK);
        assert_int_equal(sx_cb_verify(auth, bpk, bsk, nonce, msg, n),
                         SIMPLEX_ERR_SIGNATURE);

        /* X448 */
        assert_int_equal(sx_x448_keypair(xa, xas), SIMPLEX_OK);
        assert_int_equal(sx_x448_keypair(xb, xbs), SIMPLEX_OK);
        assert_int_equal(sx_x448_public(x1, xas), SIMPLEX_OK);
        assert_memory_equal(x1, xa, 56);
        assert_int_equal(sx_x448_dh(x1, xb, xas), SIMPLEX_OK);
        assert_int_equal(sx_x448_dh(x2, xa, xbs), SIMPLEX_OK);
        assert_memory_equal(x1, x2, 56);
    }
}

static void test_roundtrip_sign_keys(void **state)
{
    static const sx_key_alg algs[] = {SX_KEY_ED25519, SX_KEY_X25519,
                                      SX_KEY_ED448, SX_KEY_X448};
    (void)state;
    for (int it = 0; it < 20; it++) {
        uint8_t pk[57], sk[57], t[57], sig[114], msg[500];
        size_t n = rnd_below(sizeof msg + 1);

        sx_random(msg, n);
        assert_int_equal(sx_ed25519_keypair(pk, sk), SIMPLEX_OK);
        assert_int_equal(sx_ed25519_public(t, sk), SIMPLEX_OK);
        assert_memory_equal(t, pk, 32);
        assert_int_equal(sx_ed25519_sign(sig, msg, n, sk), SIMPLEX_OK);
        assert_int_equal(sx_ed25519_verify(sig, msg, n, pk), SIMPLEX_OK);
        assert_int_equal(crypto_sign_ed25519_verify_detached(sig, msg, n, pk),
                         0);

        assert_int_equal(sx_ed448_keypair(pk, sk), SIMPLEX_OK);
        assert_int_equal(sx_ed448_public(t, sk), SIMPLEX_OK);
        assert_memory_equal(t, pk, 57);
        assert_int_equal(sx_ed448_sign(sig, msg, n, sk), SIMPLEX_OK);
        assert_int_equal(sx_ed448_verify(sig, msg, n, pk), SIMPLEX_OK);

        for (size_t a = 0; a < SX_ARRAY_LEN(algs); a++) {
            uint8_t der[SX_KEY_DER_MAX], raw[57];
            size_t dl = 0, rl = 0;
            sx_key_alg got = SX_KEY_NONE;
            gen_key(algs[a], pk, sk);
            assert_int_equal(sx_key_public_encode(der, sizeof der, &dl,
                                                  algs[a], pk),
                             SIMPLEX_OK);
            assert_int_equal(
                sx_key_public_decode(&got, raw, &rl, SX_KEY_NONE, der, dl),
                SIMPLEX_OK);
            assert_int_equal(got, algs[a]);
            assert_memory_equal(raw, pk, rl);
            assert_int_equal(sx_key_private_encode(der, sizeof der, &dl,
                                                   algs[a], sk),
                             SIMPLEX_OK);
            assert_int_equal(
                sx_key_private_decode(&got, raw, &rl, algs[a], der, dl),
                SIMPLEX_OK);
            assert_memory_equal(raw, sk, rl);
        }
    }
}

static void test_roundtrip_aead_sbchain(void **state)
{
    (void)state;
    for (int it = 0; it < 25; it++) {
        uint8_t key[32], iv[16], ad[40], msg[400], ct[420], pt[420], tag[16];
        uint8_t salt[32], sec[32], a1[32], a2[32], b1[32], b2[32], ka[32],
            kb[32], na[24], nb[24];
        const uint8_t *m = NULL;
        size_t ml = 0, n = rnd_below(sizeof msg + 1),
               pl = n + 2 + rnd_below(18), al = rnd_below(sizeof ad + 1);

        sx_random(key, sizeof key);
        sx_random(iv, sizeof iv);
        sx_random(ad, sizeof ad);
        sx_random(msg, n);
        assert_int_equal(sx_aead_encrypt_padded(ct, tag, key, iv, sizeof iv, ad,
                                                al, pl, msg, n),
                         SIMPLEX_OK);
        assert_int_equal(sx_aead_decrypt_padded(pt, &m, &ml, key, iv,
                                                sizeof iv, ad, al, ct, pl, tag),
                         SIMPLEX_OK);
        assert_int_equal(ml, n);
        if (n)
            assert_memory_equal(m, msg, n);
        /* the fill is '#' */
        for (size_t i = 2 + n; i < pl; i++)
            assert_int_equal(pt[i], '#');

        /* two parties derive the same chains and the chain moves on */
        sx_random(salt, sizeof salt);
        sx_random(sec, sizeof sec);
        assert_int_equal(sx_sbchain_init(a1, a2, salt, 32, sec, 32),
                         SIMPLEX_OK);
        assert_int_equal(sx_sbchain_init(b1, b2, salt, 32, sec, 32),
                         SIMPLEX_OK);
        assert_memory_equal(a1, b1, 32);
        assert_memory_equal(a2, b2, 32);
        assert_memory_not_equal(a1, a2, 32);
        assert_int_equal(sx_sbchain_next(a1, ka, na), SIMPLEX_OK);
        assert_int_equal(sx_sbchain_next(b1, kb, nb), SIMPLEX_OK);
        assert_memory_equal(ka, kb, 32);
        assert_memory_equal(na, nb, 24);
        assert_int_equal(sx_sbchain_next(a1, kb, nb), SIMPLEX_OK);
        assert_memory_not_equal(ka, kb, 32);
        assert_memory_not_equal(na, nb, 24);
    }
}

/* the fuzz_box seed corpus holds a genuine box for the harness's key */
static void test_fuzz_box_seed(void **state)
{
    uint8_t key[32], nonce[24], buf[200], out[200];
    const uint8_t *m = NULL;
    size_t n, ml = 0;
    FILE *fp = fopen(VECTOR_DIR "/../fuzz/corpus/box/sealed-padded-64", "rb");
    (void)state;

    assert_non_null(fp);
    n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    assert_int_equal(n, 80);
    for (size_t i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    for (size_t i = 0; i < 24; i++)
        nonce[i] = (uint8_t)(0x80 + i);
    assert_int_equal(sx_box_open_padded(out, &m, &ml, buf, n, nonce, key),
                     SIMPLEX_OK);
    assert_int_equal(ml, 13);
    assert_memory_equal(m, "hello, fuzzer", 13);
}

/* sx_box_open_padded decrypts only the length prefix and the message;
 * it must agree with libsodium's whole-box open in every case: message
 * lengths around the first 32 bytes of keystream, empty and full
 * messages, a forged tag, a length prefix larger than the box. */
static void test_box_open_padded_partial(void **state)
{
    static uint8_t box[16 + 16368], full[16368], out[16368], msg[16368];
    static const size_t lens[] = {0, 1, 29, 30, 31, 32, 33, 62, 63, 64, 65,
                                  100, 1000, 16000, 16366};
    uint8_t key[32], nonce[24];
    (void)state;
    sx_random(key, sizeof key);
    sx_random(msg, sizeof msg);
    for (size_t pi = 0; pi < 3; pi++) {
        size_t padded = pi == 0 ? 16368 : pi == 1 ? 64 : 40;
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const uint8_t *m = NULL;
            size_t ml = 0, len = lens[li];
            if (len + 2 > padded)
                continue;
            sx_random(nonce, sizeof nonce);
            assert_int_equal(sx_box_seal_padded(box, padded, msg, len, nonce,
                                                key), SIMPLEX_OK);
            /* what libsodium decrypts as a whole */
            assert_int_equal(crypto_secretbox_open_detached(
                                 full, box + 16, box, padded, nonce, key), 0);
            memset(out, 0xAA, sizeof out);
            assert_int_equal(sx_box_open_padded(out, &m, &ml, box,
                                                padded + 16, nonce, key),
                             SIMPLEX_OK);
            assert_ptr_equal(m, out + 2);
            assert_int_equal(ml, len);
            assert_memory_equal(out, full, 2 + len);
            if (len)
                assert_memory_equal(m, msg, len);
            /* any flipped bit, in the message or in the padding only the
             * tag covers, is refused */
            box[16 + padded - 1] ^= 1;
            assert_int_equal(sx_box_open_padded(out, &m, &ml, box,
                                                padded + 16, nonce, key),
                             SIMPLEX_ERR_DECRYPT);
            box[16 + padded - 1] ^= 1;
            box[3] ^= 0x80;
            assert_int_equal(sx_box_open_padded(out, &m, &ml, box,
                                                padded + 16, nonce, key),
                             SIMPLEX_ERR_DECRYPT);
        }
    }
    /* a valid box whose length prefix points past its end */
    {
        uint8_t plain[64];
        const uint8_t *m;
        size_t ml;
        memset(plain, '#', sizeof plain);
        plain[0] = 0;
        plain[1] = 63;
        sx_random(nonce, sizeof nonce);
        assert_int_equal(crypto_secretbox_detached(box + 16, box, plain,
                                                   sizeof plain, nonce, key),
                         0);
        assert_int_equal(sx_box_open_padded(out, &m, &ml, box, 16 + 64,
                                            nonce, key), SIMPLEX_ERR_PARSE);
        plain[1] = 62; /* exactly fits */
        assert_int_equal(crypto_secretbox_detached(box + 16, box, plain,
                                                   sizeof plain, nonce, key),
                         0);
        assert_int_equal(sx_box_open_padded(out, &m, &ml, box, 16 + 64,
                                            nonce, key), SIMPLEX_OK);
        assert_int_equal(ml, 62);
        /* one byte of plaintext: no room for the prefix */
        assert_int_equal(crypto_secretbox_detached(box + 16, box, plain, 1,
                                                   nonce, key), 0);
        assert_int_equal(sx_box_open_padded(out, &m, &ml, box, 16 + 1,
                                            nonce, key), SIMPLEX_ERR_PARSE);
        assert_int_equal(sx_box_open_padded(out, &m, &ml, box, 15, nonce,
                                            key), SIMPLEX_ERR_TRUNCATED);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_box_tamper),
        cmocka_unit_test(test_box_padded_errors),
        cmocka_unit_test(test_low_order_keys),
        cmocka_unit_test(test_aes_gcm_negative),
        cmocka_unit_test(test_aead_padded_errors),
        cmocka_unit_test(test_aes_gcm_iv_lengths),
        cmocka_unit_test(test_sign_negative),
        cmocka_unit_test(test_pad_limits),
        cmocka_unit_test(test_key_decode_negative),
        cmocka_unit_test(test_null_args),
        cmocka_unit_test(test_hkdf_edges),
        cmocka_unit_test(test_hash_misc),
        cmocka_unit_test(test_roundtrip_dh_box),
        cmocka_unit_test(test_roundtrip_sign_keys),
        cmocka_unit_test(test_roundtrip_aead_sbchain),
        cmocka_unit_test(test_fuzz_box_seed),
        cmocka_unit_test(test_box_open_padded_partial),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
