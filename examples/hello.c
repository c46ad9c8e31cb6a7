/*
 * The smallest libsimplex program: initialise the library, print its
 * version and run the crypto self-test. Built against an installed
 * library with:
 *   cc hello.c $(pkg-config --cflags --libs simplex)
 */
#include <stdio.h>

#include <simplex/simplex.h>

int main(void)
{
    int rc = simplex_global_init(NULL);
    if (rc != SIMPLEX_OK) {
        fprintf(stderr, "init failed: %s\n", simplex_strerror(rc));
        return 1;
    }
    printf("libsimplex %s (SMP block %zu bytes)\n", simplex_version(),
           simplex_smp_block_bytes());
    rc = simplex_selftest();
    printf("crypto self-test: %s\n", rc == SIMPLEX_OK ? "ok" : simplex_strerror(rc));
    simplex_global_cleanup();
    return rc == SIMPLEX_OK ? 0 : 1;
}
