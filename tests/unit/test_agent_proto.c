/*
 * Agent protocol codecs (src/agent/agent_proto.*, src/agent/links*):
 * every block of tests/vectors/agent.txt (simplexmq 6.5.5.0 outputs),
 * round trips and negative tests.
 *
 * sntrup761 is not built in: the full-stack-*-v3-pq vectors are computed
 * on the sending side with the KEM values recorded in ratchet.txt
 * v3-pq-init (no KEM operation is needed beyond them), and
 * kem-values-used is reference data checked for consistency with the
 * other blocks only; the KEM arithmetic is reported as skipped.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "agent/agent_proto.h"
#include "agent/links.h"
#include "agent/ratchet.h"
#include "client/smp_proto.h"
#include "crypto/crypto.h"
#include "simplex/simplex.h"
#include "vectors.h"

#define N_VECTORS 36

static tv_file g_tv;
static tv_file g_rt; /* ratchet.txt */
static size_t g_done;

static void assert_bytes(const uint8_t *a, size_t an, const uint8_t *b,
                         size_t bn)
{
    assert_int_equal(an, bn);
    assert_memory_equal(a, b, an);
}

static void assert_wr(const sx_wr *w, const uint8_t *b, size_t bn)
{
    assert_int_equal(w->err, 0);
    assert_bytes(w->p, w->len, b, bn);
}

static size_t num(const tv_block *b, const char *key)
{
    char *end;
    const char *v = tv_str(b, key);
    unsigned long x = strtoul(v, &end, 10);
    assert_true(*v && *end == '\0');
    return (size_t)x;
}

static void check_hex(const tv_block *b, const char *key, const uint8_t *p,
                      size_t n)
{
    size_t len;
    uint8_t *x = tv_hex(b, key, &len);
    assert_bytes(p, n, x, len);
    free(x);
}

/* ---- links ---- */

static void link_vector(const char *name, int https)
{
    const tv_block *b = tv_find(&g_tv, name);
    const char *s = tv_str(b, "link_str");
    size_t enc_len;
    uint8_t *enc = tv_hex(b, "smp_encoded", &enc_len);
    sx_conn_link *l = calloc(1, sizeof *l), *l2 = calloc(1, sizeof *l2);
    sx_wr w, w2;

    assert_non_null(l);
    assert_non_null(l2);
    assert_int_equal(sx_link_parse(l, s, strlen(s)), 0);
    sx_wr_init(&w);
    assert_int_equal(sx_link_print(&w, l), 0);
    if (https) {
        /* the reference forgets the service scheme */
        const char *hash = strchr(s, '/');
        hash = strchr(hash + 2, '/');
        assert_true(w.len > 8);
        assert_memory_equal(w.p, "simplex:", 8);
        assert_bytes(w.p + 8, w.len - 8, (const uint8_t *)hash, strlen(hash));
    } else {
        assert_wr(&w, (const uint8_t *)s, strlen(s));
    }
    sx_wr_reset(&w);
    assert_int_equal(sx_link_encode(&w, l), 0);
    assert_wr(&w, enc, enc_len);
    assert_int_equal(sx_link_decode(l2, enc, enc_len), 0);
    sx_wr_init(&w2);
    assert_int_equal(sx_link_encode(&w2, l2), 0);
    assert_wr(&w2, enc, enc_len);
    sx_wr_reset(&w);
    sx_wr_reset(&w2);
    assert_int_equal(sx_link_print(&w, l), 0);
    assert_int_equal(sx_link_print(&w2, l2), 0);
    assert_bytes(w.p, w.len, w2.p, w2.len);
    if (l->mode == SX_LINK_INVITATION && tv_get(b, "x3dh_key1_private")) {
        uint8_t *k1 = tv_hex(b, "x3dh_key1_private", NULL);
        uint8_t *k2 = tv_hex(b, "x3dh_key2_private", NULL);
        uint8_t p1[SX_X448_BYTES], p2[SX_X448_BYTES];
        assert_int_equal(sx_x448_public(p1, k1), 0);
        assert_int_equal(sx_x448_public(p2, k2), 0);
        assert_memory_equal(l->e2e.k1, p1, SX_X448_BYTES);
        assert_memory_equal(l->e2e.k2, p2, SX_X448_BYTES);
        free(k1);
        free(k2);
    }
    if (tv_get(b, "kem_public_key")) {
        assert_int_equal(l->e2e.kem, SX_KEM_PROPOSED);
        check_hex(b, "kem_public_key", l->e2e.kem_pk, SX_KEM_PK_BYTES);
    } else if (l->mode == SX_LINK_INVITATION) {
        assert_int_equal(l->e2e.kem, SX_KEM_NONE);
    }
    /* every proper prefix of the binary form is refused, and so is one
     * trailing byte */
    sx_link_clear(l2);
    for (size_t k = 0; k < enc_len; k++) {
        assert_int_not_equal(sx_link_decode(l2, enc, k), 0);
        assert_null(l2->client_data);
    }
    {
        uint8_t *t = malloc(enc_len + 1);
        memcpy(t, enc, enc_len);
        t[enc_len] = '0';
        assert_int_not_equal(sx_link_decode(l2, t, enc_len + 1), 0);
        t[0] = 'X';
        assert_int_not_equal(sx_link_decode(l2, t, enc_len), 0);
        free(t);
    }
    sx_link_clear(l);
    sx_link_clear(l2);
    sx_wr_free(&w);
    sx_wr_free(&w2);
    free(l);
    free(l2);
    free(enc);
    g_done++;
}

static void short_vector(const char *name, int scheme)
{
    const tv_block *b = tv_find(&g_tv, name);
    const char *s = tv_str(b, "link_str");
    size_t enc_len;
    uint8_t *enc = tv_hex(b, "smp_encoded", &enc_len);
    sx_short_link l, l2;
    sx_wr w;

    assert_int_equal(sx_short_link_parse(&l, s, strlen(s)), 0);
    assert_int_equal((int)l.scheme, scheme);
    check_hex(b, "link_key", l.key, l.key_len);
    sx_wr_init(&w);
    assert_int_equal(sx_short_link_print(&w, &l), 0);
    assert_wr(&w, (const uint8_t *)s, strlen(s));
    sx_wr_reset(&w);
    assert_int_equal(sx_short_link_encode(&w, &l), 0);
    assert_wr(&w, enc, enc_len);
    assert_int_equal(sx_short_link_decode(&l2, enc, enc_len), 0);
    sx_wr_reset(&w);
    assert_int_equal(sx_short_link_encode(&w, &l2), 0);
    assert_wr(&w, enc, enc_len);
    /* the binary form does not carry the scheme */
    l2.scheme = l.scheme;
    sx_wr_reset(&w);
    assert_int_equal(sx_short_link_print(&w, &l2), 0);
    assert_wr(&w, (const uint8_t *)s, strlen(s));
    for (size_t k = 0; k < enc_len; k++)
        assert_int_not_equal(sx_short_link_decode(&l2, enc, k), 0);
    for (size_t k = 0; k < strlen(s); k++) {
        /* prefixes of the text: refused, or a shorter valid link that
         * prints back to itself */
        if (sx_short_link_parse(&l2, s, k) == 0) {
            sx_wr_reset(&w);
            assert_int_equal(sx_short_link_print(&w, &l2), 0);
            assert_wr(&w, (const uint8_t *)s, k);
        }
    }
    sx_wr_free(&w);
    free(enc);
    g_done++;
}

static void test_links(void **state)
{
    (void)state;
    link_vector("invitation-link-nopq", 0);
    link_vector("invitation-link-pq", 0);
    link_vector("invitation-link-https", 1);
    link_vector("contact-link", 0);
    link_vector("contact-link-client-data", 0);
    short_vector("short-link-invitation-simplex", SX_SHORT_SIMPLEX);
    short_vector("short-link-invitation-server", SX_SHORT_SERVER);
    short_vector("short-link-contact-simplex", SX_SHORT_SIMPLEX);
    short_vector("short-link-group-server", SX_SHORT_SERVER);
}

/* ---- envelopes ---- */

static void envelope_vector(const char *name, int type, int has_e2e,
                            uint16_t e2e_v, int kem)
{
    const tv_block *b = tv_find(&g_tv, name);
    size_t n;
    uint8_t *enc = tv_hex(b, "encoded", &n);
    sx_agent_envelope *e = calloc(1, sizeof *e);
    sx_wr w;

    assert_int_equal(sx_agent_envelope_decode(e, enc, n), 0);
    assert_int_equal(e->agent_version, 7);
    assert_int_equal((int)e->type, type);
    assert_int_equal(e->has_e2e, has_e2e);
    if (has_e2e) {
        /* confirmations carry the joining party's keys, ratchet key
         * messages the other party's */
        const char *k1 = type == SX_AGENT_ENV_RATCHET_KEY
                             ? "rcv_x3dh_key1_public"
                             : "x3dh_key1_public";
        const char *k2 = type == SX_AGENT_ENV_RATCHET_KEY
                             ? "rcv_x3dh_key2_public"
                             : "x3dh_key2_public";
        assert_int_equal(e->e2e.version, e2e_v);
        assert_int_equal(e->e2e.kem, kem);
        check_hex(b, k1, e->e2e.k1, SX_X448_BYTES);
        check_hex(b, k2, e->e2e.k2, SX_X448_BYTES);
    }
    if (type == SX_AGENT_ENV_INVITATION) {
        const char *lk =
            tv_str(tv_find(&g_tv, "invitation-link-nopq"), "link_str");
        assert_bytes(e->conn_req.p, e->conn_req.n, (const uint8_t *)lk,
                     strlen(lk));
    }
    sx_wr_init(&w);
    assert_int_equal(sx_agent_envelope_encode(&w, e), 0);
    assert_wr(&w, enc, n);
    /* prefixes: refused, or (Tail bodies) re-encoded to the same bytes */
    for (size_t k = 0; k < n; k++) {
        if (sx_agent_envelope_decode(e, enc, k) == 0) {
            sx_wr_reset(&w);
            assert_int_equal(sx_agent_envelope_encode(&w, e), 0);
            assert_wr(&w, enc, k);
        }
    }
    /* bad tag */
    {
        uint8_t save = enc[2];
        enc[2] = 'X';
        assert_int_equal(sx_agent_envelope_decode(e, enc, n),
                         SIMPLEX_ERR_PARSE);
        enc[2] = save;
    }
    sx_wr_free(&w);
    free(e);
    free(enc);
    g_done++;
}

static void test_envelopes(void **state)
{
    (void)state;
    envelope_vector("envelope-confirmation-e2e-v2", 'C', 1, 2, SX_KEM_NONE);
    envelope_vector("envelope-confirmation-e2e-v3-nokem", 'C', 1, 3,
                    SX_KEM_NONE);
    envelope_vector("envelope-confirmation-e2e-v3-kem-accepted", 'C', 1, 3,
                    SX_KEM_ACCEPTED);
    envelope_vector("envelope-confirmation-no-e2e", 'C', 0, 0, 0);
    envelope_vector("envelope-msg", 'M', 0, 0, 0);
    envelope_vector("envelope-invitation", 'I', 0, 0, 0);
    envelope_vector("envelope-ratchet-key-v2", 'R', 1, 2, SX_KEM_NONE);
    envelope_vector("envelope-ratchet-key-pq", 'R', 1, 3, SX_KEM_PROPOSED);
}

static void test_kem_values(void **state)
{
    const tv_block *k = tv_find(&g_tv, "kem-values-used");
    const tv_block *l = tv_find(&g_tv, "invitation-link-pq");
    size_t a, bn;
    uint8_t *x, *y;
    sx_agent_envelope *e = calloc(1, sizeof *e);
    uint8_t *enc;
    size_t n;
    (void)state;

    x = tv_hex(k, "kem_public_key", &a);
    y = tv_hex(l, "kem_public_key", &bn);
    assert_bytes(x, a, y, bn);
    assert_int_equal(a, SX_KEM_PK_BYTES);
    free(y);
    /* the accepted confirmation carries the ciphertext to key 1 and the
     * second key */
    enc = tv_hex(tv_find(&g_tv, "envelope-confirmation-e2e-v3-kem-accepted"),
                 "encoded", &n);
    assert_int_equal(sx_agent_envelope_decode(e, enc, n), 0);
    check_hex(k, "kem_ciphertext_to_key1", e->e2e.kem_ct, SX_KEM_CT_BYTES);
    check_hex(k, "kem_public_key2", e->e2e.kem_pk, SX_KEM_PK_BYTES);
    free(enc);
    enc = tv_hex(tv_find(&g_tv, "envelope-ratchet-key-pq"), "encoded", &n);
    assert_int_equal(sx_agent_envelope_decode(e, enc, n), 0);
    assert_memory_equal(e->e2e.kem_pk, x, SX_KEM_PK_BYTES);
    free(enc);
    free(x);
    free(e);
    print_message("SKIPPED (sntrup761 not built in): kem-values-used KEM "
                  "arithmetic (keypair/enc/dec); values cross-checked only\n");
    g_done++;
}

/* ---- agent messages ---- */

static void message_vector(const char *name, int type, int amsg, int tail)
{
    const tv_block *b = tv_find(&g_tv, name);
    size_t n;
    uint8_t *enc = tv_hex(b, "encoded", &n);
    uint8_t h[32];
    sx_agent_message *m = calloc(1, sizeof *m);
    sx_wr w;

    assert_int_equal(sx_agent_message_decode(m, enc, n), 0);
    assert_int_equal((int)m->type, type);
    if (type == SX_AGENT_MSG_MESSAGE)
        assert_int_equal((int)m->msg.type, amsg);
    sx_wr_init(&w);
    assert_int_equal(sx_agent_message_encode(&w, m), 0);
    assert_wr(&w, enc, n);
    assert_int_equal(sx_agent_msg_hash(h, enc, n), 0);
    check_hex(b, "sha256", h, 32);
    for (size_t k = 0; k < n; k++) {
        int rc = sx_agent_message_decode(m, enc, k);
        if (!tail)
            assert_int_not_equal(rc, 0);
        else if (rc == 0) {
            sx_wr_reset(&w);
            assert_int_equal(sx_agent_message_encode(&w, m), 0);
            assert_wr(&w, enc, k);
        }
    }
    {
        uint8_t *t = malloc(n + 1);
        memcpy(t, enc, n);
        t[n] = 'x';
        if (!tail)
            assert_int_equal(sx_agent_message_decode(m, t, n + 1),
                             SIMPLEX_ERR_TRAILING);
        t[0] = 'Z';
        assert_int_equal(sx_agent_message_decode(m, t, n), SIMPLEX_ERR_PARSE);
        free(t);
    }
    sx_wr_free(&w);
    free(m);
    free(enc);
    g_done++;
}

static void test_messages(void **state)
{
    (void)state;
    message_vector("agent-message-hello", 'M', SX_AMSG_HELLO, 0);
    message_vector("agent-message-a-msg", 'M', SX_AMSG_A_MSG, 1);
    message_vector("agent-message-a-rcvd", 'M', SX_AMSG_A_RCVD, 0);
    message_vector("agent-message-a-qcont", 'M', SX_AMSG_A_QCONT, 0);
    message_vector("agent-message-qadd", 'M', SX_AMSG_QADD, 0);
    message_vector("agent-message-qkey", 'M', SX_AMSG_QKEY, 0);
    message_vector("agent-message-quse", 'M', SX_AMSG_QUSE, 0);
    message_vector("agent-message-qtest", 'M', SX_AMSG_QTEST, 0);
    message_vector("agent-message-eready", 'M', SX_AMSG_EREADY, 0);
    message_vector("agent-conn-info", 'I', 0, 1);
    message_vector("agent-conn-info-reply", 'D', 0, 1);
    message_vector("agent-conn-info-reply-2queues", 'D', 0, 1);
    message_vector("agent-ratchet-info", 'R', 0, 1);
}

static void test_bad_amsg_tags(void **state)
{
    static const char *bad[] = {"Q", "QZ", "QX", "Z", "h", "E"};
    uint8_t buf[16];
    sx_agent_message *m = calloc(1, sizeof *m);
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t k = strlen(bad[i]);
        memcpy(buf, "M\0\0\0\0\0\0\0\1\0", 10);
        memcpy(buf + 10, bad[i], k);
        assert_int_not_equal(sx_agent_message_decode(m, buf, 10 + k), 0);
    }
    /* an empty NonEmpty list */
    memcpy(buf, "M\0\0\0\0\0\0\0\1\0QT\0", 13);
    assert_int_not_equal(sx_agent_message_decode(m, buf, 13), 0);
    memcpy(buf, "D\0", 2);
    assert_int_not_equal(sx_agent_message_decode(m, buf, 2), 0);
    /* more items than held */
    memcpy(buf, "M\0\0\0\0\0\0\0\1\0V\x09", 12);
    assert_int_equal(sx_agent_message_decode(m, buf, 12), SIMPLEX_ERR_TOO_LARGE);
    assert_int_not_equal(sx_agent_message_decode(m, buf, 0), 0);
    free(m);
}

static void test_hash_chain(void **state)
{
    const tv_block *b = tv_find(&g_tv, "message-hash-chain");
    static const char *bodies[] = {NULL, "first message", "second message"};
    static const char *mk[] = {"msg1", "msg2", "msg3"};
    static const char *hk[] = {"hash1", "hash2", "hash3"};
    uint8_t prev[32], h[32];
    size_t prev_len = 0;
    sx_amessage *m = calloc(1, sizeof *m);
    sx_wr w;
    (void)state;

    sx_wr_init(&w);
    for (int i = 0; i < 3; i++) {
        size_t n;
        uint8_t *x = tv_hex(b, mk[i], &n);
        memset(m, 0, sizeof *m);
        if (bodies[i]) {
            m->type = SX_AMSG_A_MSG;
            m->body.p = (const uint8_t *)bodies[i];
            m->body.n = strlen(bodies[i]);
        } else {
            m->type = SX_AMSG_HELLO;
        }
        sx_wr_reset(&w);
        assert_int_equal(sx_agent_msg_encode_chained(&w, h, i + 1, prev,
                                                     prev_len, m),
                         0);
        assert_wr(&w, x, n);
        check_hex(b, hk[i], h, 32);
        memcpy(prev, h, 32);
        prev_len = 32;
        free(x);
    }
    assert_int_equal(sx_agent_msg_encode_chained(&w, h, 1, prev, 5, m),
                     SIMPLEX_ERR_INVALID_ARG);
    sx_wr_free(&w);
    free(m);
    g_done++;
}


/* ---- constructed round trips ---- */

static void roundtrip_amsg(const sx_amessage *m)
{
    sx_agent_message *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    sx_wr w, w2;
    a->type = SX_AGENT_MSG_MESSAGE;
    a->snd_msg_id = 77;
    a->msg = *m;
    sx_wr_init(&w);
    sx_wr_init(&w2);
    assert_int_equal(sx_agent_message_encode(&w, a), 0);
    assert_int_equal(sx_agent_message_decode(b, w.p, w.len), 0);
    assert_int_equal(b->snd_msg_id, 77);
    assert_int_equal((int)b->msg.type, (int)m->type);
    assert_int_equal(b->msg.n, m->n);
    assert_int_equal(sx_agent_message_encode(&w2, b), 0);
    assert_bytes(w.p, w.len, w2.p, w2.len);
    sx_wr_free(&w);
    sx_wr_free(&w2);
    free(a);
    free(b);
}

static void test_roundtrips(void **state)
{
    const tv_block *b = tv_find(&g_tv, "agent-message-qadd");
    sx_agent_message *src = calloc(1, sizeof *src);
    sx_amessage *m = calloc(1, sizeof *m);
    uint8_t *enc;
    size_t n;
    sx_wr w;
    (void)state;

    enc = tv_hex(b, "encoded", &n);
    assert_int_equal(sx_agent_message_decode(src, enc, n), 0);
    /* QADD without the replaced queue, two items */
    m->type = SX_AMSG_QADD;
    m->n = 2;
    m->u.qadd[0] = src->msg.u.qadd[0];
    m->u.qadd[1] = src->msg.u.qadd[0];
    m->u.qadd[1].has_replaced = 0;
    roundtrip_amsg(m);
    /* QUSE / QTEST with several queues */
    memset(m, 0, sizeof *m);
    m->type = SX_AMSG_QUSE;
    m->n = 3;
    for (int i = 0; i < 3; i++) {
        m->u.quse[i].addr = src->msg.u.qadd[0].replaced;
        m->u.quse[i].primary = i & 1;
    }
    roundtrip_amsg(m);
    memset(m, 0, sizeof *m);
    m->type = SX_AMSG_QTEST;
    m->n = SX_AGENT_MAX_LIST;
    for (int i = 0; i < SX_AGENT_MAX_LIST; i++)
        m->u.qaddr[i] = src->msg.u.qadd[0].replaced;
    roundtrip_amsg(m);
    /* EREADY with a negative id, empty A_MSG */
    memset(m, 0, sizeof *m);
    m->type = SX_AMSG_EREADY;
    m->last_msg_id = -5;
    roundtrip_amsg(m);
    memset(m, 0, sizeof *m);
    m->type = SX_AMSG_A_MSG;
    roundtrip_amsg(m);
    /* encoder refuses empty and oversized lists, and unknown types */
    sx_wr_init(&w);
    memset(m, 0, sizeof *m);
    m->type = SX_AMSG_QTEST;
    assert_int_not_equal(sx_amessage_encode(&w, m), 0);
    sx_wr_reset(&w);
    w.err = 0;
    m->n = SX_AGENT_MAX_LIST + 1;
    assert_int_not_equal(sx_amessage_encode(&w, m), 0);
    sx_wr_free(&w);
    sx_wr_init(&w);
    m->type = (sx_amsg_type)99;
    assert_int_equal(sx_amessage_encode(&w, m), SIMPLEX_ERR_INVALID_ARG);
    sx_wr_free(&w);
    free(enc);
    free(src);
    free(m);
}

/* ---- full stack ---- */

static sx_ratchet *g_alice; /* the joining party's ratchet (v3) */

/* The joining party's side: every layer is computed here. With PQ on,
 * its KEM values (key pair, encapsulation to the inviting party's key)
 * are the ones recorded in ratchet.txt v3-pq-init: the sending side needs
 * no KEM operation beyond those, so nothing is stubbed. */
static void full_confirmation(int pq)
{
    const tv_block *b = tv_find(&g_tv, pq ? "full-stack-confirmation-v3-pq"
                                          : "full-stack-confirmation-v3-nopq");
    const tv_block *r = tv_find(&g_rt, pq ? "v3-pq-init" : "v3-nopq-init");
    sx_kem_priv *akem = NULL;
    sx_e2e_params bob, alice;
    sx_x3dh_init x;
    uint8_t *k1 = tv_hex(r, "alice_x3dh_key1_private", NULL);
    uint8_t *k2 = tv_hex(r, "alice_x3dh_key2_private", NULL);
    uint8_t *dh = tv_hex(r, "alice_ratchet_dh_private", NULL);
    uint8_t *bp, *ap, *ci, *rq, *spriv, *spub, *rpub, *nonce;
    size_t bpn, apn, cin, rqn, n;
    uint8_t *ct = NULL, secret[32];
    size_t ct_len = 0;
    sx_ratchet_err err;
    sx_agent_message *am = calloc(1, sizeof *am);
    sx_agent_envelope *env = calloc(1, sizeof *env);
    sx_rd rd;
    sx_wr w;
    sx_smp_envelope se;
    sx_smp_client_msg cm;

    assert_string_equal(tv_str(b, "pq_str"), pq ? "on" : "off");
    bp = tv_hex(r, "bob_e2e_params", &bpn);
    ap = tv_hex(r, "alice_e2e_params", &apn);
    assert_int_equal(sx_e2e_params_decode(&bob, bp, bpn), 0);
    assert_int_equal(sx_e2e_params_decode(&alice, ap, apn), 0);
    if (pq) {
        uint8_t *t;
        size_t tn;
        akem = calloc(1, sizeof *akem);
        akem->state = SX_KEM_ACCEPTED;
        t = tv_hex(r, "alice_kem_public", &tn);
        assert_int_equal(tn, SX_KEM_PK_BYTES);
        memcpy(akem->pk, t, tn);
        free(t);
        t = tv_hex(r, "alice_kem_secret", &tn);
        assert_int_equal(tn, SX_KEM_SK_BYTES);
        memcpy(akem->sk, t, tn);
        free(t);
        t = tv_hex(r, "alice_kem_ciphertext", &tn);
        assert_int_equal(tn, SX_KEM_CT_BYTES);
        memcpy(akem->ct, t, tn);
        free(t);
        t = tv_hex(r, "alice_kem_shared_secret", &tn);
        assert_int_equal(tn, SX_KEM_SS_BYTES);
        memcpy(akem->ss, t, tn);
        free(t);
        assert_int_equal(bob.kem, SX_KEM_PROPOSED);
        assert_int_equal(alice.kem, SX_KEM_ACCEPTED);
    }
    assert_int_equal(sx_x3dh_snd(&x, k1, k2, akem, &bob), 0);
    assert_int_equal(sx_ratchet_init_snd(&g_alice, 3, 3, bob.k2, dh, &x), 0);

    /* agent message: AgentConnInfoReply [reply queue] connInfo */
    ci = tv_hex(b, "conn_info", &cin);
    rq = tv_hex(b, "reply_queue_info", &rqn);
    am->type = SX_AGENT_MSG_CONN_INFO_REPLY;
    am->n_queues = 1;
    sx_rd_init(&rd, rq, rqn);
    assert_int_equal(sx_queue_info_decode(&rd, &am->queues[0]), 0);
    assert_int_equal(sx_rd_end(&rd), 0);
    am->info.p = ci;
    am->info.n = cin;
    sx_wr_init(&w);
    assert_int_equal(sx_agent_message_encode(&w, am), 0);
    check_hex(b, "agent_message", w.p, w.len);

    /* ratchet layer */
    assert_int_equal(sx_ratchet_encrypt_ex(g_alice, pq, 3, w.p, w.len,
                                           num(b, "ratchet_padded_len_str"),
                                           &ct, &ct_len, &err),
                     0);
    check_hex(b, "enc_conn_info", ct, ct_len);

    /* agent envelope */
    env->agent_version = 7;
    env->type = SX_AGENT_ENV_CONFIRMATION;
    env->has_e2e = 1;
    env->e2e = alice;
    env->body.p = ct;
    env->body.n = ct_len;
    sx_wr_reset(&w);
    assert_int_equal(sx_agent_envelope_encode(&w, env), 0);
    check_hex(b, "confirmation", w.p, w.len);

    /* SMP client message and per-queue e2e */
    spriv = tv_hex(b, "sender_e2e_private", NULL);
    spub = tv_hex(b, "sender_e2e_public", NULL);
    rpub = tv_hex(b, "recipient_queue_e2e_public", NULL);
    nonce = tv_hex(b, "nonce", &n);
    assert_int_equal(n, SX_BOX_NONCE_BYTES);
    assert_int_equal(sx_x25519_dh(secret, rpub, spriv), 0);
    check_hex(b, "e2e_dh_secret", secret, 32);
    memset(&se, 0, sizeof se);
    se.client_version = 4;
    sx_smp_key_set(&se.e2e_key, SX_KEY_X25519, spub);
    memcpy(se.nonce, nonce, n);
    memset(&cm, 0, sizeof cm);
    cm.body.p = w.p;
    cm.body.n = w.len;
    {
        sx_wr o;
        sx_wr_init(&o);
        assert_int_equal(sx_smp_e2e_seal(&o, &se, secret, &cm,
                                         num(b, "e2e_padded_len_str")),
                         0);
        check_hex(b, "envelope", o.p, o.len);
        /* and the receiving side opens it back to the confirmation */
        {
            sx_smp_envelope d;
            sx_smp_client_msg dm;
            uint8_t *buf;
            assert_int_equal(sx_smp_envelope_decode(&d, o.p, o.len), 0);
            buf = malloc(d.enc_body.n);
            assert_int_equal(sx_smp_e2e_open(&dm, buf, &d, secret), 0);
            assert_int_equal(dm.sender_key.alg, SX_KEY_NONE);
            assert_bytes(dm.body.p, dm.body.n, w.p, w.len);
            assert_int_equal(sx_agent_envelope_decode(env, dm.body.p,
                                                      dm.body.n),
                             0);
            assert_bytes(env->body.p, env->body.n, ct, ct_len);
            free(buf);
        }
        sx_wr_free(&o);
    }
    sx_wr_free(&w);
    sx_free(ct);
    free(k1), free(k2), free(dh), free(bp), free(ap), free(ci), free(rq);
    free(spriv), free(spub), free(rpub), free(nonce);
    free(am);
    free(env);
    free(akem);
    g_done++;
}

static void full_message(int pq)
{
    const tv_block *b = tv_find(&g_tv, pq ? "full-stack-message-v3-pq"
                                          : "full-stack-message-v3-nopq");
    const tv_block *c = tv_find(&g_tv, pq ? "full-stack-confirmation-v3-pq"
                                          : "full-stack-confirmation-v3-nopq");
    size_t n, pn;
    uint8_t *prev_am = tv_hex(c, "agent_message", &pn);
    uint8_t prev[32], h[32], secret[32];
    uint8_t *ct = NULL, *nonce, *s;
    size_t ct_len = 0;
    sx_ratchet_err err;
    sx_amessage *m = calloc(1, sizeof *m);
    sx_agent_envelope env;
    sx_smp_envelope se;
    sx_smp_client_msg cm;
    sx_wr w, o;

    assert_non_null(g_alice);
    assert_int_equal(sx_agent_msg_hash(prev, prev_am, pn), 0);
    check_hex(b, "prev_msg_hash", prev, 32);
    m->type = SX_AMSG_A_MSG;
    m->body.p = (const uint8_t *)"hello bob";
    m->body.n = 9;
    sx_wr_init(&w);
    assert_int_equal(sx_agent_msg_encode_chained(&w, h, 2, prev, 32, m), 0);
    check_hex(b, "agent_message", w.p, w.len);
    assert_int_equal(sx_ratchet_encrypt_ex(g_alice, -1, 3, w.p, w.len,
                                           num(b, "ratchet_padded_len_str"),
                                           &ct, &ct_len, &err),
                     0);
    check_hex(b, "enc_agent_message", ct, ct_len);
    memset(&env, 0, sizeof env);
    env.agent_version = 7;
    env.type = SX_AGENT_ENV_MSG;
    env.body.p = ct;
    env.body.n = ct_len;
    sx_wr_reset(&w);
    assert_int_equal(sx_agent_envelope_encode(&w, &env), 0);
    check_hex(b, "agent_envelope", w.p, w.len);
    s = tv_hex(b, "e2e_dh_secret", &n);
    memcpy(secret, s, 32);
    nonce = tv_hex(b, "nonce", &n);
    memset(&se, 0, sizeof se);
    se.client_version = 4;
    memcpy(se.nonce, nonce, SX_BOX_NONCE_BYTES);
    memset(&cm, 0, sizeof cm);
    cm.body.p = w.p;
    cm.body.n = w.len;
    sx_wr_init(&o);
    assert_int_equal(sx_smp_e2e_seal(&o, &se, secret, &cm,
                                     num(b, "e2e_padded_len_str")),
                     0);
    check_hex(b, "envelope", o.p, o.len);
    sx_wr_free(&o);
    sx_wr_free(&w);
    sx_free(ct);
    free(s), free(nonce), free(prev_am), free(m);
    g_done++;
}

static void test_full_stack(void **state)
{
    (void)state;
    full_confirmation(0);
    full_message(0);
    sx_ratchet_free(g_alice);
    g_alice = NULL;
    full_confirmation(1);
    full_message(1);
    sx_ratchet_free(g_alice);
    g_alice = NULL;
    print_message("NOTE (sntrup761 not built in): full-stack-*-v3-pq use "
                  "the KEM values recorded in ratchet.txt v3-pq-init; the "
                  "KEM arithmetic itself is not exercised\n");
}

/* ---- malformed links ---- */

static char *replace(const char *s, const char *from, const char *to)
{
    const char *p = strstr(s, from);
    size_t a, b, c;
    char *out;
    assert_non_null(p);
    a = (size_t)(p - s);
    b = strlen(from);
    c = strlen(to);
    out = malloc(strlen(s) - b + c + 1);
    memcpy(out, s, a);
    memcpy(out + a, to, c);
    strcpy(out + a + c, p + b);
    return out;
}

static void expect_bad_link(const char *s)
{
    sx_conn_link *l = calloc(1, sizeof *l);
    int rc = sx_link_parse(l, s, strlen(s));
    if (rc == 0)
        fail_msg("accepted: %.120s", s);
    assert_null(l->client_data);
    free(l);
}

static void test_bad_links(void **state)
{
    const char *inv = tv_str(tv_find(&g_tv, "invitation-link-nopq"),
                             "link_str");
    const char *pq = tv_str(tv_find(&g_tv, "invitation-link-pq"), "link_str");
    const char *con = tv_str(tv_find(&g_tv, "contact-link"), "link_str");
    static const char *subs[][2] = {
        {"simplex:", "simplx:"},
        {"simplex:", "http://"},
        {"simplex:", ""},
        {"/invitation#", "/invite#"},
        {"/invitation#", "/contact"},
        {"#/?", "#?"},
        {"v=2-7", "v=7-2"},
        {"v=2-7", "v=x"},
        {"v=2-7", "v="},
        {"v=2-7", "w=2-7"},
        {"&smp=", "&smq="},
        {"&e2e=", "&e3e="},
        {"smp%3A%2F%2F", "smq%3A%2F%2F"},
        {"x3dh%3DMEIw", "x3dh%3D%24EIw"},
        {"x3dh%3DMEIw", "x3dh%3DMEI"},
        {"%2CMEIw", "%2C"},
        {"v%3D2-3", "v%3D3-2"},
        {"e2e=v%3D", "e2e=w%3D"},
        {"smp=smp%3A", "smp=%3Bsmp%3A"},
    };
    sx_conn_link *l = calloc(1, sizeof *l);
    char *s;
    (void)state;

    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        s = replace(inv, subs[i][0], subs[i][1]);
        expect_bad_link(s);
        free(s);
    }
    /* empty queue segment, trailing ';', a space, trailing newline */
    s = replace(con, "%3Bsmp", "%3B%3Bsmp");
    expect_bad_link(s);
    free(s);
    s = malloc(strlen(con) + 4);
    sprintf(s, "%s%%3B", con);
    /* the contact link's last param is smp: a trailing ';' */
    expect_bad_link(s);
    sprintf(s, "%s \n", con);
    expect_bad_link(s);
    free(s);
    /* three x3dh keys */
    {
        const char *k = strstr(inv, "x3dh%3D") + 7;
        const char *e = strstr(k, "%2C");
        char *key = strndup(k, (size_t)(e - k));
        char *to = malloc(strlen(key) * 2 + 16);
        sprintf(to, "%s%%2C%s", key, key);
        s = replace(inv, key, to);
        expect_bad_link(s);
        free(s);
        free(to);
        free(key);
    }
    /* kem_ct makes the params "accepted": refused in a link */
    s = replace(pq, "%26kem_key%3D", "%26kem_ct%3DAAAA%26kem_key%3D");
    expect_bad_link(s);
    free(s);
    /* bad KEM key base64 / length */
    s = replace(pq, "%26kem_key%3D", "%26kem_key%3D%24");
    expect_bad_link(s);
    free(s);
    s = replace(pq, "%26kem_key%3D", "%26kem_key%3DAAAA");
    expect_bad_link(s);
    free(s);
    /* with e2e max version 2 the KEM key is ignored (and not printed) */
    s = replace(pq, "v%3D2-3", "v%3D2-2");
    assert_int_equal(sx_link_parse(l, s, strlen(s)), 0);
    assert_int_equal(l->e2e.kem, SX_KEM_NONE);
    sx_link_clear(l);
    free(s);
    /* contact link version range adjusted to start at 2 */
    s = replace(con, "v=2-7", "v=1-1");
    assert_int_equal(sx_link_parse(l, s, strlen(s)), 0);
    assert_int_equal(l->agent_vrange.min, 2);
    assert_int_equal(l->agent_vrange.max, 2);
    sx_link_clear(l);
    free(s);
    /* optional '/' after the mode */
    s = replace(inv, "/invitation#", "/invitation/#");
    assert_int_equal(sx_link_parse(l, s, strlen(s)), 0);
    sx_link_clear(l);
    free(s);
    /* every prefix of a link is refused, except the ones that only cut
     * the last key's (optional) base64 padding "%3D" */
    for (size_t k = 0; k < strlen(inv); k++) {
        int rc = sx_link_parse(l, inv, k);
        if (rc == 0) {
            assert_true(k >= strlen(inv) - 3);
            sx_link_clear(l);
        }
    }
    free(l);
}

static void test_bad_short_links(void **state)
{
    static const char *bad[] = {
        "simplex:/x#acvSdplf4SmjFmPPXT9oFl4nmfdIdfhsJKH7neWbYw8?c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8",
        "simplex:/I#a/b?h=smp.example.com&c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8",
        "simplex:/a#acvSdplf4SmjFmPPXT9oFl4nmfdIdfhsJKH7neWbYw8?c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8",
        "simplex:/a#acvS?h=smp.example.com&c=gHmv$4",
        "simplex:/a#?h=smp.example.com&c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8",
        "ftp://x/a#acvS?h=smp.example.com",
        "simplex:/a#acvS?h=smp.example.com&c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8 ",
        "simplex:/i#acvS?h=smp.example.com&c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8",
        "simplex:/a#acvS?h=smp.example.com&p=x&c="
        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8",
    };
    sx_short_link l;
    uint8_t bin[] = {'C', 'Z', 1, 1, 'a', 0, 32};
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (sx_short_link_parse(&l, bad[i], strlen(bad[i])) == 0)
            fail_msg("accepted: %s", bad[i]);
    /* no key hash: not representable here */
    assert_int_equal(
        sx_short_link_parse(&l, "https://smp.example.com/a#acvS", 30),
        SIMPLEX_ERR_UNSUPPORTED);
    assert_int_equal(sx_short_link_decode(&l, bin, sizeof bin),
                     SIMPLEX_ERR_PARSE);
    bin[0] = 'X';
    assert_int_equal(sx_short_link_decode(&l, bin, sizeof bin),
                     SIMPLEX_ERR_PARSE);
    /* upper-case contact type letters are accepted, printed lower-case */
    {
        const char *s = "simplex:/G#acvS?h=smp.example.com&c="
                        "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8";
        sx_wr w;
        assert_int_equal(sx_short_link_parse(&l, s, strlen(s)), 0);
        assert_int_equal(l.contact_type, 'G');
        sx_wr_init(&w);
        assert_int_equal(sx_short_link_print(&w, &l), 0);
        assert_int_equal(w.p[9], 'g');
        sx_wr_free(&w);
    }
}

static void test_envelope_negative(void **state)
{
    sx_agent_envelope *e = calloc(1, sizeof *e);
    const char *lk = "simplex:/contact#/?v=2-7&smp=x";
    uint8_t buf[64];
    size_t n = strlen(lk);
    (void)state;
    /* an invitation envelope must carry an invitation link */
    buf[0] = 0;
    buf[1] = 7;
    buf[2] = 'I';
    buf[3] = 0;
    buf[4] = (uint8_t)n;
    memcpy(buf + 5, lk, n);
    assert_int_not_equal(sx_agent_envelope_decode(e, buf, 5 + n), 0);
    /* confirmation with a bad Maybe tag */
    memcpy(buf, "\0\7C2", 4);
    assert_int_equal(sx_agent_envelope_decode(e, buf, 4), SIMPLEX_ERR_PARSE);
    assert_int_not_equal(sx_agent_envelope_decode(e, buf, 0), 0);
    assert_int_not_equal(sx_agent_envelope_decode(e, buf, 2), 0);
    free(e);
}

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(g_tv.n, N_VECTORS);
    assert_int_equal(g_done, N_VECTORS);
    print_message("agent.txt: %zu of %d blocks checked (kem-values-used: "
                  "cross-checked only, sntrup761 arithmetic skipped)\n",
                  g_done, N_VECTORS);
}

static int setup(void **state)
{
    (void)state;
    if (simplex_global_init(NULL) != SIMPLEX_OK)
        return -1;
    tv_load(&g_tv, "agent.txt");
    tv_load(&g_rt, "ratchet.txt");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tv_free(&g_tv);
    tv_free(&g_rt);
    simplex_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_links),
        cmocka_unit_test(test_envelopes),
        cmocka_unit_test(test_kem_values),
        cmocka_unit_test(test_messages),
        cmocka_unit_test(test_bad_amsg_tags),
        cmocka_unit_test(test_hash_chain),
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_full_stack),
        cmocka_unit_test(test_bad_links),
        cmocka_unit_test(test_bad_short_links),
        cmocka_unit_test(test_envelope_negative),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
