/*
 * Short connection links (ConnShortLink), see links.h.
 */
#include "agent/links.h"

#include <string.h>

/* memchr that accepts (NULL, 0) */
static const char *find_chr(const void *s, int c, size_t n)
{
    return n ? (const char *)memchr(s, c, n) : NULL;
}

static int ct_valid(char c)
{
    return c == 'A' || c == 'C' || c == 'G' || c == 'R';
}

static char to_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

static char to_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static void wr_fail(sx_wr *w, int rc)
{
    if (!w->err)
        w->err = rc;
}

/* base64url without '=' padding */
static void b64_unpadded(sx_wr *w, const uint8_t *p, size_t n)
{
    size_t start = w->len;
    sx_b64url_encode(w, p, n);
    if (sx_wr_error(w))
        return;
    while (w->len > start && w->p[w->len - 1] == '=')
        w->len--;
}

/* A base64url token at s[*i..n) into out[cap]; at least one character. */
static int b64_token(uint8_t *out, size_t cap, size_t *out_len,
                     const char *s, size_t n, size_t *i)
{
    size_t k;
    sx_wr w;
    int rc;

    if (*i >= n)
        return SIMPLEX_ERR_PARSE;
    k = sx_b64url_span(s + *i, n - *i);
    if (k == 0)
        return SIMPLEX_ERR_PARSE;
    sx_wr_init_fixed(&w, out, cap);
    rc = sx_b64url_decode(&w, s + *i, k);
    if (rc == 0)
        rc = sx_wr_error(&w);
    if (rc)
        return rc == SIMPLEX_ERR_BUFFER_TOO_SMALL ? SIMPLEX_ERR_TOO_LARGE : rc;
    *out_len = w.len;
    *i += k;
    return 0;
}

static int add_host(sx_server_addr *srv, const char *s, size_t n)
{
    size_t used = 0;
    int rc;

    if (srv->n_hosts >= SX_SERVER_MAX_HOSTS)
        return SIMPLEX_ERR_TOO_LARGE;
    rc = sx_host_parse_prefix(&srv->hosts[srv->n_hosts], s, n, &used);
    if (rc)
        return rc;
    if (used != n)
        return SIMPLEX_ERR_PARSE;
    srv->n_hosts++;
    return 0;
}

static int server_query(sx_short_link *l, const char *q, size_t n)
{
    sx_query_param ps[32];
    size_t count = 0;
    const sx_query_param *p;
    sx_wr v;
    int rc;

    rc = sx_query_parse(ps, 32, &count, q, n);
    if (rc)
        return rc;
    sx_wr_init(&v);
    p = sx_query_find(ps, count, "h");
    if (p) {
        rc = sx_percent_decode(&v, p->val, p->val_len);
        if (rc == 0)
            rc = sx_wr_error(&v);
        if (rc == 0 && v.len == 0)
            rc = SIMPLEX_ERR_PARSE;
        if (rc == 0) {
            const char *t = (const char *)v.p;
            size_t i = 0;
            for (;;) {
                const char *c = find_chr(t + i, ',', v.len - i);
                size_t end = c ? (size_t)(c - t) : v.len;
                rc = add_host(&l->server, t + i, end - i);
                if (rc || !c)
                    break;
                i = end + 1;
            }
        }
    }
    if (rc == 0 && l->server.n_hosts == 0)
        rc = SIMPLEX_ERR_PARSE; /* short link without server */
    if (rc == 0 && (p = sx_query_find(ps, count, "p")) != NULL) {
        uint16_t port;
        sx_wr_reset(&v);
        rc = sx_percent_decode(&v, p->val, p->val_len);
        if (rc == 0)
            rc = sx_wr_error(&v);
        if (rc == 0)
            rc = sx_u16_str_decode(&port, (const char *)v.p, v.len);
        if (rc == 0) {
            char buf[8];
            size_t k = 0, j;
            char rev[8];
            do {
                rev[k++] = (char)('0' + port % 10);
                port /= 10;
            } while (port);
            for (j = 0; j < k; j++)
                buf[j] = rev[k - 1 - j];
            buf[k] = 0;
            memcpy(l->server.port, buf, k + 1);
        }
    }
    if (rc == 0) {
        p = sx_query_find(ps, count, "c");
        if (!p) {
            rc = SIMPLEX_ERR_UNSUPPORTED; /* empty key hash */
        } else {
            uint8_t kh[64];
            size_t kl = 0, i = 0;
            sx_wr_reset(&v);
            rc = sx_percent_decode(&v, p->val, p->val_len);
            if (rc == 0)
                rc = sx_wr_error(&v);
            if (rc == 0)
                rc = b64_token(kh, sizeof kh, &kl, (const char *)v.p, v.len,
                               &i);
            if (rc == 0 && i != v.len)
                rc = SIMPLEX_ERR_PARSE;
            if (rc == 0 && kl != 32)
                rc = kl == 0 ? SIMPLEX_ERR_UNSUPPORTED : SIMPLEX_ERR_PARSE;
            if (rc == 0)
                memcpy(l->server.key_hash, kh, 32);
        }
    }
    sx_wr_free(&v);
    return rc;
}

static int short_parse(sx_short_link *l, const char *s, size_t n)
{
    size_t i;
    int rc;
    char c;

    if (n >= 8 && memcmp(s, "simplex:", 8) == 0) {
        l->scheme = SX_SHORT_SIMPLEX;
        i = 8;
    } else if (n >= 8 && memcmp(s, "https://", 8) == 0) {
        size_t used = 0;
        l->scheme = SX_SHORT_SERVER;
        rc = sx_host_parse_prefix(&l->server.hosts[0], s + 8, n - 8, &used);
        if (rc)
            return rc;
        l->server.n_hosts = 1;
        i = 8 + used;
    } else {
        return SIMPLEX_ERR_PARSE; /* bad short link scheme */
    }
    if (i >= n || s[i] != '/')
        return SIMPLEX_ERR_PARSE;
    i++;
    if (i >= n)
        return SIMPLEX_ERR_TRUNCATED;
    c = s[i++];
    if (ct_valid(to_upper(c))) {
        l->mode = SX_LINK_CONTACT;
        l->contact_type = to_upper(c);
    } else if (c == 'i') {
        l->mode = SX_LINK_INVITATION;
    } else {
        return SIMPLEX_ERR_PARSE; /* unknown short link type */
    }
    if (i < n && s[i] == '/')
        i++;
    if (i >= n || s[i] != '#')
        return SIMPLEX_ERR_PARSE;
    i++;
    if (l->mode == SX_LINK_INVITATION) {
        rc = b64_token(l->link_id, sizeof l->link_id, &l->link_id_len, s, n,
                       &i);
        if (rc)
            return rc;
        if (i >= n || s[i] != '/')
            return SIMPLEX_ERR_PARSE;
        i++;
    }
    rc = b64_token(l->key, sizeof l->key, &l->key_len, s, n, &i);
    if (rc)
        return rc;
    if (i == n)
        /* no query: a server of one host without a key hash */
        return l->server.n_hosts ? SIMPLEX_ERR_UNSUPPORTED : SIMPLEX_ERR_PARSE;
    if (s[i] != '?')
        return SIMPLEX_ERR_PARSE;
    i++;
    if (find_chr(s + i, ' ', n - i) || find_chr(s + i, '\n', n - i))
        return SIMPLEX_ERR_PARSE;
    return server_query(l, s + i, n - i);
}

int sx_short_link_parse(sx_short_link *out, const char *s, size_t n)
{
    int rc;

    if (!out || (!s && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    rc = short_parse(out, s, n);
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}

static int short_valid(const sx_short_link *l)
{
    if (l->server.n_hosts == 0 || l->server.n_hosts > SX_SERVER_MAX_HOSTS)
        return 0;
    if (l->mode == SX_LINK_INVITATION)
        return 1;
    return l->mode == SX_LINK_CONTACT && ct_valid(l->contact_type);
}

int sx_short_link_print(sx_wr *w, const sx_short_link *l)
{
    size_t first, i;
    sx_wr q, t;

    if (!w || !l || !short_valid(l))
        return SIMPLEX_ERR_INVALID_ARG;
    if (l->scheme == SX_SHORT_SERVER) {
        sx_wr_str(w, "https://");
        sx_wr_str(w, l->server.hosts[0].name);
        first = 1;
    } else {
        sx_wr_str(w, "simplex:");
        first = 0;
    }
    sx_wr_u8(w, '/');
    sx_wr_u8(w, l->mode == SX_LINK_INVITATION ? 'i'
                                              : (uint8_t)to_lower(l->contact_type));
    sx_wr_u8(w, '#');
    if (l->mode == SX_LINK_INVITATION && l->link_id_len) {
        b64_unpadded(w, l->link_id, l->link_id_len);
        sx_wr_u8(w, '/');
    }
    b64_unpadded(w, l->key, l->key_len);
    sx_wr_init(&q);
    sx_wr_init(&t);
    if (first < l->server.n_hosts) {
        for (i = first; i < l->server.n_hosts; i++) {
            if (i > first)
                sx_wr_u8(&t, ',');
            sx_wr_str(&t, l->server.hosts[i].name);
        }
        if (!sx_wr_error(&t))
            sx_query_append(&q, q.len == 0, "h", (const char *)t.p, t.len);
    }
    if (l->server.port[0])
        sx_query_append(&q, q.len == 0, "p", l->server.port,
                        strlen(l->server.port));
    sx_wr_reset(&t);
    b64_unpadded(&t, l->server.key_hash, sizeof l->server.key_hash);
    if (!sx_wr_error(&t))
        sx_query_append(&q, q.len == 0, "c", (const char *)t.p, t.len);
    if (sx_wr_error(&t))
        wr_fail(w, sx_wr_error(&t));
    if (sx_wr_error(&q))
        wr_fail(w, sx_wr_error(&q));
    else if (q.len) {
        sx_wr_u8(w, '?');
        sx_wr_raw(w, q.p, q.len);
    }
    sx_wr_free(&q);
    sx_wr_free(&t);
    return sx_wr_error(w);
}

int sx_short_link_encode(sx_wr *w, const sx_short_link *l)
{
    if (!w || !l || !short_valid(l))
        return SIMPLEX_ERR_INVALID_ARG;
    if (l->mode == SX_LINK_INVITATION) {
        sx_wr_u8(w, 'I');
        sx_server_addr_encode(w, &l->server);
        sx_wr_short(w, l->link_id, l->link_id_len);
    } else {
        sx_wr_u8(w, 'C');
        sx_wr_u8(w, (uint8_t)l->contact_type);
        sx_server_addr_encode(w, &l->server);
    }
    sx_wr_short(w, l->key, l->key_len);
    return sx_wr_error(w);
}

int sx_short_link_decode(sx_short_link *out, const uint8_t *p, size_t n)
{
    sx_rd r;
    uint8_t m, ct;
    const uint8_t *b;
    size_t bl;
    int rc;

    if (!out || (!p && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    out->scheme = SX_SHORT_SERVER;
    sx_rd_init(&r, p, n);
    rc = sx_rd_u8(&r, &m);
    if (rc)
        goto done;
    if (m == 'I') {
        out->mode = SX_LINK_INVITATION;
        rc = sx_server_addr_decode(&r, &out->server);
        if (rc == 0)
            rc = sx_rd_short(&r, &b, &bl);
        if (rc == 0) {
            memcpy(out->link_id, b, bl);
            out->link_id_len = bl;
        }
    } else if (m == 'C') {
        out->mode = SX_LINK_CONTACT;
        rc = sx_rd_u8(&r, &ct);
        if (rc == 0 && !ct_valid((char)ct))
            rc = SIMPLEX_ERR_PARSE;
        out->contact_type = (char)ct;
        if (rc == 0)
            rc = sx_server_addr_decode(&r, &out->server);
    } else {
        rc = SIMPLEX_ERR_PARSE;
    }
    if (rc == 0)
        rc = sx_rd_short(&r, &b, &bl);
    if (rc == 0) {
        memcpy(out->key, b, bl);
        out->key_len = bl;
        rc = sx_rd_end(&r);
    }
done:
    if (rc)
        memset(out, 0, sizeof *out);
    return rc;
}
