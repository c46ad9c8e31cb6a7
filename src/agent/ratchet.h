/*
 * End-to-end encryption core: X3DH key agreement with X448 keys and the
 * double ratchet with encrypted headers, byte-compatible with simplexmq
 * 6.5.5.0 (Simplex.Messaging.Crypto.Ratchet), e2e versions 2 and 3.
 *
 * Post-quantum (sntrup761) parts of version 3 are fully represented in
 * the state, the headers and the serialised form. The KEM itself is not
 * built in: it is reached through sx_ratchet_kem_ops; without ops, any
 * step that needs a KEM operation fails with SIMPLEX_ERR_UNSUPPORTED.
 *
 * Every function returns 0 or a negative simplex_error. Decryption and
 * encryption change the state only on success.
 */
#ifndef SX_RATCHET_H
#define SX_RATCHET_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "crypto/crypto.h"

#define SX_E2E_VERSION_KDF_X3DH 2 /* kdfX3DHE2EEncryptVersion */
#define SX_E2E_VERSION_PQ 3       /* pqRatchetE2EEncryptVersion */
#define SX_E2E_VERSION_MIN 2
#define SX_E2E_VERSION_CURRENT 3

#define SX_RATCHET_MAX_SKIP 512u   /* maxSkip, per skip operation */
#define SX_RATCHET_HDR_PAD 88      /* padded header without PQ support */
#define SX_RATCHET_HDR_PAD_PQ 2310 /* padded header with PQ support (v3) */
#define SX_RATCHET_KEY_BYTES 32
#define SX_RATCHET_IV_BYTES 16
#define SX_RATCHET_AD_BYTES (2 * SX_X448_BYTES)

/* sntrup761 sizes */
#define SX_KEM_PK_BYTES 1158
#define SX_KEM_SK_BYTES 1763
#define SX_KEM_CT_BYTES 1039
#define SX_KEM_SS_BYTES 32

/* KEM parameters in e2e params and headers (RKEMParams) */
#define SX_KEM_NONE 0
#define SX_KEM_PROPOSED 'P' /* encapsulation key only */
#define SX_KEM_ACCEPTED 'A' /* ciphertext and the next encapsulation key */

/* Detailed decryption/encryption failure (mirrors the reference's
 * CryptoError constructors named in the comments). */
typedef enum sx_ratchet_error {
    SX_RATCHET_OK = 0,
    SX_RATCHET_E_HEADER_PARSE,   /* CryptoHeaderError: malformed envelope */
    SX_RATCHET_E_HEADER,         /* CERatchetHeader: no key opens header */
    SX_RATCHET_E_EARLIER,        /* CERatchetEarlierMessage n */
    SX_RATCHET_E_DUPLICATE,      /* CERatchetDuplicateMessage */
    SX_RATCHET_E_TOO_MANY_SKIPPED, /* CERatchetTooManySkipped n */
    SX_RATCHET_E_STATE,          /* CERatchetState */
    SX_RATCHET_E_KEM_STATE,      /* CERatchetKEMState */
    SX_RATCHET_E_BODY,           /* AESDecryptError (message body) */
    SX_RATCHET_E_BODY_PAD,       /* CryptoInvalidMsgError (body unpad) */
    SX_RATCHET_E_LARGE_MSG,      /* CryptoLargeMsgError (encrypt) */
    SX_RATCHET_E_KEM_UNAVAILABLE /* a KEM operation without KEM ops */
} sx_ratchet_error;

typedef struct sx_ratchet_err {
    sx_ratchet_error code;
    uint32_t n; /* the count of EARLIER / TOO_MANY_SKIPPED */
} sx_ratchet_err;

/* ---- KEM and randomness hooks (not serialised) ---- */
typedef struct sx_ratchet_kem_ops {
    int (*keypair)(void *ctx, uint8_t pk[SX_KEM_PK_BYTES],
                   uint8_t sk[SX_KEM_SK_BYTES]);
    int (*enc)(void *ctx, uint8_t ct[SX_KEM_CT_BYTES],
               uint8_t ss[SX_KEM_SS_BYTES], const uint8_t pk[SX_KEM_PK_BYTES]);
    int (*dec)(void *ctx, uint8_t ss[SX_KEM_SS_BYTES],
               const uint8_t ct[SX_KEM_CT_BYTES],
               const uint8_t sk[SX_KEM_SK_BYTES]);
    void *ctx;
} sx_ratchet_kem_ops;

/* New X448 ratchet key pair drawn during a ratchet step in decrypt. */
typedef int (*sx_ratchet_dh_gen)(void *ctx, uint8_t pk[SX_X448_BYTES],
                                 uint8_t sk[SX_X448_BYTES]);

/* ---- E2E ratchet params (E2ERatchetParams, X448 only) ---- */
typedef struct sx_e2e_params {
    uint16_t version;
    uint8_t k1[SX_X448_BYTES];
    uint8_t k2[SX_X448_BYTES];
    int kem; /* SX_KEM_NONE / _PROPOSED / _ACCEPTED (version >= 3 only) */
    uint8_t kem_pk[SX_KEM_PK_BYTES];
    uint8_t kem_ct[SX_KEM_CT_BYTES]; /* ACCEPTED only */
} sx_e2e_params;

/* smpEncode: (v, k1, k2) for v < 3, (v, k1, k2, Maybe kem) for v >= 3. */
void sx_e2e_params_write(sx_wr *w, const sx_e2e_params *p);
/* Reads one value; keys of another algorithm are SIMPLEX_ERR_KEY. */
int sx_e2e_params_read(sx_rd *r, sx_e2e_params *p);
/* Whole buffer, no trailing bytes. */
int sx_e2e_params_decode(sx_e2e_params *p, const uint8_t *in, size_t n);

/* Own private KEM params for X3DH (PrivRKEMParams). */
typedef struct sx_kem_priv {
    int state; /* SX_KEM_NONE / _PROPOSED / _ACCEPTED */
    uint8_t pk[SX_KEM_PK_BYTES];
    uint8_t sk[SX_KEM_SK_BYTES];
    uint8_t ct[SX_KEM_CT_BYTES];  /* ACCEPTED */
    uint8_t ss[SX_KEM_SS_BYTES];  /* ACCEPTED */
} sx_kem_priv;

/* X3DH output (RatchetInitParams plus the KEM key pair to keep). */
typedef struct sx_x3dh_init {
    uint8_t ad[SX_RATCHET_AD_BYTES];
    uint8_t hk[SX_RATCHET_KEY_BYTES];  /* sndHK */
    uint8_t nhk[SX_RATCHET_KEY_BYTES]; /* rcvNextHK */
    uint8_t rk[SX_RATCHET_KEY_BYTES];  /* ratchetKey */
    int kem_accepted;
    uint8_t pqrr[SX_KEM_PK_BYTES];
    uint8_t pqrss[SX_KEM_SS_BYTES];
    uint8_t pqrct[SX_KEM_CT_BYTES];
    int has_kem_keypair;
    uint8_t kem_pk[SX_KEM_PK_BYTES];
    uint8_t kem_sk[SX_KEM_SK_BYTES];
    /* the three DH outputs, kept for tests */
    uint8_t dh1[SX_X448_BYTES], dh2[SX_X448_BYTES], dh3[SX_X448_BYTES];
} sx_x3dh_init;

/* pqX3dhSnd: the joining party (alice). k1/k2 are its own private keys,
 * kem its private KEM params (NULL for none), peer the received params. */
int sx_x3dh_snd(sx_x3dh_init *out, const uint8_t k1[SX_X448_BYTES],
                const uint8_t k2[SX_X448_BYTES], const sx_kem_priv *kem,
                const sx_e2e_params *peer) SX_WUR;
/* pqX3dhRcv: the party that created the invitation (bob). kem is its own
 * PROPOSED key pair or NULL; decapsulation goes through ops (may be NULL
 * when no KEM ciphertext is received). */
int sx_x3dh_rcv(sx_x3dh_init *out, const uint8_t k1[SX_X448_BYTES],
                const uint8_t k2[SX_X448_BYTES], const sx_kem_priv *kem,
                const sx_e2e_params *peer, const sx_ratchet_kem_ops *ops) SX_WUR;

/* ---- ratchet state ---- */
typedef struct sx_ratchet_skipped {
    uint8_t hk[SX_RATCHET_KEY_BYTES];
    uint32_t n;
    uint8_t mk[SX_RATCHET_KEY_BYTES];
    uint8_t iv[SX_RATCHET_IV_BYTES];
} sx_ratchet_skipped;

/* Fixed-size part of the state; plain data, copyable by value. */
typedef struct sx_ratchet_core {
    uint16_t v_current, v_max;          /* rcVersion */
    uint8_t ad[SX_RATCHET_AD_BYTES];    /* rcAD */
    uint8_t dhrs_sk[SX_X448_BYTES];     /* rcDHRs */
    uint8_t dhrs_pk[SX_X448_BYTES];
    int has_kem;                        /* rcKEM */
    uint8_t pqrs_pk[SX_KEM_PK_BYTES];
    uint8_t pqrs_sk[SX_KEM_SK_BYTES];
    int has_kem_accepted;               /* rcKEMs */
    uint8_t pqrr[SX_KEM_PK_BYTES];
    uint8_t pqrss[SX_KEM_SS_BYTES];
    uint8_t pqrct[SX_KEM_CT_BYTES];
    int support_kem, enable_kem, snd_kem, rcv_kem;
    uint8_t rk[SX_RATCHET_KEY_BYTES];
    int has_snd;                        /* rcSnd */
    uint8_t dhrr[SX_X448_BYTES];
    uint8_t cks[SX_RATCHET_KEY_BYTES];
    uint8_t hks[SX_RATCHET_KEY_BYTES];
    int has_rcv;                        /* rcRcv */
    uint8_t ckr[SX_RATCHET_KEY_BYTES];
    uint8_t hkr[SX_RATCHET_KEY_BYTES];
    uint32_t ns, nr, pn;
    uint8_t nhks[SX_RATCHET_KEY_BYTES];
    uint8_t nhkr[SX_RATCHET_KEY_BYTES];
} sx_ratchet_core;

typedef struct sx_ratchet {
    sx_ratchet_core c;
    sx_ratchet_skipped *skipped; /* skipped message keys */
    size_t n_skipped, cap_skipped;
    /* runtime hooks, not serialised */
    sx_ratchet_dh_gen dh_gen; /* NULL: sx_x448_keypair */
    void *dh_gen_ctx;
    const sx_ratchet_kem_ops *kem_ops; /* NULL: no KEM available */
} sx_ratchet;

/* initSndRatchet (alice): dhrr = peer's key2 public, dhrs = own new key. */
int sx_ratchet_init_snd(sx_ratchet **out, uint16_t v_current, uint16_t v_max,
                        const uint8_t dhrr[SX_X448_BYTES],
                        const uint8_t dhrs_sk[SX_X448_BYTES],
                        const sx_x3dh_init *p) SX_WUR;
/* initRcvRatchet (bob): dhrs = own key2 private. */
int sx_ratchet_init_rcv(sx_ratchet **out, uint16_t v_current, uint16_t v_max,
                        const uint8_t dhrs_sk[SX_X448_BYTES],
                        const sx_x3dh_init *p, int pq_support) SX_WUR;
/* Wipes every secret and frees; NULL is a no-op. */
void sx_ratchet_free(sx_ratchet *rc);

/* Encrypts one message: pad(msg, padded_len) under the next message key.
 * *out (sx_free it) receives the whole ratchet message. */
int sx_ratchet_encrypt(sx_ratchet *rc, const uint8_t *msg, size_t n,
                       size_t padded_len, uint8_t **out, size_t *out_len,
                       sx_ratchet_err *err) SX_WUR;
/* rcEncryptHeader with its options: pq_enc -1 keeps rcEnableKEM, 0/1 set
 * it; supported_version is the configured max e2e version. */
int sx_ratchet_encrypt_ex(sx_ratchet *rc, int pq_enc,
                          uint16_t supported_version, const uint8_t *msg,
                          size_t n, size_t padded_len, uint8_t **out,
                          size_t *out_len, sx_ratchet_err *err) SX_WUR;
/* rcDecrypt. *pt (sx_free_secret(*pt, *pt_len)) receives the plaintext.
 * On failure the state is unchanged and err says why. */
int sx_ratchet_decrypt(sx_ratchet *rc, const uint8_t *msg, size_t n,
                       uint8_t **pt, size_t *pt_len,
                       sx_ratchet_err *err) SX_WUR;

/* Serialised state (our format, versioned): *out must be freed with
 * sx_free_secret(*out, *out_len). */
int sx_ratchet_serialize(const sx_ratchet *rc, uint8_t **out,
                         size_t *out_len) SX_WUR;
int sx_ratchet_deserialize(sx_ratchet **out, const uint8_t *in,
                           size_t n) SX_WUR;

/* ---- KDFs and header codec, exposed for tests ---- */
/* chainKdf: ck' || mk || iv || header iv */
int sx_ratchet_chain_kdf(uint8_t ck_next[32], uint8_t mk[32], uint8_t iv[16],
                         uint8_t hiv[16], const uint8_t ck[32]) SX_WUR;
/* rootKdf: hkdf(rk, DH(pk, sk) || kem_ss, "SimpleXRootRatchet") */
int sx_ratchet_root_kdf(uint8_t rk_next[32], uint8_t ck[32], uint8_t nhk[32],
                        const uint8_t rk[32], const uint8_t pk[SX_X448_BYTES],
                        const uint8_t sk[SX_X448_BYTES], const uint8_t *kem_ss)
    SX_WUR;

/* MsgHeader, parsed with the layout of ehVersion. */
typedef struct sx_ratchet_header {
    uint16_t max_version;
    uint8_t dhrs[SX_X448_BYTES];
    int kem; /* SX_KEM_NONE / _PROPOSED / _ACCEPTED */
    uint8_t kem_pk[SX_KEM_PK_BYTES];
    uint8_t kem_ct[SX_KEM_CT_BYTES];
    uint32_t pn, ns;
} sx_ratchet_header;

/* msgHeaderP v: trailing bytes are allowed, as in the reference. */
int sx_ratchet_header_parse(sx_ratchet_header *h, uint16_t v,
                            const uint8_t *in, size_t n) SX_WUR;
/* Splits a ratchet message: the encrypted header's fields and the body. */
typedef struct sx_ratchet_parts {
    const uint8_t *em_header; /* as used in the body's AD */
    size_t em_header_len;
    uint16_t eh_version;
    const uint8_t *eh_iv, *eh_tag, *eh_body;
    size_t eh_body_len;
    const uint8_t *tag, *body;
    size_t body_len;
} sx_ratchet_parts;
int sx_ratchet_parse(sx_ratchet_parts *m, const uint8_t *in, size_t n) SX_WUR;

/* ---- codec helpers shared by the ratchet sources ---- */
/* X448 public key as a short-string SPKI DER; other algorithms: KEY. */
int sx_ratchet_read_key(sx_rd *r, uint8_t pk[SX_X448_BYTES]);
/* RKEMParams after the Maybe tag: 'P' Large pk | 'A' Large ct Large pk. */
int sx_ratchet_read_kem(sx_rd *r, int *kem, uint8_t pk[SX_KEM_PK_BYTES],
                        uint8_t ct[SX_KEM_CT_BYTES]);
/* Maybe RKEMParams. */
void sx_ratchet_write_kem(sx_wr *w, int kem, const uint8_t *pk,
                          const uint8_t *ct);

#endif /* SX_RATCHET_H */
