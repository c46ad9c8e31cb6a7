/* The sans-I/O SMP client session against an in-memory server peer built
 * from the SMP codecs, with the reference handshake fixtures from
 * tests/vectors/smp.txt (certificate chain, signed session key). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "simplex/simplex.h"
#include "client/session.h"
#include "client/smp_proto.h"
#include "vectors.h"

static tv_file tf;
static uint8_t *leaf, *ca, *signed_key, *key_hash, *srv_dh_priv, *srv_dh_pub;
static size_t leaf_len, ca_len, signed_key_len;

static const uint8_t SID[32] = {
    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb,
    0xcc, 0xdd, 0xee, 0xf0, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
    0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x12};

/* deterministic randomness for the session */
static void test_rng(void *ctx, uint8_t *out, size_t n)
{
    uint64_t *ctr = ctx;
    for (size_t i = 0; i < n; i++) {
        *ctr = *ctr * 6364136223846793005ull + 1442695040888963407ull;
        out[i] = (uint8_t)(*ctr >> 56);
    }
}

/* ---- the server peer ---- */

typedef struct peer {
    uint16_t v;
    int enc;
    sx_smp_chain chain;
    sx_smp_params prm;
    uint8_t sid[32];
    /* last decoded block */
    uint8_t plain[SX_SMP_BLOCK_SIZE];
    sx_smp_batch batch;
    sx_smp_trans t[SX_SMP_MAX_BATCH];
    size_t n;
} peer;

typedef struct out_t {
    const uint8_t *corr;
    size_t corr_len;
    const uint8_t *ent;
    size_t ent_len;
    const uint8_t *cmd; /* raw command bytes */
    size_t cmd_len;
} out_t;

static void hello_block(uint8_t block[SX_SMP_BLOCK_SIZE], uint16_t vmin,
                        uint16_t vmax, const uint8_t *sid, size_t sid_len)
{
    sx_smp_server_hello h;
    sx_wr w;
    memset(&h, 0, sizeof h);
    h.vmin = vmin;
    h.vmax = vmax;
    h.session_id.p = sid;
    h.session_id.n = sid_len;
    h.has_cert = 1;
    h.n_certs = 2;
    h.certs[0].p = leaf;
    h.certs[0].n = leaf_len;
    h.certs[1].p = ca;
    h.certs[1].n = ca_len;
    h.signed_key.p = signed_key;
    h.signed_key.n = signed_key_len;
    sx_wr_init(&w);
    assert_int_equal(sx_smp_server_hello_encode(&w, &h), 0);
    assert_int_equal(sx_smp_block_pad(block, w.p, w.len), 0);
    sx_wr_free(&w);
}

/* Reads the client hello and sets up the peer's side. */
static void peer_accept(peer *pr, const uint8_t block[SX_SMP_BLOCK_SIZE],
                        uint16_t want_v, int want_enc, int want_proxy)
{
    const uint8_t *c;
    size_t n;
    sx_smp_client_hello ch;
    assert_int_equal(sx_smp_block_unpad(block, &c, &n), 0);
    assert_int_equal(sx_smp_client_hello_decode(&ch, c, n), 0);
    assert_int_equal(ch.version, want_v);
    assert_int_equal(ch.key_hash.n, 32);
    assert_memory_equal(ch.key_hash.p, key_hash, 32);
    assert_int_equal(ch.has_service, 0);
    if (want_v >= SX_SMP_V_PROXY_HANDSHAKE)
        assert_int_equal(ch.proxy_server, want_proxy);
    pr->v = want_v;
    memcpy(pr->sid, SID, sizeof SID);
    pr->prm.version = want_v;
    pr->prm.session_id.p = pr->sid;
    pr->prm.session_id.n = sizeof SID;
    pr->enc = 0;
    if (want_v >= SX_SMP_V_AUTH_CMDS)
        assert_int_equal(ch.dh_key.alg, SX_KEY_X25519);
    if (want_enc) {
        uint8_t secret[32];
        assert_int_equal(sx_x25519_dh(secret, ch.dh_key.raw, srv_dh_priv), 0);
        assert_int_equal(
            sx_smp_chain_init(&pr->chain, 1, SID, sizeof SID, secret), 0);
        pr->enc = 1;
    }
}

/* Decodes a block from the client into pr->t[0..n). */
static void peer_read(peer *pr, const uint8_t block[SX_SMP_BLOCK_SIZE])
{
    const uint8_t *c;
    size_t n;
    if (pr->enc)
        assert_int_equal(sx_smp_block_decrypt(&pr->chain, pr->plain, block, &c,
                                              &n),
                         0);
    else {
        assert_int_equal(sx_smp_block_unpad(block, &c, &n), 0);
        memcpy(pr->plain, c, n);
        c = pr->plain;
    }
    assert_int_equal(sx_smp_batch_decode(&pr->batch, c, n), 0);
    pr->n = pr->batch.n;
    for (size_t i = 0; i < pr->n; i++)
        assert_int_equal(sx_smp_trans_decode(&pr->t[i], &pr->prm,
                                             pr->batch.t[i].p,
                                             pr->batch.t[i].n),
                         0);
}

/* Encodes server transmissions into a block for the client. */
static void peer_block(peer *pr, uint8_t block[SX_SMP_BLOCK_SIZE],
                       const out_t *ts, size_t n)
{
    sx_wr bodies[16], batch;
    sx_smp_bytes views[16];
    assert_true(n <= 16);
    for (size_t i = 0; i < n; i++) {
        sx_wr body;
        sx_smp_bytes corr = {ts[i].corr, ts[i].corr_len};
        sx_smp_bytes ent = {ts[i].ent, ts[i].ent_len};
        sx_wr_init(&body);
        assert_int_equal(sx_smp_trans_body_encode(&body, &pr->prm, corr, ent,
                                                  ts[i].cmd, ts[i].cmd_len),
                         0);
        sx_wr_init(&bodies[i]);
        assert_int_equal(
            sx_smp_trans_encode(&bodies[i], pr->v, NULL, NULL, body.p, body.len),
            0);
        sx_wr_free(&body);
        views[i].p = bodies[i].p;
        views[i].n = bodies[i].len;
    }
    sx_wr_init(&batch);
    assert_int_equal(sx_smp_batch_encode(&batch, views, n), 0);
    if (pr->enc)
        assert_int_equal(
            sx_smp_block_encrypt(&pr->chain, block, batch.p, batch.len), 0);
    else
        assert_int_equal(sx_smp_block_pad(block, batch.p, batch.len), 0);
    sx_wr_free(&batch);
    for (size_t i = 0; i < n; i++)
        sx_wr_free(&bodies[i]);
}

/* A server message encoded at the peer's version (static buffer ring). */
static sx_smp_bytes msg_bytes(peer *pr, const sx_smp_msg *m)
{
    static uint8_t bufs[8][512];
    static int k;
    sx_wr w;
    sx_smp_bytes b;
    k = (k + 1) % 8;
    sx_wr_init_fixed(&w, bufs[k], sizeof bufs[k]);
    assert_int_equal(sx_smp_msg_encode(&w, pr->v, m), 0);
    b.p = bufs[k];
    b.n = w.len;
    return b;
}

static sx_smp_bytes simple_msg(peer *pr, sx_smp_msg_tag tag)
{
    sx_smp_msg m;
    sx_smp_msg_init(&m, tag);
    return msg_bytes(pr, &m);
}

/* ---- session helpers ---- */

typedef struct fix {
    sx_smp_session *s;
    peer pr;
    uint64_t rng;
    uint8_t block[SX_SMP_BLOCK_SIZE];
} fix;

static void cfg_default(sx_smp_session_config *cfg, uint64_t *rng)
{
    sx_smp_session_config_init(cfg);
    memcpy(cfg->key_hash, key_hash, 32);
    cfg->rng = test_rng;
    cfg->rng_ctx = rng;
}

static void new_started(fix *f, const sx_smp_session_config *cfg)
{
    assert_int_equal(sx_smp_session_new(&f->s, cfg), 0);
    assert_int_equal(sx_smp_session_start(f->s, SID, sizeof SID, leaf,
                                          leaf_len, 1),
                     0);
    assert_int_equal(sx_smp_session_get_state(f->s), SX_SMP_SESSION_HANDSHAKE);
}

static void expect_no_event(sx_smp_session *s)
{
    sx_smp_session_event ev;
    assert_int_equal(sx_smp_session_next_event(s, &ev), 0);
}

static void next_ev(sx_smp_session *s, sx_smp_session_event *ev,
                    sx_smp_session_ev_type type)
{
    assert_int_equal(sx_smp_session_next_event(s, ev), 1);
    assert_int_equal(ev->type, type);
}

/* Full handshake with a server offering vmin..vmax. */
static void handshake(fix *f, sx_smp_session_config *cfg, uint16_t vmin,
                      uint16_t vmax, uint16_t want_v, int want_enc)
{
    sx_smp_session_event ev;
    new_started(f, cfg);
    assert_int_equal(sx_smp_session_want_write(f->s), 0);
    hello_block(f->block, vmin, vmax, SID, sizeof SID);
    assert_int_equal(sx_smp_session_recv_block(f->s, f->block, 0), 0);
    next_ev(f->s, &ev, SX_SMP_SESSION_EV_HANDSHAKE);
    assert_int_equal(ev.version, want_v);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(f->s);
    assert_int_equal(sx_smp_session_get_state(f->s), SX_SMP_SESSION_READY);
    assert_int_equal(sx_smp_session_version(f->s), want_v);
    assert_int_equal(sx_smp_session_encrypted(f->s), want_enc);
    assert_true(sx_smp_session_want_write(f->s));
    assert_int_equal(sx_smp_session_next_block(f->s, f->block, 0), 1);
    assert_int_equal(sx_smp_session_want_write(f->s), 0);
    assert_int_equal(sx_smp_session_next_block(f->s, f->block, 0), 0);
}

/* handshake() consumed the client hello before the peer could read it;
 * this variant keeps it for the peer. */
static void connect_ok(fix *f, sx_smp_session_config *cfg, uint16_t vmin,
                       uint16_t vmax, uint16_t want_v, int want_enc)
{
    sx_smp_session_event ev;
    uint8_t ch[SX_SMP_BLOCK_SIZE];
    new_started(f, cfg);
    hello_block(f->block, vmin, vmax, SID, sizeof SID);
    assert_int_equal(sx_smp_session_recv_block(f->s, f->block, 0), 0);
    next_ev(f->s, &ev, SX_SMP_SESSION_EV_HANDSHAKE);
    assert_int_equal(ev.version, want_v);
    sx_smp_session_event_dispose(&ev);
    assert_int_equal(sx_smp_session_version(f->s), want_v);
    assert_int_equal(sx_smp_session_encrypted(f->s), want_enc);
    assert_int_equal(sx_smp_session_next_block(f->s, ch, 0), 1);
    assert_int_equal(sx_smp_session_next_block(f->s, f->block, 0), 0);
    peer_accept(&f->pr, ch, want_v, want_enc, cfg->proxy);
}

static void fix_free(fix *f)
{
    sx_smp_session_event ev;
    while (sx_smp_session_next_event(f->s, &ev) == 1)
        sx_smp_session_event_dispose(&ev);
    sx_smp_session_free(f->s);
    f->s = NULL;
}

static uint64_t submit_simple(fix *f, sx_smp_cmd_tag tag, const uint8_t *ent,
                              size_t ent_len, const sx_smp_session_auth *a,
                              uint64_t now)
{
    sx_smp_cmd c;
    uint64_t id = 0;
    sx_smp_cmd_init(&c, tag);
    assert_int_equal(
        sx_smp_session_submit(f->s, ent, ent_len, &c, a, now,
                              SX_SMP_SESSION_TIMEOUT_DEFAULT, &id),
        0);
    assert_true(id != 0);
    return id;
}

static int submit_simple_rc(fix *f)
{
    sx_smp_cmd c;
    uint64_t id = 0;
    sx_smp_cmd_init(&c, SX_SMP_CMD_PING);
    return sx_smp_session_submit(f->s, NULL, 0, &c, NULL, 0,
                                 SX_SMP_SESSION_TIMEOUT_DEFAULT, &id);
}

static void fatal_check(sx_smp_session *s, sx_smp_transport_err te,
                        sx_smp_handshake_err he)
{
    sx_smp_session_event ev;
    next_ev(s, &ev, SX_SMP_SESSION_EV_FATAL);
    assert_int_equal(ev.transport, te);
    assert_int_equal(ev.handshake, he);
    assert_true(ev.code < 0);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(s);
    assert_int_equal(sx_smp_session_get_state(s), SX_SMP_SESSION_FAILED);
    assert_int_equal(sx_smp_session_want_write(s), 0);
}

/* ---- handshake tests ---- */

static void test_handshake_v18(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    handshake(&f, &cfg, 6, 18, 18, 1);
    fix_free(&f);
    memset(&f, 0, sizeof f);
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    fix_free(&f);
}

static void test_handshake_v9(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.vmax = 9;
    connect_ok(&f, &cfg, 6, 18, 9, 0);
    fix_free(&f);
    /* v11 is the first encrypted version */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, 11, 11, 1);
    fix_free(&f);
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, 10, 10, 0);
    fix_free(&f);
}

static void test_version_negotiation(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    (void)state;
    /* server 6..8, we offer 6..18: 8 */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, 8, 8, 0);
    fix_free(&f);
    /* no common version */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.vmin = 9;
    new_started(&f, &cfg);
    hello_block(f.block, 6, 8, SID, sizeof SID);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_VERSION, 0);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 0);
    fix_free(&f);
    /* server entirely above our range */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.vmax = 8;
    new_started(&f, &cfg);
    hello_block(f.block, 9, 18, SID, sizeof SID);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_VERSION, 0);
    fix_free(&f);
    /* a proxy caps the range at 10 for relays older than 14: no encryption */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.proxy = 1;
    connect_ok(&f, &cfg, 6, 12, 10, 0);
    fix_free(&f);
    /* a proxy talking to a v14+ relay: full version, still no encryption */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.proxy = 1;
    connect_ok(&f, &cfg, 6, 18, 18, 0);
    fix_free(&f);
    /* invalid configured ranges */
    cfg_default(&cfg, &f.rng);
    cfg.vmin = 5;
    assert_int_equal(sx_smp_session_new(&f.s, &cfg), SIMPLEX_ERR_INVALID_ARG);
    cfg.vmin = 10;
    cfg.vmax = 9;
    assert_int_equal(sx_smp_session_new(&f.s, &cfg), SIMPLEX_ERR_INVALID_ARG);
    cfg.vmin = 6;
    cfg.vmax = 19;
    assert_int_equal(sx_smp_session_new(&f.s, &cfg), SIMPLEX_ERR_INVALID_ARG);
}

static void test_handshake_failures(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    uint8_t other_sid[32];
    (void)state;
    /* wrong key hash: IDENTITY */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.key_hash[0] ^= 1;
    new_started(&f, &cfg);
    hello_block(f.block, 6, 18, SID, sizeof SID);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_IDENTITY);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    fix_free(&f);
    /* session key not signed by the TLS leaf: BAD_AUTH */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    assert_int_equal(sx_smp_session_new(&f.s, &cfg), 0);
    assert_int_equal(sx_smp_session_start(f.s, SID, sizeof SID, ca, ca_len, 1),
                     0);
    hello_block(f.block, 6, 18, SID, sizeof SID);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH);
    fix_free(&f);
    /* wrong session id: SESSION */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    new_started(&f, &cfg);
    memcpy(other_sid, SID, sizeof SID);
    other_sid[31] ^= 0x80;
    hello_block(f.block, 6, 18, other_sid, sizeof other_sid);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_SESSION, 0);
    fix_free(&f);
    /* shorter session id */
    memset(&f, 0, sizeof f);
    new_started(&f, &cfg);
    hello_block(f.block, 6, 18, SID, 31);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_SESSION, 0);
    fix_free(&f);
    /* garbage hello content: HANDSHAKE PARSE */
    memset(&f, 0, sizeof f);
    new_started(&f, &cfg);
    {
        uint8_t junk[3] = {0, 6, 0};
        assert_int_equal(sx_smp_block_pad(f.block, junk, sizeof junk), 0);
    }
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_PARSE);
    fix_free(&f);
    /* a block that does not unpad: LARGE_MSG, as the reference */
    memset(&f, 0, sizeof f);
    new_started(&f, &cfg);
    memset(f.block, 0xff, sizeof f.block);
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_LARGE_MSG, 0);
    fix_free(&f);
    /* v7+ hello without certificate */
    memset(&f, 0, sizeof f);
    new_started(&f, &cfg);
    {
        sx_smp_server_hello h;
        sx_wr w;
        memset(&h, 0, sizeof h);
        h.vmin = 6;
        h.vmax = 18;
        h.session_id.p = SID;
        h.session_id.n = sizeof SID;
        sx_wr_init(&w);
        assert_int_equal(sx_smp_server_hello_encode(&w, &h), 0);
        assert_int_equal(sx_smp_block_pad(f.block, w.p, w.len), 0);
        sx_wr_free(&w);
    }
    assert_true(sx_smp_session_recv_block(f.s, f.block, 0) < 0);
    fatal_check(f.s, SX_SMP_TE_HANDSHAKE, SX_SMP_HS_BAD_AUTH);
    fix_free(&f);
    /* misuse */
    memset(&f, 0, sizeof f);
    assert_int_equal(sx_smp_session_new(&f.s, &cfg), 0);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(submit_simple_rc(&f), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_start(f.s, SID, 0, leaf, leaf_len, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(
        sx_smp_session_start(f.s, SID, sizeof SID, leaf, leaf_len, 1), 0);
    assert_int_equal(
        sx_smp_session_start(f.s, SID, sizeof SID, leaf, leaf_len, 1),
        SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(submit_simple_rc(&f), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_next_timeout(f.s), SX_SMP_SESSION_NEVER);
    fix_free(&f);
    sx_smp_session_free(NULL);
}

/* ---- requests and responses ---- */

static const uint8_t E1[24] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                               1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
static const uint8_t E2[24] = {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                               2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2};
static const uint8_t E3[24] = {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
                               3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
static const uint8_t E4[24] = {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                               4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4};

static out_t reply(const sx_smp_trans *t, sx_smp_bytes cmd)
{
    out_t o;
    o.corr = t->corr_id.p;
    o.corr_len = t->corr_id.n;
    o.ent = t->entity_id.p;
    o.ent_len = t->entity_id.n;
    o.cmd = cmd.p;
    o.cmd_len = cmd.n;
    return o;
}

static out_t event_out(const uint8_t *ent, size_t ent_len, sx_smp_bytes cmd)
{
    out_t o;
    memset(&o, 0, sizeof o);
    o.corr = (const uint8_t *)"";
    o.ent = ent;
    o.ent_len = ent_len;
    o.cmd = cmd.p;
    o.cmd_len = cmd.n;
    return o;
}

static void expect_response(sx_smp_session *s, uint64_t id,
                            sx_smp_msg_tag tag, const uint8_t *ent,
                            size_t ent_len)
{
    sx_smp_session_event ev;
    next_ev(s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == id);
    assert_int_equal(ev.late, 0);
    assert_int_equal(ev.problem, SX_SMP_SESSION_OK);
    assert_int_equal(ev.has_msg, 1);
    assert_int_equal(ev.msg.tag, tag);
    assert_int_equal(ev.entity_id.n, ent_len);
    if (ent_len)
        assert_memory_equal(ev.entity_id.p, ent, ent_len);
    assert_int_equal(ev.corr_id.n, 24);
    sx_smp_session_event_dispose(&ev);
    assert_null(ev.data);
}

static void do_ping_pong(uint16_t vmax, int enc)
{
    fix f;
    sx_smp_session_config cfg;
    sx_smp_cmd c;
    uint64_t id;
    out_t o;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, vmax, vmax, enc);
    id = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 10);
    assert_int_equal(sx_smp_session_pending(f.s), 1);
    assert_true(sx_smp_session_want_write(f.s));
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 10), 1);
    assert_int_equal(sx_smp_session_want_write(f.s), 0);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 1);
    assert_int_equal(f.pr.t[0].auth_kind, SX_SMP_AUTH_NONE);
    assert_int_equal(f.pr.t[0].corr_id.n, 24);
    assert_int_equal(f.pr.t[0].entity_id.n, 0);
    assert_int_equal(sx_smp_cmd_decode(&c, f.pr.v, f.pr.t[0].command.p,
                                       f.pr.t[0].command.n),
                     0);
    assert_int_equal(c.tag, SX_SMP_CMD_PING);
    o = reply(&f.pr.t[0], simple_msg(&f.pr, SX_SMP_MSG_PONG));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 20), 0);
    expect_response(f.s, id, SX_SMP_MSG_PONG, NULL, 0);
    expect_no_event(f.s);
    assert_int_equal(sx_smp_session_pending(f.s), 0);
    /* a second response for the same corrId is unknown now */
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 30), 0);
    {
        sx_smp_session_event ev;
        next_ev(f.s, &ev, SX_SMP_SESSION_EV_ERROR);
        assert_int_equal(ev.problem, SX_SMP_SESSION_UNKNOWN_CORR_ID);
        assert_int_equal(ev.has_msg, 1);
        assert_int_equal(ev.msg.tag, SX_SMP_MSG_PONG);
        sx_smp_session_event_dispose(&ev);
    }
    assert_int_equal(sx_smp_session_get_state(f.s), SX_SMP_SESSION_READY);
    fix_free(&f);
}

static void test_ping_pong(void **state)
{
    (void)state;
    do_ping_pong(18, 1);
    do_ping_pong(9, 0);
    do_ping_pong(11, 1);
}

static void verify_auth(peer *pr, const sx_smp_trans *t,
                        sx_smp_auth_kind kind, const sx_smp_key *pub)
{
    sx_wr w;
    sx_wr_init(&w);
    assert_int_equal(t->auth_kind, kind);
    assert_int_equal(sx_smp_trans_signed(&w, &pr->prm, t), 0);
    assert_int_equal(sx_smp_verify(&t->auth, t->auth_kind, pub, srv_dh_priv,
                                   t->corr_id, w.p, w.len),
                     0);
    w.p[w.len - 1] ^= 1;
    assert_int_equal(sx_smp_verify(&t->auth, t->auth_kind, pub, srv_dh_priv,
                                   t->corr_id, w.p, w.len),
                     SIMPLEX_ERR_SIGNATURE);
    sx_wr_free(&w);
}

static void do_batch(uint16_t vmax, int enc)
{
    fix f;
    sx_smp_session_config cfg;
    uint8_t ed_pk[32], ed_sk[32], x_pk[32], x_sk[32];
    uint8_t e4_pk[SX_ED448_PK_BYTES], e4_sk[SX_ED448_SK_BYTES];
    sx_smp_session_auth a_ed = {.alg = SX_KEY_ED25519, .priv = ed_sk};
    sx_smp_session_auth a_x = {.alg = SX_KEY_X25519, .priv = x_sk};
    sx_smp_session_auth a_448 = {.alg = SX_KEY_ED448, .priv = e4_sk};
    sx_smp_key k_ed, k_x, k_448;
    sx_smp_cmd c;
    uint64_t id[5];
    out_t o[4];
    sx_smp_trans t[5];
    sx_smp_msg m;
    sx_smp_session_event ev;
    static const uint8_t body[] = "hello, queue";

    assert_int_equal(sx_ed25519_keypair(ed_pk, ed_sk), 0);
    assert_int_equal(sx_x25519_keypair(x_pk, x_sk), 0);
    assert_int_equal(sx_ed448_keypair(e4_pk, e4_sk), 0);
    sx_smp_key_set(&k_ed, SX_KEY_ED25519, ed_pk);
    sx_smp_key_set(&k_x, SX_KEY_X25519, x_pk);
    sx_smp_key_set(&k_448, SX_KEY_ED448, e4_pk);

    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, vmax, vmax, enc);
    id[0] = submit_simple(&f, SX_SMP_CMD_SUB, E1, 24, &a_ed, 0);
    id[1] = submit_simple(&f, SX_SMP_CMD_SUB, E2, 24, &a_x, 0);
    sx_smp_cmd_init(&c, SX_SMP_CMD_SEND);
    c.notification = 1;
    c.body.p = body;
    c.body.n = sizeof body - 1;
    assert_int_equal(sx_smp_session_submit(f.s, E3, 24, &c, &a_448, 0,
                                           SX_SMP_SESSION_TIMEOUT_DEFAULT,
                                           &id[2]),
                     0);
    sx_smp_cmd_init(&c, SX_SMP_CMD_ACK);
    c.id.p = E2;
    c.id.n = 24;
    assert_int_equal(sx_smp_session_submit(f.s, E4, 24, &c, &a_ed, 0,
                                           SX_SMP_SESSION_TIMEOUT_DEFAULT,
                                           &id[3]),
                     0);
    id[4] = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
    assert_int_equal(sx_smp_session_pending(f.s), 5);
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            assert_true(id[i] != id[j]);

    /* one block, in submission order */
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    {
        static uint8_t none[SX_SMP_BLOCK_SIZE];
        assert_int_equal(sx_smp_session_next_block(f.s, none, 0), 0);
    }
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 5);
    memcpy(t, f.pr.t, sizeof t);
    {
        static const sx_smp_cmd_tag tags[5] = {SX_SMP_CMD_SUB, SX_SMP_CMD_SUB,
                                               SX_SMP_CMD_SEND, SX_SMP_CMD_ACK,
                                               SX_SMP_CMD_PING};
        const uint8_t *ents[5] = {E1, E2, E3, E4, NULL};
        for (int i = 0; i < 5; i++) {
            assert_int_equal(sx_smp_cmd_decode(&c, f.pr.v, t[i].command.p,
                                               t[i].command.n),
                             0);
            assert_int_equal(c.tag, tags[i]);
            assert_int_equal(t[i].corr_id.n, 24);
            assert_int_equal(t[i].entity_id.n, ents[i] ? 24 : 0);
            if (ents[i])
                assert_memory_equal(t[i].entity_id.p, ents[i], 24);
            assert_int_equal(t[i].has_service_sig, 0);
            for (int j = 0; j < i; j++)
                assert_memory_not_equal(t[i].corr_id.p, t[j].corr_id.p, 24);
        }
        assert_int_equal(sx_smp_cmd_decode(&c, f.pr.v, t[2].command.p,
                                           t[2].command.n),
                         0);
        assert_int_equal(c.body.n, sizeof body - 1);
        assert_memory_equal(c.body.p, body, sizeof body - 1);
    }
    verify_auth(&f.pr, &t[0], SX_SMP_AUTH_ED25519, &k_ed);
    verify_auth(&f.pr, &t[1], SX_SMP_AUTH_X25519, &k_x);
    verify_auth(&f.pr, &t[2], SX_SMP_AUTH_ED448, &k_448);
    verify_auth(&f.pr, &t[3], SX_SMP_AUTH_ED25519, &k_ed);
    assert_int_equal(t[4].auth_kind, SX_SMP_AUTH_NONE);

    /* responses out of order, with a server event in between */
    o[0] = reply(&t[3], simple_msg(&f.pr, SX_SMP_MSG_OK));
    o[1] = reply(&t[0], simple_msg(&f.pr, SX_SMP_MSG_OK));
    o[2] = event_out(E1, 24, simple_msg(&f.pr, SX_SMP_MSG_END));
    o[3] = reply(&t[4], simple_msg(&f.pr, SX_SMP_MSG_PONG));
    peer_block(&f.pr, f.block, o, 4);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 5), 0);
    expect_response(f.s, id[3], SX_SMP_MSG_OK, E4, 24);
    expect_response(f.s, id[0], SX_SMP_MSG_OK, E1, 24);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_SERVER_EVENT);
    assert_int_equal(ev.has_msg, 1);
    assert_int_equal(ev.msg.tag, SX_SMP_MSG_END);
    assert_int_equal(ev.corr_id.n, 0);
    assert_int_equal(ev.entity_id.n, 24);
    assert_memory_equal(ev.entity_id.p, E1, 24);
    sx_smp_session_event_dispose(&ev);
    expect_response(f.s, id[4], SX_SMP_MSG_PONG, NULL, 0);
    expect_no_event(f.s);

    sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
    m.err.type = SX_SMP_ERR_AUTH;
    o[0] = reply(&t[1], msg_bytes(&f.pr, &m));
    o[1] = reply(&t[2], simple_msg(&f.pr, SX_SMP_MSG_OK));
    peer_block(&f.pr, f.block, o, 2);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 6), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == id[1]);
    assert_int_equal(ev.has_msg, 1);
    assert_int_equal(ev.msg.tag, SX_SMP_MSG_ERR);
    assert_int_equal(ev.msg.err.type, SX_SMP_ERR_AUTH);
    sx_smp_session_event_dispose(&ev);
    expect_response(f.s, id[2], SX_SMP_MSG_OK, E3, 24);
    expect_no_event(f.s);
    assert_int_equal(sx_smp_session_pending(f.s), 0);

    /* a response for another entity than the request's */
    id[0] = submit_simple(&f, SX_SMP_CMD_SUB, E1, 24, &a_ed, 7);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 7), 1);
    peer_read(&f.pr, f.block);
    o[0] = reply(&f.pr.t[0], simple_msg(&f.pr, SX_SMP_MSG_OK));
    o[0].ent = E2;
    peer_block(&f.pr, f.block, o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 8), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == id[0]);
    assert_int_equal(ev.problem, SX_SMP_SESSION_ENTITY_MISMATCH);
    assert_int_equal(ev.has_msg, 0);
    sx_smp_session_event_dispose(&ev);

    /* unparsable response; event failing the credentials check */
    id[0] = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 9);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 9), 1);
    peer_read(&f.pr, f.block);
    {
        sx_smp_bytes bogus = {(const uint8_t *)"BOGUS 1", 7};
        o[0] = reply(&f.pr.t[0], bogus);
    }
    o[1] = event_out(NULL, 0, simple_msg(&f.pr, SX_SMP_MSG_END));
    peer_block(&f.pr, f.block, o, 2);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 10), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == id[0]);
    assert_int_equal(ev.problem, SX_SMP_SESSION_BAD_MESSAGE);
    assert_true(ev.code < 0);
    assert_int_equal(ev.has_msg, 0);
    sx_smp_session_event_dispose(&ev);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_SERVER_EVENT);
    assert_int_equal(ev.problem, SX_SMP_SESSION_BAD_MESSAGE);
    assert_int_equal(ev.cmd_err, SX_SMP_CMDERR_NO_ENTITY);
    assert_int_equal(ev.has_msg, 0);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(f.s);
    assert_int_equal(sx_smp_session_get_state(f.s), SX_SMP_SESSION_READY);
    fix_free(&f);
}

static void test_batch_and_auth(void **state)
{
    (void)state;
    do_batch(18, 1);
    do_batch(9, 0);
    do_batch(16, 1);
}

static void test_batch_split(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    sx_smp_cmd c;
    static uint8_t big[16384];
    uint64_t id;
    size_t pend;
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    /* 300 pings: 255 per block at most */
    for (int i = 0; i < 300; i++)
        (void)submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
    assert_int_equal(sx_smp_session_pending(f.s), 300);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 255);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 45);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 0);

    /* large SENDs: two fit one block, the third goes into the next */
    memset(big, 'x', sizeof big);
    sx_smp_cmd_init(&c, SX_SMP_CMD_SEND);
    c.body.p = big;
    c.body.n = 7000;
    {
        const uint8_t *const ents[3] = {E1, E2, E3};
        for (int i = 0; i < 3; i++)
            assert_int_equal(
                sx_smp_session_submit(f.s, ents[i], 24, &c, NULL, 0,
                                      SX_SMP_SESSION_TIMEOUT_DEFAULT, &id),
                0);
    }
    (void)submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 2);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 2);
    assert_int_equal(sx_smp_cmd_decode(&c, f.pr.v, f.pr.t[1].command.p,
                                       f.pr.t[1].command.n),
                     0);
    assert_int_equal(c.tag, SX_SMP_CMD_PING);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 0);

    /* the server runs a block's commands from the last one, so two
     * commands on one entity never share a block: E1 E2 E1 E1 E3 PING PING
     * go as [E1 E2] [E1] [E1 E3 PING PING], in order */
    {
        const uint8_t *const ents[5] = {E1, E2, E1, E1, E3};
        static const size_t per_block[3] = {2, 1, 4};
        size_t seen = 0;
        c.body.n = 100;
        for (int i = 0; i < 5; i++)
            assert_int_equal(
                sx_smp_session_submit(f.s, ents[i], 24, &c, NULL, 0,
                                      SX_SMP_SESSION_TIMEOUT_DEFAULT, &id),
                0);
        (void)submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
        (void)submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
        for (int b = 0; b < 3; b++) {
            assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
            peer_read(&f.pr, f.block);
            assert_int_equal(f.pr.n, per_block[b]);
            for (size_t i = 0; i < f.pr.n; i++, seen++) {
                if (seen < 5) {
                    assert_int_equal(f.pr.t[i].entity_id.n, 24);
                    assert_memory_equal(f.pr.t[i].entity_id.p, ents[seen],
                                        24);
                } else {
                    assert_int_equal(f.pr.t[i].entity_id.n, 0);
                }
            }
        }
        assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 0);
    }

    /* too large for any block: refused, nothing queued */
    pend = sx_smp_session_pending(f.s);
    sx_smp_cmd_init(&c, SX_SMP_CMD_SEND);
    c.body.p = big;
    c.body.n = SX_SMP_BATCH_ROOM;
    assert_true(sx_smp_session_submit(f.s, E1, 24, &c, NULL, 0,
                                      SX_SMP_SESSION_TIMEOUT_DEFAULT, &id) < 0);
    assert_int_equal(sx_smp_session_pending(f.s), pend);
    assert_int_equal(sx_smp_session_want_write(f.s), 0);
    /* the largest body that still fits */
    {
        size_t lo = 0, hi = SX_SMP_BATCH_ROOM;
        while (lo + 1 < hi) {
            size_t mid = (lo + hi) / 2;
            c.body.n = mid;
            if (sx_smp_session_submit(f.s, E1, 24, &c, NULL, 0,
                                      SX_SMP_SESSION_TIMEOUT_DEFAULT,
                                      &id) == 0) {
                lo = mid;
                assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
                peer_read(&f.pr, f.block);
                assert_int_equal(f.pr.n, 1);
            } else {
                hi = mid;
            }
        }
        assert_true(lo > 16000);
    }
    /* entity id too long */
    assert_int_equal(sx_smp_session_submit(f.s, big, 256, &c, NULL, 0, 0, &id),
                     SIMPLEX_ERR_INVALID_ARG);
    fix_free(&f);
}

/* ---- timers ---- */

static void test_response_timeout(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    sx_smp_cmd c;
    uint64_t id1, id2, id3;
    sx_smp_trans t1;
    out_t o[2];
    sx_smp_session_event ev;
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.ping_interval_ms = 0;
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    assert_true(sx_smp_session_next_timeout(f.s) == SX_SMP_SESSION_NEVER);
    sx_smp_cmd_init(&c, SX_SMP_CMD_PING);
    assert_int_equal(sx_smp_session_submit(f.s, NULL, 0, &c, NULL, 1000,
                                           SX_SMP_SESSION_TIMEOUT_DEFAULT,
                                           &id1),
                     0);
    assert_true(sx_smp_session_next_timeout(f.s) == 31000);
    assert_int_equal(
        sx_smp_session_submit(f.s, NULL, 0, &c, NULL, 2000, 5000, &id2), 0);
    assert_true(sx_smp_session_next_timeout(f.s) == 7000);
    assert_int_equal(sx_smp_session_submit(f.s, NULL, 0, &c, NULL, 2000,
                                           SX_SMP_SESSION_NO_TIMEOUT, &id3),
                     0);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 2000), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 3);
    t1 = f.pr.t[0];
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 6999), 0);
    expect_no_event(f.s);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 7000), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_TIMEOUT);
    assert_true(ev.request_id == id2);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(f.s);
    assert_true(sx_smp_session_next_timeout(f.s) == 31000);
    assert_int_equal(sx_smp_session_pending(f.s), 2);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 40000), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_TIMEOUT);
    assert_true(ev.request_id == id1);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(f.s);
    assert_true(sx_smp_session_next_timeout(f.s) == SX_SMP_SESSION_NEVER);
    assert_int_equal(sx_smp_session_pending(f.s), 1);
    /* a late response is still delivered, marked late */
    o[0] = reply(&t1, simple_msg(&f.pr, SX_SMP_MSG_PONG));
    o[1] = reply(&f.pr.t[2], simple_msg(&f.pr, SX_SMP_MSG_PONG));
    peer_block(&f.pr, f.block, o, 2);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 50000), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == id1);
    assert_int_equal(ev.late, 1);
    assert_int_equal(ev.has_msg, 1);
    sx_smp_session_event_dispose(&ev);
    expect_response(f.s, id3, SX_SMP_MSG_PONG, NULL, 0);
    assert_int_equal(sx_smp_session_pending(f.s), 0);
    fix_free(&f);
}

static void send_ping_check(fix *f, uint64_t now)
{
    sx_smp_cmd c;
    assert_true(sx_smp_session_want_write(f->s));
    assert_int_equal(sx_smp_session_next_block(f->s, f->block, now), 1);
    peer_read(&f->pr, f->block);
    assert_int_equal(f->pr.n, 1);
    assert_int_equal(sx_smp_cmd_decode(&c, f->pr.v, f->pr.t[0].command.p,
                                       f->pr.t[0].command.n),
                     0);
    assert_int_equal(c.tag, SX_SMP_CMD_PING);
    assert_int_equal(f->pr.t[0].entity_id.n, 0);
}

static void test_keepalive(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    out_t o;
    sx_smp_session_event ev;
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.ping_interval_ms = 1000;
    cfg.max_missed_pings = 3;
    cfg.response_timeout_ms = 100;
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    assert_true(sx_smp_session_next_timeout(f.s) == 1000);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 999), 0);
    assert_int_equal(sx_smp_session_want_write(f.s), 0);
    /* ping 1, answered */
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 1000), 0);
    send_ping_check(&f, 1000);
    assert_true(sx_smp_session_next_timeout(f.s) == 1100);
    o = reply(&f.pr.t[0], simple_msg(&f.pr, SX_SMP_MSG_PONG));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1050), 0);
    expect_no_event(f.s); /* keep-alive responses are internal */
    assert_int_equal(sx_smp_session_pending(f.s), 0);
    assert_true(sx_smp_session_next_timeout(f.s) == 2050);
    /* received traffic postpones the next ping */
    o = event_out(E1, 24, simple_msg(&f.pr, SX_SMP_MSG_END));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1500), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_SERVER_EVENT);
    sx_smp_session_event_dispose(&ev);
    assert_true(sx_smp_session_next_timeout(f.s) == 2500);
    /* ping 2 missed */
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 2500), 0);
    send_ping_check(&f, 2500);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 2600), 0);
    expect_no_event(f.s);
    assert_true(sx_smp_session_next_timeout(f.s) == 3600);
    /* ping 3 missed */
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 3600), 0);
    send_ping_check(&f, 3600);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 3700), 0);
    /* ping 4 outstanding; a received block resets the missed count */
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 4700), 0);
    send_ping_check(&f, 4700);
    o = event_out(E2, 24, simple_msg(&f.pr, SX_SMP_MSG_END));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 4750), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_SERVER_EVENT);
    sx_smp_session_event_dispose(&ev);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 4800), 0); /* 1 */
    assert_true(sx_smp_session_next_timeout(f.s) == 5800);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 5800), 0);
    send_ping_check(&f, 5800);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 5900), 0); /* 2 */
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 6900), 0);
    send_ping_check(&f, 6900);
    expect_no_event(f.s);
    assert_true(sx_smp_session_handle_timeout(f.s, 7000) < 0); /* 3 */
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_FATAL);
    assert_int_equal(ev.timed_out, 1);
    assert_true(ev.code < 0);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(f.s);
    assert_int_equal(sx_smp_session_get_state(f.s), SX_SMP_SESSION_FAILED);
    assert_true(sx_smp_session_next_timeout(f.s) == SX_SMP_SESSION_NEVER);
    assert_true(sx_smp_session_handle_timeout(f.s, 8000) < 0);
    assert_int_equal(submit_simple_rc(&f), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 8000), 0);
    fix_free(&f);

    /* pings disabled */
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.ping_interval_ms = 0;
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    assert_true(sx_smp_session_next_timeout(f.s) == SX_SMP_SESSION_NEVER);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 1u << 30), 0);
    assert_int_equal(sx_smp_session_want_write(f.s), 0);
    fix_free(&f);
}

/* ---- hostile input ---- */

static void drain(sx_smp_session *s)
{
    sx_smp_session_event ev;
    while (sx_smp_session_next_event(s, &ev) == 1)
        sx_smp_session_event_dispose(&ev);
}

static void expect_error(sx_smp_session *s, sx_smp_session_problem p)
{
    sx_smp_session_event ev;
    next_ev(s, &ev, SX_SMP_SESSION_EV_ERROR);
    assert_int_equal(ev.problem, p);
    assert_true(ev.code < 0);
    sx_smp_session_event_dispose(&ev);
}

static void do_garbage(uint16_t vmax, int enc)
{
    fix f;
    sx_smp_session_config cfg;
    uint8_t content[64];
    uint64_t id;
    out_t o;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, vmax, vmax, enc);
    if (!enc) {
        /* does not unpad */
        memset(f.block, 0x41, sizeof f.block);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_BLOCK);
        /* empty batch */
        content[0] = 0;
        assert_int_equal(sx_smp_block_pad(f.block, content, 1), 0);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_BLOCK);
        /* batch announcing two transmissions, holding one */
        memcpy(content, "\x02\x00\x01\x00", 4);
        assert_int_equal(sx_smp_block_pad(f.block, content, 4), 0);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_BLOCK);
        /* a truncated transmission */
        memcpy(content, "\x01\x00\x03\x05\x61\x62", 6);
        assert_int_equal(sx_smp_block_pad(f.block, content, 6), 0);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_TRANSMISSION);
        /* an empty transmission */
        memcpy(content, "\x01\x00\x00", 3);
        assert_int_equal(sx_smp_block_pad(f.block, content, 3), 0);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_TRANSMISSION);
        expect_no_event(f.s);
    } else {
        /* does not decrypt: reported (the chain moves on, as the
         * reference's) */
        memset(f.block, 0x41, sizeof f.block);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_BLOCK);
        expect_no_event(f.s);
        assert_int_equal(sx_smp_block_encrypt(&f.pr.chain, f.block,
                                              (const uint8_t *)"x", 1),
                         0); /* keep the peer's chain in step */
        /* encrypted by the peer but garbage inside */
        content[0] = 0;
        assert_int_equal(sx_smp_block_encrypt(&f.pr.chain, f.block, content, 1),
                         0);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_BLOCK);
        memcpy(content, "\x01\x00\x03\x05\x61\x62", 6);
        assert_int_equal(sx_smp_block_encrypt(&f.pr.chain, f.block, content, 6),
                         0);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        expect_error(f.s, SX_SMP_SESSION_BAD_TRANSMISSION);
    }
    /* still working */
    id = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 2);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 2), 1);
    peer_read(&f.pr, f.block);
    o = reply(&f.pr.t[0], simple_msg(&f.pr, SX_SMP_MSG_PONG));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 3), 0);
    expect_response(f.s, id, SX_SMP_MSG_PONG, NULL, 0);

    /* random blocks and random batch contents never crash */
    for (int i = 0; i < 300; i++) {
        size_t n = 1 + (size_t)(i * 37) % 60;
        sx_random(f.block, sizeof f.block);
        if (i % 3 == 0) {
            sx_random(content, n);
            content[0] = (uint8_t)(1 + i % 3);
            if (enc)
                assert_int_equal(
                    sx_smp_block_encrypt(&f.pr.chain, f.block, content, n), 0);
            else
                assert_int_equal(sx_smp_block_pad(f.block, content, n), 0);
        }
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 4), 0);
        drain(f.s);
        if (enc && i % 3 != 0) {
            /* the session advanced its chain; keep the peer in step */
            assert_int_equal(sx_smp_block_encrypt(&f.pr.chain, f.block,
                                                  content, 1),
                             0);
        }
    }
    assert_int_equal(sx_smp_session_get_state(f.s), SX_SMP_SESSION_READY);
    fix_free(&f);
}

static void test_garbage(void **state)
{
    (void)state;
    do_garbage(9, 0);
    do_garbage(18, 1);
}

/* v6: no server keys, the session id travels in each transmission */
static void test_v6(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    uint8_t x_pk[32], x_sk[32], ed_pk[32], ed_sk[32], other[32];
    sx_smp_session_auth a_x = {.alg = SX_KEY_X25519, .priv = x_sk};
    sx_smp_session_auth a_ed = {.alg = SX_KEY_ED25519, .priv = ed_sk};
    sx_smp_key k_ed;
    sx_smp_cmd c;
    uint64_t id, id2;
    out_t o;
    sx_smp_session_event ev;
    (void)state;
    assert_int_equal(sx_x25519_keypair(x_pk, x_sk), 0);
    assert_int_equal(sx_ed25519_keypair(ed_pk, ed_sk), 0);
    sx_smp_key_set(&k_ed, SX_KEY_ED25519, ed_pk);
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    assert_int_equal(sx_smp_session_new(&f.s, &cfg), 0);
    assert_int_equal(sx_smp_session_start(f.s, SID, sizeof SID, leaf,
                                          leaf_len, 0),
                     0);
    hello_block(f.block, 6, 6, SID, sizeof SID); /* no keys below v7 */
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 0), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_HANDSHAKE);
    assert_int_equal(ev.version, 6);
    sx_smp_session_event_dispose(&ev);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_accept(&f.pr, f.block, 6, 0, 0);
    sx_smp_cmd_init(&c, SX_SMP_CMD_SUB);
    assert_int_equal(sx_smp_session_submit(f.s, E1, 24, &c, &a_x, 0, 0, &id),
                     SIMPLEX_ERR_KEY);
    assert_int_equal(sx_smp_session_want_write(f.s), 0);
    id = submit_simple(&f, SX_SMP_CMD_SUB, E1, 24, &a_ed, 0);
    id2 = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 2);
    assert_int_equal(f.pr.t[0].session_id.n, sizeof SID);
    assert_memory_equal(f.pr.t[0].session_id.p, SID, sizeof SID);
    verify_auth(&f.pr, &f.pr.t[0], SX_SMP_AUTH_ED25519, &k_ed);
    o = reply(&f.pr.t[0], simple_msg(&f.pr, SX_SMP_MSG_OK));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
    expect_response(f.s, id, SX_SMP_MSG_OK, E1, 24);
    /* a response carrying another session id */
    memcpy(other, SID, sizeof SID);
    other[0] ^= 1;
    f.pr.prm.session_id.p = other;
    o = reply(&f.pr.t[1], simple_msg(&f.pr, SX_SMP_MSG_PONG));
    peer_block(&f.pr, f.block, &o, 1);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == id2);
    assert_int_equal(ev.problem, SX_SMP_SESSION_BAD_SESSION_ID);
    assert_int_equal(ev.has_msg, 0);
    sx_smp_session_event_dispose(&ev);
    fix_free(&f);
}

/* many outstanding requests: the table grows and keeps matching */
static void test_many_requests(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    enum { N = 1000 };
    static uint64_t ids[N];
    static uint8_t corrs[N][24];
    size_t got = 0;
    sx_smp_session_event ev;
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    for (int i = 0; i < N; i++)
        ids[i] = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
    while (sx_smp_session_next_block(f.s, f.block, 0) == 1) {
        peer_read(&f.pr, f.block);
        for (size_t i = 0; i < f.pr.n; i++)
            memcpy(corrs[got++], f.pr.t[i].corr_id.p, 24);
    }
    assert_int_equal(got, N);
    /* answer from the back, 10 per block */
    for (int i = N; i > 0; i -= 10) {
        out_t o[10];
        sx_smp_bytes pong = simple_msg(&f.pr, SX_SMP_MSG_PONG);
        for (int j = 0; j < 10; j++) {
            memset(&o[j], 0, sizeof o[j]);
            o[j].corr = corrs[i - 1 - j];
            o[j].corr_len = 24;
            o[j].cmd = pong.p;
            o[j].cmd_len = pong.n;
        }
        peer_block(&f.pr, f.block, o, 10);
        assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1), 0);
        for (int j = 0; j < 10; j++) {
            next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
            assert_true(ev.request_id == ids[i - 1 - j]);
            sx_smp_session_event_dispose(&ev);
        }
    }
    assert_int_equal(sx_smp_session_pending(f.s), 0);
    assert_true(sx_smp_session_next_timeout(f.s) == 600001);
    fix_free(&f);
}

static void zero_rng(void *ctx, uint8_t *out, size_t n)
{
    (void)ctx;
    memset(out, 0, n);
}

/* timed-out requests: late responses matched, the oldest forgotten past
 * 1024; a broken generator cannot make correlation ids collide */
static void test_late_and_collisions(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    enum { N = 1100 };
    static uint8_t corrs[N][24];
    static uint64_t ids[N];
    size_t got = 0;
    sx_smp_session_event ev;
    sx_smp_bytes pong;
    out_t o[2];
    (void)state;
    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.ping_interval_ms = 0;
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    for (int i = 0; i < N; i++)
        ids[i] = submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, i);
    while (sx_smp_session_next_block(f.s, f.block, 0) == 1) {
        peer_read(&f.pr, f.block);
        for (size_t i = 0; i < f.pr.n; i++)
            memcpy(corrs[got++], f.pr.t[i].corr_id.p, 24);
    }
    assert_int_equal(got, N);
    assert_int_equal(sx_smp_session_handle_timeout(f.s, 1000000), 0);
    for (int i = 0; i < N; i++) {
        next_ev(f.s, &ev, SX_SMP_SESSION_EV_TIMEOUT);
        assert_true(ev.request_id == ids[i]);
        sx_smp_session_event_dispose(&ev);
    }
    expect_no_event(f.s);
    assert_int_equal(sx_smp_session_pending(f.s), 0);
    pong = simple_msg(&f.pr, SX_SMP_MSG_PONG);
    memset(o, 0, sizeof o);
    o[0].corr = corrs[0];
    o[1].corr = corrs[N - 1];
    o[0].corr_len = o[1].corr_len = 24;
    o[0].cmd = o[1].cmd = pong.p;
    o[0].cmd_len = o[1].cmd_len = pong.n;
    peer_block(&f.pr, f.block, o, 2);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 1000001), 0);
    expect_error(f.s, SX_SMP_SESSION_UNKNOWN_CORR_ID);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_RESPONSE);
    assert_true(ev.request_id == ids[N - 1]);
    assert_int_equal(ev.late, 1);
    sx_smp_session_event_dispose(&ev);
    expect_no_event(f.s);
    fix_free(&f);

    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    cfg.rng = zero_rng;
    connect_ok(&f, &cfg, 6, 18, 18, 1);
    (void)submit_simple(&f, SX_SMP_CMD_PING, NULL, 0, NULL, 0);
    assert_int_equal(submit_simple_rc(&f), SIMPLEX_ERR_INTERNAL);
    assert_int_equal(sx_smp_session_pending(f.s), 1);
    fix_free(&f);
}

static uint8_t *hexdup(const tv_block *b, const char *k, size_t *n)
{
    return tv_hex(b, k, n);
}

static int setup(void **state)
{
    const tv_block *b;
    size_t n;
    uint8_t fp[32];
    (void)state;
    if (simplex_global_init(NULL) != SIMPLEX_OK)
        return -1;
    tv_load(&tf, "smp.txt");
    b = tv_find(&tf, "server-handshake-v18");
    leaf = hexdup(b, "cert_leaf_der", &leaf_len);
    ca = hexdup(b, "cert_ca_der", &ca_len);
    signed_key = hexdup(b, "signed_key_der", &signed_key_len);
    key_hash = hexdup(b, "key_hash", &n);
    if (n != 32)
        return -1;
    srv_dh_priv = hexdup(b, "server_dh_private", &n);
    if (n != 32)
        return -1;
    srv_dh_pub = hexdup(b, "server_dh_public", &n);
    if (n != 32)
        return -1;
    /* the fixture's identity certificate is the CA certificate */
    if (sx_sha256(fp, ca, ca_len) != 0 || memcmp(fp, key_hash, 32) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(leaf);
    free(ca);
    free(signed_key);
    free(key_hash);
    free(srv_dh_priv);
    free(srv_dh_pub);
    tv_free(&tf);
    simplex_global_cleanup();
    return 0;
}

/* submit_corr(): the caller's correlation id is sent as given and may not
 * be pending twice; an expanded Ed25519 key signs exactly as the seed;
 * server_key() / dh_secret() give the server's session key and the DH
 * secret with it once the session is READY. */
static void test_corr_and_secret(void **state)
{
    fix f;
    sx_smp_session_config cfg;
    sx_smp_session_event ev;
    uint8_t ch_block[SX_SMP_BLOCK_SIZE], got[32], want[32];
    uint8_t corr[SX_SMP_SESSION_CORR_ID_BYTES], corr2[sizeof corr];
    uint8_t ed_pk[32], ed_sk[32], ed_x[SX_ED25519_EXPANDED_BYTES];
    uint8_t sig[SX_ED25519_SIG_BYTES];
    sx_smp_session_auth a_x = {.alg = SX_KEY_ED25519,
                               .ed25519_expanded = ed_x};
    sx_smp_key k_ed;
    sx_smp_cmd c;
    sx_smp_client_hello ch;
    const uint8_t *content;
    size_t n;
    uint64_t id = 0, id2 = 0;
    sx_wr w;
    (void)state;

    assert_int_equal(sx_ed25519_keypair(ed_pk, ed_sk), 0);
    assert_int_equal(sx_ed25519_expand(ed_x, ed_sk), 0);
    sx_smp_key_set(&k_ed, SX_KEY_ED25519, ed_pk);
    memset(corr, 0xc5, sizeof corr);
    memset(corr2, 0x5c, sizeof corr2);

    memset(&f, 0, sizeof f);
    cfg_default(&cfg, &f.rng);
    new_started(&f, &cfg);
    sx_smp_cmd_init(&c, SX_SMP_CMD_PING);
    /* not READY yet */
    assert_int_equal(sx_smp_session_server_key(f.s, got),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_dh_secret(f.s, got),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_submit_corr(f.s, corr, NULL, 0, &c, NULL,
                                                0, 0, &id),
                     SIMPLEX_ERR_INVALID_ARG);
    hello_block(f.block, 6, 18, SID, sizeof SID);
    assert_int_equal(sx_smp_session_recv_block(f.s, f.block, 0), 0);
    next_ev(f.s, &ev, SX_SMP_SESSION_EV_HANDSHAKE);
    sx_smp_session_event_dispose(&ev);
    assert_int_equal(sx_smp_session_next_block(f.s, ch_block, 0), 1);
    peer_accept(&f.pr, ch_block, 18, 1, 0);

    /* the keys */
    assert_int_equal(sx_smp_session_server_key(f.s, got), 0);
    assert_memory_equal(got, srv_dh_pub, 32);
    assert_int_equal(sx_smp_block_unpad(ch_block, &content, &n), 0);
    assert_int_equal(sx_smp_client_hello_decode(&ch, content, n), 0);
    assert_int_equal(sx_x25519_dh(want, ch.dh_key.raw, srv_dh_priv), 0);
    assert_int_equal(sx_smp_session_dh_secret(f.s, got), 0);
    assert_memory_equal(got, want, 32);
    assert_int_equal(sx_smp_session_dh_secret(NULL, got),
                     SIMPLEX_ERR_INVALID_ARG);

    /* the caller's corrId, once at a time */
    assert_int_equal(sx_smp_session_submit_corr(f.s, NULL, NULL, 0, &c, NULL,
                                                0, 0, &id),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_submit_corr(f.s, corr, NULL, 0, &c, NULL,
                                                0, 0, &id),
                     0);
    assert_int_equal(sx_smp_session_submit_corr(f.s, corr, NULL, 0, &c, NULL,
                                                0, 0, &id2),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_smp_session_pending(f.s), 1);
    sx_smp_cmd_init(&c, SX_SMP_CMD_SUB);
    assert_int_equal(sx_smp_session_submit_corr(f.s, corr2, E1, 24, &c, &a_x,
                                                0, 0, &id2),
                     0);
    assert_true(id != id2);
    assert_int_equal(sx_smp_session_next_block(f.s, f.block, 0), 1);
    peer_read(&f.pr, f.block);
    assert_int_equal(f.pr.n, 2);
    assert_int_equal(f.pr.t[0].corr_id.n, sizeof corr);
    assert_memory_equal(f.pr.t[0].corr_id.p, corr, sizeof corr);
    assert_int_equal(f.pr.t[1].corr_id.n, sizeof corr2);
    assert_memory_equal(f.pr.t[1].corr_id.p, corr2, sizeof corr2);
    /* the expanded key's signature is the seed's */
    verify_auth(&f.pr, &f.pr.t[1], SX_SMP_AUTH_ED25519, &k_ed);
    sx_wr_init(&w);
    assert_int_equal(sx_smp_trans_signed(&w, &f.pr.prm, &f.pr.t[1]), 0);
    assert_int_equal(sx_ed25519_sign(sig, w.p, w.len, ed_sk), 0);
    sx_wr_free(&w);
    assert_int_equal(f.pr.t[1].auth.n, sizeof sig);
    assert_memory_equal(f.pr.t[1].auth.p, sig, sizeof sig);
    fix_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_v18),
        cmocka_unit_test(test_handshake_v9),
        cmocka_unit_test(test_version_negotiation),
        cmocka_unit_test(test_handshake_failures),
        cmocka_unit_test(test_ping_pong),
        cmocka_unit_test(test_batch_and_auth),
        cmocka_unit_test(test_batch_split),
        cmocka_unit_test(test_response_timeout),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_garbage),
        cmocka_unit_test(test_v6),
        cmocka_unit_test(test_many_requests),
        cmocka_unit_test(test_late_and_collisions),
        cmocka_unit_test(test_corr_and_secret),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
