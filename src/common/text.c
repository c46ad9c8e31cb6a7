/*
 * Text encodings used in links and addresses: base64url, version ranges,
 * query strings and percent-encoding, following what simplexmq 6.5.5.0
 * (with base64-bytestring 1.2 and http-types 0.12) emits and accepts.
 * See text.h for the rules.
 */
#include <string.h>

#include "common/text.h"

/* ---- base64url ---- */

static const char b64u_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

#define B64_BAD 0xffu
#define B64_PAD 0xfeu

/* Each alphabet character maps to its value + 1, so that the zero the
 * other entries get means "not in the alphabet"; '=' maps to 0xff. */
static const uint8_t b64u_value[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6,
    ['G'] = 7, ['H'] = 8, ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12,
    ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18,
    ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30,
    ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36,
    ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
    ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54,
    ['2'] = 55, ['3'] = 56, ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60,
    ['8'] = 61, ['9'] = 62, ['-'] = 63, ['_'] = 64,
    ['='] = 0xff,
};

/* 0..63 for the alphabet, B64_PAD for '=', B64_BAD for anything else */
static inline unsigned b64u_val(unsigned char c)
{
    unsigned v = b64u_value[c];
    if (v == 0)
        return B64_BAD;
    if (v == 0xff)
        return B64_PAD;
    return v - 1;
}

size_t sx_b64url_encoded_len(size_t n)
{
    size_t q = n / 3, r = n % 3;
    if (q > (SIZE_MAX - 4) / 4)
        return SIZE_MAX; /* cannot exist; the writer then fails with NOMEM */
    return q * 4 + (r ? 4 : 0);
}

void sx_b64url_encode(sx_wr *w, const uint8_t *p, size_t n)
{
    size_t olen = sx_b64url_encoded_len(n), i = 0;
    uint8_t *o;

    if (n == 0)
        return;
    o = sx_wr_reserve(w, olen);
    if (!o)
        return;
    for (; n - i >= 3; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) |
                     p[i + 2];
        o[0] = (uint8_t)b64u_alphabet[v >> 18];
        o[1] = (uint8_t)b64u_alphabet[(v >> 12) & 63];
        o[2] = (uint8_t)b64u_alphabet[(v >> 6) & 63];
        o[3] = (uint8_t)b64u_alphabet[v & 63];
        o += 4;
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        o[0] = (uint8_t)b64u_alphabet[v >> 18];
        o[1] = (uint8_t)b64u_alphabet[(v >> 12) & 63];
        o[2] = '=';
        o[3] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        o[0] = (uint8_t)b64u_alphabet[v >> 18];
        o[1] = (uint8_t)b64u_alphabet[(v >> 12) & 63];
        o[2] = (uint8_t)b64u_alphabet[(v >> 6) & 63];
        o[3] = '=';
    }
}

/*
 * The reference decodes with base64-bytestring's URL `decode`, i.e.
 * decodeWithTable Don'tCare:
 *   - empty input decodes to nothing;
 *   - length % 4 == 1 is rejected;
 *   - length % 4 == 2 or 3 is completed with '=' (but % 4 == 3 ending
 *     in '=' is rejected), % 4 == 0 is taken as is;
 *   - '=' may appear only as the last one or two characters of the
 *     (completed) input, "x=" followed by a non-'=' is rejected;
 *   - the unused low bits of the last character must be zero
 *     (non-canonical encodings are rejected).
 */
int sx_b64url_decode(sx_wr *w, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t r, full, tail, olen, start, i;
    unsigned a, b, c, d;
    uint8_t *o;

    if (w->err)
        return w->err;
    if (n == 0)
        return 0;
    r = n % 4;
    if (r == 1)
        return SIMPLEX_ERR_PARSE;
    if (r == 3 && u[n - 1] == '=')
        return SIMPLEX_ERR_PARSE;

    /* the last (completed) quantum: a b c d */
    if (r == 0) {
        full = n / 4 - 1;
        a = b64u_val(u[n - 4]);
        b = b64u_val(u[n - 3]);
        c = b64u_val(u[n - 2]);
        d = b64u_val(u[n - 1]);
    } else {
        full = n / 4;
        a = b64u_val(u[full * 4]);
        b = b64u_val(u[full * 4 + 1]);
        c = r == 3 ? b64u_val(u[full * 4 + 2]) : B64_PAD;
        d = B64_PAD;
    }
    if (a >= 64 || b >= 64)
        return SIMPLEX_ERR_PARSE;
    if (c == B64_BAD || d == B64_BAD)
        return SIMPLEX_ERR_PARSE;
    if (c == B64_PAD) {
        if (d != B64_PAD || (b & 15) != 0)
            return SIMPLEX_ERR_PARSE;
        tail = 1;
    } else if (d == B64_PAD) {
        if ((c & 3) != 0)
            return SIMPLEX_ERR_PARSE;
        tail = 2;
    } else {
        tail = 3;
    }
    olen = full * 3 + tail; /* full <= n / 4: no overflow */

    start = w->len;
    o = sx_wr_reserve(w, olen);
    if (!o)
        return w->err;
    for (i = 0; i < full; i++) {
        const unsigned char *q = u + i * 4;
        unsigned v0 = b64u_val(q[0]), v1 = b64u_val(q[1]),
                 v2 = b64u_val(q[2]), v3 = b64u_val(q[3]);
        if ((v0 | v1 | v2 | v3) >= 64) {
            /* '=' inside the text or a character outside the alphabet */
            sx_memzero(w->p + start, olen);
            w->len = start;
            return SIMPLEX_ERR_PARSE;
        }
        {
            uint32_t v = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3;
            o[0] = (uint8_t)(v >> 16);
            o[1] = (uint8_t)(v >> 8);
            o[2] = (uint8_t)v;
        }
        o += 3;
    }
    {
        uint32_t v = (a << 18) | (b << 12) | ((tail > 1 ? c : 0) << 6) |
                     (tail > 2 ? d : 0);
        o[0] = (uint8_t)(v >> 16);
        if (tail > 1)
            o[1] = (uint8_t)(v >> 8);
        if (tail > 2)
            o[2] = (uint8_t)v;
    }
    return 0;
}

/*
 * The reference tokenises with takeWhile1 (isAlphaNum || '-' || '_')
 * followed by takeWhile (== '='), over bytes read as Latin-1 characters,
 * so isAlphaNum also takes the Latin-1 letters and numbers (which the
 * decoder then rejects). Byte c is in when bit c % 32 of word c / 32 is set.
 */
static const uint32_t b64u_token_bits[8] = {
    0x00000000u,                /* 0x00-0x1f */
    0x03ff2000u,                /* 0x20-0x3f: '-', '0'-'9' */
    0x87fffffeu,                /* 0x40-0x5f: 'A'-'Z', '_' */
    0x07fffffeu,                /* 0x60-0x7f: 'a'-'z' */
    0x00000000u,                /* 0x80-0x9f */
    0x762c0400u,                /* 0xa0-0xbf: aa b2 b3 b5 b9 ba bc bd be */
    0xff7fffffu,                /* 0xc0-0xdf: all but d7 */
    0xff7fffffu,                /* 0xe0-0xff: all but f7 */
};

static inline int b64u_token_char(unsigned char c)
{
    return (int)((b64u_token_bits[c >> 5] >> (c & 31)) & 1u);
}

size_t sx_b64url_span(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && b64u_token_char(u[i]))
        i++;
    if (i == 0)
        return 0;
    while (i < n && u[i] == '=')
        i++;
    return i;
}

/* ---- decimal numbers and version ranges ---- */

int sx_u16_str_decode(uint16_t *out, const char *s, size_t n)
{
    uint32_t v = 0;
    size_t i;
    if (n == 0)
        return SIMPLEX_ERR_PARSE;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < '0' || c > '9')
            return SIMPLEX_ERR_PARSE;
        /* The reference wraps modulo 2^16; a number that does not fit is
         * never emitted by anyone, so it is refused instead of wrapped. */
        v = v * 10u + (unsigned)(c - '0');
        if (v > 0xffffu)
            return SIMPLEX_ERR_PARSE;
    }
    *out = (uint16_t)v;
    return 0;
}

/* writes v in decimal ending just before end; returns the start */
static char *u16_dec(char *end, uint16_t v)
{
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

void sx_vrange_str_encode(sx_wr *w, sx_vrange v)
{
    char buf[11]; /* "65535-65535" */
    char *end = buf + sizeof buf, *p = end;
    if (v.min != v.max) {
        p = u16_dec(p, v.max);
        *--p = '-';
    }
    p = u16_dec(p, v.min);
    sx_wr_raw(w, p, (size_t)(end - p));
}

int sx_vrange_str_decode(sx_vrange *out, const char *s, size_t n)
{
    size_t i = 0;
    uint16_t lo, hi;
    int rc;

    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    rc = sx_u16_str_decode(&lo, s, i);
    if (rc)
        return rc;
    if (i == n) {
        hi = lo;
    } else {
        if (s[i] != '-')
            return SIMPLEX_ERR_PARSE;
        rc = sx_u16_str_decode(&hi, s + i + 1, n - i - 1);
        if (rc)
            return rc;
    }
    if (lo > hi)
        return SIMPLEX_ERR_PARSE;
    out->min = lo;
    out->max = hi;
    return 0;
}

void sx_vrange_encode(sx_wr *w, sx_vrange v)
{
    uint8_t *o = sx_wr_reserve(w, 4);
    if (!o)
        return;
    o[0] = (uint8_t)(v.min >> 8);
    o[1] = (uint8_t)v.min;
    o[2] = (uint8_t)(v.max >> 8);
    o[3] = (uint8_t)v.max;
}

int sx_vrange_decode(sx_rd *r, sx_vrange *out)
{
    const uint8_t *q;
    uint16_t lo, hi;
    if (sx_rd_left(r) < 4)
        return SIMPLEX_ERR_TRUNCATED;
    q = r->p + r->pos;
    lo = (uint16_t)((q[0] << 8) | q[1]);
    hi = (uint16_t)((q[2] << 8) | q[3]);
    if (lo > hi)
        return SIMPLEX_ERR_PARSE;
    r->pos += 4;
    out->min = lo;
    out->max = hi;
    return 0;
}

/* ---- query strings ---- */

/*
 * http-types parseSimpleQuery: one leading '?' is dropped; pairs are
 * separated by '&' or ';'; a separator at the very end adds no pair, but
 * an empty pair between two separators (or at the start) is kept; the key
 * runs to the first '=' and the value is the rest ("" without '=').
 */
int sx_query_parse(sx_query_param *out, size_t cap, size_t *count,
                   const char *s, size_t n)
{
    size_t pos = 0, k = 0;

    if (n > 0 && s[0] == '?')
        pos = 1;
    while (pos < n) {
        size_t e = pos, eq;
        while (e < n && s[e] != '&' && s[e] != ';')
            e++;
        if (k == cap)
            return SIMPLEX_ERR_TOO_LARGE;
        eq = pos;
        while (eq < e && s[eq] != '=')
            eq++;
        out[k].key = s + pos;
        out[k].key_len = eq - pos;
        if (eq < e) {
            out[k].val = s + eq + 1;
            out[k].val_len = e - eq - 1;
        } else {
            out[k].val = s + e;
            out[k].val_len = 0;
        }
        k++;
        pos = e + 1;
    }
    *count = k;
    return 0;
}

static inline int hex_val(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * One step of http-types urlDecode True: '+' is a space, "%XY" with two
 * hex digits is that byte, anything else (including a '%' not followed
 * by two hex digits) stands for itself. Returns the decoded byte and
 * advances *i.
 */
static inline uint8_t url_decode_step(const unsigned char *u, size_t n,
                                      size_t *i)
{
    unsigned char c = u[*i];
    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c == '%' && n - *i >= 3) {
        int h = hex_val(u[*i + 1]), l = hex_val(u[*i + 2]);
        if (h >= 0 && l >= 0) {
            *i += 3;
            return (uint8_t)((h << 4) | l);
        }
    }
    (*i)++;
    return c;
}

static int key_equals(const char *raw, size_t n, const char *key)
{
    const unsigned char *u = (const unsigned char *)raw;
    const unsigned char *k = (const unsigned char *)key;
    size_t i = 0;
    while (i < n) {
        if (*k == '\0' || url_decode_step(u, n, &i) != *k)
            return 0;
        k++;
    }
    return *k == '\0';
}

const sx_query_param *sx_query_find(const sx_query_param *ps, size_t count,
                                    const char *key)
{
    for (size_t i = 0; i < count; i++)
        if (key_equals(ps[i].key, ps[i].key_len, key))
            return &ps[i];
    return NULL;
}

int sx_percent_decode(sx_wr *w, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, olen = 0;
    uint8_t *o;

    if (w->err)
        return w->err;
    /* exact size first, so that a fixed buffer of the right size works */
    while (i < n) {
        (void)url_decode_step(u, n, &i);
        olen++;
    }
    if (olen == 0)
        return 0;
    o = sx_wr_reserve(w, olen);
    if (!o)
        return w->err;
    i = 0;
    while (i < n)
        *o++ = url_decode_step(u, n, &i);
    return 0;
}

/* http-types urlEncode True: A-Z a-z 0-9 - _ . ~ as is, the rest %XY
 * with upper-case hex digits. */
static inline int url_unreserved(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
           c == '~';
}

void sx_percent_encode(sx_wr *w, const char *s, size_t n)
{
    static const char hex[16] = "0123456789ABCDEF";
    const unsigned char *u = (const unsigned char *)s;
    size_t olen = 0, i;
    uint8_t *o;

    if (w->err || n == 0)
        return;
    if (n > SIZE_MAX / 3) {
        /* the output could not even be counted: more than memory holds */
        (void)sx_wr_reserve(w, SIZE_MAX);
        return;
    }
    for (i = 0; i < n; i++)
        olen += url_unreserved(u[i]) ? 1 : 3;
    o = sx_wr_reserve(w, olen);
    if (!o)
        return;
    for (i = 0; i < n; i++) {
        unsigned char c = u[i];
        if (url_unreserved(c)) {
            *o++ = c;
        } else {
            o[0] = '%';
            o[1] = (uint8_t)hex[c >> 4];
            o[2] = (uint8_t)hex[c & 15];
            o += 3;
        }
    }
}

void sx_query_append(sx_wr *w, int first, const char *key,
                     const char *val, size_t val_len)
{
    if (!first)
        sx_wr_u8(w, '&');
    sx_percent_encode(w, key, strlen(key));
    sx_wr_u8(w, '=');
    sx_percent_encode(w, val, val_len);
}
