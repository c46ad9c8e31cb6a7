/*
 * Fuzzes the text decoders with the whole input: base64url (a decoded
 * value must encode back to the input, padded), the version-range text,
 * the query-string splitter and the percent-decoder of every value.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/bytes.h"
#include "common/text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x)                                                               \
    do {                                                                       \
        if (!(x))                                                              \
            abort();                                                           \
    } while (0)

static void fuzz_b64(const char *s, size_t n)
{
    sx_wr dec, enc;
    size_t span = sx_b64url_span(s, n);
    int rc;

    CHECK(span <= n);
    sx_wr_init(&dec);
    sx_wr_init(&enc);
    rc = sx_b64url_decode(&dec, s, n);
    CHECK(rc == 0 || rc == SIMPLEX_ERR_PARSE);
    if (rc == 0) {
        /* canonical by construction: the encoding is the input, padded */
        size_t pad = (4 - n % 4) % 4;
        CHECK(sx_wr_error(&dec) == 0);
        CHECK(n == 0 || span == n);
        sx_b64url_encode(&enc, dec.p, dec.len);
        CHECK(sx_wr_error(&enc) == 0);
        CHECK(enc.len == n + pad);
        CHECK(n == 0 || memcmp(enc.p, s, n) == 0);
        for (size_t i = n; i < enc.len; i++)
            CHECK(enc.p[i] == '=');
        CHECK(dec.len == enc.len / 4 * 3 -
                             (enc.len && enc.p[enc.len - 1] == '=') -
                             (enc.len > 1 && enc.p[enc.len - 2] == '='));
    } else {
        CHECK(dec.len == 0);
    }
    /* the token prefix alone, as a link parser would take it */
    if (span > 0 && span < n) {
        sx_wr_reset(&dec);
        rc = sx_b64url_decode(&dec, s, span);
        CHECK(rc == 0 || rc == SIMPLEX_ERR_PARSE);
    }
    sx_wr_free(&dec);
    sx_wr_free(&enc);
}

static void fuzz_vrange(const char *s, size_t n)
{
    sx_vrange v = {0, 0}, v2;
    sx_wr w;
    int rc = sx_vrange_str_decode(&v, s, n);
    CHECK(rc == 0 || rc == SIMPLEX_ERR_PARSE);
    if (rc != 0)
        return;
    CHECK(v.min <= v.max);
    sx_wr_init(&w);
    sx_vrange_str_encode(&w, v);
    CHECK(sx_wr_error(&w) == 0);
    CHECK(sx_vrange_str_decode(&v2, (const char *)w.p, w.len) == 0);
    CHECK(v2.min == v.min && v2.max == v.max);
    /* the canonical text is never longer (leading zeros, wrapped numbers
     * and "n-n" only shorten it) */
    CHECK(w.len <= n);
    sx_wr_free(&w);
}

static void fuzz_query(const char *s, size_t n)
{
    sx_query_param ps[32];
    size_t count = 0;
    int rc = sx_query_parse(ps, 32, &count, s, n);
    sx_wr a, b, c;

    CHECK(rc == 0 || rc == SIMPLEX_ERR_TOO_LARGE);
    if (rc != 0)
        return;
    CHECK(count <= 32);
    sx_wr_init(&a);
    sx_wr_init(&b);
    sx_wr_init(&c);
    for (size_t i = 0; i < count; i++) {
        const sx_query_param *p = &ps[i];
        CHECK(p->key >= s && p->key + p->key_len <= s + n);
        CHECK(p->val >= s && p->val + p->val_len <= s + n);
        CHECK(memchr(p->key, '&', p->key_len) == NULL);
        CHECK(memchr(p->key, '=', p->key_len) == NULL);
        CHECK(memchr(p->val, '&', p->val_len) == NULL);
        CHECK(memchr(p->val, ';', p->val_len) == NULL);
        sx_wr_reset(&a);
        sx_wr_reset(&b);
        sx_wr_reset(&c);
        /* decode never fails on its input; encode-decode is the identity */
        CHECK(sx_percent_decode(&a, p->val, p->val_len) == 0);
        CHECK(a.len <= p->val_len);
        sx_percent_encode(&b, (const char *)a.p, a.len);
        CHECK(sx_wr_error(&b) == 0);
        CHECK(sx_percent_decode(&c, (const char *)b.p, b.len) == 0);
        CHECK(c.len == a.len && (a.len == 0 || memcmp(a.p, c.p, a.len) == 0));
        /* a param is found by its decoded key unless an earlier one has
         * the same decoded key */
        sx_wr_reset(&a);
        CHECK(sx_percent_decode(&a, p->key, p->key_len) == 0);
        if (memchr(a.p ? (const void *)a.p : "", 0, a.len) == NULL) {
            const sx_query_param *f;
            sx_wr_u8(&a, 0);
            f = sx_query_find(ps, count, (const char *)a.p);
            CHECK(f != NULL && f <= p);
        }
    }
    sx_wr_free(&a);
    sx_wr_free(&b);
    sx_wr_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    fuzz_b64(s, size);
    fuzz_vrange(s, size);
    fuzz_query(s, size);
    /* every value percent-decodes, even outside a query */
    {
        sx_wr w;
        sx_wr_init(&w);
        CHECK(sx_percent_decode(&w, s, size) == 0);
        sx_wr_free(&w);
    }
    return 0;
}
