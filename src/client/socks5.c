/*
 * SOCKS5 client handshake (RFC 1928, RFC 1929), its blocking driver and the
 * Tor circuit isolation credentials. See socks5.h.
 */
#include "client/socks5.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <sodium.h>

#include "common/sx.h"

#define VER5 0x05
#define AUTH_VER 0x01
#define M_NONE 0x00
#define M_USERPASS 0x02
#define M_REFUSED 0xFF
#define CMD_CONNECT 0x01
#define ATYP_IPV4 0x01
#define ATYP_DOMAIN 0x03
#define ATYP_IPV6 0x04

enum {
    ST_METHOD = 1,   /* VER METHOD */
    ST_AUTH,         /* VER STATUS */
    ST_REPLY_VER,    /* VER REP */
    ST_REPLY_HEAD,   /* VER REP RSV ATYP [first address byte] */
    ST_REPLY_ADDR,   /* the whole reply */
    ST_DONE,
    ST_FAILED
};

static int fail(sx_socks5 *s, int err, sx_socks5_detail d)
{
    s->state = ST_FAILED;
    s->status = err;
    s->detail = d;
    sx_memzero(s->user, sizeof s->user);
    sx_memzero(s->pass, sizeof s->pass);
    sx_memzero(s->out, sizeof s->out);
    s->out_len = s->out_off = 0;
    return err;
}

static void queue(sx_socks5 *s, const uint8_t *p, size_t n)
{
    memcpy(s->out, p, n);
    s->out_len = n;
    s->out_off = 0;
}

static void expect(sx_socks5 *s, int state, size_t need)
{
    s->state = state;
    s->in_len = 0;
    s->in_need = need;
}

void sx_socks5_clear(sx_socks5 *s)
{
    if (s)
        sx_memzero(s, sizeof *s);
}

int sx_socks5_init(sx_socks5 *s, const char *host, uint16_t port,
                   const uint8_t *user, size_t user_len, const uint8_t *pass,
                   size_t pass_len)
{
    uint8_t a[16];
    char v6[64];
    size_t hl, n = 0;

    if (!s)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(s, 0, sizeof *s);
    s->state = ST_FAILED;
    s->status = SIMPLEX_ERR_INVALID_ARG;
    s->detail = SX_SOCKS5_D_BAD_ARG;
    if (!host || port == 0 || (user_len && !user) || (pass_len && !pass) ||
        (!user && pass_len))
        return SIMPLEX_ERR_INVALID_ARG;
    hl = strlen(host);
    if (hl == 0)
        return SIMPLEX_ERR_INVALID_ARG;
    if (user_len > SX_SOCKS5_NAME_MAX || pass_len > SX_SOCKS5_NAME_MAX) {
        s->status = SIMPLEX_ERR_TOO_LARGE;
        return SIMPLEX_ERR_TOO_LARGE;
    }

    s->req[n++] = VER5;
    s->req[n++] = CMD_CONNECT;
    s->req[n++] = 0x00;
    if (inet_pton(AF_INET, host, a) == 1) {
        s->req[n++] = ATYP_IPV4;
        memcpy(s->req + n, a, 4);
        n += 4;
    } else if (memchr(host, ':', hl)) {
        /* an IPv6 literal, brackets optional; a ':' is never in a name */
        const char *h = host;
        size_t l = hl;
        if (l >= 2 && h[0] == '[' && h[l - 1] == ']') {
            h++;
            l -= 2;
        }
        if (l >= sizeof v6)
            return SIMPLEX_ERR_INVALID_ARG;
        memcpy(v6, h, l);
        v6[l] = '\0';
        if (inet_pton(AF_INET6, v6, a) != 1)
            return SIMPLEX_ERR_INVALID_ARG;
        s->req[n++] = ATYP_IPV6;
        memcpy(s->req + n, a, 16);
        n += 16;
    } else {
        if (hl > SX_SOCKS5_NAME_MAX) {
            s->status = SIMPLEX_ERR_TOO_LARGE;
            return SIMPLEX_ERR_TOO_LARGE;
        }
        s->req[n++] = ATYP_DOMAIN;
        s->req[n++] = (uint8_t)hl;
        memcpy(s->req + n, host, hl);
        n += hl;
    }
    s->req[n++] = (uint8_t)(port >> 8);
    s->req[n++] = (uint8_t)(port & 0xff);
    s->req_len = n;

    if (user) {
        s->with_auth = 1;
        if (user_len)
            memcpy(s->user, user, user_len);
        if (pass_len)
            memcpy(s->pass, pass, pass_len);
        s->user_len = (uint8_t)user_len;
        s->pass_len = (uint8_t)pass_len;
    }
    {
        const uint8_t greet[3] = {VER5, 1, user ? M_USERPASS : M_NONE};
        queue(s, greet, sizeof greet);
    }
    s->status = SX_SOCKS5_AGAIN;
    s->detail = SX_SOCKS5_D_NONE;
    expect(s, ST_METHOD, 2);
    return 0;
}

size_t sx_socks5_out(const sx_socks5 *s, const uint8_t **ptr, size_t *len)
{
    size_t n = 0;

    if (s && s->out_off < s->out_len)
        n = s->out_len - s->out_off;
    if (ptr)
        *ptr = n ? s->out + s->out_off : NULL;
    if (len)
        *len = n;
    return n;
}

void sx_socks5_sent(sx_socks5 *s, size_t n)
{
    if (!s)
        return;
    if (n > s->out_len - s->out_off)
        n = s->out_len - s->out_off;
    s->out_off += n;
    if (s->out_off == s->out_len) {
        /* the auth request held the credentials */
        sx_memzero(s->out, sizeof s->out);
        s->out_len = s->out_off = 0;
    }
}

static void queue_auth(sx_socks5 *s)
{
    size_t n = 0;

    s->out[n++] = AUTH_VER;
    s->out[n++] = s->user_len;
    memcpy(s->out + n, s->user, s->user_len);
    n += s->user_len;
    s->out[n++] = s->pass_len;
    memcpy(s->out + n, s->pass, s->pass_len);
    n += s->pass_len;
    s->out_len = n;
    s->out_off = 0;
    sx_memzero(s->user, sizeof s->user);
    sx_memzero(s->pass, sizeof s->pass);
}

static int reply_error(sx_socks5 *s, uint8_t rep)
{
    switch (rep) {
    case 0x01: case 0x02: case 0x03: case 0x04: case 0x05: case 0x06:
    case 0x07: case 0x08:
        return fail(s, SIMPLEX_ERR_PROXY, (sx_socks5_detail)rep);
    default:
        return fail(s, SIMPLEX_ERR_PROXY, SX_SOCKS5_D_REPLY_OTHER);
    }
}

/* Acts on a complete message in s->in; returns the new status. */
static int step(sx_socks5 *s)
{
    switch (s->state) {
    case ST_METHOD:
        if (s->in[0] != VER5)
            return fail(s, SIMPLEX_ERR_PARSE, SX_SOCKS5_D_BAD_VERSION);
        if (s->in[1] == M_REFUSED)
            return fail(s, SIMPLEX_ERR_PROXY_AUTH,
                        SX_SOCKS5_D_METHOD_REFUSED);
        if (s->in[1] != (s->with_auth ? M_USERPASS : M_NONE))
            return fail(s, SIMPLEX_ERR_PARSE, SX_SOCKS5_D_BAD_METHOD);
        if (s->with_auth) {
            queue_auth(s);
            expect(s, ST_AUTH, 2);
        } else {
            queue(s, s->req, s->req_len);
            expect(s, ST_REPLY_VER, 2);
        }
        return SX_SOCKS5_AGAIN;
    case ST_AUTH:
        if (s->in[0] != AUTH_VER)
            return fail(s, SIMPLEX_ERR_PARSE, SX_SOCKS5_D_BAD_AUTH_VERSION);
        if (s->in[1] != 0)
            return fail(s, SIMPLEX_ERR_PROXY_AUTH, SX_SOCKS5_D_AUTH_FAILED);
        queue(s, s->req, s->req_len);
        expect(s, ST_REPLY_VER, 2);
        return SX_SOCKS5_AGAIN;
    case ST_REPLY_VER:
        if (s->in[0] != VER5)
            return fail(s, SIMPLEX_ERR_PARSE, SX_SOCKS5_D_BAD_VERSION);
        s->reply_code = s->in[1];
        if (s->in[1] != 0)
            return reply_error(s, s->in[1]);
        s->state = ST_REPLY_HEAD;
        s->in_need = 5; /* RSV is not checked: some proxies fill it */
        return SX_SOCKS5_AGAIN;
    case ST_REPLY_HEAD:
        s->bound_atyp = s->in[3];
        switch (s->in[3]) {
        case ATYP_IPV4: s->in_need = 4 + 4 + 2; break;
        case ATYP_IPV6: s->in_need = 4 + 16 + 2; break;
        case ATYP_DOMAIN: s->in_need = 4 + 1 + (size_t)s->in[4] + 2; break;
        default: return fail(s, SIMPLEX_ERR_PARSE, SX_SOCKS5_D_BAD_ATYP);
        }
        s->state = ST_REPLY_ADDR;
        return SX_SOCKS5_AGAIN;
    case ST_REPLY_ADDR:
        s->bound_port = (uint16_t)((s->in[s->in_need - 2] << 8) |
                                   s->in[s->in_need - 1]);
        s->state = ST_DONE;
        s->status = SX_SOCKS5_DONE;
        s->in_need = s->in_len = 0;
        return SX_SOCKS5_DONE;
    default:
        return fail(s, SIMPLEX_ERR_INTERNAL, SX_SOCKS5_D_NONE);
    }
}

int sx_socks5_in(sx_socks5 *s, const uint8_t *data, size_t len,
                 size_t *consumed)
{
    size_t used = 0;

    if (consumed)
        *consumed = 0;
    if (!s || !consumed || (!data && len))
        return SIMPLEX_ERR_INVALID_ARG;
    while (s->status == SX_SOCKS5_AGAIN && used < len) {
        size_t take;

        if (s->out_off < s->out_len)
            return fail(s, SIMPLEX_ERR_PARSE, SX_SOCKS5_D_EARLY_REPLY);
        if (s->in_need <= s->in_len || s->in_need > sizeof s->in)
            return fail(s, SIMPLEX_ERR_INTERNAL, SX_SOCKS5_D_NONE);
        take = s->in_need - s->in_len;
        if (take > len - used)
            take = len - used;
        memcpy(s->in + s->in_len, data + used, take);
        s->in_len += take;
        used += take;
        *consumed = used;
        if (s->in_len == s->in_need) {
            s->status = step(s);
            if (s->out_off < s->out_len)
                break; /* our next request goes first */
        }
    }
    return s->status;
}

size_t sx_socks5_in_want(const sx_socks5 *s)
{
    if (!s || s->status != SX_SOCKS5_AGAIN || s->in_need <= s->in_len)
        return 0;
    return s->in_need - s->in_len;
}

int sx_socks5_status(const sx_socks5 *s)
{
    return s ? s->status : SIMPLEX_ERR_INVALID_ARG;
}

sx_socks5_detail sx_socks5_detail_of(const sx_socks5 *s)
{
    return s ? s->detail : SX_SOCKS5_D_BAD_ARG;
}

uint8_t sx_socks5_reply_code(const sx_socks5 *s)
{
    return s ? s->reply_code : 0;
}

const char *sx_socks5_detail_str(sx_socks5_detail d)
{
    switch (d) {
    case SX_SOCKS5_D_NONE: return "no error";
    case SX_SOCKS5_D_GENERAL_FAILURE: return "general SOCKS server failure";
    case SX_SOCKS5_D_NOT_ALLOWED: return "connection not allowed by ruleset";
    case SX_SOCKS5_D_NET_UNREACHABLE: return "network unreachable";
    case SX_SOCKS5_D_HOST_UNREACHABLE: return "host unreachable";
    case SX_SOCKS5_D_CONN_REFUSED: return "connection refused";
    case SX_SOCKS5_D_TTL_EXPIRED: return "TTL expired";
    case SX_SOCKS5_D_CMD_UNSUPPORTED: return "command not supported";
    case SX_SOCKS5_D_ATYP_UNSUPPORTED: return "address type not supported";
    case SX_SOCKS5_D_REPLY_OTHER: return "unassigned SOCKS reply code";
    case SX_SOCKS5_D_METHOD_REFUSED:
        return "no acceptable authentication method";
    case SX_SOCKS5_D_AUTH_FAILED: return "username/password rejected";
    case SX_SOCKS5_D_BAD_VERSION: return "reply is not SOCKS version 5";
    case SX_SOCKS5_D_BAD_METHOD:
        return "proxy chose a method that was not offered";
    case SX_SOCKS5_D_BAD_AUTH_VERSION:
        return "malformed username/password reply";
    case SX_SOCKS5_D_BAD_ATYP: return "unknown address type in reply";
    case SX_SOCKS5_D_EARLY_REPLY: return "reply before request was sent";
    case SX_SOCKS5_D_EOF: return "proxy closed the connection";
    case SX_SOCKS5_D_TIMEOUT: return "SOCKS handshake timed out";
    case SX_SOCKS5_D_IO: return "socket error";
    case SX_SOCKS5_D_BAD_ARG: return "invalid host, port or credentials";
    }
    return "unknown";
}

/* ---- blocking driver ---- */

static int64_t now_ms(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1 when ready, 0 on timeout, -1 on error (errno set). */
static int wait_fd(int fd, short ev, int64_t deadline)
{
    for (;;) {
        struct pollfd p;
        int64_t left = deadline - now_ms();
        int r;

        if (left <= 0)
            return 0;
        p.fd = fd;
        p.events = ev;
        p.revents = 0;
        r = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (r > 0)
            return 1;
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

static int drive(sx_socks5 *s, int fd, int64_t deadline)
{
    uint8_t buf[sizeof s->in];

    for (;;) {
        const uint8_t *p;
        size_t n, want, used;
        ssize_t r;
        int w, st;

        if (sx_socks5_out(s, &p, &n)) {
            w = wait_fd(fd, POLLOUT, deadline);
            if (w <= 0)
                return fail(s, w ? SIMPLEX_ERR_IO : SIMPLEX_ERR_TIMEOUT,
                            w ? SX_SOCKS5_D_IO : SX_SOCKS5_D_TIMEOUT);
            r = send(fd, p, n, MSG_NOSIGNAL);
            if (r < 0) {
                if (errno == EINTR || errno == EAGAIN ||
                    errno == EWOULDBLOCK)
                    continue;
                return fail(s, SIMPLEX_ERR_IO, SX_SOCKS5_D_IO);
            }
            sx_socks5_sent(s, (size_t)r);
            continue;
        }
        if (s->status != SX_SOCKS5_AGAIN)
            return s->status;
        want = sx_socks5_in_want(s);
        if (want == 0 || want > sizeof buf)
            return fail(s, SIMPLEX_ERR_INTERNAL, SX_SOCKS5_D_NONE);
        w = wait_fd(fd, POLLIN, deadline);
        if (w <= 0)
            return fail(s, w ? SIMPLEX_ERR_IO : SIMPLEX_ERR_TIMEOUT,
                        w ? SX_SOCKS5_D_IO : SX_SOCKS5_D_TIMEOUT);
        r = recv(fd, buf, want, 0);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
                continue;
            return fail(s, SIMPLEX_ERR_IO, SX_SOCKS5_D_IO);
        }
        if (r == 0)
            return fail(s, SIMPLEX_ERR_TRUNCATED, SX_SOCKS5_D_EOF);
        st = sx_socks5_in(s, buf, (size_t)r, &used);
        if (st < 0)
            return st;
        if (st == SX_SOCKS5_DONE)
            return 0;
    }
}

int sx_socks5_connect(int fd, const char *host, uint16_t port,
                      const uint8_t *user, size_t user_len,
                      const uint8_t *pass, size_t pass_len, int timeout_ms,
                      sx_socks5_detail *detail, uint8_t *reply_code)
{
    sx_socks5 s;
    int rc;

    if (detail)
        *detail = SX_SOCKS5_D_BAD_ARG;
    if (reply_code)
        *reply_code = 0;
    if (fd < 0 || timeout_ms <= 0)
        return SIMPLEX_ERR_INVALID_ARG;
    rc = sx_socks5_init(&s, host, port, user, user_len, pass, pass_len);
    if (rc == 0)
        rc = drive(&s, fd, now_ms() + timeout_ms);
    if (detail)
        *detail = s.detail;
    if (reply_code)
        *reply_code = s.reply_code;
    sx_socks5_clear(&s);
    return rc;
}

/* ---- isolation ---- */

static void b64_std(char *out, const uint8_t *p, size_t n)
{
    static const char tab[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;

    for (i = 0; i + 2 < n; i += 3) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8) |
                     p[i + 2];
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (n - i == 2) {
        uint32_t v = ((uint32_t)p[i] << 16) | ((uint32_t)p[i + 1] << 8);
        out[o++] = tab[(v >> 18) & 63];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = '=';
    }
}

static void h_str(crypto_hash_sha256_state *h, const char *str)
{
    crypto_hash_sha256_update(h, (const unsigned char *)str, strlen(str));
}

int sx_socks5_isolation_creds(sx_socks5_creds *out,
                              const sx_socks5_isolation *in)
{
    crypto_hash_sha256_state h;
    uint8_t digest[crypto_hash_sha256_BYTES];
    char id[32];
    char b64[4 * ((crypto_hash_sha256_BYTES + 2) / 3)];

    if (!out)
        return SIMPLEX_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!in)
        return SIMPLEX_ERR_INVALID_ARG;
    switch (in->auth) {
    case SX_SOCKS5_AUTH_NONE:
        return 0;
    case SX_SOCKS5_AUTH_FIXED:
        if ((!in->username && in->username_len) ||
            (!in->password && in->password_len))
            return SIMPLEX_ERR_INVALID_ARG;
        if (in->username_len > SX_SOCKS5_NAME_MAX ||
            in->password_len > SX_SOCKS5_NAME_MAX)
            return SIMPLEX_ERR_TOO_LARGE;
        out->use_auth = 1;
        if (in->username_len)
            memcpy(out->username, in->username, in->username_len);
        if (in->password_len)
            memcpy(out->password, in->password, in->password_len);
        out->username_len = in->username_len;
        out->password_len = in->password_len;
        return 0;
    case SX_SOCKS5_AUTH_ISOLATE:
        break;
    default:
        return SIMPLEX_ERR_INVALID_ARG;
    }
    if (in->mode < SX_SOCKS5_SESS_USER || in->mode > SX_SOCKS5_SESS_ENTITY)
        return SIMPLEX_ERR_INVALID_ARG;
    if (in->mode != SX_SOCKS5_SESS_USER && !in->session_ts)
        return SIMPLEX_ERR_INVALID_ARG;
    if (in->mode >= SX_SOCKS5_SESS_SERVER && !in->server)
        return SIMPLEX_ERR_INVALID_ARG;
    if (in->mode == SX_SOCKS5_SESS_ENTITY && in->has_entity &&
        !in->entity && in->entity_len)
        return SIMPLEX_ERR_INVALID_ARG;

    snprintf(id, sizeof id, "%" PRId64, in->user_id);
    crypto_hash_sha256_init(&h);
    h_str(&h, id);
    if (in->mode != SX_SOCKS5_SESS_USER) {
        h_str(&h, ":");
        h_str(&h, in->session_ts);
    }
    if (in->mode >= SX_SOCKS5_SESS_SERVER) {
        h_str(&h, "@");
        h_str(&h, in->server);
    }
    if (in->mode == SX_SOCKS5_SESS_ENTITY && in->has_entity) {
        h_str(&h, "/");
        if (in->entity_len)
            crypto_hash_sha256_update(&h, in->entity, in->entity_len);
    }
    crypto_hash_sha256_final(&h, digest);
    b64_std(b64, digest, sizeof digest);
    memcpy(out->username, b64, sizeof b64);
    out->username_len = sizeof b64;
    out->use_auth = 1;
    sx_memzero(&h, sizeof h);
    return 0;
}

int sx_socks5_format_utctime(char *out, size_t cap, int64_t unix_secs,
                             uint64_t picos)
{
    /* 0000-01-01 .. 9999-12-31 */
    const int64_t min_s = -62167219200LL, max_s = 253402300799LL;
    int64_t days, sod, z, era, doe, yoe, y, doy, mp, d, m;
    char frac[16];
    int n;

    if (!out || picos >= 1000000000000ULL || unix_secs < min_s ||
        unix_secs > max_s)
        return SIMPLEX_ERR_INVALID_ARG;
    days = unix_secs / 86400;
    sod = unix_secs % 86400;
    if (sod < 0) {
        sod += 86400;
        days--;
    }
    /* civil_from_days (proleptic Gregorian) */
    z = days + 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = yoe + era * 400;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    if (m <= 2)
        y++;

    frac[0] = '\0';
    if (picos) {
        int len;
        snprintf(frac, sizeof frac, ".%012" PRIu64, picos);
        len = (int)strlen(frac);
        while (len > 1 && frac[len - 1] == '0')
            frac[--len] = '\0';
    }
    n = snprintf(out, cap, "%04d-%02d-%02d %02d:%02d:%02d%s UTC", (int)y,
                 (int)m, (int)d, (int)(sod / 3600), (int)(sod / 60 % 60),
                 (int)(sod % 60), frac);
    if (n < 0)
        return SIMPLEX_ERR_INTERNAL;
    if ((size_t)n >= cap)
        return SIMPLEX_ERR_BUFFER_TOO_SMALL;
    return n;
}
