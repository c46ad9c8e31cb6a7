/*
 * Internal: non-blocking TCP sockets for the SMP transport.
 *
 * Name resolution (getaddrinfo, which blocks), a non-blocking connect that
 * walks through every resolved address in turn, and send/recv wrappers that
 * never raise SIGPIPE and retry on EINTR. Never installed.
 */
#ifndef SX_CLIENT_NET_H
#define SX_CLIENT_NET_H

#include <stddef.h>
#include <stdint.h>

/* Outcomes of the calls below (errors are negative). */
enum {
    SX_NET_OK = 0,
    SX_NET_AGAIN = 1,         /* would block: wait on the fd and call again */
    SX_NET_EOF = 2,           /* sx_net_recv: the peer closed its side */
    SX_NET_E_RESOLVE = -1,    /* the name did not resolve */
    SX_NET_E_CONNECT = -2,    /* no address accepted the connection */
    SX_NET_E_IO = -3,         /* any other socket error */
    SX_NET_E_NOMEM = -4,
    SX_NET_E_ARG = -5
};

/* A connection attempt over the resolved address list. */
typedef struct sx_net_connector sx_net_connector;

/*
 * Resolves host:port (numeric port) for a TCP stream, IPv4 and IPv6, and
 * starts a non-blocking connect to the first address. An IPv6 literal may be
 * given with or without brackets. On success *out is set, and
 * sx_net_connector_fd() is the socket to wait on for writability.
 */
int sx_net_connector_start(sx_net_connector **out, const char *host,
                           uint16_t port);

/*
 * Advances the attempt after the socket became writable (or at any time):
 * SX_NET_OK once connected (then take the socket with
 * sx_net_connector_take_fd()), SX_NET_AGAIN while the current attempt is in
 * progress (the fd may have changed: fetch it again), SX_NET_E_CONNECT once
 * every address failed.
 */
int sx_net_connector_step(sx_net_connector *c);

/* The socket of the current attempt, -1 when none. */
int sx_net_connector_fd(const sx_net_connector *c);
/* errno of the last failed attempt (0 when none). */
int sx_net_connector_last_errno(const sx_net_connector *c);
/* Hands over the connected socket; the connector no longer closes it. */
int sx_net_connector_take_fd(sx_net_connector *c);
/* Closes any socket still owned and frees. NULL is accepted. */
void sx_net_connector_free(sx_net_connector *c);

/*
 * recv/send on a non-blocking socket. Return the byte count (> 0),
 * or 0 with *status set to SX_NET_AGAIN / SX_NET_EOF, or -1 with *status an
 * SX_NET_E_* code and errno preserved. send never raises SIGPIPE.
 */
long sx_net_recv(int fd, void *buf, size_t len, int *status);
long sx_net_send(int fd, const void *buf, size_t len, int *status);

/* Makes fd non-blocking and close-on-exec. 0 or -1 (errno set). */
int sx_net_set_nonblocking(int fd);

/* Closes fd (ignoring EINTR). */
void sx_net_close(int fd);

/* Milliseconds from a monotonic clock. */
int64_t sx_net_now_ms(void);

#endif /* SX_CLIENT_NET_H */
