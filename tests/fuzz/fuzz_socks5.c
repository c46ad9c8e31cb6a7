/*
 * Fuzz harness for the SOCKS5 client handshake. Byte 0 picks the set-up
 * (bit 0: username/password; bits 1-2: domain, IPv4 or IPv6 target), byte 1
 * seeds the chunk sizes, the rest is what the proxy sends. The replies are
 * fed three ways (chunks of pseudo-random size, all at once, one byte at a
 * time), always after our pending output was "sent": every way must end in
 * the same status and detail having consumed the same bytes, never more
 * than were given. A few input bytes also go through the isolation and
 * time formatting helpers.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/socks5.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct outcome {
    int status;
    sx_socks5_detail detail;
    size_t consumed;
    uint8_t rep;
} outcome;

static void ack(sx_socks5 *s)
{
    const uint8_t *p;
    size_t n;

    sx_socks5_out(s, &p, &n);
    if (n && !p)
        abort();
    sx_socks5_sent(s, n);
}

/* Feeds one chunk, acknowledging output whenever the state machine stops
 * for it. Returns the bytes consumed. */
static size_t feed_chunk(sx_socks5 *s, const uint8_t *p, size_t n)
{
    size_t total = 0;

    for (;;) {
        size_t c = 12345;
        int st;

        ack(s);
        st = sx_socks5_in(s, p + total, n - total, &c);
        if (c > n - total)
            abort();
        if (st != sx_socks5_status(s))
            abort();
        total += c;
        if (st != SX_SOCKS5_AGAIN || total == n || c == 0) {
            if (st == SX_SOCKS5_AGAIN && total < n)
                abort(); /* AGAIN must take everything it was given */
            return total;
        }
    }
}

static int setup(sx_socks5 *s, uint8_t mode)
{
    static const char *const hosts[] = {"abcdefghijklmnop.onion", "10.0.0.1",
                                        "[2001:db8::7]", "localhost"};
    const uint8_t *u = (mode & 1) ? (const uint8_t *)"user" : NULL;

    return sx_socks5_init(s, hosts[(mode >> 1) & 3], 5223, u, u ? 4 : 0,
                          u ? (const uint8_t *)"pw" : NULL, u ? 2 : 0);
}

static outcome run(uint8_t mode, const uint8_t *p, size_t n, int how,
                   uint32_t seed)
{
    sx_socks5 s;
    outcome o;
    size_t off = 0;

    if (setup(&s, mode) != 0)
        abort();
    while (off < n) {
        size_t chunk = n - off, got;

        if (how == 1) {
            chunk = 1;
        } else if (how == 2) {
            seed = seed * 1103515245u + 12345u;
            chunk = 1 + (seed >> 16) % 17;
            if (chunk > n - off)
                chunk = n - off;
        }
        got = feed_chunk(&s, p + off, chunk);
        off += got;
        if (got < chunk)
            break; /* finished before the chunk's end */
        if (sx_socks5_status(&s) != SX_SOCKS5_AGAIN)
            break;
        if (sx_socks5_in_want(&s) == 0)
            abort();
    }
    o.status = sx_socks5_status(&s);
    o.detail = sx_socks5_detail_of(&s);
    o.consumed = off;
    o.rep = sx_socks5_reply_code(&s);
    if (o.status == SX_SOCKS5_AGAIN && off != n)
        abort();
    if (o.status != SX_SOCKS5_AGAIN && sx_socks5_in_want(&s) != 0)
        abort();
    if (o.status < 0 && o.detail == SX_SOCKS5_D_NONE)
        abort();
    if (sx_socks5_detail_str(o.detail) == NULL)
        abort();
    {
        /* finished states take nothing more */
        size_t c = 1;
        if (o.status != SX_SOCKS5_AGAIN) {
            ack(&s);
            if (sx_socks5_in(&s, p, n, &c) != o.status || c != 0)
                abort();
        }
    }
    sx_socks5_clear(&s);
    return o;
}

static void extras(const uint8_t *p, size_t n)
{
    sx_socks5_isolation in;
    sx_socks5_creds cr;
    char ts[48], srv[32];
    int64_t secs;
    uint64_t u = 0, ps = 0;
    size_t i;

    for (i = 0; i < 8 && i < n; i++)
        u = (u << 8) | p[i];
    for (; i < 16 && i < n; i++)
        ps = (ps << 8) | p[i];
    /* years 0000..9999 */
    secs = (int64_t)(u % (uint64_t)(253402300799LL + 62167219200LL + 1)) -
           62167219200LL;
    if (sx_socks5_format_utctime(ts, sizeof ts, secs, ps % 1000000000000ULL)
        < 0)
        abort();
    memset(&in, 0, sizeof in);
    memcpy(srv, "smp://k@h", 10);
    in.mode = (sx_socks5_sess_mode)(n & 3);
    in.user_id = secs;
    in.session_ts = ts;
    in.server = srv;
    in.entity = p;
    in.entity_len = n;
    in.has_entity = 1;
    if (sx_socks5_isolation_creds(&cr, &in) != 0 || cr.username_len != 44 ||
        !cr.use_auth)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome a, b, c;

    if (size < 2)
        return 0;
    a = run(data[0], data + 2, size - 2, 0, data[1]);
    b = run(data[0], data + 2, size - 2, 1, data[1]);
    c = run(data[0], data + 2, size - 2, 2, data[1]);
    if (a.status != b.status || a.status != c.status ||
        a.detail != b.detail || a.detail != c.detail ||
        a.consumed != b.consumed || a.consumed != c.consumed ||
        a.rep != b.rep || a.rep != c.rep)
        abort();
    extras(data, size);
    return 0;
}
