/*
 * The binary encoding (bytes.h) and the text encodings (text.h):
 * the reference's vectors, negative cases and random round trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/bytes.h"
#include "common/text.h"
#include "simplex/simplex.h"
#include "vectors.h"

/* ---- helpers ---- */

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* An exact-size heap copy, so that ASan catches any over-read. */
static uint8_t *dup_bytes(const void *p, size_t n)
{
    uint8_t *q = malloc(n ? n : 1);
    assert_non_null(q);
    if (n)
        memcpy(q, p, n);
    return q;
}

static void assert_wr_equal(const sx_wr *w, const uint8_t *want, size_t n)
{
    assert_int_equal(sx_wr_error(w), 0);
    assert_int_equal(w->len, n);
    if (n)
        assert_memory_equal(w->p, want, n);
}

/* xorshift64*: deterministic pseudo-random numbers for property tests */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}
static size_t rnd_below(size_t n)
{
    return n ? (size_t)(rnd() % n) : 0;
}
static void rnd_fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)rnd();
}

/* ==== reference vectors ==== */

/*
 * Each binary vector is checked by a pair: enc writes the described value,
 * dec reads one value and, when check is set, compares it with the
 * described value. The driver compares enc's bytes with "encoded", decodes
 * them exactly, and decodes every proper prefix (must be TRUNCATED) and the
 * bytes plus one more (must leave exactly that byte).
 */
typedef void (*vec_enc)(const tv_block *b, sx_wr *w);
typedef int (*vec_dec)(const tv_block *b, sx_rd *r, int check);

static const char *vname(const tv_block *b)
{
    return b->name;
}

/* the bytes a named byte-string vector describes */
static uint8_t *vec_bytes(const tv_block *b, size_t *n)
{
    const char *nm = vname(b);
    uint8_t *p;
    if (tv_get(b, "value"))
        return tv_hex(b, "value", n);
    p = malloc(256);
    assert_non_null(p);
    if (strcmp(nm, "bytestring-empty") == 0 ||
        strcmp(nm, "large-empty") == 0) {
        *n = 0;
    } else if (strcmp(nm, "bytestring-hello") == 0) {
        memcpy(p, "hello", *n = 5);
    } else if (strcmp(nm, "bytestring-binary") == 0) {
        memcpy(p, "\x00\x01\xfe\xff", *n = 4);
    } else if (strcmp(nm, "bytestring-255") == 0) {
        for (size_t i = 0; i < 255; i++)
            p[i] = (uint8_t)i;
        *n = 255;
    } else if (strcmp(nm, "text-utf8") == 0) {
        memcpy(p, "h\xc3\xa9llo \xe2\x9c\x93", *n = 10);
    } else if (strcmp(nm, "string") == 0) {
        memcpy(p, "abc", *n = 3);
    } else if (strcmp(nm, "tail") == 0) {
        memcpy(p, "rest of input", *n = 13);
    } else if (strcmp(nm, "entityid-24") == 0) {
        for (size_t i = 0; i < 24; i++)
            p[i] = (uint8_t)(i + 1);
        *n = 24;
    } else {
        fail_msg("no value known for vector %s", nm);
    }
    return p;
}

static void check_bytes(const tv_block *b, const uint8_t *got, size_t n)
{
    size_t wn;
    uint8_t *want = vec_bytes(b, &wn);
    assert_int_equal(n, wn);
    if (n)
        assert_memory_equal(got, want, n);
    free(want);
}

/* value_str as a number: "258", "-1", "MkSystemTime (-1) 0" */
static long long vec_number(const tv_block *b)
{
    const char *s = tv_str(b, "value_str");
    char *end;
    long long v;
    while (*s && !(*s == '-' || (*s >= '0' && *s <= '9')))
        s++;
    v = strtoll(s, &end, 10);
    assert_true(end != s);
    return v;
}
static unsigned long long vec_unumber(const tv_block *b)
{
    const char *s = tv_str(b, "value_str");
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    assert_true(end != s && *end == '\0');
    return v;
}

/* "6-18" */
static sx_vrange vec_vrange(const char *s)
{
    unsigned lo, hi;
    sx_vrange v;
    assert_int_equal(sscanf(s, "%u-%u", &lo, &hi), 2);
    v.min = (uint16_t)lo;
    v.max = (uint16_t)hi;
    return v;
}

#define TRY(x)                                                                 \
    do {                                                                       \
        int rc_ = (x);                                                         \
        if (rc_)                                                               \
            return rc_;                                                        \
    } while (0)

/* char */
static void enc_char(const tv_block *b, sx_wr *w)
{
    const char *s = tv_str(b, "value_str");
    assert_true(s[0] == '\'' && s[2] == '\'' && s[3] == '\0');
    sx_wr_u8(w, (uint8_t)s[1]);
}
static int dec_char(const tv_block *b, sx_rd *r, int check)
{
    uint8_t c;
    TRY(sx_rd_u8(r, &c));
    if (check)
        assert_int_equal(c, (uint8_t)tv_str(b, "value_str")[1]);
    return 0;
}

/* bool */
static int vec_bool(const tv_block *b)
{
    const char *s = tv_str(b, "value_str");
    if (strcmp(s, "True") == 0)
        return 1;
    assert_string_equal(s, "False");
    return 0;
}
static void enc_bool(const tv_block *b, sx_wr *w)
{
    sx_wr_bool(w, vec_bool(b));
}
static int dec_bool(const tv_block *b, sx_rd *r, int check)
{
    int v;
    TRY(sx_rd_bool(r, &v));
    if (check)
        assert_int_equal(v, vec_bool(b));
    return 0;
}

/* Word16, Version */
static void enc_word16(const tv_block *b, sx_wr *w)
{
    unsigned long long v = vec_unumber(b);
    assert_true(v <= 65535);
    sx_wr_u16(w, (uint16_t)v);
}
static int dec_word16(const tv_block *b, sx_rd *r, int check)
{
    uint16_t v;
    TRY(sx_rd_u16(r, &v));
    if (check)
        assert_int_equal(v, vec_unumber(b));
    return 0;
}

/* Word32 */
static void enc_word32(const tv_block *b, sx_wr *w)
{
    unsigned long long v = vec_unumber(b);
    assert_true(v <= 0xffffffffull);
    sx_wr_u32(w, (uint32_t)v);
}
static int dec_word32(const tv_block *b, sx_rd *r, int check)
{
    uint32_t v;
    TRY(sx_rd_u32(r, &v));
    if (check)
        assert_int_equal(v, vec_unumber(b));
    return 0;
}

/* Int64 */
static void enc_int64(const tv_block *b, sx_wr *w)
{
    sx_wr_i64(w, (int64_t)vec_number(b));
}
static int dec_int64(const tv_block *b, sx_rd *r, int check)
{
    int64_t v;
    TRY(sx_rd_i64(r, &v));
    if (check)
        assert_true(v == (int64_t)vec_number(b));
    return 0;
}

/* SystemTime */
static void enc_time(const tv_block *b, sx_wr *w)
{
    sx_wr_time(w, (int64_t)vec_number(b));
}
static int dec_time(const tv_block *b, sx_rd *r, int check)
{
    int64_t v;
    TRY(sx_rd_time(r, &v));
    if (check)
        assert_true(v == (int64_t)vec_number(b));
    return 0;
}

/* ByteString, Text, String, EntityId */
static void enc_short(const tv_block *b, sx_wr *w)
{
    size_t n;
    uint8_t *p = vec_bytes(b, &n);
    sx_wr_short(w, p, n);
    free(p);
}
static int dec_short(const tv_block *b, sx_rd *r, int check)
{
    const uint8_t *p;
    size_t n;
    TRY(sx_rd_short(r, &p, &n));
    if (check)
        check_bytes(b, p, n);
    return 0;
}

/* EntityId: also through the fixed-length reader */
static int dec_entityid(const tv_block *b, sx_rd *r, int check)
{
    uint8_t id[24];
    TRY(sx_rd_short_fixed(r, id, sizeof id));
    if (check)
        check_bytes(b, id, sizeof id);
    return 0;
}

/* Large */
static void enc_large(const tv_block *b, sx_wr *w)
{
    size_t n;
    uint8_t *p = vec_bytes(b, &n);
    sx_wr_large(w, p, n);
    free(p);
}
static int dec_large(const tv_block *b, sx_rd *r, int check)
{
    const uint8_t *p;
    size_t n;
    TRY(sx_rd_large(r, &p, &n));
    if (check)
        check_bytes(b, p, n);
    return 0;
}

/* Tail */
static void enc_tail(const tv_block *b, sx_wr *w)
{
    size_t n;
    uint8_t *p = vec_bytes(b, &n);
    sx_wr_raw(w, p, n);
    free(p);
}
static int dec_tail(const tv_block *b, sx_rd *r, int check)
{
    const uint8_t *p;
    size_t n;
    sx_rd_tail(r, &p, &n);
    if (check)
        check_bytes(b, p, n);
    return 0;
}

/* Maybe ByteString: Nothing / Just "abc" */
static void enc_maybe_bs(const tv_block *b, sx_wr *w)
{
    const char *s = tv_str(b, "value_str");
    if (strcmp(s, "Nothing") == 0) {
        sx_wr_maybe(w, 0);
    } else {
        assert_string_equal(s, "Just \"abc\"");
        sx_wr_maybe(w, 1);
        sx_wr_short(w, "abc", 3);
    }
}
static int dec_maybe_bs(const tv_block *b, sx_rd *r, int check)
{
    int present;
    const uint8_t *p = NULL;
    size_t n = 0;
    TRY(sx_rd_maybe(r, &present));
    if (present)
        TRY(sx_rd_short(r, &p, &n));
    if (check) {
        if (strcmp(tv_str(b, "value_str"), "Nothing") == 0) {
            assert_false(present);
        } else {
            assert_true(present);
            assert_int_equal(n, 3);
            assert_memory_equal(p, "abc", 3);
        }
    }
    return 0;
}

/* Maybe Word16: Just 1 */
static void enc_maybe_w16(const tv_block *b, sx_wr *w)
{
    assert_string_equal(tv_str(b, "value_str"), "Just 1");
    sx_wr_maybe(w, 1);
    sx_wr_u16(w, 1);
}
static int dec_maybe_w16(const tv_block *b, sx_rd *r, int check)
{
    int present;
    uint16_t v = 0;
    (void)b;
    TRY(sx_rd_maybe(r, &present));
    if (present)
        TRY(sx_rd_u16(r, &v));
    if (check) {
        assert_true(present);
        assert_int_equal(v, 1);
    }
    return 0;
}

/* Maybe (Maybe Bool): Just Nothing */
static void enc_maybe_maybe(const tv_block *b, sx_wr *w)
{
    assert_string_equal(tv_str(b, "value_str"), "Just Nothing");
    sx_wr_maybe(w, 1);
    sx_wr_maybe(w, 0);
}
static int dec_maybe_maybe(const tv_block *b, sx_rd *r, int check)
{
    int outer, inner = -1, v = -1;
    (void)b;
    TRY(sx_rd_maybe(r, &outer));
    if (outer) {
        TRY(sx_rd_maybe(r, &inner));
        if (inner)
            TRY(sx_rd_bool(r, &v));
    }
    if (check) {
        assert_true(outer);
        assert_false(inner);
    }
    return 0;
}

/* NonEmpty ByteString: ["a", "bc"] */
static void enc_ne_bs(const tv_block *b, sx_wr *w)
{
    assert_string_equal(tv_str(b, "value_str"), "[\"a\", \"bc\"]");
    sx_wr_count(w, 2);
    sx_wr_short(w, "a", 1);
    sx_wr_short(w, "bc", 2);
}
static int dec_ne_bs(const tv_block *b, sx_rd *r, int check)
{
    size_t n;
    const uint8_t *p[2];
    size_t l[2];
    (void)b;
    TRY(sx_rd_count_nonempty(r, &n));
    if (n != 2)
        return SIMPLEX_ERR_PARSE;
    for (size_t i = 0; i < n; i++)
        TRY(sx_rd_short(r, &p[i], &l[i]));
    if (check) {
        assert_int_equal(l[0], 1);
        assert_memory_equal(p[0], "a", 1);
        assert_int_equal(l[1], 2);
        assert_memory_equal(p[1], "bc", 2);
    }
    return 0;
}

/* NonEmpty Word16 [1, 2, 3] and [Word16] [1, 2] */
static size_t vec_w16_list(const tv_block *b, uint16_t *out)
{
    const char *s = tv_str(b, "value_str");
    size_t n = 0;
    assert_true(*s == '[');
    s++;
    while (*s && *s != ']') {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        assert_true(end != s && v <= 65535 && n < 8);
        out[n++] = (uint16_t)v;
        s = end;
        while (*s == ',' || *s == ' ')
            s++;
    }
    return n;
}
static void enc_w16_list(const tv_block *b, sx_wr *w)
{
    uint16_t v[8];
    size_t n = vec_w16_list(b, v);
    sx_wr_count(w, n);
    for (size_t i = 0; i < n; i++)
        sx_wr_u16(w, v[i]);
}
static int dec_w16_list_(const tv_block *b, sx_rd *r, int check, int ne)
{
    uint16_t want[8], got[255];
    size_t n, wn = vec_w16_list(b, want);
    if (ne)
        TRY(sx_rd_count_nonempty(r, &n));
    else
        TRY(sx_rd_count(r, &n));
    for (size_t i = 0; i < n; i++)
        TRY(sx_rd_u16(r, &got[i]));
    if (check) {
        assert_int_equal(n, wn);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(got[i], want[i]);
    }
    return 0;
}
static int dec_w16_ne(const tv_block *b, sx_rd *r, int check)
{
    return dec_w16_list_(b, r, check, 1);
}
static int dec_w16_list(const tv_block *b, sx_rd *r, int check)
{
    return dec_w16_list_(b, r, check, 0);
}

/* (Word16, ByteString, Bool): (7, "xy", True) */
static void enc_tuple_wbb(const tv_block *b, sx_wr *w)
{
    assert_string_equal(tv_str(b, "value_str"), "(7, \"xy\", True)");
    sx_wr_u16(w, 7);
    sx_wr_short(w, "xy", 2);
    sx_wr_bool(w, 1);
}
static int dec_tuple_wbb(const tv_block *b, sx_rd *r, int check)
{
    uint16_t a;
    const uint8_t *p;
    size_t n;
    int t;
    (void)b;
    TRY(sx_rd_u16(r, &a));
    TRY(sx_rd_short(r, &p, &n));
    TRY(sx_rd_bool(r, &t));
    if (check) {
        assert_int_equal(a, 7);
        assert_int_equal(n, 2);
        assert_memory_equal(p, "xy", 2);
        assert_true(t);
    }
    return 0;
}

/* (Char, Int64): ('M', -5) */
static void enc_tuple_ci(const tv_block *b, sx_wr *w)
{
    assert_string_equal(tv_str(b, "value_str"), "('M', -5)");
    sx_wr_u8(w, 'M');
    sx_wr_i64(w, -5);
}
static int dec_tuple_ci(const tv_block *b, sx_rd *r, int check)
{
    int64_t v;
    (void)b;
    TRY(sx_rd_expect(r, 'M'));
    TRY(sx_rd_i64(r, &v));
    if (check)
        assert_true(v == -5);
    return 0;
}

/* (Char, Word16, Maybe ByteString, Bool, Word32): ('Q', 513, Just "", False, 1) */
static void enc_tuple5(const tv_block *b, sx_wr *w)
{
    assert_string_equal(tv_str(b, "value_str"),
                        "('Q', 513, Just \"\", False, 1)");
    sx_wr_u8(w, 'Q');
    sx_wr_u16(w, 513);
    sx_wr_maybe(w, 1);
    sx_wr_short(w, "", 0);
    sx_wr_bool(w, 0);
    sx_wr_u32(w, 1);
}
static int dec_tuple5(const tv_block *b, sx_rd *r, int check)
{
    uint8_t c;
    uint16_t a;
    int present, t;
    const uint8_t *p = NULL;
    size_t n = 99;
    uint32_t d;
    (void)b;
    TRY(sx_rd_u8(r, &c));
    TRY(sx_rd_u16(r, &a));
    TRY(sx_rd_maybe(r, &present));
    if (present)
        TRY(sx_rd_short(r, &p, &n));
    TRY(sx_rd_bool(r, &t));
    TRY(sx_rd_u32(r, &d));
    if (check) {
        assert_int_equal(c, 'Q');
        assert_int_equal(a, 513);
        assert_true(present);
        assert_int_equal(n, 0);
        assert_false(t);
        assert_int_equal(d, 1);
    }
    return 0;
}

/* VersionRange (binary) */
static void enc_vrange(const tv_block *b, sx_wr *w)
{
    sx_vrange_encode(w, vec_vrange(tv_str(b, "value_str")));
}
static int dec_vrange(const tv_block *b, sx_rd *r, int check)
{
    sx_vrange v, want;
    TRY(sx_vrange_decode(r, &v));
    if (check) {
        want = vec_vrange(tv_str(b, "value_str"));
        assert_int_equal(v.min, want.min);
        assert_int_equal(v.max, want.max);
    }
    return 0;
}

static void run_binary(const tv_block *b, vec_enc enc, vec_dec dec,
                       int is_tail)
{
    size_t n;
    uint8_t *want = tv_hex(b, "encoded", &n);
    sx_wr w;
    sx_rd r;
    uint8_t *buf;

    /* encode */
    sx_wr_init(&w);
    enc(b, &w);
    assert_wr_equal(&w, want, n);
    sx_wr_free(&w);

    /* decode exactly */
    buf = dup_bytes(want, n);
    sx_rd_init(&r, buf, n);
    assert_int_equal(dec(b, &r, 1), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    free(buf);

    /* every proper prefix is truncated (Tail takes any input) */
    for (size_t k = 0; k < n && !is_tail; k++) {
        buf = dup_bytes(want, k);
        sx_rd_init(&r, buf, k);
        assert_int_equal(dec(b, &r, 0), SIMPLEX_ERR_TRUNCATED);
        free(buf);
    }

    /* one byte more is left over */
    buf = malloc(n + 1);
    assert_non_null(buf);
    if (n)
        memcpy(buf, want, n);
    buf[n] = 0x5a;
    sx_rd_init(&r, buf, n + 1);
    if (is_tail) {
        const uint8_t *p;
        size_t tn;
        sx_rd_tail(&r, &p, &tn);
        assert_int_equal(tn, n + 1);
        assert_int_equal(sx_rd_end(&r), 0);
    } else {
        assert_int_equal(dec(b, &r, 1), 0);
        assert_int_equal(sx_rd_end(&r), SIMPLEX_ERR_TRAILING);
        assert_int_equal(sx_rd_left(&r), 1);
    }
    free(buf);
    free(want);
}

static void run_base64url(const tv_block *b)
{
    size_t n;
    uint8_t *val = tv_hex(b, "value", &n);
    const char *enc = tv_str(b, "encoded_str");
    size_t elen = strlen(enc);
    sx_wr w;

    sx_wr_init(&w);
    assert_int_equal(sx_b64url_encoded_len(n), elen);
    sx_b64url_encode(&w, val, n);
    assert_wr_equal(&w, (const uint8_t *)enc, elen);
    sx_wr_reset(&w);
    assert_int_equal(sx_b64url_decode(&w, enc, elen), 0);
    assert_wr_equal(&w, val, n);
    /* the unpadded form is accepted too */
    while (elen && enc[elen - 1] == '=')
        elen--;
    sx_wr_reset(&w);
    assert_int_equal(sx_b64url_decode(&w, enc, elen), 0);
    assert_wr_equal(&w, val, n);
    assert_int_equal(sx_b64url_span(enc, strlen(enc)), strlen(enc));
    sx_wr_free(&w);
    free(val);
}

static void run_vrange_str(const tv_block *b)
{
    sx_vrange v = vec_vrange(tv_str(b, "value_str")), got;
    const char *enc = tv_str(b, "encoded_str");
    sx_wr w;

    sx_wr_init(&w);
    sx_vrange_str_encode(&w, v);
    assert_wr_equal(&w, (const uint8_t *)enc, strlen(enc));
    sx_wr_free(&w);
    got.min = got.max = 0xeeee;
    assert_int_equal(sx_vrange_str_decode(&got, enc, strlen(enc)), 0);
    assert_int_equal(got.min, v.min);
    assert_int_equal(got.max, v.max);
}

static const struct {
    const char *prefix;
    vec_enc enc;
    vec_dec dec;
    int is_tail;
} binary_kinds[] = {
    {"char-", enc_char, dec_char, 0},
    {"bool-", enc_bool, dec_bool, 0},
    {"word16-", enc_word16, dec_word16, 0},
    {"word32-", enc_word32, dec_word32, 0},
    {"int64-", enc_int64, dec_int64, 0},
    {"bytestring-", enc_short, dec_short, 0},
    {"text-", enc_short, dec_short, 0},
    {"string", enc_short, dec_short, 0},
    {"maybe-bytestring-", enc_maybe_bs, dec_maybe_bs, 0},
    {"maybe-word16-", enc_maybe_w16, dec_maybe_w16, 0},
    {"maybe-maybe-", enc_maybe_maybe, dec_maybe_maybe, 0},
    {"nonempty-bytestring", enc_ne_bs, dec_ne_bs, 0},
    {"nonempty-word16", enc_w16_list, dec_w16_ne, 0},
    {"tuple-word16-bytestring-bool", enc_tuple_wbb, dec_tuple_wbb, 0},
    {"tuple-char-int64", enc_tuple_ci, dec_tuple_ci, 0},
    {"tuple-5", enc_tuple5, dec_tuple5, 0},
    {"large-", enc_large, dec_large, 0},
    {"tail", enc_tail, dec_tail, 1},
    {"systemtime-", enc_time, dec_time, 0},
    {"entityid-", enc_short, dec_short, 0},
    {"version-", enc_word16, dec_word16, 0},
    {"versionrange-smp", enc_vrange, dec_vrange, 0},
    {"list-word16", enc_w16_list, dec_w16_list, 0},
};

static void test_vectors(void **state)
{
    tv_file tf;
    size_t handled = 0, excluded = 0;
    (void)state;

    tv_load(&tf, "encoding.txt");
    assert_true(tf.n > 0);
    for (size_t i = 0; i < tf.n; i++) {
        const tv_block *b = &tf.b[i];
        const char *nm = b->name;
        int done = 0;

        if (starts_with(nm, "smpserver-") || starts_with(nm, "smpqueueuri-") ||
            starts_with(nm, "smpqueueinfo-")) {
            excluded++;
            continue;
        }
        if (starts_with(nm, "base64url-")) {
            run_base64url(b);
            done = 1;
        } else if (starts_with(nm, "versionrange-str-")) {
            run_vrange_str(b);
            done = 1;
        } else {
            for (size_t k = 0; k < SX_ARRAY_LEN(binary_kinds); k++) {
                if (starts_with(nm, binary_kinds[k].prefix)) {
                    run_binary(b, binary_kinds[k].enc, binary_kinds[k].dec,
                               binary_kinds[k].is_tail);
                    if (starts_with(nm, "entityid-"))
                        run_binary(b, enc_short, dec_entityid, 0);
                    done = 1;
                    break;
                }
            }
        }
        if (!done)
            fail_msg("vector %s is not handled", nm);
        handled++;
    }
    assert_int_equal(handled + excluded, tf.n);
    assert_int_equal(handled, tf.n - tv_count_prefix(&tf, "smpserver-") -
                                  tv_count_prefix(&tf, "smpqueueuri-") -
                                  tv_count_prefix(&tf, "smpqueueinfo-"));
    /* the file as known when this test was written: 65 blocks, 52 ours */
    assert_true(handled >= 52);
    tv_free(&tf);
}

/* ==== reader: negative cases ==== */

/* Each wrapper reads one value of a kind. */
typedef int (*rd_one)(sx_rd *r);

static int rd_u8_(sx_rd *r)
{
    uint8_t v;
    return sx_rd_u8(r, &v);
}
static int rd_u16_(sx_rd *r)
{
    uint16_t v;
    return sx_rd_u16(r, &v);
}
static int rd_u32_(sx_rd *r)
{
    uint32_t v;
    return sx_rd_u32(r, &v);
}
static int rd_i64_(sx_rd *r)
{
    int64_t v;
    return sx_rd_i64(r, &v);
}
static int rd_time_(sx_rd *r)
{
    int64_t v;
    return sx_rd_time(r, &v);
}
static int rd_bool_(sx_rd *r)
{
    int v;
    return sx_rd_bool(r, &v);
}
static int rd_expect_x_(sx_rd *r)
{
    return sx_rd_expect(r, 'x');
}
static int rd_raw5_(sx_rd *r)
{
    const uint8_t *p;
    return sx_rd_raw(r, 5, &p);
}
static int rd_copy5_(sx_rd *r)
{
    uint8_t b[5];
    return sx_rd_copy(r, b, 5);
}
static int rd_short_(sx_rd *r)
{
    const uint8_t *p;
    size_t n;
    return sx_rd_short(r, &p, &n);
}
static int rd_large_(sx_rd *r)
{
    const uint8_t *p;
    size_t n;
    return sx_rd_large(r, &p, &n);
}
static int rd_fixed4_(sx_rd *r)
{
    uint8_t b[4];
    return sx_rd_short_fixed(r, b, 4);
}
static int rd_maybe_(sx_rd *r)
{
    int v;
    return sx_rd_maybe(r, &v);
}
static int rd_count_(sx_rd *r)
{
    size_t n;
    return sx_rd_count(r, &n);
}
static int rd_count_ne_(sx_rd *r)
{
    size_t n;
    return sx_rd_count_nonempty(r, &n);
}
static int rd_vrange_(sx_rd *r)
{
    sx_vrange v;
    return sx_vrange_decode(r, &v);
}

/*
 * enc is one complete value for f. Checks, with one byte already read
 * before it: every proper prefix is TRUNCATED with the position unchanged,
 * the whole reads to the end, one more byte is left over.
 */
static void check_reader(rd_one f, const uint8_t *enc, size_t n)
{
    uint8_t *buf;
    sx_rd r;
    uint8_t first;

    for (size_t k = 0; k <= n + 1; k++) {
        size_t len = 1 + k;
        buf = malloc(len);
        assert_non_null(buf);
        buf[0] = 0xa5;
        memcpy(buf + 1, enc, k <= n ? k : n);
        if (k > n)
            buf[len - 1] = 0x7e;
        sx_rd_init(&r, buf, len);
        assert_int_equal(sx_rd_u8(&r, &first), 0);
        if (k < n) {
            assert_int_equal(f(&r), SIMPLEX_ERR_TRUNCATED);
            assert_int_equal(r.pos, 1);
            assert_int_equal(sx_rd_left(&r), k);
        } else if (k == n) {
            assert_int_equal(f(&r), 0);
            assert_int_equal(sx_rd_end(&r), 0);
            assert_int_equal(sx_rd_left(&r), 0);
        } else {
            assert_int_equal(f(&r), 0);
            assert_int_equal(sx_rd_end(&r), SIMPLEX_ERR_TRAILING);
            assert_int_equal(sx_rd_left(&r), 1);
        }
        free(buf);
    }
}

/* f must fail with err on enc (n bytes) and leave the position alone */
static void check_reader_err(rd_one f, const uint8_t *enc, size_t n, int err)
{
    uint8_t *buf = malloc(n + 1);
    sx_rd r;
    uint8_t first;
    assert_non_null(buf);
    buf[0] = 0xa5;
    memcpy(buf + 1, enc, n);
    sx_rd_init(&r, buf, n + 1);
    assert_int_equal(sx_rd_u8(&r, &first), 0);
    assert_int_equal(f(&r), err);
    assert_int_equal(r.pos, 1);
    free(buf);
}

static void test_reader_truncation(void **state)
{
    uint8_t big[300];
    (void)state;
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7);

    check_reader(rd_u8_, (const uint8_t *)"\xff", 1);
    check_reader(rd_u16_, (const uint8_t *)"\x01\x02", 2);
    check_reader(rd_u32_, (const uint8_t *)"\x01\x02\x03\x04", 4);
    check_reader(rd_i64_, (const uint8_t *)"\x80\0\0\0\0\0\0\x01", 8);
    check_reader(rd_time_, (const uint8_t *)"\0\0\0\0\x65\x53\xf1\0", 8);
    check_reader(rd_bool_, (const uint8_t *)"T", 1);
    check_reader(rd_bool_, (const uint8_t *)"F", 1);
    check_reader(rd_expect_x_, (const uint8_t *)"x", 1);
    check_reader(rd_raw5_, (const uint8_t *)"abcde", 5);
    check_reader(rd_copy5_, (const uint8_t *)"abcde", 5);
    check_reader(rd_short_, (const uint8_t *)"\0", 1);
    check_reader(rd_short_, (const uint8_t *)"\x03xyz", 4);
    check_reader(rd_fixed4_, (const uint8_t *)"\x04wxyz", 5);
    check_reader(rd_maybe_, (const uint8_t *)"0", 1);
    check_reader(rd_maybe_, (const uint8_t *)"1", 1);
    check_reader(rd_count_, (const uint8_t *)"\0", 1);
    check_reader(rd_count_, (const uint8_t *)"\xff", 1);
    check_reader(rd_count_ne_, (const uint8_t *)"\x01", 1);
    check_reader(rd_vrange_, (const uint8_t *)"\0\x01\0\x04", 4);
    check_reader(rd_vrange_, (const uint8_t *)"\0\x04\0\x04", 4);
    check_reader(rd_large_, (const uint8_t *)"\0\0", 2);
    {
        uint8_t enc[302];
        enc[0] = 0x01;
        enc[1] = 0x2c;
        memcpy(enc + 2, big, 300);
        check_reader(rd_large_, enc, sizeof enc);
    }
    {
        uint8_t enc[256];
        enc[0] = 255;
        memcpy(enc + 1, big, 255);
        check_reader(rd_short_, enc, sizeof enc);
    }
}

static void test_reader_bad_tags(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        uint8_t b = (uint8_t)c;
        if (c != 'T' && c != 'F')
            check_reader_err(rd_bool_, &b, 1, SIMPLEX_ERR_PARSE);
        if (c != '0' && c != '1')
            check_reader_err(rd_maybe_, &b, 1, SIMPLEX_ERR_PARSE);
        if (c != 'x')
            check_reader_err(rd_expect_x_, &b, 1, SIMPLEX_ERR_PARSE);
    }
    /* lower-case and numeric look-alikes */
    check_reader_err(rd_bool_, (const uint8_t *)"t", 1, SIMPLEX_ERR_PARSE);
    check_reader_err(rd_bool_, (const uint8_t *)"\x01", 1, SIMPLEX_ERR_PARSE);
    check_reader_err(rd_maybe_, (const uint8_t *)"\x01", 1,
                     SIMPLEX_ERR_PARSE);
    /* NonEmpty with count 0 */
    check_reader_err(rd_count_ne_, (const uint8_t *)"\0", 1,
                     SIMPLEX_ERR_PARSE);
    /* a plain list accepts 0 */
    check_reader(rd_count_, (const uint8_t *)"\0", 1);
    /* a fixed-length short string of the wrong length */
    check_reader_err(rd_fixed4_, (const uint8_t *)"\x03xyz", 4,
                     SIMPLEX_ERR_PARSE);
    check_reader_err(rd_fixed4_, (const uint8_t *)"\x05vwxyz", 6,
                     SIMPLEX_ERR_PARSE);
    check_reader_err(rd_fixed4_, (const uint8_t *)"\0", 1, SIMPLEX_ERR_PARSE);
    /* a version range with min > max */
    check_reader_err(rd_vrange_, (const uint8_t *)"\0\x05\0\x03", 4,
                     SIMPLEX_ERR_PARSE);
    check_reader_err(rd_vrange_, (const uint8_t *)"\xff\xff\0\0", 4,
                     SIMPLEX_ERR_PARSE);
}

static void test_reader_misc(void **state)
{
    sx_rd r;
    const uint8_t *p;
    size_t n;
    uint8_t b[8];
    int64_t v;
    uint16_t u16;
    uint32_t u32;
    (void)state;

    /* empty and NULL inputs */
    sx_rd_init(&r, NULL, 0);
    assert_int_equal(sx_rd_left(&r), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    assert_int_equal(sx_rd_u8(&r, b), SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(sx_rd_raw(&r, 0, &p), 0);
    assert_int_equal(sx_rd_copy(&r, b, 0), 0);
    sx_rd_tail(&r, &p, &n);
    assert_int_equal(n, 0);
    assert_non_null(p);

    /* big-endian values */
    sx_rd_init(&r, "\x12\x34\x89\xab\xcd\xef\xff\xff\xff\xff\xff\xff\xff"
                   "\xfe",
               14);
    assert_int_equal(sx_rd_u16(&r, &u16), 0);
    assert_int_equal(u16, 0x1234);
    assert_int_equal(sx_rd_u32(&r, &u32), 0);
    assert_int_equal(u32, 0x89abcdefu);
    assert_int_equal(sx_rd_i64(&r, &v), 0);
    assert_true(v == -2);
    assert_int_equal(sx_rd_end(&r), 0);

    /* sizes that would overflow pos + n */
    sx_rd_init(&r, "abc", 3);
    assert_int_equal(sx_rd_u8(&r, b), 0);
    assert_int_equal(sx_rd_raw(&r, SIZE_MAX, &p), SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(sx_rd_raw(&r, SIZE_MAX - 1, &p), SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(sx_rd_copy(&r, b, SIZE_MAX), SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(r.pos, 1);
    assert_int_equal(sx_rd_raw(&r, 2, &p), 0);
    assert_memory_equal(p, "bc", 2);

    /* a short string's length byte is read, but not consumed, on error */
    sx_rd_init(&r, "\x05" "abcd", 5);
    assert_int_equal(sx_rd_short(&r, &p, &n), SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(r.pos, 0);
    /* views point into the input */
    sx_rd_init(&r, "\x02xy", 3);
    assert_int_equal(sx_rd_short(&r, &p, &n), 0);
    assert_ptr_equal(p, (const uint8_t *)r.p + 1);

    /* tail after some reads, and sx_rd_end after it */
    sx_rd_init(&r, "Zrest", 5);
    assert_int_equal(sx_rd_expect(&r, 'Z'), 0);
    assert_int_equal(sx_rd_end(&r), SIMPLEX_ERR_TRAILING);
    sx_rd_tail(&r, &p, &n);
    assert_int_equal(n, 4);
    assert_memory_equal(p, "rest", 4);
    assert_int_equal(sx_rd_end(&r), 0);
    sx_rd_tail(&r, &p, &n);
    assert_int_equal(n, 0);

    /* a short string of 255 bytes reads back; its length byte is 0xff */
    {
        uint8_t enc[256];
        enc[0] = 0xff;
        memset(enc + 1, 'q', 255);
        sx_rd_init(&r, enc, sizeof enc);
        assert_int_equal(sx_rd_short(&r, &p, &n), 0);
        assert_int_equal(n, 255);
        assert_int_equal(sx_rd_end(&r), 0);
    }
    /* a Large of 65535 bytes reads back */
    {
        uint8_t *enc = malloc(65537);
        assert_non_null(enc);
        enc[0] = 0xff;
        enc[1] = 0xff;
        memset(enc + 2, 'L', 65535);
        sx_rd_init(&r, enc, 65537);
        assert_int_equal(sx_rd_large(&r, &p, &n), 0);
        assert_int_equal(n, 65535);
        assert_int_equal(sx_rd_end(&r), 0);
        sx_rd_init(&r, enc, 65536);
        assert_int_equal(sx_rd_large(&r, &p, &n), SIMPLEX_ERR_TRUNCATED);
        assert_int_equal(r.pos, 0);
        free(enc);
    }
}

/* ==== writer ==== */

static void test_writer_basic(void **state)
{
    sx_wr w;
    uint8_t *out;
    size_t n;
    (void)state;

    sx_wr_init(&w);
    sx_wr_u8(&w, 'A');
    sx_wr_u16(&w, 0x0102);
    sx_wr_u32(&w, 0x03040506);
    sx_wr_i64(&w, INT64_MIN);
    sx_wr_time(&w, -1);
    sx_wr_bool(&w, 1);
    sx_wr_bool(&w, 0);
    sx_wr_bool(&w, 42); /* any non-zero is True */
    sx_wr_maybe(&w, 0);
    sx_wr_maybe(&w, 7);
    sx_wr_str(&w, "hi");
    sx_wr_raw(&w, NULL, 0);
    sx_wr_short(&w, "ab", 2);
    sx_wr_short(&w, NULL, 0);
    sx_wr_large(&w, "c", 1);
    sx_wr_count(&w, 3);
    {
        static const uint8_t want[] = {
            'A', 1, 2, 3, 4, 5, 6, 0x80, 0, 0, 0, 0, 0, 0, 0,
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            'T', 'F', 'T', '0', '1', 'h', 'i', 2, 'a', 'b', 0,
            0, 1, 'c', 3};
        assert_wr_equal(&w, want, sizeof want);
    }
    /* reserve hands out room in place */
    {
        uint8_t *q = sx_wr_reserve(&w, 3);
        assert_non_null(q);
        memcpy(q, "xyz", 3);
        assert_memory_equal(w.p + w.len - 3, "xyz", 3);
    }
    assert_int_equal(sx_wr_take(&w, &out, &n), 0);
    assert_int_equal(n, 41);
    assert_memory_equal(out + 38, "xyz", 3);
    sx_free_secret(out, n);
    /* after take the writer is empty and usable */
    assert_null(w.p);
    assert_int_equal(w.len, 0);
    sx_wr_u8(&w, 9);
    assert_int_equal(w.len, 1);
    sx_wr_reset(&w);
    assert_int_equal(w.len, 0);
    assert_int_equal(sx_wr_error(&w), 0);
    sx_wr_free(&w);
    sx_wr_free(&w); /* twice is harmless */
    sx_wr_free(NULL);

    /* take of nothing gives a freeable pointer */
    sx_wr_init(&w);
    assert_int_equal(sx_wr_take(&w, &out, &n), 0);
    assert_non_null(out);
    assert_int_equal(n, 0);
    sx_free_secret(out, n);
    /* reserve of 0 on a fresh writer is a valid pointer */
    assert_non_null(sx_wr_reserve(&w, 0));
    sx_wr_free(&w);
}

static void test_writer_limits(void **state)
{
    static uint8_t big[65536];
    sx_wr w;
    (void)state;

    /* short string: 255 ok, 256 refused */
    sx_wr_init(&w);
    sx_wr_short(&w, big, 255);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_int_equal(w.len, 256);
    assert_int_equal(w.p[0], 0xff);
    sx_wr_short(&w, big, 256);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(w.len, 256);
    sx_wr_free(&w);

    /* Large: 65535 ok, 65536 refused */
    sx_wr_init(&w);
    sx_wr_large(&w, big, 65535);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_int_equal(w.len, 65537);
    assert_int_equal(w.p[0], 0xff);
    assert_int_equal(w.p[1], 0xff);
    sx_wr_large(&w, big, 65536);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(w.len, 65537);
    sx_wr_free(&w);

    /* count: 255 ok, 256 refused, SIZE_MAX refused */
    sx_wr_init(&w);
    sx_wr_count(&w, 255);
    assert_int_equal(sx_wr_error(&w), 0);
    sx_wr_count(&w, 256);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(w.len, 1);
    sx_wr_free(&w);
    sx_wr_init(&w);
    sx_wr_count(&w, SIZE_MAX);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_TOO_LARGE);
    sx_wr_free(&w);

    /* a size no allocator can give: NOMEM, not an overflow */
    sx_wr_init(&w);
    sx_wr_u8(&w, 1);
    assert_null(sx_wr_reserve(&w, SIZE_MAX));
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_NOMEM);
    assert_int_equal(w.len, 1);
    sx_wr_free(&w);
    sx_wr_init(&w);
    assert_null(sx_wr_reserve(&w, (size_t)PTRDIFF_MAX + 1));
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_NOMEM);
    sx_wr_free(&w);
}

/* each call writes `need` bytes */
typedef void (*wr_one)(sx_wr *w);
static void w_u8(sx_wr *w) { sx_wr_u8(w, 1); }
static void w_u16(sx_wr *w) { sx_wr_u16(w, 1); }
static void w_u32(sx_wr *w) { sx_wr_u32(w, 1); }
static void w_i64(sx_wr *w) { sx_wr_i64(w, -1); }
static void w_time(sx_wr *w) { sx_wr_time(w, 1); }
static void w_bool(sx_wr *w) { sx_wr_bool(w, 1); }
static void w_maybe(sx_wr *w) { sx_wr_maybe(w, 1); }
static void w_count(sx_wr *w) { sx_wr_count(w, 3); }
static void w_raw(sx_wr *w) { sx_wr_raw(w, "abcde", 5); }
static void w_str(sx_wr *w) { sx_wr_str(w, "abcdef"); }
static void w_short(sx_wr *w) { sx_wr_short(w, "abc", 3); }
static void w_large(sx_wr *w) { sx_wr_large(w, "abc", 3); }
static void w_vrange(sx_wr *w)
{
    sx_vrange v = {1, 4};
    sx_vrange_encode(w, v);
}
static void w_b64(sx_wr *w) { sx_b64url_encode(w, (const uint8_t *)"foo", 3); }
static void w_vrange_str(sx_wr *w)
{
    sx_vrange v = {1, 14};
    sx_vrange_str_encode(w, v);
}
static void w_pct(sx_wr *w) { sx_percent_encode(w, "a b", 3); }
static void w_pct_dec(sx_wr *w) { (void)sx_percent_decode(w, "a%20b", 5); }
static void w_b64_dec(sx_wr *w) { (void)sx_b64url_decode(w, "Zm9vYg", 6); }
static void w_reserve(sx_wr *w) { (void)sx_wr_reserve(w, 7); }

static void test_writer_fixed(void **state)
{
    static const struct {
        wr_one f;
        size_t need;
    } cases[] = {
        {w_u8, 1},     {w_u16, 2},       {w_u32, 4},   {w_i64, 8},
        {w_time, 8},   {w_bool, 1},      {w_maybe, 1}, {w_count, 1},
        {w_raw, 5},    {w_str, 6},       {w_short, 4}, {w_large, 5},
        {w_vrange, 4}, {w_b64, 4},       {w_vrange_str, 4},
        {w_pct, 5},    {w_pct_dec, 3},   {w_b64_dec, 4},
        {w_reserve, 7},
    };
    (void)state;

    for (size_t c = 0; c < SX_ARRAY_LEN(cases); c++) {
        for (size_t cap = 0; cap <= cases[c].need; cap++) {
            uint8_t buf[32];
            sx_wr w;
            memset(buf, 0xcc, sizeof buf);
            sx_wr_init_fixed(&w, buf, cap);
            cases[c].f(&w);
            if (cap < cases[c].need) {
                assert_int_equal(sx_wr_error(&w),
                                 SIMPLEX_ERR_BUFFER_TOO_SMALL);
                assert_int_equal(w.len, 0);
            } else {
                assert_int_equal(sx_wr_error(&w), 0);
                assert_int_equal(w.len, cases[c].need);
                /* the exact size fits: one byte more does not */
                w_u8(&w);
                assert_int_equal(sx_wr_error(&w),
                                 SIMPLEX_ERR_BUFFER_TOO_SMALL);
                assert_int_equal(w.len, cases[c].need);
            }
            /* nothing written past the capacity */
            for (size_t i = cap; i < sizeof buf; i++)
                assert_int_equal(buf[i], 0xcc);
            /* a fixed buffer is never freed nor taken */
            {
                uint8_t *out = NULL;
                size_t n;
                assert_true(sx_wr_take(&w, &out, &n) < 0);
                assert_null(out);
            }
            sx_wr_free(&w);
        }
    }
}

static void test_writer_sticky(void **state)
{
    uint8_t buf[4];
    sx_wr w;
    uint8_t *out = NULL;
    size_t n = 123;
    (void)state;

    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_wr_u16(&w, 0x4142);
    sx_wr_u32(&w, 1); /* does not fit */
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(w.len, 2);
    /* later writes, even ones that would fit, are ignored */
    sx_wr_u8(&w, 1);
    sx_wr_u16(&w, 1);
    sx_wr_short(&w, "", 0);
    sx_wr_count(&w, 1000); /* a different error does not replace it */
    sx_wr_short(&w, NULL, 300);
    assert_null(sx_wr_reserve(&w, 0));
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(w.len, 2);
    assert_memory_equal(buf, "AB", 2);
    /* the text functions report the sticky error and write nothing */
    assert_int_equal(sx_b64url_decode(&w, "Zg", 2),
                     SIMPLEX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(sx_percent_decode(&w, "a", 1),
                     SIMPLEX_ERR_BUFFER_TOO_SMALL);
    sx_b64url_encode(&w, (const uint8_t *)"a", 1);
    sx_percent_encode(&w, "a", 1);
    assert_int_equal(w.len, 2);
    /* reset starts over: empty and error-free, same buffer */
    sx_wr_reset(&w);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_int_equal(w.len, 0);
    sx_wr_u32(&w, 0x41424344);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_memory_equal(buf, "ABCD", 4);
    /* free leaves a fixed writer alone */
    sx_wr_free(&w);
    assert_ptr_equal(w.p, buf);
    assert_int_equal(w.len, 4);

    /* growable: TOO_LARGE is sticky, take refuses and moves nothing */
    sx_wr_init(&w);
    sx_wr_u8(&w, 1);
    sx_wr_count(&w, 256);
    sx_wr_u8(&w, 2);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(w.len, 1);
    assert_int_equal(sx_wr_take(&w, &out, &n), SIMPLEX_ERR_TOO_LARGE);
    assert_null(out);
    assert_int_equal(n, 123);
    assert_non_null(w.p);
    sx_wr_reset(&w);
    sx_wr_u8(&w, 3);
    assert_wr_equal(&w, (const uint8_t *)"\x03", 1);
    sx_wr_free(&w);
    assert_null(w.p);
    assert_int_equal(sx_wr_error(&w), 0);
}

/* ---- allocator-backed behaviour: growth, NOMEM, wiping ---- */

#define MAX_LIVE 64
static struct {
    void *p;
    size_t n;
} live[MAX_LIVE];
static size_t n_mallocs, fail_after = SIZE_MAX;
static int freed_dirty;

static void track(void *p, size_t n)
{
    for (size_t i = 0; i < MAX_LIVE; i++)
        if (!live[i].p) {
            live[i].p = p;
            live[i].n = n;
            return;
        }
    abort();
}
static void *t_malloc(size_t n, void *ud)
{
    void *p;
    (void)ud;
    if (n_mallocs >= fail_after)
        return NULL;
    n_mallocs++;
    p = malloc(n);
    if (p)
        track(p, n);
    return p;
}
static void *t_calloc(size_t m, size_t n, void *ud)
{
    void *p;
    (void)ud;
    if (n_mallocs >= fail_after)
        return NULL;
    n_mallocs++;
    p = calloc(m, n);
    if (p)
        track(p, m * n);
    return p;
}
static void *t_realloc(void *p, size_t n, void *ud)
{
    void *q;
    (void)ud;
    if (n_mallocs >= fail_after)
        return NULL;
    n_mallocs++;
    q = realloc(p, n);
    if (q) {
        for (size_t i = 0; i < MAX_LIVE; i++)
            if (p && live[i].p == p)
                live[i].p = NULL;
        track(q, n);
    }
    return q;
}
static void t_free(void *p, void *ud)
{
    (void)ud;
    if (!p)
        return;
    for (size_t i = 0; i < MAX_LIVE; i++)
        if (live[i].p == p) {
            const uint8_t *b = p;
            for (size_t k = 0; k < live[i].n; k++)
                if (b[k])
                    freed_dirty++;
            live[i].p = NULL;
        }
    free(p);
}

static int alloc_setup(void **state)
{
    static const simplex_allocator a = {t_malloc, t_calloc, t_realloc,
                                        t_free, NULL};
    simplex_global_options o;
    (void)state;
    memset(live, 0, sizeof live);
    n_mallocs = 0;
    fail_after = SIZE_MAX;
    freed_dirty = 0;
    simplex_global_options_init(&o, SIMPLEX_GLOBAL_OPTIONS_VERSION);
    o.allocator = &a;
    return simplex_global_init(&o) == SIMPLEX_OK ? 0 : -1;
}
static int alloc_teardown(void **state)
{
    (void)state;
    simplex_global_cleanup();
    for (size_t i = 0; i < MAX_LIVE; i++)
        if (live[i].p)
            return -1; /* a leak */
    return 0;
}

static void test_writer_alloc(void **state)
{
    sx_wr w;
    size_t before;
    (void)state;

    /* geometric growth: a megabyte byte by byte takes few allocations */
    sx_wr_init(&w);
    before = n_mallocs;
    for (size_t i = 0; i < (1u << 20); i++)
        sx_wr_u8(&w, (uint8_t)(i | 1));
    assert_int_equal(sx_wr_error(&w), 0);
    assert_int_equal(w.len, 1u << 20);
    assert_true(n_mallocs - before <= 24);
    for (size_t i = 0; i < w.len; i++)
        if (w.p[i] != (uint8_t)(i | 1))
            fail();
    /* every buffer given back was wiped first (growth and free) */
    sx_wr_free(&w);
    assert_int_equal(freed_dirty, 0);

    /* NOMEM: sticky, nothing lost, later writes ignored */
    sx_wr_init(&w);
    sx_wr_raw(&w, "secret", 6);
    fail_after = n_mallocs;
    for (size_t i = 0; i < 1000 && !sx_wr_error(&w); i++)
        sx_wr_u8(&w, 'x');
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_NOMEM);
    {
        size_t len = w.len;
        assert_memory_equal(w.p, "secret", 6);
        fail_after = SIZE_MAX;
        sx_wr_u8(&w, 'y');
        assert_int_equal(w.len, len);
        assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_NOMEM);
    }
    sx_wr_free(&w);
    assert_int_equal(freed_dirty, 0);

    /* the first allocation failing */
    sx_wr_init(&w);
    fail_after = n_mallocs;
    sx_wr_u8(&w, 1);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_NOMEM);
    assert_int_equal(w.len, 0);
    sx_wr_free(&w);
    sx_wr_init(&w);
    {
        uint8_t *out = NULL;
        size_t n;
        assert_int_equal(sx_wr_take(&w, &out, &n), SIMPLEX_ERR_NOMEM);
        assert_null(out);
    }
    sx_wr_free(&w);
    fail_after = SIZE_MAX;

    /* the text encoders propagate NOMEM */
    sx_wr_init(&w);
    fail_after = n_mallocs;
    assert_int_equal(sx_b64url_decode(&w, "Zm9v", 4), SIMPLEX_ERR_NOMEM);
    fail_after = SIZE_MAX;
    sx_wr_free(&w);
}

/* ==== base64url ==== */

/* An independent model of the reference's decoder, for differential
 * testing: complete the padding, then decode quantum by quantum. */
static int model_b64_val(char c)
{
    const char *a =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const char *p = c ? strchr(a, c) : NULL;
    return p ? (int)(p - a) : -1;
}
static int model_b64_decode(const char *s, size_t n, uint8_t *out,
                            size_t *olen)
{
    char t[64];
    size_t m = n;
    *olen = 0;
    if (n == 0)
        return 0;
    if (n % 4 == 1 || n > 60)
        return -1;
    if (n % 4 == 3 && s[n - 1] == '=')
        return -1;
    memcpy(t, s, n);
    while (m % 4)
        t[m++] = '=';
    for (size_t q = 0; q < m; q += 4) {
        int last = q + 4 == m;
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = t[q + k] == '=' ? -2 : model_b64_val(t[q + k]);
        if (v[0] < 0 || v[1] < 0)
            return -1;
        if (!last && (v[2] < 0 || v[3] < 0))
            return -1;
        if (v[2] == -1 || v[3] == -1)
            return -1;
        if (v[2] == -2 && v[3] != -2)
            return -1;
        out[(*olen)++] = (uint8_t)((v[0] << 2) | (v[1] >> 4));
        if (v[2] == -2) {
            if (v[1] & 15)
                return -1;
            break;
        }
        out[(*olen)++] = (uint8_t)(((v[1] & 15) << 4) | (v[2] >> 2));
        if (v[3] == -2) {
            if (v[2] & 3)
                return -1;
            break;
        }
        out[(*olen)++] = (uint8_t)(((v[2] & 3) << 6) | v[3]);
    }
    return 0;
}

static void expect_b64_reject(const char *s)
{
    sx_wr w;
    sx_wr_init(&w);
    sx_wr_u8(&w, '#');
    if (sx_b64url_decode(&w, s, strlen(s)) != SIMPLEX_ERR_PARSE)
        fail_msg("base64url accepted \"%s\"", s);
    /* nothing appended, the writer still fine */
    assert_int_equal(w.len, 1);
    assert_int_equal(sx_wr_error(&w), 0);
    sx_wr_free(&w);
}
static void expect_b64_accept(const char *s, const char *want, size_t wn)
{
    sx_wr w;
    sx_wr_init(&w);
    if (sx_b64url_decode(&w, s, strlen(s)) != 0)
        fail_msg("base64url refused \"%s\"", s);
    assert_wr_equal(&w, (const uint8_t *)want, wn);
    sx_wr_free(&w);
}

static void test_b64url_rules(void **state)
{
    (void)state;
    /* accepted: padded, unpadded, empty */
    expect_b64_accept("", "", 0);
    expect_b64_accept("Zg==", "f", 1);
    expect_b64_accept("Zg", "f", 1);
    expect_b64_accept("Zm8=", "fo", 2);
    expect_b64_accept("Zm8", "fo", 2);
    expect_b64_accept("Zm9v", "foo", 3);
    expect_b64_accept("Zm9vYg", "foob", 4);
    expect_b64_accept("Zm9vYmE", "fooba", 5);
    expect_b64_accept("Zm9vYmFy", "foobar", 6);
    expect_b64_accept("-_-_", "\xfb\xff\xbf", 3);
    expect_b64_accept("AAAA", "\0\0\0", 3);

    /* the standard alphabet's characters */
    expect_b64_reject("+/+/");
    expect_b64_reject("ab+c");
    expect_b64_reject("ab/c");
    /* other characters */
    expect_b64_reject("Zm9v ");
    expect_b64_reject(" Zm9v");
    expect_b64_reject("Zm.v");
    expect_b64_reject("Zm9\n");
    expect_b64_reject("Zm9v\xc3\xa9Zg");
    /* lengths: 1 (mod 4) */
    expect_b64_reject("Z");
    expect_b64_reject("Zm9vY");
    expect_b64_reject("Zg===");
    /* wrong padding */
    expect_b64_reject("=");
    expect_b64_reject("==");
    expect_b64_reject("===");
    expect_b64_reject("====");
    expect_b64_reject("Zg=");   /* % 4 == 3 ending in '=' */
    expect_b64_reject("Zm9=");  /* same, and non-canonical */
    expect_b64_reject("Z===");
    expect_b64_reject("Z=");
    expect_b64_reject("Zg=A");
    expect_b64_reject("Zg==Zg==");
    expect_b64_reject("Zm8=Zg");
    expect_b64_reject("Zm9v====");
    expect_b64_reject("=Zm9");
    expect_b64_reject("Zm9vZg======");
    /* non-canonical: unused bits set */
    expect_b64_reject("Zh==");
    expect_b64_reject("Zh");
    expect_b64_reject("Zm9=");
    expect_b64_reject("Zm9vYh");
    expect_b64_reject("Zm9vYmF");
    expect_b64_reject("Zm9vYmF=");
    expect_b64_reject("-_-__h==");
    expect_b64_reject("Zo==");    /* each of the four unused bits */
    expect_b64_reject("Zk==");
    expect_b64_reject("Zi==");
    expect_b64_reject("Zm9vYmG"); /* each of the two */
    expect_b64_reject("Zm9vYmF");
}

static void test_b64url_span(void **state)
{
    (void)state;
    assert_int_equal(sx_b64url_span("", 0), 0);
    assert_int_equal(sx_b64url_span("Zg==@host", 9), 4);
    assert_int_equal(sx_b64url_span("Zg@host", 7), 2);
    assert_int_equal(sx_b64url_span("a-b_c:pass", 10), 5);
    assert_int_equal(sx_b64url_span("ab===/x", 7), 5);
    /* '=' alone is no token */
    assert_int_equal(sx_b64url_span("==ab", 4), 0);
    assert_int_equal(sx_b64url_span("@ab", 3), 0);
    /* '+', '/', '.', '#' end a token */
    assert_int_equal(sx_b64url_span("ab+c", 4), 2);
    assert_int_equal(sx_b64url_span("ab/c", 4), 2);
    assert_int_equal(sx_b64url_span("ab.c", 4), 2);
    assert_int_equal(sx_b64url_span("ab#c", 4), 2);
    /* '=' then more letters: the '=' run ends it */
    assert_int_equal(sx_b64url_span("ab=c", 4), 3);
    /* length is respected (no NUL needed) */
    assert_int_equal(sx_b64url_span("abcdef", 3), 3);
    /* Latin-1 letters and numbers belong to the token, as in the
     * reference's tokeniser; other high bytes do not */
    assert_int_equal(sx_b64url_span("ab\xe9" "c", 4), 4);
    assert_int_equal(sx_b64url_span("ab\xaa\xb2\xb5\xba\xbc\xc0\xdf\xff", 10),
                     10);
    assert_int_equal(sx_b64url_span("ab\xd7", 3), 2);
    assert_int_equal(sx_b64url_span("ab\xf7", 3), 2);
    assert_int_equal(sx_b64url_span("ab\xa0", 3), 2);
    assert_int_equal(sx_b64url_span("ab\x80", 3), 2);
    assert_int_equal(sx_b64url_span("ab\xbf", 3), 2);
    /* ... but never decode */
    expect_b64_reject("ab\xe9" "c");
    /* every ASCII byte: exactly the alphabet */
    for (unsigned c = 0; c < 128; c++) {
        char s[2] = {(char)c, 0};
        int in = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                 (c >= '0' && c <= '9') || c == '-' || c == '_';
        assert_int_equal(sx_b64url_span(s, 1), (size_t)in);
    }
}

static void test_b64url_random(void **state)
{
    uint8_t data[200];
    sx_wr w, w2;
    (void)state;

    sx_wr_init(&w);
    sx_wr_init(&w2);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = rnd_below(iter < 200 ? 8 : sizeof data);
        size_t elen;
        rnd_fill(data, n);
        sx_wr_reset(&w);
        sx_wr_reset(&w2);
        sx_b64url_encode(&w, data, n);
        elen = w.len;
        assert_int_equal(elen, sx_b64url_encoded_len(n));
        assert_int_equal(elen % 4, 0);
        assert_int_equal(sx_b64url_span((const char *)w.p, elen), elen);
        assert_int_equal(sx_b64url_decode(&w2, (const char *)w.p, elen), 0);
        assert_wr_equal(&w2, data, n);
        /* unpadded */
        while (elen && w.p[elen - 1] == '=')
            elen--;
        sx_wr_reset(&w2);
        assert_int_equal(sx_b64url_decode(&w2, (const char *)w.p, elen), 0);
        assert_wr_equal(&w2, data, n);
        /* appending keeps what is there */
        sx_wr_reset(&w2);
        sx_wr_u8(&w2, 0x42);
        assert_int_equal(sx_b64url_decode(&w2, (const char *)w.p, elen), 0);
        assert_int_equal(w2.len, n + 1);
        assert_int_equal(w2.p[0], 0x42);
    }

    /* differential: random short texts against the model */
    {
        static const char pool[] = "AQgw-_Zz09=+/ .\xe9";
        for (int iter = 0; iter < 200000; iter++) {
            char s[16];
            uint8_t want[16];
            size_t n = rnd_below(13), wn;
            int mrc;
            for (size_t i = 0; i < n; i++)
                s[i] = pool[rnd_below(sizeof pool - 1)];
            mrc = model_b64_decode(s, n, want, &wn);
            sx_wr_reset(&w2);
            if (mrc == 0) {
                if (sx_b64url_decode(&w2, s, n) != 0)
                    fail_msg("refused %.*s", (int)n, s);
                assert_wr_equal(&w2, want, wn);
            } else {
                if (sx_b64url_decode(&w2, s, n) != SIMPLEX_ERR_PARSE)
                    fail_msg("accepted %.*s", (int)n, s);
                assert_int_equal(w2.len, 0);
            }
        }
    }
    /* every 2-character text: accepted exactly when canonical */
    for (unsigned a = 0; a < 256; a++)
        for (unsigned b = 0; b < 256; b++) {
            char s[2] = {(char)a, (char)b};
            uint8_t want[4];
            size_t wn;
            int mrc = model_b64_decode(s, 2, want, &wn);
            sx_wr_reset(&w2);
            assert_int_equal(sx_b64url_decode(&w2, s, 2),
                             mrc == 0 ? 0 : SIMPLEX_ERR_PARSE);
        }
    sx_wr_free(&w);
    sx_wr_free(&w2);
}

/* ==== version ranges ==== */

static void expect_vr(const char *s, int ok, unsigned lo, unsigned hi)
{
    sx_vrange v = {0xaaaa, 0xbbbb};
    int rc = sx_vrange_str_decode(&v, s, strlen(s));
    if (ok) {
        if (rc != 0)
            fail_msg("vrange refused \"%s\"", s);
        assert_int_equal(v.min, lo);
        assert_int_equal(v.max, hi);
    } else {
        if (rc != SIMPLEX_ERR_PARSE)
            fail_msg("vrange accepted \"%s\"", s);
        /* out untouched */
        assert_int_equal(v.min, 0xaaaa);
        assert_int_equal(v.max, 0xbbbb);
    }
}

static void test_vrange_str(void **state)
{
    sx_wr w;
    (void)state;

    expect_vr("4", 1, 4, 4);
    expect_vr("1-4", 1, 1, 4);
    expect_vr("4-4", 1, 4, 4);     /* non-canonical but accepted */
    expect_vr("004-0010", 1, 4, 10); /* leading zeros */
    expect_vr("65535", 1, 65535, 65535);
    expect_vr("0-65535", 1, 0, 65535);
    /* the reference checks only min <= max: version 0 is a range */
    expect_vr("0", 1, 0, 0);
    /* the reference's Word16 parser wraps modulo 65536; we refuse */
    expect_vr("70000", 0, 0, 0);
    expect_vr("65536", 0, 0, 0);
    expect_vr("1-65537", 0, 0, 0);
    expect_vr("5-3", 0, 0, 0);
    expect_vr("2-1", 0, 0, 0);
    expect_vr("70000-1", 0, 0, 0);
    expect_vr("1-", 0, 0, 0);
    expect_vr("-1", 0, 0, 0);
    expect_vr("-", 0, 0, 0);
    expect_vr("", 0, 0, 0);
    expect_vr("a", 0, 0, 0);
    expect_vr("1a", 0, 0, 0);
    expect_vr("1-4 ", 0, 0, 0);
    expect_vr(" 1-4", 0, 0, 0);
    expect_vr("1-4x", 0, 0, 0);
    expect_vr("1-4-5", 0, 0, 0);
    expect_vr("1--4", 0, 0, 0);
    expect_vr("+1", 0, 0, 0);
    expect_vr("1.4", 0, 0, 0);
    expect_vr("1,4", 0, 0, 0);
    /* exactly n characters: what follows does not matter */
    {
        sx_vrange v;
        assert_int_equal(sx_vrange_str_decode(&v, "2-7&x", 3), 0);
        assert_int_equal(v.min, 2);
        assert_int_equal(v.max, 7);
    }

    /* encode */
    sx_wr_init(&w);
    {
        sx_vrange v = {0, 0};
        sx_vrange_str_encode(&w, v);
        assert_wr_equal(&w, (const uint8_t *)"0", 1);
    }
    sx_wr_reset(&w);
    {
        sx_vrange v = {65535, 65535};
        sx_vrange_str_encode(&w, v);
        assert_wr_equal(&w, (const uint8_t *)"65535", 5);
    }
    sx_wr_reset(&w);
    {
        sx_vrange v = {10, 65535};
        sx_vrange_str_encode(&w, v);
        assert_wr_equal(&w, (const uint8_t *)"10-65535", 8);
    }
    /* random round trips, text and binary */
    for (int iter = 0; iter < 20000; iter++) {
        sx_vrange v, got;
        sx_rd r;
        v.min = (uint16_t)rnd();
        v.max = (uint16_t)rnd();
        if (iter % 3 == 0)
            v.max = v.min;
        if (v.min > v.max) {
            uint16_t t = v.min;
            v.min = v.max;
            v.max = t;
        }
        sx_wr_reset(&w);
        sx_vrange_str_encode(&w, v);
        assert_int_equal(sx_vrange_str_decode(&got, (const char *)w.p, w.len),
                         0);
        assert_int_equal(got.min, v.min);
        assert_int_equal(got.max, v.max);
        sx_wr_reset(&w);
        sx_vrange_encode(&w, v);
        assert_int_equal(w.len, 4);
        sx_rd_init(&r, w.p, w.len);
        assert_int_equal(sx_vrange_decode(&r, &got), 0);
        assert_int_equal(sx_rd_end(&r), 0);
        assert_int_equal(got.min, v.min);
        assert_int_equal(got.max, v.max);
    }
    sx_wr_free(&w);

    /* the Word16 parser alone */
    {
        uint16_t u = 7;
        assert_int_equal(sx_u16_str_decode(&u, "5223", 4), 0);
        assert_int_equal(u, 5223);
        assert_int_equal(sx_u16_str_decode(&u, "", 0), SIMPLEX_ERR_PARSE);
        assert_int_equal(sx_u16_str_decode(&u, "-1", 2), SIMPLEX_ERR_PARSE);
        assert_int_equal(sx_u16_str_decode(&u, "1 ", 2), SIMPLEX_ERR_PARSE);
        assert_int_equal(u, 5223);
        assert_int_equal(
            sx_u16_str_decode(&u, "99999999999999999999999", 23),
            SIMPLEX_ERR_PARSE);
        assert_int_equal(sx_u16_str_decode(&u, "65536", 5), SIMPLEX_ERR_PARSE);
        assert_int_equal(u, 5223);
        assert_int_equal(sx_u16_str_decode(&u, "65535", 5), 0);
        assert_int_equal(u, 65535);
    }
}

/* ==== query strings and percent-encoding ==== */

static void expect_pct(const char *in, const char *want, size_t wn)
{
    sx_wr w;
    sx_wr_init(&w);
    assert_int_equal(sx_percent_decode(&w, in, strlen(in)), 0);
    assert_wr_equal(&w, (const uint8_t *)want, wn);
    sx_wr_free(&w);
}

static void test_percent(void **state)
{
    sx_wr w;
    (void)state;

    expect_pct("", "", 0);
    expect_pct("abc", "abc", 3);
    expect_pct("a%3Db", "a=b", 3);
    expect_pct("a%3db", "a=b", 3);
    expect_pct("%00", "\0", 1);
    expect_pct("%ff%FF", "\xff\xff", 2);
    expect_pct("a+b", "a b", 3);   /* '+' is a space */
    expect_pct("%2B", "+", 1);
    /* the reference keeps a '%' that starts no escape */
    expect_pct("%", "%", 1);
    expect_pct("%4", "%4", 2);
    expect_pct("%zz", "%zz", 3);
    expect_pct("%4g", "%4g", 3);
    expect_pct("%g4", "%g4", 3);
    expect_pct("100%", "100%", 4);
    expect_pct("%%41", "%A", 2);
    expect_pct("%%", "%%", 2);
    expect_pct("%2", "%2", 2);
    expect_pct("x%4", "x%4", 3);
    /* decoded text is not decoded again */
    expect_pct("%2541", "%41", 3);
    /* an exact fixed buffer is enough */
    {
        uint8_t buf[3];
        sx_wr_init_fixed(&w, buf, sizeof buf);
        assert_int_equal(sx_percent_decode(&w, "%41%42%43", 9), 0);
        assert_int_equal(w.len, 3);
        assert_memory_equal(buf, "ABC", 3);
        assert_int_equal(sx_percent_decode(&w, "%41", 3),
                         SIMPLEX_ERR_BUFFER_TOO_SMALL);
    }

    /* encode: unreserved A-Z a-z 0-9 - _ . ~, the rest %XY upper-case */
    sx_wr_init(&w);
    sx_percent_encode(&w, "MCow-_.~ =+/&%\x01\xff", 16);
    assert_wr_equal(&w,
                    (const uint8_t *)"MCow-_.~%20%3D%2B%2F%26%25%01%FF", 32);
    sx_wr_reset(&w);
    for (unsigned c = 0; c < 256; c++) {
        char ch = (char)c;
        int keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                   (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                   c == '.' || c == '~';
        sx_wr_reset(&w);
        sx_percent_encode(&w, &ch, 1);
        assert_int_equal(w.len, keep ? 1 : 3);
    }
    /* random round trips */
    for (int iter = 0; iter < 5000; iter++) {
        uint8_t data[64];
        size_t n = rnd_below(sizeof data);
        sx_wr d;
        rnd_fill(data, n);
        sx_wr_reset(&w);
        sx_percent_encode(&w, (const char *)data, n);
        sx_wr_init(&d);
        assert_int_equal(sx_percent_decode(&d, (const char *)w.p, w.len), 0);
        assert_wr_equal(&d, data, n);
        sx_wr_free(&d);
    }
    sx_wr_free(&w);
}

static void test_query(void **state)
{
    static const char dh[] =
        "MCowBQYDK2VuAyEAQ96SkTZ9-rSl7oZTp00bqWU93zlhfGwsaB4L_szv6Rs=";
    sx_query_param ps[8];
    size_t n = 99;
    const sx_query_param *p;
    const char *q;
    sx_wr w;
    (void)state;

    /* the reference's queue link query */
    q = "v=1-4&dh=MCowBQYDK2VuAyEAQ96SkTZ9-rSl7oZTp00bqWU93zlhfGwsaB4L_szv6Rs"
        "%3D&q=m&k=s&srv=abc.onion";
    assert_int_equal(strlen(dh), 60);
    assert_int_equal(sx_query_parse(ps, 8, &n, q, strlen(q)), 0);
    assert_int_equal(n, 5);
    assert_int_equal(ps[0].key_len, 1);
    assert_memory_equal(ps[0].key, "v", 1);
    assert_int_equal(ps[0].val_len, 3);
    assert_memory_equal(ps[0].val, "1-4", 3);
    p = sx_query_find(ps, n, "dh");
    assert_ptr_equal(p, &ps[1]);
    assert_int_equal(p->val_len, 62);
    assert_memory_equal(p->val + 59, "%3D", 3);
    sx_wr_init(&w);
    assert_int_equal(sx_percent_decode(&w, p->val, p->val_len), 0);
    assert_wr_equal(&w, (const uint8_t *)dh, 60);
    assert_ptr_equal(sx_query_find(ps, n, "srv"), &ps[4]);
    assert_null(sx_query_find(ps, n, "x"));
    assert_null(sx_query_find(ps, n, ""));
    assert_null(sx_query_find(ps, n, "vv"));
    assert_null(sx_query_find(ps, n, "d"));

    /* rendering it back gives the same text */
    sx_wr_reset(&w);
    sx_query_append(&w, 1, "v", "1-4", 3);
    sx_query_append(&w, 0, "dh", dh, 60);
    sx_query_append(&w, 0, "q", "m", 1);
    sx_query_append(&w, 0, "k", "s", 1);
    sx_query_append(&w, 0, "srv", "abc.onion", 9);
    assert_wr_equal(&w, (const uint8_t *)q, strlen(q));
    sx_wr_reset(&w);
    sx_query_append(&w, 1, "a b", "", 0);
    assert_wr_equal(&w, (const uint8_t *)"a%20b=", 6);
    sx_wr_free(&w);

    /* the first match wins; keys compare decoded */
    q = "a=1;b=2&a=3&%62%20c=4&d+e=5";
    assert_int_equal(sx_query_parse(ps, 8, &n, q, strlen(q)), 0);
    assert_int_equal(n, 5);
    assert_ptr_equal(sx_query_find(ps, n, "a"), &ps[0]);
    assert_ptr_equal(sx_query_find(ps, n, "b"), &ps[1]);
    assert_ptr_equal(sx_query_find(ps, n, "b c"), &ps[3]);
    assert_ptr_equal(sx_query_find(ps, n, "d e"), &ps[4]);
    assert_null(sx_query_find(ps, n, "d+e"));
    assert_null(sx_query_find(ps, n, "%62%20c"));

    /* separators, empty pairs, missing '=', '=' in values */
    {
        static const struct {
            const char *in;
            size_t n;
            const char *kv[5][2];
        } cases[] = {
            {"", 0, {{0}}},
            {"?", 0, {{0}}},
            {"?a=1", 1, {{"a", "1"}}},
            {"??a=1", 1, {{"?a", "1"}}},
            {"a", 1, {{"a", ""}}},
            {"a=", 1, {{"a", ""}}},
            {"=1", 1, {{"", "1"}}},
            {"a=1=2", 1, {{"a", "1=2"}}},
            {"a=1&", 1, {{"a", "1"}}},
            {"a=1&&b=2", 3, {{"a", "1"}, {"", ""}, {"b", "2"}}},
            {"&a=1", 2, {{"", ""}, {"a", "1"}}},
            {"a&b;c", 3, {{"a", ""}, {"b", ""}, {"c", ""}}},
            {"&", 1, {{"", ""}}},
            {"&&", 2, {{"", ""}, {"", ""}}},
            {"a=%&b=%zz", 2, {{"a", "%"}, {"b", "%zz"}}},
        };
        for (size_t c = 0; c < SX_ARRAY_LEN(cases); c++) {
            size_t len = strlen(cases[c].in);
            assert_int_equal(
                sx_query_parse(ps, 8, &n, cases[c].in, len), 0);
            if (n != cases[c].n)
                fail_msg("\"%s\": %zu params", cases[c].in, n);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(ps[i].key_len, strlen(cases[c].kv[i][0]));
                assert_memory_equal(ps[i].key, cases[c].kv[i][0],
                                    ps[i].key_len);
                assert_int_equal(ps[i].val_len, strlen(cases[c].kv[i][1]));
                assert_memory_equal(ps[i].val, cases[c].kv[i][1],
                                    ps[i].val_len);
                assert_non_null(ps[i].val);
                /* views stay inside the text */
                assert_true(ps[i].key >= cases[c].in &&
                            ps[i].key + ps[i].key_len <= cases[c].in + len);
                assert_true(ps[i].val >= cases[c].in &&
                            ps[i].val + ps[i].val_len <= cases[c].in + len);
            }
        }
    }
    /* too many params */
    n = 77;
    assert_int_equal(sx_query_parse(ps, 2, &n, "a&b&c", 5),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(n, 77);
    assert_int_equal(sx_query_parse(ps, 3, &n, "a&b&c", 5), 0);
    assert_int_equal(n, 3);
    assert_int_equal(sx_query_parse(NULL, 0, &n, "", 0), 0);
    assert_int_equal(n, 0);
    assert_int_equal(sx_query_parse(NULL, 0, &n, "a", 1),
                     SIMPLEX_ERR_TOO_LARGE);
    /* exactly n characters */
    assert_int_equal(sx_query_parse(ps, 8, &n, "a=1&b=2", 3), 0);
    assert_int_equal(n, 1);
    assert_int_equal(ps[0].val_len, 1);
}

/* ==== random round trips through every primitive ==== */

enum { K_U8, K_U16, K_U32, K_I64, K_TIME, K_BOOL, K_MAYBE, K_SHORT,
       K_LARGE, K_COUNT, K_VRANGE, K_FIXED, K_RAW, K_KINDS };

typedef struct {
    int kind;
    uint64_t u;
    size_t n;
    uint8_t *bytes;
} rval;

static void test_random_roundtrip(void **state)
{
    (void)state;
    for (int iter = 0; iter < 2000; iter++) {
        rval vals[40];
        size_t nv = 1 + rnd_below(SX_ARRAY_LEN(vals));
        sx_wr w;
        sx_rd r;
        uint8_t *buf;
        size_t len;

        sx_wr_init(&w);
        for (size_t i = 0; i < nv; i++) {
            rval *v = &vals[i];
            v->kind = (int)rnd_below(K_KINDS);
            v->u = rnd();
            v->bytes = NULL;
            v->n = 0;
            switch (v->kind) {
            case K_U8: sx_wr_u8(&w, (uint8_t)v->u); break;
            case K_U16: sx_wr_u16(&w, (uint16_t)v->u); break;
            case K_U32: sx_wr_u32(&w, (uint32_t)v->u); break;
            case K_I64: sx_wr_i64(&w, (int64_t)v->u); break;
            case K_TIME: sx_wr_time(&w, (int64_t)v->u); break;
            case K_BOOL: sx_wr_bool(&w, (int)(v->u & 1)); break;
            case K_MAYBE: sx_wr_maybe(&w, (int)(v->u & 1)); break;
            case K_COUNT: sx_wr_count(&w, (size_t)(v->u & 255)); break;
            case K_VRANGE: {
                sx_vrange vr = {(uint16_t)v->u, (uint16_t)(v->u >> 16)};
                if (vr.min > vr.max)
                    vr.max = vr.min;
                v->u = (uint64_t)vr.min | ((uint64_t)vr.max << 16);
                sx_vrange_encode(&w, vr);
                break;
            }
            case K_SHORT:
            case K_LARGE:
            case K_FIXED:
            case K_RAW:
                v->n = rnd_below(v->kind == K_LARGE && iter % 50 == 0
                                     ? 65536
                                     : 256);
                v->bytes = malloc(v->n ? v->n : 1);
                assert_non_null(v->bytes);
                rnd_fill(v->bytes, v->n);
                if (v->kind == K_LARGE)
                    sx_wr_large(&w, v->bytes, v->n);
                else if (v->kind == K_RAW)
                    sx_wr_raw(&w, v->bytes, v->n);
                else
                    sx_wr_short(&w, v->bytes, v->n);
                break;
            }
        }
        assert_int_equal(sx_wr_error(&w), 0);
        len = w.len;
        buf = dup_bytes(w.p, len);
        sx_wr_free(&w);

        sx_rd_init(&r, buf, len);
        for (size_t i = 0; i < nv; i++) {
            rval *v = &vals[i];
            switch (v->kind) {
            case K_U8: {
                uint8_t x;
                assert_int_equal(sx_rd_u8(&r, &x), 0);
                assert_int_equal(x, (uint8_t)v->u);
                break;
            }
            case K_U16: {
                uint16_t x;
                assert_int_equal(sx_rd_u16(&r, &x), 0);
                assert_int_equal(x, (uint16_t)v->u);
                break;
            }
            case K_U32: {
                uint32_t x;
                assert_int_equal(sx_rd_u32(&r, &x), 0);
                assert_int_equal(x, (uint32_t)v->u);
                break;
            }
            case K_I64:
            case K_TIME: {
                int64_t x;
                if (v->kind == K_I64)
                    assert_int_equal(sx_rd_i64(&r, &x), 0);
                else
                    assert_int_equal(sx_rd_time(&r, &x), 0);
                assert_true(x == (int64_t)v->u);
                break;
            }
            case K_BOOL: {
                int x;
                assert_int_equal(sx_rd_bool(&r, &x), 0);
                assert_int_equal(x, (int)(v->u & 1));
                break;
            }
            case K_MAYBE: {
                int x;
                assert_int_equal(sx_rd_maybe(&r, &x), 0);
                assert_int_equal(x, (int)(v->u & 1));
                break;
            }
            case K_COUNT: {
                size_t x;
                if (v->u & 255) {
                    assert_int_equal(sx_rd_count_nonempty(&r, &x), 0);
                } else {
                    assert_int_equal(sx_rd_count_nonempty(&r, &x),
                                     SIMPLEX_ERR_PARSE);
                    assert_int_equal(sx_rd_count(&r, &x), 0);
                }
                assert_int_equal(x, (size_t)(v->u & 255));
                break;
            }
            case K_VRANGE: {
                sx_vrange x;
                assert_int_equal(sx_vrange_decode(&r, &x), 0);
                assert_int_equal(x.min, (uint16_t)v->u);
                assert_int_equal(x.max, (uint16_t)(v->u >> 16));
                break;
            }
            case K_SHORT:
            case K_LARGE:
            case K_RAW: {
                const uint8_t *p;
                size_t n;
                if (v->kind == K_SHORT)
                    assert_int_equal(sx_rd_short(&r, &p, &n), 0);
                else if (v->kind == K_LARGE)
                    assert_int_equal(sx_rd_large(&r, &p, &n), 0);
                else {
                    assert_int_equal(sx_rd_raw(&r, v->n, &p), 0);
                    n = v->n;
                }
                assert_int_equal(n, v->n);
                if (n)
                    assert_memory_equal(p, v->bytes, n);
                break;
            }
            case K_FIXED: {
                uint8_t tmp[256];
                if (v->n != 17)
                    assert_int_equal(sx_rd_short_fixed(&r, tmp, 17),
                                     SIMPLEX_ERR_PARSE);
                assert_int_equal(sx_rd_short_fixed(&r, tmp, v->n), 0);
                if (v->n)
                    assert_memory_equal(tmp, v->bytes, v->n);
                break;
            }
            }
            free(v->bytes);
        }
        assert_int_equal(sx_rd_end(&r), 0);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_reader_truncation),
        cmocka_unit_test(test_reader_bad_tags),
        cmocka_unit_test(test_reader_misc),
        cmocka_unit_test(test_writer_basic),
        cmocka_unit_test(test_writer_limits),
        cmocka_unit_test(test_writer_fixed),
        cmocka_unit_test(test_writer_sticky),
        cmocka_unit_test_setup_teardown(test_writer_alloc, alloc_setup,
                                        alloc_teardown),
        cmocka_unit_test(test_b64url_rules),
        cmocka_unit_test(test_b64url_span),
        cmocka_unit_test(test_b64url_random),
        cmocka_unit_test(test_vrange_str),
        cmocka_unit_test(test_percent),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_random_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
