/*
 * Internal: non-blocking TCP sockets for the SMP transport.
 *
 * Name resolution that never blocks the caller (a host name is resolved
 * by getaddrinfo on a short-lived helper thread), a non-blocking connect
 * that walks through every resolved address in turn, and send/recv
 * wrappers that never raise SIGPIPE and retry on EINTR. Never installed.
 */
#ifndef SX_CLIENT_NET_H
#define SX_CLIENT_NET_H

#include <stddef.h>
#include <stdint.h>

struct addrinfo;

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

/* A connection attempt: resolution, then connects over the address list. */
typedef struct sx_net_connector sx_net_connector;

/*
 * Starts connecting to host:port (numeric port) over TCP, IPv4 and IPv6.
 * An IPv6 literal may be given with or without brackets.
 *
 * An address literal (IPv4, IPv6) is parsed at once (AI_NUMERICHOST, no
 * DNS) and a non-blocking connect to its first address is started here:
 * SX_NET_E_CONNECT when every address failed at once (*out is then set all
 * the same, for sx_net_connector_last_errno(); free it).
 *
 * Any other name is handed to a detached helper thread that runs
 * getaddrinfo (AF_UNSPEC, SOCK_STREAM, AI_NUMERICSERV); the call returns
 * at once with the connector "resolving". When no thread can be started,
 * the name is resolved here, blocking, as a fallback.
 *
 * SX_NET_OK means in progress (resolving or connecting) or connected: *out
 * is set; drive it with sx_net_connector_step(), waiting for
 * sx_net_connector_events() on sx_net_connector_fd() in between.
 * SX_NET_E_RESOLVE / SX_NET_E_NOMEM (only when known at once: the
 * blocking fallback failed, or no memory) and SX_NET_E_ARG leave *out
 * NULL.
 */
int sx_net_connector_start(sx_net_connector **out, const char *host,
                           uint16_t port);

/*
 * Advances the attempt; never blocks, may be called at any time:
 *  - while resolving: SX_NET_AGAIN until the helper thread is done; then
 *    SX_NET_E_RESOLVE when the name did not resolve (SX_NET_E_NOMEM on
 *    EAI_MEMORY), otherwise it starts connecting to the first address and
 *    goes on as below (the fd changes: fetch it again);
 *  - while connecting: SX_NET_OK once connected (then take the socket with
 *    sx_net_connector_take_fd()), SX_NET_AGAIN while the current attempt
 *    is in progress (the fd may have changed: fetch it again),
 *    SX_NET_E_CONNECT once every address failed.
 * A resolution failure is returned again by every later call.
 */
int sx_net_connector_step(sx_net_connector *c);

/*
 * The descriptor to wait on, -1 when none: while resolving, one that
 * becomes readable when the resolution finished (the read end of a pipe;
 * never read or close it); while connecting, the socket of the current
 * attempt.
 */
int sx_net_connector_fd(const sx_net_connector *c);
/* The poll() events to wait for on that fd: POLLIN while resolving,
 * POLLOUT while a TCP connect is in progress (or done), 0 when none. */
short sx_net_connector_events(const sx_net_connector *c);
/* errno of the last failed attempt (0 when none). */
int sx_net_connector_last_errno(const sx_net_connector *c);
/* Hands over the connected socket; the connector no longer closes it. */
int sx_net_connector_take_fd(sx_net_connector *c);
/*
 * Closes any socket still owned and frees. NULL is accepted. Safe while
 * the helper thread still resolves: it finishes on its own, then frees
 * what it shares with the connector (the result is dropped).
 */
void sx_net_connector_free(sx_net_connector *c);

/*
 * For tests only (not API): replaces getaddrinfo for the names the helper
 * thread resolves (and the blocking fallback); address literals never go
 * through it. fn has getaddrinfo's contract: it is called on the helper
 * thread with the host (brackets removed), the numeric port and the hints
 * above; its list, which must come from getaddrinfo, is released with
 * freeaddrinfo. Takes effect for connectors started afterwards; NULL
 * restores getaddrinfo.
 */
typedef int (*sx_net_resolver_fn)(const char *host, const char *port,
                                  const struct addrinfo *hints,
                                  struct addrinfo **res);
void sx_net_set_resolver(sx_net_resolver_fn fn);

/*
 * recv/send on a non-blocking socket. Return the byte count (> 0),
 * or 0 with *status set to SX_NET_AGAIN / SX_NET_EOF, or -1 with *status an
 * SX_NET_E_* code and errno preserved. send never raises SIGPIPE.
 */
long sx_net_recv(int fd, void *buf, size_t len, int *status);
long sx_net_send(int fd, const void *buf, size_t len, int *status);

/* A pipe with both ends non-blocking and close-on-exec (atomically where
 * the system allows): 0, or -1 with errno. */
int sx_net_pipe(int p[2]);
/* Makes fd non-blocking and close-on-exec. 0 or -1 (errno set). */
int sx_net_set_nonblocking(int fd);

/* Closes fd (ignoring EINTR). */
void sx_net_close(int fd);

/* Milliseconds from a monotonic clock. */
int64_t sx_net_now_ms(void);

#endif /* SX_CLIENT_NET_H */
