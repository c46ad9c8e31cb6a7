/*
 * SMP codecs, part 4: checking the server's handshake credentials.
 *
 * The server hello carries its certificate chain and its session DH key
 * as an X.509 "signed object": SEQUENCE { SEQUENCE { SPKI },
 * AlgorithmIdentifier, BIT STRING signature }, where the signature covers
 * the inner SEQUENCE, made with the TLS leaf certificate's key.
 * A minimal strict DER walker finds what is needed; it never reads out of
 * bounds and accepts only definite, minimally encoded lengths.
 */
#include <string.h>

#include "client/smp_internal.h"

typedef struct der_item {
    uint8_t tag;
    sx_smp_bytes whole;   /* tag, length and content */
    sx_smp_bytes content;
} der_item;

static int der_next(sx_rd *r, der_item *it)
{
    size_t start = r->pos, len = 0;
    uint8_t tag, b;
    SMP_TRY(sx_rd_u8(r, &tag));
    if ((tag & 0x1f) == 0x1f)
        return SIMPLEX_ERR_PARSE; /* multi-byte tags are not used here */
    SMP_TRY(sx_rd_u8(r, &b));
    if (b < 0x80) {
        len = b;
    } else {
        size_t nb = b & 0x7f;
        if (nb == 0 || nb > 3)
            return SIMPLEX_ERR_PARSE;
        for (size_t i = 0; i < nb; i++) {
            uint8_t x;
            SMP_TRY(sx_rd_u8(r, &x));
            if (i == 0 && x == 0)
                return SIMPLEX_ERR_PARSE; /* not minimal */
            len = (len << 8) | x;
        }
        if (len < 0x80)
            return SIMPLEX_ERR_PARSE; /* not minimal */
    }
    if (sx_rd_left(r) < len)
        return SIMPLEX_ERR_TRUNCATED;
    it->tag = tag;
    it->content.p = r->p + r->pos;
    it->content.n = len;
    r->pos += len;
    it->whole.p = r->p + start;
    it->whole.n = r->pos - start;
    return 0;
}

static int der_expect(sx_rd *r, uint8_t tag, der_item *it)
{
    SMP_TRY(der_next(r, it));
    return it->tag == tag ? 0 : SIMPLEX_ERR_PARSE;
}

static void rd_of(sx_rd *r, sx_smp_bytes b)
{
    sx_rd_init(r, b.p, b.n);
}

/* The SubjectPublicKeyInfo of an X.509 certificate. */
static int cert_spki(sx_smp_bytes cert, sx_smp_bytes *spki)
{
    sx_rd r, tbs;
    der_item c, t, it;
    rd_of(&r, cert);
    SMP_TRY(der_expect(&r, 0x30, &c));
    SMP_TRY(sx_rd_end(&r));
    rd_of(&r, c.content);
    SMP_TRY(der_expect(&r, 0x30, &t));
    rd_of(&tbs, t.content);
    SMP_TRY(der_next(&tbs, &it));
    if (it.tag == 0xa0) /* explicit version */
        SMP_TRY(der_next(&tbs, &it));
    if (it.tag != 0x02) /* serial number */
        return SIMPLEX_ERR_PARSE;
    SMP_TRY(der_expect(&tbs, 0x30, &it)); /* signature algorithm */
    SMP_TRY(der_expect(&tbs, 0x30, &it)); /* issuer */
    SMP_TRY(der_expect(&tbs, 0x30, &it)); /* validity */
    SMP_TRY(der_expect(&tbs, 0x30, &it)); /* subject */
    SMP_TRY(der_expect(&tbs, 0x30, &it)); /* subject public key info */
    *spki = it.whole;
    return 0;
}

static const uint8_t oid_ed25519[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
static const uint8_t oid_ed448[] = {0x06, 0x03, 0x2b, 0x65, 0x71};

int sx_smp_signed_key_verify(sx_smp_key *out, sx_smp_bytes signed_key,
                             sx_smp_bytes signer_cert)
{
    sx_rd r, alg;
    der_item so, tbs, algid, oid, sig;
    sx_smp_bytes spki;
    sx_smp_key signer;
    int rc;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    rd_of(&r, signed_key);
    SMP_TRY(der_expect(&r, 0x30, &so));
    SMP_TRY(sx_rd_end(&r));
    rd_of(&r, so.content);
    SMP_TRY(der_expect(&r, 0x30, &tbs));
    SMP_TRY(der_expect(&r, 0x30, &algid));
    SMP_TRY(der_expect(&r, 0x03, &sig));
    SMP_TRY(sx_rd_end(&r));
    rd_of(&alg, algid.content);
    SMP_TRY(der_expect(&alg, 0x06, &oid));
    SMP_TRY(sx_rd_end(&alg)); /* EdDSA: no parameters */
    if (sig.content.n < 1 || sig.content.p[0] != 0)
        return SIMPLEX_ERR_PARSE; /* unused bits must be 0 */

    SMP_TRY(cert_spki(signer_cert, &spki));
    memset(&signer, 0, sizeof signer);
    SMP_TRY(sx_key_public_decode(&signer.alg, signer.raw, &signer.len,
                                 SX_KEY_NONE, spki.p, spki.n));
    if (signer.alg == SX_KEY_ED25519 && oid.whole.n == sizeof oid_ed25519 &&
        memcmp(oid.whole.p, oid_ed25519, sizeof oid_ed25519) == 0 &&
        sig.content.n == 1 + SX_ED25519_SIG_BYTES)
        rc = sx_ed25519_verify(sig.content.p + 1, tbs.whole.p, tbs.whole.n,
                               signer.raw);
    else if (signer.alg == SX_KEY_ED448 && oid.whole.n == sizeof oid_ed448 &&
             memcmp(oid.whole.p, oid_ed448, sizeof oid_ed448) == 0 &&
             sig.content.n == 1 + SX_ED448_SIG_BYTES)
        rc = sx_ed448_verify(sig.content.p + 1, tbs.whole.p, tbs.whole.n,
                             signer.raw);
    else
        rc = SIMPLEX_ERR_SIGNATURE;
    if (rc < 0)
        return rc;
    /* the signed object is SEQUENCE { SubjectPublicKeyInfo } */
    {
        der_item key;
        sx_rd in;
        rd_of(&in, tbs.content);
        SMP_TRY(der_expect(&in, 0x30, &key));
        SMP_TRY(sx_rd_end(&in));
        return sx_key_public_decode(&out->alg, out->raw, &out->len,
                                    SX_KEY_X25519, key.whole.p, key.whole.n);
    }
}

int sx_smp_server_hello_verify(sx_smp_key *dh_key,
                               const sx_smp_server_hello *h,
                               const uint8_t key_hash[SX_SHA256_BYTES],
                               sx_smp_bytes tls_leaf_cert)
{
    uint8_t fp[SX_SHA256_BYTES];
    if (!dh_key || !h || !key_hash)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(dh_key, 0, sizeof *dh_key);
    if (!h->has_cert || h->n_certs < 2 || h->n_certs > 4)
        return SIMPLEX_ERR_KEY; /* no identity certificate */
    SMP_TRY(sx_sha256(fp, h->certs[1].p, h->certs[1].n));
    if (sx_memeq_ct(fp, key_hash, SX_SHA256_BYTES) != 0)
        return SIMPLEX_ERR_KEY;
    return sx_smp_signed_key_verify(dh_key, h->signed_key, tls_leaf_cert);
}
