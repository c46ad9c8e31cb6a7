/*
 * Non-blocking TCP connect over every resolved address, and SIGPIPE-free
 * send/recv wrappers.
 */
#define _DEFAULT_SOURCE 1 /* TCP_KEEPIDLE and friends, where present */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "client/net.h"
#include "common/sx.h"

struct sx_net_connector {
    struct addrinfo *list; /* from getaddrinfo */
    struct addrinfo *next; /* the next address to try */
    int fd;                /* the attempt in progress, -1 when none */
    int last_errno;
    int connected;
};

int64_t sx_net_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sx_net_close(int fd)
{
    if (fd >= 0)
        (void)close(fd);
}

int sx_net_set_nonblocking(int fd)
{
    int fl = fcntl(fd, F_GETFL, 0);
    if (fl < 0)
        return -1;
    if (fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    if (fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -1;
    return 0;
}

/* Socket options as the reference client sets them: keep-alive probes after
 * 30 s idle, every 15 s, 4 of them. Failures are not fatal. */
static void set_socket_options(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
#if defined(TCP_KEEPIDLE) && defined(TCP_KEEPINTVL) && defined(TCP_KEEPCNT)
    {
        int idle = 30, intvl = 15, cnt = 4;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
                         sizeof intvl);
        (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
#endif
}

/* Starts connecting to addresses from c->next on; stops at the first one in
 * progress or connected. */
static int try_next(sx_net_connector *c)
{
    while (c->next) {
        struct addrinfo *ai = c->next;
        int fd;
        c->next = ai->ai_next;
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            c->last_errno = errno;
            continue;
        }
        if (sx_net_set_nonblocking(fd) != 0) {
            c->last_errno = errno;
            sx_net_close(fd);
            continue;
        }
        set_socket_options(fd);
        for (;;) {
            if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                c->fd = fd;
                c->connected = 1;
                return SX_NET_OK;
            }
            if (errno != EINTR)
                break;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            c->fd = fd;
            return SX_NET_AGAIN;
        }
        c->last_errno = errno;
        sx_net_close(fd);
    }
    return SX_NET_E_CONNECT;
}

int sx_net_connector_start(sx_net_connector **out, const char *host,
                           uint16_t port)
{
    struct addrinfo hints;
    sx_net_connector *c;
    char portstr[8];
    char hostbuf[256];
    size_t hl;
    int rc;

    if (!out || !host)
        return SX_NET_E_ARG;
    *out = NULL;
    hl = strlen(host);
    /* "[::1]" -> "::1" */
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host++;
        hl -= 2;
    }
    if (hl == 0 || hl >= sizeof hostbuf)
        return SX_NET_E_ARG;
    memcpy(hostbuf, host, hl);
    hostbuf[hl] = '\0';
    snprintf(portstr, sizeof portstr, "%u", (unsigned)port);

    c = sx_calloc(1, sizeof *c);
    if (!c)
        return SX_NET_E_NOMEM;
    c->fd = -1;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* no AI_ADDRCONFIG: it hides loopback-only set-ups; an unreachable
     * family just fails over to the next address */
    hints.ai_flags = AI_NUMERICSERV;
    rc = getaddrinfo(hostbuf, portstr, &hints, &c->list);
    if (rc != 0 || !c->list) {
        if (c->list)
            freeaddrinfo(c->list);
        sx_free(c);
        return rc == EAI_MEMORY ? SX_NET_E_NOMEM : SX_NET_E_RESOLVE;
    }
    c->next = c->list;
    rc = try_next(c);
    if (rc < 0) {
        *out = c; /* keep it: the caller may ask for last_errno */
        return rc;
    }
    *out = c;
    return SX_NET_OK;
}

int sx_net_connector_step(sx_net_connector *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (!c)
        return SX_NET_E_ARG;
    if (c->connected)
        return SX_NET_OK;
    if (c->fd < 0)
        return try_next(c);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        /* writable with no error means connected, unless the poll was
         * spurious: getpeername tells */
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) == 0) {
            c->connected = 1;
            return SX_NET_OK;
        }
        if (errno == ENOTCONN)
            return SX_NET_AGAIN;
        err = errno;
    }
    if (err == EINPROGRESS || err == EALREADY || err == EINTR)
        return SX_NET_AGAIN;
    c->last_errno = err;
    sx_net_close(c->fd);
    c->fd = -1;
    return try_next(c);
}

int sx_net_connector_fd(const sx_net_connector *c)
{
    return c ? c->fd : -1;
}

int sx_net_connector_last_errno(const sx_net_connector *c)
{
    return c ? c->last_errno : 0;
}

int sx_net_connector_take_fd(sx_net_connector *c)
{
    int fd;
    if (!c || !c->connected)
        return -1;
    fd = c->fd;
    c->fd = -1;
    c->connected = 0;
    return fd;
}

void sx_net_connector_free(sx_net_connector *c)
{
    if (!c)
        return;
    sx_net_close(c->fd);
    if (c->list)
        freeaddrinfo(c->list);
    sx_free(c);
}

long sx_net_recv(int fd, void *buf, size_t len, int *status)
{
    for (;;) {
        ssize_t n = recv(fd, buf, len, 0);
        if (n > 0) {
            *status = SX_NET_OK;
            return (long)n;
        }
        if (n == 0) {
            *status = len ? SX_NET_EOF : SX_NET_OK;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *status = SX_NET_AGAIN;
            return 0;
        }
        *status = SX_NET_E_IO;
        return -1;
    }
}

long sx_net_send(int fd, const void *buf, size_t len, int *status)
{
    for (;;) {
        ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0) {
            *status = SX_NET_OK;
            if (n == 0 && len) {
                *status = SX_NET_AGAIN;
            }
            return (long)n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *status = SX_NET_AGAIN;
            return 0;
        }
        *status = SX_NET_E_IO;
        return -1;
    }
}
