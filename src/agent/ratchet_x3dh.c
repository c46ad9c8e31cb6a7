/*
 * E2E ratchet params, X3DH (both parties) and the serialised ratchet state.
 * See ratchet.h.
 */
#include <string.h>

#include "agent/ratchet.h"

/* ---- X448 public keys as the reference encodes them: short DER ---- */

static void write_key(sx_wr *w, const uint8_t pk[SX_X448_BYTES])
{
    uint8_t der[SX_KEY_DER_MAX];
    size_t len = 0;
    if (sx_key_public_encode(der, sizeof der, &len, SX_KEY_X448, pk) != 0) {
        if (!w->err)
            w->err = SIMPLEX_ERR_INTERNAL;
        return;
    }
    sx_wr_short(w, der, len);
}

int sx_ratchet_read_key(sx_rd *r, uint8_t pk[SX_X448_BYTES])
{
    const uint8_t *der;
    size_t n, raw_len = 0;
    uint8_t raw[64];
    sx_key_alg alg = SX_KEY_NONE;
    size_t save = r->pos;
    int rc = sx_rd_short(r, &der, &n);
    if (rc != 0)
        return rc;
    rc = sx_key_public_decode(&alg, raw, &raw_len, SX_KEY_NONE, der, n);
    if (rc == 0 && (alg != SX_KEY_X448 || raw_len != SX_X448_BYTES))
        rc = SIMPLEX_ERR_KEY; /* only X448 ratchets are supported */
    if (rc != 0) {
        r->pos = save;
        return rc;
    }
    memcpy(pk, raw, SX_X448_BYTES);
    return 0;
}

/* Large-prefixed fixed-size value. */
static int read_large_fixed(sx_rd *r, uint8_t *out, size_t want)
{
    const uint8_t *p;
    size_t n, save = r->pos;
    int rc = sx_rd_large(r, &p, &n);
    if (rc != 0)
        return rc;
    if (n != want) {
        r->pos = save;
        return SIMPLEX_ERR_PARSE;
    }
    memcpy(out, p, n);
    return 0;
}

/* RKEMParams: 'P' pk | 'A' ct pk */
int sx_ratchet_read_kem(sx_rd *r, int *kem, uint8_t pk[SX_KEM_PK_BYTES],
                        uint8_t ct[SX_KEM_CT_BYTES])
{
    uint8_t tag;
    int rc = sx_rd_u8(r, &tag);
    if (rc != 0)
        return rc;
    if (tag == SX_KEM_PROPOSED) {
        rc = read_large_fixed(r, pk, SX_KEM_PK_BYTES);
    } else if (tag == SX_KEM_ACCEPTED) {
        rc = read_large_fixed(r, ct, SX_KEM_CT_BYTES);
        if (rc == 0)
            rc = read_large_fixed(r, pk, SX_KEM_PK_BYTES);
    } else {
        rc = SIMPLEX_ERR_PARSE;
    }
    if (rc == 0)
        *kem = tag;
    return rc;
}

void sx_ratchet_write_kem(sx_wr *w, int kem, const uint8_t *pk,
                          const uint8_t *ct)
{
    if (kem == SX_KEM_NONE) {
        sx_wr_maybe(w, 0);
        return;
    }
    sx_wr_maybe(w, 1);
    sx_wr_u8(w, (uint8_t)kem);
    if (kem == SX_KEM_ACCEPTED)
        sx_wr_large(w, ct, SX_KEM_CT_BYTES);
    sx_wr_large(w, pk, SX_KEM_PK_BYTES);
}

/* ---- E2E ratchet params ---- */

void sx_e2e_params_write(sx_wr *w, const sx_e2e_params *p)
{
    sx_wr_u16(w, p->version);
    write_key(w, p->k1);
    write_key(w, p->k2);
    if (p->version >= SX_E2E_VERSION_PQ)
        sx_ratchet_write_kem(w, p->kem, p->kem_pk, p->kem_ct);
}

int sx_e2e_params_read(sx_rd *r, sx_e2e_params *p)
{
    size_t save = r->pos;
    int rc, present = 0;
    memset(p, 0, sizeof *p);
    rc = sx_rd_u16(r, &p->version);
    if (rc == 0)
        rc = sx_ratchet_read_key(r, p->k1);
    if (rc == 0)
        rc = sx_ratchet_read_key(r, p->k2);
    if (rc == 0 && p->version >= SX_E2E_VERSION_PQ) {
        rc = sx_rd_maybe(r, &present);
        if (rc == 0 && present)
            rc = sx_ratchet_read_kem(r, &p->kem, p->kem_pk, p->kem_ct);
    }
    if (rc != 0) {
        r->pos = save;
        memset(p, 0, sizeof *p);
    }
    return rc;
}

int sx_e2e_params_decode(sx_e2e_params *p, const uint8_t *in, size_t n)
{
    sx_rd r;
    int rc;
    sx_rd_init(&r, in, n);
    rc = sx_e2e_params_read(&r, p);
    if (rc == 0 && (rc = sx_rd_end(&r)) != 0)
        memset(p, 0, sizeof *p);
    return rc;
}

/* ---- X3DH ---- */

static const char x3dh_info[] = "SimpleXX3DH";

/* pqX3dh: dh1..dh3 are already in out; ad from the two key1 publics. */
static int x3dh_finish(sx_x3dh_init *out, const uint8_t snd_k1[SX_X448_BYTES],
                       const uint8_t rcv_k1[SX_X448_BYTES])
{
    uint8_t salt[64], ikm[3 * SX_X448_BYTES + SX_KEM_SS_BYTES], okm[96];
    size_t ikm_len = 3 * SX_X448_BYTES;
    int rc;

    memcpy(out->ad, snd_k1, SX_X448_BYTES);
    memcpy(out->ad + SX_X448_BYTES, rcv_k1, SX_X448_BYTES);
    memset(salt, 0, sizeof salt);
    memcpy(ikm, out->dh1, SX_X448_BYTES);
    memcpy(ikm + SX_X448_BYTES, out->dh2, SX_X448_BYTES);
    memcpy(ikm + 2 * SX_X448_BYTES, out->dh3, SX_X448_BYTES);
    if (out->kem_accepted) {
        memcpy(ikm + ikm_len, out->pqrss, SX_KEM_SS_BYTES);
        ikm_len += SX_KEM_SS_BYTES;
    }
    rc = sx_hkdf_sha512(okm, sizeof okm, salt, sizeof salt, ikm, ikm_len,
                        (const uint8_t *)x3dh_info, sizeof x3dh_info - 1);
    if (rc == 0) {
        memcpy(out->hk, okm, 32);
        memcpy(out->nhk, okm + 32, 32);
        memcpy(out->rk, okm + 64, 32);
    }
    sx_memzero(ikm, sizeof ikm);
    sx_memzero(okm, sizeof okm);
    return rc;
}

int sx_x3dh_snd(sx_x3dh_init *out, const uint8_t k1[SX_X448_BYTES],
                const uint8_t k2[SX_X448_BYTES], const sx_kem_priv *kem,
                const sx_e2e_params *peer)
{
    uint8_t pk1[SX_X448_BYTES];
    int rc;

    if (!out || !k1 || !k2 || !peer)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (kem && kem->state != SX_KEM_NONE &&
        peer->version >= SX_E2E_VERSION_PQ) {
        if (kem->state == SX_KEM_ACCEPTED && peer->kem == SX_KEM_PROPOSED) {
            out->has_kem_keypair = 1;
            out->kem_accepted = 1;
            memcpy(out->pqrr, peer->kem_pk, SX_KEM_PK_BYTES);
            memcpy(out->pqrss, kem->ss, SX_KEM_SS_BYTES);
            memcpy(out->pqrct, kem->ct, SX_KEM_CT_BYTES);
        } else if (kem->state == SX_KEM_PROPOSED) {
            out->has_kem_keypair = 1;
        } else {
            return SIMPLEX_ERR_KEY; /* CERatchetKEMState */
        }
        memcpy(out->kem_pk, kem->pk, SX_KEM_PK_BYTES);
        memcpy(out->kem_sk, kem->sk, SX_KEM_SK_BYTES);
    }
    rc = sx_x448_public(pk1, k1);
    if (rc == 0)
        rc = sx_x448_dh(out->dh1, peer->k1, k2);
    if (rc == 0)
        rc = sx_x448_dh(out->dh2, peer->k2, k1);
    if (rc == 0)
        rc = sx_x448_dh(out->dh3, peer->k2, k2);
    if (rc == 0)
        rc = x3dh_finish(out, pk1, peer->k1);
    if (rc != 0)
        sx_memzero(out, sizeof *out);
    return rc;
}

int sx_x3dh_rcv(sx_x3dh_init *out, const uint8_t k1[SX_X448_BYTES],
                const uint8_t k2[SX_X448_BYTES], const sx_kem_priv *kem,
                const sx_e2e_params *peer, const sx_ratchet_kem_ops *ops)
{
    uint8_t pk1[SX_X448_BYTES];
    int rc;

    if (!out || !k1 || !k2 || !peer)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (peer->kem == SX_KEM_ACCEPTED && peer->version >= SX_E2E_VERSION_PQ) {
        if (!kem || kem->state != SX_KEM_PROPOSED)
            return SIMPLEX_ERR_KEY; /* CERatchetKEMState */
        if (!ops || !ops->dec)
            return SIMPLEX_ERR_UNSUPPORTED;
        rc = ops->dec(ops->ctx, out->pqrss, peer->kem_ct, kem->sk);
        if (rc != 0) {
            sx_memzero(out, sizeof *out);
            return rc;
        }
        out->kem_accepted = 1;
        out->has_kem_keypair = 1;
        memcpy(out->pqrr, peer->kem_pk, SX_KEM_PK_BYTES);
        memcpy(out->pqrct, peer->kem_ct, SX_KEM_CT_BYTES);
        memcpy(out->kem_pk, kem->pk, SX_KEM_PK_BYTES);
        memcpy(out->kem_sk, kem->sk, SX_KEM_SK_BYTES);
    }
    /* the same three secrets as the joining party computes:
     * DH(peer k2, own k1), DH(peer k1, own k2), DH(peer k2, own k2) */
    rc = sx_x448_public(pk1, k1);
    if (rc == 0)
        rc = sx_x448_dh(out->dh1, peer->k2, k1);
    if (rc == 0)
        rc = sx_x448_dh(out->dh2, peer->k1, k2);
    if (rc == 0)
        rc = sx_x448_dh(out->dh3, peer->k2, k2);
    if (rc == 0)
        rc = x3dh_finish(out, peer->k1, pk1);
    if (rc != 0)
        sx_memzero(out, sizeof *out);
    return rc;
}

/* ---- serialised state ----
 *
 *   'R' 'S' u16 format (2; 1 is still read)
 *   u16 v_current, u16 v_max, short ad, raw dhrs_sk(56),
 *   [format 2] raw dhrs_pk(56) (so loading needs no X448 operation),
 *   raw rk(32)
 *   u8 flags: 1 snd, 2 rcv, 4 support_kem, 8 enable_kem, 16 snd_kem,
 *             32 rcv_kem, 64 kem, 128 kem accepted
 *   [snd] dhrr(56) cks(32) hks(32)   [rcv] ckr(32) hkr(32)
 *   u32 ns, nr, pn; nhks(32) nhkr(32)
 *   [kem] large pqrs_pk, large pqrs_sk
 *   [kem accepted] large pqrr, short pqrss, large pqrct
 *   u32 count, then count x (hk(32) u32 n mk(32) iv(16))
 * Later versions may append fields after the skipped keys; this reader
 * requires the input to end there.
 */
#define SER_FORMAT 2

int sx_ratchet_serialize(const sx_ratchet *rc, uint8_t **out, size_t *out_len)
{
    const sx_ratchet_core *c;
    sx_wr w;
    uint8_t flags = 0;

    if (!rc || !out || !out_len)
        return SIMPLEX_ERR_INVALID_ARG;
    c = &rc->c;
    if (c->has_snd)
        flags |= 1;
    if (c->has_rcv)
        flags |= 2;
    if (c->support_kem)
        flags |= 4;
    if (c->enable_kem)
        flags |= 8;
    if (c->snd_kem)
        flags |= 16;
    if (c->rcv_kem)
        flags |= 32;
    if (c->has_kem)
        flags |= 64;
    if (c->has_kem && c->has_kem_accepted)
        flags |= 128;
    sx_wr_init(&w);
    sx_wr_raw(&w, "RS", 2);
    sx_wr_u16(&w, SER_FORMAT);
    sx_wr_u16(&w, c->v_current);
    sx_wr_u16(&w, c->v_max);
    sx_wr_short(&w, c->ad, sizeof c->ad);
    sx_wr_raw(&w, c->dhrs_sk, sizeof c->dhrs_sk);
    sx_wr_raw(&w, c->dhrs_pk, sizeof c->dhrs_pk);
    sx_wr_raw(&w, c->rk, sizeof c->rk);
    sx_wr_u8(&w, flags);
    if (c->has_snd) {
        sx_wr_raw(&w, c->dhrr, sizeof c->dhrr);
        sx_wr_raw(&w, c->cks, sizeof c->cks);
        sx_wr_raw(&w, c->hks, sizeof c->hks);
    }
    if (c->has_rcv) {
        sx_wr_raw(&w, c->ckr, sizeof c->ckr);
        sx_wr_raw(&w, c->hkr, sizeof c->hkr);
    }
    sx_wr_u32(&w, c->ns);
    sx_wr_u32(&w, c->nr);
    sx_wr_u32(&w, c->pn);
    sx_wr_raw(&w, c->nhks, sizeof c->nhks);
    sx_wr_raw(&w, c->nhkr, sizeof c->nhkr);
    if (flags & 64) {
        sx_wr_large(&w, c->pqrs_pk, sizeof c->pqrs_pk);
        sx_wr_large(&w, c->pqrs_sk, sizeof c->pqrs_sk);
    }
    if (flags & 128) {
        sx_wr_large(&w, c->pqrr, sizeof c->pqrr);
        sx_wr_short(&w, c->pqrss, sizeof c->pqrss);
        sx_wr_large(&w, c->pqrct, sizeof c->pqrct);
    }
    if (rc->n_skipped > UINT32_MAX) {
        sx_wr_free(&w);
        return SIMPLEX_ERR_TOO_LARGE;
    }
    sx_wr_u32(&w, (uint32_t)rc->n_skipped);
    for (size_t i = 0; i < rc->n_skipped; i++) {
        const sx_ratchet_skipped *s = &rc->skipped[i];
        sx_wr_raw(&w, s->hk, sizeof s->hk);
        sx_wr_u32(&w, s->n);
        sx_wr_raw(&w, s->mk, sizeof s->mk);
        sx_wr_raw(&w, s->iv, sizeof s->iv);
    }
    {
        int err = sx_wr_take(&w, out, out_len);
        if (err)
            sx_wr_free(&w);
        return err;
    }
}

static int read_short_fixed(sx_rd *r, uint8_t *out, size_t want)
{
    return sx_rd_short_fixed(r, out, want);
}

int sx_ratchet_deserialize(sx_ratchet **out, const uint8_t *in, size_t n)
{
    sx_ratchet *rc;
    sx_ratchet_core *c;
    sx_rd r;
    const uint8_t *magic;
    uint16_t fmt = 0;
    uint8_t flags = 0;
    uint32_t count = 0;
    int err;

    if (!out || (!in && n))
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    sx_rd_init(&r, in, n);
    if ((err = sx_rd_raw(&r, 2, &magic)) != 0)
        return err;
    if (magic[0] != 'R' || magic[1] != 'S')
        return SIMPLEX_ERR_PARSE;
    if ((err = sx_rd_u16(&r, &fmt)) != 0)
        return err;
    if (fmt != 1 && fmt != SER_FORMAT)
        return SIMPLEX_ERR_UNSUPPORTED;
    rc = sx_calloc(1, sizeof *rc);
    if (!rc)
        return SIMPLEX_ERR_NOMEM;
    c = &rc->c;
    err = sx_rd_u16(&r, &c->v_current);
    if (!err)
        err = sx_rd_u16(&r, &c->v_max);
    if (!err)
        err = read_short_fixed(&r, c->ad, sizeof c->ad);
    if (!err)
        err = sx_rd_copy(&r, c->dhrs_sk, sizeof c->dhrs_sk);
    if (!err && fmt >= 2)
        err = sx_rd_copy(&r, c->dhrs_pk, sizeof c->dhrs_pk);
    if (!err)
        err = sx_rd_copy(&r, c->rk, sizeof c->rk);
    if (!err)
        err = sx_rd_u8(&r, &flags);
    if (!err && (flags & 128) && !(flags & 64))
        err = SIMPLEX_ERR_PARSE;
    if (!err && (flags & 1)) {
        c->has_snd = 1;
        err = sx_rd_copy(&r, c->dhrr, sizeof c->dhrr);
        if (!err)
            err = sx_rd_copy(&r, c->cks, sizeof c->cks);
        if (!err)
            err = sx_rd_copy(&r, c->hks, sizeof c->hks);
    }
    if (!err && (flags & 2)) {
        c->has_rcv = 1;
        err = sx_rd_copy(&r, c->ckr, sizeof c->ckr);
        if (!err)
            err = sx_rd_copy(&r, c->hkr, sizeof c->hkr);
    }
    c->support_kem = !!(flags & 4);
    c->enable_kem = !!(flags & 8);
    c->snd_kem = !!(flags & 16);
    c->rcv_kem = !!(flags & 32);
    if (!err)
        err = sx_rd_u32(&r, &c->ns);
    if (!err)
        err = sx_rd_u32(&r, &c->nr);
    if (!err)
        err = sx_rd_u32(&r, &c->pn);
    if (!err)
        err = sx_rd_copy(&r, c->nhks, sizeof c->nhks);
    if (!err)
        err = sx_rd_copy(&r, c->nhkr, sizeof c->nhkr);
    if (!err && (flags & 64)) {
        c->has_kem = 1;
        err = read_large_fixed(&r, c->pqrs_pk, sizeof c->pqrs_pk);
        if (!err)
            err = read_large_fixed(&r, c->pqrs_sk, sizeof c->pqrs_sk);
    }
    if (!err && (flags & 128)) {
        c->has_kem_accepted = 1;
        err = read_large_fixed(&r, c->pqrr, sizeof c->pqrr);
        if (!err)
            err = read_short_fixed(&r, c->pqrss, sizeof c->pqrss);
        if (!err)
            err = read_large_fixed(&r, c->pqrct, sizeof c->pqrct);
    }
    if (!err)
        err = sx_rd_u32(&r, &count);
    /* each entry is 84 bytes: the count cannot exceed what is left */
    if (!err && (size_t)count > sx_rd_left(&r) / 84)
        err = SIMPLEX_ERR_TRUNCATED;
    if (!err && count) {
        rc->skipped = sx_calloc(count, sizeof *rc->skipped);
        if (!rc->skipped)
            err = SIMPLEX_ERR_NOMEM;
        else
            rc->cap_skipped = count;
    }
    for (uint32_t i = 0; !err && i < count; i++) {
        sx_ratchet_skipped *s = &rc->skipped[i];
        err = sx_rd_copy(&r, s->hk, sizeof s->hk);
        if (!err)
            err = sx_rd_u32(&r, &s->n);
        if (!err)
            err = sx_rd_copy(&r, s->mk, sizeof s->mk);
        if (!err)
            err = sx_rd_copy(&r, s->iv, sizeof s->iv);
        if (!err)
            rc->n_skipped++;
    }
    if (!err)
        err = sx_rd_end(&r);
    if (!err && fmt < 2)
        err = sx_x448_public(c->dhrs_pk, c->dhrs_sk);
    if (err) {
        sx_ratchet_free(rc);
        return err;
    }
    *out = rc;
    return 0;
}
