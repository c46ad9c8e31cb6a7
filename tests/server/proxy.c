/*
 * smp-test-server: the proxy role of proxied sending (--proxy).
 *
 * PRXY makes this server connect to the destination relay as an SMP client
 * (the library's TLS layer and session, with the proxy flag, so blocks are
 * not encrypted) and answer PKEY with the relay's session id, its version
 * range capped to 8..17 and its certificate chain and signed session key.
 * PFWD is forwarded to the relay of that session as RFWD; its RRES is
 * answered as PRES. Relay connections are shared by all clients and found
 * by their session id, as the reference's proxy agent does.
 *
 * Simplification: the relay connections are driven with BLOCKING calls
 * bounded by PRX_TIMEOUT_MS (connect + handshake, and each RFWD round
 * trip). The poll() loop stalls for that long at most; on loopback it is
 * a few milliseconds.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/session.h"
#include "client/tls.h"
#include "cmd.h"

#define PRX_TIMEOUT_MS 10000

int g_proxy_enabled;

typedef struct prx_relay {
    struct prx_relay *next;
    char host[256];
    uint16_t port;
    uint8_t key_hash[SX_SHA256_BYTES];
    sx_tls_conn *tls;
    sx_smp_session *sess;
    uint8_t sid[SX_TLS_MAX_FINISHED];
    size_t sid_len;
    uint16_t vmin, vmax;          /* the relay's hello range */
    size_t n_certs;
    uint8_t *certs[SX_SMP_MAX_CERTS];
    size_t cert_len[SX_SMP_MAX_CERTS];
    uint8_t *signed_key;
    size_t signed_key_len;
    uint8_t secret[32];           /* the proxy-relay session secret */
} prx_relay;

static prx_relay *g_relays;
static sx_tls_ctx *g_tls;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void relay_free(prx_relay *p)
{
    sx_smp_session_free(p->sess);
    sx_tls_free(p->tls);
    for (size_t i = 0; i < p->n_certs; i++)
        free(p->certs[i]);
    free(p->signed_key);
    sx_memzero(p, sizeof *p);
    free(p);
}

static void relay_drop(prx_relay *p)
{
    for (prx_relay **pp = &g_relays; *pp; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    relay_free(p);
}

void srv_proxy_close_all(void)
{
    while (g_relays)
        relay_drop(g_relays);
    sx_tls_ctx_free(g_tls);
    g_tls = NULL;
}

/* "PROXY BROKER <b>" (with a transport error for TRANSPORT) */
static void resp_broker(srv_resps *r, const srv_conn *c, sx_smp_bytes corr,
                        sx_smp_bytes ent, sx_smp_broker_err b,
                        sx_smp_transport_err te, sx_smp_handshake_err he)
{
    sx_smp_msg m;
    sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
    m.err.type = SX_SMP_ERR_PROXY;
    m.err.proxy = SX_SMP_PROXYERR_BROKER;
    m.err.broker = b;
    m.err.transport = te;
    m.err.handshake = he;
    m.err.network = SX_SMP_NE_FAILED;
    srv_resp_add(r, c, corr, ent, &m);
}

/* Sends what the session has queued, blocking. */
static int relay_flush(prx_relay *p)
{
    uint8_t *blk = malloc(SX_SMP_BLOCK_SIZE);
    int rc = 0;
    if (!blk)
        abort();
    while (rc == 0 && sx_smp_session_next_block(p->sess, blk, now_ms()) == 1)
        rc = sx_tls_write_block_sync(p->tls, blk, SX_SMP_BLOCK_SIZE,
                                     PRX_TIMEOUT_MS);
    free(blk);
    return rc;
}

/* Waits for the next session event (reading blocks as needed) until the
 * deadline. 1 with *ev, 0 on timeout, negative on a connection failure. */
static int relay_next_event(prx_relay *p, sx_smp_session_event *ev,
                            uint64_t deadline)
{
    uint8_t *blk;
    int rc;
    if (sx_smp_session_next_event(p->sess, ev) == 1)
        return 1;
    blk = malloc(SX_SMP_BLOCK_SIZE);
    if (!blk)
        abort();
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            rc = 0;
            break;
        }
        rc = sx_tls_read_block_sync(p->tls, blk, SX_SMP_BLOCK_SIZE,
                                    (int)(deadline - now));
        if (rc < 0) {
            sx_tls_reason why = sx_tls_last_reason(p->tls);
            rc = why == SX_TLS_R_TIMEOUT ? 0 : rc;
            break;
        }
        sx_smp_session_recv_block(p->sess, blk, now_ms());
        if (sx_smp_session_next_event(p->sess, ev) == 1) {
            rc = 1;
            break;
        }
    }
    free(blk);
    return rc;
}

/* Keeps the relay's hello data for PKEY (the first block, before the
 * session consumes it). */
static int keep_hello(prx_relay *p, const uint8_t *blk)
{
    const uint8_t *content;
    size_t n;
    sx_smp_server_hello h;
    if (sx_smp_block_unpad(blk, &content, &n) < 0 ||
        sx_smp_server_hello_decode(&h, content, n) < 0)
        return -1;
    p->vmin = h.vmin;
    p->vmax = h.vmax;
    if (!h.has_cert)
        return 0;
    for (size_t i = 0; i < h.n_certs; i++) {
        p->certs[i] = malloc(h.certs[i].n ? h.certs[i].n : 1);
        if (!p->certs[i])
            abort();
        memcpy(p->certs[i], h.certs[i].p, h.certs[i].n);
        p->cert_len[i] = h.certs[i].n;
        p->n_certs = i + 1;
    }
    p->signed_key = malloc(h.signed_key.n ? h.signed_key.n : 1);
    if (!p->signed_key)
        abort();
    memcpy(p->signed_key, h.signed_key.p, h.signed_key.n);
    p->signed_key_len = h.signed_key.n;
    return 0;
}

/* Connects to the relay: TLS, then the SMP handshake as a proxy client.
 * 0, or writes the error response and returns -1. */
static int relay_connect(prx_relay *p, const sx_smp_server *srv,
                         srv_resps *r, const srv_conn *c, sx_smp_bytes corr,
                         sx_smp_bytes ent)
{
    sx_tls_options o;
    sx_smp_session_config cfg;
    uint8_t uniq[SX_TLS_MAX_FINISHED];
    uint8_t *blk = NULL;
    size_t ulen;
    sx_smp_session_event ev;
    int rc = -1;

    if (!g_tls && sx_tls_ctx_new(&g_tls) < 0) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_INTERNAL, 0);
        return -1;
    }
    memset(&o, 0, sizeof o);
    o.connect_timeout_ms = PRX_TIMEOUT_MS;
    /* each host in turn, as the reference client */
    for (size_t i = 0; i < srv->n_hosts && !p->tls; i++) {
        size_t hn = srv->hosts[i].n < sizeof p->host - 1 ? srv->hosts[i].n
                                                         : sizeof p->host - 1;
        memcpy(p->host, srv->hosts[i].p, hn);
        p->host[hn] = 0;
        if (sx_tls_connect_sync(&p->tls, g_tls, p->host, p->port, p->key_hash,
                                &o) < 0)
            p->tls = NULL;
    }
    if (!p->tls) {
        /* unknown CA (identity), connection and TLS errors, time-outs:
         * PROXY BROKER NETWORK on the wire (the detail is not encoded) */
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_NETWORK, 0, 0);
        return -1;
    }
    sx_smp_session_config_init(&cfg);
    memcpy(cfg.key_hash, p->key_hash, sizeof cfg.key_hash);
    cfg.proxy = 1;
    cfg.response_timeout_ms = PRX_TIMEOUT_MS;
    cfg.ping_interval_ms = 0;
    ulen = sx_tls_unique(p->tls, uniq);
    if (ulen == 0 || ulen > sizeof p->sid)
        goto transport;
    memcpy(p->sid, uniq, ulen);
    p->sid_len = ulen;
    {
        size_t leaf_len = 0;
        uint8_t *leaf = NULL;
        int r2 = sx_tls_peer_cert_der(p->tls, 0, NULL, 0, &leaf_len);
        if (r2 == 0 && leaf_len && (leaf = malloc(leaf_len)) != NULL)
            r2 = sx_tls_peer_cert_der(p->tls, 0, leaf, leaf_len, &leaf_len);
        if (r2 == 0)
            r2 = sx_smp_session_new(&p->sess, &cfg);
        if (r2 == 0)
            r2 = sx_smp_session_start(p->sess, uniq, ulen, leaf, leaf_len,
                                      sx_tls_alpn_agreed(p->tls));
        free(leaf);
        if (r2 < 0)
            goto transport;
    }
    blk = malloc(SX_SMP_BLOCK_SIZE);
    if (!blk)
        abort();
    if (sx_tls_read_block_sync(p->tls, blk, SX_SMP_BLOCK_SIZE,
                               PRX_TIMEOUT_MS) < 0) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_NETWORK, 0, 0);
        goto out;
    }
    if (keep_hello(p, blk) < 0) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT,
                    SX_SMP_TE_HANDSHAKE, SX_SMP_HS_PARSE);
        goto out;
    }
    sx_smp_session_recv_block(p->sess, blk, now_ms());
    while (sx_smp_session_next_event(p->sess, &ev) == 1) {
        sx_smp_session_ev_type t = ev.type;
        sx_smp_transport_err te = ev.transport;
        sx_smp_handshake_err he = ev.handshake;
        sx_smp_session_event_dispose(&ev);
        if (t == SX_SMP_SESSION_EV_FATAL) {
            if (te)
                resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT, te, he);
            else
                resp_broker(r, c, corr, ent, SX_SMP_BROKER_NETWORK, 0, 0);
            goto out;
        }
    }
    if (sx_smp_session_get_state(p->sess) != SX_SMP_SESSION_READY)
        goto transport;
    if (relay_flush(p) < 0) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_NETWORK, 0, 0);
        goto out;
    }
    /* the proxy-relay secret (thAuth sessSecret): the session checked the
     * relay's signed session key against its leaf certificate */
    if (p->signed_key && p->n_certs &&
        sx_smp_session_dh_secret(p->sess, p->secret) < 0)
        goto transport;
    rc = 0;
    goto out;
transport:
    resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT, SX_SMP_TE_NO_AUTH, 0);
out:
    free(blk);
    return rc;
}

static prx_relay *relay_find_server(const sx_smp_server *srv)
{
    uint16_t port = 5223;
    if (srv->port.n)
        port = (uint16_t)atoi((const char *)srv->port.p);
    for (prx_relay *p = g_relays; p; p = p->next)
        if (p->port == port && srv->key_hash.n == SX_SHA256_BYTES &&
            memcmp(p->key_hash, srv->key_hash.p, SX_SHA256_BYTES) == 0 &&
            srv->n_hosts && strlen(p->host) == srv->hosts[0].n &&
            memcmp(p->host, srv->hosts[0].p, srv->hosts[0].n) == 0)
            return p;
    return NULL;
}

/* PRXY: connect (or reuse the connection) and answer PKEY. */
void sc_do_prxy(srv_conn *c, const item *it, srv_resps *r)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    const sx_smp_server *srv = &it->cmd.server;
    prx_relay *p;
    sx_smp_msg m;
    uint16_t lo, hi;

    if (!g_proxy_enabled) {
        /* not configured as a proxy */
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_PROXY,
                    SX_SMP_PROXYERR_BASIC_AUTH);
        return;
    }
    p = relay_find_server(srv);
    if (!p) {
        char port[8] = "";
        p = calloc(1, sizeof *p);
        if (!p)
            abort();
        if (srv->port.n && srv->port.n < sizeof port)
            memcpy(port, srv->port.p, srv->port.n);
        p->port = srv->port.n ? (uint16_t)atoi(port) : 5223;
        if (srv->key_hash.n != SX_SHA256_BYTES || srv->n_hosts == 0) {
            free(p);
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_CMD, SX_SMP_CMDERR_SYNTAX);
            return;
        }
        memcpy(p->key_hash, srv->key_hash.p, SX_SHA256_BYTES);
        if (relay_connect(p, srv, r, c, corr, ent) < 0) {
            relay_free(p);
            return;
        }
        p->next = g_relays;
        g_relays = p;
    }
    /* the relay's range capped to proxiedSMPRelayVRange (8..17) */
    lo = p->vmin > SX_SMP_V_SENDING_PROXY ? p->vmin : SX_SMP_V_SENDING_PROXY;
    hi = p->vmax < 17 ? p->vmax : 17;
    if (lo > hi || sx_smp_session_version(p->sess) < SX_SMP_V_SENDING_PROXY) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT,
                    SX_SMP_TE_VERSION, 0);
        return;
    }
    if (!p->signed_key || !p->n_certs) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT,
                    SX_SMP_TE_NO_AUTH, 0);
        return;
    }
    sx_smp_msg_init(&m, SX_SMP_MSG_PKEY);
    m.id.p = p->sid;
    m.id.n = p->sid_len;
    m.vmin = lo;
    m.vmax = hi;
    m.n_certs = p->n_certs;
    for (size_t i = 0; i < p->n_certs; i++) {
        m.certs[i].p = p->certs[i];
        m.certs[i].n = p->cert_len[i];
    }
    m.signed_key.p = p->signed_key;
    m.signed_key.n = p->signed_key_len;
    srv_resp_add(r, c, corr, ent, &m);
}

/* PFWD: forward to the relay of the session (entity id) as RFWD. */
void sc_do_pfwd(srv_conn *c, const item *it, srv_resps *r)
{
    sx_smp_bytes corr = it->t.corr_id, ent = it->t.entity_id;
    prx_relay *p;
    sx_smp_fwd_trans ft;
    sx_smp_cmd cmd;
    sx_wr w;
    uint8_t nonce[SX_BOX_NONCE_BYTES], rnonce[SX_BOX_NONCE_BYTES];
    uint8_t *sealed = NULL, *plain = NULL;
    uint64_t id = 0, deadline;
    sx_smp_session_event ev;
    int rc;

    if (!g_proxy_enabled) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_PROXY,
                    SX_SMP_PROXYERR_NO_SESSION);
        return;
    }
    for (p = g_relays; p; p = p->next)
        if (p->sid_len == ent.n && memcmp(p->sid, ent.p, ent.n) == 0)
            break;
    if (!p) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_PROXY,
                    SX_SMP_PROXYERR_NO_SESSION);
        return;
    }
    if (sx_smp_session_version(p->sess) < SX_SMP_V_SENDING_PROXY) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT,
                    SX_SMP_TE_VERSION, 0);
        return;
    }
    ft.corr_id = corr;
    ft.version = it->cmd.fwd_version;
    ft.key = it->cmd.dh_key;
    ft.enc = it->cmd.body;
    sx_wr_init(&w);
    if (sx_smp_fwd_trans_encode(&w, &ft) < 0 || sx_wr_error(&w) ||
        !(sealed = malloc(w.len + SX_BOX_TAG_BYTES))) {
        sc_resp_err(r, c, corr, ent, SX_SMP_ERR_INTERNAL, 0);
        goto done;
    }
    sx_random(nonce, sizeof nonce);
    sx_smp_cb_seal_nopad(sealed, p->secret, nonce, w.p, w.len);
    sx_smp_cmd_init(&cmd, SX_SMP_CMD_RFWD);
    cmd.body.p = sealed;
    cmd.body.n = w.len + SX_BOX_TAG_BYTES;
    /* the RFWD corrId is the nonce (forwardSMPTransmission) */
    rc = sx_smp_session_submit_corr(p->sess, nonce, NULL, 0, &cmd, NULL,
                                    now_ms(), PRX_TIMEOUT_MS, &id);
    if (rc < 0) {
        if (rc == SIMPLEX_ERR_TOO_LARGE)
            resp_broker(r, c, corr, ent, SX_SMP_BROKER_TRANSPORT,
                        SX_SMP_TE_LARGE_MSG, 0);
        else
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_INTERNAL, 0);
        goto done;
    }
    if (relay_flush(p) < 0) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_NETWORK, 0, 0);
        relay_drop(p);
        goto done;
    }
    deadline = now_ms() + PRX_TIMEOUT_MS;
    for (;;) {
        rc = relay_next_event(p, &ev, deadline);
        if (rc <= 0) {
            /* a read time-out is fatal to the TLS connection too */
            resp_broker(r, c, corr, ent,
                        rc == 0 ? SX_SMP_BROKER_TIMEOUT : SX_SMP_BROKER_NETWORK,
                        0, 0);
            relay_drop(p);
            goto done;
        }
        if ((ev.type == SX_SMP_SESSION_EV_RESPONSE ||
             ev.type == SX_SMP_SESSION_EV_TIMEOUT) && ev.request_id == id)
            break;
        if (ev.type == SX_SMP_SESSION_EV_FATAL) {
            sx_smp_session_event_dispose(&ev);
            resp_broker(r, c, corr, ent, SX_SMP_BROKER_NETWORK, 0, 0);
            relay_drop(p);
            goto done;
        }
        sx_smp_session_event_dispose(&ev);
    }
    if (ev.type == SX_SMP_SESSION_EV_TIMEOUT) {
        resp_broker(r, c, corr, ent, SX_SMP_BROKER_TIMEOUT, 0, 0);
    } else if (!ev.has_msg) {
        /* PCEResponseError: PROXY BROKER RESPONSE */
        sx_smp_msg m;
        sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
        m.err.type = SX_SMP_ERR_PROXY;
        m.err.proxy = SX_SMP_PROXYERR_BROKER;
        m.err.broker = SX_SMP_BROKER_RESPONSE;
        m.err.text.p = (const uint8_t *)"BLOCK";
        m.err.text.n = 5;
        srv_resp_add(r, c, corr, ent, &m);
    } else if (ev.msg.tag == SX_SMP_MSG_ERR) {
        /* the relay's error: PROXY PROTOCOL e */
        sx_smp_msg m;
        sx_wr ew;
        sx_wr_init(&ew);
        sx_smp_err_encode(&ew, sx_smp_session_version(p->sess), &ev.msg.err);
        sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
        m.err.type = SX_SMP_ERR_PROXY;
        m.err.proxy = SX_SMP_PROXYERR_PROTOCOL;
        m.err.inner.p = ew.p;
        m.err.inner.n = ew.len;
        srv_resp_add(r, c, corr, ent, &m);
        sx_wr_free(&ew);
    } else if (ev.msg.tag != SX_SMP_MSG_RRES) {
        sx_smp_msg m;
        const char *name = sx_smp_msg_name(ev.msg.tag);
        sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
        m.err.type = SX_SMP_ERR_PROXY;
        m.err.proxy = SX_SMP_PROXYERR_BROKER;
        m.err.broker = SX_SMP_BROKER_UNEXPECTED;
        m.err.text.p = (const uint8_t *)name;
        m.err.text.n = strlen(name);
        srv_resp_add(r, c, corr, ent, &m);
    } else {
        sx_smp_fwd_resp fr;
        const sx_smp_bytes b = ev.msg.body;
        sx_reverse_nonce(rnonce, nonce);
        if (b.n < SX_BOX_TAG_BYTES || !(plain = malloc(b.n)) ||
            sx_smp_cb_open_nopad(plain, p->secret, rnonce, b.p, b.n) < 0) {
            sc_resp_err(r, c, corr, ent, SX_SMP_ERR_CRYPTO, 0);
        } else if (sx_smp_fwd_resp_decode(&fr, plain,
                                          b.n - SX_BOX_TAG_BYTES) < 0) {
            sx_smp_msg m;
            sx_smp_msg_init(&m, SX_SMP_MSG_ERR);
            m.err.type = SX_SMP_ERR_PROXY;
            m.err.proxy = SX_SMP_PROXYERR_BROKER;
            m.err.broker = SX_SMP_BROKER_RESPONSE;
            m.err.text.p = (const uint8_t *)"BLOCK";
            m.err.text.n = 5;
            srv_resp_add(r, c, corr, ent, &m);
        } else {
            sx_smp_msg m;
            sx_smp_msg_init(&m, SX_SMP_MSG_PRES);
            m.body = fr.enc;
            srv_resp_add(r, c, corr, ent, &m);
        }
    }
    sx_smp_session_event_dispose(&ev);
done:
    sx_wr_free(&w);
    free(sealed);
    free(plain);
}
