/*
 * SMP client: moving one connection forward. Each loop turn steps every
 * connection (whatever poll() reported: TLS may hold buffered records the
 * socket does not show) and asks it what to wait for.
 */
#define _DEFAULT_SOURCE 1

#include <poll.h>

#include "client/client_int.h"

/* Reads and writes blocks; returns non-zero when the connection failed. */
static int pump(cl_conn *k, int64_t now)
{
    int rc;
    for (;;) {
        rc = sx_tls_read_block(k->tls, k->block, sizeof k->block);
        if (rc == SX_TLS_WANT_READ || rc == SX_TLS_WANT_WRITE)
            break;
        if (rc < 0) {
            int was_hello = k->state == CL_C_HELLO;
            if (was_hello)
                cl_host_next(k, rc, "connection closed during the SMP handshake",
                          now);
            else
                cl_conn_fail(k, rc == SIMPLEX_ERR_IO ? SIMPLEX_ERR_CLOSED : rc,
                             "connection lost", now);
            return 1;
        }
        sx_smp_session_recv_block(k->sess, k->block, (uint64_t)now);
        if (cl_conn_drain(k, now))
            return 1;
    }
    if (sx_smp_session_next_timeout(k->sess) <= (uint64_t)now) {
        sx_smp_session_handle_timeout(k->sess, (uint64_t)now);
        if (cl_conn_drain(k, now))
            return 1;
    }
    /* blocks are gathered by the TLS layer and sent together once the
     * session has no more (or the gathering buffer is full) */
    for (;;) {
        int last = 0;
        if (sx_tls_block_pending(k->tls)) {
            rc = sx_tls_flush(k->tls);
        } else {
            uint8_t out[SX_SMP_BLOCK_SIZE];
            rc = sx_smp_session_next_block(k->sess, out, (uint64_t)now);
            if (rc < 0) {
                if (cl_conn_drain(k, now))
                    return 1;
                cl_conn_fail(k, rc, "SMP session failed", now);
                return 1;
            }
            if (rc == 0) {
                last = 1;
                rc = sx_tls_write_pending(k->tls) ? sx_tls_flush(k->tls)
                                                  : SX_TLS_OK;
            } else {
                rc = sx_tls_write_block(k->tls, out, sizeof out);
            }
        }
        if (rc == SX_TLS_WANT_READ || rc == SX_TLS_WANT_WRITE)
            break;
        if (rc < 0) {
            cl_conn_fail(k, SIMPLEX_ERR_CLOSED, "connection lost", now);
            return 1;
        }
        if (last)
            break;
    }
    return 0;
}

void cl_conn_step(cl_conn *k, short revents, int64_t now)
{
    (void)revents;
    switch (k->state) {
    case CL_C_IDLE:
        if (k->reconnect_at >= 0 && now >= k->reconnect_at)
            cl_conn_start(k, now);
        return;
    case CL_C_TCP:
        if (now >= k->deadline) {
            cl_host_next(k, SIMPLEX_ERR_TIMEOUT, "proxy connect timeout", now);
            return;
        }
        cl_step_tcp(k, now);
        if (k->state == CL_C_SOCKS)
            cl_step_socks(k, now);
        if (k->state == CL_C_TLS)
            cl_step_tls(k, now);
        return;
    case CL_C_SOCKS:
        if (now >= k->deadline) {
            cl_host_next(k, SIMPLEX_ERR_TIMEOUT, "SOCKS5 handshake timeout", now);
            return;
        }
        cl_step_socks(k, now);
        if (k->state == CL_C_TLS)
            cl_step_tls(k, now);
        return;
    case CL_C_TLS:
    case CL_C_HELLO:
        if (k->state == CL_C_TLS) {
            cl_step_tls(k, now);
            if (k->state != CL_C_HELLO)
                return;
        }
        if (now >= k->deadline) {
            cl_host_next(k, SIMPLEX_ERR_TIMEOUT, "SMP handshake timeout", now);
            return;
        }
        pump(k, now);
        return;
    case CL_C_READY:
        pump(k, now);
        return;
    default:
        return;
    }
}

int cl_conn_poll(cl_conn *k, short *events, int64_t *deadline)
{
    uint64_t t;
    *events = 0;
    *deadline = -1;
    switch (k->state) {
    case CL_C_IDLE:
        *deadline = k->reconnect_at;
        return -1;
    case CL_C_TCP:
        /* POLLIN while the proxy's name resolves, POLLOUT while connecting */
        *events = sx_net_connector_events(k->tcp);
        *deadline = k->deadline;
        return sx_net_connector_fd(k->tcp);
    case CL_C_SOCKS: {
        const uint8_t *p;
        size_t n;
        *events = sx_socks5_out(&k->socks, &p, &n) > 0 ? POLLOUT : POLLIN;
        *deadline = k->deadline;
        return k->fd;
    }
    case CL_C_TLS:
        *events = sx_tls_poll_events(k->tls);
        *deadline = k->deadline;
        return sx_tls_fd(k->tls);
    case CL_C_HELLO:
    case CL_C_READY:
        *events = POLLIN;
        if (sx_tls_write_pending(k->tls) || sx_smp_session_want_write(k->sess))
            *events |= POLLOUT;
        if (k->state == CL_C_HELLO)
            *deadline = k->deadline;
        t = sx_smp_session_next_timeout(k->sess);
        if (t != SX_SMP_SESSION_NEVER &&
            (*deadline < 0 || (int64_t)t < *deadline))
            *deadline = (int64_t)t;
        return sx_tls_fd(k->tls);
    default:
        return -1;
    }
}
