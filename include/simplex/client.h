/*
 * libsimplex: the low-level SMP client.
 *
 * A simplex_client keeps TLS connections to any number of SMP servers and
 * runs them on ONE internal I/O thread (a poll() loop that also runs the
 * timers: connect and response timeouts, keep-alive pings, reconnection
 * back-off). Connections are opened on first use, one per server address.
 *
 * Threads. Every function below may be called from any thread. The
 * command functions are synchronous (apart from the *_async ones, see
 * "asynchronous commands"): they hand the command to the I/O
 * thread and wait for the server's answer (or the response timeout, or
 * the connect timeout for each host of the address). The event callback
 * runs on the I/O thread: it must not block, and a synchronous call made
 * from it (a command, simplex_client_next_event()) returns
 * SIMPLEX_ERR_RECURSIVE_CALL without doing anything; simplex_client_free()
 * must never be called from it.
 *
 * Errors. Functions return 0 or a negative simplex_error. A command the
 * server refused (SMP "ERR ...") returns SIMPLEX_ERR_SERVER; the
 * detailed message of the last failure on a client ("ERR AUTH", "cannot
 * connect to smp://... (127.0.0.1: connection refused)") is read with
 * simplex_client_last_error(). It is per client, not per thread: with
 * several threads failing at once the last one wins.
 *
 * Queues. A simplex_queue passed to a call is only read during the call.
 * The client keeps its own copy of the keys of every queue subscribed on
 * it (to decrypt MSG events and resubscribe), until END, DELD, DEL or
 * simplex_client_free().
 *
 * Events. Without a callback, events wait in an unbounded queue for
 * simplex_client_next_event(): pull them regularly.
 *
 * Server addresses are text: smp://<key hash>[:<basic auth>]@host1,host2[:port].
 * The hosts are tried in order (each with its own connect timeout); the
 * TLS identity certificate must hash to <key hash>, else
 * SIMPLEX_ERR_SERVER_IDENTITY.
 *
 * Reconnection. When a connection with subscribed queues breaks, a DOWN
 * event is emitted and the client reconnects with exponential back-off and
 * jitter; once the session is up again it resubscribes every queue that
 * was subscribed (one batch) and emits UP when the server has answered
 * them all (or they timed out), as the reference agent does. A queue
 * whose resubscription fails is reported with an ERROR event (before UP)
 * and dropped from the set; messages that waited on the server may come
 * before or after UP. A connection that breaks again before UP gives no
 * second DOWN.
 * Connections without subscriptions are simply closed and reopened by the
 * next command.
 */
#ifndef SIMPLEX_CLIENT_H
#define SIMPLEX_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "simplex/common.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Ed25519 public and private (seed) keys, and the X25519 DH secret. */
#define SIMPLEX_CLIENT_KEY_BYTES 32
SIMPLEX_API size_t simplex_client_key_bytes(void);

typedef struct simplex_client simplex_client;
typedef struct simplex_queue simplex_queue;
typedef struct simplex_client_event simplex_client_event;
/* A queue's notifier credentials (NKEY), held by the notifier. */
typedef struct simplex_notifier simplex_notifier;

/* ---- events ------------------------------------------------------------- */

typedef enum simplex_client_event_type {
    SIMPLEX_CLIENT_EVENT_MSG = 1,   /* a message on a subscribed queue */
    SIMPLEX_CLIENT_EVENT_END = 2,   /* the subscription moved to another
                                       connection (another client took it) */
    SIMPLEX_CLIENT_EVENT_DELD = 3,  /* the queue was deleted on the server */
    SIMPLEX_CLIENT_EVENT_DOWN = 4,  /* a connection with subscriptions broke */
    SIMPLEX_CLIENT_EVENT_UP = 5,    /* it is back and its queues were
                                       subscribed again */
    SIMPLEX_CLIENT_EVENT_ERROR = 6, /* an asynchronous failure (see code) */
    SIMPLEX_CLIENT_EVENT_NMSG = 7   /* a message notification on a queue
                                       subscribed with NSUB (queue id: the
                                       notifier id; body: the encrypted
                                       metadata, see simplex_notifier_decrypt) */
} simplex_client_event_type;

/*
 * Event callback: ev is borrowed for the duration of the call (copy what
 * you keep, or use simplex_client_event_copy()). Runs on the I/O thread.
 */
typedef void (*simplex_client_event_cb)(const simplex_client_event *ev,
                                        void *user_data);

SIMPLEX_API simplex_client_event_type
simplex_client_event_get_type(const simplex_client_event *ev);
/* The server address the event is about (borrowed from ev, never NULL). */
SIMPLEX_API const char *
simplex_client_event_server(const simplex_client_event *ev);
/* The recipient queue id (MSG, END, DELD; ERROR about one queue), borrowed
 * from ev; NULL with *len 0 when none. */
SIMPLEX_API const uint8_t *
simplex_client_event_queue_id(const simplex_client_event *ev, size_t *len);
/* MSG: the message id (pass it to simplex_client_ack()), borrowed. */
SIMPLEX_API const uint8_t *
simplex_client_event_msg_id(const simplex_client_event *ev, size_t *len);
/* MSG: server timestamp (seconds since the Unix epoch). */
SIMPLEX_API int64_t simplex_client_event_timestamp(const simplex_client_event *ev);
/* MSG flags: SIMPLEX_CLIENT_MSG_NOTIFICATION, SIMPLEX_CLIENT_MSG_QUOTA
 * (the server's "queue full" marker: no body, ack it as any message). */
#define SIMPLEX_CLIENT_MSG_NOTIFICATION 1u
#define SIMPLEX_CLIENT_MSG_QUOTA 2u
SIMPLEX_API unsigned simplex_client_event_flags(const simplex_client_event *ev);
/* MSG: the body as the sender sent it (for agent traffic: the per-queue
 * end-to-end envelope), borrowed from ev. */
SIMPLEX_API const uint8_t *
simplex_client_event_body(const simplex_client_event *ev, size_t *len);
/* MSG: copies the body into out (the caller's, simplex_buf_dispose()). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_event_copy_body(const simplex_client_event *ev,
                               simplex_buf *out);
/* ERROR, DOWN: the error code (DOWN: why the connection broke); other
 * types 0. */
SIMPLEX_API int simplex_client_event_error(const simplex_client_event *ev);
/* ERROR, DOWN: a description (borrowed, never NULL; "" for other types). */
SIMPLEX_API const char *
simplex_client_event_message(const simplex_client_event *ev);
/* A copy of ev that the caller owns (free with simplex_client_event_free). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_event_copy(simplex_client_event **out,
                          const simplex_client_event *ev);
/* Frees an event obtained from next_event, get or copy. NULL accepted. */
SIMPLEX_API void simplex_client_event_free(simplex_client_event *ev);

/* ---- options ------------------------------------------------------------ */

#define SIMPLEX_CLIENT_OPTIONS_VERSION 1

typedef struct simplex_client_options {
    unsigned version;                /* SIMPLEX_CLIENT_OPTIONS_VERSION */
    /* Per host: TCP (+ SOCKS) + TLS + SMP handshake. 0: 25000. */
    unsigned connect_timeout_ms;
    /* Per command. 0: 30000. */
    unsigned response_timeout_ms;
    /* Keep-alive PING after this long without traffic. 0: 600000. */
    unsigned ping_interval_ms;
    /* Consecutive unanswered pings that drop the connection. 0: 3. */
    unsigned max_missed_pings;
    /* Reconnection back-off: first delay, growth x1.5 per attempt, cap.
     * 0: 2000 and 180000. A random jitter of up to +25% is added. */
    unsigned reconnect_initial_ms;
    unsigned reconnect_max_ms;
    /* SOCKS5 proxy "host:port" (IPv6 host in brackets); NULL: none.
     * Server host names are then resolved by the proxy. Copied. */
    const char *socks5_proxy;
    /* Proxy login: NULL username: no authentication unless socks5_isolate.
     * Copied. */
    const char *socks5_username;
    const char *socks5_password;
    /* Non-zero: per-server circuit isolation (Tor): the proxy login is
     * derived from the server address as the reference client does
     * (overrides socks5_username). */
    int socks5_isolate;
    /* Events: when set, every event goes to this callback (on the I/O
     * thread); when NULL they are queued for simplex_client_next_event(). */
    simplex_client_event_cb event_cb;
    void *user_data;
} simplex_client_options;

/* Fills opts with the defaults for this version (all zero/NULL above).
 * SIMPLEX_ERR_UNSUPPORTED for an unknown version. */
SIMPLEX_API int simplex_client_options_init(simplex_client_options *opts,
                                            unsigned version);

/* ---- the client --------------------------------------------------------- */

/*
 * Creates a client and starts its I/O thread. opts may be NULL (defaults).
 * Requires simplex_global_init(). On failure *out is NULL.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_new(simplex_client **out, const simplex_client_options *opts);

/*
 * Stops the I/O thread, closes every connection, fails commands still
 * waiting with SIMPLEX_ERR_CLOSED and drops queued events. No other call
 * on the client may be in progress or follow. Not from the callback.
 * NULL accepted.
 */
SIMPLEX_API void simplex_client_free(simplex_client *c);

/* The detailed message of the last failure on c, NUL-terminated, in out
 * (the caller's, simplex_buf_dispose(); len excludes the NUL). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_last_error(simplex_client *c, simplex_buf *out);

/*
 * Waits up to timeout_ms (0: do not wait, -1: forever) for a queued event.
 * 0 with *out the caller's event; SIMPLEX_ERR_TIMEOUT when none came;
 * SIMPLEX_ERR_INVALID_ARG when the client delivers by callback.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_next_event(simplex_client *c, int timeout_ms,
                          simplex_client_event **out);

/* Connects to server now (if not yet) and gives the agreed SMP version
 * (out may be NULL). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_connect(simplex_client *c, const char *server, uint16_t *out);

/* PING: round trip to the server. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int simplex_client_ping(simplex_client *c,
                                                        const char *server);

/* ---- queues (recipient side) -------------------------------------------- */

/* simplex_client_create_queue() flags */
#define SIMPLEX_QUEUE_SUBSCRIBE 1u     /* subscribed at creation */
#define SIMPLEX_QUEUE_SENDER_SECURE 2u /* the sender secures it (SKEY) */
#define SIMPLEX_QUEUE_CONTACT 4u       /* a contact address queue (SMP v9+:
                                          never secured by senders) */

/*
 * NEW: creates a queue on server. The library generates the recipient's
 * Ed25519 authorization key and X25519 key; *out holds them with the ids
 * and the server DH secret: persist it with simplex_queue_export().
 * With SIMPLEX_QUEUE_SUBSCRIBE the queue is subscribed on this client.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_create_queue(simplex_client *c, simplex_queue **out,
                            const char *server, unsigned flags);

/* KEY: the recipient secures the queue with the sender's public key. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_secure_queue(simplex_client *c, const simplex_queue *q,
                            const uint8_t sender_public_key[32]);

/*
 * SUB for n queues of any servers, batched per server. results (may be
 * NULL) receives a code per queue. Returns 0 when all succeeded, else the
 * first failure. Messages already waiting arrive as MSG events.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_subscribe(simplex_client *c, const simplex_queue *const *queues,
                         size_t n, int *results);

/*
 * GET: the next message of a queue that is not subscribed on this
 * connection. 0 with *out a MSG event (the caller's) or NULL when the queue
 * is empty.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_get(simplex_client *c, const simplex_queue *q,
                   simplex_client_event **out);

/* ACK: acknowledges message msg_id; the next one may follow as an event. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_ack(simplex_client *c, const simplex_queue *q,
                   const uint8_t *msg_id, size_t msg_id_len);

/* OFF: suspends the queue (senders are refused, messages can be read). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_suspend(simplex_client *c, const simplex_queue *q);

/* DEL: deletes the queue and its messages; its subscription ends. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_delete(simplex_client *c, const simplex_queue *q);

/* QUE: the server's queue information as JSON text (out: the caller's). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_queue_info(simplex_client *c, const simplex_queue *q,
                          simplex_buf *out);

/* ---- sender side -------------------------------------------------------- */

/* A new Ed25519 key pair for a sender (public key, private seed). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_generate_auth_key(uint8_t public_key[32],
                                 uint8_t private_key[32]);

/* SKEY: the sender secures a queue created with SIMPLEX_QUEUE_SENDER_SECURE
 * with its key (private seed; the public key is derived). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_secure_sender(simplex_client *c, const char *server,
                             const uint8_t *sender_id, size_t sender_id_len,
                             const uint8_t sender_private_key[32]);

/* SEND flags */
#define SIMPLEX_SEND_NOTIFICATION 1u

/*
 * SEND: body to the queue sender_id on server. The server takes at most
 * 16048 bytes from SMP v11 (16064 at v8..v10); the agent sends exactly
 * sized e2e envelopes. sender_private_key NULL
 * sends without authorization (only for a queue not secured yet).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_send(simplex_client *c, const char *server,
                    const uint8_t *sender_id, size_t sender_id_len,
                    const uint8_t *sender_private_key, unsigned flags,
                    const uint8_t *body, size_t body_len);

/*
 * SEND through an SMP proxy (private message routing, SMP v8+): the
 * destination server only ever sees proxy_server's address. The first
 * call for a (proxy, server) pair asks the proxy to connect to server
 * (PRXY); the destination's certificate chain must match server's key
 * hash and its session key must be signed by it, else SIMPLEX_ERR_SERVER
 * with "ERR PROXY BROKER TRANSPORT HANDSHAKE IDENTITY". The session is
 * then kept on the client and reused; one the proxy has forgotten
 * (NO_SESSION) is asked for again once. The command is encrypted to the
 * destination with a fresh key (PFWD), so the proxy cannot read it.
 * Errors of the proxy are SIMPLEX_ERR_SERVER with last_error "ERR PROXY
 * ..." (e.g. "ERR PROXY BASIC_AUTH" from a server that is not a proxy,
 * "ERR PROXY BROKER NETWORK" when it cannot reach server); errors of the
 * destination are SIMPLEX_ERR_SERVER with its error ("ERR AUTH", ...).
 * The other arguments are those of simplex_client_send(); the proxy must
 * speak SMP v8 or later (SIMPLEX_ERR_UNSUPPORTED otherwise).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_send_via(simplex_client *c, const char *proxy_server,
                        const char *server, const uint8_t *sender_id,
                        size_t sender_id_len,
                        const uint8_t *sender_private_key, unsigned flags,
                        const uint8_t *body, size_t body_len);

/* ---- asynchronous commands ----------------------------------------------
 *
 * SEND and ACK without waiting for the server, for pipelines: the call
 * copies what it needs (body, ids, keys, the queue's secrets), hands the
 * command to the I/O thread and returns at once; several commands posted
 * together go out in as few blocks as they fit in, and one wake-up of the
 * I/O thread serves all of them. Commands to one server are sent in the
 * order of the calls (from one thread; calls racing on several threads go
 * in the order they took the client's lock) and the server answers them
 * in that order.
 *
 * The completion callback runs once on the I/O thread, when the server
 * answered (rc 0, or SIMPLEX_ERR_SERVER with error "ERR AUTH" ...), the
 * response timed out, the connection failed, or the client is being freed
 * (SIMPLEX_ERR_CLOSED). error is borrowed for the call ("" on success).
 * Like the event callback it must not block; it may post further
 * asynchronous commands, but a synchronous call from it returns
 * SIMPLEX_ERR_RECURSIVE_CALL. With done NULL a failure is reported as a
 * SIMPLEX_CLIENT_EVENT_ERROR event instead (with the queue id for ACK).
 *
 * Both functions may be called from any thread, including the event
 * callback and completion callbacks. They return 0 when the command was
 * posted (done will then be called exactly once), or an error with
 * nothing posted and done never called: SIMPLEX_ERR_INVALID_ARG,
 * SIMPLEX_ERR_NOMEM, SIMPLEX_ERR_CLOSED while the client is being freed.
 */
typedef void (*simplex_client_done_cb)(int rc, const char *error,
                                       void *user_data);

/* SEND, as simplex_client_send(), without waiting. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_send_async(simplex_client *c, const char *server,
                          const uint8_t *sender_id, size_t sender_id_len,
                          const uint8_t *sender_private_key, unsigned flags,
                          const uint8_t *body, size_t body_len,
                          simplex_client_done_cb done, void *user_data);

/* ACK, as simplex_client_ack(), without waiting; q is only read during
 * the call. The next message of the queue may come as the answer to the
 * ACK; it is delivered as a MSG event before done is called. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_ack_async(simplex_client *c, const simplex_queue *q,
                         const uint8_t *msg_id, size_t msg_id_len,
                         simplex_client_done_cb done, void *user_data);

/* ---- the per-queue end-to-end envelope ----------------------------------
 *
 * Optional helpers for the layer inside a MSG body (the reference's
 * ClientMsgEnvelope): a public header (client version, the sender's X25519
 * e2e key on confirmations), a random nonce and the crypto_box of the
 * padded ClientMessage (a private header, the sender's Ed25519 key on
 * confirmations, then the message). The secret is the X25519 agreement of
 * the sender's and the recipient's e2e keys (simplex_client_e2e_secret).
 * Padding is the reference agent's: 15904 bytes with an e2e key, 16000
 * without.
 */

/* A new X25519 key pair for the e2e layer. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_e2e_keypair(uint8_t public_key[32], uint8_t private_key[32]);
/* The shared secret of own_private and peer_public. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_e2e_secret(uint8_t secret[32], const uint8_t peer_public[32],
                          const uint8_t own_private[32]);

/*
 * Seals msg into an envelope (out: the caller's). e2e_public (the sender's
 * e2e public key) and sender_auth_key (its Ed25519 public key for the
 * private header) may be NULL.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_e2e_seal(simplex_buf *out, const uint8_t secret[32],
                        uint16_t client_version, const uint8_t *e2e_public,
                        const uint8_t *sender_auth_key, const uint8_t *msg,
                        size_t msg_len);

/*
 * Reads an envelope's public header without decrypting: the client
 * version and, when *has_e2e_public is set, the sender's e2e key
 * (e2e_public, 32 bytes, may be NULL).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_e2e_peek(const uint8_t *envelope, size_t len,
                        uint16_t *client_version, uint8_t *e2e_public,
                        int *has_e2e_public);

/*
 * Opens an envelope: out (the caller's) receives the message; when the
 * private header holds the sender's Ed25519 key, *has_sender_auth_key is
 * set and the key copied to sender_auth_key (both may be NULL).
 * SIMPLEX_ERR_DECRYPT when the secret does not fit.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_e2e_open(simplex_buf *out, const uint8_t secret[32],
                        const uint8_t *envelope, size_t len,
                        uint8_t *sender_auth_key, int *has_sender_auth_key);

/* ---- queue credentials -------------------------------------------------- */

/* All borrowed from q. */
SIMPLEX_API const char *simplex_queue_server(const simplex_queue *q);
SIMPLEX_API const uint8_t *simplex_queue_recipient_id(const simplex_queue *q,
                                                      size_t *len);
SIMPLEX_API const uint8_t *simplex_queue_sender_id(const simplex_queue *q,
                                                   size_t *len);
/* Non-zero when the sender is to secure the queue (SKEY). */
SIMPLEX_API int simplex_queue_sender_can_secure(const simplex_queue *q);

/*
 * Serialises q, secrets included, in a versioned binary form for the
 * caller's store (out: the caller's, simplex_buf_dispose() wipes it).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_queue_export(const simplex_queue *q, simplex_buf *out);
/* Reads what simplex_queue_export() wrote. On failure *out is NULL. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_queue_import(simplex_queue **out, const uint8_t *data, size_t len);
/* Wipes and frees. NULL accepted. */
SIMPLEX_API void simplex_queue_free(simplex_queue *q);

/* ---- notifications ------------------------------------------------------ */

/*
 * NKEY, by the recipient of q: generates the notifier's auth and DH keys,
 * enables notifications on q and returns the notifier credentials in *out
 * (free with simplex_notifier_free; persist with simplex_notifier_export).
 * A new NKEY replaces the previous notifier. On failure *out is NULL.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_enable_notifications(simplex_client *c, simplex_notifier **out,
                                    const simplex_queue *q);
/* NDEL, by the recipient of q: disables notifications (the notifier's
 * subscription ends with a DELD event). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_disable_notifications(simplex_client *c,
                                     const simplex_queue *q);
/* NSUB, by the notifier: subscribes to the notifications of n's queue;
 * they arrive as SIMPLEX_CLIENT_EVENT_NMSG events. The subscription is
 * renewed after reconnection like SUB's. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_client_subscribe_notifications(simplex_client *c,
                                       const simplex_notifier *n);
/* NMSG: the 24-byte nonce of the encrypted metadata, borrowed; NULL for
 * other events. */
SIMPLEX_API const uint8_t *
simplex_client_event_nonce(const simplex_client_event *ev);
/*
 * Decrypts an NMSG event's metadata with n's DH secret: the message id
 * into msg_id (the caller's, simplex_buf_dispose()) and its server
 * timestamp (seconds) into *timestamp. SIMPLEX_ERR_INVALID_ARG when ev is
 * not an NMSG of n's queue.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_notifier_decrypt(simplex_buf *msg_id, int64_t *timestamp,
                         const simplex_notifier *n,
                         const simplex_client_event *ev);

/* All borrowed from n. */
SIMPLEX_API const char *simplex_notifier_server(const simplex_notifier *n);
SIMPLEX_API const uint8_t *simplex_notifier_id(const simplex_notifier *n,
                                               size_t *len);
/* Serialises n, secrets included, in a versioned binary form (out: the
 * caller's, simplex_buf_dispose() wipes it). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_notifier_export(const simplex_notifier *n, simplex_buf *out);
/* Reads what simplex_notifier_export() wrote. On failure *out is NULL. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_notifier_import(simplex_notifier **out, const uint8_t *data,
                        size_t len);
/* Wipes and frees. NULL accepted. */
SIMPLEX_API void simplex_notifier_free(simplex_notifier *n);

#ifdef __cplusplus
}
#endif

#endif /* SIMPLEX_CLIENT_H */
