/*
 * Sans-I/O SMP client session (one TLS connection to one SMP server).
 *
 * The session never performs I/O and never reads the clock: the driver
 * moves 16384-byte blocks between the TLS connection and the session and
 * passes the current time (milliseconds, any monotonic origin) in.
 *
 *   sx_smp_session_new(&s, &cfg)
 *   sx_smp_session_start(s, tls_unique, leaf_cert, alpn)   once TLS is up
 *   loop:
 *     block received        -> sx_smp_session_recv_block(s, block, now)
 *     want_write()          -> while next_block(s, out, now) == 1: send out
 *     next_timeout() passed -> sx_smp_session_handle_timeout(s, now)
 *     next_event(s, &ev)    -> handle, then sx_smp_session_event_dispose(&ev)
 *   sx_smp_session_free(s)
 *
 * Handshake (as the reference smpClientHandshake): the first received
 * block is the server hello. Its session id must equal tls-unique
 * (TRANSPORT SESSION); the version is the highest one in both ranges
 * (TRANSPORT VERSION when none; as a proxy, a server whose range ends
 * below 14 is offered at most max(min, 10)); the identity certificate
 * must hash to the configured key hash (HANDSHAKE IDENTITY) and the
 * session DH key must be signed by the TLS leaf key (HANDSHAKE BAD_AUTH).
 * A hello without certificates (legacy servers, no ALPN) is accepted only
 * when the agreed version is below 7, as it carries no keys. The client
 * hello is then queued (first block out) and, from v11 unless proxy, all
 * later blocks in both directions are encrypted with the session chains.
 *
 * Requests: submit() encodes, authorizes and queues one transmission
 * with a fresh random 24-byte correlation id (also the X25519
 * authenticator nonce); submit_corr() takes the caller's instead. Queued transmissions are packed into blocks in
 * submission order, as many per block as fit (at most 255 and
 * SX_SMP_BATCH_ROOM bytes). Each response is matched to its request by
 * correlation id; transmissions with an empty correlation id are server
 * events (MSG, END, DELD, ...). As the reference, problems with received
 * data are reported as events and do not end the session: a block that
 * does not decrypt or whose batch does not parse, a transmission that
 * does not parse, a response with an unknown correlation id or with
 * another entity id than its request.
 *
 * Timeouts: a request not answered within its timeout yields a TIMEOUT
 * event; a response arriving later is still delivered, with late = 1
 * (the last 1024 timed-out requests are remembered for this).
 * When nothing has been received for ping_interval_ms (and no ping is
 * outstanding), a PING is queued; it has the response timeout. Receiving
 * any block resets the count of missed pings; when max_missed_pings
 * pings in a row time out, the session fails (FATAL, timed_out = 1).
 *
 * Not thread-safe; one session per thread at a time.
 */
#ifndef SX_SMP_SESSION_H
#define SX_SMP_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "client/smp_proto.h"
#include "common/sx.h"

/* Reference defaults (simplexmq NetworkConfig): tcpTimeout background
 * 30 s (interactive 10 s), smpPingInterval 10 min, smpPingCount 3. */
#define SX_SMP_SESSION_RESPONSE_TIMEOUT_MS 30000u
#define SX_SMP_SESSION_PING_INTERVAL_MS 600000u
#define SX_SMP_SESSION_MAX_MISSED_PINGS 3u
#define SX_SMP_SESSION_CORR_ID_BYTES 24

/* submit(): timeout_ms values */
#define SX_SMP_SESSION_TIMEOUT_DEFAULT 0u       /* cfg.response_timeout_ms */
#define SX_SMP_SESSION_NO_TIMEOUT UINT64_MAX    /* never expires (the
                                                 * reference's batched
                                                 * subscriptions) */
/* next_timeout() when nothing is scheduled */
#define SX_SMP_SESSION_NEVER UINT64_MAX

/* Random bytes for correlation ids and the session DH key. */
typedef void (*sx_smp_session_rng_fn)(void *ctx, uint8_t *out, size_t n);

typedef struct sx_smp_session_config {
    uint8_t key_hash[SX_SHA256_BYTES]; /* the server address's key hash */
    uint16_t vmin, vmax;               /* offered range, default 6..18 */
    int proxy;                 /* non-zero: connection from an SMP proxy */
    const sx_logger *logger;   /* NULL: sx_default_logger() */
    uint64_t response_timeout_ms;      /* 0 is replaced by the default */
    uint64_t ping_interval_ms;         /* 0: no keep-alive pings */
    unsigned max_missed_pings;         /* 0: never fail on missed pings */
    sx_smp_session_rng_fn rng;         /* NULL: sx_random (tests only) */
    void *rng_ctx;
} sx_smp_session_config;

/* Fills cfg with the defaults above (key hash zero, range 6..18). */
void sx_smp_session_config_init(sx_smp_session_config *cfg);

typedef enum sx_smp_session_state {
    SX_SMP_SESSION_NEW = 0,         /* created, start() not called */
    SX_SMP_SESSION_HANDSHAKE,       /* waiting for the server hello */
    SX_SMP_SESSION_READY,           /* established */
    SX_SMP_SESSION_FAILED           /* dead: only free() remains useful */
} sx_smp_session_state;

typedef enum sx_smp_session_ev_type {
    SX_SMP_SESSION_EV_NONE = 0,
    SX_SMP_SESSION_EV_HANDSHAKE,    /* version */
    SX_SMP_SESSION_EV_RESPONSE,     /* request_id, entity_id, msg */
    SX_SMP_SESSION_EV_SERVER_EVENT, /* entity_id, msg (empty corrId) */
    SX_SMP_SESSION_EV_TIMEOUT,      /* request_id */
    SX_SMP_SESSION_EV_ERROR,        /* reported, not fatal: problem */
    SX_SMP_SESSION_EV_FATAL         /* the session is dead */
} sx_smp_session_ev_type;

/* What went wrong with received data. */
typedef enum sx_smp_session_problem {
    SX_SMP_SESSION_OK = 0,
    SX_SMP_SESSION_BAD_BLOCK,       /* ERROR: decrypt/unpad/batch failed */
    SX_SMP_SESSION_BAD_TRANSMISSION,/* ERROR: transmission did not parse */
    SX_SMP_SESSION_UNKNOWN_CORR_ID, /* ERROR: no such request */
    SX_SMP_SESSION_BAD_MESSAGE,     /* RESPONSE/SERVER_EVENT: the message
                                     * did not parse (code) or failed the
                                     * credentials check (cmd_err) */
    SX_SMP_SESSION_BAD_SESSION_ID,  /* RESPONSE/SERVER_EVENT, v6 only */
    SX_SMP_SESSION_ENTITY_MISMATCH  /* RESPONSE: entity id differs */
} sx_smp_session_problem;

/*
 * An event. It owns its bytes: corr_id, entity_id and the views inside
 * msg point into data, a copy of the transmission. Moving the struct by
 * value is fine; release it with sx_smp_session_event_dispose().
 */
typedef struct sx_smp_session_event {
    sx_smp_session_ev_type type;
    uint64_t request_id;            /* RESPONSE, TIMEOUT (ERROR: 0) */
    int late;                       /* RESPONSE after its TIMEOUT */
    uint16_t version;               /* HANDSHAKE */
    sx_smp_session_problem problem;
    int code;                       /* 0 or a negative simplex_error */
    sx_smp_cmd_err cmd_err;         /* BAD_MESSAGE credentials failure */
    /* FATAL: transport error (0 when not one) and, for TE_HANDSHAKE, the
     * handshake error; timed_out for missed pings. */
    sx_smp_transport_err transport;
    sx_smp_handshake_err handshake;
    int timed_out;
    sx_smp_bytes corr_id;           /* RESPONSE, SERVER_EVENT, ERROR */
    sx_smp_bytes entity_id;
    int has_msg;                    /* msg decoded and valid */
    sx_smp_msg msg;
    uint8_t *data;                  /* owned */
    size_t data_len;
} sx_smp_session_event;

void sx_smp_session_event_dispose(sx_smp_session_event *ev);

/* The key a command is authorized with; alg SX_KEY_NONE (or a NULL
 * pointer to this struct) sends no authorization. X25519 needs the
 * server's session DH key (v >= 7). */
typedef struct sx_smp_session_auth {
    sx_key_alg alg;                 /* ED25519, ED448, X25519 or NONE */
    const uint8_t *priv;            /* raw private key (Ed25519: seed) */
    /* optional, Ed25519 only: sx_ed25519_expand(priv), used instead of
     * priv (may then be NULL) so that signing skips the expansion */
    const uint8_t *ed25519_expanded;
} sx_smp_session_auth;

typedef struct sx_smp_session sx_smp_session;

/* Copies cfg. SIMPLEX_ERR_INVALID_ARG for a range outside 6..18. */
int sx_smp_session_new(sx_smp_session **out, const sx_smp_session_config *cfg);
/* Wipes the DH private key, the chain keys and queued data; NULL ok. */
void sx_smp_session_free(sx_smp_session *s);

/* Once, after the TLS handshake: tls-unique (1..255 bytes), the server's
 * leaf certificate DER (copied until the hello is verified) and whether
 * ALPN "smp/1" was agreed (informational: without it the server offers
 * only v6). */
int sx_smp_session_start(sx_smp_session *s, const uint8_t *tls_unique,
                         size_t tls_unique_len, const uint8_t *leaf_cert_der,
                         size_t leaf_cert_len, int alpn_negotiated);

/* One received block. 0 when processed (problems with its content are
 * reported as events); a negative simplex_error when the session failed
 * (a FATAL event is queued) or was not started / already dead
 * (SIMPLEX_ERR_INVALID_ARG, no event). */
int sx_smp_session_recv_block(sx_smp_session *s,
                              const uint8_t block[SX_SMP_BLOCK_SIZE],
                              uint64_t now);

/* Queues a command for entity_id (may be empty). *request_id (may be
 * NULL) identifies the request in its RESPONSE / TIMEOUT event.
 * timeout_ms: SX_SMP_SESSION_TIMEOUT_DEFAULT, SX_SMP_SESSION_NO_TIMEOUT
 * or a duration. SIMPLEX_ERR_INVALID_ARG when the session is not READY
 * or entity_id is longer than 255; SIMPLEX_ERR_TOO_LARGE when the
 * transmission cannot fit a block; SIMPLEX_ERR_KEY for a bad auth key
 * or X25519 without a server session key. Nothing is queued on error. */
int sx_smp_session_submit(sx_smp_session *s, const uint8_t *entity_id,
                          size_t entity_len, const sx_smp_cmd *cmd,
                          const sx_smp_session_auth *auth, uint64_t now,
                          uint64_t timeout_ms, uint64_t *request_id);

/* As submit(), with the caller's correlation id (corr_id,
 * SX_SMP_SESSION_CORR_ID_BYTES bytes) instead of a random one, for
 * commands whose correlation id is bound to other data (PFWD and RFWD use
 * it as the nonce of their encrypted body). The id must be unpredictable
 * and unique: SIMPLEX_ERR_INVALID_ARG (nothing queued) when a pending
 * request already has it or corr_id is NULL. */
int sx_smp_session_submit_corr(sx_smp_session *s,
                               const uint8_t corr_id[SX_SMP_SESSION_CORR_ID_BYTES],
                               const uint8_t *entity_id, size_t entity_len,
                               const sx_smp_cmd *cmd,
                               const sx_smp_session_auth *auth, uint64_t now,
                               uint64_t timeout_ms, uint64_t *request_id);

/* Non-zero when next_block() would produce a block. */
int sx_smp_session_want_write(const sx_smp_session *s);
/* Writes the next block to send: 1 when one was produced, 0 when there
 * is nothing to send, negative on error (session failed). The client
 * hello comes first. now is not used yet (request timeouts run from
 * submit(), as the reference's). */
int sx_smp_session_next_block(sx_smp_session *s,
                              uint8_t out[SX_SMP_BLOCK_SIZE], uint64_t now);

/* Pulls the next event: 1 with *ev filled (dispose it), 0 when none.
 * Events queue without bound: drain them after each driving call. */
int sx_smp_session_next_event(sx_smp_session *s, sx_smp_session_event *ev);

/* Earliest time handle_timeout() has work (request deadline or ping),
 * SX_SMP_SESSION_NEVER when none. */
uint64_t sx_smp_session_next_timeout(sx_smp_session *s);
/* Expires requests (TIMEOUT events), queues keep-alive pings and fails
 * the session after too many missed pings. 0, or negative once failed. */
int sx_smp_session_handle_timeout(sx_smp_session *s, uint64_t now);

sx_smp_session_state sx_smp_session_get_state(const sx_smp_session *s);
/* The agreed version (0 before the handshake). */
uint16_t sx_smp_session_version(const sx_smp_session *s);
/* Non-zero when blocks are encrypted (v >= 11, not proxy). */
int sx_smp_session_encrypted(const sx_smp_session *s);
/* The server's session DH key (X25519, from its hello, v7+) into out:
 * 0, or SIMPLEX_ERR_INVALID_ARG when the session is not READY or the
 * server sent none. */
int sx_smp_session_server_key(const sx_smp_session *s,
                              uint8_t out[SX_X25519_BYTES]);
/* The X25519 shared secret of the session's own DH key and the server's
 * session key (the secret the block encryption chains start from, and a
 * proxy's secret with the relay for RFWD / RRES): 0, or
 * SIMPLEX_ERR_INVALID_ARG as server_key(). Kept until free(). */
int sx_smp_session_dh_secret(const sx_smp_session *s,
                             uint8_t out[SX_X25519_BYTES]);
/* Requests awaiting a response (not counting timed-out ones). */
size_t sx_smp_session_pending(const sx_smp_session *s);

#endif /* SX_SMP_SESSION_H */
