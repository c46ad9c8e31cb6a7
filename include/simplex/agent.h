/*
 * libsimplex agent: duplex connections over SMP queues, end-to-end
 * encrypted with X3DH and the double ratchet, kept in a SQLite database.
 * Interoperates with the simplexmq 6.5.5.0 agent (agent protocol versions
 * 2..7, e2e ratchet version 2).
 *
 * The flow of a connection:
 *
 *   Alice: simplex_agent_create_connection()   -> link (give it to Bob)
 *   Bob:   simplex_agent_join_connection(link, Bob's info)
 *   Alice: event CONF (conf_id, Bob's info)
 *   Alice: simplex_agent_allow_connection(conf_id, Alice's info)
 *   Bob:   event INFO (Alice's info)
 *   both:  event CON: the connection is ready
 *   then:  simplex_agent_send() / event MSG / simplex_agent_ack() /
 *          events SENT and RCVD (delivery receipts)
 *
 * Threads. An agent owns one thread that processes what servers send and
 * delivers events, and a few delivery threads. Every function may be
 * called from any thread, including from the event callback (which runs
 * on the agent's thread; it should return quickly).
 *
 * Durability. simplex_agent_send() returns after the message is committed
 * to the database; it is then delivered in the background and retried
 * until the server accepts it or it expires (event MERR). A received
 * message and the ratchet state that decrypted it are committed before
 * the server is acknowledged; a message the app has not acknowledged is
 * delivered again after a restart, with SIMPLEX_AGENT_MSG_REDELIVERED.
 *
 * Errors. Functions return 0 or a negative simplex_error; the detailed
 * message of the last failure of a call made on this thread is given by
 * simplex_agent_last_error().
 *
 * Connection ids are NUL-terminated text of at most
 * SIMPLEX_AGENT_ID_MAX - 1 characters (base64url), stable across
 * restarts. Confirmation ids (CONF) are of the same form.
 */
#ifndef SIMPLEX_AGENT_H
#define SIMPLEX_AGENT_H

#include <stddef.h>
#include <stdint.h>

#include "simplex/common.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SIMPLEX_AGENT_ID_MAX 32

/* The largest message body simplex_agent_send() takes (agent protocol
 * without post-quantum encryption). */
#define SIMPLEX_AGENT_MAX_MSG_BYTES 15795
SIMPLEX_API size_t simplex_agent_max_msg_bytes(void);

typedef struct simplex_agent simplex_agent;
typedef struct simplex_agent_event simplex_agent_event;

/* ---- events ------------------------------------------------------------- */

typedef enum simplex_agent_event_type {
    SIMPLEX_AGENT_EVENT_CONF = 1,  /* the joining party's confirmation: call
                                      simplex_agent_allow_connection() with
                                      conf_id; info: its connection info */
    SIMPLEX_AGENT_EVENT_INFO = 2,  /* the creating party allowed the
                                      connection; info: its connection info */
    SIMPLEX_AGENT_EVENT_CON = 3,   /* the connection is established */
    SIMPLEX_AGENT_EVENT_MSG = 4,   /* a message: msg_id, body, timestamps,
                                      flags; acknowledge it with
                                      simplex_agent_ack() */
    SIMPLEX_AGENT_EVENT_SENT = 5,  /* the server accepted message msg_id */
    SIMPLEX_AGENT_EVENT_RCVD = 6,  /* delivery receipt for sent message
                                      msg_id; flags: RCPT_OK or
                                      RCPT_BAD_HASH; body: the receipt info */
    SIMPLEX_AGENT_EVENT_MERR = 7,  /* message msg_id could not be sent (it
                                      is dropped); error, message */
    SIMPLEX_AGENT_EVENT_MWARN = 8, /* sending msg_id is delayed (server
                                      unreachable or queue full); retrying */
    SIMPLEX_AGENT_EVENT_DOWN = 9,  /* lost the connection to server (no
                                      connection id) */
    SIMPLEX_AGENT_EVENT_UP = 10,   /* server is reachable again */
    SIMPLEX_AGENT_EVENT_END = 11,  /* another client subscribed to the
                                      connection's queue: no more messages
                                      arrive here */
    SIMPLEX_AGENT_EVENT_DEL = 12,  /* the connection was deleted (on the
                                      server, by the peer or by this agent) */
    SIMPLEX_AGENT_EVENT_ERR = 13,  /* an asynchronous failure about a
                                      connection (or none): error, message */
    SIMPLEX_AGENT_EVENT_REQ = 14   /* someone asks to connect through the
                                      contact address conn_id: accept with
                                      simplex_agent_accept_contact() and
                                      conf_id (the request id); info: their
                                      connection info */
} simplex_agent_event_type;

/* MSG flags */
#define SIMPLEX_AGENT_MSG_REDELIVERED 1u /* delivered before a restart and
                                            not yet acknowledged (also on
                                            CONF and REQ announced again
                                            when the agent starts) */
#define SIMPLEX_AGENT_MSG_INTEGRITY_ERR 2u /* see the integrity accessors */
/* RCVD flags */
#define SIMPLEX_AGENT_RCPT_OK 4u       /* the peer got the exact message */
#define SIMPLEX_AGENT_RCPT_BAD_HASH 8u /* the peer's hash differs */

/* Message integrity (MSG), as the reference agent reports it. */
typedef enum simplex_agent_integrity {
    SIMPLEX_AGENT_INTEGRITY_OK = 0,
    SIMPLEX_AGENT_INTEGRITY_BAD_ID = 1,    /* id lower than the last one */
    SIMPLEX_AGENT_INTEGRITY_DUPLICATE = 2, /* id equal to the last one */
    SIMPLEX_AGENT_INTEGRITY_SKIPPED = 3,   /* ids [from, to] are missing */
    SIMPLEX_AGENT_INTEGRITY_BAD_HASH = 4   /* previous-message hash differs */
} simplex_agent_integrity;

/* Event callback: ev is borrowed for the call (copy what you keep or use
 * simplex_agent_event_copy()). Runs on the agent's thread. */
typedef void (*simplex_agent_event_cb)(const simplex_agent_event *ev,
                                       void *user_data);

SIMPLEX_API simplex_agent_event_type
simplex_agent_event_get_type(const simplex_agent_event *ev);
/* "CONF", "MSG", ... as the reference names the events. */
SIMPLEX_API const char *
simplex_agent_event_name(const simplex_agent_event *ev);
/* The connection id ("" for DOWN, UP and errors about no connection). */
SIMPLEX_API const char *
simplex_agent_event_conn_id(const simplex_agent_event *ev);
/* CONF: the confirmation id to allow; REQ: the request id to accept or
 * reject; other types "". */
SIMPLEX_API const char *
simplex_agent_event_conf_id(const simplex_agent_event *ev);
/* MSG: the agent's message id (pass it to simplex_agent_ack());
 * SENT, MERR, MWARN, RCVD: the id simplex_agent_send() returned. */
SIMPLEX_API int64_t simplex_agent_event_msg_id(const simplex_agent_event *ev);
/* MSG: the message body; CONF, INFO: the peer's connection info; RCVD:
 * the receipt info. Borrowed from ev; NULL with *len 0 when none. */
SIMPLEX_API const uint8_t *
simplex_agent_event_body(const simplex_agent_event *ev, size_t *len);
SIMPLEX_API unsigned simplex_agent_event_flags(const simplex_agent_event *ev);
/* MSG: the server's timestamp (seconds since the Unix epoch). */
SIMPLEX_API int64_t
simplex_agent_event_timestamp(const simplex_agent_event *ev);
/* MSG: the sender's message id (sequential per connection). */
SIMPLEX_API int64_t
simplex_agent_event_snd_msg_id(const simplex_agent_event *ev);
/* MSG: integrity; for SKIPPED the missing ids are [*from, *to] (from/to
 * may be NULL), for BAD_ID *from is the received id. */
SIMPLEX_API simplex_agent_integrity
simplex_agent_event_integrity(const simplex_agent_event *ev, int64_t *from,
                              int64_t *to);
/* DOWN, UP (and errors about a server): the server address, else "". */
SIMPLEX_API const char *
simplex_agent_event_server(const simplex_agent_event *ev);
/* ERR, MERR, MWARN: the error code; other types 0. */
SIMPLEX_API int simplex_agent_event_error(const simplex_agent_event *ev);
/* ERR, MERR, MWARN: a description (never NULL; "" for other types). */
SIMPLEX_API const char *
simplex_agent_event_message(const simplex_agent_event *ev);
/* A copy that the caller owns (free with simplex_agent_event_free). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_event_copy(simplex_agent_event **out,
                         const simplex_agent_event *ev);
/* Frees an event from next_event or copy. NULL accepted. */
SIMPLEX_API void simplex_agent_event_free(simplex_agent_event *ev);

/* ---- options ------------------------------------------------------------ */

#define SIMPLEX_AGENT_OPTIONS_VERSION 1

/* flags */
/* Create queues the recipient secures (KEY, the standard procedure with
 * HELLO) instead of queues the sender secures (SKEY, the fast one, used
 * by default when the server speaks SMP v9 or later). */
#define SIMPLEX_AGENT_NO_SENDER_SECURE 1u
/* Do not subscribe the stored connections in simplex_agent_new() (call
 * simplex_agent_subscribe_all() later). */
#define SIMPLEX_AGENT_NO_SUBSCRIBE 2u

typedef struct simplex_agent_options {
    unsigned version;            /* SIMPLEX_AGENT_OPTIONS_VERSION */
    /* The database file (created if missing). Copied. Required. */
    const char *db_path;
    /* SMP servers to create this agent's queues on (smp://...), used in
     * turn. Copied. At least one is required to create or join. */
    const char *const *servers;
    size_t n_servers;
    unsigned flags;
    /* Network: 0 means the client defaults (see simplex/client.h). */
    unsigned connect_timeout_ms;
    unsigned response_timeout_ms;
    const char *socks5_proxy;    /* "host:port" or NULL. Copied. */
    const char *socks5_username; /* Copied. */
    const char *socks5_password; /* Copied. */
    int socks5_isolate;          /* per-server Tor circuit isolation */
    /* Sending: first retry delay and cap (0: 2000 and 120000 ms), and how
     * long a message may stay unsent before MERR (0: 2 days). */
    unsigned retry_initial_ms;
    unsigned retry_max_ms;
    unsigned message_timeout_s;
    /* Events: by callback (on the agent's thread) when set, else queued
     * for simplex_agent_next_event(). */
    simplex_agent_event_cb event_cb;
    void *user_data;
    /* Non-zero: commits survive a crash of the process but not of the
     * machine (SQLite synchronous=NORMAL), which is several times faster.
     * 0 (default): every commit that matters reaches the disk before the
     * call that made it returns (synchronous=FULL). */
    int relaxed_durability;
} simplex_agent_options;

SIMPLEX_API int simplex_agent_options_init(simplex_agent_options *opts,
                                           unsigned version);

/* ---- the agent ---------------------------------------------------------- */

/*
 * Opens (creating or migrating) the database, starts the agent's threads
 * and, unless SIMPLEX_AGENT_NO_SUBSCRIBE, subscribes every stored
 * connection and resumes pending deliveries. Requires
 * simplex_global_init(). On failure *out is NULL and the error message is
 * available from simplex_agent_last_error(NULL, ...). The event callback
 * is first called after *out is set, so it may read the agent from the
 * variable out points to (e.g. through user_data).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_new(simplex_agent **out, const simplex_agent_options *opts);

/*
 * Stops the threads, closes server connections and the database. Messages
 * not yet delivered stay stored and are sent by the next agent on this
 * database. Queued events are dropped. No other call may be in progress
 * or follow; not from the callback. NULL accepted.
 */
SIMPLEX_API void simplex_agent_free(simplex_agent *a);

/* The message of the last failed call made on this thread (a may be
 * NULL), NUL-terminated, in out (the caller's, simplex_buf_dispose()). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_last_error(simplex_agent *a, simplex_buf *out);

/*
 * Waits up to timeout_ms (0: no wait, -1: forever) for an event.
 * SIMPLEX_ERR_TIMEOUT when none came; SIMPLEX_ERR_INVALID_ARG when events
 * go to a callback.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_next_event(simplex_agent *a, int timeout_ms,
                         simplex_agent_event **out);

/*
 * A file descriptor that is readable exactly while events are queued for
 * simplex_agent_next_event(), for poll()/select()/epoll loops: wait for
 * it, then take events with a timeout of 0 until SIMPLEX_ERR_TIMEOUT.
 * Owned by the agent (do not read or close it). -1 when events go to a
 * callback.
 */
SIMPLEX_API int simplex_agent_event_fd(simplex_agent *a);

/* ---- connections -------------------------------------------------------- */

/*
 * Creates a connection and its receiving queue and gives the 1-time
 * invitation link (simplex:/invitation#/?v=...) to pass to the other
 * party, NUL-terminated in link (the caller's).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_create_connection(simplex_agent *a,
                                char conn_id[SIMPLEX_AGENT_ID_MAX],
                                simplex_buf *link);

/*
 * Joins an invitation link (simplex: or https:// form): creates this
 * side's queue, secures the peer's queue when it allows that and stores
 * the confirmation with info (shown to the peer in CONF), which is then
 * sent in the background (simplex_agent_flush() waits for it). The connection
 * then waits for INFO and CON.
 * With a contact address link it sends a contact request instead
 * (carrying info and a new invitation of this side): the connection then
 * waits for CONF (allow it) and CON.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_join_connection(simplex_agent *a,
                              char conn_id[SIMPLEX_AGENT_ID_MAX],
                              const char *link, const uint8_t *info,
                              size_t info_len);

/* Accepts the confirmation conf_id (event CONF) with this side's info. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_allow_connection(simplex_agent *a, const char *conn_id,
                               const char *conf_id, const uint8_t *info,
                               size_t info_len);

/*
 * Sends a message on an established connection (after CON). Returns once
 * the message is stored, with its id in *msg_id (may be NULL); SENT
 * follows when the server accepts it. At most
 * SIMPLEX_AGENT_MAX_MSG_BYTES.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_send(simplex_agent *a, const char *conn_id, const uint8_t *body,
                   size_t len, int64_t *msg_id);

/*
 * Acknowledges message msg_id (event MSG): the server may then deliver the
 * next one. With rcpt_info non-NULL (may be empty) a delivery receipt
 * carrying it is sent to the peer (agent version 4 or later).
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_ack(simplex_agent *a, const char *conn_id, int64_t msg_id,
                  const uint8_t *rcpt_info, size_t rcpt_info_len);

/* ---- contact addresses ------------------------------------------------- */

/*
 * Creates a long-lived contact address (simplex:/contact#/?v=...) that
 * anyone can join (simplex_agent_join_connection() takes contact links
 * too). Each join arrives as event REQ on the address's connection id.
 * Delete the address with simplex_agent_delete_connection(); connections
 * made through it are not affected.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_create_address(simplex_agent *a,
                             char conn_id[SIMPLEX_AGENT_ID_MAX],
                             simplex_buf *link);

/*
 * Accepts contact request req_id (event REQ): creates a new connection
 * (its id in conn_id) and joins the requester's invitation with info; the
 * requester gets CONF, allows it, and both sides get CON.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_accept_contact(simplex_agent *a,
                             char conn_id[SIMPLEX_AGENT_ID_MAX],
                             const char *req_id, const uint8_t *info,
                             size_t info_len);

/* Forgets contact request req_id (the requester is not told). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_reject_contact(simplex_agent *a, const char *req_id);

/*
 * Waits until every stored message, confirmation and receipt has been
 * accepted by its server (or dropped with MERR/ERR), for at most
 * timeout_ms (-1: no limit). SIMPLEX_ERR_TIMEOUT when some remain (they
 * stay stored and are sent later, also by the next agent on this
 * database). For short-lived programs that should not exit before
 * join/allow/send have reached the network.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_flush(simplex_agent *a, int timeout_ms);

/* Subscribes every stored connection's queues (done by simplex_agent_new
 * unless SIMPLEX_AGENT_NO_SUBSCRIBE). Failures per server arrive as ERR
 * or DOWN events; the agent keeps retrying. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_subscribe_all(simplex_agent *a);

/* Suspends the connection's receiving queue on its server (senders are
 * refused; messages already queued can still be received). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_suspend_connection(simplex_agent *a, const char *conn_id);

/* Deletes the connection: its receiving queue on the server (best effort
 * when the server is unreachable), then everything stored about it. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_delete_connection(simplex_agent *a, const char *conn_id);

/* ---- inspection --------------------------------------------------------- */

/*
 * The link of a contact address, or of an invitation nobody has joined
 * yet (status NEW), NUL-terminated in link (the caller's).
 * SIMPLEX_ERR_STATE for other connections.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_get_link(simplex_agent *a, const char *conn_id,
                       simplex_buf *link);

typedef enum simplex_agent_conn_status {
    SIMPLEX_AGENT_CONN_NEW = 1,       /* created, waiting for the peer */
    SIMPLEX_AGENT_CONN_JOINED = 2,    /* joined, waiting for INFO/CON */
    SIMPLEX_AGENT_CONN_CONFIRMED = 3, /* CONF received, not allowed yet */
    SIMPLEX_AGENT_CONN_ALLOWED = 4,   /* allowed, waiting for CON */
    SIMPLEX_AGENT_CONN_READY = 5,     /* CON: messages can be sent */
    SIMPLEX_AGENT_CONN_SUSPENDED = 6,
    SIMPLEX_AGENT_CONN_CONTACT = 7    /* a contact address */
} simplex_agent_conn_status;

/* "new", "joined", ... */
SIMPLEX_API const char *
simplex_agent_conn_status_name(simplex_agent_conn_status s);

SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_connection_status(simplex_agent *a, const char *conn_id,
                                simplex_agent_conn_status *status);

/* Bytes of the database in use (pages holding data, in the file or not
 * yet checkpointed from the write-ahead log). */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_storage_bytes(simplex_agent *a, uint64_t *bytes);

/* The ids of every stored connection, oldest first, each followed by
 * '\n', NUL-terminated in out (the caller's); *count may be NULL. */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_agent_list_connections(simplex_agent *a, simplex_buf *out,
                               size_t *count);

#ifdef __cplusplus
}
#endif

#endif /* SIMPLEX_AGENT_H */
