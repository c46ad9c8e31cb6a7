/*
 * libsimplex: common public definitions.
 *
 * Version, error codes, one-time library initialisation (allocator, default
 * log sink), library-owned byte buffers and the size constants that bindings
 * cannot read from macros.
 *
 * Conventions used by every libsimplex function:
 *   - functions return int: 0 on success, a negative simplex_error on failure;
 *   - out-parameters come first and are named out;
 *   - an object returned through **out belongs to the caller and has a
 *     matching _free function that accepts NULL;
 *   - a pointer returned as a value is borrowed from its parent object;
 *   - bytes handed back to the caller live in a simplex_buf released with
 *     simplex_buf_dispose(), never with free().
 */
#ifndef SIMPLEX_COMMON_H
#define SIMPLEX_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SIMPLEX_BUILDING_LIBRARY) && defined(__GNUC__)
#define SIMPLEX_API __attribute__((visibility("default")))
#else
#define SIMPLEX_API
#endif

#if defined(__GNUC__)
#define SIMPLEX_WARN_UNUSED __attribute__((warn_unused_result))
#else
#define SIMPLEX_WARN_UNUSED
#endif

/* ---- version ----------------------------------------------------------- */

#define SIMPLEX_VERSION_MAJOR 0
#define SIMPLEX_VERSION_MINOR 1
#define SIMPLEX_VERSION_PATCH 0
#define SIMPLEX_VERSION_STRING "0.1.0"
/* 0xMMmmpp, comparable as an integer */
#define SIMPLEX_VERSION_NUMBER                                                 \
    ((SIMPLEX_VERSION_MAJOR << 16) | (SIMPLEX_VERSION_MINOR << 8) |            \
     SIMPLEX_VERSION_PATCH)

/* The version of the library actually loaded, as "MAJOR.MINOR.PATCH". */
SIMPLEX_API const char *simplex_version(void);
/* The same as SIMPLEX_VERSION_NUMBER, for the loaded library. */
SIMPLEX_API unsigned simplex_version_number(void);

/* ---- errors ------------------------------------------------------------ */

/*
 * Error codes. Values are stable: new codes are only ever appended, retired
 * codes are never reused.
 */
typedef enum simplex_error {
    SIMPLEX_OK = 0,
    SIMPLEX_ERR_INVALID_ARG = -1,      /* a NULL or out-of-range argument */
    SIMPLEX_ERR_NOMEM = -2,            /* the allocator returned NULL */
    SIMPLEX_ERR_TRUNCATED = -3,        /* input ended before the value did */
    SIMPLEX_ERR_TRAILING = -4,         /* bytes left after a complete value */
    SIMPLEX_ERR_PARSE = -5,            /* input is malformed */
    SIMPLEX_ERR_TOO_LARGE = -6,        /* value exceeds a length limit */
    SIMPLEX_ERR_BUFFER_TOO_SMALL = -7, /* caller's output buffer too small */
    SIMPLEX_ERR_CRYPTO = -8,           /* the crypto backend failed */
    SIMPLEX_ERR_DECRYPT = -9,          /* authentication tag did not verify */
    SIMPLEX_ERR_SIGNATURE = -10,       /* signature did not verify */
    SIMPLEX_ERR_KEY = -11,             /* key malformed or of the wrong type */
    SIMPLEX_ERR_UNSUPPORTED = -12,     /* valid but not supported */
    SIMPLEX_ERR_NOT_INITIALIZED = -13, /* simplex_global_init() not called */
    SIMPLEX_ERR_ALREADY = -14,         /* already initialised / in progress */
    SIMPLEX_ERR_RECURSIVE_CALL = -15,  /* driving call made from a callback */
    SIMPLEX_ERR_IO = -16,              /* operating-system I/O failure */
    SIMPLEX_ERR_INTERNAL = -17,        /* a bug: please report it */
    SIMPLEX_ERR_TIMEOUT = -18,         /* a network deadline passed */
    SIMPLEX_ERR_RESOLVE = -19,         /* a host name did not resolve */
    SIMPLEX_ERR_CONNECT = -20,         /* no address accepted a connection */
    SIMPLEX_ERR_CLOSED = -21,          /* the peer closed the connection */
    SIMPLEX_ERR_TLS = -22,             /* TLS handshake or record failure */
    SIMPLEX_ERR_CERT_CHAIN = -23,      /* server chain not 2..4 certificates */
    SIMPLEX_ERR_CERT_INVALID = -24,    /* chain broken or a certificate bad */
    SIMPLEX_ERR_SERVER_IDENTITY = -25, /* server is not the one addressed */
    SIMPLEX_ERR_PROXY = -26,           /* the SOCKS proxy refused or failed */
    SIMPLEX_ERR_PROXY_AUTH = -27,      /* the SOCKS proxy refused our login */
    SIMPLEX_ERR_SERVER = -28,          /* the SMP server answered ERR */
    SIMPLEX_ERR_NOT_FOUND = -29,       /* no such connection or message */
    SIMPLEX_ERR_STATE = -30,           /* not allowed in the current state */
    SIMPLEX_ERR_STORE = -31,           /* the database failed */
    SIMPLEX_ERR_VERSION = -32,         /* the peer's versions are incompatible */
    SIMPLEX_ERR_LAST = -32             /* the lowest code defined so far */
} simplex_error;

/* A static, human-readable description of an error code (never NULL). */
SIMPLEX_API const char *simplex_strerror(int code);

/*
 * Non-zero when an error poisons the object that reported it, so that it
 * must be freed and created again (out of memory, internal errors).
 */
SIMPLEX_API int simplex_is_fatal(int code);

/* ---- logging ----------------------------------------------------------- */

typedef enum simplex_log_level {
    SIMPLEX_LOG_ERROR = 1,
    SIMPLEX_LOG_WARN = 2,
    SIMPLEX_LOG_INFO = 3,
    SIMPLEX_LOG_DEBUG = 4
} simplex_log_level;

/*
 * A log sink. It may be called from any thread the library runs on, must
 * not block for long and must not call back into the library. The message
 * is valid only during the call. Secrets, message bodies, queue ids and
 * links are never logged above SIMPLEX_LOG_DEBUG.
 */
typedef void (*simplex_log_cb)(int level, const char *message, void *user_data);

/* ---- allocator --------------------------------------------------------- */

/*
 * A replacement allocator. All four functions must be set; they follow the
 * C library's contracts, with user_data passed last.
 */
typedef struct simplex_allocator {
    void *(*malloc_fn)(size_t size, void *user_data);
    void *(*calloc_fn)(size_t nmemb, size_t size, void *user_data);
    void *(*realloc_fn)(void *ptr, size_t size, void *user_data);
    void (*free_fn)(void *ptr, void *user_data);
    void *user_data;
} simplex_allocator;

/* ---- one-time initialisation ------------------------------------------- */

#define SIMPLEX_GLOBAL_OPTIONS_VERSION 1

/*
 * Options for simplex_global_init(). Initialise with
 * simplex_global_options_init() and then set the fields you need; later
 * versions only append fields.
 */
typedef struct simplex_global_options {
    unsigned version;             /* SIMPLEX_GLOBAL_OPTIONS_VERSION */
    const simplex_allocator *allocator; /* NULL: the C library's; copied */
    simplex_log_cb log_cb;        /* NULL: silence */
    void *log_user_data;
    int log_level;                /* most verbose level passed to log_cb */
} simplex_global_options;

SIMPLEX_API int simplex_global_options_init(simplex_global_options *opts,
                                            unsigned version);

/*
 * Initialises the library once per process: seeds the crypto backends and
 * installs the allocator and the default log sink. opts may be NULL.
 * Calling it again without simplex_global_cleanup() in between returns
 * SIMPLEX_ERR_ALREADY and changes nothing. Not thread-safe: call it before
 * any other thread uses the library.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int
simplex_global_init(const simplex_global_options *opts);

/*
 * Undoes simplex_global_init(). Every libsimplex object must have been
 * freed before. Afterwards simplex_global_init() may be called again.
 */
SIMPLEX_API void simplex_global_cleanup(void);

/*
 * Runs the built-in known-answer tests of the crypto primitives the library
 * depends on (libsodium and OpenSSL, as linked at run time).
 * Returns 0 when every answer matches.
 */
SIMPLEX_API SIMPLEX_WARN_UNUSED int simplex_selftest(void);

/* ---- byte buffers ------------------------------------------------------ */

/* Bytes owned by the library and handed to the caller. */
typedef struct simplex_buf {
    uint8_t *data;
    size_t len;
} simplex_buf;

/* Wipes and frees buf's bytes and resets it to empty. NULL is accepted. */
SIMPLEX_API void simplex_buf_dispose(simplex_buf *buf);

/* ---- sizes ------------------------------------------------------------- */

/* Every SMP transport block is exactly this many bytes. */
#define SIMPLEX_SMP_BLOCK_BYTES 16384
/* Server identity: SHA-256 of the server's CA certificate. */
#define SIMPLEX_KEY_HASH_BYTES 32
/* Correlation ids and crypto_box nonces. */
#define SIMPLEX_NONCE_BYTES 24

SIMPLEX_API size_t simplex_smp_block_bytes(void);
SIMPLEX_API size_t simplex_key_hash_bytes(void);
SIMPLEX_API size_t simplex_nonce_bytes(void);

#ifdef __cplusplus
}
#endif

#endif /* SIMPLEX_COMMON_H */
