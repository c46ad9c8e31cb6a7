/*
 * SMP agent protocol messages, byte-compatible with simplexmq 6.5.5.0
 * (Simplex.Messaging.Agent.Protocol), pure codecs without I/O:
 *
 *   AgentMsgEnvelope  what the agent puts in the SMP client message:
 *                     version, 'C' confirmation | 'M' message |
 *                     'I' invitation | 'R' ratchet key
 *   AgentMessage      what the ratchet (or, for 'R', the queue e2e layer)
 *                     protects: 'I' conn info | 'D' conn info + reply
 *                     queues | 'R' ratchet info | 'M' header + AMessage
 *   AMessage          HELLO, A_MSG, A_RCVD, A_QCONT, QADD, QKEY, QUSE,
 *                     QTEST, EREADY
 *
 * Decoders are strict: the value must be the whole input (the Tail fields
 * take the rest by definition), unknown tags are SIMPLEX_ERR_PARSE, short
 * input SIMPLEX_ERR_TRUNCATED or SIMPLEX_ERR_PARSE. Decoded byte fields
 * are views into the input. Every function returns 0 or a negative
 * simplex_error.
 *
 * Lists (NonEmpty in the reference, up to 255 items on the wire) are held
 * in fixed arrays of SX_AGENT_MAX_LIST items; longer lists are refused
 * with SIMPLEX_ERR_TOO_LARGE (the reference agent sends one or two).
 */
#ifndef SX_AGENT_PROTO_H
#define SX_AGENT_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include "agent/queue_uri.h"
#include "agent/ratchet.h"
#include "common/bytes.h"
#include "common/server_addr.h"
#include "crypto/crypto.h"

/* SMP agent versions (SMPAgentVersion) */
#define SX_AGENT_VERSION_DUPLEX 2       /* duplexHandshake, min supported */
#define SX_AGENT_VERSION_RATCHET_SYNC 3
#define SX_AGENT_VERSION_DELIVERY_RCPTS 4
#define SX_AGENT_VERSION_PQDR 5
#define SX_AGENT_VERSION_SND_AUTH_KEY 6
#define SX_AGENT_VERSION_RATCHET_ON_CONF 7
#define SX_AGENT_VERSION_MIN SX_AGENT_VERSION_DUPLEX
#define SX_AGENT_VERSION_CURRENT 7

#define SX_AGENT_MAX_LIST 8

typedef struct sx_agent_bytes {
    const uint8_t *p;
    size_t n;
} sx_agent_bytes;

/* ---- AgentMsgEnvelope ---- */
typedef enum sx_agent_env_type {
    SX_AGENT_ENV_CONFIRMATION = 'C',
    SX_AGENT_ENV_MSG = 'M',
    SX_AGENT_ENV_INVITATION = 'I',
    SX_AGENT_ENV_RATCHET_KEY = 'R'
} sx_agent_env_type;

typedef struct sx_agent_envelope {
    uint16_t agent_version;
    sx_agent_env_type type;
    /* CONFIRMATION: e2eEncryption_ (Maybe), RATCHET_KEY: always present */
    int has_e2e;
    sx_e2e_params e2e;
    /* INVITATION: the invitation link text (Large strEncode); decoding
     * checks that it parses as a 1-time invitation link */
    sx_agent_bytes conn_req;
    /* Tail: encConnInfo (C), encAgentMessage (M), connInfo (I), info (R) */
    sx_agent_bytes body;
} sx_agent_envelope;

int sx_agent_envelope_encode(sx_wr *w, const sx_agent_envelope *e);
int sx_agent_envelope_decode(sx_agent_envelope *out, const uint8_t *p,
                             size_t n);

/* ---- AMessage ---- */
typedef enum sx_amsg_type {
    SX_AMSG_HELLO = 1, /* "H" */
    SX_AMSG_A_MSG,     /* "M" Tail body */
    SX_AMSG_A_RCVD,    /* "V" NonEmpty receipt */
    SX_AMSG_A_QCONT,   /* "QC" SndQAddr */
    SX_AMSG_QADD,      /* "QA" NonEmpty (SMPQueueUri, Maybe SndQAddr) */
    SX_AMSG_QKEY,      /* "QK" NonEmpty (SMPQueueInfo, sender auth key) */
    SX_AMSG_QUSE,      /* "QU" NonEmpty (SndQAddr, Bool) */
    SX_AMSG_QTEST,     /* "QT" NonEmpty SndQAddr */
    SX_AMSG_EREADY     /* "E" Int64 last decrypted message id */
} sx_amsg_type;

/* SndQAddr: (SMPServer, SenderId) */
typedef struct sx_agent_qaddr {
    sx_server_addr server;
    uint8_t sender_id[SX_QUEUE_ID_MAX];
    size_t sender_id_len;
} sx_agent_qaddr;

typedef struct sx_agent_receipt {
    int64_t agent_msg_id;
    sx_agent_bytes msg_hash;  /* ByteString */
    sx_agent_bytes rcpt_info; /* Large */
} sx_agent_receipt;

typedef struct sx_agent_qadd {
    sx_queue_uri uri;
    int has_replaced;
    sx_agent_qaddr replaced;
} sx_agent_qadd;

typedef struct sx_agent_qkey {
    sx_queue_info info;
    sx_key_alg key_alg; /* any public auth key (SPKI on the wire) */
    uint8_t key[SX_ED448_PK_BYTES];
} sx_agent_qkey;

typedef struct sx_agent_quse {
    sx_agent_qaddr addr;
    int primary;
} sx_agent_quse;

typedef struct sx_amessage {
    sx_amsg_type type;
    sx_agent_bytes body;        /* A_MSG */
    int64_t last_msg_id;        /* EREADY */
    size_t n;                   /* list length for the list types */
    union {
        sx_agent_receipt rcvd[SX_AGENT_MAX_LIST];
        sx_agent_qaddr qaddr[SX_AGENT_MAX_LIST]; /* A_QCONT (n=1), QTEST */
        sx_agent_qadd qadd[SX_AGENT_MAX_LIST];
        sx_agent_qkey qkey[SX_AGENT_MAX_LIST];
        sx_agent_quse quse[SX_AGENT_MAX_LIST];
    } u;
} sx_amessage;

int sx_amessage_encode(sx_wr *w, const sx_amessage *m);
/* Reads one AMessage (A_MSG takes the rest of the input). */
int sx_amessage_read(sx_rd *r, sx_amessage *out);

/* ---- AgentMessage ---- */
typedef enum sx_agent_msg_type {
    SX_AGENT_MSG_CONN_INFO = 'I',
    SX_AGENT_MSG_CONN_INFO_REPLY = 'D',
    SX_AGENT_MSG_RATCHET_INFO = 'R',
    SX_AGENT_MSG_MESSAGE = 'M'
} sx_agent_msg_type;

typedef struct sx_agent_message {
    sx_agent_msg_type type;
    /* CONN_INFO_REPLY */
    size_t n_queues;
    sx_queue_info queues[SX_AGENT_MAX_LIST];
    /* Tail: connInfo (I, D) or ratchet info (R) */
    sx_agent_bytes info;
    /* MESSAGE: APrivHeader and the AMessage */
    int64_t snd_msg_id;
    sx_agent_bytes prev_msg_hash; /* ByteString, empty for the first */
    sx_amessage msg;
} sx_agent_message;

int sx_agent_message_encode(sx_wr *w, const sx_agent_message *m);
int sx_agent_message_decode(sx_agent_message *out, const uint8_t *p,
                            size_t n);

/* ---- message hash chain (Agent.hs enqueueMessage) ----
 * The hash of a sent agent message is sha256 of its whole smpEncode
 * (AgentMessage header body); it is the next message's prevMsgHash and
 * the msgHash of delivery receipts. */
int sx_agent_msg_hash(uint8_t out[SX_SHA256_BYTES], const uint8_t *agent_msg,
                      size_t n);
/* Encodes AgentMessage (APrivHeader snd_msg_id prev) msg into w and
 * writes its hash to hash_out (may be NULL). prev_len is 0 or 32. */
int sx_agent_msg_encode_chained(sx_wr *w, uint8_t hash_out[SX_SHA256_BYTES],
                                int64_t snd_msg_id, const uint8_t *prev,
                                size_t prev_len, const sx_amessage *msg);

#endif /* SX_AGENT_PROTO_H */
