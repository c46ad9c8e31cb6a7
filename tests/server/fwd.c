/*
 * smp-test-server block processing (the receive / client threads of the
 * reference: errors first, then the responses folded from the right) and
 * the relay side of proxied sending (RFWD).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "cmd.h"

/* RFWD (processForwardedCommand): the proxy's encrypted forwarded
 * transmission; one sender command is run and its response returned in
 * RRES, encrypted to the client and then to the proxy. */
void sc_do_rfwd(srv_conn *c, const item *it, srv_resps *r)
{
    sx_smp_bytes corr = it->t.corr_id;
    const sx_smp_bytes body = it->cmd.body;
    uint8_t pnonce[SX_BOX_NONCE_BYTES], cnonce[SX_BOX_NONCE_BYTES];
    uint8_t rnonce[SX_BOX_NONCE_BYTES], csecret[32];
    uint8_t *s1 = NULL, *b = NULL, *r2 = NULL, *r3 = NULL;
    const uint8_t *bp;
    size_t bn;
    sx_smp_fwd_trans ft;
    sx_smp_batch *batch = NULL;
    srv_conn *fc = NULL;
    srv_resps inner = {0};
    sx_wr bw, fw;
    sx_smp_msg m;

    sx_wr_init(&bw);
    sx_wr_init(&fw);
    if (!c->has_sess_secret) {
        sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
        m.err.type = SX_SMP_ERR_PROXY;
        m.err.proxy = SX_SMP_PROXYERR_BROKER;
        m.err.broker = SX_SMP_BROKER_TRANSPORT;
        m.err.transport = SX_SMP_TE_NO_AUTH;
        srv_resp_add(r, c, corr, SC_NO_BYTES, &m);
        return;
    }
    sx_cb_nonce(pnonce, corr.p, corr.n);
    if (body.n < SX_BOX_TAG_BYTES ||
        !(s1 = malloc(body.n)) ||
        sx_smp_cb_open_nopad(s1, c->sess_secret, pnonce, body.p, body.n) < 0) {
        sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_CRYPTO, 0);
        goto done;
    }
    if (sx_smp_fwd_trans_decode(&ft, s1, body.n - SX_BOX_TAG_BYTES) < 0) {
        sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_CMD, SX_SMP_CMDERR_SYNTAX);
        goto done;
    }
    sx_cb_nonce(cnonce, ft.corr_id.p, ft.corr_id.n);
    if (ft.key.alg != SX_KEY_X25519 || ft.enc.n < SX_BOX_TAG_BYTES ||
        sx_x25519_dh(csecret, ft.key.raw, c->dh_priv) < 0 ||
        !(b = malloc(ft.enc.n)) ||
        sx_smp_cb_decrypt(b, &bp, &bn, csecret, cnonce, ft.enc.p,
                          ft.enc.n) < 0) {
        sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_CRYPTO, 0);
        goto done;
    }
    /* the client's transmission, at the client's version */
    fc = malloc(sizeof *fc);
    batch = calloc(1, sizeof *batch);
    if (!fc || !batch)
        abort();
    *fc = *c;
    fc->version = ft.version;
    memset(&fc->subs, 0, sizeof fc->subs);
    memset(&fc->ntf_subs, 0, sizeof fc->ntf_subs);
    fc->out_head = fc->out_tail = NULL;
    if (sx_smp_batch_decode(batch, bp, bn) < 0) {
        sc_resp_err(&inner, fc, SC_NO_BYTES, SC_NO_BYTES, SX_SMP_ERR_BLOCK, 0);
    } else if (batch->n != 1) {
        sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_BLOCK, 0);
        goto done;
    } else {
        item fi;
        memset(&fi, 0, sizeof fi);
        if (sc_decode_verify(fc, batch->t[0], &fi, &inner, 1)) {
            out o;
            memset(&o, 0, sizeof o);
            o.enc = malloc(ENC_MSG_LEN);
            if (!o.enc)
                abort();
            sc_process(fc, &fi, &o);
            inner = o.resps;
            srv_resps_free(&o.msgs);
            srv_resps_free(&o.ntfs);
            free(o.enc);
        }
    }
    if (inner.n != 1) {
        sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_INTERNAL, 0);
        goto done;
    }
    {
        sx_smp_bytes one = {inner.v[0].p, inner.v[0].n};
        sx_smp_fwd_resp fr;
        if (sx_smp_batch_encode(&bw, &one, 1) < 0 ||
            !(r2 = malloc(SX_SMP_PROXIED_T_PADDED + SX_BOX_TAG_BYTES))) {
            sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_BLOCK, 0);
            goto done;
        }
        sx_reverse_nonce(rnonce, cnonce);
        if (sx_smp_cb_encrypt(r2, SX_SMP_PROXIED_T_PADDED, csecret, rnonce,
                              bw.p, bw.len) < 0) {
            sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_BLOCK, 0);
            goto done;
        }
        fr.corr_id = ft.corr_id;
        fr.enc.p = r2;
        fr.enc.n = SX_SMP_PROXIED_T_PADDED + SX_BOX_TAG_BYTES;
        if (sx_smp_fwd_resp_encode(&fw, &fr) < 0 ||
            !(r3 = malloc(fw.len + SX_BOX_TAG_BYTES))) {
            sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_INTERNAL, 0);
            goto done;
        }
        sx_reverse_nonce(rnonce, pnonce);
        if (sx_smp_cb_seal_nopad(r3, c->sess_secret, rnonce, fw.p, fw.len) < 0) {
            sc_resp_err(r, c, corr, SC_NO_BYTES, SX_SMP_ERR_INTERNAL, 0);
            goto done;
        }
        sx_smp_msg_init(&m, SX_SMP_MSG_RRES);
        m.body.p = r3;
        m.body.n = fw.len + SX_BOX_TAG_BYTES;
        srv_resp_add(r, c, corr, SC_NO_BYTES, &m);
    }
done:
    srv_resps_free(&inner);
    sx_wr_free(&bw);
    sx_wr_free(&fw);
    sx_memzero(csecret, sizeof csecret);
    free(s1);
    free(b);
    free(r2);
    free(r3);
    free(fc);
    free(batch);
}

void srv_process_block(srv_conn *c, const uint8_t *content, size_t n, int bad)
{
    srv_resps errs = {0};
    sx_smp_batch *batch = NULL;
    item *items = NULL;
    size_t n_items = 0;
    out o;

    memset(&o, 0, sizeof o);
    batch = calloc(1, sizeof *batch);
    if (!batch)
        abort();
    if (bad || sx_smp_batch_decode(batch, content, n) < 0 || batch->n == 0) {
        sc_resp_err(&errs, c, SC_NO_BYTES, SC_NO_BYTES, SX_SMP_ERR_BLOCK, 0);
        goto done;
    }
    items = calloc(batch->n, sizeof *items);
    if (!items)
        abort();
    for (size_t i = 0; i < batch->n; i++)
        n_items += (size_t)sc_decode_verify(c, batch->t[i], &items[n_items], &errs,
                                         0);
done:
    if (errs.n)
        srv_conn_send(c, &errs);
    srv_resps_free(&errs);
    if (n_items) {
        srv_resps rev = {0};
        o.enc = malloc(ENC_MSG_LEN);
        if (!o.enc)
            abort();
        /* the reference folds the commands from the right */
        for (size_t i = n_items; i-- > 0;) {
            out tmp = o;
            memset(&tmp.resps, 0, sizeof tmp.resps);
            sc_process(c, &items[i], &tmp);
            o.msgs = tmp.msgs;
            o.ntfs = tmp.ntfs;
            for (size_t j = 0; j < tmp.resps.n; j++)
                sc_resps_push(&rev, tmp.resps.v[j].p, tmp.resps.v[j].n);
            free(tmp.resps.v);
        }
        /* responses in the original order */
        for (size_t i = 0; i < rev.n; i++)
            sc_resps_push(&o.resps, rev.v[rev.n - 1 - i].p, rev.v[rev.n - 1 - i].n);
        free(rev.v);
        /* messages were collected right to left too */
        for (size_t i = 0; i < o.msgs.n / 2; i++) {
            srv_resp tmp = o.msgs.v[i];
            o.msgs.v[i] = o.msgs.v[o.msgs.n - 1 - i];
            o.msgs.v[o.msgs.n - 1 - i] = tmp;
        }
        /* up to 4 responses share a block with the first MSG */
        if (o.msgs.n && o.resps.n <= 4) {
            sc_resps_push(&o.resps, o.msgs.v[0].p, o.msgs.v[0].n);
            memmove(o.msgs.v, o.msgs.v + 1, (o.msgs.n - 1) * sizeof *o.msgs.v);
            o.msgs.n--;
        }
        if (o.resps.n)
            srv_conn_send(c, &o.resps);
        for (size_t i = 0; i < o.msgs.n; i++) {
            srv_resps one = {&o.msgs.v[i], 1, 1};
            srv_conn_send(c, &one);
        }
        srv_conn_send(c, &o.ntfs);
        srv_resps_free(&o.resps);
        srv_resps_free(&o.msgs);
        srv_resps_free(&o.ntfs);
        free(o.enc);
    }
    free(items);
    free(batch);
}
