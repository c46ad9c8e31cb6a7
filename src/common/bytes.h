/*
 * Bounds-checked reader and writer over byte buffers, implementing the
 * SimpleX binary encoding (the reference's Encoding class):
 *
 *   Char         1 byte
 *   Bool         'T' / 'F'
 *   Word16/32    big-endian
 *   Int64        big-endian two's complement (two Word32s)
 *   ByteString   1-byte length + bytes ("short string", <= 255)
 *   Large        2-byte big-endian length + bytes (<= 65535)
 *   Maybe a      '0'  |  '1' a
 *   [a]          1-byte count + items; NonEmpty: the same, count >= 1
 *   tuples       concatenation
 *   Tail         the rest of the input, no length
 *   SystemTime   seconds as Int64
 *
 * Reader: every sx_rd_* returns 0 or a negative simplex_error and never
 * reads past the end; on error the reader is left where it was. Byte
 * strings are returned as views into the input (no copy).
 *
 * Writer: a growable (allocator-backed) or fixed buffer with a sticky
 * error. sx_wr_* functions return nothing; the first failure is kept in
 * w->err and later writes are ignored. Check it with sx_wr_error().
 */
#ifndef SX_BYTES_H
#define SX_BYTES_H

#include <stddef.h>
#include <stdint.h>

#include "common/sx.h"

typedef struct sx_rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
} sx_rd;

void sx_rd_init(sx_rd *r, const void *p, size_t len);
size_t sx_rd_left(const sx_rd *r);
/* SIMPLEX_ERR_TRAILING when bytes remain, 0 at the end. */
int sx_rd_end(const sx_rd *r);

int sx_rd_u8(sx_rd *r, uint8_t *out);
int sx_rd_u16(sx_rd *r, uint16_t *out);
int sx_rd_u32(sx_rd *r, uint32_t *out);
int sx_rd_i64(sx_rd *r, int64_t *out);
int sx_rd_bool(sx_rd *r, int *out);          /* 'T' -> 1, 'F' -> 0 */
/* Consumes one byte that must equal c (SIMPLEX_ERR_PARSE otherwise). */
int sx_rd_expect(sx_rd *r, uint8_t c);
/* Exactly n raw bytes. */
int sx_rd_raw(sx_rd *r, size_t n, const uint8_t **out);
/* Exactly n raw bytes, copied. */
int sx_rd_copy(sx_rd *r, void *out, size_t n);
int sx_rd_short(sx_rd *r, const uint8_t **out, size_t *n);  /* ByteString */
int sx_rd_large(sx_rd *r, const uint8_t **out, size_t *n);  /* Large */
/* A short string whose length must be exactly n, copied into out. */
int sx_rd_short_fixed(sx_rd *r, void *out, size_t n);
/* Maybe tag: *present = 0 for '0', 1 for '1'. */
int sx_rd_maybe(sx_rd *r, int *present);
int sx_rd_count(sx_rd *r, size_t *n);           /* list length */
int sx_rd_count_nonempty(sx_rd *r, size_t *n);  /* NonEmpty length >= 1 */
void sx_rd_tail(sx_rd *r, const uint8_t **out, size_t *n);
int sx_rd_time(sx_rd *r, int64_t *seconds);

typedef struct sx_wr {
    uint8_t *p;
    size_t len;
    size_t cap;
    int err;
    int fixed; /* 1: p is the caller's buffer and never grows */
} sx_wr;

/* Growable buffer from the library allocator. */
void sx_wr_init(sx_wr *w);
/* Fixed buffer; writing past cap sets SIMPLEX_ERR_BUFFER_TOO_SMALL. */
void sx_wr_init_fixed(sx_wr *w, void *buf, size_t cap);
/* Wipes and releases a growable buffer (no-op for fixed). */
void sx_wr_free(sx_wr *w);
int sx_wr_error(const sx_wr *w);
/* Moves a growable buffer's bytes to the caller (sx_free_secret them);
 * returns the sticky error, in which case nothing is moved. */
int sx_wr_take(sx_wr *w, uint8_t **out, size_t *len);
/* Discards everything written so far (keeps the buffer). */
void sx_wr_reset(sx_wr *w);
/* Reserves n bytes and returns a pointer to fill in, or NULL on error. */
uint8_t *sx_wr_reserve(sx_wr *w, size_t n);

void sx_wr_u8(sx_wr *w, uint8_t v);
void sx_wr_u16(sx_wr *w, uint16_t v);
void sx_wr_u32(sx_wr *w, uint32_t v);
void sx_wr_i64(sx_wr *w, int64_t v);
void sx_wr_bool(sx_wr *w, int v);
void sx_wr_raw(sx_wr *w, const void *p, size_t n);
void sx_wr_str(sx_wr *w, const char *s);     /* raw bytes of a C string */
void sx_wr_short(sx_wr *w, const void *p, size_t n); /* TOO_LARGE if > 255 */
void sx_wr_large(sx_wr *w, const void *p, size_t n); /* TOO_LARGE if > 65535 */
void sx_wr_maybe(sx_wr *w, int present);     /* writes '0' or '1' */
void sx_wr_count(sx_wr *w, size_t n);        /* TOO_LARGE if > 255 */
void sx_wr_time(sx_wr *w, int64_t seconds);

#endif /* SX_BYTES_H */
