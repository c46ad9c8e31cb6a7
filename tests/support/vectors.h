/*
 * Reader for the reference byte-vector files in tests/vectors/:
 * blocks of "key: value" lines separated by blank lines, '#' comments,
 * "name:" first in each block. Values are hex except name and *_str keys.
 * Test-only code: failures abort with a message.
 */
#ifndef TESTS_VECTORS_H
#define TESTS_VECTORS_H

#include <stddef.h>
#include <stdint.h>

typedef struct tv_field {
    char *key;
    char *val;
} tv_field;

typedef struct tv_block {
    const char *name;
    size_t n;
    tv_field *f;
} tv_block;

typedef struct tv_file {
    size_t n;
    tv_block *b;
} tv_file;

/* Loads VECTOR_DIR/<file> (VECTOR_DIR is set by the Makefile). */
void tv_load(tv_file *out, const char *file);
void tv_free(tv_file *tf);
/* The block with this name; aborts when absent. */
const tv_block *tv_find(const tv_file *tf, const char *name);
/* A field's text, NULL when absent. */
const char *tv_get(const tv_block *b, const char *key);
/* A field's text; aborts when absent. */
const char *tv_str(const tv_block *b, const char *key);
/* A hex field decoded into a malloc'ed buffer (free() it); aborts when absent
 * or not hex. *len may be NULL. Returns a non-NULL pointer even for empty. */
uint8_t *tv_hex(const tv_block *b, const char *key, size_t *len);
/* Number of blocks whose name starts with prefix. */
size_t tv_count_prefix(const tv_file *tf, const char *prefix);

#endif
