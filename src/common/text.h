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
/* Appends the percent-decoded value to w (see the notes below: malformed
 * escapes pass through literally, as in the reference). */
int sx_percent_decode(sx_wr *w, const char *s, size_t n);
/* Appends s percent-encoded as the reference encodes query values. */
void sx_percent_encode(sx_wr *w, const char *s, size_t n);

/* ---- additions: the reference's exact rules ----
 *
 * sx_b64url_decode follows the reference's decoder (base64-bytestring's
 * URL decode): '=' padding optional (a length % 4 of 2 or 3 is completed
 * with '='; % 4 == 1 and % 4 == 3 ending in '=' are refused), '=' only at
 * the end, non-zero unused bits in the last character refused; the empty
 * text decodes to nothing. The reference's link parser additionally needs
 * at least one alphabet character: a 0 from sx_b64url_span is no token.
 * sx_b64url_span takes, like the reference's tokeniser, letters and
 * digits in the Latin-1 sense (so bytes such as 0xe9 too, which the
 * decoder then refuses), '-' and '_', then any run of '='.
 *
 * sx_vrange_str_decode reads numbers as sx_u16_str_decode does; "0" and
 * "4-4" are accepted (only min <= max is checked).
 *
 * sx_query_parse skips one leading '?', splits on '&' and ';', keeps an
 * empty pair between two separators but adds none for a final separator.
 * sx_query_find compares the percent-decoded key.
 *
 * sx_percent_decode decodes as the reference's query parser does: '+' is
 * a space, "%XY" (hex, either case) a byte, and a '%' without two hex
 * digits after it stays as it is: it never returns SIMPLEX_ERR_PARSE,
 * only the writer's error. sx_percent_encode keeps A-Z a-z 0-9 - _ . ~
 * and writes every other byte as %XY with upper-case hex digits.
 */

/* A decimal Word16 as the reference reads it: one or more ASCII digits
 * (leading zeros allowed), exactly n characters. The reference wraps
 * values over 65535 modulo 65536; no one emits them, so they are refused
 * here as malformed (SIMPLEX_ERR_PARSE) rather than silently wrapped. */
int sx_u16_str_decode(uint16_t *out, const char *s, size_t n);

/* Appends one key=value pair of a query rendered as the reference renders
 * it: '&' before it unless first, then the percent-encoded key, '=' and
 * the percent-encoded value (the '=' is written even for an empty value). */
void sx_query_append(sx_wr *w, int first, const char *key, const char *val,
                     size_t val_len);

#endif /* SX_TEXT_H */
