/* SMP server addresses and SMP queue URIs / queue info. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <cmocka.h>

#include "agent/queue_uri.h"
#include "common/server_addr.h"
#include "common/text.h"
#include "crypto/crypto.h"
#include "vectors.h"

/* ---- helpers ---- */

/* A NUL-terminated copy of what w holds; free() it. */
static char *wr_text(sx_wr *w)
{
    char *s;
    assert_int_equal(sx_wr_error(w), 0);
    s = malloc(w->len + 1);
    assert_non_null(s);
    if (w->len)
        memcpy(s, w->p, w->len);
    s[w->len] = '\0';
    return s;
}

static char *addr_print(const sx_server_addr *a)
{
    sx_wr w;
    char *s;
    sx_wr_init(&w);
    sx_server_addr_print(&w, a);
    s = wr_text(&w);
    sx_wr_free(&w);
    return s;
}

static char *uri_print(const sx_queue_uri *q)
{
    sx_wr w;
    char *s;
    sx_wr_init(&w);
    sx_queue_uri_print(&w, q);
    s = wr_text(&w);
    sx_wr_free(&w);
    return s;
}

static int addr_parse(sx_server_addr *a, const char *s)
{
    return sx_server_addr_parse(a, s, strlen(s));
}

static int uri_parse(sx_queue_uri *q, const char *s)
{
    return sx_queue_uri_parse(q, s, strlen(s));
}

static void assert_bytes(const uint8_t *got, size_t got_len,
                         const uint8_t *want, size_t want_len)
{
    assert_int_equal(got_len, want_len);
    if (want_len)
        assert_memory_equal(got, want, want_len);
}

static void assert_addr_roundtrip(const char *in, const char *want_out)
{
    sx_server_addr a, b;
    char *out;
    assert_int_equal(addr_parse(&a, in), 0);
    out = addr_print(&a);
    assert_string_equal(out, want_out);
    assert_int_equal(addr_parse(&b, out), 0);
    assert_true(sx_server_addr_equal(&a, &b));
    free(out);
}

static void assert_addr_fails(const char *in)
{
    sx_server_addr a;
    int rc = addr_parse(&a, in);
    if (rc >= 0)
        fail_msg("accepted: %s", in);
}

static void assert_uri_fails(const char *in)
{
    sx_queue_uri q;
    int rc = uri_parse(&q, in);
    if (rc >= 0)
        fail_msg("accepted: %s", in);
}

static sx_queue_mode mode_of(const char *s)
{
    if (strcmp(s, "QMMessaging") == 0)
        return SX_QUEUE_MODE_MESSAGING;
    if (strcmp(s, "QMContact") == 0)
        return SX_QUEUE_MODE_CONTACT;
    assert_string_equal(s, "none");
    return SX_QUEUE_MODE_NONE;
}

/* Splits a comma-separated host list and compares it with a's hosts. */
static void assert_hosts(const sx_server_addr *a, const char *hosts)
{
    size_t i = 0;
    const char *p = hosts;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t n = c ? (size_t)(c - p) : strlen(p);
        assert_true(i < a->n_hosts);
        assert_int_equal(strlen(a->hosts[i].name), n);
        assert_memory_equal(a->hosts[i].name, p, n);
        i++;
        if (!c)
            break;
        p = c + 1;
    }
    assert_int_equal(i, a->n_hosts);
}

static const char KH[] = "gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8=";
static const char DH[] =
    "MCowBQYDK2VuAyEAQ96SkTZ9-rSl7oZTp00bqWU93zlhfGwsaB4L_szv6Rs%3D";
static const char DH_RAW[] =
    "MCowBQYDK2VuAyEAQ96SkTZ9-rSl7oZTp00bqWU93zlhfGwsaB4L_szv6Rs=";

/* ---- reference vectors ---- */

static size_t check_server_vector(const tv_block *b)
{
    sx_server_addr a, d;
    const char *enc = tv_str(b, "encoded_str");
    const char *auth = tv_get(b, "auth_str");
    const char *hosts = tv_get(b, "hosts_str");
    const char *port = tv_get(b, "port_str");
    size_t khn, bn;
    uint8_t *kh = tv_hex(b, "key_hash", &khn);
    char *out;

    assert_int_equal(addr_parse(&a, enc), 0);
    assert_int_equal(khn, 32);
    assert_memory_equal(a.key_hash, kh, 32);
    if (hosts)
        assert_hosts(&a, hosts);
    if (port)
        assert_string_equal(a.port, port);
    if (auth) {
        assert_true(a.has_auth);
        assert_string_equal(a.auth, auth);
    } else {
        assert_false(a.has_auth);
    }
    out = addr_print(&a);
    assert_string_equal(out, enc);
    free(out);

    if (tv_get(b, "smp_encoded")) {
        uint8_t *bin = tv_hex(b, "smp_encoded", &bn);
        sx_wr w;
        sx_rd r;
        sx_wr_init(&w);
        sx_server_addr_encode(&w, &a);
        assert_int_equal(sx_wr_error(&w), 0);
        assert_bytes(w.p, w.len, bin, bn);
        sx_wr_free(&w);
        sx_rd_init(&r, bin, bn);
        assert_int_equal(sx_server_addr_decode(&r, &d), 0);
        assert_int_equal(sx_rd_end(&r), 0);
        assert_true(sx_server_addr_equal(&a, &d));
        /* every shorter prefix fails and leaves the reader alone */
        for (size_t k = 0; k < bn; k++) {
            sx_rd_init(&r, bin, k);
            assert_true(sx_server_addr_decode(&r, &d) < 0);
            assert_int_equal(r.pos, 0);
        }
        free(bin);
    }
    free(kh);
    return 1;
}

static void check_mode_prefixes(const uint8_t *bin, size_t bn, int info)
{
    /* every shorter prefix fails, except the one that only lacks an
     * optional mode byte at the end */
    for (size_t k = 0; k < bn; k++) {
        sx_rd r;
        int rc;
        sx_rd_init(&r, bin, k);
        if (info) {
            sx_queue_info qi;
            rc = sx_queue_info_decode(&r, &qi);
        } else {
            sx_queue_uri q;
            rc = sx_queue_uri_decode(&r, &q);
        }
        if (rc == 0) {
            assert_int_equal(k, bn - 1);
            assert_true(strchr("MCTF", bin[bn - 1]) != NULL);
            assert_int_equal(sx_rd_end(&r), 0);
        } else {
            assert_int_equal(r.pos, 0);
        }
    }
}

/* the mode byte the binary SMPQueueUri carries, 0 for none */
static int uri_mode_byte(uint16_t lo, uint16_t hi, sx_queue_mode m)
{
    if (lo >= 4)
        return m == SX_QUEUE_MODE_MESSAGING ? 'M'
               : m == SX_QUEUE_MODE_CONTACT ? 'C'
                                             : 0;
    if (lo >= 3 || (hi >= 3 && m == SX_QUEUE_MODE_MESSAGING))
        return m == SX_QUEUE_MODE_MESSAGING ? 'T' : 'F';
    return 0;
}

/* the mode a decoder reads from that byte */
static sx_queue_mode mode_from_byte(int b)
{
    if (b == 'M' || b == 'T')
        return SX_QUEUE_MODE_MESSAGING;
    if (b == 'C' || b == 'F')
        return SX_QUEUE_MODE_CONTACT;
    return SX_QUEUE_MODE_NONE;
}

static size_t check_uri_vector(const tv_block *b)
{
    sx_queue_uri q, d;
    sx_server_addr srv;
    sx_vrange vr;
    const char *enc = tv_str(b, "encoded_str");
    const char *vstr = tv_str(b, "client_vrange_str");
    size_t sn, dn, pn, bn;
    uint8_t *sid = tv_hex(b, "sender_id", &sn);
    uint8_t *dh = tv_hex(b, "dh_public_key_raw", &dn);
    uint8_t *spki = tv_hex(b, "dh_public_key_spki", &pn);
    uint8_t *bin = tv_hex(b, "smp_encoded", &bn);
    uint8_t der[SX_KEY_DER_MAX];
    size_t derlen;
    char *out;
    sx_wr w;
    sx_rd r;

    assert_int_equal(sx_key_public_encode(der, sizeof der, &derlen,
                                          SX_KEY_X25519, dh),
                     0);
    assert_bytes(der, derlen, spki, pn);

    assert_int_equal(uri_parse(&q, enc), 0);
    assert_int_equal(sx_vrange_str_decode(&vr, vstr, strlen(vstr)), 0);
    assert_int_equal(q.vrange.min, vr.min);
    assert_int_equal(q.vrange.max, vr.max);
    assert_int_equal(addr_parse(&srv, tv_str(b, "server_str")), 0);
    assert_true(sx_server_addr_equal(&q.addr.server, &srv));
    assert_bytes(q.addr.sender_id, q.addr.sender_id_len, sid, sn);
    assert_bytes(q.addr.dh_public, sizeof q.addr.dh_public, dh, dn);
    assert_int_equal(q.addr.mode, mode_of(tv_str(b, "queue_mode_str")));
    out = uri_print(&q);
    assert_string_equal(out, enc);
    free(out);

    sx_wr_init(&w);
    sx_queue_uri_encode(&w, &q);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_bytes(w.p, w.len, bin, bn);
    sx_wr_free(&w);
    sx_rd_init(&r, bin, bn);
    assert_int_equal(sx_queue_uri_decode(&r, &d), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    /* the binary form keeps the mode only as far as the versions allow */
    assert_int_equal(d.addr.mode, mode_from_byte(uri_mode_byte(
                                      q.vrange.min, q.vrange.max, q.addr.mode)));
    d.addr.mode = q.addr.mode;
    assert_true(sx_queue_uri_equal(&q, &d));
    check_mode_prefixes(bin, bn, 0);

    free(sid);
    free(dh);
    free(spki);
    free(bin);
    return 1;
}

/* What a queue info decodes to after encoding at its version. */
static sx_queue_mode info_mode_after(uint16_t v, sx_queue_mode m)
{
    if (v >= 4)
        return m;
    if (v == 3 && m == SX_QUEUE_MODE_MESSAGING)
        return m;
    return SX_QUEUE_MODE_NONE;
}

static size_t check_info_vector(const tv_block *b)
{
    sx_queue_info qi, d;
    const char *vstr = tv_str(b, "client_version_str");
    size_t sn, dn, bn;
    uint8_t *sid = tv_hex(b, "sender_id", &sn);
    uint8_t *dh = tv_hex(b, "dh_public_key_raw", &dn);
    uint8_t *bin = tv_hex(b, "encoded", &bn);
    sx_wr w;
    sx_rd r;

    memset(&qi, 0, sizeof qi);
    qi.version = (uint16_t)atoi(vstr);
    assert_int_equal(addr_parse(&qi.addr.server, tv_str(b, "server_str")), 0);
    assert_true(sn <= SX_QUEUE_ID_MAX);
    memcpy(qi.addr.sender_id, sid, sn);
    qi.addr.sender_id_len = sn;
    assert_int_equal(dn, 32);
    memcpy(qi.addr.dh_public, dh, 32);
    qi.addr.mode = mode_of(tv_str(b, "queue_mode_str"));

    sx_wr_init(&w);
    sx_queue_info_encode(&w, &qi);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_bytes(w.p, w.len, bin, bn);
    sx_wr_free(&w);

    sx_rd_init(&r, bin, bn);
    assert_int_equal(sx_queue_info_decode(&r, &d), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    assert_int_equal(d.version, qi.version);
    assert_bytes(d.addr.sender_id, d.addr.sender_id_len, sid, sn);
    assert_memory_equal(d.addr.dh_public, dh, 32);
    assert_int_equal(d.addr.mode, info_mode_after(qi.version, qi.addr.mode));
    if (qi.version <= 1) {
        /* legacy: the first host only */
        assert_int_equal(d.addr.server.n_hosts, 1);
        assert_string_equal(d.addr.server.hosts[0].name,
                            qi.addr.server.hosts[0].name);
        assert_string_equal(d.addr.server.port, qi.addr.server.port);
        assert_memory_equal(d.addr.server.key_hash, qi.addr.server.key_hash,
                            32);
    } else {
        assert_true(sx_server_addr_equal(&d.addr.server, &qi.addr.server));
    }
    check_mode_prefixes(bin, bn, 1);

    free(sid);
    free(dh);
    free(bin);
    return 1;
}

static void test_vectors(void **state)
{
    tv_file tf;
    size_t want, done = 0;
    (void)state;

    tv_load(&tf, "encoding.txt");
    want = tv_count_prefix(&tf, "smpserver-") +
           tv_count_prefix(&tf, "smpqueueuri-") +
           tv_count_prefix(&tf, "smpqueueinfo-");
    for (size_t i = 0; i < tf.n; i++) {
        const tv_block *b = &tf.b[i];
        if (strncmp(b->name, "smpserver-", 10) == 0)
            done += check_server_vector(b);
        else if (strncmp(b->name, "smpqueueuri-", 12) == 0)
            done += check_uri_vector(b);
        else if (strncmp(b->name, "smpqueueinfo-", 13) == 0)
            done += check_info_vector(b);
    }
    assert_true(want >= 13); /* 5 servers, 4 queue URIs, 4 queue infos */
    assert_int_equal(done, want);
    tv_free(&tf);
}

/* ---- server addresses ---- */

static void test_server_forms(void **state)
{
    char in[256], out[256];
    sx_server_addr a;
    (void)state;

    /* port-less, port, default port */
    snprintf(in, sizeof in, "smp://%s@smp.example.com", KH);
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(sx_server_addr_port(&a), 5223);
    assert_int_equal(a.hosts[0].kind, SX_HOST_DOMAIN);
    snprintf(in, sizeof in, "smp://%s@smp.example.com:443", KH);
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(sx_server_addr_port(&a), 443);
    /* leading zeros in the port are dropped, as the reference shows it */
    snprintf(in, sizeof in, "smp://%s@h:00443", KH);
    snprintf(out, sizeof out, "smp://%s@h:443", KH);
    assert_addr_roundtrip(in, out);
    snprintf(in, sizeof in, "smp://%s@h:0", KH);
    assert_addr_roundtrip(in, in);
    snprintf(in, sizeof in, "smp://%s@h:65535", KH);
    assert_addr_roundtrip(in, in);

    /* key hash without padding is accepted and printed padded */
    snprintf(in, sizeof in, "smp://%.43s@h", KH);
    snprintf(out, sizeof out, "smp://%s@h", KH);
    assert_addr_roundtrip(in, out);

    /* basic auth */
    snprintf(in, sizeof in, "smp://%s:p4ss-w0rd!@smp.example.com:5223", KH);
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_true(a.has_auth);
    assert_string_equal(a.auth, "p4ss-w0rd!");

    /* onion */
    snprintf(in, sizeof in,
             "smp://%s@abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx"
             ".onion",
             KH);
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_ONION);

    /* IPv4, with the reference's reading of numbers */
    snprintf(in, sizeof in, "smp://%s@10.0.0.1,192.168.1.10:8080", KH);
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_IPV4);
    assert_int_equal(a.hosts[1].kind, SX_HOST_IPV4);
    snprintf(in, sizeof in, "smp://%s@010.002.003.004", KH);
    snprintf(out, sizeof out, "smp://%s@10.2.3.4", KH);
    assert_addr_roundtrip(in, out);
    snprintf(in, sizeof in, "smp://%s@1.2.3.300", KH); /* last octet mod 256 */
    snprintf(out, sizeof out, "smp://%s@1.2.3.44", KH);
    assert_addr_roundtrip(in, out);
    snprintf(in, sizeof in, "smp://%s@256.1.1.1", KH); /* then a domain */
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_DOMAIN);
    snprintf(in, sizeof in, "smp://%s@1.2.3", KH);
    assert_addr_roundtrip(in, in);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_DOMAIN);

    /* IPv6: brackets or bare, printed in short form without brackets */
    snprintf(in, sizeof in, "smp://%s@[::1]:5223", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_IPV6);
    assert_string_equal(a.hosts[0].name, "::1");
    assert_string_equal(a.port, "5223");
    {
        char *p = addr_print(&a);
        snprintf(out, sizeof out, "smp://%s@::1:5223", KH);
        assert_string_equal(p, out);
        free(p);
    }
    snprintf(in, sizeof in, "smp://%s@[2001:0DB8:0:0:0:0:0:1],h.com", KH);
    snprintf(out, sizeof out, "smp://%s@2001:db8::1,h.com", KH);
    assert_addr_roundtrip(in, out);
    snprintf(in, sizeof in, "smp://%s@2001:db8::1", KH);
    assert_addr_roundtrip(in, in);
    snprintf(in, sizeof in, "smp://%s@fe80::a:b:c:d,1.2.3.4", KH);
    assert_addr_roundtrip(in, in);
    snprintf(in, sizeof in, "smp://%s@[::ffff:192.0.2.1]", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_string_equal(a.hosts[0].name, "::ffff:192.0.2.1");
    snprintf(in, sizeof in, "smp://%s@[ 1:0:0:2:0:0:0:3 ]", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_string_equal(a.hosts[0].name, "1:0:0:2::3");
    /* bare IPv6 swallows what looks like a port (::1:5223 is an
     * IPv4-compatible address, shown as such) */
    snprintf(in, sizeof in, "smp://%s@::1:5223", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_string_equal(a.hosts[0].name, "::0.1.82.35");
    assert_string_equal(a.port, "");
    /* a trailing ':' is read and ignored by the IPv6 parser */
    snprintf(in, sizeof in, "smp://%s@::1:", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_string_equal(a.hosts[0].name, "::1");
    /* not an address in brackets: then a domain name */
    snprintf(in, sizeof in, "smp://%s@[x]", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_DOMAIN);
    assert_string_equal(a.hosts[0].name, "[x]");
    snprintf(in, sizeof in, "smp://%s@[]", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_DOMAIN);
    /* hex only: a domain name */
    snprintf(in, sizeof in, "smp://%s@cafe", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    assert_int_equal(a.hosts[0].kind, SX_HOST_DOMAIN);

    /* eight hosts is the limit */
    snprintf(in, sizeof in, "smp://%s@a,b,c,d,e,f,g,h", KH);
    assert_addr_roundtrip(in, in);
    snprintf(in, sizeof in, "smp://%s@a,b,c,d,e,f,g,h,i", KH);
    assert_int_equal(addr_parse(&a, in), SIMPLEX_ERR_TOO_LARGE);
}

/* IPv6 text matches glibc's inet_ntop, as the reference's library does */
static void test_ipv6_show(void **state)
{
    uint32_t seed = 12345;
    (void)state;
    for (int it = 0; it < 20000; it++) {
        uint16_t g[8];
        uint8_t bin[16];
        char in[64], want[64];
        sx_host h;
        size_t used;
        int k = 0;
        for (int i = 0; i < 8; i++) {
            seed = seed * 1103515245u + 12345u;
            /* mostly zeros, to exercise the runs */
            switch ((seed >> 16) % 4) {
            case 0:
            case 1:
                g[i] = 0;
                break;
            case 2:
                g[i] = (uint16_t)((seed >> 8) & 0xffff);
                break;
            default:
                g[i] = (uint16_t)((seed >> 20) & 0xf);
            }
            if (it % 7 == 0 && i < 5)
                g[i] = 0;
            if (it % 7 == 0 && i == 5)
                g[i] = (it % 14 == 0) ? 0xffff : 0;
            bin[2 * i] = (uint8_t)(g[i] >> 8);
            bin[2 * i + 1] = (uint8_t)g[i];
            k += snprintf(in + k, sizeof in - (size_t)k, "%s%x", i ? ":" : "",
                          g[i]);
        }
        assert_non_null(inet_ntop(AF_INET6, bin, want, sizeof want));
        assert_int_equal(sx_host_parse_prefix(&h, in, strlen(in), &used), 0);
        assert_int_equal(used, strlen(in));
        assert_int_equal(h.kind, SX_HOST_IPV6);
        assert_string_equal(h.name, want);
    }
}

static void test_server_rejects(void **state)
{
    char in[512];
    (void)state;

    assert_addr_fails("");
    snprintf(in, sizeof in, "%s@smp.example.com", KH); /* no scheme */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "ntf://%s@smp.example.com", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "SMP://%s@smp.example.com", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp:/%s@smp.example.com", KH);
    assert_addr_fails(in);
    assert_addr_fails("smp://@smp.example.com");           /* no key hash */
    assert_addr_fails("smp://gHmv54nD-Z_C*@smp.example.com"); /* bad char */
    assert_addr_fails("smp://gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9Vmg=@h");
    /* 31 and 33 bytes */
    assert_addr_fails("smp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==@h");
    assert_addr_fails("smp://AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@h");
    /* non-canonical padding bits, bad padding */
    assert_addr_fails("smp://gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx9=@h");
    assert_addr_fails("smp://gHmv54nD-Z_CqZR960muE8LzysdZlZ0pn-9VmgFFpx8==@h");
    snprintf(in, sizeof in, "smp://%s", KH); /* no '@' */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@", KH); /* empty host */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@:5223", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@a,,b", KH); /* empty host in list */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@a,", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@,a", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h:65536", KH); /* port range */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h:99999999999999999999999", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h:abc", KH); /* non-numeric port */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h:", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h:-1", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h:5223x", KH); /* trailing junk */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h ", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h/", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@h#x", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@1.2.3.4x", KH); /* IPv4 then junk */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@1.2.3.4.example.com", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@ABC.onion", KH); /* not an onion */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@www.abc.onion", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@abc.onionx", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@[::1", KH); /* IPv6 */
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@1:2:3:4:5:6:7:8:9", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@12345::1", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s@fe80::1%%eth0", KH);
    assert_addr_fails(in);
    /* basic auth: empty, bad characters */
    snprintf(in, sizeof in, "smp://%s:@h", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s:a:b@h", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s:a/b@h", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s:a b@h", KH);
    assert_addr_fails(in);
    snprintf(in, sizeof in, "smp://%s:a\tb@h", KH);
    assert_addr_fails(in);
    /* embedded NUL */
    {
        sx_server_addr a;
        char buf[128];
        int n = snprintf(buf, sizeof buf, "smp://%s@h", KH);
        buf[n] = '\0';
        assert_true(sx_server_addr_parse(&a, buf, (size_t)n + 1) < 0);
    }
    /* a host longer than 255 bytes */
    {
        int n = snprintf(in, sizeof in, "smp://%s@", KH);
        memset(in + n, 'a', 300);
        in[n + 300] = '\0';
        assert_addr_fails(in);
    }
}

static void test_server_binary(void **state)
{
    static const char *hosts[] = {"::1", "abc.onion", "1.2.3.4", "a.b"};
    uint8_t buf[512];
    char in[256];
    sx_server_addr a, d;
    sx_wr w;
    sx_rd r;
    (void)state;

    snprintf(in, sizeof in, "smp://%s@[::1],abc.onion,1.2.3.4,a.b:7", KH);
    assert_int_equal(addr_parse(&a, in), 0);
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(a.hosts[i].name, hosts[i]);
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_server_addr_encode(&w, &a);
    assert_int_equal(sx_wr_error(&w), 0);
    sx_rd_init(&r, buf, w.len);
    assert_int_equal(sx_server_addr_decode(&r, &d), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    assert_true(sx_server_addr_equal(&a, &d));
    assert_int_equal(d.hosts[0].kind, SX_HOST_IPV6);
    assert_int_equal(d.hosts[1].kind, SX_HOST_ONION);
    assert_int_equal(d.hosts[2].kind, SX_HOST_IPV4);
    assert_int_equal(d.hosts[3].kind, SX_HOST_DOMAIN);
    /* trailing bytes are left to the caller */
    buf[w.len] = 0;
    sx_rd_init(&r, buf, w.len + 1);
    assert_int_equal(sx_server_addr_decode(&r, &d), 0);
    assert_int_equal(sx_rd_end(&r), SIMPLEX_ERR_TRAILING);
    /* every prefix fails */
    for (size_t k = 0; k < w.len; k++) {
        sx_rd_init(&r, buf, k);
        assert_true(sx_server_addr_decode(&r, &d) < 0);
        assert_int_equal(r.pos, 0);
    }

    /* hosts written in other forms are read as the text parser reads them */
    {
        static const uint8_t enc[] = {
            2, 5, '[', ':', ':', '1', ']', 8, '0', '1', '.', '2', '.', '3',
            '.', '4', 0, 32};
        uint8_t full[sizeof enc + 32];
        memcpy(full, enc, sizeof enc);
        memset(full + sizeof enc, 7, 32);
        sx_rd_init(&r, full, sizeof full);
        assert_int_equal(sx_server_addr_decode(&r, &d), 0);
        assert_string_equal(d.hosts[0].name, "::1");
        assert_string_equal(d.hosts[1].name, "1.2.3.4");
    }

    /* rejected binary forms */
    {
        uint8_t kh[32];
        struct {
            const uint8_t *p;
            size_t n;
        } bad[16];
        static const uint8_t no_hosts[] = {0, 0, 32};
        static const uint8_t empty_host[] = {1, 0, 0, 32};
        static const uint8_t host_junk[] = {1, 3, 'a', ',', 'b', 0, 32};
        static const uint8_t host_space[] = {1, 2, 'a', ' ', 0, 32};
        static const uint8_t port_alpha[] = {1, 1, 'a', 2, 'x', '1', 32};
        static const uint8_t port_big[] = {1, 1, 'a', 5, '6', '5', '5',
                                           '3', '6', 32};
        static const uint8_t port_zero[] = {1, 1, 'a', 2, '0', '1', 32};
        static const uint8_t kh_short[] = {1, 1, 'a', 0, 31};
        static const uint8_t nine[] = {9, 1, 'a', 1, 'a', 1, 'a', 1, 'a',
                                       1, 'a', 1, 'a', 1, 'a', 1, 'a',
                                       1, 'a', 0, 32};
        size_t nb = 0;
        memset(kh, 1, sizeof kh);
        bad[nb].p = no_hosts, bad[nb++].n = sizeof no_hosts;
        bad[nb].p = empty_host, bad[nb++].n = sizeof empty_host;
        bad[nb].p = host_junk, bad[nb++].n = sizeof host_junk;
        bad[nb].p = host_space, bad[nb++].n = sizeof host_space;
        bad[nb].p = port_alpha, bad[nb++].n = sizeof port_alpha;
        bad[nb].p = port_big, bad[nb++].n = sizeof port_big;
        bad[nb].p = port_zero, bad[nb++].n = sizeof port_zero;
        bad[nb].p = kh_short, bad[nb++].n = sizeof kh_short;
        bad[nb].p = nine, bad[nb++].n = sizeof nine;
        for (size_t i = 0; i < nb; i++) {
            uint8_t full[64];
            memcpy(full, bad[i].p, bad[i].n);
            memcpy(full + bad[i].n, kh, 32);
            sx_rd_init(&r, full, bad[i].n + 32);
            if (sx_server_addr_decode(&r, &d) >= 0)
                fail_msg("binary form %zu accepted", i);
            assert_int_equal(r.pos, 0);
        }
    }

    /* legacy single-host form */
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_server_addr_encode_legacy(&w, &a);
    assert_int_equal(sx_wr_error(&w), 0);
    assert_int_equal(buf[0], 3);
    sx_rd_init(&r, buf, w.len);
    assert_int_equal(sx_server_addr_decode_legacy(&r, &d), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    assert_int_equal(d.n_hosts, 1);
    assert_string_equal(d.hosts[0].name, "::1");
    assert_string_equal(d.port, "7");

    /* invalid structures are not written */
    memset(&a, 0, sizeof a);
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_server_addr_encode(&w, &a);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_INVALID_ARG);
}

/* ---- queue URIs ---- */

static void test_queue_uri_forms(void **state)
{
    char in[1024], want[1024];
    sx_queue_uri q;
    char *out;
    (void)state;

    /* the dh key may come straight after '#' */
    snprintf(in, sizeof in, "smp://%s@h.com/AQID#%s/?v=2-4&q=c", KH, DH_RAW);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_CONTACT);
    assert_int_equal(q.addr.sender_id_len, 3);
    out = uri_print(&q);
    snprintf(want, sizeof want, "smp://%s@h.com/AQID#/?v=2-4&dh=%s&q=c", KH,
             DH);
    assert_string_equal(out, want);
    free(out);
    snprintf(in, sizeof in, "smp://%s@h.com/AQID/#%s?v=2-4&q=c", KH, DH_RAW);
    assert_int_equal(uri_parse(&q, in), 0);
    /* ... and then a dh= parameter is ignored */
    snprintf(in, sizeof in, "smp://%s@h.com/AQID#%s?v=2&dh=junk", KH, DH_RAW);
    assert_int_equal(uri_parse(&q, in), 0);

    /* version 1: the key alone after '#', printed in the legacy form; the
     * preset server gets its onion host */
    snprintf(in, sizeof in, "smp://%s@smp4.simplex.im/AQID#%s", KH, DH_RAW);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.vrange.min, 1);
    assert_int_equal(q.vrange.max, 1);
    assert_int_equal(q.addr.server.n_hosts, 2);
    assert_int_equal(q.addr.server.hosts[1].kind, SX_HOST_ONION);
    out = uri_print(&q);
    snprintf(want, sizeof want,
             "smp://%s@smp4.simplex.im/AQID#/?v=1&dh=%s&srv="
             "o5vmywmrnaxalvz6wi3zicyftgio6psuvyniis6gco6bp6ekl4cqj4id.onion",
             KH, DH);
    assert_string_equal(out, want);
    free(out);
    /* not for version 2 and up */
    snprintf(in, sizeof in, "smp://%s@smp4.simplex.im/AQID#/?v=1-2&dh=%s", KH,
             DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.server.n_hosts, 1);

    /* legacy form with three hosts and a port; IPv6 in srv= */
    snprintf(in, sizeof in,
             "smp://%s@a.com:443/AQID#/?v=1-3&dh=%s&q=m&srv=b.com%%2C%%3A%%3A1",
             KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.server.n_hosts, 3);
    assert_string_equal(q.addr.server.hosts[2].name, "::1");
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_MESSAGING);
    out = uri_print(&q);
    snprintf(want, sizeof want,
             "smp://%s@a.com:443/AQID#/?v=1-3&dh=%s&q=m&k=s&srv=b.com%%2C%%3A%%3A1",
             KH, DH);
    assert_string_equal(out, want);
    free(out);
    /* srv= in the current form adds hosts too; printed in the authority */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=2-4&dh=%s&srv=b.com", KH,
             DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.server.n_hosts, 2);
    out = uri_print(&q);
    snprintf(want, sizeof want, "smp://%s@a.com,b.com/AQID#/?v=2-4&dh=%s", KH,
             DH);
    assert_string_equal(out, want);
    free(out);
    /* an empty srv= adds nothing */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s&srv=", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.server.n_hosts, 1);

    /* queue modes: unknown q= falls back to k=s */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s&q=x", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_NONE);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s&q=x&k=s", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_MESSAGING);
    out = uri_print(&q); /* no k=s from version 4 */
    snprintf(want, sizeof want, "smp://%s@a.com/AQID#/?v=4&dh=%s&q=m", KH, DH);
    assert_string_equal(out, want);
    free(out);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?k=s&dh=%s&v=3", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_MESSAGING);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=3&dh=%s&q=c&k=s", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_CONTACT);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=3&dh=%s&k=x", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_NONE);

    /* query details: ';' separators, percent-encoded names and values, the
     * first of repeated names, a second '?' */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/??%%76=2%%2d3;dh=%s;v=9&q=m",
             KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.vrange.min, 2);
    assert_int_equal(q.vrange.max, 3);
    assert_int_equal(q.addr.mode, SX_QUEUE_MODE_MESSAGING);
    /* the '=' of the key need not be escaped */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s", KH, DH_RAW);
    assert_int_equal(uri_parse(&q, in), 0);
    /* leading zeros in versions are accepted */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=001-0004&dh=%s", KH, DH);
    assert_int_equal(uri_parse(&q, in), 0);
    assert_int_equal(q.vrange.min, 1);
    assert_int_equal(q.vrange.max, 4);
    /* versions over 65535 (which the reference wraps) are refused, as
     * sx_vrange_str_decode refuses them */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=65537-65540&dh=%s", KH,
             DH);
    assert_int_equal(uri_parse(&q, in), SIMPLEX_ERR_PARSE);
}

static void test_queue_uri_rejects(void **state)
{
    char in[1024];
    static const char ED25519_SPKI[] =
        "MCowBQYDK2VwAyEAQ96SkTZ9-rSl7oZTp00bqWU93zlhfGwsaB4L_szv6Rs%3D";
    (void)state;

    snprintf(in, sizeof in, "smp://%s@a.com/AQID", KH); /* no '#' */
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#", KH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#v=4&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com#/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in); /* no sender id */
    snprintf(in, sizeof in, "smp://%s@a.com/#/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/A#/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in); /* bad base64 */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?dh=%s", KH, DH);
    assert_uri_fails(in); /* no v= */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4-2&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=1-&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=x&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4", KH);
    assert_uri_fails(in); /* no dh= */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=", KH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s", KH,
             ED25519_SPKI);
    assert_uri_fails(in); /* not an X25519 key */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%.40s", KH, DH);
    assert_uri_fails(in); /* truncated key */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s%%3D", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s&srv=a,,b", KH,
             DH);
    assert_uri_fails(in); /* bad srv= */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s&srv=x.onion.y.onion",
             KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s&srv=a%%2C", KH,
             DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s x", KH, DH);
    assert_uri_fails(in); /* trailing junk */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#/?v=4&dh=%s\n", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s:pass@a.com/AQID#/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in); /* basic auth */
    snprintf(in, sizeof in, "smp://%s@a.com/AQID#%sx", KH, DH_RAW);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@/AQID#/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in);
    snprintf(in, sizeof in, "smp://%s@a,b,c,d,e,f,g/AQID#/?v=4&dh=%s&srv=h,i",
             KH, DH);
    assert_uri_fails(in); /* more than 8 hosts */
    snprintf(in, sizeof in, "xmp://%s@a.com/AQID#/?v=4&dh=%s", KH, DH);
    assert_uri_fails(in);
    assert_uri_fails("");
    /* a sender id longer than 255 bytes */
    {
        int n = snprintf(in, sizeof in, "smp://%s@a.com/", KH);
        memset(in + n, 'A', 344);
        snprintf(in + n + 344, sizeof in - (size_t)n - 344, "#/?v=4&dh=%s",
                 DH);
        assert_uri_fails(in);
    }
}

static void make_queue(sx_queue_uri *q, uint16_t lo, uint16_t hi,
                       sx_queue_mode m, const char *server)
{
    memset(q, 0, sizeof *q);
    q->vrange.min = lo;
    q->vrange.max = hi;
    assert_int_equal(addr_parse(&q->addr.server, server), 0);
    for (size_t i = 0; i < 24; i++)
        q->addr.sender_id[i] = (uint8_t)(i * 7 + 1);
    q->addr.sender_id_len = 24;
    for (size_t i = 0; i < 32; i++)
        q->addr.dh_public[i] = (uint8_t)(255 - i);
    q->addr.mode = m;
}

static void test_queue_binary(void **state)
{
    static const sx_queue_mode modes[] = {SX_QUEUE_MODE_NONE,
                                          SX_QUEUE_MODE_MESSAGING,
                                          SX_QUEUE_MODE_CONTACT};
    char server[256];
    uint8_t buf[1024];
    sx_queue_uri q, d;
    sx_queue_info qi, di;
    sx_wr w;
    sx_rd r;
    (void)state;

    snprintf(server, sizeof server, "smp://%s@a.com,[::2],b.onion:99", KH);
    for (uint16_t lo = 1; lo <= 5; lo++) {
        for (uint16_t hi = lo; hi <= 5; hi++) {
            for (size_t m = 0; m < 3; m++) {
                int mb = uri_mode_byte(lo, hi, modes[m]);
                size_t base;
                char *text;
                make_queue(&q, lo, hi, modes[m], server);

                /* text round trip (IPv6 only in srv=: no port after it) */
                text = uri_print(&q);
                assert_int_equal(uri_parse(&d, text), 0);
                /* "::2,b.onion:99": the bare IPv6 ends at the ',' */
                assert_true(sx_queue_uri_equal(&q, &d));
                free(text);

                /* SMPQueueUri */
                sx_wr_init_fixed(&w, buf, sizeof buf);
                sx_queue_uri_encode(&w, &q);
                assert_int_equal(sx_wr_error(&w), 0);
                /* range, count, 3 hosts, port, key hash, id, key */
                base = 4 + 1 + 6 + 4 + 8 + 3 + 33 + 25 + 45;
                assert_int_equal(w.len, base + (mb ? 1 : 0));
                if (mb)
                    assert_int_equal(buf[w.len - 1], mb);
                sx_rd_init(&r, buf, w.len);
                assert_int_equal(sx_queue_uri_decode(&r, &d), 0);
                assert_int_equal(sx_rd_end(&r), 0);
                assert_int_equal(d.vrange.min, lo);
                assert_int_equal(d.vrange.max, hi);
                assert_int_equal(d.addr.mode, mode_from_byte(mb));
                d.addr.mode = q.addr.mode;
                assert_true(sx_queue_address_equal(&d.addr, &q.addr));
                check_mode_prefixes(buf, w.len, 0);
                /* trailing bytes are left to the caller */
                buf[w.len] = 'X';
                sx_rd_init(&r, buf, w.len + 1);
                assert_int_equal(sx_queue_uri_decode(&r, &d), 0);
                assert_int_equal(sx_rd_end(&r), SIMPLEX_ERR_TRAILING);

                /* SMPQueueInfo at each version */
                sx_queue_uri_to_info(&qi, &q, hi);
                sx_wr_init_fixed(&w, buf, sizeof buf);
                sx_queue_info_encode(&w, &qi);
                assert_int_equal(sx_wr_error(&w), 0);
                sx_rd_init(&r, buf, w.len);
                assert_int_equal(sx_queue_info_decode(&r, &di), 0);
                assert_int_equal(sx_rd_end(&r), 0);
                assert_int_equal(di.version, hi);
                assert_int_equal(di.addr.mode,
                                 info_mode_after(hi, modes[m]));
                assert_int_equal(di.addr.server.n_hosts, hi <= 1 ? 1 : 3);
                check_mode_prefixes(buf, w.len, 1);
            }
        }
    }

    /* decoders take any mode byte whatever the version */
    make_queue(&q, 1, 1, SX_QUEUE_MODE_NONE, server);
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_queue_uri_encode(&w, &q);
    buf[w.len] = 'F';
    sx_rd_init(&r, buf, w.len + 1);
    assert_int_equal(sx_queue_uri_decode(&r, &d), 0);
    assert_int_equal(sx_rd_end(&r), 0);
    assert_int_equal(d.addr.mode, SX_QUEUE_MODE_CONTACT);

    /* version 1 queue info: one host, preset servers get their onion */
    {
        char srv[128];
        snprintf(srv, sizeof srv, "smp://%s@smp10.simplex.im", KH);
        make_queue(&q, 1, 1, SX_QUEUE_MODE_NONE, srv);
        sx_queue_uri_to_info(&qi, &q, 1);
        sx_wr_init_fixed(&w, buf, sizeof buf);
        sx_queue_info_encode(&w, &qi);
        assert_int_equal(buf[2], 16); /* the host, not a host count */
        sx_rd_init(&r, buf, w.len);
        assert_int_equal(sx_queue_info_decode(&r, &di), 0);
        assert_int_equal(di.addr.server.n_hosts, 2);
        assert_string_equal(
            di.addr.server.hosts[1].name,
            "rb2pbttocvnbrngnwziclp2f4ckjq65kebafws6g4hy22cdaiv5dwjqd.onion");
        /* version 0 is the legacy form too */
        qi.version = 0;
        sx_wr_init_fixed(&w, buf, sizeof buf);
        sx_queue_info_encode(&w, &qi);
        sx_rd_init(&r, buf, w.len);
        assert_int_equal(sx_queue_info_decode(&r, &di), 0);
        assert_int_equal(di.version, 0);
    }

    /* rejected: bad version range, bad key */
    make_queue(&q, 2, 4, SX_QUEUE_MODE_NONE, server);
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_queue_uri_encode(&w, &q);
    {
        uint8_t bad[1024];
        memcpy(bad, buf, w.len);
        bad[1] = 5; /* 5-4 */
        sx_rd_init(&r, bad, w.len);
        assert_true(sx_queue_uri_decode(&r, &d) < 0);
        memcpy(bad, buf, w.len);
        bad[w.len - 32 - 2] ^= 1; /* the key's algorithm */
        sx_rd_init(&r, bad, w.len);
        assert_true(sx_queue_uri_decode(&r, &d) < 0);
        memcpy(bad, buf, w.len);
        bad[w.len - 45] = 43; /* key length */
        sx_rd_init(&r, bad, w.len);
        assert_true(sx_queue_uri_decode(&r, &d) < 0);
    }

    /* invalid structures are not written */
    q.addr.server.has_auth = 1;
    strcpy(q.addr.server.auth, "x");
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_queue_uri_encode(&w, &q);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_INVALID_ARG);
    q.addr.server.has_auth = 0;
    q.addr.server.n_hosts = SX_SERVER_MAX_HOSTS + 1;
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_queue_uri_print(&w, &q);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_INVALID_ARG);
    q.addr.server.n_hosts = 3;
    q.addr.sender_id_len = 256;
    sx_queue_uri_to_info(&qi, &q, 4);
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_queue_info_encode(&w, &qi);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_INVALID_ARG);
    q.addr.sender_id_len = 24;
    q.vrange.min = 5;
    sx_wr_init_fixed(&w, buf, sizeof buf);
    sx_queue_uri_print(&w, &q);
    assert_int_equal(sx_wr_error(&w), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_queue_mode_sender_can_secure(SX_QUEUE_MODE_MESSAGING),
                     1);
    assert_int_equal(sx_queue_mode_sender_can_secure(SX_QUEUE_MODE_CONTACT), 0);
    assert_int_equal(sx_queue_mode_sender_can_secure(SX_QUEUE_MODE_NONE), 0);
}

/* Bytes that parse must not crash and must print back to something that
 * parses the same; arbitrary mutations of valid links. */
static void test_mutations(void **state)
{
    char base[512], buf[512];
    uint32_t seed = 777;
    (void)state;
    snprintf(base, sizeof base,
             "smp://%s@a.com,b.onion,1.2.3.4:443/AQIDBA#/?v=1-4&dh=%s&q=m&srv=c.d",
             KH, DH);
    for (int it = 0; it < 20000; it++) {
        size_t n = strlen(base);
        sx_queue_uri q, d;
        memcpy(buf, base, n);
        for (int k = 0; k < 3 && n > 0; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % n;
            seed = seed * 1103515245u + 12345u;
            switch ((seed >> 12) % 3) {
            case 0:
                buf[pos] = (char)(seed >> 20);
                break;
            case 1:
                memmove(buf + pos, buf + pos + 1, n - pos - 1);
                n--;
                break;
            default:
                n = pos + 1;
            }
        }
        if (sx_queue_uri_parse(&q, buf, n) == 0) {
            char *out = uri_print(&q);
            int v6 = 0;
            for (size_t h = 0; h < q.addr.server.n_hosts; h++)
                v6 |= q.addr.server.hosts[h].kind == SX_HOST_IPV6;
            if (!v6) {
                assert_int_equal(uri_parse(&d, out), 0);
                assert_true(sx_queue_uri_equal(&q, &d));
            }
            free(out);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_server_forms),
        cmocka_unit_test(test_ipv6_show),
        cmocka_unit_test(test_server_rejects),
        cmocka_unit_test(test_server_binary),
        cmocka_unit_test(test_queue_uri_forms),
        cmocka_unit_test(test_queue_uri_rejects),
        cmocka_unit_test(test_queue_binary),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
