/*
 * Internal definitions shared by every layer: allocation through the
 * installed allocator, the logging hook, small helpers.
 * Never installed; nothing here is exported from the shared library.
 */
#ifndef SX_SX_H
#define SX_SX_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "simplex/common.h"

#if defined(__GNUC__)
#define SX_WUR __attribute__((warn_unused_result))
#define SX_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SX_WUR
#define SX_PRINTF(f, a)
#endif

#define SX_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- allocation: the only way library code gets heap memory ---- */
void *sx_malloc(size_t n);
void *sx_calloc(size_t nmemb, size_t n);
void *sx_realloc(void *p, size_t n);
void sx_free(void *p);
/* Wipes n bytes at p, then frees p. For anything that held a secret. */
void sx_free_secret(void *p, size_t n);
/* Wipes n bytes in a way the compiler may not elide. */
void sx_memzero(void *p, size_t n);
/* Constant-time comparison of n bytes: 0 when equal, -1 otherwise. */
int sx_memeq_ct(const void *a, const void *b, size_t n);

/* Non-zero once simplex_global_init() has succeeded. */
int sx_initialized(void);

/* ---- logging ---- */
typedef struct sx_logger {
    simplex_log_cb cb;
    void *user_data;
    int level;
} sx_logger;

/* The logger installed by simplex_global_init() (silent by default). */
const sx_logger *sx_default_logger(void);
void sx_log(const sx_logger *lg, int level, const char *fmt, ...)
    SX_PRINTF(3, 4);

#endif /* SX_SX_H */
