/*
 * TLS client transport of SMP over OpenSSL 3: non-blocking connect and
 * handshake, server authentication by certificate chain and key hash,
 * fixed-size blocks.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "client/net.h"
#include "client/tls.h"
#include "common/sx.h"
#include "crypto/crypto.h"

#define BLOCK SIMPLEX_SMP_BLOCK_BYTES

_Static_assert(SX_SHA256_BYTES == SIMPLEX_KEY_HASH_BYTES,
               "the key hash is a SHA-256 digest");

/* ALPN wire format: one length-prefixed protocol name */
static const unsigned char alpn_smp[] = "\x05smp/1";
#define ALPN_SMP_WIRE_LEN (sizeof alpn_smp - 1)

struct sx_tls_ctx {
    SSL_CTX *ssl_ctx;
    BIO_METHOD *bio_method;
};

enum conn_state {
    ST_CONNECTING = 1, /* name resolution or TCP connect in progress */
    ST_HANDSHAKE,      /* TLS handshake in progress */
    ST_OPEN,
    ST_CLOSED, /* closed by us */
    ST_FAILED
};

#define SNI_MAX 256

struct sx_tls_conn {
    sx_tls_ctx *ctx;
    int no_alpn;
    char sni[SNI_MAX]; /* "" when none */

    enum conn_state state;
    sx_tls_reason reason;
    int sys_errno;
    unsigned long ssl_err;

    sx_net_connector *connector;
    int fd;
    SSL *ssl;
    int peer_eof; /* the socket reported end of stream */

    int64_t deadline_ms; /* connect + handshake */
    int hs_want;         /* SX_TLS_WANT_* of the connect/handshake */
    int read_want;       /* what the last incomplete read waits for */
    int write_want;      /* what the pending write waits for */

    uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES];
    sx_tls_reason verify_reason; /* set by the chain check */
    int verify_ran;

    uint8_t finished[SX_TLS_MAX_FINISHED];
    size_t finished_len;
    int alpn_agreed;

    /* coalescing (sx_tls_set_coalesce): records OpenSSL writes are
     * gathered here and sent by sx_tls_push(), several per send() */
    int coalesce;
    uint8_t *obuf;
    size_t olen, ooff;

    size_t rlen; /* bytes of the block being read */
    size_t wlen; /* bytes of the pending block, 0 when none */
    size_t woff; /* bytes of it already sent */
    uint8_t rbuf[BLOCK];
    uint8_t wbuf[BLOCK];
};

/* ---- reasons ---- */

int sx_tls_reason_error(sx_tls_reason r)
{
    switch (r) {
    case SX_TLS_R_NONE:
        return SIMPLEX_OK;
    case SX_TLS_R_RESOLVE:
        return SIMPLEX_ERR_RESOLVE;
    case SX_TLS_R_CONNECT:
        return SIMPLEX_ERR_CONNECT;
    case SX_TLS_R_TIMEOUT:
        return SIMPLEX_ERR_TIMEOUT;
    case SX_TLS_R_CLOSED:
        return SIMPLEX_ERR_CLOSED;
    case SX_TLS_R_IO:
        return SIMPLEX_ERR_IO;
    case SX_TLS_R_HANDSHAKE:
    case SX_TLS_R_PROTOCOL:
        return SIMPLEX_ERR_TLS;
    case SX_TLS_R_CHAIN_LENGTH:
        return SIMPLEX_ERR_CERT_CHAIN;
    case SX_TLS_R_CHAIN_BROKEN:
    case SX_TLS_R_CERT_INVALID:
        return SIMPLEX_ERR_CERT_INVALID;
    case SX_TLS_R_IDENTITY:
        return SIMPLEX_ERR_SERVER_IDENTITY;
    case SX_TLS_R_TRUNCATED:
        return SIMPLEX_ERR_TRUNCATED;
    case SX_TLS_R_NOMEM:
        return SIMPLEX_ERR_NOMEM;
    case SX_TLS_R_INTERNAL:
        return SIMPLEX_ERR_INTERNAL;
    }
    return SIMPLEX_ERR_INTERNAL;
}

const char *sx_tls_reason_name(sx_tls_reason r)
{
    switch (r) {
    case SX_TLS_R_NONE:
        return "none";
    case SX_TLS_R_RESOLVE:
        return "host name did not resolve";
    case SX_TLS_R_CONNECT:
        return "TCP connection failed";
    case SX_TLS_R_TIMEOUT:
        return "timed out";
    case SX_TLS_R_HANDSHAKE:
        return "TLS handshake failed";
    case SX_TLS_R_CHAIN_LENGTH:
        return "server certificate chain length not 2..4";
    case SX_TLS_R_CHAIN_BROKEN:
        return "server certificate chain broken";
    case SX_TLS_R_CERT_INVALID:
        return "server certificate not valid";
    case SX_TLS_R_IDENTITY:
        return "server identity does not match the key hash";
    case SX_TLS_R_CLOSED:
        return "connection closed by the server";
    case SX_TLS_R_TRUNCATED:
        return "connection closed inside a block";
    case SX_TLS_R_IO:
        return "socket error";
    case SX_TLS_R_PROTOCOL:
        return "TLS protocol error";
    case SX_TLS_R_NOMEM:
        return "out of memory";
    case SX_TLS_R_INTERNAL:
        return "internal error";
    }
    return "unknown";
}

/* ---- chain check ---- */

/* Non-zero when now lies within the certificate's validity period. */
static int cert_time_ok(X509 *x)
{
    /* X509_cmp_current_time: -1 earlier than now, 1 later, 0 error */
    return X509_cmp_current_time(X509_get0_notBefore(x)) < 0 &&
           X509_cmp_current_time(X509_get0_notAfter(x)) > 0;
}

/* Whether an intermediate issuer may sign certificates at depth level
 * (0 for the issuer of the leaf): CA in basic constraints, certificate
 * signing in key usage when present, path length not exceeded. */
static int ca_ok(X509 *x, long level)
{
    uint32_t fl = X509_get_extension_flags(x);
    long pl;
    if (fl & EXFLAG_INVALID)
        return 0;
    if (!(fl & EXFLAG_BCONS) || !(fl & EXFLAG_CA))
        return 0;
    if ((fl & EXFLAG_KUSAGE) && !(X509_get_key_usage(x) & KU_KEY_CERT_SIGN))
        return 0;
    pl = X509_get_pathlen(x);
    if (pl >= 0 && pl < level)
        return 0;
    return 1;
}

/*
 * The rules, as the reference client applies them:
 *  - 2, 3 or 4 certificates, leaf first;
 *  - the identity certificate is the second one in every case (with 2 it is
 *    the CA itself; with 3 the one after the leaf, the last being the
 *    operator's; with 4 the same, the third being a network certificate);
 *    its SHA-256 fingerprint over DER must equal the key hash;
 *  - the last certificate is the trust anchor: nothing is checked on it but
 *    its key;
 *  - every other certificate must be within its validity period and be
 *    issued (issuer name = next subject name) and signed by the next one;
 *  - the leaf must be X.509 v3; every intermediate issuer must be a CA.
 * The reference looks issuers up by name in any order; here they must come
 * in order, which every server chain does.
 */
static sx_tls_reason check_chain(X509 *const *cert, size_t n,
                                 const uint8_t *id_fp, const uint8_t *key_hash)
{
    size_t i;

    if (n < 2 || n > 4)
        return SX_TLS_R_CHAIN_LENGTH;
    for (i = 0; i < n; i++)
        if (!cert[i])
            return SX_TLS_R_CHAIN_BROKEN;
    /* id_fp NULL: the identity was checked already */
    if (id_fp && sx_memeq_ct(id_fp, key_hash, SIMPLEX_KEY_HASH_BYTES) != 0)
        return SX_TLS_R_IDENTITY;

    if (X509_get_version(cert[0]) != X509_VERSION_3)
        return SX_TLS_R_CERT_INVALID;
    for (i = 0; i + 1 < n; i++) {
        X509 *sub = cert[i], *iss = cert[i + 1];
        EVP_PKEY *pk;
        if (!cert_time_ok(sub))
            return SX_TLS_R_CERT_INVALID;
        if (X509_NAME_cmp(X509_get_issuer_name(sub),
                          X509_get_subject_name(iss)) != 0)
            return SX_TLS_R_CHAIN_BROKEN;
        if (i + 2 < n && !ca_ok(iss, (long)i))
            return SX_TLS_R_CERT_INVALID;
        pk = X509_get0_pubkey(iss);
        if (!pk || X509_verify(sub, pk) != 1)
            return SX_TLS_R_CHAIN_BROKEN;
    }
    return SX_TLS_R_NONE;
}

sx_tls_reason
sx_tls_chain_identity_der(const uint8_t *const *der, const size_t *der_len,
                          size_t n,
                          const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES])
{
    uint8_t fp[SX_SHA256_BYTES];
    int same;

    if (!key_hash || (n && (!der || !der_len)))
        return SX_TLS_R_INTERNAL;
    if (n < 2 || n > 4)
        return SX_TLS_R_CHAIN_LENGTH;
    if (!der[1] || der_len[1] == 0)
        return SX_TLS_R_CHAIN_BROKEN;
    /* the fingerprint is over the certificate's bytes as sent */
    if (sx_sha256(fp, der[1], der_len[1]) != SIMPLEX_OK)
        return SX_TLS_R_INTERNAL;
    same = sx_memeq_ct(fp, key_hash, SIMPLEX_KEY_HASH_BYTES) == 0;
    sx_memzero(fp, sizeof fp);
    return same ? SX_TLS_R_NONE : SX_TLS_R_IDENTITY;
}

sx_tls_reason
sx_tls_check_chain_der(const uint8_t *const *der, const size_t *der_len,
                       size_t n, const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES])
{
    X509 *cert[4] = {NULL, NULL, NULL, NULL};
    sx_tls_reason r;
    size_t i;

    r = sx_tls_chain_identity_der(der, der_len, n, key_hash);
    if (r != SX_TLS_R_NONE && r != SX_TLS_R_IDENTITY)
        return r;
    /* parse all of them first: malformed beats a wrong identity */
    for (i = 0; i < n; i++) {
        const unsigned char *p = der[i];
        if (!p || der_len[i] == 0 || der_len[i] > 65536) {
            r = SX_TLS_R_CHAIN_BROKEN;
            break;
        }
        cert[i] = d2i_X509(NULL, &p, (long)der_len[i]);
        if (!cert[i] || p != der[i] + der_len[i]) {
            r = SX_TLS_R_CHAIN_BROKEN;
            break;
        }
    }
    if (r == SX_TLS_R_NONE)
        r = check_chain(cert, n, NULL, key_hash);
    for (i = 0; i < n; i++)
        X509_free(cert[i]);
    ERR_clear_error();
    return r;
}

/* OpenSSL's certificate verification replaced by check_chain(). */
static int verify_cb(X509_STORE_CTX *xs, void *arg)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(
        xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    sx_tls_conn *c = ssl ? SSL_get_app_data(ssl) : NULL;
    STACK_OF(X509) *sk = X509_STORE_CTX_get0_untrusted(xs);
    X509 *leaf = X509_STORE_CTX_get0_cert(xs);
    X509 *cert[4];
    int n, i;
    sx_tls_reason r;

    (void)arg;
    if (!c)
        return 0;
    c->verify_ran = 1;
    n = sk ? sk_X509_num(sk) : 0;
    /* on the client the untrusted stack is the whole peer chain, leaf
     * first; be defensive about that */
    if (n < 1 || !leaf || sk_X509_value(sk, 0) != leaf) {
        r = n < 1 ? SX_TLS_R_CHAIN_LENGTH : SX_TLS_R_INTERNAL;
    } else if (n < 2 || n > 4) {
        r = SX_TLS_R_CHAIN_LENGTH;
    } else {
        uint8_t fp[EVP_MAX_MD_SIZE];
        unsigned fp_len = 0;
        for (i = 0; i < n; i++)
            cert[i] = sk_X509_value(sk, i);
        /* over the DER OpenSSL encodes for the parsed certificate, which
         * is the bytes sent for any canonically encoded certificate */
        if (X509_digest(cert[1], EVP_sha256(), fp, &fp_len) != 1 ||
            fp_len != SIMPLEX_KEY_HASH_BYTES)
            r = SX_TLS_R_INTERNAL;
        else
            r = check_chain(cert, (size_t)n, fp, c->key_hash);
        sx_memzero(fp, sizeof fp);
    }
    c->verify_reason = r;
    if (r != SX_TLS_R_NONE) {
        X509_STORE_CTX_set_error(xs, r == SX_TLS_R_IDENTITY
                                         ? X509_V_ERR_CERT_UNTRUSTED
                                         : X509_V_ERR_CERT_REJECTED);
        return 0;
    }
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

/* ---- a socket BIO that never raises SIGPIPE ---- */

/* four 16 KB records and their overhead */
#define OBUF_CAP (4 * (16384 + 512))

/* Sends the gathered records: 0 when all went, 1 when the socket is
 * full, -1 on a socket error (c->sys_errno). */
static int obuf_send(sx_tls_conn *c)
{
    while (c->ooff < c->olen) {
        int st;
        long n = sx_net_send(c->fd, c->obuf + c->ooff, c->olen - c->ooff, &st);
        if (n > 0) {
            c->ooff += (size_t)n;
            continue;
        }
        if (st == SX_NET_AGAIN)
            return 1;
        c->sys_errno = errno;
        return -1;
    }
    c->olen = c->ooff = 0;
    return 0;
}

static int bio_write(BIO *b, const char *buf, int len)
{
    sx_tls_conn *c = BIO_get_data(b);
    int st;
    long n;
    BIO_clear_retry_flags(b);
    if (!c || c->fd < 0 || len < 0)
        return -1;
    if (c->coalesce && c->obuf) {
        size_t l = (size_t)len;
        if (c->olen + l > OBUF_CAP) {
            int r = obuf_send(c);
            if (r < 0)
                return -1;
            if (c->ooff > 0) { /* keep the unsent tail at the start */
                memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
                c->olen -= c->ooff;
                c->ooff = 0;
            }
        }
        if (c->olen + l <= OBUF_CAP) {
            memcpy(c->obuf + c->olen, buf, l);
            c->olen += l;
            return len;
        }
        if (c->olen > 0) {
            BIO_set_retry_write(b);
            return -1;
        }
        /* larger than the buffer and nothing gathered: straight out */
    }
    n = sx_net_send(c->fd, buf, (size_t)len, &st);
    if (n > 0)
        return (int)n;
    if (st == SX_NET_AGAIN) {
        BIO_set_retry_write(b);
        return -1;
    }
    c->sys_errno = errno;
    return -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
    sx_tls_conn *c = BIO_get_data(b);
    int st;
    long n;
    BIO_clear_retry_flags(b);
    if (!c || c->fd < 0 || len < 0)
        return -1;
    if (len == 0)
        return 0;
    n = sx_net_recv(c->fd, buf, (size_t)len, &st);
    if (n > 0)
        return (int)n;
    if (st == SX_NET_AGAIN) {
        BIO_set_retry_read(b);
        return -1;
    }
    if (st == SX_NET_EOF) {
        c->peer_eof = 1;
        return 0;
    }
    c->sys_errno = errno;
    return -1;
}

static int bio_puts(BIO *b, const char *s)
{
    return bio_write(b, s, (int)strlen(s));
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b;
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing buffered here */
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_data(b, NULL);
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

/* ---- context ---- */

int sx_tls_ctx_new(sx_tls_ctx **out)
{
    sx_tls_ctx *t;
    SSL_CTX *s;
    int ok = 1, bio_index;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    t = sx_calloc(1, sizeof *t);
    if (!t)
        return SIMPLEX_ERR_NOMEM;
    ERR_clear_error();
    s = SSL_CTX_new(TLS_client_method());
    t->ssl_ctx = s;
    bio_index = BIO_get_new_index();
    if (bio_index > 0)
        t->bio_method = BIO_meth_new(bio_index | BIO_TYPE_SOURCE_SINK,
                                     "sx_tls_socket");
    if (!s || !t->bio_method) {
        sx_tls_ctx_free(t);
        ERR_clear_error();
        return SIMPLEX_ERR_NOMEM;
    }
    ok &= BIO_meth_set_write(t->bio_method, bio_write);
    ok &= BIO_meth_set_read(t->bio_method, bio_read);
    ok &= BIO_meth_set_puts(t->bio_method, bio_puts);
    ok &= BIO_meth_set_ctrl(t->bio_method, bio_ctrl);
    ok &= BIO_meth_set_create(t->bio_method, bio_create);
    ok &= BIO_meth_set_destroy(t->bio_method, bio_destroy);

    /* TLS 1.3, or 1.2 with the one matching suite; EdDSA certificates */
    ok &= SSL_CTX_set_min_proto_version(s, TLS1_2_VERSION);
    ok &= SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION);
    ok &= SSL_CTX_set_ciphersuites(s, "TLS_CHACHA20_POLY1305_SHA256");
    ok &= SSL_CTX_set_cipher_list(s, "ECDHE-ECDSA-CHACHA20-POLY1305");
    ok &= (int)SSL_CTX_set1_groups_list(s, "X25519:X448");
    ok &= (int)SSL_CTX_set1_sigalgs_list(s, "ed448:ed25519");
    /* no resumption; the server refuses secure renegotiation over 1.2 */
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_COMPRESSION |
                               SSL_OP_NO_RENEGOTIATION |
                               SSL_OP_LEGACY_SERVER_CONNECT);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_clear_mode(s, SSL_MODE_AUTO_RETRY);
    /* the store stays empty: only our chain check decides */
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(s, verify_cb, NULL);
    if (!ok) {
        sx_tls_ctx_free(t);
        ERR_clear_error();
        return SIMPLEX_ERR_CRYPTO;
    }
    *out = t;
    return SIMPLEX_OK;
}

void sx_tls_ctx_free(sx_tls_ctx *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx->ssl_ctx);
    BIO_meth_free(ctx->bio_method);
    sx_free(ctx);
}

/* ---- connection ---- */

static int fail(sx_tls_conn *c, sx_tls_reason r)
{
    if (c->state != ST_FAILED) {
        c->state = ST_FAILED;
        c->reason = r;
        if (!c->ssl_err)
            c->ssl_err = ERR_peek_last_error();
    }
    ERR_clear_error();
    return sx_tls_reason_error(c->reason);
}

static int failed_result(const sx_tls_conn *c)
{
    return sx_tls_reason_error(c->reason);
}

/* OpenSSL's read buffer: four 16 KB records and their overhead */
#define TLS_READ_BUFFER (4 * (16384 + 512))

/* Creates the SSL object once TCP is connected. */
static int setup_ssl(sx_tls_conn *c, sx_tls_ctx *ctx, const sx_tls_options *o)
{
    BIO *bio;
    c->ssl = SSL_new(ctx->ssl_ctx);
    if (!c->ssl)
        return fail(c, SX_TLS_R_NOMEM);
    SSL_set_app_data(c->ssl, c);
    bio = BIO_new(ctx->bio_method);
    if (!bio)
        return fail(c, SX_TLS_R_NOMEM);
    BIO_set_data(bio, c);
    SSL_set_bio(c->ssl, bio, bio);
    SSL_set_connect_state(c->ssl);
    /* read what the socket has, not a record header then its body: one
     * recv() serves several records (sx_tls_read_block drains complete
     * records OpenSSL holds, and the client steps every connection each
     * turn whatever poll() says) */
    SSL_set_default_read_buffer_len(c->ssl, TLS_READ_BUFFER);
    SSL_set_read_ahead(c->ssl, 1);
    if (!(o && o->no_alpn) &&
        SSL_set_alpn_protos(c->ssl, alpn_smp, ALPN_SMP_WIRE_LEN) != 0)
        return fail(c, SX_TLS_R_NOMEM);
    if (o && o->sni && SSL_set_tlsext_host_name(c->ssl, o->sni) != 1)
        return fail(c, SX_TLS_R_HANDSHAKE);
    return SIMPLEX_OK;
}

static int tcp_connected(sx_tls_conn *c)
{
    sx_tls_options o;
    c->fd = sx_net_connector_take_fd(c->connector);
    sx_net_connector_free(c->connector);
    c->connector = NULL;
    if (c->fd < 0)
        return fail(c, SX_TLS_R_INTERNAL);
    memset(&o, 0, sizeof o);
    o.no_alpn = c->no_alpn;
    o.sni = c->sni[0] ? c->sni : NULL;
    c->state = ST_HANDSHAKE;
    return setup_ssl(c, c->ctx, &o);
}

/* A new connection in state CONNECTING, before any socket exists. */
static int conn_new(sx_tls_conn **out, sx_tls_ctx *ctx,
                    const uint8_t *key_hash, const sx_tls_options *opts)
{
    sx_tls_conn *c;
    int timeout;

    if (!ctx || !key_hash)
        return SIMPLEX_ERR_INVALID_ARG;
    if (opts && opts->sni && strlen(opts->sni) >= SNI_MAX)
        return SIMPLEX_ERR_INVALID_ARG;
    if (opts && opts->connect_timeout_ms < 0)
        return SIMPLEX_ERR_INVALID_ARG;
    c = sx_calloc(1, sizeof *c);
    if (!c)
        return SIMPLEX_ERR_NOMEM;
    c->ctx = ctx;
    if (opts) {
        c->no_alpn = opts->no_alpn != 0;
        if (opts->sni)
            memcpy(c->sni, opts->sni, strlen(opts->sni) + 1);
    }
    c->fd = -1;
    c->state = ST_CONNECTING;
    memcpy(c->key_hash, key_hash, SIMPLEX_KEY_HASH_BYTES);
    timeout = opts && opts->connect_timeout_ms
                  ? opts->connect_timeout_ms
                  : SX_TLS_DEFAULT_CONNECT_TIMEOUT_MS;
    c->deadline_ms = sx_net_now_ms() + timeout;
    c->hs_want = SX_TLS_WANT_WRITE;
    *out = c;
    return SIMPLEX_OK;
}

int sx_tls_connect_start(sx_tls_conn **out, sx_tls_ctx *ctx, const char *host,
                         uint16_t port,
                         const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES],
                         const sx_tls_options *opts)
{
    sx_tls_conn *c = NULL;
    int rc;

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    if (!host || !host[0])
        return SIMPLEX_ERR_INVALID_ARG;
    rc = conn_new(&c, ctx, key_hash, opts);
    if (rc < 0)
        return rc;

    rc = sx_net_connector_start(&c->connector, host,
                                port ? port : SX_TLS_DEFAULT_PORT);
    switch (rc) {
    case SX_NET_OK:
        /* a connect under way may have completed already (loopback);
         * a name being resolved is left alone: its outcome, good or bad,
         * comes from sx_tls_step() */
        if (sx_net_connector_events(c->connector) == POLLOUT &&
            sx_net_connector_step(c->connector) == SX_NET_OK) {
            rc = tcp_connected(c);
            if (rc < 0)
                break;
        }
        *out = c;
        return SIMPLEX_OK;
    case SX_NET_E_RESOLVE:
        rc = fail(c, SX_TLS_R_RESOLVE);
        break;
    case SX_NET_E_CONNECT:
        c->sys_errno = sx_net_connector_last_errno(c->connector);
        rc = fail(c, SX_TLS_R_CONNECT);
        break;
    case SX_NET_E_NOMEM:
        rc = fail(c, SX_TLS_R_NOMEM);
        break;
    case SX_NET_E_ARG:
        rc = SIMPLEX_ERR_INVALID_ARG;
        break;
    default:
        rc = fail(c, SX_TLS_R_IO);
        break;
    }
    sx_tls_free(c);
    return rc;
}

int sx_tls_connect_fd(sx_tls_conn **out, sx_tls_ctx *ctx, int fd,
                      const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES],
                      const sx_tls_options *opts)
{
    sx_tls_conn *c = NULL;
    sx_tls_options o;
    int rc;

    if (out)
        *out = NULL;
    if (!out || fd < 0) {
        sx_net_close(fd);
        return SIMPLEX_ERR_INVALID_ARG;
    }
    rc = conn_new(&c, ctx, key_hash, opts);
    if (rc < 0) {
        sx_net_close(fd);
        return rc;
    }
    c->fd = fd;
    if (sx_net_set_nonblocking(fd) != 0) {
        c->sys_errno = errno;
        rc = fail(c, SX_TLS_R_IO);
        sx_tls_free(c);
        return rc;
    }
    memset(&o, 0, sizeof o);
    o.no_alpn = c->no_alpn;
    o.sni = c->sni[0] ? c->sni : NULL;
    c->state = ST_HANDSHAKE;
    rc = setup_ssl(c, ctx, &o);
    if (rc < 0) {
        sx_tls_free(c);
        return rc;
    }
    *out = c;
    return SIMPLEX_OK;
}

/* Classifies a failed SSL_* call; returns WANT_* or a negative error. */
static int ssl_result(sx_tls_conn *c, int ret, sx_tls_reason otherwise)
{
    int e = SSL_get_error(c->ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return SX_TLS_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return SX_TLS_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return fail(c, SX_TLS_R_CLOSED);
    case SSL_ERROR_SYSCALL:
        if (c->peer_eof)
            return fail(c, SX_TLS_R_CLOSED);
        if (otherwise == SX_TLS_R_HANDSHAKE && c->sys_errno == 0)
            return fail(c, SX_TLS_R_HANDSHAKE);
        return fail(c, SX_TLS_R_IO);
    default:
        c->ssl_err = ERR_peek_last_error();
        if (c->peer_eof)
            return fail(c, SX_TLS_R_CLOSED);
        return fail(c, otherwise);
    }
}

static int handshake(sx_tls_conn *c)
{
    int ret;
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;

    ERR_clear_error();
    ret = SSL_do_handshake(c->ssl);
    if (ret != 1) {
        int r;
        if (c->verify_ran && c->verify_reason != SX_TLS_R_NONE)
            return fail(c, c->verify_reason);
        r = ssl_result(c, ret, SX_TLS_R_HANDSHAKE);
        if (r < 0 && c->reason == SX_TLS_R_CLOSED)
            c->reason = SX_TLS_R_HANDSHAKE; /* closed during handshake */
        if (r > 0)
            c->hs_want = r;
        return r < 0 ? failed_result(c) : r;
    }
    /* a handshake that never checked the chain must not pass */
    if (!c->verify_ran || c->verify_reason != SX_TLS_R_NONE)
        return fail(c, c->verify_ran ? c->verify_reason : SX_TLS_R_INTERNAL);
    c->finished_len = SSL_get_finished(c->ssl, c->finished, sizeof c->finished);
    if (c->finished_len == 0 || c->finished_len > sizeof c->finished)
        return fail(c, SX_TLS_R_INTERNAL);
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    c->alpn_agreed = alpn && alpn_len == ALPN_SMP_WIRE_LEN - 1 &&
                     memcmp(alpn, alpn_smp + 1, alpn_len) == 0;
    c->state = ST_OPEN;
    c->hs_want = 0;
    return SX_TLS_OK;
}

int sx_tls_step(sx_tls_conn *c)
{
    int rc;
    if (!c)
        return SIMPLEX_ERR_INVALID_ARG;
    switch (c->state) {
    case ST_OPEN:
        return SX_TLS_OK;
    case ST_FAILED:
        return failed_result(c);
    case ST_CLOSED:
        return SIMPLEX_ERR_INVALID_ARG;
    case ST_CONNECTING:
    case ST_HANDSHAKE:
        break;
    }
    if (sx_net_now_ms() >= c->deadline_ms)
        return fail(c, SX_TLS_R_TIMEOUT);
    if (c->state == ST_CONNECTING) {
        rc = sx_net_connector_step(c->connector);
        if (rc == SX_NET_AGAIN) {
            /* resolving: the connector's fd turns readable when done */
            c->hs_want = sx_net_connector_events(c->connector) == POLLIN
                             ? SX_TLS_WANT_READ
                             : SX_TLS_WANT_WRITE;
            return c->hs_want;
        }
        if (rc != SX_NET_OK) {
            c->sys_errno = sx_net_connector_last_errno(c->connector);
            return fail(c, rc == SX_NET_E_CONNECT   ? SX_TLS_R_CONNECT
                           : rc == SX_NET_E_RESOLVE ? SX_TLS_R_RESOLVE
                           : rc == SX_NET_E_NOMEM   ? SX_TLS_R_NOMEM
                                                    : SX_TLS_R_IO);
        }
        rc = tcp_connected(c);
        if (rc < 0)
            return rc;
    }
    return handshake(c);
}

int sx_tls_fd(const sx_tls_conn *c)
{
    if (!c)
        return -1;
    if (c->state == ST_CONNECTING)
        return sx_net_connector_fd(c->connector);
    if (c->state == ST_HANDSHAKE || c->state == ST_OPEN)
        return c->fd;
    return -1;
}

static short want_events(int want)
{
    return want == SX_TLS_WANT_WRITE ? POLLOUT
           : want == SX_TLS_WANT_READ ? POLLIN
                                      : 0;
}

short sx_tls_poll_events(const sx_tls_conn *c)
{
    short ev;
    if (!c)
        return 0;
    switch (c->state) {
    case ST_CONNECTING:
        return sx_net_connector_events(c->connector);
    case ST_HANDSHAKE:
        return want_events(c->hs_want ? c->hs_want : SX_TLS_WANT_READ);
    case ST_OPEN:
        /* always ready to read the next block */
        ev = want_events(c->read_want ? c->read_want : SX_TLS_WANT_READ);
        if (c->wlen)
            ev |= want_events(c->write_want ? c->write_want
                                            : SX_TLS_WANT_WRITE);
        return ev;
    default:
        return 0;
    }
}

int sx_tls_timeout_ms(const sx_tls_conn *c)
{
    int64_t left;
    if (!c || (c->state != ST_CONNECTING && c->state != ST_HANDSHAKE))
        return -1;
    left = c->deadline_ms - sx_net_now_ms();
    if (left <= 0)
        return 0;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

int sx_tls_is_open(const sx_tls_conn *c)
{
    return c && c->state == ST_OPEN;
}

sx_tls_reason sx_tls_last_reason(const sx_tls_conn *c)
{
    return c ? c->reason : SX_TLS_R_NONE;
}

int sx_tls_sys_errno(const sx_tls_conn *c)
{
    return c ? c->sys_errno : 0;
}

unsigned long sx_tls_ssl_error(const sx_tls_conn *c)
{
    return c ? c->ssl_err : 0;
}

size_t sx_tls_unique(const sx_tls_conn *c, uint8_t *out)
{
    if (!c || !out || c->state != ST_OPEN)
        return 0;
    memcpy(out, c->finished, c->finished_len);
    return c->finished_len;
}

int sx_tls_alpn_agreed(const sx_tls_conn *c)
{
    return c && c->state == ST_OPEN && c->alpn_agreed;
}

int sx_tls_version(const sx_tls_conn *c)
{
    if (!c || c->state != ST_OPEN)
        return 0;
    return SSL_version(c->ssl);
}

const char *sx_tls_cipher(const sx_tls_conn *c)
{
    const SSL_CIPHER *ci;
    const char *name;
    if (!c || c->state != ST_OPEN)
        return "";
    ci = SSL_get_current_cipher(c->ssl);
    name = ci ? SSL_CIPHER_standard_name(ci) : NULL;
    return name ? name : "";
}

int sx_tls_peer_key(const sx_tls_conn *c, uint8_t *out, size_t *out_len)
{
    X509 *leaf;
    EVP_PKEY *pk;
    int type;
    size_t len = SX_TLS_MAX_RAW_KEY;

    if (!c || !out || !out_len)
        return SIMPLEX_ERR_INVALID_ARG;
    *out_len = 0;
    if (c->state != ST_OPEN)
        return SIMPLEX_ERR_INVALID_ARG;
    leaf = SSL_get0_peer_certificate(c->ssl);
    pk = leaf ? X509_get0_pubkey(leaf) : NULL;
    if (!pk)
        return SIMPLEX_ERR_KEY;
    switch (EVP_PKEY_get_id(pk)) {
    case EVP_PKEY_ED25519:
        type = SX_TLS_KEY_ED25519;
        break;
    case EVP_PKEY_ED448:
        type = SX_TLS_KEY_ED448;
        break;
    default:
        return SX_TLS_KEY_OTHER;
    }
    if (EVP_PKEY_get_raw_public_key(pk, out, &len) != 1) {
        ERR_clear_error();
        return SIMPLEX_ERR_CRYPTO;
    }
    *out_len = len;
    return type;
}

size_t sx_tls_peer_chain_len(const sx_tls_conn *c)
{
    STACK_OF(X509) *sk;
    int n;
    if (!c || c->state != ST_OPEN)
        return 0;
    /* on the client this chain includes the leaf */
    sk = SSL_get_peer_cert_chain(c->ssl);
    n = sk ? sk_X509_num(sk) : 0;
    return n > 0 ? (size_t)n : 0;
}

int sx_tls_peer_cert_der(const sx_tls_conn *c, size_t idx, uint8_t *out,
                         size_t cap, size_t *out_len)
{
    STACK_OF(X509) *sk;
    X509 *x;
    int len;
    unsigned char *p;

    if (!c || !out_len)
        return SIMPLEX_ERR_INVALID_ARG;
    *out_len = 0;
    if (idx >= sx_tls_peer_chain_len(c))
        return SIMPLEX_ERR_INVALID_ARG;
    sk = SSL_get_peer_cert_chain(c->ssl);
    x = sk_X509_value(sk, (int)idx);
    len = x ? i2d_X509(x, NULL) : -1;
    if (len <= 0) {
        ERR_clear_error();
        return SIMPLEX_ERR_CRYPTO;
    }
    *out_len = (size_t)len;
    if (!out)
        return SIMPLEX_OK;
    if (cap < (size_t)len)
        return SIMPLEX_ERR_BUFFER_TOO_SMALL;
    p = out;
    if (i2d_X509(x, &p) != len) {
        ERR_clear_error();
        return SIMPLEX_ERR_CRYPTO;
    }
    return SIMPLEX_OK;
}

/* ---- blocks ---- */

int sx_tls_read_block(sx_tls_conn *c, uint8_t *out, size_t cap)
{
    if (!c || !out || cap < BLOCK)
        return SIMPLEX_ERR_INVALID_ARG;
    if (c->state == ST_FAILED)
        return failed_result(c);
    if (c->state != ST_OPEN)
        return SIMPLEX_ERR_INVALID_ARG;
    if (c->rlen == 0) {
        /* The usual case: the block is one whole record, read straight
         * into out (no copy of 16 KB through rbuf and no wipe of it).
         * Part of a block moves to rbuf, out is not kept between calls. */
        size_t n = 0;
        int ret;
        ERR_clear_error();
        ret = SSL_read_ex(c->ssl, out, BLOCK, &n);
        if (ret == 1 && n == BLOCK) {
            c->read_want = 0;
            return SX_TLS_OK;
        }
        if (ret == 1) {
            memcpy(c->rbuf, out, n);
            sx_memzero(out, n);
            c->rlen = n;
        } else {
            ret = ssl_result(c, 0, SX_TLS_R_PROTOCOL);
            if (ret > 0) {
                c->read_want = ret;
                return ret;
            }
            return failed_result(c);
        }
    }
    while (c->rlen < BLOCK) {
        size_t n = 0;
        int ret;
        ERR_clear_error();
        ret = SSL_read_ex(c->ssl, c->rbuf + c->rlen, BLOCK - c->rlen, &n);
        if (ret == 1) {
            c->rlen += n;
            continue;
        }
        ret = ssl_result(c, 0, SX_TLS_R_PROTOCOL);
        if (ret > 0) {
            c->read_want = ret;
            return ret;
        }
        if (c->reason == SX_TLS_R_CLOSED && c->rlen)
            c->reason = SX_TLS_R_TRUNCATED;
        return failed_result(c);
    }
    memcpy(out, c->rbuf, BLOCK);
    sx_memzero(c->rbuf, BLOCK);
    c->rlen = 0;
    c->read_want = 0;
    return SX_TLS_OK;
}

/* Sends the gathered records: SX_TLS_OK, WANT_WRITE or a failure. */
static int push_gathered(sx_tls_conn *c)
{
    int r;
    if (c->olen <= c->ooff)
        return SX_TLS_OK;
    r = obuf_send(c);
    if (r < 0)
        return fail(c, SX_TLS_R_IO);
    if (r > 0) {
        c->write_want = SX_TLS_WANT_WRITE;
        return SX_TLS_WANT_WRITE;
    }
    return SX_TLS_OK;
}

int sx_tls_flush(sx_tls_conn *c)
{
    int rc;
    if (!c)
        return SIMPLEX_ERR_INVALID_ARG;
    if (c->state == ST_FAILED)
        return failed_result(c);
    if (c->state != ST_OPEN)
        return SIMPLEX_ERR_INVALID_ARG;
    if ((rc = push_gathered(c)) != SX_TLS_OK)
        return rc;
    while (c->woff < c->wlen) {
        size_t n = 0;
        int ret;
        ERR_clear_error();
        ret = SSL_write_ex(c->ssl, c->wbuf + c->woff, c->wlen - c->woff, &n);
        if (ret == 1) {
            c->woff += n;
            continue;
        }
        ret = ssl_result(c, 0, SX_TLS_R_PROTOCOL);
        if (ret > 0)
            c->write_want = ret;
        return ret;
    }
    if (c->wlen) {
        sx_memzero(c->wbuf, c->wlen);
        c->wlen = c->woff = 0;
        /* the rest of the block may have been gathered */
        if ((rc = push_gathered(c)) != SX_TLS_OK)
            return rc;
    }
    c->write_want = 0;
    return SX_TLS_OK;
}

int sx_tls_write_block(sx_tls_conn *c, const uint8_t *block, size_t len)
{
    if (!c || !block || len != BLOCK)
        return SIMPLEX_ERR_INVALID_ARG;
    if (c->state == ST_FAILED)
        return failed_result(c);
    if (c->state != ST_OPEN)
        return SIMPLEX_ERR_INVALID_ARG;
    if (c->wlen)
        return SIMPLEX_ERR_ALREADY;
    {
        /* The usual case: the record goes out at once from the caller's
         * block. Only a block the socket did not take is copied to wbuf
         * (for sx_tls_flush; SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER allows
         * the retry from another address), saving a copy and a wipe. */
        size_t off = 0;
        for (;;) {
            size_t n = 0;
            int ret;
            ERR_clear_error();
            ret = SSL_write_ex(c->ssl, block + off, BLOCK - off, &n);
            if (ret == 1) {
                off += n;
                if (off < BLOCK)
                    continue;
                c->write_want = 0;
                return SX_TLS_OK;
            }
            ret = ssl_result(c, 0, SX_TLS_R_PROTOCOL);
            memcpy(c->wbuf, block, BLOCK);
            c->wlen = BLOCK;
            c->woff = off;
            if (ret > 0)
                c->write_want = ret;
            return ret;
        }
    }
}

int sx_tls_write_pending(const sx_tls_conn *c)
{
    return c && (c->wlen != 0 || c->olen > c->ooff);
}

int sx_tls_block_pending(const sx_tls_conn *c)
{
    return c && c->wlen != 0;
}

int sx_tls_set_coalesce(sx_tls_conn *c, int on)
{
    if (!c || c->state != ST_OPEN)
        return SIMPLEX_ERR_INVALID_ARG;
    if (on && !c->obuf) {
        c->obuf = sx_malloc(OBUF_CAP);
        if (!c->obuf)
            return SIMPLEX_ERR_NOMEM;
    }
    if (!on && c->olen > c->ooff)
        return SIMPLEX_ERR_ALREADY; /* push first */
    c->coalesce = on != 0;
    return SIMPLEX_OK;
}

void sx_tls_close(sx_tls_conn *c)
{
    if (!c)
        return;
    if (c->state == ST_OPEN && c->ssl) {
        ERR_clear_error();
        (void)SSL_shutdown(c->ssl); /* close_notify, never waits */
        ERR_clear_error();
        if (c->coalesce && c->obuf)
            (void)obuf_send(c); /* best effort, as the direct write */
    }
    if (c->state != ST_FAILED)
        c->state = ST_CLOSED;
    sx_net_close(c->fd);
    c->fd = -1;
    sx_net_connector_free(c->connector);
    c->connector = NULL;
}

void sx_tls_free(sx_tls_conn *c)
{
    if (!c)
        return;
    sx_tls_close(c);
    SSL_free(c->ssl); /* frees the BIO too */
    c->ssl = NULL;
    if (c->obuf)
        sx_free_secret(c->obuf, OBUF_CAP);
    c->obuf = NULL;
    ERR_clear_error();
    sx_free_secret(c, sizeof *c);
}

/* ---- blocking helpers ---- */

int sx_tls_wait(const sx_tls_conn *c, int want, int timeout_ms)
{
    struct pollfd p;
    int r;
    if (!c)
        return SIMPLEX_ERR_INVALID_ARG;
    p.fd = sx_tls_fd(c);
    if (p.fd < 0)
        return SIMPLEX_ERR_INVALID_ARG;
    p.events = want_events(want);
    if (!p.events)
        return SIMPLEX_ERR_INVALID_ARG;
    p.revents = 0;
    for (;;) {
        r = poll(&p, 1, timeout_ms);
        if (r >= 0 || errno != EINTR)
            break;
    }
    if (r < 0)
        return SIMPLEX_ERR_IO;
    return r == 0 ? 1 : SX_TLS_OK;
}

int sx_tls_connect_sync(sx_tls_conn **out, sx_tls_ctx *ctx, const char *host,
                        uint16_t port,
                        const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES],
                        const sx_tls_options *opts)
{
    sx_tls_conn *c = NULL;
    int rc;
    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    *out = NULL;
    rc = sx_tls_connect_start(&c, ctx, host, port, key_hash, opts);
    if (rc < 0)
        return rc;
    for (;;) {
        rc = sx_tls_step(c);
        if (rc <= 0)
            break;
        /* a timeout of the wait is caught by the next step */
        rc = sx_tls_wait(c, rc, sx_tls_timeout_ms(c));
        if (rc < 0) {
            c->sys_errno = errno;
            rc = fail(c, SX_TLS_R_IO);
            break;
        }
    }
    if (rc < 0) {
        sx_tls_free(c);
        return rc;
    }
    *out = c;
    return SIMPLEX_OK;
}

static int remaining(int64_t deadline)
{
    int64_t left;
    if (deadline < 0)
        return -1;
    left = deadline - sx_net_now_ms();
    return left <= 0 ? 0 : left > 0x7fffffff ? 0x7fffffff : (int)left;
}

int sx_tls_read_block_sync(sx_tls_conn *c, uint8_t *out, size_t cap,
                           int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : sx_net_now_ms() + timeout_ms;
    for (;;) {
        int rc = sx_tls_read_block(c, out, cap);
        if (rc <= 0)
            return rc;
        rc = sx_tls_wait(c, rc, remaining(deadline));
        if (rc == 1)
            return fail(c, SX_TLS_R_TIMEOUT);
        if (rc < 0)
            return fail(c, SX_TLS_R_IO);
    }
}

int sx_tls_write_block_sync(sx_tls_conn *c, const uint8_t *block, size_t len,
                            int timeout_ms)
{
    int64_t deadline = timeout_ms < 0 ? -1 : sx_net_now_ms() + timeout_ms;
    int rc = sx_tls_write_block(c, block, len);
    if (rc == SX_TLS_OK && sx_tls_write_pending(c))
        rc = sx_tls_flush(c); /* coalescing: gathered, not sent yet */
    while (rc > 0) {
        rc = sx_tls_wait(c, rc, remaining(deadline));
        if (rc == 1)
            return fail(c, SX_TLS_R_TIMEOUT);
        if (rc < 0)
            return fail(c, SX_TLS_R_IO);
        rc = sx_tls_flush(c);
    }
    return rc;
}
