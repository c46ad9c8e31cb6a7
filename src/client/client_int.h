/*
 * Internal: the SMP client's shared state (client.c: public API and
 * request hand-off; client_loop.c: the I/O thread; client_conn.c: one
 * server connection; client_obj.c: queues and events). Never installed.
 */
#ifndef SX_CLIENT_INT_H
#define SX_CLIENT_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "client/session.h"
#include "client/socks5.h"
#include "client/tls.h"
#include "client/net.h"
#include "common/server_addr.h"
#include "common/sx.h"
#include "simplex/client.h"

#define CL_ID_MAX 24
#define CL_KEY 32

struct simplex_queue {
    char *server;
    uint8_t rcv_id[CL_ID_MAX];
    size_t rcv_id_len;
    uint8_t snd_id[CL_ID_MAX];
    size_t snd_id_len;
    uint8_t rcv_auth_pk[CL_KEY], rcv_auth_sk[CL_KEY];
    /* rcv_auth_sk expanded once (every ACK / SUB / ... is signed with it) */
    int has_rcv_auth_x;
    uint8_t rcv_auth_x[SX_ED25519_EXPANDED_BYTES];
    uint8_t rcv_dh_pk[CL_KEY], rcv_dh_sk[CL_KEY];
    uint8_t srv_dh_pk[CL_KEY];
    uint8_t dh_secret[CL_KEY];
    int sender_can_secure;
};

struct simplex_notifier {
    char *server;
    uint8_t ntf_id[CL_ID_MAX];
    size_t ntf_id_len;
    uint8_t ntf_auth_pk[CL_KEY], ntf_auth_sk[CL_KEY];
    uint8_t ntf_dh_pk[CL_KEY], ntf_dh_sk[CL_KEY];
    uint8_t srv_dh_pk[CL_KEY];
    uint8_t dh_secret[CL_KEY];
};

struct simplex_client_event {
    simplex_client_event_type type;
    char *server;
    uint8_t queue_id[CL_ID_MAX];
    size_t queue_id_len;
    uint8_t msg_id[CL_ID_MAX];
    size_t msg_id_len;
    int64_t ts;
    unsigned flags;
    uint8_t *body;
    size_t body_len;
    /* when set, body points into this buffer (the decrypted MSG, kept
     * instead of copying the body out of it) and it is what is freed */
    uint8_t *body_buf;
    size_t body_buf_len;
    int error;
    char *message;
    uint8_t nonce[24];          /* NMSG */
    struct simplex_client_event *next; /* the pull queue */
};

/* client_obj.c */
simplex_client_event *cl_event_new(simplex_client_event_type type,
                                   const char *server);
/* Decrypts a MSG (server -> recipient layer) into a MSG event. */
int cl_event_from_msg(simplex_client_event **out, const char *server,
                      const uint8_t *rcv_id, size_t rcv_id_len,
                      const uint8_t dh_secret[CL_KEY], const sx_smp_msg *m);
char *cl_strdup(const char *s);

/* ---- requests: posted by API threads, run by the I/O thread ---- */

typedef enum cl_op {
    CL_OP_CONNECT = 1,
    CL_OP_PING,
    CL_OP_NEW,
    CL_OP_KEY,
    CL_OP_SKEY,
    CL_OP_SEND,
    CL_OP_SUB,
    CL_OP_GET,
    CL_OP_ACK,
    CL_OP_OFF,
    CL_OP_DEL,
    CL_OP_QUE,
    CL_OP_PRXY,                 /* client_proxy.c */
    CL_OP_PFWD,
    CL_OP_NKEY,                 /* client_ntf.c */
    CL_OP_NDEL,
    CL_OP_NSUB
} cl_op;

/* One command of a request (a request holds several only for SUB). */
typedef struct cl_item {
    const simplex_queue *q;     /* recipient commands */
    size_t idx;                 /* SUB: position in the caller's list */
    uint64_t request_id;
    int submitted, done;
    int rc;
} cl_item;

typedef struct cl_req {
    cl_op op;
    sx_server_addr addr;        /* parsed server (for non-queue ops) */
    const char *server;         /* its text, as given */
    /* parameters */
    const uint8_t *entity;
    size_t entity_len;
    const uint8_t *key;         /* KEY: sender public; SKEY/SEND: sender sk */
    const uint8_t *msg_id;
    size_t msg_id_len;
    const uint8_t *body;
    size_t body_len;
    unsigned flags;
    simplex_queue *new_q;       /* NEW: filled in */
    simplex_notifier *new_n;    /* NKEY: filled in */
    size_t n_items;
    cl_item *items;
    cl_item one;
    size_t n_left;              /* items not done */
    /* results */
    int rc;
    char err[256];
    uint16_t version;
    simplex_client_event *ev;   /* GET */
    simplex_buf info;           /* QUE */
    int done;
    void *ext;                  /* PRXY / PFWD: client_proxy.c's data */
    /* asynchronous (client.c: *_async): the request is heap memory owned
     * by the I/O thread, finished by calling done and freeing it */
    int async;
    simplex_client_done_cb done_cb;
    void *done_ud;
    size_t alloc_len;           /* of the whole allocation, for wiping */
    struct cl_req *next;        /* client inbox / connection wait list */
} cl_req;

/* A sender key and its expanded form (cl_signer_get): an open-addressing
 * table of CL_SIGNERS_MIN..CL_SIGNERS_MAX entries, at most half full. */
#define CL_SIGNERS_MIN 64
#define CL_SIGNERS_MAX 4096
#define CL_SIGNERS_PROBE 8
typedef struct cl_signer {
    int used;
    uint8_t sk[CL_KEY];
    uint8_t x[SX_ED25519_EXPANDED_BYTES];
} cl_signer;

/* A queue subscribed on a connection (its own copy of the secrets). */
typedef struct cl_sub {
    uint8_t rcv_id[CL_ID_MAX];
    size_t rcv_id_len;
    uint8_t rcv_auth_sk[CL_KEY];
    uint8_t dh_secret[CL_KEY];
    int active;                 /* SUB answered OK (or MSG) */
    int ntf;                    /* an NSUB (rcv_*: the notifier's) */
    uint64_t request_id;        /* outstanding SUB during resubscription */
    int resub;                  /* counted in the connection's resub_left */
    struct cl_sub *next, *prev; /* the connection's list (O(1) removal) */
    struct cl_sub *hnext;       /* the connection's hash bucket */
} cl_sub;

typedef enum cl_conn_state {
    CL_C_IDLE = 0,      /* waiting for the reconnect time */
    CL_C_TCP,           /* connecting to the proxy */
    CL_C_SOCKS,         /* SOCKS5 handshake */
    CL_C_TLS,           /* TCP + TLS handshake */
    CL_C_HELLO,         /* SMP handshake */
    CL_C_READY,
    CL_C_DEAD
} cl_conn_state;

/* An outstanding command: which request item its response completes. */
typedef struct cl_pending {
    uint64_t request_id;
    cl_req *req;
    cl_item *item;
    /* a resubscription (req NULL): its queue, found again on timeout */
    uint8_t rcv_id[CL_ID_MAX];
    size_t rcv_id_len;
    struct cl_pending *next;
} cl_pending;
/* The connection keeps them oldest first: responses come mostly in
 * order, so the one answered is found at the head. */

typedef struct cl_conn {
    struct simplex_client *client;
    sx_server_addr addr;
    char *server;               /* canonical text */
    cl_conn_state state;
    size_t host_idx;
    int64_t deadline;           /* connect deadline of the current host */
    sx_net_connector *tcp;
    int fd;                     /* SOCKS stage socket */
    sx_socks5 socks;
    sx_tls_conn *tls;
    sx_smp_session *sess;
    int ever_up;                /* a session was established before */
    int was_ready;
    /* the application was last told the connection is up (the first
     * session, or UP); DOWN is only said after that */
    int reported_up;
    /* resubscriptions not answered yet: UP is emitted when they all were
     * (as the reference agent reports UP after resubscribing) */
    size_t resub_left;
    int64_t reconnect_at;
    unsigned attempts;
    int last_rc;
    char last_err[200];
    cl_req *waiting;            /* requests waiting for READY */
    cl_req *waiting_tail;
    cl_pending *pending;        /* oldest first */
    cl_pending *pending_tail;
    cl_sub *subs;
    /* subs by recipient id: every MSG looks its queue up, and a list walk
     * made that O(subscriptions) (client_conn.c) */
    cl_sub **sub_tab;
    size_t sub_cap;             /* buckets, a power of two (0: none yet) */
    size_t n_subs;
    uint64_t sub_seed;
    uint8_t block[SX_SMP_BLOCK_SIZE];
    int have_out;               /* block holds an unsent block */
    /* sender keys (SEND / SKEY) expanded for signing, by a keyed hash of
     * the key; allocated on first use */
    struct cl_signer *signers;
    size_t signer_cap, n_signers;
    uint8_t signer_key[16];
    struct cl_conn *next;
} cl_conn;

struct simplex_client {
    simplex_client_options opts;
    char *proxy_host;
    uint16_t proxy_port;
    char *proxy_user, *proxy_pass;
    char proxy_session_ts[48];  /* isolation: when the client started */
    sx_tls_ctx *tls_ctx;
    pthread_t thread;
    int thread_started;
    int wake_fd[2];
    pthread_mutex_t mu;
    pthread_cond_t cv;          /* requests done */
    pthread_cond_t ev_cv;       /* events queued (apart from cv, so that a
                                 * reader and the callers waiting for
                                 * their requests do not wake each other) */
    cl_req *inbox, *inbox_tail; /* under mu: FIFO */
    int stopping;               /* under mu */
    simplex_client_event *ev_head, *ev_tail; /* under mu */
    char last_err[256];         /* under mu */
    cl_conn *conns;             /* I/O thread only */
    struct cl_relay *relays;    /* under mu: proxied relay sessions */
    /* asynchronous requests with a large body reuse their allocations
     * (client.c): a pipeline of 16 KB SENDs otherwise has the allocator
     * return and fault in fresh pages for every message */
    struct cl_req *async_cache; /* under mu */
    size_t async_cached;
};

/* client_loop.c */
void *cl_loop_main(void *arg);
void cl_wake(struct simplex_client *c);
void cl_emit(struct simplex_client *c, simplex_client_event *ev);
void cl_req_finish(struct simplex_client *c, cl_req *r, int rc,
                   const char *fmt, ...) SX_PRINTF(4, 5);
int64_t cl_now(void);

/* client_connect.c */
void cl_conn_start(cl_conn *k, int64_t now);
void cl_host_next(cl_conn *k, int rc, const char *why, int64_t now);
void cl_step_tcp(cl_conn *k, int64_t now);
void cl_step_socks(cl_conn *k, int64_t now);
void cl_step_tls(cl_conn *k, int64_t now);

/* client_conn.c */
void cl_close_transport(cl_conn *k);
/* Handles the session's events; non-zero when the connection failed. */
int cl_conn_drain(cl_conn *k, int64_t now);

cl_conn *cl_conn_find(struct simplex_client *c, const sx_server_addr *a,
                      int create);
void cl_conn_submit_waiting(cl_conn *k, int64_t now);
void cl_conn_free(cl_conn *k);
/* Drops the connection with rc: fails its requests, plans reconnection. */
void cl_conn_fail(cl_conn *k, int rc, const char *why, int64_t now);
void cl_conn_add_req(cl_conn *k, cl_req *r, int64_t now);
cl_sub *cl_sub_add(cl_conn *k, const simplex_queue *q, int active);
void cl_sub_remove(cl_conn *k, const uint8_t *id, size_t n);

/* client.c: finishes an asynchronous request (calls its done callback or
 * emits an ERROR event, then frees it); I/O thread. */
void cl_async_finish(struct simplex_client *c, cl_req *r, int rc,
                     const char *err);

/* client.c: the synchronous call helpers, for client_proxy.c */
int cl_api_enter(struct simplex_client *c);
void cl_api_req_init(cl_req *r, cl_op op);
int cl_api_req_server(struct simplex_client *c, cl_req *r, const char *server);
int cl_api_run(struct simplex_client *c, cl_req *r);
int cl_api_fail(struct simplex_client *c, int rc, const char *msg);

/* client_conn.c: the expanded form of an Ed25519 sender key, from the
 * connection's cache (NULL when it cannot be had: sign with the key). */
const uint8_t *cl_signer_get(cl_conn *k, const uint8_t sk[CL_KEY]);

/* client_proxy.c */
/* PRXY / PFWD: the command (I/O thread); *corr is the correlation id it
 * must be sent with (PFWD: the nonce of its body), NULL for any. */
int cl_proxy_cmd(cl_conn *k, cl_req *r, sx_smp_cmd *cmd,
                 const uint8_t **ent, size_t *ent_len, const uint8_t **corr);
/* PRXY / PFWD: the response (I/O thread); rc and the error text. */
int cl_proxy_response(cl_req *r, const sx_smp_msg *m, char *err, size_t cap);
void cl_relays_free(struct simplex_client *c);

/* client_ntf.c (I/O thread) */
/* NKEY: the command's keys. */
void cl_ntf_nkey_cmd(const cl_req *r, sx_smp_cmd *cmd);
/* NKEY: the NID response into r->new_n. */
int cl_ntf_on_nid(cl_req *r, const sx_smp_msg *m);
/* NMSG on a notifier subscription: emits the event. */
void cl_ntf_deliver(cl_conn *k, const cl_sub *s, const sx_smp_msg *m);

/* client_io.c */
/* poll registration: fd, events and deadline (ms, -1: none) */
int cl_conn_poll(cl_conn *k, short *events, int64_t *deadline);
void cl_conn_step(cl_conn *k, short revents, int64_t now);

#endif /* SX_CLIENT_INT_H */
