/*
 * Text encodings used in links and addresses, as the reference's string
 * encoding (strEncode / strP) emits and accepts them: base64url, version
 * ranges, URL query strings with percent-encoding.
 */
#ifndef SX_TEXT_H
#define SX_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "common/bytes.h"

/* ---- base64url (RFC 4648 section 5 alphabet) ---- */

/* Characters sx_b64url_encode writes for n bytes (with '=' padding). */
size_t sx_b64url_encoded_len(size_t n);
/* Appends the padded base64url text of p to w (no NUL). */
void sx_b64url_encode(sx_wr *w, const uint8_t *p, size_t n);
/* Decodes exactly n characters of s, accepting what the reference's
 * parser accepts; anything else is SIMPLEX_ERR_PARSE. Appends to w. */
int sx_b64url_decode(sx_wr *w, const char *s, size_t n);
/* The number of leading characters of s[0..n) that belong to a base64url
 * token (alphabet plus trailing '='), for tokenising links. */
size_t sx_b64url_span(const char *s, size_t n);

/* ---- version ranges: "4" when min == max, else "1-4" ---- */
typedef struct sx_vrange {
    uint16_t min;
    uint16_t max;
} sx_vrange;

void sx_vrange_str_encode(sx_wr *w, sx_vrange v);
/* Exactly n characters; min <= max required. */
int sx_vrange_str_decode(sx_vrange *out, const char *s, size_t n);
/* Binary: Word16 min, Word16 max. */
void sx_vrange_encode(sx_wr *w, sx_vrange v);
int sx_vrange_decode(sx_rd *r, sx_vrange *out);

/* ---- URL query strings: k=v&k2=v2 with percent-encoding ---- */
typedef struct sx_query_param {
    const char *key;   /* views into the parsed text, not NUL-terminated */
    size_t key_len;
    const char *val;   /* still percent-encoded */
    size_t val_len;
} sx_query_param;

/* Splits s[0..n) into at most cap params; SIMPLEX_ERR_TOO_LARGE beyond. */
int sx_query_parse(sx_query_param *out, size_t cap, size_t *count,
                   const char *s, size_t n);
/* The first param named key, or NULL. */
const sx_query_param *sx_query_find(const sx_query_param *ps, size_t count,
                                    const char *key);
/* Appends the percent-decoded value to w; bad escapes: SIMPLEX_ERR_PARSE. */
int sx_percent_decode(sx_wr *w, const char *s, size_t n);
/* Appends s percent-encoded as the reference encodes query values. */
void sx_percent_encode(sx_wr *w, const char *s, size_t n);

#endif /* SX_TEXT_H */
