/*
 * Internal: the TLS client transport of SMP (OpenSSL 3), non-blocking.
 *
 * One sx_tls_ctx holds the TLS settings every SMP connection shares:
 * TLS 1.3 (1.2 accepted) with CHACHA20-POLY1305 only, Ed25519/Ed448
 * signatures, X25519/X448 groups, no session resumption, no renegotiation,
 * no system CA store. Each sx_tls_conn is one connection to one server:
 *
 *   sx_tls_connect_start()  start resolving (a name: on a helper
 *                           thread, never blocking) and connecting
 *   sx_tls_step()           drive connect + handshake; returns 0 when open,
 *                           SX_TLS_WANT_READ / SX_TLS_WANT_WRITE while the
 *                           caller must wait on sx_tls_fd() (events from
 *                           sx_tls_poll_events(), deadline from
 *                           sx_tls_timeout_ms()), or a negative error
 *   sx_tls_read_block()     one whole 16384-byte block, or WANT_*
 *   sx_tls_write_block()    hand over one block; sx_tls_flush() finishes it
 *   sx_tls_close(), sx_tls_free()
 *
 * The server is authenticated only by its certificate chain and the key hash
 * of the server address: the chain must hold 2 to 4 certificates (leaf
 * first), each signed by the next, and the SHA-256 of the DER of the second
 * certificate (the identity certificate) must equal the key hash.
 *
 * Errors are negative simplex_error codes; sx_tls_last_reason() tells the
 * precise cause. An error from sx_tls_step(), the block calls or
 * sx_tls_flush(), other than SIMPLEX_ERR_INVALID_ARG (bad argument, wrong
 * state) and SIMPLEX_ERR_ALREADY, leaves the connection failed for good:
 * it can only be freed. A block still pending at close is dropped.
 * Not thread-safe per connection; different connections may be used from
 * different threads. Never installed.
 */
#ifndef SX_CLIENT_TLS_H
#define SX_CLIENT_TLS_H

#include <stddef.h>
#include <stdint.h>

#include "simplex/common.h"

/* Non-negative results of the non-blocking calls. */
#define SX_TLS_OK 0
#define SX_TLS_WANT_READ 1  /* wait until sx_tls_fd() is readable */
#define SX_TLS_WANT_WRITE 2 /* wait until sx_tls_fd() is writable */

#define SX_TLS_DEFAULT_PORT 5223
#define SX_TLS_DEFAULT_CONNECT_TIMEOUT_MS 25000
#define SX_TLS_ALPN_SMP "smp/1"
#define SX_TLS_MAX_FINISHED 64 /* largest tls-unique value */
#define SX_TLS_MAX_RAW_KEY 57  /* an Ed448 public key */

/* Why a connection failed, with the public simplex_error it maps onto. */
typedef enum sx_tls_reason {
    SX_TLS_R_NONE = 0,
    SX_TLS_R_RESOLVE,      /* RESOLVE: the host name did not resolve */
    SX_TLS_R_CONNECT,      /* CONNECT: no address accepted TCP */
    SX_TLS_R_TIMEOUT,      /* TIMEOUT: connect + handshake deadline */
    SX_TLS_R_HANDSHAKE,    /* TLS: the TLS handshake failed */
    SX_TLS_R_CHAIN_LENGTH, /* CERT_CHAIN: not 2..4 certificates */
    SX_TLS_R_CHAIN_BROKEN, /* CERT_INVALID: a certificate not issued/signed
                              by the next one */
    SX_TLS_R_CERT_INVALID, /* CERT_INVALID: outside its validity period, leaf
                              not X.509 v3, intermediate not a CA */
    SX_TLS_R_IDENTITY,     /* SERVER_IDENTITY: identity certificate
                              fingerprint differs from the key hash */
    SX_TLS_R_CLOSED,       /* CLOSED: the peer closed between blocks */
    SX_TLS_R_TRUNCATED,    /* TRUNCATED: the peer closed inside a block */
    SX_TLS_R_IO,           /* IO: socket error */
    SX_TLS_R_PROTOCOL,     /* TLS: TLS error after the handshake */
    SX_TLS_R_NOMEM,        /* NOMEM */
    SX_TLS_R_INTERNAL      /* INTERNAL */
} sx_tls_reason;

/* The public error code a reason maps onto (SIMPLEX_OK for NONE). */
int sx_tls_reason_error(sx_tls_reason r);
/* A static name for a reason, for logs and tests. */
const char *sx_tls_reason_name(sx_tls_reason r);

/* Shared TLS settings. Must outlive every connection made with it. */
typedef struct sx_tls_ctx sx_tls_ctx;

int sx_tls_ctx_new(sx_tls_ctx **out);
void sx_tls_ctx_free(sx_tls_ctx *ctx);

typedef struct sx_tls_options {
    /* Deadline for resolve + connect + handshake; 0: 25 s as the reference
     * client. */
    int connect_timeout_ms;
    /* Non-zero: offer no ALPN (the server then speaks SMP v6 only). */
    int no_alpn;
    /* Server name to send (SNI); NULL: none, as the reference SMP client. */
    const char *sni;
} sx_tls_options;

typedef struct sx_tls_conn sx_tls_conn;

/*
 * Starts connecting to host:port (port 0: 5223). host is a DNS name or an
 * IPv4/IPv6 literal (brackets allowed). key_hash is the 32-byte server
 * identity from the address. opts may be NULL. On success *out must then be
 * driven with sx_tls_step(). Returns at once: a host name is resolved on a
 * helper thread meanwhile (sx_tls_step() then returns SX_TLS_WANT_READ,
 * and the connect deadline covers the resolution), and its failure comes
 * from sx_tls_step() (SIMPLEX_ERR_RESOLVE, reason RESOLVE). A resolution
 * failure known at once (no helper thread could be started, the name was
 * resolved here) and an immediate connection failure on every address are
 * reported here; *out is then NULL.
 */
int sx_tls_connect_start(sx_tls_conn **out, sx_tls_ctx *ctx, const char *host,
                         uint16_t port,
                         const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES],
                         const sx_tls_options *opts);

/*
 * Starts the TLS handshake over a socket that is already connected (for
 * instance through a SOCKS5 proxy). Takes the socket over in every case:
 * it is made non-blocking and closed by sx_tls_free() (or here on failure).
 * The connect deadline applies to the handshake.
 */
int sx_tls_connect_fd(sx_tls_conn **out, sx_tls_ctx *ctx, int fd,
                      const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES],
                      const sx_tls_options *opts);

/* Drives resolution + connect + handshake: SX_TLS_OK once open, WANT_*
 * (WANT_READ while the name resolves, WANT_WRITE while TCP connects) or
 * an error. */
int sx_tls_step(sx_tls_conn *c);

/* The descriptor to poll (-1 when there is none). May change while
 * connecting (while a name resolves it is not a socket, then each address
 * gets its own socket): fetch it after every call. */
int sx_tls_fd(const sx_tls_conn *c);
/* POLLIN/POLLOUT bits the connection waits for (0 when none). */
short sx_tls_poll_events(const sx_tls_conn *c);
/* Milliseconds left before the connect deadline; -1 once open (no
 * deadline), 0 when it has passed. */
int sx_tls_timeout_ms(const sx_tls_conn *c);
/* Non-zero once the handshake completed and nothing failed. */
int sx_tls_is_open(const sx_tls_conn *c);
/* The first failure (SX_TLS_R_NONE while none), and the errno or OpenSSL
 * error code recorded with it (0 when none). */
sx_tls_reason sx_tls_last_reason(const sx_tls_conn *c);
int sx_tls_sys_errno(const sx_tls_conn *c);
unsigned long sx_tls_ssl_error(const sx_tls_conn *c);

/* ---- after the handshake ---- */

/* tls-unique: the client's Finished message (the SMP session id).
 * Returns its length (12 for TLS 1.2, 32 for TLS 1.3 with SHA-256), 0 when
 * not open. out must hold SX_TLS_MAX_FINISHED bytes. */
size_t sx_tls_unique(const sx_tls_conn *c, uint8_t *out);
/* Non-zero when the server agreed ALPN "smp/1". */
int sx_tls_alpn_agreed(const sx_tls_conn *c);
/* 0x0304 for TLS 1.3, 0x0303 for TLS 1.2, 0 when not open. */
int sx_tls_version(const sx_tls_conn *c);
/* The negotiated cipher suite's standard name, "" when not open. */
const char *sx_tls_cipher(const sx_tls_conn *c);

/* Key types of the server's leaf certificate. */
enum { SX_TLS_KEY_OTHER = 0, SX_TLS_KEY_ED25519 = 1, SX_TLS_KEY_ED448 = 2 };
/* The leaf (online) certificate's public key: its type and raw bytes (32
 * for Ed25519, 57 for Ed448; none for other types). out must hold
 * SX_TLS_MAX_RAW_KEY bytes. Returns the type, or a negative error. */
int sx_tls_peer_key(const sx_tls_conn *c, uint8_t *out, size_t *out_len);
/* Number of certificates the server sent (leaf first). */
size_t sx_tls_peer_chain_len(const sx_tls_conn *c);
/* DER of peer certificate idx (0 = leaf, 1 = identity). With out NULL only
 * *out_len is set. SIMPLEX_ERR_BUFFER_TOO_SMALL when cap is short. */
int sx_tls_peer_cert_der(const sx_tls_conn *c, size_t idx, uint8_t *out,
                         size_t cap, size_t *out_len);

/* ---- blocks ---- */

/*
 * Reads one whole block of SIMPLEX_SMP_BLOCK_BYTES into out (cap at least
 * that). SX_TLS_OK when a block was copied; WANT_* when not complete yet
 * (partial data is kept). After SX_TLS_OK call again: more blocks may be
 * buffered already. A close by the peer is SIMPLEX_ERR_IO with reason
 * CLOSED at a block boundary, SIMPLEX_ERR_TRUNCATED inside a block.
 */
int sx_tls_read_block(sx_tls_conn *c, uint8_t *out, size_t cap);

/*
 * Takes one block (len must be SIMPLEX_SMP_BLOCK_BYTES) and sends as much
 * as it can: SX_TLS_OK when all of it was sent, WANT_* when the rest is
 * pending (finish with sx_tls_flush()). SIMPLEX_ERR_ALREADY (not fatal)
 * when an earlier block is still pending.
 */
int sx_tls_write_block(sx_tls_conn *c, const uint8_t *block, size_t len);
/* Sends what is pending: SX_TLS_OK when nothing is left, WANT_*, or error.
 * With coalescing, this is also what sends the gathered records. */
int sx_tls_flush(sx_tls_conn *c);
/*
 * Coalescing (off by default; only on an open connection): the records of
 * the blocks written are gathered (up to four blocks' worth) instead of
 * sent one send() each; sx_tls_flush() sends them, and
 * sx_tls_write_pending() is true until it has. A caller writing several
 * blocks in a row calls sx_tls_flush() after the last one. Turning it off
 * with records still gathered: SIMPLEX_ERR_ALREADY.
 */
int sx_tls_set_coalesce(sx_tls_conn *c, int on);
/* Non-zero while part of a block (or gathered records) waits to be sent. */
int sx_tls_write_pending(const sx_tls_conn *c);
/* Non-zero while a block sx_tls_write_block() could not take whole is
 * pending (no further block is taken until sx_tls_flush() finished it). */
int sx_tls_block_pending(const sx_tls_conn *c);

/* Sends close_notify (best effort, never waits) and closes the socket. */
void sx_tls_close(sx_tls_conn *c);
/* Closes if needed, wipes and frees. NULL is accepted. */
void sx_tls_free(sx_tls_conn *c);

/* ---- blocking helpers built on the above (poll() with timeouts) ---- */

/* Waits up to timeout_ms (-1: forever) for the events of `want`
 * (SX_TLS_WANT_*). SX_TLS_OK when ready, 1 on timeout, negative on error. */
int sx_tls_wait(const sx_tls_conn *c, int want, int timeout_ms);
/* Connects and completes the handshake, blocking until the connect
 * deadline. On failure *out is NULL. */
int sx_tls_connect_sync(sx_tls_conn **out, sx_tls_ctx *ctx, const char *host,
                        uint16_t port,
                        const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES],
                        const sx_tls_options *opts);
/* Reads / writes one block, waiting up to timeout_ms (-1: forever);
 * SIMPLEX_ERR_IO with reason TIMEOUT when it runs out (fatal). */
int sx_tls_read_block_sync(sx_tls_conn *c, uint8_t *out, size_t cap,
                           int timeout_ms);
int sx_tls_write_block_sync(sx_tls_conn *c, const uint8_t *block, size_t len,
                            int timeout_ms);

/* ---- certificate chain check, also usable on its own ---- */

/*
 * Checks a server chain given as DER certificates (leaf first) against
 * key_hash exactly as a connection does. Returns SX_TLS_R_NONE when
 * accepted, else the reason (SX_TLS_R_CHAIN_LENGTH, _IDENTITY,
 * _CHAIN_BROKEN, _CERT_INVALID, _NOMEM).
 */
sx_tls_reason
sx_tls_check_chain_der(const uint8_t *const *der, const size_t *der_len,
                       size_t n, const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES]);

/*
 * Only the identity part of the check, over DER bytes as received (what the
 * SMP server handshake's certificate chain needs): 2..4 certificates and
 * SHA-256 of the second equal to key_hash. SX_TLS_R_NONE,
 * SX_TLS_R_CHAIN_LENGTH, SX_TLS_R_CHAIN_BROKEN (empty certificate) or
 * SX_TLS_R_IDENTITY. Nothing is parsed.
 */
sx_tls_reason
sx_tls_chain_identity_der(const uint8_t *const *der, const size_t *der_len,
                          size_t n,
                          const uint8_t key_hash[SIMPLEX_KEY_HASH_BYTES]);

#endif /* SX_CLIENT_TLS_H */
