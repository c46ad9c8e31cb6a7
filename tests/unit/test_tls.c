/*
 * The TLS client transport against a small OpenSSL server run in a thread
 * on 127.0.0.1 (real sockets, no mocks). Certificate chains are generated
 * here with Ed25519 and Ed448 keys.
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
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "client/net.h"
#include "client/tls.h"
#include "slow_resolver.h"
#include "simplex/simplex.h"

#define BLOCK SIMPLEX_SMP_BLOCK_BYTES
#define MAX_CHAIN 6

/* ---- certificates ---- */

typedef struct chain {
    int n;
    X509 *cert[MAX_CHAIN];
    EVP_PKEY *key[MAX_CHAIN]; /* key[i] is cert[i]'s key */
    uint8_t id_hash[32];      /* SHA-256 of cert[1] */
    uint8_t last_hash[32];    /* SHA-256 of the last cert */
} chain;

enum {
    CH_GOOD = 0,
    CH_BROKEN_SIG = 1,     /* leaf signed by a stranger key */
    CH_EXPIRED_LEAF = 2,   /* leaf validity ended yesterday */
    CH_MIDDLE_NOT_CA = 3,  /* intermediate without CA:TRUE */
    CH_WRONG_ISSUER = 4    /* leaf's issuer name is not the next subject */
};

static long g_serial = 1;

static EVP_PKEY *gen_key(int ed448)
{
    EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, ed448 ? "ED448" : "ED25519");
    assert_non_null(k);
    return k;
}

static void set_cn(X509_NAME *nm, const char *cn)
{
    assert_int_equal(X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                                                (const unsigned char *)cn,
                                                -1, -1, 0),
                     1);
}

static void add_ext(X509 *x, int nid, const char *val)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, NULL, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, val);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

static X509 *make_cert(const char *cn, const char *issuer_cn, EVP_PKEY *pub,
                       EVP_PKEY *signer, int ca, long nb_off, long na_off)
{
    X509 *x = X509_new();
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), g_serial++),
                     1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), nb_off));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), na_off));
    set_cn(X509_get_subject_name(x), cn);
    set_cn(X509_get_issuer_name(x), issuer_cn);
    assert_int_equal(X509_set_pubkey(x, pub), 1);
    add_ext(x, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (!ca)
        add_ext(x, NID_key_usage, "digitalSignature,keyAgreement");
    assert_true(X509_sign(x, signer, NULL) > 0);
    return x;
}

static void hash_cert(X509 *x, uint8_t out[32])
{
    unsigned len = 0;
    assert_int_equal(X509_digest(x, EVP_sha256(), out, &len), 1);
    assert_int_equal(len, 32);
}

static void make_chain(chain *ch, int n, int ed448, int flaw)
{
    static const char *names[MAX_CHAIN] = {"server", "identity", "operator",
                                           "network", "extra", "more"};
    int i;
    memset(ch, 0, sizeof *ch);
    ch->n = n;
    for (i = 0; i < n; i++)
        ch->key[i] = gen_key(ed448);
    /* the last one is self-signed */
    ch->cert[n - 1] = make_cert(names[n - 1], names[n - 1], ch->key[n - 1],
                                ch->key[n - 1], n > 1, -3600, 86400L * 30);
    for (i = n - 2; i >= 0; i--) {
        EVP_PKEY *signer = ch->key[i + 1];
        EVP_PKEY *stranger = NULL;
        const char *issuer = names[i + 1];
        long na = 86400L * 30;
        int ca = i > 0;
        if (i == 0 && flaw == CH_BROKEN_SIG)
            signer = stranger = gen_key(ed448);
        if (i == 0 && flaw == CH_EXPIRED_LEAF)
            na = -86400;
        if (i == 0 && flaw == CH_WRONG_ISSUER)
            issuer = "someone else";
        if (i == 1 && flaw == CH_MIDDLE_NOT_CA)
            ca = 0;
        ch->cert[i] = make_cert(names[i], issuer, ch->key[i], signer, ca,
                                i == 0 && flaw == CH_EXPIRED_LEAF ? -86400L * 2
                                                                  : -3600,
                                na);
        EVP_PKEY_free(stranger);
    }
    if (n >= 2)
        hash_cert(ch->cert[1], ch->id_hash);
    hash_cert(ch->cert[n - 1], ch->last_hash);
}

static void free_chain(chain *ch)
{
    int i;
    for (i = 0; i < ch->n; i++) {
        X509_free(ch->cert[i]);
        EVP_PKEY_free(ch->key[i]);
    }
    memset(ch, 0, sizeof *ch);
}

/* ---- the test server ---- */

enum {
    SRV_ECHO = 0,        /* echo whole blocks until the client closes */
    SRV_CLOSE_MID = 1,   /* send part of a block, then close_notify */
    SRV_ABORT_MID = 2,   /* send part of a block, then close the socket */
    SRV_ECHO_ONE = 3,    /* echo one block, then close_notify and close */
    SRV_SILENT = 4,      /* accept TCP, never speak TLS */
    SRV_GARBAGE = 5,     /* answer the ClientHello with non-TLS bytes */
    SRV_GARBAGE_AFTER = 6 /* complete the handshake, then send raw junk */
};

typedef struct server {
    chain *ch;
    int mode;
    int alpn;      /* offer smp/1 */
    int max_tls12; /* cap the version at TLS 1.2 */
    int lfd;
    uint16_t port;
    pthread_t th;
    /* results, read after join */
    int accepted; /* TCP accepted */
    int handshake_ok;
    uint8_t peer_finished[64];
    size_t peer_finished_len;
    char sni[256];
    int blocks_echoed;
} server;

static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x05smp/1\x02h2\x08http/1.1";
    unsigned char *sel = NULL;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof ours - 1, in,
                              inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int accept_any_client(int ok, X509_STORE_CTX *x)
{
    (void)ok;
    (void)x;
    return 1;
}

static int read_full(SSL *ssl, uint8_t *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        if (SSL_read_ex(ssl, buf + got, len - got, &n) != 1)
            return -1;
        got += n;
    }
    return 0;
}

static void *server_main(void *arg)
{
    server *s = arg;
    SSL_CTX *ctx = NULL;
    SSL *ssl = NULL;
    struct pollfd p;
    int fd = -1, i;
    uint8_t *buf = malloc(BLOCK);
    sigset_t ss;

    /* the server's writes may hit a closed client: no SIGPIPE on this
     * thread (the client library must avoid it on its own) */
    sigemptyset(&ss);
    sigaddset(&ss, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &ss, NULL);
    p.fd = s->lfd;
    p.events = POLLIN;
    p.revents = 0;
    if (!buf || poll(&p, 1, 10000) != 1)
        goto out;
    fd = accept(s->lfd, NULL, NULL);
    if (fd < 0)
        goto out;
    s->accepted = 1;
    if (s->mode == SRV_GARBAGE) {
        static const char junk[] = "HTTP/1.1 400 Bad Request\r\n\r\n";
        (void)recv(fd, buf, BLOCK, 0);
        (void)send(fd, junk, sizeof junk - 1, 0);
        memset(buf, 0x16, 64); /* looks like a handshake record header */
        (void)send(fd, buf, 64, 0);
        goto out;
    }
    if (s->mode == SRV_SILENT) {
        /* hold the connection until the client gives up */
        while (recv(fd, buf, BLOCK, 0) > 0)
            ;
        goto out;
    }
    ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        goto out;
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN);
    if (s->max_tls12)
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    if (SSL_CTX_use_certificate(ctx, s->ch->cert[0]) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, s->ch->key[0]) != 1)
        goto out;
    for (i = 1; i < s->ch->n; i++)
        if (SSL_CTX_add1_chain_cert(ctx, s->ch->cert[i]) != 1)
            goto out;
    if (s->alpn)
        SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* ask for a client certificate, accept none */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_client);
    ssl = SSL_new(ctx);
    if (!ssl || SSL_set_fd(ssl, fd) != 1)
        goto out;
    if (SSL_accept(ssl) != 1)
        goto out;
    s->handshake_ok = 1;
    s->peer_finished_len =
        SSL_get_peer_finished(ssl, s->peer_finished, sizeof s->peer_finished);
    {
        const char *sn = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
        if (sn)
            snprintf(s->sni, sizeof s->sni, "%s", sn);
    }
    switch (s->mode) {
    case SRV_ECHO:
    case SRV_ECHO_ONE:
        while (read_full(ssl, buf, BLOCK) == 0) {
            size_t w = 0;
            if (SSL_write_ex(ssl, buf, BLOCK, &w) != 1 || w != BLOCK)
                break;
            s->blocks_echoed++;
            if (s->mode == SRV_ECHO_ONE)
                break;
        }
        if (s->mode == SRV_ECHO_ONE)
            SSL_shutdown(ssl);
        break;
    case SRV_GARBAGE_AFTER: {
        /* an application-data record header, then junk: fails to decrypt */
        static const uint8_t hdr[] = {0x17, 0x03, 0x03, 0x01, 0x00};
        (void)send(fd, hdr, sizeof hdr, 0);
        memset(buf, 0xa5, 256);
        (void)send(fd, buf, 256, 0);
        /* hold until the client gives up */
        while (recv(fd, buf, BLOCK, 0) > 0)
            ;
        break;
    }
    case SRV_CLOSE_MID:
    case SRV_ABORT_MID: {
        size_t w = 0;
        memset(buf, 0x5a, 5000);
        SSL_write_ex(ssl, buf, 5000, &w);
        if (s->mode == SRV_CLOSE_MID)
            SSL_shutdown(ssl);
        break;
    }
    default:
        break;
    }
out:
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    if (fd >= 0)
        close(fd);
    free(buf);
    ERR_clear_error();
    return NULL;
}

static int listen_loopback(uint16_t *port)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 4), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* An IPv6 loopback listener; -1 when the host has no IPv6. */
static int listen_loopback6(uint16_t *port)
{
    struct sockaddr_in6 a;
    socklen_t al = sizeof a;
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 4) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin6_port);
    return fd;
}

static void server_start(server *s, chain *ch, int mode)
{
    memset(s, 0, sizeof *s);
    s->ch = ch;
    s->mode = mode;
    s->alpn = 1;
    s->lfd = listen_loopback(&s->port);
}

static void server_run(server *s)
{
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_join(server *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
}

/* ---- fixtures ---- */

static sx_tls_ctx *g_ctx;

static int group_setup(void **state)
{
    (void)state;
    return sx_tls_ctx_new(&g_ctx) == SIMPLEX_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    sx_tls_ctx_free(g_ctx);
    g_ctx = NULL;
    return 0;
}

static void fill_block(uint8_t *b, unsigned seed)
{
    size_t i;
    for (i = 0; i < BLOCK; i++)
        b[i] = (uint8_t)(i * 31u + seed * 7u + (i >> 8));
}

/* Connects to a fresh server with chain ch and mode; returns the client
 * result; the connection is in *out when it succeeded. */
static int connect_to(server *s, const uint8_t *key_hash, sx_tls_conn **out,
                      const sx_tls_options *opts)
{
    server_run(s);
    return sx_tls_connect_sync(out, g_ctx, "127.0.0.1", s->port, key_hash,
                               opts);
}

/* ---- handshake and blocks ---- */

static void handshake_ok(int ed448)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t fin[SX_TLS_MAX_FINISHED], key[SX_TLS_MAX_RAW_KEY];
    uint8_t raw[SX_TLS_MAX_RAW_KEY], der[4096], h[32];
    size_t fin_len, key_len = 0, raw_len = sizeof raw, der_len = 0;
    uint8_t *out = malloc(BLOCK), *in = malloc(BLOCK);
    unsigned i;

    assert_non_null(out);
    assert_non_null(in);
    make_chain(&ch, 2, ed448, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_non_null(c);
    assert_true(sx_tls_is_open(c));
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_NONE);
    assert_true(sx_tls_alpn_agreed(c));
    assert_int_equal(sx_tls_version(c), TLS1_3_VERSION);
    assert_string_equal(sx_tls_cipher(c), "TLS_CHACHA20_POLY1305_SHA256");
    fin_len = sx_tls_unique(c, fin);
    assert_int_equal(fin_len, 32);

    /* the leaf key and the chain as received */
    assert_int_equal(sx_tls_peer_key(c, key, &key_len),
                     ed448 ? SX_TLS_KEY_ED448 : SX_TLS_KEY_ED25519);
    assert_int_equal(EVP_PKEY_get_raw_public_key(ch.key[0], raw, &raw_len), 1);
    assert_int_equal(key_len, ed448 ? 57 : 32);
    assert_int_equal(key_len, raw_len);
    assert_memory_equal(key, raw, raw_len);
    assert_int_equal(sx_tls_peer_chain_len(c), 2);
    assert_int_equal(sx_tls_peer_cert_der(c, 1, NULL, 0, &der_len), SIMPLEX_OK);
    assert_true(der_len > 0 && der_len <= sizeof der);
    assert_int_equal(sx_tls_peer_cert_der(c, 1, der, 10, &der_len),
                     SIMPLEX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(sx_tls_peer_cert_der(c, 1, der, sizeof der, &der_len),
                     SIMPLEX_OK);
    assert_int_equal(EVP_Digest(der, der_len, h, NULL, EVP_sha256(), NULL), 1);
    assert_memory_equal(h, ch.id_hash, 32);
    assert_int_equal(sx_tls_peer_cert_der(c, 2, der, sizeof der, &der_len),
                     SIMPLEX_ERR_INVALID_ARG);

    /* block round trips */
    for (i = 0; i < 4; i++) {
        fill_block(out, i);
        assert_int_equal(sx_tls_write_block_sync(c, out, BLOCK, 5000),
                         SX_TLS_OK);
        memset(in, 0, BLOCK);
        assert_int_equal(sx_tls_read_block_sync(c, in, BLOCK, 5000),
                         SX_TLS_OK);
        assert_memory_equal(in, out, BLOCK);
    }
    /* only whole blocks */
    assert_int_equal(sx_tls_write_block(c, out, BLOCK - 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_read_block(c, in, BLOCK - 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_true(sx_tls_is_open(c));

    sx_tls_close(c);
    server_join(&s);
    sx_tls_free(c);

    /* tls-unique is the client's Finished, as the server saw it */
    assert_true(s.handshake_ok);
    assert_int_equal(s.peer_finished_len, fin_len);
    assert_memory_equal(s.peer_finished, fin, fin_len);
    assert_int_equal(s.blocks_echoed, 4);
    /* no SNI, as the reference SMP client */
    assert_string_equal(s.sni, "");
    free_chain(&ch);
    free(out);
    free(in);
}

static void test_handshake_ed25519(void **state)
{
    (void)state;
    handshake_ok(0);
}

static void test_handshake_ed448(void **state)
{
    (void)state;
    handshake_ok(1);
}

static void chain_len_ok(int n)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    assert_non_null(b);
    assert_non_null(r);
    make_chain(&ch, n, n == 4, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    /* the identity is the second certificate whatever the length */
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_int_equal(sx_tls_peer_chain_len(c), (size_t)n);
    fill_block(b, 9);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    assert_memory_equal(r, b, BLOCK);
    sx_tls_free(c);
    server_join(&s);

    /* the last certificate is not the identity for 3 and 4 */
    server_start(&s, &ch, SRV_ECHO);
    c = NULL;
    assert_int_equal(connect_to(&s, ch.last_hash, &c, NULL), SIMPLEX_ERR_SERVER_IDENTITY);
    assert_null(c);
    server_join(&s);
    assert_false(s.handshake_ok);
    free_chain(&ch);
    free(b);
    free(r);
}

static void test_chain_of_3(void **state)
{
    (void)state;
    chain_len_ok(3);
}

static void test_chain_of_4(void **state)
{
    (void)state;
    chain_len_ok(4);
}

/* A connection that must fail during the handshake with this result. */
static void expect_reject(int n, int flaw, int use_last_hash, int flip,
                          int expect_err, sx_tls_reason expect_reason)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL, *c2 = NULL;
    uint8_t kh[32], fin[SX_TLS_MAX_FINISHED];
    int rc;

    make_chain(&ch, n, 0, flaw);
    memcpy(kh, n >= 2 && !use_last_hash ? ch.id_hash : ch.last_hash, 32);
    if (flip)
        kh[flip - 1] ^= 0x01;
    server_start(&s, &ch, SRV_ECHO);
    server_run(&s);
    /* drive it by hand to read the reason before freeing */
    rc = sx_tls_connect_start(&c, g_ctx, "127.0.0.1", s.port, kh, NULL);
    assert_int_equal(rc, SIMPLEX_OK);
    for (;;) {
        rc = sx_tls_step(c);
        if (rc <= 0)
            break;
        assert_int_equal(sx_tls_wait(c, rc, 5000), SX_TLS_OK);
    }
    assert_int_equal(rc, expect_err);
    assert_int_equal(sx_tls_last_reason(c), expect_reason);
    assert_false(sx_tls_is_open(c));
    /* a failed connection stays failed and reveals nothing */
    assert_int_equal(sx_tls_step(c), expect_err);
    assert_int_equal(sx_tls_unique(c, fin), 0);
    assert_false(sx_tls_alpn_agreed(c));
    sx_tls_free(c);
    server_join(&s);
    assert_false(s.handshake_ok);

    /* the blocking form reports the same and hands back nothing */
    server_start(&s, &ch, SRV_ECHO);
    assert_int_equal(connect_to(&s, kh, &c2, NULL), expect_err);
    assert_null(c2);
    server_join(&s);
    assert_false(s.handshake_ok);
    free_chain(&ch);
}

static void test_wrong_fingerprint(void **state)
{
    (void)state;
    expect_reject(2, CH_GOOD, 0, 1, SIMPLEX_ERR_SERVER_IDENTITY, SX_TLS_R_IDENTITY);
    expect_reject(2, CH_GOOD, 0, 32, SIMPLEX_ERR_SERVER_IDENTITY, SX_TLS_R_IDENTITY);
    /* with 2 certificates the leaf is not the identity: its hash fails */
}

static void test_chain_of_1(void **state)
{
    (void)state;
    expect_reject(1, CH_GOOD, 1, 0, SIMPLEX_ERR_CERT_CHAIN,
                  SX_TLS_R_CHAIN_LENGTH);
}

static void test_chain_of_5(void **state)
{
    (void)state;
    expect_reject(5, CH_GOOD, 0, 0, SIMPLEX_ERR_CERT_CHAIN,
                  SX_TLS_R_CHAIN_LENGTH);
}

static void test_broken_chain(void **state)
{
    (void)state;
    expect_reject(2, CH_BROKEN_SIG, 0, 0, SIMPLEX_ERR_CERT_INVALID,
                  SX_TLS_R_CHAIN_BROKEN);
    expect_reject(3, CH_BROKEN_SIG, 0, 0, SIMPLEX_ERR_CERT_INVALID,
                  SX_TLS_R_CHAIN_BROKEN);
    expect_reject(2, CH_WRONG_ISSUER, 0, 0, SIMPLEX_ERR_CERT_INVALID,
                  SX_TLS_R_CHAIN_BROKEN);
}

static void test_invalid_certs(void **state)
{
    (void)state;
    expect_reject(2, CH_EXPIRED_LEAF, 0, 0, SIMPLEX_ERR_CERT_INVALID,
                  SX_TLS_R_CERT_INVALID);
    expect_reject(3, CH_MIDDLE_NOT_CA, 0, 0, SIMPLEX_ERR_CERT_INVALID,
                  SX_TLS_R_CERT_INVALID);
}

/* ---- the chain check alone ---- */

static sx_tls_reason check_der(chain *ch, int n, const uint8_t *kh)
{
    uint8_t *der[MAX_CHAIN] = {NULL};
    size_t len[MAX_CHAIN] = {0};
    sx_tls_reason r;
    int i;
    for (i = 0; i < n; i++) {
        int l = i2d_X509(ch->cert[i], &der[i]);
        assert_true(l > 0);
        len[i] = (size_t)l;
    }
    r = sx_tls_check_chain_der((const uint8_t *const *)der, len, (size_t)n,
                               kh);
    for (i = 0; i < n; i++)
        OPENSSL_free(der[i]);
    return r;
}

static void test_check_chain_der(void **state)
{
    chain ch;
    uint8_t kh[32];
    const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x01};
    const uint8_t *jp[2] = {junk, junk};
    size_t jl[2] = {sizeof junk, sizeof junk};
    int n;
    (void)state;

    for (n = 2; n <= 4; n++) {
        make_chain(&ch, n, n & 1, CH_GOOD);
        assert_int_equal(check_der(&ch, n, ch.id_hash), SX_TLS_R_NONE);
        memcpy(kh, ch.id_hash, 32);
        kh[5] ^= 0x80;
        assert_int_equal(check_der(&ch, n, kh), SX_TLS_R_IDENTITY);
        if (n > 2)
            assert_int_equal(check_der(&ch, n, ch.last_hash),
                             SX_TLS_R_IDENTITY);
        /* fewer certificates than sent: still checked as a shorter chain */
        assert_int_equal(check_der(&ch, 1, ch.id_hash), SX_TLS_R_CHAIN_LENGTH);
        free_chain(&ch);
    }
    make_chain(&ch, 5, 0, CH_GOOD);
    assert_int_equal(check_der(&ch, 5, ch.id_hash), SX_TLS_R_CHAIN_LENGTH);
    free_chain(&ch);
    make_chain(&ch, 4, 0, CH_BROKEN_SIG);
    assert_int_equal(check_der(&ch, 4, ch.id_hash), SX_TLS_R_CHAIN_BROKEN);
    free_chain(&ch);
    make_chain(&ch, 3, 1, CH_WRONG_ISSUER);
    assert_int_equal(check_der(&ch, 3, ch.id_hash), SX_TLS_R_CHAIN_BROKEN);
    free_chain(&ch);
    make_chain(&ch, 2, 1, CH_EXPIRED_LEAF);
    assert_int_equal(check_der(&ch, 2, ch.id_hash), SX_TLS_R_CERT_INVALID);
    free_chain(&ch);
    make_chain(&ch, 4, 0, CH_MIDDLE_NOT_CA);
    assert_int_equal(check_der(&ch, 4, ch.id_hash), SX_TLS_R_CERT_INVALID);
    free_chain(&ch);
    /* the identity part alone, on raw bytes */
    make_chain(&ch, 3, 0, CH_BROKEN_SIG);
    {
        uint8_t *der[3] = {NULL, NULL, NULL};
        size_t len[3] = {0, 0, 0};
        int i;
        for (i = 0; i < 3; i++) {
            int l = i2d_X509(ch.cert[i], &der[i]);
            assert_true(l > 0);
            len[i] = (size_t)l;
        }
        /* a broken chain still has the right identity */
        assert_int_equal(sx_tls_chain_identity_der((const uint8_t *const *)der,
                                                   len, 3, ch.id_hash),
                         SX_TLS_R_NONE);
        assert_int_equal(sx_tls_chain_identity_der((const uint8_t *const *)der,
                                                   len, 3, ch.last_hash),
                         SX_TLS_R_IDENTITY);
        assert_int_equal(sx_tls_chain_identity_der((const uint8_t *const *)der,
                                                   len, 1, ch.id_hash),
                         SX_TLS_R_CHAIN_LENGTH);
        for (i = 0; i < 3; i++)
            OPENSSL_free(der[i]);
    }
    free_chain(&ch);
    /* garbage is a broken chain, never a crash */
    memset(kh, 0, sizeof kh);
    assert_int_equal(sx_tls_check_chain_der(jp, jl, 2, kh),
                     SX_TLS_R_CHAIN_BROKEN);
    jl[1] = 0;
    assert_int_equal(sx_tls_check_chain_der(jp, jl, 2, kh),
                     SX_TLS_R_CHAIN_BROKEN);
}

/* ---- options and versions ---- */

static void test_no_alpn_and_sni(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    sx_tls_options o;
    (void)state;

    make_chain(&ch, 2, 0, CH_GOOD);
    /* a server that does not do ALPN: connected, but not agreed */
    server_start(&s, &ch, SRV_ECHO);
    s.alpn = 0;
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_false(sx_tls_alpn_agreed(c));
    sx_tls_free(c);
    server_join(&s);

    /* a client that offers none; and SNI when asked for */
    memset(&o, 0, sizeof o);
    o.no_alpn = 1;
    o.sni = "smp.example.org";
    server_start(&s, &ch, SRV_ECHO);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, &o), SIMPLEX_OK);
    assert_false(sx_tls_alpn_agreed(c));
    sx_tls_free(c);
    server_join(&s);
    assert_string_equal(s.sni, "smp.example.org");
    free_chain(&ch);
}

static void test_tls12(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t fin[SX_TLS_MAX_FINISHED];
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    size_t fl;
    (void)state;

    assert_non_null(b);
    assert_non_null(r);
    make_chain(&ch, 2, 0, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    s.max_tls12 = 1;
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_int_equal(sx_tls_version(c), TLS1_2_VERSION);
    assert_string_equal(sx_tls_cipher(c),
                        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256");
    assert_true(sx_tls_alpn_agreed(c));
    fl = sx_tls_unique(c, fin);
    assert_int_equal(fl, 12);
    fill_block(b, 3);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    assert_memory_equal(r, b, BLOCK);
    sx_tls_free(c);
    server_join(&s);
    assert_int_equal(s.peer_finished_len, fl);
    assert_memory_equal(s.peer_finished, fin, fl);
    free_chain(&ch);
    free(b);
    free(r);
}

/* ---- the non-blocking API under poll() ---- */

/* Blocks written and echoed through poll(); with coalesce the records of
 * consecutive blocks are gathered and sent together by sx_tls_flush(). */
static void nonblocking_pipeline(int coalesce)
{
    enum { NB = 24 };
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    int sent = 0, got = 0, rc, rounds = 0, partial = 0, waits = 0;

    assert_non_null(b);
    assert_non_null(r);
    make_chain(&ch, 2, 1, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    server_run(&s);
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "127.0.0.1", s.port,
                                          ch.id_hash, NULL),
                     SIMPLEX_OK);
    assert_true(sx_tls_timeout_ms(c) > 0);
    /* connect + handshake through poll() */
    while ((rc = sx_tls_step(c)) > 0) {
        struct pollfd p;
        p.fd = sx_tls_fd(c);
        p.events = sx_tls_poll_events(c);
        p.revents = 0;
        assert_true(p.fd >= 0);
        assert_true(p.events != 0);
        assert_true(poll(&p, 1, sx_tls_timeout_ms(c)) >= 0);
        assert_true(++rounds < 1000);
    }
    assert_int_equal(rc, SX_TLS_OK);
    assert_int_equal(sx_tls_timeout_ms(c), -1);
    if (coalesce)
        assert_int_equal(sx_tls_set_coalesce(c, 1), SIMPLEX_OK);
    /* a small send buffer: blocks go out by pieces */
    {
        int small = 4096;
        assert_int_equal(setsockopt(sx_tls_fd(c), SOL_SOCKET, SO_SNDBUF,
                                    &small, sizeof small),
                         0);
    }

    /* write NB blocks while reading their echoes */
    while (got < NB) {
        struct pollfd p;
        int progress = 0;
        /* send while the socket takes it */
        for (;;) {
            if (coalesce ? sx_tls_block_pending(c) : sx_tls_write_pending(c)) {
                assert_int_equal(sx_tls_write_block(c, b, BLOCK),
                                 SIMPLEX_ERR_ALREADY);
                rc = sx_tls_flush(c);
                assert_true(rc >= 0);
                if (rc > 0)
                    break;
                progress = 1;
            }
            if (sent == NB)
                break;
            fill_block(b, (unsigned)sent);
            rc = sx_tls_write_block(c, b, BLOCK);
            assert_true(rc >= 0);
            if (rc > 0)
                partial++;
            sent++;
            progress = 1;
        }
        /* gathered records go out on flush */
        if (coalesce && sx_tls_write_pending(c) && !sx_tls_block_pending(c)) {
            rc = sx_tls_flush(c);
            assert_true(rc >= 0);
            if (rc > 0)
                partial++;
            progress = 1;
        }
        if (!coalesce)
            assert_int_equal(sx_tls_block_pending(c), sx_tls_write_pending(c));
        /* take every whole block there is */
        for (;;) {
            rc = sx_tls_read_block(c, r, BLOCK);
            assert_true(rc >= 0);
            if (rc > 0) {
                waits++;
                break;
            }
            fill_block(b, (unsigned)got);
            assert_memory_equal(r, b, BLOCK);
            got++;
            progress = 1;
        }
        if (got == NB || progress)
            continue;
        p.fd = sx_tls_fd(c);
        p.events = sx_tls_poll_events(c);
        p.revents = 0;
        assert_true(p.events & POLLIN);
        assert_int_equal(!!(p.events & POLLOUT), sx_tls_write_pending(c));
        assert_int_equal(poll(&p, 1, 5000), 1);
        assert_true(++rounds < 100000);
    }
    assert_int_equal(got, NB);
    assert_false(sx_tls_write_pending(c));
    /* both sides really were partial at times (gathered records go out
     * four blocks at a time, which a peer reading fast enough may take
     * whole: there only the reading side is sure to wait) */
    if (!coalesce)
        assert_true(partial > 0);
    assert_true(waits > 0);
    sx_tls_free(c);
    server_join(&s);
    assert_int_equal(s.blocks_echoed, NB);
    free_chain(&ch);
    free(b);
    free(r);
}

static void test_nonblocking_pipeline(void **state)
{
    (void)state;
    nonblocking_pipeline(0);
}

static void test_nonblocking_coalesced(void **state)
{
    (void)state;
    nonblocking_pipeline(1);
}

/* Coalescing: blocks written in a row are gathered, none reaches the peer
 * before the flush, and all arrive in order after it; turning it off with
 * records gathered is refused; only on an open connection. */
static void test_coalesce_gathers(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    (void)state;
    assert_non_null(b);
    assert_non_null(r);
    assert_int_equal(sx_tls_set_coalesce(NULL, 1), SIMPLEX_ERR_INVALID_ARG);
    make_chain(&ch, 2, 1, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_int_equal(sx_tls_set_coalesce(c, 1), SIMPLEX_OK);
    for (unsigned i = 0; i < 3; i++) {
        fill_block(b, 100 + i);
        assert_int_equal(sx_tls_write_block(c, b, BLOCK), SX_TLS_OK);
        assert_true(sx_tls_write_pending(c));
        assert_false(sx_tls_block_pending(c));
    }
    /* nothing was sent: no echo can come (the socket may still show
     * the server's post-handshake messages) */
    usleep(200 * 1000);
    assert_int_equal(sx_tls_read_block(c, r, BLOCK), SX_TLS_WANT_READ);
    assert_int_equal(sx_tls_set_coalesce(c, 0), SIMPLEX_ERR_ALREADY);
    assert_int_equal(sx_tls_flush(c), SX_TLS_OK);
    assert_false(sx_tls_write_pending(c));
    for (unsigned i = 0; i < 3; i++) {
        fill_block(b, 100 + i);
        assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
        assert_memory_equal(r, b, BLOCK);
    }
    /* more than the gathering buffer holds: the first blocks are sent
     * when it fills, the rest on flush; the sync write flushes itself */
    for (unsigned i = 0; i < 9; i++) {
        fill_block(b, 200 + i);
        assert_int_equal(sx_tls_write_block(c, b, BLOCK), SX_TLS_OK);
    }
    fill_block(b, 209);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_false(sx_tls_write_pending(c));
    for (unsigned i = 0; i < 10; i++) {
        fill_block(b, 200 + i);
        assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
        assert_memory_equal(r, b, BLOCK);
    }
    assert_int_equal(sx_tls_set_coalesce(c, 0), SIMPLEX_OK);
    fill_block(b, 7);
    assert_int_equal(sx_tls_write_block(c, b, BLOCK), SX_TLS_OK);
    assert_false(sx_tls_write_pending(c)); /* straight out again */
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    assert_memory_equal(r, b, BLOCK);
    sx_tls_close(c);
    server_join(&s);
    sx_tls_free(c);
    assert_int_equal(s.blocks_echoed, 14);
    free_chain(&ch);
    free(b);
    free(r);
}

/* ---- failures of the network and of the peer ---- */

static void test_connection_refused(void **state)
{
    uint16_t port;
    int fd = listen_loopback(&port);
    sx_tls_conn *c = NULL;
    uint8_t kh[32] = {0};
    int rc;
    (void)state;
    close(fd); /* nobody listens there now */

    assert_int_equal(sx_tls_connect_sync(&c, g_ctx, "127.0.0.1", port, kh,
                                         NULL),
                     SIMPLEX_ERR_CONNECT);
    assert_null(c);
    /* the reason, whether the refusal came at once or after poll() */
    rc = sx_tls_connect_start(&c, g_ctx, "127.0.0.1", port, kh, NULL);
    if (rc == SIMPLEX_OK) {
        while ((rc = sx_tls_step(c)) > 0)
            assert_true(sx_tls_wait(c, rc, 5000) >= 0);
        assert_int_equal(rc, SIMPLEX_ERR_CONNECT);
        assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_CONNECT);
        assert_int_equal(sx_tls_sys_errno(c), ECONNREFUSED);
        sx_tls_free(c);
    } else {
        assert_int_equal(rc, SIMPLEX_ERR_CONNECT);
        assert_null(c);
    }
}

static void test_unresolvable_name(void **state)
{
    sx_tls_conn *c = NULL;
    uint8_t kh[32] = {0};
    sx_tls_options o;
    int rc;
    (void)state;
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = 2000;
    /* .invalid never resolves (RFC 6761); a resolver that answers anyway
     * leads to a connect failure or timeout instead */
    rc = sx_tls_connect_start(&c, g_ctx, "no-such-host.invalid", 5223, kh, &o);
    if (rc == SIMPLEX_OK) {
        while ((rc = sx_tls_step(c)) > 0)
            assert_true(sx_tls_wait(c, rc, sx_tls_timeout_ms(c)) >= 0);
        sx_tls_free(c);
        assert_true(rc == SIMPLEX_ERR_RESOLVE || rc == SIMPLEX_ERR_CONNECT ||
                    rc == SIMPLEX_ERR_TIMEOUT);
        return;
    }
    assert_true(rc == SIMPLEX_ERR_RESOLVE || rc == SIMPLEX_ERR_CONNECT ||
                    rc == SIMPLEX_ERR_TIMEOUT);
    assert_null(c);
}

static void test_bad_args(void **state)
{
    sx_tls_conn *c = (sx_tls_conn *)&c;
    uint8_t kh[32] = {0}, b[16];
    size_t l;
    sx_tls_options o;
    (void)state;
    assert_int_equal(sx_tls_ctx_new(NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_connect_start(NULL, g_ctx, "h", 1, kh, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_connect_start(&c, NULL, "h", 1, kh, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_null(c);
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "", 1, kh, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "h", 1, NULL, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = -5;
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "h", 1, kh, &o),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_step(NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_read_block(NULL, b, BLOCK),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_write_block(NULL, b, BLOCK),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_tls_fd(NULL), -1);
    assert_int_equal(sx_tls_poll_events(NULL), 0);
    assert_int_equal(sx_tls_unique(NULL, b), 0);
    assert_int_equal(sx_tls_peer_key(NULL, b, &l), SIMPLEX_ERR_INVALID_ARG);
    sx_tls_free(NULL);
    sx_tls_close(NULL);
    sx_tls_ctx_free(NULL);
    assert_int_equal(sx_tls_reason_error(SX_TLS_R_NONE), SIMPLEX_OK);
    assert_int_equal(sx_tls_reason_error(SX_TLS_R_TRUNCATED),
                     SIMPLEX_ERR_TRUNCATED);
    assert_string_not_equal(sx_tls_reason_name(SX_TLS_R_IDENTITY), "unknown");
}

static void test_ipv6_and_names(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    static const char *hosts[] = {"::1", "[::1]"};
    size_t i;
    (void)state;
    make_chain(&ch, 2, 0, CH_GOOD);
    for (i = 0; i < 2; i++) {
        memset(&s, 0, sizeof s);
        s.ch = &ch;
        s.alpn = 1;
        s.lfd = listen_loopback6(&s.port);
        if (s.lfd < 0) {
            free_chain(&ch);
            skip();
        }
        server_run(&s);
        assert_int_equal(sx_tls_connect_sync(&c, g_ctx, hosts[i], s.port,
                                             ch.id_hash, NULL),
                         SIMPLEX_OK);
        assert_true(sx_tls_alpn_agreed(c));
        sx_tls_free(c);
        c = NULL;
        server_join(&s);
        assert_true(s.handshake_ok);
    }
    /* a name, resolved */
    server_start(&s, &ch, SRV_ECHO);
    server_run(&s);
    assert_int_equal(sx_tls_connect_sync(&c, g_ctx, "localhost", s.port,
                                         ch.id_hash, NULL),
                     SIMPLEX_OK);
    sx_tls_free(c);
    server_join(&s);
    assert_true(s.handshake_ok);
    free_chain(&ch);
}

/* ---- host names resolved off the caller's thread ---- */

static int64_t ms_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ms_sleep(int ms)
{
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (long)(ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* A name that takes 1.5 s to resolve: connect_start returns at once, the
 * connection waits for readability meanwhile and then completes through
 * the usual poll/step loop; a name that does not resolve fails in step. */
static void test_slow_name_async(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    int64_t t0, t1;
    int rc, rounds = 0, resolving_rounds = 0;
    (void)state;
    assert_non_null(b);
    assert_non_null(r);
    make_chain(&ch, 2, 0, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    server_run(&s);
    tsr_install(1500);

    t0 = ms_now();
    rc = sx_tls_connect_start(&c, g_ctx, "slow.test", s.port, ch.id_hash,
                              NULL);
    t1 = ms_now();
    assert_int_equal(rc, SIMPLEX_OK);
    assert_non_null(c);
    assert_true(t1 - t0 < 100);
    /* resolving: a descriptor that turns readable when done */
    assert_true(sx_tls_fd(c) >= 0);
    assert_int_equal(sx_tls_poll_events(c), POLLIN);
    assert_int_equal(sx_tls_step(c), SX_TLS_WANT_READ);
    assert_true(sx_tls_timeout_ms(c) > 0);
    while ((rc = sx_tls_step(c)) > 0) {
        struct pollfd p;
        p.fd = sx_tls_fd(c);
        p.events = sx_tls_poll_events(c);
        p.revents = 0;
        assert_true(p.fd >= 0);
        assert_int_equal(p.events, rc == SX_TLS_WANT_READ ? POLLIN : POLLOUT);
        if (tsr_finished() == 0) {
            /* still in the resolver: nothing but the wait for it */
            assert_int_equal(rc, SX_TLS_WANT_READ);
            resolving_rounds++;
        }
        assert_true(poll(&p, 1, sx_tls_timeout_ms(c)) >= 0);
        assert_true(++rounds < 1000);
    }
    t1 = ms_now();
    assert_int_equal(rc, SX_TLS_OK);
    assert_true(resolving_rounds >= 1);
    assert_true(t1 - t0 >= 1400);
    assert_int_equal(tsr_entered(), 1);
    assert_int_equal(tsr_finished(), 1);
    assert_true(sx_tls_alpn_agreed(c));
    fill_block(b, 5);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    assert_memory_equal(r, b, BLOCK);
    sx_tls_free(c);
    c = NULL;
    server_join(&s);
    assert_true(s.handshake_ok);
    assert_int_equal(s.blocks_echoed, 1);

    /* a name that does not resolve: the failure comes from step */
    tsr_install(100);
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "nx.test", 5223,
                                          ch.id_hash, NULL),
                     SIMPLEX_OK);
    while ((rc = sx_tls_step(c)) > 0)
        assert_true(sx_tls_wait(c, rc, sx_tls_timeout_ms(c)) >= 0);
    assert_int_equal(rc, SIMPLEX_ERR_RESOLVE);
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_RESOLVE);
    assert_int_equal(sx_tls_step(c), SIMPLEX_ERR_RESOLVE);
    sx_tls_free(c);
    c = NULL;
    /* and through the blocking helper */
    assert_int_equal(sx_tls_connect_sync(&c, g_ctx, "nx.test", 5223,
                                         ch.id_hash, NULL),
                     SIMPLEX_ERR_RESOLVE);
    assert_null(c);
    /* one resolution per attempt */
    assert_int_equal(tsr_entered(), 2);

    tsr_uninstall();
    free_chain(&ch);
    free(b);
    free(r);
}

/* The connect deadline covers the resolution: it fails with TIMEOUT while
 * the resolver still sleeps, and freeing the connection then is safe (the
 * helper thread finishes later on its own). */
static void test_slow_name_timeout(void **state)
{
    sx_tls_conn *c = NULL;
    sx_tls_options o;
    uint8_t kh[32] = {0};
    uint16_t port;
    int lfd = listen_loopback(&port);
    int64_t t0, t1;
    int rc;
    (void)state;
    tsr_install(1500);
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = 300;
    t0 = ms_now();
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "slow.test", port, kh,
                                          &o),
                     SIMPLEX_OK);
    assert_true(ms_now() - t0 < 100);
    while ((rc = sx_tls_step(c)) > 0) {
        assert_int_equal(rc, SX_TLS_WANT_READ);
        assert_true(sx_tls_wait(c, rc, sx_tls_timeout_ms(c)) >= 0);
    }
    t1 = ms_now();
    assert_int_equal(rc, SIMPLEX_ERR_TIMEOUT);
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_TIMEOUT);
    assert_true(t1 - t0 >= 250 && t1 - t0 < 1200);
    assert_int_equal(tsr_entered(), 1);
    assert_int_equal(tsr_finished(), 0); /* still asleep */
    sx_tls_free(c);

    /* the same through the blocking helper */
    t0 = ms_now();
    assert_int_equal(sx_tls_connect_sync(&c, g_ctx, "slow.test", port, kh,
                                         &o),
                     SIMPLEX_ERR_TIMEOUT);
    assert_null(c);
    assert_true(ms_now() - t0 < 1200);
    assert_int_equal(tsr_finished(), 0);

    /* both threads finish with nobody left to read their answer: they
     * free what they share (ASan / valgrind would see any misuse) */
    ms_sleep(2000);
    assert_int_equal(tsr_entered(), 2);
    assert_int_equal(tsr_finished(), 2);
    tsr_uninstall();
    close(lfd);
}

/* The handshake over a socket connected by someone else (SOCKS5 later). */
static void test_connect_fd(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    struct sockaddr_in a;
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    int fd, rc;
    (void)state;
    assert_non_null(b);
    assert_non_null(r);
    make_chain(&ch, 3, 1, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO);
    server_run(&s);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(s.port);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(sx_tls_connect_fd(&c, g_ctx, fd, ch.id_hash, NULL),
                     SIMPLEX_OK);
    assert_int_equal(sx_tls_fd(c), fd);
    while ((rc = sx_tls_step(c)) > 0)
        assert_true(sx_tls_wait(c, rc, 5000) >= 0);
    assert_int_equal(rc, SX_TLS_OK);
    fill_block(b, 77);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    assert_memory_equal(r, b, BLOCK);
    sx_tls_free(c);
    server_join(&s);
    /* bad arguments still consume the socket */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(sx_tls_connect_fd(&c, NULL, fd, ch.id_hash, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_null(c);
    assert_int_equal(sx_tls_connect_fd(&c, g_ctx, -1, ch.id_hash, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
    free_chain(&ch);
    free(b);
    free(r);
}

static void test_handshake_timeout(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    sx_tls_options o;
    (void)state;
    make_chain(&ch, 2, 0, CH_GOOD);
    server_start(&s, &ch, SRV_SILENT);
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = 300;
    assert_int_equal(connect_to(&s, ch.id_hash, &c, &o), SIMPLEX_ERR_TIMEOUT);
    assert_null(c);
    server_join(&s);
    assert_true(s.accepted);

    /* by hand, to see the reason */
    server_start(&s, &ch, SRV_SILENT);
    server_run(&s);
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "127.0.0.1", s.port,
                                          ch.id_hash, &o),
                     SIMPLEX_OK);
    {
        int rc;
        while ((rc = sx_tls_step(c)) > 0)
            assert_true(sx_tls_wait(c, rc, sx_tls_timeout_ms(c)) >= 0);
        assert_int_equal(rc, SIMPLEX_ERR_TIMEOUT);
    }
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_TIMEOUT);
    sx_tls_free(c);
    server_join(&s);
    free_chain(&ch);
}

static void closes_mid_block(int mode)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK);
    (void)mode;
    assert_non_null(b);
    make_chain(&ch, 2, 0, CH_GOOD);
    server_start(&s, &ch, mode);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_int_equal(sx_tls_read_block_sync(c, b, BLOCK, 5000),
                     SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_TRUNCATED);
    /* stays failed */
    assert_int_equal(sx_tls_read_block(c, b, BLOCK), SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(sx_tls_write_block(c, b, BLOCK), SIMPLEX_ERR_TRUNCATED);
    assert_false(sx_tls_is_open(c));
    sx_tls_free(c);
    server_join(&s);
    free_chain(&ch);
    free(b);
}

static void test_server_closes_mid_block(void **state)
{
    (void)state;
    closes_mid_block(SRV_CLOSE_MID);
}

static void test_server_aborts_mid_block(void **state)
{
    (void)state;
    closes_mid_block(SRV_ABORT_MID);
}

static void test_garbage_from_server(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK);
    int rc;
    (void)state;
    assert_non_null(b);
    make_chain(&ch, 2, 0, CH_GOOD);

    /* not TLS at all */
    server_start(&s, &ch, SRV_GARBAGE);
    server_run(&s);
    assert_int_equal(sx_tls_connect_start(&c, g_ctx, "127.0.0.1", s.port,
                                          ch.id_hash, NULL),
                     SIMPLEX_OK);
    while ((rc = sx_tls_step(c)) > 0)
        assert_true(sx_tls_wait(c, rc, 5000) >= 0);
    assert_int_equal(rc, SIMPLEX_ERR_TLS);
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_HANDSHAKE);
    sx_tls_free(c);
    c = NULL;
    server_join(&s);

    /* a record that does not decrypt after the handshake */
    server_start(&s, &ch, SRV_GARBAGE_AFTER);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_int_equal(sx_tls_read_block_sync(c, b, BLOCK, 5000),
                     SIMPLEX_ERR_TLS);
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_PROTOCOL);
    assert_true(sx_tls_ssl_error(c) != 0);
    sx_tls_free(c);
    server_join(&s);
    free_chain(&ch);
    free(b);
}

static void test_server_closes_between_blocks(void **state)
{
    chain ch;
    server s;
    sx_tls_conn *c = NULL;
    uint8_t *b = malloc(BLOCK), *r = malloc(BLOCK);
    int i, rc = 0;
    (void)state;
    assert_non_null(b);
    assert_non_null(r);
    make_chain(&ch, 2, 0, CH_GOOD);
    server_start(&s, &ch, SRV_ECHO_ONE);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    fill_block(b, 1);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    assert_memory_equal(r, b, BLOCK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000),
                     SIMPLEX_ERR_CLOSED);
    assert_int_equal(sx_tls_last_reason(c), SX_TLS_R_CLOSED);
    sx_tls_free(c);
    server_join(&s);

    /* writing to a server that went away fails without SIGPIPE */
    c = NULL;
    server_start(&s, &ch, SRV_ECHO_ONE);
    assert_int_equal(connect_to(&s, ch.id_hash, &c, NULL), SIMPLEX_OK);
    assert_int_equal(sx_tls_write_block_sync(c, b, BLOCK, 5000), SX_TLS_OK);
    assert_int_equal(sx_tls_read_block_sync(c, r, BLOCK, 5000), SX_TLS_OK);
    server_join(&s); /* the server has closed its socket */
    for (i = 0; i < 64; i++) {
        rc = sx_tls_write_block_sync(c, b, BLOCK, 5000);
        if (rc < 0)
            break;
        usleep(2000);
    }
    assert_true(rc < 0);
    assert_false(sx_tls_is_open(c));
    sx_tls_free(c);
    free_chain(&ch);
    free(b);
    free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_check_chain_der),
        cmocka_unit_test(test_handshake_ed25519),
        cmocka_unit_test(test_handshake_ed448),
        cmocka_unit_test(test_chain_of_3),
        cmocka_unit_test(test_chain_of_4),
        cmocka_unit_test(test_wrong_fingerprint),
        cmocka_unit_test(test_chain_of_1),
        cmocka_unit_test(test_chain_of_5),
        cmocka_unit_test(test_broken_chain),
        cmocka_unit_test(test_invalid_certs),
        cmocka_unit_test(test_no_alpn_and_sni),
        cmocka_unit_test(test_tls12),
        cmocka_unit_test(test_nonblocking_pipeline),
        cmocka_unit_test(test_nonblocking_coalesced),
        cmocka_unit_test(test_coalesce_gathers),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_unresolvable_name),
        cmocka_unit_test(test_ipv6_and_names),
        cmocka_unit_test(test_slow_name_async),
        cmocka_unit_test(test_slow_name_timeout),
        cmocka_unit_test(test_connect_fd),
        cmocka_unit_test(test_handshake_timeout),
        cmocka_unit_test(test_server_closes_mid_block),
        cmocka_unit_test(test_server_aborts_mid_block),
        cmocka_unit_test(test_server_closes_between_blocks),
        cmocka_unit_test(test_garbage_from_server),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
