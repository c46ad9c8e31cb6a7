/*
 * Fuzz harness: agent protocol codecs. The first byte picks the codec:
 *   0 connection link text     1 connection link binary
 *   2 short link text          3 short link binary
 *   4 agent envelope           5 agent message
 *   6 e2e params (link form)
 * Whatever parses must print / encode back to something that parses and
 * re-encodes to the same bytes (conn info replies: see agent_message);
 * envelopes must re-encode to the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent_proto.h"
#include "agent/links.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const sx_wr *a, const sx_wr *b)
{
    if (a->err || b->err || a->len != b->len ||
        (a->len && memcmp(a->p, b->p, a->len) != 0))
        abort();
}

static int has_ipv6(const sx_server_addr *a)
{
    for (size_t i = 0; i < a->n_hosts; i++)
        if (a->hosts[i].kind == SX_HOST_IPV6)
            return 1;
    return 0;
}

static int link_has_ipv6(const sx_conn_link *l)
{
    for (size_t i = 0; i < l->n_queues; i++)
        if (has_ipv6(&l->queues[i].addr.server))
            return 1;
    return 0;
}

static void conn_link(const uint8_t *p, size_t n, int binary)
{
    sx_conn_link *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    sx_wr w1, w2;
    int rc;

    if (!a || !b)
        abort();
    rc = binary ? sx_link_decode(a, p, n)
                : sx_link_parse(a, (const char *)p, n);
    if (rc) {
        if (a->client_data)
            abort();
        goto out;
    }
    sx_wr_init(&w1);
    sx_wr_init(&w2);
    if (binary) {
        if (sx_link_encode(&w1, a) || sx_link_decode(b, w1.p, w1.len) ||
            sx_link_encode(&w2, b))
            abort();
        same(&w1, &w2);
        sx_link_clear(b);
    } else if (!link_has_ipv6(a)) {
        if (sx_link_print(&w1, a) ||
            sx_link_parse(b, (const char *)w1.p, w1.len) ||
            sx_link_print(&w2, b))
            abort();
        same(&w1, &w2);
        sx_link_clear(b);
        /* the binary form of a parsed link decodes back */
        sx_wr_reset(&w1);
        if (sx_link_encode(&w1, a) == 0) {
            if (sx_link_decode(b, w1.p, w1.len))
                abort();
            sx_link_clear(b);
        }
    }
    sx_wr_free(&w1);
    sx_wr_free(&w2);
    sx_link_clear(a);
out:
    free(a);
    free(b);
}

static void short_link(const uint8_t *p, size_t n, int binary)
{
    sx_short_link a, b;
    sx_wr w1, w2;
    int rc = binary ? sx_short_link_decode(&a, p, n)
                    : sx_short_link_parse(&a, (const char *)p, n);
    if (rc)
        return;
    sx_wr_init(&w1);
    sx_wr_init(&w2);
    if (binary) {
        if (sx_short_link_encode(&w1, &a) ||
            sx_short_link_decode(&b, w1.p, w1.len) ||
            sx_short_link_encode(&w2, &b))
            abort();
        same(&w1, &w2);
    } else if (!has_ipv6(&a.server)) {
        if (sx_short_link_print(&w1, &a) ||
            sx_short_link_parse(&b, (const char *)w1.p, w1.len) ||
            sx_short_link_print(&w2, &b))
            abort();
        same(&w1, &w2);
    }
    sx_wr_free(&w1);
    sx_wr_free(&w2);
}

static void envelope(const uint8_t *p, size_t n)
{
    sx_agent_envelope *e = malloc(sizeof *e);
    sx_wr w;

    if (!e)
        abort();
    if (sx_agent_envelope_decode(e, p, n) == 0) {
        sx_wr_init(&w);
        if (sx_agent_envelope_encode(&w, e) || w.len != n ||
            memcmp(w.p, p, n) != 0)
            abort();
        sx_wr_free(&w);
    }
    free(e);
}

static void agent_message(const uint8_t *p, size_t n)
{
    sx_agent_message *a = malloc(sizeof *a), *b = malloc(sizeof *b);
    sx_wr w1, w2;

    if (!a || !b)
        abort();
    if (sx_agent_message_decode(a, p, n) == 0) {
        sx_wr_init(&w1);
        sx_wr_init(&w2);
        if (sx_agent_message_encode(&w1, a) ||
            sx_agent_message_decode(b, w1.p, w1.len) ||
            sx_agent_message_encode(&w2, b))
            abort();
        /* conn info reply: as in the reference, the last queue's optional
         * mode byte is read greedily from the conn info that follows, and
         * a version that cannot carry it drops it, so each round may take
         * one more byte; only the parse is checked then */
        if (a->type != SX_AGENT_MSG_CONN_INFO_REPLY)
            same(&w1, &w2);
        sx_wr_free(&w1);
        sx_wr_free(&w2);
    }
    free(a);
    free(b);
}

static void e2e_uri(const uint8_t *p, size_t n)
{
    sx_e2e_params_uri a, b;
    sx_wr w1, w2;
    if (sx_e2e_params_uri_parse(&a, (const char *)p, n))
        return;
    sx_wr_init(&w1);
    sx_wr_init(&w2);
    sx_e2e_params_uri_print(&w1, &a);
    if (sx_wr_error(&w1) ||
        sx_e2e_params_uri_parse(&b, (const char *)w1.p, w1.len))
        abort();
    sx_e2e_params_uri_print(&w2, &b);
    same(&w1, &w2);
    sx_wr_free(&w1);
    sx_wr_free(&w2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    switch (data[0] % 7) {
    case 0:
        conn_link(data + 1, size - 1, 0);
        break;
    case 1:
        conn_link(data + 1, size - 1, 1);
        break;
    case 2:
        short_link(data + 1, size - 1, 0);
        break;
    case 3:
        short_link(data + 1, size - 1, 1);
        break;
    case 4:
        envelope(data + 1, size - 1);
        break;
    case 5:
        agent_message(data + 1, size - 1);
        break;
    default:
        e2e_uri(data + 1, size - 1);
        break;
    }
    return 0;
}
