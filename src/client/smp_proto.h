/*
 * SMP (SimpleX Messaging Protocol) codecs, without any I/O.
 *
 *   - transport handshakes (server hello, client hello)
 *   - client commands (sx_smp_cmd) and server messages (sx_smp_msg)
 *   - transmissions: authorization, correlation id, entity id, command
 *   - transport blocks: batches of transmissions padded to 16384 bytes,
 *     optionally encrypted with the session's secret-box chains (v11+)
 *   - message bodies: server-to-recipient encryption of MSG bodies and
 *     the per-queue end-to-end envelope
 *
 * Decoders read untrusted bytes: they never read out of bounds, return a
 * negative simplex_error on malformed input and, where the reference
 * parses to the end of input, reject trailing bytes. Variable-length
 * fields of decoded values are views (sx_smp_bytes) into the input, which
 * must outlive the decoded value. Public keys are decoded into raw form.
 *
 * Encoders append to an sx_wr; check sx_wr_error() (or the return value)
 * afterwards.
 */
#ifndef SX_SMP_PROTO_H
#define SX_SMP_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"
#include "crypto/crypto.h"

/* ---- protocol versions (SMP server/relay protocol) ---- */
#define SX_SMP_VERSION_MIN 6
#define SX_SMP_VERSION_MAX 18
#define SX_SMP_V_AUTH_CMDS 7        /* X25519 command auth; implied session id */
#define SX_SMP_V_SENDING_PROXY 8
#define SX_SMP_V_SND_AUTH_KEY 9     /* NEW sndSecure flag, SKEY */
#define SX_SMP_V_DELETED_EVENT 10   /* DELD */
#define SX_SMP_V_ENCRYPTED_BLOCK 11 /* transport block encryption */
#define SX_SMP_V_BLOCKED_ENTITY 12  /* ERR BLOCKED */
#define SX_SMP_V_PROXY_HANDSHAKE 14 /* proxy flag in client hello */
#define SX_SMP_V_SHORT_LINKS 15     /* queue request data, links */
#define SX_SMP_V_SERVICE_CERTS 16   /* client service, service signatures */
#define SX_SMP_V_NEW_NTF_CREDS 17   /* ntf credentials in NEW / IDS */
#define SX_SMP_V_CLIENT_NOTICES 18  /* notice in BLOCKED */

#define SX_SMP_BLOCK_SIZE 16384
#define SX_SMP_BLOCK_TAG 16
/* Bytes of a batch that transmissions may use (reference: blockSize - 19). */
#define SX_SMP_BATCH_ROOM (SX_SMP_BLOCK_SIZE - 19)
#define SX_SMP_MAX_BATCH 255
#define SX_SMP_SESSION_ID_MAX 255

/* sizes used by message body encryption */
#define SX_SMP_RCV_MSG_PADDED 16106       /* MaxRcvMessageLen + 2 */
#define SX_SMP_E2E_CONF_PADDED 15904      /* e2eEncConfirmationLength */
#define SX_SMP_E2E_MSG_PADDED 16000       /* e2eEncMessageLength */
#define SX_SMP_PROXIED_T_PADDED 16226     /* paddedProxiedTLength */
#define SX_SMP_NMSG_META_PADDED 128

/* A view into an input buffer (or caller-owned bytes for encoding). */
typedef struct sx_smp_bytes {
    const uint8_t *p;
    size_t n;
} sx_smp_bytes;

/* A public key in raw form, encoded on the wire as a short string holding
 * its SubjectPublicKeyInfo DER. alg == SX_KEY_NONE means "absent". */
typedef struct sx_smp_key {
    sx_key_alg alg;
    size_t len;
    uint8_t raw[SX_ED448_PK_BYTES];
} sx_smp_key;

void sx_smp_key_set(sx_smp_key *k, sx_key_alg alg, const uint8_t *raw);

/* ---- handshakes ---- */

/* The server hello. The certificates and the signed key are DER views. */
#define SX_SMP_MAX_CERTS 8
typedef struct sx_smp_server_hello {
    uint16_t vmin, vmax;
    sx_smp_bytes session_id;
    int has_cert;               /* authPubKey present (v >= 7) */
    size_t n_certs;             /* 1..SX_SMP_MAX_CERTS */
    sx_smp_bytes certs[SX_SMP_MAX_CERTS];
    sx_smp_bytes signed_key;    /* X.509 SignedExact PubKey DER */
} sx_smp_server_hello;

/* content (unpadded). Extra bytes after the known fields are ignored, as
 * the reference does for future extensions. */
int sx_smp_server_hello_decode(sx_smp_server_hello *out, const uint8_t *p,
                               size_t n);
int sx_smp_server_hello_encode(sx_wr *w, const sx_smp_server_hello *h);

/* Client-side checks of the server hello, as smpClientHandshake does:
 * the chain has 2..4 certificates and SHA-256 of the identity certificate
 * (the 2nd) equals key_hash (the server address's key hash); the signed
 * session key verifies (Ed25519 / Ed448) with the key of tls_leaf_cert
 * (the TLS peer's leaf certificate DER); *dh_key receives the X25519
 * session key. SIMPLEX_ERR_KEY / SIGNATURE / PARSE on failure. Validity
 * of the certificates themselves (dates, CA signature) is the TLS layer's
 * business and is not checked here. */
int sx_smp_server_hello_verify(sx_smp_key *dh_key,
                               const sx_smp_server_hello *h,
                               const uint8_t key_hash[SX_SHA256_BYTES],
                               sx_smp_bytes tls_leaf_cert);
/* Verifies an X.509 signed public key (SEQUENCE { SEQUENCE { SPKI },
 * AlgorithmId, BIT STRING }) with the key of signer_cert; yields the
 * X25519 key. */
int sx_smp_signed_key_verify(sx_smp_key *out, sx_smp_bytes signed_key,
                             sx_smp_bytes signer_cert);

/* CertChainPubKey: NonEmpty Large certificates, Large signed key. */
int sx_smp_cert_key_decode(sx_rd *r, size_t *n_certs, sx_smp_bytes *certs,
                           sx_smp_bytes *signed_key);
void sx_smp_cert_key_encode(sx_wr *w, size_t n_certs,
                            const sx_smp_bytes *certs,
                            sx_smp_bytes signed_key);

typedef enum sx_smp_service_role {
    SX_SMP_ROLE_MESSAGING = 'M',
    SX_SMP_ROLE_NOTIFIER = 'N',
    SX_SMP_ROLE_PROXY = 'P'
} sx_smp_service_role;

typedef struct sx_smp_client_hello {
    uint16_t version;           /* the agreed version */
    sx_smp_bytes key_hash;
    sx_smp_key dh_key;          /* X25519 (v >= 7), alg NONE = absent */
    int proxy_server;           /* v >= 14 */
    int has_service;            /* v >= 16 */
    sx_smp_service_role service_role;
    size_t n_certs;
    sx_smp_bytes certs[SX_SMP_MAX_CERTS];
    sx_smp_bytes service_signed_key;
} sx_smp_client_hello;

int sx_smp_client_hello_decode(sx_smp_client_hello *out, const uint8_t *p,
                               size_t n);
int sx_smp_client_hello_encode(sx_wr *w, const sx_smp_client_hello *h);

/* The server's third handshake message, sent only to service clients
 * (v >= 16): 'R' + short service id, or 'E' + a transport error
 * (e.g. "HANDSHAKE BAD_AUTH"). The error lives in err.transport /
 * err.handshake. */
typedef struct sx_smp_hs_response {
    int is_error;
    sx_smp_bytes service_id;
    int transport;                  /* sx_smp_transport_err */
    int handshake;                  /* sx_smp_handshake_err */
} sx_smp_hs_response;

/* As the other handshake messages, extra bytes are ignored. */
int sx_smp_hs_response_decode(sx_smp_hs_response *out, const uint8_t *p,
                              size_t n);
int sx_smp_hs_response_encode(sx_wr *w, const sx_smp_hs_response *r);

/* ---- client commands ---- */

typedef enum sx_smp_cmd_tag {
    SX_SMP_CMD_NEW = 1,
    SX_SMP_CMD_SUB,
    SX_SMP_CMD_SUBS,
    SX_SMP_CMD_KEY,
    SX_SMP_CMD_RKEY,
    SX_SMP_CMD_LSET,
    SX_SMP_CMD_LDEL,
    SX_SMP_CMD_NKEY,
    SX_SMP_CMD_NDEL,
    SX_SMP_CMD_GET,
    SX_SMP_CMD_ACK,
    SX_SMP_CMD_OFF,
    SX_SMP_CMD_DEL,
    SX_SMP_CMD_QUE,
    SX_SMP_CMD_SKEY,
    SX_SMP_CMD_SEND,
    SX_SMP_CMD_PING,
    SX_SMP_CMD_LKEY,
    SX_SMP_CMD_LGET,
    SX_SMP_CMD_NSUB,
    SX_SMP_CMD_NSUBS,
    SX_SMP_CMD_PRXY,
    SX_SMP_CMD_PFWD,
    SX_SMP_CMD_RFWD
} sx_smp_cmd_tag;

/* QueueLinkData: two Large-encoded encrypted blobs. */
typedef struct sx_smp_link_data {
    sx_smp_bytes fixed_data;
    sx_smp_bytes user_data;
} sx_smp_link_data;

typedef enum sx_smp_queue_mode {
    SX_SMP_QM_NONE = 0,
    SX_SMP_QM_MESSAGING = 'M',
    SX_SMP_QM_CONTACT = 'C'
} sx_smp_queue_mode;

typedef struct sx_smp_new {
    sx_smp_key rcv_auth_key;    /* Ed25519, Ed448 or X25519 */
    sx_smp_key rcv_dh_key;      /* X25519 */
    int has_basic_auth;
    sx_smp_bytes basic_auth;
    char sub_mode;              /* 'S' subscribe, 'C' only create */
    /* queue request data (v >= 9; at v 9..14 only the mode travels, as the
     * sender-can-secure flag; decoding there yields MESSAGING or CONTACT) */
    sx_smp_queue_mode qr_mode;  /* NONE = Nothing */
    int qr_has_data;            /* v >= 15: the Maybe inside */
    sx_smp_bytes link_id;       /* contact mode only */
    sx_smp_bytes sender_id;
    sx_smp_link_data link_data;
    int has_ntf;                /* v >= 17 */
    sx_smp_key ntf_auth_key;
    sx_smp_key ntf_dh_key;
} sx_smp_new;

#define SX_SMP_MAX_HOSTS 8
typedef struct sx_smp_server {
    size_t n_hosts;
    sx_smp_bytes hosts[SX_SMP_MAX_HOSTS];
    sx_smp_bytes port;
    sx_smp_bytes key_hash;
} sx_smp_server;

#define SX_SMP_MAX_RCV_KEYS 16

typedef struct sx_smp_cmd {
    sx_smp_cmd_tag tag;
    sx_smp_new new_q;               /* NEW */
    sx_smp_key key;                 /* KEY, SKEY, LKEY; NKEY auth key */
    sx_smp_key dh_key;              /* NKEY; PFWD command key */
    size_t n_keys;                  /* RKEY */
    sx_smp_key keys[SX_SMP_MAX_RCV_KEYS];
    sx_smp_bytes id;                /* LSET link id; ACK msg id */
    sx_smp_link_data link_data;     /* LSET */
    int notification;               /* SEND flags */
    sx_smp_bytes body;              /* SEND body; PFWD/RFWD encrypted */
    sx_smp_server server;           /* PRXY */
    int has_basic_auth;             /* PRXY */
    sx_smp_bytes basic_auth;
    uint16_t fwd_version;           /* PFWD */
} sx_smp_cmd;

void sx_smp_cmd_init(sx_smp_cmd *c, sx_smp_cmd_tag tag);
/* encodeProtocol at version v. */
int sx_smp_cmd_encode(sx_wr *w, uint16_t v, const sx_smp_cmd *c);
/* Parses exactly n bytes. */
int sx_smp_cmd_decode(sx_smp_cmd *out, uint16_t v, const uint8_t *p, size_t n);
const char *sx_smp_cmd_name(sx_smp_cmd_tag tag);

/* ---- errors (ErrorType) ---- */

typedef enum sx_smp_err_type {
    SX_SMP_ERR_BLOCK = 1,
    SX_SMP_ERR_SESSION,
    SX_SMP_ERR_CMD,
    SX_SMP_ERR_PROXY,
    SX_SMP_ERR_AUTH,
    SX_SMP_ERR_BLOCKED,
    SX_SMP_ERR_SERVICE,
    SX_SMP_ERR_CRYPTO,
    SX_SMP_ERR_QUOTA,
    SX_SMP_ERR_STORE,
    SX_SMP_ERR_EXPIRED,
    SX_SMP_ERR_NO_MSG,
    SX_SMP_ERR_LARGE_MSG,
    SX_SMP_ERR_INTERNAL,
    SX_SMP_ERR_DUPLICATE
} sx_smp_err_type;

typedef enum sx_smp_cmd_err {
    SX_SMP_CMDERR_UNKNOWN = 1,
    SX_SMP_CMDERR_SYNTAX,
    SX_SMP_CMDERR_PROHIBITED,
    SX_SMP_CMDERR_NO_AUTH,
    SX_SMP_CMDERR_HAS_AUTH,
    SX_SMP_CMDERR_NO_ENTITY
} sx_smp_cmd_err;

typedef enum sx_smp_proxy_err {
    SX_SMP_PROXYERR_PROTOCOL = 1,   /* nested ErrorType in `inner` */
    SX_SMP_PROXYERR_BROKER,
    SX_SMP_PROXYERR_BASIC_AUTH,
    SX_SMP_PROXYERR_NO_SESSION
} sx_smp_proxy_err;

typedef enum sx_smp_broker_err {
    SX_SMP_BROKER_RESPONSE = 1,     /* text */
    SX_SMP_BROKER_UNEXPECTED,       /* text */
    SX_SMP_BROKER_TRANSPORT,        /* transport */
    SX_SMP_BROKER_NETWORK,          /* network (only FAILED is encoded) */
    SX_SMP_BROKER_TIMEOUT,
    SX_SMP_BROKER_HOST,
    SX_SMP_BROKER_NO_SERVICE
} sx_smp_broker_err;

typedef enum sx_smp_transport_err {
    SX_SMP_TE_BLOCK = 1,
    SX_SMP_TE_VERSION,
    SX_SMP_TE_LARGE_MSG,
    SX_SMP_TE_SESSION,
    SX_SMP_TE_NO_AUTH,
    SX_SMP_TE_HANDSHAKE             /* handshake */
} sx_smp_transport_err;

typedef enum sx_smp_handshake_err {
    SX_SMP_HS_PARSE = 1,
    SX_SMP_HS_IDENTITY,
    SX_SMP_HS_BAD_AUTH,
    SX_SMP_HS_BAD_SERVICE
} sx_smp_handshake_err;

typedef enum sx_smp_network_err {
    SX_SMP_NE_FAILED = 1,
    SX_SMP_NE_CONNECT,              /* text */
    SX_SMP_NE_TLS,                  /* text */
    SX_SMP_NE_UNKNOWNCA,
    SX_SMP_NE_TIMEOUT,
    SX_SMP_NE_SUBSCRIBE             /* text */
} sx_smp_network_err;

typedef struct sx_smp_err {
    sx_smp_err_type type;
    sx_smp_cmd_err cmd;             /* CMD */
    sx_smp_proxy_err proxy;         /* PROXY */
    sx_smp_bytes inner;             /* PROXY PROTOCOL: encoded ErrorType */
    sx_smp_broker_err broker;       /* PROXY BROKER */
    sx_smp_transport_err transport; /* ... TRANSPORT */
    sx_smp_handshake_err handshake; /* ... TRANSPORT HANDSHAKE */
    sx_smp_network_err network;     /* ... NETWORK */
    sx_smp_bytes text;              /* STORE, RESPONSE, UNEXPECTED, ... */
    char blocked_reason;            /* BLOCKED: 's' spam, 'c' content */
    int has_notice;
    sx_smp_bytes notice;            /* BLOCKED: JSON ClientNotice, raw */
} sx_smp_err;

/* Nested PROXY (PROTOCOL ...) errors deeper than this are rejected. */
#define SX_SMP_ERR_MAX_DEPTH 8

int sx_smp_err_decode(sx_smp_err *out, const uint8_t *p, size_t n);
/* Encodes as the reference does at version v (BLOCKED is AUTH before 12,
 * loses its notice before 18). */
int sx_smp_err_encode(sx_wr *w, uint16_t v, const sx_smp_err *e);

/* ---- server messages ---- */

typedef enum sx_smp_msg_tag {
    SX_SMP_MSG_IDS = 1,
    SX_SMP_MSG_LNK,
    SX_SMP_MSG_SOK,
    SX_SMP_MSG_SOKS,
    SX_SMP_MSG_MSG,
    SX_SMP_MSG_NID,
    SX_SMP_MSG_NMSG,
    SX_SMP_MSG_PKEY,
    SX_SMP_MSG_RRES,
    SX_SMP_MSG_PRES,
    SX_SMP_MSG_END,
    SX_SMP_MSG_ENDS,
    SX_SMP_MSG_DELD,
    SX_SMP_MSG_INFO,
    SX_SMP_MSG_OK,
    SX_SMP_MSG_ERR,
    SX_SMP_MSG_PONG
} sx_smp_msg_tag;

typedef struct sx_smp_ids {
    sx_smp_bytes rcv_id, snd_id;
    sx_smp_key srv_dh_key;          /* X25519 */
    sx_smp_queue_mode queue_mode;   /* v >= 9 (NONE before, and = Nothing) */
    int has_link_id;                /* v >= 15 */
    sx_smp_bytes link_id;
    int has_service_id;             /* v >= 16 */
    sx_smp_bytes service_id;
    int has_ntf;                    /* v >= 17 */
    sx_smp_bytes ntf_id;
    sx_smp_key ntf_dh_key;
} sx_smp_ids;

typedef struct sx_smp_msg {
    sx_smp_msg_tag tag;
    sx_smp_ids ids;                 /* IDS */
    sx_smp_bytes id;                /* LNK sender id, MSG msg id, NID id,
                                     * SOK service id, PKEY session id */
    int has_id;                     /* SOK */
    sx_smp_link_data link_data;     /* LNK */
    int64_t count;                  /* SOKS, ENDS */
    sx_smp_bytes body;              /* MSG, NMSG meta, RRES, PRES, INFO */
    uint8_t nonce[SX_BOX_NONCE_BYTES]; /* NMSG */
    sx_smp_key dh_key;              /* NID */
    uint16_t vmin, vmax;            /* PKEY */
    size_t n_certs;                 /* PKEY */
    sx_smp_bytes certs[SX_SMP_MAX_CERTS];
    sx_smp_bytes signed_key;
    sx_smp_err err;                 /* ERR */
} sx_smp_msg;

void sx_smp_msg_init(sx_smp_msg *m, sx_smp_msg_tag tag);
int sx_smp_msg_encode(sx_wr *w, uint16_t v, const sx_smp_msg *m);
int sx_smp_msg_decode(sx_smp_msg *out, uint16_t v, const uint8_t *p, size_t n);
const char *sx_smp_msg_name(sx_smp_msg_tag tag);

/* The reference's checkCredentials: 0 when a command with this tag may
 * arrive with (has_auth, entity_len), else the CMD error the server
 * answers (NO_AUTH, HAS_AUTH or NO_ENTITY). */
sx_smp_cmd_err sx_smp_cmd_check(sx_smp_cmd_tag tag, int has_auth,
                                size_t entity_len);
/* The same for server messages as a client checks them. */
sx_smp_cmd_err sx_smp_msg_check(sx_smp_msg_tag tag, size_t entity_len);

/* ---- transmissions ---- */

/* Per-connection parameters that shape transmissions. */
typedef struct sx_smp_params {
    uint16_t version;
    sx_smp_bytes session_id;
} sx_smp_params;

/* Whether transmissions carry the session id (v < 7) and the optional
 * service signature (v >= 16). */
int sx_smp_implied_session(uint16_t v);
int sx_smp_service_auth(uint16_t v);

typedef enum sx_smp_auth_kind {
    SX_SMP_AUTH_NONE = 0,
    SX_SMP_AUTH_ED25519 = 1,        /* 64-byte signature */
    SX_SMP_AUTH_ED448 = 2,          /* 114-byte signature */
    SX_SMP_AUTH_X25519 = 3          /* 80-byte cb authenticator */
} sx_smp_auth_kind;

#define SX_SMP_AUTH_MAX 114

/* A raw transmission, as parsed from a block. */
typedef struct sx_smp_trans {
    sx_smp_auth_kind auth_kind;
    sx_smp_bytes auth;              /* authorization bytes */
    int has_service_sig;
    sx_smp_bytes service_sig;       /* 64 bytes when present */
    sx_smp_bytes session_id;        /* only when the version carries it */
    sx_smp_bytes corr_id;
    sx_smp_bytes entity_id;
    sx_smp_bytes command;
    /* everything after the authorization fields (session id when sent,
     * corrId, entityId, command) */
    sx_smp_bytes authorized;
} sx_smp_trans;

/* The bytes an authorization covers: short(session id) || t->authorized
 * when the session id is implied (v >= 7), t->authorized otherwise. */
int sx_smp_trans_signed(sx_wr *w, const sx_smp_params *prm,
                        const sx_smp_trans *t);

/* Parses one transmission (exactly n bytes). Does not check the session
 * id (v < 7: compare t->session_id with yours, the reference answers
 * ERR SESSION), the credentials (sx_smp_cmd_check) or the authorization
 * (sx_smp_verify). */
int sx_smp_trans_decode(sx_smp_trans *out, const sx_smp_params *prm,
                        const uint8_t *p, size_t n);

/* Encodes the unsigned part: corrId entityId command
 * (preceded by the session id when v < 7) = tToSend. */
int sx_smp_trans_body_encode(sx_wr *w, const sx_smp_params *prm,
                             sx_smp_bytes corr_id, sx_smp_bytes entity_id,
                             const uint8_t *command, size_t command_len);
/* The authorized bytes: short(session id) || corrId entityId command. */
int sx_smp_authorized_encode(sx_wr *w, const sx_smp_params *prm,
                             sx_smp_bytes corr_id, sx_smp_bytes entity_id,
                             const uint8_t *command, size_t command_len);

/* With a client service (v >= 16, NEW/SUB/NSUB only), the reference signs
 * with the entity key over (service certificate SHA-256 || authorized)
 * and adds an Ed25519 service signature over authorized alone; pass the
 * concatenation here and the service signature to sx_smp_trans_encode.
 *
 * Authorization of a transmission with the entity's private key.
 * Ed25519 / Ed448: signature of `authorized`; X25519: cbAuthenticate with
 * the server's session DH key and nonce = corrId (24 bytes). */
typedef struct sx_smp_auth {
    sx_smp_auth_kind kind;
    size_t len;
    uint8_t bytes[SX_SMP_AUTH_MAX];
} sx_smp_auth;

int sx_smp_authorize(sx_smp_auth *out, sx_key_alg alg, const uint8_t *priv,
                     const uint8_t server_dh_pub[SX_X25519_BYTES],
                     sx_smp_bytes corr_id, const uint8_t *authorized,
                     size_t authorized_len);
/* The Ed25519 authorization above with the key already expanded
 * (sx_ed25519_expand): the same signature without the key expansion. */
int sx_smp_authorize_ed25519_expanded(
    sx_smp_auth *out, const uint8_t x[SX_ED25519_EXPANDED_BYTES],
    const uint8_t *authorized, size_t authorized_len);
/* Server side: verifies with the entity's public key; X25519 needs the
 * server's session DH private key. SIMPLEX_ERR_SIGNATURE on mismatch. */
int sx_smp_verify(const sx_smp_bytes *auth, sx_smp_auth_kind kind,
                  const sx_smp_key *pub,
                  const uint8_t server_dh_priv[SX_X25519_BYTES],
                  sx_smp_bytes corr_id, const uint8_t *authorized,
                  size_t authorized_len);

/* tEncode: auth (short string, empty when none), the service signature
 * Maybe when v >= 16 and auth is present, then tToSend. */
int sx_smp_trans_encode(sx_wr *w, uint16_t v, const sx_smp_auth *auth,
                        const sx_smp_bytes *service_sig,
                        const uint8_t *body, size_t body_len);

/* ---- transport blocks ---- */

/* Batch content: count byte, then each transmission as Large. */
typedef struct sx_smp_batch {
    size_t n;
    sx_smp_bytes t[SX_SMP_MAX_BATCH];
} sx_smp_batch;

int sx_smp_batch_encode(sx_wr *w, const sx_smp_bytes *ts, size_t n);
/* Parses exactly n bytes of batch content. */
int sx_smp_batch_decode(sx_smp_batch *out, const uint8_t *p, size_t n);
/* How many of ts[0..n) fit one block (reference batching rule); 0 when
 * the first does not fit at all. */
size_t sx_smp_batch_fit(const sx_smp_bytes *ts, size_t n);

/* Unencrypted block: pad(content, 16384). */
int sx_smp_block_pad(uint8_t block[SX_SMP_BLOCK_SIZE], const uint8_t *content,
                     size_t n);
int sx_smp_block_unpad(const uint8_t block[SX_SMP_BLOCK_SIZE],
                       const uint8_t **content, size_t *n);

/* Block encryption chains (v >= 11, not on proxy connections). */
typedef struct sx_smp_chain {
    uint8_t snd_ck[32];
    uint8_t rcv_ck[32];
} sx_smp_chain;

/* sbcInit(session id, dh secret) = (ck1, ck2). The client sends with ck2
 * and receives with ck1; the server the other way round. */
int sx_smp_chain_init(sx_smp_chain *c, int is_server,
                      const uint8_t *session_id, size_t session_id_len,
                      const uint8_t dh_secret[SX_X25519_BYTES]);
void sx_smp_chain_wipe(sx_smp_chain *c);
/* Encrypts content into exactly 16384 bytes, advancing snd_ck. */
int sx_smp_block_encrypt(sx_smp_chain *c, uint8_t block[SX_SMP_BLOCK_SIZE],
                         const uint8_t *content, size_t n);
/* Decrypts a 16384-byte block, advancing rcv_ck (even on failure, as the
 * reference does). plain receives 16368 bytes; *content points into it. */
int sx_smp_block_decrypt(sx_smp_chain *c,
                         uint8_t plain[SX_SMP_BLOCK_SIZE - SX_SMP_BLOCK_TAG],
                         const uint8_t block[SX_SMP_BLOCK_SIZE],
                         const uint8_t **content, size_t *n);

/* ---- message bodies ---- */

/* Server -> recipient MSG body plaintext (RcvMsgBody / RcvMsgQuota). */
typedef struct sx_smp_rcv_body {
    int quota;                      /* 1: QUOTA marker, no flags/body */
    int64_t ts;
    int notification;
    sx_smp_bytes body;
} sx_smp_rcv_body;

int sx_smp_rcv_body_encode(sx_wr *w, const sx_smp_rcv_body *b);
int sx_smp_rcv_body_decode(sx_smp_rcv_body *out, const uint8_t *p, size_t n);
/* crypto_box with the queue's DH secret, nonce = msgId (cbNonce),
 * padded to 16106: out holds SX_SMP_RCV_MSG_PADDED + 16 bytes. */
int sx_smp_msg_body_encrypt(uint8_t *out, const uint8_t dh_secret[32],
                            sx_smp_bytes msg_id, const uint8_t *plain,
                            size_t n);
/* out holds n - 16 bytes; *plain points into out. */
int sx_smp_msg_body_decrypt(uint8_t *out, const uint8_t **plain,
                            size_t *plain_len, const uint8_t dh_secret[32],
                            sx_smp_bytes msg_id, const uint8_t *enc, size_t n);

/* Generic cbEncrypt/cbDecrypt with a raw DH secret (padded). */
int sx_smp_cb_encrypt(uint8_t *out, size_t padded_len,
                      const uint8_t dh_secret[32],
                      const uint8_t nonce[SX_BOX_NONCE_BYTES],
                      const uint8_t *plain, size_t n);
int sx_smp_cb_decrypt(uint8_t *out, const uint8_t **plain, size_t *plain_len,
                      const uint8_t dh_secret[32],
                      const uint8_t nonce[SX_BOX_NONCE_BYTES],
                      const uint8_t *enc, size_t n);

/* ClientMsgEnvelope: PubHeader (client version, Maybe X25519 key), nonce,
 * Tail encrypted body. */
typedef struct sx_smp_envelope {
    uint16_t client_version;
    sx_smp_key e2e_key;             /* alg NONE = Nothing */
    uint8_t nonce[SX_BOX_NONCE_BYTES];
    sx_smp_bytes enc_body;
} sx_smp_envelope;

int sx_smp_envelope_encode(sx_wr *w, const sx_smp_envelope *e);
int sx_smp_envelope_decode(sx_smp_envelope *out, const uint8_t *p, size_t n);

/* ClientMessage: PrivHeader ('K' + sender auth key | '_') then the rest. */
typedef struct sx_smp_client_msg {
    sx_smp_key sender_key;          /* alg NONE = PHEmpty */
    sx_smp_bytes body;
} sx_smp_client_msg;

int sx_smp_client_msg_encode(sx_wr *w, const sx_smp_client_msg *m);
int sx_smp_client_msg_decode(sx_smp_client_msg *out, const uint8_t *p,
                             size_t n);

/* The per-queue e2e layer in one step: env gives the client version, the
 * optional sender e2e key (confirmations) and the nonce; the client
 * message is encoded, padded to padded_len (SX_SMP_E2E_CONF_PADDED when
 * env->e2e_key is set, SX_SMP_E2E_MSG_PADDED otherwise, as the agent
 * does) and encrypted with the e2e DH secret; the envelope is appended to
 * w (env->enc_body is ignored). */
int sx_smp_e2e_seal(sx_wr *w, const sx_smp_envelope *env,
                    const uint8_t dh_secret[32], const sx_smp_client_msg *m,
                    size_t padded_len);
/* Decrypts env->enc_body (out holds enc_body.n bytes) and parses the
 * client message; m's views point into out. */
int sx_smp_e2e_open(sx_smp_client_msg *m, uint8_t *out,
                    const sx_smp_envelope *env, const uint8_t dh_secret[32]);

/* ---- proxy forwarding (PFWD -> RFWD -> RRES -> PRES) ---- */

/* FwdTransmission, sent by the proxy to the relay inside RFWD (after
 * crypto_box without padding with the proxy-relay session secret). */
typedef struct sx_smp_fwd_trans {
    sx_smp_bytes corr_id;           /* the client's PFWD corrId */
    uint16_t version;
    sx_smp_key key;                 /* the client's per-command X25519 key */
    sx_smp_bytes enc;               /* Tail: the client's encrypted block */
} sx_smp_fwd_trans;

int sx_smp_fwd_trans_encode(sx_wr *w, const sx_smp_fwd_trans *f);
int sx_smp_fwd_trans_decode(sx_smp_fwd_trans *out, const uint8_t *p,
                            size_t n);

/* FwdResponse, inside RRES: corrId and the response for the client. */
typedef struct sx_smp_fwd_resp {
    sx_smp_bytes corr_id;
    sx_smp_bytes enc;
} sx_smp_fwd_resp;

int sx_smp_fwd_resp_encode(sx_wr *w, const sx_smp_fwd_resp *f);
int sx_smp_fwd_resp_decode(sx_smp_fwd_resp *out, const uint8_t *p, size_t n);

/* cbEncryptNoPad / cbDecryptNoPad with a raw DH secret:
 * out holds n + 16 (seal) or n - 16 (open) bytes. */
int sx_smp_cb_seal_nopad(uint8_t *out, const uint8_t dh_secret[32],
                         const uint8_t nonce[SX_BOX_NONCE_BYTES],
                         const uint8_t *plain, size_t n);
int sx_smp_cb_open_nopad(uint8_t *out, const uint8_t dh_secret[32],
                         const uint8_t nonce[SX_BOX_NONCE_BYTES],
                         const uint8_t *enc, size_t n);

/* ---- small codec pieces shared with the agent ---- */

/* Public key as short(SPKI DER). want == SX_KEY_NONE: any of Ed25519,
 * Ed448, X25519 (an auth key). */
void sx_smp_key_encode(sx_wr *w, const sx_smp_key *k);
int sx_smp_key_decode(sx_rd *r, sx_smp_key *out, sx_key_alg want);

#endif /* SX_SMP_PROTO_H */
