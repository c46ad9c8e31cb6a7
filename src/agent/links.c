/*
 * SimpleX connection links and short links (see links.h).
 */
#include "agent/links.h"

#include <string.h>

#include "agent/agent_proto.h"
#include "crypto/crypto.h"

/* memchr that accepts (NULL, 0) */
static const char *find_chr(const void *s, int c, size_t n)
{
    return n ? (const char *)memchr(s, c, n) : NULL;
}

#define LINK_MAX_PARAMS 64

static int has_char(const char *s, size_t n, char c)
{
    return find_chr(s, c, n) != NULL;
}

static int starts(const char *s, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && memcmp(s, pre, k) == 0;
}

/* Base64url token that must be the whole text (the reference's strP of a
 * ByteString under parseAll). */
static int b64_whole(sx_wr *out, const char *s, size_t n)
{
    if (n == 0 || sx_b64url_span(s, n) != n)
        return SIMPLEX_ERR_PARSE;
    return sx_b64url_decode(out, s, n);
}

/* Percent-decoded value of a query param into a fresh writer. */
static int param_value(sx_wr *out, const sx_query_param *ps, size_t count,
                       const char *key, int *found)
{
    const sx_query_param *q = sx_query_find(ps, count, key);
    *found = q != NULL;
    if (!q)
        return 0;
    return sx_percent_decode(out, q->val, q->val_len);
}

static void wr_fail(sx_wr *w, int rc)
{
    if (!w->err)
        w->err = rc;
}

/* Writes an X448 public key's SPKI DER: as a short string (binary form)
 * or as base64url (link form). */
static void wr_x448_spki(sx_wr *w, const uint8_t k[SX_X448_BYTES], int b64)
{
    uint8_t der[SX_KEY_DER_MAX];
    size_t len = 0;
    int rc = sx_key_public_encode(der, sizeof der, &len, SX_KEY_X448, k);
    if (rc) {
        wr_fail(w, rc);
        return;
    }
    if (b64)
        sx_b64url_encode(w, der, len);
    else
        sx_wr_short(w, der, len);
}

/* ---- E2E ratchet params, link form ---- */

void sx_e2e_params_uri_print(sx_wr *w, const sx_e2e_params_uri *e)
{
    /* rendered without escaping (the values need none) */
    sx_wr_str(w, "v=");
    sx_vrange_str_encode(w, e->vrange);
    sx_wr_str(w, "&x3dh=");
    wr_x448_spki(w, e->k1, 1);
    sx_wr_u8(w, ',');
    wr_x448_spki(w, e->k2, 1);
    if (e->kem == SX_KEM_PROPOSED && e->vrange.max >= SX_E2E_VERSION_PQ) {
        sx_wr_str(w, "&kem_key=");
        sx_b64url_encode(w, e->kem_pk, SX_KEM_PK_BYTES);
    } else if (e->kem != SX_KEM_NONE && e->kem != SX_KEM_PROPOSED) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
    }
}

static int parse_x448_b64(uint8_t k[SX_X448_BYTES], const char *s, size_t n)
{
    uint8_t buf[128], raw[SX_ED448_PK_BYTES];
    sx_wr w;
    sx_key_alg alg = SX_KEY_NONE;
    size_t raw_len = 0;
    int rc;

    sx_wr_init_fixed(&w, buf, sizeof buf);
    rc = b64_whole(&w, s, n);
    if (rc == 0)
        rc = sx_wr_error(&w);
    if (rc)
        return rc == SIMPLEX_ERR_BUFFER_TOO_SMALL ? SIMPLEX_ERR_KEY : rc;
    rc = sx_key_public_decode(&alg, raw, &raw_len, SX_KEY_X448, buf, w.len);
    if (rc)
        return rc;
    memcpy(k, raw, SX_X448_BYTES);
    return 0;
}

int sx_e2e_params_uri_parse(sx_e2e_params_uri *out, const char *s, size_t n)
{
    sx_query_param ps[LINK_MAX_PARAMS];
    size_t count = 0;
    sx_wr v;
    int found, rc;
    sx_e2e_params_uri e;

    if (!out || (!s && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(&e, 0, sizeof e);
    rc = sx_query_parse(ps, LINK_MAX_PARAMS, &count, s, n);
    if (rc)
        return rc;
    sx_wr_init(&v);
    rc = param_value(&v, ps, count, "v", &found);
    if (rc == 0 && !found)
        rc = SIMPLEX_ERR_PARSE;
    if (rc == 0)
        rc = sx_wr_error(&v);
    if (rc == 0)
        rc = sx_vrange_str_decode(&e.vrange, (const char *)v.p, v.len);
    if (rc == 0) {
        sx_wr_reset(&v);
        rc = param_value(&v, ps, count, "x3dh", &found);
        if (rc == 0 && !found)
            rc = SIMPLEX_ERR_PARSE;
        if (rc == 0)
            rc = sx_wr_error(&v);
    }
    if (rc == 0) {
        const char *t = (const char *)v.p;
        const char *comma = v.len ? find_chr(t, ',', v.len) : NULL;
        size_t l1;
        if (!comma)
            rc = SIMPLEX_ERR_PARSE;
        else {
            l1 = (size_t)(comma - t);
            if (has_char(comma + 1, v.len - l1 - 1, ','))
                rc = SIMPLEX_ERR_PARSE; /* exactly two keys */
            if (rc == 0)
                rc = parse_x448_b64(e.k1, t, l1);
            if (rc == 0)
                rc = parse_x448_b64(e.k2, comma + 1, v.len - l1 - 1);
        }
    }
    if (rc == 0 && e.vrange.max >= SX_E2E_VERSION_PQ) {
        sx_wr_reset(&v);
        rc = param_value(&v, ps, count, "kem_key", &found);
        if (rc == 0 && found) {
            sx_wr kw;
            uint8_t kb[SX_KEM_PK_BYTES + 8];
            rc = sx_wr_error(&v);
            sx_wr_init_fixed(&kw, kb, sizeof kb);
            if (rc == 0)
                rc = b64_whole(&kw, (const char *)v.p, v.len);
            if (rc == 0 && (sx_wr_error(&kw) || kw.len != SX_KEM_PK_BYTES))
                rc = SIMPLEX_ERR_KEY;
            if (rc == 0) {
                memcpy(e.kem_pk, kb, SX_KEM_PK_BYTES);
                e.kem = SX_KEM_PROPOSED;
                /* kem_ct makes it "accepted": not valid in a link */
                if (sx_query_find(ps, count, "kem_ct"))
                    rc = SIMPLEX_ERR_PARSE;
            }
        }
    }
    sx_wr_free(&v);
    if (rc)
        return rc;
    *out = e;
    return 0;
}

void sx_e2e_params_uri_encode(sx_wr *w, const sx_e2e_params_uri *e)
{
    sx_vrange_encode(w, e->vrange);
    wr_x448_spki(w, e->k1, 0);
    wr_x448_spki(w, e->k2, 0);
    if (e->kem != SX_KEM_NONE && e->kem != SX_KEM_PROPOSED) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    sx_ratchet_write_kem(w, e->kem, e->kem_pk, NULL);
}

int sx_e2e_params_uri_read(sx_rd *r, sx_e2e_params_uri *out)
{
    size_t start = r->pos;
    int present, rc;
    sx_e2e_params_uri e;
    memset(&e, 0, sizeof e);
    rc = sx_vrange_decode(r, &e.vrange);
    if (rc == 0)
        rc = sx_ratchet_read_key(r, e.k1);
    if (rc == 0)
        rc = sx_ratchet_read_key(r, e.k2);
    if (rc == 0)
        rc = sx_rd_maybe(r, &present);
    if (rc == 0 && present) {
        uint8_t ct[SX_KEM_CT_BYTES];
        rc = sx_ratchet_read_kem(r, &e.kem, e.kem_pk, ct);
        if (rc == 0 && e.kem != SX_KEM_PROPOSED)
            rc = SIMPLEX_ERR_PARSE;
    }
    if (rc) {
        r->pos = start;
        return rc;
    }
    *out = e;
    return 0;
}

/* ---- connection links ---- */

void sx_link_clear(sx_conn_link *l)
{
    if (!l)
        return;
    if (l->client_data)
        sx_free(l->client_data);
    l->client_data = NULL;
    l->client_data_len = 0;
    l->has_client_data = 0;
}

static int set_client_data(sx_conn_link *l, const uint8_t *p, size_t n)
{
    l->client_data = sx_malloc(n ? n : 1);
    if (!l->client_data)
        return SIMPLEX_ERR_NOMEM;
    if (n)
        memcpy(l->client_data, p, n);
    l->client_data_len = n;
    l->has_client_data = 1;
    return 0;
}

/* "simplex:" or "https://<host>[:port]"; sets *used. */
static int parse_scheme(const char *s, size_t n, size_t *used)
{
    sx_host h;
    size_t k = 0, i;
    int rc;

    if (starts(s, n, "simplex:")) {
        *used = 8;
        return 0;
    }
    if (!starts(s, n, "https://"))
        return SIMPLEX_ERR_PARSE;
    rc = sx_host_parse_prefix(&h, s + 8, n - 8, &k);
    if (rc)
        return rc;
    i = 8 + k;
    if (i < n && s[i] == ':') {
        size_t d = i + 1;
        while (d < n && s[d] >= '0' && s[d] <= '9')
            d++;
        if (d == i + 1)
            return SIMPLEX_ERR_PARSE;
        i = d;
    }
    *used = i;
    return 0;
}

static int parse_queues(sx_conn_link *l, const char *s, size_t n)
{
    size_t i = 0;

    l->n_queues = 0;
    if (n == 0)
        return SIMPLEX_ERR_PARSE;
    for (;;) {
        const char *semi = find_chr(s + i, ';', n - i);
        size_t end = semi ? (size_t)(semi - s) : n;
        int rc;
        if (l->n_queues >= SX_LINK_MAX_QUEUES)
            return SIMPLEX_ERR_TOO_LARGE;
        if (end == i)
            return SIMPLEX_ERR_PARSE;
        rc = sx_queue_uri_parse(&l->queues[l->n_queues], s + i, end - i);
        if (rc)
            return rc;
        l->n_queues++;
        if (!semi)
            return 0;
        i = end + 1;
    }
}

static int link_parse(sx_conn_link *l, const char *s, size_t n)
{
    sx_query_param ps[LINK_MAX_PARAMS];
    size_t count = 0, i = 0;
    sx_wr v;
    int found, rc;

    rc = parse_scheme(s, n, &i);
    if (rc)
        return rc;
    if (i >= n || s[i] != '/')
        return SIMPLEX_ERR_PARSE;
    i++;
    if (starts(s + i, n - i, "invitation")) {
        l->mode = SX_LINK_INVITATION;
        i += 10;
    } else if (starts(s + i, n - i, "contact")) {
        l->mode = SX_LINK_CONTACT;
        i += 7;
    } else {
        return SIMPLEX_ERR_PARSE;
    }
    if (i < n && s[i] == '/')
        i++;
    if (!starts(s + i, n - i, "#/?"))
        return SIMPLEX_ERR_PARSE;
    i += 3;
    /* the query runs to a space or newline, and must end the input */
    if (has_char(s + i, n - i, ' ') || has_char(s + i, n - i, '\n'))
        return SIMPLEX_ERR_PARSE;
    rc = sx_query_parse(ps, LINK_MAX_PARAMS, &count, s + i, n - i);
    if (rc)
        return rc;

    sx_wr_init(&v);
    rc = param_value(&v, ps, count, "v", &found);
    if (rc == 0 && !found)
        rc = SIMPLEX_ERR_PARSE;
    if (rc == 0)
        rc = sx_wr_error(&v);
    if (rc == 0)
        rc = sx_vrange_str_decode(&l->agent_vrange, (const char *)v.p, v.len);
    if (rc == 0) {
        sx_wr_reset(&v);
        rc = param_value(&v, ps, count, "smp", &found);
        if (rc == 0 && !found)
            rc = SIMPLEX_ERR_PARSE;
        if (rc == 0)
            rc = sx_wr_error(&v);
        if (rc == 0)
            rc = parse_queues(l, (const char *)v.p, v.len);
    }
    if (rc == 0) {
        sx_wr_reset(&v);
        rc = param_value(&v, ps, count, "data", &found);
        if (rc == 0)
            rc = sx_wr_error(&v);
        if (rc == 0 && found)
            rc = set_client_data(l, v.p, v.len);
    }
    if (rc == 0 && l->mode == SX_LINK_INVITATION) {
        sx_wr_reset(&v);
        rc = param_value(&v, ps, count, "e2e", &found);
        if (rc == 0 && !found)
            rc = SIMPLEX_ERR_PARSE;
        if (rc == 0)
            rc = sx_wr_error(&v);
        if (rc == 0)
            rc = sx_e2e_params_uri_parse(&l->e2e, (const char *)v.p, v.len);
    }
    if (rc == 0 && l->mode == SX_LINK_CONTACT) {
        /* adjustAgentVRange */
        uint16_t lo = l->agent_vrange.min < SX_AGENT_VERSION_MIN
                          ? SX_AGENT_VERSION_MIN
                          : l->agent_vrange.min;
        uint16_t hi = l->agent_vrange.max < lo ? lo : l->agent_vrange.max;
        l->agent_vrange.min = lo;
        l->agent_vrange.max = hi;
    }
    sx_wr_free(&v);
    return rc;
}

int sx_link_parse(sx_conn_link *out, const char *s, size_t n)
{
    int rc;

    if (!out || (!s && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    rc = link_parse(out, s, n);
    if (rc) {
        sx_link_clear(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

int sx_link_print(sx_wr *w, const sx_conn_link *l)
{
    sx_wr t;
    size_t i;

    if (!w || !l || l->n_queues == 0 || l->n_queues > SX_LINK_MAX_QUEUES)
        return SIMPLEX_ERR_INVALID_ARG;
    if (l->mode != SX_LINK_INVITATION && l->mode != SX_LINK_CONTACT)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_str(w, l->mode == SX_LINK_INVITATION ? "simplex:/invitation#/?"
                                               : "simplex:/contact#/?");
    sx_wr_init(&t);
    sx_vrange_str_encode(&t, l->agent_vrange);
    if (!sx_wr_error(&t))
        sx_query_append(w, 1, "v", (const char *)t.p, t.len);
    sx_wr_reset(&t);
    for (i = 0; i < l->n_queues; i++) {
        if (i)
            sx_wr_u8(&t, ';');
        sx_queue_uri_print(&t, &l->queues[i]);
    }
    if (!sx_wr_error(&t))
        sx_query_append(w, 0, "smp", (const char *)t.p, t.len);
    if (l->mode == SX_LINK_INVITATION) {
        sx_wr_reset(&t);
        sx_e2e_params_uri_print(&t, &l->e2e);
        if (!sx_wr_error(&t))
            sx_query_append(w, 0, "e2e", (const char *)t.p, t.len);
    }
    if (l->has_client_data)
        sx_query_append(w, 0, "data", (const char *)l->client_data,
                        l->client_data_len);
    if (sx_wr_error(&t))
        wr_fail(w, sx_wr_error(&t));
    sx_wr_free(&t);
    return sx_wr_error(w);
}

int sx_link_encode(sx_wr *w, const sx_conn_link *l)
{
    size_t i;

    if (!w || !l || l->n_queues == 0 || l->n_queues > SX_LINK_MAX_QUEUES)
        return SIMPLEX_ERR_INVALID_ARG;
    if (l->mode != SX_LINK_INVITATION && l->mode != SX_LINK_CONTACT)
        return SIMPLEX_ERR_INVALID_ARG;
    sx_wr_u8(w, (uint8_t)l->mode);
    sx_vrange_encode(w, l->agent_vrange);
    sx_wr_count(w, l->n_queues);
    for (i = 0; i < l->n_queues; i++)
        sx_queue_uri_encode(w, &l->queues[i]);
    sx_wr_maybe(w, l->has_client_data != 0);
    if (l->has_client_data)
        sx_wr_large(w, l->client_data, l->client_data_len);
    if (l->mode == SX_LINK_INVITATION)
        sx_e2e_params_uri_encode(w, &l->e2e);
    return sx_wr_error(w);
}

static int link_decode(sx_conn_link *l, sx_rd *r)
{
    uint8_t mode;
    size_t i;
    int present, rc;

    rc = sx_rd_u8(r, &mode);
    if (rc)
        return rc;
    if (mode != 'I' && mode != 'C')
        return SIMPLEX_ERR_PARSE;
    l->mode = (sx_link_mode)mode;
    rc = sx_vrange_decode(r, &l->agent_vrange);
    if (rc == 0)
        rc = sx_rd_count_nonempty(r, &l->n_queues);
    if (rc)
        return rc;
    if (l->n_queues > SX_LINK_MAX_QUEUES)
        return SIMPLEX_ERR_TOO_LARGE;
    for (i = 0; i < l->n_queues; i++) {
        rc = sx_queue_uri_decode(r, &l->queues[i]);
        if (rc)
            return rc;
        /* the reference patches a missing mode to "contact" */
        if (l->queues[i].addr.mode == SX_QUEUE_MODE_NONE)
            l->queues[i].addr.mode = SX_QUEUE_MODE_CONTACT;
    }
    rc = sx_rd_maybe(r, &present);
    if (rc == 0 && present) {
        const uint8_t *p;
        size_t n;
        rc = sx_rd_large(r, &p, &n);
        if (rc == 0)
            rc = set_client_data(l, p, n);
    }
    if (rc == 0 && l->mode == SX_LINK_INVITATION)
        rc = sx_e2e_params_uri_read(r, &l->e2e);
    if (rc == 0)
        rc = sx_rd_end(r);
    return rc;
}

int sx_link_decode(sx_conn_link *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    int rc;

    if (!out || (!p && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    sx_rd_init(&r, p, n);
    rc = link_decode(out, &r);
    if (rc) {
        sx_link_clear(out);
        memset(out, 0, sizeof *out);
    }
    return rc;
}
