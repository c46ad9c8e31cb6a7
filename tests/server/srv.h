/*
 * smp-test-server: a loopback SMP server for the tests and the demo.
 * Test code, not part of the library. Single-threaded: one poll() loop
 * drives every connection (non-blocking OpenSSL), so the queue store needs
 * no locks and events for other connections are queued on them directly.
 */
#ifndef SX_TEST_SRV_H
#define SX_TEST_SRV_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "client/smp_proto.h"
#include "common/bytes.h"
#include "crypto/crypto.h"

#define SRV_ID_BYTES 24           /* queueIdBytes / msgIdBytes */
#define SRV_QUOTA 128             /* defaultMsgQueueQuota */
#define SRV_MSG_TTL (21 * 86400)  /* defMsgExpirationDays */

/* ---- certificates (certs.c) ---- */
typedef struct srv_creds {
    uint8_t *ca_der, *srv_der;    /* certificate DER */
    int ca_len, srv_len;
    uint8_t srv_sk[SX_ED25519_SK_BYTES]; /* online key seed */
    uint8_t key_hash[SX_SHA256_BYTES];   /* SHA-256 of the CA DER */
    X509 *srv_x509, *ca_x509;
    EVP_PKEY *srv_pkey;
} srv_creds;

/* Loads the credentials from dir (when given and present) or generates
 * and (when dir is given) saves them. 0 or -1. */
int srv_creds_init(srv_creds *c, const char *dir);
void srv_creds_free(srv_creds *c);
/* The TLS server context: TLS 1.3, chacha20, x25519/x448, ALPN. */
SSL_CTX *srv_tls_ctx(const srv_creds *c);
/* X.509 signed public key (the per-connection DH key signed with the
 * online certificate's key) into w. */
int srv_signed_dh_key(sx_wr *w, const srv_creds *c,
                      const uint8_t pub[SX_X25519_BYTES]);

/* ---- store (store.c) ---- */
typedef struct srv_msg {
    struct srv_msg *next;
    uint8_t id[SRV_ID_BYTES];
    int64_t ts;
    int quota;                    /* the quota marker */
    int notification;
    size_t len;
    uint8_t *body;
} srv_msg;

struct srv_conn;
struct srv_sub;

/* a message notification waiting for a notifier subscriber (NtfStore) */
typedef struct srv_ntf {
    struct srv_ntf *next;
    uint8_t nonce[SX_BOX_NONCE_BYTES];
    uint8_t enc[SX_SMP_NMSG_META_PADDED + SX_BOX_TAG_BYTES];
} srv_ntf;

typedef struct srv_queue {
    struct srv_queue *next, *prev;  /* all queues, newest first */
    uint8_t rid[SRV_ID_BYTES], sid[SRV_ID_BYTES];
    size_t n_rcv_keys;            /* recipient auth keys (RKEY) */
    sx_smp_key rcv_keys[SX_SMP_MAX_RCV_KEYS];
    uint8_t rcv_dh_secret[32];    /* dh'(client rcv dh, server queue priv) */
    int has_snd_key;
    sx_smp_key snd_key;
    char mode;                    /* 0 (Nothing), 'M', 'C' */
    /* queue link data (short links) */
    int has_link;
    size_t link_len;
    uint8_t link_id[255];
    size_t fixed_len, user_len;
    uint8_t *fixed_data, *user_data;
    int off;                      /* EntityOff */
    int has_ntf;
    uint8_t nid[SRV_ID_BYTES];
    sx_smp_key ntf_key;
    uint8_t ntf_dh_secret[32];
    srv_ntf *ntfs_head, *ntfs_tail;   /* undelivered notifications */
    /* messages */
    srv_msg *head, *tail;
    size_t size;                  /* includes a quota marker */
    int can_write;
    /* the subscribed connection (queueSubscribers) */
    struct srv_conn *subscriber;
    struct srv_conn *ntf_subscriber;
    /* every connection's subscriptions to this queue (deliver.c), by
     * kind: SRV_SUB_RCV (SUB and GET) and SRV_SUB_NTF (NSUB) */
    struct srv_sub *subs[2];
    /* store.c's hash indexes by rid, sid, nid and link id */
    struct srv_queue *h_next[4];
    uint64_t h_hash[4];
    unsigned h_in;                /* bit k: in index k */
    uint64_t seq;                 /* creation order */
} srv_queue;

int srv_store_open_log(const char *path); /* replays then appends */
void srv_store_close(void);
srv_queue *srv_q_by_rid(const uint8_t *id, size_t n);
srv_queue *srv_q_by_sid(const uint8_t *id, size_t n);
srv_queue *srv_q_by_nid(const uint8_t *id, size_t n);
srv_queue *srv_q_by_link(const uint8_t *id, size_t n);
/* A new queue; sid (when given) is the client's. NULL on collision. */
srv_queue *srv_q_new_with(const uint8_t *sid);
void srv_q_set_link(srv_queue *q, const uint8_t *lid, size_t lid_len,
                    const uint8_t *fixed, size_t fixed_len,
                    const uint8_t *user, size_t user_len);
void srv_q_del_link(srv_queue *q);
/* A new queue with random ids; NULL on id collision after retries. */
srv_queue *srv_q_new(void);
void srv_q_log_new(const srv_queue *q);
void srv_q_secure(srv_queue *q, const sx_smp_key *k);
void srv_q_rkey(srv_queue *q, const sx_smp_key *ks, size_t n);
void srv_q_suspend(srv_queue *q);
void srv_q_set_ntf(srv_queue *q, const uint8_t nid[SRV_ID_BYTES],
                   const sx_smp_key *k, const uint8_t secret[32]);
void srv_q_del_ntf(srv_queue *q);
void srv_q_ntfs_clear(srv_queue *q);
void srv_q_delete(srv_queue *q);
/* writeMsg: 1 written (was_empty set), 0 quota (marker may be added). */
int srv_q_write(srv_queue *q, const uint8_t *body, size_t n, int ntf,
                int *was_empty, srv_msg **out);
/* Deletes the head when its id matches; returns 1 when deleted. */
int srv_q_del_head(srv_queue *q, const uint8_t *id, size_t n);
void srv_q_expire(srv_queue *q, int64_t before);
/* Iterate all queues, newest first. */
srv_queue *srv_q_first(void);

int64_t srv_now(void);

/* ---- connections (conn.c) and commands (cmd.c) ---- */
enum { SRV_SUB_RCV, SRV_SUB_NTF };

/* A connection's subscription to a queue (deliver.c). It is in the
 * connection's table of its kind and in the queue's list of its kind. */
typedef struct srv_sub {
    struct srv_sub *h_next;       /* chain in the connection's table */
    struct srv_sub *q_next, *q_prev; /* the queue's list */
    struct srv_conn *c;
    srv_queue *q;
    int prohibit;                 /* ProhibitSub (GET) */
    int has_delivered;
    uint8_t delivered[SRV_ID_BYTES];
} srv_sub;

/* subscriptions by queue: a chained hash table keyed by the queue's seq */
typedef struct srv_subs {
    srv_sub **b;
    size_t cap, n;                /* cap: 0 or a power of two */
} srv_subs;

typedef struct srv_out {
    struct srv_out *next;
    uint8_t block[SX_SMP_BLOCK_SIZE];
} srv_out;

typedef struct srv_conn {
    struct srv_conn *next;
    int fd;
    SSL *ssl;
    int state;                    /* see conn.c */
    int closing;
    int64_t accepted;             /* time of accept() */
    uint8_t session_id[64];
    size_t session_len;
    uint16_t version;
    int encrypted;
    sx_smp_chain chain;
    uint8_t dh_pub[SX_X25519_BYTES], dh_priv[SX_X25519_BYTES];
    int has_sess_secret;          /* the client sent a DH key (v >= 7) */
    uint8_t sess_secret[SX_X25519_BYTES];
    uint8_t inbuf[SX_SMP_BLOCK_SIZE];
    size_t inlen;
    srv_out *out_head, *out_tail;
    size_t out_off;
    srv_subs subs;                /* SUB / GET (SRV_SUB_RCV) */
    srv_subs ntf_subs;            /* NSUB'ed queues (SRV_SUB_NTF) */
    size_t pf_idx;                /* main.c: index in this round's pollfds */
} srv_conn;

/* One response of a batch: encoded transmission (tEncode) bytes. */
typedef struct srv_resp {
    uint8_t *p;
    size_t n;
} srv_resp;

typedef struct srv_resps {
    srv_resp *v;
    size_t n, cap;
} srv_resps;

void srv_resps_free(srv_resps *r);
/* Encodes (corr_id, entity, msg) at the connection's version. */
void srv_resp_add(srv_resps *r, const srv_conn *c, sx_smp_bytes corr_id,
                  sx_smp_bytes entity, const sx_smp_msg *m);
/* Batches and queues the transmissions as blocks on c. */
void srv_conn_send(srv_conn *c, const srv_resps *r);

/* Processes one received block's content on c. */
void srv_process_block(srv_conn *c, const uint8_t *content, size_t n, int bad);
/* Forgets c's subscriptions (disconnect). */
void srv_conn_unsubscribe(srv_conn *c);
void srv_cmd_init(void);

/* ---- the proxy role (proxy.c) ---- */
extern int g_proxy_enabled;      /* --proxy */
extern int g_ignore_sub;         /* --ignore-sub: SUB goes unanswered (tests
                                    of the client's response timeout) */
/* Closes the connections to destination relays. */
void srv_proxy_close_all(void);

#endif
