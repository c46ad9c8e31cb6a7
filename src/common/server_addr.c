/*
 * SMP server addresses, text and binary, as simplexmq 6.5.5.0 writes and
 * reads them (ProtocolServer / ProtoServerWithAuth and TransportHost).
 *
 * Text:   smp://<key hash>[:<basic auth>]@<host>[,<host>...][:<port>]
 * Binary: hosts (1-byte count >= 1, each host's text as a short string),
 *         port (short string, "" for the default), key hash (short string).
 *
 * Hosts are tried in the reference's order, the first alternative that
 * matches wins even when what follows it then fails to parse:
 *   1. IPv4: digits '.' digits '.' digits '.' digits; the first three are
 *      read as machine integers (wrapping) and must be 0..255, the last
 *      is read modulo 256; printed back in plain decimal;
 *   2. IPv6: "[...]" (anything up to ']') or a run of hex digits and ':',
 *      read by the iproute library's parser and printed in its RFC 5952
 *      form, without brackets;
 *   3. onion: [a-z0-9]* ".onion";
 *   4. domain name: one or more bytes other than : # , ; / space \n \r \t,
 *      not ending in ".onion".
 *
 * Deliberate limits (the reference accepts these; a usable server address
 * never has them): a key hash other than 32 bytes, a port above 65535 (or
 * a binary port that is not plain decimal), more than SX_SERVER_MAX_HOSTS
 * hosts, a host longer than 255 bytes or containing a NUL byte, basic auth
 * longer than 255 bytes.
 */
#include <stdio.h>
#include <string.h>

#include "common/server_addr.h"
#include "common/text.h"

#define DEFAULT_SMP_PORT 5223

/* ---- character classes: bytes are read as Latin-1 characters ---- */

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static unsigned hex_value(unsigned char c)
{
    if (is_digit(c))
        return (unsigned)(c - '0');
    if (c >= 'a' && c <= 'f')
        return (unsigned)(c - 'a' + 10);
    return (unsigned)(c - 'A' + 10);
}

/* Haskell's isSpace on Latin-1 */
static int is_hs_space(unsigned char c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0xa0;
}

/* Characters that end a domain name */
static int ends_domain(unsigned char c)
{
    return c == ':' || c == '#' || c == ',' || c == ';' || c == '/' ||
           c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Characters allowed in basic auth: printable, not a space, not @ : / */
static int auth_char(unsigned char c)
{
    if (c >= 0x21 && c <= 0x7e)
        return c != '@' && c != ':' && c != '/';
    return c >= 0xa1 && c != 0xad;
}

static int has_suffix(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

static int set_name(sx_host *h, sx_host_kind kind, const char *s, size_t n)
{
    if (n == 0)
        return SIMPLEX_ERR_PARSE;
    if (n > SX_HOST_MAX)
        return SIMPLEX_ERR_TOO_LARGE;
    if (memchr(s, 0, n))
        return SIMPLEX_ERR_PARSE;
    memset(h->name, 0, sizeof h->name);
    memcpy(h->name, s, n);
    h->kind = kind;
    return 0;
}

/* ---- IPv4 ---- */

/* Returns 1 and sets *used when s starts with a dotted quad. */
static int ipv4_prefix(sx_host *h, const char *s, size_t n, size_t *used)
{
    unsigned oct[4];
    size_t i = 0;
    char buf[16];
    int len;

    for (int k = 0; k < 4; k++) {
        size_t start = i;
        uint64_t v = 0; /* wraps like a 64-bit Int */
        while (i < n && is_digit((unsigned char)s[i]))
            v = v * 10u + (uint64_t)(s[i++] - '0');
        if (i == start)
            return 0;
        if (k < 3) {
            if (i >= n || s[i] != '.' || v > 255)
                return 0;
            i++;
            oct[k] = (unsigned)v;
        } else {
            oct[k] = (unsigned)(v & 0xffu); /* read as a byte */
        }
    }
    len = snprintf(buf, sizeof buf, "%u.%u.%u.%u", oct[0], oct[1], oct[2],
                   oct[3]);
    if (len < 0 || (size_t)len >= sizeof buf)
        return 0;
    memset(h->name, 0, sizeof h->name);
    memcpy(h->name, buf, (size_t)len);
    h->kind = SX_HOST_IPV4;
    *used = i;
    return 1;
}

/* ---- IPv6: the iproute parser, step by step ----
 *
 * That parser is built on a small combinator library with two unusual
 * rules that decide what it accepts, so they are kept here exactly:
 *   - when the left side of an alternative fails after reading some
 *     input, the right side starts where the left one stopped;
 *   - a repetition ends successfully wherever its item failed, even if
 *     the item had read input before failing.
 * Every step below takes the position in *p and leaves there where it
 * stopped, on success and on failure alike. */

typedef struct v6in {
    const unsigned char *s;
    size_t n;
} v6in;

typedef struct v6list {
    unsigned v[8];
    size_t len; /* may exceed 8: only lengths matter then */
} v6list;

static void v6_push(v6list *l, unsigned v)
{
    if (l->len < 8)
        l->v[l->len] = v;
    l->len++;
}

static void v6_concat(v6list *dst, const v6list *a, const v6list *b)
{
    dst->len = 0;
    for (size_t i = 0; i < a->len; i++)
        v6_push(dst, i < 8 ? a->v[i] : 0);
    for (size_t i = 0; i < b->len; i++)
        v6_push(dst, i < 8 ? b->v[i] : 0);
}

static int v6_char(const v6in *in, size_t *p, unsigned char c)
{
    if (*p < in->n && in->s[*p] == c) {
        (*p)++;
        return 1;
    }
    return 0;
}

/* one to four hex digits; more digits are read and then rejected */
static int v6_hex(const v6in *in, size_t *p, unsigned *val)
{
    size_t q = *p;
    unsigned v = 0;
    while (q < in->n && is_hex(in->s[q]))
        q++;
    if (q == *p)
        return 0;
    for (size_t i = *p; i < q && i < *p + 4; i++)
        v = v * 16u + hex_value(in->s[i]);
    if (q - *p > 4) {
        *p = q;
        return 0;
    }
    *p = q;
    *val = v;
    return 1;
}

static int v6_colon2(const v6in *in, size_t *p)
{
    return v6_char(in, p, ':') && v6_char(in, p, ':');
}

/* hex separated by ':', at least one */
static int v6_hexcolon(const v6in *in, size_t *p, v6list *out)
{
    unsigned v;
    out->len = 0;
    if (!v6_hex(in, p, &v))
        return 0;
    v6_push(out, v);
    for (;;) {
        size_t q = *p;
        if (!v6_char(in, &q, ':'))
            break;
        if (!v6_hex(in, &q, &v)) {
            *p = q;
            break;
        }
        v6_push(out, v);
        *p = q;
    }
    return 1;
}

/* (hex ':')* up to a ':' */
static int v6_hexcolon2(const v6in *in, size_t *p, v6list *out)
{
    unsigned v;
    out->len = 0;
    for (;;) {
        if (v6_char(in, p, ':'))
            return 1;
        if (!v6_hex(in, p, &v) || !v6_char(in, p, ':'))
            return 0;
        v6_push(out, v);
    }
}

/* (hex ':')*, each item all or nothing */
static void v6_before_embedded(const v6in *in, size_t *p, v6list *out)
{
    unsigned v;
    out->len = 0;
    for (;;) {
        size_t q = *p;
        if (!v6_hex(in, &q, &v) || !v6_char(in, &q, ':'))
            return;
        v6_push(out, v);
        *p = q;
    }
}

/* "0" or [1-9][0-9]* up to 255 */
static int v6_octet(const v6in *in, size_t *p, unsigned *val)
{
    unsigned v;
    int over = 0;
    if (v6_char(in, p, '0')) {
        *val = 0;
        return 1;
    }
    if (*p >= in->n || in->s[*p] < '1' || in->s[*p] > '9')
        return 0;
    v = 0;
    while (*p < in->n && is_digit(in->s[*p])) {
        if (!over) {
            v = v * 10u + (unsigned)(in->s[*p] - '0');
            if (v > 255)
                over = 1;
        }
        (*p)++;
    }
    if (over)
        return 0;
    *val = v;
    return 1;
}

/* four octets separated by '.', as two 16-bit groups */
static int v6_ip4(const v6in *in, size_t *p, v6list *out)
{
    unsigned o[4], v;
    size_t count = 0;
    if (!v6_octet(in, p, &v))
        return 0;
    o[count++] = v;
    for (;;) {
        size_t q = *p;
        if (!v6_char(in, &q, '.'))
            break;
        if (!v6_octet(in, &q, &v)) {
            *p = q;
            break;
        }
        if (count < 4)
            o[count] = v;
        count++;
        *p = q;
    }
    if (count != 4)
        return 0;
    out->len = 0;
    v6_push(out, (o[0] << 8) | o[1]);
    v6_push(out, (o[2] << 8) | o[3]);
    return 1;
}

/* a ++ zeros ++ b, with at least one zero group */
static int v6_format(const v6list *a, const v6list *b, unsigned f[8])
{
    size_t fill, k = 0;
    if (a->len > 7 || b->len > 7 || a->len + b->len >= 8)
        return 0;
    fill = 8 - a->len - b->len;
    for (size_t i = 0; i < a->len; i++)
        f[k++] = a->v[i];
    for (size_t i = 0; i < fill; i++)
        f[k++] = 0;
    for (size_t i = 0; i < b->len; i++)
        f[k++] = b->v[i];
    return 1;
}

static int v6_exact8(const v6list *l, unsigned f[8])
{
    if (l->len != 8)
        return 0;
    memcpy(f, l->v, sizeof l->v);
    return 1;
}

/* "::" (hex ':')* ipv4 */
static int v6_embedded1(const v6in *in, size_t *p, unsigned f[8])
{
    v6list bs, e, all, none = {{0}, 0};
    if (!v6_colon2(in, p))
        return 0;
    v6_before_embedded(in, p, &bs);
    if (!v6_ip4(in, p, &e))
        return 0;
    v6_concat(&all, &bs, &e);
    return v6_format(&none, &all, f);
}

/* (hex ':')* ':' (hex ':')* ipv4 */
static int v6_embedded2(const v6in *in, size_t *p, unsigned f[8])
{
    v6list bs1, bs2, e, all;
    unsigned v;
    bs1.len = 0;
    for (;;) {
        size_t q;
        if (v6_char(in, p, ':'))
            break;
        q = *p;
        if (!v6_hex(in, &q, &v) || !v6_char(in, &q, ':'))
            return 0;
        v6_push(&bs1, v);
        *p = q;
    }
    v6_before_embedded(in, p, &bs2);
    if (!v6_ip4(in, p, &e))
        return 0;
    v6_concat(&all, &bs2, &e);
    return v6_format(&bs1, &all, f);
}

/* (hex ':')* ipv4, eight groups in all */
static int v6_embedded3(const v6in *in, size_t *p, unsigned f[8])
{
    v6list bs, e, all;
    v6_before_embedded(in, p, &bs);
    if (!v6_ip4(in, p, &e))
        return 0;
    v6_concat(&all, &bs, &e);
    return v6_exact8(&all, f);
}

static int v6_addr(const v6in *in, size_t *p, unsigned f[8])
{
    int (*const embedded[3])(const v6in *, size_t *, unsigned *) = {
        v6_embedded1, v6_embedded2, v6_embedded3};
    v6list bs, bs2, none = {{0}, 0};

    /* the three embedded-IPv4 forms each restart where they began */
    for (int k = 0; k < 3; k++) {
        size_t q = *p;
        if (embedded[k](in, &q, f)) {
            *p = q;
            return 1;
        }
    }
    /* "::" hex(':'hex)* */
    if (v6_colon2(in, p)) {
        size_t q = *p;
        if (!v6_hexcolon(in, &q, &bs))
            bs.len = 0;
        *p = q;
        if (v6_format(&none, &bs, f))
            return 1;
    }
    /* eight groups; restarts where it began */
    {
        size_t q = *p;
        if (v6_hexcolon(in, &q, &bs) && v6_exact8(&bs, f)) {
            *p = q;
            return 1;
        }
    }
    /* groups "::" groups */
    if (!v6_hexcolon2(in, p, &bs))
        return 0;
    {
        size_t q = *p;
        if (!v6_hexcolon(in, &q, &bs2))
            bs2.len = 0;
        *p = q;
    }
    return v6_format(&bs, &bs2, f);
}

/* The whole text must be an address, with spaces allowed before it and
 * white space after it. */
static int v6_read(const unsigned char *s, size_t n, unsigned f[8])
{
    v6in in = {s, n};
    size_t p = 0;
    while (p < n && s[p] == ' ')
        p++;
    if (!v6_addr(&in, &p, f))
        return 0;
    while (p < n && is_hs_space(s[p]))
        p++;
    return p == n;
}

static size_t put_hex(char *o, unsigned v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[4];
    size_t k = 0, i;
    do {
        tmp[k++] = digits[v & 15u];
        v >>= 4;
    } while (v);
    for (i = 0; i < k; i++)
        o[i] = tmp[k - 1 - i];
    return k;
}

static size_t put_groups(char *o, const unsigned *f, size_t from, size_t to)
{
    size_t k = 0;
    for (size_t i = from; i < to; i++) {
        if (i > from)
            o[k++] = ':';
        k += put_hex(o + k, f[i]);
    }
    return k;
}

/* The iproute library's textual form (RFC 5952 style, as glibc inet_ntop).
 * out must hold 40 bytes. */
static void v6_show(char *out, const unsigned f[8])
{
    size_t k = 0;
    int zero5 = f[0] == 0 && f[1] == 0 && f[2] == 0 && f[3] == 0 && f[4] == 0;

    if ((zero5 && f[5] == 0xffff) || (zero5 && f[5] == 0 && f[6] != 0)) {
        /* IPv4-mapped and IPv4-compatible addresses */
        snprintf(out, 40, "%s%u.%u.%u.%u", f[5] ? "::ffff:" : "::",
                 f[6] >> 8, f[6] & 255u, f[7] >> 8, f[7] & 255u);
        return;
    }
    {
        /* the longest run of zero groups, the first of equals */
        size_t best = 0, best_end = 0, run = 0;
        for (size_t i = 0; i < 8; i++) {
            run = f[i] == 0 ? run + 1 : 0;
            if (run > best) {
                best = run;
                best_end = i + 1;
            }
        }
        if (best > 1) {
            k += put_groups(out + k, f, 0, best_end - best);
            out[k++] = ':';
            out[k++] = ':';
            k += put_groups(out + k, f, best_end, 8);
        } else {
            k += put_groups(out + k, f, 0, 8);
        }
    }
    out[k] = '\0';
}

/* Returns 1 and sets *used when s starts with an IPv6 address. */
static int ipv6_prefix(sx_host *h, const char *s, size_t n, size_t *used)
{
    const unsigned char *u = (const unsigned char *)s;
    const unsigned char *t;
    size_t tn, total;
    unsigned f[8];
    char buf[48];

    if (n > 0 && u[0] == '[') {
        const unsigned char *close = memchr(u + 1, ']', n - 1);
        if (close && close > u + 1) {
            t = u + 1;
            tn = (size_t)(close - t);
            total = tn + 2;
            goto read;
        }
    }
    tn = 0;
    while (tn < n && (is_hex(u[tn]) || u[tn] == ':'))
        tn++;
    if (tn == 0)
        return 0;
    t = u;
    total = tn;
read:
    if (!v6_read(t, tn, f))
        return 0;
    v6_show(buf, f);
    memset(h->name, 0, sizeof h->name);
    memcpy(h->name, buf, strlen(buf));
    h->kind = SX_HOST_IPV6;
    *used = total;
    return 1;
}

/* ---- hosts ---- */

int sx_host_parse_prefix(sx_host *out, const char *s, size_t n,
                         size_t *consumed)
{
    sx_host h;
    size_t used = 0, i;
    int rc;

    if (!out || !consumed || (!s && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(&h, 0, sizeof h);
    if (ipv4_prefix(&h, s, n, &used) || ipv6_prefix(&h, s, n, &used))
        goto done;
    /* onion: [a-z0-9]* ".onion" */
    i = 0;
    while (i < n && ((s[i] >= 'a' && s[i] <= 'z') || is_digit((unsigned char)s[i])))
        i++;
    if (n - i >= 6 && memcmp(s + i, ".onion", 6) == 0) {
        used = i + 6;
        rc = set_name(&h, SX_HOST_ONION, s, used);
        if (rc)
            return rc;
        goto done;
    }
    /* domain name */
    i = 0;
    while (i < n && !ends_domain((unsigned char)s[i]))
        i++;
    if (i == 0 || has_suffix(s, i, ".onion"))
        return SIMPLEX_ERR_PARSE;
    rc = set_name(&h, SX_HOST_DOMAIN, s, i);
    if (rc)
        return rc;
    used = i;
done:
    *out = h;
    *consumed = used;
    return 0;
}

/* A host given as a whole string (binary encodings, srv= values). */
static int host_parse_exact(sx_host *out, const char *s, size_t n)
{
    size_t used;
    int rc = sx_host_parse_prefix(out, s, n, &used);
    if (rc)
        return rc;
    return used == n ? 0 : SIMPLEX_ERR_PARSE;
}

/* ---- ports ---- */

/* Binary ports: "" or plain decimal 0..65535 without leading zeros. */
static int port_check(const char *s, size_t n)
{
    uint32_t v = 0;
    if (n == 0)
        return 0;
    if (n > SX_PORT_MAX || (n > 1 && s[0] == '0'))
        return SIMPLEX_ERR_PARSE;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit((unsigned char)s[i]))
            return SIMPLEX_ERR_PARSE;
        v = v * 10u + (uint32_t)(s[i] - '0');
    }
    return v <= 65535 ? 0 : SIMPLEX_ERR_PARSE;
}

uint16_t sx_server_addr_port(const sx_server_addr *a)
{
    uint32_t v = 0;
    if (!a || a->port[0] == '\0')
        return DEFAULT_SMP_PORT;
    for (size_t i = 0; a->port[i] && i < SX_PORT_MAX; i++)
        v = v * 10u + (uint32_t)(a->port[i] - '0');
    return v <= 65535 ? (uint16_t)v : 0;
}

/* ---- key hash ---- */

/* A base64url token (the reference's base64urlP) decoding to exactly 32
 * bytes; *used is its length. */
static int key_hash_token(uint8_t out[32], const char *s, size_t n,
                          size_t *used)
{
    uint8_t buf[64];
    sx_wr w;
    size_t tok = sx_b64url_span(s, n);
    int rc;

    if (tok == 0)
        return SIMPLEX_ERR_PARSE;
    if (tok > 80)
        return SIMPLEX_ERR_PARSE; /* far more than 32 bytes */
    sx_wr_init_fixed(&w, buf, sizeof buf);
    rc = sx_b64url_decode(&w, s, tok);
    if (rc)
        return rc == SIMPLEX_ERR_BUFFER_TOO_SMALL ? SIMPLEX_ERR_PARSE : rc;
    if (w.len != 32)
        return SIMPLEX_ERR_PARSE;
    memcpy(out, buf, 32);
    *used = tok;
    return 0;
}

/* ---- text ---- */

int sx_server_addr_parse_prefix(sx_server_addr *out, const char *s, size_t n,
                                size_t *consumed)
{
    sx_server_addr a;
    size_t i = 0, used;
    int rc;

    if (!out || !consumed || (!s && n))
        return SIMPLEX_ERR_INVALID_ARG;
    memset(&a, 0, sizeof a);

    /* scheme: everything up to ':' or ' ' must be "smp" */
    while (i < n && s[i] != ':' && s[i] != ' ')
        i++;
    if (i != 3 || memcmp(s, "smp", 3) != 0)
        return SIMPLEX_ERR_PARSE;
    if (n - i < 3 || memcmp(s + i, "://", 3) != 0)
        return SIMPLEX_ERR_PARSE;
    i += 3;

    rc = key_hash_token(a.key_hash, s + i, n - i, &used);
    if (rc)
        return rc;
    i += used;

    /* optional ':' basic auth, up to the '@' */
    if (i < n && s[i] == ':') {
        size_t j = i + 1, k;
        int ok = 1;
        while (j < n && s[j] != '@')
            j++;
        for (k = i + 1; k < j; k++)
            if (!auth_char((unsigned char)s[k]))
                ok = 0;
        if (ok && j > i + 1) {
            if (j - i - 1 > SX_AUTH_MAX)
                return SIMPLEX_ERR_TOO_LARGE;
            memcpy(a.auth, s + i + 1, j - i - 1);
            a.has_auth = 1;
            i = j;
        }
    }
    if (i >= n || s[i] != '@')
        return SIMPLEX_ERR_PARSE;
    i++;

    /* hosts, separated by ',' */
    for (;;) {
        if (a.n_hosts == SX_SERVER_MAX_HOSTS)
            return SIMPLEX_ERR_TOO_LARGE;
        rc = sx_host_parse_prefix(&a.hosts[a.n_hosts], s + i, n - i, &used);
        if (rc)
            return rc;
        a.n_hosts++;
        i += used;
        if (i < n && s[i] == ',')
            i++;
        else
            break;
    }

    /* optional ':' port (decimal) */
    if (i + 1 < n && s[i] == ':' && is_digit((unsigned char)s[i + 1])) {
        size_t j = i + 1;
        uint32_t v = 0;
        while (j < n && is_digit((unsigned char)s[j])) {
            v = v * 10u + (uint32_t)(s[j] - '0');
            if (v > 65535)
                return SIMPLEX_ERR_PARSE;
            j++;
        }
        snprintf(a.port, sizeof a.port, "%u", (unsigned)v);
        i = j;
    }

    *out = a;
    *consumed = i;
    return 0;
}

int sx_server_addr_parse(sx_server_addr *out, const char *s, size_t n)
{
    sx_server_addr a;
    size_t used;
    int rc = sx_server_addr_parse_prefix(&a, s, n, &used);
    if (rc)
        return rc;
    if (used != n)
        return SIMPLEX_ERR_PARSE;
    *out = a;
    return 0;
}

static int addr_valid(const sx_server_addr *a)
{
    if (!a || a->n_hosts < 1 || a->n_hosts > SX_SERVER_MAX_HOSTS)
        return 0;
    for (size_t i = 0; i < a->n_hosts; i++)
        if (a->hosts[i].name[0] == '\0' ||
            memchr(a->hosts[i].name, 0, sizeof a->hosts[i].name) == NULL)
            return 0;
    if (memchr(a->port, 0, sizeof a->port) == NULL ||
        port_check(a->port, strlen(a->port)) != 0)
        return 0;
    if (a->has_auth && (a->auth[0] == '\0' ||
                        memchr(a->auth, 0, sizeof a->auth) == NULL))
        return 0;
    return 1;
}

static void wr_fail(sx_wr *w, int err)
{
    if (!w->err)
        w->err = err;
}

void sx_server_addr_print_ex(sx_wr *w, const sx_server_addr *a, int with_auth,
                             int first_host_only)
{
    size_t nh;
    if (!w)
        return;
    if (!addr_valid(a)) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    sx_wr_str(w, "smp://");
    sx_b64url_encode(w, a->key_hash, sizeof a->key_hash);
    if (with_auth && a->has_auth) {
        sx_wr_u8(w, ':');
        sx_wr_str(w, a->auth);
    }
    sx_wr_u8(w, '@');
    nh = first_host_only ? 1 : a->n_hosts;
    for (size_t i = 0; i < nh; i++) {
        if (i)
            sx_wr_u8(w, ',');
        sx_wr_str(w, a->hosts[i].name);
    }
    if (a->port[0]) {
        sx_wr_u8(w, ':');
        sx_wr_str(w, a->port);
    }
}

void sx_server_addr_print(sx_wr *w, const sx_server_addr *a)
{
    sx_server_addr_print_ex(w, a, 1, 0);
}

/* ---- binary ---- */

static void encode_tail(sx_wr *w, const sx_server_addr *a)
{
    sx_wr_short(w, a->port, strlen(a->port));
    sx_wr_short(w, a->key_hash, sizeof a->key_hash);
}

void sx_server_addr_encode(sx_wr *w, const sx_server_addr *a)
{
    if (!w)
        return;
    if (!addr_valid(a)) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    sx_wr_count(w, a->n_hosts);
    for (size_t i = 0; i < a->n_hosts; i++)
        sx_wr_short(w, a->hosts[i].name, strlen(a->hosts[i].name));
    encode_tail(w, a);
}

void sx_server_addr_encode_legacy(sx_wr *w, const sx_server_addr *a)
{
    if (!w)
        return;
    if (!addr_valid(a)) {
        wr_fail(w, SIMPLEX_ERR_INVALID_ARG);
        return;
    }
    sx_wr_short(w, a->hosts[0].name, strlen(a->hosts[0].name));
    encode_tail(w, a);
}

static int decode_host(sx_rd *r, sx_host *h)
{
    const uint8_t *p;
    size_t n;
    int rc = sx_rd_short(r, &p, &n);
    if (rc)
        return rc;
    return host_parse_exact(h, (const char *)p, n);
}

static int decode_tail(sx_rd *r, sx_server_addr *a)
{
    const uint8_t *p;
    size_t n;
    int rc = sx_rd_short(r, &p, &n);
    if (rc)
        return rc;
    rc = port_check((const char *)p, n);
    if (rc)
        return rc;
    memcpy(a->port, p, n);
    return sx_rd_short_fixed(r, a->key_hash, sizeof a->key_hash);
}

int sx_server_addr_decode(sx_rd *r, sx_server_addr *out)
{
    sx_server_addr a;
    size_t start, count;
    int rc;

    if (!r || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    start = r->pos;
    memset(&a, 0, sizeof a);
    rc = sx_rd_count_nonempty(r, &count);
    if (rc == 0 && count > SX_SERVER_MAX_HOSTS)
        rc = SIMPLEX_ERR_TOO_LARGE;
    for (size_t i = 0; rc == 0 && i < count; i++)
        rc = decode_host(r, &a.hosts[i]);
    a.n_hosts = count;
    if (rc == 0)
        rc = decode_tail(r, &a);
    if (rc) {
        r->pos = start;
        return rc;
    }
    *out = a;
    return 0;
}

int sx_server_addr_decode_legacy(sx_rd *r, sx_server_addr *out)
{
    sx_server_addr a;
    size_t start;
    int rc;

    if (!r || !out)
        return SIMPLEX_ERR_INVALID_ARG;
    start = r->pos;
    memset(&a, 0, sizeof a);
    rc = decode_host(r, &a.hosts[0]);
    a.n_hosts = 1;
    if (rc == 0)
        rc = decode_tail(r, &a);
    if (rc) {
        r->pos = start;
        return rc;
    }
    *out = a;
    return 0;
}

int sx_server_addr_equal(const sx_server_addr *a, const sx_server_addr *b)
{
    if (!a || !b || a->n_hosts != b->n_hosts || a->has_auth != b->has_auth)
        return 0;
    if (a->n_hosts > SX_SERVER_MAX_HOSTS)
        return 0;
    for (size_t i = 0; i < a->n_hosts; i++)
        if (a->hosts[i].kind != b->hosts[i].kind ||
            strncmp(a->hosts[i].name, b->hosts[i].name,
                    sizeof a->hosts[i].name) != 0)
            return 0;
    if (strncmp(a->port, b->port, sizeof a->port) != 0 ||
        memcmp(a->key_hash, b->key_hash, sizeof a->key_hash) != 0)
        return 0;
    if (a->has_auth && strncmp(a->auth, b->auth, sizeof a->auth) != 0)
        return 0;
    return 1;
}
