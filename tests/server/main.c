/*
 * smp-test-server: loopback SMP server for the tests and the demo.
 *
 *   smp-test-server --port PORT [--dir DIR] [--store-log FILE] [--proxy]
 *   (--port 0: a free port, shown in the printed address)
 *
 * Prints smp://<key hash>@127.0.0.1:PORT as the first line of stdout, then
 * serves on 127.0.0.1 until SIGTERM / SIGINT (exit 0). One poll() loop,
 * non-blocking OpenSSL; see srv.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <openssl/err.h>

#include "common/text.h"
#include "simplex/common.h"
#include "srv.h"

enum { ST_TLS, ST_HELLO, ST_OPEN };

srv_conn *g_conns;
static srv_creds g_creds;
static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

/* ---- output ---- */

static void queue_block(srv_conn *c, const uint8_t *content, size_t n)
{
    srv_out *o = malloc(sizeof *o);
    int rc;
    if (!o)
        abort();
    o->next = NULL;
    if (c->encrypted)
        rc = sx_smp_block_encrypt(&c->chain, o->block, content, n);
    else
        rc = sx_smp_block_pad(o->block, content, n);
    if (rc < 0) {
        free(o);
        return;
    }
    if (c->out_tail)
        c->out_tail->next = o;
    else
        c->out_head = o;
    c->out_tail = o;
}

void srv_conn_send(srv_conn *c, const srv_resps *r)
{
    sx_smp_bytes *ts;
    size_t i = 0;
    if (c->closing || r->n == 0)
        return;
    ts = malloc(r->n * sizeof *ts);
    if (!ts)
        abort();
    for (size_t j = 0; j < r->n; j++) {
        ts[j].p = r->v[j].p;
        ts[j].n = r->v[j].n;
    }
    while (i < r->n) {
        size_t k = sx_smp_batch_fit(ts + i, r->n - i);
        sx_wr w;
        if (k == 0) { /* a transmission larger than a block is dropped */
            i++;
            continue;
        }
        sx_wr_init(&w);
        if (sx_smp_batch_encode(&w, ts + i, k) == 0)
            queue_block(c, w.p, w.len);
        sx_wr_free(&w);
        i += k;
    }
    free(ts);
}

/* ---- connections ---- */

static void conn_free(srv_conn *c)
{
    srv_conn_unsubscribe(c);
    while (c->out_head) {
        srv_out *o = c->out_head;
        c->out_head = o->next;
        free(o);
    }
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    sx_smp_chain_wipe(&c->chain);
    sx_memzero(c->dh_priv, sizeof c->dh_priv);
    sx_memzero(c->sess_secret, sizeof c->sess_secret);
    free(c);
}

static void server_hello(srv_conn *c)
{
    const unsigned char *alpn = NULL;
    unsigned int alpn_len = 0;
    sx_smp_server_hello h;
    sx_wr sk, w;

    c->session_len = SSL_get_peer_finished(c->ssl, c->session_id,
                                           sizeof c->session_id);
    if (c->session_len == 0 || c->session_len > sizeof c->session_id) {
        c->closing = 1;
        return;
    }
    sx_x25519_keypair(c->dh_pub, c->dh_priv);
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    memset(&h, 0, sizeof h);
    h.vmin = SX_SMP_VERSION_MIN;
    /* without a negotiated ALPN the reference offers only the legacy v6
     * (getSessionALPN: any protocol it selected, smp/1, h2 or http/1.1,
     * gives the full range when no web server shares the port) */
    h.vmax = alpn_len > 0 ? SX_SMP_VERSION_MAX : SX_SMP_VERSION_MIN;
    h.session_id.p = c->session_id;
    h.session_id.n = c->session_len;
    /* the certificate and the signed key travel from v7 (the maximum of
     * the offered range decides, as the reference encodes it) */
    h.has_cert = h.vmax >= SX_SMP_V_AUTH_CMDS;
    h.n_certs = 2;
    h.certs[0].p = g_creds.srv_der;
    h.certs[0].n = (size_t)g_creds.srv_len;
    h.certs[1].p = g_creds.ca_der;
    h.certs[1].n = (size_t)g_creds.ca_len;
    sx_wr_init(&sk);
    sx_wr_init(&w);
    if (srv_signed_dh_key(&sk, &g_creds, c->dh_pub) == 0) {
        h.signed_key.p = sk.p;
        h.signed_key.n = sk.len;
        if (sx_smp_server_hello_encode(&w, &h) == 0 && sx_wr_error(&w) == 0)
            queue_block(c, w.p, w.len);
        else
            c->closing = 1;
    } else {
        c->closing = 1;
    }
    sx_wr_free(&sk);
    sx_wr_free(&w);
    c->state = ST_HELLO;
    c->version = h.vmax; /* the offered maximum, until the client hello */
}

/* smpServerHandshake after the server hello: any failure closes. */
static void client_hello(srv_conn *c, const uint8_t *content, size_t n)
{
    sx_smp_client_hello h;
    uint16_t vmax = c->version;
    uint8_t secret[SX_X25519_BYTES];

    if (sx_smp_client_hello_decode(&h, content, n) < 0 ||
        h.key_hash.n != SX_SHA256_BYTES ||
        memcmp(h.key_hash.p, g_creds.key_hash, SX_SHA256_BYTES) != 0 ||
        h.version < SX_SMP_VERSION_MIN || h.version > vmax ||
        h.has_service /* client services are not supported here */) {
        c->closing = 1;
        return;
    }
    c->version = h.version;
    if (h.dh_key.alg == SX_KEY_X25519 && h.version >= SX_SMP_V_AUTH_CMDS) {
        if (sx_x25519_dh(secret, h.dh_key.raw, c->dh_priv) < 0) {
            c->closing = 1;
            return;
        }
        memcpy(c->sess_secret, secret, sizeof secret);
        c->has_sess_secret = 1;
        /* blockEncryption: v11+, not on proxy connections */
        if (!h.proxy_server && h.version >= SX_SMP_V_ENCRYPTED_BLOCK) {
            if (sx_smp_chain_init(&c->chain, 1, c->session_id,
                                  c->session_len, secret) < 0) {
                c->closing = 1;
                return;
            }
            c->encrypted = 1;
        }
        sx_memzero(secret, sizeof secret);
    }
    c->state = ST_OPEN;
}

static void on_block(srv_conn *c)
{
    const uint8_t *content;
    size_t n;
    if (c->state == ST_HELLO) {
        if (sx_smp_block_unpad(c->inbuf, &content, &n) < 0)
            c->closing = 1;
        else
            client_hello(c, content, n);
        return;
    }
    if (c->encrypted) {
        uint8_t *plain = malloc(SX_SMP_BLOCK_SIZE);
        if (!plain)
            abort();
        int bad = sx_smp_block_decrypt(&c->chain, plain, c->inbuf, &content,
                                       &n) < 0;
        srv_process_block(c, bad ? NULL : content, bad ? 0 : n, bad);
        free(plain);
    } else {
        int bad = sx_smp_block_unpad(c->inbuf, &content, &n) < 0;
        srv_process_block(c, bad ? NULL : content, bad ? 0 : n, bad);
    }
}

static int ssl_retry(srv_conn *c, int ret)
{
    int e = SSL_get_error(c->ssl, ret);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 1;
    ERR_clear_error();
    c->closing = 1;
    return 0;
}

static void flush_out(srv_conn *c)
{
    while (!c->closing && c->state != ST_TLS && c->out_head) {
        srv_out *o = c->out_head;
        size_t w = 0;
        int ret = SSL_write_ex(c->ssl, o->block + c->out_off,
                               SX_SMP_BLOCK_SIZE - c->out_off, &w);
        if (ret != 1) {
            ssl_retry(c, ret);
            return;
        }
        c->out_off += w;
        if (c->out_off == SX_SMP_BLOCK_SIZE) {
            c->out_off = 0;
            c->out_head = o->next;
            if (!c->out_head)
                c->out_tail = NULL;
            free(o);
        }
    }
}

static void conn_io(srv_conn *c)
{
    if (c->state == ST_TLS) {
        int ret = SSL_accept(c->ssl);
        if (ret != 1) {
            ssl_retry(c, ret);
            return;
        }
        server_hello(c);
    }
    flush_out(c);
    while (!c->closing) {
        size_t got = 0;
        int ret = SSL_read_ex(c->ssl, c->inbuf + c->inlen,
                              SX_SMP_BLOCK_SIZE - c->inlen, &got);
        if (ret != 1) {
            ssl_retry(c, ret);
            break;
        }
        c->inlen += got;
        if (c->inlen == SX_SMP_BLOCK_SIZE) {
            c->inlen = 0;
            on_block(c);
            flush_out(c);
        }
    }
    flush_out(c);
}

static void accept_conns(int lfd, SSL_CTX *ctx)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        srv_conn *c;
        int one = 1;
        if (fd < 0)
            return;
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c = calloc(1, sizeof *c);
        if (!c)
            abort();
        c->fd = fd;
        c->accepted = srv_now();
        c->ssl = SSL_new(ctx);
        if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
            conn_free(c);
            continue;
        }
        SSL_set_accept_state(c->ssl);
        c->next = g_conns;
        g_conns = c;
        conn_io(c);
    }
}

/* smpHandshakeTimeout: 120 s for TLS and the SMP handshake */
#define HANDSHAKE_TIMEOUT 120

static void reap(void)
{
    int64_t now = srv_now();
    for (srv_conn **pp = &g_conns; *pp;) {
        srv_conn *c = *pp;
        if (c->state != ST_OPEN && now - c->accepted > HANDSHAKE_TIMEOUT)
            c->closing = 1;
        if (c->closing) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
}

static int listen_on(int port)
{
    struct sockaddr_in a;
    int one = 1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
        close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* The port a socket is bound to (for --port 0). */
static int bound_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) < 0)
        return -1;
    return ntohs(a.sin_port);
}

static void usage(void)
{
    fprintf(stderr, "usage: smp-test-server --port PORT [--dir DIR] "
                    "[--store-log FILE] [--proxy] [--ignore-sub]\n");
}

int main(int argc, char **argv)
{
    int port = -1, lfd;
    const char *dir = NULL, *log = NULL;
    SSL_CTX *ctx;
    struct sigaction sa;
    sx_wr w;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--store-log") == 0 && i + 1 < argc)
            log = argv[++i];
        else if (strcmp(argv[i], "--proxy") == 0)
            g_proxy_enabled = 1;
        else if (strcmp(argv[i], "--ignore-sub") == 0)
            g_ignore_sub = 1;
        else {
            usage();
            return 2;
        }
    }
    if (port < 0 || port > 65535) {
        usage();
        return 2;
    }
    if (simplex_global_init(NULL) != SIMPLEX_OK) {
        fprintf(stderr, "smp-test-server: library init failed\n");
        return 1;
    }
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (srv_creds_init(&g_creds, dir) < 0) {
        fprintf(stderr, "smp-test-server: cannot set up the certificates\n");
        return 1;
    }
    if (log && srv_store_open_log(log) < 0) {
        fprintf(stderr, "smp-test-server: cannot open the store log %s\n", log);
        return 1;
    }
    srv_cmd_init();
    ctx = srv_tls_ctx(&g_creds);
    lfd = listen_on(port);
    if (!ctx || lfd < 0) {
        fprintf(stderr, "smp-test-server: cannot listen on 127.0.0.1:%d\n",
                port);
        return 1;
    }
    if (port == 0)
        port = bound_port(lfd); /* the kernel chose a free one */
    sx_wr_init(&w);
    sx_b64url_encode(&w, g_creds.key_hash, sizeof g_creds.key_hash);
    if (sx_wr_error(&w))
        return 1;
    printf("smp://%.*s@127.0.0.1:%d\n", (int)w.len, (const char *)w.p, port);
    fflush(stdout);
    sx_wr_free(&w);

    while (!g_stop) {
        size_t n = 1, i = 0;
        struct pollfd *pf;
        for (srv_conn *c = g_conns; c; c = c->next)
            n++;
        pf = calloc(n, sizeof *pf);
        if (!pf)
            abort();
        pf[0].fd = lfd;
        pf[0].events = POLLIN;
        for (srv_conn *c = g_conns; c; c = c->next) {
            i++;
            c->pf_idx = i;
            pf[i].fd = c->fd;
            pf[i].events = POLLIN;
            if (c->out_head || c->state == ST_TLS)
                pf[i].events |= POLLOUT;
        }
        int rc = poll(pf, n, 200);
        if (rc < 0 && errno != EINTR) {
            free(pf);
            break;
        }
        if (rc > 0 && (pf[0].revents & POLLIN))
            accept_conns(lfd, ctx);
        for (srv_conn *c = g_conns; c; c = c->next) {
            /* connections accepted above are not in pf (pf_idx 0 from
             * calloc): poll them next */
            if (c->pf_idx && pf[c->pf_idx].revents)
                conn_io(c);
        }
        /* output queued for other connections by the commands */
        for (srv_conn *c = g_conns; c; c = c->next)
            flush_out(c);
        free(pf);
        reap();
    }
    while (g_conns) {
        srv_conn *c = g_conns;
        g_conns = c->next;
        conn_free(c);
    }
    srv_proxy_close_all();
    close(lfd);
    SSL_CTX_free(ctx);
    srv_store_close();
    srv_creds_free(&g_creds);
    simplex_global_cleanup();
    return 0;
}
