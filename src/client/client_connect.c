/*
 * SMP client: opening a connection. The address's hosts are tried in
 * order; each host gets the whole connect timeout for TCP (or the SOCKS5
 * proxy and its handshake), TLS and the SMP handshake, and a host that
 * fails in any of these steps is skipped. The connection fails when none
 * is left, with the most telling of the hosts' errors.
 */
#define _DEFAULT_SOURCE 1

#include <stdio.h>
#include <string.h>

#include "client/client_int.h"

static void start_host(cl_conn *k, int64_t now);

/* ---- connecting ---- */

void cl_conn_start(cl_conn *k, int64_t now)
{
    k->host_idx = 0;
    k->last_rc = 0;
    k->last_err[0] = 0;
    k->reconnect_at = -1;
    start_host(k, now);
}

/* Remembers why a host failed; a failure that says more than "could not
 * connect" (identity, TLS, proxy) is kept over later plain ones. */
static void note_failure(cl_conn *k, int rc, const char *why)
{
    int plain = rc == SIMPLEX_ERR_CONNECT || rc == SIMPLEX_ERR_RESOLVE ||
                rc == SIMPLEX_ERR_TIMEOUT;
    int had_plain = k->last_rc == 0 || k->last_rc == SIMPLEX_ERR_CONNECT ||
                    k->last_rc == SIMPLEX_ERR_RESOLVE ||
                    k->last_rc == SIMPLEX_ERR_TIMEOUT;
    if (!plain || had_plain) {
        k->last_rc = rc;
        snprintf(k->last_err, sizeof k->last_err, "%s: %s",
                 k->addr.hosts[k->host_idx].name, why);
    }
}

void cl_host_next(cl_conn *k, int rc, const char *why, int64_t now)
{
    char msg[300];
    note_failure(k, rc, why);
    cl_close_transport(k);
    k->host_idx++;
    if (k->host_idx < k->addr.n_hosts) {
        start_host(k, now);
        return;
    }
    snprintf(msg, sizeof msg, "cannot connect to %s (%s)", k->server,
             k->last_err);
    cl_conn_fail(k, k->last_rc ? k->last_rc : SIMPLEX_ERR_CONNECT, msg, now);
}

static int tls_opts(cl_conn *k, sx_tls_options *o, int64_t now)
{
    int64_t left = k->deadline - now;
    memset(o, 0, sizeof *o);
    if (left < 1)
        left = 1;
    o->connect_timeout_ms = (int)left;
    return 0;
}

static void start_host(cl_conn *k, int64_t now)
{
    struct simplex_client *c = k->client;
    const sx_host *h;
    sx_tls_options o;
    int rc;

    if (k->host_idx >= k->addr.n_hosts) {
        cl_host_next(k, SIMPLEX_ERR_CONNECT, "no host", now);
        return;
    }
    h = &k->addr.hosts[k->host_idx];
    k->deadline = now + c->opts.connect_timeout_ms;
    if (c->proxy_host) {
        /* a proxy given by name resolves on a helper thread: the result
         * comes from cl_step_tcp() */
        rc = sx_net_connector_start(&k->tcp, c->proxy_host, c->proxy_port);
        if (rc == SX_NET_E_NOMEM) {
            cl_host_next(k, SIMPLEX_ERR_NOMEM, "out of memory", now);
            return;
        }
        if (rc != SX_NET_OK) {
            cl_host_next(k, SIMPLEX_ERR_PROXY,
                         rc == SX_NET_E_RESOLVE
                             ? "SOCKS5 proxy host did not resolve"
                             : "SOCKS5 proxy unreachable",
                         now);
            return;
        }
        k->state = CL_C_TCP;
        return;
    }
    if (h->kind == SX_HOST_ONION) {
        cl_host_next(k, SIMPLEX_ERR_CONNECT, ".onion host needs a SOCKS5 proxy",
                  now);
        return;
    }
    tls_opts(k, &o, now);
    rc = sx_tls_connect_start(&k->tls, c->tls_ctx, h->name,
                              sx_server_addr_port(&k->addr), k->addr.key_hash,
                              &o);
    if (rc < 0) {
        cl_host_next(k, rc, simplex_strerror(rc), now);
        return;
    }
    k->state = CL_C_TLS;
}

static void socks_begin(cl_conn *k, int64_t now)
{
    struct simplex_client *c = k->client;
    const sx_host *h = &k->addr.hosts[k->host_idx];
    sx_socks5_creds cr;
    int rc;

    memset(&cr, 0, sizeof cr);
    if (c->opts.socks5_isolate) {
        sx_socks5_isolation iso;
        memset(&iso, 0, sizeof iso);
        iso.auth = SX_SOCKS5_AUTH_ISOLATE;
        iso.mode = SX_SOCKS5_SESS_SERVER;
        iso.session_ts = c->proxy_session_ts;
        iso.server = k->server;
        rc = sx_socks5_isolation_creds(&cr, &iso);
        if (rc < 0) {
            cl_host_next(k, rc, "SOCKS5 isolation credentials", now);
            return;
        }
    } else if (c->proxy_user) {
        cr.use_auth = 1;
        cr.username_len = strlen(c->proxy_user);
        cr.password_len = c->proxy_pass ? strlen(c->proxy_pass) : 0;
        if (cr.username_len > SX_SOCKS5_NAME_MAX ||
            cr.password_len > SX_SOCKS5_NAME_MAX) {
            cl_host_next(k, SIMPLEX_ERR_INVALID_ARG, "SOCKS5 login too long",
                      now);
            return;
        }
        memcpy(cr.username, c->proxy_user, cr.username_len);
        if (cr.password_len)
            memcpy(cr.password, c->proxy_pass, cr.password_len);
    }
    rc = sx_socks5_init(&k->socks, h->name, sx_server_addr_port(&k->addr),
                        cr.use_auth ? cr.username : NULL, cr.username_len,
                        cr.password, cr.password_len);
    sx_memzero(&cr, sizeof cr);
    if (rc < 0) {
        cl_host_next(k, rc, "SOCKS5 request", now);
        return;
    }
    k->state = CL_C_SOCKS;
}

void cl_step_tcp(cl_conn *k, int64_t now)
{
    int rc = sx_net_connector_step(k->tcp);
    if (rc == SX_NET_AGAIN)
        return;
    if (rc == SX_NET_E_RESOLVE) {
        cl_host_next(k, SIMPLEX_ERR_PROXY, "SOCKS5 proxy host did not resolve",
                     now);
        return;
    }
    if (rc == SX_NET_E_NOMEM) {
        cl_host_next(k, SIMPLEX_ERR_NOMEM, "out of memory", now);
        return;
    }
    if (rc != SX_NET_OK) {
        cl_host_next(k, SIMPLEX_ERR_PROXY, "SOCKS5 proxy refused the connection",
                  now);
        return;
    }
    k->fd = sx_net_connector_take_fd(k->tcp);
    sx_net_connector_free(k->tcp);
    k->tcp = NULL;
    socks_begin(k, now);
}

void cl_step_socks(cl_conn *k, int64_t now)
{
    struct simplex_client *c = k->client;
    for (;;) {
        const uint8_t *p;
        size_t n, used;
        uint8_t buf[600];
        int st, rc;
        long got;

        if (sx_socks5_out(&k->socks, &p, &n) > 0) {
            got = sx_net_send(k->fd, p, n, &st);
            if (got < 0) {
                cl_host_next(k, SIMPLEX_ERR_PROXY, "SOCKS5 send failed", now);
                return;
            }
            if (got == 0)
                return;
            sx_socks5_sent(&k->socks, (size_t)got);
            continue;
        }
        n = sx_socks5_in_want(&k->socks);
        if (n == 0 || n > sizeof buf)
            n = n ? sizeof buf : 1;
        got = sx_net_recv(k->fd, buf, n, &st);
        if (got < 0 || (got == 0 && st == SX_NET_EOF)) {
            cl_host_next(k, SIMPLEX_ERR_PROXY, "SOCKS5 proxy closed", now);
            return;
        }
        if (got == 0)
            return;
        rc = sx_socks5_in(&k->socks, buf, (size_t)got, &used);
        if (rc < 0) {
            cl_host_next(k, rc, sx_socks5_detail_str(sx_socks5_detail_of(&k->socks)),
                      now);
            return;
        }
        if (rc == SX_SOCKS5_DONE) {
            sx_tls_options o;
            int fd = k->fd;
            k->fd = -1;
            sx_socks5_clear(&k->socks);
            tls_opts(k, &o, now);
            rc = sx_tls_connect_fd(&k->tls, c->tls_ctx, fd, k->addr.key_hash,
                                   &o);
            if (rc < 0) {
                cl_host_next(k, rc, simplex_strerror(rc), now);
                return;
            }
            k->state = CL_C_TLS;
            return;
        }
    }
}

void cl_step_tls(cl_conn *k, int64_t now)
{
    struct simplex_client *c = k->client;
    sx_smp_session_config cfg;
    uint8_t uniq[SX_TLS_MAX_FINISHED];
    uint8_t *leaf = NULL;
    size_t ulen, leaf_len = 0;
    int rc = sx_tls_step(k->tls);
    char why[128];

    if (rc == SX_TLS_WANT_READ || rc == SX_TLS_WANT_WRITE)
        return;
    if (rc < 0) {
        snprintf(why, sizeof why, "%s (%s)", simplex_strerror(rc),
                 sx_tls_reason_name(sx_tls_last_reason(k->tls)));
        cl_host_next(k, rc, why, now);
        return;
    }
    sx_smp_session_config_init(&cfg);
    memcpy(cfg.key_hash, k->addr.key_hash, sizeof cfg.key_hash);
    cfg.response_timeout_ms = c->opts.response_timeout_ms;
    cfg.ping_interval_ms = c->opts.ping_interval_ms;
    cfg.max_missed_pings = c->opts.max_missed_pings;
    ulen = sx_tls_unique(k->tls, uniq);
    rc = sx_tls_peer_cert_der(k->tls, 0, NULL, 0, &leaf_len);
    if (rc == 0 && leaf_len) {
        leaf = sx_malloc(leaf_len);
        if (!leaf)
            rc = SIMPLEX_ERR_NOMEM;
        else
            rc = sx_tls_peer_cert_der(k->tls, 0, leaf, leaf_len, &leaf_len);
    }
    if (rc == 0)
        rc = sx_smp_session_new(&k->sess, &cfg);
    if (rc == 0)
        rc = sx_smp_session_start(k->sess, uniq, ulen, leaf, leaf_len,
                                  sx_tls_alpn_agreed(k->tls));
    /* the blocks of one loop turn go out together (client_io.c) */
    if (rc == 0)
        rc = sx_tls_set_coalesce(k->tls, 1);
    sx_free(leaf);
    if (rc < 0) {
        cl_host_next(k, rc, "SMP session start failed", now);
        return;
    }
    k->state = CL_C_HELLO;
}

