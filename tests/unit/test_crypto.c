/*
 * Crypto layer, known answers: every block of tests/vectors/keys.txt and
 * tests/vectors/crypto.txt (the reference's outputs), the published
 * RFC 7748 / RFC 8032 vectors, and the built-in self-test.
 * Misuse, negative cases and random round trips are in test_crypto_neg.c.
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
#include "vectors.h"

/* ---- helpers ---- */

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes a hex literal into exactly want bytes (asserts the length). */
static void unhex(uint8_t *out, size_t want, const char *hex)
{
    size_t n = strlen(hex);
    assert_int_equal(n, 2 * want);
    for (size_t i = 0; i < want; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        assert_true(hi >= 0 && lo >= 0);
        out[i] = (uint8_t)(hi << 4 | lo);
    }
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static size_t num(const tv_block *b, const char *key)
{
    char *end;
    const char *v = tv_str(b, key);
    unsigned long x = strtoul(v, &end, 10);
    assert_true(*v && *end == '\0');
    return (size_t)x;
}

/* A hex field that must have exactly n bytes, copied into out. */
static void field(uint8_t *out, size_t n, const tv_block *b, const char *key)
{
    size_t len;
    uint8_t *p = tv_hex(b, key, &len);
    assert_int_equal(len, n);
    memcpy(out, p, n);
    free(p);
}

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

/* ---- keys.txt ---- */

static void check_key_block(const tv_block *b, sx_key_alg alg)
{
    size_t rl = sx_key_private_len(alg), len, spki_len, p8_len, smp_len;
    uint8_t *priv = tv_hex(b, "private_raw", &len);
    uint8_t *pub = tv_hex(b, "public_raw", NULL);
    uint8_t *spki = tv_hex(b, "public_spki_der", &spki_len);
    uint8_t *p8 = tv_hex(b, "private_pkcs8_der", &p8_len);
    uint8_t *smp = tv_hex(b, "public_smp_encoded", &smp_len);
    uint8_t derived[57], der[SX_KEY_DER_MAX], raw[57];
    size_t der_len = 0, raw_len = 0;
    sx_key_alg got = SX_KEY_NONE;

    assert_int_equal(len, rl);
    assert_int_equal(sx_key_public_len(alg), rl == 57 ? 57 : rl);

    /* public from private */
    switch (alg) {
    case SX_KEY_ED25519:
        assert_int_equal(sx_ed25519_public(derived, priv), SIMPLEX_OK);
        break;
    case SX_KEY_X25519:
        assert_int_equal(sx_x25519_public(derived, priv), SIMPLEX_OK);
        break;
    case SX_KEY_ED448:
        assert_int_equal(sx_ed448_public(derived, priv), SIMPLEX_OK);
        break;
    case SX_KEY_X448:
        assert_int_equal(sx_x448_public(derived, priv), SIMPLEX_OK);
        break;
    default:
        fail();
    }
    assert_memory_equal(derived, pub, rl);

    /* encodings */
    assert_int_equal(
        sx_key_public_encode(der, sizeof der, &der_len, alg, derived),
        SIMPLEX_OK);
    assert_int_equal(der_len, spki_len);
    assert_memory_equal(der, spki, spki_len);
    /* smpEncode = 1-byte length || DER */
    assert_int_equal(smp_len, spki_len + 1);
    assert_int_equal(smp[0], spki_len);
    assert_memory_equal(smp + 1, spki, spki_len);
    assert_int_equal(
        sx_key_private_encode(der, sizeof der, &der_len, alg, priv),
        SIMPLEX_OK);
    assert_int_equal(der_len, p8_len);
    assert_memory_equal(der, p8, p8_len);
    assert_true(spki_len <= SX_KEY_DER_MAX && p8_len <= SX_KEY_DER_MAX);

    /* and back, both with the algorithm named and with any */
    for (int any = 0; any < 2; any++) {
        sx_key_alg want = any ? SX_KEY_NONE : alg;
        memset(raw, 0, sizeof raw);
        assert_int_equal(sx_key_public_decode(&got, raw, &raw_len, want, spki,
                                              spki_len),
                         SIMPLEX_OK);
        assert_int_equal(got, alg);
        assert_int_equal(raw_len, rl);
        assert_memory_equal(raw, pub, rl);
        memset(raw, 0, sizeof raw);
        assert_int_equal(
            sx_key_private_decode(&got, raw, &raw_len, want, p8, p8_len),
            SIMPLEX_OK);
        assert_int_equal(got, alg);
        assert_int_equal(raw_len, rl);
        assert_memory_equal(raw, priv, rl);
    }
    /* a public key is not a private key and vice versa */
    assert_int_not_equal(
        sx_key_private_decode(&got, raw, &raw_len, SX_KEY_NONE, spki, spki_len),
        SIMPLEX_OK);
    assert_int_not_equal(
        sx_key_public_decode(&got, raw, &raw_len, SX_KEY_NONE, p8, p8_len),
        SIMPLEX_OK);

    free(priv);
    free(pub);
    free(spki);
    free(p8);
    free(smp);
}

static void test_keys_vectors(void **state)
{
    tv_file tf;
    size_t handled = 0, certs = 0;
    (void)state;

    tv_load(&tf, "keys.txt");
    assert_true(tf.n > 0);
    for (size_t i = 0; i < tf.n; i++) {
        const tv_block *b = &tf.b[i];
        if (starts(b->name, "ed25519-")) {
            assert_string_equal(tv_str(b, "algorithm_str"), "Ed25519");
            check_key_block(b, SX_KEY_ED25519);
        } else if (starts(b->name, "x25519-")) {
            assert_string_equal(tv_str(b, "algorithm_str"), "X25519");
            check_key_block(b, SX_KEY_X25519);
        } else if (starts(b->name, "ed448-")) {
            assert_string_equal(tv_str(b, "algorithm_str"), "Ed448");
            check_key_block(b, SX_KEY_ED448);
        } else if (starts(b->name, "x448-")) {
            assert_string_equal(tv_str(b, "algorithm_str"), "X448");
            check_key_block(b, SX_KEY_X448);
        } else if (starts(b->name, "cert-fingerprint-")) {
            size_t n;
            uint8_t *cert = tv_hex(b, "certificate_der", &n);
            uint8_t want[32], got[32];
            field(want, 32, b, "fingerprint");
            assert_true(n > 0);
            assert_int_equal(sx_sha256(got, cert, n), SIMPLEX_OK);
            assert_memory_equal(got, want, 32);
            free(cert);
            certs++;
        } else {
            fail_msg("unhandled keys.txt vector %s", b->name);
        }
        handled++;
    }
    assert_int_equal(handled, tf.n);
    assert_int_equal(certs, 3);
    tv_free(&tf);
}

/* ---- crypto.txt ---- */

static void do_dh(const tv_block *b, int x448)
{
    size_t kl = x448 ? SX_X448_BYTES : SX_X25519_BYTES;
    uint8_t a[56], pa[56], bb[56], pb[56], ss[56], got[56];
    int (*pub)(uint8_t *, const uint8_t *) = x448 ? sx_x448_public
                                                   : sx_x25519_public;
    int (*dh)(uint8_t *, const uint8_t *, const uint8_t *) =
        x448 ? sx_x448_dh : sx_x25519_dh;

    field(a, kl, b, "private_a");
    field(pa, kl, b, "public_a");
    field(bb, kl, b, "private_b");
    field(pb, kl, b, "public_b");
    field(ss, kl, b, "shared_secret");
    assert_int_equal(pub(got, a), SIMPLEX_OK);
    assert_memory_equal(got, pa, kl);
    assert_int_equal(pub(got, bb), SIMPLEX_OK);
    assert_memory_equal(got, pb, kl);
    assert_int_equal(dh(got, pb, a), SIMPLEX_OK);
    assert_memory_equal(got, ss, kl);
    assert_int_equal(dh(got, pa, bb), SIMPLEX_OK);
    assert_memory_equal(got, ss, kl);
}

/* cbEncrypt: the vector's keys, pad, seal both ways, open */
static void do_cbencrypt(const tv_block *b)
{
    uint8_t sp[32], spub[32], rp[32], rpub[32], ss[32], nonce[24], k1[32],
        k2[32], tmp[32];
    size_t ml, pml, cl, padded_len = num(b, "padded_len_str");
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *pm = tv_hex(b, "padded_msg", &pml);
    uint8_t *ct = tv_hex(b, "ciphertext", &cl);
    uint8_t *out = malloc(cl + 1), *back = malloc(cl + 1);
    const uint8_t *m = NULL;
    size_t mlen = 0;

    assert_non_null(out);
    assert_non_null(back);
    field(sp, 32, b, "sender_private");
    field(spub, 32, b, "sender_public");
    field(rp, 32, b, "recipient_private");
    field(rpub, 32, b, "recipient_public");
    field(ss, 32, b, "shared_secret");
    field(nonce, 24, b, "nonce");
    assert_int_equal(pml, padded_len);
    assert_int_equal(cl, padded_len + SX_BOX_TAG_BYTES);

    assert_int_equal(sx_x25519_public(tmp, sp), SIMPLEX_OK);
    assert_memory_equal(tmp, spub, 32);
    assert_int_equal(sx_x25519_public(tmp, rp), SIMPLEX_OK);
    assert_memory_equal(tmp, rpub, 32);
    assert_int_equal(sx_x25519_dh(tmp, rpub, sp), SIMPLEX_OK);
    assert_memory_equal(tmp, ss, 32);

    /* pad alone */
    assert_int_equal(sx_pad(out, padded_len, msg, ml), SIMPLEX_OK);
    assert_memory_equal(out, pm, pml);

    /* sender side: key from the keys, and from the raw secret */
    assert_int_equal(sx_cb_key(k1, rpub, sp), SIMPLEX_OK);
    assert_int_equal(sx_cb_key_from_dh(k2, ss), SIMPLEX_OK);
    assert_memory_equal(k1, k2, 32);
    assert_int_equal(sx_box_seal_padded(out, padded_len, msg, ml, nonce, k1),
                     SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);
    assert_int_equal(sx_box_seal(out, pm, pml, nonce, k1), SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);

    /* recipient side */
    assert_int_equal(sx_cb_key(k2, spub, rp), SIMPLEX_OK);
    assert_memory_equal(k1, k2, 32);
    assert_int_equal(sx_box_open_padded(back, &m, &mlen, ct, cl, nonce, k2),
                     SIMPLEX_OK);
    assert_int_equal(mlen, ml);
    assert_ptr_equal(m, back + 2);
    if (ml)
        assert_memory_equal(m, msg, ml);
    assert_int_equal(sx_box_open(back, ct, cl, nonce, k2), SIMPLEX_OK);
    assert_memory_equal(back, pm, pml);

    free(msg);
    free(pm);
    free(ct);
    free(out);
    free(back);
}

static void do_cbencryptnopad(const tv_block *b)
{
    uint8_t sp[32], rpub[32], ss[32], nonce[24], key[32], tmp[32];
    size_t ml, cl;
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *ct = tv_hex(b, "ciphertext", &cl);
    uint8_t *out = malloc(cl + 1);

    assert_non_null(out);
    field(sp, 32, b, "sender_private");
    field(rpub, 32, b, "recipient_public");
    field(ss, 32, b, "shared_secret");
    field(nonce, 24, b, "nonce");
    assert_int_equal(strlen(tv_str(b, "msg_str")), ml);
    assert_memory_equal(tv_str(b, "msg_str"), msg, ml);
    assert_int_equal(cl, ml + SX_BOX_TAG_BYTES);
    assert_int_equal(sx_x25519_dh(tmp, rpub, sp), SIMPLEX_OK);
    assert_memory_equal(tmp, ss, 32);
    assert_int_equal(sx_cb_key(key, rpub, sp), SIMPLEX_OK);
    assert_int_equal(sx_box_seal(out, msg, ml, nonce, key), SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);
    assert_int_equal(sx_box_open(out, ct, cl, nonce, key), SIMPLEX_OK);
    assert_memory_equal(out, msg, ml);
    free(msg);
    free(ct);
    free(out);
}

static void do_sbencrypt(const tv_block *b)
{
    uint8_t raw[32], nonce[24], key[32], plain_key[32];
    size_t ml, cl, padded_len = num(b, "padded_len_str");
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *ct = tv_hex(b, "ciphertext", &cl);
    uint8_t *out = malloc(cl + 1), *back = malloc(cl + 1);
    const uint8_t *m = NULL;
    size_t mlen = 0;

    assert_non_null(out);
    assert_non_null(back);
    field(raw, 32, b, "key");
    field(nonce, 24, b, "nonce");
    assert_int_equal(cl, padded_len + SX_BOX_TAG_BYTES);
    assert_int_equal(sx_sb_key(key, raw), SIMPLEX_OK);
    assert_int_equal(sx_box_seal_padded(out, padded_len, msg, ml, nonce, key),
                     SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);
    assert_int_equal(sx_box_open_padded(back, &m, &mlen, ct, cl, nonce, key),
                     SIMPLEX_OK);
    assert_int_equal(mlen, ml);
    assert_memory_equal(m, msg, ml);
    /* the reference's secret box is not crypto_secretbox(key) */
    memcpy(plain_key, raw, 32);
    assert_int_equal(
        sx_box_open_padded(back, &m, &mlen, ct, cl, nonce, plain_key),
        SIMPLEX_ERR_DECRYPT);
    free(msg);
    free(ct);
    free(out);
    free(back);
}

static void do_pad(const tv_block *b)
{
    size_t ml, pl, padded_len = num(b, "padded_len_str");
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *pd = tv_hex(b, "padded", &pl);
    uint8_t *out = malloc(padded_len + 1);
    const uint8_t *m = NULL;
    size_t mlen = 0;

    assert_non_null(out);
    assert_int_equal(pl, padded_len);
    assert_int_equal(sx_pad(out, padded_len, msg, ml), SIMPLEX_OK);
    assert_memory_equal(out, pd, pl);
    assert_int_equal(sx_unpad(pd, pl, &m, &mlen), SIMPLEX_OK);
    assert_int_equal(mlen, ml);
    assert_ptr_equal(m, pd + 2);
    if (ml)
        assert_memory_equal(m, msg, ml);
    free(msg);
    free(pd);
    free(out);
}

static void do_pad_too_long(const tv_block *b)
{
    size_t ml, padded_len = num(b, "padded_len_str");
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t out[64];

    assert_string_equal(tv_str(b, "result_str"), "error CryptoLargeMsgError");
    assert_true(padded_len <= sizeof out);
    memset(out, 0xa5, sizeof out);
    assert_int_equal(sx_pad(out, padded_len, msg, ml), SIMPLEX_ERR_TOO_LARGE);
    for (size_t i = 0; i < sizeof out; i++)
        assert_int_equal(out[i], 0xa5);
    /* one byte more room and it fits exactly */
    assert_int_equal(sx_pad(out, ml + 2, msg, ml), SIMPLEX_OK);
    free(msg);
}

static void do_unpad(const tv_block *b)
{
    size_t ml, pl;
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *pd = tv_hex(b, "padded", &pl);
    const uint8_t *m = NULL;
    size_t mlen = 0;

    assert_int_equal(sx_unpad(pd, pl, &m, &mlen), SIMPLEX_OK);
    assert_int_equal(mlen, ml);
    assert_memory_equal(m, msg, ml);
    free(msg);
    free(pd);
}

static void do_aead(const tv_block *b)
{
    uint8_t key[32], iv[16], tag[16], want_tag[16];
    size_t adl, ml, cl, padded_len = num(b, "padded_len_str");
    uint8_t *ad = tv_hex(b, "ad", &adl);
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *ct = tv_hex(b, "ciphertext", &cl);
    uint8_t *out = malloc(cl + 1), *back = malloc(cl + 1);
    const uint8_t *m = NULL;
    size_t mlen = 0;

    assert_non_null(out);
    assert_non_null(back);
    field(key, 32, b, "key");
    field(iv, 16, b, "iv");
    field(want_tag, 16, b, "auth_tag");
    assert_int_equal(cl, padded_len);
    assert_int_equal(sx_aead_encrypt_padded(out, tag, key, iv, sizeof iv, ad,
                                            adl, padded_len, msg, ml),
                     SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);
    assert_memory_equal(tag, want_tag, 16);
    assert_int_equal(sx_aead_decrypt_padded(back, &m, &mlen, key, iv, sizeof iv,
                                            ad, adl, ct, cl, want_tag),
                     SIMPLEX_OK);
    assert_int_equal(mlen, ml);
    if (ml)
        assert_memory_equal(m, msg, ml);
    /* the unpadded primitive gives the same bytes for pad(msg) */
    assert_int_equal(sx_pad(back, padded_len, msg, ml), SIMPLEX_OK);
    assert_int_equal(sx_aes_gcm_encrypt(out, tag, key, iv, sizeof iv, ad, adl,
                                        back, padded_len),
                     SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);
    assert_memory_equal(tag, want_tag, 16);
    free(ad);
    free(msg);
    free(ct);
    free(out);
    free(back);
}

static void do_aes_nopad(const tv_block *b)
{
    uint8_t key[32], tag[16], want_tag[16];
    size_t ivl, ml, cl;
    uint8_t *iv = tv_hex(b, "iv", &ivl);
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *ct = tv_hex(b, "ciphertext", &cl);
    uint8_t *out = malloc(cl + 1);

    assert_non_null(out);
    field(key, 32, b, "key");
    field(want_tag, 16, b, "auth_tag");
    assert_int_equal(ivl, 12);
    assert_int_equal(cl, ml);
    assert_int_equal(
        sx_aes_gcm_encrypt(out, tag, key, iv, ivl, NULL, 0, msg, ml),
        SIMPLEX_OK);
    assert_memory_equal(out, ct, cl);
    assert_memory_equal(tag, want_tag, 16);
    assert_int_equal(
        sx_aes_gcm_decrypt(out, key, iv, ivl, NULL, 0, ct, cl, want_tag),
        SIMPLEX_OK);
    assert_memory_equal(out, msg, ml);
    free(iv);
    free(msg);
    free(ct);
    free(out);
}

static void do_hkdf(const tv_block *b)
{
    size_t sl, il, nl, ol, len = num(b, "len_str");
    uint8_t *salt = tv_hex(b, "salt", &sl);
    uint8_t *ikm = tv_hex(b, "ikm", &il);
    uint8_t *info = tv_hex(b, "info", &nl);
    uint8_t *okm = tv_hex(b, "okm", &ol);
    uint8_t *out = malloc(len + 1);

    assert_non_null(out);
    assert_int_equal(strlen(tv_str(b, "info_str")), nl);
    assert_memory_equal(tv_str(b, "info_str"), info, nl);
    assert_int_equal(ol, len);
    assert_int_equal(sx_hkdf_sha512(out, len, salt, sl, ikm, il, info, nl),
                     SIMPLEX_OK);
    assert_memory_equal(out, okm, len);
    if (sl == 0) {
        /* an empty salt may also be given as NULL */
        assert_int_equal(
            sx_hkdf_sha512(out, len, NULL, 0, ikm, il, info, nl), SIMPLEX_OK);
        assert_memory_equal(out, okm, len);
    }
    free(salt);
    free(ikm);
    free(info);
    free(okm);
    free(out);
}

static void do_sbchain(const tv_block *b)
{
    size_t sl, kl;
    uint8_t *salt = tv_hex(b, "salt", &sl);
    uint8_t *secret = tv_hex(b, "secret", &kl);
    uint8_t okm[64], ck1[32], ck2[32], key[32], nonce[24], want_k[32],
        want_n[24];

    field(okm, 64, b, "okm_init");
    assert_int_equal(sx_sbchain_init(ck1, ck2, salt, sl, secret, kl),
                     SIMPLEX_OK);
    assert_memory_equal(ck1, okm, 32);
    assert_memory_equal(ck2, okm + 32, 32);

    assert_int_equal(sx_sbchain_next(ck1, key, nonce), SIMPLEX_OK);
    field(want_k, 32, b, "ck1_step1_key");
    field(want_n, 24, b, "ck1_step1_nonce");
    assert_memory_equal(key, want_k, 32);
    assert_memory_equal(nonce, want_n, 24);
    assert_int_equal(sx_sbchain_next(ck1, key, nonce), SIMPLEX_OK);
    field(want_k, 32, b, "ck1_step2_key");
    field(want_n, 24, b, "ck1_step2_nonce");
    assert_memory_equal(key, want_k, 32);
    assert_memory_equal(nonce, want_n, 24);
    assert_int_equal(sx_sbchain_next(ck2, key, nonce), SIMPLEX_OK);
    field(want_k, 32, b, "ck2_step1_key");
    field(want_n, 24, b, "ck2_step1_nonce");
    assert_memory_equal(key, want_k, 32);
    assert_memory_equal(nonce, want_n, 24);
    free(salt);
    free(secret);
}

static void do_hash(const tv_block *b, int which)
{
    size_t ml, dl;
    uint8_t *msg = tv_hex(b, "msg", &ml);
    uint8_t *dig = tv_hex(b, "digest", &dl);
    uint8_t out[64];

    switch (which) {
    case 256:
        assert_int_equal(dl, 32);
        assert_int_equal(sx_sha256(out, msg, ml), SIMPLEX_OK);
        break;
    case 512:
        assert_int_equal(dl, 64);
        assert_int_equal(sx_sha512(out, msg, ml), SIMPLEX_OK);
        break;
    default:
        assert_int_equal(dl, 32);
        assert_int_equal(sx_sha3_256(out, msg, ml), SIMPLEX_OK);
        break;
    }
    assert_memory_equal(out, dig, dl);
    free(msg);
    free(dig);
}

static void do_sign(const tv_block *b, int ed448)
{
    size_t kl = ed448 ? 57 : 32, sl = ed448 ? 114 : 64, ml;
    uint8_t sk[57], pk[57], want[114], sig[114], tmp[57];
    uint8_t *msg = tv_hex(b, "msg", &ml);

    assert_string_equal(tv_str(b, "algorithm_str"), ed448 ? "Ed448" : "Ed25519");
    field(sk, kl, b, "private_raw");
    field(pk, kl, b, "public_raw");
    field(want, sl, b, "signature");
    if (ed448) {
        assert_int_equal(sx_ed448_public(tmp, sk), SIMPLEX_OK);
        assert_memory_equal(tmp, pk, kl);
        assert_int_equal(sx_ed448_sign(sig, msg, ml, sk), SIMPLEX_OK);
        assert_memory_equal(sig, want, sl);
        assert_int_equal(sx_ed448_verify(want, msg, ml, pk), SIMPLEX_OK);
        want[sl - 2] ^= 0x10;
        assert_int_equal(sx_ed448_verify(want, msg, ml, pk),
                         SIMPLEX_ERR_SIGNATURE);
    } else {
        assert_int_equal(sx_ed25519_public(tmp, sk), SIMPLEX_OK);
        assert_memory_equal(tmp, pk, kl);
        assert_int_equal(sx_ed25519_sign(sig, msg, ml, sk), SIMPLEX_OK);
        assert_memory_equal(sig, want, sl);
        assert_int_equal(sx_ed25519_verify(want, msg, ml, pk), SIMPLEX_OK);
        want[5] ^= 0x10;
        assert_int_equal(sx_ed25519_verify(want, msg, ml, pk),
                         SIMPLEX_ERR_SIGNATURE);
    }
    free(msg);
}

static void do_cbauth(const tv_block *b)
{
    uint8_t spriv[32], spub[32], cpriv[32], cpub[32], ss[32], nonce[24],
        dig[64], want[80], out[80], tmp[64];
    size_t ml;
    uint8_t *msg = tv_hex(b, "msg", &ml);

    field(spriv, 32, b, "server_private");
    field(spub, 32, b, "server_public");
    field(cpriv, 32, b, "client_private");
    field(cpub, 32, b, "client_public");
    field(ss, 32, b, "shared_secret");
    field(nonce, 24, b, "nonce");
    field(dig, 64, b, "msg_sha512");
    field(want, 80, b, "authenticator");

    assert_int_equal(sx_x25519_public(tmp, spriv), SIMPLEX_OK);
    assert_memory_equal(tmp, spub, 32);
    assert_int_equal(sx_x25519_public(tmp, cpriv), SIMPLEX_OK);
    assert_memory_equal(tmp, cpub, 32);
    assert_int_equal(sx_x25519_dh(tmp, spub, cpriv), SIMPLEX_OK);
    assert_memory_equal(tmp, ss, 32);
    assert_int_equal(sx_sha512(tmp, msg, ml), SIMPLEX_OK);
    assert_memory_equal(tmp, dig, 64);

    /* the client authorises, the server verifies */
    assert_int_equal(sx_cb_authenticate(out, spub, cpriv, nonce, msg, ml),
                     SIMPLEX_OK);
    assert_memory_equal(out, want, 80);
    assert_int_equal(sx_cb_verify(want, cpub, spriv, nonce, msg, ml),
                     SIMPLEX_OK);
    /* and the wrong message, nonce or authenticator does not verify */
    assert_int_equal(sx_cb_verify(want, cpub, spriv, nonce, msg, ml - 1),
                     SIMPLEX_ERR_SIGNATURE);
    nonce[0] ^= 1;
    assert_int_equal(sx_cb_verify(want, cpub, spriv, nonce, msg, ml),
                     SIMPLEX_ERR_SIGNATURE);
    nonce[0] ^= 1;
    want[79] ^= 1;
    assert_int_equal(sx_cb_verify(want, cpub, spriv, nonce, msg, ml),
                     SIMPLEX_ERR_SIGNATURE);
    free(msg);
}

static void do_cbnonce(const tv_block *b)
{
    size_t il;
    uint8_t *in = tv_hex(b, "input", &il);
    uint8_t want[24], rev[24], got[24];

    field(want, 24, b, "nonce");
    field(rev, 24, b, "reverse_nonce");
    sx_cb_nonce(got, in, il);
    assert_memory_equal(got, want, 24);
    sx_reverse_nonce(got, want);
    assert_memory_equal(got, rev, 24);
    /* in place, and reversing twice is the identity */
    memcpy(got, want, 24);
    sx_reverse_nonce(got, got);
    assert_memory_equal(got, rev, 24);
    sx_reverse_nonce(got, got);
    assert_memory_equal(got, want, 24);
    free(in);
}

static void test_crypto_vectors(void **state)
{
    tv_file tf;
    size_t handled = 0;
    (void)state;

    tv_load(&tf, "crypto.txt");
    assert_true(tf.n > 0);
    for (size_t i = 0; i < tf.n; i++) {
        const tv_block *b = &tf.b[i];
        const char *n = b->name;
        if (strcmp(n, "dh-x25519") == 0)
            do_dh(b, 0);
        else if (strcmp(n, "dh-x448") == 0)
            do_dh(b, 1);
        else if (starts(n, "cbencrypt-"))
            do_cbencrypt(b);
        else if (strcmp(n, "cbencryptnopad") == 0)
            do_cbencryptnopad(b);
        else if (starts(n, "sbencrypt-"))
            do_sbencrypt(b);
        else if (strcmp(n, "pad-too-long") == 0)
            do_pad_too_long(b);
        else if (starts(n, "pad-"))
            do_pad(b);
        else if (starts(n, "unpad-"))
            do_unpad(b);
        else if (starts(n, "aead-"))
            do_aead(b);
        else if (starts(n, "aes-gcm-nopad-"))
            do_aes_nopad(b);
        else if (starts(n, "hkdf-"))
            do_hkdf(b);
        else if (starts(n, "sbchain-"))
            do_sbchain(b);
        else if (starts(n, "sha256-"))
            do_hash(b, 256);
        else if (starts(n, "sha512-"))
            do_hash(b, 512);
        else if (starts(n, "sha3-256-"))
            do_hash(b, 3);
        else if (starts(n, "sign-ed25519-"))
            do_sign(b, 0);
        else if (starts(n, "sign-ed448-"))
            do_sign(b, 1);
        else if (strcmp(n, "cbauthenticate") == 0)
            do_cbauth(b);
        else if (starts(n, "cbnonce-"))
            do_cbnonce(b);
        else
            fail_msg("unhandled crypto.txt vector %s", n);
        handled++;
    }
    assert_int_equal(handled, tf.n);
    print_message("crypto.txt: %zu vectors\n", handled);
    tv_free(&tf);
}

/* ---- RFC 7748 ---- */

static void test_rfc7748_x25519(void **state)
{
    /* section 5.2, single iterations */
    static const char *const v[2][3] = {
        {"a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4",
         "e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c",
         "c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552"},
        {"4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d",
         "e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493",
         "95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957"},
    };
    uint8_t k[32], u[32], want[32], got[32];
    uint8_t a[32], ap[32], b[32], bp[32], ss[32];
    (void)state;

    for (size_t i = 0; i < 2; i++) {
        unhex(k, 32, v[i][0]);
        unhex(u, 32, v[i][1]);
        unhex(want, 32, v[i][2]);
        assert_int_equal(sx_x25519_dh(got, u, k), SIMPLEX_OK);
        assert_memory_equal(got, want, 32);
    }

    /* section 6.1 */
    unhex(a, 32, "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    unhex(ap, 32, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    unhex(b, 32, "5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
    unhex(bp, 32, "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    unhex(ss, 32, "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    assert_int_equal(sx_x25519_public(got, a), SIMPLEX_OK);
    assert_memory_equal(got, ap, 32);
    assert_int_equal(sx_x25519_public(got, b), SIMPLEX_OK);
    assert_memory_equal(got, bp, 32);
    assert_int_equal(sx_x25519_dh(got, bp, a), SIMPLEX_OK);
    assert_memory_equal(got, ss, 32);
    assert_int_equal(sx_x25519_dh(got, ap, b), SIMPLEX_OK);
    assert_memory_equal(got, ss, 32);
}

static void test_rfc7748_x448(void **state)
{
    /* section 5.2, single iterations */
    static const char *const v[2][3] = {
        {"3d262fddf9ec8e88495266fea19a34d28882acef045104d0d1aae121"
         "700a779c984c24f8cdd78fbff44943eba368f54b29259a4f1c600ad3",
         "06fce640fa3487bfda5f6cf2d5263f8aad88334cbd07437f020f08f9"
         "814dc031ddbdc38c19c6da2583fa5429db94ada18aa7a7fb4ef8a086",
         "ce3e4ff95a60dc6697da1db1d85e6afbdf79b50a2412d7546d5f239f"
         "e14fbaadeb445fc66a01b0779d98223961111e21766282f73dd96b6f"},
        {"203d494428b8399352665ddca42f9de8fef600908e0d461cb021f8c5"
         "38345dd77c3e4806e25f46d3315c44e0a5b4371282dd2c8d5be3095f",
         "0fbcc2f993cd56d3305b0b7d9e55d4c1a8fb5dbb52f8e9a1e9b6201b"
         "165d015894e56c4d3570bee52fe205e28a78b91cdfbde71ce8d157db",
         "884a02576239ff7a2f2f63b2db6a9ff37047ac13568e1e30fe63c4a7"
         "ad1b3ee3a5700df34321d62077e63633c575c1c954514e99da7c179d"},
    };
    uint8_t k[56], u[56], want[56], got[56];
    uint8_t a[56], ap[56], b[56], bp[56], ss[56];
    (void)state;

    for (size_t i = 0; i < 2; i++) {
        unhex(k, 56, v[i][0]);
        unhex(u, 56, v[i][1]);
        unhex(want, 56, v[i][2]);
        assert_int_equal(sx_x448_dh(got, u, k), SIMPLEX_OK);
        assert_memory_equal(got, want, 56);
    }

    /* section 6.2 */
    unhex(a, 56, "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28d"
                 "d9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b");
    unhex(ap, 56, "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c"
                  "22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0");
    unhex(b, 56, "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d"
                 "6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d");
    unhex(bp, 56, "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b430"
                  "27d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609");
    unhex(ss, 56, "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282b"
                  "b60c0b56fd2464c335543936521c24403085d59a449a5037514a879d");
    assert_int_equal(sx_x448_public(got, a), SIMPLEX_OK);
    assert_memory_equal(got, ap, 56);
    assert_int_equal(sx_x448_public(got, b), SIMPLEX_OK);
    assert_memory_equal(got, bp, 56);
    assert_int_equal(sx_x448_dh(got, bp, a), SIMPLEX_OK);
    assert_memory_equal(got, ss, 56);
    assert_int_equal(sx_x448_dh(got, ap, b), SIMPLEX_OK);
    assert_memory_equal(got, ss, 56);
}

/* ---- RFC 8032 ---- */

typedef struct eddsa_kat {
    const char *sk, *pk, *msg, *sig;
} eddsa_kat;

static void test_rfc8032_ed25519(void **state)
{
    /* section 7.1: TEST 1, TEST 2, TEST 3 */
    static const eddsa_kat v[] = {
        {"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
         "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
        {"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
         "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
         "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
        {"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
         "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
         "af82",
         "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
         "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
    };
    (void)state;
    for (size_t i = 0; i < SX_ARRAY_LEN(v); i++) {
        uint8_t sk[32], pk[32], sig[64], got[64], msg[2];
        size_t ml = strlen(v[i].msg) / 2;
        unhex(sk, 32, v[i].sk);
        unhex(pk, 32, v[i].pk);
        unhex(sig, 64, v[i].sig);
        unhex(msg, ml, v[i].msg);
        assert_int_equal(sx_ed25519_public(got, sk), SIMPLEX_OK);
        assert_memory_equal(got, pk, 32);
        assert_int_equal(sx_ed25519_sign(got, ml ? msg : NULL, ml, sk),
                         SIMPLEX_OK);
        assert_memory_equal(got, sig, 64);
        assert_int_equal(sx_ed25519_verify(sig, ml ? msg : NULL, ml, pk),
                         SIMPLEX_OK);
        {
            /* the expanded key is seed || public key and signs the same */
            uint8_t x[SX_ED25519_EXPANDED_BYTES];
            assert_int_equal(sx_ed25519_expand(x, sk), SIMPLEX_OK);
            assert_memory_equal(x, sk, 32);
            assert_memory_equal(x + 32, pk, 32);
            memset(got, 0, sizeof got);
            assert_int_equal(
                sx_ed25519_sign_expanded(got, ml ? msg : NULL, ml, x),
                SIMPLEX_OK);
            assert_memory_equal(got, sig, 64);
        }
    }
}

/* sx_ed25519_sign_expanded computes RFC 8032 signing itself (OpenSSL's
 * SHA-512): the same bytes as libsodium's, every length, up to a block. */
static void test_ed25519_expanded_matches_sodium(void **state)
{
    static uint8_t msg[17000];
    static const size_t lens[] = {0,   1,    31,   32,   63,    64,   111,
                                  112, 127,  128,  129,  1000,  16048,
                                  16384, 17000};
    (void)state;
    sx_random(msg, sizeof msg);
    for (int k = 0; k < 8; k++) {
        uint8_t pk[32], sk[32], x[SX_ED25519_EXPANDED_BYTES];
        assert_int_equal(sx_ed25519_keypair(pk, sk), SIMPLEX_OK);
        assert_int_equal(sx_ed25519_expand(x, sk), SIMPLEX_OK);
        assert_memory_equal(x + 32, pk, 32);
        for (size_t i = 0; i < SX_ARRAY_LEN(lens); i++) {
            uint8_t a[64], b[64];
            const void *m = lens[i] ? msg + k : NULL;
            size_t n = lens[i] > sizeof msg - (size_t)k ? lens[i] - (size_t)k
                                                         : lens[i];
            assert_int_equal(sx_ed25519_sign(a, m, n, sk), SIMPLEX_OK);
            assert_int_equal(sx_ed25519_sign_expanded(b, m, n, x), SIMPLEX_OK);
            assert_memory_equal(a, b, 64);
            assert_int_equal(crypto_sign_ed25519_detached(b, NULL,
                                                          n ? m : msg, n, x),
                             0);
            assert_memory_equal(a, b, 64);
            assert_int_equal(sx_ed25519_verify(a, m, n, pk), SIMPLEX_OK);
        }
    }
    {
        uint8_t sig[64], x[SX_ED25519_EXPANDED_BYTES] = {0};
        assert_int_equal(sx_ed25519_expand(NULL, msg), SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(sx_ed25519_expand(x, NULL), SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(sx_ed25519_sign_expanded(NULL, msg, 1, x),
                         SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(sx_ed25519_sign_expanded(sig, NULL, 1, x),
                         SIMPLEX_ERR_INVALID_ARG);
        assert_int_equal(sx_ed25519_sign_expanded(sig, msg, 1, NULL),
                         SIMPLEX_ERR_INVALID_ARG);
    }
}

static void test_rfc8032_ed448(void **state)
{
    /* section 7.4: "-----Blank" and "-----1 octet" */
    static const eddsa_kat v[] = {
        {"6c82a562cb808d10d632be89c8513ebf6c929f34ddfa8c9f63c9960ef6e348a3"
         "528c8a3fcc2f044e39a3fc5b94492f8f032e7549a20098f95b",
         "5fd7449b59b461fd2ce787ec616ad46a1da1342485a70e1f8a0ea75d80e96778"
         "edf124769b46c7061bd6783df1e50f6cd1fa1abeafe8256180",
         "",
         "533a37f6bbe457251f023c0d88f976ae2dfb504a843e34d2074fd823d41a591f"
         "2b233f034f628281f2fd7a22ddd47d7828c59bd0a21bfd3980ff0d2028d4b18a"
         "9df63e006c5d1c2d345b925d8dc00b4104852db99ac5c7cdda8530a113a0f4db"
         "b61149f05a7363268c71d95808ff2e652600"},
        {"c4eab05d357007c632f3dbb48489924d552b08fe0c353a0d4a1f00acda2c463a"
         "fbea67c5e8d2877c5e3bc397a659949ef8021e954e0a12274e",
         "43ba28f430cdff456ae531545f7ecd0ac834a55d9358c0372bfa0c6c6798c086"
         "6aea01eb00742802b8438ea4cb82169c235160627b4c3a9480",
         "03",
         "26b8f91727bd62897af15e41eb43c377efb9c610d48f2335cb0bd0087810f435"
         "2541b143c4b981b7e18f62de8ccdf633fc1bf037ab7cd779805e0dbcc0aae1cb"
         "cee1afb2e027df36bc04dcecbf154336c19f0af7e0a6472905e799f1953d2a0f"
         "f3348ab21aa4adafd1d234441cf807c03a00"},
    };
    (void)state;
    for (size_t i = 0; i < SX_ARRAY_LEN(v); i++) {
        uint8_t sk[57], pk[57], sig[114], got[114], msg[1];
        size_t ml = strlen(v[i].msg) / 2;
        unhex(sk, 57, v[i].sk);
        unhex(pk, 57, v[i].pk);
        unhex(sig, 114, v[i].sig);
        unhex(msg, ml, v[i].msg);
        assert_int_equal(sx_ed448_public(got, sk), SIMPLEX_OK);
        assert_memory_equal(got, pk, 57);
        assert_int_equal(sx_ed448_sign(got, ml ? msg : NULL, ml, sk),
                         SIMPLEX_OK);
        assert_memory_equal(got, sig, 114);
        assert_int_equal(sx_ed448_verify(sig, ml ? msg : NULL, ml, pk),
                         SIMPLEX_OK);
    }
}

/* ---- the self-test ---- */

static void test_selftest(void **state)
{
    (void)state;
    assert_int_equal(sx_crypto_selftest(), SIMPLEX_OK);
    assert_int_equal(simplex_selftest(), SIMPLEX_OK);
    simplex_global_cleanup();
    assert_int_equal(simplex_selftest(), SIMPLEX_ERR_NOT_INITIALIZED);
    assert_int_equal(simplex_global_init(NULL), SIMPLEX_OK);
    assert_int_equal(simplex_selftest(), SIMPLEX_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_vectors),
        cmocka_unit_test(test_crypto_vectors),
        cmocka_unit_test(test_rfc7748_x25519),
        cmocka_unit_test(test_rfc7748_x448),
        cmocka_unit_test(test_rfc8032_ed25519),
        cmocka_unit_test(test_ed25519_expanded_matches_sodium),
        cmocka_unit_test(test_rfc8032_ed448),
        cmocka_unit_test(test_selftest),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
