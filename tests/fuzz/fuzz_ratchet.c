/*
 * Fuzz harness: the double ratchet's decoders. The input is
 *   1. decrypted by a fixed receiving ratchet (built deterministically from
 *      fixed keys: X3DH, one message already received): on success the
 *      state must have advanced and a second delivery must fail; on failure
 *      the serialised state must be unchanged;
 *   2. parsed as E2E ratchet params (re-encoding gives the input back);
 *   3. parsed as a serialised ratchet state (re-serialising gives the
 *      input back);
 *   4. split as a ratchet message and its header parsed (v2 and v3).
 * The committed seeds are genuine messages for the fixed state, e2e params
 * and a serialised state.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/ratchet.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* deterministic "random" X448 key: byte i = seed + 7i */
static void fixed_key(uint8_t sk[SX_X448_BYTES], uint8_t seed)
{
    for (size_t i = 0; i < SX_X448_BYTES; i++)
        sk[i] = (uint8_t)(seed + 7 * i);
}

static int fixed_dh(void *ctx, uint8_t pk[SX_X448_BYTES],
                    uint8_t sk[SX_X448_BYTES])
{
    uint8_t *seed = ctx;
    fixed_key(sk, (*seed)++);
    return sx_x448_public(pk, sk);
}

static uint8_t g_seed = 100;
static uint8_t *g_tmpl;   /* serialised receiving state */
static size_t g_tmpl_len;
static sx_ratchet *g_alice; /* its peer, for the seed generator */

/* alice (joining) and bob (inviting), bob having received one message */
static int build_template(void)
{
    uint8_t bk1[56], bk2[56], ak1[56], ak2[56], ard[56];
    sx_e2e_params bp, ap;
    sx_x3dh_init *ax = calloc(1, sizeof *ax), *bx = calloc(1, sizeof *bx);
    sx_ratchet *bob = NULL;
    uint8_t *msg = NULL, *pt = NULL;
    size_t ml = 0, pl = 0;
    int rc = -1;

    if (!ax || !bx)
        goto out;
    memset(&bp, 0, sizeof bp);
    memset(&ap, 0, sizeof ap);
    bp.version = ap.version = 3;
    fixed_key(bk1, 1);
    fixed_key(bk2, 2);
    fixed_key(ak1, 3);
    fixed_key(ak2, 4);
    fixed_key(ard, 5);
    if (sx_x448_public(bp.k1, bk1) || sx_x448_public(bp.k2, bk2) ||
        sx_x448_public(ap.k1, ak1) || sx_x448_public(ap.k2, ak2) ||
        sx_x3dh_snd(ax, ak1, ak2, NULL, &bp) ||
        sx_x3dh_rcv(bx, bk1, bk2, NULL, &ap, NULL) ||
        sx_ratchet_init_snd(&g_alice, 3, 3, bp.k2, ard, ax) ||
        sx_ratchet_init_rcv(&bob, 3, 3, bk2, bx, 0))
        goto out;
    bob->dh_gen = fixed_dh;
    bob->dh_gen_ctx = &g_seed;
    if (sx_ratchet_encrypt(g_alice, (const uint8_t *)"first", 5, 64, &msg,
                           &ml, NULL) ||
        sx_ratchet_decrypt(bob, msg, ml, &pt, &pl, NULL) ||
        sx_ratchet_serialize(bob, &g_tmpl, &g_tmpl_len))
        goto out;
    rc = 0;
out:
    if (msg)
        sx_free(msg);
    if (pt)
        sx_free_secret(pt, pl ? pl : 1);
    sx_ratchet_free(bob);
    free(ax);
    free(bx);
    return rc;
}

static int same_serialized(const sx_ratchet *rc, const uint8_t *s, size_t n)
{
    uint8_t *t = NULL;
    size_t tl = 0;
    int same;
    if (sx_ratchet_serialize(rc, &t, &tl) != 0)
        abort();
    same = tl == n && memcmp(t, s, n) == 0;
    sx_free_secret(t, tl);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready = 0;
    sx_ratchet *rc = NULL;
    uint8_t *pt = NULL;
    size_t pl = 0;
    sx_ratchet_err err;
    sx_e2e_params *p;
    sx_ratchet_parts parts;
    int r;

    if (!ready) {
        if (sx_crypto_init() != SIMPLEX_OK || build_template() != 0)
            abort();
        ready = 1;
    }

    /* 1. decrypt with the fixed state */
    if (sx_ratchet_deserialize(&rc, g_tmpl, g_tmpl_len) != 0)
        abort();
    g_seed = 100;
    rc->dh_gen = fixed_dh;
    rc->dh_gen_ctx = &g_seed;
    r = sx_ratchet_decrypt(rc, data, size, &pt, &pl, &err);
    if (r == 0) {
        uint8_t *pt2 = NULL;
        size_t pl2 = 0;
        if (!pt || err.code != SX_RATCHET_OK ||
            same_serialized(rc, g_tmpl, g_tmpl_len))
            abort();
        if (sx_ratchet_decrypt(rc, data, size, &pt2, &pl2, &err) == 0 || pt2)
            abort();
        sx_free_secret(pt, pl ? pl : 1);
    } else {
        if (pt || err.code == SX_RATCHET_OK ||
            !same_serialized(rc, g_tmpl, g_tmpl_len))
            abort();
    }
    sx_ratchet_free(rc);
    rc = NULL;

    /* 2. e2e params */
    p = malloc(sizeof *p);
    if (!p)
        abort();
    if (sx_e2e_params_decode(p, data, size) == 0) {
        sx_wr w;
        sx_wr_init(&w);
        sx_e2e_params_write(&w, p);
        if (sx_wr_error(&w) || w.len != size || memcmp(w.p, data, size))
            abort();
        sx_wr_free(&w);
    }
    free(p);

    /* 3. serialised state: the current format round-trips byte for
     * byte; an older one is rewritten in the current format, which then
     * round-trips */
    if (sx_ratchet_deserialize(&rc, data, size) == 0) {
        int current = size >= 4 && data[2] == 0 && data[3] == 2;
        uint8_t *s1 = NULL;
        size_t l1 = 0;
        sx_ratchet *again = NULL;
        if (current && !same_serialized(rc, data, size))
            abort();
        if (sx_ratchet_serialize(rc, &s1, &l1) != 0 ||
            sx_ratchet_deserialize(&again, s1, l1) != 0 ||
            !same_serialized(again, s1, l1) ||
            memcmp(&again->c, &rc->c, sizeof rc->c) != 0)
            abort();
        sx_ratchet_free(again);
        sx_free_secret(s1, l1);
        sx_ratchet_free(rc);
    } else if (rc) {
        abort();
    }

    /* 4. the envelope and its header layouts */
    if (sx_ratchet_parse(&parts, data, size) == 0) {
        sx_ratchet_header *h = malloc(sizeof *h);
        if (!h)
            abort();
        if (parts.em_header + parts.em_header_len > data + size ||
            parts.body + parts.body_len != data + size)
            abort();
        for (uint16_t v = 2; v <= 3; v++)
            if (sx_ratchet_header_parse(h, v, parts.eh_body,
                                        parts.eh_body_len) == 0 &&
                h->kem != SX_KEM_NONE && h->kem != SX_KEM_PROPOSED &&
                h->kem != SX_KEM_ACCEPTED)
                abort();
        free(h);
    }
    return 0;
}
