/*
 * smp-test-server credentials: an offline CA (self-signed Ed25519) and the
 * online server certificate it signs, kept in DIR as PEM files so the
 * server address survives a restart; the TLS context; the signed DH key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "srv.h"

static EVP_PKEY *gen_ed25519(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *val)
{
    X509V3_CTX v3;
    X509_EXTENSION *ext;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    ext = X509V3_EXT_conf_nid(NULL, &v3, nid, val);
    if (!ext)
        return -1;
    int ok = X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

static X509 *make_cert(EVP_PKEY *pub, const char *cn, X509 *issuer,
                       EVP_PKEY *signer, int ca, long serial)
{
    X509 *x = X509_new();
    X509_NAME *nm;
    if (!x)
        return NULL;
    nm = X509_get_subject_name(x);
    if (X509_set_version(x, X509_VERSION_3) != 1 ||
        ASN1_INTEGER_set(X509_get_serialNumber(x), serial) != 1 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) ||
        X509_NAME_add_entry_by_txt(nm, "CN", MBSTRING_ASC,
                                   (const unsigned char *)cn, -1, -1,
                                   0) != 1 ||
        X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer)
                                       : nm) != 1 ||
        X509_set_pubkey(x, pub) != 1)
        goto fail;
    if (add_ext(x, issuer ? issuer : x, NID_basic_constraints,
                ca ? "critical,CA:TRUE" : "CA:FALSE") < 0)
        goto fail;
    if (X509_sign(x, signer, NULL) <= 0)
        goto fail;
    return x;
fail:
    X509_free(x);
    return NULL;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static X509 *load_cert(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    FILE *f = p ? fopen(p, "r") : NULL;
    X509 *x = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    free(p);
    return x;
}

static EVP_PKEY *load_key(const char *dir, const char *name)
{
    char *p = path_join(dir, name);
    FILE *f = p ? fopen(p, "r") : NULL;
    EVP_PKEY *k = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    free(p);
    return k;
}

static int save(const char *dir, const char *name, X509 *x, EVP_PKEY *k)
{
    char *p = path_join(dir, name);
    FILE *f;
    int ok;
    if (!p)
        return -1;
    f = fopen(p, "w");
    free(p);
    if (!f)
        return -1;
    ok = x ? PEM_write_X509(f, x)
           : PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL);
    if (fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

static int der_of(X509 *x, uint8_t **out, int *len)
{
    *out = NULL;
    *len = i2d_X509(x, out);
    return *len > 0 ? 0 : -1;
}

int srv_creds_init(srv_creds *c, const char *dir)
{
    EVP_PKEY *ca_key = NULL;
    size_t sk_len = SX_ED25519_SK_BYTES;
    memset(c, 0, sizeof *c);

    if (dir) {
        c->ca_x509 = load_cert(dir, "ca.crt");
        c->srv_x509 = load_cert(dir, "server.crt");
        c->srv_pkey = load_key(dir, "server.key");
    }
    if (!c->ca_x509 || !c->srv_x509 || !c->srv_pkey) {
        X509_free(c->ca_x509);
        X509_free(c->srv_x509);
        EVP_PKEY_free(c->srv_pkey);
        ca_key = gen_ed25519();
        c->srv_pkey = gen_ed25519();
        if (!ca_key || !c->srv_pkey)
            goto fail;
        c->ca_x509 = make_cert(ca_key, "SMP test server CA", NULL, ca_key,
                               1, 1);
        if (!c->ca_x509)
            goto fail;
        c->srv_x509 = make_cert(c->srv_pkey, "127.0.0.1", c->ca_x509,
                                ca_key, 0, 2);
        if (!c->srv_x509)
            goto fail;
        if (dir) {
            mkdir(dir, 0700);
            /* the CA key is kept too, as the reference's offline key */
            if (save(dir, "ca.crt", c->ca_x509, NULL) < 0 ||
                save(dir, "ca.key", NULL, ca_key) < 0 ||
                save(dir, "server.crt", c->srv_x509, NULL) < 0 ||
                save(dir, "server.key", NULL, c->srv_pkey) < 0)
                goto fail;
        }
        EVP_PKEY_free(ca_key);
        ca_key = NULL;
    }
    if (EVP_PKEY_get_base_id(c->srv_pkey) != EVP_PKEY_ED25519 ||
        EVP_PKEY_get_raw_private_key(c->srv_pkey, c->srv_sk, &sk_len) != 1 ||
        sk_len != SX_ED25519_SK_BYTES)
        goto fail;
    if (der_of(c->ca_x509, &c->ca_der, &c->ca_len) < 0 ||
        der_of(c->srv_x509, &c->srv_der, &c->srv_len) < 0)
        goto fail;
    if (sx_sha256(c->key_hash, c->ca_der, (size_t)c->ca_len) < 0)
        goto fail;
    return 0;
fail:
    EVP_PKEY_free(ca_key);
    srv_creds_free(c);
    return -1;
}

void srv_creds_free(srv_creds *c)
{
    X509_free(c->ca_x509);
    X509_free(c->srv_x509);
    EVP_PKEY_free(c->srv_pkey);
    OPENSSL_free(c->ca_der);
    OPENSSL_free(c->srv_der);
    sx_memzero(c->srv_sk, sizeof c->srv_sk);
    memset(c, 0, sizeof *c);
}

/* ALPN: the reference offers smp/1, h2 and http/1.1 and picks the first
 * of its own list the client suggests. */
static int alpn_select(SSL *ssl, const unsigned char **out,
                       unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x05smp/1\x02h2\x08http/1.1";
    (void)ssl;
    (void)arg;
    for (size_t i = 0; i < sizeof ours - 1; i += 1u + ours[i]) {
        for (unsigned int j = 0; j < inlen; j += 1u + in[j]) {
            if (j + 1u + in[j] > inlen)
                break;
            if (in[j] == ours[i] && memcmp(in + j + 1, ours + i + 1, in[j]) == 0) {
                *out = in + j + 1;
                *outlen = in[j];
                return SSL_TLSEXT_ERR_OK;
            }
        }
    }
    return SSL_TLSEXT_ERR_NOACK;
}

/* A client certificate is requested (service certificates) but not
 * required. One that is sent is validated as the reference's
 * validateClientCertificate does: a chain of 1 to 4 certificates, checked
 * (signatures, validity dates, CA constraints) up to its own last
 * certificate as the only trust anchor; longer chains are refused. */
static int verify_client_chain(X509_STORE_CTX *x, void *arg)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(x);
    X509 *leaf = X509_STORE_CTX_get0_cert(x);
    X509_STORE *store = NULL;
    X509_STORE_CTX *v = NULL;
    int n = chain ? sk_X509_num(chain) : 0, ok = 0;
    (void)arg;
    if (!leaf)
        return 1; /* no certificate: accepted */
    if (n < 1 || n > 4)
        goto done;
    store = X509_STORE_new();
    v = X509_STORE_CTX_new();
    if (!store || !v || X509_STORE_add_cert(store, sk_X509_value(chain, n - 1)) != 1)
        goto done;
    X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN);
    if (X509_STORE_CTX_init(v, store, leaf, chain) != 1)
        goto done;
    ok = X509_verify_cert(v) == 1;
    if (!ok)
        X509_STORE_CTX_set_error(x, X509_STORE_CTX_get_error(v));
done:
    X509_STORE_CTX_free(v);
    X509_STORE_free(store);
    return ok;
}

SSL_CTX *srv_tls_ctx(const srv_creds *c)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx)
        return NULL;
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_CHACHA20_POLY1305_SHA256") != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:X448") != 1 ||
        SSL_CTX_set1_sigalgs_list(ctx, "ed25519:ed448") != 1 ||
        SSL_CTX_use_certificate(ctx, c->srv_x509) != 1 ||
        SSL_CTX_use_PrivateKey(ctx, c->srv_pkey) != 1 ||
        SSL_CTX_add1_chain_cert(ctx, c->ca_x509) != 1)
        goto fail;
    SSL_CTX_set_mode(ctx, SSL_MODE_NO_AUTO_CHAIN |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_cert_verify_callback(ctx, verify_client_chain, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

int srv_signed_dh_key(sx_wr *w, const srv_creds *c,
                      const uint8_t pub[SX_X25519_BYTES])
{
    static const uint8_t algid[] = {0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70};
    uint8_t spki[SX_KEY_DER_MAX], tbs[2 + SX_KEY_DER_MAX];
    uint8_t sig[SX_ED25519_SIG_BYTES];
    size_t spki_len, tbs_len, total;

    if (sx_key_public_encode(spki, sizeof spki, &spki_len, SX_KEY_X25519,
                             pub) < 0 || spki_len > 120)
        return -1;
    /* the signed object: SEQUENCE { SubjectPublicKeyInfo } */
    tbs[0] = 0x30;
    tbs[1] = (uint8_t)spki_len;
    memcpy(tbs + 2, spki, spki_len);
    tbs_len = spki_len + 2;
    if (sx_ed25519_sign(sig, tbs, tbs_len, c->srv_sk) < 0)
        return -1;
    total = tbs_len + sizeof algid + 3 + sizeof sig;
    if (total > 127)
        return -1;
    sx_wr_u8(w, 0x30);
    sx_wr_u8(w, (uint8_t)total);
    sx_wr_raw(w, tbs, tbs_len);
    sx_wr_raw(w, algid, sizeof algid);
    sx_wr_u8(w, 0x03);
    sx_wr_u8(w, 1 + sizeof sig);
    sx_wr_u8(w, 0);
    sx_wr_raw(w, sig, sizeof sig);
    return sx_wr_error(w);
}
