/*
 * SMP queue URIs (SMPQueueUri) and queue information (SMPQueueInfo), text
 * and binary, as simplexmq 6.5.5.0 writes and reads them.
 *
 * Text form (strEncode):
 *   <server>/<sender id>#/?v=<range>&dh=<key>[&q=m|c][&k=s][&srv=<hosts>]
 *   - the server never carries basic auth;
 *   - when the lowest client version is below 2 (the legacy form) only the
 *     first host goes in the authority and the others, comma-separated,
 *     in srv=;
 *   - q=m / q=c give the queue mode; k=s (the sender can secure the queue)
 *     is added for mode messaging while the lowest version is below 4;
 *   - values are percent-encoded (http-types: all but A-Z a-z 0-9 - _ . ~).
 * The parser also takes the DH key straight after '#' (optionally followed
 * by /?v=...), a key alone after '#' (version 1), srv= in any form, an
 * unknown q= (then k=s alone means messaging), and adds the known onion
 * host of a simplex.im preset server when the highest version is below 2.
 *
 * Binary SMPQueueUri: version range, server, sender id, DH key (SPKI DER
 * as a short string), then the mode: 'M' / 'C' when the lowest version is
 * 4 or more; else 'T' / 'F' (sender can secure) when the lowest version is
 * 3 or more, or when the highest is and the mode is messaging; else none.
 *
 * Binary SMPQueueInfo at version v: v >= 4: like the above with 'M' / 'C';
 * v == 3: 'T' only for mode messaging; v == 2: no mode; v <= 1: the server
 * in its legacy single-host form and no mode.
 *
 * Both binary decoders take any of 'M', 'C', 'T' (messaging), 'F'
 * (contact) or nothing after the key, whatever the version.
 */
#include <string.h>

#include "agent/queue_uri.h"
#include "crypto/crypto.h"

#define SPKI_X25519_LEN 44
#define SPKI_X25519_B64_LEN 60

/* ---- helpers ---- */

static void wr_fail(sx_wr *w, int err)
{
    if (!w->err)
        w->err = err;
}

int sx_queue_mode_sender_can_secure(sx_queue_mode mode)
{
    return mode == SX_QUEUE_MODE_MESSAGING;
}

static int mode_valid(sx_queue_mode m)
{
    return m == SX_QUEUE_MODE_NONE || m == SX_QUEUE_MODE_MESSAGING ||
           m == SX_QUEUE_MODE_CONTACT;
}

static int address_valid(const sx_queue_address *a)
{
    return a && a->sender_id_len <= SX_QUEUE_ID_MAX && mode_valid(a->mode) &&
           !a->server.has_auth && a->server.n_hosts >= 1 &&
           a->server.n_hosts <= SX_SERVER_MAX_HOSTS;
}

/* SPKI DER bytes of the X25519 key */
static int dh_spki(uint8_t out[SPKI_X25519_LEN], const uint8_t *raw)
{
    uint8_t der[SX_KEY_DER_MAX];
    size_t len = 0;
    int rc = sx_key_public_encode(der, sizeof der, &len, SX_KEY_X25519, raw);
    if (rc)
        return rc;
    if (len != SPKI_X25519_LEN)
        return SIMPLEX_ERR_INTERNAL;
    memcpy(out, der, len);
    return 0;
}

static int dh_from_spki(uint8_t raw[SX_QUEUE_DH_BYTES], const uint8_t *der,
                        size_t n)
{
    uint8_t buf[64];
    size_t len = 0;
    int rc = sx_key_public_decode(NULL, buf, &len, SX_KEY_X25519, der, n);
    if (rc)
        return rc;
    if (len != SX_QUEUE_DH_BYTES)
        return SIMPLEX_ERR_KEY;
    memcpy(raw, buf, SX_QUEUE_DH_BYTES);
    return 0;
}

/* A base64url DH key (strP for the public key) at the start of s; *used is
 * the token's length. */
static int dh_token(uint8_t raw[SX_QUEUE_DH_BYTES], const char *s, size_t n,
                    size_t *used)
{
    uint8_t buf[64];
    sx_wr w;
    size_t tok = sx_b64url_span(s, n);
    int rc;

    if (tok == 0 || tok > 84)
        return SIMPLEX_ERR_PARSE;
    sx_wr_init_fixed(&w, buf, sizeof buf);
    rc = sx_b64url_decode(&w, s, tok);
    if (rc)
        return SIMPLEX_ERR_PARSE;
    rc = dh_from_spki(raw, buf, w.len);
    if (rc)
        return rc;
    *used = tok;
    return 0;
}

/* ---- preset servers of old clients ---- */

static const struct {
    const char *domain;
    const char *onion;
} extra_hosts[] = {
    {"smp4.simplex.im",
     "o5vmywmrnaxalvz6wi3zicyftgio6psuvyniis6gco6bp6ekl4cqj4id.onion"},
    {"smp5.simplex.im",
     "jjbyvoemxysm7qxap7m5d5m35jzv5qq6gnlv7s4rsn7tdwwmuqciwpid.onion"},
    {"smp6.simplex.im",
     "bylepyau3ty4czmn77q4fglvperknl4bi2eb2fdy2bh4jxtf32kf73yd.onion"},
    {"smp8.simplex.im",
     "beccx4yfxxbvyhqypaavemqurytl6hozr47wfc7uuecacjqdvwpw2xid.onion"},
    {"smp9.simplex.im",
     "jssqzccmrcws6bhmn77vgmhfjmhwlyr3u7puw4erkyoosywgl67slqqd.onion"},
    {"smp10.simplex.im",
     "rb2pbttocvnbrngnwziclp2f4ckjq65kebafws6g4hy22cdaiv5dwjqd.onion"},
};

void sx_queue_update_server_hosts(sx_server_addr *srv)
{
    if (!srv || srv->n_hosts != 1 || srv->hosts[0].kind != SX_HOST_DOMAIN)
        return;
    for (size_t i = 0; i < SX_ARRAY_LEN(extra_hosts); i++) {
        if (strncmp(srv->hosts[0].name, extra_hosts[i].domain,
                    sizeof srv->hosts[0].name) == 0) {
            sx_host *h = &srv->hosts[1];
            memset(h, 0, sizeof *h);
            h->kind = SX_HOST_ONION;
            memcpy(h->name, extra_hosts[i].onion, strlen(extra_hosts[i].onion));
            srv->n_hosts = 2;
            return;
        }
    }
}

/* ---- query strings ---- */

/* The raw value of the first parameter called key, split the way
 * http-types parseSimpleQuery splits (a leading '?' dropped, '&' or ';'
 * between pairs, the key up to the first '='; keys compare decoded). */
static int qs_find(const char *q, size_t n, const char *key, const char **val,
                   size_t *val_len)
{
    size_t pos = (n > 0 && q[0] == '?') ? 1 : 0;
    while (pos < n) {
        size_t e = pos, eq;
        sx_query_param p;
        while (e < n && q[e] != '&' && q[e] != ';')
            e++;
        eq = pos;
        while (eq < e && q[eq] != '=')
            eq++;
        p.key = q + pos;
        p.key_len = eq - pos;
        p.val = eq < e ? q + eq + 1 : q + e;
        p.val_len = eq < e ? e - eq - 1 : 0;
        if (sx_query_find(&p, 1, key)) {
            *val = p.val;
            *val_len = p.val_len;
            return 1;
        }
        pos = e + 1;
    }
    return 0;
}

/* The decoded value of the first parameter called key into buf:
 * 1 found, 0 absent, negative: does not fit. */
static int qs_value(const char *q, size_t n, const char *key, char *buf,
                    size_t cap, size_t *len)
{
    const char *v;
    size_t vn;
    sx_wr w;
    int rc;

    if (!qs_find(q, n, key, &v, &vn))
        return 0;
    sx_wr_init_fixed(&w, buf, cap);
    rc = sx_percent_decode(&w, v, vn);
    if (rc)
        return SIMPLEX_ERR_TOO_LARGE;
    *len = w.len;
    return 1;
}

static int qs_value_is(const char *q, size_t n, const char *key,
                       const char *want)
{
    char buf[8];
    size_t len = 0;
    if (qs_value(q, n, key, buf, sizeof buf, &len) != 1)
        return 0;
    return len == strlen(want) && memcmp(buf, want, len) == 0;
}

/* srv=: hosts separated by ',', possibly none */
static int parse_srv_hosts(sx_server_addr *srv, const char *s, size_t n)
{
    size_t i = 0, used;
    int rc;
    if (n == 0)
        return 0;
    for (;;) {
        if (srv->n_hosts == SX_SERVER_MAX_HOSTS)
            return SIMPLEX_ERR_TOO_LARGE;
        rc = sx_host_parse_prefix(&srv->hosts[srv->n_hosts], s + i, n - i,
                                  &used);
        if (rc)
            return rc;
        srv->n_hosts++;
        i += used;
        if (i < n && s[i] == ',')
            i++;
        else
            break;
    }
    return i == n ? 0 : SIMPLEX_ERR_PARSE;
}

/* The part after '#': [key] ['/'] '?' query. */
static int parse_versioned(sx_queue_uri *q, const char *s, size_t n)
{
    char buf[SX_SERVER_MAX_HOSTS * (SX_HOST_MAX + 1) + 64];
    size_t i = 0, used = 0, qn, len = 0;
    const char *qs;
    int have_dh = 0, rc;

    if (dh_token(q->addr.dh_public, s, n, &used) == 0) {
        have_dh = 1;
        i = used;
    }
    if (i < n && s[i] == '/')
        i++;
    if (i >= n || s[i] != '?')
        return SIMPLEX_ERR_PARSE;
    i++;
    qs = s + i;
    qn = 0;
    while (i + qn < n && qs[qn] != ' ' && qs[qn] != '\n')
        qn++;
    if (i + qn != n)
        return SIMPLEX_ERR_PARSE; /* nothing may follow the query */

    /* v= */
    rc = qs_value(qs, qn, "v", buf, sizeof buf, &len);
    if (rc != 1)
        return rc ? rc : SIMPLEX_ERR_PARSE;
    rc = sx_vrange_str_decode(&q->vrange, buf, len);
    if (rc)
        return rc;

    /* dh=, unless the key came before the query */
    if (!have_dh) {
        rc = qs_value(qs, qn, "dh", buf, sizeof buf, &len);
        if (rc != 1)
            return rc ? rc : SIMPLEX_ERR_PARSE;
        if (dh_token(q->addr.dh_public, buf, len, &used) != 0 || used != len)
            return SIMPLEX_ERR_PARSE;
    }

    /* srv=: more hosts */
    rc = qs_value(qs, qn, "srv", buf, sizeof buf, &len);
    if (rc < 0)
        return rc;
    if (rc == 1) {
        rc = parse_srv_hosts(&q->addr.server, buf, len);
        if (rc)
            return rc;
    }

    if (qs_value_is(qs, qn, "q", "m"))
        q->addr.mode = SX_QUEUE_MODE_MESSAGING;
    else if (qs_value_is(qs, qn, "q", "c"))
        q->addr.mode = SX_QUEUE_MODE_CONTACT;
    else if (qs_value_is(qs, qn, "k", "s"))
        q->addr.mode = SX_QUEUE_MODE_MESSAGING;
    else
        q->addr.mode = SX_QUEUE_MODE_NONE;
    return 0;
}

/* The part after '#' of version 1 links: the key and nothing else. */
static int parse_unversioned(sx_queue_uri *q, const char *s, size_t n)
{
    size_t used;
    int rc = dh_token(q->addr.dh_public, s, n, &used);
    if (rc)
        return rc;
    if (used != n)
        return SIMPLEX_ERR_PARSE;
    q->vrange.min = q->vrange.max = SX_SMPC_VERSION_INITIAL;
    q->addr.mode = SX_QUEUE_MODE_NONE;
    return 0;
}

int sx_queue_uri_parse(sx_queue_uri *out, const char *s, size_t n)
{
    sx_queue_uri q, v;
    size_t i, used, tok;
    uint8_t idbuf[SX_QUEUE_ID_MAX];
    sx_wr w;
    int rc;

    if (!out || (!s && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(&q, 0, sizeof q);

    rc = sx_server_addr_parse_prefix(&q.addr.server, s, n, &used);
    if (rc)
        return rc;
    if (q.addr.server.has_auth)
        return SIMPLEX_ERR_PARSE; /* no basic auth in queue addresses */
    i = used;
    if (i >= n || s[i] != '/')
        return SIMPLEX_ERR_PARSE;
    i++;

    /* sender id: base64url */
    tok = sx_b64url_span(s + i, n - i);
    if (tok == 0)
        return SIMPLEX_ERR_PARSE;
    if (tok > 4 * ((SX_QUEUE_ID_MAX + 2) / 3))
        return SIMPLEX_ERR_TOO_LARGE;
    sx_wr_init_fixed(&w, idbuf, sizeof idbuf);
    rc = sx_b64url_decode(&w, s + i, tok);
    if (rc)
        return rc == SIMPLEX_ERR_BUFFER_TOO_SMALL ? SIMPLEX_ERR_TOO_LARGE
                                                  : SIMPLEX_ERR_PARSE;
    memcpy(q.addr.sender_id, idbuf, w.len);
    q.addr.sender_id_len = w.len;
    i += tok;
    if (i < n && s[i] == '/')
        i++;
    if (i >= n || s[i] != '#')
        return SIMPLEX_ERR_PARSE;
    i++;

    /* the versioned form, else a bare key */
    v = q;
    rc = parse_versioned(&v, s + i, n - i);
    if (rc == 0) {
        q = v;
    } else {
        int rc1 = parse_unversioned(&q, s + i, n - i);
        if (rc1)
            return rc == SIMPLEX_ERR_TOO_LARGE ? rc : rc1;
    }

    if (q.vrange.max < SX_SMPC_VERSION_SRV_HOSTNAMES)
        sx_queue_update_server_hosts(&q.addr.server);
    *out = q;
    return 0;
}

/* ---- text output ---- */

static void print_param(sx_wr *w, const char *key, const char *val,
                        size_t val_len)
{
    sx_wr_u8(w, '&');
    sx_wr_str(w, key);
    sx_wr_u8(w, '=');
    sx_percent_encode(w, val, val_len);
}

void sx_queue_uri_print(sx_wr *w, const sx_queue_uri *q)
{
    uint8_t spki[SPKI_X25519_LEN];
    char b64[SPKI_X25519_B64_LEN + 4];
    sx_wr bw;
    int legacy, rc;

    if (!w)
        return;
    if (!q || !address_valid(&q->addr) || q->vrange.min > q->vrange.max) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    rc = dh_spki(spki, q->addr.dh_public);
    if (rc) {
        wr_fail(w, rc);
        return;
    }
    sx_wr_init_fixed(&bw, b64, sizeof b64);
    sx_b64url_encode(&bw, spki, sizeof spki);
    if (bw.err) {
        wr_fail(w, SIMPLEX_ERR_INTERNAL);
        return;
    }

    legacy = q->vrange.min < SX_SMPC_VERSION_SRV_HOSTNAMES;
    sx_server_addr_print_ex(w, &q->addr.server, 0, legacy);
    sx_wr_u8(w, '/');
    sx_b64url_encode(w, q->addr.sender_id, q->addr.sender_id_len);
    sx_wr_str(w, "#/?v=");
    sx_vrange_str_encode(w, q->vrange);
    print_param(w, "dh", b64, bw.len);
    if (q->addr.mode == SX_QUEUE_MODE_MESSAGING)
        print_param(w, "q", "m", 1);
    else if (q->addr.mode == SX_QUEUE_MODE_CONTACT)
        print_param(w, "q", "c", 1);
    if (sx_queue_mode_sender_can_secure(q->addr.mode) &&
        q->vrange.min < SX_SMPC_VERSION_SHORT_LINKS)
        print_param(w, "k", "s", 1);
    if (legacy && q->addr.server.n_hosts > 1) {
        sx_wr_str(w, "&srv=");
        for (size_t i = 1; i < q->addr.server.n_hosts; i++) {
            const char *h = q->addr.server.hosts[i].name;
            if (i > 1)
                sx_percent_encode(w, ",", 1);
            sx_percent_encode(w, h, strlen(h));
        }
    }
}

/* ---- binary ---- */

static void encode_address(sx_wr *w, const sx_queue_address *a, int legacy)
{
    uint8_t spki[SPKI_X25519_LEN];
    int rc = dh_spki(spki, a->dh_public);
    if (rc) {
        wr_fail(w, rc);
        return;
    }
    if (legacy)
        sx_server_addr_encode_legacy(w, &a->server);
    else
        sx_server_addr_encode(w, &a->server);
    sx_wr_short(w, a->sender_id, a->sender_id_len);
    sx_wr_short(w, spki, sizeof spki);
}

static void encode_mode(sx_wr *w, sx_queue_mode m)
{
    if (m == SX_QUEUE_MODE_MESSAGING)
        sx_wr_u8(w, 'M');
    else if (m == SX_QUEUE_MODE_CONTACT)
        sx_wr_u8(w, 'C');
}

void sx_queue_uri_encode(sx_wr *w, const sx_queue_uri *q)
{
    int secure;
    if (!w)
        return;
    if (!q || !address_valid(&q->addr) || q->vrange.min > q->vrange.max) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    secure = sx_queue_mode_sender_can_secure(q->addr.mode);
    sx_vrange_encode(w, q->vrange);
    encode_address(w, &q->addr, 0);
    if (q->vrange.min >= SX_SMPC_VERSION_SHORT_LINKS)
        encode_mode(w, q->addr.mode);
    else if (q->vrange.min >= SX_SMPC_VERSION_SND_AUTH_KEY ||
             (q->vrange.max >= SX_SMPC_VERSION_SND_AUTH_KEY && secure))
        sx_wr_bool(w, secure);
}

void sx_queue_info_encode(sx_wr *w, const sx_queue_info *qi)
{
    uint16_t v;
    if (!w)
        return;
    if (!qi || !address_valid(&qi->addr)) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    v = qi->version;
    sx_wr_u16(w, v);
    encode_address(w, &qi->addr, v <= SX_SMPC_VERSION_INITIAL);
    if (v >= SX_SMPC_VERSION_SHORT_LINKS)
        encode_mode(w, qi->addr.mode);
    else if (v >= SX_SMPC_VERSION_SND_AUTH_KEY &&
             sx_queue_mode_sender_can_secure(qi->addr.mode))
        sx_wr_bool(w, 1);
}

/* sender id, key and the optional mode byte */
static int decode_rest(sx_rd *r, sx_queue_address *a)
{
    const uint8_t *p;
    size_t n;
    int rc = sx_rd_short(r, &p, &n);
    if (rc)
        return rc;
    memcpy(a->sender_id, p, n);
    a->sender_id_len = n;
    rc = sx_rd_short(r, &p, &n);
    if (rc)
        return rc;
    rc = dh_from_spki(a->dh_public, p, n);
    if (rc)
        return rc;
    a->mode = SX_QUEUE_MODE_NONE;
    if (sx_rd_left(r) > 0) {
        switch (r->p[r->pos]) {
        case 'M':
        case 'T':
            a->mode = SX_QUEUE_MODE_MESSAGING;
            r->pos++;
            break;
        case 'C':
        case 'F':
            a->mode = SX_QUEUE_MODE_CONTACT;
            r->pos++;
            break;
        default:
            break;
        }
    }
    return 0;
}

int sx_queue_uri_decode(sx_rd *r, sx_queue_uri *out)
{
    sx_queue_uri q;
    size_t start;
    int rc;

    if (!r || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    start = r->pos;
    memset(&q, 0, sizeof q);
    rc = sx_vrange_decode(r, &q.vrange);
    if (rc == 0)
        rc = sx_server_addr_decode(r, &q.addr.server);
    if (rc == 0)
        rc = decode_rest(r, &q.addr);
    if (rc) {
        r->pos = start;
        return rc;
    }
    *out = q;
    return 0;
}

int sx_queue_info_decode(sx_rd *r, sx_queue_info *out)
{
    sx_queue_info qi;
    size_t start;
    int rc;

    if (!r || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    start = r->pos;
    memset(&qi, 0, sizeof qi);
    rc = sx_rd_u16(r, &qi.version);
    if (rc == 0) {
        if (qi.version > SX_SMPC_VERSION_INITIAL) {
            rc = sx_server_addr_decode(r, &qi.addr.server);
        } else {
            rc = sx_server_addr_decode_legacy(r, &qi.addr.server);
            if (rc == 0)
                sx_queue_update_server_hosts(&qi.addr.server);
        }
    }
    if (rc == 0)
        rc = decode_rest(r, &qi.addr);
    if (rc) {
        r->pos = start;
        return rc;
    }
    *out = qi;
    return 0;
}

/* ---- conversions and comparisons ---- */

void sx_queue_uri_to_info(sx_queue_info *out, const sx_queue_uri *q,
                          uint16_t version)
{
    if (!out || !q)
        return;
    out->version = version;
    out->addr = q->addr;
}

void sx_queue_info_to_uri(sx_queue_uri *out, const sx_queue_info *qi,
                          sx_vrange vrange)
{
    if (!out || !qi)
        return;
    out->vrange = vrange;
    out->addr = qi->addr;
}

int sx_queue_address_equal(const sx_queue_address *a,
                           const sx_queue_address *b)
{
    if (!a || !b || !sx_server_addr_equal(&a->server, &b->server))
        return 0;
    if (a->sender_id_len != b->sender_id_len ||
        a->sender_id_len > SX_QUEUE_ID_MAX ||
        memcmp(a->sender_id, b->sender_id, a->sender_id_len) != 0)
        return 0;
    return memcmp(a->dh_public, b->dh_public, sizeof a->dh_public) == 0 &&
           a->mode == b->mode;
}

int sx_queue_uri_equal(const sx_queue_uri *a, const sx_queue_uri *b)
{
    return a && b && a->vrange.min == b->vrange.min &&
           a->vrange.max == b->vrange.max &&
           sx_queue_address_equal(&a->addr, &b->addr);
}

int sx_queue_info_equal(const sx_queue_info *a, const sx_queue_info *b)
{
    return a && b && a->version == b->version &&
           sx_queue_address_equal(&a->addr, &b->addr);
}
