/*
 * The SOCKS5 client: the handshake state machine byte for byte, the Tor
 * isolation credentials, and the blocking driver against a real proxy
 * (Debian's microsocks, started here on 127.0.0.1) and a TCP echo server
 * run in a child process. No mocks; loopback only; bounded timeouts.
 */
#define _DEFAULT_SOURCE 1

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "client/socks5.h"
#include "simplex/simplex.h"

#define IO_TIMEOUT_MS 5000

/* ---- state machine helpers ---- */

/* Takes all pending output, checks it equals exp[0..n). */
static void expect_out(sx_socks5 *s, const uint8_t *exp, size_t n)
{
    const uint8_t *p = NULL;
    size_t len = 0;

    assert_int_equal(sx_socks5_out(s, &p, &len), n);
    assert_int_equal(len, n);
    if (n) {
        assert_non_null(p);
        assert_memory_equal(p, exp, n);
    }
    sx_socks5_sent(s, len);
    assert_int_equal(sx_socks5_out(s, &p, &len), 0);
}

static int feed(sx_socks5 *s, const uint8_t *d, size_t n, size_t *consumed)
{
    return sx_socks5_in(s, d, n, consumed);
}

static const uint8_t GREET_NOAUTH[] = {5, 1, 0};
static const uint8_t GREET_AUTH[] = {5, 1, 2};
static const uint8_t OK_V4[] = {5, 0, 0, 1, 0, 0, 0, 0, 0, 0};

/* Runs a no-auth handshake up to the point where the final reply is due. */
static void to_reply(sx_socks5 *s)
{
    static const uint8_t m[] = {5, 0};
    size_t c;

    assert_int_equal(sx_socks5_init(s, "example.com", 443, NULL, 0, NULL, 0),
                     0);
    expect_out(s, GREET_NOAUTH, sizeof GREET_NOAUTH);
    assert_int_equal(feed(s, m, 2, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(c, 2);
    sx_socks5_sent(s, SIZE_MAX);
}

/* ---- exact request bytes ---- */

static void test_request_noauth_domain(void **st)
{
    static const uint8_t m[] = {5, 0};
    static const char host[] = "abcdefghijklmnop.onion";
    uint8_t req[64];
    size_t n = 0, c;
    sx_socks5 s;

    (void)st;
    assert_int_equal(sx_socks5_init(&s, host, 5223, NULL, 0, NULL, 0), 0);
    assert_int_equal(sx_socks5_status(&s), SX_SOCKS5_AGAIN);
    expect_out(&s, GREET_NOAUTH, 3);
    assert_int_equal(sx_socks5_in_want(&s), 2);
    assert_int_equal(feed(&s, m, 2, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(c, 2);
    req[n++] = 5; req[n++] = 1; req[n++] = 0; req[n++] = 3;
    req[n++] = (uint8_t)strlen(host);
    memcpy(req + n, host, strlen(host));
    n += strlen(host);
    req[n++] = 5223 >> 8;
    req[n++] = 5223 & 0xff;
    expect_out(&s, req, n);
    assert_int_equal(feed(&s, OK_V4, sizeof OK_V4, &c), SX_SOCKS5_DONE);
    assert_int_equal(c, sizeof OK_V4);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_NONE);
    assert_int_equal(sx_socks5_reply_code(&s), 0);
    assert_int_equal(sx_socks5_in_want(&s), 0);
    /* finished: nothing more is taken */
    assert_int_equal(feed(&s, OK_V4, sizeof OK_V4, &c), SX_SOCKS5_DONE);
    assert_int_equal(c, 0);
    sx_socks5_clear(&s);
}

static void test_request_userpass_ipv4(void **st)
{
    static const uint8_t m[] = {5, 2}, a[] = {1, 0};
    static const uint8_t auth[] = {1, 4, 'u', 's', 'e', 'r',
                                   6, 's', 'e', 'c', 'r', 'e', 't'};
    static const uint8_t req[] = {5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90};
    size_t c;
    sx_socks5 s;

    (void)st;
    assert_int_equal(sx_socks5_init(&s, "10.1.2.3", 8080,
                                    (const uint8_t *)"user", 4,
                                    (const uint8_t *)"secret", 6),
                     0);
    expect_out(&s, GREET_AUTH, 3);
    assert_int_equal(feed(&s, m, 2, &c), SX_SOCKS5_AGAIN);
    expect_out(&s, auth, sizeof auth);
    assert_int_equal(feed(&s, a, 2, &c), SX_SOCKS5_AGAIN);
    expect_out(&s, req, sizeof req);
    assert_int_equal(feed(&s, OK_V4, sizeof OK_V4, &c), SX_SOCKS5_DONE);
    sx_socks5_clear(&s);
}

static void test_request_ipv6(void **st)
{
    static const uint8_t m[] = {5, 0};
    static const uint8_t req[] = {5, 1, 0, 4, 0x20, 0x01, 0x0d, 0xb8, 0, 0,
                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80};
    static const char *const hosts[] = {"2001:db8::1", "[2001:db8::1]"};
    size_t i, c;
    sx_socks5 s;

    (void)st;
    for (i = 0; i < 2; i++) {
        assert_int_equal(sx_socks5_init(&s, hosts[i], 80, NULL, 0, NULL, 0),
                         0);
        expect_out(&s, GREET_NOAUTH, 3);
        assert_int_equal(feed(&s, m, 2, &c), SX_SOCKS5_AGAIN);
        expect_out(&s, req, sizeof req);
    }
    /* a loopback IPv6 literal too */
    assert_int_equal(sx_socks5_init(&s, "::1", 1, NULL, 0, NULL, 0), 0);
    expect_out(&s, GREET_NOAUTH, 3);
    assert_int_equal(feed(&s, m, 2, &c), SX_SOCKS5_AGAIN);
    {
        uint8_t r[22] = {5, 1, 0, 4};
        r[19] = 1;
        r[21] = 1;
        expect_out(&s, r, sizeof r);
    }
}

static void test_empty_credentials(void **st)
{
    /* the isolation rule sends an empty password; an empty username is
     * passed through as well */
    static const uint8_t m[] = {5, 2};
    static const uint8_t auth[] = {1, 0, 0};
    uint8_t big[3 + 2 * 255];
    uint8_t u[255], p[255];
    size_t c;
    sx_socks5 s;

    (void)st;
    assert_int_equal(sx_socks5_init(&s, "h", 1, (const uint8_t *)"", 0,
                                    NULL, 0), 0);
    expect_out(&s, GREET_AUTH, 3);
    assert_int_equal(feed(&s, m, 2, &c), SX_SOCKS5_AGAIN);
    expect_out(&s, auth, sizeof auth);

    /* the longest credentials */
    memset(u, 'u', sizeof u);
    memset(p, 'p', sizeof p);
    assert_int_equal(sx_socks5_init(&s, "h", 1, u, 255, p, 255), 0);
    expect_out(&s, GREET_AUTH, 3);
    assert_int_equal(feed(&s, m, 2, &c), SX_SOCKS5_AGAIN);
    big[0] = 1;
    big[1] = 255;
    memcpy(big + 2, u, 255);
    big[257] = 255;
    memcpy(big + 258, p, 255);
    expect_out(&s, big, sizeof big);
    sx_socks5_clear(&s);
}

static void test_partial_send(void **st)
{
    const uint8_t *p;
    size_t n;
    sx_socks5 s;

    (void)st;
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, NULL, 0), 0);
    assert_int_equal(sx_socks5_out(&s, &p, &n), 3);
    sx_socks5_sent(&s, 1);
    assert_int_equal(sx_socks5_out(&s, &p, &n), 2);
    assert_int_equal(p[0], 1);
    assert_int_equal(p[1], 0);
    sx_socks5_sent(&s, 100); /* capped */
    assert_int_equal(sx_socks5_out(&s, &p, &n), 0);
    assert_null(p);
}

static void test_bad_args(void **st)
{
    char name[300];
    uint8_t u[256];
    sx_socks5 s;
    size_t c;

    (void)st;
    memset(u, 'x', sizeof u);
    memset(name, 'a', sizeof name);
    name[255] = '\0';
    assert_int_equal(sx_socks5_init(&s, name, 1, NULL, 0, NULL, 0), 0);
    name[255] = 'a';
    name[256] = '\0';
    assert_int_equal(sx_socks5_init(&s, name, 1, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_ARG);
    assert_int_equal(sx_socks5_status(&s), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_socks5_out(&s, NULL, NULL), 0);
    assert_int_equal(sx_socks5_in(&s, u, 2, &c), SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(c, 0);
    assert_int_equal(sx_socks5_init(&s, "h", 1, u, 256, u, 1),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_socks5_init(&s, "h", 1, u, 1, u, 256),
                     SIMPLEX_ERR_TOO_LARGE);
    assert_int_equal(sx_socks5_init(&s, "", 1, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, NULL, 1, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, "h", 0, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, "2001:db8::g", 1, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, "[::1", 1, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 3, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, u, 3),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(NULL, "h", 1, NULL, 0, NULL, 0),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, NULL, 0), 0);
    assert_int_equal(sx_socks5_in(&s, NULL, 1, &c), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_in(&s, u, 1, NULL), SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_in(NULL, u, 1, &c), SIMPLEX_ERR_INVALID_ARG);
    /* an empty feed is no reply */
    sx_socks5_sent(&s, 3);
    assert_int_equal(sx_socks5_in(&s, NULL, 0, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(sx_socks5_connect(-1, "h", 1, NULL, 0, NULL, 0, 10,
                                       NULL, NULL),
                     SIMPLEX_ERR_INVALID_ARG);
}

/* ---- replies ---- */

static void test_every_reply_code(void **st)
{
    static const struct {
        uint8_t rep;
        int err;
        sx_socks5_detail d;
    } t[] = {
        {1, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_GENERAL_FAILURE},
        {2, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_NOT_ALLOWED},
        {3, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_NET_UNREACHABLE},
        {4, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_HOST_UNREACHABLE},
        {5, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_CONN_REFUSED},
        {6, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_TTL_EXPIRED},
        {7, SIMPLEX_ERR_PROXY, SX_SOCKS5_D_CMD_UNSUPPORTED},
        {8, SIMPLEX_ERR_PROXY, SX_SOCKS5_D_ATYP_UNSUPPORTED},
        {9, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_REPLY_OTHER},
        {0xF0, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_REPLY_OTHER},
        {0xF6, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_REPLY_OTHER},
        {0xFF, SIMPLEX_ERR_PROXY , SX_SOCKS5_D_REPLY_OTHER},
    };
    size_t i, c;

    (void)st;
    for (i = 0; i < sizeof t / sizeof t[0]; i++) {
        uint8_t r[10] = {5, 0, 0, 1, 127, 0, 0, 1, 0, 1};
        sx_socks5 s;

        r[1] = t[i].rep;
        to_reply(&s);
        assert_int_equal(feed(&s, r, sizeof r, &c), t[i].err);
        /* decided on VER REP; the rest is not taken */
        assert_int_equal(c, 2);
        assert_int_equal(sx_socks5_detail_of(&s), t[i].d);
        assert_int_equal(sx_socks5_reply_code(&s), t[i].rep);
        assert_string_not_equal(sx_socks5_detail_str(t[i].d), "unknown");
        /* the failure sticks */
        assert_int_equal(feed(&s, r, sizeof r, &c), t[i].err);
        assert_int_equal(c, 0);
        assert_int_equal(sx_socks5_in_want(&s), 0);
    }
}

/* A success reply with a bound address of each type, followed by bytes of
 * the tunnel, fed split at every position and byte by byte. */
static void test_reply_split_everywhere(void **st)
{
    uint8_t replies[5][4 + 1 + 255 + 2 + 4];
    size_t lens[5], k, i, c;

    (void)st;
    /* IPv4 */
    memcpy(replies[0], (const uint8_t[]){5, 0, 0, 1, 1, 2, 3, 4, 0x12, 0x34},
           10);
    lens[0] = 10;
    /* IPv6 */
    memset(replies[1], 0xAB, 22);
    memcpy(replies[1], (const uint8_t[]){5, 0, 0, 4}, 4);
    replies[1][20] = 0x12;
    replies[1][21] = 0x34;
    lens[1] = 22;
    /* domain of length 0, 1 and 255 */
    memcpy(replies[2], (const uint8_t[]){5, 0, 0, 3, 0, 0x12, 0x34}, 7);
    lens[2] = 7;
    memcpy(replies[3], (const uint8_t[]){5, 0, 0, 3, 1, 'x', 0x12, 0x34}, 8);
    lens[3] = 8;
    memcpy(replies[4], (const uint8_t[]){5, 0, 0, 3, 255}, 5);
    memset(replies[4] + 5, 'd', 255);
    replies[4][260] = 0x12;
    replies[4][261] = 0x34;
    lens[4] = 262;
    for (i = 0; i < 5; i++) {
        size_t total = lens[i] + 4;

        /* tunnel bytes after the reply, including a byte that would look
         * like a reply */
        memcpy(replies[i] + lens[i], "\x05tun", 4);
        for (k = 0; k <= total; k++) {
            sx_socks5 s;
            int r;

            to_reply(&s);
            r = feed(&s, replies[i], k, &c);
            if (k < lens[i]) {
                assert_int_equal(r, SX_SOCKS5_AGAIN);
                assert_int_equal(c, k);
                assert_true(sx_socks5_in_want(&s) > 0);
                assert_true(sx_socks5_in_want(&s) <= lens[i] - k);
                r = feed(&s, replies[i] + k, total - k, &c);
                assert_int_equal(r, SX_SOCKS5_DONE);
                assert_int_equal(c, lens[i] - k);
            } else {
                assert_int_equal(r, SX_SOCKS5_DONE);
                assert_int_equal(c, lens[i]);
            }
            assert_int_equal(s.bound_port, 0x1234);
        }
        /* one byte at a time */
        {
            sx_socks5 s;
            to_reply(&s);
            for (k = 0; k < total; k++) {
                int r = feed(&s, replies[i] + k, 1, &c);
                if (k + 1 < lens[i]) {
                    assert_int_equal(r, SX_SOCKS5_AGAIN);
                    assert_int_equal(c, 1);
                } else if (k + 1 == lens[i]) {
                    assert_int_equal(r, SX_SOCKS5_DONE);
                    assert_int_equal(c, 1);
                } else {
                    assert_int_equal(r, SX_SOCKS5_DONE);
                    assert_int_equal(c, 0);
                }
            }
        }
    }
}

/* The whole user/pass exchange, one byte at a time. */
static void test_auth_bytewise(void **st)
{
    static const uint8_t m[] = {5, 2}, a[] = {1, 0};
    sx_socks5 s;
    size_t c;

    (void)st;
    assert_int_equal(sx_socks5_init(&s, "localhost", 9, (const uint8_t *)"u",
                                    1, (const uint8_t *)"p", 1), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, m, 1, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(sx_socks5_out(&s, NULL, NULL), 0);
    assert_int_equal(feed(&s, m + 1, 1, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(sx_socks5_out(&s, NULL, NULL), 5);
    sx_socks5_sent(&s, 5);
    assert_int_equal(feed(&s, a, 1, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(sx_socks5_out(&s, NULL, NULL), 0);
    assert_int_equal(feed(&s, a + 1, 1, &c), SX_SOCKS5_AGAIN);
    assert_int_equal(sx_socks5_out(&s, NULL, NULL), 4 + 1 + 9 + 2);
}

static void test_malformed(void **st)
{
    sx_socks5 s;
    size_t c;
    const uint8_t *p;
    size_t n;

    (void)st;
    /* method reply with a wrong version */
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, NULL, 0), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, (const uint8_t *)"\x04\x00", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_VERSION);
    assert_int_equal(sx_socks5_out(&s, &p, &n), 0);

    /* no acceptable method */
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, NULL, 0), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\xff", 2, &c),
                     SIMPLEX_ERR_PROXY_AUTH);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_METHOD_REFUSED);

    /* a method that was not offered: user/pass when none was offered, and
     * "none" when credentials were (isolation must not be dropped) */
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, NULL, 0), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x02", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_METHOD);
    assert_int_equal(sx_socks5_init(&s, "h", 1, (const uint8_t *)"u", 1,
                                    NULL, 0), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x00", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_METHOD);
    assert_int_equal(sx_socks5_out(&s, &p, &n), 0);

    /* auth reply: wrong version, then rejected */
    assert_int_equal(sx_socks5_init(&s, "h", 1, (const uint8_t *)"u", 1,
                                    (const uint8_t *)"p", 1), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x02", 2, &c),
                     SX_SOCKS5_AGAIN);
    sx_socks5_sent(&s, 5);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x00", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_AUTH_VERSION);
    assert_int_equal(sx_socks5_init(&s, "h", 1, (const uint8_t *)"u", 1,
                                    (const uint8_t *)"p", 1), 0);
    sx_socks5_sent(&s, 3);
    /* two replies at once: stops after the first, whose answer is due */
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x02\x01\x01", 4, &c),
                     SX_SOCKS5_AGAIN);
    assert_int_equal(c, 2);
    assert_int_equal(sx_socks5_out(&s, NULL, NULL), 5);
    /* fed again before the request went out: an early reply */
    assert_int_equal(feed(&s, (const uint8_t *)"\x01\x01", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(c, 0);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_EARLY_REPLY);
    assert_int_equal(sx_socks5_init(&s, "h", 1, (const uint8_t *)"u", 1,
                                    (const uint8_t *)"p", 1), 0);
    sx_socks5_sent(&s, 3);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x02", 2, &c),
                     SX_SOCKS5_AGAIN);
    sx_socks5_sent(&s, 5);
    assert_int_equal(feed(&s, (const uint8_t *)"\x01\x01", 2, &c),
                     SIMPLEX_ERR_PROXY_AUTH);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_AUTH_FAILED);

    /* final reply: wrong version, unknown address types */
    to_reply(&s);
    assert_int_equal(feed(&s, (const uint8_t *)"\x04\x00", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_VERSION);
    {
        static const uint8_t bad_atyp[] = {0, 2, 5, 6, 0xff};
        size_t i;
        for (i = 0; i < sizeof bad_atyp; i++) {
            uint8_t r[10] = {5, 0, 0, 0, 0, 0, 0, 0, 0, 0};
            r[3] = bad_atyp[i];
            to_reply(&s);
            assert_int_equal(feed(&s, r, sizeof r, &c), SIMPLEX_ERR_PARSE);
            assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_BAD_ATYP);
            assert_int_equal(c, 5);
        }
    }

    /* a reply before the greeting was sent */
    assert_int_equal(sx_socks5_init(&s, "h", 1, NULL, 0, NULL, 0), 0);
    assert_int_equal(feed(&s, (const uint8_t *)"\x05\x00", 2, &c),
                     SIMPLEX_ERR_PARSE);
    assert_int_equal(sx_socks5_detail_of(&s), SX_SOCKS5_D_EARLY_REPLY);
    assert_int_equal(c, 0);
}

static void test_truncated(void **st)
{
    static const uint8_t r[] = {5, 0, 0, 3, 10, 'a', 'b', 'c'};
    sx_socks5 s;
    size_t c, k;

    (void)st;
    for (k = 0; k <= sizeof r; k++) {
        to_reply(&s);
        assert_int_equal(feed(&s, r, k, &c), SX_SOCKS5_AGAIN);
        assert_int_equal(c, k);
        assert_int_equal(sx_socks5_status(&s), SX_SOCKS5_AGAIN);
        assert_true(sx_socks5_in_want(&s) > 0);
    }
    assert_int_equal(sx_socks5_in_want(&s), 10 - 3 + 2);
}

/* ---- isolation credentials ---- */

static void test_isolation(void **st)
{
    static const uint8_t ent[] = {0, 1, 0xff};
    sx_socks5_isolation in;
    sx_socks5_creds cr;

    (void)st;
    memset(&in, 0, sizeof in);
    /* the default: isolate by auth, per session */
    assert_int_equal(SX_SOCKS5_AUTH_ISOLATE, 0);
    in.mode = SX_SOCKS5_SESS_USER;
    in.user_id = 1;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_true(cr.use_auth);
    assert_int_equal(cr.username_len, 44);
    assert_memory_equal(cr.username,
                        "a4ayc/80/OGda4BO/1o/V0etpOqiLx1JwB5S3beHW0s=", 44);
    assert_int_equal(cr.password_len, 0);

    in.mode = SX_SOCKS5_SESS_SESSION;
    in.session_ts = "2024-01-01 00:00:00 UTC";
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_memory_equal(cr.username,
                        "5c9OLq/w32deS9pGN6ZpYM0d83fXGPPTWQIroJRnHus=", 44);

    in.mode = SX_SOCKS5_SESS_ENTITY;
    in.session_ts = "2023-11-14 22:13:20.123456 UTC";
    in.server = "smp://abc@host.onion:5223";
    in.entity = ent;
    in.entity_len = sizeof ent;
    in.has_entity = 1;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_memory_equal(cr.username,
                        "hpAsOgNk2VSjXf83k5FHVT2muqmWvV3s2ZO5Ftya2Go=", 44);

    in.mode = SX_SOCKS5_SESS_SERVER;
    in.user_id = -5;
    in.session_ts = "2023-11-14 22:13:20.5 UTC";
    in.server = "smp://abc@h1,h2";
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_memory_equal(cr.username,
                        "1dTOqtzf9pFD8CReprkC4pLXB8LyIRddezBJFjlWMzM=", 44);
    /* ENTITY without an entity id is SERVER */
    in.mode = SX_SOCKS5_SESS_ENTITY;
    in.has_entity = 0;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_memory_equal(cr.username,
                        "1dTOqtzf9pFD8CReprkC4pLXB8LyIRddezBJFjlWMzM=", 44);

    /* missing inputs */
    in.server = NULL;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in),
                     SIMPLEX_ERR_INVALID_ARG);
    in.mode = SX_SOCKS5_SESS_SESSION;
    in.session_ts = NULL;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in),
                     SIMPLEX_ERR_INVALID_ARG);
    in.mode = (sx_socks5_sess_mode)7;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_isolation_creds(NULL, &in),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_isolation_creds(&cr, NULL),
                     SIMPLEX_ERR_INVALID_ARG);

    /* no auth; fixed credentials */
    in.auth = SX_SOCKS5_AUTH_NONE;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_false(cr.use_auth);
    in.auth = SX_SOCKS5_AUTH_FIXED;
    in.username = (const uint8_t *)"alice";
    in.username_len = 5;
    in.password = (const uint8_t *)"pw";
    in.password_len = 2;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in), 0);
    assert_true(cr.use_auth);
    assert_int_equal(cr.username_len, 5);
    assert_memory_equal(cr.username, "alice", 5);
    assert_int_equal(cr.password_len, 2);
    assert_memory_equal(cr.password, "pw", 2);
    in.password_len = 256;
    assert_int_equal(sx_socks5_isolation_creds(&cr, &in),
                     SIMPLEX_ERR_TOO_LARGE);
}

static void test_format_utctime(void **st)
{
    char b[64];

    (void)st;
    assert_int_equal(sx_socks5_format_utctime(b, sizeof b, 0, 0), 23);
    assert_string_equal(b, "1970-01-01 00:00:00 UTC");
    sx_socks5_format_utctime(b, sizeof b, 1700000000, 123456000000ULL);
    assert_string_equal(b, "2023-11-14 22:13:20.123456 UTC");
    sx_socks5_format_utctime(b, sizeof b, 1700000000, 500000000000ULL);
    assert_string_equal(b, "2023-11-14 22:13:20.5 UTC");
    sx_socks5_format_utctime(b, sizeof b, 1700000000, 1);
    assert_string_equal(b, "2023-11-14 22:13:20.000000000001 UTC");
    sx_socks5_format_utctime(b, sizeof b, 1709164800 + 86399, 0);
    assert_string_equal(b, "2024-02-29 23:59:59 UTC");
    sx_socks5_format_utctime(b, sizeof b, -1, 0);
    assert_string_equal(b, "1969-12-31 23:59:59 UTC");
    sx_socks5_format_utctime(b, sizeof b, 253402300799LL, 999999999999ULL);
    assert_string_equal(b, "9999-12-31 23:59:59.999999999999 UTC");
    assert_int_equal(sx_socks5_format_utctime(b, 23, 0, 0),
                     SIMPLEX_ERR_BUFFER_TOO_SMALL);
    assert_int_equal(sx_socks5_format_utctime(b, 24, 0, 0), 23);
    assert_int_equal(sx_socks5_format_utctime(b, sizeof b, 0,
                                              1000000000000ULL),
                     SIMPLEX_ERR_INVALID_ARG);
    assert_int_equal(sx_socks5_format_utctime(b, sizeof b, 253402300800LL,
                                              0),
                     SIMPLEX_ERR_INVALID_ARG);
}

/* ---- real sockets ---- */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int listen_on(int family, uint16_t port)
{
    int fd = socket(family, SOCK_STREAM, 0), one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET) {
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
            goto fail;
    } else {
        struct sockaddr_in6 a;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        memset(&a, 0, sizeof a);
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        a.sin6_addr = in6addr_loopback;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0)
            goto fail;
    }
    if (listen(fd, 16) != 0)
        goto fail;
    return fd;
fail:
    close(fd);
    return -1;
}

static uint16_t port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;

    if (getsockname(fd, (struct sockaddr *)&ss, &l) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* A loopback port with nothing listening (just released). */
static uint16_t free_port(void)
{
    int fd = listen_on(AF_INET, 0);
    uint16_t p;

    assert_true(fd >= 0);
    p = port_of(fd);
    close(fd);
    return p;
}

/* Connects to 127.0.0.1:port within the timeout; -1 when refused. */
static int tcp_connect(uint16_t port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    assert_true(fd >= 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    {
        struct timeval tv = {IO_TIMEOUT_MS / 1000, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    return fd;
}

/* The echo server: a child that serves connections one after another on a
 * 127.0.0.1 listener and, when it can be had, a ::1 listener on the same
 * port (so "localhost" works whichever address the proxy picks). */
static pid_t g_echo_pid = -1;
static uint16_t g_echo_port;

static void echo_conn(int c)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        if (send(c, buf, (size_t)n, MSG_NOSIGNAL) != n)
            break;
    }
    close(c);
}

static void start_echo(void)
{
    int l4 = -1, l6 = -1, i;

    for (i = 0; i < 20 && l6 < 0; i++) {
        l4 = listen_on(AF_INET, 0);
        assert_true(l4 >= 0);
        g_echo_port = port_of(l4);
        l6 = listen_on(AF_INET6, g_echo_port);
        if (l6 < 0 && errno != EADDRINUSE)
            break; /* no IPv6 here: IPv4 alone */
        if (l6 < 0 && i < 19)
            close(l4);
    }
    g_echo_pid = fork();
    assert_true(g_echo_pid >= 0);
    if (g_echo_pid == 0) {
        alarm(60); /* never outlive a stuck test */
        for (;;) {
            struct pollfd p[2] = {{l4, POLLIN, 0}, {l6, POLLIN, 0}};
            int k;
            if (poll(p, l6 >= 0 ? 2 : 1, -1) < 0 && errno != EINTR)
                _exit(1);
            for (k = 0; k < 2; k++)
                if (p[k].fd >= 0 && (p[k].revents & POLLIN)) {
                    int c = accept(p[k].fd, NULL, NULL);
                    if (c >= 0)
                        echo_conn(c);
                }
        }
    }
    close(l4);
    if (l6 >= 0)
        close(l6);
}

static void stop_child(pid_t *pid)
{
    if (*pid > 0) {
        int stt;
        kill(*pid, SIGTERM);
        waitpid(*pid, &stt, 0);
    }
    *pid = -1;
}

static int find_in_path(const char *name, char *out, size_t cap)
{
    const char *path = getenv("PATH");
    char buf[4096];
    char *save = NULL, *dir;

    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    snprintf(buf, sizeof buf, "%s:/usr/sbin:/usr/bin", path);
    for (dir = strtok_r(buf, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        snprintf(out, cap, "%s/%s", dir, name);
        if (access(out, X_OK) == 0)
            return 1;
    }
    return 0;
}

/* Starts microsocks on a free 127.0.0.1 port; returns its port. Fails the
 * test (does not skip) when the binary is missing. */
static uint16_t start_microsocks(pid_t *pid, const char *user,
                                 const char *pass)
{
    char bin[4200], portstr[16];
    int attempt;

    const char *env_bin = getenv("MICROSOCKS"); /* overrides the look-up */

    if (env_bin && *env_bin) {
        snprintf(bin, sizeof bin, "%s", env_bin);
        if (access(bin, X_OK) != 0)
            fail_msg("microsocks not found at MICROSOCKS=%s: the SOCKS5 "
                     "integration tests need it (apt-get install "
                     "microsocks)", bin);
    } else if (!find_in_path("microsocks", bin, sizeof bin)) {
        fail_msg("microsocks is not installed: the SOCKS5 integration "
                 "tests need it (apt-get install microsocks)");
    }
    for (attempt = 0; attempt < 5; attempt++) {
        uint16_t port = free_port();
        int64_t deadline;

        snprintf(portstr, sizeof portstr, "%u", (unsigned)port);
        *pid = fork();
        assert_true(*pid >= 0);
        if (*pid == 0) {
            int dn = open("/dev/null", O_RDWR);
            if (dn >= 0) {
                dup2(dn, 1);
                dup2(dn, 2);
            }
            if (user)
                execl(bin, "microsocks", "-i", "127.0.0.1", "-p", portstr,
                      "-u", user, "-P", pass, (char *)NULL);
            else
                execl(bin, "microsocks", "-i", "127.0.0.1", "-p", portstr,
                      (char *)NULL);
            _exit(127);
        }
        deadline = mono_ms() + IO_TIMEOUT_MS;
        while (mono_ms() < deadline) {
            int stt, fd;
            if (waitpid(*pid, &stt, WNOHANG) == *pid) {
                *pid = -1;
                break; /* exited (port taken?): try another port */
            }
            fd = tcp_connect(port);
            if (fd >= 0) {
                close(fd);
                return port;
            }
            usleep(10000);
        }
        stop_child(pid);
    }
    fail_msg("microsocks (%s) did not start", bin);
    return 0;
}

typedef struct env {
    pid_t proxy;
    pid_t proxy_auth;
    uint16_t port;
    uint16_t port_auth;
} env;

static int setup_env(void **st)
{
    env *e = calloc(1, sizeof *e);

    if (!e)
        return -1;
    e->proxy = e->proxy_auth = -1;
    *st = e;
    return 0;
}

static int teardown_env(void **st)
{
    env *e = *st;

    stop_child(&e->proxy);
    stop_child(&e->proxy_auth);
    stop_child(&g_echo_pid);
    free(e);
    return 0;
}

static void start_all(env *e)
{
    start_echo();
    e->port = start_microsocks(&e->proxy, NULL, NULL);
    e->port_auth = start_microsocks(&e->proxy_auth, "user", "pass");
}

static void exchange(int fd, const char *msg)
{
    char back[256];
    size_t n = strlen(msg), got = 0;

    assert_int_equal(send(fd, msg, n, MSG_NOSIGNAL), (ssize_t)n);
    while (got < n) {
        ssize_t r = recv(fd, back + got, n - got, 0);
        assert_true(r > 0);
        got += (size_t)r;
    }
    assert_memory_equal(back, msg, n);
}

static int via(uint16_t proxy, const char *host, uint16_t port,
               const char *user, const char *pass, sx_socks5_detail *d,
               uint8_t *rep, int *fd_out)
{
    int fd = tcp_connect(proxy), rc;

    assert_true(fd >= 0);
    rc = sx_socks5_connect(fd, host, port, (const uint8_t *)user,
                           user ? strlen(user) : 0, (const uint8_t *)pass,
                           pass ? strlen(pass) : 0, IO_TIMEOUT_MS, d, rep);
    if (fd_out && rc == 0)
        *fd_out = fd;
    else
        close(fd);
    return rc;
}

static void test_proxy_noauth(void **st)
{
    env *e = *st;
    sx_socks5_detail d;
    uint8_t rep;
    int fd = -1;

    start_all(e);
    /* by IPv4 */
    assert_int_equal(via(e->port, "127.0.0.1", g_echo_port, NULL, NULL, &d,
                         &rep, &fd), 0);
    assert_int_equal(d, SX_SOCKS5_D_NONE);
    exchange(fd, "hello through socks5");
    exchange(fd, "and once more");
    close(fd);
    /* by name, resolved by the proxy */
    fd = -1;
    assert_int_equal(via(e->port, "localhost", g_echo_port, NULL, NULL, &d,
                         &rep, &fd), 0);
    exchange(fd, "remote resolution");
    close(fd);
    /* a closed port: the proxy's "connection refused" */
    assert_int_equal(via(e->port, "127.0.0.1", free_port(), NULL, NULL, &d,
                         &rep, NULL), SIMPLEX_ERR_PROXY);
    assert_int_equal(d, SX_SOCKS5_D_CONN_REFUSED);
    assert_int_equal(rep, 5);
    /* credentials offered to a proxy without authentication: refused */
    assert_int_equal(via(e->port, "127.0.0.1", g_echo_port, "user", "pass",
                         &d, &rep, NULL), SIMPLEX_ERR_PROXY_AUTH);
    assert_int_equal(d, SX_SOCKS5_D_METHOD_REFUSED);
}

static void test_proxy_auth(void **st)
{
    env *e = *st;
    sx_socks5_detail d;
    uint8_t rep;
    int fd = -1;

    start_all(e);
    assert_int_equal(via(e->port_auth, "127.0.0.1", g_echo_port, "user",
                         "pass", &d, &rep, &fd), 0);
    exchange(fd, "authenticated");
    close(fd);
    fd = -1;
    assert_int_equal(via(e->port_auth, "localhost", g_echo_port, "user",
                         "pass", &d, &rep, &fd), 0);
    exchange(fd, "authenticated, by name");
    close(fd);
    /* wrong password, wrong user */
    assert_int_equal(via(e->port_auth, "127.0.0.1", g_echo_port, "user",
                         "wrong", &d, &rep, NULL), SIMPLEX_ERR_PROXY_AUTH);
    assert_int_equal(d, SX_SOCKS5_D_AUTH_FAILED);
    assert_int_equal(via(e->port_auth, "127.0.0.1", g_echo_port, "nobody",
                         "pass", &d, &rep, NULL), SIMPLEX_ERR_PROXY_AUTH);
    assert_int_equal(d, SX_SOCKS5_D_AUTH_FAILED);
    /* no credentials: no acceptable method */
    assert_int_equal(via(e->port_auth, "127.0.0.1", g_echo_port, NULL, NULL,
                         &d, &rep, NULL), SIMPLEX_ERR_PROXY_AUTH);
    assert_int_equal(d, SX_SOCKS5_D_METHOD_REFUSED);
    /* refused target behind authentication */
    assert_int_equal(via(e->port_auth, "localhost", free_port(), "user",
                         "pass", &d, &rep, NULL), SIMPLEX_ERR_PROXY);
    assert_int_equal(d, SX_SOCKS5_D_CONN_REFUSED);
}

/* A "proxy" that accepts but never answers: the driver times out. One that
 * answers half a byte pair and closes: EOF. */
static void test_driver_timeout_and_eof(void **st)
{
    int l = listen_on(AF_INET, 0), fd, srv;
    sx_socks5_detail d;
    int64_t t0;
    uint8_t g[3];

    (void)st;
    assert_true(l >= 0);
    fd = tcp_connect(port_of(l));
    assert_true(fd >= 0);
    t0 = mono_ms();
    assert_int_equal(sx_socks5_connect(fd, "h", 1, NULL, 0, NULL, 0, 200, &d,
                                       NULL), SIMPLEX_ERR_TIMEOUT);
    assert_int_equal(d, SX_SOCKS5_D_TIMEOUT);
    assert_true(mono_ms() - t0 >= 150);
    assert_true(mono_ms() - t0 < 3000);
    close(fd);
    srv = accept(l, NULL, NULL);
    if (srv >= 0)
        close(srv);

    fd = tcp_connect(port_of(l));
    assert_true(fd >= 0);
    srv = accept(l, NULL, NULL);
    assert_true(srv >= 0);
    assert_int_equal(send(srv, "\x05", 1, MSG_NOSIGNAL), 1);
    shutdown(srv, SHUT_WR);
    assert_int_equal(sx_socks5_connect(fd, "h", 1, NULL, 0, NULL, 0,
                                       IO_TIMEOUT_MS, &d, NULL),
                     SIMPLEX_ERR_TRUNCATED);
    assert_int_equal(d, SX_SOCKS5_D_EOF);
    assert_int_equal(recv(srv, g, 3, MSG_WAITALL), 3);
    assert_memory_equal(g, GREET_NOAUTH, 3);
    close(fd);
    close(srv);

    /* the driver never reads past the final reply: tunnel bytes that
     * arrive with it stay in the socket */
    fd = tcp_connect(port_of(l));
    assert_true(fd >= 0);
    srv = accept(l, NULL, NULL);
    assert_true(srv >= 0);
    {
        static const uint8_t all[] = {5, 0, 5, 0, 0, 3, 2, 'a', 'b', 0, 1,
                                      'T', 'U', 'N'};
        uint8_t req[32], tun[3];
        assert_int_equal(send(srv, all, sizeof all, MSG_NOSIGNAL),
                         (ssize_t)sizeof all);
        assert_int_equal(sx_socks5_connect(fd, "x.onion", 443, NULL, 0, NULL,
                                           0, IO_TIMEOUT_MS, &d, NULL), 0);
        assert_int_equal(recv(fd, tun, 3, MSG_WAITALL), 3);
        assert_memory_equal(tun, "TUN", 3);
        assert_int_equal(recv(srv, req, 3 + 7 + 7, MSG_WAITALL), 17);
        assert_memory_equal(req, "\x05\x01\x00\x05\x01\x00\x03\x07x.onion"
                                 "\x01\xbb", 17);
    }
    close(fd);
    close(srv);
    close(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_noauth_domain),
        cmocka_unit_test(test_request_userpass_ipv4),
        cmocka_unit_test(test_request_ipv6),
        cmocka_unit_test(test_empty_credentials),
        cmocka_unit_test(test_partial_send),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_every_reply_code),
        cmocka_unit_test(test_reply_split_everywhere),
        cmocka_unit_test(test_auth_bytewise),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_isolation),
        cmocka_unit_test(test_format_utctime),
        cmocka_unit_test(test_driver_timeout_and_eof),
        cmocka_unit_test_setup_teardown(test_proxy_noauth, setup_env,
                                        teardown_env),
        cmocka_unit_test_setup_teardown(test_proxy_auth, setup_env,
                                        teardown_env),
    };

    signal(SIGPIPE, SIG_IGN);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
