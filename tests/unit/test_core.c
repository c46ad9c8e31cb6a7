/* Version, errors, initialisation, the allocator hook and buffers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "simplex/simplex.h"

static void test_version(void **state)
{
    char expect[32];
    (void)state;
    snprintf(expect, sizeof expect, "%d.%d.%d", SIMPLEX_VERSION_MAJOR,
             SIMPLEX_VERSION_MINOR, SIMPLEX_VERSION_PATCH);
    assert_string_equal(simplex_version(), expect);
    assert_string_equal(simplex_version(), SIMPLEX_VERSION_STRING);
    assert_int_equal(simplex_version_number(), SIMPLEX_VERSION_NUMBER);
}

static void test_strerror(void **state)
{
    (void)state;
    assert_string_equal(simplex_strerror(SIMPLEX_OK), "success");
    /* every defined code has its own text */
    for (int c = SIMPLEX_ERR_INVALID_ARG; c >= SIMPLEX_ERR_LAST; c--) {
        const char *s = simplex_strerror(c);
        assert_non_null(s);
        assert_string_not_equal(s, "unknown error");
        for (int d = c + 1; d <= SIMPLEX_OK; d++)
            assert_string_not_equal(s, simplex_strerror(d));
    }
    assert_string_equal(simplex_strerror(SIMPLEX_ERR_LAST - 1),
                        "unknown error");
    assert_string_equal(simplex_strerror(5), "unknown error");
    assert_true(simplex_is_fatal(SIMPLEX_ERR_NOMEM));
    assert_false(simplex_is_fatal(SIMPLEX_ERR_PARSE));
    assert_false(simplex_is_fatal(SIMPLEX_OK));
}

static void test_sizes(void **state)
{
    (void)state;
    assert_int_equal(simplex_smp_block_bytes(), 16384);
    assert_int_equal(simplex_key_hash_bytes(), 32);
    assert_int_equal(simplex_nonce_bytes(), 24);
}

static void test_options(void **state)
{
    simplex_global_options o;
    (void)state;
    assert_int_equal(simplex_global_options_init(NULL, 1),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_global_options_init(&o, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_global_options_init(&o, 99),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(simplex_global_options_init(&o, 1), SIMPLEX_OK);
    assert_int_equal(o.version, 1);
    assert_null(o.allocator);
    assert_null(o.log_cb);
}

/* a counting allocator */
static size_t n_alloc, n_free;
static void *c_malloc(size_t n, void *ud)
{
    (void)ud;
    n_alloc++;
    return malloc(n);
}
static void *c_calloc(size_t m, size_t n, void *ud)
{
    (void)ud;
    n_alloc++;
    return calloc(m, n);
}
static void *c_realloc(void *p, size_t n, void *ud)
{
    (void)ud;
    if (!p)
        n_alloc++;
    return realloc(p, n);
}
static void c_free(void *p, void *ud)
{
    (void)ud;
    if (p)
        n_free++;
    free(p);
}

static int log_calls;
static void log_cb(int level, const char *msg, void *ud)
{
    assert_ptr_equal(ud, &log_calls);
    assert_true(level >= SIMPLEX_LOG_ERROR && level <= SIMPLEX_LOG_DEBUG);
    assert_non_null(msg);
    log_calls++;
}

static void test_init_cycle(void **state)
{
    simplex_global_options o;
    simplex_allocator bad = {c_malloc, NULL, c_realloc, c_free, NULL};
    simplex_allocator good = {c_malloc, c_calloc, c_realloc, c_free, NULL};
    (void)state;

    simplex_global_options_init(&o, SIMPLEX_GLOBAL_OPTIONS_VERSION);
    o.allocator = &bad;
    assert_int_equal(simplex_global_init(&o), SIMPLEX_ERR_INVALID_ARG);

    o.allocator = &good;
    o.log_cb = log_cb;
    o.log_user_data = &log_calls;
    o.log_level = SIMPLEX_LOG_DEBUG;
    log_calls = 0;
    assert_int_equal(simplex_global_init(&o), SIMPLEX_OK);
    assert_true(log_calls >= 1); /* the debug line about initialisation */
    assert_int_equal(simplex_global_init(&o), SIMPLEX_ERR_ALREADY);
    assert_int_equal(simplex_selftest(), SIMPLEX_OK);
    simplex_global_cleanup();

    assert_int_equal(simplex_global_init(NULL), SIMPLEX_OK);
    simplex_global_cleanup();
}

static void test_buf_dispose(void **state)
{
    simplex_buf b = {NULL, 0};
    (void)state;
    simplex_buf_dispose(NULL);
    simplex_buf_dispose(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),     cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_sizes),       cmocka_unit_test(test_options),
        cmocka_unit_test(test_init_cycle),  cmocka_unit_test(test_buf_dispose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
