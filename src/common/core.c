/*
 * Version, errors, one-time initialisation, the allocator and the log hook.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "common/sx.h"
#include "crypto/crypto.h"

/* ---- allocator ---- */

static void *libc_malloc(size_t n, void *ud)
{
    (void)ud;
    return malloc(n);
}
static void *libc_calloc(size_t m, size_t n, void *ud)
{
    (void)ud;
    return calloc(m, n);
}
static void *libc_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    return realloc(p, n);
}
static void libc_free(void *p, void *ud)
{
    (void)ud;
    free(p);
}

static const simplex_allocator libc_allocator = {
    libc_malloc, libc_calloc, libc_realloc, libc_free, NULL};

static simplex_allocator g_alloc = {libc_malloc, libc_calloc, libc_realloc,
                                    libc_free, NULL};
static sx_logger g_logger = {NULL, NULL, 0};
static int g_initialized = 0;

void *sx_malloc(size_t n)
{
    return g_alloc.malloc_fn(n ? n : 1, g_alloc.user_data);
}

void *sx_calloc(size_t m, size_t n)
{
    if (m == 0 || n == 0)
        m = n = 1;
    return g_alloc.calloc_fn(m, n, g_alloc.user_data);
}

void *sx_realloc(void *p, size_t n)
{
    return g_alloc.realloc_fn(p, n ? n : 1, g_alloc.user_data);
}

void sx_free(void *p)
{
    if (p)
        g_alloc.free_fn(p, g_alloc.user_data);
}

void sx_memzero(void *p, size_t n)
{
    if (p && n)
        sodium_memzero(p, n);
}

void sx_free_secret(void *p, size_t n)
{
    if (!p)
        return;
    sx_memzero(p, n);
    sx_free(p);
}

int sx_memeq_ct(const void *a, const void *b, size_t n)
{
    if (n == 0)
        return 0;
    return sodium_memcmp(a, b, n) == 0 ? 0 : -1;
}

int sx_initialized(void)
{
    return g_initialized;
}

/* ---- logging ---- */

const sx_logger *sx_default_logger(void)
{
    return &g_logger;
}

void sx_log(const sx_logger *lg, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (!lg || !lg->cb || level > lg->level)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lg->cb(level, msg, lg->user_data);
}

/* ---- version ---- */

const char *simplex_version(void)
{
    return SIMPLEX_VERSION_STRING;
}

unsigned simplex_version_number(void)
{
    return SIMPLEX_VERSION_NUMBER;
}

/* ---- errors ---- */

static const char *const error_text[] = {
    "success",
    "invalid argument",
    "out of memory",
    "input truncated",
    "trailing bytes after value",
    "malformed input",
    "value too large",
    "output buffer too small",
    "crypto backend failure",
    "decryption failed: authentication tag mismatch",
    "signature verification failed",
    "invalid or wrong-type key",
    "not supported",
    "library not initialised: call simplex_global_init()",
    "already initialised or in progress",
    "recursive call from a callback",
    "I/O error",
    "internal error",
    "timed out",
    "host name did not resolve",
    "connection failed",
    "connection closed by peer",
    "TLS failure",
    "server certificate chain has the wrong length",
    "server certificate chain is invalid",
    "server identity does not match the address",
    "SOCKS proxy failure",
    "SOCKS proxy authentication failed",
    "the SMP server refused the command",
    "no such connection or message",
    "not allowed in the connection's current state",
    "database failure",
    "incompatible protocol versions",
};

const char *simplex_strerror(int code)
{
    if (code > 0 || (size_t)(-(long)code) >= SX_ARRAY_LEN(error_text))
        return "unknown error";
    return error_text[-code];
}

int simplex_is_fatal(int code)
{
    return code == SIMPLEX_ERR_NOMEM || code == SIMPLEX_ERR_INTERNAL;
}

/* ---- initialisation ---- */

int simplex_global_options_init(simplex_global_options *opts, unsigned version)
{
    if (!opts || version == 0 || version > SIMPLEX_GLOBAL_OPTIONS_VERSION)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(opts, 0, sizeof *opts);
    opts->version = version;
    opts->log_level = SIMPLEX_LOG_WARN;
    return SIMPLEX_OK;
}

int simplex_global_init(const simplex_global_options *opts)
{
    int rc;

    if (g_initialized)
        return SIMPLEX_ERR_ALREADY;
    if (opts) {
        if (opts->version == 0 ||
            opts->version > SIMPLEX_GLOBAL_OPTIONS_VERSION)
            return SIMPLEX_ERR_INVALID_ARG;
        if (opts->allocator) {
            const simplex_allocator *a = opts->allocator;
            if (!a->malloc_fn || !a->calloc_fn || !a->realloc_fn ||
                !a->free_fn)
                return SIMPLEX_ERR_INVALID_ARG;
        }
    }
    rc = sx_crypto_init();
    if (rc != SIMPLEX_OK)
        return rc;
    g_alloc = (opts && opts->allocator) ? *opts->allocator : libc_allocator;
    if (opts) {
        g_logger.cb = opts->log_cb;
        g_logger.user_data = opts->log_user_data;
        g_logger.level = opts->log_level;
    }
    g_initialized = 1;
    sx_log(&g_logger, SIMPLEX_LOG_DEBUG, "libsimplex %s initialised",
           SIMPLEX_VERSION_STRING);
    return SIMPLEX_OK;
}

void simplex_global_cleanup(void)
{
    g_alloc = libc_allocator;
    memset(&g_logger, 0, sizeof g_logger);
    g_initialized = 0;
}

/* ---- buffers ---- */

void simplex_buf_dispose(simplex_buf *buf)
{
    if (!buf)
        return;
    sx_free_secret(buf->data, buf->len);
    buf->data = NULL;
    buf->len = 0;
}

/* ---- sizes ---- */

size_t simplex_smp_block_bytes(void)
{
    return SIMPLEX_SMP_BLOCK_BYTES;
}

size_t simplex_key_hash_bytes(void)
{
    return SIMPLEX_KEY_HASH_BYTES;
}

size_t simplex_nonce_bytes(void)
{
    return SIMPLEX_NONCE_BYTES;
}
