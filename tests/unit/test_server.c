/*
 * The loopback SMP test server (tests/server/, build/bin/smp-test-server)
 * run as a separate process and driven by a minimal SMP client written
 * here with OpenSSL and the library's SMP codecs.
 *
 * The server binary is $SMP_TEST_SERVER when set, otherwise
 * <directory of this test binary>/../bin/smp-test-server (the test is
 * $(O)/tests/test_server and the server $(O)/bin/smp-test-server).
 */
#define _DEFAULT_SOURCE 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "client/smp_proto.h"
#include "common/text.h"
#include "crypto/crypto.h"
#include "simplex/simplex.h"
#include "server.h"

/* ---- the server process ---- */

typedef struct server {
    tsrv t; /* pid, port, address */
    uint8_t key_hash[32];
} server;

/* The running server, killed by the group teardown when a test fails. */
static pid_t g_running = -1;

static int free_port(void)
{
    int port = tsrv_free_port();
    assert_true(port > 0);
    return port;
}

static void server_start(server *s, int port, const char *dir, const char *log)
{
    char expect_tail[64];
    const char *at;
    sx_wr w;

    if (tsrv_start(&s->t, port, dir, log, NULL) != 0)
        fail_msg("smp-test-server did not start");
    g_running = s->t.pid;
    /* smp://<key hash>@127.0.0.1:PORT */
    snprintf(expect_tail, sizeof expect_tail, "@127.0.0.1:%d", port);
    assert_int_equal(s->t.port, port);
    assert_memory_equal(s->t.addr, "smp://", 6);
    at = strchr(s->t.addr, '@');
    assert_non_null(at);
    assert_string_equal(at, expect_tail);
    sx_wr_init(&w);
    assert_int_equal(sx_b64url_decode(&w, s->t.addr + 6,
                                      (size_t)(at - s->t.addr - 6)), 0);
    assert_int_equal(w.len, 32);
    memcpy(s->key_hash, w.p, 32);
    sx_wr_free(&w);
}

/* Stops it; it must exit with status 0. */
static void server_stop(server *s)
{
    int rc = tsrv_stop(&s->t);
    g_running = -1;
    assert_int_equal(rc, 0);
}

/* ---- a minimal SMP client ---- */

typedef struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    uint16_t version;
    uint8_t session[64];
    size_t session_len;
    uint8_t srv_dh[32];
    uint8_t sess_secret[32];          /* DH of the hello keys */
    int encrypted;
    sx_smp_chain chain;
    /* the last received block and its transmissions */
    uint8_t plain[SX_SMP_BLOCK_SIZE];
    sx_smp_batch batch;
    size_t next;
} client;

typedef struct reply {
    sx_smp_trans t;
    sx_smp_msg m;
} reply;

static void tls_read(client *c, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t k = 0;
        assert_int_equal(SSL_read_ex(c->ssl, buf + got, n - got, &k), 1);
        got += k;
    }
}

static void tls_write(client *c, const uint8_t *buf, size_t n)
{
    size_t w = 0;
    assert_int_equal(SSL_write_ex(c->ssl, buf, n, &w), 1);
    assert_int_equal(w, n);
}

/* A client certificate presented by the next connections (NULL: none). */
static X509 *g_client_cert;
static EVP_PKEY *g_client_key;

static void make_client_cert(long not_before, long not_after)
{
    X509 *x = X509_new();
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    assert_non_null(x);
    assert_non_null(k);
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), not_before);
    X509_gmtime_adj(X509_getm_notAfter(x), not_after);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"client", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, k);
    assert_true(X509_sign(x, k, NULL) > 0);
    g_client_cert = x;
    g_client_key = k;
}

static void free_client_cert(void)
{
    X509_free(g_client_cert);
    EVP_PKEY_free(g_client_key);
    g_client_cert = NULL;
    g_client_key = NULL;
}

static void client_connect_ex(client *c, const server *s, uint16_t version,
                              int alpn, const uint8_t *key_hash, int proxy)
{
    struct sockaddr_in a;
    uint8_t block[SX_SMP_BLOCK_SIZE];
    const uint8_t *content;
    size_t n;
    sx_smp_server_hello sh;
    sx_smp_client_hello ch;
    sx_smp_key dh;
    uint8_t pub[32], priv[32];
    sx_wr w;

    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)s->t.port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof a), 0);
    c->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(c->ctx);
    SSL_CTX_set_min_proto_version(c->ctx, TLS1_3_VERSION);
    assert_int_equal(SSL_CTX_set_ciphersuites(c->ctx,
                                              "TLS_CHACHA20_POLY1305_SHA256"), 1);
    /* alpn: 0 none, 1 smp/1, 2 h2 only */
    if (alpn == 1)
        assert_int_equal(SSL_CTX_set_alpn_protos(
                             c->ctx, (const unsigned char *)"\x05smp/1", 6), 0);
    else if (alpn == 2)
        assert_int_equal(SSL_CTX_set_alpn_protos(
                             c->ctx, (const unsigned char *)"\x02h2", 3), 0);
    if (g_client_cert) {
        assert_int_equal(SSL_CTX_use_certificate(c->ctx, g_client_cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(c->ctx, g_client_key), 1);
    }
    c->ssl = SSL_new(c->ctx);
    SSL_set_fd(c->ssl, c->fd);
    assert_int_equal(SSL_connect(c->ssl), 1);
    assert_string_equal(SSL_get_cipher_name(c->ssl),
                        "TLS_CHACHA20_POLY1305_SHA256");
    c->session_len = SSL_get_finished(c->ssl, c->session, sizeof c->session);
    assert_true(c->session_len > 0);

    /* the server hello */
    tls_read(c, block, sizeof block);
    assert_int_equal(sx_smp_block_unpad(block, &content, &n), 0);
    assert_int_equal(sx_smp_server_hello_decode(&sh, content, n), 0);
    assert_int_equal(sh.vmin, 6);
    assert_int_equal(sh.vmax, alpn ? 18 : 6);
    assert_int_equal(sh.session_id.n, c->session_len);
    assert_memory_equal(sh.session_id.p, c->session, c->session_len);
    if (!alpn) {
        /* v6 only: no certificate chain and no session key */
        assert_false(sh.has_cert);
    } else {
        assert_int_equal(sh.n_certs, 2);
        X509 *leaf = SSL_get0_peer_certificate(c->ssl);
        uint8_t *der = NULL;
        int len = i2d_X509(leaf, &der);
        sx_smp_bytes lb = {der, (size_t)len};
        assert_true(len > 0);
        assert_int_equal(sx_smp_server_hello_verify(&dh, &sh, s->key_hash, lb),
                         0);
        OPENSSL_free(der);
        memcpy(c->srv_dh, dh.raw, 32);
    }

    /* the client hello */
    sx_x25519_keypair(pub, priv);
    memset(&ch, 0, sizeof ch);
    ch.version = version;
    ch.key_hash.p = key_hash ? key_hash : s->key_hash;
    ch.key_hash.n = 32;
    sx_smp_key_set(&ch.dh_key, SX_KEY_X25519, pub);
    ch.proxy_server = proxy;
    sx_wr_init(&w);
    assert_int_equal(sx_smp_client_hello_encode(&w, &ch), 0);
    assert_int_equal(sx_smp_block_pad(block, w.p, w.len), 0);
    sx_wr_free(&w);
    tls_write(c, block, sizeof block);
    c->version = version;
    if (version >= SX_SMP_V_AUTH_CMDS)
        assert_int_equal(sx_x25519_dh(c->sess_secret, c->srv_dh, priv), 0);
    if (version >= SX_SMP_V_ENCRYPTED_BLOCK && !proxy) {
        assert_int_equal(sx_smp_chain_init(&c->chain, 0, c->session,
                                           c->session_len, c->sess_secret), 0);
        c->encrypted = 1;
    }
}

static void client_connect(client *c, const server *s, uint16_t version,
                           int alpn, const uint8_t *key_hash)
{
    client_connect_ex(c, s, version, alpn, key_hash, 0);
}

static void client_close(client *c)
{
    SSL_free(c->ssl);
    SSL_CTX_free(c->ctx);
    close(c->fd);
}

/* Sends one encoded command signed with (alg, priv) when alg != NONE. */
static void send_raw(client *c, const uint8_t corr[24], sx_smp_bytes entity,
                     const uint8_t *cmd, size_t cmd_len, sx_key_alg alg,
                     const uint8_t *priv)
{
    sx_smp_params prm = {c->version, {c->session, c->session_len}};
    sx_smp_bytes corr_id = {corr, 24};
    sx_wr cw, aw, bw, tw, blk;
    sx_smp_auth auth;
    uint8_t block[SX_SMP_BLOCK_SIZE];
    sx_smp_bytes one;

    sx_wr_init(&cw);
    sx_wr_init(&aw);
    sx_wr_init(&bw);
    sx_wr_init(&tw);
    sx_wr_init(&blk);
    sx_wr_raw(&cw, cmd, cmd_len);
    memset(&auth, 0, sizeof auth);
    if (alg != SX_KEY_NONE) {
        assert_int_equal(sx_smp_authorized_encode(&aw, &prm, corr_id, entity,
                                                  cw.p, cw.len), 0);
        assert_int_equal(sx_smp_authorize(&auth, alg, priv, c->srv_dh, corr_id,
                                          aw.p, aw.len), 0);
    }
    assert_int_equal(sx_smp_trans_body_encode(&bw, &prm, corr_id, entity,
                                              cw.p, cw.len), 0);
    assert_int_equal(sx_smp_trans_encode(&tw, c->version,
                                         alg != SX_KEY_NONE ? &auth : NULL,
                                         NULL, bw.p, bw.len), 0);
    one.p = tw.p;
    one.n = tw.len;
    assert_int_equal(sx_smp_batch_encode(&blk, &one, 1), 0);
    if (c->encrypted)
        assert_int_equal(sx_smp_block_encrypt(&c->chain, block, blk.p,
                                              blk.len), 0);
    else
        assert_int_equal(sx_smp_block_pad(block, blk.p, blk.len), 0);
    tls_write(c, block, sizeof block);
    sx_wr_free(&cw);
    sx_wr_free(&aw);
    sx_wr_free(&bw);
    sx_wr_free(&tw);
    sx_wr_free(&blk);
}

/* One block with the given content (padded or encrypted). */
static void send_content(client *c, const uint8_t *content, size_t n)
{
    uint8_t block[SX_SMP_BLOCK_SIZE];
    if (c->encrypted)
        assert_int_equal(sx_smp_block_encrypt(&c->chain, block, content, n), 0);
    else
        assert_int_equal(sx_smp_block_pad(block, content, n), 0);
    tls_write(c, block, sizeof block);
}

static void send_cmd(client *c, const uint8_t corr[24], sx_smp_bytes entity,
                     const sx_smp_cmd *cmd, sx_key_alg alg, const uint8_t *priv)
{
    sx_wr w;
    sx_wr_init(&w);
    assert_int_equal(sx_smp_cmd_encode(&w, c->version, cmd), 0);
    send_raw(c, corr, entity, w.p, w.len, alg, priv);
    sx_wr_free(&w);
}

/* The next transmission from the server (views into c->plain). */
static void recv_reply(client *c, reply *r)
{
    sx_smp_params prm = {c->version, {c->session, c->session_len}};
    if (c->next >= c->batch.n) {
        uint8_t block[SX_SMP_BLOCK_SIZE];
        const uint8_t *content;
        size_t n;
        tls_read(c, block, sizeof block);
        if (c->encrypted) {
            assert_int_equal(sx_smp_block_decrypt(&c->chain, c->plain, block,
                                                  &content, &n), 0);
        } else {
            memcpy(c->plain, block, sizeof block);
            assert_int_equal(sx_smp_block_unpad(c->plain, &content, &n), 0);
        }
        assert_int_equal(sx_smp_batch_decode(&c->batch, content, n), 0);
        assert_true(c->batch.n > 0);
        c->next = 0;
    }
    const sx_smp_bytes *t = &c->batch.t[c->next++];
    assert_int_equal(sx_smp_trans_decode(&r->t, &prm, t->p, t->n), 0);
    assert_int_equal(sx_smp_msg_decode(&r->m, c->version, r->t.command.p,
                                       r->t.command.n), 0);
}

static void expect(client *c, const uint8_t corr[24], sx_smp_msg_tag tag,
                   reply *r)
{
    recv_reply(c, r);
    if (r->m.tag != tag)
        print_error("got %s (err %d) instead of %s\n",
                    sx_smp_msg_name(r->m.tag), (int)r->m.err.type,
                    sx_smp_msg_name(tag));
    assert_int_equal(r->m.tag, tag);
    if (corr) {
        assert_int_equal(r->t.corr_id.n, 24);
        assert_memory_equal(r->t.corr_id.p, corr, 24);
    } else {
        assert_int_equal(r->t.corr_id.n, 0);
    }
}

static void expect_err(client *c, const uint8_t corr[24], sx_smp_err_type e)
{
    reply r;
    expect(c, corr, SX_SMP_MSG_ERR, &r);
    assert_int_equal(r.m.err.type, e);
}

/* ---- queue helpers ---- */

typedef struct queue {
    uint8_t rcv_pk[32], rcv_sk[32];   /* Ed25519 */
    uint8_t dh_pk[32], dh_sk[32];     /* X25519 recipient DH */
    uint8_t snd_pk[32], snd_sk[32];   /* Ed25519 sender */
    uint8_t rid[24], sid[24];
    uint8_t secret[32];               /* server-recipient DH secret */
} queue;

static uint8_t *new_corr(uint8_t corr[24])
{
    sx_random(corr, 24);
    return corr;
}

static sx_smp_bytes bs(const uint8_t *p, size_t n)
{
    sx_smp_bytes b = {p, n};
    return b;
}

static void create_queue(client *c, queue *q, char sub_mode)
{
    sx_smp_cmd cmd;
    uint8_t corr[24];
    reply r;
    sx_ed25519_keypair(q->rcv_pk, q->rcv_sk);
    sx_x25519_keypair(q->dh_pk, q->dh_sk);
    sx_ed25519_keypair(q->snd_pk, q->snd_sk);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_NEW);
    sx_smp_key_set(&cmd.new_q.rcv_auth_key, SX_KEY_ED25519, q->rcv_pk);
    sx_smp_key_set(&cmd.new_q.rcv_dh_key, SX_KEY_X25519, q->dh_pk);
    cmd.new_q.sub_mode = sub_mode;
    if (c->version >= SX_SMP_V_SND_AUTH_KEY)
        cmd.new_q.qr_mode = SX_SMP_QM_MESSAGING;
    send_cmd(c, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_ED25519, q->rcv_sk);
    expect(c, corr, SX_SMP_MSG_IDS, &r);
    assert_int_equal(r.m.ids.rcv_id.n, 24);
    assert_int_equal(r.m.ids.snd_id.n, 24);
    memcpy(q->rid, r.m.ids.rcv_id.p, 24);
    memcpy(q->sid, r.m.ids.snd_id.p, 24);
    assert_int_equal(r.m.ids.srv_dh_key.alg, SX_KEY_X25519);
    assert_int_equal(sx_x25519_dh(q->secret, r.m.ids.srv_dh_key.raw, q->dh_sk),
                     0);
}

/* A recipient command without parameters. */
static void rcv_cmd(client *c, const queue *q, sx_smp_cmd_tag tag,
                    uint8_t corr[24])
{
    sx_smp_cmd cmd;
    sx_smp_cmd_init(&cmd, tag);
    send_cmd(c, new_corr(corr), bs(q->rid, 24), &cmd, SX_KEY_ED25519,
             q->rcv_sk);
}

static void send_msg(client *c, const queue *q, const char *text,
                     const uint8_t *sk, sx_smp_msg_tag want)
{
    sx_smp_cmd cmd;
    uint8_t corr[24];
    reply r;
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.body = bs((const uint8_t *)text, strlen(text));
    send_cmd(c, new_corr(corr), bs(q->sid, 24), &cmd,
             sk ? SX_KEY_ED25519 : SX_KEY_NONE, sk);
    expect(c, corr, want, &r);
}

/* Checks that r is a MSG of q with the text; copies the msg id. */
static void check_msg(const reply *r, const queue *q, const char *text,
                      uint8_t msg_id[24])
{
    uint8_t *out;
    const uint8_t *plain;
    size_t plain_len;
    sx_smp_rcv_body b;
    assert_int_equal(r->m.tag, SX_SMP_MSG_MSG);
    assert_int_equal(r->t.entity_id.n, 24);
    assert_memory_equal(r->t.entity_id.p, q->rid, 24);
    assert_int_equal(r->m.id.n, 24);
    out = malloc(r->m.body.n);
    assert_non_null(out);
    assert_int_equal(sx_smp_msg_body_decrypt(out, &plain, &plain_len, q->secret,
                                             r->m.id, r->m.body.p,
                                             r->m.body.n), 0);
    assert_int_equal(sx_smp_rcv_body_decode(&b, plain, plain_len), 0);
    assert_false(b.quota);
    assert_int_equal(b.body.n, strlen(text));
    assert_memory_equal(b.body.p, text, b.body.n);
    memcpy(msg_id, r->m.id.p, 24);
    free(out);
}

static void ack(client *c, const queue *q, const uint8_t msg_id[24],
                sx_smp_msg_tag want)
{
    sx_smp_cmd cmd;
    uint8_t corr[24];
    reply r;
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_ACK);
    cmd.id = bs(msg_id, 24);
    send_cmd(c, new_corr(corr), bs(q->rid, 24), &cmd, SX_KEY_ED25519,
             q->rcv_sk);
    expect(c, corr, want, &r);
}

/* ---- tests ---- */

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    return simplex_global_init(NULL) == SIMPLEX_OK ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    simplex_global_cleanup();
    return 0;
}

static int kill_leftover(void **state)
{
    (void)state;
    if (g_running > 0) {
        kill(g_running, SIGKILL);
        waitpid(g_running, NULL, 0);
        g_running = -1;
    }
    return 0;
}

static void test_messaging_v18(void **state)
{
    server s;
    client a, b, c3;
    queue q;
    uint8_t corr[24], msg_id[24], bad_sk[32], bad_pk[32];
    sx_smp_cmd cmd;
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    client_connect(&b, &s, 18, 1, NULL);

    create_queue(&a, &q, 'S');
    /* KEY secures the queue with the sender's key */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_KEY);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, q.snd_pk);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, q.rcv_sk);
    expect(&a, corr, SX_SMP_MSG_OK, &r);

    /* unsigned SEND to a secured queue, and a bad signature: AUTH */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.body = bs((const uint8_t *)"x", 1);
    send_cmd(&b, new_corr(corr), bs(q.sid, 24), &cmd, SX_KEY_NONE, NULL);
    expect_err(&b, corr, SX_SMP_ERR_AUTH);
    sx_ed25519_keypair(bad_pk, bad_sk);
    send_cmd(&b, new_corr(corr), bs(q.sid, 24), &cmd, SX_KEY_ED25519, bad_sk);
    expect_err(&b, corr, SX_SMP_ERR_AUTH);
    /* unknown queue: AUTH */
    send_cmd(&b, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, q.snd_sk);
    expect_err(&b, corr, SX_SMP_ERR_AUTH);
    /* SUB of an unknown queue id: AUTH */
    {
        queue other = q;
        sx_random(other.rid, sizeof other.rid);
        rcv_cmd(&a, &other, SX_SMP_CMD_SUB, corr);
        expect_err(&a, corr, SX_SMP_ERR_AUTH);
    }

    /* SEND from the second connection; MSG to the subscriber (NEW 'S') */
    send_msg(&b, &q, "hello", q.snd_sk, SX_SMP_MSG_OK);
    recv_reply(&a, &r);
    check_msg(&r, &q, "hello", msg_id);
    assert_int_equal(r.t.corr_id.n, 0);

    /* a second message waits for the ACK, which returns it */
    send_msg(&b, &q, "second", q.snd_sk, SX_SMP_MSG_OK);
    /* wrong msg id: NO_MSG */
    {
        uint8_t wrong[24];
        sx_random(wrong, sizeof wrong);
        ack(&a, &q, wrong, SX_SMP_MSG_ERR);
    }
    /* the ACK is answered with the next message instead of OK */
    ack(&a, &q, msg_id, SX_SMP_MSG_MSG);
    /* a repeated SUB redelivers the unacknowledged message */
    rcv_cmd(&a, &q, SX_SMP_CMD_SUB, corr);
    expect(&a, corr, SX_SMP_MSG_SOK, &r);
    assert_false(r.m.has_id);
    recv_reply(&a, &r);
    check_msg(&r, &q, "second", msg_id);
    ack(&a, &q, msg_id, SX_SMP_MSG_OK);

    /* GET on the subscribed connection is prohibited; on another: OK */
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    expect_err(&a, corr, SX_SMP_ERR_CMD);
    client_connect(&c3, &s, 18, 1, NULL);
    rcv_cmd(&c3, &q, SX_SMP_CMD_GET, corr);
    expect(&c3, corr, SX_SMP_MSG_OK, &r);
    client_close(&c3);

    /* a second subscriber: END to the first */
    client_connect(&c3, &s, 18, 1, NULL);
    rcv_cmd(&c3, &q, SX_SMP_CMD_SUB, corr);
    expect(&c3, corr, SX_SMP_MSG_SOK, &r);
    expect(&a, NULL, SX_SMP_MSG_END, &r);
    assert_memory_equal(r.t.entity_id.p, q.rid, 24);
    /* now messages go to the new subscriber */
    send_msg(&b, &q, "third", q.snd_sk, SX_SMP_MSG_OK);
    recv_reply(&c3, &r);
    check_msg(&r, &q, "third", msg_id);

    /* PING */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_PING);
    send_cmd(&b, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_NONE, NULL);
    expect(&b, corr, SX_SMP_MSG_PONG, &r);

    /* DEL by the first connection: DELD to the subscriber */
    rcv_cmd(&a, &q, SX_SMP_CMD_DEL, corr);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    expect(&c3, NULL, SX_SMP_MSG_DELD, &r);
    send_msg(&b, &q, "gone", q.snd_sk, SX_SMP_MSG_ERR);

    client_close(&c3);
    client_close(&a);
    client_close(&b);
    server_stop(&s);
}

static void test_v9_unsecured(void **state)
{
    server s;
    client a;
    queue q;
    uint8_t corr[24], msg_id[24];
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 9, 1, NULL);
    assert_false(a.encrypted);
    create_queue(&a, &q, 'C');
    /* before KEY/SKEY a SEND needs no authorization, and must have none */
    send_msg(&a, &q, "plain", q.snd_sk, SX_SMP_MSG_ERR);
    send_msg(&a, &q, "plain", NULL, SX_SMP_MSG_OK);
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    recv_reply(&a, &r);
    assert_memory_equal(r.t.corr_id.p, corr, 24);
    check_msg(&r, &q, "plain", msg_id);
    /* SUB after GET on the same connection is prohibited */
    rcv_cmd(&a, &q, SX_SMP_CMD_SUB, corr);
    expect_err(&a, corr, SX_SMP_ERR_CMD);
    ack(&a, &q, msg_id, SX_SMP_MSG_OK);
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    /* ACK with nothing delivered */
    ack(&a, &q, msg_id, SX_SMP_MSG_ERR);
    client_close(&a);
    server_stop(&s);
}

static void test_handshake_errors(void **state)
{
    server s;
    client a;
    uint8_t wrong[32], b;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    /* without ALPN only v6 is offered */
    client_connect(&a, &s, 6, 0, NULL);
    {
        uint8_t corr[24];
        sx_smp_cmd cmd;
        reply r;
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_PING);
        send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_NONE, NULL);
        expect(&a, corr, SX_SMP_MSG_PONG, &r);
        /* v6 transmissions carry the session id: another one is SESSION */
        a.session[0] ^= 1;
        send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_NONE, NULL);
        a.session[0] ^= 1;
        expect_err(&a, corr, SX_SMP_ERR_SESSION);
    }
    client_close(&a);
    /* any negotiated ALPN gives the full version range */
    client_connect(&a, &s, 18, 2, NULL);
    {
        const unsigned char *sel = NULL;
        unsigned int sel_len = 0;
        SSL_get0_alpn_selected(a.ssl, &sel, &sel_len);
        assert_int_equal(sel_len, 2);
        assert_memory_equal(sel, "h2", 2);
    }
    client_close(&a);
    /* a valid (self-signed) client certificate is accepted */
    make_client_cert(-60, 3600);
    client_connect(&a, &s, 18, 1, NULL);
    client_close(&a);
    free_client_cert();
    /* an expired one is refused: no server hello */
    make_client_cert(-7200, -3600);
    {
        struct sockaddr_in sa;
        SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
        SSL *ssl;
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sa, 0, sizeof sa);
        sa.sin_family = AF_INET;
        sa.sin_port = htons((uint16_t)s.t.port);
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
        SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x05smp/1", 6);
        SSL_CTX_use_certificate(ctx, g_client_cert);
        SSL_CTX_use_PrivateKey(ctx, g_client_key);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        if (SSL_connect(ssl) == 1) {
            uint8_t blk[16];
            assert_true(SSL_read(ssl, blk, sizeof blk) <= 0);
        }
        SSL_free(ssl);
        SSL_CTX_free(ctx);
        close(fd);
    }
    free_client_cert();
    ERR_clear_error();
    /* a wrong key hash: the server closes the connection (IDENTITY) */
    memset(wrong, 7, sizeof wrong);
    client_connect(&a, &s, 18, 1, wrong);
    assert_int_not_equal(SSL_read(a.ssl, &b, 1), 1);
    client_close(&a);
    server_stop(&s);
}

static void test_restart(void **state)
{
    server s;
    client a;
    queue q;
    char dir[] = "/tmp/smp-test-server-XXXXXX";
    char log[PATH_MAX], addr[512];
    uint8_t corr[24], msg_id[24];
    reply r;
    int port = free_port();
    (void)state;

    assert_non_null(mkdtemp(dir));
    snprintf(log, sizeof log, "%s/store.log", dir);
    server_start(&s, port, dir, log);
    snprintf(addr, sizeof addr, "%s", s.t.addr);
    client_connect(&a, &s, 18, 1, NULL);
    create_queue(&a, &q, 'C');
    send_msg(&a, &q, "kept", NULL, SX_SMP_MSG_OK);
    send_msg(&a, &q, "acked", NULL, SX_SMP_MSG_OK);
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    recv_reply(&a, &r);
    check_msg(&r, &q, "kept", msg_id);
    ack(&a, &q, msg_id, SX_SMP_MSG_OK);
    client_close(&a);
    server_stop(&s);

    server_start(&s, port, dir, log);
    assert_string_equal(s.t.addr, addr);
    client_connect(&a, &s, 18, 1, NULL);
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    recv_reply(&a, &r);
    check_msg(&r, &q, "acked", msg_id);
    ack(&a, &q, msg_id, SX_SMP_MSG_OK);
    rcv_cmd(&a, &q, SX_SMP_CMD_DEL, corr);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    client_close(&a);
    server_stop(&s);

    /* deleted stays deleted */
    server_start(&s, port, dir, log);
    client_connect(&a, &s, 18, 1, NULL);
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    expect_err(&a, corr, SX_SMP_ERR_AUTH);
    client_close(&a);
    server_stop(&s);

    {
        const char *files[] = {"store.log", "ca.crt", "ca.key", "server.crt",
                               "server.key"};
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            char p[PATH_MAX];
            snprintf(p, sizeof p, "%s/%s", dir, files[i]);
            unlink(p);
        }
        rmdir(dir);
    }
}

static void test_quota(void **state)
{
    server s;
    client a;
    queue q;
    uint8_t corr[24], msg_id[24];
    reply r;
    char text[32];
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    create_queue(&a, &q, 'C');
    /* msgQueueQuota = 128; the 129th SEND puts the quota marker */
    for (int i = 0; i < 128; i++) {
        snprintf(text, sizeof text, "m%d", i);
        send_msg(&a, &q, text, NULL, SX_SMP_MSG_OK);
    }
    send_msg(&a, &q, "over", NULL, SX_SMP_MSG_ERR);
    send_msg(&a, &q, "over", NULL, SX_SMP_MSG_ERR);
    for (int i = 0; i < 128; i++) {
        snprintf(text, sizeof text, "m%d", i);
        rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
        recv_reply(&a, &r);
        check_msg(&r, &q, text, msg_id);
        ack(&a, &q, msg_id, SX_SMP_MSG_OK);
        if (i == 100) /* still over quota until emptied */
            send_msg(&a, &q, "over", NULL, SX_SMP_MSG_ERR);
    }
    /* the quota marker is delivered as a MSG with the quota body */
    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    recv_reply(&a, &r);
    assert_int_equal(r.m.tag, SX_SMP_MSG_MSG);
    {
        uint8_t *out = malloc(r.m.body.n);
        const uint8_t *plain;
        size_t plain_len;
        sx_smp_rcv_body b;
        assert_non_null(out);
        assert_int_equal(sx_smp_msg_body_decrypt(out, &plain, &plain_len,
                                                 q.secret, r.m.id, r.m.body.p,
                                                 r.m.body.n), 0);
        assert_int_equal(sx_smp_rcv_body_decode(&b, plain, plain_len), 0);
        assert_true(b.quota);
        memcpy(msg_id, r.m.id.p, 24);
        free(out);
    }
    ack(&a, &q, msg_id, SX_SMP_MSG_OK);
    send_msg(&a, &q, "again", NULL, SX_SMP_MSG_OK);
    client_close(&a);
    server_stop(&s);
}

static void test_errors(void **state)
{
    server s;
    client a;
    queue q;
    uint8_t corr[24], other_pk[32], other_sk[32];
    sx_smp_cmd cmd;
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    create_queue(&a, &q, 'C');

    /* parse errors: unknown tag, bad syntax */
    send_raw(&a, new_corr(corr), bs(q.rid, 24), (const uint8_t *)"FOO", 3,
             SX_KEY_ED25519, q.rcv_sk);
    recv_reply(&a, &r);
    assert_int_equal(r.m.tag, SX_SMP_MSG_ERR);
    assert_int_equal(r.m.err.type, SX_SMP_ERR_CMD);
    assert_int_equal(r.m.err.cmd, SX_SMP_CMDERR_UNKNOWN);
    send_raw(&a, new_corr(corr), bs(q.rid, 24), (const uint8_t *)"ACK", 3,
             SX_KEY_ED25519, q.rcv_sk);
    recv_reply(&a, &r);
    assert_int_equal(r.m.err.type, SX_SMP_ERR_CMD);
    assert_int_equal(r.m.err.cmd, SX_SMP_CMDERR_SYNTAX);
    /* credentials: SUB without authorization, SEND without entity */
    rcv_cmd(&a, &q, SX_SMP_CMD_SUB, corr);
    expect(&a, corr, SX_SMP_MSG_SOK, &r);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SUB);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_NONE, NULL);
    recv_reply(&a, &r);
    assert_int_equal(r.m.err.type, SX_SMP_ERR_CMD);
    assert_int_equal(r.m.err.cmd, SX_SMP_CMDERR_NO_AUTH);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.body = bs((const uint8_t *)"x", 1);
    send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_NONE, NULL);
    recv_reply(&a, &r);
    assert_int_equal(r.m.err.type, SX_SMP_ERR_CMD);
    assert_int_equal(r.m.err.cmd, SX_SMP_CMDERR_NO_ENTITY);
    /* a recipient command signed with another key: AUTH */
    sx_ed25519_keypair(other_pk, other_sk);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_QUE);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, other_sk);
    expect_err(&a, corr, SX_SMP_ERR_AUTH);
    /* QUE: the queue info JSON */
    rcv_cmd(&a, &q, SX_SMP_CMD_QUE, corr);
    expect(&a, corr, SX_SMP_MSG_INFO, &r);
    {
        const char *want = "{\"qiSnd\":false,\"qiNtf\":false,\"qiSub\":"
                           "{\"qSubThread\":\"noSub\"},\"qiSize\":0}";
        assert_int_equal(r.m.body.n, strlen(want));
        assert_memory_equal(r.m.body.p, want, strlen(want));
    }
    /* KEY, then KEY with another key: AUTH; the same key: OK */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_KEY);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, q.snd_pk);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, q.rcv_sk);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, q.rcv_sk);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, other_pk);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, q.rcv_sk);
    expect_err(&a, corr, SX_SMP_ERR_AUTH);
    /* SKEY on a contact queue: AUTH */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SKEY);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, q.snd_pk);
    send_cmd(&a, new_corr(corr), bs(q.sid, 24), &cmd, SX_KEY_ED25519, q.snd_sk);
    /* (create_queue made a messaging queue: SKEY with the KEY'd key) */
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    /* too large a message */
    {
        static uint8_t big[16049];
        memset(big, 'a', sizeof big);
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
        cmd.body = bs(big, sizeof big);
        send_cmd(&a, new_corr(corr), bs(q.sid, 24), &cmd, SX_KEY_ED25519,
                 q.snd_sk);
        expect_err(&a, corr, SX_SMP_ERR_LARGE_MSG);
    }
    /* a batch that does not parse: BLOCK without corrId */
    send_content(&a, (const uint8_t *)"\x02\x00\x01", 3);
    expect_err(&a, NULL, SX_SMP_ERR_BLOCK);
    /* an authorization of a bad length: BLOCK with the corrId */
    {
        sx_wr t;
        sx_smp_bytes one;
        sx_wr_init(&t);
        sx_wr_short(&t, "short", 5);
        sx_wr_u8(&t, '0');          /* no service signature */
        sx_wr_short(&t, new_corr(corr), 24);
        sx_wr_short(&t, q.rid, 24);
        sx_wr_str(&t, "SUB");
        one = bs(t.p, t.len);
        sx_wr b;
        sx_wr_init(&b);
        assert_int_equal(sx_smp_batch_encode(&b, &one, 1), 0);
        send_content(&a, b.p, b.len);
        expect_err(&a, corr, SX_SMP_ERR_BLOCK);
        sx_wr_free(&b);
        sx_wr_free(&t);
    }
    /* OFF: SEND fails with AUTH */
    rcv_cmd(&a, &q, SX_SMP_CMD_OFF, corr);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    send_msg(&a, &q, "off", q.snd_sk, SX_SMP_MSG_ERR);
    client_close(&a);
    server_stop(&s);
}

/* A queue whose recipient key is X25519: the deniable authenticator. */
static void test_x25519_auth(void **state)
{
    server s;
    client a;
    uint8_t corr[24], rk_pk[32], rk_sk[32], dh_pk[32], dh_sk[32], rid[24];
    sx_smp_cmd cmd;
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    sx_x25519_keypair(rk_pk, rk_sk);
    sx_x25519_keypair(dh_pk, dh_sk);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_NEW);
    sx_smp_key_set(&cmd.new_q.rcv_auth_key, SX_KEY_X25519, rk_pk);
    sx_smp_key_set(&cmd.new_q.rcv_dh_key, SX_KEY_X25519, dh_pk);
    cmd.new_q.sub_mode = 'C';
    cmd.new_q.qr_mode = SX_SMP_QM_MESSAGING;
    send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_X25519, rk_sk);
    expect(&a, corr, SX_SMP_MSG_IDS, &r);
    memcpy(rid, r.m.ids.rcv_id.p, 24);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_GET);
    send_cmd(&a, new_corr(corr), bs(rid, 24), &cmd, SX_KEY_X25519, rk_sk);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    /* a signature where the key is X25519: AUTH */
    {
        uint8_t pk[32], sk[32];
        sx_ed25519_keypair(pk, sk);
        send_cmd(&a, new_corr(corr), bs(rid, 24), &cmd, SX_KEY_ED25519, sk);
        expect_err(&a, corr, SX_SMP_ERR_AUTH);
    }
    client_close(&a);
    server_stop(&s);
}

static void test_notifications(void **state)
{
    server s;
    client a, n;
    queue q;
    uint8_t corr[24], nk_pk[32], nk_sk[32], ndh_pk[32], ndh_sk[32], nid[24];
    uint8_t nsecret[32];
    sx_smp_cmd cmd;
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    client_connect(&n, &s, 18, 1, NULL);
    create_queue(&a, &q, 'C');
    sx_ed25519_keypair(nk_pk, nk_sk);
    sx_x25519_keypair(ndh_pk, ndh_sk);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_NKEY);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, nk_pk);
    sx_smp_key_set(&cmd.dh_key, SX_KEY_X25519, ndh_pk);
    send_cmd(&a, new_corr(corr), bs(q.rid, 24), &cmd, SX_KEY_ED25519, q.rcv_sk);
    expect(&a, corr, SX_SMP_MSG_NID, &r);
    assert_int_equal(r.m.id.n, 24);
    memcpy(nid, r.m.id.p, 24);
    assert_int_equal(sx_x25519_dh(nsecret, r.m.dh_key.raw, ndh_sk), 0);

    sx_smp_cmd_init(&cmd, SX_SMP_CMD_NSUB);
    send_cmd(&n, new_corr(corr), bs(nid, 24), &cmd, SX_KEY_ED25519, nk_sk);
    expect(&n, corr, SX_SMP_MSG_SOK, &r);
    /* SEND with the notification flag: NMSG to the notifier subscriber */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.notification = 1;
    cmd.body = bs((const uint8_t *)"ntf", 3);
    send_cmd(&a, new_corr(corr), bs(q.sid, 24), &cmd, SX_KEY_NONE, NULL);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    expect(&n, NULL, SX_SMP_MSG_NMSG, &r);
    assert_memory_equal(r.t.entity_id.p, nid, 24);
    {
        uint8_t out[256];
        const uint8_t *plain;
        size_t plain_len;
        assert_true(r.m.body.n <= sizeof out);
        assert_int_equal(sx_smp_cb_decrypt(out, &plain, &plain_len, nsecret,
                                           r.m.nonce, r.m.body.p, r.m.body.n),
                         0);
        assert_int_equal(plain[0], 24); /* msgId as a short string */
    }
    /* NDEL: the notifier subscriber gets DELD, NSUB is then AUTH */
    rcv_cmd(&a, &q, SX_SMP_CMD_NDEL, corr);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    expect(&n, NULL, SX_SMP_MSG_DELD, &r);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_NSUB);
    send_cmd(&n, new_corr(corr), bs(nid, 24), &cmd, SX_KEY_ED25519, nk_sk);
    expect_err(&n, corr, SX_SMP_ERR_AUTH);

    /* notifier credentials in NEW (v17+) */
    {
        uint8_t rk_pk[32], rk_sk[32], dh_pk[32], dh_sk[32];
        sx_ed25519_keypair(rk_pk, rk_sk);
        sx_x25519_keypair(dh_pk, dh_sk);
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_NEW);
        sx_smp_key_set(&cmd.new_q.rcv_auth_key, SX_KEY_ED25519, rk_pk);
        sx_smp_key_set(&cmd.new_q.rcv_dh_key, SX_KEY_X25519, dh_pk);
        cmd.new_q.sub_mode = 'C';
        cmd.new_q.qr_mode = SX_SMP_QM_MESSAGING;
        cmd.new_q.has_ntf = 1;
        sx_smp_key_set(&cmd.new_q.ntf_auth_key, SX_KEY_ED25519, nk_pk);
        sx_smp_key_set(&cmd.new_q.ntf_dh_key, SX_KEY_X25519, ndh_pk);
        send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_ED25519, rk_sk);
        expect(&a, corr, SX_SMP_MSG_IDS, &r);
        assert_true(r.m.ids.has_ntf);
        assert_int_equal(r.m.ids.ntf_id.n, 24);
        memcpy(nid, r.m.ids.ntf_id.p, 24);
        {
            /* a notification stored before NSUB follows its SOK */
            uint8_t sid2[24];
            memcpy(sid2, r.m.ids.snd_id.p, 24);
            sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
            cmd.notification = 1;
            cmd.body = bs((const uint8_t *)"stored", 6);
            send_cmd(&a, new_corr(corr), bs(sid2, 24), &cmd, SX_KEY_NONE, NULL);
            expect(&a, corr, SX_SMP_MSG_OK, &r);
        }
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_NSUB);
        send_cmd(&n, new_corr(corr), bs(nid, 24), &cmd, SX_KEY_ED25519, nk_sk);
        expect(&n, corr, SX_SMP_MSG_SOK, &r);
        expect(&n, NULL, SX_SMP_MSG_NMSG, &r);
        assert_memory_equal(r.t.entity_id.p, nid, 24);
        /* NSUB from another connection: END to the first */
        {
            client n2;
            client_connect(&n2, &s, 18, 1, NULL);
            send_cmd(&n2, new_corr(corr), bs(nid, 24), &cmd, SX_KEY_ED25519,
                     nk_sk);
            expect(&n2, corr, SX_SMP_MSG_SOK, &r);
            expect(&n, NULL, SX_SMP_MSG_END, &r);
            client_close(&n2);
        }
    }
    client_close(&n);
    client_close(&a);
    server_stop(&s);
}

static void test_links(void **state)
{
    server s;
    client a;
    uint8_t corr[24], rk_pk[32], rk_sk[32], dh_pk[32], dh_sk[32];
    uint8_t sk_pk[32], sk_sk[32], sid[48], lid[24], rid[24];
    unsigned int hl;
    sx_smp_cmd cmd;
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    sx_ed25519_keypair(rk_pk, rk_sk);
    sx_x25519_keypair(dh_pk, dh_sk);
    sx_ed25519_keypair(sk_pk, sk_sk);

    /* a messaging queue with link data: the sender id is the client's */
    new_corr(corr);
    assert_int_equal(EVP_Digest(corr, 24, sid, &hl, EVP_sha3_384(), NULL), 1);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_NEW);
    sx_smp_key_set(&cmd.new_q.rcv_auth_key, SX_KEY_ED25519, rk_pk);
    sx_smp_key_set(&cmd.new_q.rcv_dh_key, SX_KEY_X25519, dh_pk);
    cmd.new_q.sub_mode = 'C';
    cmd.new_q.qr_mode = SX_SMP_QM_MESSAGING;
    cmd.new_q.qr_has_data = 1;
    cmd.new_q.sender_id = bs(sid, 24);
    cmd.new_q.link_data.fixed_data = bs((const uint8_t *)"fixed", 5);
    cmd.new_q.link_data.user_data = bs((const uint8_t *)"user", 4);
    send_cmd(&a, corr, bs(NULL, 0), &cmd, SX_KEY_ED25519, rk_sk);
    expect(&a, corr, SX_SMP_MSG_IDS, &r);
    assert_memory_equal(r.m.ids.snd_id.p, sid, 24);
    assert_true(r.m.ids.has_link_id);
    assert_int_equal(r.m.ids.link_id.n, 24);
    memcpy(lid, r.m.ids.link_id.p, 24);
    memcpy(rid, r.m.ids.rcv_id.p, 24);
    /* a sender id that is not the hash of the corrId: PROHIBITED */
    send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_ED25519, rk_sk);
    recv_reply(&a, &r);
    assert_int_equal(r.m.err.type, SX_SMP_ERR_CMD);
    assert_int_equal(r.m.err.cmd, SX_SMP_CMDERR_PROHIBITED);
    /* LGET on a messaging queue: AUTH; LKEY secures and returns LNK */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_LGET);
    send_cmd(&a, new_corr(corr), bs(lid, 24), &cmd, SX_KEY_NONE, NULL);
    expect_err(&a, corr, SX_SMP_ERR_AUTH);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_LKEY);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, sk_pk);
    send_cmd(&a, new_corr(corr), bs(lid, 24), &cmd, SX_KEY_ED25519, sk_sk);
    expect(&a, corr, SX_SMP_MSG_LNK, &r);
    assert_memory_equal(r.m.id.p, sid, 24);
    assert_int_equal(r.m.link_data.fixed_data.n, 5);
    assert_memory_equal(r.m.link_data.user_data.p, "user", 4);
    /* the first SEND to the secured queue removes the link data */
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.body = bs((const uint8_t *)"hi", 2);
    send_cmd(&a, new_corr(corr), bs(sid, 24), &cmd, SX_KEY_ED25519, sk_sk);
    expect(&a, corr, SX_SMP_MSG_OK, &r);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_LKEY);
    sx_smp_key_set(&cmd.key, SX_KEY_ED25519, sk_pk);
    send_cmd(&a, new_corr(corr), bs(lid, 24), &cmd, SX_KEY_ED25519, sk_sk);
    expect_err(&a, corr, SX_SMP_ERR_AUTH);

    /* a contact queue: LSET then LGET without authorization */
    {
        queue q;
        uint8_t clid[24];
        create_queue(&a, &q, 'C');
        (void)q;
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_NEW);
        sx_smp_key_set(&cmd.new_q.rcv_auth_key, SX_KEY_ED25519, rk_pk);
        sx_smp_key_set(&cmd.new_q.rcv_dh_key, SX_KEY_X25519, dh_pk);
        cmd.new_q.sub_mode = 'C';
        cmd.new_q.qr_mode = SX_SMP_QM_CONTACT;
        send_cmd(&a, new_corr(corr), bs(NULL, 0), &cmd, SX_KEY_ED25519, rk_sk);
        expect(&a, corr, SX_SMP_MSG_IDS, &r);
        memcpy(rid, r.m.ids.rcv_id.p, 24);
        memcpy(sid, r.m.ids.snd_id.p, 24);
        sx_random(clid, sizeof clid);
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_LSET);
        cmd.id = bs(clid, 24);
        cmd.link_data.fixed_data = bs((const uint8_t *)"F", 1);
        cmd.link_data.user_data = bs((const uint8_t *)"U", 1);
        send_cmd(&a, new_corr(corr), bs(rid, 24), &cmd, SX_KEY_ED25519, rk_sk);
        expect(&a, corr, SX_SMP_MSG_OK, &r);
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_LGET);
        send_cmd(&a, new_corr(corr), bs(clid, 24), &cmd, SX_KEY_NONE, NULL);
        expect(&a, corr, SX_SMP_MSG_LNK, &r);
        assert_memory_equal(r.m.id.p, sid, 24);
        /* RKEY replaces the recipient keys of a contact queue */
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_RKEY);
        cmd.n_keys = 1;
        sx_smp_key_set(&cmd.keys[0], SX_KEY_ED25519, sk_pk);
        send_cmd(&a, new_corr(corr), bs(rid, 24), &cmd, SX_KEY_ED25519, rk_sk);
        expect(&a, corr, SX_SMP_MSG_OK, &r);
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_LDEL);
        send_cmd(&a, new_corr(corr), bs(rid, 24), &cmd, SX_KEY_ED25519, rk_sk);
        expect_err(&a, corr, SX_SMP_ERR_AUTH);
        send_cmd(&a, new_corr(corr), bs(rid, 24), &cmd, SX_KEY_ED25519, sk_sk);
        expect(&a, corr, SX_SMP_MSG_OK, &r);
        sx_smp_cmd_init(&cmd, SX_SMP_CMD_LGET);
        send_cmd(&a, new_corr(corr), bs(clid, 24), &cmd, SX_KEY_NONE, NULL);
        expect_err(&a, corr, SX_SMP_ERR_AUTH);
    }
    client_close(&a);
    server_stop(&s);
}

/* The relay side of proxied sending: RFWD from a proxy connection. */
static void forward(client *p, const uint8_t *inner_cmd, size_t inner_len,
                    sx_smp_bytes entity, sx_smp_msg_tag want,
                    sx_smp_err_type want_err)
{
    uint8_t eph_pk[32], eph_sk[32], csecret[32], fcorr[24], rcorr[24];
    uint8_t cnonce[24], pnonce[24], rn[24];
    sx_smp_params prm = {p->version, {p->session, p->session_len}};
    sx_wr tb, tw, bw, fw;
    sx_smp_bytes one;
    sx_smp_fwd_trans ft;
    sx_smp_fwd_resp fr;
    sx_smp_cmd cmd;
    uint8_t *enc, *s1, *plain;
    const uint8_t *bp;
    size_t bn;
    sx_smp_batch batch;
    reply r, inner;

    sx_x25519_keypair(eph_pk, eph_sk);
    assert_int_equal(sx_x25519_dh(csecret, p->srv_dh, eph_sk), 0);
    new_corr(fcorr);
    sx_wr_init(&tb);
    sx_wr_init(&tw);
    sx_wr_init(&bw);
    sx_wr_init(&fw);
    /* the client's transmission (unsigned: an unsecured queue) */
    assert_int_equal(sx_smp_trans_body_encode(&tb, &prm, bs(fcorr, 24), entity,
                                              inner_cmd, inner_len), 0);
    assert_int_equal(sx_smp_trans_encode(&tw, p->version, NULL, NULL, tb.p,
                                         tb.len), 0);
    one = bs(tw.p, tw.len);
    assert_int_equal(sx_smp_batch_encode(&bw, &one, 1), 0);
    enc = malloc(SX_SMP_PROXIED_T_PADDED + 16);
    assert_non_null(enc);
    sx_cb_nonce(cnonce, fcorr, 24);
    assert_int_equal(sx_smp_cb_encrypt(enc, SX_SMP_PROXIED_T_PADDED, csecret,
                                       cnonce, bw.p, bw.len), 0);
    memset(&ft, 0, sizeof ft);
    ft.corr_id = bs(fcorr, 24);
    ft.version = p->version;
    sx_smp_key_set(&ft.key, SX_KEY_X25519, eph_pk);
    ft.enc = bs(enc, SX_SMP_PROXIED_T_PADDED + 16);
    assert_int_equal(sx_smp_fwd_trans_encode(&fw, &ft), 0);
    s1 = malloc(fw.len + 16);
    assert_non_null(s1);
    new_corr(rcorr);
    sx_cb_nonce(pnonce, rcorr, 24);
    assert_int_equal(sx_smp_cb_seal_nopad(s1, p->sess_secret, pnonce, fw.p,
                                          fw.len), 0);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_RFWD);
    cmd.body = bs(s1, fw.len + 16);
    send_cmd(p, rcorr, bs(NULL, 0), &cmd, SX_KEY_NONE, NULL);
    expect(p, rcorr, SX_SMP_MSG_RRES, &r);

    /* open the response: to the proxy, then to the client */
    plain = malloc(r.m.body.n);
    assert_non_null(plain);
    sx_reverse_nonce(rn, pnonce);
    assert_int_equal(sx_smp_cb_open_nopad(plain, p->sess_secret, rn,
                                          r.m.body.p, r.m.body.n), 0);
    assert_int_equal(sx_smp_fwd_resp_decode(&fr, plain, r.m.body.n - 16), 0);
    assert_int_equal(fr.corr_id.n, 24);
    assert_memory_equal(fr.corr_id.p, fcorr, 24);
    sx_reverse_nonce(rn, cnonce);
    {
        uint8_t *out = malloc(fr.enc.n);
        assert_non_null(out);
        assert_int_equal(sx_smp_cb_decrypt(out, &bp, &bn, csecret, rn,
                                           fr.enc.p, fr.enc.n), 0);
        assert_int_equal(sx_smp_batch_decode(&batch, bp, bn), 0);
        assert_int_equal(batch.n, 1);
        assert_int_equal(sx_smp_trans_decode(&inner.t, &prm, batch.t[0].p,
                                             batch.t[0].n), 0);
        assert_int_equal(inner.t.corr_id.n, 24);
        assert_memory_equal(inner.t.corr_id.p, fcorr, 24);
        assert_int_equal(sx_smp_msg_decode(&inner.m, p->version,
                                           inner.t.command.p,
                                           inner.t.command.n), 0);
        assert_int_equal(inner.m.tag, want);
        if (want == SX_SMP_MSG_ERR)
            assert_int_equal(inner.m.err.type, want_err);
        free(out);
    }
    free(plain);
    free(s1);
    free(enc);
    sx_wr_free(&tb);
    sx_wr_free(&tw);
    sx_wr_free(&bw);
    sx_wr_free(&fw);
}

static void test_forwarded(void **state)
{
    server s;
    client a, p;
    queue q;
    uint8_t corr[24], msg_id[24];
    sx_smp_cmd cmd;
    sx_wr w;
    reply r;
    (void)state;

    server_start(&s, free_port(), NULL, NULL);
    client_connect(&a, &s, 18, 1, NULL);
    /* the proxy's connection: no block encryption */
    client_connect_ex(&p, &s, 18, 1, NULL, 1);
    assert_false(p.encrypted);
    create_queue(&a, &q, 'C');

    sx_smp_cmd_init(&cmd, SX_SMP_CMD_SEND);
    cmd.body = bs((const uint8_t *)"via proxy", 9);
    sx_wr_init(&w);
    assert_int_equal(sx_smp_cmd_encode(&w, 18, &cmd), 0);
    forward(&p, w.p, w.len, bs(q.sid, 24), SX_SMP_MSG_OK, 0);
    sx_wr_free(&w);
    /* only sender commands may be forwarded */
    forward(&p, (const uint8_t *)"PING", 4, bs(NULL, 0), SX_SMP_MSG_ERR,
            SX_SMP_ERR_CMD);

    rcv_cmd(&a, &q, SX_SMP_CMD_GET, corr);
    recv_reply(&a, &r);
    check_msg(&r, &q, "via proxy", msg_id);
    /* PRXY / PFWD: this server is no proxy */
    {
        sx_smp_cmd pc;
        static const uint8_t host[] = "127.0.0.1", port[] = "5223";
        sx_smp_cmd_init(&pc, SX_SMP_CMD_PRXY);
        pc.server.n_hosts = 1;
        pc.server.hosts[0] = bs(host, 9);
        pc.server.port = bs(port, 4);
        pc.server.key_hash = bs(s.key_hash, 32);
        send_cmd(&a, new_corr(corr), bs(NULL, 0), &pc, SX_KEY_NONE, NULL);
        expect_err(&a, corr, SX_SMP_ERR_PROXY);
    }
    client_close(&p);
    client_close(&a);
    server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_messaging_v18, kill_leftover),
        cmocka_unit_test_teardown(test_v9_unsecured, kill_leftover),
        cmocka_unit_test_teardown(test_handshake_errors, kill_leftover),
        cmocka_unit_test_teardown(test_restart, kill_leftover),
        cmocka_unit_test_teardown(test_quota, kill_leftover),
        cmocka_unit_test_teardown(test_errors, kill_leftover),
        cmocka_unit_test_teardown(test_x25519_auth, kill_leftover),
        cmocka_unit_test_teardown(test_notifications, kill_leftover),
        cmocka_unit_test_teardown(test_links, kill_leftover),
        cmocka_unit_test_teardown(test_forwarded, kill_leftover),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
