/*
 * Double ratchet with encrypted headers: KDFs, initialisation, message
 * envelope codec, encryption and decryption with skipped message keys.
 * See ratchet.h.
 */
#include <string.h>

#include "agent/ratchet.h"

/* ---- KDFs ---- */

static int hkdf3(uint8_t a[32], uint8_t b[32], uint8_t c[32],
                 const uint8_t *salt, size_t salt_len, const uint8_t *ikm,
                 size_t ikm_len, const char *info)
{
    uint8_t okm[96];
    int rc = sx_hkdf_sha512(okm, sizeof okm, salt, salt_len, ikm, ikm_len,
                            (const uint8_t *)info, strlen(info));
    if (rc == 0) {
        memcpy(a, okm, 32);
        memcpy(b, okm + 32, 32);
        memcpy(c, okm + 64, 32);
    }
    sx_memzero(okm, sizeof okm);
    return rc;
}

int sx_ratchet_chain_kdf(uint8_t ck_next[32], uint8_t mk[32], uint8_t iv[16],
                         uint8_t hiv[16], const uint8_t ck[32])
{
    uint8_t ivs[32];
    int rc = hkdf3(ck_next, mk, ivs, NULL, 0, ck, 32, "SimpleXChainRatchet");
    if (rc == 0) {
        memcpy(iv, ivs, 16);
        memcpy(hiv, ivs + 16, 16);
    }
    sx_memzero(ivs, sizeof ivs);
    return rc;
}

int sx_ratchet_root_kdf(uint8_t rk_next[32], uint8_t ck[32], uint8_t nhk[32],
                        const uint8_t rk[32], const uint8_t pk[SX_X448_BYTES],
                        const uint8_t sk[SX_X448_BYTES], const uint8_t *kem_ss)
{
    uint8_t ikm[SX_X448_BYTES + SX_KEM_SS_BYTES];
    size_t len = SX_X448_BYTES;
    int rc = sx_x448_dh(ikm, pk, sk);
    if (rc == 0 && kem_ss) {
        memcpy(ikm + len, kem_ss, SX_KEM_SS_BYTES);
        len += SX_KEM_SS_BYTES;
    }
    if (rc == 0)
        rc = hkdf3(rk_next, ck, nhk, rk, 32, ikm, len, "SimpleXRootRatchet");
    sx_memzero(ikm, sizeof ikm);
    return rc;
}

/* ---- initialisation ---- */

static sx_ratchet *ratchet_alloc(uint16_t v_current, uint16_t v_max,
                                 const sx_x3dh_init *p)
{
    sx_ratchet *rc = sx_calloc(1, sizeof *rc);
    if (!rc)
        return NULL;
    rc->c.v_current = v_current;
    rc->c.v_max = v_max;
    memcpy(rc->c.ad, p->ad, sizeof rc->c.ad);
    if (p->has_kem_keypair) {
        rc->c.has_kem = 1;
        memcpy(rc->c.pqrs_pk, p->kem_pk, SX_KEM_PK_BYTES);
        memcpy(rc->c.pqrs_sk, p->kem_sk, SX_KEM_SK_BYTES);
        if (p->kem_accepted) {
            rc->c.has_kem_accepted = 1;
            memcpy(rc->c.pqrr, p->pqrr, SX_KEM_PK_BYTES);
            memcpy(rc->c.pqrss, p->pqrss, SX_KEM_SS_BYTES);
            memcpy(rc->c.pqrct, p->pqrct, SX_KEM_CT_BYTES);
        }
    }
    return rc;
}

int sx_ratchet_init_snd(sx_ratchet **out, uint16_t v_current, uint16_t v_max,
                        const uint8_t dhrr[SX_X448_BYTES],
                        const uint8_t dhrs_sk[SX_X448_BYTES],
                        const sx_x3dh_init *p)
{
    sx_ratchet *rc;
    int err;
    if (!out || !dhrr || !dhrs_sk || !p)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!(rc = ratchet_alloc(v_current, v_max, p)))
        return SIMPLEX_ERR_NOMEM;
    memcpy(rc->c.dhrs_sk, dhrs_sk, SX_X448_BYTES);
    err = sx_x448_public(rc->c.dhrs_pk, dhrs_sk);
    if (!err)
        err = sx_ratchet_root_kdf(rc->c.rk, rc->c.cks, rc->c.nhks, p->rk,
                                  dhrr, dhrs_sk,
                                  p->kem_accepted ? p->pqrss : NULL);
    if (err) {
        sx_ratchet_free(rc);
        return err;
    }
    rc->c.support_kem = rc->c.enable_kem = p->has_kem_keypair;
    rc->c.snd_kem = p->kem_accepted;
    rc->c.has_snd = 1;
    memcpy(rc->c.dhrr, dhrr, SX_X448_BYTES);
    memcpy(rc->c.hks, p->hk, 32);
    memcpy(rc->c.nhkr, p->nhk, 32);
    *out = rc;
    return 0;
}

int sx_ratchet_init_rcv(sx_ratchet **out, uint16_t v_current, uint16_t v_max,
                        const uint8_t dhrs_sk[SX_X448_BYTES],
                        const sx_x3dh_init *p, int pq_support)
{
    sx_ratchet *rc;
    int err;
    if (!out || !dhrs_sk || !p)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!(rc = ratchet_alloc(v_current, v_max, p)))
        return SIMPLEX_ERR_NOMEM;
    memcpy(rc->c.dhrs_sk, dhrs_sk, SX_X448_BYTES);
    err = sx_x448_public(rc->c.dhrs_pk, dhrs_sk);
    if (err) {
        sx_ratchet_free(rc);
        return err;
    }
    rc->c.support_kem = rc->c.enable_kem = pq_support ? 1 : 0;
    memcpy(rc->c.rk, p->rk, 32);
    memcpy(rc->c.nhks, p->nhk, 32);
    memcpy(rc->c.nhkr, p->hk, 32);
    *out = rc;
    return 0;
}

void sx_ratchet_free(sx_ratchet *rc)
{
    if (!rc)
        return;
    if (rc->skipped)
        sx_free_secret(rc->skipped, rc->cap_skipped * sizeof *rc->skipped);
    sx_free_secret(rc, sizeof *rc);
}

/* ---- skipped message keys ---- */

typedef struct skl {
    sx_ratchet_skipped *p;
    size_t n, cap;
} skl;

static int skl_reserve(sx_ratchet_skipped **p, size_t *cap, size_t want)
{
    sx_ratchet_skipped *q;
    size_t ncap;
    if (want <= *cap)
        return 0;
    ncap = *cap ? *cap : 16;
    while (ncap < want)
        ncap *= 2;
    if (ncap > SIZE_MAX / sizeof *q)
        return SIMPLEX_ERR_NOMEM;
    q = sx_calloc(ncap, sizeof *q);
    if (!q)
        return SIMPLEX_ERR_NOMEM;
    if (*p) {
        memcpy(q, *p, *cap * sizeof *q);
        sx_free_secret(*p, *cap * sizeof *q);
    }
    *p = q;
    *cap = ncap;
    return 0;
}

static void skl_free(skl *l)
{
    if (l->p)
        sx_free_secret(l->p, l->cap * sizeof *l->p);
    l->p = NULL;
    l->n = l->cap = 0;
}

/* SkipMessageKeysHE: advances the receiving chain up to until, adding the
 * skipped keys to l. */
static int skip_keys(sx_ratchet_core *w, uint32_t until, skl *l,
                     sx_ratchet_err *err)
{
    uint32_t nr = w->nr, next = (uint32_t)(until + 1u);
    if (!w->has_rcv)
        return 0;
    if (nr > next) {
        err->code = SX_RATCHET_E_EARLIER;
        err->n = (uint32_t)(nr - until - 1u);
        return SIMPLEX_ERR_DECRYPT;
    }
    if (nr == next) {
        err->code = SX_RATCHET_E_DUPLICATE;
        return SIMPLEX_ERR_DECRYPT;
    }
    if ((uint32_t)(nr + SX_RATCHET_MAX_SKIP) < until) {
        err->code = SX_RATCHET_E_TOO_MANY_SKIPPED;
        err->n = (uint32_t)(until + 1u - nr);
        return SIMPLEX_ERR_DECRYPT;
    }
    while (w->nr != until) {
        sx_ratchet_skipped *s;
        uint8_t hiv[16], ck[32];
        int rc = skl_reserve(&l->p, &l->cap, l->n + 1);
        if (rc)
            return rc;
        s = &l->p[l->n];
        memcpy(s->hk, w->hkr, 32);
        s->n = w->nr;
        rc = sx_ratchet_chain_kdf(ck, s->mk, s->iv, hiv, w->ckr);
        if (rc)
            return rc;
        l->n++;
        memcpy(w->ckr, ck, 32);
        sx_memzero(ck, sizeof ck);
        w->nr++;
    }
    return 0;
}

/* ---- message envelope ---- */

/* largeP: a 2-byte length when the first byte is below 32, else 1 byte. */
static int read_large_p(sx_rd *r, const uint8_t **p, size_t *n)
{
    if (sx_rd_left(r) < 1)
        return SIMPLEX_ERR_TRUNCATED;
    if (r->p[r->pos] < 32)
        return sx_rd_large(r, p, n);
    return sx_rd_short(r, p, n);
}

int sx_ratchet_parse(sx_ratchet_parts *m, const uint8_t *in, size_t n)
{
    sx_rd r, h;
    int rc;
    if (!m || (!in && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(m, 0, sizeof *m);
    sx_rd_init(&r, in, n);
    rc = read_large_p(&r, &m->em_header, &m->em_header_len);
    if (!rc)
        rc = sx_rd_raw(&r, SX_AES_TAG_BYTES, &m->tag);
    if (rc)
        return rc;
    sx_rd_tail(&r, &m->body, &m->body_len);
    sx_rd_init(&h, m->em_header, m->em_header_len);
    rc = sx_rd_u16(&h, &m->eh_version);
    if (!rc)
        rc = sx_rd_raw(&h, SX_RATCHET_IV_BYTES, &m->eh_iv);
    if (!rc)
        rc = sx_rd_raw(&h, SX_AES_TAG_BYTES, &m->eh_tag);
    if (!rc)
        rc = read_large_p(&h, &m->eh_body, &m->eh_body_len);
    if (!rc)
        rc = sx_rd_end(&h);
    return rc;
}

int sx_ratchet_header_parse(sx_ratchet_header *hd, uint16_t v,
                            const uint8_t *in, size_t n)
{
    sx_rd r;
    int rc, present = 0;
    if (!hd || (!in && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(hd, 0, sizeof *hd);
    sx_rd_init(&r, in, n);
    rc = sx_rd_u16(&r, &hd->max_version);
    if (!rc)
        rc = sx_ratchet_read_key(&r, hd->dhrs);
    if (!rc && v >= SX_E2E_VERSION_PQ) {
        rc = sx_rd_maybe(&r, &present);
        if (!rc && present)
            rc = sx_ratchet_read_kem(&r, &hd->kem, hd->kem_pk, hd->kem_ct);
    }
    if (!rc)
        rc = sx_rd_u32(&r, &hd->pn);
    if (!rc)
        rc = sx_rd_u32(&r, &hd->ns);
    return rc; /* trailing bytes allowed (parseE') */
}

/* encodeLarge: Large for v >= 3, a short string before. */
static void write_large_v(sx_wr *w, uint16_t v, const uint8_t *p, size_t n)
{
    if (v >= SX_E2E_VERSION_PQ)
        sx_wr_large(w, p, n);
    else
        sx_wr_short(w, p, n);
}

/* ---- encryption ---- */

int sx_ratchet_encrypt(sx_ratchet *rc, const uint8_t *msg, size_t n,
                       size_t padded_len, uint8_t **out, size_t *out_len,
                       sx_ratchet_err *err)
{
    if (!rc)
        return SIMPLEX_ERR_INVALID_ARG;
    return sx_ratchet_encrypt_ex(rc, -1, rc->c.v_max, msg, n, padded_len,
                                 out, out_len, err);
}

int sx_ratchet_encrypt_ex(sx_ratchet *rc, int pq_enc,
                          uint16_t supported_version, const uint8_t *msg,
                          size_t n, size_t padded_len, uint8_t **out,
                          size_t *out_len, sx_ratchet_err *err)
{
    sx_ratchet_err e0;
    sx_ratchet_core *c;
    uint8_t ck[32], mk[32], iv[16], hiv[16], htag[16], btag[16];
    uint8_t *hct = NULL, *bct = NULL, *ad2 = NULL;
    sx_wr hdr, eh, m;
    size_t hpad;
    uint16_t v, maxs;
    int enable, support, kem, res;

    if (!err)
        err = &e0;
    err->code = SX_RATCHET_OK;
    err->n = 0;
    if (!rc || !out || !out_len || (!msg && n) || pq_enc < -1 || pq_enc > 1)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    *out_len = 0;
    c = &rc->c;
    if (!c->has_snd) {
        err->code = SX_RATCHET_E_STATE;
        return SIMPLEX_ERR_INVALID_ARG;
    }
    if (n > SX_PAD_MAX_MSG || n + 2 > padded_len) {
        err->code = SX_RATCHET_E_LARGE_MSG;
        return SIMPLEX_ERR_TOO_LARGE;
    }
    v = c->v_current;
    enable = pq_enc < 0 ? c->enable_kem : pq_enc;
    support = c->support_kem || (v >= SX_E2E_VERSION_PQ && enable);
    maxs = pq_enc == 1 ? SX_E2E_VERSION_PQ : v;
    if (supported_version > maxs)
        maxs = supported_version;
    hpad = (support && v >= SX_E2E_VERSION_PQ) ? SX_RATCHET_HDR_PAD_PQ
                                               : SX_RATCHET_HDR_PAD;
    res = sx_ratchet_chain_kdf(ck, mk, iv, hiv, c->cks);
    if (res)
        goto done_nowr;

    /* header = (maxVersion, DHRs, [kem], PN, Ns) */
    sx_wr_init(&hdr);
    sx_wr_init(&eh);
    sx_wr_init(&m);
    sx_wr_u16(&hdr, maxs);
    {
        uint8_t der[SX_KEY_DER_MAX];
        size_t dl = 0;
        res = sx_key_public_encode(der, sizeof der, &dl, SX_KEY_X448,
                                   c->dhrs_pk);
        if (res)
            goto done;
        sx_wr_short(&hdr, der, dl);
    }
    if (v >= SX_E2E_VERSION_PQ) {
        kem = !c->has_kem ? SX_KEM_NONE
              : c->has_kem_accepted ? SX_KEM_ACCEPTED : SX_KEM_PROPOSED;
        sx_ratchet_write_kem(&hdr, kem, c->pqrs_pk, c->pqrct);
    }
    sx_wr_u32(&hdr, c->pn);
    sx_wr_u32(&hdr, c->ns);
    if ((res = sx_wr_error(&hdr)) != 0)
        goto done;
    hct = sx_malloc(hpad);
    bct = sx_malloc(padded_len);
    if (!hct || !bct) {
        res = SIMPLEX_ERR_NOMEM;
        goto done;
    }
    res = sx_aead_encrypt_padded(hct, htag, c->hks, hiv, sizeof hiv, c->ad,
                                 sizeof c->ad, hpad, hdr.p, hdr.len);
    if (res)
        goto done;
    /* EncMessageHeader = version, iv, tag, encodeLarge v body */
    sx_wr_u16(&eh, v);
    sx_wr_raw(&eh, hiv, sizeof hiv);
    sx_wr_raw(&eh, htag, sizeof htag);
    write_large_v(&eh, v, hct, hpad);
    if ((res = sx_wr_error(&eh)) != 0)
        goto done;
    ad2 = sx_malloc(sizeof c->ad + eh.len);
    if (!ad2) {
        res = SIMPLEX_ERR_NOMEM;
        goto done;
    }
    memcpy(ad2, c->ad, sizeof c->ad);
    memcpy(ad2 + sizeof c->ad, eh.p, eh.len);
    res = sx_aead_encrypt_padded(bct, btag, mk, iv, sizeof iv, ad2,
                                 sizeof c->ad + eh.len, padded_len, msg, n);
    if (res == SIMPLEX_ERR_TOO_LARGE)
        err->code = SX_RATCHET_E_LARGE_MSG;
    if (res)
        goto done;
    write_large_v(&m, v, eh.p, eh.len);
    sx_wr_raw(&m, btag, sizeof btag);
    sx_wr_raw(&m, bct, padded_len);
    res = sx_wr_take(&m, out, out_len);
    if (res)
        goto done;
    /* commit */
    memcpy(c->cks, ck, 32);
    c->ns++;
    c->support_kem = support;
    c->enable_kem = enable;
    c->v_max = maxs;
    if (pq_enc == 0)
        c->has_kem_accepted = 0;
done:
    sx_wr_free(&hdr);
    sx_wr_free(&eh);
    sx_wr_free(&m);
    if (hct)
        sx_free(hct);
    if (bct)
        sx_free(bct);
    if (ad2)
        sx_free(ad2);
done_nowr:
    sx_memzero(ck, sizeof ck);
    sx_memzero(mk, sizeof mk);
    sx_memzero(iv, sizeof iv);
    return res;
}

/* ---- decryption ---- */

/* HDECRYPT then msgHeaderP: 0 opened, 1 not this key, < 0 bad header. */
static int try_header(const sx_ratchet_core *c, const uint8_t hk[32],
                      const sx_ratchet_parts *m, sx_ratchet_header *hd)
{
    uint8_t *buf = sx_malloc(m->eh_body_len ? m->eh_body_len : 1);
    const uint8_t *p;
    size_t pl;
    int rc;
    if (!buf)
        return SIMPLEX_ERR_NOMEM;
    rc = sx_aead_decrypt_padded(buf, &p, &pl, hk, m->eh_iv,
                                SX_RATCHET_IV_BYTES, c->ad, sizeof c->ad,
                                m->eh_body, m->eh_body_len, m->eh_tag);
    if (rc == SIMPLEX_ERR_DECRYPT || rc == SIMPLEX_ERR_PARSE)
        rc = 1;
    else if (rc == 0 && sx_ratchet_header_parse(hd, m->eh_version, p, pl))
        rc = SIMPLEX_ERR_PARSE;
    sx_free_secret(buf, m->eh_body_len ? m->eh_body_len : 1);
    return rc;
}

static int open_body(const sx_ratchet_core *c, const uint8_t mk[32],
                     const uint8_t iv[16], const sx_ratchet_parts *m,
                     uint8_t **pt, size_t *pt_len, sx_ratchet_err *err)
{
    size_t adl = sizeof c->ad + m->em_header_len, bl = m->body_len;
    uint8_t *ad2 = sx_malloc(adl), *buf = sx_malloc(bl ? bl : 1), *res;
    const uint8_t *p;
    size_t pl = 0;
    int rc;
    if (!ad2 || !buf) {
        rc = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    memcpy(ad2, c->ad, sizeof c->ad);
    memcpy(ad2 + sizeof c->ad, m->em_header, m->em_header_len);
    rc = sx_aead_decrypt_padded(buf, &p, &pl, mk, iv, SX_RATCHET_IV_BYTES,
                                ad2, adl, m->body, bl, m->tag);
    if (rc == SIMPLEX_ERR_DECRYPT)
        err->code = SX_RATCHET_E_BODY;
    else if (rc == SIMPLEX_ERR_PARSE)
        err->code = SX_RATCHET_E_BODY_PAD;
    if (rc)
        goto out;
    res = sx_malloc(pl ? pl : 1);
    if (!res) {
        rc = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    if (pl)
        memcpy(res, p, pl);
    *pt = res;
    *pt_len = pl;
out:
    if (ad2)
        sx_free(ad2);
    if (buf)
        sx_free_secret(buf, bl ? bl : 1);
    return rc;
}

/* The new KEM state of a ratchet step (pqRatchetStep). */
typedef struct kem_step {
    int have_rss, have_sss, has_kem, accepted;
    uint8_t rss[SX_KEM_SS_BYTES]; /* received: decapsulated secret */
    uint8_t sss[SX_KEM_SS_BYTES]; /* sent: encapsulated secret */
    uint8_t pk[SX_KEM_PK_BYTES], sk[SX_KEM_SK_BYTES];
    uint8_t pqrr[SX_KEM_PK_BYTES], ct[SX_KEM_CT_BYTES];
} kem_step;

static int pq_step(const sx_ratchet *rc, const sx_ratchet_core *w,
                   const sx_ratchet_header *hd, kem_step *k,
                   sx_ratchet_err *err)
{
    const sx_ratchet_kem_ops *ops = rc->kem_ops;
    int pq = w->enable_kem && w->v_current >= SX_E2E_VERSION_PQ;
    int res;
    if (hd->kem == SX_KEM_NONE) {
        if (!w->has_kem && pq) {
            if (!ops || !ops->keypair)
                goto unavailable;
            if ((res = ops->keypair(ops->ctx, k->pk, k->sk)) != 0)
                return res;
            k->has_kem = 1;
        }
        return 0;
    }
    if (hd->kem == SX_KEM_ACCEPTED) {
        if (!w->has_kem) {
            err->code = SX_RATCHET_E_KEM_STATE;
            return SIMPLEX_ERR_DECRYPT;
        }
        if (!ops || !ops->dec)
            goto unavailable;
        if ((res = ops->dec(ops->ctx, k->rss, hd->kem_ct, w->pqrs_sk)) != 0)
            return res;
        k->have_rss = 1;
    }
    if (!pq)
        return 0;
    if (!ops || !ops->enc || !ops->keypair)
        goto unavailable;
    memcpy(k->pqrr, hd->kem_pk, SX_KEM_PK_BYTES);
    if ((res = ops->enc(ops->ctx, k->ct, k->sss, k->pqrr)) != 0 ||
        (res = ops->keypair(ops->ctx, k->pk, k->sk)) != 0)
        return res;
    k->have_sss = k->has_kem = k->accepted = 1;
    return 0;
unavailable:
    err->code = SX_RATCHET_E_KEM_UNAVAILABLE;
    return SIMPLEX_ERR_UNSUPPORTED;
}

/* DHRatchetPQ2HE on the working copy w. */
static int ratchet_step(const sx_ratchet *rc, sx_ratchet_core *w,
                        const sx_ratchet_header *hd, sx_ratchet_err *err)
{
    kem_step *k = sx_calloc(1, sizeof *k);
    uint8_t pk[SX_X448_BYTES], sk[SX_X448_BYTES];
    uint8_t rk1[32], ckr[32], nhkr[32], rk2[32], cks[32], nhks[32];
    int res, enable;

    if (!k)
        return SIMPLEX_ERR_NOMEM;
    res = pq_step(rc, w, hd, k, err);
    if (!res)
        res = rc->dh_gen ? rc->dh_gen(rc->dh_gen_ctx, pk, sk)
                         : sx_x448_keypair(pk, sk);
    if (!res)
        res = sx_ratchet_root_kdf(rk1, ckr, nhkr, w->rk, hd->dhrs, w->dhrs_sk,
                                  k->have_rss ? k->rss : NULL);
    if (!res)
        res = sx_ratchet_root_kdf(rk2, cks, nhks, rk1, hd->dhrs, sk,
                                  k->have_sss ? k->sss : NULL);
    if (!res) {
        memcpy(w->dhrs_sk, sk, sizeof sk);
        memcpy(w->dhrs_pk, pk, sizeof pk);
        w->has_kem = k->has_kem;
        w->has_kem_accepted = k->accepted;
        if (k->has_kem) {
            memcpy(w->pqrs_pk, k->pk, SX_KEM_PK_BYTES);
            memcpy(w->pqrs_sk, k->sk, SX_KEM_SK_BYTES);
        }
        if (k->accepted) {
            memcpy(w->pqrr, k->pqrr, SX_KEM_PK_BYTES);
            memcpy(w->pqrss, k->sss, SX_KEM_SS_BYTES);
            memcpy(w->pqrct, k->ct, SX_KEM_CT_BYTES);
        }
        enable = k->have_sss || k->have_rss || k->has_kem;
        w->support_kem =
            w->support_kem || (w->v_current >= SX_E2E_VERSION_PQ && enable);
        w->enable_kem = enable;
        w->snd_kem = k->have_sss;
        w->rcv_kem = k->have_rss;
        memcpy(w->rk, rk2, 32);
        w->has_snd = 1;
        memcpy(w->dhrr, hd->dhrs, SX_X448_BYTES);
        memcpy(w->cks, cks, 32);
        memcpy(w->hks, w->nhks, 32);
        w->has_rcv = 1;
        memcpy(w->ckr, ckr, 32);
        memcpy(w->hkr, w->nhkr, 32);
        w->pn = w->ns;
        w->ns = 0;
        w->nr = 0;
        memcpy(w->nhks, nhks, 32);
        memcpy(w->nhkr, nhkr, 32);
    } else if (err->code == SX_RATCHET_OK) {
        err->code = SX_RATCHET_E_STATE;
    }
    sx_free_secret(k, sizeof *k);
    sx_memzero(sk, sizeof sk);
    sx_memzero(rk1, sizeof rk1);
    sx_memzero(rk2, sizeof rk2);
    sx_memzero(ckr, sizeof ckr);
    sx_memzero(cks, sizeof cks);
    sx_memzero(nhkr, sizeof nhkr);
    sx_memzero(nhks, sizeof nhks);
    return res;
}

/* The smallest distinct skipped header key greater than prev (NULL: any). */
static const uint8_t *next_hk(const sx_ratchet *rc, const uint8_t *prev)
{
    const uint8_t *best = NULL;
    for (size_t i = 0; i < rc->n_skipped; i++) {
        const uint8_t *hk = rc->skipped[i].hk;
        if (prev && memcmp(hk, prev, 32) <= 0)
            continue;
        if (!best || memcmp(hk, best, 32) < 0)
            best = hk;
    }
    return best;
}

enum { STEP_SAME = 1, STEP_ADVANCE = 2 };

int sx_ratchet_decrypt(sx_ratchet *rc, const uint8_t *msg, size_t n,
                       uint8_t **pt, size_t *pt_len, sx_ratchet_err *err)
{
    sx_ratchet_err e0;
    sx_ratchet_parts m;
    sx_ratchet_header *hd = NULL;
    sx_ratchet_core *w = NULL;
    skl added = {NULL, 0, 0};
    uint8_t ck[32], mk[32], iv[16], hiv[16];
    const uint8_t *prev = NULL, *hk;
    int res, step = 0;

    if (!err)
        err = &e0;
    err->code = SX_RATCHET_OK;
    err->n = 0;
    if (!rc || !pt || !pt_len || (!msg && n))
        return SIMPLEX_ERR_INVALID_ARG;
    *pt = NULL;
    *pt_len = 0;
    if (sx_ratchet_parse(&m, msg, n) != 0) {
        err->code = SX_RATCHET_E_HEADER_PARSE;
        return SIMPLEX_ERR_PARSE;
    }
    hd = sx_calloc(1, sizeof *hd);
    if (!hd)
        return SIMPLEX_ERR_NOMEM;

    /* TrySkippedMessageKeysHE */
    while ((hk = next_hk(rc, prev)) != NULL) {
        prev = hk;
        res = try_header(&rc->c, hk, &m, hd);
        if (res == 1)
            continue;
        if (res < 0)
            goto bad_header;
        for (size_t i = 0; i < rc->n_skipped; i++) {
            sx_ratchet_skipped *s = &rc->skipped[i];
            if (s->n != hd->ns || memcmp(s->hk, hk, 32) != 0)
                continue;
            res = open_body(&rc->c, s->mk, s->iv, &m, pt, pt_len, err);
            if (!res) {
                /* SMDRemove: the key is used up */
                rc->n_skipped--;
                if (i != rc->n_skipped)
                    memmove(s, s + 1, (rc->n_skipped - i) * sizeof *s);
                sx_memzero(&rc->skipped[rc->n_skipped], sizeof *s);
            }
            goto out;
        }
        if (rc->c.has_rcv && memcmp(hk, rc->c.hkr, 32) == 0)
            step = STEP_SAME;
        else if (memcmp(hk, rc->c.nhkr, 32) == 0)
            step = STEP_ADVANCE;
        else {
            err->code = SX_RATCHET_E_HEADER;
            res = SIMPLEX_ERR_DECRYPT;
            goto out;
        }
        break;
    }
    if (!step && rc->c.has_rcv) {
        res = try_header(&rc->c, rc->c.hkr, &m, hd);
        if (res < 0)
            goto bad_header;
        if (res == 0)
            step = STEP_SAME;
    }
    if (!step) {
        res = try_header(&rc->c, rc->c.nhkr, &m, hd);
        if (res < 0)
            goto bad_header;
        if (res == 1) {
            err->code = SX_RATCHET_E_HEADER;
            res = SIMPLEX_ERR_DECRYPT;
            goto out;
        }
        step = STEP_ADVANCE;
    }

    /* decryptRcMessage on a working copy */
    w = sx_malloc(sizeof *w);
    if (!w) {
        res = SIMPLEX_ERR_NOMEM;
        goto out;
    }
    memcpy(w, &rc->c, sizeof *w);
    if (hd->max_version > w->v_current) {
        uint16_t up = hd->max_version < w->v_max ? hd->max_version : w->v_max;
        if (up > w->v_current)
            w->v_current = up;
    }
    if (step == STEP_ADVANCE) {
        if ((res = skip_keys(w, hd->pn, &added, err)) != 0 ||
            (res = ratchet_step(rc, w, hd, err)) != 0)
            goto out;
    }
    if ((res = skip_keys(w, hd->ns, &added, err)) != 0)
        goto out;
    if (!w->has_rcv) {
        err->code = SX_RATCHET_E_STATE;
        res = SIMPLEX_ERR_DECRYPT;
        goto out;
    }
    if ((res = sx_ratchet_chain_kdf(ck, mk, iv, hiv, w->ckr)) != 0 ||
        (res = open_body(w, mk, iv, &m, pt, pt_len, err)) != 0)
        goto out;
    memcpy(w->ckr, ck, 32);
    w->nr++;
    /* commit: new skipped keys, then the state */
    res = skl_reserve(&rc->skipped, &rc->cap_skipped,
                      rc->n_skipped + added.n);
    if (res) {
        sx_free_secret(*pt, *pt_len ? *pt_len : 1);
        *pt = NULL;
        *pt_len = 0;
        goto out;
    }
    if (added.n)
        memcpy(rc->skipped + rc->n_skipped, added.p, added.n * sizeof *added.p);
    rc->n_skipped += added.n;
    memcpy(&rc->c, w, sizeof *w);
    goto out;
bad_header:
    if (res != SIMPLEX_ERR_NOMEM) {
        err->code = SX_RATCHET_E_HEADER_PARSE;
        res = SIMPLEX_ERR_PARSE;
    }
out:
    skl_free(&added);
    if (w)
        sx_free_secret(w, sizeof *w);
    sx_free_secret(hd, sizeof *hd);
    sx_memzero(ck, sizeof ck);
    sx_memzero(mk, sizeof mk);
    sx_memzero(iv, sizeof iv);
    return res;
}
