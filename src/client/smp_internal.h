/* Helpers shared by the smp_*.c files; not part of the SMP codec API. */
#ifndef SX_SMP_INTERNAL_H
#define SX_SMP_INTERNAL_H

#include <string.h>

#include "client/smp_proto.h"

#define SMP_TRY(x)                                                             \
    do {                                                                       \
        int rc_ = (x);                                                         \
        if (rc_ < 0)                                                           \
            return rc_;                                                        \
    } while (0)

/* short string as a view */
static inline int smp_rd_short(sx_rd *r, sx_smp_bytes *b)
{
    return sx_rd_short(r, &b->p, &b->n);
}

static inline int smp_rd_large(sx_rd *r, sx_smp_bytes *b)
{
    return sx_rd_large(r, &b->p, &b->n);
}

static inline void smp_wr_short(sx_wr *w, sx_smp_bytes b)
{
    sx_wr_short(w, b.p, b.n);
}

static inline void smp_wr_large(sx_wr *w, sx_smp_bytes b)
{
    sx_wr_large(w, b.p, b.n);
}

/* A view of the remaining bytes (Tail). */
static inline void smp_rd_tail(sx_rd *r, sx_smp_bytes *b)
{
    sx_rd_tail(r, &b->p, &b->n);
}

/* The space that separates a tag from its parameters. */
static inline int smp_rd_space(sx_rd *r)
{
    return sx_rd_expect(r, ' ');
}

/* Reads bytes up to (not including) the next ' ' or the end. */
static inline void smp_rd_word(sx_rd *r, sx_smp_bytes *b)
{
    size_t i = r->pos;
    while (i < r->len && r->p[i] != ' ')
        i++;
    b->p = r->p + r->pos;
    b->n = i - r->pos;
    r->pos = i;
}

static inline int smp_word_is(sx_smp_bytes b, const char *s)
{
    size_t n = strlen(s);
    return b.n == n && (n == 0 || memcmp(b.p, s, n) == 0);
}

static inline int smp_rd_maybe(sx_rd *r, int *present)
{
    return sx_rd_maybe(r, present);
}

int smp_link_data_decode(sx_rd *r, sx_smp_link_data *d);
void smp_link_data_encode(sx_wr *w, const sx_smp_link_data *d);

#endif
