/*
 * Key encodings as the reference uses them: X.509 SubjectPublicKeyInfo for
 * public keys and PKCS#8 (version 0, no attributes, no public key) for
 * private keys, for Ed25519, X25519, Ed448 and X448 (RFC 8410).
 *
 * DER is canonical and these structures have no optional parts, so every
 * valid encoding of a key of one algorithm is a fixed prefix followed by
 * the raw key: decoding compares the prefix and the total length exactly,
 * which rejects truncated, overlong and trailing-garbage input alike.
 */
#include <string.h>

#include "crypto/crypto.h"

typedef struct key_form {
    sx_key_alg alg;
    size_t raw_len;
    uint8_t spki[12];  /* SEQ{ SEQ{ OID }, BIT STRING 0x00 .. } header */
    uint8_t pkcs8[16]; /* SEQ{ INT 0, SEQ{ OID }, OCTET STRING{ OCTET STRING } } */
} key_form;

static const key_form forms[] = {
    {SX_KEY_ED25519, 32,
     {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00},
     {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
      0x04, 0x22, 0x04, 0x20}},
    {SX_KEY_X25519, 32,
     {0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00},
     {0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e,
      0x04, 0x22, 0x04, 0x20}},
    {SX_KEY_ED448, 57,
     {0x30, 0x43, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71, 0x03, 0x3a, 0x00},
     {0x30, 0x47, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x71,
      0x04, 0x3b, 0x04, 0x39}},
    {SX_KEY_X448, 56,
     {0x30, 0x42, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6f, 0x03, 0x39, 0x00},
     {0x30, 0x46, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6f,
      0x04, 0x3a, 0x04, 0x38}},
};

static const key_form *form_of(sx_key_alg alg)
{
    for (size_t i = 0; i < SX_ARRAY_LEN(forms); i++)
        if (forms[i].alg == alg)
            return &forms[i];
    return NULL;
}

size_t sx_key_public_len(sx_key_alg alg)
{
    const key_form *f = form_of(alg);
    return f ? f->raw_len : 0;
}

size_t sx_key_private_len(sx_key_alg alg)
{
    return sx_key_public_len(alg);
}

static int encode(uint8_t *out, size_t cap, size_t *out_len, const uint8_t *hdr,
                  size_t hdr_len, size_t raw_len, const uint8_t *raw)
{
    if (hdr_len + raw_len > cap)
        return SIMPLEX_ERR_BUFFER_TOO_SMALL;
    memcpy(out, hdr, hdr_len);
    memcpy(out + hdr_len, raw, raw_len);
    *out_len = hdr_len + raw_len;
    return SIMPLEX_OK;
}

int sx_key_public_encode(uint8_t *out, size_t cap, size_t *out_len,
                         sx_key_alg alg, const uint8_t *raw)
{
    const key_form *f = form_of(alg);
    if (!out || !out_len || !raw)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!f)
        return SIMPLEX_ERR_KEY;
    return encode(out, cap, out_len, f->spki, sizeof f->spki, f->raw_len, raw);
}

int sx_key_private_encode(uint8_t *out, size_t cap, size_t *out_len,
                          sx_key_alg alg, const uint8_t *raw)
{
    const key_form *f = form_of(alg);
    if (!out || !out_len || !raw)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!f)
        return SIMPLEX_ERR_KEY;
    return encode(out, cap, out_len, f->pkcs8, sizeof f->pkcs8, f->raw_len,
                  raw);
}

/* Finds the form whose header matches; distinguishes "not a key we know"
 * (SIMPLEX_ERR_KEY) from "a known key cut short or followed by more bytes"
 * (SIMPLEX_ERR_TRUNCATED / SIMPLEX_ERR_TRAILING). */
static int decode(sx_key_alg *alg, uint8_t *raw, size_t *raw_len,
                  sx_key_alg want, const uint8_t *der, size_t n, int priv)
{
    if (!der && n)
        return SIMPLEX_ERR_INVALID_ARG;
    if (!raw)
        return SIMPLEX_ERR_INVALID_ARG;
    for (size_t i = 0; i < SX_ARRAY_LEN(forms); i++) {
        const key_form *f = &forms[i];
        const uint8_t *hdr = priv ? f->pkcs8 : f->spki;
        size_t hl = priv ? sizeof f->pkcs8 : sizeof f->spki;
        if (n < hl || memcmp(der, hdr, hl) != 0)
            continue;
        if (n < hl + f->raw_len)
            return SIMPLEX_ERR_TRUNCATED;
        if (n > hl + f->raw_len)
            return SIMPLEX_ERR_TRAILING;
        if (want != SX_KEY_NONE && want != f->alg)
            return SIMPLEX_ERR_KEY;
        memcpy(raw, der + hl, f->raw_len);
        if (alg)
            *alg = f->alg;
        if (raw_len)
            *raw_len = f->raw_len;
        return SIMPLEX_OK;
    }
    /* a proper prefix of a known header is a key cut short as well */
    for (size_t i = 0; i < SX_ARRAY_LEN(forms); i++) {
        const uint8_t *hdr = priv ? forms[i].pkcs8 : forms[i].spki;
        size_t hl = priv ? sizeof forms[i].pkcs8 : sizeof forms[i].spki;
        if (n < hl && (n == 0 || memcmp(der, hdr, n) == 0))
            return SIMPLEX_ERR_TRUNCATED;
    }
    return SIMPLEX_ERR_KEY;
}

int sx_key_public_decode(sx_key_alg *alg, uint8_t *raw, size_t *raw_len,
                         sx_key_alg want, const uint8_t *der, size_t n)
{
    return decode(alg, raw, raw_len, want, der, n, 0);
}

int sx_key_private_decode(sx_key_alg *alg, uint8_t *raw, size_t *raw_len,
                          sx_key_alg want, const uint8_t *der, size_t n)
{
    return decode(alg, raw, raw_len, want, der, n, 1);
}
