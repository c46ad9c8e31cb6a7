/*
 * Fuzzes the binary reader: the input is a sequence of typed reads, the
 * next byte choosing the primitive. Every value decoded is encoded again
 * and must give back exactly the bytes consumed; a failed read must leave
 * the position alone and report an error that fits the input.
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

enum {
    OP_U8,
    OP_U16,
    OP_U32,
    OP_I64,
    OP_TIME,
    OP_BOOL,
    OP_MAYBE,
    OP_SHORT,
    OP_LARGE,
    OP_COUNT,
    OP_COUNT_NE,
    OP_VRANGE,
    OP_FIXED,
    OP_RAW,
    OP_EXPECT,
    OP_TAIL,
    OP_COUNT_ALL
};

/* decodes one value of kind op; re-encodes it into w */
static int step(int op, uint8_t arg, sx_rd *r, sx_wr *w)
{
    int rc = 0;
    switch (op) {
    case OP_U8: {
        uint8_t v;
        if ((rc = sx_rd_u8(r, &v)) == 0)
            sx_wr_u8(w, v);
        break;
    }
    case OP_U16: {
        uint16_t v;
        if ((rc = sx_rd_u16(r, &v)) == 0)
            sx_wr_u16(w, v);
        break;
    }
    case OP_U32: {
        uint32_t v;
        if ((rc = sx_rd_u32(r, &v)) == 0)
            sx_wr_u32(w, v);
        break;
    }
    case OP_I64: {
        int64_t v;
        if ((rc = sx_rd_i64(r, &v)) == 0)
            sx_wr_i64(w, v);
        break;
    }
    case OP_TIME: {
        int64_t v;
        if ((rc = sx_rd_time(r, &v)) == 0)
            sx_wr_time(w, v);
        break;
    }
    case OP_BOOL: {
        int v;
        if ((rc = sx_rd_bool(r, &v)) == 0) {
            CHECK(v == 0 || v == 1);
            sx_wr_bool(w, v);
        }
        break;
    }
    case OP_MAYBE: {
        int v;
        if ((rc = sx_rd_maybe(r, &v)) == 0) {
            CHECK(v == 0 || v == 1);
            sx_wr_maybe(w, v);
        }
        break;
    }
    case OP_SHORT: {
        const uint8_t *p;
        size_t n;
        if ((rc = sx_rd_short(r, &p, &n)) == 0) {
            CHECK(n <= 255);
            sx_wr_short(w, p, n);
        }
        break;
    }
    case OP_LARGE: {
        const uint8_t *p;
        size_t n;
        if ((rc = sx_rd_large(r, &p, &n)) == 0) {
            CHECK(n <= 65535);
            sx_wr_large(w, p, n);
        }
        break;
    }
    case OP_COUNT:
    case OP_COUNT_NE: {
        size_t n;
        rc = op == OP_COUNT ? sx_rd_count(r, &n) : sx_rd_count_nonempty(r, &n);
        if (rc == 0) {
            CHECK(n <= 255 && (op == OP_COUNT || n > 0));
            sx_wr_count(w, n);
        }
        break;
    }
    case OP_VRANGE: {
        sx_vrange v;
        if ((rc = sx_vrange_decode(r, &v)) == 0) {
            CHECK(v.min <= v.max);
            sx_vrange_encode(w, v);
        }
        break;
    }
    case OP_FIXED: {
        uint8_t buf[32];
        size_t n = arg % sizeof buf;
        if ((rc = sx_rd_short_fixed(r, buf, n)) == 0)
            sx_wr_short(w, buf, n);
        break;
    }
    case OP_RAW: {
        const uint8_t *p;
        uint8_t buf[32];
        size_t n = arg % sizeof buf;
        if (arg & 0x80) {
            if ((rc = sx_rd_copy(r, buf, n)) == 0)
                sx_wr_raw(w, buf, n);
        } else if ((rc = sx_rd_raw(r, n, &p)) == 0) {
            sx_wr_raw(w, p, n);
        }
        break;
    }
    case OP_EXPECT:
        if ((rc = sx_rd_expect(r, arg)) == 0)
            sx_wr_u8(w, arg);
        break;
    case OP_TAIL: {
        const uint8_t *p;
        size_t n;
        sx_rd_tail(r, &p, &n);
        sx_wr_raw(w, p, n);
        CHECK(sx_rd_end(r) == 0);
        break;
    }
    }
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sx_rd ops, r;
    sx_wr w;
    uint8_t fixed_buf[64];
    size_t split;

    /* the first byte says how many op bytes follow; the rest is the data */
    if (size == 0)
        return 0;
    split = 1 + (size_t)data[0];
    if (split > size)
        split = size;
    sx_rd_init(&ops, data + 1, split - 1);
    sx_rd_init(&r, data + split, size - split);

    sx_wr_init(&w);
    for (;;) {
        uint8_t op, arg = 0;
        size_t before;
        int rc;
        if (sx_rd_u8(&ops, &op) != 0)
            break;
        (void)sx_rd_u8(&ops, &arg);
        before = r.pos;
        sx_wr_reset(&w);
        rc = step(op % OP_COUNT_ALL, arg, &r, &w);
        CHECK(r.pos <= r.len);
        if (rc != 0) {
            CHECK(rc == SIMPLEX_ERR_TRUNCATED || rc == SIMPLEX_ERR_PARSE);
            CHECK(r.pos == before);
            CHECK(w.len == 0);
            /* skip the offending byte, if any, and go on */
            if (rc == SIMPLEX_ERR_PARSE || sx_rd_left(&r) > 0) {
                uint8_t skip;
                if (sx_rd_u8(&r, &skip) != 0)
                    break;
            }
            continue;
        }
        CHECK(sx_wr_error(&w) == 0);
        CHECK(w.len == r.pos - before);
        CHECK(w.len == 0 || memcmp(w.p, r.p + before, w.len) == 0);
        CHECK(sx_rd_end(&r) == (sx_rd_left(&r) ? SIMPLEX_ERR_TRAILING : 0));
    }
    sx_wr_free(&w);

    /* the same data through a fixed writer of a data-chosen size */
    sx_wr_init_fixed(&w, fixed_buf, size % (sizeof fixed_buf + 1));
    sx_wr_raw(&w, data, size);
    if (size <= size % (sizeof fixed_buf + 1)) {
        CHECK(sx_wr_error(&w) == 0 && w.len == size);
    } else {
        CHECK(sx_wr_error(&w) == SIMPLEX_ERR_BUFFER_TOO_SMALL && w.len == 0);
    }
    return 0;
}
