/*
 * Bounds-checked reader and growable/fixed writer for the SimpleX binary
 * encoding. See bytes.h for the contract.
 */
#include <string.h>

#include "common/bytes.h"

/* ---- reader ---- */

static const uint8_t rd_empty[1];

void sx_rd_init(sx_rd *r, const void *p, size_t len)
{
    /* never keep a NULL base: even p + 0 on NULL is undefined */
    r->p = p ? (const uint8_t *)p : rd_empty;
    r->len = p ? len : 0;
    r->pos = 0;
}

size_t sx_rd_left(const sx_rd *r)
{
    return r->len - r->pos;
}

int sx_rd_end(const sx_rd *r)
{
    return r->pos == r->len ? 0 : SIMPLEX_ERR_TRAILING;
}

int sx_rd_u8(sx_rd *r, uint8_t *out)
{
    if (r->pos >= r->len)
        return SIMPLEX_ERR_TRUNCATED;
    *out = r->p[r->pos++];
    return 0;
}

int sx_rd_u16(sx_rd *r, uint16_t *out)
{
    const uint8_t *q;
    if (r->len - r->pos < 2)
        return SIMPLEX_ERR_TRUNCATED;
    q = r->p + r->pos;
    *out = (uint16_t)(((unsigned)q[0] << 8) | q[1]);
    r->pos += 2;
    return 0;
}

static uint32_t load32(const uint8_t *q)
{
    return ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) |
           ((uint32_t)q[2] << 8) | (uint32_t)q[3];
}

int sx_rd_u32(sx_rd *r, uint32_t *out)
{
    if (r->len - r->pos < 4)
        return SIMPLEX_ERR_TRUNCATED;
    *out = load32(r->p + r->pos);
    r->pos += 4;
    return 0;
}

int sx_rd_i64(sx_rd *r, int64_t *out)
{
    uint64_t u;
    const uint8_t *q;
    if (r->len - r->pos < 8)
        return SIMPLEX_ERR_TRUNCATED;
    q = r->p + r->pos;
    u = ((uint64_t)load32(q) << 32) | load32(q + 4);
    /* two's complement without implementation-defined conversion */
    if (u > (uint64_t)INT64_MAX)
        *out = -(int64_t)(~u) - 1;
    else
        *out = (int64_t)u;
    r->pos += 8;
    return 0;
}

int sx_rd_bool(sx_rd *r, int *out)
{
    uint8_t c;
    if (r->pos >= r->len)
        return SIMPLEX_ERR_TRUNCATED;
    c = r->p[r->pos];
    if (c == 'T')
        *out = 1;
    else if (c == 'F')
        *out = 0;
    else
        return SIMPLEX_ERR_PARSE;
    r->pos++;
    return 0;
}

int sx_rd_expect(sx_rd *r, uint8_t c)
{
    if (r->pos >= r->len)
        return SIMPLEX_ERR_TRUNCATED;
    if (r->p[r->pos] != c)
        return SIMPLEX_ERR_PARSE;
    r->pos++;
    return 0;
}

int sx_rd_raw(sx_rd *r, size_t n, const uint8_t **out)
{
    if (r->len - r->pos < n)
        return SIMPLEX_ERR_TRUNCATED;
    *out = r->p + r->pos;
    r->pos += n;
    return 0;
}

int sx_rd_copy(sx_rd *r, void *out, size_t n)
{
    if (r->len - r->pos < n)
        return SIMPLEX_ERR_TRUNCATED;
    if (n)
        memcpy(out, r->p + r->pos, n);
    r->pos += n;
    return 0;
}

int sx_rd_short(sx_rd *r, const uint8_t **out, size_t *n)
{
    size_t left = r->len - r->pos, k;
    if (left < 1)
        return SIMPLEX_ERR_TRUNCATED;
    k = r->p[r->pos];
    if (left - 1 < k)
        return SIMPLEX_ERR_TRUNCATED;
    *out = r->p + r->pos + 1;
    *n = k;
    r->pos += 1 + k;
    return 0;
}

int sx_rd_large(sx_rd *r, const uint8_t **out, size_t *n)
{
    size_t left = r->len - r->pos, k;
    const uint8_t *q;
    if (left < 2)
        return SIMPLEX_ERR_TRUNCATED;
    q = r->p + r->pos;
    k = ((size_t)q[0] << 8) | q[1];
    if (left - 2 < k)
        return SIMPLEX_ERR_TRUNCATED;
    *out = q + 2;
    *n = k;
    r->pos += 2 + k;
    return 0;
}

int sx_rd_short_fixed(sx_rd *r, void *out, size_t n)
{
    size_t left = r->len - r->pos, k;
    if (left < 1)
        return SIMPLEX_ERR_TRUNCATED;
    k = r->p[r->pos];
    if (k != n)
        return SIMPLEX_ERR_PARSE;
    if (left - 1 < k)
        return SIMPLEX_ERR_TRUNCATED;
    if (k)
        memcpy(out, r->p + r->pos + 1, k);
    r->pos += 1 + k;
    return 0;
}

int sx_rd_maybe(sx_rd *r, int *present)
{
    uint8_t c;
    if (r->pos >= r->len)
        return SIMPLEX_ERR_TRUNCATED;
    c = r->p[r->pos];
    if (c == '1')
        *present = 1;
    else if (c == '0')
        *present = 0;
    else
        return SIMPLEX_ERR_PARSE;
    r->pos++;
    return 0;
}

int sx_rd_count(sx_rd *r, size_t *n)
{
    if (r->pos >= r->len)
        return SIMPLEX_ERR_TRUNCATED;
    *n = r->p[r->pos++];
    return 0;
}

int sx_rd_count_nonempty(sx_rd *r, size_t *n)
{
    if (r->pos >= r->len)
        return SIMPLEX_ERR_TRUNCATED;
    if (r->p[r->pos] == 0)
        return SIMPLEX_ERR_PARSE;
    *n = r->p[r->pos++];
    return 0;
}

void sx_rd_tail(sx_rd *r, const uint8_t **out, size_t *n)
{
    *out = r->p + r->pos;
    *n = r->len - r->pos;
    r->pos = r->len;
}

int sx_rd_time(sx_rd *r, int64_t *seconds)
{
    return sx_rd_i64(r, seconds);
}

/* ---- writer ---- */

#define SX_WR_MIN_CAP 64

void sx_wr_init(sx_wr *w)
{
    w->p = NULL;
    w->len = 0;
    w->cap = 0;
    w->err = 0;
    w->fixed = 0;
}

void sx_wr_init_fixed(sx_wr *w, void *buf, size_t cap)
{
    w->p = (uint8_t *)buf;
    w->len = 0;
    w->cap = buf ? cap : 0;
    w->err = 0;
    w->fixed = 1;
}

void sx_wr_free(sx_wr *w)
{
    if (!w || w->fixed)
        return;
    if (w->p) {
        sx_memzero(w->p, w->cap);
        sx_free(w->p);
    }
    w->p = NULL;
    w->len = 0;
    w->cap = 0;
    w->err = 0;
}

int sx_wr_error(const sx_wr *w)
{
    return w->err;
}

int sx_wr_take(sx_wr *w, uint8_t **out, size_t *len)
{
    if (w->err)
        return w->err;
    if (w->fixed) {
        /* nothing the caller could free: refuse rather than hand out
         * the caller's own buffer */
        return SIMPLEX_ERR_INVALID_ARG;
    }
    if (!w->p) {
        /* always hand back a freeable pointer, even for nothing */
        w->p = (uint8_t *)sx_malloc(1);
        if (!w->p)
            return w->err = SIMPLEX_ERR_NOMEM;
        w->cap = 1;
    }
    /* the caller wipes only len bytes: clear what lies beyond (left over
     * from before a reset) now */
    if (w->cap > w->len)
        sx_memzero(w->p + w->len, w->cap - w->len);
    *out = w->p;
    *len = w->len;
    w->p = NULL;
    w->len = 0;
    w->cap = 0;
    return 0;
}

/* Back to empty and error-free, keeping the buffer for reuse: the
 * buffer is still intact after any error (NOMEM never loses it). */
void sx_wr_reset(sx_wr *w)
{
    w->len = 0;
    w->err = 0;
}

/* No object may be larger than PTRDIFF_MAX; asking for more is NOMEM
 * without bothering the allocator. */
#define SX_WR_MAX_CAP ((size_t)PTRDIFF_MAX)

/* Makes room for n more bytes; returns 0 or sets and returns the error. */
static int wr_grow(sx_wr *w, size_t n)
{
    size_t need, cap;
    uint8_t *np;

    if (w->err)
        return w->err;
    if (w->fixed)
        return w->err = SIMPLEX_ERR_BUFFER_TOO_SMALL;
    if (n > SX_WR_MAX_CAP - w->len)
        return w->err = SIMPLEX_ERR_NOMEM;
    need = w->len + n;
    cap = w->cap ? w->cap : SX_WR_MIN_CAP;
    while (cap < need)
        cap = cap > SX_WR_MAX_CAP / 2 ? need : cap * 2;
    np = (uint8_t *)sx_malloc(cap);
    if (!np)
        return w->err = SIMPLEX_ERR_NOMEM;
    /* a fresh allocation and a copy rather than realloc, so that the old
     * bytes (which may be secret) can be wiped before they are released */
    if (w->p) {
        if (w->len)
            memcpy(np, w->p, w->len);
        sx_memzero(w->p, w->cap);
        sx_free(w->p);
    }
    w->p = np;
    w->cap = cap;
    return 0;
}

static inline int wr_room(sx_wr *w, size_t n)
{
    if (w->err)
        return 0;
    if (w->cap - w->len >= n)
        return 1;
    return wr_grow(w, n) == 0;
}

uint8_t *sx_wr_reserve(sx_wr *w, size_t n)
{
    uint8_t *q;
    if (!w->err && !w->p && wr_grow(w, n) != 0)
        return NULL;
    if (!wr_room(w, n))
        return NULL;
    q = w->p + w->len;
    w->len += n;
    return q;
}

void sx_wr_u8(sx_wr *w, uint8_t v)
{
    if (!wr_room(w, 1))
        return;
    w->p[w->len++] = v;
}

void sx_wr_u16(sx_wr *w, uint16_t v)
{
    uint8_t *q;
    if (!wr_room(w, 2))
        return;
    q = w->p + w->len;
    q[0] = (uint8_t)(v >> 8);
    q[1] = (uint8_t)v;
    w->len += 2;
}

static void store32(uint8_t *q, uint32_t v)
{
    q[0] = (uint8_t)(v >> 24);
    q[1] = (uint8_t)(v >> 16);
    q[2] = (uint8_t)(v >> 8);
    q[3] = (uint8_t)v;
}

void sx_wr_u32(sx_wr *w, uint32_t v)
{
    if (!wr_room(w, 4))
        return;
    store32(w->p + w->len, v);
    w->len += 4;
}

void sx_wr_i64(sx_wr *w, int64_t v)
{
    uint64_t u = (uint64_t)v;
    uint8_t *q;
    if (!wr_room(w, 8))
        return;
    q = w->p + w->len;
    store32(q, (uint32_t)(u >> 32));
    store32(q + 4, (uint32_t)u);
    w->len += 8;
}

void sx_wr_bool(sx_wr *w, int v)
{
    sx_wr_u8(w, v ? 'T' : 'F');
}

void sx_wr_raw(sx_wr *w, const void *p, size_t n)
{
    if (n == 0) {
        return;
    }
    if (!wr_room(w, n))
        return;
    memcpy(w->p + w->len, p, n);
    w->len += n;
}

void sx_wr_str(sx_wr *w, const char *s)
{
    sx_wr_raw(w, s, strlen(s));
}

void sx_wr_short(sx_wr *w, const void *p, size_t n)
{
    if (w->err)
        return;
    if (n > 255) {
        w->err = SIMPLEX_ERR_TOO_LARGE;
        return;
    }
    if (!wr_room(w, 1 + n))
        return;
    w->p[w->len] = (uint8_t)n;
    if (n)
        memcpy(w->p + w->len + 1, p, n);
    w->len += 1 + n;
}

void sx_wr_large(sx_wr *w, const void *p, size_t n)
{
    uint8_t *q;
    if (w->err)
        return;
    if (n > 65535) {
        w->err = SIMPLEX_ERR_TOO_LARGE;
        return;
    }
    if (!wr_room(w, 2 + n))
        return;
    q = w->p + w->len;
    q[0] = (uint8_t)(n >> 8);
    q[1] = (uint8_t)n;
    if (n)
        memcpy(q + 2, p, n);
    w->len += 2 + n;
}

void sx_wr_maybe(sx_wr *w, int present)
{
    sx_wr_u8(w, present ? '1' : '0');
}

void sx_wr_count(sx_wr *w, size_t n)
{
    if (w->err)
        return;
    if (n > 255) {
        w->err = SIMPLEX_ERR_TOO_LARGE;
        return;
    }
    sx_wr_u8(w, (uint8_t)n);
}

void sx_wr_time(sx_wr *w, int64_t seconds)
{
    sx_wr_i64(w, seconds);
}
