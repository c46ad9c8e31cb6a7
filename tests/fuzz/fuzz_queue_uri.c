/*
 * Fuzz harness: SMP queue URIs (text and binary) and SMP queue info.
 * Whatever parses must print / encode back to something that parses to
 * the same queue; binary forms must be stable after one round (the first
 * round may drop what the versions cannot carry).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/queue_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int has_ipv6(const sx_server_addr *a)
{
    for (size_t i = 0; i < a->n_hosts; i++)
        if (a->hosts[i].kind == SX_HOST_IPV6)
            return 1;
    return 0;
}

static void check_text(const uint8_t *data, size_t size)
{
    sx_queue_uri q, q2;
    sx_wr w, w2;

    if (sx_queue_uri_parse(&q, (const char *)data, size) != 0)
        return;
    sx_wr_init(&w);
    sx_queue_uri_print(&w, &q);
    if (sx_wr_error(&w) != 0)
        abort();
    /* IPv6 hosts are printed without brackets (as the reference does), so
     * they may read back differently */
    if (!has_ipv6(&q.addr.server)) {
        if (sx_queue_uri_parse(&q2, (const char *)w.p, w.len) != 0 ||
            !sx_queue_uri_equal(&q, &q2))
            abort();
        sx_wr_init(&w2);
        sx_queue_uri_print(&w2, &q2);
        if (w2.err || w2.len != w.len || memcmp(w2.p, w.p, w.len) != 0)
            abort();
        sx_wr_free(&w2);
    }
    sx_wr_free(&w);
}

static int decode(int info, const uint8_t *p, size_t n, sx_queue_uri *q,
                  sx_queue_info *qi, size_t *used)
{
    sx_rd r;
    int rc;
    sx_rd_init(&r, p, n);
    rc = info ? sx_queue_info_decode(&r, qi) : sx_queue_uri_decode(&r, q);
    if (rc != 0 && r.pos != 0)
        abort();
    if (r.pos > n)
        abort();
    *used = r.pos;
    return rc;
}

static void encode(int info, sx_wr *w, const sx_queue_uri *q,
                   const sx_queue_info *qi)
{
    sx_wr_init(w);
    if (info)
        sx_queue_info_encode(w, qi);
    else
        sx_queue_uri_encode(w, q);
    if (sx_wr_error(w) != 0)
        abort();
}

static void check_binary(const uint8_t *data, size_t size, int info)
{
    sx_queue_uri q1, q2, q3;
    sx_queue_info i1, i2, i3;
    sx_wr w1, w2;
    size_t used;
    const sx_server_addr *srv;

    if (decode(info, data, size, &q1, &i1, &used) != 0)
        return;
    srv = info ? &i1.addr.server : &q1.addr.server;
    encode(info, &w1, &q1, &i1);
    if (decode(info, w1.p, w1.len, &q2, &i2, &used) != 0) {
        if (!has_ipv6(srv))
            abort();
        sx_wr_free(&w1);
        return;
    }
    if (used != w1.len)
        abort();
    encode(info, &w2, &q2, &i2);
    if (w2.len != w1.len || memcmp(w2.p, w1.p, w1.len) != 0)
        abort();
    if (decode(info, w2.p, w2.len, &q3, &i3, &used) != 0 || used != w2.len)
        abort();
    if (info ? !sx_queue_info_equal(&i2, &i3) : !sx_queue_uri_equal(&q2, &q3))
        abort();
    sx_wr_free(&w2);
    sx_wr_free(&w1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_text(data, size);
    check_binary(data, size, 0);
    check_binary(data, size, 1);
    return 0;
}
