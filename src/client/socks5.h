/*
 * Internal: a SOCKS5 client (RFC 1928 CONNECT, RFC 1929 username/password)
 * for reaching servers through Tor or another SOCKS5 proxy.
 *
 * The handshake is a sans-I/O state machine with no heap use: the caller
 * moves bytes between it and the socket. Target hosts given as domain names
 * are sent as ATYP 0x03, so the proxy resolves them (".onion" works).
 *
 * Also here: a small blocking driver over a connected socket (for tests and
 * tools), and the reference client's Tor circuit isolation rule, which picks
 * the SOCKS username/password for a transport session.
 * Never installed.
 */
#ifndef SX_CLIENT_SOCKS5_H
#define SX_CLIENT_SOCKS5_H

#include <stddef.h>
#include <stdint.h>

/* Longest domain name, username and password (one length byte each). */
#define SX_SOCKS5_NAME_MAX 255

/* Non-negative results of sx_socks5_in() / sx_socks5_status(). Errors are
 * negative simplex_error values; sx_socks5_detail() says precisely why. */
enum {
    SX_SOCKS5_DONE = 0, /* the tunnel is open: bytes after the reply are the
                           target's and were not consumed */
    SX_SOCKS5_AGAIN = 1 /* send what sx_socks5_out() gives, feed more input */
};

/* The precise reason of a failure. Values 1..8 equal the RFC 1928 reply
 * codes (REP field) they stand for. */
typedef enum sx_socks5_detail {
    SX_SOCKS5_D_NONE = 0,
    SX_SOCKS5_D_GENERAL_FAILURE = 1,    /* REP 0x01 */
    SX_SOCKS5_D_NOT_ALLOWED = 2,        /* REP 0x02: ruleset */
    SX_SOCKS5_D_NET_UNREACHABLE = 3,    /* REP 0x03 */
    SX_SOCKS5_D_HOST_UNREACHABLE = 4,   /* REP 0x04 */
    SX_SOCKS5_D_CONN_REFUSED = 5,       /* REP 0x05 */
    SX_SOCKS5_D_TTL_EXPIRED = 6,        /* REP 0x06 */
    SX_SOCKS5_D_CMD_UNSUPPORTED = 7,    /* REP 0x07 */
    SX_SOCKS5_D_ATYP_UNSUPPORTED = 8,   /* REP 0x08 */
    SX_SOCKS5_D_REPLY_OTHER = 9,        /* another non-zero REP (e.g. Tor's
                                           0xF0..0xF7 onion service codes):
                                           see sx_socks5_reply_code() */
    SX_SOCKS5_D_METHOD_REFUSED = 10,    /* method reply 0xFF */
    SX_SOCKS5_D_AUTH_FAILED = 11,       /* RFC 1929 status != 0 */
    SX_SOCKS5_D_BAD_VERSION = 12,       /* VER of a reply is not 5 */
    SX_SOCKS5_D_BAD_METHOD = 13,        /* proxy chose a method not offered */
    SX_SOCKS5_D_BAD_AUTH_VERSION = 14,  /* RFC 1929 reply VER is not 1 */
    SX_SOCKS5_D_BAD_ATYP = 15,          /* unknown ATYP in the reply */
    SX_SOCKS5_D_EARLY_REPLY = 16,       /* a reply came before our request
                                           was fully sent */
    SX_SOCKS5_D_EOF = 17,               /* driver: proxy closed mid-reply */
    SX_SOCKS5_D_TIMEOUT = 18,           /* driver: deadline passed */
    SX_SOCKS5_D_IO = 19,                /* driver: socket error (errno) */
    SX_SOCKS5_D_BAD_ARG = 20            /* bad host, port or credentials */
} sx_socks5_detail;

/* The handshake state. Treat as opaque; it may live on the stack. It holds
 * the credentials until they are sent: call sx_socks5_clear() when done. */
typedef struct sx_socks5 {
    int state;
    int status;              /* SX_SOCKS5_AGAIN, SX_SOCKS5_DONE or < 0 */
    sx_socks5_detail detail;
    int with_auth;
    uint8_t reply_code;      /* REP of the final reply (0 on success) */
    uint8_t bound_atyp;      /* ATYP of the bound address in the reply */
    uint16_t bound_port;
    /* pending output */
    uint8_t out[3 + 2 * SX_SOCKS5_NAME_MAX];
    size_t out_len, out_off;
    /* the CONNECT request, built at init */
    uint8_t req[6 + SX_SOCKS5_NAME_MAX + 1];
    size_t req_len;
    /* RFC 1929 credentials */
    uint8_t user[SX_SOCKS5_NAME_MAX], pass[SX_SOCKS5_NAME_MAX];
    uint8_t user_len, pass_len;
    /* the reply being received */
    uint8_t in[6 + SX_SOCKS5_NAME_MAX + 1];
    size_t in_len, in_need;
} sx_socks5;

/*
 * Prepares a CONNECT to host:port. host is an IPv4 literal, an IPv6 literal
 * (brackets optional) or a domain name of 1..255 bytes (sent for remote
 * resolution). user == NULL: offer "no authentication" only; otherwise offer
 * only RFC 1929 username/password (0..255 bytes each, so that isolation is
 * never silently dropped). port must be non-zero.
 * Returns 0 or SIMPLEX_ERR_INVALID_ARG / SIMPLEX_ERR_TOO_LARGE (detail
 * SX_SOCKS5_D_BAD_ARG). The greeting is then ready in sx_socks5_out().
 */
int sx_socks5_init(sx_socks5 *s, const char *host, uint16_t port,
                   const uint8_t *user, size_t user_len, const uint8_t *pass,
                   size_t pass_len);

/* The bytes to send now (*len 0 when nothing is pending). The pointer stays
 * valid until the next call on s. Returns *len. */
size_t sx_socks5_out(const sx_socks5 *s, const uint8_t **ptr, size_t *len);
/* Marks n of the pending bytes as sent (n is capped at what is pending). */
void sx_socks5_sent(sx_socks5 *s, size_t n);

/*
 * Feeds bytes received from the proxy. Takes only bytes that belong to the
 * handshake and sets *consumed; any rest (after SX_SOCKS5_DONE) belongs to
 * the tunnel. Replies may be split anywhere. It also stops right after a
 * reply that queued our next request (*consumed < len, SX_SOCKS5_AGAIN):
 * send that first, then feed the rest; bytes fed while output is pending
 * fail as SX_SOCKS5_D_EARLY_REPLY. Returns SX_SOCKS5_AGAIN,
 * SX_SOCKS5_DONE, or a negative simplex_error:
 *   SIMPLEX_ERR_PROXY_AUTH   method refused (0xFF) or username/password
 *                            rejected;
 *   SIMPLEX_ERR_PROXY        any non-zero REP (the detail tells which);
 *   SIMPLEX_ERR_PARSE        a malformed or unexpected reply.
 * Once finished (done or failed) the result is repeated and nothing more
 * is consumed.
 */
int sx_socks5_in(sx_socks5 *s, const uint8_t *data, size_t len,
                 size_t *consumed);

/* How many more bytes the current reply needs at least (0 when nothing is
 * expected). Reading no more than this never reads past the handshake. */
size_t sx_socks5_in_want(const sx_socks5 *s);

int sx_socks5_status(const sx_socks5 *s);
sx_socks5_detail sx_socks5_detail_of(const sx_socks5 *s);
/* The raw REP byte of the final reply (meaningful after it arrived). */
uint8_t sx_socks5_reply_code(const sx_socks5 *s);
/* A static description of a detail code (never NULL). */
const char *sx_socks5_detail_str(sx_socks5_detail d);
/* Wipes the state, credentials included. */
void sx_socks5_clear(sx_socks5 *s);

/*
 * Blocking driver: runs the handshake over fd, a socket already connected to
 * the proxy (blocking or not), within timeout_ms (> 0) in total. Never reads
 * past the proxy's final reply, so the socket is then the tunnel. Returns 0
 * or a negative simplex_error; driver failures are SIMPLEX_ERR_TIMEOUT,
 * SIMPLEX_ERR_IO (socket error) and SIMPLEX_ERR_TRUNCATED (proxy closed).
 * *detail (may be NULL) is set to the reason, *reply_code (may be NULL) to the raw REP.
 */
int sx_socks5_connect(int fd, const char *host, uint16_t port,
                      const uint8_t *user, size_t user_len,
                      const uint8_t *pass, size_t pass_len, int timeout_ms,
                      sx_socks5_detail *detail, uint8_t *reply_code);

/* ---- Tor circuit isolation (the reference client's rule) ---- */

/* How the proxy credentials are chosen (the reference's SocksAuth). */
typedef enum sx_socks5_auth_mode {
    SX_SOCKS5_AUTH_ISOLATE = 0,  /* default: derived username, "" password */
    SX_SOCKS5_AUTH_NONE = 1,     /* no authentication */
    SX_SOCKS5_AUTH_FIXED = 2     /* the configured username/password */
} sx_socks5_auth_mode;

/* What a transport session is keyed by (the reference's
 * TransportSessionMode); the default is SX_SOCKS5_SESS_SESSION. */
typedef enum sx_socks5_sess_mode {
    SX_SOCKS5_SESS_USER = 0,     /* per user */
    SX_SOCKS5_SESS_SESSION = 1,  /* per user and proxy session (default) */
    SX_SOCKS5_SESS_SERVER = 2,   /* ... and per server */
    SX_SOCKS5_SESS_ENTITY = 3    /* ... and per connection / entity */
} sx_socks5_sess_mode;

typedef struct sx_socks5_isolation {
    sx_socks5_auth_mode auth;
    const uint8_t *username; size_t username_len; /* SX_SOCKS5_AUTH_FIXED */
    const uint8_t *password; size_t password_len;
    sx_socks5_sess_mode mode;
    int64_t user_id;
    /* The proxy session timestamp in the reference's `show UTCTime` form
     * (sx_socks5_format_utctime()); used unless mode is USER. */
    const char *session_ts;
    /* The server as the reference's strEncode of ProtocolServer, e.g.
     * "smp://<keyhash>@host1,host2:5223" (no basic auth); SERVER, ENTITY. */
    const char *server;
    /* The entity id (SMP: the agent connection id; XFTP: chunk digest);
     * ENTITY only, and only when has_entity. */
    const uint8_t *entity; size_t entity_len; int has_entity;
} sx_socks5_isolation;

typedef struct sx_socks5_creds {
    int use_auth; /* 0: connect without authentication */
    uint8_t username[SX_SOCKS5_NAME_MAX];
    size_t username_len;
    uint8_t password[SX_SOCKS5_NAME_MAX];
    size_t password_len;
} sx_socks5_creds;

/*
 * The credentials the reference would use. ISOLATE: username is the
 * standard (RFC 4648 section 4, padded) base64 of SHA-256 of
 *   decimal(user_id)                                      mode USER
 *   decimal(user_id) ":" ts                               mode SESSION
 *   decimal(user_id) ":" ts "@" server                    mode SERVER
 *   decimal(user_id) ":" ts "@" server ["/" entity]       mode ENTITY
 * and the password is empty. Returns 0 or a negative simplex_error.
 */
int sx_socks5_isolation_creds(sx_socks5_creds *out,
                              const sx_socks5_isolation *in);

/*
 * Writes a UTC time as Haskell's `show` of UTCTime writes it:
 * "YYYY-MM-DD HH:MM:SS[.fraction] UTC", the fraction in picoseconds with
 * trailing zeros (and then the dot) dropped. picos < 10^12. Returns the
 * length, or a negative simplex_error (SIMPLEX_ERR_BUFFER_TOO_SMALL when
 * cap, which counts the NUL, is too small; 48 always suffices).
 */
int sx_socks5_format_utctime(char *out, size_t cap, int64_t unix_secs,
                             uint64_t picos);

#endif /* SX_CLIENT_SOCKS5_H */
